// RUN: moe-opt %s --moe-decompose-layer --split-input-file | FileCheck %s

// Mixtral: top-2 renormalised softmax, SwiGLU, dropless. The layer becomes
// gate -> token_choice -> dispatch -> permute -> expert_ffn -> combine into
// zeros, with the metrics computed from the same routing values.

// CHECK-LABEL: func.func @mixtral
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[WG:.*]]: tensor<64x8xf32>, %[[W1:.*]]: tensor<8x64x128xf32>, %[[W2:.*]]: tensor<8x128x64xf32>, %[[W3:.*]]: tensor<8x64x128xf32>)
// CHECK-NOT: moe.layer
// CHECK: %[[LOGITS:.*]] = moe.gate %[[X]], %[[WG]] : tensor<?x64xf32>, tensor<64x8xf32>
// CHECK: %[[W:.*]], %[[IDX:.*]], %[[P:.*]] = moe.token_choice softmax %[[LOGITS]] top 2 {normalize} : tensor<?x8xf32>
// CHECK: %[[RT:.*]], %[[RW:.*]], %[[OFF:.*]] = moe.dispatch %[[IDX]], %[[W]] {num_experts = 8 : i64} : tensor<?x2xi32>, tensor<?x2xf32>
// CHECK: %[[AUX:.*]] = moe.load_balancing_loss %[[P]], %[[IDX]] : tensor<?x8xf32>, tensor<?x2xi32>
// CHECK: %[[LOAD:.*]], %[[DROP:.*]] = moe.routing_stats %[[OFF]] indices %[[IDX]] : tensor<?x2xi32> : tensor<9xi32>
// CHECK: %[[XS:.*]] = moe.permute %[[X]], %[[RT]] : tensor<?x64xf32>, tensor<?xi32>
// CHECK: %[[YS:.*]] = moe.expert_ffn swiglu %[[XS]], %[[OFF]], %[[W1]], %[[W2]] fc3 %[[W3]] : tensor<8x64x128xf32> : tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
// CHECK: %[[T:.*]] = tensor.dim %[[X]], %{{.*}} : tensor<?x64xf32>
// CHECK: %[[EMPTY:.*]] = tensor.empty(%[[T]]) : tensor<?x64xf32>
// CHECK: %[[ZEROS:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%[[EMPTY]] : tensor<?x64xf32>) -> tensor<?x64xf32>
// CHECK: %[[Y:.*]] = moe.combine %[[YS]], %[[RT]], %[[RW]] into %[[ZEROS]] : tensor<?x64xf32>, tensor<?xi32>, tensor<?xf32>, tensor<?x64xf32>
// CHECK: %[[Z:.*]] = moe.z_loss %[[LOGITS]] : tensor<?x8xf32>
// CHECK: return %[[Y]], %[[AUX]], %[[Z]], %[[LOAD]], %[[DROP]]
func.func @mixtral(%x: tensor<?x64xf32>, %wg: tensor<64x8xf32>,
                   %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>,
                   %w3: tensor<8x64x128xf32>)
    -> (tensor<?x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>) {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x64xf32>
      router %wg : tensor<64x8xf32>
      experts swiglu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
      fc3 %w3 : tensor<8x64x128xf32> {k = 2 : i64, normalize}
  return %y, %aux, %z, %load, %drop
      : tensor<?x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>
}

// -----

// Switch: top-1 with capacity, batch-prioritised dropping, jitter, router and
// expert biases. Every routing attribute reaches the op that uses it.

