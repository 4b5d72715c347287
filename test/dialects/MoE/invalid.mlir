// RUN: moe-opt %s -split-input-file -verify-diagnostics

// One case per diagnostic of the moe ops. Ops with inferred result types
// report shape errors while the custom form is parsed; the diagnostics still
// carry the op's location.

//===----------------------------------------------------------------------===//
// moe.gate
//===----------------------------------------------------------------------===//

func.func @gate_input_rank(%x: tensor<64xf32>, %w: tensor<64x8xf32>) {
  // expected-error @+1 {{'moe.gate' op 'input' must have rank 2 ([T, D]), got 'tensor<64xf32>'}}
  %l = moe.gate %x, %w : tensor<64xf32>, tensor<64x8xf32>
  return
}

// -----

func.func @gate_weight_rank(%x: tensor<4x64xf32>, %w: tensor<2x64x8xf32>) {
  // expected-error @+1 {{'moe.gate' op 'weight' must have rank 2 ([D, E]), got 'tensor<2x64x8xf32>'}}
  %l = moe.gate %x, %w : tensor<4x64xf32>, tensor<2x64x8xf32>
  return
}

// -----

func.func @gate_weight_element(%x: tensor<4x64xf32>, %w: tensor<64x8xbf16>) {
  // expected-error @+1 {{'moe.gate' op 'weight' element type ('bf16') must match 'input' element type ('f32')}}
  %l = moe.gate %x, %w : tensor<4x64xf32>, tensor<64x8xbf16>
  return
}

// -----

func.func @gate_weight_features(%x: tensor<4x64xf32>, %w: tensor<32x8xf32>) {
  // expected-error @+1 {{'moe.gate' op 'weight' dimension 0 (32) must equal the feature size D of 'input' (64); 'weight' has shape 32x8}}
  %l = moe.gate %x, %w : tensor<4x64xf32>, tensor<32x8xf32>
  return
}

// -----

func.func @gate_bias_rank(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>,
                          %b: tensor<1x8xf32>) {
  // expected-error @+1 {{'moe.gate' op 'bias' must have rank 1 ([E]), got 'tensor<1x8xf32>'}}
  %l = moe.gate %x, %w bias %b : tensor<4x64xf32>, tensor<64x8xf32>, tensor<1x8xf32>
  return
}

// -----

func.func @gate_bias_experts(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>,
                             %b: tensor<4xf32>) {
  // expected-error @+1 {{'moe.gate' op 'bias' dimension 0 (4) must equal the number of experts of 'weight' (8); 'bias' has shape 4}}
  %l = moe.gate %x, %w bias %b : tensor<4x64xf32>, tensor<64x8xf32>, tensor<4xf32>
  return
}

// -----

func.func @gate_bias_element(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>,
                             %b: tensor<8xf16>) {
  // expected-error @+1 {{'moe.gate' op 'bias' element type ('f16') must match 'input' element type ('f32')}}
  %l = moe.gate %x, %w bias %b : tensor<4x64xf32>, tensor<64x8xf32>, tensor<8xf16>
  return
}

// -----

// The custom form parses the types of optional operands without their ODS
// constraint; inference must reject them before looking at shapes.
func.func @gate_bias_not_tensor(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>,
                                %b: f32) {
  // expected-error @+1 {{'moe.gate' op 'bias' must be a ranked tensor, got 'f32'}}
  %l = moe.gate %x, %w bias %b : tensor<4x64xf32>, tensor<64x8xf32>, f32
  return
}

// -----

func.func @gate_bias_unranked(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>,
                              %b: tensor<*xf32>) {
  // expected-error @+1 {{'moe.gate' op 'bias' must be a ranked tensor, got 'tensor<*xf32>'}}
  %l = moe.gate %x, %w bias %b : tensor<4x64xf32>, tensor<64x8xf32>, tensor<*xf32>
  return
}

// -----

func.func @gate_jitter_negative(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>,
                                %seed: i64) {
  // expected-error @+1 {{'moe.gate' op 'jitter_eps' must lie in [0, 1), got -5.000000e-01}}
  %l = moe.gate %x, %w seed %seed {jitter_eps = -0.5 : f32} : tensor<4x64xf32>, tensor<64x8xf32>
  return
}

// -----

func.func @gate_jitter_one(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>,
                           %seed: i64) {
  // expected-error @+1 {{'moe.gate' op 'jitter_eps' must lie in [0, 1), got 1.000000e+00}}
  %l = moe.gate %x, %w seed %seed {jitter_eps = 1.0 : f32} : tensor<4x64xf32>, tensor<64x8xf32>
  return
}

// -----

func.func @gate_jitter_without_seed(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>) {
  // expected-error @+1 {{'moe.gate' op 'jitter_eps' = 1.000000e-02 needs a 'seed' operand to draw the jitter}}
  %l = moe.gate %x, %w {jitter_eps = 0.01 : f32} : tensor<4x64xf32>, tensor<64x8xf32>
  return
}

// -----

func.func @gate_jitter_f64(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>) {
  // expected-error @+1 {{'moe.gate' op attribute 'jitter_eps' failed to satisfy constraint: 32-bit float attribute}}
  %l = moe.gate %x, %w {jitter_eps = 0.01 : f64} : tensor<4x64xf32>, tensor<64x8xf32>
  return
}

// -----

func.func @gate_seed_type(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>, %seed: i32) {
  // expected-error @+1 {{'moe.gate' op operand #2 must be 64-bit signless integer, but got 'i32'}}
  %l = "moe.gate"(%x, %w, %seed) <{operandSegmentSizes = array<i32: 1, 1, 0, 1>}> : (tensor<4x64xf32>, tensor<64x8xf32>, i32) -> tensor<4x8xf32>
  return
}

// -----

func.func @gate_integer_input(%x: tensor<4x64xi32>, %w: tensor<64x8xi32>) {
  // expected-error @+1 {{'moe.gate' op operand #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type values, but got 'tensor<4x64xi32>'}}
  %l = moe.gate %x, %w : tensor<4x64xi32>, tensor<64x8xi32>
  return
}

// -----

func.func @gate_generic_result_type(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>) {
  // expected-error @+2 {{'moe.gate' op inferred type(s) 'tensor<4x8xf32>' are incompatible with return type(s) of operation 'tensor<4x4xf32>'}}
  // expected-error @+1 {{'moe.gate' op failed to infer returned types}}
  %l = "moe.gate"(%x, %w) <{operandSegmentSizes = array<i32: 1, 1, 0, 0>}> : (tensor<4x64xf32>, tensor<64x8xf32>) -> tensor<4x4xf32>
  return
}

// -----

func.func @gate_generic_segment_count(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>) {
  // expected-error @+1 {{'moe.gate' op operand count (2) does not match with the total size (3) specified in attribute 'operandSegmentSizes'}}
  %l = "moe.gate"(%x, %w) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> : (tensor<4x64xf32>, tensor<64x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

// The sizes add up to the operand count, but 'weight' has no operand: the
// verifier must not read past the operands.
func.func @gate_generic_segment_required(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>) {
  // expected-error @+2 {{'moe.gate' op 'operandSegmentSizes' gives the required operand 'input' 2 values, expected 1}}
  // expected-error @+1 {{'moe.gate' op failed to infer returned types}}
  %l = "moe.gate"(%x, %w) <{operandSegmentSizes = array<i32: 2, 0, 0, 0>}> : (tensor<4x64xf32>, tensor<64x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

// The custom form infers result types with the attr-dict entries, which may
// include sizes that no verifier has seen.
func.func @gate_attr_dict_segment_size(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>) {
  // expected-error @+1 {{'moe.gate' op 'operandSegmentSizes' gives operand group #2 5 values, expected 0 or 1}}
  %l = moe.gate %x, %w {operandSegmentSizes = array<i32: 1, 1, 5, 0>} : tensor<4x64xf32>, tensor<64x8xf32>
  return
}

// -----

func.func @gate_generic_segment_optional(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>) {
  // expected-error @+1 {{'moe.gate' op operand group starting at #2 requires 0 or 1 element, but found 2}}
  %l = "moe.gate"(%x, %w, %w, %w) <{operandSegmentSizes = array<i32: 1, 1, 2, 0>}> : (tensor<4x64xf32>, tensor<64x8xf32>, tensor<64x8xf32>, tensor<64x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @gate_generic_segment_length(%x: tensor<4x64xf32>, %w: tensor<64x8xf32>) {
  // expected-error @+1 {{size mismatch in attribute conversion: 3 vs 4}}
  %l = "moe.gate"(%x, %w) <{operandSegmentSizes = array<i32: 1, 1, 0>}> : (tensor<4x64xf32>, tensor<64x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.token_choice
//===----------------------------------------------------------------------===//

func.func @token_choice_logits_rank(%logits: tensor<8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op 'logits' must have rank 2 ([T, E]), got 'tensor<8xf32>'}}
  %w, %i, %p = moe.token_choice softmax %logits top 1 : tensor<8xf32>
  return
}

// -----

func.func @token_choice_k_zero(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op attribute 'k' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %w, %i, %p = moe.token_choice softmax %logits top 0 : tensor<4x8xf32>
  return
}

// -----

func.func @token_choice_missing_k(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op requires attribute 'k'}}
  %w, %i, %p = "moe.token_choice"(%logits) <{score = 0 : i32}> : (tensor<4x8xf32>) -> (tensor<4x1xf32>, tensor<4x1xi32>, tensor<4x8xf32>)
  return
}

// -----

func.func @token_choice_unknown_score(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{custom op 'moe.token_choice' expected string or keyword containing one of the following enum values for attribute 'score' [softmax, sigmoid, sparse_mixer]}}
  %w, %i, %p = moe.token_choice relu %logits top 1 : tensor<4x8xf32>
  return
}

// -----

func.func @token_choice_sparse_mixer_k(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op sparse_mixer routing picks k = 2 experts, got k = 3}}
  %w, %i, %p = moe.token_choice sparse_mixer %logits top 3 : tensor<4x8xf32>
  return
}

// -----

func.func @token_choice_sparse_mixer_bias(%logits: tensor<4x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op sparse_mixer routing takes no 'bias'}}
  %w, %i, %p = moe.token_choice sparse_mixer %logits top 2 bias %b : tensor<4x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @token_choice_sparse_mixer_groups(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op sparse_mixer routing takes no 'num_groups', got 2}}
  %w, %i, %p = moe.token_choice sparse_mixer %logits top 2 {num_groups = 2 : i64} : tensor<4x8xf32>
  return
}

