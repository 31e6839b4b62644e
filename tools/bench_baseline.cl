/*
 * bench_baseline.cl - the kernels of clattn-bench's naive baseline: attention
 * as an OpenCL user would write it without clattn. CLBlast computes the score
 * matrix S = Q K^T and the output O = P V; these kernels do the rest.
 *
 * Layout: S is a stack of row-major (g * Nq) x Nk matrices, one per
 * (batch, kv head), where g = Hq / Hkv query heads share a kv head; row r of
 * a matrix belongs to query r % Nq. The row kernels turn S into P in place.
 *
 * Tunables: WG, the work-group size of the row kernels (a power of two), and
 * VW, their vector width (1, 2, 4, 8 or 16; the host passes the device's
 * preferred float vector width). One work-group handles one row: each
 * work-item takes every WG-th vector of VW floats (and every WG-th float of
 * the tail past the last whole vector), and the group reduces the row maximum
 * and sum in local memory. The conversion kernels run one work-item per
 * element.
 */
#ifndef WG
#define WG 64 /* work-items per score row */
#endif
#ifndef VW
#define VW 1 /* floats per vector in the row kernels */
#endif

#if VW == 1
typedef float floatv;
typedef int intv;
#define LANES 0
#define VLOAD(i, p) ((p)[i])
#define VSTORE(v, i, p) ((p)[i] = (v))
#define CONVERT_FLOATV convert_float
#elif VW == 2
typedef float2 floatv;
typedef int2 intv;
#define LANES ((int2)(0, 1))
#define VLOAD vload2
#define VSTORE vstore2
#define CONVERT_FLOATV convert_float2
#elif VW == 4
typedef float4 floatv;
typedef int4 intv;
#define LANES ((int4)(0, 1, 2, 3))
#define VLOAD vload4
#define VSTORE vstore4
#define CONVERT_FLOATV convert_float4
#elif VW == 8
typedef float8 floatv;
typedef int8 intv;
#define LANES ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#define VLOAD vload8
#define VSTORE vstore8
#define CONVERT_FLOATV convert_float8
#elif VW == 16
typedef float16 floatv;
typedef int16 intv;
#define LANES ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#define VLOAD vload16
#define VSTORE vstore16
#define CONVERT_FLOATV convert_float16
#else
#error "VW must be 1, 2, 4, 8 or 16"
#endif

/* Feature maps of linear attention: 0 none, 1 elu(x) + 1, 2 relu. */
float bench_feature(float x, int map);
float bench_feature(float x, int map) {
  if (map == 1)
    return x > 0.0f ? x + 1.0f : exp(x);
  if (map == 2)
    return fmax(x, 0.0f);
  return x;
}

__kernel void float_to_float(__global const float *src, __global float *dst,
                             uint n, int map) {
  uint i = get_global_id(0);
  if (i < n)
    dst[i] = bench_feature(src[i], map);
}

/* vload_half and vstore_half work without cl_khr_fp16. */
__kernel void half_to_float(__global const half *src, __global float *dst,
                            uint n, int map) {
  uint i = get_global_id(0);
  if (i < n)
    dst[i] = bench_feature(vload_half(i, src), map);
}

__kernel void float_to_half(__global const float *src, __global half *dst,
                            uint n) {
  uint i = get_global_id(0);
  if (i < n)
    vstore_half(src[i], i, dst);
}

/* bfloat16 is the upper half of a float; stores round to nearest even. */
__kernel void bf16_to_float(__global const ushort *src, __global float *dst,
                            uint n, int map) {
  uint i = get_global_id(0);
  if (i < n)
    dst[i] = bench_feature(as_float((uint)src[i] << 16), map);
}

