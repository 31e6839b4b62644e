/*
 * test_api.c - the public API's contract apart from numerics: status names,
 * versions, NULL and invalid arguments, descriptor validation messages,
 * buffer size checks, device selectors, adopting a caller's OpenCL objects,
 * handle lifetimes, and the small name and conversion helpers.
 */
#define _POSIX_C_SOURCE 200809L

#include "reference.h"
#include "testutil.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Same meaning as in test_softmax.c: f32 storage, error relative to the
 * largest reference magnitude of the tensor. */
#define TOL_F32 1e-5

/* A small valid problem of any variant. */
static clattn_desc small_desc(clattn_variant variant) {
  clattn_desc d;
  clattn_desc_init(&d, variant);
  d.batch = 1;
  d.heads_q = 2;
  d.heads_kv = 1;
  d.seq_q = 16;
  d.seq_k = 24;
  d.dim = 16;
  d.dim_v = 8;
  return d;
}

static int contains_ci(const char *haystack, const char *needle) {
  size_t n = strlen(needle), i, j;
  for (i = 0; haystack[i]; i++) {
    for (j = 0; j < n && haystack[i + j]; j++)
      if (tolower((unsigned char)haystack[i + j]) !=
          tolower((unsigned char)needle[j]))
        break;
    if (j == n)
      return 1;
  }
  return n == 0;
}

/* ---- Status codes and versions ---------------------------------------- */

typedef struct status_row {
  clattn_status code;
  const char *name;
  const char *text;
} status_row;

static const status_row status_rows[] = {
#define STATUS_ROW_(name, value, text) {CLATTN_##name, "CLATTN_" #name, text},
    CLATTN_STATUS_MAP(STATUS_ROW_)
#undef STATUS_ROW_
};

static void test_api_status_strings(void **state) {
  size_t t;
  const char *s;
  (void)state;
  for (t = 0; t < sizeof status_rows / sizeof status_rows[0]; t++) {
    assert_string_equal(clattn_status_name(status_rows[t].code),
                        status_rows[t].name);
    assert_string_equal(clattn_status_string(status_rows[t].code),
                        status_rows[t].text);
  }
  assert_int_equal(CLATTN_ERROR_DEVICE_NOT_FOUND, CL_DEVICE_NOT_FOUND);
  assert_int_equal(CLATTN_ERROR_INVALID_VALUE, CL_INVALID_VALUE);
  assert_int_equal(CLATTN_ERROR_INVALID_BUFFER_SIZE, CL_INVALID_BUFFER_SIZE);
  assert_string_equal(clattn_status_name((clattn_status)12345),
                      "CLATTN_UNKNOWN_STATUS");
  assert_string_equal(clattn_status_name((clattn_status)-999),
                      "CLATTN_UNKNOWN_STATUS");
  s = clattn_status_string((clattn_status)12345);
  assert_non_null(s);
  assert_true(s[0] != '\0');
}

static void test_api_version(void **state) {
  char want[32];
  (void)state;
  assert_int_equal(clattn_version(), CLATTN_VERSION);
  snprintf(want, sizeof want, "%d.%d.%d", CLATTN_VERSION_MAJOR,
           CLATTN_VERSION_MINOR, CLATTN_VERSION_PATCH);
  assert_string_equal(clattn_version_string(), want);
}

/* ---- Names and conversions -------------------------------------------- */

static void test_api_names_round_trip(void **state) {
  int t;
  (void)state;
  for (t = 0; t < CLATTN_VARIANT_COUNT; t++) {
    clattn_variant out = CLATTN_VARIANT_COUNT;
    const char *name = clattn_variant_name((clattn_variant)t);
    assert_non_null(name);
    assert_int_equal(clattn_variant_parse(name, &out), CLATTN_SUCCESS);
    assert_int_equal(out, t);
  }
  for (t = CLATTN_DTYPE_F32; t <= CLATTN_DTYPE_F16; t++) {
    clattn_dtype out = (clattn_dtype)99;
    const char *name = clattn_dtype_name((clattn_dtype)t);
    assert_non_null(name);
    assert_int_equal(clattn_dtype_parse(name, &out), CLATTN_SUCCESS);
    assert_int_equal(out, t);
  }
  for (t = CLATTN_FEATURE_MAP_DEFAULT; t <= CLATTN_FEATURE_MAP_RELU; t++) {
    clattn_feature_map out = (clattn_feature_map)99;
    const char *name = clattn_feature_map_name((clattn_feature_map)t);
    assert_non_null(name);
    assert_int_equal(clattn_feature_map_parse(name, &out), CLATTN_SUCCESS);
    assert_int_equal(out, t);
  }
  /* The spellings the header quotes. */
  assert_string_equal(clattn_variant_name(CLATTN_VARIANT_SOFTMAX), "softmax");
  assert_string_equal(clattn_dtype_name(CLATTN_DTYPE_F16), "f16");
  assert_string_equal(clattn_feature_map_name(CLATTN_FEATURE_MAP_ELU1), "elu1");
}

static void test_api_names_out_of_range(void **state) {
  clattn_variant v;
  clattn_dtype d;
  clattn_feature_map m;
  (void)state;
  assert_null(clattn_variant_name(CLATTN_VARIANT_COUNT));
  assert_null(clattn_variant_name((clattn_variant)-1));
  assert_null(clattn_dtype_name((clattn_dtype)3));
  assert_null(clattn_dtype_name((clattn_dtype)-1));
  assert_null(clattn_feature_map_name((clattn_feature_map)3));
  assert_null(clattn_feature_map_name((clattn_feature_map)-1));
  assert_int_equal(clattn_variant_parse("nope", &v),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_variant_parse("", &v), CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_dtype_parse("f64", &d), CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_feature_map_parse("gelu", &m),
                   CLATTN_ERROR_INVALID_VALUE);
}

static void test_api_half_conversions(void **state) {
  /* Ties, subnormals, the overflow boundary, infinities and NaN: the cases
   * where a conversion that truncates or flushes would differ. */
  static const float values[] = {0.0f,
                                 -0.0f,
                                 1.0f,
                                 -2.5f,
                                 1.0f + 0x1p-11f,
                                 1.0f + 0x1p-11f + 0x1p-12f,
                                 1.0f + 0x1p-10f + 0x1p-11f,
                                 0.1f,
                                 65504.0f,
                                 65519.0f,
                                 65520.0f,
                                 1e6f,
                                 -1e6f,
                                 0x1p-14f,
                                 0x1p-15f,
                                 0x1p-24f,
                                 0x1p-25f,
                                 0x1.8p-25f,
                                 0x1p-26f,
                                 3.0e-6f,
                                 -4.1e-7f,
                                 1e-30f,
                                 INFINITY,
                                 -INFINITY};
  enum { N = sizeof values / sizeof values[0] };
  cl_half h[N + 1];
  float back[N + 1], nan_in = NAN;
  size_t t;
  (void)state;
  clattn_f32_to_f16(values, h, N);
  clattn_f16_to_f32(h, back, N);
  for (t = 0; t < N; t++) {
    uint16_t want = clattn_test_float_to_half(values[t]);
    if (h[t] != want)
      print_error("clattn_f32_to_f16(%a) = 0x%04x, want 0x%04x\n",
                  (double)values[t], (unsigned)h[t], (unsigned)want);
    assert_int_equal(h[t], want);
    assert_memory_equal(&back[t], &(float){clattn_test_half_to_float(want)},
                        sizeof(float));
  }
  clattn_f32_to_f16(&nan_in, h, 1);
  assert_int_equal(h[0] & 0x7c00, 0x7c00);
  assert_true((h[0] & 0x3ff) != 0);
  clattn_f16_to_f32(h, back, 1);
  assert_true(isnan(back[0]));
  /* n = 0 touches nothing. */
  clattn_f32_to_f16(NULL, NULL, 0);
  clattn_f16_to_f32(NULL, NULL, 0);
}

