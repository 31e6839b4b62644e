/*
 * plan.c - creating, running and destroying plans; the buffer checks and the
 * host-pointer convenience call.
 */
#include "plan.h"
#include "program.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int clattn__decode_wanted(const clattn__problem *p) {
  return (p->variant == CLATTN_VARIANT_SOFTMAX ||
          p->variant == CLATTN_VARIANT_SIGMOID) &&
         p->seq_q <= CLATTN__DECODE_MAX_Q;
}

/* Softmax and sigmoid go to decode for few query rows, to flash otherwise;
 * a spec that names a shape (SHAPE=decode, or a flash shape) decides. */
const clattn__family *clattn__family_of(const clattn__problem *p,
                                        const char *spec) {
  if (p->variant != CLATTN_VARIANT_SOFTMAX &&
      p->variant != CLATTN_VARIANT_SIGMOID)
    return &clattn__linear_family;
  size_t len = 0;
  const char *shape = clattn__spec_shape(spec, &len);
  if (shape)
    return len == 6 && strncmp(shape, "decode", 6) == 0 ? &clattn__decode_family
                                                        : &clattn__flash_family;
  return clattn__decode_wanted(p) ? &clattn__decode_family
                                  : &clattn__flash_family;
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
  if (plan->block_mask)
    clReleaseMemObject(plan->block_mask);
  plan->block_mask = NULL;
  plan->block_mask_bytes = 0;
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
  /* The caller's spec may choose the family; one from the tuning file or
   * the table only applies to the problem's own (tune.c matches it so). */
  plan->family = clattn__family_of(&plan->p, spec == found ? NULL : spec);
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

static char *copy_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = malloc(n);
  if (c)
    memcpy(c, s, n);
  return c;
}

/* Copies what the problem borrows from the descriptor: the mods into the
 * plan's heap and the ALiBi slopes, times log2(e) for the kernels' log2
 * domain, into a device buffer. */
static clattn_status keep_pipeline(clattn_plan_t plan) {
  clattn_context_t ctx = plan->ctx;
  clattn__problem *p = &plan->p;
  if (p->score_mod && !(plan->score_mod = copy_string(p->score_mod)))
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                        "out of memory copying score_mod");
  p->score_mod = plan->score_mod;
  if (p->mask_mod && !(plan->mask_mod = copy_string(p->mask_mod)))
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                        "out of memory copying mask_mod");
  p->mask_mod = plan->mask_mod;
  if (p->alibi) {
    float *scaled = malloc(p->heads_q * sizeof(float));
    if (!scaled)
      return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                          "out of memory copying alibi_slopes");
    for (size_t h = 0; h < p->heads_q; h++)
      scaled[h] = p->alibi_slopes[h] * 1.4426950408889634f;
    clattn_status st =
        clattn__upload(ctx, CLATTN_DTYPE_F32, scaled, p->heads_q, &plan->alibi);
    free(scaled);
    if (st != CLATTN_SUCCESS)
      return st;
  }
  p->alibi_slopes = NULL;
  return CLATTN_SUCCESS;
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
  CLATTN_CHECK(keep_pipeline(plan));
  if (mtx_init(&plan->lock, mtx_plain) != thrd_success) {
    st = clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                      "could not create the plan's mutex");
    goto cleanup;
  }
  plan->lock_ok = 1;
  CLATTN_CHECK(create_kernels(plan, desc->tiles));
  *out = plan;
  plan = NULL;
cleanup:
  clattn_plan_destroy(plan);
  return st;
}

