/*
 * bench_baseline.h - clattn-bench's naive baseline: attention as an OpenCL
 * user would write it without clattn, on the same device and the same input
 * buffers. S = Q K^T with CLBlast, a row kernel that turns S into P in place
 * (masked softmax, sigmoid, or the quadratic form of linear and cosFormer
 * attention), then O = P V with CLBlast. The kernels are in
 * bench_baseline.cl.
 */
#ifndef BENCH_BASELINE_H
#define BENCH_BASELINE_H

#include "bench_common.h"

typedef struct bench_baseline bench_baseline;

/* Builds the baseline's kernels for the context's device and sets CLBlast up
 * for it (bench_clblast_prepare). Returns 0, or 1 with a message in err. */
int bench_baseline_create(clattn_context_t ctx, bench_baseline **out, char *err,
                          size_t errlen);

/* NULL does nothing. */
void bench_baseline_destroy(bench_baseline *b);

/* What CLBlast runs with ("CLBlast defaults", or the CPU parameters). */
const char *bench_baseline_gemm_setup(const bench_baseline *b);

/* Times the baseline of problem `d` on inputs q, k, v (the plan's dtype),
 * writing its output to o (the plan's dtype too). S holds as many
 * (batch, kv head) matrices at once as fit in the device's largest allocation
 * and in half of the global memory left after `bytes_in_use` (the other half
 * is left to CLBlast's temporary buffers); the rest is done in rounds.
 * *device_bytes gets what the baseline allocates besides q, k, v and o: S
 * and the float copies. Returns 0, or 1 with err (and *resource set when S or
 * another buffer cannot be allocated). */
int bench_baseline_time(bench_baseline *b, const clattn_desc *d, cl_mem q,
                        cl_mem k, cl_mem v, cl_mem o, size_t bytes_in_use,
                        const bench_limits *lim, bench_timing *t,
                        size_t *device_bytes, char *err, size_t errlen,
                        int *resource);

#endif /* BENCH_BASELINE_H */
