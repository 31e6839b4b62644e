/*
 * common.cl - helpers every clattn kernel file is compiled with: storage
 * dtype loads and stores, and vectors along the head dimension.
 *
 * Macros set by the host (defaults here):
 *   CLATTN_F16   1: tensors are stored as half, read with vload_half and
 *                written with vstore_half_rte; arithmetic is float. Works on
 *                devices without cl_khr_fp16.
 *   CLATTN_BF16  1: tensors are stored as bfloat16 (ushort bits): a load is
 *                a shift into the upper half of a float, a store rounds to
 *                nearest even; cl_intel_bfloat16_conversions' built-ins do
 *                both where the device has them. Arithmetic is float.
 *   HEAD_DIM     D, the query/key head dimension (1..256).
 *   HEAD_DIM_V   Dv, the value head dimension (1..256).
 *   VEC          floats per vector along D (1, 2, 4, 8 or 16). Rows are held
 *                as DCH = ceil(D / VEC) vectors, the last one zero-padded.
 */

#ifndef CLATTN_F16
#define CLATTN_F16 0
#endif
#ifndef CLATTN_BF16
#define CLATTN_BF16 0
#endif
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef HEAD_DIM_V
#define HEAD_DIM_V HEAD_DIM
#endif
#ifndef VEC
#define VEC 16 // floats per vector along the head dimension
#endif

#define DCH ((HEAD_DIM + VEC - 1) / VEC)
#define DVCH ((HEAD_DIM_V + VEC - 1) / VEC)

#define CLATTN_CAT_(a, b) a##b
#define CLATTN_CAT(a, b) CLATTN_CAT_(a, b)

/* clattn's kernels are declared CLATTN_KERNEL. Intel's CPU runtime packs
 * work-items into vectors by default (it scalarises a kernel, revectorises
 * it and keeps both), which kernels that hold their own vectors and run
 * with local size 1 never use; its vector-length hint of 1
 * (cl_intel_vec_len_hint) has it compile a kernel once, as written, and
 * without a warning (a vec_type_hint does the same but warns that it cannot
 * vectorise). On Intel's runtime that halves a backward program's build
 * time and is as fast or faster, the one-scalar-per-work-item kernels
 * included (packing K and V is faster with it, the decode merge as fast).
 * The linear backward's feature map and scan are the exception, measured:
 * they stay plain __kernel, where the packing pays. */
#ifdef cl_intel_vec_len_hint
#define CLATTN_KERNEL __kernel __attribute__((intel_vec_len_hint(1)))
#else
#define CLATTN_KERNEL __kernel
#endif

#if CLATTN_BF16
typedef ushort store_t;
#if defined(cl_intel_bfloat16_conversions) || defined(cl_intel_bfloat16)
#define CLATTN_BF16_NATIVE 1
#define clattn_bf16_to_float(b) intel_convert_as_bfloat16_float(b)
#define clattn_float_to_bf16(x) intel_convert_bfloat16_as_ushort(x)
#else
#define CLATTN_BF16_NATIVE 0
float clattn_bf16_to_float(const ushort b) { return as_float((uint)b << 16); }
/* Round to nearest even by adding 0x7fff and the lowest kept bit; a NaN is
 * kept quiet so that it cannot round to infinity. */
