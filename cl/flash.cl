/*
 * flash.cl - the tiles softmax.cl and sigmoid.cl share. A block of BLOCK_M
 * query rows stays in one work-item's registers while K and V stream past.
 * Three shapes, chosen by SHAPE:
 *
 *   SHAPE 1, cpu: K is first transposed into a float workspace
 *     KT [B*Hkv, D, NKP] (NKP = Nk rounded up to KEYS_VEC, padded with
 *     zeros) by clattn_transpose_k, so that KEYS_VEC scores of a row come
 *     from D vector FMAs with no horizontal sums; P.V then adds
 *     scalar-times-vector rows of V. BLOCK_M rows per work-item, no local
 *     memory: what a CPU runtime vectorises well.
 *   SHAPE 2, gpu: a work-group of BLOCK_M work-items holds BLOCK_M query
 *     rows, one per work-item; tiles of BLOCK_N keys and values are loaded
 *     into local memory by the whole group and read by every work-item.
 *   SHAPE 0, row: like gpu without local memory (each work-item reads K and
 *     V from global memory, BLOCK_M rows per work-item); the fallback for
 *     devices with little local memory.
 *
 * Macros (defaults here; the host sets them):
 *   SHAPE     0 row, 1 cpu, 2 gpu.
 *   BLOCK_M   query rows per work-item (row, cpu) or per work-group (gpu).
 *   BLOCK_N   keys per step (row, gpu).
 *   KEYS_VEC  keys per vector (cpu): 8 or 16.
 *   CAUSAL    1: bottom-right causal masking.
 */

#ifndef BLOCK_M
#define BLOCK_M 4 // query rows per work-item
#endif
#ifndef BLOCK_N
#define BLOCK_N 16 // keys per step (row shape)
#endif
#ifndef SHAPE
#define SHAPE 1 // 0 row, 1 cpu, 2 gpu
#endif
#ifndef KEYS_VEC
#define KEYS_VEC 16 // keys per vector (cpu shape)
#endif
#ifndef CAUSAL
#define CAUSAL 0 // bottom-right causal masking
#endif

/* Key j is visible to query i when j <= i + off (off = Nk - Nq). Keys from
 * kend on are never visited; blocks reaching past kfree need masking. */
#define CLATTN_KEY_BOUNDS(i0, nq, nk, kend, kfree)                            \
  const int kend = CAUSAL ? clamp((i0) + BLOCK_M + (nk) - (nq), 0, (nk))       \
                          : (nk);                                              \
  const int kfree = CAUSAL ? clamp((i0) + 1 + (nk) - (nq), 0, (nk)) : (nk)

#if SHAPE == 0

/* Scores of BLOCK_M query rows against keys j0 .. j0 + BLOCK_N - 1:
 * s[r][jj] = q_r . k_j (q already scaled). With `mask`, a key past nk or past
 * row r's causal limit (causal_limit0 + r) scores -INFINITY; keys past nk are
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

#elif SHAPE == 1

#if KEYS_VEC == 16
typedef float16 floatk;
#define KIOTA ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#define KLOAD(p) vload16(0, (p))
#define KSTORE_PRIV(x, p) vstore16((x), 0, (p))
#define KSUM(x) clattn_hsum16(x)
#define KMAX(x) clattn_hmax16(x)
#elif KEYS_VEC == 8
typedef float8 floatk;
#define KIOTA ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#define KLOAD(p) vload8(0, (p))
#define KSTORE_PRIV(x, p) vstore8((x), 0, (p))
#define KSUM(x) clattn_hsum8(x)
#define KMAX(x) clattn_hmax8(x)
#else
#error KEYS_VEC must be 8 or 16
#endif

float clattn_hmax2(float2 x) { return fmax(x.x, x.y); }
float clattn_hmax4(float4 x) { return clattn_hmax2(fmax(x.lo, x.hi)); }
float clattn_hmax8(float8 x) { return clattn_hmax4(fmax(x.lo, x.hi)); }
float clattn_hmax16(float16 x) { return clattn_hmax8(fmax(x.lo, x.hi)); }

/* One work-item per (padded key j, batch * kv head): KT[bh][d][j] = K[bh][j][d]
 * as float, zero for the padding keys j >= nk. */
__kernel void clattn_transpose_k(__global const store_t *k,
                                 __global float *kt, const int nk,
                                 const int nkp) {
  const int j = (int)get_global_id(0);
  const size_t bh = get_global_id(1);
  if (j >= nkp)
    return;
  __global const store_t *src = k + (bh * nk + min(j, nk - 1)) * HEAD_DIM;
  __global float *dst = kt + bh * HEAD_DIM * nkp + j;
  for (int d = 0; d < HEAD_DIM; d++)
    dst[(size_t)d * nkp] = j < nk ? LOAD1(src, d) : 0.0f;
}

