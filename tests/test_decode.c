/*
 * test_decode.c - the decode family (split-KV softmax and sigmoid for few
 * query rows, cl/decode.cl) against the float64 reference: 1 to 16 queries
 * against long and odd key counts, grouped heads, head dims that are not
 * powers of two, causal masking with rows that see no key, every storage
 * dtype, both kernels (work-items with vectors, work-groups with local
 * memory) and forced split counts; over a million keys; which plans choose
 * decode; tile validation, workspace size and the tuner's candidates.
 *
 * --tiny shrinks the shapes so that the kernels run under Oclgrind.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tolerances: relative to the largest reference magnitude of the tensor, as
 * in every kernel test. f32 1e-5; f16 2e-2 and bf16 1e-2 (inputs pre-rounded,
 * the output stored rounded: 2^-11 and 2^-9 relative, plus float sums). The
 * LSE is float32 whatever the storage, so it keeps 1e-5. */
#define TOL_F32 1e-5
#define TOL_F16 2e-2
#define TOL_BF16 1e-2
#define TOL_LSE 1e-5
/* f32 over a million keys in one split: each of 16 vector lanes sums 2^16
 * weights in float, where rounding grows to a few 1e-5. */
#define TOL_LONG_F32 1e-4

static int tiny; /* --tiny: shapes small enough for Oclgrind */

static double tol_of(clattn_dtype dtype) {
  return dtype == CLATTN_DTYPE_F16    ? TOL_F16
         : dtype == CLATTN_DTYPE_BF16 ? TOL_BF16
                                      : TOL_F32;
}

/* Rows the reference says see no key: O exactly 0 and LSE exactly -inf. */
static int check_empty_rows(const clattn_test_problem *p) {
  size_t dv = p->desc.dim_v ? p->desc.dim_v : p->desc.dim;
  if (!p->lse)
    return clattn_test_check_empty_rows(p);
  for (size_t r = 0; r < p->n.lse; r++) {
    if (!(isinf(p->ref_lse[r]) && p->ref_lse[r] < 0))
      continue;
    if (!(isinf(p->lse[r]) && p->lse[r] < 0)) {
      print_error("row %zu sees no key: LSE %.9g, want -inf\n", r,
                  (double)p->lse[r]);
      return 0;
    }
    for (size_t t = 0; t < dv; t++) {
      if (p->o[r * dv + t] != 0.0f) {
        print_error("row %zu sees no key: O[%zu] = %.9g, want 0\n", r, t,
                    (double)p->o[r * dv + t]);
        return 0;
      }
    }
  }
  return 1;
}

/* Runs p with each tile spec (NULL: the plan's own choice) and checks O,
 * LSE (softmax) and the empty rows; the plan must be a decode plan. */
static int check_specs(clattn_test_problem *p, const char *const *specs,
                       size_t nspecs, double tol_o) {
  clattn_context_t ctx = clattn_test_shared_context();
  const clattn_desc *d = &p->desc;
  int all = 1;
  for (size_t s = 0; s < nspecs; s++) {
    clattn_desc desc = p->desc;
    desc.tiles = specs[s];
    clattn_plan_t plan = NULL;
    char line[512] = "";
    clattn_status st = clattn_plan_create(ctx, &desc, &plan);
    if (st == CLATTN_SUCCESS) {
      clattn_plan_describe(plan, line, sizeof line);
      for (size_t t = 0; t < p->n.o; t++)
        p->o[t] = NAN;
      st = clattn_plan_run_host(plan, p->q, p->k, p->v, p->o, p->lse);
    }
    clattn_plan_destroy(plan);
    int ok = st == CLATTN_SUCCESS && strstr(line, "shape=decode") != NULL &&
             clattn_test_check("O", p->o, p->ref_o, p->n.o,
                               tol_o > 0.0 ? tol_o : tol_of(d->dtype)) &&
             (!p->lse || clattn_test_check("LSE", p->lse, p->ref_lse, p->n.lse,
                                           TOL_LSE)) &&
             check_empty_rows(p);
    if (!ok)
      print_error("  %s B=%zu Hq=%zu Hkv=%zu Nq=%zu Nk=%zu D=%zu Dv=%zu "
                  "causal=%d %s tiles=%s: %s %s [%s]\n",
                  clattn_variant_name(d->variant), d->batch, d->heads_q,
                  d->heads_kv, d->seq_q, d->seq_k, d->dim, d->dim_v, d->causal,
                  clattn_dtype_name(d->dtype), specs[s] ? specs[s] : "default",
                  clattn_status_name(st),
                  st == CLATTN_SUCCESS ? "" : clattn_context_error(ctx), line);
    all &= ok;
  }
  return all;
}

