/*
 * testutil.c - the helpers declared in testutil.h: random inputs, binary16
 * rounding done bit by bit (so it does not depend on the compiler having a
 * half type), error measures, and device and problem set-up for tests.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"

void clattn_test_sizes_get(const clattn_desc *desc, clattn_test_sizes *out) {
  size_t hkv = desc->heads_kv ? desc->heads_kv : desc->heads_q;
  size_t dv = desc->dim_v ? desc->dim_v : desc->dim;
  out->q = desc->batch * desc->heads_q * desc->seq_q * desc->dim;
  out->k = desc->batch * hkv * desc->seq_k * desc->dim;
  out->v = desc->batch * hkv * desc->seq_k * dv;
  out->o = desc->batch * desc->heads_q * desc->seq_q * dv;
  out->lse = desc->batch * desc->heads_q * desc->seq_q;
}

uint64_t clattn_test_rng_next(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* 53 random bits as a double in [0, 1). */
static double rng_unit(uint64_t *state) {
  return (double)(clattn_test_rng_next(state) >> 11) * 0x1p-53;
}

void clattn_test_fill_uniform(float *x, size_t n, uint64_t seed, float lo,
                              float hi) {
  uint64_t st = seed;
  size_t t;
  for (t = 0; t < n; t++)
    x[t] = (float)((double)lo + ((double)hi - (double)lo) * rng_unit(&st));
}

void clattn_test_fill_normal(float *x, size_t n, uint64_t seed, float mean,
                             float stddev) {
  uint64_t st = seed;
  size_t t;
  for (t = 0; t < n; t += 2) {
    /* 1 - u keeps the logarithm's argument in (0, 1]. */
    double r = sqrt(-2.0 * log(1.0 - rng_unit(&st)));
    double a = 6.283185307179586 * rng_unit(&st);
    x[t] = (float)((double)mean + (double)stddev * r * cos(a));
    if (t + 1 < n)
      x[t + 1] = (float)((double)mean + (double)stddev * r * sin(a));
  }
}

uint16_t clattn_test_float_to_half(float x) {
  uint32_t bits, sign, absx, h, rem;
  memcpy(&bits, &x, sizeof bits);
  sign = (bits >> 16) & 0x8000u;
  absx = bits & 0x7fffffffu;
  if (absx > 0x7f800000u) /* NaN: keep it quiet and keep the top payload */
    return (uint16_t)(sign | 0x7e00u | ((absx >> 13) & 0x3ffu));
  /* 65520 is halfway between 65504 and the next power of two; the tie goes
   * to the even code, which is infinity. */
  if (absx >= 0x477ff000u)
    return (uint16_t)(sign | 0x7c00u);
  if (absx < 0x38800000u) {
    /* Below 2^-14 the result is subnormal: count units of 2^-24. */
    uint32_t e = absx >> 23, m, shift, halfway;
    if (e < 102) /* below 2^-25, which itself ties to zero */
      return (uint16_t)sign;
    m = (absx & 0x7fffffu) | 0x800000u;
    shift = 126 - e;
    h = m >> shift;
    rem = m & ((1u << shift) - 1);
    halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1u)))
      h++;
    return (uint16_t)(sign | h);
  }
  /* Normal: rebias the exponent (127 -> 15) and round away 13 bits; a carry
   * out of the mantissa correctly bumps the exponent. */
  h = (absx - 0x38000000u) >> 13;
  rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
    h++;
  return (uint16_t)(sign | h);
}

float clattn_test_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
  float f;
  if (e == 0) {
    f = (float)m * 0x1p-24f;
    return sign ? -f : f;
  }
  if (e == 31)
    bits = sign | 0x7f800000u | (m << 13);
  else
    bits = sign | ((e + 112) << 23) | (m << 13);
  memcpy(&f, &bits, sizeof f);
  return f;
}

float clattn_test_round_half(float x) {
  return clattn_test_half_to_float(clattn_test_float_to_half(x));
}

void clattn_test_round_half_array(float *x, size_t n) {
  size_t t;
  for (t = 0; t < n; t++)
    x[t] = clattn_test_round_half(x[t]);
}

float clattn_test_round_bf16(float x) {
  if (!isfinite(x) || x == 0.0f)
    return x;
  int e = 0;
  double m = frexp((double)x, &e); /* 0.5 <= |m| < 1 */
  double r = ldexp(rint(ldexp(m, 8)), e - 8);
  return (float)r; /* beyond FLT_MAX the conversion gives infinity */
}

void clattn_test_round_to_dtype(float *x, size_t n, clattn_dtype dtype) {
  if (dtype == CLATTN_DTYPE_BF16)
    for (size_t t = 0; t < n; t++)
      x[t] = clattn_test_round_bf16(x[t]);
  if (dtype == CLATTN_DTYPE_F16)
    clattn_test_round_half_array(x, n);
}

