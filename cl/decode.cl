/*
 * decode.cl - softmax and sigmoid attention for few queries against many
 * keys (decode): the keys are split into ranges (split-KV) so that every
 * core streams its own part of K and V even when B x Hq is 1, and a merge
 * kernel combines the partial results.
 *
 * Layout: Q [B, Hq, Nq, D], K [B, Hkv, Nk, D], V [B, Hkv, Nk, Dv],
 * O [B, Hq, Nq, Dv], LSE float [B, Hq, Nq] (natural log). The G = Hq / Hkv
 * query heads of a kv head are consecutive in Q, so their G x Nq query rows
 * are consecutive too: a "row group" of a kv head is ROWS of those rows, and
 * it streams its key range of K and V once for all of them (GQA costs no
 * extra reads when G x Nq <= ROWS).
 *
 * Split s covers keys [s * KPS, min(Nk, (s + 1) * KPS)), KPS a multiple of
 * BLOCK_N, of which a row group visits only those some row of it sees
 * (score.cl: per-sequence lengths, the window, causal as a window), so
 * with short sequences or windows most splits visit few keys or none; a
 * split that visits none writes a zero partial with LSE -inf. With one
 * split the kernel writes O (and LSE) itself; with more, it writes float
 * partials into the plan's workspace,
 *   PO [S, B*Hq*Nq, Dv] (normalised over the split's keys for softmax, the
 *   plain sum for sigmoid) and PL [S, B*Hq*Nq] (softmax: the split's LSE in
 *   log2 units, -inf when it saw no visible key),
 * and clattn_decode_merge combines them: softmax by the LSE weights of
 * merge.cl, sigmoid by a plain sum (sigmoid has no normaliser).
 *
 * Two kernels, one per device kind (the host picks by WG):
 *   clattn_decode_split (WG = 1): one work-item per (split, row group,
 *     batch x kv head). Query rows in registers as vectors along D; a block
 *     of BLOCK_N keys is scored (one dot product per row and key), turned
 *     into weights with BLOCK_N-wide vector arithmetic and added into
 *     accumulators held as vectors along Dv. No local memory: what a CPU
 *     runtime vectorises well.
 *   clattn_decode_split_wg (WG > 1): one work-group per (split, row group,
 *     batch x kv head). The rows' queries sit in local memory; per block of
 *     BLOCK_N keys each work-item scores keys into a local tile, one
 *     work-item per row updates that row's running max and sum, and each
 *     work-item accumulates its own columns of Dv (reads of V coalesce).
 *
 * Scores are in the log2 domain (q pre-scaled by scale * log2(e); the
 * sigmoid bias given times log2(e)), as in softmax.cl and sigmoid.cl, and
 * pass through the score pipeline of score.cl (compiled before this file):
 * the mods on every block, the masks on blocks that can hold a masked key.
 * Lengths, window and slopes are the trailing CLATTN_PIPE_PARAMS.
 *
 * Macros (defaults here; the host sets them):
 *   SIGMOID   0 softmax, 1 sigmoid.
 *   ROWS      query rows per work-item (WG = 1) or work-group (WG > 1).
 *   BLOCK_N   keys per step: 4, 8 or 16 when WG = 1, any when WG > 1.
 *   WG        work-items per work-group.
 */

#ifndef SIGMOID
#define SIGMOID 0 // 0 softmax, 1 sigmoid
#endif
#ifndef ROWS
#define ROWS 4 // query rows per work-item (WG = 1) or work-group
#endif
#ifndef BLOCK_N
#define BLOCK_N 16 // keys per step
#endif
#ifndef WG
#define WG 1 // work-items per work-group
#endif
#ifndef RESCALE_SLACK
#define RESCALE_SLACK 8.0f // log2 headroom before a running max is raised
#endif

/* Query head and position of row r of row group rg of kv head hk (G = g
 * query heads of nq rows each); rows past nrows repeat the last one. */
