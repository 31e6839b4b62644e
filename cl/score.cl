/*
 * score.cl - the score pipeline of softmax and sigmoid, shared by the
 * forward (flash.cl), decode (decode.cl) and backward (flash_bwd.cl)
 * kernels. For query i and key j of sequence b, head h, with Lq and Lk that
 * sequence's lengths and i' = i + Lk - Lq its position among the keys:
 *
 *   s = scale q_i.k_j            (the kernels' q is pre-scaled, log2 units)
 *   softcap:   s = C tanh(s / C)
 *   ALiBi:     s -= slope_h |i' - j|
 *   score_mod: s = score_mod(s, b, h, i, j)   (natural units)
 *   masks:     j < Lk, i < Lq, i' - left <= j <= i' + right, mask_mod
 *
 * Scores stay in log2 units (s log2 e) throughout, so the softcap and the
 * slopes come in log2 units too (C log2 e, slope log2 e) and the same
 * formulas hold; only score_mod sees natural units.
 *
 * Macros (the host sets them; a plan without a stage compiles none of it):
 *   PIPE_SOFTCAP      1: softcap on.
 *   PIPE_ALIBI        1: ALiBi slopes on.
 *   PIPE_BIAS_SEQ     1: sigmoid's default bias, -ln(Lk), per sequence.
 *   CLATTN_SCORE_MOD  defined by the prelude that holds the user's
 *   CLATTN_MASK_MOD   clattn_score_mod() / clattn_mask_mod().
 * Lengths and windows are run-time arguments (CLATTN_PIPE_PARAMS, last in
 * every kernel that takes them), so they cost one bounds computation per
 * block of rows, and blocks no row sees are never visited.
 */

#ifndef PIPE_SOFTCAP
#define PIPE_SOFTCAP 0 // 1: s = C tanh(s / C)
#endif
#ifndef PIPE_ALIBI
#define PIPE_ALIBI 0 // 1: s -= slope |i' - j|
#endif
#ifndef PIPE_BIAS_SEQ
#define PIPE_BIAS_SEQ 0 // sigmoid: default bias -ln(Lk) per sequence
#endif
#ifdef CLATTN_SCORE_MOD
#define PIPE_SCORE_MOD 1
#else
#define PIPE_SCORE_MOD 0
#endif
#ifdef CLATTN_MASK_MOD
#define PIPE_MASK_MOD 1
#else
#define PIPE_MASK_MOD 0
#endif
/* 1 when scores change before masking. */
#define PIPE_MODS (PIPE_SOFTCAP || PIPE_ALIBI || PIPE_SCORE_MOD)

/* The trailing arguments of every kernel with a score pipeline: int32 [B]
 * lengths (NULL: Nq, Nk), float [Hq] slopes times log2 e (NULL unless
 * PIPE_ALIBI), the window (-1 unbounded; causal is win_right = 0), the
 * softcap times log2 e, and the flash kernels' block mask (NULL unless
 * CLATTN_MASK_MOD: see clattn_block_mask in flash.cl). */
#define CLATTN_PIPE_PARAMS                                                     \
  __global const int *lens_q, __global const int *lens_k,                      \
      __global const float *alibi, const int win_left, const int win_right,   \
      const float softcap, __global const uchar *block_mask
#define CLATTN_PIPE_ARGS                                                       \
  lens_q, lens_k, alibi, win_left, win_right, softcap, block_mask

/* What the pipeline needs of one (sequence, head). */
typedef struct clattn_seq {
  int b, h;
  int lq, lk;  /* lengths, clamped to 0..Nq and 0..Nk */
  long off;    /* Lk - Lq: i' = i + off */
  long left;   /* window; INT_MAX when unbounded */
  long right;
  float slope; /* ALiBi slope, log2 units */
  float cap;   /* softcap, log2 units */
} clattn_seq;

clattn_seq clattn_seq_make(const int b, const int h, const int nq,
                           const int nk, CLATTN_PIPE_PARAMS) {
  clattn_seq s;
  s.b = b;
  s.h = h;
  s.lq = lens_q ? clamp(lens_q[b], 0, nq) : nq;
  s.lk = lens_k ? clamp(lens_k[b], 0, nk) : nk;
  s.off = (long)s.lk - s.lq;
  s.left = win_left < 0 ? (long)INT_MAX : win_left;
  s.right = win_right < 0 ? (long)INT_MAX : win_right;
#if PIPE_ALIBI
  s.slope = alibi[h];
#else
  s.slope = 0.0f;
  (void)alibi;
#endif
  s.cap = softcap;
  (void)block_mask;
  return s;
}

/* Sigmoid's bias in log2 units: the given one, or with PIPE_BIAS_SEQ the
 * default -ln(Lk) of this sequence (-log2(Lk) in log2 units). */
float clattn_seq_bias(const clattn_seq *s, const float bias_log2) {
#if PIPE_BIAS_SEQ
  (void)bias_log2;
  return -log2((float)max(s->lk, 1));
#else
  (void)s;
  return bias_log2;
#endif
}

/* The first and last key row i sees by the window and the lengths (the
 * mask_mod aside); last < first when it sees none. */
