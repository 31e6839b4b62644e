/*
 * clattn.h - the whole public API of clattn, attention operators for any
 * OpenCL device.
 *
 * Tensors are row-major "BHSD": Q is [B, Hq, Nq, D], K is [B, Hkv, Nk, D],
 * V is [B, Hkv, Nk, Dv], O is [B, Hq, Nq, Dv] and the optional LSE is float32
 * [B, Hq, Nq]. Hq is a multiple of Hkv (grouped-query attention): query head h
 * reads kv head h / (Hq / Hkv). Causal masking is bottom-right aligned: key j
 * is visible to query i when j <= i + (Nk - Nq).
 *
 * Thread safety: every function may be called from any thread. A context may
 * be shared by threads: creating plans, running plans and reading the error
 * message are serialised inside clattn where they touch shared state, and
 * kernels are enqueued on the context's command queue, which OpenCL makes
 * thread-safe. A plan may also be run from several threads at once. Destroying
 * a handle while another thread still uses it is the caller's error, as is
 * destroying a context before the plans made from it.
 *
 * Errors: every call that can fail returns a clattn_status. Calls that take a
 * context (or a plan, which belongs to one) also leave a message on it, read
 * with clattn_context_error(); a failed kernel build puts the compiler's build
 * log there. clattn never aborts and never prints.
 */
#ifndef CLATTN_H
#define CLATTN_H

#include <stddef.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifdef __APPLE__
#include <OpenCL/opencl.h>
#else
#include <CL/cl.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Versions: the header's, and clattn_version() for the library's, so that a
 * program can catch a header and a library that do not match. */
#define CLATTN_VERSION_MAJOR 0
#define CLATTN_VERSION_MINOR 1
#define CLATTN_VERSION_PATCH 0
#define CLATTN_VERSION                                                         \
  (CLATTN_VERSION_MAJOR * 10000 + CLATTN_VERSION_MINOR * 100 +                 \
   CLATTN_VERSION_PATCH)

/* Status codes. Where a code means what an OpenCL code means it has the same
 * number; clattn's own codes start at -1000. */
#define CLATTN_STATUS_MAP(X)                                                   \
  X(SUCCESS, 0, "success")                                                     \
  X(ERROR_DEVICE_NOT_FOUND, -1, "no OpenCL device matches")                    \
  X(ERROR_OUT_OF_RESOURCES, -5, "the device ran out of resources")             \
  X(ERROR_OUT_OF_HOST_MEMORY, -6, "out of host memory")                        \
  X(ERROR_BUILD_FAILED, -11, "kernel build failed")                            \
  X(ERROR_INVALID_VALUE, -30, "invalid argument")                              \
  X(ERROR_INVALID_MEM_OBJECT, -38, "invalid buffer")                           \
  X(ERROR_INVALID_BUFFER_SIZE, -61, "buffer too small for the shapes")         \
  X(ERROR_OPENCL, -1000, "OpenCL call failed")                                 \
  X(ERROR_INVALID_DESCRIPTOR, -1001, "invalid problem descriptor")             \
  X(ERROR_UNSUPPORTED, -1002, "not supported on this device")                  \
  X(ERROR_IO, -1003, "file input or output failed")

typedef enum clattn_status {
#define CLATTN_STATUS_ENUM_(name, value, text) CLATTN_##name = (value),
  CLATTN_STATUS_MAP(CLATTN_STATUS_ENUM_)
#undef CLATTN_STATUS_ENUM_
} clattn_status;

/* "CLATTN_ERROR_INVALID_VALUE"; "CLATTN_UNKNOWN_STATUS" for a code not in the
 * list. Static strings. */
const char *clattn_status_name(clattn_status status);
/* "invalid argument". Static strings. */
const char *clattn_status_string(clattn_status status);

/* CLATTN_VERSION of the library that is linked, and "0.1.0". */
unsigned clattn_version(void);
const char *clattn_version_string(void);

/* Host conversions between float32 and IEEE binary16 (round to nearest even,
 * overflow to infinity), for filling and reading f16 buffers. */
