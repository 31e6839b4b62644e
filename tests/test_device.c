/*
 * test_device.c - device selectors. Every selector example the README gives
 * (the CLATTN_DEVICE row of its environment table, and each
 * `CLATTN_DEVICE=...` or `--device ...` in its text) is resolved on the
 * devices of this machine. A selector must pick a device it describes, or,
 * when no device here fits it, fail with CLATTN_ERROR_DEVICE_NOT_FOUND and
 * the documented message; the expected outcome is worked out independently
 * from the platform and device strings.
 */
#include "testutil.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CLATTN_README
#error "CLATTN_README must name the README to read the examples from"
#endif

#define MAX_EXAMPLES 64
#define MAX_SELECTOR 64

/* Selectors that must resolve wherever the README says so, whatever it
 * holds: the vendor aliases, which also guard against the README dropping
 * them silently. */
static const char *const fixed_examples[] = {"pocl", "intel", "nvidia", "amd",
                                             "cpu",  "gpu",   "0",      "0:0"};

typedef struct examples {
  size_t count;
  char sel[MAX_EXAMPLES][MAX_SELECTOR];
} examples;

static void add_example(examples *ex, const char *s, size_t n) {
  if (n == 0 || n >= MAX_SELECTOR || ex->count == MAX_EXAMPLES)
    return;
  for (size_t i = 0; i < ex->count; i++)
    if (strlen(ex->sel[i]) == n && strncmp(ex->sel[i], s, n) == 0)
      return;
  memcpy(ex->sel[ex->count], s, n);
  ex->sel[ex->count][n] = '\0';
  ex->count++;
}

/* A selector written after `CLATTN_DEVICE=` or `--device `: up to a space,
 * quote or backtick. "SEL" is the placeholder of a usage line. */
static void add_after(examples *ex, const char *line, const char *prefix) {
  for (const char *p = strstr(line, prefix); p; p = strstr(p + 1, prefix)) {
    const char *s = p + strlen(prefix), *e = s;
    while (*e && !isspace((unsigned char)*e) && !strchr("`'\"|)]", *e))
      e++;
    if (!(e - s == 3 && strncmp(s, "SEL", 3) == 0) && *s != '$')
      add_example(ex, s, (size_t)(e - s));
  }
}

static void read_readme_examples(examples *ex) {
  FILE *f = fopen(CLATTN_README, "r");
  char line[4096];
  int in_row = 0;
  if (!f)
    fail_msg("cannot read %s", CLATTN_README);
  while (fgets(line, sizeof line, f)) {
    /* Every backticked word of the environment table's CLATTN_DEVICE row
     * after its first cell is an example. */
    in_row = strncmp(line, "| `CLATTN_DEVICE` |", 19) == 0;
    if (in_row) {
      const char *p = line + 19;
      while ((p = strchr(p, '`')) != NULL) {
        const char *e = strchr(p + 1, '`');
        if (!e)
          break;
        add_example(ex, p + 1, (size_t)(e - p - 1));
        p = e + 1;
      }
    }
    add_after(ex, line, "CLATTN_DEVICE=");
    add_after(ex, line, "--device ");
  }
  fclose(f);
}

/* What a selector means, worked out without clattn_device_find. */
static int is_number(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s))
      return 0;
  return 1;
}

static int contains_ci(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  for (; *hay; hay++) {
    size_t i = 0;
    while (i < n && hay[i] &&
           tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
      i++;
    if (i == n)
      return 1;
  }
  return 0;
}

static void platform_str(cl_platform_id p, cl_platform_info what, char *buf,
                         size_t size) {
  buf[0] = '\0';
  if (clGetPlatformInfo(p, what, size, buf, NULL) != CL_SUCCESS)
    buf[0] = '\0';
  buf[size - 1] = '\0';
}

/* 0: the platform's name, vendor or version holds sel; 1: only the device's
 * vendor or name; 2: neither. */
static int name_tier(const clattn_device_profile *prof, const char *sel) {
  char vendor[256];
  platform_str(prof->platform, CL_PLATFORM_VENDOR, vendor, sizeof vendor);
  if (contains_ci(prof->platform_name, sel) || contains_ci(vendor, sel) ||
      contains_ci(prof->platform_version, sel))
    return 0;
  if (contains_ci(prof->vendor, sel) || contains_ci(prof->name, sel))
    return 1;
  return 2;
}

/* The index a selector should give, or -1 when no device fits it. */
static long expected_index(const char *sel, cl_uint count) {
  static const struct {
    const char *name;
    cl_device_type type;
  } types[] = {{"cpu", CL_DEVICE_TYPE_CPU},
               {"gpu", CL_DEVICE_TYPE_GPU},
               {"accelerator", CL_DEVICE_TYPE_ACCELERATOR}};
  clattn_device_profile prof;
  unsigned a, b;
  char tail;
  if (is_number(sel))
    return strtoul(sel, NULL, 10) < count ? (long)strtoul(sel, NULL, 10) : -1;
  if (sscanf(sel, "%u:%u%c", &a, &b, &tail) == 2 &&
      isdigit((unsigned char)*sel)) {
    for (cl_uint i = 0; i < count; i++) {
      assert_int_equal(clattn_device_profile_get(i, &prof), CLATTN_SUCCESS);
      if (prof.platform_index == a && prof.device_index == b)
        return (long)i;
    }
    return -1;
  }
  for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
    if (strcmp(sel, types[t].name) != 0)
      continue;
    for (cl_uint i = 0; i < count; i++) {
      assert_int_equal(clattn_device_profile_get(i, &prof), CLATTN_SUCCESS);
      if (prof.type & types[t].type)
        return (long)i;
    }
    return -1;
  }
  for (int tier = 0; tier < 2; tier++) {
    for (cl_uint i = 0; i < count; i++) {
      assert_int_equal(clattn_device_profile_get(i, &prof), CLATTN_SUCCESS);
      if (name_tier(&prof, sel) == tier)
        return (long)i;
    }
  }
  return -1;
}

