/*
 * linear.cl - linear attention forward, chunk-wise, in O(N) time and memory;
 * also the frame of cosFormer, whose cl/cosformer.cl is compiled just before
 * this file and replaces the position hooks below.
 *
 * out_i = phi(q_i).S / norm(phi(q_i).z) with S = sum phi(k_j) v_j^T and
 * z = sum phi(k_j) over the keys visible to query i. Keys are cut into chunks
 * of CHUNK; a chunk's state is the sum over its keys alone, so chunk states
 * are built in parallel, then added up across chunks (exclusive prefix when
 * causal, a total when not), and each query adds to the state before its own
 * chunk the keys of its chunk it may see (the masked intra-chunk product).
 * No N x D x Dv tensor is ever formed.
 *
 * Layout: Q [B, Hq, Nq, D], K [B, Hkv, Nk, D], V [B, Hkv, Nk, Dv],
 * O [B, Hq, Nq, Dv] in the storage dtype; the workspace is float
 * [B * Hkv, NC, STATE_SIZE] with NC = ceil(Nk / CHUNK). One chunk's block
 * holds FEAT_ROWS rows of DVP floats (the state, rows padded to whole
 * vectors) and then FEAT_ROWS sums z padded to a whole vector. Feature row f
 * is phi(x)[f % D] times the position weight of copy f / D (linear attention
 * has one copy of weight 1; cosFormer two, sin t and cos t).
 *
 * Tunables (common.cl has VEC, the floats per vector along D and Dv):
 *   CAUSAL       0/1, bottom-right causal masking.
 *   FEATURE_MAP  phi: 1 = elu(x) + 1, 2 = relu(x).
 *   CHUNK        keys per chunk; a multiple of BLOCK_M when causal.
 *   ROWS_D       state rows summed by one work-item of clattn_linear_state.
 *   BLOCK_M      query rows computed by one work-item of clattn_linear_out.
 *
 * Kernels, run in this order; their work-items are independent (no local
 * memory, no barriers), so any work-group size works and the host pads the
 * global size to it:
 *   clattn_linear_state   one work-item: ROWS_D feature rows (all Dv columns
 *                         and their z) of one chunk of one (batch, kv head).
 *                         Global (ceil(FEAT_ROWS / ROWS_D), NC, B * Hkv).
 *   clattn_linear_prefix  one work-item: one vector of state elements of one
 *                         (batch, kv head), walked over all chunks: causal
 *                         leaves in each chunk the sum of the chunks before
 *                         it, non-causal leaves the total in chunk 0.
 *                         Global (STATE_SIZE / VEC, B * Hkv).
 *   clattn_linear_out     one work-item: BLOCK_M query rows of one
 *                         (batch, head). Non-causal rows are consecutive;
 *                         causal blocks are aligned to the key chunks by the
 *                         row's last visible key L = i + Nk - Nq, so one
 *                         block reads one chunk state, and the first blocks
 *                         write the rows that see no key. Global
 *                         (blocks, Hq, B).
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
#define ROWS_D 4 // state rows per work-item of clattn_linear_state
#endif
#ifndef BLOCK_M
#define BLOCK_M 4 // query rows per work-item of clattn_linear_out
#endif

#if CAUSAL && (CHUNK % BLOCK_M)
#error "CHUNK must be a multiple of BLOCK_M"
#endif

/* Position hooks. Linear attention weighs nothing by position; cosformer.cl
 * defines FEAT_COPIES 2 and its own versions before this point. */
#ifndef FEAT_COPIES
#define FEAT_COPIES 1

/* Weight of feature copy `copy` at sequence position pos (0-based). */
float clattn_pos_weight(const int copy, const int pos, const float hinv) {
  (void)copy, (void)pos, (void)hinv;
  return 1.0f;
}

/* The product of the position weights of a query at position qpos and a key
 * at kpos summed over the copies, as a function of diff = qpos - kpos. */
float clattn_rel_weight(const int diff, const float hinv) {
  (void)diff, (void)hinv;
  return 1.0f;
}

/* The factor that turns the numerator into the output. A row that sees no
 * key has numerator 0 and gets 0. */
float clattn_norm(const float den, const float eps) {
  return 1.0f / (den + eps);
}
#endif

