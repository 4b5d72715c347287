// RUN: moe-opt %s --moe-raise-decomposed --split-input-file | FileCheck %s

// MoE FFNs spelled out in plain nn ops, as the ONNX importer produces them
// from exporters without an MoE op, become moe ops; anything that is not
// exactly such a graph stays as it is.

// Two experts, top-1, relu, the mask as nn.where, no renormalisation, the
// terms summed in a chain. The router linear becomes moe.gate; the experts'
// weights are stacked into [E, D, F] / [E, F, D]; the plain ops are gone.

// CHECK-LABEL: func.func @relu_where_top1
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x4xf32>, %[[WR:[^:]*]]: tensor<4x2xf32>, %[[W10:[^:]*]]: tensor<4x8xf32>, %[[W20:[^:]*]]: tensor<8x4xf32>, %[[W11:[^:]*]]: tensor<4x8xf32>, %[[W21:[^:]*]]: tensor<8x4xf32>)
// CHECK-DAG: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: %[[LOGITS:.*]] = moe.gate %[[X]], %[[WR]] : tensor<?x4xf32>, tensor<4x2xf32>
// CHECK: %[[W:.*]], %[[IDX:.*]], %{{.*}} = moe.token_choice softmax %[[LOGITS]] top 1 : tensor<?x2xf32>
// CHECK: %[[RT:.*]], %[[RW:.*]], %[[OFF:.*]] = moe.dispatch %[[IDX]], %[[W]] {num_experts = 2 : i64} : tensor<?x1xi32>, tensor<?x1xf32>
// CHECK: %[[XS:.*]] = moe.permute %[[X]], %[[RT]] : tensor<?x4xf32>, tensor<?xi32>
// CHECK: %[[S10:.*]] = nn.reshape %[[W10]] : tensor<4x8xf32> -> tensor<1x4x8xf32>
// CHECK: %[[S11:.*]] = nn.reshape %[[W11]] : tensor<4x8xf32> -> tensor<1x4x8xf32>
// CHECK: %[[FC1:.*]] = nn.concat %[[S10]], %[[S11]] axis = 0 : tensor<1x4x8xf32>, tensor<1x4x8xf32>
// CHECK: %[[S20:.*]] = nn.reshape %[[W20]] : tensor<8x4xf32> -> tensor<1x8x4xf32>
// CHECK: %[[S21:.*]] = nn.reshape %[[W21]] : tensor<8x4xf32> -> tensor<1x8x4xf32>
// CHECK: %[[FC2:.*]] = nn.concat %[[S20]], %[[S21]] axis = 0 : tensor<1x8x4xf32>, tensor<1x8x4xf32>
// CHECK: %[[YS:.*]] = moe.expert_ffn relu %[[XS]], %[[OFF]], %[[FC1]], %[[FC2]] : tensor<?x4xf32>, tensor<3xi32>, tensor<2x4x8xf32>, tensor<2x8x4xf32>
// CHECK: %[[T:.*]] = tensor.dim %[[X]], %{{.*}} : tensor<?x4xf32>
// CHECK: %[[EMPTY:.*]] = tensor.empty(%[[T]]) : tensor<?x4xf32>
// CHECK: %[[ZEROS:.*]] = linalg.fill ins(%[[ZERO]] : f32) outs(%[[EMPTY]] : tensor<?x4xf32>)
// CHECK: %[[Y:.*]] = moe.combine %[[YS]], %[[RT]], %[[RW]] into %[[ZEROS]] : tensor<?x4xf32>, tensor<?xi32>, tensor<?xf32>, tensor<?x4xf32>
// CHECK-NOT: nn.
// CHECK: return %[[Y]] : tensor<?x4xf32>
func.func @relu_where_top1(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Four experts, top-2, renormalised, tanh GELU, the mask as nn.cast + nn.mul
// with every product's operands swapped, the terms summed as a balanced
// tree.

// CHECK-LABEL: func.func @gelu_tanh_cast_normalized_tree
// CHECK: moe.token_choice softmax %{{.*}} top 2 {normalize} : tensor<?x4xf32>
// CHECK: moe.dispatch %{{.*}}, %{{.*}} {num_experts = 4 : i64} : tensor<?x2xi32>, tensor<?x2xf32>
// CHECK: nn.concat %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} axis = 0 : tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>
// CHECK: moe.expert_ffn gelu_tanh %{{.*}} : tensor<?x4xf32>, tensor<5xi32>, tensor<4x4x8xf32>, tensor<4x8x4xf32>
// CHECK: moe.combine
// CHECK-NOT: nn.topk
// CHECK-NOT: nn.add
func.func @gelu_tanh_cast_normalized_tree(%x: tensor<?x4xf32>, %wr: tensor<4x4xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>, %w1_2: tensor<4x8xf32>, %w2_2: tensor<8x4xf32>, %w1_3: tensor<4x8xf32>, %w2_3: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x4xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x4xf32>
  %vals, %idx = nn.topk %probs top 2 {axis = 1 : i64} : tensor<?x4xf32>
  %total = nn.reduce_sum %vals [1] {keep_dims} : tensor<?x2xf32>
  %wts = nn.div %vals, %total : tensor<?x2xf32>, tensor<?x1xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x2xi64>, tensor<i64>
  %f0 = nn.cast %eq0 : tensor<?x2xi1> -> tensor<?x2xf32>
  %m0 = nn.mul %wts, %f0 : tensor<?x2xf32>, tensor<?x2xf32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x2xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.gelu %h1_0 approximate = tanh : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %h2_0, %s0 : tensor<?x4xf32>, tensor<?x1xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x2xi64>, tensor<i64>
  %f1 = nn.cast %eq1 : tensor<?x2xi1> -> tensor<?x2xf32>
  %m1 = nn.mul %wts, %f1 : tensor<?x2xf32>, tensor<?x2xf32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x2xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.gelu %h1_1 approximate = tanh : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %h2_1, %s1 : tensor<?x4xf32>, tensor<?x1xf32>
  %c2 = arith.constant dense<2> : tensor<i64>
  %eq2 = nn.compare eq %idx, %c2 : tensor<?x2xi64>, tensor<i64>
  %f2 = nn.cast %eq2 : tensor<?x2xi1> -> tensor<?x2xf32>
  %m2 = nn.mul %wts, %f2 : tensor<?x2xf32>, tensor<?x2xf32>
  %s2 = nn.reduce_sum %m2 [1] {keep_dims} : tensor<?x2xf32>
  %h1_2 = nn.linear %x, %w1_2 : tensor<?x4xf32>, tensor<4x8xf32>
  %a2 = nn.gelu %h1_2 approximate = tanh : tensor<?x8xf32>
  %h2_2 = nn.linear %a2, %w2_2 : tensor<?x8xf32>, tensor<8x4xf32>
  %t2 = nn.mul %h2_2, %s2 : tensor<?x4xf32>, tensor<?x1xf32>
  %c3 = arith.constant dense<3> : tensor<i64>
  %eq3 = nn.compare eq %idx, %c3 : tensor<?x2xi64>, tensor<i64>
  %f3 = nn.cast %eq3 : tensor<?x2xi1> -> tensor<?x2xf32>
  %m3 = nn.mul %wts, %f3 : tensor<?x2xf32>, tensor<?x2xf32>
  %s3 = nn.reduce_sum %m3 [1] {keep_dims} : tensor<?x2xf32>
  %h1_3 = nn.linear %x, %w1_3 : tensor<?x4xf32>, tensor<4x8xf32>
  %a3 = nn.gelu %h1_3 approximate = tanh : tensor<?x8xf32>
  %h2_3 = nn.linear %a3, %w2_3 : tensor<?x8xf32>, tensor<8x4xf32>
  %t3 = nn.mul %h2_3, %s3 : tensor<?x4xf32>, tensor<?x1xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  %acc2 = nn.add %t2, %t3 : tensor<?x4xf32>, tensor<?x4xf32>
  %acc3 = nn.add %acc1, %acc2 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc3 : tensor<?x4xf32>
}

// -----

// SiLU spelled out as h * sigmoid(h); every expert linear has a bias, which
// becomes the stacked [E, F] / [E, D] biases of moe.expert_ffn.

// CHECK-LABEL: func.func @silu_spelled_biases
// CHECK-SAME: %[[B10:[^:]*]]: tensor<8xf32>, %{{[^:]*}}: tensor<8x4xf32>, %[[B20:[^:]*]]: tensor<4xf32>, %{{[^:]*}}: tensor<4x8xf32>, %[[B11:[^:]*]]: tensor<8xf32>, %{{[^:]*}}: tensor<8x4xf32>, %[[B21:[^:]*]]: tensor<4xf32>)
// CHECK: moe.token_choice softmax %{{.*}} top 2 : tensor<?x2xf32>
// CHECK: %[[R10:.*]] = nn.reshape %[[B10]] : tensor<8xf32> -> tensor<1x8xf32>
// CHECK: %[[R11:.*]] = nn.reshape %[[B11]] : tensor<8xf32> -> tensor<1x8xf32>
// CHECK: %[[FC1B:.*]] = nn.concat %[[R10]], %[[R11]] axis = 0
// CHECK: %[[R20:.*]] = nn.reshape %[[B20]] : tensor<4xf32> -> tensor<1x4xf32>
// CHECK: %[[R21:.*]] = nn.reshape %[[B21]] : tensor<4xf32> -> tensor<1x4xf32>
// CHECK: %[[FC2B:.*]] = nn.concat %[[R20]], %[[R21]] axis = 0
// CHECK: moe.expert_ffn silu %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} fc1_bias %[[FC1B]] : tensor<2x8xf32> fc2_bias %[[FC2B]] : tensor<2x4xf32> : tensor<?x4xf32>, tensor<3xi32>, tensor<2x4x8xf32>, tensor<2x8x4xf32>
// CHECK-NOT: nn.sigmoid
func.func @silu_spelled_biases(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %b1_0: tensor<8xf32>, %w2_0: tensor<8x4xf32>, %b2_0: tensor<4xf32>, %w1_1: tensor<4x8xf32>, %b1_1: tensor<8xf32>, %w2_1: tensor<8x4xf32>, %b2_1: tensor<4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 2 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x2xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x2xi1>, tensor<?x2xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x2xf32>
  %h1_0 = nn.linear %x, %w1_0 bias %b1_0 : tensor<?x4xf32>, tensor<4x8xf32>, tensor<8xf32>
  %a0_sig = nn.sigmoid %h1_0 : tensor<?x8xf32>
  %a0 = nn.mul %h1_0, %a0_sig : tensor<?x8xf32>, tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 bias %b2_0 : tensor<?x8xf32>, tensor<8x4xf32>, tensor<4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x2xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x2xi1>, tensor<?x2xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x2xf32>
  %h1_1 = nn.linear %x, %w1_1 bias %b1_1 : tensor<?x4xf32>, tensor<4x8xf32>, tensor<8xf32>
  %a1_sig = nn.sigmoid %h1_1 : tensor<?x8xf32>
  %a1 = nn.mul %h1_1, %a1_sig : tensor<?x8xf32>, tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 bias %b2_1 : tensor<?x8xf32>, tensor<8x4xf32>, tensor<4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// SwiGLU: silu(x @ w1) * (x @ w3) with the product's operands swapped, SiLU
// spelled out, renormalised top-1, the sum starting from a constant zero.

// CHECK-LABEL: func.func @swiglu_swapped_zero_init
// CHECK-SAME: (%{{[^:]*}}: tensor<?x4xf32>, %{{[^:]*}}: tensor<4x2xf32>, %[[W10:[^:]*]]: tensor<4x8xf32>, %[[W30:[^:]*]]: tensor<4x8xf32>, %[[W20:[^:]*]]: tensor<8x4xf32>, %[[W11:[^:]*]]: tensor<4x8xf32>, %[[W31:[^:]*]]: tensor<4x8xf32>, %[[W21:[^:]*]]: tensor<8x4xf32>)
// CHECK: moe.token_choice softmax %{{.*}} top 1 {normalize} : tensor<?x2xf32>
// CHECK: nn.reshape %[[W10]]
// CHECK: nn.reshape %[[W11]]
// CHECK: %[[FC1:.*]] = nn.concat
// CHECK: nn.reshape %[[W20]]
// CHECK: nn.reshape %[[W21]]
// CHECK: %[[FC2:.*]] = nn.concat
// CHECK: nn.reshape %[[W30]]
// CHECK: nn.reshape %[[W31]]
// CHECK: %[[FC3:.*]] = nn.concat
// CHECK: moe.expert_ffn swiglu %{{.*}}, %{{.*}}, %[[FC1]], %[[FC2]] fc3 %[[FC3]] : tensor<2x4x8xf32> : tensor<?x4xf32>, tensor<3xi32>, tensor<2x4x8xf32>, tensor<2x8x4xf32>
// CHECK-NOT: nn.add
func.func @swiglu_swapped_zero_init(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w3_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w3_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %total = nn.reduce_sum %vals [1] {keep_dims} : tensor<?x1xf32>
  %wts = nn.div %vals, %total : tensor<?x1xf32>, tensor<?x1xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %wts, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0_sig = nn.sigmoid %h1_0 : tensor<?x8xf32>
  %a0 = nn.mul %a0_sig, %h1_0 : tensor<?x8xf32>, tensor<?x8xf32>
  %h3_0 = nn.linear %x, %w3_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %g0 = nn.mul %h3_0, %a0 : tensor<?x8xf32>, tensor<?x8xf32>
  %h2_0 = nn.linear %g0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %h2_0, %s0 : tensor<?x4xf32>, tensor<?x1xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %wts, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1_sig = nn.sigmoid %h1_1 : tensor<?x8xf32>
  %a1 = nn.mul %a1_sig, %h1_1 : tensor<?x8xf32>, tensor<?x8xf32>
  %h3_1 = nn.linear %x, %w3_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %g1 = nn.mul %h3_1, %a1 : tensor<?x8xf32>, tensor<?x8xf32>
  %h2_1 = nn.linear %g1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %h2_1, %s1 : tensor<?x4xf32>, tensor<?x1xf32>
  %acc1 = nn.add %zero, %t0 : tensor<f32>, tensor<?x4xf32>
  %acc2 = nn.add %acc1, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc2 : tensor<?x4xf32>
}

// -----

// GeGLU: exact gelu(x @ w1) * (x @ w3).

// CHECK-LABEL: func.func @geglu
// CHECK: moe.expert_ffn geglu %{{.*}} fc3 %{{.*}} : tensor<2x4x8xf32>
func.func @geglu(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w3_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w3_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 2 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x2xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x2xi1>, tensor<?x2xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x2xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.gelu %h1_0 : tensor<?x8xf32>
  %h3_0 = nn.linear %x, %w3_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %g0 = nn.mul %a0, %h3_0 : tensor<?x8xf32>, tensor<?x8xf32>
  %h2_0 = nn.linear %g0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x2xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x2xi1>, tensor<?x2xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x2xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.gelu %h1_1 : tensor<?x8xf32>
  %h3_1 = nn.linear %x, %w3_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %g1 = nn.mul %a1, %h3_1 : tensor<?x8xf32>, tensor<?x8xf32>
  %h2_1 = nn.linear %g1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Exact GELU, the terms summed from the last expert to the first.

// CHECK-LABEL: func.func @gelu_reverse
// CHECK: moe.expert_ffn gelu %{{.*}} : tensor<?x4xf32>, tensor<3xi32>
func.func @gelu_reverse(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.gelu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.gelu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t1, %t0 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// nn.silu itself, cast mask, renormalised top-2.

// CHECK-LABEL: func.func @silu_op
// CHECK: moe.token_choice softmax %{{.*}} top 2 {normalize}
// CHECK: moe.expert_ffn silu
func.func @silu_op(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 2 {axis = 1 : i64} : tensor<?x2xf32>
  %total = nn.reduce_sum %vals [1] {keep_dims} : tensor<?x2xf32>
  %wts = nn.div %vals, %total : tensor<?x2xf32>, tensor<?x1xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x2xi64>, tensor<i64>
  %f0 = nn.cast %eq0 : tensor<?x2xi1> -> tensor<?x2xf32>
  %m0 = nn.mul %f0, %wts : tensor<?x2xf32>, tensor<?x2xf32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x2xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.silu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x2xi64>, tensor<i64>
  %f1 = nn.cast %eq1 : tensor<?x2xi1> -> tensor<?x2xf32>
  %m1 = nn.mul %f1, %wts : tensor<?x2xf32>, tensor<?x2xf32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x2xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.silu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Tokens [2, S, D]: routing and experts work on the [2 * S, D] rows, and the
// result is reshaped back with S read from the input.

// CHECK-LABEL: func.func @rank3
// CHECK-SAME: (%[[X:[^:]*]]: tensor<2x?x4xf32>
// CHECK: %[[ROWS:.*]] = nn.reshape %[[X]] : tensor<2x?x4xf32> -> tensor<?x4xf32>
// CHECK: %[[LOGITS:.*]] = moe.gate %[[ROWS]], %{{.*}} : tensor<?x4xf32>, tensor<4x2xf32>
// CHECK: moe.token_choice softmax %[[LOGITS]] top 2 {normalize} : tensor<?x2xf32>
// CHECK: moe.permute %[[ROWS]], %{{.*}} : tensor<?x4xf32>, tensor<?xi32>
// CHECK: %[[Y:.*]] = moe.combine %{{.*}} : tensor<?x4xf32>, tensor<?xi32>, tensor<?xf32>, tensor<?x4xf32>
// CHECK: %[[S:.*]] = tensor.dim %[[X]], %{{.*}} : tensor<2x?x4xf32>
// CHECK: %[[OUT:.*]] = nn.reshape %[[Y]][%[[S]]] : tensor<?x4xf32> -> tensor<2x?x4xf32>
// CHECK: return %[[OUT]]
func.func @rank3(%x: tensor<2x?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<2x?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<2x?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 2 : i64} : tensor<2x?x2xf32>
  %vals, %idx = nn.topk %probs top 2 {axis = 2 : i64} : tensor<2x?x2xf32>
  %total = nn.reduce_sum %vals [2] {keep_dims} : tensor<2x?x2xf32>
  %wts = nn.div %vals, %total : tensor<2x?x2xf32>, tensor<2x?x1xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<2x?x2xi64>, tensor<i64>
  %m0 = nn.where %eq0, %wts, %zero : tensor<2x?x2xi1>, tensor<2x?x2xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [2] {keep_dims} : tensor<2x?x2xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<2x?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<2x?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<2x?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<2x?x1xf32>, tensor<2x?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<2x?x2xi64>, tensor<i64>
  %m1 = nn.where %eq1, %wts, %zero : tensor<2x?x2xi1>, tensor<2x?x2xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [2] {keep_dims} : tensor<2x?x2xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<2x?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<2x?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<2x?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<2x?x1xf32>, tensor<2x?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<2x?x4xf32>, tensor<2x?x4xf32>
  return %acc1 : tensor<2x?x4xf32>
}

// -----

// The MoE output feeds a residual add, which stays (it is no expert
// term); the MoE itself is raised. The router logits are also returned: their
// other user reads moe.gate's result.

// CHECK-LABEL: func.func @residual
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x4xf32>
// CHECK: %[[LOGITS:.*]] = moe.gate
// CHECK: %[[Y:.*]] = moe.combine
// CHECK: %[[OUT:.*]] = nn.add %[[X]], %[[Y]]
// CHECK: return %[[OUT]], %[[LOGITS]]
func.func @residual(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>, tensor<?x2xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  %out = nn.add %x, %acc1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %out, %logits : tensor<?x4xf32>, tensor<?x2xf32>
}

// -----

// A router bias becomes moe.gate's bias.

// CHECK-LABEL: func.func @router_bias
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x4xf32>, %[[WR:[^:]*]]: tensor<4x2xf32>, {{.*}}, %[[BR:[^:]*]]: tensor<2xf32>)
// CHECK: moe.gate %[[X]], %[[WR]] bias %[[BR]] : tensor<?x4xf32>, tensor<4x2xf32>, tensor<2xf32>
// CHECK: moe.expert_ffn relu
func.func @router_bias(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>, %br: tensor<2xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr bias %br : tensor<?x4xf32>, tensor<4x2xf32>, tensor<2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Expert 1 is not in the sum. Left alone.

// CHECK-LABEL: func.func @missing_expert
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @missing_expert(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %zero : tensor<?x4xf32>, tensor<f32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Expert 0 twice (and expert 1 never). Left alone.

// CHECK-LABEL: func.func @duplicated_expert
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @duplicated_expert(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<0> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// An expert index the router cannot produce. Left alone.

// CHECK-LABEL: func.func @expert_out_of_range
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @expert_out_of_range(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<2> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Expert 1 reads another input than the router. Left alone.

// CHECK-LABEL: func.func @mismatched_input
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @mismatched_input(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>, %x2: tensor<?x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x2, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Expert 1 uses another activation. Left alone.

// CHECK-LABEL: func.func @mismatched_activation
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @mismatched_activation(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.silu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Not a softmax router. Left alone.

// CHECK-LABEL: func.func @sigmoid_router
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @sigmoid_router(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.sigmoid %logits : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// The softmax normalises over the tokens. Left alone.

// CHECK-LABEL: func.func @softmax_over_tokens
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @softmax_over_tokens(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 0 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// The top-k of the smallest probabilities. Left alone.

// CHECK-LABEL: func.func @topk_smallest
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @topk_smallest(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64, largest = false} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// The mask selects the other experts. Left alone.

// CHECK-LABEL: func.func @mask_not_eq
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @mask_not_eq(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare ne %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// The expert of a mask is not a constant. Left alone.

// CHECK-LABEL: func.func @mask_not_constant
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @mask_not_constant(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>, %e: tensor<i64>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %e : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Unselected weights are not zero. Left alone.

// CHECK-LABEL: func.func @where_not_zero
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @where_not_zero(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %one = arith.constant dense<1.0> : tensor<f32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %one : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// The routing weight sums over the tokens. Left alone.

// CHECK-LABEL: func.func @scale_not_row_sum
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @scale_not_row_sum(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [0] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<1x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Expert 1 reads the values of another top-k. Left alone.

// CHECK-LABEL: func.func @weights_of_another_topk
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @weights_of_another_topk(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %vals2, %idx2 = nn.topk %logits top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals2, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Expert 1 has another hidden size (no stacking). Left alone.

// CHECK-LABEL: func.func @expert_shapes_differ
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @expert_shapes_differ(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x6xf32>, %w2_1: tensor<6x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x6xf32>
  %a1 = nn.relu %h1_1 : tensor<?x6xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x6xf32>, tensor<6x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Only expert 1 has a bias. Left alone.

// CHECK-LABEL: func.func @bias_in_one_expert
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @bias_in_one_expert(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>, %b: tensor<4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 bias %b : tensor<?x8xf32>, tensor<8x4xf32>, tensor<4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// Something else is added into the sum between the terms. Left alone.

// CHECK-LABEL: func.func @extra_summand
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @extra_summand(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>, %r: tensor<?x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc0 = nn.add %t0, %r : tensor<?x4xf32>, tensor<?x4xf32>
  %acc1 = nn.add %acc0, %t1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// One expert output is added unweighted. Left alone.

// CHECK-LABEL: func.func @term_not_weighted
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @term_not_weighted(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %acc1 = nn.add %t0, %h2_1 : tensor<?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<?x4xf32>
}

// -----

// A zero of another shape broadcasts the sum. Left alone.

// CHECK-LABEL: func.func @zero_broadcasts_sum
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @zero_broadcasts_sum(%x: tensor<?x4xf32>, %wr: tensor<4x2xf32>, %w1_0: tensor<4x8xf32>, %w2_0: tensor<8x4xf32>, %w1_1: tensor<4x8xf32>, %w2_1: tensor<8x4xf32>) -> (tensor<3x?x4xf32>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf32>, tensor<4x2xf32>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf32>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf32>
  %zero = arith.constant dense<0.0> : tensor<f32>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf32>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf32>, tensor<4x8xf32>
  %a0 = nn.relu %h1_0 : tensor<?x8xf32>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf32>, tensor<8x4xf32>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf32>, tensor<?x4xf32>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf32>, tensor<f32>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf32>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf32>, tensor<4x8xf32>
  %a1 = nn.relu %h1_1 : tensor<?x8xf32>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf32>, tensor<8x4xf32>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf32>, tensor<?x4xf32>
  %z3 = arith.constant dense<0.0> : tensor<3x1x4xf32>
  %acc0 = nn.add %z3, %t0 : tensor<3x1x4xf32>, tensor<?x4xf32>
  %acc1 = nn.add %acc0, %t1 : tensor<3x?x4xf32>, tensor<?x4xf32>
  return %acc1 : tensor<3x?x4xf32>
}

// -----

// Routing in f16: moe.token_choice would select on f32 probabilities, which may
// not tie where the f16 ones do. Left alone.

// CHECK-LABEL: func.func @f16_router
// CHECK-NOT: moe.
// CHECK: nn.topk
// CHECK-NOT: moe.
// CHECK: return
func.func @f16_router(%x: tensor<?x4xf16>, %wr: tensor<4x2xf16>, %w1_0: tensor<4x8xf16>, %w2_0: tensor<8x4xf16>, %w1_1: tensor<4x8xf16>, %w2_1: tensor<8x4xf16>) -> (tensor<?x4xf16>) {
  %logits = nn.linear %x, %wr : tensor<?x4xf16>, tensor<4x2xf16>
  %probs = nn.softmax %logits {axis = 1 : i64} : tensor<?x2xf16>
  %vals, %idx = nn.topk %probs top 1 {axis = 1 : i64} : tensor<?x2xf16>
  %zero = arith.constant dense<0.0> : tensor<f16>
  %c0 = arith.constant dense<0> : tensor<i64>
  %eq0 = nn.compare eq %idx, %c0 : tensor<?x1xi64>, tensor<i64>
  %m0 = nn.where %eq0, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf16>, tensor<f16>
  %s0 = nn.reduce_sum %m0 [1] {keep_dims} : tensor<?x1xf16>
  %h1_0 = nn.linear %x, %w1_0 : tensor<?x4xf16>, tensor<4x8xf16>
  %a0 = nn.relu %h1_0 : tensor<?x8xf16>
  %h2_0 = nn.linear %a0, %w2_0 : tensor<?x8xf16>, tensor<8x4xf16>
  %t0 = nn.mul %s0, %h2_0 : tensor<?x1xf16>, tensor<?x4xf16>
  %c1 = arith.constant dense<1> : tensor<i64>
  %eq1 = nn.compare eq %idx, %c1 : tensor<?x1xi64>, tensor<i64>
  %m1 = nn.where %eq1, %vals, %zero : tensor<?x1xi1>, tensor<?x1xf16>, tensor<f16>
  %s1 = nn.reduce_sum %m1 [1] {keep_dims} : tensor<?x1xf16>
  %h1_1 = nn.linear %x, %w1_1 : tensor<?x4xf16>, tensor<4x8xf16>
  %a1 = nn.relu %h1_1 : tensor<?x8xf16>
  %h2_1 = nn.linear %a1, %w2_1 : tensor<?x8xf16>, tensor<8x4xf16>
  %t1 = nn.mul %s1, %h2_1 : tensor<?x1xf16>, tensor<?x4xf16>
  %acc1 = nn.add %t0, %t1 : tensor<?x4xf16>, tensor<?x4xf16>
  return %acc1 : tensor<?x4xf16>
}
