/*
 * test_varlen_linear.c - per-sequence lengths (a padded batch) in linear
 * attention and cosFormer, forward and backward, causal and not, Nq != Nk,
 * f32, f16 and bf16 storage:
 *   - the output against the float64 reference with the same lengths;
 *   - each sequence of the padded batch against that sequence run alone as
 *     its own plan: bit for bit equal (the same program does the same float
 *     operations in the same order on the same keys; the chunks past a
 *     sequence's end add exact zeros);
 *   - rows past Lq exactly 0, and the gradients of rows past Lq and keys
 *     past Lk exactly 0;
 *   - the gradients of each sequence against the float64 gradient reference
 *     of that sequence alone (cosFormer's default M is max(Lq, Lk) in both);
 *   - NaN and infinities in the padding giving, bit for bit, what zeros
 *     give (forward in each kernel shape, and backward);
 *   - host calls refusing a length outside 0..N.
 * The padding of Q, K, V and dO holds NaN, so anything past a sequence that
 * reaches a sum shows. With --tiny (run under Oclgrind) the shapes are small
 * and both kernel shapes are forced with chunks of 4 keys.
 *
 * Errors are max |x - ref| / max |ref| over each compared tensor.
 */
#include "reference.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Forward, f32: as test_linear and test_cosformer. */
#define TOL_F32 1e-5
/* Forward, f16 and bf16: inputs pre-rounded (the reference sees them), O
 * stored rounded (2^-9 relative for bf16). */
#define TOL_HALF 2e-2
/* Backward, f32: float accumulation over up to ~600 rows (as
 * test_backward). */
#define TOL_BWD_F32 1e-4
/* Backward, f16 and bf16: gradients stored rounded (as test_backward). */
#define TOL_BWD_HALF 3e-2

static int tiny; /* --tiny: shapes small enough for Oclgrind */

static double tol_fwd(clattn_dtype dt) {
  return dt == CLATTN_DTYPE_F32 ? TOL_F32 : TOL_HALF;
}

static double tol_bwd(clattn_dtype dt) {
  return dt == CLATTN_DTYPE_F32 ? TOL_BWD_F32 : TOL_BWD_HALF;
}

static void fill_nan(float *x, size_t n) {
  for (size_t t = 0; t < n; t++)
    x[t] = NAN;
}

/* Random rows of a [B, H, N, width] tensor rounded to dtype; rows past the
 * sequence's length hold NaN. */
static void fill_padded(float *x, size_t b, size_t h, size_t n, size_t width,
                        const cl_int *lens, uint64_t seed, clattn_dtype dt) {
  size_t total = b * h * n * width;
  clattn_test_fill_normal(x, total, seed, 0.0f, 1.0f);
  clattn_test_round_to_dtype(x, total, dt);
  for (size_t bb = 0; bb < b; bb++)
    for (size_t hh = 0; hh < h; hh++)
      for (size_t i = (size_t)lens[bb]; i < n; i++)
        for (size_t t = 0; t < width; t++)
          x[((bb * h + hh) * n + i) * width + t] = NAN;
}

/* Copies sequence b's first `len` rows of every head out of a [B, H, N, w]
 * tensor into a [1, H, len, w] one. */
static void slice_seq(const float *x, float *out, size_t b, size_t h, size_t n,
                      size_t w, size_t len) {
  for (size_t hh = 0; hh < h; hh++)
    memcpy(out + hh * len * w, x + ((b * h + hh) * n) * w, len * w * sizeof *x);
}

/* 1 when rows [from, n) of sequence b in every head are exactly 0. */
static int rows_zero(const char *what, const float *x, size_t b, size_t h,
                     size_t n, size_t w, size_t from) {
  for (size_t hh = 0; hh < h; hh++)
    for (size_t i = from; i < n; i++)
      for (size_t t = 0; t < w; t++) {
        float y = x[((b * h + hh) * n + i) * w + t];
        if (y != 0.0f) {
          print_error("%s: sequence %zu head %zu row %zu [%zu] = %g, want 0\n",
                      what, b, hh, i, t, (double)y);
          return 0;
        }
      }
  return 1;
}

