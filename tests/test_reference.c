/*
 * test_reference.c - checks the float64 gradient reference
 * (reference_bwd.c) against central finite differences of the forward
 * reference, for every variant, so that the library's backward passes are
 * compared with gradients that are themselves verified.
 *
 * L = sum_t O_t dO_t with a fixed random dO; for each input element x the
 * difference (L(x + h) - L(x - h)) / 2h is taken with the perturbation as
 * float32 actually stores it. The truncation error scales as h^2 times the
 * third derivative, which cosFormer's small denominators make large:
 * h = 2^-14 keeps it under 1e-6 of the largest gradient (h = 2^-12 gave
 * 6e-6, h = 2^-10 1e-4, shrinking 16x per 4x as truncation does), and with
 * a double forward the rounding error stays near 1e-11.
 */
#include "reference.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define FD_STEP (1.0 / 16384.0)
#define FD_TOL 1e-6

static double loss(const clattn_desc *d, const clattn_ref_extra *x,
                   const float *q, const float *k, const float *v,
                   const float *dout, double *o, size_t no) {
  clattn_ref_attention_ex(d, x, q, k, v, o, NULL);
  double l = 0.0;
  for (size_t t = 0; t < no; t++)
    l += o[t] * (double)dout[t];
  return l;
}

/* Finite differences of every element of x against the analytic grad. */
static int check_tensor(const char *name, const clattn_desc *d,
                        const clattn_ref_extra *ex, float *x, size_t n,
                        const double *grad, const float *q, const float *k,
                        const float *v, const float *dout, double *o, size_t no,
                        int relu) {
  double worst = 0.0, big = 1e-30;
  size_t at = 0;
  for (size_t t = 0; t < n; t++)
    big = fmax(big, fabs(grad[t]));
  for (size_t t = 0; t < n; t++) {
    float x0 = x[t];
    /* relu's kink at 0 makes a difference across it meaningless. */
    if (relu && fabs((double)x0) < 2 * FD_STEP)
      continue;
    float xp = (float)((double)x0 + FD_STEP),
          xm = (float)((double)x0 - FD_STEP);
    x[t] = xp;
    double lp = loss(d, ex, q, k, v, dout, o, no);
    x[t] = xm;
    double lm = loss(d, ex, q, k, v, dout, o, no);
    x[t] = x0;
    double fd = (lp - lm) / ((double)xp - (double)xm);
    double err = fabs(fd - grad[t]) / big;
    if (err > worst) {
      worst = err;
      at = t;
    }
  }
  if (worst > FD_TOL) {
    print_error("%s %s: finite differences differ by %.3g of the largest "
                "gradient at %zu (analytic %.9g)\n",
                clattn_variant_name(d->variant), name, worst, at, grad[at]);
    return 0;
  }
  return 1;
}

static void check_desc_ex(clattn_desc d, const clattn_ref_extra *ex,
                          uint64_t seed) {
  clattn_test_sizes n;
  clattn_test_sizes_get(&d, &n);
  float *q = malloc(n.q * sizeof *q), *k = malloc(n.k * sizeof *k);
  float *v = malloc(n.v * sizeof *v), *dout = malloc(n.o * sizeof *dout);
  double *o = malloc(n.o * sizeof *o), *dq = malloc(n.q * sizeof *dq);
  double *dk = malloc(n.k * sizeof *dk), *dv = malloc(n.v * sizeof *dv);
  assert_true(q && k && v && dout && o && dq && dk && dv);
  clattn_test_fill_normal(q, n.q, seed, 0.0f, 1.0f);
  clattn_test_fill_normal(k, n.k, seed + 1, 0.0f, 1.0f);
  clattn_test_fill_normal(v, n.v, seed + 2, 0.0f, 1.0f);
  clattn_test_fill_normal(dout, n.o, seed + 3, 0.0f, 1.0f);
  clattn_ref_attention_backward_ex(&d, ex, q, k, v, dout, dq, dk, dv);
  int relu = d.feature_map == CLATTN_FEATURE_MAP_RELU ||
             (d.variant == CLATTN_VARIANT_COSFORMER &&
              d.feature_map == CLATTN_FEATURE_MAP_DEFAULT);
  int ok = check_tensor("dQ", &d, ex, q, n.q, dq, q, k, v, dout, o, n.o, relu);
  ok &= check_tensor("dK", &d, ex, k, n.k, dk, q, k, v, dout, o, n.o, relu);
  ok &= check_tensor("dV", &d, ex, v, n.v, dv, q, k, v, dout, o, n.o, relu);
  if (!ok)
    fail_msg("Hq=%zu Hkv=%zu Nq=%zu Nk=%zu D=%zu Dv=%zu causal=%d", d.heads_q,
             d.heads_kv, d.seq_q, d.seq_k, d.dim, d.dim_v, d.causal);
  free(q);
  free(k);
  free(v);
  free(dout);
  free(o);
  free(dq);
  free(dk);
  free(dv);
}

