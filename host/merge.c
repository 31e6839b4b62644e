/*
 * merge.c - clattn_merge: partial attention results over disjoint key
 * ranges combined by their log-sum-exps (cl/merge.cl).
 */
#include "plan.h"
#include "program.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* a * b * c into *out, or 0 when the product does not fit a size_t. */
static int mul3(size_t a, size_t b, size_t c, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a)
    return 0;
  size_t ab = a * b;
  if (ab != 0 && c > SIZE_MAX / ab)
    return 0;
  *out = ab * c;
  return 1;
}

/* Validates the shapes, and the byte sizes they imply, of a merge. */
static clattn_status merge_sizes(clattn_context_t ctx, clattn_dtype dtype,
                                 size_t parts, size_t rows, size_t dim_v,
                                 size_t bytes[4]) {
  size_t es = clattn__dtype_size(dtype);
  if (es == 0)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_merge: dtype %d is not a storage dtype",
                        (int)dtype);
  if (parts < 1 || parts > INT32_MAX || rows < 1 || dim_v < 1 ||
      dim_v > CLATTN_MAX_DIM)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_merge: parts (%zu) and rows (%zu) must be at "
                        "least 1 and dim_v (%zu) 1..%d",
                        parts, rows, dim_v, CLATTN_MAX_DIM);
  if (!mul3(parts, rows, dim_v * es, &bytes[0]) ||
      !mul3(parts, rows, sizeof(float), &bytes[1]) ||
      !mul3(1, rows, dim_v * es, &bytes[2]) ||
      !mul3(1, rows, sizeof(float), &bytes[3]))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_merge: %zu parts of %zu rows of %zu overflow "
                        "the address space",
                        parts, rows, dim_v);
  return CLATTN_SUCCESS;
}

CLATTN_API clattn_status clattn_merge(clattn_context_t ctx, clattn_dtype dtype,
                                      size_t parts, size_t rows, size_t dim_v,
                                      cl_mem o_parts, cl_mem lse_parts,
                                      cl_mem o, cl_mem lse, cl_uint num_events,
                                      const cl_event *wait_list,
                                      cl_event *event) {
  if (!ctx)
    return CLATTN_ERROR_INVALID_VALUE;
  if (!o_parts || !lse_parts || !o)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_merge: o_parts, lse_parts and o must not be "
                        "NULL");
  if ((num_events > 0) != (wait_list != NULL))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_merge: num_events and wait_list disagree");
  clattn_status st = CLATTN_SUCCESS;
  cl_kernel kernel = NULL;
  size_t bytes[4];
  CLATTN_CHECK(merge_sizes(ctx, dtype, parts, rows, dim_v, bytes));
  CLATTN_CHECK(clattn__check_buffer(ctx, o_parts, "o_parts", bytes[0]));
  CLATTN_CHECK(clattn__check_buffer(ctx, lse_parts, "lse_parts", bytes[1]));
  CLATTN_CHECK(clattn__check_buffer(ctx, o, "o", bytes[2]));
  if (lse)
    CLATTN_CHECK(clattn__check_buffer(ctx, lse, "lse", bytes[3]));

  /* One program per dtype; the kernel object is the call's own, so threads
   * sharing the context never share its arguments. */
  static const char *const files[] = {"common.cl", "merge.cl"};
  char options[64];
  snprintf(options, sizeof options, "%s -D VEC=1",
           clattn__dtype_options(dtype));
  cl_program program = NULL;
  CLATTN_CHECK(clattn__program_get(ctx, files, 2, options, &program));
  cl_int err = CL_SUCCESS;
  kernel = clCreateKernel(program, "clattn_merge", &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateKernel");
  cl_int write_lse = lse != NULL, np = (cl_int)parts, dv = (cl_int)dim_v;
  cl_ulong nrows = rows;
  cl_uint a = 0;
  CLATTN_SET_ARG(err, kernel, a++, sizeof(cl_mem), &o_parts);
  CLATTN_SET_ARG(err, kernel, a++, sizeof(cl_mem), &lse_parts);
  CLATTN_SET_ARG(err, kernel, a++, sizeof(cl_mem), &o);
  CLATTN_SET_ARG(err, kernel, a++, sizeof(cl_mem), lse ? &lse : NULL);
  CLATTN_SET_ARG(err, kernel, a++, sizeof(cl_int), &write_lse);
  CLATTN_SET_ARG(err, kernel, a++, sizeof(cl_int), &np);
  CLATTN_SET_ARG(err, kernel, a++, sizeof(cl_ulong), &nrows);
  CLATTN_SET_ARG(err, kernel, a++, sizeof(cl_int), &dv);
  CLATTN_CL_CHECK(ctx, err, "clSetKernelArg");
  size_t global[2] = {dim_v, rows};
  CLATTN_CL_CHECK(ctx,
                  clEnqueueNDRangeKernel(ctx->queue, kernel, 2, NULL, global,
                                         NULL, num_events, wait_list, event),
                  "clEnqueueNDRangeKernel");
cleanup:
  if (kernel)
    clReleaseKernel(kernel);
  return st;
}

CLATTN_API clattn_status clattn_merge_host(clattn_context_t ctx,
                                           clattn_dtype dtype, size_t parts,
                                           size_t rows, size_t dim_v,
                                           const float *o_parts,
                                           const float *lse_parts, float *o,
                                           float *lse) {
  if (!ctx)
    return CLATTN_ERROR_INVALID_VALUE;
  if (!o_parts || !lse_parts || !o)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_VALUE,
                        "clattn_merge_host: o_parts, lse_parts and o must not "
                        "be NULL");
  clattn_status st = CLATTN_SUCCESS;
  cl_mem bop = NULL, blp = NULL, bo = NULL, bl = NULL;
  cl_event done = NULL;
  cl_int err = CL_SUCCESS;
  size_t bytes[4];
  size_t es = clattn__dtype_size(dtype);
  CLATTN_CHECK(merge_sizes(ctx, dtype, parts, rows, dim_v, bytes));
  CLATTN_CHECK(clattn__upload(ctx, dtype, o_parts, bytes[0] / es, &bop));
  CLATTN_CHECK(clattn__upload(ctx, CLATTN_DTYPE_F32, lse_parts,
                              bytes[1] / sizeof(float), &blp));
  bo = clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, bytes[2], NULL, &err);
  CLATTN_CL_CHECK(ctx, err, "clCreateBuffer");
  if (lse) {
    bl = clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, bytes[3], NULL, &err);
    CLATTN_CL_CHECK(ctx, err, "clCreateBuffer");
  }
  CLATTN_CHECK(clattn_merge(ctx, dtype, parts, rows, dim_v, bop, blp, bo, bl, 0,
                            NULL, &done));
  CLATTN_CL_CHECK(ctx, clWaitForEvents(1, &done), "clWaitForEvents");
  CLATTN_CHECK(clattn__download(ctx, bo, bytes[2] / es, dtype, o));
  if (lse)
    CLATTN_CHECK(clattn__download(ctx, bl, bytes[3] / sizeof(float),
                                  CLATTN_DTYPE_F32, lse));
cleanup:
  if (done)
    clReleaseEvent(done);
  if (st != CLATTN_SUCCESS && ctx->queue)
    clFinish(ctx->queue);
  cl_mem all[] = {bop, blp, bo, bl};
  for (size_t i = 0; i < 4; i++) {
    if (all[i])
      clReleaseMemObject(all[i]);
  }
  return st;
}
