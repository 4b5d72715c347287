// RUN: moe-opt %s --convert-nn-to-linalg --split-input-file --verify-diagnostics | FileCheck %s
// RUN: moe-opt %s --convert-nn-to-linalg --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=NO-NN

// No nn op survives the pass (the split that fails is not printed).
// NO-NN-NOT: {{[^a-z_]nn\.[a-z]}}

// Numpy broadcasting: the extent-1 dimension of %a reads index 0, the
// missing leading dimension of %b is not indexed; the dynamic extent comes
// from the operand that carries it.

// CHECK-DAG: #[[$A:.*]] = affine_map<(d0, d1, d2) -> (d0, 0, d2)>
// CHECK-DAG: #[[$B:.*]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-DAG: #[[$ID3:.*]] = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @add_broadcast
// CHECK-SAME: (%[[A:.*]]: tensor<?x1x7xf32>, %[[B:.*]]: tensor<5x7xf32>)
// CHECK: %[[D0:.*]] = tensor.dim %[[A]], %{{.*}} : tensor<?x1x7xf32>
// CHECK: %[[INIT:.*]] = tensor.empty(%[[D0]]) : tensor<?x5x7xf32>
// CHECK: %[[R:.*]] = linalg.generic {indexing_maps = [#[[$A]], #[[$B]], #[[$ID3]]], iterator_types = ["parallel", "parallel", "parallel"]}
// CHECK-SAME: ins(%[[A]], %[[B]] : tensor<?x1x7xf32>, tensor<5x7xf32>) outs(%[[INIT]] : tensor<?x5x7xf32>)
// CHECK: ^bb0(%[[X:.*]]: f32, %[[Y:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: %[[S:.*]] = arith.addf %[[X]], %[[Y]] : f32
// CHECK-NEXT: linalg.yield %[[S]] : f32
// CHECK: return %[[R]]
func.func @add_broadcast(%a: tensor<?x1x7xf32>, %b: tensor<5x7xf32>) -> tensor<?x5x7xf32> {
  %r = nn.add %a, %b : tensor<?x1x7xf32>, tensor<5x7xf32>
  return %r : tensor<?x5x7xf32>
}

// -----

// A 0-d operand broadcasts to every element; pow is math.powf.

// CHECK-DAG: #[[$SCALAR:.*]] = affine_map<(d0, d1) -> ()>
// CHECK-LABEL: func.func @pow_scalar
// CHECK: linalg.generic {indexing_maps = [#{{.*}}, #[[$SCALAR]], #{{.*}}]
// CHECK: math.powf
func.func @pow_scalar(%a: tensor<4x?xf32>, %b: tensor<f32>) -> tensor<4x?xf32> {
  %r = nn.pow %a, %b : tensor<4x?xf32>, tensor<f32>
  return %r : tensor<4x?xf32>
}

// -----

// bf16 computes in f32: extended in the body, rounded when yielded.
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

// CHECK-LABEL: func.func @gelu_tanh
// CHECK: linalg.generic
// CHECK-SAME: ins(%{{.*}} : tensor<?x64xbf16>) outs(%{{.*}} : tensor<?x64xbf16>)
// CHECK: ^bb0(%[[IN:.*]]: bf16, %{{.*}}: bf16):
// CHECK-NEXT: %[[X:.*]] = arith.extf %[[IN]] : bf16 to f32
// CHECK-NEXT: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-NEXT: %[[HALF:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-NEXT: %[[HX:.*]] = arith.mulf %[[HALF]], %[[X]] : f32
// CHECK-NEXT: %[[C:.*]] = arith.constant 4.471500e-02 : f32
// CHECK-NEXT: %[[CX:.*]] = arith.mulf %[[C]], %[[X]] : f32
// CHECK-NEXT: %[[CX2:.*]] = arith.mulf %[[CX]], %[[X]] : f32
// CHECK-NEXT: %[[CX3:.*]] = arith.mulf %[[CX2]], %[[X]] : f32
// CHECK-NEXT: %[[SUM:.*]] = arith.addf %[[X]], %[[CX3]] : f32
// CHECK-NEXT: %[[K:.*]] = arith.constant 0.797884583 : f32
// CHECK-NEXT: %[[INNER:.*]] = arith.mulf %[[K]], %[[SUM]] : f32
// CHECK: %[[T:.*]] = math.tanh %[[INNER]] : f32
// CHECK: %[[OPT:.*]] = arith.addf %[[ONE]], %[[T]] : f32
// CHECK: %[[Y:.*]] = arith.mulf %[[HX]], %[[OPT]] : f32
// CHECK: %[[R:.*]] = arith.truncf %[[Y]] : f32 to bf16
// CHECK: linalg.yield %[[R]] : bf16
func.func @gelu_tanh(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %r = nn.gelu %x approximate = tanh : tensor<?x64xbf16>
  return %r : tensor<?x64xbf16>
}

// -----

// CHECK-LABEL: func.func @activations
// Exact GELU: 0.5 x (1 + erf(x / sqrt(2))), where math.erf (which has no
// LLVM lowering) is expanded into upstream's polynomial approximation.
// CHECK: linalg.generic
// CHECK: ^bb0(%[[X:.*]]: f32, %{{.*}}: f32):
// CHECK: %[[HALF:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-NEXT: %[[HX:.*]] = arith.mulf %[[HALF]], %[[X]] : f32
// CHECK: %[[RSQRT2:.*]] = arith.constant 0.707106769 : f32
// CHECK-NEXT: %[[S:.*]] = arith.mulf %[[X]], %[[RSQRT2]] : f32
// CHECK-NOT: math.erf
// CHECK: arith.cmpf olt, %[[S]]
// CHECK: math.fma
// CHECK: %[[NEG:.*]] = arith.negf
// CHECK-NEXT: %[[ERF:.*]] = arith.select %{{.*}}, %[[NEG]], %{{.*}} : f32
// CHECK-NEXT: %[[OPE:.*]] = arith.addf %{{.*}}, %[[ERF]] : f32
// CHECK-NEXT: %[[GELU:.*]] = arith.mulf %[[HX]], %[[OPE]] : f32
// CHECK-NEXT: linalg.yield %[[GELU]] : f32
// SiLU: x * 1 / (1 + exp(-x)).
// CHECK: linalg.generic
// CHECK: ^bb0(%[[X:.*]]: f32, %{{.*}}: f32):
// CHECK: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-NEXT: %[[NEG:.*]] = arith.negf %[[X]] : f32
// CHECK-NEXT: %[[EXP:.*]] = math.exp %[[NEG]] : f32
// CHECK-NEXT: %[[DEN:.*]] = arith.addf %[[ONE]], %[[EXP]] : f32
// CHECK-NEXT: %[[SIG:.*]] = arith.divf %[[ONE]], %[[DEN]] : f32
// CHECK-NEXT: %[[SILU:.*]] = arith.mulf %[[X]], %[[SIG]] : f32
// CHECK-NEXT: linalg.yield %[[SILU]]
// ReLU: max(x, 0).
// CHECK: linalg.generic
// CHECK: arith.maximumf %{{.*}}, %{{.*}} : f32
// CHECK: linalg.generic
// CHECK: math.rsqrt
func.func @activations(%x: tensor<8xf32>) -> (tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>) {
  %a = nn.gelu %x : tensor<8xf32>
  %b = nn.silu %x : tensor<8xf32>
  %c = nn.relu %x : tensor<8xf32>
  %d = nn.rsqrt %x : tensor<8xf32>
  return %a, %b, %c, %d : tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>
}

// -----

