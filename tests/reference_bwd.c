/*
 * reference_bwd.c - the double-precision CPU reference of the gradients of
 * every variant: dQ, dK and dV of L = sum(O * dO), written from the numerics
 * contract and checked against finite differences of the forward reference
 * in test_reference.c.
 *
 * Every variant is a weighted mean O_i = U_i / n_i with U_i = sum_j w_ij v_j
 * over the visible keys:
 *   softmax    w_ij = exp(s_ij - m_i)               n_i = sum_j w_ij
 *   sigmoid    w_ij = sigmoid(s_ij + b)             n_i = 1
 *   linear     w_ij = phi(q_i).phi(k_j)             n_i = sum_j w_ij + eps
 *   cosformer  w_ij = phi(q_i).phi(k_j) cos(t_i - t_j)
 *                                                   n_i = max(sum_j w_ij, eps)
 * with s_ij = scale q_i.k_j. Then dv_j += (w_ij / n_i) dO_i, and
 *   dw_ij = (dO_i.v_j - [n depends on w] dO_i.O_i) / n_i,
 * which the chain rule carries back to q and k through each weight. The
 * direct O(Nq Nk (D + Dv)) form is fine for test sizes and hard to get wrong.
 */
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define REF_PI 3.14159265358979323846

static double phi(clattn_feature_map map, double x) {
  if (map == CLATTN_FEATURE_MAP_RELU)
    return x > 0.0 ? x : 0.0;
  return x > 0.0 ? x + 1.0 : exp(x);
}

static double dphi(clattn_feature_map map, double x) {
  if (map == CLATTN_FEATURE_MAP_RELU)
    return x > 0.0 ? 1.0 : 0.0;
  return x > 0.0 ? 1.0 : exp(x);
}

static double dot_ff(const float *a, const float *b, size_t n) {
  double acc = 0.0;
  for (size_t t = 0; t < n; t++)
    acc += (double)a[t] * (double)b[t];
  return acc;
}

/* Whether query i of sequence b, head h sees key j: lengths are the
 * caller's loop bounds; causal, the window and the user's mask here, with
 * i' = i + Lk - Lq the query's position among the keys. */
static int sees(const clattn_desc *desc, const clattn_ref_extra *x, size_t lq,
                size_t lk, size_t b, size_t h, size_t i, size_t j) {
  long long ip = (long long)i + (long long)lk - (long long)lq;
  long long jj = (long long)j;
  long long right = desc->causal ? 0 : desc->window_right;
  if (right >= 0 && jj > ip + right)
    return 0;
  if (desc->window_left >= 0 && jj < ip - desc->window_left)
    return 0;
  if (x && x->mask_mod && !x->mask_mod((int)b, (int)h, (int)i, (int)j))
    return 0;
  return 1;
}

/* Length of sequence b from lens (NULL: full), clamped to 0 .. n. */
static size_t seq_len(const int *lens, size_t b, size_t n) {
  if (!lens)
    return n;
  if (lens[b] < 0)
    return 0;
  return (size_t)lens[b] < n ? (size_t)lens[b] : n;
}

