/*
 * test_backward.c - backward passes through the public API against the
 * float64 gradient reference (itself checked by finite differences in
 * test_reference.c), over shapes that stress masking, grouped heads, head
 * sizes and storage types; the score pipeline and per-sequence lengths,
 * with NaN and infinities in the padding giving what zeros give, bit for
 * bit; plus the API's argument checks.
 *
 * Errors are max |g - ref| / max |ref| per gradient tensor.
 */
#include "reference.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* f32: float accumulation over ~100-200 keys and query rows (dK and dV sum
 * over every row of the group), recomputed weights from a float LSE. */
#define TOL_F32 1e-4
/* f16 and bf16: inputs are pre-rounded so the reference sees them, but O
 * (which DELTA reads) and the gradients are stored rounded. */
#define TOL_HALF 3e-2

static int tiny; /* --tiny: shapes small enough for Oclgrind */

static double tol_of(clattn_dtype dtype) {
  return dtype == CLATTN_DTYPE_F32 ? TOL_F32 : TOL_HALF;
}

/* Rows with no visible key (causal, Nq > Nk) must give exactly zero dQ. */
static int check_empty_rows(const clattn_desc *d, const float *dq) {
  if (!d->causal || d->seq_q <= d->seq_k)
    return 1;
  size_t empty = d->seq_q - d->seq_k;
  for (size_t bh = 0; bh < d->batch * d->heads_q; bh++)
    for (size_t i = 0; i < empty; i++)
      for (size_t t = 0; t < d->dim; t++)
        if (dq[(bh * d->seq_q + i) * d->dim + t] != 0.0f) {
          print_error("row %zu of head %zu sees no key: dQ[%zu] = %g\n", i, bh,
                      t, (double)dq[(bh * d->seq_q + i) * d->dim + t]);
          return 0;
        }
  return 1;
}

/* What a case adds to its descriptor: lengths (NULL: full) and the user's
 * mask as OpenCL C (desc.mask_mod) with its C twin for the reference. */
typedef struct bwd_pipe {
  const cl_int *lens_q, *lens_k;
  const char *mask_mod;
  int (*mask_c)(int b, int h, int i, int j);
} bwd_pipe;

static size_t len_of(const cl_int *lens, size_t b, size_t n) {
  return lens ? (size_t)lens[b] : n;
}

/* Forward (for O and LSE) then backward of d through the public host API. */
static void run_backward(const clattn_desc *d, const bwd_pipe *pp,
                         const float *q, const float *k, const float *v,
                         const float *dout, float *dq, float *dk, float *dv) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_test_sizes n;
  clattn_test_sizes_get(d, &n);
  const cl_int *lq = pp ? pp->lens_q : NULL, *lk = pp ? pp->lens_k : NULL;
  float *o = clattn_test_alloc_f(n.o), *lse = clattn_test_alloc_f(n.lse);
  clattn_plan_t plan = NULL;
  clattn_status st = clattn_plan_create(ctx, d, &plan);
  if (st != CLATTN_SUCCESS)
    fail_msg("%s: %s", clattn_status_name(st), clattn_context_error(ctx));
  int softmax = d->variant == CLATTN_VARIANT_SOFTMAX;
  st = clattn_plan_run_host_varlen(plan, q, k, v, o, softmax ? lse : NULL, lq,
                                   lk);
  if (st != CLATTN_SUCCESS)
    fail_msg("%s: %s", clattn_status_name(st), clattn_context_error(ctx));
  for (size_t t = 0; t < n.q; t++)
    dq[t] = NAN;
  for (size_t t = 0; t < n.k; t++)
    dk[t] = NAN;
  for (size_t t = 0; t < n.v; t++)
    dv[t] = NAN;
  st = clattn_plan_backward_host_varlen(plan, q, k, v, softmax ? o : NULL,
                                        softmax ? lse : NULL, dout, dq, dk, dv,
                                        lq, lk);
  if (st != CLATTN_SUCCESS)
    fail_msg("%s: %s", clattn_status_name(st), clattn_context_error(ctx));
  clattn_plan_destroy(plan);
  free(o);
  free(lse);
}

/* Rows past a sequence's Lq and keys past its Lk must have exactly zero
 * gradients. */
