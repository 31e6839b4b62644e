/*
 * test_decode.c - the decode family (split-KV softmax and sigmoid for few
 * query rows, cl/decode.cl) against the float64 reference: 1 to 16 queries
 * against long and odd key counts, grouped heads, head dims that are not
 * powers of two, causal masking with rows that see no key, every storage
 * dtype, both kernels (work-items with vectors, work-groups with local
 * memory) and forced split counts; over a million keys; the score pipeline
 * and per-sequence lengths, NaN and infinities in the padding giving what
 * zeros give, bit for bit; which plans choose decode; tile validation,
 * workspace size and the tuner's candidates.
 *
 * --tiny shrinks the shapes so that the kernels run under Oclgrind.
 */
#include "reference.h"
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
 * with a block that is not a multiple of its group. The forced specs name
 * every compile-time tile (ROWS included, which the plan would derive from
 * Nq and the group size), so that the cases of one dtype and head dims share
 * their programs; SPLITS is a run-time argument, so the two work-item specs
 * are one program. ROWS = 3 and 5 leave the last row group of most cases
 * partly empty. */
static const char *const full_specs[] = {
    NULL,
    "SHAPE=decode,WG=1,SPLITS=7,BLOCK_N=16,ROWS=3",
    "SHAPE=decode,WG=1,SPLITS=1,BLOCK_N=16,ROWS=3",
    "SHAPE=decode,WG=16,BLOCK_N=24,SPLITS=5,VEC=4,ROWS=5",
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
  /* The tiles of full_specs (each plan builds its program; these are
   * built for the cases already), with other split counts. */
  const struct {
    const char *tiles;
    size_t splits;
  } sizes[] = {{"SHAPE=decode,WG=1,SPLITS=1,BLOCK_N=16,ROWS=3", 1},
               {"SHAPE=decode,WG=1,SPLITS=6,BLOCK_N=16,ROWS=3", 6},
               {"SHAPE=decode,WG=16,BLOCK_N=24,SPLITS=5,VEC=4,ROWS=5", 5}};
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
  d.tiles = "SHAPE=decode,WG=1,BLOCK_N=16,SPLITS=4000,ROWS=3";
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

/* ---- The score pipeline ---------------------------------------------- */

/* Pipeline features of a case, alone or combined. */
enum {
  P_LENS = 1 << 0,   /* per-sequence lengths */
  P_CAUSAL = 1 << 1, /* causal (window_right = 0) */
  P_WIN = 1 << 2,    /* sliding window */
  P_CAP = 1 << 3,    /* softcap */
  P_ALIBI = 1 << 4,  /* ALiBi slopes */
  P_SMOD = 1 << 5,   /* score_mod */
  P_MMOD = 1 << 6,   /* mask_mod */
  P_BIAS = 1 << 7,   /* sigmoid: a given bias instead of -ln(Lk) */
  P_NOB = 1 << 8,    /* mods that ignore b (a sequence run alone is b = 0) */
  P_ALL = P_LENS | P_CAUSAL | P_WIN | P_CAP | P_ALIBI | P_SMOD | P_MMOD
};

/* The user mods as OpenCL C and their C twins for the reference. */
static const char score_mod_cl[] =
    "score * 0.75f + 0.05f * (float)(h - b) - 0.01f * (float)(j % 7) + "
    "0.02f * (float)(i % 3)";
static double score_mod_c(double score, int b, int h, int i, int j) {
  return score * 0.75 + 0.05 * (double)(h - b) - 0.01 * (double)(j % 7) +
         0.02 * (double)(i % 3);
}
static const char mask_mod_cl[] = "(i + 2 * j + h + b) % 5 != 0";
static int mask_mod_c(int b, int h, int i, int j) {
  return (i + 2 * j + h + b) % 5 != 0;
}
static const char score_mod_nob_cl[] =
    "score * 0.75f + 0.05f * (float)h - 0.01f * (float)(j % 7)";
static double score_mod_nob_c(double score, int b, int h, int i, int j) {
  (void)b;
  (void)i;
  return score * 0.75 + 0.05 * (double)h - 0.01 * (double)(j % 7);
}
static const char mask_mod_nob_cl[] = "(i + 2 * j + h) % 5 != 0";
static int mask_mod_nob_c(int b, int h, int i, int j) {
  (void)b;
  return (i + 2 * j + h) % 5 != 0;
}

typedef struct pipe_case {
  clattn_dtype dtype;
  int feats;
  size_t b, hq, hkv, nq, nk, d, dv;
} pipe_case;

/* One pipeline problem: inputs, the descriptor with its features, the
 * lengths and the reference. */
typedef struct pipe_problem {
  clattn_test_problem p;
  clattn_ref_extra extra;
  int lens_q[4], lens_k[4];
  float slopes[16];
} pipe_problem;

/* Lengths of sequence b of B: the first is full, the others shorter (odd,
 * fewer keys than queries in the last one, so that its early causal rows
 * see no key). */
static void pipe_lengths(size_t b, size_t nq, size_t nk, int *lq, int *lk) {
  static const double fq[] = {1.0, 0.5, 1.0, 0.75};
  static const double fk[] = {1.0, 0.6, 0.0, 0.3};
  *lq = b ? (int)((double)nq * fq[b % 4] + 0.5) : (int)nq;
  if (*lq < 1)
    *lq = 1;
  *lk = b == 2 ? 7 : b ? ((int)((double)nk * fk[b % 4]) | 1) : (int)nk;
}

static void pipe_problem_init(pipe_problem *pp, clattn_variant variant,
                              const pipe_case *c, uint64_t seed) {
  clattn_desc d =
      clattn_test_desc(variant, c->dtype, !!(c->feats & P_CAUSAL), c->b, c->hq,
                       c->hkv, c->nq, c->nk, c->d, c->dv);
  memset(&pp->extra, 0, sizeof pp->extra);
  if (c->feats & P_WIN) {
    d.window_left = (int)(c->nk / 7);
    d.window_right = (c->feats & P_CAUSAL) ? -1 : (int)(c->nk / 90 + 1);
  }
  if (c->feats & P_CAP)
    d.softcap = 1.5f;
  if (c->feats & P_ALIBI) {
    for (size_t h = 0; h < c->hq && h < 16; h++)
      pp->slopes[h] = powf(2.0f, -8.0f * (float)(h + 1) / (float)c->hq);
    d.alibi_slopes = pp->slopes;
  }
  int nob = !!(c->feats & P_NOB);
  if (c->feats & P_SMOD) {
    d.score_mod = nob ? score_mod_nob_cl : score_mod_cl;
    pp->extra.score_mod = nob ? score_mod_nob_c : score_mod_c;
  }
  if (c->feats & P_MMOD) {
    d.mask_mod = nob ? mask_mod_nob_cl : mask_mod_cl;
    pp->extra.mask_mod = nob ? mask_mod_nob_c : mask_mod_c;
  }
  if (variant == CLATTN_VARIANT_SIGMOID && (c->feats & P_BIAS)) {
    d.has_bias = 1;
    d.bias = -4.0f;
  }
  if (c->feats & P_LENS) {
    for (size_t b = 0; b < c->b && b < 4; b++)
      pipe_lengths(b, c->nq, c->nk, &pp->lens_q[b], &pp->lens_k[b]);
    pp->extra.lens_q = pp->lens_q;
    pp->extra.lens_k = pp->lens_k;
  }
  clattn_test_problem_init(&pp->p, &d, seed);
  clattn_ref_attention_ex(&pp->p.desc, &pp->extra, pp->p.q, pp->p.k, pp->p.v,
                          pp->p.ref_o, pp->p.ref_lse);
}

/* Rows that see no key, by the lengths or by the reference's LSE: O
 * exactly 0 (and LSE exactly -inf). */
static int pipe_check_empty(const pipe_problem *pp) {
  const clattn_desc *d = &pp->p.desc;
  for (size_t r = 0; r < pp->p.n.lse; r++) {
    size_t b = r / (d->heads_q * d->seq_q), i = r % d->seq_q;
    int none = pp->extra.lens_q &&
               ((int)i >= pp->extra.lens_q[b] || pp->extra.lens_k[b] == 0);
    if (pp->p.ref_lse && isinf(pp->p.ref_lse[r]))
      none = 1;
    if (!none)
      continue;
    if (pp->p.lse && !(isinf(pp->p.lse[r]) && pp->p.lse[r] < 0)) {
      print_error("row %zu sees no key: LSE %.9g, want -inf\n", r,
                  (double)pp->p.lse[r]);
      return 0;
    }
    for (size_t t = 0; t < d->dim_v; t++) {
      if (pp->p.o[r * d->dim_v + t] != 0.0f) {
        print_error("row %zu sees no key: O[%zu] = %.9g, want 0\n", r, t,
                    (double)pp->p.o[r * d->dim_v + t]);
        return 0;
      }
    }
  }
  return 1;
}

/* Runs pp with tile spec `spec` (the plan must be a decode plan) and its
 * lengths; O (and LSE) are left in pp->p. */
static clattn_status pipe_run(pipe_problem *pp, const char *spec, char *line,
                              size_t size) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc desc = pp->p.desc;
  desc.tiles = spec;
  clattn_plan_t plan = NULL;
  line[0] = '\0';
  clattn_status st = clattn_plan_create(ctx, &desc, &plan);
  if (st == CLATTN_SUCCESS) {
    clattn_plan_describe(plan, line, size);
    for (size_t t = 0; t < pp->p.n.o; t++)
      pp->p.o[t] = NAN;
    st = clattn_plan_run_host_varlen(plan, pp->p.q, pp->p.k, pp->p.v, pp->p.o,
                                     pp->p.lse, pp->extra.lens_q,
                                     pp->extra.lens_k);
    /* Not a decode plan, or kernel build warnings (the line shows them
     * when the program was built here rather than read from the cache). */
    if (st == CLATTN_SUCCESS &&
        (!strstr(line, "shape=decode") || strstr(line, "warning")))
      st = CLATTN_ERROR_INVALID_DESCRIPTOR; /* reported with the line */
  }
  clattn_plan_destroy(plan);
  return st;
}

