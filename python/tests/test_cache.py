"""Caching: a loop of calls builds one plan and then only hits; new shapes,
options, dtypes or devices build their own; threads share plans and get
right results; the LRU bound holds."""
import threading

import numpy as np

import clattn
from conftest import TOL, randn
from reference import reference, rel_err


def test_cache_second_call_builds_nothing(rng):
    clattn.clear_cache()
    q, k, v = randn(rng, 1, 2, 40, 16), randn(rng, 1, 2, 40, 16), randn(rng, 1, 2, 40, 16)
    clattn.attention(q, k, v, causal=True)
    first = clattn.cache_info()
    assert first.misses == 1 and first.hits == 0 and first.plans == 1
    assert first.contexts == 1 and first.contexts_created == 1
    for _ in range(5):
        clattn.attention(q, k, v, causal=True)
    after = clattn.cache_info()
    assert after.misses == 1 and after.hits == 5
    assert after.contexts_created == 1 and after.plans == 1


def test_cache_keys(rng):
    clattn.clear_cache()
    q, k, v = randn(rng, 1, 2, 40, 16), randn(rng, 1, 2, 40, 16), randn(rng, 1, 2, 40, 16)
    calls = [
        dict(),
        dict(causal=True),
        dict(scale=0.5),
        dict(dtype="f16"),
        dict(variant="sigmoid"),
        dict(variant="sigmoid", bias=-1.0),
        dict(variant="linear"),
        dict(variant="linear", feature_map="relu"),
    ]
    for i, kw in enumerate(calls):
        clattn.attention(q, k, v, **kw)
        assert clattn.cache_info().misses == i + 1, kw
    clattn.attention(q[:, :, :39], k, v)  # another Nq
    assert clattn.cache_info().misses == len(calls) + 1
    # The same device named another way shares the context and its plans.
    index = clattn.find_device()
    clattn.attention(q, k, v, device=index)
    clattn.attention(q, k, v, device=str(index))
    info = clattn.cache_info()
    assert info.misses == len(calls) + 1 and info.contexts_created == 1


def test_cache_threads_share_plans(rng):
    clattn.clear_cache()
    problems = []
    for n in (23, 31):
        q, k, v = randn(rng, 1, 2, n, 16), randn(rng, 1, 2, n, 16), randn(rng, 1, 2, n, 16)
        problems.append(((q, k, v), reference(q, k, v, causal=True)[0]))
    errors = []

    def worker(seed):
        try:
            for i in range(6):
                (q, k, v), ref = problems[(seed + i) % 2]
                assert rel_err(clattn.attention(q, k, v, causal=True), ref) <= TOL["f32"]
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    info = clattn.cache_info()
    assert info.misses == 2 and info.hits == 22 and info.contexts_created == 1


def test_cache_lru_bound(rng):
    clattn.clear_cache()
    try:
        clattn.set_plan_cache_size(2)
        k, v = randn(rng, 1, 1, 8, 8), randn(rng, 1, 1, 8, 8)
        for n in (3, 4, 5):
            clattn.attention(randn(rng, 1, 1, n, 8), k, v)
        assert clattn.cache_info().plans == 2
        clattn.attention(randn(rng, 1, 1, 3, 8), k, v)  # evicted: built again
        assert clattn.cache_info().misses == 4
        clattn.set_plan_cache_size(0)  # nothing kept, calls still work
        o = clattn.attention(randn(rng, 1, 1, 3, 8), k, v)
        assert o.shape == (1, 1, 3, 8) and clattn.cache_info().plans == 0
    finally:
        clattn.set_plan_cache_size(64)
        clattn.clear_cache()
