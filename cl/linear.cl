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
 *   DVT          vectors of Dv one work-item's accumulators of
 *                clattn_linear_out hold (a slice of Dv); a work-item walks
 *                every slice of Dv in turn, so that phi, the sums z and the
 *                intra-chunk scores, which do not depend on Dv, are
 *                computed once.
 *   SDVT         the same for clattn_linear_state (default DVT).
 * Both products are register-tiled micro-GEMMs: the state kernel keeps
 * ROWS_D x copies x SDVT vector accumulators, the output kernel BLOCK_M x
 * DVT, across a whole chunk (or the whole state). The host sizes them from
 * the device's native vector width and the register file that implies, so
 * that they never spill.
 *
 * Kernels, run in this order. Their work-items are independent (no local
 * memory, no barriers), so any work-group size works; the host pads the
 * global size to it and padding work-items return at once.
 *   clattn_linear_state   one work-item: ROWS_D rows of D in every copy, of
 *                         one chunk of one (batch, kv head). It computes
 *                         phi(K) of its rows for the chunk (vectors along
 *                         the keys) and their sums z, then the product with
 *                         V, slice by slice. Global (ceil(D / ROWS_D), NC,
 *                         B * Hkv).
 *   clattn_linear_prefix  one work-item: one vector of state elements of one
 *                         (batch, kv head), walked over all chunks: causal
 *                         leaves in each chunk the sum of the chunks before
 *                         it, non-causal leaves the total in chunk 0.
 *                         Global (STATE_SIZE / VEC, B * Hkv).
 *   clattn_linear_out     one work-item: BLOCK_M query rows of one
 *                         (batch, head), slice by slice. Non-causal rows
 *                         are consecutive. Causal blocks are aligned to the
 *                         key chunks by the rows' last visible key
 *                         L = i + Nk - Nq, so that a block reads one chunk;
 *                         the first blocks write the rows that see no key.
 *                         Global (blocks, Hq, B).
 *
 * Per-sequence lengths: every kernel takes int32 [B] buffers lens_q and
 * lens_k (NULL: Nq and Nk; values are clamped to 0..N). Sequence b is then
 * Lq rows and Lk keys: keys j >= Lk enter no state (their chunks' states
 * are 0), rows i >= Lq are written as 0, causal rows see j <= i + Lk - Lq,
 * and cosFormer's default M is max(Lq, Lk). Loops are bounded per chunk
 * and per block of rows, never tested per element, and nothing past a
 * sequence is read into a sum, so padding may hold anything. With lengths,
 * causal runs take extra blocks after the computed ones, which zero the rows
 * past Lq.
 *
 * Indices that run over B * Hkv or B * Hq, and every offset, are size_t:
 * their products can pass 2^31 where lengths alone cannot.
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

#ifndef SDVT
#define SDVT DVT // vectors of Dv per slice of clattn_linear_state
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

/* Length of sequence b, clamped to 0..n; n without a lengths buffer. */
int clattn_lin_len(__global const int *lens, const size_t b, const int n) {
  return lens ? clamp(lens[b], 0, n) : n;
}

/* t = pi * pos * hinv: the host's 1 / (2M) for a given M; negative for the
 * default M = max(Lq, Lk) of the sequence. */
float clattn_lin_hinv(const float hinv, const int lq, const int lk) {
  return hinv >= 0.0f ? hinv : 0.5f / (float)max(max(lq, lk), 1);
}

/* What comparing two floatv gives, for select(). */
#if VEC == 1
typedef int maskv;
#else
typedef CLATTN_CAT(int, VEC) maskv;
#endif

#if VEC == 1
#define LIN_AS_INT(x) as_int(x)
#define LIN_AS_FLOAT(x) as_float(x)
#else
#define LIN_AS_INT(x) CLATTN_CAT(as_int, VEC)(x)
#define LIN_AS_FLOAT(x) CLATTN_CAT(as_float, VEC)(x)
#endif

/* e^x for elu's negative side, on whole vectors: Cephes' expf, that is
 * n = round(x log2 e), r = x - n ln 2 with ln 2 in two parts, e^r from a
 * degree-7 polynomial (|r| <= ln(2) / 2), and 2^n from the exponent bits,
 * n rounded by adding 1.5 * 2^23 + 127 as in clattn_sigmoid2k: at most
 * 1.01 ulp from e^x over [-87, 0] (20 million points against double).
 * Below -87 (near the smallest normal float) it gives 0; NaN stays NaN.
 * The runtime's exp covers every input with slower paths: with AVX2 code
 * on PoCL it was 13% of the state kernel's time at D = 128. Only x <= 0 is
 * asked for; larger x give values PHI drops. */
