/*
 * test_softmax.c - softmax attention through the public API, compared with
 * the double-precision reference over shapes that stress masking, grouped
 * heads, head sizes, storage types and the event-based entry point.
 *
 * Errors are max_t |O_t - ref_t| / max_t |ref_t| over a whole tensor (O or
 * LSE), so one number per tensor is compared with a tolerance.
 */
#define _POSIX_C_SOURCE 200809L

#include "reference.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* f32 storage: float accumulation over up to ~1100 keys and D = 256 stays
 * near 1e-6; 1e-5 leaves room without hiding a wrong mask or a lost tile. */
#define TOL_F32 1e-5
/* f16 storage: inputs are pre-rounded to half so the reference sees what the
 * device sees; O is stored as half, one ulp is 2^-11 relative, plus float
 * accumulation. */
#define TOL_F16 2e-2
/* LSE is float32 for both dtypes and computed in float from the same inputs,
 * so it keeps f32 accuracy even when Q, K and V are half. */
#define TOL_LSE 1e-5
/* Inputs scaled by 30 give scaled scores of a few thousand, where one float
 * ulp is 2.4e-4: any float implementation's weights carry ~1e-4 relative
 * error there. 1e-3 still catches a missing running max (inf or NaN) or a
 * tile whose rescaling is wrong (errors of order 1). */
#define TOL_LARGE_SCORES 1e-3

#define make_desc(...) clattn_test_desc(CLATTN_VARIANT_SOFTMAX, __VA_ARGS__)

/* Rows with no visible key must be exactly zero with LSE exactly -inf, not
 * merely close: a consumer merging partial results relies on it. */
static int check_empty_rows(const clattn_test_problem *p) {
  size_t dv = p->desc.dim_v ? p->desc.dim_v : p->desc.dim;
  size_t r, t;
  for (r = 0; r < p->n.lse; r++) {
    if (!(isinf(p->ref_lse[r]) && p->ref_lse[r] < 0))
      continue;
    if (!(isinf(p->lse[r]) && p->lse[r] < 0)) {
      print_error("row %zu has no visible key: LSE %.9g, want -inf\n", r,
                  (double)p->lse[r]);
      return 0;
    }
    for (t = 0; t < dv; t++) {
      if (p->o[r * dv + t] != 0.0f) {
        print_error("row %zu has no visible key: O[%zu] = %.9g, want 0\n", r, t,
                    (double)p->o[r * dv + t]);
        return 0;
      }
    }
  }
  return 1;
}

static int compare(const clattn_test_problem *p, double tol_o) {
  int ok = 1;
  ok &= clattn_test_check("O", p->o, p->ref_o, p->n.o, tol_o);
  if (p->lse)
    ok &= clattn_test_check("LSE", p->lse, p->ref_lse, p->n.lse, TOL_LSE);
  if (p->lse)
    ok &= check_empty_rows(p);
  return ok;
}

static double dtype_tol(clattn_dtype dtype) {
  return dtype == CLATTN_DTYPE_F16 ? TOL_F16 : TOL_F32;
}

static void describe(const clattn_desc *d) {
  print_message("  B=%zu Hq=%zu Hkv=%zu Nq=%zu Nk=%zu D=%zu Dv=%zu causal=%d "
                "%s scale=%g\n",
                d->batch, d->heads_q, d->heads_kv, d->seq_q, d->seq_k, d->dim,
                d->dim_v, d->causal, clattn_dtype_name(d->dtype),
                (double)d->scale);
}

/* Each case runs with the device's own tiles and with the gpu shape forced,
 * so that a CPU device checks both main shapes on every problem below;
 * test_tiny forces every shape, the row shape included. */
static const char *const shapes[] = {NULL, "SHAPE=gpu"};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

/* Runs one descriptor through clattn_plan_run_host with each shape and
 * compares O and LSE; frees before asserting so a failure leaks nothing. */
