/*
 * plan.c - creating, running and destroying plans; the buffer checks and the
 * host-pointer convenience call.
 */
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const clattn__family *family_of(clattn_variant v) {
  return v == CLATTN_VARIANT_SOFTMAX || v == CLATTN_VARIANT_SIGMOID
             ? &clattn__flash_family
             : &clattn__linear_family;
}

/* Releases what a family's create() made, so that it can run again. */
static void plan_reset(clattn_plan_t plan) {
  for (size_t i = 0; i < plan->nkernels; i++) {
    if (plan->kernels[i])
      clReleaseKernel(plan->kernels[i]);
    plan->kernels[i] = NULL;
  }
  plan->nkernels = 0;
  if (plan->workspace)
    clReleaseMemObject(plan->workspace);
  plan->workspace = NULL;
  plan->workspace_bytes = 0;
  memset(&plan->tiles, 0, sizeof plan->tiles);
}

/* Tiles come from, in order: the descriptor, CLATTN_TUNE, the tuning file,
 * the built-in table, the family's heuristic. A spec from the file or the
 * table that the family refuses is passed over with a warning. */
static clattn_status create_kernels(clattn_plan_t plan, const char *spec) {
  clattn_context_t ctx = plan->ctx;
  char found[512];
  const char *origin = "override";
  if (!spec) {
    spec = getenv("CLATTN_TUNE");
    origin = "CLATTN_TUNE";
    if (spec && !*spec)
      spec = NULL;
  }
  if (!spec && clattn__tune_lookup(&ctx->profile, &plan->p, found, sizeof found,
                                   plan->warning, sizeof plan->warning)) {
    spec = found;
    origin = "tuning file";
  } else if (!spec && clattn__builtin_lookup(&ctx->profile, &plan->p, found,
                                             sizeof found)) {
    spec = found;
    origin = "builtin";
  }
  plan->tiles.origin = origin;
  clattn_status st = plan->family->create(plan, spec);
  if (st == CLATTN_ERROR_INVALID_DESCRIPTOR && spec == found) {
    snprintf(plan->warning, sizeof plan->warning,
             "%s tiles \"%.160s\" passed over: %.300s", origin, found,
             clattn__thread_error());
    clattn__log("%s", plan->warning);
    plan_reset(plan);
    st = plan->family->create(plan, NULL);
  }
  return st;
}

CLATTN_API clattn_status clattn_plan_create(clattn_context_t ctx,
                                            const clattn_desc *desc,
                                            clattn_plan_t *out) {
  if (out)
    *out = NULL;
  if (!ctx)
    return CLATTN_ERROR_INVALID_VALUE;
  if (!desc || !out)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_plan_create: desc and out must not be NULL");
  if (!ctx->has_profile)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_plan_create: the context was not created "
                        "successfully");
  clattn_status st = CLATTN_SUCCESS;
  clattn_plan_t plan = calloc(1, sizeof *plan);
  if (!plan)
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                        "out of memory creating a plan");
  plan->ctx = ctx;
  CLATTN_CHECK(clattn__problem_resolve(ctx, desc, &plan->p));
  if (mtx_init(&plan->lock, mtx_plain) != thrd_success) {
    st = clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                      "could not create the plan's mutex");
    goto cleanup;
  }
  plan->lock_ok = 1;
  plan->family = family_of(plan->p.variant);
  CLATTN_CHECK(create_kernels(plan, desc->tiles));
  *out = plan;
  plan = NULL;
cleanup:
  clattn_plan_destroy(plan);
  return st;
}

CLATTN_API clattn_status clattn_tune_candidate(clattn_context_t ctx,
                                               const clattn_desc *desc,
                                               size_t index, char *buf,
                                               size_t size) {
  if (!ctx)
    return CLATTN_ERROR_INVALID_VALUE;
  if (!desc || !buf || size == 0)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_tune_candidate: desc and buf must be given");
  if (!ctx->has_profile)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_tune_candidate: the context was not created "
                        "successfully");
  clattn__problem p;
  clattn_status st = clattn__problem_resolve(ctx, desc, &p);
  if (st != CLATTN_SUCCESS)
    return st;
  const clattn__family *fam = family_of(p.variant);
  if (!fam->candidate || !fam->candidate(&p, &ctx->profile, index, buf, size))
    return CLATTN_ERROR_INVALID_VALUE;
  return CLATTN_SUCCESS;
}