typedef struct varlen_case {
  size_t b, hq, hkv, nq, nk, d, dv;
  const cl_int *lq, *lk;
} varlen_case;

static void fail_case(const clattn_desc *d, const char *what) {
  fail_msg("%s: %s causal=%d %s B=%zu Hq=%zu Hkv=%zu Nq=%zu Nk=%zu D=%zu "
           "Dv=%zu cos_m=%g tiles=%s",
           what, clattn_variant_name(d->variant), d->causal,
           clattn_dtype_name(d->dtype), d->batch, d->heads_q, d->heads_kv,
           d->seq_q, d->seq_k, d->dim, d->dim_v, (double)d->cos_m,
           d->tiles ? d->tiles : "default");
}

static clattn_plan_t plan_of(const clattn_desc *d) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_plan_t plan = NULL;
  clattn_status st = clattn_plan_create(ctx, d, &plan);
  if (st != CLATTN_SUCCESS) {
    print_error("%s: %s\n", clattn_status_name(st), clattn_context_error(ctx));
    fail_case(d, "plan");
  }
  return plan;
}

/* The forward of one case: reference, rows past Lq, each sequence alone. */
static void check_forward(const clattn_desc *d, const varlen_case *c,
                          uint64_t seed) {
  clattn_context_t ctx = clattn_test_shared_context();
  size_t nqe = c->b * c->hq * c->nq * c->d, nke = c->b * c->hkv * c->nk * c->d;
  size_t nve = c->b * c->hkv * c->nk * c->dv,
         noe = c->b * c->hq * c->nq * c->dv;
  float *q = clattn_test_alloc_f(nqe), *k = clattn_test_alloc_f(nke),
        *v = clattn_test_alloc_f(nve);
  float *o = clattn_test_alloc_f(noe);
  double *ref = clattn_test_alloc_d(noe);
  fill_padded(q, c->b, c->hq, c->nq, c->d, c->lq, seed, d->dtype);
  fill_padded(k, c->b, c->hkv, c->nk, c->d, c->lk, seed + 1, d->dtype);
  fill_padded(v, c->b, c->hkv, c->nk, c->dv, c->lk, seed + 2, d->dtype);
  fill_nan(o, noe);
  clattn_ref_extra extra = {c->lq, c->lk, NULL, NULL};
  clattn_ref_attention_ex(d, &extra, q, k, v, ref, NULL);

  clattn_plan_t plan = plan_of(d);
  clattn_status st =
      clattn_plan_run_host_varlen(plan, q, k, v, o, NULL, c->lq, c->lk);
  if (st != CLATTN_SUCCESS) {
    print_error("%s: %s\n", clattn_status_name(st), clattn_context_error(ctx));
    fail_case(d, "run");
  }
  clattn_plan_destroy(plan);
  if (!clattn_test_check("O", o, ref, noe, tol_fwd(d->dtype)))
    fail_case(d, "output against the reference");
  for (size_t b = 0; b < c->b; b++) {
    if (!rows_zero("O past Lq", o, b, c->hq, c->nq, c->dv, (size_t)c->lq[b]))
      fail_case(d, "rows past Lq");
  }

  /* Each sequence alone. A sequence without keys (or rows) has no plan of
   * its own: its rows see nothing and must be 0. */
  for (size_t b = 0; b < c->b; b++) {
    size_t lq = (size_t)c->lq[b], lk = (size_t)c->lk[b];
    if (lq == 0)
      continue;
    if (lk == 0) {
      if (!rows_zero("O without keys", o, b, c->hq, c->nq, c->dv, 0))
        fail_case(d, "a sequence without keys");
      continue;
    }
    clattn_desc d1 = *d;
    d1.batch = 1;
    d1.seq_q = lq;
    d1.seq_k = lk;
    float *q1 = clattn_test_alloc_f(c->hq * lq * c->d),
          *k1 = clattn_test_alloc_f(c->hkv * lk * c->d);
    float *v1 = clattn_test_alloc_f(c->hkv * lk * c->dv),
          *o1 = clattn_test_alloc_f(c->hq * lq * c->dv);
    slice_seq(q, q1, b, c->hq, c->nq, c->d, lq);
    slice_seq(k, k1, b, c->hkv, c->nk, c->d, lk);
    slice_seq(v, v1, b, c->hkv, c->nk, c->dv, lk);
    fill_nan(o1, c->hq * lq * c->dv);
    clattn_plan_t p1 = plan_of(&d1);
    st = clattn_plan_run_host(p1, q1, k1, v1, o1, NULL);
    clattn_plan_destroy(p1);
    if (st != CLATTN_SUCCESS)
      fail_case(&d1, "run alone");
    for (size_t h = 0; h < c->hq; h++)
      for (size_t i = 0; i < lq; i++)
        for (size_t t = 0; t < c->dv; t++) {
          float a = o1[(h * lq + i) * c->dv + t];
          float p = o[((b * c->hq + h) * c->nq + i) * c->dv + t];
          if (memcmp(&a, &p, sizeof a) != 0) {
            print_error("sequence %zu head %zu row %zu [%zu]: padded %a, "
                        "alone %a\n",
                        b, h, i, t, (double)p, (double)a);
            fail_case(d, "padded batch against each sequence alone");
          }
        }
    free(q1);
    free(k1);
    free(v1);
    free(o1);
  }
  free(q);
  free(k);
  free(v);
  free(o);
  free(ref);
}