static void test_api_desc_init_defaults(void **state) {
  /* The "0 = default" fields must start at 0 (or their documented default),
   * or "a field left as init set it takes its default" would not hold. */
  clattn_desc d;
  int t;
  (void)state;
  for (t = 0; t < CLATTN_VARIANT_COUNT; t++) {
    memset(&d, 0x5a, sizeof d);
    clattn_desc_init(&d, (clattn_variant)t);
    assert_int_equal(d.variant, t);
    assert_int_equal(d.dtype, CLATTN_DTYPE_F32);
    assert_int_equal(d.heads_kv, 0);
    assert_int_equal(d.dim_v, 0);
    assert_int_equal(d.causal, 0);
    assert_true(d.scale == 0.0f);
    assert_int_equal(d.has_bias, 0);
    assert_int_equal(d.feature_map, CLATTN_FEATURE_MAP_DEFAULT);
    assert_true(d.eps == 0.0f);
    assert_true(d.cos_m == 0.0f);
    assert_null(d.tiles);
  }
  clattn_desc_init(NULL, CLATTN_VARIANT_SOFTMAX);
}

/* ---- NULL arguments --------------------------------------------------- */

static void test_api_error_copy_null_context(void **state) {
  /* "Always terminated": with no context there is no message, so the copy
   * is "" rather than whatever the buffer held. */
  char buf[16];
  (void)state;
  memset(buf, 'x', sizeof buf);
  assert_int_equal(clattn_context_error_copy(NULL, buf, sizeof buf), 0);
  assert_int_equal(buf[0], '\0');
}

