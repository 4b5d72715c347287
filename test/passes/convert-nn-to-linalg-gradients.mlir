// RUN: moe-opt %s --convert-nn-to-linalg --split-input-file --verify-diagnostics | FileCheck %s
// RUN: moe-opt %s --convert-nn-to-linalg --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=NO-NN

// The gradient ops of convert-nn-to-linalg (passes/NNLowering/Gradients.cpp)
// and nn.rotary's inverse. No nn op survives the pass.
// NO-NN-NOT: {{[^a-z_]nn\.[a-z]}}

// reduce_sum accumulates f16 in an f32 tensor of the kept dimensions; with
// keep_dims one copy rounds and inserts the extent-1 dimension.

// CHECK-DAG: #[[$ID3:.*]] = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-DAG: #[[$DROP1:.*]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-LABEL: func.func @reduce_sum_keep
// CHECK: %[[ACC:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<2x5xf32>)
// CHECK: %[[SUM:.*]] = linalg.generic {indexing_maps = [#[[$ID3]], #[[$DROP1]]], iterator_types = ["parallel", "reduction", "parallel"]}
// CHECK-SAME: ins(%{{.*}} : tensor<2x?x5xf16>) outs(%[[ACC]] : tensor<2x5xf32>)
// CHECK: arith.extf
// CHECK: arith.addf
// CHECK: %[[R:.*]] = linalg.generic {indexing_maps = [#[[$DROP1]], #[[$ID3]]], iterator_types = ["parallel", "parallel", "parallel"]}
// CHECK-SAME: ins(%[[SUM]] : tensor<2x5xf32>) outs(%{{.*}} : tensor<2x1x5xf16>)
// CHECK: arith.truncf
// CHECK: return %[[R]]
func.func @reduce_sum_keep(%x: tensor<2x?x5xf16>) -> tensor<2x1x5xf16> {
  %r = nn.reduce_sum %x [1] {keep_dims} : tensor<2x?x5xf16>
  return %r : tensor<2x1x5xf16>
}

// -----

// unary_grad is one elementwise generic over (grad, input): relu passes the
// gradient where x > 0.

// CHECK-LABEL: func.func @unary_grad_relu
// CHECK: linalg.generic
// CHECK-SAME: ins(%{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<?x8xf32>)
// CHECK: ^bb0(%[[G:.*]]: f32, %[[X:.*]]: f32, %{{.*}}: f32):
// CHECK: %[[POS:.*]] = arith.cmpf ogt, %[[X]], %{{.*}} : f32
// CHECK: %[[D:.*]] = arith.select %[[POS]], %{{.*}}, %{{.*}} : f32
// CHECK: %[[R:.*]] = arith.mulf %[[G]], %[[D]] : f32
// CHECK: linalg.yield %[[R]]
func.func @unary_grad_relu(%g: tensor<?x8xf32>, %x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %r = nn.unary_grad relu %g, %x : tensor<?x8xf32>
  return %r : tensor<?x8xf32>
}

// -----

// silu' = s (1 + x (1 - s)) with s = sigmoid(x); gelu uses erf, which the
// pass expands into its polynomial (no math.erf is left).

// CHECK-LABEL: func.func @unary_grad_silu_gelu
// CHECK: math.exp
// CHECK: arith.divf
// CHECK-NOT: math.erf
// CHECK: return
func.func @unary_grad_silu_gelu(%g: tensor<?x8xf32>, %x: tensor<?x8xf32>) -> (tensor<?x8xf32>, tensor<?x8xf32>) {
  %0 = nn.unary_grad silu %g, %x : tensor<?x8xf32>
  %1 = nn.unary_grad gelu %g, %x : tensor<?x8xf32>
  return %0, %1 : tensor<?x8xf32>, tensor<?x8xf32>
}

// -----

// rms_norm_grad: one row reduction with two accumulators (sum x^2 and
// sum g w x), an elementwise pass for d input, and a reduction over the rows
// for d weight.

