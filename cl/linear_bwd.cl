/*
 * linear_bwd.cl - linear attention and cosFormer backward, chunked so that
 * time and memory stay O(N): no N x D x Dv tensor and no Nq x Nk matrix.
 *
 * With features q'_i, k'_j (phi(x), or for cosFormer [phi(x) sin t,
 * phi(x) cos t], FEAT = D or 2D wide) and L_i the last key row i sees, the
 * forward is S_i = sum_{j<=L_i} k'_j v_j^T, z_i = sum_{j<=L_i} k'_j,
 * n_i = q'_i.z_i + eps (cosFormer: max(q'_i.z_i, eps)), O_i = q'_i S_i / n_i.
 * Its gradients, with g_i = dO_i / n_i, u_i = S_i g_i and
 * c_i = -(q'_i.u_i) / n_i (0 while cosFormer's clamp holds n_i at eps):
 *   dq'_i = u_i + c_i z_i
 *   dk'_j = R_j v_j + r_j,   dv_j = R_j^T k'_j,
 * where R_j = sum_{i: L_i >= j} q'_i g_i^T and r_j = sum_{i: L_i >= j} c_i q'_i
 * are suffix sums over the queries that see key j. The chain rule through
 * the position weights and phi gives dq and dk.
 *
 * Kernels, per (batch, head) and chunks of CHUNK rows:
 *   clattn_lbwd_featmap  the features q'_i and k'_j, once per row, into the
 *                        workspace (the other kernels read them many times;
 *                        recomputing meant an exp, or a sin and a cos, per
 *                        feature and visit);
 *   clattn_lbwd_kstate   chunk sums of k'_j v_j^T and k'_j: a register-
 *                        tiled micro-GEMM per work-item, FB feature rows x
 *                        DVT vectors of Dv (one of NSLICE slices), of one
 *                        chunk and kv head;
 *   clattn_lbwd_scan     exclusive prefix (or suffix) over chunks, with the
 *                        total in an extra last slot;
 *   clattn_lbwd_query    one work-item per LR query rows: n_i, g_i, c_i, dq
 *                        from the prefix state and the row's own chunk;
 *                        writes g_i and c_i for the key side;
 *   clattn_lbwd_qstate   chunk sums of q'_i g_i^T and c_i q'_i over the
 *                        query heads that share a kv head, queries grouped
 *                        by the chunk of L_i (the same micro-GEMM);
 *   clattn_lbwd_key      one work-item per LR key rows: dk and dv from the
 *                        suffix state and the queries of its own chunk.
 * The row kernels hold a row's features and values as vectors of VEC floats
 * (FCH and DVCH of them), so that every product within a chunk is a few
 * vector FMAs and one horizontal sum.
 * Without masking every query sees every key: the totals replace the
 * prefix and suffix states and nothing is done within chunks.
 *
 * State layout: [B * Hkv][chunks + 1][FEAT * (Dv + 1)], a chunk's FEAT x Dv
 * matrix followed by its FEAT vector.
 *
 * Per-sequence lengths: kernels take int32 [B] lens_q and lens_k (NULL: Nq
 * and Nk, values clamped to 0..N). Sequence b has Lq rows and Lk keys, L_i =
 * i + Lk - Lq when causal, and cosFormer's default M is max(Lq, Lk). Loops
 * stop at a sequence's end (chunks past it sum nothing), rows past Lq and
 * keys past Lk get zero gradients, and no sum reads padding.
 */

#ifndef CAUSAL
#define CAUSAL 0
#endif
#ifndef COSFORMER
#define COSFORMER 0
#endif
#ifndef FEATURE_MAP
#define FEATURE_MAP 1 // 1: elu(x) + 1, 2: relu(x)
#endif
#ifndef CHUNK
#define CHUNK 64 // rows per chunk
#endif

#ifndef FB
#define FB 4 // feature rows per work-item of the state kernels
#endif
/* Slices of Dv the state kernels' work-items split a state into. */
#define NSLICE ((DVCH + DVT - 1) / DVT)
#ifndef LR
#define LR 8 // rows per work-item of the query and key kernels
#endif

#ifndef SCAN_E
#define SCAN_E 64 // state elements per work-item of clattn_lbwd_scan
#endif