static int check_outside(const clattn_desc *d, const bwd_pipe *pp,
                         const float *dq, const float *dk, const float *dv) {
  size_t hkv = d->heads_kv ? d->heads_kv : d->heads_q;
  size_t dvd = d->dim_v ? d->dim_v : d->dim;
  for (size_t b = 0; b < d->batch; b++) {
    size_t lq = len_of(pp->lens_q, b, d->seq_q);
    size_t lk = len_of(pp->lens_k, b, d->seq_k);
    for (size_t h = 0; h < d->heads_q; h++)
      for (size_t i = lq; i < d->seq_q; i++)
        for (size_t t = 0; t < d->dim; t++) {
          float x = dq[((b * d->heads_q + h) * d->seq_q + i) * d->dim + t];
          if (x != 0.0f) {
            print_error("dQ of row %zu past Lq = %zu (b %zu h %zu) is %g\n", i,
                        lq, b, h, (double)x);
            return 0;
          }
        }
    for (size_t h = 0; h < hkv; h++)
      for (size_t j = lk; j < d->seq_k; j++) {
        size_t row = (b * hkv + h) * d->seq_k + j;
        for (size_t t = 0; t < d->dim; t++)
          if (dk[row * d->dim + t] != 0.0f) {
            print_error("dK of key %zu past Lk = %zu is %g\n", j, lk,
                        (double)dk[row * d->dim + t]);
            return 0;
          }
        for (size_t t = 0; t < dvd; t++)
          if (dv[row * dvd + t] != 0.0f) {
            print_error("dV of key %zu past Lk = %zu is %g\n", j, lk,
                        (double)dv[row * dvd + t]);
            return 0;
          }
      }
  }
  return 1;
}

static void check_desc_ex(clattn_desc d, const bwd_pipe *pp, uint64_t seed) {
  clattn_test_problem pr;
  if (pp)
    d.mask_mod = pp->mask_mod;
  clattn_test_problem_init(&pr, &d, seed);
  float *dout = clattn_test_alloc_f(pr.n.o);
  float *dq = clattn_test_alloc_f(pr.n.q), *dk = clattn_test_alloc_f(pr.n.k),
        *dv = clattn_test_alloc_f(pr.n.v);
  double *rq = clattn_test_alloc_d(pr.n.q), *rk = clattn_test_alloc_d(pr.n.k),
         *rv = clattn_test_alloc_d(pr.n.v);
  clattn_test_fill_normal(dout, pr.n.o, seed + 7, 0.0f, 1.0f);
  clattn_test_round_to_dtype(dout, pr.n.o, d.dtype);
  int lens_q[8], lens_k[8];
  clattn_ref_extra ex = {NULL, NULL, NULL, NULL};
  if (pp) {
    assert_true(d.batch <= 8);
    for (size_t b = 0; b < d.batch; b++) {
      lens_q[b] = (int)len_of(pp->lens_q, b, d.seq_q);
      lens_k[b] = (int)len_of(pp->lens_k, b, d.seq_k);
    }
    ex.lens_q = lens_q;
    ex.lens_k = lens_k;
    ex.mask_mod = pp->mask_c;
  }
  clattn_ref_attention_backward_ex(&d, &ex, pr.q, pr.k, pr.v, dout, rq, rk, rv);
  run_backward(&d, pp, pr.q, pr.k, pr.v, dout, dq, dk, dv);
  double tol = tol_of(d.dtype);
  int ok = clattn_test_check("dQ", dq, rq, pr.n.q, tol);
  ok &= clattn_test_check("dK", dk, rk, pr.n.k, tol);
  ok &= clattn_test_check("dV", dv, rv, pr.n.v, tol);
  ok &= pp ? check_outside(&d, pp, dq, dk, dv) : check_empty_rows(&d, dq);
  if (!ok)
    fail_msg("%s B=%zu Hq=%zu Hkv=%zu Nq=%zu Nk=%zu D=%zu Dv=%zu causal=%d "
             "%s lengths=%d window=%d,%d softcap=%g alibi=%d mask_mod=%s "
             "tiles=%s",
             clattn_variant_name(d.variant), d.batch, d.heads_q, d.heads_kv,
             d.seq_q, d.seq_k, d.dim, d.dim_v, d.causal,
             clattn_dtype_name(d.dtype), pp && (pp->lens_q || pp->lens_k),
             d.window_left, d.window_right, (double)d.softcap,
             d.alibi_slopes != NULL, d.mask_mod ? d.mask_mod : "none",
             d.tiles ? d.tiles : "default");
  free(dout);
  free(dq);
  free(dk);
  free(dv);
  free(rq);
  free(rk);
  free(rv);
  clattn_test_problem_free(&pr);
}