void clattn_decode_row(const int rg, const int r, const int nrows,
                       const int nq, const int hk, const int g, int *h,
                       int *i) {
  const int rr = min(rg * ROWS + r, nrows - 1);
  *h = hk * g + rr / nq;
  *i = rr % nq;
}

/* The sequence's pipeline as query head h sees it (the ALiBi slope and the
 * mods depend on the head). */
clattn_seq clattn_decode_head(clattn_seq s, const int h,
                              __global const float *alibi) {
  s.h = h;
#if PIPE_ALIBI
  s.slope = alibi[h];
#else
  (void)alibi;
#endif
  return s;
}

/*
 * The key ranges of a row group within split [js, je): row r (position
 * pos[r]) sees keys lo[r] .. hi[r] by the window and the lengths (hi < lo:
 * none); the group visits [*kbeg, *kend), the union of its rows' ranges
 * clipped to the split (empty when *kbeg >= *kend); every row that sees a
 * key sees every key of [*fbeg, *fend), so a block inside it needs no mask
 * (a mask_mod makes every block masked).
 */
void clattn_decode_bounds(const clattn_seq *sq, const int *pos, const int js,
                          const int je, int *lo, int *hi, int *kbeg,
                          int *kend, int *fbeg, int *fend) {
  int ulo = INT_MAX, uhi = -1, ilo = 0, ihi = INT_MAX;
  for (int r = 0; r < ROWS; r++) {
    lo[r] = (int)clattn_row_first(sq, pos[r]);
    hi[r] = (int)clattn_row_last(sq, pos[r]);
    if (hi[r] >= lo[r]) {
      ulo = min(ulo, lo[r]);
      uhi = max(uhi, hi[r]);
      ilo = max(ilo, lo[r]);
      ihi = min(ihi, hi[r]);
    }
  }
  *kbeg = max(js, ulo);
  *kend = min(je, uhi + 1);
  *fbeg = *fend = 0;
  if (!PIPE_MASK_MOD && uhi >= 0 && ilo <= ihi) {
    *fbeg = ilo;
    *fend = min(ihi + 1, *kend);
  }
}

/*
 * The masks of the score pipeline on score x of query position i (head and
 * sequence in s, key range lo .. hi) against key j, for keys below kend:
 * x, or -INFINITY when the key is masked. A masked key gets no weight in
 * softmax and exactly 0 in sigmoid. The kernels apply the mods (softcap,
 * ALiBi, score_mod: clattn_mods) to every score first, and call this only
 * on blocks that can hold a masked key (clattn_block_masked).
 */
float clattn_decode_score(const clattn_seq *s, const float x, const int i,
                          const int j, const int lo, const int hi,
                          const int kend) {
  return j < kend && j >= lo && j <= hi && clattn_mask_keep(s, i, j)
             ? x
             : -INFINITY;
}

/* Elements [c * VEC, c * VEC + VEC) of a row of n (HEAD_DIM or
 * HEAD_DIM_V), zero-padded past its end (c and n are constants once loops
 * are unrolled, so the test folds). */
floatv clattn_decode_chunk(__global const store_t *row, const int c,
                           const int n) {
  if ((c + 1) * VEC <= n)
    return VLOAD(row + c * VEC);
  float tmp[VEC];
  for (int t = 0; t < VEC; t++)
    tmp[t] = c * VEC + t < n ? LOAD1(row, c * VEC + t) : 0.0f;
  return VLOAD_PRIV(tmp);
}

/* Stores the first HEAD_DIM_V floats of a row of vectors times mul. */
void clattn_decode_store_f(__global float *p, const floatv *src,
                                  const float mul) {
  for (int c = 0; c < DVCH; c++) {
    if ((c + 1) * VEC <= HEAD_DIM_V) {
      VSTORE_PRIV(src[c] * mul, p + c * VEC);
    } else {
      float tmp[VEC];
      VSTORE_PRIV(src[c] * mul, tmp);
      for (int t = 0; c * VEC + t < HEAD_DIM_V; t++)
        p[c * VEC + t] = tmp[t];
    }
  }
}

