#!/usr/bin/env python3
"""vs_torch.py - clattn against what a PyTorch user would run instead, on the
same cores, in one run, interleaved case by case.

For every case (variant, causal, length) it times, alternately for --rounds
rounds, PyTorch's implementation and `clattn-bench --json` on the same shape,
and reports the medians:

  softmax    torch.nn.functional.scaled_dot_product_attention
  sigmoid    the formula sigmoid(s Q K^T + b) V, b = -ln(Nk), causal mask
  linear     the formula with phi = elu + 1: non-causal (phi K)^T V, causal
             by the cumulative sum of phi(k_j) v_j^T
  cosformer  the official cosFormer code: relu, sin/cos re-weighting with
             M = max(Nq, Nk) and 1-based positions, clamp_min(1e-6); causal
             by the cumulative sum of the N x D x Dv tensor, as it does

PyTorch runs with as many threads as the clattn device has compute units.
Before timing, each (device, variant, causal) is run once through clattn-run
on a small shape and compared with PyTorch's output, so that the two sides
never compute different things; a disagreement stops the run.

Output: one JSON object per case on stdout, then a markdown table on
stderr (and in --markdown FILE). Times: clattn's are device times from
OpenCL profiling events (median of --repeat runs inside clattn-bench);
PyTorch's are wall-clock times of a synchronous call (median of --repeat).
PyTorch's vector kernels are those of torch.backends.cpu.get_cpu_capability()
(torch_cpu_capability); ATEN_CPU_CAPABILITY=avx2 holds them to AVX2, which on
some CPUs is the faster choice (F.elu, for one).

When the running Python has no torch, the script creates a virtual
environment (--venv, default bench/.venv), installs torch and numpy into it
from PyPI, and runs itself again there. The torch wheel is large: this is
kept out of the build and the test suite.

A case is a Case below (shape, GQA heads, direction); decode shapes
(Nq = 1, long Nk, GQA) and backward timing fit the same loop.
"""

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VARIANTS = ("softmax", "sigmoid", "linear", "cosformer")
TORCH_IMPL = {
    "softmax": "sdpa",
    "sigmoid": "formula",
    "linear": "formula",
    "cosformer": "official",
}


def ensure_torch(venv):
    """Returns when torch imports; otherwise re-executes under a venv."""
    try:
        import torch  # noqa: F401
        import numpy  # noqa: F401
        return
    except ImportError:
        pass
    py = os.path.join(venv, "bin", "python")
    if os.path.abspath(sys.executable) == os.path.abspath(py):
        sys.exit("vs_torch.py: torch is still missing in %s" % venv)
    if not os.path.exists(py):
        print("vs_torch.py: creating %s with torch from PyPI (large download)"
              % venv, file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", venv])
        subprocess.check_call([py, "-m", "pip", "install", "--quiet",
                               "torch", "numpy"])
    os.execv(py, [py] + sys.argv)


@dataclasses.dataclass
class Case:
    variant: str
    causal: bool
    batch: int
    heads: int
    kv_heads: int
    seq_q: int
    seq_k: int
    dim: int
    dim_v: int
    direction: str = "forward"  # "backward" is for later


# ---- PyTorch side ----------------------------------------------------------

def causal_mask(torch, nq, nk):
    """Bottom-right aligned: key j is visible to query i when
    j <= i + nk - nq (FlashAttention 2.1+, and clattn)."""
    i = torch.arange(nq).unsqueeze(1)
    j = torch.arange(nk).unsqueeze(0)
    return j <= i + (nk - nq)


def expand_kv(x, heads):
    """GQA: each kv head serves heads / kv_heads consecutive query heads."""
    rep = heads // x.shape[1]
    return x if rep == 1 else x.repeat_interleave(rep, dim=1)


def prefix_rows(cum, nq, nk):
    """Row i of a causal prefix over keys: the cumulative value at key
    i + nk - nq, zero for rows that see no key."""
    if nq == nk:
        return cum
    idx = [i + nk - nq for i in range(nq)]
    out = cum.new_zeros(cum.shape[:2] + (nq,) + cum.shape[3:])
    rows = [i for i, l in enumerate(idx) if l >= 0]
    if rows:
        out[:, :, rows] = cum[:, :, [idx[i] for i in rows]]
    return out


def torch_softmax(torch, F, q, k, v, causal):
    k, v = expand_kv(k, q.shape[1]), expand_kv(v, q.shape[1])
    nq, nk = q.shape[2], k.shape[2]
    if causal and nq != nk:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=causal_mask(torch, nq, nk))
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def torch_sigmoid(torch, F, q, k, v, causal):
    k, v = expand_kv(k, q.shape[1]), expand_kv(v, q.shape[1])
    nq, nk, d = q.shape[2], k.shape[2], q.shape[3]
    s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
    p = torch.sigmoid(s - math.log(nk))
    if causal:
        p = p.masked_fill(~causal_mask(torch, nq, nk), 0.0)
    return torch.matmul(p, v)


