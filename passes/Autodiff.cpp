//===- Autodiff.cpp - Reverse-mode differentiation into train_step --------===//
//
// Clones the model's forward function into `train_step` and appends the
// backward pass: every op on a path from a trainable parameter to the loss
// emits its vector-Jacobian product through DifferentiableOpInterface, in
// reverse program order, so each op's result gradients are complete when it
// is visited.
//
//===----------------------------------------------------------------------===//

#include "dialects/Common/DifferentiableOpInterface.h"
#include "dialects/MoE/MoEDialect.h"
#include "dialects/NN/NNDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/GlobPattern.h"

namespace moec {
#define GEN_PASS_DEF_MOEAUTODIFF
#include "passes/Passes.h.inc"
} // namespace moec

using namespace mlir;
using namespace moec;

namespace {

constexpr StringLiteral kTrainStep = "train_step";
constexpr StringLiteral kAuxLoss = "aux_loss";
constexpr StringLiteral kZLoss = "z_loss";

/// The parameter groups that --freeze accepts besides name globs, in the
/// order help texts list them.
constexpr StringLiteral kGroups[] = {"router",     "experts", "shared_experts",
                                     "attention",  "norms",   "embeddings",
                                     "head"};

StringRef stringAttr(DictionaryAttr attrs, StringRef name) {
  auto value = attrs ? attrs.getAs<StringAttr>(name) : StringAttr();
  return value ? value.getValue() : StringRef();
}

bool isParameter(func::FuncOp fn, unsigned index) {
  return stringAttr(fn.getArgAttrDict(index), moe::kRoleAttr) == "parameter";
}

/// Follows shape-only ops (reshape, transpose, rotary) backwards to the
/// value that produced the data.
Value throughShapeOpsBackward(Value value) {
  while (Operation *def = value.getDefiningOp()) {
    if (auto reshape = dyn_cast<nn::ReshapeOp>(def))
      value = reshape.getInput();
    else if (auto transpose = dyn_cast<nn::TransposeOp>(def))
      value = transpose.getInput();
    else if (auto rotary = dyn_cast<nn::RotaryOp>(def))
      value = rotary.getInput();
    else
      break;
  }
  return value;
}

/// The linear ops that read `value`, looking through reshapes and
/// transposes.
void linearConsumers(Value value, SmallVectorImpl<nn::LinearOp> &linears) {
  for (Operation *user : value.getUsers()) {
    if (auto linear = dyn_cast<nn::LinearOp>(user))
      linears.push_back(linear);
    else if (isa<nn::ReshapeOp, nn::TransposeOp>(user))
      linearConsumers(user->getResult(0), linears);
  }
}

/// Assigns each parameter of `fn` the groups of the ops that use it: the
/// router (moe.gate, token_choice bias), experts, shared experts, attention
/// projections (linears feeding nn.attention or reading its result), norms,
/// embedding tables and the output head (the linear producing the
/// cross-entropy logits).
SmallVector<llvm::SetVector<StringRef>> classifyParameters(func::FuncOp fn) {
  SmallVector<llvm::SetVector<StringRef>> groups(fn.getNumArguments());
  auto mark = [&](Value value, StringRef group) {
    auto arg = dyn_cast_if_present<BlockArgument>(value);
    if (arg && arg.getOwner()->getParentOp() == fn.getOperation() &&
        isParameter(fn, arg.getArgNumber()))
      groups[arg.getArgNumber()].insert(group);
  };
  auto markLinear = [&](nn::LinearOp linear, StringRef group) {
    mark(linear.getWeight(), group);
    mark(linear.getBias(), group);
  };
  fn.walk([&](Operation *op) {
    if (auto gate = dyn_cast<moe::GateOp>(op)) {
      mark(gate.getWeight(), "router");
      mark(gate.getBias(), "router");
    } else if (auto choice = dyn_cast<moe::TokenChoiceOp>(op)) {
      mark(choice.getBias(), "router");
    } else if (auto experts = dyn_cast<moe::ExpertFFNOp>(op)) {
      for (Value weight : {experts.getFc1(), experts.getFc2(),
                           experts.getFc3(), experts.getFc1Bias(),
                           experts.getFc2Bias(), experts.getFc3Bias()})
        mark(weight, "experts");
    } else if (auto shared = dyn_cast<moe::SharedExpertOp>(op)) {
      for (Value weight : {shared.getFc1(), shared.getFc2(), shared.getFc3(),
                           shared.getGate()})
        mark(weight, "shared_experts");
    } else if (auto attention = dyn_cast<nn::AttentionOp>(op)) {
      for (Value operand : op->getOperands())
        if (auto linear = throughShapeOpsBackward(operand)
                              .getDefiningOp<nn::LinearOp>())
          markLinear(linear, "attention");
      SmallVector<nn::LinearOp> outputs;
      linearConsumers(attention.getResult(), outputs);
      for (nn::LinearOp linear : outputs)
        markLinear(linear, "attention");
    } else if (auto norm = dyn_cast<nn::RMSNormOp>(op)) {
      mark(norm.getWeight(), "norms");
    } else if (auto norm = dyn_cast<nn::LayerNormOp>(op)) {
      mark(norm.getWeight(), "norms");
      mark(norm.getBias(), "norms");
    } else if (auto embedding = dyn_cast<nn::EmbeddingOp>(op)) {
      mark(embedding.getTable(), "embeddings");
    } else if (auto loss = dyn_cast<nn::CrossEntropyOp>(op)) {
      if (auto linear = throughShapeOpsBackward(loss.getLogits())
                            .getDefiningOp<nn::LinearOp>())
        markLinear(linear, "head");
    }
  });
  return groups;
}

/// Index of the result of `fn` named `name`, if any.
std::optional<unsigned> findResult(func::FuncOp fn, StringRef name) {
  for (unsigned i = 0; i < fn.getNumResults(); ++i)
    if (stringAttr(fn.getResultAttrDict(i), moe::kNameAttr) == name)
      return i;
  return std::nullopt;
}

bool isScalarFloat(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && tensor.getRank() == 0 &&
         isa<FloatType>(tensor.getElementType());
}

bool isFloatTensor(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  return tensor && isa<FloatType>(tensor.getElementType());
}

struct Autodiff : moec::impl::MoEAutodiffBase<Autodiff> {
  using MoEAutodiffBase::MoEAutodiffBase;

