"""moe-train end to end on the tiny MoE language model
(examples/tiny_moe_lm.mlir compiled with --mode=train) and the generated
FLAN-style mixture: the loss falls, a resumed run repeats an uninterrupted
one bit for bit, frozen parameters never change, and a NaN loss stops
training naming the step."""
import json
import pathlib
import subprocess

import numpy as np
import pytest

from safetensors_io import read_safetensors, write_safetensors

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "tiny_moe_lm.mlir"
GENERATOR = REPO / "examples" / "instruct" / "make_flan_mixture.py"


@pytest.fixture(scope="module")
def build_dir(moec_build_dir):
    if not (moec_build_dir / "bin" / "moe-train").exists():
        pytest.skip("moe-train not built in %s" % moec_build_dir)
    return moec_build_dir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("training")


@pytest.fixture(scope="module")
def data(workdir):
    out = workdir / "data"
    subprocess.run(["python3", str(GENERATOR), "--out", str(out),
                    "--train-per-task", "150", "--valid-per-task", "10",
                    "--held-out-per-task", "20"],
                   check=True, capture_output=True)
    return out


def compile_lm(build_dir, workdir, name, *flags):
    output = workdir / name
    if not output.exists():
        subprocess.run([str(build_dir / "bin" / "moec"), str(EXAMPLE),
                        "--mode=train", "-o", str(output), *flags],
                       check=True, capture_output=True, timeout=900)
    return output


@pytest.fixture(scope="module")
def model(build_dir, workdir):
    return compile_lm(build_dir, workdir, "lm.so")


def train(build_dir, model, data, *flags, check=True):
    proc = subprocess.run(
        [str(build_dir / "bin" / "moe-train"), str(model), "--data",
         str(data / "train.jsonl"), "--quiet", "--threads", "2", *flags],
        capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError("moe-train failed (%d):\n%s" %
                             (proc.returncode, proc.stderr))
    return proc


def read_log(path):
    records = [json.loads(line) for line in pathlib.Path(path).read_text()
               .splitlines() if line.strip()]
    return ([r for r in records if not r.get("eval")],
            [r for r in records if r.get("eval")])


def test_loss_falls_and_eval_is_reported(build_dir, model, data, workdir):
    log = workdir / "falls.jsonl"
    train(build_dir, model, data, "--steps", "80", "--lr", "3e-3",
          "--eval", str(data / "held_out.jsonl"), "--eval-examples", "16",
          "--log", str(log))
    steps, evals = read_log(log)
    assert [s["step"] for s in steps] == list(range(1, 81))
    first = np.mean([s["task_loss"] for s in steps[:5]])
    last = np.mean([s["task_loss"] for s in steps[-10:]])
    # ln 256 = 5.55 at initialisation; response bytes of the mixture are
    # predictable from the templates, so 80 steps get well below 3.
    assert first > 4.5, first
    assert last < 3.0, (first, last)
    for s in steps:
        assert len(s["layers.0.tokens_per_expert"]) == 4
        assert s["aux_loss"] > 0 and s["z_loss"] > 0
    assert len(evals) == 1 and evals[0]["step"] == 80
    assert np.isfinite(evals[0]["eval_loss"])
    assert 0 <= evals[0]["exact_match"] <= 1
    assert evals[0]["examples"] == 16


def test_resume_repeats_an_uninterrupted_run(build_dir, model, data, workdir):
    common = ["--steps", "8", "--lr", "2e-3", "--warmup", "2", "--seed", "3"]
    straight_log = workdir / "straight.jsonl"
    train(build_dir, model, data, *common, "--log", str(straight_log),
          "--save", str(workdir / "straight.safetensors"))

    # The same run interrupted after step 5 (--stop-after checkpoints and
    # exits), then resumed from its checkpoint; both append to one log.
    checkpoint = workdir / "ckpt.safetensors"
    resumed_log = workdir / "resumed.jsonl"
    train(build_dir, model, data, *common, "--stop-after", "5",
          "--checkpoint", str(checkpoint), "--log", str(resumed_log))
    train(build_dir, model, data, *common, "--resume", str(checkpoint),
          "--log", str(resumed_log),
          "--save", str(workdir / "resumed.safetensors"))

    straight, _ = read_log(straight_log)
    resumed, _ = read_log(resumed_log)
    assert [s["step"] for s in resumed] == list(range(1, 9))
    for a, b in zip(straight, resumed):
        assert a["loss"] == b["loss"], (a["step"], a["loss"], b["loss"])
        assert a["grad_norm"] == b["grad_norm"]
    final_a = read_safetensors(workdir / "straight.safetensors")
    final_b = read_safetensors(workdir / "resumed.safetensors")
    for name in final_a:
        assert np.array_equal(final_a[name], final_b[name]), name


def test_frozen_parameters_do_not_change(build_dir, data, workdir):
    # The router is frozen when compiling (no gradient at all), the experts
    # of layer 1 when training.
    frozen_model = compile_lm(build_dir, workdir, "lm_frozen_router.so",
                              "--freeze=router")
    initial = workdir / "initial.safetensors"
    subprocess.run([str(build_dir / "bin" / "moe-run"), str(frozen_model),
                    "--entry", "forward", "--seed", "5", "--dim", "seq=4",
                    "--save-params", str(initial)],
                   check=True, capture_output=True)
    final = workdir / "frozen_final.safetensors"
    train(build_dir, frozen_model, data, "--steps", "6", "--params",
          str(initial), "--freeze", "layers.1.w[123]", "--save", str(final))
    before, after = read_safetensors(initial), read_safetensors(final)
    frozen = {"layers.0.router", "layers.1.router", "layers.1.w1",
              "layers.1.w2", "layers.1.w3"}
    for name in before:
        if name in frozen:
            assert np.array_equal(before[name], after[name]), name
        else:
            assert not np.array_equal(before[name], after[name]), name


def test_nan_loss_stops_training_naming_the_step(build_dir, model, data,
                                                 workdir):
    initial = workdir / "nan_initial.safetensors"
    subprocess.run([str(build_dir / "bin" / "moe-run"), str(model),
                    "--entry", "forward", "--seed", "1", "--dim", "seq=4",
                    "--save-params", str(initial)],
                   check=True, capture_output=True)
    params = read_safetensors(initial)
    params = {name: np.array(value) for name, value in params.items()}
    params["lm_head"][0, 0] = np.nan
    poisoned = workdir / "nan.safetensors"
    write_safetensors(poisoned, params)
    final = workdir / "nan_final.safetensors"
    proc = train(build_dir, model, data, "--steps", "3", "--params",
                 str(poisoned), "--save", str(final), check=False)
    assert proc.returncode == 1
    assert "step 1: loss is nan" in proc.stderr, proc.stderr
    assert "training stopped" in proc.stderr
    assert not final.exists()


def test_forward_only_model_is_refused(build_dir, data, workdir):
    forward_only = workdir / "lm_infer.so"
    subprocess.run([str(build_dir / "bin" / "moec"), str(EXAMPLE), "-o",
                    str(forward_only)], check=True, capture_output=True)
    proc = train(build_dir, forward_only, data, "--steps", "1", check=False)
    assert proc.returncode == 1
    assert "has no train_step entry point" in proc.stderr
    assert "--mode=train" in proc.stderr
