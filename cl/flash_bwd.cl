/*
 * flash_bwd.cl - softmax and sigmoid attention backward, FlashAttention-2
 * style: the weights are recomputed from Q, K and (softmax) the forward's
 * LSE, so no Nq x Nk matrix is stored, and no floating-point atomics are
 * used: dK and dV are summed by the work-item that owns a block of keys,
 * dQ by the one that owns a block of queries.
 *
 * Layout as the forward (clattn.h); dO and dQ are shaped as O and Q, dK and
 * dV as K and V. LSE and DELTA are float [B, Hq, Nq] (DELTA_i = dO_i . O_i,
 * softmax only).
 *
 * With s = scale q.k:
 *   softmax  p = exp(s - lse_i),            ds = p (dO_i.v_j - DELTA_i)
 *   sigmoid  p = sigmoid(s + bias),         ds = p (1 - p) (dO_i.v_j)
 *   dV_j += p dO_i,  dK_j += scale ds q_i,  dQ_i += scale ds k_j.
 * Scores live in the log2 domain like the forward's: scale_log2 =
 * scale * log2(e), bias_log2 = bias * log2(e).
 *
 * Kernels:
 *   clattn_bwd_delta  one work-item per query row: DELTA.
 *   clattn_bwd_dkdv   one work-item per BLOCK_N keys of one (batch, kv
 *                     head); it visits every query row of the heads that
 *                     share the kv head, so grouped-query gradients are
 *                     summed in a fixed order.
 *   clattn_bwd_dq     one work-item per BLOCK_M query rows of one (batch,
 *                     query head), visiting their visible keys.
 * The score pipeline (score.cl) applies as in the forward: per-sequence
 * lengths, the window (causal is win_right = 0), ALiBi, softcap and
 * mask_mod, with s = mods(scale q.k) above and ds carried back through
 * mods by clattn_mods_grad (the softcap's 1 - tanh^2; ALiBi is a constant).
 * Masked pairs have p = 0 and give no gradient; rows past Lq get dQ = 0 and
 * keys past Lk dK = dV = 0. The padding (Q, dO, O and LSE past Lq, K and V
 * past Lk) is never read into a product, so whatever it holds, NaN
 * included, changes nothing. A score_mod has no backward (the host refuses
 * it). Work is visited only where some pair is visible: key ranges of a
 * block of rows by clattn_block_range, row ranges of a block of keys by
 * clattn_bwd_rows, so a window's cost is linear in the lengths.
 *
 * SHAPE 1 (cpu) replaces dkdv and dq by one pass shaped like blocked GEMMs,
 * which computes S and dP once per (query block, key block) instead of
 * twice:
 *   clattn_bwd_pack     K and V as float in blocks of BLOCK_N keys: K and V
 *                       transposed per block (the score micro-kernel reads
 *                       whole vectors of keys), and K as rows padded to DP.
 *   clattn_bwd_cpu      one work-item per (split, batch * kv head). For each
 *                       of its key blocks (block jb belongs to split
 *                       jb % splits, which balances causal work) it visits
 *                       every query block of the group's heads in a fixed
 *                       order: S = Q.K^T and dP = dO.V^T from a register-tiled
 *                       micro-kernel, P and dS on the block in private
 *                       buffers with a vector exp2, then dV += P^T.dO and
 *                       dK += dS^T.Q into a float scratch block and
 *                       dQ_split += dS.K into the split's own float copy of
 *                       dQ. DELTA comes with the dO rows.
 *   clattn_bwd_dq_sum   dQ = scale * the sum of the splits' copies, in split
 *                       order.
 * No float atomics and no race: every float written belongs to one
 * work-item. Tiles (host/backward.c) are sized to the vector register file.
 */

#ifndef SIGMOID
#define SIGMOID 0
#endif
#ifndef BLOCK_N
#define BLOCK_N 4 // keys per work-item in clattn_bwd_dkdv
#endif
#ifndef BLOCK_M
#define BLOCK_M 4 // query rows per work-item in clattn_bwd_dq
#endif
#ifndef SHAPE
#define SHAPE 0 // 0 row (dkdv and dq), 1 cpu
#endif

