/*
 * test_linear.c - linear attention through the public API against the
 * double-precision reference: both feature maps, causal (bottom-right) and
 * not, Nq != Nk with rows that see no key (exactly 0), GQA, head dims that are
 * not powers of two, a custom eps, f32 and f16 storage, and sequences long
 * enough that the causal prefix crosses many chunks. Every case
 * runs with the device's tiles and with the other shape forced.
 *
 * Errors are max |O - ref| / max |ref| over the whole output tensor.
 */
#include "reference.h"
#include "testutil.h"

/* f32 storage: the state is a float sum over up to ~4000 keys, whose
 * rounding grows like sqrt(N) * 6e-8; 1e-5 catches a lost chunk, a wrong
 * mask or a wrong prefix (errors of order 1e-2 and more). */
#define TOL_F32 1e-5
/* f16 storage: inputs pre-rounded to half, O stored as half (2^-11). */
#define TOL_F16 2e-2

static const char *const shapes[] = {NULL, "SHAPE=cpu", "SHAPE=gpu"};

#define make_desc(...) clattn_test_desc(CLATTN_VARIANT_LINEAR, __VA_ARGS__)

static void check_desc(clattn_desc desc, uint64_t seed) {
  double tol = desc.dtype == CLATTN_DTYPE_F16 ? TOL_F16 : TOL_F32;
  assert_true(clattn_test_check_tiles(clattn_test_shared_context(), desc, seed,
                                      tol, shapes,
                                      sizeof shapes / sizeof shapes[0]));
}

/* Runs desc causal and not, with both feature maps. */
static void check_all_modes(clattn_desc desc, uint64_t seed) {
  static const clattn_feature_map maps[] = {CLATTN_FEATURE_MAP_ELU1,
                                            CLATTN_FEATURE_MAP_RELU};
  for (int causal = 0; causal < 2; causal++) {
    for (int m = 0; m < 2; m++) {
      desc.causal = causal;
      desc.feature_map = maps[m];
      check_desc(desc, seed + (uint64_t)(2 * causal + m));
    }
  }
}

static void test_linear_tiny(void **state) {
  (void)state;
  check_all_modes(make_desc(CLATTN_DTYPE_F32, 0, 1, 1, 0, 1, 1, 1, 0), 1);
}

static void test_linear_odd_shape(void **state) {
  (void)state;
  check_all_modes(make_desc(CLATTN_DTYPE_F32, 0, 2, 4, 2, 77, 133, 40, 24), 10);
}

static void test_linear_more_queries_than_keys(void **state) {
  /* Causal: the first 56 rows see no key and must be 0. */
  (void)state;
  check_all_modes(make_desc(CLATTN_DTYPE_F32, 0, 1, 2, 1, 133, 77, 32, 16), 20);
}

static void test_linear_head_dims(void **state) {
  (void)state;
  check_all_modes(make_desc(CLATTN_DTYPE_F32, 0, 1, 1, 1, 50, 50, 1, 3), 30);
  check_all_modes(make_desc(CLATTN_DTYPE_F32, 0, 1, 2, 2, 40, 70, 256, 256),
                  34);
  check_all_modes(make_desc(CLATTN_DTYPE_F32, 0, 1, 3, 1, 65, 65, 80, 128), 38);
}

static void test_linear_eps(void **state) {
  (void)state;
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 2, 90, 90, 16, 16);
  d.eps = 0.5f; /* large enough to change every output visibly */
  check_desc(d, 40);
  d.causal = 0;
  check_desc(d, 41);
}

static void test_linear_f16(void **state) {
  (void)state;
  check_all_modes(make_desc(CLATTN_DTYPE_F16, 0, 2, 4, 2, 77, 133, 40, 24), 50);
}

static void test_linear_long_causal(void **state) {
  /* 4099 keys: the causal prefix crosses 65 chunks of 64, with a partial
   * last chunk. */
  (void)state;
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 1, 4099, 4099, 64, 64);
  check_desc(d, 60);
  d.seq_q = 1000; /* bottom-right: the first query already sees 3100 keys */
  check_desc(d, 61);
  d.causal = 0;
  check_desc(d, 62);
}

static void test_linear_small_chunks(void **state) {
  /* Chunks of 8 keys: many chunks even at small N. */
  (void)state;
  static const char *const tiles[] = {"SHAPE=cpu,CHUNK=8", "SHAPE=gpu,CHUNK=8"};
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 1, 203, 190, 12, 20);
  for (int causal = 0; causal < 2; causal++) {
    d.causal = causal;
    assert_true(clattn_test_check_tiles(clattn_test_shared_context(), d, 70,
                                        TOL_F32, tiles, 2));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_linear_tiny),
      cmocka_unit_test(test_linear_odd_shape),
      cmocka_unit_test(test_linear_more_queries_than_keys),
      cmocka_unit_test(test_linear_head_dims),
      cmocka_unit_test(test_linear_eps),
      cmocka_unit_test(test_linear_f16),
      cmocka_unit_test(test_linear_long_causal),
      cmocka_unit_test(test_linear_small_chunks),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
