//===- TensorOps.cpp - Lowering of the nn tensor-manipulation ops --------===//
//
// Part of convert-nn-to-linalg, with the conventions of ConvertNNToLinalg.cpp
// (f32 compute for f16/bf16 in generic bodies, numpy broadcasting in
// indexing maps, clamped indices). These ops move data rather than compute:
// slices and concatenations copy through tensor.extract_slice /
// insert_slice, gathers and negative strides are generics that read with
// tensor.extract, and nn.topk is a selection loop per row.
//
//===----------------------------------------------------------------------===//

#include "passes/NNLowering/TensorOps.h"

#include "dialects/NN/NNDialect.h"
#include "passes/NNLowering/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/Transforms/DialectConversion.h"

#include <cmath>
#include <functional>

using namespace mlir;
using namespace moec::nn;
using namespace moec::nnlowering;

namespace {

//===----------------------------------------------------------------------===//
// nn.concat
//===----------------------------------------------------------------------===//

/// a + b, folded when both are static.
OpFoldResult addSizes(OpBuilder &b, Location loc, OpFoldResult lhs,
                      OpFoldResult rhs) {
  std::optional<int64_t> l = getConstantIntValue(lhs),
                         r = getConstantIntValue(rhs);
  if (l && r)
    return b.getIndexAttr(*l + *r);
  if (l == 0)
    return rhs;
  if (r == 0)
    return lhs;
  return arith::AddIOp::create(b, loc,
                               getValueOrCreateConstantIndexOp(b, loc, lhs),
                               getValueOrCreateConstantIndexOp(b, loc, rhs))
      .getResult();
}

/// `source` copied into `dest` (same shape) by linalg.copy. Bufferization
/// then writes into the buffer of `dest` rather than emitting a memref.copy,
/// whose strided form is a call into MLIR's runner library (memrefCopy),
/// which models do not link. (Canonicalization would erase an identity
/// linalg.generic copy, and with it the destination.)
Value copyInto(OpBuilder &b, Location loc, Value source, Value dest) {
  return linalg::CopyOp::create(b, loc, source, dest).getResult(0);
}

struct ConcatOpLowering : OpConversionPattern<ConcatOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(ConcatOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    ValueRange inputs = adaptor.getInputs();
    RankedTensorType type = op.getType();
    int64_t rank = type.getRank();
    int64_t axis = normalizeAxis(op.getAxis(), rank);
    SmallVector<OpFoldResult> sizes;
    for (int64_t d = 0; d < rank; ++d) {
      SmallVector<std::pair<Value, int64_t>> dims;
      for (Value input : inputs)
        dims.push_back({input, d});
      sizes.push_back(sharedSize(rewriter, loc, dims));
    }
    OpFoldResult total = rewriter.getIndexAttr(0);
    for (Value input : inputs)
      total = addSizes(rewriter, loc, total,
                       tensor::getMixedSize(rewriter, loc, input, axis));
    sizes[axis] = total;
    // Each input is written into its range of one tensor.
    Value result =
        tensor::EmptyOp::create(rewriter, loc, sizes, type.getElementType());
    SmallVector<OpFoldResult> offsets(rank, rewriter.getIndexAttr(0));
    SmallVector<OpFoldResult> strides(rank, rewriter.getIndexAttr(1));
    for (auto [index, input] : llvm::enumerate(inputs)) {
      SmallVector<OpFoldResult> inputSizes =
          tensor::getMixedSizes(rewriter, loc, input);
      Value slot = tensor::ExtractSliceOp::create(rewriter, loc, result,
                                                  offsets, inputSizes, strides);
      result = tensor::InsertSliceOp::create(
          rewriter, loc, copyInto(rewriter, loc, input, slot), result, offsets,
          inputSizes, strides);
      if (index + 1 != inputs.size())
        offsets[axis] =
            addSizes(rewriter, loc, offsets[axis], inputSizes[axis]);
    }
    rewriter.replaceOp(op, castToType(rewriter, loc, result, type));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// nn.slice
//===----------------------------------------------------------------------===//

/// The first index and the element count of an ONNX slice of one dimension
/// of `extent` elements, as index values (constants when `extent` is).
std::pair<Value, Value> sliceBounds(OpBuilder &b, Location loc, Value extent,
                                    int64_t start, int64_t end, int64_t step) {
  auto constant = [&](int64_t value) { return indexConst(b, loc, value); };
  auto fromEnd = [&](int64_t value) -> Value {
    if (value >= 0)
      return constant(value);
    return b.createOrFold<arith::AddIOp>(loc, extent, constant(value));
  };
  // Clamping with the upper bound last makes an empty dimension's slice
  // empty.
  auto clamp = [&](Value value, Value low, Value high) {
    Value raised = b.createOrFold<arith::MaxSIOp>(loc, value, low);
    return b.createOrFold<arith::MinSIOp>(loc, raised, high);
  };
  Value first = fromEnd(start), last = fromEnd(end), span;
  // -step overflows for INT64_MIN; dividing by INT64_MAX instead gives the
  // same count for every span below 2^63.
  int64_t stride = step > 0 ? step
                   : step == std::numeric_limits<int64_t>::min()
                       ? std::numeric_limits<int64_t>::max()
                       : -step;
  if (step > 0) {
    first = clamp(first, constant(0), extent);
    last = clamp(last, constant(0), extent);
    span = b.createOrFold<arith::SubIOp>(loc, last, first);
  } else {
    Value lastIndex = b.createOrFold<arith::SubIOp>(loc, extent, constant(1));
    first = clamp(first, constant(0), lastIndex);
    last = clamp(last, constant(-1), lastIndex);
    span = b.createOrFold<arith::SubIOp>(loc, first, last);
  }
  span = b.createOrFold<arith::MaxSIOp>(loc, span, constant(0));
  Value count = b.createOrFold<arith::CeilDivSIOp>(loc, span, constant(stride));
  return {first, count};
}

struct SliceOpLowering : OpConversionPattern<SliceOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(SliceOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    RankedTensorType type = op.getType();
    ArrayRef<int64_t> steps = op.getSteps();
    SmallVector<Value> firsts;
    SmallVector<OpFoldResult> counts;
    for (int64_t d = 0, e = type.getRank(); d < e; ++d) {
      auto [first, count] =
          sliceBounds(rewriter, loc, dimValue(rewriter, loc, input, d),
                      op.getStarts()[d], op.getEnds()[d], steps[d]);
      firsts.push_back(first);
      counts.push_back(getAsOpFoldResult(count));
    }
    Value result;
    if (llvm::all_of(steps, [](int64_t step) { return step > 0; })) {
      // The strided view is copied into a tensor of its own: returned as it
      // is, bufferization would copy it with a runner-library call.
      Value view = tensor::ExtractSliceOp::create(
          rewriter, loc, input, getAsOpFoldResult(firsts), counts,
          getAsIndexOpFoldResult(op.getContext(), steps));
      result = copyInto(
          rewriter, loc, view,
          tensor::EmptyOp::create(rewriter, loc,
                                  tensor::getMixedSizes(rewriter, loc, view),
                                  type.getElementType()));
    } else {
      // tensor.extract_slice takes no negative strides: read element
      // first + i * step of every dimension.
      result = buildElementwise(
          rewriter, loc, {}, {}, counts, type.getElementType(),
          [&](OpBuilder &b, Location loc, ValueRange) -> Value {
            SmallVector<Value> indices;
            for (auto [d, first] : llvm::enumerate(firsts)) {
              Value offset = arith::MulIOp::create(
                  b, loc, loopIndex(b, loc, d), indexConst(b, loc, steps[d]));
              indices.push_back(arith::AddIOp::create(b, loc, first, offset));
            }
            return tensor::ExtractOp::create(b, loc, input, indices);
          });
    }
    rewriter.replaceOp(op, castToType(rewriter, loc, result, type));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// nn.gather
//===----------------------------------------------------------------------===//

struct GatherOpLowering : OpConversionPattern<GatherOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(GatherOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput(), indices = adaptor.getIndices();
    RankedTensorType type = op.getType();
    int64_t rank = rankedType(input).getRank();
    int64_t axis = normalizeAxis(op.getAxis(), rank);
    int64_t indexRank = rankedType(indices).getRank();
    int64_t loops = type.getRank();
    // Result loops: input dims before axis, the index dims, then the rest.
    SmallVector<OpFoldResult> sizes;
    for (int64_t d = 0; d < axis; ++d)
      sizes.push_back(tensor::getMixedSize(rewriter, loc, input, d));
    llvm::append_range(sizes, tensor::getMixedSizes(rewriter, loc, indices));
    for (int64_t d = axis + 1; d < rank; ++d)
      sizes.push_back(tensor::getMixedSize(rewriter, loc, input, d));
    Value extent = dimValue(rewriter, loc, input, axis);
    AffineMap indexMap = dimsMap(
        loops, llvm::to_vector(llvm::seq<int64_t>(axis, axis + indexRank)),
        op.getContext());
    Value result = buildElementwise(
        rewriter, loc, indices, indexMap, sizes, type.getElementType(),
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          SmallVector<Value> at;
          for (int64_t d = 0; d < axis; ++d)
            at.push_back(loopIndex(b, loc, d));
          at.push_back(wrappedIndex(b, loc, args[0], extent));
          for (int64_t d = axis + indexRank; d < loops; ++d)
            at.push_back(loopIndex(b, loc, d));
          return tensor::ExtractOp::create(b, loc, input, at);
        });
    rewriter.replaceOp(op, castToType(rewriter, loc, result, type));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// nn.where, nn.compare
//===----------------------------------------------------------------------===//

struct WhereOpLowering : OpConversionPattern<WhereOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(WhereOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    RankedTensorType type = op.getType();
    rewriter.replaceOp(
        op, buildBroadcastElementwise(
                rewriter, loc, type, adaptor.getOperands(),
                [](OpBuilder &b, Location loc, ValueRange args) -> Value {
                  return arith::SelectOp::create(b, loc, args[0], args[1],
                                                 args[2]);
                }));
    return success();
  }
};

/// `lhs <predicate> rhs` on scalars: ordered float comparisons (but `ne`,
/// true for NaN), signed integer ones, and false < true for i1.
Value compareScalars(OpBuilder &b, Location loc, ComparePredicate predicate,
                     Value lhs, Value rhs) {
  if (isa<FloatType>(lhs.getType())) {
    using P = arith::CmpFPredicate;
    P predicates[] = {P::OEQ, P::UNE, P::OLT, P::OLE, P::OGT, P::OGE};
    return arith::CmpFOp::create(
        b, loc, predicates[static_cast<int>(predicate)], lhs, rhs);
  }
  using P = arith::CmpIPredicate;
  bool isBool = lhs.getType().isInteger(1);
  P predicates[] = {P::eq,
                    P::ne,
                    isBool ? P::ult : P::slt,
                    isBool ? P::ule : P::sle,
                    isBool ? P::ugt : P::sgt,
                    isBool ? P::uge : P::sge};
  return arith::CmpIOp::create(b, loc, predicates[static_cast<int>(predicate)],
                               lhs, rhs);
}

struct CompareOpLowering : OpConversionPattern<CompareOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(CompareOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    RankedTensorType type = op.getType();
    ComparePredicate predicate = op.getPredicate();
    rewriter.replaceOp(
        op, buildBroadcastElementwise(
                rewriter, loc, type, {adaptor.getLhs(), adaptor.getRhs()},
                [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
                  return compareScalars(b, loc, predicate, args[0], args[1]);
                }));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// nn.cast
//===----------------------------------------------------------------------===//

/// Float to integer, truncating toward zero and saturating: arith.fptosi is
/// undefined outside the integer range, so the value is clamped first
/// (to the largest float below 2^(n-1), with values at or above it mapped
/// to INT_MAX) and NaN becomes 0.
Value saturatingFloatToInt(OpBuilder &b, Location loc, Value x,
                           IntegerType type) {
  auto floatType = cast<FloatType>(x.getType());
  auto constant = [&](double value) {
    return floatConst(b, loc, floatType, value);
  };
  unsigned bits = type.getWidth();
  // 2^(bits-1) and the float below it (x.getType() is f32 here: f16 and
  // bf16 arrive extended).
  double limit = std::ldexp(1.0, bits - 1);
  double below = std::nextafter(static_cast<float>(limit), 0.0f);
  Value isNaN = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, x, x);
  Value tooLarge = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGE, x,
                                         constant(limit));
  Value clamped = arith::MaximumFOp::create(b, loc, x, constant(-limit));
  clamped = arith::MinimumFOp::create(b, loc, clamped, constant(below));
  clamped = arith::SelectOp::create(b, loc, isNaN, constant(0.0), clamped);
  Value converted = arith::FPToSIOp::create(b, loc, type, clamped);
  Value max = arith::ConstantOp::create(
      b, loc, b.getIntegerAttr(type, APInt::getSignedMaxValue(bits)));
  return arith::SelectOp::create(b, loc, tooLarge, max, converted);
}

/// Converts `x` to `to` as nn.cast specifies. Floats arrive in the compute
/// type and float results are rounded by the enclosing generic.
Value convertScalar(OpBuilder &b, Location loc, Value x, Type to) {
  Type from = x.getType();
  bool fromFloat = isa<FloatType>(from);
  if (to.isInteger(1)) {
    if (fromFloat)
      return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, x,
                                   floatConst(b, loc, from, 0.0));
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, x,
                                 zeroOf(b, loc, from));
  }
  if (isa<FloatType>(to)) {
    if (fromFloat)
      return x;
    // Straight to the result type: one rounding.
    if (from.isInteger(1))
      return arith::UIToFPOp::create(b, loc, to, x);
    return arith::SIToFPOp::create(b, loc, to, x);
  }
  auto toInteger = cast<IntegerType>(to);
  if (fromFloat)
    return saturatingFloatToInt(b, loc, x, toInteger);
  unsigned fromWidth = from.getIntOrFloatBitWidth();
  if (fromWidth == 1)
    return arith::ExtUIOp::create(b, loc, to, x);
  if (fromWidth < toInteger.getWidth())
    return arith::ExtSIOp::create(b, loc, to, x);
  if (fromWidth > toInteger.getWidth())
    return arith::TruncIOp::create(b, loc, to, x);
  return x;
}

