/*
 * bench_ceiling.c - measures the FLOP ceiling and the copy bandwidth that
 * clattn-bench reports each plan against (see bench_ceiling.h). The rate of
 * an SGEMM run is 2 n^3 FLOPs over its time: device time from profiling
 * markers for CLBlast, the wall clock for OpenBLAS; each is the median of a
 * few runs after one warm-up run (which, for CLBlast, compiles its kernels:
 * seconds on PoCL). The copy bandwidth is a device buffer copy timed by its
 * own profiling event, median of runs after a warm-up.
 */
#include "bench_ceiling.h"
#include "toolutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CLATTN_BENCH_HAVE_CLBLAST
#include <clblast_c.h>
#endif
#ifdef CLATTN_BENCH_HAVE_OPENBLAS
#include <cblas.h>
#endif

static const bench_limits ceiling_limits = {1, 7, 5.0, 120.0, 0.25};

#ifdef CLATTN_BENCH_HAVE_CLBLAST
typedef struct clblast_run {
  cl_command_queue queue;
  cl_mem a, b, c;
  size_t n;
} clblast_run;

static int clblast_once(void *arg, double *ms, char *err, size_t errlen,
                        int *resource) {
  clblast_run *r = arg;
  cl_event begin = NULL, end = NULL;
  int rc = 1;
  cl_int e = clEnqueueMarkerWithWaitList(r->queue, 0, NULL, &begin);
  if (e == CL_SUCCESS) {
    e = (cl_int)CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                             CLBlastTransposeNo, r->n, r->n, r->n, 1.0f, r->a,
                             0, r->n, r->b, 0, r->n, 0.0f, r->c, 0, r->n,
                             &r->queue, NULL);
  }
  if (e == CL_SUCCESS)
    e = clEnqueueMarkerWithWaitList(r->queue, 0, NULL, &end);
  if (e == CL_SUCCESS)
    e = clWaitForEvents(1, &end);
  if (e == CL_SUCCESS)
    e = tool_event_span_ms(begin, end, ms);
  if (e != CL_SUCCESS) {
    snprintf(err, errlen, "CLBlastSgemm failed (%d)", e);
    *resource = bench_cl_is_resource_error(e);
    clFinish(r->queue);
  } else {
    rc = 0;
  }
  if (begin)
    clReleaseEvent(begin);
  if (end)
    clReleaseEvent(end);
  return rc;
}

static double measure_clblast(clattn_context_t ctx,
                              const clattn_device_profile *prof, size_t n,
                              bench_ceiling *out) {
  clblast_run r = {clattn_context_queue(ctx), NULL, NULL, NULL, n};
  cl_context cl = clattn_context_cl(ctx);
  size_t bytes = n * n * sizeof(float);
  unsigned seed = 2024u;
  double gflops = 0.0;
  cl_int e = CL_SUCCESS;
  int resource = 0;
  if (bench_clblast_prepare(prof, out->clblast_setup,
                            sizeof out->clblast_setup) != 0)
    snprintf(out->clblast_setup, sizeof out->clblast_setup,
             "CLBlast defaults (parameter override failed)");
  r.a = clCreateBuffer(cl, CL_MEM_READ_WRITE, bytes, NULL, &e);
  if (e == CL_SUCCESS)
    r.b = clCreateBuffer(cl, CL_MEM_READ_WRITE, bytes, NULL, &e);
  if (e == CL_SUCCESS)
    r.c = clCreateBuffer(cl, CL_MEM_READ_WRITE, bytes, NULL, &e);
  if (e == CL_SUCCESS)
    e = bench_fill_random(r.queue, r.a, n * n, CLATTN_DTYPE_F32, &seed);
  if (e == CL_SUCCESS)
    e = bench_fill_random(r.queue, r.b, n * n, CLATTN_DTYPE_F32, &seed);
  if (e != CL_SUCCESS) {
    snprintf(out->clblast_error, sizeof out->clblast_error,
             "could not allocate the matrices (%d)", e);
  } else {
    bench_timing t;
    if (bench_time_runs(clblast_once, &r, &ceiling_limits, &t,
                        out->clblast_error, sizeof out->clblast_error,
                        &resource) == 0)
      gflops =
          2.0 * (double)n * (double)n * (double)n / (t.ms_median * 1e-3) * 1e-9;
  }
  if (r.a)
    clReleaseMemObject(r.a);
  if (r.b)
    clReleaseMemObject(r.b);
  if (r.c)
    clReleaseMemObject(r.c);
  return gflops;
}
#endif

#ifdef CLATTN_BENCH_HAVE_OPENBLAS
typedef struct openblas_run {
  float *a, *b, *c;
  size_t n;
} openblas_run;

static int openblas_once(void *arg, double *ms, char *err, size_t errlen,
                         int *resource) {
  openblas_run *r = arg;
  int n = (int)r->n;
  (void)err;
  (void)errlen;
  (void)resource;
  double t0 = tool_now_seconds();
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, r->a, n,
              r->b, n, 0.0f, r->c, n);
  *ms = (tool_now_seconds() - t0) * 1e3;
  return 0;
}

