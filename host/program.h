/*
 * program.h - the embedded kernel sources and the per-context cache of built
 * programs.
 */
#ifndef CLATTN_PROGRAM_H
#define CLATTN_PROGRAM_H

#include "internal.h"

/* One embedded kernel file; the generated table ends with a NULL name. */
struct clattn__kernel_source {
  const char *name;
  const char *text;
  size_t size;
};

extern const struct clattn__kernel_source clattn__kernel_sources[];

/* Gets the program built from the named files (concatenated in order) with
 * the given options, building it on first use. The program stays owned by
 * the context's cache; kernels made from it hold their own reference. On a
 * build failure the message carries the build log. Thread-safe. */
clattn_status clattn__program_get(clattn_context_t ctx,
                                  const char *const *files, size_t nfiles,
                                  const char *options, cl_program *out);

/* The same with `prelude` (NULL: none), OpenCL C text put before the files
 * and made part of the program's key: the score pipeline's user mods. */
clattn_status clattn__program_get_prelude(clattn_context_t ctx,
                                          const char *prelude,
                                          const char *const *files,
                                          size_t nfiles, const char *options,
                                          cl_program *out);

/* The build log of a program from clattn__program_get when its build from
 * source succeeded with warnings, else NULL (also for programs loaded from
 * the disk cache, whose build logs are empty). Valid while the context
 * lives. Thread-safe. */
const char *clattn__program_warnings(clattn_context_t ctx, cl_program program);

/* Releases every cached program of the context. */
void clattn__programs_release(clattn_context_t ctx);

#endif /* CLATTN_PROGRAM_H */
