"""CUDA against CPU on whole models: every model is compiled twice from one
text, by `moec` (host CPU) and by `moec --target=cuda`, and run by moe-run
on the CPU and with `--device=cuda` on the same parameters and inputs; every
result must agree.

Models (texts from examples/ where one exists):

- dense_mlp: RMSNorm, linear + bias, GELU, linear + bias, residual, linear
  head and cross-entropy (no MoE), f32 and bf16;
- mixtral: examples/mixtral_layer.mlir, top-2 renormalised softmax routing,
  SwiGLU experts, dropless, f32 and bf16;
- switch: examples/switch_layer.mlir, top-1 with capacity 1.25 (dropping),
  ReLU experts with biases, router jitter in training, f32 and bf16;
- expert_choice: examples/expert_choice_layer.mlir, GELU experts, f32;
- routing_sigmoid / routing_softmax_e256: moe.token_choice + dropless
  moe.dispatch alone, every result returned, at token counts past one
  1024-token placement step of the fused routing kernel: sigmoid with a
  selection bias and a scaling factor (E = 64, k = 6), and renormalised
  softmax at the kernel's largest expert count (E = 256, k = 8), f32.
- tiny_lm: examples/tiny_moe_lm.mlir, two transformer blocks (RMSNorm,
  rotary GQA attention, MoE FFN of 4 SwiGLU experts top-2), LM head, masked
  cross-entropy, f32.

mixtral, routing_* and tiny_lm route with the fused routing kernel of the
CUDA target (docs/compiler.md); switch (capacity) and expert_choice keep the
loop lowering.

Checks:

- `forward` (several token counts where the model's are dynamic) and, for
  the f32 models, `train_step` of `moec --mode=train`: loss, metrics and
  every gradient. The MoE layer examples have no loss, so for training their
  forward also returns `loss = moe.z_loss(y)` (a smooth scalar of every
  output element; `with_loss`).
- `moe-train --device=cuda` on the tiny LM and a generated FLAN-style
  mixture: the task loss falls as in test/e2e/test_training.py, and its first
  three steps match a CPU run of the same schedule.

Parameters are moe-run's seeded initialisation (what a fresh training run
starts from), saved by a CPU run with `--save-params` and loaded by both runs
with `--params`. Inputs are .npy files written here, the same files for both
runs (the test checks that moe-run generated none). bf16 inputs are drawn so
that every token's top-k choice has a margin (bf16_inputs.routable): the
devices round bf16 logits and probabilities independently, and a flipped
choice would move a token to another expert.

Compared: integer results (tokens per expert, dropped tokens) exactly;
floating results normwise, max |gpu - cpu| / max |cpu|: 1e-4 for f32
(summation order and the devices' exp/tanh differ by a few ulp, amplified
through attention and the backward pass), 2e-2 for bf16 (a few bf16 ulp,
2^-8 relative each, through two GEMMs). The worst errors are printed in the
terminal summary.
"""
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from bf16_inputs import from_bf16_bits, routable
from safetensors_io import read_safetensors
from test_moe_ops import normal, rel_error

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
FLAN_GENERATOR = EXAMPLES / "instruct" / "make_flan_mixture.py"

# The second build of every model: the CUDA target, or (where no GPU
# exists) the CUDA target's tensor-level lowering compiled for the CPU.
VARIANT = os.environ.get("MOE_PARITY_VARIANT", "cuda")
VARIANT_FLAGS, VARIANT_RUN_FLAGS = {
    "cuda": (["--target=cuda"], ["--device=cuda"]),
    "cpu-expert-rows": (["--cpu-expert-rows"], []),
}[VARIANT]

F32 = 1e-4
BF16 = 2e-2
PARAM_SEED = 7
ROUTER_COEFS = {"aux_loss_coef": 0.01, "z_loss_coef": 0.001}

