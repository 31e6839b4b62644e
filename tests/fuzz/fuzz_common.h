/*
 * fuzz_common.h - what the libFuzzer harnesses share: a reader that takes
 * fields from the input bytes, and a context that holds only a device
 * profile, so that validation and tile choice run without an OpenCL device
 * (they read the profile and nothing else).
 */
#ifndef CLATTN_FUZZ_COMMON_H
#define CLATTN_FUZZ_COMMON_H

#include "plan.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Crashes (and so reports) when a property fails, also in builds with
 * NDEBUG. */
#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__,      \
              #cond);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

typedef struct fuzz_reader {
  const uint8_t *p;
  size_t n;
} fuzz_reader;

/* The next byte, 0 once the input is used up. */
static inline uint8_t fuzz_u8(fuzz_reader *r) {
  if (r->n == 0)
    return 0;
  r->n--;
  return *r->p++;
}

static inline uint64_t fuzz_u64(fuzz_reader *r) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)fuzz_u8(r) << (8 * i);
  return v;
}

static inline float fuzz_f32(fuzz_reader *r) {
  uint32_t bits = 0;
  for (int i = 0; i < 4; i++)
    bits |= (uint32_t)fuzz_u8(r) << (8 * i);
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* An extent: one byte below 0xf0 is the value itself (where most of the
 * interesting shapes are); 0xf0 and above take eight raw bytes, for the
 * overflow boundaries. */
static inline size_t fuzz_extent(fuzz_reader *r) {
  uint8_t b = fuzz_u8(r);
  return b < 0xf0 ? (size_t)b : (size_t)fuzz_u64(r);
}

/* The rest of the input as a terminated string (heap; free it). */
static inline char *fuzz_rest(fuzz_reader *r) {
  char *s = malloc(r->n + 1);
  if (!s)
    abort();
  memcpy(s, r->p, r->n);
  s[r->n] = '\0';
  r->p += r->n;
  r->n = 0;
  return s;
}

/* A device profile from two bytes: CPU or GPU, and local memory and
 * work-group limits from tiny to large. */
static inline void fuzz_context(struct clattn_context *ctx, uint8_t kind,
                                uint8_t mem) {
  memset(ctx, 0, sizeof *ctx);
  clattn_device_profile *d = &ctx->profile;
  snprintf(d->name, sizeof d->name, "%s",
           kind & 1 ? "fuzz-cpu-avx512" : "fuzz-gpu");
  snprintf(d->vendor, sizeof d->vendor, "fuzz");
  d->is_cpu = kind & 1;
  d->is_gpu = !d->is_cpu;
  d->type = d->is_cpu ? CL_DEVICE_TYPE_CPU : CL_DEVICE_TYPE_GPU;
  d->compute_units = 1u + (kind >> 4);
  d->max_work_group_size = (size_t)1 << ((kind >> 1) & 7) << 3;
  d->local_mem_size = (cl_ulong)mem << ((mem & 7) + 4);
  d->local_mem_is_real = !d->is_cpu;
  d->max_mem_alloc_size = (cl_ulong)1 << 32;
  d->global_mem_size = (cl_ulong)1 << 34;
  d->preferred_vector_width_float = d->is_cpu ? 16 : 1;
  d->native_vector_width_float = d->preferred_vector_width_float;
  d->c_major = 1;
  d->c_minor = 2;
  ctx->has_profile = 1;
}

/* Frees the message a failing call left. */
static inline void fuzz_context_clear(struct clattn_context *ctx) {
  free(ctx->error);
  ctx->error = NULL;
}

#endif /* CLATTN_FUZZ_COMMON_H */
