/*
 * sigmoid.cl - sigmoid attention forward (FlashSigmoid): out_i =
 * sum_j sigmoid(s q_i.k_j + b) v_j over visible keys, with no normalisation.
 * It shares the tiles of softmax.cl (flash.cl) but keeps no running max or
 * sum and never rescales the accumulator, which is where its speed comes
 * from.
 *
 * Layout, work split and shapes: as softmax.cl (no LSE). Scores are in the
 * log2 domain: sigmoid(x) = 1 / (1 + 2^(-x log2 e)), with q pre-scaled by
 * scale * log2(e) and the bias given times log2(e). A masked score is -inf:
 * 2^inf = inf and 1 / inf = 0, exactly (the cpu shape writes the zeros
 * after the sigmoid instead).
 */

void clattn_sigmoid_store(__global store_t *o, const size_t qrow0,
                          const int i0, const int nq, floatv (*acc)[DVCH]) {
  for (int r = 0; r < BLOCK_M; r++) {
    const int i = i0 + r;
    if (i >= nq)
      break;
    clattn_store_row(o + (qrow0 + i) * HEAD_DIM_V, acc[r], HEAD_DIM_V, 1.0f);
  }
}

#if SHAPE == 0

CLATTN_KERNEL void
clattn_sigmoid_fwd(__global const store_t *q, __global const store_t *k,
                   __global const store_t *v, __global store_t *o, const int nq,
                   const int nk, const int hq, const int hkv,
                   const float scale_log2, const float bias_log2,
                   CLATTN_PIPE_PARAMS) {
  const int i0 = (int)get_global_id(0) * BLOCK_M;
  const int h = (int)get_global_id(1);
  const int b = (int)get_global_id(2);
  if (i0 >= nq)
    return; /* padding of the global size; no barriers follow */
  const int hk = h / (hq / hkv);
  const size_t qrow0 = ((size_t)b * hq + h) * nq;
  k += ((size_t)b * hkv + hk) * nk * HEAD_DIM;
  v += ((size_t)b * hkv + hk) * nk * HEAD_DIM_V;

  floatv qr[BLOCK_M][DCH];
  floatv acc[BLOCK_M][DVCH];
  for (int r = 0; r < BLOCK_M; r++) {
    const int i = min(i0 + r, nq - 1);
    clattn_load_row(q + (qrow0 + i) * HEAD_DIM, qr[r], HEAD_DIM, scale_log2);
    for (int c = 0; c < DVCH; c++)
      acc[r][c] = (floatv)(0.0f);
  }

  const clattn_seq sq = clattn_seq_make(b, h, nq, nk, CLATTN_PIPE_ARGS);
  const float bias = clattn_seq_bias(&sq, bias_log2);
  const int4 kr = clattn_block_range(&sq, i0, BLOCK_M, BLOCK_N);
  const int kbeg = kr.s0, kend = kr.s1, fbeg = kr.s2, fend = kr.s3;
  for (int j0 = kbeg; j0 < kend; j0 += BLOCK_N) {
    const int bmod = clattn_block_mod(block_mask, &sq, i0, j0, nq, nk, hq);
    if (bmod == 0)
      continue; /* the mask_mod drops the whole block */
    float s[BLOCK_M][BLOCK_N];
    clattn_score_block(qr, k, j0, sq.lk, s);
    clattn_mods_rows(&sq, s, i0, j0);
    for (int r = 0; r < BLOCK_M; r++)
      for (int jj = 0; jj < BLOCK_N; jj++)
        s[r][jj] = 1.0f / (1.0f + exp2(-(s[r][jj] + bias)));
    if (clattn_block_masked(j0, BLOCK_N, fbeg, fend) || bmod == 1)
      clattn_mask_rows(&sq, s, i0, j0, 0.0f, bmod == 1);
    clattn_pv_block(s, v, j0, sq.lk, acc);
  }
  clattn_sigmoid_store(o, qrow0, i0, nq, acc);
}

#elif SHAPE == 1

