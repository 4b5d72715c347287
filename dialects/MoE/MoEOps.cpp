//===- MoEOps.cpp - moe dialect operations --------------------------------===//

#include "dialects/Common/ShapeUtils.h"
#include "dialects/MoE/MoEDialect.h"
#include "dialects/MoE/MoEUtils.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace moec;
using namespace moec::moe;

namespace {
RankedTensorType ranked(Value value) {
  return cast<RankedTensorType>(value.getType());
}
Type elementTypeOf(Value value) { return ranked(value).getElementType(); }

constexpr int64_t kDynamic = ShapedType::kDynamic;

bool isStatic(int64_t extent) { return !ShapedType::isDynamic(extent); }

/// The optional capacity factor attribute as a double.
std::optional<double> capacityFactorOf(FloatAttr attr) {
  if (!attr)
    return std::nullopt;
  return attr.getValueAsDouble();
}

RankedTensorType i32Vector(MLIRContext *context, int64_t n) {
  return RankedTensorType::get({n}, IntegerType::get(context, 32));
}

bool isGated(Activation activation) {
  return activation == Activation::swiglu || activation == Activation::geglu;
}

/// Checks the FFN weights shared by moe.expert_ffn, moe.shared_expert and
/// moe.layer. `grouped` weights carry a leading expert dimension of extent
/// `experts`. Returns D_out, the output feature size.
int64_t checkFFN(ShapeChecker &check, bool grouped, int64_t experts,
                 Value input, Value fc1, Value fc2, Value fc3, Value fc1Bias,
                 Value fc2Bias, Value fc3Bias, Activation activation) {
  int64_t lead = grouped ? 1 : 0;
  StringRef inLayout = grouped ? "[E, D, F]" : "[D, F]";
  StringRef outLayout = grouped ? "[E, F, D_out]" : "[F, D_out]";
  Type element = elementTypeOf(input);
  int64_t features = dimOf(input, ranked(input).getRank() - 1);

  if (isGated(activation) && !fc3)
    check.fail("activation '", stringifyActivation(activation),
               "' is gated and needs the 'fc3' weights");
  if (!isGated(activation) && fc3)
    check.fail("'fc3' is used only by gated activations (swiglu, geglu), "
               "not by '",
               stringifyActivation(activation), "'");
  if (fc3Bias && !fc3)
    check.fail("'fc3_bias' needs 'fc3'");

  check.rank(fc1, "fc1", 2 + lead, inLayout);
  check.rank(fc2, "fc2", 2 + lead, outLayout);
  check.rank(fc3, "fc3", 2 + lead, inLayout);
  check.rank(fc1Bias, "fc1_bias", 1 + lead, grouped ? "[E, F]" : "[F]");
  check.rank(fc2Bias, "fc2_bias", 1 + lead, grouped ? "[E, D_out]" : "[D_out]");
  check.rank(fc3Bias, "fc3_bias", 1 + lead, grouped ? "[E, F]" : "[F]");
  for (auto [value, name] :
       {std::pair{fc1, "fc1"}, {fc2, "fc2"}, {fc3, "fc3"},
        {fc1Bias, "fc1_bias"}, {fc2Bias, "fc2_bias"}, {fc3Bias, "fc3_bias"}}) {
    check.elementType(value, name, element, "input");
    if (grouped)
      check.dim(value, name, 0, experts, "the number of experts");
  }
  check.dim(fc1, "fc1", lead, features, "the feature size D of 'input'");
  int64_t hidden = dimOf(fc1, lead + 1);
  check.dim(fc3, "fc3", lead, features, "the feature size D of 'input'");
  check.dim(fc3, "fc3", lead + 1, hidden, "the hidden size F of 'fc1'");
  check.dim(fc2, "fc2", lead, hidden, "the hidden size F of 'fc1'");
  check.dim(fc1Bias, "fc1_bias", lead, hidden, "the hidden size F of 'fc1'");
  check.dim(fc3Bias, "fc3_bias", lead, hidden, "the hidden size F of 'fc1'");
  int64_t outFeatures = dimOf(fc2, lead + 1);
  check.dim(fc2Bias, "fc2_bias", lead, outFeatures,
            "the output size D_out of 'fc2'");
  return outFeatures;
}

/// Checks the token-choice attributes for `experts` experts.
void checkTokenChoice(ShapeChecker &check, int64_t experts, int64_t k,
                      int64_t numGroups, int64_t topkGroups,
                      float scalingFactor) {
  if (k < 1)
    check.fail("'k' must be >= 1, got ", k);
  if (numGroups < 1)
    check.fail("'num_groups' must be >= 1, got ", numGroups);
  if (topkGroups < 1 || topkGroups > numGroups)
    check.fail("'topk_groups' (", topkGroups,
               ") must lie in [1, num_groups = ", numGroups, "]");
  if (!(scalingFactor > 0.0f))
    check.fail("'scaling_factor' must be > 0, got ", scalingFactor);
  if (!check.passed() || !isStatic(experts))
    return;
  if (experts % numGroups != 0)
    check.fail("'num_groups' (", numGroups, ") must divide the ", experts,
               " experts");
  else if (k > topkGroups * (experts / numGroups))
    check.fail("'k' (", k, ") exceeds the ", topkGroups * (experts / numGroups),
               " experts eligible (", experts, " experts, ", topkGroups,
               " of ", numGroups, " groups)");
}

/// Checks a router-side `[E]` vector (biases on logits or selection scores).
void checkExpertVector(ShapeChecker &check, Value vector, StringRef name,
                       int64_t experts, Type element, StringRef reference) {
  check.rank(vector, name, 1, "[E]");
  check.dim(vector, name, 0, experts, "the number of experts");
  check.elementType(vector, name, element, reference);
}
} // namespace

