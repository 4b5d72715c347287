//===- NNVJP.cpp - Vector-Jacobian products of the nn ops -----------------===//
//
// DifferentiableOpInterface::buildVJP of every nn op. Gradients are nn ops
// themselves: composed from the forward ops and nn.reduce_sum where that
// costs no extra pass over the data (elementwise, softmax, linear, matmul,
// reshape, transpose), the dedicated `*_grad` ops otherwise. Integer
// operands (ids, targets, positions) and the cross-entropy mask get no
// gradient.
//
//===----------------------------------------------------------------------===//

#include "dialects/NN/NNDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace moec;
using namespace moec::nn;

namespace {

RankedTensorType ranked(Value value) {
  return cast<RankedTensorType>(value.getType());
}

/// Sums `grad`, which has the broadcast result shape of a binary op, over
/// the dimensions along which an operand of type `operand` was broadcast:
/// the leading dimensions it lacks and its static extents of 1 (the
/// lowering broadcasts exactly those).
Value unbroadcast(OpBuilder &b, Location loc, Value grad,
                  RankedTensorType operand) {
  RankedTensorType type = ranked(grad);
  int64_t lead = type.getRank() - operand.getRank();
  SmallVector<int64_t> stretched;
  for (int64_t i = 0; i < operand.getRank(); ++i)
    if (operand.getDimSize(i) == 1 && type.getDimSize(i + lead) != 1)
      stretched.push_back(i + lead);
  if (!stretched.empty())
    grad = ReduceSumOp::create(b, loc, grad, stretched, /*keep_dims=*/true);
  if (lead > 0)
    grad = ReduceSumOp::create(b, loc, grad,
                               llvm::to_vector(llvm::seq<int64_t>(0, lead)),
                               /*keep_dims=*/false);
  return grad;
}

/// A 0-d constant with the element type of `like`; it broadcasts against
/// any tensor in a binary op.
Value scalarConstant(OpBuilder &b, Location loc, Value like, double value) {
  auto type = RankedTensorType::get({}, ranked(like).getElementType());
  Attribute element = b.getFloatAttr(type.getElementType(), value);
  return arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(type, ArrayRef<Attribute>(element)));
}

/// `value` as a matrix of rows: `[..., n]` becomes `[prod(...), n]` (a
/// vector becomes one row), so that a contraction over all leading
/// dimensions is one 2-D matmul.
Value asRows(OpBuilder &b, Location loc, Value value) {
  RankedTensorType type = ranked(value);
  int64_t rank = type.getRank();
  if (rank == 2)
    return value;
  int64_t rows = 1;
  for (int64_t extent : type.getShape().drop_back())
    rows = ShapedType::isDynamic(extent) || ShapedType::isDynamic(rows)
               ? ShapedType::kDynamic
               : rows * extent;
  return ReshapeOp::create(b, loc,
                           RankedTensorType::get({rows, type.getShape().back()},
                                                 type.getElementType()),
                           value);
}

Value matmul(OpBuilder &b, Location loc, Value lhs, Value rhs,
             bool transposeLhs, bool transposeRhs) {
  return MatmulOp::create(b, loc, lhs, rhs, transposeLhs, transposeRhs);
}

/// Sets the gradient of a single-operand elementwise op: grad * f'(input).
LogicalResult unaryVJP(OpBuilder &b, Operation *op, ArrayRef<Value> resultGrads,
                       const BitVector &required,
                       SmallVectorImpl<Value> &operandGrads,
                       UnaryFunction function) {
  if (required[0])
    operandGrads[0] = UnaryGradOp::create(b, op->getLoc(), function,
                                          resultGrads[0], op->getOperand(0));
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

LogicalResult AddOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                              const BitVector &required,
                              SmallVectorImpl<Value> &operandGrads) {
  Value grad = resultGrads[0];
  if (required[0])
    operandGrads[0] = unbroadcast(b, getLoc(), grad, getLhs().getType());
  if (required[1])
    operandGrads[1] = unbroadcast(b, getLoc(), grad, getRhs().getType());
  return success();
}

