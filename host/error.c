/*
 * error.c - the per-context error message and the mapping of OpenCL error
 * codes to clattn statuses.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *clattn__cl_error_name(cl_int err) {
  switch (err) {
#define CLATTN_CL_ERR_(e)                                                      \
  case e:                                                                      \
    return #e;
    CLATTN_CL_ERR_(CL_SUCCESS)
    CLATTN_CL_ERR_(CL_DEVICE_NOT_FOUND)
    CLATTN_CL_ERR_(CL_DEVICE_NOT_AVAILABLE)
    CLATTN_CL_ERR_(CL_COMPILER_NOT_AVAILABLE)
    CLATTN_CL_ERR_(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    CLATTN_CL_ERR_(CL_OUT_OF_RESOURCES)
    CLATTN_CL_ERR_(CL_OUT_OF_HOST_MEMORY)
    CLATTN_CL_ERR_(CL_PROFILING_INFO_NOT_AVAILABLE)
    CLATTN_CL_ERR_(CL_BUILD_PROGRAM_FAILURE)
    CLATTN_CL_ERR_(CL_INVALID_VALUE)
    CLATTN_CL_ERR_(CL_INVALID_DEVICE_TYPE)
    CLATTN_CL_ERR_(CL_INVALID_PLATFORM)
    CLATTN_CL_ERR_(CL_INVALID_DEVICE)
    CLATTN_CL_ERR_(CL_INVALID_CONTEXT)
    CLATTN_CL_ERR_(CL_INVALID_QUEUE_PROPERTIES)
    CLATTN_CL_ERR_(CL_INVALID_COMMAND_QUEUE)
    CLATTN_CL_ERR_(CL_INVALID_MEM_OBJECT)
    CLATTN_CL_ERR_(CL_INVALID_BINARY)
    CLATTN_CL_ERR_(CL_INVALID_BUILD_OPTIONS)
    CLATTN_CL_ERR_(CL_INVALID_PROGRAM)
    CLATTN_CL_ERR_(CL_INVALID_PROGRAM_EXECUTABLE)
    CLATTN_CL_ERR_(CL_INVALID_KERNEL_NAME)
    CLATTN_CL_ERR_(CL_INVALID_KERNEL)
    CLATTN_CL_ERR_(CL_INVALID_ARG_INDEX)
    CLATTN_CL_ERR_(CL_INVALID_ARG_VALUE)
    CLATTN_CL_ERR_(CL_INVALID_ARG_SIZE)
    CLATTN_CL_ERR_(CL_INVALID_KERNEL_ARGS)
    CLATTN_CL_ERR_(CL_INVALID_WORK_DIMENSION)
    CLATTN_CL_ERR_(CL_INVALID_WORK_GROUP_SIZE)
    CLATTN_CL_ERR_(CL_INVALID_WORK_ITEM_SIZE)
    CLATTN_CL_ERR_(CL_INVALID_GLOBAL_OFFSET)
    CLATTN_CL_ERR_(CL_INVALID_EVENT_WAIT_LIST)
    CLATTN_CL_ERR_(CL_INVALID_EVENT)
    CLATTN_CL_ERR_(CL_INVALID_OPERATION)
    CLATTN_CL_ERR_(CL_INVALID_BUFFER_SIZE)
    CLATTN_CL_ERR_(CL_INVALID_GLOBAL_WORK_SIZE)
    CLATTN_CL_ERR_(CL_INVALID_PROPERTY)
    CLATTN_CL_ERR_(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    CLATTN_CL_ERR_(CL_MISALIGNED_SUB_BUFFER_OFFSET)
#undef CLATTN_CL_ERR_
  default:
    return "CL_UNKNOWN_ERROR";
  }
}

/* The start of the message this thread's last failure set, whatever the
 * context: a caller that quotes its own failure reads it here, because by
 * then the context's message may be another thread's (and freed). */
static _Thread_local char thread_message[CLATTN_THREAD_MESSAGE_CAP];

const char *clattn__thread_error(void) {
  return thread_message;
}

static void set_message(clattn_context_t ctx, char *msg) {
  if (ctx->lock_ok)
    mtx_lock(&ctx->lock);
  free(ctx->error);
  ctx->error = msg;
  if (ctx->lock_ok)
    mtx_unlock(&ctx->lock);
}

static clattn_status vfail(clattn_context_t ctx, clattn_status status,
                           const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(thread_message, sizeof thread_message, fmt, ap2);
  va_end(ap2);
  if (!ctx)
    return status;
  if (n < 0)
    n = 0;
  size_t len = (size_t)n < CLATTN_ERROR_CAP ? (size_t)n : CLATTN_ERROR_CAP - 1;
  char *msg = malloc(len + 1);
  if (msg)
    vsnprintf(msg, len + 1, fmt, ap);
  /* Out of memory leaves no message rather than a stale one. */
  set_message(ctx, msg);
  return status;
}

clattn_status clattn__fail(clattn_context_t ctx, clattn_status status,
                           const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  clattn_status st = vfail(ctx, status, fmt, ap);
  va_end(ap);
  return st;
}

clattn_status clattn__fail_cl(clattn_context_t ctx, cl_int err,
                              const char *what) {
  clattn_status st;
  switch (err) {
  case CL_DEVICE_NOT_FOUND:
    st = CLATTN_ERROR_DEVICE_NOT_FOUND;
    break;
  case CL_OUT_OF_RESOURCES:
  case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    st = CLATTN_ERROR_OUT_OF_RESOURCES;
    break;
  case CL_OUT_OF_HOST_MEMORY:
    st = CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    break;
  case CL_BUILD_PROGRAM_FAILURE:
    st = CLATTN_ERROR_BUILD_FAILED;
    break;
  case CL_INVALID_MEM_OBJECT:
    st = CLATTN_ERROR_INVALID_MEM_OBJECT;
    break;
  default:
    st = CLATTN_ERROR_OPENCL;
    break;
  }
  return clattn__fail(ctx, st, "%s failed: %s (%d)", what,
                      clattn__cl_error_name(err), (int)err);
}

CLATTN_API const char *clattn_context_error(clattn_context_t ctx) {
  if (!ctx || !ctx->error)
    return "";
  return ctx->error;
}

CLATTN_API size_t clattn_context_error_copy(clattn_context_t ctx, char *buf,
                                            size_t size) {
  if (!ctx) {
    if (buf && size > 0)
      buf[0] = '\0';
    return 0;
  }
  if (ctx->lock_ok)
    mtx_lock(&ctx->lock);
  size_t len = clattn__copy_out(buf, size, ctx->error ? ctx->error : "");
  if (ctx->lock_ok)
    mtx_unlock(&ctx->lock);
  return len;
}

size_t clattn__copy_out(char *buf, size_t size, const char *s) {
  size_t len = strlen(s);
  if (buf && size > 0) {
    size_t n = len < size - 1 ? len : size - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
  }
  return len;
}