static void check_desc(clattn_desc d, uint64_t seed) {
  check_desc_ex(d, NULL, seed);
}

/* The shapes: Nq = 77, Nk = 133, D = 40, Dv = 24 with GQA, causal or not;
 * Nq > Nk causal (empty rows); equal lengths with a power-of-two head
 * dimension. f16 and bf16 change only loads and stores, so they take the
 * causal odd shape alone. Where the device has 16-float vectors, the cpu
 * shape takes up to 144 keys (D = 40) in one block, so key counts from 97
 * to 144 share the forward programs of Nk = 133: the shapes with D = 40
 * keep to that range where they need no more keys. */
static void check_variant(clattn_variant variant, uint64_t seed) {
  static const clattn_dtype dtypes[] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16,
                                        CLATTN_DTYPE_BF16};
  for (size_t t = 0; t < 3; t++) {
    clattn_dtype dt = dtypes[t];
    if (tiny) {
      check_desc(clattn_test_desc(variant, dt, 1, 1, 2, 1, 9, 6, 5, 3),
                 seed + t);
      continue;
    }
    check_desc(clattn_test_desc(variant, dt, 1, 2, 4, 2, 77, 133, 40, 24),
               seed + 10 * t);
    if (dt != CLATTN_DTYPE_F32)
      continue;
    check_desc(clattn_test_desc(variant, dt, 0, 2, 4, 2, 77, 133, 40, 24),
               seed + 1);
    check_desc(clattn_test_desc(variant, dt, 1, 1, 2, 1, 150, 101, 40, 24),
               seed + 5);
    check_desc(clattn_test_desc(variant, dt, 1, 1, 2, 2, 65, 65, 64, 64),
               seed + 6);
  }
}

/* Several key blocks, query blocks and (one kv head) key splits, whose dQ
 * copies are summed; Nq != Nk. */
static void check_long(clattn_variant variant, uint64_t seed) {
  if (tiny)
    return;
  check_desc(
      clattn_test_desc(variant, CLATTN_DTYPE_F32, 1, 1, 2, 1, 300, 333, 40, 24),
      seed);
  check_desc(
      clattn_test_desc(variant, CLATTN_DTYPE_F32, 0, 1, 1, 1, 260, 200, 64, 64),
      seed + 1);
}

static void test_backward_softmax(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_SOFTMAX, 1000);
  check_long(CLATTN_VARIANT_SOFTMAX, 1200);
}

static void test_backward_sigmoid(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_SIGMOID, 2000);
  check_long(CLATTN_VARIANT_SIGMOID, 2200);
  if (!tiny) {
    clattn_desc d = clattn_test_desc(CLATTN_VARIANT_SIGMOID, CLATTN_DTYPE_F32,
                                     0, 1, 2, 1, 31, 47, 16, 8);
    d.has_bias = 1;
    d.bias = 0.5f;
    d.scale = 0.3f;
    check_desc(d, 2100);
  }
}

static void test_backward_linear(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_LINEAR, 3000);
  if (!tiny) {
    /* relu features, a larger eps, and enough rows for several chunks. */
    clattn_desc d = clattn_test_desc(CLATTN_VARIANT_LINEAR, CLATTN_DTYPE_F32, 1,
                                     1, 2, 1, 200, 150, 16, 8);
    d.feature_map = CLATTN_FEATURE_MAP_RELU;
    d.eps = 1e-3f;
    check_desc(d, 3100);
    d.causal = 0;
    check_desc(d, 3101);
    /* The widest head dims (Dv not a whole number of vectors) and nearly
     * the narrowest: at D = 1 the output no longer depends on q (it is
     * S / z up to eps), so dQ is all cancellation, below float's
     * resolution. */
    check_desc(clattn_test_desc(CLATTN_VARIANT_LINEAR, CLATTN_DTYPE_F32, 1, 1,
                                1, 1, 37, 41, 256, 200),
               3102);
    check_desc(clattn_test_desc(CLATTN_VARIANT_LINEAR, CLATTN_DTYPE_F32, 0, 1,
                                2, 1, 23, 19, 2, 1),
               3103);
  }
}