LogicalResult SubOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                              const BitVector &required,
                              SmallVectorImpl<Value> &operandGrads) {
  Location loc = getLoc();
  Value grad = resultGrads[0];
  if (required[0])
    operandGrads[0] = unbroadcast(b, loc, grad, getLhs().getType());
  // Negating after the reduction touches fewer elements.
  if (required[1])
    operandGrads[1] =
        NegOp::create(b, loc, unbroadcast(b, loc, grad, getRhs().getType()));
  return success();
}

LogicalResult MulOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                              const BitVector &required,
                              SmallVectorImpl<Value> &operandGrads) {
  Location loc = getLoc();
  Value grad = resultGrads[0];
  if (required[0])
    operandGrads[0] = unbroadcast(b, loc, MulOp::create(b, loc, grad, getRhs()),
                                  getLhs().getType());
  if (required[1])
    operandGrads[1] = unbroadcast(b, loc, MulOp::create(b, loc, grad, getLhs()),
                                  getRhs().getType());
  return success();
}

LogicalResult DivOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                              const BitVector &required,
                              SmallVectorImpl<Value> &operandGrads) {
  Location loc = getLoc();
  Value grad = resultGrads[0];
  if (required[0])
    operandGrads[0] = unbroadcast(b, loc, DivOp::create(b, loc, grad, getRhs()),
                                  getLhs().getType());
  // d(l / r)/dr = -(l / r) / r, from the forward result.
  if (required[1]) {
    Value quotient = DivOp::create(
        b, loc, MulOp::create(b, loc, grad, getResult()), getRhs());
    operandGrads[1] = NegOp::create(
        b, loc, unbroadcast(b, loc, quotient, getRhs().getType()));
  }
  return success();
}

LogicalResult PowOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                              const BitVector &required,
                              SmallVectorImpl<Value> &operandGrads) {
  Location loc = getLoc();
  Value grad = resultGrads[0], base = getLhs(), exponent = getRhs();
  // d(b^e)/db = e * b^(e-1), which stays finite at b = 0 for e >= 1 where
  // e * b^e / b would not.
  if (required[0]) {
    Value lowered =
        SubOp::create(b, loc, exponent, scalarConstant(b, loc, exponent, 1.0));
    Value derivative =
        MulOp::create(b, loc, exponent, PowOp::create(b, loc, base, lowered));
    operandGrads[0] = unbroadcast(
        b, loc, MulOp::create(b, loc, grad, derivative), getLhs().getType());
  }
  // d(b^e)/de = b^e * log(b), real for b > 0 only.
  if (required[1]) {
    Value derivative =
        MulOp::create(b, loc, getResult(), LogOp::create(b, loc, base));
    operandGrads[1] = unbroadcast(
        b, loc, MulOp::create(b, loc, grad, derivative), getRhs().getType());
  }
  return success();
}

#define NN_UNARY_VJP(OP, FUNCTION)                                             \
  LogicalResult OP::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,        \
                             const BitVector &required,                        \
                             SmallVectorImpl<Value> &operandGrads) {           \
    return unaryVJP(b, *this, resultGrads, required, operandGrads,             \
                    UnaryFunction::FUNCTION);                                  \
  }
NN_UNARY_VJP(NegOp, neg)
NN_UNARY_VJP(ExpOp, exp)
NN_UNARY_VJP(LogOp, log)
NN_UNARY_VJP(SqrtOp, sqrt)
NN_UNARY_VJP(RsqrtOp, rsqrt)
NN_UNARY_VJP(ReciprocalOp, reciprocal)
NN_UNARY_VJP(TanhOp, tanh)
NN_UNARY_VJP(ErfOp, erf)
NN_UNARY_VJP(SigmoidOp, sigmoid)
NN_UNARY_VJP(ReluOp, relu)
NN_UNARY_VJP(SiluOp, silu)
#undef NN_UNARY_VJP

LogicalResult GeluOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                               const BitVector &required,
                               SmallVectorImpl<Value> &operandGrads) {
  return unaryVJP(b, *this, resultGrads, required, operandGrads,
                  getApproximate() == GeluApproximation::tanh
                      ? UnaryFunction::gelu_tanh
                      : UnaryFunction::gelu);
}