/* Compares sequence b's slice of a padded gradient with the reference of
 * the sequence alone ([1, H, len, w]). */
static int check_slice(const char *what, const float *g, const double *ref,
                       size_t b, size_t h, size_t n, size_t w, size_t len,
                       double tol) {
  float *s = clattn_test_alloc_f(h * len * w);
  slice_seq(g, s, b, h, n, w, len);
  int ok = clattn_test_check(what, s, ref, h * len * w, tol);
  free(s);
  return ok;
}

/* The backward of one case: each sequence's gradients against the
 * reference of that sequence alone, and the padding's exactly 0. */
static void check_backward(const clattn_desc *d, const varlen_case *c,
                           uint64_t seed) {
  clattn_context_t ctx = clattn_test_shared_context();
  size_t nqe = c->b * c->hq * c->nq * c->d, nke = c->b * c->hkv * c->nk * c->d;
  size_t nve = c->b * c->hkv * c->nk * c->dv,
         noe = c->b * c->hq * c->nq * c->dv;
  float *q = clattn_test_alloc_f(nqe), *k = clattn_test_alloc_f(nke),
        *v = clattn_test_alloc_f(nve);
  float *dout = clattn_test_alloc_f(noe);
  float *dq = clattn_test_alloc_f(nqe), *dk = clattn_test_alloc_f(nke),
        *dv = clattn_test_alloc_f(nve);
  fill_padded(q, c->b, c->hq, c->nq, c->d, c->lq, seed, d->dtype);
  fill_padded(k, c->b, c->hkv, c->nk, c->d, c->lk, seed + 1, d->dtype);
  fill_padded(v, c->b, c->hkv, c->nk, c->dv, c->lk, seed + 2, d->dtype);
  fill_padded(dout, c->b, c->hq, c->nq, c->dv, c->lq, seed + 3, d->dtype);
  fill_nan(dq, nqe);
  fill_nan(dk, nke);
  fill_nan(dv, nve);
  clattn_plan_t plan = plan_of(d);
  clattn_status st = clattn_plan_backward_host_varlen(
      plan, q, k, v, NULL, NULL, dout, dq, dk, dv, c->lq, c->lk);
  clattn_plan_destroy(plan);
  if (st != CLATTN_SUCCESS) {
    print_error("%s: %s\n", clattn_status_name(st), clattn_context_error(ctx));
    fail_case(d, "backward");
  }
  double tol = tol_bwd(d->dtype);
  for (size_t b = 0; b < c->b; b++) {
    size_t lq = (size_t)c->lq[b], lk = (size_t)c->lk[b];
    int ok = rows_zero("dQ past Lq", dq, b, c->hq, c->nq, c->d, lq);
    ok &= rows_zero("dK past Lk", dk, b, c->hkv, c->nk, c->d, lk);
    ok &= rows_zero("dV past Lk", dv, b, c->hkv, c->nk, c->dv, lk);
    if (!ok)
      fail_case(d, "gradients of the padding");
    if (lq == 0 || lk == 0) {
      /* No pair of the sequence interacts: every gradient is 0. */
      ok = rows_zero("dQ, no pairs", dq, b, c->hq, c->nq, c->d, 0);
      ok &= rows_zero("dK, no pairs", dk, b, c->hkv, c->nk, c->d, 0);
      ok &= rows_zero("dV, no pairs", dv, b, c->hkv, c->nk, c->dv, 0);
      if (!ok)
        fail_case(d, "gradients of a sequence without rows or keys");
      continue;
    }
    clattn_desc d1 = *d;
    d1.batch = 1;
    d1.seq_q = lq;
    d1.seq_k = lk;
    float *q1 = clattn_test_alloc_f(c->hq * lq * c->d),
          *k1 = clattn_test_alloc_f(c->hkv * lk * c->d);
    float *v1 = clattn_test_alloc_f(c->hkv * lk * c->dv);
    float *do1 = clattn_test_alloc_f(c->hq * lq * c->dv);
    double *rq = clattn_test_alloc_d(c->hq * lq * c->d),
           *rk = clattn_test_alloc_d(c->hkv * lk * c->d);
    double *rv = clattn_test_alloc_d(c->hkv * lk * c->dv);
    slice_seq(q, q1, b, c->hq, c->nq, c->d, lq);
    slice_seq(k, k1, b, c->hkv, c->nk, c->d, lk);
    slice_seq(v, v1, b, c->hkv, c->nk, c->dv, lk);
    slice_seq(dout, do1, b, c->hq, c->nq, c->dv, lq);
    clattn_ref_attention_backward(&d1, q1, k1, v1, do1, rq, rk, rv);
    ok = check_slice("dQ", dq, rq, b, c->hq, c->nq, c->d, lq, tol);
    ok &= check_slice("dK", dk, rk, b, c->hkv, c->nk, c->d, lk, tol);
    ok &= check_slice("dV", dv, rv, b, c->hkv, c->nk, c->dv, lk, tol);
    if (!ok) {
      print_error("sequence %zu: Lq = %zu, Lk = %zu\n", b, lq, lk);
      fail_case(d, "gradients against each sequence alone");
    }
    free(q1);
    free(k1);
    free(v1);
    free(do1);
    free(rq);
    free(rk);
    free(rv);
  }
  free(q);
  free(k);
  free(v);
  free(dout);
  free(dq);
  free(dk);
  free(dv);
}