CLATTN_API void clattn_plan_destroy(clattn_plan_t plan) {
  if (!plan)
    return;
  for (size_t i = 0; i < plan->nkernels; i++) {
    if (plan->kernels[i])
      clReleaseKernel(plan->kernels[i]);
  }
  if (plan->workspace)
    clReleaseMemObject(plan->workspace);
  if (plan->last)
    clReleaseEvent(plan->last);
  if (plan->lock_ok)
    mtx_destroy(&plan->lock);
  free(plan);
}

static size_t dtype_size(clattn_dtype dtype) {
  return dtype == CLATTN_DTYPE_F16 ? 2 : 4;
}

/* Bytes of each tensor: q, k, v, o, lse. The descriptor's validation made
 * sure they fit size_t. */
static void tensor_bytes(const clattn__problem *p, size_t bytes[5]) {
  size_t es = dtype_size(p->dtype);
  CLATTN_SIZE_PRODUCT(&bytes[0], p->batch, p->heads_q, p->seq_q, p->dim, es);
  CLATTN_SIZE_PRODUCT(&bytes[1], p->batch, p->heads_kv, p->seq_k, p->dim, es);
  CLATTN_SIZE_PRODUCT(&bytes[2], p->batch, p->heads_kv, p->seq_k, p->dim_v, es);
  CLATTN_SIZE_PRODUCT(&bytes[3], p->batch, p->heads_q, p->seq_q, p->dim_v, es);
  CLATTN_SIZE_PRODUCT(&bytes[4], p->batch, p->heads_q, p->seq_q, sizeof(float));
}

clattn_status clattn__workspace_size(clattn_plan_t plan, const char *what,
                                     int fits, size_t bytes) {
  cl_ulong most = plan->ctx->profile.max_mem_alloc_size;
  if (!fits)
    return clattn__fail(plan->ctx, CLATTN_ERROR_OUT_OF_RESOURCES,
                        "the workspace (%s) needs more than %zu bytes, the "
                        "most a size_t counts",
                        what, (size_t)SIZE_MAX);
  if (most > 0 && (cl_ulong)bytes > most)
    return clattn__fail(plan->ctx, CLATTN_ERROR_OUT_OF_RESOURCES,
                        "the workspace (%s) needs %zu bytes; the device "
                        "allocates at most %llu bytes in one buffer",
                        what, bytes, (unsigned long long)most);
  return CLATTN_SUCCESS;
}

static clattn_status check_buffer(clattn_plan_t plan, cl_mem mem,
                                  const char *name, size_t need) {
  size_t have = 0;
  cl_context mctx = NULL;
  cl_int err = clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof have, &have, NULL);
  if (err == CL_SUCCESS)
    err = clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof mctx, &mctx, NULL);
  if (err != CL_SUCCESS)
    return clattn__fail(plan->ctx, CLATTN_ERROR_INVALID_MEM_OBJECT,
                        "%s is not a valid buffer: %s (%d)", name,
                        clattn__cl_error_name(err), (int)err);
  if (mctx != plan->ctx->context)
    return clattn__fail(plan->ctx, CLATTN_ERROR_INVALID_MEM_OBJECT,
                        "%s belongs to another OpenCL context", name);
  if (have < need)
    return clattn__fail(plan->ctx, CLATTN_ERROR_INVALID_BUFFER_SIZE,
                        "%s holds %zu bytes; the shapes need %zu", name, have,
                        need);
  return CLATTN_SUCCESS;
}

