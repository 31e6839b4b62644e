/*
 * internal.h - structures and helpers shared by the files of the host
 * library. Nothing here is public.
 */
#ifndef CLATTN_INTERNAL_H
#define CLATTN_INTERNAL_H

#include "clattn.h"

#include <stdarg.h>
#include <stdint.h>
#include <threads.h>

#define CLATTN_API __attribute__((visibility("default")))

#define CLATTN_MAX_DIM 256
#define CLATTN_ERROR_CAP 65536 /* build logs can be long; keep their start */
#define CLATTN_THREAD_MESSAGE_CAP 1024

/* One built program, cached per context by its source list and options. */
struct clattn__program_entry {
  char *key; /* sources + '\n' + options */
  cl_program program;
  char *warnings; /* the build log when it holds a warning, else NULL */
  struct clattn__program_entry *next;
};

struct clattn_context {
  cl_context context;
  cl_device_id device;
  cl_command_queue queue;
  clattn_device_profile profile;
  int has_profile;
  mtx_t lock;          /* guards error */
  mtx_t programs_lock; /* guards programs; held while one builds */
  int lock_ok;
  char *error; /* heap, CLATTN_ERROR_CAP at most */
  struct clattn__program_entry *programs;
};

/* Sets the context's message (printf-style) and returns status. ctx may be
 * NULL, then only the status is returned. */
clattn_status clattn__fail(clattn_context_t ctx, clattn_status status,
                           const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The message of the calling thread's last clattn__fail (at most
 * CLATTN_THREAD_MESSAGE_CAP - 1 bytes of it), "" if none: what a caller
 * quotes of its own failure, since the context's message is shared with other
 * threads. Valid until this thread's next failure. */
const char *clattn__thread_error(void);

/* Maps an OpenCL error from `what` to a status and a message. */
clattn_status clattn__fail_cl(clattn_context_t ctx, cl_int err,
                              const char *what);

/* "CL_INVALID_VALUE", or "CL_ERROR(-1234)" in a static buffer-free form. */
const char *clattn__cl_error_name(cl_int err);

/* Reads a device's profile (used by device.c and context.c). */
clattn_status clattn__profile_read(cl_platform_id platform, cl_device_id device,
                                   clattn_device_profile *out);

/* Copies s into buf (always terminated when size > 0, truncated to fit) and
 * returns strlen(s): the contract of every clattn call that fills a buffer. */
size_t clattn__copy_out(char *buf, size_t size, const char *s);

/* *out = the product of the n factors. Returns 1, or 0 with *out = SIZE_MAX
 * when the product does not fit size_t. Every byte count of a tensor or a
 * workspace is computed with it. */
static inline int clattn__size_product(size_t *out, const size_t *factors,
                                       size_t n) {
  size_t r = 1;
  for (size_t i = 0; i < n; i++) {
    if (factors[i] != 0 && r > SIZE_MAX / factors[i]) {
      *out = SIZE_MAX;
      return 0;
    }
    r *= factors[i];
  }
  *out = r;
  return 1;
}
#define CLATTN_SIZE_PRODUCT(out, ...)                                          \
  clattn__size_product((out), (const size_t[]){__VA_ARGS__},                   \
                       sizeof((const size_t[]){__VA_ARGS__}) / sizeof(size_t))

/* Case-insensitive substring test. */
int clattn__contains_ci(const char *haystack, const char *needle);

/* Jumps to `cleanup` with st set when an OpenCL call fails. */
#define CLATTN_CL_CHECK(ctx, call, what)                                       \
  do {                                                                         \
    cl_int clattn_err_ = (call);                                               \
    if (clattn_err_ != CL_SUCCESS) {                                           \
      st = clattn__fail_cl((ctx), clattn_err_, (what));                        \
      goto cleanup;                                                            \
    }                                                                          \
  } while (0)

/* Jumps to `cleanup` when a clattn call fails. */
#define CLATTN_CHECK(call)                                                     \
  do {                                                                         \
    st = (call);                                                               \
    if (st != CLATTN_SUCCESS)                                                  \
      goto cleanup;                                                            \
  } while (0)

#endif /* CLATTN_INTERNAL_H */
