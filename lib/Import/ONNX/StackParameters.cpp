//===- StackParameters.cpp - Decomposed MoE FFNs with stacked weights ----===//
//
// Exporters without an MoE op give every expert its own weight matrices.
// moe-raise-decomposed turns such graphs into one grouped expert FFN whose
// weights are `nn.concat` of the experts' matrices, each reshaped to
// [1, D, F]. Copying every expert's weights on every call would double the
// weight traffic of the layer, so the importer runs the pass itself and,
// since it holds the bytes, replaces each such stack by one parameter that
// holds the stacked values.
//
//===----------------------------------------------------------------------===//

#include "Importer.h"

#include "dialects/NN/NNDialect.h"
#include "passes/Passes.h"

#include "mlir/Pass/PassManager.h"

#include "llvm/ADT/BitVector.h"

#include <cctype>
#include <map>
#include <set>

using namespace mlir;
using namespace moec;
using namespace moec::onnx_import;

namespace {

/// The parameter argument behind `value` = nn.reshape(%parameter) that only
/// adds a leading unit dimension, when both have no other use.
BlockArgument stackedArgument(Value value, func::FuncOp function) {
  auto reshape = value.getDefiningOp<nn::ReshapeOp>();
  if (!reshape || !reshape->hasOneUse() || !reshape.getDynamicSizes().empty())
    return {};
  auto argument = dyn_cast<BlockArgument>(reshape.getInput());
  if (!argument || argument.getOwner() != &function.getBody().front() ||
      !argument.hasOneUse())
    return {};
  auto role = function.getArgAttrOfType<StringAttr>(argument.getArgNumber(),
                                                    "moe.role");
  auto inputType = cast<RankedTensorType>(argument.getType());
  auto resultType = cast<RankedTensorType>(reshape.getType());
  if (!role || role.getValue() != "parameter" ||
      !inputType.hasStaticShape() || resultType.getRank() < 1 ||
      resultType.getDimSize(0) != 1 ||
      resultType.getShape().drop_front() != inputType.getShape())
    return {};
  return argument;
}

/// "layers.0.experts.3.w1" and its siblings give "layers.0.experts.w1".
std::string stackName(llvm::ArrayRef<std::string> names,
                      const std::set<std::string> &taken) {
  llvm::StringRef first = names.front();
  size_t prefix = first.size(), suffix = first.size();
  for (llvm::StringRef name : names.drop_front()) {
    size_t p = 0;
    while (p < prefix && p < name.size() && name[p] == first[p])
      ++p;
    prefix = p;
    size_t s = 0;
    while (s < suffix && s < name.size() &&
           name[name.size() - 1 - s] == first[first.size() - 1 - s])
      ++s;
    suffix = s;
  }
  suffix = std::min(suffix, first.size() - prefix);
  std::string head = first.take_front(prefix).str();
  std::string tail = first.take_back(suffix).str();
  // Digits shared by all (expert 1 and 11) belong to the index.
  while (!head.empty() && std::isdigit(static_cast<unsigned char>(head.back())))
    head.pop_back();
  while (!tail.empty() && std::isdigit(static_cast<unsigned char>(tail[0])))
    tail.erase(0, 1);
  if (!head.empty() && !tail.empty() && head.back() == tail[0])
    tail.erase(0, 1);
  std::string name = head + tail;
  if (name.empty() || taken.count(name))
    name = first.str() + ".stacked";
  return name;
}

} // namespace

static void stackParameters(ModuleOp module,
                            std::vector<ParameterValue> &params) {
  auto function = module.lookupSymbol<func::FuncOp>("forward");
  if (!function)
    return;
  SmallVector<nn::ConcatOp> stacks;
  function.walk([&](nn::ConcatOp concat) {
    if (concat.getAxis() != 0 || concat.getInputs().size() < 2)
      return;
    llvm::SmallPtrSet<Value, 8> seen;
    for (Value input : concat.getInputs()) {
      BlockArgument argument = stackedArgument(input, function);
      if (!argument || !seen.insert(argument).second)
        return;
    }
    stacks.push_back(concat);
  });
  if (stacks.empty())
    return;

  std::map<std::string, size_t> byName;
  std::set<std::string> taken;
  for (auto [i, parameter] : llvm::enumerate(params)) {
    byName[parameter.name] = i;
    taken.insert(parameter.name);
  }
  Block &entry = function.getBody().front();
  llvm::BitVector erased(entry.getNumArguments());
  std::vector<bool> dropped(params.size(), false);
  for (nn::ConcatOp concat : stacks) {
    ParameterValue stacked;
    std::vector<std::string> names;
    SmallVector<Operation *> reshapes;
    for (Value input : concat.getInputs()) {
      BlockArgument argument = stackedArgument(input, function);
      auto name = function.getArgAttrOfType<StringAttr>(
          argument.getArgNumber(), "moe.name");
      size_t index = byName.at(name.str());
      const ParameterValue &part = params[index];
      stacked.bytes.insert(stacked.bytes.end(), part.bytes.begin(),
                           part.bytes.end());
      stacked.dtype = part.dtype;
      names.push_back(part.name);
      dropped[index] = true;
      erased.set(argument.getArgNumber());
      reshapes.push_back(input.getDefiningOp());
    }
    auto type = cast<RankedTensorType>(concat.getType());
    stacked.shape.assign(type.getShape().begin(), type.getShape().end());
    stacked.name = stackName(names, taken);
    taken.insert(stacked.name);

    OpBuilder b(module.getContext());
    unsigned position = entry.getNumArguments();
    (void)function.insertArgument(
        position, type,
        b.getDictionaryAttr(
            {b.getNamedAttr("moe.name", b.getStringAttr(stacked.name)),
             b.getNamedAttr("moe.role", b.getStringAttr("parameter"))}),
        concat.getLoc());
    BlockArgument argument = entry.getArgument(position);
    erased.resize(entry.getNumArguments());
    concat.replaceAllUsesWith(argument);
    concat.erase();
    for (Operation *reshape : reshapes)
      reshape->erase();
    params.push_back(std::move(stacked));
    dropped.push_back(false);
  }
  (void)function.eraseArguments(erased);
  std::vector<ParameterValue> kept;
  for (auto [i, parameter] : llvm::enumerate(params))
    if (!dropped[i])
      kept.push_back(std::move(parameter));
  params = std::move(kept);
}

void moec::onnx_import::raiseDecomposedMoE(
    ModuleOp module, std::vector<ParameterValue> &parameters) {
  PassManager pm(module.getContext());
  pm.addPass(createMoERaiseDecomposed());
  // The pass only rewrites what it recognises and leaves valid IR otherwise;
  // a failure here would be an internal error, reported by the pass.
  if (failed(pm.run(module)))
    throw ImportError("internal error: moe-raise-decomposed failed");
  stackParameters(module, parameters);
}
