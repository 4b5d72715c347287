// RUN: moe-opt %s -split-input-file -verify-diagnostics

// Every diagnostic of the nn ops. Ops with inferred result types report shape
// errors while parsing; the message still lands on the op's line.

//===----------------------------------------------------------------------===//
// Broadcasting binary ops
//===----------------------------------------------------------------------===//

func.func @add_element_types(%a: tensor<4xf32>, %b: tensor<4xf16>) {
  // expected-error @+1 {{'nn.add' op 'lhs' ('tensor<4xf32>') and 'rhs' ('tensor<4xf16>') must have the same element type}}
  %0 = nn.add %a, %b : tensor<4xf32>, tensor<4xf16>
  return
}

// -----

func.func @mul_not_broadcastable(%a: tensor<?x3x64xf32>, %b: tensor<4x64xf32>) {
  // expected-error @+1 {{'nn.mul' op shapes of 'lhs' (?x3x64) and 'rhs' (4x64) are not broadcast-compatible}}
  %0 = nn.mul %a, %b : tensor<?x3x64xf32>, tensor<4x64xf32>
  return
}

// -----

func.func @sub_bool_operand(%a: tensor<4xi1>, %b: tensor<4xi1>) {
  // expected-error @+1 {{'nn.sub' op operand #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type or 32-bit signless integer or 64-bit signless integer values, but got 'tensor<4xi1>'}}
  %0 = "nn.sub"(%a, %b) : (tensor<4xi1>, tensor<4xi1>) -> tensor<4xi1>
  return
}

// -----

// pow takes floats only.
func.func @pow_int_operand(%a: tensor<4xi32>, %b: tensor<4xi32>) {
  // expected-error @+1 {{'nn.pow' op operand #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type values, but got 'tensor<4xi32>'}}
  %0 = "nn.pow"(%a, %b) : (tensor<4xi32>, tensor<4xi32>) -> tensor<4xi32>
  return
}

// -----

func.func @add_mixed_int(%a: tensor<4xi32>, %b: tensor<4xi64>) {
  // expected-error @+1 {{'nn.add' op 'lhs' ('tensor<4xi32>') and 'rhs' ('tensor<4xi64>') must have the same element type}}
  %0 = nn.add %a, %b : tensor<4xi32>, tensor<4xi64>
  return
}

// -----

func.func @div_unranked(%a: tensor<*xf32>) {
  // expected-error @+1 {{'nn.div' op operand #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type or 32-bit signless integer or 64-bit signless integer values, but got 'tensor<*xf32>'}}
  %0 = "nn.div"(%a, %a) : (tensor<*xf32>, tensor<*xf32>) -> tensor<*xf32>
  return
}

// -----

