//===- NNOps.td - nn dialect operations --------------------------*- tablegen -*-===//
//
// Conventions: every op is Pure and works on ranked tensors. Results whose
// shapes follow from the operands are inferred (InferTypeOpAdaptor), so the
// custom assembly lists operand types only. Verifiers name the operand at
// fault and quote its shape.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_NN_OPS
#define MOEC_NN_OPS

include "dialects/NN/NNDialect.td"
include "dialects/Common/DifferentiableOpInterface.td"
include "dialects/Common/InferTypeWithDefaults.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

// Ops with a gradient implement buildVJP in NNVJP.cpp.
defvar NN_Differentiable = DeclareOpInterfaceMethods<DifferentiableOpInterface>;

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def NN_GeluApproximation : I32EnumAttr<"GeluApproximation",
    "how GELU is evaluated", [
      I32EnumAttrCase<"none", 0>,
      I32EnumAttrCase<"tanh", 1>
    ]> {
  let cppNamespace = "::moec::nn";
}

def NN_UnaryFunction : I32EnumAttr<"UnaryFunction",
    "an elementwise function whose derivative nn.unary_grad applies", [
      I32EnumAttrCase<"neg", 0>,
      I32EnumAttrCase<"exp", 1>,
      I32EnumAttrCase<"log", 2>,
      I32EnumAttrCase<"sqrt", 3>,
      I32EnumAttrCase<"rsqrt", 4>,
      I32EnumAttrCase<"reciprocal", 5>,
      I32EnumAttrCase<"tanh", 6>,
      I32EnumAttrCase<"erf", 7>,
      I32EnumAttrCase<"sigmoid", 8>,
      I32EnumAttrCase<"relu", 9>,
      I32EnumAttrCase<"silu", 10>,
      I32EnumAttrCase<"gelu", 11>,
      I32EnumAttrCase<"gelu_tanh", 12>
    ]> {
  let cppNamespace = "::moec::nn";
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

class NN_BinaryOp<string mnemonic, string formula,
                  Type tensorType = NN_NumericTensor, string integers = "">
    : NN_Op<mnemonic, [Pure, InferTypeOpAdaptor, NN_Differentiable]> {
  let summary = "elementwise " # mnemonic # " with numpy broadcasting";
  let description = [{
    Computes `}] # formula # [{` elementwise. The operands broadcast as in
    numpy: shapes are aligned at the trailing dimension and an extent of 1
    stretches to the other operand's extent. Both operands have the same
    element type, which is the result's.}] # integers # [{

    Example:

    ```mlir
    %r = nn.}] # mnemonic # [{ %a, %b : tensor<?x64xf32>, tensor<64xf32>
    ```
  }];
  let arguments = (ins tensorType:$lhs, tensorType:$rhs);
  let results = (outs tensorType:$result);
  let assemblyFormat =
      "$lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs)";
  let extraClassDefinition = [{
    ::llvm::LogicalResult $cppClass::inferReturnTypes(
        ::mlir::MLIRContext *, std::optional<::mlir::Location> location,
        Adaptor adaptor, ::llvm::SmallVectorImpl<::mlir::Type> &types) {
      return ::moec::nn::inferBroadcastResult(
          location, getOperationName(), adaptor.getLhs().getType(),
          adaptor.getRhs().getType(), types);
    }
  }];
}

defvar NN_IntegerArithmetic = [{ Integer (`i32`, `i64`)
    arithmetic wraps around on overflow; integer values are never
    differentiated.}];

def NN_AddOp : NN_BinaryOp<"add", "lhs + rhs", NN_NumericTensor,
                           NN_IntegerArithmetic>;
def NN_SubOp : NN_BinaryOp<"sub", "lhs - rhs", NN_NumericTensor,
                           NN_IntegerArithmetic>;
def NN_MulOp : NN_BinaryOp<"mul", "lhs * rhs", NN_NumericTensor,
                           NN_IntegerArithmetic>;
def NN_DivOp : NN_BinaryOp<"div", "lhs / rhs", NN_NumericTensor,
    [{ Integer division truncates toward zero, as in C and onnxruntime; a
    zero divisor gives 0 (ONNX leaves it undefined) and `INT_MIN / -1`
    wraps to `INT_MIN`. Integer values are never differentiated.}]>;
def NN_PowOp : NN_BinaryOp<"pow", "lhs ^ rhs", NN_FloatTensor>;

class NN_UnaryOp<string mnemonic, string formula,
                 Type tensorType = NN_FloatTensor>
    : NN_Op<mnemonic, [Pure, SameOperandsAndResultType, NN_Differentiable]> {
  let summary = "elementwise " # mnemonic;
  let description = [{
    Computes `}] # formula # [{` elementwise; the result has the operand's
    type.

    Example:

    ```mlir
    %y = nn.}] # mnemonic # [{ %x : tensor<2x?x64xf32>
    ```
  }];
  let arguments = (ins tensorType:$input);
  let results = (outs tensorType:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

// Integer negation wraps (-INT_MIN is INT_MIN).
def NN_NegOp : NN_UnaryOp<"neg", "-x", NN_NumericTensor>;
def NN_ExpOp : NN_UnaryOp<"exp", "exp(x)">;
def NN_LogOp : NN_UnaryOp<"log", "log(x)">;
def NN_SqrtOp : NN_UnaryOp<"sqrt", "sqrt(x)">;
def NN_RsqrtOp : NN_UnaryOp<"rsqrt", "1 / sqrt(x)">;
def NN_ReciprocalOp : NN_UnaryOp<"reciprocal", "1 / x">;
def NN_TanhOp : NN_UnaryOp<"tanh", "tanh(x)">;
def NN_ErfOp : NN_UnaryOp<"erf", "erf(x)">;
def NN_SigmoidOp : NN_UnaryOp<"sigmoid", "1 / (1 + exp(-x))">;
def NN_ReluOp : NN_UnaryOp<"relu", "max(x, 0)">;
def NN_SiluOp : NN_UnaryOp<"silu", "x * sigmoid(x)">;

def NN_GeluOp : NN_Op<"gelu", [Pure, SameOperandsAndResultType,
    NN_Differentiable]> {
  let summary = "Gaussian error linear unit";
  let description = [{
    Computes `x * Phi(x)` elementwise, where `Phi` is the standard normal
    CDF. With `approximate = tanh` it uses
    `0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))` instead, as
    GPT-2 style models do.

    Example:

    ```mlir
    %a = nn.gelu %x : tensor<8x64xf32>
    %b = nn.gelu %x approximate = tanh : tensor<8x64xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$input,
      DefaultValuedAttr<NN_GeluApproximation,
                        "::moec::nn::GeluApproximation::none">:$approximate);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat = [{
    $input (`approximate` `=` $approximate^)? attr-dict `:` type($input)
  }];
}

//===----------------------------------------------------------------------===//
// Linear algebra
//===----------------------------------------------------------------------===//

def NN_LinearOp : NN_Op<"linear",
    [Pure, InferTypeOpAdaptor, NN_Differentiable]> {
  let summary = "affine map of the last dimension: x @ W (+ b)";
  let description = [{
    Multiplies the last dimension of `input` (`[..., in]`) by `weight`
    (`[in, out]`) and adds the optional `bias` (`[out]`). The result is
    `[..., out]`.

    Example:

    ```mlir
    %y = nn.linear %x, %w : tensor<?x64xf32>, tensor<64x256xf32>
    %z = nn.linear %x, %w bias %b
        : tensor<2x?x64xf32>, tensor<64x256xf32>, tensor<256xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$input, NN_FloatTensor:$weight,
      Optional<NN_FloatTensor>:$bias);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? attr-dict `:` type($input) `,`
    type($weight) (`,` type($bias)^)?
  }];
}

def NN_MatmulOp : NN_Op<"matmul", [Pure, InferTypeWithDefaults,
    NN_Differentiable]> {
  let summary = "batched matrix product with optional transposes";
  let description = [{
    Multiplies the two trailing dimensions: `[..., M, K] x [..., K, N]` gives
    `[..., M, N]`. `transpose_lhs` / `transpose_rhs` read the corresponding
    operand's last two dimensions swapped (e.g. `Q K^T` in attention). Both
    operands have rank >= 2; the leading (batch) dimensions broadcast as in
    numpy, so a rank-2 `rhs` is shared by every batch.

    Example:

    ```mlir
    %s = nn.matmul %q, %k {transpose_rhs}
        : tensor<4x8x?x16xf32>, tensor<4x8x?x16xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$lhs, NN_FloatTensor:$rhs,
      UnitAttr:$transpose_lhs, UnitAttr:$transpose_rhs);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat =
      "$lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs)";
}

//===----------------------------------------------------------------------===//
// Normalisation, softmax, embedding
//===----------------------------------------------------------------------===//

def NN_RMSNormOp : NN_Op<"rms_norm",
    [Pure, AllTypesMatch<["input", "result"]>, NN_Differentiable]> {
  let summary = "root-mean-square normalisation over the last dimension";
  let description = [{
    `y = x / sqrt(mean(x^2, axis=-1) + epsilon) * weight`, where `weight` has
    the extent of the last dimension of `input`.

    Example:

    ```mlir
    %y = nn.rms_norm %x, %g {epsilon = 1.0e-06 : f32}
        : tensor<2x?x64xf32>, tensor<64xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$input, NN_FloatTensor:$weight,
      DefaultValuedAttr<F32Attr, "1.0e-6">:$epsilon);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat =
      "$input `,` $weight attr-dict `:` type($input) `,` type($weight)";
  let hasVerifier = 1;
}

def NN_LayerNormOp : NN_Op<"layer_norm",
    [Pure, AllTypesMatch<["input", "result"]>, NN_Differentiable]> {
  let summary = "layer normalisation over the last dimension";
  let description = [{
    `y = (x - mean) / sqrt(var + epsilon) * weight + bias` with mean and
    (biased) variance over the last dimension. `bias` is optional.

    Example:

    ```mlir
    %y = nn.layer_norm %x, %g bias %b {epsilon = 1.0e-05 : f32}
        : tensor<?x64xf32>, tensor<64xf32>, tensor<64xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$input, NN_FloatTensor:$weight,
      Optional<NN_FloatTensor>:$bias,
      DefaultValuedAttr<F32Attr, "1.0e-5">:$epsilon);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? attr-dict `:` type($input) `,`
    type($weight) (`,` type($bias)^)?
  }];
  let hasVerifier = 1;
}

def NN_SoftmaxOp : NN_Op<"softmax", [Pure, SameOperandsAndResultType,
    NN_Differentiable]> {
  let summary = "numerically stable softmax along one axis";
  let description = [{
    `exp(x - max(x)) / sum(exp(x - max(x)))` along `axis` (negative values
    count from the end; default -1).

    Example:

    ```mlir
    %p = nn.softmax %x {axis = -1 : i64} : tensor<?x8xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$input,
      DefaultValuedAttr<I64Attr, "-1">:$axis);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
  let hasVerifier = 1;
}

def NN_EmbeddingOp : NN_Op<"embedding", [Pure, InferTypeOpAdaptor,
    NN_Differentiable]> {
  let summary = "row lookup in an embedding table";
  let description = [{
    Gathers rows of `table` (`[vocab, d]`) for every id in `ids` (any shape
    `S`), giving `S x [d]`. Ids outside `[0, vocab)` are undefined behaviour
    for the lowering to clamp or trap; the verifier only checks types.

    Example:

    ```mlir
    %h = nn.embedding %table, %ids : tensor<256x64xf32>, tensor<2x?xi32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$table, NN_IdTensor:$ids);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat =
      "$table `,` $ids attr-dict `:` type($table) `,` type($ids)";
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

def NN_RotaryOp : NN_Op<"rotary",
    [Pure, AllTypesMatch<["input", "result"]>, NN_Differentiable]> {
  let summary = "rotary position embedding (RoPE)";
  let description = [{
    Rotates pairs of features of `input` (`[batch, seq, heads, head_dim]`)
    by the angle `position * theta^(-2i / rotary_dim)`. The first
    `rotary_dim` features are rotated (all of them when `rotary_dim` is 0,
    the default) and the rest pass through. Pairs are `(i, i + rotary_dim/2)`
    (the "rotate half" layout of GPT-NeoX and Llama), or adjacent features
    `(2i, 2i+1)` with `interleaved` (GPT-J layout). A pair `(a, b)` becomes
    `(a cos - b sin, a sin + b cos)`.

    `positions` (`[seq]` or `[batch, seq]`, integer) gives each token's
    position; without it positions are `0 .. seq-1`. With `inverse` every
    pair is rotated by the negated angle, which undoes the rotation (and is
    its transpose, hence its gradient).

    Example:

    ```mlir
    %q2 = nn.rotary %q {theta = 10000.0 : f32} : tensor<1x?x4x16xf32>
    %k2 = nn.rotary %k positions %pos {theta = 500000.0 : f32}
        : tensor<1x?x2x16xf32>, tensor<?xi32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$input, Optional<NN_IdTensor>:$positions,
      DefaultValuedAttr<F32Attr, "10000.0">:$theta,
      DefaultValuedAttr<I64Attr, "0">:$rotary_dim,
      UnitAttr:$interleaved, UnitAttr:$inverse);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat = [{
    $input (`positions` $positions^)? attr-dict `:` type($input)
    (`,` type($positions)^)?
  }];
  let hasVerifier = 1;
}

def NN_AttentionOp : NN_Op<"attention", [Pure, InferTypeOpAdaptor,
    NN_Differentiable]> {
  let summary = "scaled dot-product multi-head attention, grouped-query allowed";
  let description = [{
    `softmax(q k^T * scale + causal_mask) v` per head, with `q` of shape
    `[batch, seq_q, heads, head_dim]` and `k`, `v` of shape
    `[batch, seq_kv, kv_heads, head_dim]`. `heads` must be a multiple of
    `kv_heads`: query head `h` reads key/value head `h / (heads / kv_heads)`
    (grouped-query attention; `kv_heads == 1` is multi-query). With `causal`
    (the default) query `i` sees keys `j <= i + seq_kv - seq_q`, which is the
    usual causal mask when `seq_q == seq_kv` and the right mask for decoding
    against a cache; a query that sees no key at all (possible when
    `seq_q > seq_kv`) outputs zeros. `scale` defaults to `1/sqrt(head_dim)`
    when 0.

    Example:

    ```mlir
    %o = nn.attention %q, %k, %v
        : tensor<2x?x8x16xf32>, tensor<2x?x2x16xf32>, tensor<2x?x2x16xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$query, NN_FloatTensor:$key,
      NN_FloatTensor:$value,
      DefaultValuedAttr<BoolAttr, "true">:$causal,
      DefaultValuedAttr<F32Attr, "0.0">:$scale);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value attr-dict `:` type($query) `,` type($key) `,`
    type($value)
  }];
}

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

def NN_ReshapeOp : NN_Op<"reshape", [Pure, NN_Differentiable]> {
  let summary = "reinterpret a tensor with another shape, same element count";
  let description = [{
    Row-major reshape; the result has the input's element type. The dynamic
    result extents are either all given by `dynamic_sizes` (one `index` per
    dynamic result dimension, in order) or, without `dynamic_sizes`, there
    is at most one, which the element count determines. When the input is
    static, the element counts must agree: equal for a static result, and a
    multiple of the product of the static result extents otherwise (which
    must not be 0 unless `dynamic_sizes` are given).

    Example:

    ```mlir
    %y = nn.reshape %x : tensor<2x?x64xf32> -> tensor<?x64xf32>
    %h = nn.reshape %y [%b, %s] : tensor<?x64xf32> -> tensor<?x?x4x16xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, Variadic<Index>:$dynamic_sizes);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $input (`[` $dynamic_sizes^ `]`)? attr-dict `:` type($input) `->`
    type($result)
  }];
  let builders = [
    // The element count determines the (at most one) dynamic extent.
    OpBuilder<(ins "::mlir::Type":$result, "::mlir::Value":$input), [{
      build($_builder, $_state, result, input, ::mlir::ValueRange());
    }]>
  ];
  let hasVerifier = 1;
  let hasFolder = 1;
  let hasCanonicalizer = 1;
}

def NN_TransposeOp : NN_Op<"transpose", [Pure, InferTypeWithDefaults,
    NN_Differentiable]> {
  let summary = "permute the dimensions of a tensor";
  let description = [{
    Result dimension `i` is input dimension `permutation[i]`.

    Example:

    ```mlir
    %y = nn.transpose %x [0, 2, 1, 3] : tensor<2x?x8x16xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input,
      DenseI64ArrayAttr:$permutation);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input $permutation attr-dict `:` type($input)";
  let hasFolder = 1;
  let hasCanonicalizer = 1;
}

//===----------------------------------------------------------------------===//
// Loss
//===----------------------------------------------------------------------===//

def NN_CrossEntropyOp : NN_Op<"cross_entropy",
    [Pure, InferTypeOpAdaptor, NN_Differentiable]> {
  let summary = "masked mean softmax cross-entropy";
  let description = [{
    `logits` has shape `[..., vocab]` and `targets` (integer) the leading
    shape `[...]`. The loss of one position is
    `logsumexp(logits) - logits[target]`; the result is the 0-d tensor
    `sum(mask * loss) / max(sum(mask), 1)`. `mask` (same shape as
    `targets`, same element type as `logits`) is optional: without it every
    position counts. This is how instruction tuning restricts the loss to
    response tokens. Targets outside `[0, vocab)` are undefined behaviour,
    as for `nn.embedding`.

    Example:

    ```mlir
    %l = nn.cross_entropy %logits, %targets mask %m
        : tensor<2x?x256xf32>, tensor<2x?xi32>, tensor<2x?xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$logits, NN_IdTensor:$targets,
      Optional<NN_FloatTensor>:$mask);
  let results = (outs 0DTensorOf<[F32, F16, BF16]>:$loss);
  let assemblyFormat = [{
    $logits `,` $targets (`mask` $mask^)? attr-dict `:` type($logits) `,`
    type($targets) (`,` type($mask)^)?
  }];
}

//===----------------------------------------------------------------------===//
// Reductions
//===----------------------------------------------------------------------===//

class NN_ReduceOp<string mnemonic, string what, list<Trait> traits = []>
    : NN_Op<mnemonic, !listconcat([Pure, InferTypeWithDefaults], traits)> {
  let summary = what # " over some dimensions";
  let arguments = (ins NN_FloatTensor:$input, DenseI64ArrayAttr:$axes,
      UnitAttr:$keep_dims);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat = "$input $axes attr-dict `:` type($input)";
  let extraClassDeclaration = [{
    /// `axes` counted from the front ([0, rank)), in the order written.
    ::llvm::SmallVector<int64_t> getNormalizedAxes();
  }];
  let extraClassDefinition = [{
    ::llvm::LogicalResult $cppClass::inferReturnTypes(
        ::mlir::MLIRContext *, std::optional<::mlir::Location> location,
        Adaptor adaptor, ::llvm::SmallVectorImpl<::mlir::Type> &types) {
      return ::moec::nn::inferReductionResult(
          location, getOperationName(), adaptor.getInput().getType(),
          adaptor.getAxes(), adaptor.getKeepDims(), types);
    }
    ::llvm::SmallVector<int64_t> $cppClass::getNormalizedAxes() {
      return ::moec::nn::normalizeAxes(getAxes(),
                                       getInput().getType().getRank());
    }
  }];
}

def NN_ReduceSumOp : NN_ReduceOp<"reduce_sum", "sum", [NN_Differentiable]> {
  let description = [{
    Sums `input` over the dimensions listed in `axes` (negative values count
    from the end; each dimension at most once). The summed dimensions are
    dropped from the result, or kept with extent 1 with `keep_dims`. f16 and
    bf16 inputs accumulate in f32. Gradients of broadcasting ops use it to
    sum over the dimensions an operand was broadcast along.

    Example:

    ```mlir
    %s = nn.reduce_sum %x [0, 1] : tensor<2x?x64xf32>
    %r = nn.reduce_sum %x [-1] {keep_dims} : tensor<2x?x64xf32>
    ```
  }];
}

def NN_ReduceMeanOp : NN_ReduceOp<"reduce_mean", "mean", [NN_Differentiable]> {
  let description = [{
    The mean of `input` over the dimensions listed in `axes`, with the axes
    and `keep_dims` of `nn.reduce_sum` (ONNX `ReduceMean`). f16 and bf16
    inputs accumulate in f32.

    Example:

    ```mlir
    %m = nn.reduce_mean %x [-1] {keep_dims} : tensor<2x?x64xf32>
    ```
  }];
}

def NN_ReduceMaxOp : NN_ReduceOp<"reduce_max", "maximum"> {
  let description = [{
    The largest element of `input` over the dimensions listed in `axes`, with
    the axes and `keep_dims` of `nn.reduce_sum` (ONNX `ReduceMax`). A NaN in
    a reduced slice makes its result NaN.

    Example:

    ```mlir
    %m = nn.reduce_max %x [1] : tensor<2x?x64xf32>
    ```
  }];
}

//===----------------------------------------------------------------------===//
// Tensor manipulation (what ONNX exports of transformers contain)
//
// These ops take any of the element types below so that masks (i1),
// positions and indices (i32/i64) flow through the same ops as activations.
// Extents that only the running program knows are `index` operands, one
// per dynamic result dimension, as in `tensor.empty`.
//===----------------------------------------------------------------------===//

def NN_CompareAttr : I32EnumAttr<"ComparePredicate",
    "an elementwise comparison", [
      I32EnumAttrCase<"eq", 0>,
      I32EnumAttrCase<"ne", 1>,
      I32EnumAttrCase<"lt", 2>,
      I32EnumAttrCase<"le", 3>,
      I32EnumAttrCase<"gt", 4>,
      I32EnumAttrCase<"ge", 5>
    ]> {
  let cppNamespace = "::moec::nn";
}

def NN_AnyTensor : RankedTensorOf<[F32, F16, BF16, I1, I32, I64]>;

def NN_ConcatOp : NN_Op<"concat", [Pure, InferTypeWithDefaults]> {
  let summary = "join tensors along one dimension";
  let description = [{
    Concatenates `inputs` (at least one, same rank and element type, equal
    extents except along `axis`) along `axis` (negative counts from the
    end), as ONNX `Concat`. The result extent along `axis` is the sum of the
    inputs' (dynamic if any of them is); other extents are static where any
    input's is.

    Example:

    ```mlir
    %y = nn.concat %a, %b axis = -1 : tensor<2x?x8xf32>, tensor<2x?x8xf32>
    ```
  }];
  let arguments = (ins Variadic<NN_AnyTensor>:$inputs, I64Attr:$axis);
  let results = (outs NN_AnyTensor:$result);
  let assemblyFormat =
      "$inputs `axis` `=` $axis attr-dict `:` type($inputs)";
}

def NN_SliceOp : NN_Op<"slice", [Pure, InferTypeWithDefaults]> {
  let summary = "strided slice with numpy/ONNX clamping";
  let description = [{
    One `starts`, `ends` and `steps` entry per dimension, with the semantics
    of ONNX `Slice`: negative `starts` and `ends` count from the end of the
    dimension, then starts are clamped to `[0, extent]` for positive steps
    and `[0, extent - 1]` for negative ones, ends to `[0, extent]` and
    `[-1, extent - 1]`; `steps` are nonzero. The slice takes the elements
    `start, start + step, ...` strictly before `end`. An `end` of
    `INT64_MAX` (or `INT64_MIN` with a negative step) thus means "through
    the last element". The result extent is static wherever the input
    extent is, and dynamic otherwise.

    Example:

    ```mlir
    %h = nn.slice %x starts = [0, 0, 8] ends = [9223372036854775807, 9223372036854775807, 16]
        steps = [1, 1, 1] : tensor<2x?x16xf32>
    ```
  }];
  let arguments = (ins NN_AnyTensor:$input, DenseI64ArrayAttr:$starts,
      DenseI64ArrayAttr:$ends, DenseI64ArrayAttr:$steps);
  let results = (outs NN_AnyTensor:$result);
  let assemblyFormat = [{
    $input `starts` `=` $starts `ends` `=` $ends `steps` `=` $steps attr-dict
    `:` type($input)
  }];
}

def NN_GatherOp : NN_Op<"gather", [Pure, InferTypeWithDefaults]> {
  let summary = "take slices along one axis at the given indices";
  let description = [{
    ONNX `Gather` (numpy `take`): for `input` of shape `[d0, .., d(a-1), da,
    d(a+1), ..]` and `indices` of shape `I`, the result has shape
    `[d0, .., d(a-1)] + I + [d(a+1), ..]` and holds `input[.., indices[i],
    ..]`. Negative indices count from the end of `axis`. Out-of-range indices
    are clamped to the axis (ONNX leaves them undefined; clamping keeps every
    read in bounds). `nn.embedding` is the rank-2, axis-0 case.

    Example:

    ```mlir
    %last = nn.gather %h [%i] axis = 1 : tensor<2x?x64xf32>, tensor<i64>
    ```
  }];
  let arguments = (ins NN_AnyTensor:$input, NN_IdTensor:$indices,
      I64Attr:$axis);
  let results = (outs NN_AnyTensor:$result);
  let assemblyFormat = [{
    $input `[` $indices `]` `axis` `=` $axis attr-dict `:` type($input) `,`
    type($indices)
  }];
}

def NN_WhereOp : NN_Op<"where", [Pure, InferTypeOpAdaptor]> {
  let summary = "elementwise choice: condition ? true_value : false_value";
  let description = [{
    ONNX `Where`. The three operands broadcast together as in numpy;
    `true_value` and `false_value` have one element type.

    Example:

    ```mlir
    %m = nn.where %causal, %scores, %neg_inf
        : tensor<?x?xi1>, tensor<2x4x?x?xf32>, tensor<f32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[I1]>:$condition,
      NN_AnyTensor:$true_value, NN_AnyTensor:$false_value);
  let results = (outs NN_AnyTensor:$result);
  let assemblyFormat = [{
    $condition `,` $true_value `,` $false_value attr-dict `:`
    type($condition) `,` type($true_value) `,` type($false_value)
  }];
}

def NN_CompareOp : NN_Op<"compare", [Pure, InferTypeWithDefaults]> {
  let summary = "elementwise comparison with numpy broadcasting";
  let description = [{
    `lhs <predicate> rhs` elementwise as `i1`; the operands have one element
    type and broadcast as in numpy (ONNX `Equal`, `Less`, `Greater`, ...).
    Floating-point comparisons are ordered: any comparison with NaN is false,
    except `ne`, which is true.

    Example:

    ```mlir
    %is_e = nn.compare eq %indices, %e : tensor<?x2xi64>, tensor<i64>
    ```
  }];
  let arguments = (ins NN_CompareAttr:$predicate, NN_AnyTensor:$lhs,
      NN_AnyTensor:$rhs);
  let results = (outs RankedTensorOf<[I1]>:$result);
  let assemblyFormat = [{
    $predicate $lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs)
  }];
}

def NN_CastOp : NN_Op<"cast", [Pure]> {
  let summary = "elementwise conversion to another element type";
  let description = [{
    ONNX `Cast` between `f32`, `f16`, `bf16`, `i1`, `i32` and `i64`: floats
    round to nearest even, float to integer truncates toward zero (saturating
    at the integer range, NaN becomes 0), integers widen with sign or
    truncate, anything to `i1` is `x != 0` and `i1` converts to 0 or 1. The
    shape does not change.

    Example:

    ```mlir
    %f = nn.cast %mask : tensor<?x?xi1> -> tensor<?x?xf32>
    ```
  }];
  let arguments = (ins NN_AnyTensor:$input);
  let results = (outs NN_AnyTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def NN_ExpandOp : NN_Op<"expand", [Pure]> {
  let summary = "broadcast a tensor to a larger shape";
  let description = [{
    numpy `broadcast_to`: `input` is aligned with the trailing dimensions of
    the result; each of its extents is 1 (repeated) or equal to the result's
    (a dynamic extent of `input` must be equal at run time: only static
    extents of 1 are repeated).
    `dynamic_sizes` holds one `index` per dynamic result dimension, in order.
    ONNX `Expand` (after the importer has broadcast the requested shape with
    the input's) and `ConstantOfShape` (expanding a 0-d constant) become this
    op.

    Example:

    ```mlir
    %m = nn.expand %row [%s] : tensor<1x64xf32> -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins NN_AnyTensor:$input, Variadic<Index>:$dynamic_sizes);
  let results = (outs NN_AnyTensor:$result);
  let assemblyFormat = [{
    $input (`[` $dynamic_sizes^ `]`)? attr-dict `:` type($input) `->`
    type($result)
  }];
  let hasVerifier = 1;
}

def NN_TopKOp : NN_Op<"topk", [Pure, InferTypeWithDefaults]> {
  let summary = "the k largest (or smallest) elements along one axis";
  let description = [{
    ONNX `TopK` with a constant `k`: `values` holds the `k` largest elements
    of every slice along `axis` (the smallest without `largest`), in order,
    and `indices` (`i64`) their positions. Equal values keep the lower index
    first; NaN counts as larger than every number. `k` must not exceed
    the extent of `axis`; the verifier checks a static extent, and a dynamic
    one is the producer's promise (the importer only emits `topk` on
    expert axes, which are static).

    Example:

    ```mlir
    %v, %i = nn.topk %probs top 2 axis = -1 : tensor<?x8xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$input,
      ConfinedAttr<I64Attr, [IntPositive]>:$k,
      DefaultValuedAttr<I64Attr, "-1">:$axis,
      DefaultValuedAttr<BoolAttr, "true">:$largest);
  let results = (outs NN_FloatTensor:$values, RankedTensorOf<[I64]>:$indices);
  let assemblyFormat = "$input `top` $k attr-dict `:` type($input)";
}

def NN_IotaOp : NN_Op<"iota", [Pure]> {
  let summary = "0, 1, 2, ... along a 1-d tensor";
  let description = [{
    A 1-d tensor whose element `i` is `i`, converted to the result's element
    type. A dynamic extent comes from the one `index` operand. The importer
    builds ONNX `Range(start, limit, delta)` as `start + delta * iota(n)`
    with `n = max(ceil((limit - start) / delta), 0)`.

    Example:

    ```mlir
    %positions = nn.iota [%seq] : tensor<?xi64>
    ```
  }];
  let arguments = (ins Variadic<Index>:$dynamic_sizes);
  let results = (outs RankedTensorOf<[F32, F16, BF16, I32, I64]>:$result);
  let assemblyFormat =
      "(`[` $dynamic_sizes^ `]`)? attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def NN_TriluOp : NN_Op<"trilu", [Pure, SameOperandsAndResultType]> {
  let summary = "keep the lower (or upper) triangle of the trailing matrices";
  let description = [{
    ONNX `Trilu`: for every matrix in the last two dimensions of `input`
    (rank >= 2), elements `(i, j)` with `j - i <= diagonal` are kept
    (`j - i >= diagonal` with `upper`) and the others are zero (false for
    `i1`).

    Example:

    ```mlir
    %causal = nn.trilu %ones {diagonal = 0 : i64} : tensor<?x?xi1>
    ```
  }];
  let arguments = (ins NN_AnyTensor:$input,
      DefaultValuedAttr<I64Attr, "0">:$diagonal, UnitAttr:$upper);
  let results = (outs NN_AnyTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Gradients
//
// Backward ops that the VJPs of the differentiable ops emit where composing
// existing ops would be wasteful (several passes over the data) or
// impossible (scatter-add). Each takes the gradient of the forward result
// first, then the forward op's operands, and has the forward attributes.
//===----------------------------------------------------------------------===//

def NN_UnaryGradOp : NN_Op<"unary_grad",
    [Pure, SameOperandsAndResultType]> {
  let summary = "gradient of an elementwise function: grad * f'(input)";
  let description = [{
    Computes `grad * f'(input)` elementwise, where `f` is the unary op named
    by `function` (`gelu` is exact GELU, `gelu_tanh` its tanh
    approximation). The derivative is evaluated from the forward input in
    one pass. Where `f` is not differentiable the value is the one-sided
    limit used by frameworks: `relu` has derivative 0 at 0.

    Example:

    ```mlir
    %dx = nn.unary_grad silu %dy, %x : tensor<?x64xf32>
    ```
  }];
  let arguments = (ins NN_UnaryFunction:$function, NN_FloatTensor:$grad,
      NN_FloatTensor:$input);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat =
      "$function $grad `,` $input attr-dict `:` type($input)";
}

def NN_RMSNormGradOp : NN_Op<"rms_norm_grad",
    [Pure, AllTypesMatch<["grad", "input", "input_grad"]>,
     AllTypesMatch<["weight", "weight_grad"]>]> {
  let summary = "gradient of nn.rms_norm";
  let description = [{
    Given `grad`, the gradient of the result of
    `nn.rms_norm %input, %weight`, computes the gradients with respect to
    `input` and `weight`. With `r = 1 / sqrt(mean(x^2) + epsilon)` per row:
    `input_grad = r * (grad * weight - x * r^2 * mean(grad * weight * x))`,
    and `weight_grad` sums `grad * x * r` over every dimension but the last.

    Example:

    ```mlir
    %dx, %dw = nn.rms_norm_grad %dy, %x, %g {epsilon = 1.0e-06 : f32}
        : tensor<2x?x64xf32>, tensor<64xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$grad, NN_FloatTensor:$input,
      NN_FloatTensor:$weight, DefaultValuedAttr<F32Attr, "1.0e-6">:$epsilon);
  let results = (outs NN_FloatTensor:$input_grad,
      NN_FloatTensor:$weight_grad);
  let assemblyFormat = [{
    $grad `,` $input `,` $weight attr-dict `:` type($input) `,` type($weight)
  }];
  let hasVerifier = 1;
}

def NN_LayerNormGradOp : NN_Op<"layer_norm_grad",
    [Pure, AllTypesMatch<["grad", "input", "input_grad"]>,
     AllTypesMatch<["weight", "weight_grad", "bias_grad"]>]> {
  let summary = "gradient of nn.layer_norm";
  let description = [{
    Given `grad`, the gradient of the result of
    `nn.layer_norm %input, %weight (bias %b)`, computes the gradients with
    respect to `input`, `weight` and the bias (the bias itself does not
    enter them, so it is no operand). With `xhat = (x - mean) * r`,
    `r = 1 / sqrt(var + epsilon)` per row and `gw = grad * weight`:
    `input_grad = r * (gw - mean(gw) - xhat * mean(gw * xhat))`;
    `weight_grad` and `bias_grad` sum `grad * xhat` and `grad` over every
    dimension but the last.

    Example:

    ```mlir
    %dx, %dw, %db = nn.layer_norm_grad %dy, %x, %g {epsilon = 1.0e-05 : f32}
        : tensor<?x64xf32>, tensor<64xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$grad, NN_FloatTensor:$input,
      NN_FloatTensor:$weight, DefaultValuedAttr<F32Attr, "1.0e-5">:$epsilon);
  let results = (outs NN_FloatTensor:$input_grad, NN_FloatTensor:$weight_grad,
      NN_FloatTensor:$bias_grad);
  let assemblyFormat = [{
    $grad `,` $input `,` $weight attr-dict `:` type($input) `,` type($weight)
  }];
  let hasVerifier = 1;
}

def NN_EmbeddingGradOp : NN_Op<"embedding_grad",
    [Pure, AllTypesMatch<["table", "result"]>]> {
  let summary = "gradient of nn.embedding: scatter-add into the table";
  let description = [{
    Given `grad` (`S x [d]`), the gradient of the result of
    `nn.embedding %table, %ids` (`ids` of shape `S`), computes the gradient
    with respect to `table`: a `[vocab, d]` tensor whose row `v` is the sum
    of the rows of `grad` at the positions where `ids` is `v`. `table` only
    gives the result its shape. Ids are clamped into `[0, vocab)` as the
    forward lowering clamps them, so each gradient row lands on the row the
    forward op read.

    Example:

    ```mlir
    %dt = nn.embedding_grad %dh, %ids, %table
        : tensor<2x?x64xf32>, tensor<2x?xi32>, tensor<256x64xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$grad, NN_IdTensor:$ids,
      NN_FloatTensor:$table);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat = [{
    $grad `,` $ids `,` $table attr-dict `:` type($grad) `,` type($ids) `,`
    type($table)
  }];
  let hasVerifier = 1;
}

def NN_AttentionGradOp : NN_Op<"attention_grad",
    [Pure, AllTypesMatch<["query", "query_grad"]>,
     AllTypesMatch<["key", "key_grad"]>,
     AllTypesMatch<["value", "value_grad"]>]> {
  let summary = "gradient of nn.attention";
  let description = [{
    Given `grad`, the gradient of the result of
    `nn.attention %query, %key, %value` with the same `causal` and `scale`,
    computes the gradients with respect to the three operands. The
    probabilities `P = softmax(q k^T * scale + mask)` are recomputed from
    `query` and `key` with the forward op's end-aligned causal mask; then
    `dV = P^T dO`, `dP = dO V^T`, `dS = P * (dP - rowsum(P * dP))`,
    `dQ = scale * dS K` and `dK = scale * dS^T Q`. With grouped-query
    attention the contributions of the query heads that share a key/value
    head are summed into it. Rows that see no key (output 0) contribute
    nothing.

    Example:

    ```mlir
    %dq, %dk, %dv = nn.attention_grad %do, %q, %k, %v
        : tensor<2x?x8x16xf32>, tensor<2x?x8x16xf32>, tensor<2x?x2x16xf32>,
          tensor<2x?x2x16xf32>
    ```
  }];
  let arguments = (ins NN_FloatTensor:$grad, NN_FloatTensor:$query,
      NN_FloatTensor:$key, NN_FloatTensor:$value,
      DefaultValuedAttr<BoolAttr, "true">:$causal,
      DefaultValuedAttr<F32Attr, "0.0">:$scale);
  let results = (outs NN_FloatTensor:$query_grad, NN_FloatTensor:$key_grad,
      NN_FloatTensor:$value_grad);
  let assemblyFormat = [{
    $grad `,` $query `,` $key `,` $value attr-dict `:` type($grad) `,`
    type($query) `,` type($key) `,` type($value)
  }];
  let hasVerifier = 1;
}

def NN_CrossEntropyGradOp : NN_Op<"cross_entropy_grad",
    [Pure, AllTypesMatch<["logits", "result"]>]> {
  let summary = "gradient of nn.cross_entropy with respect to the logits";
  let description = [{
    Given `grad`, the 0-d gradient of the loss of
    `nn.cross_entropy %logits, %targets (mask %mask)`, computes the gradient
    with respect to `logits`:
    `grad * mask / max(sum(mask), 1) * (softmax(logits) - onehot(target))`
    at every position (mask 1 without `mask`). An all-zero mask gives zeros,
    as the forward loss is then the constant 0. Targets are clamped into
    `[0, vocab)` as in the forward lowering.

    Example:

    ```mlir
    %dl = nn.cross_entropy_grad %g, %logits, %targets mask %m
        : tensor<f32>, tensor<2x?x256xf32>, tensor<2x?xi32>, tensor<2x?xf32>
    ```
  }];
  let arguments = (ins 0DTensorOf<[F32, F16, BF16]>:$grad,
      NN_FloatTensor:$logits, NN_IdTensor:$targets,
      Optional<NN_FloatTensor>:$mask);
  let results = (outs NN_FloatTensor:$result);
  let assemblyFormat = [{
    $grad `,` $logits `,` $targets (`mask` $mask^)? attr-dict `:`
    type($grad) `,` type($logits) `,` type($targets) (`,` type($mask)^)?
  }];
  let hasVerifier = 1;
}

#endif // MOEC_NN_OPS
