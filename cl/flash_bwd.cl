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
 * Masking is bottom-right causal: key j is visible to row i when
 * j <= i + Nk - Nq (computed in long: the difference can pass INT_MAX).
 */

#ifndef SIGMOID
#define SIGMOID 0
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif
#ifndef BLOCK_N
#define BLOCK_N 4 // keys per work-item in clattn_bwd_dkdv
#endif
#ifndef BLOCK_M
#define BLOCK_M 4 // query rows per work-item in clattn_bwd_dq
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

__kernel void clattn_bwd_delta(__global const store_t *o,
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

__kernel void clattn_bwd_dkdv(
    __global const store_t *q, __global const store_t *k,
    __global const store_t *v, __global const store_t *dout,
    __global const float *lse, __global const float *delta,
    __global store_t *dk, __global store_t *dv, const int nq, const int nk,
    const int hq, const int hkv, const float scale_log2, const float scale,
    const float bias_log2) {
  const int j0 = (int)get_global_id(0) * BLOCK_N;
  const int hk = (int)get_global_id(1);
  const int b = (int)get_global_id(2);
  if (j0 >= nk)
    return;
  const size_t kv0 = ((size_t)b * hkv + hk) * nk;
  floatv kr[BLOCK_N][DCH], vr[BLOCK_N][DVCH];
  floatv dkr[BLOCK_N][DCH], dvr[BLOCK_N][DVCH];
  for (int jj = 0; jj < BLOCK_N; jj++) {
    const size_t j = kv0 + min(j0 + jj, nk - 1);
    clattn_load_row(k + j * HEAD_DIM, kr[jj], HEAD_DIM, 1.0f);
    clattn_load_row(v + j * HEAD_DIM_V, vr[jj], HEAD_DIM_V, 1.0f);
    for (int c = 0; c < DCH; c++)
      dkr[jj][c] = (floatv)(0.0f);
    for (int c = 0; c < DVCH; c++)
      dvr[jj][c] = (floatv)(0.0f);
  }
  /* Rows before i0 see none of this block's keys. */
  const long off = (long)nk - (long)nq;
  const int i0 = CAUSAL ? (int)clamp((long)j0 - off, 0L, (long)nq) : 0;
  const int group = hq / hkv;
  for (int hh = 0; hh < group; hh++) {
    const size_t row0 = ((size_t)b * hq + (size_t)hk * group + hh) * nq;
    for (int i = i0; i < nq; i++) {
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
      const long last = CAUSAL ? (long)i + off : (long)nk - 1;
      for (int jj = 0; jj < BLOCK_N; jj++) {
        const int j = j0 + jj;
        if (j >= nk || (long)j > last)
          continue;
        const float p =
            clattn_bwd_weight(clattn_bwd_dot(qr, kr[jj], DCH) * scale_log2,
                              lse2, bias_log2);
        const float ds = clattn_bwd_ds(p, clattn_bwd_dot(gr, vr[jj], DVCH), dl);
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

__kernel void clattn_bwd_dq(__global const store_t *q,
                            __global const store_t *k,
                            __global const store_t *v,
                            __global const store_t *dout,
                            __global const float *lse,
                            __global const float *delta, __global store_t *dq,
                            const int nq, const int nk, const int hq,
                            const int hkv, const float scale_log2,
                            const float scale, const float bias_log2) {
  const int i0 = (int)get_global_id(0) * BLOCK_M;
  const int h = (int)get_global_id(1);
  const int b = (int)get_global_id(2);
  if (i0 >= nq)
    return;
  const size_t row0 = ((size_t)b * hq + h) * nq;
  const size_t kv0 = ((size_t)b * hkv + h / (hq / hkv)) * nk;
  floatv qr[BLOCK_M][DCH], gr[BLOCK_M][DVCH], acc[BLOCK_M][DCH];
  float lse2[BLOCK_M], dl[BLOCK_M];
  for (int r = 0; r < BLOCK_M; r++) {
    const size_t i = row0 + min(i0 + r, nq - 1);
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
    for (int c = 0; c < DCH; c++)
      acc[r][c] = (floatv)(0.0f);
  }
  const long off = (long)nk - (long)nq;
  /* Keys past the last row's limit are visible to no row of the block. */
  const int kend =
      CAUSAL ? (int)clamp((long)i0 + BLOCK_M - 1 + off + 1, 0L, (long)nk) : nk;
  for (int j = 0; j < kend; j++) {
    floatv kr[DCH], vr[DVCH];
    clattn_load_row(k + (kv0 + j) * HEAD_DIM, kr, HEAD_DIM, 1.0f);
    clattn_load_row(v + (kv0 + j) * HEAD_DIM_V, vr, HEAD_DIM_V, 1.0f);
    for (int r = 0; r < BLOCK_M; r++) {
      if (i0 + r >= nq)
        continue;
#if CAUSAL
      if ((long)j > (long)(i0 + r) + off)
        continue;
#endif
      const float p = clattn_bwd_weight(
          clattn_bwd_dot(qr[r], kr, DCH) * scale_log2, lse2[r], bias_log2);
      const float ds =
          clattn_bwd_ds(p, clattn_bwd_dot(gr[r], vr, DVCH), dl[r]);
      for (int c = 0; c < DCH; c++)
        acc[r][c] = fma((floatv)(ds), kr[c], acc[r][c]);
    }
  }
  for (int r = 0; r < BLOCK_M && i0 + r < nq; r++)
    clattn_store_row(dq + (row0 + i0 + r) * HEAD_DIM, acc[r], HEAD_DIM, scale);
}