static void pipe_print(const pipe_problem *pp, const char *spec,
                       clattn_status st, const char *line) {
  const clattn_desc *d = &pp->p.desc;
  char lens[96] = "";
  if (pp->extra.lens_q)
    for (size_t b = 0; b < d->batch; b++) {
      size_t used = strlen(lens);
      snprintf(lens + used, sizeof lens - used, " %d/%d", pp->lens_q[b],
               pp->lens_k[b]);
    }
  print_error(
      "  %s %s B=%zu Hq=%zu Hkv=%zu Nq=%zu Nk=%zu D=%zu Dv=%zu "
      "causal=%d window=%d,%d softcap=%g alibi=%d score_mod=%s "
      "mask_mod=%s lens Lq/Lk:%s tiles=%s: %s %s [%s]\n",
      clattn_variant_name(d->variant), clattn_dtype_name(d->dtype), d->batch,
      d->heads_q, d->heads_kv, d->seq_q, d->seq_k, d->dim, d->dim_v, d->causal,
      d->window_left, d->window_right, (double)d->softcap,
      d->alibi_slopes != NULL, d->score_mod ? d->score_mod : "-",
      d->mask_mod ? d->mask_mod : "-", lens[0] ? lens : " full",
      spec ? spec : "default", clattn_status_name(st),
      st == CLATTN_SUCCESS ? ""
                           : clattn_context_error(clattn_test_shared_context()),
      line);
}

