/*
 * clattn-bench - times attention plans on a device with OpenCL profiling
 * events, after a warm-up, and prints a table or JSON lines. Optionally it
 * times the naive baseline (CLBlast GEMMs around a row kernel, see
 * bench_baseline.h) on the same inputs and checks that it agrees, measures
 * the device's FLOP ceiling once (bench_ceiling.h), and sweeps sequence
 * lengths until a variant runs out of memory or time.
 *
 * The time of one run is measured on the device: from the end of a marker
 * enqueued just before the plan to the end of the plan's last kernel, so
 * plans of several kernels are timed whole. FLOP counts are in README.md.
 */
#include "bench_baseline.h"
#include "bench_ceiling.h"
#include "bench_common.h"
#include "toolutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_MAX_CASES 64
/* The largest batch, head count, length or head dim an option takes. */
#define BENCH_MAX_SIZE ((size_t)1 << 30)

typedef struct options {
  const char *device;
  int variants[CLATTN_VARIANT_COUNT]; /* which to run */
  size_t batch, heads, kv_heads, seq_k, dim, dim_v;
  size_t seqs[BENCH_MAX_CASES];
  size_t nseqs;
  int causal_modes[2]; /* non-causal, causal */
  clattn_dtype dtype;
  int repeat, warmup;
  double warmup_seconds, max_seconds, max_case_seconds;
  int json;
  const char *tiles;
  int baseline, ceiling, sweep, clblast_defaults, backward;
  size_t ceiling_size;
  int variant_given, seq_given, causal_given;
  /* --window: softmax and sigmoid. */
  int window_left, window_right, window_given;
  /* --seq-lens: lengths (or fractions of Nk) cycled over the batch. */
  double lens[BENCH_MAX_CASES];
  int lens_frac[BENCH_MAX_CASES];
  size_t nlens;
  const char *lens_text;
} options;

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: clattn-bench [--variant V[,V...]|all] [--batch B] "
      "[--heads H] [--kv-heads H]\n"
      "                    [--seq N[,N...]] [--seq-k N] [--dim D] "
      "[--dim-v D] [--causal|--causal-both]\n"
      "                    [--dtype f32|f16|bf16] [--device SEL] [--repeat R] "
      "[--warmup W] [--warmup-seconds S]\n"
      "                    [--max-seconds S] [--max-case-seconds S] "
      "[--tiles SPEC] [--json]\n"
      "                    [--baseline naive] [--clblast-defaults] "
      "[--ceiling] [--ceiling-size N] [--sweep]\n"
      "                    [--backward] [--window L,R] [--seq-lens L[,L...]]\n"
      "Defaults: softmax, B=1, H=8, N=1024, D=64, f32, 10 repeats after "
      "2 warm-up runs\n"
      "and at least 0.25 s of them (--warmup-seconds; a CPU runtime's new "
      "threads take\n"
      "tens of milliseconds to spread over the cores);\n"
      "a case stops repeating (after 3 runs) once it has taken "
      "--max-seconds (10).\n"
      "--baseline naive     also time Q K^T (CLBlast), a row kernel and "
      "P V (CLBlast)\n"
      "                     on the same inputs, and check that it agrees "
      "with clattn.\n"
      "--clblast-defaults   keep CLBlast's own SGEMM parameters on a CPU "
      "device too (by\n"
      "                     default a CPU gets parameters suited to it, "
      "4-6x faster).\n"
      "--ceiling            measure the device's SGEMM rate (size "
      "--ceiling-size, 2048)\n"
      "                     and its copy bandwidth once, and report each "
      "case as a\n"
      "                     fraction of them (decode cases: K+V GB/s of the "
      "copy rate).\n"
      "--backward           time the backward pass (dQ, dK, dV) instead "
      "of the forward;\n"
      "                     the forward runs once first for its outputs.\n"
      "--window L,R         softmax, sigmoid: sliding window (-1: unbounded "
      "side); FLOPs\n"
      "                     count only the (query, key) pairs it leaves "
      "visible.\n"
      "--seq-lens L[,L...]  per-sequence lengths, cycled over the batch: an "
      "integer, or\n"
      "                     a fraction of Nk with a '.' (0.5); sequence b "
      "gets\n"
      "                     Lq = min(L, Nq) rows and Lk = min(L, Nk) keys. "
      "FLOPs and\n"
      "                     K+V bytes count what the lengths leave.\n"
      "--sweep              lengths 256, 512, ..., 32768, every variant, "
      "causal and not\n"
      "                     (--seq, --variant, --causal narrow it).\n"
      "Lengths run in increasing order; a variant (per causal mode) stops "
      "at the length\n"
      "where it runs out of memory or one run would take longer than "
      "--max-case-seconds (60).\n");
}

static int parse_seconds(const char *s, double *out) {
  char *end = NULL;
  double v = strtod(s, &end);
  if (!*s || *end || !(v > 0.0))
    return 0;
  *out = v;
  return 1;
}

/* "L,R": two integers, each at least -1. */
static int parse_window(const char *s, int *left, int *right) {
  char *end = NULL;
  long l = strtol(s, &end, 10);
  if (end == s || *end != ',' || l < -1 || l > 1 << 30)
    return 0;
  const char *t = end + 1;
  long r = strtol(t, &end, 10);
  if (end == t || *end || r < -1 || r > 1 << 30)
    return 0;
  *left = (int)l;
  *right = (int)r;
  return 1;
}

/* --seq-lens: comma-separated integers (0 allowed) or fractions in 0..1
 * (written with a '.'). */
static int parse_lens(const char *s, options *o) {
  o->nlens = 0;
  o->lens_text = s;
  const char *p = s;
  while (*p) {
    if (*p == ',') {
      p++;
      continue;
    }
    if (o->nlens == BENCH_MAX_CASES)
      return 0;
    size_t len = strcspn(p, ",");
    char item[64];
    if (len >= sizeof item)
      return 0;
    memcpy(item, p, len);
    item[len] = '\0';
    char *end = NULL;
    int frac = strchr(item, '.') != NULL;
    double v = strtod(item, &end);
    if (end == item || *end || !(v >= 0.0) ||
        (frac ? v > 1.0 : v != floor(v) || v > (double)BENCH_MAX_SIZE))
      return 0;
    o->lens[o->nlens] = v;
    o->lens_frac[o->nlens] = frac;
    o->nlens++;
    p += len;
  }
  return o->nlens > 0;
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return (x > y) - (x < y);
}

