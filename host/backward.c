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
#include <stdlib.h>
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

/* The cpu shape's tiles and workspace layout (floats), derived from the
 * problem and the device alone so that create and enqueue agree. */
typedef struct {
  int keys_vec, mr, bm, bn, s_vecs, o_vecs, jr, t_vecs, vec, splits;
  size_t nkp, dp, dvp, vt_off, kr_off, scr_off, dq_off, total;
} cpu_bwd_tiles;

/* A plan whose forward runs the cpu shape (a CPU's default) gets the
 * single-pass backward; the gpu and row shapes keep the dkdv and dq kernels,
 * whose work-items are many and independent. */
static int use_cpu_shape(const clattn_plan_t plan) {
  return plan->shape_id == CLATTN__SHAPE_CPU;
}

/* Like the forward's cpu shape: 16-float vectors (AVX-512) come with 32
 * vector registers, narrower ones with 16. The score micro-tile holds
 * MR x S_VECS accumulators plus S_VECS key vectors and a broadcast; the
 * dK/dV micro-tile JR x T_VECS accumulators plus T_VECS row vectors and a
 * broadcast; the dQ micro-tile MR x O_VECS plus O_VECS. A query block is two
 * score micro-tiles high, so that the dK/dV accumulators are reloaded once
 * per 2 MR rows. Key blocks of 64 keep the packed blocks and the scratch
 * inside L2 up to D = 256. Splits give every compute unit two work-items. */
static void cpu_bwd_tiles_get(const clattn_plan_t plan, cpu_bwd_tiles *t) {
  const clattn__problem *p = &plan->p;
  const clattn_device_profile *dev = &plan->ctx->profile;
  cl_uint w = dev->native_vector_width_float;
  if (w < dev->preferred_vector_width_float)
    w = dev->preferred_vector_width_float;
  const int wide = w >= 16;
  const int regs = wide ? 32 : 16;
  t->keys_vec = wide ? 16 : 8;
  t->vec = wide ? 16 : 8;
  while (t->vec > 1 && (size_t)t->vec / 2 >= p->dim &&
         (size_t)t->vec / 2 >= p->dim_v)
    t->vec /= 2;
  size_t dch = (p->dim + (size_t)t->vec - 1) / (size_t)t->vec;
  size_t dvch = (p->dim_v + (size_t)t->vec - 1) / (size_t)t->vec;
  t->dp = dch * (size_t)t->vec;
  t->dvp = dvch * (size_t)t->vec;
  t->mr = wide ? 8 : 6;
  t->bm = 2 * t->mr;
  t->s_vecs = 2;
  t->o_vecs = (regs - 1) / (t->mr + 1);
  if ((size_t)t->o_vecs > dch)
    t->o_vecs = (int)dch;
  size_t nch = dch > dvch ? dch : dvch;
  t->t_vecs = nch < 4 ? (int)nch : 4;
  t->jr = (regs - 1 - t->t_vecs) / t->t_vecs;
  t->jr = t->jr >= 4 ? 4 : t->jr >= 2 ? 2 : 1;
  size_t ktile = (size_t)(t->s_vecs * t->keys_vec);
  t->bn = (int)clattn__round_up(64, ktile);
  t->nkp = clattn__round_up(p->seq_k, (size_t)t->bn);
  size_t blocks = t->nkp / (size_t)t->bn, items = p->batch * p->heads_kv;
  size_t want = (2 * (size_t)dev->compute_units + items - 1) / items;
  if (want > blocks)
    want = blocks;
  t->splits = want < 1 ? 1 : (int)want;
  size_t bhk = p->batch * p->heads_kv;
  t->vt_off = bhk * t->nkp * p->dim;
  t->kr_off = t->vt_off + bhk * t->nkp * p->dim_v;
  t->scr_off = t->kr_off + bhk * t->nkp * t->dp;
  t->dq_off =
      t->scr_off + bhk * (size_t)t->splits * (size_t)t->bn * (t->dp + t->dvp);
  t->total =
      t->dq_off + (size_t)t->splits * p->batch * p->heads_q * p->seq_q * t->dp;
}

/* The softmax and sigmoid backward program: cl/flash_bwd.cl after the
 * score pipeline, with its options appended to `options` and the user's
 * mask_mod as a prelude. */
