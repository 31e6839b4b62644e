/*
 * bench_common.h - what the files of clattn-bench share: the timing loop
 * (warm-up, repeats and the time limits), error classes, and the CLBlast
 * set-up that both the naive baseline and the FLOP ceiling use. The clocks
 * are in toolutil.h, shared with the other tools.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include "clattn.h"

#include <stddef.h>

/* One measured run: device time in ms; returns 0, or 1 with a message in err
 * (and *resource set when the failure is the device running out of memory or
 * resources). */
typedef int (*bench_run_fn)(void *arg, double *ms, char *err, size_t errlen,
                            int *resource);

typedef struct bench_limits {
  int warmup, repeat;
  double max_seconds;      /* stop repeating (after 3 runs) past this */
  double max_case_seconds; /* one run longer than this ends the case */
  double warmup_seconds;   /* with warmup > 0, warm up at least this long */
} bench_limits;

typedef struct bench_timing {
  double ms_median, ms_min;
  double run_seconds; /* the longest timed run, wall clock */
  int runs;
  int over_limit; /* a run took longer than max_case_seconds */
} bench_timing;

/* Warm-up runs: `warmup` of them, continued until warmup_seconds have
 * passed (a CPU runtime's fresh worker threads may share one core for the
 * first tens of milliseconds, until the scheduler spreads them), but only
 * one once a run took longer than max_seconds, since the warm-up is there to
 * build and cache; then up to `repeat` timed runs.
 * Returns 0, or 1 with err and *resource as bench_run_fn sets them. */
int bench_time_runs(bench_run_fn fn, void *arg, const bench_limits *lim,
                    bench_timing *t, char *err, size_t errlen, int *resource);

/* Whether an OpenCL error means the device ran out of memory or resources
 * (or a buffer was too large to allocate). */
int bench_cl_is_resource_error(cl_int e);

/* Whether CLBlast and OpenBLAS were found at build time. */
int bench_have_clblast(void);
int bench_have_openblas(void);

/* Call before the first bench_clblast_prepare: 1 keeps CLBlast's own SGEMM
 * parameters on every device (what a user gets out of the box). */
void bench_clblast_keep_defaults(int on);

/* Once per device and process, before the first CLBlast call: on a CPU
 * device, replaces CLBlast's GPU-shaped SGEMM defaults with parameters suited
 * to CPUs (4-6x faster on PoCL), unless told to keep them; on other devices
 * keeps CLBlast's database. Returns a CLBlast status (0 on success); the
 * parameters used are described in `what`. */
int bench_clblast_prepare(const clattn_device_profile *prof, char *what,
                          size_t len);

/* Fills a device buffer with values uniform in [-1, 1], stored as `dtype`. */
cl_int bench_fill_random(cl_command_queue q, cl_mem buf, size_t count,
                         clattn_dtype dtype, unsigned *seed);

/* Reads `count` elements of `dtype` from a device buffer into floats. */
cl_int bench_read_floats(cl_command_queue q, cl_mem buf, size_t count,
                         clattn_dtype dtype, float *out);

#endif /* BENCH_COMMON_H */
