/*
 * linear.c - linear attention and cosFormer: tile choice, program build,
 * workspace and launch of the chunked kernels of cl/linear.cl (cosFormer adds
 * cl/cosformer.cl before it).
 */
#include "plan.h"
#include "program.h"

#include <stdio.h>
#include <string.h>

#define NKERNELS 3

static const char *const kernel_names[NKERNELS] = {
    "clattn_linear_state", "clattn_linear_prefix", "clattn_linear_out"};

/* The sizes the kernels derive from their macros (see cl/linear.cl). */
typedef struct linear_dims {
  size_t feat_rows;  /* rows of the state: D, or 2 D for cosFormer */
  size_t state_size; /* floats per state, a multiple of VEC */
  size_t block_size; /* floats per chunk: the state, and phi(K) if causal */
  size_t nchunks;    /* chunks of keys */
} linear_dims;

static linear_dims dims_of(const clattn_plan_t plan) {
  const clattn__problem *p = &plan->p;
  size_t vec = (size_t)clattn__tiles_get(&plan->tiles, "VEC");
  size_t chunk = (size_t)clattn__tiles_get(&plan->tiles, "CHUNK");
  linear_dims d;
  d.feat_rows = (p->variant == CLATTN_VARIANT_COSFORMER ? 2 : 1) * p->dim;
  d.state_size = d.feat_rows * clattn__round_up(p->dim_v, vec) +
                 clattn__round_up(d.feat_rows, vec);
  d.block_size =
      d.state_size + (p->causal ? p->dim * clattn__round_up(chunk, vec) : 0);
  d.nchunks = (p->seq_k + chunk - 1) / chunk;
  return d;
}

/* Vectors of vec floats in a row of Dv. */
static int dv_vectors(const clattn__problem *p, int vec) {
  return (int)((p->dim_v + (size_t)vec - 1) / (size_t)vec);
}

/* Floats of the private arrays one work-item holds (cl/linear.cl), the more
 * of the two large kernels: clattn_linear_state's phi(K) rows over the
 * chunk, their sums and accumulators; clattn_linear_out's query rows (and
 * for cosFormer their weighted copies), accumulators and, when causal, the
 * intra-chunk scores and position weights. */
static size_t linear_private_floats(const clattn_plan_t plan) {
  const clattn__problem *p = &plan->p;
  const clattn__tiles *t = &plan->tiles;
  size_t vec = (size_t)clattn__tiles_get(t, "VEC");
  size_t chunkp = clattn__round_up((size_t)clattn__tiles_get(t, "CHUNK"), vec);
  size_t bm = (size_t)clattn__tiles_get(t, "BLOCK_M");
  size_t rows = (size_t)clattn__tiles_get(t, "ROWS_D");
  size_t slice = (size_t)clattn__tiles_get(t, "DVT") * vec;
  size_t sslice = (size_t)clattn__tiles_get(t, "SDVT") * vec;
  size_t copies = p->variant == CLATTN_VARIANT_COSFORMER ? 2 : 1;
  size_t dpad = clattn__round_up(p->dim, vec);
  size_t state = copies * rows * (chunkp + vec + sslice) + sslice;
  size_t qrows = copies > 1 ? (1 + copies) * dpad : dpad;
  size_t out = bm * (qrows + slice + 1) + slice;
  if (p->causal)
    out += bm * (chunkp + 2 * vec) + clattn__round_up(chunkp + bm - 1, vec);
  return state > out ? state : out;
}

/* Chooses the shape and tiles and checks them; builds nothing, so that
 * clattn_desc_check can ask it too. */
