// RUN: moe-opt %s --moe-lower-strided-copies | FileCheck %s
// RUN: moe-opt %s --moe-lower-strided-copies=all-copies | FileCheck %s --check-prefix=ALL

// A copy into a strided view (a concatenation's slice) becomes linalg.copy.
// CHECK-LABEL: func.func @into_view
// CHECK: linalg.copy ins(%{{.*}} : memref<?x3xf32>) outs(%{{.*}} : memref<?x3xf32, strided<[9, 1]>>)
// CHECK-NOT: memref.copy
func.func @into_view(%a: memref<?x3xf32>, %buffer: memref<?x9xf32>) {
  %c0 = arith.constant 0 : index
  %n = memref.dim %a, %c0 : memref<?x3xf32>
  %view = memref.subview %buffer[0, 0] [%n, 3] [1, 1]
      : memref<?x9xf32> to memref<?x3xf32, strided<[9, 1]>>
  memref.copy %a, %view : memref<?x3xf32> to memref<?x3xf32, strided<[9, 1]>>
  return
}

// A copy out of a strided slice too.
// CHECK-LABEL: func.func @from_view
// CHECK: linalg.copy ins(%{{.*}} : memref<4xf32, strided<[2]>>) outs(%{{.*}} : memref<4xf32>)
func.func @from_view(%a: memref<8xf32>, %out: memref<4xf32>) {
  %view = memref.subview %a[0] [4] [2] : memref<8xf32> to memref<4xf32, strided<[2]>>
  memref.copy %view, %out : memref<4xf32, strided<[2]>> to memref<4xf32>
  return
}

// Identity layouts keep memref.copy (lowered to memcpy), except for targets
// whose host cannot touch the memory (all-copies).
// CHECK-LABEL: func.func @contiguous
// CHECK: memref.copy
// CHECK-NOT: linalg.copy
// ALL-LABEL: func.func @contiguous
// ALL: linalg.copy ins(%{{.*}} : memref<?x9xf32>) outs(%{{.*}} : memref<?x9xf32>)
// ALL-NOT: memref.copy
func.func @contiguous(%a: memref<?x9xf32>, %b: memref<?x9xf32>) {
  memref.copy %a, %b : memref<?x9xf32> to memref<?x9xf32>
  return
}
