//===- MoEOps.td - moe dialect operations ------------------------*- tablegen -*-===//
//
// Conventions: every op is Pure, tokens are the rows of a rank-2 [T, D]
// tensor, and result shapes are inferred from the operands and attributes
// (InferTypeOpAdaptor, or InferTypeWithDefaults for ops with attributes) so
// the assembly lists operand types only. Verifiers name the operand at fault
// and quote its shape. Expert weights use the
// `x @ W` convention: fc1/fc3 are [E, D, F], fc2 is [E, F, D].
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_MOE_OPS
#define MOEC_MOE_OPS

include "dialects/MoE/MoEDialect.td"
include "dialects/Common/DifferentiableOpInterface.td"
include "dialects/Common/InferTypeWithDefaults.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Routing
//===----------------------------------------------------------------------===//

def MoE_GateOp : MoE_Op<"gate",
    [Pure, InferTypeWithDefaults, AttrSizedOperandSegments,
     DeclareOpInterfaceMethods<DifferentiableOpInterface>]> {
  let summary = "router projection with optional multiplicative jitter";
  let description = [{
    Computes the router logits `(x * u) @ weight + bias` for tokens `input`
    (`[T, D]`) and `weight` (`[D, E]`); `bias` (`[E]`) is optional. With
    `jitter_eps > 0` and a `seed`, `u` is drawn elementwise from
    `Uniform(1 - jitter_eps, 1 + jitter_eps)` by a counter-based generator
    keyed by `seed` (Switch Transformer's multiplicative jitter, a training
    regulariser); otherwise `u = 1`. A `seed` with `jitter_eps = 0` has no
    effect and canonicalisation drops it.

    Example:

    ```mlir
    %logits = moe.gate %x, %w : tensor<?x64xf32>, tensor<64x8xf32>
    %noisy = moe.gate %x, %w seed %s {jitter_eps = 0.01 : f32}
        : tensor<?x64xf32>, tensor<64x8xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_FloatTensor:$weight,
      Optional<MoE_FloatTensor>:$bias, Optional<I64>:$seed,
      DefaultValuedAttr<F32Attr, "0.0">:$jitter_eps);
  let results = (outs MoE_FloatTensor:$logits);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? (`seed` $seed^)? attr-dict `:`
    type($input) `,` type($weight) (`,` type($bias)^)?
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

def MoE_TokenChoiceOp : MoE_Op<"token_choice",
    [Pure, InferTypeWithDefaults,
     DeclareOpInterfaceMethods<DifferentiableOpInterface>]> {
  let summary = "token-choice top-k routing (Switch, GShard, Mixtral, DeepSeek)";
  let description = [{
    Every token picks `k` experts. From `logits` (`[T, E]`):

    1. `probs = softmax(logits)` over experts, or `sigmoid(logits)` with
       `score = sigmoid`.
    2. Selection scores are `probs + bias` when the optional `bias` (`[E]`)
       is given. The bias steers selection only (DeepSeek-V3's auxiliary-loss
       free balancing); it never enters the weights.
    3. With `num_groups = G > 1` the experts form `G` groups of `E / G`
       consecutive experts; each group's score is the sum of its two best
       selection scores (its only score when a group has one expert), and
       only the `topk_groups` best groups stay eligible (device-limited
       routing; ties go to the lower group index).
    4. `indices` are the `k` eligible experts with the highest selection
       scores, best first; ties go to the lower expert index.
    5. `weights = probs[indices]`, divided by their plain sum when
       `normalize` is set (Mixtral renormalisation), then multiplied by
       `scaling_factor`.

    Routing is computed in `f32` whatever the logits' type, and results are
    rounded to it at the end.

    `score = sparse_mixer` is the top-2 SparseMixer routing of Phi-3.5-MoE
    at inference, as onnxruntime's `com.microsoft.MoE` computes it with
    `use_sparse_mixer = 1`; it needs `k = 2` and takes no `bias`, groups or
    `normalize`. The experts are the two largest logits `m0 = logits[i0]`,
    `m1 = logits[i1]` (ties to the lower index), and each weight is a
    softmax over the experts near its pick, with `eps = 0.01`:

    ```
    w_j = 1 / sum_{e in S_j} exp(logits[e] - m_j)
    S_j = {e : m_j - logits[e] <= 2 * eps * max(|logits[e]|, m_j)}, e != i0 for j = 1
    ```

    times `scaling_factor`; `probs` is `softmax(logits)`. It has no
    gradient (training uses a different estimator).

    Results: `weights` (`[T, k]`, logits' type), `indices` (`[T, k]`, i32)
    and `probs` (`[T, E]`), which the load-balancing loss needs.

    Example:

    ```mlir
    %w, %idx, %p = moe.token_choice softmax %logits top 2 {normalize}
        : tensor<?x8xf32>
    %w3, %idx3, %p3 = moe.token_choice sigmoid %logits top 8 bias %b
        {normalize, num_groups = 8 : i64, topk_groups = 4 : i64,
         scaling_factor = 2.5 : f32} : tensor<?x64xf32>, tensor<64xf32>
    %w4, %idx4, %p4 = moe.token_choice sparse_mixer %logits top 2
        : tensor<?x16xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$logits, Optional<MoE_FloatTensor>:$bias,
      MoE_ScoreFunction:$score, ConfinedAttr<I64Attr, [IntPositive]>:$k,
      UnitAttr:$normalize,
      DefaultValuedAttr<I64Attr, "1">:$num_groups,
      DefaultValuedAttr<I64Attr, "1">:$topk_groups,
      DefaultValuedAttr<F32Attr, "1.0">:$scaling_factor);
  let results = (outs MoE_FloatTensor:$weights, MoE_I32Tensor:$indices,
      MoE_FloatTensor:$probs);
  let assemblyFormat = [{
    $score $logits `top` $k (`bias` $bias^)? attr-dict `:` type($logits)
    (`,` type($bias)^)?
  }];
}

def MoE_ExpertChoiceOp : MoE_Op<"expert_choice",
    [Pure, InferTypeWithDefaults,
     DeclareOpInterfaceMethods<DifferentiableOpInterface>]> {
  let summary = "expert-choice routing: each expert picks its top tokens";
  let description = [{
    Expert-choice routing (Zhou et al., 2022) with `probs = softmax(logits)`
    over experts for `logits` (`[T, E]`). Each expert takes the
    `C = min(T, ceil((capacity_factor * T) / E))` tokens (double precision)
    with the highest `probs[:, e]` (ties to the lower token index), so every
    expert is exactly
    full and no load-balancing loss is needed; a token may be taken by
    several experts or by none.

    The result is already a row plan (see `moe.dispatch`): `R = E * C` rows,
    `offsets[e] = e * C`, rows of one expert in increasing token order,
    `row_token` the token of each row and `row_weight = probs[token, e]`.
    `probs` is returned for metrics and the z-loss.

    The optional `eval_capacity_factor` replaces `capacity_factor` under
    `moe-specialize-routing{mode=eval}` (see `moe.dispatch`).

    Example:

    ```mlir
    %rt, %rw, %off, %p = moe.expert_choice %logits {capacity_factor = 2.0 : f64}
        : tensor<64x8xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$logits,
      ConfinedAttr<F64Attr, [MoE_FloatPositive]>:$capacity_factor,
      OptionalAttr<ConfinedAttr<F64Attr, [MoE_FloatPositive]>>:$eval_capacity_factor);
  let results = (outs MoE_I32Tensor:$row_token, MoE_FloatTensor:$row_weight,
      MoE_I32Tensor:$offsets, MoE_FloatTensor:$probs);
  let assemblyFormat = "$logits attr-dict `:` type($logits)";
}

//===----------------------------------------------------------------------===//
// Dispatch, permutation, experts, combine
//===----------------------------------------------------------------------===//

def MoE_DispatchOp : MoE_Op<"dispatch",
    [Pure, InferTypeWithDefaults,
     DeclareOpInterfaceMethods<DifferentiableOpInterface>]> {
  let summary = "plan the expert-grouped rows: capacity, dropping, priority";
  let description = [{
    Turns token-choice routing (`indices` and `weights`, both `[T, k]`) into a
    *row plan* for `num_experts = E` experts:

    - `offsets` (`[E + 1]`, i32): rows `offsets[e] .. offsets[e+1]` belong to
      expert `e`; `offsets[0] = 0` and `offsets[E]` is the number of rows in
      use.
    - `row_token` (`[R]`, i32): the token of each row, -1 past `offsets[E]`.
    - `row_weight` (`[R]`): the gating weight of each row, 0 past
      `offsets[E]`.

    Without `capacity_factor` the dispatch is dropless: every assignment gets
    a row and `R = T * k`. With it, each expert keeps at most
    `C = ceil(((capacity_factor * T) * k) / E)` assignments (GShard / Switch;
    evaluated in double precision in that order) and `R = min(T * k, E * C)`. Priority decides who is kept: all first choices
    before any second choice (choice rank `j` first), and within one rank
    tokens in order, or, with `batch_prioritized`, by decreasing top-1 weight
    `weights[t, 0]` (Batch Prioritized Routing, Riquelme et al. 2021; ties to
    the lower token index). Dropped assignments simply have no row; the
    token's other choices still count. Within an expert, rows are in
    increasing token order. Entries of `indices` must lie in `[0, E)` and the
    `k` experts of one token must be distinct (as top-k routing guarantees).
    Weights of the kept assignments are not renormalised.

    `eval_capacity_factor` is the capacity factor of evaluation (Switch and
    GShard use a larger one than in training); it has no effect until
    `moe-specialize-routing{mode=eval}` makes it the `capacity_factor`
    (`mode=train` drops it). Without `capacity_factor` training is dropless
    and evaluation still applies it.

    Example:

    ```mlir
    %rt, %rw, %off = moe.dispatch %idx, %w
        {num_experts = 8 : i64, capacity_factor = 1.25 : f64}
        : tensor<?x2xi32>, tensor<?x2xf32>
    %rt2, %rw2, %off2 = moe.dispatch %idx, %w
        {num_experts = 8 : i64, capacity_factor = 1.0 : f64,
         eval_capacity_factor = 2.0 : f64} : tensor<?x2xi32>, tensor<?x2xf32>
    ```
  }];
  let arguments = (ins MoE_I32Tensor:$indices, MoE_FloatTensor:$weights,
      ConfinedAttr<I64Attr, [IntPositive]>:$num_experts,
      OptionalAttr<ConfinedAttr<F64Attr, [MoE_FloatPositive]>>:$capacity_factor,
      UnitAttr:$batch_prioritized,
      OptionalAttr<ConfinedAttr<F64Attr, [MoE_FloatPositive]>>:$eval_capacity_factor);
  let results = (outs MoE_I32Tensor:$row_token, MoE_FloatTensor:$row_weight,
      MoE_I32Tensor:$offsets);
  let assemblyFormat = [{
    $indices `,` $weights attr-dict `:` type($indices) `,` type($weights)
  }];
  let hasCanonicalizer = 1;
}

def MoE_PermuteOp : MoE_Op<"permute",
    [Pure, InferTypeOpAdaptor,
     DeclareOpInterfaceMethods<DifferentiableOpInterface>]> {
  let summary = "gather tokens into expert-grouped rows";
  let description = [{
    `result[r] = input[row_token[r]]` for the `[T, D]` tokens `input` and the
    `[R]` row plan `row_token`; rows whose token is -1 (padding) are zero.

    Example:

    ```mlir
    %xs = moe.permute %x, %rt : tensor<?x64xf32>, tensor<?xi32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_I32Tensor:$row_token);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $row_token attr-dict `:` type($input) `,` type($row_token)
  }];
}

