/*
 * softmax.cl - softmax attention forward, FlashAttention style: a block of
 * queries stays in registers while K and V stream past it, with an online
 * (running max and sum) softmax, so the Nq x Nk score matrix is never stored.
 *
 * Layout: Q [B, Hq, Nq, D], K [B, Hkv, Nk, D], V [B, Hkv, Nk, Dv],
 * O [B, Hq, Nq, Dv], LSE float [B, Hq, Nq] (natural log).
 * One work-item computes BLOCK_M consecutive query rows of one (batch, head):
 * global size (ceil(Nq / BLOCK_M) rounded up to the work-group, Hq, B).
 * Work-items are independent (no local memory, no barriers).
 *
 * Macros: see common.cl; CAUSAL (0/1) selects bottom-right causal masking.
 */

#ifndef CAUSAL
#define CAUSAL 0
#endif

__kernel void clattn_softmax_fwd(__global const store_t *q,
                                 __global const store_t *k,
                                 __global const store_t *v,
                                 __global store_t *o, __global float *lse,
                                 const int write_lse, const int nq,
                                 const int nk, const int hq, const int hkv,
                                 const float scale_log2) {
  const int i0 = (int)get_global_id(0) * BLOCK_M;
  const int h = (int)get_global_id(1);
  const int b = (int)get_global_id(2);
  if (i0 >= nq)
    return; /* padding of the global size; no barriers follow */
  const int hk = h / (hq / hkv);
  const size_t qrow0 = ((size_t)b * hq + h) * nq;
  k += ((size_t)b * hkv + hk) * nk * HEAD_DIM;
  v += ((size_t)b * hkv + hk) * nk * HEAD_DIM_V;

  /* Scores live in the log2 domain: q is pre-scaled by scale * log2(e). */
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

  /* Key j is visible to query i when j <= i + off. Blocks beyond the last
   * row's limit are skipped; blocks past the first row's limit are masked. */
  const int off = nk - nq;
  const int kend = CAUSAL ? clamp(i0 + BLOCK_M + off, 0, nk) : nk;
  const int kfree = CAUSAL ? clamp(i0 + 1 + off, 0, nk) : nk;
  for (int j0 = 0; j0 < kend; j0 += BLOCK_N) {
    float s[BLOCK_M][BLOCK_N];
    const int mask = j0 + BLOCK_N > kfree;
    clattn_score_block(qr, k, j0, nk, mask, CAUSAL ? i0 + off : nk, s);
    for (int r = 0; r < BLOCK_M; r++) {
      float mx = m[r];
      for (int jj = 0; jj < BLOCK_N; jj++)
        mx = fmax(mx, s[r][jj]);
      /* A row that has seen no visible key keeps max -inf; using 0 as its
       * max keeps exp2 away from -inf - -inf = NaN. */
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
    clattn_pv_block(s, v, j0, nk, acc);
  }

  for (int r = 0; r < BLOCK_M; r++) {
    const int i = i0 + r;
    if (i >= nq)
      break;
    /* A row with no visible key has l = 0: its output is 0, LSE -inf. */
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    clattn_store_row(o + (qrow0 + i) * HEAD_DIM_V, acc[r], HEAD_DIM_V, inv);
    if (write_lse)
      lse[qrow0 + i] =
          l[r] > 0.0f ? (m[r] + log2(l[r])) * M_LN2_F : -INFINITY;
  }
}
