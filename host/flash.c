/*
 * flash.c - softmax and sigmoid attention: tile choice, program build and
 * launch of cl/softmax.cl and cl/sigmoid.cl.
 */
#include "plan.h"
#include "program.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Keys padded to a whole number of key blocks in the cpu shape. */
static size_t padded_keys(const clattn_plan_t plan) {
  int bn = clattn__tiles_get(&plan->tiles, "BLOCK_N");
  return clattn__round_up(plan->p.seq_k, (size_t)(bn > 0 ? bn : 1));
}

/* Floats of a padded value row in the cpu shape's packed V. */
static size_t padded_dim_v(const clattn_plan_t plan) {
  int vec = clattn__tiles_get(&plan->tiles, "VEC");
  return clattn__round_up(plan->p.dim_v, (size_t)(vec > 0 ? vec : 1));
}

/* Floats of the packed K (kt) in front of the packed V in the workspace. */
static size_t packed_k_floats(const clattn_plan_t plan) {
  const clattn__problem *p = &plan->p;
  return p->batch * p->heads_kv * p->dim * padded_keys(plan);
}

/* The cpu shape's tiles, from the device's vector width W: 16-float
 * vectors (AVX-512) come with 32 vector registers, narrower ones with 16.
 * Each micro-tile holds BLOCK_M x S_VECS (or O_VECS) accumulators, the
 * S_VECS (O_VECS) operand vectors of one step and a broadcast, within that
 * register file; the key block keeps the packed K and V blocks it streams
 * (BLOCK_N x (D + Dv) floats) well inside a core's L2 and the BLOCK_M x
 * BLOCK_N score block in L1. */
static void cpu_tiles(const clattn__problem *p,
                      const clattn_device_profile *dev, clattn__tiles *t) {
  cl_uint w = dev->native_vector_width_float;
  if (w < dev->preferred_vector_width_float)
    w = dev->preferred_vector_width_float;
  const int wide = w >= 16;
  const int regs = wide ? 32 : 16;
  const int keys_vec = wide ? 16 : 8;
  int vec = wide ? 16 : 8;
  while (vec > 1 && (size_t)vec / 2 >= p->dim_v)
    vec /= 2;
  const int dvch = (int)((p->dim_v + (size_t)vec - 1) / (size_t)vec);
  int rows = wide ? 8 : 6;
  if ((size_t)rows > p->seq_q)
    rows = (int)p->seq_q;
  int s_vecs = (regs - 1) / (rows + 1);
  s_vecs = s_vecs > 4 ? 4 : s_vecs < 1 ? 1 : s_vecs;
  int o_vecs = (regs - 1) / (rows + 1);
  o_vecs = o_vecs > dvch ? dvch : o_vecs < 1 ? 1 : o_vecs;
  const int ktile = s_vecs * keys_vec;
  size_t row_bytes = (p->dim + (size_t)dvch * (size_t)vec) * sizeof(float);
  size_t bn = 64 * 1024 / row_bytes;
  if (bn > 256)
    bn = 256;
  bn = clattn__round_up(bn < (size_t)ktile ? (size_t)ktile : bn / ktile * ktile,
                        (size_t)ktile);
  size_t nk_tiles = clattn__round_up(p->seq_k, (size_t)ktile);
  if (bn > nk_tiles)
    bn = nk_tiles;
  clattn__tiles_add(t, "KEYS_VEC", keys_vec);
  clattn__tiles_add(t, "BLOCK_M", rows);
  clattn__tiles_add(t, "BLOCK_N", (int)bn);
  clattn__tiles_add(t, "VEC", vec);
  clattn__tiles_add(t, "S_VECS", s_vecs);
  clattn__tiles_add(t, "O_VECS", o_vecs);
  clattn__tiles_add(t, "WG", 1);
}

/* Floats of the private arrays one work-item holds (cl/flash.cl and the
 * variant's file): query rows, accumulators, scores, row maxima and sums,
 * and the rows of K and V in flight; and the gpu shape's K/V tiles in local
 * memory. */
