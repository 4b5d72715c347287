//===- Builders.cpp - IR builders shared by the nn lowering patterns -----===//

#include "passes/NNLowering/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>
#include <limits>

using namespace mlir;

namespace moec::nnlowering {

//===----------------------------------------------------------------------===//
// Scalars
//===----------------------------------------------------------------------===//
Type computeType(Type elementType) {
  auto floatType = dyn_cast<FloatType>(elementType);
  if (floatType && floatType.getWidth() < 32)
    return Float32Type::get(elementType.getContext());
  return elementType;
}

Value castFloat(OpBuilder &b, Location loc, Value value, Type type) {
  Type from = value.getType();
  if (from == type)
    return value;
  if (cast<FloatType>(from).getWidth() < cast<FloatType>(type).getWidth())
    return arith::ExtFOp::create(b, loc, type, value);
  return arith::TruncFOp::create(b, loc, type, value);
}

Value floatConst(OpBuilder &b, Location loc, Type type, double value) {
  return arith::ConstantOp::create(b, loc, b.getFloatAttr(type, value));
}

Value indexConst(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantIndexOp::create(b, loc, value);
}

Value minusInfinity(OpBuilder &b, Location loc, Type type) {
  return floatConst(b, loc, type, -std::numeric_limits<double>::infinity());
}

Value indexToFloat(OpBuilder &b, Location loc, Value index, Type type) {
  Value i64 = arith::IndexCastOp::create(b, loc, b.getI64Type(), index);
  return arith::SIToFPOp::create(b, loc, type, i64);
}

/// `index` clamped into [0, size).
static Value clampIndex(OpBuilder &b, Location loc, Value index, Value size) {
  Value last = arith::SubIOp::create(b, loc, size, indexConst(b, loc, 1));
  index = arith::MinSIOp::create(b, loc, index, last);
  return arith::MaxSIOp::create(b, loc, index, indexConst(b, loc, 0));
}

Value clampedIndex(OpBuilder &b, Location loc, Value id, Value size) {
  Value index = arith::IndexCastOp::create(b, loc, b.getIndexType(), id);
  return clampIndex(b, loc, index, size);
}

Value wrappedIndex(OpBuilder &b, Location loc, Value id, Value size) {
  Value index = arith::IndexCastOp::create(b, loc, b.getIndexType(), id);
  Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                         index, indexConst(b, loc, 0));
  index = arith::SelectOp::create(
      b, loc, negative, arith::AddIOp::create(b, loc, index, size), index);
  return clampIndex(b, loc, index, size);
}

Value zeroOf(OpBuilder &b, Location loc, Type type) {
  if (isa<FloatType>(type))
    return floatConst(b, loc, type, 0.0);
  return arith::ConstantOp::create(b, loc, b.getIntegerAttr(type, 0));
}

Value loopIndex(OpBuilder &b, Location loc, int64_t dim) {
  return linalg::IndexOp::create(b, loc, dim);
}

Value sigmoid(OpBuilder &b, Location loc, Value x) {
  Value one = floatConst(b, loc, x.getType(), 1.0);
  Value e = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, x));
  return arith::DivFOp::create(b, loc, one,
                               arith::AddFOp::create(b, loc, one, e));
}

//===----------------------------------------------------------------------===//
// Shapes and maps
//===----------------------------------------------------------------------===//
RankedTensorType rankedType(Value value) {
  return cast<RankedTensorType>(value.getType());
}

Value dimValue(OpBuilder &b, Location loc, Value tensor, int64_t dim) {
  return getValueOrCreateConstantIndexOp(
      b, loc, tensor::getMixedSize(b, loc, tensor, dim));
}

OpFoldResult sharedSize(OpBuilder &b, Location loc,
                        ArrayRef<std::pair<Value, int64_t>> dims) {
  for (auto [value, dim] : dims) {
    int64_t extent = rankedType(value).getDimSize(dim);
    if (!ShapedType::isDynamic(extent))
      return b.getIndexAttr(extent);
  }
  return tensor::getMixedSize(b, loc, dims.front().first, dims.front().second);
}

SmallVector<AffineExpr> broadcastExprs(RankedTensorType type, int64_t count,
                                       int64_t loops, MLIRContext *context) {
  SmallVector<AffineExpr> exprs;
  for (int64_t i = 0; i < count; ++i)
    exprs.push_back(type.getDimSize(i) == 1
                        ? getAffineConstantExpr(0, context)
                        : getAffineDimExpr(i + loops - count, context));
  return exprs;
}

