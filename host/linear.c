/*
 * linear.c - linear attention and cosFormer: tile choice, program build,
 * workspace and launch of the chunked kernels of cl/linear.cl (cosFormer adds
 * cl/cosformer.cl before it).
 */
#include "plan.h"
#include "program.h"

#include <stdio.h>
#include <string.h>
#include <stdlib.h> /* TEMPDEBUG */

#define NKERNELS 3

static const char *const kernel_names[NKERNELS] = {
    "clattn_linear_state", "clattn_linear_prefix", "clattn_linear_out"};

/* Widest vector in 16, 8, 4, 2, 1 that divides both head dimensions; wide
 * padded vectors beat narrow exact ones once D reaches 16. */
static int pick_vec(size_t d, size_t dv, int widest) {
  for (int v = widest; v > 1; v /= 2) {
    if (d % (size_t)v == 0 && dv % (size_t)v == 0)
      return v;
  }
  return d >= 16 && dv >= 16 && widest >= 8 ? 8 : 1;
}

/* The sizes the kernels derive from their macros (see cl/linear.cl). */
typedef struct linear_dims {
  size_t feat_rows;  /* rows of the state: D, or 2 D for cosFormer */
  size_t state_size; /* floats per state, a multiple of VEC */
  size_t block_size; /* floats per causal chunk entry: state and phi(K) */
  size_t nchunks;    /* chunks of keys */
  size_t nseg;       /* segments of SCAN chunks */
  size_t chunk0;     /* float offset of the chunk entries (causal) */
  size_t floats;     /* the whole workspace */
} linear_dims;

static linear_dims dims_of(const clattn_plan_t plan) {
  const clattn__problem *p = &plan->p;
  size_t vec = (size_t)clattn__tiles_get(&plan->tiles, "VEC");
  size_t chunk = (size_t)clattn__tiles_get(&plan->tiles, "CHUNK");
  size_t scan = (size_t)clattn__tiles_get(&plan->tiles, "SCAN");
  size_t bhkv = p->batch * p->heads_kv;
  linear_dims d;
  d.feat_rows = (p->variant == CLATTN_VARIANT_COSFORMER ? 2 : 1) * p->dim;
  d.state_size = d.feat_rows * clattn__round_up(p->dim_v, vec) +
                 clattn__round_up(d.feat_rows, vec);
  d.block_size = d.state_size + p->dim * clattn__round_up(chunk, vec);
  d.nchunks = (p->seq_k + chunk - 1) / chunk;
  d.nseg = (d.nchunks + scan - 1) / scan;
  d.chunk0 = bhkv * d.nseg * d.state_size;
  d.floats = d.chunk0 + (p->causal ? bhkv * d.nchunks * d.block_size : 0);
  return d;
}