static void test_backward_cosformer(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_COSFORMER, 4000);
  if (!tiny) {
    clattn_desc d = clattn_test_desc(CLATTN_VARIANT_COSFORMER, CLATTN_DTYPE_F32,
                                     1, 1, 2, 2, 150, 210, 12, 20);
    d.feature_map = CLATTN_FEATURE_MAP_ELU1;
    d.cos_m = 300.0f;
    check_desc(d, 4100);
    /* 2 x 256 features, Dv not a whole number of vectors. */
    check_desc(clattn_test_desc(CLATTN_VARIANT_COSFORMER, CLATTN_DTYPE_F32, 1,
                                1, 1, 1, 37, 41, 256, 200),
               4101);
  }
}

/* ---- The score pipeline ---------------------------------------------- */

/* The user's mask, as OpenCL C and as its C twin. */
#define MASK_CL "(i + 2 * j + b + h) % 5 != 3"
static int mask_c(int b, int h, int i, int j) {
  return (i + 2 * j + b + h) % 5 != 3;
}

static const float slopes[4] = {0.5f, 0.25f, 0.125f, 0.0625f};

enum { F_LENS = 1, F_WINDOW = 2, F_SOFTCAP = 4, F_ALIBI = 8, F_MASK = 16 };
#define F_ALL (F_LENS | F_WINDOW | F_SOFTCAP | F_ALIBI | F_MASK)

/* The odd shape (B = 2, GQA, D = 40, Dv = 24, Nq = 77, Nk = 133; tiny:
 * smaller) with the features `f`: sequence 1 shorter both ways, a window
 * (left 20 and, not causal, right 9), a softcap that bends the scores,
 * ALiBi, a mask_mod. */
static void pipe_case(clattn_variant variant, clattn_dtype dt, int causal,
                      int f, clattn_desc *d, bwd_pipe *pp) {
  static const cl_int lq[2] = {77, 50}, lk[2] = {133, 101};
  static const cl_int lq_tiny[2] = {9, 5}, lk_tiny[2] = {6, 4};
  *d = tiny ? clattn_test_desc(variant, dt, causal, 2, 2, 1, 9, 6, 5, 3)
            : clattn_test_desc(variant, dt, causal, 2, 4, 2, 77, 133, 40, 24);
  pp->lens_q = f & F_LENS ? (tiny ? lq_tiny : lq) : NULL;
  pp->lens_k = f & F_LENS ? (tiny ? lk_tiny : lk) : NULL;
  pp->mask_mod = f & F_MASK ? MASK_CL : NULL;
  pp->mask_c = f & F_MASK ? mask_c : NULL;
  if (f & F_WINDOW) {
    d->window_left = tiny ? 2 : 20;
    if (!causal)
      d->window_right = tiny ? 1 : 9;
  }
  if (f & F_SOFTCAP)
    d->softcap = 2.0f;
  if (f & F_ALIBI)
    d->alibi_slopes = slopes;
}

/* Each feature alone and all together, causal and not, in f32 on the
 * device's backward; all together on the row kernels (SHAPE=row, the GPU's
 * backward) and in f16 and bf16 too. */