void clattn_f32_to_f16(const float *src, cl_half *dst, size_t n);
void clattn_f16_to_f32(const cl_half *src, float *dst, size_t n);
/* The same for bfloat16 (the upper 16 bits of a float32): round to nearest
 * even, NaN stays NaN (quiet), infinities and signed zeros kept. */
void clattn_f32_to_bf16(const float *src, cl_ushort *dst, size_t n);
void clattn_bf16_to_f32(const cl_ushort *src, float *dst, size_t n);

/* ---- Devices ---------------------------------------------------------- */

/* What clattn reads of a device once, and tiles its kernels by. Strings are
 * truncated to fit. */
typedef struct clattn_device_profile {
  cl_uint index;          /* global index over all platforms */
  cl_uint platform_index; /* platform, and device within it: "P:D" */
  cl_uint device_index;
  cl_platform_id platform;
  cl_device_id device;
  char platform_name[128];
  char platform_version[128];
  char name[128];
  char vendor[128];
  char driver_version[128];
  char device_version[128]; /* "OpenCL 3.0 ..." */
  char c_version[128];      /* "OpenCL C 1.2 ..." */
  cl_uint vendor_id;
  cl_device_type type;
  int is_cpu; /* CL_DEVICE_TYPE_CPU */
  int is_gpu; /* CL_DEVICE_TYPE_GPU */
  cl_uint compute_units;
  size_t max_work_group_size;
  cl_ulong local_mem_size;
  int local_mem_is_real; /* CL_LOCAL, not emulated in global memory */
  cl_ulong global_mem_size;
  cl_ulong max_mem_alloc_size;
  cl_uint preferred_vector_width_float;
  cl_uint native_vector_width_float;
  int has_fp16;      /* cl_khr_fp16: native half arithmetic */
  int has_subgroups; /* cl_khr_subgroups or cl_intel_subgroups */
  int c_major;       /* OpenCL C version of the device */
  int c_minor;
  char extensions[4096];
} clattn_device_profile;

/* Number of devices over all platforms. 0 with CLATTN_SUCCESS when there is
 * no platform at all; CLATTN_ERROR_OPENCL when listing them fails. */
clattn_status clattn_device_count(cl_uint *count);

/* Profile of the device with global index `index`. */
clattn_status clattn_device_profile_get(cl_uint index,
                                        clattn_device_profile *out);

/* Resolves a selector to a global device index. A selector is a global index
 * ("1"), a platform:device pair ("0:1"), a type ("cpu", "gpu",
 * "accelerator"), or a case-insensitive substring of the platform's name,
 * vendor or version ("pocl", "intel", "nvidia", "amd"), else of the device's
 * vendor or name ("epyc"): the first device whose platform matches wins over
 * the first whose device strings match. NULL or "" means: CLATTN_DEVICE from
 * the environment if set, else the first GPU, else the first device. No
 * match gives CLATTN_ERROR_DEVICE_NOT_FOUND. */
clattn_status clattn_device_find(const char *selector, cl_uint *index);

/* ---- Contexts --------------------------------------------------------- */

typedef struct clattn_context *clattn_context_t;
typedef struct clattn_plan *clattn_plan_t;

/* Flags of clattn_context_create. */
#define CLATTN_CONTEXT_PROFILING 1u /* queue with CL_QUEUE_PROFILING_ENABLE */

/* Creates a context with its own OpenCL context and in-order queue on the
 * device `selector` names (see clattn_device_find). Like sqlite3_open, *out is
 * set even when this fails (unless memory ran out), so that
 * clattn_context_error() can say why; destroy it either way. */
clattn_status clattn_context_create(clattn_context_t *out, const char *selector,
                                    unsigned flags);

/* Adopts a caller's context, device and queue. They are retained here and
 * released by clattn_context_destroy(); the caller keeps its own references.
 * The queue may be in-order or out-of-order: clattn orders its own kernels
 * with events. *out is set even on failure, as above. */
clattn_status clattn_context_create_from_cl(clattn_context_t *out,
                                            cl_context context,
                                            cl_device_id device,
                                            cl_command_queue queue);

/* Releases everything the context holds. NULL does nothing. */
void clattn_context_destroy(clattn_context_t ctx);