//===----------------------------------------------------------------------===//
// GateOp
//===----------------------------------------------------------------------===//

LogicalResult GateOp::inferReturnTypes(MLIRContext *,
                                       std::optional<Location> location,
                                       Adaptor adaptor,
                                       SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  Value input = adaptor.getInput(), weight = adaptor.getWeight();
  check.rank(input, "input", 2, "[T, D]");
  check.rank(weight, "weight", 2, "[D, E]");
  check.elementType(weight, "weight", elementTypeOf(input), "input");
  check.dim(weight, "weight", 0, dimOf(input, 1),
            "the feature size D of 'input'");
  int64_t experts = dimOf(weight, 1);
  checkExpertVector(check, adaptor.getBias(), "bias", experts,
                    elementTypeOf(input), "input");
  if (!check.passed())
    return failure();
  inferred.push_back(
      RankedTensorType::get({dimOf(input, 0), experts}, elementTypeOf(input)));
  return success();
}

LogicalResult GateOp::verify() {
  float eps = getJitterEps().convertToFloat();
  if (!(eps >= 0.0f && eps < 1.0f))
    return emitOpError() << "'jitter_eps' must lie in [0, 1), got " << eps;
  if (eps > 0.0f && !getSeed())
    return emitOpError() << "'jitter_eps' = " << eps
                         << " needs a 'seed' operand to draw the jitter";
  return success();
}

namespace {
/// A seed without jitter changes nothing; dropping it frees the value.
struct DropUnusedGateSeed : OpRewritePattern<GateOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(GateOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getSeed() || !op.getJitterEps().isZero())
      return failure();
    rewriter.modifyOpInPlace(op, [&] { op.getSeedMutable().clear(); });
    return success();
  }
};
} // namespace

void GateOp::getCanonicalizationPatterns(RewritePatternSet &patterns,
                                         MLIRContext *context) {
  patterns.add<DropUnusedGateSeed>(context);
}

//===----------------------------------------------------------------------===//
// TokenChoiceOp
//===----------------------------------------------------------------------===//

