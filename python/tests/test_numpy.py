"""numpy inputs against the float64 reference: every variant, f32 and f16,
awkward shapes (odd N, Nq != Nk, GQA, D not a power of two, D != Dv,
causal with rows that see no key), the options of each variant, and the
kinds of arrays that are copied first."""
import numpy as np
import pytest

import clattn
from conftest import TOL, randn
from reference import reference, rel_err

VARIANTS = ["softmax", "sigmoid", "linear", "cosformer"]
# (B, Hq, Hkv, Nq, Nk, D, Dv, causal)
SHAPES = [
    (1, 2, 2, 33, 33, 16, 16, False),
    (2, 4, 2, 17, 45, 40, 24, True),
    (1, 3, 1, 50, 21, 7, 9, True),  # Nq > Nk: the first 29 rows see no key
    (2, 2, 1, 64, 96, 64, 64, False),
    (1, 2, 2, 1, 129, 24, 24, True),
]


def inputs(rng, shape, dtype=np.float32):
    b, hq, hkv, nq, nk, d, dv, _ = shape
    return (randn(rng, b, hq, nq, d, dtype=dtype), randn(rng, b, hkv, nk, d, dtype=dtype),
            randn(rng, b, hkv, nk, dv, dtype=dtype))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:7])) + ("c" if s[7] else ""))
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
def test_numpy_against_reference(rng, variant, shape, dtype):
    q, k, v = inputs(rng, shape, dtype)
    causal = shape[7]
    want_lse = variant == "softmax"
    res = clattn.attention(q, k, v, variant=variant, causal=causal, return_lse=want_lse)
    o, lse = res if want_lse else (res, None)
    assert isinstance(o, np.ndarray) and o.dtype == dtype
    assert o.shape == (shape[0], shape[1], shape[3], shape[6])
    ref_o, ref_lse = reference(q, k, v, variant, causal)
    tol = TOL["f16" if dtype == np.float16 else "f32"]
    assert rel_err(o, ref_o) <= tol
    if want_lse:
        assert lse.dtype == np.float32 and lse.shape == shape[:2][:1] + (shape[1], shape[3])
        assert rel_err(lse, ref_lse) <= tol
    if causal and shape[3] > shape[4]:
        # Rows with no visible key are exactly zero in every variant.
        assert np.all(o[:, :, : shape[3] - shape[4]] == 0)
        if want_lse:
            assert np.all(lse[:, :, : shape[3] - shape[4]] == -np.inf)


@pytest.mark.parametrize("variant", VARIANTS)
def test_numpy_f16_storage_of_f32_input(rng, variant):
    shape = (1, 2, 1, 37, 29, 24, 40, True)
    q, k, v = inputs(rng, shape)
    o = clattn.attention(q, k, v, variant=variant, causal=True, dtype="f16")
    assert o.dtype == np.float32
    h = [a.astype(np.float16) for a in (q, k, v)]
    ref_o, _ = reference(*h, variant, True)
    assert rel_err(o, ref_o) <= TOL["f16"]


def round_bf16(x):
    """float32 to the nearest bfloat16 (ties to even), back as float32."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


@pytest.mark.parametrize("variant", VARIANTS)
def test_numpy_bf16_storage(rng, variant):
    shape = (2, 4, 2, 37, 29, 24, 40, True)
    q, k, v = inputs(rng, shape)
    o = clattn.attention(q, k, v, variant=variant, causal=True, dtype="bf16")
    assert o.dtype == np.float32
    ref_o, _ = reference(*(round_bf16(a) for a in (q, k, v)), variant, True)
    assert rel_err(o, ref_o) <= 1e-2  # as the C tests: inputs rounded, float math
    # The output itself is bfloat16.
    assert np.array_equal(o, round_bf16(o))


@pytest.mark.parametrize(
    "variant,opts",
    [
        ("softmax", {"scale": 0.3}),
        ("sigmoid", {"scale": 0.2, "bias": -1.5}),
        ("sigmoid", {"bias": 0.0}),
        ("linear", {"feature_map": "relu", "eps": 1e-3}),
        ("linear", {"feature_map": "elu1"}),
        ("cosformer", {"cos_m": 100.0, "eps": 1e-4}),
        ("cosformer", {"feature_map": "elu1"}),
    ],
)
def test_numpy_options(rng, variant, opts):
    shape = (1, 2, 2, 31, 47, 20, 12, False)
    q, k, v = inputs(rng, shape)
    o = clattn.attention(q, k, v, variant=variant, **opts)
    ref_o, _ = reference(q, k, v, variant, False, **opts)
    assert rel_err(o, ref_o) <= TOL["f32"]


def test_numpy_non_contiguous_inputs_are_copied(rng):
    # Transposed views, a Fortran-ordered array and big-endian data all give
    # what their contiguous copies give.
    base = randn(rng, 1, 19, 2, 16)
    q = base.transpose(0, 2, 1, 3)
    k = np.asfortranarray(randn(rng, 1, 2, 23, 16))
    v = randn(rng, 1, 2, 23, 16).astype(">f4")
    assert not q.flags.c_contiguous and not k.flags.c_contiguous
    o = clattn.attention(q, k, v)
    ref_o, _ = reference(q, k, v)
    assert rel_err(o, ref_o) <= TOL["f32"]
    assert np.array_equal(o, clattn.attention(*(np.ascontiguousarray(a, np.float32) for a in (q, k, v))))


def test_numpy_out_argument(rng):
    q, k, v = inputs(rng, (1, 2, 2, 8, 8, 16, 16, False))
    out = np.full((1, 2, 8, 16), np.nan, np.float32)
    res = clattn.attention(q, k, v, out=out)
    assert res is out
    assert rel_err(out, reference(q, k, v)[0]) <= TOL["f32"]
    out16 = np.zeros((1, 2, 8, 16), np.float16)
    q16, k16, v16 = (a.astype(np.float16) for a in (q, k, v))
    assert clattn.attention(q16, k16, v16, out=out16, dtype="f32") is out16
    assert rel_err(out16, reference(q16, k16, v16)[0]) <= TOL["f16"]


def test_numpy_devices_listed():
    devs = clattn.devices()
    assert devs and all(isinstance(d, clattn.DeviceInfo) for d in devs)
    for i, d in enumerate(devs):
        assert d.index == i and d.name and d.compute_units >= 1
        assert d.device_type in ("cpu", "gpu", "accelerator", "other")
        assert f"device {i} ({d.selector}): {d.name}" in str(d)
        assert clattn.find_device(d.selector) == i
        assert clattn.find_device(i) == i


def test_numpy_explicit_device_and_context(rng):
    q, k, v = inputs(rng, (1, 1, 1, 9, 9, 8, 8, False))
    ref_o, _ = reference(q, k, v)
    index = clattn.find_device()
    assert rel_err(clattn.attention(q, k, v, device=index), ref_o) <= TOL["f32"]
    assert rel_err(clattn.attention(q, k, v, device=str(index)), ref_o) <= TOL["f32"]
    ctx = clattn.Context(index)
    assert ctx.device.index == index
    assert rel_err(clattn.attention(q, k, v, device=ctx), ref_o) <= TOL["f32"]


def test_numpy_plan_describe():
    plan = clattn.get_plan((1, 8, 128, 64), (1, 8, 128, 64), (1, 8, 128, 64), causal=True)
    text = plan.describe()
    assert text.startswith("softmax f32 shape=")
    assert plan is clattn.get_plan((1, 8, 128, 64), (1, 8, 128, 64), (1, 8, 128, 64), causal=True)
