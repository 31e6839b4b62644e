"""Devices, contexts, plans and their caches, and clattn.attention.

A call goes: check the arrays (kind, rank, dtype, shapes) in Python, before
any device work; find the context of the device (cached per device); find
the plan of (context, storage dtype, shapes, options) (cached, LRU); run it.
Host arrays go through clattn_plan_run_host_raw, pyopencl arrays through
clattn_plan_run on the caller's queue, and PyTorch tensors through the host
path inside a torch.autograd.Function (clattn/torch.py).

Handles are destroyed only when the last Python reference goes (``__del__``),
so a thread still running a plan keeps it, and its context, alive even when
the cache drops them.
"""
from __future__ import annotations

import atexit
import collections
import ctypes
import dataclasses
import math
import os
import sys
import threading
from ctypes import byref, c_uint, c_void_p
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from . import _lib
from ._errors import Error, error_for
from ._lib import lib

# ---- Names, dtypes ---------------------------------------------------------

#: Storage dtypes the C library has, by clattn's name, as numpy holds them on
#: the host: bf16 as its raw bits (numpy has no bfloat16).
_STORAGE_NP = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": np.dtype(np.uint16),
}
_DTYPE_ALIASES = {
    "f32": "f32",
    "float32": "f32",
    "float": "f32",
    "f16": "f16",
    "float16": "f16",
    "half": "f16",
    "bf16": "bf16",
    "bfloat16": "bf16",
}


def _dtype_name(dtype: Any) -> str:
    """'f32', 'f16' or 'bf16' for a name, a numpy dtype or a torch dtype."""
    if isinstance(dtype, str):
        key = dtype.lower()
    else:
        text = str(dtype)
        key = text[len("torch."):] if text.startswith("torch.") else None
        if key is None:
            try:
                key = np.dtype(dtype).name
            except TypeError:
                key = text
    name = _DTYPE_ALIASES.get(key)
    if name is None:
        raise TypeError(
            f"clattn: unsupported dtype {dtype!r}; clattn takes float32, "
            "float16 and bfloat16 data"
        )
    return name


def _storage_for(input_dtype: str, requested: Any) -> str:
    """The device storage dtype of a call: by default the input's own.
    Should a library without bf16 storage be loaded, bfloat16 data is stored
    as float32 (every bfloat16 is a float32, so only memory traffic
    differs)."""
    name = input_dtype if requested is None else _dtype_name(requested)
    if name == "bf16" and "bf16" not in _lib.DTYPES:
        if requested is not None:
            raise ValueError(
                "clattn: dtype='bf16' storage is not in this clattn library "
                "yet; bfloat16 inputs run with float32 storage by default"
            )
        name = "f32"
    return name


def _check(status: int, ctx: Optional["Context"] = None) -> None:
    if status != 0:
        raise error_for(status, ctx.error_message() if ctx is not None else "")


