/*
 * context.c - creating, adopting and destroying contexts.
 */
#include "internal.h"
#include "program.h"

#include <stdlib.h>
#include <string.h>

static clattn_context_t context_alloc(void) {
  clattn_context_t ctx = calloc(1, sizeof *ctx);
  if (!ctx)
    return NULL;
  if (mtx_init(&ctx->lock, mtx_plain) != thrd_success)
    return ctx;
  if (mtx_init(&ctx->programs_lock, mtx_plain) != thrd_success) {
    mtx_destroy(&ctx->lock);
    return ctx;
  }
  ctx->lock_ok = 1;
  return ctx;
}

/* Reads the profile; shared by both constructors. */
static clattn_status context_finish(clattn_context_t ctx,
                                    cl_platform_id platform) {
  if (!ctx->lock_ok)
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                        "could not create the context's mutex");
  clattn_status st = clattn__profile_read(platform, ctx->device, &ctx->profile);
  if (st != CLATTN_SUCCESS)
    return clattn__fail(ctx, st, "could not read the device's profile");
  ctx->has_profile = 1;
  return CLATTN_SUCCESS;
}

CLATTN_API clattn_status clattn_context_create(clattn_context_t *out,
                                               const char *selector,
                                               unsigned flags) {
  if (!out)
    return CLATTN_ERROR_INVALID_VALUE;
  clattn_context_t ctx = context_alloc();
  *out = ctx;
  if (!ctx)
    return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
  clattn_status st = CLATTN_SUCCESS;
  if (flags & ~CLATTN_CONTEXT_PROFILING)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "unknown context flags 0x%x", flags);
  cl_uint index = 0;
  st = clattn_device_find(selector, &index);
  if (st == CLATTN_ERROR_OPENCL)
    return clattn__fail(ctx, st,
                        "could not list the OpenCL devices: an OpenCL query "
                        "failed");
  if (st != CLATTN_SUCCESS) {
    const char *env = getenv("CLATTN_DEVICE");
    const char *shown =
        selector && *selector ? selector : (env && *env ? env : "(default)");
    return clattn__fail(ctx, st,
                        "no OpenCL device matches \"%s\" (clattn-info lists "
                        "the devices)",
                        shown);
  }
  clattn_device_profile prof;
  st = clattn_device_profile_get(index, &prof);
  if (st != CLATTN_SUCCESS)
    return clattn__fail(ctx, st, "could not read device %u", index);
  cl_int err = CL_SUCCESS;
  cl_context_properties cprops[] = {CL_CONTEXT_PLATFORM,
                                    (cl_context_properties)prof.platform, 0};
  ctx->device = prof.device;
  ctx->context = clCreateContext(cprops, 1, &ctx->device, NULL, NULL, &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateContext");
  cl_command_queue_properties qprops =
      (flags & CLATTN_CONTEXT_PROFILING) ? CL_QUEUE_PROFILING_ENABLE : 0;
  /* clCreateCommandQueue is deprecated in OpenCL 2.0 but is the one call
   * every 1.2 runtime has. */
  ctx->queue = clCreateCommandQueue(ctx->context, ctx->device, qprops, &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateCommandQueue");
  st = context_finish(ctx, prof.platform);
  if (st == CLATTN_SUCCESS) {
    ctx->profile.index = prof.index;
    ctx->profile.platform_index = prof.platform_index;
    ctx->profile.device_index = prof.device_index;
  }
cleanup:
  return st;
}

CLATTN_API clattn_status clattn_context_create_from_cl(clattn_context_t *out,
                                                       cl_context context,
                                                       cl_device_id device,
                                                       cl_command_queue queue) {
  if (!out)
    return CLATTN_ERROR_INVALID_VALUE;
  clattn_context_t ctx = context_alloc();
  *out = ctx;
  if (!ctx)
    return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
  if (!context || !device || !queue)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "context, device and queue must all be given");
  clattn_status st = CLATTN_SUCCESS;
  cl_platform_id platform = NULL;
  cl_context qctx = NULL;
  cl_device_id qdev = NULL;
  CLATTN_CL_CHECK(ctx,
                  clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform,
                                  &platform, NULL),
                  "clGetDeviceInfo(device)");
  CLATTN_CL_CHECK(
      ctx,
      clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL),
      "clGetCommandQueueInfo(queue)");
  CLATTN_CL_CHECK(
      ctx,
      clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev, NULL),
      "clGetCommandQueueInfo(queue)");
  if (qctx != context || qdev != device)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "the queue does not belong to the given context and "
                        "device");
  CLATTN_CL_CHECK(ctx, clRetainContext(context), "clRetainContext");
  ctx->context = context;
  CLATTN_CL_CHECK(ctx, clRetainCommandQueue(queue), "clRetainCommandQueue");
  ctx->queue = queue;
  ctx->device = device;
  st = context_finish(ctx, platform);
cleanup:
  return st;
}

CLATTN_API void clattn_context_destroy(clattn_context_t ctx) {
  if (!ctx)
    return;
  clattn__programs_release(ctx);
  if (ctx->queue)
    clReleaseCommandQueue(ctx->queue);
  if (ctx->context)
    clReleaseContext(ctx->context);
  free(ctx->error);
  if (ctx->lock_ok) {
    mtx_destroy(&ctx->lock);
    mtx_destroy(&ctx->programs_lock);
  }
  free(ctx);
}

CLATTN_API cl_context clattn_context_cl(clattn_context_t ctx) {
  return ctx ? ctx->context : NULL;
}

CLATTN_API cl_device_id clattn_context_device(clattn_context_t ctx) {
  return ctx ? ctx->device : NULL;
}

CLATTN_API cl_command_queue clattn_context_queue(clattn_context_t ctx) {
  return ctx ? ctx->queue : NULL;
}

CLATTN_API clattn_status clattn_context_profile(clattn_context_t ctx,
                                                clattn_device_profile *out) {
  if (!ctx || !out)
    return CLATTN_ERROR_INVALID_VALUE;
  if (!ctx->has_profile)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "the context was not created successfully");
  *out = ctx->profile;
  return CLATTN_SUCCESS;
}
