/*
 * program.c - assembling kernel sources, building them with clBuildProgram
 * and caching the programs per context.
 */
#include "program.h"
#include "cache.h"
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CLATTN_KERNEL_DIR
/* Development switch: kernels are read from the source tree at run time so
 * that a kernel edit needs no rebuild of the library. */
static char *read_kernel_file(const char *name, size_t *size) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", CLATTN_KERNEL_DIR, name);
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *buf = NULL;
  long n = -1;
  if (fseek(f, 0, SEEK_END) == 0)
    n = ftell(f);
  if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) {
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
      free(buf);
      buf = NULL;
    }
  }
  fclose(f);
  if (buf) {
    buf[n] = '\0';
    *size = (size_t)n;
  }
  return buf;
}
#endif

#ifndef CLATTN_KERNEL_DIR
static const struct clattn__kernel_source *find_source(const char *name) {
  for (const struct clattn__kernel_source *s = clattn__kernel_sources; s->name;
       s++) {
    if (strcmp(s->name, name) == 0)
      return s;
  }
  return NULL;
}
#endif

/* Concatenates the files into one heap string. */
static clattn_status assemble(clattn_context_t ctx, const char *prelude,
                              const char *const *files, size_t nfiles,
                              char **out) {
  clattn_status st = CLATTN_SUCCESS;
  char *text = NULL;
  size_t len = 0;
  if (prelude) {
    len = strlen(prelude);
    text = malloc(len + 2);
    if (!text)
      return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                          "out of memory assembling kernels");
    memcpy(text, prelude, len);
    text[len++] = '\n';
    text[len] = '\0';
  }
  for (size_t i = 0; i < nfiles; i++) {
    const char *src = NULL;
    size_t size = 0;
#ifdef CLATTN_KERNEL_DIR
    char *disk = read_kernel_file(files[i], &size);
    if (!disk) {
      st = clattn__fail(ctx, CLATTN_ERROR_IO, "cannot read kernel file %s/%s",
                        CLATTN_KERNEL_DIR, files[i]);
      goto cleanup;
    }
    src = disk;
#else
    const struct clattn__kernel_source *ks = find_source(files[i]);
    if (!ks) {
      st = clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "no embedded kernel file %s", files[i]);
      goto cleanup;
    }
    src = ks->text;
    size = ks->size;
#endif
    char *grown = realloc(text, len + size + 2);
    if (!grown) {
#ifdef CLATTN_KERNEL_DIR
      free(disk);
#endif
      st = clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                        "out of memory assembling kernels");
      goto cleanup;
    }
    text = grown;
    memcpy(text + len, src, size);
    len += size;
    text[len++] = '\n';
    text[len] = '\0';
#ifdef CLATTN_KERNEL_DIR
    free(disk);
#endif
  }
  *out = text;
  text = NULL;
cleanup:
  free(text);
  return st;
}

/* Puts the build log into the context's message. */
static clattn_status build_failed(clattn_context_t ctx, cl_program program,
                                  cl_int err, const char *options) {
  size_t need = 0;
  char *log = NULL;
  if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL,
                            &need) == CL_SUCCESS &&
      need > 0) {
    log = malloc(need + 1);
    if (log && clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG,
                                     need, log, NULL) == CL_SUCCESS)
      log[need] = '\0';
    else if (log)
      log[0] = '\0';
  }
  clattn_status st = clattn__fail(
      ctx, CLATTN_ERROR_BUILD_FAILED,
      "clBuildProgram failed: %s (%d) with options \"%s\"; build log:\n%s",
      clattn__cl_error_name(err), (int)err, options, log ? log : "(none)");
  free(log);
  return st;
}

/* NVIDIA's OpenCL compiler (drivers from 550 on) prints, for every kernel
 * of every program, "Warning: Function NAME is a kernel, so overriding
 * noinline attribute. The function may be inlined when called." It says
 * nothing about the source (no clattn kernel is noinline or called as a
 * function), so such lines are dropped before a log is taken for a
 * warning. Returns 1 when the line from s to its end is one. */