OpFoldResult broadcastSize(OpBuilder &b, Location loc, int64_t extent,
                           int64_t loop, int64_t loops,
                           ArrayRef<std::pair<Value, int64_t>> operands) {
  if (!ShapedType::isDynamic(extent))
    return b.getIndexAttr(extent);
  for (auto [value, count] : operands) {
    int64_t dim = loop - (loops - count);
    if (dim >= 0 && rankedType(value).getDimSize(dim) != 1)
      return tensor::getMixedSize(b, loc, value, dim);
  }
  llvm_unreachable("a dynamic broadcast extent comes from some operand");
}

BroadcastLoops broadcastLoops(OpBuilder &b, Location loc, RankedTensorType type,
                              ValueRange operands) {
  MLIRContext *context = b.getContext();
  int64_t rank = type.getRank();
  SmallVector<std::pair<Value, int64_t>> ranks;
  for (Value operand : operands)
    ranks.push_back({operand, rankedType(operand).getRank()});
  BroadcastLoops loops;
  for (int64_t i = 0; i < rank; ++i)
    loops.sizes.push_back(
        broadcastSize(b, loc, type.getDimSize(i), i, rank, ranks));
  for (auto [value, count] : ranks)
    loops.maps.push_back(AffineMap::get(
        rank, 0, broadcastExprs(rankedType(value), count, rank, context),
        context));
  return loops;
}

AffineMap dropDimsMap(int64_t loops, ArrayRef<int64_t> dropped,
                      MLIRContext *context) {
  SmallVector<AffineExpr> exprs;
  for (int64_t i = 0; i < loops; ++i)
    if (!llvm::is_contained(dropped, i))
      exprs.push_back(getAffineDimExpr(i, context));
  return AffineMap::get(loops, 0, exprs, context);
}

AffineMap dimsMap(int64_t loops, ArrayRef<int64_t> dims, MLIRContext *context) {
  SmallVector<AffineExpr> exprs;
  for (int64_t dim : dims)
    exprs.push_back(getAffineDimExpr(dim, context));
  return AffineMap::get(loops, 0, exprs, context);
}

SmallVector<IteratorType> iterators(int64_t loops,
                                    ArrayRef<int64_t> reductions) {
  SmallVector<IteratorType> types(loops, IteratorType::parallel);
  for (int64_t dim : reductions)
    types[dim] = IteratorType::reduction;
  return types;
}

SmallVector<OpFoldResult> sizesWithout(OpBuilder &b, Location loc, Value tensor,
                                       int64_t dim) {
  SmallVector<OpFoldResult> sizes;
  for (int64_t i = 0, e = rankedType(tensor).getRank(); i < e; ++i)
    if (i != dim)
      sizes.push_back(tensor::getMixedSize(b, loc, tensor, i));
  return sizes;
}

Value filledTensor(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                   Type elementType, double value) {
  Value empty = tensor::EmptyOp::create(b, loc, sizes, elementType);
  Value init = floatConst(b, loc, elementType, value);
  return linalg::FillOp::create(b, loc, init, empty).getResult(0);
}

Value castToType(OpBuilder &b, Location loc, Value value, Type type) {
  if (value.getType() == type)
    return value;
  return tensor::CastOp::create(b, loc, type, value);
}

//===----------------------------------------------------------------------===//
// Generic builders
//===----------------------------------------------------------------------===//
SmallVector<Value> buildGeneric(OpBuilder &b, Location loc, ValueRange inputs,
                                ValueRange inits, ArrayRef<AffineMap> maps,
                                ArrayRef<IteratorType> iteratorTypes,
                                BodyFn body) {
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange(inits), inputs, inits, maps, iteratorTypes,
      [&](OpBuilder &nested, Location nestedLoc, ValueRange args) {
        SmallVector<Value> values;
        for (auto [i, arg] : llvm::enumerate(args)) {
          bool isInput = i < inputs.size();
          values.push_back(isInput && isa<FloatType>(arg.getType())
                               ? castFloat(nested, nestedLoc, arg,
                                           computeType(arg.getType()))
                               : arg);
        }
        SmallVector<Value> results = body(nested, nestedLoc, values);
        for (auto [result, init] : llvm::zip_equal(results, inits)) {
          Type type = getElementTypeOrSelf(init.getType());
          if (isa<FloatType>(result.getType()) && isa<FloatType>(type))
            result = castFloat(nested, nestedLoc, result, type);
        }
        linalg::YieldOp::create(nested, nestedLoc, results);
      });
  return generic.getResults();
}