float clattn_bwd_dot(const floatv *a, const floatv *b, const int n) {
  floatv acc = a[0] * b[0];
  for (int c = 1; c < n; c++)
    acc = fma(a[c], b[c], acc);
  return HSUM(acc);
}

/* The recomputed weight of a visible pair from its log2-domain score. */
float clattn_bwd_weight(const float s2, const float lse2,
                        const float bias_log2) {
#if SIGMOID
  (void)lse2;
  return 1.0f / (1.0f + exp2(-(s2 + bias_log2)));
#else
  (void)bias_log2;
  return exp2(s2 - lse2);
#endif
}

/* ds from the weight p, dp = dO_i . v_j and DELTA_i. */
float clattn_bwd_ds(const float p, const float dp, const float delta) {
#if SIGMOID
  (void)delta;
  return p * (1.0f - p) * dp;
#else
  return p * (dp - delta);
#endif
}

/* Rows [*ibeg, *iend) hold every row of the sequence that sees some key of
 * j0 .. j0 + n - 1, the transpose of clattn_block_range: as first(i) and
 * last(i) never decrease with i, row i sees a key of the block when
 * first(i) <= jl and last(i) >= j0, jl the block's last key below Lk. That
 * is i + off - left <= jl and i + off + right >= j0, for i < Lq. */
void clattn_bwd_rows(const clattn_seq *s, const int j0, const int n,
                     int *ibeg, int *iend) {
  const long jl = min((long)j0 + n, (long)s->lk) - 1;
  *ibeg = *iend = 0;
  if (jl < j0)
    return;
  const long lo = max(0L, (long)j0 - s->off - s->right);
  const long hi = min((long)s->lq, jl - s->off + s->left + 1);
  if (hi > lo) {
    *ibeg = (int)lo;
    *iend = (int)hi;
  }
}

/* The row and gpu shapes' kernels: delta, then dK/dV and dQ. The cpu shape
 * has its own below and leaves these out of its program. */
#if SHAPE != 1

CLATTN_KERNEL void clattn_bwd_delta(__global const store_t *o,
                                    __global const store_t *dout,
                                    __global float *delta, const ulong rows) {
  const size_t r = get_global_id(0);
  if (r >= rows)
    return;
  floatv a[DVCH], g[DVCH];
  clattn_load_row(o + r * HEAD_DIM_V, a, HEAD_DIM_V, 1.0f);
  clattn_load_row(dout + r * HEAD_DIM_V, g, HEAD_DIM_V, 1.0f);
  delta[r] = clattn_bwd_dot(a, g, DVCH);
}