# ---- Devices ----------------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """What clattn reads of an OpenCL device (``clattn_device_profile``).

    ``index`` (or ``selector``, "platform:device") selects it as
    ``device=`` or ``CLATTN_DEVICE`` does. ``str()`` gives the multi-line
    listing clattn-info prints."""

    index: int
    platform_index: int
    device_index: int
    name: str
    vendor: str
    vendor_id: int
    platform: str
    platform_version: str
    driver: str
    device_version: str
    opencl_c: str
    opencl_c_version: Tuple[int, int]
    device_type: str
    compute_units: int
    max_work_group_size: int
    local_mem_bytes: int
    local_mem_is_real: bool
    global_mem_bytes: int
    max_alloc_bytes: int
    preferred_vector_width_float: int
    native_vector_width_float: int
    has_fp16: bool
    has_subgroups: bool
    extensions: Tuple[str, ...] = dataclasses.field(repr=False)

    @property
    def selector(self) -> str:
        return f"{self.platform_index}:{self.device_index}"

    @classmethod
    def _from_profile(cls, p: _lib.DeviceProfile) -> "DeviceInfo":
        if p.is_gpu:
            kind = "gpu"
        elif p.is_cpu:
            kind = "cpu"
        elif p.type & _lib.CL_DEVICE_TYPE_ACCELERATOR:
            kind = "accelerator"
        else:
            kind = "other"
        return cls(
            index=p.index,
            platform_index=p.platform_index,
            device_index=p.device_index,
            name=_text(p.name),
            vendor=_text(p.vendor),
            vendor_id=p.vendor_id,
            platform=_text(p.platform_name),
            platform_version=_text(p.platform_version),
            driver=_text(p.driver_version),
            device_version=_text(p.device_version),
            opencl_c=_text(p.c_version),
            opencl_c_version=(p.c_major, p.c_minor),
            device_type=kind,
            compute_units=p.compute_units,
            max_work_group_size=p.max_work_group_size,
            local_mem_bytes=p.local_mem_size,
            local_mem_is_real=bool(p.local_mem_is_real),
            global_mem_bytes=p.global_mem_size,
            max_alloc_bytes=p.max_mem_alloc_size,
            preferred_vector_width_float=p.preferred_vector_width_float,
            native_vector_width_float=p.native_vector_width_float,
            has_fp16=bool(p.has_fp16),
            has_subgroups=bool(p.has_subgroups),
            extensions=tuple(_text(p.extensions).split()),
        )

    def __str__(self) -> str:
        local = "real" if self.local_mem_is_real else "emulated in global memory"
        return "\n".join(
            [
                f"device {self.index} ({self.selector}): {self.name}",
                f"  platform        {self.platform} ({self.platform_version})",
                f"  vendor          {self.vendor} (0x{self.vendor_id:x})",
                f"  type            {self.device_type}",
                f"  version         {self.device_version}; driver {self.driver}",
                f"  OpenCL C        {self.opencl_c} "
                f"({self.opencl_c_version[0]}.{self.opencl_c_version[1]})",
                f"  compute units   {self.compute_units}",
                f"  max work-group  {self.max_work_group_size}",
                f"  local memory    {self.local_mem_bytes // 1024} KiB ({local})",
                f"  global memory   {self.global_mem_bytes >> 20} MiB; "
                f"max allocation {self.max_alloc_bytes >> 20} MiB",
                f"  float vectors   preferred {self.preferred_vector_width_float}"
                f", native {self.native_vector_width_float}",
                f"  fp16            {'yes' if self.has_fp16 else 'no'}; "
                f"subgroups {'yes' if self.has_subgroups else 'no'}",
                f"  extensions      {' '.join(self.extensions)}",
            ]
        )


def devices() -> List[DeviceInfo]:
    """Every OpenCL device over all platforms, with the profile clattn reads
    of it (as clattn-info lists them). An empty list when there is no
    OpenCL platform at all."""
    count = c_uint(0)
    _check(lib.clattn_device_count(byref(count)))
    out = []
    for i in range(count.value):
        prof = _lib.DeviceProfile()
        _check(lib.clattn_device_profile_get(i, byref(prof)))
        out.append(DeviceInfo._from_profile(prof))
    return out


def find_device(device: Union[None, str, int] = None) -> int:
    """The global index the selector names (see ``CLATTN_DEVICE``); None
    means CLATTN_DEVICE from the environment, else the first GPU, else the
    first device. Raises DeviceNotFoundError when nothing matches."""
    sel = _selector_bytes(device)
    index = c_uint(0)
    status = lib.clattn_device_find(sel, byref(index))
    if status != 0:
        raise error_for(status, f"no OpenCL device matches {device!r}")
    return index.value


def _selector_bytes(device: Union[None, str, int]) -> Optional[bytes]:
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (str, int)):
        raise TypeError(
            "clattn: device must be None, a selector string or index (as "
            "CLATTN_DEVICE takes), a clattn.Context or a pyopencl "
            f"CommandQueue; got {type(device).__name__}"
        )
    if isinstance(device, int) and device < 0:
        raise ValueError(f"clattn: device index {device} is negative")
    return str(device).encode()


# ---- Contexts ---------------------------------------------------------------


class Context:
    """A clattn context: an OpenCL context, device and command queue.

    ``Context(device)`` opens its own on the device the selector names;
    ``Context.from_cl(queue)`` adopts a caller's pyopencl queue (or raw
    ``cl_context``, ``cl_device_id`` and ``cl_command_queue`` pointers).
    Pass it as ``device=`` to share it between calls; ``attention`` otherwise
    keeps one cached context per device. The handle is released when the
    last reference goes."""

    def __init__(self, device: Union[None, str, int] = None, *, profiling: bool = False):
        sel = _selector_bytes(device)
        self._handle: Optional[int] = None
        self._async = False
        handle = c_void_p()
        flags = _lib.CONTEXT_PROFILING if profiling else 0
        status = lib.clattn_context_create(byref(handle), sel, flags)
        self._handle = handle.value
        if status != 0:
            message = self.error_message()
            self._destroy()
            raise error_for(status, message)

    @classmethod
    def from_cl(cls, queue: Any, context: Any = None, device: Any = None) -> "Context":
        """Adopts a caller's OpenCL queue (``clattn_context_create_from_cl``).

        ``queue`` is a pyopencl CommandQueue, whose context and device are
        used, or a raw ``cl_command_queue`` pointer (int) with ``context``
        and ``device`` pointers. clattn retains the objects; kernels run on
        that queue, after the events pyopencl arrays carry."""
        q_ptr = getattr(queue, "int_ptr", queue)
        if context is None and hasattr(queue, "context"):
            context = queue.context
        if device is None and hasattr(queue, "device"):
            device = queue.device
        c_ptr = getattr(context, "int_ptr", context)
        d_ptr = getattr(device, "int_ptr", device)
        for name, ptr in (("queue", q_ptr), ("context", c_ptr), ("device", d_ptr)):
            if not isinstance(ptr, int) or isinstance(ptr, bool) or ptr == 0:
                raise TypeError(
                    f"clattn: Context.from_cl needs a pyopencl {name} or its "
                    f"int_ptr; got {ptr!r}"
                )
        self = cls.__new__(cls)
        self._handle = None
        self._async = True
        handle = c_void_p()
        status = lib.clattn_context_create_from_cl(byref(handle), c_ptr, d_ptr, q_ptr)
        self._handle = handle.value
        if status != 0:
            message = self.error_message()
            self._destroy()
            raise error_for(status, message)
        return self

    @property
    def handle(self) -> int:
        """The ``clattn_context_t`` pointer."""
        if not self._handle:
            raise ValueError("clattn: the context is closed")
        return self._handle

    @property
    def device(self) -> DeviceInfo:
        """The profile of the context's device."""
        prof = _lib.DeviceProfile()
        _check(lib.clattn_context_profile(self.handle, byref(prof)), self)
        return DeviceInfo._from_profile(prof)

    def cl_pointers(self) -> Tuple[int, int, int]:
        """The context's ``cl_context``, ``cl_device_id`` and
        ``cl_command_queue`` as ints (for pyopencl's ``from_int_ptr``)."""
        h = self.handle
        return (
            lib.clattn_context_cl(h) or 0,
            lib.clattn_context_device(h) or 0,
            lib.clattn_context_queue(h) or 0,
        )

    def error_message(self) -> str:
        """The context's message of its last failure ("" if none)."""
        if not self._handle:
            return ""
        size = lib.clattn_context_error_copy(self._handle, None, 0)
        buf = ctypes.create_string_buffer(size + 1)
        lib.clattn_context_error_copy(self._handle, buf, size + 1)
        return _text(buf.value)

    def _destroy(self) -> None:
        handle, self._handle = self._handle, None
        if handle:
            lib.clattn_context_destroy(handle)

    def __del__(self) -> None:
        try:
            self._destroy()
        except Exception:  # interpreter shutdown: nothing left to report to
            pass

    def __repr__(self) -> str:
        if not self._handle:
            return "<clattn.Context closed>"
        return f"<clattn.Context on {self.device.name!r}>"


