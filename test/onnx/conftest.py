"""Fixtures of the ONNX parity tests: compile an ONNX model with moec, load
model.so through the ABI client and the parameters moec writes next to it.

Reuses test/e2e (moe_abi.py, safetensors_io.py and the fixtures of its
conftest: moec_build_dir, moec_path, numerics_report and the numerics
summary)::

    def test_something(compile_onnx):
        model, params = compile_onnx(model_proto)   # or a path to a .onnx
        out = model.run("forward", **inputs, **params)["y"]

Compiled models are cached per session by the model's bytes and the flags.
A compile failure raises compile_onnx.Error carrying moec's diagnostics.
"""
import hashlib
import importlib.util
import pathlib
import subprocess
import sys

import pytest

_HERE = pathlib.Path(__file__).resolve().parent
_E2E = _HERE.parent / "e2e"
for _path in (_HERE, _E2E, _HERE.parent / "reference"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# The e2e conftest under its own module name, so that its fixtures and its
# terminal summary serve this directory too.
_spec = importlib.util.spec_from_file_location("e2e_conftest",
                                               _E2E / "conftest.py")
_e2e_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e_conftest)
CompileError = _e2e_conftest.CompileError
moec_build_dir = _e2e_conftest.moec_build_dir
moec_path = _e2e_conftest.moec_path
numerics_report = _e2e_conftest.numerics_report
pytest_terminal_summary = _e2e_conftest.pytest_terminal_summary

import moe_abi  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402


class OnnxCompiler:
    """compile_onnx(model_proto_or_path, flags=()) -> (moe_abi.Model,
    {parameter name: ndarray} from DIR/model.safetensors);
    compile_onnx.run(source, output) runs moec alone (for bad input)."""

    Error = CompileError

    def __init__(self, moec, workdir):
        self.moec = moec
        self.workdir = workdir
        self._cache = {}

    def run(self, source, output, flags=()):
        """moec source -o output; the CompletedProcess."""
        return subprocess.run([str(self.moec), str(source), "-o",
                               str(output), *flags], capture_output=True,
                              text=True, timeout=600)

    def __call__(self, model, flags=()):
        if isinstance(model, (str, pathlib.Path)):
            source = pathlib.Path(model)
            content = source.read_bytes()
        else:
            source, content = None, model.SerializeToString()
        key = hashlib.sha256(content + b"\0" + "\0".join(flags).encode() +
                             str(source).encode()).hexdigest()[:16]
        if key in self._cache:
            return self._cache[key]
        directory = self.workdir / key
        directory.mkdir(parents=True, exist_ok=True)
        if source is None:
            source = directory / "model.onnx"
            source.write_bytes(content)
        output = directory / "model.so"
        proc = self.run(source, output, flags)
        if proc.returncode != 0:
            raise CompileError("moec failed (exit %d) on %s:\n%s%s" %
                               (proc.returncode, source, proc.stdout,
                                proc.stderr))
        params = {name: value.copy() for name, value in
                  read_safetensors(directory / "model.safetensors").items()}
        result = (moe_abi.Model(output), params)
        self._cache[key] = result
        return result


@pytest.fixture(scope="session")
def compile_onnx(moec_path, tmp_path_factory):
    return OnnxCompiler(moec_path, tmp_path_factory.mktemp("moec_onnx"))
