/*
 * clattn-run.c - the clattn-run command: runs one attention operator on .npy
 * files through the public API (include/clattn.h) alone.
 *
 * Scripts depend on its contract exactly: the options in usage(), exit status
 * 0 on success, 1 on bad input or a failure in the library, 2 on a usage
 * error, and on failure exactly one line "clattn-run: <message>" on stderr
 * and nothing on stdout.
 */
#define _POSIX_C_SOURCE 200809L

#include "clattn.h"
#include "npy.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The largest file clattn-run reads or writes, in GiB. Real test and
 * benchmark shapes are far below it; it makes a lying header or a typo in a
 * shape fail at once instead of exhausting memory. */
#define CLATTN_RUN_MAX_FILE_GIB 4u

/* The library's limits on the head dimensions (clattn_desc). */
#define CLATTN_RUN_MAX_HEAD_DIM 256u

/* Messages longer than this are cut: a kernel build log can be huge, and the
 * contract is one line. */
#define CLATTN_RUN_MAX_MESSAGE 4096

#define EXIT_INPUT 1
#define EXIT_USAGE 2

#if defined(__GNUC__) || defined(__clang__)
#define RUN_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define RUN_PRINTF(fmt, args)
#endif

#define V_SOFTMAX (1u << CLATTN_VARIANT_SOFTMAX)
#define V_SIGMOID (1u << CLATTN_VARIANT_SIGMOID)
#define V_LINEAR (1u << CLATTN_VARIANT_LINEAR)
#define V_COSFORMER (1u << CLATTN_VARIANT_COSFORMER)
#define V_ALL (V_SOFTMAX | V_SIGMOID | V_LINEAR | V_COSFORMER)

enum {
  OPT_VARIANT,
  OPT_Q,
  OPT_K,
  OPT_V,
  OPT_OUT,
  OPT_LSE,
  OPT_CAUSAL,
  OPT_SCALE,
  OPT_BIAS,
  OPT_FEATURE_MAP,
  OPT_EPS,
  OPT_COS_M,
  OPT_DTYPE,
  OPT_DEVICE,
  OPT_TILES,
  OPT_DO,
  OPT_DQ,
  OPT_DK,
  OPT_DV,
  OPT_SEQ_LENS_Q,
  OPT_SEQ_LENS_K,
  OPT_WINDOW,
  OPT_ALIBI,
  OPT_SOFTCAP,
  OPT_SCORE_MOD,
  OPT_MASK_MOD,
  OPT_HELP,
  OPT_VERSION,
  OPT_COUNT
};

static const struct option_spec {
  const char *name;
  int takes_value;
  unsigned variants;   /* V_* bits of the variants it applies to */
  const char *applies; /* those variants, for the message */
} option_specs[OPT_COUNT] = {
    [OPT_VARIANT] = {"variant", 1, V_ALL, NULL},
    [OPT_Q] = {"q", 1, V_ALL, NULL},
    [OPT_K] = {"k", 1, V_ALL, NULL},
    [OPT_V] = {"v", 1, V_ALL, NULL},
    [OPT_OUT] = {"out", 1, V_ALL, NULL},
    [OPT_LSE] = {"lse", 1, V_SOFTMAX, "softmax"},
    [OPT_CAUSAL] = {"causal", 0, V_ALL, NULL},
    [OPT_SCALE] = {"scale", 1, V_SOFTMAX | V_SIGMOID, "softmax and sigmoid"},
    [OPT_BIAS] = {"bias", 1, V_SIGMOID, "sigmoid"},
    [OPT_FEATURE_MAP] = {"feature-map", 1, V_LINEAR | V_COSFORMER,
                         "linear and cosformer"},
    [OPT_EPS] = {"eps", 1, V_LINEAR | V_COSFORMER, "linear and cosformer"},
    [OPT_COS_M] = {"cos-m", 1, V_COSFORMER, "cosformer"},
    [OPT_DTYPE] = {"dtype", 1, V_ALL, NULL},
    [OPT_DEVICE] = {"device", 1, V_ALL, NULL},
    [OPT_TILES] = {"tiles", 1, V_ALL, NULL},
    [OPT_DO] = {"do", 1, V_ALL, NULL},
    [OPT_DQ] = {"dq", 1, V_ALL, NULL},
    [OPT_DK] = {"dk", 1, V_ALL, NULL},
    [OPT_DV] = {"dv", 1, V_ALL, NULL},
    [OPT_SEQ_LENS_Q] = {"seq-lens-q", 1, V_ALL, NULL},
    [OPT_SEQ_LENS_K] = {"seq-lens-k", 1, V_ALL, NULL},
    [OPT_WINDOW] = {"window", 1, V_SOFTMAX | V_SIGMOID, "softmax and sigmoid"},
    [OPT_ALIBI] = {"alibi", 1, V_SOFTMAX | V_SIGMOID, "softmax and sigmoid"},
    [OPT_SOFTCAP] = {"softcap", 1, V_SOFTMAX | V_SIGMOID,
                     "softmax and sigmoid"},
    [OPT_SCORE_MOD] = {"score-mod", 1, V_SOFTMAX | V_SIGMOID,
                       "softmax and sigmoid"},
    [OPT_MASK_MOD] = {"mask-mod", 1, V_SOFTMAX | V_SIGMOID,
                      "softmax and sigmoid"},
    [OPT_HELP] = {"help", 0, V_ALL, NULL},
    [OPT_VERSION] = {"version", 0, V_ALL, NULL},
};