Value buildElementwise(OpBuilder &b, Location loc, ValueRange inputs,
                       ArrayRef<AffineMap> inputMaps,
                       ArrayRef<OpFoldResult> sizes, Type elementType,
                       ScalarFn body) {
  int64_t loops = sizes.size();
  Value init = tensor::EmptyOp::create(b, loc, sizes, elementType);
  SmallVector<AffineMap> maps(inputMaps);
  maps.push_back(b.getMultiDimIdentityMap(loops));
  return buildGeneric(b, loc, inputs, init, maps, iterators(loops),
                      [&](OpBuilder &nested, Location nestedLoc,
                          ValueRange args) -> SmallVector<Value> {
                        return {body(nested, nestedLoc, args)};
                      })
      .front();
}

Value buildBroadcastElementwise(OpBuilder &b, Location loc,
                                RankedTensorType type, ValueRange operands,
                                ScalarFn body) {
  BroadcastLoops loops = broadcastLoops(b, loc, type, operands);
  Value result = buildElementwise(b, loc, operands, loops.maps, loops.sizes,
                                  type.getElementType(), body);
  return castToType(b, loc, result, type);
}

Value buildReduction(OpBuilder &b, Location loc, Value input, int64_t axis,
                     double init, ValueRange extras, ScalarFn combine) {
  MLIRContext *context = b.getContext();
  int64_t loops = rankedType(input).getRank();
  Type type = computeType(rankedType(input).getElementType());
  Value acc =
      filledTensor(b, loc, sizesWithout(b, loc, input, axis), type, init);
  AffineMap reduced = dropDimsMap(loops, axis, context);
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(loops)};
  maps.append(extras.size() + 1, reduced);
  SmallVector<Value> inputs = {input};
  llvm::append_range(inputs, extras);
  return buildGeneric(b, loc, inputs, acc, maps, iterators(loops, axis),
                      [&](OpBuilder &nested, Location nestedLoc,
                          ValueRange args) -> SmallVector<Value> {
                        return {combine(nested, nestedLoc, args)};
                      })
      .front();
}

Value convertElements(OpBuilder &b, Location loc, Value tensor,
                      Type elementType) {
  RankedTensorType type = rankedType(tensor);
  if (type.getElementType() == elementType)
    return tensor;
  return buildElementwise(
      b, loc, tensor, b.getMultiDimIdentityMap(type.getRank()),
      tensor::getMixedSizes(b, loc, tensor), elementType,
      [](OpBuilder &, Location, ValueRange args) { return args[0]; });
}

Value zeroAccumulator(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                      Type elementType) {
  return filledTensor(b, loc, sizes, computeType(elementType), 0.0);
}

SmallVector<Value> multiplyAccumulate(OpBuilder &b, Location loc,
                                      ValueRange args) {
  Value product = arith::MulFOp::create(b, loc, args[0], args[1]);
  return {arith::AddFOp::create(b, loc, args[2], product)};
}

Value buildMatmul(OpBuilder &b, Location loc, Value lhs, Value rhs) {
  Value init = zeroAccumulator(b, loc,
                               {tensor::getMixedSize(b, loc, lhs, 0),
                                tensor::getMixedSize(b, loc, rhs, 1)},
                               rankedType(lhs).getElementType());
  return linalg::MatmulOp::create(b, loc, TypeRange{init.getType()},
                                  ValueRange{lhs, rhs}, ValueRange{init})
      .getResult(0);
}

Value transposeMatrix(OpBuilder &b, Location loc, Value matrix) {
  Value init =
      tensor::EmptyOp::create(b, loc,
                              {tensor::getMixedSize(b, loc, matrix, 1),
                               tensor::getMixedSize(b, loc, matrix, 0)},
                              rankedType(matrix).getElementType());
  return linalg::TransposeOp::create(b, loc, matrix, init,
                                     ArrayRef<int64_t>{1, 0})
      ->getResult(0);
}

SmallVector<ReassociationIndices> leadingGroups(int64_t rank) {
  ReassociationIndices leading =
      llvm::to_vector(llvm::seq<int64_t>(0, rank - 1));
  return {leading, {rank - 1}};
}

Value collapseToMatrix(OpBuilder &b, Location loc, Value tensor) {
  int64_t rank = rankedType(tensor).getRank();
  if (rank == 2)
    return tensor;
  return tensor::CollapseShapeOp::create(b, loc, tensor, leadingGroups(rank));
}

