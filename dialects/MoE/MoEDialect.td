//===- MoEDialect.td - The moe dialect: routing, dispatch, experts -*- tablegen -*-===//

#ifndef MOEC_MOE_DIALECT
#define MOEC_MOE_DIALECT

include "mlir/IR/OpBase.td"
include "mlir/IR/EnumAttr.td"

def MoE_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::moec::moe";
  let summary = "Mixture-of-Experts routing, dispatch, expert FFNs and combine.";
  let description = [{
    The `moe` dialect models what is special about Mixture-of-Experts layers
    so that the compiler can fuse routing, plan the token permutation and
    emit grouped GEMMs. A layer is a short chain of ops:

    ```
    moe.gate            x @ W_router (+ jitter in training)        -> logits [T, E]
    moe.token_choice    scores, top-k, renormalise, bias, groups   -> weights, indices [T, k], probs [T, E]
    moe.dispatch        capacity / dropless, priority              -> row_token, row_weight [R], offsets [E+1]
    moe.expert_choice   (instead of token_choice + dispatch)       -> row_token, row_weight [R], offsets, probs
    moe.permute         gather tokens into expert-grouped rows     -> xs [R, D]
    moe.expert_ffn      grouped FFN over row segments              -> ys [R, D]
    moe.combine         weighted scatter-add back to token order   -> out [T, D]
    moe.shared_expert   dense FFN applied to every token (optional)
    moe.load_balancing_loss, moe.z_loss, moe.routing_stats          -> metrics
    ```

    The central data structure is the *row plan* produced by dispatch:
    `R` rows, grouped by expert, where rows `offsets[e] .. offsets[e+1]` hold
    the tokens that expert `e` processes, `row_token[r]` is the token of row
    `r` (or -1 for a padding row past `offsets[E]`) and `row_weight[r]` its
    gating weight. Every expert kernel (grouped GEMM on CPU, tensor-core
    kernel on GPU) consumes this plan, whatever the routing kind.

    `moe.layer` is the coarse op that frontends (ONNX, JSON configs) emit; the
    `moe-decompose-layer` pass rewrites it into the chain above.

    Tokens are the rows of a rank-2 `[T, D]` tensor; `T` may be dynamic.
    Routing computations (logits, probabilities, weights) are floating point
    of the model's type; routing indices are `i32`; counters are `i64`;
    losses are 0-d `f32` tensors.

    The dialect also defines the attributes that turn a public `func.func`
    into an entry point of a compiled model (see docs/compiler.md):

    - `moe.name` (string) on an argument or result: its name in the model
      ABI, safetensors files and `.npy` file names; default `argN` /
      `resultN`.
    - `moe.role` (string) on an argument: `input` (default), `parameter` or
      `optimizer_state`; on a result: `output` (default), `metric` or
      `gradient`.
    - `moe.dims` (array of strings, one per dimension) on an argument or
      result: names of dynamic dimensions; equal names must have equal
      extents at run time (e.g. `["", "seq"]`). Unnamed dynamic dimensions
      get unique names.
  }];
  // Vector-Jacobian products build constants and tensor.splat / tensor.dim.
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::tensor::TensorDialect"
  ];
  let hasRegionArgAttrVerify = 1;
  let hasRegionResultAttrVerify = 1;
}

class MoE_Op<string mnemonic, list<Trait> traits = []>
    : Op<MoE_Dialect, mnemonic, traits>;

def MoE_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;
def MoE_I32Tensor : RankedTensorOf<[I32]>;
def MoE_Scalar : 0DTensorOf<[F32]>;
def MoE_Counter : 0DTensorOf<[I64]>;

def MoE_FloatPositive : AttrConstraint<
    CPred<"::llvm::cast<::mlir::FloatAttr>($_self).getValueAsDouble() > 0.0">,
    "whose value is positive">;

def MoE_ScoreFunction : I32EnumAttr<"ScoreFunction",
    "how router logits become probabilities", [
      I32EnumAttrCase<"softmax", 0>,
      I32EnumAttrCase<"sigmoid", 1>,
      I32EnumAttrCase<"sparse_mixer", 2>
    ]> {
  let cppNamespace = "::moec::moe";
}

def MoE_Activation : I32EnumAttr<"Activation",
    "expert FFN activation", [
      I32EnumAttrCase<"relu", 0>,
      I32EnumAttrCase<"gelu", 1>,
      I32EnumAttrCase<"gelu_tanh", 2>,
      I32EnumAttrCase<"silu", 3>,
      I32EnumAttrCase<"swiglu", 4>,
      I32EnumAttrCase<"geglu", 5>,
      I32EnumAttrCase<"identity", 6>,
      I32EnumAttrCase<"relu2", 7>,
      I32EnumAttrCase<"geglu_tanh", 8>
    ]> {
  let cppNamespace = "::moec::moe";
}

def MoE_Routing : I32EnumAttr<"Routing",
    "who chooses: tokens pick experts or experts pick tokens", [
      I32EnumAttrCase<"token_choice", 0>,
      I32EnumAttrCase<"expert_choice", 1>
    ]> {
  let cppNamespace = "::moec::moe";
}

#endif // MOEC_MOE_DIALECT
