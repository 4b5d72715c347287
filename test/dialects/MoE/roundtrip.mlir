// RUN: moe-opt %s | moe-opt | FileCheck %s
// RUN: moe-opt %s --mlir-print-op-generic | moe-opt | FileCheck %s
// RUN: moe-opt %s -emit-bytecode | moe-opt | FileCheck %s

// Every moe op in its custom form. Result types are inferred from the
// operands and attributes; each function returns the results under explicit
// result types, so a wrong inference fails to verify and the return lines
// pin the inferred types.

//===----------------------------------------------------------------------===//
// moe.gate
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @gate(
// CHECK: %[[L:.*]] = moe.gate %arg0, %arg1 : tensor<10x64xf32>, tensor<64x8xf32>
// CHECK: return %[[L]] : tensor<10x8xf32>
func.func @gate(%x: tensor<10x64xf32>, %w: tensor<64x8xf32>)
    -> tensor<10x8xf32> {
  %logits = moe.gate %x, %w : tensor<10x64xf32>, tensor<64x8xf32>
  return %logits : tensor<10x8xf32>
}

// CHECK-LABEL: func.func @gate_bias(
// CHECK: %[[L:.*]] = moe.gate %arg0, %arg1 bias %arg2 : tensor<?x64xf32>, tensor<64x8xf32>, tensor<8xf32>
// CHECK: return %[[L]] : tensor<?x8xf32>
func.func @gate_bias(%x: tensor<?x64xf32>, %w: tensor<64x8xf32>,
                     %b: tensor<8xf32>) -> tensor<?x8xf32> {
  %logits = moe.gate %x, %w bias %b
      : tensor<?x64xf32>, tensor<64x8xf32>, tensor<8xf32>
  return %logits : tensor<?x8xf32>
}

// CHECK-LABEL: func.func @gate_jitter(
// CHECK: %[[L:.*]] = moe.gate %arg0, %arg1 seed %arg2 {jitter_eps = 0.00999999977 : f32} : tensor<?x32xbf16>, tensor<32x?xbf16>
// CHECK: return %[[L]] : tensor<?x?xbf16>
func.func @gate_jitter(%x: tensor<?x32xbf16>, %w: tensor<32x?xbf16>,
                       %seed: i64) -> tensor<?x?xbf16> {
  %logits = moe.gate %x, %w seed %seed {jitter_eps = 0.01 : f32}
      : tensor<?x32xbf16>, tensor<32x?xbf16>
  return %logits : tensor<?x?xbf16>
}

// CHECK-LABEL: func.func @gate_bias_seed_jitter(
// CHECK: %[[L:.*]] = moe.gate %arg0, %arg1 bias %arg2 seed %arg3 {jitter_eps = 1.250000e-01 : f32} : tensor<4x16xf16>, tensor<16x4xf16>, tensor<4xf16>
// CHECK: return %[[L]] : tensor<4x4xf16>
func.func @gate_bias_seed_jitter(%x: tensor<4x16xf16>, %w: tensor<16x4xf16>,
                                 %b: tensor<4xf16>, %seed: i64)
    -> tensor<4x4xf16> {
  %logits = moe.gate %x, %w bias %b seed %seed {jitter_eps = 0.125 : f32}
      : tensor<4x16xf16>, tensor<16x4xf16>, tensor<4xf16>
  return %logits : tensor<4x4xf16>
}

//===----------------------------------------------------------------------===//
// moe.token_choice
//===----------------------------------------------------------------------===//

// Switch: top-1 softmax.
// CHECK-LABEL: func.func @token_choice_top1(
// CHECK: %[[W:.*]], %[[I:.*]], %[[P:.*]] = moe.token_choice softmax %arg0 top 1 : tensor<64x8xf32>
// CHECK: return %[[W]], %[[I]], %[[P]] : tensor<64x1xf32>, tensor<64x1xi32>, tensor<64x8xf32>
func.func @token_choice_top1(%logits: tensor<64x8xf32>)
    -> (tensor<64x1xf32>, tensor<64x1xi32>, tensor<64x8xf32>) {
  %w, %idx, %p = moe.token_choice softmax %logits top 1 : tensor<64x8xf32>
  return %w, %idx, %p : tensor<64x1xf32>, tensor<64x1xi32>, tensor<64x8xf32>
}

// Mixtral: top-2 renormalised, dynamic token count.
// CHECK-LABEL: func.func @token_choice_top2_normalize(
// CHECK: %[[W:.*]], %[[I:.*]], %[[P:.*]] = moe.token_choice softmax %arg0 top 2 {normalize} : tensor<?x8xf32>
// CHECK: return %[[W]], %[[I]], %[[P]] : tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
func.func @token_choice_top2_normalize(%logits: tensor<?x8xf32>)
    -> (tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>) {
  %w, %idx, %p = moe.token_choice softmax %logits top 2 {normalize}
      : tensor<?x8xf32>
  return %w, %idx, %p : tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
}

// DeepSeek-V3: sigmoid scores, selection bias, device-limited groups and a
// scaling factor; the attributes print in alphabetical order.
// CHECK-LABEL: func.func @token_choice_sigmoid_groups(
// CHECK: %[[W:.*]], %[[I:.*]], %[[P:.*]] = moe.token_choice sigmoid %arg0 top 8 bias %arg1 {normalize, num_groups = 8 : i64, scaling_factor = 2.500000e+00 : f32, topk_groups = 4 : i64} : tensor<?x256xbf16>, tensor<256xbf16>
// CHECK: return %[[W]], %[[I]], %[[P]] : tensor<?x8xbf16>, tensor<?x8xi32>, tensor<?x256xbf16>
func.func @token_choice_sigmoid_groups(%logits: tensor<?x256xbf16>,
                                       %bias: tensor<256xbf16>)
    -> (tensor<?x8xbf16>, tensor<?x8xi32>, tensor<?x256xbf16>) {
  %w, %idx, %p = moe.token_choice sigmoid %logits top 8 bias %bias
      {normalize, num_groups = 8 : i64, topk_groups = 4 : i64,
       scaling_factor = 2.5 : f32} : tensor<?x256xbf16>, tensor<256xbf16>
  return %w, %idx, %p
      : tensor<?x8xbf16>, tensor<?x8xi32>, tensor<?x256xbf16>
}

// Phi-3.5-MoE: SparseMixer top-2 (onnxruntime's use_sparse_mixer).
// CHECK-LABEL: func.func @token_choice_sparse_mixer(
// CHECK: moe.token_choice sparse_mixer %arg0 top 2 : tensor<?x16xf16>
// CHECK: moe.token_choice sparse_mixer %arg1 top 2 {scaling_factor = 5.000000e-01 : f32} : tensor<7x8xf32>
// CHECK: return {{.*}} : tensor<?x2xf16>, tensor<?x2xi32>, tensor<?x16xf16>, tensor<7x2xf32>
func.func @token_choice_sparse_mixer(%logits: tensor<?x16xf16>,
                                     %static: tensor<7x8xf32>)
    -> (tensor<?x2xf16>, tensor<?x2xi32>, tensor<?x16xf16>, tensor<7x2xf32>) {
  %w, %idx, %p = moe.token_choice sparse_mixer %logits top 2
      : tensor<?x16xf16>
  %w2, %idx2, %p2 = moe.token_choice sparse_mixer %static top 2
      {scaling_factor = 0.5 : f32} : tensor<7x8xf32>
  return %w, %idx, %p, %w2
      : tensor<?x2xf16>, tensor<?x2xi32>, tensor<?x16xf16>, tensor<7x2xf32>
}

// Attributes equal to their defaults are not printed.
// CHECK-LABEL: func.func @token_choice_defaults_elided(
// CHECK: moe.token_choice sigmoid %arg0 top 1 : tensor<3x?xf16>
// CHECK: return {{.*}} : tensor<3x1xf16>, tensor<3x1xi32>, tensor<3x?xf16>
func.func @token_choice_defaults_elided(%logits: tensor<3x?xf16>)
    -> (tensor<3x1xf16>, tensor<3x1xi32>, tensor<3x?xf16>) {
  %w, %idx, %p = moe.token_choice sigmoid %logits top 1
      {num_groups = 1 : i64, topk_groups = 1 : i64, scaling_factor = 1.0 : f32}
      : tensor<3x?xf16>
  return %w, %idx, %p : tensor<3x1xf16>, tensor<3x1xi32>, tensor<3x?xf16>
}

//===----------------------------------------------------------------------===//
// moe.expert_choice: R = E * min(T, ceil(cf * T / E)), offsets [E + 1]
//===----------------------------------------------------------------------===//

// C = ceil(2.0 * 64 / 8) = 16, R = 8 * 16 = 128.
// CHECK-LABEL: func.func @expert_choice(
// CHECK: %[[RT:.*]], %[[RW:.*]], %[[OFF:.*]], %[[P:.*]] = moe.expert_choice %arg0 {capacity_factor = 2.000000e+00 : f64} : tensor<64x8xf32>
// CHECK: return %[[RT]], %[[RW]], %[[OFF]], %[[P]] : tensor<128xi32>, tensor<128xf32>, tensor<9xi32>, tensor<64x8xf32>
func.func @expert_choice(%logits: tensor<64x8xf32>)
    -> (tensor<128xi32>, tensor<128xf32>, tensor<9xi32>, tensor<64x8xf32>) {
  %rt, %rw, %off, %p = moe.expert_choice %logits {capacity_factor = 2.0 : f64}
      : tensor<64x8xf32>
  return %rt, %rw, %off, %p
      : tensor<128xi32>, tensor<128xf32>, tensor<9xi32>, tensor<64x8xf32>
}

// C = ceil(0.5 * 100 / 8) = ceil(6.25) = 7, R = 56.
// CHECK-LABEL: func.func @expert_choice_rounds_up(
// CHECK: moe.expert_choice %arg0 {capacity_factor = 5.000000e-01 : f64} : tensor<100x8xbf16>
// CHECK: return {{.*}} : tensor<56xi32>, tensor<56xbf16>, tensor<9xi32>, tensor<100x8xbf16>
func.func @expert_choice_rounds_up(%logits: tensor<100x8xbf16>)
    -> (tensor<56xi32>, tensor<56xbf16>, tensor<9xi32>, tensor<100x8xbf16>) {
  %rt, %rw, %off, %p = moe.expert_choice %logits {capacity_factor = 0.5 : f64}
      : tensor<100x8xbf16>
  return %rt, %rw, %off, %p
      : tensor<56xi32>, tensor<56xbf16>, tensor<9xi32>, tensor<100x8xbf16>
}

// An expert takes at most every token: C = min(10, ceil(16 * 10 / 8)) = 10.
// CHECK-LABEL: func.func @expert_choice_clamped_to_tokens(
// CHECK: return {{.*}} : tensor<80xi32>, tensor<80xf32>, tensor<9xi32>, tensor<10x8xf32>
func.func @expert_choice_clamped_to_tokens(%logits: tensor<10x8xf32>)
    -> (tensor<80xi32>, tensor<80xf32>, tensor<9xi32>, tensor<10x8xf32>) {
  %rt, %rw, %off, %p = moe.expert_choice %logits {capacity_factor = 16.0 : f64}
      : tensor<10x8xf32>
  return %rt, %rw, %off, %p
      : tensor<80xi32>, tensor<80xf32>, tensor<9xi32>, tensor<10x8xf32>
}

// A capacity factor too large for int64 capacity arithmetic still clamps to
// T: C = 4, R = 32.
// CHECK-LABEL: func.func @expert_choice_huge_factor(
// CHECK: moe.expert_choice %arg0 {capacity_factor = 1.000000e+300 : f64} : tensor<4x8xf32>
// CHECK: return {{.*}} : tensor<32xi32>, tensor<32xf32>, tensor<9xi32>, tensor<4x8xf32>
func.func @expert_choice_huge_factor(%logits: tensor<4x8xf32>)
    -> (tensor<32xi32>, tensor<32xf32>, tensor<9xi32>, tensor<4x8xf32>) {
  %rt, %rw, %off, %p = moe.expert_choice %logits
      {capacity_factor = 1.0e300 : f64} : tensor<4x8xf32>
  return %rt, %rw, %off, %p
      : tensor<32xi32>, tensor<32xf32>, tensor<9xi32>, tensor<4x8xf32>
}

// CHECK-LABEL: func.func @expert_choice_dynamic_tokens(
// CHECK: moe.expert_choice %arg0 {capacity_factor = 1.250000e+00 : f64} : tensor<?x8xf32>
// CHECK: return {{.*}} : tensor<?xi32>, tensor<?xf32>, tensor<9xi32>, tensor<?x8xf32>
func.func @expert_choice_dynamic_tokens(%logits: tensor<?x8xf32>)
    -> (tensor<?xi32>, tensor<?xf32>, tensor<9xi32>, tensor<?x8xf32>) {
  %rt, %rw, %off, %p = moe.expert_choice %logits
      {capacity_factor = 1.25 : f64} : tensor<?x8xf32>
  return %rt, %rw, %off, %p
      : tensor<?xi32>, tensor<?xf32>, tensor<9xi32>, tensor<?x8xf32>
}

// CHECK-LABEL: func.func @expert_choice_dynamic_experts(
// CHECK: return {{.*}} : tensor<?xi32>, tensor<?xf32>, tensor<?xi32>, tensor<16x?xf32>
func.func @expert_choice_dynamic_experts(%logits: tensor<16x?xf32>)
    -> (tensor<?xi32>, tensor<?xf32>, tensor<?xi32>, tensor<16x?xf32>) {
  %rt, %rw, %off, %p = moe.expert_choice %logits
      {capacity_factor = 1.0 : f64} : tensor<16x?xf32>
  return %rt, %rw, %off, %p
      : tensor<?xi32>, tensor<?xf32>, tensor<?xi32>, tensor<16x?xf32>
}

//===----------------------------------------------------------------------===//
// moe.dispatch: dropless R = T * k; with a capacity factor
// R = min(T * k, E * ceil(((cf * T) * k) / E)), evaluated in double precision
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @dispatch_dropless(
// CHECK: %[[RT:.*]], %[[RW:.*]], %[[OFF:.*]] = moe.dispatch %arg0, %arg1 {num_experts = 4 : i64} : tensor<10x2xi32>, tensor<10x2xf32>
// CHECK: return %[[RT]], %[[RW]], %[[OFF]] : tensor<20xi32>, tensor<20xf32>, tensor<5xi32>
func.func @dispatch_dropless(%idx: tensor<10x2xi32>, %w: tensor<10x2xf32>)
    -> (tensor<20xi32>, tensor<20xf32>, tensor<5xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 4 : i64}
      : tensor<10x2xi32>, tensor<10x2xf32>
  return %rt, %rw, %off : tensor<20xi32>, tensor<20xf32>, tensor<5xi32>
}

// CHECK-LABEL: func.func @dispatch_dropless_dynamic(
// CHECK: moe.dispatch %arg0, %arg1 {num_experts = 8 : i64} : tensor<?x2xi32>, tensor<?x2xbf16>
// CHECK: return {{.*}} : tensor<?xi32>, tensor<?xbf16>, tensor<9xi32>
func.func @dispatch_dropless_dynamic(%idx: tensor<?x2xi32>,
                                     %w: tensor<?x2xbf16>)
    -> (tensor<?xi32>, tensor<?xbf16>, tensor<9xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64}
      : tensor<?x2xi32>, tensor<?x2xbf16>
  return %rt, %rw, %off : tensor<?xi32>, tensor<?xbf16>, tensor<9xi32>
}