static void check_desc(const clattn_desc *desc, uint64_t seed) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_test_problem p;
  clattn_status st = CLATTN_SUCCESS;
  int ok = 1;
  clattn_test_problem_init(&p, desc, seed);
  for (size_t s = 0; s < NSHAPES && ok; s++) {
    p.desc.tiles = shapes[s];
    st = clattn_test_problem_run_host(&p, ctx);
    ok = st == CLATTN_SUCCESS && compare(&p, dtype_tol(desc->dtype));
    if (!ok) {
      describe(desc);
      print_error("  tiles %s\n", shapes[s] ? shapes[s] : "default");
    }
  }
  clattn_test_problem_free(&p);
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_true(ok);
}

static void test_softmax_tiny(void **state) {
  /* heads_kv and dim_v left at 0 so their defaults are exercised too. */
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 0, 1, 1, 0, 1, 1, 1, 0);
  (void)state;
  check_desc(&d, 1);
  d.causal = 1;
  check_desc(&d, 2);
}

static void test_softmax_odd_shape(void **state) {
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 0, 2, 3, 3, 77, 133, 40, 24);
  (void)state;
  check_desc(&d, 3);
}

static void test_softmax_odd_shape_causal(void **state) {
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 2, 3, 3, 77, 133, 40, 24);
  (void)state;
  check_desc(&d, 4);
}

static void test_softmax_more_queries_than_keys(void **state) {
  /* Causal: the first Nq - Nk = 63 rows of every head see no key. */
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 2, 100, 37, 32, 32);
  (void)state;
  check_desc(&d, 5);
  d.causal = 0;
  check_desc(&d, 6);
  /* One key: only the last query row sees it. */
  d = make_desc(CLATTN_DTYPE_F32, 1, 1, 1, 1, 5, 1, 8, 8);
  check_desc(&d, 7);
}

static void test_softmax_fewer_queries_than_keys(void **state) {
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 2, 37, 300, 64, 64);
  (void)state;
  check_desc(&d, 8);
  d.causal = 0;
  check_desc(&d, 9);
}

static void test_softmax_single_query(void **state) {
  /* The decode shape: one query against a long cache, grouped heads. */
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 8, 1, 1, 1000, 64, 64);
  (void)state;
  check_desc(&d, 10);
  d.causal = 0;
  check_desc(&d, 11);
}

static void test_softmax_gqa(void **state) {
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 0, 2, 8, 2, 96, 96, 64, 64);
  (void)state;
  check_desc(&d, 12);
  d.causal = 1;
  check_desc(&d, 13);
}

static void test_softmax_head_dims(void **state) {
  static const size_t dims[] = {1, 3, 64, 80, 128, 256};
  size_t t;
  (void)state;
  for (t = 0; t < sizeof dims / sizeof dims[0]; t++) {
    clattn_desc d =
        make_desc(CLATTN_DTYPE_F32, (int)(t & 1), 1, 2, 2, 67, 131, dims[t], 0);
    check_desc(&d, 20 + t);
  }
}

static void test_softmax_dim_v_differs(void **state) {
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 1, 50, 70, 64, 16);
  (void)state;
  check_desc(&d, 30);
  d = make_desc(CLATTN_DTYPE_F32, 0, 1, 2, 2, 50, 70, 24, 200);
  check_desc(&d, 31);
  d = make_desc(CLATTN_DTYPE_F32, 1, 1, 1, 1, 33, 33, 16, 1);
  check_desc(&d, 32);
}

static void test_softmax_custom_scale(void **state) {
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 2, 64, 80, 32, 32);
  (void)state;
  d.scale = 0.37f;
  check_desc(&d, 40);
  d.scale = 1.0f;
  d.causal = 0;
  check_desc(&d, 41);
}

