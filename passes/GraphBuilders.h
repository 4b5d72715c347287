//===- GraphBuilders.h - IR builders of the graph passes -------*- C++ -*-===//
//
// Helpers of the passes that rewrite nn/moe graphs into moe ops
// (moe-decompose-layer, moe-raise-decomposed).
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_PASSES_GRAPHBUILDERS_H
#define MOEC_PASSES_GRAPHBUILDERS_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"

namespace moec {

/// A [rows-of(rowsLike), cols-of(colsLike)] tensor of zeros with the element
/// type of `type`, with dynamic extents read from the two values: the
/// accumulator that moe.combine adds the expert rows into.
mlir::Value createZeros(mlir::OpBuilder &builder, mlir::Location loc,
                        mlir::Value rowsLike, mlir::Value colsLike,
                        mlir::RankedTensorType type);

} // namespace moec

#endif // MOEC_PASSES_GRAPHBUILDERS_H
