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
    [Pure, InferTypeWithDefaults, AttrSizedOperandSegments]> {
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

def MoE_TokenChoiceOp : MoE_Op<"token_choice", [Pure, InferTypeWithDefaults]> {
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

    Results: `weights` (`[T, k]`, logits' type), `indices` (`[T, k]`, i32)
    and `probs` (`[T, E]`), which the load-balancing loss needs.

    Example:

    ```mlir
    %w, %idx, %p = moe.token_choice softmax %logits top 2 {normalize}
        : tensor<?x8xf32>
    %w3, %idx3, %p3 = moe.token_choice sigmoid %logits top 8 bias %b
        {normalize, num_groups = 8 : i64, topk_groups = 4 : i64,
         scaling_factor = 2.5 : f32} : tensor<?x64xf32>, tensor<64xf32>
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

def MoE_ExpertChoiceOp : MoE_Op<"expert_choice", [Pure, InferTypeWithDefaults]> {
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

    Example:

    ```mlir
    %rt, %rw, %off, %p = moe.expert_choice %logits {capacity_factor = 2.0 : f64}
        : tensor<64x8xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$logits,
      ConfinedAttr<F64Attr, [MoE_FloatPositive]>:$capacity_factor);
  let results = (outs MoE_I32Tensor:$row_token, MoE_FloatTensor:$row_weight,
      MoE_I32Tensor:$offsets, MoE_FloatTensor:$probs);
  let assemblyFormat = "$logits attr-dict `:` type($logits)";
}

//===----------------------------------------------------------------------===//
// Dispatch, permutation, experts, combine
//===----------------------------------------------------------------------===//

def MoE_DispatchOp : MoE_Op<"dispatch", [Pure, InferTypeWithDefaults]> {
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

    Example:

    ```mlir
    %rt, %rw, %off = moe.dispatch %idx, %w
        {num_experts = 8 : i64, capacity_factor = 1.25 : f64}
        : tensor<?x2xi32>, tensor<?x2xf32>
    ```
  }];
  let arguments = (ins MoE_I32Tensor:$indices, MoE_FloatTensor:$weights,
      ConfinedAttr<I64Attr, [IntPositive]>:$num_experts,
      OptionalAttr<ConfinedAttr<F64Attr, [MoE_FloatPositive]>>:$capacity_factor,
      UnitAttr:$batch_prioritized);
  let results = (outs MoE_I32Tensor:$row_token, MoE_FloatTensor:$row_weight,
      MoE_I32Tensor:$offsets);
  let assemblyFormat = [{
    $indices `,` $weights attr-dict `:` type($indices) `,` type($weights)
  }];
  let hasCanonicalizer = 1;
}

def MoE_PermuteOp : MoE_Op<"permute", [Pure, InferTypeOpAdaptor]> {
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
    [Pure, InferTypeWithDefaults, AttrSizedOperandSegments]> {
  let summary = "grouped expert feed-forward network over row segments";
  let description = [{
    For every expert `e` and every row `r` in `offsets[e] .. offsets[e+1]` of
    `input` (`[R, D]`):

    ```
    h = act(x @ fc1[e] + fc1_bias[e])                    relu, gelu, gelu_tanh, silu
    h = act(x @ fc1[e] + fc1_bias[e]) * (x @ fc3[e] + fc3_bias[e])   swiglu (act = silu), geglu (act = exact gelu)
    y = h @ fc2[e] + fc2_bias[e]
    ```

    with `fc1`, `fc3` of shape `[E, D, F]` and `fc2` of shape `[E, F, D_out]`;
    biases are `[E, F]` (fc1, fc3) and `[E, D_out]` (fc2) and all are
    optional. The gated activations need `fc3`; the others must not have it.
    Rows past `offsets[E]` are zero. This is the grouped GEMM that codegen
    tiles per expert segment.

    Example:

    ```mlir
    %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<8x64x128xf32>
        : tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor:$input, MoE_I32Tensor:$offsets,
      MoE_FloatTensor:$fc1, MoE_FloatTensor:$fc2,
      Optional<MoE_FloatTensor>:$fc3, Optional<MoE_FloatTensor>:$fc1_bias,
      Optional<MoE_FloatTensor>:$fc2_bias, Optional<MoE_FloatTensor>:$fc3_bias,
      MoE_Activation:$activation);
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
    [Pure, AllTypesMatch<["init", "result"]>]> {
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
    [Pure, InferTypeWithDefaults, AttrSizedOperandSegments]> {
  let summary = "dense expert applied to every token, optionally gated";
  let description = [{
    The FFN of `moe.expert_ffn` with a single expert applied to all tokens
    `input` (`[T, D]`): `fc1`, `fc3` are `[D, F]` and `fc2` is `[F, D_out]`.
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
    [Pure, InferTypeOpAdaptor]> {
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

def MoE_ZLossOp : MoE_Op<"z_loss", [Pure, InferTypeOpAdaptor]> {
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
    biases, exactly as in `moe.expert_ffn`. Optional `shared_fc1`,
    `shared_fc2`, `shared_fc3` and `shared_gate` describe a shared expert
    as in `moe.shared_expert` (same activation). `seed` enables router
    jitter when `jitter_eps > 0`.

    Attributes select the routing (`token_choice` with `k`, `score`,
    `normalize`, `num_groups`, `topk_groups`, `scaling_factor`, and an
    optional `capacity_factor` with `batch_prioritized`; or `expert_choice`
    with a required `capacity_factor`) and the expert `activation`.

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
      DefaultValuedAttr<F32Attr, "0.0">:$jitter_eps);
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

#endif // MOEC_MOE_OPS
