/*
 * cache.c - the disk cache of built program binaries (see cache.h).
 *
 * File layout, little-endian:
 *   8 bytes  magic "CLATTNPB"
 *   4 bytes  format version
 *   8 bytes  key length K, then K bytes of key
 *   8 bytes  binary length N, then N bytes of binary
 *   8 bytes  FNV-1a 64 of everything before it
 */
#include "cache.h"
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* POSIX: the environment, declared by the program itself. */
extern char **environ;

#define CACHE_MAGIC "CLATTNPB"
#define CACHE_FORMAT 1u
#define CACHE_MAX_FILE ((size_t)256 << 20) /* no program binary is larger */

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

#define FNV_SEED 14695981039346656037ull

static int cache_enabled(void) {
  const char *on = getenv("CLATTN_CACHE");
  return !(on && strcmp(on, "0") == 0);
}

/* Variables that change the code a runtime generates: every name with one
 * of these prefixes (Intel's CPU runtime reads its settings from CL_CONFIG_*)
 * or one of these names (PoCL). Logging, tracing and cache folders are left
 * out on purpose: they do not change a binary. */
static int steers_compiler(const char *entry) {
  static const char *const prefixes[] = {"CL_CONFIG_"};
  static const char *const names[] = {
      "POCL_LLVM_CPU_NAME", "POCL_WORK_GROUP_METHOD", "POCL_EXTRA_BUILD_FLAGS",
      "POCL_VECTORIZER_REMARKS", "POCL_FORCE_SMALL_PTRS"};
  for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
    if (strncmp(entry, prefixes[i], strlen(prefixes[i])) == 0)
      return 1;
  }
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    size_t n = strlen(names[i]);
    if (strncmp(entry, names[i], n) == 0 && entry[n] == '=')
      return 1;
  }
  return 0;
}

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *clattn__cache_compiler_env(int is_cpu) {
  size_t count = 0, len = 1;
  for (char **e = environ; e && *e; e++) {
    if (steers_compiler(*e)) {
      count++;
      len += strlen(*e) + 1;
    }
  }
  char isa[128] = "";
#if (defined(__x86_64__) || defined(__i386__)) &&                              \
    (defined(__GNUC__) || defined(__clang__))
  if (is_cpu) {
    __builtin_cpu_init();
    snprintf(isa, sizeof isa, "isa%s%s%s%s%s%s\n",
             __builtin_cpu_supports("sse4.2") ? " sse4.2" : "",
             __builtin_cpu_supports("avx") ? " avx" : "",
             __builtin_cpu_supports("avx2") ? " avx2" : "",
             __builtin_cpu_supports("fma") ? " fma" : "",
             __builtin_cpu_supports("avx512f") ? " avx512f" : "",
             __builtin_cpu_supports("avx512bw") ? " avx512bw" : "");
  }
#else
  (void)is_cpu;
#endif
  len += strlen(isa);
  const char **list = malloc((count ? count : 1) * sizeof *list);
  char *text = malloc(len);
  if (!list || !text) {
    free(list);
    free(text);
    return NULL;
  }
  size_t n = 0;
  for (char **e = environ; e && *e && n < count; e++) {
    if (steers_compiler(*e))
      list[n++] = *e;
  }
  /* Sorted: two processes with the same settings in another order share
   * their entries. */
  qsort(list, n, sizeof *list, compare_strings);
  char *p = text;
  for (size_t i = 0; i < n; i++) {
    size_t m = strlen(list[i]);
    memcpy(p, list[i], m);
    p[m] = '\n';
    p += m + 1;
  }
  strcpy(p, isa);
  free(list);
  return text;
}

/* Creates every missing folder of path. */
static int make_dirs(const char *path) {
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf)
    return -1;
  memcpy(buf, path, n + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return -1;
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST)
    return -1;
  return 0;
}