/* The message of the last failure on this context (or on a plan made from
 * it), "" if none. The pointer stays valid until the next call that fails on
 * this context; threads sharing a context should use
 * clattn_context_error_copy(). */
const char *clattn_context_error(clattn_context_t ctx);

/* Copies the message into buf (always terminated); returns its full length. */
size_t clattn_context_error_copy(clattn_context_t ctx, char *buf, size_t size);

/* The OpenCL objects the context uses (owned by the context). */
cl_context clattn_context_cl(clattn_context_t ctx);
cl_device_id clattn_context_device(clattn_context_t ctx);
cl_command_queue clattn_context_queue(clattn_context_t ctx);

/* A copy of the context's device profile. */
clattn_status clattn_context_profile(clattn_context_t ctx,
                                     clattn_device_profile *out);

/* ---- Problems and plans ----------------------------------------------- */

typedef enum clattn_variant {
  CLATTN_VARIANT_SOFTMAX = 0, /* FlashAttention-style online softmax */
  CLATTN_VARIANT_SIGMOID,     /* sigmoid(s q.k + b), no normalisation */
  CLATTN_VARIANT_LINEAR,      /* phi(q).S / (phi(q).z + eps) */
  CLATTN_VARIANT_COSFORMER,   /* linear attention with cos re-weighting */
  CLATTN_VARIANT_COUNT
} clattn_variant;

typedef enum clattn_dtype {
  CLATTN_DTYPE_F32 = 0, /* float storage */
  CLATTN_DTYPE_F16,     /* half storage, float arithmetic */
  CLATTN_DTYPE_BF16     /* bfloat16 storage, float arithmetic */
} clattn_dtype;

typedef enum clattn_feature_map {
  CLATTN_FEATURE_MAP_DEFAULT = 0, /* elu1 for linear, relu for cosformer */
  CLATTN_FEATURE_MAP_ELU1,        /* elu(x) + 1 */
  CLATTN_FEATURE_MAP_RELU         /* max(x, 0) */
} clattn_feature_map;

/* Bytes per element of a storage dtype (4, 2, 2); 0 for a value out of
 * range. */
size_t clattn_dtype_size(clattn_dtype dtype);

/* Converts n float32 values into dtype storage at dst (clattn_dtype_size
 * bytes each), or n dtype elements at src into float32, with the conversions
 * above; CLATTN_ERROR_INVALID_VALUE for an unknown dtype or a NULL pointer
 * with n > 0. */
clattn_status clattn_convert_from_f32(clattn_dtype dtype, const float *src,
                                      void *dst, size_t n);
clattn_status clattn_convert_to_f32(clattn_dtype dtype, const void *src,
                                    float *dst, size_t n);

/* "softmax", "f16", "elu1"; NULL for a value out of range. */
const char *clattn_variant_name(clattn_variant variant);
const char *clattn_dtype_name(clattn_dtype dtype);
const char *clattn_feature_map_name(clattn_feature_map map);
/* The reverse; CLATTN_ERROR_INVALID_VALUE for an unknown name. */
clattn_status clattn_variant_parse(const char *name, clattn_variant *out);
clattn_status clattn_dtype_parse(const char *name, clattn_dtype *out);
clattn_status clattn_feature_map_parse(const char *name,
                                       clattn_feature_map *out);

/* The problem. Fill it with clattn_desc_init() first, then set the fields;
 * a field left as init set it takes its default. Fields that do not apply to
 * the variant must keep their defaults. */
