/*
 * testutil.h - helpers shared by clattn's CMocka tests: seeded random
 * inputs, half-precision rounding, error measures against the double
 * reference, device discovery with skip, and a bundle that holds one
 * problem's inputs, outputs and reference.
 *
 * It includes the headers CMocka needs ahead of <cmocka.h>, so a test file
 * may include it alone.
 */
#ifndef CLATTN_TESTS_TESTUTIL_H
#define CLATTN_TESTS_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "clattn.h"

/* ---- Shapes ----------------------------------------------------------- */

/* Element counts of each tensor of a descriptor, with heads_kv = 0 and
 * dim_v = 0 resolved. lse is B * Hq * Nq whatever the variant. */
typedef struct clattn_test_sizes {
  size_t q, k, v, o, lse;
} clattn_test_sizes;

void clattn_test_sizes_get(const clattn_desc *desc, clattn_test_sizes *out);

/* ---- Random inputs ---------------------------------------------------- */

/* splitmix64: one 64-bit state, good enough statistics, and the same
 * sequence on every platform. */
uint64_t clattn_test_rng_next(uint64_t *state);
/* Uniform in [lo, hi). */
void clattn_test_fill_uniform(float *x, size_t n, uint64_t seed, float lo,
                              float hi);
/* Normal with the given mean and standard deviation (Box-Muller). */
void clattn_test_fill_normal(float *x, size_t n, uint64_t seed, float mean,
                             float stddev);

/* ---- Half precision --------------------------------------------------- */

/* IEEE binary16 bits of x, rounded to nearest even as IEEE 754 and
 * vstore_half (default rounding) do: subnormals kept, overflow to infinity,
 * NaN stays NaN (checked once against GCC _Float16 over all 2^32 inputs). */
uint16_t clattn_test_float_to_half(float x);
float clattn_test_half_to_float(uint16_t h);
/* x rounded to the nearest half and back. */
float clattn_test_round_half(float x);
void clattn_test_round_half_array(float *x, size_t n);
/* x rounded to the nearest bfloat16 (8 significant bits, ties to even) and
 * back, computed with frexp and rint rather than bit tricks, so that it
 * checks the library's conversions independently. Infinities and NaN pass
 * through; a float that rounds past the largest bfloat16 becomes infinity. */
float clattn_test_round_bf16(float x);
/* Rounds to what a device storing `dtype` holds: half for F16, bfloat16 for
 * BF16, nothing for F32. */
void clattn_test_round_to_dtype(float *x, size_t n, clattn_dtype dtype);

/* ---- Comparison ------------------------------------------------------- */

/* max_t |x_t - ref_t| / max(max_t |ref_t|, tiny) over the finite ref_t. An
 * infinite ref_t must be matched exactly (LSE of a row with no visible key
 * is -inf); a mismatch there, or a NaN, gives INFINITY. *worst (may be NULL)
 * receives the index of the largest error. */
double clattn_test_max_rel_err(const float *x, const double *ref, size_t n,
                               size_t *worst);
/* 1 when clattn_test_max_rel_err <= tol, else prints what, the error, the
 * worst index and both values there, and returns 0. */
int clattn_test_check(const char *what, const float *x, const double *ref,
                      size_t n, double tol);

/* ---- Devices ---------------------------------------------------------- */

/* Returns 1 when clattn sees at least one OpenCL device. Otherwise fails the
 * test when CLATTN_TEST_REQUIRE_DEVICE=1 and skips it when not; neither
 * returns. */
int clattn_test_device_or_skip(void);
/* A context on the device CLATTN_DEVICE names (the library reads it; NULL
 * selector), or the default device. Fails the test, printing the context's
 * message, when that does not work. */
clattn_context_t clattn_test_context_create(void);

/* One context shared by the tests of a file, created on first use so that a
 * machine without a device skips each test instead of failing the group
 * set-up; clattn_test_shared_teardown is the group teardown that frees it. */
clattn_context_t clattn_test_shared_context(void);
int clattn_test_shared_teardown(void **state);

/* ---- Memory ----------------------------------------------------------- */

/* malloc of n floats or doubles (at least one), failing the test when
 * memory runs out. */
float *clattn_test_alloc_f(size_t n);
double *clattn_test_alloc_d(size_t n);

/* Sets rows [from, n) of each of `heads` (batch b) in x [B, heads, n, w] to
 * NaN, +inf and -inf in turn (padding a kernel must never read), or to 0
 * when dirty is 0. */
void clattn_test_fill_padding(float *x, size_t b, size_t heads, size_t n,
                              size_t from, size_t w, int dirty);

/* ---- One problem ------------------------------------------------------ */

typedef struct clattn_test_problem {
  clattn_desc desc;
  clattn_test_sizes n;
  float *q, *k, *v; /* inputs, already rounded to desc.dtype */
  float *o, *lse;   /* the library's outputs, NaN until it writes them */
  double *ref_o;    /* reference output */
  double *ref_lse;  /* reference LSE, softmax only (else NULL) */
} clattn_test_problem;

/* Allocates every array (failing the test if memory runs out), fills q, k
 * and v from N(0, 1) with seeds derived from `seed`, and computes the
 * reference with clattn_test_problem_reference(). lse and ref_lse exist only
 * for softmax. */
void clattn_test_problem_init(clattn_test_problem *p, const clattn_desc *desc,
                              uint64_t seed);
/* Rounds q, k and v to desc.dtype, recomputes ref_o (and ref_lse), and
 * resets o and lse to NaN. Call it again after changing the inputs. */
void clattn_test_problem_reference(clattn_test_problem *p);
/* Plans, runs with clattn_plan_run_host (lse included when it exists) and
 * destroys the plan; returns the first failing status, printing it with the
 * context's message. */
clattn_status clattn_test_problem_run_host(clattn_test_problem *p,
                                           clattn_context_t ctx);
void clattn_test_problem_free(clattn_test_problem *p);

/* A descriptor of the variant with the given storage, masking and shapes
 * (heads_kv and dim_v may be 0 for their defaults). */
clattn_desc clattn_test_desc(clattn_variant variant, clattn_dtype dtype,
                             int causal, size_t b, size_t hq, size_t hkv,
                             size_t nq, size_t nk, size_t d, size_t dv);

/* Causal rows that see no key (the first Nq - Nk when Nq > Nk) must be
 * exactly 0 in every variant. Returns 1 when they are. */
int clattn_test_check_empty_rows(const clattn_test_problem *p);

/* Runs desc once with each tile spec of `tiles` (an entry may be NULL: the
 * device's own choice) on inputs from `seed`, and checks O against the
 * reference within tol and the empty rows; prints the case on a failure.
 * Returns 1 when every run agrees. */
int clattn_test_check_tiles(clattn_context_t ctx, clattn_desc desc,
                            uint64_t seed, double tol, const char *const *tiles,
                            size_t ntiles);

#endif /* CLATTN_TESTS_TESTUTIL_H */
