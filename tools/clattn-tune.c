/*
 * clattn-tune - searches tile parameters for a device and writes the tuning
 * file that later plans on that device read.
 *
 * For each variant and each problem bucket (head dim, sequence length,
 * causal or not) it times every candidate the library proposes
 * (clattn_tune_candidate) with OpenCL profiling events and keeps the
 * fastest. Lines of the file for other devices and buckets are kept; the
 * file is written to a temporary name and renamed into place.
 */
#include "clattn.h"
#include "toolutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>

#define MAX_LIST 16
/* The largest head dim, length, batch or head count an option takes. */
#define MAX_SIZE ((size_t)1 << 24)
#define MAX_LINES 4096

typedef struct options {
  const char *device, *out;
  int variants[CLATTN_VARIANT_COUNT];
  size_t dims[MAX_LIST], ndims, seqs[MAX_LIST], nseqs;
  size_t batch, heads;
  int causal_modes[2];
  clattn_dtype dtype;
  int repeat;
  int dry_run;
} options;

static void usage(FILE *f) {
  fprintf(f,
          "usage: clattn-tune [--device SEL] [--variant V[,V...]|all] "
          "[--dim D[,D...]]\n"
          "                   [--seq N[,N...]] [--causal|--no-causal] "
          "[--dtype f32|f16|bf16]\n"
          "                   [--batch B] [--heads H] [--repeat R] [--out "
          "FILE] [--dry-run]\n"
          "Times the tile candidates of every variant for each head dim, "
          "sequence length\n"
          "and causal mode (defaults: all variants, D=64, N=1024,4096, both "
          "modes, B=1,\n"
          "H=8, f32, 5 runs) and writes the fastest to the tuning file "
          "(default: the\n"
          "path clattn_tune_file_path() gives; CLATTN_TUNE_FILE sets it). "
          "Progress goes\n"
          "to stderr; --dry-run prints the lines instead of writing them.\n");
}

static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  for (int v = 0; v < CLATTN_VARIANT_COUNT; v++)
    o->variants[v] = 1;
  o->dims[0] = 64;
  o->ndims = 1;
  o->seqs[0] = 1024;
  o->seqs[1] = 4096;
  o->nseqs = 2;
  o->batch = 1;
  o->heads = 8;
  o->causal_modes[0] = o->causal_modes[1] = 1;
  o->repeat = 5;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    } else if (!strcmp(a, "--causal")) {
      o->causal_modes[0] = 0;
      o->causal_modes[1] = 1;
      continue;
    } else if (!strcmp(a, "--no-causal")) {
      o->causal_modes[0] = 1;
      o->causal_modes[1] = 0;
      continue;
    } else if (!strcmp(a, "--dry-run")) {
      o->dry_run = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "clattn-tune: %s needs a value\n", a);
      return 2;
    }
    const char *val = argv[++i];
    int ok = 1;
    size_t one = 0, n = 0;
    if (!strcmp(a, "--device")) {
      o->device = val;
    } else if (!strcmp(a, "--out")) {
      o->out = val;
    } else if (!strcmp(a, "--variant")) {
      ok = tool_parse_variants(val, o->variants);
    } else if (!strcmp(a, "--dim")) {
      ok = tool_parse_size_list(val, MAX_SIZE, o->dims, MAX_LIST, &o->ndims);
    } else if (!strcmp(a, "--seq")) {
      ok = tool_parse_size_list(val, MAX_SIZE, o->seqs, MAX_LIST, &o->nseqs);
    } else if (!strcmp(a, "--dtype")) {
      ok = clattn_dtype_parse(val, &o->dtype) == CLATTN_SUCCESS;
    } else if (!strcmp(a, "--batch")) {
      /* These take one size, read as a list of one so that "8," still
       * passes as it always has. */
      ok = tool_parse_size_list(val, MAX_SIZE, &o->batch, 1, &n);
    } else if (!strcmp(a, "--heads")) {
      ok = tool_parse_size_list(val, MAX_SIZE, &o->heads, 1, &n);
    } else if (!strcmp(a, "--repeat")) {
      ok = tool_parse_size_list(val, 1000, &one, 1, &n);
      o->repeat = (int)one;
    } else {
      fprintf(stderr, "clattn-tune: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "clattn-tune: bad value for %s: %s\n", a, val);
      return 2;
    }
  }
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median device time in ms of one plan over o->repeat runs after a warm-up;
 * a negative value when a run fails. The process's first plan warms up for
 * at least 0.25 s: a CPU runtime's new worker threads may share one core for
 * tens of milliseconds, which would slow only the first candidates. */
