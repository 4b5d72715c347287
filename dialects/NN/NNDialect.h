//===- NNDialect.h - The nn dialect -------------------------------*- C++ -*-===//
#ifndef MOEC_DIALECTS_NN_NNDIALECT_H
#define MOEC_DIALECTS_NN_NNDIALECT_H

#include "dialects/Common/DifferentiableOpInterface.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/NN/NNDialect.h.inc"
#include "dialects/NN/NNEnums.h.inc"

namespace moec::nn {
/// Result type of a broadcasting binary op; shared by every NN_BinaryOp.
llvm::LogicalResult
inferBroadcastResult(std::optional<mlir::Location> location,
                     llvm::StringRef opName, mlir::Type lhs, mlir::Type rhs,
                     llvm::SmallVectorImpl<mlir::Type> &inferred);

/// Result type of a reduction over `axes` (nn.reduce_sum, reduce_mean,
/// reduce_max).
llvm::LogicalResult
inferReductionResult(std::optional<mlir::Location> location,
                     llvm::StringRef opName, mlir::Type input,
                     llvm::ArrayRef<int64_t> axes, bool keepDims,
                     llvm::SmallVectorImpl<mlir::Type> &inferred);

/// `axis` counted from the front ([0, rank)); negative values count from
/// the end.
inline int64_t normalizeAxis(int64_t axis, int64_t rank) {
  return axis < 0 ? axis + rank : axis;
}

/// `axes` counted from the front ([0, rank)).
llvm::SmallVector<int64_t> normalizeAxes(llvm::ArrayRef<int64_t> axes,
                                         int64_t rank);
} // namespace moec::nn

#define GET_OP_CLASSES
#include "dialects/NN/NNOps.h.inc"

#endif // MOEC_DIALECTS_NN_NNDIALECT_H
