//===- MoEOps.cpp - moe dialect operations --------------------------------===//

#include "dialects/Common/ShapeUtils.h"
#include "dialects/MoE/MoEDialect.h"
#include "dialects/MoE/MoEUtils.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/Support/MathExtras.h"

#include <cmath>
#include <limits>
#include <optional>
#include <tuple>

using namespace mlir;
using namespace moec;
using namespace moec::moe;

namespace {
RankedTensorType ranked(Value value) {
  return cast<RankedTensorType>(value.getType());
}
Type elementTypeOf(Value value) { return ranked(value).getElementType(); }
std::string shapeOf(Value value) {
  return shapeToString(ranked(value).getShape());
}

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

/// An extent that several operands must agree on (E, D, F, ...). The first
/// operand with a static extent fixes it and later operands are checked
/// against that one, so a dynamic extent in between cannot hide a mismatch
/// between two static ones.
struct Extent {
  /// What the extent is, e.g. "the hidden size F".
  StringRef kind;
  int64_t size = kDynamic;
  /// The operand that fixed `size`.
  std::string source;

  /// Checks dimension `dim` of `value`, named `name`, against the extent, or
  /// fixes the extent from it. Absent values are skipped.
  void match(ShapeChecker &check, Value value, StringRef name, int64_t dim) {
    if (!value)
      return;
    check.dim(value, name, dim, size, (kind + " of '" + source + "'").str());
    if (!isStatic(size)) {
      size = dimOf(value, dim);
      source = name.str();
    }
  }
};

/// The custom parser accepts any type for an optional operand and infers the
/// result types before the ODS type constraints run, so inference checks the
/// optional operands are ranked tensors before it looks at their shapes.
void checkRankedTensors(ShapeChecker &check,
                        ArrayRef<std::pair<Value, StringRef>> operands) {
  for (auto [value, name] : operands)
    if (value && !isa<RankedTensorType>(value.getType()))
      check.fail("'", name, "' must be a ranked tensor, got ", value.getType());
}

/// Checks `operandSegmentSizes` before any adaptor getter trusts it. ODS
/// verifies the sizes of the op but not that a required operand group holds
/// exactly one value, and inference while parsing the custom form sees sizes
/// written in the attr-dict that nothing has verified. Every group of the moe
/// ops is a single or optional operand; `required` names the single ones.
void checkSegments(ShapeChecker &check, ArrayRef<int32_t> sizes,
                   size_t numOperands,
                   ArrayRef<std::pair<unsigned, StringRef>> required) {
  for (auto [index, name] : required)
    if (sizes[index] != 1)
      check.fail("'operandSegmentSizes' gives the required operand '", name,
                 "' ", sizes[index], " values, expected 1");
  int64_t total = 0;
  for (auto [index, size] : llvm::enumerate(sizes)) {
    if (size < 0 || size > 1)
      check.fail("'operandSegmentSizes' gives operand group #", index, " ",
                 size, " values, expected 0 or 1");
    total += size;
  }
  if (total != static_cast<int64_t>(numOperands))
    check.fail("'operandSegmentSizes' adds up to ", total,
               " operands, but the op has ", numOperands);
}

/// Checks the FFN weights shared by moe.expert_ffn, moe.shared_expert and
/// moe.layer against `input` and the extents E (`experts`, used only by
/// `grouped` weights, which carry a leading expert dimension) and D
/// (`features`). Operands are named `prefix` + "fc1" etc. in diagnostics (the
/// layer's shared expert uses "shared_"). `experts` is taken by value: the
/// caller's result types follow its own operands' E, as its decomposition
/// does. Returns D_out, the output feature size.
int64_t checkFFN(ShapeChecker &check, bool grouped, Extent experts,
                 Extent &features, Value input, Value fc1, Value fc2, Value fc3,
                 Value fc1Bias, Value fc2Bias, Value fc3Bias,
                 Activation activation, StringRef prefix = "") {
  int64_t lead = grouped ? 1 : 0;
  StringRef inLayout = grouped ? "[E, D, F]" : "[D, F]";
  StringRef outLayout = grouped ? "[E, F, D_out]" : "[F, D_out]";
  std::string fc1Name = (prefix + "fc1").str(),
              fc2Name = (prefix + "fc2").str(),
              fc3Name = (prefix + "fc3").str(),
              fc1BiasName = (prefix + "fc1_bias").str(),
              fc2BiasName = (prefix + "fc2_bias").str(),
              fc3BiasName = (prefix + "fc3_bias").str();

  if (isGated(activation) && !fc3)
    check.fail("activation '", stringifyActivation(activation),
               "' is gated and needs the '", fc3Name, "' weights");
  if (!isGated(activation) && fc3)
    check.fail("'", fc3Name,
               "' is used only by gated activations (swiglu, geglu, "
               "geglu_tanh), not by '",
               stringifyActivation(activation), "'");
  if (fc3Bias && !fc3)
    check.fail("'", fc3BiasName, "' needs '", fc3Name, "'");

  check.rank(fc1, fc1Name, 2 + lead, inLayout);
  check.rank(fc2, fc2Name, 2 + lead, outLayout);
  check.rank(fc3, fc3Name, 2 + lead, inLayout);
  check.rank(fc1Bias, fc1BiasName, 1 + lead, grouped ? "[E, F]" : "[F]");
  check.rank(fc2Bias, fc2BiasName, 1 + lead,
             grouped ? "[E, D_out]" : "[D_out]");
  check.rank(fc3Bias, fc3BiasName, 1 + lead, grouped ? "[E, F]" : "[F]");
  for (auto [value, name] : {std::pair<Value, StringRef>{fc1, fc1Name},
                             {fc2, fc2Name},
                             {fc3, fc3Name},
                             {fc1Bias, fc1BiasName},
                             {fc2Bias, fc2BiasName},
                             {fc3Bias, fc3BiasName}}) {
    check.elementType(value, name, elementTypeOf(input), "input");
    if (grouped)
      experts.match(check, value, name, 0);
  }
  Extent hidden{"the hidden size F"}, outFeatures{"the output size D_out"};
  features.match(check, fc1, fc1Name, lead);
  hidden.match(check, fc1, fc1Name, lead + 1);
  features.match(check, fc3, fc3Name, lead);
  hidden.match(check, fc3, fc3Name, lead + 1);
  hidden.match(check, fc2, fc2Name, lead);
  outFeatures.match(check, fc2, fc2Name, lead + 1);
  hidden.match(check, fc1Bias, fc1BiasName, lead);
  hidden.match(check, fc3Bias, fc3BiasName, lead);
  outFeatures.match(check, fc2Bias, fc2BiasName, lead);
  return outFeatures.size;
}

/// Checks SwiGLU's parameters (moe.expert_ffn, moe.expert_ffn_grad,
/// moe.layer): values other than the defaults (alpha 1, beta 0, no limit)
/// belong to the swiglu activation only, and they must be finite (ODS checks
/// that the limit is positive). Default-valued attributes are filled in when
/// absent, so their values, not their presence, tell whether they were set.
template <typename AdaptorT>
void checkSwiGLUParameters(ShapeChecker &check, AdaptorT adaptor) {
  Activation activation = adaptor.getActivation();
  double alpha = adaptor.getSwigluAlpha().convertToDouble(),
         beta = adaptor.getSwigluBeta().convertToDouble();
  std::optional<double> limit;
  if (FloatAttr attr = adaptor.getSwigluLimitAttr())
    limit = attr.getValueAsDouble();
  for (auto [value, isDefault, name] :
       {std::tuple<double, bool, StringRef>{alpha, alpha == 1.0,
                                            "swiglu_alpha"},
        {beta, beta == 0.0, "swiglu_beta"},
        {limit.value_or(0.0), !limit, "swiglu_limit"}}) {
    if (isDefault)
      continue;
    if (activation != Activation::swiglu)
      check.fail("'", name, "' = ", value,
                 " is a parameter of the swiglu activation, not of '",
                 stringifyActivation(activation), "'");
    else if (!std::isfinite(value))
      check.fail("'", name, "' must be finite, got ", value);
  }
}

/// Checks the token-choice attributes against the experts, which are the
/// columns of `source` (logits or the router weight), named `name`. `bias`
/// is the selection bias, named `biasName`.
void checkTokenChoice(ShapeChecker &check, Value source, StringRef name,
                      ScoreFunction score, int64_t k, Value bias,
                      StringRef biasName, bool normalize, int64_t numGroups,
                      int64_t topkGroups, float scalingFactor) {
  if (k < 1)
    check.fail("'k' must be >= 1, got ", k);
  // SparseMixer defines two picks and its own weights; nothing else of
  // token choice applies to it.
  if (score == ScoreFunction::sparse_mixer) {
    if (k != 2)
      check.fail("sparse_mixer routing picks k = 2 experts, got k = ", k);
    if (bias)
      check.fail("sparse_mixer routing takes no '", biasName, "'");
    if (numGroups != 1)
      check.fail("sparse_mixer routing takes no 'num_groups', got ",
                 numGroups);
    if (normalize)
      check.fail("sparse_mixer routing takes no 'normalize'; its weights are "
                 "not renormalised");
  }
  if (numGroups < 1)
    check.fail("'num_groups' must be >= 1, got ", numGroups);
  if (topkGroups < 1 || topkGroups > numGroups)
    check.fail("'topk_groups' (", topkGroups,
               ") must lie in [1, num_groups = ", numGroups, "]");
  if (!(scalingFactor > 0.0f))
    check.fail("'scaling_factor' must be > 0, got ", scalingFactor);
  int64_t experts = dimOf(source, 1);
  if (!check.passed() || !isStatic(experts))
    return;
  if (experts % numGroups != 0)
    check.fail("'num_groups' (", numGroups,
               ") must divide the number of experts (", experts, "); '", name,
               "' has shape ", shapeOf(source));
  else if (k > topkGroups * (experts / numGroups))
    check.fail("'k' (", k, ") exceeds the ", topkGroups * (experts / numGroups),
               " experts eligible ('topk_groups' = ", topkGroups, " of ",
               "'num_groups' = ", numGroups, " groups of ", experts / numGroups,
               "); '", name, "' has shape ", shapeOf(source));
}

/// Checks a router-side `[E]` vector (biases on logits or selection scores).
void checkExpertVector(ShapeChecker &check, Value vector, StringRef name,
                       Extent &experts, Type element, StringRef reference) {
  check.rank(vector, name, 1, "[E]");
  experts.match(check, vector, name, 0);
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
  checkSegments(check, adaptor.getProperties().operandSegmentSizes,
                adaptor.getOperands().size(), {{0, "input"}, {1, "weight"}});
  if (!check.passed())
    return failure();
  checkRankedTensors(check, {{adaptor.getBias(), "bias"}});
  if (!check.passed())
    return failure();
  Value input = adaptor.getInput(), weight = adaptor.getWeight();
  check.rank(input, "input", 2, "[T, D]");
  check.rank(weight, "weight", 2, "[D, E]");
  check.elementType(weight, "weight", elementTypeOf(input), "input");
  Extent features{"the feature size D"}, experts{"the number of experts"};
  features.match(check, input, "input", 1);
  features.match(check, weight, "weight", 0);
  experts.match(check, weight, "weight", 1);
  checkExpertVector(check, adaptor.getBias(), "bias", experts,
                    elementTypeOf(input), "input");
  if (!check.passed())
    return failure();
  inferred.push_back(RankedTensorType::get({dimOf(input, 0), experts.size},
                                           elementTypeOf(input)));
  return success();
}

/// The jitter attributes shared by moe.gate and moe.gate_grad.
static LogicalResult verifyJitter(Operation *op, APFloat jitterEps,
                                  bool hasSeed) {
  float eps = jitterEps.convertToFloat();
  if (!(eps >= 0.0f && eps < 1.0f))
    return op->emitOpError() << "'jitter_eps' must lie in [0, 1), got " << eps;
  if (eps > 0.0f && !hasSeed)
    return op->emitOpError() << "'jitter_eps' = " << eps
                             << " needs a 'seed' operand to draw the jitter";
  return success();
}

LogicalResult GateOp::verify() {
  return verifyJitter(*this, getJitterEps(), static_cast<bool>(getSeed()));
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
  checkRankedTensors(check, {{adaptor.getBias(), "bias"}});
  if (!check.passed())
    return failure();
  Value logits = adaptor.getLogits();
  check.rank(logits, "logits", 2, "[T, E]");
  Type element = elementTypeOf(logits);
  Extent experts{"the number of experts"};
  experts.match(check, logits, "logits", 1);
  checkExpertVector(check, adaptor.getBias(), "bias", experts, element,
                    "logits");
  int64_t k = adaptor.getK();
  checkTokenChoice(check, logits, "logits", adaptor.getScore(), k,
                   adaptor.getBias(), "bias", adaptor.getNormalize(),
                   adaptor.getNumGroups(), adaptor.getTopkGroups(),
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
  int64_t tokens = dimOf(logits, 0), experts = dimOf(logits, 1);
  // The capacity divides by E, and a plan of no experts is useless.
  if (check.passed() && experts == 0)
    check.fail("'logits' must have at least one expert column, got ",
               logits.getType());
  int64_t rows = kDynamic;
  if (check.passed() && isStatic(tokens) && isStatic(experts)) {
    int64_t capacity = expertChoiceCapacity(
        adaptor.getCapacityFactor().convertToDouble(), tokens, experts);
    if (llvm::MulOverflow(experts, capacity, rows))
      check.fail("the row count E * C overflows int64; 'logits' has shape ",
                 shapeOf(logits));
  }
  if (!check.passed())
    return failure();
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
  Extent tokens{"the token count T"}, choices{"k"};
  tokens.match(check, indices, "indices", 0);
  tokens.match(check, weights, "weights", 0);
  choices.match(check, indices, "indices", 1);
  choices.match(check, weights, "weights", 1);
  int64_t experts = adaptor.getNumExperts(), k = choices.size;
  if (check.passed() && isStatic(k) && k > experts)
    check.fail("each token chooses k = ", k, " experts but 'num_experts' is ",
               experts, "; 'indices' has shape ", shapeOf(indices));
  if (check.passed() && experts == std::numeric_limits<int64_t>::max())
    check.fail("'num_experts' (", experts,
               ") leaves no E + 1 extent for 'offsets'");
  int64_t assignments;
  if (check.passed() && isStatic(tokens.size) && isStatic(k) &&
      llvm::MulOverflow(tokens.size, k, assignments))
    check.fail("the row count T * k overflows int64; 'indices' has shape ",
               shapeOf(indices), ", 'weights' has shape ", shapeOf(weights));
  if (!check.passed())
    return failure();
  int64_t rows = kDynamic;
  if (isStatic(tokens.size) && isStatic(k)) {
    std::optional<double> factor =
        capacityFactorOf(adaptor.getCapacityFactorAttr());
    rows =
        tokenChoiceRows(tokens.size, k, experts, factor ? &*factor : nullptr);
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
    // the result types, stay the same. The priority still matters to an
    // evaluation capacity.
    rewriter.modifyOpInPlace(op, [&] {
      op.removeCapacityFactorAttr();
      if (!op.getEvalCapacityFactorAttr())
        op.removeBatchPrioritizedAttr();
    });
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

/// Checks the operands that moe.expert_ffn and moe.expert_ffn_grad share
/// (rows, row plan offsets, weights, biases); returns the output size D_out,
/// or nullopt once a diagnostic was reported.
template <typename AdaptorT>
static std::optional<int64_t> checkGroupedFFN(ShapeChecker &check,
                                              AdaptorT adaptor) {
  checkRankedTensors(check, {{adaptor.getFc3(), "fc3"},
                             {adaptor.getFc1Bias(), "fc1_bias"},
                             {adaptor.getFc2Bias(), "fc2_bias"},
                             {adaptor.getFc3Bias(), "fc3_bias"}});
  if (!check.passed())
    return std::nullopt;
  Value input = adaptor.getInput(), offsets = adaptor.getOffsets();
  check.rank(input, "input", 2, "[R, D]");
  check.rank(offsets, "offsets", 1, "[E + 1]");
  if (!check.passed())
    return std::nullopt;
  Extent experts{"the number of experts", dimOf(offsets, 0), "offsets"};
  if (isStatic(experts.size) && experts.size < 2)
    check.fail("'offsets' must have E + 1 >= 2 entries, got ",
               offsets.getType());
  if (isStatic(experts.size))
    experts.size -= 1;
  Extent features{"the feature size D"};
  features.match(check, input, "input", 1);
  int64_t outFeatures = checkFFN(
      check, /*grouped=*/true, experts, features, input, adaptor.getFc1(),
      adaptor.getFc2(), adaptor.getFc3(), adaptor.getFc1Bias(),
      adaptor.getFc2Bias(), adaptor.getFc3Bias(), adaptor.getActivation());
  checkSwiGLUParameters(check, adaptor);
  if (!check.passed())
    return std::nullopt;
  return outFeatures;
}


LogicalResult ExpertFFNOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> location,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  checkSegments(check, adaptor.getProperties().operandSegmentSizes,
                adaptor.getOperands().size(),
                {{0, "input"}, {1, "offsets"}, {2, "fc1"}, {3, "fc2"}});
  if (!check.passed())
    return failure();
  std::optional<int64_t> outFeatures = checkGroupedFFN(check, adaptor);
  if (!outFeatures)
    return failure();
  Value input = adaptor.getInput();
  inferred.push_back(RankedTensorType::get({dimOf(input, 0), *outFeatures},
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
  Extent rows{"the row count R"}, features{"the feature size D"};
  rows.match(check, input, "input", 0);
  rows.match(check, getRowToken(), "row_token", 0);
  rows.match(check, getRowWeight(), "row_weight", 0);
  features.match(check, input, "input", 1);
  features.match(check, init, "init", 1);
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
  checkSegments(check, adaptor.getProperties().operandSegmentSizes,
                adaptor.getOperands().size(),
                {{0, "input"}, {1, "fc1"}, {2, "fc2"}});
  if (!check.passed())
    return failure();
  checkRankedTensors(check,
                     {{adaptor.getFc3(), "fc3"}, {adaptor.getGate(), "gate"}});
  if (!check.passed())
    return failure();
  Value input = adaptor.getInput(), gate = adaptor.getGate();
  check.rank(input, "input", 2, "[T, D]");
  if (!check.passed())
    return failure();
  Extent features{"the feature size D"};
  features.match(check, input, "input", 1);
  int64_t outFeatures =
      checkFFN(check, /*grouped=*/false, Extent(), features, input,
               adaptor.getFc1(), adaptor.getFc2(), adaptor.getFc3(), Value(),
               Value(), Value(), adaptor.getActivation());
  check.rank(gate, "gate", 2, "[D, 1]");
  features.match(check, gate, "gate", 0);
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
  Extent tokens{"the token count T"};
  tokens.match(check, adaptor.getProbs(), "probs", 0);
  tokens.match(check, adaptor.getIndices(), "indices", 0);
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
  checkRankedTensors(check, {{adaptor.getIndices(), "indices"}});
  if (!check.passed())
    return failure();
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
  checkSegments(check, adaptor.getProperties().operandSegmentSizes,
                adaptor.getOperands().size(),
                {{0, "input"}, {1, "router_weight"}, {4, "fc1"}, {5, "fc2"}});
  if (!check.passed())
    return failure();
  checkRankedTensors(check, {{adaptor.getRouterBias(), "router_bias"},
                             {adaptor.getSelectionBias(), "selection_bias"},
                             {adaptor.getFc3(), "fc3"},
                             {adaptor.getFc1Bias(), "fc1_bias"},
                             {adaptor.getFc2Bias(), "fc2_bias"},
                             {adaptor.getFc3Bias(), "fc3_bias"},
                             {adaptor.getSharedFc1(), "shared_fc1"},
                             {adaptor.getSharedFc2(), "shared_fc2"},
                             {adaptor.getSharedFc3(), "shared_fc3"},
                             {adaptor.getSharedGate(), "shared_gate"}});
  if (!check.passed())
    return failure();
  Value input = adaptor.getInput(), router = adaptor.getRouterWeight();
  check.rank(input, "input", 2, "[T, D]");
  check.rank(router, "router_weight", 2, "[D, E]");
  if (!check.passed())
    return failure();
  Type element = elementTypeOf(input);
  check.elementType(router, "router_weight", element, "input");
  Extent features{"the feature size D"}, experts{"the number of experts"};
  features.match(check, input, "input", 1);
  features.match(check, router, "router_weight", 0);
  experts.match(check, router, "router_weight", 1);
  if (check.passed() && experts.size == 0)
    check.fail("'router_weight' must have at least one expert column, got ",
               router.getType());
  checkExpertVector(check, adaptor.getRouterBias(), "router_bias", experts,
                    element, "input");
  checkExpertVector(check, adaptor.getSelectionBias(), "selection_bias",
                    experts, element, "input");
  int64_t outFeatures = checkFFN(
      check, /*grouped=*/true, experts, features, input, adaptor.getFc1(),
      adaptor.getFc2(), adaptor.getFc3(), adaptor.getFc1Bias(),
      adaptor.getFc2Bias(), adaptor.getFc3Bias(), adaptor.getActivation());
  checkSwiGLUParameters(check, adaptor);

  Value sharedFc1 = adaptor.getSharedFc1(), sharedFc2 = adaptor.getSharedFc2();
  if (!sharedFc1 != !sharedFc2)
    check.fail("a shared expert needs both 'shared_fc1' and 'shared_fc2'");
  else if (!sharedFc1 && (adaptor.getSharedFc3() || adaptor.getSharedGate()))
    check.fail("'shared_fc3' and 'shared_gate' need 'shared_fc1' and "
               "'shared_fc2'");
  // moe.shared_expert has no SwiGLU parameters: a layer that gave them to
  // its routed experts only would silently differ from its shared expert.
  if (sharedFc1 && (!adaptor.getSwigluAlpha().isExactlyValue(1.0) ||
                    !adaptor.getSwigluBeta().isZero() ||
                    adaptor.getSwigluLimitAttr()))
    check.fail("the SwiGLU parameters ('swiglu_alpha', 'swiglu_beta', "
               "'swiglu_limit') are not supported with a shared expert "
               "('shared_fc1')");
  if (sharedFc1 && check.passed()) {
    int64_t sharedOut =
        checkFFN(check, /*grouped=*/false, Extent(), features, input, sharedFc1,
                 sharedFc2, adaptor.getSharedFc3(), Value(), Value(), Value(),
                 adaptor.getActivation(), "shared_");
    if (check.passed() && !dimsCompatible(sharedOut, outFeatures))
      check.fail("the shared expert's output size D_out (", sharedOut,
                 ") differs from the experts' (", outFeatures,
                 "); 'shared_fc2' has shape ", shapeOf(sharedFc2),
                 ", 'fc2' has shape ", shapeOf(adaptor.getFc2()));
    outFeatures = mergeDims(outFeatures, sharedOut);
  }
  Value gate = adaptor.getSharedGate();
  check.rank(gate, "shared_gate", 2, "[D, 1]");
  features.match(check, gate, "shared_gate", 0);
  check.dim(gate, "shared_gate", 1, 1, "one gate value per token");
  check.elementType(gate, "shared_gate", element, "input");

  float eps = adaptor.getJitterEps().convertToFloat();
  if (!(eps >= 0.0f && eps < 1.0f))
    check.fail("'jitter_eps' must lie in [0, 1), got ", eps);
  else if (eps > 0.0f && !adaptor.getSeed())
    check.fail("'jitter_eps' = ", eps,
               " needs a 'seed' operand to draw the jitter");

  if (adaptor.getRouting() == Routing::token_choice) {
    // The layer stands for moe.token_choice + moe.dispatch, and dispatch
    // takes the number of experts as an attribute.
    if (check.passed() && !isStatic(dimOf(router, 1)))
      check.fail("token_choice routing needs a static number of experts; "
                 "'router_weight' has shape ",
                 shapeOf(router));
    checkTokenChoice(check, router, "router_weight", adaptor.getScore(),
                     adaptor.getK(), adaptor.getSelectionBias(),
                     "selection_bias", adaptor.getNormalize(),
                     adaptor.getNumGroups(), adaptor.getTopkGroups(),
                     adaptor.getScalingFactor().convertToFloat());
  } else {
    if (!adaptor.getCapacityFactorAttr())
      check.fail("expert_choice routing needs a 'capacity_factor'");
    // Expert choice has no such knobs; accepting them would silently ignore
    // them (the defaults are indistinguishable from their absence).
    if (adaptor.getSelectionBias() || adaptor.getNumGroups() != 1 ||
        adaptor.getTopkGroups() != 1 || adaptor.getBatchPrioritized() ||
        adaptor.getNormalize() || adaptor.getK() != 1 ||
        adaptor.getScore() != ScoreFunction::softmax ||
        !adaptor.getScalingFactor().isExactlyValue(1.0))
      check.fail("expert_choice routing takes none of 'selection_bias', "
                 "'k', 'score', 'normalize', 'num_groups', 'topk_groups', "
                 "'scaling_factor' and 'batch_prioritized'");
  }
  if (!check.passed())
    return failure();
  inferred.push_back(
      RankedTensorType::get({dimOf(input, 0), outFeatures}, element));
  inferred.push_back(f32Scalar(context));
  inferred.push_back(f32Scalar(context));
  inferred.push_back(i64Tensor(context, {experts.size}));
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
      // The priority still matters to an evaluation capacity.
      if (!op.getEvalCapacityFactorAttr())
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

//===----------------------------------------------------------------------===//
// Gradients
//===----------------------------------------------------------------------===//

LogicalResult GateGradOp::inferReturnTypes(MLIRContext *,
                                           std::optional<Location> location,
                                           Adaptor adaptor,
                                           SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  Value grad = adaptor.getLogitsGrad(), input = adaptor.getInput(),
        weight = adaptor.getWeight();
  check.rank(grad, "logits_grad", 2, "[T, E]");
  check.rank(input, "input", 2, "[T, D]");
  check.rank(weight, "weight", 2, "[D, E]");
  if (!check.passed())
    return failure();
  check.elementType(grad, "logits_grad", elementTypeOf(input), "input");
  check.elementType(weight, "weight", elementTypeOf(input), "input");
  Extent tokens{"the token count T"}, features{"the feature size D"},
      experts{"the number of experts"};
  tokens.match(check, input, "input", 0);
  tokens.match(check, grad, "logits_grad", 0);
  features.match(check, input, "input", 1);
  features.match(check, weight, "weight", 0);
  experts.match(check, weight, "weight", 1);
  experts.match(check, grad, "logits_grad", 1);
  if (!check.passed())
    return failure();
  inferred.push_back(ranked(input));
  inferred.push_back(ranked(weight));
  inferred.push_back(
      RankedTensorType::get({experts.size}, elementTypeOf(input)));
  return success();
}

LogicalResult GateGradOp::verify() {
  return verifyJitter(*this, getJitterEps(), static_cast<bool>(getSeed()));
}

/// Checks the gradients of a router's weights (`rowsGrad`, named
/// `rowsName`) and of its `probs`, at least one of which a router gradient
/// needs.
static void checkRouterGrads(ShapeChecker &check, Value probs, Value rowsGrad,
                             StringRef rowsName, Value probsGrad) {
  if (!rowsGrad && !probsGrad)
    check.fail("needs '", rowsName, "' or 'probs_grad'");
  check.rank(probsGrad, "probs_grad", 2, "[T, E]");
  Extent tokens{"the token count T"}, experts{"the number of experts"};
  tokens.match(check, probs, "probs", 0);
  tokens.match(check, probsGrad, "probs_grad", 0);
  experts.match(check, probs, "probs", 1);
  experts.match(check, probsGrad, "probs_grad", 1);
  for (auto [value, name] : {std::pair<Value, StringRef>{rowsGrad, rowsName},
                             {probsGrad, "probs_grad"}})
    if (value)
      check.elementType(value, name, elementTypeOf(probs), "probs");
}

LogicalResult TokenChoiceGradOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  checkSegments(check, adaptor.getProperties().operandSegmentSizes,
                adaptor.getOperands().size(), {{0, "probs"}, {1, "indices"}});
  if (!check.passed())
    return failure();
  checkRankedTensors(check, {{adaptor.getWeightsGrad(), "weights_grad"},
                             {adaptor.getProbsGrad(), "probs_grad"}});
  if (!check.passed())
    return failure();
  Value probs = adaptor.getProbs(), indices = adaptor.getIndices(),
        weightsGrad = adaptor.getWeightsGrad();
  check.rank(probs, "probs", 2, "[T, E]");
  check.rank(indices, "indices", 2, "[T, k]");
  check.rank(weightsGrad, "weights_grad", 2, "[T, k]");
  Extent tokens{"the token count T"}, choices{"k"};
  tokens.match(check, probs, "probs", 0);
  tokens.match(check, indices, "indices", 0);
  tokens.match(check, weightsGrad, "weights_grad", 0);
  choices.match(check, indices, "indices", 1);
  choices.match(check, weightsGrad, "weights_grad", 1);
  checkRouterGrads(check, probs, weightsGrad, "weights_grad",
                   adaptor.getProbsGrad());
  float scaling = adaptor.getScalingFactor().convertToFloat();
  if (!(scaling > 0.0f))
    check.fail("'scaling_factor' must be > 0, got ", scaling);
  if (adaptor.getScore() == ScoreFunction::sparse_mixer)
    check.fail("sparse_mixer routing has no gradient");
  if (!check.passed())
    return failure();
  inferred.push_back(ranked(probs));
  return success();
}

LogicalResult ExpertChoiceGradOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  checkSegments(check, adaptor.getProperties().operandSegmentSizes,
                adaptor.getOperands().size(),
                {{0, "probs"}, {1, "row_token"}, {2, "offsets"}});
  if (!check.passed())
    return failure();
  checkRankedTensors(check, {{adaptor.getRowWeightGrad(), "row_weight_grad"},
                             {adaptor.getProbsGrad(), "probs_grad"}});
  if (!check.passed())
    return failure();
  Value probs = adaptor.getProbs(), rowToken = adaptor.getRowToken(),
        offsets = adaptor.getOffsets(),
        rowWeightGrad = adaptor.getRowWeightGrad();
  check.rank(probs, "probs", 2, "[T, E]");
  check.rank(rowToken, "row_token", 1, "[R]");
  check.rank(offsets, "offsets", 1, "[E + 1]");
  check.rank(rowWeightGrad, "row_weight_grad", 1, "[R]");
  Extent rows{"the row count R"};
  rows.match(check, rowToken, "row_token", 0);
  rows.match(check, rowWeightGrad, "row_weight_grad", 0);
  int64_t experts = dimOf(probs, 1);
  if (check.passed() && isStatic(experts))
    check.dim(offsets, "offsets", 0, experts + 1,
              "E + 1 for the experts of 'probs'");
  checkRouterGrads(check, probs, rowWeightGrad, "row_weight_grad",
                   adaptor.getProbsGrad());
  if (!check.passed())
    return failure();
  inferred.push_back(ranked(probs));
  return success();
}

LogicalResult DispatchGradOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  Value grad = adaptor.getRowWeightGrad(), indices = adaptor.getIndices(),
        rowToken = adaptor.getRowToken(), offsets = adaptor.getOffsets();
  check.rank(grad, "row_weight_grad", 1, "[R]");
  check.rank(indices, "indices", 2, "[T, k]");
  check.rank(rowToken, "row_token", 1, "[R]");
  check.rank(offsets, "offsets", 1, "[E + 1]");
  Extent rows{"the row count R"};
  rows.match(check, grad, "row_weight_grad", 0);
  rows.match(check, rowToken, "row_token", 0);
  if (check.passed() && isStatic(dimOf(offsets, 0)) && dimOf(offsets, 0) < 2)
    check.fail("'offsets' must have E + 1 >= 2 entries, got ",
               offsets.getType());
  if (!check.passed())
    return failure();
  inferred.push_back(RankedTensorType::get(ranked(indices).getShape(),
                                           elementTypeOf(grad)));
  return success();
}

/// Checks `result_grad` of an FFN gradient against the forward input (rows)
/// and the FFN's output size.
static void checkFFNResultGrad(ShapeChecker &check, Value grad, Value input,
                               int64_t outFeatures, StringRef layout) {
  check.rank(grad, "result_grad", 2, layout);
  Extent rows{"the row count"};
  rows.match(check, input, "input", 0);
  rows.match(check, grad, "result_grad", 0);
  check.dim(grad, "result_grad", 1, outFeatures,
            "the output size D_out of the weights");
  check.elementType(grad, "result_grad", elementTypeOf(input), "input");
}

LogicalResult ExpertFFNGradOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  checkSegments(check, adaptor.getProperties().operandSegmentSizes,
                adaptor.getOperands().size(),
                {{0, "result_grad"},
                 {1, "input"},
                 {2, "offsets"},
                 {3, "fc1"},
                 {4, "fc2"}});
  if (!check.passed())
    return failure();
  std::optional<int64_t> outFeatures = checkGroupedFFN(check, adaptor);
  if (!outFeatures)
    return failure();
  Value input = adaptor.getInput();
  checkFFNResultGrad(check, adaptor.getResultGrad(), input, *outFeatures,
                     "[R, D_out]");
  if (!check.passed())
    return failure();
  for (Value operand : {input, adaptor.getFc1(), adaptor.getFc2(),
                        adaptor.getFc3(), adaptor.getFc1Bias(),
                        adaptor.getFc2Bias(), adaptor.getFc3Bias()})
    if (operand)
      inferred.push_back(operand.getType());
  return success();
}

/// The `position`-th present gradient among `optional_grads`, where
/// `present` lists which optional operands the op has; null when the
/// operand at `position` is absent.
static Value optionalGrad(ValueRange grads, ArrayRef<bool> present,
                          size_t position) {
  if (!present[position])
    return Value();
  return grads[llvm::count(present.take_front(position), true)];
}

/// Which of fc3, fc1_bias, fc2_bias, fc3_bias the op has, in the order of
/// its optional gradients.
static SmallVector<bool, 4> presentOptionals(ExpertFFNGradOp op) {
  return {!!op.getFc3(), !!op.getFc1Bias(), !!op.getFc2Bias(),
          !!op.getFc3Bias()};
}

Value ExpertFFNGradOp::getFc3Grad() {
  return optionalGrad(getOptionalGrads(), presentOptionals(*this), 0);
}
Value ExpertFFNGradOp::getFc1BiasGrad() {
  return optionalGrad(getOptionalGrads(), presentOptionals(*this), 1);
}
Value ExpertFFNGradOp::getFc2BiasGrad() {
  return optionalGrad(getOptionalGrads(), presentOptionals(*this), 2);
}
Value ExpertFFNGradOp::getFc3BiasGrad() {
  return optionalGrad(getOptionalGrads(), presentOptionals(*this), 3);
}

LogicalResult CombineGradOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  Value grad = adaptor.getResultGrad(), input = adaptor.getInput(),
        rowToken = adaptor.getRowToken(), rowWeight = adaptor.getRowWeight();
  check.rank(grad, "result_grad", 2, "[T, D]");
  check.rank(input, "input", 2, "[R, D]");
  check.rank(rowToken, "row_token", 1, "[R]");
  check.rank(rowWeight, "row_weight", 1, "[R]");
  Extent rows{"the row count R"}, features{"the feature size D"};
  rows.match(check, input, "input", 0);
  rows.match(check, rowToken, "row_token", 0);
  rows.match(check, rowWeight, "row_weight", 0);
  features.match(check, input, "input", 1);
  features.match(check, grad, "result_grad", 1);
  if (check.passed()) {
    check.elementType(grad, "result_grad", elementTypeOf(input), "input");
    check.elementType(rowWeight, "row_weight", elementTypeOf(input), "input");
  }
  if (!check.passed())
    return failure();
  inferred.push_back(ranked(input));
  inferred.push_back(ranked(rowWeight));
  return success();
}

LogicalResult SharedExpertGradOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  checkSegments(check, adaptor.getProperties().operandSegmentSizes,
                adaptor.getOperands().size(),
                {{0, "result_grad"}, {1, "input"}, {2, "fc1"}, {3, "fc2"}});
  if (!check.passed())
    return failure();
  checkRankedTensors(check,
                     {{adaptor.getFc3(), "fc3"}, {adaptor.getGate(), "gate"}});
  if (!check.passed())
    return failure();
  Value input = adaptor.getInput(), gate = adaptor.getGate();
  check.rank(input, "input", 2, "[T, D]");
  if (!check.passed())
    return failure();
  Extent features{"the feature size D"};
  features.match(check, input, "input", 1);
  int64_t outFeatures =
      checkFFN(check, /*grouped=*/false, Extent(), features, input,
               adaptor.getFc1(), adaptor.getFc2(), adaptor.getFc3(), Value(),
               Value(), Value(), adaptor.getActivation());
  check.rank(gate, "gate", 2, "[D, 1]");
  features.match(check, gate, "gate", 0);
  check.dim(gate, "gate", 1, 1, "one gate value per token");
  check.elementType(gate, "gate", elementTypeOf(input), "input");
  if (check.passed())
    checkFFNResultGrad(check, adaptor.getResultGrad(), input, outFeatures,
                       "[T, D_out]");
  if (!check.passed())
    return failure();
  for (Value operand : {input, adaptor.getFc1(), adaptor.getFc2(),
                        adaptor.getFc3(), gate})
    if (operand)
      inferred.push_back(operand.getType());
  return success();
}

Value SharedExpertGradOp::getFc3Grad() {
  return optionalGrad(getOptionalGrads(), {!!getFc3(), !!getGate()}, 0);
}
Value SharedExpertGradOp::getGateGrad() {
  return optionalGrad(getOptionalGrads(), {!!getFc3(), !!getGate()}, 1);
}

LogicalResult LoadBalancingLossGradOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  check.rank(adaptor.getProbs(), "probs", 2, "[T, E]");
  check.rank(adaptor.getIndices(), "indices", 2, "[T, k]");
  Extent tokens{"the token count T"};
  tokens.match(check, adaptor.getProbs(), "probs", 0);
  tokens.match(check, adaptor.getIndices(), "indices", 0);
  if (!check.passed())
    return failure();
  inferred.push_back(ranked(adaptor.getProbs()));
  return success();
}

LogicalResult ZLossGradOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> location,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &inferred) {
  ShapeChecker check(location, getOperationName());
  check.rank(adaptor.getLogits(), "logits", 2, "[T, E]");
  if (!check.passed())
    return failure();
  inferred.push_back(ranked(adaptor.getLogits()));
  return success();
}

#define GET_OP_CLASSES
#include "dialects/MoE/MoEOps.cpp.inc"