static void flash_footprint(const clattn__problem *p, int shape,
                            const clattn__tiles *t, size_t *floats,
                            size_t *local_bytes) {
  size_t vec = (size_t)clattn__tiles_get(t, "VEC");
  size_t bm = (size_t)clattn__tiles_get(t, "BLOCK_M");
  size_t bn = (size_t)clattn__tiles_get(t, "BLOCK_N");
  size_t kv = (size_t)clattn__tiles_get(t, "KEYS_VEC");
  size_t dp = clattn__round_up(p->dim, vec);
  size_t dvp = clattn__round_up(p->dim_v, vec);
  *local_bytes = 0;
  if (shape == CLATTN__SHAPE_CPU) {
    /* Query rows, output accumulators and the score block of BLOCK_M rows,
     * the row statistics, and one packed value row. */
    (void)kv;
    *floats = bm * (p->dim + dvp + bn + 2) + dvp;
  } else if (shape == CLATTN__SHAPE_GPU) {
    *floats = dp + dvp + bn + 2;
    *local_bytes = bn * (dp + dvp) * sizeof(float);
  } else {
    *floats = bm * (dp + dvp + bn + 2) + dp + dvp;
  }
}

/* Chooses the shape and tiles and checks them; builds nothing, so that
 * clattn_desc_check can ask it too. */
