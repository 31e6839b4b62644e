/*
 * fuzz_desc.c - libFuzzer harness for descriptor validation: bytes become
 * the fields of a clattn_desc (extents up to SIZE_MAX, any float bit
 * pattern, out-of-range enums, a tile spec, windows, a softcap, ALiBi
 * slopes, a score or mask mod), checked by clattn_desc_check
 * without a device and against a CPU- or GPU-like profile.
 *
 * Properties: the status is success or an invalid descriptor, with a message
 * exactly when it fails; a device only adds refusals; and every byte count
 * of an accepted problem fits in size_t.
 */
#include "fuzz_common.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* a * b, or 0 when it overflows (no factor here is 0 once validated). */
static size_t mul(size_t a, size_t b) {
  size_t r;
  return __builtin_mul_overflow(a, b, &r) ? 0 : r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_reader r = {data, size};
  clattn_desc d;
  uint8_t head = fuzz_u8(&r);
  clattn_desc_init(&d, (clattn_variant)(head & 3));
  /* Out-of-range enums now and then. */
  if (head & 0x80)
    d.variant = (clattn_variant)(int8_t)fuzz_u8(&r);
  d.dtype = (clattn_dtype)(int8_t)(head & 0x40 ? fuzz_u8(&r) : (head >> 2) & 1);
  d.causal = (head >> 3) & 1;
  d.batch = fuzz_extent(&r);
  d.heads_q = fuzz_extent(&r);
  d.heads_kv = fuzz_extent(&r);
  d.seq_q = fuzz_extent(&r);
  d.seq_k = fuzz_extent(&r);
  d.dim = fuzz_extent(&r);
  d.dim_v = fuzz_extent(&r);
  uint8_t opt = fuzz_u8(&r);
  if (opt & 1)
    d.scale = fuzz_f32(&r);
  if (opt & 2) {
    d.has_bias = 1;
    d.bias = fuzz_f32(&r);
  }
  if (opt & 4)
    d.feature_map = (clattn_feature_map)(int8_t)fuzz_u8(&r);
  if (opt & 8)
    d.eps = fuzz_f32(&r);
  if (opt & 16)
    d.cos_m = fuzz_f32(&r);
  /* The score pipeline: windows, softcap, slopes of any bit pattern, and
   * the rest of the input as a tile spec or as a mod. */
  float slopes[64];
  if (opt & 64) {
    d.window_left = (int8_t)fuzz_u8(&r);
    d.window_right = (int8_t)fuzz_u8(&r);
    d.softcap = fuzz_f32(&r);
  }
  if ((opt & 128) && d.heads_q <= 64) {
    for (size_t h = 0; h < d.heads_q; h++)
      slopes[h] = fuzz_f32(&r);
    d.alibi_slopes = slopes;
  }
  uint8_t kind = fuzz_u8(&r), mem = fuzz_u8(&r), rest_as = fuzz_u8(&r);
  char *tiles = NULL;
  if (opt & 32) {
    tiles = fuzz_rest(&r);
    if (rest_as % 3 == 0)
      d.tiles = tiles;
    else if (rest_as % 3 == 1)
      d.mask_mod = tiles;
    else
      d.score_mod = tiles;
  }

  char msg[512], msg_dev[512];
  clattn_status st = clattn_desc_check(NULL, &d, msg, sizeof msg);
  FUZZ_CHECK(st == CLATTN_SUCCESS || st == CLATTN_ERROR_INVALID_DESCRIPTOR);
  FUZZ_CHECK((st == CLATTN_SUCCESS) == (msg[0] == '\0'));

  struct clattn_context ctx;
  fuzz_context(&ctx, kind, mem);
  clattn_status st_dev = clattn_desc_check(&ctx, &d, msg_dev, sizeof msg_dev);
  /* With a device, a workspace past its largest allocation is refused too. */
  FUZZ_CHECK(st_dev == CLATTN_SUCCESS ||
             st_dev == CLATTN_ERROR_INVALID_DESCRIPTOR ||
             st_dev == CLATTN_ERROR_OUT_OF_RESOURCES);
  FUZZ_CHECK((st_dev == CLATTN_SUCCESS) == (msg_dev[0] == '\0'));
  FUZZ_CHECK(ctx.error == NULL);
  /* The device is checked after the fields, so a refusal without it is the
   * same refusal with it. */
  if (st != CLATTN_SUCCESS)
    FUZZ_CHECK(st_dev == st && strcmp(msg, msg_dev) == 0);

  if (st == CLATTN_SUCCESS) {
    clattn__problem p;
    FUZZ_CHECK(clattn__problem_resolve(&ctx, &d, &p) == CLATTN_SUCCESS);
    FUZZ_CHECK(p.dim >= 1 && p.dim <= CLATTN_MAX_DIM && p.dim_v >= 1 &&
               p.dim_v <= CLATTN_MAX_DIM);
    FUZZ_CHECK(p.heads_kv >= 1 && p.heads_q % p.heads_kv == 0);
    FUZZ_CHECK(isfinite(p.scale) && p.scale > 0.0f);
    FUZZ_CHECK(isfinite(p.eps) && p.eps > 0.0f);
    FUZZ_CHECK(isfinite(p.cos_m) && p.cos_m > 0.0f);
    /* The run checks buffers against these; none may wrap. */
    size_t bh = mul(p.batch, p.heads_q), bhkv = mul(p.batch, p.heads_kv);
    FUZZ_CHECK(bh && bhkv);
    FUZZ_CHECK(mul(mul(mul(bh, p.seq_q), p.dim), 4));
    FUZZ_CHECK(mul(mul(mul(bh, p.seq_q), p.dim_v), 4));
    FUZZ_CHECK(mul(mul(mul(bhkv, p.seq_k), p.dim), 4));
    FUZZ_CHECK(mul(mul(mul(bhkv, p.seq_k), p.dim_v), 4));
    FUZZ_CHECK(mul(mul(bh, p.seq_q), 4));
  }
  fuzz_context_clear(&ctx);
  free(tiles);
  return 0;
}
