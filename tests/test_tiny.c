/*
 * test_tiny.c - every kernel at tiny shapes against the double-precision
 * reference: each variant with each of its kernel shapes forced, f32 and f16
 * storage, causal and not; the decode kernels with the whole score
 * pipeline and per-sequence lengths. CTest runs it on the default device, and
 * under `oclgrind --data-races` (label "oclgrind"), where the shapes must stay
 * tiny because Oclgrind simulates every work-item. Oclgrind's own findings
 * (out-of-bounds accesses, races) are matched in its output by CTest.
 *
 * Tolerances: f32 storage 1e-5, f16 storage 2e-2 (relative to the largest
 * reference magnitude of the tensor, inputs pre-rounded to half); f32
 * gradients 1e-4 (weights recomputed from a float LSE).
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

/* Every kernel shape of every variant is forced in turn, with tiles small
 * enough that several blocks, work-groups, tiles and key chunks are crossed;
 * NULL is the device's own choice. The cpu shape of the flash kernels is
 * taken with both key-vector widths. */
static const char *const flash_tiles[] = {
    NULL,
    "SHAPE=row,BLOCK_M=2,BLOCK_N=2,WG=2",
    "SHAPE=cpu,KEYS_VEC=8,BLOCK_M=3",
    "SHAPE=cpu,KEYS_VEC=16,BLOCK_M=2",
    "SHAPE=gpu,BLOCK_M=4,BLOCK_N=2",
};
/* Causal chunks must hold whole query blocks: CHUNK a multiple of BLOCK_M. */
static const char *const linear_tiles[] = {
    NULL,
    "SHAPE=cpu,CHUNK=4,BLOCK_M=2",
    "SHAPE=gpu,CHUNK=4",
};

/* Sizes per (dtype, causal): odd lengths, Nq != Nk both ways (causal with
 * Nq > Nk leaves rows that see no key), grouped heads, head dims that are
 * not powers of two. Indexed [f16][causal]. */
static const size_t sizes[2][2][7] = {
    {{1, 2, 1, 5, 11, 3, 5}, {2, 2, 2, 9, 6, 8, 8}},
    {{1, 4, 2, 6, 11, 5, 3}, {1, 2, 1, 10, 7, 6, 4}},
};

static const clattn_variant variants[] = {
    CLATTN_VARIANT_SOFTMAX, CLATTN_VARIANT_SIGMOID, CLATTN_VARIANT_LINEAR,
    CLATTN_VARIANT_COSFORMER};

static int is_flash(clattn_variant v) {
  return v == CLATTN_VARIANT_SOFTMAX || v == CLATTN_VARIANT_SIGMOID;
}

/* The case of the given variant, tile spec (index into its list), dtype and
 * masking; the device's own tiles only once per variant (f32, causal), as
 * that run is one of the forced shapes again. Returns 0 for a skipped
 * combination. */
static int make_case(tiny_case *c, clattn_variant v, size_t tiles_index,
                     int f16, int causal) {
  const size_t *z = sizes[f16][causal];
  if (tiles_index == 0 && (f16 || !causal))
    return 0;
  c->variant = v;
  c->dtype = f16 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32;
  c->causal = causal;
  c->b = z[0];
  c->hq = z[1];
  c->hkv = z[2];
  c->nq = z[3];
  c->nk = z[4];
  c->d = z[5];
  c->dv = z[6];
  c->tiles = is_flash(v) ? flash_tiles[tiles_index] : linear_tiles[tiles_index];
  return 1;
}

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
  /* Both feature maps meet both masking modes across the dtypes. */
  if (!is_flash(c->variant))
    desc.feature_map = (c->causal ^ (c->dtype == CLATTN_DTYPE_F16))
                           ? CLATTN_FEATURE_MAP_RELU
                           : CLATTN_FEATURE_MAP_ELU1;
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
  int ok = clattn_test_check(what, p.o, p.ref_o, p.n.o, tol) &&
           clattn_test_check_empty_rows(&p);
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
  size_t count = 0;
  (void)state;
  clattn_context_t ctx = clattn_test_context_create();
  for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
    size_t ntiles = is_flash(variants[v])
                        ? sizeof flash_tiles / sizeof flash_tiles[0]
                        : sizeof linear_tiles / sizeof linear_tiles[0];
    for (size_t t = 0; t < ntiles; t++) {
      for (int f16 = 0; f16 < 2; f16++) {
        for (int causal = 0; causal < 2; causal++) {
          tiny_case c;
          if (!make_case(&c, variants[v], t, f16, causal))
            continue;
          run_case(&c, ctx);
          count++;
        }
      }
    }
  }
  print_message("  %zu cases\n", count);
  clattn_context_destroy(ctx);
}

