//===- Gradients.cpp - Lowering of the nn reductions and the *_grad ops --===//
//
// Part of convert-nn-to-linalg, with the conventions of ConvertNNToLinalg.cpp
// (f32 compute for f16/bf16, compute-type accumulators, clamped ids). Each
// backward op recomputes the row statistics it needs from the forward
// operands, then produces all its gradients in as few passes as the data
// dependencies allow: a row reduction, an elementwise pass, and for the
// parameter gradients a reduction over the rows.
//
//===----------------------------------------------------------------------===//

#include "passes/NNLowering/Gradients.h"

#include "dialects/NN/NNDialect.h"
#include "passes/NNLowering/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Transforms/DialectConversion.h"
#include "llvm/Support/MathExtras.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace moec::nn;
using namespace moec::nnlowering;

namespace {

/// The dimensions [0, count).
SmallVector<int64_t> leadingDims(int64_t count) {
  return llvm::to_vector(llvm::seq<int64_t>(0, count));
}

/// 1 / sqrt(sum / count + epsilon): the inverse standard deviation (or RMS)
/// of a row from its sum of squares.
Value inverseRoot(OpBuilder &b, Location loc, Value squares, Value count,
                  Value epsilon) {
  Value mean = arith::DivFOp::create(b, loc, squares, count);
  Value root = math::SqrtOp::create(
      b, loc, arith::AddFOp::create(b, loc, mean, epsilon));
  return arith::DivFOp::create(b, loc, floatConst(b, loc, mean.getType(), 1.0),
                               root);
}

/// Zero-initialised compute-type accumulators, one per feature, for sums
/// over every row of `input` ([..., features]).
Value featureAccumulator(OpBuilder &b, Location loc, Value input) {
  int64_t last = rankedType(input).getRank() - 1;
  return zeroAccumulator(b, loc, {tensor::getMixedSize(b, loc, input, last)},
                         rankedType(input).getElementType());
}

//===----------------------------------------------------------------------===//
// Reductions: nn.reduce_sum, nn.reduce_mean, nn.reduce_max
//===----------------------------------------------------------------------===//

template <typename ReduceOp>
struct ReductionOpLowering : OpConversionPattern<ReduceOp> {
  using OpConversionPattern<ReduceOp>::OpConversionPattern;
  using OpAdaptor = typename ReduceOp::Adaptor;
  static constexpr bool isMax = std::is_same_v<ReduceOp, ReduceMaxOp>;
  static constexpr bool isMean = std::is_same_v<ReduceOp, ReduceMeanOp>;

