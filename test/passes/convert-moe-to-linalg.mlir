// RUN: moe-opt %s --convert-moe-to-linalg --cse --split-input-file -verify-diagnostics | FileCheck %s
// RUN: moe-opt %s --convert-moe-to-linalg --split-input-file -verify-diagnostics | FileCheck %s --check-prefix=NOMOE
// RUN: moe-opt %s --convert-moe-to-linalg="device-kernels" --split-input-file -verify-diagnostics | FileCheck %s --check-prefix=DEVICE

// Every fine-grained moe op becomes linalg / tensor / scf / arith / math on
// tensors; no moe op (and no math.erf, which has no LLVM lowering) is left.
// NOMOE-NOT: moe.
// NOMOE-NOT: math.erf

// moe.gate with jitter: the counter-based multipliers (splitmix64 of
// seed + (t * D + d) * 0x9E3779B97F4A7C15, top 24 bits) scale x in a
// generic, then a matmul with an f32 accumulator and a bias generic.

// CHECK-LABEL: func.func @gate
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[W:.*]]: tensor<16x8xf32>, %[[B:.*]]: tensor<8xf32>, %[[SEED:.*]]: i64)
// CHECK: %[[U:.*]] = linalg.generic {{.*}} ins(%[[X]] : tensor<?x16xf32>)
// CHECK: linalg.index 0
// CHECK: %[[FLAT:.*]] = arith.index_cast %{{.*}} : index to i64
// CHECK: %[[GOLDEN:.*]] = arith.constant -7046029254386353131 : i64
// CHECK: %[[MUL:.*]] = arith.muli %[[FLAT]], %[[GOLDEN]] : i64
// CHECK: arith.addi %[[SEED]], %[[MUL]] : i64
// CHECK: %[[M1:.*]] = arith.constant -4658895280553007687 : i64
// CHECK: arith.shrui
// CHECK: arith.muli %{{.*}}, %[[M1]] : i64
// CHECK: %[[M2:.*]] = arith.constant -7723592293110705685 : i64
// CHECK: arith.muli %{{.*}}, %[[M2]] : i64
// CHECK: %[[C40:.*]] = arith.constant 40 : i64
// CHECK: %[[TOP:.*]] = arith.shrui %{{.*}}, %[[C40]] : i64
// CHECK: arith.uitofp %[[TOP]] : i64 to f32
// CHECK: arith.mulf %{{.*}}, %{{.*}} : f32
// CHECK: } -> tensor<?x16xf32>
// CHECK: %[[ACC:.*]] = linalg.fill
// CHECK: %[[MM:.*]] = linalg.matmul ins(%[[U]], %[[W]] : tensor<?x16xf32>, tensor<16x8xf32>) outs(%[[ACC]] : tensor<?x8xf32>)
// CHECK: %[[OUT:.*]] = linalg.generic {{.*}} ins(%[[MM]], %[[B]] : tensor<?x8xf32>, tensor<8xf32>)
// CHECK: arith.addf
// CHECK: return %[[OUT]]
func.func @gate(%x: tensor<?x16xf32>, %w: tensor<16x8xf32>, %b: tensor<8xf32>,
                %seed: i64) -> tensor<?x8xf32> {
  %l = moe.gate %x, %w bias %b seed %seed {jitter_eps = 0.01 : f32}
      : tensor<?x16xf32>, tensor<16x8xf32>, tensor<8xf32>
  return %l : tensor<?x8xf32>
}

// -----

// f16 routing is computed in f32: the matmul takes the f16 operands into an
// f32 accumulator and the result is narrowed once.

// CHECK-LABEL: func.func @gate_f16
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<?x16xf16>, tensor<16x8xf16>) outs(%{{.*}} : tensor<?x8xf32>)
// CHECK: arith.truncf %{{.*}} : f32 to f16
// CHECK: return %{{.*}} : tensor<?x8xf16>
func.func @gate_f16(%x: tensor<?x16xf16>, %w: tensor<16x8xf16>) -> tensor<?x8xf16> {
  %l = moe.gate %x, %w : tensor<?x16xf16>, tensor<16x8xf16>
  return %l : tensor<?x8xf16>
}

// -----

// moe.token_choice (DeepSeek-style: sigmoid, selection bias, groups):
// sigmoid and bias are generics; group scores (sum of the two best scores of
// each group) fill a [T, G] tensor in loops; per token, the topk_groups-th
// best group is found by selection passes and top-k by k passes over the
// experts, each taking the best candidate ranked after the previous pick.

