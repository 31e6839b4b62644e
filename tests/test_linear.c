/*
 * test_linear.c - linear attention through the public API against the
 * double-precision reference: both feature maps, causal (bottom-right) and
 * not, Nq != Nk with rows that see no key (exactly 0), GQA, head dims that are
 * not powers of two, a custom eps, f32 and f16 storage, sequences long
 * enough that the causal prefix crosses many chunks, and inputs that take
 * elu's exponential down to 0.
 *
 * Errors are max |O - ref| / max |ref| over the whole output tensor.
 */
#include <math.h>

#include "reference.h"
#include "testutil.h"

/* f32 storage: the state is a float sum over up to ~4000 keys, whose
 * rounding grows like sqrt(N) * 6e-8; 1e-5 catches a lost chunk, a wrong
 * mask or a wrong prefix (errors of order 1e-2 and more). */
#define TOL_F32 1e-5
/* f16 storage: inputs pre-rounded to half, O stored as half (2^-11). */
#define TOL_F16 2e-2

/* Every small case runs with the device's own tiles and each kernel shape
 * forced. A long case runs with the device's tiles only: forced shapes
 * cross many chunks in test_linear_small_chunks instead, at a length that
 * costs no time.
 *
 * A program is built per head-dim pair, masking, feature map, dtype and
 * tiles, and building dominates this file's time: cases share the head dims
 * (40, 24) and (1, 3) wherever the shape of the problem, not the dims, is
 * what they test, so that one plan cache serves them all. */
static const char *const shapes[] = {NULL, "SHAPE=cpu", "SHAPE=gpu"};

#define make_desc(...) clattn_test_desc(CLATTN_VARIANT_LINEAR, __VA_ARGS__)

static void check_tiles(clattn_desc desc, uint64_t seed, size_t nshapes) {
  double tol = desc.dtype == CLATTN_DTYPE_F16 ? TOL_F16 : TOL_F32;
  assert_true(clattn_test_check_tiles(clattn_test_shared_context(), desc, seed,
                                      tol, shapes, nshapes));
}

static void check_desc(clattn_desc desc, uint64_t seed) {
  check_tiles(desc, seed, sizeof shapes / sizeof shapes[0]);
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

/* Causal and not, each with one feature map: for head dims, whose code
 * paths (vector padding, row groups) do not depend on the map. */
static void check_both_masks(clattn_desc desc, uint64_t seed) {
  desc.causal = 0;
  desc.feature_map = CLATTN_FEATURE_MAP_ELU1;
  check_desc(desc, seed);
  desc.causal = 1;
  desc.feature_map = CLATTN_FEATURE_MAP_RELU;
  check_desc(desc, seed + 1);
}

static void test_linear_tiny(void **state) {
  /* One of everything; heads_kv left at 0 for its default. */
  (void)state;
  check_all_modes(make_desc(CLATTN_DTYPE_F32, 0, 1, 1, 0, 1, 1, 1, 3), 1);
}

static void test_linear_odd_shape(void **state) {
  (void)state;
  check_all_modes(make_desc(CLATTN_DTYPE_F32, 0, 2, 4, 2, 77, 133, 40, 24), 10);
}

static void test_linear_more_queries_than_keys(void **state) {
  /* Causal: the first 56 rows see no key and must be 0. */
  (void)state;
  check_all_modes(make_desc(CLATTN_DTYPE_F32, 0, 1, 2, 1, 133, 77, 40, 24), 20);
}

static void test_linear_head_dims(void **state) {
  (void)state;
  check_all_modes(make_desc(CLATTN_DTYPE_F32, 0, 1, 1, 1, 50, 50, 1, 3), 30);
  check_both_masks(make_desc(CLATTN_DTYPE_F32, 0, 1, 2, 2, 40, 70, 256, 256),
                   34);
  check_both_masks(make_desc(CLATTN_DTYPE_F32, 0, 1, 3, 1, 65, 65, 80, 128),
                   38);
}

static void test_linear_eps(void **state) {
  (void)state;
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 2, 90, 90, 40, 24);
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
  check_tiles(d, 60, 1);
  d.seq_q = 1000; /* bottom-right: the first query already sees 3100 keys */
  check_tiles(d, 61, 1);
  d.causal = 0;
  check_tiles(d, 62, 1);
}

static void test_linear_small_chunks(void **state) {
  /* Chunks of 8 keys: as many chunks at N = 203 as the default tiles have at
   * N = 1600, with every shape. */
  (void)state;
  static const char *const tiles[] = {"SHAPE=cpu,CHUNK=8", "SHAPE=gpu,CHUNK=8"};
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 1, 203, 190, 12, 20);
  for (int causal = 0; causal < 2; causal++) {
    d.causal = causal;
    assert_true(clattn_test_check_tiles(clattn_test_shared_context(), d, 70,
                                        TOL_F32, tiles, 2));
  }
  d.seq_q = 1000; /* a long query side over few keys */
  assert_true(clattn_test_check_tiles(clattn_test_shared_context(), d, 71,
                                      TOL_F32, tiles, 2));
}

static void test_linear_wide_inputs(void **state) {
  /* elu's exponential over its range: q and k uniform in [-40, 2], so that
   * most features are e^x down to 4e-18, with every 7th key element at -95
   * and every 11th query element at -inf (features below the smallest
   * normal float and exactly 0), causal and not, every shape. */
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 0, 1, 2, 1, 150, 150, 40, 24);
  d.feature_map = CLATTN_FEATURE_MAP_ELU1;
  clattn_status st = CLATTN_SUCCESS;
  int ok = 1;
  (void)state;
  for (int causal = 0; causal < 2 && ok; causal++) {
    clattn_test_problem p;
    d.causal = causal;
    clattn_test_problem_init(&p, &d, 80 + (uint64_t)causal);
    clattn_test_fill_uniform(p.q, p.n.q, 82, -40.0f, 2.0f);
    clattn_test_fill_uniform(p.k, p.n.k, 83, -40.0f, 2.0f);
    for (size_t t = 0; t < p.n.k; t += 7)
      p.k[t] = -95.0f;
    for (size_t t = 0; t < p.n.q; t += 11)
      p.q[t] = -INFINITY;
    clattn_test_problem_reference(&p);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0] && ok; s++) {
      p.desc.tiles = shapes[s];
      st = clattn_test_problem_run_host(&p, ctx);
      ok = st == CLATTN_SUCCESS &&
           clattn_test_check("O", p.o, p.ref_o, p.n.o, TOL_F32);
    }
    clattn_test_problem_free(&p);
  }
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_true(ok);
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
      cmocka_unit_test(test_linear_wide_inputs),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