def MoE_ExpertFFNOp : MoE_Op<"expert_ffn",
    [Pure, InferTypeWithDefaults, AttrSizedOperandSegments,
     DeclareOpInterfaceMethods<DifferentiableOpInterface>]> {
  let summary = "grouped expert feed-forward network over row segments";
  let description = [{
    For every expert `e` and every row `r` in `offsets[e] .. offsets[e+1]` of
    `input` (`[R, D]`):

    ```
    g = x @ fc1[e] + fc1_bias[e],  l = x @ fc3[e] + fc3_bias[e]
    h = act(g)                     relu, relu2, gelu, gelu_tanh, silu, identity
    h = act(g) * l                 geglu (exact gelu), geglu_tanh (gelu_tanh)
    h = G * sigmoid(alpha * G) * (L + beta)                     swiglu
        G = min(g, limit),  L = clamp(l, -limit, limit)
    y = h @ fc2[e] + fc2_bias[e]
    ```

    with `fc1`, `fc3` of shape `[E, D, F]` and `fc2` of shape `[E, F, D_out]`;
    biases are `[E, F]` (fc1, fc3) and `[E, D_out]` (fc2) and all are
    optional. `relu2` is the squared ReLU `relu(g)^2` and `identity` is
    `h = g`. The gated activations (swiglu, geglu, geglu_tanh) need `fc3`;
    the others must not have it. Rows past `offsets[E]` are zero. This is
    the grouped GEMM that codegen tiles per expert segment.

    SwiGLU's parameters (those of onnxruntime's `com.microsoft.MoE`, e.g.
    gpt-oss) are attributes allowed with `swiglu` only: `swiglu_alpha`
    (default 1), `swiglu_beta` (default 0) and `swiglu_limit` (positive;
    absent means no clamp). The defaults are the plain SwiGLU
    `silu(g) * l`. Gradients do not pass where the limit clips (a clipped
    `g` or `l` is constant).

    Example:

    ```mlir
    %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<8x64x128xf32>
        : tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
    %ys2 = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<8x64x128xf32>
        {swiglu_alpha = 1.702 : f32, swiglu_beta = 1.0 : f32,
         swiglu_limit = 7.0 : f32}
        : tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_I32Tensor:$offsets,
      MoE_FloatTensor:$fc1, MoE_FloatTensor:$fc2,
      Optional<MoE_FloatTensor>:$fc3, Optional<MoE_FloatTensor>:$fc1_bias,
      Optional<MoE_FloatTensor>:$fc2_bias, Optional<MoE_FloatTensor>:$fc3_bias,
      MoE_Activation:$activation,
      DefaultValuedAttr<F32Attr, "1.0">:$swiglu_alpha,
      DefaultValuedAttr<F32Attr, "0.0">:$swiglu_beta,
      OptionalAttr<ConfinedAttr<F32Attr, [MoE_FloatPositive]>>:$swiglu_limit);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $activation $input `,` $offsets `,` $fc1 `,` $fc2
    (`fc3` $fc3^ `:` type($fc3))?
    (`fc1_bias` $fc1_bias^ `:` type($fc1_bias))?
    (`fc2_bias` $fc2_bias^ `:` type($fc2_bias))?
    (`fc3_bias` $fc3_bias^ `:` type($fc3_bias))?
    attr-dict `:` type($input) `,` type($offsets) `,` type($fc1) `,` type($fc2)
  }];
}

def MoE_CombineOp : MoE_Op<"combine",
    [Pure, AllTypesMatch<["init", "result"]>,
     DeclareOpInterfaceMethods<DifferentiableOpInterface>]> {
  let summary = "weighted scatter-add of expert rows back to token order";
  let description = [{
    `result = init`, then `result[row_token[r]] += row_weight[r] * input[r]`
    for every row with `row_token[r] >= 0`. `input` is `[R, D]`, the row plan
    `[R]`, `init` and the result `[T, D]`. `init` is typically zeros, the
    shared-expert output or the residual stream, which saves an add.

    Example:

    ```mlir
    %y = moe.combine %ys, %rt, %rw into %acc
        : tensor<?x64xf32>, tensor<?xi32>, tensor<?xf32>, tensor<?x64xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_I32Tensor:$row_token,
      MoE_FloatTensor:$row_weight, MoE_FloatTensor:$init);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $row_token `,` $row_weight `into` $init attr-dict `:`
    type($input) `,` type($row_token) `,` type($row_weight) `,` type($init)
  }];
  let hasVerifier = 1;
}

