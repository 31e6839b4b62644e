/*
 * merge.cl - combines partial attention results of the same queries, each
 * computed over a disjoint range of keys, into the result over the union:
 *   lse = log sum_p exp(lse_p),  o = sum_p exp(lse_p - lse) o_p.
 *
 * Layout: the parts one after another, O_parts [P, rows, Dv] in the storage
 * dtype and LSE_parts float [P, rows] (natural log; -inf for a part that saw
 * no key of the row); O [rows, Dv], LSE float [rows].
 * One work-item computes one element of O: global size (Dv, rows). It reads
 * the row's P log-sum-exps (shared by the row's Dv work-items through the
 * cache) and P elements of the parts; the merge is bound by memory, not by
 * arithmetic.
 *
 * A part with LSE -inf carries no weight, whatever its O holds (it may be
 * uninitialised), and a row that no part saw gives O = 0 and LSE = -inf.
 */

CLATTN_KERNEL void clattn_merge(__global const store_t *o_parts,
                                __global const float *lse_parts,
                                __global store_t *o, __global float *lse,
                                const int write_lse, const int parts,
                                const ulong rows, const int dv) {
  const size_t c = get_global_id(0);
  const size_t r = get_global_id(1);
  float mx = -INFINITY;
  for (int p = 0; p < parts; p++)
    mx = fmax(mx, lse_parts[(size_t)p * rows + r]);
  float sum = 0.0f, acc = 0.0f;
  if (mx != -INFINITY) {
    for (int p = 0; p < parts; p++) {
      const float lp = lse_parts[(size_t)p * rows + r];
      if (lp == -INFINITY)
        continue;
      const float w = exp(lp - mx);
      sum += w;
      acc += w * LOAD1(o_parts, ((size_t)p * rows + r) * dv + c);
    }
  }
  STORE1(sum > 0.0f ? acc / sum : 0.0f, o, r * dv + c);
  if (write_lse && c == 0)
    lse[r] = sum > 0.0f ? mx + log(sum) : -INFINITY;
}