Value expandFromMatrix(OpBuilder &b, Location loc, Value matrix, Value like) {
  int64_t rank = rankedType(like).getRank();
  if (rank == 2)
    return matrix;
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, like);
  sizes.back() = tensor::getMixedSize(b, loc, matrix, 1);
  SmallVector<int64_t> shape;
  SmallVector<Value> dynamic;
  dispatchIndexOpFoldResults(sizes, dynamic, shape);
  auto type = RankedTensorType::get(shape, rankedType(matrix).getElementType());
  // expand-strided-metadata (LLVM 22) crashes on a memref.expand_shape group
  // with two dynamic extents; tensor.reshape is the same view.
  if (type.getNumDynamicDims() > 1) {
    Value shapeTensor = tensor::FromElementsOp::create(
        b, loc, getValueOrCreateConstantIndexOp(b, loc, sizes));
    return tensor::ReshapeOp::create(b, loc, type, matrix, shapeTensor);
  }
  return tensor::ExpandShapeOp::create(b, loc, type, matrix,
                                       leadingGroups(rank), sizes);
}

Value sumLastDim(OpBuilder &b, Location loc, Value input, ValueRange extras,
                 ScalarFn term) {
  int64_t axis = rankedType(input).getRank() - 1;
  return buildReduction(
      b, loc, input, axis, 0.0, extras,
      [&](OpBuilder &nested, Location nestedLoc, ValueRange args) -> Value {
        Value value = term(nested, nestedLoc, args.drop_back());
        return arith::AddFOp::create(nested, nestedLoc, args.back(), value);
      });
}

Value featureCount(OpBuilder &b, Location loc, Value input, Type type) {
  int64_t last = rankedType(input).getRank() - 1;
  return indexToFloat(b, loc, dimValue(b, loc, input, last), type);
}

Value deviationFromMean(OpBuilder &b, Location loc, Value x, Value sum,
                        Value count) {
  Value mean = arith::DivFOp::create(b, loc, sum, count);
  return arith::SubFOp::create(b, loc, x, mean);
}

std::pair<Value, Value> layerNormRowSums(OpBuilder &b, Location loc,
                                         Value input, Value count) {
  Value sum = sumLastDim(
      b, loc, input, {},
      [](OpBuilder &, Location, ValueRange args) -> Value { return args[0]; });
  Value squares =
      sumLastDim(b, loc, input, sum,
                 [&](OpBuilder &b, Location loc, ValueRange args) -> Value {
                   Value d = deviationFromMean(b, loc, args[0], args[1], count);
                   return arith::MulFOp::create(b, loc, d, d);
                 });
  return {sum, squares};
}

SmallVector<AffineMap> normalizationMaps(int64_t rank, int64_t rowValues,
                                         int64_t featureValues,
                                         MLIRContext *context) {
  SmallVector<AffineMap> maps = {
      AffineMap::getMultiDimIdentityMap(rank, context)};
  maps.append(rowValues, dropDimsMap(rank, rank - 1, context));
  maps.append(featureValues, dimsMap(rank, rank - 1, context));
  return maps;
}

Value maxOverDim(OpBuilder &b, Location loc, Value input, int64_t axis) {
  return buildReduction(
      b, loc, input, axis, -std::numeric_limits<double>::infinity(), {},
      [](OpBuilder &b, Location loc, ValueRange args) -> Value {
        return arith::MaximumFOp::create(b, loc, args[1], args[0]);
      });
}

Value sumExpOverDim(OpBuilder &b, Location loc, Value input, int64_t axis,
                    Value max) {
  return buildReduction(
      b, loc, input, axis, 0.0, max,
      [](OpBuilder &b, Location loc, ValueRange args) -> Value {
        Value shifted = arith::SubFOp::create(b, loc, args[0], args[1]);
        Value e = math::ExpOp::create(b, loc, shifted);
        return arith::AddFOp::create(b, loc, args[2], e);
      });
}