def torch_linear(torch, F, q, k, v, causal, eps=1e-6):
    k, v = expand_kv(k, q.shape[1]), expand_kv(v, q.shape[1])
    q, k = F.elu(q) + 1, F.elu(k) + 1
    nq, nk = q.shape[2], k.shape[2]
    if not causal:
        kv = torch.einsum("bhnd,bhne->bhde", k, v)
        num = torch.einsum("bhnd,bhde->bhne", q, kv)
        den = torch.einsum("bhnd,bhd->bhn", q, k.sum(dim=2))
        return num / (den.unsqueeze(-1) + eps)
    kv = prefix_rows(torch.einsum("bhnd,bhne->bhnde", k, v).cumsum(dim=2),
                     nq, nk)
    z = prefix_rows(k.cumsum(dim=2), nq, nk)
    num = torch.einsum("bhnd,bhnde->bhne", q, kv)
    den = torch.einsum("bhnd,bhnd->bhn", q, z)
    return num / (den.unsqueeze(-1) + eps)


def torch_cosformer(torch, F, q, k, v, causal, eps=1e-6):
    """The attention of the official cosFormer code (after its
    projections), with tensors [B, H, N, D] flattened to its [B*H, N, D]."""
    b, h = q.shape[:2]
    k, v = expand_kv(k, h), expand_kv(v, h)
    tgt_len, src_len = q.shape[2], k.shape[2]
    q = F.relu(q).reshape(b * h, tgt_len, -1)
    k = F.relu(k).reshape(b * h, src_len, -1)
    v = v.reshape(b * h, src_len, -1)
    m = max(src_len, tgt_len)
    weight_index = (math.pi / 2 * torch.arange(1, m + 1)).reshape(1, -1, 1)
    q_ = torch.cat([q * torch.sin(weight_index[:, :tgt_len, :] / m),
                    q * torch.cos(weight_index[:, :tgt_len, :] / m)], dim=-1)
    k_ = torch.cat([k * torch.sin(weight_index[:, :src_len, :] / m),
                    k * torch.cos(weight_index[:, :src_len, :] / m)], dim=-1)
    if causal:
        kv_ = torch.einsum("nld,nlm->nldm", k_, v)
        kv_cum = torch.cumsum(kv_, dim=1)
        k_cum = torch.cumsum(k_, dim=1)
        if tgt_len != src_len:  # bottom-right rows, as clattn aligns them
            kv_cum = prefix_rows(kv_cum.unsqueeze(0), tgt_len,
                                 src_len).squeeze(0)
            k_cum = prefix_rows(k_cum.unsqueeze(0), tgt_len,
                                src_len).squeeze(0)
        qkv = torch.einsum("nld,nldm->nlm", q_, kv_cum)
        denom = torch.clamp_min(torch.einsum("nlm,nlm->nl", q_, k_cum), eps)
        out = qkv / denom.unsqueeze(-1)
    else:
        kv_ = torch.einsum("nld,nlm->ndm", k_, v)
        z_ = 1 / torch.clamp_min(
            torch.einsum("nld,nd->nl", q_, torch.sum(k_, axis=1)), eps)
        out = torch.einsum("nld,ndm,nl->nlm", q_, kv_, z_)
    return out.reshape(b, h, tgt_len, -1)


TORCH_FN = {
    "softmax": torch_softmax,
    "sigmoid": torch_sigmoid,
    "linear": torch_linear,
    "cosformer": torch_cosformer,
}


def torch_bytes(c):
    """The largest tensor PyTorch's code forms for a case (bytes)."""
    feat = 2 * c.dim if c.variant == "cosformer" else c.dim
    if c.variant in ("softmax", "sigmoid"):
        return 4 * c.batch * c.heads * c.seq_q * c.seq_k * 2
    if c.causal:  # the N x D x Dv tensor and its cumulative sum
        return 4 * c.batch * c.heads * c.seq_k * feat * c.dim_v * 2
    return 4 * c.batch * c.heads * (c.seq_q + c.seq_k) * feat


