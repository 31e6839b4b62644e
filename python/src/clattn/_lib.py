"""The ctypes view of include/clattn.h: the shared library, its structures
and the prototypes of the calls the package uses.

The structures mirror the header field for field; tests/test_abi.py compiles
a small C program against the header and checks every size and offset, so a
header change that this file misses fails the tests instead of corrupting
memory.
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys
from ctypes import (
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_float,
    c_int,
    c_size_t,
    c_uint,
    c_uint16,
    c_uint64,
    c_void_p,
)

cl_uint = c_uint
cl_ulong = c_uint64
cl_half = c_uint16

# Status codes: (name after "CLATTN_", value). The tests check each against
# clattn_status_name() of the loaded library.
STATUSES = (
    ("SUCCESS", 0),
    ("ERROR_DEVICE_NOT_FOUND", -1),
    ("ERROR_OUT_OF_RESOURCES", -5),
    ("ERROR_OUT_OF_HOST_MEMORY", -6),
    ("ERROR_BUILD_FAILED", -11),
    ("ERROR_INVALID_VALUE", -30),
    ("ERROR_INVALID_MEM_OBJECT", -38),
    ("ERROR_INVALID_BUFFER_SIZE", -61),
    ("ERROR_OPENCL", -1000),
    ("ERROR_INVALID_DESCRIPTOR", -1001),
    ("ERROR_UNSUPPORTED", -1002),
    ("ERROR_IO", -1003),
)

VARIANTS = {"softmax": 0, "sigmoid": 1, "linear": 2, "cosformer": 3}
DTYPES = {"f32": 0, "f16": 1, "bf16": 2}
FEATURE_MAPS = {"default": 0, "elu1": 1, "relu": 2}

CONTEXT_PROFILING = 1

CL_DEVICE_TYPE_CPU = 1 << 1
CL_DEVICE_TYPE_GPU = 1 << 2
CL_DEVICE_TYPE_ACCELERATOR = 1 << 3


class DeviceProfile(Structure):
    _fields_ = [
        ("index", cl_uint),
        ("platform_index", cl_uint),
        ("device_index", cl_uint),
        ("platform", c_void_p),
        ("device", c_void_p),
        ("platform_name", c_char * 128),
        ("platform_version", c_char * 128),
        ("name", c_char * 128),
        ("vendor", c_char * 128),
        ("driver_version", c_char * 128),
        ("device_version", c_char * 128),
        ("c_version", c_char * 128),
        ("vendor_id", cl_uint),
        ("type", cl_ulong),
        ("is_cpu", c_int),
        ("is_gpu", c_int),
        ("compute_units", cl_uint),
        ("max_work_group_size", c_size_t),
        ("local_mem_size", cl_ulong),
        ("local_mem_is_real", c_int),
        ("global_mem_size", cl_ulong),
        ("max_mem_alloc_size", cl_ulong),
        ("preferred_vector_width_float", cl_uint),
        ("native_vector_width_float", cl_uint),
        ("has_fp16", c_int),
        ("has_subgroups", c_int),
        ("c_major", c_int),
        ("c_minor", c_int),
        ("extensions", c_char * 4096),
    ]


class Desc(Structure):
    _fields_ = [
        ("variant", c_int),
        ("dtype", c_int),
        ("batch", c_size_t),
        ("heads_q", c_size_t),
        ("heads_kv", c_size_t),
        ("seq_q", c_size_t),
        ("seq_k", c_size_t),
        ("dim", c_size_t),
        ("dim_v", c_size_t),
        ("causal", c_int),
        ("scale", c_float),
        ("has_bias", c_int),
        ("bias", c_float),
        ("feature_map", c_int),
        ("eps", c_float),
        ("cos_m", c_float),
        ("window_left", c_int),
        ("window_right", c_int),
        ("softcap", c_float),
        ("alibi_slopes", POINTER(c_float)),
        ("score_mod", c_char_p),
        ("mask_mod", c_char_p),
        ("tiles", c_char_p),
    ]


class _PaddedDesc(Structure):
    # clattn_desc_init writes the C struct whole: the padding keeps a library
    # newer than this file from writing past the Python object.
    _fields_ = [("desc", Desc), ("_pad", c_char * 512)]


def new_desc() -> Desc:
    holder = _PaddedDesc()
    desc = holder.desc
    desc._holder = holder  # keeps the padded memory alive
    return desc


def _candidates() -> list:
    env = os.environ.get("CLATTN_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.platform == "win32":
        pats = ["clattn.dll", "libclattn.dll"]
    elif sys.platform == "darwin":
        pats = ["libclattn*.dylib"]
    else:
        pats = ["libclattn.so", "libclattn.so.*"]
    found = []
    for pat in pats:
        found += sorted(glob.glob(os.path.join(here, pat)))
    return found


def _load() -> ctypes.CDLL:
    paths = _candidates()
    if not paths:
        raise ImportError(
            "clattn: the shared library is not next to the package (was it "
            "installed with `pip install ./python`?); CLATTN_LIBRARY may name "
            "one"
        )
    errors = []
    for path in paths:
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise ImportError("clattn: could not load the library: " + "; ".join(errors))


lib = _load()
LIBRARY_PATH = lib._name


def _proto(name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


c_context = c_void_p
c_plan = c_void_p

_proto("clattn_status_name", c_char_p, c_int)
_proto("clattn_status_string", c_char_p, c_int)
_proto("clattn_version", c_uint)
_proto("clattn_version_string", c_char_p)
_proto("clattn_device_count", c_int, POINTER(cl_uint))
_proto("clattn_device_profile_get", c_int, cl_uint, POINTER(DeviceProfile))
_proto("clattn_device_find", c_int, c_char_p, POINTER(cl_uint))
_proto("clattn_context_create", c_int, POINTER(c_context), c_char_p, c_uint)
_proto(
    "clattn_context_create_from_cl",
    c_int,
    POINTER(c_context),
    c_void_p,
    c_void_p,
    c_void_p,
)
_proto("clattn_context_destroy", None, c_context)
_proto("clattn_context_error_copy", c_size_t, c_context, c_char_p, c_size_t)
_proto("clattn_context_cl", c_void_p, c_context)
_proto("clattn_context_device", c_void_p, c_context)
_proto("clattn_context_queue", c_void_p, c_context)
_proto("clattn_context_profile", c_int, c_context, POINTER(DeviceProfile))
_proto("clattn_desc_init", None, POINTER(Desc), c_int)
_proto("clattn_plan_create", c_int, c_context, POINTER(Desc), POINTER(c_plan))
_proto("clattn_plan_destroy", None, c_plan)
_proto(
    "clattn_plan_run",
    c_int,
    c_plan,
    c_void_p,
    c_void_p,
    c_void_p,
    c_void_p,
    c_void_p,
    cl_uint,
    POINTER(c_void_p),
    POINTER(c_void_p),
)
_proto(
    "clattn_plan_run_varlen",
    c_int,
    c_plan,
    *([c_void_p] * 7),
    cl_uint,
    POINTER(c_void_p),
    POINTER(c_void_p),
)
_proto(
    "clattn_plan_run_host_raw",
    c_int,
    c_plan,
    c_void_p,
    c_void_p,
    c_void_p,
    c_void_p,
    c_void_p,
)
_proto(
    "clattn_plan_run_host",
    c_int,
    c_plan,
    c_void_p,
    c_void_p,
    c_void_p,
    c_void_p,
    c_void_p,
)
_proto(
    "clattn_plan_backward_host",
    c_int,
    c_plan,
    *([c_void_p] * 9),
)
_proto(
    "clattn_plan_run_host_raw_varlen",
    c_int,
    c_plan,
    *([c_void_p] * 7),
)
_proto(
    "clattn_plan_backward_host_varlen",
    c_int,
    c_plan,
    *([c_void_p] * 11),
)
_proto("clattn_convert_from_f32", c_int, c_int, c_void_p, c_void_p, c_size_t)
_proto("clattn_convert_to_f32", c_int, c_int, c_void_p, c_void_p, c_size_t)
_proto("clattn_plan_device_bytes", c_size_t, c_plan)
_proto("clattn_plan_describe", c_size_t, c_plan, c_char_p, c_size_t)
# The OpenCL calls the package needs itself come through the loader the
# library links (its dependency, so the same handle finds them).
_proto("clFinish", c_int, c_void_p)