static clattn_status flash_choose(clattn_plan_t plan, const char *spec) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  const clattn_device_profile *dev = &ctx->profile;
  clattn_status st = CLATTN_SUCCESS;

  /* A CPU runtime wants long vector loops and several rows per work-item
   * (cpu); a GPU wants work-groups that share K/V tiles in local memory
   * (gpu); the row shape is the fallback when local memory is too small. */
  clattn__tiles *t = &plan->tiles;
  int shape = 0;
  CLATTN_CHECK(clattn__shape_choose(ctx, spec, 7u, &shape));
  if (shape == CLATTN__SHAPE_GPU) {
    int vec = clattn__pick_vec(p->dim, p->dim_v, 4);
    size_t row_bytes = (clattn__round_up(p->dim, (size_t)vec) +
                        clattn__round_up(p->dim_v, (size_t)vec)) *
                       sizeof(float);
    /* Few keys per local tile: a work-item holds its query row, its output
     * row and BLOCK_N scores in registers, which at D = 128 already fill a
     * GPU's register file, and a small tile leaves local memory for more
     * resident groups. Many rows per group, so that each tile loaded is
     * shared widely. On an H200 (clattn-tune, D = 64, N = 1024-4096),
     * 128 rows by 8 keys ran 1.3-1.4x faster than 64 by 32, and within
     * 1.09x of the best tile at each length; at D = 128 1.5x. */
    int bn = 8;
    while (bn > 1 && (cl_ulong)bn * row_bytes > dev->local_mem_size / 2)
      bn /= 2;
    if ((cl_ulong)bn * row_bytes > dev->local_mem_size / 2)
      shape = CLATTN__SHAPE_ROW;
    size_t bm = clattn__pow2_floor(dev->max_work_group_size);
    bm = bm < 128 ? bm : 128;
    clattn__tiles_add(t, "BLOCK_M", (int)bm);
    clattn__tiles_add(t, "BLOCK_N", bn);
    clattn__tiles_add(t, "VEC", vec);
  }
  if (shape == CLATTN__SHAPE_CPU) {
    cpu_tiles(p, dev, t);
  } else if (shape == CLATTN__SHAPE_ROW) {
    t->count = 0;
    clattn__tiles_add(t, "BLOCK_M", dev->is_cpu ? 4 : 1);
    clattn__tiles_add(t, "BLOCK_N", dev->is_cpu ? 16 : 8);
    /* On a CPU, no wider than its native vectors: a float16 on AVX2 changes
     * the calling convention and the runtime warns at every build. */
    clattn__tiles_add(
        t, "VEC",
        clattn__pick_vec(
            p->dim, p->dim_v,
            dev->is_cpu ? (dev->native_vector_width_float >= 16 ? 16 : 8) : 4));
    clattn__tiles_add(t, "WG", dev->is_cpu ? 1 : 64);
  }
  t->source = "heuristic";
  CLATTN_CHECK(clattn__tiles_override(ctx, t, spec));
  plan->shape = clattn__shape_name(shape);
  plan->shape_id = shape;
  int vec = clattn__tiles_get(t, "VEC");
  int keys_vec = clattn__tiles_get(t, "KEYS_VEC");
  int bm = clattn__tiles_get(t, "BLOCK_M");
  if (vec != 1 && vec != 2 && vec != 4 && vec != 8 && vec != 16)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: VEC must be 1, 2, 4, 8 "
                        "or 16");
  if (shape == CLATTN__SHAPE_CPU) {
    int s_vecs = clattn__tiles_get(t, "S_VECS");
    int o_vecs = clattn__tiles_get(t, "O_VECS");
    if (keys_vec != 8 && keys_vec != 16)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                          "invalid descriptor: tiles: KEYS_VEC must be 8 or "
                          "16");
    /* A key block is whole score micro-tiles: an override of KEYS_VEC or
     * S_VECS alone rounds the default block up rather than fail. */
    int bn = clattn__tiles_get(t, "BLOCK_N");
    if (s_vecs >= 1 && s_vecs <= 8 && bn >= 1) {
      bn = (int)clattn__round_up((size_t)bn, (size_t)(s_vecs * keys_vec));
      clattn__tiles_add(t, "BLOCK_N", bn);
    }
    if (s_vecs < 1 || s_vecs > 8 || o_vecs < 1 || o_vecs > 16 || bn < 1 ||
        bm < 1 || bm > 64 || (long)bm * bn > 16384)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                          "invalid descriptor: tiles: S_VECS must be 1..8, "
                          "O_VECS 1..16, BLOCK_N at least 1, BLOCK_M 1..64 "
                          "and BLOCK_M * BLOCK_N at most 16384");
  }
  if (bm < 1 || bm > (shape == CLATTN__SHAPE_GPU ? 1024 : 64) ||
      clattn__tiles_get(t, "BLOCK_N") < 1 ||
      (shape != CLATTN__SHAPE_GPU && clattn__tiles_get(t, "WG") < 1))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: BLOCK_M must be 1..64 "
                        "(1..1024 for the gpu shape), BLOCK_N and WG at least "
                        "1");
  size_t private_floats = 0, local_bytes = 0;
  flash_footprint(p, shape, t, &private_floats, &local_bytes);
  CLATTN_CHECK(clattn__tiles_fit(ctx, t, p, private_floats, local_bytes));
  if (shape == CLATTN__SHAPE_CPU) {
    /* Packed K and V: B x Hkv x padded Nk x (D + padded Dv) floats. */
    int fits = CLATTN_SIZE_PRODUCT(&plan->workspace_bytes, p->batch,
                                   p->heads_kv, padded_keys(plan),
                                   p->dim + padded_dim_v(plan), sizeof(float));
    CLATTN_CHECK(clattn__workspace_size(
        plan, "packed K and V, B x Hkv x padded Nk x (D + padded Dv) floats",
        fits, plan->workspace_bytes));
  }
cleanup:
  return st;
}

/* Computes the mask_mod's block mask (clattn_block_mask in flash.cl) into
 * a buffer of the plan, once: B x Hq x row blocks x key blocks bytes. */
