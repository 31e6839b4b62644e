/*
 * plan.h - the plan structure and the interface each family of kernels
 * (flash.c: softmax and sigmoid; linear.c: linear and cosFormer) implements.
 */
#ifndef CLATTN_PLAN_H
#define CLATTN_PLAN_H

#include "internal.h"

#include <stdio.h>

#define CLATTN_MAX_TILES 8
/* The largest value a tile spec may give. */
#define CLATTN_MAX_TILE_VALUE 4096
#define CLATTN_MAX_KERNELS 4
#define CLATTN_MAX_WAIT 64 /* wait-list length when a run waits on the last */

/* Tile parameters of a plan: names, values and where they came from. */
typedef struct clattn__tiles {
  size_t count;
  const char *names[CLATTN_MAX_TILES];
  int values[CLATTN_MAX_TILES];
  const char *source; /* where the values came from, for describe */
  const char *origin; /* where the spec given to create() came from */
} clattn__tiles;

/* The descriptor with every default resolved. */
typedef struct clattn__problem {
  clattn_variant variant;
  clattn_dtype dtype;
  size_t batch, heads_q, heads_kv, seq_q, seq_k, dim, dim_v;
  int causal;
  float scale, bias, eps, cos_m;
  int cos_m_default; /* cos_m was 0: M = max(Lq, Lk) per sequence */
  int bias_default;  /* sigmoid's bias was not given: -ln(Lk) per sequence */
  clattn_feature_map feature_map;
  /* The score pipeline (softmax, sigmoid). window_right is 0 when causal;
   * -1 is unbounded. The slopes and mods point into the descriptor until
   * clattn_plan_create copies them into the plan. */
  int window_left, window_right;
  float softcap;
  int alibi; /* slopes were given */
  const float *alibi_slopes;
  const char *score_mod;
  const char *mask_mod;
} clattn__problem;

/* 1 when any stage of the score pipeline beyond scale and causal is on. */
int clattn__pipe_active(const clattn__problem *p);

/* Buffers of a run, forward and backward, by index. */
enum {
  CLATTN__BUF_Q = 0,
  CLATTN__BUF_K,
  CLATTN__BUF_V,
  CLATTN__BUF_O,
  CLATTN__BUF_LSE,
  CLATTN__BUF_DOUT,
  CLATTN__BUF_DQ,
  CLATTN__BUF_DK,
  CLATTN__BUF_DV,
  CLATTN__BUF_LENS_Q,
  CLATTN__BUF_LENS_K,
  CLATTN__BUF_COUNT
};

struct clattn_plan;

typedef struct clattn__family {
  /* Chooses the shape and tiles (defaults first, then
   * clattn__tiles_override) and checks them against the problem and the
   * device, touching no OpenCL object. */
  clattn_status (*choose)(struct clattn_plan *plan, const char *tiles);
  /* choose(), then builds the program, creates the kernels and allocates the
   * workspace. */
  clattn_status (*create)(struct clattn_plan *plan, const char *tiles);
  /* Sets arguments and enqueues; called with the plan's lock held. The last
   * kernel's event goes to *event when event is not NULL. */
  clattn_status (*enqueue)(struct clattn_plan *plan, const cl_mem *bufs,
                           cl_uint nwait, const cl_event *wait,
                           cl_event *event);
  /* Writes the index-th tile spec worth timing (for tuners); returns 0 past
   * the last one. */
  int (*candidate)(const clattn__problem *p, const clattn_device_profile *dev,
                   size_t index, char *buf, size_t size);
} clattn__family;

struct clattn_plan {
  clattn_context_t ctx;
  clattn__problem p;
  const clattn__family *family;
  mtx_t lock;
  int lock_ok;
  clattn__tiles tiles;
  const char *shape; /* kernel shape name, for describe */
  int shape_id;      /* CLATTN__SHAPE_* */
  cl_kernel kernels[CLATTN_MAX_KERNELS];
  size_t nkernels;
  cl_mem workspace;
  size_t workspace_bytes;
  cl_event last; /* the previous run's output event (guarded by lock) */
  /* Backward kernels and workspace, made by the first backward run (guarded
   * by lock), so that forward-only plans never build them. */
  cl_kernel bwd_kernels[8];
  size_t nbwd;
  cl_mem bwd_workspace[5];
  size_t bwd_workspace_bytes; /* all of them */
  char warning[512];          /* why a tuning source was passed over, or "" */
  /* The score pipeline's own copies: ALiBi slopes times log2(e) on the
   * device (float [Hq]) and the mods (heap strings), which p points to. */
  cl_mem alibi;
  char *score_mod;
  char *mask_mod;
  /* The flash kernels' block mask of the mask_mod (flash.c), or NULL. */
  cl_mem block_mask;
  size_t block_mask_bytes;
};