/* Returns 0 on success, 2 on a usage error (message printed). */
static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->variants[CLATTN_VARIANT_SOFTMAX] = 1;
  o->batch = 1;
  o->heads = 8;
  o->dim = 64;
  o->seqs[0] = 1024;
  o->nseqs = 1;
  o->causal_modes[0] = 1;
  o->repeat = 10;
  o->warmup = 2;
  o->warmup_seconds = 0.25;
  o->max_seconds = 10.0;
  o->max_case_seconds = 60.0;
  o->ceiling_size = 2048;
  o->window_left = o->window_right = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    }
    if (!strcmp(a, "--json")) {
      o->json = 1;
      continue;
    }
    if (!strcmp(a, "--causal")) {
      o->causal_modes[0] = 0;
      o->causal_modes[1] = 1;
      o->causal_given = 1;
      continue;
    }
    if (!strcmp(a, "--causal-both")) {
      o->causal_modes[0] = o->causal_modes[1] = 1;
      o->causal_given = 1;
      continue;
    }
    if (!strcmp(a, "--ceiling")) {
      o->ceiling = 1;
      continue;
    }
    if (!strcmp(a, "--backward")) {
      o->backward = 1;
      continue;
    }
    if (!strcmp(a, "--sweep")) {
      o->sweep = 1;
      continue;
    }
    if (!strcmp(a, "--clblast-defaults")) {
      o->clblast_defaults = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "clattn-bench: %s needs a value\n", a);
      return 2;
    }
    const char *val = argv[++i];
    int ok = 1;
    if (!strcmp(a, "--variant")) {
      ok = tool_parse_variants(val, o->variants);
      o->variant_given = 1;
    } else if (!strcmp(a, "--batch"))
      ok = tool_parse_size(val, BENCH_MAX_SIZE, &o->batch);
    else if (!strcmp(a, "--heads"))
      ok = tool_parse_size(val, BENCH_MAX_SIZE, &o->heads);
    else if (!strcmp(a, "--kv-heads"))
      ok = tool_parse_size(val, BENCH_MAX_SIZE, &o->kv_heads);
    else if (!strcmp(a, "--seq")) {
      ok = tool_parse_size_list(val, BENCH_MAX_SIZE, o->seqs, BENCH_MAX_CASES,
                                &o->nseqs);
      o->seq_given = 1;
    } else if (!strcmp(a, "--seq-k"))
      ok = tool_parse_size(val, BENCH_MAX_SIZE, &o->seq_k);
    else if (!strcmp(a, "--dim"))
      ok = tool_parse_size(val, BENCH_MAX_SIZE, &o->dim);
    else if (!strcmp(a, "--dim-v"))
      ok = tool_parse_size(val, BENCH_MAX_SIZE, &o->dim_v);
    else if (!strcmp(a, "--dtype"))
      ok = clattn_dtype_parse(val, &o->dtype) == CLATTN_SUCCESS;
    else if (!strcmp(a, "--device"))
      o->device = val;
    else if (!strcmp(a, "--tiles"))
      o->tiles = val;
    else if (!strcmp(a, "--repeat"))
      ok = (o->repeat = atoi(val)) > 0;
    else if (!strcmp(a, "--warmup"))
      ok = (o->warmup = atoi(val)) >= 0;
    else if (!strcmp(a, "--warmup-seconds")) {
      o->warmup_seconds = 0.0; /* 0: the W runs alone */
      ok = !strcmp(val, "0") || parse_seconds(val, &o->warmup_seconds);
    } else if (!strcmp(a, "--max-seconds"))
      ok = parse_seconds(val, &o->max_seconds);
    else if (!strcmp(a, "--max-case-seconds"))
      ok = parse_seconds(val, &o->max_case_seconds);
    else if (!strcmp(a, "--baseline"))
      ok = (o->baseline = !strcmp(val, "naive"));
    else if (!strcmp(a, "--ceiling-size"))
      ok = tool_parse_size(val, 16384, &o->ceiling_size);
    else if (!strcmp(a, "--window")) {
      ok = parse_window(val, &o->window_left, &o->window_right);
      o->window_given = 1;
    } else if (!strcmp(a, "--seq-lens"))
      ok = parse_lens(val, o);
    else {
      fprintf(stderr, "clattn-bench: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "clattn-bench: bad value for %s: %s\n", a, val);
      return 2;
    }
  }
  if (o->sweep) {
    if (!o->variant_given) {
      for (int v = 0; v < CLATTN_VARIANT_COUNT; v++)
        o->variants[v] = 1;
    }
    if (!o->causal_given)
      o->causal_modes[0] = o->causal_modes[1] = 1;
    if (!o->seq_given) {
      o->nseqs = 0;
      for (size_t n = 256; n <= 32768; n *= 2)
        o->seqs[o->nseqs++] = n;
    }
  }
  if (o->window_given && (o->variants[CLATTN_VARIANT_LINEAR] ||
                          o->variants[CLATTN_VARIANT_COSFORMER])) {
    if (o->variant_given) {
      fprintf(stderr, "clattn-bench: --window applies to softmax and sigmoid "
                      "only\n");
      return 2;
    }
    o->variants[CLATTN_VARIANT_LINEAR] = 0;
    o->variants[CLATTN_VARIANT_COSFORMER] = 0;
  }
  /* Increasing lengths, so that a variant can stop at the first length that
   * does not fit. */
  qsort(o->seqs, o->nseqs, sizeof o->seqs[0], cmp_size);
  return 0;
}

/* ---- Progress on a terminal ------------------------------------------- */

static int progress_on;