LogicalResult TokenChoiceOp::inferReturnTypes(
    MLIRContext *context, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  Value logits = adaptor.getLogits();
  check.rank(logits, "logits", 2, "[T, E]");
  int64_t experts = dimOf(logits, 1);
  Type element = elementTypeOf(logits);
  checkExpertVector(check, adaptor.getBias(), "bias", experts, element,
                    "logits");
  int64_t k = adaptor.getK();
  checkTokenChoice(check, experts, k, adaptor.getNumGroups(),
                   adaptor.getTopkGroups(),
                   adaptor.getScalingFactor().convertToFloat());
  if (!check.passed())
    return failure();
  int64_t tokens = dimOf(logits, 0);
  inferred.push_back(RankedTensorType::get({tokens, k}, element));
  inferred.push_back(
      RankedTensorType::get({tokens, k}, IntegerType::get(context, 32)));
  inferred.push_back(ranked(logits));
  return success();
}

//===----------------------------------------------------------------------===//
// ExpertChoiceOp
//===----------------------------------------------------------------------===//

LogicalResult ExpertChoiceOp::inferReturnTypes(
    MLIRContext *context, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  Value logits = adaptor.getLogits();
  check.rank(logits, "logits", 2, "[T, E]");
  if (!check.passed())
    return failure();
  int64_t tokens = dimOf(logits, 0), experts = dimOf(logits, 1);
  int64_t rows = kDynamic;
  if (isStatic(tokens) && isStatic(experts))
    rows = experts * expertChoiceCapacity(
                         adaptor.getCapacityFactor().convertToDouble(), tokens,
                         experts);
  Type element = elementTypeOf(logits);
  inferred.push_back(i32Vector(context, rows));
  inferred.push_back(RankedTensorType::get({rows}, element));
  inferred.push_back(
      i32Vector(context, isStatic(experts) ? experts + 1 : kDynamic));
  inferred.push_back(ranked(logits));
  return success();
}

//===----------------------------------------------------------------------===//
// DispatchOp
//===----------------------------------------------------------------------===//

LogicalResult DispatchOp::inferReturnTypes(MLIRContext *context,
                                           std::optional<Location> location,
                                           Adaptor adaptor,
                                           SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  Value indices = adaptor.getIndices(), weights = adaptor.getWeights();
  check.rank(indices, "indices", 2, "[T, k]");
  check.rank(weights, "weights", 2, "[T, k]");
  check.dim(weights, "weights", 0, dimOf(indices, 0),
            "the token count of 'indices'");
  check.dim(weights, "weights", 1, dimOf(indices, 1), "k of 'indices'");
  int64_t experts = adaptor.getNumExperts();
  int64_t k = dimOf(indices, 1);
  if (check.passed() && isStatic(k) && k > experts)
    check.fail("each token chooses ", k, " experts but there are only ",
               experts);
  if (!check.passed())
    return failure();
  int64_t tokens = mergeDims(dimOf(indices, 0), dimOf(weights, 0));
  int64_t rows = kDynamic;
  if (isStatic(tokens) && isStatic(k)) {
    std::optional<double> factor =
        capacityFactorOf(adaptor.getCapacityFactorAttr());
    rows = tokenChoiceRows(tokens, k, experts, factor ? &*factor : nullptr);
  }
  inferred.push_back(i32Vector(context, rows));
  inferred.push_back(RankedTensorType::get({rows}, elementTypeOf(weights)));
  inferred.push_back(i32Vector(context, experts + 1));
  return success();
}

namespace {
/// A capacity that can never be exceeded is the same as no capacity; the
/// dropless form needs no priority sort.
struct DropUnreachableCapacity : OpRewritePattern<DispatchOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(DispatchOp op,
                                PatternRewriter &rewriter) const override {
    std::optional<double> factor =
        capacityFactorOf(op.getCapacityFactorAttr());
    int64_t k = op.getIndices().getType().getDimSize(1);
    if (!factor || !isStatic(k) ||
        !capacityNeverDrops(*factor, k, op.getNumExperts()))
      return failure();
    // C >= T and k <= E give min(T*k, E*C) = T*k: the row count, and so
    // the result types, stay the same.
    rewriter.replaceOpWithNewOp<DispatchOp>(
        op, op.getIndices(), op.getWeights(), op.getNumExperts(),
        /*capacity_factor=*/nullptr, /*batch_prioritized=*/false);
    return success();
  }
};
} // namespace

