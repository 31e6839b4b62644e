/*
 * reference.h - a double-precision CPU reference of every clattn variant,
 * written from the numerics contract in DESIGN.md and independent of the
 * library, so that tests compare the library with the contract rather than
 * with itself.
 */
#ifndef CLATTN_TESTS_REFERENCE_H
#define CLATTN_TESTS_REFERENCE_H

#include "clattn.h"

/*
 * Computes O [B, Hq, Nq, Dv] and, for softmax only, LSE [B, Hq, Nq] in double
 * from float32 Q, K and V laid out as clattn.h describes. Defaults left as 0
 * in desc (heads_kv, dim_v, scale, eps, cos_m, has_bias, feature map) are
 * resolved here as the contract states. lse may be NULL; it is left untouched
 * for variants other than softmax. The descriptor is assumed valid. If
 * scratch memory cannot be allocated, O is filled with NaN so that any
 * comparison with it fails loudly.
 *
 * Softmax and sigmoid are direct O(Nq Nk D) sums; linear and cosFormer carry a
 * running double-precision state, O(N D Dv), so long sequences stay cheap.
 */
void clattn_ref_attention(const clattn_desc *desc, const float *q,
                          const float *k, const float *v, double *o,
                          double *lse);

/* What the reference needs beyond the descriptor: per-sequence lengths
 * (int32 [B] or NULL for Nq and Nk) and the user mods as C functions, the
 * twins of the OpenCL C expressions in desc->score_mod and desc->mask_mod
 * (a test gives both). score is in natural units, i and j are positions in
 * the sequence. NULL members are absent. */
typedef struct clattn_ref_extra {
  const int *lens_q;
  const int *lens_k;
  double (*score_mod)(double score, int b, int h, int i, int j);
  int (*mask_mod)(int b, int h, int i, int j);
} clattn_ref_extra;

/* clattn_ref_attention with lengths and the whole score pipeline of the
 * descriptor (window, softcap, ALiBi, mods). Rows past a sequence's Lq give
 * O = 0 and LSE -inf; sigmoid's default bias and cosFormer's default M are
 * those of each sequence alone (-ln Lk, max(Lq, Lk)). extra may be NULL. */
void clattn_ref_attention_ex(const clattn_desc *desc,
                             const clattn_ref_extra *extra, const float *q,
                             const float *k, const float *v, double *o,
                             double *lse);

/*
 * The gradients of L = sum_t O_t dO_t with respect to Q, K and V (double,
 * shaped as Q, K and V), from float32 inputs and dO [B, Hq, Nq, Dv]; GQA
 * gradients of a kv head are summed over its query heads. Masked pairs and
 * rows with no visible key contribute nothing. The feature maps' derivative
 * at 0 is taken from the right-hand side's complement: relu'(0) = 0 and
 * (elu+1)'(0) = exp(0) = 1, as x > 0 selects the branch in the forward.
 */
void clattn_ref_attention_backward(const clattn_desc *desc, const float *q,
                                   const float *k, const float *v,
                                   const float *dout, double *dq, double *dk,
                                   double *dv);

/* clattn_ref_attention_backward with lengths and the score pipeline of the
 * descriptor: window, softcap (ds carried back through C tanh(x / C)),
 * ALiBi (a constant, no gradient) and extra->mask_mod; extra->score_mod is
 * ignored (clattn has no backward with one). Rows past a sequence's Lq get
 * dQ = 0, keys past its Lk dK = dV = 0, masked pairs give nothing; defaults
 * that depend on the lengths are those of each sequence alone. extra may be
 * NULL. */
void clattn_ref_attention_backward_ex(const clattn_desc *desc,
                                      const clattn_ref_extra *extra,
                                      const float *q, const float *k,
                                      const float *v, const float *dout,
                                      double *dq, double *dk, double *dv);

#endif /* CLATTN_TESTS_REFERENCE_H */
