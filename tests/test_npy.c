/*
 * test_npy.c - CMocka tests of the .npy reader and writer in tools/npy.c:
 * round trips of every rank, the header forms NumPy and others write, and a
 * crafted file for each kind of bad input, each of which must be refused with
 * a one-line message and no leak.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"

/* Files are crafted in one temporary directory per run. */
static char g_dir[512];

static int group_setup(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  if (base == NULL || base[0] == '\0')
    base = "/tmp";
  snprintf(g_dir, sizeof g_dir, "%s/test_npy_XXXXXX", base);
  return mkdtemp(g_dir) != NULL ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  DIR *d = opendir(g_dir);
  if (d == NULL)
    return -1;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
    if (rmdir(p) != 0)
      unlink(p);
  }
  closedir(d);
  return rmdir(g_dir);
}

static void path_of(char *out, size_t size, const char *name) {
  int n = snprintf(out, size, "%s/%s", g_dir, name);
  assert_true(n > 0 && (size_t)n < size);
}

static void write_bytes(const char *path, const void *bytes, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  if (len > 0)
    assert_int_equal(fwrite(bytes, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

/* Writes a file with the given version, header text and data bytes; the
 * header length field says exactly strlen(header). */
static void craft(const char *path, unsigned major, unsigned minor,
                  const char *header, const void *data, size_t data_len) {
  size_t hlen = strlen(header);
  size_t pre = major == 1 ? 10 : 12;
  unsigned char *buf = malloc(pre + hlen + data_len + 1);
  assert_non_null(buf);
  memcpy(buf, "\x93NUMPY", 6);
  buf[6] = (unsigned char)major;
  buf[7] = (unsigned char)minor;
  buf[8] = (unsigned char)(hlen & 0xff);
  buf[9] = (unsigned char)((hlen >> 8) & 0xff);
  if (pre == 12) {
    buf[10] = (unsigned char)((hlen >> 16) & 0xff);
    buf[11] = (unsigned char)((hlen >> 24) & 0xff);
  }
  memcpy(buf + pre, header, hlen);
  if (data_len > 0)
    memcpy(buf + pre + hlen, data, data_len);
  write_bytes(path, buf, pre + hlen + data_len);
  free(buf);
}

/* Zero bytes of the right length for a float32 array of `count`. */
static void craft_f32(const char *path, unsigned major, const char *header,
                      size_t count) {
  void *zeros = calloc(count > 0 ? count : 1, sizeof(float));
  assert_non_null(zeros);
  craft(path, major, 0, header, zeros, count * sizeof(float));
  free(zeros);
}

/* The reader must fail, leave nothing allocated, and give a one-line
 * message that starts with the path and holds `needle`. */
static void expect_refused(const char *path, size_t max_ndim, size_t cap,
                           const char *needle) {
  char err[512];
  size_t ndim = 99, shape[8];
  float *data = (float *)&ndim;
  int rc = clattn_npy_read_f32(path, max_ndim, cap, &ndim, shape, &data, err,
                               sizeof err);
  if (rc == 0)
    free(data);
  assert_int_not_equal(rc, 0);
  assert_null(data);
  assert_int_equal(ndim, 0);
  assert_null(strchr(err, '\n'));
  assert_true(strlen(err) > strlen(path) + 2);
  assert_memory_equal(err, path, strlen(path));
  if (strstr(err, needle) == NULL)
    fail_msg("message \"%s\" lacks \"%s\"", err, needle);
}

static void expect_refused_header(const char *name, const char *header,
                                  size_t count, const char *needle) {
  char path[1024];
  path_of(path, sizeof path, name);
  craft_f32(path, 1, header, count);
  expect_refused(path, 8, SIZE_MAX, needle);
}

/* Reads a file that must be accepted and checks its shape. */
static void expect_shape(const char *path, size_t want_ndim,
                         const size_t *want_shape) {
  char err[512];
  size_t ndim = 99, shape[8];
  float *data = NULL;
  int rc = clattn_npy_read_f32(path, 8, SIZE_MAX, &ndim, shape, &data, err,
                               sizeof err);
  if (rc != 0)
    fail_msg("refused: %s", err);
  assert_non_null(data);
  assert_int_equal(ndim, want_ndim);
  for (size_t d = 0; d < ndim; d++)
    assert_int_equal(shape[d], want_shape[d]);
  free(data);
}

static void expect_header_ok(const char *name, const char *header,
                             size_t want_ndim, const size_t *want_shape) {
  char path[1024];
  path_of(path, sizeof path, name);
  size_t count = 1;
  for (size_t d = 0; d < want_ndim; d++)
    count *= want_shape[d];
  craft_f32(path, 1, header, count);
  expect_shape(path, want_ndim, want_shape);
}

static uint32_t lcg(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s;
}

static void test_npy_roundtrip_shapes(void **state) {
  (void)state;
  static const struct {
    size_t ndim;
    size_t shape[4];
  } cases[] = {
      {0, {0}},          {1, {1}},       {1, {7}},
      {2, {3, 5}},       {3, {2, 3, 4}}, {4, {2, 3, 4, 5}},
      {4, {1, 1, 1, 1}}, {1, {0}},       {3, {3, 0, 2}},
  };
  uint32_t seed = 12345;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    size_t count = 1;
    for (size_t d = 0; d < cases[c].ndim; d++)
      count *= cases[c].shape[d];
    float *in = malloc((count > 0 ? count : 1) * sizeof(float));
    assert_non_null(in);
    for (size_t i = 0; i < count; i++)
      in[i] = (float)((double)lcg(&seed) / 4294967296.0 * 8.0 - 4.0);
    char path[1024], err[512];
    char name[32];
    snprintf(name, sizeof name, "round%zu.npy", c);
    path_of(path, sizeof path, name);
    int rc = clattn_npy_write_f32(path, in, cases[c].ndim, cases[c].shape, err,
                                  sizeof err);
    if (rc != 0)
      fail_msg("write: %s", err);

    size_t ndim = 99, shape[4] = {0};
    float *out = NULL;
    rc = clattn_npy_read_f32(path, 4, SIZE_MAX, &ndim, shape, &out, err,
                             sizeof err);
    if (rc != 0)
      fail_msg("read: %s", err);
    assert_int_equal(ndim, cases[c].ndim);
    for (size_t d = 0; d < ndim; d++)
      assert_int_equal(shape[d], cases[c].shape[d]);
    assert_non_null(out);
    if (count > 0)
      assert_memory_equal(out, in, count * sizeof(float));
    free(out);
    free(in);
  }
}

static void test_npy_roundtrip_bit_exact(void **state) {
  (void)state;
  /* NaN payloads, signed zero, infinities and subnormals must come back as
   * the same bits, since the tools compare outputs bit for bit. */
  static const uint32_t bits[] = {0x7fc00001u, 0xffc12345u, 0x80000000u,
                                  0x00000000u, 0x7f800000u, 0xff800000u,
                                  0x00000001u, 0x807fffffu, 0x3f800000u};
  float in[sizeof bits / sizeof bits[0]];
  memcpy(in, bits, sizeof in);
  size_t shape[1] = {sizeof bits / sizeof bits[0]};
  char path[1024], err[512];
  path_of(path, sizeof path, "bits.npy");
  assert_int_equal(clattn_npy_write_f32(path, in, 1, shape, err, sizeof err),
                   0);
  size_t ndim = 0, got_shape[1];
  float *out = NULL;
  assert_int_equal(clattn_npy_read_f32(path, 1, SIZE_MAX, &ndim, got_shape,
                                       &out, err, sizeof err),
                   0);
  assert_memory_equal(out, bits, sizeof bits);
  free(out);
}

static void test_npy_header_layout(void **state) {
  (void)state;
  static const struct {
    size_t ndim;
    size_t shape[3];
    const char *text;
  } cases[] = {
      {0, {0}, "'shape': (), }"},
      {1, {3}, "'shape': (3,), }"},
      {2, {2, 3}, "'shape': (2, 3), }"},
      {3, {10, 20, 3000}, "'shape': (10, 20, 3000), }"},
  };
  float zeros[6] = {0};
  float *big = calloc(10 * 20 * 3000, sizeof(float));
  assert_non_null(big);
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    char path[1024], err[512];
    path_of(path, sizeof path, "layout.npy");
    assert_int_equal(clattn_npy_write_f32(path, c == 3 ? big : zeros,
                                          cases[c].ndim, cases[c].shape, err,
                                          sizeof err),
                     0);
    unsigned char head[256];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    assert_true(got >= 64);
    assert_memory_equal(head, "\x93NUMPY\x01\x00", 8);
    size_t hlen = head[8] | (size_t)head[9] << 8;
    assert_int_equal((10 + hlen) % 64, 0);
    assert_true(10 + hlen <= got);
    assert_int_equal(head[10 + hlen - 1], '\n');
    char text[256];
    memcpy(text, head + 10, hlen);
    text[hlen] = '\0';
    assert_non_null(strstr(text, "{'descr': '<f4', 'fortran_order': False, "));
    assert_non_null(strstr(text, cases[c].text));
  }
  free(big);
}

static void test_npy_reads_v2_and_v3_headers(void **state) {
  (void)state;
  const char *h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
                  "    \n";
  const size_t want[2] = {2, 3};
  char path[1024];
  path_of(path, sizeof path, "v2.npy");
  craft_f32(path, 2, h, 6);
  expect_shape(path, 2, want);
  path_of(path, sizeof path, "v3.npy");
  craft_f32(path, 3, h, 6);
  expect_shape(path, 2, want);
}

static void test_npy_header_forms_accepted(void **state) {
  (void)state;
  const size_t s3[1] = {3}, s23[2] = {2, 3}, s234[3] = {2, 3, 4};
  expect_header_ok("dq.npy",
                   "{\"descr\": \"<f4\", \"fortran_order\": False, "
                   "\"shape\": (2, 3)}\n",
                   2, s23);
  expect_header_ok("order.npy",
                   "{'shape': (3,), 'descr': '<f4', 'fortran_order': False}", 1,
                   s3);
  expect_header_ok("spaces.npy",
                   "  {  'fortran_order'  :False ,\t'shape':(  2 ,3 , 4 , ) ,"
                   "\n 'descr' :'<f4' , }  \n",
                   3, s234);
  expect_header_ok("nospace.npy",
                   "{'descr':'<f4','fortran_order':False,'shape':(2,3)}", 2,
                   s23);
  expect_header_ok("scalar.npy",
                   "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 0,
                   NULL);
  expect_header_ok("py2long.npy",
                   "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, "
                   "3L), }",
                   2, s23);
  /* 1-D Fortran order is still refused: the brief is C order only. */
}

static void test_npy_long_padded_header(void **state) {
  (void)state;
  const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}";
  char *h = malloc(CLATTN_NPY_MAX_HEADER + 2);
  assert_non_null(h);
  char path[1024];
  const size_t s3[1] = {3};

  /* Exactly at the limit is accepted, one more byte is not. */
  memset(h, ' ', CLATTN_NPY_MAX_HEADER + 1);
  memcpy(h, dict, strlen(dict));
  h[CLATTN_NPY_MAX_HEADER - 1] = '\n';
  h[CLATTN_NPY_MAX_HEADER] = '\0';
  path_of(path, sizeof path, "long_ok.npy");
  craft_f32(path, 2, h, 3);
  expect_shape(path, 1, s3);

  h[CLATTN_NPY_MAX_HEADER] = '\n';
  h[CLATTN_NPY_MAX_HEADER + 1] = '\0';
  path_of(path, sizeof path, "long_bad.npy");
  craft_f32(path, 2, h, 3);
  expect_refused(path, 4, SIZE_MAX, "absurd");
  free(h);
}

