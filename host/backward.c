/*
 * backward.c - the backward passes: tile choice, program build and launch of
 * cl/flash_bwd.cl (softmax and sigmoid) and cl/linear_bwd.cl (linear
 * attention and cosFormer). The kernels and the workspace are made by a
 * plan's first backward run, under the plan's lock.
 */
#include "plan.h"
#include "program.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { BWD_DELTA = 0, BWD_DKDV = 1, BWD_DQ = 2 };

/* Enqueues a backward kernel whose work-items are independent and guarded
 * past the end of dimension 0. Work-groups are explicit: a CPU runtime left
 * to choose makes groups of thousands of work-items, each with its own
 * private arrays on one thread's stack (PoCL overflows it); a CPU runs one
 * work-item per group, a GPU 64 (dimension 0 rounded up to them). */
static clattn_status bwd_enqueue(clattn_plan_t plan, cl_kernel kernel,
                                 cl_uint dims, const size_t *global,
                                 cl_uint nwait, const cl_event *wait,
                                 cl_event *event) {
  size_t g[3] = {1, 1, 1}, l[3] = {1, 1, 1};
  for (cl_uint i = 0; i < dims; i++)
    g[i] = global[i];
  if (!plan->ctx->profile.is_cpu) {
    l[0] = plan->ctx->profile.max_work_group_size < 64
               ? plan->ctx->profile.max_work_group_size
               : 64;
    g[0] = clattn__round_up(g[0], l[0]);
  }
  return clattn__enqueue(plan, kernel, dims, g, l, nwait, wait, event);
}

/* The widest float vector the device runs natively, at most 16. */
static int native_width(const clattn_device_profile *dev) {
  cl_uint w = dev->native_vector_width_float;
  if (!dev->is_cpu)
    return 4;
  return w >= 16 ? 16 : w >= 8 ? 8 : 4;
}

static clattn_status flash_backward_create(clattn_plan_t plan) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  const clattn_device_profile *dev = &ctx->profile;
  clattn_status st = CLATTN_SUCCESS;
  int vec = clattn__pick_vec(p->dim, p->dim_v, native_width(dev));
  /* A CPU work-item keeps a few rows' gradients in registers; a GPU wants
   * one row per work-item for parallelism. */
  int block = dev->is_cpu ? 4 : 1;
  char options[512];
  snprintf(options, sizeof options,
           "%s -D HEAD_DIM=%zu -D HEAD_DIM_V=%zu -D CAUSAL=%d -D SIGMOID=%d "
           "-D VEC=%d -D BLOCK_M=%d -D BLOCK_N=%d",
           clattn__dtype_options(p->dtype), p->dim, p->dim_v, p->causal,
           p->variant == CLATTN_VARIANT_SIGMOID, vec, block, block);
  static const char *const files[] = {"common.cl", "flash_bwd.cl"};
  static const char *const names[] = {"clattn_bwd_delta", "clattn_bwd_dkdv",
                                      "clattn_bwd_dq"};
  cl_program program = NULL;
  CLATTN_CHECK(clattn__program_get(ctx, files, 2, options, &program));
  for (size_t i = 0; i < 3; i++) {
    cl_int err = CL_SUCCESS;
    plan->bwd_kernels[i] = clCreateKernel(program, names[i], &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
    plan->nbwd = i + 1;
  }
  if (p->variant == CLATTN_VARIANT_SOFTMAX) {
    size_t bytes = 0;
    int fits = CLATTN_SIZE_PRODUCT(&bytes, p->batch, p->heads_q, p->seq_q,
                                   sizeof(float));
    CLATTN_CHECK(
        clattn__workspace_size(plan, "backward row sums", fits, bytes));
    cl_int err = CL_SUCCESS;
    plan->bwd_workspace[0] =
        clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateBuffer");
    plan->bwd_workspace_bytes = bytes;
  }
cleanup:
  return st;
}