static double measure_openblas(size_t n, bench_ceiling *out) {
  openblas_run r = {malloc(n * n * sizeof(float)),
                    malloc(n * n * sizeof(float)),
                    malloc(n * n * sizeof(float)), n};
  double gflops = 0.0;
  int resource = 0;
  if (!r.a || !r.b || !r.c) {
    snprintf(out->openblas_error, sizeof out->openblas_error,
             "out of host memory");
  } else {
    unsigned seed = 2025u;
    for (size_t i = 0; i < n * n; i++) {
      seed = seed * 1664525u + 1013904223u;
      r.a[i] = (float)(seed >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
      r.b[i] = r.a[i] * 0.5f;
    }
    bench_timing t;
    if (bench_time_runs(openblas_once, &r, &ceiling_limits, &t,
                        out->openblas_error, sizeof out->openblas_error,
                        &resource) == 0)
      gflops =
          2.0 * (double)n * (double)n * (double)n / (t.ms_median * 1e-3) * 1e-9;
  }
  free(r.a);
  free(r.b);
  free(r.c);
  return gflops;
}
#endif

/* Copies far larger than any cache, so that the copy streams from memory;
 * a quarter of the largest allocation on small devices. */
#define COPY_BYTES ((size_t)256 << 20)

typedef struct copy_run {
  cl_command_queue queue;
  cl_mem src, dst;
  size_t bytes;
} copy_run;

static int copy_once(void *arg, double *ms, char *err, size_t errlen,
                     int *resource) {
  copy_run *r = arg;
  cl_event ev = NULL;
  cl_ulong t0 = 0, t1 = 0;
  cl_int e = clEnqueueCopyBuffer(r->queue, r->src, r->dst, 0, 0, r->bytes, 0,
                                 NULL, &ev);
  if (e == CL_SUCCESS)
    e = clWaitForEvents(1, &ev);
  if (e == CL_SUCCESS)
    e = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0,
                                NULL);
  if (e == CL_SUCCESS)
    e = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1,
                                NULL);
  if (ev)
    clReleaseEvent(ev);
  if (e != CL_SUCCESS || t1 <= t0) {
    snprintf(err, errlen, "clEnqueueCopyBuffer or its profiling failed (%d)",
             e);
    *resource = bench_cl_is_resource_error(e);
    return 1;
  }
  *ms = (double)(t1 - t0) * 1e-6;
  return 0;
}

static void measure_copy(clattn_context_t ctx,
                         const clattn_device_profile *prof,
                         bench_ceiling *out) {
  copy_run r = {clattn_context_queue(ctx), NULL, NULL, COPY_BYTES};
  cl_context cl = clattn_context_cl(ctx);
  unsigned seed = 2026u;
  int resource = 0;
  cl_int e = CL_SUCCESS;
  if ((cl_ulong)r.bytes > prof->max_mem_alloc_size / 4)
    r.bytes = (size_t)(prof->max_mem_alloc_size / 4) / 64 * 64;
  out->copy_bytes = r.bytes;
  r.src = clCreateBuffer(cl, CL_MEM_READ_WRITE, r.bytes, NULL, &e);
  if (e == CL_SUCCESS)
    r.dst = clCreateBuffer(cl, CL_MEM_READ_WRITE, r.bytes, NULL, &e);
  if (e == CL_SUCCESS)
    e = bench_fill_random(r.queue, r.src, r.bytes / sizeof(float),
                          CLATTN_DTYPE_F32, &seed);
  /* The destination is written once before timing, so that no run pays for
   * the first touch of its pages. */
  if (e == CL_SUCCESS)
    e = bench_fill_random(r.queue, r.dst, r.bytes / sizeof(float),
                          CLATTN_DTYPE_F32, &seed);
  if (e != CL_SUCCESS) {
    snprintf(out->copy_error, sizeof out->copy_error,
             "could not allocate the %zu-byte buffers (%d)", r.bytes, e);
  } else {
    bench_timing t;
    if (bench_time_runs(copy_once, &r, &ceiling_limits, &t, out->copy_error,
                        sizeof out->copy_error, &resource) == 0)
      out->copy_gbps = 2.0 * (double)r.bytes / (t.ms_median * 1e-3) * 1e-9;
  }
  if (r.src)
    clReleaseMemObject(r.src);
  if (r.dst)
    clReleaseMemObject(r.dst);
}

int bench_ceiling_measure(clattn_context_t ctx, size_t n, bench_ceiling *out,
                          char *err, size_t errlen) {
  clattn_device_profile prof;
  memset(out, 0, sizeof *out);
  out->n = n;
  if (clattn_context_profile(ctx, &prof) != CLATTN_SUCCESS) {
    snprintf(err, errlen, "no device profile");
    return 1;
  }
  measure_copy(ctx, &prof, out);
  /* The host BLAS only stands for the device when the device is this CPU.
   * It runs before CLBlast, while the device is idle. */
  if (prof.is_cpu) {
#ifdef CLATTN_BENCH_HAVE_OPENBLAS
    const char *core = openblas_get_corename();
    snprintf(out->openblas_core, sizeof out->openblas_core, "%s",
             core ? core : "unknown");
    out->openblas_gflops = measure_openblas(n, out);
#else
    snprintf(out->openblas_error, sizeof out->openblas_error,
             "built without OpenBLAS");
#endif
  }
#ifdef CLATTN_BENCH_HAVE_CLBLAST
  out->clblast_gflops = measure_clblast(ctx, &prof, n, out);
#else
  snprintf(out->clblast_error, sizeof out->clblast_error,
           "built without CLBlast");
#endif
  if (out->clblast_gflops >= out->openblas_gflops) {
    out->gflops = out->clblast_gflops;
    out->source = "clblast-sgemm-device";
  } else {
    out->gflops = out->openblas_gflops;
    out->source = "openblas-sgemm-host";
  }
  if (out->gflops <= 0.0) {
    snprintf(err, errlen, "no SGEMM could be measured (CLBlast: %s%s%s)",
             out->clblast_error[0] ? out->clblast_error : "no result",
             prof.is_cpu ? "; OpenBLAS: " : "",
             prof.is_cpu
                 ? (out->openblas_error[0] ? out->openblas_error : "no result")
                 : "");
    return 1;
  }
  return 0;
}
