//===- DeviceKernel.h - Hand-built GPU kernels launched from tensor code -*- C++ -*-===//
//
// Some moe ops lower, on GPU targets, to kernels that the generic mapping of
// parallel loops cannot produce: they need shared memory, barriers, atomics
// or tensor-core instructions (the fused routing kernel, the grouped expert
// GEMM). Such a kernel is built once per module as a gpu.func in
// gpu.module @moe_kernels and launched from tensor code like this:
//
//   %in = bufferization.to_buffer %t read_only : tensor<..> to memref<.., strided<[?, ..], offset: ?>>
//   %out = memref.alloc(..) : memref<..>
//   func.call @__moe_launch.<kernel>(%grid x3, %block x3, %scalars.., %in.., %out..)
//   %r = bufferization.to_tensor %out restrict writable
//
// The launch is a call to a private declaration, not a gpu.launch_func,
// because bufferization's deallocation rejects ops with unknown memory
// effects (gpu.launch_func, gpu.barrier) but accepts calls; an external
// callee reads and writes its memref operands, which is what the kernel
// does. moe-gpu-map-to-kernels turns the calls into gpu.launch_func.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_PASSES_MOELOWERING_DEVICEKERNEL_H
#define MOEC_PASSES_MOELOWERING_DEVICEKERNEL_H

#include "passes/MoELowering/Emit.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace moec::lowering {

/// The attribute that marks a launch declaration; its value is the kernel
/// (@moe_kernels::@name).
inline constexpr llvm::StringLiteral kLaunchAttr = "moe.launch";
/// The gpu.module that holds every kernel of a model.
inline constexpr llvm::StringLiteral kKernelModule = "moe_kernels";

/// A memref type for reading any buffer of `type` (fully dynamic strides
/// and offset), so that slices and casts reach the kernel without copies.
mlir::MemRefType anyLayoutMemRef(RankedTensorType type);
/// The identity-layout memref type of `type`.
mlir::MemRefType denseMemRef(RankedTensorType type);
/// A shared-memory (workgroup) buffer of `shape` x `element`.
mlir::MemRefType sharedMemRef(ArrayRef<int64_t> shape, Type element);
/// `value` (a ranked tensor) with every extent dynamic, so that one kernel,
/// whose argument types its first launch fixes, serves operands of any
/// shape.
Value dynamicShape(IB &b, Value value);

/// The kernel @moe_kernels::@`name`, built by `buildBody` when the module
/// has none yet. Its arguments are `scalarTypes`, then a buffer for each of
/// `inputTypes` (anyLayoutMemRef), then one for each of `resultTypes`
/// (denseMemRef); its workgroup buffers are `sharedBuffers`. `buildBody`
/// gets a builder at the start of the entry block (gpu.return follows).
mlir::gpu::GPUFuncOp
getOrBuildKernel(IB &b, llvm::StringRef name, mlir::TypeRange scalarTypes,
                 ArrayRef<RankedTensorType> inputTypes,
                 ArrayRef<RankedTensorType> resultTypes,
                 ArrayRef<mlir::MemRefType> sharedBuffers,
                 llvm::function_ref<void(IB &, mlir::gpu::GPUFuncOp)> buildBody);

/// One launch of `kernel` (from getOrBuildKernel) with `scalars`, the
/// buffers of `inputs` (read only) and fresh buffers for the results, of
/// `resultTypes` with extents `resultSizes[i]` (only the dynamic ones are
/// used). Returns the results as tensors.
SmallVector<Value> launchKernel(IB &b, mlir::gpu::GPUFuncOp kernel,
                                std::array<Value, 3> grid,
                                std::array<Value, 3> block, ValueRange scalars,
                                ValueRange inputs,
                                ArrayRef<RankedTensorType> resultTypes,
                                ArrayRef<SmallVector<Value>> resultSizes);

} // namespace moec::lowering

#endif // MOEC_PASSES_MOELOWERING_DEVICEKERNEL_H
