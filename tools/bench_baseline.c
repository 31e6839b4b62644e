/*
 * bench_baseline.c - the naive baseline of clattn-bench (see
 * bench_baseline.h): the host side that converts inputs, sizes S, enqueues
 * the CLBlast GEMMs and the row kernel of bench_baseline.cl, and times them.
 *
 * f16 and bf16 inputs are converted to float copies by a small kernel and the
 * baseline runs in f32; its output is converted back to half at the end.
 * CLBlast's HGEMM is not used: it needs cl_khr_fp16, which many devices lack
 * (PoCL's CPU device answers -2045), and half arithmetic would compare a
 * different computation anyway.
 */
#include "bench_baseline.h"
#include "toolutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CLATTN_BENCH_HAVE_CLBLAST
#include <clblast_c.h>
#endif

/* bench_baseline.cl, embedded by tools/CMakeLists.txt. */
extern const unsigned char bench_baseline_cl[];
extern const size_t bench_baseline_cl_size;

enum {
  BL_TO_FLOAT,
  BL_HALF_TO_FLOAT,
  BL_TO_HALF,
  BL_BF16_TO_FLOAT,
  BL_TO_BF16,
  BL_SOFTMAX,
  BL_SIGMOID,
  BL_LINEAR,
  BL_NKERNELS
};

static const char *const bl_kernel_names[BL_NKERNELS] = {
    "float_to_float", "half_to_float", "float_to_half", "bf16_to_float",
    "float_to_bf16",  "rows_softmax",  "rows_sigmoid",  "rows_linear"};

struct bench_baseline {
  cl_context cl;
  cl_command_queue queue;
  cl_program program;
  cl_kernel kernels[BL_NKERNELS];
  size_t wg;  /* work-items per score row */
  cl_uint vw; /* vector width of the row kernels */
  cl_ulong max_alloc, global_mem;
  char gemm_setup[128];
};

void bench_baseline_destroy(bench_baseline *b) {
  if (!b)
    return;
  for (int i = 0; i < BL_NKERNELS; i++) {
    if (b->kernels[i])
      clReleaseKernel(b->kernels[i]);
  }
  if (b->program)
    clReleaseProgram(b->program);
  free(b);
}

const char *bench_baseline_gemm_setup(const bench_baseline *b) {
  return b->gemm_setup;
}

int bench_baseline_create(clattn_context_t ctx, bench_baseline **out, char *err,
                          size_t errlen) {
  clattn_device_profile prof;
  bench_baseline *b = NULL;
  cl_int e = CL_SUCCESS;
  *out = NULL;
  if (!bench_have_clblast()) {
    snprintf(err, errlen, "clattn-bench was built without CLBlast");
    return 1;
  }
  if (clattn_context_profile(ctx, &prof) != CLATTN_SUCCESS) {
    snprintf(err, errlen, "no device profile");
    return 1;
  }
  b = calloc(1, sizeof *b);
  if (!b) {
    snprintf(err, errlen, "out of host memory");
    return 1;
  }
  b->cl = clattn_context_cl(ctx);
  b->queue = clattn_context_queue(ctx);
  b->max_alloc = prof.max_mem_alloc_size;
  b->global_mem = prof.global_mem_size;
  int st = bench_clblast_prepare(&prof, b->gemm_setup, sizeof b->gemm_setup);
  if (st != 0)
    fprintf(stderr,
            "clattn-bench: CLBlast parameter override failed (%d); the "
            "baseline uses CLBlast's defaults\n",
            st);
  /* A CPU runtime runs a work-group on one core: one row per work-item,
   * with explicit vectors, is the fast shape there. A GPU wants a
   * work-group per row, wide enough to coalesce. */
  b->wg = prof.is_cpu ? 1 : 64;
  while (b->wg > prof.max_work_group_size)
    b->wg /= 2;
  b->vw = prof.preferred_vector_width_float;
  if (b->vw != 2 && b->vw != 4 && b->vw != 8 && b->vw != 16)
    b->vw = 1;
  const char *src = (const char *)bench_baseline_cl;
  size_t len = bench_baseline_cl_size;
  b->program = clCreateProgramWithSource(b->cl, 1, &src, &len, &e);
  if (e != CL_SUCCESS) {
    snprintf(err, errlen, "clCreateProgramWithSource failed (%d)", e);
    goto fail;
  }
  char options[64];
  snprintf(options, sizeof options, "-DWG=%zu -DVW=%u", b->wg, b->vw);
  cl_device_id dev = clattn_context_device(ctx);
  e = clBuildProgram(b->program, 1, &dev, options, NULL, NULL);
  if (e != CL_SUCCESS) {
    char log[2048] = "";
    clGetProgramBuildInfo(b->program, dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1,
                          log, NULL);
    snprintf(err, errlen, "building the baseline kernels failed (%d): %s", e,
             log);
    goto fail;
  }
  for (int i = 0; i < BL_NKERNELS; i++) {
    b->kernels[i] = clCreateKernel(b->program, bl_kernel_names[i], &e);
    if (e != CL_SUCCESS) {
      snprintf(err, errlen, "clCreateKernel %s failed (%d)", bl_kernel_names[i],
               e);
      goto fail;
    }
  }
  *out = b;
  return 0;
fail:
  bench_baseline_destroy(b);
  return 1;
}