static void progress(const char *fmt, ...) {
  if (!progress_on)
    return;
  va_list ap;
  va_start(ap, fmt);
  fputs("\r\033[K", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fflush(stderr);
}

static void progress_clear(void) {
  if (progress_on) {
    fputs("\r\033[K", stderr);
    fflush(stderr);
  }
}

/* A message on stderr, clearing the progress line first. */
static void warn(const char *fmt, ...) {
  va_list ap;
  progress_clear();
  va_start(ap, fmt);
  fputs("clattn-bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* ---- FLOP counts -------------------------------------------------------- */

/* The key range row i of a sequence of lq rows and lk keys sees, as the
 * library's masks define it (causal bounds the right side at 0);
 * *hi < *lo when it sees none. */
static void row_range(long long i, long long lq, long long lk,
                      const clattn_desc *d, long long *lo, long long *hi) {
  long long ip = i + lk - lq;
  int right = d->causal ? 0 : d->window_right;
  *lo = d->window_left >= 0 ? ip - d->window_left : 0;
  *hi = right >= 0 ? ip + right : lk - 1;
  if (*lo < 0)
    *lo = 0;
  if (*hi > lk - 1)
    *hi = lk - 1;
}

/* Visible (query, key) pairs of one sequence. */
static double visible_pairs(size_t lq, size_t lk, const clattn_desc *d) {
  if (!d->causal && d->window_left < 0 && d->window_right < 0)
    return (double)lq * (double)lk;
  double pairs = 0;
  for (size_t i = 0; i < lq; i++) {
    long long lo, hi;
    row_range((long long)i, (long long)lq, (long long)lk, d, &lo, &hi);
    if (hi >= lo)
      pairs += (double)(hi - lo + 1);
  }
  return pairs;
}

/* Keys of one sequence that some row sees (rows' ranges move by one key a
 * row, so together they are one range). */
static double keys_seen(size_t lq, size_t lk, const clattn_desc *d) {
  if (lq == 0 || lk == 0)
    return 0.0;
  long long lo0, hi0, lo1, hi1;
  row_range(0, (long long)lq, (long long)lk, d, &lo0, &hi0);
  row_range((long long)lq - 1, (long long)lq, (long long)lk, d, &lo1, &hi1);
  long long lo = lo0 < lo1 ? lo0 : lo1, hi = hi0 > hi1 ? hi0 : hi1;
  return hi >= lo ? (double)(hi - lo + 1) : 0.0;
}

/* The lengths of sequence b: the whole Nq and Nk, or --seq-lens. */
static void case_lens(const options *o, const clattn_desc *d, size_t b,
                      size_t *lq, size_t *lk) {
  *lq = d->seq_q;
  *lk = d->seq_k;
  if (!o->nlens)
    return;
  size_t e = b % o->nlens;
  double v = o->lens[e];
  size_t len = o->lens_frac[e] ? (size_t)ceil(v * (double)d->seq_k) : (size_t)v;
  if (len < *lq)
    *lq = len;
  if (len < *lk)
    *lk = len;
}

/* The FLOP count README.md states for each variant, summed over the
 * sequences with their lengths. */
static double flops_of(const clattn_desc *d, const options *o) {
  double D = (double)d->dim, Dv = (double)(d->dim_v ? d->dim_v : d->dim);
  double h = (double)d->heads_q, sum = 0.0;
  for (size_t b = 0; b < d->batch; b++) {
    size_t lq, lk;
    case_lens(o, d, b, &lq, &lk);
    double nq = (double)lq, nk = (double)lk;
    switch (d->variant) {
    case CLATTN_VARIANT_SOFTMAX:
    case CLATTN_VARIANT_SIGMOID:
      sum += h * 2.0 * (D + Dv) * visible_pairs(lq, lk, d);
      break;
    case CLATTN_VARIANT_LINEAR:
      sum += h * 2.0 * (nq + nk) * D * (Dv + 1.0);
      break;
    case CLATTN_VARIANT_COSFORMER:
      sum += h * 2.0 * (nq + nk) * 2.0 * D * (Dv + 1.0);
      break;
    default:
      break;
    }
  }
  return sum;
}

/* The backward pass: 2.5x the forward for softmax and sigmoid (dV = P^T dO,
 * dP = dO V^T, dQ = dS K, dK = dS^T Q and the recomputed S = Q K^T, the
 * FlashAttention convention), and 2x for linear attention and cosFormer
 * (the forward's state products once more for dQ, and their reverse for dK
 * and dV). */
static double backward_flops_of(const clattn_desc *d, const options *o) {
  double f = flops_of(d, o);
  return d->variant == CLATTN_VARIANT_SOFTMAX ||
                 d->variant == CLATTN_VARIANT_SIGMOID
             ? 2.5 * f
             : 2.0 * f;
}

/* Decode cases (softmax or sigmoid with at most this many query rows, the
 * rows the library's decode kernels take) also report the rate at which K
 * and V are read. */
#define BENCH_DECODE_MAX_Q 16

/* Bytes of K and V a decode case reads: every key some row sees, once
 * (all of them without lengths or a window). */
static double kv_bytes(const clattn_desc *d, const options *o) {
  if ((d->variant != CLATTN_VARIANT_SOFTMAX &&
       d->variant != CLATTN_VARIANT_SIGMOID) ||
      d->seq_q > BENCH_DECODE_MAX_Q)
    return 0.0;
  double hkv = (double)(d->heads_kv ? d->heads_kv : d->heads_q);
  double dv = (double)(d->dim_v ? d->dim_v : d->dim);
  double keys = 0.0;
  for (size_t b = 0; b < d->batch; b++) {
    size_t lq, lk;
    case_lens(o, d, b, &lq, &lk);
    keys += keys_seen(lq, lk, d);
  }
  return hkv * keys * ((double)d->dim + dv) *
         (double)clattn_dtype_size(d->dtype);
}

/* ---- One case ------------------------------------------------------------ */

typedef struct result {
  bench_timing t;
  double gflops;
  double gbps; /* K and V bytes read per second (decode cases), else 0 */
  size_t device_bytes;
  char tiles[256];
  /* The baseline: ran (1), failed or skipped (0, with base_error). */
  int base_ran;
  bench_timing bt;
  size_t base_bytes;
  double base_rel_error;
  int base_agrees;
  char base_error[512];
} result;

typedef struct plan_run {
  clattn_context_t ctx;
  clattn_plan_t plan;
  cl_command_queue queue;
  cl_mem *bufs; /* q, k, v, o, then for the backward lse, dO, dQ, dK, dV */
  cl_mem lens_q, lens_k; /* --seq-lens, or NULL */
} plan_run;

static int status_is_resource(clattn_status st) {
  return st == CLATTN_ERROR_OUT_OF_RESOURCES ||
         st == CLATTN_ERROR_OUT_OF_HOST_MEMORY ||
         st == CLATTN_ERROR_INVALID_BUFFER_SIZE;
}

/* bench_run_fn: the device time of one plan run in ms. */
static int plan_once(void *arg, double *ms, char *err, size_t errlen,
                     int *resource) {
  plan_run *p = arg;
  int code = 0;
  switch (tool_time_plan_once_varlen(p->plan, p->queue, p->bufs[0], p->bufs[1],
                                     p->bufs[2], p->bufs[3], p->lens_q,
                                     p->lens_k, ms, &code)) {
  case TOOL_TIME_OK:
    return 0;
  case TOOL_TIME_MARKER:
    snprintf(err, errlen, "clEnqueueMarkerWithWaitList failed (%d)", code);
    *resource = bench_cl_is_resource_error((cl_int)code);
    return 1;
  case TOOL_TIME_RUN:
    snprintf(err, errlen, "%s: %s", clattn_status_name((clattn_status)code),
             clattn_context_error(p->ctx));
    *resource = status_is_resource((clattn_status)code);
    return 1;
  default:
    snprintf(err, errlen, "the run or its profiling failed (%d)", code);
    *resource = bench_cl_is_resource_error((cl_int)code);
    return 1;
  }
}

static double host_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* bench_run_fn: the device time of one backward run in ms, from a marker
 * enqueued just before it to its end. NVIDIA's OpenCL (driver 580) gave
 * the marker an end time after the backward's last kernel ended, so a span
 * that comes out empty is replaced by the host's time of the run, from an
 * idle queue to the wait's return, which includes the enqueue overhead. */
static int backward_once(void *arg, double *ms, char *err, size_t errlen,
                         int *resource) {
  plan_run *p = arg;
  cl_mem *b = p->bufs;
  cl_event marker = NULL, done = NULL;
  clFinish(p->queue);
  const double h0 = host_ms();
  cl_int e = clEnqueueMarkerWithWaitList(p->queue, 0, NULL, &marker);
  int rc = 1;
  if (e != CL_SUCCESS) {
    snprintf(err, errlen, "clEnqueueMarkerWithWaitList failed (%d)", e);
    *resource = bench_cl_is_resource_error(e);
    goto cleanup;
  }
  clattn_status st =
      p->lens_q
          ? clattn_plan_backward_varlen(p->plan, b[0], b[1], b[2], b[3], b[4],
                                        b[5], b[6], b[7], b[8], p->lens_q,
                                        p->lens_k, 1, &marker, &done)
          : clattn_plan_backward(p->plan, b[0], b[1], b[2], b[3], b[4], b[5],
                                 b[6], b[7], b[8], 1, &marker, &done);
  if (st != CLATTN_SUCCESS) {
    snprintf(err, errlen, "%s: %s", clattn_status_name(st),
             clattn_context_error(p->ctx));
    *resource = status_is_resource(st);
    goto cleanup;
  }
  e = clWaitForEvents(1, &done);
  const double h1 = host_ms();
  if (e == CL_SUCCESS)
    e = tool_event_span_ms(marker, done, ms);
  if (e == CL_SUCCESS && *ms <= 0.0)
    *ms = h1 - h0;
  if (e != CL_SUCCESS) {
    snprintf(err, errlen, "the backward run or its profiling failed (%d)", e);
    *resource = bench_cl_is_resource_error(e);
    goto cleanup;
  }
  rc = 0;
cleanup:
  if (marker)
    clReleaseEvent(marker);
  if (done)
    clReleaseEvent(done);
  return rc;
}

/* Largest |a - b| over the largest |b|; NaN anywhere gives infinity. */
static double max_rel_error(const float *a, const float *b, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    double x = (double)a[i], y = (double)b[i];
    if (isnan(x) || isnan(y))
      return INFINITY;
    double diff = fabs(x - y);
    if (diff > num)
      num = diff;
    if (fabs(y) > den)
      den = fabs(y);
  }
  return den > 0.0 ? num / den : num;
}

/* Agreement tolerance of baseline and clattn, relative to the largest output:
 * both compute in float, in different orders; f16 adds the output's
 * rounding. */
static double agree_tolerance(clattn_dtype dtype) {
  return dtype == CLATTN_DTYPE_BF16  ? 2e-2
         : dtype == CLATTN_DTYPE_F16 ? 1e-2
                                     : 1e-4;
}

/* Runs the baseline on the case's buffers; fills the base_ fields of r.
 * Returns 1 when the baseline ran out of memory or time (so that longer
 * lengths skip it). */
static int baseline_case(bench_baseline *bl, cl_command_queue queue,
                         cl_context cl, const bench_limits *lim,
                         const clattn_desc *d, cl_mem *bufs, size_t out_count,
                         size_t in_use, result *r) {
  size_t es = clattn_dtype_size(d->dtype);
  float *ours = NULL, *theirs = NULL;
  cl_mem o2 = NULL;
  cl_int e = CL_SUCCESS;
  int resource = 0, stop = 0;
  ours = malloc(out_count * sizeof(float));
  theirs = malloc(out_count * sizeof(float));
  if (!ours || !theirs) {
    snprintf(r->base_error, sizeof r->base_error, "out of host memory");
    stop = 1;
    goto cleanup;
  }
  e = bench_read_floats(queue, bufs[3], out_count, d->dtype, ours);
  if (e == CL_SUCCESS)
    o2 = clCreateBuffer(cl, CL_MEM_READ_WRITE, out_count * es, NULL, &e);
  if (e != CL_SUCCESS) {
    snprintf(r->base_error, sizeof r->base_error,
             "could not read clattn's output or allocate the baseline's (%d)",
             e);
    stop = bench_cl_is_resource_error(e);
    goto cleanup;
  }
  in_use += out_count * es;
  char err[512] = "";
  if (bench_baseline_time(bl, d, bufs[0], bufs[1], bufs[2], o2, in_use, lim,
                          &r->bt, &r->base_bytes, err, sizeof err, &resource)) {
    snprintf(r->base_error, sizeof r->base_error, "%s", err);
    stop = resource;
    goto cleanup;
  }
  e = bench_read_floats(queue, o2, out_count, d->dtype, theirs);
  if (e != CL_SUCCESS) {
    snprintf(r->base_error, sizeof r->base_error,
             "could not read the baseline's output (%d)", e);
    goto cleanup;
  }
  r->base_ran = 1;
  r->base_rel_error = max_rel_error(ours, theirs, out_count);
  r->base_agrees = r->base_rel_error <= agree_tolerance(d->dtype);
  stop = r->bt.over_limit;
cleanup:
  if (o2)
    clReleaseMemObject(o2);
  free(ours);
  free(theirs);
  return stop;
}

/* Times one case. Returns 0, or 1 with err (and *resource set when the case
 * does not fit on the device). */
static int bench_case(clattn_context_t ctx, bench_baseline *bl,
                      const options *o, const clattn_desc *d,
                      const char *base_skip, int *base_stop, result *r,
                      char *err, size_t errlen, int *resource) {
  cl_context cl = clattn_context_cl(ctx);
  cl_command_queue queue = clattn_context_queue(ctx);
  clattn_device_profile prof;
  size_t es = clattn_dtype_size(d->dtype);
  size_t hkv = d->heads_kv ? d->heads_kv : d->heads_q;
  size_t dv = d->dim_v ? d->dim_v : d->dim;
  /* q, k, v, o; for the backward also lse, dO, dQ, dK, dV. */
  size_t counts[9] = {d->batch * d->heads_q * d->seq_q * d->dim,
                      d->batch * hkv * d->seq_k * d->dim,
                      d->batch * hkv * d->seq_k * dv,
                      d->batch * d->heads_q * d->seq_q * dv,
                      d->batch * d->heads_q * d->seq_q,
                      d->batch * d->heads_q * d->seq_q * dv,
                      d->batch * d->heads_q * d->seq_q * d->dim,
                      d->batch * hkv * d->seq_k * d->dim,
                      d->batch * hkv * d->seq_k * dv};
  size_t sizes[9];
  int nbufs = o->backward ? 9 : 4;
  for (int i = 0; i < 9; i++)
    sizes[i] = counts[i] * (i == 4 ? sizeof(float) : es);
  cl_mem bufs[9] = {NULL};
  cl_mem lens[2] = {NULL, NULL};
  clattn_plan_t plan = NULL;
  bench_limits lim = {o->warmup, o->repeat, o->max_seconds, o->max_case_seconds,
                      o->warmup_seconds};
  int rc = 1;
  memset(r, 0, sizeof *r);
  *resource = 0;
  *base_stop = 0;
  clattn_context_profile(ctx, &prof);
  clattn_status st = clattn_plan_create(ctx, d, &plan);
  if (st != CLATTN_SUCCESS) {
    snprintf(err, errlen, "%s: %s", clattn_status_name(st),
             clattn_context_error(ctx));
    *resource = status_is_resource(st);
    goto cleanup;
  }
  clattn_plan_describe(plan, r->tiles, sizeof r->tiles);
  r->device_bytes = clattn_plan_device_bytes(plan);
  size_t in_use = r->device_bytes;
  for (int i = 0; i < nbufs; i++) {
    if (sizes[i] > prof.max_mem_alloc_size) {
      snprintf(err, errlen,
               "out of memory: a %zu-byte tensor exceeds the device's largest "
               "allocation (%llu bytes)",
               sizes[i], (unsigned long long)prof.max_mem_alloc_size);
      *resource = 1;
      goto cleanup;
    }
    in_use += sizes[i];
  }
  if (in_use > prof.global_mem_size) {
    snprintf(err, errlen,
             "out of memory: the tensors and workspace need %zu bytes, the "
             "device has %llu",
             in_use, (unsigned long long)prof.global_mem_size);
    *resource = 1;
    goto cleanup;
  }
  unsigned seed = 12345u;
  for (int i = 0; i < nbufs; i++) {
    cl_int e = CL_SUCCESS;
    bufs[i] = clCreateBuffer(cl, CL_MEM_READ_WRITE, sizes[i], NULL, &e);
    if (e == CL_SUCCESS && (i < 3 || i == 5))
      e = bench_fill_random(queue, bufs[i], counts[i], d->dtype, &seed);
    if (e != CL_SUCCESS) {
      snprintf(err, errlen, "could not allocate or fill inputs (%d)", e);
      *resource = bench_cl_is_resource_error(e);
      goto cleanup;
    }
  }
  if (o->nlens) {
    cl_int *host = malloc(2 * d->batch * sizeof(cl_int));
    cl_int e = host ? CL_SUCCESS : CL_OUT_OF_HOST_MEMORY;
    for (size_t b = 0; host && b < d->batch; b++) {
      size_t lq, lk;
      case_lens(o, d, b, &lq, &lk);
      host[b] = (cl_int)lq;
      host[d->batch + b] = (cl_int)lk;
    }
    for (int i = 0; i < 2 && e == CL_SUCCESS; i++)
      lens[i] = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                               d->batch * sizeof(cl_int),
                               host + (size_t)i * d->batch, &e);
    free(host);
    if (e != CL_SUCCESS) {
      snprintf(err, errlen, "could not make the length buffers (%d)", e);
      *resource = bench_cl_is_resource_error(e);
      goto cleanup;
    }
  }
  plan_run pr = {ctx, plan, queue, bufs, lens[0], lens[1]};
  if (o->backward) {
    /* The forward once, for the o and lse the backward reads. */
    int softmax = d->variant == CLATTN_VARIANT_SOFTMAX;
    cl_event fwd = NULL;
    st = clattn_plan_run_varlen(plan, bufs[0], bufs[1], bufs[2], bufs[3],
                                softmax ? bufs[4] : NULL, lens[0], lens[1], 0,
                                NULL, &fwd);
    if (st == CLATTN_SUCCESS) {
      clWaitForEvents(1, &fwd);
      clReleaseEvent(fwd);
    } else {
      snprintf(err, errlen, "%s: %s", clattn_status_name(st),
               clattn_context_error(ctx));
      *resource = status_is_resource(st);
      goto cleanup;
    }
    if (bench_time_runs(backward_once, &pr, &lim, &r->t, err, errlen, resource))
      goto cleanup;
    r->device_bytes = clattn_plan_device_bytes(plan);
    r->gflops = backward_flops_of(d, o) / (r->t.ms_median * 1e-3) * 1e-9;
  } else {
    if (bench_time_runs(plan_once, &pr, &lim, &r->t, err, errlen, resource))
      goto cleanup;
    r->gflops = flops_of(d, o) / (r->t.ms_median * 1e-3) * 1e-9;
    r->gbps = kv_bytes(d, o) / (r->t.ms_median * 1e-3) * 1e-9;
  }
  if (bl && o->backward) {
    snprintf(r->base_error, sizeof r->base_error,
             "the naive baseline is forward only");
  } else if (bl && (o->nlens || o->window_given)) {
    snprintf(r->base_error, sizeof r->base_error,
             "the naive baseline has no per-sequence lengths or windows");
  } else if (bl) {
    if (base_skip) {
      snprintf(r->base_error, sizeof r->base_error, "%s", base_skip);
    } else {
      progress("clattn-bench: %s N=%zu%s: baseline",
               clattn_variant_name(d->variant), d->seq_q,
               d->causal ? " causal" : "");
      /* CLBlast builds its kernels on the host at its first call, after
       * the marker a run is timed from: a first run is never timed. */
      bench_limits blim = lim;
      if (blim.warmup < 1)
        blim.warmup = 1;
      *base_stop =
          baseline_case(bl, queue, cl, &blim, d, bufs, counts[3], in_use, r);
    }
  }
  rc = 0;
cleanup:
  clFinish(queue);
  for (int i = 0; i < 9; i++) {
    if (bufs[i])
      clReleaseMemObject(bufs[i]);
  }
  for (int i = 0; i < 2; i++)
    if (lens[i])
      clReleaseMemObject(lens[i]);
  clattn_plan_destroy(plan);
  return rc;
}

/* ---- Output ------------------------------------------------------------- */

/* Writes s as a JSON string. */
static void json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      printf("\\%c", *s);
    else if ((unsigned char)*s < 0x20)
      printf("\\u%04x", (unsigned char)*s);
    else
      putchar(*s);
  }
  putchar('"');
}

