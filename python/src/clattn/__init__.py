"""clattn: attention operators (softmax, sigmoid, linear, cosFormer) on any
OpenCL device, for numpy arrays, PyTorch CPU tensors and pyopencl arrays.

    import numpy as np, clattn
    q = np.random.randn(1, 8, 1024, 64).astype(np.float32)
    o = clattn.attention(q, q, q, causal=True)            # softmax by default
    print(clattn.devices())

A thin ctypes binding over the clattn C library, which ships inside the
package. See clattn.attention for the options, clattn.torch for PyTorch.
"""
from ._lib import LIBRARY_PATH, lib as _clib
from ._errors import (
    BuildFailedError,
    DeviceNotFoundError,
    Error,
    InvalidBufferSizeError,
    InvalidDescriptorError,
    InvalidMemObjectError,
    InvalidValueError,
    IOFailedError,
    OpenCLError,
    OutOfHostMemoryError,
    OutOfResourcesError,
    UnsupportedError,
)
from ._core import (
    CacheInfo,
    Context,
    DeviceInfo,
    Plan,
    attention,
    cache_info,
    clear_cache,
    devices,
    find_device,
    get_plan,
    set_plan_cache_size,
)

__version__ = "0.1.0"


def library_version() -> str:
    """The version of the loaded C library, e.g. "0.1.0"."""
    return _clib.clattn_version_string().decode()


__all__ = [
    "attention",
    "devices",
    "find_device",
    "Context",
    "DeviceInfo",
    "Plan",
    "get_plan",
    "cache_info",
    "clear_cache",
    "set_plan_cache_size",
    "CacheInfo",
    "library_version",
    "LIBRARY_PATH",
    "Error",
    "BuildFailedError",
    "DeviceNotFoundError",
    "InvalidBufferSizeError",
    "InvalidDescriptorError",
    "InvalidMemObjectError",
    "InvalidValueError",
    "IOFailedError",
    "OpenCLError",
    "OutOfHostMemoryError",
    "OutOfResourcesError",
    "UnsupportedError",
]


def __getattr__(name: str):
    # clattn.torch imports PyTorch, so it loads on first use only.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'clattn' has no attribute {name!r}")