#define FEAT (HEAD_DIM * (COSFORMER ? 2 : 1))

/* Length of sequence b, clamped to 0..n; n without a lengths buffer. */
int clattn_lbwd_len(__global const int *lens, const size_t b, const int n) {
  return lens ? clamp(lens[b], 0, n) : n;
}

/* 1 / (2M): the host's for a given M; negative for the default M =
 * max(Lq, Lk) of sequence b. */
float clattn_lbwd_hinv(const float hinv, __global const int *lens_q,
                       __global const int *lens_k, const size_t b,
                       const int nq, const int nk) {
  if (hinv >= 0.0f)
    return hinv;
  const int m = max(clattn_lbwd_len(lens_q, b, nq),
                    clattn_lbwd_len(lens_k, b, nk));
  return 0.5f / (float)max(m, 1);
}
#define SLOT ((size_t)FEAT * (HEAD_DIM_V + 1))

float clattn_lbwd_phi(const float x) {
#if FEATURE_MAP == 2
  return fmax(x, 0.0f);
#else
  return x > 0.0f ? x + 1.0f : exp(x);
#endif
}

float clattn_lbwd_dphi(const float x) {
#if FEATURE_MAP == 2
  return x > 0.0f ? 1.0f : 0.0f;
#else
  return x > 0.0f ? 1.0f : exp(x);
#endif
}

/* Feature f of a row at position pos: cosFormer's copy 0 is weighted by
 * sin t, copy 1 by cos t, t = pi (pos + 1) hinv (hinv = 1 / (2M)). */
float clattn_lbwd_feat(__global const store_t *row, const int f, const int pos,
                       const float hinv) {
#if COSFORMER
  const float x = (float)(pos + 1) * hinv;
  const float w = f < HEAD_DIM ? sinpi(x) : cospi(x);
  return clattn_lbwd_phi(LOAD1(row, f % HEAD_DIM)) * w;
#else
  (void)pos;
  (void)hinv;
  return clattn_lbwd_phi(LOAD1(row, f));
#endif
}

/* d/dx of the loss from the gradient of the features of row x. */
void clattn_lbwd_store_grad(__global const store_t *x, const float *dfeat,
                            const int pos, const float hinv,
                            __global store_t *out) {
#if COSFORMER
  const float t = (float)(pos + 1) * hinv;
  const float ws = sinpi(t), wc = cospi(t);
#else
  (void)pos;
  (void)hinv;
#endif
  for (int a = 0; a < HEAD_DIM; a++) {
#if COSFORMER
    const float d = ws * dfeat[a] + wc * dfeat[HEAD_DIM + a];
#else
    const float d = dfeat[a];
#endif
    STORE1(d * clattn_lbwd_dphi(LOAD1(x, a)), out, a);
  }
}

/* Features of LR rows from row LR * id: out[r][f], r = (batch, head,
 * position pos = r % n) with `heads` heads; rows past the sequence's length
 * (Lk for keys, Lq for queries) are never read and are skipped. */
__kernel void clattn_lbwd_featmap(__global const store_t *x,
                                  __global float *out, const ulong rows,
                                  const int n, const int heads, const int keys,
                                  const int nq, const int nk, const float hinv,
                                  __global const int *lens_q,
                                  __global const int *lens_k) {
  const size_t r0 = get_global_id(0) * LR;
  for (size_t r = r0; r < r0 + LR && r < rows; r++) {
    const size_t b = r / n / (size_t)heads;
    const int pos = (int)(r % n);
    if (pos >= clattn_lbwd_len(keys ? lens_k : lens_q, b, n))
      continue;
    const float hb = clattn_lbwd_hinv(hinv, lens_q, lens_k, b, nq, nk);
    for (int f = 0; f < FEAT; f++)
      out[r * FEAT + f] = clattn_lbwd_feat(x + r * HEAD_DIM, f, pos, hb);
  }
}

/* Feature rows as vectors. */
#define FCH ((FEAT + VEC - 1) / VEC)