// CHECK-LABEL: func.func @rms_norm_grad
// CHECK: %[[ROWS:.*]]:2 = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]
// CHECK-SAME: outs(%{{.*}}, %{{.*}} : tensor<2x?xf32>, tensor<2x?xf32>)
// CHECK: %[[DX:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "parallel"]
// CHECK-SAME: ins(%{{.*}}, %[[ROWS]]#0, %[[ROWS]]#1, %{{.*}}, %{{.*}} :
// CHECK: math.sqrt
// CHECK: %[[DW:.*]] = linalg.generic {{.*}} iterator_types = ["reduction", "reduction", "parallel"]
// CHECK-SAME: outs(%{{.*}} : tensor<8xf32>)
// CHECK: return %[[DX]], %[[DW]]
func.func @rms_norm_grad(%g: tensor<2x?x8xf32>, %x: tensor<2x?x8xf32>, %w: tensor<8xf32>) -> (tensor<2x?x8xf32>, tensor<8xf32>) {
  %dx, %dw = nn.rms_norm_grad %g, %x, %w : tensor<2x?x8xf32>, tensor<8xf32>
  return %dx, %dw : tensor<2x?x8xf32>, tensor<8xf32>
}

// -----

// layer_norm_grad: mean and variance (two passes, as forward), the two row
// sums, d input, and d weight with d bias from one reduction over the rows.

// CHECK-LABEL: func.func @layer_norm_grad
// CHECK-COUNT-3: iterator_types = ["parallel", "reduction"]
// CHECK: iterator_types = ["parallel", "parallel"]
// CHECK: %{{.*}}:2 = linalg.generic {{.*}} iterator_types = ["reduction", "parallel"]
// CHECK: arith.truncf
// CHECK: return %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x8xf16>, tensor<8xf16>, tensor<8xf16>
func.func @layer_norm_grad(%g: tensor<?x8xf16>, %x: tensor<?x8xf16>, %w: tensor<8xf16>) -> (tensor<?x8xf16>, tensor<8xf16>, tensor<8xf16>) {
  %dx, %dw, %db = nn.layer_norm_grad %g, %x, %w : tensor<?x8xf16>, tensor<8xf16>
  return %dx, %dw, %db : tensor<?x8xf16>, tensor<8xf16>, tensor<8xf16>
}

// -----

// embedding_grad: positions flattened, then in order a row-wide generic adds
// each gradient row into the (clamped) id's row of a zero table.

// CHECK-LABEL: func.func @embedding_grad
// CHECK-DAG: %[[IDS:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0, 1]] : tensor<2x?xi32> into tensor<?xi32>
// CHECK-DAG: %[[ROWS:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0, 1], [2]] : tensor<2x?x8xf32> into tensor<?x8xf32>
// CHECK: %[[ZERO:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<16x8xf32>)
// CHECK: %[[R:.*]] = scf.for %[[N:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[ACC:.*]] = %[[ZERO]]) -> (tensor<16x8xf32>)
// CHECK: %[[ID:.*]] = tensor.extract %[[IDS]][%[[N]]]
// CHECK: arith.minsi
// CHECK: %[[ROW:.*]] = arith.maxsi
// CHECK: %[[T:.*]] = tensor.extract_slice %[[ACC]][%[[ROW]], 0] [1, 8] [1, 1]
// CHECK: %[[S:.*]] = tensor.extract_slice %[[ROWS]][%[[N]], 0] [1, 8] [1, 1]
// CHECK: %[[U:.*]] = linalg.generic {{.*}} ins(%[[S]] : tensor<1x8xf32>) outs(%[[T]] : tensor<1x8xf32>)
// CHECK: %[[I:.*]] = tensor.insert_slice %[[U]] into %[[ACC]][%[[ROW]], 0] [1, 8] [1, 1]
// CHECK: scf.yield %[[I]]
// CHECK: return %[[R]]
func.func @embedding_grad(%g: tensor<2x?x8xf32>, %ids: tensor<2x?xi32>, %t: tensor<16x8xf32>) -> tensor<16x8xf32> {
  %r = nn.embedding_grad %g, %ids, %t : tensor<2x?x8xf32>, tensor<2x?xi32>, tensor<16x8xf32>
  return %r : tensor<16x8xf32>
}

// -----