// Leading dimensions collapse into the rows of one linalg.matmul on a zero
// accumulator; the bias is added per column; the rows expand back.

// CHECK-DAG: #[[$COLUMN:.*]] = affine_map<(d0, d1) -> (d1)>
// CHECK-LABEL: func.func @linear_bias
// CHECK-SAME: (%[[X:.*]]: tensor<2x?x64xf32>, %[[W:.*]]: tensor<64x256xf32>, %[[B:.*]]: tensor<256xf32>)
// CHECK: %[[ROWS:.*]] = tensor.collapse_shape %[[X]] {{\[}}[0, 1], [2]] : tensor<2x?x64xf32> into tensor<?x64xf32>
// CHECK: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: %[[ACC:.*]] = linalg.fill ins(%[[ZERO]] : f32) outs(%{{.*}} : tensor<?x256xf32>)
// CHECK: %[[MM:.*]] = linalg.matmul ins(%[[ROWS]], %[[W]] : tensor<?x64xf32>, tensor<64x256xf32>) outs(%[[ACC]] : tensor<?x256xf32>)
// CHECK: %[[BIASED:.*]] = linalg.generic {indexing_maps = [#{{.*}}, #[[$COLUMN]], #{{.*}}]
// CHECK-SAME: ins(%[[MM]], %[[B]] : tensor<?x256xf32>, tensor<256xf32>)
// CHECK: arith.addf
// CHECK: %[[SEQ:.*]] = tensor.dim %[[X]], %{{.*}} : tensor<2x?x64xf32>
// CHECK: %[[Y:.*]] = tensor.expand_shape %[[BIASED]] {{\[}}[0, 1], [2]] output_shape [2, %[[SEQ]], 256] : tensor<?x256xf32> into tensor<2x?x256xf32>
// CHECK: return %[[Y]]
func.func @linear_bias(%x: tensor<2x?x64xf32>, %w: tensor<64x256xf32>, %b: tensor<256xf32>) -> tensor<2x?x256xf32> {
  %y = nn.linear %x, %w bias %b : tensor<2x?x64xf32>, tensor<64x256xf32>, tensor<256xf32>
  return %y : tensor<2x?x256xf32>
}

// -----

// A rank-2 transposed rhs is transposed once and feeds linalg.matmul.

// CHECK-LABEL: func.func @matmul_shared_transposed_rhs
// CHECK-SAME: (%[[A:.*]]: tensor<3x?x16xf32>, %[[B:.*]]: tensor<32x16xf32>)
// CHECK: %[[BT:.*]] = linalg.transpose ins(%[[B]] : tensor<32x16xf32>) outs(%{{.*}} : tensor<16x32xf32>) permutation = [1, 0]
// CHECK: %[[ROWS:.*]] = tensor.collapse_shape %[[A]] {{\[}}[0, 1], [2]]
// CHECK: linalg.matmul ins(%[[ROWS]], %[[BT]] : tensor<?x16xf32>, tensor<16x32xf32>)
// CHECK: tensor.expand_shape
func.func @matmul_shared_transposed_rhs(%a: tensor<3x?x16xf32>, %b: tensor<32x16xf32>) -> tensor<3x?x32xf32> {
  %r = nn.matmul %a, %b {transpose_rhs} : tensor<3x?x16xf32>, tensor<32x16xf32>
  return %r : tensor<3x?x32xf32>
}

// -----

// Batch broadcast (rhs has no leading batch dimension) and transpose_rhs
// are both expressed by the maps of a contraction over (b0, b1, m, n, k).

// CHECK-DAG: #[[$LHS:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d4)>
// CHECK-DAG: #[[$RHS:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d1, d3, d4)>
// CHECK-DAG: #[[$OUT:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d3)>
// CHECK-LABEL: func.func @matmul_transpose_rhs
// CHECK-SAME: (%[[A:.*]]: tensor<2x4x?x16xf32>, %[[B:.*]]: tensor<4x32x16xf32>)
// CHECK: %[[M:.*]] = tensor.dim %[[A]], %{{.*}} : tensor<2x4x?x16xf32>
// CHECK: %[[EMPTY:.*]] = tensor.empty(%[[M]]) : tensor<2x4x?x32xf32>
// CHECK: %[[ACC:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%[[EMPTY]] : tensor<2x4x?x32xf32>)
// CHECK: %[[R:.*]] = linalg.generic {indexing_maps = [#[[$LHS]], #[[$RHS]], #[[$OUT]]], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]}
// CHECK-SAME: ins(%[[A]], %[[B]] : tensor<2x4x?x16xf32>, tensor<4x32x16xf32>) outs(%[[ACC]] : tensor<2x4x?x32xf32>)
// CHECK: ^bb0(%[[L:.*]]: f32, %[[RR:.*]]: f32, %[[O:.*]]: f32):
// CHECK-NEXT: %[[P:.*]] = arith.mulf %[[L]], %[[RR]] : f32
// CHECK-NEXT: %[[S:.*]] = arith.addf %[[O]], %[[P]] : f32
// CHECK-NEXT: linalg.yield %[[S]] : f32
// CHECK: return %[[R]]
func.func @matmul_transpose_rhs(%a: tensor<2x4x?x16xf32>, %b: tensor<4x32x16xf32>) -> tensor<2x4x?x32xf32> {
  %r = nn.matmul %a, %b {transpose_rhs} : tensor<2x4x?x16xf32>, tensor<4x32x16xf32>
  return %r : tensor<2x4x?x32xf32>
}

// -----

// Same batch on both sides: linalg.batch_matmul, accumulating f16 products
// in f32 and rounding once.

// CHECK-LABEL: func.func @matmul_batch_f16
// CHECK: %[[ACC:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<4x?x8xf32>)
// CHECK: %[[MM:.*]] = linalg.batch_matmul ins(%{{.*}}, %{{.*}} : tensor<4x?x16xf16>, tensor<4x16x8xf16>) outs(%[[ACC]] : tensor<4x?x8xf32>)
// CHECK: linalg.generic
// CHECK-SAME: ins(%[[MM]] : tensor<4x?x8xf32>) outs(%{{.*}} : tensor<4x?x8xf16>)
// CHECK: arith.truncf %{{.*}} : f32 to f16
func.func @matmul_batch_f16(%a: tensor<4x?x16xf16>, %b: tensor<4x16x8xf16>) -> tensor<4x?x8xf16> {
  %r = nn.matmul %a, %b : tensor<4x?x16xf16>, tensor<4x16x8xf16>
  return %r : tensor<4x?x8xf16>
}

// -----

// sum(x^2) over the features, then x / sqrt(sum / D + epsilon) * weight.