// The token count may come from either operand.
// CHECK-LABEL: func.func @dispatch_tokens_from_weights(
// CHECK: return {{.*}} : tensor<24xi32>, tensor<24xf32>, tensor<9xi32>
func.func @dispatch_tokens_from_weights(%idx: tensor<?x2xi32>,
                                        %w: tensor<12x2xf32>)
    -> (tensor<24xi32>, tensor<24xf32>, tensor<9xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64}
      : tensor<?x2xi32>, tensor<12x2xf32>
  return %rt, %rw, %off : tensor<24xi32>, tensor<24xf32>, tensor<9xi32>
}

// So may k.
// CHECK-LABEL: func.func @dispatch_k_from_weights(
// CHECK: return {{.*}} : tensor<20xi32>, tensor<20xf32>, tensor<5xi32>
func.func @dispatch_k_from_weights(%idx: tensor<10x?xi32>,
                                   %w: tensor<10x2xf32>)
    -> (tensor<20xi32>, tensor<20xf32>, tensor<5xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 4 : i64}
      : tensor<10x?xi32>, tensor<10x2xf32>
  return %rt, %rw, %off : tensor<20xi32>, tensor<20xf32>, tensor<5xi32>
}

// T = 10, k = 2, E = 4, cf = 1.25: C = ceil(6.25) = 7, R = min(20, 28) = 20.
// CHECK-LABEL: func.func @dispatch_capacity(
// CHECK: %[[RT:.*]], %[[RW:.*]], %[[OFF:.*]] = moe.dispatch %arg0, %arg1 {capacity_factor = 1.250000e+00 : f64, num_experts = 4 : i64} : tensor<10x2xi32>, tensor<10x2xf32>
// CHECK: return %[[RT]], %[[RW]], %[[OFF]] : tensor<20xi32>, tensor<20xf32>, tensor<5xi32>
func.func @dispatch_capacity(%idx: tensor<10x2xi32>, %w: tensor<10x2xf32>)
    -> (tensor<20xi32>, tensor<20xf32>, tensor<5xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w
      {num_experts = 4 : i64, capacity_factor = 1.25 : f64}
      : tensor<10x2xi32>, tensor<10x2xf32>
  return %rt, %rw, %off : tensor<20xi32>, tensor<20xf32>, tensor<5xi32>
}

