// RUN: moe-opt %s --moe-cpu-tile-and-vectorize --loop-invariant-subset-hoisting --canonicalize --split-input-file | FileCheck %s

// A matmul with a dynamic row count: row blocks of 96 in an scf.forall, full
// 6-row tiles vectorised without masks with the 6x16 accumulator carried in
// registers across K, then the peeled edge rows one by one.

// CHECK-LABEL: func.func @matmul
// CHECK: scf.forall (%{{.*}}) in (%{{.*}}) shared_outs(%{{.*}} = %arg2) -> (tensor<?x32xf32>)
// CHECK: scf.for %{{.*}} = %c0 to %{{.*}} step %c6
// CHECK: scf.for %{{.*}} = %c0 to %c32 step %c16
// CHECK: %[[ACC:.*]] = vector.transfer_read {{.*}} : tensor<6x32xf32>, vector<6x16xf32>
// CHECK: scf.for %{{.*}} = %c0 to %c64 step %c1 iter_args(%{{.*}} = %[[ACC]]) -> (vector<6x16xf32>)
// CHECK-NOT: create_mask
// CHECK: arith.mulf {{.*}} : vector<6x16x1xf32>
// CHECK: arith.addf {{.*}} : vector<6x16xf32>
// CHECK: vector.transfer_write {{.*}} : vector<6x16xf32>, tensor<6x32xf32>
// The edge rows, one at a time, with constant masks:
// CHECK: scf.for %{{.*}} = %c0 to %{{.*}} step %c1
// CHECK: %[[MASK:.*]] = vector.constant_mask [1, 16] : vector<6x16xi1>
// CHECK: vector.transfer_read {{.*}}, %[[MASK]]
func.func @matmul(%a: tensor<?x64xf32>, %b: tensor<64x32xf32>, %c: tensor<?x32xf32>) -> tensor<?x32xf32> {
  %r = linalg.matmul ins(%a, %b : tensor<?x64xf32>, tensor<64x32xf32>) outs(%c : tensor<?x32xf32>) -> tensor<?x32xf32>
  return %r : tensor<?x32xf32>
}

// -----

// Column counts that are not a multiple of 16 use masked vectors.
// CHECK-LABEL: func.func @narrow
// CHECK: scf.forall
// CHECK: %[[MASK:.*]] = vector.constant_mask [1, 8] : vector<1x16xi1>
// CHECK: vector.transfer_read {{.*}}, %[[MASK]] {{.*}} : tensor<1x8xf32>, vector<6x16x1xf32>
func.func @narrow(%a: tensor<?x32xf32>, %b: tensor<32x8xf32>, %c: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %r = linalg.matmul ins(%a, %b : tensor<?x32xf32>, tensor<32x8xf32>) outs(%c : tensor<?x8xf32>) -> tensor<?x8xf32>
  return %r : tensor<?x8xf32>
}

// -----

// Without a matmul the pass changes nothing.
// CHECK-LABEL: func.func @no_matmul
// CHECK: linalg.fill
// CHECK-NEXT: return
func.func @no_matmul(%c: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %zero = arith.constant 0.0 : f32
  %r = linalg.fill ins(%zero : f32) outs(%c : tensor<4x8xf32>) -> tensor<4x8xf32>
  return %r : tensor<4x8xf32>
}

// -----

// Several matmuls, one of them with a single row: each gets its own schedule.
// CHECK-LABEL: func.func @two_matmuls
// CHECK-COUNT-2: scf.forall
// CHECK: return
func.func @two_matmuls(%a: tensor<1x6xf32>, %b: tensor<6x5xf32>, %c: tensor<1x5xf32>,
                       %d: tensor<?x5xf32>, %e: tensor<5x7xf32>, %f: tensor<?x7xf32>)
    -> (tensor<1x5xf32>, tensor<?x7xf32>) {
  %r = linalg.matmul ins(%a, %b : tensor<1x6xf32>, tensor<6x5xf32>) outs(%c : tensor<1x5xf32>) -> tensor<1x5xf32>
  %s = linalg.matmul ins(%d, %e : tensor<?x5xf32>, tensor<5x7xf32>) outs(%f : tensor<?x7xf32>) -> tensor<?x7xf32>
  return %r, %s : tensor<1x5xf32>, tensor<?x7xf32>
}
