// RUN: moe-opt %s --moe-autodiff --split-input-file --verify-diagnostics | FileCheck %s

// The VJPs of the nn ops (dialects/NN/NNVJP.cpp) as moe-autodiff emits them.

// linear: d weight is one 2-D matmul of the flattened rows (transpose_lhs),
// d bias a reduce_sum over the rows; d input is not required (x is an
// input). mul by a broadcast [1, 3] parameter sums its gradient over the
// stretched dimension (kept) and the missing leading one (dropped).
// softmax: y * g - y * sum(y * g). reduce_sum's gradient is a broadcast.

// CHECK-LABEL: func.func @train_step
// CHECK-SAME: %[[X:[^:]*]]: tensor<2x?x4xf32> {moe.name = "x"}, %[[W:[^:]*]]: tensor<4x3xf32>
// CHECK-SAME: %[[S:[^:]*]]: tensor<1x3xf32>
// CHECK: %[[Y:.*]] = nn.linear
// CHECK: %[[P:.*]] = nn.softmax
// CHECK: %[[SEED:.*]] = linalg.generic {{.*}} ins(%{{.*}} : tensor<f32>) outs(%{{.*}} : tensor<2x?x3xf32>)
// CHECK-NEXT: ^bb0(%[[IN:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: linalg.yield %[[IN]]
// CHECK: %[[GY:.*]] = nn.mul %[[SEED]], %[[P]]
// CHECK: %[[SUM:.*]] = nn.reduce_sum %[[GY]] [2] {keep_dims}
// CHECK: %[[YS:.*]] = nn.mul %[[P]], %[[SUM]]
// CHECK: %[[DZ:.*]] = nn.sub %[[GY]], %[[YS]]
// CHECK: %[[DY:.*]] = nn.mul %[[DZ]], %[[S]]
// CHECK: %[[DS0:.*]] = nn.mul %[[DZ]], %[[Y]]
// CHECK: %[[DS1:.*]] = nn.reduce_sum %[[DS0]] [1] {keep_dims} : tensor<2x?x3xf32>
// CHECK: %[[DS:.*]] = nn.reduce_sum %[[DS1]] [0] : tensor<2x1x3xf32>
// CHECK: %[[GROWS:.*]] = nn.reshape %[[DY]] : tensor<2x?x3xf32> -> tensor<?x3xf32>
// CHECK: %[[XROWS:.*]] = nn.reshape %[[X]] : tensor<2x?x4xf32> -> tensor<?x4xf32>
// CHECK: %[[DW:.*]] = nn.matmul %[[XROWS]], %[[GROWS]] {transpose_lhs}
// CHECK: %[[DB:.*]] = nn.reduce_sum %[[DY]] [0, 1] : tensor<2x?x3xf32>
// CHECK: return %{{.*}}, %[[DW]], %[[DB]], %[[DS]]
func.func @forward(%x: tensor<2x?x4xf32> {moe.name = "x"},
                   %w: tensor<4x3xf32> {moe.name = "w", moe.role = "parameter"},
                   %b: tensor<3xf32> {moe.name = "b", moe.role = "parameter"},
                   %s: tensor<1x3xf32> {moe.name = "s", moe.role = "parameter"})
    -> (tensor<f32> {moe.name = "loss"}) {
  %y = nn.linear %x, %w bias %b : tensor<2x?x4xf32>, tensor<4x3xf32>, tensor<3xf32>
  %z = nn.mul %y, %s : tensor<2x?x3xf32>, tensor<1x3xf32>
  %p = nn.softmax %z : tensor<2x?x3xf32>
  %loss = nn.reduce_sum %p [0, 1, 2] : tensor<2x?x3xf32>
  return %loss : tensor<f32>
}

// -----

// The backward ops: cross-entropy, tanh-GELU, attention (the three operand
// gradients of a self-attention summed), the inverse rotation, reshapes,
// RMSNorm and the embedding scatter-add. Ids and targets get no gradient.