static void test_npy_missing_file(void **state) {
  (void)state;
  char path[1024];
  path_of(path, sizeof path, "does_not_exist.npy");
  expect_refused(path, 4, SIZE_MAX, "cannot open");
}

static void test_npy_directory(void **state) {
  (void)state;
  char path[1024];
  path_of(path, sizeof path, "adir.npy");
  assert_int_equal(mkdir(path, 0700), 0);
  expect_refused(path, 4, SIZE_MAX, "directory");
}

static void test_npy_empty_file(void **state) {
  (void)state;
  char path[1024];
  path_of(path, sizeof path, "empty.npy");
  write_bytes(path, "", 0);
  expect_refused(path, 4, SIZE_MAX, "empty");
}

static void test_npy_bad_magic(void **state) {
  (void)state;
  char path[1024];
  path_of(path, sizeof path, "magic.npy");
  write_bytes(path, "\x93NUMPZ\x01\x00\x10\x00{}              ", 26);
  expect_refused(path, 4, SIZE_MAX, "bad magic");
  path_of(path, sizeof path, "text.npy");
  write_bytes(path, "hello world, this is not an array\n", 34);
  expect_refused(path, 4, SIZE_MAX, "bad magic");
  path_of(path, sizeof path, "tiny.npy");
  write_bytes(path, "\x93NU", 3);
  expect_refused(path, 4, SIZE_MAX, "bad magic");
}