typedef struct clattn_desc {
  clattn_variant variant;
  clattn_dtype dtype;
  size_t batch;    /* B */
  size_t heads_q;  /* Hq */
  size_t heads_kv; /* Hkv; 0 = Hq */
  size_t seq_q;    /* Nq */
  size_t seq_k;    /* Nk */
  size_t dim;      /* D, 1..256 */
  size_t dim_v;    /* Dv, 1..256; 0 = D */
  int causal;      /* bottom-right aligned */
  /* softmax, sigmoid: score scale; 0 = 1/sqrt(D). */
  float scale;
  /* sigmoid: bias added to the scaled score; default -ln(Nk). */
  int has_bias;
  float bias;
  /* linear, cosformer. */
  clattn_feature_map feature_map;
  float eps; /* 0 = 1e-6 */
  /* cosformer: the M in t_i = (pi/2) i / M; 0 = max(Lq, Lk), the lengths
   * of each sequence (Nq and Nk without per-sequence lengths). */
  float cos_m;
  /* The score pipeline of softmax and sigmoid (README, "Masks and score
   * mods"), applied in this order to s = scale q_i.k_j, with i' = i + Lk - Lq
   * the query's position among the keys of its sequence:
   *   softcap > 0:   s = softcap * tanh(s / softcap);
   *   alibi_slopes:  s -= slope[h] * |i' - j|  (float32 [Hq], copied by
   *                  clattn_plan_create);
   *   score_mod:     s = (score_mod) with score = s, b, h, i, j in scope;
   *   masks:         key j is dropped past Lk, outside the window
   *                  i' - window_left <= j <= i' + window_right (-1:
   *                  unbounded; causal means window_right = 0) and where
   *                  (mask_mod) is 0.
   * score_mod and mask_mod are OpenCL C expressions compiled into the
   * kernels: score is a float, b, h, i and j ints (i and j are positions
   * within the sequence); NULL = none. */
  int window_left;  /* -1 (default) = unbounded */
  int window_right; /* -1 (default) = unbounded */
  float softcap;    /* 0 = none */
  const float *alibi_slopes;
  const char *score_mod;
  const char *mask_mod;
  /* Tile override, "SHAPE=cpu|gpu|row,NAME=VALUE,..." (clattn-info shows the
   * names a plan uses); NULL = let clattn choose: CLATTN_TUNE from the
   * environment, else the tuning file, the built-in table, a heuristic. */
  const char *tiles;
} clattn_desc;

void clattn_desc_init(clattn_desc *desc, clattn_variant variant);

/* Validates the descriptor (the message names the bad field), chooses tiles
 * for the context's device and builds the kernels (the build log is in the
 * message if that fails). The plan keeps a pointer to ctx. */
clattn_status clattn_plan_create(clattn_context_t ctx, const clattn_desc *desc,
                                 clattn_plan_t *out);

/* Checks a descriptor as clattn_plan_create does, without building or
 * allocating anything on a device, so that a program can ask which problems
 * clattn takes before it commits to one (like ggml's supports_op). Every
 * field is checked; with a context, also the tiles clattn_plan_create would
 * insist on (desc.tiles, else CLATTN_TUNE) against the context's device, and
 * whether the plan's workspace fits the device's largest allocation
 * (CLATTN_ERROR_OUT_OF_RESOURCES when not).
 * ctx may be NULL: the tiles are then not checked, since the shapes and their
 * parameters depend on the device.
 *
 * Returns CLATTN_SUCCESS when clattn_plan_create would accept the problem
 * (it can still fail for want of device memory or when a build fails), else
 * the status it would return, with the reason in msg: always terminated, ""
 * on success; msg may be NULL or size 0. The context is only read: its
 * message is left as it was. */
clattn_status clattn_desc_check(clattn_context_t ctx, const clattn_desc *desc,
                                char *msg, size_t size);

/* NULL does nothing. Waits for nothing: finish the queue first if kernels of
 * this plan may still be running. */
void clattn_plan_destroy(clattn_plan_t plan);

/* Enqueues the attention on the context's queue. q, k, v and o hold the
 * descriptor's dtype; lse (float32) is optional and only for softmax. The
 * buffers' sizes are checked against the shapes. Kernels wait for
 * `wait_list`; if `event` is not NULL it receives an event that completes
 * when the output is written (release it). Runs of one plan that uses a
 * workspace are ordered one after another, also on an out-of-order queue;
 * the wait list may then hold at most 63 events. */
clattn_status clattn_plan_run(clattn_plan_t plan, cl_mem q, cl_mem k, cl_mem v,
                              cl_mem o, cl_mem lse, cl_uint num_events,
                              const cl_event *wait_list, cl_event *event);