  void runOnOperation() override;

private:
  /// Resolves --freeze entries (group names or globs over parameter names)
  /// into a set of argument indices.
  FailureOr<llvm::DenseSet<unsigned>>
  frozenParameters(func::FuncOp fn,
                   ArrayRef<llvm::SetVector<StringRef>> groups);
  /// Appends `aux_loss_coef * aux_loss + z_loss_coef * z_loss` (where the
  /// forward returns them) to the task loss; the coefficients become scalar
  /// inputs with compile-time defaults.
  Value buildObjective(func::FuncOp trainStep, func::ReturnOp ret,
                       unsigned lossIndex, OpBuilder &builder);
  LogicalResult differentiate(func::FuncOp trainStep, Value objective,
                              ArrayRef<unsigned> trainable,
                              DenseMap<Value, Value> &grads);
};

FailureOr<llvm::DenseSet<unsigned>>
Autodiff::frozenParameters(func::FuncOp fn,
                           ArrayRef<llvm::SetVector<StringRef>> groups) {
  llvm::DenseSet<unsigned> frozen;
  for (const std::string &entry : freeze) {
    bool isGroup = llvm::is_contained(kGroups, entry);
    llvm::Expected<llvm::GlobPattern> glob = llvm::GlobPattern::create(entry);
    if (!isGroup && !glob) {
      std::string message = llvm::toString(glob.takeError());
      return fn.emitError() << "--freeze='" << entry
                            << "' is neither a parameter group nor a valid "
                               "name pattern: "
                            << message;
    }
    bool matched = false;
    for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
      if (!isParameter(fn, i))
        continue;
      StringRef name = stringAttr(fn.getArgAttrDict(i), moe::kNameAttr);
      if (isGroup ? groups[i].contains(entry) : glob->match(name)) {
        frozen.insert(i);
        matched = true;
      }
    }
    if (!matched) {
      InFlightDiagnostic diag = fn.emitError()
                                << "--freeze='" << entry
                                << "' matches no parameter of @"
                                << fn.getSymName() << " (groups are ";
      llvm::interleaveComma(kGroups, diag);
      return diag << "; any other entry is a glob over parameter names)";
    }
  }
  return frozen;
}

Value Autodiff::buildObjective(func::FuncOp trainStep, func::ReturnOp ret,
                               unsigned lossIndex, OpBuilder &builder) {
  Location loc = ret.getLoc();
  Value objective = ret.getOperand(lossIndex);
  auto scalarType = cast<RankedTensorType>(objective.getType());
  for (auto [lossName, coefficient] :
       {std::pair<StringRef, double>(kAuxLoss, auxLossCoef),
        std::pair<StringRef, double>(kZLoss, zLossCoef)}) {
    std::optional<unsigned> index = findResult(trainStep, lossName);
    if (!index || ret.getOperand(*index).getType() != scalarType)
      continue;
    MLIRContext *ctx = trainStep.getContext();
    unsigned argIndex = trainStep.getNumArguments();
    NamedAttrList attrs;
    attrs.set(moe::kNameAttr,
              StringAttr::get(ctx, lossName.str() + "_coef"));
    attrs.set(moe::kRoleAttr, StringAttr::get(ctx, "input"));
    attrs.set(moe::kDefaultAttr,
              FloatAttr::get(scalarType.getElementType(), coefficient));
    if (failed(trainStep.insertArgument(argIndex, scalarType,
                                        attrs.getDictionary(ctx), loc)))
      return Value();
    Value coef = trainStep.getArgument(argIndex);
    Value scaled = nn::MulOp::create(builder, loc, coef,
                                     ret.getOperand(*index));
    objective = nn::AddOp::create(builder, loc, objective, scaled);
  }
  return objective;
}