static void test_npy_short_preamble(void **state) {
  (void)state;
  char path[1024];
  path_of(path, sizeof path, "short1.npy");
  write_bytes(path, "\x93NUMPY\x01\x00\x10", 9);
  expect_refused(path, 4, SIZE_MAX, "preamble");
  path_of(path, sizeof path, "short2.npy");
  write_bytes(path, "\x93NUMPY\x02\x00\x10\x00\x00", 11);
  expect_refused(path, 4, SIZE_MAX, "preamble");
}

static void test_npy_unsupported_version(void **state) {
  (void)state;
  const char *h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }";
  static const unsigned versions[][2] = {{4, 0}, {1, 1}, {0, 0}, {255, 255}};
  for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
    char path[1024];
    path_of(path, sizeof path, "version.npy");
    float one = 1.0f;
    craft(path, versions[i][0], versions[i][1], h, &one, sizeof one);
    char want[64];
    snprintf(want, sizeof want, "version %u.%u", versions[i][0],
             versions[i][1]);
    expect_refused(path, 4, SIZE_MAX, want);
  }
}

static void test_npy_header_beyond_file(void **state) {
  (void)state;
  char path[1024];
  path_of(path, sizeof path, "beyond1.npy");
  /* v1 header length 0xff00 in a 30-byte file. */
  write_bytes(path, "\x93NUMPY\x01\x00\x00\xff{'descr': '<f4',", 26);
  expect_refused(path, 4, SIZE_MAX, "past the end");
  path_of(path, sizeof path, "beyond2.npy");
  write_bytes(path, "\x93NUMPY\x02\x00\x00\x01\x00\x00{}", 14);
  expect_refused(path, 4, SIZE_MAX, "past the end");
}