# ---- Options and plans ------------------------------------------------------


class _Options(NamedTuple):
    """The options of a call that go into the plan's descriptor. A new
    descriptor option is one field here and one line in _fill_desc."""

    variant: str
    causal: bool
    scale: Optional[float]
    bias: Optional[float]
    feature_map: Optional[str]
    eps: Optional[float]
    cos_m: Optional[float]
    tiles: Optional[str]
    # The score pipeline (softmax and sigmoid); None = off.
    window: Optional[Tuple[int, int]] = None
    softcap: Optional[float] = None
    alibi_slopes: Optional[Tuple[float, ...]] = None
    score_mod: Optional[str] = None
    mask_mod: Optional[str] = None


def _positive(name: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"clattn: {name} must be a number, not {type(value).__name__}")
    x = float(value)
    if not math.isfinite(x) or x <= 0.0:
        raise ValueError(f"clattn: {name} must be finite and positive; got {value!r}")
    return x


def _window(window: Any) -> Optional[Tuple[int, int]]:
    if window is None:
        return None
    try:
        left, right = window
    except (TypeError, ValueError):
        raise TypeError(
            "clattn: window must be a pair (left, right) of ints, -1 for "
            f"unbounded; got {window!r}"
        ) from None
    out = []
    for side, x in (("left", left), ("right", right)):
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise TypeError(f"clattn: window {side} must be an int, not {type(x).__name__}")
        if x < -1 or x > 2**31 - 1:
            raise ValueError(
                f"clattn: window {side} must be -1 (unbounded) or at least 0; got {x}"
            )
        out.append(int(x))
    if out == [-1, -1]:
        return None
    return (out[0], out[1])


def _slopes(alibi_slopes: Any) -> Optional[Tuple[float, ...]]:
    if alibi_slopes is None:
        return None
    if hasattr(alibi_slopes, "detach"):  # a tensor
        alibi_slopes = alibi_slopes.detach().cpu().numpy()
    a = np.asarray(alibi_slopes)
    if a.ndim != 1 or a.dtype.kind not in "iuf":
        raise ValueError(
            "clattn: alibi_slopes must be a 1-D array of numbers, one per query "
            f"head; got shape {a.shape} of {a.dtype}"
        )
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError("clattn: alibi_slopes must be finite")
    return tuple(float(x) for x in a)


