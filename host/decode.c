/*
 * decode.c - softmax and sigmoid attention for few query rows against long
 * key sequences (cl/decode.cl): split-KV, so that every core streams its own
 * range of keys, then a merge of the partial results. Chosen by plan.c for
 * Nq <= CLATTN__DECODE_MAX_Q, or by SHAPE=decode.
 */
#include "plan.h"
#include "program.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A split of fewer keys than this costs more in partials and merging than
 * it gains in parallelism. */
#define MIN_KEYS_PER_SPLIT 512
/* Work-items per core (CPU) or work-groups per compute unit (GPU) the
 * splits aim for: several per core even out cores that finish at different
 * times. On PoCL (2 cores, B=1 Hq=32 Hkv=8 D=128 Nk=131072 f16) 4 splits of
 * each kv head read K and V faster than 1 (see BLOCK_N below). */
#define ITEMS_PER_CORE 16
#define GROUPS_PER_UNIT 4

/* a * b into *out, or 0 when it does not fit a size_t. */
static int mul_ok(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a)
    return 0;
  *out = a * b;
  return 1;
}

/* The sizes a plan's launch derives from its tiles. */
typedef struct decode_dims {
  size_t nrows;     /* query rows per kv head: G x Nq */
  size_t rowgroups; /* ceil(nrows / ROWS) */
  size_t splits;    /* key ranges */
  size_t kps;       /* keys per range, a multiple of BLOCK_N */
  size_t rows;      /* B x Hq x Nq: rows of O */
  size_t lse_off;   /* floats before the partial LSEs in the workspace */
} decode_dims;

/* Registers of the vector unit, in vectors of the device's native width:
 * 32 with 512-bit vectors (AVX-512), else 16 (AVX2, NEON, SSE). */
static size_t cpu_registers(const clattn_device_profile *dev) {
  return dev->native_vector_width_float >= 16 ? 32 : 16;
}

/* The widest vector along D and Dv at most the native width. */
static int cpu_vec(const clattn__problem *p, const clattn_device_profile *dev) {
  int w = 1;
  while (w < 16 && (cl_uint)w * 2 <= dev->native_vector_width_float)
    w *= 2;
  return clattn__pick_vec(p->dim, p->dim_v, w < 4 ? 4 : w);
}

/* Local memory of the work-group kernel, in bytes. */
static size_t wg_local_bytes(size_t rows, size_t dim, size_t vec,
                             size_t block_n) {
  return (rows * clattn__round_up(dim, vec) + rows * block_n + 3 * rows) *
         sizeof(float);
}

/* Splits: enough (batch, kv head, row group) x split work units to give
 * every compute unit ITEMS_PER_CORE or GROUPS_PER_UNIT of them, without splits
 * shorter than MIN_KEYS_PER_SPLIT keys; `want` > 0 overrides the count. Then
 * ranges are whole blocks, and no split is left empty. */
static void choose_splits(const clattn__problem *p,
                          const clattn_device_profile *dev, size_t want,
                          size_t block_n, size_t units, size_t max_splits,
                          decode_dims *d) {
  size_t blocks = (p->seq_k + block_n - 1) / block_n;
  size_t s = want;
  if (s == 0) {
    size_t target = (size_t)(dev->compute_units ? dev->compute_units : 1) *
                    (dev->is_cpu ? ITEMS_PER_CORE : GROUPS_PER_UNIT);
    s = (target + units - 1) / units;
    size_t most = (p->seq_k + MIN_KEYS_PER_SPLIT - 1) / MIN_KEYS_PER_SPLIT;
    if (s > most)
      s = most;
  }
  if (s > max_splits)
    s = max_splits;
  if (s > blocks)
    s = blocks;
  if (s < 1)
    s = 1;
  d->kps = (blocks + s - 1) / s * block_n;
  d->splits = (p->seq_k + d->kps - 1) / d->kps;
}

/* Chooses and checks the tiles and the split count, and sizes the
 * workspace; builds nothing, so that clattn_desc_check can ask it too. */
