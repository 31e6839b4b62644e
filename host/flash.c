/*
 * flash.c - softmax and sigmoid attention: tile choice, program build and
 * launch of cl/softmax.cl and cl/sigmoid.cl.
 */
#include "plan.h"
#include "program.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Widest vector in 16, 8, 4, 2, 1 that divides both head dimensions; wide
 * padded vectors beat narrow exact ones once D reaches 16. */
static int pick_vec(size_t d, size_t dv, int widest) {
  for (int v = widest; v > 1; v /= 2) {
    if (d % (size_t)v == 0 && dv % (size_t)v == 0)
      return v;
  }
  return d >= 16 && dv >= 16 && widest >= 8 ? 8 : 1;
}

/* Keys padded to a whole number of key vectors in the key shape. */
static size_t padded_keys(const clattn_plan_t plan) {
  int kv = clattn__tiles_get(&plan->tiles, "KEYS_VEC");
  return clattn__round_up(plan->p.seq_k, (size_t)(kv > 0 ? kv : 1));
}

static clattn_status flash_create(clattn_plan_t plan, const char *spec) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  const clattn_device_profile *dev = &ctx->profile;
  clattn_status st = CLATTN_SUCCESS;

  /* A CPU runtime wants long vector loops and several rows per work-item
   * (the key shape); a GPU wants many work-items in groups that fill its
   * compute units (the row shape). */
  clattn__tiles *t = &plan->tiles;
  if (dev->is_cpu) {
    clattn__tiles_add(t, "KEYS_VEC", 16);
    clattn__tiles_add(t, "BLOCK_M", 8);
    clattn__tiles_add(t, "BLOCK_N", 16);
    clattn__tiles_add(t, "VEC", pick_vec(p->dim, p->dim_v, 16));
    clattn__tiles_add(t, "WG", 1);
  } else {
    clattn__tiles_add(t, "KEYS_VEC", 0);
    clattn__tiles_add(t, "BLOCK_M", 1);
    clattn__tiles_add(t, "BLOCK_N", 8);
    clattn__tiles_add(t, "VEC", pick_vec(p->dim, p->dim_v, 4));
    clattn__tiles_add(t, "WG", 64);
  }
  t->source = "heuristic";
  CLATTN_CHECK(clattn__tiles_override(ctx, t, spec));
  int vec = clattn__tiles_get(t, "VEC");
  int keys_vec = clattn__tiles_get(t, "KEYS_VEC");
  if (vec != 1 && vec != 2 && vec != 4 && vec != 8 && vec != 16)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: VEC must be 1, 2, 4, 8 "
                        "or 16");
  if (keys_vec != 0 && keys_vec != 8 && keys_vec != 16)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: KEYS_VEC must be 0 (row "
                        "shape), 8 or 16 (key shape)");
  if (clattn__tiles_get(t, "BLOCK_M") < 1 ||
      clattn__tiles_get(t, "BLOCK_M") > 64 ||
      clattn__tiles_get(t, "BLOCK_N") < 1 || clattn__tiles_get(t, "WG") < 1)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: BLOCK_M must be 1..64, "
                        "BLOCK_N and WG at least 1");
  plan->shape = keys_vec ? "key" : "row";

  int sigmoid = p->variant == CLATTN_VARIANT_SIGMOID;
  char options[512];
  snprintf(options, sizeof options,
           "-D CLATTN_F16=%d -D HEAD_DIM=%zu -D HEAD_DIM_V=%zu -D CAUSAL=%d",
           p->dtype == CLATTN_DTYPE_F16, p->dim, p->dim_v, p->causal);
  /* WG is a launch parameter, not a kernel macro. */
  clattn__tiles kt = *t;
  kt.count = 0;
  for (size_t i = 0; i < t->count; i++) {
    if (strcmp(t->names[i], "WG") != 0)
      clattn__tiles_add(&kt, t->names[i], t->values[i]);
  }
  clattn__tiles_options(&kt, options, sizeof options);
  const char *files[] = {"common.cl", "flash.cl",
                         sigmoid ? "sigmoid.cl" : "softmax.cl"};
  cl_program program = NULL;
  CLATTN_CHECK(clattn__program_get(ctx, files, 3, options, &program));
  cl_int err = CL_SUCCESS;
  const char *name =
      sigmoid ? (keys_vec ? "clattn_sigmoid_fwd_kt" : "clattn_sigmoid_fwd")
              : (keys_vec ? "clattn_softmax_fwd_kt" : "clattn_softmax_fwd");
  plan->kernels[0] = clCreateKernel(program, name, &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
  plan->nkernels = 1;
  if (keys_vec) {
    plan->kernels[1] = clCreateKernel(program, "clattn_transpose_k", &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
    plan->nkernels = 2;
    plan->workspace_bytes =
        p->batch * p->heads_kv * p->dim * padded_keys(plan) * sizeof(float);
    plan->workspace = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE,
                                     plan->workspace_bytes, NULL, &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateBuffer(workspace)");
  }

  /* A device may not run the chosen group size with this kernel's register
   * use; fall back to what it can run rather than fail at launch. */
  size_t kwg = 0;
  CLATTN_CL_CHECK(ctx,
                  clGetKernelWorkGroupInfo(plan->kernels[0], ctx->device,
                                           CL_KERNEL_WORK_GROUP_SIZE,
                                           sizeof kwg, &kwg, NULL),
                  "clGetKernelWorkGroupInfo");
  int wg = clattn__tiles_get(t, "WG");
  while (wg > 1 && (size_t)wg > kwg)
    wg /= 2;
  clattn__tiles_add(t, "WG", wg);
cleanup:
  return st;
}

static clattn_status flash_enqueue(clattn_plan_t plan, cl_mem q, cl_mem k,
                                   cl_mem v, cl_mem o, cl_mem lse,
                                   cl_uint nwait, const cl_event *wait,
                                   cl_event *event) {
  const clattn__problem *p = &plan->p;
  clattn_context_t ctx = plan->ctx;
  clattn_status st = CLATTN_SUCCESS;
  cl_kernel kern = plan->kernels[0];
  const float log2e = 1.4426950408889634f;
  const int keys = plan->nkernels == 2;
  cl_int nq = (cl_int)p->seq_q, nk = (cl_int)p->seq_k;
  cl_int nkp = (cl_int)padded_keys(plan);
  cl_int hq = (cl_int)p->heads_q, hkv = (cl_int)p->heads_kv;
  cl_float scale_log2 = p->scale * log2e;
  cl_event transposed = NULL;
  cl_uint a = 0;
  cl_int err = CL_SUCCESS;

  if (keys) {
    cl_kernel tk = plan->kernels[1];
    err |= clSetKernelArg(tk, 0, sizeof(cl_mem), &k);
    err |= clSetKernelArg(tk, 1, sizeof(cl_mem), &plan->workspace);
    err |= clSetKernelArg(tk, 2, sizeof(cl_int), &nk);
    err |= clSetKernelArg(tk, 3, sizeof(cl_int), &nkp);
    CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
    size_t tglobal[2] = {(size_t)nkp, p->batch * p->heads_kv};
    CLATTN_CHECK(
        clattn__enqueue(plan, tk, 2, tglobal, NULL, nwait, wait, &transposed));
    nwait = 1;
    wait = &transposed;
  }
  err |= clSetKernelArg(kern, a++, sizeof(cl_mem), &q);
  err |=
      clSetKernelArg(kern, a++, sizeof(cl_mem), keys ? &plan->workspace : &k);
  err |= clSetKernelArg(kern, a++, sizeof(cl_mem), &v);
  err |= clSetKernelArg(kern, a++, sizeof(cl_mem), &o);
  if (p->variant == CLATTN_VARIANT_SOFTMAX) {
    cl_int write_lse = lse != NULL;
    err |= clSetKernelArg(kern, a++, sizeof(cl_mem), lse ? &lse : NULL);
    err |= clSetKernelArg(kern, a++, sizeof(cl_int), &write_lse);
  }
  err |= clSetKernelArg(kern, a++, sizeof(cl_int), &nq);
  err |= clSetKernelArg(kern, a++, sizeof(cl_int), &nk);
  if (keys)
    err |= clSetKernelArg(kern, a++, sizeof(cl_int), &nkp);
  err |= clSetKernelArg(kern, a++, sizeof(cl_int), &hq);
  err |= clSetKernelArg(kern, a++, sizeof(cl_int), &hkv);
  err |= clSetKernelArg(kern, a++, sizeof(cl_float), &scale_log2);
  if (p->variant == CLATTN_VARIANT_SIGMOID) {
    cl_float bias_log2 = p->bias * log2e;
    err |= clSetKernelArg(kern, a++, sizeof(cl_float), &bias_log2);
  }
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t bm = (size_t)clattn__tiles_get(&plan->tiles, "BLOCK_M");
  size_t wg = (size_t)clattn__tiles_get(&plan->tiles, "WG");
  size_t local[3] = {wg, 1, 1};
  size_t global[3] = {clattn__round_up((p->seq_q + bm - 1) / bm, wg),
                      p->heads_q, p->batch};
  CLATTN_CHECK(
      clattn__enqueue(plan, kern, 3, global, local, nwait, wait, event));
cleanup:
  if (transposed)
    clReleaseEvent(transposed);
  return st;
}

const clattn__family clattn__flash_family = {flash_create, flash_enqueue};