static void test_api_parse_null_arguments(void **state) {
  clattn_variant v;
  clattn_dtype dt;
  clattn_feature_map m;
  (void)state;
  assert_int_equal(clattn_variant_parse(NULL, &v), CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_variant_parse("softmax", NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_dtype_parse(NULL, &dt), CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_dtype_parse("f32", NULL), CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_feature_map_parse(NULL, &m),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_feature_map_parse("relu", NULL),
                   CLATTN_ERROR_INVALID_VALUE);
}

static void test_api_null_arguments_no_device(void **state) {
  clattn_context_t ctx = NULL;
  clattn_plan_t plan = NULL;
  clattn_desc d = small_desc(CLATTN_VARIANT_SOFTMAX);
  clattn_device_profile prof;
  char buf[16];
  float x = 0.0f;
  (void)state;
  assert_int_equal(clattn_device_count(NULL), CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_device_profile_get(0, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_device_find("0", NULL), CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_context_create(NULL, NULL, 0),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_context_create_from_cl(NULL, NULL, NULL, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  /* *out is set even on failure; destroy it either way. */
  assert_int_equal(clattn_context_create_from_cl(&ctx, NULL, NULL, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  clattn_context_destroy(ctx);
  clattn_context_destroy(NULL);
  assert_non_null(clattn_context_error(NULL));
  clattn_context_error_copy(NULL, NULL, 0);
  assert_null(clattn_context_cl(NULL));
  assert_null(clattn_context_device(NULL));
  assert_null(clattn_context_queue(NULL));
  assert_int_equal(clattn_context_profile(NULL, &prof),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_plan_create(NULL, &d, &plan),
                   CLATTN_ERROR_INVALID_VALUE);
  clattn_plan_destroy(plan);
  clattn_plan_destroy(NULL);
  assert_int_equal(
      clattn_plan_run(NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL),
      CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_plan_run_host(NULL, &x, &x, &x, &x, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_plan_device_bytes(NULL), 0);
  memset(buf, 'x', sizeof buf);
  clattn_plan_describe(NULL, buf, sizeof buf);
  assert_non_null(memchr(buf, '\0', sizeof buf));
}

/* A NULL cl_mem is an invalid argument; OpenCL itself would call it an
 * invalid memory object, so either code is accepted. */
static int null_mem_refused(clattn_status st) {
  return st == CLATTN_ERROR_INVALID_VALUE ||
         st == CLATTN_ERROR_INVALID_MEM_OBJECT;
}

typedef struct api_buffers {
  cl_mem q, k, v, o, lse;
} api_buffers;

/* Buffers for desc; `short_by` bytes are taken off the one named by `which`
 * ('q', 'k', 'v', 'o', 'l'), so that a size check has something to catch. */
static cl_int api_buffers_create(api_buffers *b, clattn_context_t ctx,
                                 const clattn_desc *desc, char which,
                                 size_t short_by) {
  cl_context cl = clattn_context_cl(ctx);
  clattn_test_sizes n;
  size_t es = desc->dtype == CLATTN_DTYPE_F16 ? 2 : 4;
  size_t bytes[5];
  cl_mem *slots[5];
  const char names[5] = {'q', 'k', 'v', 'o', 'l'};
  cl_int err = CL_SUCCESS;
  int t;
  memset(b, 0, sizeof *b);
  clattn_test_sizes_get(desc, &n);
  bytes[0] = n.q * es;
  bytes[1] = n.k * es;
  bytes[2] = n.v * es;
  bytes[3] = n.o * es;
  bytes[4] = n.lse * sizeof(float);
  slots[0] = &b->q;
  slots[1] = &b->k;
  slots[2] = &b->v;
  slots[3] = &b->o;
  slots[4] = &b->lse;
  for (t = 0; t < 5 && err == CL_SUCCESS; t++) {
    size_t sz = bytes[t] - (names[t] == which ? short_by : 0);
    *slots[t] = clCreateBuffer(cl, CL_MEM_READ_WRITE, sz, NULL, &err);
  }
  return err;
}

static void api_buffers_release(api_buffers *b) {
  if (b->q)
    clReleaseMemObject(b->q);
  if (b->k)
    clReleaseMemObject(b->k);
  if (b->v)
    clReleaseMemObject(b->v);
  if (b->o)
    clReleaseMemObject(b->o);
  if (b->lse)
    clReleaseMemObject(b->lse);
  memset(b, 0, sizeof *b);
}

static void test_api_null_arguments(void **state) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = small_desc(CLATTN_VARIANT_SOFTMAX);
  clattn_plan_t plan = NULL;
  clattn_test_sizes n;
  api_buffers b;
  float *x;
  clattn_status st;
  (void)state;
  assert_int_equal(clattn_context_profile(ctx, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_plan_create(ctx, NULL, &plan),
                   CLATTN_ERROR_INVALID_VALUE);
  clattn_plan_destroy(plan);
  plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  st = clattn_plan_create(ctx, &d, &plan);
  if (st != CLATTN_SUCCESS)
    print_error("%s: %s\n", clattn_status_name(st), clattn_context_error(ctx));
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_int_equal(api_buffers_create(&b, ctx, &d, 0, 0), CL_SUCCESS);
  assert_true(null_mem_refused(
      clattn_plan_run(plan, NULL, b.k, b.v, b.o, b.lse, 0, NULL, NULL)));
  assert_true(null_mem_refused(
      clattn_plan_run(plan, b.q, NULL, b.v, b.o, b.lse, 0, NULL, NULL)));
  assert_true(null_mem_refused(
      clattn_plan_run(plan, b.q, b.k, NULL, b.o, b.lse, 0, NULL, NULL)));
  assert_true(null_mem_refused(
      clattn_plan_run(plan, b.q, b.k, b.v, NULL, b.lse, 0, NULL, NULL)));
  /* Events promised but no list given. */
  assert_int_equal(
      clattn_plan_run(plan, b.q, b.k, b.v, b.o, b.lse, 1, NULL, NULL),
      CLATTN_ERROR_INVALID_VALUE);
  clattn_test_sizes_get(&d, &n);
  x = calloc(n.q + n.k + n.v + n.o + n.lse, sizeof *x);
  assert_non_null(x);
  assert_int_equal(clattn_plan_run_host(plan, NULL, x, x, x, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_plan_run_host(plan, x, NULL, x, x, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_plan_run_host(plan, x, x, NULL, x, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_int_equal(clattn_plan_run_host(plan, x, x, x, NULL, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  free(x);
  clFinish(clattn_context_queue(ctx));
  api_buffers_release(&b);
  clattn_plan_destroy(plan);
}

/* ---- Descriptor validation -------------------------------------------- */

typedef struct bad_desc_case {
  const char *what;   /* printed on failure */
  const char *field;  /* the message must contain this (any case) */
  const char *field2; /* or this, when not NULL */
} bad_desc_case;

static const bad_desc_case bad_cases[] = {
    {"batch = 0", "batch", NULL},
    {"heads_q = 0", "heads_q", NULL},
    {"heads_q 6 not a multiple of heads_kv 4", "heads_q", "heads_kv"},
    {"heads_kv 4 > heads_q 2", "heads_q", "heads_kv"},
    {"seq_q = 0", "seq_q", NULL},
    {"seq_k = 0", "seq_k", NULL},
    {"dim = 0", "dim", NULL},
    {"dim = 257", "dim", NULL},
    {"dim_v = 300", "dim_v", NULL},
    {"variant = 17", "variant", NULL},
    {"variant = COUNT", "variant", NULL},
    {"dtype = 9", "dtype", NULL},
    {"scale = -1", "scale", NULL},
    {"scale = NaN", "scale", NULL},
    {"scale = inf", "scale", NULL},
    {"bias set on softmax", "bias", NULL},
    {"eps set on softmax", "eps", NULL},
    {"cos_m set on softmax", "cos_m", NULL},
    {"cos_m set on linear", "cos_m", NULL},
    {"feature_map set on softmax", "feature", NULL},
    {"feature_map set on sigmoid", "feature", NULL},
    {"feature_map = 9 on linear", "feature", NULL},
    {"bias = NaN on sigmoid", "bias", NULL},
    {"eps = -1 on linear", "eps", NULL},
    {"eps = NaN on cosformer", "eps", NULL},
    {"unknown tiles name", "NO_SUCH_TILE", "tiles"},
};

static clattn_desc bad_desc(size_t which) {
  clattn_desc d = small_desc(CLATTN_VARIANT_SOFTMAX);
  switch (which) {
  case 0:
    d.batch = 0;
    break;
  case 1:
    d.heads_q = 0;
    break;
  case 2:
    d.heads_q = 6;
    d.heads_kv = 4;
    break;
  case 3:
    d.heads_q = 2;
    d.heads_kv = 4;
    break;
  case 4:
    d.seq_q = 0;
    break;
  case 5:
    d.seq_k = 0;
    break;
  case 6:
    d.dim = 0;
    d.dim_v = 8;
    break;
  case 7:
    d.dim = 257;
    break;
  case 8:
    d.dim_v = 300;
    break;
  case 9:
    d.variant = (clattn_variant)17;
    break;
  case 10:
    d.variant = CLATTN_VARIANT_COUNT;
    break;
  case 11:
    d.dtype = (clattn_dtype)9;
    break;
  case 12:
    d.scale = -1.0f;
    break;
  case 13:
    d.scale = NAN;
    break;
  case 14:
    d.scale = INFINITY;
    break;
  case 15:
    d.has_bias = 1;
    d.bias = -2.0f;
    break;
  case 16:
    d.eps = 1e-3f;
    break;
  case 17:
    d.cos_m = 16.0f;
    break;
  case 18:
    d = small_desc(CLATTN_VARIANT_LINEAR);
    d.cos_m = 16.0f;
    break;
  case 19:
    d.feature_map = CLATTN_FEATURE_MAP_RELU;
    break;
  case 20:
    d = small_desc(CLATTN_VARIANT_SIGMOID);
    d.feature_map = CLATTN_FEATURE_MAP_ELU1;
    break;
  case 21:
    d = small_desc(CLATTN_VARIANT_LINEAR);
    d.feature_map = (clattn_feature_map)9;
    break;
  case 22:
    d = small_desc(CLATTN_VARIANT_SIGMOID);
    d.has_bias = 1;
    d.bias = NAN;
    break;
  case 23:
    d = small_desc(CLATTN_VARIANT_LINEAR);
    d.eps = -1.0f;
    break;
  case 24:
    d = small_desc(CLATTN_VARIANT_COSFORMER);
    d.eps = NAN;
    break;
  default:
    d.tiles = "NO_SUCH_TILE=4";
    break;
  }
  return d;
}

static void test_api_invalid_descriptors(void **state) {
  clattn_context_t ctx = clattn_test_shared_context();
  size_t t, failures = 0;
  (void)state;
  for (t = 0; t < sizeof bad_cases / sizeof bad_cases[0]; t++) {
    const bad_desc_case *c = &bad_cases[t];
    clattn_desc d = bad_desc(t);
    clattn_plan_t plan = NULL;
    clattn_status st = clattn_plan_create(ctx, &d, &plan);
    const char *msg = clattn_context_error(ctx);
    int named = contains_ci(msg, c->field) ||
                (c->field2 && contains_ci(msg, c->field2));
    if (st != CLATTN_ERROR_INVALID_DESCRIPTOR || !named) {
      print_error("%s: got %s, message \"%s\"; want "
                  "CLATTN_ERROR_INVALID_DESCRIPTOR naming %s\n",
                  c->what, clattn_status_name(st), msg, c->field);
      failures++;
    }
    clattn_plan_destroy(plan);
  }
  assert_int_equal(failures, 0);
}

static void test_api_valid_descriptors(void **state) {
  /* The fields each variant owns are accepted on that variant, so the
   * refusals above are about the field being foreign, not unusable. */
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d[4];
  size_t t, failures = 0;
  (void)state;
  d[0] = small_desc(CLATTN_VARIANT_SOFTMAX);
  d[0].scale = 0.25f;
  d[1] = small_desc(CLATTN_VARIANT_SIGMOID);
  d[1].has_bias = 1;
  d[1].bias = -3.0f;
  d[1].scale = 0.5f;
  d[2] = small_desc(CLATTN_VARIANT_LINEAR);
  d[2].feature_map = CLATTN_FEATURE_MAP_RELU;
  d[2].eps = 1e-4f;
  d[3] = small_desc(CLATTN_VARIANT_COSFORMER);
  d[3].cos_m = 64.0f;
  d[3].eps = 1e-5f;
  for (t = 0; t < 4; t++) {
    clattn_plan_t plan = NULL;
    clattn_status st = clattn_plan_create(ctx, &d[t], &plan);
    if (st != CLATTN_SUCCESS) {
      print_error("%s: %s: %s\n", clattn_variant_name(d[t].variant),
                  clattn_status_name(st), clattn_context_error(ctx));
      failures++;
    }
    clattn_plan_destroy(plan);
  }
  assert_int_equal(failures, 0);
}

/* ---- Tile specs ------------------------------------------------------- */

typedef struct spec_case {
  const char *spec;
  const char *says; /* the message must contain this (any case) */
} spec_case;

static void test_api_tiles_strict(void **state) {
  /* A spec means one thing: digits only, each name once, no empty entry. */
  static const spec_case cases[] = {
      {"BLOCK_M=+4", "BLOCK_M"},
      {"BLOCK_M= 4", "BLOCK_M"},
      {"BLOCK_M=4 ", "BLOCK_M"},
      {"BLOCK_M=-1", "BLOCK_M"},
      {"BLOCK_M=0x4", "BLOCK_M"},
      {"BLOCK_M=4.0", "BLOCK_M"},
      {"BLOCK_M=99999999999999999999", "BLOCK_M"},
      {"BLOCK_M=4097", "BLOCK_M"},
      {"BLOCK_M=", "NAME=VALUE"},
      {"BLOCK_M", "NAME=VALUE"},
      {"=4", "NAME=VALUE"},
      {"BLOCK_M=4,", "NAME=VALUE"},
      {",BLOCK_M=4", "NAME=VALUE"},
      {"BLOCK_M=4,,VEC=4", "NAME=VALUE"},
      {"BLOCK_M=4,BLOCK_M=8", "more than once"},
      {"SHAPE=row,BLOCK_M=4,BLOCK_M=4", "more than once"},
      {"SHAPE=cpu,SHAPE=gpu", "more than once"},
      {"SHAPE=row,SHAPE=row", "more than once"},
      {"SHAPE= row", "SHAPE"},
      {"block_m=4", "block_m"},
  };
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = small_desc(CLATTN_VARIANT_SOFTMAX);
  clattn_plan_t plan = NULL;
  clattn_status st;
  size_t t, failures = 0;
  (void)state;
  d.seq_q = 20; /* past the decode path's 16 queries: the flash tiles apply */
  for (t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    const char *msg;
    d.tiles = cases[t].spec;
    plan = NULL;
    st = clattn_plan_create(ctx, &d, &plan);
    msg = clattn_context_error(ctx);
    if (st != CLATTN_ERROR_INVALID_DESCRIPTOR ||
        !contains_ci(msg, cases[t].says)) {
      print_error("tiles \"%s\": got %s, message \"%s\"; want "
                  "CLATTN_ERROR_INVALID_DESCRIPTOR naming %s\n",
                  cases[t].spec, clattn_status_name(st), msg, cases[t].says);
      failures++;
    }
    clattn_plan_destroy(plan);
  }
  /* The strict form itself is accepted and used as given. */
  d.tiles = "SHAPE=row,BLOCK_M=2,BLOCK_N=03,WG=1";
  plan = NULL;
  st = clattn_plan_create(ctx, &d, &plan);
  if (st != CLATTN_SUCCESS) {
    print_error("tiles \"%s\": %s: %s\n", d.tiles, clattn_status_name(st),
                clattn_context_error(ctx));
    failures++;
  } else {
    char line[512];
    clattn_plan_describe(plan, line, sizeof line);
    if (!strstr(line, "shape=row") || !strstr(line, "BLOCK_M=2 ") ||
        !strstr(line, "BLOCK_N=3 ")) {
      print_error("tiles \"%s\": plan \"%s\"\n", d.tiles, line);
      failures++;
    }
  }
  clattn_plan_destroy(plan);
  assert_int_equal(failures, 0);
}

typedef struct budget_case {
  clattn_variant variant;
  int causal;
  size_t d;
  const char *tiles;
  const char *says;
} budget_case;

static void test_api_tiles_past_budget(void **state) {
  /* Tiles whose private arrays or local tiles no device holds are refused
   * before the build (which took PoCL minutes, or aborted it), naming the
   * limit. */
  static const budget_case cases[] = {
      {CLATTN_VARIANT_SOFTMAX, 0, 64, "SHAPE=gpu,BLOCK_N=4096", "local memory"},
      {CLATTN_VARIANT_SOFTMAX, 0, 64, "SHAPE=row,BLOCK_M=64,BLOCK_N=4096",
       "8192"},
      {CLATTN_VARIANT_SIGMOID, 1, 256, "SHAPE=cpu,BLOCK_M=64", "8192"},
      {CLATTN_VARIANT_LINEAR, 0, 256, "SHAPE=cpu,ROWS_D=64,BLOCK_M=64", "8192"},
      {CLATTN_VARIANT_LINEAR, 1, 64, "SHAPE=cpu,CHUNK=512,BLOCK_M=64", "8192"},
      {CLATTN_VARIANT_COSFORMER, 0, 256, "SHAPE=cpu,ROWS_D=32", "8192"},
  };
  clattn_context_t ctx = clattn_test_shared_context();
  size_t t, failures = 0;
  (void)state;
  for (t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    const budget_case *c = &cases[t];
    clattn_desc d = small_desc(c->variant);
    clattn_plan_t plan = NULL;
    clattn_status st;
    const char *msg;
    d.causal = c->causal;
    d.dim = c->d;
    d.dim_v = c->d;
    d.tiles = c->tiles;
    st = clattn_plan_create(ctx, &d, &plan);
    msg = clattn_context_error(ctx);
    if (st != CLATTN_ERROR_INVALID_DESCRIPTOR || !contains_ci(msg, c->says) ||
        !contains_ci(msg, "per work")) {
      print_error("%s D=%zu tiles \"%s\": got %s, message \"%s\"; want "
                  "CLATTN_ERROR_INVALID_DESCRIPTOR naming %s\n",
                  clattn_variant_name(c->variant), c->d, c->tiles,
                  clattn_status_name(st), msg, c->says);
      failures++;
    }
    clattn_plan_destroy(plan);
  }
  assert_int_equal(failures, 0);
}

/* ---- Sizes past what the library can index or allocate ---------------- */

typedef struct huge_case {
  const char *what;
  clattn_variant variant;
  size_t b, h, nq, nk, d;
  const char *tiles;
  clattn_status want;
  const char *says; /* the message must contain this (any case) */
  const char *limit;
} huge_case;

static void test_api_sizes_past_limits(void **state) {
  /* Each shape is refused before anything is built or allocated, with a
   * message that names the limit; none may wrap a byte count into a small
   * workspace. */
  static const huge_case cases[] = {
      {"softmax workspace wraps size_t", CLATTN_VARIANT_SOFTMAX, 33562625,
       33546241, 1, 1, 256, "SHAPE=cpu", CLATTN_ERROR_OUT_OF_RESOURCES,
       "workspace", "bytes"},
      {"softmax workspace past the largest allocation", CLATTN_VARIANT_SOFTMAX,
       1, 1, 1, (size_t)1 << 29, 256, "SHAPE=cpu",
       CLATTN_ERROR_OUT_OF_RESOURCES, "workspace", "at most"},
      {"linear workspace wraps size_t", CLATTN_VARIANT_LINEAR, 32768, 32768, 1,
       (size_t)1 << 22, 256, "SHAPE=cpu,CHUNK=1,BLOCK_M=1,ROWS_D=1",
       CLATTN_ERROR_OUT_OF_RESOURCES, "workspace", "bytes"},
      {"linear batch * heads_kv past int", CLATTN_VARIANT_LINEAR, 33562625,
       33546241, 1, 1, 256, NULL, CLATTN_ERROR_INVALID_DESCRIPTOR,
       "batch * heads_kv", "2147483647"},
      {"cosformer batch * heads_kv past int", CLATTN_VARIANT_COSFORMER, 65536,
       32768, 1, 1, 1, NULL, CLATTN_ERROR_INVALID_DESCRIPTOR,
       "batch * heads_kv", "2147483647"},
      {"seq_q + seq_k past int positions", CLATTN_VARIANT_SOFTMAX, 1, 1,
       1073741823, 1073741823, 1, "SHAPE=row", CLATTN_ERROR_INVALID_DESCRIPTOR,
       "seq_q + seq_k", "2147479551"},
      {"seq_q past its limit", CLATTN_VARIANT_SIGMOID, 1, 1, 1073741824, 1, 1,
       "SHAPE=row", CLATTN_ERROR_INVALID_DESCRIPTOR, "seq_q", "1073741823"},
  };
  clattn_context_t ctx = clattn_test_shared_context();
  size_t t, failures = 0;
  (void)state;
  for (t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    const huge_case *c = &cases[t];
    clattn_desc d;
    clattn_plan_t plan = NULL;
    clattn_status st;
    const char *msg;
    clattn_desc_init(&d, c->variant);
    d.batch = c->b;
    d.heads_q = c->h;
    d.heads_kv = c->h;
    d.seq_q = c->nq;
    d.seq_k = c->nk;
    d.dim = c->d;
    d.tiles = c->tiles;
    st = clattn_plan_create(ctx, &d, &plan);
    msg = clattn_context_error(ctx);
    if (st != c->want || !contains_ci(msg, c->says) ||
        !contains_ci(msg, c->limit)) {
      print_error("%s: got %s (workspace %zu bytes), message \"%s\"; want "
                  "%s naming %s and %s\n",
                  c->what, clattn_status_name(st),
                  clattn_plan_device_bytes(plan), msg,
                  clattn_status_name(c->want), c->says, c->limit);
      failures++;
    }
    clattn_plan_destroy(plan);
  }
  assert_int_equal(failures, 0);
}

/* clattn_desc_check says what clattn_plan_create would, in the same words,
 * and leaves the context's message alone. */
static void test_api_desc_check_matches_plan_create(void **state) {
  clattn_context_t ctx = clattn_test_shared_context();
  size_t t, failures = 0;
  (void)state;
  for (t = 0; t < sizeof bad_cases / sizeof bad_cases[0]; t++) {
    clattn_desc d = bad_desc(t);
    clattn_plan_t plan = NULL;
    char msg[1024], nomsg[1024], before[1024];
    clattn_status want = clattn_plan_create(ctx, &d, &plan);
    clattn_plan_destroy(plan);
    snprintf(before, sizeof before, "%s", clattn_context_error(ctx));
    clattn_status got = clattn_desc_check(ctx, &d, msg, sizeof msg);
    clattn_status got_null = clattn_desc_check(NULL, &d, nomsg, sizeof nomsg);
    /* Without a device the tiles are not checked; every other case fails
     * the same way with or without one. */
    int tiles_case = d.tiles != NULL;
    if (got != want || strcmp(msg, before) != 0 ||
        strcmp(clattn_context_error(ctx), before) != 0 ||
        (tiles_case ? got_null != CLATTN_SUCCESS || nomsg[0] != '\0'
                    : got_null != want || strcmp(nomsg, before) != 0)) {
      print_error("%s: plan_create %s \"%s\"; desc_check %s \"%s\", "
                  "without a context %s \"%s\"; context now \"%s\"\n",
                  bad_cases[t].what, clattn_status_name(want), before,
                  clattn_status_name(got), msg, clattn_status_name(got_null),
                  nomsg, clattn_context_error(ctx));
      failures++;
    }
  }
  assert_int_equal(failures, 0);
}

static void test_api_desc_check_tiles(void **state) {
  static const struct {
    clattn_variant variant;
    const char *tiles;
    int ok;
  } cases[] = {
      {CLATTN_VARIANT_SOFTMAX, "SHAPE=cpu,BLOCK_M=4", 1},
      {CLATTN_VARIANT_SOFTMAX, "SHAPE=gpu,BLOCK_M=32,BLOCK_N=8", 1},
      {CLATTN_VARIANT_SIGMOID, "SHAPE=row", 1},
      {CLATTN_VARIANT_LINEAR, "SHAPE=cpu,CHUNK=32,ROWS_D=2", 1},
      {CLATTN_VARIANT_COSFORMER, "SHAPE=gpu,WG=32", 1},
      {CLATTN_VARIANT_SOFTMAX, "SHAPE=tpu", 0},
      {CLATTN_VARIANT_LINEAR, "SHAPE=row", 0},
      {CLATTN_VARIANT_SOFTMAX, "SHAPE=cpu,KEYS_VEC=5", 0},
      {CLATTN_VARIANT_SOFTMAX, "SHAPE=cpu,VEC=3", 0},
      {CLATTN_VARIANT_LINEAR, "SHAPE=cpu,BLOCK_M=0", 0},
      {CLATTN_VARIANT_SIGMOID, "BLOCK_M", 0},
      {CLATTN_VARIANT_SOFTMAX, "SHAPE=cpu,BLOCK_M=99999", 0},
  };
  clattn_context_t ctx = clattn_test_shared_context();
  size_t t, failures = 0;
  char msg[512];
  (void)state;
  for (t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    clattn_desc d = small_desc(cases[t].variant);
    d.tiles = cases[t].tiles;
    clattn_status st = clattn_desc_check(ctx, &d, msg, sizeof msg);
    int ok = st == CLATTN_SUCCESS && msg[0] == '\0';
    int refused =
        st == CLATTN_ERROR_INVALID_DESCRIPTOR && contains_ci(msg, "tiles");
    if (cases[t].ok ? !ok : !refused) {
      print_error("%s \"%s\": %s \"%s\"\n", clattn_variant_name(d.variant),
                  d.tiles, clattn_status_name(st), msg);
      failures++;
    }
    if (cases[t].ok) {
      /* What the check accepts, a plan builds. */
      clattn_plan_t plan = NULL;
      st = clattn_plan_create(ctx, &d, &plan);
      if (st != CLATTN_SUCCESS) {
        print_error("%s \"%s\": plan_create %s: %s\n",
                    clattn_variant_name(d.variant), d.tiles,
                    clattn_status_name(st), clattn_context_error(ctx));
        failures++;
      }
      clattn_plan_destroy(plan);
    }
  }
  /* CLATTN_TUNE is insisted on like desc.tiles, and desc.tiles wins. */
  {
    clattn_desc d = small_desc(CLATTN_VARIANT_SOFTMAX);
    assert_int_equal(setenv("CLATTN_TUNE", "SHAPE=cpu,KEYS_VEC=3", 1), 0);
    clattn_status st = clattn_desc_check(ctx, &d, msg, sizeof msg);
    if (st != CLATTN_ERROR_INVALID_DESCRIPTOR ||
        !contains_ci(msg, "KEYS_VEC")) {
      print_error("bad CLATTN_TUNE: %s \"%s\"\n", clattn_status_name(st), msg);
      failures++;
    }
    d.tiles = "SHAPE=row";
    st = clattn_desc_check(ctx, &d, msg, sizeof msg);
    if (st != CLATTN_SUCCESS) {
      print_error("desc.tiles over a bad CLATTN_TUNE: %s \"%s\"\n",
                  clattn_status_name(st), msg);
      failures++;
    }
    unsetenv("CLATTN_TUNE");
  }
  assert_int_equal(failures, 0);
}

static void test_api_desc_check_arguments(void **state) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = small_desc(CLATTN_VARIANT_LINEAR);
  char msg[16];
  (void)state;
  /* Valid descriptors of every variant pass, with and without a device. */
  for (int v = 0; v < CLATTN_VARIANT_COUNT; v++) {
    clattn_desc ok = small_desc((clattn_variant)v);
    memset(msg, 'x', sizeof msg);
    assert_int_equal(clattn_desc_check(ctx, &ok, msg, sizeof msg),
                     CLATTN_SUCCESS);
    assert_string_equal(msg, "");
    assert_int_equal(clattn_desc_check(NULL, &ok, NULL, 0), CLATTN_SUCCESS);
  }
  memset(msg, 'x', sizeof msg);
  assert_int_equal(clattn_desc_check(ctx, NULL, msg, sizeof msg),
                   CLATTN_ERROR_INVALID_VALUE);
  assert_non_null(memchr(msg, '\0', sizeof msg));
  assert_true(strlen(msg) > 0);
  assert_int_equal(clattn_desc_check(NULL, NULL, NULL, 0),
                   CLATTN_ERROR_INVALID_VALUE);
  /* A long message is cut to the buffer and terminated. */
  d.batch = 0;
  memset(msg, 'x', sizeof msg);
  assert_int_equal(clattn_desc_check(ctx, &d, msg, sizeof msg),
                   CLATTN_ERROR_INVALID_DESCRIPTOR);
  assert_int_equal(strlen(msg), sizeof msg - 1);
  assert_int_equal(clattn_desc_check(ctx, &d, msg, 0),
                   CLATTN_ERROR_INVALID_DESCRIPTOR);
  /* A context that failed to be created has no device to check against. */
  {
    clattn_context_t bad = NULL;
    char buf[256];
    d.batch = 1;
    assert_int_not_equal(clattn_context_create(&bad, "no-such-device-xyz", 0),
                         CLATTN_SUCCESS);
    assert_int_equal(clattn_desc_check(bad, &d, buf, sizeof buf),
                     CLATTN_ERROR_INVALID_VALUE);
    assert_true(strlen(buf) > 0);
    clattn_context_destroy(bad);
  }
}

/* ---- Buffers ---------------------------------------------------------- */

static void test_api_buffer_too_small(void **state) {
  static const char which[] = {'q', 'k', 'v', 'o', 'l'};
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = small_desc(CLATTN_VARIANT_SOFTMAX);
  clattn_plan_t plan = NULL;
  clattn_status st;
  size_t t, failures = 0;
  api_buffers b;
  (void)state;
  st = clattn_plan_create(ctx, &d, &plan);
  assert_int_equal(st, CLATTN_SUCCESS);
  for (t = 0; t < sizeof which; t++) {
    assert_int_equal(api_buffers_create(&b, ctx, &d, which[t], 4), CL_SUCCESS);
    st = clattn_plan_run(plan, b.q, b.k, b.v, b.o, b.lse, 0, NULL, NULL);
    if (st != CLATTN_ERROR_INVALID_BUFFER_SIZE) {
      print_error("%c one float short: got %s (%s)\n", which[t],
                  clattn_status_name(st), clattn_context_error(ctx));
      failures++;
    }
    clFinish(clattn_context_queue(ctx));
    api_buffers_release(&b);
  }
  /* The exact sizes pass, as does a larger output. */
  assert_int_equal(api_buffers_create(&b, ctx, &d, 0, 0), CL_SUCCESS);
  st = clattn_plan_run(plan, b.q, b.k, b.v, b.o, b.lse, 0, NULL, NULL);
  if (st != CLATTN_SUCCESS)
    print_error("exact sizes: %s (%s)\n", clattn_status_name(st),
                clattn_context_error(ctx));
  assert_int_equal(st, CLATTN_SUCCESS);
  clFinish(clattn_context_queue(ctx));
  clReleaseMemObject(b.o);
  b.o = clCreateBuffer(clattn_context_cl(ctx), CL_MEM_READ_WRITE, 1 << 16, NULL,
                       NULL);
  assert_non_null(b.o);
  st = clattn_plan_run(plan, b.q, b.k, b.v, b.o, b.lse, 0, NULL, NULL);
  assert_int_equal(st, CLATTN_SUCCESS);
  clFinish(clattn_context_queue(ctx));
  api_buffers_release(&b);
  clattn_plan_destroy(plan);
  assert_int_equal(failures, 0);
}

static void test_api_lse_refused_for_other_variants(void **state) {
  static const clattn_variant variants[] = {
      CLATTN_VARIANT_SIGMOID, CLATTN_VARIANT_LINEAR, CLATTN_VARIANT_COSFORMER};
  clattn_context_t ctx = clattn_test_shared_context();
  size_t t, failures = 0;
  (void)state;
  for (t = 0; t < sizeof variants / sizeof variants[0]; t++) {
    clattn_desc d = small_desc(variants[t]);
    clattn_plan_t plan = NULL;
    clattn_test_problem p;
    api_buffers b;
    clattn_status st = clattn_plan_create(ctx, &d, &plan);
    float *lse;
    if (st != CLATTN_SUCCESS) {
      print_error("%s: plan: %s (%s)\n", clattn_variant_name(d.variant),
                  clattn_status_name(st), clattn_context_error(ctx));
      failures++;
      continue;
    }
    assert_int_equal(api_buffers_create(&b, ctx, &d, 0, 0), CL_SUCCESS);
    st = clattn_plan_run(plan, b.q, b.k, b.v, b.o, b.lse, 0, NULL, NULL);
    if ((st != CLATTN_ERROR_INVALID_VALUE &&
         st != CLATTN_ERROR_INVALID_DESCRIPTOR) ||
        !contains_ci(clattn_context_error(ctx), "lse")) {
      print_error("%s: run with lse: %s (\"%s\")\n",
                  clattn_variant_name(d.variant), clattn_status_name(st),
                  clattn_context_error(ctx));
      failures++;
    }
    clFinish(clattn_context_queue(ctx));
    api_buffers_release(&b);
    clattn_test_problem_init(&p, &d, 7);
    lse = calloc(p.n.lse, sizeof *lse);
    assert_non_null(lse);
    st = clattn_plan_run_host(plan, p.q, p.k, p.v, p.o, lse);
    if ((st != CLATTN_ERROR_INVALID_VALUE &&
         st != CLATTN_ERROR_INVALID_DESCRIPTOR) ||
        !contains_ci(clattn_context_error(ctx), "lse")) {
      print_error("%s: run_host with lse: %s (\"%s\")\n",
                  clattn_variant_name(d.variant), clattn_status_name(st),
                  clattn_context_error(ctx));
      failures++;
    }
    free(lse);
    clattn_test_problem_free(&p);
    clattn_plan_destroy(plan);
  }
  assert_int_equal(failures, 0);
}

/* ---- Devices and contexts --------------------------------------------- */

static void test_api_bad_selector(void **state) {
  static const char *selectors[] = {"no-such-device-xyz", "4096", "0:4096",
                                    "4096:0"};
  cl_uint index = 12345;
  size_t t;
  (void)state;
  for (t = 0; t < sizeof selectors / sizeof selectors[0]; t++) {
    clattn_context_t ctx = NULL;
    clattn_status st = clattn_device_find(selectors[t], &index);
    if (st != CLATTN_ERROR_DEVICE_NOT_FOUND)
      print_error("find(\"%s\"): %s\n", selectors[t], clattn_status_name(st));
    assert_int_equal(st, CLATTN_ERROR_DEVICE_NOT_FOUND);
    st = clattn_context_create(&ctx, selectors[t], 0);
    assert_int_equal(st, CLATTN_ERROR_DEVICE_NOT_FOUND);
    assert_non_null(ctx);
    assert_non_null(clattn_context_error(ctx));
    assert_true(clattn_context_error(ctx)[0] != '\0');
    clattn_context_destroy(ctx);
  }
}

static void test_api_selector_from_environment(void **state) {
  /* A CLATTN_DEVICE that names nothing is an error, not a silent fall back
   * to another device. */
  const char *old = getenv("CLATTN_DEVICE");
  char *saved = old ? strdup(old) : NULL;
  cl_uint index;
  clattn_status st;
  (void)state;
  setenv("CLATTN_DEVICE", "no-such-device-xyz", 1);
  st = clattn_device_find(NULL, &index);
  if (saved)
    setenv("CLATTN_DEVICE", saved, 1);
  else
    unsetenv("CLATTN_DEVICE");
  free(saved);
  assert_int_equal(st, CLATTN_ERROR_DEVICE_NOT_FOUND);
}

static void test_api_selectors(void **state) {
  clattn_device_profile prof, other;
  cl_uint count = 0, index = 12345, t;
  char upper[128];
  (void)state;
  clattn_test_device_or_skip();
  assert_int_equal(clattn_device_count(&count), CLATTN_SUCCESS);
  assert_true(count >= 1);
  assert_int_equal(clattn_device_find("0", &index), CLATTN_SUCCESS);
  assert_int_equal(index, 0);
  assert_int_equal(clattn_device_profile_get(0, &prof), CLATTN_SUCCESS);
  assert_int_equal(prof.index, 0);
  assert_non_null(prof.device);
  assert_true(prof.name[0] != '\0');
  assert_true(prof.compute_units >= 1);
  assert_true(prof.c_major >= 1);
  assert_int_equal(prof.is_cpu, (prof.type & CL_DEVICE_TYPE_CPU) != 0);
  assert_int_equal(prof.is_gpu, (prof.type & CL_DEVICE_TYPE_GPU) != 0);
  {
    char pd[32];
    snprintf(pd, sizeof pd, "%u:%u", prof.platform_index, prof.device_index);
    assert_int_equal(clattn_device_find(pd, &index), CLATTN_SUCCESS);
    assert_int_equal(index, 0);
  }
  /* Names match case-insensitively. */
  for (t = 0; t < sizeof upper - 1 && prof.name[t]; t++)
    upper[t] = (char)toupper((unsigned char)prof.name[t]);
  upper[t] = '\0';
  assert_int_equal(clattn_device_find(upper, &index), CLATTN_SUCCESS);
  assert_int_equal(clattn_device_profile_get(index, &other), CLATTN_SUCCESS);
  assert_true(contains_ci(other.name, upper) ||
              contains_ci(other.vendor, upper) ||
              contains_ci(other.platform_name, upper));
  /* One past the last device. */
  {
    clattn_status st = clattn_device_profile_get(count, &other);
    assert_true(st == CLATTN_ERROR_DEVICE_NOT_FOUND ||
                st == CLATTN_ERROR_INVALID_VALUE);
  }
}

static void test_api_context_accessors(void **state) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_device_profile prof;
  cl_device_id dev = NULL;
  cl_context cl = NULL;
  (void)state;
  assert_non_null(clattn_context_cl(ctx));
  assert_non_null(clattn_context_device(ctx));
  assert_non_null(clattn_context_queue(ctx));
  assert_int_equal(clattn_context_profile(ctx, &prof), CLATTN_SUCCESS);
  assert_ptr_equal(prof.device, clattn_context_device(ctx));
  assert_int_equal(clGetCommandQueueInfo(clattn_context_queue(ctx),
                                         CL_QUEUE_DEVICE, sizeof dev, &dev,
                                         NULL),
                   CL_SUCCESS);
  assert_ptr_equal(dev, clattn_context_device(ctx));
  assert_int_equal(clGetCommandQueueInfo(clattn_context_queue(ctx),
                                         CL_QUEUE_CONTEXT, sizeof cl, &cl,
                                         NULL),
                   CL_SUCCESS);
  assert_ptr_equal(cl, clattn_context_cl(ctx));
}

static void test_api_context_profiling_flag(void **state) {
  clattn_context_t ctx = NULL;
  cl_command_queue_properties props = 0;
  clattn_status st;
  (void)state;
  clattn_test_device_or_skip();
  st = clattn_context_create(&ctx, NULL, CLATTN_CONTEXT_PROFILING);
  if (st != CLATTN_SUCCESS)
    print_error("%s: %s\n", clattn_status_name(st), clattn_context_error(ctx));
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_int_equal(clGetCommandQueueInfo(clattn_context_queue(ctx),
                                         CL_QUEUE_PROPERTIES, sizeof props,
                                         &props, NULL),
                   CL_SUCCESS);
  assert_true(props & CL_QUEUE_PROFILING_ENABLE);
  clattn_context_destroy(ctx);
}

static void test_api_error_message(void **state) {
  clattn_context_t ctx = NULL;
  clattn_desc d = small_desc(CLATTN_VARIANT_SOFTMAX);
  clattn_plan_t plan = NULL;
  const char *msg;
  char small[8];
  size_t len;
  (void)state;
  clattn_test_device_or_skip();
  assert_int_equal(clattn_context_create(&ctx, NULL, 0), CLATTN_SUCCESS);
  assert_string_equal(clattn_context_error(ctx), "");
  d.batch = 0;
  assert_int_equal(clattn_plan_create(ctx, &d, &plan),
                   CLATTN_ERROR_INVALID_DESCRIPTOR);
  clattn_plan_destroy(plan);
  msg = clattn_context_error(ctx);
  assert_true(strlen(msg) > sizeof small);
  len = clattn_context_error_copy(ctx, small, sizeof small);
  assert_int_equal(len, strlen(msg));
  assert_int_equal(strlen(small), sizeof small - 1);
  assert_memory_equal(small, msg, sizeof small - 1);
  assert_int_equal(clattn_context_error_copy(ctx, NULL, 0), len);
  clattn_context_destroy(ctx);
}

/* Plain OpenCL objects for the device clattn would pick by default. */
static void make_cl_objects(cl_command_queue_properties props, cl_context *cl,
                            cl_device_id *dev, cl_command_queue *queue,
                            cl_int *err) {
  clattn_device_profile prof;
  cl_uint index = 0;
  cl_context_properties cprops[3];
  assert_int_equal(clattn_device_find(NULL, &index), CLATTN_SUCCESS);
  assert_int_equal(clattn_device_profile_get(index, &prof), CLATTN_SUCCESS);
  *dev = prof.device;
  cprops[0] = CL_CONTEXT_PLATFORM;
  cprops[1] = (cl_context_properties)prof.platform;
  cprops[2] = 0;
  *cl = clCreateContext(cprops, 1, dev, NULL, NULL, err);
  assert_int_equal(*err, CL_SUCCESS);
  *queue = clCreateCommandQueue(*cl, *dev, props, err);
}

static cl_uint ref_count_queue(cl_command_queue queue) {
  cl_uint n = 0;
  clGetCommandQueueInfo(queue, CL_QUEUE_REFERENCE_COUNT, sizeof n, &n, NULL);
  return n;
}

static cl_uint ref_count_context(cl_context cl) {
  cl_uint n = 0;
  clGetContextInfo(cl, CL_CONTEXT_REFERENCE_COUNT, sizeof n, &n, NULL);
  return n;
}

/* A runtime may drop the references its finished commands held a little
 * after clFinish returns (PoCL does so on its own threads, later still while
 * it compiles): reference counts are read once they stop moving back, for
 * at most 5 s. A leak never comes back and still fails. */
static void settle(void) {
  struct timespec ts = {0, 10 * 1000 * 1000};
  nanosleep(&ts, NULL);
}

static cl_uint settled_queue_refs(cl_command_queue queue, cl_uint want) {
  cl_uint n = ref_count_queue(queue);
  for (int i = 0; i < 500 && n != want; i++) {
    settle();
    n = ref_count_queue(queue);
  }
  return n;
}

static cl_uint settled_context_refs(cl_context cl, cl_uint want) {
  cl_uint n = ref_count_context(cl);
  for (int i = 0; i < 500 && n != want; i++) {
    settle();
    n = ref_count_context(cl);
  }
  return n;
}

/* Runs a few plans on an adopted queue, destroys the clattn context and
 * checks that the caller's objects are whole. */
static void check_adopted(cl_context cl, cl_device_id dev,
                          cl_command_queue queue) {
  clattn_context_t ctx = NULL;
  clattn_desc descs[2];
  cl_mem buf;
  cl_event written = NULL;
  cl_int err;
  float probe[4] = {1, 2, 3, 4}, back[4] = {0};
  size_t t;
  int ok = 1;
  cl_uint queue_refs = ref_count_queue(queue);
  cl_uint context_refs = ref_count_context(cl);
  clattn_status st;
  /* Each missing object is refused on its own; *out is set regardless. */
  assert_int_equal(clattn_context_create_from_cl(&ctx, NULL, dev, queue),
                   CLATTN_ERROR_INVALID_VALUE);
  clattn_context_destroy(ctx);
  ctx = NULL;
  assert_int_equal(clattn_context_create_from_cl(&ctx, cl, NULL, queue),
                   CLATTN_ERROR_INVALID_VALUE);
  clattn_context_destroy(ctx);
  ctx = NULL;
  assert_int_equal(clattn_context_create_from_cl(&ctx, cl, dev, NULL),
                   CLATTN_ERROR_INVALID_VALUE);
  clattn_context_destroy(ctx);
  ctx = NULL;
  st = clattn_context_create_from_cl(&ctx, cl, dev, queue);
  if (st != CLATTN_SUCCESS)
    print_error("%s: %s\n", clattn_status_name(st), clattn_context_error(ctx));
  assert_int_equal(st, CLATTN_SUCCESS);
  assert_ptr_equal(clattn_context_cl(ctx), cl);
  assert_ptr_equal(clattn_context_device(ctx), dev);
  assert_ptr_equal(clattn_context_queue(ctx), queue);
  descs[0] = small_desc(CLATTN_VARIANT_SOFTMAX);
  descs[0].causal = 1;
  /* One query against many keys: the shape most likely to be split into
   * several kernels that must be ordered on an out-of-order queue. */
  descs[1] = small_desc(CLATTN_VARIANT_SOFTMAX);
  descs[1].seq_q = 1;
  descs[1].seq_k = 2000;
  descs[1].heads_q = 4;
  for (t = 0; t < 2; t++) {
    clattn_test_problem p;
    clattn_test_problem_init(&p, &descs[t], 200 + t);
    st = clattn_test_problem_run_host(&p, ctx);
    ok &= st == CLATTN_SUCCESS &&
          clattn_test_check("O", p.o, p.ref_o, p.n.o, TOL_F32) &&
          clattn_test_check("LSE", p.lse, p.ref_lse, p.n.lse, TOL_F32);
    clattn_test_problem_free(&p);
  }
  clattn_context_destroy(ctx);
  assert_true(ok);
  assert_int_equal(clFinish(queue), CL_SUCCESS);
  /* Back to the counts before adoption. They are read after clFinish
   * because a runtime may hold completed events, which retain their queue,
   * until then; the queue itself retains the context. */
  assert_int_equal(settled_queue_refs(queue, queue_refs), queue_refs);
  assert_int_equal(settled_context_refs(cl, context_refs), context_refs);
  buf = clCreateBuffer(cl, CL_MEM_READ_WRITE, sizeof probe, NULL, &err);
  assert_int_equal(err, CL_SUCCESS);
  /* A blocking write only promises that `probe` may be reused when it
   * returns, not that the write has executed: on an out-of-order queue the
   * read must name the write's event, or it may run first (Intel's CPU
   * runtime does so every time). */
  assert_int_equal(clEnqueueWriteBuffer(queue, buf, CL_TRUE, 0, sizeof probe,
                                        probe, 0, NULL, &written),
                   CL_SUCCESS);
  assert_int_equal(clEnqueueReadBuffer(queue, buf, CL_TRUE, 0, sizeof back,
                                       back, 1, &written, NULL),
                   CL_SUCCESS);
  clReleaseEvent(written);
  assert_memory_equal(back, probe, sizeof probe);
  clReleaseMemObject(buf);
}

static void test_api_adopt_cl_objects(void **state) {
  cl_context cl;
  cl_device_id dev;
  cl_command_queue queue;
  cl_int err;
  (void)state;
  clattn_test_device_or_skip();
  make_cl_objects(0, &cl, &dev, &queue, &err);
  assert_int_equal(err, CL_SUCCESS);
  check_adopted(cl, dev, queue);
  assert_int_equal(clReleaseCommandQueue(queue), CL_SUCCESS);
  assert_int_equal(clReleaseContext(cl), CL_SUCCESS);
}

static void test_api_adopt_out_of_order_queue(void **state) {
  cl_context cl;
  cl_device_id dev;
  cl_command_queue queue;
  cl_int err;
  (void)state;
  clattn_test_device_or_skip();
  make_cl_objects(CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &cl, &dev, &queue,
                  &err);
  if (err != CL_SUCCESS) {
    /* Not every device has out-of-order queues. */
    clReleaseContext(cl);
    skip();
  }
  check_adopted(cl, dev, queue);
  assert_int_equal(clReleaseCommandQueue(queue), CL_SUCCESS);
  assert_int_equal(clReleaseContext(cl), CL_SUCCESS);
}

static void test_api_create_destroy_cycles(void **state) {
  /* Leaks or stale cache entries across handles show up as failures or
   * crashes long before 200 cycles on most runtimes. */
  clattn_desc d = small_desc(CLATTN_VARIANT_SOFTMAX);
  int t;
  (void)state;
  clattn_test_device_or_skip();
  for (t = 0; t < 200; t++) {
    clattn_context_t ctx = NULL;
    clattn_plan_t plan = NULL;
    clattn_status st = clattn_context_create(&ctx, NULL, 0);
    if (st == CLATTN_SUCCESS)
      st = clattn_plan_create(ctx, &d, &plan);
    if (st == CLATTN_SUCCESS && t % 50 == 0) {
      clattn_test_problem p;
      int ok;
      clattn_test_problem_init(&p, &d, (uint64_t)t);
      st = clattn_plan_run_host(plan, p.q, p.k, p.v, p.o, p.lse);
      ok = st != CLATTN_SUCCESS ||
           clattn_test_check("O", p.o, p.ref_o, p.n.o, TOL_F32);
      clattn_test_problem_free(&p);
      assert_true(ok);
    }
    if (st != CLATTN_SUCCESS)
      print_error("cycle %d: %s: %s\n", t, clattn_status_name(st),
                  clattn_context_error(ctx));
    clattn_plan_destroy(plan);
    clattn_context_destroy(ctx);
    assert_int_equal(st, CLATTN_SUCCESS);
  }
}

static void test_api_plan_queries(void **state) {
  clattn_context_t ctx = clattn_test_shared_context();
  clattn_desc d = small_desc(CLATTN_VARIANT_SOFTMAX);
  clattn_plan_t plan = NULL;
  char big[1024], small[8];
  size_t len;
  (void)state;
  assert_int_equal(clattn_plan_create(ctx, &d, &plan), CLATTN_SUCCESS);
  (void)clattn_plan_device_bytes(plan);
  len = clattn_plan_describe(plan, NULL, 0);
  assert_true(len > 0);
  assert_int_equal(clattn_plan_describe(plan, big, sizeof big), len);
  assert_true(len < sizeof big);
  assert_int_equal(strlen(big), len);
  assert_null(strchr(big, '\n'));
  memset(small, 'x', sizeof small);
  assert_int_equal(clattn_plan_describe(plan, small, sizeof small), len);
  assert_int_equal(strlen(small), len < sizeof small ? len : sizeof small - 1);
  clattn_plan_destroy(plan);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_api_status_strings),
      cmocka_unit_test(test_api_version),
      cmocka_unit_test(test_api_names_round_trip),
      cmocka_unit_test(test_api_names_out_of_range),
      cmocka_unit_test(test_api_half_conversions),
      cmocka_unit_test(test_api_desc_init_defaults),
      cmocka_unit_test(test_api_parse_null_arguments),
      cmocka_unit_test(test_api_null_arguments_no_device),
      cmocka_unit_test(test_api_error_copy_null_context),
      cmocka_unit_test(test_api_null_arguments),
      cmocka_unit_test(test_api_invalid_descriptors),
      cmocka_unit_test(test_api_valid_descriptors),
      cmocka_unit_test(test_api_sizes_past_limits),
      cmocka_unit_test(test_api_tiles_strict),
      cmocka_unit_test(test_api_tiles_past_budget),
      cmocka_unit_test(test_api_desc_check_matches_plan_create),
      cmocka_unit_test(test_api_desc_check_tiles),
      cmocka_unit_test(test_api_desc_check_arguments),
      cmocka_unit_test(test_api_buffer_too_small),
      cmocka_unit_test(test_api_lse_refused_for_other_variants),
      cmocka_unit_test(test_api_bad_selector),
      cmocka_unit_test(test_api_selector_from_environment),
      cmocka_unit_test(test_api_selectors),
      cmocka_unit_test(test_api_context_accessors),
      cmocka_unit_test(test_api_context_profiling_flag),
      cmocka_unit_test(test_api_error_message),
      cmocka_unit_test(test_api_adopt_cl_objects),
      cmocka_unit_test(test_api_adopt_out_of_order_queue),
      cmocka_unit_test(test_api_create_destroy_cycles),
      cmocka_unit_test(test_api_plan_queries),
  };
  return cmocka_run_group_tests(tests, NULL, clattn_test_shared_teardown);
}
