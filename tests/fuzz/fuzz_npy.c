/*
 * fuzz_npy.c - libFuzzer harness for the .npy reader of the tools: the input
 * is the file (kept in a memory file, opened by path as the tools do). An
 * array it accepts is written back and must read back the same. The integer
 * reader (per-sequence lengths) reads the same bytes and must fail or
 * succeed cleanly.
 */
#define _GNU_SOURCE

#include "npy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_NDIM 8
#define MAX_BYTES ((size_t)1 << 20)

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__,      \
              #cond);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int in_fd = -1, out_fd = -1;
static char in_path[64], out_path[64];

static void open_files(void) {
  in_fd = memfd_create("fuzz-in.npy", 0);
  out_fd = memfd_create("fuzz-out.npy", 0);
  CHECK(in_fd >= 0 && out_fd >= 0);
  snprintf(in_path, sizeof in_path, "/proc/self/fd/%d", in_fd);
  snprintf(out_path, sizeof out_path, "/proc/self/fd/%d", out_fd);
}

/* One line, terminated, and starting with the path. */
static void check_message(const char *err, size_t cap, const char *path) {
  CHECK(memchr(err, '\0', cap) != NULL);
  CHECK(err[0] != '\0' && strncmp(err, path, strlen(path)) == 0);
  CHECK(strchr(err, '\n') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (in_fd < 0)
    open_files();
  CHECK(ftruncate(in_fd, 0) == 0);
  CHECK(pwrite(in_fd, data, size, 0) == (ssize_t)size);

  size_t ndim = 99, shape[MAX_NDIM];
  float *arr = NULL;
  char err[256];
  /* The integer reader (lengths) on the same bytes. */
  int64_t *ints = NULL;
  int irc = clattn_npy_read_int(in_path, MAX_NDIM, MAX_BYTES, &ndim, shape,
                                &ints, err, sizeof err);
  if (irc != 0) {
    CHECK(ints == NULL && ndim == 0);
    check_message(err, sizeof err, in_path);
  } else {
    size_t n = 1;
    CHECK(ints != NULL && ndim <= MAX_NDIM);
    for (size_t i = 0; i < ndim; i++)
      CHECK(!__builtin_mul_overflow(n, shape[i], &n));
    CHECK(n <= MAX_BYTES / 4);
    volatile uint64_t mix = 0; /* every value is readable; xor, no overflow */
    for (size_t i = 0; i < n; i++)
      mix ^= (uint64_t)ints[i];
    (void)mix;
    free(ints);
  }
  ndim = 99;
  int rc = clattn_npy_read_f32(in_path, MAX_NDIM, MAX_BYTES, &ndim, shape, &arr,
                               err, sizeof err);
  if (rc != 0) {
    CHECK(arr == NULL && ndim == 0);
    check_message(err, sizeof err, in_path);
    return 0;
  }
  CHECK(arr != NULL && ndim <= MAX_NDIM);
  size_t count = 1;
  for (size_t i = 0; i < ndim; i++) {
    CHECK(!__builtin_mul_overflow(count, shape[i], &count));
  }
  CHECK(count <= MAX_BYTES / 4);

  /* Round trip: what was read, written and read again, is the same. */
  CHECK(ftruncate(out_fd, 0) == 0);
  CHECK(clattn_npy_write_f32(out_path, arr, ndim, shape, err, sizeof err) == 0);
  size_t ndim2 = 99, shape2[MAX_NDIM];
  float *arr2 = NULL;
  CHECK(clattn_npy_read_f32(out_path, MAX_NDIM, MAX_BYTES, &ndim2, shape2,
                            &arr2, err, sizeof err) == 0);
  CHECK(ndim2 == ndim);
  CHECK(ndim == 0 || memcmp(shape, shape2, ndim * sizeof shape[0]) == 0);
  CHECK(count == 0 || memcmp(arr, arr2, count * sizeof(float)) == 0);
  free(arr);
  free(arr2);
  return 0;
}
