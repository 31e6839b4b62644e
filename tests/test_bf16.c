/*
 * test_bf16.c - bfloat16 storage: the host conversions against an
 * independent rounding, the device's round-to-nearest-even store, and every
 * variant and kernel shape with bf16 tensors against the float64 reference.
 */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* bf16 keeps 8 significant bits: the stored output is within 2^-9 of the
 * float result (relative to the element), and inputs are pre-rounded so the
 * reference sees what the device sees. 1e-2 of the largest magnitude leaves
 * room for float accumulation and still catches a wrong load (a shift by
 * the wrong amount or a half read as bf16 is off by orders of magnitude). */
#define TOL_BF16 1e-2

static int tiny; /* --tiny: shapes small enough for Oclgrind */

static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Host conversion = independent rounding, over special values and many
 * random bit patterns, and the round trip of every bf16 value is exact. */
static void test_bf16_host_conversions(void **state) {
  (void)state;
  const float specials[] = {0.0f,
                            -0.0f,
                            1.0f,
                            -1.0f,
                            INFINITY,
                            -INFINITY,
                            FLT_MAX,
                            -FLT_MAX,
                            FLT_MIN,
                            1.00390625f,
                            1.005859375f,
                            65504.0f,
                            from_bits(0x3f808000u),
                            from_bits(0x3f818000u),
                            from_bits(0x7f7f8000u)};
  size_t ns = sizeof specials / sizeof specials[0];
  for (size_t i = 0; i < ns; i++) {
    cl_ushort b;
    float back;
    clattn_f32_to_bf16(&specials[i], &b, 1);
    clattn_bf16_to_f32(&b, &back, 1);
    float want = clattn_test_round_bf16(specials[i]);
    if (memcmp(&back, &want, sizeof back) != 0)
      fail_msg("bf16(%a) = %a, want %a", (double)specials[i], (double)back,
               (double)want);
  }
  uint64_t seed = 7;
  for (int i = 0; i < 200000; i++) {
    uint32_t u = (uint32_t)clattn_test_rng_next(&seed);
    float x = from_bits(u), back;
    if (isnan(x) || fabsf(x) < FLT_MIN)
      continue; /* subnormals: frexp's rounding differs by design */
    cl_ushort b;
    clattn_f32_to_bf16(&x, &b, 1);
    clattn_bf16_to_f32(&b, &back, 1);
    float want = clattn_test_round_bf16(x);
    if (memcmp(&back, &want, sizeof back) != 0)
      fail_msg("bf16(%a) = %a, want %a", (double)x, (double)back, (double)want);
  }
  for (uint32_t b = 0; b < 0x10000u; b++) {
    cl_ushort in = (cl_ushort)b, out;
    float f;
    clattn_bf16_to_f32(&in, &f, 1);
    clattn_f32_to_bf16(&f, &out, 1);
    if (isnan(f))
      assert_true(isnan(from_bits((uint32_t)out << 16)));
    else
      assert_int_equal(in, out);
  }
  float nan = NAN, back;
  cl_ushort nb;
  clattn_f32_to_bf16(&nan, &nb, 1);
  clattn_bf16_to_f32(&nb, &back, 1);
  assert_true(isnan(back));
  assert_int_equal(clattn_dtype_size(CLATTN_DTYPE_BF16), 2);
  assert_string_equal(clattn_dtype_name(CLATTN_DTYPE_BF16), "bf16");
  clattn_dtype parsed = CLATTN_DTYPE_F32;
  assert_int_equal(clattn_dtype_parse("bf16", &parsed), CLATTN_SUCCESS);
  assert_int_equal(parsed, CLATTN_DTYPE_BF16);
  assert_int_equal(clattn_convert_from_f32((clattn_dtype)9, &nan, &nb, 1),
                   CLATTN_ERROR_INVALID_VALUE);
}

/* The device rounds its float results to nearest even on store: merging two
 * parts with equal LSE gives (a + b) / 2, exact in float for bf16 a and b in
 * [1, 2), and half of those fall exactly between two bf16 values. */
static void test_bf16_device_rounding(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  enum { ROWS = 16, DV = 16 };
  static float parts[2 * ROWS * DV], lse[2 * ROWS], o[ROWS * DV];
  uint64_t seed = 11;
  for (size_t t = 0; t < 2 * ROWS * DV; t++)
    parts[t] = 1.0f + (float)(clattn_test_rng_next(&seed) % 128) / 128.0f;
  for (size_t t = 0; t < 2 * ROWS; t++)
    lse[t] = 0.25f;
  assert_int_equal(clattn_merge_host(ctx, CLATTN_DTYPE_BF16, 2, ROWS, DV, parts,
                                     lse, o, NULL),
                   CLATTN_SUCCESS);
  int ties = 0;
  for (size_t t = 0; t < ROWS * DV; t++) {
    float mean = (parts[t] + parts[ROWS * DV + t]) / 2.0f;
    float want = clattn_test_round_bf16(mean);
    ties += clattn_test_round_bf16(mean) != mean;
    if (o[t] != want)
      fail_msg("element %zu: mean %a stored as %a, want %a", t, (double)mean,
               (double)o[t], (double)want);
  }
  assert_true(ties > 25); /* the case exercised rounding, not copies */
}

/* Every variant and each of its kernel shapes, on shapes that stress
 * masking, grouped heads and head sizes. */
static void check_variant(clattn_variant variant, int flash) {
  clattn_context_t ctx = clattn_test_shared_context();
  const char *const tiles[] = {NULL, "SHAPE=gpu", "SHAPE=cpu", "SHAPE=row"};
  size_t nt = flash ? 4 : 3;
  /* Causal on the odd shape (rows with no visible key included), and a
   * power-of-two head dimension without masking: the loads and stores are
   * what bf16 changes, so one program per shape and case is enough. With
   * --tiny (under Oclgrind) the same cases shrink. */
  assert_true(clattn_test_check_tiles(
      ctx,
      tiny
          ? clattn_test_desc(variant, CLATTN_DTYPE_BF16, 1, 1, 2, 1, 9, 6, 5, 3)
          : clattn_test_desc(variant, CLATTN_DTYPE_BF16, 1, 2, 4, 2, 37, 133,
                             40, 24),
      100, TOL_BF16, tiles, nt));
  assert_true(clattn_test_check_tiles(
      ctx,
      tiny ? clattn_test_desc(variant, CLATTN_DTYPE_BF16, 0, 1, 1, 1, 7, 11, 8,
                              16)
           : clattn_test_desc(variant, CLATTN_DTYPE_BF16, 0, 1, 2, 1, 70, 45,
                              64, 64),
      110, TOL_BF16, tiles, nt));
}

static void test_bf16_softmax(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_SOFTMAX, 1);
}

static void test_bf16_sigmoid(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_SIGMOID, 1);
}

static void test_bf16_linear(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_LINEAR, 0);
}

static void test_bf16_cosformer(void **state) {
  (void)state;
  check_variant(CLATTN_VARIANT_COSFORMER, 0);
}

int main(int argc, char **argv) {
  tiny = argc > 1 && strcmp(argv[1], "--tiny") == 0;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bf16_host_conversions),
      cmocka_unit_test(test_bf16_device_rounding),
      cmocka_unit_test(test_bf16_softmax),
      cmocka_unit_test(test_bf16_sigmoid),
      cmocka_unit_test(test_bf16_linear),
      cmocka_unit_test(test_bf16_cosformer),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