/* s[r] = scores of row r against keys j0 .. j0 + KEYS_VEC - 1, from KT. */
void clattn_score_keys(float (*qs)[HEAD_DIM], __global const float *kt,
                       const int nkp, const int j0, floatk *s) {
  for (int r = 0; r < BLOCK_M; r++)
    s[r] = (floatk)(0.0f);
  for (int d = 0; d < HEAD_DIM; d++) {
    const floatk kv = KLOAD(kt + (size_t)d * nkp + j0);
    for (int r = 0; r < BLOCK_M; r++)
      s[r] = fma((floatk)(qs[r][d]), kv, s[r]);
  }
}

/* Masks keys past nk and past row r's causal limit (limit0 + r) to -inf. */
void clattn_mask_keys(floatk *s, const int j0, const int nk, const int limit0) {
  for (int r = 0; r < BLOCK_M; r++) {
    const int lim = min(nk - 1, limit0 + r);
    s[r] = select((floatk)(-INFINITY), s[r], j0 + KIOTA <= lim);
  }
}

/* acc[r] += sum_jj p[r][jj] * v_{j0 + jj}; keys past nk must have p = 0 and
 * are read from row nk - 1 so no read leaves the buffer. */
void clattn_pv_keys(floatk *p, __global const store_t *v, const int j0,
                    const int nk, floatv (*acc)[DVCH]) {
  float pa[BLOCK_M][KEYS_VEC];
  for (int r = 0; r < BLOCK_M; r++)
    KSTORE_PRIV(p[r], pa[r]);
  for (int jj = 0; jj < KEYS_VEC; jj++) {
    const int j = min(j0 + jj, nk - 1);
    floatv vr[DVCH];
    clattn_load_row(v + (size_t)j * HEAD_DIM_V, vr, HEAD_DIM_V, 1.0f);
    for (int r = 0; r < BLOCK_M; r++) {
      const floatv pr = (floatv)(pa[r][jj]);
      for (int c = 0; c < DVCH; c++)
        acc[r][c] = fma(pr, vr[c], acc[r][c]);
    }
  }
}

/* Loads BLOCK_M query rows from i0 as scalars times mul; rows past nq repeat
 * row nq - 1 (their results are not stored). */
void clattn_load_q_scalars(__global const store_t *q, const int i0,
                           const int nq, const float mul,
                           float (*qs)[HEAD_DIM]) {
  for (int r = 0; r < BLOCK_M; r++) {
    __global const store_t *row = q + (size_t)min(i0 + r, nq - 1) * HEAD_DIM;
    for (int d = 0; d < HEAD_DIM; d++)
      qs[r][d] = LOAD1(row, d) * mul;
  }
}

#elif SHAPE == 2

/* Row r of a tile in local memory is padded to whole vectors. */
#define DP (DCH * VEC)
#define DVP (DVCH * VEC)

/* The whole group loads keys j0 .. j0 + BLOCK_N - 1 of K and V into local
 * memory, as float, zero past nk. Called by every work-item, with the
 * barriers around it in uniform control flow. */
void clattn_load_kv_tile(__global const store_t *k, __global const store_t *v,
                         const int j0, const int nk, __local float *ks,
                         __local float *vs) {
  const int lid = (int)get_local_id(0);
  for (int e = lid; e < BLOCK_N * DP; e += BLOCK_M) {
    const int jj = e / DP, d = e % DP;
    const int j = j0 + jj;
    ks[e] = j < nk && d < HEAD_DIM ? LOAD1(k, (size_t)j * HEAD_DIM + d) : 0.0f;
  }
  for (int e = lid; e < BLOCK_N * DVP; e += BLOCK_M) {
    const int jj = e / DVP, d = e % DVP;
    const int j = j0 + jj;
    vs[e] =
        j < nk && d < HEAD_DIM_V ? LOAD1(v, (size_t)j * HEAD_DIM_V + d) : 0.0f;
  }
}

/* s[jj] = q . k_{j0 + jj} from the local tile; keys past this row's limit
 * (lim, at most nk - 1) score -INFINITY. */
void clattn_score_tile(const floatv *qr, __local const float *ks, const int j0,
                       const int lim, float *s) {
  for (int jj = 0; jj < BLOCK_N; jj++) {
    __local const float *kr = ks + jj * DP;
    floatv acc = qr[0] * VLOAD_LOCAL(kr);
    for (int c = 1; c < DCH; c++)
      acc = fma(qr[c], VLOAD_LOCAL(kr + c * VEC), acc);
    s[jj] = j0 + jj <= lim ? HSUM(acc) : -INFINITY;
  }
}

/* acc += sum_jj p[jj] * v_{j0 + jj} from the local tile. */
void clattn_pv_tile(const float *p, __local const float *vs, floatv *acc) {
  for (int jj = 0; jj < BLOCK_N; jj++) {
    const floatv pr = (floatv)(p[jj]);
    for (int c = 0; c < DVCH; c++)
      acc[c] = fma(pr, VLOAD_LOCAL(vs + jj * DVP + c * VEC), acc[c]);
  }
}

#endif /* SHAPE */
