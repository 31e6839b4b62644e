"""PyTorch integration: clattn.attention on CPU tensors as a
torch.autograd.Function, and scaled_dot_product_attention with PyTorch's
argument names as a drop-in for the cases clattn supports.

Tensors run through the host path (numpy views of their memory, no copy for
contiguous tensors whose dtype is the storage dtype). The Function saves q,
k, v, the output and, for softmax, the LSE, and its backward runs the C
library's backward pass.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import numpy as np
import torch

from . import _core

def _to_host(t: torch.Tensor, storage: str) -> np.ndarray:
    t = t.detach()
    if t.dtype == torch.bfloat16:
        if storage == "bf16":
            # The bits as they are: no rounding, no copy when contiguous.
            return t.contiguous().view(torch.int16).numpy().view(np.uint16)
        t = t.float()  # numpy has no bfloat16; widening is exact
    return _core._host_array(t.contiguous().numpy(), storage)


def _from_host(a: np.ndarray, storage: str, dtype: torch.dtype) -> torch.Tensor:
    if storage == "bf16":
        t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    else:
        t = torch.from_numpy(a)
    return t if t.dtype == dtype else t.to(dtype)


def _float_host(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().float().numpy())


def _forward(arrays, shape, opts, storage, want_lse, device, lens=(None, None)):
    plan = _core._plan_for(_core._context_for(device), opts, shape, storage)
    hq, hk, hv = (_to_host(t, storage) for t in arrays)
    o, lse = _core.run_host(plan, hq, hk, hv, want_lse, None, lens)
    out = _from_host(o, storage, arrays[0].dtype)
    return plan, out, (torch.from_numpy(lse) if lse is not None else None)


class AttentionFunction(torch.autograd.Function):
    """clattn.attention as an autograd node. ``apply(q, k, v, call)`` where
    call is (shape, options, storage, device, lens), lens the pair of int32
    length arrays or Nones; returns (out, lse), lse being None for variants
    other than softmax. The backward runs the plan's
    clattn_plan_backward_host, or clattn_plan_backward_host_varlen with the
    same lengths (softmax recomputes its weights from the saved LSE). A failing call raises clattn.Error (UnsupportedError, a
    NotImplementedError, for a backward the library does not have)."""

    @staticmethod
    def forward(ctx, q, k, v, call):  # type: ignore[override]
        shape, opts, storage, device, lens = call
        want_lse = opts.variant == "softmax"
        plan, out, lse = _forward((q, k, v), shape, opts, storage, want_lse, device, lens)
        ctx.plan = plan
        ctx.lens = lens
        if lse is not None:
            ctx.mark_non_differentiable(lse)
            ctx.save_for_backward(q, k, v, out, lse)
            return out, lse
        ctx.save_for_backward(q, k, v, out)
        return out, None

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, *unused):  # type: ignore[override]
        q, k, v, out, *rest = ctx.saved_tensors
        plan = ctx.plan
        fq, fk, fv, fo, fd = (_float_host(t) for t in (q, k, v, out, grad_out))
        flse = _float_host(rest[0]) if rest else None
        dq, dk, dv = (np.empty(a.shape, np.float32) for a in (fq, fk, fv))
        p = _core._ptr
        args = (plan.handle, p(fq), p(fk), p(fv), p(fo),
                p(flse) if flse is not None else None,
                p(fd), p(dq), p(dk), p(dv))
        lq, lk = ctx.lens
        if lq is not None or lk is not None:
            status = _core.lib.clattn_plan_backward_host_varlen(
                *args, p(lq) if lq is not None else None,
                p(lk) if lk is not None else None)
        else:
            status = _core.lib.clattn_plan_backward_host(*args)
        _core._check(status, plan.context)
        grads = [torch.from_numpy(g).to(t.dtype) for g, t in ((dq, q), (dk, k), (dv, v))]
        return grads[0], grads[1], grads[2], None


def _check_tensors(arrays: Tuple[torch.Tensor, ...]) -> None:
    for name, t in zip("qkv", arrays):
        if t.device.type != "cpu":
            raise TypeError(
                f"clattn: {name} is on {t.device}; clattn takes CPU tensors "
                "(or pyopencl arrays for data kept on an OpenCL device)"
            )
        if t.is_sparse or t.layout != torch.strided:
            raise TypeError(f"clattn: {name} must be a dense (strided) tensor")


def _attention(arrays, shape, opts, storage, return_lse, device, lens=(None, None)):
    _check_tensors(arrays)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in arrays)
    if grad:
        out, lse = AttentionFunction.apply(*arrays, (shape, opts, storage, device, lens))
    else:
        _, out, lse = _forward(arrays, shape, opts, storage, return_lse, device, lens)
    return (out, lse) if return_lse else out


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: Optional[torch.Tensor] = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: Optional[float] = None,
    enable_gqa: bool = False,
    *,
    device: Any = None,
) -> torch.Tensor:
    """``torch.nn.functional.scaled_dot_product_attention`` on clattn, for
    the cases clattn supports: CPU tensors [..., H, L, E] (float32, float16,
    bfloat16) with the same leading dimensions, no mask or the causal one,
    no dropout. An argument clattn does not support raises
    NotImplementedError naming it; nothing silently differs from PyTorch.

    ``is_causal`` is PyTorch's top-left aligned mask; clattn's is
    bottom-right aligned, so the two agree only for L == S, and L != S with
    is_causal raises NotImplementedError. ``device`` (keyword only, not in
    PyTorch) picks the OpenCL device as clattn.attention does.
    """
    if attn_mask is not None:
        raise NotImplementedError(
            "clattn.torch.scaled_dot_product_attention: attn_mask is not "
            "supported (clattn has no arbitrary mask; is_causal is)"
        )
    if dropout_p != 0.0:
        raise NotImplementedError(
            "clattn.torch.scaled_dot_product_attention: dropout_p must be 0 "
            "(clattn has no dropout)"
        )
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"clattn: {name} must be a torch.Tensor")
        if t.dim() < 2:
            raise ValueError(f"clattn: {name} must have at least 2 dimensions, [..., L, E]")
    if not (query.dim() == key.dim() == value.dim()):
        raise NotImplementedError(
            "clattn.torch.scaled_dot_product_attention: query, key and value "
            "of different ranks (broadcasting) are not supported"
        )
    lead = query.shape[:-3] if query.dim() >= 3 else ()
    if key.shape[:-3] != lead or value.shape[:-3] != lead:
        raise NotImplementedError(
            "clattn.torch.scaled_dot_product_attention: broadcasting of the "
            "batch dimensions is not supported; give them equal"
        )
    hq = query.shape[-3] if query.dim() >= 3 else 1
    hkv = key.shape[-3] if key.dim() >= 3 else 1
    if hq != hkv and not enable_gqa:
        raise ValueError(
            f"clattn: query has {hq} heads and key {hkv}; pass enable_gqa=True "
            "for grouped-query attention"
        )
    L, S = query.shape[-2], key.shape[-2]
    if is_causal and L != S:
        raise NotImplementedError(
            "clattn.torch.scaled_dot_product_attention: is_causal with L != S "
            f"(L={L}, S={S}): PyTorch aligns the causal mask top-left, "
            "clattn bottom-right; call clattn.attention(causal=True) for "
            "bottom-right alignment"
        )
    if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise NotImplementedError(
            f"clattn.torch.scaled_dot_product_attention: scale={scale!r}; "
            "clattn takes a finite positive scale"
        )
    b = int(np.prod(lead)) if lead else 1

    def four(t: torch.Tensor, h: int) -> torch.Tensor:
        return t.reshape(b, h, t.shape[-2], t.shape[-1])

    out = _core.attention(
        four(query, hq),
        four(key, hkv),
        four(value, hkv),
        variant="softmax",
        causal=bool(is_causal),
        scale=scale,
        device=device,
    )
    return out.reshape(*query.shape[:-1], value.shape[-1])