static clattn_status bwd_program(clattn_plan_t plan, char *options, size_t size,
                                 cl_program *program) {
  static const char *const files[] = {"common.cl", "keys.cl", "score.cl",
                                      "flash_bwd.cl"};
  return clattn__pipe_program(plan, files, 4, options, size, program);
}

static clattn_status cpu_backward_create(clattn_plan_t plan) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  clattn_status st = CLATTN_SUCCESS;
  cpu_bwd_tiles t;
  cpu_bwd_tiles_get(plan, &t);
  char options[512];
  snprintf(options, sizeof options,
           "%s -D HEAD_DIM=%zu -D HEAD_DIM_V=%zu -D SIGMOID=%d "
           "-D SHAPE=1 -D VEC=%d -D KEYS_VEC=%d -D MR=%d -D BLOCK_M=%d "
           "-D BLOCK_N=%d -D S_VECS=%d -D O_VECS=%d -D JR=%d -D T_VECS=%d",
           clattn__dtype_options(p->dtype), p->dim, p->dim_v,
           p->variant == CLATTN_VARIANT_SIGMOID, t.vec, t.keys_vec, t.mr, t.bm,
           t.bn, t.s_vecs, t.o_vecs, t.jr, t.t_vecs);
  static const char *const names[] = {"clattn_bwd_pack", "clattn_bwd_cpu",
                                      "clattn_bwd_dq_sum"};
  cl_program program = NULL;
  CLATTN_CHECK(bwd_program(plan, options, sizeof options, &program));
  for (size_t i = 0; i < 3; i++) {
    cl_int err = CL_SUCCESS;
    plan->bwd_kernels[i] = clCreateKernel(program, names[i], &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
    plan->nbwd = i + 1;
  }
  if (t.total > SIZE_MAX / sizeof(float))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: the backward workspace of these "
                        "shapes overflows the address space");
  cl_int err = CL_SUCCESS;
  plan->bwd_workspace[0] = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE,
                                          t.total * sizeof(float), NULL, &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateBuffer");
  plan->bwd_workspace_bytes = t.total * sizeof(float);
cleanup:
  return st;
}

/* bufs: q, k, v, o, lse, dout, dq, dk, dv. */
static clattn_status cpu_backward_enqueue(clattn_plan_t plan,
                                          const cl_mem *bufs, cl_uint nwait,
                                          const cl_event *wait,
                                          cl_event *event) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  clattn_status st = CLATTN_SUCCESS;
  cl_event ev[2] = {NULL, NULL};
  cl_int err = CL_SUCCESS;
  cpu_bwd_tiles t;
  cpu_bwd_tiles_get(plan, &t);
  const cl_mem ws = plan->bwd_workspace[0], none = NULL;
  int softmax = p->variant == CLATTN_VARIANT_SOFTMAX;
  cl_int nq = (cl_int)p->seq_q, nk = (cl_int)p->seq_k, nkp = (cl_int)t.nkp;
  cl_int hq = (cl_int)p->heads_q, hkv = (cl_int)p->heads_kv;
  cl_int splits = t.splits;
  const float log2e = 1.4426950408889634f;
  cl_float scale = p->scale, scale_log2 = p->scale * log2e;
  cl_float bias_log2 = softmax ? 0.0f : p->bias * log2e;
  cl_ulong vt_off = t.vt_off, kr_off = t.kr_off, scr_off = t.scr_off;
  cl_ulong dq_off = t.dq_off;
  cl_ulong rows = (cl_ulong)(p->batch * p->heads_q * p->seq_q);
  size_t bhk = p->batch * p->heads_kv;
  cl_kernel kp = plan->bwd_kernels[0], kc = plan->bwd_kernels[1];
  cl_kernel ksum = plan->bwd_kernels[2];
  cl_uint a = 0;
  CLATTN_SET_ARG(err, kp, a++, sizeof(cl_mem), &bufs[1]);
  CLATTN_SET_ARG(err, kp, a++, sizeof(cl_mem), &bufs[2]);
  CLATTN_SET_ARG(err, kp, a++, sizeof(cl_mem), &ws);
  CLATTN_SET_ARG(err, kp, a++, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, kp, a++, sizeof(cl_int), &nkp);
  CLATTN_SET_ARG(err, kp, a++, sizeof(cl_ulong), &vt_off);
  CLATTN_SET_ARG(err, kp, a++, sizeof(cl_ulong), &kr_off);
  CLATTN_SET_ARG(err, kp, a++, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, kp, a++, sizeof(cl_mem),
                 bufs[CLATTN__BUF_LENS_K] ? &bufs[CLATTN__BUF_LENS_K] : NULL);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t gp[2] = {t.nkp / (size_t)t.bn, bhk};
  CLATTN_CHECK(bwd_enqueue(plan, kp, 2, gp, nwait, wait, &ev[0]));
  a = 0;
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_mem), &bufs[0]);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_mem), softmax ? &bufs[3] : &none);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_mem), &bufs[5]);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_mem), softmax ? &bufs[4] : &none);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_mem), &ws);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_mem), &bufs[7]);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_mem), &bufs[8]);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_int), &nq);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_int), &nkp);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_int), &hq);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_int), &splits);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_float), &scale_log2);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_float), &scale);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_float), &bias_log2);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_ulong), &vt_off);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_ulong), &kr_off);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_ulong), &scr_off);
  CLATTN_SET_ARG(err, kc, a++, sizeof(cl_ulong), &dq_off);
  if (err == CL_SUCCESS)
    err = clattn__pipe_args(plan, kc, &a, bufs[CLATTN__BUF_LENS_Q],
                            bufs[CLATTN__BUF_LENS_K]);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t gc[2] = {(size_t)t.splits, bhk};
  CLATTN_CHECK(bwd_enqueue(plan, kc, 2, gc, 1, &ev[0], &ev[1]));
  a = 0;
  CLATTN_SET_ARG(err, ksum, a++, sizeof(cl_mem), &ws);
  CLATTN_SET_ARG(err, ksum, a++, sizeof(cl_mem), &bufs[6]);
  CLATTN_SET_ARG(err, ksum, a++, sizeof(cl_ulong), &dq_off);
  CLATTN_SET_ARG(err, ksum, a++, sizeof(cl_ulong), &rows);
  CLATTN_SET_ARG(err, ksum, a++, sizeof(cl_int), &splits);
  CLATTN_SET_ARG(err, ksum, a++, sizeof(cl_float), &scale);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t gs = (size_t)((rows + 63) / 64);
  CLATTN_CHECK(bwd_enqueue(plan, ksum, 1, &gs, 1, &ev[1], event));
