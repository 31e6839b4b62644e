"""The score pipeline and per-sequence lengths from Python: windows against
PyTorch SDPA with an explicit boolean mask, lengths against each sequence
run alone, ALiBi, softcap and the mods against numpy formulas, gradients
with lengths and windows against PyTorch autograd, the plan cache keys and
the argument checks."""
import math

import numpy as np
import pytest

import clattn
from conftest import TOL, randn
from reference import rel_err

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

TORCH_TOL = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 2e-2}
GRAD_TOL = {torch.float32: 1e-4, torch.float16: 3e-2}


def trand(*shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32).to(dtype)


def terr(x, ref):
    return rel_err(x.detach().double().numpy(), ref.detach().double().numpy())


def visible(nq, nk, lq=None, lk=None, causal=False, window=None):
    """[Nq, Nk] boolean mask of one sequence of lengths lq, lk (default the
    full Nq, Nk) as the C library defines it."""
    lq = nq if lq is None else lq
    lk = nk if lk is None else lk
    i = np.arange(nq)[:, None]
    j = np.arange(nk)[None, :]
    ip = i + lk - lq
    m = (i < lq) & (j < lk)
    left, right = window if window is not None else (-1, -1)
    if causal:
        right = 0
    if left >= 0:
        m &= j >= ip - left
    if right >= 0:
        m &= j <= ip + right
    return m