/* n floats of a workspace row into vectors, zero past n. */
void clattn_lbwd_loadf(__global const float *p, floatv *dst, const int n) {
  const int full = n / VEC;
  for (int c = 0; c < full; c++)
    dst[c] = VLOAD_PRIV(p + c * VEC);
  if (n % VEC) {
    float tmp[VEC];
    for (int t = 0; t < VEC; t++)
      tmp[t] = full * VEC + t < n ? p[full * VEC + t] : 0.0f;
    dst[full] = VLOAD_PRIV(tmp);
  }
}

/* Stores the first n floats of a row of vectors. */
void clattn_lbwd_storef(const floatv *src, __global float *p, const int n) {
  const int full = n / VEC;
  for (int c = 0; c < full; c++)
    VSTORE_PRIV(src[c], p + c * VEC);
  if (n % VEC) {
    float tmp[VEC];
    VSTORE_PRIV(src[full], tmp);
    for (int t = 0; full * VEC + t < n; t++)
      p[full * VEC + t] = tmp[t];
  }
}

/* a . b over nch vectors (the padding of both is zero). */
float clattn_lbwd_vdot(const floatv *a, const floatv *b, const int nch) {
  floatv acc = a[0] * b[0];
  for (int c = 1; c < nch; c++)
    acc = fma(a[c], b[c], acc);
  return HSUM(acc);
}

/* out[f] = s_f . x for the FEAT rows of a state (Dv floats each), as
 * vectors of features. */
void clattn_lbwd_state_dot(__global const float *s, const floatv *x,
                           floatv *out) {
  float t[FCH * VEC];
  for (int f = 0; f < FCH * VEC; f++) {
    floatv sr[DVCH];
    clattn_lbwd_loadf(s + (size_t)min(f, FEAT - 1) * HEAD_DIM_V, sr,
                      HEAD_DIM_V);
    t[f] = f < FEAT ? clattn_lbwd_vdot(sr, x, DVCH) : 0.0f;
  }
  for (int c = 0; c < FCH; c++)
    out[c] = VLOAD_PRIV(t + c * VEC);
}

/* The state kernels' micro-GEMM: FB feature rows x DVT vectors of Dv (one
 * slice of NSLICE) held in registers across a run of rows, each row's
 * features broadcast against its value (or g) row. The extra column (z, or
 * r) is summed by slice 0 alone. */
void clattn_lbwd_tile_zero(floatv (*acc)[DVT], float *z) {
#pragma unroll
  for (int u = 0; u < FB; u++) {
#pragma unroll
    for (int c = 0; c < DVT; c++)
      acc[u][c] = (floatv)(0.0f);
    z[u] = 0.0f;
  }
}

/* Features f0 .. f0 + FB - 1 of a feature row; those past FEAT read the
 * last one (their sums are never stored), so that no load needs a test. */
void clattn_lbwd_feats(__global const float *fe, const int f0, float *a) {
#pragma unroll
  for (int u = 0; u < FB; u++)
    a[u] = fe[min(f0 + u, FEAT - 1)];
}

/* acc[u] += a[u] * row slice; z[u] += a[u] * w. */
void clattn_lbwd_tile_fma(floatv (*acc)[DVT], float *z, const float *a,
                          const floatv *row, const float w) {
#pragma unroll
  for (int u = 0; u < FB; u++) {
    const floatv au = (floatv)(a[u]);
#pragma unroll
    for (int c = 0; c < DVT; c++)
      acc[u][c] = fma(au, row[c], acc[u][c]);
    z[u] = fma(a[u], w, z[u]);
  }
}

/* Vectors c0 .. c0 + DVT - 1 of a row of Dv floats, zero past Dv (the
 * workspace's rows; clattn_load_slice reads stored ones). */
void clattn_lbwd_slice_f(__global const float *p, const int c0, floatv *row) {
#pragma unroll
  for (int c = 0; c < DVT; c++) {
    const int e = (c0 + c) * VEC;
    if (e + VEC <= HEAD_DIM_V) {
      row[c] = VLOAD_PRIV(p + e);
    } else {
      float tmp[VEC];
      for (int t = 0; t < VEC; t++)
        tmp[t] = e + t < HEAD_DIM_V ? p[e + t] : 0.0f;
      row[c] = VLOAD_PRIV(tmp);
    }
  }
}

/* Writes the tile into a chunk's slot: rows f0.., Dv slice from c0; slice
 * 0 also writes the extra column. */