Value elementCount(OpBuilder &b, Location loc, Value tensor) {
  Value count = indexConst(b, loc, 1);
  for (int64_t i = 0, e = rankedType(tensor).getRank(); i < e; ++i)
    count = arith::MulIOp::create(b, loc, count, dimValue(b, loc, tensor, i));
  return count;
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

std::optional<int64_t> headGroup(RankedTensorType query, RankedTensorType key) {
  int64_t heads = query.getDimSize(2), kvHeads = key.getDimSize(2);
  if (ShapedType::isDynamic(heads) || ShapedType::isDynamic(kvHeads))
    return std::nullopt;
  return heads / kvHeads;
}

Value attentionScale(OpBuilder &b, Location loc, float scale, Value query,
                     Type type) {
  if (scale != 0.0f)
    return floatConst(b, loc, type, scale);
  int64_t headDim = rankedType(query).getDimSize(3);
  if (!ShapedType::isDynamic(headDim))
    return floatConst(b, loc, type,
                      static_cast<float>(1.0 / std::sqrt(double(headDim))));
  Type f64 = b.getF64Type();
  Value root = math::SqrtOp::create(
      b, loc, indexToFloat(b, loc, dimValue(b, loc, query, 3), f64));
  Value inverse =
      arith::DivFOp::create(b, loc, floatConst(b, loc, f64, 1.0), root);
  return castFloat(b, loc, inverse, type);
}

AttentionWeights buildAttentionWeights(OpBuilder &b, Location loc, Value query,
                                       Value key, int64_t group, bool causal,
                                       float scaleAttr,
                                       ArrayRef<OpFoldResult> sizes,
                                       Type elementType) {
  MLIRContext *context = b.getContext();
  Type compute = computeType(elementType);
  OpFoldResult seqQ = sizes[2], seqKV = sizes[3];
  // Loops of the score tensor [batch, heads, seq_q, seq_kv].
  auto d = [&](unsigned i) { return b.getAffineDimExpr(i); };
  AffineExpr kvHead = d(1).floorDiv(group);

  // scores = q k^T over (b, h, i, j, e).
  Value scores = buildGeneric(
      b, loc, {query, key}, zeroAccumulator(b, loc, sizes, elementType),
      {AffineMap::get(5, 0, {d(0), d(2), d(1), d(4)}, context),
       AffineMap::get(5, 0, {d(0), d(3), kvHead, d(4)}, context),
       dropDimsMap(5, 4, context)},
      iterators(5, 4), multiplyAccumulate)[0];

  Value scale = attentionScale(b, loc, scaleAttr, query, compute);
  Value offset;
  if (causal)
    offset = arith::SubIOp::create(
        b, loc, getValueOrCreateConstantIndexOp(b, loc, seqKV),
        getValueOrCreateConstantIndexOp(b, loc, seqQ));
  // Query i sees key j <= i + seq_kv - seq_q; null when all are visible.
  auto visible = [&](OpBuilder &nb, Location nloc) -> Value {
    if (!offset)
      return nullptr;
    Value limit =
        arith::AddIOp::create(nb, nloc, loopIndex(nb, nloc, 2), offset);
    return arith::CmpIOp::create(nb, nloc, arith::CmpIPredicate::sle,
                                 loopIndex(nb, nloc, 3), limit);
  };
  auto masked = [&](OpBuilder &nb, Location nloc, Value v,
                    Value fill) -> Value {
    if (Value ok = visible(nb, nloc))
      return arith::SelectOp::create(nb, nloc, ok, v, fill);
    return v;
  };
  Value max = buildReduction(
      b, loc, scores, 3, -std::numeric_limits<double>::infinity(), {},
      [&](OpBuilder &nb, Location nloc, ValueRange args) -> Value {
        Value s = arith::MulFOp::create(nb, nloc, args[0], scale);
        s = masked(nb, nloc, s, minusInfinity(nb, nloc, compute));
        return arith::MaximumFOp::create(nb, nloc, args[1], s);
      });
  // Unnormalised weights exp(s - max), 0 where masked. A row that sees no
  // key has max -inf and subtracts 0 instead, so no NaN appears and its
  // weights sum to 0.
  AffineMap rows = dropDimsMap(4, 3, context);
  Value weights = buildElementwise(
      b, loc, {scores, max}, {b.getMultiDimIdentityMap(4), rows}, sizes,
      compute, [&](OpBuilder &nb, Location nloc, ValueRange args) -> Value {
        Value m = args[1];
        Value inf = floatConst(nb, nloc, compute,
                               std::numeric_limits<double>::infinity());
        Value finite =
            arith::CmpFOp::create(nb, nloc, arith::CmpFPredicate::ONE,
                                  math::AbsFOp::create(nb, nloc, m), inf);
        m = arith::SelectOp::create(nb, nloc, finite, m,
                                    floatConst(nb, nloc, compute, 0.0));
        Value shifted = arith::SubFOp::create(
            nb, nloc, arith::MulFOp::create(nb, nloc, args[0], scale), m);
        return masked(nb, nloc, math::ExpOp::create(nb, nloc, shifted),
                      floatConst(nb, nloc, compute, 0.0));
      });
  Value sum = sumLastDim(
      b, loc, weights, {},
      [](OpBuilder &, Location, ValueRange args) { return args[0]; });
  return {weights, sum, scale};
}

} // namespace moec::nnlowering