static void check_pipeline(clattn_variant variant, uint64_t seed) {
  static const int alone[] = {F_LENS, F_WINDOW, F_SOFTCAP, F_ALIBI, F_MASK};
  clattn_desc d;
  bwd_pipe pp;
  for (int causal = 0; causal <= 1; causal++) {
    uint64_t sd = seed + 100 * (uint64_t)causal;
    if (!tiny)
      for (size_t t = 0; t < sizeof alone / sizeof alone[0]; t++) {
        pipe_case(variant, CLATTN_DTYPE_F32, causal, alone[t], &d, &pp);
        check_desc_ex(d, &pp, sd + t);
      }
    pipe_case(variant, CLATTN_DTYPE_F32, causal, F_ALL, &d, &pp);
    check_desc_ex(d, &pp, sd + 10);
    d.tiles = "SHAPE=row";
    check_desc_ex(d, &pp, sd + 11);
    pipe_case(variant, causal ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_BF16, causal,
              F_ALL, &d, &pp);
    check_desc_ex(d, &pp, sd + 12);
    if (!tiny) {
      /* Lengths and a window without the mask_mod: blocks inside the window
       * skip masking. */
      pipe_case(variant, CLATTN_DTYPE_F32, causal, F_LENS | F_WINDOW, &d, &pp);
      d.tiles = "SHAPE=row";
      check_desc_ex(d, &pp, sd + 13);
    }
  }
}

/* A narrow window over long sequences: many key blocks, most of them seen
 * by a few query blocks only, several splits; with a shorter sequence. */
static void check_pipeline_long(clattn_variant variant, uint64_t seed) {
  if (tiny)
    return;
  static const cl_int lq[2] = {600, 377}, lk[2] = {600, 411};
  bwd_pipe pp = {lq, lk, NULL, NULL};
  for (int t = 0; t < 2; t++) {
    clattn_desc d = clattn_test_desc(variant, CLATTN_DTYPE_F32, 1, 2, 2, 1, 600,
                                     600, 64, 64);
    d.window_left = 40;
    d.tiles = t ? "SHAPE=row" : NULL;
    check_desc_ex(d, &pp, seed + (uint64_t)t);
    d.causal = 0;
    d.window_right = 17;
    check_desc_ex(d, &pp, seed + 2 + (uint64_t)t);
  }
}

/* A padded batch gives each sequence the gradients it has alone (B = 1,
 * Nq = Lq, Nk = Lk): the mods without mask_mod, whose b differs alone. */
static void check_alone(clattn_variant variant, int causal, uint64_t seed) {
  clattn_desc d;
  bwd_pipe pp;
  pipe_case(variant, CLATTN_DTYPE_F32, causal,
            F_LENS | F_WINDOW | F_SOFTCAP | F_ALIBI, &d, &pp);
  clattn_test_sizes n;
  clattn_test_sizes_get(&d, &n);
  float *q = clattn_test_alloc_f(n.q), *k = clattn_test_alloc_f(n.k),
        *v = clattn_test_alloc_f(n.v);
  float *dout = clattn_test_alloc_f(n.o);
  float *dq = clattn_test_alloc_f(n.q), *dk = clattn_test_alloc_f(n.k),
        *dv = clattn_test_alloc_f(n.v);
  clattn_test_fill_normal(q, n.q, seed, 0.0f, 1.0f);
  clattn_test_fill_normal(k, n.k, seed + 1, 0.0f, 1.0f);
  clattn_test_fill_normal(v, n.v, seed + 2, 0.0f, 1.0f);
  clattn_test_fill_normal(dout, n.o, seed + 3, 0.0f, 1.0f);
  run_backward(&d, &pp, q, k, v, dout, dq, dk, dv);
  size_t hkv = d.heads_kv, nq = d.seq_q, nk = d.seq_k, dd = d.dim,
         dvd = d.dim_v;
  for (size_t b = 0; b < d.batch; b++) {
    clattn_desc one = d;
    one.batch = 1;
    one.seq_q = (size_t)pp.lens_q[b];
    one.seq_k = (size_t)pp.lens_k[b];
    clattn_test_sizes m;
    clattn_test_sizes_get(&one, &m);
    float *q1 = clattn_test_alloc_f(m.q), *k1 = clattn_test_alloc_f(m.k),
          *v1 = clattn_test_alloc_f(m.v);
    float *g1 = clattn_test_alloc_f(m.o);
    float *dq1 = clattn_test_alloc_f(m.q), *dk1 = clattn_test_alloc_f(m.k),
          *dv1 = clattn_test_alloc_f(m.v);
    double *pq = clattn_test_alloc_d(m.q), *pk = clattn_test_alloc_d(m.k),
           *pv = clattn_test_alloc_d(m.v);
    /* The slices of sequence b, and its padded gradients. */
    for (size_t h = 0; h < d.heads_q; h++)
      for (size_t i = 0; i < one.seq_q; i++) {
        size_t src = (b * d.heads_q + h) * nq + i, dst = h * one.seq_q + i;
        for (size_t t = 0; t < dd; t++) {
          q1[dst * dd + t] = q[src * dd + t];
          pq[dst * dd + t] = dq[src * dd + t];
        }
        for (size_t t = 0; t < dvd; t++)
          g1[dst * dvd + t] = dout[src * dvd + t];
      }
    for (size_t h = 0; h < hkv; h++)
      for (size_t j = 0; j < one.seq_k; j++) {
        size_t src = (b * hkv + h) * nk + j, dst = h * one.seq_k + j;
        for (size_t t = 0; t < dd; t++) {
          k1[dst * dd + t] = k[src * dd + t];
          pk[dst * dd + t] = dk[src * dd + t];
        }
        for (size_t t = 0; t < dvd; t++) {
          v1[dst * dvd + t] = v[src * dvd + t];
          pv[dst * dvd + t] = dv[src * dvd + t];
        }
      }
    run_backward(&one, NULL, q1, k1, v1, g1, dq1, dk1, dv1);
    /* Float sums in another order (other splits and blocks): f32 rounding
     * apart, equal. */
    int ok = clattn_test_check("dQ alone", dq1, pq, m.q, 1e-5);
    ok &= clattn_test_check("dK alone", dk1, pk, m.k, 1e-5);
    ok &= clattn_test_check("dV alone", dv1, pv, m.v, 1e-5);
    if (!ok)
      fail_msg("%s causal=%d: sequence %zu alone differs from the padded "
               "batch",
               clattn_variant_name(variant), causal, b);
    free(q1);
    free(k1);
    free(v1);
    free(g1);
    free(dq1);
    free(dk1);
    free(dv1);
    free(pq);
    free(pk);
    free(pv);
  }
  free(q);
  free(k);
  free(v);
  free(dout);
  free(dq);
  free(dk);
  free(dv);
}

