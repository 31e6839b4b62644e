/*
 * npy_make.c - writes a float32 .npy file of a given shape filled with
 * reproducible pseudo-random values in [-1, 1), through tools/npy.c, so that
 * the clattn-run tests can make valid inputs of any shape.
 *
 * usage: npy_make [--seed N] FILE [DIM ...]   (no DIM: a scalar)
 * Exit status 0 on success, 1 when the file cannot be written, 2 on a usage
 * error.
 */
#include "npy.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_size(const char *text, size_t *out) {
  char *end = NULL;
  errno = 0;
  if (text[0] < '0' || text[0] > '9')
    return -1;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || v > SIZE_MAX)
    return -1;
  *out = (size_t)v;
  return 0;
}

int main(int argc, char **argv) {
  size_t seed = 1;
  int a = 1;
  if (a + 1 < argc && strcmp(argv[a], "--seed") == 0) {
    if (parse_size(argv[a + 1], &seed) != 0) {
      fprintf(stderr, "npy_make: bad seed '%s'\n", argv[a + 1]);
      return 2;
    }
    a += 2;
  }
  if (a >= argc || argc - a - 1 > (int)CLATTN_NPY_MAX_NDIM) {
    fprintf(stderr, "usage: npy_make [--seed N] FILE [DIM ...]\n");
    return 2;
  }
  const char *path = argv[a++];
  size_t ndim = (size_t)(argc - a), shape[CLATTN_NPY_MAX_NDIM];
  size_t count = 1;
  for (size_t d = 0; d < ndim; d++) {
    if (parse_size(argv[a + (int)d], &shape[d]) != 0) {
      fprintf(stderr, "npy_make: bad dimension '%s'\n", argv[a + (int)d]);
      return 2;
    }
    if (shape[d] != 0 && count > SIZE_MAX / sizeof(float) / shape[d]) {
      fprintf(stderr, "npy_make: the shape is too large\n");
      return 2;
    }
    count *= shape[d];
  }
  float *data = malloc((count > 0 ? count : 1) * sizeof(float));
  if (data == NULL) {
    fprintf(stderr, "npy_make: out of memory\n");
    return 1;
  }
  /* A 64-bit LCG: the same seed gives the same file on every platform. */
  uint64_t state = (uint64_t)seed * 0x9e3779b97f4a7c15u + 1;
  for (size_t i = 0; i < count; i++) {
    state = state * 6364136223846793005u + 1442695040888963407u;
    data[i] = (float)((double)(state >> 40) / 8388608.0 - 1.0);
  }
  char err[512];
  int rc = clattn_npy_write_f32(path, data, ndim, shape, err, sizeof err);
  free(data);
  if (rc != 0) {
    fprintf(stderr, "npy_make: %s\n", err);
    return 1;
  }
  return 0;
}