void clattn_lbwd_tile_store(floatv (*acc)[DVT], const float *z, const int f0,
                            const int c0, __global float *s) {
  for (int u = 0; u < FB && f0 + u < FEAT; u++) {
    __global float *sr = s + (size_t)(f0 + u) * HEAD_DIM_V;
    for (int c = 0; c < DVT; c++) {
      const int e = (c0 + c) * VEC;
      if (e + VEC <= HEAD_DIM_V) {
        VSTORE_PRIV(acc[u][c], sr + e);
      } else {
        float tmp[VEC];
        VSTORE_PRIV(acc[u][c], tmp);
        for (int x = 0; e + x < HEAD_DIM_V && x < VEC; x++)
          sr[e + x] = tmp[x];
      }
    }
    if (c0 == 0)
      s[(size_t)FEAT * HEAD_DIM_V + f0 + u] = z[u];
  }
}

/* Chunk sums of k'_j v_j^T and k'_j over keys [c CHUNK, (c + 1) CHUNK). */
CLATTN_KERNEL void clattn_lbwd_kstate(__global const float *kfe,
                                      __global const store_t *v,
                                      __global float *st, const int nk,
                                      const int hkv, const int chunks,
                                      __global const int *lens_k) {
  /* Work-item (f / FB * NSLICE + slice, c, bh). */
  const int f0 = (int)get_global_id(0) / NSLICE * FB;
  const int c0 = (int)get_global_id(0) % NSLICE * DVT;
  if (f0 >= FEAT)
    return;
  const int c = (int)get_global_id(1);
  const size_t bh = get_global_id(2);
  floatv acc[FB][DVT];
  float z[FB];
  clattn_lbwd_tile_zero(acc, z);
  const int j1 = min((c + 1) * CHUNK, clattn_lbwd_len(lens_k, bh / hkv, nk));
  for (int j = c * CHUNK; j < j1; j++) {
    const size_t row = bh * nk + j;
    float a[FB];
    floatv vr[DVT];
    clattn_lbwd_feats(kfe + row * FEAT, f0, a);
    clattn_load_slice(v + row * HEAD_DIM_V, c0, vr);
    clattn_lbwd_tile_fma(acc, z, a, vr, 1.0f);
  }
  clattn_lbwd_tile_store(acc, z, f0, c0, st + (bh * (chunks + 1) + c) * SLOT);
}

/* Elements [SCAN_E id, SCAN_E (id + 1)) of every chunk's slot, per bh: an
 * exclusive prefix (reverse = 0) or suffix (1), and the total into slot
 * `chunks`. A run of elements per work-item: contiguous loads, and few
 * work-items (a CPU runtime pays for each work-group). */
__kernel void clattn_lbwd_scan(__global float *st, const int chunks,
                               const int reverse) {
  const size_t e0 = get_global_id(0) * SCAN_E;
  const size_t bh = get_global_id(1);
  if (e0 >= SLOT)
    return;
  const int n = (int)min((size_t)SCAN_E, SLOT - e0);
  __global float *s = st + bh * (chunks + 1) * SLOT + e0;
  float run[SCAN_E];
  for (int e = 0; e < SCAN_E; e++)
    run[e] = 0.0f;
  for (int m = 0; m < chunks; m++) {
    __global float *sc = s + (size_t)(reverse ? chunks - 1 - m : m) * SLOT;
    for (int e = 0; e < n; e++) {
      const float x = sc[e];
      sc[e] = run[e];
      run[e] += x;
    }
  }
  for (int e = 0; e < n; e++)
    s[(size_t)chunks * SLOT + e] = run[e];
}

/* Query row (i, h, b). gc holds g_i (Dv floats) and c_i per row. Features
 * and value rows are held as vectors (FCH and DVCH of them). */