/* The cache folder, or 0 when the cache is off or has no home. */
static int cache_dir(char *buf, size_t size) {
  if (!cache_enabled())
    return 0;
  const char *dir = getenv("CLATTN_CACHE_DIR");
  int n;
  if (dir && *dir) {
    n = snprintf(buf, size, "%s", dir);
  } else if ((dir = getenv("XDG_CACHE_HOME")) && *dir) {
    n = snprintf(buf, size, "%s/clattn", dir);
  } else if ((dir = getenv("HOME")) && *dir) {
    n = snprintf(buf, size, "%s/.cache/clattn", dir);
  } else {
    return 0;
  }
  return n > 0 && (size_t)n < size;
}

static int entry_path(const char *key, size_t key_len, char *buf, size_t size) {
  char dir[3072];
  if (!cache_dir(dir, sizeof dir))
    return 0;
  uint64_t h = fnv1a(FNV_SEED, (const unsigned char *)key, key_len);
  int n = snprintf(buf, size, "%s/%016llx.bin", dir, (unsigned long long)h);
  return n > 0 && (size_t)n < size;
}

static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

int clattn__cache_load(const char *key, size_t key_len, unsigned char **bin,
                       size_t *bin_len) {
  char path[4096];
  if (!entry_path(key, key_len, path, sizeof path))
    return 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return 0;
  unsigned char *data = NULL;
  int ok = 0;
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0)
    size = ftell(f);
  const size_t head = 8 + 4 + 8;
  if (size < (long)(head + key_len + 8 + 8) || (size_t)size > CACHE_MAX_FILE ||
      fseek(f, 0, SEEK_SET) != 0)
    goto done;
  data = malloc((size_t)size);
  if (!data || fread(data, 1, (size_t)size, f) != (size_t)size)
    goto done;
  size_t n = (size_t)size;
  if (memcmp(data, CACHE_MAGIC, 8) != 0)
    goto done;
  uint32_t format = (uint32_t)data[8] | (uint32_t)data[9] << 8 |
                    (uint32_t)data[10] << 16 | (uint32_t)data[11] << 24;
  if (format != CACHE_FORMAT || get_u64(data + 12) != key_len ||
      memcmp(data + head, key, key_len) != 0)
    goto done;
  uint64_t blen = get_u64(data + head + key_len);
  if (blen == 0 || blen != n - (head + key_len + 8 + 8))
    goto done;
  if (get_u64(data + n - 8) != fnv1a(FNV_SEED, data, n - 8))
    goto done;
  *bin = malloc((size_t)blen);
  if (!*bin)
    goto done;
  memcpy(*bin, data + head + key_len + 8, (size_t)blen);
  *bin_len = (size_t)blen;
  ok = 1;
done:
  free(data);
  fclose(f);
  return ok;
}

void clattn__cache_store(const char *key, size_t key_len,
                         const unsigned char *bin, size_t bin_len) {
  char path[4096], dir[3072], tmp[4200];
  if (!entry_path(key, key_len, path, sizeof path) ||
      !cache_dir(dir, sizeof dir) || make_dirs(dir) != 0)
    return;
  size_t n = 8 + 4 + 8 + key_len + 8 + bin_len + 8;
  if (n > CACHE_MAX_FILE)
    return;
  unsigned char *data = malloc(n);
  if (!data)
    return;
  unsigned char *p = data;
  memcpy(p, CACHE_MAGIC, 8);
  p += 8;
  for (int i = 0; i < 4; i++)
    *p++ = (unsigned char)(CACHE_FORMAT >> (8 * i));
  put_u64(p, key_len);
  p += 8;
  memcpy(p, key, key_len);
  p += key_len;
  put_u64(p, bin_len);
  p += 8;
  memcpy(p, bin, bin_len);
  p += bin_len;
  put_u64(p, fnv1a(FNV_SEED, data, n - 8));
  /* A name unique to this process and call: concurrent writers each write
   * their own file, and rename() makes one of them the entry, whole. */
  static _Atomic unsigned counter;
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), counter++);
  FILE *f = fopen(tmp, "wb");
  int ok = 0;
  if (f) {
    ok = fwrite(data, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
  }
  if (!ok || rename(tmp, path) != 0)
    remove(tmp);
  free(data);
}
