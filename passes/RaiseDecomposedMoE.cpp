//===- RaiseDecomposedMoE.cpp - plain-op MoE FFNs -> moe ops --------------===//
//
// Exporters without an MoE op spell a token-choice MoE FFN out in plain ops:
// a softmax router and nn.topk, then per expert a routing weight masked out
// of the top-k weights and a dense FFN over every token, and a sum of the
// weighted expert outputs. This pass recognises the whole structure and
// replaces the sum by moe ops that run each expert on its own tokens only.
// It rewrites only what it can prove to compute the same function; anything
// else stays as it is (and still runs as plain ops).
//
//===----------------------------------------------------------------------===//

#include "dialects/MoE/MoEDialect.h"
#include "dialects/NN/NNDialect.h"
#include "passes/GraphBuilders.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <optional>

namespace moec {
#define GEN_PASS_DEF_MOERAISEDECOMPOSED
#include "passes/Passes.h.inc"
} // namespace moec

using namespace mlir;
namespace nn = moec::nn;
namespace moe = moec::moe;

namespace {

//===----------------------------------------------------------------------===//
// Small matchers
//===----------------------------------------------------------------------===//

/// The operands of a commutative binary op in both orders, so that a matcher
/// can try `(a, b)` and `(b, a)`.
template <typename BinaryOp>
SmallVector<std::pair<Value, Value>, 2> bothOrders(BinaryOp op) {
  return {{op.getLhs(), op.getRhs()}, {op.getRhs(), op.getLhs()}};
}

/// Whether `axis` (possibly counted from the end) is the last axis of
/// `value`.
bool isLastAxis(int64_t axis, Value value) {
  int64_t rank = cast<RankedTensorType>(value.getType()).getRank();
  return axis == rank - 1 || axis == -1;
}

/// Whether `sum` is `nn.reduce_sum %value [last] {keep_dims}`.
bool isRowSum(Value sum, Value value) {
  auto reduce = sum.getDefiningOp<nn::ReduceSumOp>();
  return reduce && reduce.getInput() == value && reduce.getKeepDims() &&
         reduce.getAxes().size() == 1 && isLastAxis(reduce.getAxes()[0], value);
}

/// `nn.linear %input, %weight (bias %bias)` with a static `[in, out]`
/// weight, as every expert and router weight is.
struct Linear {
  nn::LinearOp op;
  Value input, weight, bias;

  /// Same weight and bias types, so that experts can be stacked.
  bool sameShapeAs(const Linear &other) const {
    return weight.getType() == other.weight.getType() &&
           (bias ? bias.getType() : Type()) ==
               (other.bias ? other.bias.getType() : Type());
  }
};

std::optional<Linear> matchLinear(Value value) {
  auto linear = value.getDefiningOp<nn::LinearOp>();
  if (!linear || !linear.getWeight().getType().hasStaticShape())
    return std::nullopt;
  return Linear{linear, linear.getInput(), linear.getWeight(),
                linear.getBias()};
}

//===----------------------------------------------------------------------===//
// The router: nn.linear -> nn.softmax -> nn.topk (-> renormalisation)
//===----------------------------------------------------------------------===//

struct Router {
  Linear gate;
  int64_t k;
  /// Whether the experts read the top-k values divided by their row sum.
  bool normalize = false;