/* Convenience: float32 host arrays in and out (converted to the plan's dtype
 * on the way), blocking. lse may be NULL. */
clattn_status clattn_plan_run_host(clattn_plan_t plan, const float *q,
                                   const float *k, const float *v, float *o,
                                   float *lse);

/* Like clattn_plan_run_host, but q, k, v and o are host arrays in the plan's
 * own dtype (cl_half for f16, as clattn_f32_to_f16 writes it), copied as they
 * are with no conversion on the host: for callers whose data is already
 * stored that way. lse (float32) may be NULL. Blocking. */
clattn_status clattn_plan_run_host_raw(clattn_plan_t plan, const void *q,
                                       const void *k, const void *v, void *o,
                                       float *lse);

/* Padded batches: clattn_plan_run with per-sequence lengths. seq_lens_q and
 * seq_lens_k are int32 [B] buffers (NULL: every sequence has the full Nq or
 * Nk). Sequence b uses its first Lq = seq_lens_q[b] query rows and Lk =
 * seq_lens_k[b] keys; rows past Lq get o = 0 and lse = -inf, keys past Lk
 * are never read, and causal masking, windows and cosFormer's default M are
 * aligned per sequence. Each sequence gives what it gives run alone. The
 * kernels clamp a length to 0..Nq (0..Nk), so a bad length never makes them
 * read or write out of bounds; the host calls below refuse one instead. All
 * four variants. */
clattn_status clattn_plan_run_varlen(clattn_plan_t plan, cl_mem q, cl_mem k,
                                     cl_mem v, cl_mem o, cl_mem lse,
                                     cl_mem seq_lens_q, cl_mem seq_lens_k,
                                     cl_uint num_events,
                                     const cl_event *wait_list,
                                     cl_event *event);

/* clattn_plan_run_host and clattn_plan_run_host_raw with host lengths
 * (int32 [B] or NULL), which are checked against Nq and Nk first
 * (CLATTN_ERROR_INVALID_VALUE names the first bad one). */
clattn_status clattn_plan_run_host_varlen(clattn_plan_t plan, const float *q,
                                          const float *k, const float *v,
                                          float *o, float *lse,
                                          const cl_int *seq_lens_q,
                                          const cl_int *seq_lens_k);
clattn_status clattn_plan_run_host_raw_varlen(clattn_plan_t plan, const void *q,
                                              const void *k, const void *v,
                                              void *o, float *lse,
                                              const cl_int *seq_lens_q,
                                              const cl_int *seq_lens_k);

/* Device bytes the plan itself holds (workspace), not counting the caller's
 * q, k, v, o and lse buffers. */
size_t clattn_plan_device_bytes(clattn_plan_t plan);

/* One line naming the kernel shape and tiles chosen and where they came from
 * ("builtin", "heuristic", "override", ...). Always terminated; returns the
 * full length. */
size_t clattn_plan_describe(clattn_plan_t plan, char *buf, size_t size);

/* ---- Backward ---------------------------------------------------------- */

/* Enqueues the gradients of a loss L with respect to q, k and v, given
 * dout = dL/dO of a forward run of this plan on the same q, k and v:
 * dq, dk and dv receive dL/dQ, dL/dK and dL/dV with the shapes of q, k and
 * v, in the plan's dtype (accumulated in float). With grouped-query
 * attention, the gradient of a kv head is summed over its query heads in a
 * fixed order, without atomics, so results are deterministic. Nothing of size
 * Nq x Nk is stored: softmax recomputes its weights from the forward's lse
 * and needs the forward's o too; sigmoid needs neither (o and lse may be
 * NULL). Rows with no visible key give zero gradients. The backward kernels
 * are built by the first call on a plan. Events as in clattn_plan_run; runs
 * and backward runs of one plan are ordered one after another. The score
 * pipeline's windows, lengths, ALiBi and softcap are differentiated; a plan
 * with a score_mod has no derivative to take and its backward gives
 * CLATTN_ERROR_UNSUPPORTED (a mask_mod is fine: it only drops keys). */
