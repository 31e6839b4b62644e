/*
 * linear.cl - linear attention forward, chunk-wise, in O(N) time and memory;
 * also the frame of cosFormer, whose cl/cosformer.cl is compiled just before
 * this file and supplies the position weights (hooks below).
 *
 * out_i = phi(q_i).S / norm(phi(q_i).z) with S = sum phi(k_j) v_j^T and
 * z = sum phi(k_j) over the keys visible to query i. Keys are cut into chunks
 * of CHUNK; a chunk's state is the sum over its own keys, so chunk states are
 * built in parallel, then added up across chunks (an exclusive prefix when
 * causal, a total when not), and each query adds to the state before its
 * chunk the keys of its own chunk that it may see (the masked intra-chunk
 * product). No N x D x Dv tensor is ever formed.
 *
 * Layout: Q [B, Hq, Nq, D], K [B, Hkv, Nk, D], V [B, Hkv, Nk, Dv],
 * O [B, Hq, Nq, Dv] in the storage dtype; the workspace is float
 * [B * Hkv, NC, CHUNK_BLOCK] with NC = ceil(Nk / CHUNK). A chunk's block is
 * a state: FEAT_ROWS rows of DVP floats (rows padded to whole vectors), then
 * the FEAT_ROWS sums z padded to a whole vector; when causal, phi(K) of the
 * chunk follows, transposed to [D][CHUNKP], for the intra-chunk scores.
 * Feature row f = copy * D + d is phi(x)[d] times the position weight of
 * that copy: linear attention has one copy of weight 1, cosFormer two
 * (sin t, cos t).
 *
 * Tunables (common.cl has VEC, the floats per vector along D and Dv):
 *   CAUSAL       0/1, bottom-right causal masking.
 *   FEATURE_MAP  phi: 1 = elu(x) + 1, 2 = relu(x).
 *   CHUNK        keys per chunk; a multiple of BLOCK_M when causal.
 *   ROWS_D       head-dim rows (each in every copy) one work-item of
 *                clattn_linear_state sums.
 *   BLOCK_M      query rows one work-item of clattn_linear_out computes.
 *
 * Kernels, run in this order. Their work-items are independent (no local
 * memory, no barriers), so any work-group size works; the host pads the
 * global size to it and padding work-items return at once.
 *   clattn_linear_state   one work-item: ROWS_D rows of D in every copy, all
 *                         Dv columns and their z, of one chunk of one
 *                         (batch, kv head). Global (ceil(D / ROWS_D), NC,
 *                         B * Hkv).
 *   clattn_linear_prefix  one work-item: one vector of state elements of one
 *                         (batch, kv head), walked over all chunks: causal
 *                         leaves in each chunk the sum of the chunks before
 *                         it, non-causal leaves the total in chunk 0.
 *                         Global (STATE_SIZE / VEC, B * Hkv).
 *   clattn_linear_out     one work-item: BLOCK_M query rows of one
 *                         (batch, head). Non-causal rows are consecutive.
 *                         Causal blocks are aligned to the key chunks by the
 *                         rows' last visible key L = i + Nk - Nq, so that a
 *                         block reads one chunk; the first blocks write the
 *                         rows that see no key. Global (blocks, Hq, B).
 */

#ifndef CAUSAL
#define CAUSAL 0 // bottom-right causal masking
#endif
#ifndef FEATURE_MAP
#define FEATURE_MAP 1 // phi: 1 = elu(x) + 1, 2 = relu(x)
#endif
#ifndef CHUNK
#define CHUNK 64 // keys per chunk state, a multiple of BLOCK_M
#endif
#ifndef ROWS_D
#define ROWS_D 2 // head-dim rows per work-item of clattn_linear_state
#endif
#ifndef BLOCK_M
#define BLOCK_M 4 // query rows per work-item of clattn_linear_out
#endif

#if CAUSAL && (CHUNK % BLOCK_M)
#error "CHUNK must be a multiple of BLOCK_M"
#endif

/* Position hooks. Linear attention weighs nothing by position; cosformer.cl
 * defines POSITIONAL 1, FEAT_COPIES 2 and the weights before this point:
 *   clattn_pos_weight(copy, pos, hinv)    weight of a copy at a 0-based pos;
 *   clattn_pos_weightv(copy, pos1, hinv)  the same for a vector of 1-based
 *                                         positions (as floats);
 *   clattn_rel_weightv(diff, hinv)        sum over copies of the product of
 *                                         a query's and a key's weights, as a
 *                                         function of qpos - kpos (floats). */