// CHECK-LABEL: func.func @token_choice
// CHECK: %[[PROBS:.*]] = linalg.generic
// CHECK: math.exp
// CHECK: arith.divf
// CHECK: %[[SEL:.*]] = linalg.generic {{.*}} ins(%[[PROBS]], %{{.*}} : tensor<?x8xf32>, tensor<8xf32>)
// CHECK: %[[GS:.*]] = scf.for {{.*}} -> (tensor<?x4xf32>)
// CHECK: scf.for {{.*}} -> (tensor<?x4xf32>)
// CHECK: scf.for {{.*}} -> (f32, f32)
// CHECK: tensor.extract %[[SEL]]
// CHECK: tensor.insert %{{.*}} into %{{.*}} : tensor<?x4xf32>
// CHECK: %[[RES:.*]]:2 = scf.for {{.*}} -> (tensor<?x2xf32>, tensor<?x2xi32>)
// CHECK: scf.for {{.*}} -> (f32, index)
// CHECK: scf.for {{.*}} -> (f32, index)
// CHECK: tensor.extract %[[GS]]
// CHECK: scf.for {{.*}} -> (tensor<?x2xi32>, f32, index, f32)
// CHECK: scf.for {{.*}} -> (f32, index)
// CHECK: tensor.extract %[[SEL]]
// CHECK: arith.divui
// CHECK: tensor.extract %[[GS]]
// CHECK: tensor.insert %{{.*}} : tensor<?x2xi32>
// CHECK: scf.for {{.*}} -> (tensor<?x2xf32>)
// CHECK: tensor.extract %[[PROBS]]
// CHECK: arith.divf
// CHECK: arith.mulf
// CHECK: tensor.insert %{{.*}} : tensor<?x2xf32>
// CHECK: return %[[RES]]#0, %[[RES]]#1, %[[PROBS]]
func.func @token_choice(%l: tensor<?x8xf32>, %b: tensor<8xf32>)
    -> (tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>) {
  %w, %i, %p = moe.token_choice sigmoid %l top 2 bias %b
      {normalize, num_groups = 4 : i64, topk_groups = 2 : i64,
       scaling_factor = 2.5 : f32} : tensor<?x8xf32>, tensor<8xf32>
  return %w, %i, %p : tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
}

// -----

// SparseMixer: the picks rank the logits themselves; each weight is one over
// a sum of exp(x - m) over the experts within 2% of the pick's logit m
// (m - x <= 0.02 max(|x|, m)), without the first pick for the second.

// CHECK-LABEL: func.func @token_choice_sparse_mixer
// CHECK-SAME: (%[[L:.*]]: tensor<?x16xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[L]] : tensor<?x16xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[L]], %{{.*}} : tensor<?x16xf32>, tensor<?xf32>)
// CHECK: %[[PROBS:.*]] = linalg.generic {{.*}} ins(%[[L]], %{{.*}}, %{{.*}} : tensor<?x16xf32>, tensor<?xf32>, tensor<?xf32>)
// CHECK: math.exp
// CHECK: %[[RES:.*]]:2 = scf.for {{.*}} -> (tensor<?x2xf32>, tensor<?x2xi32>)
// CHECK: scf.for {{.*}} -> (tensor<?x2xi32>, f32, index, f32)
// CHECK: scf.for {{.*}} -> (f32, index)
// CHECK: tensor.extract %[[L]]
// CHECK: scf.for {{.*}} -> (tensor<?x2xf32>)
// CHECK: %[[M:.*]] = tensor.extract %[[L]]
// CHECK: %[[FIRST:.*]] = tensor.extract %{{.*}} : tensor<?x2xi32>
// CHECK: %[[SUM:.*]] = scf.for {{.*}} -> (f32)
// CHECK: %[[X:.*]] = tensor.extract %[[L]]
// CHECK: %[[ABS:.*]] = math.absf %[[X]]
// CHECK: %[[FACTOR:.*]] = arith.maximumf %[[ABS]], %[[M]]
// CHECK: %[[GAP:.*]] = arith.subf %[[M]], %[[X]]
// CHECK: %[[WINDOW:.*]] = arith.mulf %{{.*}}, %[[FACTOR]]
// CHECK: arith.cmpf ule, %[[GAP]], %[[WINDOW]]
// CHECK: %[[D:.*]] = arith.subf %[[X]], %[[M]]
// CHECK: math.exp %[[D]]
// CHECK: arith.select
// CHECK: arith.divf %{{.*}}, %[[SUM]]
// CHECK: tensor.insert %{{.*}} : tensor<?x2xf32>
// CHECK: return %[[RES]]#0, %[[RES]]#1, %[[PROBS]]
func.func @token_choice_sparse_mixer(%l: tensor<?x16xf32>)
    -> (tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x16xf32>) {
  %w, %i, %p = moe.token_choice sparse_mixer %l top 2 : tensor<?x16xf32>
  return %w, %i, %p : tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x16xf32>
}

// -----

// moe.expert_choice: softmax, C = min(T, ceil(2 T / 8)) computed in f64 for
// a dynamic T, offsets e * C, then per expert a stable LSD radix sort of the
// tokens (four 8-bit passes: histogram, prefix sum, scatter) and the chosen
// tokens emitted in token order.