DENSE_MLP = """
func.func @forward(
    %x: tensor<?x48xf32> {moe.name = "x", moe.dims = ["tokens", ""]},
    %targets: tensor<?xi32> {moe.name = "targets", moe.dims = ["tokens"]},
    %norm: tensor<48xf32> {moe.name = "norm", moe.role = "parameter"},
    %w1: tensor<48x80xf32> {moe.name = "w1", moe.role = "parameter"},
    %b1: tensor<80xf32> {moe.name = "b1", moe.role = "parameter"},
    %w2: tensor<80x48xf32> {moe.name = "w2", moe.role = "parameter"},
    %b2: tensor<48xf32> {moe.name = "b2", moe.role = "parameter"},
    %head: tensor<48x10xf32> {moe.name = "head", moe.role = "parameter"})
    -> (tensor<f32> {moe.name = "loss"},
        tensor<?x10xf32> {moe.name = "logits", moe.dims = ["tokens", ""]}) {
  %h = nn.rms_norm %x, %norm : tensor<?x48xf32>, tensor<48xf32>
  %a = nn.linear %h, %w1 bias %b1
      : tensor<?x48xf32>, tensor<48x80xf32>, tensor<80xf32>
  %g = nn.gelu %a : tensor<?x80xf32>
  %o = nn.linear %g, %w2 bias %b2
      : tensor<?x80xf32>, tensor<80x48xf32>, tensor<48xf32>
  %r = nn.add %x, %o : tensor<?x48xf32>, tensor<?x48xf32>
  %logits = nn.linear %r, %head : tensor<?x48xf32>, tensor<48x10xf32>
  %loss = nn.cross_entropy %logits, %targets
      : tensor<?x10xf32>, tensor<?xi32>
  return %loss, %logits : tensor<f32>, tensor<?x10xf32>
}
"""


ROUTING = """
func.func @forward(
    %%logits: tensor<?x%(E)dxf32> {moe.name = "logits", moe.dims = ["tokens", ""]}%(bias_arg)s)
    -> (tensor<?x%(k)dxf32> {moe.name = "weights"},
        tensor<?x%(k)dxi32> {moe.name = "indices"},
        tensor<?x%(E)dxf32> {moe.name = "probs"},
        tensor<?xi32> {moe.name = "row_token"},
        tensor<?xf32> {moe.name = "row_weight"},
        tensor<%(E1)dxi32> {moe.name = "offsets"}) {
  %%w, %%idx, %%p = moe.token_choice %(score)s %%logits top %(k)d%(bias)s
      {%(attrs)s} : tensor<?x%(E)dxf32>%(bias_type)s
  %%rt, %%rw, %%off = moe.dispatch %%idx, %%w {num_experts = %(E)d : i64}
      : tensor<?x%(k)dxi32>, tensor<?x%(k)dxf32>
  return %%w, %%idx, %%p, %%rt, %%rw, %%off
      : tensor<?x%(k)dxf32>, tensor<?x%(k)dxi32>, tensor<?x%(E)dxf32>,
        tensor<?xi32>, tensor<?xf32>, tensor<%(E1)dxi32>
}
"""


def routing(score, experts, k, attrs, bias):
    """A routing-only model, with a selection bias parameter when `bias`."""
    bias_arg = (',\n    %%bias: tensor<%dxf32> {moe.name = "bias", '
                'moe.role = "parameter"}' % experts)
    return ROUTING % {"score": score, "E": experts, "E1": experts + 1,
                      "k": k, "attrs": attrs,
                      "bias_arg": bias_arg if bias else "",
                      "bias": " bias %bias" if bias else "",
                      "bias_type": (", tensor<%dxf32>" % experts
                                    if bias else "")}


def routing_inputs(experts):
    def make(rng, tokens, params):
        return {"logits": normal(rng, (tokens, experts))}
    return make


def example(name):
    return (EXAMPLES / name).read_text()


