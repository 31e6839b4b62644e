/*
 * flash.cl - the tiles softmax.cl and sigmoid.cl share. A block of BLOCK_M
 * query rows stays in one work-item's registers while K and V stream past.
 * Three shapes, chosen by SHAPE:
 *
 *   SHAPE 1, cpu: shaped like a blocked GEMM. K and V are first packed
 *     as float by clattn_pack_kv (K transposed per block of BLOCK_N keys, V
 *     rows padded to whole vectors, both zero past Nk). For each key block,
 *     S = Q.K^T comes from a register-tiled micro-kernel (BLOCK_M rows x
 *     S_VECS key vectors), then mask and exp run on the block in a small
 *     private buffer, then O += P.V from a second micro-kernel (BLOCK_M rows
 *     x O_VECS Dv vectors, in registers across the block's keys). The host
 *     sizes the micro-tiles to the register file its vector width implies
 *     and the key block to the caches. No local memory.
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
 *   BLOCK_N   keys per step (row, gpu) or per key block (cpu; a multiple of
 *             S_VECS * KEYS_VEC).
 *   KEYS_VEC  keys per vector (cpu): 8 or 16.
 *   S_VECS    key vectors per score micro-tile (cpu).
 *   O_VECS    Dv vectors per output micro-tile (cpu).
 * Masks, lengths and score mods come from score.cl, compiled before this
 * file: each block of rows visits only the key blocks some row sees, and
 * masks only those some row does not see whole.
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

#if SHAPE == 0

/* Scores of BLOCK_M query rows against keys j0 .. j0 + BLOCK_N - 1:
 * s[r][jj] = q_r . k_j (q already scaled). Keys from nk on (the sequence's
 * length) are read from row nk - 1, so no read leaves the sequence; the
 * caller masks them. */
void clattn_score_block(floatv (*qr)[DCH], __global const store_t *k,
                        const int j0, const int nk, float (*s)[BLOCK_N]) {
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
}

/* acc[r] += sum_jj p[r][jj] * v_{j0 + jj}; keys from nk on (the sequence's
 * length) must have p = 0, and are read from row nk - 1. */
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

#ifndef S_VECS
#define S_VECS 2 // key vectors per score micro-tile (cpu shape)
#endif
#ifndef O_VECS
#define O_VECS 2 // Dv vectors per output micro-tile (cpu shape)
#endif

/* A padded value row: whole Dv vectors. */
#define DVP (DVCH * VEC)

/* The forward kernels' work-item: BLOCK_M query rows (i0) of head h of
 * batch b. The range is one-dimensional, row blocks fastest, each head's
 * padded to whole work-groups: a runtime that hands each thread a
 * contiguous part of the range keeps a thread on one head, whose packed K
 * and V stay in its cache, where over a (rows, heads, batch) range Intel's
 * CPU runtime walked every head at once: at D = 128, N = 4096 it took 1.3x
 * the time with AVX-512 code and 1.5x with AVX2 code. */
int3 clattn_row_block_ids(const int nq, const int hq) {
  const int wg = (int)get_local_size(0);
  const size_t blocks = (size_t)((nq + BLOCK_M - 1) / BLOCK_M + wg - 1) /
                        (size_t)wg * (size_t)wg;
  const size_t id = get_global_id(0);
  const size_t bh = id / blocks;
  return (int3)((int)(id % blocks) * BLOCK_M, (int)(bh % (size_t)hq),
                (int)(bh / (size_t)hq));
}

/* One work-item per (padded key j, batch * kv head). K is packed as float
 * in blocks of BLOCK_N keys, each block transposed: kt[bh][j / BLOCK_N][d]
 * [j % BLOCK_N], so that a score micro-tile reads whole vectors of keys from
 * one contiguous block (a plain transpose with a power-of-two row stride
 * puts every d of a key vector in the same L1 set). V is packed as float
 * rows padded to whole vectors: vp[bh][j][DVP]. Padding keys and columns
 * are zero. */
CLATTN_KERNEL void clattn_pack_kv(__global const store_t *k,
                                  __global const store_t *v, __global float *ws,
                                  const int nk, const int nkp,
                                  const ulong vp_off, const int hkv,
                                  __global const int *lens_k) {
  const int j = (int)get_global_id(0);
  const size_t bh = get_global_id(1);
  if (j >= nkp)
    return;
  /* Keys past the sequence's length are packed as zeros: whatever the
   * caller's padding holds (NaN included) never reaches a product. */
  const int lk = lens_k ? clamp(lens_k[bh / hkv], 0, nk) : nk;
  const int js = min(j, nk - 1);
  __global const store_t *ks = k + (bh * nk + js) * HEAD_DIM;
  __global float *kd = ws + bh * HEAD_DIM * nkp +
                       (size_t)(j - j % BLOCK_N) * HEAD_DIM + j % BLOCK_N;
  for (int d = 0; d < HEAD_DIM; d++)
    kd[d * BLOCK_N] = j < lk ? LOAD1(ks, d) : 0.0f;
  __global const store_t *vs = v + (bh * nk + js) * HEAD_DIM_V;
  __global float *vd = ws + vp_off + (bh * nkp + j) * DVP;
  for (int d = 0; d < DVP; d++)
    vd[d] = j < lk && d < HEAD_DIM_V ? LOAD1(vs, d) : 0.0f;
}

