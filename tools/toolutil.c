/*
 * toolutil.c - option parsing, the clock and plan timing shared by the
 * command-line tools (see toolutil.h).
 */
#include "toolutil.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The `len` characters at s as a size, 1..max. strtoull stops at the comma
 * after an item, so an item is read in place. */
static int parse_item(const char *s, size_t len, size_t max, size_t *out) {
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (end != s + len || v == 0 || v > max)
    return 0;
  *out = (size_t)v;
  return 1;
}

int tool_parse_size(const char *s, size_t max, size_t *out) {
  return parse_item(s, strlen(s), max, out);
}

/* The next item of a comma-separated list at *s, skipping empty ones as
 * strtok would; sets *len and moves *s past it. Returns NULL at the end. */
static const char *next_item(const char **s, size_t *len) {
  const char *p = *s;
  while (*p == ',')
    p++;
  if (!*p)
    return NULL;
  *len = strcspn(p, ",");
  *s = p + *len;
  return p;
}

int tool_parse_size_list(const char *s, size_t max, size_t *out, size_t cap,
                         size_t *n) {
  const char *item;
  size_t len = 0;
  *n = 0;
  while ((item = next_item(&s, &len)) != NULL) {
    if (*n == cap || !parse_item(item, len, max, &out[*n]))
      return 0;
    (*n)++;
  }
  return *n > 0;
}

int tool_parse_variants(const char *s, int on[CLATTN_VARIANT_COUNT]) {
  const char *item;
  size_t len = 0;
  int any = 0;
  memset(on, 0, sizeof(int) * CLATTN_VARIANT_COUNT);
  while ((item = next_item(&s, &len)) != NULL) {
    /* Longer than any variant's name, a name is unknown. */
    char name[32];
    clattn_variant v;
    if (len >= sizeof name)
      return 0;
    memcpy(name, item, len);
    name[len] = '\0';
    if (!strcmp(name, "all")) {
      for (int k = 0; k < CLATTN_VARIANT_COUNT; k++)
        on[k] = 1;
    } else if (clattn_variant_parse(name, &v) == CLATTN_SUCCESS) {
      on[v] = 1;
    } else {
      return 0;
    }
    any = 1;
  }
  return any;
}

double tool_now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

cl_int tool_event_span_ms(cl_event from, cl_event to, double *ms) {
  cl_ulong t0 = 0, t1 = 0;
  cl_int e = clGetEventProfilingInfo(from, CL_PROFILING_COMMAND_END, sizeof t0,
                                     &t0, NULL);
  if (e == CL_SUCCESS)
    e = clGetEventProfilingInfo(to, CL_PROFILING_COMMAND_END, sizeof t1, &t1,
                                NULL);
  if (e == CL_SUCCESS)
    *ms = t1 > t0 ? (double)(t1 - t0) * 1e-6 : 0.0;
  return e;
}

int tool_time_plan_once(clattn_plan_t plan, cl_command_queue queue, cl_mem q,
                        cl_mem k, cl_mem v, cl_mem o, double *ms, int *code) {
  return tool_time_plan_once_varlen(plan, queue, q, k, v, o, NULL, NULL, ms,
                                    code);
}

int tool_time_plan_once_varlen(clattn_plan_t plan, cl_command_queue queue,
                               cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                               cl_mem lens_q, cl_mem lens_k, double *ms,
                               int *code) {
  cl_event marker = NULL, done = NULL;
  int step = TOOL_TIME_MARKER;
  cl_int e = clEnqueueMarkerWithWaitList(queue, 0, NULL, &marker);
  if (e != CL_SUCCESS) {
    *code = (int)e;
    goto cleanup;
  }
  step = TOOL_TIME_RUN;
  clattn_status st =
      lens_q || lens_k
          ? clattn_plan_run_varlen(plan, q, k, v, o, NULL, lens_q, lens_k, 1,
                                   &marker, &done)
          : clattn_plan_run(plan, q, k, v, o, NULL, 1, &marker, &done);
  if (st != CLATTN_SUCCESS) {
    *code = (int)st;
    goto cleanup;
  }
  step = TOOL_TIME_WAIT;
  e = clWaitForEvents(1, &done);
  if (e == CL_SUCCESS)
    e = tool_event_span_ms(marker, done, ms);
  if (e != CL_SUCCESS) {
    *code = (int)e;
    goto cleanup;
  }
  step = TOOL_TIME_OK;
cleanup:
  if (marker)
    clReleaseEvent(marker);
  if (done)
    clReleaseEvent(done);
  return step;
}
