/*
 * test_build_warnings.c - every program configuration the tile chooser
 * produces for softmax and sigmoid over a set of shapes (head sizes, Dv
 * unlike D, f32/f16, causal or not, short and long sequences, and the other
 * kernel shapes) builds and runs without a compiler warning on this device.
 *
 * Runtimes report warnings two ways: in the build log (clattn keeps it and
 * clattn_plan_describe shows it) and, for code generation at the first
 * launch (PoCL), on stderr. The test watches both: it turns off the disk
 * caches that would skip compilation, sends stderr to a file while plans
 * are built and run, and first checks with a program that must warn that
 * this device reports warnings at all (otherwise the test skips).
 */
#define _POSIX_C_SOURCE 200809L

#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* stderr goes to a temporary file between capture_begin and capture_end,
 * which returns what was written (heap string). */
static int saved_fd = -1;
static FILE *capture_file;

static void capture_begin(void) {
  fflush(stderr);
  capture_file = tmpfile();
  assert_non_null(capture_file);
  saved_fd = dup(STDERR_FILENO);
  assert_true(saved_fd >= 0);
  assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

static char *capture_end(void) {
  fflush(stderr);
  dup2(saved_fd, STDERR_FILENO);
  close(saved_fd);
  long n = ftell(capture_file);
  char *text = malloc((size_t)(n > 0 ? n : 0) + 1);
  assert_non_null(text);
  rewind(capture_file);
  size_t got = n > 0 ? fread(text, 1, (size_t)n, capture_file) : 0;
  text[got] = '\0';
  fclose(capture_file);
  return text;
}

/* A warning on a line other than NVIDIA's note on every kernel ("is a
 * kernel, so overriding noinline attribute"), which clattn's own filter
 * drops as well since it says nothing about the source. */
static int has_warning(const char *s) {
  while (*s) {
    const char *end = strchr(s, '\n');
    size_t len = end ? (size_t)(end - s) : strlen(s);
    int benign = 0, warn = 0;
    for (size_t i = 0; i < len; i++) {
      if ((s[i] == 'w' || s[i] == 'W') && len - i >= 7 &&
          strncmp(s + i + 1, "arning", 6) == 0)
        warn = 1;
      if (len - i >= 45 &&
          strncmp(s + i, "is a kernel, so overriding noinline attribute", 45) ==
              0)
        benign = 1;
    }
    if (warn && !benign)
      return 1;
    s += len;
    if (*s)
      s++;
  }
  return 0;
}

/* Whether this device's compiler reports warnings where the test looks: a
 * #warning directive must show in the log or on stderr. */
static int device_reports_warnings(clattn_context_t ctx) {
  static const char *src = "#warning clattn control\n"
                           "__kernel void k(__global int *p) { p[0] = 1; }\n";
  clattn_device_profile prof;
  assert_int_equal(clattn_context_profile(ctx, &prof), CLATTN_SUCCESS);
  cl_int err = CL_SUCCESS;
  cl_context cl = clCreateContext(NULL, 1, &prof.device, NULL, NULL, &err);
  assert_int_equal(err, CL_SUCCESS);
  cl_program prog = clCreateProgramWithSource(cl, 1, &src, NULL, &err);
  assert_int_equal(err, CL_SUCCESS);
  capture_begin();
  err = clBuildProgram(prog, 1, &prof.device, "", NULL, NULL);
  char *out = capture_end();
  char log[4096] = "";
  clGetProgramBuildInfo(prog, prof.device, CL_PROGRAM_BUILD_LOG, sizeof log,
                        log, NULL);
  log[sizeof log - 1] = '\0';
  int ok = err == CL_SUCCESS && (has_warning(log) || has_warning(out));
  free(out);
  clReleaseProgram(prog);
  clReleaseContext(cl);
  return ok;
}

typedef struct shape {
  size_t nq, nk, d, dv;
} shape;

/* The whole score pipeline on (softcap, ALiBi, both mods, a window). */
static const float pipeline_slopes[1] = {0.25f};
static int with_pipeline;

/* Builds and runs one plan with stderr captured; fails on any warning. */
static int check_plan(clattn_context_t ctx, clattn_variant variant,
                      const shape *s, clattn_dtype dtype, int causal,
                      const char *tiles) {
  clattn_desc desc;
  clattn_desc_init(&desc, variant);
  if (with_pipeline) {
    desc.softcap = 5.0f;
    desc.alibi_slopes = pipeline_slopes;
    desc.window_left = 100;
    desc.score_mod = "score - 0.01f * (float)(i - j)";
    desc.mask_mod = "(i / 64) == (j / 64) || j % 3 == 0";
  }
  desc.dtype = dtype;
  desc.batch = 1;
  desc.heads_q = 1;
  desc.seq_q = s->nq;
  desc.seq_k = s->nk;
  desc.dim = s->d;
  desc.dim_v = s->dv;
  desc.causal = causal;
  desc.tiles = tiles;
  clattn_test_sizes n;
  clattn_test_sizes_get(&desc, &n);
  float *q = calloc(n.q, sizeof *q), *k = calloc(n.k, sizeof *k);
  float *v = calloc(n.v, sizeof *v), *o = calloc(n.o, sizeof *o);
  assert_true(q && k && v && o);
  clattn_test_fill_uniform(q, n.q, 1, -1.0f, 1.0f);
  clattn_test_fill_uniform(k, n.k, 2, -1.0f, 1.0f);
  clattn_test_fill_uniform(v, n.v, 3, -1.0f, 1.0f);
  clattn_plan_t plan = NULL;
  capture_begin();
  clattn_status st = clattn_plan_create(ctx, &desc, &plan);
  if (st == CLATTN_SUCCESS)
    st = clattn_plan_run_host(plan, q, k, v, o, NULL);
  char *out = capture_end();
  char line[2048] = "";
  clattn_plan_describe(plan, line, sizeof line);
  int ok = st == CLATTN_SUCCESS && !has_warning(out) && !has_warning(line);
  if (!ok)
    print_error("%s %s Nq=%zu Nk=%zu D=%zu Dv=%zu causal=%d tiles=%s: %s\n%s\n"
                "%s\n",
                clattn_variant_name(variant), clattn_dtype_name(dtype), s->nq,
                s->nk, s->d, s->dv, causal, tiles ? tiles : "(chosen)",
                clattn_status_name(st), line, out);
  free(out);
  clattn_plan_destroy(plan);
  free(q);
  free(k);
  free(v);
  free(o);
  return ok;
}

static void test_build_warnings_none(void **state) {
  (void)state;
  if (!clattn_test_device_or_skip())
    return;
  clattn_context_t ctx = clattn_test_context_create();
  if (!device_reports_warnings(ctx)) {
    clattn_context_destroy(ctx);
    print_message("this device reports no compiler warnings to look for\n");
    skip();
  }
  /* Sequence lengths change the chooser's rows and key block; head sizes
   * its vector widths and slices. */
  static const shape shapes[] = {
      {300, 700, 1, 1},     {300, 700, 40, 40},   {300, 700, 64, 64},
      {300, 700, 128, 128}, {300, 700, 256, 256}, {300, 700, 64, 40},
      {300, 700, 128, 256}, {300, 700, 40, 128},  {1, 5, 64, 64},
      {3, 4096, 128, 128},
  };
  static const clattn_variant variants[] = {CLATTN_VARIANT_SOFTMAX,
                                            CLATTN_VARIANT_SIGMOID};
  int failures = 0, plans = 0;
  for (size_t vi = 0; vi < 2; vi++)
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
      for (int causal = 0; causal <= 1; causal++)
        for (int f16 = 0; f16 <= 1; f16++) {
          /* f16 changes loads and stores only: once per head size. */
          if (f16 && causal)
            continue;
          failures += !check_plan(ctx, variants[vi], &shapes[si],
                                  f16 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32,
                                  causal, NULL);
          plans++;
        }
  /* The other kernel shapes at their chosen tiles. */
  static const char *const others[] = {"SHAPE=gpu", "SHAPE=row"};
  for (size_t vi = 0; vi < 2; vi++)
    for (size_t oi = 0; oi < 2; oi++)
      for (size_t si = 0; si < 3; si++) {
        static const shape few[] = {
            {300, 700, 64, 64}, {300, 700, 40, 128}, {300, 700, 256, 256}};
        failures += !check_plan(ctx, variants[vi], &few[si], CLATTN_DTYPE_F32,
                                1, others[oi]);
        plans++;
      }
  print_message("%d plans built and run, %d with warnings\n", plans, failures);
  clattn_context_destroy(ctx);
  assert_int_equal(failures, 0);
}

/* The score pipeline's code in each kernel shape and both variants. */
static void test_build_warnings_pipeline(void **state) {
  (void)state;
  if (!clattn_test_device_or_skip())
    return;
  clattn_context_t ctx = clattn_test_context_create();
  if (!device_reports_warnings(ctx)) {
    clattn_context_destroy(ctx);
    print_message("this device reports no compiler warnings to look for\n");
    skip();
  }
  static const char *const shapes[] = {"SHAPE=cpu", "SHAPE=gpu", "SHAPE=row"};
  static const shape one = {300, 700, 64, 40};
  int failures = 0, plans = 0;
  with_pipeline = 1;
  for (int vi = 0; vi < 2; vi++)
    for (size_t si = 0; si < 3; si++) {
      failures +=
          !check_plan(ctx, vi ? CLATTN_VARIANT_SIGMOID : CLATTN_VARIANT_SOFTMAX,
                      &one, CLATTN_DTYPE_F32, (int)si % 2, shapes[si]);
      plans++;
    }
  with_pipeline = 0;
  print_message("%d plans built and run, %d with warnings\n", plans, failures);
  clattn_context_destroy(ctx);
  assert_int_equal(failures, 0);
}

int main(void) {
  /* Compile every program: cached binaries carry no build log. */
  setenv("CLATTN_CACHE", "0", 1);
  setenv("POCL_KERNEL_CACHE", "0", 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_build_warnings_none),
      cmocka_unit_test(test_build_warnings_pipeline),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