// CHECK-LABEL: func.func @expert_choice
// CHECK: math.ceil %{{.*}} : f64
// CHECK: arith.fptosi %{{.*}} : f64 to i64
// CHECK: %[[C:.*]] = arith.minsi
// CHECK: %[[R:.*]] = arith.muli %{{.*}}, %[[C]] : index
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: %[[OFF:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<9xi32>)
// CHECK: %[[RT0:.*]] = tensor.empty(%[[R]]) : tensor<?xi32>
// CHECK: %[[LOOP:.*]]:3 = scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%{{.*}} = %[[RT0]], {{.*}}) -> (tensor<?xi32>, tensor<?xf32>, tensor<?xi32>)
// CHECK: arith.bitcast %{{.*}} : f32 to i32
// CHECK-COUNT-4: scf.for {{.*}} -> (tensor<?xi32>, tensor<256xi32>)
// CHECK: scf.for {{.*}} to %[[C]] {{.*}} -> (tensor<?xi32>)
// CHECK: scf.for {{.*}} -> (tensor<?xi32>, tensor<?xf32>, index)
// CHECK: scf.if
// CHECK: return %[[LOOP]]#0, %[[LOOP]]#1, %[[OFF]]
func.func @expert_choice(%l: tensor<?x8xf32>)
    -> (tensor<?xi32>, tensor<?xf32>, tensor<9xi32>, tensor<?x8xf32>) {
  %rt, %rw, %off, %p = moe.expert_choice %l {capacity_factor = 2.0 : f64}
      : tensor<?x8xf32>
  return %rt, %rw, %off, %p
      : tensor<?xi32>, tensor<?xf32>, tensor<9xi32>, tensor<?x8xf32>
}

// -----

// moe.dispatch with a capacity and batch priority, static T: C = ceil(0.5 *
// 40 * 2 / 8) = 5 folds to a constant, R = 40. Tokens are radix-sorted by
// decreasing weights[t, 0]; a [T, k] i8 mask records the kept assignments
// (choice rank outer, priority order inner, counts below C); a prefix sum
// gives the offsets; kept assignments then fill the rows in token order.

// CHECK-LABEL: func.func @dispatch_capacity
// CHECK: %[[CAP:.*]] = arith.constant 5 : index
// CHECK-COUNT-4: scf.for {{.*}} -> (tensor<40xi32>, tensor<256xi32>)
// CHECK: %[[MASK0:.*]] = linalg.fill ins(%{{.*}} : i8) outs(%{{.*}} : tensor<40x2xi8>)
// CHECK: %[[KEPT:.*]]:2 = scf.for {{.*}} iter_args(%{{.*}} = %[[MASK0]], %{{.*}}) -> (tensor<40x2xi8>, tensor<8xi32>)
// CHECK: scf.for {{.*}} -> (tensor<40x2xi8>, tensor<8xi32>)
// CHECK: arith.cmpi slt, %{{.*}}, %[[CAP]] : index
// CHECK: scf.if
// CHECK: tensor.insert %{{.*}} : tensor<40x2xi8>
// CHECK: %[[PREFIX:.*]]:3 = scf.for {{.*}} -> (tensor<9xi32>, tensor<8xi32>, i32)
// CHECK: %[[MINUS1:.*]] = arith.constant -1 : i32
// CHECK: %[[RT0:.*]] = linalg.fill ins(%[[MINUS1]] : i32) outs(%{{.*}} : tensor<40xi32>)
// CHECK: %[[ROWS:.*]]:3 = scf.for {{.*}} iter_args(%{{.*}} = %[[RT0]], %{{.*}} = %{{.*}}, %{{.*}} = %[[PREFIX]]#1) -> (tensor<40xi32>, tensor<40xf32>, tensor<8xi32>)
// CHECK: tensor.extract %[[KEPT]]#0
// CHECK: scf.if
// CHECK: return %[[ROWS]]#0, %[[ROWS]]#1, %[[PREFIX]]#0
func.func @dispatch_capacity(%idx: tensor<40x2xi32>, %w: tensor<40x2xf32>)
    -> (tensor<40xi32>, tensor<40xf32>, tensor<9xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w
      {num_experts = 8 : i64, capacity_factor = 0.5 : f64, batch_prioritized}
      : tensor<40x2xi32>, tensor<40x2xf32>
  return %rt, %rw, %off : tensor<40xi32>, tensor<40xf32>, tensor<9xi32>
}

// -----

// Dropless dispatch with a dynamic T: R = T * k, no mask and no sort.

// CHECK-LABEL: func.func @dispatch_dropless
// CHECK: %[[T:.*]] = tensor.dim
// CHECK: %[[R:.*]] = arith.muli %[[T]], %{{.*}} : index
// CHECK-NOT: tensor<?x2xi8>
// CHECK: scf.for {{.*}} -> (tensor<8xi32>)
// CHECK: scf.for {{.*}} -> (tensor<9xi32>, tensor<8xi32>, i32)
// CHECK: tensor.empty(%[[R]]) : tensor<?xi32>
// CHECK: scf.for {{.*}} -> (tensor<?xi32>, tensor<?xf32>, tensor<8xi32>)
func.func @dispatch_dropless(%idx: tensor<?x2xi32>, %w: tensor<?x2xf32>)
    -> (tensor<?xi32>, tensor<?xf32>, tensor<9xi32>) {
  %rt, %rw, %off = moe.dispatch %idx, %w {num_experts = 8 : i64}
      : tensor<?x2xi32>, tensor<?x2xf32>
  return %rt, %rw, %off : tensor<?xi32>, tensor<?xf32>, tensor<9xi32>
}

// -----

// moe.permute is a gather: a generic over [R, D] whose body reads the token
// row with tensor.extract and yields 0 for padding rows (-1).

// CHECK-LABEL: func.func @permute
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[RT:.*]]: tensor<?xi32>)
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel"]} ins(%[[RT]] : tensor<?xi32>) outs(%{{.*}} : tensor<?x16xf32>)
// CHECK: ^bb0(%[[TOK:.*]]: i32, %{{.*}}: f32):
// CHECK: %[[T:.*]] = arith.index_cast %[[TOK]] : i32 to index
// CHECK: %[[VALID:.*]] = arith.andi
// CHECK: %[[SAFE:.*]] = arith.select %[[VALID]], %[[T]]
// CHECK: %[[D:.*]] = linalg.index 1 : index
// CHECK: %[[V:.*]] = tensor.extract %[[X]][%[[SAFE]], %[[D]]]
// CHECK: arith.select %[[VALID]], %[[V]]
func.func @permute(%x: tensor<?x16xf32>, %rt: tensor<?xi32>) -> tensor<?x16xf32> {
  %xs = moe.permute %x, %rt : tensor<?x16xf32>, tensor<?xi32>
  return %xs : tensor<?x16xf32>
}