CLATTN_KERNEL void
clattn_bwd_dkdv(__global const store_t *q, __global const store_t *k,
                __global const store_t *v, __global const store_t *dout,
                __global const float *lse, __global const float *delta,
                __global store_t *dk, __global store_t *dv, const int nq,
                const int nk, const int hq, const int hkv,
                const float scale_log2, const float scale,
                const float bias_log2, CLATTN_PIPE_PARAMS) {
  const int j0 = (int)get_global_id(0) * BLOCK_N;
  const int hk = (int)get_global_id(1);
  const int b = (int)get_global_id(2);
  if (j0 >= nk)
    return;
  const size_t kv0 = ((size_t)b * hkv + hk) * nk;
  /* Keys from the sequence's Lk on are read from its last key (no read
   * leaves the sequence, so no padding is read) and skipped below. */
  const int jmax = max((lens_k ? clamp(lens_k[b], 0, nk) : nk) - 1, 0);
  floatv kr[BLOCK_N][DCH], vr[BLOCK_N][DVCH];
  floatv dkr[BLOCK_N][DCH], dvr[BLOCK_N][DVCH];
  for (int jj = 0; jj < BLOCK_N; jj++) {
    const size_t j = kv0 + min(j0 + jj, jmax);
    clattn_load_row(k + j * HEAD_DIM, kr[jj], HEAD_DIM, 1.0f);
    clattn_load_row(v + j * HEAD_DIM_V, vr[jj], HEAD_DIM_V, 1.0f);
    for (int c = 0; c < DCH; c++)
      dkr[jj][c] = (floatv)(0.0f);
    for (int c = 0; c < DVCH; c++)
      dvr[jj][c] = (floatv)(0.0f);
  }
  const int group = hq / hkv;
  for (int hh = 0; hh < group; hh++) {
    const int h = hk * group + hh;
    const clattn_seq sq = clattn_seq_make(b, h, nq, nk, CLATTN_PIPE_ARGS);
    const float bias = clattn_seq_bias(&sq, bias_log2);
    /* Only rows [ibeg, iend) see a key of this block. */
    int ibeg, iend;
    clattn_bwd_rows(&sq, j0, BLOCK_N, &ibeg, &iend);
    const size_t row0 = ((size_t)b * hq + h) * nq;
    for (int i = ibeg; i < iend; i++) {
      floatv qr[DCH], gr[DVCH];
      clattn_load_row(q + (row0 + i) * HEAD_DIM, qr, HEAD_DIM, 1.0f);
      clattn_load_row(dout + (row0 + i) * HEAD_DIM_V, gr, HEAD_DIM_V, 1.0f);
#if SIGMOID
      (void)lse;
      (void)delta;
      const float lse2 = 0.0f, dl = 0.0f;
#else
      const float lse2 = lse[row0 + i] * M_LOG2E_F, dl = delta[row0 + i];
#endif
      const long lo = clattn_row_first(&sq, i), hi = clattn_row_last(&sq, i);
      for (int jj = 0; jj < BLOCK_N; jj++) {
        const int j = j0 + jj;
        if ((long)j < lo || (long)j > hi || !clattn_mask_keep(&sq, i, j))
          continue;
        const float x = clattn_bwd_dot(qr, kr[jj], DCH) * scale_log2;
        const float p =
            clattn_bwd_weight(clattn_mods(&sq, x, i, j), lse2, bias);
        const float ds =
            clattn_bwd_ds(p, clattn_bwd_dot(gr, vr[jj], DVCH), dl) *
            clattn_mods_grad(&sq, x);
        for (int c = 0; c < DVCH; c++)
          dvr[jj][c] = fma((floatv)(p), gr[c], dvr[jj][c]);
        for (int c = 0; c < DCH; c++)
          dkr[jj][c] = fma((floatv)(ds), qr[c], dkr[jj][c]);
      }
    }
  }
  for (int jj = 0; jj < BLOCK_N && j0 + jj < nk; jj++) {
    const size_t j = kv0 + j0 + jj;
    clattn_store_row(dk + j * HEAD_DIM, dkr[jj], HEAD_DIM, scale);
    clattn_store_row(dv + j * HEAD_DIM_V, dvr[jj], HEAD_DIM_V, 1.0f);
  }
}