/* Runs pp with each spec and checks O and LSE against the reference and
 * the rows that see no key. */
static int pipe_check_specs(pipe_problem *pp, const char *const *specs,
                            size_t nspecs) {
  int all = 1;
  for (size_t s = 0; s < nspecs; s++) {
    char line[512];
    clattn_status st = pipe_run(pp, specs[s], line, sizeof line);
    int ok = st == CLATTN_SUCCESS &&
             clattn_test_check("O", pp->p.o, pp->p.ref_o, pp->p.n.o,
                               tol_of(pp->p.desc.dtype)) &&
             (!pp->p.lse || clattn_test_check("LSE", pp->p.lse, pp->p.ref_lse,
                                              pp->p.n.lse, TOL_LSE)) &&
             pipe_check_empty(pp);
    if (!ok)
      pipe_print(pp, specs[s], st, line);
    all &= ok;
  }
  return all;
}

/* Each feature alone, then all of them together, over every dtype, Nq of
 * 1, 5 and 16, odd key counts (several splits of 512 or more keys by
 * default), 4 query heads per kv head, D = 40 with Dv = 24 and D = Dv =
 * 128. The window is Nk / 7 keys back (Nk / 90 + 1 ahead when not
 * causal), so most splits of a row group see no key; lengths include a sequence
 * of 7 keys whose first causal rows see none. Every case runs the forced
 * specs (both kernels, split and not, partial row groups); the plan's own
 * tiles, a program of their own per case, run with all the features at
 * once, in every dtype and both head dims. */