CLATTN_API clattn_status clattn_desc_check(clattn_context_t ctx,
                                           const clattn_desc *desc, char *msg,
                                           size_t size) {
  clattn__copy_out(msg, size, "");
  if (!desc) {
    clattn__copy_out(msg, size, "clattn_desc_check: desc must not be NULL");
    return CLATTN_ERROR_INVALID_VALUE;
  }
  if (ctx && !ctx->has_profile) {
    clattn__copy_out(msg, size,
                     "clattn_desc_check: the context was not created "
                     "successfully");
    return CLATTN_ERROR_INVALID_VALUE;
  }
  /* The checks write their message on a context; a private one with only
   * the device's profile keeps the caller's context and its message
   * untouched, and has no OpenCL object to build with by mistake. */
  struct clattn_context *scratch = calloc(1, sizeof *scratch);
  clattn_plan_t plan = calloc(1, sizeof *plan);
  clattn_status st = CLATTN_ERROR_OUT_OF_HOST_MEMORY;
  if (!scratch || !plan) {
    clattn__copy_out(msg, size, "out of memory checking a descriptor");
    goto cleanup;
  }
  plan->ctx = scratch;
  st = clattn__problem_resolve(scratch, desc, &plan->p);
  if (st == CLATTN_SUCCESS && ctx) {
    /* The same spec clattn_plan_create would insist on: the descriptor's,
     * else CLATTN_TUNE. Tuning-file and built-in specs are passed over when
     * they do not fit, so they cannot make a descriptor invalid. */
    const char *spec = desc->tiles;
    plan->tiles.origin = "override";
    if (!spec) {
      spec = getenv("CLATTN_TUNE");
      plan->tiles.origin = "CLATTN_TUNE";
      if (spec && !*spec)
        spec = NULL;
    }
    scratch->profile = ctx->profile;
    scratch->has_profile = 1;
    st = clattn__family_of(&plan->p, spec)->choose(plan, spec);
  }
  clattn__copy_out(
      msg, size, st != CLATTN_SUCCESS && scratch->error ? scratch->error : "");
cleanup:
  if (scratch)
    free(scratch->error);
  free(scratch);
  free(plan);
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
  const clattn__family *fam = clattn__family_of(&p, desc->tiles);
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
  for (size_t i = 0; i < plan->nbwd; i++) {
    if (plan->bwd_kernels[i])
      clReleaseKernel(plan->bwd_kernels[i]);
  }
  for (size_t i = 0; i < 5; i++) {
    if (plan->bwd_workspace[i])
      clReleaseMemObject(plan->bwd_workspace[i]);
  }
  if (plan->last)
    clReleaseEvent(plan->last);
  if (plan->alibi)
    clReleaseMemObject(plan->alibi);
  if (plan->block_mask)
    clReleaseMemObject(plan->block_mask);
  free(plan->score_mod);
  free(plan->mask_mod);
  if (plan->lock_ok)
    mtx_destroy(&plan->lock);
  free(plan);
}

size_t clattn__dtype_size(clattn_dtype dtype) {
  return clattn_dtype_size(dtype);
}

const char *clattn__dtype_options(clattn_dtype dtype) {
  return dtype == CLATTN_DTYPE_F16    ? "-D CLATTN_F16=1"
         : dtype == CLATTN_DTYPE_BF16 ? "-D CLATTN_BF16=1"
                                      : "-D CLATTN_F16=0";
}

/* The descriptor's validation made sure these fit size_t. */
void clattn__tensor_bytes(const clattn__problem *p, size_t bytes[5]) {
  size_t es = clattn__dtype_size(p->dtype);
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

clattn_status clattn__check_buffer(clattn_context_t ctx, cl_mem mem,
                                   const char *name, size_t need) {
  size_t have = 0;
  cl_context mctx = NULL;
  cl_int err = clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof have, &have, NULL);
  if (err == CL_SUCCESS)
    err = clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof mctx, &mctx, NULL);
  if (err != CL_SUCCESS)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_MEM_OBJECT,
                        "%s is not a valid buffer: %s (%d)", name,
                        clattn__cl_error_name(err), (int)err);
  if (mctx != ctx->context)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_MEM_OBJECT,
                        "%s belongs to another OpenCL context", name);
  if (have < need)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_BUFFER_SIZE,
                        "%s holds %zu bytes; the shapes need %zu", name, have,
                        need);
  return CLATTN_SUCCESS;
}

/* Enqueues a forward (backward = 0) or backward run after the caller's
 * events; bufs holds CLATTN__BUF_COUNT buffers, NULL where unused.
 * Runs of one plan share its workspaces: a run waits for the previous one
 * when a workspace exists, so they stay ordered even on an out-of-order
 * queue. */