static const char *device_type_name(const clattn_device_profile *p) {
  if (p->type & CL_DEVICE_TYPE_GPU)
    return "gpu";
  if (p->type & CL_DEVICE_TYPE_CPU)
    return "cpu";
  if (p->type & CL_DEVICE_TYPE_ACCELERATOR)
    return "accelerator";
  return "other";
}

/* The first JSON line: what the results were measured on. */
static void json_device(const clattn_device_profile *p) {
  printf("{\"type\":\"device\",\"name\":");
  json_string(p->name);
  printf(",\"vendor\":");
  json_string(p->vendor);
  printf(",\"vendor_id\":%u,\"platform\":", p->vendor_id);
  json_string(p->platform_name);
  printf(",\"platform_version\":");
  json_string(p->platform_version);
  printf(",\"driver\":");
  json_string(p->driver_version);
  printf(",\"device_version\":");
  json_string(p->device_version);
  printf(",\"opencl_c\":");
  json_string(p->c_version);
  printf(",\"device_type\":\"%s\",\"compute_units\":%u,"
         "\"max_work_group_size\":%zu,\"local_mem_bytes\":%llu,"
         "\"local_mem_is_real\":%s,\"global_mem_bytes\":%llu,"
         "\"max_alloc_bytes\":%llu,\"has_fp16\":%s,\"has_subgroups\":%s,"
         "\"clattn_version\":\"%s\"}\n",
         device_type_name(p), p->compute_units, p->max_work_group_size,
         (unsigned long long)p->local_mem_size,
         p->local_mem_is_real ? "true" : "false",
         (unsigned long long)p->global_mem_size,
         (unsigned long long)p->max_mem_alloc_size,
         p->has_fp16 ? "true" : "false", p->has_subgroups ? "true" : "false",
         clattn_version_string());
}

