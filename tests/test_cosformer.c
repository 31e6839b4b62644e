/*
 * test_cosformer.c - cosFormer attention through the public API against the
 * double-precision reference: causal and not, Nq != Nk (each sequence keeps
 * its own 1-based positions), rows that see no key (exactly 0), GQA, odd head
 * dims, a custom M and eps, the elu1 map, f16 storage, and N = 32768, where
 * the sin/cos re-weighting must stay exact enough to match float64.
 *
 * Errors are max |O - ref| / max |ref| over the whole output tensor.
 */
#include "reference.h"
#include "testutil.h"

/* f32 storage: as linear attention, plus the position weights sin/cos t,
 * computed from exact rational angles (i / 2M turns). */
#define TOL_F32 1e-5
/* A relu feature map leaves denominators that sum few positive terms:
 * N = 32768 keys add float rounding of ~sqrt(N) * 6e-8 on top. */
#define TOL_F32_LONG 5e-5
/* f16 storage: inputs pre-rounded to half, O stored as half (2^-11). */
#define TOL_F16 2e-2

/* Every small case runs with the device's own tiles and each kernel shape
 * forced; the long cases, which test the position weights (the same code in
 * every shape), with the device's tiles only. Building a program per head
 * dims, masking, feature map, dtype and tiles dominates this file's time, so
 * cases share the head dims (40, 24) and (1, 3) wherever the shape of the
 * problem, not the dims, is what they test. */
static const char *const shapes[] = {NULL, "SHAPE=cpu", "SHAPE=gpu"};

#define make_desc(...) clattn_test_desc(CLATTN_VARIANT_COSFORMER, __VA_ARGS__)

static void check_tiles(clattn_desc desc, uint64_t seed, double tol,
                        size_t nshapes) {
  assert_true(clattn_test_check_tiles(clattn_test_shared_context(), desc, seed,
                                      tol, shapes, nshapes));
}

static void check_desc(clattn_desc desc, uint64_t seed, double tol) {
  check_tiles(desc, seed, tol, sizeof shapes / sizeof shapes[0]);
}

static void check_both(clattn_desc desc, uint64_t seed) {
  double tol = desc.dtype == CLATTN_DTYPE_F16 ? TOL_F16 : TOL_F32;
  desc.causal = 0;
  check_desc(desc, seed, tol);
  desc.causal = 1;
  check_desc(desc, seed + 1, tol);
}

static void test_cosformer_tiny(void **state) {
  (void)state;
  /* heads_kv left at 0 for its default. */
  check_both(make_desc(CLATTN_DTYPE_F32, 0, 1, 1, 0, 1, 1, 1, 3), 1);
}

static void test_cosformer_odd_shape(void **state) {
  (void)state;
  check_both(make_desc(CLATTN_DTYPE_F32, 0, 2, 4, 2, 77, 133, 40, 24), 10);
}

static void test_cosformer_more_queries_than_keys(void **state) {
  (void)state;
  check_both(make_desc(CLATTN_DTYPE_F32, 0, 1, 2, 1, 133, 77, 40, 24), 20);
}

static void test_cosformer_head_dims(void **state) {
  (void)state;
  check_both(make_desc(CLATTN_DTYPE_F32, 0, 1, 1, 1, 50, 50, 1, 3), 30);
  check_both(make_desc(CLATTN_DTYPE_F32, 0, 1, 2, 2, 40, 70, 256, 256), 32);
  check_both(make_desc(CLATTN_DTYPE_F32, 0, 1, 3, 1, 65, 65, 80, 128), 34);
}

static void test_cosformer_options(void **state) {
  (void)state;
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 0, 1, 2, 2, 90, 60, 40, 24);
  d.cos_m = 4096.0f; /* a fixed M, as decoding uses */
  check_both(d, 40);
  d.cos_m = 0.0f;
  d.eps = 0.25f;
  check_both(d, 42);
  d.eps = 0.0f;
  d.feature_map = CLATTN_FEATURE_MAP_ELU1;
  check_both(d, 44);
}

static void test_cosformer_f16(void **state) {
  (void)state;
  check_both(make_desc(CLATTN_DTYPE_F16, 0, 2, 4, 2, 77, 133, 40, 24), 50);
}

static void test_cosformer_long(void **state) {
  /* N = 32768: t_i runs over the whole quarter turn in steps of 2^-16. */
  (void)state;
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 1, 1, 32768, 32768, 16, 16);
  check_tiles(d, 60, TOL_F32_LONG, 1);
  d.causal = 0;
  check_tiles(d, 61, TOL_F32_LONG, 1);
  d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 1, 4099, 4099, 64, 64);
  check_tiles(d, 62, TOL_F32, 1);
}

static void test_cosformer_small_chunks(void **state) {
  /* Chunks of 8 keys: many chunks and position weights across them at a
   * length that costs no time, with every shape. */
  (void)state;
  static const char *const tiles[] = {"SHAPE=cpu,CHUNK=8", "SHAPE=gpu,CHUNK=8"};
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 1, 203, 190, 40, 24);
  for (int causal = 0; causal < 2; causal++) {
    d.causal = causal;
    assert_true(clattn_test_check_tiles(clattn_test_shared_context(), d, 70,
                                        TOL_F32, tiles, 2));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cosformer_tiny),
      cmocka_unit_test(test_cosformer_odd_shape),
      cmocka_unit_test(test_cosformer_more_queries_than_keys),
      cmocka_unit_test(test_cosformer_head_dims),
      cmocka_unit_test(test_cosformer_options),
      cmocka_unit_test(test_cosformer_f16),
      cmocka_unit_test(test_cosformer_long),
      cmocka_unit_test(test_cosformer_small_chunks),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