// attention_grad recomputes the probabilities as the forward does (scores,
// masked max, weights, sum), then dP = dO V^T, the row dot, dS, dQ; dK and
// dV contract over (group, query) after splitting the 4 query heads into
// (2 kv heads, group of 2).

// CHECK-DAG: #[[$DS:.*]] = affine_map<(d0, d1, d2, d3, d4, d5) -> (d0, d2, d4, d5, d1)>
// CHECK-DAG: #[[$QROWS:.*]] = affine_map<(d0, d1, d2, d3, d4, d5) -> (d0, d5, d2, d4, d3)>
// CHECK-DAG: #[[$KV:.*]] = affine_map<(d0, d1, d2, d3, d4, d5) -> (d0, d1, d2, d3)>
// CHECK-LABEL: func.func @attention_grad
// CHECK: iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]
// CHECK: iterator_types = ["parallel", "parallel", "parallel", "reduction"]
// CHECK: iterator_types = ["parallel", "parallel", "parallel", "parallel"]
// CHECK: iterator_types = ["parallel", "parallel", "parallel", "reduction"]
// CHECK: %[[P:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "parallel", "parallel"]
// CHECK: %[[DP:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]
// CHECK-SAME: ins(%{{.*}}, %{{.*}} : tensor<1x?x4x8xf32>, tensor<1x?x2x8xf32>)
// CHECK: %[[DOT:.*]] = linalg.generic {{.*}} ins(%[[P]], %[[DP]] :
// CHECK: %[[DS:.*]] = linalg.generic {{.*}} ins(%[[P]], %[[DP]], %[[DOT]] :
// CHECK: %[[DQ:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]
// CHECK-SAME: ins(%[[DS]], %{{.*}} : tensor<1x4x?x?xf32>, tensor<1x?x2x8xf32>) outs(%{{.*}} : tensor<1x?x4x8xf32>)
// CHECK: %[[SPLIT:.*]] = tensor.expand_shape %[[DS]] {{\[\[}}0], [1, 2], [3], [4]] output_shape [1, 2, 2, %{{.*}}, %{{.*}}] : tensor<1x4x?x?xf32> into tensor<1x2x2x?x?xf32>
// CHECK: %[[Q:.*]] = tensor.expand_shape %{{.*}} {{\[\[}}0], [1], [2, 3], [4]] output_shape [1, %{{.*}}, 2, 2, 8] : tensor<1x?x4x8xf32> into tensor<1x?x2x2x8xf32>
// CHECK: %[[DK:.*]] = linalg.generic {indexing_maps = [#[[$DS]], #[[$QROWS]], #[[$KV]]], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction", "reduction"]}
// CHECK-SAME: ins(%[[SPLIT]], %[[Q]] :
// CHECK: %[[DV:.*]] = linalg.generic {indexing_maps = [#[[$DS]], #[[$QROWS]], #[[$KV]]]
// CHECK: return %[[DQ]], %[[DK]], %[[DV]]
func.func @attention_grad(%g: tensor<1x?x4x8xf32>, %q: tensor<1x?x4x8xf32>, %k: tensor<1x?x2x8xf32>, %v: tensor<1x?x2x8xf32>) -> (tensor<1x?x4x8xf32>, tensor<1x?x2x8xf32>, tensor<1x?x2x8xf32>) {
  %dq, %dk, %dv = nn.attention_grad %g, %q, %k, %v : tensor<1x?x4x8xf32>, tensor<1x?x4x8xf32>, tensor<1x?x2x8xf32>, tensor<1x?x2x8xf32>
  return %dq, %dk, %dv : tensor<1x?x4x8xf32>, tensor<1x?x2x8xf32>, tensor<1x?x2x8xf32>
}

// -----

// The head mapping is built into indexing maps, so head counts must be
// static.
func.func @attention_grad_dynamic_heads(%g: tensor<1x?x?x8xf32>, %q: tensor<1x?x?x8xf32>, %k: tensor<1x?x2x8xf32>) {
  // expected-error @+1 {{'nn.attention_grad' op needs static head counts to be lowered (the query-to-key/value head mapping is built into the indexing maps), got 'query' of type 'tensor<1x?x?x8xf32>' and 'key' of type 'tensor<1x?x2x8xf32>'}}
  %dq, %dk, %dv = nn.attention_grad %g, %q, %k, %k : tensor<1x?x?x8xf32>, tensor<1x?x?x8xf32>, tensor<1x?x2x8xf32>, tensor<1x?x2x8xf32>
  return
}