static void json_ceiling(const bench_ceiling *c) {
  printf("{\"type\":\"ceiling\",");
  if (c->gflops > 0.0)
    printf("\"ceiling_gflops\":%.6g,\"ceiling_source\":\"%s\",", c->gflops,
           c->source);
  if (c->copy_gbps > 0.0)
    printf("\"copy_gbps\":%.6g,", c->copy_gbps);
  else {
    printf("\"copy_error\":");
    json_string(c->copy_error);
    printf(",");
  }
  printf("\"copy_bytes\":%zu,\"sgemm_size\":%zu,\"clblast_sgemm_gflops\":%.6g,"
         "\"clblast_setup\":",
         c->copy_bytes, c->n, c->clblast_gflops);
  json_string(c->clblast_setup);
  if (c->clblast_error[0]) {
    printf(",\"clblast_error\":");
    json_string(c->clblast_error);
  }
  if (c->openblas_gflops > 0.0 || c->openblas_error[0])
    printf(",\"openblas_sgemm_gflops\":%.6g", c->openblas_gflops);
  if (c->openblas_core[0]) {
    printf(",\"openblas_core\":");
    json_string(c->openblas_core);
  }
  if (c->openblas_error[0]) {
    printf(",\"openblas_error\":");
    json_string(c->openblas_error);
  }
  printf("}\n");
}

