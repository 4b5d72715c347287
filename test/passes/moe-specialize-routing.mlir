// RUN: moe-opt %s --split-input-file --moe-specialize-routing=mode=eval | FileCheck %s --check-prefix=EVAL
// RUN: moe-opt %s --split-input-file --moe-specialize-routing=mode=train | FileCheck %s --check-prefix=TRAIN
// RUN: moe-opt %s --split-input-file --moe-specialize-routing | FileCheck %s --check-prefix=TRAIN
// RUN: not moe-opt %s --moe-specialize-routing=mode=test 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: moe-specialize-routing: 'mode' must be 'train' or 'eval', got 'test'

// Eval drops the jitter and its seed; train keeps them.
// EVAL-LABEL: func.func @gate
// EVAL: moe.gate %arg0, %arg1 : tensor<?x16xf32>, tensor<16x4xf32>
// EVAL-NOT: jitter_eps
// TRAIN-LABEL: func.func @gate
// TRAIN: moe.gate %arg0, %arg1 seed %arg2 {jitter_eps = 0.00999999977 : f32} : tensor<?x16xf32>, tensor<16x4xf32>
func.func @gate(%x: tensor<?x16xf32>, %w: tensor<16x4xf32>, %seed: i64)
    -> tensor<?x4xf32> {
  %l = moe.gate %x, %w seed %seed {jitter_eps = 0.01 : f32}
      : tensor<?x16xf32>, tensor<16x4xf32>
  return %l : tensor<?x4xf32>
}

// -----

// A static row plan: the eval capacity changes R = min(T k, E C) from
// 4 * ceil(1.0 * 16 / 4) = 16 to min(16, 4 * ceil(0.5 * 16 / 4)) = 8, and
// the types of the rows that use the plan follow.
// EVAL-LABEL: func.func @dispatch
// EVAL: %[[RT:.*]], %[[RW:.*]], %[[OFF:.*]] = moe.dispatch %arg0, %arg1 {capacity_factor = 5.000000e-01 : f64, num_experts = 4 : i64} : tensor<16x1xi32>, tensor<16x1xf32>
// EVAL: %[[XS:.*]] = moe.permute %arg2, %[[RT]] : tensor<16x8xf32>, tensor<8xi32>
// EVAL: %[[YS:.*]] = moe.expert_ffn relu %[[XS]], %[[OFF]], %arg3, %arg4 : tensor<8x8xf32>, tensor<5xi32>, tensor<4x8x6xf32>, tensor<4x6x8xf32>
// EVAL: moe.combine %[[YS]], %[[RT]], %[[RW]] into %arg2 : tensor<8x8xf32>, tensor<8xi32>, tensor<8xf32>, tensor<16x8xf32>
// TRAIN-LABEL: func.func @dispatch
// TRAIN: moe.dispatch %arg0, %arg1 {capacity_factor = 1.000000e+00 : f64, num_experts = 4 : i64} : tensor<16x1xi32>, tensor<16x1xf32>
// TRAIN: moe.permute %arg2, %{{.*}} : tensor<16x8xf32>, tensor<16xi32>
func.func @dispatch(%idx: tensor<16x1xi32>, %wts: tensor<16x1xf32>,
                    %x: tensor<16x8xf32>, %w1: tensor<4x8x6xf32>,
                    %w2: tensor<4x6x8xf32>) -> tensor<16x8xf32> {
  %rt, %rw, %off = moe.dispatch %idx, %wts
      {num_experts = 4 : i64, capacity_factor = 1.0 : f64,
       eval_capacity_factor = 0.5 : f64} : tensor<16x1xi32>, tensor<16x1xf32>
  %xs = moe.permute %x, %rt : tensor<16x8xf32>, tensor<16xi32>
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2
      : tensor<16x8xf32>, tensor<5xi32>, tensor<4x8x6xf32>, tensor<4x6x8xf32>
  %y = moe.combine %ys, %rt, %rw into %x
      : tensor<16x8xf32>, tensor<16xi32>, tensor<16xf32>, tensor<16x8xf32>
  return %y : tensor<16x8xf32>
}

// -----