// -----

// moe.expert_ffn: a loop over experts reading offsets[e], offsets[e+1]; the
// body slices the expert's rows and weights, runs three matmuls around the
// gated activation (the exact gelu's erf expanded to a polynomial, no
// math.erf left) and writes the rows back into the zero-filled result.

// CHECK-LABEL: func.func @expert_ffn
// CHECK-SAME: (%[[XS:.*]]: tensor<?x16xf32>, %[[OFF:.*]]: tensor<5xi32>, %[[W1:.*]]: tensor<4x16x32xf32>, %[[W2:.*]]: tensor<4x32x16xf32>, %[[W3:.*]]: tensor<4x16x32xf32>, %[[B2:.*]]: tensor<4x16xf32>)
// CHECK-NOT: math.erf
// CHECK: %[[ZERO:.*]] = linalg.fill {{.*}} -> tensor<?x16xf32>
// CHECK: %[[RES:.*]] = scf.for %[[E:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[ACC:.*]] = %[[ZERO]]) -> (tensor<?x16xf32>)
// CHECK: tensor.extract %[[OFF]][%[[E]]]
// CHECK: tensor.extract %[[OFF]]
// CHECK: %[[N:.*]] = arith.subi
// CHECK-DAG: %[[ROWS:.*]] = tensor.extract_slice %[[XS]][%[[LO:.*]], 0] [%[[N]], 16] [1, 1] : tensor<?x16xf32> to tensor<?x16xf32>
// CHECK-DAG: %[[DEST:.*]] = tensor.extract_slice %[[ACC]][%[[LO]], 0] [%[[N]], 16] [1, 1]
// CHECK-DAG: %[[E1:.*]] = tensor.extract_slice %[[W1]][%[[E]], 0, 0] [1, 16, 32] [1, 1, 1] : tensor<4x16x32xf32> to tensor<16x32xf32>
// CHECK-DAG: %[[E3:.*]] = tensor.extract_slice %[[W3]][%[[E]], 0, 0] [1, 16, 32] [1, 1, 1] : tensor<4x16x32xf32> to tensor<16x32xf32>
// CHECK-DAG: %[[E2:.*]] = tensor.extract_slice %[[W2]][%[[E]], 0, 0] [1, 32, 16] [1, 1, 1] : tensor<4x32x16xf32> to tensor<32x16xf32>
// CHECK-DAG: %[[EB:.*]] = tensor.extract_slice %[[B2]][%[[E]], 0] [1, 16] [1, 1] : tensor<4x16xf32> to tensor<16xf32>
// CHECK: %[[H1:.*]] = linalg.matmul ins(%[[ROWS]], %[[E1]] : tensor<?x16xf32>, tensor<16x32xf32>)
// CHECK: %[[H3:.*]] = linalg.matmul ins(%[[ROWS]], %[[E3]] : tensor<?x16xf32>, tensor<16x32xf32>)
// CHECK: %[[H:.*]] = linalg.generic {{.*}} ins(%[[H1]], %[[H3]] : tensor<?x32xf32>, tensor<?x32xf32>)
// CHECK: math.fma
// CHECK: %[[Y:.*]] = linalg.matmul ins(%[[H]], %[[E2]] : tensor<?x32xf32>, tensor<32x16xf32>)
// CHECK: %[[YB:.*]] = linalg.generic {{.*}} ins(%[[Y]], %[[EB]] : tensor<?x16xf32>, tensor<16xf32>) outs(%[[DEST]] : tensor<?x16xf32>)
// CHECK: %[[INS:.*]] = tensor.insert_slice %[[YB]] into %[[ACC]][%[[LO]], 0] [%[[N]], 16] [1, 1]
// CHECK: scf.yield %[[INS]]
// CHECK: return %[[RES]]
func.func @expert_ffn(%xs: tensor<?x16xf32>, %off: tensor<5xi32>,
                      %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>,
                      %w3: tensor<4x16x32xf32>, %b2: tensor<4x16xf32>)
    -> tensor<?x16xf32> {
  %ys = moe.expert_ffn geglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<4x16x32xf32>
      fc2_bias %b2 : tensor<4x16xf32>
      : tensor<?x16xf32>, tensor<5xi32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>
  return %ys : tensor<?x16xf32>
}