/* Nq < Nk: a full sequence, one row against 17 keys, 20 rows without keys.
 * Nq > Nk: Lq > Lk (causal rows without keys, then padding), one key for
 * the full Nq rows, and a sequence without rows. */
static const cl_int lq_a[] = {37, 1, 20}, lk_a[] = {53, 17, 0};
static const cl_int lq_b[] = {40, 53, 0}, lk_b[] = {37, 5, 11};
static const varlen_case case_a = {3, 4, 2, 37, 53, 20, 12, lq_a, lk_a};
static const varlen_case case_b = {3, 4, 2, 53, 37, 20, 12, lq_b, lk_b};
/* Several chunks in every kernel (forward chunks of 64 or 256 keys, backward
 * of 64 or 512 rows), and sequences ending inside and between them. */
static const cl_int lq_l[] = {600, 333}, lk_l[] = {530, 71};
static const varlen_case case_l = {2, 2, 1, 600, 530, 20, 12, lq_l, lk_l};
/* --tiny: padded rows and keys, causal rows without keys, chunks crossed. */
static const cl_int lq_t[] = {5, 7}, lk_t[] = {9, 4};
static const varlen_case case_t = {2, 2, 1, 7, 9, 3, 5, lq_t, lk_t};

static void desc_of(clattn_desc *d, const varlen_case *c) {
  d->batch = c->b;
  d->heads_q = c->hq;
  d->heads_kv = c->hkv;
  d->seq_q = c->nq;
  d->seq_k = c->nk;
  d->dim = c->d;
  d->dim_v = c->dv;
}

