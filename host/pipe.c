/*
 * pipe.c - the host side of the score pipeline (cl/score.cl): its build
 * options, the user mods as a program prelude, and its kernel arguments.
 */
#include "plan.h"
#include "program.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int clattn__pipe_active(const clattn__problem *p) {
  return p->window_left >= 0 || (p->window_right >= 0 && !p->causal) ||
         p->softcap > 0.0f || p->alibi || p->score_mod || p->mask_mod;
}

static void pipe_options(const clattn__problem *p, char *buf, size_t size) {
  size_t used = strlen(buf);
  if (used < size)
    snprintf(buf + used, size - used,
             " -D PIPE_SOFTCAP=%d -D PIPE_ALIBI=%d -D PIPE_BIAS_SEQ=%d",
             p->softcap > 0.0f, p->alibi,
             p->variant == CLATTN_VARIANT_SIGMOID && p->bias_default);
}

/* The OpenCL C text put before a program's files: the user's mods as
 * functions clattn_score_mod and clattn_mask_mod, or NULL when there are
 * none (a heap string). *out_of_memory is set when allocation failed. */
static char *pipe_prelude(const clattn__problem *p, int *out_of_memory) {
  static const char score_fmt[] =
      "float clattn_score_mod(float score, int b, int h, int i, int j) {\n"
      "  (void)score; (void)b; (void)h; (void)i; (void)j;\n"
      "  return (float)(%s);\n"
      "}\n"
      "#define CLATTN_SCORE_MOD 1\n";
  static const char mask_fmt[] =
      "int clattn_mask_mod(int b, int h, int i, int j) {\n"
      "  (void)b; (void)h; (void)i; (void)j;\n"
      "  return (%s) ? 1 : 0;\n"
      "}\n"
      "#define CLATTN_MASK_MOD 1\n";
  *out_of_memory = 0;
  if (!p->score_mod && !p->mask_mod)
    return NULL;
  size_t n = 1;
  if (p->score_mod)
    n += sizeof score_fmt + strlen(p->score_mod);
  if (p->mask_mod)
    n += sizeof mask_fmt + strlen(p->mask_mod);
  char *text = malloc(n);
  if (!text) {
    *out_of_memory = 1;
    return NULL;
  }
  size_t used = 0;
  text[0] = '\0';
  if (p->score_mod)
    used += (size_t)snprintf(text, n, score_fmt, p->score_mod);
  if (p->mask_mod)
    snprintf(text + used, n - used, mask_fmt, p->mask_mod);
  return text;
}

clattn_status clattn__pipe_program(clattn_plan_t plan, const char *const *files,
                                   size_t nfiles, char *options, size_t size,
                                   cl_program *out) {
  pipe_options(&plan->p, options, size);
  int oom = 0;
  char *prelude = pipe_prelude(&plan->p, &oom);
  if (oom)
    return clattn__fail(plan->ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                        "out of memory assembling the score mods");
  clattn_status st = clattn__program_get_prelude(plan->ctx, prelude, files,
                                                 nfiles, options, out);
  free(prelude);
  return st;
}

cl_int clattn__pipe_args(clattn_plan_t plan, cl_kernel kern, cl_uint *a,
                         cl_mem lens_q, cl_mem lens_k) {
  const clattn__problem *p = &plan->p;
  cl_int err = CL_SUCCESS;
  cl_int left = p->window_left, right = p->window_right;
  cl_float cap = p->softcap * 1.4426950408889634f;
  CLATTN_SET_ARG(err, kern, (*a)++, sizeof(cl_mem), lens_q ? &lens_q : NULL);
  CLATTN_SET_ARG(err, kern, (*a)++, sizeof(cl_mem), lens_k ? &lens_k : NULL);
  CLATTN_SET_ARG(err, kern, (*a)++, sizeof(cl_mem),
                 plan->alibi ? &plan->alibi : NULL);
  CLATTN_SET_ARG(err, kern, (*a)++, sizeof(cl_int), &left);
  CLATTN_SET_ARG(err, kern, (*a)++, sizeof(cl_int), &right);
  CLATTN_SET_ARG(err, kern, (*a)++, sizeof(cl_float), &cap);
  CLATTN_SET_ARG(err, kern, (*a)++, sizeof(cl_mem),
                 plan->block_mask ? &plan->block_mask : NULL);
  return err;
}