#ifndef POSITIONAL
#define POSITIONAL 0
#define FEAT_COPIES 1

/* The factor that turns the numerator into the output. A row that sees no
 * key has numerator 0 and so gets 0. */
float clattn_norm(const float den, const float eps) {
  return 1.0f / (den + eps);
}
#endif

#define FEAT_ROWS (FEAT_COPIES * HEAD_DIM)
#define DPAD (DCH * VEC)
#define DVP (DVCH * VEC)
#define ZPAD ((FEAT_ROWS + VEC - 1) / VEC * VEC)
#define STATE_SIZE (FEAT_ROWS * DVP + ZPAD)
/* Keys clattn_linear_state takes at once: phi and the position weights are
 * then computed on whole vectors. */
#define KEY_GROUP VEC
#define CHUNKP ((CHUNK + VEC - 1) / VEC * VEC)
#if CAUSAL
/* The state, then phi(K) transposed to [D][CHUNKP]. */
#define CHUNK_BLOCK (STATE_SIZE + HEAD_DIM * CHUNKP)
#else
#define CHUNK_BLOCK STATE_SIZE
#endif
/* Row-minus-key distances a causal block of clattn_linear_out can meet. */
#define REL_TAB ((CHUNKP + BLOCK_M - 1 + VEC - 1) / VEC * VEC)

#if FEATURE_MAP == 2
#define PHI(x) fmax((x), 0.0f)
#else
/* elu(x) + 1; x is a plain variable, evaluated more than once. */
#define PHI(x) ((x) > 0.0f ? (x) + 1.0f : exp(x))
#endif

/* What comparing two floatv gives, for select(). */
#if VEC == 1
typedef int maskv;
#else
typedef CLATTN_CAT(int, VEC) maskv;
#endif

/* The workspace is float whatever the storage dtype. */
#define FLOADV(p) VLOAD_PRIV(p)
#define FSTOREV(x, p) VSTORE_PRIV((x), (p))

/* The helpers below are always inlined: their loops then have constant trip
 * counts and unroll, which keeps rows in registers rather than on the
 * stack (a factor of 2 to 3 on PoCL). */

/* phi in place on n floats, a vector at a time: exp on whole vectors costs a
 * fraction of n scalar calls. */
static inline __attribute__((always_inline)) void
clattn_phi_row(float *x, const int n) {
  const int full = n / VEC;
#pragma unroll
  for (int c = 0; c < full; c++) {
    const floatv y = VLOAD_PRIV(x + c * VEC);
    VSTORE_PRIV(PHI(y), x + c * VEC);
  }
#pragma unroll
  for (int t = full * VEC; t < n; t++) {
    const float y = x[t];
    x[t] = PHI(y);
  }
}

/* clattn_load_row of common.cl, unrolled, without the multiplier. */
static inline __attribute__((always_inline)) void
clattn_lin_load(__global const store_t *p, floatv *dst, const int n) {
  const int full = n / VEC;
#pragma unroll
  for (int c = 0; c < full; c++)
    dst[c] = VLOAD(p + c * VEC);
  if (n % VEC) {
    float tmp[VEC];
#pragma unroll
    for (int t = 0; t < VEC; t++)
      tmp[t] = full * VEC + t < n ? LOAD1(p, full * VEC + t) : 0.0f;
    dst[full] = VLOAD_PRIV(tmp);
  }
}

/* Rows past D (only when ROWS_D does not divide D) repeat row D - 1. Rows
 * known to be consecutive load as one vector. */
#if HEAD_DIM % ROWS_D
#define KROW(d) min((d), HEAD_DIM - 1)
#else
#define KROW(d) (d)
#endif
#define VSTORE_PRIV_R(x, p) CLATTN_CAT(vstore, ROWS_D)((x), 0, (p))

/* The ROWS_D elements d0 .. of a key row: one vector load when they are
 * known to be consecutive, which beats a gather per row. */
