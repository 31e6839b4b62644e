/*
 * test_threads.c - the header's thread-safety promise: threads sharing one
 * context create plans (some the same, so the program cache is raced),
 * run them, and also run one shared plan, all at once; every output must
 * match the reference.
 */
#include "reference.h"
#include "testutil.h"

#include <threads.h>

#define TOL_F32 1e-5
#define THREADS 6

typedef struct job {
  clattn_context_t ctx;
  clattn_plan_t shared; /* one plan every thread also runs */
  clattn_test_problem *shared_problem;
  int index;
  int ok;
} job;

static int worker(void *arg) {
  job *j = arg;
  static const clattn_variant variants[] = {
      CLATTN_VARIANT_SOFTMAX, CLATTN_VARIANT_SIGMOID, CLATTN_VARIANT_LINEAR,
      CLATTN_VARIANT_COSFORMER};
  clattn_desc d =
      clattn_test_desc(variants[j->index % 4], CLATTN_DTYPE_F32, j->index & 1,
                       1, 2, 1, 33 + j->index % 2, 41, 16, 8);
  clattn_test_problem p;
  clattn_test_problem_init(&p, &d, 100 + (uint64_t)j->index);
  int ok = 1;
  for (int round = 0; round < 3 && ok; round++) {
    ok = clattn_test_problem_run_host(&p, j->ctx) == CLATTN_SUCCESS &&
         clattn_test_check("threaded O", p.o, p.ref_o, p.n.o, TOL_F32);
    /* The shared plan, run from every thread into this thread's output. */
    clattn_test_problem *sp = j->shared_problem;
    float *o = malloc(sp->n.o * sizeof(float));
    ok = ok && o &&
         clattn_plan_run_host(j->shared, sp->q, sp->k, sp->v, o, NULL) ==
             CLATTN_SUCCESS &&
         clattn_test_check("shared plan O", o, sp->ref_o, sp->n.o, TOL_F32);
    free(o);
  }
  clattn_test_problem_free(&p);
  j->ok = ok;
  return 0;
}

static void test_threads_share_a_context(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 1,
                                   1, 4, 2, 50, 60, 24, 24);
  clattn_test_problem sp;
  clattn_test_problem_init(&sp, &d, 7);
  clattn_plan_t shared = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, &shared), CLATTN_SUCCESS);
  job jobs[THREADS];
  thrd_t threads[THREADS];
  for (int i = 0; i < THREADS; i++) {
    jobs[i] = (job){ctx, shared, &sp, i, 0};
    assert_int_equal(thrd_create(&threads[i], worker, &jobs[i]), thrd_success);
  }
  int all = 1;
  for (int i = 0; i < THREADS; i++) {
    thrd_join(threads[i], NULL);
    all &= jobs[i].ok;
  }
  clattn_plan_destroy(shared);
  clattn_test_problem_free(&sp);
  assert_true(all);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_threads_share_a_context),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