// CHECK-DAG: #[[$ID:.*]] = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
// CHECK-DAG: #[[$ROW:.*]] = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-DAG: #[[$FEATURE:.*]] = affine_map<(d0, d1, d2) -> (d2)>
// CHECK-LABEL: func.func @rms_norm
// CHECK-SAME: (%[[X:.*]]: tensor<2x?x64xf32>, %[[G:.*]]: tensor<64xf32>)
// CHECK: %[[ZEROS:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<2x?xf32>)
// CHECK: %[[SQ:.*]] = linalg.generic {indexing_maps = [#[[$ID]], #[[$ROW]]], iterator_types = ["parallel", "parallel", "reduction"]}
// CHECK-SAME: ins(%[[X]] : tensor<2x?x64xf32>) outs(%[[ZEROS]] : tensor<2x?xf32>)
// CHECK: ^bb0(%[[V:.*]]: f32, %[[ACC:.*]]: f32):
// CHECK-NEXT: %[[V2:.*]] = arith.mulf %[[V]], %[[V]] : f32
// CHECK-NEXT: %[[NEXT:.*]] = arith.addf %[[ACC]], %[[V2]] : f32
// CHECK: %[[D:.*]] = arith.sitofp %{{.*}} : i64 to f32
// CHECK: %[[EPS:.*]] = arith.constant 9.99999997E-7 : f32
// CHECK: linalg.generic {indexing_maps = [#[[$ID]], #[[$ROW]], #[[$FEATURE]], #[[$ID]]], iterator_types = ["parallel", "parallel", "parallel"]}
// CHECK-SAME: ins(%[[X]], %[[SQ]], %[[G]] : tensor<2x?x64xf32>, tensor<2x?xf32>, tensor<64xf32>)
// CHECK: ^bb0(%[[XV:.*]]: f32, %[[SV:.*]]: f32, %[[GV:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: %[[MEAN:.*]] = arith.divf %[[SV]], %[[D]] : f32
// CHECK-NEXT: %[[VAR:.*]] = arith.addf %[[MEAN]], %[[EPS]] : f32
// CHECK-NEXT: %[[RMS:.*]] = math.sqrt %[[VAR]] : f32
// CHECK-NEXT: %[[N:.*]] = arith.divf %[[XV]], %[[RMS]] : f32
// CHECK-NEXT: %[[Y:.*]] = arith.mulf %[[N]], %[[GV]] : f32
// CHECK-NEXT: linalg.yield %[[Y]] : f32
func.func @rms_norm(%x: tensor<2x?x64xf32>, %g: tensor<64xf32>) -> tensor<2x?x64xf32> {
  %y = nn.rms_norm %x, %g {epsilon = 1.0e-06 : f32} : tensor<2x?x64xf32>, tensor<64xf32>
  return %y : tensor<2x?x64xf32>
}

// -----

// Mean, then the biased variance as the mean of squared deviations.