static clattn_status run_ordered(clattn_plan_t plan, const char *who,
                                 int backward, const cl_mem *bufs,
                                 cl_uint num_events, const cl_event *wait_list,
                                 cl_event *event) {
  clattn_status st = CLATTN_SUCCESS;
  cl_event waits[CLATTN_MAX_WAIT];
  const cl_event *wl = wait_list;
  cl_uint nw = num_events;
  cl_event done = NULL;
  mtx_lock(&plan->lock);
  if (plan->last && (plan->workspace || backward)) {
    if (num_events + 1 > CLATTN_MAX_WAIT) {
      mtx_unlock(&plan->lock);
      return clattn__fail(plan->ctx, CLATTN_ERROR_INVALID_VALUE,
                          "%s: at most %d events in the wait list", who,
                          CLATTN_MAX_WAIT - 1);
    }
    for (cl_uint i = 0; i < num_events; i++)
      waits[i] = wait_list[i];
    waits[num_events] = plan->last;
    wl = waits;
    nw = num_events + 1;
  }
  if (backward)
    st = clattn__backward_enqueue(plan, bufs, nw, wl, &done);
  else
    st = plan->family->enqueue(plan, bufs, nw, wl, &done);
  if (st == CLATTN_SUCCESS) {
    if (plan->last)
      clReleaseEvent(plan->last);
    plan->last = done;
    if (event) {
      /* Without its own reference the caller's release would free the
       * event the next run waits on. */
      cl_int err = clRetainEvent(done);
      if (err == CL_SUCCESS)
        *event = done;
      else
        st = clattn__fail_cl(plan->ctx, err, "clRetainEvent");
    }
  }
  mtx_unlock(&plan->lock);
  return st;
}

/* Checks the optional length buffers of a run: int32 [B] each. */
static clattn_status check_lens(clattn_plan_t plan, cl_mem lens_q,
                                cl_mem lens_k) {
  clattn_status st = CLATTN_SUCCESS;
  size_t need = plan->p.batch * sizeof(cl_int);
  if (lens_q)
    CLATTN_CHECK(clattn__check_buffer(plan->ctx, lens_q, "seq_lens_q", need));
  if (lens_k)
    CLATTN_CHECK(clattn__check_buffer(plan->ctx, lens_k, "seq_lens_k", need));
cleanup:
  return st;
}

CLATTN_API clattn_status clattn_plan_run_varlen(
    clattn_plan_t plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse,
    cl_mem seq_lens_q, cl_mem seq_lens_k, cl_uint num_events,
    const cl_event *wait_list, cl_event *event) {
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
  clattn__tensor_bytes(&plan->p, bytes);
  clattn_status st = CLATTN_SUCCESS;
  CLATTN_CHECK(clattn__check_buffer(ctx, q, "q", bytes[0]));
  CLATTN_CHECK(clattn__check_buffer(ctx, k, "k", bytes[1]));
  CLATTN_CHECK(clattn__check_buffer(ctx, v, "v", bytes[2]));
  CLATTN_CHECK(clattn__check_buffer(ctx, o, "o", bytes[3]));
  if (lse)
    CLATTN_CHECK(clattn__check_buffer(ctx, lse, "lse", bytes[4]));
  CLATTN_CHECK(check_lens(plan, seq_lens_q, seq_lens_k));
  cl_mem bufs[CLATTN__BUF_COUNT] = {NULL};
  bufs[CLATTN__BUF_Q] = q;
  bufs[CLATTN__BUF_K] = k;
  bufs[CLATTN__BUF_V] = v;
  bufs[CLATTN__BUF_O] = o;
  bufs[CLATTN__BUF_LSE] = lse;
  bufs[CLATTN__BUF_LENS_Q] = seq_lens_q;
  bufs[CLATTN__BUF_LENS_K] = seq_lens_k;
  st = run_ordered(plan, "clattn_plan_run", 0, bufs, num_events, wait_list,
                   event);
cleanup:
  return st;
}

CLATTN_API clattn_status clattn_plan_run(clattn_plan_t plan, cl_mem q, cl_mem k,
                                         cl_mem v, cl_mem o, cl_mem lse,
                                         cl_uint num_events,
                                         const cl_event *wait_list,
                                         cl_event *event) {
  return clattn_plan_run_varlen(plan, q, k, v, o, lse, NULL, NULL, num_events,
                                wait_list, event);
}

