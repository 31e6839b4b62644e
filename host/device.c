/*
 * device.c - platform and device discovery, device profiles and selectors.
 */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLATTN_MAX_PLATFORMS 16
#define CLATTN_MAX_DEVICES 64

/* All devices in platform order; the global index is the position here. */
typedef struct device_list {
  cl_uint count;
  cl_platform_id platform[CLATTN_MAX_DEVICES];
  cl_device_id device[CLATTN_MAX_DEVICES];
  cl_uint platform_index[CLATTN_MAX_DEVICES];
  cl_uint device_index[CLATTN_MAX_DEVICES];
} device_list;

static clattn_status list_devices(device_list *list) {
  cl_platform_id platforms[CLATTN_MAX_PLATFORMS];
  cl_uint nplat = 0;
  list->count = 0;
  cl_int err = clGetPlatformIDs(CLATTN_MAX_PLATFORMS, platforms, &nplat);
  /* The ICD loader answers CL_PLATFORM_NOT_FOUND_KHR (-1001) when no
   * platform is installed: that is zero devices, not a failure. Any other
   * error is one: it must not read as "no device matches". */
  if (err == -1001 || (err == CL_SUCCESS && nplat == 0))
    return CLATTN_SUCCESS;
  if (err != CL_SUCCESS)
    return CLATTN_ERROR_OPENCL;
  if (nplat > CLATTN_MAX_PLATFORMS)
    nplat = CLATTN_MAX_PLATFORMS;
  for (cl_uint p = 0; p < nplat; p++) {
    cl_device_id devs[CLATTN_MAX_DEVICES];
    cl_uint ndev = 0;
    /* A platform without devices is skipped; any other failure would shift
     * the global indices of the devices after it, so it fails the list. */
    err = clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, CLATTN_MAX_DEVICES,
                         devs, &ndev);
    if (err == CL_DEVICE_NOT_FOUND)
      continue;
    if (err != CL_SUCCESS)
      return CLATTN_ERROR_OPENCL;
    if (ndev > CLATTN_MAX_DEVICES)
      ndev = CLATTN_MAX_DEVICES;
    for (cl_uint d = 0; d < ndev && list->count < CLATTN_MAX_DEVICES; d++) {
      list->platform[list->count] = platforms[p];
      list->device[list->count] = devs[d];
      list->platform_index[list->count] = p;
      list->device_index[list->count] = d;
      list->count++;
    }
  }
  return CLATTN_SUCCESS;
}

int clattn__contains_ci(const char *haystack, const char *needle) {
  size_t n = strlen(needle);
  if (n == 0)
    return 1;
  for (const char *h = haystack; *h; h++) {
    size_t i = 0;
    while (i < n && h[i] &&
           tolower((unsigned char)h[i]) == tolower((unsigned char)needle[i]))
      i++;
    if (i == n)
      return 1;
  }
  return 0;
}

/* Both return the OpenCL error, so that a profile is never read with a
 * string silently left empty (the name keys the caches and the tuning). */
static cl_int info_string(cl_device_id dev, cl_device_info what, char *buf,
                          size_t size) {
  buf[0] = '\0';
  /* A string longer than buf is fetched whole and truncated, since
   * clGetDeviceInfo refuses a buffer that is too small. */
  size_t need = 0;
  cl_int err = clGetDeviceInfo(dev, what, 0, NULL, &need);
  if (err != CL_SUCCESS || need == 0)
    return err;
  char *tmp = malloc(need + 1);
  if (!tmp)
    return CL_OUT_OF_HOST_MEMORY;
  err = clGetDeviceInfo(dev, what, need, tmp, NULL);
  if (err == CL_SUCCESS) {
    tmp[need] = '\0';
    snprintf(buf, size, "%s", tmp);
  }
  free(tmp);
  return err;
}

static cl_int platform_string(cl_platform_id plat, cl_platform_info what,
                              char *buf, size_t size) {
  buf[0] = '\0';
  size_t need = 0;
  cl_int err = clGetPlatformInfo(plat, what, 0, NULL, &need);
  if (err != CL_SUCCESS || need == 0)
    return err;
  char *tmp = malloc(need + 1);
  if (!tmp)
    return CL_OUT_OF_HOST_MEMORY;
  err = clGetPlatformInfo(plat, what, need, tmp, NULL);
  if (err == CL_SUCCESS) {
    tmp[need] = '\0';
    snprintf(buf, size, "%s", tmp);
  }
  free(tmp);
  return err;
}

