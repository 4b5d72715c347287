// RUN: moe-opt %s --moe-outline-parallel-loops --split-input-file | FileCheck %s

// The loop becomes a call to the dispatch declaration with the iteration
// count, the bounds and the captured buffer; the body runs a chunk of
// iterations and recomputes the induction variable. The constant is cloned,
// not captured.

// CHECK-LABEL: func.func @scale
// CHECK-SAME: (%[[BUF:.*]]: memref<?xf32>, %[[N:.*]]: index)
// CHECK-NOT: scf.parallel
// CHECK: %[[SPAN:.*]] = arith.subi %[[N]], %c0
// CHECK: %[[COUNT:.*]] = arith.ceildivsi %[[SPAN]], %c4
// CHECK: call @__moe_par_dispatch_0(%[[COUNT]], %c0, %c4, %[[BUF]]) : (index, index, index, memref<?xf32>) -> ()
// CHECK: func.func private @__moe_par_dispatch_0(index, index, index, memref<?xf32>)
// CHECK: func.func private @__moe_par_body_0(%[[BEGIN:.*]]: index, %[[END:.*]]: index, %[[LB:.*]]: index, %[[STEP:.*]]: index, %[[CAP:.*]]: memref<?xf32>)
// CHECK: %[[TWO:.*]] = arith.constant 2.000000e+00 : f32
// CHECK: scf.for %[[J:.*]] = %[[BEGIN]] to %[[END]] step %c1
// CHECK: %[[OFF:.*]] = arith.muli %[[J]], %[[STEP]]
// CHECK: %[[I:.*]] = arith.addi %[[LB]], %[[OFF]]
// CHECK: memref.load %[[CAP]][%[[I]]]
// CHECK: arith.mulf %{{.*}}, %[[TWO]]
// CHECK: memref.store %{{.*}}, %[[CAP]][%[[I]]]
func.func @scale(%buf: memref<?xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c4 = arith.constant 4 : index
  %two = arith.constant 2.0 : f32
  scf.parallel (%i) = (%c0) to (%n) step (%c4) {
    %v = memref.load %buf[%i] : memref<?xf32>
    %w = arith.mulf %v, %two : f32
    memref.store %w, %buf[%i] : memref<?xf32>
    scf.reduce
  }
  return
}

// -----

// Only outermost one-dimensional loops are outlined: the inner loop runs
// sequentially inside the body, and a two-dimensional loop stays.

// CHECK-LABEL: func.func @nested
// CHECK: call @__moe_par_dispatch_0
// CHECK: scf.parallel (%{{.*}}, %{{.*}}) =
// CHECK: func.func private @__moe_par_body_0
// CHECK: scf.for
// CHECK: scf.parallel (%{{.*}}) =
func.func @nested(%buf: memref<?x?xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %one = arith.constant 1.0 : f32
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    scf.parallel (%j) = (%c0) to (%n) step (%c1) {
      memref.store %one, %buf[%i, %j] : memref<?x?xf32>
      scf.reduce
    }
    scf.reduce
  }
  scf.parallel (%i, %j) = (%c0, %c0) to (%n, %n) step (%c1, %c1) {
    memref.store %one, %buf[%i, %j] : memref<?x?xf32>
    scf.reduce
  }
  return
}
