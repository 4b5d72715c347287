// RUN: moe-opt %s | moe-opt | FileCheck %s
// RUN: moe-opt %s --mlir-print-op-generic | moe-opt | FileCheck %s
// RUN: moe-opt %s -mlir-print-debuginfo -emit-bytecode | moe-opt | FileCheck %s

// Every nn op in its custom form. Functions return inferred results with an
// explicit type, so the func.return verifier pins the inferred type.

//===----------------------------------------------------------------------===//
// Broadcasting binary ops
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @add_broadcast
// CHECK-SAME: -> tensor<?x8x64xf32>
// CHECK: %[[R:.*]] = nn.add %arg0, %arg1 : tensor<?x1x64xf32>, tensor<8x64xf32>
// CHECK: return %[[R]] : tensor<?x8x64xf32>
func.func @add_broadcast(%a: tensor<?x1x64xf32>, %b: tensor<8x64xf32>)
    -> tensor<?x8x64xf32> {
  %0 = nn.add %a, %b : tensor<?x1x64xf32>, tensor<8x64xf32>
  return %0 : tensor<?x8x64xf32>
}

// A dynamic extent against a static one (not 1) takes the static extent.
// CHECK-LABEL: func.func @add_merge_dynamic
// CHECK: nn.add %arg0, %arg1 : tensor<?x64xf32>, tensor<4x?xf32>
// CHECK: return %{{.*}} : tensor<4x64xf32>
func.func @add_merge_dynamic(%a: tensor<?x64xf32>, %b: tensor<4x?xf32>)
    -> tensor<4x64xf32> {
  %0 = nn.add %a, %b : tensor<?x64xf32>, tensor<4x?xf32>
  return %0 : tensor<4x64xf32>
}

// An extent of 1 against a dynamic one stays dynamic.
// CHECK-LABEL: func.func @sub
// CHECK: nn.sub %arg0, %arg1 : tensor<1x?xf16>, tensor<?x1xf16>
// CHECK: return %{{.*}} : tensor<?x?xf16>
func.func @sub(%a: tensor<1x?xf16>, %b: tensor<?x1xf16>) -> tensor<?x?xf16> {
  %0 = nn.sub %a, %b : tensor<1x?xf16>, tensor<?x1xf16>
  return %0 : tensor<?x?xf16>
}

// A 0-d operand broadcasts to any shape.
// CHECK-LABEL: func.func @mul_scalar
// CHECK: nn.mul %arg0, %arg1 : tensor<2x3xbf16>, tensor<bf16>
// CHECK: return %{{.*}} : tensor<2x3xbf16>
func.func @mul_scalar(%a: tensor<2x3xbf16>, %b: tensor<bf16>)
    -> tensor<2x3xbf16> {
  %0 = nn.mul %a, %b : tensor<2x3xbf16>, tensor<bf16>
  return %0 : tensor<2x3xbf16>
}