/* bufs: q, k, v, o, lse, dout, dq, dk, dv. */
static clattn_status flash_backward_enqueue(clattn_plan_t plan,
                                            const cl_mem *bufs, cl_uint nwait,
                                            const cl_event *wait,
                                            cl_event *event) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  clattn_status st = CLATTN_SUCCESS;
  cl_event ev[3] = {NULL, NULL, NULL};
  cl_int err = CL_SUCCESS;
  int softmax = p->variant == CLATTN_VARIANT_SOFTMAX;
  if (softmax) {
    cl_kernel kd = plan->bwd_kernels[BWD_DELTA];
    cl_ulong rows = p->batch * p->heads_q * p->seq_q;
    CLATTN_SET_ARG(err, kd, 0, sizeof(cl_mem), &bufs[3]);
    CLATTN_SET_ARG(err, kd, 1, sizeof(cl_mem), &bufs[5]);
    CLATTN_SET_ARG(err, kd, 2, sizeof(cl_mem), &plan->bwd_workspace[0]);
    CLATTN_SET_ARG(err, kd, 3, sizeof(cl_ulong), &rows);
    CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
    size_t global = (size_t)rows;
    CLATTN_CHECK(bwd_enqueue(plan, kd, 1, &global, nwait, wait, &ev[0]));
    nwait = 1;
    wait = &ev[0];
  }
  const float log2e = 1.4426950408889634f;
  cl_int nq = (cl_int)p->seq_q, nk = (cl_int)p->seq_k;
  cl_int hq = (cl_int)p->heads_q, hkv = (cl_int)p->heads_kv;
  cl_float scale = p->scale, scale_log2 = p->scale * log2e;
  cl_float bias_log2 =
      p->variant == CLATTN_VARIANT_SIGMOID ? p->bias * log2e : 0.0f;
  const cl_mem none = NULL;
  const cl_mem *lse = softmax ? &bufs[4] : &none;
  const cl_mem *delta = softmax ? &plan->bwd_workspace[0] : &none;
  for (int which = BWD_DKDV; which <= BWD_DQ; which++) {
    cl_kernel kern = plan->bwd_kernels[which];
    cl_uint a = 0;
    for (int i = 0; i < 3; i++)
      CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &bufs[i]);
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &bufs[5]);
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), lse);
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), delta);
    if (which == BWD_DKDV) {
      CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &bufs[7]);
      CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &bufs[8]);
    } else {
      CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &bufs[6]);
    }
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &nq);
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &nk);
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &hq);
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &hkv);
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_float), &scale_log2);
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_float), &scale);
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_float), &bias_log2);
    CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
    size_t block = plan->ctx->profile.is_cpu ? 4 : 1;
    size_t global[3] = {which == BWD_DKDV ? (p->seq_k + block - 1) / block
                                          : (p->seq_q + block - 1) / block,
                        which == BWD_DKDV ? p->heads_kv : p->heads_q, p->batch};
    CLATTN_CHECK(bwd_enqueue(plan, kern, 3, global, nwait, wait, &ev[which]));
  }
  CLATTN_CL_CHECK(ctx,
                  clEnqueueMarkerWithWaitList(ctx->queue, 2, &ev[1], event),
                  "clEnqueueMarkerWithWaitList");
cleanup:
  for (int i = 0; i < 3; i++) {
    if (ev[i])
      clReleaseEvent(ev[i]);
  }
  return st;
}

/* ---- Linear attention and cosFormer ------------------------------------ */

enum { LB_KSTATE = 0, LB_SCAN, LB_QUERY, LB_QSTATE, LB_KEY, LB_COUNT };

#define LB_CHUNK 64

/* Chunk counts of the key-side and query-side states: keys in chunks of
 * LB_CHUNK; queries grouped by the chunk of their last key when causal,
 * else by their own index. */
static void linear_chunks(const clattn__problem *p, size_t *kc, size_t *qc) {
  *kc = (p->seq_k + LB_CHUNK - 1) / LB_CHUNK;
  *qc = p->causal ? *kc : (p->seq_q + LB_CHUNK - 1) / LB_CHUNK;
}

