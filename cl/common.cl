/*
 * common.cl - helpers every clattn kernel file is compiled with: storage
 * dtype loads and stores, vectors along the head dimension, and the score and
 * P.V tiles that softmax and sigmoid attention share.
 *
 * Macros set by the host (defaults here):
 *   CLATTN_F16   1: tensors are stored as half, read with vload_half and
 *                written with vstore_half_rte; arithmetic is float. Works on
 *                devices without cl_khr_fp16.
 *   HEAD_DIM     D, the query/key head dimension (1..256).
 *   HEAD_DIM_V   Dv, the value head dimension (1..256).
 *   VEC          floats per vector along D (1, 2, 4, 8 or 16). Rows are held
 *                as DCH = ceil(D / VEC) vectors, the last one zero-padded.
 *   BLOCK_M      query rows held in registers by one work-item.
 *   BLOCK_N      keys scored per step.
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
#ifndef BLOCK_M
#define BLOCK_M 4 // query rows per work-item
#endif
#ifndef BLOCK_N
#define BLOCK_N 16 // keys per step
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

/* Scores of BLOCK_M query rows against keys j0 .. j0 + BLOCK_N - 1:
 * s[r][jj] = q_r . k_j (q already scaled). With `mask`, a key past nk or past
 * row r's causal limit (i0 + r + off) scores -INFINITY; keys past nk are
 * read from row nk - 1 so no read leaves the buffer. */
void clattn_score_block(floatv (*qr)[DCH], __global const store_t *k,
                        const int j0, const int nk, const int mask,
                        const int causal_limit0, float (*s)[BLOCK_N]) {
  for (int jj = 0; jj < BLOCK_N; jj++) {
    const int j = min(j0 + jj, nk - 1);
    floatv kr[DCH];
    clattn_load_row(k + (size_t)j * HEAD_DIM, kr, HEAD_DIM, 1.0f);
    for (int r = 0; r < BLOCK_M; r++) {
      floatv acc = qr[r][0] * kr[0];
      for (int c = 1; c < DCH; c++)
        acc = fma(qr[r][c], kr[c], acc);
      s[r][jj] = HSUM(acc);
    }
  }
  if (mask) {
    for (int r = 0; r < BLOCK_M; r++) {
      const int lim = min(nk - 1, causal_limit0 + r);
      for (int jj = 0; jj < BLOCK_N; jj++)
        s[r][jj] = j0 + jj <= lim ? s[r][jj] : -INFINITY;
    }
  }
}

/* acc[r] += sum_jj p[r][jj] * v_{j0 + jj}; keys past nk must have p = 0. */
void clattn_pv_block(float (*p)[BLOCK_N], __global const store_t *v,
                     const int j0, const int nk, floatv (*acc)[DVCH]) {
  for (int jj = 0; jj < BLOCK_N; jj++) {
    const int j = min(j0 + jj, nk - 1);
    floatv vr[DVCH];
    clattn_load_row(v + (size_t)j * HEAD_DIM_V, vr, HEAD_DIM_V, 1.0f);
    for (int r = 0; r < BLOCK_M; r++) {
      const floatv pr = (floatv)(p[r][jj]);
      for (int c = 0; c < DVCH; c++)
        acc[r][c] = fma(pr, vr[c], acc[r][c]);
    }
  }
}
