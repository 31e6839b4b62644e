/*
 * test_merge.c - clattn_merge: partial softmax attentions over disjoint key
 * ranges merged by their LSE must equal attention over the whole range.
 *
 * Two sources of parts: plans run on slices of K and V (the way a caller
 * splits work over devices), and partial results computed in double here,
 * which also cover causal masks and rows that a part never saw (LSE -inf,
 * O left as NaN to prove it carries no weight).
 */
#include "reference.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parts are float32 or f16 values of float computations: f32 keeps ~1e-6;
 * f16 parts carry half rounding (2^-11 relative) into a weighted mean. */
#define TOL_F32 1e-5
#define TOL_F16 2e-2
#define TOL_LSE 1e-5

/* Cut points 0 = c[0] < c[1] < ... < c[parts] = nk, spread unevenly. */
static void cuts(size_t nk, size_t parts, uint64_t seed, size_t *c) {
  c[0] = 0;
  c[parts] = nk;
  for (size_t p = 1; p < parts; p++) {
    size_t lo = c[p - 1] + 1, hi = nk - (parts - p);
    c[p] = lo + (size_t)(clattn_test_rng_next(&seed) % (hi - lo + 1));
  }
}

/* Copies keys [s, e) of every (batch, kv head) of x [B, Hkv, Nk, w]. */
static float *slice_keys(const float *x, size_t bh, size_t nk, size_t w,
                         size_t s, size_t e) {
  float *out = clattn_test_alloc_f(bh * (e - s) * w);
  for (size_t r = 0; r < bh; r++)
    memcpy(out + r * (e - s) * w, x + (r * nk + s) * w,
           (e - s) * w * sizeof *x);
  return out;
}

/* Softmax attention of the keys [s, e) alone, in double, with the full
 * problem's causal alignment: lse [rows] and o [rows, dv]; a row that sees no
 * key of the range gets lse -inf and o NaN. */
static void partial_ref(const clattn_desc *d, const float *q, const float *k,
                        const float *v, size_t s, size_t e, double *lse,
                        double *o) {
  size_t hkv = d->heads_kv ? d->heads_kv : d->heads_q;
  size_t dv = d->dim_v ? d->dim_v : d->dim;
  double scale = d->scale > 0 ? d->scale : 1.0 / sqrt((double)d->dim);
  double *sc = clattn_test_alloc_d(d->seq_k);
  for (size_t b = 0; b < d->batch; b++)
    for (size_t h = 0; h < d->heads_q; h++)
      for (size_t i = 0; i < d->seq_q; i++) {
        size_t row = (b * d->heads_q + h) * d->seq_q + i;
        size_t kh = b * hkv + h / (d->heads_q / hkv);
        const float *qi = q + row * d->dim;
        double mx = -INFINITY;
        for (size_t j = s; j < e; j++) {
          sc[j] = -INFINITY;
          if (d->causal &&
              (double)j > (double)i + (double)d->seq_k - (double)d->seq_q)
            continue;
          double acc = 0;
          for (size_t t = 0; t < d->dim; t++)
            acc += (double)qi[t] * k[(kh * d->seq_k + j) * d->dim + t];
          sc[j] = acc * scale;
          mx = fmax(mx, sc[j]);
        }
        double *oi = o + row * dv;
        if (mx == -INFINITY) {
          lse[row] = -INFINITY;
          for (size_t t = 0; t < dv; t++)
            oi[t] = NAN;
          continue;
        }
        double l = 0;
        for (size_t t = 0; t < dv; t++)
          oi[t] = 0;
        for (size_t j = s; j < e; j++) {
          if (sc[j] == -INFINITY)
            continue;
          double w = exp(sc[j] - mx);
          l += w;
          for (size_t t = 0; t < dv; t++)
            oi[t] += w * v[(kh * d->seq_k + j) * dv + t];
        }
        for (size_t t = 0; t < dv; t++)
          oi[t] /= l;
        lse[row] = mx + log(l);
      }
  free(sc);
}

/* The full problem's reference, and the merge of `parts` double-precision
 * partial results over uneven key ranges, compared. */