static clattn_status linear_create(clattn_plan_t plan, const char *spec) {
  clattn_context_t ctx = plan->ctx;
  const clattn__problem *p = &plan->p;
  const clattn_device_profile *dev = &ctx->profile;
  clattn_status st = CLATTN_SUCCESS;

  /* A CPU runtime wants long vector loops and several rows per work-item;
   * a GPU wants many small work-items in groups. Register use grows with
   * rows times Dv vectors, so fewer rows are held when Dv is wide. */
  clattn__tiles *t = &plan->tiles;
  if (dev->is_cpu) {
    /* About 16 vector accumulators fit the registers (AVX-512 has 32):
     * state rows (every copy) times Dv vectors, and query rows times Dv
     * vectors. ROWS_D dividing D lets a row group load as one vector. */
    int vec = pick_vec(p->dim, p->dim_v, 16);
    int dvch = (int)((p->dim_v + (size_t)vec - 1) / (size_t)vec);
    int copies = p->variant == CLATTN_VARIANT_COSFORMER ? 2 : 1;
    int rows = 16 / (copies * dvch);
    rows = rows < 1 ? 1 : rows > 8 ? 8 : rows;
    while (rows > 1 && p->dim % (size_t)rows != 0)
      rows--;
    int bm = 1;
    while (bm < 8 && 2 * bm * dvch <= 16)
      bm *= 2;
    plan->shape = "cpu";
    clattn__tiles_add(t, "CHUNK", 64);
    clattn__tiles_add(t, "SCAN", 16);
    clattn__tiles_add(t, "BLOCK_M", bm);
    clattn__tiles_add(t, "ROWS_D", rows);
    clattn__tiles_add(t, "ROW_GROUPS", 1);
    clattn__tiles_add(t, "VEC", vec);
    clattn__tiles_add(t, "WG", 1);
  } else {
    plan->shape = "gpu";
    clattn__tiles_add(t, "CHUNK", 64);
    clattn__tiles_add(t, "SCAN", 1);
    clattn__tiles_add(t, "BLOCK_M", 1);
    clattn__tiles_add(t, "ROWS_D", 1);
    clattn__tiles_add(t, "ROW_GROUPS", 1);
    clattn__tiles_add(t, "VEC", pick_vec(p->dim, p->dim_v, 4));
    clattn__tiles_add(t, "WG", 64);
  }
  t->source = "heuristic";
  CLATTN_CHECK(clattn__tiles_override(ctx, t, spec));
  int vec = clattn__tiles_get(t, "VEC");
  if (vec != 1 && vec != 2 && vec != 4 && vec != 8 && vec != 16)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: VEC must be 1, 2, 4, 8 "
                        "or 16");
  /* A causal query block must lie within one key chunk. */
  if (p->causal &&
      clattn__tiles_get(t, "CHUNK") % clattn__tiles_get(t, "BLOCK_M") != 0)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles: CHUNK must be a multiple "
                        "of BLOCK_M");

  int cosformer = p->variant == CLATTN_VARIANT_COSFORMER;
  char options[512];
  snprintf(options, sizeof options,
           "-D CLATTN_F16=%d -D HEAD_DIM=%zu -D HEAD_DIM_V=%zu -D CAUSAL=%d "
           "-D FEATURE_MAP=%d",
           p->dtype == CLATTN_DTYPE_F16, p->dim, p->dim_v, p->causal,
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

  /* Per (batch, kv head) one state per segment and, when causal, a state
   * and phi(K) per chunk: linear in Nk. */
  size_t bytes = dims_of(plan).floats * sizeof(cl_float);
  cl_int err = CL_SUCCESS;
  plan->workspace =
      clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateBuffer (workspace)");
  plan->workspace_bytes = bytes;
cleanup:
  return st;
}