CLATTN_API clattn_status clattn_plan_run(clattn_plan_t plan, cl_mem q, cl_mem k,
                                         cl_mem v, cl_mem o, cl_mem lse,
                                         cl_uint num_events,
                                         const cl_event *wait_list,
                                         cl_event *event) {
  if (!plan)
    return CLATTN_ERROR_INVALID_VALUE;
  clattn_context_t ctx = plan->ctx;
  if (!q || !k || !v || !o)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_plan_run: q, k, v and o must not be NULL");
  if ((num_events > 0) != (wait_list != NULL))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_plan_run: num_events and wait_list disagree");
  if (lse && plan->p.variant != CLATTN_VARIANT_SOFTMAX)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_plan_run: lse is written by softmax only, not "
                        "%s",
                        clattn_variant_name(plan->p.variant));
  size_t bytes[5];
  tensor_bytes(&plan->p, bytes);
  clattn_status st = CLATTN_SUCCESS;
  CLATTN_CHECK(check_buffer(plan, q, "q", bytes[0]));
  CLATTN_CHECK(check_buffer(plan, k, "k", bytes[1]));
  CLATTN_CHECK(check_buffer(plan, v, "v", bytes[2]));
  CLATTN_CHECK(check_buffer(plan, o, "o", bytes[3]));
  if (lse)
    CLATTN_CHECK(check_buffer(plan, lse, "lse", bytes[4]));
  /* Runs of one plan share its workspace: each run waits for the previous
   * one, so they stay ordered even on an out-of-order queue. */
  cl_event waits[CLATTN_MAX_WAIT];
  const cl_event *wl = wait_list;
  cl_uint nw = num_events;
  cl_event done = NULL;
  mtx_lock(&plan->lock);
  if (plan->last && plan->workspace) {
    if (num_events + 1 > CLATTN_MAX_WAIT) {
      mtx_unlock(&plan->lock);
      st = clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_plan_run: at most %d events in the wait list",
                        CLATTN_MAX_WAIT - 1);
      goto cleanup;
    }
    for (cl_uint i = 0; i < num_events; i++)
      waits[i] = wait_list[i];
    waits[num_events] = plan->last;
    wl = waits;
    nw = num_events + 1;
  }
  st = plan->family->enqueue(plan, q, k, v, o, lse, nw, wl, &done);
  if (st == CLATTN_SUCCESS) {
    if (plan->last)
      clReleaseEvent(plan->last);
    plan->last = done;
    if (event) {
      clRetainEvent(done);
      *event = done;
    }
  }
  mtx_unlock(&plan->lock);
cleanup:
  return st;
}

clattn_status clattn__enqueue(clattn_plan_t plan, cl_kernel kernel,
                              cl_uint work_dim, const size_t *global,
                              const size_t *local, cl_uint nwait,
                              const cl_event *wait, cl_event *event) {
  cl_int err = clEnqueueNDRangeKernel(plan->ctx->queue, kernel, work_dim, NULL,
                                      global, local, nwait, wait, event);
  if (err != CL_SUCCESS)
    return clattn__fail_cl(plan->ctx, err, "clEnqueueNDRangeKernel");
  return CLATTN_SUCCESS;
}

/* Uploads a float32 host array as the plan's dtype. */
static clattn_status upload(clattn_plan_t plan, const float *src, size_t count,
                            cl_mem *out) {
  clattn_context_t ctx = plan->ctx;
  size_t es = dtype_size(plan->p.dtype);
  void *tmp = NULL;
  const void *host = src;
  if (plan->p.dtype == CLATTN_DTYPE_F16) {
    tmp = malloc(count * es);
    if (!tmp)
      return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                          "out of memory converting to f16");
    clattn_f32_to_f16(src, tmp, count);
    host = tmp;
  }
  cl_int err = CL_SUCCESS;
  *out = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                        count * es, (void *)host, &err);
  free(tmp);
  if (err != CL_SUCCESS) {
    *out = NULL;
    return clattn__fail_cl(ctx, err, "clCreateBuffer");
  }
  return CLATTN_SUCCESS;
}