void clattn_lbwd_query_row(__global const store_t *q, __global const float *qfe,
                           __global const float *kfe, __global const store_t *v,
                           __global const store_t *dout,
                           __global const float *st, __global float *gc,
                           __global store_t *dq, const int i, const int h,
                           const int b, const int nq, const int nk,
                           const int hq, const int hkv, const int chunks,
                           const float eps, const float hinv, const int lq,
                           const int lk) {
  const size_t row = ((size_t)b * hq + h) * nq + i;
  const size_t bhk = (size_t)b * hkv + h / (hq / hkv);
  __global float *gci = gc + row * (HEAD_DIM_V + 1);
  const long last = CAUSAL ? (long)i + lk - lq : (long)lk - 1;
  if (last < 0) {
    for (int t = 0; t <= HEAD_DIM_V; t++)
      gci[t] = 0.0f;
    for (int a = 0; a < HEAD_DIM; a++)
      STORE1(0.0f, dq, row * HEAD_DIM + a);
    return;
  }
  const int c = CAUSAL ? (int)(last / CHUNK) : chunks;
  __global const float *s = st + (bhk * (chunks + 1) + c) * SLOT;
  floatv qf[FCH], z[FCH], g[DVCH], df[FCH];
  clattn_lbwd_loadf(qfe + row * FEAT, qf, FEAT);
  clattn_lbwd_loadf(s + (size_t)FEAT * HEAD_DIM_V, z, FEAT);
  /* The keys of the row's own chunk up to L_i join z here and u below. */
  const int j0 = CAUSAL ? c * CHUNK : 0, j1 = CAUSAL ? (int)last + 1 : 0;
  for (int j = j0; j < j1; j++) {
    floatv kf[FCH];
    clattn_lbwd_loadf(kfe + (bhk * nk + j) * FEAT, kf, FEAT);
    for (int u = 0; u < FCH; u++)
      z[u] += kf[u];
  }
  float n = clattn_lbwd_vdot(qf, z, FCH);
#if COSFORMER
  const int live = n > eps;
  n = fmax(n, eps);
#else
  const int live = 1;
  n += eps;
#endif
  clattn_load_row(dout + row * HEAD_DIM_V, g, HEAD_DIM_V, 1.0f);
  for (int t = 0; t < DVCH; t++)
    g[t] /= n;
  clattn_lbwd_state_dot(s, g, df);
  for (int j = j0; j < j1; j++) {
    const size_t kr = bhk * nk + j;
    floatv vr[DVCH], kf[FCH];
    clattn_load_row(v + kr * HEAD_DIM_V, vr, HEAD_DIM_V, 1.0f);
    clattn_lbwd_loadf(kfe + kr * FEAT, kf, FEAT);
    const floatv vg = (floatv)(clattn_lbwd_vdot(vr, g, DVCH));
    for (int u = 0; u < FCH; u++)
      df[u] = fma(kf[u], vg, df[u]);
  }
  const float qu = clattn_lbwd_vdot(qf, df, FCH);
  const floatv cc = (floatv)(live ? -qu / n : 0.0f);
  for (int u = 0; u < FCH; u++)
    df[u] = fma(cc, z[u], df[u]);
  float dfeat[FCH * VEC];
  for (int u = 0; u < FCH; u++)
    VSTORE_PRIV(df[u], dfeat + u * VEC);
  clattn_lbwd_store_grad(q + row * HEAD_DIM, dfeat, i, hinv,
                         dq + row * HEAD_DIM);
  clattn_lbwd_storef(g, gci, HEAD_DIM_V);
  gci[HEAD_DIM_V] = live ? -qu / n : 0.0f;
}

/* LR query rows from LR * id of head (h, b). */
CLATTN_KERNEL void
clattn_lbwd_query(__global const store_t *q, __global const float *qfe,
                  __global const float *kfe, __global const store_t *v,
                  __global const store_t *dout, __global const float *st,
                  __global float *gc, __global store_t *dq, const int nq,
                  const int nk, const int hq, const int hkv, const int chunks,
                  const float eps, const float hinv, __global const int *lens_q,
                  __global const int *lens_k) {
  const int i0 = (int)get_global_id(0) * LR;
  const int h = (int)get_global_id(1);
  const int b = (int)get_global_id(2);
  const int lq = clattn_lbwd_len(lens_q, b, nq);
  const int lk = clattn_lbwd_len(lens_k, b, nk);
  const float hb = clattn_lbwd_hinv(hinv, lens_q, lens_k, b, nq, nk);
  /* Rows past Lq apart, stored as 0 without reading them (they may hold
   * anything), so that the loop over the sequence's rows stays as tight as
   * without lengths. */
  const int i1 = min(i0 + LR, lq);
  for (int i = i0; i < i1; i++)
    clattn_lbwd_query_row(q, qfe, kfe, v, dout, st, gc, dq, i, h, b, nq, nk, hq,
                          hkv, chunks, eps, hb, lq, lk);
  for (int i = max(i0, lq); i < i0 + LR && i < nq; i++) {
    const size_t row = ((size_t)b * hq + h) * nq + i;
    for (int t = 0; t <= HEAD_DIM_V; t++)
      gc[row * (HEAD_DIM_V + 1) + t] = 0.0f;
    for (int a = 0; a < HEAD_DIM; a++)
      STORE1(0.0f, dq, row * HEAD_DIM + a);
  }
}

