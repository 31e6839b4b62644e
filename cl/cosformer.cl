/*
 * cosformer.cl - cosFormer attention: linear attention on
 * q'_i = [phi(q_i) sin t_i, phi(q_i) cos t_i] and k'_j likewise, with
 * t = (pi/2) * pos / M and 1-based positions (queries and keys each counted
 * in their own sequence), denominator max(q'_i.z', eps).
 *
 * This file holds only the position re-weighting: it is compiled between
 * common.cl and linear.cl, whose chunked kernels (layout, tunables and work
 * split are described there) run it with two feature copies, so the state
 * has 2 D rows. The host passes hinv = 1 / (2 M), so that t = pi * pos * hinv.
 */

#define FEAT_COPIES 2

/* sinpi and cospi of an exactly scaled position keep the angle accurate for
 * long sequences; sin(x * pi/2 / M) would round pi/2 / M first. */
float clattn_pos_weight(const int copy, const int pos, const float hinv) {
  const float x = (float)(pos + 1) * hinv;
  return copy == 0 ? sinpi(x) : cospi(x);
}

/* sin t_i sin t_j + cos t_i cos t_j = cos(t_i - t_j): inside a chunk the
 * weight comes from the exact integer distance, with no cancellation. */
float clattn_rel_weight(const int diff, const float hinv) {
  return cospi((float)diff * hinv);
}

float clattn_norm(const float den, const float eps) {
  return 1.0f / fmax(den, eps);
}