static void test_backward_pipeline_softmax(void **state) {
  (void)state;
  check_pipeline(CLATTN_VARIANT_SOFTMAX, 5000);
  check_pipeline_long(CLATTN_VARIANT_SOFTMAX, 5500);
  if (!tiny) {
    check_alone(CLATTN_VARIANT_SOFTMAX, 0, 5600);
    check_alone(CLATTN_VARIANT_SOFTMAX, 1, 5700);
  }
}

static void test_backward_pipeline_sigmoid(void **state) {
  (void)state;
  check_pipeline(CLATTN_VARIANT_SIGMOID, 6000);
  check_pipeline_long(CLATTN_VARIANT_SIGMOID, 6500);
  if (!tiny) {
    check_alone(CLATTN_VARIANT_SIGMOID, 0, 6600);
    check_alone(CLATTN_VARIANT_SIGMOID, 1, 6700);
    /* A given bias is not replaced by the per-sequence default. */
    clattn_desc d;
    bwd_pipe pp;
    pipe_case(CLATTN_VARIANT_SIGMOID, CLATTN_DTYPE_F32, 1, F_ALL, &d, &pp);
    d.has_bias = 1;
    d.bias = -1.5f;
    check_desc_ex(d, &pp, 6800);
  }
}

/* What the padding of a padded batch holds never matters to the backward:
 * NaN and infinities in Q, dO, O and LSE past Lq and in K and V past Lk
 * give the gradients zeros give, bit for bit, and none is NaN; on both
 * backward shapes (the cpu single pass and the row kernels), lengths alone
 * and with the whole pipeline. */
