//===- MoEVJP.cpp - Vector-Jacobian products of the moe ops ---------------===//
//
// buildVJP (DifferentiableOpInterface) of every differentiable moe op. Dense
// and fused backward computations are the dedicated `moe.*_grad` ops
// (lowered in passes/MoELowering/Gradients.cpp); the gradient of
// moe.permute reuses moe.combine. Routing decisions (indices, row plans)
// are piecewise constant in the logits: no gradient flows through them, and
// integer operands and the jitter seed get none. A selection bias only
// decides which experts are chosen, so its gradient is zero.
//
// Operand groups are addressed by their ODS index (getODSOperandIndexAndLength)
// rather than by value, as one value may feed several operands.
//
//===----------------------------------------------------------------------===//

#include "dialects/MoE/MoEDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace moec::moe;

namespace {

/// The gradients that buildVJP must produce, addressed by ODS operand group.
template <typename OpT> class GradientSlots {
public:
  GradientSlots(OpT op, const llvm::BitVector &required,
                SmallVectorImpl<Value> &grads)
      : op(op), required(required), grads(grads) {}

  /// Whether the caller needs the gradient of operand group `group` (false
  /// for an absent optional operand).
  bool wants(unsigned group) const {
    auto [start, length] = op.getODSOperandIndexAndLength(group);
    return length == 1 && required[start];
  }
  bool wantsAny(std::initializer_list<unsigned> groups) const {
    return llvm::any_of(groups, [&](unsigned g) { return wants(g); });
  }
  /// Records `grad` for operand group `group` if the caller needs it.
  void set(unsigned group, Value grad) {
    if (wants(group))
      grads[op.getODSOperandIndexAndLength(group).first] = grad;
  }

private:
  mutable OpT op;
  const llvm::BitVector &required;
  SmallVectorImpl<Value> &grads;
};

/// A tensor with the extents of `like` and element type `element` (of
/// `like` when null), filled with `value`.
Value splat(OpBuilder &b, Location loc, Value like, double value,
            Type element = Type()) {
  auto likeType = cast<RankedTensorType>(like.getType());
  auto type = RankedTensorType::get(
      likeType.getShape(), element ? element : likeType.getElementType());
  Value scalar = arith::ConstantOp::create(
      b, loc, b.getFloatAttr(type.getElementType(), value));
  SmallVector<Value> dynamicSizes;
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (type.isDynamicDim(d))
      dynamicSizes.push_back(tensor::DimOp::create(b, loc, like, d));
  return tensor::SplatOp::create(b, loc, scalar, type, dynamicSizes);
}

} // namespace

//===----------------------------------------------------------------------===//
// Routing
//===----------------------------------------------------------------------===//

LogicalResult GateOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                               const llvm::BitVector &required,
                               SmallVectorImpl<Value> &operandGrads) {
  enum { kInput, kWeight, kBias };
  GradientSlots<GateOp> slots(*this, required, operandGrads);
  if (!resultGrads[0] || !slots.wantsAny({kInput, kWeight, kBias}))
    return success();
  auto grad = GateGradOp::create(b, getLoc(), resultGrads[0], getInput(),
                                 getWeight(), getSeed(), getJitterEpsAttr());
  slots.set(kInput, grad.getInputGrad());
  slots.set(kWeight, grad.getWeightGrad());
  slots.set(kBias, grad.getBiasGrad());
  return success();
}

LogicalResult TokenChoiceOp::buildVJP(OpBuilder &b,
                                      ArrayRef<Value> resultGrads,
                                      const llvm::BitVector &required,
                                      SmallVectorImpl<Value> &operandGrads) {
  enum { kLogits, kBias };
  GradientSlots<TokenChoiceOp> slots(*this, required, operandGrads);
  Value weightsGrad = resultGrads[0], probsGrad = resultGrads[2];
  if (slots.wants(kBias))
    slots.set(kBias, splat(b, getLoc(), getBias(), 0.0));
  if (!slots.wants(kLogits))
    return success();
  if (!weightsGrad && !probsGrad) {
    slots.set(kLogits, splat(b, getLoc(), getLogits(), 0.0));
    return success();
  }
  // Phi-3.5-MoE trains SparseMixer with its own gradient estimator; the
  // inference routing that onnxruntime computes has none.
  if (getScore() == ScoreFunction::sparse_mixer)
    return emitOpError()
           << "cannot be differentiated: sparse_mixer routing is inference "
              "only";
  slots.set(kLogits, TokenChoiceGradOp::create(
                         b, getLoc(), getProbs(), getIndices(), weightsGrad,
                         probsGrad, getScoreAttr(), getNormalizeAttr(),
                         getScalingFactorAttr()));
  return success();
}

LogicalResult ExpertChoiceOp::buildVJP(OpBuilder &b,
                                       ArrayRef<Value> resultGrads,
                                       const llvm::BitVector &required,
                                       SmallVectorImpl<Value> &operandGrads) {
  enum { kLogits };
  GradientSlots<ExpertChoiceOp> slots(*this, required, operandGrads);
  Value rowWeightGrad = resultGrads[1], probsGrad = resultGrads[3];
  if (!slots.wants(kLogits))
    return success();
  if (!rowWeightGrad && !probsGrad) {
    slots.set(kLogits, splat(b, getLoc(), getLogits(), 0.0));
    return success();
  }
  slots.set(kLogits, ExpertChoiceGradOp::create(
                         b, getLoc(), getProbs(), getRowToken(), getOffsets(),
                         rowWeightGrad, probsGrad));
  return success();
}