// -----

// SwiGLU with parameters: the gate projection G = min(g, 7) goes through
// G * sigmoid(1.5 * G), the linear one is clamped to [-7, 7] and shifted by
// beta = 1 before the product.

// CHECK-LABEL: func.func @expert_ffn_swiglu_parameters
// CHECK: %[[H1:.*]] = linalg.matmul
// CHECK: %[[H3:.*]] = linalg.matmul
// CHECK: linalg.generic {{.*}} ins(%[[H1]], %[[H3]] : tensor<?x32xf32>, tensor<?x32xf32>)
// CHECK-NEXT: ^bb0(%[[G:.*]]: f32, %[[L:.*]]: f32, %{{.*}}: f32):
// CHECK: %[[LIMIT:.*]] = arith.constant 7.000000e+00 : f32
// CHECK: %[[GC:.*]] = arith.minimumf %[[G]], %[[LIMIT]] : f32
// CHECK: %[[ALPHA:.*]] = arith.constant 1.500000e+00 : f32
// CHECK: %[[AG:.*]] = arith.mulf %[[ALPHA]], %[[GC]] : f32
// CHECK: %[[NEG:.*]] = arith.negf %[[AG]] : f32
// CHECK: math.exp %[[NEG]]
// CHECK: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK: %[[S:.*]] = arith.divf %[[ONE]]
// CHECK: %[[ACT:.*]] = arith.mulf %[[GC]], %[[S]] : f32
// CHECK: %[[NEG_LIMIT:.*]] = arith.constant -7.000000e+00 : f32
// CHECK: %[[LMIN:.*]] = arith.minimumf %[[L]], %[[LIMIT]] : f32
// CHECK: %[[LC:.*]] = arith.maximumf %[[LMIN]], %[[NEG_LIMIT]] : f32
// CHECK: %[[LB:.*]] = arith.addf %[[LC]], %[[ONE]] : f32
// CHECK: %[[H:.*]] = arith.mulf %[[ACT]], %[[LB]] : f32
// CHECK: linalg.yield %[[H]]
func.func @expert_ffn_swiglu_parameters(
    %xs: tensor<?x16xf32>, %off: tensor<5xi32>, %w1: tensor<4x16x32xf32>,
    %w2: tensor<4x32x16xf32>, %w3: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  %ys = moe.expert_ffn swiglu %xs, %off, %w1, %w2 fc3 %w3 : tensor<4x16x32xf32>
      {swiglu_alpha = 1.5 : f32, swiglu_beta = 1.0 : f32,
       swiglu_limit = 7.0 : f32}
      : tensor<?x16xf32>, tensor<5xi32>, tensor<4x16x32xf32>,
        tensor<4x32x16xf32>
  return %ys : tensor<?x16xf32>
}

// -----

// The backward of SwiGLU with parameters: the gradient of the gate
// projection is dh * (L + beta) * s (1 + alpha G (1 - s)), zero where g is
// clipped (g > limit); that of the linear projection is dh * G s, zero where
// |l| > limit.