// CHECK-LABEL: func.func @train_step
// CHECK-SAME: %[[IDS:[^:]*]]: tensor<2x?xi32> {moe.name = "ids"}, %[[T:[^:]*]]: tensor<2x?xi32> {moe.name = "t"}, %[[TABLE:[^:]*]]: tensor<16x8xf32> {{.*}}, %[[G:[^:]*]]: tensor<8xf32>
// CHECK: %[[H:.*]] = nn.embedding %[[TABLE]], %[[IDS]]
// CHECK: %[[R:.*]] = nn.rotary
// CHECK: %[[O:.*]] = nn.reshape %{{.*}} : tensor<2x?x2x4xf32> -> tensor<2x?x8xf32>
// CHECK: %[[LOGITS:.*]] = nn.gelu %[[O]] approximate = tanh
// CHECK: %[[ONE:.*]] = arith.constant dense<1.000000e+00> : tensor<f32>
// CHECK: %[[DL:.*]] = nn.cross_entropy_grad %[[ONE]], %[[LOGITS]], %[[T]]
// CHECK: %[[DO:.*]] = nn.unary_grad gelu_tanh %[[DL]], %[[O]]
// CHECK: %[[DA:.*]] = nn.reshape %[[DO]] : tensor<2x?x8xf32> -> tensor<2x?x2x4xf32>
// CHECK: %[[DQ:.*]], %[[DK:.*]], %[[DV:.*]] = nn.attention_grad %[[DA]], %[[R]], %[[R]], %[[R]]
// CHECK: %[[DR0:.*]] = nn.add %[[DQ]], %[[DK]]
// CHECK: %[[DR:.*]] = nn.add %[[DR0]], %[[DV]]
// CHECK: %[[DROT:.*]] = nn.rotary %[[DR]] {inverse}
// CHECK: %[[DN:.*]] = nn.reshape %[[DROT]] : tensor<2x?x2x4xf32> -> tensor<2x?x8xf32>
// CHECK: %[[DH:.*]], %[[DG:.*]] = nn.rms_norm_grad %[[DN]], %[[H]], %[[G]]
// CHECK: %[[DT:.*]] = nn.embedding_grad %[[DH]], %[[IDS]], %[[TABLE]]
// CHECK: return %{{.*}}, %[[DT]], %[[DG]]
func.func @forward(%ids: tensor<2x?xi32> {moe.name = "ids"},
                   %t: tensor<2x?xi32> {moe.name = "t"},
                   %table: tensor<16x8xf32> {moe.name = "table", moe.role = "parameter"},
                   %g: tensor<8xf32> {moe.name = "g", moe.role = "parameter"})
    -> (tensor<f32> {moe.name = "loss"}) {
  %h = nn.embedding %table, %ids : tensor<16x8xf32>, tensor<2x?xi32>
  %n = nn.rms_norm %h, %g : tensor<2x?x8xf32>, tensor<8xf32>
  %q = nn.reshape %n : tensor<2x?x8xf32> -> tensor<2x?x2x4xf32>
  %r = nn.rotary %q : tensor<2x?x2x4xf32>
  %a = nn.attention %r, %r, %r : tensor<2x?x2x4xf32>, tensor<2x?x2x4xf32>, tensor<2x?x2x4xf32>
  %o = nn.reshape %a : tensor<2x?x2x4xf32> -> tensor<2x?x8xf32>
  %logits = nn.gelu %o approximate = tanh : tensor<2x?x8xf32>
  %loss = nn.cross_entropy %logits, %t : tensor<2x?x8xf32>, tensor<2x?xi32>
  return %loss : tensor<f32>
}

// -----

// Two dynamic extents: the gradient is reshaped back with the extents of
// the input. reduce_mean's gradient divides by the number of averaged
// elements while broadcasting.