static void check_ref_parts(clattn_desc d, size_t parts, uint64_t seed) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_test_problem pr;
  clattn_test_problem_init(&pr, &d, seed);
  size_t dv = d.dim_v ? d.dim_v : d.dim, rows = pr.n.lse;
  size_t *c = malloc((parts + 1) * sizeof *c);
  assert_non_null(c);
  cuts(d.seq_k, parts, seed ^ 0x5eedu, c);
  double *lp = clattn_test_alloc_d(parts * rows),
         *op = clattn_test_alloc_d(parts * rows * dv);
  float *lpf = clattn_test_alloc_f(parts * rows),
        *opf = clattn_test_alloc_f(parts * rows * dv);
  for (size_t p = 0; p < parts; p++)
    partial_ref(&d, pr.q, pr.k, pr.v, c[p], c[p + 1], lp + p * rows,
                op + p * rows * dv);
  for (size_t t = 0; t < parts * rows; t++)
    lpf[t] = (float)lp[t];
  for (size_t t = 0; t < parts * rows * dv; t++)
    opf[t] = (float)op[t];
  clattn_test_round_to_dtype(opf, parts * rows * dv, d.dtype);
  assert_int_equal(
      clattn_merge_host(ctx, d.dtype, parts, rows, dv, opf, lpf, pr.o, pr.lse),
      CLATTN_SUCCESS);
  double tol = d.dtype == CLATTN_DTYPE_F16 ? TOL_F16 : TOL_F32;
  if (!clattn_test_check("merged O", pr.o, pr.ref_o, pr.n.o, tol) ||
      !clattn_test_check("merged LSE", pr.lse, pr.ref_lse, rows, TOL_LSE))
    fail_msg("parts=%zu Nq=%zu Nk=%zu causal=%d", parts, d.seq_q, d.seq_k,
             d.causal);
  /* Rows that no key reaches: exactly 0 and -inf, as one run gives. */
  for (size_t r = 0; r < rows; r++) {
    if (!isinf(pr.ref_lse[r]))
      continue;
    assert_true(isinf(pr.lse[r]) && pr.lse[r] < 0);
    for (size_t t = 0; t < dv; t++)
      assert_true(pr.o[r * dv + t] == 0.0f);
  }
  free(c);
  free(lp);
  free(op);
  free(lpf);
  free(opf);
  clattn_test_problem_free(&pr);
}

static void test_merge_reference_parts(void **state) {
  (void)state;
  static const size_t counts[] = {2, 3, 5, 16};
  for (size_t a = 0; a < 4; a++) {
    check_ref_parts(clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32,
                                     0, 2, 4, 2, 37, 133, 40, 24),
                    counts[a], 10 + a);
    /* Causal with Nq > Nk: the first rows see no key at all, and the
     * later key ranges are invisible to the earlier rows. */
    check_ref_parts(clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32,
                                     1, 1, 3, 1, 45, 31, 17, 9),
                    counts[a], 20 + a);
  }
}

static void test_merge_f16(void **state) {
  (void)state;
  check_ref_parts(clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F16, 1,
                                   1, 2, 2, 33, 70, 24, 40),
                  4, 30);
}

/* Plans run on slices of K and V, merged, against one plan over all keys. */
static void test_merge_split_plans(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = clattn_test_desc(CLATTN_VARIANT_SOFTMAX, CLATTN_DTYPE_F32, 0,
                                   1, 4, 2, 29, 101, 40, 24);
  clattn_test_problem pr;
  clattn_test_problem_init(&pr, &d, 40);
  size_t dv = 24, rows = pr.n.lse, bh = d.batch * d.heads_kv;
  assert_int_equal(clattn_test_problem_run_host(&pr, ctx), CLATTN_SUCCESS);
  for (size_t parts = 2; parts <= 16; parts *= 2) {
    size_t c[17];
    cuts(d.seq_k, parts, 41 + parts, c);
    float *op = clattn_test_alloc_f(parts * rows * dv),
          *lp = clattn_test_alloc_f(parts * rows);
    for (size_t p = 0; p < parts; p++) {
      clattn_desc dp = d;
      dp.seq_k = c[p + 1] - c[p];
      float *kp = slice_keys(pr.k, bh, d.seq_k, d.dim, c[p], c[p + 1]);
      float *vp = slice_keys(pr.v, bh, d.seq_k, dv, c[p], c[p + 1]);
      clattn_plan_t plan = NULL;
      assert_int_equal(clattn_plan_create(ctx, &dp, &plan), CLATTN_SUCCESS);
      assert_int_equal(clattn_plan_run_host(plan, pr.q, kp, vp,
                                            op + p * rows * dv, lp + p * rows),
                       CLATTN_SUCCESS);
      clattn_plan_destroy(plan);
      free(kp);
      free(vp);
    }
    float *o = clattn_test_alloc_f(rows * dv), *l = clattn_test_alloc_f(rows);
    assert_int_equal(
        clattn_merge_host(ctx, d.dtype, parts, rows, dv, op, lp, o, l),
        CLATTN_SUCCESS);
    if (!clattn_test_check("split O", o, pr.ref_o, rows * dv, TOL_F32) ||
        !clattn_test_check("split LSE", l, pr.ref_lse, rows, TOL_LSE))
      fail_msg("parts=%zu", parts);
    free(op);
    free(lp);
    free(o);
    free(l);
  }
  clattn_test_problem_free(&pr);
}

