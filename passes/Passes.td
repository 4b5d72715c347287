//===- Passes.td - moec passes -----------------------------------*- tablegen -*-===//
//
// Every pass of the project is declared here with a summary, a description
// and an example; one .cpp per pass implements it and one lit test per pass
// (test/passes/<pass-name>.mlir) checks it.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_PASSES
#define MOEC_PASSES

include "mlir/Pass/PassBase.td"

def MoEDecomposeLayer : Pass<"moe-decompose-layer"> {
  let summary = "rewrite moe.layer into routing, dispatch, expert and combine ops";
  let description = [{
    Frontends emit one coarse `moe.layer` per MoE FFN. This pass rewrites
    each into the fine-grained ops that the later phases fuse and lower:
    `moe.gate`, then `moe.token_choice` + `moe.dispatch` (or
    `moe.expert_choice`), `moe.permute`, `moe.expert_ffn`, an optional
    `moe.shared_expert` whose output seeds the accumulator, `moe.combine`,
    and the metrics `moe.load_balancing_loss`, `moe.z_loss` and
    `moe.routing_stats`. Results of the layer are replaced one for one, so
    unused metrics disappear with dead-code elimination.

    Example: the Mixtral layer

    ```mlir
    %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x64xf32>
        router %wg : tensor<64x8xf32>
        experts swiglu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
        fc3 %w3 : tensor<8x64x128xf32> {k = 2 : i64, normalize}
    ```

    becomes

    ```mlir
    %logits = moe.gate %x, %wg : tensor<?x64xf32>, tensor<64x8xf32>
    %w, %idx, %p = moe.token_choice softmax %logits top 2 {normalize}
        : tensor<?x8xf32>
    %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64}
        : tensor<?x2xi32>, tensor<?x2xf32>
    %xs = moe.permute %x, %rt : tensor<?x64xf32>, tensor<?xi32>
    %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : ...
    %zero = ... zeros of tensor<?x64xf32> ...
    %y = moe.combine %ys, %rt, %rw into %zero : ...
    %aux = moe.load_balancing_loss %p, %idx : ...
    %z = moe.z_loss %logits : tensor<?x8xf32>
    %load, %drop = moe.routing_stats %off indices %idx : ...
    ```
  }];
  let dependentDialects = [
    "::moec::moe::MoEDialect",
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

#endif // MOEC_PASSES