cleanup:
  for (int i = 0; i < 2; i++) {
    if (ev[i])
      clReleaseEvent(ev[i]);
  }
  return st;
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
           "%s -D HEAD_DIM=%zu -D HEAD_DIM_V=%zu -D SIGMOID=%d "
           "-D VEC=%d -D BLOCK_M=%d -D BLOCK_N=%d",
           clattn__dtype_options(p->dtype), p->dim, p->dim_v,
           p->variant == CLATTN_VARIANT_SIGMOID, vec, block, block);
  static const char *const names[] = {"clattn_bwd_delta", "clattn_bwd_dkdv",
                                      "clattn_bwd_dq"};
  cl_program program = NULL;
  CLATTN_CHECK(bwd_program(plan, options, sizeof options, &program));
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
    if (err == CL_SUCCESS)
      err = clattn__pipe_args(plan, kern, &a, bufs[CLATTN__BUF_LENS_Q],
                              bufs[CLATTN__BUF_LENS_K]);
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

enum { LB_FEAT = 0, LB_KSTATE, LB_SCAN, LB_QUERY, LB_QSTATE, LB_KEY, LB_COUNT };

/* Rows per chunk: causal chunks bound the work within a chunk (every key
 * row visits the queries of its own chunk, every query row the keys of its
 * own), which grows with the chunk, against the chunk states written,
 * scanned and read (FEAT x (Dv + 1) floats per chunk), which shrink with it.
 * 32 rows took 17-48% less time than 64 at D = 64, N = 2048 and 16384, on
 * PoCL and Intel's CPU runtime (and at D = 32 and 128 on PoCL), for twice
 * the states' memory. Without
 * masking only the states' totals are used, so long chunks keep the
 * per-chunk states, and the memory they stream, small. */
static int lb_chunk(const clattn__problem *p) {
  return p->causal ? 32 : 512;
}
/* Feature rows per work-item of the state kernels, rows per work-item of
 * the row kernels: fewer, longer work-items (a CPU runtime pays for each
 * work-group), each state or value row loaded once for several. */
#define LB_LR 32
#define LB_SCAN_E 64