static const pipe_case pipe_cases[] = {
    {CLATTN_DTYPE_F32, P_LENS, 3, 8, 2, 5, 2001, 40, 24},
    {CLATTN_DTYPE_F16, P_LENS | P_CAUSAL, 3, 8, 2, 16, 1999, 128, 128},
    {CLATTN_DTYPE_BF16, P_WIN, 1, 8, 2, 1, 3001, 40, 24},
    {CLATTN_DTYPE_F32, P_WIN | P_CAUSAL, 1, 8, 2, 16, 1001, 128, 128},
    {CLATTN_DTYPE_F16, P_CAP, 1, 8, 2, 5, 1501, 40, 24},
    {CLATTN_DTYPE_BF16, P_ALIBI | P_CAUSAL, 1, 8, 2, 16, 2999, 40, 24},
    {CLATTN_DTYPE_F32, P_SMOD, 1, 8, 2, 1, 2001, 128, 128},
    {CLATTN_DTYPE_F16, P_MMOD, 2, 8, 2, 16, 1999, 40, 24},
    {CLATTN_DTYPE_F32, P_LENS | P_BIAS, 3, 8, 2, 16, 1001, 40, 24},
    {CLATTN_DTYPE_F32, P_ALL, 3, 8, 2, 16, 2501, 40, 24},
    {CLATTN_DTYPE_BF16, P_ALL, 2, 8, 2, 5, 1999, 128, 128},
    {CLATTN_DTYPE_F16, P_ALL | P_BIAS, 3, 8, 2, 1, 3001, 40, 24},
};
static const pipe_case pipe_tiny_cases[] = {
    {CLATTN_DTYPE_F32, P_ALL, 3, 4, 2, 3, 29, 5, 3},
    {CLATTN_DTYPE_F16, P_LENS | P_WIN | P_CAP | P_ALIBI, 3, 2, 1, 2, 23, 8, 8},
    {CLATTN_DTYPE_BF16, P_SMOD | P_MMOD | P_CAUSAL, 1, 2, 2, 1, 17, 6, 4},
};