//===----------------------------------------------------------------------===//
// Linear algebra
//===----------------------------------------------------------------------===//

LogicalResult LinearOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                 const BitVector &required,
                                 SmallVectorImpl<Value> &operandGrads) {
  Location loc = getLoc();
  Value grad = resultGrads[0], input = getInput(), weight = getWeight();
  RankedTensorType inputType = getInput().getType();
  int64_t rank = inputType.getRank();
  // d input = grad W^T; a vector input is one row.
  if (required[0]) {
    if (rank == 1)
      operandGrads[0] = ReshapeOp::create(
          b, loc, inputType,
          matmul(b, loc, asRows(b, loc, grad), weight, false, true));
    else
      operandGrads[0] = matmul(b, loc, grad, weight, false, true);
  }
  // d W = x^T grad over all rows: one 2-D matmul.
  if (required[1])
    operandGrads[1] = matmul(b, loc, asRows(b, loc, input),
                             asRows(b, loc, grad), true, false);
  if (getBias() && required[2])
    operandGrads[2] =
        rank == 1 ? grad
                  : ReduceSumOp::create(
                        b, loc, grad,
                        llvm::to_vector(llvm::seq<int64_t>(0, rank - 1)),
                        /*keep_dims=*/false);
  return success();
}

LogicalResult MatmulOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                 const BitVector &required,
                                 SmallVectorImpl<Value> &operandGrads) {
  Location loc = getLoc();
  Value grad = resultGrads[0], lhs = getLhs(), rhs = getRhs();
  bool transposeLhs = getTransposeLhs(), transposeRhs = getTransposeRhs();
  // With A = op(lhs), B = op(rhs) and C = A B: dA = dC B^T, dB = A^T dC;
  // a transposed operand gets the transpose, which swaps the factors.
  if (required[0]) {
    Value d = transposeLhs ? matmul(b, loc, rhs, grad, transposeRhs, true)
                           : matmul(b, loc, grad, rhs, false, !transposeRhs);
    operandGrads[0] = unbroadcast(b, loc, d, getLhs().getType());
  }
  if (required[1]) {
    Value d;
    if (getRhs().getType().getRank() == 2 && !transposeLhs &&
        getLhs().getType().getRank() > 2) {
      // A shared rhs sums over every batch row: one 2-D matmul of rows.
      Value lhsRows = asRows(b, loc, lhs), gradRows = asRows(b, loc, grad);
      d = transposeRhs ? matmul(b, loc, gradRows, lhsRows, true, false)
                       : matmul(b, loc, lhsRows, gradRows, true, false);
    } else {
      d = transposeRhs ? matmul(b, loc, grad, lhs, true, transposeLhs)
                       : matmul(b, loc, lhs, grad, !transposeLhs, false);
    }
    operandGrads[1] = unbroadcast(b, loc, d, getRhs().getType());
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Normalisation, softmax, embedding
//===----------------------------------------------------------------------===//

LogicalResult RMSNormOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                  const BitVector &required,
                                  SmallVectorImpl<Value> &operandGrads) {
  if (!required[0] && !required[1])
    return success();
  auto grad = RMSNormGradOp::create(b, getLoc(), resultGrads[0], getInput(),
                                    getWeight(), getEpsilonAttr());
  if (required[0])
    operandGrads[0] = grad.getInputGrad();
  if (required[1])
    operandGrads[1] = grad.getWeightGrad();
  return success();
}

LogicalResult LayerNormOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                    const BitVector &required,
                                    SmallVectorImpl<Value> &operandGrads) {
  if (required.none())
    return success();
  auto grad = LayerNormGradOp::create(b, getLoc(), resultGrads[0], getInput(),
                                      getWeight(), getEpsilonAttr());
  if (required[0])
    operandGrads[0] = grad.getInputGrad();
  if (required[1])
    operandGrads[1] = grad.getWeightGrad();
  if (getBias() && required[2])
    operandGrads[2] = grad.getBiasGrad();
  return success();
}