static int benign_line(const char *s, size_t len) {
  static const char mark[] = "is a kernel, so overriding noinline attribute";
  size_t m = sizeof mark - 1;
  for (size_t i = 0; i + m <= len; i++) {
    if (memcmp(s + i, mark, m) == 0)
      return 1;
  }
  return 0;
}

/* The log with its benign lines removed, in place. */
static void drop_benign_lines(char *log) {
  char *out = log;
  for (const char *s = log; *s;) {
    const char *end = strchr(s, '\n');
    size_t len = end ? (size_t)(end - s) + 1 : strlen(s);
    if (!benign_line(s, len)) {
      memmove(out, s, len);
      out += len;
    }
    s += len;
  }
  *out = '\0';
}

/* The build log when it holds a warning (runtimes print "warning:" or
 * "Warning"), else NULL; a heap string. */
static char *build_warnings(clattn_context_t ctx, cl_program program) {
  size_t need = 0;
  if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL,
                            &need) != CL_SUCCESS ||
      need < 2)
    return NULL;
  char *log = malloc(need + 1);
  if (!log || clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG,
                                    need, log, NULL) != CL_SUCCESS) {
    free(log);
    return NULL;
  }
  log[need] = '\0';
  drop_benign_lines(log);
  if (!clattn__contains_ci(log, "warning")) {
    free(log);
    return NULL;
  }
  return log;
}

static char *make_key(const char *prelude, const char *const *files,
                      size_t nfiles, const char *options) {
  size_t len = strlen(options) + 3 + (prelude ? strlen(prelude) : 0);
  for (size_t i = 0; i < nfiles; i++)
    len += strlen(files[i]) + 1;
  char *key = malloc(len);
  if (!key)
    return NULL;
  key[0] = '\0';
  if (prelude) {
    strcat(key, prelude);
    strcat(key, "\n");
  }
  for (size_t i = 0; i < nfiles; i++) {
    strcat(key, files[i]);
    strcat(key, "+");
  }
  strcat(key, "\n");
  strcat(key, options);
  return key;
}

/* The disk cache key: everything that can change the binary. */
static char *disk_key(clattn_context_t ctx, const char *options,
                      const char *text, size_t *len) {
  const clattn_device_profile *d = &ctx->profile;
  char *env = clattn__cache_compiler_env(d->is_cpu);
  if (!env)
    return NULL;
  const char *parts[] = {"clattn ",
                         clattn_version_string(),
                         "\ndevice ",
                         d->name,
                         "\nvendor ",
                         d->vendor,
                         "\ndriver ",
                         d->driver_version,
                         "\ndevice version ",
                         d->device_version,
                         "\nplatform ",
                         d->platform_name,
                         " ",
                         d->platform_version,
                         "\ncompiler environment\n",
                         env,
                         "options ",
                         options,
                         "\nsource\n",
                         text};
  size_t n = 0;
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
    n += strlen(parts[i]);
  char *key = malloc(n + 1);
  if (!key) {
    free(env);
    return NULL;
  }
  key[0] = '\0';
  char *p = key;
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    size_t m = strlen(parts[i]);
    memcpy(p, parts[i], m);
    p += m;
  }
  *p = '\0';
  *len = n;
  free(env);
  return key;
}

/* A program built from a cached binary, or NULL when there is none or the
 * runtime refuses it (then the caller builds from source). */
static cl_program load_cached(clattn_context_t ctx, const char *key,
                              size_t key_len, const char *options) {
  unsigned char *bin = NULL;
  size_t len = 0;
  if (!clattn__cache_load(key, key_len, &bin, &len))
    return NULL;
  cl_int status = CL_SUCCESS, err = CL_SUCCESS;
  const unsigned char *bins[] = {bin};
  cl_program program = clCreateProgramWithBinary(ctx->context, 1, &ctx->device,
                                                 &len, bins, &status, &err);
  free(bin);
  if (err != CL_SUCCESS || status != CL_SUCCESS) {
    if (program)
      clReleaseProgram(program);
    return NULL;
  }
  if (clBuildProgram(program, 1, &ctx->device, options, NULL, NULL) !=
      CL_SUCCESS) {
    clReleaseProgram(program);
    return NULL;
  }
  return program;
}

