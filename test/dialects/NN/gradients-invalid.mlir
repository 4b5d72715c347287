// RUN: moe-opt %s -split-input-file -verify-diagnostics

// Every diagnostic of nn.reduce_sum and of the backward ops.

func.func @reduce_sum_axis_range(%x: tensor<2x?x64xf32>) {
  // expected-error @+1 {{'nn.reduce_sum' op axis 3 is out of range for 'input' (2x?x64, rank 3)}}
  %0 = nn.reduce_sum %x [3] : tensor<2x?x64xf32>
  return
}

// -----

func.func @reduce_sum_axis_negative_range(%x: tensor<2x?x64xf32>) {
  // expected-error @+1 {{'nn.reduce_sum' op axis -4 is out of range for 'input' (2x?x64, rank 3)}}
  %0 = nn.reduce_sum %x [-4] : tensor<2x?x64xf32>
  return
}

// -----

func.func @reduce_sum_axis_twice(%x: tensor<2x?x64xf32>) {
  // expected-error @+1 {{'nn.reduce_sum' op axis -2 of 'input' (2x?x64) is listed twice}}
  %0 = nn.reduce_sum %x [1, -2] : tensor<2x?x64xf32>
  return
}

// -----

func.func @unary_grad_types(%g: tensor<4xf32>, %x: tensor<4xf16>) {
  // expected-error @+1 {{'nn.unary_grad' op requires the same type for all operands and results}}
  %0 = "nn.unary_grad"(%g, %x) {function = 10 : i32} : (tensor<4xf32>, tensor<4xf16>) -> tensor<4xf32>
  return
}

// -----

func.func @unary_grad_function(%g: tensor<4xf32>) {
  // expected-error @+1 {{custom op 'nn.unary_grad' expected string or keyword containing one of the following enum values for attribute 'function' [neg, exp, log, sqrt, rsqrt, reciprocal, tanh, erf, sigmoid, relu, silu, gelu, gelu_tanh]}}
  %0 = nn.unary_grad cosh %g, %g : tensor<4xf32>
  return
}

// -----

func.func @rms_norm_grad_epsilon(%g: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'nn.rms_norm_grad' op 'epsilon' must be >= 0, got -1.000000e+00}}
  %0:2 = nn.rms_norm_grad %g, %g, %w {epsilon = -1.0 : f32} : tensor<?x64xf32>, tensor<64xf32>
  return
}

// -----

func.func @rms_norm_grad_weight(%g: tensor<?x64xf32>, %w: tensor<32xf32>) {
  // expected-error @+1 {{'nn.rms_norm_grad' op 'weight' dimension 0 (32) must equal the last dimension of 'input' (64); 'weight' has shape 32}}
  %0:2 = nn.rms_norm_grad %g, %g, %w : tensor<?x64xf32>, tensor<32xf32>
  return
}

// -----

func.func @rms_norm_grad_grad_type(%g: tensor<?x32xf32>, %x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'nn.rms_norm_grad' op failed to verify that all of {grad, input, input_grad} have same type}}
  %0:2 = "nn.rms_norm_grad"(%g, %x, %w) : (tensor<?x32xf32>, tensor<?x64xf32>, tensor<64xf32>) -> (tensor<?x64xf32>, tensor<64xf32>)
  return
}

// -----

func.func @layer_norm_grad_weight_rank(%g: tensor<?x64xf32>, %w: tensor<1x64xf32>) {
  // expected-error @+1 {{'nn.layer_norm_grad' op 'weight' must have rank 1 ([features]), got 'tensor<1x64xf32>'}}
  %0:3 = nn.layer_norm_grad %g, %g, %w : tensor<?x64xf32>, tensor<1x64xf32>
  return
}

// -----

func.func @layer_norm_grad_epsilon(%g: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'nn.layer_norm_grad' op 'epsilon' must be >= 0, got nan}}
  %0:3 = nn.layer_norm_grad %g, %g, %w {epsilon = 0x7FC00000 : f32} : tensor<?x64xf32>, tensor<64xf32>
  return
}

// -----

func.func @layer_norm_grad_scalar(%g: tensor<f32>, %w: tensor<1xf32>) {
  // expected-error @+1 {{'nn.layer_norm_grad' op 'input' must have rank >= 1, got 'tensor<f32>'}}
  %0:3 = nn.layer_norm_grad %g, %g, %w : tensor<f32>, tensor<1xf32>
  return
}

// -----

func.func @embedding_grad_table_rank(%g: tensor<?x64xf32>, %ids: tensor<?xi32>, %t: tensor<64xf32>) {
  // expected-error @+1 {{'nn.embedding_grad' op 'table' must have rank 2 ([vocab, d]), got 'tensor<64xf32>'}}
  %0 = "nn.embedding_grad"(%g, %ids, %t) : (tensor<?x64xf32>, tensor<?xi32>, tensor<64xf32>) -> tensor<64xf32>
  return
}

// -----

func.func @embedding_grad_element(%g: tensor<?x64xf16>, %ids: tensor<?xi32>, %t: tensor<256x64xf32>) {
  // expected-error @+1 {{'nn.embedding_grad' op 'grad' element type ('f16') must match 'table' element type ('f32')}}
  %0 = nn.embedding_grad %g, %ids, %t : tensor<?x64xf16>, tensor<?xi32>, tensor<256x64xf32>
  return
}

// -----

