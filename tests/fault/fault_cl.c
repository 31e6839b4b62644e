/*
 * fault_cl.c - the OpenCL shim of fault_cl.h. Each wrapper finds the real
 * function with dlsym(RTLD_NEXT) (the ICD loader), counts the call, and
 * either fails it the way the specification allows (an error code, NULL
 * with *errcode_ret set) or forwards it. Objects returned by the real
 * functions are tracked with their reference counts as the caller sees
 * them.
 */
#define _GNU_SOURCE

#include "fault_cl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[FAULT_COUNT] = {
#define FAULT_NAME_(name) #name,
    FAULT_FUNCTIONS(FAULT_NAME_)
#undef FAULT_NAME_
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int counting;
static long calls[FAULT_COUNT];
static int armed_fn = -1;
static long armed_nth;
static int fired;

const char *fault_name(fault_fn f) {
  return f >= 0 && f < FAULT_COUNT ? names[f] : "?";
}

int fault_injectable(fault_fn f) {
  return strncmp(names[f], "clRelease", 9) != 0;
}

void fault_counting(int on) {
  pthread_mutex_lock(&lock);
  counting = on;
  pthread_mutex_unlock(&lock);
}

void fault_reset(void) {
  pthread_mutex_lock(&lock);
  memset(calls, 0, sizeof calls);
  armed_fn = -1;
  armed_nth = 0;
  fired = 0;
  pthread_mutex_unlock(&lock);
}

void fault_arm(fault_fn f, long nth) {
  pthread_mutex_lock(&lock);
  armed_fn = (int)f;
  armed_nth = nth;
  fired = 0;
  pthread_mutex_unlock(&lock);
}

long fault_calls(fault_fn f) {
  pthread_mutex_lock(&lock);
  long n = calls[f];
  pthread_mutex_unlock(&lock);
  return n;
}

int fault_fired(void) {
  pthread_mutex_lock(&lock);
  int f = fired;
  pthread_mutex_unlock(&lock);
  return f;
}

/* Counts a call; 1 when this call is the one to fail. */
static int hit(fault_fn f) {
  pthread_mutex_lock(&lock);
  int fail = 0;
  if (counting) {
    calls[f]++;
    if ((int)f == armed_fn && calls[f] == armed_nth) {
      fail = 1;
      fired = 1;
    }
  }
  pthread_mutex_unlock(&lock);
  return fail;
}

/* ---- Object tracking -------------------------------------------------- */

typedef struct tracked {
  const void *obj;
  const char *kind;
  long refs;
} tracked;

static tracked *objs;
static size_t nobjs, capobjs;

static void track_new(const void *obj, const char *kind) {
  if (!obj)
    return;
  pthread_mutex_lock(&lock);
  if (nobjs == capobjs) {
    size_t cap = capobjs ? 2 * capobjs : 64;
    tracked *grown = realloc(objs, cap * sizeof *grown);
    if (!grown)
      abort();
    objs = grown;
    capobjs = cap;
  }
  objs[nobjs].obj = obj;
  objs[nobjs].kind = kind;
  objs[nobjs].refs = 1;
  nobjs++;
  pthread_mutex_unlock(&lock);
}

/* +1 or -1 on an object's count; it is forgotten at zero. Objects not made
 * through the shim (none in clattn) are ignored. */
static void track_ref(const void *obj, int delta) {
  pthread_mutex_lock(&lock);
  for (size_t i = nobjs; i-- > 0;) {
    if (objs[i].obj != obj)
      continue;
    objs[i].refs += delta;
    if (objs[i].refs <= 0)
      objs[i] = objs[--nobjs];
    break;
  }
  pthread_mutex_unlock(&lock);
}

long fault_live(void) {
  pthread_mutex_lock(&lock);
  long n = (long)nobjs;
  pthread_mutex_unlock(&lock);
  return n;
}

void fault_live_describe(char *buf, size_t size) {
  size_t len = 0;
  buf[0] = '\0';
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < nobjs && len < size; i++) {
    int n = snprintf(buf + len, size - len, "%s%s (refs %ld)", i ? ", " : "",
                     objs[i].kind, objs[i].refs);
    if (n < 0)
      break;
    len += (size_t)n;
  }
  pthread_mutex_unlock(&lock);
}

/* ---- Wrappers --------------------------------------------------------- */