static void test_softmax_f16(void **state) {
  clattn_desc d = make_desc(CLATTN_DTYPE_F16, 1, 2, 3, 3, 77, 133, 40, 24);
  (void)state;
  check_desc(&d, 50);
  d = make_desc(CLATTN_DTYPE_F16, 0, 1, 8, 2, 96, 96, 64, 64);
  check_desc(&d, 51);
  d = make_desc(CLATTN_DTYPE_F16, 1, 1, 2, 2, 100, 37, 32, 32);
  check_desc(&d, 52);
}

static void test_softmax_f16_head_dims(void **state) {
  static const size_t dims[] = {1, 80, 256};
  size_t t;
  (void)state;
  for (t = 0; t < sizeof dims / sizeof dims[0]; t++) {
    clattn_desc d =
        make_desc(CLATTN_DTYPE_F16, (int)(t & 1), 1, 2, 1, 45, 90, dims[t], 0);
    check_desc(&d, 60 + t);
  }
}

static void test_softmax_long_sequence(void **state) {
  /* Long enough to cross many query and key tiles of any sensible size. */
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 1, 1100, 1100, 64, 64);
  (void)state;
  check_desc(&d, 70);
  d = make_desc(CLATTN_DTYPE_F32, 0, 1, 2, 2, 1030, 1030, 64, 64);
  check_desc(&d, 71);
}

static void test_softmax_large_scores(void **state) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 2, 300, 300, 64, 64);
  clattn_test_problem p;
  clattn_status st;
  size_t t;
  int ok;
  (void)state;
  clattn_test_problem_init(&p, &d, 80);
  for (t = 0; t < p.n.q; t++)
    p.q[t] *= 30.0f;
  for (t = 0; t < p.n.k; t++)
    p.k[t] *= 30.0f;
  clattn_test_problem_reference(&p);
  ok = 1;
  for (size_t s = 0; s < NSHAPES && ok; s++) {
    p.desc.tiles = shapes[s];
    st = clattn_test_problem_run_host(&p, ctx);
    ok = st == CLATTN_SUCCESS && compare(&p, TOL_LARGE_SCORES);
  }
  clattn_test_problem_free(&p);
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_true(ok);
}

static void test_softmax_lse_optional(void **state) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 2, 40, 60, 32, 32);
  clattn_test_problem p;
  clattn_plan_t plan = NULL;
  clattn_status st;
  int ok = 0;
  (void)state;
  clattn_test_problem_init(&p, &d, 90);
  st = clattn_plan_create(ctx, &d, &plan);
  if (st == CLATTN_SUCCESS)
    st = clattn_plan_run_host(plan, p.q, p.k, p.v, p.o, NULL);
  if (st == CLATTN_SUCCESS)
    ok = clattn_test_check("O", p.o, p.ref_o, p.n.o, TOL_F32);
  else
    print_error("%s: %s\n", clattn_status_name(st), clattn_context_error(ctx));
  clattn_plan_destroy(plan);
  clattn_test_problem_free(&p);
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_true(ok);
}

static void test_softmax_plan_reuse(void **state) {
  /* One plan, two different inputs: nothing of the first run may leak into
   * the second. */
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 1, 2, 1, 90, 120, 48, 48);
  clattn_test_problem a, b;
  clattn_plan_t plan = NULL;
  clattn_status st;
  int ok = 0;
  (void)state;
  clattn_test_problem_init(&a, &d, 100);
  clattn_test_problem_init(&b, &d, 101);
  st = clattn_plan_create(ctx, &d, &plan);
  if (st == CLATTN_SUCCESS)
    st = clattn_plan_run_host(plan, a.q, a.k, a.v, a.o, a.lse);
  if (st == CLATTN_SUCCESS)
    st = clattn_plan_run_host(plan, b.q, b.k, b.v, b.o, b.lse);
  if (st == CLATTN_SUCCESS)
    ok = compare(&a, TOL_F32) && compare(&b, TOL_F32);
  else
    print_error("%s: %s\n", clattn_status_name(st), clattn_context_error(ctx));
  clattn_plan_destroy(plan);
  clattn_test_problem_free(&a);
  clattn_test_problem_free(&b);
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_true(ok);
}