/* Query rows grouped by the chunk of L_i (causal) or of i (not): chunk c
 * holds rows [c CHUNK - off, (c + 1) CHUNK - off), off = Nk - Nq when
 * causal. Chunk sums of q'_i g_i^T and c_i q'_i, over the query heads that
 * share kv head bhk. */
CLATTN_KERNEL void
clattn_lbwd_qstate(__global const float *qfe, __global const float *gc,
                   __global float *st, const int nq, const int nk, const int hq,
                   const int hkv, const int chunks, __global const int *lens_q,
                   __global const int *lens_k) {
  /* Work-item (f / FB * NSLICE + slice, c, bh). */
  const int f0 = (int)get_global_id(0) / NSLICE * FB;
  const int c0 = (int)get_global_id(0) % NSLICE * DVT;
  if (f0 >= FEAT)
    return;
  const int c = (int)get_global_id(1);
  const size_t bhk = get_global_id(2);
  const size_t b = bhk / hkv, hk = bhk % hkv;
  const int lq = clattn_lbwd_len(lens_q, b, nq);
#if CAUSAL
  const long off = (long)clattn_lbwd_len(lens_k, b, nk) - lq;
#else
  const long off = 0;
  (void)nk;
  (void)lens_k;
#endif
  const int i0 = (int)clamp((long)c * CHUNK - off, 0L, (long)lq);
  const int i1 = (int)clamp((long)(c + 1) * CHUNK - off, 0L, (long)lq);
  const int group = hq / hkv;
  floatv acc[FB][DVT];
  float z[FB];
  clattn_lbwd_tile_zero(acc, z);
  for (int hh = 0; hh < group; hh++) {
    const size_t row0 = (b * hq + hk * group + hh) * nq;
    for (int i = i0; i < i1; i++) {
      __global const float *gci = gc + (row0 + i) * (HEAD_DIM_V + 1);
      float a[FB];
      floatv gr[DVT];
      clattn_lbwd_feats(qfe + (row0 + i) * FEAT, f0, a);
      clattn_lbwd_slice_f(gci, c0, gr);
      clattn_lbwd_tile_fma(acc, z, a, gr, gci[HEAD_DIM_V]);
    }
  }
  clattn_lbwd_tile_store(acc, z, f0, c0, st + (bhk * (chunks + 1) + c) * SLOT);
}