LogicalResult Autodiff::differentiate(func::FuncOp trainStep, Value objective,
                                      ArrayRef<unsigned> trainable,
                                      DenseMap<Value, Value> &grads) {
  Block &body = trainStep.getBody().front();
  // Active values depend on a trainable parameter; only they need
  // gradients.
  llvm::DenseSet<Value> active;
  for (unsigned index : trainable)
    active.insert(trainStep.getArgument(index));
  SmallVector<Operation *> forwardOps;
  for (Operation &op : body.without_terminator()) {
    forwardOps.push_back(&op);
    if (llvm::any_of(op.getOperands(),
                     [&](Value v) { return active.contains(v); }))
      for (Value result : op.getResults())
        if (isFloatTensor(result.getType()))
          active.insert(result);
  }

  OpBuilder builder(body.getTerminator());
  Location loc = trainStep.getLoc();
  auto objectiveType = cast<RankedTensorType>(objective.getType());
  grads[objective] = arith::ConstantOp::create(
      builder, loc,
      DenseElementsAttr::get(objectiveType,
                             builder.getFloatAttr(
                                 objectiveType.getElementType(), 1.0)));

  auto accumulate = [&](Value target, Value grad) -> LogicalResult {
    if (grad.getType() != target.getType()) {
      if (!tensor::CastOp::areCastCompatible(grad.getType(),
                                             target.getType()))
        return emitError(grad.getLoc())
               << "internal error: a gradient of type " << grad.getType()
               << " was produced for a value of type " << target.getType();
      grad = tensor::CastOp::create(builder, grad.getLoc(), target.getType(),
                                    grad);
    }
    auto [it, inserted] = grads.try_emplace(target, grad);
    if (!inserted)
      it->second = nn::AddOp::create(builder, grad.getLoc(), it->second, grad);
    return success();
  };

  for (Operation *op : llvm::reverse(forwardOps)) {
    SmallVector<Value> resultGrads;
    bool anyGrad = false;
    for (Value result : op->getResults()) {
      resultGrads.push_back(grads.lookup(result));
      anyGrad |= static_cast<bool>(resultGrads.back());
    }
    if (!anyGrad)
      continue;
    llvm::BitVector required(op->getNumOperands());
    for (OpOperand &operand : op->getOpOperands())
      if (active.contains(operand.get()))
        required.set(operand.getOperandNumber());
    if (required.none())
      continue;

    // A cast only changes static knowledge of extents.
    if (auto cast = dyn_cast<tensor::CastOp>(op)) {
      if (failed(accumulate(cast.getSource(), resultGrads[0])))
        return failure();
      continue;
    }
    auto differentiable = dyn_cast<DifferentiableOpInterface>(op);
    if (!differentiable)
      return op->emitOpError()
             << "is not differentiable, but the loss depends on a trainable "
                "parameter through it (freeze the parameters that feed it, "
                "or express it with nn/moe ops)";
    SmallVector<Value> operandGrads(op->getNumOperands());
    builder.setInsertionPoint(body.getTerminator());
    if (failed(differentiable.buildVJP(builder, resultGrads, required,
                                       operandGrads)))
      return failure();
    for (unsigned i : required.set_bits()) {
      if (!operandGrads[i]) {
        if (!isFloatTensor(op->getOperand(i).getType()))
          continue;
        return op->emitOpError() << "provides no gradient for operand " << i
                                 << " of type " << op->getOperand(i).getType();
      }
      if (failed(accumulate(op->getOperand(i), operandGrads[i])))
        return failure();
    }
  }
  return success();
}