/* What a backward run of the plan needs besides q, k, v, dout, dq, dk and
 * dv: softmax needs the forward's o and lse. */
static int backward_needs_forward(const clattn_plan_t plan) {
  return plan->p.variant == CLATTN_VARIANT_SOFTMAX;
}

/* A user score_mod has no derivative clattn could take. */
static clattn_status no_mod_backward(clattn_plan_t plan, const char *fn) {
  return clattn__fail(plan->ctx, CLATTN_ERROR_UNSUPPORTED,
                      "%s: the plan has a score_mod, whose derivative clattn "
                      "does not know; backward is not supported with one "
                      "(a mask_mod is)",
                      fn);
}

CLATTN_API clattn_status clattn_plan_backward_varlen(
    clattn_plan_t plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse,
    cl_mem dout, cl_mem dq, cl_mem dk, cl_mem dv, cl_mem seq_lens_q,
    cl_mem seq_lens_k, cl_uint num_events, const cl_event *wait_list,
    cl_event *event) {
  if (!plan)
    return CLATTN_ERROR_INVALID_VALUE;
  clattn_context_t ctx = plan->ctx;
  if (!q || !k || !v || !dout || !dq || !dk || !dv)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_plan_backward: q, k, v, dout, dq, dk and dv "
                        "must not be NULL");
  if (backward_needs_forward(plan) && (!o || !lse))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_plan_backward: %s backward needs the "
                        "forward's o and lse",
                        clattn_variant_name(plan->p.variant));
  if ((num_events > 0) != (wait_list != NULL))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_plan_backward: num_events and wait_list "
                        "disagree");
  if (plan->p.score_mod)
    return no_mod_backward(plan, "clattn_plan_backward");
  size_t bytes[5];
  clattn__tensor_bytes(&plan->p, bytes);
  clattn_status st = CLATTN_SUCCESS;
  CLATTN_CHECK(clattn__check_buffer(ctx, q, "q", bytes[0]));
  CLATTN_CHECK(clattn__check_buffer(ctx, k, "k", bytes[1]));
  CLATTN_CHECK(clattn__check_buffer(ctx, v, "v", bytes[2]));
  CLATTN_CHECK(clattn__check_buffer(ctx, dout, "dout", bytes[3]));
  CLATTN_CHECK(clattn__check_buffer(ctx, dq, "dq", bytes[0]));
  CLATTN_CHECK(clattn__check_buffer(ctx, dk, "dk", bytes[1]));
  CLATTN_CHECK(clattn__check_buffer(ctx, dv, "dv", bytes[2]));
  if (backward_needs_forward(plan)) {
    CLATTN_CHECK(clattn__check_buffer(ctx, o, "o", bytes[3]));
    CLATTN_CHECK(clattn__check_buffer(ctx, lse, "lse", bytes[4]));
  }
  CLATTN_CHECK(check_lens(plan, seq_lens_q, seq_lens_k));
  const cl_mem bufs[CLATTN__BUF_COUNT] = {
      q, k, v, o, lse, dout, dq, dk, dv, seq_lens_q, seq_lens_k};
  st = run_ordered(plan, "clattn_plan_backward", 1, bufs, num_events, wait_list,
                   event);
cleanup:
  return st;
}

