/*
 * desc.c - problem descriptors: defaults, validation, and tile parameters.
 */
#include "plan.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

CLATTN_API void clattn_desc_init(clattn_desc *desc, clattn_variant variant) {
  if (!desc)
    return;
  memset(desc, 0, sizeof *desc);
  desc->variant = variant;
  desc->dtype = CLATTN_DTYPE_F32;
  desc->batch = 1;
  desc->heads_q = 1;
  desc->seq_q = 1;
  desc->seq_k = 1;
  desc->dim = 1;
  desc->feature_map = CLATTN_FEATURE_MAP_DEFAULT;
  desc->window_left = -1;
  desc->window_right = -1;
}

/* The longest user mod clattn takes. */
#define CLATTN_MAX_MOD 4096

/* A mod is one OpenCL C expression: it may not end the function it is put
 * in, open a block, start a preprocessor line or a comment, or leave a
 * parenthesis unbalanced. What it computes is up to the user. */
static const char *mod_problem(const char *m) {
  size_t n = strlen(m);
  if (n == 0)
    return "is empty";
  if (n > CLATTN_MAX_MOD)
    return "is longer than 4096 characters";
  int depth = 0;
  for (const char *c = m; *c; c++) {
    if (*c == ';' || *c == '{' || *c == '}' || *c == '#' || *c == '\\' ||
        *c == '\n' || *c == '\r' || *c == '"' || *c == '\'')
      return "may not hold ; { } # \\ quotes or line breaks: it is one "
             "expression";
    if (c[0] == '/' && (c[1] == '/' || c[1] == '*'))
      return "may not hold a comment";
    if (*c == '(')
      depth++;
    if (*c == ')' && --depth < 0)
      return "has a ) without its (";
  }
  return depth ? "has a ( without its )" : NULL;
}

/* Largest extent of any one dimension: kernels index rows with int. */
#define CLATTN_MAX_EXTENT ((size_t)INT_MAX / 2)

static clattn_status bad(clattn_context_t ctx, const char *field,
                         const char *why) {
  return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                      "invalid descriptor: %s %s", field, why);
}

/* Kernels hold positions as 32-bit ints and compute i + Nk - Nq plus a block
 * of up to 4096 rows or keys (the largest tile value), so Nq + Nk stays
 * under this. */
#define CLATTN_MAX_SEQ_SUM ((size_t)INT_MAX - CLATTN_MAX_TILE_VALUE)

/* 1 when a [a, b, c, d] tensor of the widest element (4 bytes) has a byte
 * count that fits size_t. */
static int addressable(size_t a, size_t b, size_t c, size_t d) {
  size_t bytes;
  return CLATTN_SIZE_PRODUCT(&bytes, a, b, c, d, sizeof(float));
}