long clattn_row_first(const clattn_seq *s, const long i) {
  return max(0L, i + s->off - s->left);
}
long clattn_row_last(const clattn_seq *s, const long i) {
  return i >= s->lq ? -1L : min((long)s->lk - 1, i + s->off + s->right);
}

/* For the rows i0 .. i0 + nrows - 1, as (kbeg, kend, fbeg, fend): keys
 * [kbeg, kend) hold every key some row sees, with kbeg rounded down to a
 * multiple of step (key blocks start there); every row sees every key of
 * [fbeg, fend) by the window and lengths, so blocks inside it need no mask
 * but the mask_mod's (the flash kernels learn which blocks that leaves
 * whole from the block mask). Returned rather than written through
 * pointers: Intel's CPU compiler kept the forward kernels' loop bounds in
 * memory that way and ran them 2.8x slower. */
int4 clattn_block_range(const clattn_seq *s, const int i0, const int nrows,
                        const int step) {
  const long ilast = min((long)i0 + nrows, (long)s->lq) - 1;
  if (ilast < i0)
    return (int4)(0);
  const long first = clattn_row_first(s, i0);
  const long last = clattn_row_last(s, ilast);
  if (last < first)
    return (int4)(0);
  int4 r = (int4)((int)(first / step * step), (int)(last + 1), 0, 0);
  if ((long)i0 + nrows > s->lq)
    return r; /* every block masks */
  const long ffirst = clattn_row_first(s, ilast);
  const long flast = clattn_row_last(s, i0);
  if (flast >= ffirst) {
    r.s2 = (int)ffirst;
    r.s3 = (int)(flast + 1);
  }
  return r;
}

/* 1 when the block of keys j0 .. j0 + n - 1 holds a key some row of the
 * block does not see. */
int clattn_block_masked(const int j0, const int n, const int fbeg,
                        const int fend) {
  return j0 < fbeg || (long)j0 + n > fend;
}

/* The user's mask for (i, j) on top of the window and lengths. */
int clattn_mask_keep(const clattn_seq *s, const int i, const int j) {
#if PIPE_MASK_MOD
  return clattn_mask_mod(s->b, s->h, i, j) != 0;
#else
  (void)s;
  (void)i;
  (void)j;
  return 1;
#endif
}

/* Whether row i sees key j: window, lengths and mask_mod. */
int clattn_visible(const clattn_seq *s, const int i, const int j) {
  return j >= clattn_row_first(s, i) && j <= clattn_row_last(s, i) &&
         clattn_mask_keep(s, i, j);
}

/* Softcap, ALiBi and score_mod on score x (log2 units) of (i, j). */
float clattn_mods(const clattn_seq *s, float x, const int i, const int j) {
#if PIPE_SOFTCAP
  x = s->cap * tanh(x / s->cap);
#endif
#if PIPE_ALIBI
  x -= s->slope * fabs((float)((long)i + s->off - j));
#endif
#if PIPE_SCORE_MOD
  x = (float)clattn_score_mod(x * M_LN2_F, s->b, s->h, i, j) * M_LOG2E_F;
#endif
#if !PIPE_MODS
  (void)s;
  (void)i;
  (void)j;
#endif
  return x;
}

/* d mods(x) / dx at x (log2 units), for the backward: the softcap's
 * 1 - tanh^2; ALiBi shifts by a constant; score_mod has no backward. */
float clattn_mods_grad(const clattn_seq *s, const float x) {
#if PIPE_SOFTCAP
  const float t = tanh(x / s->cap);
  return 1.0f - t * t;
#else
  (void)s;
  (void)x;
  return 1.0f;
#endif
}

#if defined(BLOCK_M) && defined(BLOCK_N)
/* The pipeline on a block of scores s[r][jj] of rows i0 + r, keys j0 + jj:
 * mods on every score, and `fill` where the key is not seen. */
void clattn_mods_rows(const clattn_seq *sq, float (*s)[BLOCK_N], const int i0,
                      const int j0) {
#if PIPE_MODS
  for (int r = 0; r < BLOCK_M; r++)
    for (int jj = 0; jj < BLOCK_N; jj++)
      s[r][jj] = clattn_mods(sq, s[r][jj], i0 + r, j0 + jj);
#else
  (void)sq;
  (void)s;
  (void)i0;
  (void)j0;
#endif
}

/* with_mod: the mask_mod is evaluated too (else only window and lengths). */
void clattn_mask_rows(const clattn_seq *sq, float (*s)[BLOCK_N], const int i0,
                      const int j0, const float fill, const int with_mod) {
  for (int r = 0; r < BLOCK_M; r++) {
    const long lo = clattn_row_first(sq, (long)i0 + r);
    const long hi = clattn_row_last(sq, (long)i0 + r);
    for (int jj = 0; jj < BLOCK_N; jj++) {
      const long j = (long)j0 + jj;
      const int keep =
          j >= lo && j <= hi &&
          (!with_mod || clattn_mask_keep(sq, i0 + r, j0 + jj));
      s[r][jj] = keep ? s[r][jj] : fill;
    }
  }
}
#endif