void DispatchOp::getCanonicalizationPatterns(RewritePatternSet &patterns,
                                             MLIRContext *context) {
  patterns.add<DropUnreachableCapacity>(context);
}

//===----------------------------------------------------------------------===//
// PermuteOp
//===----------------------------------------------------------------------===//

LogicalResult PermuteOp::inferReturnTypes(MLIRContext *,
                                          std::optional<Location> location,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  check.rank(adaptor.getInput(), "input", 2, "[T, D]");
  check.rank(adaptor.getRowToken(), "row_token", 1, "[R]");
  if (!check.passed())
    return failure();
  inferred.push_back(RankedTensorType::get(
      {dimOf(adaptor.getRowToken(), 0), dimOf(adaptor.getInput(), 1)},
      elementTypeOf(adaptor.getInput())));
  return success();
}

//===----------------------------------------------------------------------===//
// ExpertFFNOp
//===----------------------------------------------------------------------===//

LogicalResult ExpertFFNOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> location,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  Value input = adaptor.getInput(), offsets = adaptor.getOffsets();
  check.rank(input, "input", 2, "[R, D]");
  check.rank(offsets, "offsets", 1, "[E + 1]");
  if (!check.passed())
    return failure();
  int64_t experts = dimOf(offsets, 0);
  if (isStatic(experts) && experts < 2)
    check.fail("'offsets' must have E + 1 >= 2 entries, got ",
               offsets.getType());
  if (isStatic(experts))
    experts -= 1;
  int64_t outFeatures =
      checkFFN(check, /*grouped=*/true, experts, input, adaptor.getFc1(),
               adaptor.getFc2(), adaptor.getFc3(), adaptor.getFc1Bias(),
               adaptor.getFc2Bias(), adaptor.getFc3Bias(),
               adaptor.getActivation());
  if (!check.passed())
    return failure();
  inferred.push_back(RankedTensorType::get({dimOf(input, 0), outFeatures},
                                           elementTypeOf(input)));
  return success();
}

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

LogicalResult CombineOp::verify() {
  ShapeChecker check(*this);
  Value input = getInput(), init = getInit();
  check.rank(input, "input", 2, "[R, D]");
  check.rank(getRowToken(), "row_token", 1, "[R]");
  check.rank(getRowWeight(), "row_weight", 1, "[R]");
  check.rank(init, "init", 2, "[T, D]");
  check.dim(getRowToken(), "row_token", 0, dimOf(input, 0),
            "the row count R of 'input'");
  check.dim(getRowWeight(), "row_weight", 0, dimOf(input, 0),
            "the row count R of 'input'");
  check.dim(init, "init", 1, dimOf(input, 1), "the feature size of 'input'");
  check.elementType(getRowWeight(), "row_weight", elementTypeOf(input),
                    "input");
  check.elementType(init, "init", elementTypeOf(input), "input");
  return check.status();
}

//===----------------------------------------------------------------------===//
// SharedExpertOp
//===----------------------------------------------------------------------===//

LogicalResult SharedExpertOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  Value input = adaptor.getInput(), gate = adaptor.getGate();
  check.rank(input, "input", 2, "[T, D]");
  if (!check.passed())
    return failure();
  int64_t outFeatures = checkFFN(
      check, /*grouped=*/false, /*experts=*/kDynamic, input, adaptor.getFc1(),
      adaptor.getFc2(), adaptor.getFc3(), Value(), Value(), Value(),
      adaptor.getActivation());
  check.rank(gate, "gate", 2, "[D, 1]");
  check.dim(gate, "gate", 0, dimOf(input, 1), "the feature size D of 'input'");
  check.dim(gate, "gate", 1, 1, "one gate value per token");
  check.elementType(gate, "gate", elementTypeOf(input), "input");
  if (!check.passed())
    return failure();
  inferred.push_back(RankedTensorType::get({dimOf(input, 0), outFeatures},
                                           elementTypeOf(input)));
  return success();
}