/* Writes one finished row: O and LSE directly (one split), or the split's
 * partial. m is the running max (log2), l the sum of weights. */
void clattn_decode_finish(__global store_t *o, __global float *lse,
                                 __global float *po, __global float *pl,
                                 const int write_lse, const int direct,
                                 const ulong row, const ulong prow,
                                 const floatv *acc, const float m,
                                 const float l) {
#if SIGMOID
  (void)lse;
  (void)pl;
  (void)write_lse;
  (void)m;
  (void)l;
  if (direct)
    clattn_store_row(o + row * HEAD_DIM_V, acc, HEAD_DIM_V, 1.0f);
  else
    clattn_decode_store_f(po + prow * HEAD_DIM_V, acc, 1.0f);
#else
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  const float lse2 = l > 0.0f ? m + log2(l) : -INFINITY;
  if (direct) {
    clattn_store_row(o + row * HEAD_DIM_V, acc, HEAD_DIM_V, inv);
    if (write_lse)
      lse[row] = lse2 * M_LN2_F;
  } else {
    clattn_decode_store_f(po + prow * HEAD_DIM_V, acc, inv);
    pl[prow] = lse2;
  }
#endif
}

#if WG == 1

#if BLOCK_N == 16
typedef float16 floatb;
#define BLOAD_PRIV(p) vload16(0, (p))
#define BSTORE_PRIV(x, p) vstore16((x), 0, (p))
/* No function takes a float16: that changes the calling convention where
 * vectors are narrower, and compilers warn about it. */
#define BSUM(x) clattn_hsum8((x).lo + (x).hi)
#define BMAX(x) clattn_decode_hmax8(fmax((x).lo, (x).hi))
#elif BLOCK_N == 8
typedef float8 floatb;
#define BLOAD_PRIV(p) vload8(0, (p))
#define BSTORE_PRIV(x, p) vstore8((x), 0, (p))
#define BSUM(x) clattn_hsum8(x)
#define BMAX(x) clattn_decode_hmax8(x)
#elif BLOCK_N == 4
typedef float4 floatb;
#define BLOAD_PRIV(p) vload4(0, (p))
#define BSTORE_PRIV(x, p) vstore4((x), 0, (p))
#define BSUM(x) clattn_hsum4(x)
#define BMAX(x) clattn_decode_hmax4(x)
#else
#error BLOCK_N must be 4, 8 or 16 when WG is 1
#endif

float clattn_decode_hmax2(float2 x) { return fmax(x.x, x.y); }
float clattn_decode_hmax4(float4 x) {
  return clattn_decode_hmax2(fmax(x.lo, x.hi));
}
float clattn_decode_hmax8(float8 x) {
  return clattn_decode_hmax4(fmax(x.lo, x.hi));
}