// -----

func.func @token_choice_sparse_mixer_normalize(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op sparse_mixer routing takes no 'normalize'; its weights are not renormalised}}
  %w, %i, %p = moe.token_choice sparse_mixer %logits top 2 {normalize} : tensor<4x8xf32>
  return
}

// -----

func.func @token_choice_k_exceeds_experts(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op 'k' (9) exceeds the 8 experts eligible ('topk_groups' = 1 of 'num_groups' = 1 groups of 8); 'logits' has shape 4x8}}
  %w, %i, %p = moe.token_choice softmax %logits top 9 : tensor<4x8xf32>
  return
}

// -----

func.func @token_choice_k_exceeds_groups(%logits: tensor<?x64xf32>) {
  // expected-error @+1 {{'moe.token_choice' op 'k' (9) exceeds the 8 experts eligible ('topk_groups' = 1 of 'num_groups' = 8 groups of 8); 'logits' has shape ?x64}}
  %w, %i, %p = moe.token_choice sigmoid %logits top 9 {num_groups = 8 : i64, topk_groups = 1 : i64} : tensor<?x64xf32>
  return
}

// -----

func.func @token_choice_groups_divide(%logits: tensor<4x10xf32>) {
  // expected-error @+1 {{'moe.token_choice' op 'num_groups' (4) must divide the number of experts (10); 'logits' has shape 4x10}}
  %w, %i, %p = moe.token_choice sigmoid %logits top 2 {num_groups = 4 : i64} : tensor<4x10xf32>
  return
}

// -----

func.func @token_choice_groups_zero(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op 'num_groups' must be >= 1, got 0}}
  %w, %i, %p = moe.token_choice softmax %logits top 1 {num_groups = 0 : i64} : tensor<4x8xf32>
  return
}

// -----

func.func @token_choice_topk_groups_range(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op 'topk_groups' (3) must lie in [1, num_groups = 2]}}
  %w, %i, %p = moe.token_choice softmax %logits top 1 {num_groups = 2 : i64, topk_groups = 3 : i64} : tensor<4x8xf32>
  return
}

// -----

func.func @token_choice_scaling_factor(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op 'scaling_factor' must be > 0, got 0.000000e+00}}
  %w, %i, %p = moe.token_choice softmax %logits top 1 {scaling_factor = 0.0 : f32} : tensor<4x8xf32>
  return
}

// -----

func.func @token_choice_bias_rank(%logits: tensor<4x8xf32>, %b: tensor<8x1xf32>) {
  // expected-error @+1 {{'moe.token_choice' op 'bias' must have rank 1 ([E]), got 'tensor<8x1xf32>'}}
  %w, %i, %p = moe.token_choice sigmoid %logits top 2 bias %b : tensor<4x8xf32>, tensor<8x1xf32>
  return
}

// -----

func.func @token_choice_bias_experts(%logits: tensor<4x8xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{'moe.token_choice' op 'bias' dimension 0 (16) must equal the number of experts of 'logits' (8); 'bias' has shape 16}}
  %w, %i, %p = moe.token_choice sigmoid %logits top 2 bias %b : tensor<4x8xf32>, tensor<16xf32>
  return
}

// -----

func.func @token_choice_bias_element(%logits: tensor<4x8xbf16>, %b: tensor<8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op 'bias' element type ('f32') must match 'logits' element type ('bf16')}}
  %w, %i, %p = moe.token_choice sigmoid %logits top 2 bias %b : tensor<4x8xbf16>, tensor<8xf32>
  return
}

// -----

func.func @token_choice_bias_not_tensor(%logits: tensor<4x8xf32>, %b: i64) {
  // expected-error @+1 {{'moe.token_choice' op 'bias' must be a ranked tensor, got 'i64'}}
  %w, %i, %p = moe.token_choice sigmoid %logits top 2 bias %b : tensor<4x8xf32>, i64
  return
}

// -----

func.func @token_choice_generic_operands(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.token_choice' op operand group starting at #1 requires 0 or 1 element, but found 2}}
  %w, %i, %p = "moe.token_choice"(%logits, %logits, %logits) <{k = 1 : i64, score = 0 : i32}> : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<4x1xf32>, tensor<4x1xi32>, tensor<4x8xf32>)
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.expert_choice
//===----------------------------------------------------------------------===//

func.func @expert_choice_logits_rank(%logits: tensor<2x4x8xf32>) {
  // expected-error @+1 {{'moe.expert_choice' op 'logits' must have rank 2 ([T, E]), got 'tensor<2x4x8xf32>'}}
  %rt, %rw, %off, %p = moe.expert_choice %logits {capacity_factor = 1.0 : f64} : tensor<2x4x8xf32>
  return
}

// -----

func.func @expert_choice_missing_capacity(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.expert_choice' op requires attribute 'capacity_factor'}}
  %rt, %rw, %off, %p = moe.expert_choice %logits : tensor<4x8xf32>
  return
}

// -----

func.func @expert_choice_capacity_zero(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.expert_choice' op attribute 'capacity_factor' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %rt, %rw, %off, %p = moe.expert_choice %logits {capacity_factor = 0.0 : f64} : tensor<4x8xf32>
  return
}

// -----

func.func @expert_choice_capacity_f32(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.expert_choice' op attribute 'capacity_factor' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %rt, %rw, %off, %p = moe.expert_choice %logits {capacity_factor = 1.0 : f32} : tensor<4x8xf32>
  return
}

// -----

func.func @expert_choice_no_experts(%logits: tensor<4x0xf32>) {
  // expected-error @+1 {{'moe.expert_choice' op 'logits' must have at least one expert column, got 'tensor<4x0xf32>'}}
  %rt, %rw, %off, %p = moe.expert_choice %logits {capacity_factor = 1.0 : f64} : tensor<4x0xf32>
  return
}

// -----

func.func @expert_choice_rows_overflow(%logits: tensor<4294967296x4294967296xf32>) {
  // expected-error @+1 {{'moe.expert_choice' op the row count E * C overflows int64; 'logits' has shape 4294967296x4294967296}}
  %rt, %rw, %off, %p = moe.expert_choice %logits {capacity_factor = 4294967296.0 : f64} : tensor<4294967296x4294967296xf32>
  return
}

// -----

func.func @expert_choice_generic_result_type(%logits: tensor<64x8xf32>) {
  // expected-error @+2 {{'moe.expert_choice' op inferred type(s) 'tensor<128xi32>', 'tensor<128xf32>', 'tensor<9xi32>', 'tensor<64x8xf32>' are incompatible with return type(s) of operation 'tensor<64xi32>', 'tensor<64xf32>', 'tensor<9xi32>', 'tensor<64x8xf32>'}}
  // expected-error @+1 {{'moe.expert_choice' op failed to infer returned types}}
  %rt, %rw, %off, %p = "moe.expert_choice"(%logits) <{capacity_factor = 2.0 : f64}> : (tensor<64x8xf32>) -> (tensor<64xi32>, tensor<64xf32>, tensor<9xi32>, tensor<64x8xf32>)
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

func.func @dispatch_missing_num_experts(%idx: tensor<4x2xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op requires attribute 'num_experts'}}
  %rt, %rw, %off = moe.dispatch %idx, %w {capacity_factor = 1.0 : f64} : tensor<4x2xi32>, tensor<4x2xf32>
  return
}

// -----

func.func @dispatch_num_experts_zero(%idx: tensor<4x2xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op attribute 'num_experts' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 0 : i64} : tensor<4x2xi32>, tensor<4x2xf32>
  return
}

// -----

func.func @dispatch_capacity_negative(%idx: tensor<4x2xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op attribute 'capacity_factor' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64, capacity_factor = -1.0 : f64} : tensor<4x2xi32>, tensor<4x2xf32>
  return
}

// -----

func.func @dispatch_capacity_nan(%idx: tensor<4x2xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op attribute 'capacity_factor' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64, capacity_factor = 0x7FF8000000000000 : f64} : tensor<4x2xi32>, tensor<4x2xf32>
  return
}

// -----

func.func @dispatch_f32_indices(%idx: tensor<4x2xf32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op operand #0 must be ranked tensor of 32-bit signless integer values, but got 'tensor<4x2xf32>'}}
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64} : tensor<4x2xf32>, tensor<4x2xf32>
  return
}

// -----

func.func @dispatch_indices_rank(%idx: tensor<8xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op 'indices' must have rank 2 ([T, k]), got 'tensor<8xi32>'}}
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64} : tensor<8xi32>, tensor<4x2xf32>
  return
}

// -----

func.func @dispatch_weights_rank(%idx: tensor<4x2xi32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{'moe.dispatch' op 'weights' must have rank 2 ([T, k]), got 'tensor<8xf32>'}}
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64} : tensor<4x2xi32>, tensor<8xf32>
  return
}

// -----

func.func @dispatch_weights_tokens(%idx: tensor<4x2xi32>, %w: tensor<5x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op 'weights' dimension 0 (5) must equal the token count T of 'indices' (4); 'weights' has shape 5x2}}
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64} : tensor<4x2xi32>, tensor<5x2xf32>
  return
}

// -----

func.func @dispatch_weights_k(%idx: tensor<?x2xi32>, %w: tensor<?x1xf32>) {
  // expected-error @+1 {{'moe.dispatch' op 'weights' dimension 1 (1) must equal k of 'indices' (2); 'weights' has shape ?x1}}
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64} : tensor<?x2xi32>, tensor<?x1xf32>
  return
}

// -----

func.func @dispatch_k_exceeds_experts(%idx: tensor<4x3xi32>, %w: tensor<4x3xf32>) {
  // expected-error @+1 {{'moe.dispatch' op each token chooses k = 3 experts but 'num_experts' is 2; 'indices' has shape 4x3}}
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 2 : i64} : tensor<4x3xi32>, tensor<4x3xf32>
  return
}

// -----