// Dropless training with a capacity in evaluation.
// EVAL-LABEL: func.func @dispatch_dropless_train
// EVAL: moe.dispatch %arg0, %arg1 {batch_prioritized, capacity_factor = 1.250000e+00 : f64, num_experts = 8 : i64}
// TRAIN-LABEL: func.func @dispatch_dropless_train
// TRAIN: moe.dispatch %arg0, %arg1 {batch_prioritized, num_experts = 8 : i64}
func.func @dispatch_dropless_train(%idx: tensor<?x2xi32>, %w: tensor<?x2xf32>)
    -> (tensor<?xi32>, tensor<?xf32>, tensor<9xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w
      {num_experts = 8 : i64, batch_prioritized,
       eval_capacity_factor = 1.25 : f64} : tensor<?x2xi32>, tensor<?x2xf32>
  return %rt, %rw, %off : tensor<?xi32>, tensor<?xf32>, tensor<9xi32>
}

// -----

// EVAL-LABEL: func.func @expert_choice
// EVAL: moe.expert_choice %arg0 {capacity_factor = 1.000000e+00 : f64} : tensor<?x8xf32>
// TRAIN-LABEL: func.func @expert_choice
// TRAIN: moe.expert_choice %arg0 {capacity_factor = 2.000000e+00 : f64} : tensor<?x8xf32>
func.func @expert_choice(%logits: tensor<?x8xf32>)
    -> (tensor<?xi32>, tensor<?xf32>, tensor<9xi32>, tensor<?x8xf32>) {
  %rt, %rw, %off, %p = moe.expert_choice %logits
      {capacity_factor = 2.0 : f64, eval_capacity_factor = 1.0 : f64}
      : tensor<?x8xf32>
  return %rt, %rw, %off, %p
      : tensor<?xi32>, tensor<?xf32>, tensor<9xi32>, tensor<?x8xf32>
}

// -----

// EVAL-LABEL: func.func @layer
// EVAL: moe.layer token_choice %arg0 : tensor<?x16xf32> router %arg1 : tensor<16x4xf32> experts relu %arg2 : tensor<4x16x32xf32>, %arg3 : tensor<4x32x16xf32> {capacity_factor = 2.000000e+00 : f64}
// TRAIN-LABEL: func.func @layer
// TRAIN: moe.layer token_choice %arg0 : tensor<?x16xf32> router %arg1 : tensor<16x4xf32> experts relu %arg2 : tensor<4x16x32xf32>, %arg3 : tensor<4x32x16xf32> seed %arg4 {capacity_factor = 1.250000e+00 : f64, jitter_eps = 0.00999999977 : f32}
func.func @layer(%x: tensor<?x16xf32>, %wg: tensor<16x4xf32>,
                 %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>,
                 %seed: i64) -> tensor<?x16xf32> {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x16xf32>
      router %wg : tensor<16x4xf32>
      experts relu %w1 : tensor<4x16x32xf32>, %w2 : tensor<4x32x16xf32>
      seed %seed
      {k = 1 : i64, capacity_factor = 1.25 : f64,
       eval_capacity_factor = 2.0 : f64, jitter_eps = 0.01 : f32}
  return %y : tensor<?x16xf32>
}

// -----

// A training step (moe.training, from moe-autodiff) is specialised for
// training under mode=eval: it keeps its jitter and training capacity.
// EVAL-LABEL: func.func @train_step
// EVAL: moe.gate %arg0, %arg1 seed %arg2 {jitter_eps = 0.00999999977 : f32}
// EVAL: moe.dispatch %{{.*}}, %{{.*}} {capacity_factor = 1.000000e+00 : f64, num_experts = 4 : i64}
func.func @train_step(%x: tensor<?x16xf32>, %w: tensor<16x4xf32>, %seed: i64,
                      %idx: tensor<?x1xi32>, %wts: tensor<?x1xf32>)
    -> (tensor<?x4xf32>, tensor<?xi32>) attributes {moe.training} {
  %l = moe.gate %x, %w seed %seed {jitter_eps = 0.01 : f32}
      : tensor<?x16xf32>, tensor<16x4xf32>
  %rt, %rw, %off = moe.dispatch %idx, %wts
      {num_experts = 4 : i64, capacity_factor = 1.0 : f64,
       eval_capacity_factor = 2.0 : f64} : tensor<?x1xi32>, tensor<?x1xf32>
  return %l, %rt : tensor<?x4xf32>, tensor<?xi32>
}