// CHECK-LABEL: func.func @expert_ffn_grad_swiglu_parameters
// CHECK: %[[A1:.*]] = linalg.matmul
// CHECK: %[[A3:.*]] = linalg.matmul
// CHECK: %[[DH:.*]] = linalg.matmul
// CHECK: linalg.generic {{.*}} ins(%[[A1]], %[[A3]], %[[DH]] : tensor<?x32xf32>, tensor<?x32xf32>, tensor<?x32xf32>)
// CHECK-NEXT: ^bb0(%[[G:.*]]: f32, %[[L:.*]]: f32, %[[D:.*]]: f32, %{{.*}}: f32):
// CHECK: %[[GC:.*]] = arith.minimumf %[[G]]
// CHECK: %[[AG:.*]] = arith.mulf %{{.*}}, %[[GC]] : f32
// CHECK: %[[T:.*]] = arith.mulf %[[AG]], %{{.*}} : f32
// CHECK: %[[U:.*]] = arith.addf %{{.*}}, %[[T]] : f32
// CHECK: %[[SLOPE:.*]] = arith.mulf %{{.*}}, %[[U]] : f32
// CHECK: %[[KEEP:.*]] = arith.cmpf ole, %[[G]], %{{.*}} : f32
// CHECK: %[[DG:.*]] = arith.select %[[KEEP]], %[[SLOPE]], %{{.*}} : f32
// CHECK: %[[DA:.*]] = arith.mulf %[[D]], %[[DG]] : f32
// CHECK: arith.minimumf %[[L]]
// CHECK: %[[LC:.*]] = arith.maximumf
// CHECK: %[[LB:.*]] = arith.addf %[[LC]]
// CHECK: %[[DA1:.*]] = arith.mulf %[[DA]], %[[LB]] : f32
// CHECK: linalg.yield %[[DA1]]
// CHECK: linalg.generic {{.*}} ins(%[[A1]], %[[A3]], %[[DH]] : tensor<?x32xf32>, tensor<?x32xf32>, tensor<?x32xf32>)
// CHECK-NEXT: ^bb0(%[[G3:.*]]: f32, %[[L3:.*]]: f32, %[[D3:.*]]: f32, %{{.*}}: f32):
// CHECK: %[[S3:.*]] = arith.divf
// CHECK: %[[ACT:.*]] = arith.mulf %{{.*}}, %[[S3]] : f32
// CHECK: %[[DF:.*]] = arith.mulf %[[D3]], %[[ACT]] : f32
// CHECK: %[[ABS:.*]] = math.absf %[[L3]] : f32
// CHECK: %[[IN:.*]] = arith.cmpf ole, %[[ABS]], %{{.*}} : f32
// CHECK: %[[DA3:.*]] = arith.select %[[IN]], %[[DF]], %{{.*}} : f32
// CHECK: linalg.yield %[[DA3]]
func.func @expert_ffn_grad_swiglu_parameters(
    %dy: tensor<?x16xf32>, %xs: tensor<?x16xf32>, %off: tensor<5xi32>,
    %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>,
    %w3: tensor<4x16x32xf32>) -> (tensor<4x16x32xf32>, tensor<4x16x32xf32>) {
  %dx, %d1, %d2, %d3 = moe.expert_ffn_grad swiglu %dy, %xs, %off, %w1, %w2
      fc3 %w3 : tensor<4x16x32xf32>
      {swiglu_alpha = 1.5 : f32, swiglu_beta = 1.0 : f32,
       swiglu_limit = 7.0 : f32}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>,
        tensor<4x16x32xf32>, tensor<4x32x16xf32>
  return %d1, %d3 : tensor<4x16x32xf32>, tensor<4x16x32xf32>
}

// -----

// relu2 squares the ReLU; identity leaves the projection as it is (no
// activation generic between the two matmuls); geglu_tanh is the tanh GELU
// of the gate projection times the linear one.

// CHECK-LABEL: func.func @expert_ffn_onnx_activations
// CHECK: %[[R:.*]] = linalg.matmul
// CHECK: linalg.generic {{.*}} ins(%[[R]] : tensor<?x32xf32>)
// CHECK: %[[POS:.*]] = arith.maximumf
// CHECK: %[[SQ:.*]] = arith.mulf %[[POS]], %[[POS]] : f32
// CHECK: linalg.yield %[[SQ]]
// CHECK: linalg.matmul
// CHECK: %[[I:.*]] = linalg.matmul
// CHECK: linalg.generic {{.*}} ins(%[[I]] : tensor<?x32xf32>)
// CHECK-NEXT: ^bb0(%[[V:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: linalg.yield %[[V]]
// CHECK: linalg.matmul
// CHECK: linalg.matmul
// CHECK: linalg.generic
// CHECK: math.tanh
// CHECK: linalg.yield
func.func @expert_ffn_onnx_activations(
    %xs: tensor<?x16xf32>, %off: tensor<5xi32>, %w1: tensor<4x16x32xf32>,
    %w2: tensor<4x32x16xf32>, %w3: tensor<4x16x32xf32>)
    -> (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>) {
  %a = moe.expert_ffn relu2 %xs, %off, %w1, %w2
      : tensor<?x16xf32>, tensor<5xi32>, tensor<4x16x32xf32>,
        tensor<4x32x16xf32>
  %b = moe.expert_ffn identity %xs, %off, %w1, %w2
      : tensor<?x16xf32>, tensor<5xi32>, tensor<4x16x32xf32>,
        tensor<4x32x16xf32>
  %c = moe.expert_ffn geglu_tanh %xs, %off, %w1, %w2 fc3 %w3
      : tensor<4x16x32xf32>
      : tensor<?x16xf32>, tensor<5xi32>, tensor<4x16x32xf32>,
        tensor<4x32x16xf32>
  return %a, %b, %c : tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>
}

// -----

// moe.combine: init (an argument, so copied first) plus a scatter-add in row
// order; each valid row updates a slice of the accumulator with a
// feature-parallel generic.