func.func @dispatch_num_experts_max(%idx: tensor<4x2xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op 'num_experts' (9223372036854775807) leaves no E + 1 extent for 'offsets'}}
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 9223372036854775807 : i64} : tensor<4x2xi32>, tensor<4x2xf32>
  return
}

// -----

func.func @dispatch_rows_overflow(%idx: tensor<4611686018427387904x4xi32>, %w: tensor<4611686018427387904x4xf32>) {
  // expected-error @+1 {{'moe.dispatch' op the row count T * k overflows int64; 'indices' has shape 4611686018427387904x4, 'weights' has shape 4611686018427387904x4}}
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64} : tensor<4611686018427387904x4xi32>, tensor<4611686018427387904x4xf32>
  return
}

// -----

func.func @dispatch_generic_result_type(%idx: tensor<10x2xi32>, %w: tensor<10x2xf32>) {
  // expected-error @+2 {{'moe.dispatch' op inferred type(s) 'tensor<20xi32>', 'tensor<20xf32>', 'tensor<5xi32>' are incompatible with return type(s) of operation 'tensor<28xi32>', 'tensor<28xf32>', 'tensor<5xi32>'}}
  // expected-error @+1 {{'moe.dispatch' op failed to infer returned types}}
  %rt, %rw, %off = "moe.dispatch"(%idx, %w) <{num_experts = 4 : i64, capacity_factor = 1.25 : f64}> : (tensor<10x2xi32>, tensor<10x2xf32>) -> (tensor<28xi32>, tensor<28xf32>, tensor<5xi32>)
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.permute
//===----------------------------------------------------------------------===//

func.func @permute_input_rank(%x: tensor<f32>, %rt: tensor<8xi32>) {
  // expected-error @+1 {{'moe.permute' op 'input' must have rank 2 ([T, D]), got 'tensor<f32>'}}
  %xs = moe.permute %x, %rt : tensor<f32>, tensor<8xi32>
  return
}

// -----

func.func @permute_row_token_rank(%x: tensor<4x16xf32>, %rt: tensor<4x2xi32>) {
  // expected-error @+1 {{'moe.permute' op 'row_token' must have rank 1 ([R]), got 'tensor<4x2xi32>'}}
  %xs = moe.permute %x, %rt : tensor<4x16xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @permute_row_token_element(%x: tensor<4x16xf32>, %rt: tensor<8xi64>) {
  // expected-error @+1 {{'moe.permute' op operand #1 must be ranked tensor of 32-bit signless integer values, but got 'tensor<8xi64>'}}
  %xs = moe.permute %x, %rt : tensor<4x16xf32>, tensor<8xi64>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.expert_ffn
//===----------------------------------------------------------------------===//

func.func @expert_ffn_input_rank(%xs: tensor<8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'input' must have rank 2 ([R, D]), got 'tensor<8xf32>'}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 : tensor<8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_offsets_rank(%xs: tensor<4x8xf32>, %off: tensor<i32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'offsets' must have rank 1 ([E + 1]), got 'tensor<i32>'}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 : tensor<4x8xf32>, tensor<i32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_offsets_one_entry(%xs: tensor<4x8xf32>, %off: tensor<1xi32>, %w1: tensor<0x8x16xf32>, %w2: tensor<0x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'offsets' must have E + 1 >= 2 entries, got 'tensor<1xi32>'}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 : tensor<4x8xf32>, tensor<1xi32>, tensor<0x8x16xf32>, tensor<0x16x8xf32>
  return
}

// -----

func.func @expert_ffn_gated_needs_fc3(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op activation 'swiglu' is gated and needs the 'fc3' weights}}
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc3_not_gated(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc3' is used only by gated activations (swiglu, geglu, geglu_tanh), not by 'silu'}}
  %ys = moe.expert_ffn silu %xs, %off, %w1, %w2 fc3 %w1 : tensor<2x8x16xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc3_bias_without_fc3(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %b: tensor<2x16xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc3_bias' needs 'fc3'}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 fc3_bias %b : tensor<2x16xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_geglu_tanh_needs_fc3(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op activation 'geglu_tanh' is gated and needs the 'fc3' weights}}
  %ys = moe.expert_ffn geglu_tanh %xs, %off, %w1, %w2 : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_relu2_fc3(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc3' is used only by gated activations (swiglu, geglu, geglu_tanh), not by 'relu2'}}
  %ys = moe.expert_ffn relu2 %xs, %off, %w1, %w2 fc3 %w1 : tensor<2x8x16xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_swiglu_alpha_not_swiglu(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'swiglu_alpha' = 1.702000e+00 is a parameter of the swiglu activation, not of 'silu'}}
  %ys = moe.expert_ffn silu %xs, %off, %w1, %w2 {swiglu_alpha = 1.702 : f32} : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_swiglu_beta_not_swiglu(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'swiglu_beta' = 1.000000e+00 is a parameter of the swiglu activation, not of 'geglu'}}
  %ys = moe.expert_ffn geglu %xs, %off, %w1, %w2 fc3 %w1 : tensor<2x8x16xf32> {swiglu_beta = 1.0 : f32} : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_swiglu_limit_not_swiglu(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'swiglu_limit' = 7.000000e+00 is a parameter of the swiglu activation, not of 'identity'}}
  %ys = moe.expert_ffn identity %xs, %off, %w1, %w2 {swiglu_limit = 7.0 : f32} : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_swiglu_alpha_infinite(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'swiglu_alpha' must be finite, got INF}}
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w1 : tensor<2x8x16xf32> {swiglu_alpha = 0x7F800000 : f32} : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_swiglu_beta_nan(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'swiglu_beta' must be finite, got nan}}
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w1 : tensor<2x8x16xf32> {swiglu_beta = 0x7FC00000 : f32} : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_swiglu_limit_infinite(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'swiglu_limit' must be finite, got INF}}
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w1 : tensor<2x8x16xf32> {swiglu_limit = 0x7F800000 : f32} : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_swiglu_limit_not_positive(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op attribute 'swiglu_limit' failed to satisfy constraint: 32-bit float attribute whose value is positive}}
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w1 : tensor<2x8x16xf32> {swiglu_limit = 0.0 : f32} : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_unknown_activation(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{custom op 'moe.expert_ffn' expected string or keyword containing one of the following enum values for attribute 'activation' [relu, gelu, gelu_tanh, silu, swiglu, geglu, identity, relu2, geglu_tanh]}}
  %ys = moe.expert_ffn tanh %xs, %off, %w1, %w2 : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc1_rank(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc1' must have rank 3 ([E, D, F]), got 'tensor<8x16xf32>'}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 : tensor<4x8xf32>, tensor<3xi32>, tensor<8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc2_rank(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc2' must have rank 3 ([E, F, D_out]), got 'tensor<16x8xf32>'}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc3_rank(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %w3: tensor<8x16xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc3' must have rank 3 ([E, D, F]), got 'tensor<8x16xf32>'}}
  %ys = moe.expert_ffn geglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<8x16xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc1_bias_rank(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc1_bias' must have rank 2 ([E, F]), got 'tensor<16xf32>'}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 fc1_bias %b : tensor<16xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc2_bias_rank(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc2_bias' must have rank 2 ([E, D_out]), got 'tensor<8xf32>'}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 fc2_bias %b : tensor<8xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc3_bias_rank(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %b: tensor<2x1x16xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc3_bias' must have rank 2 ([E, F]), got 'tensor<2x1x16xf32>'}}
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w1 : tensor<2x8x16xf32> fc3_bias %b : tensor<2x1x16xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc1_element(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xbf16>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc1' element type ('bf16') must match 'input' element type ('f32')}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xbf16>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc2_bias_element(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %b: tensor<2x8xf16>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc2_bias' element type ('f16') must match 'input' element type ('f32')}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 fc2_bias %b : tensor<2x8xf16> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc1_experts(%xs: tensor<4x8xf32>, %off: tensor<5xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc1' dimension 0 (2) must equal the number of experts of 'offsets' (4); 'fc1' has shape 2x8x16}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 : tensor<4x8xf32>, tensor<5xi32>, tensor<2x8x16xf32>, tensor<4x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc2_experts(%xs: tensor<4x8xf32>, %off: tensor<?xi32>, %w1: tensor<4x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc2' dimension 0 (2) must equal the number of experts of 'fc1' (4); 'fc2' has shape 2x16x8}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 : tensor<4x8xf32>, tensor<?xi32>, tensor<4x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc1_bias_experts(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %b: tensor<3x16xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc1_bias' dimension 0 (3) must equal the number of experts of 'offsets' (2); 'fc1_bias' has shape 3x16}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 fc1_bias %b : tensor<3x16xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc1_features(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x4x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc1' dimension 1 (4) must equal the feature size D of 'input' (8); 'fc1' has shape 2x4x16}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 : tensor<4x8xf32>, tensor<3xi32>, tensor<2x4x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc3_features(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %w3: tensor<2x4x16xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc3' dimension 1 (4) must equal the feature size D of 'input' (8); 'fc3' has shape 2x4x16}}
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<2x4x16xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc3_hidden(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %w3: tensor<2x8x32xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc3' dimension 2 (32) must equal the hidden size F of 'fc1' (16); 'fc3' has shape 2x8x32}}
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<2x8x32xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

// A dynamic hidden size in fc1 does not hide a mismatch between fc3 and fc2.
func.func @expert_ffn_hidden_through_dynamic(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x?xf32>, %w2: tensor<2x32x8xf32>, %w3: tensor<2x8x16xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc2' dimension 1 (32) must equal the hidden size F of 'fc3' (16); 'fc2' has shape 2x32x8}}
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<2x8x16xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x?xf32>, tensor<2x32x8xf32>
  return
}

// -----

func.func @expert_ffn_fc2_hidden(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x32x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc2' dimension 1 (32) must equal the hidden size F of 'fc1' (16); 'fc2' has shape 2x32x8}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x32x8xf32>
  return
}

// -----

func.func @expert_ffn_fc1_bias_hidden(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %b: tensor<2x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc1_bias' dimension 1 (8) must equal the hidden size F of 'fc1' (16); 'fc1_bias' has shape 2x8}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 fc1_bias %b : tensor<2x8xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc3_bias_hidden(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %b: tensor<2x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc3_bias' dimension 1 (8) must equal the hidden size F of 'fc1' (16); 'fc3_bias' has shape 2x8}}
  %ys = moe.expert_ffn geglu %xs, %off, %w1, %w2 fc3 %w1 : tensor<2x8x16xf32> fc3_bias %b : tensor<2x8xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc2_bias_out(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %b: tensor<2x16xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc2_bias' dimension 1 (16) must equal the output size D_out of 'fc2' (8); 'fc2_bias' has shape 2x16}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 fc2_bias %b : tensor<2x16xf32> : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_fc3_not_tensor(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %w3: f32) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc3' must be a ranked tensor, got 'f32'}}
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : f32 : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_bias_not_tensor(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %b: index) {
  // expected-error @+1 {{'moe.expert_ffn' op 'fc2_bias' must be a ranked tensor, got 'index'}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 fc2_bias %b : index : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

func.func @expert_ffn_missing_activation(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op requires attribute 'activation'}}
  %ys = "moe.expert_ffn"(%xs, %off, %w1, %w2) <{operandSegmentSizes = array<i32: 1, 1, 1, 1, 0, 0, 0, 0>}> : (tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @expert_ffn_generic_segment_required(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+2 {{'moe.expert_ffn' op 'operandSegmentSizes' gives the required operand 'fc2' 0 values, expected 1}}
  // expected-error @+1 {{'moe.expert_ffn' op failed to infer returned types}}
  %ys = "moe.expert_ffn"(%xs, %off, %w1, %w2) <{activation = 4 : i32, operandSegmentSizes = array<i32: 1, 1, 1, 0, 1, 0, 0, 0>}> : (tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @expert_ffn_attr_dict_segment_total(%xs: tensor<4x8xf32>, %off: tensor<3xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'operandSegmentSizes' adds up to 5 operands, but the op has 4}}
  %ys = moe.expert_ffn relu %xs, %off, %w1, %w2 {operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 0>} : tensor<4x8xf32>, tensor<3xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

func.func @combine_input_rank(%ys: tensor<8xf32>, %rt: tensor<8xi32>, %rw: tensor<8xf32>, %init: tensor<4x16xf32>) {
  // expected-error @+1 {{'moe.combine' op 'input' must have rank 2 ([R, D]), got 'tensor<8xf32>'}}
  %y = moe.combine %ys, %rt, %rw into %init : tensor<8xf32>, tensor<8xi32>, tensor<8xf32>, tensor<4x16xf32>
  return
}

// -----

func.func @combine_row_token_rank(%ys: tensor<8x16xf32>, %rt: tensor<8x1xi32>, %rw: tensor<8xf32>, %init: tensor<4x16xf32>) {
  // expected-error @+1 {{'moe.combine' op 'row_token' must have rank 1 ([R]), got 'tensor<8x1xi32>'}}
  %y = moe.combine %ys, %rt, %rw into %init : tensor<8x16xf32>, tensor<8x1xi32>, tensor<8xf32>, tensor<4x16xf32>
  return
}

// -----

func.func @combine_row_weight_rank(%ys: tensor<8x16xf32>, %rt: tensor<8xi32>, %rw: tensor<8x1xf32>, %init: tensor<4x16xf32>) {
  // expected-error @+1 {{'moe.combine' op 'row_weight' must have rank 1 ([R]), got 'tensor<8x1xf32>'}}
  %y = moe.combine %ys, %rt, %rw into %init : tensor<8x16xf32>, tensor<8xi32>, tensor<8x1xf32>, tensor<4x16xf32>
  return
}

// -----

func.func @combine_init_rank(%ys: tensor<8x16xf32>, %rt: tensor<8xi32>, %rw: tensor<8xf32>, %init: tensor<16xf32>) {
  // expected-error @+1 {{'moe.combine' op 'init' must have rank 2 ([T, D]), got 'tensor<16xf32>'}}
  %y = moe.combine %ys, %rt, %rw into %init : tensor<8x16xf32>, tensor<8xi32>, tensor<8xf32>, tensor<16xf32>
  return
}

// -----

func.func @combine_row_token_rows(%ys: tensor<8x16xf32>, %rt: tensor<6xi32>, %rw: tensor<8xf32>, %init: tensor<4x16xf32>) {
  // expected-error @+1 {{'moe.combine' op 'row_token' dimension 0 (6) must equal the row count R of 'input' (8); 'row_token' has shape 6}}
  %y = moe.combine %ys, %rt, %rw into %init : tensor<8x16xf32>, tensor<6xi32>, tensor<8xf32>, tensor<4x16xf32>
  return
}

// -----

func.func @combine_rows_through_dynamic(%ys: tensor<?x16xf32>, %rt: tensor<8xi32>, %rw: tensor<6xf32>, %init: tensor<4x16xf32>) {
  // expected-error @+1 {{'moe.combine' op 'row_weight' dimension 0 (6) must equal the row count R of 'row_token' (8); 'row_weight' has shape 6}}
  %y = moe.combine %ys, %rt, %rw into %init : tensor<?x16xf32>, tensor<8xi32>, tensor<6xf32>, tensor<4x16xf32>
  return
}

// -----

func.func @combine_row_weight_rows(%ys: tensor<8x16xf32>, %rt: tensor<?xi32>, %rw: tensor<6xf32>, %init: tensor<4x16xf32>) {
  // expected-error @+1 {{'moe.combine' op 'row_weight' dimension 0 (6) must equal the row count R of 'input' (8); 'row_weight' has shape 6}}
  %y = moe.combine %ys, %rt, %rw into %init : tensor<8x16xf32>, tensor<?xi32>, tensor<6xf32>, tensor<4x16xf32>
  return
}

// -----

func.func @combine_init_features(%ys: tensor<8x16xf32>, %rt: tensor<8xi32>, %rw: tensor<8xf32>, %init: tensor<4x32xf32>) {
  // expected-error @+1 {{'moe.combine' op 'init' dimension 1 (32) must equal the feature size D of 'input' (16); 'init' has shape 4x32}}
  %y = moe.combine %ys, %rt, %rw into %init : tensor<8x16xf32>, tensor<8xi32>, tensor<8xf32>, tensor<4x32xf32>
  return
}

// -----

func.func @combine_row_weight_element(%ys: tensor<8x16xf32>, %rt: tensor<8xi32>, %rw: tensor<8xbf16>, %init: tensor<4x16xf32>) {
  // expected-error @+1 {{'moe.combine' op 'row_weight' element type ('bf16') must match 'input' element type ('f32')}}
  %y = moe.combine %ys, %rt, %rw into %init : tensor<8x16xf32>, tensor<8xi32>, tensor<8xbf16>, tensor<4x16xf32>
  return
}

// -----

func.func @combine_init_element(%ys: tensor<8x16xf32>, %rt: tensor<8xi32>, %rw: tensor<8xf32>, %init: tensor<4x16xf16>) {
  // expected-error @+1 {{'moe.combine' op 'init' element type ('f16') must match 'input' element type ('f32')}}
  %y = moe.combine %ys, %rt, %rw into %init : tensor<8x16xf32>, tensor<8xi32>, tensor<8xf32>, tensor<4x16xf16>
  return
}

// -----

func.func @combine_result_type(%ys: tensor<8x16xf32>, %rt: tensor<8xi32>, %rw: tensor<8xf32>, %init: tensor<4x16xf32>) {
  // expected-error @+1 {{'moe.combine' op failed to verify that all of {init, result} have same type}}
  %y = "moe.combine"(%ys, %rt, %rw, %init) : (tensor<8x16xf32>, tensor<8xi32>, tensor<8xf32>, tensor<4x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_operand_count(%ys: tensor<8x16xf32>, %rt: tensor<8xi32>, %rw: tensor<8xf32>) {
  // expected-error @+1 {{'moe.combine' op expected 4 operands, but found 3}}
  %y = "moe.combine"(%ys, %rt, %rw) : (tensor<8x16xf32>, tensor<8xi32>, tensor<8xf32>) -> tensor<4x16xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.shared_expert
//===----------------------------------------------------------------------===//

func.func @shared_expert_input_rank(%x: tensor<2x4x8xf32>, %s1: tensor<8x16xf32>, %s2: tensor<16x8xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op 'input' must have rank 2 ([T, D]), got 'tensor<2x4x8xf32>'}}
  %s = moe.shared_expert relu %x, %s1, %s2 : tensor<2x4x8xf32>, tensor<8x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @shared_expert_fc1_rank(%x: tensor<4x8xf32>, %s1: tensor<1x8x16xf32>, %s2: tensor<16x8xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op 'fc1' must have rank 2 ([D, F]), got 'tensor<1x8x16xf32>'}}
  %s = moe.shared_expert relu %x, %s1, %s2 : tensor<4x8xf32>, tensor<1x8x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @shared_expert_fc2_rank(%x: tensor<4x8xf32>, %s1: tensor<8x16xf32>, %s2: tensor<1x16x8xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op 'fc2' must have rank 2 ([F, D_out]), got 'tensor<1x16x8xf32>'}}
  %s = moe.shared_expert relu %x, %s1, %s2 : tensor<4x8xf32>, tensor<8x16xf32>, tensor<1x16x8xf32>
  return
}

// -----

func.func @shared_expert_gated_needs_fc3(%x: tensor<4x8xf32>, %s1: tensor<8x16xf32>, %s2: tensor<16x8xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op activation 'geglu' is gated and needs the 'fc3' weights}}
  %s = moe.shared_expert geglu %x, %s1, %s2 : tensor<4x8xf32>, tensor<8x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @shared_expert_fc3_not_gated(%x: tensor<4x8xf32>, %s1: tensor<8x16xf32>, %s2: tensor<16x8xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op 'fc3' is used only by gated activations (swiglu, geglu, geglu_tanh), not by 'gelu_tanh'}}
  %s = moe.shared_expert gelu_tanh %x, %s1, %s2 fc3 %s1 : tensor<8x16xf32> : tensor<4x8xf32>, tensor<8x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @shared_expert_fc3_hidden(%x: tensor<4x8xf32>, %s1: tensor<8x16xf32>, %s2: tensor<16x8xf32>, %s3: tensor<8x32xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op 'fc3' dimension 1 (32) must equal the hidden size F of 'fc1' (16); 'fc3' has shape 8x32}}
  %s = moe.shared_expert swiglu %x, %s1, %s2 fc3 %s3 : tensor<8x32xf32> : tensor<4x8xf32>, tensor<8x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @shared_expert_fc2_element(%x: tensor<4x8xf32>, %s1: tensor<8x16xf32>, %s2: tensor<16x8xbf16>) {
  // expected-error @+1 {{'moe.shared_expert' op 'fc2' element type ('bf16') must match 'input' element type ('f32')}}
  %s = moe.shared_expert relu %x, %s1, %s2 : tensor<4x8xf32>, tensor<8x16xf32>, tensor<16x8xbf16>
  return
}

