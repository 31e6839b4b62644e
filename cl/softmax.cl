/*
 * softmax.cl - softmax attention forward, FlashAttention style: a block of
 * queries stays in registers while K and V stream past it, with an online
 * (running max and sum) softmax, so the Nq x Nk score matrix is never stored.
 *
 * Layout: Q [B, Hq, Nq, D], K [B, Hkv, Nk, D], V [B, Hkv, Nk, Dv],
 * O [B, Hq, Nq, Dv], LSE float [B, Hq, Nq] (natural log).
 * One work-item computes BLOCK_M consecutive query rows of one (batch, head):
 * global size (ceil(Nq / BLOCK_M) rounded up to the work-group, Hq, B).
 * In the row and cpu shapes work-items are independent (no local memory, no
 * barriers); in the gpu shape a work-group shares K/V tiles in local memory
 * (see flash.cl). Each shape is its own kernel; SHAPE picks one.
 *
 * Scores live in the log2 domain: q is pre-scaled by scale * log2(e), so the
 * exponentials are exp2. A row that has seen no visible key keeps max -inf;
 * it uses 0 as its max so that exp2 never sees -inf - -inf = NaN, and ends
 * with l = 0, which gives output 0 and LSE -inf.
 */

/* Writes the normalised rows and their LSE. */
void clattn_softmax_store(__global store_t *o, __global float *lse,
                          const int write_lse, const size_t qrow0,
                          const int i0, const int nq, floatv (*acc)[DVCH],
                          const float *m, const float *l) {
  for (int r = 0; r < BLOCK_M; r++) {
    const int i = i0 + r;
    if (i >= nq)
      break;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    clattn_store_row(o + (qrow0 + i) * HEAD_DIM_V, acc[r], HEAD_DIM_V, inv);
    if (write_lse)
      lse[qrow0 + i] = l[r] > 0.0f ? (m[r] + log2(l[r])) * M_LN2_F : -INFINITY;
  }
}

#ifndef RESCALE_SLACK
#define RESCALE_SLACK 8.0f // cpu shape: log2 headroom before a rescale
#endif

#if SHAPE == 0

CLATTN_KERNEL void
clattn_softmax_fwd(__global const store_t *q, __global const store_t *k,
                   __global const store_t *v, __global store_t *o,
                   __global float *lse, const int write_lse, const int nq,
                   const int nk, const int hq, const int hkv,
                   const float scale_log2, CLATTN_PIPE_PARAMS) {
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
  float m[BLOCK_M], l[BLOCK_M];
  for (int r = 0; r < BLOCK_M; r++) {
    const int i = min(i0 + r, nq - 1);
    clattn_load_row(q + (qrow0 + i) * HEAD_DIM, qr[r], HEAD_DIM, scale_log2);
    for (int c = 0; c < DVCH; c++)
      acc[r][c] = (floatv)(0.0f);
    m[r] = -INFINITY;
    l[r] = 0.0f;
  }

  const clattn_seq sq = clattn_seq_make(b, h, nq, nk, CLATTN_PIPE_ARGS);
  const int4 kr = clattn_block_range(&sq, i0, BLOCK_M, BLOCK_N);
  const int kbeg = kr.s0, kend = kr.s1, fbeg = kr.s2, fend = kr.s3;
  for (int j0 = kbeg; j0 < kend; j0 += BLOCK_N) {
    const int bmod = clattn_block_mod(block_mask, &sq, i0, j0, nq, nk, hq);
    if (bmod == 0)
      continue; /* the mask_mod drops the whole block */
    float s[BLOCK_M][BLOCK_N];
    clattn_score_block(qr, k, j0, sq.lk, s);
    clattn_mods_rows(&sq, s, i0, j0);
    if (clattn_block_masked(j0, BLOCK_N, fbeg, fend) || bmod == 1)
      clattn_mask_rows(&sq, s, i0, j0, -INFINITY, bmod == 1);
    for (int r = 0; r < BLOCK_M; r++) {
      float mx = m[r];
      for (int jj = 0; jj < BLOCK_N; jj++)
        mx = fmax(mx, s[r][jj]);
      const float mu = mx == -INFINITY ? 0.0f : mx;
      const float alpha = exp2(m[r] - mu);
      float rs = 0.0f;
      for (int jj = 0; jj < BLOCK_N; jj++) {
        const float p = exp2(s[r][jj] - mu);
        s[r][jj] = p;
        rs += p;
      }
      l[r] = l[r] * alpha + rs;
      m[r] = mx;
      for (int c = 0; c < DVCH; c++)
        acc[r][c] *= alpha;
    }
    clattn_pv_block(s, v, j0, sq.lk, acc);
  }
  clattn_softmax_store(o, lse, write_lse, qrow0, i0, nq, acc, m, l);
}

#elif SHAPE == 1

