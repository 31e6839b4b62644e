/*
 * reference.c - the double-precision CPU reference of softmax, sigmoid,
 * linear and cosFormer attention. It reads only the public descriptor and
 * follows DESIGN.md literally; speed matters only as far as keeping long
 * linear-attention references cheap.
 */
#include "reference.h"

#include <math.h>
#include <stdlib.h>

/* Not every C11 library defines M_PI. */
#define REF_PI 3.14159265358979323846

/* The descriptor with every default resolved, so the loops below never look
 * at a 0 that means "default". */
typedef struct ref_shape {
  size_t b, hq, hkv, nq, nk, d, dv;
  int causal;
  double scale, bias, eps, cos_m;
  clattn_feature_map map;
} ref_shape;

static void ref_shape_resolve(const clattn_desc *desc, ref_shape *s);

/* The shape of sequence b alone: Lq and Lk as its lengths, and the defaults
 * that depend on them resolved per sequence. */
static void ref_shape_seq(const clattn_desc *desc, const clattn_ref_extra *x,
                          size_t b, ref_shape *s) {
  clattn_desc one = *desc;
  if (x && x->lens_q)
    one.seq_q = (size_t)x->lens_q[b];
  if (x && x->lens_k)
    one.seq_k = (size_t)x->lens_k[b];
  ref_shape_resolve(&one, s);
}

static void ref_shape_resolve(const clattn_desc *desc, ref_shape *s) {
  s->b = desc->batch;
  s->hq = desc->heads_q;
  s->hkv = desc->heads_kv ? desc->heads_kv : desc->heads_q;
  s->nq = desc->seq_q;
  s->nk = desc->seq_k;
  s->d = desc->dim;
  s->dv = desc->dim_v ? desc->dim_v : desc->dim;
  s->causal = desc->causal != 0;
  s->scale =
      desc->scale != 0.0f ? (double)desc->scale : 1.0 / sqrt((double)s->d);
  s->bias = desc->has_bias ? (double)desc->bias : -log((double)s->nk);
  s->eps = desc->eps != 0.0f ? (double)desc->eps : 1e-6;
  s->cos_m = desc->cos_m != 0.0f ? (double)desc->cos_m
                                 : (double)(s->nq > s->nk ? s->nq : s->nk);
  s->map = desc->feature_map;
  if (s->map == CLATTN_FEATURE_MAP_DEFAULT)
    s->map = desc->variant == CLATTN_VARIANT_COSFORMER
                 ? CLATTN_FEATURE_MAP_RELU
                 : CLATTN_FEATURE_MAP_ELU1;
}

/* Number of keys query i sees: bottom-right aligned causal masking makes key
 * j visible when j <= i + (Nk - Nq), which is negative for the first rows
 * when Nq > Nk. */
static size_t ref_visible(const ref_shape *s, size_t i) {
  long long last;
  if (!s->causal)
    return s->nk;
  last = (long long)i + (long long)s->nk - (long long)s->nq;
  if (last < 0)
    return 0;
  if (last >= (long long)s->nk)
    return s->nk;
  return (size_t)last + 1;
}

static double ref_dot(const float *a, const float *b, size_t n) {
  double acc = 0.0;
  size_t t;
  for (t = 0; t < n; t++)
    acc += (double)a[t] * (double)b[t];
  return acc;
}

static double ref_phi(clattn_feature_map map, float x) {
  double y = (double)x;
  if (map == CLATTN_FEATURE_MAP_RELU)
    return y > 0.0 ? y : 0.0;
  /* elu(x) + 1 is x + 1 above zero and exp(x) at or below it. */
  return y > 0.0 ? y + 1.0 : exp(y);
}

static void ref_fill_nan(double *o, size_t n) {
  size_t t;
  for (t = 0; t < n; t++)
    o[t] = NAN;
}

/* Whether query i sees key j: causal, the window and the user's mask, with
 * i' = i + Nk - Nq the query's position among the keys of its sequence. */
static int ref_sees(const clattn_desc *desc, const clattn_ref_extra *x,
                    const ref_shape *s, size_t b, size_t h, size_t i,
                    size_t j) {
  long long ip = (long long)i + (long long)s->nk - (long long)s->nq;
  long long jj = (long long)j;
  long long right = s->causal ? 0 : desc->window_right;
  if (right >= 0 && jj > ip + right)
    return 0;
  if (desc->window_left >= 0 && jj < ip - desc->window_left)
    return 0;
  if (x && x->mask_mod && !x->mask_mod((int)b, (int)h, (int)i, (int)j))
    return 0;
  return 1;
}