void clattn_ref_attention_backward_ex(const clattn_desc *desc,
                                      const clattn_ref_extra *extra,
                                      const float *q, const float *k,
                                      const float *v, const float *dout,
                                      double *dq, double *dk, double *dv) {
  size_t hkv = desc->heads_kv ? desc->heads_kv : desc->heads_q;
  size_t dvd = desc->dim_v ? desc->dim_v : desc->dim;
  size_t nq = desc->seq_q, nk = desc->seq_k, d = desc->dim;
  size_t group = desc->heads_q / hkv;
  clattn_variant var = desc->variant;
  int linear_like =
      var == CLATTN_VARIANT_LINEAR || var == CLATTN_VARIANT_COSFORMER;
  double scale =
      desc->scale != 0.0f ? (double)desc->scale : 1.0 / sqrt((double)d);
  double eps = desc->eps != 0.0f ? (double)desc->eps : 1e-6;
  double cap = (double)desc->softcap;
  clattn_feature_map map = desc->feature_map;
  if (map == CLATTN_FEATURE_MAP_DEFAULT)
    map = var == CLATTN_VARIANT_COSFORMER ? CLATTN_FEATURE_MAP_RELU
                                          : CLATTN_FEATURE_MAP_ELU1;
  memset(dq, 0, desc->batch * desc->heads_q * nq * d * sizeof *dq);
  memset(dk, 0, desc->batch * hkv * nk * d * sizeof *dk);
  memset(dv, 0, desc->batch * hkv * nk * dvd * sizeof *dv);
  double *w = malloc((nk ? nk : 1) * sizeof *w);
  double *dm = malloc((nk ? nk : 1) * sizeof *dm);
  char *seen = malloc(nk ? nk : 1);
  double *o = malloc(dvd * sizeof *o);
  double *fq = malloc(d * sizeof *fq), *fk = malloc(nk * d * sizeof *fk);
  if (!w || !dm || !seen || !o || !fq || !fk) {
    for (size_t t = 0; t < desc->batch * desc->heads_q * nq * d; t++)
      dq[t] = NAN;
    goto done;
  }
  for (size_t b = 0; b < desc->batch; b++) {
    /* Sequence b alone: its lengths and the defaults that follow them. */
    size_t lq = seq_len(extra ? extra->lens_q : NULL, b, nq);
    size_t lk = seq_len(extra ? extra->lens_k : NULL, b, nk);
    double bias = desc->has_bias ? (double)desc->bias : -log((double)lk);
    double cos_m =
        desc->cos_m != 0.0f ? (double)desc->cos_m : (double)(lq > lk ? lq : lk);
    for (size_t h = 0; h < desc->heads_q; h++) {
      size_t kh = b * hkv + h / group, qh = b * desc->heads_q + h;
      const float *kb = k + kh * nk * d, *vb = v + kh * nk * dvd;
      double *dkb = dk + kh * nk * d, *dvb = dv + kh * nk * dvd;
      if (linear_like)
        for (size_t t = 0; t < lk * d; t++)
          fk[t] = phi(map, (double)kb[t]);
      for (size_t i = 0; i < lq; i++) {
        const float *qi = q + (qh * nq + i) * d;
        const float *gi = dout + (qh * nq + i) * dvd;
        double *dqi = dq + (qh * nq + i) * d;
        size_t nvis = 0;
        for (size_t j = 0; j < lk; j++) {
          seen[j] = (char)sees(desc, extra, lq, lk, b, h, i, j);
          nvis += seen[j] != 0;
        }
        if (nvis == 0)
          continue;
        double ti = (REF_PI / 2.0) * (double)(i + 1) / cos_m;
        /* The weights, their normaliser and the output row. */
        double m = -INFINITY, n = 0.0;
        if (linear_like)
          for (size_t a = 0; a < d; a++)
            fq[a] = phi(map, (double)qi[a]);
        for (size_t j = 0; j < lk; j++) {
          if (!seen[j])
            continue;
          if (!linear_like) {
            /* s = mods(scale q.k): softcap, then ALiBi; dm = ds/dx. */
            double x = scale * dot_ff(qi, kb + j * d, d), sc = x;
            dm[j] = 1.0;
            if (cap > 0.0) {
              double t = tanh(x / cap);
              sc = cap * t;
              dm[j] = 1.0 - t * t;
            }
            if (desc->alibi_slopes) {
              double ip = (double)i + (double)lk - (double)lq;
              sc -= (double)desc->alibi_slopes[h] * fabs(ip - (double)j);
            }
            if (var == CLATTN_VARIANT_SOFTMAX) {
              w[j] = sc;
              m = w[j] > m ? w[j] : m;
            } else {
              w[j] = 1.0 / (1.0 + exp(-(sc + bias)));
            }
          } else {
            double f = 0.0;
            for (size_t a = 0; a < d; a++)
              f += fq[a] * fk[j * d + a];
            if (var == CLATTN_VARIANT_COSFORMER)
              f *= cos(ti - (REF_PI / 2.0) * (double)(j + 1) / cos_m);
            w[j] = f;
          }
        }
        for (size_t j = 0; j < lk; j++) {
          if (!seen[j])
            continue;
          if (var == CLATTN_VARIANT_SOFTMAX)
            w[j] = exp(w[j] - m);
          n += w[j];
        }
        /* Whether n depends on the weights: not for sigmoid, nor for
         * cosFormer when its clamp is active. */
        int n_live = var != CLATTN_VARIANT_SIGMOID &&
                     !(var == CLATTN_VARIANT_COSFORMER && n <= eps);
        if (var == CLATTN_VARIANT_SIGMOID)
          n = 1.0;
        else if (var == CLATTN_VARIANT_LINEAR)
          n += eps;
        else if (var == CLATTN_VARIANT_COSFORMER && n <= eps)
          n = eps;
        for (size_t t = 0; t < dvd; t++)
          o[t] = 0.0;
        for (size_t j = 0; j < lk; j++)
          if (seen[j])
            for (size_t t = 0; t < dvd; t++)
              o[t] += w[j] * (double)vb[j * dvd + t] / n;
        double go = 0.0; /* dO_i . O_i */
        for (size_t t = 0; t < dvd; t++)
          go += (double)gi[t] * o[t];
        for (size_t j = 0; j < lk; j++) {
          if (!seen[j])
            continue;
          double gv = 0.0; /* dO_i . v_j */
          for (size_t t = 0; t < dvd; t++) {
            gv += (double)gi[t] * (double)vb[j * dvd + t];
            dvb[j * dvd + t] += w[j] / n * (double)gi[t];
          }
          double dw = (gv - (n_live ? go : 0.0)) / n;
          if (!linear_like) {
            /* ds: softmax dw/ds = w, sigmoid dw/ds = w (1 - w); then back
             * through the mods to x = scale q.k. */
            double ds = var == CLATTN_VARIANT_SOFTMAX
                            ? w[j] * dw
                            : w[j] * (1.0 - w[j]) * dw;
            ds *= dm[j];
            for (size_t a = 0; a < d; a++) {
              dqi[a] += scale * ds * (double)kb[j * d + a];
              dkb[j * d + a] += scale * ds * (double)qi[a];
            }
          } else {
            double c = var == CLATTN_VARIANT_COSFORMER
                           ? cos(ti - (REF_PI / 2.0) * (double)(j + 1) / cos_m)
                           : 1.0;
            for (size_t a = 0; a < d; a++) {
              dqi[a] += dw * c * fk[j * d + a] * dphi(map, (double)qi[a]);
              dkb[j * d + a] +=
                  dw * c * fq[a] * dphi(map, (double)kb[j * d + a]);
            }
          }
        }
      }
    }
  }
done:
  free(w);
  free(dm);
  free(seen);
  free(o);
  free(fq);
  free(fk);
}

void clattn_ref_attention_backward(const clattn_desc *desc, const float *q,
                                   const float *k, const float *v,
                                   const float *dout, double *dq, double *dk,
                                   double *dv) {
  clattn_ref_attention_backward_ex(desc, NULL, q, k, v, dout, dq, dk, dv);
}