// CHECK-LABEL: func.func @layer_norm
// CHECK: %[[SUM:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
// CHECK: %[[SQ:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
// CHECK-SAME: ins(%{{.*}}, %[[SUM]] : tensor<?x64xf32>, tensor<?xf32>)
// CHECK: arith.divf
// CHECK-NEXT: %[[DEV:.*]] = arith.subf
// CHECK-NEXT: arith.mulf %[[DEV]], %[[DEV]]
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel"]
// CHECK-SAME: ins(%{{.*}}, %[[SUM]], %[[SQ]], %{{.*}}, %{{.*}} : tensor<?x64xf32>, tensor<?xf32>, tensor<?xf32>, tensor<64xf32>, tensor<64xf32>)
// CHECK: math.sqrt
// CHECK: arith.divf
// CHECK: arith.mulf
// CHECK: arith.addf
func.func @layer_norm(%x: tensor<?x64xf32>, %g: tensor<64xf32>, %b: tensor<64xf32>) -> tensor<?x64xf32> {
  %y = nn.layer_norm %x, %g bias %b : tensor<?x64xf32>, tensor<64xf32>, tensor<64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Stable softmax: max from -inf, sum of exp(x - max), exp(x - max) / sum.

// CHECK-DAG: #[[$ID:.*]] = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-DAG: #[[$ROW:.*]] = affine_map<(d0, d1) -> (d0)>
// CHECK-LABEL: func.func @softmax
// CHECK-SAME: (%[[X:.*]]: tensor<?x8xf32>)
// CHECK: %[[NEGINF:.*]] = arith.constant 0xFF800000 : f32
// CHECK: %[[INIT:.*]] = linalg.fill ins(%[[NEGINF]] : f32) outs(%{{.*}} : tensor<?xf32>)
// CHECK: %[[MAX:.*]] = linalg.generic {indexing_maps = [#[[$ID]], #[[$ROW]]], iterator_types = ["parallel", "reduction"]} ins(%[[X]] : tensor<?x8xf32>) outs(%[[INIT]] : tensor<?xf32>)
// CHECK: arith.maximumf
// CHECK: %[[SUM:.*]] = linalg.generic {indexing_maps = [#[[$ID]], #[[$ROW]], #[[$ROW]]], iterator_types = ["parallel", "reduction"]} ins(%[[X]], %[[MAX]] : tensor<?x8xf32>, tensor<?xf32>)
// CHECK: ^bb0(%[[V:.*]]: f32, %[[M:.*]]: f32, %[[ACC:.*]]: f32):
// CHECK-NEXT: %[[D:.*]] = arith.subf %[[V]], %[[M]] : f32
// CHECK-NEXT: %[[E:.*]] = math.exp %[[D]] : f32
// CHECK-NEXT: arith.addf %[[ACC]], %[[E]] : f32
// CHECK: %[[P:.*]] = linalg.generic {indexing_maps = [#[[$ID]], #[[$ROW]], #[[$ROW]], #[[$ID]]], iterator_types = ["parallel", "parallel"]} ins(%[[X]], %[[MAX]], %[[SUM]] : tensor<?x8xf32>, tensor<?xf32>, tensor<?xf32>)
// CHECK: ^bb0(%[[V:.*]]: f32, %[[M:.*]]: f32, %[[S:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: %[[D:.*]] = arith.subf %[[V]], %[[M]] : f32
// CHECK-NEXT: %[[E:.*]] = math.exp %[[D]] : f32
// CHECK-NEXT: %[[Q:.*]] = arith.divf %[[E]], %[[S]] : f32
// CHECK-NEXT: linalg.yield %[[Q]] : f32
// CHECK: return %[[P]]
func.func @softmax(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %p = nn.softmax %x : tensor<?x8xf32>
  return %p : tensor<?x8xf32>
}

// -----

// A generic over ids x features extracts the (clamped) row of each id.

// CHECK-DAG: #[[$IDS:.*]] = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-LABEL: func.func @embedding
// CHECK-SAME: (%[[T:.*]]: tensor<256x64xf32>, %[[IDS:.*]]: tensor<2x?xi32>)
// CHECK: %[[VOCAB:.*]] = arith.constant 256 : index
// CHECK: %[[E:.*]] = tensor.empty(%{{.*}}) : tensor<2x?x64xf32>
// CHECK: linalg.generic {indexing_maps = [#[[$IDS]], #{{.*}}], iterator_types = ["parallel", "parallel", "parallel"]} ins(%[[IDS]] : tensor<2x?xi32>) outs(%[[E]] : tensor<2x?x64xf32>)
// CHECK: ^bb0(%[[ID:.*]]: i32, %{{.*}}: f32):
// CHECK-NEXT: %[[I:.*]] = arith.index_cast %[[ID]] : i32 to index
// CHECK: %[[LAST:.*]] = arith.subi %[[VOCAB]], %{{.*}} : index
// CHECK-NEXT: %[[LO:.*]] = arith.minsi %[[I]], %[[LAST]] : index
// CHECK: %[[ROW:.*]] = arith.maxsi %[[LO]], %{{.*}} : index
// CHECK-NEXT: %[[COL:.*]] = linalg.index 2 : index
// CHECK-NEXT: %[[V:.*]] = tensor.extract %[[T]][%[[ROW]], %[[COL]]] : tensor<256x64xf32>
// CHECK-NEXT: linalg.yield %[[V]] : f32
func.func @embedding(%t: tensor<256x64xf32>, %ids: tensor<2x?xi32>) -> tensor<2x?x64xf32> {
  %h = nn.embedding %t, %ids : tensor<256x64xf32>, tensor<2x?xi32>
  return %h : tensor<2x?x64xf32>
}

// -----

// cos/sin tables over (seq, rotary_dim/2) from the angle
// position * theta^(-2i/rd) in f64, then a generic that pairs feature i
// with i + rd/2 (rotate half) and reads its partner with tensor.extract.

// CHECK-LABEL: func.func @rotary
// CHECK-SAME: (%[[X:.*]]: tensor<1x?x2x16xf32>, %[[POS:.*]]: tensor<?xi32>)
// CHECK: %[[RD:.*]] = arith.constant 16 : index
// CHECK: %[[HALF:.*]] = arith.constant 8 : index
// CHECK: %[[THETA:.*]] = arith.constant 5.000000e+05 : f64
// CHECK: %[[TABLES:.*]]:2 = linalg.generic {{.*}} ins(%[[POS]] : tensor<?xi32>) outs(%{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<?x8xf32>)
// CHECK: %[[P:.*]] = arith.sitofp %{{.*}} : i32 to f64
// CHECK: %[[I:.*]] = linalg.index 1 : index
// CHECK: %[[EXP:.*]] = arith.divf
// CHECK: %[[FREQ:.*]] = math.powf %[[THETA]], %[[EXP]] : f64
// CHECK: %[[ANGLE:.*]] = arith.mulf %[[P]], %[[FREQ]] : f64
// CHECK: math.cos %[[ANGLE]] : f64
// CHECK: math.sin %[[ANGLE]] : f64
// CHECK: arith.truncf %{{.*}} : f64 to f32
// CHECK: linalg.generic {{.*}} ins(%[[X]] : tensor<1x?x2x16xf32>)
// CHECK: ^bb0(%[[OWN:.*]]: f32, %{{.*}}: f32):
// CHECK: %[[F:.*]] = linalg.index 3 : index
// CHECK: %[[FIRST:.*]] = arith.cmpi ult, %[[F]], %[[HALF]] : index
// CHECK: %[[PAIR:.*]] = arith.select %[[FIRST]], %[[F]], %{{.*}} : index
// CHECK: %[[PARTNER:.*]] = arith.select %[[FIRST]], %{{.*}}, %{{.*}} : index
// CHECK: %[[PAIRC:.*]] = arith.minui %[[PAIR]], %{{.*}} : index
// CHECK: %[[C:.*]] = tensor.extract %[[TABLES]]#0[%{{.*}}, %[[PAIRC]]] : tensor<?x8xf32>
// CHECK: %[[S:.*]] = tensor.extract %[[TABLES]]#1[%{{.*}}, %[[PAIRC]]] : tensor<?x8xf32>
// CHECK: %[[OTHER:.*]] = tensor.extract %[[X]][%{{.*}}, %{{.*}}, %{{.*}}, %[[PARTNER]]] : tensor<1x?x2x16xf32>
// CHECK: %[[AC:.*]] = arith.mulf %[[OWN]], %[[C]] : f32
// CHECK: %[[BS:.*]] = arith.mulf %[[OTHER]], %[[S]] : f32
// CHECK: %[[SECOND:.*]] = arith.addf %[[BS]], %[[AC]] : f32
// CHECK: %[[FIRSTV:.*]] = arith.subf %[[AC]], %[[BS]] : f32
// CHECK: %[[ROT:.*]] = arith.select %[[FIRST]], %[[FIRSTV]], %[[SECOND]] : f32
// CHECK: %[[IN:.*]] = arith.cmpi ult, %[[F]], %[[RD]] : index
// CHECK: %[[Y:.*]] = arith.select %[[IN]], %[[ROT]], %[[OWN]] : f32
// CHECK: linalg.yield %[[Y]] : f32
func.func @rotary(%x: tensor<1x?x2x16xf32>, %pos: tensor<?xi32>) -> tensor<1x?x2x16xf32> {
  %y = nn.rotary %x positions %pos {theta = 500000.0 : f32} : tensor<1x?x2x16xf32>, tensor<?xi32>
  return %y : tensor<1x?x2x16xf32>
}

// -----

// Interleaved pairs (2i, 2i+1); features past rotary_dim pass through.

// CHECK-LABEL: func.func @rotary_interleaved
// CHECK: %[[RD:.*]] = arith.constant 8 : index
// CHECK: linalg.generic
// CHECK: %[[F:.*]] = linalg.index 3 : index
// CHECK: %[[ODD:.*]] = arith.andi %[[F]], %{{.*}} : index
// CHECK: %[[FIRST:.*]] = arith.cmpi eq, %[[ODD]], %{{.*}} : index
// CHECK: %[[PAIR:.*]] = arith.shrui %[[F]], %{{.*}} : index
// CHECK: arith.cmpi ult, %[[F]], %[[RD]] : index
func.func @rotary_interleaved(%x: tensor<2x?x4x12xf32>) -> tensor<2x?x4x12xf32> {
  %y = nn.rotary %x {rotary_dim = 8 : i64, interleaved} : tensor<2x?x4x12xf32>
  return %y : tensor<2x?x4x12xf32>
}

// -----

// GQA with 8 query heads on 2 key/value heads: key/value head h floordiv 4.
// scores[b, h, i, j] = q . k; masked max of the scaled scores (query i sees
// keys j <= i + seq_kv - seq_q); weights exp(s * scale - max) (0 where
// masked); their sum; out = weights v / sum (0 for rows that see no key).

// CHECK-DAG: #[[$Q:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d2, d1, d4)>
// CHECK-DAG: #[[$K:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d3, d1 floordiv 4, d4)>
// CHECK-DAG: #[[$S:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2, d3)>
// CHECK-DAG: #[[$V:.*]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, d4, d2 floordiv 4, d3)>
// CHECK-DAG: #[[$BHS:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d2, d1)>
// CHECK-LABEL: func.func @attention_gqa
// CHECK-SAME: (%[[Q:.*]]: tensor<2x?x8x16xf32>, %[[K:.*]]: tensor<2x?x2x16xf32>, %[[V:.*]]: tensor<2x?x2x16xf32>)
// CHECK: %[[SQ:.*]] = tensor.dim %[[Q]], %{{.*}} : tensor<2x?x8x16xf32>
// CHECK: %[[SKV:.*]] = tensor.dim %[[K]], %{{.*}} : tensor<2x?x2x16xf32>
// CHECK: %[[SCORES:.*]] = linalg.generic {indexing_maps = [#[[$Q]], #[[$K]], #[[$S]]], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]} ins(%[[Q]], %[[K]] : tensor<2x?x8x16xf32>, tensor<2x?x2x16xf32>) outs(%{{.*}} : tensor<2x8x?x?xf32>)
// 1/sqrt(16):
// CHECK: %[[SCALE:.*]] = arith.constant 2.500000e-01 : f32
// CHECK: %[[OFFSET:.*]] = arith.subi %[[SKV]], %[[SQ]] : index
// CHECK: %[[MAX:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%[[SCORES]] : tensor<2x8x?x?xf32>)
// CHECK: %[[SS:.*]] = arith.mulf %{{.*}}, %[[SCALE]] : f32
// CHECK: %[[I:.*]] = linalg.index 2 : index
// CHECK: %[[LIMIT:.*]] = arith.addi %[[I]], %[[OFFSET]] : index
// CHECK: %[[J:.*]] = linalg.index 3 : index
// CHECK: %[[SEEN:.*]] = arith.cmpi sle, %[[J]], %[[LIMIT]] : index
// CHECK: %[[MS:.*]] = arith.select %[[SEEN]], %[[SS]], %{{.*}} : f32
// CHECK: arith.maximumf %{{.*}}, %[[MS]] : f32
// CHECK: %[[W:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%[[SCORES]], %[[MAX]] : tensor<2x8x?x?xf32>, tensor<2x8x?xf32>)
// CHECK: math.exp
// CHECK: arith.cmpi sle
// CHECK: %[[SUM:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%[[W]] : tensor<2x8x?x?xf32>)
// CHECK: %[[PV:.*]] = linalg.generic {indexing_maps = [#[[$Q]], #[[$V]], #[[$S]]], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]} ins(%[[W]], %[[V]] : tensor<2x8x?x?xf32>, tensor<2x?x2x16xf32>) outs(%{{.*}} : tensor<2x?x8x16xf32>)
// CHECK: %[[OUT:.*]] = linalg.generic {indexing_maps = [#{{.*}}, #[[$BHS]], #{{.*}}], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%[[PV]], %[[SUM]] : tensor<2x?x8x16xf32>, tensor<2x8x?xf32>)
// CHECK: %[[POS:.*]] = arith.cmpf ogt
// CHECK: %[[DIV:.*]] = arith.divf
// CHECK: arith.select %[[POS]], %[[DIV]]
// CHECK: return %[[OUT]]
func.func @attention_gqa(%q: tensor<2x?x8x16xf32>, %k: tensor<2x?x2x16xf32>, %v: tensor<2x?x2x16xf32>) -> tensor<2x?x8x16xf32> {
  %o = nn.attention %q, %k, %v : tensor<2x?x8x16xf32>, tensor<2x?x2x16xf32>, tensor<2x?x2x16xf32>
  return %o : tensor<2x?x8x16xf32>
}

// -----

// Without the causal mask nothing is selected away; an explicit scale is
// used as given.

// CHECK-LABEL: func.func @attention_full
// CHECK: arith.constant 1.250000e-01 : f32
// CHECK-NOT: arith.cmpi sle
// CHECK: return
func.func @attention_full(%q: tensor<1x4x2x8xf32>, %k: tensor<1x6x1x8xf32>, %v: tensor<1x6x1x8xf32>) -> tensor<1x4x2x8xf32> {
  %o = nn.attention %q, %k, %v {causal = false, scale = 0.125 : f32} : tensor<1x4x2x8xf32>, tensor<1x6x1x8xf32>, tensor<1x6x1x8xf32>
  return %o : tensor<1x4x2x8xf32>
}

// -----

// A collapse and an expand where one describes the reshape; otherwise
// through 1-D, with the dynamic extent computed from the element count.

// CHECK-LABEL: func.func @reshapes
// CHECK-SAME: (%[[X:.*]]: tensor<2x?x64xf32>, %[[Y:.*]]: tensor<?x64xf32>)
// CHECK: %[[A:.*]] = tensor.collapse_shape %[[X]] {{\[}}[0, 1], [2]] : tensor<2x?x64xf32> into tensor<?x64xf32>
// CHECK: %[[ROWS:.*]] = tensor.dim %[[Y]], %{{.*}} : tensor<?x64xf32>
// CHECK: %[[B:.*]] = tensor.expand_shape %[[Y]] {{\[}}[0], [1, 2]] output_shape [%[[ROWS]], 4, 16] : tensor<?x64xf32> into tensor<?x4x16xf32>
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %[[X]] {{\[}}[0, 1, 2]] : tensor<2x?x64xf32> into tensor<?xf32>
// CHECK: %[[SEQ:.*]] = tensor.dim %[[X]], %{{.*}} : tensor<2x?x64xf32>
// CHECK: %[[N1:.*]] = arith.muli %{{.*}}, %[[SEQ]] : index
// CHECK: %[[N:.*]] = arith.muli %[[N1]], %{{.*}} : index
// CHECK: %[[C128:.*]] = arith.constant 128 : index
// CHECK: %[[EXTENT:.*]] = arith.divui %[[N]], %[[C128]] : index
// CHECK: %[[C:.*]] = tensor.expand_shape %[[FLAT]] {{\[}}[0, 1, 2]] output_shape [4, %[[EXTENT]], 32] : tensor<?xf32> into tensor<4x?x32xf32>
// CHECK: return %[[A]], %[[B]], %[[C]]
func.func @reshapes(%x: tensor<2x?x64xf32>, %y: tensor<?x64xf32>) -> (tensor<?x64xf32>, tensor<?x4x16xf32>, tensor<4x?x32xf32>) {
  %a = nn.reshape %x : tensor<2x?x64xf32> -> tensor<?x64xf32>
  %b = nn.reshape %y : tensor<?x64xf32> -> tensor<?x4x16xf32>
  %c = nn.reshape %x : tensor<2x?x64xf32> -> tensor<4x?x32xf32>
  return %a, %b, %c : tensor<?x64xf32>, tensor<?x4x16xf32>, tensor<4x?x32xf32>
}

// -----

// A static input fixes the `?` of the result: reshape statically, then cast.

// CHECK-LABEL: func.func @reshape_static_input
// CHECK: %[[R:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
// CHECK: %[[C:.*]] = tensor.cast %[[R]] : tensor<6x8xf32> to tensor<?x8xf32>
// CHECK: return %[[C]]
func.func @reshape_static_input(%x: tensor<2x3x8xf32>) -> tensor<?x8xf32> {
  %r = nn.reshape %x : tensor<2x3x8xf32> -> tensor<?x8xf32>
  return %r : tensor<?x8xf32>
}

// -----

// CHECK-LABEL: func.func @transpose
// CHECK-SAME: (%[[X:.*]]: tensor<2x?x8x16xf32>)
// CHECK: %[[SEQ:.*]] = tensor.dim %[[X]], %{{.*}} : tensor<2x?x8x16xf32>
// CHECK: %[[INIT:.*]] = tensor.empty(%[[SEQ]]) : tensor<2x8x?x16xf32>
// CHECK: %[[T:.*]] = linalg.transpose ins(%[[X]] : tensor<2x?x8x16xf32>) outs(%[[INIT]] : tensor<2x8x?x16xf32>) permutation = [0, 2, 1, 3]
// CHECK: return %[[T]]
func.func @transpose(%x: tensor<2x?x8x16xf32>) -> tensor<2x8x?x16xf32> {
  %y = nn.transpose %x [0, 2, 1, 3] : tensor<2x?x8x16xf32>
  return %y : tensor<2x8x?x16xf32>
}

// -----

// logsumexp from the max and the sum of exp(x - max); the target logit via
// tensor.extract; both masked sums in one reduction to 0-d tensors; then
// sum(mask * loss) / max(sum(mask), 1).

// CHECK-DAG: #[[$POS:.*]] = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-DAG: #[[$ALL:.*]] = affine_map<(d0, d1) -> ()>
// CHECK-DAG: #[[$NONE:.*]] = affine_map<() -> ()>
// CHECK-LABEL: func.func @cross_entropy
// CHECK-SAME: (%[[L:.*]]: tensor<2x?x256xf32>, %[[T:.*]]: tensor<2x?xi32>, %[[M:.*]]: tensor<2x?xf32>)
// CHECK: %[[MAX:.*]] = linalg.generic {{.*}} ins(%[[L]] : tensor<2x?x256xf32>)
// CHECK: arith.maximumf
// CHECK: %[[SUM:.*]] = linalg.generic {{.*}} ins(%[[L]], %[[MAX]] : tensor<2x?x256xf32>, tensor<2x?xf32>)
// CHECK: math.exp
// CHECK: %[[VOCAB:.*]] = arith.constant 256 : index
// CHECK: %[[TOTALS:.*]]:2 = linalg.generic {indexing_maps = [#[[$POS]], #[[$POS]], #[[$POS]], #[[$POS]], #[[$ALL]], #[[$ALL]]], iterator_types = ["reduction", "reduction"]}
// CHECK-SAME: ins(%[[MAX]], %[[SUM]], %[[T]], %[[M]] : tensor<2x?xf32>, tensor<2x?xf32>, tensor<2x?xi32>, tensor<2x?xf32>) outs(%{{.*}}, %{{.*}} : tensor<f32>, tensor<f32>)
// CHECK: ^bb0(%[[MX:.*]]: f32, %[[SE:.*]]: f32, %[[TG:.*]]: i32, %[[MK:.*]]: f32, %[[NUM:.*]]: f32, %[[DEN:.*]]: f32):
// CHECK-NEXT: %[[LOG:.*]] = math.log %[[SE]] : f32
// CHECK-NEXT: %[[LSE:.*]] = arith.addf %[[MX]], %[[LOG]] : f32
// CHECK-NEXT: %[[I0:.*]] = linalg.index 0 : index
// CHECK-NEXT: %[[I1:.*]] = linalg.index 1 : index
// CHECK-NEXT: %[[TI:.*]] = arith.index_cast %[[TG]] : i32 to index
// CHECK: %[[CLAMPED:.*]] = arith.maxsi
// CHECK-NEXT: %[[PICK:.*]] = tensor.extract %[[L]][%[[I0]], %[[I1]], %[[CLAMPED]]] : tensor<2x?x256xf32>
// CHECK-NEXT: %[[LOSS:.*]] = arith.subf %[[LSE]], %[[PICK]] : f32
// CHECK-NEXT: %[[WL:.*]] = arith.mulf %[[MK]], %[[LOSS]] : f32
// CHECK-NEXT: %[[NUM2:.*]] = arith.addf %[[NUM]], %[[WL]] : f32
// CHECK-NEXT: %[[DEN2:.*]] = arith.addf %[[DEN]], %[[MK]] : f32
// CHECK-NEXT: linalg.yield %[[NUM2]], %[[DEN2]] : f32, f32
// CHECK: %[[LOSSV:.*]] = linalg.generic {indexing_maps = [#[[$NONE]], #[[$NONE]], #[[$NONE]]], iterator_types = []} ins(%[[TOTALS]]#0, %[[TOTALS]]#1 : tensor<f32>, tensor<f32>) outs(%{{.*}} : tensor<f32>)
// CHECK: ^bb0(%[[N:.*]]: f32, %[[D:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-NEXT: %[[CNT:.*]] = arith.maximumf %[[D]], %[[ONE]] : f32
// CHECK-NEXT: %[[MEAN:.*]] = arith.divf %[[N]], %[[CNT]] : f32
// CHECK-NEXT: linalg.yield %[[MEAN]] : f32
// CHECK: return %[[LOSSV]] : tensor<f32>
func.func @cross_entropy(%l: tensor<2x?x256xf32>, %t: tensor<2x?xi32>, %m: tensor<2x?xf32>) -> tensor<f32> {
  %loss = nn.cross_entropy %l, %t mask %m : tensor<2x?x256xf32>, tensor<2x?xi32>, tensor<2x?xf32>
  return %loss : tensor<f32>
}

// -----

// Every other op of the dialect, to check that none is left behind.

// CHECK-LABEL: func.func @remaining_ops
// CHECK: arith.subf
// CHECK: arith.mulf
// CHECK: arith.divf
// CHECK: arith.negf
// CHECK: math.exp
// CHECK: math.log
// CHECK: math.sqrt
// CHECK: arith.divf
// CHECK: math.tanh
// CHECK-NOT: math.erf
// CHECK: math.fma
// CHECK: math.exp
// CHECK: linalg.matmul
// CHECK: linalg.generic {{.*}}iterator_types = ["reduction", "parallel"]
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction"]
// CHECK: arith.extf %{{.*}} : f16 to f32
func.func @remaining_ops(%x: tensor<4x8xf32>, %w: tensor<8x8xf32>, %g: tensor<8xf32>,
                         %h: tensor<2x3x4x8xf16>) -> tensor<2x3x4x8xf16> {
  %0 = nn.sub %x, %x : tensor<4x8xf32>, tensor<4x8xf32>
  %1 = nn.mul %0, %x : tensor<4x8xf32>, tensor<4x8xf32>
  %2 = nn.div %1, %x : tensor<4x8xf32>, tensor<4x8xf32>
  %3 = nn.neg %2 : tensor<4x8xf32>
  %4 = nn.exp %3 : tensor<4x8xf32>
  %5 = nn.log %4 : tensor<4x8xf32>
  %6 = nn.sqrt %5 : tensor<4x8xf32>
  %7 = nn.reciprocal %6 : tensor<4x8xf32>
  %8 = nn.tanh %7 : tensor<4x8xf32>
  %9 = nn.erf %8 : tensor<4x8xf32>
  %10 = nn.sigmoid %9 : tensor<4x8xf32>
  %11 = nn.linear %10, %w : tensor<4x8xf32>, tensor<8x8xf32>
  %12 = nn.layer_norm %11, %g : tensor<4x8xf32>, tensor<8xf32>
  %13 = nn.softmax %12 {axis = 0 : i64} : tensor<4x8xf32>
  %14 = nn.attention %h, %h, %h : tensor<2x3x4x8xf16>, tensor<2x3x4x8xf16>, tensor<2x3x4x8xf16>
  return %14 : tensor<2x3x4x8xf16>
}

// -----

func.func @attention_dynamic_heads(%q: tensor<1x?x?x16xf32>, %k: tensor<1x?x2x16xf32>, %v: tensor<1x?x2x16xf32>) -> tensor<1x?x?x16xf32> {
  // expected-error @+1 {{'nn.attention' op needs static head counts to be lowered (the query-to-key/value head mapping is built into the indexing maps), got 'query' of type 'tensor<1x?x?x16xf32>' and 'key' of type 'tensor<1x?x2x16xf32>'}}
  %o = nn.attention %q, %k, %v : tensor<1x?x?x16xf32>, tensor<1x?x2x16xf32>, tensor<1x?x2x16xf32>
  return %o : tensor<1x?x?x16xf32>
}

// -----

// Integer division: a zero divisor gives 0 and INT_MIN / -1 wraps, so
// arith.divsi only sees divisors other than 0 and -1.

// CHECK-LABEL: func.func @div_integers
// CHECK: ^bb0(%[[L:.*]]: i32, %[[R:.*]]: i32, %{{.*}}: i32):
// CHECK: %[[ZERO:.*]] = arith.cmpi eq, %[[R]], %{{.*}} : i32
// CHECK: %[[MINUS:.*]] = arith.cmpi eq, %[[R]], %{{.*}} : i32
// CHECK: %[[SPECIAL:.*]] = arith.ori %[[ZERO]], %[[MINUS]] : i1
// CHECK: %[[SAFE:.*]] = arith.select %[[SPECIAL]], %{{.*}}, %[[R]] : i32
// CHECK: %[[Q:.*]] = arith.divsi %[[L]], %[[SAFE]] : i32
// CHECK: %[[NEG:.*]] = arith.subi %{{.*}}, %[[L]] : i32
// CHECK: %[[Q1:.*]] = arith.select %[[MINUS]], %[[NEG]], %[[Q]] : i32
// CHECK: %[[Q2:.*]] = arith.select %[[ZERO]], %{{.*}}, %[[Q1]] : i32
// CHECK: linalg.yield %[[Q2]]
// CHECK: arith.subi
func.func @div_integers(%a: tensor<?xi32>, %b: tensor<i32>) -> tensor<?xi32> {
  %q = nn.div %a, %b : tensor<?xi32>, tensor<i32>
  %r = nn.neg %q : tensor<?xi32>
  return %r : tensor<?xi32>
}

// -----

// Several dynamic extents: tensor.reshape to the given sizes (no
// collapse/expand describes it). One dynamic extent with a given size
// expands with it.

// CHECK-LABEL: func.func @reshape_dynamic_sizes
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[B:.*]]: index, %[[S:.*]]: index)
// CHECK: %[[SHAPE:.*]] = tensor.from_elements %[[B]], %[[S]], %{{.*}}, %{{.*}} : tensor<4xindex>
// CHECK: %[[R:.*]] = tensor.reshape %[[X]](%[[SHAPE]]) : (tensor<?x64xf32>, tensor<4xindex>) -> tensor<?x?x4x16xf32>
// CHECK: tensor.expand_shape %[[X]] {{\[\[}}0], [1, 2]] output_shape [%[[B]], 4, 16] : tensor<?x64xf32> into tensor<?x4x16xf32>
// CHECK: return %[[R]]
func.func @reshape_dynamic_sizes(%x: tensor<?x64xf32>, %b: index, %s: index)
    -> (tensor<?x?x4x16xf32>, tensor<?x4x16xf32>) {
  %r = nn.reshape %x [%b, %s] : tensor<?x64xf32> -> tensor<?x?x4x16xf32>
  %e = nn.reshape %x [%b] : tensor<?x64xf32> -> tensor<?x4x16xf32>
  return %r, %e : tensor<?x?x4x16xf32>, tensor<?x4x16xf32>
}