#define FEAT_ROWS (FEAT_COPIES * HEAD_DIM)
#define DPAD (DCH * VEC)
#define DVP (DVCH * VEC)
#define ZPAD ((FEAT_ROWS + VEC - 1) / VEC * VEC)
#define STATE_SIZE (FEAT_ROWS * DVP + ZPAD)

#if FEATURE_MAP == 2
#define PHI(x) fmax((x), 0.0f)
#else
/* elu(x) + 1; x is a plain variable, evaluated more than once. */
#define PHI(x) ((x) > 0.0f ? (x) + 1.0f : exp(x))
#endif

/* The workspace is float whatever the storage dtype. */
#define FLOADV(p) VLOAD_PRIV(p)
#define FSTOREV(x, p) VSTORE_PRIV((x), (p))

__kernel void clattn_linear_state(__global const store_t *k,
                                  __global const store_t *v,
                                  __global float *ws, const int nk,
                                  const int nchunks, const float hinv) {
  const int f0 = (int)get_global_id(0) * ROWS_D;
  const int c = (int)get_global_id(1);
  const int bh = (int)get_global_id(2);
  if (f0 >= FEAT_ROWS)
    return; /* padding of the global size; no barriers follow */
  k += (size_t)bh * nk * HEAD_DIM;
  v += (size_t)bh * nk * HEAD_DIM_V;
  __global float *st = ws + ((size_t)bh * nchunks + c) * STATE_SIZE;

  /* Rows past FEAT_ROWS (the last work-item's) repeat the last row and are
   * not stored, which keeps the inner loop free of guards. */
  int base[ROWS_D], copy[ROWS_D];
  floatv acc[ROWS_D][DVCH];
  float z[ROWS_D];
  for (int r = 0; r < ROWS_D; r++) {
    const int f = min(f0 + r, FEAT_ROWS - 1);
    copy[r] = f / HEAD_DIM;
    base[r] = f - copy[r] * HEAD_DIM;
    for (int cc = 0; cc < DVCH; cc++)
      acc[r][cc] = (floatv)(0.0f);
    z[r] = 0.0f;
  }

  const int j1 = min((c + 1) * CHUNK, nk);
  for (int j = c * CHUNK; j < j1; j++) {
    floatv vr[DVCH];
    clattn_load_row(v + (size_t)j * HEAD_DIM_V, vr, HEAD_DIM_V, 1.0f);
    float w[FEAT_COPIES];
    for (int cp = 0; cp < FEAT_COPIES; cp++)
      w[cp] = clattn_pos_weight(cp, j, hinv);
    for (int r = 0; r < ROWS_D; r++) {
      const float x = LOAD1(k, (size_t)j * HEAD_DIM + base[r]);
      const float kf = PHI(x) * w[copy[r]];
      z[r] += kf;
      for (int cc = 0; cc < DVCH; cc++)
        acc[r][cc] = fma((floatv)(kf), vr[cc], acc[r][cc]);
    }
  }

  for (int r = 0; r < ROWS_D; r++) {
    const int f = f0 + r;
    if (f < FEAT_ROWS) {
      for (int cc = 0; cc < DVCH; cc++)
        FSTOREV(acc[r][cc], st + (size_t)f * DVP + cc * VEC);
      st[FEAT_ROWS * DVP + f] = z[r];
    }
  }
  /* The prefix pass reads z by whole vectors: give the padding a value. */
  if (f0 == 0) {
    for (int f = FEAT_ROWS; f < ZPAD; f++)
      st[FEAT_ROWS * DVP + f] = 0.0f;
  }
}

