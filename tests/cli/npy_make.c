/*
 * npy_make.c - writes a float32 .npy file of a given shape filled with
 * reproducible pseudo-random values in [-1, 1), through tools/npy.c, so that
 * the clattn-run tests can make valid inputs of any shape; and the few other
 * array chores those tests need.
 *
 * usage: npy_make [--seed N] FILE [DIM ...]   (no DIM: a scalar)
 *        npy_make --i32 FILE [VALUE ...]      1-D int32 array of the values
 *        npy_make --f32 FILE [VALUE ...]      1-D float32 array of the values
 *        npy_make --zeros FILE DIM ...        float32 zeros
 *        npy_make --resize IN OUT DIM ...     OUT[idx] = IN[idx] where IN has
 *                                             idx, else 0 (crop or pad)
 *        npy_make --compare A B TOL           same shape, and
 *                                             max |A - B| <= TOL * max(1, max
 * |B|) Exit status 0 on success, 1 when a file cannot be read or written (or
 * the comparison fails, with the largest difference on stderr), 2 on a usage
 * error.
 */
#include "npy.h"

#include <errno.h>
#include <math.h>
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

static int usage(void) {
  fprintf(stderr, "usage: npy_make [--seed N] FILE [DIM ...]\n"
                  "       npy_make --i32|--f32 FILE [VALUE ...]\n"
                  "       npy_make --zeros FILE DIM ...\n"
                  "       npy_make --resize IN OUT DIM ...\n"
                  "       npy_make --compare A B TOL\n");
  return 2;
}

static int values(int argc, char **argv, int is_int) {
  const char *path = argv[2];
  size_t n = (size_t)(argc - 3);
  int32_t *iv = malloc((n > 0 ? n : 1) * sizeof(int32_t));
  float *fv = malloc((n > 0 ? n : 1) * sizeof(float));
  int rc = 0;
  if (iv == NULL || fv == NULL) {
    fprintf(stderr, "npy_make: out of memory\n");
    rc = 1;
  }
  for (size_t i = 0; i < n && rc == 0; i++) {
    const char *t = argv[3 + i];
    char *end = NULL;
    errno = 0;
    if (is_int) {
      long long v = strtoll(t, &end, 10);
      if (end == t || *end != '\0' || errno != 0 || v < INT32_MIN ||
          v > INT32_MAX)
        rc = 2;
      else
        iv[i] = (int32_t)v;
    } else {
      double v = strtod(t, &end);
      if (end == t || *end != '\0')
        rc = 2;
      else
        fv[i] = (float)v;
    }
    if (rc == 2)
      fprintf(stderr, "npy_make: bad value '%s'\n", t);
  }
  char err[512];
  if (rc == 0 &&
      (is_int ? clattn_npy_write_i32(path, iv, 1, &n, err, sizeof err)
              : clattn_npy_write_f32(path, fv, 1, &n, err, sizeof err)) != 0) {
    fprintf(stderr, "npy_make: %s\n", err);
    rc = 1;
  }
  free(iv);
  free(fv);
  return rc;
}

static int read_f32(const char *path, size_t *ndim, size_t *shape,
                    float **data) {
  char err[512];
  if (clattn_npy_read_f32(path, CLATTN_NPY_MAX_NDIM, (size_t)1 << 32, ndim,
                          shape, data, err, sizeof err) != 0) {
    fprintf(stderr, "npy_make: %s\n", err);
    return -1;
  }
  return 0;
}