// -----

// concat copies each input (linalg.copy) into its slot at the running
// offset of one tensor.empty.

// CHECK-LABEL: func.func @concat
// CHECK-SAME: (%[[A:.*]]: tensor<2x?xi64>, %[[B:.*]]: tensor<2x3xi64>)
// CHECK: %[[D:.*]] = tensor.dim %[[A]], %{{.*}} : tensor<2x?xi64>
// CHECK: %[[TOTAL:.*]] = arith.addi %[[D]], %{{.*}} : index
// CHECK: %[[E:.*]] = tensor.empty(%[[TOTAL]]) : tensor<2x?xi64>
// CHECK: %[[DA:.*]] = tensor.dim %[[A]]
// CHECK: %[[SLOT0:.*]] = tensor.extract_slice %[[E]][0, 0] [2, %[[DA]]] [1, 1]
// CHECK: %[[C0:.*]] = linalg.copy ins(%[[A]] : tensor<2x?xi64>) outs(%[[SLOT0]] : tensor<2x?xi64>)
// CHECK: %[[I0:.*]] = tensor.insert_slice %[[C0]] into %[[E]][0, 0] [2, %[[DA]]] [1, 1]
// CHECK: %[[SLOT1:.*]] = tensor.extract_slice %[[I0]][0, %[[DA]]] [2, 3] [1, 1]
// CHECK: %[[C1:.*]] = linalg.copy ins(%[[B]] : tensor<2x3xi64>) outs(%[[SLOT1]] : tensor<2x3xi64>)
// CHECK: %[[I1:.*]] = tensor.insert_slice %[[C1]] into %[[I0]][0, %[[DA]]] [2, 3] [1, 1]
// CHECK: return %[[I1]]
func.func @concat(%a: tensor<2x?xi64>, %b: tensor<2x3xi64>) -> tensor<2x?xi64> {
  %r = nn.concat %a, %b axis = 1 : tensor<2x?xi64>, tensor<2x3xi64>
  return %r : tensor<2x?xi64>
}

