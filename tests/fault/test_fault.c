/*
 * test_fault.c - every OpenCL call clattn makes, failed in turn: for each
 * entry point of fault_cl.h and each N up to the number of its calls, the
 * Nth call fails during context creation, plan creation and runs (with
 * buffers and through the host call, forward and backward) of a small
 * softmax and a small causal linear plan, on a context clattn creates (by
 * default and by device name) and on one it adopts.
 *
 * Each injected failure must either give a non-success status with a
 * message, or be absorbed with correct output (the disk cache only costs a
 * rebuild); afterwards the plans made before it still run correctly, fresh
 * plans on the same context build and run correctly, and every OpenCL
 * object is released once everything is destroyed. Host memory leaks are
 * left to LeakSanitizer, which this program is built with where the
 * compiler has it.
 *
 * Both program paths are swept: with an empty disk cache (build from
 * source, store the binary) and with a warm one (load the binary).
 */
#define _POSIX_C_SOURCE 200809L

#include "fault_cl.h"
#include "reference.h"
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOL_F32 1e-5
#define TOL_BWD_F32 1e-4 /* as test_backward.c */
#define NKINDS 2

typedef enum { CTX_OWN, CTX_ADOPTED } ctx_mode;

typedef struct outcome {
  int failed;       /* some clattn call returned non-success */
  const char *step; /* which */
  clattn_status st;
  int defect; /* a broken promise, described in why */
  char why[1024];
} outcome;

static clattn_test_problem problems[NKINDS];
/* Each problem's backward: dO, the forward's outputs as float (softmax needs
 * them), and the reference gradients. */
typedef struct bwd_data {
  float *dout, *o, *lse;
  double *ref[3];
} bwd_data;
static bwd_data bwd[NKINDS];
static char cache_dir[1024];
static const char *selector; /* of clattn_context_create; NULL: default */

__attribute__((format(printf, 2, 3))) static void defect(outcome *o,
                                                         const char *fmt, ...) {
  if (o->defect)
    return; /* the first one says most */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(o->why, sizeof o->why, fmt, ap);
  va_end(ap);
  o->defect = 1;
}

/* A failure must say what went wrong. */
static void note_failure(outcome *o, const char *step, clattn_status st,
                         clattn_context_t ctx) {
  o->failed = 1;
  o->step = step;
  o->st = st;
  const char *msg = clattn_context_error(ctx);
  if (!ctx || !msg[0])
    defect(o, "%s returned %s with no message", step, clattn_status_name(st));
}

static int outputs_right(const clattn_test_problem *p, const float *o,
                         const float *lse) {
  if (!clattn_test_check("o", o, p->ref_o, p->n.o, TOL_F32))
    return 0;
  return !lse || clattn_test_check("lse", lse, p->ref_lse, p->n.lse, TOL_F32);
}

/* clattn_plan_run on buffers made by the test (not counted, never failed),
 * with the output checked when it succeeds. */
static clattn_status run_buffers(clattn_context_t ctx, clattn_plan_t plan,
                                 const clattn_test_problem *p, int *wrong) {
  cl_context cl = clattn_context_cl(ctx);
  cl_command_queue queue = clattn_context_queue(ctx);
  cl_mem m[5] = {NULL, NULL, NULL, NULL, NULL};
  const float *in[3] = {p->q, p->k, p->v};
  const size_t n[5] = {p->n.q, p->n.k, p->n.v, p->n.o, p->n.lse};
  cl_int err = CL_SUCCESS;
  cl_event ev = NULL;
  float *o = calloc(p->n.o, sizeof *o);
  float *lse = p->lse ? calloc(p->n.lse, sizeof *lse) : NULL;
  fault_counting(0);
  for (int i = 0; i < 5 && err == CL_SUCCESS; i++) {
    if (i == 4 && !p->lse)
      break;
    m[i] = clCreateBuffer(
        cl, i < 3 ? CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR : CL_MEM_READ_WRITE,
        n[i] * sizeof(float), i < 3 ? (void *)in[i] : NULL, &err);
  }
  assert_int_equal(err, CL_SUCCESS);
  assert_non_null(o);
  fault_counting(1);
  clattn_status st =
      clattn_plan_run(plan, m[0], m[1], m[2], m[3], m[4], 0, NULL, &ev);
  fault_counting(0);
  if (st == CLATTN_SUCCESS) {
    assert_non_null(ev);
    assert_int_equal(clWaitForEvents(1, &ev), CL_SUCCESS);
    assert_int_equal(clReleaseEvent(ev), CL_SUCCESS);
    assert_int_equal(clEnqueueReadBuffer(queue, m[3], CL_TRUE, 0,
                                         n[3] * sizeof(float), o, 0, NULL,
                                         NULL),
                     CL_SUCCESS);
    if (lse)
      assert_int_equal(clEnqueueReadBuffer(queue, m[4], CL_TRUE, 0,
                                           n[4] * sizeof(float), lse, 0, NULL,
                                           NULL),
                       CL_SUCCESS);
    *wrong = !outputs_right(p, o, lse);
  }
  clFinish(queue);
  for (int i = 0; i < 5; i++)
    if (m[i])
      clReleaseMemObject(m[i]);
  free(o);
  free(lse);
  fault_counting(1);
  return st;
}

