//===- DeviceKernel.cpp - Hand-built GPU kernels launched from tensor code ===//

#include "passes/MoELowering/DeviceKernel.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

namespace moec::lowering {

using namespace mlir;

MemRefType anyLayoutMemRef(RankedTensorType type) {
  SmallVector<int64_t> strides(type.getRank(), ShapedType::kDynamic);
  auto layout = StridedLayoutAttr::get(type.getContext(), ShapedType::kDynamic,
                                       strides);
  return MemRefType::get(type.getShape(), type.getElementType(), layout);
}

MemRefType denseMemRef(RankedTensorType type) {
  return MemRefType::get(type.getShape(), type.getElementType());
}

MemRefType sharedMemRef(ArrayRef<int64_t> shape, Type element) {
  auto space = gpu::AddressSpaceAttr::get(element.getContext(),
                                          gpu::AddressSpace::Workgroup);
  return MemRefType::get(shape, element, MemRefLayoutAttrInterface(), space);
}

Value dynamicShape(IB &b, Value value) {
  RankedTensorType type = tensorType(value);
  auto dynamic = RankedTensorType::get(
      SmallVector<int64_t>(type.getRank(), ShapedType::kDynamic),
      type.getElementType());
  if (dynamic == type)
    return value;
  return tensor::CastOp::create(b, dynamic, value);
}

namespace {

/// @moe_kernels, created (with gpu.container_module on `module`) if needed.
gpu::GPUModuleOp kernelModule(ModuleOp module) {
  if (auto existing = module.lookupSymbol<gpu::GPUModuleOp>(kKernelModule))
    return existing;
  module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                  UnitAttr::get(module.getContext()));
  OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
  return gpu::GPUModuleOp::create(b, module.getLoc(), kKernelModule);
}

ModuleOp enclosingModule(IB &b) {
  return b.getInsertionBlock()->getParentOp()->getParentOfType<ModuleOp>();
}

std::string launcherName(gpu::GPUFuncOp kernel) {
  return ("__moe_launch." + kernel.getName()).str();
}

} // namespace

gpu::GPUFuncOp
getOrBuildKernel(IB &b, StringRef name, TypeRange scalarTypes,
                 ArrayRef<RankedTensorType> inputTypes,
                 ArrayRef<RankedTensorType> resultTypes,
                 ArrayRef<MemRefType> sharedBuffers,
                 llvm::function_ref<void(IB &, gpu::GPUFuncOp)> buildBody) {
  gpu::GPUModuleOp module = kernelModule(enclosingModule(b));
  if (auto existing = module.lookupSymbol<gpu::GPUFuncOp>(name))
    return existing;
  SmallVector<Type> arguments(scalarTypes);
  for (RankedTensorType type : inputTypes)
    arguments.push_back(anyLayoutMemRef(type));
  for (RankedTensorType type : resultTypes)
    arguments.push_back(denseMemRef(type));
  OpBuilder builder = OpBuilder::atBlockEnd(module.getBody());
  Location loc = b.getLoc();
  auto kernel = gpu::GPUFuncOp::create(
      builder, loc, name, builder.getFunctionType(arguments, {}),
      SmallVector<Type>(sharedBuffers.begin(), sharedBuffers.end()),
      /*privateAttributions=*/TypeRange());
  kernel->setAttr(gpu::GPUDialect::getKernelFuncAttrName(),
                  builder.getUnitAttr());
  Block &entry = kernel.getBody().front();
  IB body(loc, builder);
  body.setInsertionPointToStart(&entry);
  auto ret = gpu::ReturnOp::create(body, loc);
  body.setInsertionPoint(ret);
  buildBody(body, kernel);
  return kernel;
}

SmallVector<Value> launchKernel(IB &b, gpu::GPUFuncOp kernel,
                                std::array<Value, 3> grid,
                                std::array<Value, 3> block, ValueRange scalars,
                                ValueRange inputs,
                                ArrayRef<RankedTensorType> resultTypes,
                                ArrayRef<SmallVector<Value>> resultSizes) {
  SmallVector<Value> operands(grid.begin(), grid.end());
  operands.append(block.begin(), block.end());
  operands.append(scalars.begin(), scalars.end());
  for (Value input : inputs) {
    auto type = cast<RankedTensorType>(input.getType());
    operands.push_back(bufferization::ToBufferOp::create(
        b, anyLayoutMemRef(type), input, /*read_only=*/true));
  }
  SmallVector<Value> buffers;
  for (auto [type, sizes] : llvm::zip_equal(resultTypes, resultSizes)) {
    SmallVector<Value> dynamic;
    for (auto [extent, size] : llvm::zip_equal(type.getShape(), sizes))
      if (ShapedType::isDynamic(extent))
        dynamic.push_back(size);
    buffers.push_back(memref::AllocOp::create(b, denseMemRef(type), dynamic));
  }
  operands.append(buffers);

  ModuleOp module = enclosingModule(b);
  std::string name = launcherName(kernel);
  auto launcher = module.lookupSymbol<func::FuncOp>(name);
  if (!launcher) {
    OpBuilder builder = OpBuilder::atBlockBegin(module.getBody());
    launcher = func::FuncOp::create(
        builder, b.getLoc(), name,
        builder.getFunctionType(ValueRange(operands).getTypes(), {}));
    launcher.setPrivate();
    auto symbol = SymbolRefAttr::get(
        builder.getStringAttr(kKernelModule),
        ArrayRef<FlatSymbolRefAttr>{
            FlatSymbolRefAttr::get(kernel.getNameAttr())});
    launcher->setAttr(kLaunchAttr, symbol);
  }
  func::CallOp::create(b, launcher, operands);

  SmallVector<Value> results;
  for (auto [type, buffer] : llvm::zip_equal(resultTypes, buffers))
    results.push_back(bufferization::ToTensorOp::create(
        b, type, buffer, /*restrict=*/true, /*writable=*/true));
  return results;
}

} // namespace moec::lowering
