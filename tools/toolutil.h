/*
 * toolutil.h - what the command-line tools share: parsing sizes, lists of
 * sizes and lists of variants from option values, a monotonic clock, and
 * timing one plan run on the device with profiling events.
 *
 * Nothing here keeps state, and nothing here prints: each tool words its own
 * messages, so that its output stays what it was.
 */
#ifndef TOOLUTIL_H
#define TOOLUTIL_H

#include "clattn.h"

#include <stddef.h>

/* A decimal number, as strtoull reads it, that fills the whole string and
 * is 1..max. Returns 1 and sets *out, or 0 (leaving *out alone). */
int tool_parse_size(const char *s, size_t max, size_t *out);

/* Comma-separated sizes, each as tool_parse_size takes it; empty items
 * ("8,,16", a trailing comma) are skipped. Returns 1 with *n sizes in out,
 * or 0 when an item is bad, there are more than `cap` items, or none. */
int tool_parse_size_list(const char *s, size_t max, size_t *out, size_t cap,
                         size_t *n);

/* Comma-separated variant names, or "all" for every variant; on[v] is set
 * to 1 for each named variant and 0 for the others. Returns 1, or 0 on an
 * unknown name or a list that names nothing. */
int tool_parse_variants(const char *s, int on[CLATTN_VARIANT_COUNT]);

/* Monotonic wall clock in seconds. */
double tool_now_seconds(void);

/* Device time in ms from the end of `from` to the end of `to` (both events
 * of a queue with profiling). Returns the OpenCL error, CL_SUCCESS if none. */
cl_int tool_event_span_ms(cl_event from, cl_event to, double *ms);

/* Which step of tool_time_plan_once failed. */
enum {
  TOOL_TIME_OK = 0,
  TOOL_TIME_MARKER, /* enqueueing the marker; *code is the OpenCL error */
  TOOL_TIME_RUN,    /* clattn_plan_run; *code is the clattn_status */
  TOOL_TIME_WAIT    /* the run on the device or its profiling; OpenCL error */
};

/* Runs `plan` once after a marker on `queue`, the queue of the plan's
 * context (made with CLATTN_CONTEXT_PROFILING), waits, and sets *ms to the
 * device time from the end of the marker to the end of the plan's last
 * kernel, so that a plan of several kernels is timed whole.
 * Returns TOOL_TIME_OK, or the step that failed with its error in *code. */
int tool_time_plan_once(clattn_plan_t plan, cl_command_queue queue, cl_mem q,
                        cl_mem k, cl_mem v, cl_mem o, double *ms, int *code);

/* The same with per-sequence lengths (int32 [B] buffers or NULL, as
 * clattn_plan_run_varlen takes them). */
int tool_time_plan_once_varlen(clattn_plan_t plan, cl_command_queue queue,
                               cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                               cl_mem lens_q, cl_mem lens_k, double *ms,
                               int *code);

#endif /* TOOLUTIL_H */