static void check_padding(clattn_variant variant, const char *tiles, int f,
                          uint64_t seed) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d;
  bwd_pipe pp;
  pipe_case(variant, CLATTN_DTYPE_F32, f != F_LENS, f, &d, &pp);
  d.tiles = tiles;
  d.mask_mod = pp.mask_mod;
  clattn_test_sizes n;
  clattn_test_sizes_get(&d, &n);
  int softmax = variant == CLATTN_VARIANT_SOFTMAX;
  float *q = clattn_test_alloc_f(n.q), *k = clattn_test_alloc_f(n.k),
        *v = clattn_test_alloc_f(n.v);
  float *o = clattn_test_alloc_f(n.o), *lse = clattn_test_alloc_f(n.lse),
        *dout = clattn_test_alloc_f(n.o);
  float *g[2][3];
  for (int r = 0; r < 2; r++) {
    g[r][0] = clattn_test_alloc_f(n.q);
    g[r][1] = clattn_test_alloc_f(n.k);
    g[r][2] = clattn_test_alloc_f(n.v);
  }
  clattn_test_fill_normal(q, n.q, seed, 0.0f, 1.0f);
  clattn_test_fill_normal(k, n.k, seed + 1, 0.0f, 1.0f);
  clattn_test_fill_normal(v, n.v, seed + 2, 0.0f, 1.0f);
  clattn_test_fill_normal(dout, n.o, seed + 3, 0.0f, 1.0f);
  size_t hkv = d.heads_kv;
  clattn_plan_t plan = NULL;
  clattn_status st = clattn_plan_create(ctx, &d, &plan);
  if (st == CLATTN_SUCCESS)
    st = clattn_plan_run_host_varlen(plan, q, k, v, o, softmax ? lse : NULL,
                                     pp.lens_q, pp.lens_k);
  for (int dirty = 0; dirty < 2 && st == CLATTN_SUCCESS; dirty++) {
    for (size_t b = 0; b < d.batch; b++) {
      size_t lq = len_of(pp.lens_q, b, d.seq_q);
      size_t lk = len_of(pp.lens_k, b, d.seq_k);
      clattn_test_fill_padding(q, b, d.heads_q, d.seq_q, lq, d.dim, dirty);
      clattn_test_fill_padding(dout, b, d.heads_q, d.seq_q, lq, d.dim_v, dirty);
      clattn_test_fill_padding(o, b, d.heads_q, d.seq_q, lq, d.dim_v, dirty);
      if (softmax)
        clattn_test_fill_padding(lse, b, d.heads_q, d.seq_q, lq, 1, dirty);
      clattn_test_fill_padding(k, b, hkv, d.seq_k, lk, d.dim, dirty);
      clattn_test_fill_padding(v, b, hkv, d.seq_k, lk, d.dim_v, dirty);
    }
    st = clattn_plan_backward_host_varlen(
        plan, q, k, v, softmax ? o : NULL, softmax ? lse : NULL, dout,
        g[dirty][0], g[dirty][1], g[dirty][2], pp.lens_q, pp.lens_k);
  }
  clattn_plan_destroy(plan);
  if (st != CLATTN_SUCCESS)
    fail_msg("%s: %s", clattn_status_name(st), clattn_context_error(ctx));
  static const char *const names[3] = {"dQ", "dK", "dV"};
  const size_t sizes[3] = {n.q, n.k, n.v};
  int ok = 1;
  for (int t = 0; t < 3; t++) {
    size_t nan = 0;
    for (size_t e = 0; e < sizes[t]; e++)
      nan += isnan(g[1][t][e]) != 0;
    if (nan || memcmp(g[0][t], g[1][t], sizes[t] * sizeof(float)) != 0) {
      print_error("%s: %zu NaN, differs from the zero-padded run\n", names[t],
                  nan);
      ok = 0;
    }
  }
  ok &= check_outside(&d, &pp, g[1][0], g[1][1], g[1][2]);
  if (!ok)
    fail_msg("%s tiles=%s features=%d: the padding changes the gradients",
             clattn_variant_name(variant), tiles, f);
  for (int r = 0; r < 2; r++)
    for (int t = 0; t < 3; t++)
      free(g[r][t]);
  free(q);
  free(k);
  free(v);
  free(o);
  free(lse);
  free(dout);
}

static void test_backward_padding_never_read(void **state) {
  (void)state;
  static const char *const shapes[2] = {"SHAPE=cpu", "SHAPE=row"};
  for (int v = 0; v < 2; v++)
    for (int s = 0; s < 2; s++) {
      clattn_variant variant =
          v ? CLATTN_VARIANT_SIGMOID : CLATTN_VARIANT_SOFTMAX;
      check_padding(variant, shapes[s], F_LENS, 7000 + 10 * (uint64_t)s);
      check_padding(variant, shapes[s], F_ALL, 7100 + 10 * (uint64_t)s);
    }
}