/* Gets the program of `files` with the plan's score pipeline: its -D
 * options appended to `options` (a buffer of size bytes), its user mods
 * put before the files (and so in the program's key). */
clattn_status clattn__pipe_program(clattn_plan_t plan, const char *const *files,
                                   size_t nfiles, char *options, size_t size,
                                   cl_program *out);

/* Adds the warnings of a program's build from source (a kernel defect
 * worth telling the caller about) to the plan's description; never
 * printed. */
void clattn__plan_note_warnings(clattn_plan_t plan, cl_program program);

/* Sets the pipeline's trailing kernel arguments (CLATTN_PIPE_PARAMS in
 * score.cl) from index *a on: lengths, slopes, window, softcap and the
 * block mask. */
cl_int clattn__pipe_args(clattn_plan_t plan, cl_kernel kern, cl_uint *a,
                         cl_mem lens_q, cl_mem lens_k);

/* Prints "clattn: ..." on stderr when CLATTN_LOG=1; silent otherwise. */
void clattn__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The tuning file's spec for this problem on this device (1), or 0; a file
 * that does not parse gives 0 and a warning. */
int clattn__tune_lookup(const clattn_device_profile *dev,
                        const clattn__problem *p, char *spec, size_t size,
                        char *warn, size_t wsize);

/* The body of clattn__tune_lookup: reads an open tuning file (named path in
 * the warning). Separate so that the parser can be fuzzed from memory. */
int clattn__tune_scan(FILE *f, const char *path,
                      const clattn_device_profile *dev,
                      const clattn__problem *p, char *spec, size_t size,
                      char *warn, size_t wsize);

/* The built-in table's spec for this problem on this device (1), or 0. */
int clattn__builtin_lookup(const clattn_device_profile *dev,
                           const clattn__problem *p, char *spec, size_t size);

extern const clattn__family clattn__flash_family;
extern const clattn__family clattn__linear_family;
extern const clattn__family clattn__decode_family; /* decode.c */

/* Softmax and sigmoid with at most this many query rows go to the decode
 * family (split-KV) unless a tile spec names a flash shape. */
#define CLATTN__DECODE_MAX_Q 16

/* 1 when the problem's own family is decode (a spec may still choose). */
int clattn__decode_wanted(const clattn__problem *p);

/* The family that plans the problem: softmax and sigmoid go to decode for
 * few query rows, to flash otherwise; a spec that names a shape
 * (SHAPE=decode, or a flash shape) decides. */
const clattn__family *clattn__family_of(const clattn__problem *p,
                                        const char *spec);

/* Validates desc and resolves its defaults into *p; the message names the
 * bad field. */
clattn_status clattn__problem_resolve(clattn_context_t ctx,
                                      const clattn_desc *desc,
                                      clattn__problem *p);

/* Adds a tile parameter with its default value. */
void clattn__tiles_add(clattn__tiles *t, const char *name, int value);
/* Returns the value of a tile parameter (0 if absent). */
int clattn__tiles_get(const clattn__tiles *t, const char *name);
/* Applies "NAME=VALUE,..." from spec (NULL: nothing) over the defaults; an
 * unknown name or bad value is an invalid descriptor. */
clattn_status clattn__tiles_override(clattn_context_t ctx, clattn__tiles *t,
                                     const char *spec);

/* Kernel shapes. cpu: no local memory, long vector loops, several rows per
 * work-item; gpu: work-groups sharing tiles in local memory; row: the
 * flash kernels' fallback without local memory. */
enum {
  CLATTN__SHAPE_ROW = 0,
  CLATTN__SHAPE_CPU = 1,
  CLATTN__SHAPE_GPU = 2,
  CLATTN__SHAPE_DECODE = 3 /* split-KV decode (decode.c) */
};

const char *clattn__shape_name(int shape);

/* The value of SHAPE= in a "NAME=VALUE,..." spec (not terminated, *len
 * long), or NULL when spec names none. */
const char *clattn__spec_shape(const char *spec, size_t *len);

/* The shape named by SHAPE=cpu|gpu|row|decode in spec, else the one the
 * device type calls for. `allowed` is a bit mask of (1 << shape) the family
 * has. */
clattn_status clattn__shape_choose(clattn_context_t ctx, const char *spec,
                                   unsigned allowed, int *shape);