/* One problem, its defaults resolved, and the buffers of one timing. */
typedef struct bl_case {
  bench_baseline *b;
  size_t batches; /* B * Hkv: one S matrix each */
  size_t g, nq, nk, d, dv;
  size_t rows; /* g * Nq, rows of one S matrix */
  int causal, f16, bf16, linear_like;
  cl_int map; /* 0 none, 1 elu1, 2 relu */
  float scale, bias, eps, cos_m;
  cl_kernel rows_kernel;
  cl_mem q, k, v, o;     /* the caller's */
  cl_mem qf, kf, vf, of; /* float views: copies, or the caller's */
  int own_q, own_k, own_v, own_o;
  cl_mem s;
  size_t chunk; /* S matrices per round */
} bl_case;

#ifdef CLATTN_BENCH_HAVE_CLBLAST
static cl_int bl_enqueue_1d(cl_command_queue queue, cl_kernel kern,
                            size_t global, size_t local) {
  return clEnqueueNDRangeKernel(queue, kern, 1, NULL, &global,
                                local ? &local : NULL, 0, NULL, NULL);
}

/* Enqueues src -> dst as float, applying the feature map. */
static cl_int bl_to_float(bl_case *c, cl_mem src, cl_mem dst, size_t n,
                          cl_int map) {
  cl_kernel kern = c->b->kernels[c->f16    ? BL_HALF_TO_FLOAT
                                 : c->bf16 ? BL_BF16_TO_FLOAT
                                           : BL_TO_FLOAT];
  cl_uint un = (cl_uint)n;
  cl_int e = clSetKernelArg(kern, 0, sizeof src, &src);
  e |= clSetKernelArg(kern, 1, sizeof dst, &dst);
  e |= clSetKernelArg(kern, 2, sizeof un, &un);
  e |= clSetKernelArg(kern, 3, sizeof map, &map);
  if (e != CL_SUCCESS)
    return CL_INVALID_KERNEL_ARGS;
  return bl_enqueue_1d(c->b->queue, kern, (n + 63) / 64 * 64, 64);
}

/* A sub-buffer of bytes [origin, origin + size) of mem. */
static cl_int bl_view(cl_mem mem, size_t origin, size_t size, cl_mem *out) {
  cl_buffer_region region = {origin, size};
  cl_int e = CL_SUCCESS;
  *out = clCreateSubBuffer(mem, 0, CL_BUFFER_CREATE_TYPE_REGION, &region, &e);
  return e;
}

