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
 * BLOCK_N. With one split the kernel writes O (and LSE) itself; with more,
 * it writes float partials into the plan's workspace,
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
 * sigmoid bias given times log2(e)), as in softmax.cl and sigmoid.cl.
 *
 * Macros (defaults here; the host sets them):
 *   SIGMOID   0 softmax, 1 sigmoid.
 *   CAUSAL    1: bottom-right causal masking.
 *   ROWS      query rows per work-item (WG = 1) or work-group (WG > 1).
 *   BLOCK_N   keys per step: 4, 8 or 16 when WG = 1, any when WG > 1.
 *   WG        work-items per work-group.
 */

#ifndef SIGMOID
#define SIGMOID 0 // 0 softmax, 1 sigmoid
#endif
#ifndef CAUSAL
#define CAUSAL 0 // bottom-right causal masking
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

/*
 * The score pipeline, one element at a time: the score s of query row i (its
 * position in its sequence) against key j, or -INFINITY when the key is
 * masked. A masked key gets no weight in softmax and exactly 0 in sigmoid.
 * Only the causal mask exists today. This is where per-sequence lengths
 * (nq, nk per batch entry), sliding windows, ALiBi, softcapping and user
 * score_mod / mask_mod expressions plug in; they need the batch entry and
 * the query head too, which the callers have at hand (b, and h = kv head x G
 * + row / Nq). The kernels call it only on blocks that can hold a masked key
 * (see `kfree`); a pipeline that changes scores (ALiBi, softcap, score_mod)
 * must make that test true for every block.
 */
float clattn_decode_score(const float s, const int i, const int j,
                                 const int nq, const int nk) {
#if CAUSAL
  return j <= i + nk - nq ? s : -INFINITY;
#else
  (void)i;
  (void)j;
  (void)nq;
  (void)nk;
  return s;
#endif
}

/* The last key row i sees, when keys run to nk - 1 at most. */
int clattn_decode_last_key(const int i, const int nq, const int nk) {
  return CAUSAL ? min(nk - 1, i + nk - nq) : nk - 1;
}

/* Elements [c * VEC, c * VEC + VEC) of a row of HEAD_DIM_V, zero-padded past
 * its end (c is a constant once loops are unrolled, so the test folds). */