CLATTN_API clattn_status clattn_plan_backward(
    clattn_plan_t plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse,
    cl_mem dout, cl_mem dq, cl_mem dk, cl_mem dv, cl_uint num_events,
    const cl_event *wait_list, cl_event *event) {
  return clattn_plan_backward_varlen(plan, q, k, v, o, lse, dout, dq, dk, dv,
                                     NULL, NULL, num_events, wait_list, event);
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

clattn_status clattn__upload(clattn_context_t ctx, clattn_dtype dtype,
                             const float *src, size_t count, cl_mem *out) {
  size_t es = clattn__dtype_size(dtype);
  void *tmp = NULL;
  const void *host = src;
  if (dtype != CLATTN_DTYPE_F32) {
    tmp = malloc(count * es);
    if (!tmp)
      return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                          "out of memory converting to %s",
                          clattn_dtype_name(dtype));
    clattn_convert_from_f32(dtype, src, tmp, count);
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

clattn_status clattn__download(clattn_context_t ctx, cl_mem mem, size_t count,
                               clattn_dtype dtype, float *dst) {
  size_t es = clattn__dtype_size(dtype);
  void *tmp = dtype == CLATTN_DTYPE_F32 ? (void *)dst : malloc(count * es);
  if (!tmp)
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                        "out of memory converting from %s",
                        clattn_dtype_name(dtype));
  cl_int err = clEnqueueReadBuffer(ctx->queue, mem, CL_TRUE, 0, count * es, tmp,
                                   0, NULL, NULL);
  if (err == CL_SUCCESS && tmp != (void *)dst)
    clattn_convert_to_f32(dtype, tmp, dst, count);
  if (tmp != (void *)dst)
    free(tmp);
  if (err != CL_SUCCESS)
    return clattn__fail_cl(ctx, err, "clEnqueueReadBuffer");
  return CLATTN_SUCCESS;
}

/* Host arrays to and from the plan's buffers: converted from or to float32
 * when convert is set, else copied as they are (already in dtype). */
static clattn_status upload_host(clattn_context_t ctx, clattn_dtype dtype,
                                 int convert, const void *src, size_t count,
                                 cl_mem *out) {
  if (convert)
    return clattn__upload(ctx, dtype, src, count, out);
  cl_int err = CL_SUCCESS;
  *out = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                        count * clattn__dtype_size(dtype), (void *)src, &err);
  if (err != CL_SUCCESS) {
    *out = NULL;
    return clattn__fail_cl(ctx, err, "clCreateBuffer");
  }
  return CLATTN_SUCCESS;
}

static clattn_status download_host(clattn_context_t ctx, cl_mem mem,
                                   size_t count, clattn_dtype dtype,
                                   int convert, void *dst) {
  if (convert)
    return clattn__download(ctx, mem, count, dtype, dst);
  cl_int err = clEnqueueReadBuffer(ctx->queue, mem, CL_TRUE, 0,
                                   count * clattn__dtype_size(dtype), dst, 0,
                                   NULL, NULL);
  if (err != CL_SUCCESS)
    return clattn__fail_cl(ctx, err, "clEnqueueReadBuffer");
  return CLATTN_SUCCESS;
}

/* The host-pointer calls: convert says whether q, k, v and o are float32
 * (converted to and from the plan's dtype) or already in the plan's dtype. */
/* Checks host lengths against Nq and Nk and uploads them (NULL stays NULL). */
static clattn_status upload_lens(clattn_plan_t plan, const char *fn,
                                 const cl_int *lens, size_t n, const char *name,
                                 cl_mem *out) {
  *out = NULL;
  if (!lens)
    return CLATTN_SUCCESS;
  for (size_t b = 0; b < plan->p.batch; b++) {
    if (lens[b] < 0 || (size_t)lens[b] > n)
      return clattn__fail(plan->ctx, CLATTN_ERROR_INVALID_VALUE,
                          "%s: %s[%zu] = %d is outside 0..%zu", fn, name, b,
                          (int)lens[b], n);
  }
  cl_int err = CL_SUCCESS;
  *out = clCreateBuffer(plan->ctx->context,
                        CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                        plan->p.batch * sizeof(cl_int), (void *)lens, &err);
  if (err != CL_SUCCESS)
    return clattn__fail_cl(plan->ctx, err, "clCreateBuffer");
  return CLATTN_SUCCESS;
}