/* The plan's own choice, the work-item kernel with an uneven split count
 * and with one split (direct output, no merge), and the work-group kernel
 * with a block that is not a multiple of its group. */
static const char *const full_specs[] = {
    NULL,
    "SHAPE=decode,WG=1,SPLITS=7,BLOCK_N=8",
    "SHAPE=decode,WG=1,SPLITS=1,BLOCK_N=16,ROWS=3",
    "SHAPE=decode,WG=16,BLOCK_N=24,SPLITS=5,VEC=4",
};
static const char *const tiny_specs[] = {
    NULL,
    "SHAPE=decode,WG=1,SPLITS=3,BLOCK_N=4,ROWS=2",
    "SHAPE=decode,WG=4,BLOCK_N=3,SPLITS=2,ROWS=3",
};

typedef struct decode_case {
  clattn_dtype dtype;
  int causal;
  size_t hq, hkv, nq, nk, d, dv;
} decode_case;

static void run_cases(clattn_variant variant, const decode_case *cases,
                      size_t ncases, uint64_t seed) {
  const char *const *specs = tiny ? tiny_specs : full_specs;
  size_t nspecs = tiny ? sizeof tiny_specs / sizeof tiny_specs[0]
                       : sizeof full_specs / sizeof full_specs[0];
  int all = 1;
  for (size_t c = 0; c < ncases; c++) {
    const decode_case *k = &cases[c];
    clattn_desc d = clattn_test_desc(variant, k->dtype, k->causal, 1, k->hq,
                                     k->hkv, k->nq, k->nk, k->d, k->dv);
    clattn_test_problem p;
    clattn_test_problem_init(&p, &d, seed + c);
    all &= check_specs(&p, specs, nspecs, 0.0);
    clattn_test_problem_free(&p);
  }
  assert_true(all);
}

/* Every dtype, Nq of 1, 3 and 16, odd key counts, grouped heads (4 query
 * heads per kv head) and plain ones, D = 40 with Dv = 24 and D = Dv = 128,
 * causal or not. Each factor meets the others in some case; the long ones
 * (70001 keys) run at D = 40 to keep the reference cheap. */
static const decode_case full_cases[] = {
    {CLATTN_DTYPE_F32, 0, 8, 2, 1, 5001, 128, 128},
    {CLATTN_DTYPE_F32, 1, 8, 2, 3, 4999, 40, 24},
    {CLATTN_DTYPE_F32, 1, 4, 4, 16, 70001, 40, 24},
    {CLATTN_DTYPE_F16, 1, 8, 2, 1, 70001, 40, 24},
    {CLATTN_DTYPE_F16, 0, 4, 4, 3, 5001, 128, 128},
    {CLATTN_DTYPE_F16, 1, 8, 2, 16, 4999, 128, 128},
    {CLATTN_DTYPE_BF16, 0, 8, 2, 16, 5001, 40, 24},
    {CLATTN_DTYPE_BF16, 1, 4, 4, 1, 4999, 128, 128},
    {CLATTN_DTYPE_BF16, 1, 8, 2, 3, 70001, 40, 24},
};
static const decode_case tiny_cases[] = {
    {CLATTN_DTYPE_F32, 1, 4, 2, 3, 29, 5, 3},
    {CLATTN_DTYPE_F16, 0, 2, 2, 1, 17, 8, 8},
    {CLATTN_DTYPE_BF16, 1, 2, 1, 2, 13, 6, 4},
};

static void test_decode_softmax(void **state) {
  (void)state;
  if (tiny)
    run_cases(CLATTN_VARIANT_SOFTMAX, tiny_cases,
              sizeof tiny_cases / sizeof tiny_cases[0], 100);
  else
    run_cases(CLATTN_VARIANT_SOFTMAX, full_cases,
              sizeof full_cases / sizeof full_cases[0], 100);
}

static void test_decode_sigmoid(void **state) {
  (void)state;
  if (tiny)
    run_cases(CLATTN_VARIANT_SIGMOID, tiny_cases,
              sizeof tiny_cases / sizeof tiny_cases[0], 200);
  else
    run_cases(CLATTN_VARIANT_SIGMOID, full_cases,
              sizeof full_cases / sizeof full_cases[0], 200);
}

/* Causal with more queries than keys: the first Nq - Nk rows of every head
 * see no key (O = 0, LSE = -inf), and with several splits most splits see
 * none of a row's keys, which the merge must weigh as nothing. */
