/*
 * npy.c - the .npy reader and writer of npy.h: a bounded parser for the
 * Python dict literal that NumPy writes as a header, and plain stdio I/O.
 */
#define _POSIX_C_SOURCE 200809L

#include "npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

_Static_assert(sizeof(float) == 4, "float must be IEEE 754 binary32");

#if defined(__GNUC__) || defined(__clang__)
#define NPY_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define NPY_PRINTF(fmt, args)
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6u
/* Large reads and writes go in pieces so that no single stdio call has to
 * move more than a platform's int or ssize_t may count. */
#define NPY_CHUNK ((size_t)1 << 24)
/* The descr and keys kept for messages; longer ones are cut. */
#define NPY_TEXT_MAX 40u

NPY_PRINTF(4, 5)
static void set_err(char *err, size_t errlen, const char *path, const char *fmt,
                    ...) {
  if (err == NULL || errlen == 0)
    return;
  int n = snprintf(err, errlen, "%s: ", path != NULL ? path : "(null)");
  if (n < 0)
    n = 0;
  if ((size_t)n < errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
  }
  err[errlen - 1] = '\0';
  /* Callers print the message as one line, and the path or a quoted header
   * fragment may hold anything. */
  for (char *c = err; *c != '\0'; c++) {
    unsigned char u = (unsigned char)*c;
    if (u < 0x20 || u == 0x7f)
      *c = '?';
  }
}

static int host_is_little_endian(void) {
  const uint32_t one = 1;
  unsigned char first;
  memcpy(&first, &one, 1);
  return first == 1;
}

static void swap_bytes32(void *p, size_t count) {
  unsigned char *b = p;
  for (size_t i = 0; i < count; i++, b += 4) {
    unsigned char t0 = b[0], t1 = b[1];
    b[0] = b[3];
    b[1] = b[2];
    b[2] = t1;
    b[3] = t0;
  }
}

/* ---- Header parser --------------------------------------------------- */

/* What the header dict said, before any of it is judged. */
typedef struct npy_header {
  char descr[NPY_TEXT_MAX];
  size_t descr_len; /* full length, may exceed what descr holds */
  int fortran_order;
  size_t ndim; /* entries seen, may exceed what shape holds */
  size_t shape[CLATTN_NPY_MAX_NDIM];
  int shape_overflow; /* an entry does not fit in size_t */
  unsigned seen;      /* NPY_KEY_* bits */
} npy_header;

#define NPY_KEY_DESCR 1u
#define NPY_KEY_FORTRAN 2u
#define NPY_KEY_SHAPE 4u

typedef struct npy_parser {
  const char *s;
  size_t n;
  size_t i;
  char msg[160];
} npy_parser;

