/*
 * test_backward.c - backward passes through the public API against the
 * float64 gradient reference (itself checked by finite differences in
 * test_reference.c), over shapes that stress masking, grouped heads, head
 * sizes and storage types, plus the API's argument checks.
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

static float *alloc_f(size_t n) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  assert_non_null(x);
  return x;
}

static double *alloc_d(size_t n) {
  double *x = malloc((n ? n : 1) * sizeof *x);
  assert_non_null(x);
  return x;
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

static void check_desc(clattn_desc d, uint64_t seed) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_test_problem pr;
  clattn_test_problem_init(&pr, &d, seed);
  float *dout = alloc_f(pr.n.o), *o = alloc_f(pr.n.o), *lse = alloc_f(pr.n.lse);
  float *dq = alloc_f(pr.n.q), *dk = alloc_f(pr.n.k), *dv = alloc_f(pr.n.v);
  double *rq = alloc_d(pr.n.q), *rk = alloc_d(pr.n.k), *rv = alloc_d(pr.n.v);
  clattn_test_fill_normal(dout, pr.n.o, seed + 7, 0.0f, 1.0f);
  clattn_test_round_to_dtype(dout, pr.n.o, d.dtype);
  clattn_ref_attention_backward(&d, pr.q, pr.k, pr.v, dout, rq, rk, rv);
  clattn_plan_t plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, &plan), CLATTN_SUCCESS);
  int softmax = d.variant == CLATTN_VARIANT_SOFTMAX;
  assert_int_equal(
      clattn_plan_run_host(plan, pr.q, pr.k, pr.v, o, softmax ? lse : NULL),
      CLATTN_SUCCESS);
  for (size_t t = 0; t < pr.n.q; t++)
    dq[t] = NAN;
  clattn_status st =
      clattn_plan_backward_host(plan, pr.q, pr.k, pr.v, softmax ? o : NULL,
                                softmax ? lse : NULL, dout, dq, dk, dv);
  if (st != CLATTN_SUCCESS)
    fail_msg("%s: %s", clattn_status_name(st), clattn_context_error(ctx));
  double tol = tol_of(d.dtype);
  int ok = clattn_test_check("dQ", dq, rq, pr.n.q, tol);
  ok &= clattn_test_check("dK", dk, rk, pr.n.k, tol);
  ok &= clattn_test_check("dV", dv, rv, pr.n.v, tol);
  ok &= check_empty_rows(&d, dq);
  if (!ok)
    fail_msg("%s B=%zu Hq=%zu Hkv=%zu Nq=%zu Nk=%zu D=%zu Dv=%zu causal=%d "
             "%s",
             clattn_variant_name(d.variant), d.batch, d.heads_q, d.heads_kv,
             d.seq_q, d.seq_k, d.dim, d.dim_v, d.causal,
             clattn_dtype_name(d.dtype));
  clattn_plan_destroy(plan);
  free(dout);
  free(o);
  free(lse);
  free(dq);
  free(dk);
  free(dv);
  free(rq);
  free(rk);
  free(rv);
  clattn_test_problem_free(&pr);
}

/* The shapes: Nq = 77, Nk = 133, D = 40, Dv = 24 with GQA, causal or not;
 * Nq > Nk causal (empty rows); equal lengths with a power-of-two head
 * dimension. f16 and bf16 change only loads and stores, so they take the
 * causal odd shape alone. */
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
    check_desc(clattn_test_desc(variant, dt, 1, 1, 2, 1, 90, 61, 40, 24),
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
      cmocka_unit_test(test_backward_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
