//===- GraphBuilders.cpp - IR builders shared by the graph passes ---------===//

#include "passes/GraphBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

Value moec::createZeros(OpBuilder &builder, Location loc, Value rowsLike,
                        Value colsLike, RankedTensorType type) {
  SmallVector<OpFoldResult> sizes = {
      tensor::getMixedSize(builder, loc, rowsLike, 0),
      tensor::getMixedSize(builder, loc, colsLike, 1)};
  Value empty =
      tensor::EmptyOp::create(builder, loc, sizes, type.getElementType());
  Value zero = arith::ConstantOp::create(
      builder, loc, builder.getZeroAttr(type.getElementType()));
  return linalg::FillOp::create(builder, loc, zero, empty).getResult(0);
}