/* Widest vector in 16, 8, 4, 2, 1 (at most `widest`) that divides both head
 * dimensions; a wide padded vector beats a narrow exact one from 16 on. */
int clattn__pick_vec(size_t d, size_t dv, int widest);

/* The float vector width a CPU device's code is compiled for and the vector
 * registers that come with it: 16 of 8 floats (AVX2), 32 of 16 (AVX-512).
 * PoCL reports the ISA's width as native and preferred; Intel's runtime
 * reports preferred 1 (it vectorises across work-items) and the ISA's width
 * as native, so the native width is the one to read. */
void clattn__vector_regs(const clattn_device_profile *dev, int *width,
                         int *regs);

/* Enqueues one kernel after `nwait` events, returning its event in *event.
 * Shared by the families so event chaining is written once. */
clattn_status clattn__enqueue(clattn_plan_t plan, cl_kernel kernel,
                              cl_uint work_dim, const size_t *global,
                              const size_t *local, cl_uint nwait,
                              const cl_event *wait, cl_event *event);

/* Checks a workspace byte count, computed with CLATTN_SIZE_PRODUCT (fits is
 * what that returned), before it is allocated: one that overflows size_t or
 * passes the device's largest allocation is refused with a message naming
 * the limit. `what` says what the workspace holds. */
clattn_status clattn__workspace_size(clattn_plan_t plan, const char *what,
                                     int fits, size_t bytes);

/* The most floats of private arrays (rows, accumulators, scores) tiles may
 * give one work-item: 32 KiB, 16 times the AVX-512 register file (512
 * floats) and far past a GPU work-item's registers. Past it the arrays only
 * spill, and PoCL's build of the linear kernels' unrolled loops takes a
 * minute or more (10,500 floats: over 90 s; 5,400: about 15 s). */
#define CLATTN_MAX_PRIVATE_FLOATS 8192

/* Refuses tiles whose largest kernel would hold more than
 * CLATTN_MAX_PRIVATE_FLOATS floats in private arrays per work-item, or more
 * local memory per work-group than the device has; the message names the
 * tiles, the head dims and the limit. Each family estimates both from its
 * tiles, D and Dv, so a new tile parameter only changes its estimate. */
clattn_status clattn__tiles_fit(clattn_context_t ctx, const clattn__tiles *t,
                                const clattn__problem *p, size_t private_floats,
                                size_t local_bytes);

/* Bytes of each tensor of a problem: q, k, v, o, lse. */
void clattn__tensor_bytes(const clattn__problem *p, size_t bytes[5]);

/* Enqueues the backward pass (backward.c); called with the plan's lock
 * held, with buffers already checked. */
clattn_status clattn__backward_enqueue(clattn_plan_t plan, const cl_mem *bufs,
                                       cl_uint nwait, const cl_event *wait,
                                       cl_event *event);

/* Bytes per element of a storage dtype. */
size_t clattn__dtype_size(clattn_dtype dtype);

/* Checks that mem is a buffer of ctx's OpenCL context holding at least need
 * bytes; the message names the argument. */
clattn_status clattn__check_buffer(clattn_context_t ctx, cl_mem mem,
                                   const char *name, size_t need);

/* Uploads count float32 values as dtype into a new read-only buffer. */
clattn_status clattn__upload(clattn_context_t ctx, clattn_dtype dtype,
                             const float *src, size_t count, cl_mem *out);

/* Reads count elements of dtype into float32 dst, blocking. */
clattn_status clattn__download(clattn_context_t ctx, cl_mem mem, size_t count,
                               clattn_dtype dtype, float *dst);

/* The -D options that select a dtype's loads and stores in common.cl. */
const char *clattn__dtype_options(clattn_dtype dtype);

/* Appends "-D NAME=VALUE" for every tile parameter to buf. */
void clattn__tiles_options(const clattn__tiles *t, char *buf, size_t size);

/* Sets a kernel argument unless an earlier one failed, so err keeps the
 * first failing OpenCL code (an OR of codes would name none of them). */
#define CLATTN_SET_ARG(err, kernel, index, size, value)                        \
  ((err) = (err) != CL_SUCCESS                                                 \
               ? (err)                                                         \
               : clSetKernelArg((kernel), (index), (size), (value)))

/* Rounds n up to a multiple of m. */
static inline size_t clattn__round_up(size_t n, size_t m) {
  return (n + m - 1) / m * m;
}

/* The largest power of two at most n (1 for n = 0). */
static inline size_t clattn__pow2_floor(size_t n) {
  size_t p = 1;
  while (p * 2 <= n)
    p *= 2;
  return p;
}

#endif /* CLATTN_PLAN_H */