static void test_npy_header_absurd_length(void **state) {
  (void)state;
  char path[1024];
  path_of(path, sizeof path, "absurd.npy");
  write_bytes(path, "\x93NUMPY\x02\x00\xff\xff\xff\x7f{}", 14);
  expect_refused(path, 4, SIZE_MAX, "absurd");
  write_bytes(path, "\x93NUMPY\x03\x00\xff\xff\xff\xff{}", 14);
  expect_refused(path, 4, SIZE_MAX, "absurd");
}

static void test_npy_header_missing_key(void **state) {
  (void)state;
  expect_refused_header("nodescr.npy",
                        "{'fortran_order': False, 'shape': (3,), }", 3,
                        "missing key 'descr'");
  expect_refused_header("nofortran.npy", "{'descr': '<f4', 'shape': (3,), }", 3,
                        "missing key 'fortran_order'");
  expect_refused_header("noshape.npy",
                        "{'descr': '<f4', 'fortran_order': False}", 1,
                        "missing key 'shape'");
  expect_refused_header("emptydict.npy", "{}", 1, "missing key");
}

static void test_npy_header_garbage(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",
      "   \n",
      "hello",
      "{'descr': <f4, 'fortran_order': False, 'shape': (3,)}",
      "{'descr' '<f4', 'fortran_order': False, 'shape': (3,)}",
      "{'descr': '<f4' 'fortran_order': False, 'shape': (3,)}",
      "{'descr': '<f4', 'fortran_order': false, 'shape': (3,)}",
      "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (3,)}",
      "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': 3}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': [3]}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3.0,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3x,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (,)}",
      "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (3,)}",
      "{'descr\": '<f4', 'fortran_order': False, 'shape': (3,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} x",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)},",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,),,}",
      "{descr: '<f4', fortran_order: False, shape: (3,)}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char name[32];
    snprintf(name, sizeof name, "garbage%zu.npy", i);
    expect_refused_header(name, bad[i], 3, "malformed header");
  }
  /* A header padded with NULs instead of spaces. */
  const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}";
  unsigned char buf[10 + 64 + 4] = {0};
  memcpy(buf, "\x93NUMPY\x01\x00\x40\x00", 10);
  memcpy(buf + 10, dict, strlen(dict));
  char path[1024];
  path_of(path, sizeof path, "nul.npy");
  write_bytes(path, buf, sizeof buf);
  expect_refused(path, 4, SIZE_MAX, "malformed header");
}