  LogicalResult
  matchAndRewrite(ReduceOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MLIRContext *context = op.getContext();
    Value input = adaptor.getInput();
    RankedTensorType type = op.getType();
    Type compute = computeType(type.getElementType());
    int64_t rank = rankedType(input).getRank();
    SmallVector<int64_t> axes = op.getNormalizedAxes();
    SmallVector<OpFoldResult> kept;
    for (int64_t i = 0; i < rank; ++i)
      if (!llvm::is_contained(axes, i))
        kept.push_back(tensor::getMixedSize(rewriter, loc, input, i));
    // arith.maximumf propagates NaN, as reduce_max specifies.
    Value acc = buildGeneric(
        rewriter, loc, input,
        filledTensor(rewriter, loc, kept, compute,
                     isMax ? -std::numeric_limits<double>::infinity() : 0.0),
        {rewriter.getMultiDimIdentityMap(rank),
         dropDimsMap(rank, axes, context)},
        iterators(rank, axes),
        [](OpBuilder &b, Location loc, ValueRange args) -> SmallVector<Value> {
          if constexpr (isMax)
            return {arith::MaximumFOp::create(b, loc, args[1], args[0])};
          else
            return {arith::AddFOp::create(b, loc, args[1], args[0])};
        })[0];
    Value count;
    if (isMean) {
      Value elements = indexConst(rewriter, loc, 1);
      for (int64_t axis : axes)
        elements = arith::MulIOp::create(rewriter, loc, elements,
                                         dimValue(rewriter, loc, input, axis));
      count = indexToFloat(rewriter, loc, elements, compute);
    }
    Value result;
    if (op.getKeepDims() || isMean) {
      // Rounding, the division of a mean and the extent-1 dimensions in one
      // copy.
      SmallVector<OpFoldResult> sizes = kept;
      AffineMap map = rewriter.getMultiDimIdentityMap(kept.size());
      if (op.getKeepDims()) {
        sizes.clear();
        for (int64_t i = 0; i < rank; ++i)
          sizes.push_back(llvm::is_contained(axes, i)
                              ? rewriter.getIndexAttr(1)
                              : tensor::getMixedSize(rewriter, loc, input, i));
        map = dropDimsMap(rank, axes, context);
      }
      result = buildElementwise(
          rewriter, loc, acc, map, sizes, type.getElementType(),
          [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
            if (isMean)
              return arith::DivFOp::create(b, loc, args[0], count);
            return args[0];
          });
    } else {
      result = convertElements(rewriter, loc, acc, type.getElementType());
    }
    rewriter.replaceOp(op, castToType(rewriter, loc, result, type));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// nn.unary_grad
//===----------------------------------------------------------------------===//

/// f'(x) of the unary function, on the compute type.
Value derivative(UnaryFunction function, OpBuilder &b, Location loc, Value x) {
  Type type = x.getType();
  auto constant = [&](double value) { return floatConst(b, loc, type, value); };
  auto mul = [&](Value l, Value r) -> Value {
    return arith::MulFOp::create(b, loc, l, r);
  };
  auto sub = [&](Value l, Value r) -> Value {
    return arith::SubFOp::create(b, loc, l, r);
  };
  auto div = [&](Value l, Value r) -> Value {
    return arith::DivFOp::create(b, loc, l, r);
  };
  auto exp = [&](Value v) -> Value { return math::ExpOp::create(b, loc, v); };
  Value one = constant(1.0);
  switch (function) {
  case UnaryFunction::neg:
    return constant(-1.0);
  case UnaryFunction::exp:
    return exp(x);
  case UnaryFunction::log:
    return div(one, x);
  case UnaryFunction::sqrt:
    return div(constant(0.5), math::SqrtOp::create(b, loc, x));
  case UnaryFunction::rsqrt: {
    // -x^(-3/2) / 2.
    Value r = math::RsqrtOp::create(b, loc, x);
    return mul(constant(-0.5), mul(r, mul(r, r)));
  }
  case UnaryFunction::reciprocal:
    return div(constant(-1.0), mul(x, x));
  case UnaryFunction::tanh: {
    Value t = math::TanhOp::create(b, loc, x);
    return sub(one, mul(t, t));
  }
  case UnaryFunction::erf:
    return mul(constant(2.0 * llvm::numbers::inv_sqrtpi),
               exp(arith::NegFOp::create(b, loc, mul(x, x))));
  case UnaryFunction::sigmoid: {
    Value s = sigmoid(b, loc, x);
    return mul(s, sub(one, s));
  }
  case UnaryFunction::relu: {
    Value positive = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x,
                                           constant(0.0));
    return arith::SelectOp::create(b, loc, positive, one, constant(0.0));
  }
  case UnaryFunction::silu: {
    // s + x s (1 - s).
    Value s = sigmoid(b, loc, x);
    return mul(s, arith::AddFOp::create(b, loc, one, mul(x, sub(one, s))));
  }
  case UnaryFunction::gelu: {
    // Phi(x) + x phi(x).
    Value erf =
        math::ErfOp::create(b, loc, mul(x, constant(llvm::numbers::inv_sqrt2)));
    Value cdf = mul(constant(0.5), arith::AddFOp::create(b, loc, one, erf));
    Value density =
        mul(constant(llvm::numbers::inv_sqrt2 * llvm::numbers::inv_sqrtpi),
            exp(mul(constant(-0.5), mul(x, x))));
    return arith::AddFOp::create(b, loc, cdf, mul(x, density));
  }
  case UnaryFunction::gelu_tanh: {
    // With u = k (x + c x^3) and t = tanh(u):
    // 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2).
    double k = std::sqrt(2.0 * llvm::numbers::inv_pi), c = 0.044715;
    Value square = mul(x, x);
    Value u =
        mul(constant(k),
            arith::AddFOp::create(b, loc, x, mul(constant(c), mul(square, x))));
    Value t = math::TanhOp::create(b, loc, u);
    Value slope =
        mul(constant(k),
            arith::AddFOp::create(b, loc, one, mul(constant(3.0 * c), square)));
    Value inner = mul(mul(constant(0.5), x), mul(sub(one, mul(t, t)), slope));
    return arith::AddFOp::create(
        b, loc, mul(constant(0.5), arith::AddFOp::create(b, loc, one, t)),
        inner);
  }
  }
  llvm_unreachable("every unary function has a derivative");
}

struct UnaryGradOpLowering : OpConversionPattern<UnaryGradOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(UnaryGradOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value grad = adaptor.getGrad(), input = adaptor.getInput();
    RankedTensorType type = rankedType(input);
    AffineMap identity = rewriter.getMultiDimIdentityMap(type.getRank());
    UnaryFunction function = op.getFunction();
    Value result = buildElementwise(
        rewriter, loc, {grad, input}, {identity, identity},
        tensor::getMixedSizes(rewriter, loc, input), type.getElementType(),
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          if (function == UnaryFunction::neg)
            return arith::NegFOp::create(b, loc, args[0]);
          return arith::MulFOp::create(b, loc, args[0],
                                       derivative(function, b, loc, args[1]));
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Normalisations
//===----------------------------------------------------------------------===//

/// Maps of a row reduction over [..., features]: per-element operands, then
/// per-feature parameters, then the per-row accumulators.
SmallVector<AffineMap> rowReductionMaps(int64_t rank, int64_t elementValues,
                                        int64_t featureValues, int64_t outputs,
                                        MLIRContext *context) {
  SmallVector<AffineMap> maps(elementValues,
                              AffineMap::getMultiDimIdentityMap(rank, context));
  maps.append(featureValues, dimsMap(rank, rank - 1, context));
  maps.append(outputs, dropDimsMap(rank, rank - 1, context));
  return maps;
}

/// Maps of a reduction over the rows into per-feature accumulators:
/// per-element operands, then per-row statistics, then the accumulators.
SmallVector<AffineMap> featureReductionMaps(int64_t rank, int64_t elementValues,
                                            int64_t rowValues, int64_t outputs,
                                            MLIRContext *context) {
  SmallVector<AffineMap> maps(elementValues,
                              AffineMap::getMultiDimIdentityMap(rank, context));
  maps.append(rowValues, dropDimsMap(rank, rank - 1, context));
  maps.append(outputs, dimsMap(rank, rank - 1, context));
  return maps;
}

struct RMSNormGradOpLowering : OpConversionPattern<RMSNormGradOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(RMSNormGradOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MLIRContext *context = op.getContext();
    Value grad = adaptor.getGrad(), input = adaptor.getInput(),
          weight = adaptor.getWeight();
    RankedTensorType type = rankedType(input);
    int64_t rank = type.getRank();
    Type element = type.getElementType(), compute = computeType(element);
    Value count = featureCount(rewriter, loc, input, compute);
    Value epsilon =
        floatConst(rewriter, loc, compute, op.getEpsilon().convertToFloat());

    // Per row: sum(x^2) and sum(grad * weight * x), in one pass.
    SmallVector<OpFoldResult> rows =
        sizesWithout(rewriter, loc, input, rank - 1);
    SmallVector<Value> sums = buildGeneric(
        rewriter, loc, {input, grad, weight},
        {zeroAccumulator(rewriter, loc, rows, element),
         zeroAccumulator(rewriter, loc, rows, element)},
        rowReductionMaps(rank, 2, 1, 2, context), iterators(rank, rank - 1),
        [](OpBuilder &b, Location loc, ValueRange args) -> SmallVector<Value> {
          Value x = args[0];
          Value gwx = arith::MulFOp::create(
              b, loc, arith::MulFOp::create(b, loc, args[1], args[2]), x);
          return {arith::AddFOp::create(b, loc, args[3],
                                        arith::MulFOp::create(b, loc, x, x)),
                  arith::AddFOp::create(b, loc, args[4], gwx)};
        });
    Value squares = sums[0], dot = sums[1];

    // dx = r (grad * weight - x r^2 mean(grad * weight * x)).
    SmallVector<AffineMap> elementMaps = normalizationMaps(rank, 2, 0, context);
    elementMaps.push_back(rewriter.getMultiDimIdentityMap(rank));
    elementMaps.push_back(dimsMap(rank, rank - 1, context));
    Value inputGrad = buildElementwise(
        rewriter, loc, {input, squares, dot, grad, weight}, elementMaps,
        tensor::getMixedSizes(rewriter, loc, input), element,
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Value r = inverseRoot(b, loc, args[1], count, epsilon);
          Value meanDot = arith::DivFOp::create(b, loc, args[2], count);
          Value gw = arith::MulFOp::create(b, loc, args[3], args[4]);
          Value correction = arith::MulFOp::create(
              b, loc, args[0],
              arith::MulFOp::create(b, loc, arith::MulFOp::create(b, loc, r, r),
                                    meanDot));
          return arith::MulFOp::create(
              b, loc, r, arith::SubFOp::create(b, loc, gw, correction));
        });

    // dweight = sum over rows of grad * x * r.
    Value weightGrad = buildGeneric(
        rewriter, loc, {grad, input, squares},
        featureAccumulator(rewriter, loc, input),
        featureReductionMaps(rank, 2, 1, 1, context),
        iterators(rank, leadingDims(rank - 1)),
        [&](OpBuilder &b, Location loc, ValueRange args) -> SmallVector<Value> {
          Value r = inverseRoot(b, loc, args[2], count, epsilon);
          Value term = arith::MulFOp::create(
              b, loc, arith::MulFOp::create(b, loc, args[0], args[1]), r);
          return {arith::AddFOp::create(b, loc, args[3], term)};
        })[0];
    weightGrad = convertElements(rewriter, loc, weightGrad, element);
    rewriter.replaceOp(op,
                       {inputGrad, castToType(rewriter, loc, weightGrad,
                                              op.getWeightGrad().getType())});
    return success();
  }
};

struct LayerNormGradOpLowering : OpConversionPattern<LayerNormGradOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(LayerNormGradOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MLIRContext *context = op.getContext();
    Value grad = adaptor.getGrad(), input = adaptor.getInput(),
          weight = adaptor.getWeight();
    RankedTensorType type = rankedType(input);
    int64_t rank = type.getRank();
    Type element = type.getElementType(), compute = computeType(element);
    Value count = featureCount(rewriter, loc, input, compute);
    Value epsilon =
        floatConst(rewriter, loc, compute, op.getEpsilon().convertToFloat());

    // Mean and variance in two passes, as the forward lowering computes
    // them.
    Value sum, squares;
    std::tie(sum, squares) = layerNormRowSums(rewriter, loc, input, count);
    // xhat = (x - mean) r from the input and the two row statistics.
    auto normalized = [&](OpBuilder &b, Location loc, Value x, Value sum,
                          Value squares) {
      Value r = inverseRoot(b, loc, squares, count, epsilon);
      return arith::MulFOp::create(b, loc,
                                   deviationFromMean(b, loc, x, sum, count), r);
    };

    // Per row: sum(grad * weight) and sum(grad * weight * xhat).
    SmallVector<OpFoldResult> rows =
        sizesWithout(rewriter, loc, input, rank - 1);
    SmallVector<AffineMap> maps(3, rewriter.getMultiDimIdentityMap(rank));
    maps[2] = dimsMap(rank, rank - 1, context);
    maps.append(4, dropDimsMap(rank, rank - 1, context));
    SmallVector<Value> sums = buildGeneric(
        rewriter, loc, {input, grad, weight, sum, squares},
        {zeroAccumulator(rewriter, loc, rows, element),
         zeroAccumulator(rewriter, loc, rows, element)},
        maps, iterators(rank, rank - 1),
        [&](OpBuilder &b, Location loc, ValueRange args) -> SmallVector<Value> {
          Value gw = arith::MulFOp::create(b, loc, args[1], args[2]);
          Value xhat = normalized(b, loc, args[0], args[3], args[4]);
          return {
              arith::AddFOp::create(b, loc, args[5], gw),
              arith::AddFOp::create(b, loc, args[6],
                                    arith::MulFOp::create(b, loc, gw, xhat))};
        });

    // dx = r (grad * weight - mean(grad * weight) - xhat mean(gw xhat)).
    SmallVector<AffineMap> elementMaps = normalizationMaps(rank, 4, 0, context);
    elementMaps.push_back(rewriter.getMultiDimIdentityMap(rank));
    elementMaps.push_back(dimsMap(rank, rank - 1, context));
    Value inputGrad = buildElementwise(
        rewriter, loc, {input, sum, squares, sums[0], sums[1], grad, weight},
        elementMaps, tensor::getMixedSizes(rewriter, loc, input), element,
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Value r = inverseRoot(b, loc, args[2], count, epsilon);
          Value xhat = normalized(b, loc, args[0], args[1], args[2]);
          Value meanGW = arith::DivFOp::create(b, loc, args[3], count);
          Value meanGWX = arith::DivFOp::create(b, loc, args[4], count);
          Value gw = arith::MulFOp::create(b, loc, args[5], args[6]);
          Value centered = arith::SubFOp::create(
              b, loc, arith::SubFOp::create(b, loc, gw, meanGW),
              arith::MulFOp::create(b, loc, xhat, meanGWX));
          return arith::MulFOp::create(b, loc, r, centered);
        });