static clattn_status run_host(clattn_plan_t plan, const clattn_test_problem *p,
                              int *wrong) {
  float *o = calloc(p->n.o, sizeof *o);
  float *lse = p->lse ? calloc(p->n.lse, sizeof *lse) : NULL;
  assert_non_null(o);
  clattn_status st = clattn_plan_run_host(plan, p->q, p->k, p->v, o, lse);
  if (st == CLATTN_SUCCESS)
    *wrong = !outputs_right(p, o, lse);
  free(o);
  free(lse);
  return st;
}

/* clattn_plan_backward_host of a problem. */
static clattn_status run_backward(clattn_plan_t plan, int kind, int *wrong) {
  const clattn_test_problem *p = &problems[kind];
  const bwd_data *b = &bwd[kind];
  float *g[3] = {calloc(p->n.q, sizeof(float)), calloc(p->n.k, sizeof(float)),
                 calloc(p->n.v, sizeof(float))};
  const size_t n[3] = {p->n.q, p->n.k, p->n.v};
  assert_true(g[0] && g[1] && g[2]);
  clattn_status st = clattn_plan_backward_host(
      plan, p->q, p->k, p->v, b->o, b->lse, b->dout, g[0], g[1], g[2]);
  if (st == CLATTN_SUCCESS)
    for (int i = 0; i < 3; i++)
      *wrong |= !clattn_test_check(i == 0   ? "dq"
                                   : i == 1 ? "dk"
                                            : "dv",
                                   g[i], b->ref[i], n[i], TOL_BWD_F32);
  for (int i = 0; i < 3; i++)
    free(g[i]);
  return st;
}

/* The adopted context's own objects, made by the test. */
typedef struct own_cl {
  cl_context context;
  cl_command_queue queue;
  cl_device_id device;
} own_cl;

static void own_cl_create(own_cl *c) {
  clattn_device_profile prof;
  cl_uint index = 0;
  cl_int err = CL_SUCCESS;
  fault_counting(0);
  assert_int_equal(clattn_device_find(NULL, &index), CLATTN_SUCCESS);
  assert_int_equal(clattn_device_profile_get(index, &prof), CLATTN_SUCCESS);
  c->device = prof.device;
  c->context = clCreateContext(NULL, 1, &c->device, NULL, NULL, &err);
  assert_int_equal(err, CL_SUCCESS);
  c->queue = clCreateCommandQueue(c->context, c->device, 0, &err);
  assert_int_equal(err, CL_SUCCESS);
}

static void own_cl_release(own_cl *c) {
  fault_counting(0);
  clReleaseCommandQueue(c->queue);
  clReleaseContext(c->context);
}

static clattn_status context_create(clattn_context_t *ctx, ctx_mode mode,
                                    const own_cl *own) {
  return mode == CTX_OWN ? clattn_context_create(ctx, selector, 0)
                         : clattn_context_create_from_cl(
                               ctx, own->context, own->device, own->queue);
}

