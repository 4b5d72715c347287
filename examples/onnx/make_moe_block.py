"""Writes an ONNX decoder block with an MoE feed-forward, as an exporter
would: symbolic batch and seq, RMSNorm spelled out, fused QKV Gemm + Split,
rotary, a causal mask built from Shape/ConstantOfShape/Trilu, LayerNorm,
onnxruntime's com.microsoft.MoE (4 SiLU experts, top-2) and a gated shared
expert.

    python3 examples/onnx/make_moe_block.py block.onnx [--moe op|where|sparse]

--moe picks how the MoE FFN is written: the contrib op, or unrolled per
expert as exporters without it emit (dense masks, or NonZero/ScatterND as
torch exports index_add_). The graph comes from the builders of the ONNX
parity suite (test/onnx/models.py).
"""
import argparse
import pathlib
import sys

import onnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "test"
                       / "onnx"))
import models  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output")
    parser.add_argument("--moe", default="op", choices=["op", "where",
                                                         "sparse"])
    parser.add_argument("--opset", type=int, default=18)
    args = parser.parse_args()
    model = models.transformer_block_model(opset=args.opset, moe=args.moe)
    onnx.checker.check_model(model)
    onnx.save(model, args.output)
    print("wrote %s (%d nodes, opset %d)" % (args.output,
                                               len(model.graph.node),
                                               args.opset))


if __name__ == "__main__":
    main()