// The generic form states the result type; it must be the inferred one.
func.func @pow_wrong_result(%a: tensor<?x64xf32>, %b: tensor<64xf32>) {
  // expected-error @+2 {{'nn.pow' op inferred type(s) 'tensor<?x64xf32>' are incompatible with return type(s) of operation 'tensor<8x64xf32>'}}
  // expected-error @+1 {{'nn.pow' op failed to infer returned types}}
  %0 = "nn.pow"(%a, %b) : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<8x64xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Unary ops
//===----------------------------------------------------------------------===//

func.func @exp_int(%x: tensor<4xi32>) {
  // expected-error @+1 {{'nn.exp' op operand #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type values, but got 'tensor<4xi32>'}}
  %0 = nn.exp %x : tensor<4xi32>
  return
}

// -----

func.func @silu_f64(%x: tensor<4xf64>) {
  // expected-error @+1 {{'nn.silu' op operand #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type values, but got 'tensor<4xf64>'}}
  %0 = nn.silu %x : tensor<4xf64>
  return
}

// -----

// Shapes that merely are compatible are not the same type either.
func.func @relu_wrong_result(%x: tensor<?x4xf32>) {
  // expected-error @+2 {{'nn.relu' op inferred type(s) 'tensor<?x4xf32>' are incompatible with return type(s) of operation 'tensor<2x4xf32>'}}
  // expected-error @+1 {{'nn.relu' op failed to infer returned types}}
  %0 = "nn.relu"(%x) : (tensor<?x4xf32>) -> tensor<2x4xf32>
  return
}

// -----

func.func @gelu_bad_approximation(%x: tensor<4xf32>) {
  // expected-error @+1 {{expected string or keyword containing one of the following enum values for attribute 'approximate' [none, tanh]}}
  %0 = nn.gelu %x approximate = erf : tensor<4xf32>
  return
}

// -----

func.func @gelu_wrong_result(%x: tensor<4xf32>) {
  // expected-error @+1 {{'nn.gelu' op requires the same type for all operands and results}}
  %0 = "nn.gelu"(%x) : (tensor<4xf32>) -> tensor<4xf16>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Linear
//===----------------------------------------------------------------------===//

func.func @linear_scalar_input(%x: tensor<f32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{'nn.linear' op 'input' must have rank >= 1, got 'tensor<f32>'}}
  %0 = nn.linear %x, %w : tensor<f32>, tensor<4x8xf32>
  return
}

// -----

func.func @linear_weight_rank(%x: tensor<2x4xf32>, %w: tensor<4xf32>) {
  // expected-error @+1 {{'nn.linear' op 'weight' must have rank 2 ([in, out]), got 'tensor<4xf32>'}}
  %0 = nn.linear %x, %w : tensor<2x4xf32>, tensor<4xf32>
  return
}

// -----

func.func @linear_weight_type(%x: tensor<2x4xf32>, %w: tensor<4x8xbf16>) {
  // expected-error @+1 {{'nn.linear' op 'weight' element type ('bf16') must match 'input' element type ('f32')}}
  %0 = nn.linear %x, %w : tensor<2x4xf32>, tensor<4x8xbf16>
  return
}

// -----

func.func @linear_in_mismatch(%x: tensor<?x64xf32>, %w: tensor<32x8xf32>) {
  // expected-error @+1 {{'nn.linear' op 'weight' shape (32x8) must be [in, out] with in = 64, the last dimension of 'input' (?x64)}}
  %0 = nn.linear %x, %w : tensor<?x64xf32>, tensor<32x8xf32>
  return
}

// -----

func.func @linear_bias_type(%x: tensor<2x4xf32>, %w: tensor<4x8xf32>,
                            %b: tensor<8xf16>) {
  // expected-error @+1 {{'nn.linear' op 'bias' element type ('f16') must match 'input' element type ('f32')}}
  %0 = nn.linear %x, %w bias %b : tensor<2x4xf32>, tensor<4x8xf32>, tensor<8xf16>
  return
}

// -----

// The weight's out size is dynamic: the message must not print it.
func.func @linear_bias_rank(%x: tensor<2x4xf32>, %w: tensor<4x?xf32>,
                            %b: tensor<2x8xf32>) {
  // expected-error @+1 {{'nn.linear' op 'bias' must have rank 1 ([out]), got 'tensor<2x8xf32>'}}
  %0 = nn.linear %x, %w bias %b : tensor<2x4xf32>, tensor<4x?xf32>, tensor<2x8xf32>
  return
}

// -----

func.func @linear_bias_size(%x: tensor<2x4xf32>, %w: tensor<4x8xf32>,
                            %b: tensor<16xf32>) {
  // expected-error @+1 {{'nn.linear' op 'bias' dimension 0 (16) must equal the out size of 'weight' (8); 'bias' has shape 16}}
  %0 = nn.linear %x, %w bias %b : tensor<2x4xf32>, tensor<4x8xf32>, tensor<16xf32>
  return
}

// -----

func.func @linear_wrong_result(%x: tensor<2x4xf32>, %w: tensor<4x8xf32>) {
  // expected-error @+2 {{'nn.linear' op inferred type(s) 'tensor<2x8xf32>' are incompatible with return type(s) of operation 'tensor<2x4xf32>'}}
  // expected-error @+1 {{'nn.linear' op failed to infer returned types}}
  %0 = "nn.linear"(%x, %w) : (tensor<2x4xf32>, tensor<4x8xf32>) -> tensor<2x4xf32>
  return
}

// -----

func.func @linear_too_many_operands(%x: tensor<2x4xf32>, %w: tensor<4x4xf32>) {
  // expected-error @+1 {{'nn.linear' op operand group starting at #2 requires 0 or 1 element, but found 2}}
  %0 = "nn.linear"(%x, %w, %w, %w)
      : (tensor<2x4xf32>, tensor<4x4xf32>, tensor<4x4xf32>, tensor<4x4xf32>)
      -> tensor<2x4xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Matmul
//===----------------------------------------------------------------------===//

func.func @matmul_lhs_rank(%a: tensor<4xf32>, %b: tensor<4x8xf32>) {
  // expected-error @+1 {{'nn.matmul' op 'lhs' must have rank >= 2, got 'tensor<4xf32>'}}
  %0 = nn.matmul %a, %b : tensor<4xf32>, tensor<4x8xf32>
  return
}

// -----

func.func @matmul_rhs_rank(%a: tensor<2x4xf32>, %b: tensor<f32>) {
  // expected-error @+1 {{'nn.matmul' op 'rhs' must have rank >= 2, got 'tensor<f32>'}}
  %0 = nn.matmul %a, %b : tensor<2x4xf32>, tensor<f32>
  return
}

// -----

func.func @matmul_element_types(%a: tensor<2x4xf16>, %b: tensor<4x8xbf16>) {
  // expected-error @+1 {{'nn.matmul' op 'lhs' ('tensor<2x4xf16>') and 'rhs' ('tensor<4x8xbf16>') must have the same element type}}
  %0 = nn.matmul %a, %b : tensor<2x4xf16>, tensor<4x8xbf16>
  return
}

// -----

func.func @matmul_contraction(%a: tensor<?x2x4xf32>, %b: tensor<5x8xf32>) {
  // expected-error @+1 {{'nn.matmul' op contraction sizes differ: 'lhs' (?x2x4) gives K = 4, 'rhs' (5x8) gives K = 5}}
  %0 = nn.matmul %a, %b : tensor<?x2x4xf32>, tensor<5x8xf32>
  return
}

// -----

// transpose_rhs reads 'rhs' as [N, K].
func.func @matmul_contraction_transposed(%a: tensor<2x4xf32>,
                                         %b: tensor<4x8xf32>) {
  // expected-error @+1 {{'nn.matmul' op contraction sizes differ: 'lhs' (2x4) gives K = 4, 'rhs' (4x8) gives K = 8}}
  %0 = nn.matmul %a, %b {transpose_rhs} : tensor<2x4xf32>, tensor<4x8xf32>
  return
}

// -----

func.func @matmul_batch(%a: tensor<3x2x4xf32>, %b: tensor<5x4x8xf32>) {
  // expected-error @+1 {{'nn.matmul' op batch dimensions of 'lhs' (3x2x4) and 'rhs' (5x4x8) are not broadcast-compatible}}
  %0 = nn.matmul %a, %b : tensor<3x2x4xf32>, tensor<5x4x8xf32>
  return
}

// -----

func.func @matmul_transpose_not_unit(%a: tensor<2x4xf32>, %b: tensor<4x8xf32>) {
  // expected-error @+1 {{'nn.matmul' op attribute 'transpose_lhs' failed to satisfy constraint: unit attribute}}
  %0 = nn.matmul %a, %b {transpose_lhs = true} : tensor<2x4xf32>, tensor<4x8xf32>
  return
}

// -----

func.func @matmul_wrong_result(%a: tensor<4x2xf32>, %b: tensor<8x4xf32>) {
  // expected-error @+2 {{'nn.matmul' op inferred type(s) 'tensor<2x8xf32>' are incompatible with return type(s) of operation 'tensor<4x4xf32>'}}
  // expected-error @+1 {{'nn.matmul' op failed to infer returned types}}
  %0 = "nn.matmul"(%a, %b) <{transpose_lhs, transpose_rhs}> : (tensor<4x2xf32>, tensor<8x4xf32>) -> tensor<4x4xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// RMSNorm and LayerNorm
//===----------------------------------------------------------------------===//

func.func @rms_norm_negative_epsilon(%x: tensor<2x8xf32>, %g: tensor<8xf32>) {
  // expected-error @+1 {{'nn.rms_norm' op 'epsilon' must be >= 0, got -1.000000e+00}}
  %0 = nn.rms_norm %x, %g {epsilon = -1.0 : f32} : tensor<2x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @rms_norm_nan_epsilon(%x: tensor<2x8xf32>, %g: tensor<8xf32>) {
  // expected-error @+1 {{'nn.rms_norm' op 'epsilon' must be >= 0, got nan}}
  %0 = nn.rms_norm %x, %g {epsilon = 0x7FC00000 : f32} : tensor<2x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @rms_norm_epsilon_f64(%x: tensor<2x8xf32>, %g: tensor<8xf32>) {
  // expected-error @+1 {{'nn.rms_norm' op attribute 'epsilon' failed to satisfy constraint: 32-bit float attribute}}
  %0 = nn.rms_norm %x, %g {epsilon = 1.0e-6 : f64} : tensor<2x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @rms_norm_scalar_input(%x: tensor<f32>, %g: tensor<f32>) {
  // expected-error @+1 {{'nn.rms_norm' op 'input' must have rank >= 1, got 'tensor<f32>'}}
  %0 = nn.rms_norm %x, %g : tensor<f32>, tensor<f32>
  return
}

// -----

func.func @rms_norm_weight_type(%x: tensor<2x8xbf16>, %g: tensor<8xf32>) {
  // expected-error @+1 {{'nn.rms_norm' op 'weight' element type ('f32') must match 'input' element type ('bf16')}}
  %0 = nn.rms_norm %x, %g : tensor<2x8xbf16>, tensor<8xf32>
  return
}

// -----

func.func @rms_norm_weight_rank(%x: tensor<2x8xf32>, %g: tensor<2x8xf32>) {
  // expected-error @+1 {{'nn.rms_norm' op 'weight' must have rank 1 ([features]), got 'tensor<2x8xf32>'}}
  %0 = nn.rms_norm %x, %g : tensor<2x8xf32>, tensor<2x8xf32>
  return
}

// -----

func.func @rms_norm_weight_size(%x: tensor<?x64xf32>, %g: tensor<32xf32>) {
  // expected-error @+1 {{'nn.rms_norm' op 'weight' dimension 0 (32) must equal the last dimension of 'input' (64); 'weight' has shape 32}}
  %0 = nn.rms_norm %x, %g : tensor<?x64xf32>, tensor<32xf32>
  return
}

// -----

func.func @rms_norm_wrong_result(%x: tensor<?x8xf32>, %g: tensor<8xf32>) {
  // expected-error @+1 {{'nn.rms_norm' op failed to verify that all of {input, result} have same type}}
  %0 = "nn.rms_norm"(%x, %g) : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @layer_norm_negative_epsilon(%x: tensor<2x8xf32>, %g: tensor<8xf32>) {
  // expected-error @+1 {{'nn.layer_norm' op 'epsilon' must be >= 0, got -1.000000e-05}}
  %0 = nn.layer_norm %x, %g {epsilon = -1.0e-5 : f32} : tensor<2x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @layer_norm_scalar_input(%x: tensor<f16>, %g: tensor<8xf16>) {
  // expected-error @+1 {{'nn.layer_norm' op 'input' must have rank >= 1, got 'tensor<f16>'}}
  %0 = nn.layer_norm %x, %g : tensor<f16>, tensor<8xf16>
  return
}

// -----

func.func @layer_norm_weight_size(%x: tensor<2x8xf32>, %g: tensor<4xf32>) {
  // expected-error @+1 {{'nn.layer_norm' op 'weight' dimension 0 (4) must equal the last dimension of 'input' (8); 'weight' has shape 4}}
  %0 = nn.layer_norm %x, %g : tensor<2x8xf32>, tensor<4xf32>
  return
}

// -----

func.func @layer_norm_bias_type(%x: tensor<2x8xf32>, %g: tensor<8xf32>,
                                %b: tensor<8xf16>) {
  // expected-error @+1 {{'nn.layer_norm' op 'bias' element type ('f16') must match 'input' element type ('f32')}}
  %0 = nn.layer_norm %x, %g bias %b : tensor<2x8xf32>, tensor<8xf32>, tensor<8xf16>
  return
}

// -----

func.func @layer_norm_bias_rank(%x: tensor<2x8xf32>, %g: tensor<8xf32>,
                                %b: tensor<f32>) {
  // expected-error @+1 {{'nn.layer_norm' op 'bias' must have rank 1 ([features]), got 'tensor<f32>'}}
  %0 = nn.layer_norm %x, %g bias %b : tensor<2x8xf32>, tensor<8xf32>, tensor<f32>
  return
}

// -----

func.func @layer_norm_bias_size(%x: tensor<2x8xf32>, %g: tensor<?xf32>,
                                %b: tensor<4xf32>) {
  // expected-error @+1 {{'nn.layer_norm' op 'bias' dimension 0 (4) must equal the last dimension of 'input' (8); 'bias' has shape 4}}
  %0 = nn.layer_norm %x, %g bias %b : tensor<2x8xf32>, tensor<?xf32>, tensor<4xf32>
  return
}

// -----

// 'weight' and 'bias' must agree even when 'input' leaves the size open.
func.func @layer_norm_bias_weight(%x: tensor<2x?xf32>, %g: tensor<8xf32>,
                                  %b: tensor<4xf32>) {
  // expected-error @+1 {{'nn.layer_norm' op 'bias' dimension 0 (4) must equal the size of 'weight' (8); 'bias' has shape 4}}
  %0 = nn.layer_norm %x, %g bias %b : tensor<2x?xf32>, tensor<8xf32>, tensor<4xf32>
  return
}

// -----

func.func @layer_norm_wrong_result(%x: tensor<2x8xf32>, %g: tensor<8xf32>) {
  // expected-error @+1 {{'nn.layer_norm' op failed to verify that all of {input, result} have same type}}
  %0 = "nn.layer_norm"(%x, %g) : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf16>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Softmax
//===----------------------------------------------------------------------===//

func.func @softmax_axis_too_large(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{'nn.softmax' op 'axis' 2 is out of range for 'input' (?x8, rank 2)}}
  %0 = nn.softmax %x {axis = 2 : i64} : tensor<?x8xf32>
  return
}

// -----

func.func @softmax_axis_too_small(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{'nn.softmax' op 'axis' -3 is out of range for 'input' (?x8, rank 2)}}
  %0 = nn.softmax %x {axis = -3 : i64} : tensor<?x8xf32>
  return
}

// -----

// A 0-d tensor has no axis to normalise over.
func.func @softmax_scalar(%x: tensor<f32>) {
  // expected-error @+1 {{'nn.softmax' op 'axis' -1 is out of range for 'input' (scalar, rank 0)}}
  %0 = nn.softmax %x : tensor<f32>
  return
}

// -----

func.func @softmax_axis_i32(%x: tensor<4xf32>) {
  // expected-error @+1 {{'nn.softmax' op attribute 'axis' failed to satisfy constraint: 64-bit signless integer attribute}}
  %0 = nn.softmax %x {axis = 0 : i32} : tensor<4xf32>
  return
}

// -----

func.func @softmax_wrong_result(%x: tensor<4xf32>) {
  // expected-error @+1 {{'nn.softmax' op requires the same type for all operands and results}}
  %0 = "nn.softmax"(%x) : (tensor<4xf32>) -> tensor<4xbf16>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Embedding
//===----------------------------------------------------------------------===//

func.func @embedding_table_rank(%t: tensor<256xf32>, %ids: tensor<4xi32>) {
  // expected-error @+1 {{'nn.embedding' op 'table' must have rank 2 ([vocab, d]), got 'tensor<256xf32>'}}
  %0 = nn.embedding %t, %ids : tensor<256xf32>, tensor<4xi32>
  return
}

// -----

func.func @embedding_float_ids(%t: tensor<256x64xf32>, %ids: tensor<4xf32>) {
  // expected-error @+1 {{'nn.embedding' op operand #1 must be ranked tensor of 32-bit signless integer or 64-bit signless integer values, but got 'tensor<4xf32>'}}
  %0 = nn.embedding %t, %ids : tensor<256x64xf32>, tensor<4xf32>
  return
}

// -----

func.func @embedding_int_table(%t: tensor<256x64xi32>, %ids: tensor<4xi32>) {
  // expected-error @+1 {{'nn.embedding' op operand #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type values, but got 'tensor<256x64xi32>'}}
  %0 = nn.embedding %t, %ids : tensor<256x64xi32>, tensor<4xi32>
  return
}

// -----

func.func @embedding_wrong_result(%t: tensor<256x64xf32>, %ids: tensor<4xi32>) {
  // expected-error @+2 {{'nn.embedding' op inferred type(s) 'tensor<4x64xf32>' are incompatible with return type(s) of operation 'tensor<4x256xf32>'}}
  // expected-error @+1 {{'nn.embedding' op failed to infer returned types}}
  %0 = "nn.embedding"(%t, %ids) : (tensor<256x64xf32>, tensor<4xi32>) -> tensor<4x256xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Rotary
//===----------------------------------------------------------------------===//

func.func @rotary_input_rank(%x: tensor<2x4x16xf32>) {
  // expected-error @+1 {{'nn.rotary' op 'input' must have rank 4 ([batch, seq, heads, head_dim]), got 'tensor<2x4x16xf32>'}}
  %0 = nn.rotary %x : tensor<2x4x16xf32>
  return
}

// -----

func.func @rotary_theta_zero(%x: tensor<1x4x2x8xf32>) {
  // expected-error @+1 {{'nn.rotary' op 'theta' must be > 0, got 0.000000e+00}}
  %0 = nn.rotary %x {theta = 0.0 : f32} : tensor<1x4x2x8xf32>
  return
}

// -----

func.func @rotary_theta_nan(%x: tensor<1x4x2x8xf32>) {
  // expected-error @+1 {{'nn.rotary' op 'theta' must be > 0, got nan}}
  %0 = nn.rotary %x {theta = 0x7FC00000 : f32} : tensor<1x4x2x8xf32>
  return
}

// -----

func.func @rotary_dim_odd(%x: tensor<1x4x2x8xf32>) {
  // expected-error @+1 {{'nn.rotary' op 'rotary_dim' must be even and >= 0, got 3}}
  %0 = nn.rotary %x {rotary_dim = 3 : i64} : tensor<1x4x2x8xf32>
  return
}

// -----

func.func @rotary_dim_negative(%x: tensor<1x4x2x?xf32>) {
  // expected-error @+1 {{'nn.rotary' op 'rotary_dim' must be even and >= 0, got -2}}
  %0 = nn.rotary %x {rotary_dim = -2 : i64} : tensor<1x4x2x?xf32>
  return
}

// -----

func.func @rotary_dim_too_large(%x: tensor<1x4x2x8xf32>) {
  // expected-error @+1 {{'nn.rotary' op 'rotary_dim' (10) exceeds the head dimension of 'input' (1x4x2x8)}}
  %0 = nn.rotary %x {rotary_dim = 10 : i64} : tensor<1x4x2x8xf32>
  return
}

// -----

// Rotating all features needs them in pairs.
func.func @rotary_odd_head_dim(%x: tensor<1x4x2x7xf32>) {
  // expected-error @+1 {{'nn.rotary' op head dimension of 'input' (1x4x2x7) must be even to rotate all features}}
  %0 = nn.rotary %x {interleaved} : tensor<1x4x2x7xf32>
  return
}

// -----

func.func @rotary_positions_seq(%x: tensor<1x4x2x8xf32>, %p: tensor<5xi32>) {
  // expected-error @+1 {{'nn.rotary' op 'positions' dimension 0 (5) must equal the sequence length of 'input' (4); 'positions' has shape 5}}
  %0 = nn.rotary %x positions %p : tensor<1x4x2x8xf32>, tensor<5xi32>
  return
}

// -----

func.func @rotary_positions_batch(%x: tensor<1x?x2x8xf32>, %p: tensor<2x4xi64>) {
  // expected-error @+1 {{'nn.rotary' op 'positions' dimension 0 (2) must equal the batch size of 'input' (1); 'positions' has shape 2x4}}
  %0 = nn.rotary %x positions %p : tensor<1x?x2x8xf32>, tensor<2x4xi64>
  return
}

// -----

func.func @rotary_positions_batch_seq(%x: tensor<?x4x2x8xf32>,
                                      %p: tensor<2x5xi64>) {
  // expected-error @+1 {{'nn.rotary' op 'positions' dimension 1 (5) must equal the sequence length of 'input' (4); 'positions' has shape 2x5}}
  %0 = nn.rotary %x positions %p : tensor<?x4x2x8xf32>, tensor<2x5xi64>
  return
}

// -----

func.func @rotary_positions_rank(%x: tensor<1x4x2x8xf32>, %p: tensor<1x4x1xi32>) {
  // expected-error @+1 {{'nn.rotary' op 'positions' must be [seq] or [batch, seq], got 'tensor<1x4x1xi32>'}}
  %0 = nn.rotary %x positions %p : tensor<1x4x2x8xf32>, tensor<1x4x1xi32>
  return
}

// -----

func.func @rotary_positions_scalar(%x: tensor<1x4x2x8xf32>, %p: tensor<i32>) {
  // expected-error @+1 {{'nn.rotary' op 'positions' must be [seq] or [batch, seq], got 'tensor<i32>'}}
  %0 = nn.rotary %x positions %p : tensor<1x4x2x8xf32>, tensor<i32>
  return
}

// -----

func.func @rotary_positions_float(%x: tensor<1x4x2x8xf32>, %p: tensor<4xf32>) {
  // expected-error @+1 {{'nn.rotary' op operand #1 must be ranked tensor of 32-bit signless integer or 64-bit signless integer values, but got 'tensor<4xf32>'}}
  %0 = nn.rotary %x positions %p : tensor<1x4x2x8xf32>, tensor<4xf32>
  return
}

// -----

func.func @rotary_wrong_result(%x: tensor<1x4x2x8xf32>) {
  // expected-error @+1 {{'nn.rotary' op failed to verify that all of {input, result} have same type}}
  %0 = "nn.rotary"(%x) : (tensor<1x4x2x8xf32>) -> tensor<1x4x2x8xf16>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

func.func @attention_query_rank(%q: tensor<4x8x16xf32>, %k: tensor<1x4x8x16xf32>) {
  // expected-error @+1 {{'nn.attention' op 'query' must have rank 4 ([batch, seq, heads, head_dim]), got 'tensor<4x8x16xf32>'}}
  %0 = nn.attention %q, %k, %k : tensor<4x8x16xf32>, tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>
  return
}

// -----

func.func @attention_key_rank(%q: tensor<1x4x8x16xf32>, %k: tensor<1x1x4x8x16xf32>) {
  // expected-error @+1 {{'nn.attention' op 'key' must have rank 4 ([batch, seq, heads, head_dim]), got 'tensor<1x1x4x8x16xf32>'}}
  %0 = nn.attention %q, %k, %q : tensor<1x4x8x16xf32>, tensor<1x1x4x8x16xf32>, tensor<1x4x8x16xf32>
  return
}

// -----

func.func @attention_value_rank(%q: tensor<1x4x8x16xf32>, %v: tensor<f32>) {
  // expected-error @+1 {{'nn.attention' op 'value' must have rank 4 ([batch, seq, heads, head_dim]), got 'tensor<f32>'}}
  %0 = nn.attention %q, %q, %v : tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>, tensor<f32>
  return
}

// -----

func.func @attention_key_type(%q: tensor<1x4x8x16xf32>, %k: tensor<1x4x8x16xbf16>) {
  // expected-error @+1 {{'nn.attention' op 'key' element type ('bf16') must match 'query' element type ('f32')}}
  %0 = nn.attention %q, %k, %q : tensor<1x4x8x16xf32>, tensor<1x4x8x16xbf16>, tensor<1x4x8x16xf32>
  return
}

// -----

func.func @attention_value_type(%q: tensor<1x4x8x16xf32>, %v: tensor<1x4x8x16xf16>) {
  // expected-error @+1 {{'nn.attention' op 'value' element type ('f16') must match 'query' element type ('f32')}}
  %0 = nn.attention %q, %q, %v : tensor<1x4x8x16xf32>, tensor<1x4x8x16xf32>, tensor<1x4x8x16xf16>
  return
}

// -----

func.func @attention_key_value_seq(%q: tensor<1x?x8x16xf32>, %k: tensor<1x4x2x16xf32>,
                                   %v: tensor<1x5x2x16xf32>) {
  // expected-error @+1 {{'nn.attention' op 'key' (1x4x2x16) and 'value' (1x5x2x16) must agree in batch, seq_kv and kv_heads}}
  %0 = nn.attention %q, %k, %v : tensor<1x?x8x16xf32>, tensor<1x4x2x16xf32>, tensor<1x5x2x16xf32>
  return
}

// -----

func.func @attention_batch(%q: tensor<2x4x8x16xf32>, %k: tensor<3x4x8x16xf32>) {
  // expected-error @+1 {{'nn.attention' op batch of 'query' (2x4x8x16) differs from batch of 'key' (3x4x8x16)}}
  %0 = nn.attention %q, %k, %k : tensor<2x4x8x16xf32>, tensor<3x4x8x16xf32>, tensor<3x4x8x16xf32>
  return
}

// -----

func.func @attention_head_dim(%q: tensor<2x4x8x16xf32>, %k: tensor<2x4x8x32xf32>) {
  // expected-error @+1 {{'nn.attention' op head_dim of 'query' (2x4x8x16) differs from head_dim of 'key' (2x4x8x32)}}
  %0 = nn.attention %q, %k, %k : tensor<2x4x8x16xf32>, tensor<2x4x8x32xf32>, tensor<2x4x8x32xf32>
  return
}

// -----

func.func @attention_heads_not_multiple(%q: tensor<1x4x6x16xf32>, %k: tensor<1x4x4x16xf32>) {
  // expected-error @+1 {{'nn.attention' op heads of 'query' (1x4x6x16) must be a multiple of kv_heads of 'key' (1x4x4x16)}}
  %0 = nn.attention %q, %k, %k : tensor<1x4x6x16xf32>, tensor<1x4x4x16xf32>, tensor<1x4x4x16xf32>
  return
}

// -----

func.func @attention_no_kv_heads(%q: tensor<1x4x2x16xf32>, %k: tensor<1x4x0x16xf32>) {
  // expected-error @+1 {{'nn.attention' op heads of 'query' (1x4x2x16) must be a multiple of kv_heads of 'key' (1x4x0x16)}}
  %0 = nn.attention %q, %k, %k : tensor<1x4x2x16xf32>, tensor<1x4x0x16xf32>, tensor<1x4x0x16xf32>
  return
}

// -----

func.func @attention_causal_not_bool(%q: tensor<1x4x2x16xf32>) {
  // expected-error @+1 {{'nn.attention' op attribute 'causal' failed to satisfy constraint: bool attribute}}
  %0 = nn.attention %q, %q, %q {causal = 1 : i64} : tensor<1x4x2x16xf32>, tensor<1x4x2x16xf32>, tensor<1x4x2x16xf32>
  return
}

// -----

func.func @attention_wrong_result(%q: tensor<1x4x2x16xf32>, %v: tensor<1x4x2x8xf32>) {
  // expected-error @+2 {{'nn.attention' op inferred type(s) 'tensor<1x4x2x8xf32>' are incompatible with return type(s) of operation 'tensor<1x4x2x16xf32>'}}
  // expected-error @+1 {{'nn.attention' op failed to infer returned types}}
  %0 = "nn.attention"(%q, %q, %v) : (tensor<1x4x2x16xf32>, tensor<1x4x2x16xf32>, tensor<1x4x2x8xf32>) -> tensor<1x4x2x16xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Reshape
//===----------------------------------------------------------------------===//

func.func @reshape_element_type(%x: tensor<4x?xf32>) {
  // expected-error @+1 {{'nn.reshape' op result element type ('i32') must match 'input' element type ('f32')}}
  %0 = nn.reshape %x : tensor<4x?xf32> -> tensor<?xi32>
  return
}

// -----

func.func @reshape_two_dynamic(%x: tensor<4x?xf32>) {
  // expected-error @+1 {{'nn.reshape' op result 'tensor<?x?xf32>' has more than one dynamic dimension, so it needs 'dynamic_sizes' (one per dynamic dimension)}}
  %0 = nn.reshape %x : tensor<4x?xf32> -> tensor<?x?xf32>
  return
}

// -----

func.func @reshape_static_count(%x: tensor<4x6xf32>) {
  // expected-error @+1 {{'nn.reshape' op cannot reshape 'input' 4x6 (24 elements) to 5x5}}
  %0 = nn.reshape %x : tensor<4x6xf32> -> tensor<5x5xf32>
  return
}

// -----

func.func @reshape_dynamic_not_divisible(%x: tensor<4x6xf32>) {
  // expected-error @+1 {{'nn.reshape' op cannot reshape 'input' 4x6 (24 elements) to ?x5}}
  %0 = nn.reshape %x : tensor<4x6xf32> -> tensor<?x5xf32>
  return
}

// -----

// With a 0 extent the element count cannot determine the dynamic one.
func.func @reshape_zero_extent(%x: tensor<0x4xf32>) {
  // expected-error @+1 {{'nn.reshape' op cannot reshape 'input' 0x4 (0 elements) to ?x0}}
  %0 = nn.reshape %x : tensor<0x4xf32> -> tensor<?x0xf32>
  return
}

// -----

// Element counts that overflow int64 are rejected, not wrapped.
func.func @reshape_count_overflow(%x: tensor<4611686018427387904x2xf32>) {
  // expected-error @+1 {{'nn.reshape' op cannot reshape 'input' 4611686018427387904x2 (at least 2^63 elements) to ?x3x6148914691236517205}}
  %0 = nn.reshape %x : tensor<4611686018427387904x2xf32> -> tensor<?x3x6148914691236517205xf32>
  return
}

// -----

func.func @reshape_result_overflow(%x: tensor<6xf32>) {
  // expected-error @+1 {{'nn.reshape' op cannot reshape 'input' 6 (6 elements) to 4611686018427387904x4x?}}
  %0 = nn.reshape %x : tensor<6xf32> -> tensor<4611686018427387904x4x?xf32>
  return
}

// -----

func.func @reshape_unranked(%x: tensor<*xf32>) {
  // expected-error @+1 {{'nn.reshape' op operand #0 must be ranked tensor of any type values, but got 'tensor<*xf32>'}}
  %0 = "nn.reshape"(%x) : (tensor<*xf32>) -> tensor<?xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Transpose
//===----------------------------------------------------------------------===//

func.func @transpose_duplicate(%x: tensor<2x?x4xf32>) {
  // expected-error @+1 {{'nn.transpose' op 'permutation' [0, 1, 1] is not a permutation of the 3 dimensions of 'input' (2x?x4)}}
  %0 = nn.transpose %x [0, 1, 1] : tensor<2x?x4xf32>
  return
}

// -----

func.func @transpose_out_of_range(%x: tensor<2x4xf32>) {
  // expected-error @+1 {{'nn.transpose' op 'permutation' [0, 2] is not a permutation of the 2 dimensions of 'input' (2x4)}}
  %0 = nn.transpose %x [0, 2] : tensor<2x4xf32>
  return
}

// -----

func.func @transpose_negative(%x: tensor<2x4xf32>) {
  // expected-error @+1 {{'nn.transpose' op 'permutation' [-1, 0] is not a permutation of the 2 dimensions of 'input' (2x4)}}
  %0 = nn.transpose %x [-1, 0] : tensor<2x4xf32>
  return
}

// -----

func.func @transpose_too_short(%x: tensor<2x4xf32>) {
  // expected-error @+1 {{'nn.transpose' op 'permutation' [0] is not a permutation of the 2 dimensions of 'input' (2x4)}}
  %0 = nn.transpose %x [0] : tensor<2x4xf32>
  return
}

// -----

func.func @transpose_scalar(%x: tensor<f32>) {
  // expected-error @+1 {{'nn.transpose' op 'permutation' [0] is not a permutation of the 0 dimensions of 'input' (scalar)}}
  %0 = nn.transpose %x [0] : tensor<f32>
  return
}

// -----

func.func @transpose_missing_permutation(%x: tensor<2x4xf32>) {
  // expected-error @+1 {{'nn.transpose' op requires attribute 'permutation'}}
  %0 = "nn.transpose"(%x) : (tensor<2x4xf32>) -> tensor<4x2xf32>
  return
}

// -----

func.func @transpose_wrong_result(%x: tensor<2x4xf32>) {
  // expected-error @+2 {{'nn.transpose' op inferred type(s) 'tensor<4x2xf32>' are incompatible with return type(s) of operation 'tensor<2x4xf32>'}}
  // expected-error @+1 {{'nn.transpose' op failed to infer returned types}}
  %0 = "nn.transpose"(%x) <{permutation = array<i64: 1, 0>}> : (tensor<2x4xf32>) -> tensor<2x4xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Cross-entropy
//===----------------------------------------------------------------------===//

func.func @cross_entropy_scalar_logits(%l: tensor<f32>, %t: tensor<i32>) {
  // expected-error @+1 {{'nn.cross_entropy' op 'logits' must have rank >= 1 ([..., vocab]), got 'tensor<f32>'}}
  %0 = nn.cross_entropy %l, %t : tensor<f32>, tensor<i32>
  return
}

// -----

func.func @cross_entropy_targets_rank(%l: tensor<2x?x256xf32>, %t: tensor<2x?x256xi32>) {
  // expected-error @+1 {{'nn.cross_entropy' op 'targets' shape (2x?x256) must equal the leading shape of 'logits' (2x?)}}
  %0 = nn.cross_entropy %l, %t : tensor<2x?x256xf32>, tensor<2x?x256xi32>
  return
}

// -----

func.func @cross_entropy_targets_dim(%l: tensor<2x?x256xf32>, %t: tensor<3x?xi32>) {
  // expected-error @+1 {{'nn.cross_entropy' op 'targets' shape (3x?) must equal the leading shape of 'logits' (2x?)}}
  %0 = nn.cross_entropy %l, %t : tensor<2x?x256xf32>, tensor<3x?xi32>
  return
}

// -----

func.func @cross_entropy_float_targets(%l: tensor<2x256xf32>, %t: tensor<2xf32>) {
  // expected-error @+1 {{'nn.cross_entropy' op operand #1 must be ranked tensor of 32-bit signless integer or 64-bit signless integer values, but got 'tensor<2xf32>'}}
  %0 = nn.cross_entropy %l, %t : tensor<2x256xf32>, tensor<2xf32>
  return
}

// -----

func.func @cross_entropy_mask_shape(%l: tensor<2x?x256xf32>, %t: tensor<2x?xi32>,
                                    %m: tensor<2x4x1xf32>) {
  // expected-error @+1 {{'nn.cross_entropy' op 'mask' shape (2x4x1) must equal the shape of 'targets', the leading shape of 'logits' (2x?x256)}}
  %0 = nn.cross_entropy %l, %t mask %m : tensor<2x?x256xf32>, tensor<2x?xi32>, tensor<2x4x1xf32>
  return
}

// -----

func.func @cross_entropy_mask_type(%l: tensor<2x?x256xf32>, %t: tensor<2x?xi32>,
                                   %m: tensor<2x?xbf16>) {
  // expected-error @+1 {{'nn.cross_entropy' op 'mask' element type ('bf16') must match 'logits' element type ('f32')}}
  %0 = nn.cross_entropy %l, %t mask %m : tensor<2x?x256xf32>, tensor<2x?xi32>, tensor<2x?xbf16>
  return
}

// -----

func.func @cross_entropy_wrong_result(%l: tensor<2x256xf32>, %t: tensor<2xi32>) {
  // expected-error @+2 {{'nn.cross_entropy' op inferred type(s) 'tensor<f32>' are incompatible with return type(s) of operation 'tensor<f16>'}}
  // expected-error @+1 {{'nn.cross_entropy' op failed to infer returned types}}
  %0 = "nn.cross_entropy"(%l, %t)
      : (tensor<2x256xf32>, tensor<2xi32>) -> tensor<f16>
  return
}

// -----

func.func @cross_entropy_ranked_result(%l: tensor<2x256xf32>, %t: tensor<2xi32>) {
  // expected-error @+1 {{'nn.cross_entropy' op result #0 must be 0D tensor of 32-bit float or 16-bit float or bfloat16 type values, but got 'tensor<1xf32>'}}
  %0 = "nn.cross_entropy"(%l, %t)
      : (tensor<2x256xf32>, tensor<2xi32>) -> tensor<1xf32>
  return
}

// -----

func.func @reshape_sizes_count(%x: tensor<?x64xf32>, %n: index) {
  // expected-error @+1 {{'nn.reshape' op has 1 'dynamic_sizes' but result 'tensor<?x?x16xf32>' has 2 dynamic dimensions}}
  %0 = nn.reshape %x [%n] : tensor<?x64xf32> -> tensor<?x?x16xf32>
  return
}

// -----

// With dynamic sizes a static 0 extent is allowed, but the count must fit.
func.func @reshape_sizes_not_divisible(%x: tensor<4x6xf32>, %n: index) {
  // expected-error @+1 {{'nn.reshape' op cannot reshape 'input' 4x6 (24 elements) to ?x0}}
  %0 = nn.reshape %x [%n] : tensor<4x6xf32> -> tensor<?x0xf32>
  return
}

// -----

func.func @reduce_mean_axis(%x: tensor<2x?xf32>) {
  // expected-error @+1 {{'nn.reduce_mean' op axis 2 is out of range for 'input' (2x?, rank 2)}}
  %0 = nn.reduce_mean %x [2] : tensor<2x?xf32>
  return
}

// -----

func.func @reduce_max_twice(%x: tensor<2x?xf32>) {
  // expected-error @+1 {{'nn.reduce_max' op axis -1 of 'input' (2x?) is listed twice}}
  %0 = nn.reduce_max %x [1, -1] : tensor<2x?xf32>
  return
}

// -----

func.func @concat_none() {
  // expected-error @+2 {{'nn.concat' op needs at least one input}}
  // expected-error @+1 {{'nn.concat' op failed to infer returned types}}
  %0 = "nn.concat"() {axis = 0 : i64} : () -> tensor<1xf32>
  return
}

// -----

func.func @concat_axis(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{'nn.concat' op 'axis' 2 is out of range for 'inputs' (2x3, rank 2)}}
  %0 = nn.concat %a, %a axis = 2 : tensor<2x3xf32>, tensor<2x3xf32>
  return
}

// -----

func.func @concat_element_type(%a: tensor<2x3xf32>, %b: tensor<2x3xf16>) {
  // expected-error @+1 {{'nn.concat' op input #1 ('tensor<2x3xf16>') must have the element type of input #0 ('tensor<2x3xf32>')}}
  %0 = nn.concat %a, %b axis = 0 : tensor<2x3xf32>, tensor<2x3xf16>
  return
}

// -----

func.func @concat_rank(%a: tensor<2x3xi64>, %b: tensor<3xi64>) {
  // expected-error @+1 {{'nn.concat' op input #1 ('tensor<3xi64>') must have the rank of input #0 ('tensor<2x3xi64>')}}
  %0 = nn.concat %a, %b axis = 0 : tensor<2x3xi64>, tensor<3xi64>
  return
}

// -----

func.func @concat_extent(%a: tensor<2x?xf32>, %b: tensor<2x3xf32>, %c: tensor<2x4xf32>) {
  // expected-error @+1 {{'nn.concat' op input #2 (2x4) has extent 4 in dimension 1, where the other inputs have 3 (only dimension 0 may differ)}}
  %0 = nn.concat %a, %b, %c axis = 0 : tensor<2x?xf32>, tensor<2x3xf32>, tensor<2x4xf32>
  return
}

// -----

func.func @slice_entries(%x: tensor<2x8xf32>) {
  // expected-error @+1 {{'nn.slice' op 'ends' has 1 entries but 'input' (2x8) has rank 2}}
  %0 = nn.slice %x starts = [0, 0] ends = [1] steps = [1, 1] : tensor<2x8xf32>
  return
}

// -----

func.func @slice_zero_step(%x: tensor<2x?xf32>) {
  // expected-error @+1 {{'nn.slice' op 'steps' must be nonzero, got 0 for dimension 1}}
  %0 = nn.slice %x starts = [0, 0] ends = [2, 3] steps = [1, 0] : tensor<2x?xf32>
  return
}

// -----

func.func @gather_axis(%x: tensor<2x8xf32>, %i: tensor<3xi64>) {
  // expected-error @+1 {{'nn.gather' op 'axis' -3 is out of range for 'input' (2x8, rank 2)}}
  %0 = nn.gather %x [%i] axis = -3 : tensor<2x8xf32>, tensor<3xi64>
  return
}

// -----

func.func @gather_float_indices(%x: tensor<2x8xf32>, %i: tensor<3xf32>) {
  // expected-error @+1 {{'nn.gather' op operand #1 must be ranked tensor of 32-bit signless integer or 64-bit signless integer values, but got 'tensor<3xf32>'}}
  %0 = "nn.gather"(%x, %i) {axis = 0 : i64} : (tensor<2x8xf32>, tensor<3xf32>) -> tensor<3x8xf32>
  return
}

// -----

func.func @where_types(%c: tensor<4xi1>, %a: tensor<4xf32>, %b: tensor<4xf16>) {
  // expected-error @+1 {{'nn.where' op 'true_value' ('tensor<4xf32>') and 'false_value' ('tensor<4xf16>') must have the same element type}}
  %0 = nn.where %c, %a, %b : tensor<4xi1>, tensor<4xf32>, tensor<4xf16>
  return
}

// -----

func.func @where_broadcast(%c: tensor<3xi1>, %a: tensor<2x4xf32>, %b: tensor<f32>) {
  // expected-error @+1 {{'nn.where' op shapes of 'condition' (3), 'true_value' (2x4) and 'false_value' (scalar) are not broadcast-compatible}}
  %0 = nn.where %c, %a, %b : tensor<3xi1>, tensor<2x4xf32>, tensor<f32>
  return
}

// -----

func.func @where_condition(%c: tensor<4xi32>, %a: tensor<4xf32>) {
  // expected-error @+1 {{'nn.where' op operand #0 must be ranked tensor of 1-bit signless integer values, but got 'tensor<4xi32>'}}
  %0 = "nn.where"(%c, %a, %a) : (tensor<4xi32>, tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @compare_types(%a: tensor<4xi32>, %b: tensor<4xi64>) {
  // expected-error @+1 {{'nn.compare' op 'lhs' ('tensor<4xi32>') and 'rhs' ('tensor<4xi64>') must have the same element type}}
  %0 = nn.compare lt %a, %b : tensor<4xi32>, tensor<4xi64>
  return
}

// -----

func.func @compare_broadcast(%a: tensor<4xf32>, %b: tensor<3xf32>) {
  // expected-error @+1 {{'nn.compare' op shapes of 'lhs' (4) and 'rhs' (3) are not broadcast-compatible}}
  %0 = nn.compare ge %a, %b : tensor<4xf32>, tensor<3xf32>
  return
}

// -----

func.func @cast_shape(%a: tensor<4x?xf32>) {
  // expected-error @+1 {{'nn.cast' op result shape (4x3) must equal the shape of 'input' (4x?)}}
  %0 = nn.cast %a : tensor<4x?xf32> -> tensor<4x3xi32>
  return
}

// -----

func.func @cast_type(%a: tensor<4xf32>) {
  // expected-error @+1 {{'nn.cast' op result #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type or 1-bit signless integer or 32-bit signless integer or 64-bit signless integer values, but got 'tensor<4xi8>'}}
  %0 = nn.cast %a : tensor<4xf32> -> tensor<4xi8>
  return
}

// -----

func.func @expand_element_type(%a: tensor<4xf32>) {
  // expected-error @+1 {{'nn.expand' op result element type ('f16') must match 'input' element type ('f32')}}
  %0 = nn.expand %a : tensor<4xf32> -> tensor<2x4xf16>
  return
}

// -----

func.func @expand_rank(%a: tensor<2x4xf32>) {
  // expected-error @+1 {{'nn.expand' op 'input' (2x4) has more dimensions than the result (4)}}
  %0 = nn.expand %a : tensor<2x4xf32> -> tensor<4xf32>
  return
}

// -----

func.func @expand_extent(%a: tensor<3x1xf32>) {
  // expected-error @+1 {{'nn.expand' op dimension 0 of 'input' (3x1) must be 1 or the extent of the aligned result dimension (2x4x5)}}
  %0 = nn.expand %a : tensor<3x1xf32> -> tensor<2x4x5xf32>
  return
}

// -----

func.func @expand_sizes(%a: tensor<1x4xf32>) {
  // expected-error @+1 {{'nn.expand' op has 0 'dynamic_sizes' but result 'tensor<?x4xf32>' has 1 dynamic dimensions}}
  %0 = nn.expand %a : tensor<1x4xf32> -> tensor<?x4xf32>
  return
}

// -----

func.func @topk_axis(%a: tensor<4x8xf32>) {
  // expected-error @+1 {{'nn.topk' op 'axis' 2 is out of range for 'input' (4x8, rank 2)}}
  %v, %i = nn.topk %a top 2 {axis = 2 : i64} : tensor<4x8xf32>
}

// -----

func.func @topk_k(%a: tensor<?x8xf32>) {
  // expected-error @+1 {{'nn.topk' op 'k' (9) exceeds the extent of dimension 1 of 'input' (?x8)}}
  %v, %i = nn.topk %a top 9 : tensor<?x8xf32>
}

// -----

func.func @topk_k_positive(%a: tensor<?x8xf32>) {
  // expected-error @+1 {{'nn.topk' op attribute 'k' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %v, %i = nn.topk %a top 0 : tensor<?x8xf32>
}

// -----

func.func @iota_rank() {
  // expected-error @+1 {{'nn.iota' op result must have rank 1, got 'tensor<2x3xi64>'}}
  %0 = nn.iota : tensor<2x3xi64>
  return
}

// -----

func.func @iota_sizes() {
  // expected-error @+1 {{'nn.iota' op has 0 'dynamic_sizes' but result 'tensor<?xi32>' has 1 dynamic dimensions}}
  %0 = nn.iota : tensor<?xi32>
  return
}

// -----

func.func @trilu_rank(%a: tensor<8xf32>) {
  // expected-error @+1 {{'nn.trilu' op 'input' must have rank >= 2 (matrices in the last two dimensions), got 'tensor<8xf32>'}}
  %0 = nn.trilu %a : tensor<8xf32>
  return
}