static clattn_status run_host(clattn_plan_t plan, const char *fn, int convert,
                              const void *q, const void *k, const void *v,
                              void *o, float *lse, const cl_int *lens_q,
                              const cl_int *lens_k) {
  if (!plan)
    return CLATTN_ERROR_INVALID_VALUE;
  clattn_context_t ctx = plan->ctx;
  if (!q || !k || !v || !o)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "%s: q, k, v and o must not be NULL", fn);
  const clattn__problem *p = &plan->p;
  size_t es = clattn__dtype_size(p->dtype);
  size_t bytes[5];
  clattn__tensor_bytes(p, bytes);
  clattn_status st = CLATTN_SUCCESS;
  cl_mem bq = NULL, bk = NULL, bv = NULL, bo = NULL, bl = NULL;
  cl_mem blq = NULL, blk = NULL;
  cl_event done = NULL;
  cl_int err = CL_SUCCESS;
  CLATTN_CHECK(upload_lens(plan, fn, lens_q, p->seq_q, "seq_lens_q", &blq));
  CLATTN_CHECK(upload_lens(plan, fn, lens_k, p->seq_k, "seq_lens_k", &blk));
  CLATTN_CHECK(upload_host(ctx, p->dtype, convert, q, bytes[0] / es, &bq));
  CLATTN_CHECK(upload_host(ctx, p->dtype, convert, k, bytes[1] / es, &bk));
  CLATTN_CHECK(upload_host(ctx, p->dtype, convert, v, bytes[2] / es, &bv));
  bo = clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, bytes[3], NULL, &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateBuffer");
  if (lse) {
    bl = clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, bytes[4], NULL, &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateBuffer");
  }
  CLATTN_CHECK(clattn_plan_run_varlen(plan, bq, bk, bv, bo, bl, blq, blk, 0,
                                      NULL, &done));
  CLATTN_CL_CHECK(ctx, clWaitForEvents(1, &done), "clWaitForEvents");
  CLATTN_CHECK(download_host(ctx, bo, bytes[3] / es, p->dtype, convert, o));
  if (lse)
    CLATTN_CHECK(clattn__download(ctx, bl, bytes[4] / sizeof(float),
                                  CLATTN_DTYPE_F32, lse));
cleanup:
  if (done)
    clReleaseEvent(done);
  /* Buffers are released only after the queue is done with them. */
  if (st != CLATTN_SUCCESS && ctx->queue)
    clFinish(ctx->queue);
  cl_mem all[] = {bq, bk, bv, bo, bl, blq, blk};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (all[i])
      clReleaseMemObject(all[i]);
  }
  return st;
}

CLATTN_API clattn_status clattn_plan_run_host(clattn_plan_t plan,
                                              const float *q, const float *k,
                                              const float *v, float *o,
                                              float *lse) {
  return run_host(plan, "clattn_plan_run_host", 1, q, k, v, o, lse, NULL, NULL);
}

CLATTN_API clattn_status clattn_plan_run_host_varlen(
    clattn_plan_t plan, const float *q, const float *k, const float *v,
    float *o, float *lse, const cl_int *seq_lens_q, const cl_int *seq_lens_k) {
  return run_host(plan, "clattn_plan_run_host_varlen", 1, q, k, v, o, lse,
                  seq_lens_q, seq_lens_k);
}

CLATTN_API clattn_status clattn_plan_run_host_raw_varlen(
    clattn_plan_t plan, const void *q, const void *k, const void *v, void *o,
    float *lse, const cl_int *seq_lens_q, const cl_int *seq_lens_k) {
  return run_host(plan, "clattn_plan_run_host_raw_varlen", 0, q, k, v, o, lse,
                  seq_lens_q, seq_lens_k);
}

CLATTN_API clattn_status clattn_plan_run_host_raw(clattn_plan_t plan,
                                                  const void *q, const void *k,
                                                  const void *v, void *o,
                                                  float *lse) {
  return run_host(plan, "clattn_plan_run_host_raw", 0, q, k, v, o, lse, NULL,
                  NULL);
}

CLATTN_API size_t clattn_plan_device_bytes(clattn_plan_t plan) {
  if (!plan)
    return 0;
  mtx_lock(&plan->lock);
  size_t bytes = plan->workspace_bytes + plan->bwd_workspace_bytes +
                 plan->block_mask_bytes +
                 (plan->alibi ? plan->p.heads_q * sizeof(float) : 0);
  mtx_unlock(&plan->lock);
  return bytes;
}

