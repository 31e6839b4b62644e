/*
 * clattn-recall - an exact-retrieval probe: how well does each attention
 * variant, untrained, read back the value stored under a key?
 *
 * P key->value pairs are stored: unit keys u_1..u_P drawn uniformly from the
 * sphere in R^D, and unit values v_1..v_P drawn uniformly from the sphere in
 * R^Dv. Each stored key is then used as a query (Nq = Nk = P, non-causal):
 * Q = K = a * [u_1..u_P], with a = sqrt(beta * sqrt(D)), so that softmax's
 * scaled score s * q_i.k_j with its default s = 1/sqrt(D) is
 * beta * cos(u_i, u_j): beta, the sharpness, is the score of a key against
 * itself. Every variant gets the same Q, K and V and runs with its default
 * parameters. Output row o_i counts as a retrieval when it is nearer, by
 * cosine similarity, to v_i than to every other stored value; the relative
 * error ||o_i - v_i|| / ||v_i|| is averaged over the P rows.
 *
 * Linear attention with a feature map of width F is a kernel of rank F, so
 * once P exceeds F its outputs cannot all be one-hot mixtures. That is an
 * upper bound: with positive feature maps (elu+1, relu) the kernel of two
 * random keys is a large fraction of a key's kernel with itself, so untrained
 * linear attention blurs the values well below it. Sigmoid attention is not
 * normalised and saturates once many keys score far above -b.
 *
 * The default sharpness, 16, lets softmax retrieve every pair at D = 16 and
 * P = 4096 with a mean relative error under 0.2; at 8 it still picks the
 * right value, but its output is mostly a blend (error near 0.9).
 *
 *   clattn-recall [--pairs LIST] [--dim LIST] [--dim-v N] [--variant LIST]
 *                 [--sharpness B] [--seed S] [--device SEL] [--json]
 *                 [--plot FILE.png]
 *
 * Exit status: 0; 1 when the device cannot be opened, a case fails for a
 * reason other than an unsupported variant, or the plot cannot be drawn; 2
 * on a usage error. --plot writes a gnuplot script to gnuplot's standard
 * input (the pngcairo terminal, Debian's gnuplot-nox).
 */
#include "clattn.h"
#include "toolutil.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECALL_MAX_LIST 32
#define RECALL_MAX_PAIRS (1u << 16)

typedef struct options {
  const char *device;
  int variants[CLATTN_VARIANT_COUNT];
  size_t pairs[RECALL_MAX_LIST], npairs;
  size_t dims[RECALL_MAX_LIST], ndims;
  size_t dim_v;
  double sharpness;
  unsigned long long seed;
  int json;
  const char *plot;
} options;

/* One (variant, dim, pairs) case. */
typedef struct outcome {
  int ran;     /* 1: measured; 0: failed or skipped */
  int skipped; /* the variant is not supported on this device */
  double accuracy, rel_error, seconds;
} outcome;

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: clattn-recall [--pairs P[,P...]] [--dim D[,D...]] [--dim-v N]\n"
      "                     [--variant V[,V...]|all] [--sharpness B] "
      "[--seed S]\n"
      "                     [--device SEL] [--json] [--plot FILE.png]\n"
      "Stores P random unit keys in R^D with random unit values in R^Dv, "
      "queries\n"
      "every stored key through each variant (Nq = Nk = P, non-causal) and "
      "reports\n"
      "top-1 retrieval accuracy (output nearest, by cosine, to the right "
      "value) and\n"
      "the mean relative error ||o_i - v_i|| / ||v_i||.\n"
      "Q = K = sqrt(B sqrt(D)) * unit keys, so softmax's scaled score of a "
      "key with\n"
      "itself is B. Defaults: --pairs 16,32,...,4096 --dim 16,64 --dim-v 64 "
      "--variant all\n"
      "--sharpness 16 --seed 1. --plot draws accuracy against P with "
      "gnuplot.\n");
}

/* Returns 0 on success, 2 on a usage error (message printed), -1 after
 * --help. */