CLATTN_KERNEL void
clattn_bwd_dq(__global const store_t *q, __global const store_t *k,
              __global const store_t *v, __global const store_t *dout,
              __global const float *lse, __global const float *delta,
              __global store_t *dq, const int nq, const int nk, const int hq,
              const int hkv, const float scale_log2, const float scale,
              const float bias_log2, CLATTN_PIPE_PARAMS) {
  const int i0 = (int)get_global_id(0) * BLOCK_M;
  const int h = (int)get_global_id(1);
  const int b = (int)get_global_id(2);
  if (i0 >= nq)
    return;
  const size_t row0 = ((size_t)b * hq + h) * nq;
  const size_t kv0 = ((size_t)b * hkv + h / (hq / hkv)) * nk;
  const clattn_seq sq = clattn_seq_make(b, h, nq, nk, CLATTN_PIPE_ARGS);
  const float bias = clattn_seq_bias(&sq, bias_log2);
  floatv qr[BLOCK_M][DCH], gr[BLOCK_M][DVCH], acc[BLOCK_M][DCH];
  float lse2[BLOCK_M], dl[BLOCK_M];
  long lo[BLOCK_M], hi[BLOCK_M];
  /* Rows from the sequence's Lq on are read from its last row (no padding
   * is read) and see no key. */
  const int imax = max(sq.lq - 1, 0);
  for (int r = 0; r < BLOCK_M; r++) {
    const size_t i = row0 + min(i0 + r, imax);
    clattn_load_row(q + i * HEAD_DIM, qr[r], HEAD_DIM, 1.0f);
    clattn_load_row(dout + i * HEAD_DIM_V, gr[r], HEAD_DIM_V, 1.0f);
#if SIGMOID
    (void)lse;
    (void)delta;
    lse2[r] = 0.0f;
    dl[r] = 0.0f;
#else
    lse2[r] = lse[i] * M_LOG2E_F;
    dl[r] = delta[i];
#endif
    /* Rows past Lq (nq included) see no key. */
    lo[r] = clattn_row_first(&sq, (long)i0 + r);
    hi[r] = clattn_row_last(&sq, (long)i0 + r);
    for (int c = 0; c < DCH; c++)
      acc[r][c] = (floatv)(0.0f);
  }
  /* Keys outside [keys.s0, keys.s1) are seen by no row of the block. */
  const int4 keys = clattn_block_range(&sq, i0, BLOCK_M, 1);
  for (int j = keys.s0; j < keys.s1; j++) {
    floatv kr[DCH], vr[DVCH];
    clattn_load_row(k + (kv0 + j) * HEAD_DIM, kr, HEAD_DIM, 1.0f);
    clattn_load_row(v + (kv0 + j) * HEAD_DIM_V, vr, HEAD_DIM_V, 1.0f);
    for (int r = 0; r < BLOCK_M; r++) {
      if ((long)j < lo[r] || (long)j > hi[r] ||
          !clattn_mask_keep(&sq, i0 + r, j))
        continue;
      const float x = clattn_bwd_dot(qr[r], kr, DCH) * scale_log2;
      const float p =
          clattn_bwd_weight(clattn_mods(&sq, x, i0 + r, j), lse2[r], bias);
      const float ds =
          clattn_bwd_ds(p, clattn_bwd_dot(gr[r], vr, DVCH), dl[r]) *
          clattn_mods_grad(&sq, x);
      for (int c = 0; c < DCH; c++)
        acc[r][c] = fma((floatv)(ds), kr[c], acc[r][c]);
    }
  }
  for (int r = 0; r < BLOCK_M && i0 + r < nq; r++)
    clattn_store_row(dq + (row0 + i0 + r) * HEAD_DIM, acc[r], HEAD_DIM, scale);
}

#endif /* SHAPE != 1 */

#if SHAPE == 1

#ifndef MR
#define MR 8 // rows per score and dQ micro-tile; divides BLOCK_M
#endif
#ifndef S_VECS
#define S_VECS 2 // key vectors per score micro-tile
#endif
#ifndef O_VECS
#define O_VECS 2 // head-dimension vectors per dQ micro-tile
#endif
#ifndef JR
#define JR 4 // keys per dK/dV micro-tile
#endif
#ifndef T_VECS
#define T_VECS 4 // head-dimension vectors per dK/dV micro-tile
#endif
#ifndef SUM_ROWS
#define SUM_ROWS 64 // rows per work-item of clattn_bwd_dq_sum
#endif

/* Padded rows: whole vectors of the head dimensions. */
#define DP (DCH * VEC)
#define DVP (DVCH * VEC)


/* One work-item per (key block, batch * kv head): kt[bh][j][d] holds the
 * block of keys from j transposed, d major (vt likewise for V), kr[bh][j]
 * the keys as rows of DP floats. Zero past the sequence's Lk (lens_k, NULL:
 * Nk) and past the head dims, so whatever the padding holds (NaN included)
 * never reaches a product. */