/* --tiny: each forward kernel shape with small chunks, and the backward, in
 * f32 and f16. */
static void check_variant_tiny(clattn_variant variant, uint64_t seed) {
  static const char *const tiles[] = {"SHAPE=cpu,CHUNK=4,BLOCK_M=2",
                                      "SHAPE=gpu,CHUNK=4"};
  for (int causal = 0; causal < 2; causal++) {
    for (int f16 = 0; f16 < 2; f16++) {
      clattn_desc d;
      clattn_desc_init(&d, variant);
      d.dtype = f16 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32;
      d.causal = causal;
      desc_of(&d, &case_t);
      for (size_t s = 0; s < 2; s++) {
        d.tiles = tiles[s];
        check_forward(&d, &case_t, seed + s);
      }
      d.tiles = NULL;
      check_backward(&d, &case_t, seed + 2);
    }
  }
}

static void check_variant(clattn_variant variant, uint64_t seed) {
  static const clattn_dtype dtypes[] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16,
                                        CLATTN_DTYPE_BF16};
  if (tiny) {
    check_variant_tiny(variant, seed);
    return;
  }
  for (int causal = 0; causal < 2; causal++) {
    for (size_t t = 0; t < 3; t++) {
      clattn_desc d;
      clattn_desc_init(&d, variant);
      d.dtype = dtypes[t];
      d.causal = causal;
      const varlen_case *cases[] = {&case_a, &case_b};
      for (size_t n = 0; n < 2; n++) {
        const varlen_case *c = cases[n];
        desc_of(&d, c);
        check_forward(&d, c, seed + 10 * t + n);
        check_backward(&d, c, seed + 10 * t + n + 5);
      }
    }
  }
}

/* f32 only: long sequences, forced kernel shapes with small chunks, and a
 * fixed cosFormer M. */
static void check_variant_more(clattn_variant variant, uint64_t seed) {
  static const char *const tiles[] = {"SHAPE=cpu,CHUNK=8", "SHAPE=gpu,CHUNK=8"};
  if (tiny)
    return;
  for (int causal = 0; causal < 2; causal++) {
    clattn_desc d = clattn_test_desc(variant, CLATTN_DTYPE_F32, causal, 2, 2, 1,
                                     600, 530, 20, 12);
    check_forward(&d, &case_l, seed);
    check_backward(&d, &case_l, seed + 1);
    d = clattn_test_desc(variant, CLATTN_DTYPE_F32, causal, 3, 4, 2, 53, 37, 20,
                         12);
    for (size_t s = 0; s < 2; s++) {
      d.tiles = tiles[s];
      check_forward(&d, &case_b, seed + 2 + s);
    }
    d.tiles = NULL;
    if (variant == CLATTN_VARIANT_COSFORMER) {
      d.cos_m = 100.0f;
      check_forward(&d, &case_b, seed + 4);
      check_backward(&d, &case_b, seed + 5);
    }
  }
}

static void test_varlen_linear_linear(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_LINEAR, 100);
}

static void test_varlen_linear_cosformer(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_COSFORMER, 200);
}

static void test_varlen_linear_long_and_tiles(void **state) {
  (void)state;
  check_variant_more(CLATTN_VARIANT_LINEAR, 300);
  check_variant_more(CLATTN_VARIANT_COSFORMER, 400);
}

/* Sets rows [lens[b], n) of every head of x [B, H, n, w] to NaN, +inf and
 * -inf in turn, or to 0 when dirty is 0. */
static void set_padding(float *x, size_t b, size_t h, size_t n, size_t w,
                        const cl_int *lens, int dirty) {
  for (size_t bb = 0; bb < b; bb++)
    clattn_test_fill_padding(x, bb, h, n, (size_t)lens[bb], w, dirty);
}

/* 1 when a run with junk padding gave what the zero-padded run gave, bit
 * for bit, without NaN. */