static void check_desc(clattn_desc d, uint64_t seed) {
  check_desc_ex(d, NULL, seed);
}

static int mask_mod_3(int b, int h, int i, int j) {
  return (i + 2 * j + b + h) % 5 != 3;
}

/* Lengths and the score pipeline: sequences shorter than Nq and Nk (rows
 * and keys past them have zero gradient), a window, a softcap small enough
 * to bend the scores, ALiBi; with the user's mask, and causal. */
static void check_pipeline(clattn_variant variant, uint64_t seed) {
  static const float slopes[4] = {0.5f, 0.25f, 0.125f, 0.0625f};
  static const int lens_q[2] = {7, 4}, lens_k[2] = {11, 6};
  clattn_ref_extra ex = {lens_q, lens_k, NULL, NULL};
  for (int c = 0; c < 3; c++) {
    clattn_desc d = clattn_test_desc(variant, CLATTN_DTYPE_F32, c == 2, 2, 4, 2,
                                     7, 11, 5, 3);
    d.window_left = 3;
    d.window_right = c == 2 ? -1 : 2;
    d.softcap = 1.5f;
    d.alibi_slopes = slopes;
    ex.mask_mod = c == 1 ? mask_mod_3 : NULL;
    check_desc_ex(d, &ex, seed + (uint64_t)c);
  }
}

/* GQA, Nq != Nk both ways, causal rows with no visible key, odd dims. */
static void check_variant(clattn_variant variant, uint64_t seed) {
  for (int causal = 0; causal <= 1; causal++) {
    check_desc(clattn_test_desc(variant, CLATTN_DTYPE_F32, causal, 1, 4, 2, 7,
                                11, 5, 3),
               seed + (uint64_t)causal);
    check_desc(clattn_test_desc(variant, CLATTN_DTYPE_F32, causal, 2, 2, 1, 9,
                                6, 3, 4),
               seed + 10 + (uint64_t)causal);
  }
}

static void test_reference_softmax_gradients(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_SOFTMAX, 100);
  check_pipeline(CLATTN_VARIANT_SOFTMAX, 150);
}

static void test_reference_sigmoid_gradients(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_SIGMOID, 200);
  check_pipeline(CLATTN_VARIANT_SIGMOID, 260);
  clattn_desc d = clattn_test_desc(CLATTN_VARIANT_SIGMOID, CLATTN_DTYPE_F32, 1,
                                   1, 2, 2, 5, 8, 4, 4);
  d.has_bias = 1;
  d.bias = 1.5f;
  d.scale = 0.7f;
  check_desc(d, 250);
}

static void test_reference_linear_gradients(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_LINEAR, 300);
  clattn_desc d = clattn_test_desc(CLATTN_VARIANT_LINEAR, CLATTN_DTYPE_F32, 1,
                                   1, 2, 1, 8, 8, 6, 3);
  d.feature_map = CLATTN_FEATURE_MAP_RELU;
  d.eps = 1e-3f;
  check_desc(d, 350);
}

static void test_reference_cosformer_gradients(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_COSFORMER, 400);
  clattn_desc d = clattn_test_desc(CLATTN_VARIANT_COSFORMER, CLATTN_DTYPE_F32,
                                   0, 1, 2, 2, 6, 9, 4, 5);
  d.feature_map = CLATTN_FEATURE_MAP_ELU1;
  d.cos_m = 5.0f;
  check_desc(d, 450);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_softmax_gradients),
      cmocka_unit_test(test_reference_sigmoid_gradients),
      cmocka_unit_test(test_reference_linear_gradients),
      cmocka_unit_test(test_reference_cosformer_gradients),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
