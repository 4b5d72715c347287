"""Runs an ONNX model with onnxruntime (CPU) on the inputs moe-run used and
compares with moe-run's outputs.

    python3 examples/onnx/check_with_onnxruntime.py MODEL.onnx \
        --input x=x.npy --output y=out/y.npy

Prints, per output, the normwise error max|moec - ort| / max|ort|.
"""
import argparse

import numpy as np
import onnxruntime as ort


def pairs(values):
    return dict(v.split("=", 1) for v in values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--input", action="append", default=[],
                        metavar="NAME=FILE.npy")
    parser.add_argument("--output", action="append", default=[],
                        metavar="NAME=FILE.npy")
    args = parser.parse_args()
    inputs = {k: np.load(v) for k, v in pairs(args.input).items()}
    session = ort.InferenceSession(args.model,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(None, inputs)))
    worst = 0.0
    for name, path in pairs(args.output).items():
        ours, ref = np.load(path).astype(np.float64), expected[name]
        error = np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30)
        worst = max(worst, error)
        print("%s: shape %s, max |moec - onnxruntime| / max |onnxruntime| = "
              "%.3g" % (name, list(ref.shape), error))
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