static clattn_status make_block_mask(clattn_plan_t plan, cl_program program) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  clattn_status st = CLATTN_SUCCESS;
  cl_kernel kern = NULL;
  cl_event done = NULL;
  cl_int err = CL_SUCCESS;
  size_t bm = (size_t)clattn__tiles_get(&plan->tiles, "BLOCK_M");
  size_t bn = (size_t)clattn__tiles_get(&plan->tiles, "BLOCK_N");
  size_t nqb = (p->seq_q + bm - 1) / bm, nkb = (p->seq_k + bn - 1) / bn;
  size_t bytes = 0;
  int fits = CLATTN_SIZE_PRODUCT(&bytes, p->batch, p->heads_q, nqb, nkb);
  CLATTN_CHECK(clattn__workspace_size(
      plan, "the mask_mod's block mask, B x Hq x row blocks x key blocks bytes",
      fits, bytes));
  plan->block_mask =
      clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateBuffer(block mask)");
  plan->block_mask_bytes = bytes;
  kern = clCreateKernel(program, "clattn_block_mask", &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
  cl_int nq = (cl_int)p->seq_q, nk = (cl_int)p->seq_k, hq = (cl_int)p->heads_q;
  CLATTN_SET_ARG(err, kern, 0, sizeof(cl_mem), &plan->block_mask);
  CLATTN_SET_ARG(err, kern, 1, sizeof(cl_int), &nq);
  CLATTN_SET_ARG(err, kern, 2, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, kern, 3, sizeof(cl_int), &hq);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t global[3] = {nkb, nqb, p->batch * p->heads_q};
  CLATTN_CHECK(clattn__enqueue(plan, kern, 3, global, NULL, 0, NULL, &done));
  CLATTN_CL_CHECK(ctx, clWaitForEvents(1, &done), "clWaitForEvents");
cleanup:
  if (done)
    clReleaseEvent(done);
  if (kern)
    clReleaseKernel(kern);
  return st;
}