// -----

// Positive steps: an extract_slice, copied into a tensor of its own; a
// dynamic extent is clamped with index arithmetic (start -3 counts from the
// end), a static one folds.

// CHECK-LABEL: func.func @slice_positive
// CHECK-SAME: (%[[X:.*]]: tensor<?x8xf32>)
// CHECK: %[[D:.*]] = tensor.dim %[[X]], %{{.*}} : tensor<?x8xf32>
// CHECK: %[[S0:.*]] = arith.addi %[[D]], %{{.*}} : index
// CHECK: %[[S1:.*]] = arith.maxsi %[[S0]], %{{.*}} : index
// CHECK: %[[S2:.*]] = arith.minsi %[[S1]], %[[D]] : index
// CHECK: %[[N0:.*]] = arith.subi %[[D]], %[[S2]] : index
// CHECK: %[[N:.*]] = arith.maxsi %[[N0]], %{{.*}} : index
// CHECK: %[[V:.*]] = tensor.extract_slice %[[X]][%[[S2]], 1] [%[[N]], 3] [1, 3] : tensor<?x8xf32> to tensor<?x3xf32>
// CHECK: %[[R:.*]] = linalg.copy ins(%[[V]] : tensor<?x3xf32>)
// CHECK: return %[[R]]
func.func @slice_positive(%x: tensor<?x8xf32>) -> tensor<?x3xf32> {
  %r = nn.slice %x starts = [-3, 1] ends = [9223372036854775807, 8] steps = [1, 3] : tensor<?x8xf32>
  return %r : tensor<?x3xf32>
}