// T = 64, k = 1, E = 8, cf = 1.0: C = 8, R = min(64, 64) = 64.
// CHECK-LABEL: func.func @dispatch_capacity_exact(
// CHECK: moe.dispatch %arg0, %arg1 {capacity_factor = 1.000000e+00 : f64, num_experts = 8 : i64} : tensor<64x1xi32>, tensor<64x1xf32>
// CHECK: return {{.*}} : tensor<64xi32>, tensor<64xf32>, tensor<9xi32>
func.func @dispatch_capacity_exact(%idx: tensor<64x1xi32>,
                                   %w: tensor<64x1xf32>)
    -> (tensor<64xi32>, tensor<64xf32>, tensor<9xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w
      {num_experts = 8 : i64, capacity_factor = 1.0 : f64}
      : tensor<64x1xi32>, tensor<64x1xf32>
  return %rt, %rw, %off : tensor<64xi32>, tensor<64xf32>, tensor<9xi32>
}

// T = 100, k = 1, E = 8, cf = 0.5: C = ceil(6.25) = 7, R = min(100, 56) = 56;
// batch-prioritized routing changes who is kept, not how many.
// CHECK-LABEL: func.func @dispatch_capacity_drops_batch_prioritized(
// CHECK: moe.dispatch %arg0, %arg1 {batch_prioritized, capacity_factor = 5.000000e-01 : f64, num_experts = 8 : i64} : tensor<100x1xi32>, tensor<100x1xf16>
// CHECK: return {{.*}} : tensor<56xi32>, tensor<56xf16>, tensor<9xi32>
func.func @dispatch_capacity_drops_batch_prioritized(%idx: tensor<100x1xi32>,
                                                     %w: tensor<100x1xf16>)
    -> (tensor<56xi32>, tensor<56xf16>, tensor<9xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w
      {num_experts = 8 : i64, capacity_factor = 0.5 : f64, batch_prioritized}
      : tensor<100x1xi32>, tensor<100x1xf16>
  return %rt, %rw, %off : tensor<56xi32>, tensor<56xf16>, tensor<9xi32>
}

// The capacity is evaluated in double precision in the documented order:
// (0.55 * 50) * 2 / 5 = 11.000000000000002, so C = 12 (not 11) and
// R = min(100, 60) = 60.
// CHECK-LABEL: func.func @dispatch_capacity_double_rounding(
// CHECK: return {{.*}} : tensor<60xi32>, tensor<60xf32>, tensor<6xi32>
func.func @dispatch_capacity_double_rounding(%idx: tensor<50x2xi32>,
                                             %w: tensor<50x2xf32>)
    -> (tensor<60xi32>, tensor<60xf32>, tensor<6xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w
      {num_experts = 5 : i64, capacity_factor = 0.55 : f64}
      : tensor<50x2xi32>, tensor<50x2xf32>
  return %rt, %rw, %off : tensor<60xi32>, tensor<60xf32>, tensor<6xi32>
}

// A capacity past the int64 range cannot bind: R = T * k = 8.
// CHECK-LABEL: func.func @dispatch_capacity_huge_factor(
// CHECK: return {{.*}} : tensor<8xi32>, tensor<8xf32>, tensor<9xi32>
func.func @dispatch_capacity_huge_factor(%idx: tensor<4x2xi32>,
                                         %w: tensor<4x2xf32>)
    -> (tensor<8xi32>, tensor<8xf32>, tensor<9xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w
      {num_experts = 8 : i64, capacity_factor = 1.0e300 : f64}
      : tensor<4x2xi32>, tensor<4x2xf32>
  return %rt, %rw, %off : tensor<8xi32>, tensor<8xf32>, tensor<9xi32>
}

// CHECK-LABEL: func.func @dispatch_capacity_dynamic(
// CHECK: moe.dispatch %arg0, %arg1 {capacity_factor = 1.250000e+00 : f64, num_experts = 64 : i64} : tensor<?x8xi32>, tensor<?x8xf32>
// CHECK: return {{.*}} : tensor<?xi32>, tensor<?xf32>, tensor<65xi32>
func.func @dispatch_capacity_dynamic(%idx: tensor<?x8xi32>,
                                     %w: tensor<?x8xf32>)
    -> (tensor<?xi32>, tensor<?xf32>, tensor<65xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w
      {num_experts = 64 : i64, capacity_factor = 1.25 : f64}
      : tensor<?x8xi32>, tensor<?x8xf32>
  return %rt, %rw, %off : tensor<?xi32>, tensor<?xf32>, tensor<65xi32>
}