LogicalResult SoftmaxOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                  const BitVector &required,
                                  SmallVectorImpl<Value> &operandGrads) {
  if (!required[0])
    return success();
  // dx = y * (g - sum(g * y)) along the axis.
  Location loc = getLoc();
  Value y = getResult(), grad = resultGrads[0];
  int64_t axis = getAxis();
  if (axis < 0)
    axis += getInput().getType().getRank();
  Value weighted = MulOp::create(b, loc, grad, y);
  Value sum = ReduceSumOp::create(b, loc, weighted, ArrayRef<int64_t>{axis},
                                  /*keep_dims=*/true);
  operandGrads[0] =
      SubOp::create(b, loc, weighted, MulOp::create(b, loc, y, sum));
  return success();
}

LogicalResult EmbeddingOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                    const BitVector &required,
                                    SmallVectorImpl<Value> &operandGrads) {
  if (required[0])
    operandGrads[0] = EmbeddingGradOp::create(b, getLoc(), resultGrads[0],
                                              getIds(), getTable());
  return success();
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

LogicalResult RotaryOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                 const BitVector &required,
                                 SmallVectorImpl<Value> &operandGrads) {
  // A rotation's transpose is the rotation by the negated angle.
  if (required[0])
    operandGrads[0] = RotaryOp::create(
        b, getLoc(), getInput().getType(), resultGrads[0], getPositions(),
        getThetaAttr(), getRotaryDimAttr(), getInterleavedAttr(),
        getInverse() ? UnitAttr() : b.getUnitAttr());
  return success();
}

LogicalResult AttentionOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                    const BitVector &required,
                                    SmallVectorImpl<Value> &operandGrads) {
  if (required.none())
    return success();
  auto grad = AttentionGradOp::create(
      b, getLoc(),
      TypeRange{getQuery().getType(), getKey().getType(), getValue().getType()},
      resultGrads[0], getQuery(), getKey(), getValue(), getCausalAttr(),
      getScaleAttr());
  for (int i = 0; i < 3; ++i)
    if (required[i])
      operandGrads[i] = grad->getResult(i);
  return success();
}

//===----------------------------------------------------------------------===//
// Shape manipulation and reductions
//===----------------------------------------------------------------------===//

LogicalResult ReshapeOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                  const BitVector &required,
                                  SmallVectorImpl<Value> &operandGrads) {
  auto inputType = cast<RankedTensorType>(getInput().getType());
  if (!required[0] || !isa<FloatType>(inputType.getElementType()))
    return success();
  // The gradient is reshaped back; the element count determines one dynamic
  // extent, several are read from the input.
  Location loc = getLoc();
  SmallVector<Value> sizes;
  if (inputType.getNumDynamicDims() > 1)
    for (int64_t i = 0; i < inputType.getRank(); ++i)
      if (inputType.isDynamicDim(i))
        sizes.push_back(tensor::DimOp::create(b, loc, getInput(), i));
  operandGrads[0] = ReshapeOp::create(b, loc, inputType, resultGrads[0], sizes);
  return success();
}

LogicalResult TransposeOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                    const BitVector &required,
                                    SmallVectorImpl<Value> &operandGrads) {
  if (!required[0] || !isa<FloatType>(getInput().getType().getElementType()))
    return success();
  ArrayRef<int64_t> permutation = getPermutation();
  SmallVector<int64_t> inverse(permutation.size());
  for (auto [i, p] : llvm::enumerate(permutation))
    inverse[p] = i;
  operandGrads[0] = TransposeOp::create(b, getLoc(), resultGrads[0], inverse);
  return success();
}