static int check_selector(const char *sel, cl_uint count) {
  long want = expected_index(sel, count);
  cl_uint got = 0;
  clattn_status st = clattn_device_find(sel, &got);
  clattn_context_t ctx = NULL;
  clattn_status cst = clattn_context_create(&ctx, sel, 0);
  int ok;
  if (want >= 0) {
    clattn_device_profile prof;
    ok = st == CLATTN_SUCCESS && (long)got == want && cst == CLATTN_SUCCESS &&
         clattn_context_profile(ctx, &prof) == CLATTN_SUCCESS &&
         (long)prof.index == want;
    print_message("  %-16s -> device %ld (%s)%s\n", sel, want,
                  ok ? prof.name : "?", ok ? "" : " FAILED");
    if (!ok)
      print_error("selector \"%s\": %s, index %u, context %s: %s\n", sel,
                  clattn_status_name(st), (unsigned)got,
                  clattn_status_name(cst),
                  ctx ? clattn_context_error(ctx) : "");
  } else {
    char msg[128];
    snprintf(msg, sizeof msg, "no OpenCL device matches \"%s\"", sel);
    ok = st == CLATTN_ERROR_DEVICE_NOT_FOUND &&
         cst == CLATTN_ERROR_DEVICE_NOT_FOUND && ctx &&
         strncmp(clattn_context_error(ctx), msg, strlen(msg)) == 0;
    print_message("  %-16s -> no device here: %s\n", sel,
                  ctx ? clattn_context_error(ctx) : "(no context)");
    if (!ok)
      print_error("selector \"%s\": want CLATTN_ERROR_DEVICE_NOT_FOUND with "
                  "'%s', got %s / %s\n",
                  sel, msg, clattn_status_name(st), clattn_status_name(cst));
  }
  clattn_context_destroy(ctx);
  return ok;
}

static void test_device_readme_selectors(void **state) {
  examples ex;
  cl_uint count = 0;
  int ok = 1;
  (void)state;
  memset(&ex, 0, sizeof ex);
  read_readme_examples(&ex);
  /* The README's table gives several; finding none means the parser or the
   * README changed, not that there is nothing to test. */
  assert_true(ex.count >= 6);
  for (size_t i = 0; i < sizeof fixed_examples / sizeof fixed_examples[0]; i++)
    add_example(&ex, fixed_examples[i], strlen(fixed_examples[i]));
  clattn_test_device_or_skip();
  assert_int_equal(clattn_device_count(&count), CLATTN_SUCCESS);
  for (size_t i = 0; i < ex.count; i++)
    ok &= check_selector(ex.sel[i], count);
  assert_true(ok);
}

static void test_device_platform_beats_device_name(void **state) {
  /* PoCL's platform says "pocl" only in its vendor and version strings:
   * whenever a PoCL platform is present, "pocl" must pick one of its
   * devices. */
  cl_uint count = 0, got = 0;
  long pocl = -1;
  (void)state;
  clattn_test_device_or_skip();
  assert_int_equal(clattn_device_count(&count), CLATTN_SUCCESS);
  for (cl_uint i = 0; i < count && pocl < 0; i++) {
    clattn_device_profile prof;
    assert_int_equal(clattn_device_profile_get(i, &prof), CLATTN_SUCCESS);
    if (strcmp(prof.platform_name, "Portable Computing Language") == 0)
      pocl = (long)i;
  }
  if (pocl < 0) {
    assert_int_equal(clattn_device_find("pocl", &got),
                     CLATTN_ERROR_DEVICE_NOT_FOUND);
    return;
  }
  assert_int_equal(clattn_device_find("pocl", &got), CLATTN_SUCCESS);
  assert_int_equal((long)got, pocl);
  assert_int_equal(clattn_device_find("PoCL", &got), CLATTN_SUCCESS);
  assert_int_equal((long)got, pocl);
}

static void test_device_unknown_selectors(void **state) {
  static const char *const bad[] = {"no-such-vendor-xyz", "99999", "9999:0",
                                    "0:9999"};
  cl_uint got = 0;
  (void)state;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(clattn_device_find(bad[i], &got),
                     CLATTN_ERROR_DEVICE_NOT_FOUND);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_device_readme_selectors),
      cmocka_unit_test(test_device_platform_beats_device_name),
      cmocka_unit_test(test_device_unknown_selectors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