/* s = q . k for BLOCK_M rows and the BLOCK_N keys of one packed K block,
 * one micro-tile of BLOCK_M rows x KTILE keys at a time: its accumulators
 * (BLOCK_M * S_VECS vectors) and the S_VECS key vectors of one d stay in
 * registers, and each q element is broadcast once per micro-tile. */
void clattn_score_block(float (*qs)[HEAD_DIM], __global const float *ktb,
                        float (*s)[BLOCK_N]) {
  for (int j = 0; j < BLOCK_N; j += KTILE) {
    floatk acc[BLOCK_M][S_VECS];
#pragma unroll
    for (int r = 0; r < BLOCK_M; r++)
#pragma unroll
      for (int t = 0; t < S_VECS; t++)
        acc[r][t] = (floatk)(0.0f);
    for (int d = 0; d < HEAD_DIM; d++) {
      floatk kv[S_VECS];
#pragma unroll
      for (int t = 0; t < S_VECS; t++)
        kv[t] = KLOAD(ktb + d * BLOCK_N + j + t * KEYS_VEC);
#pragma unroll
      for (int r = 0; r < BLOCK_M; r++) {
        const floatk qv = (floatk)(qs[r][d]);
#pragma unroll
        for (int t = 0; t < S_VECS; t++)
          acc[r][t] = fma(qv, kv[t], acc[r][t]);
      }
    }
#pragma unroll
    for (int r = 0; r < BLOCK_M; r++)
#pragma unroll
      for (int t = 0; t < S_VECS; t++)
        KSTORE(acc[r][t], &s[r][j + t * KEYS_VEC]);
  }
}

/* Sets the scores of keys row i0 + r does not see to `fill`; j0 is the
 * block's first key; with_mod: the mask_mod is evaluated too. */
void clattn_mask_block(const clattn_seq *sq, float (*s)[BLOCK_N], const int i0,
                       const int j0, const float fill, const int with_mod) {
  for (int r = 0; r < BLOCK_M; r++) {
    const int lo = (int)clamp(clattn_row_first(sq, (long)i0 + r) - j0, -1L,
                              (long)BLOCK_N);
    const int hi = (int)clamp(clattn_row_last(sq, (long)i0 + r) - j0, -1L,
                              (long)BLOCK_N);
    for (int j = 0; j < BLOCK_N; j += KEYS_VEC) {
      const intk jv = j + KIOTA;
      KSTORE(select(KLOAD(&s[r][j]), (floatk)(fill), jv < lo || jv > hi),
             &s[r][j]);
    }
#if PIPE_MASK_MOD
    if (with_mod)
      for (int j = 0; j < BLOCK_N; j++)
        if (!clattn_mask_keep(sq, i0 + r, j0 + j))
          s[r][j] = fill;
#else
    (void)with_mod;
#endif
  }
}

/* o[r][c0 .. c0 + nv) += sum_jj p[r][jj] * v_jj over the block's keys, with
 * the BLOCK_M x nv output vectors in registers across all its keys. The
 * loops run to the constant O_VECS (nv <= O_VECS, a constant once inlined)
 * so that they unroll. */
void clattn_pv_slice(float (*p)[BLOCK_N], __global const float *vpb,
                     floatv (*o)[DVCH], const int c0, const int nv) {
  floatv acc[BLOCK_M][O_VECS];
#pragma unroll
  for (int r = 0; r < BLOCK_M; r++)
#pragma unroll
    for (int t = 0; t < O_VECS; t++)
      if (t < nv)
        acc[r][t] = o[r][c0 + t];
  for (int jj = 0; jj < BLOCK_N; jj++) {
    floatv vr[O_VECS];
#pragma unroll
    for (int t = 0; t < O_VECS; t++)
      if (t < nv)
        vr[t] = VLOAD_PRIV(vpb + jj * DVP + (c0 + t) * VEC);
#pragma unroll
    for (int r = 0; r < BLOCK_M; r++) {
      const floatv pr = (floatv)(p[r][jj]);
#pragma unroll
      for (int t = 0; t < O_VECS; t++)
        if (t < nv)
          acc[r][t] = fma(pr, vr[t], acc[r][t]);
    }
  }
#pragma unroll
  for (int r = 0; r < BLOCK_M; r++)
#pragma unroll
    for (int t = 0; t < O_VECS; t++)
      if (t < nv)
        o[r][c0 + t] = acc[r][t];
}

/* o += p . V-block, in slices of O_VECS vectors of Dv and a last, narrower
 * slice when O_VECS does not divide DVCH. */