// CHECK-LABEL: func.func @combine
// CHECK-SAME: (%[[YS:.*]]: tensor<?x16xf32>, %[[RT:.*]]: tensor<?xi32>, %[[RW:.*]]: tensor<?xf32>, %[[INIT:.*]]: tensor<?x16xf32>)
// CHECK: %[[COPY:.*]] = linalg.copy ins(%[[INIT]] : tensor<?x16xf32>)
// CHECK: %[[RES:.*]] = scf.for %[[R:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[ACC:.*]] = %[[COPY]]) -> (tensor<?x16xf32>)
// CHECK: tensor.extract %[[RT]][%[[R]]]
// CHECK: scf.if
// CHECK: %[[W:.*]] = tensor.extract %[[RW]][%[[R]]]
// CHECK: %[[ROW:.*]] = tensor.extract_slice %[[ACC]][%[[T:.*]], 0] [1, 16] [1, 1] : tensor<?x16xf32> to tensor<16xf32>
// CHECK: %[[SRC:.*]] = tensor.extract_slice %[[YS]][%[[R]], 0] [1, 16] [1, 1] : tensor<?x16xf32> to tensor<16xf32>
// CHECK: %[[UPD:.*]] = linalg.generic {{.*}} ins(%[[SRC]] : tensor<16xf32>) outs(%[[ROW]] : tensor<16xf32>)
// CHECK: %[[P:.*]] = arith.mulf %[[W]], %{{.*}} : f32
// CHECK: arith.addf %{{.*}}, %[[P]] : f32
// CHECK: tensor.insert_slice %[[UPD]] into %[[ACC]][%[[T]], 0] [1, 16] [1, 1]
// CHECK: return %[[RES]]
func.func @combine(%ys: tensor<?x16xf32>, %rt: tensor<?xi32>, %rw: tensor<?xf32>,
                   %init: tensor<?x16xf32>) -> tensor<?x16xf32> {
  %y = moe.combine %ys, %rt, %rw into %init
      : tensor<?x16xf32>, tensor<?xi32>, tensor<?xf32>, tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// With device-kernels, moe.combine is one launch of a CUDA kernel (one
// thread per feature column, rows in order, f32 accumulator) on
// fully dynamic shapes, so that every combine of these element types shares
// it; bf16 results are rounded from the f32 accumulator afterwards.

// DEVICE-LABEL: func.func private @__moe_launch.moe_combine_bf16_bf16_bf16
// DEVICE-SAME: attributes {moe.launch = @moe_kernels::@moe_combine_bf16_bf16_bf16}
// DEVICE-LABEL: func.func @combine_on_device
// DEVICE: %[[X:.*]] = bufferization.to_buffer %{{.*}} read_only : tensor<?x?xbf16> to memref<?x?xbf16, strided<[?, ?], offset: ?>>
// DEVICE: %[[ACC:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?xf32>
// DEVICE: call @__moe_launch.moe_combine_bf16_bf16_bf16(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[X]], %{{.*}}, %{{.*}}, %{{.*}}, %[[ACC]])
// DEVICE: %[[SUM:.*]] = bufferization.to_tensor %[[ACC]] restrict writable
// DEVICE: linalg.generic {{.*}} ins(%[[SUM]] : tensor<?x?xf32>)
// DEVICE: arith.truncf %{{.*}} : f32 to bf16
// DEVICE: tensor.cast %{{.*}} : tensor<?x?xbf16> to tensor<4x16xbf16>
// DEVICE: gpu.module @moe_kernels
// DEVICE: gpu.func @moe_combine_bf16_bf16_bf16(%[[XS:.*]]: memref<?x?xbf16, {{.*}}>, %[[RT:.*]]: memref<?xi32, {{.*}}>, %[[RW:.*]]: memref<?xbf16, {{.*}}>, %[[INIT:.*]]: memref<?x?xbf16, {{.*}}>, %[[OUT:.*]]: memref<?x?xf32>) kernel
// DEVICE: %[[COL:.*]] = arith.addi
// DEVICE: scf.if
// DEVICE: scf.for %[[T0:.*]] =
// DEVICE: memref.load %[[INIT]][%[[T0]], %[[COL]]]
// DEVICE: scf.for %[[R:.*]] =
// DEVICE: memref.load %[[RT]][%[[R]]]
// DEVICE: scf.if
// DEVICE: %[[OLD:.*]] = memref.load %[[OUT]][%[[T:.*]], %[[COL]]]
// DEVICE: %[[NEW:.*]] = arith.addf %[[OLD]]
// DEVICE: memref.store %[[NEW]], %[[OUT]][%[[T]], %[[COL]]]
func.func @combine_on_device(%ys: tensor<8x16xbf16>, %rt: tensor<8xi32>,
                             %rw: tensor<8xbf16>, %init: tensor<4x16xbf16>)
    -> tensor<4x16xbf16> {
  %y = moe.combine %ys, %rt, %rw into %init
      : tensor<8x16xbf16>, tensor<8xi32>, tensor<8xbf16>, tensor<4x16xbf16>
  return %y : tensor<4x16xbf16>
}

// -----

// An init made by a linalg op is updated in place (no copy).

// CHECK-LABEL: func.func @combine_into_zeros
// CHECK-NOT: linalg.copy
// CHECK: %[[ZEROS:.*]] = linalg.fill
// CHECK: scf.for {{.*}} iter_args(%{{.*}} = %[[ZEROS]])
func.func @combine_into_zeros(%ys: tensor<8x16xf32>, %rt: tensor<8xi32>,
                              %rw: tensor<8xf32>) -> tensor<4x16xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x16xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = moe.combine %ys, %rt, %rw into %init
      : tensor<8x16xf32>, tensor<8xi32>, tensor<8xf32>, tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}