//===----------------------------------------------------------------------===//
// moe.permute, moe.expert_ffn, moe.combine, moe.shared_expert
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @permute(
// CHECK: %[[XS:.*]] = moe.permute %arg0, %arg1 : tensor<10x64xf32>, tensor<20xi32>
// CHECK: return %[[XS]] : tensor<20x64xf32>
func.func @permute(%x: tensor<10x64xf32>, %rt: tensor<20xi32>)
    -> tensor<20x64xf32> {
  %xs = moe.permute %x, %rt : tensor<10x64xf32>, tensor<20xi32>
  return %xs : tensor<20x64xf32>
}

// CHECK-LABEL: func.func @permute_dynamic(
// CHECK: moe.permute %arg0, %arg1 : tensor<?x?xbf16>, tensor<?xi32>
// CHECK: return {{.*}} : tensor<?x?xbf16>
func.func @permute_dynamic(%x: tensor<?x?xbf16>, %rt: tensor<?xi32>)
    -> tensor<?x?xbf16> {
  %xs = moe.permute %x, %rt : tensor<?x?xbf16>, tensor<?xi32>
  return %xs : tensor<?x?xbf16>
}

// CHECK-LABEL: func.func @expert_ffn_relu(
// CHECK: %[[Y:.*]] = moe.expert_ffn relu %arg0, %arg1, %arg2, %arg3 : tensor<20x64xf32>, tensor<5xi32>, tensor<4x64x128xf32>, tensor<4x128x64xf32>
// CHECK: return %[[Y]] : tensor<20x64xf32>
func.func @expert_ffn_relu(%xs: tensor<20x64xf32>, %off: tensor<5xi32>,
                           %w1: tensor<4x64x128xf32>,
                           %w2: tensor<4x128x64xf32>) -> tensor<20x64xf32> {
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2
      : tensor<20x64xf32>, tensor<5xi32>, tensor<4x64x128xf32>,
        tensor<4x128x64xf32>
  return %ys : tensor<20x64xf32>
}

// The output feature size D_out comes from fc2.
// CHECK-LABEL: func.func @expert_ffn_gelu_biases(
// CHECK: %[[Y:.*]] = moe.expert_ffn gelu %arg0, %arg1, %arg2, %arg3 fc1_bias %arg4 : tensor<4x128xf32> fc2_bias %arg5 : tensor<4x32xf32> : tensor<?x64xf32>, tensor<5xi32>, tensor<4x64x128xf32>, tensor<4x128x32xf32>
// CHECK: return %[[Y]] : tensor<?x32xf32>
func.func @expert_ffn_gelu_biases(%xs: tensor<?x64xf32>, %off: tensor<5xi32>,
                                  %w1: tensor<4x64x128xf32>,
                                  %w2: tensor<4x128x32xf32>,
                                  %b1: tensor<4x128xf32>,
                                  %b2: tensor<4x32xf32>) -> tensor<?x32xf32> {
  %ys = moe.expert_ffn gelu %xs, %off, %w1, %w2
      fc1_bias %b1 : tensor<4x128xf32> fc2_bias %b2 : tensor<4x32xf32>
      : tensor<?x64xf32>, tensor<5xi32>, tensor<4x64x128xf32>,
        tensor<4x128x32xf32>
  return %ys : tensor<?x32xf32>
}

// CHECK-LABEL: func.func @expert_ffn_gelu_tanh(
// CHECK: moe.expert_ffn gelu_tanh %arg0, %arg1, %arg2, %arg3 : tensor<?x16xbf16>, tensor<?xi32>, tensor<?x16x32xbf16>, tensor<?x32x16xbf16>
// CHECK: return {{.*}} : tensor<?x16xbf16>
func.func @expert_ffn_gelu_tanh(%xs: tensor<?x16xbf16>, %off: tensor<?xi32>,
                                %w1: tensor<?x16x32xbf16>,
                                %w2: tensor<?x32x16xbf16>)
    -> tensor<?x16xbf16> {
  %ys = moe.expert_ffn gelu_tanh %xs, %off, %w1, %w2
      : tensor<?x16xbf16>, tensor<?xi32>, tensor<?x16x32xbf16>,
        tensor<?x32x16xbf16>
  return %ys : tensor<?x16xbf16>
}

// CHECK-LABEL: func.func @expert_ffn_silu(
// CHECK: moe.expert_ffn silu %arg0, %arg1, %arg2, %arg3 : tensor<8x16xf16>, tensor<3xi32>, tensor<2x16x?xf16>, tensor<2x?x?xf16>
// CHECK: return {{.*}} : tensor<8x?xf16>
func.func @expert_ffn_silu(%xs: tensor<8x16xf16>, %off: tensor<3xi32>,
                           %w1: tensor<2x16x?xf16>, %w2: tensor<2x?x?xf16>)
    -> tensor<8x?xf16> {
  %ys = moe.expert_ffn silu %xs, %off, %w1, %w2
      : tensor<8x16xf16>, tensor<3xi32>, tensor<2x16x?xf16>, tensor<2x?x?xf16>
  return %ys : tensor<8x?xf16>
}

// Mixtral's SwiGLU experts with every bias.
// CHECK-LABEL: func.func @expert_ffn_swiglu_all_biases(
// CHECK: %[[Y:.*]] = moe.expert_ffn swiglu %arg0, %arg1, %arg2, %arg3 fc3 %arg4 : tensor<8x64x128xf32> fc1_bias %arg5 : tensor<8x128xf32> fc2_bias %arg6 : tensor<8x64xf32> fc3_bias %arg7 : tensor<8x128xf32> : tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
// CHECK: return %[[Y]] : tensor<?x64xf32>
func.func @expert_ffn_swiglu_all_biases(
    %xs: tensor<?x64xf32>, %off: tensor<9xi32>, %w1: tensor<8x64x128xf32>,
    %w2: tensor<8x128x64xf32>, %w3: tensor<8x64x128xf32>,
    %b1: tensor<8x128xf32>, %b2: tensor<8x64xf32>, %b3: tensor<8x128xf32>)
    -> tensor<?x64xf32> {
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<8x64x128xf32>
      fc1_bias %b1 : tensor<8x128xf32> fc2_bias %b2 : tensor<8x64xf32>
      fc3_bias %b3 : tensor<8x128xf32>
      : tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>,
        tensor<8x128x64xf32>
  return %ys : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @expert_ffn_geglu(
// CHECK: moe.expert_ffn geglu %arg0, %arg1, %arg2, %arg3 fc3 %arg4 : tensor<8x64x128xbf16> : tensor<56x64xbf16>, tensor<9xi32>, tensor<8x64x128xbf16>, tensor<8x128x64xbf16>
// CHECK: return {{.*}} : tensor<56x64xbf16>
func.func @expert_ffn_geglu(%xs: tensor<56x64xbf16>, %off: tensor<9xi32>,
                            %w1: tensor<8x64x128xbf16>,
                            %w2: tensor<8x128x64xbf16>,
                            %w3: tensor<8x64x128xbf16>)
    -> tensor<56x64xbf16> {
  %ys = moe.expert_ffn geglu %xs, %off, %w1, %w2 fc3 %w3
      : tensor<8x64x128xbf16>
      : tensor<56x64xbf16>, tensor<9xi32>, tensor<8x64x128xbf16>,
        tensor<8x128x64xbf16>
  return %ys : tensor<56x64xbf16>
}

// The activations of onnxruntime's com.microsoft.MoE: identity, squared
// ReLU and the gated GELU with the tanh approximation.
// CHECK-LABEL: func.func @expert_ffn_onnx_activations(
// CHECK: moe.expert_ffn identity %arg0, %arg1, %arg2, %arg3 : tensor<?x16xf32>, tensor<3xi32>, tensor<2x16x24xf32>, tensor<2x24x8xf32>
// CHECK: moe.expert_ffn relu2 %arg6, %arg1, %arg7, %arg8 fc1_bias %arg5 : tensor<2x24xf16> : tensor<?x16xf16>, tensor<3xi32>, tensor<2x16x24xf16>, tensor<2x24x8xf16>
// CHECK: moe.expert_ffn geglu_tanh %arg0, %arg1, %arg2, %arg3 fc3 %arg4 : tensor<2x16x24xf32> : tensor<?x16xf32>, tensor<3xi32>, tensor<2x16x24xf32>, tensor<2x24x8xf32>
func.func @expert_ffn_onnx_activations(%xs: tensor<?x16xf32>,
                                       %off: tensor<3xi32>,
                                       %w1: tensor<2x16x24xf32>,
                                       %w2: tensor<2x24x8xf32>,
                                       %w3: tensor<2x16x24xf32>,
                                       %b1: tensor<2x24xf16>,
                                       %hs: tensor<?x16xf16>,
                                       %h1: tensor<2x16x24xf16>,
                                       %h2: tensor<2x24x8xf16>)
    -> (tensor<?x8xf32>, tensor<?x8xf16>, tensor<?x8xf32>) {
  %a = moe.expert_ffn identity %xs, %off, %w1, %w2
      : tensor<?x16xf32>, tensor<3xi32>, tensor<2x16x24xf32>,
        tensor<2x24x8xf32>
  %b = moe.expert_ffn relu2 %hs, %off, %h1, %h2 fc1_bias %b1 : tensor<2x24xf16>
      : tensor<?x16xf16>, tensor<3xi32>, tensor<2x16x24xf16>,
        tensor<2x24x8xf16>
  %c = moe.expert_ffn geglu_tanh %xs, %off, %w1, %w2 fc3 %w3
      : tensor<2x16x24xf32>
      : tensor<?x16xf32>, tensor<3xi32>, tensor<2x16x24xf32>,
        tensor<2x24x8xf32>
  return %a, %b, %c : tensor<?x8xf32>, tensor<?x8xf16>, tensor<?x8xf32>
}

// SwiGLU's parameters print when they differ from the defaults (alpha 1,
// beta 0, no limit), which are elided.
// CHECK-LABEL: func.func @expert_ffn_swiglu_parameters(
// CHECK: moe.expert_ffn swiglu %arg0, %arg1, %arg2, %arg3 fc3 %arg4 : tensor<2x16x24xf32> {swiglu_alpha = 1.702000e+00 : f32, swiglu_beta = 1.000000e+00 : f32, swiglu_limit = 7.000000e+00 : f32} : tensor<?x16xf32>
// CHECK: moe.expert_ffn swiglu %arg0, %arg1, %arg2, %arg3 fc3 %arg4 : tensor<2x16x24xf32> {swiglu_limit = 5.000000e-01 : f32} : tensor<?x16xf32>
// CHECK: moe.expert_ffn swiglu %arg0, %arg1, %arg2, %arg3 fc3 %arg4 : tensor<2x16x24xf32> : tensor<?x16xf32>
func.func @expert_ffn_swiglu_parameters(%xs: tensor<?x16xf32>,
                                        %off: tensor<3xi32>,
                                        %w1: tensor<2x16x24xf32>,
                                        %w2: tensor<2x24x8xf32>,
                                        %w3: tensor<2x16x24xf32>)
    -> (tensor<?x8xf32>, tensor<?x8xf32>, tensor<?x8xf32>) {
  %a = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<2x16x24xf32>
      {swiglu_alpha = 1.702 : f32, swiglu_beta = 1.0 : f32,
       swiglu_limit = 7.0 : f32}
      : tensor<?x16xf32>, tensor<3xi32>, tensor<2x16x24xf32>,
        tensor<2x24x8xf32>
  %b = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<2x16x24xf32>
      {swiglu_limit = 0.5 : f32}
      : tensor<?x16xf32>, tensor<3xi32>, tensor<2x16x24xf32>,
        tensor<2x24x8xf32>
  %c = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<2x16x24xf32>
      {swiglu_alpha = 1.0 : f32, swiglu_beta = 0.0 : f32}
      : tensor<?x16xf32>, tensor<3xi32>, tensor<2x16x24xf32>,
        tensor<2x24x8xf32>
  return %a, %b, %c : tensor<?x8xf32>, tensor<?x8xf32>, tensor<?x8xf32>
}

// CHECK-LABEL: func.func @combine(
// CHECK: %[[Y:.*]] = moe.combine %arg0, %arg1, %arg2 into %arg3 : tensor<20x64xf32>, tensor<20xi32>, tensor<20xf32>, tensor<10x64xf32>
// CHECK: return %[[Y]] : tensor<10x64xf32>
func.func @combine(%ys: tensor<20x64xf32>, %rt: tensor<20xi32>,
                   %rw: tensor<20xf32>, %init: tensor<10x64xf32>)
    -> tensor<10x64xf32> {
  %y = moe.combine %ys, %rt, %rw into %init
      : tensor<20x64xf32>, tensor<20xi32>, tensor<20xf32>, tensor<10x64xf32>
  return %y : tensor<10x64xf32>
}

// CHECK-LABEL: func.func @combine_dynamic(
// CHECK: moe.combine %arg0, %arg1, %arg2 into %arg3 : tensor<?x64xbf16>, tensor<?xi32>, tensor<?xbf16>, tensor<?x64xbf16>
// CHECK: return {{.*}} : tensor<?x64xbf16>
func.func @combine_dynamic(%ys: tensor<?x64xbf16>, %rt: tensor<?xi32>,
                           %rw: tensor<?xbf16>, %init: tensor<?x64xbf16>)
    -> tensor<?x64xbf16> {
  %y = moe.combine %ys, %rt, %rw into %init
      : tensor<?x64xbf16>, tensor<?xi32>, tensor<?xbf16>, tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// CHECK-LABEL: func.func @shared_expert(
// CHECK: %[[S:.*]] = moe.shared_expert relu %arg0, %arg1, %arg2 : tensor<?x64xf32>, tensor<64x256xf32>, tensor<256x32xf32>
// CHECK: return %[[S]] : tensor<?x32xf32>
func.func @shared_expert(%x: tensor<?x64xf32>, %s1: tensor<64x256xf32>,
                         %s2: tensor<256x32xf32>) -> tensor<?x32xf32> {
  %s = moe.shared_expert relu %x, %s1, %s2
      : tensor<?x64xf32>, tensor<64x256xf32>, tensor<256x32xf32>
  return %s : tensor<?x32xf32>
}

// Qwen-MoE: a gated SwiGLU shared expert.
// CHECK-LABEL: func.func @shared_expert_fc3_gate(
// CHECK: %[[S:.*]] = moe.shared_expert swiglu %arg0, %arg1, %arg2 fc3 %arg3 : tensor<64x256xbf16> gate %arg4 : tensor<64x1xbf16> : tensor<10x64xbf16>, tensor<64x256xbf16>, tensor<256x64xbf16>
// CHECK: return %[[S]] : tensor<10x64xbf16>
func.func @shared_expert_fc3_gate(%x: tensor<10x64xbf16>,
                                  %s1: tensor<64x256xbf16>,
                                  %s2: tensor<256x64xbf16>,
                                  %s3: tensor<64x256xbf16>,
                                  %g: tensor<64x1xbf16>)
    -> tensor<10x64xbf16> {
  %s = moe.shared_expert swiglu %x, %s1, %s2 fc3 %s3 : tensor<64x256xbf16>
      gate %g : tensor<64x1xbf16>
      : tensor<10x64xbf16>, tensor<64x256xbf16>, tensor<256x64xbf16>
  return %s : tensor<10x64xbf16>
}

// CHECK-LABEL: func.func @shared_expert_gate_only(
// CHECK: moe.shared_expert gelu %arg0, %arg1, %arg2 gate %arg3 : tensor<?x1xf32> : tensor<?x?xf32>, tensor<?x8xf32>, tensor<8x?xf32>
// CHECK: return {{.*}} : tensor<?x?xf32>
func.func @shared_expert_gate_only(%x: tensor<?x?xf32>, %s1: tensor<?x8xf32>,
                                   %s2: tensor<8x?xf32>, %g: tensor<?x1xf32>)
    -> tensor<?x?xf32> {
  %s = moe.shared_expert gelu %x, %s1, %s2 gate %g : tensor<?x1xf32>
      : tensor<?x?xf32>, tensor<?x8xf32>, tensor<8x?xf32>
  return %s : tensor<?x?xf32>
}

//===----------------------------------------------------------------------===//
// Losses and statistics
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @load_balancing_loss(
// CHECK: %[[A:.*]] = moe.load_balancing_loss %arg0, %arg1 : tensor<?x8xbf16>, tensor<?x2xi32>
// CHECK: return %[[A]] : tensor<f32>
func.func @load_balancing_loss(%p: tensor<?x8xbf16>, %idx: tensor<?x2xi32>)
    -> tensor<f32> {
  %aux = moe.load_balancing_loss %p, %idx : tensor<?x8xbf16>, tensor<?x2xi32>
  return %aux : tensor<f32>
}

// CHECK-LABEL: func.func @z_loss(
// CHECK: %[[Z:.*]] = moe.z_loss %arg0 : tensor<64x8xf16>
// CHECK: return %[[Z]] : tensor<f32>
func.func @z_loss(%logits: tensor<64x8xf16>) -> tensor<f32> {
  %z = moe.z_loss %logits : tensor<64x8xf16>
  return %z : tensor<f32>
}

// CHECK-LABEL: func.func @routing_stats_indices(
// CHECK: %[[L:.*]], %[[D:.*]] = moe.routing_stats %arg0 indices %arg1 : tensor<?x2xi32> : tensor<9xi32>
// CHECK: return %[[L]], %[[D]] : tensor<8xi64>, tensor<i64>
func.func @routing_stats_indices(%off: tensor<9xi32>, %idx: tensor<?x2xi32>)
    -> (tensor<8xi64>, tensor<i64>) {
  %load, %dropped = moe.routing_stats %off indices %idx : tensor<?x2xi32>
      : tensor<9xi32>
  return %load, %dropped : tensor<8xi64>, tensor<i64>
}

// CHECK-LABEL: func.func @routing_stats(
// CHECK: %[[L:.*]], %[[D:.*]] = moe.routing_stats %arg0 : tensor<?xi32>
// CHECK: return %[[L]], %[[D]] : tensor<?xi64>, tensor<i64>
func.func @routing_stats(%off: tensor<?xi32>) -> (tensor<?xi64>, tensor<i64>) {
  %load, %dropped = moe.routing_stats %off : tensor<?xi32>
  return %load, %dropped : tensor<?xi64>, tensor<i64>
}

//===----------------------------------------------------------------------===//
// moe.layer
//===----------------------------------------------------------------------===//

// Mixtral: top-2 renormalised, SwiGLU, dropless.
// CHECK-LABEL: func.func @layer_mixtral(
// CHECK: %[[Y:.*]], %[[AUX:.*]], %[[Z:.*]], %[[LOAD:.*]], %[[DROP:.*]] = moe.layer token_choice %arg0 : tensor<?x64xf32> router %arg1 : tensor<64x8xf32> experts swiglu %arg2 : tensor<8x64x128xf32>, %arg3 : tensor<8x128x64xf32> fc3 %arg4 : tensor<8x64x128xf32> {k = 2 : i64, normalize}
// CHECK: return %[[Y]], %[[AUX]], %[[Z]], %[[LOAD]], %[[DROP]] : tensor<?x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>
func.func @layer_mixtral(%x: tensor<?x64xf32>, %wg: tensor<64x8xf32>,
                         %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>,
                         %w3: tensor<8x64x128xf32>)
    -> (tensor<?x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>,
        tensor<i64>) {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x64xf32>
      router %wg : tensor<64x8xf32>
      experts swiglu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
      fc3 %w3 : tensor<8x64x128xf32>
      {k = 2 : i64, normalize}
  return %y, %aux, %z, %load, %drop
      : tensor<?x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>
}

// Switch: top-1 with a capacity, batch-prioritized, router jitter, and expert
// biases; the output size comes from fc2.
// CHECK-LABEL: func.func @layer_switch(
// CHECK: moe.layer token_choice %arg0 : tensor<128x64xf32> router %arg1 : tensor<64x8xf32> router_bias %arg2 : tensor<8xf32> experts relu %arg3 : tensor<8x64x256xf32>, %arg4 : tensor<8x256x32xf32> fc1_bias %arg5 : tensor<8x256xf32> fc2_bias %arg6 : tensor<8x32xf32> seed %arg7 {batch_prioritized, capacity_factor = 1.250000e+00 : f64, jitter_eps = 0.00999999977 : f32}
// CHECK: return {{.*}} : tensor<128x32xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>
func.func @layer_switch(%x: tensor<128x64xf32>, %wg: tensor<64x8xf32>,
                        %bg: tensor<8xf32>, %w1: tensor<8x64x256xf32>,
                        %w2: tensor<8x256x32xf32>, %b1: tensor<8x256xf32>,
                        %b2: tensor<8x32xf32>, %seed: i64)
    -> (tensor<128x32xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>,
        tensor<i64>) {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<128x64xf32>
      router %wg : tensor<64x8xf32> router_bias %bg : tensor<8xf32>
      experts relu %w1 : tensor<8x64x256xf32>, %w2 : tensor<8x256x32xf32>
      fc1_bias %b1 : tensor<8x256xf32> fc2_bias %b2 : tensor<8x32xf32>
      seed %seed
      {k = 1 : i64, capacity_factor = 1.25 : f64, batch_prioritized,
       jitter_eps = 0.01 : f32}
  return %y, %aux, %z, %load, %drop
      : tensor<128x32xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>,
        tensor<i64>
}

// DeepSeek-V3 style: sigmoid scores, selection bias, grouped routing, every
// expert bias and a gated SwiGLU shared expert.
// CHECK-LABEL: func.func @layer_deepseek(
// CHECK: moe.layer token_choice %arg0 : tensor<?x64xbf16> router %arg1 : tensor<64x16xbf16> score sigmoid router_bias %arg2 : tensor<16xbf16> selection_bias %arg3 : tensor<16xbf16> experts swiglu %arg4 : tensor<16x64x32xbf16>, %arg5 : tensor<16x32x64xbf16> fc3 %arg6 : tensor<16x64x32xbf16> fc1_bias %arg7 : tensor<16x32xbf16> fc2_bias %arg8 : tensor<16x64xbf16> fc3_bias %arg9 : tensor<16x32xbf16> shared_fc1 %arg10 : tensor<64x128xbf16> shared_fc2 %arg11 : tensor<128x64xbf16> shared_fc3 %arg12 : tensor<64x128xbf16> shared_gate %arg13 : tensor<64x1xbf16> seed %arg14 {jitter_eps = 0.00999999977 : f32, k = 4 : i64, normalize, num_groups = 4 : i64, scaling_factor = 2.500000e+00 : f32, topk_groups = 2 : i64}
// CHECK: return {{.*}} : tensor<?x64xbf16>, tensor<f32>, tensor<f32>, tensor<16xi64>, tensor<i64>
func.func @layer_deepseek(
    %x: tensor<?x64xbf16>, %wg: tensor<64x16xbf16>, %rb: tensor<16xbf16>,
    %sb: tensor<16xbf16>, %w1: tensor<16x64x32xbf16>,
    %w2: tensor<16x32x64xbf16>, %w3: tensor<16x64x32xbf16>,
    %b1: tensor<16x32xbf16>, %b2: tensor<16x64xbf16>, %b3: tensor<16x32xbf16>,
    %s1: tensor<64x128xbf16>, %s2: tensor<128x64xbf16>,
    %s3: tensor<64x128xbf16>, %sg: tensor<64x1xbf16>, %seed: i64)
    -> (tensor<?x64xbf16>, tensor<f32>, tensor<f32>, tensor<16xi64>,
        tensor<i64>) {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x64xbf16>
      router %wg : tensor<64x16xbf16> score sigmoid
      router_bias %rb : tensor<16xbf16> selection_bias %sb : tensor<16xbf16>
      experts swiglu %w1 : tensor<16x64x32xbf16>, %w2 : tensor<16x32x64xbf16>
      fc3 %w3 : tensor<16x64x32xbf16> fc1_bias %b1 : tensor<16x32xbf16>
      fc2_bias %b2 : tensor<16x64xbf16> fc3_bias %b3 : tensor<16x32xbf16>
      shared_fc1 %s1 : tensor<64x128xbf16> shared_fc2 %s2 : tensor<128x64xbf16>
      shared_fc3 %s3 : tensor<64x128xbf16> shared_gate %sg : tensor<64x1xbf16>
      seed %seed
      {k = 4 : i64, normalize, num_groups = 4 : i64, topk_groups = 2 : i64,
       scaling_factor = 2.5 : f32, jitter_eps = 0.01 : f32}
  return %y, %aux, %z, %load, %drop
      : tensor<?x64xbf16>, tensor<f32>, tensor<f32>, tensor<16xi64>,
        tensor<i64>
}

// Expert choice with an ungated shared expert and router jitter.
// CHECK-LABEL: func.func @layer_expert_choice(
// CHECK: moe.layer expert_choice %arg0 : tensor<64x32xf32> router %arg1 : tensor<32x4xf32> router_bias %arg2 : tensor<4xf32> experts gelu %arg3 : tensor<4x32x64xf32>, %arg4 : tensor<4x64x32xf32> fc1_bias %arg5 : tensor<4x64xf32> shared_fc1 %arg6 : tensor<32x128xf32> shared_fc2 %arg7 : tensor<128x32xf32> seed %arg8 {capacity_factor = 2.000000e+00 : f64, jitter_eps = 0.00999999977 : f32}
// CHECK: return {{.*}} : tensor<64x32xf32>, tensor<f32>, tensor<f32>, tensor<4xi64>, tensor<i64>
func.func @layer_expert_choice(%x: tensor<64x32xf32>, %wg: tensor<32x4xf32>,
                               %bg: tensor<4xf32>, %w1: tensor<4x32x64xf32>,
                               %w2: tensor<4x64x32xf32>, %b1: tensor<4x64xf32>,
                               %s1: tensor<32x128xf32>,
                               %s2: tensor<128x32xf32>, %seed: i64)
    -> (tensor<64x32xf32>, tensor<f32>, tensor<f32>, tensor<4xi64>,
        tensor<i64>) {
  %y, %aux, %z, %load, %drop = moe.layer expert_choice %x : tensor<64x32xf32>
      router %wg : tensor<32x4xf32> router_bias %bg : tensor<4xf32>
      experts gelu %w1 : tensor<4x32x64xf32>, %w2 : tensor<4x64x32xf32>
      fc1_bias %b1 : tensor<4x64xf32>
      shared_fc1 %s1 : tensor<32x128xf32> shared_fc2 %s2 : tensor<128x32xf32>
      seed %seed {capacity_factor = 2.0 : f64, jitter_eps = 0.01 : f32}
  return %y, %aux, %z, %load, %drop
      : tensor<64x32xf32>, tensor<f32>, tensor<f32>, tensor<4xi64>,
        tensor<i64>
}

// Expert choice allows a dynamic number of experts (token choice needs it
// static for moe.dispatch): tokens_per_expert is dynamic too. The default
// score is accepted and not printed.
// CHECK-LABEL: func.func @layer_dynamic_experts(
// CHECK: moe.layer expert_choice %arg0 : tensor<?x16xf16> router %arg1 : tensor<16x?xf16> experts geglu %arg2 : tensor<?x16x32xf16>, %arg3 : tensor<?x32x16xf16> fc3 %arg4 : tensor<?x16x32xf16> {capacity_factor = 1.000000e+00 : f64}
// CHECK: return {{.*}} : tensor<?x16xf16>, tensor<f32>, tensor<f32>, tensor<?xi64>, tensor<i64>
func.func @layer_dynamic_experts(%x: tensor<?x16xf16>, %wg: tensor<16x?xf16>,
                                 %w1: tensor<?x16x32xf16>,
                                 %w2: tensor<?x32x16xf16>,
                                 %w3: tensor<?x16x32xf16>)
    -> (tensor<?x16xf16>, tensor<f32>, tensor<f32>, tensor<?xi64>,
        tensor<i64>) {
  %y, %aux, %z, %load, %drop = moe.layer expert_choice %x : tensor<?x16xf16>
      router %wg : tensor<16x?xf16> score softmax
      experts geglu %w1 : tensor<?x16x32xf16>, %w2 : tensor<?x32x16xf16>
      fc3 %w3 : tensor<?x16x32xf16> {capacity_factor = 1.0 : f64}
  return %y, %aux, %z, %load, %drop
      : tensor<?x16xf16>, tensor<f32>, tensor<f32>, tensor<?xi64>, tensor<i64>
}

// Phi-3.5-MoE through onnxruntime's com.microsoft.MoE: SparseMixer routing.
// CHECK-LABEL: func.func @layer_sparse_mixer(
// CHECK: moe.layer token_choice %arg0 : tensor<?x32xf32> router %arg1 : tensor<32x16xf32> score sparse_mixer experts swiglu %arg2 : tensor<16x32x64xf32>, %arg3 : tensor<16x64x32xf32> fc3 %arg4 : tensor<16x32x64xf32> {k = 2 : i64}
func.func @layer_sparse_mixer(%x: tensor<?x32xf32>, %wg: tensor<32x16xf32>,
                              %w1: tensor<16x32x64xf32>,
                              %w2: tensor<16x64x32xf32>,
                              %w3: tensor<16x32x64xf32>) -> tensor<?x32xf32> {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x32xf32>
      router %wg : tensor<32x16xf32> score sparse_mixer
      experts swiglu %w1 : tensor<16x32x64xf32>, %w2 : tensor<16x64x32xf32>
      fc3 %w3 : tensor<16x32x64xf32> {k = 2 : i64}
  return %y : tensor<?x32xf32>
}

// gpt-oss through onnxruntime's com.microsoft.MoE: SwiGLU with alpha 1.702,
// beta 1 and a limit of 7.
// CHECK-LABEL: func.func @layer_swiglu_parameters(
// CHECK: moe.layer token_choice %arg0 : tensor<?x64xf32> router %arg1 : tensor<64x8xf32> experts swiglu %arg2 : tensor<8x64x128xf32>, %arg3 : tensor<8x128x64xf32> fc3 %arg4 : tensor<8x64x128xf32> {k = 4 : i64, normalize, swiglu_alpha = 1.702000e+00 : f32, swiglu_beta = 1.000000e+00 : f32, swiglu_limit = 7.000000e+00 : f32}
func.func @layer_swiglu_parameters(%x: tensor<?x64xf32>, %wg: tensor<64x8xf32>,
                                   %w1: tensor<8x64x128xf32>,
                                   %w2: tensor<8x128x64xf32>,
                                   %w3: tensor<8x64x128xf32>)
    -> tensor<?x64xf32> {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x64xf32>
      router %wg : tensor<64x8xf32>
      experts swiglu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
      fc3 %w3 : tensor<8x64x128xf32>
      {k = 4 : i64, normalize, swiglu_alpha = 1.702 : f32,
       swiglu_beta = 1.0 : f32, swiglu_limit = 7.0 : f32}
  return %y : tensor<?x64xf32>
}

// The output size D_out is known from the shared expert when the experts'
// fc2 leaves it dynamic.
// CHECK-LABEL: func.func @layer_output_size_from_shared_expert(
// CHECK: return {{.*}} : tensor<?x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>
func.func @layer_output_size_from_shared_expert(
    %x: tensor<?x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>,
    %w2: tensor<8x128x?xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>)
    -> (tensor<?x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>,
        tensor<i64>) {
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x64xf32>
      router %wg : tensor<64x8xf32>
      experts silu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x?xf32>
      shared_fc1 %s1 : tensor<64x256xf32> shared_fc2 %s2 : tensor<256x64xf32>
  return %y, %aux, %z, %load, %drop
      : tensor<?x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>
}

//===----------------------------------------------------------------------===//
// Train / eval routing: eval_capacity_factor
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @eval_capacity_factor(
// CHECK: moe.dispatch %arg0, %arg1 {capacity_factor = 1.000000e+00 : f64, eval_capacity_factor = 2.000000e+00 : f64, num_experts = 4 : i64} : tensor<10x2xi32>, tensor<10x2xf32>
// CHECK: moe.expert_choice %arg2 {capacity_factor = 1.000000e+00 : f64, eval_capacity_factor = 1.500000e+00 : f64} : tensor<16x4xf32>
// CHECK: return {{.*}} : tensor<20xi32>, tensor<16xi32>
func.func @eval_capacity_factor(%idx: tensor<10x2xi32>, %w: tensor<10x2xf32>,
                                %logits: tensor<16x4xf32>)
    -> (tensor<20xi32>, tensor<16xi32>) {
  // capacity_factor alone decides the types: C = ceil(1.0 * 10 * 2 / 4) = 5,
  // R = min(20, 4 * 5) = 20; expert choice C = min(16, ceil(16 / 4)) = 4,
  // R = 16.
  %rt, %rw, %off = moe.dispatch %idx, %w
      {num_experts = 4 : i64, capacity_factor = 1.0 : f64,
       eval_capacity_factor = 2.0 : f64} : tensor<10x2xi32>, tensor<10x2xf32>
  %ert, %erw, %eoff, %p = moe.expert_choice %logits
      {capacity_factor = 1.0 : f64, eval_capacity_factor = 1.5 : f64}
      : tensor<16x4xf32>
  return %rt, %ert : tensor<20xi32>, tensor<16xi32>
}

//===----------------------------------------------------------------------===//
// Gradients
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @gate_grad(
// CHECK: %{{.*}}, %{{.*}}, %{{.*}} = moe.gate_grad %arg0, %arg1, %arg2 seed %arg3 {jitter_eps = 0.00999999977 : f32} : tensor<?x8xf32>, tensor<?x64xf32>, tensor<64x8xf32>
// CHECK: return {{.*}} : tensor<?x64xf32>, tensor<64x8xf32>, tensor<8xf32>
func.func @gate_grad(%dl: tensor<?x8xf32>, %x: tensor<?x64xf32>,
                     %w: tensor<64x8xf32>, %seed: i64)
    -> (tensor<?x64xf32>, tensor<64x8xf32>, tensor<8xf32>) {
  %dx, %dw, %db = moe.gate_grad %dl, %x, %w seed %seed
      {jitter_eps = 0.01 : f32}
      : tensor<?x8xf32>, tensor<?x64xf32>, tensor<64x8xf32>
  return %dx, %dw, %db : tensor<?x64xf32>, tensor<64x8xf32>, tensor<8xf32>
}

// CHECK-LABEL: func.func @token_choice_grad(
// CHECK: moe.token_choice_grad softmax %arg0, %arg1 weights_grad %arg2 : tensor<?x2xf32> probs_grad %arg3 : tensor<?x8xf32> {normalize, scaling_factor = 2.000000e+00 : f32} : tensor<?x8xf32>, tensor<?x2xi32>
// CHECK: moe.token_choice_grad sigmoid %arg0, %arg1 probs_grad %arg3 : tensor<?x8xf32> : tensor<?x8xf32>, tensor<?x2xi32>
// CHECK: return {{.*}} : tensor<?x8xf32>, tensor<?x8xf32>
func.func @token_choice_grad(%p: tensor<?x8xf32>, %idx: tensor<?x2xi32>,
                             %dw: tensor<?x2xf32>, %dp: tensor<?x8xf32>)
    -> (tensor<?x8xf32>, tensor<?x8xf32>) {
  %a = moe.token_choice_grad softmax %p, %idx weights_grad %dw
      : tensor<?x2xf32> probs_grad %dp : tensor<?x8xf32>
      {normalize, scaling_factor = 2.0 : f32}
      : tensor<?x8xf32>, tensor<?x2xi32>
  %b = moe.token_choice_grad sigmoid %p, %idx probs_grad %dp
      : tensor<?x8xf32> : tensor<?x8xf32>, tensor<?x2xi32>
  return %a, %b : tensor<?x8xf32>, tensor<?x8xf32>
}

// CHECK-LABEL: func.func @expert_choice_grad(
// CHECK: moe.expert_choice_grad %arg0, %arg1, %arg2 row_weight_grad %arg3 : tensor<128xbf16> : tensor<64x8xbf16>, tensor<128xi32>, tensor<9xi32>
// CHECK: return {{.*}} : tensor<64x8xbf16>
func.func @expert_choice_grad(%p: tensor<64x8xbf16>, %rt: tensor<128xi32>,
                              %off: tensor<9xi32>, %drw: tensor<128xbf16>)
    -> tensor<64x8xbf16> {
  %dl = moe.expert_choice_grad %p, %rt, %off row_weight_grad %drw
      : tensor<128xbf16> : tensor<64x8xbf16>, tensor<128xi32>, tensor<9xi32>
  return %dl : tensor<64x8xbf16>
}

// CHECK-LABEL: func.func @dispatch_grad(
// CHECK: moe.dispatch_grad %arg0, %arg1, %arg2, %arg3 : tensor<?xf16>, tensor<?x2xi32>, tensor<?xi32>, tensor<9xi32>
// CHECK: return {{.*}} : tensor<?x2xf16>
func.func @dispatch_grad(%drw: tensor<?xf16>, %idx: tensor<?x2xi32>,
                         %rt: tensor<?xi32>, %off: tensor<9xi32>)
    -> tensor<?x2xf16> {
  %dw = moe.dispatch_grad %drw, %idx, %rt, %off
      : tensor<?xf16>, tensor<?x2xi32>, tensor<?xi32>, tensor<9xi32>
  return %dw : tensor<?x2xf16>
}

// One gradient per floating-point operand: fc3 and the biases that are
// present follow fc1 and fc2, in operand order.
// CHECK-LABEL: func.func @expert_ffn_grad(
// CHECK: moe.expert_ffn_grad swiglu %arg0, %arg1, %arg2, %arg3, %arg4 fc3 %arg5 : tensor<8x64x128xf32> fc2_bias %arg6 : tensor<8x64xf32> : tensor<?x64xf32>, tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
// CHECK: moe.expert_ffn_grad relu %arg0, %arg1, %arg2, %arg3, %arg4 : tensor<?x64xf32>, tensor<?x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
// CHECK: return {{.*}} : tensor<?x64xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>, tensor<8x64x128xf32>, tensor<8x64xf32>, tensor<?x64xf32>
func.func @expert_ffn_grad(%dy: tensor<?x64xf32>, %xs: tensor<?x64xf32>,
                           %off: tensor<9xi32>, %w1: tensor<8x64x128xf32>,
                           %w2: tensor<8x128x64xf32>, %w3: tensor<8x64x128xf32>,
                           %b2: tensor<8x64xf32>)
    -> (tensor<?x64xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>,
        tensor<8x64x128xf32>, tensor<8x64xf32>, tensor<?x64xf32>) {
  %dx, %d1, %d2, %d3, %db2 = moe.expert_ffn_grad swiglu %dy, %xs, %off, %w1,
      %w2 fc3 %w3 : tensor<8x64x128xf32> fc2_bias %b2 : tensor<8x64xf32>
      : tensor<?x64xf32>, tensor<?x64xf32>, tensor<9xi32>,
        tensor<8x64x128xf32>, tensor<8x128x64xf32>
  %rx, %r1, %r2 = moe.expert_ffn_grad relu %dy, %xs, %off, %w1, %w2
      : tensor<?x64xf32>, tensor<?x64xf32>, tensor<9xi32>,
        tensor<8x64x128xf32>, tensor<8x128x64xf32>
  return %dx, %d1, %d2, %d3, %db2, %rx
      : tensor<?x64xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>,
        tensor<8x64x128xf32>, tensor<8x64xf32>, tensor<?x64xf32>
}

// CHECK-LABEL: func.func @expert_ffn_grad_swiglu_parameters(
// CHECK: moe.expert_ffn_grad swiglu %arg0, %arg1, %arg2, %arg3, %arg4 fc3 %arg5 : tensor<8x64x128xf32> {swiglu_alpha = 1.702000e+00 : f32, swiglu_beta = 1.000000e+00 : f32, swiglu_limit = 7.000000e+00 : f32} : tensor<?x64xf32>
// CHECK: moe.expert_ffn_grad geglu_tanh %arg0, %arg1, %arg2, %arg3, %arg4 fc3 %arg5 : tensor<8x64x128xf32> : tensor<?x64xf32>
func.func @expert_ffn_grad_swiglu_parameters(
    %dy: tensor<?x64xf32>, %xs: tensor<?x64xf32>, %off: tensor<9xi32>,
    %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>,
    %w3: tensor<8x64x128xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %dx, %d1, %d2, %d3 = moe.expert_ffn_grad swiglu %dy, %xs, %off, %w1, %w2
      fc3 %w3 : tensor<8x64x128xf32>
      {swiglu_alpha = 1.702 : f32, swiglu_beta = 1.0 : f32,
       swiglu_limit = 7.0 : f32}
      : tensor<?x64xf32>, tensor<?x64xf32>, tensor<9xi32>,
        tensor<8x64x128xf32>, tensor<8x128x64xf32>
  %gx, %g1, %g2, %g3 = moe.expert_ffn_grad geglu_tanh %dy, %xs, %off, %w1,
      %w2 fc3 %w3 : tensor<8x64x128xf32>
      : tensor<?x64xf32>, tensor<?x64xf32>, tensor<9xi32>,
        tensor<8x64x128xf32>, tensor<8x128x64xf32>
  return %dx, %gx : tensor<?x64xf32>, tensor<?x64xf32>
}

// CHECK-LABEL: func.func @combine_grad(
// CHECK: moe.combine_grad %arg0, %arg1, %arg2, %arg3 : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?xi32>, tensor<?xf32>
// CHECK: return {{.*}} : tensor<?x64xf32>, tensor<?xf32>
func.func @combine_grad(%dy: tensor<?x64xf32>, %ys: tensor<?x64xf32>,
                        %rt: tensor<?xi32>, %rw: tensor<?xf32>)
    -> (tensor<?x64xf32>, tensor<?xf32>) {
  %dys, %drw = moe.combine_grad %dy, %ys, %rt, %rw
      : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?xi32>, tensor<?xf32>
  return %dys, %drw : tensor<?x64xf32>, tensor<?xf32>
}

// CHECK-LABEL: func.func @shared_expert_grad(
// CHECK: moe.shared_expert_grad gelu %arg0, %arg1, %arg2, %arg3 gate %arg4 : tensor<64x1xf32> : tensor<?x64xf32>, tensor<?x64xf32>, tensor<64x256xf32>, tensor<256x64xf32>
// CHECK: return {{.*}} : tensor<?x64xf32>, tensor<64x256xf32>, tensor<256x64xf32>, tensor<64x1xf32>
func.func @shared_expert_grad(%dy: tensor<?x64xf32>, %x: tensor<?x64xf32>,
                              %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>,
                              %g: tensor<64x1xf32>)
    -> (tensor<?x64xf32>, tensor<64x256xf32>, tensor<256x64xf32>,
        tensor<64x1xf32>) {
  %dx, %d1, %d2, %dg = moe.shared_expert_grad gelu %dy, %x, %s1, %s2
      gate %g : tensor<64x1xf32>
      : tensor<?x64xf32>, tensor<?x64xf32>, tensor<64x256xf32>,
        tensor<256x64xf32>
  return %dx, %d1, %d2, %dg : tensor<?x64xf32>, tensor<64x256xf32>,
      tensor<256x64xf32>, tensor<64x1xf32>
}

// CHECK-LABEL: func.func @loss_grads(
// CHECK: moe.load_balancing_loss_grad %arg0, %arg1, %arg2 : tensor<f32>, tensor<?x8xbf16>, tensor<?x2xi32>
// CHECK: moe.z_loss_grad %arg0, %arg1 : tensor<f32>, tensor<?x8xbf16>
// CHECK: return {{.*}} : tensor<?x8xbf16>, tensor<?x8xbf16>
func.func @loss_grads(%g: tensor<f32>, %p: tensor<?x8xbf16>,
                      %idx: tensor<?x2xi32>)
    -> (tensor<?x8xbf16>, tensor<?x8xbf16>) {
  %dp = moe.load_balancing_loss_grad %g, %p, %idx
      : tensor<f32>, tensor<?x8xbf16>, tensor<?x2xi32>
  %dl = moe.z_loss_grad %g, %p : tensor<f32>, tensor<?x8xbf16>
  return %dp, %dl : tensor<?x8xbf16>, tensor<?x8xbf16>
}