__kernel void float_to_bf16(__global const float *src, __global ushort *dst,
                            uint n) {
  uint i = get_global_id(0);
  if (i < n) {
    uint u = as_uint(src[i]);
    dst[i] = isnan(src[i]) ? (ushort)((u >> 16) | 0x40u)
                           : (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
}

/* Keys visible to query i: all, or j <= i + Nk - Nq when causal. */
int bench_visible(uint i, uint nq, uint nk, int causal);
int bench_visible(uint i, uint nq, uint nk, int causal) {
  if (!causal)
    return (int)nk;
  long last = (long)i + (long)nk - (long)nq;
  if (last < 0)
    return 0;
  return last >= (long)nk ? (int)nk : (int)last + 1;
}

/* Horizontal maximum and sum of a vector. */
float bench_hmax(floatv v);
float bench_hmax(floatv v) {
  float a[VW];
  VSTORE(v, 0, a);
  float r = a[0];
  for (int i = 1; i < VW; i++)
    r = fmax(r, a[i]);
  return r;
}

float bench_hsum(floatv v);
float bench_hsum(floatv v) {
  float a[VW];
  VSTORE(v, 0, a);
  float r = a[0];
  for (int i = 1; i < VW; i++)
    r += a[i];
  return r;
}

/* The maximum or sum of x over the work-group; every work-item gets it.
 * Every work-item calls it, and the loop's trip count is the same for all,
 * so the barriers stay in uniform control flow. */
float bench_reduce(__local float *red, float x, int is_max);
float bench_reduce(__local float *red, float x, int is_max) {
  uint lid = get_local_id(0);
  red[lid] = x;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint half_n = WG / 2; half_n > 0; half_n >>= 1) {
    if (lid < half_n) {
      float other = red[lid + half_n];
      red[lid] = is_max ? fmax(red[lid], other) : red[lid] + other;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  float r = red[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}

/* Softmax of a row of (already scaled) scores over its visible keys; masked
 * entries and rows with no visible key become 0. Three passes: the maximum,
 * the exponentials (stored) and their sum, the division. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
rows_softmax(__global float *s, uint nq, uint nk, int causal) {
  __local float red[WG];
  uint lid = get_local_id(0);
  size_t row = get_group_id(0);
  __global float *x = s + row * nk;
  int nvis = bench_visible((uint)(row % nq), nq, nk, causal);
  uint nvec = nk / VW;
  uint tail = nvec * VW;
  floatv mv = -INFINITY;
  for (uint c = lid; c < nvec && (int)(c * VW) < nvis; c += WG) {
    intv idx = (int)(c * VW) + LANES;
    mv = fmax(mv, select((floatv)(-INFINITY), VLOAD(c, x), idx < nvis));
  }
  float m = bench_hmax(mv);
  for (uint j = tail + lid; (int)j < nvis; j += WG)
    m = fmax(m, x[j]);
  m = bench_reduce(red, m, 1);
  floatv lv = 0.0f;
  for (uint c = lid; c < nvec; c += WG) {
    floatv e = 0.0f;
    if ((int)(c * VW) < nvis) {
      intv idx = (int)(c * VW) + LANES;
      e = select((floatv)0.0f, exp(VLOAD(c, x) - m), idx < nvis);
    }
    VSTORE(e, c, x);
    lv += e;
  }
  float l = bench_hsum(lv);
  for (uint j = tail + lid; j < nk; j += WG) {
    float e = (int)j < nvis ? exp(x[j] - m) : 0.0f;
    x[j] = e;
    l += e;
  }
  l = bench_reduce(red, l, 0);
  float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (uint c = lid; c < nvec && (int)(c * VW) < nvis; c += WG)
    VSTORE(VLOAD(c, x) * inv, c, x);
  for (uint j = tail + lid; (int)j < nvis; j += WG)
    x[j] *= inv;
}

/* sigmoid(score + bias) on visible keys, 0 elsewhere; no normalisation. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
rows_sigmoid(__global float *s, uint nq, uint nk, int causal, float bias) {
  uint lid = get_local_id(0);
  size_t row = get_group_id(0);
  __global float *x = s + row * nk;
  int nvis = bench_visible((uint)(row % nq), nq, nk, causal);
  uint nvec = nk / VW;
  for (uint c = lid; c < nvec; c += WG) {
    floatv p = 0.0f;
    if ((int)(c * VW) < nvis) {
      intv idx = (int)(c * VW) + LANES;
      p = select((floatv)0.0f, 1.0f / (1.0f + exp(-(VLOAD(c, x) + bias))),
                 idx < nvis);
    }
    VSTORE(p, c, x);
  }
  for (uint j = nvec * VW + lid; j < nk; j += WG)
    x[j] = (int)j < nvis ? 1.0f / (1.0f + exp(-(x[j] + bias))) : 0.0f;
}

/* Linear attention in its quadratic form: the scores phi(q_i).phi(k_j) over
 * visible keys, divided by their sum + eps. cosFormer (cos_m > 0) multiplies
 * score (i, j) by cos(t_i - t_j), t_i = (pi/2) (i + 1) / M, and divides by
 * max(sum, eps) instead. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
rows_linear(__global float *s, uint nq, uint nk, int causal, float eps,
            float cos_m) {
  __local float red[WG];
  uint lid = get_local_id(0);
  size_t row = get_group_id(0);
  __global float *x = s + row * nk;
  uint i = (uint)(row % nq);
  int nvis = bench_visible(i, nq, nk, causal);
  uint nvec = nk / VW;
  uint tail = nvec * VW;
  float step = cos_m > 0.0f ? M_PI_2_F / cos_m : 0.0f;
  float ti = step * (float)(i + 1);
  floatv sv = 0.0f;
  for (uint c = lid; c < nvec; c += WG) {
    floatv w = 0.0f;
    if ((int)(c * VW) < nvis) {
      intv idx = (int)(c * VW) + LANES;
      w = VLOAD(c, x);
      if (cos_m > 0.0f)
        w *= cos(ti - step * CONVERT_FLOATV(idx + 1));
      w = select((floatv)0.0f, w, idx < nvis);
    }
    VSTORE(w, c, x);
    sv += w;
  }
  float sum = bench_hsum(sv);
  for (uint j = tail + lid; j < nk; j += WG) {
    float w = 0.0f;
    if ((int)j < nvis) {
      w = x[j];
      if (cos_m > 0.0f)
        w *= cos(ti - step * (float)(j + 1));
    }
    x[j] = w;
    sum += w;
  }
  sum = bench_reduce(red, sum, 0);
  float inv = 1.0f / (cos_m > 0.0f ? fmax(sum, eps) : sum + eps);
  for (uint c = lid; c < nvec && (int)(c * VW) < nvis; c += WG)
    VSTORE(VLOAD(c, x) * inv, c, x);
  for (uint j = tail + lid; (int)j < nvis; j += WG)
    x[j] *= inv;
}