struct CastOpLowering : OpConversionPattern<CastOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(CastOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    Type to = op.getType().getElementType();
    Value result = buildElementwise(
        rewriter, loc, input,
        rewriter.getMultiDimIdentityMap(rankedType(input).getRank()),
        tensor::getMixedSizes(rewriter, loc, input), to,
        [&](OpBuilder &b, Location loc, ValueRange args) {
          return convertScalar(b, loc, args[0], to);
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

//===----------------------------------------------------------------------===//
// nn.expand, nn.iota, nn.trilu
//===----------------------------------------------------------------------===//

struct ExpandOpLowering : OpConversionPattern<ExpandOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(ExpandOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MLIRContext *context = op.getContext();
    Value input = adaptor.getInput();
    RankedTensorType type = op.getType();
    int64_t rank = type.getRank();
    RankedTensorType inputType = rankedType(input);
    AffineMap map = AffineMap::get(
        rank, 0, broadcastExprs(inputType, inputType.getRank(), rank, context),
        context);
    Value result = buildElementwise(
        rewriter, loc, input, map,
        getMixedValues(type.getShape(), adaptor.getDynamicSizes(), rewriter),
        type.getElementType(),
        [](OpBuilder &, Location, ValueRange args) { return args[0]; });
    rewriter.replaceOp(op, result);
    return success();
  }
};

struct IotaOpLowering : OpConversionPattern<IotaOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(IotaOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    RankedTensorType type = op.getType();
    Type element = type.getElementType();
    Value result = buildElementwise(
        rewriter, loc, {}, {},
        getMixedValues(type.getShape(), adaptor.getDynamicSizes(), rewriter),
        element, [&](OpBuilder &b, Location loc, ValueRange) -> Value {
          Value i = arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                               loopIndex(b, loc, 0));
          if (isa<FloatType>(element))
            return arith::SIToFPOp::create(b, loc, computeType(element), i);
          if (element.isInteger(64))
            return i;
          return arith::TruncIOp::create(b, loc, element, i);
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

struct TriluOpLowering : OpConversionPattern<TriluOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(TriluOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    int64_t rank = rankedType(input).getRank();
    auto predicate =
        op.getUpper() ? arith::CmpIPredicate::sge : arith::CmpIPredicate::sle;
    int64_t diagonal = op.getDiagonal();
    Value result = buildElementwise(
        rewriter, loc, input, rewriter.getMultiDimIdentityMap(rank),
        tensor::getMixedSizes(rewriter, loc, input),
        op.getType().getElementType(),
        [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
          // Element (i, j) is kept when j - i is on the kept side of the
          // diagonal.
          Value offset = arith::SubIOp::create(
              b, loc, loopIndex(b, loc, rank - 1), loopIndex(b, loc, rank - 2));
          Value kept = arith::CmpIOp::create(b, loc, predicate, offset,
                                             indexConst(b, loc, diagonal));
          return arith::SelectOp::create(b, loc, kept, args[0],
                                         zeroOf(b, loc, args[0].getType()));
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

//===----------------------------------------------------------------------===//
// nn.topk
//===----------------------------------------------------------------------===//

/// Whether (a, indexA) ranks before (b, indexB) in the order of nn.topk:
/// larger (or smaller) values first, NaN above every number, ties to the
/// lower index.
Value ranksBefore(OpBuilder &b, Location loc, bool largest, Value a,
                  Value indexA, Value other, Value indexOther) {
  using P = arith::CmpFPredicate;
  auto cmp = [&](P predicate, Value l, Value r) -> Value {
    return arith::CmpFOp::create(b, loc, predicate, l, r);
  };
  auto andI = [&](Value l, Value r) -> Value {
    return arith::AndIOp::create(b, loc, l, r);
  };
  auto orI = [&](Value l, Value r) -> Value {
    return arith::OrIOp::create(b, loc, l, r);
  };
  Value aNaN = cmp(P::UNO, a, a), otherNaN = cmp(P::UNO, other, other);
  Value strictly =
      largest
          ? orI(cmp(P::OGT, a, other), andI(aNaN, cmp(P::ORD, other, other)))
          : orI(cmp(P::OLT, a, other), andI(cmp(P::ORD, a, a), otherNaN));
  Value tie = orI(cmp(P::OEQ, a, other), andI(aNaN, otherNaN));
  Value lower = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, indexA,
                                      indexOther);
  return orI(strictly, andI(tie, lower));
}

struct TopKOpLowering : OpConversionPattern<TopKOp> {
  using OpConversionPattern::OpConversionPattern;

  LogicalResult
  matchAndRewrite(TopKOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = adaptor.getInput();
    RankedTensorType inputType = rankedType(input);
    int64_t rank = inputType.getRank();
    int64_t axis = normalizeAxis(op.getAxis(), rank);
    Type element = inputType.getElementType();
    SmallVector<OpFoldResult> sizes =
        tensor::getMixedSizes(rewriter, loc, input);
    sizes[axis] = rewriter.getIndexAttr(op.getK());
    Value values = tensor::EmptyOp::create(rewriter, loc, sizes, element);
    Value indices =
        tensor::EmptyOp::create(rewriter, loc, sizes, rewriter.getI64Type());
    SmallVector<Value> extents;
    for (int64_t d = 0; d < rank; ++d)
      extents.push_back(dimValue(rewriter, loc, input, d));
    Value zero = indexConst(rewriter, loc, 0),
          one = indexConst(rewriter, loc, 1);
    Value k = indexConst(rewriter, loc, op.getK());
    bool largest = op.getLargest();
    Type compute = computeType(element);

    // k passes over each row; pass j picks the best element ranked after
    // the pick of pass j - 1 (k is small: the routing width).
    SmallVector<Value> position(rank);
    auto selectRow = [&](OpBuilder &b, Location loc,
                         ValueRange outputs) -> SmallVector<Value> {
      Value noValue = floatConst(b, loc, compute, 0.0);
      auto passes = scf::ForOp::create(
          b, loc, zero, k, one,
          ValueRange{outputs[0], outputs[1], noValue, zero},
          [&](OpBuilder &b, Location loc, Value j, ValueRange iters) {
            Value firstPass = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::eq, j, zero);
            Value prev = iters[2], prevIndex = iters[3];
            Value n = extents[axis];
            auto scan = scf::ForOp::create(
                b, loc, zero, n, one, ValueRange{noValue, n},
                [&](OpBuilder &b, Location loc, Value i, ValueRange best) {
                  SmallVector<Value> at(position);
                  at[axis] = i;
                  Value x = castFloat(
                      b, loc, tensor::ExtractOp::create(b, loc, input, at),
                      compute);
                  Value after = arith::OrIOp::create(
                      b, loc, firstPass,
                      ranksBefore(b, loc, largest, prev, prevIndex, x, i));
                  Value none = arith::CmpIOp::create(
                      b, loc, arith::CmpIPredicate::eq, best[1], n);
                  Value better = arith::OrIOp::create(
                      b, loc, none,
                      ranksBefore(b, loc, largest, x, i, best[0], best[1]));
                  Value take = arith::AndIOp::create(b, loc, after, better);
                  scf::YieldOp::create(
                      b, loc,
                      ValueRange{
                          arith::SelectOp::create(b, loc, take, x, best[0]),
                          arith::SelectOp::create(b, loc, take, i, best[1])});
                });
            Value best = scan.getResult(0), bestIndex = scan.getResult(1);
            SmallVector<Value> at(position);
            at[axis] = j;
            Value newValues = tensor::InsertOp::create(
                b, loc, castFloat(b, loc, best, element), iters[0], at);
            Value newIndices = tensor::InsertOp::create(
                b, loc,
                arith::IndexCastOp::create(b, loc, b.getI64Type(), bestIndex),
                iters[1], at);
            scf::YieldOp::create(
                b, loc, ValueRange{newValues, newIndices, best, bestIndex});
          });
      return {passes.getResult(0), passes.getResult(1)};
    };
    // One loop per dimension other than `axis` around the selection.
    std::function<SmallVector<Value>(OpBuilder &, Location, int64_t,
                                     ValueRange)>
        rows = [&](OpBuilder &b, Location loc, int64_t d,
                   ValueRange outputs) -> SmallVector<Value> {
      if (d == rank)
        return selectRow(b, loc, outputs);
      if (d == axis)
        return rows(b, loc, d + 1, outputs);
      auto loop = scf::ForOp::create(
          b, loc, zero, extents[d], one, outputs,
          [&](OpBuilder &b, Location loc, Value index, ValueRange iters) {
            position[d] = index;
            scf::YieldOp::create(b, loc, rows(b, loc, d + 1, iters));
          });
      return loop.getResults();
    };
    SmallVector<Value> results =
        rows(rewriter, loc, 0, ValueRange{values, indices});
    rewriter.replaceOp(
        op, {castToType(rewriter, loc, results[0], op.getValues().getType()),
             castToType(rewriter, loc, results[1], op.getIndices().getType())});
    return success();
  }
};

} // namespace

void moec::nnlowering::populateTensorOpLoweringPatterns(
    RewritePatternSet &patterns) {
  patterns
      .add<ConcatOpLowering, SliceOpLowering, GatherOpLowering, WhereOpLowering,
           CompareOpLowering, CastOpLowering, ExpandOpLowering, IotaOpLowering,
           TriluOpLowering, TopKOpLowering>(patterns.getContext());
}