CLATTN_KERNEL void clattn_bwd_pack(__global const store_t *k,
                                   __global const store_t *v,
                                   __global float *ws, const int nk,
                                   const int nkp, const ulong vt_off,
                                   const ulong kr_off, const int hkv,
                                   __global const int *lens_k) {
  const int j0 = (int)get_global_id(0) * BLOCK_N;
  const size_t bh = get_global_id(1);
  if (j0 >= nkp)
    return;
  const int lk = lens_k ? clamp(lens_k[bh / hkv], 0, nk) : nk;
  __global float *kt = ws + (bh * nkp + j0) * HEAD_DIM;
  __global float *vt = ws + vt_off + (bh * nkp + j0) * HEAD_DIM_V;
  __global float *kr = ws + kr_off + (bh * nkp + j0) * DP;
  for (int jj = 0; jj < BLOCK_N; jj++) {
    const int j = j0 + jj;
    const int in = j < lk;
    __global const store_t *ks = k + (bh * nk + min(j, nk - 1)) * HEAD_DIM;
    __global const store_t *vs = v + (bh * nk + min(j, nk - 1)) * HEAD_DIM_V;
    for (int d = 0; d < DP; d++) {
      const float x = in && d < HEAD_DIM ? LOAD1(ks, d) : 0.0f;
      kr[jj * DP + d] = x;
      if (d < HEAD_DIM)
        kt[d * BLOCK_N + jj] = x;
    }
    for (int d = 0; d < HEAD_DIM_V; d++)
      vt[d * BLOCK_N + jj] = in ? LOAD1(vs, d) : 0.0f;
  }
}

/* s = x . y^T for BLOCK_M rows of x (xw floats apart, depth used) and the
 * BLOCK_N columns of a transposed block yt (depth x BLOCK_N), one micro-tile
 * of MR rows x KTILE keys at a time with its accumulators in registers. */
void clattn_bwd_scores(const float *x, const int xw, const int depth,
                       __global const float *yt, float (*s)[BLOCK_N]) {
  for (int r0 = 0; r0 < BLOCK_M; r0 += MR) {
    for (int j = 0; j < BLOCK_N; j += KTILE) {
      floatk acc[MR][S_VECS];
#pragma unroll
      for (int r = 0; r < MR; r++)
#pragma unroll
        for (int t = 0; t < S_VECS; t++)
          acc[r][t] = (floatk)(0.0f);
      for (int d = 0; d < depth; d++) {
        floatk kv[S_VECS];
#pragma unroll
        for (int t = 0; t < S_VECS; t++)
          kv[t] = KLOAD(yt + d * BLOCK_N + j + t * KEYS_VEC);
#pragma unroll
        for (int r = 0; r < MR; r++) {
          const floatk xv = (floatk)(x[(r0 + r) * xw + d]);
#pragma unroll
          for (int t = 0; t < S_VECS; t++)
            acc[r][t] = fma(xv, kv[t], acc[r][t]);
        }
      }
#pragma unroll
      for (int r = 0; r < MR; r++)
#pragma unroll
        for (int t = 0; t < S_VECS; t++)
          KSTORE(acc[r][t], &s[r0 + r][j + t * KEYS_VEC]);
    }
  }
}

/* out[jj][c0 .. c0 + nv) += sum_r w[r][jj] * x[r][c0 .. c0 + nv) (vectors;
 * out rows and x rows xw floats apart), JR keys x nv vectors at a time in
 * registers; nv <= T_VECS is a constant once inlined. */
void clattn_bwd_rank_slice(const float *w, const float *x, const int xw,
                           __global float *out, const int c0, const int nv) {
  for (int j = 0; j < BLOCK_N; j += JR) {
    floatv acc[JR][T_VECS];
#pragma unroll
    for (int u = 0; u < JR; u++)
#pragma unroll
      for (int t = 0; t < T_VECS; t++)
        if (t < nv)
          acc[u][t] = VLOAD_PRIV(out + (j + u) * xw + (c0 + t) * VEC);
    for (int r = 0; r < BLOCK_M; r++) {
      floatv xv[T_VECS];
#pragma unroll
      for (int t = 0; t < T_VECS; t++)
        if (t < nv)
          xv[t] = VLOAD_PRIV(x + r * xw + (c0 + t) * VEC);
#pragma unroll
      for (int u = 0; u < JR; u++) {
        const floatv wv = (floatv)(w[r * BLOCK_N + j + u]);
#pragma unroll
        for (int t = 0; t < T_VECS; t++)
          if (t < nv)
            acc[u][t] = fma(wv, xv[t], acc[u][t]);
      }
    }
#pragma unroll
    for (int u = 0; u < JR; u++)
#pragma unroll
      for (int t = 0; t < T_VECS; t++)
        if (t < nv)
          VSTORE_PRIV(acc[u][t], out + (j + u) * xw + (c0 + t) * VEC);
  }
}