//===----------------------------------------------------------------------===//
// Losses and statistics
//===----------------------------------------------------------------------===//

static RankedTensorType f32Scalar(MLIRContext *context) {
  return RankedTensorType::get({}, Float32Type::get(context));
}
static RankedTensorType i64Tensor(MLIRContext *context,
                                  ArrayRef<int64_t> shape) {
  return RankedTensorType::get(shape, IntegerType::get(context, 64));
}

LogicalResult LoadBalancingLossOp::inferReturnTypes(
    MLIRContext *context, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  check.rank(adaptor.getProbs(), "probs", 2, "[T, E]");
  check.rank(adaptor.getIndices(), "indices", 2, "[T, k]");
  check.dim(adaptor.getIndices(), "indices", 0, dimOf(adaptor.getProbs(), 0),
            "the token count of 'probs'");
  if (!check.passed())
    return failure();
  inferred.push_back(f32Scalar(context));
  return success();
}

LogicalResult ZLossOp::inferReturnTypes(MLIRContext *context,
                                        std::optional<Location> location,
                                        Adaptor adaptor,
                                        SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  check.rank(adaptor.getLogits(), "logits", 2, "[T, E]");
  if (!check.passed())
    return failure();
  inferred.push_back(f32Scalar(context));
  return success();
}

LogicalResult RoutingStatsOp::inferReturnTypes(
    MLIRContext *context, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  Value offsets = adaptor.getOffsets();
  check.rank(offsets, "offsets", 1, "[E + 1]");
  check.rank(adaptor.getIndices(), "indices", 2, "[T, k]");
  int64_t experts = dimOf(offsets, 0);
  if (check.passed() && isStatic(experts) && experts < 2)
    check.fail("'offsets' must have E + 1 >= 2 entries, got ",
               offsets.getType());
  if (!check.passed())
    return failure();
  inferred.push_back(
      i64Tensor(context, {isStatic(experts) ? experts - 1 : kDynamic}));
  inferred.push_back(i64Tensor(context, {}));
  return success();
}

//===----------------------------------------------------------------------===//
// LayerOp
//===----------------------------------------------------------------------===//