static clattn_status linear_choose(clattn_plan_t plan, const char *spec) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  clattn_status st = CLATTN_SUCCESS;

  /* A CPU runtime wants long vector loops and several rows per work-item
   * (cpu); a GPU wants many small work-items in groups (gpu). Both run the
   * same kernels, which use no local memory. */
  clattn__tiles *t = &plan->tiles;
  int shape = 0;
  CLATTN_CHECK(clattn__shape_choose(
      ctx, spec, (1u << CLATTN__SHAPE_CPU) | (1u << CLATTN__SHAPE_GPU),
      &shape));
  if (shape == CLATTN__SHAPE_CPU) {
    /* Register-tiled micro-GEMMs: the state kernel keeps ROWS_D x copies x
     * SDVT vector accumulators, the output kernel BLOCK_M x DVT. Vector
     * width and register count come from the device's native width, never
     * from the machine clattn was built on. Sixteen accumulators (or the
     * whole register file, if smaller) is twice the independent chains that
     * two FMA pipes of 4-cycle latency need; the operands they meet are
     * used straight from the cache. With AVX2 code (16 registers) that beat
     * the 8 accumulators a budget leaving room for the operands gave:
     * 0.80-0.90 of the state kernel's time and 0.92 of the output's (D = 64
     * and 128, N = 1024, PoCL); with AVX-512 code, 24 or 32 were no faster
     * or spilled. The state kernel computes phi(K), and for cosFormer the
     * position weights of every key, for each of its row blocks, so it
     * takes rows before Dv vectors: cosFormer's slices are 2 vectors, 4
     * rows (0.80-0.89 of 1 or 2 rows of 4 vectors, both ISAs). */
    int width = 0, regs = 0;
    clattn__vector_regs(&ctx->profile, &width, &regs);
    int vec = clattn__pick_vec(p->dim, p->dim_v, width);
    int dvch = dv_vectors(p, vec);
    int copies = p->variant == CLATTN_VARIANT_COSFORMER ? 2 : 1;
    int accs = regs < 16 ? regs : 16;
    int dvt = dvch < 4 ? dvch : 4;
    int sdvt = dvch < 4 / copies ? dvch : 4 / copies;
    /* Intel's CPU runtime (preferred float width 1) vectorises across
     * work-items itself and leaves less room: its state kernel keeps
     * operands in registers, as with AVX2 code 3 rows of 2 vectors
     * (cosFormer) took 0.81 of 1 row of 4 and 4 rows 1.9x. */
    if (ctx->profile.preferred_vector_width_float == 1 &&
        regs - sdvt - 2 < accs)
      accs = regs - sdvt - 2;
    int rows = accs / (copies * sdvt);
    rows = rows < 1 ? 1 : rows > 8 ? 8 : rows;
    /* Even row blocks: rows past D are computed and dropped. */
    int blocks = (int)((p->dim + (size_t)rows - 1) / (size_t)rows);
    rows = (int)((p->dim + (size_t)blocks - 1) / (size_t)blocks);
    int bm = 1;
    while (bm < 8 && 2 * bm * dvt <= accs)
      bm *= 2;
    /* Query rows of the output kernel: as many as its accumulators allow,
     * on every runtime. On Intel's CPU runtime (its budget less the state
     * kernel's operands) that is 4 rows with AVX-512 code and 2 with AVX2
     * code, the fastest of 1, 2, 4 and 8 for both variants, D = 64 and 128,
     * causal and not (N = 1024): with AVX-512 code 4 rows took 0.35-0.70 of
     * 1 row's time (D = 128 linear: 0.87 ms against 2.2) and 0.64-0.95 of 2
     * rows'; with AVX2 code 2 rows took 0.63-0.71 of 1 row's and 4 rows spilled
     * (1.3-2.2x). */
    int wg = 1;
    if (ctx->profile.preferred_vector_width_float == 1) {
      /* Intel's CPU runtime pays per work-group: groups of 32 independent
       * work-items made its linear and cosFormer forward 11-20% faster
       * (D = 64, N = 1024 and 4096, causal and not); PoCL's times do not
       * depend on it. */
      wg = 32;
    }
    /* Causal chunks trade the intra-chunk work (grows with CHUNK) against
     * the states written, summed and read (shrink with it). */
    clattn__tiles_add(t, "CHUNK", p->causal ? 64 : 256);
    clattn__tiles_add(t, "BLOCK_M", bm);
    clattn__tiles_add(t, "ROWS_D", rows);
    clattn__tiles_add(t, "VEC", vec);
    clattn__tiles_add(t, "DVT", dvt);
    clattn__tiles_add(t, "SDVT", sdvt);
    clattn__tiles_add(t, "WG", wg);
  } else {
    int vec = clattn__pick_vec(p->dim, p->dim_v, 4);
    clattn__tiles_add(t, "CHUNK", 64);
    clattn__tiles_add(t, "BLOCK_M", 1);
    clattn__tiles_add(t, "ROWS_D", 1);
    clattn__tiles_add(t, "VEC", vec);
    int dvch = dv_vectors(p, vec);
    clattn__tiles_add(t, "DVT", dvch);
    clattn__tiles_add(t, "SDVT", dvch);
    clattn__tiles_add(t, "WG", 64);
  }
  t->source = "heuristic";
  CLATTN_CHECK(clattn__tiles_override(ctx, t, spec));
  plan->shape = clattn__shape_name(shape);
  plan->shape_id = shape;
  int vec = clattn__tiles_get(t, "VEC");
  int chunk = clattn__tiles_get(t, "CHUNK");
  int bm = clattn__tiles_get(t, "BLOCK_M");
  int rows = clattn__tiles_get(t, "ROWS_D");
  int dvt = clattn__tiles_get(t, "DVT");
  int sdvt = clattn__tiles_get(t, "SDVT");
  if (vec != 1 && vec != 2 && vec != 4 && vec != 8 && vec != 16)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: VEC must be 1, 2, 4, 8 "
                        "or 16");
  /* Rows live in private arrays: keep them to sizes a compiler can hold. */
  if (chunk < 1 || bm < 1 || bm > 64 || rows < 1 || rows > 64 || dvt < 1 ||
      dvt > 64 || sdvt < 1 || sdvt > 64 || clattn__tiles_get(t, "WG") < 1)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: CHUNK and WG must be at "
                        "least 1, BLOCK_M, ROWS_D, DVT and SDVT 1..64");
  /* A causal query block must lie within one key chunk. */
  if (p->causal && chunk % bm != 0)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: CHUNK must be a multiple "
                        "of BLOCK_M");
  CLATTN_CHECK(clattn__tiles_fit(ctx, t, p, linear_private_floats(plan), 0));
  /* Per (batch, kv head) a state per chunk and, when causal, phi(K): linear
   * in Nk. */
  linear_dims d = dims_of(plan);
  int fits = CLATTN_SIZE_PRODUCT(&plan->workspace_bytes, p->batch, p->heads_kv,
                                 d.nchunks, d.block_size, sizeof(cl_float));
  CLATTN_CHECK(clattn__workspace_size(plan, "B x Hkv x chunks x chunk states",
                                      fits, plan->workspace_bytes));