def make_inputs(torch, c, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(c.batch, c.heads, c.seq_q, c.dim, generator=g)
    k = torch.randn(c.batch, c.kv_heads, c.seq_k, c.dim, generator=g)
    v = torch.randn(c.batch, c.kv_heads, c.seq_k, c.dim_v, generator=g)
    return q, k, v


def time_torch(torch, F, c, repeat):
    q, k, v = make_inputs(torch, c, 1)
    fn = TORCH_FN[c.variant]
    times = []
    with torch.inference_mode():
        # Warm-up: at least one call and 0.25 s, as clattn-bench does (new
        # worker threads take tens of milliseconds to spread over the cores).
        start = time.perf_counter()
        fn(torch, F, q, k, v, c.causal)
        while time.perf_counter() - start < 0.25:
            fn(torch, F, q, k, v, c.causal)
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(torch, F, q, k, v, c.causal)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


# ---- clattn side -----------------------------------------------------------

def run_json(cmd):
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    lines = [json.loads(l) for l in out.stdout.splitlines()
             if l.startswith("{")]
    if out.returncode != 0 and not lines:
        raise RuntimeError("%s failed (%d): %s" % (
            " ".join(cmd), out.returncode, out.stderr.strip()[-400:]))
    return lines


def device_info(bench, device):
    for rec in run_json([bench, "--device", device, "--variant", "linear",
                         "--seq", "16", "--dim", "8", "--repeat", "1",
                         "--warmup", "0", "--json"]):
        if rec.get("type") == "device":
            return rec
    raise RuntimeError("clattn-bench gave no device line for " + device)


def time_clattn(bench, device, c, repeat):
    cmd = [bench, "--device", device, "--variant", c.variant,
           "--batch", str(c.batch), "--heads", str(c.heads),
           "--kv-heads", str(c.kv_heads), "--seq", str(c.seq_q),
           "--seq-k", str(c.seq_k), "--dim", str(c.dim),
           "--dim-v", str(c.dim_v), "--repeat", str(repeat),
           "--max-case-seconds", "600", "--json"]
    if c.causal:
        cmd.append("--causal")
    for rec in run_json(cmd):
        if rec.get("type") == "case":
            return rec
        if rec.get("type") == "skipped":
            raise RuntimeError("clattn-bench skipped: " + rec["skipped"])
    raise RuntimeError("clattn-bench gave no case line: " + " ".join(cmd))


def check_agreement(torch, F, np, run, device, c, tol=1e-4):
    """Runs a small version of the case through clattn-run and PyTorch;
    returns the largest absolute difference over the largest output."""
    small = dataclasses.replace(
        c, batch=1, heads=2, kv_heads=2 if c.heads == c.kv_heads else 1,
        seq_q=min(c.seq_q, 67), seq_k=min(c.seq_k, 67))
    q, k, v = make_inputs(torch, small, 7)
    with torch.inference_mode():
        ref = TORCH_FN[c.variant](torch, F, q.double(), k.double(),
                                  v.double(), c.causal).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, x in (("q", q), ("k", k), ("v", v)):
            paths[name] = os.path.join(tmp, name + ".npy")
            np.save(paths[name], x.numpy().astype(np.float32))
        out = os.path.join(tmp, "o.npy")
        cmd = [run, "--variant", c.variant, "--q", paths["q"], "--k",
               paths["k"], "--v", paths["v"], "--out", out, "--device",
               device]
        if c.causal:
            cmd.append("--causal")
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError("clattn-run failed: " + r.stderr.strip())
        got = np.load(out)
    err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))
    if not err <= tol:
        raise RuntimeError("clattn and PyTorch disagree on %s causal=%d: "
                           "relative error %.3g > %g" % (
                               c.variant, c.causal, err, tol))
    return err