void clattn__plan_note_warnings(clattn_plan_t plan, cl_program program) {
  const char *warnings = clattn__program_warnings(plan->ctx, program);
  if (warnings) {
    size_t used = strlen(plan->warning);
    snprintf(plan->warning + used, sizeof plan->warning - used,
             "%skernel build warnings: %s", used ? "; " : "", warnings);
  }
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

CLATTN_API clattn_status
clattn_plan_backward_host(clattn_plan_t plan, const float *q, const float *k,
                          const float *v, const float *o, const float *lse,
                          const float *dout, float *dq, float *dk, float *dv) {
  return clattn_plan_backward_host_varlen(plan, q, k, v, o, lse, dout, dq, dk,
                                          dv, NULL, NULL);
}

CLATTN_API clattn_status clattn_plan_backward_host_varlen(
    clattn_plan_t plan, const float *q, const float *k, const float *v,
    const float *o, const float *lse, const float *dout, float *dq, float *dk,
    float *dv, const cl_int *seq_lens_q, const cl_int *seq_lens_k) {
  if (!plan)
    return CLATTN_ERROR_INVALID_VALUE;
  clattn_context_t ctx = plan->ctx;
  if (!q || !k || !v || !dout || !dq || !dk || !dv)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_plan_backward_host: q, k, v, dout, dq, dk and "
                        "dv must not be NULL");
  if (backward_needs_forward(plan) && (!o || !lse))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_plan_backward_host: %s backward needs the "
                        "forward's o and lse",
                        clattn_variant_name(plan->p.variant));
  const clattn__problem *p = &plan->p;
  size_t es = clattn__dtype_size(p->dtype);
  size_t bytes[5];
  clattn__tensor_bytes(p, bytes);
  clattn_status st = CLATTN_SUCCESS;
  cl_mem b[11] = {NULL};
  cl_event done = NULL;
  cl_int err = CL_SUCCESS;
  if (p->score_mod)
    return no_mod_backward(plan, "clattn_plan_backward_host");
  CLATTN_CHECK(upload_lens(plan, "clattn_plan_backward_host", seq_lens_q,
                           p->seq_q, "seq_lens_q", &b[9]));
  CLATTN_CHECK(upload_lens(plan, "clattn_plan_backward_host", seq_lens_k,
                           p->seq_k, "seq_lens_k", &b[10]));
  CLATTN_CHECK(clattn__upload(ctx, p->dtype, q, bytes[0] / es, &b[0]));
  CLATTN_CHECK(clattn__upload(ctx, p->dtype, k, bytes[1] / es, &b[1]));
  CLATTN_CHECK(clattn__upload(ctx, p->dtype, v, bytes[2] / es, &b[2]));
  if (o)
    CLATTN_CHECK(clattn__upload(ctx, p->dtype, o, bytes[3] / es, &b[3]));
  if (lse)
    CLATTN_CHECK(clattn__upload(ctx, CLATTN_DTYPE_F32, lse,
                                bytes[4] / sizeof(float), &b[4]));
  CLATTN_CHECK(clattn__upload(ctx, p->dtype, dout, bytes[3] / es, &b[5]));
  for (int i = 0; i < 3; i++) {
    b[6 + i] =
        clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, bytes[i], NULL, &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateBuffer");
  }
  CLATTN_CHECK(clattn_plan_backward_varlen(plan, b[0], b[1], b[2], b[3], b[4],
                                           b[5], b[6], b[7], b[8], b[9], b[10],
                                           0, NULL, &done));
  CLATTN_CL_CHECK(ctx, clWaitForEvents(1, &done), "clWaitForEvents");
  CLATTN_CHECK(clattn__download(ctx, b[6], bytes[0] / es, p->dtype, dq));
  CLATTN_CHECK(clattn__download(ctx, b[7], bytes[1] / es, p->dtype, dk));
  CLATTN_CHECK(clattn__download(ctx, b[8], bytes[2] / es, p->dtype, dv));
cleanup:
  if (done)
    clReleaseEvent(done);
  if (st != CLATTN_SUCCESS && ctx->queue)
    clFinish(ctx->queue);
  for (size_t i = 0; i < 11; i++) {
    if (b[i])
      clReleaseMemObject(b[i]);
  }
  return st;
}