static clattn_status flash_create(clattn_plan_t plan, const char *spec) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  clattn__tiles *t = &plan->tiles;
  clattn_status st = CLATTN_SUCCESS;
  CLATTN_CHECK(flash_choose(plan, spec));
  const int shape = plan->shape_id;
  const int bm = clattn__tiles_get(t, "BLOCK_M");

  int sigmoid = p->variant == CLATTN_VARIANT_SIGMOID;
  char options[512];
  snprintf(options, sizeof options,
           "%s -D HEAD_DIM=%zu -D HEAD_DIM_V=%zu -D SHAPE=%d",
           clattn__dtype_options(p->dtype), p->dim, p->dim_v, shape);
  /* WG is a launch parameter, not a kernel macro; SHAPE is passed above. */
  clattn__tiles kt = *t;
  kt.count = 0;
  for (size_t i = 0; i < t->count; i++) {
    if (strcmp(t->names[i], "WG") != 0)
      clattn__tiles_add(&kt, t->names[i], t->values[i]);
  }
  clattn__tiles_options(&kt, options, sizeof options);
  const char *files[] = {"common.cl", "keys.cl", "score.cl", "flash.cl",
                         sigmoid ? "sigmoid.cl" : "softmax.cl"};
  cl_program program = NULL;
  CLATTN_CHECK(
      clattn__pipe_program(plan, files, 5, options, sizeof options, &program));
  clattn__plan_note_warnings(plan, program);
  cl_int err = CL_SUCCESS;
  static const char *const names[2][3] = {
      {"clattn_softmax_fwd", "clattn_softmax_fwd_kt", "clattn_softmax_fwd_gpu"},
      {"clattn_sigmoid_fwd", "clattn_sigmoid_fwd_kt",
       "clattn_sigmoid_fwd_gpu"}};
  const char *name = names[sigmoid][shape];
  plan->kernels[0] = clCreateKernel(program, name, &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
  plan->nkernels = 1;
  if (shape == CLATTN__SHAPE_CPU) {
    plan->kernels[1] = clCreateKernel(program, "clattn_pack_kv", &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
    plan->nkernels = 2;
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
  if (shape == CLATTN__SHAPE_GPU) {
    /* The group size is BLOCK_M, a kernel macro: a device that cannot run
     * it gets the largest power of two it can, in a rebuilt program. */
    if ((size_t)bm > kwg) {
      int fit = (int)clattn__pow2_floor(kwg);
      char spec2[64];
      snprintf(spec2, sizeof spec2, "SHAPE=gpu,BLOCK_M=%d", fit);
      clReleaseKernel(plan->kernels[0]);
      plan->kernels[0] = NULL;
      plan->nkernels = 0;
      t->count = 0;
      return flash_create(plan, spec2);
    }
  } else {
    int wg = clattn__tiles_get(t, "WG");
    while (wg > 1 && (size_t)wg > kwg)
      wg /= 2;
    clattn__tiles_add(t, "WG", wg);
  }
  if (p->mask_mod)
    CLATTN_CHECK(make_block_mask(plan, program));
cleanup:
  return st;
}

static clattn_status flash_enqueue(clattn_plan_t plan, const cl_mem *bufs,
                                   cl_uint nwait, const cl_event *wait,
                                   cl_event *event) {
  cl_mem q = bufs[CLATTN__BUF_Q], k = bufs[CLATTN__BUF_K];
  cl_mem v = bufs[CLATTN__BUF_V], o = bufs[CLATTN__BUF_O];
  cl_mem lse = bufs[CLATTN__BUF_LSE];
  const clattn__problem *p = &plan->p;
  clattn_context_t ctx = plan->ctx;
  clattn_status st = CLATTN_SUCCESS;
  cl_kernel kern = plan->kernels[0];
  const float log2e = 1.4426950408889634f;
  const int keys = plan->nkernels == 2;
  const int gpu = plan->shape_id == CLATTN__SHAPE_GPU;
  cl_int nq = (cl_int)p->seq_q, nk = (cl_int)p->seq_k;
  cl_int nkp = (cl_int)padded_keys(plan);
  cl_int hq = (cl_int)p->heads_q, hkv = (cl_int)p->heads_kv;
  cl_float scale_log2 = p->scale * log2e;
  cl_event transposed = NULL;
  cl_uint a = 0;
  cl_int err = CL_SUCCESS;

  cl_ulong vp_off = keys ? (cl_ulong)packed_k_floats(plan) : 0;
  if (keys) {
    cl_kernel tk = plan->kernels[1];
    CLATTN_SET_ARG(err, tk, 0, sizeof(cl_mem), &k);
    CLATTN_SET_ARG(err, tk, 1, sizeof(cl_mem), &v);
    CLATTN_SET_ARG(err, tk, 2, sizeof(cl_mem), &plan->workspace);
    CLATTN_SET_ARG(err, tk, 3, sizeof(cl_int), &nk);
    CLATTN_SET_ARG(err, tk, 4, sizeof(cl_int), &nkp);
    CLATTN_SET_ARG(err, tk, 5, sizeof(cl_ulong), &vp_off);
    CLATTN_SET_ARG(err, tk, 6, sizeof(cl_int), &hkv);
    cl_mem lens_k = bufs[CLATTN__BUF_LENS_K];
    CLATTN_SET_ARG(err, tk, 7, sizeof(cl_mem), lens_k ? &lens_k : NULL);
    CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
    size_t tglobal[2] = {(size_t)nkp, p->batch * p->heads_kv};
    CLATTN_CHECK(
        clattn__enqueue(plan, tk, 2, tglobal, NULL, nwait, wait, &transposed));
    nwait = 1;
    wait = &transposed;
  }
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &q);
  if (keys) {
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &plan->workspace);
  } else {
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &k);
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &v);
  }
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), &o);
  if (p->variant == CLATTN_VARIANT_SOFTMAX) {
    cl_int write_lse = lse != NULL;
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_mem), lse ? &lse : NULL);
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &write_lse);
  }
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &nq);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &nk);
  if (keys)
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &nkp);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &hq);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, kern, a++, sizeof(cl_float), &scale_log2);
  if (p->variant == CLATTN_VARIANT_SIGMOID) {
    cl_float bias_log2 = p->bias * log2e;
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_float), &bias_log2);
  }
  if (keys)
    CLATTN_SET_ARG(err, kern, a++, sizeof(cl_ulong), &vp_off);
  if (err == CL_SUCCESS)
    err = clattn__pipe_args(plan, kern, &a, bufs[CLATTN__BUF_LENS_Q],
                            bufs[CLATTN__BUF_LENS_K]);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t bm = (size_t)clattn__tiles_get(&plan->tiles, "BLOCK_M");
  size_t wg = (size_t)clattn__tiles_get(&plan->tiles, "WG");
  size_t local[3] = {gpu ? bm : wg, 1, 1};
  size_t global[3] = {gpu ? clattn__round_up(p->seq_q, bm)
                          : clattn__round_up((p->seq_q + bm - 1) / bm, wg),
                      p->heads_q, p->batch};
  if (plan->shape_id == CLATTN__SHAPE_CPU) {
    /* One dimension, row blocks fastest (clattn_row_block_ids). */
    global[0] *= global[1] * global[2];
    global[1] = global[2] = 1;
  }
  CLATTN_CHECK(
      clattn__enqueue(plan, kern, 3, global, local, nwait, wait, event));