def MoE_SharedExpertOp : MoE_Op<"shared_expert",
    [Pure, InferTypeWithDefaults, AttrSizedOperandSegments,
     DeclareOpInterfaceMethods<DifferentiableOpInterface>]> {
  let summary = "dense expert applied to every token, optionally gated";
  let description = [{
    The FFN of `moe.expert_ffn` (without SwiGLU parameters) with a single
    expert applied to all tokens `input` (`[T, D]`): `fc1`, `fc3` are
    `[D, F]` and `fc2` is `[F, D_out]`.
    Several shared experts (DeepSeek) are one shared expert whose `F` is
    their sum. With `gate` (`[D, 1]`) the output is scaled per token by
    `sigmoid(x @ gate)` (Qwen-MoE).

    Example:

    ```mlir
    %s = moe.shared_expert swiglu %x, %s1, %s2 fc3 %s3 : tensor<64x256xf32>
        gate %g : tensor<64x1xf32>
        : tensor<?x64xf32>, tensor<64x256xf32>, tensor<256x64xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_FloatTensor:$fc1,
      MoE_FloatTensor:$fc2, Optional<MoE_FloatTensor>:$fc3,
      Optional<MoE_FloatTensor>:$gate, MoE_Activation:$activation);
  let results = (outs MoE_FloatTensor:$result);
  let assemblyFormat = [{
    $activation $input `,` $fc1 `,` $fc2
    (`fc3` $fc3^ `:` type($fc3))?
    (`gate` $gate^ `:` type($gate))?
    attr-dict `:` type($input) `,` type($fc1) `,` type($fc2)
  }];
}

//===----------------------------------------------------------------------===//
// Router losses and statistics
//===----------------------------------------------------------------------===//

def MoE_LoadBalancingLossOp : MoE_Op<"load_balancing_loss",
    [Pure, InferTypeOpAdaptor,
     DeclareOpInterfaceMethods<DifferentiableOpInterface>]> {
  let summary = "auxiliary load-balancing loss (Switch / GShard)";
  let description = [{
    `E * sum_e f_e * P_e` where `f_e` is the fraction of the `T * k`
    assignments in `indices` (`[T, k]`, before any capacity limit) that go
    to expert `e` and `P_e` is the mean over tokens of `probs[:, e]`
    (`probs` is `[T, E]`). With softmax probabilities it equals 1 for
    perfectly uniform routing and grows as routing collapses onto few
    experts; sigmoid probabilities are used as they are. Its gradient flows
    through `probs` only. The result is a 0-d `f32` tensor, 0 when `T = 0`.

    Example:

    ```mlir
    %aux = moe.load_balancing_loss %p, %idx : tensor<?x8xf32>, tensor<?x2xi32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$probs, MoE_I32Tensor:$indices);
  let results = (outs MoE_Scalar:$loss);
  let assemblyFormat = [{
    $probs `,` $indices attr-dict `:` type($probs) `,` type($indices)
  }];
}

def MoE_ZLossOp : MoE_Op<"z_loss",
    [Pure, InferTypeOpAdaptor,
     DeclareOpInterfaceMethods<DifferentiableOpInterface>]> {
  let summary = "router z-loss (ST-MoE)";
  let description = [{
    `mean_t (logsumexp_e logits[t, e])^2` over the router logits
    (`[T, E]`); it keeps logits small so that the router's softmax stays
    numerically stable. The result is a 0-d `f32` tensor, 0 when `T = 0`.

    Example:

    ```mlir
    %z = moe.z_loss %logits : tensor<?x8xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$logits);
  let results = (outs MoE_Scalar:$loss);
  let assemblyFormat = "$logits attr-dict `:` type($logits)";
}

def MoE_RoutingStatsOp : MoE_Op<"routing_stats", [Pure, InferTypeOpAdaptor]> {
  let summary = "tokens per expert and dropped assignments";
  let description = [{
    Metrics for watching expert collapse. `offsets` (`[E + 1]`) is a row
    plan from `moe.dispatch` or `moe.expert_choice`; with token-choice
    routing, `indices` (`[T, k]`) are the routing decisions that produced it.

    - `tokens_per_expert` (`[E]`, i64): assignments each expert was asked to
      take (from `indices`, before capacity), or its rows when `indices` is
      absent.
    - `dropped` (0-d, i64): assignments that capacity removed, that is the
      number of entries of `indices` minus `offsets[E]`; 0 without
      `indices`.

    Example:

    ```mlir
    %load, %dropped = moe.routing_stats %off indices %idx : tensor<?x2xi32>
        : tensor<9xi32>
    ```
  }];
  let arguments = (ins MoE_I32Tensor:$offsets,
      Optional<MoE_I32Tensor>:$indices);
  let results = (outs RankedTensorOf<[I64]>:$tokens_per_expert,
      MoE_Counter:$dropped);
  let assemblyFormat = [{
    $offsets (`indices` $indices^ `:` type($indices))? attr-dict `:`
    type($offsets)
  }];
}

//===----------------------------------------------------------------------===//
// The coarse layer
//===----------------------------------------------------------------------===//

def MoE_LayerOp : MoE_Op<"layer",
    [Pure, InferTypeWithDefaults, AttrSizedOperandSegments]> {
  let summary = "a whole MoE FFN layer, as frontends emit it";
  let description = [{
    One Mixture-of-Experts feed-forward layer over tokens `input` (`[T, D]`).
    The router is `router_weight` (`[D, E]`) with optional `router_bias`
    (`[E]`, added to the logits); `selection_bias` (`[E]`) is DeepSeek-V3's
    selection-only bias. Experts are `fc1`, `fc2` and optional `fc3` and
    biases, with the activation and SwiGLU parameters (`swiglu_alpha`,
    `swiglu_beta`, `swiglu_limit`) exactly as in `moe.expert_ffn`. Optional
    `shared_fc1`, `shared_fc2`, `shared_fc3` and `shared_gate` describe a
    shared expert as in `moe.shared_expert` (same activation; it has no
    SwiGLU parameters, so a layer with a shared expert takes none). `seed`
    enables router jitter when `jitter_eps > 0`.

    Attributes select the routing (`token_choice` with `k`, `score`,
    `normalize`, `num_groups`, `topk_groups`, `scaling_factor`, and an
    optional `capacity_factor` with `batch_prioritized`; or `expert_choice`
    with a required `capacity_factor`) and the expert `activation`. An
    optional `eval_capacity_factor` is the capacity factor of evaluation
    (see `moe.dispatch` and `moe-specialize-routing`).

    Results: the layer output (`[T, D_out]`), the load-balancing loss and
    the router z-loss (0-d f32, both computed from the router logits after
    `router_bias` and jitter; the load-balancing loss is 0 for expert choice,
    which is balanced by construction), tokens per expert (`[E]`, i64; `C`
    each for expert choice) and dropped assignments (0-d i64; 0 for expert
    choice). `moe-decompose-layer` rewrites the op into
    the fine-grained ops of this dialect.

    Example (Mixtral: top-2 renormalised, SwiGLU, dropless):

    ```mlir
    %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x64xf32>
        router %wg : tensor<64x8xf32>
        experts swiglu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
        fc3 %w3 : tensor<8x64x128xf32>
        {k = 2 : i64, normalize}
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_FloatTensor:$router_weight,
      Optional<MoE_FloatTensor>:$router_bias,
      Optional<MoE_FloatTensor>:$selection_bias,
      MoE_FloatTensor:$fc1, MoE_FloatTensor:$fc2,
      Optional<MoE_FloatTensor>:$fc3, Optional<MoE_FloatTensor>:$fc1_bias,
      Optional<MoE_FloatTensor>:$fc2_bias, Optional<MoE_FloatTensor>:$fc3_bias,
      Optional<MoE_FloatTensor>:$shared_fc1,
      Optional<MoE_FloatTensor>:$shared_fc2,
      Optional<MoE_FloatTensor>:$shared_fc3,
      Optional<MoE_FloatTensor>:$shared_gate, Optional<I64>:$seed,
      MoE_Routing:$routing, MoE_Activation:$activation,
      DefaultValuedAttr<MoE_ScoreFunction,
                        "::moec::moe::ScoreFunction::softmax">:$score,
      DefaultValuedAttr<I64Attr, "1">:$k, UnitAttr:$normalize,
      DefaultValuedAttr<I64Attr, "1">:$num_groups,
      DefaultValuedAttr<I64Attr, "1">:$topk_groups,
      DefaultValuedAttr<F32Attr, "1.0">:$scaling_factor,
      OptionalAttr<ConfinedAttr<F64Attr, [MoE_FloatPositive]>>:$capacity_factor,
      UnitAttr:$batch_prioritized,
      DefaultValuedAttr<F32Attr, "0.0">:$jitter_eps,
      OptionalAttr<ConfinedAttr<F64Attr, [MoE_FloatPositive]>>:$eval_capacity_factor,
      DefaultValuedAttr<F32Attr, "1.0">:$swiglu_alpha,
      DefaultValuedAttr<F32Attr, "0.0">:$swiglu_beta,
      OptionalAttr<ConfinedAttr<F32Attr, [MoE_FloatPositive]>>:$swiglu_limit);
  let results = (outs MoE_FloatTensor:$output, MoE_Scalar:$aux_loss,
      MoE_Scalar:$z_loss, RankedTensorOf<[I64]>:$tokens_per_expert,
      MoE_Counter:$dropped);
  let assemblyFormat = [{
    $routing $input `:` type($input)
    `router` $router_weight `:` type($router_weight)
    (`score` $score^)?
    (`router_bias` $router_bias^ `:` type($router_bias))?
    (`selection_bias` $selection_bias^ `:` type($selection_bias))?
    `experts` $activation $fc1 `:` type($fc1) `,` $fc2 `:` type($fc2)
    (`fc3` $fc3^ `:` type($fc3))?
    (`fc1_bias` $fc1_bias^ `:` type($fc1_bias))?
    (`fc2_bias` $fc2_bias^ `:` type($fc2_bias))?
    (`fc3_bias` $fc3_bias^ `:` type($fc3_bias))?
    (`shared_fc1` $shared_fc1^ `:` type($shared_fc1))?
    (`shared_fc2` $shared_fc2^ `:` type($shared_fc2))?
    (`shared_fc3` $shared_fc3^ `:` type($shared_fc3))?
    (`shared_gate` $shared_gate^ `:` type($shared_gate))?
    (`seed` $seed^)?
    attr-dict
  }];
  let hasCanonicalizer = 1;
}

//===----------------------------------------------------------------------===//
// Gradients
//
// The backward ops that the vector-Jacobian products (MoEVJP.cpp) emit where
// a fused kernel beats a composition of forward ops. Each takes the gradient
// of a forward op's result and the forward values it needs, and returns
// gradients of the forward operands in their types. A result without uses is
// never computed (the lowering skips it), so frozen parameters cost nothing.
//===----------------------------------------------------------------------===//

def MoE_GateGradOp : MoE_Op<"gate_grad", [Pure, InferTypeWithDefaults]> {
  let summary = "gradients of moe.gate";
  let description = [{
    For `logits = (x * u) @ weight + bias` (`moe.gate`) and the gradient
    `logits_grad` (`[T, E]`) of the logits: `input_grad = (logits_grad @
    weight^T) * u` (`[T, D]`), `weight_grad = (x * u)^T @ logits_grad`
    (`[D, E]`) and `bias_grad` (`[E]`), the column sums of `logits_grad`.
    With `jitter_eps > 0`, `u` is redrawn from `seed` by the counter-based
    generator of `moe.gate`, so it equals the forward pass's `u` exactly.

    Example:

    ```mlir
    %dx, %dw, %db = moe.gate_grad %dlogits, %x, %w seed %s
        {jitter_eps = 0.01 : f32}
        : tensor<?x8xf32>, tensor<?x64xf32>, tensor<64x8xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$logits_grad, MoE_FloatTensor:$input,
      MoE_FloatTensor:$weight, Optional<I64>:$seed,
      DefaultValuedAttr<F32Attr, "0.0">:$jitter_eps);
  let results = (outs MoE_FloatTensor:$input_grad,
      MoE_FloatTensor:$weight_grad, MoE_FloatTensor:$bias_grad);
  let assemblyFormat = [{
    $logits_grad `,` $input `,` $weight (`seed` $seed^)? attr-dict `:`
    type($logits_grad) `,` type($input) `,` type($weight)
  }];
  let hasVerifier = 1;
}

def MoE_TokenChoiceGradOp : MoE_Op<"token_choice_grad",
    [Pure, InferTypeWithDefaults, AttrSizedOperandSegments]> {
  let summary = "gradient of moe.token_choice with respect to its logits";
  let description = [{
    Given the forward results `probs` (`[T, E]`) and `indices` (`[T, k]`) of
    a `moe.token_choice` with the same `score`, `normalize` and
    `scaling_factor`, and the gradients of its `weights` (`weights_grad`,
    `[T, k]`) and of its `probs` (`probs_grad`, `[T, E]`), at least one of
    them: the gradient of the logits (`[T, E]`). `score` is softmax or
    sigmoid: sparse_mixer routing has no gradient. The selection (bias, groups,
    top-k) is piecewise constant and passes no gradient:

    ```
    dp = probs_grad
    dp[t, indices[t, j]] += s * weights_grad[t, j]                 without normalize
    dp[t, indices[t, j]] += s * (weights_grad[t, j] - A_t) / S_t   with normalize
        S_t = sum_j probs[t, indices[t, j]],
        A_t = sum_j weights_grad[t, j] * probs[t, indices[t, j]] / S_t
    logits_grad = probs * (dp - sum_e dp * probs)                  softmax
    logits_grad = dp * probs * (1 - probs)                         sigmoid
    ```

    with `s = scaling_factor`. The `k` experts of a token must be distinct.

    Example:

    ```mlir
    %dl = moe.token_choice_grad softmax %p, %idx weights_grad %dw
        : tensor<?x8xf32> probs_grad %dp : tensor<?x8xf32> {normalize}
        : tensor<?x8xf32>, tensor<?x2xi32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$probs, MoE_I32Tensor:$indices,
      Optional<MoE_FloatTensor>:$weights_grad,
      Optional<MoE_FloatTensor>:$probs_grad, MoE_ScoreFunction:$score,
      UnitAttr:$normalize,
      DefaultValuedAttr<F32Attr, "1.0">:$scaling_factor);
  let results = (outs MoE_FloatTensor:$logits_grad);
  let assemblyFormat = [{
    $score $probs `,` $indices
    (`weights_grad` $weights_grad^ `:` type($weights_grad))?
    (`probs_grad` $probs_grad^ `:` type($probs_grad))?
    attr-dict `:` type($probs) `,` type($indices)
  }];
}

def MoE_ExpertChoiceGradOp : MoE_Op<"expert_choice_grad",
    [Pure, InferTypeWithDefaults, AttrSizedOperandSegments]> {
  let summary = "gradient of moe.expert_choice with respect to its logits";
  let description = [{
    Given the forward results `probs` (`[T, E]`), `row_token` (`[R]`) and
    `offsets` (`[E + 1]`) of a `moe.expert_choice`, and the gradients of its
    `row_weight` (`row_weight_grad`, `[R]`) and of its `probs`
    (`probs_grad`, `[T, E]`), at least one of them: the gradient of the
    logits (`[T, E]`). Row `r` of expert `e` (`offsets[e] <= r <
    offsets[e+1]`) carries `probs[row_token[r], e]`, so

    ```
    dp = probs_grad;  dp[row_token[r], e] += row_weight_grad[r]
    logits_grad = probs * (dp - sum_e dp * probs)
    ```

    Which tokens the experts chose is piecewise constant and passes no
    gradient; rows with token -1 are skipped.

    Example:

    ```mlir
    %dl = moe.expert_choice_grad %p, %rt, %off row_weight_grad %drw
        : tensor<128xf32> : tensor<64x8xf32>, tensor<128xi32>, tensor<9xi32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$probs, MoE_I32Tensor:$row_token,
      MoE_I32Tensor:$offsets, Optional<MoE_FloatTensor>:$row_weight_grad,
      Optional<MoE_FloatTensor>:$probs_grad);
  let results = (outs MoE_FloatTensor:$logits_grad);
  let assemblyFormat = [{
    $probs `,` $row_token `,` $offsets
    (`row_weight_grad` $row_weight_grad^ `:` type($row_weight_grad))?
    (`probs_grad` $probs_grad^ `:` type($probs_grad))?
    attr-dict `:` type($probs) `,` type($row_token) `,` type($offsets)
  }];
}

def MoE_DispatchGradOp : MoE_Op<"dispatch_grad", [Pure, InferTypeOpAdaptor]> {
  let summary = "gradient of moe.dispatch with respect to its weights";
  let description = [{
    Routes the gradient of a row plan's `row_weight` (`row_weight_grad`,
    `[R]`) back to the routing weights (`[T, k]`): given the `indices`
    (`[T, k]`) that `moe.dispatch` planned and its results `row_token` and
    `offsets`, row `r` of expert `e` holding token `t` came from the choice
    `j` with `indices[t, j] == e` (unique, as the `k` experts of a token are
    distinct), and `weights_grad[t, j] = row_weight_grad[r]`. Assignments
    that capacity dropped have no row and get 0.

    Example:

    ```mlir
    %dw = moe.dispatch_grad %drw, %idx, %rt, %off
        : tensor<?xf32>, tensor<?x2xi32>, tensor<?xi32>, tensor<9xi32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$row_weight_grad,
      MoE_I32Tensor:$indices, MoE_I32Tensor:$row_token,
      MoE_I32Tensor:$offsets);
  let results = (outs MoE_FloatTensor:$weights_grad);
  let assemblyFormat = [{
    $row_weight_grad `,` $indices `,` $row_token `,` $offsets attr-dict `:`
    type($row_weight_grad) `,` type($indices) `,` type($row_token) `,`
    type($offsets)
  }];
}

def MoE_ExpertFFNGradOp : MoE_Op<"expert_ffn_grad",
    [Pure, InferTypeWithDefaults, AttrSizedOperandSegments]> {
  let summary = "gradients of moe.expert_ffn: a grouped backward over row segments";
  let description = [{
    Takes the gradient `result_grad` (`[R, D_out]`) of a `moe.expert_ffn`'s
    result followed by that op's operands and activation, and returns the
    gradients of its floating point operands: `input_grad` (`[R, D]`, zero
    past `offsets[E]`), `fc1_grad`, `fc2_grad`, then `optional_grads`: one
    gradient for each of `fc3`, `fc1_bias`, `fc2_bias`, `fc3_bias` that is
    present, in that order. The activation and SwiGLU parameters are those
    of the forward op. For each expert `e` and its row segment, with
    `a1 = x @ fc1[e] + fc1_bias[e]`, `a3 = x @ fc3[e] + fc3_bias[e]` and
    `h` the activation's output:

    ```
    dh = dy @ fc2[e]^T
    da1 = dh * a3 * act'(a1)   (gated),   dh * act'(a1)   (otherwise)
    da3 = dh * act(a1)
    swiglu with parameters (G, L as in moe.expert_ffn, s = sigmoid(alpha G)):
    da1 = dh * (L + beta) * s * (1 + alpha G (1 - s))  (0 where a1 > limit)
    da3 = dh * G * s                                   (0 where |a3| > limit)
    dx = da1 @ fc1[e]^T + da3 @ fc3[e]^T
    fc1_grad[e] = x^T @ da1,  fc3_grad[e] = x^T @ da3,  fc2_grad[e] = h^T @ dy
    bias gradients: column sums of da1, dy, da3 over the segment
    ```

    The forward activations are recomputed per segment; results that have
    no uses (the weight gradients of frozen experts) are not computed.

    Example:

    ```mlir
    %dx, %d1, %d2, %d3 = moe.expert_ffn_grad swiglu %dys, %xs, %off, %w1, %w2
        fc3 %w3 : tensor<8x64x128xf32>
        : tensor<?x64xf32>, tensor<?x64xf32>, tensor<9xi32>,
          tensor<8x64x128xf32>, tensor<8x128x64xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$result_grad, MoE_FloatTensor:$input,
      MoE_I32Tensor:$offsets, MoE_FloatTensor:$fc1, MoE_FloatTensor:$fc2,
      Optional<MoE_FloatTensor>:$fc3, Optional<MoE_FloatTensor>:$fc1_bias,
      Optional<MoE_FloatTensor>:$fc2_bias, Optional<MoE_FloatTensor>:$fc3_bias,
      MoE_Activation:$activation,
      DefaultValuedAttr<F32Attr, "1.0">:$swiglu_alpha,
      DefaultValuedAttr<F32Attr, "0.0">:$swiglu_beta,
      OptionalAttr<ConfinedAttr<F32Attr, [MoE_FloatPositive]>>:$swiglu_limit);
  let results = (outs MoE_FloatTensor:$input_grad, MoE_FloatTensor:$fc1_grad,
      MoE_FloatTensor:$fc2_grad, Variadic<MoE_FloatTensor>:$optional_grads);
  let assemblyFormat = [{
    $activation $result_grad `,` $input `,` $offsets `,` $fc1 `,` $fc2
    (`fc3` $fc3^ `:` type($fc3))?
    (`fc1_bias` $fc1_bias^ `:` type($fc1_bias))?
    (`fc2_bias` $fc2_bias^ `:` type($fc2_bias))?
    (`fc3_bias` $fc3_bias^ `:` type($fc3_bias))?
    attr-dict `:` type($result_grad) `,` type($input) `,` type($offsets) `,`
    type($fc1) `,` type($fc2)
  }];
  let extraClassDeclaration = [{
    /// The gradients among `optional_grads`; null when the operand is absent.
    ::mlir::Value getFc3Grad();
    ::mlir::Value getFc1BiasGrad();
    ::mlir::Value getFc2BiasGrad();
    ::mlir::Value getFc3BiasGrad();
  }];
}

def MoE_CombineGradOp : MoE_Op<"combine_grad", [Pure, InferTypeOpAdaptor]> {
  let summary = "gradients of moe.combine with respect to its rows and weights";
  let description = [{
    For `moe.combine %input, %row_token, %row_weight into %init` and the
    gradient `result_grad` (`[T, D]`) of its result: `input_grad[r] =
    row_weight[r] * result_grad[row_token[r]]` (`[R, D]`) and
    `row_weight_grad[r] = sum_d input[r, d] * result_grad[row_token[r], d]`
    (`[R]`), both 0 for rows whose token is -1. (The gradient of `init` is
    `result_grad` itself.)

    Example:

    ```mlir
    %dys, %drw = moe.combine_grad %dy, %ys, %rt, %rw
        : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?xi32>, tensor<?xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$result_grad, MoE_FloatTensor:$input,
      MoE_I32Tensor:$row_token, MoE_FloatTensor:$row_weight);
  let results = (outs MoE_FloatTensor:$input_grad,
      MoE_FloatTensor:$row_weight_grad);
  let assemblyFormat = [{
    $result_grad `,` $input `,` $row_token `,` $row_weight attr-dict `:`
    type($result_grad) `,` type($input) `,` type($row_token) `,`
    type($row_weight)
  }];
}

def MoE_SharedExpertGradOp : MoE_Op<"shared_expert_grad",
    [Pure, InferTypeWithDefaults, AttrSizedOperandSegments]> {
  let summary = "gradients of moe.shared_expert";
  let description = [{
    Takes the gradient `result_grad` (`[T, D_out]`) of a `moe.shared_expert`'s
    result followed by that op's operands and activation, and returns the
    gradients `input_grad`, `fc1_grad`, `fc2_grad`, then `optional_grads`:
    the gradients of `fc3` and of `gate`, for those present, in that order.
    The FFN part is `moe.expert_ffn_grad` with one expert; with a gate,
    `y = s * f(x)` for `s = sigmoid(x @ gate)`, so `f` receives `dy * s` and
    `x @ gate` receives `s * (1 - s) * sum_d dy * f(x)`. Results without
    uses are not computed.

    Example:

    ```mlir
    %dx, %d1, %d2, %dg = moe.shared_expert_grad gelu %dy, %x, %s1, %s2
        gate %g : tensor<64x1xf32>
        : tensor<?x64xf32>, tensor<?x64xf32>, tensor<64x256xf32>,
          tensor<256x64xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$result_grad, MoE_FloatTensor:$input,
      MoE_FloatTensor:$fc1, MoE_FloatTensor:$fc2,
      Optional<MoE_FloatTensor>:$fc3, Optional<MoE_FloatTensor>:$gate,
      MoE_Activation:$activation);
  let results = (outs MoE_FloatTensor:$input_grad, MoE_FloatTensor:$fc1_grad,
      MoE_FloatTensor:$fc2_grad, Variadic<MoE_FloatTensor>:$optional_grads);
  let assemblyFormat = [{
    $activation $result_grad `,` $input `,` $fc1 `,` $fc2
    (`fc3` $fc3^ `:` type($fc3))?
    (`gate` $gate^ `:` type($gate))?
    attr-dict `:` type($result_grad) `,` type($input) `,` type($fc1) `,`
    type($fc2)
  }];
  let extraClassDeclaration = [{
    /// The gradients among `optional_grads`; null when the operand is absent.
    ::mlir::Value getFc3Grad();
    ::mlir::Value getGateGrad();
  }];
}

def MoE_LoadBalancingLossGradOp : MoE_Op<"load_balancing_loss_grad",
    [Pure, InferTypeOpAdaptor]> {
  let summary = "gradient of moe.load_balancing_loss with respect to probs";
  let description = [{
    The loss `E * sum_e f_e * P_e` is linear in `probs` (`[T, E]`) with the
    assignment fractions `f_e` of `indices` (`[T, k]`) held constant, so
    `probs_grad[t, e] = loss_grad * E * f_e / T` for the 0-d `f32`
    `loss_grad`; 0 when `T * k = 0`. The result has the type of `probs`.

    Example:

    ```mlir
    %dp = moe.load_balancing_loss_grad %dloss, %p, %idx
        : tensor<f32>, tensor<?x8xf32>, tensor<?x2xi32>
    ```
  }];
  let arguments = (ins MoE_Scalar:$loss_grad, MoE_FloatTensor:$probs,
      MoE_I32Tensor:$indices);
  let results = (outs MoE_FloatTensor:$probs_grad);
  let assemblyFormat = [{
    $loss_grad `,` $probs `,` $indices attr-dict `:` type($loss_grad) `,`
    type($probs) `,` type($indices)
  }];
}

def MoE_ZLossGradOp : MoE_Op<"z_loss_grad", [Pure, InferTypeOpAdaptor]> {
  let summary = "gradient of moe.z_loss with respect to the logits";
  let description = [{
    For `z = mean_t lse_t^2` with `lse_t = logsumexp_e logits[t, e]`:
    `logits_grad[t, e] = loss_grad * 2 * lse_t * softmax(logits)[t, e] / T`
    for the 0-d `f32` `loss_grad`. The result has the type of `logits`.

    Example:

    ```mlir
    %dl = moe.z_loss_grad %dz, %logits : tensor<f32>, tensor<?x8xf32>
    ```
  }];
  let arguments = (ins MoE_Scalar:$loss_grad, MoE_FloatTensor:$logits);
  let results = (outs MoE_FloatTensor:$logits_grad);
  let assemblyFormat = [{
    $loss_grad `,` $logits attr-dict `:` type($loss_grad) `,` type($logits)
  }];
}

#endif // MOEC_MOE_OPS
