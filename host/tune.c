/*
 * tune.c - where a plan's tiles come from when the caller names none: the
 * tuning file that clattn-tune writes, then a built-in table of devices
 * measured before, then (in the families) a heuristic from the profile.
 *
 * Tuning file, version 1 (text; '#' starts a comment line):
 *
 *   clattn-tuning 1
 *   DEVICE<TAB>VARIANT<TAB>DTYPE<TAB>D<TAB>DV<TAB>CAUSAL<TAB>SEQ<TAB>TILES<TAB>MS
 *
 * one line per tuned problem bucket: the device name as OpenCL reports it,
 * variant and dtype names, head dims, 0/1, the sequence length it was tuned
 * at, the tile spec ("NAME=VALUE,...") and the time it measured (kept for
 * people; not read). A plan takes the line of its device, variant, dtype,
 * head dims and causality whose SEQ is nearest to max(Nq, Nk) in log scale.
 * A file that does not parse is ignored whole, with a warning.
 */
#include "plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void clattn__log(const char *fmt, ...) {
  const char *on = getenv("CLATTN_LOG");
  if (!on || strcmp(on, "1") != 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  fputs("clattn: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

CLATTN_API size_t clattn_tune_file_path(char *buf, size_t size) {
  char path[4096];
  const char *env = getenv("CLATTN_TUNE_FILE");
  const char *base;
  if (env && *env)
    snprintf(path, sizeof path, "%s", env);
  else if ((base = getenv("XDG_CONFIG_HOME")) && *base)
    snprintf(path, sizeof path, "%s/clattn/tuning.txt", base);
  else if ((base = getenv("HOME")) && *base)
    snprintf(path, sizeof path, "%s/.config/clattn/tuning.txt", base);
  else
    path[0] = '\0';
  return clattn__copy_out(buf, size, path);
}

/* Splits line at tabs into at most max fields (in place). */
static int split_tabs(char *line, char **fields, int max) {
  int n = 0;
  char *s = line;
  while (n < max) {
    fields[n++] = s;
    char *tab = strchr(s, '\t');
    if (!tab)
      break;
    *tab = '\0';
    s = tab + 1;
  }
  return strchr(s, '\t') ? max + 1 : n;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi)
    return 0;
  *out = v;
  return 1;
}

int clattn__tune_lookup(const clattn_device_profile *dev,
                        const clattn__problem *p, char *spec, size_t size,
                        char *warn, size_t wsize) {
  char path[4096];
  warn[0] = '\0';
  if (clattn_tune_file_path(path, sizeof path) == 0)
    return 0;
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  int found = clattn__tune_scan(f, path, dev, p, spec, size, warn, wsize);
  fclose(f);
  return found;
}

int clattn__tune_scan(FILE *f, const char *path,
                      const clattn_device_profile *dev,
                      const clattn__problem *p, char *spec, size_t size,
                      char *warn, size_t wsize) {
  warn[0] = '\0';
  char line[2048];
  int lineno = 0, found = 0, bad = 0, header = 0;
  double best = 1e300;
  double want = log2((double)(p->seq_q > p->seq_k ? p->seq_q : p->seq_k));
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t n = strlen(line);
    if (n == sizeof line - 1 && line[n - 1] != '\n') {
      bad = 1;
      break;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = '\0';
    if (n == 0 || line[0] == '#')
      continue;
    if (!header) {
      /* The first line that is not a comment names the format. */
      if (strcmp(line, "clattn-tuning 1") != 0) {
        bad = 1;
        break;
      }
      header = 1;
      continue;
    }
    char *fl[9];
    long dim, dim_v, causal, seq;
    clattn_variant variant;
    clattn_dtype dtype;
    if (split_tabs(line, fl, 9) != 9 ||
        clattn_variant_parse(fl[1], &variant) != CLATTN_SUCCESS ||
        clattn_dtype_parse(fl[2], &dtype) != CLATTN_SUCCESS ||
        !parse_long(fl[3], 1, CLATTN_MAX_DIM, &dim) ||
        !parse_long(fl[4], 1, CLATTN_MAX_DIM, &dim_v) ||
        !parse_long(fl[5], 0, 1, &causal) ||
        !parse_long(fl[6], 1, 1L << 30, &seq) || !*fl[7] ||
        strlen(fl[7]) >= size) {
      bad = 1;
      break;
    }
    if (strcmp(fl[0], dev->name) != 0 || variant != p->variant ||
        dtype != p->dtype || (size_t)dim != p->dim ||
        (size_t)dim_v != p->dim_v || causal != p->causal)
      continue;
    double dist = fabs(log2((double)seq) - want);
    if (dist < best) {
      best = dist;
      snprintf(spec, size, "%s", fl[7]);
      found = 1;
    }
  }
  if (bad) {
    snprintf(warn, wsize, "tuning file %s ignored: line %d does not parse",
             path, lineno);
    clattn__log("%s", warn);
    return 0;
  }
  return found;
}

/* Tiles measured on devices before, most specific first: a device name,
 * then a vendor. Matching is by case-insensitive substring; the first entry
 * whose vendor and name both match wins. */
typedef struct builtin_entry {
  const char *vendor; /* substring of CL_DEVICE_VENDOR, "" for any */
  const char *name;   /* substring of CL_DEVICE_NAME, "" for any */
  int cpu;            /* 1: CPU devices only; 0: GPU devices only */
  clattn_variant variant;
  size_t max_dim_v; /* the entry holds for Dv up to this */
  const char *tiles;
} builtin_entry;

static const builtin_entry builtin[] = {
    /* PoCL's pthread device on AVX-512 cores, measured with clattn-bench at
     * B=1 H=8 N=4096 D=64: BLOCK_M 16 against 8 is 141 vs 116 GFLOP/s for
     * softmax and 151 vs 120 for sigmoid. Wider Dv keeps the heuristic,
     * which holds fewer rows so the accumulators stay in registers. */
    {"", "avx512", 1, CLATTN_VARIANT_SOFTMAX, 64,
     "SHAPE=cpu,KEYS_VEC=16,BLOCK_M=16"},
    {"", "avx512", 1, CLATTN_VARIANT_SIGMOID, 64,
     "SHAPE=cpu,KEYS_VEC=16,BLOCK_M=16"},
};

int clattn__builtin_lookup(const clattn_device_profile *dev,
                           const clattn__problem *p, char *spec, size_t size) {
  for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++) {
    const builtin_entry *e = &builtin[i];
    if (e->variant != p->variant || e->cpu != dev->is_cpu ||
        p->dim_v > e->max_dim_v ||
        !clattn__contains_ci(dev->vendor, e->vendor) ||
        !clattn__contains_ci(dev->name, e->name))
      continue;
    snprintf(spec, size, "%s", e->tiles);
    return 1;
  }
  return 0;
}