static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  for (int v = 0; v < CLATTN_VARIANT_COUNT; v++)
    o->variants[v] = 1;
  for (size_t p = 16; p <= 4096; p *= 2)
    o->pairs[o->npairs++] = p;
  o->dims[0] = 16;
  o->dims[1] = 64;
  o->ndims = 2;
  o->dim_v = 64;
  o->sharpness = 16.0;
  o->seed = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return -1;
    }
    if (!strcmp(a, "--json")) {
      o->json = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "clattn-recall: %s needs a value\n", a);
      return 2;
    }
    const char *val = argv[++i];
    int ok = 1;
    if (!strcmp(a, "--pairs")) {
      ok = tool_parse_size_list(val, RECALL_MAX_PAIRS, o->pairs,
                                RECALL_MAX_LIST, &o->npairs);
    } else if (!strcmp(a, "--dim")) {
      ok = tool_parse_size_list(val, 256, o->dims, RECALL_MAX_LIST, &o->ndims);
    } else if (!strcmp(a, "--dim-v")) {
      ok = tool_parse_size(val, 256, &o->dim_v);
    } else if (!strcmp(a, "--variant")) {
      ok = tool_parse_variants(val, o->variants);
    } else if (!strcmp(a, "--sharpness")) {
      char *end = NULL;
      o->sharpness = strtod(val, &end);
      ok = *val && !*end && o->sharpness > 0 && isfinite(o->sharpness);
    } else if (!strcmp(a, "--seed")) {
      char *end = NULL;
      o->seed = strtoull(val, &end, 10);
      ok = *val && !*end;
    } else if (!strcmp(a, "--device")) {
      o->device = val;
    } else if (!strcmp(a, "--plot")) {
      o->plot = val;
    } else {
      fprintf(stderr, "clattn-recall: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "clattn-recall: bad value for %s: %s\n", a, val);
      return 2;
    }
  }
  return 0;
}

/* splitmix64: a small generator whose streams are reproducible on every
 * platform, unlike rand(). */
