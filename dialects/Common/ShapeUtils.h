//===- ShapeUtils.h - Shape helpers shared by the nn and moe dialects -----===//
//
// Verifiers in both dialects compare shapes that may contain dynamic
// dimensions and must name the operand and the shapes at fault. These helpers
// keep the wording of those diagnostics uniform.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_DIALECTS_COMMON_SHAPEUTILS_H
#define MOEC_DIALECTS_COMMON_SHAPEUTILS_H

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Operation.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"

#include <optional>
#include <string>

namespace moec {

/// Renders a shape as `4x?x64` ("scalar" for rank 0).
std::string shapeToString(llvm::ArrayRef<int64_t> shape);

/// Two extents agree when they are equal or when either is dynamic.
inline bool dimsCompatible(int64_t a, int64_t b) {
  return a == b || mlir::ShapedType::isDynamic(a) ||
         mlir::ShapedType::isDynamic(b);
}

/// The static extent known for two compatible extents (dynamic if neither is
/// static).
inline int64_t mergeDims(int64_t a, int64_t b) {
  return mlir::ShapedType::isDynamic(a) ? b : a;
}

/// Numpy-style broadcast of two shapes; std::nullopt when they conflict.
std::optional<llvm::SmallVector<int64_t>>
broadcastShapes(llvm::ArrayRef<int64_t> lhs, llvm::ArrayRef<int64_t> rhs);

/// Fails type inference with "'<op>' op <message...>", mirroring the prefix
/// of an op verifier's diagnostics. Silent when no location is known (as when
/// a builder probes types).
template <typename... Args>
mlir::LogicalResult inferFailure(std::optional<mlir::Location> loc,
                                 llvm::StringRef opName, Args &&...args) {
  return mlir::emitOptionalError(loc, "'", opName, "' op ",
                                 std::forward<Args>(args)...);
}

/// Runs the shape checks of one op and reports the first failure as
/// "'<op>' op <message>". Works both in type inference (where there may be no
/// location and no op yet) and in verifiers. Every check is a no-op once one
/// has failed, so callers can chain checks without early returns and operands
/// that are absent (null optional operands) are skipped.
class ShapeChecker {
public:
  ShapeChecker(std::optional<mlir::Location> loc, llvm::StringRef opName)
      : loc(loc), opName(opName) {}
  explicit ShapeChecker(mlir::Operation *op)
      : loc(op->getLoc()), opName(op->getName().getStringRef()) {}

  template <typename... Args> void fail(Args &&...args) {
    if (ok)
      (void)inferFailure(loc, opName, std::forward<Args>(args)...);
    ok = false;
  }

  /// `value` must be a tensor of rank `rank`; `layout` names its dimensions,
  /// e.g. "[T, D]".
  void rank(mlir::Value value, llvm::StringRef name, int64_t rank,
            llvm::StringRef layout);
  /// Dimension `dim` of `value` must be compatible with `expected`, which is
  /// described by `what`.
  void dim(mlir::Value value, llvm::StringRef name, int64_t dim,
           int64_t expected, llvm::StringRef what);
  /// `value` must have the element type `expected` of operand `reference`.
  void elementType(mlir::Value value, llvm::StringRef name,
                   mlir::Type expected, llvm::StringRef reference);

  bool passed() const { return ok; }
  mlir::LogicalResult status() const { return mlir::success(ok); }

private:
  std::optional<mlir::Location> loc;
  llvm::StringRef opName;
  bool ok = true;
};

/// Extent `dim` of a ranked tensor value, or dynamic when the value is absent
/// or has too few dimensions (so callers need not guard before a rank check
/// has passed).
int64_t dimOf(mlir::Value value, int64_t dim);

} // namespace moec

#endif // MOEC_DIALECTS_COMMON_SHAPEUTILS_H