  int64_t numExperts() const {
    return cast<RankedTensorType>(gate.weight.getType()).getDimSize(1);
  }
};

/// The router whose top-k produced `weights` and `indices`.
std::optional<Router> matchRouter(Value weights, Value indices) {
  auto topk = indices.getDefiningOp<nn::TopKOp>();
  if (!topk || topk.getIndices() != indices || !topk.getLargest() ||
      !isLastAxis(static_cast<int64_t>(topk.getAxis()), topk.getInput()))
    return std::nullopt;
  Router router;
  router.k = static_cast<int64_t>(topk.getK());
  if (weights != topk.getValues()) {
    // Mixtral's renormalisation: values / sum(values).
    auto div = weights.getDefiningOp<nn::DivOp>();
    if (!div || div.getLhs() != topk.getValues() ||
        !isRowSum(div.getRhs(), topk.getValues()))
      return std::nullopt;
    router.normalize = true;
  }
  auto softmax = topk.getInput().getDefiningOp<nn::SoftmaxOp>();
  if (!softmax ||
      !isLastAxis(static_cast<int64_t>(softmax.getAxis()), softmax.getInput()))
    return std::nullopt;
  std::optional<Linear> gate = matchLinear(softmax.getInput());
  // moe.token_choice selects on f32 probabilities; probabilities rounded to
  // f16/bf16, as nn.topk would compare them, tie where f32 ones do not.
  if (!gate || !gate->op.getType().getElementType().isF32())
    return std::nullopt;
  router.gate = *gate;
  return router;
}

//===----------------------------------------------------------------------===//
// One expert's routing weight: s_e = sum_k(weights where indices == e)
//===----------------------------------------------------------------------===//

struct ExpertWeight {
  int64_t expert;
  Value weights;
  Value indices;
};

/// `nn.compare eq %indices, %e` (either order) with a constant splat `e`
/// that does not broadcast the mask beyond the shape of `indices`.
std::optional<std::pair<Value, int64_t>> matchExpertMask(Value mask) {
  auto compare = mask.getDefiningOp<nn::CompareOp>();
  if (!compare || compare.getPredicate() != nn::ComparePredicate::eq)
    return std::nullopt;
  for (auto [indices, constant] : bothOrders(compare)) {
    APInt expert;
    if (matchPattern(constant, m_ConstantInt(&expert)) &&
        compare.getType().getShape() ==
            cast<RankedTensorType>(indices.getType()).getShape())
      return std::make_pair(indices, expert.getSExtValue());
  }
  return std::nullopt;
}

/// The top-k weights where the mask holds and 0 elsewhere:
/// `nn.where %mask, %weights, 0` or `nn.cast(%mask) * %weights`.
std::optional<ExpertWeight> matchMaskedWeights(Value masked) {
  Value mask, weights;
  if (auto where = masked.getDefiningOp<nn::WhereOp>()) {
    if (!matchPattern(where.getFalseValue(), m_AnyZeroFloat()))
      return std::nullopt;
    mask = where.getCondition();
    weights = where.getTrueValue();
  } else if (auto mul = masked.getDefiningOp<nn::MulOp>()) {
    for (auto [factor, other] : bothOrders(mul)) {
      auto toFloat = factor.getDefiningOp<nn::CastOp>();
      if (toFloat &&
          toFloat.getInput().getType().getElementType().isInteger(1)) {
        mask = toFloat.getInput();
        weights = other;
        break;
      }
    }
  }
  // The selection must not broadcast the weights to another shape.
  if (!mask || masked.getType() != weights.getType())
    return std::nullopt;
  std::optional<std::pair<Value, int64_t>> expertMask = matchExpertMask(mask);
  if (!expertMask)
    return std::nullopt;
  return ExpertWeight{expertMask->second, weights, expertMask->first};
}

/// `s_e = nn.reduce_sum(masked weights) [last] {keep_dims}`: `[..., 1]`.
std::optional<ExpertWeight> matchExpertWeight(Value scale) {
  auto reduce = scale.getDefiningOp<nn::ReduceSumOp>();
  if (!reduce || !isRowSum(scale, reduce.getInput()))
    return std::nullopt;
  return matchMaskedWeights(reduce.getInput());
}

//===----------------------------------------------------------------------===//
// One expert's FFN: act(x @ fc1) (* (x @ fc3)) @ fc2
//===----------------------------------------------------------------------===//

/// An ungated activation `act(h)`: the activation and `h`.
std::optional<std::pair<moe::Activation, Value>> matchActivation(Value value) {
  if (auto relu = value.getDefiningOp<nn::ReluOp>())
    return std::make_pair(moe::Activation::relu, Value(relu.getInput()));
  if (auto gelu = value.getDefiningOp<nn::GeluOp>())
    return std::make_pair(gelu.getApproximate() == nn::GeluApproximation::tanh
                              ? moe::Activation::gelu_tanh
                              : moe::Activation::gelu,
                          Value(gelu.getInput()));
  if (auto silu = value.getDefiningOp<nn::SiluOp>())
    return std::make_pair(moe::Activation::silu, Value(silu.getInput()));
  // SiLU spelled out: h * sigmoid(h).
  if (auto mul = value.getDefiningOp<nn::MulOp>())
    for (auto [h, gate] : bothOrders(mul))
      if (auto sigmoid = gate.getDefiningOp<nn::SigmoidOp>();
          sigmoid && sigmoid.getInput() == h)
        return std::make_pair(moe::Activation::silu, h);
  return std::nullopt;
}

struct ExpertFFN {
  moe::Activation activation;
  Linear fc1, fc2;
  std::optional<Linear> fc3;