// CHECK-LABEL: func.func @div
// CHECK: nn.div %arg0, %arg1 : tensor<?x64xf32>, tensor<64xf32>
// CHECK: return %{{.*}} : tensor<?x64xf32>
func.func @div(%a: tensor<?x64xf32>, %b: tensor<64xf32>) -> tensor<?x64xf32> {
  %0 = nn.div %a, %b : tensor<?x64xf32>, tensor<64xf32>
  return %0 : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @pow
// CHECK: nn.pow %arg0, %arg1 : tensor<bf16>, tensor<bf16>
// CHECK: return %{{.*}} : tensor<bf16>
func.func @pow(%a: tensor<bf16>, %b: tensor<bf16>) -> tensor<bf16> {
  %0 = nn.pow %a, %b : tensor<bf16>, tensor<bf16>
  return %0 : tensor<bf16>
}

//===----------------------------------------------------------------------===//
// Unary ops
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @neg
// CHECK: nn.neg %arg0 : tensor<2x?x64xf32>
func.func @neg(%x: tensor<2x?x64xf32>) -> tensor<2x?x64xf32> {
  %0 = nn.neg %x : tensor<2x?x64xf32>
  return %0 : tensor<2x?x64xf32>
}

// CHECK-LABEL: func.func @exp
// CHECK: nn.exp %arg0 : tensor<8xf16>
func.func @exp(%x: tensor<8xf16>) -> tensor<8xf16> {
  %0 = nn.exp %x : tensor<8xf16>
  return %0 : tensor<8xf16>
}

// CHECK-LABEL: func.func @log
// CHECK: nn.log %arg0 : tensor<?xbf16>
func.func @log(%x: tensor<?xbf16>) -> tensor<?xbf16> {
  %0 = nn.log %x : tensor<?xbf16>
  return %0 : tensor<?xbf16>
}

// CHECK-LABEL: func.func @sqrt
// CHECK: nn.sqrt %arg0 : tensor<f32>
func.func @sqrt(%x: tensor<f32>) -> tensor<f32> {
  %0 = nn.sqrt %x : tensor<f32>
  return %0 : tensor<f32>
}

// CHECK-LABEL: func.func @rsqrt
// CHECK: nn.rsqrt %arg0 : tensor<4x4xf32>
func.func @rsqrt(%x: tensor<4x4xf32>) -> tensor<4x4xf32> {
  %0 = nn.rsqrt %x : tensor<4x4xf32>
  return %0 : tensor<4x4xf32>
}

// CHECK-LABEL: func.func @reciprocal
// CHECK: nn.reciprocal %arg0 : tensor<?x?xf16>
func.func @reciprocal(%x: tensor<?x?xf16>) -> tensor<?x?xf16> {
  %0 = nn.reciprocal %x : tensor<?x?xf16>
  return %0 : tensor<?x?xf16>
}

// CHECK-LABEL: func.func @tanh
// CHECK: nn.tanh %arg0 : tensor<3xbf16>
func.func @tanh(%x: tensor<3xbf16>) -> tensor<3xbf16> {
  %0 = nn.tanh %x : tensor<3xbf16>
  return %0 : tensor<3xbf16>
}

// CHECK-LABEL: func.func @erf
// CHECK: nn.erf %arg0 : tensor<?x8xf32>
func.func @erf(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %0 = nn.erf %x : tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// CHECK-LABEL: func.func @sigmoid
// CHECK: nn.sigmoid %arg0 : tensor<2x?xf16>
func.func @sigmoid(%x: tensor<2x?xf16>) -> tensor<2x?xf16> {
  %0 = nn.sigmoid %x : tensor<2x?xf16>
  return %0 : tensor<2x?xf16>
}

// CHECK-LABEL: func.func @relu
// CHECK: nn.relu %arg0 : tensor<0x4xf32>
func.func @relu(%x: tensor<0x4xf32>) -> tensor<0x4xf32> {
  %0 = nn.relu %x : tensor<0x4xf32>
  return %0 : tensor<0x4xf32>
}

// CHECK-LABEL: func.func @silu
// CHECK: nn.silu %arg0 : tensor<2x?x256xbf16>
func.func @silu(%x: tensor<2x?x256xbf16>) -> tensor<2x?x256xbf16> {
  %0 = nn.silu %x : tensor<2x?x256xbf16>
  return %0 : tensor<2x?x256xbf16>
}

// The default approximation is not printed, even when spelled out.
// CHECK-LABEL: func.func @gelu
// CHECK: nn.gelu %arg0 : tensor<8x64xf32>
// CHECK-NEXT: nn.gelu %arg0 : tensor<8x64xf32>
// CHECK-NEXT: nn.gelu %arg0 approximate = tanh : tensor<8x64xf32>
func.func @gelu(%x: tensor<8x64xf32>)
    -> (tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x64xf32>) {
  %0 = nn.gelu %x : tensor<8x64xf32>
  %1 = nn.gelu %x approximate = none : tensor<8x64xf32>
  %2 = nn.gelu %x approximate = tanh : tensor<8x64xf32>
  return %0, %1, %2 : tensor<8x64xf32>, tensor<8x64xf32>, tensor<8x64xf32>
}

//===----------------------------------------------------------------------===//
// Linear algebra
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @linear
// CHECK: nn.linear %arg0, %arg1 : tensor<?x64xf32>, tensor<64x256xf32>
// CHECK: return %{{.*}} : tensor<?x256xf32>
func.func @linear(%x: tensor<?x64xf32>, %w: tensor<64x256xf32>)
    -> tensor<?x256xf32> {
  %0 = nn.linear %x, %w : tensor<?x64xf32>, tensor<64x256xf32>
  return %0 : tensor<?x256xf32>
}

// The bias fixes an out size the weight leaves dynamic.
// CHECK-LABEL: func.func @linear_bias
// CHECK: nn.linear %arg0, %arg1 bias %arg2 : tensor<2x?x64xbf16>, tensor<?x?xbf16>, tensor<128xbf16>
// CHECK: return %{{.*}} : tensor<2x?x128xbf16>
func.func @linear_bias(%x: tensor<2x?x64xbf16>, %w: tensor<?x?xbf16>,
                       %b: tensor<128xbf16>) -> tensor<2x?x128xbf16> {
  %0 = nn.linear %x, %w bias %b
      : tensor<2x?x64xbf16>, tensor<?x?xbf16>, tensor<128xbf16>
  return %0 : tensor<2x?x128xbf16>
}

// CHECK-LABEL: func.func @matmul
// CHECK: nn.matmul %arg0, %arg1 : tensor<4x8xf32>, tensor<8x16xf32>
// CHECK: return %{{.*}} : tensor<4x16xf32>
func.func @matmul(%a: tensor<4x8xf32>, %b: tensor<8x16xf32>)
    -> tensor<4x16xf32> {
  %0 = nn.matmul %a, %b : tensor<4x8xf32>, tensor<8x16xf32>
  return %0 : tensor<4x16xf32>
}

// Q K^T in attention: [b, h, s, d] x [b, h, s, d]^T -> [b, h, s, s].
// CHECK-LABEL: func.func @matmul_transpose_rhs
// CHECK: nn.matmul %arg0, %arg1 {transpose_rhs} : tensor<2x4x?x16xf16>, tensor<2x4x?x16xf16>
// CHECK: return %{{.*}} : tensor<2x4x?x?xf16>
func.func @matmul_transpose_rhs(%q: tensor<2x4x?x16xf16>,
                                %k: tensor<2x4x?x16xf16>)
    -> tensor<2x4x?x?xf16> {
  %0 = nn.matmul %q, %k {transpose_rhs}
      : tensor<2x4x?x16xf16>, tensor<2x4x?x16xf16>
  return %0 : tensor<2x4x?x?xf16>
}

// CHECK-LABEL: func.func @matmul_transpose_lhs
// CHECK: nn.matmul %arg0, %arg1 {transpose_lhs} : tensor<16x4xbf16>, tensor<16x8xbf16>
// CHECK: return %{{.*}} : tensor<4x8xbf16>
func.func @matmul_transpose_lhs(%a: tensor<16x4xbf16>, %b: tensor<16x8xbf16>)
    -> tensor<4x8xbf16> {
  %0 = nn.matmul %a, %b {transpose_lhs} : tensor<16x4xbf16>, tensor<16x8xbf16>
  return %0 : tensor<4x8xbf16>
}

// CHECK-LABEL: func.func @matmul_transpose_both
// CHECK: nn.matmul %arg0, %arg1 {transpose_lhs, transpose_rhs} : tensor<16x4xf32>, tensor<8x16xf32>
// CHECK: return %{{.*}} : tensor<4x8xf32>
func.func @matmul_transpose_both(%a: tensor<16x4xf32>, %b: tensor<8x16xf32>)
    -> tensor<4x8xf32> {
  %0 = nn.matmul %a, %b {transpose_lhs, transpose_rhs}
      : tensor<16x4xf32>, tensor<8x16xf32>
  return %0 : tensor<4x8xf32>
}

// A rank-2 rhs is shared by every batch of the lhs.
// CHECK-LABEL: func.func @matmul_shared_rhs
// CHECK: nn.matmul %arg0, %arg1 : tensor<2x?x8x16xf32>, tensor<16x32xf32>
// CHECK: return %{{.*}} : tensor<2x?x8x32xf32>
func.func @matmul_shared_rhs(%a: tensor<2x?x8x16xf32>, %b: tensor<16x32xf32>)
    -> tensor<2x?x8x32xf32> {
  %0 = nn.matmul %a, %b : tensor<2x?x8x16xf32>, tensor<16x32xf32>
  return %0 : tensor<2x?x8x32xf32>
}

// Batch extents of 1 broadcast; a dynamic K matches a static one.
// CHECK-LABEL: func.func @matmul_batch_broadcast
// CHECK: nn.matmul %arg0, %arg1 : tensor<1x4x?xf32>, tensor<3x8x2xf32>
// CHECK: return %{{.*}} : tensor<3x4x2xf32>
func.func @matmul_batch_broadcast(%a: tensor<1x4x?xf32>,
                                  %b: tensor<3x8x2xf32>)
    -> tensor<3x4x2xf32> {
  %0 = nn.matmul %a, %b : tensor<1x4x?xf32>, tensor<3x8x2xf32>
  return %0 : tensor<3x4x2xf32>
}

//===----------------------------------------------------------------------===//
// Normalisation, softmax, embedding
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @rms_norm
// CHECK: nn.rms_norm %arg0, %arg1 : tensor<2x?x64xf16>, tensor<64xf16>
// CHECK-NEXT: nn.rms_norm %arg0, %arg1 {epsilon = 9.99999974E-6 : f32} : tensor<2x?x64xf16>, tensor<64xf16>
// CHECK-NEXT: nn.rms_norm %arg0, %arg1 {epsilon = 0.000000e+00 : f32} : tensor<2x?x64xf16>, tensor<64xf16>
func.func @rms_norm(%x: tensor<2x?x64xf16>, %g: tensor<64xf16>)
    -> (tensor<2x?x64xf16>, tensor<2x?x64xf16>, tensor<2x?x64xf16>) {
  %0 = nn.rms_norm %x, %g : tensor<2x?x64xf16>, tensor<64xf16>
  %1 = nn.rms_norm %x, %g {epsilon = 1.0e-05 : f32}
      : tensor<2x?x64xf16>, tensor<64xf16>
  %2 = nn.rms_norm %x, %g {epsilon = 0.0 : f32}
      : tensor<2x?x64xf16>, tensor<64xf16>
  return %0, %1, %2
      : tensor<2x?x64xf16>, tensor<2x?x64xf16>, tensor<2x?x64xf16>
}

// A dynamic feature extent matches a static weight.
// CHECK-LABEL: func.func @rms_norm_dynamic_features
// CHECK: nn.rms_norm %arg0, %arg1 : tensor<?x?xbf16>, tensor<64xbf16>
func.func @rms_norm_dynamic_features(%x: tensor<?x?xbf16>,
                                     %g: tensor<64xbf16>) -> tensor<?x?xbf16> {
  %0 = nn.rms_norm %x, %g : tensor<?x?xbf16>, tensor<64xbf16>
  return %0 : tensor<?x?xbf16>
}

// CHECK-LABEL: func.func @layer_norm
// CHECK: nn.layer_norm %arg0, %arg1 : tensor<?x64xf32>, tensor<64xf32>
// CHECK-NEXT: nn.layer_norm %arg0, %arg1 bias %arg2 {epsilon = 9.99999997E-7 : f32} : tensor<?x64xf32>, tensor<64xf32>, tensor<64xf32>
func.func @layer_norm(%x: tensor<?x64xf32>, %g: tensor<64xf32>,
                      %b: tensor<64xf32>)
    -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %0 = nn.layer_norm %x, %g : tensor<?x64xf32>, tensor<64xf32>
  %1 = nn.layer_norm %x, %g bias %b {epsilon = 1.0e-06 : f32}
      : tensor<?x64xf32>, tensor<64xf32>, tensor<64xf32>
  return %0, %1 : tensor<?x64xf32>, tensor<?x64xf32>
}

// CHECK-LABEL: func.func @layer_norm_f16_bias
// CHECK: nn.layer_norm %arg0, %arg1 bias %arg2 : tensor<2x3x8xf16>, tensor<?xf16>, tensor<8xf16>
func.func @layer_norm_f16_bias(%x: tensor<2x3x8xf16>, %g: tensor<?xf16>,
                               %b: tensor<8xf16>) -> tensor<2x3x8xf16> {
  %0 = nn.layer_norm %x, %g bias %b
      : tensor<2x3x8xf16>, tensor<?xf16>, tensor<8xf16>
  return %0 : tensor<2x3x8xf16>
}

// The default axis (-1) is not printed.
// CHECK-LABEL: func.func @softmax
// CHECK: nn.softmax %arg0 : tensor<?x8x16xf32>
// CHECK-NEXT: nn.softmax %arg0 : tensor<?x8x16xf32>
// CHECK-NEXT: nn.softmax %arg0 {axis = 0 : i64} : tensor<?x8x16xf32>
// CHECK-NEXT: nn.softmax %arg0 {axis = -3 : i64} : tensor<?x8x16xf32>
// CHECK-NEXT: nn.softmax %arg0 {axis = 2 : i64} : tensor<?x8x16xf32>
func.func @softmax(%x: tensor<?x8x16xf32>)
    -> (tensor<?x8x16xf32>, tensor<?x8x16xf32>, tensor<?x8x16xf32>,
        tensor<?x8x16xf32>, tensor<?x8x16xf32>) {
  %0 = nn.softmax %x : tensor<?x8x16xf32>
  %1 = nn.softmax %x {axis = -1 : i64} : tensor<?x8x16xf32>
  %2 = nn.softmax %x {axis = 0 : i64} : tensor<?x8x16xf32>
  %3 = nn.softmax %x {axis = -3 : i64} : tensor<?x8x16xf32>
  %4 = nn.softmax %x {axis = 2 : i64} : tensor<?x8x16xf32>
  return %0, %1, %2, %3, %4
      : tensor<?x8x16xf32>, tensor<?x8x16xf32>, tensor<?x8x16xf32>,
        tensor<?x8x16xf32>, tensor<?x8x16xf32>
}

// CHECK-LABEL: func.func @softmax_bf16
// CHECK: nn.softmax %arg0 : tensor<4xbf16>
func.func @softmax_bf16(%x: tensor<4xbf16>) -> tensor<4xbf16> {
  %0 = nn.softmax %x : tensor<4xbf16>
  return %0 : tensor<4xbf16>
}

// CHECK-LABEL: func.func @embedding_i32
// CHECK: nn.embedding %arg0, %arg1 : tensor<256x64xf32>, tensor<2x?xi32>
// CHECK: return %{{.*}} : tensor<2x?x64xf32>
func.func @embedding_i32(%table: tensor<256x64xf32>, %ids: tensor<2x?xi32>)
    -> tensor<2x?x64xf32> {
  %0 = nn.embedding %table, %ids : tensor<256x64xf32>, tensor<2x?xi32>
  return %0 : tensor<2x?x64xf32>
}

// CHECK-LABEL: func.func @embedding_i64
// CHECK: nn.embedding %arg0, %arg1 : tensor<?x128xbf16>, tensor<?xi64>
// CHECK: return %{{.*}} : tensor<?x128xbf16>
func.func @embedding_i64(%table: tensor<?x128xbf16>, %ids: tensor<?xi64>)
    -> tensor<?x128xbf16> {
  %0 = nn.embedding %table, %ids : tensor<?x128xbf16>, tensor<?xi64>
  return %0 : tensor<?x128xbf16>
}

// A single id gives a single row.
// CHECK-LABEL: func.func @embedding_scalar_id
// CHECK: nn.embedding %arg0, %arg1 : tensor<256x?xf16>, tensor<i64>
// CHECK: return %{{.*}} : tensor<?xf16>
func.func @embedding_scalar_id(%table: tensor<256x?xf16>, %id: tensor<i64>)
    -> tensor<?xf16> {
  %0 = nn.embedding %table, %id : tensor<256x?xf16>, tensor<i64>
  return %0 : tensor<?xf16>
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

// The default theta (10000) is not printed.
// CHECK-LABEL: func.func @rotary
// CHECK: nn.rotary %arg0 : tensor<1x?x4x16xf32>
// CHECK-NEXT: nn.rotary %arg0 {theta = 5.000000e+05 : f32} : tensor<1x?x4x16xf32>
// CHECK-NEXT: nn.rotary %arg0 {rotary_dim = 8 : i64} : tensor<1x?x4x16xf32>
// CHECK-NEXT: nn.rotary %arg0 {interleaved} : tensor<1x?x4x16xf32>
// CHECK-NEXT: nn.rotary %arg0 {interleaved, rotary_dim = 16 : i64, theta = 1.000000e+06 : f32} : tensor<1x?x4x16xf32>
func.func @rotary(%x: tensor<1x?x4x16xf32>)
    -> (tensor<1x?x4x16xf32>, tensor<1x?x4x16xf32>, tensor<1x?x4x16xf32>,
        tensor<1x?x4x16xf32>, tensor<1x?x4x16xf32>) {
  %0 = nn.rotary %x {theta = 10000.0 : f32} : tensor<1x?x4x16xf32>
  %1 = nn.rotary %x {theta = 500000.0 : f32} : tensor<1x?x4x16xf32>
  %2 = nn.rotary %x {rotary_dim = 8 : i64} : tensor<1x?x4x16xf32>
  %3 = nn.rotary %x {interleaved} : tensor<1x?x4x16xf32>
  %4 = nn.rotary %x {interleaved, rotary_dim = 16 : i64, theta = 1.0e+06 : f32}
      : tensor<1x?x4x16xf32>
  return %0, %1, %2, %3, %4
      : tensor<1x?x4x16xf32>, tensor<1x?x4x16xf32>, tensor<1x?x4x16xf32>,
        tensor<1x?x4x16xf32>, tensor<1x?x4x16xf32>
}

// CHECK-LABEL: func.func @rotary_positions_seq
// CHECK: nn.rotary %arg0 positions %arg1 : tensor<2x?x2x16xbf16>, tensor<?xi32>
func.func @rotary_positions_seq(%x: tensor<2x?x2x16xbf16>, %pos: tensor<?xi32>)
    -> tensor<2x?x2x16xbf16> {
  %0 = nn.rotary %x positions %pos : tensor<2x?x2x16xbf16>, tensor<?xi32>
  return %0 : tensor<2x?x2x16xbf16>
}

// CHECK-LABEL: func.func @rotary_positions_batch_seq
// CHECK: nn.rotary %arg0 positions %arg1 {rotary_dim = 4 : i64} : tensor<2x7x8x?xf16>, tensor<2x7xi64>
func.func @rotary_positions_batch_seq(%x: tensor<2x7x8x?xf16>,
                                      %pos: tensor<2x7xi64>)
    -> tensor<2x7x8x?xf16> {
  %0 = nn.rotary %x positions %pos {rotary_dim = 4 : i64}
      : tensor<2x7x8x?xf16>, tensor<2x7xi64>
  return %0 : tensor<2x7x8x?xf16>
}

// Odd head_dim is fine when only an even prefix rotates.
// CHECK-LABEL: func.func @rotary_partial_odd_head
// CHECK: nn.rotary %arg0 {rotary_dim = 6 : i64} : tensor<1x3x2x7xf32>
func.func @rotary_partial_odd_head(%x: tensor<1x3x2x7xf32>)
    -> tensor<1x3x2x7xf32> {
  %0 = nn.rotary %x {rotary_dim = 6 : i64} : tensor<1x3x2x7xf32>
  return %0 : tensor<1x3x2x7xf32>
}

// Grouped-query attention: 8 query heads share 2 key/value heads.
// CHECK-LABEL: func.func @attention_gqa
// CHECK: nn.attention %arg0, %arg1, %arg2 : tensor<2x?x8x16xf32>, tensor<2x?x2x16xf32>, tensor<2x?x2x16xf32>
// CHECK: return %{{.*}} : tensor<2x?x8x16xf32>
func.func @attention_gqa(%q: tensor<2x?x8x16xf32>, %k: tensor<2x?x2x16xf32>,
                         %v: tensor<2x?x2x16xf32>) -> tensor<2x?x8x16xf32> {
  %0 = nn.attention %q, %k, %v
      : tensor<2x?x8x16xf32>, tensor<2x?x2x16xf32>, tensor<2x?x2x16xf32>
  return %0 : tensor<2x?x8x16xf32>
}

// Multi-query attention decoding one token against a cache.
// CHECK-LABEL: func.func @attention_mqa
// CHECK: nn.attention %arg0, %arg1, %arg2 : tensor<1x1x4x64xbf16>, tensor<1x?x1x64xbf16>, tensor<1x?x1x64xbf16>
// CHECK: return %{{.*}} : tensor<1x1x4x64xbf16>
func.func @attention_mqa(%q: tensor<1x1x4x64xbf16>, %k: tensor<1x?x1x64xbf16>,
                         %v: tensor<1x?x1x64xbf16>) -> tensor<1x1x4x64xbf16> {
  %0 = nn.attention %q, %k, %v
      : tensor<1x1x4x64xbf16>, tensor<1x?x1x64xbf16>, tensor<1x?x1x64xbf16>
  return %0 : tensor<1x1x4x64xbf16>
}

// The default causal (true) and scale (0) are not printed. The result takes
// the batch from whichever operand knows it and head_dim from 'value'.
// CHECK-LABEL: func.func @attention_attrs
// CHECK: nn.attention %arg0, %arg1, %arg2 {causal = false} : tensor<?x5x4x8xf16>, tensor<?x5x4x8xf16>, tensor<3x5x4x32xf16>
// CHECK-NEXT: nn.attention %arg0, %arg1, %arg2 {scale = 1.250000e-01 : f32} : tensor<?x5x4x8xf16>, tensor<?x5x4x8xf16>, tensor<3x5x4x32xf16>
// CHECK-NEXT: nn.attention %arg0, %arg1, %arg2 : tensor<?x5x4x8xf16>, tensor<?x5x4x8xf16>, tensor<3x5x4x32xf16>
// CHECK: return %{{.*}} : tensor<3x5x4x32xf16>, tensor<3x5x4x32xf16>, tensor<3x5x4x32xf16>
func.func @attention_attrs(%q: tensor<?x5x4x8xf16>, %k: tensor<?x5x4x8xf16>,
                           %v: tensor<3x5x4x32xf16>)
    -> (tensor<3x5x4x32xf16>, tensor<3x5x4x32xf16>, tensor<3x5x4x32xf16>) {
  %0 = nn.attention %q, %k, %v {causal = false}
      : tensor<?x5x4x8xf16>, tensor<?x5x4x8xf16>, tensor<3x5x4x32xf16>
  %1 = nn.attention %q, %k, %v {scale = 0.125 : f32}
      : tensor<?x5x4x8xf16>, tensor<?x5x4x8xf16>, tensor<3x5x4x32xf16>
  %2 = nn.attention %q, %k, %v {causal = true, scale = 0.0 : f32}
      : tensor<?x5x4x8xf16>, tensor<?x5x4x8xf16>, tensor<3x5x4x32xf16>
  return %0, %1, %2
      : tensor<3x5x4x32xf16>, tensor<3x5x4x32xf16>, tensor<3x5x4x32xf16>
}

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @reshape
// CHECK: nn.reshape %arg0 : tensor<2x?x64xf32> -> tensor<?x64xf32>
// CHECK-NEXT: nn.reshape %arg1 : tensor<4x6xf32> -> tensor<?x8xf32>
// CHECK-NEXT: nn.reshape %arg1 : tensor<4x6xf32> -> tensor<2x3x4xf32>
// CHECK-NEXT: nn.reshape %arg0 : tensor<2x?x64xf32> -> tensor<2x3x64xf32>
func.func @reshape(%x: tensor<2x?x64xf32>, %y: tensor<4x6xf32>)
    -> (tensor<?x64xf32>, tensor<?x8xf32>, tensor<2x3x4xf32>,
        tensor<2x3x64xf32>) {
  %0 = nn.reshape %x : tensor<2x?x64xf32> -> tensor<?x64xf32>
  %1 = nn.reshape %y : tensor<4x6xf32> -> tensor<?x8xf32>
  %2 = nn.reshape %y : tensor<4x6xf32> -> tensor<2x3x4xf32>
  %3 = nn.reshape %x : tensor<2x?x64xf32> -> tensor<2x3x64xf32>
  return %0, %1, %2, %3
      : tensor<?x64xf32>, tensor<?x8xf32>, tensor<2x3x4xf32>,
        tensor<2x3x64xf32>
}

// Reshape accepts any element type, and 0-d tensors.
// CHECK-LABEL: func.func @reshape_scalar_and_ids
// CHECK: nn.reshape %arg0 : tensor<bf16> -> tensor<1x1xbf16>
// CHECK-NEXT: nn.reshape %arg1 : tensor<2x?xi32> -> tensor<?xi32>
// CHECK-NEXT: nn.reshape %arg2 : tensor<0x4xf16> -> tensor<4x0xf16>
func.func @reshape_scalar_and_ids(%s: tensor<bf16>, %ids: tensor<2x?xi32>,
                                  %e: tensor<0x4xf16>)
    -> (tensor<1x1xbf16>, tensor<?xi32>, tensor<4x0xf16>) {
  %0 = nn.reshape %s : tensor<bf16> -> tensor<1x1xbf16>
  %1 = nn.reshape %ids : tensor<2x?xi32> -> tensor<?xi32>
  %2 = nn.reshape %e : tensor<0x4xf16> -> tensor<4x0xf16>
  return %0, %1, %2 : tensor<1x1xbf16>, tensor<?xi32>, tensor<4x0xf16>
}

// CHECK-LABEL: func.func @transpose
// CHECK: nn.transpose %arg0 [0, 2, 1, 3] : tensor<2x?x8x16xf32>
// CHECK: return %{{.*}} : tensor<2x8x?x16xf32>
func.func @transpose(%x: tensor<2x?x8x16xf32>) -> tensor<2x8x?x16xf32> {
  %0 = nn.transpose %x [0, 2, 1, 3] : tensor<2x?x8x16xf32>
  return %0 : tensor<2x8x?x16xf32>
}

// CHECK-LABEL: func.func @transpose_other_types
// CHECK: nn.transpose %arg0 [2, 0, 1] : tensor<3x?x5xi64>
// CHECK-NEXT: nn.transpose %arg1 [] : tensor<f16>
// CHECK-NEXT: nn.transpose %arg2 [1, 0] : tensor<?x4xbf16>
// CHECK: return %{{.*}} : tensor<5x3x?xi64>, tensor<f16>, tensor<4x?xbf16>
func.func @transpose_other_types(%x: tensor<3x?x5xi64>, %s: tensor<f16>,
                                 %m: tensor<?x4xbf16>)
    -> (tensor<5x3x?xi64>, tensor<f16>, tensor<4x?xbf16>) {
  %0 = nn.transpose %x [2, 0, 1] : tensor<3x?x5xi64>
  %1 = nn.transpose %s [] : tensor<f16>
  %2 = nn.transpose %m [1, 0] : tensor<?x4xbf16>
  return %0, %1, %2 : tensor<5x3x?xi64>, tensor<f16>, tensor<4x?xbf16>
}

//===----------------------------------------------------------------------===//
// Loss
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @cross_entropy
// CHECK: nn.cross_entropy %arg0, %arg1 : tensor<2x?x256xf32>, tensor<2x?xi32>
// CHECK: return %{{.*}} : tensor<f32>
func.func @cross_entropy(%logits: tensor<2x?x256xf32>,
                         %targets: tensor<2x?xi32>) -> tensor<f32> {
  %0 = nn.cross_entropy %logits, %targets
      : tensor<2x?x256xf32>, tensor<2x?xi32>
  return %0 : tensor<f32>
}

// CHECK-LABEL: func.func @cross_entropy_mask
// CHECK: nn.cross_entropy %arg0, %arg1 mask %arg2 : tensor<?x?x256xbf16>, tensor<2x?xi64>, tensor<?x7xbf16>
// CHECK: return %{{.*}} : tensor<bf16>
func.func @cross_entropy_mask(%logits: tensor<?x?x256xbf16>,
                              %targets: tensor<2x?xi64>,
                              %mask: tensor<?x7xbf16>) -> tensor<bf16> {
  %0 = nn.cross_entropy %logits, %targets mask %mask
      : tensor<?x?x256xbf16>, tensor<2x?xi64>, tensor<?x7xbf16>
  return %0 : tensor<bf16>
}

// A single position: [vocab] logits and a 0-d target.
// CHECK-LABEL: func.func @cross_entropy_single
// CHECK: nn.cross_entropy %arg0, %arg1 : tensor<32xf16>, tensor<i32>
// CHECK: return %{{.*}} : tensor<f16>
func.func @cross_entropy_single(%logits: tensor<32xf16>, %target: tensor<i32>)
    -> tensor<f16> {
  %0 = nn.cross_entropy %logits, %target : tensor<32xf16>, tensor<i32>
  return %0 : tensor<f16>
}

//===----------------------------------------------------------------------===//
// Integer arithmetic, reductions, reshape with dynamic sizes
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @integer_arithmetic
// CHECK: nn.add %arg0, %arg1 : tensor<?x4xi64>, tensor<4xi64>
// CHECK: nn.sub %arg0, %arg1 : tensor<?x4xi64>, tensor<4xi64>
// CHECK: nn.mul %arg0, %arg1 : tensor<?x4xi64>, tensor<4xi64>
// CHECK: nn.div %arg2, %arg2 : tensor<3xi32>, tensor<3xi32>
// CHECK: nn.neg %arg2 : tensor<3xi32>
func.func @integer_arithmetic(%a: tensor<?x4xi64>, %b: tensor<4xi64>,
                              %c: tensor<3xi32>)
    -> (tensor<?x4xi64>, tensor<?x4xi64>, tensor<?x4xi64>, tensor<3xi32>,
        tensor<3xi32>) {
  %0 = nn.add %a, %b : tensor<?x4xi64>, tensor<4xi64>
  %1 = nn.sub %a, %b : tensor<?x4xi64>, tensor<4xi64>
  %2 = nn.mul %a, %b : tensor<?x4xi64>, tensor<4xi64>
  %3 = nn.div %c, %c : tensor<3xi32>, tensor<3xi32>
  %4 = nn.neg %c : tensor<3xi32>
  return %0, %1, %2, %3, %4 : tensor<?x4xi64>, tensor<?x4xi64>,
      tensor<?x4xi64>, tensor<3xi32>, tensor<3xi32>
}

// CHECK-LABEL: func.func @reduce_mean_max
// CHECK: nn.reduce_mean %arg0 [-1] {keep_dims} : tensor<2x?x64xf32>
// CHECK: return {{.*}} : tensor<2x?x1xf32>, tensor<64xbf16>
func.func @reduce_mean_max(%x: tensor<2x?x64xf32>, %y: tensor<2x?x64xbf16>)
    -> (tensor<2x?x1xf32>, tensor<64xbf16>) {
  %0 = nn.reduce_mean %x [-1] {keep_dims} : tensor<2x?x64xf32>
  %1 = nn.reduce_max %y [0, 1] : tensor<2x?x64xbf16>
  return %0, %1 : tensor<2x?x1xf32>, tensor<64xbf16>
}

// Several dynamic extents come from `dynamic_sizes`.
// CHECK-LABEL: func.func @reshape_dynamic_sizes
// CHECK: nn.reshape %arg0[%arg1, %arg2] : tensor<?x64xf32> -> tensor<?x?x4x16xf32>
// CHECK: nn.reshape %arg0[%arg1] : tensor<?x64xf32> -> tensor<?x128xf32>
func.func @reshape_dynamic_sizes(%x: tensor<?x64xf32>, %b: index, %s: index)
    -> (tensor<?x?x4x16xf32>, tensor<?x128xf32>) {
  %0 = nn.reshape %x [%b, %s] : tensor<?x64xf32> -> tensor<?x?x4x16xf32>
  %1 = nn.reshape %x [%b] : tensor<?x64xf32> -> tensor<?x128xf32>
  return %0, %1 : tensor<?x?x4x16xf32>, tensor<?x128xf32>
}

//===----------------------------------------------------------------------===//
// Tensor manipulation
//===----------------------------------------------------------------------===//

// The concatenated extent is the sum, dynamic when any input's is; other
// extents merge.
// CHECK-LABEL: func.func @concat
// CHECK: nn.concat %arg0, %arg1 axis = -1 : tensor<2x?x8xf32>, tensor<?x3x4xf32>
// CHECK: nn.concat %arg2, %arg2, %arg2 axis = 0 : tensor<?x2xi1>, tensor<?x2xi1>, tensor<?x2xi1>
// CHECK: nn.concat %arg3 axis = 0 : tensor<3xi64>
// CHECK: return {{.*}} : tensor<2x3x12xf32>, tensor<?x2xi1>, tensor<3xi64>
func.func @concat(%a: tensor<2x?x8xf32>, %b: tensor<?x3x4xf32>,
                  %m: tensor<?x2xi1>, %s: tensor<3xi64>)
    -> (tensor<2x3x12xf32>, tensor<?x2xi1>, tensor<3xi64>) {
  %0 = nn.concat %a, %b axis = -1 : tensor<2x?x8xf32>, tensor<?x3x4xf32>
  %1 = nn.concat %m, %m, %m axis = 0 : tensor<?x2xi1>, tensor<?x2xi1>, tensor<?x2xi1>
  %2 = nn.concat %s axis = 0 : tensor<3xi64>
  return %0, %1, %2 : tensor<2x3x12xf32>, tensor<?x2xi1>, tensor<3xi64>
}

// Static extents follow the ONNX clamping: [0:max:1] is all 2, [1:4) of a
// dynamic extent is dynamic, [-1 : min : -2] of 8 takes 7, 5, 3, 1;
// [-1 : -100 : -1] of 4 takes all 4 backwards and [0:6:4] of 6 takes 0, 4;
// [5:1:1] is empty.
// CHECK-LABEL: func.func @slice
// CHECK: nn.slice %arg0 starts = [0, 1, -1] ends = [9223372036854775807, 4, -9223372036854775808] steps = [1, 1, -2] : tensor<2x?x8xf32>
// CHECK: return {{.*}} : tensor<2x?x4xf32>, tensor<4x2xf16>, tensor<0xi64>
func.func @slice(%x: tensor<2x?x8xf32>, %h: tensor<4x6xf16>, %s: tensor<8xi64>)
    -> (tensor<2x?x4xf32>, tensor<4x2xf16>, tensor<0xi64>) {
  %0 = nn.slice %x starts = [0, 1, -1] ends = [9223372036854775807, 4, -9223372036854775808] steps = [1, 1, -2] : tensor<2x?x8xf32>
  %1 = nn.slice %h starts = [-1, 0] ends = [-100, 6] steps = [-1, 4] : tensor<4x6xf16>
  %2 = nn.slice %s starts = [5] ends = [1] steps = [1] : tensor<8xi64>
  return %0, %1, %2 : tensor<2x?x4xf32>, tensor<4x2xf16>, tensor<0xi64>
}

// The index shape replaces the gathered dimension; a 0-d index drops it.
// CHECK-LABEL: func.func @gather
// CHECK: nn.gather %arg0[%arg1] axis = 1 : tensor<2x?x64xf32>, tensor<?x3xi64>
// CHECK: nn.gather %arg0[%arg2] axis = -2 : tensor<2x?x64xf32>, tensor<i32>
// CHECK: return {{.*}} : tensor<2x?x3x64xf32>, tensor<2x64xf32>
func.func @gather(%x: tensor<2x?x64xf32>, %i: tensor<?x3xi64>, %j: tensor<i32>)
    -> (tensor<2x?x3x64xf32>, tensor<2x64xf32>) {
  %0 = nn.gather %x [%i] axis = 1 : tensor<2x?x64xf32>, tensor<?x3xi64>
  %1 = nn.gather %x [%j] axis = -2 : tensor<2x?x64xf32>, tensor<i32>
  return %0, %1 : tensor<2x?x3x64xf32>, tensor<2x64xf32>
}

// CHECK-LABEL: func.func @where_compare
// CHECK: nn.where %arg0, %arg1, %arg2 : tensor<?x?xi1>, tensor<2x4x?x?xf32>, tensor<f32>
// CHECK: nn.compare eq %arg3, %arg4 : tensor<?x2xi64>, tensor<i64>
// CHECK: nn.compare ne %arg1, %arg2 : tensor<2x4x?x?xf32>, tensor<f32>
// CHECK: return {{.*}} : tensor<2x4x?x?xf32>, tensor<?x2xi1>, tensor<2x4x?x?xi1>
func.func @where_compare(%c: tensor<?x?xi1>, %s: tensor<2x4x?x?xf32>,
                         %f: tensor<f32>, %i: tensor<?x2xi64>, %e: tensor<i64>)
    -> (tensor<2x4x?x?xf32>, tensor<?x2xi1>, tensor<2x4x?x?xi1>) {
  %0 = nn.where %c, %s, %f : tensor<?x?xi1>, tensor<2x4x?x?xf32>, tensor<f32>
  %1 = nn.compare eq %i, %e : tensor<?x2xi64>, tensor<i64>
  %2 = nn.compare ne %s, %f : tensor<2x4x?x?xf32>, tensor<f32>
  return %0, %1, %2 : tensor<2x4x?x?xf32>, tensor<?x2xi1>, tensor<2x4x?x?xi1>
}

// CHECK-LABEL: func.func @cast_expand
// CHECK: nn.cast %arg0 : tensor<?x?xi1> -> tensor<?x?xf32>
// CHECK: nn.cast %arg1 : tensor<4xf16> -> tensor<4xi64>
// CHECK: nn.expand %arg1 : tensor<4xf16> -> tensor<3x4xf16>
// CHECK: nn.expand %arg2[%arg3] : tensor<1x64xbf16> -> tensor<?x64xbf16>
func.func @cast_expand(%m: tensor<?x?xi1>, %h: tensor<4xf16>,
                       %row: tensor<1x64xbf16>, %n: index)
    -> (tensor<?x?xf32>, tensor<4xi64>, tensor<3x4xf16>, tensor<?x64xbf16>) {
  %0 = nn.cast %m : tensor<?x?xi1> -> tensor<?x?xf32>
  %1 = nn.cast %h : tensor<4xf16> -> tensor<4xi64>
  %2 = nn.expand %h : tensor<4xf16> -> tensor<3x4xf16>
  %3 = nn.expand %row [%n] : tensor<1x64xbf16> -> tensor<?x64xbf16>
  return %0, %1, %2, %3 : tensor<?x?xf32>, tensor<4xi64>, tensor<3x4xf16>,
      tensor<?x64xbf16>
}

// CHECK-LABEL: func.func @topk_iota_trilu
// CHECK: %{{.*}}, %{{.*}} = nn.topk %arg0 top 2 : tensor<?x8xf32>
// CHECK: nn.topk %arg0 top 3 {axis = 0 : i64, largest = false} : tensor<?x8xf32>
// CHECK: nn.iota[%arg1] : tensor<?xi64>
// CHECK: nn.iota : tensor<5xf16>
// CHECK: nn.trilu %arg2 {diagonal = -1 : i64, upper} : tensor<3x?x?xi1>
// CHECK: return {{.*}} : tensor<?x2xf32>, tensor<?x2xi64>, tensor<3x8xf32>, tensor<3x8xi64>, tensor<?xi64>, tensor<5xf16>, tensor<3x?x?xi1>
func.func @topk_iota_trilu(%p: tensor<?x8xf32>, %n: index, %m: tensor<3x?x?xi1>)
    -> (tensor<?x2xf32>, tensor<?x2xi64>, tensor<3x8xf32>, tensor<3x8xi64>,
        tensor<?xi64>, tensor<5xf16>, tensor<3x?x?xi1>) {
  %v, %i = nn.topk %p top 2 : tensor<?x8xf32>
  %v2, %i2 = nn.topk %p top 3 {axis = 0 : i64, largest = false} : tensor<?x8xf32>
  %0 = nn.iota [%n] : tensor<?xi64>
  %1 = nn.iota : tensor<5xf16>
  %2 = nn.trilu %m {diagonal = -1 : i64, upper} : tensor<3x?x?xi1>
  return %v, %i, %v2, %i2, %0, %1, %2 : tensor<?x2xf32>, tensor<?x2xi64>,
      tensor<3x8xf32>, tensor<3x8xi64>, tensor<?xi64>, tensor<5xf16>,
      tensor<3x?x?xi1>
}
