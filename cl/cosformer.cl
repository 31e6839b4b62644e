/*
 * cosformer.cl - cosFormer attention: linear attention on
 * q'_i = [phi(q_i) sin t_i, phi(q_i) cos t_i] and k'_j likewise, with
 * t = (pi/2) * pos / M and 1-based positions (queries and keys each counted
 * in their own sequence); the denominator is max(q'_i.z', eps).
 *
 * This file holds only the position weights. It is compiled between
 * common.cl and linear.cl, whose chunked kernels (layout, tunables and work
 * split are described there) run with two feature copies, so a chunk state
 * has 2 D rows: copy 0 weighted by sin t, copy 1 by cos t. The host passes
 * hinv = 1 / (2 M), so that t = pi * pos * hinv.
 *
 * Accuracy for long sequences: sinpi/cospi of an exactly scaled position keep
 * the angle to a few ulp, where sin(pos * (pi/2) / M) would carry the
 * rounding of pi/2 / M times pos. Within a chunk the weight of a pair is
 * cos(t_i - t_j) from the exact integer distance, not the product form.
 */

#define POSITIONAL 1
#define FEAT_COPIES 2

float clattn_pos_weight(const int copy, const int pos, const float hinv) {
  const float x = (float)(pos + 1) * hinv;
  return copy == 0 ? sinpi(x) : cospi(x);
}

floatv clattn_pos_weightv(const int copy, const floatv pos1,
                          const float hinv) {
  const floatv x = pos1 * hinv;
  return copy == 0 ? sinpi(x) : cospi(x);
}

/* sin t_i sin t_j + cos t_i cos t_j = cos(t_i - t_j). */
floatv clattn_rel_weightv(const floatv diff, const float hinv) {
  return cospi(diff * hinv);
}

float clattn_norm(const float den, const float eps) {
  return 1.0f / fmax(den, eps);
}
