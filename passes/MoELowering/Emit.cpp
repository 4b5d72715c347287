//===- Emit.cpp - Small IR-building helpers for the moe lowering ----------===//

#include "passes/MoELowering/Emit.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

#include <cmath>

using namespace mlir;

namespace moec::lowering {

Value cIdx(IB &b, int64_t value) {
  return arith::ConstantIndexOp::create(b, value);
}
Value cInt(IB &b, Type type, int64_t value) {
  return arith::ConstantOp::create(b, b.getIntegerAttr(type, value));
}
Value cI32(IB &b, int64_t value) { return cInt(b, b.getI32Type(), value); }
Value cI64(IB &b, int64_t value) { return cInt(b, b.getI64Type(), value); }
Value cF32(IB &b, double value) { return cFloat(b, b.getF32Type(), value); }
Value cF64(IB &b, double value) { return cFloat(b, b.getF64Type(), value); }
Value cFloat(IB &b, Type type, double value) {
  return arith::ConstantOp::create(b, b.getFloatAttr(type, value));
}

RankedTensorType tensorType(Value value) {
  return cast<RankedTensorType>(value.getType());
}

Value dim(IB &b, Value tensor, int64_t d) {
  auto type = cast<RankedTensorType>(tensor.getType());
  if (!type.isDynamicDim(d))
    return cIdx(b, type.getDimSize(d));
  return tensor::DimOp::create(b, tensor, d);
}

Value toIndex(IB &b, Value integer) {
  return arith::IndexCastOp::create(b, b.getIndexType(), integer);
}
Value toInt(IB &b, Value index, Type type) {
  return arith::IndexCastOp::create(b, type, index);
}
Value toF32(IB &b, Value value) {
  if (value.getType().isF32())
    return value;
  return arith::ExtFOp::create(b, b.getF32Type(), value);
}
Value fromF32(IB &b, Value value, Type type) {
  if (type.isF32())
    return value;
  return arith::TruncFOp::create(b, type, value);
}
Value indexToF32(IB &b, Value index) {
  return arith::SIToFPOp::create(b, b.getF32Type(),
                                 toInt(b, index, b.getI64Type()));
}
Value indexToF64(IB &b, Value index) {
  return arith::SIToFPOp::create(b, b.getF64Type(),
                                 toInt(b, index, b.getI64Type()));
}

Value addI(IB &b, Value x, Value y) { return arith::AddIOp::create(b, x, y); }
Value subI(IB &b, Value x, Value y) { return arith::SubIOp::create(b, x, y); }
Value mulI(IB &b, Value x, Value y) { return arith::MulIOp::create(b, x, y); }
Value minSI(IB &b, Value x, Value y) {
  return arith::MinSIOp::create(b, x, y);
}
Value maxSI(IB &b, Value x, Value y) {
  return arith::MaxSIOp::create(b, x, y);
}
Value cmpI(IB &b, arith::CmpIPredicate predicate, Value x, Value y) {
  return arith::CmpIOp::create(b, predicate, x, y);
}
Value cmpF(IB &b, arith::CmpFPredicate predicate, Value x, Value y) {
  return arith::CmpFOp::create(b, predicate, x, y);
}
Value andI(IB &b, Value x, Value y) { return arith::AndIOp::create(b, x, y); }
Value orI(IB &b, Value x, Value y) { return arith::OrIOp::create(b, x, y); }
Value select(IB &b, Value cond, Value x, Value y) {
  return arith::SelectOp::create(b, cond, x, y);
}
Value inRange(IB &b, Value value, Value bound) {
  return andI(b, cmpI(b, arith::CmpIPredicate::sge, value, cIdx(b, 0)),
              cmpI(b, arith::CmpIPredicate::slt, value, bound));
}

Value extract(IB &b, Value tensor, ValueRange indices) {
  return tensor::ExtractOp::create(b, tensor, indices);
}
Value insert(IB &b, Value scalar, Value tensor, ValueRange indices) {
  return tensor::InsertOp::create(b, scalar, tensor, indices);
}

Value empty(IB &b, RankedTensorType type, ArrayRef<Value> sizes) {
  assert(sizes.size() == static_cast<size_t>(type.getRank()));
  SmallVector<Value> dynamic;
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (type.isDynamicDim(d))
      dynamic.push_back(sizes[d]);
  return tensor::EmptyOp::create(b, type, dynamic);
}

Value filled(IB &b, RankedTensorType type, ArrayRef<Value> sizes,
             Value scalar) {
  return linalg::FillOp::create(b, scalar, empty(b, type, sizes))
      .getResult(0);
}

Value scalarTensor(IB &b, Value scalar) {
  return tensor::FromElementsOp::create(
      b, RankedTensorType::get({}, scalar.getType()), ValueRange{scalar});
}

RankedTensorType withElement(RankedTensorType type, Type element) {
  return RankedTensorType::get(type.getShape(), element);
}

Value slice(IB &b, Value source, ArrayRef<Value> offsets, ArrayRef<Value> sizes,
            ArrayRef<int64_t> resultShape) {
  SmallVector<OpFoldResult> strides(offsets.size(), b.getIndexAttr(1));
  auto type = RankedTensorType::get(
      resultShape, cast<RankedTensorType>(source.getType()).getElementType());
  return tensor::ExtractSliceOp::create(b, type, source,
                                        getAsOpFoldResult(offsets),
                                        getAsOpFoldResult(sizes), strides);
}

Value insertSlice(IB &b, Value source, Value dest, ArrayRef<Value> offsets,
                  ArrayRef<Value> sizes) {
  SmallVector<OpFoldResult> strides(offsets.size(), b.getIndexAttr(1));
  return tensor::InsertSliceOp::create(b, source, dest,
                                       getAsOpFoldResult(offsets),
                                       getAsOpFoldResult(sizes), strides);
}

SmallVector<Value> forLoop(IB &b, Value lb, Value ub, ValueRange inits,
                           LoopBody body) {
  auto loop = scf::ForOp::create(
      b, lb, ub, cIdx(b, 1), inits,
      [&](OpBuilder &nested, Location loc, Value iv, ValueRange iters) {
        IB ib(loc, nested);
        SmallVector<Value> results = body(ib, iv, iters);
        scf::YieldOp::create(ib, results);
      });
  return SmallVector<Value>(loop.getResults());
}

Value forLoop1(IB &b, Value lb, Value ub, Value init, LoopBody body) {
  return forLoop(b, lb, ub, ValueRange{init}, body).front();
}

SmallVector<Value> ifElse(IB &b, Value cond, Branch thenBranch,
                          Branch elseBranch) {
  auto op = scf::IfOp::create(
      b, cond,
      [&](OpBuilder &nested, Location loc) {
        IB ib(loc, nested);
        scf::YieldOp::create(ib, thenBranch(ib));
      },
      [&](OpBuilder &nested, Location loc) {
        IB ib(loc, nested);
        scf::YieldOp::create(ib, elseBranch(ib));
      });
  return SmallVector<Value>(op.getResults());
}

Value ifElse1(IB &b, Value cond, Branch thenBranch, Branch elseBranch) {
  return ifElse(b, cond, thenBranch, elseBranch).front();
}

Value generic(IB &b, Value init, ValueRange inputs, ArrayRef<AffineMap> maps,
              ArrayRef<utils::IteratorType> iterators, GenericBody body) {
  auto op = linalg::GenericOp::create(
      b, TypeRange{init.getType()}, inputs, ValueRange{init}, maps, iterators,
      [&](OpBuilder &nested, Location loc, ValueRange args) {
        IB ib(loc, nested);
        linalg::YieldOp::create(ib, ValueRange{body(ib, args)});
      });
  return op.getResult(0);
}

Value elementwise(IB &b, Value init, ValueRange inputs, GenericBody body) {
  auto rank = cast<RankedTensorType>(init.getType()).getRank();
  SmallVector<AffineMap> maps(
      inputs.size() + 1, AffineMap::getMultiDimIdentityMap(rank,
                                                           b.getContext()));
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  return generic(b, init, inputs, maps, iterators, body);
}

Value loopIndex(IB &b, int64_t d) { return linalg::IndexOp::create(b, d); }

AffineMap projection(IB &b, unsigned numDims, ArrayRef<unsigned> results) {
  SmallVector<AffineExpr> exprs;
  for (unsigned d : results)
    exprs.push_back(b.getAffineDimExpr(d));
  return AffineMap::get(numDims, 0, exprs, b.getContext());
}

Value matmulF32(IB &b, Value lhs, Value rhs, Value m, Value n) {
  auto type = RankedTensorType::get(
      {getConstantIntValue(m).value_or(ShapedType::kDynamic),
       getConstantIntValue(n).value_or(ShapedType::kDynamic)},
      b.getF32Type());
  Value acc = filled(b, type, {m, n}, cF32(b, 0.0));
  return linalg::MatmulOp::create(b, ValueRange{lhs, rhs}, ValueRange{acc})
      .getResult(0);
}

Value transposed(IB &b, Value matrix) {
  auto type = cast<RankedTensorType>(matrix.getType());
  auto resultType = RankedTensorType::get(
      {type.getDimSize(1), type.getDimSize(0)}, type.getElementType());
  Value init = empty(b, resultType, {dim(b, matrix, 1), dim(b, matrix, 0)});
  return linalg::TransposeOp::create(b, matrix, init,
                                     ArrayRef<int64_t>{1, 0})
      .getResult()[0];
}

Value sigmoid(IB &b, Value x) {
  // 1 / (1 + exp(-x)): saturates to 0 / 1 without NaN.
  Value e = math::ExpOp::create(b, arith::NegFOp::create(b, x));
  return arith::DivFOp::create(b, cF32(b, 1.0),
                               arith::AddFOp::create(b, cF32(b, 1.0), e));
}

namespace {
/// G = min(z1, limit), swiglu's clamp of the gate projection.
Value clampedGate(IB &b, Value z1, const FFNActivation &activation) {
  if (!activation.swigluLimit)
    return z1;
  return arith::MinimumFOp::create(b, z1, cF32(b, *activation.swigluLimit));
}

/// alpha * G, the argument of swiglu's sigmoid (G itself for alpha = 1, so
/// that plain SwiGLU stays x * sigmoid(x)).
Value sigmoidArgument(IB &b, Value gate, const FFNActivation &activation) {
  if (activation.swigluAlpha == 1.0)
    return gate;
  return arith::MulFOp::create(b, cF32(b, activation.swigluAlpha), gate);
}
} // namespace

Value activate(IB &b, Value z1, const FFNActivation &activation) {
  Value x = z1;
  switch (activation.kind) {
  case moe::Activation::relu:
    return arith::MaximumFOp::create(b, x, cF32(b, 0.0));
  case moe::Activation::relu2: {
    Value positive = arith::MaximumFOp::create(b, x, cF32(b, 0.0));
    return arith::MulFOp::create(b, positive, positive);
  }
  case moe::Activation::identity:
    return x;
  case moe::Activation::silu:
    return arith::MulFOp::create(b, x, sigmoid(b, x));
  case moe::Activation::swiglu: {
    Value gate = clampedGate(b, x, activation);
    return arith::MulFOp::create(
        b, gate, sigmoid(b, sigmoidArgument(b, gate, activation)));
  }
  case moe::Activation::gelu:
  case moe::Activation::geglu: {
    // x * Phi(x) = x * 0.5 * (1 + erf(x / sqrt(2))). math.erf has no LLVM
    // lowering: the pass expands it with upstream's polynomial
    // approximation (see kExpandErfAttr).
    Value scaled = arith::MulFOp::create(b, x, cF32(b, M_SQRT1_2));
    auto erf = math::ErfOp::create(b, scaled);
    erf->setAttr(kExpandErfAttr, b.getUnitAttr());
    Value phi = arith::MulFOp::create(
        b, cF32(b, 0.5), arith::AddFOp::create(b, cF32(b, 1.0), erf));
    return arith::MulFOp::create(b, x, phi);
  }
  case moe::Activation::gelu_tanh:
  case moe::Activation::geglu_tanh: {
    // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), evaluated
    // in the reference's order.
    Value cube = arith::MulFOp::create(
        b,
        arith::MulFOp::create(b, arith::MulFOp::create(b, cF32(b, 0.044715), x),
                              x),
        x);
    Value inner = arith::MulFOp::create(
        b, cF32(b, std::sqrt(2.0 / M_PI)), arith::AddFOp::create(b, x, cube));
    Value t = math::TanhOp::create(b, inner);
    return arith::MulFOp::create(b,
                                 arith::MulFOp::create(b, cF32(b, 0.5), x),
                                 arith::AddFOp::create(b, cF32(b, 1.0), t));
  }
  }
  llvm_unreachable("unknown activation");
}

Value activateGrad(IB &b, Value z1, const FFNActivation &activation) {
  auto mul = [&](Value l, Value r) { return arith::MulFOp::create(b, l, r); };
  auto add = [&](Value l, Value r) { return arith::AddFOp::create(b, l, r); };
  auto sub = [&](Value l, Value r) { return arith::SubFOp::create(b, l, r); };
  Value x = z1;
  Value one = cF32(b, 1.0);
  switch (activation.kind) {
  case moe::Activation::relu:
    return arith::UIToFPOp::create(
        b, b.getF32Type(), cmpF(b, arith::CmpFPredicate::OGT, x, cF32(b, 0.0)));
  case moe::Activation::relu2: {
    // d/dx relu(x)^2 = 2 relu(x).
    Value positive = arith::MaximumFOp::create(b, x, cF32(b, 0.0));
    return mul(cF32(b, 2.0), positive);
  }
  case moe::Activation::identity:
    return one;
  case moe::Activation::silu: {
    // d/dx x s(x) = s (1 + x (1 - s)).
    Value s = sigmoid(b, x);
    return mul(s, add(one, mul(x, sub(one, s))));
  }
  case moe::Activation::swiglu: {
    // d/dG G s(a G) = s (1 + a G (1 - s)) with s = s(a G), and 0 where
    // G = min(x, limit) is clipped.
    Value scaled =
        sigmoidArgument(b, clampedGate(b, x, activation), activation);
    Value s = sigmoid(b, scaled);
    Value slope = mul(s, add(one, mul(scaled, sub(one, s))));
    if (!activation.swigluLimit)
      return slope;
    Value passes = cmpF(b, arith::CmpFPredicate::OLE, x,
                        cF32(b, *activation.swigluLimit));
    return select(b, passes, slope, cF32(b, 0.0));
  }
  case moe::Activation::gelu:
  case moe::Activation::geglu: {
    // Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    auto erf = math::ErfOp::create(b, mul(x, cF32(b, M_SQRT1_2)));
    erf->setAttr(kExpandErfAttr, b.getUnitAttr());
    Value phiCdf = mul(cF32(b, 0.5), add(one, erf));
    Value density = mul(
        cF32(b, 0.5 * M_2_SQRTPI * M_SQRT1_2),
        math::ExpOp::create(b, mul(cF32(b, -0.5), mul(x, x))));
    return add(phiCdf, mul(x, density));
  }
  case moe::Activation::gelu_tanh:
  case moe::Activation::geglu_tanh: {
    // y = 0.5 x (1 + t), t = tanh(c (x + a x^3)):
    // y' = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2).
    double c = std::sqrt(2.0 / M_PI), a = 0.044715;
    Value x2 = mul(x, x);
    Value inner = mul(cF32(b, c), add(x, mul(cF32(b, a), mul(x2, x))));
    Value t = math::TanhOp::create(b, inner);
    Value dInner = mul(cF32(b, c), add(one, mul(cF32(b, 3 * a), x2)));
    return add(mul(cF32(b, 0.5), add(one, t)),
               mul(mul(cF32(b, 0.5), x), mul(sub(one, mul(t, t)), dInner)));
  }
  }
  llvm_unreachable("unknown activation");
}

Value gatedFactor(IB &b, Value z3, const FFNActivation &activation) {
  Value factor = z3;
  if (activation.swigluLimit) {
    Value upper = cF32(b, *activation.swigluLimit);
    Value lower = cF32(b, -*activation.swigluLimit);
    factor = arith::MaximumFOp::create(
        b, arith::MinimumFOp::create(b, factor, upper), lower);
  }
  if (activation.swigluBeta != 0.0)
    factor = arith::AddFOp::create(b, factor, cF32(b, activation.swigluBeta));
  return factor;
}

Value gatedFactorGrad(IB &b, Value z3, Value factorGrad,
                      const FFNActivation &activation) {
  if (!activation.swigluLimit)
    return factorGrad;
  Value magnitude = math::AbsFOp::create(b, z3);
  Value inside = cmpF(b, arith::CmpFPredicate::OLE, magnitude,
                      cF32(b, *activation.swigluLimit));
  return select(b, inside, factorGrad, cF32(b, 0.0));
}

} // namespace moec::lowering