// CHECK-LABEL: func.func @switch
// CHECK-SAME: (%[[X:.*]]: tensor<40x32xf32>, %[[WG:.*]]: tensor<32x4xf32>, %[[BG:.*]]: tensor<4xf32>, %[[W1:.*]]: tensor<4x32x64xf32>, %[[B1:.*]]: tensor<4x64xf32>, %[[W2:.*]]: tensor<4x64x32xf32>, %[[B2:.*]]: tensor<4x32xf32>, %[[SEED:.*]]: i64)
// CHECK: %[[LOGITS:.*]] = moe.gate %[[X]], %[[WG]] bias %[[BG]] seed %[[SEED]] {jitter_eps = 0.00999999977 : f32} : tensor<40x32xf32>, tensor<32x4xf32>, tensor<4xf32>
// CHECK: %[[W:.*]], %[[IDX:.*]], %{{.*}} = moe.token_choice softmax %[[LOGITS]] top 1 : tensor<40x4xf32>
// C = ceil(1.25 * 40 * 1 / 4) = 13 per expert; R = min(40, 4 * 13) = 40.
// CHECK: %[[RT:.*]], %[[RW:.*]], %[[OFF:.*]] = moe.dispatch %[[IDX]], %[[W]] {batch_prioritized, capacity_factor = 1.250000e+00 : f64, num_experts = 4 : i64} : tensor<40x1xi32>, tensor<40x1xf32>
// CHECK: moe.permute %[[X]], %[[RT]] : tensor<40x32xf32>, tensor<40xi32>
// CHECK: moe.expert_ffn relu %{{.*}}, %[[OFF]], %[[W1]], %[[W2]] fc1_bias %[[B1]] : tensor<4x64xf32> fc2_bias %[[B2]] : tensor<4x32xf32> : tensor<40x32xf32>, tensor<5xi32>, tensor<4x32x64xf32>, tensor<4x64x32xf32>
// CHECK: moe.combine %{{.*}}, %[[RT]], %[[RW]] into %{{.*}} : tensor<40x32xf32>, tensor<40xi32>, tensor<40xf32>, tensor<40x32xf32>
func.func @switch(%x: tensor<40x32xf32>, %wg: tensor<32x4xf32>, %bg: tensor<4xf32>,
                  %w1: tensor<4x32x64xf32>, %b1: tensor<4x64xf32>,
                  %w2: tensor<4x64x32xf32>, %b2: tensor<4x32xf32>, %seed: i64)
    -> (tensor<40x32xf32>, tensor<i64>) {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<40x32xf32>
      router %wg : tensor<32x4xf32> router_bias %bg : tensor<4xf32>
      experts relu %w1 : tensor<4x32x64xf32>, %w2 : tensor<4x64x32xf32>
      fc1_bias %b1 : tensor<4x64xf32> fc2_bias %b2 : tensor<4x32xf32>
      seed %seed
      {k = 1 : i64, capacity_factor = 1.25 : f64, batch_prioritized,
       jitter_eps = 0.01 : f32}
  return %y, %drop : tensor<40x32xf32>, tensor<i64>
}

// -----

// Expert choice: routing and dispatch are one op, the auxiliary loss is a
// constant zero and the statistics come from the row offsets alone.

// CHECK-LABEL: func.func @expert_choice
// CHECK: %[[LOGITS:.*]] = moe.gate
// C = min(64, ceil(2 * 64 / 8)) = 16 tokens per expert, R = 128 rows.
// CHECK: %[[RT:.*]], %[[RW:.*]], %[[OFF:.*]], %{{.*}} = moe.expert_choice %[[LOGITS]] {capacity_factor = 2.000000e+00 : f64} : tensor<64x8xf32>
// CHECK: %[[AUX:.*]] = arith.constant dense<0.000000e+00> : tensor<f32>
// CHECK: %[[LOAD:.*]], %[[DROP:.*]] = moe.routing_stats %[[OFF]] : tensor<9xi32>
// CHECK: moe.permute %{{.*}}, %[[RT]] : tensor<64x16xf32>, tensor<128xi32>
// CHECK: moe.expert_ffn gelu
// CHECK-SAME: : tensor<128x16xf32>, tensor<9xi32>
// CHECK: moe.combine %{{.*}}, %[[RT]], %[[RW]] into
// CHECK: return %{{.*}}, %[[AUX]], %{{.*}}, %[[LOAD]], %[[DROP]]
func.func @expert_choice(%x: tensor<64x16xf32>, %wg: tensor<16x8xf32>,
                         %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>)
    -> (tensor<64x16xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>) {
  %y, %aux, %z, %load, %drop = moe.layer expert_choice %x : tensor<64x16xf32>
      router %wg : tensor<16x8xf32>
      experts gelu %w1 : tensor<8x16x32xf32>, %w2 : tensor<8x32x16xf32>
      {capacity_factor = 2.0 : f64}
  return %y, %aux, %z, %load, %drop
      : tensor<64x16xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>
}

// -----

// DeepSeek-V3 style: sigmoid scores, selection bias, group-limited top-k,
// scaling, and a shared expert whose output is the accumulator of combine.