clattn_status clattn__problem_resolve(clattn_context_t ctx,
                                      const clattn_desc *d,
                                      clattn__problem *p) {
  memset(p, 0, sizeof *p);
  if ((int)d->variant < 0 || d->variant >= CLATTN_VARIANT_COUNT)
    return bad(ctx, "variant", "is not a known variant");
  if (clattn_dtype_size(d->dtype) == 0)
    return bad(ctx, "dtype", "is not f32, f16 or bf16");
  const struct {
    const char *name;
    size_t value;
  } extents[] = {{"batch", d->batch},
                 {"heads_q", d->heads_q},
                 {"seq_q", d->seq_q},
                 {"seq_k", d->seq_k},
                 {"dim", d->dim}};
  for (size_t i = 0; i < sizeof extents / sizeof extents[0]; i++) {
    if (extents[i].value == 0)
      return bad(ctx, extents[i].name, "must be at least 1");
    if (extents[i].value > CLATTN_MAX_EXTENT)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                          "invalid descriptor: %s (%zu) is over the limit of "
                          "%zu",
                          extents[i].name, extents[i].value, CLATTN_MAX_EXTENT);
  }
  p->variant = d->variant;
  p->dtype = d->dtype;
  p->batch = d->batch;
  p->heads_q = d->heads_q;
  p->heads_kv = d->heads_kv ? d->heads_kv : d->heads_q;
  p->seq_q = d->seq_q;
  p->seq_k = d->seq_k;
  p->dim = d->dim;
  p->dim_v = d->dim_v ? d->dim_v : d->dim;
  p->causal = d->causal != 0;
  if (p->heads_kv > p->heads_q || p->heads_q % p->heads_kv != 0)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: heads_q (%zu) must be a multiple "
                        "of heads_kv (%zu)",
                        p->heads_q, p->heads_kv);
  if (p->dim > CLATTN_MAX_DIM)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: dim %zu is over the limit of %d",
                        p->dim, CLATTN_MAX_DIM);
  if (p->dim_v > CLATTN_MAX_DIM)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: dim_v %zu is over the limit of %d",
                        p->dim_v, CLATTN_MAX_DIM);
  if (!addressable(p->batch, p->heads_q, p->seq_q, p->dim) ||
      !addressable(p->batch, p->heads_q, p->seq_q, p->dim_v) ||
      !addressable(p->batch, p->heads_kv, p->seq_k, p->dim) ||
      !addressable(p->batch, p->heads_kv, p->seq_k, p->dim_v))
    return bad(ctx, "batch/heads/seq", "give tensors too large to address");
  if (p->seq_q + p->seq_k > CLATTN_MAX_SEQ_SUM)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: seq_q + seq_k (%zu) is over the "
                        "limit of %zu: kernels index positions with 32-bit "
                        "ints",
                        p->seq_q + p->seq_k, CLATTN_MAX_SEQ_SUM);

  int flash = p->variant == CLATTN_VARIANT_SOFTMAX ||
              p->variant == CLATTN_VARIANT_SIGMOID;
  /* The linear kernels number (batch, kv head) pairs with 32-bit ints. */
  if (!flash && p->batch * p->heads_kv > (size_t)INT_MAX)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: batch * heads_kv (%zu) is over "
                        "the limit of %d for %s",
                        p->batch * p->heads_kv, INT_MAX,
                        clattn_variant_name(p->variant));
  const char *vname = clattn_variant_name(p->variant);

  /* scale: softmax and sigmoid. */
  if (d->scale != 0.0f) {
    if (!flash)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                          "invalid descriptor: scale does not apply to %s",
                          vname);
    if (!isfinite(d->scale) || d->scale < 0.0f)
      return bad(ctx, "scale", "must be finite and positive (0 = default)");
  }
  p->scale = d->scale != 0.0f ? d->scale : (float)(1.0 / sqrt((double)p->dim));

  /* bias: sigmoid only. */
  if (d->has_bias && p->variant != CLATTN_VARIANT_SIGMOID)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: bias applies to sigmoid only, "
                        "not %s",
                        vname);
  if (d->has_bias && !isfinite(d->bias))
    return bad(ctx, "bias", "must be finite");
  p->bias = d->has_bias ? d->bias : (float)(-log((double)p->seq_k));
  p->bias_default = !d->has_bias;

  /* feature_map, eps: linear and cosformer. */
  if (flash && d->feature_map != CLATTN_FEATURE_MAP_DEFAULT)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: feature_map does not apply to %s",
                        vname);
  if (d->feature_map != CLATTN_FEATURE_MAP_DEFAULT &&
      d->feature_map != CLATTN_FEATURE_MAP_ELU1 &&
      d->feature_map != CLATTN_FEATURE_MAP_RELU)
    return bad(ctx, "feature_map", "is not default, elu1 or relu");
  if (d->feature_map != CLATTN_FEATURE_MAP_DEFAULT)
    p->feature_map = d->feature_map;
  else if (p->variant == CLATTN_VARIANT_LINEAR)
    p->feature_map = CLATTN_FEATURE_MAP_ELU1;
  else if (p->variant == CLATTN_VARIANT_COSFORMER)
    p->feature_map = CLATTN_FEATURE_MAP_RELU;
  if (d->eps != 0.0f) {
    if (flash)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                          "invalid descriptor: eps does not apply to %s",
                          vname);
    if (!isfinite(d->eps) || d->eps < 0.0f)
      return bad(ctx, "eps", "must be finite and positive (0 = default)");
  }
  p->eps = d->eps != 0.0f ? d->eps : 1e-6f;

  /* cos_m: cosformer only. */
  if (d->cos_m != 0.0f) {
    if (p->variant != CLATTN_VARIANT_COSFORMER)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                          "invalid descriptor: cos_m applies to cosformer "
                          "only, not %s",
                          vname);
    if (!isfinite(d->cos_m) || d->cos_m < 0.0f)
      return bad(ctx, "cos_m", "must be finite and positive (0 = default)");
  }
  p->cos_m = d->cos_m != 0.0f
                 ? d->cos_m
                 : (float)(p->seq_q > p->seq_k ? p->seq_q : p->seq_k);
  p->cos_m_default = d->cos_m == 0.0f;

  /* The score pipeline: softmax and sigmoid. */
  int pipe = d->window_left != -1 || d->window_right != -1 ||
             d->softcap != 0.0f || d->alibi_slopes || d->score_mod ||
             d->mask_mod;
  if (pipe && !flash)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: windows, softcap, alibi_slopes, "
                        "score_mod and mask_mod apply to softmax and sigmoid, "
                        "not %s",
                        vname);
  if (d->window_left < -1)
    return bad(ctx, "window_left", "must be -1 (unbounded) or at least 0");
  if (d->window_right < -1)
    return bad(ctx, "window_right", "must be -1 (unbounded) or at least 0");
  p->window_left = d->window_left;
  p->window_right = p->causal ? 0 : d->window_right;
  if (!isfinite(d->softcap) || d->softcap < 0.0f)
    return bad(ctx, "softcap", "must be finite and positive (0 = none)");
  p->softcap = d->softcap;
  if (d->alibi_slopes) {
    for (size_t h = 0; h < p->heads_q; h++) {
      if (!isfinite(d->alibi_slopes[h]))
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                            "invalid descriptor: alibi_slopes[%zu] is not "
                            "finite",
                            h);
    }
  }
  p->alibi = d->alibi_slopes != NULL;
  p->alibi_slopes = d->alibi_slopes;
  const char *why = NULL;
  if (d->score_mod && (why = mod_problem(d->score_mod)))
    return bad(ctx, "score_mod", why);
  if (d->mask_mod && (why = mod_problem(d->mask_mod)))
    return bad(ctx, "mask_mod", why);
  p->score_mod = d->score_mod;
  p->mask_mod = d->mask_mod;
  return CLATTN_SUCCESS;
}

