/*
 * bench_ceiling.h - the device's measured FLOP ceiling for clattn-bench: a
 * large square SGEMM with CLBlast on the device and, when the device is a
 * CPU, with OpenBLAS on the host cores; the best rate is the ceiling.
 */
#ifndef BENCH_CEILING_H
#define BENCH_CEILING_H

#include "bench_common.h"

typedef struct bench_ceiling {
  size_t n;              /* the SGEMM is n x n x n */
  double clblast_gflops; /* 0 when not measured */
  double openblas_gflops;
  double gflops;      /* the best of them */
  const char *source; /* "clblast-sgemm-device", "openblas-sgemm-host" */
  char clblast_setup[128];
  char clblast_error[256]; /* why CLBlast was not measured, if it was not */
  char openblas_error[256];
  char openblas_core[32]; /* the kernels OpenBLAS runs ("SkylakeX", ...) */
  /* Device copy bandwidth: clEnqueueCopyBuffer of copy_bytes, counting the
   * bytes read and the bytes written (as STREAM's copy does); 0 when not
   * measured, with copy_error. */
  double copy_gbps;
  size_t copy_bytes;
  char copy_error[256];
} bench_ceiling;

/* Measures the device's copy bandwidth, then the ceiling with SGEMMs of size
 * n on the context's device (and on the host when the device is a CPU).
 * Returns 0, or 1 with err when no SGEMM could be measured (the copy
 * bandwidth may still have been). */
int bench_ceiling_measure(clattn_context_t ctx, size_t n, bench_ceiling *out,
                          char *err, size_t errlen);

#endif /* BENCH_CEILING_H */
