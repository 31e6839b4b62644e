/*
 * test_sigmoid.c - sigmoid attention through the public API against the
 * double-precision reference: odd shapes, causal rows with no visible key
 * (exactly 0), Nq != Nk, GQA, head dims that are not powers of two, the
 * default and a custom bias and scale, f32 and f16 storage. Every case runs
 * with the tiles the device chooses and with each tile shape forced.
 *
 * Errors are max |O - ref| / max |ref| over the whole output tensor.
 */
#include "reference.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* f32 storage: float sums of up to ~1000 sigmoid-weighted rows stay near
 * 1e-6; 1e-5 catches a wrong mask, bias or tile. */
#define TOL_F32 1e-5
/* f16 storage: inputs pre-rounded to half, O stored as half (2^-11
 * relative), float accumulation. */
#define TOL_F16 2e-2

static const char *const shapes[] = {
    NULL,                              /* the device's choice */
    "SHAPE=row,BLOCK_M=3",             /* no local memory, dot products */
    "SHAPE=cpu,KEYS_VEC=16,BLOCK_M=5", /* K transposed, 16 keys a vector */
    "SHAPE=cpu,KEYS_VEC=8,BLOCK_M=1",  /* K transposed, 8 keys a vector */
    "SHAPE=gpu,BLOCK_M=16,BLOCK_N=8",  /* K/V tiles in local memory */
};

/* The gpu shape with its own default tiles, for the small odd cases. */
static const char *const gpu_default[] = {"SHAPE=gpu"};

#define make_desc(...) clattn_test_desc(CLATTN_VARIANT_SIGMOID, __VA_ARGS__)

/* Runs desc with every tile shape and compares with the reference. A
 * program is built per head dims, masking, dtype and tiles, which dominates
 * this file's time, so cases share the head dims (40, 24) wherever the shape
 * of the problem, not the dims, is what they test. */
static void check_desc(clattn_desc desc, uint64_t seed) {
  double tol = desc.dtype == CLATTN_DTYPE_F16 ? TOL_F16 : TOL_F32;
  assert_true(clattn_test_check_tiles(clattn_test_shared_context(), desc, seed,
                                      tol, shapes,
                                      sizeof shapes / sizeof shapes[0]));
}

/* check_desc, and the gpu shape with its default tiles. */
static void check_desc_gpu(clattn_desc desc, uint64_t seed) {
  double tol = desc.dtype == CLATTN_DTYPE_F16 ? TOL_F16 : TOL_F32;
  check_desc(desc, seed);
  assert_true(clattn_test_check_tiles(clattn_test_shared_context(), desc, seed,
                                      tol, gpu_default, 1));
}

static void test_sigmoid_tiny(void **state) {
  (void)state;
  /* heads_kv left at 0 for its default; the head dims of
   * test_sigmoid_head_dims. */
  check_desc(make_desc(CLATTN_DTYPE_F32, 0, 1, 1, 0, 1, 1, 1, 80), 1);
  check_desc(make_desc(CLATTN_DTYPE_F32, 1, 1, 1, 0, 1, 1, 1, 80), 2);
}

static void test_sigmoid_odd_shape(void **state) {
  (void)state;
  check_desc_gpu(make_desc(CLATTN_DTYPE_F32, 0, 2, 3, 3, 77, 133, 40, 24), 3);
  check_desc_gpu(make_desc(CLATTN_DTYPE_F32, 1, 2, 3, 3, 77, 133, 40, 24), 4);
}

static void test_sigmoid_more_queries_than_keys(void **state) {
  (void)state;
  check_desc(make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 2, 100, 37, 40, 24), 5);
  check_desc(make_desc(CLATTN_DTYPE_F32, 0, 1, 2, 2, 100, 37, 40, 24), 6);
}

static void test_sigmoid_gqa(void **state) {
  (void)state;
  check_desc(make_desc(CLATTN_DTYPE_F32, 1, 2, 8, 2, 96, 96, 64, 64), 7);
  check_desc(make_desc(CLATTN_DTYPE_F32, 0, 1, 6, 3, 50, 70, 16, 48), 8);
}

static void test_sigmoid_head_dims(void **state) {
  static const size_t dims[] = {1, 3, 80, 128, 256};
  (void)state;
  for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++)
    check_desc(make_desc(CLATTN_DTYPE_F32, (int)(t & 1), 1, 2, 1, 45, 67,
                         dims[t], dims[(t + 2) % 5]),
               20 + t);
}

static void test_sigmoid_bias_and_scale(void **state) {
  (void)state;
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 2, 60, 90, 40, 24);
  d.has_bias = 1;
  d.bias = (float)-log(2048.0); /* a training length, as users set it */
  check_desc(d, 30);
  d.bias = 3.0f; /* most weights near 1: sums grow with Nk */
  d.scale = 0.5f;
  check_desc(d, 31);
}

static void test_sigmoid_f16(void **state) {
  (void)state;
  check_desc_gpu(make_desc(CLATTN_DTYPE_F16, 1, 2, 4, 2, 77, 133, 40, 24), 40);
  check_desc(make_desc(CLATTN_DTYPE_F16, 0, 1, 2, 1, 65, 65, 64, 64), 41);
}

static void test_sigmoid_long(void **state) {
  /* Many key blocks and a long causal diagonal. */
  (void)state;
  check_desc(make_desc(CLATTN_DTYPE_F32, 1, 1, 1, 1, 1100, 1100, 64, 64), 50);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigmoid_tiny),
      cmocka_unit_test(test_sigmoid_odd_shape),
      cmocka_unit_test(test_sigmoid_more_queries_than_keys),
      cmocka_unit_test(test_sigmoid_gqa),
      cmocka_unit_test(test_sigmoid_head_dims),
      cmocka_unit_test(test_sigmoid_bias_and_scale),
      cmocka_unit_test(test_sigmoid_f16),
      cmocka_unit_test(test_sigmoid_long),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
