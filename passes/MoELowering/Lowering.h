//===- Lowering.h - Lowerings of the fine-grained moe ops ----------*- C++ -*-===//
//
// One function per moe op; each builds the replacement at the builder's
// insertion point (just before the op) and returns the values that replace
// the op's results, one for one and of the same types. See
// passes/ConvertMoEToLinalg.cpp for the design.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_PASSES_MOELOWERING_LOWERING_H
#define MOEC_PASSES_MOELOWERING_LOWERING_H

#include "passes/MoELowering/Emit.h"

namespace moec::lowering {

// Routing (Routing.cpp).
SmallVector<Value> lowerGate(IB &b, moe::GateOp op);
SmallVector<Value> lowerTokenChoice(IB &b, moe::TokenChoiceOp op);
SmallVector<Value> lowerExpertChoice(IB &b, moe::ExpertChoiceOp op);
SmallVector<Value> lowerDispatch(IB &b, moe::DispatchOp op);

// Rows and experts (Experts.cpp).
SmallVector<Value> lowerPermute(IB &b, moe::PermuteOp op);
SmallVector<Value> lowerExpertFFN(IB &b, moe::ExpertFFNOp op);
SmallVector<Value> lowerCombine(IB &b, moe::CombineOp op);
SmallVector<Value> lowerSharedExpert(IB &b, moe::SharedExpertOp op);

// Metrics (Metrics.cpp).
SmallVector<Value> lowerLoadBalancingLoss(IB &b, moe::LoadBalancingLossOp op);
SmallVector<Value> lowerZLoss(IB &b, moe::ZLossOp op);
SmallVector<Value> lowerRoutingStats(IB &b, moe::RoutingStatsOp op);

// Shared pieces.

/// Row-wise softmax of `logits` ([T, E], any float type) in f32:
/// exp(x - max) / sum(exp(x - max)).
Value softmaxF32(IB &b, Value logits);
/// Row-wise max and sum(exp(x - max)) of `logits` in f32 ([T] each).
std::pair<Value, Value> maxAndSumExp(IB &b, Value logits);

} // namespace moec::lowering

#endif // MOEC_PASSES_MOELOWERING_LOWERING_H