// -----

func.func @shared_expert_fc1_features(%x: tensor<4x8xf32>, %s1: tensor<16x16xf32>, %s2: tensor<16x8xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op 'fc1' dimension 0 (16) must equal the feature size D of 'input' (8); 'fc1' has shape 16x16}}
  %s = moe.shared_expert relu %x, %s1, %s2 : tensor<4x8xf32>, tensor<16x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @shared_expert_gate_rank(%x: tensor<4x8xf32>, %s1: tensor<8x16xf32>, %s2: tensor<16x8xf32>, %g: tensor<8xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op 'gate' must have rank 2 ([D, 1]), got 'tensor<8xf32>'}}
  %s = moe.shared_expert relu %x, %s1, %s2 gate %g : tensor<8xf32> : tensor<4x8xf32>, tensor<8x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @shared_expert_gate_features(%x: tensor<4x8xf32>, %s1: tensor<8x16xf32>, %s2: tensor<16x8xf32>, %g: tensor<16x1xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op 'gate' dimension 0 (16) must equal the feature size D of 'input' (8); 'gate' has shape 16x1}}
  %s = moe.shared_expert relu %x, %s1, %s2 gate %g : tensor<16x1xf32> : tensor<4x8xf32>, tensor<8x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @shared_expert_gate_width(%x: tensor<4x8xf32>, %s1: tensor<8x16xf32>, %s2: tensor<16x8xf32>, %g: tensor<8x2xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op 'gate' dimension 1 (2) must equal one gate value per token (1); 'gate' has shape 8x2}}
  %s = moe.shared_expert relu %x, %s1, %s2 gate %g : tensor<8x2xf32> : tensor<4x8xf32>, tensor<8x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @shared_expert_gate_element(%x: tensor<4x8xf32>, %s1: tensor<8x16xf32>, %s2: tensor<16x8xf32>, %g: tensor<8x1xf16>) {
  // expected-error @+1 {{'moe.shared_expert' op 'gate' element type ('f16') must match 'input' element type ('f32')}}
  %s = moe.shared_expert relu %x, %s1, %s2 gate %g : tensor<8x1xf16> : tensor<4x8xf32>, tensor<8x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @shared_expert_gate_not_tensor(%x: tensor<4x8xf32>, %s1: tensor<8x16xf32>, %s2: tensor<16x8xf32>, %g: f32) {
  // expected-error @+1 {{'moe.shared_expert' op 'gate' must be a ranked tensor, got 'f32'}}
  %s = moe.shared_expert relu %x, %s1, %s2 gate %g : f32 : tensor<4x8xf32>, tensor<8x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @shared_expert_generic_segment_required(%x: tensor<4x8xf32>, %s1: tensor<8x16xf32>) {
  // expected-error @+2 {{'moe.shared_expert' op 'operandSegmentSizes' gives the required operand 'fc1' 0 values, expected 1}}
  // expected-error @+1 {{'moe.shared_expert' op failed to infer returned types}}
  %s = "moe.shared_expert"(%x, %s1, %s1) <{activation = 0 : i32, operandSegmentSizes = array<i32: 1, 0, 1, 1, 0>}> : (tensor<4x8xf32>, tensor<8x16xf32>, tensor<8x16xf32>) -> tensor<4x8xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// Losses and statistics
//===----------------------------------------------------------------------===//

func.func @load_balancing_loss_probs_rank(%p: tensor<8xf32>, %idx: tensor<4x2xi32>) {
  // expected-error @+1 {{'moe.load_balancing_loss' op 'probs' must have rank 2 ([T, E]), got 'tensor<8xf32>'}}
  %aux = moe.load_balancing_loss %p, %idx : tensor<8xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @load_balancing_loss_indices_rank(%p: tensor<4x8xf32>, %idx: tensor<8xi32>) {
  // expected-error @+1 {{'moe.load_balancing_loss' op 'indices' must have rank 2 ([T, k]), got 'tensor<8xi32>'}}
  %aux = moe.load_balancing_loss %p, %idx : tensor<4x8xf32>, tensor<8xi32>
  return
}

// -----

func.func @load_balancing_loss_tokens(%p: tensor<4x8xf32>, %idx: tensor<5x2xi32>) {
  // expected-error @+1 {{'moe.load_balancing_loss' op 'indices' dimension 0 (5) must equal the token count T of 'probs' (4); 'indices' has shape 5x2}}
  %aux = moe.load_balancing_loss %p, %idx : tensor<4x8xf32>, tensor<5x2xi32>
  return
}

// -----

func.func @load_balancing_loss_f32_indices(%p: tensor<4x8xf32>, %idx: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.load_balancing_loss' op operand #1 must be ranked tensor of 32-bit signless integer values, but got 'tensor<4x2xf32>'}}
  %aux = moe.load_balancing_loss %p, %idx : tensor<4x8xf32>, tensor<4x2xf32>
  return
}

// -----

func.func @z_loss_logits_rank(%logits: tensor<f32>) {
  // expected-error @+1 {{'moe.z_loss' op 'logits' must have rank 2 ([T, E]), got 'tensor<f32>'}}
  %z = moe.z_loss %logits : tensor<f32>
  return
}

// -----

func.func @z_loss_result_type(%logits: tensor<4x8xbf16>) {
  // expected-error @+1 {{'moe.z_loss' op result #0 must be 0D tensor of 32-bit float values, but got 'tensor<bf16>'}}
  %z = "moe.z_loss"(%logits) : (tensor<4x8xbf16>) -> tensor<bf16>
  return
}

// -----

func.func @routing_stats_offsets_rank(%off: tensor<i32>) {
  // expected-error @+1 {{'moe.routing_stats' op 'offsets' must have rank 1 ([E + 1]), got 'tensor<i32>'}}
  %load, %dropped = moe.routing_stats %off : tensor<i32>
  return
}

// -----

func.func @routing_stats_offsets_one_entry(%off: tensor<1xi32>) {
  // expected-error @+1 {{'moe.routing_stats' op 'offsets' must have E + 1 >= 2 entries, got 'tensor<1xi32>'}}
  %load, %dropped = moe.routing_stats %off : tensor<1xi32>
  return
}

// -----

func.func @routing_stats_indices_rank(%off: tensor<9xi32>, %idx: tensor<8xi32>) {
  // expected-error @+1 {{'moe.routing_stats' op 'indices' must have rank 2 ([T, k]), got 'tensor<8xi32>'}}
  %load, %dropped = moe.routing_stats %off indices %idx : tensor<8xi32> : tensor<9xi32>
  return
}

// -----

func.func @routing_stats_indices_not_tensor(%off: tensor<9xi32>, %idx: i32) {
  // expected-error @+1 {{'moe.routing_stats' op 'indices' must be a ranked tensor, got 'i32'}}
  %load, %dropped = moe.routing_stats %off indices %idx : i32 : tensor<9xi32>
  return
}

// -----

func.func @routing_stats_f32_indices(%off: tensor<9xi32>, %idx: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.routing_stats' op operand #1 must be ranked tensor of 32-bit signless integer values, but got 'tensor<4x2xf32>'}}
  %load, %dropped = moe.routing_stats %off indices %idx : tensor<4x2xf32> : tensor<9xi32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.layer
//===----------------------------------------------------------------------===//

func.func @layer_input_rank(%x: tensor<64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'input' must have rank 2 ([T, D]), got 'tensor<64xf32>'}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_router_rank(%x: tensor<4x64xf32>, %wg: tensor<64xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'router_weight' must have rank 2 ([D, E]), got 'tensor<64xf32>'}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_router_element(%x: tensor<4x64xf32>, %wg: tensor<64x8xbf16>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'router_weight' element type ('bf16') must match 'input' element type ('f32')}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xbf16> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_features_through_dynamic(%x: tensor<4x?xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x32x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'fc1' dimension 1 (32) must equal the feature size D of 'router_weight' (64); 'fc1' has shape 8x32x128}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x?xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x32x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_router_features(%x: tensor<4x64xf32>, %wg: tensor<32x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'router_weight' dimension 0 (32) must equal the feature size D of 'input' (64); 'router_weight' has shape 32x8}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<32x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_no_experts(%x: tensor<4x64xf32>, %wg: tensor<64x0xf32>, %w1: tensor<0x64x128xf32>, %w2: tensor<0x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'router_weight' must have at least one expert column, got 'tensor<64x0xf32>'}}
  %y, %aux, %z, %load, %drop = moe.layer expert_choice %x : tensor<4x64xf32> router %wg : tensor<64x0xf32> experts relu %w1 : tensor<0x64x128xf32>, %w2 : tensor<0x128x64xf32> {capacity_factor = 1.0 : f64}
  return
}

// -----

func.func @layer_router_bias_experts(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %b: tensor<4xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'router_bias' dimension 0 (4) must equal the number of experts of 'router_weight' (8); 'router_bias' has shape 4}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> router_bias %b : tensor<4xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_selection_bias_rank(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %b: tensor<1x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'selection_bias' must have rank 1 ([E]), got 'tensor<1x8xf32>'}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> selection_bias %b : tensor<1x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_selection_bias_element(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %b: tensor<8xbf16>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'selection_bias' element type ('bf16') must match 'input' element type ('f32')}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> selection_bias %b : tensor<8xbf16> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_selection_bias_not_tensor(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %b: f32, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'selection_bias' must be a ranked tensor, got 'f32'}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> selection_bias %b : f32 experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_fc1_experts(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<4x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'fc1' dimension 0 (4) must equal the number of experts of 'router_weight' (8); 'fc1' has shape 4x64x128}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<4x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_gated_needs_fc3(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op activation 'swiglu' is gated and needs the 'fc3' weights}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts swiglu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_fc2_bias_out(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %b2: tensor<8x128xf32>) {
  // expected-error @+1 {{'moe.layer' op 'fc2_bias' dimension 1 (128) must equal the output size D_out of 'fc2' (64); 'fc2_bias' has shape 8x128}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> fc2_bias %b2 : tensor<8x128xf32>
  return
}

// -----

func.func @layer_shared_fc2_missing(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %s1: tensor<64x256xf32>) {
  // expected-error @+1 {{'moe.layer' op a shared expert needs both 'shared_fc1' and 'shared_fc2'}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> shared_fc1 %s1 : tensor<64x256xf32>
  return
}

// -----

func.func @layer_shared_gate_without_expert(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %g: tensor<64x1xf32>) {
  // expected-error @+1 {{'moe.layer' op 'shared_fc3' and 'shared_gate' need 'shared_fc1' and 'shared_fc2'}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> shared_gate %g : tensor<64x1xf32>
  return
}

// -----

// The shared expert's diagnostics name the layer's operands.
func.func @layer_shared_fc1_rank(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %s1: tensor<1x64x256xf32>, %s2: tensor<256x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'shared_fc1' must have rank 2 ([D, F]), got 'tensor<1x64x256xf32>'}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> shared_fc1 %s1 : tensor<1x64x256xf32> shared_fc2 %s2 : tensor<256x64xf32>
  return
}

// -----

func.func @layer_shared_fc2_hidden(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %s1: tensor<64x256xf32>, %s2: tensor<128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'shared_fc2' dimension 0 (128) must equal the hidden size F of 'shared_fc1' (256); 'shared_fc2' has shape 128x64}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> shared_fc1 %s1 : tensor<64x256xf32> shared_fc2 %s2 : tensor<128x64xf32>
  return
}

// -----

func.func @layer_shared_needs_fc3(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %w3: tensor<8x64x128xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>) {
  // expected-error @+1 {{'moe.layer' op activation 'swiglu' is gated and needs the 'shared_fc3' weights}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts swiglu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> fc3 %w3 : tensor<8x64x128xf32> shared_fc1 %s1 : tensor<64x256xf32> shared_fc2 %s2 : tensor<256x64xf32>
  return
}

// -----

func.func @layer_sparse_mixer_selection_bias(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %sb: tensor<8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op sparse_mixer routing takes no 'selection_bias'}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> score sparse_mixer selection_bias %sb : tensor<8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {k = 2 : i64}
  return
}