static void usage(FILE *out) {
  fputs(
      "usage: clattn-run --variant softmax|sigmoid|linear|cosformer\n"
      "                  --q Q.npy --k K.npy --v V.npy --out O.npy [options]\n"
      "       clattn-run ... --do DO.npy [--dq DQ.npy] [--dk DK.npy]\n"
      "                  [--dv DV.npy] [--out O.npy] [options]\n"
      "\n"
      "Runs one attention operator on an OpenCL device. The inputs are\n"
      "little-endian float32 C-order .npy files: Q [B,Hq,Nq,D],\n"
      "K [B,Hkv,Nk,D] and V [B,Hkv,Nk,Dv], with Hq a multiple of Hkv and\n"
      "D and Dv in 1..256. O.npy is written as float32 [B,Hq,Nq,Dv].\n"
      "With --do (dL/dO, float32 [B,Hq,Nq,Dv]) the forward is followed by\n"
      "the backward pass, and the gradients asked for are written as\n"
      "float32 with the shapes of Q, K and V; --out is then optional.\n"
      "\n"
      "options:\n"
      "  --lse L.npy         softmax: also write the float32 log-sum-exp\n"
      "                      of each row, [B,Hq,Nq]\n"
      "  --causal            causal mask, aligned bottom-right: key j is\n"
      "                      visible to query i when j <= i + Nk - Nq\n"
      "  --scale S           softmax, sigmoid: score scale, not 0\n"
      "                      (default 1/sqrt(D))\n"
      "  --bias B            sigmoid: added to the scaled score\n"
      "                      (default -ln(Nk))\n"
      "  --feature-map elu1|relu\n"
      "                      linear, cosformer: the feature map (default\n"
      "                      elu1 for linear, relu for cosformer)\n"
      "  --eps E             linear, cosformer: denominator epsilon, > 0\n"
      "                      (default 1e-6)\n"
      "  --cos-m M           cosformer: the M of t_i = (pi/2) i / M, > 0\n"
      "                      (default max(Nq, Nk))\n"
      "  --seq-lens-q F.npy, --seq-lens-k F.npy\n"
      "                      per-sequence lengths of a padded batch: int32\n"
      "                      or int64 [B], each in 0..Nq (0..Nk); sequence b\n"
      "                      uses its first Lq rows and Lk keys, rows past\n"
      "                      Lq get O = 0 (LSE -inf), gradients past them 0\n"
      "  --window L,R        softmax, sigmoid: sliding window, key j visible\n"
      "                      to query i when i'-L <= j <= i'+R, with\n"
      "                      i' = i + Lk - Lq; -1 = unbounded on that side\n"
      "  --alibi SLOPES.npy  softmax, sigmoid: ALiBi, float32 [Hq]; the\n"
      "                      score of head h drops by slope[h] |i' - j|\n"
      "  --softcap C         softmax, sigmoid: score = C tanh(score / C),\n"
      "                      C > 0\n"
      "  --score-mod EXPR    softmax, sigmoid: OpenCL C expression giving the\n"
      "                      new score from float score and int b, h, i, j\n"
      "                      (no backward)\n"
      "  --mask-mod EXPR     softmax, sigmoid: OpenCL C condition over int b,\n"
      "                      h, i, j; key j is dropped where it is 0\n"
      "  --dtype f32|f16|bf16  storage type on the device (default f32); the\n"
      "                      files stay float32\n"
      "  --device SEL        device index, P:D, cpu, gpu, accelerator or a\n"
      "                      name substring (default: $CLATTN_DEVICE, else\n"
      "                      the first GPU, else the first device)\n"
      "  --tiles SPEC        tile override NAME=VALUE,... (see clattn-info)\n"
      "  --do DO.npy         run the backward pass with this dL/dO\n"
      "  --dq F, --dk F, --dv F\n"
      "                      write dL/dQ, dL/dK, dL/dV (need --do)\n"
      "  --help              print this and exit\n"
      "  --version           print the version and exit\n",
      out);
  fprintf(out,
          "\n"
          "Each file may hold at most %u GiB. Exit status: 0 on success,\n"
          "1 on bad input or a failure on the device, 2 on a usage error.\n",
          CLATTN_RUN_MAX_FILE_GIB);
}