/* Plans and runs one kind; 0 when a step failed. */
static int plan_and_run(clattn_context_t ctx, int kind, clattn_plan_t *plan,
                        outcome *o) {
  const clattn_test_problem *p = &problems[kind];
  int wrong = 0;
  clattn_status st = clattn_plan_create(ctx, &p->desc, plan);
  if (st != CLATTN_SUCCESS) {
    note_failure(o, "clattn_plan_create", st, ctx);
    if (*plan)
      defect(o, "clattn_plan_create failed but set *out");
    return 0;
  }
  st = run_buffers(ctx, *plan, p, &wrong);
  if (st != CLATTN_SUCCESS) {
    note_failure(o, "clattn_plan_run", st, ctx);
    return 0;
  }
  if (wrong)
    defect(o, "clattn_plan_run succeeded with wrong output (%s)",
           clattn_variant_name(p->desc.variant));
  st = run_host(*plan, p, &wrong);
  if (st != CLATTN_SUCCESS) {
    note_failure(o, "clattn_plan_run_host", st, ctx);
    return 0;
  }
  if (wrong)
    defect(o, "clattn_plan_run_host succeeded with wrong output (%s)",
           clattn_variant_name(p->desc.variant));
  st = run_backward(*plan, kind, &wrong);
  if (st != CLATTN_SUCCESS) {
    note_failure(o, "clattn_plan_backward_host", st, ctx);
    return 0;
  }
  if (wrong)
    defect(o, "clattn_plan_backward_host succeeded with wrong gradients (%s)",
           clattn_variant_name(p->desc.variant));
  return 1;
}

/* One pass: context, then per kind a plan, a run and a host run; after a
 * failure, the checks that the context still serves. */
static void scenario(ctx_mode mode, size_t kinds, outcome *o) {
  clattn_context_t ctx = NULL;
  clattn_plan_t plans[NKINDS] = {NULL, NULL};
  own_cl own;
  memset(o, 0, sizeof *o);
  long live_before = fault_live();
  if (mode == CTX_ADOPTED)
    own_cl_create(&own);
  fault_counting(1);
  clattn_status st = context_create(&ctx, mode, &own);
  if (st != CLATTN_SUCCESS) {
    note_failure(o, "context create", st, ctx);
  } else {
    for (size_t k = 0; k < kinds; k++)
      if (!plan_and_run(ctx, (int)k, &plans[k], o))
        break;
  }
  fault_counting(0);

  if (o->failed && !o->defect) {
    int wrong = 0;
    if (st != CLATTN_SUCCESS) {
      /* A failed create leaves nothing behind; the next one works. */
      clattn_context_destroy(ctx);
      ctx = NULL;
      st = context_create(&ctx, mode, &own);
      if (st != CLATTN_SUCCESS)
        defect(o, "a context create after the failure: %s: %s",
               clattn_status_name(st), clattn_context_error(ctx));
    }
    for (size_t k = 0; k < kinds && !o->defect; k++) {
      /* Plans made before the failure still work... */
      if (plans[k]) {
        st = run_host(plans[k], &problems[k], &wrong);
        if (st == CLATTN_SUCCESS)
          st = run_backward(plans[k], (int)k, &wrong);
        if (st != CLATTN_SUCCESS || wrong)
          defect(o, "the %s plan made before the failure: %s %s",
                 clattn_variant_name(problems[k].desc.variant),
                 clattn_status_name(st),
                 wrong ? "wrong output" : clattn_context_error(ctx));
      }
      /* ...and new ones build and run on the same context. */
      clattn_plan_t fresh = NULL;
      st = clattn_plan_create(ctx, &problems[k].desc, &fresh);
      if (st == CLATTN_SUCCESS)
        st = run_host(fresh, &problems[k], &wrong);
      if (st == CLATTN_SUCCESS)
        st = run_backward(fresh, (int)k, &wrong);
      if (!o->defect && (st != CLATTN_SUCCESS || wrong))
        defect(o, "a fresh %s plan after the failure: %s %s",
               clattn_variant_name(problems[k].desc.variant),
               clattn_status_name(st),
               wrong ? "wrong output" : clattn_context_error(ctx));
      clattn_plan_destroy(fresh);
    }
  }
  for (size_t k = 0; k < kinds; k++)
    clattn_plan_destroy(plans[k]);
  clattn_context_destroy(ctx);
  if (mode == CTX_ADOPTED)
    own_cl_release(&own);
  if (fault_live() != live_before && !o->defect) {
    char what[512];
    fault_live_describe(what, sizeof what);
    defect(o, "OpenCL objects left after every handle was destroyed: %s", what);
  }
}