static clattn_status decode_choose(clattn_plan_t plan, const char *spec) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  const clattn_device_profile *dev = &ctx->profile;
  clattn__tiles *t = &plan->tiles;
  clattn_status st = CLATTN_SUCCESS;
  int shape = 0;
  CLATTN_CHECK(
      clattn__shape_choose(ctx, spec, 1u << CLATTN__SHAPE_DECODE, &shape));
  size_t g = p->heads_q / p->heads_kv;
  size_t nrows = 0;
  if (!mul_ok(g, p->seq_q, &nrows) || nrows > INT_MAX / 2)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: %zu query heads per kv head "
                        "times %zu query rows are too many for the decode "
                        "shape",
                        g, p->seq_q);

  /* A CPU gets one work-item per unit of work with its rows' accumulators
   * in vector registers; a GPU gets work-groups that share the rows'
   * queries and spread Dv over their work-items. */
  if (dev->is_cpu) {
    int vec = cpu_vec(p, dev);
    /* ROWS accumulators live through the inner loops, with a key or value
     * vector and a broadcast weight: half the registers (in VEC-wide
     * vectors) leaves room for those and the query vectors in flight. */
    size_t regs =
        cpu_registers(dev) * (size_t)dev->native_vector_width_float / vec;
    size_t cap = regs / 2 < 1 ? 1 : regs / 2;
    size_t groups = (nrows + cap - 1) / cap;
    clattn__tiles_add(t, "SPLITS", 0);
    clattn__tiles_add(t, "ROWS", (int)((nrows + groups - 1) / groups));
    /* Blocks of 8 keys: one AVX2 register of weights, and on AVX-512 fewer
     * live scores than 16. On PoCL at the shape above, 4 splits with 8-key
     * blocks read K and V at 13.3 GB/s, 1 split with 16-key blocks 7.2.
     * Sigmoid, with a division per score, takes blocks of 4: as fast on
     * PoCL, and 1.9x faster on Intel's CPU runtime (28.3 -> 15.1 ms for
     * B=1 Hq=32 Hkv=8 D=128 Nk=131072 f16, idle 2-core Zen 5). */
    clattn__tiles_add(t, "BLOCK_N",
                      p->variant == CLATTN_VARIANT_SIGMOID ? 4 : 8);
    clattn__tiles_add(t, "VEC", vec);
    clattn__tiles_add(t, "WG", 1);
  } else {
    int wg = 64;
    while (wg > 1 && (size_t)wg > dev->max_work_group_size)
      wg /= 2;
    int vec = clattn__pick_vec(p->dim, p->dim_v, 4);
    size_t rows = nrows < 16 ? nrows : 16;
    while (rows > 1 && wg_local_bytes(rows, p->dim, (size_t)vec, (size_t)wg) >
                           dev->local_mem_size / 2)
      rows /= 2;
    clattn__tiles_add(t, "SPLITS", 0);
    clattn__tiles_add(t, "ROWS", (int)rows);
    clattn__tiles_add(t, "BLOCK_N", wg);
    clattn__tiles_add(t, "VEC", vec);
    clattn__tiles_add(t, "WG", wg);
  }
  t->source = "heuristic";
  CLATTN_CHECK(clattn__tiles_override(ctx, t, spec));
  plan->shape = clattn__shape_name(CLATTN__SHAPE_DECODE);
  plan->shape_id = CLATTN__SHAPE_DECODE;

  int vec = clattn__tiles_get(t, "VEC");
  int rows = clattn__tiles_get(t, "ROWS");
  int bn = clattn__tiles_get(t, "BLOCK_N");
  int wg = clattn__tiles_get(t, "WG");
  /* A spec that asks for the one-work-item kernel (WG=1) on a device whose
   * default is the work-group kernel gets that kernel's own key block
   * rather than a refusal of the group's (BLOCK_N = WG). */
  if (wg == 1 && bn != 4 && bn != 8 && bn != 16 &&
      !(spec && strstr(spec, "BLOCK_N="))) {
    bn = p->variant == CLATTN_VARIANT_SIGMOID ? 4 : 8;
    clattn__tiles_add(t, "BLOCK_N", bn);
  }
  if (vec != 1 && vec != 2 && vec != 4 && vec != 8 && vec != 16)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: VEC must be 1, 2, 4, 8 "
                        "or 16");
  if (rows < 1 || rows > 64 || wg < 1 || (size_t)wg > dev->max_work_group_size)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: ROWS must be 1..64 and WG "
                        "1..%zu",
                        dev->max_work_group_size);
  if (wg == 1 ? (bn != 4 && bn != 8 && bn != 16) : bn < 1)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: BLOCK_N must be 4, 8 or "
                        "16 with WG=1, and at least 1 otherwise");
  if (wg > 1 && wg_local_bytes((size_t)rows, p->dim, (size_t)vec, (size_t)bn) >
                    dev->local_mem_size)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: ROWS=%d and BLOCK_N=%d "
                        "need more local memory than the device has",
                        rows, bn);

  /* The workspace holds splits x rows partial rows of Dv floats and one
   * LSE each; the count of splits is capped so that it fits one allocation
   * (sizes checked against wrapping). */
  decode_dims d;
  size_t units = 0, per_split = 0, ws = 0;
  d.nrows = nrows;
  d.rowgroups = (nrows + (size_t)rows - 1) / (size_t)rows;
  if (!mul_ok(p->batch * p->heads_kv, d.rowgroups, &units) ||
      !mul_ok(p->batch * p->heads_q, p->seq_q, &d.rows) ||
      !mul_ok(d.rows, (p->dim_v + 1) * sizeof(float), &per_split))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: the decode partials overflow the "
                        "address space");
  size_t max_splits = (size_t)(dev->max_mem_alloc_size / per_split);
  choose_splits(p, dev, (size_t)clattn__tiles_get(t, "SPLITS"), (size_t)bn,
                units, max_splits < 1 ? 1 : max_splits, &d);
  if (d.splits > 1 && !mul_ok(d.splits, per_split, &ws))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: the decode partials overflow the "
                        "address space");
  if (d.splits > 4096 || d.kps > INT_MAX)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: %zu splits of %zu keys are out "
                        "of range",
                        d.splits, d.kps);
  /* describe() shows the count in use. */
  clattn__tiles_add(t, "SPLITS", (int)d.splits);
  plan->workspace_bytes = d.splits > 1 ? ws : 0;