/* The score of (i, j) through the pipeline: scale, softcap, ALiBi,
 * score_mod. */
static double ref_score(const clattn_desc *desc, const clattn_ref_extra *x,
                        const ref_shape *s, size_t b, size_t h, size_t i,
                        size_t j, double dot) {
  double sc = s->scale * dot;
  if (desc->softcap > 0.0f)
    sc = (double)desc->softcap * tanh(sc / (double)desc->softcap);
  if (desc->alibi_slopes) {
    double ip = (double)i + (double)s->nk - (double)s->nq;
    sc -= (double)desc->alibi_slopes[h] * fabs(ip - (double)j);
  }
  if (x && x->score_mod)
    sc = x->score_mod(sc, (int)b, (int)h, (int)i, (int)j);
  return sc;
}

/* Softmax and sigmoid for one (batch, query head): a direct sum over the
 * visible keys, with the exact row maximum subtracted so exp never
 * overflows. */
static void ref_scores_head(const clattn_desc *desc, const clattn_ref_extra *x,
                            const ref_shape *s, size_t b, size_t h,
                            const float *q, const float *k, const float *v,
                            double *o, double *lse, double *score, char *seen) {
  size_t i, j, t;
  for (i = 0; i < s->nq; i++) {
    const float *qi = q + i * s->d;
    double *oi = o + i * s->dv;
    size_t nvis = 0;
    double m = -INFINITY, l = 0.0;
    for (t = 0; t < s->dv; t++)
      oi[t] = 0.0;
    for (j = 0; j < s->nk; j++) {
      seen[j] = (char)ref_sees(desc, x, s, b, h, i, j);
      if (!seen[j])
        continue;
      nvis++;
      score[j] =
          ref_score(desc, x, s, b, h, i, j, ref_dot(qi, k + j * s->d, s->d));
      if (score[j] > m)
        m = score[j];
    }
    if (desc->variant == CLATTN_VARIANT_SIGMOID) {
      for (j = 0; j < s->nk; j++) {
        if (!seen[j])
          continue;
        double w = 1.0 / (1.0 + exp(-(score[j] + s->bias)));
        for (t = 0; t < s->dv; t++)
          oi[t] += w * (double)v[j * s->dv + t];
      }
      continue;
    }
    if (nvis == 0 || m == -INFINITY) {
      if (lse)
        lse[i] = -INFINITY;
      continue;
    }
    for (j = 0; j < s->nk; j++) {
      if (!seen[j])
        continue;
      double w = exp(score[j] - m);
      l += w;
      for (t = 0; t < s->dv; t++)
        oi[t] += w * (double)v[j * s->dv + t];
    }
    for (t = 0; t < s->dv; t++)
      oi[t] /= l;
    if (lse)
      lse[i] = m + log(l);
  }
}

/* Linear and cosFormer for one (batch, query head). Queries are visited in
 * order and keys are added to the state as they become visible, so the
 * causal prefix sums cost O(N D Dv) in all. cosFormer keeps separate sin and
 * cos halves of its 2D-wide feature so no 2D x Dv concatenation is needed. */