static void test_npy_header_unbalanced(void **state) {
  (void)state;
  static const char *const bad[] = {
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,))}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}}",
      "{{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",
      "'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",
      "{'descr: '<f4', 'fortran_order': False, 'shape': (3,)}",
      "{'descr': '<f4, 'fortran_order': False, 'shape': (3,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': ((3,),)}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char name[32];
    snprintf(name, sizeof name, "unbalanced%zu.npy", i);
    expect_refused_header(name, bad[i], 3, "malformed header");
  }
}

static void test_npy_header_unknown_or_duplicate_key(void **state) {
  (void)state;
  expect_refused_header(
      "unknown.npy",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", 3,
      "unknown key 'x'");
  expect_refused_header(
      "dup.npy",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'shape': (3,)}",
      3, "duplicate key 'shape'");
}

static void test_npy_dtype_refused(void **state) {
  (void)state;
  static const char *const dtypes[] = {"<f8", ">f4", "<f2", "|u1",
                                       "<i4", "f4",  "",    "<f4 "};
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
    char header[128], want[32];
    snprintf(header, sizeof header,
             "{'descr': '%s', 'fortran_order': False, 'shape': (3,), }",
             dtypes[i]);
    snprintf(want, sizeof want, "dtype '%s'", dtypes[i]);
    /* Enough bytes for any of them, so only the dtype can be wrong. */
    char path[1024];
    path_of(path, sizeof path, "dtype.npy");
    craft_f32(path, 1, header, 3);
    expect_refused(path, 4, SIZE_MAX, want);
  }
  expect_refused_header("structured.npy",
                        "{'descr': [('a', '<f4')], 'fortran_order': False, "
                        "'shape': (3,), }",
                        3, "structured");
}

/* Integer arrays (lengths): int32 round trip, int64 as crafted, both read
 * widened to int64; float32 and other dtypes refused. */