double clattn_test_max_rel_err(const float *x, const double *ref, size_t n,
                               size_t *worst) {
  double scale = 0.0, max_err = 0.0;
  size_t t, at = 0;
  for (t = 0; t < n; t++)
    if (isfinite(ref[t]) && fabs(ref[t]) > scale)
      scale = fabs(ref[t]);
  if (scale < 1e-30)
    scale = 1e-30;
  for (t = 0; t < n; t++) {
    double xt = (double)x[t], err;
    if (!isfinite(ref[t]) || !isfinite(xt))
      err = xt == ref[t] ? 0.0 : INFINITY;
    else
      err = fabs(xt - ref[t]) / scale;
    if (err > max_err || (t == 0 && err == max_err)) {
      max_err = err;
      at = t;
    }
  }
  if (worst)
    *worst = at;
  return max_err;
}

int clattn_test_check(const char *what, const float *x, const double *ref,
                      size_t n, double tol) {
  size_t at = 0;
  double err = clattn_test_max_rel_err(x, ref, n, &at);
  if (err <= tol)
    return 1;
  print_error("%s: max relative error %.3g > %.3g at index %zu of %zu: got "
              "%.9g, reference %.9g\n",
              what, err, tol, at, n, n ? (double)x[at] : 0.0,
              n ? ref[at] : 0.0);
  return 0;
}

int clattn_test_device_or_skip(void) {
  cl_uint count = 0;
  const char *require = getenv("CLATTN_TEST_REQUIRE_DEVICE");
  clattn_status st = clattn_device_count(&count);
  if (st == CLATTN_SUCCESS && count > 0)
    return 1;
  if (require && strcmp(require, "1") == 0)
    fail_msg("no OpenCL device (%s, %u devices) and "
             "CLATTN_TEST_REQUIRE_DEVICE=1",
             clattn_status_name(st), (unsigned)count);
  skip();
  return 0;
}

clattn_context_t clattn_test_context_create(void) {
  clattn_context_t ctx = NULL;
  clattn_status st;
  clattn_test_device_or_skip();
  st = clattn_context_create(&ctx, NULL, 0);
  if (st != CLATTN_SUCCESS) {
    print_error("clattn_context_create: %s: %s\n", clattn_status_name(st),
                ctx ? clattn_context_error(ctx) : "(no context)");
    clattn_context_destroy(ctx);
    fail_msg("%s", "could not create a clattn context");
  }
  assert_non_null(ctx);
  return ctx;
}

static clattn_context_t g_shared_ctx;

clattn_context_t clattn_test_shared_context(void) {
  clattn_test_device_or_skip();
  if (!g_shared_ctx)
    g_shared_ctx = clattn_test_context_create();
  return g_shared_ctx;
}

int clattn_test_shared_teardown(void **state) {
  (void)state;
  clattn_context_destroy(g_shared_ctx);
  g_shared_ctx = NULL;
  return 0;
}

static void *test_alloc(size_t count, size_t size) {
  void *p = malloc((count ? count : 1) * size);
  if (!p)
    fail_msg("out of memory allocating %zu x %zu bytes", count, size);
  return p;
}

static void fill_nan(float *x, size_t n) {
  size_t t;
  for (t = 0; t < n; t++)
    x[t] = NAN;
}

void clattn_test_problem_init(clattn_test_problem *p, const clattn_desc *desc,
                              uint64_t seed) {
  int softmax = desc->variant == CLATTN_VARIANT_SOFTMAX;
  memset(p, 0, sizeof *p);
  p->desc = *desc;
  clattn_test_sizes_get(desc, &p->n);
  p->q = test_alloc(p->n.q, sizeof(float));
  p->k = test_alloc(p->n.k, sizeof(float));
  p->v = test_alloc(p->n.v, sizeof(float));
  p->o = test_alloc(p->n.o, sizeof(float));
  p->ref_o = test_alloc(p->n.o, sizeof(double));
  if (softmax) {
    p->lse = test_alloc(p->n.lse, sizeof(float));
    p->ref_lse = test_alloc(p->n.lse, sizeof(double));
  }
  /* Distinct seeds per tensor so Q and K are not the same numbers. */
  clattn_test_fill_normal(p->q, p->n.q, seed * 3 + 1, 0.0f, 1.0f);
  clattn_test_fill_normal(p->k, p->n.k, seed * 3 + 2, 0.0f, 1.0f);
  clattn_test_fill_normal(p->v, p->n.v, seed * 3 + 3, 0.0f, 1.0f);
  clattn_test_problem_reference(p);
}

void clattn_test_problem_reference(clattn_test_problem *p) {
  clattn_test_round_to_dtype(p->q, p->n.q, p->desc.dtype);
  clattn_test_round_to_dtype(p->k, p->n.k, p->desc.dtype);
  clattn_test_round_to_dtype(p->v, p->n.v, p->desc.dtype);
  clattn_ref_attention(&p->desc, p->q, p->k, p->v, p->ref_o, p->ref_lse);
  fill_nan(p->o, p->n.o);
  if (p->lse)
    fill_nan(p->lse, p->n.lse);
}