def _mod(name: str, text: Any) -> Optional[str]:
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"clattn: {name} must be a string (an OpenCL C expression)")
    if not text.strip():
        raise ValueError(f"clattn: {name} must not be empty")
    return text


def _make_options(
    variant: str,
    causal: bool,
    scale: Any,
    bias: Any,
    feature_map: Any,
    eps: Any,
    cos_m: Any,
    tiles: Any,
    window: Any = None,
    softcap: Any = None,
    alibi_slopes: Any = None,
    score_mod: Any = None,
    mask_mod: Any = None,
) -> _Options:
    if not isinstance(variant, str) or variant.lower() not in _lib.VARIANTS:
        raise ValueError(
            f"clattn: unknown variant {variant!r}; one of "
            + ", ".join(_lib.VARIANTS)
        )
    if bias is not None:
        if isinstance(bias, bool) or not isinstance(bias, (int, float, np.floating, np.integer)):
            raise TypeError(f"clattn: bias must be a number, not {type(bias).__name__}")
        bias = float(bias)
        if not math.isfinite(bias):
            raise ValueError(f"clattn: bias must be finite; got {bias!r}")
    if feature_map is not None:
        if not isinstance(feature_map, str) or feature_map.lower() not in _lib.FEATURE_MAPS:
            raise ValueError(
                f"clattn: unknown feature_map {feature_map!r}; one of elu1, relu"
            )
        feature_map = feature_map.lower()
    if tiles is not None and not isinstance(tiles, str):
        raise TypeError("clattn: tiles must be a string like 'SHAPE=cpu,BQ=4'")
    return _Options(
        variant=variant.lower(),
        causal=bool(causal),
        scale=_positive("scale", scale),
        bias=bias,
        feature_map=feature_map,
        eps=_positive("eps", eps),
        cos_m=_positive("cos_m", cos_m),
        tiles=tiles,
        window=_window(window),
        softcap=_positive("softcap", softcap),
        alibi_slopes=_slopes(alibi_slopes),
        score_mod=_mod("score_mod", score_mod),
        mask_mod=_mod("mask_mod", mask_mod),
    )


def _check_for_shape(opts: _Options, shape: "_Shape") -> None:
    """Checks of options against the shapes (the C library reads Hq
    slopes)."""
    if opts.alibi_slopes is not None and len(opts.alibi_slopes) != shape.heads_q:
        raise ValueError(
            f"clattn: alibi_slopes has {len(opts.alibi_slopes)} entries; it "
            f"needs one per query head, {shape.heads_q}"
        )


def _lengths(name: str, lens: Any, batch: int, limit: int) -> Optional[np.ndarray]:
    """Per-sequence lengths as a C-contiguous int32 array [B], each in
    0..limit; None stays None."""
    if lens is None:
        return None
    if hasattr(lens, "detach"):  # a tensor
        lens = lens.detach().cpu().numpy()
    a = np.asarray(lens)
    if a.dtype.kind not in "iu" or a.ndim != 1:
        raise ValueError(
            f"clattn: {name} must be a 1-D array of ints, one per sequence; got "
            f"shape {a.shape} of {a.dtype}"
        )
    if a.shape[0] != batch:
        raise ValueError(
            f"clattn: {name} has {a.shape[0]} entries; the batch has {batch}"
        )
    bad = np.nonzero((a < 0) | (a > limit))[0]
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"clattn: {name}[{i}] = {int(a[i])} is outside 0..{limit}"
        )
    return np.ascontiguousarray(a, dtype=np.int32)


class _Shape(NamedTuple):
    batch: int
    heads_q: int
    heads_kv: int
    seq_q: int
    seq_k: int
    dim: int
    dim_v: int


def _fill_desc(desc: _lib.Desc, opts: _Options, shape: _Shape, storage: str) -> None:
    lib.clattn_desc_init(byref(desc), _lib.VARIANTS[opts.variant])
    desc.dtype = _lib.DTYPES[storage]
    (desc.batch, desc.heads_q, desc.heads_kv, desc.seq_q, desc.seq_k, desc.dim,
     desc.dim_v) = shape
    desc.causal = 1 if opts.causal else 0
    if opts.scale is not None:
        desc.scale = opts.scale
    if opts.bias is not None:
        desc.has_bias = 1
        desc.bias = opts.bias
    if opts.feature_map is not None:
        desc.feature_map = _lib.FEATURE_MAPS[opts.feature_map]
    if opts.eps is not None:
        desc.eps = opts.eps
    if opts.cos_m is not None:
        desc.cos_m = opts.cos_m
    if opts.tiles is not None:
        desc.tiles = opts.tiles.encode()
    if opts.window is not None:
        desc.window_left, desc.window_right = opts.window
    if opts.softcap is not None:
        desc.softcap = opts.softcap
    if opts.alibi_slopes is not None:
        # ctypes keeps the array alive with the structure; the library copies
        # the slopes at plan creation.
        slopes = (ctypes.c_float * len(opts.alibi_slopes))(*opts.alibi_slopes)
        desc.alibi_slopes = ctypes.cast(slopes, ctypes.POINTER(ctypes.c_float))
        desc._slopes = slopes
    if opts.score_mod is not None:
        desc.score_mod = opts.score_mod.encode()
    if opts.mask_mod is not None:
        desc.mask_mod = opts.mask_mod.encode()