LogicalResult DispatchOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                   const llvm::BitVector &required,
                                   SmallVectorImpl<Value> &operandGrads) {
  enum { kIndices, kWeights };
  GradientSlots<DispatchOp> slots(*this, required, operandGrads);
  Value rowWeightGrad = resultGrads[1];
  if (!slots.wants(kWeights))
    return success();
  if (!rowWeightGrad) {
    slots.set(kWeights, splat(b, getLoc(), getWeights(), 0.0));
    return success();
  }
  slots.set(kWeights,
            DispatchGradOp::create(b, getLoc(), rowWeightGrad, getIndices(),
                                   getRowToken(), getOffsets()));
  return success();
}

//===----------------------------------------------------------------------===//
// Rows, experts, combine
//===----------------------------------------------------------------------===//

LogicalResult PermuteOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                  const llvm::BitVector &required,
                                  SmallVectorImpl<Value> &operandGrads) {
  enum { kInput };
  GradientSlots<PermuteOp> slots(*this, required, operandGrads);
  if (!resultGrads[0] || !slots.wants(kInput))
    return success();
  // The transpose of a gather is a scatter-add: combine with unit weights.
  Location loc = getLoc();
  Type element = getInput().getType().getElementType();
  Value ones = splat(b, loc, getRowToken(), 1.0, element);
  Value zeros = splat(b, loc, getInput(), 0.0);
  slots.set(kInput, CombineOp::create(b, loc, resultGrads[0], getRowToken(),
                                      ones, zeros));
  return success();
}

LogicalResult ExpertFFNOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                    const llvm::BitVector &required,
                                    SmallVectorImpl<Value> &operandGrads) {
  enum { kInput, kOffsets, kFc1, kFc2, kFc3, kFc1Bias, kFc2Bias, kFc3Bias };
  GradientSlots<ExpertFFNOp> slots(*this, required, operandGrads);
  if (!resultGrads[0] || !slots.wantsAny({kInput, kFc1, kFc2, kFc3, kFc1Bias,
                                          kFc2Bias, kFc3Bias}))
    return success();
  // Gradients the caller does not take (frozen experts) stay unused, and the
  // lowering does not compute unused results.
  auto grad = ExpertFFNGradOp::create(
      b, getLoc(), resultGrads[0], getInput(), getOffsets(), getFc1(),
      getFc2(), getFc3(), getFc1Bias(), getFc2Bias(), getFc3Bias(),
      getActivationAttr(), getSwigluAlphaAttr(), getSwigluBetaAttr(),
      getSwigluLimitAttr());
  slots.set(kInput, grad.getInputGrad());
  slots.set(kFc1, grad.getFc1Grad());
  slots.set(kFc2, grad.getFc2Grad());
  slots.set(kFc3, grad.getFc3Grad());
  slots.set(kFc1Bias, grad.getFc1BiasGrad());
  slots.set(kFc2Bias, grad.getFc2BiasGrad());
  slots.set(kFc3Bias, grad.getFc3BiasGrad());
  return success();
}

LogicalResult CombineOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                  const llvm::BitVector &required,
                                  SmallVectorImpl<Value> &operandGrads) {
  enum { kInput, kRowToken, kRowWeight, kInit };
  GradientSlots<CombineOp> slots(*this, required, operandGrads);
  Value grad = resultGrads[0];
  if (!grad)
    return success();
  slots.set(kInit, grad);
  if (!slots.wantsAny({kInput, kRowWeight}))
    return success();
  auto rows = CombineGradOp::create(b, getLoc(), grad, getInput(),
                                    getRowToken(), getRowWeight());
  slots.set(kInput, rows.getInputGrad());
  slots.set(kRowWeight, rows.getRowWeightGrad());
  return success();
}

LogicalResult SharedExpertOp::buildVJP(OpBuilder &b,
                                       ArrayRef<Value> resultGrads,
                                       const llvm::BitVector &required,
                                       SmallVectorImpl<Value> &operandGrads) {
  enum { kInput, kFc1, kFc2, kFc3, kGate };
  GradientSlots<SharedExpertOp> slots(*this, required, operandGrads);
  if (!resultGrads[0] || !slots.wantsAny({kInput, kFc1, kFc2, kFc3, kGate}))
    return success();
  auto grad = SharedExpertGradOp::create(b, getLoc(), resultGrads[0],
                                         getInput(), getFc1(), getFc2(),
                                         getFc3(), getGate(),
                                         getActivationAttr());
  slots.set(kInput, grad.getInputGrad());
  slots.set(kFc1, grad.getFc1Grad());
  slots.set(kFc2, grad.getFc2Grad());
  slots.set(kFc3, grad.getFc3Grad());
  slots.set(kGate, grad.getGateGrad());
  return success();
}

//===----------------------------------------------------------------------===//
// Router losses
//===----------------------------------------------------------------------===//

LogicalResult
LoadBalancingLossOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                              const llvm::BitVector &required,
                              SmallVectorImpl<Value> &operandGrads) {
  enum { kProbs };
  GradientSlots<LoadBalancingLossOp> slots(*this, required, operandGrads);
  if (!resultGrads[0] || !slots.wants(kProbs))
    return success();
  slots.set(kProbs, LoadBalancingLossGradOp::create(
                        b, getLoc(), resultGrads[0], getProbs(), getIndices()));
  return success();
}

LogicalResult ZLossOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                const llvm::BitVector &required,
                                SmallVectorImpl<Value> &operandGrads) {
  enum { kLogits };
  GradientSlots<ZLossOp> slots(*this, required, operandGrads);
  if (!resultGrads[0] || !slots.wants(kLogits))
    return success();
  slots.set(kLogits, ZLossGradOp::create(b, getLoc(), resultGrads[0],
                                         getLogits()));
  return success();
}