static inline __attribute__((always_inline)) void
clattn_load_krow(__global const store_t *p, const int d0, float *dst) {
#if HEAD_DIM % ROWS_D == 0 && (ROWS_D == 2 || ROWS_D == 4 || ROWS_D == 8 ||   \
                               ROWS_D == 16)
  VSTORE_PRIV_R(VLOADN_F(ROWS_D, p + d0), dst);
#else
#pragma unroll
  for (int r = 0; r < ROWS_D; r++)
    dst[r] = LOAD1(p, KROW(d0 + r));
#endif
}

/* Asks the cache for part `part` of `parts` of the n bytes at p, one 64-byte
 * line at a time. The work-items of a chunk each ask for their part of the
 * next chunk, so that it streams in from memory while this one is computed;
 * the hardware prefetchers alone leave the cores waiting once K and V no
 * longer fit the last-level cache. Only where clang targets x86 (PoCL); a
 * no-op elsewhere. */
static inline __attribute__((always_inline)) void
clattn_prefetch(__global const void *p, const size_t n, const int part,
                const int parts) {
#if defined(__clang__) && defined(__x86_64__)
  __global const char *b = (__global const char *)p;
  for (size_t off = (size_t)part * 64; off < n; off += (size_t)parts * 64)
    __builtin_prefetch(b + off);
#else
  (void)p, (void)n, (void)part, (void)parts;
#endif
}

/* (floatv)(0, 1, ..., VEC - 1). */
static inline __attribute__((always_inline)) floatv clattn_iota(void) {
  float t[VEC];
#pragma unroll
  for (int i = 0; i < VEC; i++)
    t[i] = (float)i;
  return VLOAD_PRIV(t);
}

/* Stores a state: the FEAT_ROWS rows this work-item holds and their z. */
static inline __attribute__((always_inline)) void
clattn_store_state(__global float *st, const int d0,
                   floatv (*acc)[ROWS_D][DVCH], floatv (*zv)[ROWS_D]) {
#pragma unroll
  for (int r = 0; r < ROWS_D; r++) {
    if (d0 + r < HEAD_DIM) {
#pragma unroll
      for (int cp = 0; cp < FEAT_COPIES; cp++) {
        const int f = cp * HEAD_DIM + d0 + r;
#pragma unroll
        for (int cc = 0; cc < DVCH; cc++)
          FSTOREV(acc[cp][r][cc], st + (size_t)f * DVP + cc * VEC);
        st[FEAT_ROWS * DVP + f] = HSUM(zv[cp][r]);
      }
    }
  }
}

/* Adds the keys of chunk c to rows d0 .. d0 + ROWS_D - 1 (in every copy) of
 * a state (acc, zv); when causal it keeps phi(K) of the chunk at st. Rows
 * past D (in the last work-item) are summed but not stored, which keeps the
 * inner loop free of guards; z is summed in vectors over the keys of a
 * group. */