/* ---- clattn_plan_run with cl_mem buffers ------------------------------ */

typedef struct device_io {
  cl_mem q, k, v, o, lse;
  cl_event writes[3];
  void *q_host, *k_host, *v_host; /* what was written: floats or halves */
} device_io;

static void *to_storage(const float *x, size_t n, clattn_dtype dtype,
                        size_t *bytes) {
  size_t t;
  if (dtype == CLATTN_DTYPE_F16) {
    uint16_t *h = malloc((n ? n : 1) * sizeof *h);
    if (h)
      for (t = 0; t < n; t++)
        h[t] = clattn_test_float_to_half(x[t]);
    *bytes = n * sizeof *h;
    return h;
  } else {
    float *f = malloc((n ? n : 1) * sizeof *f);
    if (f)
      memcpy(f, x, n * sizeof *f);
    *bytes = n * sizeof *f;
    return f;
  }
}

static void from_storage(const void *src, float *x, size_t n,
                         clattn_dtype dtype) {
  size_t t;
  if (dtype == CLATTN_DTYPE_F16)
    for (t = 0; t < n; t++)
      x[t] = clattn_test_half_to_float(((const uint16_t *)src)[t]);
  else
    memcpy(x, src, n * sizeof *x);
}

static void device_io_release(device_io *io) {
  size_t t;
  for (t = 0; t < 3; t++)
    if (io->writes[t])
      clReleaseEvent(io->writes[t]);
  if (io->q)
    clReleaseMemObject(io->q);
  if (io->k)
    clReleaseMemObject(io->k);
  if (io->v)
    clReleaseMemObject(io->v);
  if (io->o)
    clReleaseMemObject(io->o);
  if (io->lse)
    clReleaseMemObject(io->lse);
  free(io->q_host);
  free(io->k_host);
  free(io->v_host);
  memset(io, 0, sizeof *io);
}

/* Creates the buffers and enqueues non-blocking writes of Q, K and V whose
 * events become the wait list. When `gate` is not NULL the writes themselves
 * wait for it, so nothing can run before the test releases it. */
static cl_int device_io_init(device_io *io, const clattn_test_problem *p,
                             clattn_context_t ctx, cl_event gate) {
  cl_context cl = clattn_context_cl(ctx);
  cl_command_queue queue = clattn_context_queue(ctx);
  size_t es = p->desc.dtype == CLATTN_DTYPE_F16 ? 2 : 4;
  size_t qb, kb, vb;
  cl_uint ngate = gate ? 1 : 0;
  const cl_event *gl = gate ? &gate : NULL;
  cl_int err = CL_SUCCESS;
  memset(io, 0, sizeof *io);
  io->q_host = to_storage(p->q, p->n.q, p->desc.dtype, &qb);
  io->k_host = to_storage(p->k, p->n.k, p->desc.dtype, &kb);
  io->v_host = to_storage(p->v, p->n.v, p->desc.dtype, &vb);
  if (!io->q_host || !io->k_host || !io->v_host)
    return CL_OUT_OF_HOST_MEMORY;
  io->q = clCreateBuffer(cl, CL_MEM_READ_ONLY, qb, NULL, &err);
  if (err == CL_SUCCESS)
    io->k = clCreateBuffer(cl, CL_MEM_READ_ONLY, kb, NULL, &err);
  if (err == CL_SUCCESS)
    io->v = clCreateBuffer(cl, CL_MEM_READ_ONLY, vb, NULL, &err);
  if (err == CL_SUCCESS)
    io->o = clCreateBuffer(cl, CL_MEM_WRITE_ONLY, p->n.o * es, NULL, &err);
  if (err == CL_SUCCESS && p->lse)
    io->lse = clCreateBuffer(cl, CL_MEM_WRITE_ONLY, p->n.lse * sizeof(float),
                             NULL, &err);
  if (err == CL_SUCCESS)
    err = clEnqueueWriteBuffer(queue, io->q, CL_FALSE, 0, qb, io->q_host, ngate,
                               gl, &io->writes[0]);
  if (err == CL_SUCCESS)
    err = clEnqueueWriteBuffer(queue, io->k, CL_FALSE, 0, kb, io->k_host, ngate,
                               gl, &io->writes[1]);
  if (err == CL_SUCCESS)
    err = clEnqueueWriteBuffer(queue, io->v, CL_FALSE, 0, vb, io->v_host, ngate,
                               gl, &io->writes[2]);
  return err;
}