cleanup:
  return st;
}

static clattn_status decode_create(clattn_plan_t plan, const char *spec) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  const clattn__tiles *t = &plan->tiles;
  clattn_status st = CLATTN_SUCCESS;
  CLATTN_CHECK(decode_choose(plan, spec));
  const int rows = clattn__tiles_get(t, "ROWS");
  const int bn = clattn__tiles_get(t, "BLOCK_N");
  const int vec = clattn__tiles_get(t, "VEC");
  const int wg = clattn__tiles_get(t, "WG");

  char options[512];
  snprintf(options, sizeof options,
           "%s -D HEAD_DIM=%zu -D HEAD_DIM_V=%zu -D SIGMOID=%d -D ROWS=%d "
           "-D BLOCK_N=%d -D VEC=%d -D WG=%d",
           clattn__dtype_options(p->dtype), p->dim, p->dim_v,
           p->variant == CLATTN_VARIANT_SIGMOID, rows, bn, vec, wg);
  static const char *const files[] = {"common.cl", "score.cl", "decode.cl"};
  cl_program program = NULL;
  CLATTN_CHECK(
      clattn__pipe_program(plan, files, 3, options, sizeof options, &program));
  clattn__plan_note_warnings(plan, program);
  cl_int err = CL_SUCCESS;
  plan->kernels[0] = clCreateKernel(
      program, wg == 1 ? "clattn_decode_split" : "clattn_decode_split_wg",
      &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
  plan->nkernels = 1; /* released by the plan even if the next one fails */
  plan->kernels[1] = clCreateKernel(program, "clattn_decode_merge", &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
  plan->nkernels = 2;
  if (wg > 1) {
    size_t kwg = 0;
    CLATTN_CL_CHECK(ctx,
                    clGetKernelWorkGroupInfo(plan->kernels[0], ctx->device,
                                             CL_KERNEL_WORK_GROUP_SIZE,
                                             sizeof kwg, &kwg, NULL),
                    "clGetKernelWorkGroupInfo");
    if ((size_t)wg > kwg)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                          "invalid descriptor: tiles: the device runs this "
                          "kernel with at most %zu work-items per group, not "
                          "WG=%d",
                          kwg, wg);
  }
  if (plan->workspace_bytes > 0) {
    plan->workspace = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE,
                                     plan->workspace_bytes, NULL, &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateBuffer(workspace)");
  }
cleanup:
  return st;
}