/* A part that saw nothing (LSE -inf) is ignored even when its O is NaN; when
 * no part saw a row, the row is 0 with LSE -inf; a part alone is itself. */
static void test_merge_empty_parts(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  const size_t rows = 3, dv = 5;
  float op[3 * 3 * 5], lp[3 * 3], o[3 * 5], l[3];
  for (size_t t = 0; t < 3 * rows * dv; t++)
    op[t] = (float)t * 0.25f - 3.0f;
  for (size_t r = 0; r < rows; r++) {
    lp[0 * rows + r] = r == 2 ? -INFINITY : 1.5f;
    lp[1 * rows + r] = -INFINITY;
    lp[2 * rows + r] = r == 0 ? 0.5f : -INFINITY;
  }
  for (size_t t = 0; t < dv; t++) {
    op[(1 * rows + 0) * dv + t] = NAN;
    op[(0 * rows + 2) * dv + t] = NAN;
  }
  assert_int_equal(
      clattn_merge_host(ctx, CLATTN_DTYPE_F32, 3, rows, dv, op, lp, o, l),
      CLATTN_SUCCESS);
  /* Row 0: parts 0 and 2 with weights e^1.5 and e^0.5. */
  double w0 = exp(1.5), w2 = exp(0.5);
  for (size_t t = 0; t < dv; t++) {
    double want = (w0 * op[t] + w2 * op[(2 * rows) * dv + t]) / (w0 + w2);
    assert_true(fabs(o[t] - want) <= 1e-5 * fabs(want) + 1e-6);
  }
  assert_true(fabs(l[0] - log(w0 + w2)) < 1e-5);
  /* Row 1: part 0 alone. */
  for (size_t t = 0; t < dv; t++)
    assert_true(o[dv + t] == op[(0 * rows + 1) * dv + t]);
  assert_true(l[1] == 1.5f);
  /* Row 2: no part. */
  for (size_t t = 0; t < dv; t++)
    assert_true(o[2 * dv + t] == 0.0f);
  assert_true(isinf(l[2]) && l[2] < 0);
}

static void test_merge_bad_input(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_shared_context();
  float op[8] = {0}, lp[4] = {0}, o[4];
  assert_int_equal(
      clattn_merge_host(NULL, CLATTN_DTYPE_F32, 1, 1, 1, op, lp, o, NULL),
      CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(
      clattn_merge_host(ctx, CLATTN_DTYPE_F32, 1, 1, 1, NULL, lp, o, NULL),
      CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(
      clattn_merge_host(ctx, CLATTN_DTYPE_F32, 0, 1, 1, op, lp, o, NULL),
      CLATTN_ERROR_INVALID_VALUE);
  assert_non_null(strstr(clattn_context_error(ctx), "parts"));
  assert_int_equal(
      clattn_merge_host(ctx, CLATTN_DTYPE_F32, 1, 0, 1, op, lp, o, NULL),
      CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(
      clattn_merge_host(ctx, CLATTN_DTYPE_F32, 1, 1, 257, op, lp, o, NULL),
      CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(
      clattn_merge_host(ctx, (clattn_dtype)7, 1, 1, 1, op, lp, o, NULL),
      CLATTN_ERROR_INVALID_VALUE);
  /* Sizes whose byte counts wrap around. */
  assert_int_equal(clattn_merge(ctx, CLATTN_DTYPE_F32, (size_t)1 << 31,
                                (size_t)1 << 31, 256, NULL, NULL, NULL, NULL, 0,
                                NULL, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  cl_int err = CL_SUCCESS;
  cl_mem small =
      clCreateBuffer(clattn_context_cl(ctx), CL_MEM_READ_WRITE, 16, NULL, &err);
  assert_int_equal(err, CL_SUCCESS);
  assert_int_equal(clattn_merge(ctx, CLATTN_DTYPE_F32, 4, (size_t)1 << 61, 256,
                                small, small, small, NULL, 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_non_null(strstr(clattn_context_error(ctx), "overflow"));
  /* 2 parts of 2 rows of 2 floats need 32 bytes. */
  assert_int_equal(clattn_merge(ctx, CLATTN_DTYPE_F32, 2, 2, 2, small, small,
                                small, NULL, 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_BUFFER_SIZE);
  assert_non_null(strstr(clattn_context_error(ctx), "o_parts"));
  assert_int_equal(clattn_merge(ctx, CLATTN_DTYPE_F32, 1, 1, 1, small, small,
                                small, NULL, 1, NULL, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  clReleaseMemObject(small);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_merge_reference_parts),
      cmocka_unit_test(test_merge_f16),
      cmocka_unit_test(test_merge_split_plans),
      cmocka_unit_test(test_merge_empty_parts),
      cmocka_unit_test(test_merge_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
