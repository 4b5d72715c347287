//===- ShapeUtils.cpp - Shape helpers shared by the nn and moe dialects ---===//

#include "dialects/Common/ShapeUtils.h"

#include "llvm/Support/raw_ostream.h"

using namespace mlir;

namespace moec {

std::string shapeToString(llvm::ArrayRef<int64_t> shape) {
  if (shape.empty())
    return "scalar";
  std::string text;
  llvm::raw_string_ostream os(text);
  llvm::interleave(
      shape, os,
      [&](int64_t d) {
        if (ShapedType::isDynamic(d))
          os << '?';
        else
          os << d;
      },
      "x");
  return text;
}

std::optional<llvm::SmallVector<int64_t>>
broadcastShapes(llvm::ArrayRef<int64_t> lhs, llvm::ArrayRef<int64_t> rhs) {
  size_t rank = std::max(lhs.size(), rhs.size());
  llvm::SmallVector<int64_t> result(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t a = i < rank - lhs.size() ? 1 : lhs[i - (rank - lhs.size())];
    int64_t b = i < rank - rhs.size() ? 1 : rhs[i - (rank - rhs.size())];
    if (a == 1)
      result[i] = b;
    else if (b == 1)
      result[i] = a;
    else if (dimsCompatible(a, b))
      result[i] = mergeDims(a, b);
    else
      return std::nullopt;
  }
  return result;
}

void ShapeChecker::rank(Value value, llvm::StringRef name, int64_t rank,
                        llvm::StringRef layout) {
  if (!ok || !value)
    return;
  auto type = cast<ShapedType>(value.getType());
  if (type.getRank() != rank)
    fail("'", name, "' must have rank ", rank, " (", layout, "), got ", type);
}

void ShapeChecker::dim(Value value, llvm::StringRef name, int64_t dim,
                       int64_t expected, llvm::StringRef what) {
  if (!ok || !value)
    return;
  auto type = cast<ShapedType>(value.getType());
  if (dim >= type.getRank() || dimsCompatible(type.getDimSize(dim), expected))
    return;
  fail("'", name, "' dimension ", dim, " (", type.getDimSize(dim),
       ") must equal ", what, " (", expected, "); '", name, "' has shape ",
       shapeToString(type.getShape()));
}

void ShapeChecker::elementType(Value value, llvm::StringRef name,
                               Type expected, llvm::StringRef reference) {
  if (!ok || !value)
    return;
  Type actual = cast<ShapedType>(value.getType()).getElementType();
  if (actual != expected)
    fail("'", name, "' element type (", actual, ") must match '", reference,
         "' element type (", expected, ")");
}

int64_t dimOf(Value value, int64_t dim) {
  if (!value)
    return ShapedType::kDynamic;
  auto type = cast<ShapedType>(value.getType());
  return dim < type.getRank() ? type.getDimSize(dim) : ShapedType::kDynamic;
}

} // namespace moec