clattn_status clattn__profile_read(cl_platform_id platform, cl_device_id device,
                                   clattn_device_profile *out) {
  memset(out, 0, sizeof *out);
  out->platform = platform;
  out->device = device;
  if (platform_string(platform, CL_PLATFORM_NAME, out->platform_name,
                      sizeof out->platform_name) != CL_SUCCESS ||
      platform_string(platform, CL_PLATFORM_VERSION, out->platform_version,
                      sizeof out->platform_version) != CL_SUCCESS ||
      info_string(device, CL_DEVICE_NAME, out->name, sizeof out->name) !=
          CL_SUCCESS ||
      info_string(device, CL_DEVICE_VENDOR, out->vendor, sizeof out->vendor) !=
          CL_SUCCESS ||
      info_string(device, CL_DRIVER_VERSION, out->driver_version,
                  sizeof out->driver_version) != CL_SUCCESS ||
      info_string(device, CL_DEVICE_VERSION, out->device_version,
                  sizeof out->device_version) != CL_SUCCESS ||
      info_string(device, CL_DEVICE_OPENCL_C_VERSION, out->c_version,
                  sizeof out->c_version) != CL_SUCCESS ||
      info_string(device, CL_DEVICE_EXTENSIONS, out->extensions,
                  sizeof out->extensions) != CL_SUCCESS)
    return CLATTN_ERROR_OPENCL;
  cl_int err = CL_SUCCESS;
  err |= clGetDeviceInfo(device, CL_DEVICE_VENDOR_ID, sizeof out->vendor_id,
                         &out->vendor_id, NULL);
  err |= clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof out->type, &out->type,
                         NULL);
  err |= clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS,
                         sizeof out->compute_units, &out->compute_units, NULL);
  err |= clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE,
                         sizeof out->max_work_group_size,
                         &out->max_work_group_size, NULL);
  err |=
      clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE,
                      sizeof out->local_mem_size, &out->local_mem_size, NULL);
  cl_device_local_mem_type lmt = CL_GLOBAL;
  err |=
      clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_TYPE, sizeof lmt, &lmt, NULL);
  err |=
      clGetDeviceInfo(device, CL_DEVICE_GLOBAL_MEM_SIZE,
                      sizeof out->global_mem_size, &out->global_mem_size, NULL);
  err |= clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE,
                         sizeof out->max_mem_alloc_size,
                         &out->max_mem_alloc_size, NULL);
  err |= clGetDeviceInfo(device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT,
                         sizeof out->preferred_vector_width_float,
                         &out->preferred_vector_width_float, NULL);
  err |= clGetDeviceInfo(device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT,
                         sizeof out->native_vector_width_float,
                         &out->native_vector_width_float, NULL);
  if (err != CL_SUCCESS)
    return CLATTN_ERROR_OPENCL;
  out->local_mem_is_real = lmt == CL_LOCAL;
  out->is_cpu = (out->type & CL_DEVICE_TYPE_CPU) != 0;
  out->is_gpu = (out->type & CL_DEVICE_TYPE_GPU) != 0;
  out->has_fp16 = strstr(out->extensions, "cl_khr_fp16") != NULL;
  out->has_subgroups = strstr(out->extensions, "cl_khr_subgroups") != NULL ||
                       strstr(out->extensions, "cl_intel_subgroups") != NULL;
  /* "OpenCL C 1.2 pocl" -> 1, 2. */
  int major = 1, minor = 0;
  if (sscanf(out->c_version, "OpenCL C %d.%d", &major, &minor) == 2) {
    out->c_major = major;
    out->c_minor = minor;
  } else {
    out->c_major = 1;
    out->c_minor = 0;
  }
  return CLATTN_SUCCESS;
}

CLATTN_API clattn_status clattn_device_count(cl_uint *count) {
  if (!count)
    return CLATTN_ERROR_INVALID_VALUE;
  device_list list;
  clattn_status st = list_devices(&list);
  *count = list.count;
  return st;
}

CLATTN_API clattn_status clattn_device_profile_get(cl_uint index,
                                                   clattn_device_profile *out) {
  if (!out)
    return CLATTN_ERROR_INVALID_VALUE;
  device_list list;
  clattn_status st = list_devices(&list);
  if (st != CLATTN_SUCCESS)
    return st;
  if (index >= list.count)
    return CLATTN_ERROR_DEVICE_NOT_FOUND;
  st = clattn__profile_read(list.platform[index], list.device[index], out);
  out->index = index;
  out->platform_index = list.platform_index[index];
  out->device_index = list.device_index[index];
  return st;
}

/* Parses a non-negative decimal number that fills the whole string. */
static int parse_uint(const char *s, const char *end, cl_uint *out) {
  if (s == end)
    return 0;
  unsigned long v = 0;
  for (const char *p = s; p < end; p++) {
    if (!isdigit((unsigned char)*p) || v > 100000)
      return 0;
    v = v * 10 + (unsigned long)(*p - '0');
  }
  *out = (cl_uint)v;
  return 1;
}

