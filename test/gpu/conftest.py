"""Fixtures of the GPU end-to-end suite (test/gpu, see docs/testing.md).

Every test here needs a usable NVIDIA GPU. Without one (libcuda.so.1 not
loadable, cuInit failing, no device: see cuda_device.py) every test is
skipped with the reason, and when $MOE_GPU_SKIP_STATUS is set (ctest sets
77, the test's SKIP_RETURN_CODE) a run in which everything was skipped
exits with that status, so ctest reports the suite as skipped, not passed.

The build directory, the `numerics_report` fixture and the terminal summary
of the worst errors come from test/e2e/conftest.py.
"""
import importlib.util
import os
import pathlib
import sys

import pytest

_HERE = pathlib.Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import cuda_device  # noqa: E402

# Loaded under its own name: pytest imports test/e2e/conftest.py as
# `conftest` when both directories are collected in one run.
_spec = importlib.util.spec_from_file_location(
    "e2e_conftest", _HERE.parent / "e2e" / "conftest.py")
_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e)
moec_build_dir = _e2e.moec_build_dir
numerics_report = _e2e.numerics_report
pytest_terminal_summary = _e2e.pytest_terminal_summary

DEVICE, MISSING = cuda_device.probe()


def pytest_report_header(config):
    return "CUDA device: %s" % (DEVICE or "none: " + MISSING)


def needs_gpu():
    return os.environ.get("MOE_PARITY_VARIANT", "cuda") == "cuda"


def pytest_collection_modifyitems(config, items):
    if MISSING and needs_gpu():
        skip = pytest.mark.skip(reason="no usable NVIDIA GPU: " + MISSING)
        for item in items:
            item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    status = os.environ.get("MOE_GPU_SKIP_STATUS")
    if MISSING and needs_gpu() and status and \
            exitstatus == pytest.ExitCode.OK:
        session.exitstatus = int(status)