// CHECK-LABEL: func.func @deepseek
// CHECK-SAME: %[[X:[^:]*]]: tensor<?x32xf32>
// CHECK-SAME: %[[SB:[^:]*]]: tensor<16xf32>
// CHECK-SAME: %[[S1:[^:]*]]: tensor<32x48xf32>, %[[S2:[^:]*]]: tensor<48x32xf32>, %[[S3:[^:]*]]: tensor<32x48xf32>
// CHECK: %[[W:.*]], %[[IDX:.*]], %{{.*}} = moe.token_choice sigmoid %{{.*}} top 4 bias %[[SB]] {normalize, num_groups = 4 : i64, scaling_factor = 2.500000e+00 : f32, topk_groups = 2 : i64} : tensor<?x16xf32>, tensor<16xf32>
// CHECK: %[[RT:.*]], %[[RW:.*]], %{{.*}} = moe.dispatch %[[IDX]], %[[W]] {num_experts = 16 : i64}
// CHECK: %[[SHARED:.*]] = moe.shared_expert swiglu %[[X]], %[[S1]], %[[S2]] fc3 %[[S3]] : tensor<32x48xf32> : tensor<?x32xf32>, tensor<32x48xf32>, tensor<48x32xf32>
// CHECK-NOT: linalg.fill
// CHECK: moe.combine %{{.*}}, %[[RT]], %[[RW]] into %[[SHARED]]
func.func @deepseek(%x: tensor<?x32xf32>, %wg: tensor<32x16xf32>, %sb: tensor<16xf32>,
                    %w1: tensor<16x32x24xf32>, %w2: tensor<16x24x32xf32>,
                    %w3: tensor<16x32x24xf32>, %s1: tensor<32x48xf32>,
                    %s2: tensor<48x32xf32>, %s3: tensor<32x48xf32>)
    -> tensor<?x32xf32> {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x32xf32>
      router %wg : tensor<32x16xf32> score sigmoid
      selection_bias %sb : tensor<16xf32>
      experts swiglu %w1 : tensor<16x32x24xf32>, %w2 : tensor<16x24x32xf32>
      fc3 %w3 : tensor<16x32x24xf32>
      shared_fc1 %s1 : tensor<32x48xf32> shared_fc2 %s2 : tensor<48x32xf32>
      shared_fc3 %s3 : tensor<32x48xf32>
      {k = 4 : i64, normalize, num_groups = 4 : i64,
       topk_groups = 2 : i64, scaling_factor = 2.5 : f32}
  return %y : tensor<?x32xf32>
}

// -----

// Ops around the layer are left alone, and a function without layers is
// unchanged.

// CHECK-LABEL: func.func @untouched
// CHECK-NEXT: nn.relu
// CHECK-NEXT: return
func.func @untouched(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %y = nn.relu %x : tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}

// -----

// The evaluation capacity travels to the routing op.
// CHECK-LABEL: func.func @eval_capacity
// CHECK: moe.dispatch %{{.*}}, %{{.*}} {capacity_factor = 1.000000e+00 : f64, eval_capacity_factor = 2.000000e+00 : f64, num_experts = 4 : i64}
// CHECK-LABEL: func.func @eval_capacity_expert_choice
// CHECK: moe.expert_choice %{{.*}} {capacity_factor = 1.000000e+00 : f64, eval_capacity_factor = 1.500000e+00 : f64}
func.func @eval_capacity(%x: tensor<?x16xf32>, %wg: tensor<16x4xf32>,
                         %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>)
    -> tensor<?x16xf32> {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x16xf32>
      router %wg : tensor<16x4xf32>
      experts relu %w1 : tensor<4x16x32xf32>, %w2 : tensor<4x32x16xf32>
      {k = 1 : i64, capacity_factor = 1.0 : f64,
       eval_capacity_factor = 2.0 : f64}
  return %y : tensor<?x16xf32>
}
func.func @eval_capacity_expert_choice(%x: tensor<?x16xf32>,
    %wg: tensor<16x4xf32>, %w1: tensor<4x16x32xf32>,
    %w2: tensor<4x32x16xf32>) -> tensor<?x16xf32> {
  %y, %aux, %z, %load, %drop = moe.layer expert_choice %x : tensor<?x16xf32>
      router %wg : tensor<16x4xf32>
      experts relu %w1 : tensor<4x16x32xf32>, %w2 : tensor<4x32x16xf32>
      {capacity_factor = 1.0 : f64, eval_capacity_factor = 1.5 : f64}
  return %y : tensor<?x16xf32>
}

// -----

// gpt-oss through onnxruntime's com.microsoft.MoE: the SwiGLU parameters
// reach moe.expert_ffn.

// CHECK-LABEL: func.func @swiglu_parameters
// CHECK: moe.expert_ffn swiglu %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} fc3 %{{.*}} : tensor<4x16x32xf32> {swiglu_alpha = 1.702000e+00 : f32, swiglu_beta = 1.000000e+00 : f32, swiglu_limit = 7.000000e+00 : f32}
func.func @swiglu_parameters(%x: tensor<?x16xf32>, %wg: tensor<16x4xf32>,
                             %w1: tensor<4x16x32xf32>,
                             %w2: tensor<4x32x16xf32>,
                             %w3: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x16xf32>
      router %wg : tensor<16x4xf32>
      experts swiglu %w1 : tensor<4x16x32xf32>, %w2 : tensor<4x32x16xf32>
      fc3 %w3 : tensor<4x16x32xf32>
      {k = 2 : i64, normalize, swiglu_alpha = 1.702 : f32,
       swiglu_beta = 1.0 : f32, swiglu_limit = 7.0 : f32}
  return %y : tensor<?x16xf32>
}
