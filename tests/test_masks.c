/*
 * test_masks.c - the score pipeline of softmax and sigmoid in the forward
 * kernels: per-sequence lengths, sliding windows, ALiBi, softcap and the
 * user's score_mod and mask_mod, alone and together, against the float64
 * reference (clattn_ref_attention_ex), in every kernel shape and storage
 * dtype; a padded batch against each of its sequences run alone; and the
 * errors the pipeline's inputs can give.
 */
#include "reference.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tolerances (max error over max |reference|), as the plain kernels: f32
 * accumulates in float (1e-5); f16 storage rounds O to half (2e-2); bf16
 * keeps 8 significant bits (1e-2 of the largest output, as test_bf16);
 * the LSE is float in every dtype. */
#define TOL_F32 1e-5
#define TOL_F16 2e-2
#define TOL_BF16 1e-2
#define TOL_LSE 1e-5

static double dtype_tol(clattn_dtype dtype) {
  return dtype == CLATTN_DTYPE_F16    ? TOL_F16
         : dtype == CLATTN_DTYPE_BF16 ? TOL_BF16
                                      : TOL_F32;
}

/* The C twins of the OpenCL C mods the cases give. */
#define SCORE_MOD "score - 0.05f * (float)(i - j) + 0.25f * (float)(h % 2)"
static double score_mod_c(double score, int b, int h, int i, int j) {
  (void)b;
  return score - 0.05 * (double)(i - j) + 0.25 * (double)(h % 2);
}
#define MASK_MOD "(i / 8) == (j / 8) || j % 5 == b"
static int mask_mod_c(int b, int h, int i, int j) {
  (void)h;
  return (i / 8) == (j / 8) || j % 5 == b;
}

typedef struct mcase {
  clattn_variant variant;
  clattn_dtype dtype;
  size_t b, hq, hkv, nq, nk, d, dv;
  int causal, left, right;
  float softcap;
  int alibi, lens, smod, mmod;
} mcase;

/* ALiBi's geometric slopes, 2^(-8 (h + 1) / Hq). */
static void alibi_slopes(float *s, size_t hq) {
  for (size_t h = 0; h < hq; h++)
    s[h] = powf(2.0f, -8.0f * (float)(h + 1) / (float)hq);
}

/* Lengths that cover the corners: the full length, a short one, 0 (for
 * batch 2 and up) and something in between. */
static void make_lens(int *l, size_t b, size_t n, int salt) {
  for (size_t i = 0; i < b; i++) {
    switch ((i + (size_t)salt) % 4) {
    case 0:
      l[i] = (int)n;
      break;
    case 1:
      l[i] = (int)(n / 3 + 1);
      break;
    case 2:
      l[i] = b > 2 ? 0 : (int)(n - 1);
      break;
    default:
      l[i] = (int)(2 * n / 3);
    }
  }
}

typedef struct mrun {
  clattn_desc desc;
  clattn_ref_extra x;
  float slopes[64];
  int lq[16], lk[16];
} mrun;

static void mrun_init(mrun *r, const mcase *c) {
  memset(r, 0, sizeof *r);
  r->desc = clattn_test_desc(c->variant, c->dtype, c->causal, c->b, c->hq,
                             c->hkv, c->nq, c->nk, c->d, c->dv);
  r->desc.window_left = c->left;
  r->desc.window_right = c->right;
  r->desc.softcap = c->softcap;
  if (c->alibi) {
    alibi_slopes(r->slopes, c->hq);
    r->desc.alibi_slopes = r->slopes;
  }
  if (c->smod) {
    r->desc.score_mod = SCORE_MOD;
    r->x.score_mod = score_mod_c;
  }
  if (c->mmod) {
    r->desc.mask_mod = MASK_MOD;
    r->x.mask_mod = mask_mod_c;
  }
  if (c->lens) {
    make_lens(r->lq, c->b, c->nq, 0);
    make_lens(r->lk, c->b, c->nk, 1);
    r->x.lens_q = r->lq;
    r->x.lens_k = r->lk;
  }
}