static int resize(int argc, char **argv) {
  size_t ndim = 0, shape[CLATTN_NPY_MAX_NDIM], out_shape[CLATTN_NPY_MAX_NDIM];
  float *in = NULL;
  if (read_f32(argv[2], &ndim, shape, &in) != 0)
    return 1;
  if ((size_t)(argc - 4) != ndim) {
    fprintf(stderr, "npy_make: %s has %zu dimensions, %d given\n", argv[2],
            ndim, argc - 4);
    free(in);
    return 2;
  }
  size_t count = 1;
  for (size_t d = 0; d < ndim; d++) {
    if (parse_size(argv[4 + d], &out_shape[d]) != 0 ||
        out_shape[d] > ((size_t)1 << 24)) {
      fprintf(stderr, "npy_make: bad dimension '%s'\n", argv[4 + d]);
      free(in);
      return 2;
    }
    count *= out_shape[d];
  }
  float *out = calloc(count > 0 ? count : 1, sizeof(float));
  if (out == NULL) {
    free(in);
    fprintf(stderr, "npy_make: out of memory\n");
    return 1;
  }
  for (size_t o = 0; o < count; o++) {
    size_t rem = o, src = 0, stride = 1, inside = 1;
    for (size_t d = ndim; d-- > 0;) {
      size_t idx = rem % out_shape[d];
      rem /= out_shape[d];
      if (idx >= shape[d])
        inside = 0;
      src += idx * stride;
      stride *= shape[d];
    }
    if (inside)
      out[o] = in[src];
  }
  char err[512];
  int rc = clattn_npy_write_f32(argv[3], out, ndim, out_shape, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "npy_make: %s\n", err);
  free(in);
  free(out);
  return rc != 0;
}

static int compare(char **argv) {
  size_t na = 0, nb = 0, sa[CLATTN_NPY_MAX_NDIM], sb[CLATTN_NPY_MAX_NDIM];
  float *a = NULL, *b = NULL;
  char *end = NULL;
  double tol = strtod(argv[4], &end);
  if (end == argv[4] || *end != '\0' || !(tol >= 0.0)) {
    fprintf(stderr, "npy_make: bad tolerance '%s'\n", argv[4]);
    return 2;
  }
  int rc = 1;
  if (read_f32(argv[2], &na, sa, &a) != 0 ||
      read_f32(argv[3], &nb, sb, &b) != 0)
    goto done;
  if (na != nb || memcmp(sa, sb, na * sizeof sa[0]) != 0) {
    fprintf(stderr, "npy_make: %s and %s differ in shape\n", argv[2], argv[3]);
    goto done;
  }
  size_t count = 1;
  for (size_t d = 0; d < na; d++)
    count *= sa[d];
  double big = 1.0, worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < count; i++)
    if (fabs((double)b[i]) > big)
      big = fabs((double)b[i]);
  for (size_t i = 0; i < count; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (!(d <= worst)) { /* NaN counts as the worst */
      worst = d;
      at = i;
    }
  }
  if (worst <= tol * big) {
    rc = 0;
  } else {
    fprintf(stderr,
            "npy_make: %s and %s differ by %g at element %zu (%g vs %g), "
            "over %g\n",
            argv[2], argv[3], worst, at, (double)a[at], (double)b[at],
            tol * big);
  }
done:
  free(a);
  free(b);
  return rc;
}

int main(int argc, char **argv) {
  if (argc >= 3 &&
      (strcmp(argv[1], "--i32") == 0 || strcmp(argv[1], "--f32") == 0))
    return values(argc, argv, argv[1][2] == 'i');
  if (argc >= 4 && strcmp(argv[1], "--resize") == 0)
    return resize(argc, argv);
  if (argc == 5 && strcmp(argv[1], "--compare") == 0)
    return compare(argv);
  size_t seed = 1;
  int a = 1;
  int zeros = 0;
  if (a < argc && strcmp(argv[a], "--zeros") == 0) {
    zeros = 1;
    a++;
  }
  if (!zeros && a + 1 < argc && strcmp(argv[a], "--seed") == 0) {
    if (parse_size(argv[a + 1], &seed) != 0) {
      fprintf(stderr, "npy_make: bad seed '%s'\n", argv[a + 1]);
      return 2;
    }
    a += 2;
  }
  if (a >= argc || argc - a - 1 > (int)CLATTN_NPY_MAX_NDIM ||
      strncmp(argv[a], "--", 2) == 0)
    return usage();
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
    data[i] = zeros ? 0.0f : (float)((double)(state >> 40) / 8388608.0 - 1.0);
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
