/*
 * test_cache.c - the disk cache of program binaries: an entry is written and
 * then used as it is; a truncated, corrupt or foreign entry is rebuilt, never
 * used; processes filling the cache at once all succeed; CLATTN_CACHE=0
 * writes nothing.
 *
 * Each test points CLATTN_CACHE_DIR at a fresh temporary folder. Concurrent
 * writers are separate processes: this program runs itself with --child.
 */
#include "reference.h"
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOL_F32 1e-5

static char g_dir[256];

static void fresh_dir(void) {
  const char *base = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/clattn-cache-test-XXXXXX",
           base && *base ? base : "/tmp");
  assert_non_null(mkdtemp(g_dir));
  setenv("CLATTN_CACHE_DIR", g_dir, 1);
  unsetenv("CLATTN_CACHE");
}

/* Entries (files ending in .bin) and leftovers (anything else) in g_dir. */
static void count_files(int *entries, int *others, char *last, size_t size) {
  *entries = *others = 0;
  DIR *d = opendir(g_dir);
  assert_non_null(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    size_t n = strlen(e->d_name);
    if (n > 4 && strcmp(e->d_name + n - 4, ".bin") == 0) {
      (*entries)++;
      if (last)
        snprintf(last, size, "%s/%s", g_dir, e->d_name);
    } else {
      (*others)++;
    }
  }
  closedir(d);
}

static void remove_dir(void) {
  DIR *d = opendir(g_dir);
  if (!d)
    return;
  struct dirent *e;
  char path[512];
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
    remove(path);
  }
  closedir(d);
  rmdir(g_dir);
}

/* Builds a plan in a fresh context (so nothing is cached in memory), runs
 * it and checks the output against the reference. Returns 1 when correct. */
static int build_and_check(void) {
  clattn_desc desc;
  clattn_desc_init(&desc, CLATTN_VARIANT_SOFTMAX);
  desc.heads_q = 2;
  desc.seq_q = 19;
  desc.seq_k = 23;
  desc.dim = 12;
  desc.causal = 1;
  clattn_context_t ctx = NULL;
  if (clattn_context_create(&ctx, NULL, 0) != CLATTN_SUCCESS) {
    clattn_context_destroy(ctx);
    return 0;
  }
  clattn_test_problem p;
  clattn_test_problem_init(&p, &desc, 77);
  int ok = clattn_test_problem_run_host(&p, ctx) == CLATTN_SUCCESS &&
           clattn_test_check("cached softmax", p.o, p.ref_o, p.n.o, TOL_F32);
  clattn_test_problem_free(&p);
  clattn_context_destroy(ctx);
  return ok;
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static unsigned char *read_all(const char *path, long *size) {
  *size = file_size(path);
  unsigned char *buf = malloc((size_t)(*size > 0 ? *size : 1));
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(fread(buf, 1, (size_t)*size, f), (size_t)*size);
  fclose(f);
  return buf;
}

static void write_all(const char *path, const unsigned char *buf, long size) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(buf, 1, (size_t)size, f), (size_t)size);
  fclose(f);
}

static void test_cache_entry_written_and_reused(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  fresh_dir();
  assert_true(build_and_check());
  int entries, others;
  char path[512];
  count_files(&entries, &others, path, sizeof path);
  assert_int_equal(entries, 1);
  assert_int_equal(others, 0);
  long size;
  unsigned char *before = read_all(path, &size);
  /* A second process-like start uses the entry and leaves it as it is. */
  assert_true(build_and_check());
  long size2;
  unsigned char *after = read_all(path, &size2);
  assert_int_equal(size, size2);
  assert_memory_equal(before, after, (size_t)size);
  free(before);
  free(after);
  remove_dir();
}

static void test_cache_corrupt_entry_rebuilt(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  fresh_dir();
  assert_true(build_and_check());
  int entries, others;
  char path[512];
  count_files(&entries, &others, path, sizeof path);
  assert_int_equal(entries, 1);
  long size;
  unsigned char *good = read_all(path, &size);
  unsigned char *bad = malloc((size_t)size);
  assert_non_null(bad);
  /* Truncated, one flipped byte in the binary, one in the key, garbage, and
   * empty: each is refused, the plan is built from source and correct, and
   * the entry is rewritten whole. */
  for (int kind = 0; kind < 5; kind++) {
    memcpy(bad, good, (size_t)size);
    long n = size;
    if (kind == 0)
      n = size / 2;
    else if (kind == 1)
      bad[size - 100] ^= 0x5a;
    else if (kind == 2)
      bad[40] ^= 0x01;
    else if (kind == 3)
      memset(bad, 0xab, (size_t)size);
    else
      n = 0;
    write_all(path, bad, n);
    assert_true(build_and_check());
    /* Rewritten whole: not the corrupted bytes, and the size of an entry
     * give or take a few bytes (Intel's runtime does not produce
     * byte-identical binaries from one build to the next). */
    long got = 0;
    unsigned char *now = read_all(path, &got);
    assert_true(got > size - size / 100 && got < size + size / 100);
    assert_true(got != n || memcmp(now, bad, (size_t)n) != 0);
    free(now);
  }
  free(good);
  free(bad);
  remove_dir();
}

static void test_cache_concurrent_writers(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  fresh_dir();
  enum { CHILDREN = 4 };
  pid_t pids[CHILDREN];
  for (int i = 0; i < CHILDREN; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) {
      execl("/proc/self/exe", "test_cache", "--child", (char *)NULL);
      _exit(127);
    }
  }
  for (int i = 0; i < CHILDREN; i++) {
    int status = 0;
    assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
  }
  int entries, others;
  count_files(&entries, &others, NULL, 0);
  assert_int_equal(entries, 1);
  assert_int_equal(others, 0); /* no temporary file left behind */
  assert_true(build_and_check());
  remove_dir();
}

static void test_cache_disabled_writes_nothing(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  fresh_dir();
  setenv("CLATTN_CACHE", "0", 1);
  assert_true(build_and_check());
  int entries, others;
  count_files(&entries, &others, NULL, 0);
  assert_int_equal(entries + others, 0);
  unsetenv("CLATTN_CACHE");
  remove_dir();
}

/* A setting that steers a runtime's code generation (Intel's CPU runtime
 * reads CL_CONFIG_CPU_TARGET_ARCH) gets entries of its own: a binary built
 * for a narrower ISA must never be loaded by a process without it. */
static void test_cache_key_follows_compiler_env(void **state) {
  (void)state;
  clattn_test_device_or_skip();
  fresh_dir();
  unsetenv("CL_CONFIG_CPU_TARGET_ARCH");
  assert_true(build_and_check());
  int entries, others;
  count_files(&entries, &others, NULL, 0);
  assert_int_equal(entries, 1);
  setenv("CL_CONFIG_CPU_TARGET_ARCH", "core-avx2", 1);
  assert_true(build_and_check());
  count_files(&entries, &others, NULL, 0);
  assert_int_equal(entries, 2);
  /* Back to the first setting: its entry serves again, nothing is added. */
  unsetenv("CL_CONFIG_CPU_TARGET_ARCH");
  assert_true(build_and_check());
  count_files(&entries, &others, NULL, 0);
  assert_int_equal(entries, 2);
  assert_int_equal(others, 0);
  remove_dir();
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--child") == 0)
    return build_and_check() ? 0 : 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cache_entry_written_and_reused),
      cmocka_unit_test(test_cache_corrupt_entry_rebuilt),
      cmocka_unit_test(test_cache_concurrent_writers),
      cmocka_unit_test(test_cache_disabled_writes_nothing),
      cmocka_unit_test(test_cache_key_follows_compiler_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