void Autodiff::runOnOperation() {
  ModuleOp module = getOperation();
  MLIRContext *ctx = &getContext();
  auto forward = module.lookupSymbol<func::FuncOp>(entry);
  if (!forward || forward.isExternal()) {
    module.emitError() << "moe-autodiff: no function @" << entry
                       << " to differentiate";
    return signalPassFailure();
  }
  if (Operation *existing = module.lookupSymbol(kTrainStep)) {
    existing->emitError() << "moe-autodiff: the module already defines @"
                          << kTrainStep;
    return signalPassFailure();
  }
  if (!forward.getBody().hasOneBlock()) {
    forward.emitOpError() << "has control flow; moe-autodiff differentiates "
                             "straight-line functions only";
    return signalPassFailure();
  }
  std::optional<unsigned> lossIndex = findResult(forward, lossName);
  if (!lossIndex || !isScalarFloat(forward.getResultTypes()[*lossIndex])) {
    forward.emitOpError() << "needs a 0-d floating-point result named '"
                          << lossName << "' (moe.name) to differentiate";
    return signalPassFailure();
  }

  SmallVector<llvm::SetVector<StringRef>> groups = classifyParameters(forward);
  for (unsigned i = 0; i < forward.getNumArguments(); ++i) {
    if (!isParameter(forward, i))
      continue;
    SmallVector<Attribute> names;
    for (StringRef group : groups[i])
      names.push_back(StringAttr::get(ctx, group));
    forward.setArgAttr(i, moe::kGroupsAttr, ArrayAttr::get(ctx, names));
  }
  FailureOr<llvm::DenseSet<unsigned>> frozen =
      frozenParameters(forward, groups);
  if (failed(frozen))
    return signalPassFailure();

  OpBuilder moduleBuilder(forward);
  moduleBuilder.setInsertionPointAfter(forward);
  auto trainStep = cast<func::FuncOp>(moduleBuilder.clone(*forward));
  trainStep.setSymName(kTrainStep);

  SmallVector<unsigned> trainable;
  for (unsigned i = 0; i < trainStep.getNumArguments(); ++i)
    if (isParameter(trainStep, i) && !frozen->contains(i))
      trainable.push_back(i);

  auto ret = cast<func::ReturnOp>(trainStep.getBody().front().getTerminator());
  OpBuilder builder(ret);
  Value objective = buildObjective(trainStep, ret, *lossIndex, builder);
  if (!objective)
    return signalPassFailure();

  DenseMap<Value, Value> grads;
  if (failed(differentiate(trainStep, objective, trainable, grads)))
    return signalPassFailure();

  // Results: the objective, the forward's scalar outputs and metrics (the
  // task loss renamed when router losses were added), then one gradient per
  // trainable parameter that the objective depends on.
  SmallVector<Value> results = {objective};
  SmallVector<DictionaryAttr> resultAttrs;
  auto attrs = [&](StringRef name, StringRef role) {
    NamedAttrList list;
    list.set(moe::kNameAttr, StringAttr::get(ctx, name));
    list.set(moe::kRoleAttr, StringAttr::get(ctx, role));
    return list.getDictionary(ctx);
  };
  resultAttrs.push_back(attrs(lossName, "output"));
  bool hasRouterLosses = objective != ret.getOperand(*lossIndex);
  for (unsigned i = 0; i < ret.getNumOperands(); ++i) {
    DictionaryAttr dict = trainStep.getResultAttrDict(i);
    StringRef role = stringAttr(dict, moe::kRoleAttr);
    auto type = cast<RankedTensorType>(ret.getOperand(i).getType());
    if (i == *lossIndex) {
      if (hasRouterLosses) {
        results.push_back(ret.getOperand(i));
        resultAttrs.push_back(attrs("task_" + lossName, "metric"));
      }
      continue;
    }
    if (role != "metric" && type.getRank() != 0)
      continue; // Per-token outputs (logits) are not training results.
    results.push_back(ret.getOperand(i));
    NamedAttrList list(dict);
    list.set(moe::kRoleAttr, StringAttr::get(ctx, "metric"));
    resultAttrs.push_back(list.getDictionary(ctx));
  }
  for (unsigned index : trainable) {
    Value grad = grads.lookup(trainStep.getArgument(index));
    StringRef name = stringAttr(trainStep.getArgAttrDict(index),
                                moe::kNameAttr);
    if (!grad) {
      // The objective does not depend on it (an unused parameter, or a
      // selection-only bias): no gradient, so no optimizer update either.
      trainStep.emitRemark() << "parameter '" << name
                             << "' does not affect the loss; it gets no "
                                "gradient";
      continue;
    }
    results.push_back(grad);
    resultAttrs.push_back(attrs(("grad." + name).str(), "gradient"));
  }

  builder.setInsertionPoint(ret);
  func::ReturnOp::create(builder, ret.getLoc(), results);
  ret.erase();
  trainStep.setFunctionType(FunctionType::get(
      ctx, trainStep.getArgumentTypes(), ValueRange(results).getTypes()));
  trainStep.setAllResultAttrs(resultAttrs);
  trainStep->setAttr(moe::kTrainingAttr, UnitAttr::get(ctx));
}

} // namespace