/* --seq-lens as given, for the JSON lines; NULL without it. */
static const char *g_lens_text;

/* The keys every case line starts with: the problem. */
static void json_case_head(const char *type, const clattn_device_profile *p,
                           const clattn_desc *d) {
  printf("{\"type\":\"%s\",\"variant\":\"%s\",\"device\":", type,
         clattn_variant_name(d->variant));
  json_string(p->name);
  printf(",\"platform\":");
  json_string(p->platform_name);
  printf(",\"batch\":%zu,\"heads\":%zu,\"kv_heads\":%zu,"
         "\"seq_q\":%zu,\"seq_k\":%zu,\"dim\":%zu,\"dim_v\":%zu,"
         "\"causal\":%s,\"dtype\":\"%s\"",
         d->batch, d->heads_q, d->heads_kv ? d->heads_kv : d->heads_q, d->seq_q,
         d->seq_k, d->dim, d->dim_v ? d->dim_v : d->dim,
         d->causal ? "true" : "false", clattn_dtype_name(d->dtype));
  if (d->window_left != -1 || d->window_right != -1)
    printf(",\"window_left\":%d,\"window_right\":%d", d->window_left,
           d->window_right);
  if (g_lens_text) {
    printf(",\"seq_lens\":");
    json_string(g_lens_text);
  }
}

static void json_case(const clattn_device_profile *p, const clattn_desc *d,
                      const result *r, const options *o,
                      const bench_ceiling *peak, double copy_gbps) {
  json_case_head("case", p, d);
  printf(",\"pass\":\"%s\"", o->backward ? "backward" : "forward");
  printf(",\"ms_median\":%.6g,\"ms_min\":%.6g,\"gflops\":%.6g,\"runs\":%d,"
         "\"device_bytes\":%zu,\"tiles\":",
         r->t.ms_median, r->t.ms_min, r->gflops, r->t.runs, r->device_bytes);
  json_string(r->tiles);
  if (peak)
    printf(",\"ceiling_gflops\":%.6g,\"ceiling_source\":\"%s\","
           "\"fraction_of_ceiling\":%.6g",
           peak->gflops, peak->source, r->gflops / peak->gflops);
  if (r->gbps > 0.0) {
    printf(",\"gbps\":%.6g", r->gbps);
    if (copy_gbps > 0.0)
      printf(",\"copy_gbps\":%.6g,\"fraction_of_copy_bandwidth\":%.6g",
             copy_gbps, r->gbps / copy_gbps);
  }
  if (o->baseline) {
    printf(",\"baseline\":\"naive\"");
    if (r->base_ran) {
      printf(",\"baseline_ms_median\":%.6g,\"baseline_ms_min\":%.6g,"
             "\"baseline_runs\":%d,\"baseline_gflops\":%.6g,"
             "\"speedup_vs_baseline\":%.6g,\"baseline_device_bytes\":%zu,"
             "\"baseline_agrees\":%s,\"baseline_max_rel_error\":%.3g",
             r->bt.ms_median, r->bt.ms_min, r->bt.runs,
             flops_of(d, o) / (r->bt.ms_median * 1e-3) * 1e-9,
             r->bt.ms_median / r->t.ms_median, r->base_bytes,
             r->base_agrees ? "true" : "false",
             isfinite(r->base_rel_error) ? r->base_rel_error : 1e308);
    } else {
      printf(",\"baseline_error\":");
      json_string(r->base_error);
    }
  }
  printf("}\n");
}