static inline __attribute__((always_inline)) floatv
clattn_exp_neg(const floatv x) {
  const maskv tiny = x < -87.0f;
  const floatv xc = select(x, (floatv)(-87.0f), tiny);
  const floatv r = fma(xc, (floatv)(M_LOG2E_F), (floatv)(12583039.0f));
  const floatv n = r - 12583039.0f;
  floatv f = fma(n, (floatv)(-0.693359375f), xc);
  f = fma(n, (floatv)(2.12194440e-4f), f);
  floatv p = (floatv)(1.9875691500e-4f);
  p = fma(p, f, (floatv)(1.3981999507e-3f));
  p = fma(p, f, (floatv)(8.3334519073e-3f));
  p = fma(p, f, (floatv)(4.1665795894e-2f));
  p = fma(p, f, (floatv)(1.6666665459e-1f));
  p = fma(p, f, (floatv)(5.0000001201e-1f));
  p = fma(p, f * f, f) + 1.0f;
  const floatv scale = LIN_AS_FLOAT(LIN_AS_INT(r) << 23);
  return select(p * scale, (floatv)(0.0f), tiny);
}

#if FEATURE_MAP == 2
#define PHI(x) fmax((x), 0.0f)
#else
/* elu(x) + 1; x is a plain variable, evaluated more than once. */
#define PHI(x) select(clattn_exp_neg(x), (x) + 1.0f, (x) > 0.0f)
#endif

/* The workspace is float whatever the storage dtype. */
#define FLOADV(p) VLOAD_PRIV(p)
#define FSTOREV(x, p) VSTORE_PRIV((x), (p))

/* The helpers below are always inlined: their loops then have constant trip
 * counts and unroll, which keeps rows in registers rather than on the
 * stack. */

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

/* Rows past D (only when ROWS_D does not divide D) repeat row D - 1; they
 * are summed but never stored, which keeps the loops free of guards. */
#if HEAD_DIM % ROWS_D
#define KROW(d) min((d), HEAD_DIM - 1)
#else
#define KROW(d) (d)
#endif