def with_loss(text):
    """An MoE layer example whose @forward also returns, first, `loss`:
    moe.z_loss of its first result y (mean over tokens of
    logsumexp(y)^2), so that `moec --mode=train` has an objective."""
    head, arrow, rest = text.partition("-> (")
    body, _, ret = rest.rpartition("  return ")
    values, _, types = ret.partition(":")
    types, _, tail = types.partition("\n}")
    first = values.split(",")[0].strip()
    first_type = types.split(",")[0].strip()
    assert arrow and first.startswith("%"), "unexpected example layout"
    return ('%s-> (tensor<f32> {moe.name = "loss"},\n        %s'
            '  %%loss = moe.z_loss %s : %s\n'
            '  return %%loss, %s : tensor<f32>, %s\n}%s' %
            (head, body, first, first_type, values.strip(), types.strip(),
             tail))


def bf16(text):
    return text.replace("xf32>", "xbf16>")


def dense_inputs(rng, tokens, params):
    return {"x": normal(rng, (tokens, 48)),
            "targets": rng.integers(0, 10, tokens).astype(np.int32)}


def layer_inputs(d_model, seed_input=False, margin_k=None):
    def make(rng, tokens, params):
        if margin_k:
            router = params["router"]
            if router.dtype == np.uint16:
                router = from_bf16_bits(router)
            values = {"x": routable(rng, (tokens, d_model), router,
                                    margin_k, 3.0)}
        else:
            values = {"x": normal(rng, (tokens, d_model))}
        if seed_input:
            values["seed"] = np.array(int(rng.integers(1, 2 ** 62)),
                                      np.int64)
        return values
    return make


def lm_inputs(rng, seq, params):
    mask = (rng.random((8, seq)) < 0.8).astype(np.float32)
    mask[:, 0] = 1.0
    return {"tokens": rng.integers(0, 256, (8, seq)).astype(np.int32),
            "targets": rng.integers(0, 256, (8, seq)).astype(np.int32),
            "mask": mask}


class Case:
    """text: the model; inputs(rng, extent, params) -> {name: array} for
    forward, run at each of `extents` (token count or sequence length);
    coefs: the router-loss coefficient inputs of train_step, or None when
    train_step is not tested (bf16)."""

    def __init__(self, text, inputs, extents, coefs=None, tol=F32):
        self.text, self.inputs, self.extents = text, inputs, extents
        self.coefs, self.tol = coefs, tol

    @property
    def train(self):
        return self.coefs is not None


CASES = {
    "dense_mlp_f32": Case(DENSE_MLP, dense_inputs, (1, 37, 300), {}),
    "dense_mlp_bf16": Case(DENSE_MLP.replace("f32>", "bf16>"), dense_inputs,
                           (1, 37, 300), tol=BF16),
    "mixtral_f32": Case(with_loss(example("mixtral_layer.mlir")),
                        layer_inputs(128), (1, 37, 300), ROUTER_COEFS),
    "mixtral_bf16": Case(bf16(example("mixtral_layer.mlir")),
                         layer_inputs(128, margin_k=2), (1, 37, 300),
                         tol=BF16),
    "switch_f32": Case(with_loss(example("switch_layer.mlir")),
                       layer_inputs(64, seed_input=True), (1, 37, 300),
                       ROUTER_COEFS),
    "switch_bf16": Case(bf16(example("switch_layer.mlir")),
                        layer_inputs(64, seed_input=True, margin_k=1),
                        (37, 300), tol=BF16),
    "expert_choice_f32": Case(with_loss(example("expert_choice_layer.mlir")),
                              layer_inputs(64), (256,),
                              {"z_loss_coef": 0.001}),
    "routing_sigmoid_f32": Case(
        routing("sigmoid", 64, 6, "scaling_factor = 2.5 : f32", True),
        routing_inputs(64), (1, 1025, 3001)),
    "routing_softmax_e256_f32": Case(
        routing("softmax", 256, 8, "normalize", False),
        routing_inputs(256), (7, 2100)),
    "tiny_lm_f32": Case(example("tiny_moe_lm.mlir"), lm_inputs, (5, 13),
                        ROUTER_COEFS),
}


