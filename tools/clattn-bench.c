/*
 * clattn-bench - times attention plans on a device with OpenCL profiling
 * events, after a warm-up, and prints a table or JSON lines.
 *
 * The time of one run is measured on the device: from the end of a marker
 * enqueued just before the plan to the end of the plan's last kernel, so
 * plans of several kernels are timed whole. FLOP counts are in README.md.
 */
#include "clattn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_MAX_CASES 64

typedef struct options {
  const char *device;
  int variants[CLATTN_VARIANT_COUNT]; /* which to run */
  size_t batch, heads, kv_heads, seq_k, dim, dim_v;
  size_t seqs[BENCH_MAX_CASES];
  size_t nseqs;
  int causal_modes[2]; /* non-causal, causal */
  clattn_dtype dtype;
  int repeat, warmup;
  double max_seconds;
  int json;
  const char *tiles;
} options;

static void usage(FILE *f) {
  fprintf(f,
          "usage: clattn-bench [--variant V[,V...]|all] [--batch B] "
          "[--heads H] [--kv-heads H]\n"
          "                    [--seq N[,N...]] [--seq-k N] [--dim D] "
          "[--dim-v D] [--causal|--causal-both]\n"
          "                    [--dtype f32|f16] [--device SEL] [--repeat R] "
          "[--warmup W]\n"
          "                    [--max-seconds S] [--tiles SPEC] [--json]\n"
          "Defaults: softmax, B=1, H=8, N=1024, D=64, f32, 10 repeats after "
          "2 warm-up runs;\n"
          "a case stops repeating (after 3 runs) once it has taken "
          "--max-seconds (10).\n");
}

static int parse_size(const char *s, size_t *out) {
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (!*s || *end || v == 0 || v > (1ull << 30))
    return 0;
  *out = (size_t)v;
  return 1;
}

static int parse_list(const char *s, size_t *out, size_t cap, size_t *n) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", s);
  *n = 0;
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    if (*n == cap || !parse_size(tok, &out[*n]))
      return 0;
    (*n)++;
  }
  return *n > 0;
}

static int parse_variants(const char *s, int *on) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  memset(on, 0, sizeof(int) * CLATTN_VARIANT_COUNT);
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    if (!strcmp(tok, "all")) {
      for (int v = 0; v < CLATTN_VARIANT_COUNT; v++)
        on[v] = 1;
      continue;
    }
    clattn_variant v;
    if (clattn_variant_parse(tok, &v) != CLATTN_SUCCESS)
      return 0;
    on[v] = 1;
  }
  return 1;
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
  o->max_seconds = 10.0;
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
      continue;
    }
    if (!strcmp(a, "--causal-both")) {
      o->causal_modes[0] = o->causal_modes[1] = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "clattn-bench: %s needs a value\n", a);
      return 2;
    }
    const char *val = argv[++i];
    int ok = 1;
    if (!strcmp(a, "--variant"))
      ok = parse_variants(val, o->variants);
    else if (!strcmp(a, "--batch"))
      ok = parse_size(val, &o->batch);
    else if (!strcmp(a, "--heads"))
      ok = parse_size(val, &o->heads);
    else if (!strcmp(a, "--kv-heads"))
      ok = parse_size(val, &o->kv_heads);
    else if (!strcmp(a, "--seq"))
      ok = parse_list(val, o->seqs, BENCH_MAX_CASES, &o->nseqs);
    else if (!strcmp(a, "--seq-k"))
      ok = parse_size(val, &o->seq_k);
    else if (!strcmp(a, "--dim"))
      ok = parse_size(val, &o->dim);
    else if (!strcmp(a, "--dim-v"))
      ok = parse_size(val, &o->dim_v);
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
    else if (!strcmp(a, "--max-seconds"))
      ok = (o->max_seconds = atof(val)) > 0;
    else {
      fprintf(stderr, "clattn-bench: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "clattn-bench: bad value for %s: %s\n", a, val);
      return 2;
    }
  }
  return 0;
}

/* Visible (query, key) pairs: all of them, or the causal count. */
static double visible_pairs(size_t nq, size_t nk, int causal) {
  if (!causal)
    return (double)nq * (double)nk;
  double pairs = 0;
  long long off = (long long)nk - (long long)nq;
  for (size_t i = 0; i < nq; i++) {
    long long lim = (long long)i + off + 1;
    if (lim > (long long)nk)
      lim = (long long)nk;
    if (lim > 0)
      pairs += (double)lim;
  }
  return pairs;
}