/// The gradient of a sum (or, with `count`, a mean) over `axes` of `input`:
/// every reduced element receives the gradient of its result, divided by
/// `count` (a float of the compute precision) when given. One broadcasting
/// generic along the reduced axes (index 0 of a kept extent-1 dimension).
static Value reductionVJP(OpBuilder &b, Location loc, Value grad, Value input,
                          ArrayRef<int64_t> axes, bool keepDims, Value count) {
  RankedTensorType type = ranked(input);
  int64_t rank = type.getRank();
  SmallVector<AffineExpr> exprs;
  for (int64_t i = 0; i < rank; ++i) {
    if (!llvm::is_contained(axes, i))
      exprs.push_back(b.getAffineDimExpr(i));
    else if (keepDims)
      exprs.push_back(b.getAffineConstantExpr(0));
  }
  Type elementType = type.getElementType();
  Value init = tensor::EmptyOp::create(
      b, loc, tensor::getMixedSizes(b, loc, input), elementType);
  SmallVector<AffineMap> maps = {AffineMap::get(rank, 0, exprs, b.getContext()),
                                 b.getMultiDimIdentityMap(rank)};
  auto broadcast = linalg::GenericOp::create(
      b, loc, TypeRange{init.getType()}, grad, init, maps,
      SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
      [&](OpBuilder &nested, Location nestedLoc, ValueRange args) {
        Value value = args[0];
        if (count) {
          Type compute = count.getType();
          if (value.getType() != compute)
            value = arith::ExtFOp::create(nested, nestedLoc, compute, value);
          value = arith::DivFOp::create(nested, nestedLoc, value, count);
          if (elementType != compute)
            value =
                arith::TruncFOp::create(nested, nestedLoc, elementType, value);
        }
        linalg::YieldOp::create(nested, nestedLoc, value);
      });
  return broadcast.getResult(0);
}

LogicalResult ReduceSumOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                    const BitVector &required,
                                    SmallVectorImpl<Value> &operandGrads) {
  if (required[0])
    operandGrads[0] =
        reductionVJP(b, getLoc(), resultGrads[0], getInput(),
                     getNormalizedAxes(), getKeepDims(), /*count=*/Value());
  return success();
}

LogicalResult ReduceMeanOp::buildVJP(OpBuilder &b, ArrayRef<Value> resultGrads,
                                     const BitVector &required,
                                     SmallVectorImpl<Value> &operandGrads) {
  if (!required[0])
    return success();
  // The number of averaged elements, in f32 for f16/bf16 (f32 counts are
  // exact up to 2^24, f16 ones only up to 2048).
  Location loc = getLoc();
  SmallVector<int64_t> axes = getNormalizedAxes();
  RankedTensorType type = getInput().getType();
  auto elementType = cast<FloatType>(type.getElementType());
  Type compute = elementType.getWidth() < 32 ? b.getF32Type() : elementType;
  int64_t staticCount = 1;
  Value dynamicCount;
  for (int64_t axis : axes) {
    if (!type.isDynamicDim(axis)) {
      staticCount *= type.getDimSize(axis);
      continue;
    }
    Value extent = tensor::DimOp::create(b, loc, getInput(), axis);
    dynamicCount = dynamicCount
                       ? arith::MulIOp::create(b, loc, dynamicCount, extent)
                       : extent;
  }
  Value count;
  if (dynamicCount) {
    if (staticCount != 1)
      dynamicCount = arith::MulIOp::create(
          b, loc, dynamicCount,
          arith::ConstantIndexOp::create(b, loc, staticCount));
    count = arith::SIToFPOp::create(
        b, loc, compute,
        arith::IndexCastOp::create(b, loc, b.getI64Type(), dynamicCount));
  } else {
    count = arith::ConstantOp::create(
        b, loc, b.getFloatAttr(compute, static_cast<double>(staticCount)));
  }
  operandGrads[0] = reductionVJP(b, loc, resultGrads[0], getInput(), axes,
                                 getKeepDims(), count);
  return success();
}

//===----------------------------------------------------------------------===//
// Loss
//===----------------------------------------------------------------------===//

LogicalResult CrossEntropyOp::buildVJP(OpBuilder &b,
                                       ArrayRef<Value> resultGrads,
                                       const BitVector &required,
                                       SmallVectorImpl<Value> &operandGrads) {
  if (required[0])
    operandGrads[0] = CrossEntropyGradOp::create(
        b, getLoc(), getLogits().getType(), resultGrads[0], getLogits(),
        getTargets(), getMask());
  return success();
}