clattn_status clattn_test_problem_run_host(clattn_test_problem *p,
                                           clattn_context_t ctx) {
  clattn_plan_t plan = NULL;
  clattn_status st = clattn_plan_create(ctx, &p->desc, &plan);
  if (st != CLATTN_SUCCESS) {
    print_error("clattn_plan_create: %s: %s\n", clattn_status_name(st),
                clattn_context_error(ctx));
    clattn_plan_destroy(plan);
    return st;
  }
  st = clattn_plan_run_host(plan, p->q, p->k, p->v, p->o, p->lse);
  if (st != CLATTN_SUCCESS)
    print_error("clattn_plan_run_host: %s: %s\n", clattn_status_name(st),
                clattn_context_error(ctx));
  clattn_plan_destroy(plan);
  return st;
}

void clattn_test_problem_free(clattn_test_problem *p) {
  free(p->q);
  free(p->k);
  free(p->v);
  free(p->o);
  free(p->lse);
  free(p->ref_o);
  free(p->ref_lse);
  memset(p, 0, sizeof *p);
}

int clattn_test_check_empty_rows(const clattn_test_problem *p) {
  const clattn_desc *d = &p->desc;
  size_t dv = d->dim_v ? d->dim_v : d->dim;
  if (!d->causal || d->seq_q <= d->seq_k)
    return 1;
  size_t empty = d->seq_q - d->seq_k;
  for (size_t bh = 0; bh < d->batch * d->heads_q; bh++) {
    for (size_t i = 0; i < empty; i++) {
      for (size_t t = 0; t < dv; t++) {
        float x = p->o[(bh * d->seq_q + i) * dv + t];
        if (x != 0.0f) {
          print_error("row %zu sees no key but O[%zu] = %.9g\n", i, t,
                      (double)x);
          return 0;
        }
      }
    }
  }
  return 1;
}

int clattn_test_check_tiles(clattn_context_t ctx, clattn_desc desc,
                            uint64_t seed, double tol, const char *const *tiles,
                            size_t ntiles) {
  clattn_test_problem p;
  int all = 1;
  clattn_test_problem_init(&p, &desc, seed);
  for (size_t s = 0; s < ntiles; s++) {
    p.desc.tiles = tiles[s];
    clattn_status st = clattn_test_problem_run_host(&p, ctx);
    char what[64];
    snprintf(what, sizeof what, "%s O", clattn_variant_name(desc.variant));
    int ok = st == CLATTN_SUCCESS &&
             clattn_test_check(what, p.o, p.ref_o, p.n.o, tol) &&
             clattn_test_check_empty_rows(&p);
    if (!ok)
      print_error("  B=%zu Hq=%zu Hkv=%zu Nq=%zu Nk=%zu D=%zu Dv=%zu "
                  "causal=%d %s tiles=%s: %s %s\n",
                  desc.batch, desc.heads_q, desc.heads_kv, desc.seq_q,
                  desc.seq_k, desc.dim, desc.dim_v, desc.causal,
                  clattn_dtype_name(desc.dtype),
                  tiles[s] ? tiles[s] : "default", clattn_status_name(st),
                  st == CLATTN_SUCCESS ? "" : clattn_context_error(ctx));
    all &= ok;
  }
  clattn_test_problem_free(&p);
  return all;
}

clattn_desc clattn_test_desc(clattn_variant variant, clattn_dtype dtype,
                             int causal, size_t b, size_t hq, size_t hkv,
                             size_t nq, size_t nk, size_t d, size_t dv) {
  clattn_desc desc;
  clattn_desc_init(&desc, variant);
  desc.dtype = dtype;
  desc.causal = causal;
  desc.batch = b;
  desc.heads_q = hq;
  desc.heads_kv = hkv;
  desc.seq_q = nq;
  desc.seq_k = nk;
  desc.dim = d;
  desc.dim_v = dv;
  return desc;
}

float *clattn_test_alloc_f(size_t n) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  assert_non_null(x);
  return x;
}

double *clattn_test_alloc_d(size_t n) {
  double *x = malloc((n ? n : 1) * sizeof *x);
  assert_non_null(x);
  return x;
}

void clattn_test_fill_padding(float *x, size_t b, size_t heads, size_t n,
                              size_t from, size_t w, int dirty) {
  for (size_t h = 0; h < heads; h++)
    for (size_t i = from; i < n; i++)
      for (size_t t = 0; t < w; t++) {
        size_t e = ((b * heads + h) * n + i) * w + t;
        x[e] = !dirty       ? 0.0f
               : e % 3 == 0 ? NAN
               : e % 3 == 1 ? INFINITY
                            : -INFINITY;
      }
}
