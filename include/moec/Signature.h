//===- Signature.h - Entry-point signatures of a model -----------*- C++ -*-===//
//
// What the model ABI says about each entry point (name, arguments with role,
// element type, shape and dimension names) is collected from the public
// func.func ops while they still have tensor types, before lowering erases
// that information. The emitter later writes it into model.so.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_SIGNATURE_H
#define MOEC_SIGNATURE_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/SmallVector.h"

#include <optional>
#include <string>
#include <vector>

namespace moec {

struct ArgSignature {
  std::string name;
  int32_t role;  // moe_abi_role
  int32_t dtype; // moe_abi_dtype
  llvm::SmallVector<int64_t> shape; // MOE_ABI_DYNAMIC for dynamic extents
  llvm::SmallVector<std::string> dimNames; // "" for static extents
  bool isScalar; // a plain scalar (i64 seed), not a tensor, in the IR
  /// Parameters: the groups freezing selects by (moe.groups).
  std::vector<std::string> groups;
  /// Inputs: the value to use when the caller gives none (moe.default).
  std::optional<double> defaultValue;
};

struct EntrySignature {
  std::string name;
  /// Function arguments, then function results, in order.
  std::vector<ArgSignature> args;
  unsigned numInputs; // how many of `args` are function arguments
};

/// Collects the signature of every public func.func in `module`. Fails with a
/// diagnostic naming the function and argument when a type cannot cross the
/// ABI or names collide.
mlir::FailureOr<llvm::SmallVector<EntrySignature>>
collectSignatures(mlir::ModuleOp module);

/// The signatures as the JSON document stored in model.so.
std::string signaturesToJson(llvm::ArrayRef<EntrySignature> entries);

} // namespace moec

#endif // MOEC_SIGNATURE_H
