// RUN: moe-opt %s | moe-opt | FileCheck %s
// RUN: moe-opt %s --mlir-print-op-generic | moe-opt | FileCheck %s
// RUN: moe-opt %s -mlir-print-debuginfo -emit-bytecode | moe-opt | FileCheck %s

// nn.reduce_sum, the backward ops and nn.rotary's inverse in their custom
// form. Functions return the results with explicit types, so the func.return
// verifier pins the inferred types.

// CHECK-LABEL: func.func @reduce_sum
// CHECK: nn.reduce_sum %arg0 [0, 1] : tensor<2x?x64xf32>
// CHECK-NEXT: nn.reduce_sum %arg0 [-1] {keep_dims} : tensor<2x?x64xf32>
// CHECK-NEXT: nn.reduce_sum %arg0 [] : tensor<2x?x64xf32>
// CHECK-NEXT: nn.reduce_sum %arg0 [2, 0, 1] : tensor<2x?x64xf32>
func.func @reduce_sum(%x: tensor<2x?x64xf32>)
    -> (tensor<64xf32>, tensor<2x?x1xf32>, tensor<2x?x64xf32>, tensor<f32>) {
  %0 = nn.reduce_sum %x [0, 1] : tensor<2x?x64xf32>
  %1 = nn.reduce_sum %x [-1] {keep_dims} : tensor<2x?x64xf32>
  %2 = nn.reduce_sum %x [] : tensor<2x?x64xf32>
  %3 = nn.reduce_sum %x [2, 0, 1] : tensor<2x?x64xf32>
  return %0, %1, %2, %3
      : tensor<64xf32>, tensor<2x?x1xf32>, tensor<2x?x64xf32>, tensor<f32>
}

// CHECK-LABEL: func.func @reduce_sum_bf16_keep_all
// CHECK: nn.reduce_sum %arg0 [0, 1] {keep_dims} : tensor<?x8xbf16>
func.func @reduce_sum_bf16_keep_all(%x: tensor<?x8xbf16>) -> tensor<1x1xbf16> {
  %0 = nn.reduce_sum %x [0, 1] {keep_dims} : tensor<?x8xbf16>
  return %0 : tensor<1x1xbf16>
}

// CHECK-LABEL: func.func @unary_grad
// CHECK: nn.unary_grad neg %arg0, %arg1 : tensor<?x64xf32>
// CHECK-NEXT: nn.unary_grad exp %arg0, %arg1 : tensor<?x64xf32>
// CHECK-NEXT: nn.unary_grad log %arg0, %arg1 : tensor<?x64xf32>
// CHECK-NEXT: nn.unary_grad sqrt %arg0, %arg1 : tensor<?x64xf32>
// CHECK-NEXT: nn.unary_grad rsqrt %arg0, %arg1 : tensor<?x64xf32>
// CHECK-NEXT: nn.unary_grad reciprocal %arg0, %arg1 : tensor<?x64xf32>
// CHECK-NEXT: nn.unary_grad tanh %arg0, %arg1 : tensor<?x64xf32>
// CHECK-NEXT: nn.unary_grad erf %arg0, %arg1 : tensor<?x64xf32>
// CHECK-NEXT: nn.unary_grad sigmoid %arg0, %arg1 : tensor<?x64xf32>
// CHECK-NEXT: nn.unary_grad relu %arg0, %arg1 : tensor<?x64xf32>
// CHECK-NEXT: nn.unary_grad silu %arg0, %arg1 : tensor<?x64xf32>
// CHECK-NEXT: nn.unary_grad gelu %arg0, %arg1 : tensor<?x64xf32>
// CHECK-NEXT: nn.unary_grad gelu_tanh %arg0, %arg1 : tensor<?x64xf32>
func.func @unary_grad(%g: tensor<?x64xf32>, %x: tensor<?x64xf32>) {
  %0 = nn.unary_grad neg %g, %x : tensor<?x64xf32>
  %1 = nn.unary_grad exp %g, %x : tensor<?x64xf32>
  %2 = nn.unary_grad log %g, %x : tensor<?x64xf32>
  %3 = nn.unary_grad sqrt %g, %x : tensor<?x64xf32>
  %4 = nn.unary_grad rsqrt %g, %x : tensor<?x64xf32>
  %5 = nn.unary_grad reciprocal %g, %x : tensor<?x64xf32>
  %6 = nn.unary_grad tanh %g, %x : tensor<?x64xf32>
  %7 = nn.unary_grad erf %g, %x : tensor<?x64xf32>
  %8 = nn.unary_grad sigmoid %g, %x : tensor<?x64xf32>
  %9 = nn.unary_grad relu %g, %x : tensor<?x64xf32>
  %10 = nn.unary_grad silu %g, %x : tensor<?x64xf32>
  %11 = nn.unary_grad gelu %g, %x : tensor<?x64xf32>
  %12 = nn.unary_grad gelu_tanh %g, %x : tensor<?x64xf32>
  return
}

// CHECK-LABEL: func.func @rms_norm_grad
// CHECK: nn.rms_norm_grad %arg0, %arg1, %arg2 : tensor<2x?x64xf32>, tensor<64xf32>
// CHECK-NEXT: nn.rms_norm_grad %arg0, %arg1, %arg2 {epsilon = 9.99999974E-6 : f32} : tensor<2x?x64xf32>, tensor<64xf32>
func.func @rms_norm_grad(%g: tensor<2x?x64xf32>, %x: tensor<2x?x64xf32>,
                         %w: tensor<64xf32>)
    -> (tensor<2x?x64xf32>, tensor<64xf32>) {
  %dx, %dw = nn.rms_norm_grad %g, %x, %w : tensor<2x?x64xf32>, tensor<64xf32>
  %dx2, %dw2 = nn.rms_norm_grad %g, %x, %w {epsilon = 1.0e-05 : f32}
      : tensor<2x?x64xf32>, tensor<64xf32>
  return %dx, %dw2 : tensor<2x?x64xf32>, tensor<64xf32>
}