CLATTN_KERNEL void
clattn_sigmoid_fwd_kt(__global const store_t *q, __global const float *ws,
                      __global store_t *o, const int nq, const int nk,
                      const int nkp, const int hq, const int hkv,
                      const float scale_log2, const float bias_log2,
                      const ulong vp_off, CLATTN_PIPE_PARAMS) {
  const int3 ids = clattn_row_block_ids(nq, hq);
  const int i0 = ids.s0, h = ids.s1, b = ids.s2;
  if (i0 >= nq)
    return; /* padding of the global size; no barriers follow */
  const size_t bhk = (size_t)b * hkv + h / (hq / hkv);
  const size_t qrow0 = ((size_t)b * hq + h) * nq;
  __global const float *kt = ws + bhk * HEAD_DIM * nkp;
  __global const float *vp = ws + vp_off + bhk * nkp * DVP;

  float qs[BLOCK_M][HEAD_DIM];
  clattn_load_q_scalars(q + qrow0 * HEAD_DIM, i0, nq, scale_log2, qs);
  floatv acc[BLOCK_M][DVCH];
  for (int r = 0; r < BLOCK_M; r++)
    for (int c = 0; c < DVCH; c++)
      acc[r][c] = (floatv)(0.0f);

  /* The mask is applied after the sigmoid, as exact zeros: no -inf ever
   * reaches the exponential. */
  const clattn_seq sq = clattn_seq_make(b, h, nq, nk, CLATTN_PIPE_ARGS);
  const float bias = clattn_seq_bias(&sq, bias_log2);
  const int4 kr = clattn_block_range(&sq, i0, BLOCK_M, BLOCK_N);
  const int kbeg = kr.s0, kend = kr.s1, fbeg = kr.s2, fend = kr.s3;
  float s[BLOCK_M][BLOCK_N];
  for (int j0 = kbeg; j0 < kend; j0 += BLOCK_N) {
    const int bmod = clattn_block_mod(block_mask, &sq, i0, j0, nq, nk, hq);
    if (bmod == 0)
      continue; /* the mask_mod drops the whole block */
    clattn_score_block(qs, kt + (size_t)j0 * HEAD_DIM, s);
    clattn_mods_rows(&sq, s, i0, j0);
    for (int r = 0; r < BLOCK_M; r++)
      for (int j = 0; j < BLOCK_N; j += KEYS_VEC)
        KSTORE(clattn_sigmoid2k(KLOAD(&s[r][j]), bias), &s[r][j]);
    if (clattn_block_masked(j0, BLOCK_N, fbeg, fend) || bmod == 1)
      clattn_mask_block(&sq, s, i0, j0, 0.0f, bmod == 1);
    clattn_pv_block(s, vp + (size_t)j0 * DVP, acc);
  }
  clattn_sigmoid_store(o, qrow0, i0, nq, acc);
}

#elif SHAPE == 2

CLATTN_KERNEL void
clattn_sigmoid_fwd_gpu(__global const store_t *q, __global const store_t *k,
                       __global const store_t *v, __global store_t *o,
                       const int nq, const int nk, const int hq, const int hkv,
                       const float scale_log2, const float bias_log2,
                       CLATTN_PIPE_PARAMS) {
  __local float ks[BLOCK_N * DP];
  __local float vs[BLOCK_N * DVP];
  const int g0 = (int)get_group_id(0) * BLOCK_M;
  const int i = g0 + (int)get_local_id(0);
  const int h = (int)get_global_id(1);
  const int b = (int)get_global_id(2);
  const int hk = h / (hq / hkv);
  const size_t qrow0 = ((size_t)b * hq + h) * nq;
  k += ((size_t)b * hkv + hk) * nk * HEAD_DIM;
  v += ((size_t)b * hkv + hk) * nk * HEAD_DIM_V;

  floatv qr[DCH];
  clattn_load_row(q + (qrow0 + min(i, nq - 1)) * HEAD_DIM, qr, HEAD_DIM,
                  scale_log2);
  floatv acc[DVCH];
  for (int c = 0; c < DVCH; c++)
    acc[c] = (floatv)(0.0f);

  /* Uniform loop bounds for the barriers; each row masks its own keys. */
  const clattn_seq sq = clattn_seq_make(b, h, nq, nk, CLATTN_PIPE_ARGS);
  const float bias = clattn_seq_bias(&sq, bias_log2);
  const int4 kr = clattn_block_range(&sq, g0, BLOCK_M, BLOCK_N);
  const int kbeg = kr.s0, kend = kr.s1;
  for (int j0 = kbeg; j0 < kend; j0 += BLOCK_N) {
    /* The same for the whole group: its rows are one block. */
    const int bmod = clattn_block_mod(block_mask, &sq, g0, j0, nq, nk, hq);
    if (bmod == 0)
      continue;
    barrier(CLK_LOCAL_MEM_FENCE);
    clattn_load_kv_tile(k, v, j0, sq.lk, ks, vs);
    barrier(CLK_LOCAL_MEM_FENCE);
    float s[BLOCK_N];
    clattn_score_tile(&sq, qr, ks, i, j0, -INFINITY, bmod == 1, s);
    for (int jj = 0; jj < BLOCK_N; jj++)
      s[jj] = 1.0f / (1.0f + exp2(-(s[jj] + bias)));
    clattn_pv_tile(s, vs, acc);
  }
  if (i < nq)
    clattn_store_row(o + (qrow0 + i) * HEAD_DIM_V, acc, HEAD_DIM_V, 1.0f);
}

#endif /* SHAPE */