static void run_pipe_cases(clattn_variant variant, uint64_t seed) {
  const pipe_case *cases = tiny ? pipe_tiny_cases : pipe_cases;
  size_t ncases = tiny ? sizeof pipe_tiny_cases / sizeof pipe_tiny_cases[0]
                       : sizeof pipe_cases / sizeof pipe_cases[0];
  const char *const *specs = tiny ? tiny_specs : full_specs;
  size_t nspecs = tiny ? sizeof tiny_specs / sizeof tiny_specs[0]
                       : sizeof full_specs / sizeof full_specs[0];
  int all = 1;
  for (size_t c = 0; c < ncases; c++) {
    if (variant != CLATTN_VARIANT_SIGMOID && (cases[c].feats & P_BIAS) &&
        !(cases[c].feats & ~P_BIAS & ~P_LENS))
      continue; /* the same as the lengths case for softmax */
    size_t first = tiny || (cases[c].feats & P_ALL) == P_ALL ? 0 : 1;
    pipe_problem pp;
    pipe_problem_init(&pp, variant, &cases[c], seed + c);
    all &= pipe_check_specs(&pp, specs + first, nspecs - first);
    clattn_test_problem_free(&pp.p);
  }
  assert_true(all);
}

static void test_decode_pipeline_softmax(void **state) {
  (void)state;
  run_pipe_cases(CLATTN_VARIANT_SOFTMAX, 800);
}

static void test_decode_pipeline_sigmoid(void **state) {
  (void)state;
  run_pipe_cases(CLATTN_VARIANT_SIGMOID, 900);
}

/* A padded batch gives each sequence what it gives run alone (as a batch
 * of one with Nq = Lq and Nk = Lk, so with its own split count), with
 * every feature on and NaN and infinities in the padding; a sequence with
 * Lk = 0 gives zeros (and LSE -inf). */