// -----

// moe.shared_expert with a gate: a dense SwiGLU FFN (three matmuls) whose
// rows are scaled by sigmoid(x @ gate).

// CHECK-LABEL: func.func @shared_expert
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[S1:.*]]: tensor<16x24xf32>, %[[S2:.*]]: tensor<24x16xf32>, %[[S3:.*]]: tensor<16x24xf32>, %[[G:.*]]: tensor<16x1xf32>)
// CHECK: linalg.matmul ins(%[[X]], %[[S1]]
// CHECK: linalg.matmul ins(%[[X]], %[[S3]]
// CHECK: %[[H:.*]] = linalg.generic
// CHECK: math.exp
// CHECK: %[[Y:.*]] = linalg.matmul ins(%[[H]], %[[S2]]
// CHECK: %[[GV:.*]] = linalg.matmul ins(%[[X]], %[[G]] : tensor<?x16xf32>, tensor<16x1xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[Y]], %[[GV]] : tensor<?x16xf32>, tensor<?x1xf32>)
// CHECK: math.exp
func.func @shared_expert(%x: tensor<?x16xf32>, %s1: tensor<16x24xf32>,
                         %s2: tensor<24x16xf32>, %s3: tensor<16x24xf32>,
                         %g: tensor<16x1xf32>) -> tensor<?x16xf32> {
  %s = moe.shared_expert swiglu %x, %s1, %s2 fc3 %s3 : tensor<16x24xf32>
      gate %g : tensor<16x1xf32>
      : tensor<?x16xf32>, tensor<16x24xf32>, tensor<24x16xf32>
  return %s : tensor<?x16xf32>
}

// -----

// Metrics: assignment counts in loops, column sums / row maxima as
// reductions, scalars wrapped in 0-d tensors.

// CHECK-LABEL: func.func @metrics
// CHECK-SAME: (%[[P:.*]]: tensor<?x8xf32>, %[[IDX:.*]]: tensor<?x2xi32>, %[[OFF:.*]]: tensor<9xi32>)
// load_balancing_loss
// CHECK: scf.for {{.*}} -> (tensor<8xi64>)
// CHECK: linalg.generic {{.*}} iterator_types = ["reduction", "parallel"]} ins(%[[P]] : tensor<?x8xf32>) outs(%{{.*}} : tensor<8xf32>)
// CHECK: scf.for {{.*}} -> (f32)
// CHECK: %[[AUX:.*]] = tensor.from_elements %{{.*}} : tensor<f32>
// z_loss
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "reduction"]}
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: scf.for {{.*}} -> (f32)
// CHECK: math.log
// CHECK: %[[Z:.*]] = tensor.from_elements %{{.*}} : tensor<f32>
// routing_stats: dropped = T * k - offsets[E]
// CHECK: tensor.extract %[[OFF]]
// CHECK: %[[DROP:.*]] = tensor.from_elements %{{.*}} : tensor<i64>
// CHECK: return %[[AUX]], %[[Z]], %{{.*}}, %[[DROP]]
func.func @metrics(%p: tensor<?x8xf32>, %idx: tensor<?x2xi32>, %off: tensor<9xi32>)
    -> (tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>) {
  %aux = moe.load_balancing_loss %p, %idx : tensor<?x8xf32>, tensor<?x2xi32>
  %z = moe.z_loss %p : tensor<?x8xf32>
  %load, %drop = moe.routing_stats %off indices %idx : tensor<?x2xi32>
      : tensor<9xi32>
  return %aux, %z, %load, %drop : tensor<f32>, tensor<f32>, tensor<8xi64>, tensor<i64>
}

// -----

// Without indices, tokens per expert are the offsets' differences.

// CHECK-LABEL: func.func @routing_stats_rows
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<8xi64>)
// CHECK: linalg.index 0
// CHECK: arith.subi %{{.*}}, %{{.*}} : i64
func.func @routing_stats_rows(%off: tensor<9xi32>) -> (tensor<8xi64>, tensor<i64>) {
  %load, %drop = moe.routing_stats %off : tensor<9xi32>
  return %load, %drop : tensor<8xi64>, tensor<i64>
}

// -----

// A moe.layer must be decomposed first.

func.func @layer(%x: tensor<?x16xf32>, %wg: tensor<16x4xf32>,
                 %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>)
    -> tensor<?x16xf32> {
  // expected-error @+1 {{'moe.layer' op must be decomposed before lowering; run -moe-decompose-layer before -convert-moe-to-linalg}}
  %y, %aux, %z, %load, %drop = moe.layer token_choice %x : tensor<?x16xf32>
      router %wg : tensor<16x4xf32>
      experts relu %w1 : tensor<4x16x32xf32>, %w2 : tensor<4x32x16xf32>
      {k = 1 : i64}
  return %y : tensor<?x16xf32>
}
