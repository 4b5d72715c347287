//===- MoEDialect.cpp - The moe dialect -----------------------------------===//

#include "dialects/MoE/MoEDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

using namespace mlir;
using namespace moec::moe;

#include "dialects/MoE/MoEDialect.cpp.inc"
#include "dialects/MoE/MoEEnums.cpp.inc"

llvm::ArrayRef<llvm::StringLiteral> moec::moe::entryRoles(bool isResult) {
  static constexpr llvm::StringLiteral argRoles[] = {"input", "parameter",
                                                     "optimizer_state"};
  static constexpr llvm::StringLiteral resultRoles[] = {"output", "metric",
                                                        "gradient"};
  if (isResult)
    return resultRoles;
  return argRoles;
}

/// Checks one `moe.*` attribute on an entry-point argument or result.
static LogicalResult verifyEntryAttribute(Operation *op, Type type,
                                          NamedAttribute attr, bool isResult,
                                          unsigned index) {
  StringRef what = isResult ? "result" : "argument";
  auto fail = [&] {
    return op->emitOpError()
           << what << " " << index << ": '" << attr.getName().strref() << "' ";
  };
  if (attr.getName() == kNameAttr) {
    auto name = dyn_cast<StringAttr>(attr.getValue());
    if (!name || name.getValue().empty())
      return fail() << "must be a non-empty string, got " << attr.getValue();
    return success();
  }
  if (attr.getName() == kRoleAttr) {
    auto role = dyn_cast<StringAttr>(attr.getValue());
    ArrayRef<StringLiteral> roles = entryRoles(isResult);
    if (!role || !llvm::is_contained(roles, role.getValue())) {
      InFlightDiagnostic diag = fail() << "must be one of ";
      llvm::interleaveComma(roles, diag,
                            [&](StringRef r) { diag << "\"" << r << "\""; });
      return diag << ", got " << attr.getValue();
    }
    return success();
  }
  if (attr.getName() == kDimsAttr) {
    auto dims = dyn_cast<ArrayAttr>(attr.getValue());
    if (!dims ||
        !llvm::all_of(dims, [](Attribute a) { return isa<StringAttr>(a); }))
      return fail() << "must be an array of strings, got " << attr.getValue();
    // Lowering turns tensors into memrefs and then into LLVM values; the
    // extent count is only checkable while the type is still shaped.
    auto shaped = dyn_cast_if_present<ShapedType>(type);
    if (shaped && shaped.hasRank() &&
        static_cast<int64_t>(dims.size()) != shaped.getRank())
      return fail() << "must have one name per dimension of " << type
                    << " (" << shaped.getRank() << "), got " << dims.size();
    return success();
  }
  if (attr.getName() == kDefaultAttr && !isResult) {
    if (!isa<IntegerAttr, FloatAttr>(attr.getValue()))
      return fail() << "must be an integer or float, got " << attr.getValue();
    return success();
  }
  if (attr.getName() == kGroupsAttr && !isResult) {
    auto groups = dyn_cast<ArrayAttr>(attr.getValue());
    if (!groups ||
        !llvm::all_of(groups, [](Attribute a) { return isa<StringAttr>(a); }))
      return fail() << "must be an array of strings, got " << attr.getValue();
    return success();
  }
  return fail() << "is not a known moe attribute (expected '" << kNameAttr
                << "', '" << kRoleAttr << "', '" << kDimsAttr << "'"
                << (isResult ? "" : ", 'moe.default', 'moe.groups'") << ")";
}

LogicalResult MoEDialect::verifyRegionArgAttribute(Operation *op, unsigned,
                                                   unsigned argIndex,
                                                   NamedAttribute attr) {
  Type type = Type();
  if (auto fn = dyn_cast<FunctionOpInterface>(op))
    type = fn.getArgumentTypes()[argIndex];
  return verifyEntryAttribute(op, type, attr, /*isResult=*/false, argIndex);
}

LogicalResult MoEDialect::verifyRegionResultAttribute(Operation *op, unsigned,
                                                      unsigned resultIndex,
                                                      NamedAttribute attr) {
  Type type = Type();
  if (auto fn = dyn_cast<FunctionOpInterface>(op))
    type = fn.getResultTypes()[resultIndex];
  return verifyEntryAttribute(op, type, attr, /*isResult=*/true, resultIndex);
}

void MoEDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/MoE/MoEOps.cpp.inc"
      >();
}