static inline __attribute__((always_inline)) void
clattn_state_chunk(__global const store_t *k, __global const store_t *v,
                   __global float *st, const int nk, const int c,
                   const int d0, const float hinv,
                   floatv (*acc)[ROWS_D][DVCH], floatv (*zv)[ROWS_D]) {
#if !CAUSAL
  (void)st;
#endif
  const int j1 = min((c + 1) * CHUNK, nk);
  for (int j0 = c * CHUNK; j0 < j1; j0 += KEY_GROUP) {
    /* phi(k) of the group, row by row with keys along a vector; keys past
     * the chunk are read from its last key and then zeroed. */
    float kq[KEY_GROUP][ROWS_D], kt[ROWS_D][KEY_GROUP];
#pragma unroll
    for (int jj = 0; jj < KEY_GROUP; jj++)
      clattn_load_krow(k + (size_t)min(j0 + jj, j1 - 1) * HEAD_DIM, d0,
                       kq[jj]);
#pragma unroll
    for (int r = 0; r < ROWS_D; r++) {
#pragma unroll
      for (int jj = 0; jj < KEY_GROUP; jj++)
        kt[r][jj] = kq[jj][r];
      clattn_phi_row(kt[r], KEY_GROUP);
    }
#if POSITIONAL
    const floatv pos1 = clattn_iota() + (float)(j0 + 1);
    floatv wv[FEAT_COPIES];
#pragma unroll
    for (int cp = 0; cp < FEAT_COPIES; cp++)
      wv[cp] = clattn_pos_weightv(cp, pos1, hinv);
#else
    (void)hinv;
#endif
    /* Keys past the chunk; small integers, exact as floats. */
    const maskv live = clattn_iota() < (float)(j1 - j0);
    float kw[FEAT_COPIES][ROWS_D][KEY_GROUP];
#pragma unroll
    for (int r = 0; r < ROWS_D; r++) {
      const floatv x = select((floatv)(0.0f), VLOAD_PRIV(kt[r]), live);
#if CAUSAL
      /* Kept for the intra-chunk scores of clattn_linear_out. */
      if (d0 + r < HEAD_DIM)
        FSTOREV(x, st + STATE_SIZE + (size_t)(d0 + r) * CHUNKP +
                       (j0 - c * CHUNK));
#endif
#pragma unroll
      for (int cp = 0; cp < FEAT_COPIES; cp++) {
#if POSITIONAL
        const floatv xw = x * wv[cp];
#else
        const floatv xw = x;
#endif
        zv[cp][r] += xw;
        VSTORE_PRIV(xw, kw[cp][r]);
      }
    }
#pragma unroll
    for (int jj = 0; jj < KEY_GROUP; jj++) {
      floatv vr[DVCH];
      clattn_lin_load(v + (size_t)min(j0 + jj, j1 - 1) * HEAD_DIM_V, vr,
                      HEAD_DIM_V);
#pragma unroll
      for (int cp = 0; cp < FEAT_COPIES; cp++) {
#pragma unroll
        for (int r = 0; r < ROWS_D; r++) {
          const floatv x = (floatv)(kw[cp][r][jj]);
#pragma unroll
          for (int cc = 0; cc < DVCH; cc++)
            acc[cp][r][cc] = fma(x, vr[cc], acc[cp][r][cc]);
        }
      }
    }
  }
}

__kernel void clattn_linear_state(__global const store_t *k,
                                  __global const store_t *v,
                                  __global float *ws, const int nk,
                                  const int nchunks, const float hinv) {
  const int d0 = (int)get_global_id(0) * ROWS_D;
  const int c = (int)get_global_id(1);
  const int bh = (int)get_global_id(2);
  if (d0 >= HEAD_DIM)
    return; /* padding of the global size; no barriers follow */
  k += (size_t)bh * nk * HEAD_DIM;
  v += (size_t)bh * nk * HEAD_DIM_V;
  __global float *st = ws + ((size_t)bh * nchunks + c) * CHUNK_BLOCK;

  floatv acc[FEAT_COPIES][ROWS_D][DVCH];
  floatv zv[FEAT_COPIES][ROWS_D];
#pragma unroll
  for (int cp = 0; cp < FEAT_COPIES; cp++) {
#pragma unroll
    for (int r = 0; r < ROWS_D; r++) {
#pragma unroll
      for (int cc = 0; cc < DVCH; cc++)
        acc[cp][r][cc] = (floatv)(0.0f);
      zv[cp][r] = (floatv)(0.0f);
    }
  }
  const int next = min((c + 2) * CHUNK, nk) - (c + 1) * CHUNK;
  if (next > 0) {
    const int part = d0 / ROWS_D, parts = (HEAD_DIM + ROWS_D - 1) / ROWS_D;
    clattn_prefetch(k + (size_t)(c + 1) * CHUNK * HEAD_DIM,
                    (size_t)next * HEAD_DIM * sizeof(store_t), part, parts);
    clattn_prefetch(v + (size_t)(c + 1) * CHUNK * HEAD_DIM_V,
                    (size_t)next * HEAD_DIM_V * sizeof(store_t), part, parts);
  }
  clattn_state_chunk(k, v, st, nk, c, d0, hinv, acc, zv);
  clattn_store_state(st, d0, acc, zv);
  /* The prefix pass reads z by whole vectors: give the padding a value. */
  if (d0 == 0) {
    for (int f = FEAT_ROWS; f < ZPAD; f++)
      st[FEAT_ROWS * DVP + f] = 0.0f;
  }
}