cleanup:
  return st;
}

static clattn_status linear_create(clattn_plan_t plan, const char *spec) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  clattn__tiles *t = &plan->tiles;
  clattn_status st = CLATTN_SUCCESS;
  CLATTN_CHECK(linear_choose(plan, spec));

  int cosformer = p->variant == CLATTN_VARIANT_COSFORMER;
  char options[512];
  snprintf(options, sizeof options,
           "%s -D HEAD_DIM=%zu -D HEAD_DIM_V=%zu -D CAUSAL=%d "
           "-D FEATURE_MAP=%d",
           clattn__dtype_options(p->dtype), p->dim, p->dim_v, p->causal,
           p->feature_map == CLATTN_FEATURE_MAP_RELU ? 2 : 1);
  /* WG is a launch parameter, not a kernel macro. */
  clattn__tiles kt = *t;
  kt.count = 0;
  for (size_t i = 0; i < t->count; i++) {
    if (strcmp(t->names[i], "WG") != 0)
      clattn__tiles_add(&kt, t->names[i], t->values[i]);
  }
  clattn__tiles_options(&kt, options, sizeof options);
  const char *linear_files[] = {"common.cl", "linear.cl"};
  const char *cos_files[] = {"common.cl", "cosformer.cl", "linear.cl"};
  cl_program program = NULL;
  CLATTN_CHECK(clattn__program_get(ctx, cosformer ? cos_files : linear_files,
                                   cosformer ? 3 : 2, options, &program));

  /* A device may not run the chosen group size with these kernels' register
   * use; fall back to what all three can run rather than fail at launch. */
  int wg = clattn__tiles_get(t, "WG");
  for (size_t i = 0; i < NKERNELS; i++) {
    cl_int err = CL_SUCCESS;
    plan->kernels[i] = clCreateKernel(program, kernel_names[i], &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
    plan->nkernels = i + 1;
    size_t kwg = 0;
    CLATTN_CL_CHECK(ctx,
                    clGetKernelWorkGroupInfo(plan->kernels[i], ctx->device,
                                             CL_KERNEL_WORK_GROUP_SIZE,
                                             sizeof kwg, &kwg, NULL),
                    "clGetKernelWorkGroupInfo");
    while (wg > 1 && (size_t)wg > kwg)
      wg /= 2;
  }
  clattn__tiles_add(t, "WG", wg);

  cl_int err = CL_SUCCESS;
  plan->workspace = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE,
                                   plan->workspace_bytes, NULL, &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateBuffer (workspace)");
cleanup:
  return st;
}

/* A kernel's work-group size along dimension 0: WG, or when the kernel
 * has fewer than WG work-items there (n), the largest power of two within
 * them, so that a small kernel is not padded to a group of idle ones. */
static size_t group_size(size_t n, size_t wg) {
  return wg <= n ? wg : clattn__pow2_floor(n);
}

