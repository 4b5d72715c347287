//===- MoEDialect.h - The moe dialect -----------------------------*- C++ -*-===//
#ifndef MOEC_DIALECTS_MOE_MOEDIALECT_H
#define MOEC_DIALECTS_MOE_MOEDIALECT_H

#include "dialects/Common/DifferentiableOpInterface.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/MoE/MoEDialect.h.inc"
#include "dialects/MoE/MoEEnums.h.inc"

#define GET_OP_CLASSES
#include "dialects/MoE/MoEOps.h.inc"

namespace moec::moe {

/// Attributes that describe the arguments and results of a model entry point
/// (a public func.func); see the dialect description.
inline constexpr llvm::StringLiteral kNameAttr = "moe.name";
inline constexpr llvm::StringLiteral kRoleAttr = "moe.role";
inline constexpr llvm::StringLiteral kDimsAttr = "moe.dims";
/// The value a runtime uses for a scalar input the caller does not give (the
/// loss coefficients of train_step); an integer or float attribute.
inline constexpr llvm::StringLiteral kDefaultAttr = "moe.default";
/// The parameter groups of a parameter ("router", "experts", ...), which
/// freezing selects by; set by moe-autodiff.
inline constexpr llvm::StringLiteral kGroupsAttr = "moe.groups";
/// Marks a function that runs in training mode (train_step): routing keeps
/// jitter and uses the training capacity factor.
inline constexpr llvm::StringLiteral kTrainingAttr = "moe.training";

/// Activations that multiply the activated fc1 projection by the fc3
/// projection, and so need the fc3 weights.
inline bool isGated(Activation activation) {
  return activation == Activation::swiglu || activation == Activation::geglu ||
         activation == Activation::geglu_tanh;
}

/// Roles an entry-point argument (isResult = false) or result may have; the
/// first is the default.
llvm::ArrayRef<llvm::StringLiteral> entryRoles(bool isResult);

} // namespace moec::moe

#endif // MOEC_DIALECTS_MOE_MOEDIALECT_H