// -----

// cross_entropy_grad: max and sum of exponentials per position, the mask's
// sum as the count, then one elementwise pass with the clamped one-hot.

// CHECK-LABEL: func.func @cross_entropy_grad
// CHECK: %[[MAX:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "reduction"]
// CHECK: arith.maximumf
// CHECK: %[[SUM:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "reduction"]
// CHECK: math.exp
// CHECK: %[[COUNT:.*]] = linalg.generic {{.*}} iterator_types = ["reduction"]
// CHECK-SAME: outs(%{{.*}} : tensor<f32>)
// CHECK: %[[N:.*]] = tensor.extract %[[COUNT]][]
// CHECK: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK: %[[DENOM:.*]] = arith.maximumf %[[N]], %[[ONE]]
// CHECK: %[[G:.*]] = tensor.extract %{{.*}}[] : tensor<f32>
// CHECK: %[[W:.*]] = arith.divf %[[G]], %[[DENOM]]
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel"]
// CHECK-SAME: ins(%{{.*}}, %[[MAX]], %[[SUM]], %{{.*}}, %{{.*}} : tensor<?x16xf32>, tensor<?xf32>, tensor<?xf32>, tensor<?xi32>, tensor<?xf32>)
// CHECK: arith.cmpi eq
// CHECK: arith.mulf %[[W]],
func.func @cross_entropy_grad(%g: tensor<f32>, %l: tensor<?x16xf32>, %t: tensor<?xi32>, %m: tensor<?xf32>) -> tensor<?x16xf32> {
  %r = nn.cross_entropy_grad %g, %l, %t mask %m : tensor<f32>, tensor<?x16xf32>, tensor<?xi32>, tensor<?xf32>
  return %r : tensor<?x16xf32>
}

// -----

// The inverse rotation negates the sine.

// CHECK-LABEL: func.func @rotary_inverse
// CHECK: %[[S:.*]] = tensor.extract %{{.*}}#1[
// CHECK: arith.negf %[[S]] : f32
func.func @rotary_inverse(%x: tensor<1x?x2x8xf32>) -> tensor<1x?x2x8xf32> {
  %r = nn.rotary %x {inverse} : tensor<1x?x2x8xf32>
  return %r : tensor<1x?x2x8xf32>
}

// -----

// reduce_mean divides the f32 sum by the element count in the copy that
// rounds; reduce_max starts from -inf and takes arith.maximumf (NaN
// propagates).

// CHECK-LABEL: func.func @reduce_mean_max
// CHECK: %[[SUM:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
// CHECK: arith.addf
// CHECK: %[[D:.*]] = tensor.dim
// CHECK: %[[N:.*]] = arith.muli %{{.*}}, %[[D]] : index
// CHECK: %[[N64:.*]] = arith.index_cast %[[N]] : index to i64
// CHECK: %[[COUNT:.*]] = arith.sitofp %[[N64]] : i64 to f32
// CHECK: linalg.generic {{.*}} ins(%[[SUM]] : tensor<3xf32>) outs(%{{.*}} : tensor<3xf16>)
// CHECK: arith.divf %{{.*}}, %[[COUNT]] : f32
// CHECK: arith.truncf
// CHECK: %[[NEGINF:.*]] = arith.constant 0xFF800000 : f32
// CHECK: linalg.fill ins(%[[NEGINF]] : f32)
// CHECK: arith.maximumf
func.func @reduce_mean_max(%x: tensor<3x?xf16>, %y: tensor<3x?xf32>)
    -> (tensor<3xf16>, tensor<1x?xf32>) {
  %0 = nn.reduce_mean %x [1] : tensor<3x?xf16>
  %1 = nn.reduce_max %y [0] {keep_dims} : tensor<3x?xf32>
  return %0, %1 : tensor<3xf16>, tensor<1x?xf32>
}
