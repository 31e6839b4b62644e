/*
 * fuzz_tiles.c - libFuzzer harness for tile specs ("SHAPE=cpu,BLOCK_M=8"):
 * the shape choice, the NAME=VALUE parser and each family's checks, for every
 * variant on CPU- and GPU-like device profiles.
 *
 * Input: five bytes (variant, causal and dtype; device kind; local memory;
 * D; Dv), then the spec.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_reader r = {data, size};
  uint8_t flags = fuzz_u8(&r), kind = fuzz_u8(&r), mem = fuzz_u8(&r);
  clattn_desc desc;
  clattn_desc_init(&desc, (clattn_variant)(flags & 3));
  desc.causal = (flags >> 2) & 1;
  desc.dtype = (clattn_dtype)((flags >> 3) & 1);
  desc.heads_q = 2;
  desc.seq_q = 33;
  desc.seq_k = 47;
  desc.dim = 1 + (size_t)fuzz_u8(&r);
  desc.dim_v = 1 + (size_t)fuzz_u8(&r);
  char *spec = fuzz_rest(&r);

  struct clattn_context ctx;
  fuzz_context(&ctx, kind, mem);
  struct clattn_plan plan;
  memset(&plan, 0, sizeof plan);
  plan.ctx = &ctx;
  FUZZ_CHECK(clattn__problem_resolve(&ctx, &desc, &plan.p) == CLATTN_SUCCESS);
  plan.tiles.origin = "override";
  /* The family a plan would use: a spec naming SHAPE=decode sends softmax
   * and sigmoid to decode whatever their Nq. */
  const clattn__family *fam = clattn__family_of(&plan.p, spec);
  clattn_status st = fam->choose(&plan, spec);
  FUZZ_CHECK(st == CLATTN_SUCCESS || st == CLATTN_ERROR_INVALID_DESCRIPTOR);
  if (st == CLATTN_SUCCESS) {
    /* What a plan would build with: bounded values and a known shape. */
    FUZZ_CHECK(plan.shape_id >= CLATTN__SHAPE_ROW &&
               plan.shape_id <= CLATTN__SHAPE_DECODE);
    FUZZ_CHECK((plan.shape_id == CLATTN__SHAPE_DECODE) ==
               (fam == &clattn__decode_family));
    FUZZ_CHECK(plan.tiles.count <= CLATTN_MAX_TILES);
    for (size_t i = 0; i < plan.tiles.count; i++)
      FUZZ_CHECK(plan.tiles.values[i] >= 0 && plan.tiles.values[i] <= 4096);
    int vec = clattn__tiles_get(&plan.tiles, "VEC");
    FUZZ_CHECK(vec == 1 || vec == 2 || vec == 4 || vec == 8 || vec == 16);
    FUZZ_CHECK(clattn__tiles_get(&plan.tiles, fam == &clattn__decode_family
                                                  ? "ROWS"
                                                  : "BLOCK_M") >= 1);
    char options[512] = "";
    clattn__tiles_options(&plan.tiles, options, sizeof options);
    FUZZ_CHECK(memchr(options, '\0', sizeof options) != NULL);
  } else {
    FUZZ_CHECK(ctx.error && ctx.error[0]);
  }
  fuzz_context_clear(&ctx);

  /* The public check agrees, and leaves the context's message alone. */
  char msg[256];
  desc.tiles = spec;
  clattn_status st2 = clattn_desc_check(&ctx, &desc, msg, sizeof msg);
  FUZZ_CHECK(st2 == st);
  FUZZ_CHECK((st2 == CLATTN_SUCCESS) == (msg[0] == '\0'));
  FUZZ_CHECK(ctx.error == NULL);
  free(spec);
  return 0;
}