// -----

func.func @layer_sparse_mixer_k(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op sparse_mixer routing picks k = 2 experts, got k = 1}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> score sparse_mixer experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_swiglu_parameters_with_shared_expert(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %w3: tensor<8x64x128xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>) {
  // expected-error @+1 {{'moe.layer' op the SwiGLU parameters ('swiglu_alpha', 'swiglu_beta', 'swiglu_limit') are not supported with a shared expert ('shared_fc1')}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts swiglu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> fc3 %w3 : tensor<8x64x128xf32> shared_fc1 %s1 : tensor<64x256xf32> shared_fc2 %s2 : tensor<256x64xf32> shared_fc3 %s1 : tensor<64x256xf32> {swiglu_limit = 7.0 : f32}
  return
}

// -----

func.func @layer_swiglu_alpha_not_swiglu(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %w3: tensor<8x64x128xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'swiglu_alpha' = 1.702000e+00 is a parameter of the swiglu activation, not of 'geglu_tanh'}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts geglu_tanh %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> fc3 %w3 : tensor<8x64x128xf32> {swiglu_alpha = 1.702 : f32}
  return
}

// -----

func.func @layer_swiglu_limit_not_positive(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %w3: tensor<8x64x128xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>) {
  // expected-error @+1 {{'moe.layer' op attribute 'swiglu_limit' failed to satisfy constraint: 32-bit float attribute whose value is positive}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts swiglu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> fc3 %w3 : tensor<8x64x128xf32> {swiglu_limit = -7.0 : f32}
  return
}