/* Global size (S, row groups, B * Hkv); work-groups of one. */
CLATTN_KERNEL void
clattn_decode_split(__global const store_t *q, __global const store_t *k,
                    __global const store_t *v, __global store_t *o,
                    __global float *lse, __global float *part,
                    const ulong lse_off, const int write_lse, const int direct,
                    const int nq, const int nk, const int hq, const int hkv,
                    const int kps, const float scale_log2,
                    const float bias_log2, CLATTN_PIPE_PARAMS) {
  __global float *po = part;
  __global float *pl = direct ? part : part + lse_off;
  const int s = (int)get_global_id(0);
  const int rg = (int)get_global_id(1);
  const int bh = (int)get_global_id(2);
  const int g = hq / hkv;
  const int nrows = g * nq; /* query rows of this kv head */
  const int b = bh / hkv, hk = bh % hkv;
  const ulong row0 = ((ulong)b * hq + (ulong)hk * g) * nq;
  const ulong all_rows = (ulong)get_global_size(2) / hkv * hq * nq;
  k += (ulong)bh * nk * HEAD_DIM;
  v += (ulong)bh * nk * HEAD_DIM_V;

  /* Rows past nrows repeat the last one and store nothing. */
  const clattn_seq sq = clattn_seq_make(b, hk * g, nq, nk, CLATTN_PIPE_ARGS);
#if SIGMOID
  const float bias = clattn_seq_bias(&sq, bias_log2);
#else
  (void)bias_log2;
#endif
  floatv qr[ROWS][DCH];
  int pos[ROWS], hr[ROWS];
  for (int r = 0; r < ROWS; r++) {
    clattn_decode_row(rg, r, nrows, nq, hk, g, &hr[r], &pos[r]);
    const ulong qrow = (ulong)b * hq * nq + (ulong)hr[r] * nq + pos[r];
    /* Padding rows (past Lq) are never read. */
    if (pos[r] < sq.lq) {
      clattn_load_row(q + qrow * HEAD_DIM, qr[r], HEAD_DIM, scale_log2);
    } else {
      for (int c = 0; c < DCH; c++)
        qr[r][c] = (floatv)(0.0f);
    }
  }
  /* The split's keys, clipped to those some row here sees; blocks reaching
   * outside [fbeg, fend) may hold a masked key. */
  int lo[ROWS], hi[ROWS], kbeg, kend, fbeg, fend;
  const int js = (int)min((long)s * kps, (long)nk);
  const int je = (int)min((long)js + kps, (long)nk);
  clattn_decode_bounds(&sq, pos, js, je, lo, hi, &kbeg, &kend, &fbeg, &fend);

  floatv acc[ROWS][DVCH];
  float m[ROWS];
  floatb lv[ROWS]; /* sums of weights, one lane per key of a block */
  for (int r = 0; r < ROWS; r++) {
    for (int c = 0; c < DVCH; c++)
      acc[r][c] = (floatv)(0.0f);
    m[r] = -INFINITY;
    lv[r] = (floatb)(0.0f);
  }

  for (int j0 = kbeg; j0 < kend; j0 += BLOCK_N) {
    /* Scores; keys past kend are read from row kend - 1 (in the buffer)
     * and masked below. */
    float sc[ROWS][BLOCK_N];
    for (int jj = 0; jj < BLOCK_N; jj++) {
      __global const store_t *kr = k + (ulong)min(j0 + jj, kend - 1) * HEAD_DIM;
      floatv d[ROWS];
#pragma unroll
      for (int r = 0; r < ROWS; r++)
        d[r] = (floatv)(0.0f);
      for (int c = 0; c < DCH; c++) {
        const floatv kc = clattn_decode_chunk(kr, c, HEAD_DIM);
#pragma unroll
        for (int r = 0; r < ROWS; r++)
          d[r] = fma(qr[r][c], kc, d[r]);
      }
#pragma unroll
      for (int r = 0; r < ROWS; r++)
        sc[r][jj] = HSUM(d[r]);
    }
#if PIPE_MODS
    for (int r = 0; r < ROWS; r++) {
      const clattn_seq sr = clattn_decode_head(sq, hr[r], alibi);
      for (int jj = 0; jj < BLOCK_N; jj++)
        sc[r][jj] = clattn_mods(&sr, sc[r][jj], pos[r], j0 + jj);
    }
#endif
    if (clattn_block_masked(j0, BLOCK_N, fbeg, fend)) {
      for (int r = 0; r < ROWS; r++) {
        const clattn_seq sr = clattn_decode_head(sq, hr[r], alibi);
        for (int jj = 0; jj < BLOCK_N; jj++)
          sc[r][jj] = clattn_decode_score(&sr, sc[r][jj], pos[r], j0 + jj,
                                          lo[r], hi[r], kend);
      }
    }
    /* Weights, BLOCK_N keys at a time. */
    for (int r = 0; r < ROWS; r++) {
      floatb sv = BLOAD_PRIV(sc[r]);
#if SIGMOID
      sv = 1.0f / (1.0f + exp2(-(sv + bias)));
#else
      /* Conditional rescaling, as in softmax.cl: the running max is raised
       * only when a score passes it by more than RESCALE_SLACK, so weights
       * stay below 2^RESCALE_SLACK and most blocks skip the rescale. */
      if (any(sv > (floatb)(m[r] + RESCALE_SLACK))) {
        const float mx = fmax(m[r], BMAX(sv));
        const float alpha = exp2(m[r] - mx); /* 0 while m is -inf */
        lv[r] *= alpha;
        for (int c = 0; c < DVCH; c++)
          acc[r][c] *= alpha;
        m[r] = mx;
      }
      sv = exp2(sv - (m[r] == -INFINITY ? 0.0f : m[r]));
      lv[r] += sv;
#endif
      BSTORE_PRIV(sv, sc[r]);
    }
    /* acc += P V, one vector of Dv at a time so that only ROWS
     * accumulators are live. */
    for (int c = 0; c < DVCH; c++) {
      for (int jj = 0; jj < BLOCK_N; jj++) {
        const floatv vc = clattn_decode_chunk(
            v + (ulong)min(j0 + jj, kend - 1) * HEAD_DIM_V, c, HEAD_DIM_V);
#pragma unroll
        for (int r = 0; r < ROWS; r++)
          acc[r][c] = fma((floatv)(sc[r][jj]), vc, acc[r][c]);
      }
    }
  }

  for (int r = 0; r < ROWS; r++) {
    const int rr = rg * ROWS + r;
    if (rr >= nrows)
      break;
    /* A row that sees no key was not masked in blocks every other row
     * sees whole: it gives exactly 0 (and LSE -inf). */
    if (hi[r] < lo[r]) {
      for (int c = 0; c < DVCH; c++)
        acc[r][c] = (floatv)(0.0f);
      m[r] = -INFINITY;
      lv[r] = (floatb)(0.0f);
    }
    clattn_decode_finish(o, lse, po, pl, write_lse, direct, row0 + rr,
                         (ulong)s * all_rows + row0 + rr, acc[r], m[r],
                         BSUM(lv[r]));
  }
}