// CHECK-LABEL: func.func @layer_norm_grad
// CHECK: nn.layer_norm_grad %arg0, %arg1, %arg2 : tensor<?x64xf16>, tensor<64xf16>
func.func @layer_norm_grad(%g: tensor<?x64xf16>, %x: tensor<?x64xf16>,
                           %w: tensor<64xf16>)
    -> (tensor<?x64xf16>, tensor<64xf16>, tensor<64xf16>) {
  %dx, %dw, %db = nn.layer_norm_grad %g, %x, %w
      : tensor<?x64xf16>, tensor<64xf16>
  return %dx, %dw, %db : tensor<?x64xf16>, tensor<64xf16>, tensor<64xf16>
}

// CHECK-LABEL: func.func @embedding_grad
// CHECK: nn.embedding_grad %arg0, %arg1, %arg2 : tensor<2x?x64xf32>, tensor<2x?xi32>, tensor<256x64xf32>
// CHECK-NEXT: nn.embedding_grad %arg3, %arg4, %arg2 : tensor<64xf32>, tensor<i64>, tensor<256x64xf32>
func.func @embedding_grad(%g: tensor<2x?x64xf32>, %ids: tensor<2x?xi32>,
                          %table: tensor<256x64xf32>, %g0: tensor<64xf32>,
                          %id0: tensor<i64>)
    -> (tensor<256x64xf32>, tensor<256x64xf32>) {
  %0 = nn.embedding_grad %g, %ids, %table
      : tensor<2x?x64xf32>, tensor<2x?xi32>, tensor<256x64xf32>
  %1 = nn.embedding_grad %g0, %id0, %table
      : tensor<64xf32>, tensor<i64>, tensor<256x64xf32>
  return %0, %1 : tensor<256x64xf32>, tensor<256x64xf32>
}

// CHECK-LABEL: func.func @attention_grad
// CHECK: nn.attention_grad %arg0, %arg1, %arg2, %arg3 : tensor<2x?x8x16xf32>, tensor<2x?x8x16xf32>, tensor<2x?x2x16xf32>, tensor<2x?x2x16xf32>
// CHECK-NEXT: nn.attention_grad %arg0, %arg1, %arg2, %arg3 {causal = false, scale = 1.250000e-01 : f32} : tensor<2x?x8x16xf32>
func.func @attention_grad(%g: tensor<2x?x8x16xf32>, %q: tensor<2x?x8x16xf32>,
                          %k: tensor<2x?x2x16xf32>, %v: tensor<2x?x2x16xf32>)
    -> (tensor<2x?x8x16xf32>, tensor<2x?x2x16xf32>, tensor<2x?x2x16xf32>) {
  %dq, %dk, %dv = nn.attention_grad %g, %q, %k, %v
      : tensor<2x?x8x16xf32>, tensor<2x?x8x16xf32>, tensor<2x?x2x16xf32>,
        tensor<2x?x2x16xf32>
  %dq2, %dk2, %dv2 = nn.attention_grad %g, %q, %k, %v
      {causal = false, scale = 0.125 : f32}
      : tensor<2x?x8x16xf32>, tensor<2x?x8x16xf32>, tensor<2x?x2x16xf32>,
        tensor<2x?x2x16xf32>
  return %dq, %dk2, %dv
      : tensor<2x?x8x16xf32>, tensor<2x?x2x16xf32>, tensor<2x?x2x16xf32>
}

// CHECK-LABEL: func.func @cross_entropy_grad
// CHECK: nn.cross_entropy_grad %arg0, %arg1, %arg2 : tensor<f32>, tensor<2x?x256xf32>, tensor<2x?xi32>
// CHECK-NEXT: nn.cross_entropy_grad %arg0, %arg1, %arg2 mask %arg3 : tensor<f32>, tensor<2x?x256xf32>, tensor<2x?xi32>, tensor<2x?xf32>
func.func @cross_entropy_grad(%g: tensor<f32>, %logits: tensor<2x?x256xf32>,
                              %t: tensor<2x?xi32>, %m: tensor<2x?xf32>)
    -> (tensor<2x?x256xf32>, tensor<2x?x256xf32>) {
  %0 = nn.cross_entropy_grad %g, %logits, %t
      : tensor<f32>, tensor<2x?x256xf32>, tensor<2x?xi32>
  %1 = nn.cross_entropy_grad %g, %logits, %t mask %m
      : tensor<f32>, tensor<2x?x256xf32>, tensor<2x?xi32>, tensor<2x?xf32>
  return %0, %1 : tensor<2x?x256xf32>, tensor<2x?x256xf32>
}

// CHECK-LABEL: func.func @rotary_inverse
// CHECK: nn.rotary %arg0 positions %arg1 {interleaved, inverse} : tensor<1x?x4x16xf32>, tensor<?xi32>
func.func @rotary_inverse(%x: tensor<1x?x4x16xf32>, %pos: tensor<?xi32>)
    -> tensor<1x?x4x16xf32> {
  %0 = nn.rotary %x positions %pos {interleaved, inverse}
      : tensor<1x?x4x16xf32>, tensor<?xi32>
  return %0 : tensor<1x?x4x16xf32>
}
