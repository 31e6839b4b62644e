/*
 * test_threads.c - the header's thread-safety promise: threads sharing one
 * context create plans (some the same, so the program cache is raced),
 * run them, and also run one shared plan, all at once; every output must
 * match the reference. Threads whose plans pass over a refused tuning-file
 * spec, while others fail on the same context, must each quote their own
 * reason. CI also runs this file under Helgrind.
 */
#include "reference.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <unistd.h>

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

/* ---- A refused tuning-file spec while other threads fail ------------- */

#define WARN_ROUNDS 40

typedef struct warn_job {
  clattn_context_t ctx;
  int valid; /* 1: a plan the tuning file's spec is refused for */
  int ok;
  char why[600];
} warn_job;

static clattn_desc warn_desc(void) {
  return clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 0, 1, 2, 1,
                          19, 23, 16, 8);
}

static int warn_worker(void *arg) {
  warn_job *j = arg;
  clattn_desc d = warn_desc();
  if (!j->valid)
    d.seq_q = 0; /* fails with a message naming seq_q */
  j->ok = 1;
  for (int round = 0; round < WARN_ROUNDS && j->ok; round++) {
    clattn_plan_t plan = NULL;
    clattn_status st = clattn_plan_create(j->ctx, &d, &plan);
    if (!j->valid) {
      if (st != CLATTN_ERROR_INVALID_DESCRIPTOR) {
        snprintf(j->why, sizeof j->why, "invalid plan: got %s",
                 clattn_status_name(st));
        j->ok = 0;
      }
    } else if (st != CLATTN_SUCCESS) {
      snprintf(j->why, sizeof j->why, "valid plan: got %s",
               clattn_status_name(st));
      j->ok = 0;
    } else {
      /* The warning must quote this plan's own refusal, never the message
       * another thread's failure left on the context meanwhile. */
      char line[1024];
      clattn_plan_describe(plan, line, sizeof line);
      if (!strstr(line, "passed over") || !strstr(line, "BLOCK_M") ||
          strstr(line, "seq_q") || strstr(line, "BLOCK_M=999 ")) {
        snprintf(j->why, sizeof j->why, "round %d: plan \"%.500s\"", round,
                 line);
        j->ok = 0;
      }
    }
    clattn_plan_destroy(plan);
  }
  return 0;
}

static void test_threads_refused_tuning_spec(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_device_profile prof;
  assert_int_equal(clattn_context_profile(ctx, &prof), CLATTN_SUCCESS);
  clattn_desc d = warn_desc();

  /* A tuning file whose line for this problem holds a spec no family
   * accepts. */
  const char *base = getenv("TMPDIR");
  char path[512];
  snprintf(path, sizeof path, "%s/clattn-threads-XXXXXX",
           base && *base ? base : "/tmp");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  fprintf(f,
          "clattn-tuning 1\n%s\tsoftmax\tf32\t%zu\t%zu\t0\t%zu\t"
          "SHAPE=cpu,BLOCK_M=999\t1.0\n",
          prof.name, d.dim, d.dim_v, d.seq_k);
  fclose(f);
  const char *tune = getenv("CLATTN_TUNE");
  char *saved_tune = tune ? strdup(tune) : NULL;
  unsetenv("CLATTN_TUNE");
  setenv("CLATTN_TUNE_FILE", path, 1);

  /* The refused spec gives way to the heuristic, whose plan is correct. */
  clattn_test_problem p;
  clattn_test_problem_init(&p, &d, 11);
  int ran =
      clattn_test_problem_run_host(&p, ctx) == CLATTN_SUCCESS &&
      clattn_test_check("O after a refused spec", p.o, p.ref_o, p.n.o, TOL_F32);
  clattn_test_problem_free(&p);

  warn_job jobs[4];
  thrd_t threads[4];
  for (int i = 0; i < 4; i++) {
    jobs[i] = (warn_job){ctx, i % 2 == 0, 0, ""};
    assert_int_equal(thrd_create(&threads[i], warn_worker, &jobs[i]),
                     thrd_success);
  }
  int all = 1;
  for (int i = 0; i < 4; i++) {
    thrd_join(threads[i], NULL);
    if (!jobs[i].ok)
      print_error("thread %d: %s\n", i, jobs[i].why);
    all &= jobs[i].ok;
  }
  unsetenv("CLATTN_TUNE_FILE");
  if (saved_tune)
    setenv("CLATTN_TUNE", saved_tune, 1);
  free(saved_tune);
  remove(path);
  assert_true(ran);
  assert_true(all);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_threads_share_a_context),
      cmocka_unit_test(test_threads_refused_tuning_spec),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