/* Key row (j, hk, b), features and value rows as vectors. */
void clattn_lbwd_key_row(__global const float *qfe, __global const store_t *k,
                         __global const float *kfe, __global const store_t *v,
                         __global const float *gc, __global const float *st,
                         __global store_t *dk, __global store_t *dv,
                         const int j, const int hk, const int b, const int nq,
                         const int nk, const int hq, const int hkv,
                         const int chunks, const float hinv, const int lq,
                         const int lk) {
  const size_t bhk = (size_t)b * hkv + hk;
  const size_t kr = bhk * nk + j;
  const int c = CAUSAL ? j / CHUNK : chunks;
  __global const float *s = st + (bhk * (chunks + 1) + c) * SLOT;
  floatv kf[FCH], vr[DVCH], df[FCH], dvr[DVCH];
  clattn_lbwd_loadf(kfe + kr * FEAT, kf, FEAT);
  clattn_load_row(v + kr * HEAD_DIM_V, vr, HEAD_DIM_V, 1.0f);
  /* The suffix state: dk' = R v + r, dv = R^T k'. */
  clattn_lbwd_state_dot(s, vr, df);
  floatv r[FCH];
  clattn_lbwd_loadf(s + (size_t)FEAT * HEAD_DIM_V, r, FEAT);
  for (int u = 0; u < FCH; u++)
    df[u] += r[u];
  for (int t = 0; t < DVCH; t++)
    dvr[t] = (floatv)(0.0f);
  __global const float *kfs = kfe + kr * FEAT;
  for (int f = 0; f < FEAT; f++) {
    floatv rf[DVCH];
    clattn_lbwd_loadf(s + (size_t)f * HEAD_DIM_V, rf, HEAD_DIM_V);
    const floatv a = (floatv)(kfs[f]);
    for (int t = 0; t < DVCH; t++)
      dvr[t] = fma(rf[t], a, dvr[t]);
  }
#if CAUSAL
  /* Queries whose L_i falls in this key's chunk and reaches j. */
  const long off = (long)lk - lq;
  const int i0 = (int)clamp((long)j - off, 0L, (long)lq);
  const int i1 = (int)clamp((long)(c + 1) * CHUNK - off, 0L, (long)lq);
  const int group = hq / hkv;
  for (int hh = 0; hh < group; hh++) {
    const size_t row0 = ((size_t)b * hq + (size_t)hk * group + hh) * nq;
    for (int i = i0; i < i1; i++) {
      __global const float *gci = gc + (row0 + i) * (HEAD_DIM_V + 1);
      floatv gr[DVCH], qf[FCH];
      clattn_lbwd_loadf(gci, gr, HEAD_DIM_V);
      clattn_lbwd_loadf(qfe + (row0 + i) * FEAT, qf, FEAT);
      const floatv gv =
          (floatv)(gci[HEAD_DIM_V] + clattn_lbwd_vdot(gr, vr, DVCH));
      const floatv qk = (floatv)(clattn_lbwd_vdot(qf, kf, FCH));
      for (int u = 0; u < FCH; u++)
        df[u] = fma(qf[u], gv, df[u]);
      for (int t = 0; t < DVCH; t++)
        dvr[t] = fma(qk, gr[t], dvr[t]);
    }
  }
#else
  (void)qfe;
  (void)gc;
  (void)nq;
  (void)hq;
  (void)lq;
  (void)lk;
#endif
  float dfeat[FCH * VEC];
  for (int u = 0; u < FCH; u++)
    VSTORE_PRIV(df[u], dfeat + u * VEC);
  clattn_lbwd_store_grad(k + kr * HEAD_DIM, dfeat, j, hinv, dk + kr * HEAD_DIM);
  clattn_store_row(dv + kr * HEAD_DIM_V, dvr, HEAD_DIM_V, 1.0f);
}

/* LR key rows from LR * id of kv head (hk, b). */
CLATTN_KERNEL void
clattn_lbwd_key(__global const float *qfe, __global const store_t *k,
                __global const float *kfe, __global const store_t *v,
                __global const float *gc, __global const float *st,
                __global store_t *dk, __global store_t *dv, const int nq,
                const int nk, const int hq, const int hkv, const int chunks,
                const float hinv, __global const int *lens_q,
                __global const int *lens_k) {
  const int j0 = (int)get_global_id(0) * LR;
  const int hk = (int)get_global_id(1);
  const int b = (int)get_global_id(2);
  const int lq = clattn_lbwd_len(lens_q, b, nq);
  const int lk = clattn_lbwd_len(lens_k, b, nk);
  const float hb = clattn_lbwd_hinv(hinv, lens_q, lens_k, b, nq, nk);
  /* Keys past Lk apart, so that the loop over the sequence's keys stays
   * as tight as without lengths. */
  const int j1 = min(j0 + LR, lk);
  for (int j = j0; j < j1; j++)
    clattn_lbwd_key_row(qfe, k, kfe, v, gc, st, dk, dv, j, hk, b, nq, nk, hq,
                        hkv, chunks, hb, lq, lk);
  for (int j = max(j0, lk); j < j0 + LR && j < nk; j++) {
    const size_t kr = ((size_t)b * hkv + hk) * nk + j;
    for (int a = 0; a < HEAD_DIM; a++)
      STORE1(0.0f, dk, kr * HEAD_DIM + a);
    for (int t = 0; t < HEAD_DIM_V; t++)
      STORE1(0.0f, dv, kr * HEAD_DIM_V + t);
  }
}