static void test_decode_pipeline_padded(void **state) {
  (void)state;
  int all = 1;
  for (int v = 0; v < 2; v++) {
    clattn_variant variant =
        v ? CLATTN_VARIANT_SIGMOID : CLATTN_VARIANT_SOFTMAX;
    pipe_case c = {v ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32,
                   P_ALL | P_NOB,
                   4,
                   8,
                   2,
                   tiny ? 3 : 16,
                   tiny ? 21 : 2001,
                   tiny ? 5 : 40,
                   tiny ? 3 : 24};
    pipe_problem pp;
    pipe_problem_init(&pp, variant, &c, 1000 + (uint64_t)v);
    pp.lens_k[3] = 0; /* no keys at all */
    /* Padding is never read: NaN and infinities there change nothing. */
    const clattn_desc *pd = &pp.p.desc;
    for (size_t b = 0; b < pd->batch; b++) {
      for (size_t h = 0; h < pd->heads_q; h++)
        for (size_t i = (size_t)pp.lens_q[b]; i < pd->seq_q; i++)
          for (size_t e = 0; e < pd->dim; e++)
            pp.p.q[((b * pd->heads_q + h) * pd->seq_q + i) * pd->dim + e] =
                e % 2 ? NAN : INFINITY;
      for (size_t h = 0; h < pd->heads_kv; h++)
        for (size_t j = (size_t)pp.lens_k[b]; j < pd->seq_k; j++) {
          size_t row = (b * pd->heads_kv + h) * pd->seq_k + j;
          for (size_t e = 0; e < pd->dim; e++)
            pp.p.k[row * pd->dim + e] = e % 2 ? -INFINITY : NAN;
          for (size_t e = 0; e < pd->dim_v; e++)
            pp.p.v[row * pd->dim_v + e] = e % 2 ? NAN : INFINITY;
        }
    }
    clattn_ref_attention_ex(&pp.p.desc, &pp.extra, pp.p.q, pp.p.k, pp.p.v,
                            pp.p.ref_o, pp.p.ref_lse);
    const char *spec = v && !tiny ? "SHAPE=decode,WG=16,BLOCK_N=24" : NULL;
    all &= pipe_check_specs(&pp, &spec, 1);
    const clattn_desc *d = &pp.p.desc;
    for (size_t b = 0; b < d->batch; b++) {
      size_t lq = (size_t)pp.lens_q[b], lk = (size_t)pp.lens_k[b];
      if (lq == 0 || lk == 0)
        continue; /* checked as zeros above */
      pipe_problem one;
      memset(&one, 0, sizeof one);
      one.p.desc = *d;
      one.p.desc.batch = 1;
      one.p.desc.seq_q = lq;
      one.p.desc.seq_k = lk;
      clattn_test_sizes_get(&one.p.desc, &one.p.n);
      one.p.q = malloc(one.p.n.q * sizeof(float));
      one.p.k = malloc(one.p.n.k * sizeof(float));
      one.p.v = malloc(one.p.n.v * sizeof(float));
      one.p.o = malloc(one.p.n.o * sizeof(float));
      one.p.lse = pp.p.lse ? malloc(one.p.n.lse * sizeof(float)) : NULL;
      double *want_o = malloc(one.p.n.o * sizeof(double));
      double *want_lse = malloc(one.p.n.lse * sizeof(double));
      assert_true(one.p.q && one.p.k && one.p.v && one.p.o && want_o &&
                  want_lse && (one.p.lse || !pp.p.lse));
      for (size_t h = 0; h < d->heads_q; h++) {
        size_t src = (b * d->heads_q + h) * d->seq_q, dst = h * lq;
        memcpy(one.p.q + dst * d->dim, pp.p.q + src * d->dim,
               lq * d->dim * sizeof(float));
        for (size_t t = 0; t < lq * d->dim_v; t++)
          want_o[dst * d->dim_v + t] = pp.p.o[src * d->dim_v + t];
        for (size_t i = 0; i < lq; i++)
          want_lse[dst + i] = pp.p.lse ? pp.p.lse[src + i] : 0.0;
      }
      for (size_t h = 0; h < d->heads_kv; h++) {
        size_t src = (b * d->heads_kv + h) * d->seq_k, dst = h * lk;
        memcpy(one.p.k + dst * d->dim, pp.p.k + src * d->dim,
               lk * d->dim * sizeof(float));
        memcpy(one.p.v + dst * d->dim_v, pp.p.v + src * d->dim_v,
               lk * d->dim_v * sizeof(float));
      }
      char line[512];
      clattn_status st = pipe_run(&one, spec, line, sizeof line);
      int ok =
          st == CLATTN_SUCCESS &&
          clattn_test_check("O alone", one.p.o, want_o, one.p.n.o,
                            tol_of(d->dtype)) &&
          (!one.p.lse || clattn_test_check("LSE alone", one.p.lse, want_lse,
                                           one.p.n.lse, TOL_LSE));
      if (!ok) {
        print_error("  sequence %zu of %zu alone:\n", b, d->batch);
        pipe_print(&one, spec, st, line);
      }
      all &= ok;
      free(want_o);
      free(want_lse);
      free(one.p.q);
      free(one.p.k);
      free(one.p.v);
      free(one.p.o);
      free(one.p.lse);
    }
    clattn_test_problem_free(&pp.p);
  }
  assert_true(all);
}

/* What the padding of a padded batch holds never matters: NaN and
 * infinities in Q past Lq and in K and V past Lk give the output (and LSE)
 * zeros give, bit for bit, and no NaN, in both decode kernels. */