/* Enqueues the whole baseline once, between two markers. */
static int bl_enqueue(bl_case *c, cl_event *begin, cl_event *end, char *err,
                      size_t errlen, int *resource) {
  cl_command_queue queue = c->b->queue;
  size_t nqd = c->batches * c->g * c->nq * c->d;
  size_t nkd = c->batches * c->nk * c->d;
  size_t nkv = c->batches * c->nk * c->dv;
  size_t nov = c->batches * c->g * c->nq * c->dv;
  cl_int e = clEnqueueMarkerWithWaitList(queue, 0, NULL, begin);
  if (e == CL_SUCCESS && c->own_q)
    e = bl_to_float(c, c->q, c->qf, nqd, c->map);
  if (e == CL_SUCCESS && c->own_k)
    e = bl_to_float(c, c->k, c->kf, nkd, c->map);
  if (e == CL_SUCCESS && c->own_v)
    e = bl_to_float(c, c->v, c->vf, nkv, 0);
  if (e != CL_SUCCESS) {
    snprintf(err, errlen, "converting the inputs failed (%d)", e);
    *resource = bench_cl_is_resource_error(e);
    return 1;
  }
  size_t s_one = c->rows * c->nk; /* floats of one S matrix */
  cl_uint unq = (cl_uint)c->nq, unk = (cl_uint)c->nk;
  cl_int causal = c->causal;
  for (size_t b0 = 0; b0 < c->batches; b0 += c->chunk) {
    size_t nb = c->batches - b0 < c->chunk ? c->batches - b0 : c->chunk;
    /* S = scale Q K^T for nb (batch, kv head) pairs: the g query heads of a
     * kv head are contiguous in Q, so they form one (g Nq x D) matrix. */
    /* Later rounds pass sub-buffers rather than element offsets: with
     * nonzero offsets CLBlast 1.5.3 on PoCL gave wrong results (N=16384,
     * one head per round), while the same heads as whole buffers agree. */
    cl_mem view[4] = {NULL, NULL, NULL, NULL};
    cl_mem qv = c->qf, kv = c->kf, vv = c->vf, ov = c->of;
    if (b0 > 0) {
      const size_t fs = sizeof(float);
      e = bl_view(c->qf, b0 * c->rows * c->d * fs, nb * c->rows * c->d * fs,
                  &view[0]);
      if (e == CL_SUCCESS)
        e = bl_view(c->kf, b0 * c->nk * c->d * fs, nb * c->nk * c->d * fs,
                    &view[1]);
      if (e == CL_SUCCESS)
        e = bl_view(c->vf, b0 * c->nk * c->dv * fs, nb * c->nk * c->dv * fs,
                    &view[2]);
      if (e == CL_SUCCESS)
        e = bl_view(c->of, b0 * c->rows * c->dv * fs, nb * c->rows * c->dv * fs,
                    &view[3]);
      if (e != CL_SUCCESS) {
        for (int i = 0; i < 4; i++)
          if (view[i])
            clReleaseMemObject(view[i]);
        snprintf(err, errlen,
                 "a round of S needs sub-buffers the device refuses (%d)", e);
        return 1;
      }
      qv = view[0];
      kv = view[1];
      vv = view[2];
      ov = view[3];
    }
    CLBlastStatusCode st = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, c->rows,
        c->nk, c->d, c->scale, qv, 0, c->d, c->rows * c->d, kv, 0, c->d,
        c->nk * c->d, 0.0f, c->s, 0, c->nk, s_one, nb, &queue, NULL);
    if (st != CLBlastSuccess) {
      snprintf(err, errlen, "CLBlastSgemmStridedBatched (Q K^T) failed (%d)",
               (int)st);
      *resource = bench_cl_is_resource_error((cl_int)st);
      return 1;
    }
    cl_kernel kern = c->rows_kernel;
    e = clSetKernelArg(kern, 0, sizeof c->s, &c->s);
    e |= clSetKernelArg(kern, 1, sizeof unq, &unq);
    e |= clSetKernelArg(kern, 2, sizeof unk, &unk);
    e |= clSetKernelArg(kern, 3, sizeof causal, &causal);
    if (c->rows_kernel == c->b->kernels[BL_SIGMOID]) {
      e |= clSetKernelArg(kern, 4, sizeof c->bias, &c->bias);
    } else if (c->rows_kernel == c->b->kernels[BL_LINEAR]) {
      e |= clSetKernelArg(kern, 4, sizeof c->eps, &c->eps);
      e |= clSetKernelArg(kern, 5, sizeof c->cos_m, &c->cos_m);
    }
    /* The OR of failed codes is no code: say which step failed. */
    e = e != CL_SUCCESS
            ? CL_INVALID_KERNEL_ARGS
            : bl_enqueue_1d(queue, kern, nb * c->rows * c->b->wg, c->b->wg);
    if (e != CL_SUCCESS) {
      snprintf(err, errlen, "the row kernel failed (%d)", e);
      *resource = bench_cl_is_resource_error(e);
      return 1;
    }
    /* O = P V. */
    st = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, c->rows,
        c->dv, c->nk, 1.0f, c->s, 0, c->nk, s_one, vv, 0, c->dv, c->nk * c->dv,
        0.0f, ov, 0, c->dv, c->rows * c->dv, nb, &queue, NULL);
    for (int i = 0; i < 4; i++)
      if (view[i])
        clReleaseMemObject(view[i]);
    if (st != CLBlastSuccess) {
      snprintf(err, errlen, "CLBlastSgemmStridedBatched (P V) failed (%d)",
               (int)st);
      *resource = bench_cl_is_resource_error((cl_int)st);
      return 1;
    }
  }
  if (c->own_o) {
    cl_kernel kern = c->b->kernels[c->bf16 ? BL_TO_BF16 : BL_TO_HALF];
    cl_uint un = (cl_uint)nov;
    e = clSetKernelArg(kern, 0, sizeof c->of, &c->of);
    e |= clSetKernelArg(kern, 1, sizeof c->o, &c->o);
    e |= clSetKernelArg(kern, 2, sizeof un, &un);
    e = e != CL_SUCCESS ? CL_INVALID_KERNEL_ARGS
                        : bl_enqueue_1d(queue, kern, (nov + 63) / 64 * 64, 64);
  }
  if (e == CL_SUCCESS)
    e = clEnqueueMarkerWithWaitList(queue, 0, NULL, end);
  if (e != CL_SUCCESS) {
    snprintf(err, errlen, "converting the output failed (%d)", e);
    *resource = bench_cl_is_resource_error(e);
    return 1;
  }
  return 0;
}
#endif

