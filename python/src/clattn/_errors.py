"""clattn.Error and one subclass per status of the C library.

A failing C call raises the subclass of its status, carrying the status
name and the context's message (with the compiler's build log when a kernel
failed to build). Statuses that mean "the caller passed something wrong"
also derive from ValueError, running out of host memory from MemoryError,
and "not supported" from NotImplementedError, so that ordinary ``except``
clauses catch them.
"""
from __future__ import annotations

from typing import Dict, Optional, Type

from ._lib import STATUSES, lib


class Error(Exception):
    """A clattn call failed.

    Attributes:
        status: the numeric status (``clattn_status``), e.g. -11.
        name: its name, e.g. ``"CLATTN_ERROR_BUILD_FAILED"``.
        message: what the context said about it (build log included).
    """

    status: int = 0
    name: str = "CLATTN_UNKNOWN_STATUS"

    def __init__(self, status: int, message: str = "", name: Optional[str] = None):
        self.status = int(status)
        if name is None:
            raw = lib.clattn_status_name(self.status)
            name = raw.decode() if raw else "CLATTN_UNKNOWN_STATUS"
        self.name = name
        self.message = message
        text = f"{name}: {message}" if message else name
        super().__init__(text)

    def __reduce__(self):
        return (type(self), (self.status, self.message, self.name))


class DeviceNotFoundError(Error):
    """No OpenCL device matches the selector."""


class OutOfResourcesError(Error):
    """The device ran out of resources."""


class OutOfHostMemoryError(Error, MemoryError):
    """The host ran out of memory."""


class BuildFailedError(Error):
    """A kernel failed to build; ``message`` holds the build log."""


class InvalidValueError(Error, ValueError):
    """An argument of a clattn call was invalid."""


class InvalidMemObjectError(Error, ValueError):
    """A buffer was not valid, or belonged to another OpenCL context."""


class InvalidBufferSizeError(Error, ValueError):
    """A buffer was too small for the shapes."""


class OpenCLError(Error):
    """An OpenCL call failed; the message names it and its error code."""


class InvalidDescriptorError(Error, ValueError):
    """The problem (shapes, options) is not valid; the message names the field."""


class UnsupportedError(Error, NotImplementedError):
    """Not supported (on this device, or by this clattn)."""


class IOFailedError(Error):
    """File input or output failed (the program cache, the tuning file)."""


_BY_NAME: Dict[str, Type[Error]] = {
    "ERROR_DEVICE_NOT_FOUND": DeviceNotFoundError,
    "ERROR_OUT_OF_RESOURCES": OutOfResourcesError,
    "ERROR_OUT_OF_HOST_MEMORY": OutOfHostMemoryError,
    "ERROR_BUILD_FAILED": BuildFailedError,
    "ERROR_INVALID_VALUE": InvalidValueError,
    "ERROR_INVALID_MEM_OBJECT": InvalidMemObjectError,
    "ERROR_INVALID_BUFFER_SIZE": InvalidBufferSizeError,
    "ERROR_OPENCL": OpenCLError,
    "ERROR_INVALID_DESCRIPTOR": InvalidDescriptorError,
    "ERROR_UNSUPPORTED": UnsupportedError,
    "ERROR_IO": IOFailedError,
}

ERROR_CLASSES: Dict[int, Type[Error]] = {
    value: _BY_NAME[name] for name, value in STATUSES if name != "SUCCESS"
}
for _cls_status_name, _cls_status in STATUSES:
    if _cls_status_name in _BY_NAME:
        _BY_NAME[_cls_status_name].status = _cls_status
        _BY_NAME[_cls_status_name].name = "CLATTN_" + _cls_status_name


def error_for(status: int, message: str = "") -> Error:
    """The exception for a failing status (Error itself for an unknown one)."""
    return ERROR_CLASSES.get(int(status), Error)(status, message)