// -----

func.func @layer_shared_fc3_not_gated(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'shared_fc3' is used only by gated activations (swiglu, geglu, geglu_tanh), not by 'relu'}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> shared_fc1 %s1 : tensor<64x256xf32> shared_fc2 %s2 : tensor<256x64xf32> shared_fc3 %s1 : tensor<64x256xf32>
  return
}

// -----

func.func @layer_shared_fc3_element(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %w3: tensor<8x64x128xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>, %s3: tensor<64x256xbf16>) {
  // expected-error @+1 {{'moe.layer' op 'shared_fc3' element type ('bf16') must match 'input' element type ('f32')}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts geglu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> fc3 %w3 : tensor<8x64x128xf32> shared_fc1 %s1 : tensor<64x256xf32> shared_fc2 %s2 : tensor<256x64xf32> shared_fc3 %s3 : tensor<64x256xbf16>
  return
}

// -----

func.func @layer_shared_output_size(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x32xf32>) {
  // expected-error @+1 {{'moe.layer' op the shared expert's output size D_out (32) differs from the experts' (64); 'shared_fc2' has shape 256x32, 'fc2' has shape 8x128x64}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> shared_fc1 %s1 : tensor<64x256xf32> shared_fc2 %s2 : tensor<256x32xf32>
  return
}

// -----

func.func @layer_shared_gate_rank(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>, %g: tensor<64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'shared_gate' must have rank 2 ([D, 1]), got 'tensor<64xf32>'}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> shared_fc1 %s1 : tensor<64x256xf32> shared_fc2 %s2 : tensor<256x64xf32> shared_gate %g : tensor<64xf32>
  return
}

// -----

func.func @layer_shared_gate_features(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>, %g: tensor<32x1xf32>) {
  // expected-error @+1 {{'moe.layer' op 'shared_gate' dimension 0 (32) must equal the feature size D of 'input' (64); 'shared_gate' has shape 32x1}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> shared_fc1 %s1 : tensor<64x256xf32> shared_fc2 %s2 : tensor<256x64xf32> shared_gate %g : tensor<32x1xf32>
  return
}

// -----

func.func @layer_shared_gate_width(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>, %g: tensor<64x8xf32>) {
  // expected-error @+1 {{'moe.layer' op 'shared_gate' dimension 1 (8) must equal one gate value per token (1); 'shared_gate' has shape 64x8}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> shared_fc1 %s1 : tensor<64x256xf32> shared_fc2 %s2 : tensor<256x64xf32> shared_gate %g : tensor<64x8xf32>
  return
}

// -----

func.func @layer_shared_gate_element(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>, %g: tensor<64x1xf16>) {
  // expected-error @+1 {{'moe.layer' op 'shared_gate' element type ('f16') must match 'input' element type ('f32')}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> shared_fc1 %s1 : tensor<64x256xf32> shared_fc2 %s2 : tensor<256x64xf32> shared_gate %g : tensor<64x1xf16>
  return
}

// -----

func.func @layer_jitter_range(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %seed: i64) {
  // expected-error @+1 {{'moe.layer' op 'jitter_eps' must lie in [0, 1), got 2.000000e+00}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> seed %seed {jitter_eps = 2.0 : f32}
  return
}

// -----

func.func @layer_jitter_without_seed(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'jitter_eps' = 2.500000e-01 needs a 'seed' operand to draw the jitter}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {jitter_eps = 0.25 : f32}
  return
}

// -----

// moe.layer decomposes into moe.dispatch, whose number of experts is an
// attribute.
func.func @layer_token_choice_dynamic_experts(%x: tensor<4x64xf32>, %wg: tensor<64x?xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op token_choice routing needs a static number of experts; 'router_weight' has shape 64x?}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x?xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

// moe.layer's 'k' has no ODS constraint; the verifier checks it.
func.func @layer_k_zero(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'k' must be >= 1, got 0}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {k = 0 : i64}
  return
}

// -----

func.func @layer_k_exceeds_experts(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'k' (4) exceeds the 2 experts eligible ('topk_groups' = 1 of 'num_groups' = 4 groups of 2); 'router_weight' has shape 64x8}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {k = 4 : i64, num_groups = 4 : i64}
  return
}

// -----

func.func @layer_groups_divide(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'num_groups' (3) must divide the number of experts (8); 'router_weight' has shape 64x8}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {num_groups = 3 : i64}
  return
}

// -----

func.func @layer_topk_groups_zero(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'topk_groups' (0) must lie in [1, num_groups = 1]}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {topk_groups = 0 : i64}
  return
}

// -----

func.func @layer_scaling_factor(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op 'scaling_factor' must be > 0, got -1.000000e+00}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {scaling_factor = -1.0 : f32}
  return
}

// -----

func.func @layer_capacity_zero(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op attribute 'capacity_factor' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {capacity_factor = 0.0 : f64}
  return
}

// -----

func.func @layer_expert_choice_needs_capacity(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op expert_choice routing needs a 'capacity_factor'}}
  %y, %aux, %z, %load, %drop = moe.layer expert_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_expert_choice_k(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op expert_choice routing takes none of 'selection_bias', 'k', 'score', 'normalize', 'num_groups', 'topk_groups', 'scaling_factor' and 'batch_prioritized'}}
  %y, %aux, %z, %load, %drop = moe.layer expert_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {capacity_factor = 1.0 : f64, k = 2 : i64}
  return
}

// -----

func.func @layer_expert_choice_selection_bias(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %b: tensor<8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op expert_choice routing takes none of 'selection_bias'}}
  %y, %aux, %z, %load, %drop = moe.layer expert_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> selection_bias %b : tensor<8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {capacity_factor = 1.0 : f64}
  return
}

// -----

func.func @layer_expert_choice_score(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op expert_choice routing takes none of 'selection_bias'}}
  %y, %aux, %z, %load, %drop = moe.layer expert_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> score sigmoid experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {capacity_factor = 1.0 : f64}
  return
}

// -----

func.func @layer_expert_choice_scaling_factor(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op expert_choice routing takes none of 'selection_bias'}}
  %y, %aux, %z, %load, %drop = moe.layer expert_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {capacity_factor = 1.0 : f64, scaling_factor = 2.0 : f32}
  return
}