NPY_PRINTF(2, 3)
static int parse_fail(npy_parser *p, const char *fmt, ...) {
  char what[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  snprintf(p->msg, sizeof p->msg, "malformed header: %s at byte %zu", what,
           p->i);
  return -1;
}

static void skip_space(npy_parser *p) {
  while (p->i < p->n) {
    char c = p->s[p->i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' &&
        c != '\v')
      break;
    p->i++;
  }
}

static int peek(const npy_parser *p) {
  return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

static int expect(npy_parser *p, char c) {
  skip_space(p);
  if (peek(p) != (unsigned char)c) {
    if (peek(p) < 0)
      return parse_fail(p, "unexpected end, expected '%c'", c);
    return parse_fail(p, "expected '%c'", c);
  }
  p->i++;
  return 0;
}

/* A Python string literal without escapes or prefixes, which is all NumPy
 * writes. `out` gets as much as fits; *len the full length. */
static int parse_string(npy_parser *p, char *out, size_t outsize, size_t *len) {
  skip_space(p);
  int q = peek(p);
  if (q != '\'' && q != '"')
    return parse_fail(p, q < 0 ? "unexpected end, expected a string"
                               : "expected a quoted string");
  p->i++;
  size_t k = 0;
  for (;;) {
    int c = peek(p);
    if (c < 0 || c == '\n' || c == '\r' || c == '\0')
      return parse_fail(p, "unterminated string");
    if (c == '\\')
      return parse_fail(p, "escape sequences are not supported");
    p->i++;
    if (c == q)
      break;
    if (k + 1 < outsize)
      out[k] = (char)c;
    k++;
  }
  out[k + 1 < outsize ? k : outsize - 1] = '\0';
  *len = k;
  return 0;
}

static int is_ident_char(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_';
}

static int parse_bool(npy_parser *p, int *out) {
  skip_space(p);
  static const char *const words[2] = {"False", "True"};
  for (int v = 0; v < 2; v++) {
    size_t len = strlen(words[v]);
    if (p->n - p->i >= len && memcmp(p->s + p->i, words[v], len) == 0 &&
        !(p->i + len < p->n &&
          is_ident_char((unsigned char)p->s[p->i + len]))) {
      p->i += len;
      *out = v;
      return 0;
    }
  }
  return parse_fail(p, "fortran_order is not True or False");
}

/* A non-negative decimal integer; Python 2 NumPy wrote an 'L' after it. */
static int parse_dim(npy_parser *p, size_t *out, int *overflow) {
  skip_space(p);
  int c = peek(p);
  if (c < 0)
    return parse_fail(p, "unexpected end in shape");
  if (c == '-')
    return parse_fail(p, "negative dimension in shape");
  if (c < '0' || c > '9')
    return parse_fail(p, "expected a dimension in shape");
  size_t v = 0;
  while ((c = peek(p)) >= '0' && c <= '9') {
    size_t d = (size_t)(c - '0');
    if (v > (SIZE_MAX - d) / 10)
      *overflow = 1;
    else
      v = v * 10 + d;
    p->i++;
  }
  if (c == 'L' || c == 'l')
    p->i++;
  if (is_ident_char(peek(p)) || peek(p) == '.')
    return parse_fail(p, "dimension in shape is not an integer");
  *out = v;
  return 0;
}

static int parse_shape(npy_parser *p, npy_header *h) {
  if (expect(p, '(') != 0)
    return parse_fail(p, "shape is not a tuple");
  skip_space(p);
  if (peek(p) == ')') {
    p->i++;
    return 0;
  }
  for (;;) {
    size_t dim = 0;
    if (parse_dim(p, &dim, &h->shape_overflow) != 0)
      return -1;
    if (h->ndim < CLATTN_NPY_MAX_NDIM)
      h->shape[h->ndim] = dim;
    h->ndim++;
    skip_space(p);
    int c = peek(p);
    if (c == ')') {
      /* "(3)" is the integer 3 in Python, which NumPy refuses too. */
      if (h->ndim == 1)
        return parse_fail(p, "shape (N) needs a comma: (N,)");
      p->i++;
      return 0;
    }
    if (c != ',')
      return parse_fail(p, c < 0 ? "unexpected end in shape"
                                 : "expected ',' or ')' in shape");
    p->i++;
    skip_space(p);
    if (peek(p) == ')') {
      p->i++;
      return 0;
    }
  }
}

static void printable_copy(char *out, size_t outsize, const char *in,
                           size_t inlen) {
  size_t k = 0;
  for (; k + 1 < outsize && k < inlen; k++) {
    unsigned char u = (unsigned char)in[k];
    out[k] = (u >= 0x20 && u < 0x7f) ? (char)u : '?';
  }
  out[k] = '\0';
}

static int parse_header(npy_parser *p, npy_header *h) {
  memset(h, 0, sizeof *h);
  if (expect(p, '{') != 0)
    return -1;
  skip_space(p);
  if (peek(p) == '}')
    p->i++;
  else
    for (;;) {
      char key[NPY_TEXT_MAX];
      size_t key_len = 0;
      size_t key_at = p->i;
      if (parse_string(p, key, sizeof key, &key_len) != 0)
        return -1;
      unsigned bit = 0;
      if (key_len == 5 && strcmp(key, "descr") == 0)
        bit = NPY_KEY_DESCR;
      else if (key_len == 13 && strcmp(key, "fortran_order") == 0)
        bit = NPY_KEY_FORTRAN;
      else if (key_len == 5 && strcmp(key, "shape") == 0)
        bit = NPY_KEY_SHAPE;
      if (bit == 0 || (h->seen & bit) != 0) {
        char shown[NPY_TEXT_MAX];
        printable_copy(shown, sizeof shown, key, strlen(key));
        p->i = key_at;
        skip_space(p);
        return parse_fail(p, "%s key '%s%s'", bit ? "duplicate" : "unknown",
                          shown, key_len >= sizeof key ? "..." : "");
      }
      h->seen |= bit;
      if (expect(p, ':') != 0)
        return -1;
      int rc = 0;
      if (bit == NPY_KEY_DESCR) {
        skip_space(p);
        if (peek(p) == '[') {
          snprintf(p->msg, sizeof p->msg,
                   "structured dtype (a list descr) is not supported; "
                   "expected '<f4'");
          return -1;
        }
        rc = parse_string(p, h->descr, sizeof h->descr, &h->descr_len);
      } else if (bit == NPY_KEY_FORTRAN) {
        rc = parse_bool(p, &h->fortran_order);
      } else {
        rc = parse_shape(p, h);
      }
      if (rc != 0)
        return -1;
      skip_space(p);
      int c = peek(p);
      if (c == '}') {
        p->i++;
        break;
      }
      if (c != ',')
        return parse_fail(p, c < 0 ? "unexpected end, expected '}'"
                                   : "expected ',' or '}'");
      p->i++;
      skip_space(p);
      if (peek(p) == '}') {
        p->i++;
        break;
      }
    }
  skip_space(p);
  if (p->i != p->n)
    return parse_fail(p, "unexpected text after the dictionary");
  const char *missing = !(h->seen & NPY_KEY_DESCR)     ? "descr"
                        : !(h->seen & NPY_KEY_FORTRAN) ? "fortran_order"
                        : !(h->seen & NPY_KEY_SHAPE)   ? "shape"
                                                       : NULL;
  if (missing != NULL) {
    snprintf(p->msg, sizeof p->msg, "malformed header: missing key '%s'",
             missing);
    return -1;
  }
  return 0;
}

/* ---- Reader ---------------------------------------------------------- */

/* Reads exactly `size` bytes or fails, in pieces of NPY_CHUNK. */
static int read_all(FILE *f, void *buf, size_t size) {
  unsigned char *b = buf;
  while (size > 0) {
    size_t want = size < NPY_CHUNK ? size : NPY_CHUNK;
    size_t got = fread(b, 1, want, f);
    if (got != want)
      return -1;
    b += got;
    size -= got;
  }
  return 0;
}

static void read_failure(FILE *f, char *err, size_t errlen, const char *path,
                         const char *where) {
  if (ferror(f))
    set_err(err, errlen, path, "read failed in the %s: %s", where,
            strerror(errno));
  else
    set_err(err, errlen, path, "file shrank while reading the %s", where);
}

static void swap_bytes64(void *p, size_t count) {
  unsigned char *b = p;
  for (size_t i = 0; i < count; i++, b += 8)
    for (size_t k = 0; k < 4; k++) {
      unsigned char t = b[k];
      b[k] = b[7 - k];
      b[7 - k] = t;
    }
}

/* The reader of both element kinds: float32 ('<f4') when want_int is 0,
 * else '<i4' or '<i8', whose element size goes to *esize. */
static int read_array(const char *path, int want_int, size_t max_ndim,
                      size_t max_bytes, size_t *ndim, size_t *shape,
                      void **data, size_t *esize, char *err, size_t errlen) {
  FILE *f = NULL;
  char *text = NULL;
  unsigned char *buf = NULL;
  int rc = -1;
  if (ndim != NULL)
    *ndim = 0;
  if (data != NULL)
    *data = NULL;
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (path == NULL || ndim == NULL || data == NULL ||
      (max_ndim > 0 && shape == NULL)) {
    set_err(err, errlen, path, "invalid arguments to the .npy reader");
    return -1;
  }

  f = fopen(path, "rb");
  if (f == NULL) {
    set_err(err, errlen, path, "cannot open: %s", strerror(errno));
    goto done;
  }
  struct stat st;
  if (fstat(fileno(f), &st) != 0) {
    set_err(err, errlen, path, "cannot stat: %s", strerror(errno));
    goto done;
  }
  if (S_ISDIR(st.st_mode)) {
    set_err(err, errlen, path, "is a directory, not a .npy file");
    goto done;
  }
  /* Only a regular file has a size to check the header against. */
  if (!S_ISREG(st.st_mode) || st.st_size < 0) {
    set_err(err, errlen, path, "not a regular file");
    goto done;
  }
  const uintmax_t file_size = (uintmax_t)st.st_size;

  unsigned char pre[12];
  size_t got = fread(pre, 1, 10, f);
  if (got == 0 && file_size == 0) {
    set_err(err, errlen, path, "empty file, not a .npy file");
    goto done;
  }
  if (got < NPY_MAGIC_LEN || memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
    if (ferror(f))
      read_failure(f, err, errlen, path, "preamble");
    else
      set_err(err, errlen, path, "not a .npy file (bad magic)");
    goto done;
  }
  if (got < 10) {
    set_err(err, errlen, path, "file ends inside the .npy preamble");
    goto done;
  }
  const unsigned major = pre[6], minor = pre[7];
  if (major < 1 || major > 3 || minor != 0) {
    set_err(err, errlen, path,
            "unsupported .npy format version %u.%u (1.0, 2.0 and 3.0 are "
            "supported)",
            major, minor);
    goto done;
  }
  uintmax_t header_len;
  size_t offset;
  if (major == 1) {
    header_len = (uintmax_t)pre[8] | (uintmax_t)pre[9] << 8;
    offset = 10;
  } else {
    if (fread(pre + 10, 1, 2, f) != 2) {
      set_err(err, errlen, path, "file ends inside the .npy preamble");
      goto done;
    }
    header_len = (uintmax_t)pre[8] | (uintmax_t)pre[9] << 8 |
                 (uintmax_t)pre[10] << 16 | (uintmax_t)pre[11] << 24;
    offset = 12;
  }
  if (header_len > CLATTN_NPY_MAX_HEADER) {
    set_err(err, errlen, path, "header length %ju is absurd (limit %u)",
            header_len, CLATTN_NPY_MAX_HEADER);
    goto done;
  }
  if (offset + header_len > file_size) {
    set_err(err, errlen, path,
            "header length %ju runs past the end of the file (%ju bytes)",
            header_len, file_size);
    goto done;
  }
  text = malloc((size_t)header_len + 1);
  if (text == NULL) {
    set_err(err, errlen, path, "out of memory");
    goto done;
  }
  if (read_all(f, text, (size_t)header_len) != 0) {
    read_failure(f, err, errlen, path, "header");
    goto done;
  }
  text[header_len] = '\0';

  npy_parser p = {text, (size_t)header_len, 0, {0}};
  npy_header h;
  if (parse_header(&p, &h) != 0) {
    set_err(err, errlen, path, "%s", p.msg);
    goto done;
  }
  const int is_f4 = h.descr_len == 3 && strcmp(h.descr, "<f4") == 0;
  const int is_i4 = h.descr_len == 3 && strcmp(h.descr, "<i4") == 0;
  const int is_i8 = h.descr_len == 3 && strcmp(h.descr, "<i8") == 0;
  if (want_int ? !(is_i4 || is_i8) : !is_f4) {
    char shown[NPY_TEXT_MAX];
    printable_copy(shown, sizeof shown, h.descr, strlen(h.descr));
    set_err(err, errlen, path, "dtype '%s%s' is not %s", shown,
            h.descr_len >= sizeof h.descr ? "..." : "",
            want_int ? "little-endian int32 '<i4' or int64 '<i8'"
                     : "little-endian float32 '<f4'");
    goto done;
  }
  const size_t elem = is_i8 ? 8 : 4;
  if (h.fortran_order) {
    set_err(err, errlen, path,
            "fortran_order is True; only C-order arrays are supported");
    goto done;
  }
  if (h.shape_overflow) {
    set_err(err, errlen, path, "a shape entry does not fit in size_t");
    goto done;
  }
  if (h.ndim > max_ndim) {
    set_err(err, errlen, path, "%zu-D array, at most %zu-D is accepted", h.ndim,
            max_ndim);
    goto done;
  }
  size_t count = 1;
  for (size_t d = 0; d < h.ndim; d++) {
    if (h.shape[d] != 0 && count > SIZE_MAX / h.shape[d]) {
      /* A zero further on would make the product fit, but no real file
       * needs a shape like that, so it is refused as well. */
      set_err(err, errlen, path, "the shape's product overflows size_t");
      goto done;
    }
    count *= h.shape[d];
  }
  if (count > SIZE_MAX / elem) {
    set_err(err, errlen, path, "the shape's size in bytes overflows size_t");
    goto done;
  }
  const size_t nbytes = count * elem;
  if (nbytes > max_bytes) {
    set_err(err, errlen, path,
            "array of %zu bytes is over the limit of %zu bytes", nbytes,
            max_bytes);
    goto done;
  }
  const uintmax_t avail = file_size - offset - header_len;
  if (avail < nbytes) {
    set_err(err, errlen, path, "truncated: %ju data bytes, the shape needs %zu",
            avail, nbytes);
    goto done;
  }
  if (avail > nbytes) {
    set_err(err, errlen, path,
            "%ju bytes of trailing data after the array (shape needs %zu)",
            avail - nbytes, nbytes);
    goto done;
  }
  buf = malloc(nbytes > 0 ? nbytes : 1);
  if (buf == NULL) {
    set_err(err, errlen, path, "out of memory for %zu bytes", nbytes);
    goto done;
  }
  if (read_all(f, buf, nbytes) != 0) {
    read_failure(f, err, errlen, path, "data");
    goto done;
  }
  if (!host_is_little_endian()) {
    if (elem == 8)
      swap_bytes64(buf, count);
    else
      swap_bytes32(buf, count);
  }

  for (size_t d = 0; d < h.ndim; d++)
    shape[d] = h.shape[d];
  *ndim = h.ndim;
  *esize = elem;
  *data = buf;
  buf = NULL;
  rc = 0;

done:
  if (f != NULL)
    fclose(f);
  free(text);
  free(buf);
  return rc;
}

int clattn_npy_read_f32(const char *path, size_t max_ndim, size_t max_bytes,
                        size_t *ndim, size_t *shape, float **data, char *err,
                        size_t errlen) {
  void *raw = NULL;
  size_t esize = 0;
  int rc = read_array(path, 0, max_ndim, max_bytes, ndim, shape,
                      data != NULL ? &raw : NULL, &esize, err, errlen);
  if (data != NULL)
    *data = raw;
  return rc;
}

int clattn_npy_read_int(const char *path, size_t max_ndim, size_t max_bytes,
                        size_t *ndim, size_t *shape, int64_t **data, char *err,
                        size_t errlen) {
  void *raw = NULL;
  size_t esize = 0;
  if (data != NULL)
    *data = NULL;
  int rc = read_array(path, 1, max_ndim, max_bytes, ndim, shape,
                      data != NULL ? &raw : NULL, &esize, err, errlen);
  if (rc != 0 || data == NULL)
    return rc;
  size_t count = 1;
  for (size_t d = 0; d < *ndim; d++)
    count *= shape[d];
  if (esize == 8) {
    *data = raw;
    return 0;
  }
  int64_t *wide = malloc(count > 0 ? count * sizeof(int64_t) : 1);
  if (wide == NULL) {
    free(raw);
    *ndim = 0;
    set_err(err, errlen, path, "out of memory for %zu values", count);
    return -1;
  }
  const unsigned char *b = raw;
  for (size_t i = 0; i < count; i++) {
    int32_t x;
    memcpy(&x, b + 4 * i, 4);
    wide[i] = x;
  }
  free(raw);
  *data = wide;
  return 0;
}

/* ---- Writer ---------------------------------------------------------- */

static int write_all(FILE *f, const void *buf, size_t size) {
  const unsigned char *b = buf;
  while (size > 0) {
    size_t n = size < NPY_CHUNK ? size : NPY_CHUNK;
    if (fwrite(b, 1, n, f) != n)
      return -1;
    b += n;
    size -= n;
  }
  return 0;
}

/* Writes 4-byte elements of the given descr ('<f4' or '<i4'). */
static int write_array(const char *path, const char *descr, const void *data,
                       size_t ndim, const size_t *shape, char *err,
                       size_t errlen) {
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (path == NULL || (ndim > 0 && shape == NULL)) {
    set_err(err, errlen, path, "invalid arguments to the .npy writer");
    return -1;
  }
  if (ndim > CLATTN_NPY_MAX_NDIM) {
    set_err(err, errlen, path, "%zu dimensions, at most %u can be written",
            ndim, CLATTN_NPY_MAX_NDIM);
    return -1;
  }
  size_t count = 1;
  for (size_t d = 0; d < ndim; d++) {
    if (shape[d] != 0 && count > SIZE_MAX / shape[d]) {
      set_err(err, errlen, path, "the shape's product overflows size_t");
      return -1;
    }
    count *= shape[d];
  }
  if (count > SIZE_MAX / sizeof(float)) {
    set_err(err, errlen, path, "the shape's size in bytes overflows size_t");
    return -1;
  }
  if (count > 0 && data == NULL) {
    set_err(err, errlen, path, "no data to write");
    return -1;
  }

  /* 20 digits and ", " per entry, and the fixed text, fit with room. */
  char head[10 + 96 + CLATTN_NPY_MAX_NDIM * 24 + 64];
  size_t n = 10;
  n += (size_t)snprintf(head + n, sizeof head - n,
                        "{'descr': '%s', 'fortran_order': False, 'shape': (",
                        descr);
  for (size_t d = 0; d < ndim; d++)
    n += (size_t)snprintf(head + n, sizeof head - n, "%s%zu", d ? ", " : "",
                          shape[d]);
  n += (size_t)snprintf(head + n, sizeof head - n, "%s), }",
                        ndim == 1 ? "," : "");
  /* NumPy pads with spaces and ends with a newline so that the data starts
   * at a multiple of 64 bytes, which lets readers map it aligned. */
  size_t total = (n + 1 + 63) / 64 * 64;
  memset(head + n, ' ', total - 1 - n);
  head[total - 1] = '\n';
  memcpy(head, NPY_MAGIC, NPY_MAGIC_LEN);
  head[6] = 1;
  head[7] = 0;
  head[8] = (char)((total - 10) & 0xff);
  head[9] = (char)((total - 10) >> 8);

  FILE *f = fopen(path, "wb");
  if (f == NULL) {
    set_err(err, errlen, path, "cannot create: %s", strerror(errno));
    return -1;
  }
  int bad = write_all(f, head, total) != 0;
  if (!bad && host_is_little_endian()) {
    bad = write_all(f, data, count * sizeof(float)) != 0;
  } else if (!bad) {
    float tmp[1024];
    for (size_t i = 0; i < count && !bad; i += 1024) {
      size_t m = count - i < 1024 ? count - i : 1024;
      memcpy(tmp, (const unsigned char *)data + 4 * i, m * sizeof(float));
      swap_bytes32(tmp, m);
      bad = write_all(f, tmp, m * sizeof(float)) != 0;
    }
  }
  if (!bad)
    bad = fflush(f) != 0;
  int saved = errno;
  if (fclose(f) != 0 && !bad) {
    bad = 1;
    saved = errno;
  }
  if (bad) {
    set_err(err, errlen, path, "write failed: %s", strerror(saved));
    return -1;
  }
  return 0;
}

int clattn_npy_write_f32(const char *path, const float *data, size_t ndim,
                         const size_t *shape, char *err, size_t errlen) {
  return write_array(path, "<f4", data, ndim, shape, err, errlen);
}

int clattn_npy_write_i32(const char *path, const int32_t *data, size_t ndim,
                         const size_t *shape, char *err, size_t errlen) {
  return write_array(path, "<i4", data, ndim, shape, err, errlen);
}