__kernel void clattn_linear_prefix(__global float *ws, const int nchunks) {
  const int e = (int)get_global_id(0);
  const int bh = (int)get_global_id(1);
  if (e >= STATE_SIZE / VEC)
    return; /* padding of the global size */
  __global float *p = ws + (size_t)bh * nchunks * STATE_SIZE + (size_t)e * VEC;
  floatv run = (floatv)(0.0f);
  for (int c = 0; c < nchunks; c++) {
    __global float *pc = p + (size_t)c * STATE_SIZE;
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
                                __global const store_t *k,
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
  /* Blocks of BLOCK_M consecutive limits L, starting at the block of the
   * first row's limit; BLOCK_M divides CHUNK, so a block is in one chunk. */
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
  __global const float *st = ws + ((size_t)bh * nchunks + c) * STATE_SIZE;

  /* phi(q) of each row as scalars (zero-padded to whole vectors) and the
   * row's position weights. Rows outside the output repeat a valid row. */
  float qs[BLOCK_M][DPAD];
  float w[BLOCK_M][FEAT_COPIES];
  for (int r = 0; r < BLOCK_M; r++) {
    const int i = clamp(i0 + r, 0, nq - 1);
    for (int d = 0; d < HEAD_DIM; d++) {
      const float x = LOAD1(q, (qrow0 + i) * HEAD_DIM + d);
      qs[r][d] = PHI(x);
    }
    for (int d = HEAD_DIM; d < DPAD; d++)
      qs[r][d] = 0.0f;
    for (int cp = 0; cp < FEAT_COPIES; cp++)
      w[r][cp] = clattn_pos_weight(cp, i, hinv);
  }

  floatv acc[BLOCK_M][DVCH];
  float den[BLOCK_M];
  for (int r = 0; r < BLOCK_M; r++) {
    for (int cc = 0; cc < DVCH; cc++)
      acc[r][cc] = (floatv)(0.0f);
    den[r] = 0.0f;
  }

  /* Keys of earlier chunks (all keys when not causal), through the state. */
  for (int cp = 0; cp < FEAT_COPIES; cp++) {
    for (int d = 0; d < HEAD_DIM; d++) {
      const int f = cp * HEAD_DIM + d;
      floatv sr[DVCH];
      for (int cc = 0; cc < DVCH; cc++)
        sr[cc] = FLOADV(st + (size_t)f * DVP + cc * VEC);
      const float zf = st[FEAT_ROWS * DVP + f];
      for (int r = 0; r < BLOCK_M; r++) {
        const float a = qs[r][d] * w[r][cp];
        den[r] = fma(a, zf, den[r]);
        for (int cc = 0; cc < DVCH; cc++)
          acc[r][cc] = fma((floatv)(a), sr[cc], acc[r][cc]);
      }
    }
  }

#if CAUSAL
  /* Keys of the block's own chunk up to each row's limit, one at a time:
   * weight (phi(q_i).phi(k_j)) times the position weight of i - j. */
  floatv qr[BLOCK_M][DCH];
  for (int r = 0; r < BLOCK_M; r++) {
    for (int cc = 0; cc < DCH; cc++)
      qr[r][cc] = VLOAD_PRIV(qs[r] + cc * VEC);
  }
  k += (size_t)bh * nk * HEAD_DIM;
  v += (size_t)bh * nk * HEAD_DIM_V;
  const int jend = min(l0 + BLOCK_M, nk);
  for (int j = c * CHUNK; j < jend; j++) {
    /* phi of k's zero padding may be 1 (elu); q's padding is 0. */
    floatv kr[DCH];
    clattn_load_row(k + (size_t)j * HEAD_DIM, kr, HEAD_DIM, 1.0f);
    for (int cc = 0; cc < DCH; cc++) {
      const floatv x = kr[cc];
      kr[cc] = PHI(x);
    }
    floatv vr[DVCH];
    clattn_load_row(v + (size_t)j * HEAD_DIM_V, vr, HEAD_DIM_V, 1.0f);
    for (int r = 0; r < BLOCK_M; r++) {
      floatv dot = qr[r][0] * kr[0];
      for (int cc = 1; cc < DCH; cc++)
        dot = fma(qr[r][cc], kr[cc], dot);
      float s = HSUM(dot) * clattn_rel_weight(i0 + r - j, hinv);
      s = j <= l0 + r ? s : 0.0f;
      den[r] += s;
      for (int cc = 0; cc < DVCH; cc++)
        acc[r][cc] = fma((floatv)(s), vr[cc], acc[r][cc]);
    }
  }
#endif

  for (int r = 0; r < BLOCK_M; r++) {
    const int i = i0 + r;
    if (i >= 0 && i < nq)
      clattn_store_row(o + (qrow0 + i) * HEAD_DIM_V, acc[r], HEAD_DIM_V,
                       clattn_norm(den[r], eps));
  }
}