floatv clattn_decode_vchunk(__global const store_t *row, const int c) {
  if ((c + 1) * VEC <= HEAD_DIM_V)
    return VLOAD(row + c * VEC);
  float tmp[VEC];
  for (int t = 0; t < VEC; t++)
    tmp[t] = c * VEC + t < HEAD_DIM_V ? LOAD1(row, c * VEC + t) : 0.0f;
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
__kernel void clattn_decode_split(
    __global const store_t *q, __global const store_t *k,
    __global const store_t *v, __global store_t *o, __global float *lse,
    __global float *part, const ulong lse_off, const int write_lse,
    const int direct, const int nq, const int nk, const int hq, const int hkv,
    const int kps, const float scale_log2, const float bias_log2) {
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
  floatv qr[ROWS][DCH];
  int pos[ROWS];
  int klo = nk, khi = -1;
  for (int r = 0; r < ROWS; r++) {
    const int rr = min(rg * ROWS + r, nrows - 1);
    clattn_load_row(q + (row0 + rr) * HEAD_DIM, qr[r], HEAD_DIM, scale_log2);
    pos[r] = rr % nq;
    klo = min(klo, clattn_decode_last_key(pos[r], nq, nk));
    khi = max(khi, clattn_decode_last_key(pos[r], nq, nk));
  }
  /* Keys from kend on are seen by no row here; blocks reaching past kfree
   * may hold a masked key. */
  const int js = (int)min((long)s * kps, (long)nk);
  const int je = (int)min((long)js + kps, (long)nk);
  const int kend = min(je, khi + 1);
  const int kfree = min(kend, klo + 1);

  floatv acc[ROWS][DVCH];
  float m[ROWS];
  floatb lv[ROWS]; /* sums of weights, one lane per key of a block */
  for (int r = 0; r < ROWS; r++) {
    for (int c = 0; c < DVCH; c++)
      acc[r][c] = (floatv)(0.0f);
    m[r] = -INFINITY;
    lv[r] = (floatb)(0.0f);
  }

  for (int j0 = js; j0 < kend; j0 += BLOCK_N) {
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
        floatv kc;
        if ((c + 1) * VEC <= HEAD_DIM) {
          kc = VLOAD(kr + c * VEC);
        } else {
          float tmp[VEC];
          for (int t = 0; t < VEC; t++)
            tmp[t] = c * VEC + t < HEAD_DIM ? LOAD1(kr, c * VEC + t) : 0.0f;
          kc = VLOAD_PRIV(tmp);
        }
#pragma unroll
        for (int r = 0; r < ROWS; r++)
          d[r] = fma(qr[r][c], kc, d[r]);
      }
#pragma unroll
      for (int r = 0; r < ROWS; r++)
        sc[r][jj] = HSUM(d[r]);
    }
    if (j0 + BLOCK_N > kfree) {
      for (int r = 0; r < ROWS; r++)
        for (int jj = 0; jj < BLOCK_N; jj++)
          sc[r][jj] =
              j0 + jj < kend
                  ? clattn_decode_score(sc[r][jj], pos[r], j0 + jj, nq, nk)
                  : -INFINITY;
    }
    /* Weights, BLOCK_N keys at a time. */
    for (int r = 0; r < ROWS; r++) {
      floatb sv = BLOAD_PRIV(sc[r]);
#if SIGMOID
      sv = 1.0f / (1.0f + exp2(-(sv + bias_log2)));
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
        const floatv vc = clattn_decode_vchunk(
            v + (ulong)min(j0 + jj, kend - 1) * HEAD_DIM_V, c);
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
                       const float scale_log2, const float bias_log2) {
  __global float *po = part;
  __global float *pl = direct ? part : part + lse_off;
  __local float qs[ROWS * DP];          /* scaled queries, zero-padded */
  __local float ps[ROWS * BLOCK_N];     /* scores, then weights */
  __local float ms[ROWS], ls[ROWS];     /* running max (log2) and sum */
  __local float alphas[ROWS];           /* this block's rescale factor */
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

  for (int e = lid; e < ROWS * DP; e += WG) {
    const int r = e / DP, d = e % DP;
    const int rr = min(rg * ROWS + r, nrows - 1);
    qs[e] = d < HEAD_DIM ? LOAD1(q, (row0 + rr) * HEAD_DIM + d) * scale_log2
                         : 0.0f;
  }
  for (int r = lid; r < ROWS; r += WG) {
    ms[r] = -INFINITY;
    ls[r] = 0.0f;
  }
  int klo = nk, khi = -1;
  for (int r = 0; r < ROWS; r++) {
    const int rr = min(rg * ROWS + r, nrows - 1);
    klo = min(klo, clattn_decode_last_key(rr % nq, nq, nk));
    khi = max(khi, clattn_decode_last_key(rr % nq, nq, nk));
  }
  const int js = (int)min((long)s * kps, (long)nk);
  const int je = (int)min((long)js + kps, (long)nk);
  const int kend = min(je, khi + 1);
  const int kfree = min(kend, klo + 1);

  float acc[ROWS][CPW];
  for (int r = 0; r < ROWS; r++)
    for (int cc = 0; cc < CPW; cc++)
      acc[r][cc] = 0.0f;
  barrier(CLK_LOCAL_MEM_FENCE);

  for (int j0 = js; j0 < kend; j0 += BLOCK_N) {
    /* Scores: each work-item takes keys of the block in turn. */
    for (int jj = lid; jj < BLOCK_N; jj += WG) {
      const int j = j0 + jj;
      __global const store_t *kr = k + (ulong)min(j, kend - 1) * HEAD_DIM;
      floatv d[ROWS];
      for (int r = 0; r < ROWS; r++)
        d[r] = (floatv)(0.0f);
      for (int c = 0; c < DCH; c++) {
        floatv kc;
        if ((c + 1) * VEC <= HEAD_DIM) {
          kc = VLOAD(kr + c * VEC);
        } else {
          float tmp[VEC];
          for (int t = 0; t < VEC; t++)
            tmp[t] = c * VEC + t < HEAD_DIM ? LOAD1(kr, c * VEC + t) : 0.0f;
          kc = VLOAD_PRIV(tmp);
        }
        for (int r = 0; r < ROWS; r++)
          d[r] = fma(VLOAD_LOCAL(qs + r * DP + c * VEC), kc, d[r]);
      }
      for (int r = 0; r < ROWS; r++) {
        float sc = HSUM(d[r]);
        if (j0 + BLOCK_N > kfree) {
          const int rr = min(rg * ROWS + r, nrows - 1);
          sc = j < kend ? clattn_decode_score(sc, rr % nq, j, nq, nk)
                        : -INFINITY;
        }
#if SIGMOID
        sc = 1.0f / (1.0f + exp2(-(sc + bias_log2)));
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
#if SIGMOID
    const float inv = 1.0f;
#else
    const float l = ls[r];
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#endif
    for (int cc = 0; cc < CPW; cc++) {
      const int col = lid + cc * WG;
      if (col >= HEAD_DIM_V)
        break;
      if (direct)
        STORE1(acc[r][cc] * inv, o, row * HEAD_DIM_V + col);
      else
        po[prow * HEAD_DIM_V + col] = acc[r][cc] * inv;
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
__kernel void clattn_decode_merge(__global const float *po,
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