/* out (BLOCK_N rows of xw floats) += w^T . x over the nch vectors of a row. */
#define CLATTN_BWD_RANK(w, x, xw, nch, out)                                    \
  do {                                                                         \
    for (int c_ = 0; c_ + T_VECS <= (nch); c_ += T_VECS)                       \
      clattn_bwd_rank_slice((w), (x), (xw), (out), c_, T_VECS);                \
    if ((nch) % T_VECS)                                                        \
      clattn_bwd_rank_slice((w), (x), (xw), (out), (nch) - (nch) % T_VECS,     \
                            (nch) % T_VECS);                                   \
  } while (0)

/* dq[r][c0 .. c0 + nv) += sum_jj w[r][jj] * kr[jj][c0 .. c0 + nv) for the
 * first nrows rows (the rest are not stored), MR rows x nv vectors at a time
 * in registers. */
void clattn_bwd_dq_slice(float (*w)[BLOCK_N], __global const float *kr,
                         __global float *dq, const int nrows, const int c0,
                         const int nv) {
  for (int r0 = 0; r0 < BLOCK_M; r0 += MR) {
    floatv acc[MR][O_VECS];
#pragma unroll
    for (int r = 0; r < MR; r++)
#pragma unroll
      for (int t = 0; t < O_VECS; t++)
        if (t < nv)
          acc[r][t] =
              VLOAD_PRIV(dq + min(r0 + r, nrows - 1) * DP + (c0 + t) * VEC);
    for (int jj = 0; jj < BLOCK_N; jj++) {
      floatv kv[O_VECS];
#pragma unroll
      for (int t = 0; t < O_VECS; t++)
        if (t < nv)
          kv[t] = VLOAD_PRIV(kr + jj * DP + (c0 + t) * VEC);
#pragma unroll
      for (int r = 0; r < MR; r++) {
        const floatv wv = (floatv)(w[r0 + r][jj]);
#pragma unroll
        for (int t = 0; t < O_VECS; t++)
          if (t < nv)
            acc[r][t] = fma(wv, kv[t], acc[r][t]);
      }
    }
#pragma unroll
    for (int r = 0; r < MR; r++)
#pragma unroll
      for (int t = 0; t < O_VECS; t++)
        if (t < nv && r0 + r < nrows)
          VSTORE_PRIV(acc[r][t], dq + (r0 + r) * DP + (c0 + t) * VEC);
  }
}

/* Workspace (floats): packed K transposed at 0, V transposed at vt_off, K
 * rows at kr_off, dK/dV scratch blocks at scr_off (one per work-item), the
 * splits' dQ copies at dq_off ([split][row][DP], rows = B * Hq * Nq). */
