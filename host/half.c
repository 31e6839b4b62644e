/*
 * half.c - float32 <-> binary16 and bfloat16 conversion. Written here rather
 * than taken from a library because it is short and the OpenCL headers'
 * cl_half.h is not present in every OpenCL SDK.
 */
#include "internal.h"

#include <stdint.h>
#include <string.h>

static uint16_t float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u) /* inf or NaN */
    return (uint16_t)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0));
  if (mag >= 0x477ff000u) /* rounds to >= 65520: overflow */
    return (uint16_t)(sign | 0x7c00u);
  if (mag < 0x38800000u) { /* below the smallest normal half: subnormal */
    if (mag < 0x33000000u) /* below half of the smallest subnormal */
      return (uint16_t)sign;
    uint32_t e = mag >> 23;
    uint32_t m = (mag & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14 + (112 - e) + 1 - 1 */
    uint32_t h = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1u)))
      h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((mag - 0x38000000u) >> 13);
  uint32_t rem = mag & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
    h++; /* a carry into the exponent is the right result */
  return (uint16_t)(sign | h);
}

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x3ffu;
  uint32_t x;
  if (e == 0x1f) {
    x = sign | 0x7f800000u | (m << 13);
  } else if (e == 0) {
    if (m == 0) {
      x = sign;
    } else { /* subnormal: normalise */
      e = 113;
      while (!(m & 0x400u)) {
        m <<= 1;
        e--;
      }
      x = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
  } else {
    x = sign | ((e + 112) << 23) | (m << 13);
  }
  float f;
  memcpy(&f, &x, sizeof f);
  return f;
}

CLATTN_API void clattn_f32_to_f16(const float *src, cl_half *dst, size_t n) {
  for (size_t i = 0; i < n; i++)
    dst[i] = float_to_half(src[i]);
}

CLATTN_API void clattn_f16_to_f32(const cl_half *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++)
    dst[i] = half_to_float(src[i]);
}

/* bfloat16 is the upper half of a float: rounding to nearest even adds
 * 0x7fff plus the lowest kept bit, which carries into the exponent (up to
 * infinity) exactly when it should. NaN is kept quiet so that it cannot
 * round to infinity. */
static uint16_t float_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  if ((x & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t)((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

static float bf16_to_float(uint16_t b) {
  uint32_t x = (uint32_t)b << 16;
  float f;
  memcpy(&f, &x, sizeof f);
  return f;
}

CLATTN_API void clattn_f32_to_bf16(const float *src, cl_ushort *dst, size_t n) {
  for (size_t i = 0; i < n; i++)
    dst[i] = float_to_bf16(src[i]);
}

CLATTN_API void clattn_bf16_to_f32(const cl_ushort *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++)
    dst[i] = bf16_to_float(src[i]);
}

CLATTN_API size_t clattn_dtype_size(clattn_dtype dtype) {
  switch (dtype) {
  case CLATTN_DTYPE_F32:
    return 4;
  case CLATTN_DTYPE_F16:
  case CLATTN_DTYPE_BF16:
    return 2;
  }
  return 0;
}

CLATTN_API clattn_status clattn_convert_from_f32(clattn_dtype dtype,
                                                 const float *src, void *dst,
                                                 size_t n) {
  if (clattn_dtype_size(dtype) == 0 || (n > 0 && (!src || !dst)))
    return CLATTN_ERROR_INVALID_VALUE;
  if (dtype == CLATTN_DTYPE_F32 && n > 0)
    memmove(dst, src, n * sizeof(float));
  else if (dtype == CLATTN_DTYPE_F16)
    clattn_f32_to_f16(src, dst, n);
  else if (dtype == CLATTN_DTYPE_BF16)
    clattn_f32_to_bf16(src, dst, n);
  return CLATTN_SUCCESS;
}

CLATTN_API clattn_status clattn_convert_to_f32(clattn_dtype dtype,
                                               const void *src, float *dst,
                                               size_t n) {
  if (clattn_dtype_size(dtype) == 0 || (n > 0 && (!src || !dst)))
    return CLATTN_ERROR_INVALID_VALUE;
  if (dtype == CLATTN_DTYPE_F32 && n > 0)
    memmove(dst, src, n * sizeof(float));
  else if (dtype == CLATTN_DTYPE_F16)
    clattn_f16_to_f32(src, dst, n);
  else if (dtype == CLATTN_DTYPE_BF16)
    clattn_bf16_to_f32(src, dst, n);
  return CLATTN_SUCCESS;
}