ushort clattn_float_to_bf16(const float x) {
  const uint u = as_uint(x);
  return isnan(x) ? (ushort)((u >> 16) | 0x40u)
                  : (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
#endif
#define LOAD1(p, i) clattn_bf16_to_float((p)[i])
#define STORE1(x, p, i) ((p)[i] = clattn_float_to_bf16(x))
/* n consecutive elements as a float vector, and back. */
#define CLATTN_BF16_LOADN(n, p)                                                \
  CLATTN_CAT(as_float, n)                                                      \
  (CLATTN_CAT(convert_uint, n)(CLATTN_CAT(vload, n)(0, (p))) << 16)
#if CLATTN_BF16_NATIVE
#define CLATTN_BF16_STOREN(n, x, p)                                            \
  CLATTN_CAT(vstore, n)                                                        \
  (CLATTN_CAT(CLATTN_CAT(intel_convert_bfloat16, n),                           \
              CLATTN_CAT(_as_ushort, n))(x),                                   \
   0, (p))
#else
#define CLATTN_BF16_STOREN(n, x, p)                                            \
  CLATTN_CAT(vstore, n)(CLATTN_CAT(clattn_float_to_bf16_, n)(x), 0, (p))
#define CLATTN_BF16_ROUNDN(n)                                                  \
  CLATTN_CAT(ushort, n)                                                        \
  CLATTN_CAT(clattn_float_to_bf16_, n)(const CLATTN_CAT(float, n) x) {         \
    const CLATTN_CAT(uint, n) u = CLATTN_CAT(as_uint, n)(x);                   \
    const CLATTN_CAT(uint, n) r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;      \
    return CLATTN_CAT(convert_ushort, n)(                                      \
        select(r, (u >> 16) | 0x40u, CLATTN_CAT(as_uint, n)(isnan(x))));       \
  }
CLATTN_BF16_ROUNDN(2)
CLATTN_BF16_ROUNDN(4)
CLATTN_BF16_ROUNDN(8)
CLATTN_BF16_ROUNDN(16)
#endif
#elif CLATTN_F16
typedef half store_t;
#define LOAD1(p, i) vload_half((i), (p))
#define STORE1(x, p, i) vstore_half_rte((x), (i), (p))
#else
typedef float store_t;
#define LOAD1(p, i) ((p)[i])
#define STORE1(x, p, i) ((p)[i] = (x))
#endif

#if VEC == 1
typedef float floatv;
#define HSUM(x) (x)
#define VLOAD_PRIV(p) (*(p))
#define VLOAD_LOCAL(p) (*(p))
#define VSTORE_PRIV(x, p) (*(p) = (x))
#if CLATTN_BF16
#define VLOAD(p) LOAD1((p), 0)
#define VSTORE(x, p) STORE1((x), (p), 0)
#elif CLATTN_F16
#define VLOAD(p) vload_half(0, (p))
#define VSTORE(x, p) vstore_half_rte((x), 0, (p))
#else
#define VLOAD(p) (*(p))
#define VSTORE(x, p) (*(p) = (x))
#endif
#else
typedef CLATTN_CAT(float, VEC) floatv;
#define HSUM(x) CLATTN_CAT(clattn_hsum, VEC)(x)
#define VLOAD_PRIV(p) CLATTN_CAT(vload, VEC)(0, (p))
#define VLOAD_LOCAL(p) CLATTN_CAT(vload, VEC)(0, (p))
#define VSTORE_PRIV(x, p) CLATTN_CAT(vstore, VEC)((x), 0, (p))
#if CLATTN_BF16
#define VLOAD(p) CLATTN_BF16_LOADN(VEC, (p))
#define VSTORE(x, p) CLATTN_BF16_STOREN(VEC, (x), (p))
#elif CLATTN_F16
#define VLOAD(p) CLATTN_CAT(vload_half, VEC)(0, (p))
#define VSTORE(x, p) CLATTN_CAT(CLATTN_CAT(vstore_half, VEC), _rte)((x), 0, (p))
#else
#define VLOAD(p) CLATTN_CAT(vload, VEC)(0, (p))
#define VSTORE(x, p) CLATTN_CAT(vstore, VEC)((x), 0, (p))
#endif
#endif

/* n (2, 4, 8 or 16) consecutive stored elements as a float vector. */
#if CLATTN_BF16
#define VLOADN_F(n, p) CLATTN_BF16_LOADN(n, (p))
#elif CLATTN_F16
#define VLOADN_F(n, p) CLATTN_CAT(vload_half, n)(0, (p))
#else
#define VLOADN_F(n, p) CLATTN_CAT(vload, n)(0, (p))
#endif

float clattn_hsum2(float2 x) { return x.x + x.y; }
float clattn_hsum4(float4 x) { return clattn_hsum2(x.lo + x.hi); }
float clattn_hsum8(float8 x) { return clattn_hsum4(x.lo + x.hi); }
/* Only where 16-float vectors are asked for: a function taking a float16
 * changes the calling convention on devices without 512-bit vectors, and
 * compilers warn about it even when it is never called. */
#if VEC == 16
float clattn_hsum16(float16 x) { return clattn_hsum8(x.lo + x.hi); }
#endif

/* Loads n (a compile-time constant after inlining) elements of a row into
 * vectors, zero-padding the last one, and multiplies them by mul. */
void clattn_load_row(__global const store_t *p, floatv *dst, const int n,
                     const float mul) {
  const int full = n / VEC;
  for (int c = 0; c < full; c++)
    dst[c] = VLOAD(p + c * VEC) * mul;
  if (n % VEC) {
    float tmp[VEC];
    for (int t = 0; t < VEC; t++)
      tmp[t] = full * VEC + t < n ? LOAD1(p, full * VEC + t) * mul : 0.0f;
    dst[full] = VLOAD_PRIV(tmp);
  }
}

/* Stores the first n elements of a row of vectors, each multiplied by mul. */
void clattn_store_row(__global store_t *p, const floatv *src, const int n,
                      const float mul) {
  const int full = n / VEC;
  for (int c = 0; c < full; c++)
    VSTORE(src[c] * mul, p + c * VEC);
  if (n % VEC) {
    float tmp[VEC];
    VSTORE_PRIV(src[full] * mul, tmp);
    for (int t = 0; full * VEC + t < n; t++)
      STORE1(tmp[t], p, full * VEC + t);
  }
}

/* The linear family's Dv slices (forward and backward): DVT vectors of Dv
 * per work-item. */
#ifndef DVT
#define DVT DVCH
#endif

/* Loads the Dv slice of vectors `count` wide (a constant where it is
 * called, so that the loop unrolls) that starts at vector s0 of a row of
 * n = HEAD_DIM_V elements; vectors past the row are zero, and a partial last
 * vector is zero-padded. */
static inline __attribute__((always_inline)) void
clattn_load_vecs(__global const store_t *p, const int s0, const int count,
                 floatv *dst) {
  if (HEAD_DIM_V % (count * VEC) == 0) {
#pragma unroll
    for (int t = 0; t < count; t++)
      dst[t] = VLOAD(p + (s0 + t) * VEC);
    return;
  }
#pragma unroll
  for (int t = 0; t < count; t++) {
    const int e0 = (s0 + t) * VEC;
    if (e0 + VEC <= HEAD_DIM_V) {
      dst[t] = VLOAD(p + e0);
    } else {
      float tmp[VEC];
#pragma unroll
      for (int u = 0; u < VEC; u++)
        tmp[u] = e0 + u < HEAD_DIM_V ? LOAD1(p, e0 + u) : 0.0f;
      dst[t] = VLOAD_PRIV(tmp);
    }
  }
}

/* The slice of DVT vectors. */
static inline __attribute__((always_inline)) void
clattn_load_slice(__global const store_t *p, const int s0, floatv *dst) {
  clattn_load_vecs(p, s0, DVT, dst);
}