static void ref_linear_head(const clattn_desc *desc, const ref_shape *s,
                            const float *q, const float *k, const float *v,
                            double *o, double *st, double *phiq) {
  int cos_form = desc->variant == CLATTN_VARIANT_COSFORMER;
  size_t halves = cos_form ? 2 : 1;
  /* st holds S (halves x D x Dv) followed by z (halves x D). */
  double *sz = st + halves * s->d * s->dv;
  size_t added = 0, i, a, t, h;
  for (t = 0; t < halves * s->d * (s->dv + 1); t++)
    st[t] = 0.0;
  for (i = 0; i < s->nq; i++) {
    size_t nvis = ref_visible(s, i);
    double *oi = o + i * s->dv;
    double wq[2], den = 0.0;
    for (; added < nvis; added++) {
      const float *kj = k + added * s->d;
      const float *vj = v + added * s->dv;
      double wk[2];
      if (cos_form) {
        double tk = (REF_PI / 2.0) * (double)(added + 1) / s->cos_m;
        wk[0] = sin(tk);
        wk[1] = cos(tk);
      } else {
        wk[0] = 1.0;
      }
      for (a = 0; a < s->d; a++) {
        double f = ref_phi(s->map, kj[a]);
        for (h = 0; h < halves; h++) {
          double fh = f * wk[h];
          double *row = st + (h * s->d + a) * s->dv;
          sz[h * s->d + a] += fh;
          for (t = 0; t < s->dv; t++)
            row[t] += fh * (double)vj[t];
        }
      }
    }
    if (cos_form) {
      double tq = (REF_PI / 2.0) * (double)(i + 1) / s->cos_m;
      wq[0] = sin(tq);
      wq[1] = cos(tq);
    } else {
      wq[0] = 1.0;
    }
    for (t = 0; t < s->dv; t++)
      oi[t] = 0.0;
    for (a = 0; a < s->d; a++)
      phiq[a] = ref_phi(s->map, q[i * s->d + a]);
    for (h = 0; h < halves; h++) {
      for (a = 0; a < s->d; a++) {
        double f = phiq[a] * wq[h];
        const double *row = st + (h * s->d + a) * s->dv;
        den += f * sz[h * s->d + a];
        for (t = 0; t < s->dv; t++)
          oi[t] += f * row[t];
      }
    }
    /* linear adds eps; cosFormer clamps, as its official code does. */
    if (cos_form)
      den = den > s->eps ? den : s->eps;
    else
      den += s->eps;
    for (t = 0; t < s->dv; t++)
      oi[t] /= den;
  }
}

void clattn_ref_attention_ex(const clattn_desc *desc, const clattn_ref_extra *x,
                             const float *q, const float *k, const float *v,
                             double *o, double *lse) {
  ref_shape s, full;
  size_t b, h, i, t, group, o_total;
  double *scratch, *extra;
  char *seen = NULL;
  int linear_like;
  if (!desc || !q || !k || !v || !o)
    return;
  ref_shape_resolve(desc, &full);
  o_total = full.b * full.hq * full.nq * full.dv;
  if (full.hkv == 0 || full.hq % full.hkv != 0) {
    ref_fill_nan(o, o_total);
    return;
  }
  group = full.hq / full.hkv;
  linear_like = desc->variant == CLATTN_VARIANT_LINEAR ||
                desc->variant == CLATTN_VARIANT_COSFORMER;
  if (linear_like) {
    /* State for two halves (cosFormer) plus phi(q). */
    scratch = malloc((2 * full.d * (full.dv + 1) + full.d) * sizeof(double));
    extra = scratch ? scratch + 2 * full.d * (full.dv + 1) : NULL;
  } else {
    scratch = malloc((full.nk ? full.nk : 1) * sizeof(double));
    seen = malloc(full.nk ? full.nk : 1);
    extra = NULL;
  }
  if (!scratch || (!linear_like && !seen)) {
    free(scratch);
    free(seen);
    ref_fill_nan(o, o_total);
    return;
  }
  for (b = 0; b < full.b; b++) {
    /* Sequence b alone: its own lengths and defaults, the full strides. */
    ref_shape_seq(desc, x, b, &s);
    for (h = 0; h < full.hq; h++) {
      size_t hk = h / group;
      size_t qo = (b * full.hq + h) * full.nq;
      size_t ko = (b * full.hkv + hk) * full.nk;
      const float *qh = q + qo * full.d;
      const float *kh = k + ko * full.d;
      const float *vh = v + ko * full.dv;
      double *oh = o + qo * full.dv;
      double *lh =
          desc->variant == CLATTN_VARIANT_SOFTMAX && lse ? lse + qo : NULL;
      if (linear_like)
        ref_linear_head(desc, &s, qh, kh, vh, oh, scratch, extra);
      else
        ref_scores_head(desc, x, &s, b, h, qh, kh, vh, oh, lh, scratch, seen);
      for (i = s.nq; i < full.nq; i++) {
        for (t = 0; t < full.dv; t++)
          oh[i * full.dv + t] = 0.0;
        if (lh)
          lh[i] = -INFINITY;
      }
    }
  }
  free(scratch);
  free(seen);
}

void clattn_ref_attention(const clattn_desc *desc, const float *q,
                          const float *k, const float *v, double *o,
                          double *lse) {
  clattn_ref_attention_ex(desc, NULL, q, k, v, o, lse);
}