/* The decode kernels with the whole score pipeline (lengths, causal,
 * window, softcap, ALiBi, score_mod, mask_mod), both kernels and several
 * splits, so that Oclgrind sees their masked, clipped and empty splits: the
 * first sequence has rows past its Lq, the second 2 keys for 4 queries (its
 * first causal rows see no key, and most of its splits see none). */
static double decode_score_mod(double score, int b, int h, int i, int j) {
  return score * 0.75 + 0.05 * (double)(h - b) - 0.01 * (double)(j % 7) +
         0.02 * (double)(i % 3);
}
static int decode_mask_mod(int b, int h, int i, int j) {
  return (i + 2 * j + h + b) % 5 != 0;
}

static void test_tiny_decode_pipeline(void **state) {
  (void)state;
  static const char *const specs[] = {
      "SHAPE=decode,WG=1,SPLITS=4,BLOCK_N=4,ROWS=3",
      "SHAPE=decode,WG=4,BLOCK_N=3,SPLITS=3,ROWS=2",
  };
  static const float slopes[4] = {0.5f, 0.25f, 0.125f, 0.0625f};
  const int lens_q[2] = {3, 4}, lens_k[2] = {13, 2};
  const clattn_ref_extra extra = {lens_q, lens_k, decode_score_mod,
                                  decode_mask_mod};
  clattn_context_t ctx = clattn_test_context_create();
  int all = 1;
  for (int v = 0; v < 2; v++) {
    for (int f16 = 0; f16 < 2; f16++) {
      clattn_desc d = clattn_test_desc(
          v ? CLATTN_VARIANT_SIGMOID : CLATTN_VARIANT_SOFTMAX,
          f16 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32, 1, 2, 4, 2, 4, 13, 5, 3);
      d.window_left = 6;
      d.softcap = 1.5f;
      d.alibi_slopes = slopes;
      d.score_mod = "score * 0.75f + 0.05f * (float)(h - b) - "
                    "0.01f * (float)(j % 7) + 0.02f * (float)(i % 3)";
      d.mask_mod = "(i + 2 * j + h + b) % 5 != 0";
      clattn_test_problem p;
      clattn_test_problem_init(&p, &d, 77 + (uint64_t)(2 * v + f16));
      clattn_ref_attention_ex(&p.desc, &extra, p.q, p.k, p.v, p.ref_o,
                              p.ref_lse);
      double tol = f16 ? TOL_F16 : TOL_F32;
      for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        char what[160];
        snprintf(what, sizeof what, "%s %s pipeline tiles=%s",
                 clattn_variant_name(d.variant), clattn_dtype_name(d.dtype),
                 specs[s]);
        print_message("  %s\n", what);
        clattn_plan_t plan = NULL;
        p.desc.tiles = specs[s];
        clattn_status st = clattn_plan_create(ctx, &p.desc, &plan);
        if (st == CLATTN_SUCCESS)
          st = clattn_plan_run_host_varlen(plan, p.q, p.k, p.v, p.o, p.lse,
                                           lens_q, lens_k);
        clattn_plan_destroy(plan);
        if (st != CLATTN_SUCCESS) {
          print_error("%s: %s: %s\n", what, clattn_status_name(st),
                      clattn_context_error(ctx));
          all = 0;
          continue;
        }
        int ok = clattn_test_check(what, p.o, p.ref_o, p.n.o, tol);
        /* Rows past Lq and rows that see no key: exactly 0 and -inf. */
        for (size_t r = 0; r < p.n.lse && ok; r++) {
          size_t b = r / (d.heads_q * d.seq_q), i = r % d.seq_q;
          int none = (int)i >= lens_q[b] || (p.ref_lse && isinf(p.ref_lse[r]));
          for (size_t t = 0; none && t < d.dim_v; t++)
            ok &= p.o[r * d.dim_v + t] == 0.0f;
          if (p.lse && none)
            ok &= isinf(p.lse[r]) && p.lse[r] < 0;
          else if (p.lse)
            ok &= fabs(p.lse[r] - p.ref_lse[r]) <=
                  tol * fmax(1.0, fabs(p.ref_lse[r]));
          if (!ok)
            print_error("%s: row %zu: lse %g, reference %g\n", what, r,
                        p.lse ? (double)p.lse[r] : 0.0,
                        p.ref_lse ? p.ref_lse[r] : 0.0);
        }
        all &= ok;
      }
      clattn_test_problem_free(&p);
    }
  }
  clattn_context_destroy(ctx);
  assert_true(all);
}