static void test_npy_int_arrays(void **state) {
  (void)state;
  char path[1024], err[512];
  path_of(path, sizeof path, "ints.npy");
  const int32_t v32[3] = {0, 7, -5};
  const size_t n3 = 3;
  assert_int_equal(clattn_npy_write_i32(path, v32, 1, &n3, err, sizeof err), 0);
  size_t ndim = 0, shape[4];
  int64_t *data = NULL;
  assert_int_equal(clattn_npy_read_int(path, 4, SIZE_MAX, &ndim, shape, &data,
                                       err, sizeof err),
                   0);
  assert_int_equal(ndim, 1);
  assert_int_equal(shape[0], 3);
  assert_true(data[0] == 0 && data[1] == 7 && data[2] == -5);
  free(data);
  /* The same file is not float32. */
  float *f = NULL;
  assert_int_not_equal(
      clattn_npy_read_f32(path, 4, SIZE_MAX, &ndim, shape, &f, err, sizeof err),
      0);
  assert_null(f);
  assert_non_null(strstr(err, "'<f4'"));

  const unsigned char v64[16] = {0x2a, 0,    0,    0,    0,    0,
                                 0,    0,    0xff, 0xff, 0xff, 0xff,
                                 0xff, 0xff, 0xff, 0xff};
  craft(path, 1, 0, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
        v64, sizeof v64);
  assert_int_equal(clattn_npy_read_int(path, 4, SIZE_MAX, &ndim, shape, &data,
                                       err, sizeof err),
                   0);
  assert_int_equal(shape[0], 2);
  assert_true(data[0] == 42 && data[1] == -1);
  free(data);
  /* 16 bytes of int64 are 4 of int32 only when the header says so. */
  craft(path, 1, 0, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
        v64, sizeof v64);
  data = (int64_t *)&ndim;
  assert_int_not_equal(clattn_npy_read_int(path, 4, SIZE_MAX, &ndim, shape,
                                           &data, err, sizeof err),
                       0);
  assert_null(data);
  assert_non_null(strstr(err, "trailing"));

  static const char *const refused[] = {"<f4", "<i2", ">i4", "<u4", "<i8 "};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    char header[128];
    snprintf(header, sizeof header,
             "{'descr': '%s', 'fortran_order': False, 'shape': (2,), }",
             refused[i]);
    craft(path, 1, 0, header, v64, sizeof v64);
    assert_int_not_equal(clattn_npy_read_int(path, 4, SIZE_MAX, &ndim, shape,
                                             &data, err, sizeof err),
                         0);
    assert_null(data);
    assert_non_null(strstr(err, "int32 '<i4' or int64 '<i8'"));
  }
}

static void test_npy_fortran_order(void **state) {
  (void)state;
  expect_refused_header(
      "fortran.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}",
      6, "fortran_order");
}

static void test_npy_wrong_rank(void **state) {
  (void)state;
  char path[1024];
  path_of(path, sizeof path, "rank5.npy");
  craft_f32(path, 1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, "
            "2), }",
            2);
  expect_refused(path, 4, SIZE_MAX, "5-D");
  /* More entries than the parser keeps must still be counted, not stored. */
  char header[1024] = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (int i = 0; i < 100; i++)
    strcat(header, "1, ");
  strcat(header, ")}");
  expect_refused_header("rank100.npy", header, 1, "100-D");
  /* A scalar with no room for any dimension is fine. */
  path_of(path, sizeof path, "scalar0.npy");
  craft_f32(path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}",
            1);
  size_t ndim = 9;
  float *data = NULL;
  char err[256];
  assert_int_equal(
      clattn_npy_read_f32(path, 0, 4, &ndim, NULL, &data, err, sizeof err), 0);
  assert_int_equal(ndim, 0);
  free(data);
}

static void test_npy_shape_overflow(void **state) {
  (void)state;
  char header[256];
  expect_refused_header("entry.npy",
                        "{'descr': '<f4', 'fortran_order': False, 'shape': "
                        "(123456789012345678901234567890,)}",
                        1, "does not fit in size_t");
  snprintf(header, sizeof header,
           "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, 3)}",
           SIZE_MAX / 2);
  expect_refused_header("product.npy", header, 1, "product overflows");
  snprintf(header, sizeof header,
           "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu,)}",
           SIZE_MAX / 4 + 1);
  expect_refused_header("bytes.npy", header, 1, "bytes overflows");
}

