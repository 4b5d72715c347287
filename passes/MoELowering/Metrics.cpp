//===- Metrics.cpp - load_balancing_loss, z_loss, routing_stats -----------===//
//
// See passes/ConvertMoEToLinalg.cpp for the design.
//
//===----------------------------------------------------------------------===//

#include "passes/MoELowering/Lowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using arith::CmpIPredicate;

namespace moec::lowering {

using utils::IteratorType;

Value countAssignments(IB &b, Value indices, RankedTensorType countsType,
                       Value experts) {
  Value zero = cIdx(b, 0);
  Value counts = filled(b, countsType, {experts}, cI64(b, 0));
  Value tokens = dim(b, indices, 0), k = dim(b, indices, 1);
  return forLoop1(
      b, zero, tokens, counts, [&](IB &tb, Value t, ValueRange tIt) {
        return SmallVector<Value>{forLoop1(
            tb, zero, k, tIt[0], [&](IB &nb, Value j, ValueRange it) {
              Value e = toIndex(nb, extract(nb, indices, {t, j}));
              return ifElse(
                  nb, inRange(nb, e, experts),
                  [&](IB &ib) -> SmallVector<Value> {
                    Value count = extract(ib, it[0], {e});
                    return {insert(ib, addI(ib, count, cI64(ib, 1)), it[0],
                                   {e})};
                  },
                  [&](IB &) -> SmallVector<Value> { return {it[0]}; });
            })};
      });
}

//===----------------------------------------------------------------------===//
// moe.load_balancing_loss
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerLoadBalancingLoss(IB &b, moe::LoadBalancingLossOp op) {
  Value probs = op.getProbs(), indices = op.getIndices();
  auto probsType = cast<RankedTensorType>(probs.getType());
  Value zero = cIdx(b, 0);
  Value tokens = dim(b, probs, 0), experts = dim(b, probs, 1);
  Value assignments = mulI(b, dim(b, indices, 0), dim(b, indices, 1));

  auto vectorType = [&](Type element) {
    return RankedTensorType::get({probsType.getDimSize(1)}, element);
  };
  Value counts =
      countAssignments(b, indices, vectorType(b.getI64Type()), experts);
  // Column sums of probs in f32.
  Value columns = generic(
      b, filled(b, vectorType(b.getF32Type()), {experts}, cF32(b, 0.0)),
      {probs}, {projection(b, 2, {0, 1}), projection(b, 2, {1})},
      {IteratorType::reduction, IteratorType::parallel},
      [&](IB &nb, ValueRange args) {
        return arith::AddFOp::create(nb, args[1], toF32(nb, args[0]));
      });
  // E * sum_e (count_e / (T k)) * (column_e / T).
  Value n = indexToF32(b, assignments), t = indexToF32(b, tokens);
  Value sum = forLoop1(
      b, zero, experts, cF32(b, 0.0), [&](IB &nb, Value e, ValueRange it) {
        Value count = arith::SIToFPOp::create(nb, nb.getF32Type(),
                                              extract(nb, counts, {e}));
        Value fraction = arith::DivFOp::create(nb, count, n);
        Value mean =
            arith::DivFOp::create(nb, extract(nb, columns, {e}), t);
        return SmallVector<Value>{arith::AddFOp::create(
            nb, it[0], arith::MulFOp::create(nb, fraction, mean))};
      });
  Value loss = arith::MulFOp::create(b, indexToF32(b, experts), sum);
  // No tokens (or no assignments): 0 rather than 0 / 0.
  Value none = orI(b, cmpI(b, CmpIPredicate::eq, tokens, zero),
                   cmpI(b, CmpIPredicate::eq, assignments, zero));
  return {scalarTensor(b, select(b, none, cF32(b, 0.0), loss))};
}

//===----------------------------------------------------------------------===//
// moe.z_loss
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerZLoss(IB &b, moe::ZLossOp op) {
  Value logits = op.getLogits();
  Value zero = cIdx(b, 0);
  Value tokens = dim(b, logits, 0);
  auto [max, sumExp] = maxAndSumExp(b, logits);
  // mean_t (max_t + log(sum_t))^2.
  Value sum = forLoop1(
      b, zero, tokens, cF32(b, 0.0), [&](IB &nb, Value t, ValueRange it) {
        Value lse = arith::AddFOp::create(
            nb, extract(nb, max, {t}),
            math::LogOp::create(nb, extract(nb, sumExp, {t})));
        return SmallVector<Value>{arith::AddFOp::create(
            nb, it[0], arith::MulFOp::create(nb, lse, lse))};
      });
  Value loss = arith::DivFOp::create(b, sum, indexToF32(b, tokens));
  Value none = cmpI(b, CmpIPredicate::eq, tokens, zero);
  return {scalarTensor(b, select(b, none, cF32(b, 0.0), loss))};
}

//===----------------------------------------------------------------------===//
// moe.routing_stats
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerRoutingStats(IB &b, moe::RoutingStatsOp op) {
  Value offsets = op.getOffsets(), indices = op.getIndices();
  auto countsType =
      cast<RankedTensorType>(op.getTokensPerExpert().getType());
  Value one = cIdx(b, 1);
  Value experts = subI(b, dim(b, offsets, 0), one);
  Type i64 = b.getI64Type();
  if (!indices) {
    // Rows per expert: offsets[e + 1] - offsets[e].
    Value counts = generic(
        b, empty(b, countsType, {experts}), {}, {projection(b, 1, {0})},
        {IteratorType::parallel}, [&](IB &nb, ValueRange) {
          Value e = loopIndex(nb, 0);
          Value lo = extract(nb, offsets, {e});
          Value hi = extract(nb, offsets, {addI(nb, e, cIdx(nb, 1))});
          return subI(nb, arith::ExtSIOp::create(nb, i64, hi),
                      arith::ExtSIOp::create(nb, i64, lo));
        });
    return {counts, scalarTensor(b, cI64(b, 0))};
  }
  Value counts = countAssignments(b, indices, countsType, experts);
  Value assignments = toInt(
      b, mulI(b, dim(b, indices, 0), dim(b, indices, 1)), i64);
  Value kept = arith::ExtSIOp::create(b, i64, extract(b, offsets, {experts}));
  return {counts, scalarTensor(b, subI(b, assignments, kept))};
}

} // namespace moec::lowering