/* 1 or 0; -1 when the type cannot be read (the caller fails rather than
 * pick another device than the one asked for). */
static int match_type(cl_device_id dev, cl_device_type want) {
  cl_device_type t = 0;
  if (clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof t, &t, NULL) != CL_SUCCESS)
    return -1;
  return (t & want) != 0;
}

/* 1 or 0; -1 when a string cannot be read, as match_type. Tier 0 is the
 * platform (name, vendor, version: "Portable Computing Language", "The pocl
 * project", "OpenCL 3.0 PoCL 3.1"), tier 1 the device (vendor, name).
 * Platform matches win, so that "amd" picks AMD's platform before a CPU
 * runtime's device called "AMD EPYC", and "intel" picks Intel's platform
 * rather than a device that merely reports Intel's vendor id. */
static int match_name(const device_list *list, cl_uint i, const char *sel,
                      int tier) {
  char buf[256];
  if (tier == 0) {
    static const cl_platform_info what[] = {
        CL_PLATFORM_NAME, CL_PLATFORM_VENDOR, CL_PLATFORM_VERSION};
    for (size_t w = 0; w < sizeof what / sizeof what[0]; w++) {
      if (platform_string(list->platform[i], what[w], buf, sizeof buf) !=
          CL_SUCCESS)
        return -1;
      if (clattn__contains_ci(buf, sel))
        return 1;
    }
    return 0;
  }
  if (info_string(list->device[i], CL_DEVICE_VENDOR, buf, sizeof buf) !=
      CL_SUCCESS)
    return -1;
  if (clattn__contains_ci(buf, sel))
    return 1;
  if (info_string(list->device[i], CL_DEVICE_NAME, buf, sizeof buf) !=
      CL_SUCCESS)
    return -1;
  return clattn__contains_ci(buf, sel);
}

CLATTN_API clattn_status clattn_device_find(const char *selector,
                                            cl_uint *index) {
  if (!index)
    return CLATTN_ERROR_INVALID_VALUE;
  if (!selector || !*selector) {
    const char *env = getenv("CLATTN_DEVICE");
    selector = env && *env ? env : NULL;
  }
  device_list list;
  clattn_status st = list_devices(&list);
  if (st != CLATTN_SUCCESS)
    return st;
  if (list.count == 0)
    return CLATTN_ERROR_DEVICE_NOT_FOUND;
  if (!selector) {
    for (cl_uint i = 0; i < list.count; i++) {
      int m = match_type(list.device[i], CL_DEVICE_TYPE_GPU);
      if (m < 0)
        return CLATTN_ERROR_OPENCL;
      if (m) {
        *index = i;
        return CLATTN_SUCCESS;
      }
    }
    *index = 0;
    return CLATTN_SUCCESS;
  }
  const char *end = selector + strlen(selector);
  const char *colon = strchr(selector, ':');
  cl_uint a = 0, b = 0;
  if (colon && parse_uint(selector, colon, &a) &&
      parse_uint(colon + 1, end, &b)) {
    for (cl_uint i = 0; i < list.count; i++) {
      if (list.platform_index[i] == a && list.device_index[i] == b) {
        *index = i;
        return CLATTN_SUCCESS;
      }
    }
    return CLATTN_ERROR_DEVICE_NOT_FOUND;
  }
  if (parse_uint(selector, end, &a)) {
    if (a >= list.count)
      return CLATTN_ERROR_DEVICE_NOT_FOUND;
    *index = a;
    return CLATTN_SUCCESS;
  }
  static const struct {
    const char *name;
    cl_device_type type;
  } types[] = {{"cpu", CL_DEVICE_TYPE_CPU},
               {"gpu", CL_DEVICE_TYPE_GPU},
               {"accelerator", CL_DEVICE_TYPE_ACCELERATOR}};
  for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
    if (strcmp(selector, types[t].name) != 0)
      continue;
    for (cl_uint i = 0; i < list.count; i++) {
      int m = match_type(list.device[i], types[t].type);
      if (m < 0)
        return CLATTN_ERROR_OPENCL;
      if (m) {
        *index = i;
        return CLATTN_SUCCESS;
      }
    }
    return CLATTN_ERROR_DEVICE_NOT_FOUND;
  }
  for (int tier = 0; tier < 2; tier++) {
    for (cl_uint i = 0; i < list.count; i++) {
      int m = match_name(&list, i, selector, tier);
      if (m < 0)
        return CLATTN_ERROR_OPENCL;
      if (m) {
        *index = i;
        return CLATTN_SUCCESS;
      }
    }
  }
  return CLATTN_ERROR_DEVICE_NOT_FOUND;
}
