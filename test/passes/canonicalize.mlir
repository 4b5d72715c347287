// RUN: moe-opt %s --canonicalize --split-input-file | FileCheck %s

// The project's canonicalisation patterns, run by the upstream canonicalizer.

// CHECK-LABEL: func.func @reshape_to_same_type_folds
// CHECK-NEXT: return %arg0
func.func @reshape_to_same_type_folds(%x: tensor<2x?x64xf32>) -> tensor<2x?x64xf32> {
  %y = nn.reshape %x : tensor<2x?x64xf32> -> tensor<2x?x64xf32>
  return %y : tensor<2x?x64xf32>
}

// -----

// CHECK-LABEL: func.func @reshapes_compose
// CHECK-NEXT: %[[R:.*]] = nn.reshape %arg0 : tensor<2x?x64xf32> -> tensor<2x?x4x16xf32>
// CHECK-NEXT: return %[[R]]
func.func @reshapes_compose(%x: tensor<2x?x64xf32>) -> tensor<2x?x4x16xf32> {
  %a = nn.reshape %x : tensor<2x?x64xf32> -> tensor<?x64xf32>
  %b = nn.reshape %a : tensor<?x64xf32> -> tensor<2x?x4x16xf32>
  return %b : tensor<2x?x4x16xf32>
}

// -----

// A reshape there and back is the identity.
// CHECK-LABEL: func.func @reshape_round_trip_folds
// CHECK-NEXT: return %arg0
func.func @reshape_round_trip_folds(%x: tensor<6x4xf32>) -> tensor<6x4xf32> {
  %a = nn.reshape %x : tensor<6x4xf32> -> tensor<24xf32>
  %b = nn.reshape %a : tensor<24xf32> -> tensor<6x4xf32>
  return %b : tensor<6x4xf32>
}

// -----

// CHECK-LABEL: func.func @identity_transpose_folds
// CHECK-NEXT: return %arg0
func.func @identity_transpose_folds(%x: tensor<2x3x4xf32>) -> tensor<2x3x4xf32> {
  %y = nn.transpose %x [0, 1, 2] : tensor<2x3x4xf32>
  return %y : tensor<2x3x4xf32>
}

// -----

// transpose(transpose(x, [0, 2, 1, 3]), [1, 0, 3, 2]) reads input dimensions
// [2, 0, 3, 1].
// CHECK-LABEL: func.func @transposes_compose
// CHECK-NEXT: %[[T:.*]] = nn.transpose %arg0 [2, 0, 3, 1] : tensor<2x3x4x5xf32>
// CHECK-NEXT: return %[[T]] : tensor<4x2x5x3xf32>
func.func @transposes_compose(%x: tensor<2x3x4x5xf32>) -> tensor<4x2x5x3xf32> {
  %a = nn.transpose %x [0, 2, 1, 3] : tensor<2x3x4x5xf32>
  %b = nn.transpose %a [1, 0, 3, 2] : tensor<2x4x3x5xf32>
  return %b : tensor<4x2x5x3xf32>
}

// -----

// CHECK-LABEL: func.func @inverse_transposes_fold
// CHECK-NEXT: return %arg0
func.func @inverse_transposes_fold(%x: tensor<2x3x4xf32>) -> tensor<2x3x4xf32> {
  %a = nn.transpose %x [1, 2, 0] : tensor<2x3x4xf32>
  %b = nn.transpose %a [2, 0, 1] : tensor<3x4x2xf32>
  return %b : tensor<2x3x4xf32>
}

// -----

// A seed without jitter is dropped; with jitter it stays.
// CHECK-LABEL: func.func @gate_seed
// CHECK: moe.gate %arg0, %arg1 : tensor<?x16xf32>, tensor<16x4xf32>
// CHECK: moe.gate %arg0, %arg1 seed %arg2 {jitter_eps = 0.00999999977 : f32}
func.func @gate_seed(%x: tensor<?x16xf32>, %w: tensor<16x4xf32>, %seed: i64)
    -> (tensor<?x4xf32>, tensor<?x4xf32>) {
  %a = moe.gate %x, %w seed %seed : tensor<?x16xf32>, tensor<16x4xf32>
  %b = moe.gate %x, %w seed %seed {jitter_eps = 0.01 : f32}
      : tensor<?x16xf32>, tensor<16x4xf32>
  return %a, %b : tensor<?x4xf32>, tensor<?x4xf32>
}

// -----

// With top-2 over 8 experts, capacity factor 4 gives C >= T: nothing can be
// dropped, so the dispatch becomes dropless (and drops the priority order).
// Capacity factor 3.5 can drop and stays.
// CHECK-LABEL: func.func @dispatch_capacity
// CHECK: moe.dispatch %arg0, %arg1 {num_experts = 8 : i64} : tensor<?x2xi32>, tensor<?x2xf32>
// CHECK: moe.dispatch %arg0, %arg1 {batch_prioritized, capacity_factor = 3.500000e+00 : f64, num_experts = 8 : i64}
func.func @dispatch_capacity(%idx: tensor<?x2xi32>, %w: tensor<?x2xf32>)
    -> (tensor<?xi32>, tensor<?xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w
      {num_experts = 8 : i64, capacity_factor = 4.0 : f64, batch_prioritized}
      : tensor<?x2xi32>, tensor<?x2xf32>
  %rt2, %rw2, %off2 = moe.dispatch %idx, %w
      {num_experts = 8 : i64, capacity_factor = 3.5 : f64, batch_prioritized}
      : tensor<?x2xi32>, tensor<?x2xf32>
  return %rt, %rt2 : tensor<?xi32>, tensor<?xi32>
}

// -----

// The same rule on the coarse layer: top-1 over 4 experts with factor 4.
// CHECK-LABEL: func.func @layer_capacity
// CHECK: moe.layer token_choice
// CHECK-SAME: %arg3 : tensor<4x32x16xf32>{{$}}
func.func @layer_capacity(%x: tensor<?x16xf32>, %wg: tensor<16x4xf32>,
                          %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>)
    -> tensor<?x16xf32> {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x16xf32>
      router %wg : tensor<16x4xf32>
      experts relu %w1 : tensor<4x16x32xf32>, %w2 : tensor<4x32x16xf32>
      {k = 1 : i64, capacity_factor = 4.0 : f64, batch_prioritized}
  return %y : tensor<?x16xf32>
}
