//===- NNDialect.td - The nn dialect: dense transformer ops ------*- tablegen -*-===//

#ifndef MOEC_NN_DIALECT
#define MOEC_NN_DIALECT

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def NN_Dialect : Dialect {
  let name = "nn";
  let cppNamespace = "::moec::nn";
  let summary = "Dense transformer operations on tensors.";
  let description = [{
    The `nn` dialect holds the dense operations that a decoder-only
    transformer needs around its Mixture-of-Experts layers: embedding, linear
    layers and batched matmul, elementwise arithmetic and activations,
    RMSNorm and LayerNorm, rotary position embedding, causal (grouped-query)
    attention, softmax, reshape and transpose, reductions, a masked
    cross-entropy loss, and the tensor-manipulation ops of ONNX graphs
    (concat, slice, gather, where, compare, cast, expand, topk, iota, trilu).

    Every op works on ranked tensors with value semantics; dimensions may be
    dynamic (`?`) so that token counts stay symbolic. Floating-point operands
    are `f32`, `f16` or `bf16`; integer ids are `i32` or `i64`; masks are
    `i1`. Shapes of results follow from the operands wherever possible, so
    the assembly form lists only operand types. Weights use the `x @ W`
    convention (a linear weight is `[in, out]`).
  }];
  // Gradients (buildVJP) use constants and a broadcasting linalg.generic.
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

class NN_Op<string mnemonic, list<Trait> traits = []>
    : Op<NN_Dialect, mnemonic, traits>;

def NN_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;
def NN_IdTensor : RankedTensorOf<[I32, I64]>;
// Arithmetic that ONNX graphs also apply to shapes and indices.
def NN_NumericTensor : RankedTensorOf<[F32, F16, BF16, I32, I64]>;

#endif // MOEC_NN_DIALECT
