/*
 * common.cl - helpers every clattn kernel file is compiled with: storage
 * dtype loads and stores, and vectors along the head dimension.
 *
 * Macros set by the host (defaults here):
 *   CLATTN_F16   1: tensors are stored as half, read with vload_half and
 *                written with vstore_half_rte; arithmetic is float. Works on
 *                devices without cl_khr_fp16.
 *   HEAD_DIM     D, the query/key head dimension (1..256).
 *   HEAD_DIM_V   Dv, the value head dimension (1..256).
 *   VEC          floats per vector along D (1, 2, 4, 8 or 16). Rows are held
 *                as DCH = ceil(D / VEC) vectors, the last one zero-padded.
 */

#ifndef CLATTN_F16
#define CLATTN_F16 0
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

#if CLATTN_F16
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
#if CLATTN_F16
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
#if CLATTN_F16
#define VLOAD(p) CLATTN_CAT(vload_half, VEC)(0, (p))
#define VSTORE(x, p) CLATTN_CAT(CLATTN_CAT(vstore_half, VEC), _rte)((x), 0, (p))
#else
#define VLOAD(p) CLATTN_CAT(vload, VEC)(0, (p))
#define VSTORE(x, p) CLATTN_CAT(vstore, VEC)((x), 0, (p))
#endif
#endif

float clattn_hsum2(float2 x) { return x.x + x.y; }
float clattn_hsum4(float4 x) { return clattn_hsum2(x.lo + x.hi); }
float clattn_hsum8(float8 x) { return clattn_hsum4(x.lo + x.hi); }
float clattn_hsum16(float16 x) { return clattn_hsum8(x.lo + x.hi); }

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
