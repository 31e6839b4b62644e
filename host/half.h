/*
 * half.h - IEEE 754 binary16 conversion on the host, for the host-pointer
 * convenience call (the device does its own with vload_half/vstore_half).
 */
#ifndef CLATTN_HALF_H
#define CLATTN_HALF_H

#include <stddef.h>
#include <stdint.h>

/* Round to nearest even; overflow gives infinity; NaN stays NaN. */
void clattn__floats_to_halves(const float *src, uint16_t *dst, size_t n);
void clattn__halves_to_floats(const uint16_t *src, float *dst, size_t n);

#endif /* CLATTN_HALF_H */