CLATTN_KERNEL void clattn_softmax_fwd_kt(
    __global const store_t *q, __global const float *ws, __global store_t *o,
    __global float *lse, const int write_lse, const int nq, const int nk,
    const int nkp, const int hq, const int hkv, const float scale_log2,
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
  floatv acc[BLOCK_M][DVCH]; /* in L1; the micro-kernels hold slices */
  float m[BLOCK_M];
  floatk lv[BLOCK_M]; /* row sums, one lane per key of a vector */
  for (int r = 0; r < BLOCK_M; r++) {
    for (int c = 0; c < DVCH; c++)
      acc[r][c] = (floatv)(0.0f);
    m[r] = -INFINITY;
    lv[r] = (floatk)(0.0f);
  }

  /* Conditional rescaling: a row's max m is raised (and acc and the sums
   * rescaled) only when a block holds a score more than RESCALE_SLACK above
   * it, which after the first blocks is rare. Weights are then exp2(s - m)
   * <= 2^RESCALE_SLACK, far from overflow in float. */
  const clattn_seq sq = clattn_seq_make(b, h, nq, nk, CLATTN_PIPE_ARGS);
  const int4 kr = clattn_block_range(&sq, i0, BLOCK_M, BLOCK_N);
  const int kbeg = kr.s0, kend = kr.s1, fbeg = kr.s2, fend = kr.s3;
  float s[BLOCK_M][BLOCK_N];
  for (int j0 = kbeg; j0 < kend; j0 += BLOCK_N) {
    const int bmod = clattn_block_mod(block_mask, &sq, i0, j0, nq, nk, hq);
    if (bmod == 0)
      continue; /* the mask_mod drops the whole block */
    clattn_score_block(qs, kt + (size_t)j0 * HEAD_DIM, s);
    clattn_mods_rows(&sq, s, i0, j0);
    if (clattn_block_masked(j0, BLOCK_N, fbeg, fend) || bmod == 1)
      clattn_mask_block(&sq, s, i0, j0, -INFINITY, bmod == 1);
    for (int r = 0; r < BLOCK_M; r++) {
      floatk mv = KLOAD(&s[r][0]);
      for (int j = KEYS_VEC; j < BLOCK_N; j += KEYS_VEC)
        mv = fmax(mv, KLOAD(&s[r][j]));
      const float bmax = KMAX(mv);
      if (bmax > m[r] + RESCALE_SLACK) {
        const float mx = fmax(m[r], bmax);
        const float alpha = exp2(m[r] - mx); /* 0 while m is -inf */
        lv[r] *= alpha;
        for (int c = 0; c < DVCH; c++)
          acc[r][c] *= alpha;
        m[r] = mx;
      }
      const float mu = m[r] == -INFINITY ? 0.0f : m[r];
      floatk sum = lv[r];
      for (int j = 0; j < BLOCK_N; j += KEYS_VEC) {
        const floatk p = clattn_exp2k(KLOAD(&s[r][j]) - mu);
        KSTORE(p, &s[r][j]);
        sum += p;
      }
      lv[r] = sum;
    }
    clattn_pv_block(s, vp + (size_t)j0 * DVP, acc);
  }
  float l[BLOCK_M];
  for (int r = 0; r < BLOCK_M; r++)
    l[r] = KSUM(lv[r]);
  clattn_softmax_store(o, lse, write_lse, qrow0, i0, nq, acc, m, l);
}

#elif SHAPE == 2

CLATTN_KERNEL void
clattn_softmax_fwd_gpu(__global const store_t *q, __global const store_t *k,
                       __global const store_t *v, __global store_t *o,
                       __global float *lse, const int write_lse, const int nq,
                       const int nk, const int hq, const int hkv,
                       const float scale_log2, CLATTN_PIPE_PARAMS) {
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

  /* Rows past nq compute on row nq - 1 and store nothing: every work-item
   * must reach the barriers. */
  floatv qr[DCH];
  clattn_load_row(q + (qrow0 + min(i, nq - 1)) * HEAD_DIM, qr, HEAD_DIM,
                  scale_log2);
  floatv acc[DVCH];
  for (int c = 0; c < DVCH; c++)
    acc[c] = (floatv)(0.0f);
  float m = -INFINITY, l = 0.0f;

  /* The key range is the group's, the same for every work-item, so the
   * loop and its barriers are in uniform control flow; each row masks what
   * it does not see. */
  const clattn_seq sq = clattn_seq_make(b, h, nq, nk, CLATTN_PIPE_ARGS);
  const int4 kr = clattn_block_range(&sq, g0, BLOCK_M, BLOCK_N);
  const int kbeg = kr.s0, kend = kr.s1;
  for (int j0 = kbeg; j0 < kend; j0 += BLOCK_N) {
    /* The same for the whole group: its rows are one block. */
    const int bmod = clattn_block_mod(block_mask, &sq, g0, j0, nq, nk, hq);
    if (bmod == 0)
      continue;
    barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed */
    clattn_load_kv_tile(k, v, j0, sq.lk, ks, vs);
    barrier(CLK_LOCAL_MEM_FENCE);
    float s[BLOCK_N];
    clattn_score_tile(&sq, qr, ks, i, j0, -INFINITY, bmod == 1, s);
    float mx = m;
    for (int jj = 0; jj < BLOCK_N; jj++)
      mx = fmax(mx, s[jj]);
    const float mu = mx == -INFINITY ? 0.0f : mx;
    const float alpha = exp2(m - mu);
    float rs = 0.0f;
    for (int jj = 0; jj < BLOCK_N; jj++) {
      s[jj] = exp2(s[jj] - mu);
      rs += s[jj];
    }
    l = l * alpha + rs;
    m = mx;
    for (int c = 0; c < DVCH; c++)
      acc[c] *= alpha;
    clattn_pv_tile(s, vs, acc);
  }
  if (i < nq) {
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    clattn_store_row(o + (qrow0 + i) * HEAD_DIM_V, acc, HEAD_DIM_V, inv);
    if (write_lse)
      lse[qrow0 + i] = l > 0.0f ? (m + log2(l)) * M_LN2_F : -INFINITY;
  }
}

#endif /* SHAPE */
