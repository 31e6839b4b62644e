/*
 * fault_cl.h - a shim over the OpenCL entry points clattn calls (fault_cl.c
 * defines them, so linking it into a program interposes them): it counts
 * each function's calls, fails the Nth call of one function on request, and
 * keeps the reference count of every OpenCL object made through it, so that
 * a test can see what leaked.
 */
#ifndef CLATTN_FAULT_CL_H
#define CLATTN_FAULT_CL_H

#include "clattn.h"

#define FAULT_FUNCTIONS(X)                                                     \
  X(clGetPlatformIDs)                                                          \
  X(clGetPlatformInfo)                                                         \
  X(clGetDeviceIDs)                                                            \
  X(clGetDeviceInfo)                                                           \
  X(clCreateContext)                                                           \
  X(clRetainContext)                                                           \
  X(clReleaseContext)                                                          \
  X(clCreateCommandQueue)                                                      \
  X(clRetainCommandQueue)                                                      \
  X(clReleaseCommandQueue)                                                     \
  X(clGetCommandQueueInfo)                                                     \
  X(clCreateBuffer)                                                            \
  X(clReleaseMemObject)                                                        \
  X(clGetMemObjectInfo)                                                        \
  X(clCreateProgramWithSource)                                                 \
  X(clCreateProgramWithBinary)                                                 \
  X(clBuildProgram)                                                            \
  X(clGetProgramInfo)                                                          \
  X(clGetProgramBuildInfo)                                                     \
  X(clReleaseProgram)                                                          \
  X(clCreateKernel)                                                            \
  X(clSetKernelArg)                                                            \
  X(clGetKernelWorkGroupInfo)                                                  \
  X(clReleaseKernel)                                                           \
  X(clEnqueueNDRangeKernel)                                                    \
  X(clEnqueueReadBuffer)                                                       \
  X(clEnqueueMarkerWithWaitList)                                               \
  X(clWaitForEvents)                                                           \
  X(clRetainEvent)                                                             \
  X(clReleaseEvent)                                                            \
  X(clFinish)

typedef enum fault_fn {
#define FAULT_ENUM_(name) FAULT_##name,
  FAULT_FUNCTIONS(FAULT_ENUM_)
#undef FAULT_ENUM_
      FAULT_COUNT
} fault_fn;

const char *fault_name(fault_fn f);

/* Release calls are counted but never failed: a failed release would leak
 * by the shim's doing, not clattn's. */
int fault_injectable(fault_fn f);

/* Counting is off until fault_counting(1); calls made while it is off (the
 * test's own set-up) neither count nor fail. */
void fault_counting(int on);
/* Zeroes the counts and disarms. */
void fault_reset(void);
/* Fails the nth counted call of f (1-based) from the last reset. */
void fault_arm(fault_fn f, long nth);
long fault_calls(fault_fn f);
/* 1 once the armed call has been failed. */
int fault_fired(void);

/* OpenCL objects made through the shim whose reference count has not come
 * back to zero; fault_live_describe names them. */
long fault_live(void);
void fault_live_describe(char *buf, size_t size);

#endif /* CLATTN_FAULT_CL_H */