void clattn_pv_block(float (*p)[BLOCK_N], __global const float *vpb,
                     floatv (*o)[DVCH]) {
  for (int c = 0; c + O_VECS <= DVCH; c += O_VECS)
    clattn_pv_slice(p, vpb, o, c, O_VECS);
#if DVCH % O_VECS
  clattn_pv_slice(p, vpb, o, DVCH - DVCH % O_VECS, DVCH % O_VECS);
#endif
}

/* Loads BLOCK_M query rows from i0 as scalars times mul; rows past nq repeat
 * row nq - 1 (their results are not stored). */
void clattn_load_q_scalars(__global const store_t *q, const int i0,
                           const int nq, const float mul,
                           float (*qs)[HEAD_DIM]) {
  for (int r = 0; r < BLOCK_M; r++) {
    __global const store_t *row =
        q + (size_t)min((long)i0 + r, (long)nq - 1) * HEAD_DIM;
    for (int d = 0; d < HEAD_DIM; d++)
      qs[r][d] = LOAD1(row, d) * mul;
  }
}

#elif SHAPE == 2

/* Row r of a tile in local memory is padded to whole vectors. */
#define DP (DCH * VEC)
#define DVP (DVCH * VEC)

/* The whole group loads keys j0 .. j0 + BLOCK_N - 1 of K and V into local
 * memory, as float, zero from nk on (the sequence's length, so padding
 * never reaches a product). Called by every work-item, with the barriers
 * around it in uniform control flow. */
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

/* s[jj] = q . k_{j0 + jj} from the local tile, through the score mods for
 * row i; keys the row does not see score `fill` (with_mod: the mask_mod is
 * evaluated too). */
void clattn_score_tile(const clattn_seq *sq, const floatv *qr,
                       __local const float *ks, const int i, const int j0,
                       const float fill, const int with_mod, float *s) {
  const long lo = clattn_row_first(sq, i), hi = clattn_row_last(sq, i);
  for (int jj = 0; jj < BLOCK_N; jj++) {
    __local const float *kr = ks + jj * DP;
    floatv acc = qr[0] * VLOAD_LOCAL(kr);
    for (int c = 1; c < DCH; c++)
      acc = fma(qr[c], VLOAD_LOCAL(kr + c * VEC), acc);
    const int j = j0 + jj;
    const int keep =
        j >= lo && j <= hi && (!with_mod || clattn_mask_keep(sq, i, j));
    s[jj] = keep ? clattn_mods(sq, HSUM(acc), i, j) : fill;
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

/* The block mask of a mask_mod: for each block of BLOCK_M query rows (one
 * work-item's, or the gpu shape's work-group's) and BLOCK_N keys of each
 * (batch, query head), 0 when the mask_mod drops every pair of the block, 1
 * when it drops some, 2 when none, so that the kernels skip the first kind,
 * evaluate the mod only on the second and not at all on the third (as
 * FlexAttention's BlockMask). The mask_mod sees positions within the
 * sequence, which lengths do not move, so one mask serves every run of a
 * plan: the plan computes it once, at its creation. */
int clattn_block_mod(__global const uchar *block_mask, const clattn_seq *sq,
                     const int i0, const int j0, const int nq, const int nk,
                     const int hq) {
#if PIPE_MASK_MOD
  const int nqb = (nq + BLOCK_M - 1) / BLOCK_M;
  const int nkb = (nk + BLOCK_N - 1) / BLOCK_N;
  return block_mask[(((size_t)sq->b * hq + sq->h) * nqb + i0 / BLOCK_M) * nkb +
                    j0 / BLOCK_N];
#else
  (void)block_mask;
  (void)sq;
  (void)i0;
  (void)j0;
  (void)nq;
  (void)nk;
  (void)hq;
  return 2;
#endif
}

#if PIPE_MASK_MOD
/* One work-item per block: global size (key blocks, row blocks, B * Hq). */
CLATTN_KERNEL void clattn_block_mask(__global uchar *block_mask, const int nq,
                                     const int nk, const int hq) {
  const int kb = (int)get_global_id(0), qb = (int)get_global_id(1);
  const size_t bh = get_global_id(2);
  const int nqb = (nq + BLOCK_M - 1) / BLOCK_M;
  const int nkb = (nk + BLOCK_N - 1) / BLOCK_N;
  if (kb >= nkb || qb >= nqb)
    return;
  const int b = (int)(bh / hq), h = (int)(bh % hq);
  const int i1 = min(qb * BLOCK_M + BLOCK_M, nq);
  const int j1 = min(kb * BLOCK_N + BLOCK_N, nk);
  int any = 0, all = 1;
  for (int i = qb * BLOCK_M; i < i1; i++)
    for (int j = kb * BLOCK_N; j < j1; j++) {
      const int keep = clattn_mask_mod(b, h, i, j) != 0;
      any |= keep;
      all &= keep;
    }
  block_mask[(bh * nqb + qb) * nkb + kb] = (uchar)(any ? (all ? 2 : 1) : 0);
}
#endif
