"""Bad inputs raise TypeError or ValueError before any device work; failing
C calls raise clattn.Error subclasses with the status name and the
context's message; nothing crashes the interpreter."""
import os
import subprocess
import sys

import numpy as np
import pytest

import clattn
from clattn import _lib
from conftest import randn


@pytest.fixture
def qkv(rng):
    return randn(rng, 1, 2, 8, 16), randn(rng, 1, 2, 8, 16), randn(rng, 1, 2, 8, 16)


def test_errors_status_table_matches_library():
    for name, value in _lib.STATUSES:
        assert _lib.lib.clattn_status_name(value).decode() == "CLATTN_" + name
    for name, value in _lib.STATUSES[1:]:
        e = clattn._errors.error_for(value, "why")
        assert isinstance(e, clattn.Error) and e.status == value
        assert e.name == "CLATTN_" + name and str(e) == f"CLATTN_{name}: why"
    assert clattn.library_version() == clattn.__version__


def test_errors_rank_and_shapes(qkv):
    q, k, v = qkv
    bad = [
        ((q[0], k, v), "rank 4"),
        ((q, k[None], v), "rank 4"),
        ((q, k, v[..., :8][:, :, :7]), "do not match"),
        ((q[..., :15], k, v), "do not match"),
        ((q, k[:, :, :7], v), "do not match"),
        ((np.concatenate([q, q]), k, v), "do not match"),
        ((randn(np.random.default_rng(0), 1, 3, 8, 16), k, v), "multiple"),
        ((q[:, :, :0], k, v), "empty dimension"),
        ((q, k[:, :, :0], v[:, :, :0]), "empty dimension"),
    ]
    for args, msg in bad:
        with pytest.raises(ValueError, match=msg):
            clattn.attention(*args)


def test_errors_kinds_and_dtypes(qkv):
    q, k, v = qkv
    with pytest.raises(TypeError, match="numpy arrays"):
        clattn.attention(q.tolist(), k, v)
    with pytest.raises(TypeError, match="numpy arrays"):
        clattn.attention(None, k, v)
    with pytest.raises(TypeError, match="float64"):
        clattn.attention(q.astype(np.float64), k, v)
    with pytest.raises(TypeError, match="int32"):
        clattn.attention(*(a.astype(np.int32) for a in qkv))
    with pytest.raises(TypeError, match="one dtype"):
        clattn.attention(q.astype(np.float16), k, v)
    with pytest.raises(TypeError, match="unsupported dtype"):
        clattn.attention(q, k, v, dtype="int8")
    with pytest.raises(TypeError):
        clattn.attention(np.zeros((1, 1, 2, 2), dtype=object), k, v)


def test_errors_options(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match="unknown variant"):
        clattn.attention(q, k, v, variant="flash")
    with pytest.raises(ValueError, match="scale"):
        clattn.attention(q, k, v, scale=0.0)
    with pytest.raises(ValueError, match="scale"):
        clattn.attention(q, k, v, scale=float("nan"))
    with pytest.raises(TypeError, match="scale"):
        clattn.attention(q, k, v, scale="1")
    with pytest.raises(ValueError, match="eps"):
        clattn.attention(q, k, v, variant="linear", eps=-1.0)
    with pytest.raises(ValueError, match="bias"):
        clattn.attention(q, k, v, variant="sigmoid", bias=float("inf"))
    with pytest.raises(ValueError, match="feature_map"):
        clattn.attention(q, k, v, variant="linear", feature_map="gelu")
    with pytest.raises(ValueError, match="return_lse"):
        clattn.attention(q, k, v, variant="linear", return_lse=True)
    with pytest.raises(TypeError, match="device"):
        clattn.attention(q, k, v, device=1.5)
    with pytest.raises(ValueError, match="out has shape"):
        clattn.attention(q, k, v, out=np.empty((1, 2, 8, 15), np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        clattn.attention(q, k, v, out=np.empty((1, 2, 16, 8), np.float32).transpose(0, 1, 3, 2))


def test_errors_from_the_library_carry_status_and_message(qkv):
    q, k, v = qkv
    # Options that do not apply to the variant: the C library's descriptor
    # check names the field (InvalidDescriptorError is also a ValueError).
    with pytest.raises(clattn.InvalidDescriptorError, match="scale does not apply to linear") as e:
        clattn.attention(q, k, v, variant="linear", scale=0.5)
    assert e.value.name == "CLATTN_ERROR_INVALID_DESCRIPTOR" and e.value.status == -1001
    assert isinstance(e.value, ValueError)
    with pytest.raises(clattn.InvalidDescriptorError, match="bias applies to sigmoid"):
        clattn.attention(q, k, v, bias=1.0)
    big = np.zeros((1, 1, 2, 300), np.float32)
    with pytest.raises(clattn.InvalidDescriptorError, match="dim 300 is over the limit"):
        clattn.attention(big, big, big)
    with pytest.raises(clattn.InvalidDescriptorError, match="tiles|SHAPE|shape"):
        clattn.attention(q, k, v, tiles="SHAPE=nonsense")
    with pytest.raises(clattn.DeviceNotFoundError, match="no-such-device"):
        clattn.attention(q, k, v, device="no-such-device")
    with pytest.raises(clattn.DeviceNotFoundError):
        clattn.Context("no-such-device")
    assert clattn.cache_info().plans >= 0  # the failures cached nothing broken
    assert clattn.attention(q, k, v).shape == (1, 2, 8, 16)


def test_errors_no_crash_in_a_child_interpreter():
    # Garbage of every sort in one process; it must end with exit 0.
    code = r"""
import numpy as np, clattn
bad = [None, 1, "x", [1.0], np.zeros(3), np.zeros((1, 1, 1, 1), np.complex64),
       np.zeros((2, 2, 2, 2, 2), np.float32), np.empty((1, 1, 0, 4), np.float32)]
good = np.ones((1, 1, 4, 4), np.float32)
n = 0
for b in bad:
    for args in [(b, good, good), (good, b, good), (good, good, b)]:
        try:
            clattn.attention(*args)
        except (TypeError, ValueError):
            n += 1
for kw in [dict(variant=None), dict(causal="yes", scale=-1), dict(device=-3),
           dict(device="999"), dict(eps=1e-3), dict(cos_m=2.0), dict(tiles=3)]:
    try:
        clattn.attention(good, good, good, **kw)
    except (TypeError, ValueError, clattn.Error):
        n += 1
print(n)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=os.environ.copy(), timeout=300)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip()) == 24 + 7