/* Every failure goes through here, so that each is exactly one line. */
RUN_PRINTF(1, 2)
static void errorf(const char *fmt, ...) {
  char msg[CLATTN_RUN_MAX_MESSAGE];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0)
    snprintf(msg, sizeof msg, "(message could not be formatted)");
  else if ((size_t)n >= sizeof msg)
    memcpy(msg + sizeof msg - 4, "...", 4);
  /* A build log or a path may hold newlines; runs of control characters
   * become one space. */
  size_t w = 0;
  for (size_t r = 0; msg[r] != '\0'; r++) {
    unsigned char u = (unsigned char)msg[r];
    if (u < 0x20 || u == 0x7f) {
      if (w > 0 && msg[w - 1] != ' ')
        msg[w++] = ' ';
    } else {
      msg[w++] = (char)u;
    }
  }
  while (w > 0 && msg[w - 1] == ' ')
    w--;
  msg[w] = '\0';
  fprintf(stderr, "clattn-run: %s\n", msg);
}

/* Parses "L,R" of --window: two ints, each -1 (unbounded) or more. */
static int parse_window(const char *text, int *left, int *right) {
  long v[2];
  const char *t = text;
  for (int n = 0; n < 2; n++) {
    char *end = NULL;
    errno = 0;
    if (!(*t == '-' || (*t >= '0' && *t <= '9')))
      goto bad;
    v[n] = strtol(t, &end, 10);
    if (end == t || errno != 0 || v[n] < -1 || v[n] > INT32_MAX)
      goto bad;
    if (*end != (n == 0 ? ',' : '\0'))
      goto bad;
    t = end + 1;
  }
  *left = (int)v[0];
  *right = (int)v[1];
  return 0;
bad:
  errorf("--window: '%s' is not L,R with two integers of at least -1 "
         "(-1 = unbounded)",
         text);
  return -1;
}

static size_t max_file_bytes(void) {
  const size_t gib = (size_t)1 << 30;
  return SIZE_MAX / gib >= CLATTN_RUN_MAX_FILE_GIB
             ? (size_t)CLATTN_RUN_MAX_FILE_GIB * gib
             : SIZE_MAX;
}

/* Parses a finite float; `rule` is 0 for any value, 'n' for non-zero and
 * 'p' for positive. Zero is refused where the descriptor reads 0 as "the
 * default", so that a user never silently gets something else. */
static int parse_float(const char *option, const char *text, int rule,
                       float *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || isspace((unsigned char)text[0])) {
    errorf("--%s: '%s' is not a number", option, text);
    return -1;
  }
  if (!isfinite(v) || fabs(v) > FLT_MAX) {
    errorf("--%s: %s is not a finite float32 number", option, text);
    return -1;
  }
  float f = (float)v;
  if (v != 0.0 && f == 0.0f) {
    errorf("--%s: %s is too small for float32", option, text);
    return -1;
  }
  if (rule == 'n' && f == 0.0f) {
    errorf("--%s must not be 0 (leave it out for the default)", option);
    return -1;
  }
  if (rule == 'p' && !(f > 0.0f)) {
    errorf("--%s must be greater than 0", option);
    return -1;
  }
  *out = f;
  return 0;
}

