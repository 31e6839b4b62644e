/*
 * bench_common.c - the timing loop, error classes, random inputs and the
 * CLBlast set-up shared by the files of clattn-bench.
 */
#include "bench_common.h"
#include "toolutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CLATTN_BENCH_HAVE_CLBLAST
#include <clblast_c.h>
#endif

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Whether warm-up run w (0-based) is due: the first `warmup` runs, then
 * more until warmup_seconds have passed since `start`. */
static int warming(const bench_limits *lim, int w, double start) {
  if (w < lim->warmup)
    return 1;
  return lim->warmup > 0 && tool_now_seconds() - start < lim->warmup_seconds;
}

int bench_time_runs(bench_run_fn fn, void *arg, const bench_limits *lim,
                    bench_timing *t, char *err, size_t errlen, int *resource) {
  double *times = malloc(sizeof(double) * (size_t)lim->repeat);
  double ms = 0.0;
  int rc = 1;
  memset(t, 0, sizeof *t);
  if (!times) {
    snprintf(err, errlen, "out of host memory");
    *resource = 1;
    return 1;
  }
  double warm_start = tool_now_seconds();
  for (int w = 0; warming(lim, w, warm_start); w++) {
    double t0 = tool_now_seconds();
    if (fn(arg, &ms, err, errlen, resource))
      goto cleanup;
    if (tool_now_seconds() - t0 > lim->max_seconds)
      break;
  }
  double start = tool_now_seconds();
  int n = 0;
  while (n < lim->repeat) {
    double t0 = tool_now_seconds();
    if (fn(arg, &times[n], err, errlen, resource))
      goto cleanup;
    double wall = tool_now_seconds() - t0;
    if (wall > t->run_seconds)
      t->run_seconds = wall;
    n++;
    if (wall > lim->max_case_seconds) {
      t->over_limit = 1;
      break;
    }
    if (n >= 3 && tool_now_seconds() - start > lim->max_seconds)
      break;
  }
  qsort(times, (size_t)n, sizeof *times, cmp_double);
  t->runs = n;
  t->ms_min = times[0];
  t->ms_median = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
  rc = 0;
cleanup:
  free(times);
  return rc;
}

int bench_cl_is_resource_error(cl_int e) {
  return e == CL_MEM_OBJECT_ALLOCATION_FAILURE || e == CL_OUT_OF_RESOURCES ||
         e == CL_OUT_OF_HOST_MEMORY || e == CL_INVALID_BUFFER_SIZE;
}

int bench_have_clblast(void) {
#ifdef CLATTN_BENCH_HAVE_CLBLAST
  return 1;
#else
  return 0;
#endif
}

int bench_have_openblas(void) {
#ifdef CLATTN_BENCH_HAVE_OPENBLAS
  return 1;
#else
  return 0;
#endif
}

static int clblast_keep_defaults;

void bench_clblast_keep_defaults(int on) {
  clblast_keep_defaults = on;
}

int bench_clblast_prepare(const clattn_device_profile *prof, char *what,
                          size_t len) {
#ifdef CLATTN_BENCH_HAVE_CLBLAST
  static cl_device_id done_for = NULL;
  static int done_status = 0;
  static char done_what[128] = "";
  if (done_for != prof->device) {
    done_for = prof->device;
    done_status = 0;
    snprintf(done_what, sizeof done_what, "CLBlast defaults");
    if (prof->is_cpu && !clblast_keep_defaults) {
      /* Measured on PoCL (FIELD-NOTES.md): an 8x8 work-group of 64x64 tiles
       * with 8-wide vectors and both operands in (emulated) local memory,
       * 4-6x CLBlast's defaults, which are shaped for GPUs. The override
       * holds for every later SGEMM routine on this device, strided-batched
       * included. */
      static const char *names[] = {
          "GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
          "NDIMC", "NWG",  "SA",  "SB",  "STRM",  "STRN",  "VWM", "VWN"};
      static const size_t values[] = {0, 1,  16, 2, 8, 8, 64, 8,
                                      8, 64, 1,  1, 0, 0, 8,  8};
      CLBlastStatusCode st = CLBlastOverrideParameters(
          prof->device, "Xgemm", CLBlastPrecisionSingle,
          sizeof values / sizeof values[0], names, values);
      done_status = (int)st;
      if (st == CLBlastSuccess)
        snprintf(done_what, sizeof done_what,
                 "CLBlast, CPU parameters MWG=NWG=64 KWG=16 VWM=VWN=8 "
                 "SA=SB=1");
    }
  }
  snprintf(what, len, "%s", done_what);
  return done_status;
#else
  (void)prof;
  snprintf(what, len, "built without CLBlast");
  return -1;
#endif
}

cl_int bench_fill_random(cl_command_queue q, cl_mem buf, size_t count,
                         clattn_dtype dtype, unsigned *seed) {
  size_t es = clattn_dtype_size(dtype);
  float *f = malloc(count * sizeof *f);
  void *h = dtype != CLATTN_DTYPE_F32 ? malloc(count * es) : NULL;
  if (!f || (dtype != CLATTN_DTYPE_F32 && !h)) {
    free(f);
    free(h);
    return CL_OUT_OF_HOST_MEMORY;
  }
  for (size_t i = 0; i < count; i++) {
    *seed = *seed * 1664525u + 1013904223u;
    f[i] = (float)(*seed >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
  }
  const void *src = f;
  size_t bytes = count * sizeof(float);
  if (h) {
    clattn_convert_from_f32(dtype, f, h, count);
    src = h;
    bytes = count * es;
  }
  cl_int err =
      clEnqueueWriteBuffer(q, buf, CL_TRUE, 0, bytes, src, 0, NULL, NULL);
  free(f);
  free(h);
  return err;
}

cl_int bench_read_floats(cl_command_queue q, cl_mem buf, size_t count,
                         clattn_dtype dtype, float *out) {
  if (dtype == CLATTN_DTYPE_F32)
    return clEnqueueReadBuffer(q, buf, CL_TRUE, 0, count * sizeof(float), out,
                               0, NULL, NULL);
  size_t es = clattn_dtype_size(dtype);
  void *h = malloc(count * es);
  if (!h)
    return CL_OUT_OF_HOST_MEMORY;
  cl_int e =
      clEnqueueReadBuffer(q, buf, CL_TRUE, 0, count * es, h, 0, NULL, NULL);
  if (e == CL_SUCCESS)
    clattn_convert_to_f32(dtype, h, out, count);
  free(h);
  return e;
}