static clattn_status linear_backward_create(clattn_plan_t plan) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  clattn_status st = CLATTN_SUCCESS;
  int cos = p->variant == CLATTN_VARIANT_COSFORMER;
  char options[512];
  snprintf(options, sizeof options,
           "%s -D HEAD_DIM=%zu -D HEAD_DIM_V=%zu -D CAUSAL=%d -D COSFORMER=%d "
           "-D FEATURE_MAP=%d -D CHUNK=%d -D VEC=1",
           clattn__dtype_options(p->dtype), p->dim, p->dim_v, p->causal, cos,
           p->feature_map == CLATTN_FEATURE_MAP_RELU ? 2 : 1, LB_CHUNK);
  static const char *const files[] = {"common.cl", "linear_bwd.cl"};
  static const char *const names[] = {"clattn_lbwd_kstate", "clattn_lbwd_scan",
                                      "clattn_lbwd_query", "clattn_lbwd_qstate",
                                      "clattn_lbwd_key"};
  cl_program program = NULL;
  CLATTN_CHECK(clattn__program_get(ctx, files, 2, options, &program));
  for (size_t i = 0; i < LB_COUNT; i++) {
    cl_int err = CL_SUCCESS;
    plan->bwd_kernels[i] = clCreateKernel(program, names[i], &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
    plan->nbwd = i + 1;
  }
  /* Workspace: key-side and query-side chunk states, then g_i and c_i of
   * every query row. */
  size_t kc, qc, feat = p->dim * (cos ? 2u : 1u);
  linear_chunks(p, &kc, &qc);
  size_t bhk = p->batch * p->heads_kv, rows = p->batch * p->heads_q * p->seq_q;
  size_t bytes[3];
  int fits = CLATTN_SIZE_PRODUCT(&bytes[0], feat, p->dim_v + 1, sizeof(float),
                                 bhk, kc + 1);
  fits &= CLATTN_SIZE_PRODUCT(&bytes[1], feat, p->dim_v + 1, sizeof(float), bhk,
                              qc + 1);
  fits &= CLATTN_SIZE_PRODUCT(&bytes[2], rows, p->dim_v + 1, sizeof(float));
  size_t largest = bytes[0] > bytes[1] ? bytes[0] : bytes[1];
  CLATTN_CHECK(clattn__workspace_size(plan, "backward chunk states", fits,
                                      largest > bytes[2] ? largest : bytes[2]));
  for (size_t i = 0; i < 3; i++) {
    cl_int err = CL_SUCCESS;
    plan->bwd_workspace[i] =
        clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes[i], NULL, &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateBuffer");
    plan->bwd_workspace_bytes += bytes[i];
  }
cleanup:
  return st;
}