/* The state kernels' micro-tiles: FB feature rows x DVT vectors of Dv in
 * registers, next to DVT vectors of the operand row and a broadcast; vector
 * width and register count from the device (16 of 8 floats on AVX2, 32 of
 * 16 on AVX-512). */
typedef struct {
  int vec, fb, dvt, slices;
} lb_tiles;

static lb_tiles lb_tiles_get(const clattn_plan_t plan) {
  const clattn__problem *p = &plan->p;
  lb_tiles t;
  /* A GPU gets the linear forward's gpu-shape width (4) and a small
   * register budget. */
  int width = 4, regs = 16;
  if (plan->ctx->profile.is_cpu)
    clattn__vector_regs(&plan->ctx->profile, &width, &regs);
  t.vec = clattn__pick_vec(p->dim_v, p->dim_v, width);
  int dvch = (int)((p->dim_v + (size_t)t.vec - 1) / (size_t)t.vec);
  t.dvt = dvch < 4 ? dvch : 4;
  t.fb = (regs - t.dvt - 2) / t.dvt;
  t.fb = t.fb < 1 ? 1 : t.fb > 8 ? 8 : t.fb;
  t.slices = (dvch + t.dvt - 1) / t.dvt;
  return t;
}

/* Chunk counts of the key-side and query-side states: keys in chunks of
 * lb_chunk rows; queries grouped by the chunk of their last key when causal,
 * else by their own index. */
static void linear_chunks(const clattn__problem *p, size_t *kc, size_t *qc) {
  size_t c = (size_t)lb_chunk(p);
  *kc = (p->seq_k + c - 1) / c;
  *qc = p->causal ? *kc : (p->seq_q + c - 1) / c;
}

