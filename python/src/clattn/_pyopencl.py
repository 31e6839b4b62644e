"""pyopencl arrays in and out: the plan runs on the arrays' own queue
(adopted with clattn_context_create_from_cl), after the events the arrays
carry, and the output carries the plan's event. Nothing is copied to the
host and nothing waits."""
from __future__ import annotations

from ctypes import byref, c_void_p
from typing import Any, Optional, Tuple

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from . import _core
from ._lib import lib


def _queue_of(arrays: Tuple[Any, ...], device: Any) -> Any:
    if isinstance(device, cl.CommandQueue):
        return device
    if isinstance(device, _core.Context):
        return None
    if device is not None:
        raise TypeError(
            "clattn: with pyopencl arrays, device must be a pyopencl "
            "CommandQueue or a clattn.Context (or None: the arrays' queue)"
        )
    queue = arrays[0].queue
    if queue is None:
        raise ValueError(
            "clattn: the pyopencl arrays have no queue; pass device=queue"
        )
    return queue


def attention(arrays, shape, opts, storage: str, return_lse: bool, device: Any,
              out: Optional[cla.Array], lens=(None, None)):
    queue = _queue_of(arrays, device)
    ctx = _core._context_for(queue if queue is not None else device)
    cl_ctx_ptr = ctx.cl_pointers()[0]
    if queue is None:
        queue = cl.CommandQueue.from_int_ptr(ctx.cl_pointers()[2], retain=True)
    for name, a in zip("qkv", arrays):
        if a.context.int_ptr != cl_ctx_ptr:
            raise ValueError(
                f"clattn: {name} belongs to another OpenCL context than the "
                "queue it runs on"
            )
        if not a.flags.c_contiguous:
            raise ValueError(
                f"clattn: {name} is not C-contiguous; pyopencl arrays are "
                "not copied, make it contiguous first"
            )
    if out is not None and out.context.int_ptr != cl_ctx_ptr:
        raise ValueError("clattn: out belongs to another OpenCL context")

    np_storage = _core._STORAGE_NP[storage]
    if arrays[0].dtype != np_storage:
        # pyopencl converts to and from half only on devices with
        # cl_khr_fp16, so clattn does not convert device arrays at all.
        raise ValueError(
            f"clattn: pyopencl arrays of {arrays[0].dtype} run with "
            f"{arrays[0].dtype} storage; dtype={storage!r} would need a "
            "device-side conversion, so convert the arrays first"
        )
    dev = []
    for a in arrays:
        if a.offset:
            # clattn takes whole buffers; a view that starts inside one is
            # copied to its own.
            a = a.copy(queue=queue)
        dev.append(a)
    plan = _core._plan_for(ctx, opts, shape, storage)
    ctx._async = True  # its plans finish the queue before they go
    out_shape = (shape.batch, shape.heads_q, shape.seq_q, shape.dim_v)
    direct = out is not None and not out.offset
    o = out if direct else cla.empty(queue, out_shape, np_storage)
    lse = (cla.empty(queue, out_shape[:3], np.float32) if return_lse else None)
    # Host lengths go to small device buffers; OpenCL keeps a released
    # buffer until the kernels using it have finished.
    dlens = [cla.to_device(queue, x) if x is not None else None for x in lens]
    waits = [e.int_ptr for a in (*dev, o, lse, *dlens) if a is not None for e in a.events]
    wait_arr = (c_void_p * len(waits))(*waits) if waits else None
    event = c_void_p()
    bufs = [
        plan.handle,
        dev[0].base_data.int_ptr,
        dev[1].base_data.int_ptr,
        dev[2].base_data.int_ptr,
        o.base_data.int_ptr,
        lse.base_data.int_ptr if lse is not None else None,
    ]
    if dlens[0] is not None or dlens[1] is not None:
        bufs += [x.base_data.int_ptr if x is not None else None for x in dlens]
        status = lib.clattn_plan_run_varlen(*bufs, len(waits), wait_arr, byref(event))
    else:
        status = lib.clattn_plan_run(*bufs, len(waits), wait_arr, byref(event))
    _core._check(status, ctx)
    evt = cl.Event.from_int_ptr(event.value, retain=False)
    o.add_event(evt)
    if lse is not None:
        lse.add_event(evt)
    if out is not None and not direct:
        # out is a view that starts inside its buffer: copy into it.
        evt = cl.enqueue_copy(queue, out.base_data, o.base_data,
                              byte_count=out.nbytes, dst_offset=out.offset,
                              wait_for=list(o.events) + list(out.events))
        out.add_event(evt)
        o = out
    return (o, lse) if return_lse else o