static void test_decode_padding_never_read(void **state) {
  (void)state;
  static const pipe_case pad_cases[] = {
      {CLATTN_DTYPE_F32, P_LENS, 4, 8, 2, 5, 301, 40, 24},
      {CLATTN_DTYPE_F32, P_ALL, 4, 8, 2, 16, 299, 40, 24},
  };
  static const pipe_case pad_tiny[] = {
      {CLATTN_DTYPE_F32, P_LENS, 4, 4, 2, 3, 21, 5, 3},
      {CLATTN_DTYPE_F32, P_ALL, 4, 4, 2, 3, 21, 5, 3},
  };
  const char *const *specs = tiny ? tiny_specs : full_specs;
  size_t nspecs = tiny ? sizeof tiny_specs / sizeof tiny_specs[0]
                       : sizeof full_specs / sizeof full_specs[0];
  int all = 1;
  for (int v = 0; v < 2; v++)
    for (size_t c = 0; c < 2; c++) {
      clattn_variant variant =
          v ? CLATTN_VARIANT_SIGMOID : CLATTN_VARIANT_SOFTMAX;
      pipe_problem pp;
      pipe_problem_init(&pp, variant, tiny ? &pad_tiny[c] : &pad_cases[c],
                        1100 + 10 * (uint64_t)v + c);
      const clattn_desc *d = &pp.p.desc;
      float *clean_o = malloc(pp.p.n.o * sizeof(float));
      float *clean_lse = malloc((pp.p.n.lse ? pp.p.n.lse : 1) * sizeof(float));
      assert_true(clean_o && clean_lse);
      for (size_t s = 0; s < nspecs; s++) {
        char line[512];
        clattn_status st = CLATTN_SUCCESS;
        for (int dirty = 0; dirty < 2 && st == CLATTN_SUCCESS; dirty++) {
          for (size_t b = 0; b < d->batch; b++) {
            clattn_test_fill_padding(pp.p.q, b, d->heads_q, d->seq_q,
                                     (size_t)pp.lens_q[b], d->dim, dirty);
            clattn_test_fill_padding(pp.p.k, b, d->heads_kv, d->seq_k,
                                     (size_t)pp.lens_k[b], d->dim, dirty);
            clattn_test_fill_padding(pp.p.v, b, d->heads_kv, d->seq_k,
                                     (size_t)pp.lens_k[b], d->dim_v, dirty);
          }
          st = pipe_run(&pp, specs[s], line, sizeof line);
          if (!dirty && st == CLATTN_SUCCESS) {
            memcpy(clean_o, pp.p.o, pp.p.n.o * sizeof(float));
            if (pp.p.lse)
              memcpy(clean_lse, pp.p.lse, pp.p.n.lse * sizeof(float));
          }
        }
        size_t nan = 0;
        for (size_t t = 0; t < pp.p.n.o; t++)
          nan += isnan(pp.p.o[t]) != 0;
        for (size_t t = 0; pp.p.lse && t < pp.p.n.lse; t++)
          nan += isnan(pp.p.lse[t]) != 0;
        int ok = st == CLATTN_SUCCESS && nan == 0 &&
                 memcmp(clean_o, pp.p.o, pp.p.n.o * sizeof(float)) == 0 &&
                 (!pp.p.lse ||
                  memcmp(clean_lse, pp.p.lse, pp.p.n.lse * sizeof(float)) == 0);
        if (!ok) {
          print_error("  the padding changes the output (%zu NaN):\n", nan);
          pipe_print(&pp, specs[s], st, line);
        }
        all &= ok;
      }
      free(clean_o);
      free(clean_lse);
      clattn_test_problem_free(&pp.p);
    }
  assert_true(all);
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
      cmocka_unit_test(test_decode_pipeline_softmax),
      cmocka_unit_test(test_decode_pipeline_sigmoid),
      cmocka_unit_test(test_decode_pipeline_padded),
      cmocka_unit_test(test_decode_padding_never_read),
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
      cmocka_unit_test(test_decode_pipeline_softmax),
      cmocka_unit_test(test_decode_pipeline_sigmoid),
      cmocka_unit_test(test_decode_pipeline_padded),
      cmocka_unit_test(test_decode_padding_never_read),
      cmocka_unit_test(test_decode_routing),
      cmocka_unit_test(test_decode_tiles),
      cmocka_unit_test(test_decode_candidates),
  };
  if (tiny)
    return cmocka_run_group_tests(tiny_tests, NULL,
                                  clattn_test_shared_teardown);
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