#define REAL(name)                                                             \
  static __typeof__(&name) real;                                               \
  if (!real) {                                                                 \
    *(void **)&real = dlsym(RTLD_NEXT, #name);                                 \
    if (!real)                                                                 \
      abort();                                                                 \
  }

/* A call returning cl_int fails with CL_OUT_OF_RESOURCES, which every one of
 * these may return. */
#define FAIL_INT(name)                                                         \
  REAL(name);                                                                  \
  if (hit(FAULT_##name))                                                       \
  return CL_OUT_OF_RESOURCES

/* A constructor fails with NULL and the code in *errcode_ret. */
#define FAIL_PTR(name, errcode_ret)                                            \
  REAL(name);                                                                  \
  if (hit(FAULT_##name)) {                                                     \
    if (errcode_ret)                                                           \
      *(errcode_ret) = CL_OUT_OF_RESOURCES;                                    \
    return NULL;                                                               \
  }

cl_int clGetPlatformIDs(cl_uint num_entries, cl_platform_id *platforms,
                        cl_uint *num_platforms) {
  FAIL_INT(clGetPlatformIDs);
  return real(num_entries, platforms, num_platforms);
}

cl_int clGetPlatformInfo(cl_platform_id platform, cl_platform_info name,
                         size_t size, void *value, size_t *size_ret) {
  FAIL_INT(clGetPlatformInfo);
  return real(platform, name, size, value, size_ret);
}

cl_int clGetDeviceIDs(cl_platform_id platform, cl_device_type type,
                      cl_uint num_entries, cl_device_id *devices,
                      cl_uint *num_devices) {
  FAIL_INT(clGetDeviceIDs);
  return real(platform, type, num_entries, devices, num_devices);
}

cl_int clGetDeviceInfo(cl_device_id device, cl_device_info name, size_t size,
                       void *value, size_t *size_ret) {
  FAIL_INT(clGetDeviceInfo);
  return real(device, name, size, value, size_ret);
}

cl_context clCreateContext(const cl_context_properties *props,
                           cl_uint num_devices, const cl_device_id *devices,
                           void(CL_CALLBACK *notify)(const char *, const void *,
                                                     size_t, void *),
                           void *user_data, cl_int *errcode_ret) {
  FAIL_PTR(clCreateContext, errcode_ret);
  cl_context c =
      real(props, num_devices, devices, notify, user_data, errcode_ret);
  track_new(c, "context");
  return c;
}

cl_int clRetainContext(cl_context context) {
  FAIL_INT(clRetainContext);
  cl_int err = real(context);
  if (err == CL_SUCCESS)
    track_ref(context, +1);
  return err;
}

cl_int clReleaseContext(cl_context context) {
  REAL(clReleaseContext);
  hit(FAULT_clReleaseContext);
  track_ref(context, -1);
  return real(context);
}

cl_command_queue clCreateCommandQueue(cl_context context, cl_device_id device,
                                      cl_command_queue_properties props,
                                      cl_int *errcode_ret) {
  FAIL_PTR(clCreateCommandQueue, errcode_ret);
  cl_command_queue q = real(context, device, props, errcode_ret);
  track_new(q, "command queue");
  return q;
}

cl_int clRetainCommandQueue(cl_command_queue queue) {
  FAIL_INT(clRetainCommandQueue);
  cl_int err = real(queue);
  if (err == CL_SUCCESS)
    track_ref(queue, +1);
  return err;
}

cl_int clReleaseCommandQueue(cl_command_queue queue) {
  REAL(clReleaseCommandQueue);
  hit(FAULT_clReleaseCommandQueue);
  track_ref(queue, -1);
  return real(queue);
}

cl_int clGetCommandQueueInfo(cl_command_queue queue, cl_command_queue_info name,
                             size_t size, void *value, size_t *size_ret) {
  FAIL_INT(clGetCommandQueueInfo);
  return real(queue, name, size, value, size_ret);
}

cl_mem clCreateBuffer(cl_context context, cl_mem_flags flags, size_t size,
                      void *host_ptr, cl_int *errcode_ret) {
  FAIL_PTR(clCreateBuffer, errcode_ret);
  cl_mem m = real(context, flags, size, host_ptr, errcode_ret);
  track_new(m, "buffer");
  return m;
}

cl_int clReleaseMemObject(cl_mem mem) {
  REAL(clReleaseMemObject);
  hit(FAULT_clReleaseMemObject);
  track_ref(mem, -1);
  return real(mem);
}

cl_int clGetMemObjectInfo(cl_mem mem, cl_mem_info name, size_t size,
                          void *value, size_t *size_ret) {
  FAIL_INT(clGetMemObjectInfo);
  return real(mem, name, size, value, size_ret);
}

cl_program clCreateProgramWithSource(cl_context context, cl_uint count,
                                     const char **strings,
                                     const size_t *lengths,
                                     cl_int *errcode_ret) {
  FAIL_PTR(clCreateProgramWithSource, errcode_ret);
  cl_program p = real(context, count, strings, lengths, errcode_ret);
  track_new(p, "program");
  return p;
}

cl_program clCreateProgramWithBinary(cl_context context, cl_uint num_devices,
                                     const cl_device_id *devices,
                                     const size_t *lengths,
                                     const unsigned char **binaries,
                                     cl_int *binary_status,
                                     cl_int *errcode_ret) {
  FAIL_PTR(clCreateProgramWithBinary, errcode_ret);
  cl_program p = real(context, num_devices, devices, lengths, binaries,
                      binary_status, errcode_ret);
  track_new(p, "program");
  return p;
}

cl_int clBuildProgram(cl_program program, cl_uint num_devices,
                      const cl_device_id *devices, const char *options,
                      void(CL_CALLBACK *notify)(cl_program, void *),
                      void *user_data) {
  FAIL_INT(clBuildProgram);
  return real(program, num_devices, devices, options, notify, user_data);
}

cl_int clGetProgramInfo(cl_program program, cl_program_info name, size_t size,
                        void *value, size_t *size_ret) {
  FAIL_INT(clGetProgramInfo);
  return real(program, name, size, value, size_ret);
}

cl_int clGetProgramBuildInfo(cl_program program, cl_device_id device,
                             cl_program_build_info name, size_t size,
                             void *value, size_t *size_ret) {
  FAIL_INT(clGetProgramBuildInfo);
  return real(program, device, name, size, value, size_ret);
}

cl_int clReleaseProgram(cl_program program) {
  REAL(clReleaseProgram);
  hit(FAULT_clReleaseProgram);
  track_ref(program, -1);
  return real(program);
}

cl_kernel clCreateKernel(cl_program program, const char *name,
                         cl_int *errcode_ret) {
  FAIL_PTR(clCreateKernel, errcode_ret);
  cl_kernel k = real(program, name, errcode_ret);
  track_new(k, "kernel");
  return k;
}

cl_int clSetKernelArg(cl_kernel kernel, cl_uint index, size_t size,
                      const void *value) {
  FAIL_INT(clSetKernelArg);
  return real(kernel, index, size, value);
}

cl_int clGetKernelWorkGroupInfo(cl_kernel kernel, cl_device_id device,
                                cl_kernel_work_group_info name, size_t size,
                                void *value, size_t *size_ret) {
  FAIL_INT(clGetKernelWorkGroupInfo);
  return real(kernel, device, name, size, value, size_ret);
}

cl_int clReleaseKernel(cl_kernel kernel) {
  REAL(clReleaseKernel);
  hit(FAULT_clReleaseKernel);
  track_ref(kernel, -1);
  return real(kernel);
}

cl_int clEnqueueNDRangeKernel(cl_command_queue queue, cl_kernel kernel,
                              cl_uint work_dim, const size_t *offset,
                              const size_t *global, const size_t *local,
                              cl_uint nwait, const cl_event *wait,
                              cl_event *event) {
  FAIL_INT(clEnqueueNDRangeKernel);
  cl_int err =
      real(queue, kernel, work_dim, offset, global, local, nwait, wait, event);
  if (err == CL_SUCCESS && event)
    track_new(*event, "event");
  return err;
}

cl_int clEnqueueReadBuffer(cl_command_queue queue, cl_mem buffer,
                           cl_bool blocking, size_t offset, size_t size,
                           void *ptr, cl_uint nwait, const cl_event *wait,
                           cl_event *event) {
  FAIL_INT(clEnqueueReadBuffer);
  cl_int err =
      real(queue, buffer, blocking, offset, size, ptr, nwait, wait, event);
  if (err == CL_SUCCESS && event)
    track_new(*event, "event");
  return err;
}

cl_int clEnqueueMarkerWithWaitList(cl_command_queue queue, cl_uint nwait,
                                   const cl_event *wait, cl_event *event) {
  FAIL_INT(clEnqueueMarkerWithWaitList);
  cl_int err = real(queue, nwait, wait, event);
  if (err == CL_SUCCESS && event)
    track_new(*event, "event");
  return err;
}

cl_int clWaitForEvents(cl_uint num_events, const cl_event *events) {
  FAIL_INT(clWaitForEvents);
  return real(num_events, events);
}

cl_int clRetainEvent(cl_event event) {
  FAIL_INT(clRetainEvent);
  cl_int err = real(event);
  if (err == CL_SUCCESS)
    track_ref(event, +1);
  return err;
}

cl_int clReleaseEvent(cl_event event) {
  REAL(clReleaseEvent);
  hit(FAULT_clReleaseEvent);
  track_ref(event, -1);
  return real(event);
}

cl_int clFinish(cl_command_queue queue) {
  FAIL_INT(clFinish);
  return real(queue);
}