clattn_status clattn_plan_backward(clattn_plan_t plan, cl_mem q, cl_mem k,
                                   cl_mem v, cl_mem o, cl_mem lse, cl_mem dout,
                                   cl_mem dq, cl_mem dk, cl_mem dv,
                                   cl_uint num_events,
                                   const cl_event *wait_list, cl_event *event);

/* Convenience: float32 host arrays, blocking. o and lse are the forward's
 * outputs (from clattn_plan_run_host), as clattn_plan_backward needs them. */
clattn_status clattn_plan_backward_host(clattn_plan_t plan, const float *q,
                                        const float *k, const float *v,
                                        const float *o, const float *lse,
                                        const float *dout, float *dq, float *dk,
                                        float *dv);

/* The backward of a run with per-sequence lengths (as
 * clattn_plan_run_varlen): the same lengths, device or host. Gradients of
 * rows past Lq and of keys past Lk are 0. */
clattn_status
clattn_plan_backward_varlen(clattn_plan_t plan, cl_mem q, cl_mem k, cl_mem v,
                            cl_mem o, cl_mem lse, cl_mem dout, cl_mem dq,
                            cl_mem dk, cl_mem dv, cl_mem seq_lens_q,
                            cl_mem seq_lens_k, cl_uint num_events,
                            const cl_event *wait_list, cl_event *event);
clattn_status clattn_plan_backward_host_varlen(
    clattn_plan_t plan, const float *q, const float *k, const float *v,
    const float *o, const float *lse, const float *dout, float *dq, float *dk,
    float *dv, const cl_int *seq_lens_q, const cl_int *seq_lens_k);

/* ---- Merging partial attention ---------------------------------------- */

/* Combines `parts` partial softmax attentions of the same query rows, each
 * over a disjoint range of keys, into the attention over all those keys:
 *   lse = log sum_p exp(lse_p),   o = sum_p exp(lse_p - lse) o_p.
 * Merging the results of split key ranges (clattn_plan_run with lse, one run
 * per range) equals one run over the whole range, up to rounding; it is the
 * building block for attention split over devices or machines.
 *
 * o_parts holds the parts one after another, [parts, rows, dim_v] in dtype
 * storage, and lse_parts is float32 [parts, rows] (natural log, as
 * clattn_plan_run writes it; rows = B * Hq * Nq for a [B, Hq, Nq, Dv]
 * output). A part whose lse is -inf (it saw no key of that row) carries no
 * weight, whatever its o holds; a row that no part saw gives o = 0 and
 * lse = -inf. o is [rows, dim_v] in dtype and lse float32 [rows], or NULL.
 * The merge is enqueued on the context's queue after wait_list; event, when
 * not NULL, receives an event that completes when o (and lse) are written.
 * o and lse must not overlap the parts. */
clattn_status clattn_merge(clattn_context_t ctx, clattn_dtype dtype,
                           size_t parts, size_t rows, size_t dim_v,
                           cl_mem o_parts, cl_mem lse_parts, cl_mem o,
                           cl_mem lse, cl_uint num_events,
                           const cl_event *wait_list, cl_event *event);

/* Convenience: float32 host arrays in and out (converted to dtype on the way
 * to the device), blocking. lse may be NULL. */
clattn_status clattn_merge_host(clattn_context_t ctx, clattn_dtype dtype,
                                size_t parts, size_t rows, size_t dim_v,
                                const float *o_parts, const float *lse_parts,
                                float *o, float *lse);

/* ---- Tuning ----------------------------------------------------------- */

/* The tuning file plans read when no tiles are given: CLATTN_TUNE_FILE, else
 * $XDG_CONFIG_HOME/clattn/tuning.txt, else $HOME/.config/clattn/tuning.txt.
 * Its format is in README.md. Always terminated; returns the full length. */
size_t clattn_tune_file_path(char *buf, size_t size);

/* The index-th tile spec worth timing for desc on the context's device, for
 * tuners: "SHAPE=...,NAME=VALUE,...". CLATTN_ERROR_INVALID_VALUE past the
 * last candidate. */
clattn_status clattn_tune_candidate(clattn_context_t ctx,
                                    const clattn_desc *desc, size_t index,
                                    char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* CLATTN_H */