    // dweight = sum over rows of grad * xhat, dbias of grad, in one pass.
    SmallVector<Value> paramGrads = buildGeneric(
        rewriter, loc, {grad, input, sum, squares},
        {featureAccumulator(rewriter, loc, input),
         featureAccumulator(rewriter, loc, input)},
        featureReductionMaps(rank, 2, 2, 2, context),
        iterators(rank, leadingDims(rank - 1)),
        [&](OpBuilder &b, Location loc, ValueRange args) -> SmallVector<Value> {
          Value xhat = normalized(b, loc, args[1], args[2], args[3]);
          return {arith::AddFOp::create(
                      b, loc, args[4],
                      arith::MulFOp::create(b, loc, args[0], xhat)),
                  arith::AddFOp::create(b, loc, args[5], args[0])};
        });
    Type paramType = op.getWeightGrad().getType();
    SmallVector<Value> results = {inputGrad};
    for (Value paramGrad : paramGrads)
      results.push_back(castToType(
          rewriter, loc, convertElements(rewriter, loc, paramGrad, element),
          paramType));
    rewriter.replaceOp(op, results);
    return success();
  }
};

//===----------------------------------------------------------------------===//
// nn.embedding_grad
//===----------------------------------------------------------------------===//

struct EmbeddingGradOpLowering : OpConversionPattern<EmbeddingGradOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(EmbeddingGradOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value grad = adaptor.getGrad(), ids = adaptor.getIds(),
          table = adaptor.getTable();
    RankedTensorType type = op.getType();
    Type element = type.getElementType();
    // Positions as a flat list: ids [N], gradient rows [N, d].
    int64_t idRank = rankedType(ids).getRank();
    if (idRank == 0) {
      ids = tensor::ExpandShapeOp::create(
          rewriter, loc, rankedType(ids).clone(ArrayRef<int64_t>{1}), ids,
          ArrayRef<ReassociationIndices>{});
      grad = tensor::ExpandShapeOp::create(
          rewriter, loc,
          rankedType(grad).clone({1, rankedType(grad).getDimSize(0)}), grad,
          ArrayRef<ReassociationIndices>{{0, 1}});
    } else if (idRank > 1) {
      ids = tensor::CollapseShapeOp::create(
          rewriter, loc, ids,
          ArrayRef<ReassociationIndices>{leadingDims(idRank)});
      grad = collapseToMatrix(rewriter, loc, grad);
    }
    OpFoldResult features = sharedSize(rewriter, loc, {{table, 1}, {grad, 1}});
    Value vocab = dimValue(rewriter, loc, table, 0);
    Value acc = zeroAccumulator(
        rewriter, loc,
        {tensor::getMixedSize(rewriter, loc, table, 0), features}, element);
    // In position order, table_grad[id] += grad[n]: a row-wide generic on a
    // slice of the accumulator, which bufferizes in place.
    Value one = indexConst(rewriter, loc, 1);
    OpFoldResult unit = rewriter.getIndexAttr(1);
    auto loop = scf::ForOp::create(
        rewriter, loc, indexConst(rewriter, loc, 0),
        dimValue(rewriter, loc, ids, 0), one, ValueRange{acc},
        [&](OpBuilder &b, Location loc, Value position, ValueRange iters) {
          Value id = tensor::ExtractOp::create(b, loc, ids, position);
          Value row = clampedIndex(b, loc, id, vocab);
          SmallVector<OpFoldResult> offsets = {row, b.getIndexAttr(0)};
          SmallVector<OpFoldResult> sizes = {unit, features};
          SmallVector<OpFoldResult> strides = {unit, unit};
          Value target = tensor::ExtractSliceOp::create(
              b, loc, iters[0], offsets, sizes, strides);
          Value source = tensor::ExtractSliceOp::create(
              b, loc, grad,
              SmallVector<OpFoldResult>{position, b.getIndexAttr(0)}, sizes,
              strides);
          AffineMap identity = b.getMultiDimIdentityMap(2);
          Value updated = buildGeneric(
              b, loc, source, target, {identity, identity}, iterators(2),
              [](OpBuilder &b, Location loc,
                 ValueRange args) -> SmallVector<Value> {
                return {arith::AddFOp::create(b, loc, args[1], args[0])};
              })[0];
          Value inserted = tensor::InsertSliceOp::create(
              b, loc, updated, iters[0], offsets, sizes, strides);
          scf::YieldOp::create(b, loc, inserted);
        });
    Value result = convertElements(rewriter, loc, loop.getResult(0), element);
    rewriter.replaceOp(op, castToType(rewriter, loc, result, type));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// nn.attention_grad
//===----------------------------------------------------------------------===//

struct AttentionGradOpLowering : OpConversionPattern<AttentionGradOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(AttentionGradOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MLIRContext *context = op.getContext();
    Value grad = adaptor.getGrad(), query = adaptor.getQuery(),
          key = adaptor.getKey(), value = adaptor.getValue();
    std::optional<int64_t> group =
        headGroup(op.getQuery().getType(), op.getKey().getType());
    if (!group)
      return rewriter.notifyMatchFailure(op, "dynamic head counts");
    RankedTensorType queryType = op.getQuery().getType();
    Type element = queryType.getElementType(), compute = computeType(element);
    OpFoldResult batch = sharedSize(
        rewriter, loc, {{query, 0}, {key, 0}, {value, 0}, {grad, 0}});
    OpFoldResult heads = rewriter.getIndexAttr(queryType.getDimSize(2));
    OpFoldResult kvHeads =
        rewriter.getIndexAttr(op.getKey().getType().getDimSize(2));
    OpFoldResult seqQ = sharedSize(rewriter, loc, {{query, 1}, {grad, 1}});
    OpFoldResult seqKV = sharedSize(rewriter, loc, {{key, 1}, {value, 1}});
    OpFoldResult headDim = sharedSize(rewriter, loc, {{query, 3}, {key, 3}});
    OpFoldResult valueDim = sharedSize(rewriter, loc, {{value, 3}, {grad, 3}});
    SmallVector<OpFoldResult> scoreSizes = {batch, heads, seqQ, seqKV};
    auto d = [&](unsigned i) { return rewriter.getAffineDimExpr(i); };
    auto map = [&](unsigned loops, ArrayRef<AffineExpr> exprs) {
      return AffineMap::get(loops, 0, exprs, context);
    };
    AffineMap identity4 = rewriter.getMultiDimIdentityMap(4);
    AffineMap rows = dropDimsMap(4, 3, context);

    // P = weights / sum over [b, h, i, j]; 0 for a query that sees no key.
    AttentionWeights attention = buildAttentionWeights(
        rewriter, loc, query, key, *group, op.getCausal(),
        op.getScale().convertToFloat(), scoreSizes, element);
    Value probabilities = buildElementwise(
        rewriter, loc, {attention.weights, attention.sum}, {identity4, rows},
        scoreSizes, compute,
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Value zero = floatConst(b, loc, compute, 0.0);
          Value seen = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT,
                                             args[1], zero);
          Value p = arith::DivFOp::create(b, loc, args[0], args[1]);
          return arith::SelectOp::create(b, loc, seen, p, zero);
        });

    // dP = dO V^T over (b, h, i, j, e).
    Value probabilityGrad =
        buildGeneric(rewriter, loc, {grad, value},
                     zeroAccumulator(rewriter, loc, scoreSizes, element),
                     {map(5, {d(0), d(2), d(1), d(4)}),
                      map(5, {d(0), d(3), d(1).floorDiv(*group), d(4)}),
                      dropDimsMap(5, 4, context)},
                     iterators(5, 4), multiplyAccumulate)[0];
    // dS = scale * P (dP - sum_j P dP); the scale of the scores is folded
    // in here so that dQ and dK are plain contractions.
    Value rowDot = buildGeneric(
        rewriter, loc, {probabilities, probabilityGrad},
        zeroAccumulator(rewriter, loc, {batch, heads, seqQ}, element),
        {identity4, identity4, rows}, iterators(4, 3),
        [](OpBuilder &b, Location loc, ValueRange args) -> SmallVector<Value> {
          return {arith::AddFOp::create(
              b, loc, args[2],
              arith::MulFOp::create(b, loc, args[0], args[1]))};
        })[0];
    Value scale = attention.scale;
    Value scoreGrad = buildElementwise(
        rewriter, loc, {probabilities, probabilityGrad, rowDot},
        {identity4, identity4, rows}, scoreSizes, compute,
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Value centered = arith::SubFOp::create(b, loc, args[1], args[2]);
          return arith::MulFOp::create(
              b, loc, scale, arith::MulFOp::create(b, loc, args[0], centered));
        });

    // dQ = dS K over (b, i, h, e, j).
    Value queryGrad = buildGeneric(
        rewriter, loc, {scoreGrad, key},
        zeroAccumulator(rewriter, loc, {batch, seqQ, heads, headDim}, element),
        {map(5, {d(0), d(2), d(1), d(4)}),
         map(5, {d(0), d(4), d(2).floorDiv(*group), d(3)}),
         dropDimsMap(5, 4, context)},
        iterators(5, 4), multiplyAccumulate)[0];
    // dK = dS^T Q and dV = P^T dO over (b, j, kv_head, e, g, i): query head
    // kv_head * group + g reads key/value head kv_head, so the heads of a
    // group sum into it. The head dimensions are split into (kv_head, g)
    // first, since linalg derives every loop extent from a plain dimension.
    auto splitHeads = [&](Value tensor, int64_t dim) -> Value {
      SmallVector<OpFoldResult> sizes =
          tensor::getMixedSizes(rewriter, loc, tensor);
      sizes[dim] = rewriter.getIndexAttr(*group);
      sizes.insert(sizes.begin() + dim, kvHeads);
      SmallVector<ReassociationIndices> groups;
      for (int64_t i = 0; i < 4; ++i)
        groups.push_back(i < dim    ? ReassociationIndices{i}
                         : i == dim ? ReassociationIndices{i, i + 1}
                                    : ReassociationIndices{i + 1});
      SmallVector<int64_t> shape;
      SmallVector<Value> dynamic;
      dispatchIndexOpFoldResults(sizes, dynamic, shape);
      return tensor::ExpandShapeOp::create(rewriter, loc,
                                           rankedType(tensor).clone(shape),
                                           tensor, groups, sizes);
    };
    auto kvGrad = [&](Value scores, Value rowsOperand, OpFoldResult features) {
      return buildGeneric(
          rewriter, loc, {splitHeads(scores, 1), splitHeads(rowsOperand, 2)},
          zeroAccumulator(rewriter, loc, {batch, seqKV, kvHeads, features},
                          element),
          {map(6, {d(0), d(2), d(4), d(5), d(1)}),
           map(6, {d(0), d(5), d(2), d(4), d(3)}),
           map(6, {d(0), d(1), d(2), d(3)})},
          iterators(6, {4, 5}), multiplyAccumulate)[0];
    };
    Value keyGrad = kvGrad(scoreGrad, query, headDim);
    Value valueGrad = kvGrad(probabilities, grad, valueDim);

    SmallVector<Value> gradients = {queryGrad, keyGrad, valueGrad};
    SmallVector<Value> results;
    for (auto [result, gradient] : llvm::zip_equal(op.getResults(), gradients))
      results.push_back(castToType(
          rewriter, loc, convertElements(rewriter, loc, gradient, element),
          result.getType()));
    rewriter.replaceOp(op, results);
    return success();
  }
};