func.func @embedding_grad_rank(%g: tensor<?x64xf32>, %ids: tensor<2x?xi32>, %t: tensor<256x64xf32>) {
  // expected-error @+1 {{'nn.embedding_grad' op 'grad' must have rank 3 (the shape of 'ids' + [d]), got 'tensor<?x64xf32>'}}
  %0 = nn.embedding_grad %g, %ids, %t : tensor<?x64xf32>, tensor<2x?xi32>, tensor<256x64xf32>
  return
}

// -----

func.func @embedding_grad_positions(%g: tensor<3x?x64xf32>, %ids: tensor<2x?xi32>, %t: tensor<256x64xf32>) {
  // expected-error @+1 {{'nn.embedding_grad' op 'grad' dimension 0 (3) must equal the matching extent of 'ids' (2); 'grad' has shape 3x?x64}}
  %0 = nn.embedding_grad %g, %ids, %t : tensor<3x?x64xf32>, tensor<2x?xi32>, tensor<256x64xf32>
  return
}

// -----

func.func @embedding_grad_features(%g: tensor<?x32xf32>, %ids: tensor<?xi32>, %t: tensor<256x64xf32>) {
  // expected-error @+1 {{'nn.embedding_grad' op 'grad' dimension 1 (32) must equal the feature size d of 'table' (64); 'grad' has shape ?x32}}
  %0 = nn.embedding_grad %g, %ids, %t : tensor<?x32xf32>, tensor<?xi32>, tensor<256x64xf32>
  return
}

// -----

func.func @attention_grad_heads(%g: tensor<1x?x6x16xf32>, %q: tensor<1x?x6x16xf32>, %k: tensor<1x?x4x16xf32>) {
  // expected-error @+1 {{'nn.attention_grad' op heads of 'query' (1x?x6x16) must be a multiple of kv_heads of 'key' (1x?x4x16)}}
  %0:3 = nn.attention_grad %g, %q, %k, %k : tensor<1x?x6x16xf32>, tensor<1x?x6x16xf32>, tensor<1x?x4x16xf32>, tensor<1x?x4x16xf32>
  return
}

// -----

func.func @attention_grad_grad(%g: tensor<1x?x8x8xf32>, %q: tensor<1x?x8x16xf32>, %k: tensor<1x?x4x16xf32>) {
  // expected-error @+1 {{'nn.attention_grad' op 'grad' ('tensor<1x?x8x8xf32>') must have the forward result type 'tensor<1x?x8x16xf32>'}}
  %0:3 = nn.attention_grad %g, %q, %k, %k : tensor<1x?x8x8xf32>, tensor<1x?x8x16xf32>, tensor<1x?x4x16xf32>, tensor<1x?x4x16xf32>
  return
}

// -----

func.func @attention_grad_grad_element(%g: tensor<1x?x8x16xf16>, %q: tensor<1x?x8x16xf32>, %k: tensor<1x?x4x16xf32>) {
  // expected-error @+1 {{'nn.attention_grad' op 'grad' ('tensor<1x?x8x16xf16>') must have the forward result type 'tensor<1x?x8x16xf32>'}}
  %0:3 = nn.attention_grad %g, %q, %k, %k : tensor<1x?x8x16xf16>, tensor<1x?x8x16xf32>, tensor<1x?x4x16xf32>, tensor<1x?x4x16xf32>
  return
}

// -----

func.func @cross_entropy_grad_targets(%g: tensor<f32>, %l: tensor<2x?x256xf32>, %t: tensor<?xi32>) {
  // expected-error @+1 {{'nn.cross_entropy_grad' op 'targets' shape (?) must equal the leading shape of 'logits' (2x?)}}
  %0 = nn.cross_entropy_grad %g, %l, %t : tensor<f32>, tensor<2x?x256xf32>, tensor<?xi32>
  return
}

// -----

func.func @cross_entropy_grad_mask(%g: tensor<f32>, %l: tensor<2x?x256xf32>, %t: tensor<2x?xi32>, %m: tensor<2x?xf16>) {
  // expected-error @+1 {{'nn.cross_entropy_grad' op 'mask' element type ('f16') must match 'logits' element type ('f32')}}
  %0 = nn.cross_entropy_grad %g, %l, %t mask %m : tensor<f32>, tensor<2x?x256xf32>, tensor<2x?xi32>, tensor<2x?xf16>
  return
}

// -----

func.func @cross_entropy_grad_grad_element(%g: tensor<f16>, %l: tensor<2x?x256xf32>, %t: tensor<2x?xi32>) {
  // expected-error @+1 {{'nn.cross_entropy_grad' op 'grad' ('tensor<f16>') must have the forward result type 'tensor<f32>'}}
  %0 = nn.cross_entropy_grad %g, %l, %t : tensor<f16>, tensor<2x?x256xf32>, tensor<2x?xi32>
  return
}

// -----

func.func @cross_entropy_grad_grad_rank(%g: tensor<1xf32>, %l: tensor<2x?x256xf32>, %t: tensor<2x?xi32>) {
  // expected-error @+1 {{'nn.cross_entropy_grad' op operand #0 must be 0D tensor of 32-bit float or 16-bit float or bfloat16 type values, but got 'tensor<1xf32>'}}
  %0 = nn.cross_entropy_grad %g, %l, %t : tensor<1xf32>, tensor<2x?x256xf32>, tensor<2x?xi32>
  return
}