static void describe(const mcase *c, const char *tiles) {
  print_message("  %s %s B=%zu Hq=%zu Hkv=%zu Nq=%zu Nk=%zu D=%zu Dv=%zu "
                "causal=%d window=(%d,%d) softcap=%g alibi=%d lens=%d "
                "score_mod=%d mask_mod=%d tiles=%s\n",
                clattn_variant_name(c->variant), clattn_dtype_name(c->dtype),
                c->b, c->hq, c->hkv, c->nq, c->nk, c->d, c->dv, c->causal,
                c->left, c->right, (double)c->softcap, c->alibi, c->lens,
                c->smod, c->mmod, tiles ? tiles : "default");
}

/* Rows the reference leaves with no visible key (LSE -inf) must be exactly
 * 0 with LSE exactly -inf. */
static int check_empty(const float *o, const float *lse, const double *ref_lse,
                       size_t rows, size_t dv) {
  if (!lse)
    return 1;
  for (size_t r = 0; r < rows; r++) {
    if (!(isinf(ref_lse[r]) && ref_lse[r] < 0))
      continue;
    if (!(isinf(lse[r]) && lse[r] < 0)) {
      print_error("row %zu sees no key: LSE %.9g, want -inf\n", r,
                  (double)lse[r]);
      return 0;
    }
    for (size_t t = 0; t < dv; t++) {
      if (o[r * dv + t] != 0.0f) {
        print_error("row %zu sees no key: O[%zu] = %.9g, want 0\n", r, t,
                    (double)o[r * dv + t]);
        return 0;
      }
    }
  }
  return 1;
}

/* Runs the case with each tile spec and compares with the reference. */
static void check_case(const mcase *c, const char *const *tiles, size_t ntiles,
                       uint64_t seed) {
  clattn_context_t ctx = clattn_test_shared_context();
  mrun r;
  mrun_init(&r, c);
  clattn_test_problem p;
  clattn_test_problem_init(&p, &r.desc, seed);
  /* The library copies alibi_slopes at plan creation; the reference reads
   * them through p.desc, which still points at r. */
  clattn_ref_attention_ex(&p.desc, &r.x, p.q, p.k, p.v, p.ref_o, p.ref_lse);
  int ok = 1;
  clattn_status st = CLATTN_SUCCESS;
  for (size_t t = 0; t < ntiles && ok; t++) {
    clattn_desc d = r.desc;
    d.tiles = tiles[t];
    clattn_plan_t plan = NULL;
    st = clattn_plan_create(ctx, &d, &plan);
    if (st == CLATTN_SUCCESS)
      st = clattn_plan_run_host_varlen(plan, p.q, p.k, p.v, p.o, p.lse,
                                       c->lens ? r.lq : NULL,
                                       c->lens ? r.lk : NULL);
    if (st != CLATTN_SUCCESS)
      print_error("%s: %s\n", clattn_status_name(st),
                  clattn_context_error(ctx));
    clattn_plan_destroy(plan);
    ok = st == CLATTN_SUCCESS &&
         clattn_test_check("O", p.o, p.ref_o, p.n.o, dtype_tol(c->dtype));
    if (ok && p.lse)
      ok = clattn_test_check("LSE", p.lse, p.ref_lse, p.n.lse, TOL_LSE) &&
           check_empty(p.o, p.lse, p.ref_lse, p.n.lse, r.desc.dim_v);
    if (!ok)
      describe(c, tiles[t]);
  }
  clattn_test_problem_free(&p);
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_true(ok);
}

static const char *const all_shapes[] = {NULL, "SHAPE=gpu", "SHAPE=row"};
/* Named shapes: a sequence run alone may be short enough for the decode
 * kernels, which the padded batch does not use. */
static const char *const flash_shapes[] = {"SHAPE=cpu", "SHAPE=gpu",
                                           "SHAPE=row"};
static const char *const own_shape[] = {NULL};

#define SM CLATTN_VARIANT_SOFTMAX
#define SG CLATTN_VARIANT_SIGMOID
#define F32 CLATTN_DTYPE_F32
#define F16 CLATTN_DTYPE_F16
#define BF16 CLATTN_DTYPE_BF16

/* Each stage alone, softmax and sigmoid, f32, odd shapes with GQA and
 * Nq != Nk. */