typedef struct tensor {
  const char *role; /* "Q", "K", "V" */
  const char *path;
  size_t shape[4];
  float *data;
} tensor;

static int load_tensor(tensor *t, const char *role, const char *path,
                       const char *layout) {
  char err[1024];
  /* Room for any rank, so that a wrong one gets this message, which names
   * the layout, rather than the reader's. */
  size_t ndim = 0, shape[CLATTN_NPY_MAX_NDIM];
  t->role = role;
  t->path = path;
  if (clattn_npy_read_f32(path, CLATTN_NPY_MAX_NDIM, max_file_bytes(), &ndim,
                          shape, &t->data, err, sizeof err) != 0) {
    errorf("%s", err);
    return -1;
  }
  if (ndim != 4) {
    errorf("%s: %zu-D array; %s must be 4-D %s", path, ndim, role, layout);
    return -1;
  }
  memcpy(t->shape, shape, sizeof t->shape);
  for (size_t d = 0; d < 4; d++)
    if (t->shape[d] == 0) {
      errorf("%s: shape [%zu,%zu,%zu,%zu] of %s has a zero dimension", path,
             t->shape[0], t->shape[1], t->shape[2], t->shape[3], role);
      return -1;
    }
  return 0;
}

/* Reads per-sequence lengths: an int32 or int64 array [B] whose entries
 * are in 0..limit (Nq or Nk, named by `what`). */
static int load_lens(const char *option, const char *path, size_t batch,
                     size_t limit, const char *what, cl_int **out) {
  char err[1024];
  size_t ndim = 0, shape[CLATTN_NPY_MAX_NDIM];
  int64_t *raw = NULL;
  if (clattn_npy_read_int(path, CLATTN_NPY_MAX_NDIM, max_file_bytes(), &ndim,
                          shape, &raw, err, sizeof err) != 0) {
    errorf("%s", err);
    return -1;
  }
  int rc = -1;
  if (ndim != 1 || shape[0] != batch) {
    if (ndim == 1)
      errorf("%s: --%s has %zu entries; it must have one per sequence, "
             "B=%zu",
             path, option, shape[0], batch);
    else
      errorf("%s: %zu-D array; --%s must be 1-D [B], B=%zu", path, ndim, option,
             batch);
    goto done;
  }
  for (size_t b = 0; b < batch; b++)
    if (raw[b] < 0 || (uint64_t)raw[b] > limit) {
      errorf("%s: --%s[%zu] = %lld is outside 0..%zu (%s)", path, option, b,
             (long long)raw[b], limit, what);
      goto done;
    }
  *out = malloc((batch > 0 ? batch : 1) * sizeof(cl_int));
  if (*out == NULL) {
    errorf("out of memory for --%s", option);
    goto done;
  }
  for (size_t b = 0; b < batch; b++)
    (*out)[b] = (cl_int)raw[b];
  rc = 0;
done:
  free(raw);
  return rc;
}

/* Reads the ALiBi slopes, float32 [Hq]. */
static int load_slopes(const char *path, size_t heads_q, float **out) {
  char err[1024];
  size_t ndim = 0, shape[CLATTN_NPY_MAX_NDIM];
  if (clattn_npy_read_f32(path, CLATTN_NPY_MAX_NDIM, max_file_bytes(), &ndim,
                          shape, out, err, sizeof err) != 0) {
    errorf("%s", err);
    return -1;
  }
  if (ndim != 1 || shape[0] != heads_q) {
    if (ndim == 1)
      errorf("%s: --alibi has %zu slopes; it must have one per query head, "
             "Hq=%zu",
             path, shape[0], heads_q);
    else
      errorf("%s: %zu-D array; --alibi must be 1-D [Hq], Hq=%zu", path, ndim,
             heads_q);
    return -1;
  }
  for (size_t h = 0; h < heads_q; h++)
    if (!isfinite((*out)[h])) {
      errorf("%s: --alibi slope %zu is not finite", path, h);
      return -1;
    }
  return 0;
}

