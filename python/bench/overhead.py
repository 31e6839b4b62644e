"""Python overhead of clattn.attention against the same plan run from C.

Compiles a small C timer against include/clattn.h and the package's own
library, then alternates rounds: the C program times
clattn_plan_run_host (float32 host arrays, blocking) on one plan, and this
process times clattn.attention on numpy float32 arrays of the same shape
(the cached plan, clattn_plan_run_host_raw). Both count every call from
host arrays in to the host output out. Prints the median per round and the
ratio of the medians.

On a busy machine the rounds drift; the second measure alternates, call by
call in this process, clattn_plan_run_host on the cached plan (through
ctypes, about a microsecond of its own) with clattn.attention, and reports
the median of the per-pair ratios. The third gives the overhead in
microseconds on a tiny shape, where the device work is negligible.

    python python/bench/overhead.py [--shape B,H,N,D] [--variant V] [--causal]
                                    [--reps R] [--rounds K]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import clattn

C_SOURCE = r"""
#include "clattn.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}
int main(int argc, char **argv) {
  size_t b = atoi(argv[1]), h = atoi(argv[2]), n = atoi(argv[3]), d = atoi(argv[4]);
  clattn_variant variant;
  clattn_variant_parse(argv[5], &variant);
  int causal = atoi(argv[6]), reps = atoi(argv[7]);
  clattn_context_t ctx = NULL;
  clattn_plan_t plan = NULL;
  clattn_desc desc;
  clattn_desc_init(&desc, variant);
  desc.batch = b; desc.heads_q = h; desc.seq_q = desc.seq_k = n; desc.dim = d;
  desc.causal = causal;
  if (clattn_context_create(&ctx, NULL, 0) || clattn_plan_create(ctx, &desc, &plan)) {
    fprintf(stderr, "%s\n", clattn_context_error(ctx));
    return 1;
  }
  size_t count = b * h * n * d;
  float *x = malloc(count * sizeof *x), *o = malloc(count * sizeof *o);
  for (size_t i = 0; i < count; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  double *t = malloc(reps * sizeof *t);
  clattn_plan_run_host(plan, x, x, x, o, NULL); /* warm-up */
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    if (clattn_plan_run_host(plan, x, x, x, o, NULL)) return 1;
    t[r] = now() - t0;
  }
  qsort(t, reps, sizeof *t, cmp);
  printf("%.6f\n", t[reps / 2]);
  clattn_plan_destroy(plan);
  clattn_context_destroy(ctx);
  return 0;
}
"""


def build_timer(tmp):
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    src = os.path.join(tmp, "timer.c")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    exe = os.path.join(tmp, "timer")
    libdir = os.path.dirname(clattn.LIBRARY_PATH)
    cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
    subprocess.run([cc, "-O2", "-std=c11", "-D_POSIX_C_SOURCE=200809L",
                    "-I", os.path.join(root, "include"), src, "-o", exe,
                    clattn.LIBRARY_PATH, f"-Wl,-rpath,{libdir}", "-lOpenCL"],
                   check=True)
    return exe


def paired(x, variant, causal, reps):
    """Alternates the C call on the cached plan and clattn.attention."""
    from clattn._lib import lib

    plan = clattn.get_plan(x.shape, x.shape, x.shape, variant=variant, causal=causal)
    o = np.empty_like(x)
    ptr = x.__array_interface__["data"][0]
    optr = o.__array_interface__["data"][0]
    clattn.attention(x, x, x, variant=variant, causal=causal)
    a_t, b_t, ratios = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        if lib.clattn_plan_run_host(plan.handle, ptr, ptr, ptr, optr, None):
            raise RuntimeError("clattn_plan_run_host failed")
        t1 = time.perf_counter()
        clattn.attention(x, x, x, variant=variant, causal=causal)
        t2 = time.perf_counter()
        a_t.append(t1 - t0)
        b_t.append(t2 - t1)
        ratios.append((t2 - t1) / (t1 - t0))
    return a_t, b_t, ratios


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="1,8,1024,64")
    ap.add_argument("--variant", default="softmax")
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    b, h, n, d = (int(x) for x in a.shape.split(","))
    count = b * h * n * d
    x = (((np.arange(count, dtype=np.uint64) * 2654435761) % 1000).astype(np.float32)
         / 500.0 - 1.0).reshape(b, h, n, d)
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_timer(tmp)
        clattn.attention(x, x, x, variant=a.variant, causal=a.causal)  # warm-up
        c_med, py_med = [], []
        for r in range(a.rounds):
            out = subprocess.run([exe, str(b), str(h), str(n), str(d), a.variant,
                                  str(int(a.causal)), str(a.reps)],
                                 check=True, capture_output=True, text=True).stdout
            c_med.append(float(out))
            times = []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                clattn.attention(x, x, x, variant=a.variant, causal=a.causal)
                times.append(time.perf_counter() - t0)
            py_med.append(statistics.median(times))
            print(f"round {r}: C {c_med[-1] * 1e3:.3f} ms, Python {py_med[-1] * 1e3:.3f} ms",
                  flush=True)
    c, p = statistics.median(c_med), statistics.median(py_med)
    print(f"median of rounds: C clattn_plan_run_host {c * 1e3:.3f} ms, "
          f"Python clattn.attention {p * 1e3:.3f} ms, ratio {p / c:.4f}")
    for label, arr in (("shape", x), ("tiny 1x1x16x16", x[:1, :1, :16, :16].copy())):
        a_t, b_t, ratios = paired(arr, a.variant, a.causal, a.reps * a.rounds)
        print(f"paired, {label} {arr.shape}: C {statistics.median(a_t) * 1e3:.3f} ms, "
              f"Python {statistics.median(b_t) * 1e3:.3f} ms, median ratio "
              f"{statistics.median(ratios):.4f}, median difference "
              f"{(statistics.median(b_t) - statistics.median(a_t)) * 1e6:.1f} us")
    info = clattn.cache_info()
    print(f"plan cache: {info.misses} built, {info.hits} hits; device "
          f"{clattn.devices()[clattn.find_device()].name}")


if __name__ == "__main__":
    sys.exit(main())