/* Blocking reads of O and LSE, ordered after `done`. */
static cl_int device_io_read(device_io *io, clattn_test_problem *p,
                             clattn_context_t ctx, cl_event done) {
  cl_command_queue queue = clattn_context_queue(ctx);
  size_t es = p->desc.dtype == CLATTN_DTYPE_F16 ? 2 : 4;
  void *raw = malloc((p->n.o ? p->n.o : 1) * es);
  cl_int err;
  if (!raw)
    return CL_OUT_OF_HOST_MEMORY;
  err = clEnqueueReadBuffer(queue, io->o, CL_TRUE, 0, p->n.o * es, raw, 1,
                            &done, NULL);
  if (err == CL_SUCCESS)
    from_storage(raw, p->o, p->n.o, p->desc.dtype);
  if (err == CL_SUCCESS && p->lse)
    err = clEnqueueReadBuffer(queue, io->lse, CL_TRUE, 0,
                              p->n.lse * sizeof(float), p->lse, 1, &done, NULL);
  free(raw);
  return err;
}

static void check_buffers(const clattn_desc *desc, uint64_t seed) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_test_problem p;
  clattn_plan_t plan = NULL;
  device_io io;
  cl_event done = NULL;
  cl_int err, status = -1;
  clattn_status st = CLATTN_SUCCESS;
  int ok = 0;
  clattn_test_problem_init(&p, desc, seed);
  err = device_io_init(&io, &p, ctx, NULL);
  if (err == CL_SUCCESS) {
    st = clattn_plan_create(ctx, desc, &plan);
    if (st == CLATTN_SUCCESS)
      st = clattn_plan_run(plan, io.q, io.k, io.v, io.o, io.lse, 3, io.writes,
                           &done);
    if (st != CLATTN_SUCCESS)
      print_error("%s: %s\n", clattn_status_name(st),
                  clattn_context_error(ctx));
  }
  if (err == CL_SUCCESS && st == CLATTN_SUCCESS && done) {
    err = clWaitForEvents(1, &done);
    if (err == CL_SUCCESS)
      err = clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS,
                           sizeof status, &status, NULL);
    if (err == CL_SUCCESS)
      err = device_io_read(&io, &p, ctx, done);
    ok = err == CL_SUCCESS && status == CL_COMPLETE &&
         compare(&p, dtype_tol(desc->dtype));
  }
  if (!ok)
    describe(desc);
  if (done)
    clReleaseEvent(done);
  clattn_plan_destroy(plan);
  device_io_release(&io);
  clattn_test_problem_free(&p);
  assert_int_equal(err, CL_SUCCESS);
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_non_null(done);
  assert_int_equal(status, CL_COMPLETE);
  assert_true(ok);
}

static void test_softmax_run_buffers(void **state) {
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 1, 2, 4, 2, 70, 90, 32, 48);
  (void)state;
  for (size_t s = 0; s < NSHAPES; s++) {
    d.tiles = shapes[s];
    check_buffers(&d, 110);
  }
}

static void test_softmax_run_buffers_f16(void **state) {
  /* Half bits written by the test itself: checks the device reads and
   * writes binary16 as IEEE lays it out, not just that the host wrapper
   * round-trips. */
  clattn_desc d = make_desc(CLATTN_DTYPE_F16, 1, 1, 4, 4, 70, 90, 64, 64);
  (void)state;
  for (size_t s = 0; s < NSHAPES; s++) {
    d.tiles = shapes[s];
    check_buffers(&d, 111);
  }
}

