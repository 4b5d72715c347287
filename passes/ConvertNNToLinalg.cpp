//===- ConvertNNToLinalg.cpp - nn ops -> linalg, tensor, arith, math ---===//
//
// Lowers every nn op to upstream ops on tensors. Conventions shared by the
// patterns below:
//
// - Arithmetic runs in f32 for f16/bf16 operands: generic bodies see their
//   floating-point inputs extended to f32 and round what they yield to the
//   output's element type. Reductions and contractions accumulate in f32
//   tensors and round once at the end.
// - Numpy broadcasting is expressed in indexing maps: an operand dimension of
//   static extent 1 reads index 0. A dynamic extent is assumed to equal the
//   result's (an extent that is 1 only at run time does not broadcast).
// - Dynamic extents of results are read with tensor.dim from an operand that
//   carries them.
// - Integer ids read with tensor.extract are clamped into range, so that an
//   out-of-range id reads a wrong row rather than arbitrary memory.
//
// The builders these patterns share are in NNLowering/Builders.h; the
// reductions and the gradient ops (`*_grad`) lower in
// NNLowering/Gradients.cpp, the tensor-manipulation ops of ONNX graphs in
// NNLowering/TensorOps.cpp.
//
//===----------------------------------------------------------------------===//

#include "dialects/NN/NNDialect.h"
#include "passes/NNLowering/Builders.h"
#include "passes/NNLowering/Gradients.h"
#include "passes/NNLowering/TensorOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/ReshapeOpsUtils.h"
#include "mlir/Transforms/DialectConversion.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/Support/MathExtras.h"

#include <cmath>
#include <limits>

namespace moec {
#define GEN_PASS_DEF_CONVERTNNTOLINALG
#include "passes/Passes.h.inc"
} // namespace moec

using namespace mlir;
using namespace moec::nn;
using namespace moec::nnlowering;

namespace {

//===----------------------------------------------------------------------===//
// Elementwise ops
//===----------------------------------------------------------------------===//

/// Integer division truncating toward zero, defined everywhere: a zero
/// divisor gives 0 and INT_MIN / -1 wraps (arith.divsi is undefined for
/// both, and x86 traps).
Value divideIntegers(OpBuilder &b, Location loc, Value lhs, Value rhs) {
  Type type = lhs.getType();
  auto constant = [&](int64_t value) -> Value {
    return arith::ConstantOp::create(b, loc, b.getIntegerAttr(type, value));
  };
  Value zero = constant(0), minusOne = constant(-1);
  Value byZero =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, rhs, zero);
  Value byMinusOne =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, rhs, minusOne);
  Value special = arith::OrIOp::create(b, loc, byZero, byMinusOne);
  Value divisor = arith::SelectOp::create(b, loc, special, constant(1), rhs);
  Value quotient = arith::DivSIOp::create(b, loc, lhs, divisor);
  Value negated = arith::SubIOp::create(b, loc, zero, lhs);
  quotient = arith::SelectOp::create(b, loc, byMinusOne, negated, quotient);
  return arith::SelectOp::create(b, loc, byZero, zero, quotient);
}

/// The scalar operation of a binary op on float or integer operands.
template <typename FloatOp, typename IntegerOp>
Value computeBinary(OpBuilder &b, Location loc, Value lhs, Value rhs) {
  if (isa<FloatType>(lhs.getType()))
    return FloatOp::create(b, loc, lhs, rhs);
  if constexpr (std::is_same_v<IntegerOp, arith::DivSIOp>)
    return divideIntegers(b, loc, lhs, rhs);
  else
    return IntegerOp::create(b, loc, lhs, rhs);
}

/// `IntegerOp` is void for ops that take floats only.
template <typename SourceOp, typename FloatOp, typename IntegerOp = void>
struct BinaryOpLowering : OpConversionPattern<SourceOp> {
  using OpConversionPattern<SourceOp>::OpConversionPattern;
  using OpAdaptor = typename SourceOp::Adaptor;