static void table_ceiling(const bench_ceiling *c,
                          const clattn_device_profile *p) {
  if (c->copy_gbps > 0.0)
    printf("copy bandwidth: %.2f GB/s (%zu-byte buffer copy, bytes read + "
           "written)\n",
           c->copy_gbps, c->copy_bytes);
  else
    printf("copy bandwidth: not measured (%s)\n", c->copy_error);
  if (c->gflops <= 0.0)
    printf("ceiling: not measured; ");
  else
    printf("ceiling: %.1f GFLOP/s (%s); ", c->gflops, c->source);
  printf("SGEMM n=%zu: CLBlast on the device ", c->n);
  if (c->clblast_gflops > 0.0)
    printf("%.1f GFLOP/s (%s)", c->clblast_gflops, c->clblast_setup);
  else
    printf("not measured (%s)", c->clblast_error);
  if (p->is_cpu) {
    if (c->openblas_gflops > 0.0)
      printf(", OpenBLAS (%s kernels) on the host %.1f GFLOP/s",
             c->openblas_core, c->openblas_gflops);
    else
      printf(", OpenBLAS on the host not measured (%s)", c->openblas_error);
  }
  printf("\n");
}

static void table_header(const options *o) {
  printf("%-13s %6s %6s %5s %6s %-4s %10s %10s %9s", "variant", "seq_q",
         "seq_k", "dim", "causal", "type", "ms_median", "ms_min", "GFLOP/s");
  if (o->ceiling)
    printf(" %7s", "of_ceil");
  printf(" %8s", "GB/s");
  if (o->ceiling)
    printf(" %7s", "of_copy");
  printf(" %12s", "device_bytes");
  if (o->baseline)
    printf(" %10s %8s %12s %5s", "base_ms", "speedup", "base_bytes", "agree");
  printf("  %s\n", "tiles");
}

static void table_case(const clattn_desc *d, const result *r, const options *o,
                       const bench_ceiling *peak, double copy_gbps) {
  char name[32];
  snprintf(name, sizeof name, "%s%s", clattn_variant_name(d->variant),
           o->backward ? " bwd" : "");
  printf("%-13s %6zu %6zu %5zu %6s %-4s %10.3f %10.3f %9.2f", name, d->seq_q,
         d->seq_k, d->dim, d->causal ? "yes" : "no",
         clattn_dtype_name(d->dtype), r->t.ms_median, r->t.ms_min, r->gflops);
  if (o->ceiling)
    printf(" %6.1f%%", peak ? 100.0 * r->gflops / peak->gflops : 0.0);
  if (r->gbps > 0.0)
    printf(" %8.2f", r->gbps);
  else
    printf(" %8s", "-");
  if (o->ceiling) {
    if (r->gbps > 0.0 && copy_gbps > 0.0)
      printf(" %6.1f%%", 100.0 * r->gbps / copy_gbps);
    else
      printf(" %7s", "-");
  }
  printf(" %12zu", r->device_bytes);
  if (o->baseline) {
    if (r->base_ran)
      printf(" %10.3f %7.2fx %12zu %5s", r->bt.ms_median,
             r->bt.ms_median / r->t.ms_median, r->base_bytes,
             r->base_agrees ? "yes" : "NO");
    else
      printf(" %10s %8s %12s %5s", "-", "-", "-", "-");
  }
  printf("  %s\n", r->tiles);
}

/* ---- Stopping a variant ---------------------------------------------------
 */

/* How one run's time grows from (nq, nk) to (nq2, nk2): quadratically for
 * softmax, sigmoid and any baseline, linearly for linear attention. */
static double growth(int quadratic, size_t nq, size_t nk, size_t nq2,
                     size_t nk2) {
  if (quadratic)
    return ((double)nq2 * (double)nk2) / ((double)nq * (double)nk);
  return ((double)nq2 + (double)nk2) / ((double)nq + (double)nk);
}

/* Sets `reason` (and returns 1) when the next length should not run: a run
 * took longer than the limit, or is expected to at the next length. */