static void test_softmax_run_waits_for_events(void **state) {
  /* The writes of Q, K and V are held back by a user event. If the plan
   * ignored its wait list it would read unwritten buffers, and its output
   * event would be able to complete before the gate opens. */
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = make_desc(CLATTN_DTYPE_F32, 0, 1, 2, 2, 64, 64, 32, 32);
  clattn_test_problem p;
  clattn_plan_t plan = NULL;
  device_io io;
  cl_event gate, done = NULL;
  cl_int err, before = CL_COMPLETE, after = -1;
  clattn_status st = CLATTN_SUCCESS;
  int ok = 0;
  (void)state;
  clattn_test_problem_init(&p, &d, 120);
  st = clattn_plan_create(ctx, &d, &plan);
  if (st != CLATTN_SUCCESS)
    print_error("%s: %s\n", clattn_status_name(st), clattn_context_error(ctx));
  assert_int_equal(st, CLATTN_SUCCESS);
  gate = clCreateUserEvent(clattn_context_cl(ctx), &err);
  assert_int_equal(err, CL_SUCCESS);
  /* A library that blocked on its wait list would hang here for ever; the
   * alarm turns that into a failure. */
  alarm(120);
  err = device_io_init(&io, &p, ctx, gate);
  if (err == CL_SUCCESS)
    st = clattn_plan_run(plan, io.q, io.k, io.v, io.o, io.lse, 3, io.writes,
                         &done);
  if (err == CL_SUCCESS && st == CLATTN_SUCCESS && done) {
    /* Give a wrongly unordered kernel time to finish. */
    struct timespec pause = {0, 100000000L};
    nanosleep(&pause, NULL);
    clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof before,
                   &before, NULL);
  }
  clSetUserEventStatus(gate, CL_COMPLETE);
  if (err == CL_SUCCESS && st == CLATTN_SUCCESS && done) {
    err = clWaitForEvents(1, &done);
    if (err == CL_SUCCESS)
      err = clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS,
                           sizeof after, &after, NULL);
    if (err == CL_SUCCESS)
      err = device_io_read(&io, &p, ctx, done);
    ok = err == CL_SUCCESS && compare(&p, TOL_F32);
  }
  alarm(0);
  if (st != CLATTN_SUCCESS)
    print_error("%s: %s\n", clattn_status_name(st), clattn_context_error(ctx));
  if (done)
    clReleaseEvent(done);
  clReleaseEvent(gate);
  clattn_plan_destroy(plan);
  device_io_release(&io);
  clattn_test_problem_free(&p);
  assert_int_equal(err, CL_SUCCESS);
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_non_null(done);
  assert_true(before != CL_COMPLETE);
  assert_int_equal(after, CL_COMPLETE);
  assert_true(ok);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_softmax_tiny),
      cmocka_unit_test(test_softmax_odd_shape),
      cmocka_unit_test(test_softmax_odd_shape_causal),
      cmocka_unit_test(test_softmax_more_queries_than_keys),
      cmocka_unit_test(test_softmax_fewer_queries_than_keys),
      cmocka_unit_test(test_softmax_single_query),
      cmocka_unit_test(test_softmax_gqa),
      cmocka_unit_test(test_softmax_head_dims),
      cmocka_unit_test(test_softmax_dim_v_differs),
      cmocka_unit_test(test_softmax_custom_scale),
      cmocka_unit_test(test_softmax_f16),
      cmocka_unit_test(test_softmax_f16_head_dims),
      cmocka_unit_test(test_softmax_long_sequence),
      cmocka_unit_test(test_softmax_large_scores),
      cmocka_unit_test(test_softmax_lse_optional),
      cmocka_unit_test(test_softmax_plan_reuse),
      cmocka_unit_test(test_softmax_run_buffers),
      cmocka_unit_test(test_softmax_run_buffers_f16),
      cmocka_unit_test(test_softmax_run_waits_for_events),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