static uint64_t next_u64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Standard normal by Box-Muller; the uniform is in (0, 1]. */
static double next_gaussian(uint64_t *state) {
  double u1 = ((double)(next_u64(state) >> 11) + 1.0) / 9007199254740992.0;
  double u2 = (double)(next_u64(state) >> 11) / 9007199254740992.0;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* n rows of width d, each uniform on the sphere times `radius`. */
static void fill_sphere(float *x, size_t n, size_t d, double radius,
                        uint64_t *state) {
  double row[256];
  for (size_t i = 0; i < n; i++) {
    double norm2 = 0;
    do {
      norm2 = 0;
      for (size_t c = 0; c < d; c++) {
        row[c] = next_gaussian(state);
        norm2 += row[c] * row[c];
      }
    } while (norm2 == 0);
    double f = radius / sqrt(norm2);
    for (size_t c = 0; c < d; c++)
      x[i * d + c] = (float)(row[c] * f);
  }
}

/* Four partial sums, so that the compiler can keep several in flight. */
static float dot(const float *a, const float *b, size_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t c = 0;
  for (; c + 4 <= n; c += 4) {
    s0 += a[c] * b[c];
    s1 += a[c + 1] * b[c + 1];
    s2 += a[c + 2] * b[c + 2];
    s3 += a[c + 3] * b[c + 3];
  }
  for (; c < n; c++)
    s0 += a[c] * b[c];
  return (s0 + s1) + (s2 + s3);
}

/* Top-1 accuracy and mean relative error of o against the values v (unit
 * rows, so comparing o_i.v_j compares cosines). A row that is not finite, or
 * zero, retrieves nothing. */
static void score(const float *o, const float *v, size_t p, size_t dv,
                  double *accuracy, double *rel_error) {
  size_t hits = 0;
  double err_sum = 0;
  for (size_t i = 0; i < p; i++) {
    const float *oi = o + i * dv;
    const float *vi = v + i * dv;
    double e2 = 0, v2 = 0, o2 = 0;
    for (size_t c = 0; c < dv; c++) {
      double d = (double)oi[c] - (double)vi[c];
      e2 += d * d;
      v2 += (double)vi[c] * (double)vi[c];
      o2 += (double)oi[c] * (double)oi[c];
    }
    err_sum += sqrt(e2 / v2);
    if (!(o2 > 0) || !isfinite(o2))
      continue;
    float self = dot(oi, vi, dv);
    int hit = 1;
    for (size_t j = 0; j < p && hit; j++) {
      if (j != i && dot(oi, v + j * dv, dv) >= self)
        hit = 0;
    }
    hits += (size_t)hit;
  }
  *accuracy = (double)hits / (double)p;
  *rel_error = err_sum / (double)p;
}

/* Runs one variant on one stored set. Returns 0, or 1 with a message. */
static int run_case(clattn_context_t ctx, clattn_variant variant, size_t p,
                    size_t d, size_t dv, const float *qk, const float *v,
                    float *o, outcome *r, char *err, size_t errlen) {
  clattn_desc desc;
  clattn_desc_init(&desc, variant);
  desc.batch = 1;
  desc.heads_q = 1;
  desc.seq_q = desc.seq_k = p;
  desc.dim = d;
  desc.dim_v = dv;
  clattn_plan_t plan = NULL;
  double t0 = tool_now_seconds();
  clattn_status st = clattn_plan_create(ctx, &desc, &plan);
  if (st == CLATTN_SUCCESS)
    st = clattn_plan_run_host(plan, qk, qk, v, o, NULL);
  clattn_plan_destroy(plan);
  if (st != CLATTN_SUCCESS) {
    snprintf(err, errlen, "%s: %s", clattn_status_name(st),
             clattn_context_error(ctx));
    r->skipped = st == CLATTN_ERROR_UNSUPPORTED;
    return 1;
  }
  score(o, v, p, dv, &r->accuracy, &r->rel_error);
  r->seconds = tool_now_seconds() - t0;
  r->ran = 1;
  return 0;
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

static void json_head(const clattn_device_profile *prof, const options *o,
                      int variant, size_t p, size_t d) {
  printf("{\"variant\":\"%s\",\"device\":",
         clattn_variant_name((clattn_variant)variant));
  json_string(prof->name);
  printf(",\"platform\":");
  json_string(prof->platform_name);
  printf(",\"pairs\":%zu,\"dim\":%zu,\"dim_v\":%zu,\"sharpness\":%.6g,"
         "\"seed\":%llu",
         p, d, o->dim_v, o->sharpness, o->seed);
}

/* The outcome of variant v at dims[di] and pairs[pi]. */
static outcome *outcome_at(const options *o, outcome *res, size_t di, int v,
                           size_t pi) {
  return &res[(di * CLATTN_VARIANT_COUNT + (size_t)v) * o->npairs + pi];
}

/* Whether variant v ran at dims[di] for some P. */
static int series_ran(const options *o, outcome *res, size_t di, int v) {
  for (size_t pi = 0; pi < o->npairs; pi++) {
    if (outcome_at(o, res, di, v, pi)->ran)
      return 1;
  }
  return 0;
}

/* A string for a single-quoted gnuplot string, where '' stands for '. */
static void gp_quoted(FILE *f, const char *s) {
  fputc('\'', f);
  for (; *s; s++) {
    if (*s == '\'')
      fputc('\'', f);
    if ((unsigned char)*s >= 0x20)
      fputc(*s, f);
  }
  fputc('\'', f);
}

/* Accuracy against P, one line per variant and dim, through gnuplot.
 * Returns 0, or 1 with a message on stderr. */
static int plot(const options *o, outcome *res,
                const clattn_device_profile *prof) {
  if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
    fprintf(stderr, "clattn-recall: --plot needs gnuplot, which was not "
                    "found (Debian: apt-get install gnuplot-nox)\n");
    return 1;
  }
  int series = 0;
  for (size_t di = 0; di < o->ndims; di++) {
    for (int v = 0; v < CLATTN_VARIANT_COUNT; v++)
      series += series_ran(o, res, di, v);
  }
  if (series == 0) {
    fprintf(stderr, "clattn-recall: nothing to plot\n");
    return 1;
  }
  /* gnuplot writes the image to its standard output when it cannot open
   * the file, so the file is tried here first and that output dropped. */
  FILE *probe = fopen(o->plot, "wb");
  if (!probe) {
    fprintf(stderr, "clattn-recall: cannot write %s\n", o->plot);
    return 1;
  }
  fclose(probe);
  FILE *gp = popen("gnuplot >/dev/null", "w");
  if (!gp) {
    fprintf(stderr, "clattn-recall: could not start gnuplot\n");
    return 1;
  }
  fprintf(gp, "set terminal pngcairo noenhanced size 960,600 font ',11'\n"
              "set output ");
  gp_quoted(gp, o->plot);
  fprintf(gp,
          "\nset title sprintf(\"Exact retrieval of P stored pairs "
          "(sharpness %g, Dv = %zu)\\n%%s\", ",
          o->sharpness, o->dim_v);
  gp_quoted(gp, prof->name);
  fprintf(gp, ")\n"
              "set xlabel 'stored key-value pairs P (queries = keys)'\n"
              "set ylabel 'top-1 retrieval accuracy (%%)'\n"
              "set logscale x 2\nset format x '%%.0f'\n"
              "set yrange [0:105]\nset grid\n"
              "set key outside right top\n");
  /* One data block per series, then one plot command naming them all. */
  for (size_t di = 0; di < o->ndims; di++) {
    for (int v = 0; v < CLATTN_VARIANT_COUNT; v++) {
      fprintf(gp, "$s%zu_%d << EOD\n", di, v);
      for (size_t pi = 0; pi < o->npairs; pi++) {
        const outcome *r = outcome_at(o, res, di, v, pi);
        if (r->ran)
          fprintf(gp, "%zu %.4f\n", o->pairs[pi], 100.0 * r->accuracy);
      }
      fprintf(gp, "EOD\n");
    }
  }
  const char *sep = "plot ";
  for (size_t di = 0; di < o->ndims; di++) {
    for (int v = 0; v < CLATTN_VARIANT_COUNT; v++) {
      if (!series_ran(o, res, di, v))
        continue;
      fprintf(gp,
              "%s$s%zu_%d with linespoints lc %d dt %zu pt %zu lw 2 "
              "title '%s D=%zu'",
              sep, di, v, v + 1, di % 5 + 1, di % 7 + 5,
              clattn_variant_name((clattn_variant)v), o->dims[di]);
      sep = ", \\\n  ";
    }
  }
  fprintf(gp, "\n");
  int status = pclose(gp);
  if (status != 0) {
    fprintf(stderr, "clattn-recall: gnuplot failed to draw %s\n", o->plot);
    return 1;
  }
  return 0;
}

/* The table of one dim: accuracy, then relative error, variant by P. */
static void print_table(const options *o, size_t di, outcome *res) {
  size_t d = o->dims[di];
  printf("\nD=%zu (feature width: linear %zu, cosformer %zu)\n", d, d, 2 * d);
  for (int what = 0; what < 2; what++) {
    printf("%-10s", what == 0 ? "accuracy%" : "rel_error");
    for (size_t pi = 0; pi < o->npairs; pi++)
      printf(" %8zu", o->pairs[pi]);
    printf("\n");
    for (int v = 0; v < CLATTN_VARIANT_COUNT; v++) {
      if (!o->variants[v])
        continue;
      printf("%-10s", clattn_variant_name((clattn_variant)v));
      for (size_t pi = 0; pi < o->npairs; pi++) {
        const outcome *r = outcome_at(o, res, di, v, pi);
        if (!r->ran)
          printf(" %8s", r->skipped ? "n/a" : "failed");
        else if (what == 0)
          printf(" %8.1f", 100.0 * r->accuracy);
        else
          printf(" %8.3g", r->rel_error);
      }
      printf("\n");
    }
  }
  fflush(stdout);
}

int main(int argc, char **argv) {
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc < 0 ? 0 : rc;
  size_t maxp = 0, maxd = 0;
  for (size_t i = 0; i < o.npairs; i++)
    maxp = o.pairs[i] > maxp ? o.pairs[i] : maxp;
  for (size_t i = 0; i < o.ndims; i++)
    maxd = o.dims[i] > maxd ? o.dims[i] : maxd;

  clattn_context_t ctx = NULL;
  float *qk = NULL, *v = NULL, *out = NULL;
  outcome *res = NULL;
  clattn_status st = clattn_context_create(&ctx, o.device, 0);
  if (st != CLATTN_SUCCESS) {
    fprintf(stderr, "clattn-recall: %s: %s\n", clattn_status_name(st),
            clattn_context_error(ctx));
    rc = 1;
    goto cleanup;
  }
  clattn_device_profile prof;
  clattn_context_profile(ctx, &prof);
  qk = malloc(maxp * maxd * sizeof *qk);
  v = malloc(maxp * o.dim_v * sizeof *v);
  out = malloc(maxp * o.dim_v * sizeof *out);
  res = calloc(o.ndims * CLATTN_VARIANT_COUNT * o.npairs, sizeof *res);
  if (!qk || !v || !out || !res) {
    fprintf(stderr, "clattn-recall: out of memory\n");
    rc = 1;
    goto cleanup;
  }
  if (!o.json) {
    printf("device: %s (%s)\n", prof.name, prof.platform_name);
    printf("sharpness %g: Q = K = sqrt(%g sqrt(D)) * unit keys, values unit "
           "in R^%zu, seed %llu;\n",
           o.sharpness, o.sharpness, o.dim_v, o.seed);
    printf("variants at their defaults: softmax and sigmoid s = 1/sqrt(D), "
           "sigmoid b = -ln(P),\n"
           "linear phi = elu+1, cosformer phi = relu with M = P.\n");
  }
  double t_start = tool_now_seconds();
  for (size_t di = 0; di < o.ndims; di++) {
    size_t d = o.dims[di];
    double radius = sqrt(o.sharpness * sqrt((double)d));
    char last_err[CLATTN_VARIANT_COUNT][1024] = {""};
    for (size_t pi = 0; pi < o.npairs; pi++) {
      size_t p = o.pairs[pi];
      /* The stored set depends on the seed, P and D only, so every variant,
       * and every run with other lists, sees the same pairs. */
      uint64_t state = o.seed ^ ((uint64_t)p << 20) ^ ((uint64_t)d << 44);
      next_u64(&state);
      fill_sphere(qk, p, d, radius, &state);
      fill_sphere(v, p, o.dim_v, 1.0, &state);
      for (int var = 0; var < CLATTN_VARIANT_COUNT; var++) {
        if (!o.variants[var])
          continue;
        outcome *r = outcome_at(&o, res, di, var, pi);
        char err[1024] = "";
        if (run_case(ctx, (clattn_variant)var, p, d, o.dim_v, qk, v, out, r,
                     err, sizeof err)) {
          /* A variant that fails usually fails the same way at every P:
           * say so once. */
          if (strcmp(err, last_err[var]) != 0)
            fprintf(stderr, "clattn-recall: %s D=%zu P=%zu: %s\n",
                    clattn_variant_name((clattn_variant)var), d, p, err);
          snprintf(last_err[var], sizeof last_err[var], "%s", err);
          if (!r->skipped)
            rc = 1;
          if (o.json) {
            json_head(&prof, &o, var, p, d);
            printf(",\"skipped\":");
            json_string(err);
            printf("}\n");
          }
          continue;
        }
        if (o.json) {
          json_head(&prof, &o, var, p, d);
          printf(",\"accuracy\":%.6g,\"rel_error\":%.6g,\"seconds\":%.4g}\n",
                 r->accuracy, r->rel_error, r->seconds);
          fflush(stdout);
        }
      }
    }
    if (!o.json)
      print_table(&o, di, res);
  }
  if (!o.json)
    printf("\n%.1f s\n", tool_now_seconds() - t_start);
  if (o.plot && plot(&o, res, &prof))
    rc = 1;
cleanup:
  free(qk);
  free(v);
  free(out);
  free(res);
  clattn_context_destroy(ctx);
  return rc;
}