static clattn_status linear_backward_create(clattn_plan_t plan) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  clattn_status st = CLATTN_SUCCESS;
  int cos = p->variant == CLATTN_VARIANT_COSFORMER;
  lb_tiles lt = lb_tiles_get(plan);
  char options[512];
  snprintf(options, sizeof options,
           "%s -D HEAD_DIM=%zu -D HEAD_DIM_V=%zu -D CAUSAL=%d -D COSFORMER=%d "
           "-D FEATURE_MAP=%d -D CHUNK=%d -D FB=%d -D DVT=%d -D LR=%d "
           "-D SCAN_E=%d -D VEC=%d",
           clattn__dtype_options(p->dtype), p->dim, p->dim_v, p->causal, cos,
           p->feature_map == CLATTN_FEATURE_MAP_RELU ? 2 : 1, lb_chunk(p),
           lt.fb, lt.dvt, LB_LR, LB_SCAN_E, lt.vec);
  static const char *const files[] = {"common.cl", "linear_bwd.cl"};
  static const char *const names[] = {
      "clattn_lbwd_featmap", "clattn_lbwd_kstate", "clattn_lbwd_scan",
      "clattn_lbwd_query",   "clattn_lbwd_qstate", "clattn_lbwd_key"};
  cl_program program = NULL;
  CLATTN_CHECK(clattn__program_get(ctx, files, 2, options, &program));
  for (size_t i = 0; i < LB_COUNT; i++) {
    cl_int err = CL_SUCCESS;
    plan->bwd_kernels[i] = clCreateKernel(program, names[i], &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
    plan->nbwd = i + 1;
  }
  /* Workspace: key-side and query-side chunk states, g_i and c_i of every
   * query row, the features of every query and key row. */
  size_t kc, qc, feat = p->dim * (cos ? 2u : 1u);
  linear_chunks(p, &kc, &qc);
  size_t bhk = p->batch * p->heads_kv, rows = p->batch * p->heads_q * p->seq_q;
  size_t bytes[5], largest = 0;
  int fits = CLATTN_SIZE_PRODUCT(&bytes[0], feat, p->dim_v + 1, sizeof(float),
                                 bhk, kc + 1);
  fits &= CLATTN_SIZE_PRODUCT(&bytes[1], feat, p->dim_v + 1, sizeof(float), bhk,
                              qc + 1);
  fits &= CLATTN_SIZE_PRODUCT(&bytes[2], rows, p->dim_v + 1, sizeof(float));
  fits &= CLATTN_SIZE_PRODUCT(&bytes[3], rows, feat, sizeof(float));
  fits &= CLATTN_SIZE_PRODUCT(&bytes[4], bhk, p->seq_k, feat, sizeof(float));
  for (size_t i = 0; i < 5; i++)
    largest = bytes[i] > largest ? bytes[i] : largest;
  CLATTN_CHECK(
      clattn__workspace_size(plan, "backward chunk states", fits, largest));
  for (size_t i = 0; i < 5; i++) {
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
  cl_event ev[8] = {NULL};
  const cl_mem ks = plan->bwd_workspace[0], qs = plan->bwd_workspace[1];
  const cl_mem gc = plan->bwd_workspace[2], qfe = plan->bwd_workspace[3];
  const cl_mem kfe = plan->bwd_workspace[4];
  int cos = p->variant == CLATTN_VARIANT_COSFORMER;
  size_t kc, qc, feat = p->dim * (cos ? 2u : 1u);
  linear_chunks(p, &kc, &qc);
  size_t bhk = p->batch * p->heads_kv;
  cl_int nq = (cl_int)p->seq_q, nk = (cl_int)p->seq_k;
  cl_int hq = (cl_int)p->heads_q, hkv = (cl_int)p->heads_kv;
  cl_int ikc = (cl_int)kc, iqc = (cl_int)qc, fwd = 0, rev = 1;
  /* Negative hinv: cosFormer's default M = max(Lq, Lk) per sequence. */
  cl_float eps = p->eps;
  cl_float hinv = p->cos_m_default ? -1.0f : (cl_float)(0.5 / (double)p->cos_m);
  const cl_mem lq = bufs[CLATTN__BUF_LENS_Q], lk = bufs[CLATTN__BUF_LENS_K];
  const cl_mem *plq = lq ? &lq : NULL, *plk = lk ? &lk : NULL;
  cl_kernel *kn = plan->bwd_kernels;
  cl_uint a = 0;
  /* 0: the features of the query rows, then of the key rows. */
  cl_ulong rq = (cl_ulong)(p->batch * p->heads_q * p->seq_q);
  cl_ulong rk = (cl_ulong)(bhk * p->seq_k);
  for (cl_int side = 0; side < 2; side++) {
    CLATTN_SET_ARG(err, kn[LB_FEAT], 0, sizeof(cl_mem), &bufs[side]);
    CLATTN_SET_ARG(err, kn[LB_FEAT], 1, sizeof(cl_mem), side ? &kfe : &qfe);
    CLATTN_SET_ARG(err, kn[LB_FEAT], 2, sizeof(cl_ulong), side ? &rk : &rq);
    CLATTN_SET_ARG(err, kn[LB_FEAT], 3, sizeof(cl_int), side ? &nk : &nq);
    CLATTN_SET_ARG(err, kn[LB_FEAT], 4, sizeof(cl_int), side ? &hkv : &hq);
    CLATTN_SET_ARG(err, kn[LB_FEAT], 5, sizeof(cl_int), &side);
    CLATTN_SET_ARG(err, kn[LB_FEAT], 6, sizeof(cl_int), &nq);
    CLATTN_SET_ARG(err, kn[LB_FEAT], 7, sizeof(cl_int), &nk);
    CLATTN_SET_ARG(err, kn[LB_FEAT], 8, sizeof(cl_float), &hinv);
    CLATTN_SET_ARG(err, kn[LB_FEAT], 9, sizeof(cl_mem), plq);
    CLATTN_SET_ARG(err, kn[LB_FEAT], 10, sizeof(cl_mem), plk);
    CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
    size_t gf = (size_t)(((side ? rk : rq) + LB_LR - 1) / LB_LR);
    CLATTN_CHECK(bwd_enqueue(plan, kn[LB_FEAT], 1, &gf, side ? 1 : nwait,
                             side ? &ev[5] : wait, &ev[5 + side]));
  }
  /* 1: key chunk sums; 2: their exclusive prefix. */
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 0, sizeof(cl_mem), &kfe);
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 1, sizeof(cl_mem), &bufs[2]);
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 2, sizeof(cl_mem), &ks);
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 3, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 4, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 5, sizeof(cl_int), &ikc);
  CLATTN_SET_ARG(err, kn[LB_KSTATE], 6, sizeof(cl_mem), plk);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  lb_tiles lt = lb_tiles_get(plan);
  size_t tiles = (feat + (size_t)lt.fb - 1) / (size_t)lt.fb * (size_t)lt.slices;
  size_t g1[3] = {tiles, kc, bhk};
  CLATTN_CHECK(bwd_enqueue(plan, kn[LB_KSTATE], 3, g1, 1, &ev[6], &ev[0]));
  size_t gs[2] = {(feat * (p->dim_v + 1) + LB_SCAN_E - 1) / LB_SCAN_E, bhk};
  CLATTN_SET_ARG(err, kn[LB_SCAN], 0, sizeof(cl_mem), &ks);
  CLATTN_SET_ARG(err, kn[LB_SCAN], 1, sizeof(cl_int), &ikc);
  CLATTN_SET_ARG(err, kn[LB_SCAN], 2, sizeof(cl_int), &fwd);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  CLATTN_CHECK(bwd_enqueue(plan, kn[LB_SCAN], 2, gs, 1, &ev[0], &ev[1]));
  /* 3: per query row. */
  const cl_mem qargs[] = {bufs[0], qfe, kfe, bufs[2], bufs[5], ks, gc, bufs[6]};
  for (a = 0; a < 8; a++)
    CLATTN_SET_ARG(err, kn[LB_QUERY], a, sizeof(cl_mem), &qargs[a]);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_int), &nq);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_int), &hq);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_int), &ikc);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_float), &eps);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_float), &hinv);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_mem), plq);
  CLATTN_SET_ARG(err, kn[LB_QUERY], a++, sizeof(cl_mem), plk);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t g3[3] = {(p->seq_q + LB_LR - 1) / LB_LR, p->heads_q, p->batch};
  CLATTN_CHECK(bwd_enqueue(plan, kn[LB_QUERY], 3, g3, 1, &ev[1], &ev[2]));
  /* 4: query chunk sums per kv head; 5: their exclusive suffix. */
  a = 0;
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_mem), &qfe);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_mem), &gc);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_mem), &qs);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_int), &nq);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_int), &hq);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_int), &iqc);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_mem), plq);
  CLATTN_SET_ARG(err, kn[LB_QSTATE], a++, sizeof(cl_mem), plk);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t g4[3] = {tiles, qc, bhk};
  CLATTN_CHECK(bwd_enqueue(plan, kn[LB_QSTATE], 3, g4, 1, &ev[2], &ev[3]));
  CLATTN_SET_ARG(err, kn[LB_SCAN], 0, sizeof(cl_mem), &qs);
  CLATTN_SET_ARG(err, kn[LB_SCAN], 1, sizeof(cl_int), &iqc);
  CLATTN_SET_ARG(err, kn[LB_SCAN], 2, sizeof(cl_int), &rev);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  CLATTN_CHECK(bwd_enqueue(plan, kn[LB_SCAN], 2, gs, 1, &ev[3], &ev[4]));
  /* 6: per key row. */
  const cl_mem kargs[] = {qfe, bufs[1], kfe, bufs[2], gc, qs, bufs[7], bufs[8]};
  for (a = 0; a < 8; a++)
    CLATTN_SET_ARG(err, kn[LB_KEY], a, sizeof(cl_mem), &kargs[a]);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_int), &nq);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_int), &hq);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_int), &iqc);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_float), &hinv);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_mem), plq);
  CLATTN_SET_ARG(err, kn[LB_KEY], a++, sizeof(cl_mem), plk);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t g6[3] = {(p->seq_k + LB_LR - 1) / LB_LR, p->heads_kv, p->batch};
  CLATTN_CHECK(bwd_enqueue(plan, kn[LB_KEY], 3, g6, 1, &ev[4], event));
cleanup:
  for (int i = 0; i < 8; i++) {
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
    clattn_status st = linear                ? linear_backward_create(plan)
                       : use_cpu_shape(plan) ? cpu_backward_create(plan)
                                             : flash_backward_create(plan);
    if (st != CLATTN_SUCCESS) {
      for (size_t i = 0; i < plan->nbwd; i++)
        clReleaseKernel(plan->bwd_kernels[i]);
      plan->nbwd = 0;
      for (size_t i = 0; i < 5; i++) {
        if (plan->bwd_workspace[i])
          clReleaseMemObject(plan->bwd_workspace[i]);
        plan->bwd_workspace[i] = NULL;
      }
      plan->bwd_workspace_bytes = 0;
      return st;
    }
  }
  if (linear)
    return linear_backward_enqueue(plan, bufs, nwait, wait, event);
  return use_cpu_shape(plan)
             ? cpu_backward_enqueue(plan, bufs, nwait, wait, event)
             : flash_backward_enqueue(plan, bufs, nwait, wait, event);
}