// -----

func.func @layer_expert_choice_topk_groups(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op expert_choice routing takes none of 'selection_bias'}}
  %y, %aux, %z, %load, %drop = moe.layer expert_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {capacity_factor = 1.0 : f64, topk_groups = 2 : i64}
  return
}

// -----

func.func @layer_expert_choice_batch_prioritized(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op expert_choice routing takes none of 'selection_bias'}}
  %y, %aux, %z, %load, %drop = moe.layer expert_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {capacity_factor = 1.0 : f64, batch_prioritized, normalize}
  return
}

// -----

func.func @layer_unknown_routing(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{custom op 'moe.layer' expected string or keyword containing one of the following enum values for attribute 'routing' [token_choice, expert_choice]}}
  %y, %aux, %z, %load, %drop = moe.layer hash %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32>
  return
}

// -----

func.func @layer_seed_not_i64(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>, %seed: i32) {
  // expected-note @-1 {{prior use here}}
  // expected-error @+1 {{use of value '%seed' expects different type than prior uses: 'i64' vs 'i32'}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> seed %seed {jitter_eps = 0.1 : f32}
  return
}

// -----

func.func @layer_generic_segment_required(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+2 {{'moe.layer' op 'operandSegmentSizes' gives the required operand 'fc1' 2 values, expected 1}}
  // expected-error @+1 {{'moe.layer' op failed to infer returned types}}
  %y:5 = "moe.layer"(%x, %wg, %w1, %w2) <{activation = 0 : i32, routing = 0 : i32, operandSegmentSizes = array<i32: 1, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0>}> : (tensor<4x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> (tensor<4x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>)
  return
}

// -----

func.func @layer_generic_missing_routing(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op requires attribute 'routing'}}
  %y:5 = "moe.layer"(%x, %wg, %w1, %w2) <{activation = 0 : i32, operandSegmentSizes = array<i32: 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0>}> : (tensor<4x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> (tensor<4x64xf32>, tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>)
  return
}

// -----

func.func @layer_generic_result_type(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+2 {{'moe.layer' op inferred type(s) 'tensor<4x64xf32>', 'tensor<f32>', 'tensor<f32>', 'tensor<8xi64>', 'tensor<i64>' are incompatible with return type(s) of operation 'tensor<4x64xf32>', 'tensor<f32>', 'tensor<f32>', 'tensor<4xi64>', 'tensor<i64>'}}
  // expected-error @+1 {{'moe.layer' op failed to infer returned types}}
  %y:5 = "moe.layer"(%x, %wg, %w1, %w2) <{activation = 0 : i32, routing = 0 : i32, operandSegmentSizes = array<i32: 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0>}> : (tensor<4x64xf32>, tensor<64x8xf32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>) -> (tensor<4x64xf32>, tensor<f32>, tensor<f32>, tensor<4xi64>, tensor<i64>)
  return
}

// -----

//===----------------------------------------------------------------------===//
// eval_capacity_factor and the backward ops (moe.*_grad)
//===----------------------------------------------------------------------===//

func.func @dispatch_eval_capacity_zero(%idx: tensor<4x2xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.dispatch' op attribute 'eval_capacity_factor' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64, eval_capacity_factor = 0.0 : f64} : tensor<4x2xi32>, tensor<4x2xf32>
  return
}

// -----

func.func @expert_choice_eval_capacity_negative(%logits: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.expert_choice' op attribute 'eval_capacity_factor' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %rt, %rw, %off, %p = moe.expert_choice %logits {capacity_factor = 1.0 : f64, eval_capacity_factor = -2.0 : f64} : tensor<4x8xf32>
  return
}

// -----

func.func @layer_eval_capacity_zero(%x: tensor<4x64xf32>, %wg: tensor<64x8xf32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.layer' op attribute 'eval_capacity_factor' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<4x64xf32> router %wg : tensor<64x8xf32> experts relu %w1 : tensor<8x64x128xf32>, %w2 : tensor<8x128x64xf32> {eval_capacity_factor = 0.0 : f64}
  return
}

// -----

