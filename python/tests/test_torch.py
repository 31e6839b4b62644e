"""PyTorch CPU tensors: softmax against F.scaled_dot_product_attention, the
other variants against PyTorch formulas, dtypes (bfloat16 storage),
gradients of every variant against PyTorch autograd of those formulas, and
clattn.torch.scaled_dot_product_attention's argument handling."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import clattn  # noqa: E402
import clattn.torch as ctorch  # noqa: E402
from conftest import TOL  # noqa: E402
from reference import rel_err  # noqa: E402

TORCH_TOL = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 2e-2}


def rand(*shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32).to(dtype)


def err(x, ref):
    return rel_err(x.detach().double().numpy(), ref.detach().double().numpy())


def bottom_right_mask(nq, nk):
    i = torch.arange(nq)[:, None]
    j = torch.arange(nk)[None, :]
    return j <= i + (nk - nq)


def torch_formula(q, k, v, variant, causal, scale=None, bias=None, feature_map=None,
                  eps=None, cos_m=None):
    """The variants written in PyTorch (float64), GQA by repeating kv heads."""
    q, k, v = q.double(), k.double(), v.double()
    rep = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    nq, nk, d = q.shape[2], k.shape[2], q.shape[3]
    mask = bottom_right_mask(nq, nk) if causal else torch.ones(nq, nk, dtype=torch.bool)
    if variant == "sigmoid":
        s = (scale or 1 / math.sqrt(d)) * q @ k.transpose(-1, -2)
        p = torch.sigmoid(s + (-math.log(nk) if bias is None else bias)) * mask
        return p @ v
    fm = feature_map or ("elu1" if variant == "linear" else "relu")
    phi = (lambda x: F.elu(x) + 1) if fm == "elu1" else F.relu
    a = (phi(q) @ phi(k).transpose(-1, -2))
    if variant == "cosformer":
        m = cos_m or max(nq, nk)
        tq = (math.pi / 2) * torch.arange(1, nq + 1, dtype=torch.float64) / m
        tk = (math.pi / 2) * torch.arange(1, nk + 1, dtype=torch.float64) / m
        a = a * torch.cos(tq[:, None] - tk[None, :])
    a = a * mask
    den = a.sum(-1, keepdim=True)
    e = 1e-6 if eps is None else eps
    den = den.clamp_min(e) if variant == "cosformer" else den + e
    return (a @ v) / den


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,causal", [
    ((2, 4, 4, 33, 33, 40, 40), False),
    ((2, 4, 4, 33, 33, 40, 24), True),
    ((1, 2, 2, 17, 61, 64, 64), False),
])
def test_torch_softmax_matches_sdpa(shape, causal, dtype):
    b, hq, hkv, nq, nk, d, dv = shape
    q = rand(b, hq, nq, d, dtype=dtype, seed=1)
    k = rand(b, hkv, nk, d, dtype=dtype, seed=2)
    v = rand(b, hkv, nk, dv, dtype=dtype, seed=3)
    o = clattn.attention(q, k, v, causal=causal)
    assert isinstance(o, torch.Tensor) and o.dtype == dtype and o.shape == (b, hq, nq, dv)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal)
    assert err(o, ref) <= TORCH_TOL[dtype]
    o2 = ctorch.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert torch.equal(o, o2)


def test_torch_softmax_gqa_and_lse():
    q, k, v = rand(1, 8, 29, 24, seed=4), rand(1, 2, 50, 24, seed=5), rand(1, 2, 50, 16, seed=6)
    o, lse = clattn.attention(q, k, v, return_lse=True)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), enable_gqa=True)
    assert err(o, ref) <= TOL["f32"]
    s = (q.double() @ k.double().repeat_interleave(4, 1).transpose(-1, -2)) / math.sqrt(24)
    assert err(lse, torch.logsumexp(s, -1)) <= TOL["f32"]
    o2 = ctorch.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    assert torch.equal(o, o2)
    # Bottom-right causal with Nq != Nk against an explicit mask.
    oc = clattn.attention(q, k, v, causal=True)
    refc = F.scaled_dot_product_attention(q.double(), k.double().repeat_interleave(4, 1),
                                          v.double().repeat_interleave(4, 1),
                                          attn_mask=bottom_right_mask(29, 50))
    assert err(oc, refc) <= TOL["f32"]


@pytest.mark.parametrize("variant", ["sigmoid", "linear", "cosformer"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_torch_formulas(variant, causal, dtype):
    q = rand(2, 4, 37, 20, dtype=dtype, seed=7)
    k = rand(2, 2, 53, 20, dtype=dtype, seed=8)
    v = rand(2, 2, 53, 12, dtype=dtype, seed=9)
    o = clattn.attention(q, k, v, variant=variant, causal=causal)
    assert o.dtype == dtype
    assert err(o, torch_formula(q, k, v, variant, causal)) <= TORCH_TOL[dtype]


@pytest.mark.parametrize("variant,opts", [
    ("sigmoid", {"bias": -2.0, "scale": 0.25}),
    ("linear", {"feature_map": "relu", "eps": 1e-2}),
    ("cosformer", {"cos_m": 77.0}),
])
def test_torch_formula_options(variant, opts):
    q, k, v = rand(1, 2, 31, 16, seed=10), rand(1, 2, 31, 16, seed=11), rand(1, 2, 31, 16, seed=12)
    o = clattn.attention(q, k, v, variant=variant, **opts)
    assert err(o, torch_formula(q, k, v, variant, False, **opts)) <= TOL["f32"]


def test_torch_non_contiguous_and_parameters():
    q = rand(1, 21, 2, 16, seed=13).transpose(1, 2)  # a view, not contiguous
    k = torch.nn.Parameter(rand(1, 2, 21, 16, seed=14), requires_grad=False)
    v = rand(1, 2, 21, 16, seed=15)
    o = clattn.attention(q, k, v)
    assert err(o, F.scaled_dot_product_attention(q.double(), k.double(), v.double())) <= TOL["f32"]


def test_torch_bfloat16_storage_and_dtype_arg():
    q, k, v = (rand(1, 2, 16, 32, dtype=torch.bfloat16, seed=s) for s in (16, 17, 18))
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    # bfloat16 tensors run with bf16 storage by default, bits passed as they are.
    o = clattn.attention(q, k, v)
    assert o.dtype == torch.bfloat16 and err(o, ref) <= TORCH_TOL[torch.bfloat16]
    assert clattn.get_plan(q.shape, k.shape, v.shape, dtype="bf16").storage == "bf16"
    o16 = clattn.attention(q, k, v, dtype=torch.float16)
    assert o16.dtype == torch.bfloat16 and err(o16, ref) <= TORCH_TOL[torch.float16]
    # float32 tensors with bf16 storage: inputs rounded to bfloat16.
    f = [t.float() for t in (q, k, v)]
    of = clattn.attention(*f, dtype="bf16")
    assert of.dtype == torch.float32 and err(of, ref) <= TORCH_TOL[torch.bfloat16]


# Issue-sized odd shapes: (B, Hq, Hkv, Nq, Nk, D, Dv, causal).
GRAD_SHAPES = [
    (1, 2, 2, 77, 133, 40, 24, False),
    (2, 4, 2, 77, 133, 40, 24, True),
    (1, 3, 1, 50, 21, 16, 8, True),  # Nq > Nk: rows with no visible key
]
GRAD_TOL = {torch.float32: 1e-4, torch.float16: 3e-2, torch.bfloat16: 3e-2}


def reference_grads(q, k, v, variant, causal, dout):
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    if variant == "softmax":
        rep = q.shape[1] // k.shape[1]
        mask = bottom_right_mask(q.shape[2], k.shape[2]) if causal else None
        o = F.scaled_dot_product_attention(
            qd, kd.repeat_interleave(rep, 1), vd.repeat_interleave(rep, 1), attn_mask=mask)
        o = torch.nan_to_num(o)  # rows with no visible key: 0, as clattn
    else:
        o = torch_formula(qd, kd, vd, variant, causal)
    o.backward(dout.double())
    return qd.grad, kd.grad, vd.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", GRAD_SHAPES, ids=lambda s: "x".join(map(str, s[:7])) + ("c" if s[7] else ""))
@pytest.mark.parametrize("variant", ["softmax", "sigmoid", "linear", "cosformer"])
def test_torch_gradients_against_autograd(variant, shape, dtype):
    b, hq, hkv, nq, nk, d, dv, causal = shape
    q = rand(b, hq, nq, d, dtype=dtype, seed=30).requires_grad_()
    k = rand(b, hkv, nk, d, dtype=dtype, seed=31).requires_grad_()
    v = rand(b, hkv, nk, dv, dtype=dtype, seed=32).requires_grad_()
    dout = rand(b, hq, nq, dv, dtype=dtype, seed=33)
    o = clattn.attention(q, k, v, variant=variant, causal=causal)
    assert o.requires_grad and o.grad_fn is not None
    o.backward(dout)
    refs = reference_grads(q, k, v, variant, causal, dout)
    for name, t, ref in zip("qkv", (q, k, v), refs):
        assert t.grad.dtype == dtype and t.grad.shape == t.shape
        assert err(t.grad, ref) <= GRAD_TOL[dtype], name
    if causal and nq > nk:
        assert torch.all(q.grad[:, :, : nq - nk] == 0)


def test_torch_gradients_through_sdpa_and_partial_requires_grad():
    q = rand(1, 4, 33, 24, seed=34).requires_grad_()
    k = rand(1, 2, 33, 24, seed=35)
    v = rand(1, 2, 33, 24, seed=36).requires_grad_()
    o = ctorch.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    (o * o).sum().backward()
    ref_q, _, ref_v = reference_grads(q, k, v, "softmax", True, 2 * o.detach())
    assert err(q.grad, ref_q) <= GRAD_TOL[torch.float32]
    assert err(v.grad, ref_v) <= GRAD_TOL[torch.float32]
    assert k.grad is None


def test_torch_autograd_lse_and_no_grad():
    q = rand(1, 2, 16, 32, seed=19).requires_grad_()
    k = rand(1, 2, 16, 32, seed=20).requires_grad_()
    v = rand(1, 2, 16, 32, seed=21)
    o2, lse = clattn.attention(q, k, v, return_lse=True)
    assert o2.requires_grad and not lse.requires_grad
    o2.sum().backward()
    assert q.grad is not None and k.grad is not None
    with torch.no_grad():
        assert not clattn.attention(q, k, v).requires_grad


def test_torch_sdpa_unsupported_arguments_name_themselves():
    q, k, v = rand(1, 2, 8, 16), rand(1, 2, 8, 16), rand(1, 2, 8, 16)
    with pytest.raises(NotImplementedError, match="attn_mask"):
        ctorch.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(8, 8, dtype=torch.bool))
    with pytest.raises(NotImplementedError, match="dropout_p"):
        ctorch.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
    with pytest.raises(NotImplementedError, match="is_causal"):
        ctorch.scaled_dot_product_attention(q, rand(1, 2, 12, 16), rand(1, 2, 12, 16), is_causal=True)
    with pytest.raises(ValueError, match="enable_gqa"):
        ctorch.scaled_dot_product_attention(rand(1, 4, 8, 16), k, v)
    with pytest.raises(NotImplementedError, match="broadcasting"):
        ctorch.scaled_dot_product_attention(rand(2, 2, 8, 16), k, v)


def test_torch_sdpa_shapes_and_scale():
    # 3-D [H, L, E] and 5-D [B1, B2, H, L, E] inputs, and an explicit scale.
    for shape in [(3, 10, 16), (2, 3, 2, 10, 16), (10, 16)]:
        q, k, v = (rand(*shape, seed=s) for s in (22, 23, 24))
        o = ctorch.scaled_dot_product_attention(q, k, v, scale=0.5)
        ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), scale=0.5)
        assert o.shape == ref.shape and err(o, ref) <= TOL["f32"]


def test_torch_bad_tensors():
    q = rand(1, 2, 8, 16)
    with pytest.raises(TypeError, match="CPU tensors"):
        clattn.attention(q.to("meta"), q.to("meta"), q.to("meta"))
    with pytest.raises(TypeError, match="float32, float16 and bfloat16"):
        clattn.attention(q.double(), q.double(), q.double())
    with pytest.raises(TypeError, match="one dtype"):
        clattn.attention(q, q.half(), q)
    with pytest.raises(TypeError, match="one kind"):
        clattn.attention(q, q.numpy(), q)
    with pytest.raises(TypeError, match="float32, float16 and bfloat16"):
        clattn.attention(q.int(), q.int(), q.int())
    with pytest.raises(TypeError, match="out="):
        clattn.attention(q, q, q, out=torch.empty(1, 2, 8, 16))