// -----

// A negative step reads element start + i * step in a generic.

// CHECK-LABEL: func.func @slice_negative
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<4x2xf16>)
// CHECK: %[[I:.*]] = linalg.index 0 : index
// CHECK: %[[BACK:.*]] = arith.muli %[[I]], %{{.*}} : index
// CHECK: %[[ROW:.*]] = arith.addi %{{.*}}, %[[BACK]] : index
// CHECK: %[[J:.*]] = linalg.index 1 : index
// CHECK: %[[FORTH:.*]] = arith.muli %[[J]], %{{.*}} : index
// CHECK: %[[COL:.*]] = arith.addi %{{.*}}, %[[FORTH]] : index
// CHECK: tensor.extract %{{.*}}[%[[ROW]], %[[COL]]] : tensor<4x6xf16>
func.func @slice_negative(%h: tensor<4x6xf16>) -> tensor<4x2xf16> {
  %r = nn.slice %h starts = [-1, 0] ends = [-100, 6] steps = [-1, 4] : tensor<4x6xf16>
  return %r : tensor<4x2xf16>
}

// -----

// gather reads with tensor.extract at the wrapped, clamped index.

// CHECK-DAG: #[[$IDX:.*]] = affine_map<(d0, d1) -> (d1)>
// CHECK-LABEL: func.func @gather
// CHECK: linalg.generic {indexing_maps = [#[[$IDX]], {{.*}}]
// CHECK: ^bb0(%[[ID:.*]]: i32, %{{.*}}: f16):
// CHECK: %[[ROW:.*]] = linalg.index 0 : index
// CHECK: %[[I:.*]] = arith.index_cast %[[ID]] : i32 to index
// CHECK: %[[NEG:.*]] = arith.cmpi slt, %[[I]], %{{.*}} : index
// CHECK: %[[UP:.*]] = arith.addi %[[I]], %{{.*}} : index
// CHECK: %[[W:.*]] = arith.select %[[NEG]], %[[UP]], %[[I]] : index
// CHECK: %[[LO:.*]] = arith.minsi %[[W]], %{{.*}} : index
// CHECK: %[[C:.*]] = arith.maxsi %[[LO]], %{{.*}} : index
// CHECK: tensor.extract %{{.*}}[%[[ROW]], %[[C]]] : tensor<?x8xf16>
func.func @gather(%x: tensor<?x8xf16>, %i: tensor<5xi32>) -> tensor<?x5xf16> {
  %r = nn.gather %x [%i] axis = -1 : tensor<?x8xf16>, tensor<5xi32>
  return %r : tensor<?x5xf16>
}