static void test_decode_rows_without_keys(void **state) {
  (void)state;
  const char *const specs[] = {NULL, "SHAPE=decode,WG=1,SPLITS=3,BLOCK_N=4",
                               "SHAPE=decode,WG=4,BLOCK_N=4,SPLITS=3"};
  int all = 1;
  for (int v = 0; v < 2; v++) {
    clattn_variant variant =
        v ? CLATTN_VARIANT_SIGMOID : CLATTN_VARIANT_SOFTMAX;
    clattn_desc d = clattn_test_desc(variant, CLATTN_DTYPE_F32, 1, 2, 4, 2,
                                     tiny ? 6 : 16, tiny ? 3 : 11, 8, 8);
    clattn_test_problem p;
    clattn_test_problem_init(&p, &d, 300 + (uint64_t)v);
    all &= check_specs(&p, specs, 3, 0.0);
    clattn_test_problem_free(&p);
  }
  assert_true(all);
}

/* More query rows per kv head (16 heads x 16 rows) than one work-item
 * holds: the rows are split into groups that each stream the keys. */
static void test_decode_many_rows(void **state) {
  (void)state;
  const char *const specs[] = {NULL, "SHAPE=decode,WG=1,ROWS=5,SPLITS=2",
                               "SHAPE=decode,WG=8,ROWS=7,BLOCK_N=8"};
  clattn_desc d = clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 1,
                                   1, 16, 1, tiny ? 4 : 16, tiny ? 9 : 777,
                                   tiny ? 4 : 64, tiny ? 4 : 64);
  clattn_test_problem p;
  clattn_test_problem_init(&p, &d, 400);
  int ok = check_specs(&p, specs, tiny ? 2 : 3, 0.0);
  clattn_test_problem_free(&p);
  assert_true(ok);
}

/* Over a million keys for one head: long key ranges per split, one split
 * streaming them all, and offsets past 2^20 rows. V is kept away from zero
 * so that O is of order one and the comparison measures the sums, not the
 * cancellation of random signs. */
static void test_decode_million_keys(void **state) {
  (void)state;
  const char *const specs[] = {NULL, "SHAPE=decode,WG=1,SPLITS=1",
                               "SHAPE=decode,WG=1,SPLITS=64,BLOCK_N=8"};
  int all = 1;
  for (int v = 0; v < 2; v++) {
    clattn_variant variant =
        v ? CLATTN_VARIANT_SIGMOID : CLATTN_VARIANT_SOFTMAX;
    clattn_desc d =
        clattn_test_desc(variant, v ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32, v, 1,
                         1, 1, 3, ((size_t)1 << 20) + 77, 8, 4);
    clattn_test_problem p;
    clattn_test_problem_init(&p, &d, 500 + (uint64_t)v);
    clattn_test_fill_uniform(p.v, p.n.v, 501, 0.5f, 1.5f);
    clattn_test_problem_reference(&p);
    all &= check_specs(&p, specs, 3, v ? 0.0 : TOL_LONG_F32);
    clattn_test_problem_free(&p);
  }
  assert_true(all);
}

/* Which family a plan gets: decode for Nq <= 16 unless a spec names a flash
 * shape; SHAPE=decode also for longer queries. */
static void test_decode_routing(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  struct {
    size_t nq;
    const char *tiles;
    const char *want;
  } cases[] = {{1, NULL, "shape=decode"},
               {16, NULL, "shape=decode"},
               {17, NULL, "shape=cpu"},
               {1, "SHAPE=row", "shape=row"},
               {40, "SHAPE=decode,SPLITS=2", "shape=decode"}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    clattn_desc d = clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32,
                                     1, 1, 2, 1, cases[c].nq, 50, 16, 16);
    d.tiles = cases[c].tiles;
    clattn_plan_t plan = NULL;
    assert_int_equal(clattn_plan_create(ctx, &d, &plan), CLATTN_SUCCESS);
    char line[512];
    clattn_plan_describe(plan, line, sizeof line);
    clattn_plan_destroy(plan);
    /* Nq = 17 gets the device's flash shape, cpu or gpu. */
    if (cases[c].nq == 17 && !cases[c].tiles) {
      assert_null(strstr(line, "shape=decode"));
      continue;
    }
    if (!strstr(line, cases[c].want))
      fail_msg("Nq=%zu tiles=%s: \"%s\", want %s", cases[c].nq,
               cases[c].tiles ? cases[c].tiles : "default", line,
               cases[c].want);
  }
  /* The longer query through decode gives the right answer too. */
  const char *const specs[] = {"SHAPE=decode,SPLITS=3"};
  clattn_desc d =
      clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 1, 1, 2, 1,
                       tiny ? 20 : 40, tiny ? 30 : 300, 16, 16);
  clattn_test_problem p;
  clattn_test_problem_init(&p, &d, 600);
  int ok = check_specs(&p, specs, 1, 0.0);
  clattn_test_problem_free(&p);
  assert_true(ok);
}

/* Bad decode tiles are refused with a message; the workspace holds
 * splits x rows x (Dv + 1) floats, none with one split. */