static clattn_status linear_enqueue(clattn_plan_t plan, cl_mem q, cl_mem k,
                                    cl_mem v, cl_mem o, cl_mem lse,
                                    cl_uint nwait, const cl_event *wait,
                                    cl_event *event) {
  (void)lse; /* plan.c refuses an LSE for these variants */
  const clattn__problem *p = &plan->p;
  clattn_context_t ctx = plan->ctx;
  clattn_status st = CLATTN_SUCCESS;
  cl_event ev[NKERNELS] = {NULL, NULL, NULL};
  linear_dims d = dims_of(plan);
  const clattn__tiles *t = &plan->tiles;
  size_t wg = (size_t)clattn__tiles_get(t, "WG");
  size_t bm = (size_t)clattn__tiles_get(t, "BLOCK_M");
  size_t rows_d = (size_t)clattn__tiles_get(t, "ROWS_D") *
                  (size_t)clattn__tiles_get(t, "ROW_GROUPS");
  size_t vec = (size_t)clattn__tiles_get(t, "VEC");
  cl_int nq = (cl_int)p->seq_q, nk = (cl_int)p->seq_k;
  cl_int hq = (cl_int)p->heads_q, hkv = (cl_int)p->heads_kv;
  cl_int nchunks = (cl_int)d.nchunks, nseg = (cl_int)d.nseg;
  cl_ulong chunk0 = (cl_ulong)d.chunk0;
  cl_float eps = p->eps;
  /* t = (pi/2) pos / M = pi * pos * hinv; unused by linear attention. */
  cl_float hinv = (cl_float)(0.5 / (double)p->cos_m);
  cl_mem ws = plan->workspace;
  cl_int err = CL_SUCCESS;

  cl_kernel ks = plan->kernels[0];
  cl_uint a = 0;
  err |= clSetKernelArg(ks, a++, sizeof(cl_mem), &k);
  err |= clSetKernelArg(ks, a++, sizeof(cl_mem), &v);
  err |= clSetKernelArg(ks, a++, sizeof(cl_mem), &ws);
  err |= clSetKernelArg(ks, a++, sizeof(cl_int), &nk);
  err |= clSetKernelArg(ks, a++, sizeof(cl_int), &nchunks);
  err |= clSetKernelArg(ks, a++, sizeof(cl_int), &nseg);
  err |= clSetKernelArg(ks, a++, sizeof(cl_ulong), &chunk0);
  err |= clSetKernelArg(ks, a++, sizeof(cl_float), &hinv);

  cl_kernel kp = plan->kernels[1];
  a = 0;
  err |= clSetKernelArg(kp, a++, sizeof(cl_mem), &ws);
  err |= clSetKernelArg(kp, a++, sizeof(cl_int), &nseg);

  cl_kernel ko = plan->kernels[2];
  a = 0;
  err |= clSetKernelArg(ko, a++, sizeof(cl_mem), &q);
  err |= clSetKernelArg(ko, a++, sizeof(cl_mem), &v);
  err |= clSetKernelArg(ko, a++, sizeof(cl_mem), &ws);
  err |= clSetKernelArg(ko, a++, sizeof(cl_mem), &o);
  err |= clSetKernelArg(ko, a++, sizeof(cl_int), &nq);
  err |= clSetKernelArg(ko, a++, sizeof(cl_int), &nk);
  err |= clSetKernelArg(ko, a++, sizeof(cl_int), &hq);
  err |= clSetKernelArg(ko, a++, sizeof(cl_int), &hkv);
  err |= clSetKernelArg(ko, a++, sizeof(cl_int), &nchunks);
  err |= clSetKernelArg(ko, a++, sizeof(cl_int), &nseg);
  err |= clSetKernelArg(ko, a++, sizeof(cl_ulong), &chunk0);
  err |= clSetKernelArg(ko, a++, sizeof(cl_float), &eps);
  err |= clSetKernelArg(ko, a++, sizeof(cl_float), &hinv);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");

  size_t bhkv = p->batch * p->heads_kv;
  size_t local[3] = {wg, 1, 1};
  size_t g_state[3] = {clattn__round_up((p->dim + rows_d - 1) / rows_d, wg),
                       d.nseg, bhkv};
  size_t g_prefix[2] = {clattn__round_up(d.state_size / vec, wg), bhkv};
  /* Causal blocks run over limits L = i + Nk - Nq from the first row's
   * block to Nk - 1, after the blocks that zero the rows seeing no key. */
  size_t blocks = (p->seq_q + bm - 1) / bm;
  if (p->causal) {
    size_t zero_rows = p->seq_q > p->seq_k ? p->seq_q - p->seq_k : 0;
    size_t first_l = p->seq_k > p->seq_q ? p->seq_k - p->seq_q : 0;
    blocks = (zero_rows + bm - 1) / bm + (p->seq_k - 1) / bm - first_l / bm + 1;
  }
  size_t g_out[3] = {clattn__round_up(blocks, wg), p->heads_q, p->batch};

  /* Each kernel waits for the one before, so the order holds on an
   * out-of-order queue too; only the last event may reach the caller. */
  CLATTN_CHECK(
      clattn__enqueue(plan, ks, 3, g_state, local, nwait, wait, &ev[0]));
  CLATTN_CHECK(
      clattn__enqueue(plan, kp, 2, g_prefix, local, 1, &ev[0], &ev[1]));
  CLATTN_CHECK(clattn__enqueue(plan, ko, 3, g_out, local, 1, &ev[1],
                               event ? event : &ev[2]));
  if (getenv("LINPROF")) { /* TEMPDEBUG */
    cl_event e3 = event ? *event : ev[2];
    clWaitForEvents(1, &e3);
    cl_event es[3] = {ev[0], ev[1], e3};
    for (int i = 0; i < 3; i++) {
      cl_ulong s0 = 0, s1 = 0;
      clGetEventProfilingInfo(es[i], CL_PROFILING_COMMAND_START, 8, &s0, NULL);
      clGetEventProfilingInfo(es[i], CL_PROFILING_COMMAND_END, 8, &s1, NULL);
      fprintf(stderr, " k%d %.2fms", i, (s1 - s0) * 1e-6);
      static cl_ulong first;
      if (i == 0)
        first = s0;
      if (i == 2)
        fprintf(stderr, " span %.2fms", (s1 - first) * 1e-6);
    }
    fprintf(stderr, "\n");
  }
cleanup:
  for (size_t i = 0; i < NKERNELS; i++) {
    if (ev[i])
      clReleaseEvent(ev[i]);
  }
  return st;
}

const clattn__family clattn__linear_family = {linear_create, linear_enqueue,
                                              NULL};
