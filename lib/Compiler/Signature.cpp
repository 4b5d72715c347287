//===- Signature.cpp - Entry-point signatures of a model ------------------===//

#include "moec/Signature.h"

#include "dialects/MoE/MoEDialect.h"
#include "moe/abi/moe_abi.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/JSON.h"

using namespace mlir;

namespace moec {
namespace {

std::optional<int32_t> abiDType(Type type) {
  if (type.isF32())
    return MOE_ABI_F32;
  if (type.isF16())
    return MOE_ABI_F16;
  if (type.isBF16())
    return MOE_ABI_BF16;
  if (type.isF64())
    return MOE_ABI_F64;
  if (type.isInteger(1))
    return MOE_ABI_BOOL;
  if (type.isInteger(8))
    return MOE_ABI_I8;
  if (type.isInteger(32))
    return MOE_ABI_I32;
  if (type.isInteger(64))
    return MOE_ABI_I64;
  return std::nullopt;
}

int32_t abiRole(StringRef role) {
  return llvm::StringSwitch<int32_t>(role)
      .Case("input", MOE_ABI_INPUT)
      .Case("parameter", MOE_ABI_PARAMETER)
      .Case("optimizer_state", MOE_ABI_OPTIMIZER_STATE)
      .Case("output", MOE_ABI_OUTPUT)
      .Case("metric", MOE_ABI_METRIC)
      .Case("gradient", MOE_ABI_GRADIENT);
}

StringRef roleName(int32_t role) {
  switch (role) {
  case MOE_ABI_INPUT:
    return "input";
  case MOE_ABI_PARAMETER:
    return "parameter";
  case MOE_ABI_OPTIMIZER_STATE:
    return "optimizer_state";
  case MOE_ABI_OUTPUT:
    return "output";
  case MOE_ABI_METRIC:
    return "metric";
  default:
    return "gradient";
  }
}

StringRef dtypeName(int32_t dtype) {
  switch (dtype) {
  case MOE_ABI_F32:
    return "f32";
  case MOE_ABI_F16:
    return "f16";
  case MOE_ABI_BF16:
    return "bf16";
  case MOE_ABI_F64:
    return "f64";
  case MOE_ABI_I8:
    return "i8";
  case MOE_ABI_I32:
    return "i32";
  case MOE_ABI_I64:
    return "i64";
  default:
    return "bool";
  }
}

/// Builds the signature of one argument or result from its type and its
/// `moe.*` attributes (already checked by the moe dialect's verifier).
FailureOr<ArgSignature> describe(func::FuncOp fn, Type type,
                                 DictionaryAttr attrs, bool isResult,
                                 unsigned index) {
  ArgSignature arg;
  std::string fallback = (isResult ? "result" : "arg") + std::to_string(index);
  auto name = attrs ? attrs.getAs<StringAttr>(moe::kNameAttr) : StringAttr();
  arg.name = name ? name.str() : fallback;
  auto role = attrs ? attrs.getAs<StringAttr>(moe::kRoleAttr) : StringAttr();
  arg.role = abiRole(role ? role.getValue()
                          : StringRef(moe::entryRoles(isResult).front()));

  Type element = type;
  auto tensor = dyn_cast<RankedTensorType>(type);
  arg.isScalar = !tensor;
  if (tensor) {
    element = tensor.getElementType();
    arg.shape.assign(tensor.getShape().begin(), tensor.getShape().end());
  } else if (isResult || !type.isIntOrFloat()) {
    return fn.emitOpError() << (isResult ? "result " : "argument ") << index
                            << " ('" << arg.name << "') has type " << type
                            << ", which cannot cross the model ABI (use "
                               "ranked tensors, or scalars for arguments)";
  }
  std::optional<int32_t> dtype = abiDType(element);
  if (!dtype)
    return fn.emitOpError() << (isResult ? "result " : "argument ") << index
                            << " ('" << arg.name << "') has element type "
                            << element << ", which the model ABI lacks";
  arg.dtype = *dtype;

  if (auto groups =
          attrs ? attrs.getAs<ArrayAttr>(moe::kGroupsAttr) : ArrayAttr())
    for (Attribute group : groups)
      arg.groups.push_back(cast<StringAttr>(group).str());
  if (Attribute value = attrs ? attrs.get(moe::kDefaultAttr) : Attribute()) {
    if (auto number = dyn_cast<FloatAttr>(value))
      arg.defaultValue = number.getValueAsDouble();
    else
      arg.defaultValue =
          static_cast<double>(cast<IntegerAttr>(value).getInt());
  }

  auto dims = attrs ? attrs.getAs<ArrayAttr>(moe::kDimsAttr) : ArrayAttr();
  for (auto [i, extent] : llvm::enumerate(arg.shape)) {
    if (!ShapedType::isDynamic(extent)) {
      arg.dimNames.push_back("");
      continue;
    }
    extent = MOE_ABI_DYNAMIC;
    StringRef given = dims ? cast<StringAttr>(dims[i]).getValue() : "";
    arg.dimNames.push_back(given.empty()
                               ? arg.name + "." + std::to_string(i)
                               : given.str());
  }
  return arg;
}

} // namespace

FailureOr<SmallVector<EntrySignature>> collectSignatures(ModuleOp module) {
  SmallVector<EntrySignature> entries;
  for (auto fn : module.getOps<func::FuncOp>()) {
    if (!fn.isPublic() || fn.isExternal())
      continue;
    EntrySignature entry;
    entry.name = fn.getSymName().str();
    entry.numInputs = fn.getNumArguments();
    llvm::StringSet<> names;
    auto add = [&](Type type, DictionaryAttr attrs, bool isResult,
                   unsigned index) -> LogicalResult {
      FailureOr<ArgSignature> arg = describe(fn, type, attrs, isResult, index);
      if (failed(arg))
        return failure();
      if (!names.insert(arg->name).second)
        return fn.emitOpError() << "has two arguments or results named '"
                                << arg->name << "'; names must be unique";
      entry.args.push_back(std::move(*arg));
      return success();
    };
    for (unsigned i = 0; i < fn.getNumArguments(); ++i)
      if (failed(add(fn.getArgumentTypes()[i], fn.getArgAttrDict(i),
                     /*isResult=*/false, i)))
        return failure();
    for (unsigned i = 0; i < fn.getNumResults(); ++i)
      if (failed(add(fn.getResultTypes()[i], fn.getResultAttrDict(i),
                     /*isResult=*/true, i)))
        return failure();
    entries.push_back(std::move(entry));
  }
  if (entries.empty())
    return module.emitError()
           << "the module has no public func.func: nothing to export as an "
              "entry point";
  return entries;
}

std::string signaturesToJson(ArrayRef<EntrySignature> entries) {
  llvm::json::Array jsonEntries;
  for (const EntrySignature &entry : entries) {
    llvm::json::Array args;
    for (const ArgSignature &arg : entry.args) {
      llvm::json::Array shape, dims;
      for (auto [extent, dim] : llvm::zip(arg.shape, arg.dimNames)) {
        shape.push_back(extent);
        dims.push_back(dim.empty() ? llvm::json::Value(nullptr)
                                   : llvm::json::Value(dim));
      }
      llvm::json::Object object{{"name", arg.name},
                                {"role", roleName(arg.role)},
                                {"dtype", dtypeName(arg.dtype)},
                                {"shape", std::move(shape)},
                                {"dims", std::move(dims)}};
      if (!arg.groups.empty())
        object["groups"] = llvm::json::Array(arg.groups);
      if (arg.defaultValue)
        object["default"] = *arg.defaultValue;
      args.push_back(std::move(object));
    }
    jsonEntries.push_back(
        llvm::json::Object{{"name", entry.name}, {"args", std::move(args)}});
  }
  std::string text;
  llvm::raw_string_ostream os(text);
  os << llvm::json::Value(llvm::json::Object{
      {"abi_version", MOE_ABI_VERSION}, {"entries", std::move(jsonEntries)}});
  return text;
}

} // namespace moec