static void test_decode_tiles(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  const char *const bad[] = {
      "SHAPE=decode,VEC=3",         "SHAPE=decode,WG=1,BLOCK_N=5",
      "SHAPE=decode,ROWS=0",        "SHAPE=decode,ROWS=65",
      "SHAPE=decode,WG=0",          "SHAPE=decode,BLOCK_M=4",
      "SHAPE=decode,WG=1,BLOCK_N=0"};
  clattn_desc d = clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F16, 0,
                                   2, 8, 2, 3, 1000, 40, 24);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    clattn_plan_t plan = NULL;
    d.tiles = bad[i];
    clattn_status st = clattn_plan_create(ctx, &d, &plan);
    if (st != CLATTN_ERROR_INVALID_DESCRIPTOR)
      fail_msg("tiles %s: %s, want CLATTN_ERROR_INVALID_DESCRIPTOR", bad[i],
               clattn_status_name(st));
    assert_null(plan);
    assert_non_null(strstr(clattn_context_error(ctx), "tiles"));
  }
  const struct {
    const char *tiles;
    size_t splits;
  } sizes[] = {{"SHAPE=decode,WG=1,SPLITS=1", 1},
               {"SHAPE=decode,WG=1,SPLITS=6,BLOCK_N=8", 6},
               {"SHAPE=decode,WG=4,BLOCK_N=4,SPLITS=5", 5}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    clattn_plan_t plan = NULL;
    d.tiles = sizes[i].tiles;
    assert_int_equal(clattn_plan_create(ctx, &d, &plan), CLATTN_SUCCESS);
    size_t rows = 2 * 8 * 3;
    size_t want = sizes[i].splits > 1
                      ? sizes[i].splits * rows * (24 + 1) * sizeof(float)
                      : 0;
    assert_int_equal(clattn_plan_device_bytes(plan), want);
    clattn_plan_destroy(plan);
  }
  /* More splits than blocks of keys are cut to one per block. */
  d.tiles = "SHAPE=decode,WG=1,BLOCK_N=16,SPLITS=4000";
  clattn_plan_t plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, &plan), CLATTN_SUCCESS);
  char line[512];
  clattn_plan_describe(plan, line, sizeof line);
  clattn_plan_destroy(plan);
  assert_non_null(strstr(line, "SPLITS=63 "));
}

/* Every candidate the tuner would time builds and gives the right answer. */
static void test_decode_candidates(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 1,
                                   1, 4, 2, 2, tiny ? 40 : 3000, 16, 8);
  char specs[64][256];
  const char *ptrs[64];
  size_t n = 0;
  while (n < 64 && clattn_tune_candidate(ctx, &d, n, specs[n],
                                         sizeof specs[n]) == CLATTN_SUCCESS) {
    assert_non_null(strstr(specs[n], "SHAPE=decode"));
    ptrs[n] = specs[n];
    n++;
  }
  assert_true(n >= 4);
  /* Each candidate is a program build: check the first few and the last. */
  if (n > 4) {
    ptrs[3] = ptrs[n - 1];
    n = 4;
  }
  if (tiny)
    n = 2;
  clattn_test_problem p;
  clattn_test_problem_init(&p, &d, 700);
  int ok = check_specs(&p, ptrs, n, 0.0);
  clattn_test_problem_free(&p);
  assert_true(ok);
}

int main(int argc, char **argv) {
  tiny = argc > 1 && strcmp(argv[1], "--tiny") == 0;
  /* The cases check which family and tiles a plan chooses by itself (and
   * name their own tiles otherwise): a tile override from the environment
   * would choose for them. */
  unsetenv("CLATTN_TUNE");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decode_softmax),
      cmocka_unit_test(test_decode_sigmoid),
      cmocka_unit_test(test_decode_rows_without_keys),
      cmocka_unit_test(test_decode_many_rows),
      cmocka_unit_test(test_decode_million_keys),
      cmocka_unit_test(test_decode_routing),
      cmocka_unit_test(test_decode_tiles),
      cmocka_unit_test(test_decode_candidates),
  };
  /* Under Oclgrind (--tiny) the million keys would take hours. */
  const struct CMUnitTest tiny_tests[] = {
      cmocka_unit_test(test_decode_softmax),
      cmocka_unit_test(test_decode_sigmoid),
      cmocka_unit_test(test_decode_rows_without_keys),
      cmocka_unit_test(test_decode_many_rows),
      cmocka_unit_test(test_decode_routing),
      cmocka_unit_test(test_decode_tiles),
      cmocka_unit_test(test_decode_candidates),
  };
  if (tiny)
    return cmocka_run_group_tests(tiny_tests, NULL,
                                  clattn_test_shared_teardown);
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