#else /* WG > 1 */

#define DP (DCH * VEC)
#define CPW ((HEAD_DIM_V + WG - 1) / WG) /* Dv columns per work-item */

/* Global size (S * WG, row groups, B * Hkv); work-groups of (WG, 1, 1). All
 * barriers are in uniform control flow: the loop bounds depend on the group
 * only. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
clattn_decode_split_wg(__global const store_t *q, __global const store_t *k,
                       __global const store_t *v, __global store_t *o,
                       __global float *lse, __global float *part,
                       const ulong lse_off, const int write_lse,
                       const int direct, const int nq, const int nk,
                       const int hq, const int hkv, const int kps,
                       const float scale_log2, const float bias_log2,
                       CLATTN_PIPE_PARAMS) {
  __global float *po = part;
  __global float *pl = direct ? part : part + lse_off;
  __local float qs[ROWS * DP];          /* scaled queries, zero-padded */
  __local float ps[ROWS * BLOCK_N];     /* scores, then weights */
  __local float ms[ROWS], ls[ROWS];     /* running max (log2) and sum */
#if SIGMOID
  (void)lse;
  (void)write_lse;
  (void)pl;
#else
  __local float alphas[ROWS]; /* this block's rescale factor */
#endif
  const int lid = (int)get_local_id(0);
  const int s = (int)get_group_id(0);
  const int rg = (int)get_global_id(1);
  const int bh = (int)get_global_id(2);
  const int g = hq / hkv;
  const int nrows = g * nq;
  const int b = bh / hkv, hk = bh % hkv;
  const ulong row0 = ((ulong)b * hq + (ulong)hk * g) * nq;
  const ulong all_rows = (ulong)get_global_size(2) / hkv * hq * nq;
  k += (ulong)bh * nk * HEAD_DIM;
  v += (ulong)bh * nk * HEAD_DIM_V;

  const clattn_seq sq = clattn_seq_make(b, hk * g, nq, nk, CLATTN_PIPE_ARGS);
  /* Padding rows (past Lq) are never read. */
  for (int e = lid; e < ROWS * DP; e += WG) {
    const int r = e / DP, d = e % DP;
    const int rr = min(rg * ROWS + r, nrows - 1);
    qs[e] = d < HEAD_DIM && rr % nq < sq.lq
                ? LOAD1(q, (row0 + rr) * HEAD_DIM + d) * scale_log2
                : 0.0f;
  }
  for (int r = lid; r < ROWS; r += WG) {
    ms[r] = -INFINITY;
    ls[r] = 0.0f;
  }
