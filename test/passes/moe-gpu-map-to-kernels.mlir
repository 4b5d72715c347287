// RUN: moe-opt %s --moe-gpu-map-to-kernels --split-input-file --verify-diagnostics | FileCheck %s

// An outermost parallel loop becomes a kernel over a 1-d grid of 256-thread
// blocks: the iteration count is the product of the trip counts, each thread
// delinearises its index (innermost dimension fastest) behind a bounds check.
// CHECK-LABEL: func.func @grid
// CHECK-SAME: (%[[A:.*]]: memref<?x64xf32>, %[[B:.*]]: memref<?x64xf32>)
// CHECK: %[[N:.*]] = memref.dim %[[A]]
// CHECK: %[[C256:.*]] = arith.constant 256 : index
// CHECK: %[[BLOCKS:.*]] = arith.ceildivsi %[[TOTAL:.*]], %[[C256]] : index
// CHECK: %[[GRID:.*]] = arith.maxsi %[[BLOCKS]]
// CHECK: gpu.launch blocks(%[[BX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %[[GRID]], {{.*}} threads(%[[TX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %[[C256]], {{.*}} module(@moe_kernels) function(@grid_kernel_0)
// CHECK: %[[BASE:.*]] = arith.muli %[[BX]], %[[C256]]
// CHECK: %[[LINEAR:.*]] = arith.addi %[[BASE]], %[[TX]]
// CHECK: %[[IN:.*]] = arith.cmpi ult, %[[LINEAR]], %[[TOTAL]]
// CHECK: scf.if %[[IN]]
// CHECK: %[[J:.*]] = arith.remui %[[LINEAR]]
// CHECK: %[[I:.*]] = arith.divui %[[LINEAR]]
// CHECK: memref.load %[[A]][%{{.*}}, %{{.*}}]
// CHECK: memref.store
// CHECK: gpu.terminator
// CHECK-NOT: scf.parallel
func.func @grid(%a: memref<?x64xf32>, %b: memref<?x64xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %n = memref.dim %a, %c0 : memref<?x64xf32>
  scf.parallel (%i, %j) = (%c0, %c0) to (%n, %c64) step (%c1, %c1) {
    %v = memref.load %a[%i, %j] : memref<?x64xf32>
    memref.store %v, %b[%i, %j] : memref<?x64xf32>
    scf.reduce
  }
  return
}

// -----

// Sequential code that touches memory runs on one thread, together with the
// scalar ops that use its results; the allocation between them stays on the
// host, and the deallocation waits for the kernel.
// CHECK-LABEL: func.func @single_thread
// CHECK: %[[OUT:.*]] = memref.alloc() {alignment = 64 : i64} : memref<f32>
// CHECK: gpu.launch blocks({{.*}}) in ({{.*}} = %[[ONE:.*]], {{.*}} = %[[ONE]], {{.*}} = %[[ONE]]) threads({{.*}}) in ({{.*}} = %[[ONE]], {{.*}} = %[[ONE]], {{.*}} = %[[ONE]]) module(@moe_kernels) function(@single_thread_kernel_0)
// CHECK: %[[SUM:.*]] = scf.for
// CHECK: %[[SCALED:.*]] = arith.mulf %[[SUM]]
// CHECK: memref.store %[[SCALED]], %[[OUT]][]
// CHECK: gpu.terminator
// CHECK: memref.dealloc %[[OUT]]
func.func @single_thread(%a: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %zero = arith.constant 0.0 : f32
  %half = arith.constant 0.5 : f32
  %sum = scf.for %i = %c0 to %c4 step %c1 iter_args(%acc = %zero) -> (f32) {
    %v = memref.load %a[%i] : memref<4xf32>
    %next = arith.addf %acc, %v : f32
    scf.yield %next : f32
  }
  %scaled = arith.mulf %sum, %half : f32
  %out = memref.alloc() {alignment = 64 : i64} : memref<f32>
  memref.store %scaled, %out[] : memref<f32>
  memref.dealloc %out : memref<f32>
  return
}

// -----

// A host loop whose body holds parallel loops stays on the host and launches
// a kernel per iteration.
// CHECK-LABEL: func.func @host_loop
// CHECK: scf.for %[[E:.*]] =
// CHECK: %[[SLICE:.*]] = memref.subview %{{.*}}[%[[E]], 0] [1, 8]
// CHECK: gpu.launch
// CHECK: memref.store %{{.*}}, %[[SLICE]]
func.func @host_loop(%a: memref<4x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  %one = arith.constant 1.0 : f32
  scf.for %e = %c0 to %c4 step %c1 {
    %slice = memref.subview %a[%e, 0] [1, 8] [1, 1]
        : memref<4x8xf32> to memref<8xf32, strided<[1], offset: ?>>
    scf.parallel (%j) = (%c0) to (%c8) step (%c1) {
      memref.store %one, %slice[%j] : memref<8xf32, strided<[1], offset: ?>>
      scf.reduce
    }
  }
  return
}

// -----

// Constants are copied to device memory and freed before returning.
memref.global "private" constant @table : memref<4xf32> = dense<[1.0, 2.0, 3.0, 4.0]>
// CHECK-LABEL: func.func @constant
// CHECK: %[[HOST:.*]] = memref.get_global @table
// CHECK: %[[DEVICE:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4xf32>
// CHECK: %[[DST:.*]] = memref.extract_aligned_pointer_as_index %[[DEVICE]]
// CHECK: %[[SRC:.*]] = memref.extract_aligned_pointer_as_index %[[HOST]]
// CHECK: call @__moe_cuda_upload(%[[DST]], %[[SRC]], %{{.*}})
// CHECK: gpu.launch
// CHECK: memref.load %[[DEVICE]]
// CHECK: memref.dealloc %[[DEVICE]]
// CHECK-NEXT: return
func.func @constant(%out: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %t = memref.get_global @table : memref<4xf32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %v = memref.load %t[%i] : memref<4xf32>
    memref.store %v, %out[%i] : memref<4xf32>
    scf.reduce
  }
  return
}