static clattn_status decode_enqueue(clattn_plan_t plan, const cl_mem *bufs,
                                    cl_uint nwait, const cl_event *wait,
                                    cl_event *event) {
  cl_mem q = bufs[CLATTN__BUF_Q], k = bufs[CLATTN__BUF_K];
  cl_mem v = bufs[CLATTN__BUF_V], o = bufs[CLATTN__BUF_O];
  cl_mem lse = bufs[CLATTN__BUF_LSE];
  const clattn__problem *p = &plan->p;
  clattn_context_t ctx = plan->ctx;
  clattn_status st = CLATTN_SUCCESS;
  const float log2e = 1.4426950408889634f;
  const clattn__tiles *t = &plan->tiles;
  size_t rows_per = (size_t)clattn__tiles_get(t, "ROWS");
  size_t wg = (size_t)clattn__tiles_get(t, "WG");
  size_t splits = (size_t)clattn__tiles_get(t, "SPLITS");
  size_t blocks = (p->seq_k + (size_t)clattn__tiles_get(t, "BLOCK_N") - 1) /
                  (size_t)clattn__tiles_get(t, "BLOCK_N");
  size_t kps =
      (blocks + splits - 1) / splits * (size_t)clattn__tiles_get(t, "BLOCK_N");
  size_t nrows = p->heads_q / p->heads_kv * p->seq_q;
  size_t rows = p->batch * p->heads_q * p->seq_q;
  cl_int write_lse = lse != NULL, direct = splits == 1;
  cl_int nq = (cl_int)p->seq_q, nk = (cl_int)p->seq_k;
  cl_int hq = (cl_int)p->heads_q, hkv = (cl_int)p->heads_kv;
  cl_int ikps = (cl_int)kps, nsplits = (cl_int)splits;
  cl_ulong lse_off = (cl_ulong)(splits * rows * p->dim_v), nrows_all = rows;
  cl_float scale_log2 = p->scale * log2e, bias_log2 = p->bias * log2e;
  cl_mem part = direct ? NULL : plan->workspace;
  cl_event split_done = NULL;
  cl_kernel kern = plan->kernels[0];
  cl_uint a = 0;
  cl_int err = CL_SUCCESS;
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &q);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &k);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &v);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &o);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), lse ? &lse : NULL);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), part ? &part : NULL);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_ulong), &lse_off);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &write_lse);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &direct);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &nq);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &hq);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &ikps);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_float), &scale_log2);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_float), &bias_log2);
  if (err == CL_SUCCESS)
    err = clattn__pipe_args(plan, kern, &a, bufs[CLATTN__BUF_LENS_Q],
                            bufs[CLATTN__BUF_LENS_K]);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t global[3] = {splits * wg, (nrows + rows_per - 1) / rows_per,
                      p->batch * p->heads_kv};
  size_t local[3] = {wg, 1, 1};
  if (direct) {
    CLATTN_CHECK(
        clattn__enqueue(plan, kern, 3, global, local, nwait, wait, event));
    goto cleanup;
  }
  CLATTN_CHECK(
      clattn__enqueue(plan, kern, 3, global, local, nwait, wait, &split_done));
  kern = plan->kernels[1];
  a = 0;
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &part);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_ulong), &lse_off);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &o);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), lse ? &lse : NULL);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &write_lse);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &nsplits);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_ulong), &nrows_all);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t mglobal[2] = {p->dim_v, rows};
  CLATTN_CHECK(
      clattn__enqueue(plan, kern, 2, mglobal, NULL, 1, &split_done, event));
cleanup:
  if (split_done)
    clReleaseEvent(split_done);
  return st;
}

/* The device's own kernel over a few split counts (auto first) and block
 * sizes, then the other kernel at its defaults. */
static int decode_candidate(const clattn__problem *p,
                            const clattn_device_profile *dev, size_t index,
                            char *buf, size_t size) {
  (void)p;
  size_t cu = dev->compute_units ? dev->compute_units : 1;
  static const size_t split_mul[] = {0, 1, 2, 4, 8, 16};
  size_t n = 0;
  if (dev->is_cpu) {
    static const int blocks[] = {16, 8};
    for (size_t a = 0; a < 2; a++)
      for (size_t b = 0; b < 6; b++)
        if (n++ == index)
          return snprintf(buf, size, "SHAPE=decode,WG=1,BLOCK_N=%d,SPLITS=%zu",
                          blocks[a], split_mul[b] * cu) > 0;
    if (n++ == index)
      return snprintf(buf, size, "SHAPE=decode,WG=16,BLOCK_N=16") > 0;
  } else {
    static const int wgs[] = {32, 64, 128, 256};
    for (size_t a = 0; a < 4; a++) {
      if ((size_t)wgs[a] > dev->max_work_group_size)
        continue;
      for (size_t b = 0; b < 6; b++)
        if (n++ == index)
          return snprintf(buf, size, "SHAPE=decode,WG=%d,BLOCK_N=%d,SPLITS=%zu",
                          wgs[a], wgs[a], split_mul[b] * cu * 4) > 0;
    }
    if (n++ == index)
      return snprintf(buf, size, "SHAPE=decode,WG=1,BLOCK_N=16") > 0;
  }
  return 0;
}

const clattn__family clattn__decode_family = {decode_choose, decode_create,
                                              decode_enqueue, decode_candidate};