/* A score_mod has no derivative clattn could take: backward refuses it,
 * with a message, whichever entry point is used. */
static void test_backward_score_mod_refused(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  for (int v = 0; v < 2; v++) {
    clattn_desc d =
        clattn_test_desc(v ? CLATTN_VARIANT_SIGMOID : CLATTN_VARIANT_SOFTMAX,
                         CLATTN_DTYPE_F32, 0, 1, 1, 1, 4, 4, 4, 4);
    d.score_mod = "score * 0.5f";
    clattn_plan_t plan = NULL;
    assert_int_equal(clattn_plan_create(ctx, &d, &plan), CLATTN_SUCCESS);
    float x[16] = {0}, o[16] = {0}, lse[4] = {0};
    assert_int_equal(clattn_plan_run_host(plan, x, x, x, o, v ? NULL : lse),
                     CLATTN_SUCCESS);
    float g[16];
    assert_int_equal(clattn_plan_backward_host(plan, x, x, x, v ? NULL : o,
                                               v ? NULL : lse, x, g, g, g),
                     CLATTN_ERROR_UNSUPPORTED);
    assert_non_null(strstr(clattn_context_error(ctx), "score_mod"));
    cl_int err = CL_SUCCESS;
    cl_mem big = clCreateBuffer(clattn_context_cl(ctx), CL_MEM_READ_WRITE, 256,
                                NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    assert_int_equal(clattn_plan_backward(plan, big, big, big, big, big, big,
                                          big, big, big, 0, NULL, NULL),
                     CLATTN_ERROR_UNSUPPORTED);
    assert_non_null(strstr(clattn_context_error(ctx), "score_mod"));
    clReleaseMemObject(big);
    clattn_plan_destroy(plan);
  }
}

/* Argument checks: NULL buffers, softmax without its forward outputs, a
 * gradient buffer too small, wait lists. */
static void test_backward_bad_input(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 0,
                                   1, 1, 1, 4, 4, 4, 4);
  clattn_plan_t plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, &plan), CLATTN_SUCCESS);
  cl_int err = CL_SUCCESS;
  cl_mem big = clCreateBuffer(clattn_context_cl(ctx), CL_MEM_READ_WRITE, 256,
                              NULL, &err);
  cl_mem small =
      clCreateBuffer(clattn_context_cl(ctx), CL_MEM_READ_WRITE, 8, NULL, &err);
  assert_int_equal(err, CL_SUCCESS);
  assert_int_equal(clattn_plan_backward(NULL, big, big, big, big, big, big, big,
                                        big, big, 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_plan_backward(plan, big, big, big, big, big, NULL,
                                        big, big, big, 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_plan_backward(plan, big, big, big, NULL, big, big,
                                        big, big, big, 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_non_null(strstr(clattn_context_error(ctx), "lse"));
  assert_int_equal(clattn_plan_backward(plan, big, big, big, big, big, big, big,
                                        small, big, 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_BUFFER_SIZE);
  assert_non_null(strstr(clattn_context_error(ctx), "dk"));
  assert_int_equal(clattn_plan_backward(plan, big, big, big, big, big, big, big,
                                        big, big, 1, NULL, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  float x[16] = {0};
  assert_int_equal(
      clattn_plan_backward_host(plan, x, x, x, NULL, NULL, x, x, x, x),
      CLATTN_ERROR_INVALID_VALUE);
  clattn_plan_destroy(plan);
  clReleaseMemObject(big);
  clReleaseMemObject(small);
}

int main(int argc, char **argv) {
  tiny = argc > 1 && strcmp(argv[1], "--tiny") == 0;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_backward_softmax),
      cmocka_unit_test(test_backward_sigmoid),
      cmocka_unit_test(test_backward_linear),
      cmocka_unit_test(test_backward_cosformer),
      cmocka_unit_test(test_backward_pipeline_softmax),
      cmocka_unit_test(test_backward_pipeline_sigmoid),
      cmocka_unit_test(test_backward_padding_never_read),
      cmocka_unit_test(test_backward_score_mod_refused),
      cmocka_unit_test(test_backward_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
