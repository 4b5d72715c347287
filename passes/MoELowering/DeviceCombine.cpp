//===- DeviceCombine.cpp - moe.combine as a feature-parallel CUDA kernel --===//
//
// On the CPU, moe.combine is a host loop over rows whose body updates one
// token's row of the accumulator. On a GPU that loop reads routing data
// (the row's token) to decide where to write, so the generic mapping runs
// it on a single thread. This kernel keeps its semantics exactly (rows in
// order, f32 accumulation: results are deterministic and match the CPU) but
// gives every feature column its own thread: thread d copies init[:, d] and
// then adds w[r] * x[r, d] into acc[token(r), d] for r = 0, 1, ... No two
// threads touch the same element, so no atomics are needed.
//
// Work per thread is T + R iterations; parallelism is D threads. See
// docs/compiler.md for the gather form (token-parallel through an inverse
// row map) that would use the whole GPU.
//
//===----------------------------------------------------------------------===//

#include "passes/MoELowering/DeviceKernel.h"
#include "passes/MoELowering/Lowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

namespace moec::lowering {

using namespace mlir;

namespace {

constexpr int64_t kThreadsPerBlock = 128;

std::string typeName(Type type) {
  std::string name;
  llvm::raw_string_ostream(name) << type;
  return name;
}

void buildCombineBody(IB &b, gpu::GPUFuncOp kernel) {
  Value x = kernel.getArgument(0), rowToken = kernel.getArgument(1),
        rowWeight = kernel.getArgument(2), init = kernel.getArgument(3),
        acc = kernel.getArgument(4);
  Value zero = cIdx(b, 0);
  Value column = addI(
      b,
      arith::MulIOp::create(b, gpu::BlockIdOp::create(b, gpu::Dimension::x),
                            gpu::BlockDimOp::create(b, gpu::Dimension::x)),
      gpu::ThreadIdOp::create(b, gpu::Dimension::x));
  Value tokens = memref::DimOp::create(b, acc, 0);
  Value features = memref::DimOp::create(b, acc, 1);
  Value rows = memref::DimOp::create(b, x, 0);
  ifElse(b, cmpI(b, arith::CmpIPredicate::ult, column, features),
         [&](IB &ib) -> SmallVector<Value> {
           forLoop(ib, zero, tokens, {},
                   [&](IB &lb, Value t, ValueRange) -> SmallVector<Value> {
                     Value v = memref::LoadOp::create(lb, init,
                                                      ValueRange{t, column});
                     memref::StoreOp::create(lb, toF32(lb, v), acc,
                                             ValueRange{t, column});
                     return {};
                   });
           forLoop(
               ib, zero, rows, {},
               [&](IB &lb, Value r, ValueRange) -> SmallVector<Value> {
                 Value t = toIndex(
                     lb, memref::LoadOp::create(lb, rowToken, ValueRange{r}));
                 ifElse(lb, inRange(lb, t, tokens),
                        [&](IB &tb) -> SmallVector<Value> {
                          Value w = toF32(tb, memref::LoadOp::create(
                                                  tb, rowWeight, ValueRange{r}));
                          Value xv = toF32(tb, memref::LoadOp::create(
                                                   tb, x, ValueRange{r, column}));
                          Value old = memref::LoadOp::create(
                              tb, acc, ValueRange{t, column});
                          Value sum = arith::AddFOp::create(
                              tb, old, arith::MulFOp::create(tb, w, xv));
                          memref::StoreOp::create(tb, sum, acc,
                                                  ValueRange{t, column});
                          return {};
                        },
                        [](IB &) -> SmallVector<Value> { return {}; });
                 return {};
               });
           return {};
         },
         [](IB &) -> SmallVector<Value> { return {}; });
}

} // namespace

SmallVector<Value> lowerCombineOnDevice(IB &b, moe::CombineOp op) {
  RankedTensorType type = op.getResult().getType();
  Value x = dynamicShape(b, op.getInput()),
        rowToken = dynamicShape(b, op.getRowToken()),
        rowWeight = dynamicShape(b, op.getRowWeight()),
        init = dynamicShape(b, op.getInit());
  auto accType = RankedTensorType::get(
      {ShapedType::kDynamic, ShapedType::kDynamic}, b.getF32Type());
  std::string name =
      "moe_combine_" + typeName(tensorType(x).getElementType()) + "_" +
      typeName(tensorType(rowWeight).getElementType()) + "_" +
      typeName(tensorType(init).getElementType());
  SmallVector<RankedTensorType> inputTypes = {
      tensorType(x), tensorType(rowToken), tensorType(rowWeight),
      tensorType(init)};
  gpu::GPUFuncOp kernel =
      getOrBuildKernel(b, name, {}, inputTypes, {accType}, {},
                       buildCombineBody);
  Value tokens = dim(b, init, 0), features = dim(b, init, 1);
  Value threads = cIdx(b, kThreadsPerBlock);
  Value blocks = maxSI(b, arith::CeilDivSIOp::create(b, features, threads),
                       cIdx(b, 1));
  Value one = cIdx(b, 1);
  Value acc = launchKernel(b, kernel, {blocks, one, one}, {threads, one, one},
                           {}, {x, rowToken, rowWeight, init}, {accType},
                           {SmallVector<Value>{tokens, features}})
                  .front();
  Value result = narrowTo(b, acc, withElement(accType, type.getElementType()),
                          {tokens, features});
  return {tensor::CastOp::create(b, type, result).getResult()};
}

} // namespace moec::lowering
