/*
 * fuzz_tune.c - libFuzzer harness for the tuning-file parser: the input is
 * the file, read from memory, for a fixed device and problem; a spec it finds
 * then goes through the tile checks as a plan would send it.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0; /* fmemopen refuses an empty buffer */
  FILE *f = fmemopen((void *)data, size, "r");
  if (!f)
    return 0;
  struct clattn_context ctx;
  fuzz_context(&ctx, 1, 64);
  snprintf(ctx.profile.name, sizeof ctx.profile.name, "fuzzdev");
  clattn_desc desc;
  clattn_desc_init(&desc, CLATTN_VARIANT_SOFTMAX);
  desc.seq_q = desc.seq_k = 1024;
  desc.dim = 64;
  struct clattn_plan plan;
  memset(&plan, 0, sizeof plan);
  plan.ctx = &ctx;
  FUZZ_CHECK(clattn__problem_resolve(&ctx, &desc, &plan.p) == CLATTN_SUCCESS);

  char spec[512], warn[512];
  memset(spec, 'x', sizeof spec);
  int found = clattn__tune_scan(f, "fuzz.txt", &ctx.profile, &plan.p, spec,
                                sizeof spec, warn, sizeof warn);
  fclose(f);
  FUZZ_CHECK(found == 0 || found == 1);
  FUZZ_CHECK(memchr(warn, '\0', sizeof warn) != NULL);
  /* A file that does not parse gives nothing and says so. */
  FUZZ_CHECK(!(found && warn[0]));
  if (found) {
    FUZZ_CHECK(memchr(spec, '\0', sizeof spec) != NULL && spec[0]);
    plan.tiles.origin = "tuning file";
    clattn_status st = clattn__flash_family.choose(&plan, spec);
    FUZZ_CHECK(st == CLATTN_SUCCESS || st == CLATTN_ERROR_INVALID_DESCRIPTOR);
    FUZZ_CHECK(st == CLATTN_SUCCESS || (ctx.error && ctx.error[0]));
  }
  fuzz_context_clear(&ctx);
  return 0;
}