class Plan:
    """One built clattn plan (``clattn_plan_t``) on a context. Made and
    cached by ``attention``; ``describe()`` says which kernel shape and
    tiles it chose."""

    def __init__(self, ctx: Context, opts: _Options, shape: _Shape, storage: str):
        self._handle: Optional[int] = None
        self.context = ctx  # outlives the plan: destroyed after it
        self.options = opts
        self.shape = shape
        self.storage = storage
        desc = _lib.new_desc()
        _fill_desc(desc, opts, shape, storage)
        handle = c_void_p()
        status = lib.clattn_plan_create(ctx.handle, byref(desc), byref(handle))
        self._handle = handle.value
        _check(status, ctx)

    @property
    def handle(self) -> int:
        return self._handle  # type: ignore[return-value]

    def describe(self) -> str:
        size = lib.clattn_plan_describe(self._handle, None, 0)
        buf = ctypes.create_string_buffer(size + 1)
        lib.clattn_plan_describe(self._handle, buf, size + 1)
        return _text(buf.value)

    @property
    def device_bytes(self) -> int:
        return lib.clattn_plan_device_bytes(self._handle)

    def __del__(self) -> None:
        try:
            handle, self._handle = self._handle, None
            if handle:
                if self.context._async:
                    # Kernels enqueued on a caller's queue may still run.
                    lib.clFinish(lib.clattn_context_queue(self.context.handle))
                lib.clattn_plan_destroy(handle)
        except Exception:  # interpreter shutdown
            pass


# ---- Caches -----------------------------------------------------------------


class CacheInfo(NamedTuple):
    """Counters of the context and plan caches since the last clear_cache().

    ``misses`` counts plans built; a loop of calls with one shape and one set
    of options shows one miss and then only hits."""

    hits: int
    misses: int
    plans: int
    maxsize: int
    contexts: int
    contexts_created: int


_lock = threading.Lock()
_contexts: Dict[Any, Context] = {}
_device_index: Dict[Tuple[Any, Optional[str]], int] = {}
_plans: "collections.OrderedDict[Any, Plan]" = collections.OrderedDict()
_building: Dict[Any, threading.Lock] = {}
_stats = {"hits": 0, "misses": 0, "contexts_created": 0}
_maxsize = int(os.environ.get("CLATTN_PY_PLAN_CACHE", "64") or 64)


def cache_info() -> CacheInfo:
    """The cache counters (see CacheInfo)."""
    with _lock:
        return CacheInfo(
            hits=_stats["hits"],
            misses=_stats["misses"],
            plans=len(_plans),
            maxsize=_maxsize,
            contexts=len(_contexts),
            contexts_created=_stats["contexts_created"],
        )


def clear_cache() -> None:
    """Drops every cached plan and context and zeroes the counters. Their
    handles are released once no running call holds them."""
    with _lock:
        _plans.clear()
        _contexts.clear()
        _device_index.clear()
        for key in _stats:
            _stats[key] = 0


def set_plan_cache_size(maxsize: int) -> None:
    """How many plans stay cached (least recently used go first; default 64,
    or CLATTN_PY_PLAN_CACHE)."""
    global _maxsize
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
        raise ValueError("clattn: the plan cache size must be an int >= 0")
    with _lock:
        _maxsize = maxsize
        while len(_plans) > _maxsize:
            _plans.popitem(last=False)


atexit.register(clear_cache)


def _context_for(device: Any) -> Context:
    """The cached context of a selector (None, str, int) or a pyopencl
    queue; a Context passes through."""
    if isinstance(device, Context):
        return device
    if hasattr(device, "int_ptr") and hasattr(device, "device"):
        key: Any = ("cl", device.int_ptr)
        with _lock:
            ctx = _contexts.get(key)
        if ctx is None:
            ctx = Context.from_cl(device)
            with _lock:
                ctx = _contexts.setdefault(key, ctx)
                _stats["contexts_created"] += 1
        return ctx
    env = os.environ.get("CLATTN_DEVICE") if device is None else None
    with _lock:
        index = _device_index.get((device, env))
    if index is None:
        index = find_device(device)
        with _lock:
            _device_index[(device, env)] = index
    key = ("index", index)
    with _lock:
        ctx = _contexts.get(key)
    if ctx is None:
        ctx = Context(index)
        with _lock:
            if key in _contexts:
                ctx = _contexts[key]
            else:
                _contexts[key] = ctx
                _stats["contexts_created"] += 1
    return ctx