CLATTN_KERNEL void
clattn_linear_state(__global const store_t *k, __global const store_t *v,
                    __global float *ws, const int nq, const int nk,
                    const int hkv, const int nchunks, float hinv,
                    __global const int *lens_q, __global const int *lens_k) {
  const int gx = (int)get_global_id(0);
  const int d0 = gx * ROWS_D;
  const int c = (int)get_global_id(1);
  const size_t bh = get_global_id(2);
  if (d0 >= HEAD_DIM)
    return; /* padding of the global size; no barriers follow */
  k += bh * (size_t)nk * HEAD_DIM;
  v += bh * (size_t)nk * HEAD_DIM_V;
  __global float *st = ws + (bh * (size_t)nchunks + (size_t)c) * CHUNK_BLOCK;
  const size_t b = bh / (size_t)hkv;
  const int lk = clattn_lin_len(lens_k, b, nk);
#if POSITIONAL
  hinv = clattn_lin_hinv(hinv, clattn_lin_len(lens_q, b, nq), lk);
#else
  (void)nq;
  (void)lens_q;
#endif
  const int j0 = c * CHUNK;
  /* Keys of the chunk within the sequence; none (a zero state) past Lk. */
  const int n = min(CHUNK, lk - j0);
  const int next = min(j0 + 2 * CHUNK, lk) - (j0 + CHUNK);
  if (next > 0) {
    const int parts = (HEAD_DIM + ROWS_D - 1) / ROWS_D;
    clattn_prefetch(k + (size_t)(j0 + CHUNK) * HEAD_DIM,
                    (size_t)next * HEAD_DIM * sizeof(store_t), gx, parts);
    clattn_prefetch(v + (size_t)(j0 + CHUNK) * HEAD_DIM_V,
                    (size_t)next * HEAD_DIM_V * sizeof(store_t), gx, parts);
  }

  /* First phi(k) of this work-item's rows over the whole chunk, keys along
   * vectors so that phi and the position weights run on whole vectors; the
   * product below then broadcasts them one key at a time. Keys past the
   * chunk are read from its last key and zeroed. */
  float kw[FEAT_COPIES][ROWS_D][CHUNKP];
  floatv zv[FEAT_COPIES][ROWS_D];
#pragma unroll
  for (int cp = 0; cp < FEAT_COPIES; cp++) {
#pragma unroll
    for (int r = 0; r < ROWS_D; r++)
      zv[cp][r] = (floatv)(0.0f);
  }
  for (int g = 0; g < n; g += VEC) {
    /* Small integers: exact as floats. */
    const maskv live = clattn_iota() < (float)(n - g);
#if POSITIONAL
    const floatv pos1 = clattn_iota() + (float)(j0 + g + 1);
    floatv wv[FEAT_COPIES];
#pragma unroll
    for (int cp = 0; cp < FEAT_COPIES; cp++)
      wv[cp] = clattn_pos_weightv(cp, pos1, hinv);
#else
    (void)hinv;
#endif
#pragma unroll
    for (int r = 0; r < ROWS_D; r++) {
      float t[VEC];
#pragma unroll
      for (int u = 0; u < VEC; u++)
        t[u] = LOAD1(k, (size_t)(j0 + min(g + u, n - 1)) * HEAD_DIM +
                            KROW(d0 + r));
      const floatv y = VLOAD_PRIV(t);
      const floatv x = select((floatv)(0.0f), PHI(y), live);
#if CAUSAL
      /* Kept for the intra-chunk scores of clattn_linear_out. */
      if (d0 + r < HEAD_DIM)
        FSTOREV(x, st + STATE_SIZE + (size_t)(d0 + r) * CHUNKP + g);
#endif
#pragma unroll
      for (int cp = 0; cp < FEAT_COPIES; cp++) {
#if POSITIONAL
        const floatv xw = x * wv[cp];
#else
        const floatv xw = x;
#endif
        zv[cp][r] += xw;
        VSTORE_PRIV(xw, kw[cp][r] + g);
      }
    }
  }

  /* The sums z, once. */
#pragma unroll
  for (int r = 0; r < ROWS_D; r++) {
    if (d0 + r < HEAD_DIM) {
#pragma unroll
      for (int cp = 0; cp < FEAT_COPIES; cp++)
        st[FEAT_ROWS * DVP + cp * HEAD_DIM + d0 + r] = HSUM(zv[cp][r]);
    }
  }

  /* The micro-GEMM, one Dv slice after another on the same phi(K) rows:
   * rows of phi(K)^T times the slice of V, the accumulators (ROWS_D x
   * copies x SDVT vectors, sized by the host to the register file) held
   * across the chunk. */
  for (int s0 = 0; s0 < DVCH; s0 += SDVT) {
    floatv acc[FEAT_COPIES][ROWS_D][SDVT];
#pragma unroll
    for (int cp = 0; cp < FEAT_COPIES; cp++) {
#pragma unroll
      for (int r = 0; r < ROWS_D; r++) {
#pragma unroll
        for (int t = 0; t < SDVT; t++)
          acc[cp][r][t] = (floatv)(0.0f);
      }
    }
    for (int j = 0; j < n; j++) {
      floatv vr[SDVT];
      clattn_load_vecs(v + (size_t)(j0 + j) * HEAD_DIM_V, s0, SDVT, vr);
#pragma unroll
      for (int cp = 0; cp < FEAT_COPIES; cp++) {
#pragma unroll
        for (int r = 0; r < ROWS_D; r++) {
          const floatv a = (floatv)(kw[cp][r][j]);
#pragma unroll
          for (int t = 0; t < SDVT; t++)
            acc[cp][r][t] = fma(a, vr[t], acc[cp][r][t]);
        }
      }
    }

#pragma unroll
    for (int r = 0; r < ROWS_D; r++) {
      if (d0 + r < HEAD_DIM) {
#pragma unroll
        for (int cp = 0; cp < FEAT_COPIES; cp++) {
          const int f = cp * HEAD_DIM + d0 + r;
#pragma unroll
          for (int t = 0; t < SDVT; t++) {
            if (s0 + t < DVCH)
              FSTOREV(acc[cp][r][t], st + (size_t)f * DVP + (s0 + t) * VEC);
          }
        }
      }
    }
  }
  /* The prefix pass reads z by whole vectors: give the padding a value. */
  if (d0 == 0) {
    for (int f = FEAT_ROWS; f < ZPAD; f++)
      st[FEAT_ROWS * DVP + f] = 0.0f;
  }
}