def ref_pipe(q, k, v, variant="softmax", causal=False, window=None, lens_q=None,
             lens_k=None, slopes=None, softcap=None, score_fn=None, mask_fn=None,
             scale=None):
    """Float64 numpy reference of softmax/sigmoid with the pipeline:
    returns (O, LSE or None)."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    b, hq, nq, d = q.shape
    nk = k.shape[2]
    rep = hq // k.shape[1]
    k = np.repeat(k, rep, axis=1)
    v = np.repeat(v, rep, axis=1)
    o = np.zeros((b, hq, nq, v.shape[3]))
    lse = np.full((b, hq, nq), -np.inf)
    sc = 1.0 / math.sqrt(d) if scale is None else scale
    i = np.arange(nq)[:, None]
    j = np.arange(nk)[None, :]
    for bi in range(b):
        lq = nq if lens_q is None else int(lens_q[bi])
        lk = nk if lens_k is None else int(lens_k[bi])
        m = visible(nq, nk, lq, lk, causal, window)
        for h in range(hq):
            s = sc * q[bi, h] @ k[bi, h].T
            if softcap is not None:
                s = softcap * np.tanh(s / softcap)
            if slopes is not None:
                s = s - slopes[h] * np.abs(i + lk - lq - j)
            if score_fn is not None:
                s = score_fn(s, bi, h, i, j)
            mm = m if mask_fn is None else m & mask_fn(bi, h, i, j)
            if variant == "softmax":
                s = np.where(mm, s, -np.inf)
                mx = s.max(axis=1, keepdims=True)
                mx = np.where(np.isfinite(mx), mx, 0.0)
                e = np.where(mm, np.exp(s - mx), 0.0)
                l = e.sum(axis=1, keepdims=True)
                with np.errstate(divide="ignore", invalid="ignore"):
                    p = np.where(l > 0, e / l, 0.0)
                    lse[bi, h] = np.where(l[:, 0] > 0, mx[:, 0] + np.log(l[:, 0]), -np.inf)
            else:
                p = np.where(mm, 1.0 / (1.0 + np.exp(-(s - math.log(max(lk, 1))))), 0.0)
            o[bi, h] = p @ v[bi, h]
    return o, (lse if variant == "softmax" else None)


# ---- Windows against PyTorch SDPA with a boolean mask -------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("window,causal", [
    ((8, 0), False), ((5, 3), False), ((-1, 4), False), ((6, -1), True), ((0, 0), False),
])
def test_window_matches_sdpa_with_mask(window, causal, dtype):
    b, hq, hkv, nq, nk, d, dv = 2, 4, 2, 37, 53, 20, 12
    q = trand(b, hq, nq, d, dtype=dtype, seed=1)
    k = trand(b, hkv, nk, d, dtype=dtype, seed=2)
    v = trand(b, hkv, nk, dv, dtype=dtype, seed=3)
    o = clattn.attention(q, k, v, window=window, causal=causal)
    mask = torch.from_numpy(visible(nq, nk, causal=causal, window=window))
    assert mask.any(dim=1).all()  # every row sees a key
    ref = F.scaled_dot_product_attention(
        q.double(), k.double().repeat_interleave(2, 1), v.double().repeat_interleave(2, 1),
        attn_mask=mask)
    assert o.dtype == dtype and terr(o, ref) <= TORCH_TOL[dtype]


def test_window_sigmoid_numpy(rng):
    q, k, v = randn(rng, 1, 2, 29, 24), randn(rng, 1, 1, 41, 24), randn(rng, 1, 1, 41, 8)
    o = clattn.attention(q, k, v, variant="sigmoid", window=(7, 2))
    ref, _ = ref_pipe(q, k, v, "sigmoid", window=(7, 2))
    assert rel_err(o, ref) <= TOL["f32"]


# ---- Lengths against each sequence alone --------------------------------


def check_alone(q, k, v, lq, lk, tol, **kw):
    """attention with lengths equals each sequence run alone, with zeros
    (and LSE -inf) in the rows past its length."""
    softmax = kw.get("variant", "softmax") == "softmax"
    if softmax:
        o, lse = clattn.attention(q, k, v, seq_lens_q=lq, seq_lens_k=lk, return_lse=True, **kw)
    else:
        o = clattn.attention(q, k, v, seq_lens_q=lq, seq_lens_k=lk, **kw)
    for b in range(q.shape[0]):
        assert np.all(o[b, :, lq[b]:] == 0)
        if softmax:
            assert np.all(lse[b, :, lq[b]:] == -np.inf)
        if lq[b] == 0:
            continue
        if lk[b] == 0:
            assert np.all(o[b] == 0)
            continue
        alone = clattn.attention(q[b:b + 1, :, :lq[b]], k[b:b + 1, :, :lk[b]],
                                 v[b:b + 1, :, :lk[b]], **kw)
        assert rel_err(o[b:b + 1, :, :lq[b]], alone) <= tol, b


@pytest.mark.parametrize("kw", [
    dict(), dict(causal=True), dict(variant="sigmoid"), dict(variant="sigmoid", causal=True),
    dict(window=(9, 2)), dict(causal=True, window=(4, -1), softcap=3.0),
    dict(dtype="f16"), dict(dtype="bf16", causal=True),
], ids=str)
def test_lengths_equal_sequences_alone(rng, kw):
    q, k, v = randn(rng, 4, 4, 37, 20), randn(rng, 4, 2, 53, 20), randn(rng, 4, 2, 53, 12)
    lq, lk = [37, 20, 0, 31], [53, 31, 10, 0]
    tol = TOL["f16"] if "dtype" in kw else TOL["f32"]
    check_alone(q, k, v, lq, lk, tol, **kw)
    if "dtype" not in kw:
        ref, _ = ref_pipe(q, k, v, kw.get("variant", "softmax"), kw.get("causal", False),
                          kw.get("window"), lq, lk, softcap=kw.get("softcap"))
        o = clattn.attention(q, k, v, seq_lens_q=np.array(lq, np.int64),
                             seq_lens_k=np.array(lk, np.int32), **kw)
        assert rel_err(o, ref) <= TOL["f32"]


def test_lengths_full_equal_no_lengths(rng):
    q, k, v = randn(rng, 2, 2, 33, 16), randn(rng, 2, 2, 45, 16), randn(rng, 2, 2, 45, 16)
    o = clattn.attention(q, k, v, causal=True)
    o2 = clattn.attention(q, k, v, causal=True, seq_lens_q=[33, 33], seq_lens_k=(45, 45))
    assert np.array_equal(o, o2)
    # One side only.
    o3 = clattn.attention(q, k, v, seq_lens_k=np.array([45, 20]))
    ref, _ = ref_pipe(q, k, v, lens_k=[45, 20])
    assert rel_err(o3, ref) <= TOL["f32"]


@pytest.mark.parametrize("variant", ["linear", "cosformer"])
def test_lengths_linear_variants(rng, variant):
    q, k, v = randn(rng, 3, 2, 37, 16), randn(rng, 3, 2, 53, 16), randn(rng, 3, 2, 53, 8)
    check_alone(q, k, v, [37, 20, 5], [53, 31, 40], TOL["f32"], variant=variant, causal=True)


def test_lengths_decode_rows(rng):
    # Few query rows (a decode plan) over a padded cache.
    q, k, v = randn(rng, 3, 8, 1, 64), randn(rng, 3, 2, 300, 64), randn(rng, 3, 2, 300, 64)
    check_alone(q, k, v, [1, 1, 0], [300, 117, 50], TOL["f32"])
    check_alone(q, k, v, [1, 1, 1], [1, 117, 299], TOL["f32"], variant="sigmoid")


def test_lengths_as_tensors(rng):
    q, k, v = randn(rng, 2, 2, 21, 16), randn(rng, 2, 2, 30, 16), randn(rng, 2, 2, 30, 16)
    ref, _ = ref_pipe(q, k, v, lens_q=[21, 9], lens_k=[30, 12], window=(5, 5))
    o = clattn.attention(*(torch.from_numpy(a) for a in (q, k, v)), window=(5, 5),
                         seq_lens_q=torch.tensor([21, 9]), seq_lens_k=torch.tensor([30, 12]))
    assert rel_err(o.numpy(), ref) <= TOL["f32"]


# ---- ALiBi, softcap and the mods against formulas -----------------------


@pytest.mark.parametrize("variant", ["softmax", "sigmoid"])
def test_alibi_and_softcap(rng, variant):
    q, k, v = randn(rng, 2, 4, 33, 40), randn(rng, 2, 2, 47, 40), randn(rng, 2, 2, 47, 24)
    q *= 3.0  # scores large enough for the cap to matter
    slopes = [2.0 ** -(h + 1) for h in range(4)]
    for kw in (dict(alibi_slopes=slopes), dict(softcap=2.5),
               dict(alibi_slopes=np.array(slopes, np.float32), softcap=1.5, causal=True)):
        o = clattn.attention(q, k, v, variant=variant, **kw)
        ref, _ = ref_pipe(q, k, v, variant, kw.get("causal", False),
                          slopes=kw.get("alibi_slopes"), softcap=kw.get("softcap"))
        assert rel_err(o, ref) <= TOL["f32"], kw


def test_score_and_mask_mods(rng):
    q, k, v = randn(rng, 2, 3, 25, 16), randn(rng, 2, 3, 31, 16), randn(rng, 2, 3, 31, 16)
    o = clattn.attention(q, k, v, score_mod="score - 0.05f * (float)abs(i - j) + 0.1f * b",
                         mask_mod="((i + j) % 3 != 0) || h == 1")
    ref, _ = ref_pipe(q, k, v, score_fn=lambda s, b, h, i, j: s - 0.05 * np.abs(i - j) + 0.1 * b,
                      mask_fn=lambda b, h, i, j: ((i + j) % 3 != 0) | (h == 1))
    assert rel_err(o, ref) <= TOL["f32"]
    # A window written as a mask mod gives the window (i' = i + 6 here).
    ow = clattn.attention(q, k, v, window=(3, 1), variant="sigmoid")
    om = clattn.attention(q, k, v, mask_mod="j >= i + 3 && j <= i + 7", variant="sigmoid")
    assert rel_err(ow, om) <= 1e-6


def test_mod_that_does_not_compile(rng):
    q = randn(rng, 1, 1, 8, 16)
    with pytest.raises(clattn.BuildFailedError, match="no_such_fn"):
        clattn.attention(q, q, q, score_mod="no_such_fn(score)")
    with pytest.raises(clattn.InvalidDescriptorError, match="score_mod"):
        clattn.attention(q, q, q, score_mod="score; return 0")


# ---- Gradients ----------------------------------------------------------


def torch_grads(q, k, v, dout, lens_q, lens_k, causal=False, window=None, slopes=None):
    """Gradients of masked SDPA (float64) with the per-sequence masks and
    ALiBi as an additive float mask; rows that see nothing give 0."""
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    b, hq, nq, _ = q.shape
    nk = k.shape[2]
    rep = hq // k.shape[1]
    masks = []
    for bi in range(b):
        m = torch.from_numpy(visible(nq, nk, lens_q[bi], lens_k[bi], causal, window))
        add = torch.zeros(hq, nq, nk, dtype=torch.float64)
        if slopes is not None:
            ip = torch.arange(nq)[:, None] + lens_k[bi] - lens_q[bi]
            dist = (ip - torch.arange(nk)[None, :]).abs().double()
            add = -torch.tensor(slopes, dtype=torch.float64)[:, None, None] * dist
        masks.append(add.masked_fill(~m, -math.inf))
    mask = torch.stack(masks)
    o = F.scaled_dot_product_attention(qd, kd.repeat_interleave(rep, 1),
                                       vd.repeat_interleave(rep, 1), attn_mask=mask)
    o = torch.nan_to_num(o)
    o.backward(dout.double())
    return qd.grad, kd.grad, vd.grad


@pytest.mark.parametrize("kw", [dict(), dict(causal=True), dict(window=(6, 2)),
                                dict(causal=True, alibi_slopes=[0.5, 0.25, 0.125, 0.0625])],
                         ids=str)
def test_backward_with_lengths_against_autograd(kw):
    b, hq, hkv, nq, nk, d, dv = 3, 4, 2, 29, 41, 24, 16
    lq, lk = [29, 11, 0], [41, 17, 9]
    q = trand(b, hq, nq, d, seed=40).requires_grad_()
    k = trand(b, hkv, nk, d, seed=41).requires_grad_()
    v = trand(b, hkv, nk, dv, seed=42).requires_grad_()
    dout = trand(b, hq, nq, dv, seed=43)
    o = clattn.attention(q, k, v, seq_lens_q=lq, seq_lens_k=lk, **kw)
    o.backward(dout)
    refs = torch_grads(q, k, v, dout, lq, lk, kw.get("causal", False), kw.get("window"),
                       kw.get("alibi_slopes"))
    for name, t, ref in zip("qkv", (q, k, v), refs):
        assert terr(t.grad, ref) <= GRAD_TOL[torch.float32], name
    assert torch.all(q.grad[1, :, 11:] == 0) and torch.all(k.grad[1, :, 17:] == 0)
    assert torch.all(q.grad[2] == 0) and torch.all(v.grad[2] == 0)


def test_backward_softcap_against_autograd():
    q = trand(1, 2, 19, 16, seed=44).mul(3).requires_grad_()
    k = trand(1, 2, 23, 16, seed=45).requires_grad_()
    v = trand(1, 2, 23, 8, seed=46).requires_grad_()
    dout = trand(1, 2, 19, 8, seed=47)
    o = clattn.attention(q, k, v, softcap=2.0, causal=True)
    o.backward(dout)
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    s = qd @ kd.transpose(-1, -2) / 4.0
    s = 2.0 * torch.tanh(s / 2.0)
    s = s.masked_fill(~torch.from_numpy(visible(19, 23, causal=True)), -math.inf)
    (torch.softmax(s, -1) @ vd).backward(dout.double())
    for name, t, ref in zip("qkv", (q, k, v), (qd.grad, kd.grad, vd.grad)):
        assert terr(t.grad, ref) <= GRAD_TOL[torch.float32], name


def test_backward_with_score_mod_is_unsupported():
    q = trand(1, 1, 8, 16, seed=48).requires_grad_()
    o = clattn.attention(q, q, q, score_mod="score * 0.5f")
    with pytest.raises(clattn.UnsupportedError):
        o.sum().backward()


# ---- The plan cache and argument checks ---------------------------------


def test_cache_keys_pipeline_not_lengths(rng):
    clattn.clear_cache()
    q, k, v = randn(rng, 2, 2, 40, 16), randn(rng, 2, 2, 40, 16), randn(rng, 2, 2, 40, 16)
    calls = [dict(), dict(window=(4, 0)), dict(window=(4, 1)), dict(softcap=5.0),
             dict(alibi_slopes=[0.5, 0.25]), dict(alibi_slopes=[0.5, 0.125]),
             dict(score_mod="score * 2.0f"), dict(mask_mod="j <= i")]
    for n, kw in enumerate(calls):
        clattn.attention(q, k, v, **kw)
        assert clattn.cache_info().misses == n + 1, kw
    # Lengths are per call: the same plan.
    clattn.attention(q, k, v, window=(4, 0), seq_lens_q=[40, 3], seq_lens_k=[7, 40])
    clattn.attention(q, k, v, window=(4, 0), seq_lens_q=[1, 2])
    # (-1, -1) is no window at all.
    clattn.attention(q, k, v, window=(-1, -1))
    info = clattn.cache_info()
    assert info.misses == len(calls) and info.hits == 3


def test_pipeline_argument_checks(rng):
    q, k, v = randn(rng, 2, 4, 8, 16), randn(rng, 2, 2, 12, 16), randn(rng, 2, 2, 12, 16)
    with pytest.raises(ValueError, match=r"seq_lens_q\[1\] = 9 is outside 0..8"):
        clattn.attention(q, k, v, seq_lens_q=[8, 9])
    with pytest.raises(ValueError, match=r"seq_lens_k\[0\] = -1"):
        clattn.attention(q, k, v, seq_lens_k=[-1, 3])
    with pytest.raises(ValueError, match="batch has 2"):
        clattn.attention(q, k, v, seq_lens_k=[3])
    with pytest.raises(ValueError, match="ints"):
        clattn.attention(q, k, v, seq_lens_k=[3.0, 4.0])
    with pytest.raises(ValueError, match="ints"):
        clattn.attention(q, k, v, seq_lens_q=[[3, 4]])
    with pytest.raises(ValueError, match="window left"):
        clattn.attention(q, k, v, window=(-2, 0))
    with pytest.raises(TypeError, match="window"):
        clattn.attention(q, k, v, window=3)
    with pytest.raises(TypeError, match="window right"):
        clattn.attention(q, k, v, window=(3, 1.5))
    with pytest.raises(ValueError, match="softcap"):
        clattn.attention(q, k, v, softcap=0.0)
    with pytest.raises(ValueError, match="one per query head, 4"):
        clattn.attention(q, k, v, alibi_slopes=[0.5, 0.25])
    with pytest.raises(ValueError, match="finite"):
        clattn.attention(q, k, v, alibi_slopes=[0.5, np.nan, 1, 1])
    with pytest.raises(ValueError, match="empty"):
        clattn.attention(q, k, v, mask_mod=" ")
    with pytest.raises(TypeError, match="score_mod"):
        clattn.attention(q, k, v, score_mod=3)
    # The pipeline is softmax's and sigmoid's.
    for kw in (dict(window=(2, 0)), dict(softcap=2.0), dict(mask_mod="j < i")):
        with pytest.raises(clattn.InvalidDescriptorError, match="softmax and sigmoid"):
            clattn.attention(q, k, v, variant="linear", **kw)