void clattn__tiles_add(clattn__tiles *t, const char *name, int value) {
  for (size_t i = 0; i < t->count; i++) {
    if (strcmp(t->names[i], name) == 0) {
      t->values[i] = value;
      return;
    }
  }
  if (t->count < CLATTN_MAX_TILES) {
    t->names[t->count] = name;
    t->values[t->count] = value;
    t->count++;
  }
}

int clattn__tiles_get(const clattn__tiles *t, const char *name) {
  for (size_t i = 0; i < t->count; i++) {
    if (strcmp(t->names[i], name) == 0)
      return t->values[i];
  }
  return 0;
}

const char *clattn__shape_name(int shape) {
  static const char *const names[] = {"row", "cpu", "gpu", "decode"};
  return shape >= 0 && shape <= CLATTN__SHAPE_DECODE ? names[shape] : "?";
}

int clattn__pick_vec(size_t d, size_t dv, int widest) {
  for (int v = widest; v > 1; v /= 2) {
    if (d % (size_t)v == 0 && dv % (size_t)v == 0)
      return v;
  }
  return d >= 16 && dv >= 16 && widest >= 8 ? 8 : 1;
}

void clattn__vector_regs(const clattn_device_profile *dev, int *width,
                         int *regs) {
  cl_uint n = dev->native_vector_width_float;
  *width = n >= 16 ? 16 : n >= 8 ? 8 : 4;
  *regs = n >= 16 ? 32 : 16;
}

const char *clattn__spec_shape(const char *spec, size_t *len) {
  for (const char *s = spec; s && *s;) {
    const char *end = strchr(s, ',');
    if (!end)
      end = s + strlen(s);
    if (strncmp(s, "SHAPE=", 6) == 0) {
      *len = (size_t)(end - (s + 6));
      return s + 6;
    }
    s = *end ? end + 1 : end;
  }
  return NULL;
}

clattn_status clattn__shape_choose(clattn_context_t ctx, const char *spec,
                                   unsigned allowed, int *shape) {
  size_t len = 0;
  const char *v = clattn__spec_shape(spec, &len);
  if (!v) {
    *shape = ctx->profile.is_cpu ? CLATTN__SHAPE_CPU : CLATTN__SHAPE_GPU;
    return CLATTN_SUCCESS;
  }
  char names[64] = "";
  for (int i = 0; i <= CLATTN__SHAPE_DECODE; i++) {
    const char *name = clattn__shape_name(i);
    if (!(allowed & (1u << i)))
      continue;
    if (strlen(name) == len && strncmp(v, name, len) == 0) {
      *shape = i;
      return CLATTN_SUCCESS;
    }
    size_t at = strlen(names);
    snprintf(names + at, sizeof names - at, "%s%s", at ? ", " : "", name);
  }
  return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                      "invalid descriptor: tiles: SHAPE \"%.*s\" is not "
                      "one this problem has (%s)",
                      (int)len, v, names);
}