static int same_as_clean(const char *what, const float *clean,
                         const float *dirty, size_t n) {
  size_t nan = 0;
  for (size_t t = 0; t < n; t++)
    nan += isnan(dirty[t]) != 0;
  if (nan || memcmp(clean, dirty, n * sizeof *clean) != 0) {
    print_error("%s: %zu NaN, differs from the zero-padded run\n", what, nan);
    return 0;
  }
  return 1;
}

/* What the padding of a padded batch holds never matters: NaN and
 * infinities in Q and dO past Lq and in K and V past Lk give the output and
 * the gradients zeros give, bit for bit, and no NaN; each forward kernel
 * shape and the backward, causal and not. */
static void check_padding(clattn_variant variant, const varlen_case *c,
                          const char *const *tiles, size_t ntiles,
                          uint64_t seed) {
  clattn_context_t ctx = clattn_test_shared_context();
  size_t nqe = c->b * c->hq * c->nq * c->d, nke = c->b * c->hkv * c->nk * c->d;
  size_t nve = c->b * c->hkv * c->nk * c->dv,
         noe = c->b * c->hq * c->nq * c->dv;
  float *q = clattn_test_alloc_f(nqe), *k = clattn_test_alloc_f(nke),
        *v = clattn_test_alloc_f(nve);
  float *dout = clattn_test_alloc_f(noe);
  float *o[2], *g[2][3];
  for (int r = 0; r < 2; r++) {
    o[r] = clattn_test_alloc_f(noe);
    g[r][0] = clattn_test_alloc_f(nqe);
    g[r][1] = clattn_test_alloc_f(nke);
    g[r][2] = clattn_test_alloc_f(nve);
  }
  clattn_test_fill_normal(q, nqe, seed, 0.0f, 1.0f);
  clattn_test_fill_normal(k, nke, seed + 1, 0.0f, 1.0f);
  clattn_test_fill_normal(v, nve, seed + 2, 0.0f, 1.0f);
  clattn_test_fill_normal(dout, noe, seed + 3, 0.0f, 1.0f);
  for (int causal = 0; causal < 2; causal++) {
    clattn_desc d;
    clattn_desc_init(&d, variant);
    d.causal = causal;
    desc_of(&d, c);
    /* Each forward shape, then the backward (tiles NULL). */
    for (size_t s = 0; s <= ntiles; s++) {
      int bwd = s == ntiles;
      d.tiles = bwd ? NULL : tiles[s];
      clattn_plan_t plan = plan_of(&d);
      clattn_status st = CLATTN_SUCCESS;
      for (int dirty = 0; dirty < 2 && st == CLATTN_SUCCESS; dirty++) {
        set_padding(q, c->b, c->hq, c->nq, c->d, c->lq, dirty);
        set_padding(dout, c->b, c->hq, c->nq, c->dv, c->lq, dirty);
        set_padding(k, c->b, c->hkv, c->nk, c->d, c->lk, dirty);
        set_padding(v, c->b, c->hkv, c->nk, c->dv, c->lk, dirty);
        st = bwd ? clattn_plan_backward_host_varlen(
                       plan, q, k, v, NULL, NULL, dout, g[dirty][0],
                       g[dirty][1], g[dirty][2], c->lq, c->lk)
                 : clattn_plan_run_host_varlen(plan, q, k, v, o[dirty], NULL,
                                               c->lq, c->lk);
      }
      clattn_plan_destroy(plan);
      if (st != CLATTN_SUCCESS) {
        print_error("%s: %s\n", clattn_status_name(st),
                    clattn_context_error(ctx));
        fail_case(&d, bwd ? "backward" : "run");
      }
      int ok = bwd ? same_as_clean("dQ", g[0][0], g[1][0], nqe) &
                         same_as_clean("dK", g[0][1], g[1][1], nke) &
                         same_as_clean("dV", g[0][2], g[1][2], nve)
                   : same_as_clean("O", o[0], o[1], noe);
      if (!ok)
        fail_case(&d, "the padding changes the result");
    }
  }
  for (int r = 0; r < 2; r++) {
    free(o[r]);
    for (int t = 0; t < 3; t++)
      free(g[r][t]);
  }
  free(q);
  free(k);
  free(v);
  free(dout);
}

