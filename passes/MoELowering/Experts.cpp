//===- Experts.cpp - permute, expert_ffn, combine, shared_expert ----------===//
//
// See passes/ConvertMoEToLinalg.cpp for the design.
//
//===----------------------------------------------------------------------===//

#include "passes/MoELowering/Lowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using arith::CmpIPredicate;

namespace moec::lowering {

namespace {

using utils::IteratorType;
constexpr IteratorType kPar = IteratorType::parallel;

/// The hidden value of one element: activate(z1 + b1) * gatedFactor(z3 + b3),
/// where z3 (with b3) is null for ungated FFNs and any bias may be null;
/// every operand is f32 except the biases, which are widened.
Value hiddenActivation(IB &b, Value z1, Value z3, Value bias1, Value bias3,
                       const FFNActivation &activation) {
  if (bias1)
    z1 = arith::AddFOp::create(b, z1, toF32(b, bias1));
  Value v = activate(b, z1, activation);
  if (!z3)
    return v;
  if (bias3)
    z3 = arith::AddFOp::create(b, z3, toF32(b, bias3));
  return arith::MulFOp::create(b, v, gatedFactor(b, z3, activation));
}

/// The FFN of one expert on `rows` x [n, D]: fc1/fc3 [D, F], fc2 [F, Dout],
/// biases [F] / [Dout] (any may be null except fc1, fc2), computed in f32.
/// The result, [n, Dout] narrowed to dest's element type, is written into
/// `dest` by the last op (the second matmul or the bias / narrowing
/// generic), so that a `dest` sliced from a larger tensor and inserted back
/// bufferizes in place, without a strided copy. When `destIsZero`, the
/// generic adds its result to dest's (zero) values: a generic that ignores
/// its output gets a fresh tensor.empty from linalg's elementwise fusion,
/// which would bring the copy back.
Value ffn(IB &b, Value x, Value n, Value fc1, Value fc2, Value fc3,
          Value fc1Bias, Value fc2Bias, Value fc3Bias,
          const FFNActivation &activation, Value dest, bool destIsZero) {
  Type element = tensorType(dest).getElementType();
  Value hidden = dim(b, fc1, 1), out = dim(b, fc2, 1);
  Value h1 = matmulF32(b, x, fc1, n, hidden);
  Value h3 = fc3 ? matmulF32(b, x, fc3, n, hidden) : Value();
  AffineMap id = projection(b, 2, {0, 1}), col = projection(b, 2, {1});
  SmallVector<Value> inputs = {h1};
  SmallVector<AffineMap> maps = {id};
  auto add = [&](Value v, AffineMap map) -> int {
    if (!v)
      return -1;
    inputs.push_back(v);
    maps.push_back(map);
    return inputs.size() - 1;
  };
  int i3 = add(h3, id), b1 = add(fc1Bias, col), b3 = add(fc3Bias, col);
  maps.push_back(id);
  Value h = generic(
      b, empty(b, tensorType(h1), {n, hidden}), inputs, maps, {kPar, kPar},
      [&](IB &nb, ValueRange args) {
        auto arg = [&](int i) { return i >= 0 ? args[i] : Value(); };
        return hiddenActivation(nb, args[0], arg(i3), arg(b1), arg(b3),
                                activation);
      });
  if (!fc2Bias && element.isF32()) {
    Value zeros =
        linalg::FillOp::create(b, cF32(b, 0.0), dest).getResult(0);
    return linalg::MatmulOp::create(b, ValueRange{h, fc2}, ValueRange{zeros})
        .getResult(0);
  }
  Value y = matmulF32(b, h, fc2, n, out);
  SmallVector<Value> yInputs = {y};
  SmallVector<AffineMap> yMaps = {id};
  if (fc2Bias) {
    yInputs.push_back(fc2Bias);
    yMaps.push_back(col);
  }
  yMaps.push_back(id);
  return generic(b, dest, yInputs, yMaps, {kPar, kPar}, [&](IB &nb, ValueRange args) {
                   Value v = args[0];
                   if (fc2Bias)
                     v = arith::AddFOp::create(nb, v, toF32(nb, args[1]));
                   if (destIsZero)
                     v = arith::AddFOp::create(nb, toF32(nb, args.back()), v);
                   return fromF32(nb, v, element);
                 });
}

} // namespace

//===----------------------------------------------------------------------===//
// moe.permute
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerPermute(IB &b, moe::PermuteOp op) {
  Value x = op.getInput(), rowToken = op.getRowToken();
  RankedTensorType type = op.getResult().getType();
  Type element = type.getElementType();
  Value tokens = dim(b, x, 0);
  Value init = empty(b, type, {dim(b, rowToken, 0), dim(b, x, 1)});
  return {generic(
      b, init, {rowToken}, {projection(b, 2, {0}), projection(b, 2, {0, 1})},
      {kPar, kPar}, [&](IB &nb, ValueRange args) {
        Value t = toIndex(nb, args[0]);
        // Padding rows (-1) are zero; the clamp keeps any other
        // out-of-range token from reading out of bounds.
        Value valid = inRange(nb, t, tokens);
        Value safe = select(nb, valid, t, cIdx(nb, 0));
        Value v = extract(nb, x, {safe, loopIndex(nb, 1)});
        return select(nb, valid, v, cFloat(nb, element, 0.0));
      })};
}

//===----------------------------------------------------------------------===//
// moe.expert_ffn
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerExpertFFN(IB &b, moe::ExpertFFNOp op) {
  Value x = op.getInput(), offsets = op.getOffsets();
  Value fc1 = op.getFc1(), fc2 = op.getFc2(), fc3 = op.getFc3();
  Value fc1Bias = op.getFc1Bias(), fc2Bias = op.getFc2Bias(),
        fc3Bias = op.getFc3Bias();
  RankedTensorType type = op.getResult().getType();
  Type element = type.getElementType();
  Value zero = cIdx(b, 0), one = cIdx(b, 1);
  Value rows = dim(b, x, 0), features = dim(b, x, 1);
  Value experts = dim(b, fc1, 0), hidden = dim(b, fc1, 2),
        out = dim(b, fc2, 2);

  // Rows past offsets[E] stay zero.
  Value init = filled(b, type, {rows, out}, cFloat(b, element, 0.0));
  return {forLoop1(
      b, zero, experts, init, [&](IB &eb, Value e, ValueRange it) {
        // Rows offsets[e] .. offsets[e+1], clamped to [0, R] so a malformed
        // plan cannot slice out of bounds.
        Value lo = toIndex(eb, extract(eb, offsets, {e}));
        Value hi = toIndex(eb, extract(eb, offsets, {addI(eb, e, one)}));
        lo = minSI(eb, maxSI(eb, lo, zero), rows);
        hi = minSI(eb, maxSI(eb, hi, lo), rows);
        Value n = subI(eb, hi, lo);
        Value xs = slice(eb, x, {lo, zero}, {n, features},
                         {ShapedType::kDynamic, tensorType(x).getDimSize(1)});
        auto expertSlice = [&](Value weights, Value size1,
                               Value size2) -> Value {
          if (!weights)
            return Value();
          auto shape = tensorType(weights).getShape();
          return slice(eb, weights, {e, zero, zero}, {one, size1, size2},
                       {shape[1], shape[2]});
        };
        auto biasSlice = [&](Value bias, Value size) -> Value {
          if (!bias)
            return Value();
          return slice(eb, bias, {e, zero}, {one, size},
                       {tensorType(bias).getShape()[1]});
        };
        Value dest = slice(eb, it[0], {lo, zero}, {n, out},
                           {ShapedType::kDynamic, type.getDimSize(1)});
        Value ys = ffn(eb, xs, n, expertSlice(fc1, features, hidden),
                       expertSlice(fc2, hidden, out),
                       expertSlice(fc3, features, hidden),
                       biasSlice(fc1Bias, hidden), biasSlice(fc2Bias, out),
                       biasSlice(fc3Bias, hidden), ffnActivationOf(op), dest,
                       /*destIsZero=*/true);
        return SmallVector<Value>{insertSlice(eb, ys, it[0], {lo, zero},
                                              {n, out})};
      })};
}

Value rowExperts(IB &b, Value offsets, Value rows, Value experts) {
  Type i32 = b.getI32Type();
  auto type = RankedTensorType::get({ShapedType::kDynamic}, i32);
  return generic(
      b, empty(b, type, {rows}), {}, {projection(b, 1, {0})}, {kPar},
      [&](IB &nb, ValueRange) {
        Value row = loopIndex(nb, 0);
        Value first = toIndex(nb, extract(nb, offsets, {cIdx(nb, 0)}));
        Value end = toIndex(nb, extract(nb, offsets, {experts}));
        Value before = forLoop1(
            nb, cIdx(nb, 0), experts, cIdx(nb, 0),
            [&](IB &lb, Value e, ValueRange acc) {
              Value next = toIndex(
                  lb, extract(lb, offsets, {addI(lb, e, cIdx(lb, 1))}));
              Value passed = cmpI(lb, arith::CmpIPredicate::sle, next, row);
              return SmallVector<Value>{
                  select(lb, passed, addI(lb, acc[0], cIdx(lb, 1)), acc[0])};
            });
        Value inside =
            andI(nb, cmpI(nb, arith::CmpIPredicate::sle, first, row),
                 cmpI(nb, arith::CmpIPredicate::slt, row, end));
        Value expert = select(nb, inside, before, experts);
        return arith::IndexCastOp::create(nb, nb.getI32Type(), expert)
            .getResult();
      });
}

Value groupedMatmul(IB &b, Value lhs, Value weights, Value expert, Value rows,
                    Value columns, bool transposeWeights) {
  auto type = RankedTensorType::get(
      {ShapedType::kDynamic, ShapedType::kDynamic}, b.getF32Type());
  Value last = subI(b, dim(b, weights, 0), cIdx(b, 1));
  return generic(
      b, filled(b, type, {rows, columns}, cF32(b, 0.0)), {lhs, expert},
      {projection(b, 3, {0, 2}), projection(b, 3, {0}),
       projection(b, 3, {0, 1})},
      {kPar, kPar, IteratorType::reduction}, [&](IB &nb, ValueRange args) {
        Value e = minSI(nb, toIndex(nb, args[1]), last);
        Value k = loopIndex(nb, 2), n = loopIndex(nb, 1);
        Value w = transposeWeights ? extract(nb, weights, {e, n, k})
                                   : extract(nb, weights, {e, k, n});
        return arith::AddFOp::create(
            nb, args[2],
            arith::MulFOp::create(nb, toF32(nb, args[0]), toF32(nb, w)));
      });
}

Value rowwise(IB &b, RankedTensorType type, ArrayRef<Value> sizes,
              Value first, Value expert, Value second, RowwiseBody body) {
  AffineMap id = projection(b, 2, {0, 1}), row = projection(b, 2, {0});
  SmallVector<Value> inputs = {first, expert};
  SmallVector<AffineMap> maps = {id, row, id};
  if (second) {
    inputs.push_back(second);
    maps.insert(maps.begin() + 2, id);
  }
  return generic(b, empty(b, type, sizes), inputs, maps,
                 {utils::IteratorType::parallel, utils::IteratorType::parallel},
                 [&](IB &nb, ValueRange args) {
                   return body(nb, args[0], args[1],
                               second ? args[2] : Value());
                 });
}

Value expertProduct(IB &b, Value lhs, Value weights, Value expert,
                    Value offsets, Value columns, bool transposeWeights,
                    bool deviceKernels) {
  if (deviceKernels &&
      hasTensorCoreGemm(tensorType(lhs).getElementType(),
                        tensorType(weights).getElementType()))
    return groupedGemm(b, lhs, weights, offsets, transposeWeights);
  return groupedMatmul(b, lhs, weights, expert, dim(b, lhs, 0), columns,
                       transposeWeights);
}

SmallVector<Value> lowerExpertFFNByRows(IB &b, moe::ExpertFFNOp op,
                                        bool deviceKernels) {
  Value x = op.getInput(), offsets = op.getOffsets();
  Value fc1 = op.getFc1(), fc2 = op.getFc2(), fc3 = op.getFc3();
  Value fc1Bias = op.getFc1Bias(), fc2Bias = op.getFc2Bias(),
        fc3Bias = op.getFc3Bias();
  RankedTensorType type = op.getResult().getType();
  Type element = type.getElementType();
  FFNActivation activation = ffnActivationOf(op);
  Value rows = dim(b, x, 0);
  Value experts = dim(b, fc1, 0), hidden = dim(b, fc1, 2),
        out = dim(b, fc2, 2);
  Value expert = rowExperts(b, offsets, rows, experts);
  Value last = subI(b, experts, cIdx(b, 1));

  // The tensor-core kernel reads the hidden activation in f32, as the CPU
  // does (see GroupedGemm.cpp).
  auto product = [&](Value lhs, Value weights, Value columns) {
    return expertProduct(b, lhs, weights, expert, offsets, columns,
                         /*transposeWeights=*/false, deviceKernels);
  };
  Value h1 = product(x, fc1, hidden);
  Value h3 = fc3 ? product(x, fc3, hidden) : Value();
  Value h = rowwise(
      b, tensorType(h1), {rows, hidden}, h1, expert, h3,
      [&](IB &nb, Value a1, Value rowExpert, Value a3) {
        Value e = minSI(nb, toIndex(nb, rowExpert), last);
        Value column = loopIndex(nb, 1);
        auto bias = [&](Value table) {
          return table ? extract(nb, table, {e, column}) : Value();
        };
        return hiddenActivation(nb, a1, a3, bias(fc1Bias), bias(fc3Bias),
                                activation);
      });
  Value y = product(h, fc2, out);
  return {rowwise(
      b, type, {rows, out}, y, expert, Value(),
      [&](IB &nb, Value v, Value rowExpert, Value) {
        Value valid = cmpI(nb, arith::CmpIPredicate::slt,
                           toIndex(nb, rowExpert), experts);
        if (fc2Bias)
          v = arith::AddFOp::create(
              nb, v,
              toF32(nb, extract(nb, fc2Bias,
                                {minSI(nb, toIndex(nb, rowExpert), last),
                                 loopIndex(nb, 1)})));
        return fromF32(nb, select(nb, valid, v, cF32(nb, 0.0)), element);
      })};
}

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerCombine(IB &b, moe::CombineOp op) {
  Value x = op.getInput(), rowToken = op.getRowToken(),
        rowWeight = op.getRowWeight(), init = op.getInit();
  RankedTensorType type = op.getResult().getType();
  Type element = type.getElementType();
  Value zero = cIdx(b, 0), one = cIdx(b, 1);
  Value tokens = dim(b, init, 0), features = dim(b, init, 1);
  Value rows = dim(b, x, 0);
  int64_t staticFeatures = type.getDimSize(1);

  // Accumulate in f32: a widened copy of init for f16 / bf16. An f32 init
  // is updated in place unless it comes from outside the function or from a
  // non-linalg op: writing into a function argument would mutate the
  // caller's buffer (moec bufferizes arguments as writable) and return a
  // view of it, so such an init is first copied into a fresh tensor.
  // (linalg.copy, as canonicalisation erases an identity generic.)
  Value acc = init;
  bool fresh = init.getDefiningOp<linalg::LinalgOp>() != nullptr;
  if (element.isF32() && !fresh)
    acc = linalg::CopyOp::create(b, init, empty(b, type, {tokens, features}))
              .getResult(0);
  else if (!element.isF32())
    acc = elementwise(b, empty(b, withElement(type, b.getF32Type()),
                               {tokens, features}),
                      {init}, [&](IB &nb, ValueRange args) {
                        return toF32(nb, args[0]);
                      });
  // Row order: result[t] += w[r] * x[r] for r = 0, 1, ...; each update is a
  // row-wide generic on a slice of the accumulator (parallel over features).
  acc = forLoop1(b, zero, rows, acc, [&](IB &rb, Value r, ValueRange it) {
    Value t = toIndex(rb, extract(rb, rowToken, {r}));
    return ifElse(
        rb, inRange(rb, t, tokens),
        [&](IB &ib) -> SmallVector<Value> {
          Value w = toF32(ib, extract(ib, rowWeight, {r}));
          Value target = slice(ib, it[0], {t, zero}, {one, features},
                               {staticFeatures});
          Value source =
              slice(ib, x, {r, zero}, {one, features}, {staticFeatures});
          Value updated = elementwise(
              ib, target, {source}, [&](IB &nb, ValueRange args) {
                return arith::AddFOp::create(
                    nb, args[1],
                    arith::MulFOp::create(nb, w, toF32(nb, args[0])));
              });
          return {insertSlice(ib, updated, it[0], {t, zero}, {one, features})};
        },
        [&](IB &) -> SmallVector<Value> { return {it[0]}; });
  });
  if (element.isF32())
    return {acc};
  return {elementwise(b, empty(b, type, {tokens, features}), {acc},
                      [&](IB &nb, ValueRange args) {
                        return fromF32(nb, args[0], element);
                      })};
}

//===----------------------------------------------------------------------===//
// moe.shared_expert
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerSharedExpert(IB &b, moe::SharedExpertOp op) {
  Value x = op.getInput(), gate = op.getGate();
  RankedTensorType type = op.getResult().getType();
  Type element = type.getElementType();
  Value tokens = dim(b, x, 0), out = dim(b, op.getFc2(), 1);
  FFNActivation activation{op.getActivation()};
  if (!gate)
    return {ffn(b, x, tokens, op.getFc1(), op.getFc2(), op.getFc3(), Value(),
                Value(), Value(), activation, empty(b, type, {tokens, out}),
                /*destIsZero=*/false)};
  Value y = ffn(b, x, tokens, op.getFc1(), op.getFc2(), op.getFc3(), Value(),
                Value(), Value(), activation,
                empty(b, withElement(type, b.getF32Type()), {tokens, out}),
                /*destIsZero=*/false);
  // Per-token gate sigmoid(x @ gate), [T, 1].
  Value g = matmulF32(b, x, gate, tokens, cIdx(b, 1));
  return {generic(b, empty(b, type, {tokens, out}), {y, g},
                  {projection(b, 2, {0, 1}),
                   AffineMap::get(2, 0,
                                  {b.getAffineDimExpr(0),
                                   b.getAffineConstantExpr(0)},
                                  b.getContext()),
                   projection(b, 2, {0, 1})},
                  {kPar, kPar}, [&](IB &nb, ValueRange args) {
                    Value v = arith::MulFOp::create(nb, args[0],
                                                    sigmoid(nb, args[1]));
                    return fromF32(nb, v, element);
                  })};
}

} // namespace moec::lowering