class Toolchain:
    """moec, moe-run and moe-train of the build, with compiled models cached
    per session."""

    def __init__(self, build_dir, workdir):
        self.bin = build_dir / "bin"
        self.workdir = workdir
        self._models = {}

    def tool(self, name):
        path = self.bin / name
        if not path.exists():
            pytest.skip("%s not built: %s does not exist (set MOEC_BUILD_DIR)"
                        % (name, path))
        return path

    def compile(self, name):
        """(cpu.so, cuda.so) of CASES[name], both in train mode when the
        case tests train_step."""
        if name not in self._models:
            case = CASES[name]
            directory = self.workdir / name
            directory.mkdir(parents=True, exist_ok=True)
            source = directory / "model.mlir"
            source.write_text(case.text)
            flags = ["--mode=train"] if case.train else []
            built = []
            for target, extra in (("cpu", []), ("cuda", VARIANT_FLAGS)):
                output = directory / ("%s.so" % target)
                proc = subprocess.run(
                    [str(self.tool("moec")), str(source), "-o", str(output),
                     *flags, *extra],
                    capture_output=True, text=True, timeout=900)
                assert proc.returncode == 0, "moec %s failed (exit %d):\n%s" % (
                    " ".join(flags + extra), proc.returncode, proc.stderr)
                built.append(output)
            self._models[name] = tuple(built)
        return self._models[name]

    def moe_run(self, model, entry, flags, inputs, out_dir):
        """Runs moe-run; returns its results by name. `inputs`: {name: .npy
        path}, which must cover every input of the entry."""
        command = [str(self.tool("moe-run")), str(model), "--entry", entry,
                   *flags]
        for name, path in inputs.items():
            command += ["--input", "%s=%s" % (name, path)]
        if out_dir is not None:
            command += ["--output-dir", str(out_dir)]
        proc = subprocess.run(command, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, "%s failed (exit %d):\n%s%s" % (
            " ".join(command), proc.returncode, proc.stdout, proc.stderr)
        if out_dir is None:
            return {}
        assert not re.search(r"generated (normal|uniform)", proc.stdout), (
            "moe-run generated an input the test did not give:\n" +
            proc.stdout)
        return {path.name[:-len(".npy")]: np.load(path)
                for path in out_dir.glob("*.npy")}


@pytest.fixture(scope="session")
def toolchain(moec_build_dir, tmp_path_factory):
    return Toolchain(moec_build_dir, tmp_path_factory.mktemp("cuda_parity"))


def initial_parameters(toolchain, name):
    """The parameters both devices use: moe-run's seeded initialisation,
    saved by a CPU run of forward (on inputs moe-run generates)."""
    path = toolchain.workdir / name / "params.safetensors"
    if not path.exists():
        cpu, _ = toolchain.compile(name)
        toolchain.moe_run(cpu, "forward", ["--seed", str(PARAM_SEED),
                                           "--save-params", str(path)],
                          {}, None)
    return path


def write_inputs(directory, values):
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, value in values.items():
        files[name] = directory / ("%s.npy" % name)
        np.save(files[name], value)
    return files


def compare(report, key, cpu, gpu, tol):
    """Every result of the GPU run against the CPU run: integers exactly,
    floats normwise within tol. Records each error before asserting."""
    assert sorted(gpu) == sorted(cpu), (sorted(gpu), sorted(cpu))
    errors = {}
    for name in sorted(cpu):
        expected, actual = cpu[name], gpu[name]
        assert actual.dtype == expected.dtype and \
            actual.shape == expected.shape, (name, actual.dtype,
                                             actual.shape, expected.dtype,
                                             expected.shape)
        if np.issubdtype(expected.dtype, np.floating):
            errors[name] = rel_error(actual, expected, "normwise")
            report("%s %s" % (key, name), errors[name])
        else:
            assert np.array_equal(actual, expected), (
                "%s %s: GPU %s, CPU %s" % (key, name, actual.tolist(),
                                           expected.tolist()))
    worse = {name: error for name, error in errors.items() if error > tol}
    assert not worse, "%s: relative errors above %g: %s" % (key, tol, worse)


def run_both(toolchain, name, entry, extent, values):
    cpu, cuda = toolchain.compile(name)
    params = initial_parameters(toolchain, name)
    directory = toolchain.workdir / name / ("%s_%d" % (entry, extent))
    files = write_inputs(directory / "inputs", values)
    flags = ["--params", str(params)]
    return (toolchain.moe_run(cpu, entry, flags, files, directory / "cpu"),
            toolchain.moe_run(cuda, entry, flags + VARIANT_RUN_FLAGS, files,
                              directory / "cuda"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward(toolchain, numerics_report, name):
    case = CASES[name]
    params = read_safetensors(initial_parameters(toolchain, name))
    for extent in case.extents:
        rng = np.random.default_rng(extent)
        cpu, gpu = run_both(toolchain, name, "forward", extent,
                            case.inputs(rng, extent, params))
        compare(numerics_report, "%s forward [%d]" % (name, extent), cpu,
                gpu, case.tol)


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n].train))
def test_train_step(toolchain, numerics_report, name):
    case = CASES[name]
    params = read_safetensors(initial_parameters(toolchain, name))
    extent = case.extents[-1]
    values = case.inputs(np.random.default_rng(1000 + extent), extent, params)
    values.update({coef: np.array(value, np.float32)
                   for coef, value in case.coefs.items()})
    cpu, gpu = run_both(toolchain, name, "train_step", extent, values)
    assert "loss" in cpu and any(n.startswith("grad.") for n in cpu), \
        sorted(cpu)
    compare(numerics_report, "%s train_step" % name, cpu, gpu, case.tol)


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()
            if line.strip() and not json.loads(line).get("eval")]