// CHECK-LABEL: func.func @train_step
// CHECK-SAME: %[[X:[^:]*]]: tensor<?x?x4xf32>
// CHECK: %[[Y:.*]] = nn.reshape %[[X]] : tensor<?x?x4xf32> -> tensor<?x4xf32>
// CHECK: %[[ROWS:.*]] = tensor.dim %[[Y]], %{{.*}} : tensor<?x4xf32>
// CHECK: %[[COUNT:.*]] = arith.muli %[[ROWS]], %{{.*}} : index
// CHECK: %[[I64:.*]] = arith.index_cast %[[COUNT]] : index to i64
// CHECK: %[[F:.*]] = arith.sitofp %[[I64]] : i64 to f32
// CHECK: %[[DY:.*]] = linalg.generic {{.*}} ins(%{{.*}} : tensor<f32>) outs(%{{.*}} : tensor<?x4xf32>)
// CHECK-NEXT: ^bb0(%[[IN:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: %[[Q:.*]] = arith.divf %[[IN]], %[[F]] : f32
// CHECK-NEXT: linalg.yield %[[Q]]
// CHECK: %[[D0:.*]] = tensor.dim %[[X]], %{{.*}} : tensor<?x?x4xf32>
// CHECK: %[[D1:.*]] = tensor.dim %[[X]], %{{.*}} : tensor<?x?x4xf32>
// CHECK: %[[DX:.*]] = nn.reshape %[[DY]][%[[D0]], %[[D1]]] : tensor<?x4xf32> -> tensor<?x?x4xf32>
// CHECK: return %{{.*}}, %[[DX]]
func.func @forward(%x: tensor<?x?x4xf32> {moe.name = "x", moe.role = "parameter"})
    -> (tensor<f32> {moe.name = "loss"}) {
  %y = nn.reshape %x : tensor<?x?x4xf32> -> tensor<?x4xf32>
  %loss = nn.reduce_mean %y [0, 1] : tensor<?x4xf32>
  return %loss : tensor<f32>
}

// -----

// f16 means divide in f32; reduce_max has no gradient, and autodiff says so.
// CHECK-LABEL: func.func @train_step
// CHECK: %[[F:.*]] = arith.constant 6.000000e+00 : f32
// CHECK: linalg.generic
// CHECK-NEXT: ^bb0(%[[IN:.*]]: f16, %{{.*}}: f16):
// CHECK-NEXT: %[[E:.*]] = arith.extf %[[IN]] : f16 to f32
// CHECK-NEXT: %[[Q:.*]] = arith.divf %[[E]], %[[F]] : f32
// CHECK-NEXT: %[[T:.*]] = arith.truncf %[[Q]] : f32 to f16
// CHECK-NEXT: linalg.yield %[[T]]
func.func @forward(%x: tensor<2x3xf16> {moe.name = "x", moe.role = "parameter"})
    -> (tensor<f16> {moe.name = "loss"}) {
  %loss = nn.reduce_mean %x [0, -1] : tensor<2x3xf16>
  return %loss : tensor<f16>
}

// -----

func.func @forward(%x: tensor<2x3xf32> {moe.name = "x", moe.role = "parameter"})
    -> (tensor<f32> {moe.name = "loss"}) {
  // expected-error @+1 {{'nn.reduce_max' op is not differentiable, but the loss depends on a trainable parameter through it}}
  %m = nn.reduce_max %x [1] : tensor<2x3xf32>
  %loss = nn.reduce_sum %m [0] : tensor<2xf32>
  return %loss : tensor<f32>
}

// -----

// Integer values are never active: a cast to integers ends the dependence
// on the parameter, so integer arithmetic after it needs no gradient.
// CHECK-LABEL: func.func @train_step
// CHECK-NOT: grad.x
// CHECK-SAME: moe.name = "grad.y"
// expected-remark @+1 {{parameter 'x' does not affect the loss; it gets no gradient}}
func.func @forward(%x: tensor<4xf32> {moe.name = "x", moe.role = "parameter"},
                   %y: tensor<4xf32> {moe.name = "y", moe.role = "parameter"})
    -> (tensor<f32> {moe.name = "loss"}) {
  %i = nn.cast %x : tensor<4xf32> -> tensor<4xi64>
  %j = nn.add %i, %i : tensor<4xi64>, tensor<4xi64>
  %f = nn.cast %j : tensor<4xi64> -> tensor<4xf32>
  %p = nn.mul %f, %y : tensor<4xf32>, tensor<4xf32>
  %loss = nn.reduce_sum %p [0] : tensor<4xf32>
  return %loss : tensor<f32>
}