static clattn_status linear_enqueue(clattn_plan_t plan, const cl_mem *bufs,
                                    cl_uint nwait, const cl_event *wait,
                                    cl_event *event) {
  cl_mem q = bufs[CLATTN__BUF_Q], k = bufs[CLATTN__BUF_K];
  cl_mem v = bufs[CLATTN__BUF_V], o = bufs[CLATTN__BUF_O];
  cl_mem lse = bufs[CLATTN__BUF_LSE];
  cl_mem lens_q = bufs[CLATTN__BUF_LENS_Q], lens_k = bufs[CLATTN__BUF_LENS_K];
  (void)lse; /* plan.c refuses an LSE for these variants */
  const clattn__problem *p = &plan->p;
  clattn_context_t ctx = plan->ctx;
  clattn_status st = CLATTN_SUCCESS;
  cl_event ev[NKERNELS] = {NULL, NULL, NULL};
  linear_dims d = dims_of(plan);
  const clattn__tiles *t = &plan->tiles;
  size_t wg = (size_t)clattn__tiles_get(t, "WG");
  size_t bm = (size_t)clattn__tiles_get(t, "BLOCK_M");
  size_t rows_d = (size_t)clattn__tiles_get(t, "ROWS_D");
  size_t vec = (size_t)clattn__tiles_get(t, "VEC");
  cl_int nq = (cl_int)p->seq_q, nk = (cl_int)p->seq_k;
  cl_int hq = (cl_int)p->heads_q, hkv = (cl_int)p->heads_kv;
  cl_int nchunks = (cl_int)d.nchunks;
  cl_float eps = p->eps;
  /* t = (pi/2) pos / M = pi * pos * hinv; unused by linear attention.
   * Negative: the kernels take M = max(Lq, Lk) of each sequence. */
  cl_float hinv = p->cos_m_default ? -1.0f : (cl_float)(0.5 / (double)p->cos_m);
  cl_mem ws = plan->workspace;
  cl_int err = CL_SUCCESS;

  cl_kernel ks = plan->kernels[0];
  cl_uint a = 0;
  CLATTN_SET_ARG(err, ks, a++, sizeof(cl_mem), &k);
  CLATTN_SET_ARG(err, ks, a++, sizeof(cl_mem), &v);
  CLATTN_SET_ARG(err, ks, a++, sizeof(cl_mem), &ws);
  CLATTN_SET_ARG(err, ks, a++, sizeof(cl_int), &nq);
  CLATTN_SET_ARG(err, ks, a++, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, ks, a++, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, ks, a++, sizeof(cl_int), &nchunks);
  CLATTN_SET_ARG(err, ks, a++, sizeof(cl_float), &hinv);
  CLATTN_SET_ARG(err, ks, a++, sizeof(cl_mem), lens_q ? &lens_q : NULL);
  CLATTN_SET_ARG(err, ks, a++, sizeof(cl_mem), lens_k ? &lens_k : NULL);

  cl_kernel kp = plan->kernels[1];
  a = 0;
  CLATTN_SET_ARG(err, kp, a++, sizeof(cl_mem), &ws);
  CLATTN_SET_ARG(err, kp, a++, sizeof(cl_int), &nchunks);

  cl_kernel ko = plan->kernels[2];
  a = 0;
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_mem), &q);
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_mem), &v);
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_mem), &ws);
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_mem), &o);
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_int), &nq);
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_int), &nk);
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_int), &hq);
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_int), &hkv);
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_int), &nchunks);
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_float), &eps);
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_float), &hinv);
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_mem), lens_q ? &lens_q : NULL);
  CLATTN_SET_ARG(err, ko, a++, sizeof(cl_mem), lens_k ? &lens_k : NULL);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");

  size_t bhkv = p->batch * p->heads_kv;
  size_t n_state = (p->dim + rows_d - 1) / rows_d;
  size_t l_state[3] = {group_size(n_state, wg), 1, 1};
  size_t g_state[3] = {clattn__round_up(n_state, l_state[0]), d.nchunks, bhkv};
  size_t l_prefix[2] = {group_size(d.state_size / vec, wg), 1};
  size_t g_prefix[2] = {clattn__round_up(d.state_size / vec, l_prefix[0]),
                        bhkv};
  /* Causal blocks run over limits L = i + Nk - Nq from the first row's
   * block to Nk - 1, after the blocks that zero the rows seeing no key.
   * With lengths, a sequence's blocks (those, then the ones zeroing its rows
   * past Lq) split its Nq rows in three runs, one aligned to the limits:
   * never more than ceil(Nq / BLOCK_M) + 3. */
  size_t blocks = (p->seq_q + bm - 1) / bm;
  if (p->causal && (lens_q || lens_k)) {
    blocks += 3;
  } else if (p->causal) {
    size_t zero_rows = p->seq_q > p->seq_k ? p->seq_q - p->seq_k : 0;
    size_t first_l = p->seq_k > p->seq_q ? p->seq_k - p->seq_q : 0;
    blocks = (zero_rows + bm - 1) / bm + (p->seq_k - 1) / bm - first_l / bm + 1;
  }
  size_t l_out[3] = {group_size(blocks, wg), 1, 1};
  size_t g_out[3] = {clattn__round_up(blocks, l_out[0]), p->heads_q, p->batch};

  /* Each kernel waits for the one before, so the order holds on an
   * out-of-order queue too; only the last event may reach the caller. */
  CLATTN_CHECK(
      clattn__enqueue(plan, ks, 3, g_state, l_state, nwait, wait, &ev[0]));
  CLATTN_CHECK(
      clattn__enqueue(plan, kp, 2, g_prefix, l_prefix, 1, &ev[0], &ev[1]));
  CLATTN_CHECK(clattn__enqueue(plan, ko, 3, g_out, l_out, 1, &ev[1],
                               event ? event : &ev[2]));
