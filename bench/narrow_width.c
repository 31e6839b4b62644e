/*
 * narrow_width.c - an LD_PRELOAD library for bench/isa.sh: reports a CPU
 * device's native and preferred float vector widths as at most
 * CLATTN_NARROW_WIDTH (default 8), so that clattn's tile chooser sizes its
 * tiles for that width (8: 16 registers of 8 floats, AVX2) on a host with
 * wider vectors. Every other query goes to the OpenCL loader unchanged.
 */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <dlfcn.h>
#include <stdlib.h>

typedef cl_int (*get_device_info_fn)(cl_device_id, cl_device_info, size_t,
                                     void *, size_t *);

CL_API_ENTRY cl_int CL_API_CALL clGetDeviceInfo(cl_device_id device,
                                                cl_device_info param,
                                                size_t size, void *value,
                                                size_t *size_ret) {
  static get_device_info_fn next;
  if (!next)
    next = (get_device_info_fn)dlsym(RTLD_NEXT, "clGetDeviceInfo");
  if (!next)
    return CL_INVALID_OPERATION;
  cl_int err = next(device, param, size, value, size_ret);
  if (err != CL_SUCCESS || !value || size < sizeof(cl_uint) ||
      (param != CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT &&
       param != CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT))
    return err;
  cl_device_type type = 0;
  if (next(device, CL_DEVICE_TYPE, sizeof type, &type, NULL) != CL_SUCCESS ||
      !(type & CL_DEVICE_TYPE_CPU))
    return err;
  const char *env = getenv("CLATTN_NARROW_WIDTH");
  cl_uint limit = env && atoi(env) > 0 ? (cl_uint)atoi(env) : 8u;
  cl_uint *width = value;
  if (*width > limit)
    *width = limit;
  return err;
}