#if SIGMOID
  const float bias = clattn_seq_bias(&sq, bias_log2);
#else
  (void)bias_log2;
#endif
  int pos[ROWS], hr[ROWS];
  for (int r = 0; r < ROWS; r++)
    clattn_decode_row(rg, r, nrows, nq, hk, g, &hr[r], &pos[r]);
  int lo[ROWS], hi[ROWS], kbeg, kend, fbeg, fend;
  const int js = (int)min((long)s * kps, (long)nk);
  const int je = (int)min((long)js + kps, (long)nk);
  clattn_decode_bounds(&sq, pos, js, je, lo, hi, &kbeg, &kend, &fbeg, &fend);

  float acc[ROWS][CPW];
  for (int r = 0; r < ROWS; r++)
    for (int cc = 0; cc < CPW; cc++)
      acc[r][cc] = 0.0f;
  barrier(CLK_LOCAL_MEM_FENCE);

  for (int j0 = kbeg; j0 < kend; j0 += BLOCK_N) {
    const int masked = clattn_block_masked(j0, BLOCK_N, fbeg, fend);
    /* Scores: each work-item takes keys of the block in turn. */
    for (int jj = lid; jj < BLOCK_N; jj += WG) {
      const int j = j0 + jj;
      __global const store_t *kr = k + (ulong)min(j, kend - 1) * HEAD_DIM;
      floatv d[ROWS];
      for (int r = 0; r < ROWS; r++)
        d[r] = (floatv)(0.0f);
      for (int c = 0; c < DCH; c++) {
        const floatv kc = clattn_decode_chunk(kr, c, HEAD_DIM);
        for (int r = 0; r < ROWS; r++)
          d[r] = fma(VLOAD_LOCAL(qs + r * DP + c * VEC), kc, d[r]);
      }
      for (int r = 0; r < ROWS; r++) {
        float sc = HSUM(d[r]);
        if (PIPE_MODS || masked) {
          const clattn_seq sr = clattn_decode_head(sq, hr[r], alibi);
          sc = clattn_mods(&sr, sc, pos[r], j);
          if (masked)
            sc = clattn_decode_score(&sr, sc, pos[r], j, lo[r], hi[r], kend);
        }
#if SIGMOID
        sc = 1.0f / (1.0f + exp2(-(sc + bias)));
#endif
        ps[r * BLOCK_N + jj] = sc;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#if !SIGMOID
    /* One work-item per row: the block's max, the rescale factor and the
     * weights. */
    for (int r = lid; r < ROWS; r += WG) {
      const float mold = ms[r];
      float mx = mold;
      for (int jj = 0; jj < BLOCK_N; jj++)
        mx = fmax(mx, ps[r * BLOCK_N + jj]);
      const float mu = mx == -INFINITY ? 0.0f : mx;
      float sum = 0.0f;
      for (int jj = 0; jj < BLOCK_N; jj++) {
        const float p = exp2(ps[r * BLOCK_N + jj] - mu);
        ps[r * BLOCK_N + jj] = p;
        sum += p;
      }
      const float alpha = exp2(mold - mu);
      alphas[r] = alpha;
      ls[r] = ls[r] * alpha + sum;
      ms[r] = mx;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#endif
    /* acc += P V over this work-item's columns; neighbours read neighbouring
     * columns of a V row. */
    for (int cc = 0; cc < CPW; cc++) {
      const int col = lid + cc * WG;
      if (col >= HEAD_DIM_V)
        break;
#if !SIGMOID
      for (int r = 0; r < ROWS; r++)
        acc[r][cc] *= alphas[r];
#endif
      for (int jj = 0; jj < BLOCK_N; jj++) {
        const float vv =
            LOAD1(v, (ulong)min(j0 + jj, kend - 1) * HEAD_DIM_V + col);
        for (int r = 0; r < ROWS; r++)
          acc[r][cc] = fma(ps[r * BLOCK_N + jj], vv, acc[r][cc]);
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* ps and alphas are rewritten next */
  }

  for (int r = 0; r < ROWS; r++) {
    const int rr = rg * ROWS + r;
    if (rr >= nrows)
      break;
    const ulong row = row0 + rr, prow = (ulong)s * all_rows + row;
    /* A row that sees no key was not masked in blocks every other row
     * sees whole: it gives exactly 0 (and LSE -inf). */
    const int none = hi[r] < lo[r];
#if SIGMOID
    const float inv = 1.0f;
#else
    const float l = none ? 0.0f : ls[r];
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#endif
    for (int cc = 0; cc < CPW; cc++) {
      const int col = lid + cc * WG;
      if (col >= HEAD_DIM_V)
        break;
      const float x = none ? 0.0f : acc[r][cc] * inv;
      if (direct)
        STORE1(x, o, row * HEAD_DIM_V + col);
      else
        po[prow * HEAD_DIM_V + col] = x;
    }
#if !SIGMOID
    if (lid == 0) {
      const float lse2 = l > 0.0f ? ms[r] + log2(l) : -INFINITY;
      if (direct) {
        if (write_lse)
          lse[row] = lse2 * M_LN2_F;
      } else {
        pl[prow] = lse2;
      }
    }
#endif
  }
}

#endif /* WG */

/*
 * Combines the S partials of each row: global size (Dv, B*Hq*Nq). Softmax
 * weighs split s by 2^(PL_s - max) as merge.cl does (a split with -inf
 * carries no weight; a row no split saw gives 0 and LSE -inf); sigmoid adds.
 */
CLATTN_KERNEL void clattn_decode_merge(__global const float *po,
                                       const ulong lse_off, __global store_t *o,
                                       __global float *lse, const int write_lse,
                                       const int splits, const ulong rows) {
  __global const float *pl = po + lse_off;
  const int c = (int)get_global_id(0);
  const ulong r = get_global_id(1);
#if SIGMOID
  (void)pl;
  (void)lse;
  (void)write_lse;
  float acc = 0.0f;
  for (int s = 0; s < splits; s++)
    acc += po[((ulong)s * rows + r) * HEAD_DIM_V + c];
  STORE1(acc, o, r * HEAD_DIM_V + c);
#else
  float mx = -INFINITY;
  for (int s = 0; s < splits; s++)
    mx = fmax(mx, pl[(ulong)s * rows + r]);
  float sum = 0.0f, acc = 0.0f;
  if (mx != -INFINITY) {
    for (int s = 0; s < splits; s++) {
      const float lp = pl[(ulong)s * rows + r];
      if (lp == -INFINITY)
        continue;
      const float w = exp2(lp - mx);
      sum += w;
      acc += w * po[((ulong)s * rows + r) * HEAD_DIM_V + c];
    }
  }
  STORE1(sum > 0.0f ? acc / sum : 0.0f, o, r * HEAD_DIM_V + c);
  if (write_lse && c == 0)
    lse[r] = sum > 0.0f ? (mx + log2(sum)) * M_LN2_F : -INFINITY;
#endif
}