static int over_time(const bench_timing *t, double grow, double limit,
                     const char *who, size_t n, char *reason, size_t len) {
  if (t->over_limit) {
    snprintf(reason, len,
             "%s: one run took %.1f s at N=%zu, over --max-case-seconds %g",
             who, t->run_seconds, n, limit);
    return 1;
  }
  double est = t->ms_median * 1e-3 * grow;
  if (est > limit) {
    snprintf(reason, len,
             "%s: a run would take about %.3g s (%.3g s at N=%zu), over "
             "--max-case-seconds %g",
             who, est, t->ms_median * 1e-3, n, limit);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc;
  progress_on = isatty(STDERR_FILENO);
  bench_clblast_keep_defaults(o.clblast_defaults);
  clattn_context_t ctx = NULL;
  bench_baseline *bl = NULL;
  bench_ceiling ceiling;
  const bench_ceiling *peak = NULL;
  double copy_gbps = 0.0;
  char err[1024] = "";
  clattn_status st =
      clattn_context_create(&ctx, o.device, CLATTN_CONTEXT_PROFILING);
  if (st != CLATTN_SUCCESS) {
    warn("%s: %s", clattn_status_name(st), clattn_context_error(ctx));
    clattn_context_destroy(ctx);
    return 1;
  }
  clattn_device_profile prof;
  clattn_context_profile(ctx, &prof);
  if (o.json) {
    json_device(&prof);
  } else {
    printf("device: %s (%s), %s, %u compute units, driver %s, %s\n", prof.name,
           prof.platform_name, device_type_name(&prof), prof.compute_units,
           prof.driver_version, prof.c_version);
    if (o.window_given)
      printf("window: %d,%d (FLOPs count visible pairs only)\n", o.window_left,
             o.window_right);
    if (o.nlens)
      printf("per-sequence lengths: %s, cycled over B=%zu (FLOPs and K+V "
             "bytes count what they leave)\n",
             o.lens_text, o.batch);
  }
  g_lens_text = o.nlens ? o.lens_text : NULL;
  fflush(stdout);
  if (o.ceiling) {
    progress("clattn-bench: measuring the copy bandwidth and the SGEMM "
             "ceiling (n=%zu)",
             o.ceiling_size);
    if (bench_ceiling_measure(ctx, o.ceiling_size, &ceiling, err, sizeof err))
      warn("no ceiling: %s", err);
    else
      peak = &ceiling;
    copy_gbps = ceiling.copy_gbps;
    if (copy_gbps <= 0.0)
      warn("no copy bandwidth: %s", ceiling.copy_error);
    if (peak || copy_gbps > 0.0) {
      progress_clear();
      if (o.json) {
        json_ceiling(&ceiling);
      } else {
        table_ceiling(&ceiling, &prof);
      }
    }
    fflush(stdout);
  }
  if (o.baseline) {
    progress("clattn-bench: building the baseline");
    if (bench_baseline_create(ctx, &bl, err, sizeof err)) {
      warn("--baseline naive: %s", err);
      clattn_context_destroy(ctx);
      return 1;
    }
  }
  progress_clear();
  if (!o.json)
    table_header(&o);
  fflush(stdout);
  int failures = 0;
  /* Why a variant (per causal mode) or its baseline stopped; "" runs. */
  char stop[CLATTN_VARIANT_COUNT][2][1100];
  char base_stop[CLATTN_VARIANT_COUNT][2][1100];
  memset(stop, 0, sizeof stop);
  memset(base_stop, 0, sizeof base_stop);
  int total = 0, done = 0;
  for (int v = 0; v < CLATTN_VARIANT_COUNT; v++)
    total +=
        o.variants[v] * (int)o.nseqs * (o.causal_modes[0] + o.causal_modes[1]);
  for (int v = 0; v < CLATTN_VARIANT_COUNT; v++) {
    if (!o.variants[v])
      continue;
    for (size_t s = 0; s < o.nseqs; s++) {
      for (int causal = 0; causal < 2; causal++) {
        if (!o.causal_modes[causal])
          continue;
        done++;
        clattn_desc d;
        clattn_desc_init(&d, (clattn_variant)v);
        d.dtype = o.dtype;
        d.batch = o.batch;
        d.heads_q = o.heads;
        d.heads_kv = o.kv_heads;
        d.seq_q = o.seqs[s];
        d.seq_k = o.seq_k ? o.seq_k : o.seqs[s];
        d.dim = o.dim;
        d.dim_v = o.dim_v;
        d.causal = causal;
        d.tiles = o.tiles;
        d.window_left = o.window_left;
        d.window_right = o.window_right;
        const char *name = clattn_variant_name(d.variant);
        const char *cs = causal ? " causal" : "";
        if (stop[v][causal][0]) {
          warn("%s N=%zu%s: skipped: %s", name, d.seq_q, cs, stop[v][causal]);
          if (o.json) {
            json_case_head("skipped", &prof, &d);
            printf(",\"skipped\":");
            json_string(stop[v][causal]);
            printf("}\n");
            fflush(stdout);
          }
          continue;
        }
        progress("clattn-bench: [%d/%d] %s N=%zu%s", done, total, name, d.seq_q,
                 cs);
        result r;
        int resource = 0, base_out = 0;
        err[0] = '\0';
        if (bench_case(ctx, bl, &o, &d,
                       base_stop[v][causal][0] ? base_stop[v][causal] : NULL,
                       &base_out, &r, err, sizeof err, &resource)) {
          if (resource) {
            /* Out of memory: this length and every longer one are skipped. */
            snprintf(stop[v][causal], sizeof stop[v][causal],
                     "out of memory at N=%zu: %s", d.seq_q, err);
            warn("%s N=%zu%s: skipped: %s", name, d.seq_q, cs, stop[v][causal]);
            if (o.json) {
              json_case_head("skipped", &prof, &d);
              printf(",\"skipped\":");
              json_string(stop[v][causal]);
              printf("}\n");
              fflush(stdout);
            }
          } else {
            warn("%s N=%zu%s: %s", name, d.seq_q, cs, err);
            failures++;
          }
          continue;
        }
        if (o.baseline && r.base_ran && !r.base_agrees)
          warn("%s N=%zu%s: the baseline disagrees with clattn: max relative "
               "error %.3g, tolerance %g",
               name, d.seq_q, cs, r.base_rel_error, agree_tolerance(d.dtype));
        if (o.baseline && !r.base_ran && !base_stop[v][causal][0])
          warn("%s N=%zu%s: baseline: %s", name, d.seq_q, cs, r.base_error);
        progress_clear();
        if (o.json)
          json_case(&prof, &d, &r, &o, peak, copy_gbps);
        else
          table_case(&d, &r, &o, peak, copy_gbps);
        fflush(stdout);
        /* Decide whether the next length runs. */
        size_t next = 0;
        for (size_t s2 = s + 1; s2 < o.nseqs; s2++) {
          if (o.seqs[s2] != d.seq_q) {
            next = o.seqs[s2];
            break;
          }
        }
        if (!next)
          continue;
        size_t next_k = o.seq_k ? o.seq_k : next;
        int quadratic =
            v == CLATTN_VARIANT_SOFTMAX || v == CLATTN_VARIANT_SIGMOID;
        over_time(&r.t, growth(quadratic, d.seq_q, d.seq_k, next, next_k),
                  o.max_case_seconds, "clattn", d.seq_q, stop[v][causal],
                  sizeof stop[v][causal]);
        if (o.baseline && !base_stop[v][causal][0]) {
          if (base_out && !r.base_ran)
            snprintf(base_stop[v][causal], sizeof base_stop[v][causal],
                     "skipped after N=%zu: %s", d.seq_q, r.base_error);
          else if (r.base_ran)
            over_time(&r.bt, growth(1, d.seq_q, d.seq_k, next, next_k),
                      o.max_case_seconds, "skipped", d.seq_q,
                      base_stop[v][causal], sizeof base_stop[v][causal]);
          if (base_stop[v][causal][0])
            warn("%s%s: the baseline stops after N=%zu (%s)", name, cs, d.seq_q,
                 base_stop[v][causal]);
        }
      }
    }
  }
  progress_clear();
  bench_baseline_destroy(bl);
  clattn_context_destroy(ctx);
  return failures ? 1 : 0;
}