//===----------------------------------------------------------------------===//
// nn.cross_entropy_grad
//===----------------------------------------------------------------------===//

struct CrossEntropyGradOpLowering : OpConversionPattern<CrossEntropyGradOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(CrossEntropyGradOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MLIRContext *context = op.getContext();
    Value grad = adaptor.getGrad(), logits = adaptor.getLogits(),
          targets = adaptor.getTargets(), mask = adaptor.getMask();
    RankedTensorType type = rankedType(logits);
    int64_t positions = rankedType(targets).getRank(), rank = positions + 1;
    Type element = type.getElementType(), compute = computeType(element);
    Value max = maxOverDim(rewriter, loc, logits, positions);
    Value sum = sumExpOverDim(rewriter, loc, logits, positions, max);
    Value vocab = dimValue(rewriter, loc, logits, positions);

    // The loss divides by max(sum(mask), 1), the number of positions
    // without a mask.
    Value count;
    if (mask) {
      Value total = buildGeneric(
          rewriter, loc, mask, zeroAccumulator(rewriter, loc, {}, element),
          {rewriter.getMultiDimIdentityMap(positions),
           AffineMap::get(positions, 0, {}, context)},
          iterators(positions, leadingDims(positions)),
          [](OpBuilder &b, Location loc,
             ValueRange args) -> SmallVector<Value> {
            return {arith::AddFOp::create(b, loc, args[1], args[0])};
          })[0];
      count = tensor::ExtractOp::create(rewriter, loc, total, ValueRange{});
    } else {
      count = indexToFloat(rewriter, loc, elementCount(rewriter, loc, targets),
                           compute);
    }
    count = arith::MaximumFOp::create(rewriter, loc, count,
                                      floatConst(rewriter, loc, compute, 1.0));
    Value seed = castFloat(
        rewriter, loc,
        tensor::ExtractOp::create(rewriter, loc, grad, ValueRange{}), compute);
    Value perPosition = arith::DivFOp::create(rewriter, loc, seed, count);

    // grad * mask / count * (softmax(logits) - onehot(target)).
    AffineMap positionMap = dropDimsMap(rank, positions, context);
    SmallVector<Value> inputs = {logits, max, sum, targets};
    SmallVector<AffineMap> maps = {rewriter.getMultiDimIdentityMap(rank),
                                   positionMap, positionMap, positionMap};
    if (mask) {
      inputs.push_back(mask);
      maps.push_back(positionMap);
    }
    Value result = buildElementwise(
        rewriter, loc, inputs, maps,
        tensor::getMixedSizes(rewriter, loc, logits), element,
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Value shifted = arith::SubFOp::create(b, loc, args[0], args[1]);
          Value p = arith::DivFOp::create(
              b, loc, math::ExpOp::create(b, loc, shifted), args[2]);
          Value target = clampedIndex(b, loc, args[3], vocab);
          Value hit =
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                    loopIndex(b, loc, positions), target);
          Value onehot = arith::SelectOp::create(
              b, loc, hit, floatConst(b, loc, compute, 1.0),
              floatConst(b, loc, compute, 0.0));
          Value weight =
              mask ? arith::MulFOp::create(b, loc, perPosition, args[4])
                   : perPosition;
          return arith::MulFOp::create(
              b, loc, weight, arith::SubFOp::create(b, loc, p, onehot));
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

} // namespace

void moec::nnlowering::populateGradientLoweringPatterns(
    RewritePatternSet &patterns) {
  patterns.add<ReductionOpLowering<ReduceSumOp>,
               ReductionOpLowering<ReduceMeanOp>,
               ReductionOpLowering<ReduceMaxOp>, UnaryGradOpLowering,
               RMSNormGradOpLowering, LayerNormGradOpLowering,
               EmbeddingGradOpLowering, AttentionGradOpLowering,
               CrossEntropyGradOpLowering>(patterns.getContext());
}