/* Length of the NAME of the entry at s (up to '=' or the entry's end). */
static size_t entry_name_len(const char *s, const char *end) {
  const char *eq = memchr(s, '=', (size_t)(end - s));
  return (size_t)((eq ? eq : end) - s);
}

clattn_status clattn__tiles_override(clattn_context_t ctx, clattn__tiles *t,
                                     const char *spec) {
  const char *origin = t->origin ? t->origin : "override";
  if (!spec || !*spec)
    return CLATTN_SUCCESS;
  /* Strict: NAME=DIGITS entries (SHAPE=word), no empty entry, no sign or
   * space, each name once, so that a spec means one thing. */
  for (const char *s = spec;;) {
    const char *end = strchr(s, ',');
    if (!end)
      end = s + strlen(s);
    size_t nlen = entry_name_len(s, end);
    if (nlen == 0 || s + nlen == end || s + nlen + 1 == end)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                          "invalid descriptor: tiles (%s) \"%s\": expected "
                          "NAME=VALUE[,NAME=VALUE...]",
                          origin, spec);
    for (const char *e = spec; e < s;) {
      const char *eend = strchr(e, ',');
      if (entry_name_len(e, eend) == nlen && strncmp(e, s, nlen) == 0)
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                            "invalid descriptor: tiles (%s): %.*s is given "
                            "more than once",
                            origin, (int)nlen, s);
      e = eend + 1;
    }
    const char *val = s + nlen + 1;
    if (nlen == 5 && strncmp(s, "SHAPE", 5) == 0) {
      /* Read by clattn__shape_choose before the defaults were set. */
      t->source = origin;
    } else {
      size_t i = 0;
      for (; i < t->count; i++) {
        if (strlen(t->names[i]) == nlen && strncmp(t->names[i], s, nlen) == 0)
          break;
      }
      if (i == t->count)
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                            "invalid descriptor: tiles (%s): unknown tile "
                            "parameter \"%.*s\"",
                            origin, (int)nlen, s);
      long v = 0;
      const char *c = val;
      for (; c < end && *c >= '0' && *c <= '9' && v <= CLATTN_MAX_TILE_VALUE;
           c++)
        v = v * 10 + (*c - '0');
      if (c != end || v > CLATTN_MAX_TILE_VALUE)
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                            "invalid descriptor: tiles (%s): bad value for "
                            "%s: \"%.*s\" (digits, 0 to %d)",
                            origin, t->names[i], (int)(end - val), val,
                            CLATTN_MAX_TILE_VALUE);
      t->values[i] = (int)v;
      t->source = origin;
    }
    if (!*end)
      break;
    s = end + 1;
  }
  return CLATTN_SUCCESS;
}

clattn_status clattn__tiles_fit(clattn_context_t ctx, const clattn__tiles *t,
                                const clattn__problem *p, size_t private_floats,
                                size_t local_bytes) {
  cl_ulong local_limit = ctx->profile.local_mem_size;
  int too_private = private_floats > CLATTN_MAX_PRIVATE_FLOATS;
  if (!too_private && (cl_ulong)local_bytes <= local_limit)
    return CLATTN_SUCCESS;
  char tiles[256] = "";
  size_t len = 0;
  for (size_t i = 0; i < t->count && len < sizeof tiles; i++) {
    int n = snprintf(tiles + len, sizeof tiles - len, "%s%s=%d", i ? " " : "",
                     t->names[i], t->values[i]);
    if (n < 0)
      break;
    len += (size_t)n;
  }
  const char *origin = t->source ? t->source : "heuristic";
  if (too_private)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                        "invalid descriptor: tiles (%s) %s need %zu floats "
                        "of private arrays per work-item with D=%zu, Dv=%zu; "
                        "the limit is %d",
                        origin, tiles, private_floats, p->dim, p->dim_v,
                        CLATTN_MAX_PRIVATE_FLOATS);
  return clattn__fail(ctx, CLATTN_ERROR_INVALID_DESCRIPTOR,
                      "invalid descriptor: tiles (%s) %s need %zu bytes of "
                      "local memory per work-group with D=%zu, Dv=%zu; the "
                      "device has %llu",
                      origin, tiles, local_bytes, p->dim, p->dim_v,
                      (unsigned long long)local_limit);
}

void clattn__tiles_options(const clattn__tiles *t, char *buf, size_t size) {
  size_t len = strlen(buf);
  for (size_t i = 0; i < t->count && len < size; i++) {
    int n =
        snprintf(buf + len, size - len, " -D %s=%d", t->names[i], t->values[i]);
    if (n < 0)
      break;
    len += (size_t)n;
  }
}