def _plan_for(ctx: Context, opts: _Options, shape: _Shape, storage: str) -> Plan:
    key = (id(ctx), storage, shape, opts)
    with _lock:
        plan = _plans.get(key)
        if plan is not None and plan.context is ctx:
            _plans.move_to_end(key)
            _stats["hits"] += 1
            return plan
        building = _building.setdefault(key, threading.Lock())
    # One thread builds a new plan; others asking for it wait for that one.
    with building:
        with _lock:
            plan = _plans.get(key)
            if plan is not None and plan.context is ctx:
                _stats["hits"] += 1
                return plan
        try:
            plan = Plan(ctx, opts, shape, storage)
        finally:
            with _lock:
                _building.pop(key, None)
        with _lock:
            _stats["misses"] += 1
            if _maxsize > 0:
                _plans[key] = plan
                while len(_plans) > _maxsize:
                    _plans.popitem(last=False)
        return plan


def get_plan(
    q_shape: Tuple[int, ...],
    k_shape: Tuple[int, ...],
    v_shape: Tuple[int, ...],
    *,
    variant: str = "softmax",
    causal: bool = False,
    scale: Optional[float] = None,
    bias: Optional[float] = None,
    feature_map: Optional[str] = None,
    eps: Optional[float] = None,
    cos_m: Optional[float] = None,
    dtype: Any = "f32",
    tiles: Optional[str] = None,
    device: Any = None,
    window: Optional[Tuple[int, int]] = None,
    alibi_slopes: Any = None,
    softcap: Optional[float] = None,
    score_mod: Optional[str] = None,
    mask_mod: Optional[str] = None,
) -> Plan:
    """The (cached) plan ``attention`` uses for these shapes and options,
    e.g. to read ``describe()``. Lengths are per call, not part of a plan."""
    shape = _shapes(tuple(q_shape), tuple(k_shape), tuple(v_shape))
    opts = _make_options(variant, causal, scale, bias, feature_map, eps, cos_m, tiles,
                         window, softcap, alibi_slopes, score_mod, mask_mod)
    _check_for_shape(opts, shape)
    storage = _storage_for("f32", dtype)
    return _plan_for(_context_for(device), opts, shape, storage)


# ---- Input checks -----------------------------------------------------------


def _shapes(qs: Tuple[int, ...], ks: Tuple[int, ...], vs: Tuple[int, ...]) -> _Shape:
    for name, s in (("q", qs), ("k", ks), ("v", vs)):
        if len(s) != 4:
            raise ValueError(
                f"clattn: {name} must have rank 4 [B, H, N, D]; got shape {tuple(s)}"
            )
        if any(int(x) <= 0 for x in s):
            raise ValueError(
                f"clattn: {name} has an empty dimension, shape {tuple(s)}; "
                "every size must be at least 1"
            )
    b, hq, nq, d = (int(x) for x in qs)
    bk, hkv, nk, dk = (int(x) for x in ks)
    bv, hv, nv, dv = (int(x) for x in vs)
    if not (b == bk == bv) or hkv != hv or nk != nv or d != dk:
        raise ValueError(
            "clattn: shapes do not match: q [B,Hq,Nq,D], k [B,Hkv,Nk,D] and "
            f"v [B,Hkv,Nk,Dv] expected; got q {tuple(qs)}, k {tuple(ks)}, "
            f"v {tuple(vs)}"
        )
    if hq % hkv != 0:
        raise ValueError(
            f"clattn: query heads ({hq}) must be a multiple of key/value heads "
            f"({hkv})"
        )
    return _Shape(b, hq, hkv, nq, nk, d, dv)


