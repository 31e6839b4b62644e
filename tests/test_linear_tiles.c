/*
 * test_linear_tiles.c - the register tiles of the linear and cosFormer chunk
 * kernels against the double-precision reference: Dv cut into slices (DVT)
 * that divide it, that do not, and that end in a partial vector; state and
 * output tiles of several sizes; and batch x kv-head grids with GQA, whose
 * work-item indices and offsets the kernels compute in size_t.
 *
 * A B * Hkv past 2^31 cannot be allocated on a test machine. What is tested
 * here is that the index arithmetic, now 64-bit, still lands every (batch,
 * head) on its own data: B, Hq and Hkv are all > 1 and distinct, so a
 * mixed-up batch or head index gives errors of order 1, far above the
 * tolerance.
 */
#include "reference.h"
#include "testutil.h"

#include <string.h>

/* --tiny: odd lengths of a few keys, for Oclgrind (out-of-bounds accesses
 * and races in every tile shape) at a speed it can afford. */
static int tiny;

#define TOL_F32 1e-5
#define TOL_F16 2e-2

static void check(clattn_variant variant, clattn_desc desc, uint64_t seed,
                  const char *const *tiles, size_t ntiles) {
  double tol = desc.dtype == CLATTN_DTYPE_F16 ? TOL_F16 : TOL_F32;
  desc.variant = variant;
  for (int causal = 0; causal < 2; causal++) {
    desc.causal = causal;
    assert_true(clattn_test_check_tiles(clattn_test_shared_context(), desc,
                                        seed + (uint64_t)causal, tol, tiles,
                                        ntiles));
  }
}

static const clattn_variant variants[] = {CLATTN_VARIANT_LINEAR,
                                          CLATTN_VARIANT_COSFORMER};

/* Dv = 40 with VEC=8 is 5 vectors: DVT=2 leaves a last slice of one vector
 * (the other past Dv); with VEC=16, 40 ends in a partial vector; the gpu
 * shape (VEC=4) cuts 10 vectors into 5 slices. */
static void test_linear_tiles_dv_slices(void **state) {
  (void)state;
  static const char *const tiles[] = {
      "SHAPE=cpu,VEC=8,DVT=1",
      "SHAPE=cpu,VEC=8,DVT=2,ROWS_D=3,BLOCK_M=4",
      "SHAPE=cpu,VEC=16,DVT=2,ROWS_D=4,BLOCK_M=8",
      "SHAPE=gpu,DVT=2,CHUNK=16",
  };
  for (size_t v = 0; v < 2; v++) {
    clattn_desc d = clattn_test_desc(variants[v], CLATTN_DTYPE_F32, 0, 1, 2, 1,
                                     tiny ? 9 : 150, tiny ? 21 : 181, 24, 40);
    check(variants[v], d, 100 + 10 * v, tiles, sizeof tiles / sizeof *tiles);
  }
}

/* Dv = 64 divides into whole slices (the fast path without guards), and
 * D = 20 is not a multiple of ROWS_D = 8 or 3. */
static void test_linear_tiles_whole_slices(void **state) {
  (void)state;
  static const char *const tiles[] = {
      "SHAPE=cpu,VEC=8,DVT=4,ROWS_D=8,BLOCK_M=2",
      "SHAPE=cpu,VEC=16,DVT=1,ROWS_D=2,BLOCK_M=8,CHUNK=32",
  };
  for (size_t v = 0; v < 2; v++) {
    clattn_desc d = clattn_test_desc(variants[v], CLATTN_DTYPE_F32, 0, 1, 1, 1,
                                     tiny ? 19 : 300, tiny ? 19 : 300, 20, 64);
    check(variants[v], d, 200 + 10 * v, tiles, sizeof tiles / sizeof *tiles);
  }
}

/* B = 3, Hq = 6, Hkv = 2 (three query heads per kv head), Nq != Nk, f32
 * and f16, with the device's tiles and (f32) one more tile. */
static void test_linear_tiles_batch_heads(void **state) {
  (void)state;
  static const char *const tiles[] = {NULL, "SHAPE=cpu,DVT=1", "SHAPE=gpu"};
  for (size_t v = 0; v < 2; v++) {
    clattn_desc d = clattn_test_desc(variants[v], CLATTN_DTYPE_F32, 0, 3, 6, 2,
                                     tiny ? 5 : 70, tiny ? 11 : 97, 16, 24);
    check(variants[v], d, 300 + 10 * v, tiles, sizeof tiles / sizeof *tiles);
    d.dtype = CLATTN_DTYPE_F16;
    check(variants[v], d, 305 + 10 * v, tiles, 1);
  }
}

int main(int argc, char **argv) {
  tiny = argc > 1 && strcmp(argv[1], "--tiny") == 0;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_linear_tiles_dv_slices),
      cmocka_unit_test(test_linear_tiles_whole_slices),
      cmocka_unit_test(test_linear_tiles_batch_heads),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