static double time_plan(clattn_context_t ctx, clattn_plan_t plan, cl_mem *b,
                        int repeat) {
  static int warmed = 0;
  cl_command_queue queue = clattn_context_queue(ctx);
  double times[1000];
  double start = tool_now_seconds();
  while (!warmed && tool_now_seconds() - start < 0.25) {
    double ms = 0.0;
    int code = 0;
    if (tool_time_plan_once(plan, queue, b[0], b[1], b[2], b[3], &ms, &code) !=
        TOOL_TIME_OK)
      return -1.0;
  }
  warmed = 1;
  for (int r = -1; r < repeat; r++) {
    double ms = 0.0;
    int code = 0;
    if (tool_time_plan_once(plan, queue, b[0], b[1], b[2], b[3], &ms, &code) !=
        TOOL_TIME_OK)
      return -1.0;
    if (r >= 0)
      times[r] = ms;
  }
  qsort(times, (size_t)repeat, sizeof times[0], cmp_double);
  return times[repeat / 2];
}

/* Buffers for desc, filled with small values (their content does not change
 * the time). Returns 0 on failure. */
static int make_buffers(clattn_context_t ctx, const clattn_desc *d, cl_mem *b) {
  size_t es = clattn_dtype_size(d->dtype);
  size_t hkv = d->heads_kv ? d->heads_kv : d->heads_q;
  size_t dv = d->dim_v ? d->dim_v : d->dim;
  size_t counts[4] = {d->batch * d->heads_q * d->seq_q * d->dim,
                      d->batch * hkv * d->seq_k * d->dim,
                      d->batch * hkv * d->seq_k * dv,
                      d->batch * d->heads_q * d->seq_q * dv};
  for (int i = 0; i < 4; i++) {
    cl_int err = CL_SUCCESS;
    b[i] = clCreateBuffer(clattn_context_cl(ctx), CL_MEM_READ_WRITE,
                          counts[i] * es, NULL, &err);
    if (err != CL_SUCCESS)
      return 0;
    /* 0x3c00 pairs are 1.0 in half and 0.0078 in bf16; 0x3c003c00 is about
     * 0.0078 in float. */
    cl_uint pattern = 0x3c003c00u;
    if (clEnqueueFillBuffer(clattn_context_queue(ctx), b[i], &pattern,
                            sizeof pattern, 0, counts[i] * es, 0, NULL,
                            NULL) != CL_SUCCESS)
      return 0;
  }
  return clFinish(clattn_context_queue(ctx)) == CL_SUCCESS;
}

/* Reads the lines of an existing tuning file (without its header). */
static size_t read_lines(const char *path, char **lines) {
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  char buf[2048];
  size_t n = 0;
  int header = 0;
  while (fgets(buf, sizeof buf, f) && n < MAX_LINES) {
    size_t len = strlen(buf);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
      buf[--len] = '\0';
    if (len == 0 || buf[0] == '#')
      continue;
    if (!header) {
      header = 1;
      if (strcmp(buf, "clattn-tuning 1") != 0) {
        fprintf(stderr,
                "clattn-tune: %s is not a tuning file of this version; "
                "its lines are dropped\n",
                path);
        break;
      }
      continue;
    }
    lines[n] = strdup(buf);
    if (lines[n])
      n++;
  }
  fclose(f);
  return n;
}

/* The key of a line: its first seven tab-separated fields. */
static size_t key_len(const char *line) {
  const char *p = line;
  for (int tabs = 0; *p; p++)
    if (*p == '\t' && ++tabs == 7)
      break;
  return (size_t)(p - line);
}

