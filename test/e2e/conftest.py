"""Shared fixtures of the end-to-end tests: compile MLIR text with moec and
load the resulting model.so through the ctypes ABI client (moe_abi.py).

The compiler comes from ``$MOEC_BUILD_DIR/bin/moec`` (default: the
repository's ``build``). Every test file of this directory can use::

    def test_something(compile_model):
        model = compile_model(MLIR_TEXT)            # a moe_abi.Model
        out = model.run("forward", arg0=x)["result0"]

Compiled models are cached per session by their text, so tests that run
one model on several seeds compile it once. A compile failure raises
``compile_model.Error`` (a RuntimeError) carrying moec's diagnostics.
"""
import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

_HERE = pathlib.Path(__file__).resolve().parent
for _path in (_HERE, _HERE.parent / "reference"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import moe_abi  # noqa: E402

DEFAULT_BUILD_DIR = str(_HERE.parent.parent / "build")


class CompileError(RuntimeError):
    """moec rejected a model; str() holds its diagnostics."""


class ModelCompiler:
    """Callable fixture object: compile_model(text, flags=()) -> moe_abi.Model."""

    Error = CompileError

    def __init__(self, moec, workdir):
        self.moec = moec
        self.workdir = workdir
        self._cache = {}

    def __call__(self, mlir_text, flags=()):
        key = hashlib.sha256(
            (mlir_text + "\0" + "\0".join(flags)).encode()).hexdigest()[:16]
        if key in self._cache:
            return self._cache[key]
        directory = self.workdir / key
        directory.mkdir(parents=True, exist_ok=True)
        source = directory / "model.mlir"
        output = directory / "model.so"
        source.write_text(mlir_text)
        proc = subprocess.run(
            [str(self.moec), str(source), "-o", str(output), *flags],
            capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise CompileError("moec failed (exit %d) on %s:\n%s%s" %
                               (proc.returncode, source, proc.stdout,
                                proc.stderr))
        model = moe_abi.Model(output)
        self._cache[key] = model
        return model


@pytest.fixture(scope="session")
def moec_build_dir():
    """The build directory whose bin/ holds moec ($MOEC_BUILD_DIR)."""
    return pathlib.Path(os.environ.get("MOEC_BUILD_DIR", DEFAULT_BUILD_DIR))


@pytest.fixture(scope="session")
def moec_path(moec_build_dir):
    path = moec_build_dir / "bin" / "moec"
    if not path.exists():
        pytest.skip("moec not built: %s does not exist (set MOEC_BUILD_DIR)" %
                    path)
    return path


@pytest.fixture(scope="session")
def compile_model(moec_path, tmp_path_factory):
    """compile_model(mlir_text) -> moe_abi.Model, compiled by moec."""
    return ModelCompiler(moec_path, tmp_path_factory.mktemp("moec"))


_NUMERICS = {}


@pytest.fixture(scope="session")
def numerics_report():
    """numerics_report(key, error): records an error measure under `key`;
    the maximum per key is printed in the terminal summary."""
    def record(key, error):
        _NUMERICS[key] = max(_NUMERICS.get(key, 0.0), float(error))
    return record


def pytest_terminal_summary(terminalreporter):
    if not _NUMERICS:
        return
    terminalreporter.section("numerics: max relative error per op")
    width = max(len(key) for key in _NUMERICS)
    for key in sorted(_NUMERICS):
        terminalreporter.write_line("%-*s  %.3g" % (width, key,
                                                     _NUMERICS[key]))