/* bufs: q, k, v, o, lse, dout, dq, dk, dv. */
static clattn_status linear_backward_enqueue(clattn_plan_t plan,
                                             const cl_mem *bufs, cl_uint nwait,
                                             const cl_event *wait,
                                             cl_event *event) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  clattn_status st = CLATTN_SUCCESS;
  cl_int err = CL_SUCCESS;
  cl_event ev[6] = {NULL};
  const cl_mem ks = plan->bwd_workspace[0], qs = plan->bwd_workspace[1];
  const cl_mem gc = plan->bwd_workspace[2];
  int cos = p->variant == CLATTN_VARIANT_COSFORMER;
  size_t kc, qc, feat = p->dim * (cos ? 2u : 1u);
  linear_chunks(p, &kc, &qc);
  size_t bhk = p->batch * p->heads_kv;
  cl_int nq = (cl_int)p->seq_q, nk = (cl_int)p->seq_k;
  cl_int hq = (cl_int)p->heads_q, hkv = (cl_int)p->heads_kv;
  cl_int ikc = (cl_int)kc, iqc = (cl_int)qc, fwd = 0, rev = 1;
  cl_float eps = p->eps, hinv = (cl_float)(0.5 / (double)p->cos_m);
  cl_kernel *kn = plan->bwd_kernels;
  cl_uint a = 0;
  /* 1: key chunk sums; 2: their exclusive prefix. */
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 0, sizeof(cl_mem), &bufs[1]);
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 1, sizeof(cl_mem), &bufs[2]);
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 2, sizeof(cl_mem), &ks);
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 3, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 4, sizeof(cl_int), &ikc);
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 5, sizeof(cl_float), &hinv);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t g1[3] = {feat, kc, bhk};
  CLATTN_CHECK(bwd_enqueue(plan, kn[LB_KSTATE], 3, g1, nwait, wait, &ev[0]));
  size_t gs[2] = {feat * (p->dim_v + 1), bhk};
  CLATTN_SET_ARG(err, kn[LB_SCAN], 0, sizeof(cl_mem), &ks);
  CLATTN_SET_ARG(err, kn[LB_SCAN], 1, sizeof(cl_int), &ikc);
  CLATTN_SET_ARG(err, kn[LB_SCAN], 2, sizeof(cl_int), &fwd);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  CLATTN_CHECK(bwd_enqueue(plan, kn[LB_SCAN], 2, gs, 1, &ev[0], &ev[1]));
  /* 3: per query row. */
  const cl_mem qargs[] = {bufs[0], bufs[1], bufs[2], bufs[5], ks, gc, bufs[6]};
  for (a = 0; a < 7; a++)
    CLATTN_SET_ARG(err, kn[LB_QUERY], a, sizeof(cl_mem), &qargs[a]);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_int), &nq);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_int), &hq);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_int), &ikc);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_float), &eps);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_float), &hinv);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t g3[3] = {p->seq_q, p->heads_q, p->batch};
  CLATTN_CHECK(bwd_enqueue(plan, kn[LB_QUERY], 3, g3, 1, &ev[1], &ev[2]));
  /* 4: query chunk sums per kv head; 5: their exclusive suffix. */
  a = 0;
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_mem), &bufs[0]);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_mem), &gc);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_mem), &qs);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_int), &nq);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_int), &hq);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_int), &iqc);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_float), &hinv);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t g4[3] = {feat, qc, bhk};
  CLATTN_CHECK(bwd_enqueue(plan, kn[LB_QSTATE], 3, g4, 1, &ev[2], &ev[3]));
  CLATTN_SET_ARG(err, kn[LB_SCAN], 0, sizeof(cl_mem), &qs);
  CLATTN_SET_ARG(err, kn[LB_SCAN], 1, sizeof(cl_int), &iqc);
  CLATTN_SET_ARG(err, kn[LB_SCAN], 2, sizeof(cl_int), &rev);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  CLATTN_CHECK(bwd_enqueue(plan, kn[LB_SCAN], 2, gs, 1, &ev[3], &ev[4]));
  /* 6: per key row. */
  const cl_mem kargs[] = {bufs[0], bufs[1], bufs[2], gc, qs, bufs[7], bufs[8]};
  for (a = 0; a < 7; a++)
    CLATTN_SET_ARG(err, kn[LB_KEY], a, sizeof(cl_mem), &kargs[a]);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_int), &nq);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_int), &hq);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_int), &iqc);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_float), &hinv);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t g6[3] = {p->seq_k, p->heads_kv, p->batch};
  CLATTN_CHECK(bwd_enqueue(plan, kn[LB_KEY], 3, g6, 1, &ev[4], event));
cleanup:
  for (int i = 0; i < 6; i++) {
    if (ev[i])
      clReleaseEvent(ev[i]);
  }
  return st;
}

clattn_status clattn__backward_enqueue(clattn_plan_t plan, const cl_mem *bufs,
                                       cl_uint nwait, const cl_event *wait,
                                       cl_event *event) {
  int linear = plan->p.variant == CLATTN_VARIANT_LINEAR ||
               plan->p.variant == CLATTN_VARIANT_COSFORMER;
  if (plan->nbwd == 0) {
    clattn_status st =
        linear ? linear_backward_create(plan) : flash_backward_create(plan);
    if (st != CLATTN_SUCCESS) {
      for (size_t i = 0; i < plan->nbwd; i++)
        clReleaseKernel(plan->bwd_kernels[i]);
      plan->nbwd = 0;
      for (size_t i = 0; i < 3; i++) {
        if (plan->bwd_workspace[i])
          clReleaseMemObject(plan->bwd_workspace[i]);
        plan->bwd_workspace[i] = NULL;
      }
      plan->bwd_workspace_bytes = 0;
      return st;
    }
  }
  return linear ? linear_backward_enqueue(plan, bufs, nwait, wait, event)
                : flash_backward_enqueue(plan, bufs, nwait, wait, event);
}
