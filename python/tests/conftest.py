"""Shared fixtures: the device the tests run on (CLATTN_DEVICE, as the C
tests), seeded inputs and the tolerances of the C tests."""
import os

import numpy as np
import pytest

import clattn

# Relative to the largest reference magnitude, as in the C kernel tests.
TOL = {"f32": 1e-5, "f16": 2e-2}


def pytest_configure(config):
    torch = None
    try:
        import torch  # noqa: F811
    except ImportError:
        pass
    if torch is not None:
        torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_sessionfinish(session, exitstatus):
    # In CI (CLATTN_TEST_REQUIRE_DEVICE=1) a skipped test is a failure: a
    # missing device or a missing torch/pyopencl must not pass as success.
    if os.environ.get("CLATTN_TEST_REQUIRE_DEVICE") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and session.exitstatus == 0:
        print(f"\n{len(skipped)} tests skipped while CLATTN_TEST_REQUIRE_DEVICE=1")
        session.exitstatus = 1


@pytest.fixture(scope="session", autouse=True)
def _device_present():
    if not clattn.devices():
        if os.environ.get("CLATTN_TEST_REQUIRE_DEVICE") == "1":
            pytest.fail("no OpenCL device, and CLATTN_TEST_REQUIRE_DEVICE=1")
        pytest.skip("no OpenCL device")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def randn(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)