static void empty_cache(void) {
  DIR *d = opendir(cache_dir);
  struct dirent *e;
  char path[2048];
  if (!d)
    return;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "%s/%s", cache_dir, e->d_name);
    unlink(path);
  }
  closedir(d);
}

/* The failures clattn may absorb: the disk cache's, which cost a build
 * from source (loading a binary, storing one), and nothing else. */
static int may_absorb(fault_fn f, int cold) {
  return f == FAULT_clCreateProgramWithBinary || f == FAULT_clGetProgramInfo ||
         (f == FAULT_clBuildProgram && !cold);
}

/* Runs the scenario once clean to count the calls, then once per
 * (function, N) for the functions in `only` (all when NULL). */
static void sweep(const char *label, ctx_mode mode, size_t kinds, int cold,
                  const fault_fn *only, size_t nonly) {
  outcome o;
  long counts[FAULT_COUNT];
  long runs = 0, failed = 0, absorbed = 0, defects = 0, fns = 0;
  char absorbed_list[2048] = "", swept[2048] = "";
  size_t alen = 0, slen = 0;
  const char *v = getenv("CLATTN_FAULT_VERBOSE");
  int verbose = v && strcmp(v, "1") == 0;

  if (cold)
    empty_cache();
  fault_reset();
  scenario(mode, kinds, &o);
  if (o.defect || o.failed)
    print_error("%s: clean run: %s %s\n", label, o.step ? o.step : "", o.why);
  assert_false(o.defect || o.failed);
  for (int f = 0; f < FAULT_COUNT; f++)
    counts[f] = fault_calls((fault_fn)f);

  for (int f = 0; f < FAULT_COUNT; f++) {
    int chosen = !only;
    for (size_t i = 0; i < nonly; i++)
      chosen |= only[i] == (fault_fn)f;
    if (!chosen || !fault_injectable((fault_fn)f) || counts[f] == 0)
      continue;
    fns++;
    int w = snprintf(swept + slen, sizeof swept - slen, " %s x%ld",
                     fault_name((fault_fn)f), counts[f]);
    if (w > 0 && (size_t)w < sizeof swept - slen)
      slen += (size_t)w;
    for (long n = 1; n <= counts[f]; n++) {
      if (cold)
        empty_cache();
      fault_reset();
      fault_arm((fault_fn)f, n);
      if (verbose)
        fprintf(stderr, "%s: failing %s call %ld\n", label,
                fault_name((fault_fn)f), n);
      scenario(mode, kinds, &o);
      if (!fault_fired())
        continue; /* this run took a path with fewer calls */
      runs++;
      if (o.defect) {
        defects++;
        print_error("%s: %s call %ld of %ld failed: %s\n", label,
                    fault_name((fault_fn)f), n, counts[f], o.why);
      } else if (o.failed) {
        failed++;
      } else if (!may_absorb((fault_fn)f, cold)) {
        defects++;
        print_error("%s: %s call %ld of %ld failed, and every call "
                    "succeeded anyway\n",
                    label, fault_name((fault_fn)f), n, counts[f]);
      } else {
        absorbed++;
        int aw = snprintf(absorbed_list + alen, sizeof absorbed_list - alen,
                          " %s#%ld", fault_name((fault_fn)f), n);
        if (aw > 0 && (size_t)aw < sizeof absorbed_list - alen)
          alen += (size_t)aw;
      }
    }
  }
  printf("%s: %ld entry points, %ld injected failures: %ld failed cleanly, "
         "%ld absorbed with correct output, %ld defects\n",
         label, fns, runs, failed, absorbed, defects);
  printf("  swept:%s\n", swept);
  if (absorbed)
    printf("  absorbed:%s\n", absorbed_list);
  fflush(stdout);
  assert_int_equal(defects, 0);
}