static void test_each_stage(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  const mcase cases[] = {
      /* variant dtype b hq hkv nq nk d dv causal left right cap alibi lens
         smod mmod */
      {SM, F32, 3, 4, 2, 45, 71, 40, 24, 0, -1, -1, 0, 0, 1, 0, 0},
      {SM, F32, 3, 4, 2, 45, 71, 40, 24, 1, -1, -1, 0, 0, 1, 0, 0},
      {SM, F32, 1, 4, 2, 77, 133, 40, 24, 0, 17, 5, 0, 0, 0, 0, 0},
      {SM, F32, 1, 4, 2, 77, 133, 40, 24, 1, 33, -1, 0, 0, 0, 0, 0},
      {SM, F32, 1, 4, 2, 77, 133, 40, 24, 0, -1, 0, 0, 0, 0, 0, 0},
      {SM, F32, 1, 4, 2, 77, 133, 40, 24, 0, 0, -1, 0, 0, 0, 0, 0},
      {SM, F32, 1, 4, 2, 77, 133, 40, 24, 0, -1, -1, 3.0f, 0, 0, 0, 0},
      {SM, F32, 1, 4, 2, 77, 133, 40, 24, 1, -1, -1, 0, 1, 0, 0, 0},
      {SM, F32, 2, 4, 2, 77, 133, 40, 24, 0, -1, -1, 0, 0, 0, 1, 0},
      {SM, F32, 2, 4, 2, 77, 133, 40, 24, 0, -1, -1, 0, 0, 0, 0, 1},
      {SG, F32, 3, 4, 2, 45, 71, 40, 24, 1, -1, -1, 0, 0, 1, 0, 0},
      {SG, F32, 1, 4, 2, 77, 133, 40, 24, 0, 17, 5, 0, 0, 0, 0, 0},
      {SG, F32, 1, 4, 2, 77, 133, 40, 24, 0, -1, -1, 3.0f, 1, 0, 0, 0},
      {SG, F32, 2, 4, 2, 77, 133, 40, 24, 0, -1, -1, 0, 0, 0, 1, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_case(&cases[i], own_shape, 1, 100 + i);
}

/* Everything together, in every kernel shape. */
static void test_combined_every_shape(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  const mcase cases[] = {
      {SM, F32, 3, 4, 2, 45, 71, 40, 24, 1, 21, -1, 4.0f, 1, 1, 0, 0},
      {SM, F32, 2, 6, 3, 77, 61, 24, 40, 0, 9, 13, 2.0f, 1, 1, 1, 1},
      {SG, F32, 3, 4, 2, 45, 71, 40, 24, 1, 21, -1, 4.0f, 1, 1, 0, 1},
      {SG, F32, 2, 6, 3, 77, 61, 24, 40, 0, 9, 13, 2.0f, 1, 1, 1, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_case(&cases[i], all_shapes, 3, 200 + i);
}

/* Half and bfloat16 storage with the whole pipeline. */
static void test_storage_dtypes(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  const mcase cases[] = {
      {SM, F16, 3, 4, 2, 45, 71, 40, 24, 1, 21, -1, 4.0f, 1, 1, 0, 1},
      {SM, BF16, 3, 4, 2, 45, 71, 40, 24, 0, 9, 13, 2.0f, 1, 1, 1, 0},
      {SG, F16, 3, 4, 2, 45, 71, 40, 24, 0, 9, 13, 2.0f, 1, 1, 1, 0},
      {SG, BF16, 3, 4, 2, 45, 71, 40, 24, 1, 21, -1, 4.0f, 1, 1, 0, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_case(&cases[i], own_shape, 1, 300 + i);
}

/* A padded batch gives, for each sequence, exactly what that sequence gives
 * run alone (the same kernels visit the same key blocks in the same order,
 * so the floats agree bit for bit); padded rows are 0 with LSE -inf. */
static void check_padded(const mcase *c, const char *tiles, uint64_t seed) {
  clattn_context_t ctx = clattn_test_shared_context();
  mrun r;
  mrun_init(&r, c);
  r.desc.tiles = tiles;
  clattn_test_problem p;
  clattn_test_problem_init(&p, &r.desc, seed);
  clattn_plan_t plan = NULL;
  clattn_status st = clattn_plan_create(ctx, &r.desc, &plan);
  if (st == CLATTN_SUCCESS)
    st = clattn_plan_run_host_varlen(plan, p.q, p.k, p.v, p.o, p.lse, r.lq,
                                     r.lk);
  clattn_plan_destroy(plan);
  if (st != CLATTN_SUCCESS)
    print_error("%s\n", clattn_context_error(ctx));
  size_t d = c->d, dv = c->dv, bad = 0;
  for (size_t b = 0; b < c->b && st == CLATTN_SUCCESS && !bad; b++) {
    size_t lq = (size_t)r.lq[b], lk = (size_t)r.lk[b];
    const float *ob = p.o + b * c->hq * c->nq * dv;
    const float *lb = p.lse ? p.lse + b * c->hq * c->nq : NULL;
    if (lq > 0 && lk > 0) {
      clattn_desc one = r.desc;
      one.batch = 1;
      one.seq_q = lq;
      one.seq_k = lk;
      size_t nq1 = c->hq * lq, nk1 = c->hkv * lk;
      float *q1 = malloc(nq1 * d * sizeof(float));
      float *k1 = malloc(nk1 * d * sizeof(float));
      float *v1 = malloc(nk1 * dv * sizeof(float));
      float *o1 = malloc(nq1 * dv * sizeof(float));
      float *l1 = malloc(nq1 * sizeof(float));
      assert_non_null(q1);
      assert_non_null(k1);
      assert_non_null(v1);
      assert_non_null(o1);
      assert_non_null(l1);
      for (size_t h = 0; h < c->hq; h++)
        memcpy(q1 + h * lq * d, p.q + ((b * c->hq + h) * c->nq) * d,
               lq * d * sizeof(float));
      for (size_t h = 0; h < c->hkv; h++) {
        memcpy(k1 + h * lk * d, p.k + ((b * c->hkv + h) * c->nk) * d,
               lk * d * sizeof(float));
        memcpy(v1 + h * lk * dv, p.v + ((b * c->hkv + h) * c->nk) * dv,
               lk * dv * sizeof(float));
      }
      /* mask_mod and score_mod see b: the alone run is batch index 0, so
       * the batch-dependent mask would differ; the cases that test padding
       * use mods that ignore b, or none. */
      plan = NULL;
      st = clattn_plan_create(ctx, &one, &plan);
      if (st == CLATTN_SUCCESS)
        st = clattn_plan_run_host(plan, q1, k1, v1, o1, p.lse ? l1 : NULL);
      clattn_plan_destroy(plan);
      for (size_t h = 0; h < c->hq && st == CLATTN_SUCCESS && !bad; h++) {
        const float *oh = ob + h * c->nq * dv;
        if (memcmp(oh, o1 + h * lq * dv, lq * dv * sizeof(float)) != 0 ||
            (lb && memcmp(lb + h * c->nq, l1 + h * lq, lq * sizeof(float))))
          bad = 1 + b;
      }
      free(q1);
      free(k1);
      free(v1);
      free(o1);
      free(l1);
    }
    /* Rows past Lq (all of them when Lk is 0 too): 0, LSE -inf; with
     * Lk = 0 every row sees nothing. */
    for (size_t h = 0; h < c->hq && !bad; h++) {
      size_t from = lk == 0 ? 0 : lq;
      for (size_t i = from; i < c->nq && !bad; i++) {
        for (size_t t = 0; t < dv; t++)
          if (ob[(h * c->nq + i) * dv + t] != 0.0f)
            bad = 1 + b;
        if (lb && !(isinf(lb[h * c->nq + i]) && lb[h * c->nq + i] < 0))
          bad = 1 + b;
      }
    }
  }
  if (bad) {
    print_error("sequence %zu of the padded batch differs from its run "
                "alone\n",
                bad - 1);
    describe(c, tiles);
  }
  clattn_test_problem_free(&p);
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_int_equal(bad, 0);
}

static void test_padded_batch_equals_alone(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  const mcase cases[] = {
      {SM, F32, 4, 4, 2, 45, 71, 40, 24, 1, 21, -1, 4.0f, 1, 1, 0, 0},
      {SM, F32, 4, 4, 2, 45, 71, 40, 24, 0, -1, -1, 0, 0, 1, 0, 0},
      {SG, F32, 4, 4, 2, 45, 71, 40, 24, 0, 9, 13, 2.0f, 1, 1, 0, 0},
      {SM, F16, 4, 4, 2, 45, 71, 40, 24, 1, -1, -1, 0, 0, 1, 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    for (size_t s = 0; s < 3; s++)
      check_padded(&cases[i], flash_shapes[s], 400 + i);
}

/* What the padding of a padded batch holds never matters: NaN and
 * infinities past the lengths in Q, K and V give the same output as
 * zeros, bit for bit, in every shape. */
static void test_padding_never_read(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  clattn_context_t ctx = clattn_test_shared_context();
  const mcase cases[] = {
      {SM, F32, 3, 4, 2, 45, 71, 40, 24, 1, -1, -1, 0, 0, 1, 0, 0},
      {SG, F32, 3, 4, 2, 45, 71, 40, 24, 0, 9, 13, 2.0f, 1, 1, 0, 1},
  };
  for (size_t c = 0; c < 2; c++) {
    mrun r;
    mrun_init(&r, &cases[c]);
    const mcase *m = &cases[c];
    clattn_test_problem p;
    clattn_test_problem_init(&p, &r.desc, 1000 + c);
    float *clean = malloc(p.n.o * sizeof(float));
    assert_non_null(clean);
    int same = 1;
    clattn_status st = CLATTN_SUCCESS;
    for (size_t t = 0; t < 3 && same && st == CLATTN_SUCCESS; t++) {
      clattn_desc d = r.desc;
      d.tiles = flash_shapes[t];
      for (int dirty = 0; dirty < 2 && st == CLATTN_SUCCESS; dirty++) {
        for (size_t b = 0; b < m->b; b++) {
          const float junk = dirty ? (b % 2 ? NAN : INFINITY) : 0.0f;
          for (size_t h = 0; h < m->hq; h++)
            for (size_t i = (size_t)r.lq[b]; i < m->nq; i++)
              for (size_t e = 0; e < m->d; e++)
                p.q[((b * m->hq + h) * m->nq + i) * m->d + e] = junk;
          for (size_t h = 0; h < m->hkv; h++)
            for (size_t j = (size_t)r.lk[b]; j < m->nk; j++) {
              for (size_t e = 0; e < m->d; e++)
                p.k[((b * m->hkv + h) * m->nk + j) * m->d + e] = junk;
              for (size_t e = 0; e < m->dv; e++)
                p.v[((b * m->hkv + h) * m->nk + j) * m->dv + e] = -junk;
            }
        }
        clattn_plan_t plan = NULL;
        st = clattn_plan_create(ctx, &d, &plan);
        if (st == CLATTN_SUCCESS)
          st = clattn_plan_run_host_varlen(
              plan, p.q, p.k, p.v, dirty ? p.o : clean, NULL, r.lq, r.lk);
        clattn_plan_destroy(plan);
      }
      if (st == CLATTN_SUCCESS)
        same = memcmp(clean, p.o, p.n.o * sizeof(float)) == 0;
      if (!same)
        describe(m, d.tiles);
    }
    free(clean);
    clattn_test_problem_free(&p);
    assert_int_equal(st, CLATTN_SUCCESS);
    assert_true(same);
  }
}

/* A window of (left, 0) over a long sequence, where most key blocks are
 * skipped, in each shape. */
static void test_window_skips_blocks(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  const mcase cases[] = {
      {SM, F32, 1, 2, 1, 700, 700, 32, 32, 1, 63, -1, 0, 0, 0, 0, 0},
      {SG, F32, 1, 2, 1, 700, 700, 32, 32, 0, 63, 0, 0, 0, 0, 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_case(&cases[i], all_shapes, 3, 500 + i);
}

/* A block-diagonal mask_mod with tiles small enough that the block mask
 * holds all three kinds of block (dropped, partial, whole): the kernels
 * skip, mask and leave alone the right ones. */
#define BLOCK_DIAG "(i / 96) == (j / 96) || (i + j) % 61 == 0"
static int block_diag_c(int b, int h, int i, int j) {
  (void)b;
  (void)h;
  return (i / 96) == (j / 96) || (i + j) % 61 == 0;
}

static void test_block_mask(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  clattn_context_t ctx = clattn_test_shared_context();
  static const char *const tiles[] = {"SHAPE=cpu,S_VECS=1,BLOCK_M=8,BLOCK_N=32",
                                      "SHAPE=gpu,BLOCK_M=16,BLOCK_N=16",
                                      "SHAPE=row,BLOCK_M=4,BLOCK_N=16"};
  const clattn_ref_extra x = {NULL, NULL, NULL, block_diag_c};
  for (int v = 0; v < 2; v++) {
    clattn_desc d =
        clattn_test_desc(v ? SG : SM, F32, v, 2, 2, 1, 400, 420, 24, 24);
    d.mask_mod = BLOCK_DIAG;
    clattn_test_problem p;
    clattn_test_problem_init(&p, &d, 900 + (uint64_t)v);
    clattn_ref_attention_ex(&p.desc, &x, p.q, p.k, p.v, p.ref_o, p.ref_lse);
    int ok = 1;
    clattn_status st = CLATTN_SUCCESS;
    for (size_t t = 0; t < 3 && ok; t++) {
      p.desc.tiles = tiles[t];
      st = clattn_test_problem_run_host(&p, ctx);
      ok = st == CLATTN_SUCCESS &&
           clattn_test_check("O", p.o, p.ref_o, p.n.o, TOL_F32);
      if (ok && p.lse)
        ok = clattn_test_check("LSE", p.lse, p.ref_lse, p.n.lse, TOL_LSE);
      if (!ok)
        print_error("  %s block-diagonal mask_mod, tiles %s\n",
                    clattn_variant_name(d.variant), tiles[t]);
    }
    clattn_test_problem_free(&p);
    assert_int_equal(st, CLATTN_SUCCESS);
    assert_true(ok);
  }
}

/* Runs desc on fixed inputs; out receives O. */
static clattn_status run_o(clattn_context_t ctx, const clattn_desc *d,
                           const clattn_test_problem *p, float *out) {
  clattn_plan_t plan = NULL;
  clattn_status st = clattn_plan_create(ctx, d, &plan);
  if (st == CLATTN_SUCCESS)
    st = clattn_plan_run_host(plan, p->q, p->k, p->v, out, NULL);
  if (st != CLATTN_SUCCESS)
    print_error("%s: %s\n", clattn_status_name(st), clattn_context_error(ctx));
  clattn_plan_destroy(plan);
  return st;
}

/* The mods are part of the program's identity: plans that differ only in
 * their mask_mod, made one after another in one context, each get their
 * own kernels. "j <= i" is the causal mask (Nq = Nk), "1" no mask. */
static void test_mods_in_program_key(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = clattn_test_desc(SM, F32, 0, 1, 2, 2, 50, 50, 16, 16);
  clattn_test_problem p;
  clattn_test_problem_init(&p, &d, 600);
  float *causal = malloc(p.n.o * sizeof(float));
  float *full = malloc(p.n.o * sizeof(float));
  float *m1 = malloc(p.n.o * sizeof(float));
  float *m2 = malloc(p.n.o * sizeof(float));
  assert_non_null(causal);
  assert_non_null(full);
  assert_non_null(m1);
  assert_non_null(m2);
  clattn_status st = run_o(ctx, &d, &p, full);
  d.causal = 1;
  if (st == CLATTN_SUCCESS)
    st = run_o(ctx, &d, &p, causal);
  d.causal = 0;
  d.mask_mod = "j <= i";
  if (st == CLATTN_SUCCESS)
    st = run_o(ctx, &d, &p, m1);
  d.mask_mod = "1";
  if (st == CLATTN_SUCCESS)
    st = run_o(ctx, &d, &p, m2);
  double e1 = 0.0, e2 = 0.0, diff = 0.0;
  for (size_t t = 0; t < p.n.o; t++) {
    e1 = fmax(e1, fabs((double)m1[t] - causal[t]));
    e2 = fmax(e2, fabs((double)m2[t] - full[t]));
    diff = fmax(diff, fabs((double)causal[t] - full[t]));
  }
  clattn_test_problem_free(&p);
  free(causal);
  free(full);
  free(m1);
  free(m2);
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_true(diff > 1e-3); /* the two masks differ */
  assert_true(e1 < 1e-5);
  assert_true(e2 < 1e-5);
}

/* Lengths past N in a device buffer are clamped by the kernels: the run
 * reads nothing out of bounds and equals the run with the clamped lengths
 * (Oclgrind checks the bounds in test_tiny). */
static void test_device_lengths_clamped(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  clattn_context_t ctx = clattn_test_shared_context();
  cl_context cl = clattn_context_cl(ctx);
  cl_command_queue queue = clattn_context_queue(ctx);
  clattn_desc d = clattn_test_desc(SM, F32, 1, 2, 2, 1, 20, 30, 8, 8);
  clattn_test_problem p;
  clattn_test_problem_init(&p, &d, 700);
  const cl_int wild_q[2] = {1000, 5}, wild_k[2] = {-1, 1 << 30};
  const cl_int tame_q[2] = {20, 5}, tame_k[2] = {0, 30};
  cl_int err = CL_SUCCESS;
  size_t qb = p.n.q * 4, kb = p.n.k * 4, vb = p.n.v * 4, ob = p.n.o * 4;
  cl_mem bq = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, qb,
                             p.q, &err);
  cl_mem bk = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, kb,
                             p.k, &err);
  cl_mem bv = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, vb,
                             p.v, &err);
  cl_mem bo = clCreateBuffer(cl, CL_MEM_READ_WRITE, ob, NULL, &err);
  cl_mem lq = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                             sizeof wild_q, (void *)wild_q, &err);
  cl_mem lk = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                             sizeof wild_k, (void *)wild_k, &err);
  assert_int_equal(err, CL_SUCCESS);
  float *wild = malloc(ob), *tame = malloc(ob);
  assert_non_null(wild);
  assert_non_null(tame);
  clattn_plan_t plan = NULL;
  clattn_status st = clattn_plan_create(ctx, &d, &plan);
  if (st == CLATTN_SUCCESS)
    st = clattn_plan_run_varlen(plan, bq, bk, bv, bo, NULL, lq, lk, 0, NULL,
                                NULL);
  if (st == CLATTN_SUCCESS)
    err = clEnqueueReadBuffer(queue, bo, CL_TRUE, 0, ob, wild, 0, NULL, NULL);
  if (st == CLATTN_SUCCESS)
    st = clattn_plan_run_host_varlen(plan, p.q, p.k, p.v, tame, NULL, tame_q,
                                     tame_k);
  /* The host calls check lengths instead. */
  clattn_status refused = CLATTN_SUCCESS;
  if (st == CLATTN_SUCCESS)
    refused = clattn_plan_run_host_varlen(plan, p.q, p.k, p.v, tame, NULL,
                                          wild_q, NULL);
  char msg[256];
  clattn_context_error_copy(ctx, msg, sizeof msg);
  clattn_plan_destroy(plan);
  int same = memcmp(wild, tame, ob) == 0;
  cl_mem all[] = {bq, bk, bv, bo, lq, lk};
  for (size_t i = 0; i < 6; i++)
    clReleaseMemObject(all[i]);
  free(wild);
  free(tame);
  clattn_test_problem_free(&p);
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_int_equal(err, CL_SUCCESS);
  assert_true(same);
  assert_int_equal(refused, CLATTN_ERROR_INVALID_VALUE);
  assert_non_null(strstr(msg, "seq_lens_q[0] = 1000"));
}

/* What the pipeline refuses, and how. */
static void test_errors(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_plan_t plan = NULL;
  clattn_desc d = clattn_test_desc(SM, F32, 0, 1, 2, 2, 16, 16, 8, 8);
  char msg[512];

  /* A mod that does not compile: the build log reaches the caller. */
  d.mask_mod = "i +* j";
  assert_int_equal(clattn_plan_create(ctx, &d, &plan),
                   CLATTN_ERROR_BUILD_FAILED);
  assert_null(plan);
  clattn_context_error_copy(ctx, msg, sizeof msg);
  assert_non_null(strstr(msg, "build log"));

  /* Not one expression. */
  d.mask_mod = "1; }";
  assert_int_equal(clattn_desc_check(NULL, &d, msg, sizeof msg),
                   CLATTN_ERROR_INVALID_DESCRIPTOR);
  assert_non_null(strstr(msg, "mask_mod"));
  d.mask_mod = NULL;
  d.score_mod = "score) + (1";
  assert_int_equal(clattn_desc_check(NULL, &d, msg, sizeof msg),
                   CLATTN_ERROR_INVALID_DESCRIPTOR);
  d.score_mod = "";
  assert_int_equal(clattn_desc_check(NULL, &d, msg, sizeof msg),
                   CLATTN_ERROR_INVALID_DESCRIPTOR);
  d.score_mod = NULL;

  /* Bad values. */
  d.window_left = -2;
  assert_int_equal(clattn_desc_check(NULL, &d, msg, sizeof msg),
                   CLATTN_ERROR_INVALID_DESCRIPTOR);
  assert_non_null(strstr(msg, "window_left"));
  d.window_left = -1;
  d.softcap = -1.0f;
  assert_int_equal(clattn_desc_check(NULL, &d, msg, sizeof msg),
                   CLATTN_ERROR_INVALID_DESCRIPTOR);
  d.softcap = INFINITY;
  assert_int_equal(clattn_desc_check(NULL, &d, msg, sizeof msg),
                   CLATTN_ERROR_INVALID_DESCRIPTOR);
  d.softcap = 0.0f;
  float slopes[2] = {0.5f, NAN};
  d.alibi_slopes = slopes;
  assert_int_equal(clattn_desc_check(NULL, &d, msg, sizeof msg),
                   CLATTN_ERROR_INVALID_DESCRIPTOR);
  assert_non_null(strstr(msg, "alibi_slopes[1]"));
  d.alibi_slopes = NULL;

  /* The pipeline belongs to softmax and sigmoid. */
  clattn_desc l =
      clattn_test_desc(CLATTN_VARIANT_LINEAR, F32, 0, 1, 2, 2, 16, 16, 8, 8);
  l.window_left = 4;
  assert_int_equal(clattn_desc_check(NULL, &l, msg, sizeof msg),
                   CLATTN_ERROR_INVALID_DESCRIPTOR);
  l.window_left = -1;
  l.softcap = 5.0f;
  assert_int_equal(clattn_desc_check(NULL, &l, msg, sizeof msg),
                   CLATTN_ERROR_INVALID_DESCRIPTOR);

  /* A score_mod has no backward; a length buffer too small is refused. */
  d.score_mod = "score * 0.5f";
  assert_int_equal(clattn_plan_create(ctx, &d, &plan), CLATTN_SUCCESS);
  clattn_test_problem p;
  clattn_test_problem_init(&p, &d, 800);
  float *g = calloc(p.n.q + p.n.k + p.n.v, sizeof(float));
  assert_non_null(g);
  clattn_status st = clattn_plan_backward_host(
      plan, p.q, p.k, p.v, p.o, p.lse, p.o, g, g + p.n.q, g + p.n.q + p.n.k);
  clattn_context_error_copy(ctx, msg, sizeof msg);
  cl_int err = CL_SUCCESS;
  cl_mem tiny =
      clCreateBuffer(clattn_context_cl(ctx), CL_MEM_READ_WRITE, 2, NULL, &err);
  cl_mem big = clCreateBuffer(clattn_context_cl(ctx), CL_MEM_READ_WRITE,
                              p.n.q * 4 + p.n.k * 4, NULL, &err);
  clattn_status small = clattn_plan_run_varlen(plan, big, big, big, big, NULL,
                                               tiny, NULL, 0, NULL, NULL);
  clFinish(clattn_context_queue(ctx));
  clReleaseMemObject(tiny);
  clReleaseMemObject(big);
  clattn_plan_destroy(plan);
  free(g);
  clattn_test_problem_free(&p);
  assert_int_equal(st, CLATTN_ERROR_UNSUPPORTED);
  assert_non_null(strstr(msg, "score_mod"));
  assert_int_equal(err, CL_SUCCESS);
  assert_int_equal(small, CLATTN_ERROR_INVALID_BUFFER_SIZE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_each_stage),
      cmocka_unit_test(test_combined_every_shape),
      cmocka_unit_test(test_storage_dtypes),
      cmocka_unit_test(test_padded_batch_equals_alone),
      cmocka_unit_test(test_window_skips_blocks),
      cmocka_unit_test(test_padding_never_read),
      cmocka_unit_test(test_mods_in_program_key),
      cmocka_unit_test(test_block_mask),
      cmocka_unit_test(test_device_lengths_clamped),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