static void test_npy_size_over_cap(void **state) {
  (void)state;
  char path[1024];
  path_of(path, sizeof path, "cap.npy");
  craft_f32(path, 1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (32, 32)}",
            1024);
  expect_refused(path, 4, 4095, "over the limit");
  const size_t want[2] = {32, 32};
  char err[256];
  size_t ndim = 0, shape[2];
  float *data = NULL;
  assert_int_equal(
      clattn_npy_read_f32(path, 2, 4096, &ndim, shape, &data, err, sizeof err),
      0);
  assert_int_equal(shape[0], want[0]);
  free(data);
}

static void test_npy_lying_header_not_allocated(void **state) {
  (void)state;
  /* A header that claims a terabyte over a few bytes of data must be refused
   * from the file size, before any allocation is tried. */
  char header[128];
  snprintf(header, sizeof header,
           "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, 4096)}",
           (SIZE_MAX / 4096 / 4) - 1);
  expect_refused_header("liar.npy", header, 2, "truncated");
}

static void test_npy_truncated(void **state) {
  (void)state;
  char path[1024];
  path_of(path, sizeof path, "trunc.npy");
  float three[3] = {1, 2, 3};
  craft(path, 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,)}",
        three, sizeof three);
  expect_refused(path, 4, SIZE_MAX, "truncated");
  craft(path, 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,)}",
        three, 0);
  expect_refused(path, 4, SIZE_MAX, "truncated");
  /* A partial last element counts as truncation too. */
  craft(path, 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
        three, 3);
  expect_refused(path, 4, SIZE_MAX, "truncated");
}

static void test_npy_trailing_data_refused(void **state) {
  (void)state;
  char path[1024];
  path_of(path, sizeof path, "trailing.npy");
  float four[4] = {1, 2, 3, 4};
  craft(path, 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",
        four, sizeof four);
  expect_refused(path, 4, SIZE_MAX, "trailing");
}

static void test_npy_write_io_errors(void **state) {
  (void)state;
  char path[1024], err[512];
  const size_t shape[1] = {4};
  const float data[4] = {1, 2, 3, 4};
  path_of(path, sizeof path, "no_such_dir/out.npy");
  assert_int_not_equal(
      clattn_npy_write_f32(path, data, 1, shape, err, sizeof err), 0);
  assert_non_null(strstr(err, "cannot create"));
  assert_null(strchr(err, '\n'));
  /* A full device makes the flush or close fail, not the open. */
  if (access("/dev/full", W_OK) == 0) {
    assert_int_not_equal(
        clattn_npy_write_f32("/dev/full", data, 1, shape, err, sizeof err), 0);
    assert_non_null(strstr(err, "write failed"));
  }
}

static void test_npy_write_bad_arguments(void **state) {
  (void)state;
  char path[1024], err[512];
  path_of(path, sizeof path, "badargs.npy");
  size_t shape[CLATTN_NPY_MAX_NDIM + 1];
  for (size_t i = 0; i < CLATTN_NPY_MAX_NDIM + 1; i++)
    shape[i] = 1;
  float one = 1.0f;
  assert_int_not_equal(clattn_npy_write_f32(path, &one, CLATTN_NPY_MAX_NDIM + 1,
                                            shape, err, sizeof err),
                       0);
  assert_non_null(strstr(err, "dimensions"));
  assert_int_not_equal(
      clattn_npy_write_f32(path, NULL, 1, shape, err, sizeof err), 0);
  assert_int_not_equal(
      clattn_npy_write_f32(path, &one, 2, NULL, err, sizeof err), 0);
  assert_int_not_equal(
      clattn_npy_write_f32(NULL, &one, 0, NULL, err, sizeof err), 0);
  shape[0] = SIZE_MAX / 2;
  shape[1] = 3;
  assert_int_not_equal(
      clattn_npy_write_f32(path, &one, 2, shape, err, sizeof err), 0);
  assert_non_null(strstr(err, "overflows"));
  /* An empty array needs no data. */
  shape[0] = 0;
  assert_int_equal(clattn_npy_write_f32(path, NULL, 1, shape, err, sizeof err),
                   0);
}