static void test_varlen_linear_padding_never_read(void **state) {
  (void)state;
  static const char *const tiles[] = {"SHAPE=cpu,CHUNK=8", "SHAPE=gpu,CHUNK=8"};
  static const char *const tiles_tiny[] = {"SHAPE=cpu,CHUNK=4,BLOCK_M=2",
                                           "SHAPE=gpu,CHUNK=4"};
  for (int v = 0; v < 2; v++) {
    clattn_variant variant =
        v ? CLATTN_VARIANT_COSFORMER : CLATTN_VARIANT_LINEAR;
    if (tiny) {
      check_padding(variant, &case_t, tiles_tiny, 2, 500 + (uint64_t)v);
      continue;
    }
    check_padding(variant, &case_a, tiles, 2, 500 + (uint64_t)v);
    check_padding(variant, &case_b, tiles, 2, 510 + (uint64_t)v);
  }
}

/* Host calls check lengths against Nq and Nk before anything runs. */
static void test_varlen_linear_bad_lengths(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = clattn_test_desc(CLATTN_VARIANT_COSFORMER, CLATTN_DTYPE_F32,
                                   1, 3, 4, 2, 37, 53, 20, 12);
  size_t nqe = 3 * 4 * 37 * 20, nke = 3 * 2 * 53 * 20;
  size_t nve = 3 * 2 * 53 * 12, noe = 3 * 4 * 37 * 12;
  float *q = clattn_test_alloc_f(nqe), *k = clattn_test_alloc_f(nke),
        *v = clattn_test_alloc_f(nve);
  float *o = clattn_test_alloc_f(noe), *dq = clattn_test_alloc_f(nqe),
        *dk = clattn_test_alloc_f(nke);
  float *dv = clattn_test_alloc_f(nve);
  clattn_test_fill_normal(q, nqe, 1, 0.0f, 1.0f);
  clattn_test_fill_normal(k, nke, 2, 0.0f, 1.0f);
  clattn_test_fill_normal(v, nve, 3, 0.0f, 1.0f);
  clattn_test_fill_normal(o, noe, 4, 0.0f, 1.0f);
  clattn_plan_t plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, &plan), CLATTN_SUCCESS);
  const cl_int long_q[] = {37, 38, 1}, long_k[] = {53, 1, 54};
  const cl_int negative[] = {1, -1, 1}, fine_q[] = {37, 1, 20};
  const cl_int fine_k[] = {53, 17, 0};
  assert_int_equal(
      clattn_plan_run_host_varlen(plan, q, k, v, o, NULL, long_q, fine_k),
      CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(
      clattn_plan_run_host_varlen(plan, q, k, v, o, NULL, fine_q, long_k),
      CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(
      clattn_plan_run_host_varlen(plan, q, k, v, o, NULL, negative, fine_k),
      CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_plan_backward_host_varlen(plan, q, k, v, NULL, NULL,
                                                    o, dq, dk, dv, long_q,
                                                    fine_k),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_plan_backward_host_varlen(plan, q, k, v, NULL, NULL,
                                                    o, dq, dk, dv, fine_q,
                                                    long_k),
                   CLATTN_ERROR_INVALID_VALUE);
  /* The plan still works after the refusals. */
  assert_int_equal(
      clattn_plan_run_host_varlen(plan, q, k, v, o, NULL, fine_q, fine_k),
      CLATTN_SUCCESS);
  clattn_plan_destroy(plan);
  free(q);
  free(k);
  free(v);
  free(o);
  free(dq);
  free(dk);
  free(dv);
}

static cl_mem upload(clattn_context_t ctx, const void *x, size_t bytes) {
  cl_int err = CL_SUCCESS;
  cl_mem m = clCreateBuffer(clattn_context_cl(ctx),
                            CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes,
                            (void *)x, &err);
  assert_int_equal(err, CL_SUCCESS);
  return m;
}

static void download(clattn_context_t ctx, cl_mem m, void *x, size_t bytes) {
  assert_int_equal(clEnqueueReadBuffer(clattn_context_queue(ctx), m, CL_TRUE, 0,
                                       bytes, x, 0, NULL, NULL),
                   CL_SUCCESS);
}

/* Device lengths outside 0..N are clamped by the kernels: the results are
 * those of the clamped lengths, bit for bit, forward and backward. */
static void test_varlen_linear_device_clamp(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  const varlen_case *c = tiny ? &case_t : &case_a;
  const cl_int wild_q[] = {1000, -5, 3}, wild_k[] = {-1, 99999, 2};
  const cl_int clamped_q[] = {(cl_int)c->nq, 0, 3},
               clamped_k[] = {0, (cl_int)c->nk, 2};
  size_t nb = tiny ? 2 : 3;
  clattn_desc d =
      clattn_test_desc(CLATTN_VARIANT_COSFORMER, CLATTN_DTYPE_F32, 1, nb, c->hq,
                       c->hkv, c->nq, c->nk, c->d, c->dv);
  size_t n[7] = {nb * c->hq * c->nq * c->d, nb * c->hkv * c->nk * c->d,
                 nb * c->hkv * c->nk * c->dv, nb * c->hq * c->nq * c->dv};
  n[4] = n[3]; /* dout */
  n[5] = n[0]; /* dq */
  n[6] = n[1]; /* dk; dv is n[2] */
  float *x[8], *want[8];
  for (size_t t = 0; t < 8; t++) {
    size_t len = t == 7 ? n[2] : n[t];
    x[t] = clattn_test_alloc_f(len);
    want[t] = clattn_test_alloc_f(len);
    clattn_test_fill_normal(x[t], len, 500 + t, 0.0f, 1.0f);
  }
  clattn_plan_t plan = plan_of(&d);
  assert_int_equal(clattn_plan_run_host_varlen(plan, x[0], x[1], x[2], want[3],
                                               NULL, clamped_q, clamped_k),
                   CLATTN_SUCCESS);
  assert_int_equal(clattn_plan_backward_host_varlen(
                       plan, x[0], x[1], x[2], NULL, NULL, x[4], want[5],
                       want[6], want[7], clamped_q, clamped_k),
                   CLATTN_SUCCESS);
  cl_mem m[8], lq = upload(ctx, wild_q, nb * sizeof(cl_int));
  cl_mem lk = upload(ctx, wild_k, nb * sizeof(cl_int));
  for (size_t t = 0; t < 8; t++)
    m[t] = upload(ctx, x[t], (t == 7 ? n[2] : n[t]) * sizeof(float));
  assert_int_equal(clattn_plan_run_varlen(plan, m[0], m[1], m[2], m[3], NULL,
                                          lq, lk, 0, NULL, NULL),
                   CLATTN_SUCCESS);
  assert_int_equal(clattn_plan_backward_varlen(plan, m[0], m[1], m[2], NULL,
                                               NULL, m[4], m[5], m[6], m[7], lq,
                                               lk, 0, NULL, NULL),
                   CLATTN_SUCCESS);
  static const size_t outs[] = {3, 5, 6, 7};
  static const char *const names[] = {"O", "dQ", "dK", "dV"};
  for (size_t u = 0; u < 4; u++) {
    size_t t = outs[u], len = t == 7 ? n[2] : n[t];
    download(ctx, m[t], x[t], len * sizeof(float));
    if (memcmp(x[t], want[t], len * sizeof(float)) != 0)
      fail_msg("%s with device lengths outside 0..N differs from the clamped "
               "lengths",
               names[u]);
  }
  for (size_t t = 0; t < 8; t++) {
    clReleaseMemObject(m[t]);
    free(x[t]);
    free(want[t]);
  }
  clReleaseMemObject(lq);
  clReleaseMemObject(lk);
  clattn_plan_destroy(plan);
}

int main(int argc, char **argv) {
  tiny = argc > 1 && strcmp(argv[1], "--tiny") == 0;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_varlen_linear_linear),
      cmocka_unit_test(test_varlen_linear_cosformer),
      cmocka_unit_test(test_varlen_linear_long_and_tiles),
      cmocka_unit_test(test_varlen_linear_padding_never_read),
      cmocka_unit_test(test_varlen_linear_bad_lengths),
      cmocka_unit_test(test_varlen_linear_device_clamp),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