/* The score pipeline of the flash kernels at tiny shapes, every stage on at
 * once (lengths, window or causal, ALiBi, softcap, both mods), in each
 * forced shape: under Oclgrind this checks that lengths and windows keep
 * every access in bounds. */
static double tiny_score_mod(double score, int b, int h, int i, int j) {
  (void)b;
  (void)h;
  return score + 0.1 * (double)(i - j);
}
static int tiny_mask_mod(int b, int h, int i, int j) {
  (void)b;
  return (i + j + h) % 4 != 1;
}

static void test_tiny_pipeline(void **state) {
  (void)state;
  clattn_context_t ctx = clattn_test_context_create();
  const int lens_q[2] = {9, 4}, lens_k[2] = {13, 6};
  const float slopes[2] = {0.5f, 0.125f};
  const clattn_ref_extra x = {lens_q, lens_k, tiny_score_mod, tiny_mask_mod};
  for (int v = 0; v < 2; v++) {
    for (size_t t = 1; t < sizeof flash_tiles / sizeof flash_tiles[0]; t++) {
      clattn_desc desc = clattn_test_desc(variants[v], CLATTN_DTYPE_F32,
                                          (int)(t % 2), 2, 2, 1, 9, 13, 5, 3);
      desc.window_left = 3;
      desc.window_right = t % 2 ? -1 : 2;
      desc.softcap = 2.5f;
      desc.alibi_slopes = slopes;
      desc.score_mod = "score + 0.1f * (float)(i - j)";
      desc.mask_mod = "(i + j + h) % 4 != 1";
      desc.tiles = flash_tiles[t];
      print_message("  pipeline %s tiles=%s\n",
                    clattn_variant_name(variants[v]), desc.tiles);
      clattn_test_problem p;
      clattn_test_problem_init(&p, &desc, 77 + t);
      clattn_ref_attention_ex(&desc, &x, p.q, p.k, p.v, p.ref_o, p.ref_lse);
      clattn_plan_t plan = NULL;
      clattn_status st = clattn_plan_create(ctx, &desc, &plan);
      if (st == CLATTN_SUCCESS)
        st = clattn_plan_run_host_varlen(plan, p.q, p.k, p.v, p.o, p.lse,
                                         lens_q, lens_k);
      if (st != CLATTN_SUCCESS)
        print_error("%s: %s\n", clattn_status_name(st),
                    clattn_context_error(ctx));
      clattn_plan_destroy(plan);
      int ok = st == CLATTN_SUCCESS &&
               clattn_test_check("pipeline O", p.o, p.ref_o, p.n.o, TOL_F32);
      clattn_test_problem_free(&p);
      assert_true(ok);
    }
  }
  clattn_context_destroy(ctx);
}

/* The backward kernels with the whole score pipeline at tiny sizes, on each
 * backward shape (the single pass of the cpu shape, the row kernels of the
 * others): lengths, a window, softcap, ALiBi and a mask_mod, softmax and
 * sigmoid, against the float64 gradient reference. */
