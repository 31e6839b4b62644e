/*
 * test_tiny.c - every kernel at tiny shapes against the double-precision
 * reference. CTest runs it twice: on the default device, and under
 * `oclgrind --data-races` (label "oclgrind"), where the shapes must stay tiny
 * because Oclgrind simulates every work-item. Oclgrind's own findings
 * (out-of-bounds accesses, races) are matched in its output by CTest.
 *
 * Tolerances: f32 storage 1e-5, f16 storage 2e-2 (relative to the largest
 * reference magnitude of the tensor, inputs pre-rounded to half).
 */
#include "reference.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define TOL_F32 1e-5
#define TOL_F16 2e-2

typedef struct tiny_case {
  clattn_variant variant;
  clattn_dtype dtype;
  int causal;
  size_t b, hq, hkv, nq, nk, d, dv;
  const char *tiles; /* small tiles so that blocks and chunks are crossed */
} tiny_case;

/* Every tile shape of the flash kernels is forced in turn, with tiles small
 * enough that several blocks, work-groups and tiles are crossed. */
#define ROW "SHAPE=row,BLOCK_M=2,BLOCK_N=2,WG=2"
#define KEY "SHAPE=cpu,KEYS_VEC=8,BLOCK_M=3"
#define GPU "SHAPE=gpu,BLOCK_M=4,BLOCK_N=2"
static const tiny_case cases[] = {
    {CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 0, 1, 2, 1, 5, 7, 3, 5, NULL},
    {CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 0, 1, 2, 1, 5, 7, 3, 5, ROW},
    {CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 1, 2, 2, 2, 9, 4, 8, 8, ROW},
    {CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 1, 2, 2, 2, 9, 4, 8, 8, KEY},
    {CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F16, 1, 1, 4, 2, 6, 11, 5, 3, KEY},
    {CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F16, 1, 1, 4, 2, 6, 11, 5, 3, ROW},
    {CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 1, 2, 2, 2, 9, 4, 8, 8, GPU},
    {CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F16, 0, 1, 4, 2, 6, 11, 5, 3, GPU},
    {CLATTN_VARIANT_SIGMOID, CLATTN_DTYPE_F32, 1, 1, 2, 1, 7, 19, 6, 4, KEY},
    {CLATTN_VARIANT_SIGMOID, CLATTN_DTYPE_F32, 1, 1, 2, 1, 7, 19, 6, 4, ROW},
    {CLATTN_VARIANT_SIGMOID, CLATTN_DTYPE_F32, 1, 1, 2, 1, 7, 19, 6, 4, GPU},
    {CLATTN_VARIANT_SIGMOID, CLATTN_DTYPE_F16, 0, 1, 1, 1, 4, 6, 16, 2, NULL},
};

static void run_case(const tiny_case *c, clattn_context_t ctx) {
  clattn_desc desc;
  clattn_desc_init(&desc, c->variant);
  desc.dtype = c->dtype;
  desc.causal = c->causal;
  desc.batch = c->b;
  desc.heads_q = c->hq;
  desc.heads_kv = c->hkv;
  desc.seq_q = c->nq;
  desc.seq_k = c->nk;
  desc.dim = c->d;
  desc.dim_v = c->dv;
  desc.tiles = c->tiles;
  char what[128];
  snprintf(what, sizeof what, "%s %s%s Nq=%zu Nk=%zu D=%zu Dv=%zu tiles=%s",
           clattn_variant_name(c->variant), clattn_dtype_name(c->dtype),
           c->causal ? " causal" : "", c->nq, c->nk, c->d, c->dv,
           c->tiles ? c->tiles : "default");
  print_message("  %s\n", what);
  clattn_test_problem p;
  clattn_test_problem_init(&p, &desc, 1234 + c->nq * 31 + c->nk);
  clattn_status st = clattn_test_problem_run_host(&p, ctx);
  if (st != CLATTN_SUCCESS) {
    print_error("%s: %s\n", clattn_status_name(st), clattn_context_error(ctx));
    clattn_test_problem_free(&p);
    fail();
  }
  double tol = c->dtype == CLATTN_DTYPE_F16 ? TOL_F16 : TOL_F32;
  int ok = clattn_test_check(what, p.o, p.ref_o, p.n.o, tol);
  if (ok && p.ref_lse) {
    /* -inf must be exact; finite values within the tolerance. */
    for (size_t i = 0; i < p.n.lse && ok; i++) {
      if (isinf(p.ref_lse[i]))
        ok = isinf(p.lse[i]) && p.lse[i] < 0;
      else
        ok = fabs(p.lse[i] - p.ref_lse[i]) <=
             tol * fmax(1.0, fabs(p.ref_lse[i]));
      if (!ok)
        print_error("%s: lse[%zu] = %g, reference %g\n", what, i,
                    (double)p.lse[i], p.ref_lse[i]);
    }
  }
  clattn_test_problem_free(&p);
  assert_true(ok);
}

static void test_tiny_all_variants(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_context_create();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(&cases[i], ctx);
  clattn_context_destroy(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tiny_all_variants),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