// -----

// A shape that depends on memory contents would need the host to wait for
// the device.
func.func @data_dependent_shape(%counts: memref<4xindex>) {
  %c0 = arith.constant 0 : index
  %n = memref.load %counts[%c0] : memref<4xindex>
  // expected-error @below {{'memref.alloc' op needs a value computed on the device (a data-dependent shape?), which the CUDA target does not support}}
  %buffer = memref.alloc(%n) : memref<?xf32>
  memref.dealloc %buffer : memref<?xf32>
  return
}

// -----

// A scalar that a later kernel reads (CSE hoists such loads of routing data
// out of loops) travels through a one-element device buffer.
// CHECK-LABEL: func.func @scalar_between_kernels
// CHECK: %[[CARRY:.*]] = memref.alloc() : memref<i32>
// CHECK: gpu.launch
// CHECK: %[[V:.*]] = memref.load %{{.*}}[%{{.*}}] : memref<9xi32>
// CHECK: memref.store %[[V]], %[[CARRY]][] : memref<i32>
// CHECK: gpu.launch
// CHECK: %[[AGAIN:.*]] = memref.load %[[CARRY]][] : memref<i32>
// CHECK: arith.index_cast %[[AGAIN]]
// CHECK: memref.dealloc %[[CARRY]]
// CHECK-NEXT: return
func.func @scalar_between_kernels(%a: memref<9xi32>, %o: memref<i64>, %n: index, %out: memref<?xindex>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %v = memref.load %a[%c8] : memref<9xi32>
  %w = arith.extsi %v : i32 to i64
  memref.store %w, %o[] : memref<i64>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %x = arith.index_cast %v : i32 to index
    memref.store %x, %out[%i] : memref<?xindex>
    scf.reduce
  }
  return
}

// -----

// A scalar op further down that uses a kernel's value (a loss coefficient
// loaded in the forward pass, scaled again in the backward pass) moves into
// that kernel when its other operands are defined before the kernel; its
// result reaches the later kernel through a buffer.
// CHECK-LABEL: func.func @scalar_pulled_into_kernel
// CHECK: %[[CARRY:.*]] = memref.alloc() : memref<f32>
// CHECK: gpu.launch
// CHECK: %[[V:.*]] = memref.load %{{.*}}[] : memref<f32>
// CHECK: %[[S:.*]] = arith.mulf %[[V]]
// CHECK: %[[T:.*]] = arith.divf %[[S]], %{{.*}} : f32
// CHECK: memref.store %[[T]], %[[CARRY]][] : memref<f32>
// CHECK: gpu.terminator
// CHECK: gpu.launch
// CHECK: gpu.launch
// CHECK: %[[AGAIN:.*]] = memref.load %[[CARRY]][] : memref<f32>
// CHECK: memref.store %[[AGAIN]]
func.func @scalar_pulled_into_kernel(%coef: memref<f32>, %n: index, %out: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %two = arith.constant 2.0 : f32
  %nf = arith.index_cast %n : index to i64
  %count = arith.sitofp %nf : i64 to f32
  %v = memref.load %coef[] : memref<f32>
  %s = arith.mulf %v, %two : f32
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    memref.store %two, %out[%i] : memref<?xf32>
    scf.reduce
  }
  %t = arith.divf %s, %count : f32
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    memref.store %t, %out[%i] : memref<?xf32>
    scf.reduce
  }
  return
}

// -----

// A call to the launch declaration of a hand-built kernel becomes a
// gpu.launch_func with the call's grid, block and kernel arguments; the
// single-thread work before it is launched first, so that the kernel sees
// its writes; the declaration is gone.
// CHECK-LABEL: func.func @hand_built
// CHECK-SAME: (%[[A:.*]]: memref<?xf32>, %[[N:.*]]: index)
// CHECK: gpu.launch blocks
// CHECK: memref.store
// CHECK: gpu.terminator
// CHECK: %[[OUT:.*]] = memref.alloc(%[[N]])
// CHECK: gpu.launch_func @moe_kernels::@scale blocks in (%[[N]], %{{.*}}, %{{.*}}) threads in (%{{.*}}, %{{.*}}, %{{.*}}) args(%[[N]] : index, %[[A]] : memref<?xf32>, %[[OUT]] : memref<?xf32>)
// CHECK-NOT: func.call
// CHECK-NOT: __moe_launch
module attributes {gpu.container_module} {
  gpu.module @moe_kernels {
    gpu.func @scale(%n: index, %in: memref<?xf32>, %out: memref<?xf32>) kernel {
      %i = gpu.block_id x
      %v = memref.load %in[%i] : memref<?xf32>
      memref.store %v, %out[%i] : memref<?xf32>
      gpu.return
    }
  }
  func.func private @__moe_launch.scale(index, index, index, index, index, index, index, memref<?xf32>, memref<?xf32>) attributes {moe.launch = @moe_kernels::@scale}
  func.func @hand_built(%a: memref<?xf32>, %n: index) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %one = arith.constant 1.0 : f32
    memref.store %one, %a[%c0] : memref<?xf32>
    %out = memref.alloc(%n) : memref<?xf32>
    func.call @__moe_launch.scale(%n, %c1, %c1, %c1, %c1, %c1, %n, %a, %out) : (index, index, index, index, index, index, index, memref<?xf32>, memref<?xf32>) -> ()
    return
  }
}
