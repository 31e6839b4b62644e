/*
 * keys.cl - vectors of keys for the cpu shape of the softmax and sigmoid
 * kernels, forward (flash.cl) and backward (flash_bwd.cl): one float vector
 * holds KEYS_VEC consecutive keys' scores (16 on 16-wide devices, 8 on
 * 8-wide ones), with loads, stores, horizontal reductions and a vectorised
 * exp2. Compiled between common.cl and the kernel file; empty unless
 * SHAPE is 1 (cpu).
 */

#if SHAPE == 1

#ifndef KEYS_VEC
#define KEYS_VEC 16 // keys per vector
#endif

#if KEYS_VEC == 16
typedef float16 floatk;
typedef int16 intk;
#define KIOTA ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#define KLOAD(p) vload16(0, (p))
#define KSTORE(x, p) vstore16((x), 0, (p))
#define KSUM(x) clattn_hsum8((x).lo + (x).hi)
#define KMAX(x) clattn_hmax8(fmax((x).lo, (x).hi))
#define KCONVERT_INT(x) convert_int16(x)
#define KAS_FLOAT(x) as_float16(x)
#define KAS_INT(x) as_int16(x)
#elif KEYS_VEC == 8
typedef float8 floatk;
typedef int8 intk;
#define KIOTA ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#define KLOAD(p) vload8(0, (p))
#define KSTORE(x, p) vstore8((x), 0, (p))
#define KSUM(x) clattn_hsum8(x)
#define KMAX(x) clattn_hmax8(x)
#define KCONVERT_INT(x) convert_int8(x)
#define KAS_FLOAT(x) as_float8(x)
#define KAS_INT(x) as_int8(x)
#else
#error KEYS_VEC must be 8 or 16
#endif

/* Keys of a block, a multiple of one score micro-tile's keys (host checks). */
#define KTILE (S_VECS * KEYS_VEC)

float clattn_hmax2(float2 x) { return fmax(x.x, x.y); }
float clattn_hmax4(float4 x) { return clattn_hmax2(fmax(x.lo, x.hi)); }
float clattn_hmax8(float8 x) { return clattn_hmax4(fmax(x.lo, x.hi)); }

/* 2^x for a vector of keys: 2^round(x) from the exponent bits times a
 * degree-6 polynomial for 2^f, |f| <= 1/2 (Cephes exp2f; relative error
 * about 2e-7). Inputs below -126 give exactly 0 (so do -inf scores), inputs
 * above 126 give 2^126. The runtime's exp2 handles every case with slower
 * paths; this one is a handful of vector FMAs. */
floatk clattn_exp2k(const floatk x) {
  const floatk xc = clamp(x, -126.0f, 126.0f);
  const floatk n = rint(xc);
  const floatk f = xc - n;
  floatk p = (floatk)(1.535336188319500e-4f);
  p = fma(p, f, (floatk)(1.339887440266574e-3f));
  p = fma(p, f, (floatk)(9.618437357674640e-3f));
  p = fma(p, f, (floatk)(5.550332471162809e-2f));
  p = fma(p, f, (floatk)(2.402264791363012e-1f));
  p = fma(p, f, (floatk)(6.931472028550421e-1f));
  p = fma(p, f, (floatk)(1.0f));
  const floatk scale = KAS_FLOAT((KCONVERT_INT(n) + 127) << 23);
  return select(p * scale, (floatk)(0.0f), x < -126.0f);
}

/* The sigmoid in the log2 domain of x + bias, 1 / (1 + 2^-(x + bias)), with
 * one division where 1 / (1 + clattn_exp2k(-x - bias)) takes two:
 * 2^-(x + bias) = 2^n e^y for n = round(-x - bias) and y = (-x - bias - n)
 * ln 2, and e^y = P(y) / P(-y) by its [3/3] Pade approximant,
 * P(y) = 1 + y/2 + y^2/10 + y^3/120 (relative error below 1e-8 for
 * |y| <= ln(2)/2), so the sigmoid is P(-y) / (P(-y) + 2^n P(y)). The
 * exponent is clamped to +-126: 1 above 126, 1 / (1 + 2^126) below -126, as
 * through clattn_exp2k. n is rounded by adding 1.5 * 2^23 + 127, which
 * leaves n + 127 in the low bits of the sum: shifted into the exponent
 * field they are 2^n, with no conversion to integer. */
floatk clattn_sigmoid2k(const floatk x, const float bias) {
  const floatk t = clamp((floatk)(-bias) - x, -126.0f, 126.0f);
  const floatk r = t + 12583039.0f;
  const floatk f = t - (r - 12583039.0f);
  const floatk f2 = f * f;
  /* Even and odd parts of P in f = y / ln 2: ln2^2/10, ln2^3/120, ln2/2. */
  const floatk even = fma(f2, (floatk)(4.8045301e-2f), (floatk)(1.0f));
  const floatk odd =
      f * fma(f2, (floatk)(2.7752055e-3f), (floatk)(3.4657359e-1f));
  const floatk scale = KAS_FLOAT(KAS_INT(r) << 23);
  const floatk den = even - odd;
  return den / fma(scale, even + odd, den);
}

#endif /* SHAPE == 1 */