/* Saves a freshly built program's binary; failures only cost a rebuild. */
static void store_cached(clattn_context_t ctx, cl_program program,
                         const char *key, size_t key_len) {
  size_t len = 0;
  if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof len, &len,
                       NULL) != CL_SUCCESS ||
      len == 0)
    return;
  unsigned char *bin = malloc(len);
  unsigned char *bins[] = {bin};
  if (bin && clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bins, bins,
                              NULL) == CL_SUCCESS)
    clattn__cache_store(key, key_len, bin, len);
  free(bin);
  (void)ctx;
}

clattn_status clattn__program_get(clattn_context_t ctx,
                                  const char *const *files, size_t nfiles,
                                  const char *options, cl_program *out) {
  return clattn__program_get_prelude(ctx, NULL, files, nfiles, options, out);
}

clattn_status clattn__program_get_prelude(clattn_context_t ctx,
                                          const char *prelude,
                                          const char *const *files,
                                          size_t nfiles, const char *options,
                                          cl_program *out) {
  clattn_status st = CLATTN_SUCCESS;
  char *key = make_key(prelude, files, nfiles, options);
  char *text = NULL;
  char *dkey = NULL;
  cl_program program = NULL;
  char *warnings = NULL;
  struct clattn__program_entry *entry = NULL;
  if (!key)
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                        "out of memory building a program key");
  /* Holding the lock through the build means two threads asking for the
   * same program build it once. */
  mtx_lock(&ctx->programs_lock);
  for (entry = ctx->programs; entry; entry = entry->next) {
    if (strcmp(entry->key, key) == 0) {
      *out = entry->program;
      goto cleanup;
    }
  }
  CLATTN_CHECK(assemble(ctx, prelude, files, nfiles, &text));
  size_t dkey_len = 0;
  dkey = disk_key(ctx, options, text, &dkey_len);
  if (dkey)
    program = load_cached(ctx, dkey, dkey_len, options);
  if (!program) {
    cl_int err = CL_SUCCESS;
    const char *srcs[] = {text};
    program = clCreateProgramWithSource(ctx->context, 1, srcs, NULL, &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateProgramWithSource");
    err = clBuildProgram(program, 1, &ctx->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
      st = build_failed(ctx, program, err, options);
      goto cleanup;
    }
    warnings = build_warnings(ctx, program);
    if (warnings)
      clattn__log("kernel build warnings with options \"%s\":\n%s", options,
                  warnings);
    if (dkey)
      store_cached(ctx, program, dkey, dkey_len);
  }
  entry = malloc(sizeof *entry);
  if (!entry) {
    st = clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                      "out of memory caching a program");
    goto cleanup;
  }
  entry->key = key;
  entry->program = program;
  entry->warnings = warnings;
  warnings = NULL;
  entry->next = ctx->programs;
  ctx->programs = entry;
  *out = program;
  key = NULL;
  program = NULL;
cleanup:
  mtx_unlock(&ctx->programs_lock);
  if (program)
    clReleaseProgram(program);
  free(text);
  free(dkey);
  free(key);
  free(warnings);
  return st;
}

const char *clattn__program_warnings(clattn_context_t ctx, cl_program program) {
  const char *w = NULL;
  mtx_lock(&ctx->programs_lock);
  for (struct clattn__program_entry *e = ctx->programs; e; e = e->next) {
    if (e->program == program) {
      w = e->warnings;
      break;
    }
  }
  mtx_unlock(&ctx->programs_lock);
  return w;
}

void clattn__programs_release(clattn_context_t ctx) {
  struct clattn__program_entry *e = ctx->programs;
  while (e) {
    struct clattn__program_entry *next = e->next;
    clReleaseProgram(e->program);
    free(e->key);
    free(e->warnings);
    free(e);
    e = next;
  }
  ctx->programs = NULL;
}
