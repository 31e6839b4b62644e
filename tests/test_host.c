/*
 * test_host.c - the host-pointer calls: clattn_plan_run_host_raw, which takes
 * arrays already in the plan's dtype, agrees with clattn_plan_run_host and
 * with the float64 reference for f32, f16 and bf16 storage, writes the LSE,
 * and
 * refuses NULL arrays.
 */
#define _POSIX_C_SOURCE 200809L

#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Relative to the largest reference magnitude, as in the kernel tests. */
#define TOL_F32 1e-5
#define TOL_F16 2e-2
#define TOL_BF16 1e-2 /* as test_bf16.c: inputs rounded, float arithmetic */

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  assert_non_null(p);
  return p;
}

/* Runs one problem through both host calls: the raw call on arrays in the
 * plan's dtype must give, element for element, what the float32 call gives
 * (for f16 and bf16, the same values widened), and both must match the
 * reference. */
static void check_raw(clattn_context_t ctx, clattn_desc desc, uint64_t seed) {
  clattn_test_problem p;
  clattn_test_problem_init(&p, &desc, seed);
  double tol = desc.dtype == CLATTN_DTYPE_F16    ? TOL_F16
               : desc.dtype == CLATTN_DTYPE_BF16 ? TOL_BF16
                                                 : TOL_F32;
  clattn_plan_t plan = NULL;
  clattn_status st = clattn_plan_create(ctx, &desc, &plan);
  if (st != CLATTN_SUCCESS)
    fail_msg("plan: %s: %s", clattn_status_name(st), clattn_context_error(ctx));
  assert_int_equal(clattn_plan_run_host(plan, p.q, p.k, p.v, p.o, p.lse),
                   CLATTN_SUCCESS);
  float *raw_lse = p.lse ? xmalloc(p.n.lse * sizeof(float)) : NULL;
  float *raw_o = xmalloc(p.n.o * sizeof(float));
  if (desc.dtype == CLATTN_DTYPE_F32) {
    st = clattn_plan_run_host_raw(plan, p.q, p.k, p.v, raw_o, raw_lse);
  } else {
    size_t es = clattn_dtype_size(desc.dtype);
    void *hq = xmalloc(p.n.q * es), *hk = xmalloc(p.n.k * es);
    void *hv = xmalloc(p.n.v * es), *ho = xmalloc(p.n.o * es);
    assert_int_equal(clattn_convert_from_f32(desc.dtype, p.q, hq, p.n.q),
                     CLATTN_SUCCESS);
    assert_int_equal(clattn_convert_from_f32(desc.dtype, p.k, hk, p.n.k),
                     CLATTN_SUCCESS);
    assert_int_equal(clattn_convert_from_f32(desc.dtype, p.v, hv, p.n.v),
                     CLATTN_SUCCESS);
    st = clattn_plan_run_host_raw(plan, hq, hk, hv, ho, raw_lse);
    assert_int_equal(clattn_convert_to_f32(desc.dtype, ho, raw_o, p.n.o),
                     CLATTN_SUCCESS);
    free(hq);
    free(hk);
    free(hv);
    free(ho);
  }
  if (st != CLATTN_SUCCESS)
    fail_msg("run_host_raw: %s: %s", clattn_status_name(st),
             clattn_context_error(ctx));
  assert_memory_equal(raw_o, p.o, p.n.o * sizeof(float));
  if (raw_lse)
    assert_memory_equal(raw_lse, p.lse, p.n.lse * sizeof(float));
  assert_true(clattn_test_check("raw O", raw_o, p.ref_o, p.n.o, tol));
  if (raw_lse)
    assert_true(clattn_test_check("raw LSE", raw_lse, p.ref_lse, p.n.lse, tol));
  free(raw_o);
  free(raw_lse);
  clattn_plan_destroy(plan);
  clattn_test_problem_free(&p);
}

static void test_host_raw_matches_float_call(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  const clattn_dtype dtypes[] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16,
                                 CLATTN_DTYPE_BF16};
  for (size_t t = 0; t < 3; t++) {
    for (int v = 0; v < CLATTN_VARIANT_COUNT; v++) {
      /* Odd lengths, Nq > Nk (empty causal rows), GQA, D != Dv. */
      clattn_desc d = clattn_test_desc((clattn_variant)v, dtypes[t], v % 2, 2,
                                       4, 2, 37, 29, 24, 40);
      check_raw(ctx, d, 100 + (uint64_t)(10 * t) + (uint64_t)v);
    }
  }
}

static void test_host_raw_null_arrays(void **state) {
  (void)state;
  float x[4] = {0};
  assert_int_equal(clattn_plan_run_host_raw(NULL, x, x, x, x, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 0,
                                   1, 1, 1, 1, 1, 4, 4);
  clattn_plan_t plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, &plan), CLATTN_SUCCESS);
  const void *in[3] = {x, x, x};
  for (int i = 0; i < 4; i++) {
    const void *a[4] = {in[0], in[1], in[2], x};
    a[i] = NULL;
    assert_int_equal(
        clattn_plan_run_host_raw(plan, a[0], a[1], a[2], (void *)a[3], NULL),
        CLATTN_ERROR_INVALID_VALUE);
    assert_non_null(strstr(clattn_context_error(ctx), "run_host_raw"));
  }
  clattn_plan_destroy(plan);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_host_raw_matches_float_call),
      cmocka_unit_test(test_host_raw_null_arrays),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