# ---- the run ---------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="clattn against PyTorch on the same cores, interleaved.")
    ap.add_argument("--device", action="append",
                    help="clattn device selector; repeat or give a comma "
                         "list to run several (default: clattn's default)")
    ap.add_argument("--variant", default="all",
                    help="comma list of %s, or all" % ", ".join(VARIANTS))
    ap.add_argument("--seq", default="1024,4096",
                    help="comma list of lengths (Nq = Nk)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--causal", action="store_true", help="causal only")
    ap.add_argument("--causal-both", action="store_true",
                    help="causal and not (default: not)")
    ap.add_argument("--repeat", type=int, default=5,
                    help="timed runs per side per round")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternations of PyTorch and clattn per case")
    ap.add_argument("--torch-max-gb", type=float, default=6.0,
                    help="skip PyTorch cases whose largest tensors pass this")
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "tools",
                                                    "clattn-bench"))
    ap.add_argument("--run", default=os.path.join(ROOT, "build", "tools",
                                                  "clattn-run"))
    ap.add_argument("--bench-before",
                    help="a second clattn-bench (an earlier build) timed in "
                         "the same rounds: clattn_before_ms, before_speedup")
    ap.add_argument("--venv", default=os.path.join(HERE, ".venv"))
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--label", help="a note kept in every JSON line")
    return ap.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    ensure_torch(args.venv)
    import numpy as np
    import torch
    import torch.nn.functional as F

    variants = VARIANTS if args.variant == "all" else args.variant.split(",")
    for v in variants:
        if v not in VARIANTS:
            sys.exit("vs_torch.py: unknown variant " + v)
    modes = [False, True] if args.causal_both else [args.causal]
    seqs = [int(s) for s in args.seq.split(",")]
    devices = [d for arg in (args.device or [""]) for d in arg.split(",")]
    for tool in (args.bench, args.run):
        if not os.access(tool, os.X_OK):
            sys.exit("vs_torch.py: %s not found; build clattn first "
                     "(cmake --build build)" % tool)

    capability = torch.backends.cpu.get_cpu_capability()
    rows = []
    for dev in devices:
        info = device_info(args.bench, dev)
        threads = int(info.get("compute_units", os.cpu_count()))
        torch.set_num_threads(threads)
        runtime = info.get("platform", "")
        for variant in variants:
            for causal in modes:
                c0 = Case(variant, causal, args.batch, args.heads, args.heads,
                          64, 64, args.dim, args.dim)
                agree = check_agreement(torch, F, np, args.run, dev, c0)
                for n in seqs:
                    c = dataclasses.replace(c0, seq_q=n, seq_k=n)
                    rec = dict(dataclasses.asdict(c))
                    rec.update(seq=n, device=info.get("name"),
                               runtime=runtime,
                               torch_impl=TORCH_IMPL[variant],
                               torch_version=torch.__version__,
                               torch_threads=threads,
                               torch_cpu_capability=capability,
                               check_max_rel_err=agree)
                    if args.label:
                        rec["label"] = args.label
                    skip_torch = torch_bytes(c) > args.torch_max_gb * 2**30
                    tt, ct, bt, tiles = [], [], [], None
                    for _ in range(args.rounds):
                        if not skip_torch:
                            tt += time_torch(torch, F, c, args.repeat)
                        case = time_clattn(args.bench, dev, c, args.repeat)
                        ct.append(case["ms_median"])
                        tiles = case.get("tiles")
                        if args.bench_before:
                            bt.append(time_clattn(args.bench_before, dev, c,
                                                  args.repeat)["ms_median"])
                    rec["clattn_ms"] = statistics.median(ct)
                    rec["clattn_tiles"] = tiles
                    if bt:
                        rec["clattn_before_ms"] = statistics.median(bt)
                        rec["before_speedup"] = (rec["clattn_before_ms"] /
                                                 rec["clattn_ms"])
                    if skip_torch:
                        rec["torch_ms"] = None
                        rec["speedup"] = None
                        rec["torch_skipped"] = (
                            "needs %.1f GB > --torch-max-gb" %
                            (torch_bytes(c) / 2**30))
                    else:
                        rec["torch_ms"] = statistics.median(tt)
                        rec["speedup"] = rec["torch_ms"] / rec["clattn_ms"]
                    print(json.dumps(rec), flush=True)
                    rows.append(rec)

    lines = ["| runtime | device | variant | causal | N | D | PyTorch (%s) ms "
             "| clattn ms | speedup |" % "impl",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tms = "%.2f (%s)" % (r["torch_ms"], r["torch_impl"]) \
            if r["torch_ms"] is not None else "skipped (memory)"
        sp = "%.1fx" % r["speedup"] if r["speedup"] is not None else "-"
        lines.append("| %s | %s | %s | %s | %d | %d | %s | %.2f | %s |" % (
            r["runtime"], r["device"], r["variant"],
            "yes" if r["causal"] else "no", r["seq"], r["dim"], tms,
            r["clattn_ms"], sp))
    table = "\n".join(lines)
    print(table, file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