static int write_file(const char *path, char **lines, size_t n) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  /* Create the folders the default path lives in. */
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  for (char *s = dir + 1; *s; s++) {
    if (*s != '/')
      continue;
    *s = '\0';
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
      return 0;
    *s = '/';
  }
  FILE *f = fopen(tmp, "w");
  if (!f)
    return 0;
  fprintf(f,
          "# clattn tuning file, written by clattn-tune %s\n"
          "# device<TAB>variant<TAB>dtype<TAB>dim<TAB>dim_v<TAB>causal"
          "<TAB>seq<TAB>tiles<TAB>ms\n"
          "clattn-tuning 1\n",
          clattn_version_string());
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s\n", lines[i]);
  int ok = fclose(f) == 0;
  if (!ok || rename(tmp, path) != 0) {
    remove(tmp);
    return 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc;
  char path[4096];
  if (o.out)
    snprintf(path, sizeof path, "%s", o.out);
  else if (clattn_tune_file_path(path, sizeof path) == 0) {
    fprintf(stderr, "clattn-tune: no tuning file path (set "
                    "CLATTN_TUNE_FILE or use --out)\n");
    return 2;
  }
  clattn_context_t ctx = NULL;
  clattn_status st =
      clattn_context_create(&ctx, o.device, CLATTN_CONTEXT_PROFILING);
  if (st != CLATTN_SUCCESS) {
    fprintf(stderr, "clattn-tune: %s: %s\n", clattn_status_name(st),
            clattn_context_error(ctx));
    clattn_context_destroy(ctx);
    return 1;
  }
  clattn_device_profile prof;
  clattn_context_profile(ctx, &prof);
  static char *lines[MAX_LINES];
  size_t nlines = o.dry_run ? 0 : read_lines(path, lines);
  fprintf(stderr, "clattn-tune: tuning %s; %zu existing lines in %s\n",
          prof.name, nlines, path);

  for (int v = 0; v < CLATTN_VARIANT_COUNT; v++) {
    if (!o.variants[v])
      continue;
    for (size_t di = 0; di < o.ndims; di++)
      for (size_t si = 0; si < o.nseqs; si++)
        for (int causal = 0; causal < 2; causal++) {
          if (!o.causal_modes[causal])
            continue;
          clattn_desc d;
          clattn_desc_init(&d, (clattn_variant)v);
          d.dtype = o.dtype;
          d.batch = o.batch;
          d.heads_q = o.heads;
          d.seq_q = d.seq_k = o.seqs[si];
          d.dim = o.dims[di];
          d.causal = causal;
          cl_mem b[4] = {NULL, NULL, NULL, NULL};
          char best[512] = "";
          double best_ms = -1.0;
          if (!make_buffers(ctx, &d, b)) {
            fprintf(stderr, "clattn-tune: %s N=%zu: cannot allocate inputs\n",
                    clattn_variant_name(d.variant), d.seq_q);
          } else {
            char spec[512];
            for (size_t c = 0;
                 clattn_tune_candidate(ctx, &d, c, spec, sizeof spec) ==
                 CLATTN_SUCCESS;
                 c++) {
              d.tiles = spec;
              clattn_plan_t plan = NULL;
              double ms = -1.0;
              if (clattn_plan_create(ctx, &d, &plan) == CLATTN_SUCCESS)
                ms = time_plan(ctx, plan, b, o.repeat);
              clattn_plan_destroy(plan);
              fprintf(stderr, "  %-9s D=%-3zu N=%-6zu %-6s %-44s %10.3f ms\n",
                      clattn_variant_name(d.variant), d.dim, d.seq_q,
                      causal ? "causal" : "", spec, ms);
              if (ms > 0 && (best_ms < 0 || ms < best_ms)) {
                best_ms = ms;
                snprintf(best, sizeof best, "%s", spec);
              }
            }
            d.tiles = NULL;
          }
          for (int i = 0; i < 4; i++)
            if (b[i])
              clReleaseMemObject(b[i]);
          if (best_ms < 0) {
            fprintf(stderr, "clattn-tune: %s D=%zu N=%zu: no candidate ran\n",
                    clattn_variant_name(d.variant), d.dim, d.seq_q);
            continue;
          }
          char line[2048];
          snprintf(line, sizeof line, "%s\t%s\t%s\t%zu\t%zu\t%d\t%zu\t%s\t%.3f",
                   prof.name, clattn_variant_name(d.variant),
                   clattn_dtype_name(d.dtype), d.dim, d.dim, causal, d.seq_q,
                   best, best_ms);
          fprintf(stderr, "  best: %s (%.3f ms)\n", best, best_ms);
          if (o.dry_run) {
            printf("%s\n", line);
            continue;
          }
          size_t k = key_len(line), i = 0;
          for (; i < nlines; i++)
            if (key_len(lines[i]) == k && strncmp(lines[i], line, k) == 0)
              break;
          if (i == nlines && nlines == MAX_LINES)
            continue;
          if (i < nlines)
            free(lines[i]);
          else
            nlines++;
          lines[i] = strdup(line);
          if (!lines[i])
            nlines--;
        }
  }
  clattn_context_destroy(ctx);
  rc = 0;
  if (!o.dry_run) {
    if (write_file(path, lines, nlines)) {
      fprintf(stderr, "clattn-tune: wrote %zu lines to %s\n", nlines, path);
    } else {
      fprintf(stderr, "clattn-tune: cannot write %s\n", path);
      rc = 1;
    }
  }
  for (size_t i = 0; i < nlines; i++)
    free(lines[i]);
  return rc;
}