__kernel void clattn_linear_prefix(__global float *ws, const int nchunks) {
  const int e = (int)get_global_id(0);
  const int bh = (int)get_global_id(1);
  if (e >= STATE_SIZE / VEC)
    return; /* padding of the global size */
  __global float *p =
      ws + (size_t)bh * nchunks * CHUNK_BLOCK + (size_t)e * VEC;
  floatv run = (floatv)(0.0f);
  for (int c = 0; c < nchunks; c++) {
    __global float *pc = p + (size_t)c * CHUNK_BLOCK;
    const floatv x = FLOADV(pc);
#if CAUSAL
    FSTOREV(run, pc);
#endif
    run += x;
  }
#if !CAUSAL
  FSTOREV(run, p);
#endif
}

__kernel void clattn_linear_out(__global const store_t *q,
                                __global const store_t *v,
                                __global const float *ws, __global store_t *o,
                                const int nq, const int nk, const int hq,
                                const int hkv, const int nchunks,
                                const float eps, const float hinv) {
  const int g = (int)get_global_id(0);
  const int h = (int)get_global_id(1);
  const int b = (int)get_global_id(2);
  const int bh = b * hkv + h / (hq / hkv);
  const size_t qrow0 = ((size_t)b * hq + h) * nq;
#if CAUSAL
  const int off = nk - nq;
  /* Rows i < -off see no key at all; the first blocks zero them. */
  const int zero_rows = clamp(-off, 0, nq);
  const int nzb = (zero_rows + BLOCK_M - 1) / BLOCK_M;
  if (g < nzb) {
    for (int r = 0; r < BLOCK_M; r++) {
      const int i = g * BLOCK_M + r;
      if (i < zero_rows) {
        for (int d = 0; d < HEAD_DIM_V; d++)
          STORE1(0.0f, o, (qrow0 + i) * HEAD_DIM_V + d);
      }
    }
    return;
  }
  /* Blocks of BLOCK_M consecutive limits L, from the block of the first
   * row's limit on; BLOCK_M divides CHUNK, so a block is in one chunk. */
  const int l0 = (max(off, 0) / BLOCK_M + g - nzb) * BLOCK_M;
  if (l0 >= nk)
    return; /* padding of the global size */
  const int c = l0 / CHUNK;
  const int i0 = l0 - off; /* row of l0; rows below 0 are not written */
#else
  const int i0 = g * BLOCK_M;
  if (i0 >= nq)
    return; /* padding of the global size */
  const int c = 0; /* the prefix pass left the total there */
#endif
  __global const float *st = ws + ((size_t)bh * nchunks + c) * CHUNK_BLOCK;

  /* phi(q) of each row as scalars (zero-padded to whole vectors) and the
   * row's position weights. Rows outside the output repeat a valid row. */
  float qs[BLOCK_M][DPAD];
  float w[BLOCK_M][FEAT_COPIES];
#pragma unroll
  for (int r = 0; r < BLOCK_M; r++) {
    const int i = clamp(i0 + r, 0, nq - 1);
    for (int d = 0; d < HEAD_DIM; d++)
      qs[r][d] = LOAD1(q, (qrow0 + i) * HEAD_DIM + d);
    clattn_phi_row(qs[r], HEAD_DIM);
    for (int d = HEAD_DIM; d < DPAD; d++)
      qs[r][d] = 0.0f;
#pragma unroll
    for (int cp = 0; cp < FEAT_COPIES; cp++) {
#if POSITIONAL
      w[r][cp] = clattn_pos_weight(cp, i, hinv);
#else
      w[r][cp] = 1.0f;
#endif
    }
  }

  floatv acc[BLOCK_M][DVCH];
  float den[BLOCK_M];
#pragma unroll
  for (int r = 0; r < BLOCK_M; r++) {
#pragma unroll
    for (int cc = 0; cc < DVCH; cc++)
      acc[r][cc] = (floatv)(0.0f);
    den[r] = 0.0f;
  }

  /* Keys of earlier chunks (all keys when not causal), through the state. */
#pragma unroll
  for (int cp = 0; cp < FEAT_COPIES; cp++) {
    for (int d = 0; d < HEAD_DIM; d++) {
      const int f = cp * HEAD_DIM + d;
      floatv sr[DVCH];
#pragma unroll
      for (int cc = 0; cc < DVCH; cc++)
        sr[cc] = FLOADV(st + (size_t)f * DVP + cc * VEC);
      const float zf = st[FEAT_ROWS * DVP + f];
#pragma unroll
      for (int r = 0; r < BLOCK_M; r++) {
        const float a = qs[r][d] * w[r][cp];
        den[r] = fma(a, zf, den[r]);
#pragma unroll
        for (int cc = 0; cc < DVCH; cc++)
          acc[r][cc] = fma((floatv)(a), sr[cc], acc[r][cc]);
      }
    }
  }

#if CAUSAL
  /* Keys of the block's own chunk up to each row's limit: scores
   * phi(q_i).phi(k_j) (times the position weight of i - j), VEC keys at a
   * time against the transposed phi(K) the state kernel left, then P.V. */
  const int cs = c * CHUNK;
  const int nkeys = min(l0 + BLOCK_M, nk) - cs;
  __global const float *kt = st + STATE_SIZE;
  v += (size_t)bh * nk * HEAD_DIM_V;
  const int next = min(cs + 2 * CHUNK, nk) - (cs + CHUNK);
  if (next > 0) {
    const int part = (l0 - cs) / BLOCK_M, parts = CHUNK / BLOCK_M;
    clattn_prefetch(st + CHUNK_BLOCK, CHUNK_BLOCK * sizeof(float), part,
                    parts);
    clattn_prefetch(v + (size_t)(cs + CHUNK) * HEAD_DIM_V,
                    (size_t)next * HEAD_DIM_V * sizeof(store_t), part, parts);
  }
#if POSITIONAL
  /* The weight of row r and key cs + u - (BLOCK_M - 1) + r, so that one
   * row's weights for a group of keys are consecutive. */
  float rel[REL_TAB];
#pragma unroll
  for (int t = 0; t < REL_TAB; t += VEC)
    VSTORE_PRIV(clattn_rel_weightv(
                    (float)(i0 - cs + BLOCK_M - 1 - t) - clattn_iota(), hinv),
                rel + t);
#endif
  float sc[BLOCK_M][CHUNKP];
  floatv denv[BLOCK_M];
#pragma unroll
  for (int r = 0; r < BLOCK_M; r++)
    denv[r] = (floatv)(0.0f);
  for (int g = 0; g * VEC < nkeys; g++) {
    floatv sv[BLOCK_M];
#pragma unroll
    for (int r = 0; r < BLOCK_M; r++)
      sv[r] = (floatv)(0.0f);
    for (int d = 0; d < HEAD_DIM; d++) {
      const floatv kv = FLOADV(kt + (size_t)d * CHUNKP + g * VEC);
#pragma unroll
      for (int r = 0; r < BLOCK_M; r++)
        sv[r] = fma((floatv)(qs[r][d]), kv, sv[r]);
    }
    const floatv jrel = clattn_iota() + (float)(g * VEC);
#pragma unroll
    for (int r = 0; r < BLOCK_M; r++) {
#if POSITIONAL
      sv[r] *= VLOAD_PRIV(rel + g * VEC + BLOCK_M - 1 - r);
#endif
      sv[r] = select((floatv)(0.0f), sv[r], jrel <= (float)(l0 + r - cs));
      denv[r] += sv[r];
      VSTORE_PRIV(sv[r], sc[r] + g * VEC);
    }
  }
  for (int j = 0; j < nkeys; j++) {
    floatv vr[DVCH];
    clattn_lin_load(v + (size_t)(cs + j) * HEAD_DIM_V, vr, HEAD_DIM_V);
#pragma unroll
    for (int r = 0; r < BLOCK_M; r++) {
      const floatv sj = (floatv)(sc[r][j]);
#pragma unroll
      for (int cc = 0; cc < DVCH; cc++)
        acc[r][cc] = fma(sj, vr[cc], acc[r][cc]);
    }
  }
#pragma unroll
  for (int r = 0; r < BLOCK_M; r++)
    den[r] += HSUM(denv[r]);
#else
  (void)v;
#endif

#pragma unroll
  for (int r = 0; r < BLOCK_M; r++) {
    const int i = i0 + r;
    if (i >= 0 && i < nq)
      clattn_store_row(o + (qrow0 + i) * HEAD_DIM_V, acc[r], HEAD_DIM_V,
                       clattn_norm(den[r], eps));
  }
}
