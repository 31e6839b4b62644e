"""pyopencl interop: arrays in and out on a caller's context and queue
(adopted through clattn_context_create_from_cl), events in and out, f16
storage, views with offsets, and the refusals."""
import os

import numpy as np
import pytest

cl = pytest.importorskip("pyopencl")
import pyopencl.array as cla  # noqa: E402

import clattn  # noqa: E402
from conftest import TOL, randn  # noqa: E402
from reference import reference, rel_err  # noqa: E402


@pytest.fixture(scope="module")
def queue():
    index = clattn.find_device()  # the device CLATTN_DEVICE names, as above
    info = clattn.devices()[index]
    platform = cl.get_platforms()[info.platform_index]
    device = platform.get_devices()[info.device_index]
    assert device.name.strip() == info.name.strip()
    ctx = cl.Context([device])
    # Intel's CPU runtime lets a queue's context go with its last handle:
    # keep pyopencl's context object alive as long as the queue.
    _keep.append(ctx)
    return cl.CommandQueue(ctx)


_keep = []


@pytest.mark.parametrize("variant", ["softmax", "sigmoid", "linear", "cosformer"])
def test_pyopencl_arrays_in_and_out(queue, rng, variant):
    q, k, v = randn(rng, 2, 4, 19, 24), randn(rng, 2, 2, 33, 24), randn(rng, 2, 2, 33, 40)
    dq, dk, dv = (cla.to_device(queue, a) for a in (q, k, v))
    o = clattn.attention(dq, dk, dv, variant=variant, causal=True)
    assert isinstance(o, cla.Array) and o.dtype == np.float32 and o.shape == (2, 4, 19, 40)
    assert o.queue is queue or o.queue.int_ptr == queue.int_ptr
    ref_o, _ = reference(q, k, v, variant, True)
    assert rel_err(o.get(), ref_o) <= TOL["f32"]


def test_pyopencl_lse_out_and_f16(queue, rng):
    q, k, v = randn(rng, 1, 2, 30, 16), randn(rng, 1, 2, 21, 16), randn(rng, 1, 2, 21, 16)
    dq, dk, dv = (cla.to_device(queue, a) for a in (q, k, v))
    out = cla.zeros(queue, (1, 2, 30, 16), np.float32)
    o, lse = clattn.attention(dq, dk, dv, causal=True, return_lse=True, out=out)
    assert o is out
    ref_o, ref_lse = reference(q, k, v, causal=True)
    assert rel_err(out.get(), ref_o) <= TOL["f32"]
    assert rel_err(lse.get(), ref_lse) <= TOL["f32"]
    assert np.all(lse.get()[:, :, :9] == -np.inf)
    # float16 arrays run with f16 storage; another storage dtype is refused
    # (no device-side conversion).
    h = [a.astype(np.float16) for a in (q, k, v)]
    dh = [cla.to_device(queue, a) for a in h]
    oh = clattn.attention(*dh)
    assert oh.dtype == np.float16 and rel_err(oh.get(), reference(*h)[0]) <= TOL["f16"]
    with pytest.raises(ValueError, match="convert the arrays first"):
        clattn.attention(dq, dk, dv, dtype="f16")
    # An out view that starts inside its buffer.
    whole = cla.zeros(queue, (2, 2, 30, 16), np.float32)
    res = clattn.attention(dq, dk, dv, causal=True, out=whole[1:2])
    assert rel_err(whole.get()[1:2], ref_o) <= TOL["f32"]
    assert np.all(whole.get()[0] == 0) and res.offset == whole[1:2].offset


def test_pyopencl_views_events_and_context_sharing(queue, rng):
    big = randn(rng, 3, 2, 12, 16)
    dbig = cla.to_device(queue, big)
    view = dbig[1:2]  # a view that starts inside the buffer
    assert view.offset != 0
    # The inputs come from a kernel still in flight: clattn waits for the
    # arrays' events.
    k = cla.to_device(queue, randn(rng, 1, 2, 12, 16))
    k2 = k * 2.0
    o = clattn.attention(view, k2, view)
    ref_o, _ = reference(big[1:2], 2 * k.get(), big[1:2])
    assert rel_err(o.get(), ref_o) <= TOL["f32"]
    # The context adopted from the queue is cached and shared.
    before = clattn.cache_info()
    clattn.attention(view, k2, view, device=queue)
    after = clattn.cache_info()
    assert after.contexts_created == before.contexts_created and after.misses == before.misses
    ctx = clattn.Context.from_cl(queue)
    assert ctx.cl_pointers()[2] == queue.int_ptr
    assert rel_err(clattn.attention(view, k2, view, device=ctx).get(), ref_o) <= TOL["f32"]


def test_pyopencl_refusals(queue, rng):
    q = cla.to_device(queue, randn(rng, 1, 2, 8, 16))
    t = cla.to_device(queue, randn(rng, 1, 2, 16, 8)).transpose((0, 1, 3, 2))
    with pytest.raises(ValueError, match="C-contiguous"):
        clattn.attention(q, t, q)
    with pytest.raises(TypeError, match="one kind"):
        clattn.attention(q, q.get(), q)
    other_ctx = cl.Context([queue.device])
    other = cl.CommandQueue(other_ctx)
    q_other = cla.to_device(other, randn(rng, 1, 2, 8, 16))
    with pytest.raises(ValueError, match="another OpenCL context"):
        clattn.attention(q, q_other, q)
    with pytest.raises(TypeError, match="CommandQueue"):
        clattn.attention(q, q, q, device="pocl")
    with pytest.raises(TypeError):
        clattn.Context.from_cl(0)



def test_pyopencl_lengths_and_window(queue, rng):
    # Lengths from the host go to device buffers: each sequence equals the
    # host run of it alone.
    q, k, v = randn(rng, 2, 2, 21, 16), randn(rng, 2, 2, 30, 16), randn(rng, 2, 2, 30, 16)
    dq, dk, dv = (cla.to_device(queue, a) for a in (q, k, v))
    o, lse = clattn.attention(dq, dk, dv, window=(5, 5), seq_lens_q=[21, 9],
                              seq_lens_k=np.array([30, 12]), return_lse=True)
    o, lse = o.get(), lse.get()
    for b, (lq, lk) in enumerate(((21, 30), (9, 12))):
        alone = clattn.attention(q[b:b + 1, :, :lq], k[b:b + 1, :, :lk],
                                 v[b:b + 1, :, :lk], window=(5, 5))
        assert rel_err(o[b:b + 1, :, :lq], alone) <= TOL["f32"]
        assert np.all(o[b, :, lq:] == 0) and np.all(lse[b, :, lq:] == -np.inf)