/* bench_run_fn: one timed baseline. The queue is in order, so the span from
 * the first marker to the last one covers every conversion, GEMM and row
 * kernel, including CLBlast's own helper kernels. */
static int bl_run_once(void *arg, double *ms, char *err, size_t errlen,
                       int *resource) {
#ifdef CLATTN_BENCH_HAVE_CLBLAST
  bl_case *c = arg;
  cl_event begin = NULL, end = NULL;
  int rc = bl_enqueue(c, &begin, &end, err, errlen, resource);
  if (rc == 0) {
    cl_int e = clWaitForEvents(1, &end);
    if (e == CL_SUCCESS)
      e = tool_event_span_ms(begin, end, ms);
    if (e != CL_SUCCESS) {
      snprintf(err, errlen, "the baseline failed on the device (%d)", e);
      *resource = bench_cl_is_resource_error(e);
      rc = 1;
    }
  } else {
    clFinish(c->b->queue);
  }
  if (begin)
    clReleaseEvent(begin);
  if (end)
    clReleaseEvent(end);
  return rc;
#else
  (void)arg;
  (void)ms;
  (void)resource;
  snprintf(err, errlen, "clattn-bench was built without CLBlast");
  return 1;
#endif
}

static cl_mem bl_alloc(bench_baseline *b, size_t bytes, cl_int *e) {
  if (bytes > b->max_alloc) {
    *e = CL_INVALID_BUFFER_SIZE;
    return NULL;
  }
  return clCreateBuffer(b->cl, CL_MEM_READ_WRITE, bytes, NULL, e);
}