// -----

// Float to integer casts clamp before arith.fptosi (undefined out of range):
// NaN becomes 0, values from 2^63 on INT64_MAX. i1 converts unsigned.

// CHECK-LABEL: func.func @cast
// CHECK: ^bb0(%[[IN:.*]]: f16, %{{.*}}: i64):
// CHECK: %[[X:.*]] = arith.extf %[[IN]] : f16 to f32
// CHECK: %[[NAN:.*]] = arith.cmpf uno, %[[X]], %[[X]] : f32
// CHECK: %[[BIG:.*]] = arith.cmpf oge, %[[X]], %{{.*}} : f32
// CHECK: %[[LO:.*]] = arith.maximumf %[[X]], %{{.*}} : f32
// CHECK: %[[HI:.*]] = arith.minimumf %[[LO]], %{{.*}} : f32
// CHECK: %[[SAFE:.*]] = arith.select %[[NAN]], %{{.*}}, %[[HI]] : f32
// CHECK: %[[I:.*]] = arith.fptosi %[[SAFE]] : f32 to i64
// CHECK: %[[R:.*]] = arith.select %[[BIG]], %{{.*}}, %[[I]] : i64
// CHECK: linalg.yield %[[R]]
// CHECK: arith.uitofp %{{.*}} : i1 to f32
func.func @cast(%x: tensor<?xf16>, %m: tensor<?xi1>) -> (tensor<?xi64>, tensor<?xf32>) {
  %0 = nn.cast %x : tensor<?xf16> -> tensor<?xi64>
  %1 = nn.cast %m : tensor<?xi1> -> tensor<?xf32>
  return %0, %1 : tensor<?xi64>, tensor<?xf32>
}

// -----

// where and compare broadcast like the binary ops.

// CHECK-DAG: #[[$COND:.*]] = affine_map<(d0, d1) -> (0, d1)>
// CHECK-DAG: #[[$SCALAR:.*]] = affine_map<(d0, d1) -> ()>
// CHECK-LABEL: func.func @where_compare
// CHECK: linalg.generic {indexing_maps = [#[[$COND]], #{{.*}}, #[[$SCALAR]], #{{.*}}]
// CHECK: arith.select %{{.*}}, %{{.*}}, %{{.*}} : i64
// CHECK: arith.cmpf une, %{{.*}}, %{{.*}} : f32
// CHECK: arith.cmpi ult, %{{.*}}, %{{.*}} : i1
func.func @where_compare(%c: tensor<1x4xi1>, %a: tensor<?x4xi64>, %b: tensor<i64>,
                         %x: tensor<4xf32>, %m: tensor<4xi1>)
    -> (tensor<?x4xi64>, tensor<4xi1>, tensor<4xi1>) {
  %0 = nn.where %c, %a, %b : tensor<1x4xi1>, tensor<?x4xi64>, tensor<i64>
  %1 = nn.compare ne %x, %x : tensor<4xf32>, tensor<4xf32>
  %2 = nn.compare lt %m, %m : tensor<4xi1>, tensor<4xi1>
  return %0, %1, %2 : tensor<?x4xi64>, tensor<4xi1>, tensor<4xi1>
}

// -----

// expand reads index 0 along stretched dimensions; iota and trilu use
// linalg.index.

// CHECK-DAG: #[[$ROW:.*]] = affine_map<(d0, d1, d2) -> (0, d2)>
// CHECK-LABEL: func.func @expand_iota_trilu
// CHECK-SAME: %[[N:[^:]*]]: index
// CHECK: %[[E:.*]] = tensor.empty(%[[N]]) : tensor<?x3x4xf32>
// CHECK: linalg.generic {indexing_maps = [#[[$ROW]], {{.*}}]{{.*}} outs(%[[E]]
// CHECK: %[[I:.*]] = linalg.index 0 : index
// CHECK: arith.index_cast %[[I]] : index to i64
// CHECK: arith.trunci %{{.*}} : i64 to i32
// CHECK: %[[C:.*]] = linalg.index 1 : index
// CHECK: %[[D:.*]] = linalg.index 2 : index
// CHECK: %[[OFF:.*]] = arith.subi %[[D]], %[[C]] : index
// CHECK: %[[KEEP:.*]] = arith.cmpi sle, %[[OFF]], %{{.*}} : index
// CHECK: arith.select %[[KEEP]], %{{.*}}, %{{.*}} : i1
func.func @expand_iota_trilu(%x: tensor<1x4xf32>, %n: index, %m: tensor<2x?x?xi1>)
    -> (tensor<?x3x4xf32>, tensor<?xi32>, tensor<2x?x?xi1>) {
  %0 = nn.expand %x [%n] : tensor<1x4xf32> -> tensor<?x3x4xf32>
  %1 = nn.iota [%n] : tensor<?xi32>
  %2 = nn.trilu %m {diagonal = -1 : i64} : tensor<2x?x?xi1>
  return %0, %1, %2 : tensor<?x3x4xf32>, tensor<?xi32>, tensor<2x?x?xi1>
}

// -----

// topk: a loop per row dimension, k selection passes, each scanning the
// row for the best element ranked after the previous pick.

// CHECK-LABEL: func.func @topk
// CHECK: %[[V0:.*]] = tensor.empty(%{{.*}}) : tensor<?x2xf16>
// CHECK: %[[I0:.*]] = tensor.empty(%{{.*}}) : tensor<?x2xi64>
// CHECK: %[[ROWS:.*]]:2 = scf.for %[[ROW:[^ ]*]] = {{.*}} iter_args(%{{.*}} = %[[V0]], %{{.*}} = %[[I0]])
// CHECK: %[[PASS:.*]]:4 = scf.for %[[J:[^ ]*]] = {{.*}} iter_args({{.*}}) -> (tensor<?x2xf16>, tensor<?x2xi64>, f32, index)
// CHECK: %[[BEST:.*]]:2 = scf.for %[[E:[^ ]*]] = {{.*}} -> (f32, index)
// CHECK: tensor.extract %{{.*}}[%[[ROW]], %[[E]]] : tensor<?x8xf16>
// CHECK: arith.extf
// CHECK: arith.cmpf uno
// CHECK: arith.cmpf ogt
// CHECK: arith.cmpi slt
// CHECK: scf.yield
// CHECK: %[[V:.*]] = arith.truncf %[[BEST]]#0 : f32 to f16
// CHECK: tensor.insert %[[V]] into %{{.*}}[%[[ROW]], %[[J]]] : tensor<?x2xf16>
// CHECK: %[[IDX:.*]] = arith.index_cast %[[BEST]]#1 : index to i64
// CHECK: tensor.insert %[[IDX]] into %{{.*}}[%[[ROW]], %[[J]]] : tensor<?x2xi64>
// CHECK: return %[[ROWS]]#0, %[[ROWS]]#1
func.func @topk(%p: tensor<?x8xf16>) -> (tensor<?x2xf16>, tensor<?x2xi64>) {
  %v, %i = nn.topk %p top 2 : tensor<?x8xf16>
  return %v, %i : tensor<?x2xf16>, tensor<?x2xi64>
}