@pytest.mark.skipif(VARIANT != "cuda", reason="a GPU training run")
def test_moe_train_on_gpu(toolchain, numerics_report, tmp_path):
    """80 AdamW steps of the tiny LM on the GPU: the task loss starts near
    ln 256 = 5.55 and falls by more than 1.5 (on the CPU, seeds 0 to 2 take
    it from 5.25-5.32 to 2.85-3.17 over the last 10 steps). The first three
    steps match a CPU run of the same schedule stopped after step 3:
    step 1 within 1e-4, steps 2 and 3 within 1e-3 (AdamW's first steps move
    every weight by about lr, whatever its gradient, so weights whose
    gradient is rounding noise move differently on the two devices)."""
    cpu, cuda = toolchain.compile("tiny_lm_f32")
    subprocess.run([sys.executable, str(FLAN_GENERATOR), "--out",
                    str(tmp_path / "data"), "--train-per-task", "150",
                    "--valid-per-task", "10", "--held-out-per-task", "20"],
                   check=True, capture_output=True)
    common = ["--data", str(tmp_path / "data" / "train.jsonl"), "--steps",
              "80", "--lr", "3e-3", "--seed", "0", "--quiet"]
    logs = {}
    for device, model, extra in (("cuda", cuda, ["--device=cuda"]),
                                 ("cpu", cpu, ["--stop-after", "3"])):
        logs[device] = tmp_path / ("%s.jsonl" % device)
        proc = subprocess.run(
            [str(toolchain.tool("moe-train")), str(model), *common, *extra,
             "--log", str(logs[device])],
            capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, "moe-train on %s failed (%d):\n%s" % (
            device, proc.returncode, proc.stderr)
    gpu_steps, cpu_steps = read_log(logs["cuda"]), read_log(logs["cpu"])
    assert [s["step"] for s in gpu_steps] == list(range(1, 81))
    first = np.mean([s["task_loss"] for s in gpu_steps[:5]])
    last = np.mean([s["task_loss"] for s in gpu_steps[-10:]])
    assert first > 4.5 and last < first - 1.5, (first, last)
    assert all(np.isfinite(s["loss"]) for s in gpu_steps)
    assert [s["step"] for s in cpu_steps] == [1, 2, 3]
    for step, (g, c) in enumerate(zip(gpu_steps, cpu_steps), start=1):
        for key in ("loss", "grad_norm"):
            error = abs(g[key] - c[key]) / abs(c[key])
            numerics_report("moe-train step %d %s" % (step, key), error)
            assert error <= (1e-4 if step == 1 else 1e-3), (step, key,
                                                            g[key], c[key])