func.func @gate_grad_rank(%dl: tensor<8xf32>, %x: tensor<4x16xf32>, %w: tensor<16x8xf32>) {
  // expected-error @+1 {{'moe.gate_grad' op 'logits_grad' must have rank 2 ([T, E]), got 'tensor<8xf32>'}}
  %a, %b, %c = moe.gate_grad %dl, %x, %w : tensor<8xf32>, tensor<4x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @gate_grad_experts(%dl: tensor<4x6xf32>, %x: tensor<4x16xf32>, %w: tensor<16x8xf32>) {
  // expected-error @+1 {{'moe.gate_grad' op 'logits_grad' dimension 1 (6) must equal the number of experts of 'weight' (8); 'logits_grad' has shape 4x6}}
  %a, %b, %c = moe.gate_grad %dl, %x, %w : tensor<4x6xf32>, tensor<4x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @gate_grad_tokens(%dl: tensor<5x8xf32>, %x: tensor<4x16xf32>, %w: tensor<16x8xf32>) {
  // expected-error @+1 {{'moe.gate_grad' op 'logits_grad' dimension 0 (5) must equal the token count T of 'input' (4); 'logits_grad' has shape 5x8}}
  %a, %b, %c = moe.gate_grad %dl, %x, %w : tensor<5x8xf32>, tensor<4x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @gate_grad_element(%dl: tensor<4x8xf16>, %x: tensor<4x16xf32>, %w: tensor<16x8xf32>) {
  // expected-error @+1 {{'moe.gate_grad' op 'logits_grad' element type ('f16') must match 'input' element type ('f32')}}
  %a, %b, %c = moe.gate_grad %dl, %x, %w : tensor<4x8xf16>, tensor<4x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @gate_grad_jitter_without_seed(%dl: tensor<4x8xf32>, %x: tensor<4x16xf32>, %w: tensor<16x8xf32>) {
  // expected-error @+1 {{'moe.gate_grad' op 'jitter_eps' = 1.000000e-01 needs a 'seed' operand to draw the jitter}}
  %a, %b, %c = moe.gate_grad %dl, %x, %w {jitter_eps = 0.1 : f32} : tensor<4x8xf32>, tensor<4x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @gate_grad_jitter_range(%dl: tensor<4x8xf32>, %x: tensor<4x16xf32>, %w: tensor<16x8xf32>, %s: i64) {
  // expected-error @+1 {{'moe.gate_grad' op 'jitter_eps' must lie in [0, 1), got 1.500000e+00}}
  %a, %b, %c = moe.gate_grad %dl, %x, %w seed %s {jitter_eps = 1.5 : f32} : tensor<4x8xf32>, tensor<4x16xf32>, tensor<16x8xf32>
  return
}

// -----

func.func @token_choice_grad_sparse_mixer(%p: tensor<4x8xf32>, %idx: tensor<4x2xi32>, %dw: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.token_choice_grad' op sparse_mixer routing has no gradient}}
  %dl = moe.token_choice_grad sparse_mixer %p, %idx weights_grad %dw : tensor<4x2xf32> : tensor<4x8xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @token_choice_grad_no_grads(%p: tensor<4x8xf32>, %idx: tensor<4x2xi32>) {
  // expected-error @+1 {{'moe.token_choice_grad' op needs 'weights_grad' or 'probs_grad'}}
  %dl = moe.token_choice_grad softmax %p, %idx : tensor<4x8xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @token_choice_grad_weights_k(%p: tensor<4x8xf32>, %idx: tensor<4x2xi32>, %dw: tensor<4x3xf32>) {
  // expected-error @+1 {{'moe.token_choice_grad' op 'weights_grad' dimension 1 (3) must equal k of 'indices' (2); 'weights_grad' has shape 4x3}}
  %dl = moe.token_choice_grad softmax %p, %idx weights_grad %dw : tensor<4x3xf32> : tensor<4x8xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @token_choice_grad_probs_grad_shape(%p: tensor<4x8xf32>, %idx: tensor<4x2xi32>, %dp: tensor<4x7xf32>) {
  // expected-error @+1 {{'moe.token_choice_grad' op 'probs_grad' dimension 1 (7) must equal the number of experts of 'probs' (8); 'probs_grad' has shape 4x7}}
  %dl = moe.token_choice_grad softmax %p, %idx probs_grad %dp : tensor<4x7xf32> : tensor<4x8xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @token_choice_grad_element(%p: tensor<4x8xf32>, %idx: tensor<4x2xi32>, %dw: tensor<4x2xbf16>) {
  // expected-error @+1 {{'moe.token_choice_grad' op 'weights_grad' element type ('bf16') must match 'probs' element type ('f32')}}
  %dl = moe.token_choice_grad softmax %p, %idx weights_grad %dw : tensor<4x2xbf16> : tensor<4x8xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @token_choice_grad_scaling(%p: tensor<4x8xf32>, %idx: tensor<4x2xi32>, %dw: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.token_choice_grad' op 'scaling_factor' must be > 0, got 0.000000e+00}}
  %dl = moe.token_choice_grad softmax %p, %idx weights_grad %dw : tensor<4x2xf32> {scaling_factor = 0.0 : f32} : tensor<4x8xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @token_choice_grad_not_tensor(%p: tensor<4x8xf32>, %idx: tensor<4x2xi32>, %dw: f32) {
  // expected-error @+1 {{'moe.token_choice_grad' op 'weights_grad' must be a ranked tensor, got 'f32'}}
  %dl = moe.token_choice_grad softmax %p, %idx weights_grad %dw : f32 : tensor<4x8xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @expert_choice_grad_offsets(%p: tensor<4x8xf32>, %rt: tensor<8xi32>, %off: tensor<8xi32>, %drw: tensor<8xf32>) {
  // expected-error @+1 {{'moe.expert_choice_grad' op 'offsets' dimension 0 (8) must equal E + 1 for the experts of 'probs' (9); 'offsets' has shape 8}}
  %dl = moe.expert_choice_grad %p, %rt, %off row_weight_grad %drw : tensor<8xf32> : tensor<4x8xf32>, tensor<8xi32>, tensor<8xi32>
  return
}

// -----

func.func @expert_choice_grad_rows(%p: tensor<4x8xf32>, %rt: tensor<8xi32>, %off: tensor<9xi32>, %drw: tensor<6xf32>) {
  // expected-error @+1 {{'moe.expert_choice_grad' op 'row_weight_grad' dimension 0 (6) must equal the row count R of 'row_token' (8); 'row_weight_grad' has shape 6}}
  %dl = moe.expert_choice_grad %p, %rt, %off row_weight_grad %drw : tensor<6xf32> : tensor<4x8xf32>, tensor<8xi32>, tensor<9xi32>
  return
}

// -----

func.func @expert_choice_grad_no_grads(%p: tensor<4x8xf32>, %rt: tensor<8xi32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{'moe.expert_choice_grad' op needs 'row_weight_grad' or 'probs_grad'}}
  %dl = moe.expert_choice_grad %p, %rt, %off : tensor<4x8xf32>, tensor<8xi32>, tensor<9xi32>
  return
}

// -----

func.func @dispatch_grad_rows(%drw: tensor<7xf32>, %idx: tensor<4x2xi32>, %rt: tensor<8xi32>, %off: tensor<5xi32>) {
  // expected-error @+1 {{'moe.dispatch_grad' op 'row_token' dimension 0 (8) must equal the row count R of 'row_weight_grad' (7); 'row_token' has shape 8}}
  %dw = moe.dispatch_grad %drw, %idx, %rt, %off : tensor<7xf32>, tensor<4x2xi32>, tensor<8xi32>, tensor<5xi32>
  return
}

// -----

func.func @dispatch_grad_offsets(%drw: tensor<8xf32>, %idx: tensor<4x2xi32>, %rt: tensor<8xi32>, %off: tensor<1xi32>) {
  // expected-error @+1 {{'moe.dispatch_grad' op 'offsets' must have E + 1 >= 2 entries, got 'tensor<1xi32>'}}
  %dw = moe.dispatch_grad %drw, %idx, %rt, %off : tensor<8xf32>, tensor<4x2xi32>, tensor<8xi32>, tensor<1xi32>
  return
}

// -----

func.func @dispatch_grad_indices_rank(%drw: tensor<8xf32>, %idx: tensor<8xi32>, %rt: tensor<8xi32>, %off: tensor<5xi32>) {
  // expected-error @+1 {{'moe.dispatch_grad' op 'indices' must have rank 2 ([T, k]), got 'tensor<8xi32>'}}
  %dw = moe.dispatch_grad %drw, %idx, %rt, %off : tensor<8xf32>, tensor<8xi32>, tensor<8xi32>, tensor<5xi32>
  return
}

// -----

func.func @expert_ffn_grad_out(%dy: tensor<10x5xf32>, %xs: tensor<10x64xf32>, %off: tensor<9xi32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.expert_ffn_grad' op 'result_grad' dimension 1 (5) must equal the output size D_out of the weights (64); 'result_grad' has shape 10x5}}
  %dx, %d1, %d2 = moe.expert_ffn_grad relu %dy, %xs, %off, %w1, %w2 : tensor<10x5xf32>, tensor<10x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
  return
}

// -----

func.func @expert_ffn_grad_rows(%dy: tensor<11x64xf32>, %xs: tensor<10x64xf32>, %off: tensor<9xi32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.expert_ffn_grad' op 'result_grad' dimension 0 (11) must equal the row count of 'input' (10); 'result_grad' has shape 11x64}}
  %dx, %d1, %d2 = moe.expert_ffn_grad relu %dy, %xs, %off, %w1, %w2 : tensor<11x64xf32>, tensor<10x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
  return
}

// -----

func.func @expert_ffn_grad_gated_needs_fc3(%dy: tensor<10x64xf32>, %xs: tensor<10x64xf32>, %off: tensor<9xi32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.expert_ffn_grad' op activation 'swiglu' is gated and needs the 'fc3' weights}}
  %dx, %d1, %d2 = moe.expert_ffn_grad swiglu %dy, %xs, %off, %w1, %w2 : tensor<10x64xf32>, tensor<10x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
  return
}

// -----

func.func @expert_ffn_grad_swiglu_limit_not_swiglu(%dy: tensor<10x64xf32>, %xs: tensor<10x64xf32>, %off: tensor<9xi32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.expert_ffn_grad' op 'swiglu_limit' = 7.000000e+00 is a parameter of the swiglu activation, not of 'relu'}}
  %dx, %d1, %d2 = moe.expert_ffn_grad relu %dy, %xs, %off, %w1, %w2 {swiglu_limit = 7.0 : f32} : tensor<10x64xf32>, tensor<10x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
  return
}

// -----

func.func @expert_ffn_grad_swiglu_limit_negative(%dy: tensor<10x64xf32>, %xs: tensor<10x64xf32>, %off: tensor<9xi32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.expert_ffn_grad' op attribute 'swiglu_limit' failed to satisfy constraint: 32-bit float attribute whose value is positive}}
  %dx, %d1, %d2, %d3 = moe.expert_ffn_grad swiglu %dy, %xs, %off, %w1, %w2 fc3 %w1 : tensor<8x64x128xf32> {swiglu_limit = -1.0 : f32} : tensor<10x64xf32>, tensor<10x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
  return
}

// -----

func.func @expert_ffn_grad_element(%dy: tensor<10x64xf16>, %xs: tensor<10x64xf32>, %off: tensor<9xi32>, %w1: tensor<8x64x128xf32>, %w2: tensor<8x128x64xf32>) {
  // expected-error @+1 {{'moe.expert_ffn_grad' op 'result_grad' element type ('f16') must match 'input' element type ('f32')}}
  %dx, %d1, %d2 = moe.expert_ffn_grad relu %dy, %xs, %off, %w1, %w2 : tensor<10x64xf16>, tensor<10x64xf32>, tensor<9xi32>, tensor<8x64x128xf32>, tensor<8x128x64xf32>
  return
}

// -----

func.func @combine_grad_features(%dy: tensor<4x32xf32>, %ys: tensor<8x64xf32>, %rt: tensor<8xi32>, %rw: tensor<8xf32>) {
  // expected-error @+1 {{'moe.combine_grad' op 'result_grad' dimension 1 (32) must equal the feature size D of 'input' (64); 'result_grad' has shape 4x32}}
  %a, %b = moe.combine_grad %dy, %ys, %rt, %rw : tensor<4x32xf32>, tensor<8x64xf32>, tensor<8xi32>, tensor<8xf32>
  return
}

// -----

func.func @combine_grad_rows(%dy: tensor<4x64xf32>, %ys: tensor<8x64xf32>, %rt: tensor<8xi32>, %rw: tensor<9xf32>) {
  // expected-error @+1 {{'moe.combine_grad' op 'row_weight' dimension 0 (9) must equal the row count R of 'input' (8); 'row_weight' has shape 9}}
  %a, %b = moe.combine_grad %dy, %ys, %rt, %rw : tensor<4x64xf32>, tensor<8x64xf32>, tensor<8xi32>, tensor<9xf32>
  return
}

// -----

func.func @combine_grad_element(%dy: tensor<4x64xf32>, %ys: tensor<8x64xf32>, %rt: tensor<8xi32>, %rw: tensor<8xf16>) {
  // expected-error @+1 {{'moe.combine_grad' op 'row_weight' element type ('f16') must match 'input' element type ('f32')}}
  %a, %b = moe.combine_grad %dy, %ys, %rt, %rw : tensor<4x64xf32>, tensor<8x64xf32>, tensor<8xi32>, tensor<8xf16>
  return
}

// -----

func.func @shared_expert_grad_gate(%dy: tensor<4x64xf32>, %x: tensor<4x64xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>, %g: tensor<64x2xf32>) {
  // expected-error @+1 {{'moe.shared_expert_grad' op 'gate' dimension 1 (2) must equal one gate value per token (1); 'gate' has shape 64x2}}
  %dx, %d1, %d2, %dg = moe.shared_expert_grad relu %dy, %x, %s1, %s2 gate %g : tensor<64x2xf32> : tensor<4x64xf32>, tensor<4x64xf32>, tensor<64x256xf32>, tensor<256x64xf32>
  return
}

// -----

func.func @shared_expert_grad_out(%dy: tensor<4x32xf32>, %x: tensor<4x64xf32>, %s1: tensor<64x256xf32>, %s2: tensor<256x64xf32>) {
  // expected-error @+1 {{'moe.shared_expert_grad' op 'result_grad' dimension 1 (32) must equal the output size D_out of the weights (64); 'result_grad' has shape 4x32}}
  %dx, %d1, %d2 = moe.shared_expert_grad relu %dy, %x, %s1, %s2 : tensor<4x32xf32>, tensor<4x64xf32>, tensor<64x256xf32>, tensor<256x64xf32>
  return
}

// -----

func.func @load_balancing_loss_grad_tokens(%g: tensor<f32>, %p: tensor<4x8xf32>, %idx: tensor<5x2xi32>) {
  // expected-error @+1 {{'moe.load_balancing_loss_grad' op 'indices' dimension 0 (5) must equal the token count T of 'probs' (4); 'indices' has shape 5x2}}
  %dp = moe.load_balancing_loss_grad %g, %p, %idx : tensor<f32>, tensor<4x8xf32>, tensor<5x2xi32>
  return
}

// -----

func.func @load_balancing_loss_grad_scalar(%g: tensor<1xf32>, %p: tensor<4x8xf32>, %idx: tensor<4x2xi32>) {
  // expected-error @+1 {{'moe.load_balancing_loss_grad' op operand #0 must be 0D tensor of 32-bit float values, but got 'tensor<1xf32>'}}
  %dp = moe.load_balancing_loss_grad %g, %p, %idx : tensor<1xf32>, tensor<4x8xf32>, tensor<4x2xi32>
  return
}

// -----

func.func @z_loss_grad_rank(%g: tensor<f32>, %l: tensor<8xf32>) {
  // expected-error @+1 {{'moe.z_loss_grad' op 'logits' must have rank 2 ([T, E]), got 'tensor<8xf32>'}}
  %dl = moe.z_loss_grad %g, %l : tensor<f32>, tensor<8xf32>
  return
}