def _kind(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return "numpy"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    cla = sys.modules.get("pyopencl.array")
    if cla is not None and isinstance(x, cla.Array):
        return "pyopencl"
    raise TypeError(
        "clattn: q, k and v must be numpy arrays, PyTorch CPU tensors or "
        f"pyopencl arrays; got {type(x).__module__}.{type(x).__name__}"
    )


def _common_dtype(arrays: Tuple[Any, ...]) -> str:
    names = []
    for name, a in zip("qkv", arrays):
        try:
            names.append(_dtype_name(a.dtype))
        except TypeError:
            raise TypeError(
                f"clattn: {name} has dtype {a.dtype}; clattn takes float32, "
                "float16 and bfloat16 data (convert it first)"
            ) from None
    if len(set(names)) != 1:
        raise TypeError(
            "clattn: q, k and v must have one dtype; got "
            + ", ".join(str(a.dtype) for a in arrays)
        )
    return names[0]


# ---- Running ----------------------------------------------------------------


def _ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def run_host(
    plan: Plan,
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    want_lse: bool,
    out: Optional[np.ndarray] = None,
    lens: Tuple[Optional[np.ndarray], Optional[np.ndarray]] = (None, None),
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Runs a plan on numpy arrays already in its storage dtype and C order
    (clattn_plan_run_host_raw, or clattn_plan_run_host_raw_varlen with int32
    lengths from _lengths; blocking). Returns (out, lse or None)."""
    sh = plan.shape
    np_dtype = _STORAGE_NP[plan.storage]
    if out is None:
        out = np.empty((sh.batch, sh.heads_q, sh.seq_q, sh.dim_v), dtype=np_dtype)
    lse = np.empty((sh.batch, sh.heads_q, sh.seq_q), dtype=np.float32) if want_lse else None
    lse_ptr = _ptr(lse) if lse is not None else None
    if lens[0] is not None or lens[1] is not None:
        lq, lk = (_ptr(x) if x is not None else None for x in lens)
        status = lib.clattn_plan_run_host_raw_varlen(
            plan.handle, _ptr(q), _ptr(k), _ptr(v), _ptr(out), lse_ptr, lq, lk)
    else:
        status = lib.clattn_plan_run_host_raw(
            plan.handle, _ptr(q), _ptr(k), _ptr(v), _ptr(out), lse_ptr)
    _check(status, plan.context)
    return out, lse


def _host_array(a: np.ndarray, storage: str) -> np.ndarray:
    """a as C-contiguous host data in the storage dtype. Copies only when a
    is not C-contiguous, aligned, native-endian data of that dtype. For bf16
    storage, a uint16 array is taken as bf16 bits already (a bfloat16
    tensor's), and float data is rounded to nearest even by the C library's
    converter."""
    if storage != "bf16":
        return np.ascontiguousarray(a, dtype=_STORAGE_NP[storage])
    if a.dtype == np.uint16:
        return np.ascontiguousarray(a)
    f = np.ascontiguousarray(a, dtype=np.float32)
    bits = np.empty(f.shape, np.uint16)
    _check(lib.clattn_convert_from_f32(_lib.DTYPES["bf16"], _ptr(f), _ptr(bits), f.size))
    return bits


def _widen(o: np.ndarray, storage: str) -> np.ndarray:
    """Host output in the storage dtype as float data numpy can hold."""
    if storage != "bf16":
        return o
    f = np.empty(o.shape, np.float32)
    _check(lib.clattn_convert_to_f32(_lib.DTYPES["bf16"], _ptr(o), _ptr(f), o.size))
    return f


def _check_out(out: Any, kind: str, shape: Tuple[int, ...], dtype: Any) -> None:
    if out is None:
        return
    if kind == "torch":
        raise TypeError("clattn: out= is for numpy and pyopencl arrays, not tensors")
    if _kind(out) != kind:
        raise TypeError(f"clattn: out must be a {kind} array like q")
    if tuple(out.shape) != shape:
        raise ValueError(f"clattn: out has shape {tuple(out.shape)}; the output is {shape}")
    if out.dtype != dtype:
        raise TypeError(f"clattn: out has dtype {out.dtype}; the output has {dtype}")
    if not out.flags.c_contiguous:
        raise ValueError("clattn: out must be C-contiguous")


def attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    variant: str = "softmax",
    causal: bool = False,
    scale: Optional[float] = None,
    bias: Optional[float] = None,
    feature_map: Optional[str] = None,
    eps: Optional[float] = None,
    cos_m: Optional[float] = None,
    dtype: Any = None,
    return_lse: bool = False,
    device: Any = None,
    out: Any = None,
    tiles: Optional[str] = None,
    seq_lens_q: Any = None,
    seq_lens_k: Any = None,
    window: Optional[Tuple[int, int]] = None,
    alibi_slopes: Any = None,
    softcap: Optional[float] = None,
    score_mod: Optional[str] = None,
    mask_mod: Optional[str] = None,
) -> Any:
    """Attention of q [B, Hq, Nq, D], k [B, Hkv, Nk, D] and v [B, Hkv, Nk, Dv]
    into [B, Hq, Nq, Dv], on an OpenCL device.

    Args:
        q, k, v: numpy arrays, PyTorch CPU tensors or pyopencl arrays, all of
            one kind and one dtype (float32, float16 or bfloat16). Hq must be
            a multiple of Hkv (grouped-query attention). Host arrays that are
            not C-contiguous are copied first; pyopencl arrays must be
            C-contiguous.
        variant: "softmax", "sigmoid", "linear" or "cosformer".
        causal: bottom-right aligned causal mask (key j visible to query i
            when j <= i + Nk - Nq), in every variant.
        scale: score scale of softmax and sigmoid (default 1/sqrt(D)).
        bias: sigmoid's bias (default -ln(Nk)).
        feature_map: "elu1" or "relu" for linear (default elu1) and cosformer
            (default relu).
        eps: denominator epsilon of linear and cosformer (default 1e-6).
        cos_m: cosFormer's M (default max(Nq, Nk)).
        dtype: storage dtype on the device, "f32", "f16" or "bf16" (or a
            numpy or torch dtype); default the inputs' own. Arithmetic is
            float32 either way.
        return_lse: also return the log-sum-exp of each query row (softmax
            only; float32 [B, Hq, Nq], -inf for a row that sees no key).
        device: a selector as CLATTN_DEVICE takes ("pocl", "gpu", "1",
            "0:1" or an int), a clattn.Context, or a pyopencl CommandQueue;
            default: the arrays' queue for pyopencl arrays, else
            CLATTN_DEVICE, else the first GPU, else the first device.
        out: optional output array (numpy or pyopencl, C-contiguous, the
            output's shape and the inputs' dtype).
        tiles: tile override "SHAPE=cpu|gpu|row,NAME=VALUE,..." (see the C
            library's README); default: clattn chooses.
        seq_lens_q, seq_lens_k: per-sequence lengths of a padded batch, int
            array-likes of B entries in 0..Nq and 0..Nk (default: all full).
            Sequence b uses its first seq_lens_q[b] query rows and
            seq_lens_k[b] keys; rows past its length give 0 (LSE -inf) and
            zero gradients. Masks, windows, sigmoid's default bias and
            cosFormer's default M follow each sequence's lengths, so each
            gives what it gives alone. Every variant.
        window: (left, right) sliding window of softmax and sigmoid: key j
            is visible to query i when i' - left <= j <= i' + right, with
            i' = i + Lk - Lq; -1 leaves a side unbounded.
        alibi_slopes: ALiBi slopes of softmax and sigmoid, one per query
            head; the score of head h drops by slopes[h] * |i' - j|.
        softcap: score = softcap * tanh(score / softcap), softmax and
            sigmoid, > 0.
        score_mod: OpenCL C expression giving the new score from ``score``
            (float) and ``b``, ``h``, ``i``, ``j`` (int), e.g.
            "score - 0.1f * abs(i - j)"; softmax and sigmoid, no backward.
        mask_mod: OpenCL C condition over ``b``, ``h``, ``i``, ``j``; key j
            is dropped where it is false; softmax and sigmoid.

    Returns:
        The output, of the inputs' kind and dtype; with return_lse, the pair
        (output, lse). For PyTorch tensors that require grad the call is a
        torch.autograd.Function whose backward runs the C library's
        backward pass.

    Raises:
        TypeError, ValueError: bad inputs (kind, rank, dtype, shapes, options),
            before any device work.
        clattn.Error: a failing clattn call (a subclass per status), with the
            status name and the context's message, build log included.
    """
    arrays = (q, k, v)
    kinds = {_kind(a) for a in arrays}
    if len(kinds) != 1:
        raise TypeError(
            "clattn: q, k and v must be of one kind; got "
            + ", ".join(type(a).__name__ for a in arrays)
        )
    kind = kinds.pop()
    input_dtype = _common_dtype(arrays)
    shape = _shapes(tuple(q.shape), tuple(k.shape), tuple(v.shape))
    opts = _make_options(variant, causal, scale, bias, feature_map, eps, cos_m, tiles,
                         window, softcap, alibi_slopes, score_mod, mask_mod)
    _check_for_shape(opts, shape)
    lens = (_lengths("seq_lens_q", seq_lens_q, shape.batch, shape.seq_q),
            _lengths("seq_lens_k", seq_lens_k, shape.batch, shape.seq_k))
    if return_lse and opts.variant != "softmax":
        raise ValueError(f"clattn: return_lse is for softmax only, not {opts.variant}")
    storage = _storage_for(input_dtype, dtype)
    out_shape = (shape.batch, shape.heads_q, shape.seq_q, shape.dim_v)
    _check_out(out, kind, out_shape, q.dtype)
    if kind == "pyopencl":
        from . import _pyopencl

        return _pyopencl.attention(arrays, shape, opts, storage, return_lse, device, out,
                                   lens)
    if kind == "torch":
        from . import torch as _ctorch

        return _ctorch._attention(arrays, shape, opts, storage, return_lse, device, lens)
    plan = _plan_for(_context_for(device), opts, shape, storage)
    hq, hk, hv = (_host_array(a, storage) for a in arrays)
    direct = out is not None and storage != "bf16" and out.dtype == _STORAGE_NP[storage]
    o, lse = run_host(plan, hq, hk, hv, return_lse, out if direct else None, lens)
    o = _widen(o, storage)
    if out is not None and not direct:
        out[...] = o
        o = out
    elif o.dtype != q.dtype:
        o = o.astype(q.dtype)
    return (o, lse) if return_lse else o