cleanup:
  if (transposed)
    clReleaseEvent(transposed);
  return st;
}

/* The device's own shape over a grid of its main tiles, then the other
 * shapes at their defaults. On a CPU the grid spans the micro-tile (rows x
 * vectors, within the register file of the device's vector width and
 * beyond it by one step) and the key block. */
static int flash_candidate(const clattn__problem *p,
                           const clattn_device_profile *dev, size_t index,
                           char *buf, size_t size) {
  (void)p;
  static const int cpu_rows[] = {4, 6, 8, 12};
  static const int cpu_keys[] = {64, 256};
  static const int gpu_rows[] = {32, 64, 128, 256};
  static const int gpu_keys[] = {4, 8, 16, 32, 64};
  size_t n = 0;
  if (dev->is_cpu) {
    /* Micro-tiles of r rows by v vectors whose accumulators, operands and
     * a broadcast fit the register file of the device's vector width, then
     * the default tile with other key blocks. */
    const int regs = dev->native_vector_width_float >= 16 ||
                             dev->preferred_vector_width_float >= 16
                         ? 32
                         : 16;
    for (size_t a = 0; a < 4; a++)
      for (int v = 1; v <= 4; v++) {
        if (cpu_rows[a] * v + v + 1 > regs)
          continue;
        if (n++ == index)
          return snprintf(buf, size, "SHAPE=cpu,BLOCK_M=%d,S_VECS=%d,O_VECS=%d",
                          cpu_rows[a], v, v) > 0;
      }
    for (size_t b = 0; b < 2; b++)
      if (n++ == index)
        return snprintf(buf, size, "SHAPE=cpu,BLOCK_N=%d", cpu_keys[b]) > 0;
    if (n++ == index)
      return snprintf(buf, size, "SHAPE=gpu") > 0;
  } else {
    for (size_t a = 0; a < 4; a++)
      for (size_t b = 0; b < sizeof gpu_keys / sizeof *gpu_keys; b++) {
        if ((size_t)gpu_rows[a] > dev->max_work_group_size)
          continue;
        if (n++ == index)
          return snprintf(buf, size, "SHAPE=gpu,BLOCK_M=%d,BLOCK_N=%d",
                          gpu_rows[a], gpu_keys[b]) > 0;
      }
    if (n++ == index)
      return snprintf(buf, size, "SHAPE=cpu") > 0;
  }
  if (n++ == index)
    return snprintf(buf, size, "SHAPE=row") > 0;
  return 0;
}

const clattn__family clattn__flash_family = {flash_choose, flash_create,
                                             flash_enqueue, flash_candidate};