CLATTN_KERNEL void clattn_linear_prefix(__global float *ws, const int nchunks) {
  const int e = (int)get_global_id(0);
  const size_t bh = get_global_id(1);
  if (e >= STATE_SIZE / VEC)
    return; /* padding of the global size */
  __global float *p =
      ws + bh * (size_t)nchunks * CHUNK_BLOCK + (size_t)e * VEC;
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

/* Stores the Dv slice (from vector s0) of one output row times mul. */
static inline __attribute__((always_inline)) void
clattn_store_slice(__global store_t *p, const floatv *src, const int s0,
                   const float mul) {
#pragma unroll
  for (int t = 0; t < DVT; t++) {
    const int e0 = (s0 + t) * VEC;
#if HEAD_DIM_V % (DVT * VEC) == 0
    VSTORE(src[t] * mul, p + e0);
#else
    if (e0 + VEC <= HEAD_DIM_V) {
      VSTORE(src[t] * mul, p + e0);
    } else if (e0 < HEAD_DIM_V) {
      float tmp[VEC];
      VSTORE_PRIV(src[t] * mul, tmp);
      for (int u = 0; e0 + u < HEAD_DIM_V; u++)
        STORE1(tmp[u], p, e0 + u);
    }
#endif
  }
}

/* acc += phi(q) rows (times their position weights: qw holds each row's
 * copies) . the state's Dv slice from vector s0: BLOCK_M x DVT accumulators
 * (sized by the host to the register file), one state row of the slice
 * loaded per feature row and used by every query row, whose factor is read
 * from memory rather than formed in a register. with_den (a constant where
 * it is called): also den += phi(q).z in the same pass, for the first
 * slice. */
static inline __attribute__((always_inline)) void
clattn_state_product(float (*qw)[FEAT_COPIES * DPAD],
                     __global const float *st, const int s0,
                     floatv (*acc)[DVT], float *den, const int with_den) {
#pragma unroll
  for (int cp = 0; cp < FEAT_COPIES; cp++) {
    for (int d = 0; d < HEAD_DIM; d++) {
      const int f = cp * HEAD_DIM + d;
      floatv sr[DVT];
#pragma unroll
      for (int t = 0; t < DVT; t++)
        sr[t] = FLOADV(st + (size_t)f * DVP + min(s0 + t, DVCH - 1) * VEC);
      const float zf = with_den ? st[FEAT_ROWS * DVP + f] : 0.0f;
#pragma unroll
      for (int r = 0; r < BLOCK_M; r++) {
        const float a = qw[r][cp * DPAD + d];
        if (with_den)
          den[r] = fma(a, zf, den[r]);
#pragma unroll
        for (int t = 0; t < DVT; t++)
          acc[r][t] = fma((floatv)(a), sr[t], acc[r][t]);
      }
    }
  }
}

#if CAUSAL
/* The intra-chunk scores of BLOCK_M rows whose limits are l0, l0 + 1, ...:
 * sc[r][j] = phi(q_r).phi(k_{cs + j}) (times the position weight of their
 * distance, from rel), 0 past row r's limit, VEC keys at a time against
 * the transposed phi(K) kt of the chunk; den[r] += their sum. */
static inline __attribute__((always_inline)) void
clattn_chunk_scores(float (*qs)[DPAD], __global const float *kt,
                    const float *rel, const int l0, const int cs,
                    const int nkeys, float (*sc)[CHUNKP], float *den) {
  floatv denv[BLOCK_M];
#pragma unroll
  for (int r = 0; r < BLOCK_M; r++)
    denv[r] = (floatv)(0.0f);
  for (int kg = 0; kg * VEC < nkeys; kg++) {
    floatv sv[BLOCK_M];
#pragma unroll
    for (int r = 0; r < BLOCK_M; r++)
      sv[r] = (floatv)(0.0f);
    for (int d = 0; d < HEAD_DIM; d++) {
      const floatv kv = FLOADV(kt + (size_t)d * CHUNKP + kg * VEC);
#pragma unroll
      for (int r = 0; r < BLOCK_M; r++)
        sv[r] = fma((floatv)(qs[r][d]), kv, sv[r]);
    }
    const floatv jrel = clattn_iota() + (float)(kg * VEC);
#pragma unroll
    for (int r = 0; r < BLOCK_M; r++) {
#if POSITIONAL
      sv[r] *= VLOAD_PRIV(rel + kg * VEC + BLOCK_M - 1 - r);
#else
      (void)rel;
#endif
      sv[r] = select((floatv)(0.0f), sv[r], jrel <= (float)(l0 + r - cs));
      denv[r] += sv[r];
      VSTORE_PRIV(sv[r], sc[r] + kg * VEC);
    }
  }
#pragma unroll
  for (int r = 0; r < BLOCK_M; r++)
    den[r] += HSUM(denv[r]);
}
#endif

/* Stores a row of zeros. */
static inline __attribute__((always_inline)) void
clattn_store_zero_row(__global store_t *p) {
  floatv zero[DVT];
#pragma unroll
  for (int t = 0; t < DVT; t++)
    zero[t] = (floatv)(0.0f);
  for (int s0 = 0; s0 < DVCH; s0 += DVT)
    clattn_store_slice(p, zero, s0, 1.0f);
}

CLATTN_KERNEL void
clattn_linear_out(__global const store_t *q, __global const store_t *v,
                  __global const float *ws, __global store_t *o, const int nq,
                  const int nk, const int hq, const int hkv, const int nchunks,
                  const float eps, float hinv, __global const int *lens_q,
                  __global const int *lens_k) {
  const int g = (int)get_global_id(0);
  const size_t h = get_global_id(1);
  const size_t b = get_global_id(2);
  const size_t bh = b * (size_t)hkv + h / (size_t)(hq / hkv);
  const size_t qrow0 = (b * (size_t)hq + h) * (size_t)nq;
  const int lq = clattn_lin_len(lens_q, b, nq);
  const int lk = clattn_lin_len(lens_k, b, nk);
#if POSITIONAL
  hinv = clattn_lin_hinv(hinv, lq, lk);
#else
  (void)hinv;
#endif
#if CAUSAL
  const int off = lk - lq;
  /* Rows i < -off see no key at all; the first blocks zero them. */
  const int zero_rows = clamp(-off, 0, lq);
  const int nzb = (zero_rows + BLOCK_M - 1) / BLOCK_M;
  /* Then blocks of BLOCK_M consecutive limits L, from the block of the first
   * row's limit to that of Lk - 1; BLOCK_M divides CHUNK, so a block is in
   * one chunk. Rows past Lq come last, in blocks of their own. */
  const int lb0 = max(off, 0) / BLOCK_M;
  const int nlb = zero_rows < lq ? (lk - 1) / BLOCK_M - lb0 + 1 : 0;
  if (g < nzb || g >= nzb + nlb) {
    const int r0 = g < nzb ? g * BLOCK_M : lq + (g - nzb - nlb) * BLOCK_M;
    const int r1 = g < nzb ? zero_rows : nq;
    for (int r = 0; r < BLOCK_M && r0 + r < r1; r++)
      clattn_store_zero_row(o + (qrow0 + (size_t)(r0 + r)) * HEAD_DIM_V);
    return; /* also the padding of the global size */
  }
  const int l0 = (lb0 + g - nzb) * BLOCK_M;
  const int c = l0 / CHUNK;
  const int i0 = l0 - off; /* row of l0; rows below 0 are not written */
#else
  const int i0 = g * BLOCK_M;
  if (i0 >= nq)
    return; /* padding of the global size */
  if (i0 >= lq) {
    for (int r = 0; r < BLOCK_M && i0 + r < nq; r++)
      clattn_store_zero_row(o + (qrow0 + (size_t)(i0 + r)) * HEAD_DIM_V);
    return;
  }
  const int c = 0; /* the prefix pass left the total there */
  (void)lk;
#endif
  __global const float *st =
      ws + (bh * (size_t)nchunks + (size_t)c) * CHUNK_BLOCK;

  /* phi(q) of each row (zero-padded to whole vectors) and, for the product
   * with the state, each of its copies times the copy's position weight.
   * Rows outside the output repeat a valid row. */
  float qs[BLOCK_M][DPAD];
#if POSITIONAL
  float qw[BLOCK_M][FEAT_COPIES * DPAD];
#else
  float(*const qw)[FEAT_COPIES * DPAD] = qs;
#endif
#pragma unroll
  for (int r = 0; r < BLOCK_M; r++) {
    const int i = clamp(i0 + r, 0, nq - 1);
    __global const store_t *qr = q + (qrow0 + (size_t)i) * HEAD_DIM;
#pragma unroll
    for (int dc = 0; dc < DCH; dc++) {
      float t[VEC];
#pragma unroll
      for (int u = 0; u < VEC; u++)
        t[u] = dc * VEC + u < HEAD_DIM ? LOAD1(qr, dc * VEC + u) : 0.0f;
      const floatv y = VLOAD_PRIV(t);
      VSTORE_PRIV(PHI(y), qs[r] + dc * VEC);
    }
    /* phi(0) is 1 for elu + 1: the padding must stay 0. */
    for (int d = HEAD_DIM; d < DPAD; d++)
      qs[r][d] = 0.0f;
#if POSITIONAL
#pragma unroll
    for (int cp = 0; cp < FEAT_COPIES; cp++) {
      const float w = clattn_pos_weight(cp, i, hinv);
#pragma unroll
      for (int dc = 0; dc < DCH; dc++)
        VSTORE_PRIV(VLOAD_PRIV(qs[r] + dc * VEC) * w,
                    qw[r] + cp * DPAD + dc * VEC);
    }
#endif
  }

  /* The denominators phi(q_i).z (position-weighted), with the first slice
   * below. */
  float den[BLOCK_M];
#pragma unroll
  for (int r = 0; r < BLOCK_M; r++)
    den[r] = 0.0f;

#if CAUSAL
  /* Keys of the block's own chunk up to each row's limit: their scores
   * (with the first slice), then P.V, slice by slice. */
  const int cs = c * CHUNK;
  const int nkeys = min(l0 + BLOCK_M, lk) - cs;
  __global const float *kt = st + STATE_SIZE;
  v += bh * (size_t)nk * HEAD_DIM_V;
  /* The blocks of a chunk share out the next chunk's state and values. */
  const int next = min(cs + 2 * CHUNK, lk) - (cs + CHUNK);
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
#else
  const float *rel = NULL; /* no position weights */
#endif
  float sc[BLOCK_M][CHUNKP];
#else
  (void)v;
#endif

  /* One Dv slice after another on the same phi(q) rows: the product with
   * the state's slice, then, when causal, P.V over the chunk's keys; the
   * first slice also computes the denominators and the scores. */
  for (int s0 = 0; s0 < DVCH; s0 += DVT) {
    floatv acc[BLOCK_M][DVT];
#pragma unroll
    for (int r = 0; r < BLOCK_M; r++) {
#pragma unroll
      for (int t = 0; t < DVT; t++)
        acc[r][t] = (floatv)(0.0f);
    }
    if (s0 == 0) {
      clattn_state_product(qw, st, 0, acc, den, 1);
#if CAUSAL
      clattn_chunk_scores(qs, kt, rel, l0, cs, nkeys, sc, den);
#endif
    } else {
      clattn_state_product(qw, st, s0, acc, den, 0);
    }
#if CAUSAL
    for (int j = 0; j < nkeys; j++) {
      floatv vr[DVT];
      clattn_load_slice(v + (size_t)(cs + j) * HEAD_DIM_V, s0, vr);
#pragma unroll
      for (int r = 0; r < BLOCK_M; r++) {
        const floatv sj = (floatv)(sc[r][j]);
#pragma unroll
        for (int t = 0; t < DVT; t++)
          acc[r][t] = fma(sj, vr[t], acc[r][t]);
      }
    }
#endif
    /* Rows past Lq (but within Nq) are zero; causal blocks leave them to
     * the blocks that follow. */
#pragma unroll
    for (int r = 0; r < BLOCK_M; r++) {
      const int i = i0 + r;
      if (i >= 0 && i < lq)
        clattn_store_slice(o + (qrow0 + (size_t)i) * HEAD_DIM_V, acc[r], s0,
                           clattn_norm(den[r], eps));
    }
  }
#if !CAUSAL
  for (int r = 0; r < BLOCK_M; r++) {
    if (i0 + r >= lq && i0 + r < nq)
      clattn_store_zero_row(o + (qrow0 + (size_t)(i0 + r)) * HEAD_DIM_V);
  }
#endif
}