static void test_npy_read_bad_arguments(void **state) {
  (void)state;
  char err[256];
  size_t ndim, shape[4];
  float *data = NULL;
  assert_int_not_equal(clattn_npy_read_f32(NULL, 4, SIZE_MAX, &ndim, shape,
                                           &data, err, sizeof err),
                       0);
  assert_int_not_equal(clattn_npy_read_f32("x.npy", 4, SIZE_MAX, NULL, shape,
                                           &data, err, sizeof err),
                       0);
  assert_int_not_equal(clattn_npy_read_f32("x.npy", 4, SIZE_MAX, &ndim, NULL,
                                           &data, err, sizeof err),
                       0);
  assert_int_not_equal(clattn_npy_read_f32("x.npy", 4, SIZE_MAX, &ndim, shape,
                                           NULL, err, sizeof err),
                       0);
}

static void test_npy_message_buffer_edges(void **state) {
  (void)state;
  char path[1024];
  path_of(path, sizeof path, "missing\nname\x1b.npy");
  size_t ndim, shape[4];
  float *data = NULL;
  /* No buffer at all, a one-byte one and a short one. */
  assert_int_not_equal(
      clattn_npy_read_f32(path, 4, SIZE_MAX, &ndim, shape, &data, NULL, 0), 0);
  char one[1] = {'x'};
  assert_int_not_equal(
      clattn_npy_read_f32(path, 4, SIZE_MAX, &ndim, shape, &data, one, 1), 0);
  assert_int_equal(one[0], '\0');
  char small[9];
  memset(small, 'x', sizeof small);
  assert_int_not_equal(clattn_npy_read_f32(path, 4, SIZE_MAX, &ndim, shape,
                                           &data, small, sizeof small),
                       0);
  assert_int_equal(strlen(small), sizeof small - 1);
  /* Control characters in the path do not break the message's one line. */
  char err[512];
  assert_int_not_equal(clattn_npy_read_f32(path, 4, SIZE_MAX, &ndim, shape,
                                           &data, err, sizeof err),
                       0);
  assert_null(strchr(err, '\n'));
  assert_null(strchr(err, '\x1b'));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_npy_roundtrip_shapes),
      cmocka_unit_test(test_npy_roundtrip_bit_exact),
      cmocka_unit_test(test_npy_int_arrays),
      cmocka_unit_test(test_npy_header_layout),
      cmocka_unit_test(test_npy_reads_v2_and_v3_headers),
      cmocka_unit_test(test_npy_header_forms_accepted),
      cmocka_unit_test(test_npy_long_padded_header),
      cmocka_unit_test(test_npy_missing_file),
      cmocka_unit_test(test_npy_directory),
      cmocka_unit_test(test_npy_empty_file),
      cmocka_unit_test(test_npy_bad_magic),
      cmocka_unit_test(test_npy_short_preamble),
      cmocka_unit_test(test_npy_unsupported_version),
      cmocka_unit_test(test_npy_header_beyond_file),
      cmocka_unit_test(test_npy_header_absurd_length),
      cmocka_unit_test(test_npy_header_missing_key),
      cmocka_unit_test(test_npy_header_garbage),
      cmocka_unit_test(test_npy_header_unbalanced),
      cmocka_unit_test(test_npy_header_unknown_or_duplicate_key),
      cmocka_unit_test(test_npy_dtype_refused),
      cmocka_unit_test(test_npy_fortran_order),
      cmocka_unit_test(test_npy_wrong_rank),
      cmocka_unit_test(test_npy_shape_overflow),
      cmocka_unit_test(test_npy_size_over_cap),
      cmocka_unit_test(test_npy_lying_header_not_allocated),
      cmocka_unit_test(test_npy_truncated),
      cmocka_unit_test(test_npy_trailing_data_refused),
      cmocka_unit_test(test_npy_write_io_errors),
      cmocka_unit_test(test_npy_write_bad_arguments),
      cmocka_unit_test(test_npy_read_bad_arguments),
      cmocka_unit_test(test_npy_message_buffer_edges),
  };
  return cmocka_run_group_tests_name("npy", tests, group_setup, group_teardown);
}