cleanup:
  for (size_t i = 0; i < NKERNELS; i++) {
    if (ev[i])
      clReleaseEvent(ev[i]);
  }
  return st;
}

/* On a CPU: chunk sizes, then the state kernel's and the output kernel's
 * micro-tiles (rows x Dv vectors) that fit the device's registers, then
 * work-group sizes, then the gpu shape. On a GPU: chunk sizes and group sizes,
 * then the cpu shape. */
static int linear_candidate(const clattn__problem *p,
                            const clattn_device_profile *dev, size_t index,
                            char *buf, size_t size) {
  static const int causal_chunks[] = {32, 64, 128};
  static const int chunks[] = {128, 256, 512};
  static const int gpu_chunks[] = {32, 64, 128, 256};
  static const int tiles[] = {1, 2, 4, 8};
  static const int cpu_wg[] = {1, 8, 32};
  static const int gpu_wg[] = {32, 64, 128, 256};
  size_t n = 0;
  if (dev->is_cpu) {
    const int *ch = p->causal ? causal_chunks : chunks;
    for (size_t a = 0; a < 3; a++)
      if (n++ == index)
        return snprintf(buf, size, "SHAPE=cpu,CHUNK=%d", ch[a]) > 0;
    int width = 0, regs = 0;
    clattn__vector_regs(dev, &width, &regs);
    int vec = clattn__pick_vec(p->dim, p->dim_v, width);
    int dvch = dv_vectors(p, vec);
    int copies = p->variant == CLATTN_VARIANT_COSFORMER ? 2 : 1;
    /* Micro-tiles of up to a register file of accumulators. */
    for (size_t a = 0; a < 4; a++) {
      int dvt = tiles[a];
      if (dvt > dvch)
        continue;
      for (size_t b = 0; b < 4; b++) {
        int rows = tiles[b];
        if (rows * copies * dvt > regs)
          continue;
        if (n++ == index)
          return snprintf(buf, size, "SHAPE=cpu,ROWS_D=%d,SDVT=%d", rows, dvt) >
                 0;
      }
      for (size_t b = 0; b < 4; b++) {
        int bm = tiles[b];
        if (bm * dvt > regs)
          continue;
        if (n++ == index)
          return snprintf(buf, size, "SHAPE=cpu,BLOCK_M=%d,DVT=%d", bm, dvt) >
                 0;
      }
    }
    for (size_t a = 0; a < 3; a++)
      if (n++ == index)
        return snprintf(buf, size, "SHAPE=cpu,WG=%d", cpu_wg[a]) > 0;
    if (n++ == index)
      return snprintf(buf, size, "SHAPE=gpu") > 0;
  } else {
    for (size_t a = 0; a < 4; a++)
      for (size_t b = 0; b < 4; b++) {
        if ((size_t)gpu_wg[b] > dev->max_work_group_size)
          continue;
        if (n++ == index)
          return snprintf(buf, size, "SHAPE=gpu,CHUNK=%d,WG=%d", gpu_chunks[a],
                          gpu_wg[b]) > 0;
      }
    if (n++ == index)
      return snprintf(buf, size, "SHAPE=cpu") > 0;
  }
  return 0;
}

const clattn__family clattn__linear_family = {linear_choose, linear_create,
                                              linear_enqueue, linear_candidate};