  Value input() const { return fc1.input; }
  bool sameShapeAs(const ExpertFFN &other) const {
    return activation == other.activation && input() == other.input() &&
           fc1.sameShapeAs(other.fc1) && fc2.sameShapeAs(other.fc2) &&
           fc3.has_value() == other.fc3.has_value() &&
           (!fc3 || fc3->sameShapeAs(*other.fc3));
  }
};

/// `act(h1) * h3` (either order), where act is SiLU (swiglu) or exact GELU
/// (geglu) and h1, h3 are linears of the same input with equal shapes.
std::optional<ExpertFFN> matchGatedHidden(Value hidden) {
  auto mul = hidden.getDefiningOp<nn::MulOp>();
  if (!mul)
    return std::nullopt;
  for (auto [activated, up] : bothOrders(mul)) {
    auto act = matchActivation(activated);
    if (!act || (act->first != moe::Activation::silu &&
                 act->first != moe::Activation::gelu))
      continue;
    std::optional<Linear> fc1 = matchLinear(act->second);
    std::optional<Linear> fc3 = matchLinear(up);
    if (fc1 && fc3 && fc1->input == fc3->input && fc1->sameShapeAs(*fc3))
      return ExpertFFN{act->first == moe::Activation::silu
                           ? moe::Activation::swiglu
                           : moe::Activation::geglu,
                       *fc1, Linear{}, *fc3};
  }
  return std::nullopt;
}

/// `y_e = nn.linear(hidden, fc2)` with a gated or plain activated hidden.
std::optional<ExpertFFN> matchExpertFFN(Value output) {
  std::optional<Linear> fc2 = matchLinear(output);
  if (!fc2)
    return std::nullopt;
  Value hidden = fc2->input;
  std::optional<ExpertFFN> ffn = matchGatedHidden(hidden);
  if (!ffn) {
    auto act = matchActivation(hidden);
    std::optional<Linear> fc1 = act ? matchLinear(act->second) : std::nullopt;
    if (!fc1)
      return std::nullopt;
    ffn = ExpertFFN{act->first, *fc1, Linear{}, std::nullopt};
  }
  ffn->fc2 = *fc2;
  return ffn;
}

//===----------------------------------------------------------------------===//
// The accumulation: sum over experts of s_e * y_e
//===----------------------------------------------------------------------===//

struct ExpertTerm {
  ExpertWeight weight;
  ExpertFFN ffn;
};

/// `s_e * y_e` (either order), which must have the shape of `y_e`.
std::optional<ExpertTerm> matchExpertTerm(Value term) {
  auto mul = term.getDefiningOp<nn::MulOp>();
  if (!mul)
    return std::nullopt;
  for (auto [scale, output] : bothOrders(mul)) {
    std::optional<ExpertWeight> weight = matchExpertWeight(scale);
    std::optional<ExpertFFN> ffn = matchExpertFFN(output);
    if (weight && ffn && term.getType() == output.getType())
      return ExpertTerm{*weight, *ffn};
  }
  return std::nullopt;
}

/// The summands of the nn.add tree rooted at `root`, in any association,
/// leaving out constant zeros (the accumulator's initial value). Stops at
/// the first summand that cannot be an expert term, so that trying every
/// residual add of a model stays cheap.
LogicalResult collectSummands(nn::AddOp root,
                              SmallVectorImpl<Value> &summands) {
  SmallVector<Value> worklist = {root.getLhs(), root.getRhs()};
  while (!worklist.empty()) {
    Value value = worklist.pop_back_val();
    if (auto add = value.getDefiningOp<nn::AddOp>()) {
      worklist.append({add.getLhs(), add.getRhs()});
      continue;
    }
    if (matchPattern(value, m_AnyZeroFloat()))
      continue;
    if (!value.getDefiningOp<nn::MulOp>())
      return failure();
    summands.push_back(value);
  }
  return success();
}

/// A whole decomposed MoE FFN: its router and its experts' FFNs, indexed by
/// expert.
struct DecomposedMoE {
  Router router;
  SmallVector<ExpertFFN> experts;
};

std::optional<DecomposedMoE> matchDecomposedMoE(nn::AddOp root) {
  SmallVector<Value> summands;
  if (failed(collectSummands(root, summands)) || summands.empty())
    return std::nullopt;
  // The sum keeps the terms' shape (zeros must not broadcast it).
  if (root.getType() != summands.front().getType())
    return std::nullopt;
  SmallVector<ExpertTerm> terms;
  for (Value summand : summands) {
    std::optional<ExpertTerm> term = matchExpertTerm(summand);
    if (!term)
      return std::nullopt;
    terms.push_back(*term);
  }
  const ExpertTerm &first = terms.front();

  std::optional<Router> router =
      matchRouter(first.weight.weights, first.weight.indices);
  // The router reads the experts' input, so tokens and routing rows agree.
  if (!router || router->gate.input != first.ffn.input())
    return std::nullopt;

  // Every expert exactly once, all reading the same routing and input with
  // the same activation and shapes.
  int64_t numExperts = router->numExperts();
  if (static_cast<int64_t>(terms.size()) != numExperts)
    return std::nullopt;
  SmallVector<std::optional<ExpertFFN>> byExpert(numExperts);
  for (const ExpertTerm &term : terms) {
    int64_t expert = term.weight.expert;
    if (term.weight.weights != first.weight.weights ||
        term.weight.indices != first.weight.indices ||
        !term.ffn.sameShapeAs(first.ffn) || expert < 0 ||
        expert >= numExperts || byExpert[expert])
      return std::nullopt;
    byExpert[expert] = term.ffn;
  }

  // Tokens of rank > 2 are flattened to [T, D] and the result reshaped back.
  if (cast<RankedTensorType>(first.ffn.input().getType()).getRank() < 2)
    return std::nullopt;

  DecomposedMoE moe{*router, {}};
  for (std::optional<ExpertFFN> &ffn : byExpert)
    moe.experts.push_back(*ffn);
  return moe;
}

//===----------------------------------------------------------------------===//
// The rewrite
//===----------------------------------------------------------------------===//

/// `value` (`[..., D]`) as a `[T, D]` token matrix.
Value toTokenMatrix(OpBuilder &b, Location loc, Value value) {
  auto type = cast<RankedTensorType>(value.getType());
  if (type.getRank() == 2)
    return value;
  int64_t tokens = 1;
  for (int64_t extent : type.getShape().drop_back())
    tokens = ShapedType::isDynamic(extent) || ShapedType::isDynamic(tokens)
                 ? ShapedType::kDynamic
                 : tokens * extent;
  auto matrixType = RankedTensorType::get({tokens, type.getShape().back()},
                                          type.getElementType());
  return nn::ReshapeOp::create(b, loc, matrixType, value);
}

/// A `[T, N]` matrix back in the shape `type` (`[..., N]`, N static) of the
/// value it replaces, whose leading extents are those of `tokens`.
Value fromTokenMatrix(OpBuilder &b, Location loc, Value matrix,
                      RankedTensorType type, Value tokens) {
  if (matrix.getType() == type)
    return matrix;
  SmallVector<Value> dynamicSizes;
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (type.isDynamicDim(d))
      dynamicSizes.push_back(tensor::DimOp::create(b, loc, tokens, d));
  return nn::ReshapeOp::create(b, loc, type, matrix, dynamicSizes);
}

/// The experts' weights (`[in, out]`) or biases (`[out]`) stacked along a
/// new leading expert dimension; null when the experts have no bias.
Value stackExperts(OpBuilder &b, Location loc, ArrayRef<Value> perExpert) {
  if (!perExpert.front())
    return Value();
  auto type = cast<RankedTensorType>(perExpert.front().getType());
  SmallVector<int64_t> shape = {1};
  llvm::append_range(shape, type.getShape());
  auto sliceType = RankedTensorType::get(shape, type.getElementType());
  SmallVector<Value> slices = llvm::map_to_vector(perExpert, [&](Value value) {
    return Value(nn::ReshapeOp::create(b, loc, sliceType, value));
  });
  return nn::ConcatOp::create(b, loc, slices, /*axis=*/0);
}

/// One of the stacked operands of moe.expert_ffn, read from every expert
/// by `get`.
Value stackExperts(OpBuilder &b, Location loc, ArrayRef<ExpertFFN> experts,
                   llvm::function_ref<Value(const ExpertFFN &)> get) {
  return stackExperts(b, loc, llvm::map_to_vector(experts, get));
}

/// Replaces the router linear by moe.gate (the same product) so that its
/// weight counts as a router parameter (autodiff's `router` group), and
/// returns the `[T, E]` logits.
Value raiseRouter(PatternRewriter &rewriter, const Router &router,
                  Value tokens) {
  nn::LinearOp linear = router.gate.op;
  Value logits = moe::GateOp::create(rewriter, linear.getLoc(), tokens,
                                     linear.getWeight(), linear.getBias(),
                                     /*seed=*/Value(), /*jitter_eps=*/nullptr);
  rewriter.replaceOp(linear,
                     fromTokenMatrix(rewriter, linear.getLoc(), logits,
                                     linear.getType(), linear.getInput()));
  return logits;
}

/// Builds routing, dispatch, permute, expert_ffn and combine as
/// moe-decompose-layer does for a dropless token-choice layer, and returns
/// the value that replaces `root`.
Value buildMoEOps(PatternRewriter &rewriter, nn::AddOp root,
                  const DecomposedMoE &moe) {
  const Router &router = moe.router;
  Location loc = root.getLoc();
  MLIRContext *context = rewriter.getContext();

  // The router's operands dominate it; its result's users follow it.
  rewriter.setInsertionPoint(router.gate.op);
  Value tokens = toTokenMatrix(rewriter, loc, router.gate.input);
  Value logits = raiseRouter(rewriter, router, tokens);

  rewriter.setInsertionPoint(root);
  auto choice = moe::TokenChoiceOp::create(
      rewriter, loc, logits, /*bias=*/Value(),
      moe::ScoreFunctionAttr::get(context, moe::ScoreFunction::softmax),
      rewriter.getI64IntegerAttr(router.k),
      router.normalize ? rewriter.getUnitAttr() : UnitAttr(),
      /*num_groups=*/nullptr, /*topk_groups=*/nullptr,
      /*scaling_factor=*/nullptr);
  auto dispatch = moe::DispatchOp::create(
      rewriter, loc, choice.getIndices(), choice.getWeights(),
      rewriter.getI64IntegerAttr(router.numExperts()),
      /*capacity_factor=*/nullptr, /*batch_prioritized=*/nullptr,
      /*eval_capacity_factor=*/nullptr);
  Value rows =
      moe::PermuteOp::create(rewriter, loc, tokens, dispatch.getRowToken());

  // One statement per operand: the stacks appear in operand order.
  ArrayRef<ExpertFFN> experts = moe.experts;
  bool gated = experts.front().fc3.has_value();
  auto stack = [&](auto get) {
    return stackExperts(rewriter, loc, experts, get);
  };
  Value fc1 = stack([](const ExpertFFN &e) { return e.fc1.weight; });
  Value fc2 = stack([](const ExpertFFN &e) { return e.fc2.weight; });
  Value fc3 =
      gated ? stack([](const ExpertFFN &e) { return e.fc3->weight; }) : Value();
  Value fc1Bias = stack([](const ExpertFFN &e) { return e.fc1.bias; });
  Value fc2Bias = stack([](const ExpertFFN &e) { return e.fc2.bias; });
  Value fc3Bias =
      gated ? stack([](const ExpertFFN &e) { return e.fc3->bias; }) : Value();
  Value expertRows = moe::ExpertFFNOp::create(
      rewriter, loc, rows, dispatch.getOffsets(), fc1, fc2, fc3, fc1Bias,
      fc2Bias, fc3Bias,
      moe::ActivationAttr::get(context, experts.front().activation),
      rewriter.getF32FloatAttr(1.0f), rewriter.getF32FloatAttr(0.0f),
      FloatAttr());

  RankedTensorType resultType = root.getType();
  Value zeros =
      moec::createZeros(rewriter, loc, tokens, expertRows, resultType);
  Value output =
      moe::CombineOp::create(rewriter, loc, expertRows, dispatch.getRowToken(),
                             dispatch.getRowWeight(), zeros);
  return fromTokenMatrix(rewriter, loc, output, resultType, router.gate.input);
}

/// Rooted at every nn.add: succeeds on the add that completes the sum over
/// all experts.
struct RaiseDecomposedMoEPattern : OpRewritePattern<nn::AddOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(nn::AddOp root,
                                PatternRewriter &rewriter) const override {
    std::optional<DecomposedMoE> moe = matchDecomposedMoE(root);
    if (!moe)
      return rewriter.notifyMatchFailure(root, "not a decomposed MoE FFN");
    rewriter.replaceOp(root, buildMoEOps(rewriter, root, *moe));
    return success();
  }
};

struct MoERaiseDecomposed
    : moec::impl::MoERaiseDecomposedBase<MoERaiseDecomposed> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<RaiseDecomposedMoEPattern>(&getContext());
    // Only the rewrite (and the removal of the plain ops it leaves dead):
    // folding and region simplification are canonicalisation's job.
    GreedyRewriteConfig config;
    config.enableFolding(false).setRegionSimplificationLevel(
        GreedySimplifyRegionLevel::Disabled);
    if (failed(
            applyPatternsGreedily(getOperation(), std::move(patterns), config)))
      signalPassFailure();
  }
};

} // namespace