static int same(const tensor *a, size_t da, const tensor *b, size_t db,
                const char *what) {
  if (a->shape[da] == b->shape[db])
    return 0;
  errorf("%s mismatch: %s has %zu (%s), %s has %zu (%s)", what, a->role,
         a->shape[da], a->path, b->role, b->shape[db], b->path);
  return -1;
}

static int check_shapes(const tensor *q, const tensor *k, const tensor *v) {
  if (same(q, 0, k, 0, "batch B") != 0 || same(q, 0, v, 0, "batch B") != 0 ||
      same(q, 3, k, 3, "head dim D") != 0 ||
      same(k, 1, v, 1, "kv heads Hkv") != 0 ||
      same(k, 2, v, 2, "key length Nk") != 0)
    return -1;
  if (q->shape[1] % k->shape[1] != 0) {
    errorf("Hq=%zu (%s) is not a multiple of Hkv=%zu (%s)", q->shape[1],
           q->path, k->shape[1], k->path);
    return -1;
  }
  if (q->shape[3] > CLATTN_RUN_MAX_HEAD_DIM) {
    errorf("D=%zu (%s) is over the limit of %u", q->shape[3], q->path,
           CLATTN_RUN_MAX_HEAD_DIM);
    return -1;
  }
  if (v->shape[3] > CLATTN_RUN_MAX_HEAD_DIM) {
    errorf("Dv=%zu (%s) is over the limit of %u", v->shape[3], v->path,
           CLATTN_RUN_MAX_HEAD_DIM);
    return -1;
  }
  return 0;
}

/* The element count of an output, or 0 when it overflows or passes the
 * file cap. */
static size_t output_count(const size_t *shape, size_t ndim) {
  size_t n = 1;
  for (size_t d = 0; d < ndim; d++) {
    if (n > SIZE_MAX / shape[d])
      return 0;
    n *= shape[d];
  }
  return n <= max_file_bytes() / sizeof(float) ? n : 0;
}

/* Some OpenCL drivers print to stderr themselves (PoCL prints the compiler's
 * "N errors generated."), which would break the one-line contract. clattn
 * puts the build log in its message anyway, so stderr goes to /dev/null while
 * the library runs. Returns the saved descriptor, or -1 when nothing was
 * redirected. */
static int silence_stderr(void) {
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  if (saved < 0)
    return -1;
  int null_fd = open("/dev/null", O_WRONLY);
  if (null_fd < 0 || dup2(null_fd, STDERR_FILENO) < 0) {
    if (null_fd >= 0)
      close(null_fd);
    close(saved);
    return -1;
  }
  close(null_fd);
  return saved;
}

static void restore_stderr(int saved) {
  if (saved < 0)
    return;
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
}

static void library_error(const char *what, clattn_status st,
                          clattn_context_t ctx) {
  const char *msg = ctx != NULL ? clattn_context_error(ctx) : NULL;
  if (msg == NULL || msg[0] == '\0')
    msg = clattn_status_string(st);
  errorf("%s: %s: %s", what, clattn_status_name(st), msg);
}