LogicalResult LayerOp::inferReturnTypes(MLIRContext *context,
                                        std::optional<Location> location,
                                        Adaptor adaptor,
                                        SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  Value input = adaptor.getInput(), router = adaptor.getRouterWeight();
  check.rank(input, "input", 2, "[T, D]");
  check.rank(router, "router_weight", 2, "[D, E]");
  if (!check.passed())
    return failure();
  Type element = elementTypeOf(input);
  check.elementType(router, "router_weight", element, "input");
  check.dim(router, "router_weight", 0, dimOf(input, 1),
            "the feature size D of 'input'");
  int64_t experts = dimOf(router, 1);
  checkExpertVector(check, adaptor.getRouterBias(), "router_bias", experts,
                    element, "input");
  checkExpertVector(check, adaptor.getSelectionBias(), "selection_bias",
                    experts, element, "input");
  int64_t outFeatures =
      checkFFN(check, /*grouped=*/true, experts, input, adaptor.getFc1(),
               adaptor.getFc2(), adaptor.getFc3(), adaptor.getFc1Bias(),
               adaptor.getFc2Bias(), adaptor.getFc3Bias(),
               adaptor.getActivation());

  Value sharedFc1 = adaptor.getSharedFc1(), sharedFc2 = adaptor.getSharedFc2();
  if (!sharedFc1 != !sharedFc2)
    check.fail("a shared expert needs both 'shared_fc1' and 'shared_fc2'");
  else if (!sharedFc1 && (adaptor.getSharedFc3() || adaptor.getSharedGate()))
    check.fail("'shared_fc3' and 'shared_gate' need 'shared_fc1' and "
               "'shared_fc2'");
  if (sharedFc1 && check.passed()) {
    ShapeChecker shared(location, getOperationName());
    int64_t sharedOut = checkFFN(shared, /*grouped=*/false, kDynamic, input,
                                 sharedFc1, sharedFc2, adaptor.getSharedFc3(),
                                 Value(), Value(), Value(),
                                 adaptor.getActivation());
    if (shared.passed() && !dimsCompatible(sharedOut, outFeatures))
      check.fail("the shared expert's output size (", sharedOut,
                 ") differs from the experts' (", outFeatures, ")");
    if (!shared.passed())
      return failure();
  }
  Value gate = adaptor.getSharedGate();
  check.rank(gate, "shared_gate", 2, "[D, 1]");
  check.dim(gate, "shared_gate", 0, dimOf(input, 1),
            "the feature size D of 'input'");
  check.dim(gate, "shared_gate", 1, 1, "one gate value per token");
  check.elementType(gate, "shared_gate", element, "input");

  float eps = adaptor.getJitterEps().convertToFloat();
  if (!(eps >= 0.0f && eps < 1.0f))
    check.fail("'jitter_eps' must lie in [0, 1), got ", eps);
  else if (eps > 0.0f && !adaptor.getSeed())
    check.fail("'jitter_eps' = ", eps,
               " needs a 'seed' operand to draw the jitter");

  if (adaptor.getRouting() == Routing::token_choice) {
    checkTokenChoice(check, experts, adaptor.getK(), adaptor.getNumGroups(),
                     adaptor.getTopkGroups(),
                     adaptor.getScalingFactor().convertToFloat());
  } else {
    if (!adaptor.getCapacityFactorAttr())
      check.fail("expert_choice routing needs a 'capacity_factor'");
    if (adaptor.getSelectionBias() || adaptor.getNumGroups() != 1 ||
        adaptor.getBatchPrioritized() || adaptor.getNormalize() ||
        adaptor.getK() != 1 || adaptor.getScore() != ScoreFunction::softmax)
      check.fail("expert_choice routing takes none of 'selection_bias', "
                 "'k', 'score', 'normalize', 'num_groups' and "
                 "'batch_prioritized'");
  }
  if (!check.passed())
    return failure();
  inferred.push_back(
      RankedTensorType::get({dimOf(input, 0), outFeatures}, element));
  inferred.push_back(f32Scalar(context));
  inferred.push_back(f32Scalar(context));
  inferred.push_back(i64Tensor(context, {experts}));
  inferred.push_back(i64Tensor(context, {}));
  return success();
}

namespace {
/// Token-choice capacity that can never be exceeded means dropless.
struct DropUnreachableLayerCapacity : OpRewritePattern<LayerOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(LayerOp op,
                                PatternRewriter &rewriter) const override {
    std::optional<double> factor =
        capacityFactorOf(op.getCapacityFactorAttr());
    int64_t experts = op.getRouterWeight().getType().getDimSize(1);
    if (op.getRouting() != Routing::token_choice || !factor ||
        !isStatic(experts) ||
        !capacityNeverDrops(*factor, op.getK(), experts))
      return failure();
    rewriter.modifyOpInPlace(op, [&] {
      op.removeCapacityFactorAttr();
      op.removeBatchPrioritizedAttr();
    });
    return success();
  }
};
} // namespace

void LayerOp::getCanonicalizationPatterns(RewritePatternSet &patterns,
                                          MLIRContext *context) {
  patterns.add<DropUnreachableLayerCapacity>(context);
}

#define GET_OP_CLASSES
#include "dialects/MoE/MoEOps.cpp.inc"
