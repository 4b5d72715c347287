//===- SpecializeRouting.cpp - Train or eval routing ----------------------===//
//
// Switch / GShard route differently in training and evaluation: router
// jitter only in training, and a separate (usually larger) capacity factor
// in evaluation. The ops carry both configurations; this pass keeps one.
//
//===----------------------------------------------------------------------===//

#include "dialects/MoE/MoEDialect.h"
#include "passes/Passes.h"

#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "llvm/ADT/SetVector.h"

namespace moec {
#define GEN_PASS_DEF_MOESPECIALIZEROUTING
#include "passes/Passes.h.inc"
} // namespace moec

using namespace mlir;
using namespace moec::moe;

namespace {

/// Re-infers the result types of `root` after an attribute change and of
/// every op that (transitively) uses a result whose type changed: a new
/// capacity factor changes the row count R of a row plan, and with it the
/// types of the permuted rows and expert outputs.
LogicalResult refreshResultTypes(Operation *root) {
  llvm::SetVector<Operation *> worklist;
  worklist.insert(root);
  for (size_t i = 0; i < worklist.size(); ++i) {
    Operation *op = worklist[i];
    auto infer = dyn_cast<InferTypeOpInterface>(op);
    if (!infer)
      return op->emitOpError()
             << "uses a row plan whose row count moe-specialize-routing "
                "changed, but does not infer its result types";
    SmallVector<Type> types;
    if (failed(infer.inferReturnTypes(
            op->getContext(), op->getLoc(), op->getOperands(),
            op->getRawDictionaryAttrs(), op->getPropertiesStorage(),
            op->getRegions(), types)))
      return failure();
    for (auto [result, type] : llvm::zip(op->getResults(), types)) {
      if (result.getType() == type)
        continue;
      result.setType(type);
      for (Operation *user : result.getUsers())
        worklist.insert(user);
    }
  }
  return success();
}

/// Makes `eval_capacity_factor` the capacity factor (eval) or drops it
/// (train).
template <typename OpT> LogicalResult specializeCapacity(OpT op, bool eval) {
  FloatAttr evalFactor = op.getEvalCapacityFactorAttr();
  if (!evalFactor)
    return success();
  op.removeEvalCapacityFactorAttr();
  if (!eval)
    return success();
  op.setCapacityFactorAttr(evalFactor);
  return refreshResultTypes(op);
}

struct MoESpecializeRouting
    : moec::impl::MoESpecializeRoutingBase<MoESpecializeRouting> {
  using Base::Base;

  void runOnOperation() override {
    if (mode != "train" && mode != "eval") {
      getOperation()->emitError()
          << "moe-specialize-routing: 'mode' must be 'train' or 'eval', got '"
          << mode << "'";
      return signalPassFailure();
    }
    bool eval = mode == "eval";
    SmallVector<Operation *> ops;
    getOperation()->walk([&](Operation *op) {
      if (isa<GateOp, LayerOp, DispatchOp, ExpertChoiceOp>(op))
        ops.push_back(op);
    });
    Builder builder(&getContext());
    FloatAttr noJitter = builder.getF32FloatAttr(0.0f);
    for (Operation *op : ops) {
      LogicalResult result = success();
      if (auto gate = dyn_cast<GateOp>(op)) {
        if (eval) {
          gate.getSeedMutable().clear();
          gate.setJitterEpsAttr(noJitter);
        }
      } else if (auto layer = dyn_cast<LayerOp>(op)) {
        if (eval) {
          layer.getSeedMutable().clear();
          layer.setJitterEpsAttr(noJitter);
        }
        // The layer's results do not depend on the row count.
        result = specializeCapacity(layer, eval);
      } else if (auto dispatch = dyn_cast<DispatchOp>(op)) {
        result = specializeCapacity(dispatch, eval);
      } else {
        result = specializeCapacity(cast<ExpertChoiceOp>(op), eval);
      }
      if (failed(result))
        return signalPassFailure();
    }
  }
};

} // namespace
