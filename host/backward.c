/*
 * backward.c - the backward passes: tile choice, program build and launch of
 * cl/flash_bwd.cl (softmax and sigmoid). The kernels and the workspace are
 * made by a plan's first backward run, under the plan's lock.
 */
#include "plan.h"
#include "program.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { BWD_DELTA = 0, BWD_DKDV = 1, BWD_DQ = 2 };

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
    size_t rows = p->batch * p->heads_q * p->seq_q;
    cl_int err = CL_SUCCESS;
    plan->bwd_workspace = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE,
                                         rows * sizeof(float), NULL, &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateBuffer");
    plan->bwd_workspace_bytes = rows * sizeof(float);
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
    CLATTN_SET_ARG(err, kd, 2, sizeof(cl_mem), &plan->bwd_workspace);
    CLATTN_SET_ARG(err, kd, 3, sizeof(cl_ulong), &rows);
    CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
    size_t global = (size_t)rows;
    CLATTN_CHECK(
        clattn__enqueue(plan, kd, 1, &global, NULL, nwait, wait, &ev[0]));
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
  const cl_mem *delta = softmax ? &plan->bwd_workspace : &none;
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
    CLATTN_CHECK(
        clattn__enqueue(plan, kern, 3, global, NULL, nwait, wait, &ev[which]));
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

clattn_status clattn__backward_enqueue(clattn_plan_t plan, const cl_mem *bufs,
                                       cl_uint nwait, const cl_event *wait,
                                       cl_event *event) {
  if (plan->nbwd == 0) {
    clattn_status st = flash_backward_create(plan);
    if (st != CLATTN_SUCCESS) {
      for (size_t i = 0; i < plan->nbwd; i++)
        clReleaseKernel(plan->bwd_kernels[i]);
      plan->nbwd = 0;
      return st;
    }
  }
  return flash_backward_enqueue(plan, bufs, nwait, wait, event);
}