CLATTN_KERNEL void
clattn_bwd_cpu(__global const store_t *q, __global const store_t *o,
               __global const store_t *dout, __global const float *lse,
               __global float *ws, __global store_t *dk, __global store_t *dv,
               const int nq, const int nk, const int nkp, const int hq,
               const int hkv, const int splits, const float scale_log2,
               const float scale, const float bias_log2, const ulong vt_off,
               const ulong kr_off, const ulong scr_off, const ulong dq_off,
               CLATTN_PIPE_PARAMS) {
  const int sp = (int)get_global_id(0);
  const size_t bh = get_global_id(1);
  if (sp >= splits)
    return;
  const int group = hq / hkv;
  const size_t rows_all = get_global_size(1) * (size_t)group * nq;
  const size_t head0 = bh * group; /* first query head of the group */
  __global float *dks =
      ws + scr_off + (bh * splits + sp) * (size_t)BLOCK_N * (DP + DVP);
  __global float *dvs = dks + BLOCK_N * DP;
  __global float *dqs = ws + dq_off + (size_t)sp * rows_all * DP;
  /* This work-item's copy of dQ for the group's rows starts at zero. */
  for (size_t e = head0 * nq * DP; e < (head0 + group) * nq * DP; e += VEC)
    VSTORE_PRIV((floatv)(0.0f), dqs + e);
  float xs[BLOCK_M][DP], gs[BLOCK_M][DVP];
  float s[BLOCK_M][BLOCK_N], g[BLOCK_M][BLOCK_N];
#if PIPE_SOFTCAP
  float dm[BLOCK_M][BLOCK_N]; /* d mods / d score */
#endif
  float lse2[BLOCK_M], dl[BLOCK_M];
  const int b = (int)(bh / hkv);
  /* With mods, the scores are scaled (and modified) before the vector loop. */
  const float smul = PIPE_MODS ? 1.0f : scale_log2;
  for (int j0 = sp * BLOCK_N; j0 < nk; j0 += splits * BLOCK_N) {
    for (int e = 0; e < BLOCK_N * (DP + DVP); e += VEC)
      VSTORE_PRIV((floatv)(0.0f), dks + e);
    __global const float *ktb = ws + (bh * nkp + j0) * HEAD_DIM;
    __global const float *vtb = ws + vt_off + (bh * nkp + j0) * HEAD_DIM_V;
    __global const float *krb = ws + kr_off + (bh * nkp + j0) * DP;
    for (int hh = 0; hh < group; hh++) {
      const size_t row0 = (head0 + hh) * nq;
      const clattn_seq sq =
          clattn_seq_make(b, (int)(head0 + hh) % hq, nq, nk, CLATTN_PIPE_ARGS);
      const float bias = clattn_seq_bias(&sq, bias_log2);
      /* Only rows [ibeg, iend) see a key of this block. */
      int ibeg, iend;
      clattn_bwd_rows(&sq, j0, BLOCK_N, &ibeg, &iend);
      for (int i0 = ibeg / BLOCK_M * BLOCK_M; i0 < iend; i0 += BLOCK_M) {
        /* Rows past Lq (nq included) come in as zeros, with DELTA and LSE
         * 0: their Q, dO, O and LSE (padding, NaN maybe) are never read. */
        for (int r = 0; r < BLOCK_M; r++) {
          if (i0 + r >= sq.lq) {
            for (int d = 0; d < DP; d++)
              xs[r][d] = 0.0f;
            for (int d = 0; d < DVP; d++)
              gs[r][d] = 0.0f;
            lse2[r] = dl[r] = 0.0f;
            continue;
          }
          const size_t i = row0 + i0 + r;
          __global const store_t *qi = q + i * HEAD_DIM;
          __global const store_t *gi = dout + i * HEAD_DIM_V;
          for (int d = 0; d < DP; d++)
            xs[r][d] = d < HEAD_DIM ? LOAD1(qi, d) : 0.0f;
          float dsum = 0.0f;
          for (int d = 0; d < DVP; d++) {
            const float gd = d < HEAD_DIM_V ? LOAD1(gi, d) : 0.0f;
            gs[r][d] = gd;
#if !SIGMOID
            if (d < HEAD_DIM_V)
              dsum = fma(gd, LOAD1(o + i * HEAD_DIM_V, d), dsum);
#endif
          }
#if SIGMOID
          (void)o;
          (void)lse;
          lse2[r] = 0.0f;
#else
          lse2[r] = lse[i] * M_LOG2E_F;
#endif
          dl[r] = dsum;
        }
        clattn_bwd_scores(&xs[0][0], DP, HEAD_DIM, ktb, s);
        clattn_bwd_scores(&gs[0][0], DVP, HEAD_DIM_V, vtb, g);
#if PIPE_MODS
        for (int r = 0; r < BLOCK_M; r++)
          for (int jj = 0; jj < BLOCK_N; jj++) {
            const float x = s[r][jj] * scale_log2;
            s[r][jj] = clattn_mods(&sq, x, i0 + r, j0 + jj);
#if PIPE_SOFTCAP
            dm[r][jj] = clattn_mods_grad(&sq, x);
#endif
          }
#endif
        /* P and dS of the block; pairs a row does not see (rows past Lq,
         * keys past Lk included) get 0. */
        for (int r = 0; r < BLOCK_M; r++) {
          const long i = (long)i0 + r;
          const int lo = (int)clamp(clattn_row_first(&sq, i) - j0, -1L,
                                    (long)BLOCK_N);
          const int hi = (int)clamp(clattn_row_last(&sq, i) - j0, -1L,
                                    (long)BLOCK_N);
          for (int j = 0; j < BLOCK_N; j += KEYS_VEC) {
            const floatk sv = KLOAD(&s[r][j]) * smul;
            const floatk dp = KLOAD(&g[r][j]);
#if SIGMOID
            const floatk p = clattn_sigmoid2k(sv, bias);
            floatk ds = p * (1.0f - p) * dp;
#else
            (void)bias;
            const floatk p = clattn_exp2k(sv - lse2[r]);
            floatk ds = p * (dp - dl[r]);
#endif
#if PIPE_SOFTCAP
            ds *= KLOAD(&dm[r][j]);
#endif
            const intk jv = j + KIOTA;
            const intk masked = (jv < lo) | (jv > hi);
            KSTORE(select(p, (floatk)(0.0f), masked), &s[r][j]);
            KSTORE(select(ds, (floatk)(0.0f), masked), &g[r][j]);
          }
#if PIPE_MASK_MOD
          for (int jj = 0; jj < BLOCK_N; jj++)
            if (!clattn_mask_keep(&sq, (int)i, j0 + jj)) {
              s[r][jj] = 0.0f;
              g[r][jj] = 0.0f;
            }
#endif
        }
        CLATTN_BWD_RANK(&s[0][0], &gs[0][0], DVP, DVCH, dvs);
        CLATTN_BWD_RANK(&g[0][0], &xs[0][0], DP, DCH, dks);
        __global float *dqb = dqs + (row0 + i0) * DP;
        const int nrows = min(BLOCK_M, nq - i0);
        for (int c = 0; c + O_VECS <= DCH; c += O_VECS)
          clattn_bwd_dq_slice(g, krb, dqb, nrows, c, O_VECS);
#if DCH % O_VECS
        clattn_bwd_dq_slice(g, krb, dqb, nrows, DCH - DCH % O_VECS,
                            DCH % O_VECS);
#endif
      }
    }
    for (int jj = 0; jj < BLOCK_N && j0 + jj < nk; jj++) {
      const size_t j = bh * nk + j0 + jj;
      for (int d = 0; d < HEAD_DIM; d++)
        STORE1(dks[jj * DP + d] * scale, dk + j * HEAD_DIM, d);
      for (int d = 0; d < HEAD_DIM_V; d++)
        STORE1(dvs[jj * DVP + d], dv + j * HEAD_DIM_V, d);
    }
  }
}

/* dQ of SUM_ROWS rows: scale times the splits' copies summed in order. */
CLATTN_KERNEL void clattn_bwd_dq_sum(__global const float *ws,
                                     __global store_t *dq, const ulong dq_off,
                                     const ulong rows, const int splits,
                                     const float scale) {
  const size_t r0 = get_global_id(0) * SUM_ROWS;
  for (size_t r = r0; r < r0 + SUM_ROWS && r < rows; r++) {
    floatv acc[DCH];
    for (int c = 0; c < DCH; c++)
      acc[c] = VLOAD_PRIV(ws + dq_off + r * DP + c * VEC);
    for (int sp = 1; sp < splits; sp++)
      for (int c = 0; c < DCH; c++)
        acc[c] += VLOAD_PRIV(ws + dq_off + (sp * rows + r) * DP + c * VEC);
    clattn_store_row(dq + r * HEAD_DIM, acc, HEAD_DIM, scale);
  }
}

#endif /* SHAPE */