int main(int argc, char **argv) {
  const char *values[OPT_COUNT] = {0};
  int seen[OPT_COUNT] = {0};
  tensor q = {0}, k = {0}, v = {0}, dout = {0};
  float *o = NULL, *lse = NULL, *dq = NULL, *dk = NULL, *dv = NULL;
  float *slopes = NULL;
  cl_int *lens_q = NULL, *lens_k = NULL;
  clattn_context_t ctx = NULL;
  clattn_plan_t plan = NULL;
  int rc = EXIT_USAGE;

  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
      errorf("unexpected argument '%s' (see --help)", arg);
      goto done;
    }
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t name_len = eq != NULL ? (size_t)(eq - name) : strlen(name);
    int id = -1;
    for (int o_id = 0; o_id < OPT_COUNT; o_id++)
      if (strlen(option_specs[o_id].name) == name_len &&
          strncmp(option_specs[o_id].name, name, name_len) == 0)
        id = o_id;
    if (id < 0) {
      errorf("unknown option '--%.*s' (see --help)", (int)name_len, name);
      goto done;
    }
    const char *value = NULL;
    if (option_specs[id].takes_value) {
      if (eq != NULL) {
        value = eq + 1;
      } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
        value = argv[++i];
      } else {
        /* A value that starts with "--" is far more often a forgotten
         * value than a file name; --q=--odd still works. */
        errorf("option --%s needs a value", option_specs[id].name);
        goto done;
      }
    } else if (eq != NULL) {
      errorf("option --%s takes no value", option_specs[id].name);
      goto done;
    }
    if (id == OPT_HELP) {
      usage(stdout);
      rc = 0;
      goto done;
    }
    if (id == OPT_VERSION) {
      printf("clattn-run %s\n", clattn_version_string());
      if (clattn_version() != CLATTN_VERSION)
        printf("built against clattn.h %d.%d.%d\n", CLATTN_VERSION_MAJOR,
               CLATTN_VERSION_MINOR, CLATTN_VERSION_PATCH);
      rc = fflush(stdout) == 0 ? 0 : EXIT_INPUT;
      goto done;
    }
    if (seen[id]) {
      errorf("option --%s is given more than once", option_specs[id].name);
      goto done;
    }
    seen[id] = 1;
    values[id] = value;
  }

  static const int required[] = {OPT_VARIANT, OPT_Q, OPT_K, OPT_V};
  for (size_t r = 0; r < sizeof required / sizeof required[0]; r++)
    if (!seen[required[r]]) {
      errorf("missing required option --%s (see --help)",
             option_specs[required[r]].name);
      goto done;
    }
  const int grads = seen[OPT_DQ] || seen[OPT_DK] || seen[OPT_DV];
  if (grads && !seen[OPT_DO]) {
    errorf("--dq, --dk and --dv need --do (the gradient of the output)");
    goto done;
  }
  if (seen[OPT_DO] && !grads) {
    errorf("--do needs at least one of --dq, --dk and --dv");
    goto done;
  }
  if (!seen[OPT_OUT] && !seen[OPT_DO]) {
    errorf("missing required option --out (see --help)");
    goto done;
  }
  if (seen[OPT_LSE] && !seen[OPT_OUT]) {
    errorf("--lse is written with --out");
    goto done;
  }
  clattn_variant variant;
  if (clattn_variant_parse(values[OPT_VARIANT], &variant) != CLATTN_SUCCESS ||
      (unsigned)variant >= CLATTN_VARIANT_COUNT) {
    errorf("unknown variant '%s' (softmax, sigmoid, linear or cosformer)",
           values[OPT_VARIANT]);
    goto done;
  }
  for (int id = 0; id < OPT_COUNT; id++)
    if (seen[id] && !(option_specs[id].variants & (1u << variant))) {
      errorf("--%s does not apply to --variant %s (only to %s)",
             option_specs[id].name, values[OPT_VARIANT],
             option_specs[id].applies);
      goto done;
    }
  /* Every file written must be its own, and none may be an input. */
  static const int written[] = {OPT_OUT, OPT_LSE, OPT_DQ, OPT_DK, OPT_DV};
  static const int inputs[] = {OPT_Q,          OPT_K,          OPT_V,    OPT_DO,
                               OPT_SEQ_LENS_Q, OPT_SEQ_LENS_K, OPT_ALIBI};
  const size_t n_inputs = sizeof inputs / sizeof inputs[0];
  for (size_t a = 0; a < 5; a++) {
    if (!seen[written[a]])
      continue;
    for (size_t b = a + 1; b < 5; b++)
      if (seen[written[b]] &&
          strcmp(values[written[a]], values[written[b]]) == 0) {
        errorf("--%s and --%s name the same file '%s'",
               option_specs[written[a]].name, option_specs[written[b]].name,
               values[written[a]]);
        goto done;
      }
    for (size_t b = 0; b < n_inputs; b++)
      if (seen[inputs[b]] &&
          strcmp(values[written[a]], values[inputs[b]]) == 0) {
        errorf("--%s would overwrite the input --%s '%s'",
               option_specs[written[a]].name, option_specs[inputs[b]].name,
               values[written[a]]);
        goto done;
      }
  }

  clattn_desc desc;
  clattn_desc_init(&desc, variant);
  desc.causal = seen[OPT_CAUSAL];
  if (seen[OPT_DTYPE] &&
      clattn_dtype_parse(values[OPT_DTYPE], &desc.dtype) != CLATTN_SUCCESS) {
    errorf("unknown --dtype '%s' (f32, f16 or bf16)", values[OPT_DTYPE]);
    goto done;
  }
  if (seen[OPT_FEATURE_MAP] &&
      clattn_feature_map_parse(values[OPT_FEATURE_MAP], &desc.feature_map) !=
          CLATTN_SUCCESS) {
    errorf("unknown --feature-map '%s' (elu1 or relu)",
           values[OPT_FEATURE_MAP]);
    goto done;
  }
  if (seen[OPT_SCALE] &&
      parse_float("scale", values[OPT_SCALE], 'n', &desc.scale) != 0)
    goto done;
  if (seen[OPT_BIAS]) {
    if (parse_float("bias", values[OPT_BIAS], 0, &desc.bias) != 0)
      goto done;
    desc.has_bias = 1;
  }
  if (seen[OPT_EPS] && parse_float("eps", values[OPT_EPS], 'p', &desc.eps) != 0)
    goto done;
  if (seen[OPT_COS_M] &&
      parse_float("cos-m", values[OPT_COS_M], 'p', &desc.cos_m) != 0)
    goto done;
  if (seen[OPT_WINDOW] && parse_window(values[OPT_WINDOW], &desc.window_left,
                                       &desc.window_right) != 0)
    goto done;
  if (seen[OPT_SOFTCAP] &&
      parse_float("softcap", values[OPT_SOFTCAP], 'p', &desc.softcap) != 0)
    goto done;
  static const int mods[] = {OPT_SCORE_MOD, OPT_MASK_MOD};
  for (size_t m = 0; m < 2; m++)
    if (seen[mods[m]] && values[mods[m]][0] == '\0') {
      errorf("--%s must not be empty", option_specs[mods[m]].name);
      goto done;
    }
  desc.score_mod = values[OPT_SCORE_MOD];
  desc.mask_mod = values[OPT_MASK_MOD];
  desc.tiles = values[OPT_TILES];

  /* From here on, what goes wrong is the input or the device. */
  rc = EXIT_INPUT;
  if (load_tensor(&q, "Q", values[OPT_Q], "[B,Hq,Nq,D]") != 0 ||
      load_tensor(&k, "K", values[OPT_K], "[B,Hkv,Nk,D]") != 0 ||
      load_tensor(&v, "V", values[OPT_V], "[B,Hkv,Nk,Dv]") != 0 ||
      check_shapes(&q, &k, &v) != 0)
    goto done;

  if ((seen[OPT_SEQ_LENS_Q] &&
       load_lens("seq-lens-q", values[OPT_SEQ_LENS_Q], q.shape[0], q.shape[2],
                 "Nq", &lens_q) != 0) ||
      (seen[OPT_SEQ_LENS_K] &&
       load_lens("seq-lens-k", values[OPT_SEQ_LENS_K], q.shape[0], k.shape[2],
                 "Nk", &lens_k) != 0) ||
      (seen[OPT_ALIBI] &&
       load_slopes(values[OPT_ALIBI], q.shape[1], &slopes) != 0))
    goto done;
  desc.alibi_slopes = slopes;
  const int varlen = lens_q != NULL || lens_k != NULL;

  const size_t o_shape[4] = {q.shape[0], q.shape[1], q.shape[2], v.shape[3]};
  const size_t o_count = output_count(o_shape, 4);
  const size_t lse_count = output_count(o_shape, 3);
  if (o_count == 0 || lse_count == 0) {
    errorf("the output [%zu,%zu,%zu,%zu] would be over the limit of %u GiB",
           o_shape[0], o_shape[1], o_shape[2], o_shape[3],
           CLATTN_RUN_MAX_FILE_GIB);
    goto done;
  }
  const int backward = seen[OPT_DO];
  if (backward) {
    if (load_tensor(&dout, "dO", values[OPT_DO], "[B,Hq,Nq,Dv]") != 0)
      goto done;
    if (memcmp(dout.shape, o_shape, sizeof o_shape) != 0) {
      errorf("dO is [%zu,%zu,%zu,%zu]; the output is [%zu,%zu,%zu,%zu]",
             dout.shape[0], dout.shape[1], dout.shape[2], dout.shape[3],
             o_shape[0], o_shape[1], o_shape[2], o_shape[3]);
      goto done;
    }
  }
  /* Softmax's backward reads the forward's LSE even when no file asks. */
  const int need_lse =
      seen[OPT_LSE] || (backward && variant == CLATTN_VARIANT_SOFTMAX);
  o = malloc(o_count * sizeof(float));
  if (need_lse)
    lse = malloc(lse_count * sizeof(float));
  if (backward) {
    /* The inputs were read, so their element counts fit in memory. */
    dq = malloc(q.shape[0] * q.shape[1] * q.shape[2] * q.shape[3] *
                sizeof(float));
    dk = malloc(k.shape[0] * k.shape[1] * k.shape[2] * k.shape[3] *
                sizeof(float));
    dv = malloc(v.shape[0] * v.shape[1] * v.shape[2] * v.shape[3] *
                sizeof(float));
  }
  if (o == NULL || (need_lse && lse == NULL) ||
      (backward && (!dq || !dk || !dv))) {
    errorf("out of memory for the output");
    goto done;
  }

  desc.batch = q.shape[0];
  desc.heads_q = q.shape[1];
  desc.heads_kv = k.shape[1];
  desc.seq_q = q.shape[2];
  desc.seq_k = k.shape[2];
  desc.dim = q.shape[3];
  desc.dim_v = v.shape[3];

  int saved_stderr = silence_stderr();
  const char *failed = NULL;
  clattn_status st = clattn_context_create(&ctx, values[OPT_DEVICE], 0);
  if (st != CLATTN_SUCCESS)
    failed = "cannot open the device";
  if (failed == NULL &&
      (st = clattn_plan_create(ctx, &desc, &plan)) != CLATTN_SUCCESS)
    failed = "cannot plan the attention";
  if (failed == NULL &&
      (st = varlen ? clattn_plan_run_host_varlen(plan, q.data, k.data, v.data,
                                                 o, lse, lens_q, lens_k)
                   : clattn_plan_run_host(plan, q.data, k.data, v.data, o,
                                          lse)) != CLATTN_SUCCESS)
    failed = "the attention failed";
  if (failed == NULL && backward &&
      (st = varlen ? clattn_plan_backward_host_varlen(
                         plan, q.data, k.data, v.data, o, lse, dout.data, dq,
                         dk, dv, lens_q, lens_k)
                   : clattn_plan_backward_host(plan, q.data, k.data, v.data, o,
                                               lse, dout.data, dq, dk, dv)) !=
          CLATTN_SUCCESS)
    failed = "the backward pass failed";
  restore_stderr(saved_stderr);
  if (failed != NULL) {
    library_error(failed, st, ctx);
    goto done;
  }

  char err[1024];
  if ((seen[OPT_OUT] && clattn_npy_write_f32(values[OPT_OUT], o, 4, o_shape,
                                             err, sizeof err) != 0) ||
      (seen[OPT_LSE] && clattn_npy_write_f32(values[OPT_LSE], lse, 3, o_shape,
                                             err, sizeof err) != 0) ||
      (seen[OPT_DQ] && clattn_npy_write_f32(values[OPT_DQ], dq, 4, q.shape, err,
                                            sizeof err) != 0) ||
      (seen[OPT_DK] && clattn_npy_write_f32(values[OPT_DK], dk, 4, k.shape, err,
                                            sizeof err) != 0) ||
      (seen[OPT_DV] && clattn_npy_write_f32(values[OPT_DV], dv, 4, v.shape, err,
                                            sizeof err) != 0)) {
    errorf("%s", err);
    goto done;
  }
  rc = 0;

done:
  clattn_plan_destroy(plan);
  clattn_context_destroy(ctx);
  free(q.data);
  free(k.data);
  free(v.data);
  free(dout.data);
  free(o);
  free(lse);
  free(dq);
  free(dk);
  free(dv);
  free(slopes);
  free(lens_q);
  free(lens_k);
  return rc;
}
