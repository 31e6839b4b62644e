"""Float64 numpy references of clattn's four variants, written from the
definitions (the design's numerics table), independent of the package."""
import numpy as np


def _visible(nq, nk, causal):
    """[Nq, Nk] boolean mask: key j is visible to query i when
    j <= i + Nk - Nq (bottom-right aligned)."""
    if not causal:
        return np.ones((nq, nk), dtype=bool)
    i = np.arange(nq)[:, None]
    j = np.arange(nk)[None, :]
    return j <= i + (nk - nq)


def _expand_kv(k, hq):
    """Repeat kv heads so that query head h reads kv head h // (Hq / Hkv)."""
    return np.repeat(k, hq // k.shape[1], axis=1)


def _phi(x, feature_map):
    if feature_map == "relu":
        return np.maximum(x, 0.0)
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def reference(q, k, v, variant="softmax", causal=False, scale=None, bias=None,
              feature_map=None, eps=None, cos_m=None):
    """Returns (O, LSE or None) in float64."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    b, hq, nq, d = q.shape
    nk = k.shape[2]
    k = _expand_kv(k, hq)
    v = _expand_kv(v, hq)
    mask = _visible(nq, nk, causal)
    if variant in ("softmax", "sigmoid"):
        s = (1.0 / np.sqrt(d) if scale is None else scale) * np.einsum(
            "bhid,bhjd->bhij", q, k)
        if variant == "softmax":
            s = np.where(mask, s, -np.inf)
            m = s.max(axis=-1, keepdims=True)
            m = np.where(np.isfinite(m), m, 0.0)
            e = np.where(mask, np.exp(s - m), 0.0)
            l = e.sum(axis=-1, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                p = np.where(l > 0, e / l, 0.0)
                lse = np.where(l[..., 0] > 0, m[..., 0] + np.log(l[..., 0]), -np.inf)
            return np.einsum("bhij,bhjd->bhid", p, v), lse
        bb = -np.log(nk) if bias is None else bias
        p = np.where(mask, 1.0 / (1.0 + np.exp(-(s + bb))), 0.0)
        return np.einsum("bhij,bhjd->bhid", p, v), None
    eps = 1e-6 if eps is None else eps
    if variant == "linear":
        fq = _phi(q, feature_map or "elu1")
        fk = _phi(k, feature_map or "elu1")
        a = np.where(mask, np.einsum("bhid,bhjd->bhij", fq, fk), 0.0)
        num = np.einsum("bhij,bhjd->bhid", a, v)
        den = a.sum(axis=-1, keepdims=True) + eps
        return num / den, None
    # cosformer: phi(x) [sin t, cos t] with 1-based positions; the product of
    # the two features is phi(q).phi(k) cos(t_i - t_j).
    m = float(max(nq, nk)) if cos_m is None else cos_m
    fq = _phi(q, feature_map or "relu")
    fk = _phi(k, feature_map or "relu")
    tq = (np.pi / 2) * np.arange(1, nq + 1) / m
    tk = (np.pi / 2) * np.arange(1, nk + 1) / m
    w = np.cos(tq[:, None] - tk[None, :])
    a = np.where(mask, np.einsum("bhid,bhjd->bhij", fq, fk) * w, 0.0)
    num = np.einsum("bhij,bhjd->bhid", a, v)
    den = np.maximum(a.sum(axis=-1, keepdims=True), eps)
    return num / den, None


def rel_err(x, ref):
    """Largest absolute error over the largest reference magnitude, finite
    entries; infinite references must match exactly."""
    x = np.asarray(x, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    fin = np.isfinite(ref)
    if not np.array_equal(x[~fin], ref[~fin]):
        return np.inf
    if not np.all(np.isfinite(x[fin])):
        return np.inf
    scale = max(np.abs(ref[fin]).max(initial=0.0), 1e-30)
    return float(np.abs(x[fin] - ref[fin]).max(initial=0.0) / scale)