  LogicalResult
  matchAndRewrite(SourceOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    RankedTensorType type = op.getType();
    Value result = buildBroadcastElementwise(
        rewriter, loc, type, adaptor.getOperands(),
        [](OpBuilder &b, Location loc, ValueRange args) -> Value {
          if constexpr (std::is_void_v<IntegerOp>)
            return FloatOp::create(b, loc, args[0], args[1]);
          else
            return computeBinary<FloatOp, IntegerOp>(b, loc, args[0], args[1]);
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

// The scalar formula of each unary op, on the compute type.
Value computeUnary(NegOp, OpBuilder &b, Location loc, Value x) {
  if (isa<FloatType>(x.getType()))
    return arith::NegFOp::create(b, loc, x);
  Value zero =
      arith::ConstantOp::create(b, loc, b.getIntegerAttr(x.getType(), 0));
  return arith::SubIOp::create(b, loc, zero, x);
}
Value computeUnary(ExpOp, OpBuilder &b, Location loc, Value x) {
  return math::ExpOp::create(b, loc, x);
}
Value computeUnary(LogOp, OpBuilder &b, Location loc, Value x) {
  return math::LogOp::create(b, loc, x);
}
Value computeUnary(SqrtOp, OpBuilder &b, Location loc, Value x) {
  return math::SqrtOp::create(b, loc, x);
}
Value computeUnary(RsqrtOp, OpBuilder &b, Location loc, Value x) {
  return math::RsqrtOp::create(b, loc, x);
}
Value computeUnary(ReciprocalOp, OpBuilder &b, Location loc, Value x) {
  return arith::DivFOp::create(b, loc, floatConst(b, loc, x.getType(), 1.0), x);
}
Value computeUnary(TanhOp, OpBuilder &b, Location loc, Value x) {
  return math::TanhOp::create(b, loc, x);
}
Value computeUnary(ErfOp, OpBuilder &b, Location loc, Value x) {
  return math::ErfOp::create(b, loc, x);
}
Value computeUnary(SigmoidOp, OpBuilder &b, Location loc, Value x) {
  return sigmoid(b, loc, x);
}
Value computeUnary(ReluOp, OpBuilder &b, Location loc, Value x) {
  return arith::MaximumFOp::create(b, loc, x,
                                   floatConst(b, loc, x.getType(), 0.0));
}
Value computeUnary(SiluOp, OpBuilder &b, Location loc, Value x) {
  return arith::MulFOp::create(b, loc, x, sigmoid(b, loc, x));
}
Value computeUnary(GeluOp op, OpBuilder &b, Location loc, Value x) {
  Type type = x.getType();
  auto constant = [&](double value) { return floatConst(b, loc, type, value); };
  Value one = constant(1.0);
  Value halfX = arith::MulFOp::create(b, loc, constant(0.5), x);
  if (op.getApproximate() == GeluApproximation::none) {
    // x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))).
    Value scaled =
        arith::MulFOp::create(b, loc, x, constant(llvm::numbers::inv_sqrt2));
    Value erf = math::ErfOp::create(b, loc, scaled);
    return arith::MulFOp::create(b, loc, halfX,
                                 arith::AddFOp::create(b, loc, one, erf));
  }
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  Value cube = arith::MulFOp::create(b, loc, constant(0.044715), x);
  cube = arith::MulFOp::create(b, loc, cube, x);
  cube = arith::MulFOp::create(b, loc, cube, x);
  Value inner = arith::MulFOp::create(
      b, loc, constant(std::sqrt(2.0 * llvm::numbers::inv_pi)),
      arith::AddFOp::create(b, loc, x, cube));
  Value tanh = math::TanhOp::create(b, loc, inner);
  return arith::MulFOp::create(b, loc, halfX,
                               arith::AddFOp::create(b, loc, one, tanh));
}

template <typename SourceOp>
struct UnaryOpLowering : OpConversionPattern<SourceOp> {
  using OpConversionPattern<SourceOp>::OpConversionPattern;
  using OpAdaptor = typename SourceOp::Adaptor;

  LogicalResult
  matchAndRewrite(SourceOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    RankedTensorType type = rankedType(input);
    Value result = buildElementwise(
        rewriter, loc, input, rewriter.getMultiDimIdentityMap(type.getRank()),
        tensor::getMixedSizes(rewriter, loc, input), type.getElementType(),
        [&](OpBuilder &b, Location loc, ValueRange args) {
          return computeUnary(op, b, loc, args[0]);
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Linear algebra
//===----------------------------------------------------------------------===//

struct LinearOpLowering : OpConversionPattern<LinearOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(LinearOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput(), bias = adaptor.getBias();
    int64_t rank = rankedType(input).getRank();
    Type elementType = op.getType().getElementType();
    // A vector input is a single row.
    Value rows = input;
    if (rank == 1)
      rows = tensor::ExpandShapeOp::create(
          rewriter, loc,
          RankedTensorType::get({1, rankedType(input).getDimSize(0)},
                                elementType),
          input, ReassociationIndices{0, 1},
          {rewriter.getIndexAttr(1),
           tensor::getMixedSize(rewriter, loc, input, 0)});
    Value product =
        buildMatmul(rewriter, loc, collapseToMatrix(rewriter, loc, rows),
                    adaptor.getWeight());
    if (bias) {
      MLIRContext *context = op.getContext();
      product = buildElementwise(
          rewriter, loc, {product, bias},
          {rewriter.getMultiDimIdentityMap(2), dimsMap(2, 1, context)},
          {tensor::getMixedSize(rewriter, loc, product, 0),
           sharedSize(rewriter, loc, {{product, 1}, {bias, 0}})},
          elementType, [](OpBuilder &b, Location loc, ValueRange args) {
            return arith::AddFOp::create(b, loc, args[0], args[1]);
          });
    }
    product = convertElements(rewriter, loc, product, elementType);
    Value result;
    if (rank == 1)
      result = tensor::CollapseShapeOp::create(
          rewriter, loc, product, ArrayRef<ReassociationIndices>{{0, 1}});
    else
      result = expandFromMatrix(rewriter, loc, product, input);
    rewriter.replaceOp(op, castToType(rewriter, loc, result, op.getType()));
    return success();
  }
};

struct MatmulOpLowering : OpConversionPattern<MatmulOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(MatmulOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value lhs = adaptor.getLhs(), rhs = adaptor.getRhs();
    RankedTensorType lhsType = rankedType(lhs), rhsType = rankedType(rhs);
    RankedTensorType type = op.getType();
    bool transposeLhs = op.getTransposeLhs(),
         transposeRhs = op.getTransposeRhs();
    bool transposed = transposeLhs || transposeRhs;
    Value result;
    if (rhsType.getRank() == 2 && (lhsType.getRank() == 2 || !transposeLhs)) {
      // A shared rhs: every batch row of lhs is a row of one linalg.matmul,
      // the op the CPU schedule targets. Transposing a rank-2 operand first
      // costs one copy, small next to the product.
      if (transposeLhs)
        lhs = transposeMatrix(rewriter, loc, lhs);
      if (transposeRhs)
        rhs = transposeMatrix(rewriter, loc, rhs);
      result =
          buildMatmul(rewriter, loc, collapseToMatrix(rewriter, loc, lhs), rhs);
      result = expandFromMatrix(rewriter, loc, result, lhs);
    } else if (!transposed && lhsType.getRank() == 3 &&
               rhsType.getRank() == 3 &&
               (lhsType.getDimSize(0) == 1) == (rhsType.getDimSize(0) == 1)) {
      // Same batch on both sides (no broadcast): the named batch op.
      Value init =
          zeroAccumulator(rewriter, loc,
                          {sharedSize(rewriter, loc, {{lhs, 0}, {rhs, 0}}),
                           tensor::getMixedSize(rewriter, loc, lhs, 1),
                           tensor::getMixedSize(rewriter, loc, rhs, 2)},
                          type.getElementType());
      result = linalg::BatchMatmulOp::create(rewriter, loc,
                                             TypeRange{init.getType()},
                                             ValueRange{lhs, rhs}, init)
                   .getResult(0);
    } else {
      result = buildContraction(rewriter, op, lhs, rhs);
    }
    result = convertElements(rewriter, loc, result, type.getElementType());
    rewriter.replaceOp(op, castToType(rewriter, loc, result, type));
    return success();
  }

  /// The general case as a generic over (batch..., m, n, k): batch dims
  /// broadcast through the maps and transposes swap the operands' last two
  /// map results.
  static Value buildContraction(OpBuilder &b, MatmulOp op, Value lhs,
                                Value rhs) {
    Location loc = op.getLoc();
    MLIRContext *context = op.getContext();
    RankedTensorType type = op.getType();
    int64_t batch = type.getRank() - 2, loops = batch + 3;
    AffineExpr m = b.getAffineDimExpr(batch), n = b.getAffineDimExpr(batch + 1),
               k = b.getAffineDimExpr(batch + 2);
    int64_t lhsRank = rankedType(lhs).getRank();
    int64_t rhsRank = rankedType(rhs).getRank();
    SmallVector<AffineExpr> lhsExprs =
        broadcastExprs(rankedType(lhs), lhsRank - 2, batch, context);
    SmallVector<AffineExpr> rhsExprs =
        broadcastExprs(rankedType(rhs), rhsRank - 2, batch, context);
    bool transposeLhs = op.getTransposeLhs(),
         transposeRhs = op.getTransposeRhs();
    lhsExprs.append(transposeLhs ? SmallVector<AffineExpr>{k, m}
                                 : SmallVector<AffineExpr>{m, k});
    rhsExprs.append(transposeRhs ? SmallVector<AffineExpr>{n, k}
                                 : SmallVector<AffineExpr>{k, n});
    SmallVector<std::pair<Value, int64_t>> operands = {{lhs, lhsRank - 2},
                                                       {rhs, rhsRank - 2}};
    SmallVector<OpFoldResult> sizes;
    for (int64_t i = 0; i < batch; ++i)
      sizes.push_back(
          broadcastSize(b, loc, type.getDimSize(i), i, batch, operands));
    sizes.push_back(
        tensor::getMixedSize(b, loc, lhs, lhsRank - (transposeLhs ? 1 : 2)));
    sizes.push_back(
        tensor::getMixedSize(b, loc, rhs, rhsRank - (transposeRhs ? 2 : 1)));
    Value init = zeroAccumulator(b, loc, sizes, type.getElementType());
    SmallVector<AffineMap> maps = {AffineMap::get(loops, 0, lhsExprs, context),
                                   AffineMap::get(loops, 0, rhsExprs, context),
                                   dropDimsMap(loops, batch + 2, context)};
    return buildGeneric(b, loc, {lhs, rhs}, init, maps,
                        iterators(loops, batch + 2), multiplyAccumulate)
        .front();
  }
};

//===----------------------------------------------------------------------===//
// Normalisation, softmax, embedding
//===----------------------------------------------------------------------===//

struct RMSNormOpLowering : OpConversionPattern<RMSNormOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(RMSNormOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    RankedTensorType type = rankedType(input);
    Type compute = computeType(type.getElementType());
    Value squares =
        sumLastDim(rewriter, loc, input, {},
                   [](OpBuilder &b, Location loc, ValueRange args) -> Value {
                     return arith::MulFOp::create(b, loc, args[0], args[0]);
                   });
    Value count = featureCount(rewriter, loc, input, compute);
    Value epsilon =
        floatConst(rewriter, loc, compute, op.getEpsilon().convertToFloat());
    // y = x / sqrt(mean(x^2) + epsilon) * weight.
    Value result = buildElementwise(
        rewriter, loc, {input, squares, adaptor.getWeight()},
        normalizationMaps(type.getRank(), 1, 1, op.getContext()),
        tensor::getMixedSizes(rewriter, loc, input), type.getElementType(),
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Value mean = arith::DivFOp::create(b, loc, args[1], count);
          Value rms = math::SqrtOp::create(
              b, loc, arith::AddFOp::create(b, loc, mean, epsilon));
          Value normalized = arith::DivFOp::create(b, loc, args[0], rms);
          return arith::MulFOp::create(b, loc, normalized, args[2]);
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

struct LayerNormOpLowering : OpConversionPattern<LayerNormOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(LayerNormOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput(), bias = adaptor.getBias();
    RankedTensorType type = rankedType(input);
    Type compute = computeType(type.getElementType());
    Value count = featureCount(rewriter, loc, input, compute);
    Value sum, squares;
    std::tie(sum, squares) = layerNormRowSums(rewriter, loc, input, count);
    Value epsilon =
        floatConst(rewriter, loc, compute, op.getEpsilon().convertToFloat());
    SmallVector<Value> inputs = {input, sum, squares, adaptor.getWeight()};
    if (bias)
      inputs.push_back(bias);
    // y = (x - mean) / sqrt(var + epsilon) * weight (+ bias).
    Value result = buildElementwise(
        rewriter, loc, inputs,
        normalizationMaps(type.getRank(), 2, bias ? 2 : 1, op.getContext()),
        tensor::getMixedSizes(rewriter, loc, input), type.getElementType(),
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Value d = deviationFromMean(b, loc, args[0], args[1], count);
          Value variance = arith::DivFOp::create(b, loc, args[2], count);
          Value stddev = math::SqrtOp::create(
              b, loc, arith::AddFOp::create(b, loc, variance, epsilon));
          Value y = arith::MulFOp::create(
              b, loc, arith::DivFOp::create(b, loc, d, stddev), args[3]);
          return bias ? arith::AddFOp::create(b, loc, y, args[4]) : y;
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

struct SoftmaxOpLowering : OpConversionPattern<SoftmaxOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(SoftmaxOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    RankedTensorType type = rankedType(input);
    int64_t rank = type.getRank();
    int64_t axis = static_cast<int64_t>(op.getAxis());
    if (axis < 0)
      axis += rank;
    // Subtracting the maximum keeps exp from overflowing.
    Value max = maxOverDim(rewriter, loc, input, axis);
    Value sum = sumExpOverDim(rewriter, loc, input, axis, max);
    AffineMap reduced = dropDimsMap(rank, axis, op.getContext());
    Value result = buildElementwise(
        rewriter, loc, {input, max, sum},
        {rewriter.getMultiDimIdentityMap(rank), reduced, reduced},
        tensor::getMixedSizes(rewriter, loc, input), type.getElementType(),
        [](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Value shifted = arith::SubFOp::create(b, loc, args[0], args[1]);
          Value e = math::ExpOp::create(b, loc, shifted);
          return arith::DivFOp::create(b, loc, e, args[2]);
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

struct EmbeddingOpLowering : OpConversionPattern<EmbeddingOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(EmbeddingOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value table = adaptor.getTable(), ids = adaptor.getIds();
    int64_t idRank = rankedType(ids).getRank(), loops = idRank + 1;
    Value vocab = dimValue(rewriter, loc, table, 0);
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(rewriter, loc, ids);
    sizes.push_back(tensor::getMixedSize(rewriter, loc, table, 1));
    Value result = buildElementwise(
        rewriter, loc, ids, dropDimsMap(loops, idRank, op.getContext()), sizes,
        op.getType().getElementType(),
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Value row = clampedIndex(b, loc, args[0], vocab);
          Value column = loopIndex(b, loc, idRank);
          return tensor::ExtractOp::create(b, loc, table,
                                           ValueRange{row, column});
        });
    rewriter.replaceOp(op, castToType(rewriter, loc, result, op.getType()));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

struct RotaryOpLowering : OpConversionPattern<RotaryOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(RotaryOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    RankedTensorType type = rankedType(input);
    Value headDim = dimValue(rewriter, loc, input, 3);
    int64_t rotaryExtent = op.getRotaryDim() != 0
                               ? static_cast<int64_t>(op.getRotaryDim())
                               : type.getDimSize(3);
    Value rotaryDim = op.getRotaryDim() == 0
                          ? headDim
                          : indexConst(rewriter, loc, rotaryExtent);
    OpFoldResult halfSize =
        ShapedType::isDynamic(rotaryExtent)
            ? OpFoldResult(arith::DivUIOp::create(rewriter, loc, rotaryDim,
                                                  indexConst(rewriter, loc, 2)))
            : OpFoldResult(rewriter.getIndexAttr(rotaryExtent / 2));
    Value half = getValueOrCreateConstantIndexOp(rewriter, loc, halfSize);
    auto [cosTable, sinTable] = buildAngleTables(
        rewriter, op, adaptor.getPositions(), input, rotaryDim, halfSize);
    bool perBatch = rankedType(cosTable).getRank() == 3;
    bool interleaved = op.getInterleaved();
    Value lastFeature =
        interleaved ? arith::SubIOp::create(rewriter, loc, headDim,
                                            indexConst(rewriter, loc, 1))
                    : Value();
    Value lastPair = arith::SubIOp::create(rewriter, loc, half,
                                           indexConst(rewriter, loc, 1));
    // Each feature reads its partner with tensor.extract; indices are
    // clamped so that the features past rotary_dim, which pass through,
    // still read in bounds.
    Value result = buildElementwise(
        rewriter, loc, input, rewriter.getMultiDimIdentityMap(4),
        tensor::getMixedSizes(rewriter, loc, input), type.getElementType(),
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Value own = args[0];
          Value batch = loopIndex(b, loc, 0), token = loopIndex(b, loc, 1);
          Value head = loopIndex(b, loc, 2), feature = loopIndex(b, loc, 3);
          Value one = indexConst(b, loc, 1);
          Value first, pair, partner;
          if (interleaved) {
            // Pairs (2i, 2i+1).
            Value odd = arith::AndIOp::create(b, loc, feature, one);
            first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, odd,
                                          indexConst(b, loc, 0));
            pair = arith::ShRUIOp::create(b, loc, feature, one);
            partner = arith::SelectOp::create(
                b, loc, first, arith::AddIOp::create(b, loc, feature, one),
                arith::SubIOp::create(b, loc, feature, one));
            partner = arith::MinUIOp::create(b, loc, partner, lastFeature);
          } else {
            // Pairs (i, i + rotary_dim/2).
            first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                          feature, half);
            Value below = arith::SubIOp::create(b, loc, feature, half);
            pair = arith::SelectOp::create(b, loc, first, feature, below);
            partner = arith::SelectOp::create(
                b, loc, first, arith::AddIOp::create(b, loc, feature, half),
                below);
          }
          pair = arith::MinUIOp::create(b, loc, pair, lastPair);
          SmallVector<Value> tableIndices = {token, pair};
          if (perBatch)
            tableIndices.insert(tableIndices.begin(), batch);
          Value c = tensor::ExtractOp::create(b, loc, cosTable, tableIndices);
          Value s = tensor::ExtractOp::create(b, loc, sinTable, tableIndices);
          // The inverse rotation turns by the negated angle.
          if (op.getInverse())
            s = arith::NegFOp::create(b, loc, s);
          Value other = tensor::ExtractOp::create(
              b, loc, input, ValueRange{batch, token, head, partner});
          other = castFloat(b, loc, other, own.getType());
          // (a, b) -> (a cos - b sin, a sin + b cos).
          Value ownCos = arith::MulFOp::create(b, loc, own, c);
          Value otherSin = arith::MulFOp::create(b, loc, other, s);
          Value rotated = arith::SelectOp::create(
              b, loc, first, arith::SubFOp::create(b, loc, ownCos, otherSin),
              arith::AddFOp::create(b, loc, otherSin, ownCos));
          Value inRotary = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::ult, feature, rotaryDim);
          return arith::SelectOp::create(b, loc, inRotary, rotated, own);
        });
    rewriter.replaceOp(op, result);
    return success();
  }

  /// cos and sin of position * theta^(-2i / rotary_dim) as f32 tables over
  /// ([batch,] seq, rotary_dim / 2), with batch only for per-batch positions.
  /// The angle is formed in f64: a large position times a small frequency
  /// loses digits in f32 long before the rounded cos and sin would.
  static std::pair<Value, Value> buildAngleTables(OpBuilder &b, RotaryOp op,
                                                  Value positions, Value input,
                                                  Value rotaryDim,
                                                  OpFoldResult half) {
    Location loc = op.getLoc();
    MLIRContext *context = op.getContext();
    Type f64 = b.getF64Type(), f32 = b.getF32Type();
    SmallVector<OpFoldResult> sizes;
    SmallVector<Value> inputs;
    if (!positions) {
      sizes.push_back(tensor::getMixedSize(b, loc, input, 1));
    } else {
      int64_t rank = rankedType(positions).getRank();
      for (int64_t i = 0; i < rank; ++i)
        sizes.push_back(
            sharedSize(b, loc, {{input, i + 2 - rank}, {positions, i}}));
      inputs.push_back(positions);
    }
    sizes.push_back(half);
    int64_t loops = sizes.size();
    SmallVector<AffineMap> maps;
    if (positions)
      maps.push_back(dropDimsMap(loops, loops - 1, context));
    maps.append(2, b.getMultiDimIdentityMap(loops));
    SmallVector<Value> inits = {tensor::EmptyOp::create(b, loc, sizes, f32),
                                tensor::EmptyOp::create(b, loc, sizes, f32)};
    Value theta = floatConst(b, loc, f64, op.getTheta().convertToFloat());
    Value rotary = indexToFloat(b, loc, rotaryDim, f64);
    SmallVector<Value> tables = buildGeneric(
        b, loc, inputs, inits, maps, iterators(loops),
        [&](OpBuilder &b, Location loc, ValueRange args) -> SmallVector<Value> {
          Value position =
              positions ? arith::SIToFPOp::create(b, loc, f64, args[0])
                        : indexToFloat(b, loc, loopIndex(b, loc, 0), f64);
          Value pair = indexToFloat(b, loc, loopIndex(b, loc, loops - 1), f64);
          Value exponent = arith::DivFOp::create(
              b, loc,
              arith::MulFOp::create(b, loc, floatConst(b, loc, f64, -2.0),
                                    pair),
              rotary);
          Value frequency = math::PowFOp::create(b, loc, theta, exponent);
          Value angle = arith::MulFOp::create(b, loc, position, frequency);
          return {math::CosOp::create(b, loc, angle),
                  math::SinOp::create(b, loc, angle)};
        });
    return {tables[0], tables[1]};
  }
};

struct AttentionOpLowering : OpConversionPattern<AttentionOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(AttentionOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MLIRContext *context = op.getContext();
    Value query = adaptor.getQuery(), key = adaptor.getKey(),
          value = adaptor.getValue();
    std::optional<int64_t> group =
        headGroup(op.getQuery().getType(), op.getKey().getType());
    if (!group)
      return rewriter.notifyMatchFailure(op, "dynamic head counts");
    RankedTensorType type = op.getType();
    Type compute = computeType(type.getElementType());
    OpFoldResult batch =
        sharedSize(rewriter, loc, {{query, 0}, {key, 0}, {value, 0}});
    OpFoldResult heads = rewriter.getIndexAttr(type.getDimSize(2));
    OpFoldResult seqQ = tensor::getMixedSize(rewriter, loc, query, 1);
    OpFoldResult seqKV = sharedSize(rewriter, loc, {{key, 1}, {value, 1}});
    auto d = [&](unsigned i) { return rewriter.getAffineDimExpr(i); };
    AttentionWeights attention = buildAttentionWeights(
        rewriter, loc, query, key, *group, op.getCausal(),
        op.getScale().convertToFloat(), {batch, heads, seqQ, seqKV},
        type.getElementType());
    Value weights = attention.weights, sum = attention.sum;

    // out = (weights v) / sum over (b, i, h, e, j). Normalising after the
    // product divides once per output; and since the weights feed two ops,
    // elementwise fusion leaves them materialised instead of recomputing the
    // exponentials inside the contraction for every output feature.
    Value output = buildGeneric(
        rewriter, loc, {weights, value},
        zeroAccumulator(
            rewriter, loc,
            {batch, seqQ, heads, tensor::getMixedSize(rewriter, loc, value, 3)},
            type.getElementType()),
        {AffineMap::get(5, 0, {d(0), d(2), d(1), d(4)}, context),
         AffineMap::get(5, 0, {d(0), d(4), d(2).floorDiv(*group), d(3)},
                        context),
         dropDimsMap(5, 4, context)},
        iterators(5, 4), multiplyAccumulate)[0];
    output = buildElementwise(
        rewriter, loc, {output, sum},
        {rewriter.getMultiDimIdentityMap(4), dimsMap(4, {0, 2, 1}, context)},
        tensor::getMixedSizes(rewriter, loc, output), type.getElementType(),
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Value zero = floatConst(b, loc, compute, 0.0);
          Value seen = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT,
                                             args[1], zero);
          Value normalized = arith::DivFOp::create(b, loc, args[0], args[1]);
          return arith::SelectOp::create(b, loc, seen, normalized, zero);
        });
    rewriter.replaceOp(op, castToType(rewriter, loc, output, type));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

/// Whether `groups` (one per dimension of `whole`, indexing `parts`) describe
/// the row-major reshape between the two shapes at run time: a static extent
/// of `whole` must be the product of static parts; a dynamic one must have a
/// dynamic part, whose run-time extent the element count then determines.
bool groupsMatch(ArrayRef<int64_t> whole, ArrayRef<int64_t> parts,
                 ArrayRef<ReassociationIndices> groups) {
  for (auto [extent, group] : llvm::zip_equal(whole, groups)) {
    bool dynamic = false;
    int64_t product = 1;
    for (int64_t part : group) {
      dynamic |= ShapedType::isDynamic(parts[part]);
      if (!ShapedType::isDynamic(parts[part]))
        product *= parts[part];
    }
    if (ShapedType::isDynamic(extent) ? !dynamic : dynamic || product != extent)
      return false;
  }
  return true;
}

/// Sizes for expanding into `shape` (at most one dynamic extent) the
/// `total` elements of each group: the dynamic extent is `total` divided by
/// the static extents of its group.
SmallVector<OpFoldResult>
expandedSizes(OpBuilder &b, Location loc, ArrayRef<int64_t> shape,
              ArrayRef<ReassociationIndices> groups,
              function_ref<Value(int64_t group)> total) {
  SmallVector<OpFoldResult> sizes;
  for (int64_t extent : shape)
    sizes.push_back(b.getIndexAttr(extent));
  for (auto [index, group] : llvm::enumerate(groups)) {
    int64_t known = 1;
    std::optional<int64_t> dynamicDim;
    for (int64_t dim : group) {
      if (ShapedType::isDynamic(shape[dim]))
        dynamicDim = dim;
      else
        known *= shape[dim];
    }
    if (!dynamicDim)
      continue;
    Value extent = total(index);
    if (known != 1)
      extent =
          arith::DivUIOp::create(b, loc, extent, indexConst(b, loc, known));
    sizes[*dynamicDim] = extent;
  }
  return sizes;
}

struct ReshapeOpLowering : OpConversionPattern<ReshapeOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(ReshapeOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    RankedTensorType inputType = rankedType(input);
    RankedTensorType type = cast<RankedTensorType>(op.getType());
    // A static input fixes every result extent; reshaping to the static type
    // keeps collapse/expand shapes consistent, and a cast restores the `?`.
    RankedTensorType target = type;
    int64_t known = 1;
    for (int64_t extent : type.getShape())
      if (!ShapedType::isDynamic(extent))
        known *= extent;
    if (inputType.hasStaticShape() && type.getNumDynamicDims() == 1 &&
        known != 0) {
      SmallVector<int64_t> shape(type.getShape());
      for (int64_t &extent : shape)
        if (ShapedType::isDynamic(extent))
          extent = inputType.getNumElements() / known;
      target = type.clone(shape);
    }
    std::optional<SmallVector<OpFoldResult>> sizes;
    if (!adaptor.getDynamicSizes().empty() && !target.hasStaticShape())
      sizes = getMixedValues(target.getShape(), adaptor.getDynamicSizes(),
                             rewriter);
    Value result = reshape(rewriter, loc, input, target, sizes);
    rewriter.replaceOp(op, castToType(rewriter, loc, result, type));
    return success();
  }

  /// A collapse or an expand when one describes the reshape, else a collapse
  /// to 1-D followed by an expand; a tensor.reshape for several dynamic
  /// target extents. `givenSizes` are the extents of `target` when the op
  /// lists them (it must with several dynamic extents); otherwise the element
  /// count determines the one dynamic extent.
  static Value reshape(OpBuilder &b, Location loc, Value input,
                       RankedTensorType target,
                       std::optional<ArrayRef<OpFoldResult>> givenSizes) {
    RankedTensorType source = rankedType(input);
    ArrayRef<int64_t> from = source.getShape(), to = target.getShape();
    // Which source extents make up several dynamic target extents is only
    // known at run time, so no collapse/expand describes such a reshape;
    // besides, expand-strided-metadata (LLVM 22) crashes on a
    // memref.expand_shape group with two dynamic extents. tensor.reshape
    // with the extents as a shape operand is still a view after
    // bufferization.
    if (target.getNumDynamicDims() > 1) {
      Value shape = tensor::FromElementsOp::create(
          b, loc, getValueOrCreateConstantIndexOp(b, loc, *givenSizes));
      return tensor::ReshapeOp::create(b, loc, target, input, shape);
    }
    if (source == target)
      return input;
    if (source.getRank() > target.getRank() && target.getRank() > 0) {
      auto groups = getReassociationIndicesForCollapse(from, to);
      if (groups && groupsMatch(to, from, *groups))
        return tensor::CollapseShapeOp::create(b, loc, target, input, *groups);
    }
    if (source.getRank() < target.getRank() && source.getRank() > 0) {
      auto groups = getReassociationIndicesForCollapse(to, from);
      if (groups && groupsMatch(from, to, *groups)) {
        SmallVector<OpFoldResult> sizes =
            givenSizes ? llvm::to_vector(*givenSizes)
                       : expandedSizes(b, loc, to, *groups, [&](int64_t group) {
                           return dimValue(b, loc, input, group);
                         });
        return tensor::ExpandShapeOp::create(b, loc, target, input, *groups,
                                             sizes);
      }
    }
    // Through 1-D. Rank 0 on either side has one element, of static shape.
    Value flat = input;
    if (source.getRank() == 0) {
      flat = tensor::ExpandShapeOp::create(
          b, loc, source.clone(ArrayRef<int64_t>{1}), input,
          ArrayRef<ReassociationIndices>{});
    } else if (source.getRank() > 1) {
      ReassociationIndices all =
          llvm::to_vector(llvm::seq<int64_t>(0, source.getRank()));
      flat = tensor::CollapseShapeOp::create(
          b, loc, input, ArrayRef<ReassociationIndices>{all});
    }
    if (target.getRank() == 0) {
      flat = castToType(b, loc, flat, source.clone(ArrayRef<int64_t>{1}));
      return tensor::CollapseShapeOp::create(b, loc, target, flat,
                                             ArrayRef<ReassociationIndices>{});
    }
    if (target.getRank() == 1)
      return castToType(b, loc, flat, target);
    ReassociationIndices all =
        llvm::to_vector(llvm::seq<int64_t>(0, target.getRank()));
    SmallVector<OpFoldResult> sizes;
    if (givenSizes) {
      sizes = llvm::to_vector(*givenSizes);
    } else {
      Value count = elementCount(b, loc, input);
      sizes = expandedSizes(b, loc, to, {all}, [&](int64_t) { return count; });
    }
    return tensor::ExpandShapeOp::create(
        b, loc, target, flat, ArrayRef<ReassociationIndices>{all}, sizes);
  }
};

struct TransposeOpLowering : OpConversionPattern<TransposeOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(TransposeOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    SmallVector<OpFoldResult> sizes;
    for (int64_t dim : op.getPermutation())
      sizes.push_back(tensor::getMixedSize(rewriter, loc, input, dim));
    Value init = tensor::EmptyOp::create(rewriter, loc, sizes,
                                         rankedType(input).getElementType());
    auto transpose = linalg::TransposeOp::create(rewriter, loc, input, init,
                                                 op.getPermutationAttr());
    rewriter.replaceOp(op, transpose->getResult(0));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Loss
//===----------------------------------------------------------------------===//

struct CrossEntropyOpLowering : OpConversionPattern<CrossEntropyOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(CrossEntropyOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MLIRContext *context = op.getContext();
    Value logits = adaptor.getLogits(), targets = adaptor.getTargets(),
          mask = adaptor.getMask();
    int64_t positions = rankedType(targets).getRank();
    Type compute = computeType(rankedType(logits).getElementType());
    Value max = maxOverDim(rewriter, loc, logits, positions);
    Value sum = sumExpOverDim(rewriter, loc, logits, positions, max);
    Value vocab = dimValue(rewriter, loc, logits, positions);

    // Masked sums of the per-position losses and of the mask, reducing every
    // position at once into two scalars.
    SmallVector<Value> inputs = {max, sum, targets};
    if (mask)
      inputs.push_back(mask);
    AffineMap identity = rewriter.getMultiDimIdentityMap(positions);
    SmallVector<AffineMap> maps(inputs.size(), identity);
    AffineMap scalar = AffineMap::get(positions, 0, {}, context);
    maps.append(2, scalar);
    SmallVector<Value> totals = buildGeneric(
        rewriter, loc, inputs,
        {zeroAccumulator(rewriter, loc, {}, compute),
         zeroAccumulator(rewriter, loc, {}, compute)},
        maps,
        iterators(positions, llvm::to_vector(llvm::seq<int64_t>(0, positions))),
        [&](OpBuilder &b, Location loc, ValueRange args) -> SmallVector<Value> {
          // loss = logsumexp(logits) - logits[target].
          Value logSumExp = arith::AddFOp::create(
              b, loc, args[0], math::LogOp::create(b, loc, args[1]));
          SmallVector<Value> indices;
          for (int64_t i = 0; i < positions; ++i)
            indices.push_back(loopIndex(b, loc, i));
          indices.push_back(clampedIndex(b, loc, args[2], vocab));
          Value picked = tensor::ExtractOp::create(b, loc, logits, indices);
          Value loss = arith::SubFOp::create(
              b, loc, logSumExp, castFloat(b, loc, picked, compute));
          Value weight = mask ? args[3] : floatConst(b, loc, compute, 1.0);
          ValueRange acc = args.take_back(2);
          return {
              arith::AddFOp::create(
                  b, loc, acc[0], arith::MulFOp::create(b, loc, weight, loss)),
              arith::AddFOp::create(b, loc, acc[1], weight)};
        });
    // sum(mask * loss) / max(sum(mask), 1).
    AffineMap none = AffineMap::get(0, 0, {}, context);
    Value result = buildElementwise(
        rewriter, loc, totals, {none, none}, {}, op.getType().getElementType(),
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          Value count = arith::MaximumFOp::create(
              b, loc, args[1], floatConst(b, loc, compute, 1.0));
          return arith::DivFOp::create(b, loc, args[0], count);
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Pass
//===----------------------------------------------------------------------===//

struct ConvertNNToLinalg
    : moec::impl::ConvertNNToLinalgBase<ConvertNNToLinalg> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    MLIRContext *context = &getContext();
    // Reported here rather than left to the conversion, whose generic
    // "failed to legalize" would hide the reason.
    WalkResult walk = func.walk([](Operation *op) {
      Value query, key;
      if (auto attention = dyn_cast<AttentionOp>(op)) {
        query = attention.getQuery();
        key = attention.getKey();
      } else if (auto grad = dyn_cast<AttentionGradOp>(op)) {
        query = grad.getQuery();
        key = grad.getKey();
      } else {
        return WalkResult::advance();
      }
      if (headGroup(rankedType(query), rankedType(key)))
        return WalkResult::advance();
      op->emitOpError() << "needs static head counts to be lowered (the "
                           "query-to-key/value head mapping is built into the "
                           "indexing maps), got 'query' of type "
                        << query.getType() << " and 'key' of type "
                        << key.getType();
      return WalkResult::interrupt();
    });
    if (walk.wasInterrupted())
      return signalPassFailure();

    RewritePatternSet patterns(context);
    patterns.add<BinaryOpLowering<AddOp, arith::AddFOp, arith::AddIOp>,
                 BinaryOpLowering<SubOp, arith::SubFOp, arith::SubIOp>,
                 BinaryOpLowering<MulOp, arith::MulFOp, arith::MulIOp>,
                 BinaryOpLowering<DivOp, arith::DivFOp, arith::DivSIOp>,
                 BinaryOpLowering<PowOp, math::PowFOp>>(context);
    patterns.add<UnaryOpLowering<NegOp>, UnaryOpLowering<ExpOp>,
                 UnaryOpLowering<LogOp>, UnaryOpLowering<SqrtOp>,
                 UnaryOpLowering<RsqrtOp>, UnaryOpLowering<ReciprocalOp>,
                 UnaryOpLowering<TanhOp>, UnaryOpLowering<ErfOp>,
                 UnaryOpLowering<SigmoidOp>, UnaryOpLowering<ReluOp>,
                 UnaryOpLowering<SiluOp>, UnaryOpLowering<GeluOp>>(context);
    patterns.add<LinearOpLowering, MatmulOpLowering, RMSNormOpLowering,
                 LayerNormOpLowering, SoftmaxOpLowering, EmbeddingOpLowering,
                 RotaryOpLowering, AttentionOpLowering, ReshapeOpLowering,
                 TransposeOpLowering, CrossEntropyOpLowering>(context);
    populateGradientLoweringPatterns(patterns);
    populateTensorOpLoweringPatterns(patterns);

    llvm::SmallPtrSet<Operation *, 4> inputErfs;
    func.walk([&](math::ErfOp erf) { inputErfs.insert(erf); });
    ConversionTarget target(*context);
    target.addIllegalDialect<NNDialect>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    if (failed(applyPartialConversion(func, target, std::move(patterns))))
      return signalPassFailure();

    // math.erf has no LLVM lowering; the erf ops of nn.erf and nn.gelu are
    // expanded with upstream's polynomial approximation (a few ulp, no libm
    // call, vectorisable), as the moe lowering does. math.erf that the input
    // already had is left alone.
    SmallVector<Operation *> erfs;
    func.walk([&](math::ErfOp erf) {
      if (!inputErfs.contains(erf))
        erfs.push_back(erf);
    });
    if (erfs.empty())
      return;
    RewritePatternSet erfPatterns(context);
    populatePolynomialApproximateErfPattern(erfPatterns);
    GreedyRewriteConfig config;
    config.setStrictness(GreedyRewriteStrictness::ExistingOps);
    if (failed(applyOpPatternsGreedily(erfs, std::move(erfPatterns), config)))
      signalPassFailure();
  }
};

} // namespace