#define TINY_MASK_CL "(i + j + h) % 4 != 2"
static int tiny_mask(int b, int h, int i, int j) {
  (void)b;
  return (i + j + h) % 4 != 2;
}

static void test_tiny_backward_pipeline(void **state) {
  (void)state;
  static const char *const bwd_tiles[] = {"SHAPE=cpu,KEYS_VEC=8,BLOCK_M=3",
                                          "SHAPE=row,BLOCK_M=2,BLOCK_N=2,WG=2"};
  static const float slopes[2] = {0.5f, 0.25f};
  static const cl_int lens_q[2] = {7, 4}, lens_k[2] = {9, 5};
  const int ref_lq[2] = {7, 4}, ref_lk[2] = {9, 5};
  clattn_context_t ctx = clattn_test_context_create();
  for (int v = 0; v < 2; v++)
    for (size_t t = 0; t < 2; t++) {
      clattn_desc d =
          clattn_test_desc(v ? CLATTN_VARIANT_SIGMOID : CLATTN_VARIANT_SOFTMAX,
                           CLATTN_DTYPE_F32, (int)t, 2, 2, 1, 7, 9, 5, 3);
      d.tiles = bwd_tiles[t];
      d.window_left = 3;
      if (!d.causal)
        d.window_right = 2;
      d.softcap = 2.0f;
      d.alibi_slopes = slopes;
      d.mask_mod = TINY_MASK_CL;
      print_message("  backward %s%s tiles=%s\n",
                    clattn_variant_name(d.variant), d.causal ? " causal" : "",
                    d.tiles);
      clattn_test_sizes n;
      clattn_test_sizes_get(&d, &n);
      float *buf =
          malloc((3 * (n.q + n.k + n.v) + 3 * n.o + n.lse) * sizeof *buf);
      double *ref = malloc((n.q + n.k + n.v) * sizeof *ref);
      assert_true(buf && ref);
      float *q = buf, *k = q + n.q, *vv = k + n.k, *dq = vv + n.v;
      float *dk = dq + n.q, *dv = dk + n.k, *g = dv + n.v, *o = g + n.o;
      float *lse = o + n.o;
      clattn_test_fill_normal(q, n.q + n.k + n.v, 77 + t, 0.0f, 1.0f);
      clattn_test_fill_normal(g, n.o, 78 + t, 0.0f, 1.0f);
      clattn_ref_extra ex = {ref_lq, ref_lk, NULL, tiny_mask};
      clattn_ref_attention_backward_ex(&d, &ex, q, k, vv, g, ref, ref + n.q,
                                       ref + n.q + n.k);
      clattn_plan_t plan = NULL;
      int softmax = !v;
      clattn_status st = clattn_plan_create(ctx, &d, &plan);
      if (st == CLATTN_SUCCESS)
        st = clattn_plan_run_host_varlen(plan, q, k, vv, o,
                                         softmax ? lse : NULL, lens_q, lens_k);
      if (st == CLATTN_SUCCESS)
        st = clattn_plan_backward_host_varlen(
            plan, q, k, vv, softmax ? o : NULL, softmax ? lse : NULL, g, dq, dk,
            dv, lens_q, lens_k);
      if (st != CLATTN_SUCCESS)
        fail_msg("%s: %s", clattn_status_name(st), clattn_context_error(ctx));
      clattn_plan_destroy(plan);
      int ok = clattn_test_check("dQ", dq, ref, n.q, TOL_F32 * 10);
      ok &= clattn_test_check("dK", dk, ref + n.q, n.k, TOL_F32 * 10);
      ok &= clattn_test_check("dV", dv, ref + n.q + n.k, n.v, TOL_F32 * 10);
      free(buf);
      free(ref);
      assert_true(ok);
    }
  clattn_context_destroy(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tiny_all_variants),
      cmocka_unit_test(test_tiny_pipeline),
      cmocka_unit_test(test_tiny_backward_pipeline),
      cmocka_unit_test(test_tiny_decode_pipeline),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