/* The FLOP count README.md states for each variant. */
static double flops_of(const clattn_desc *d) {
  double bh = (double)d->batch * (double)d->heads_q;
  double D = (double)d->dim, Dv = (double)(d->dim_v ? d->dim_v : d->dim);
  double nq = (double)d->seq_q, nk = (double)d->seq_k;
  switch (d->variant) {
  case CLATTN_VARIANT_SOFTMAX:
  case CLATTN_VARIANT_SIGMOID:
    return bh * 2.0 * (D + Dv) * visible_pairs(d->seq_q, d->seq_k, d->causal);
  case CLATTN_VARIANT_LINEAR:
    return bh * 2.0 * (nq + nk) * D * (Dv + 1.0);
  case CLATTN_VARIANT_COSFORMER:
    return bh * 2.0 * (nq + nk) * 2.0 * D * (Dv + 1.0);
  default:
    return 0;
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Fills a device buffer with uniform values in [-1, 1] of the dtype. */
static cl_int fill_random(cl_command_queue q, cl_mem buf, size_t count,
                          clattn_dtype dtype, unsigned *seed) {
  float *f = malloc(count * sizeof *f);
  cl_half *h = dtype == CLATTN_DTYPE_F16 ? malloc(count * sizeof *h) : NULL;
  if (!f || (dtype == CLATTN_DTYPE_F16 && !h)) {
    free(f);
    free(h);
    return CL_OUT_OF_HOST_MEMORY;
  }
  for (size_t i = 0; i < count; i++) {
    *seed = *seed * 1664525u + 1013904223u;
    f[i] = (float)(*seed >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
  }
  const void *src = f;
  size_t bytes = count * sizeof(float);
  if (h) {
    clattn_f32_to_f16(f, h, count);
    src = h;
    bytes = count * sizeof(cl_half);
  }
  cl_int err =
      clEnqueueWriteBuffer(q, buf, CL_TRUE, 0, bytes, src, 0, NULL, NULL);
  free(f);
  free(h);
  return err;
}

typedef struct result {
  double ms_median, ms_min, gflops;
  int runs;
  size_t device_bytes;
  char tiles[256];
} result;

/* Device time of one plan run in ms. */
static int time_once(clattn_plan_t plan, cl_command_queue queue, cl_mem *bufs,
                     double *ms, char *err, size_t errlen) {
  cl_event marker = NULL, done = NULL;
  int rc = 1;
  cl_int e = clEnqueueMarkerWithWaitList(queue, 0, NULL, &marker);
  if (e != CL_SUCCESS) {
    snprintf(err, errlen, "clEnqueueMarkerWithWaitList failed (%d)", e);
    goto cleanup;
  }
  clattn_status st = clattn_plan_run(plan, bufs[0], bufs[1], bufs[2], bufs[3],
                                     NULL, 1, &marker, &done);
  if (st != CLATTN_SUCCESS) {
    snprintf(err, errlen, "%s", clattn_status_name(st));
    goto cleanup;
  }
  clWaitForEvents(1, &done);
  cl_ulong t0 = 0, t1 = 0;
  e = clGetEventProfilingInfo(marker, CL_PROFILING_COMMAND_END, sizeof t0, &t0,
                              NULL);
  if (e == CL_SUCCESS)
    e = clGetEventProfilingInfo(done, CL_PROFILING_COMMAND_END, sizeof t1, &t1,
                                NULL);
  if (e != CL_SUCCESS) {
    snprintf(err, errlen, "profiling information unavailable (%d)", e);
    goto cleanup;
  }
  *ms = (double)(t1 - t0) * 1e-6;
  rc = 0;
cleanup:
  if (marker)
    clReleaseEvent(marker);
  if (done)
    clReleaseEvent(done);
  return rc;
}

static int bench_case(clattn_context_t ctx, const options *o,
                      const clattn_desc *d, result *r, char *err,
                      size_t errlen) {
  cl_context cl = clattn_context_cl(ctx);
  cl_command_queue queue = clattn_context_queue(ctx);
  size_t es = d->dtype == CLATTN_DTYPE_F16 ? 2 : 4;
  size_t hkv = d->heads_kv ? d->heads_kv : d->heads_q;
  size_t dv = d->dim_v ? d->dim_v : d->dim;
  size_t counts[4] = {d->batch * d->heads_q * d->seq_q * d->dim,
                      d->batch * hkv * d->seq_k * d->dim,
                      d->batch * hkv * d->seq_k * dv,
                      d->batch * d->heads_q * d->seq_q * dv};
  cl_mem bufs[4] = {NULL, NULL, NULL, NULL};
  clattn_plan_t plan = NULL;
  double *times = NULL;
  int rc = 1;
  memset(r, 0, sizeof *r);
  clattn_status st = clattn_plan_create(ctx, d, &plan);
  if (st != CLATTN_SUCCESS) {
    snprintf(err, errlen, "%s: %s", clattn_status_name(st),
             clattn_context_error(ctx));
    goto cleanup;
  }
  clattn_plan_describe(plan, r->tiles, sizeof r->tiles);
  r->device_bytes = clattn_plan_device_bytes(plan);
  unsigned seed = 12345u;
  for (int i = 0; i < 4; i++) {
    cl_int e = CL_SUCCESS;
    bufs[i] = clCreateBuffer(cl, CL_MEM_READ_WRITE, counts[i] * es, NULL, &e);
    if (e == CL_SUCCESS && i < 3)
      e = fill_random(queue, bufs[i], counts[i], d->dtype, &seed);
    if (e != CL_SUCCESS) {
      snprintf(err, errlen, "could not allocate or fill inputs (%d)", e);
      goto cleanup;
    }
  }
  times = malloc(sizeof(double) * (size_t)o->repeat);
  if (!times) {
    snprintf(err, errlen, "out of memory");
    goto cleanup;
  }
  double ms = 0;
  for (int w = 0; w < o->warmup; w++) {
    if (time_once(plan, queue, bufs, &ms, err, errlen))
      goto cleanup;
  }
  double start = now_seconds();
  int n = 0;
  while (n < o->repeat) {
    if (time_once(plan, queue, bufs, &times[n], err, errlen))
      goto cleanup;
    n++;
    if (n >= 3 && now_seconds() - start > o->max_seconds)
      break;
  }
  qsort(times, (size_t)n, sizeof *times, cmp_double);
  r->runs = n;
  r->ms_min = times[0];
  r->ms_median = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
  r->gflops = flops_of(d) / (r->ms_median * 1e-3) * 1e-9;
  rc = 0;
cleanup:
  clFinish(queue);
  for (int i = 0; i < 4; i++) {
    if (bufs[i])
      clReleaseMemObject(bufs[i]);
  }
  clattn_plan_destroy(plan);
  free(times);
  return rc;
}

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

int main(int argc, char **argv) {
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc;
  clattn_context_t ctx = NULL;
  clattn_status st =
      clattn_context_create(&ctx, o.device, CLATTN_CONTEXT_PROFILING);
  if (st != CLATTN_SUCCESS) {
    fprintf(stderr, "clattn-bench: %s: %s\n", clattn_status_name(st),
            clattn_context_error(ctx));
    clattn_context_destroy(ctx);
    return 1;
  }
  clattn_device_profile prof;
  clattn_context_profile(ctx, &prof);
  if (!o.json) {
    printf("device: %s (%s)\n", prof.name, prof.platform_name);
    printf("%-10s %6s %6s %5s %6s %-4s %10s %10s %9s %12s  %s\n", "variant",
           "seq_q", "seq_k", "dim", "causal", "type", "ms_median", "ms_min",
           "GFLOP/s", "device_bytes", "tiles");
  }
  int failures = 0;
  for (int v = 0; v < CLATTN_VARIANT_COUNT; v++) {
    if (!o.variants[v])
      continue;
    for (size_t s = 0; s < o.nseqs; s++) {
      for (int causal = 0; causal < 2; causal++) {
        if (!o.causal_modes[causal])
          continue;
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
        result r;
        char err[1024] = "";
        if (bench_case(ctx, &o, &d, &r, err, sizeof err)) {
          fprintf(stderr, "clattn-bench: %s N=%zu%s: %s\n",
                  clattn_variant_name(d.variant), d.seq_q,
                  causal ? " causal" : "", err);
          failures++;
          continue;
        }
        size_t dv = d.dim_v ? d.dim_v : d.dim;
        if (o.json) {
          printf("{\"variant\":\"%s\",\"device\":",
                 clattn_variant_name(d.variant));
          json_string(prof.name);
          printf(",\"platform\":");
          json_string(prof.platform_name);
          printf(",\"batch\":%zu,\"heads\":%zu,\"kv_heads\":%zu,"
                 "\"seq_q\":%zu,\"seq_k\":%zu,\"dim\":%zu,\"dim_v\":%zu,"
                 "\"causal\":%s,\"dtype\":\"%s\",\"ms_median\":%.6g,"
                 "\"ms_min\":%.6g,\"gflops\":%.6g,\"runs\":%d,"
                 "\"device_bytes\":%zu,\"tiles\":",
                 d.batch, d.heads_q, d.heads_kv ? d.heads_kv : d.heads_q,
                 d.seq_q, d.seq_k, d.dim, dv, causal ? "true" : "false",
                 clattn_dtype_name(d.dtype), r.ms_median, r.ms_min, r.gflops,
                 r.runs, r.device_bytes);
          json_string(r.tiles);
          printf("}\n");
        } else {
          printf("%-10s %6zu %6zu %5zu %6s %-4s %10.3f %10.3f %9.2f %12zu  "
                 "%s\n",
                 clattn_variant_name(d.variant), d.seq_q, d.seq_k, d.dim,
                 causal ? "yes" : "no", clattn_dtype_name(d.dtype), r.ms_median,
                 r.ms_min, r.gflops, r.device_bytes, r.tiles);
        }
        fflush(stdout);
      }
    }
  }
  clattn_context_destroy(ctx);
  return failures ? 1 : 0;
}