static int setup(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  const char *tmp = getenv("CLATTN_FAULT_SCRATCH");
  if (!tmp || !*tmp)
    tmp = getenv("TMPDIR");
  snprintf(cache_dir, sizeof cache_dir, "%s/clattn-fault-cache-%ld",
           tmp && *tmp ? tmp : "/tmp", (long)getpid());
  mkdir(cache_dir, 0755);
  setenv("CLATTN_CACHE_DIR", cache_dir, 1);
  /* The plans must take their tiles from clattn alone. */
  unsetenv("CLATTN_TUNE");
  setenv("CLATTN_TUNE_FILE", "/nonexistent/clattn-tuning.txt", 1);
  clattn_desc s = clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 0,
                                   1, 2, 1, 5, 7, 8, 8);
  clattn_desc l = clattn_test_desc(CLATTN_VARIANT_LINEAR, CLATTN_DTYPE_F32, 1,
                                   1, 2, 1, 9, 6, 8, 4);
  clattn_test_problem_init(&problems[0], &s, 11);
  clattn_test_problem_init(&problems[1], &l, 12);
  for (int k = 0; k < NKINDS; k++) {
    const clattn_test_problem *p = &problems[k];
    bwd_data *b = &bwd[k];
    b->dout = malloc(p->n.o * sizeof(float));
    b->ref[0] = malloc(p->n.q * sizeof(double));
    b->ref[1] = malloc(p->n.k * sizeof(double));
    b->ref[2] = malloc(p->n.v * sizeof(double));
    assert_true(b->dout && b->ref[0] && b->ref[1] && b->ref[2]);
    clattn_test_fill_normal(b->dout, p->n.o, 13 + (uint64_t)k, 0.0f, 1.0f);
    if (p->ref_lse) {
      b->o = malloc(p->n.o * sizeof(float));
      b->lse = malloc(p->n.lse * sizeof(float));
      assert_true(b->o && b->lse);
      for (size_t i = 0; i < p->n.o; i++)
        b->o[i] = (float)p->ref_o[i];
      for (size_t i = 0; i < p->n.lse; i++)
        b->lse[i] = (float)p->ref_lse[i];
    }
    clattn_ref_attention_backward(&p->desc, p->q, p->k, p->v, b->dout,
                                  b->ref[0], b->ref[1], b->ref[2]);
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  clattn_test_problem_free(&problems[0]);
  clattn_test_problem_free(&problems[1]);
  for (int k = 0; k < NKINDS; k++) {
    free(bwd[k].dout);
    free(bwd[k].o);
    free(bwd[k].lse);
    for (int i = 0; i < 3; i++)
      free(bwd[k].ref[i]);
  }
  empty_cache();
  rmdir(cache_dir);
  return 0;
}

/* Every call on the usual path: the binaries come from the disk cache. */
static void test_fault_warm_cache(void **state) {
  (void)state;
  outcome o;
  fault_reset();
  scenario(CTX_OWN, NKINDS, &o); /* fills the cache */
  if (o.defect || o.failed)
    print_error("filling the cache: %s %s\n", o.step ? o.step : "", o.why);
  assert_false(o.defect || o.failed);
  sweep("own context, warm cache", CTX_OWN, NKINDS, 0, NULL, 0);
}

/* The calls of a first build (from source, then stored) that the warm path
 * does not make or makes on other objects. */
static void test_fault_cold_cache(void **state) {
  static const fault_fn build[] = {FAULT_clCreateProgramWithSource,
                                   FAULT_clBuildProgram, FAULT_clGetProgramInfo,
                                   FAULT_clGetProgramBuildInfo,
                                   FAULT_clCreateKernel};
  (void)state;
  sweep("own context, empty cache", CTX_OWN, NKINDS, 1, build,
        sizeof build / sizeof build[0]);
}

static void test_fault_adopted_context(void **state) {
  (void)state;
  /* Adoption has its own calls; the plans after it are the same as above,
   * so one kind suffices. */
  sweep("adopted context", CTX_ADOPTED, 1, 0, NULL, 0);
}

/* A selector by name goes through every name query of the devices before
 * the one it finds; the context alone is enough. */
static void test_fault_selector_by_name(void **state) {
  clattn_device_profile prof;
  cl_uint index = 0;
  (void)state;
  fault_counting(0);
  assert_int_equal(clattn_device_find(NULL, &index), CLATTN_SUCCESS);
  assert_int_equal(clattn_device_profile_get(index, &prof), CLATTN_SUCCESS);
  selector = prof.name;
  sweep("context by device name", CTX_OWN, 0, 0, NULL, 0);
  selector = NULL;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fault_warm_cache),
      cmocka_unit_test(test_fault_cold_cache),
      cmocka_unit_test(test_fault_adopted_context),
      cmocka_unit_test(test_fault_selector_by_name),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