/* Reads a buffer of count elements (size es each) into float32 dst. */
static clattn_status download(clattn_plan_t plan, cl_mem mem, size_t count,
                              size_t es, float *dst) {
  clattn_context_t ctx = plan->ctx;
  void *tmp = es == sizeof(float) ? (void *)dst : malloc(count * es);
  if (!tmp)
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                        "out of memory converting from f16");
  cl_int err = clEnqueueReadBuffer(ctx->queue, mem, CL_TRUE, 0, count * es, tmp,
                                   0, NULL, NULL);
  if (err == CL_SUCCESS && tmp != (void *)dst)
    clattn_f16_to_f32(tmp, dst, count);
  if (tmp != (void *)dst)
    free(tmp);
  if (err != CL_SUCCESS)
    return clattn__fail_cl(ctx, err, "clEnqueueReadBuffer");
  return CLATTN_SUCCESS;
}

CLATTN_API clattn_status clattn_plan_run_host(clattn_plan_t plan,
                                              const float *q, const float *k,
                                              const float *v, float *o,
                                              float *lse) {
  if (!plan)
    return CLATTN_ERROR_INVALID_VALUE;
  clattn_context_t ctx = plan->ctx;
  if (!q || !k || !v || !o)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_plan_run_host: q, k, v and o must not be "
                        "NULL");
  const clattn__problem *p = &plan->p;
  size_t es = dtype_size(p->dtype);
  size_t bytes[5];
  tensor_bytes(p, bytes);
  clattn_status st = CLATTN_SUCCESS;
  cl_mem bq = NULL, bk = NULL, bv = NULL, bo = NULL, bl = NULL;
  cl_event done = NULL;
  cl_int err = CL_SUCCESS;
  CLATTN_CHECK(upload(plan, q, bytes[0] / es, &bq));
  CLATTN_CHECK(upload(plan, k, bytes[1] / es, &bk));
  CLATTN_CHECK(upload(plan, v, bytes[2] / es, &bv));
  bo = clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, bytes[3], NULL, &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateBuffer");
  if (lse) {
    bl = clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, bytes[4], NULL, &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateBuffer");
  }
  CLATTN_CHECK(clattn_plan_run(plan, bq, bk, bv, bo, bl, 0, NULL, &done));
  CLATTN_CL_CHECK(ctx, clWaitForEvents(1, &done), "clWaitForEvents");
  CLATTN_CHECK(download(plan, bo, bytes[3] / es, es, o));
  if (lse)
    CLATTN_CHECK(
        download(plan, bl, bytes[4] / sizeof(float), sizeof(float), lse));
cleanup:
  if (done)
    clReleaseEvent(done);
  /* Buffers are released only after the queue is done with them. */
  if (st != CLATTN_SUCCESS && ctx->queue)
    clFinish(ctx->queue);
  cl_mem all[] = {bq, bk, bv, bo, bl};
  for (size_t i = 0; i < 5; i++) {
    if (all[i])
      clReleaseMemObject(all[i]);
  }
  return st;
}

CLATTN_API size_t clattn_plan_device_bytes(clattn_plan_t plan) {
  return plan ? plan->workspace_bytes : 0;
}

CLATTN_API size_t clattn_plan_describe(clattn_plan_t plan, char *buf,
                                       size_t size) {
  char line[1024];
  if (!plan) {
    line[0] = '\0';
  } else {
    int n = snprintf(line, sizeof line, "%s %s shape=%s",
                     clattn_variant_name(plan->p.variant),
                     clattn_dtype_name(plan->p.dtype), plan->shape);
    for (size_t i = 0;
         i < plan->tiles.count && n > 0 && (size_t)n < sizeof line; i++)
      n += snprintf(line + n, sizeof line - (size_t)n, " %s=%d",
                    plan->tiles.names[i], plan->tiles.values[i]);
    if (n > 0 && (size_t)n < sizeof line)
      n += snprintf(line + n, sizeof line - (size_t)n, " (from %s)",
                    plan->tiles.source);
    if (plan->warning[0] && n > 0 && (size_t)n < sizeof line)
      snprintf(line + n, sizeof line - (size_t)n, "; %s", plan->warning);
  }
  return clattn__copy_out(buf, size, line);
}