int bench_baseline_time(bench_baseline *b, const clattn_desc *d, cl_mem q,
                        cl_mem k, cl_mem v, cl_mem o, size_t bytes_in_use,
                        const bench_limits *lim, bench_timing *t,
                        size_t *device_bytes, char *err, size_t errlen,
                        int *resource) {
  bl_case c;
  int rc = 1;
  cl_int e = CL_SUCCESS;
  memset(&c, 0, sizeof c);
  *resource = 0;
  *device_bytes = 0;
  c.b = b;
  size_t hkv = d->heads_kv ? d->heads_kv : d->heads_q;
  c.batches = d->batch * hkv;
  c.g = d->heads_q / hkv;
  c.nq = d->seq_q;
  c.nk = d->seq_k;
  c.d = d->dim;
  c.dv = d->dim_v ? d->dim_v : d->dim;
  c.rows = c.g * c.nq;
  c.causal = d->causal != 0;
  c.f16 = d->dtype == CLATTN_DTYPE_F16;
  c.bf16 = d->dtype == CLATTN_DTYPE_BF16;
  c.linear_like = d->variant == CLATTN_VARIANT_LINEAR ||
                  d->variant == CLATTN_VARIANT_COSFORMER;
  c.scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)c.d);
  c.bias = d->has_bias ? d->bias : -logf((float)c.nk);
  c.eps = d->eps != 0.0f ? d->eps : 1e-6f;
  c.cos_m = 0.0f;
  switch (d->variant) {
  case CLATTN_VARIANT_SOFTMAX:
    c.rows_kernel = b->kernels[BL_SOFTMAX];
    break;
  case CLATTN_VARIANT_SIGMOID:
    c.rows_kernel = b->kernels[BL_SIGMOID];
    break;
  case CLATTN_VARIANT_LINEAR:
  case CLATTN_VARIANT_COSFORMER:
    c.rows_kernel = b->kernels[BL_LINEAR];
    c.scale = 1.0f; /* linear attention does not scale its scores */
    if (d->variant == CLATTN_VARIANT_COSFORMER)
      c.cos_m =
          d->cos_m != 0.0f ? d->cos_m : (float)(c.nq > c.nk ? c.nq : c.nk);
    {
      clattn_feature_map map = d->feature_map;
      if (map == CLATTN_FEATURE_MAP_DEFAULT)
        map = d->variant == CLATTN_VARIANT_COSFORMER ? CLATTN_FEATURE_MAP_RELU
                                                     : CLATTN_FEATURE_MAP_ELU1;
      c.map = map == CLATTN_FEATURE_MAP_RELU ? 2 : 1;
    }
    break;
  default:
    snprintf(err, errlen, "no baseline for this variant");
    return 1;
  }
  c.q = q;
  c.k = k;
  c.v = v;
  c.o = o;
  size_t nqd = c.batches * c.rows * c.d, nkd = c.batches * c.nk * c.d;
  size_t nkv = c.batches * c.nk * c.dv, nov = c.batches * c.rows * c.dv;
  if (nqd > 0xffffffffu || nkd > 0xffffffffu || nkv > 0xffffffffu ||
      nov > 0xffffffffu) {
    snprintf(err, errlen, "tensors of more than 2^32 elements");
    return 1;
  }
  /* Float copies: of f16 inputs, and of Q and K with the feature map applied
   * for linear attention. */
  c.own_q = c.f16 || c.bf16 || c.linear_like;
  c.own_k = c.f16 || c.bf16 || c.linear_like;
  c.own_v = c.f16 || c.bf16;
  c.own_o = c.f16 || c.bf16;
  size_t copies = (c.own_q ? nqd : 0) + (c.own_k ? nkd : 0) +
                  (c.own_v ? nkv : 0) + (c.own_o ? nov : 0);
  copies *= sizeof(float);
  /* S: as many matrices per round as fit in one allocation and in half of
   * what the device has left. */
  double s_bytes = (double)c.rows * (double)c.nk * sizeof(float);
  double left = (double)b->global_mem - (double)bytes_in_use - (double)copies;
  /* One buffer stays below 2^31 bytes: with a 2 GiB S (8 heads at N=16384)
   * on PoCL the baseline's output was wrong (every variant, relative error
   * above 1) while one head per round agreed; 32-bit byte offsets overflow
   * somewhere below the GEMMs. */
  double max_one =
      (double)b->max_alloc < 2147483647.0 ? (double)b->max_alloc : 2147483647.0;
  double fit_alloc = floor(max_one / s_bytes);
  double fit_mem = left > 0 ? floor(0.5 * left / s_bytes) : 0;
  double fit = fit_alloc < fit_mem ? fit_alloc : fit_mem;
  if (fit < 1.0) {
    snprintf(err, errlen,
             "S does not fit: %.0f bytes per kv head (%zu x %zu x %zu "
             "floats), the device allows %llu per allocation and has about "
             "%.0f left (of %llu)",
             s_bytes, c.g, c.nq, c.nk, (unsigned long long)b->max_alloc,
             left > 0 ? left : 0.0, (unsigned long long)b->global_mem);
    *resource = 1;
    return 1;
  }
  c.chunk = fit < (double)c.batches ? (size_t)fit : c.batches;
  size_t s_alloc = c.chunk * c.rows * c.nk * sizeof(float);
  c.s = bl_alloc(b, s_alloc, &e);
  c.qf = c.own_q && e == CL_SUCCESS ? bl_alloc(b, nqd * sizeof(float), &e) : q;
  c.kf = c.own_k && e == CL_SUCCESS ? bl_alloc(b, nkd * sizeof(float), &e) : k;
  c.vf = c.own_v && e == CL_SUCCESS ? bl_alloc(b, nkv * sizeof(float), &e) : v;
  c.of = c.own_o && e == CL_SUCCESS ? bl_alloc(b, nov * sizeof(float), &e) : o;
  if (e != CL_SUCCESS) {
    snprintf(err, errlen, "allocating S (%zu bytes) and the copies failed (%d)",
             s_alloc, e);
    *resource = 1;
    goto cleanup;
  }
  *device_bytes = s_alloc + copies;
  rc = bench_time_runs(bl_run_once, &c, lim, t, err, errlen, resource);
cleanup:
  clFinish(b->queue);
  if (c.s)
    clReleaseMemObject(c.s);
  if (c.own_q && c.qf && c.qf != q)
    clReleaseMemObject(c.qf);
  if (c.own_k && c.kf && c.kf != k)
    clReleaseMemObject(c.kf);
  if (c.own_v && c.vf && c.vf != v)
    clReleaseMemObject(c.vf);
  if (c.own_o && c.of && c.of != o)
    clReleaseMemObject(c.of);
  return rc;
}
