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

// The fused routing kernel of GPU targets (RoutingKernel.cpp).

/// Whether `routing` and `dispatch`, which takes routing's indices and
/// weights, can run as one fused routing kernel.
bool fitsRoutingKernel(moe::TokenChoiceOp routing, moe::DispatchOp dispatch);
/// The fused routing kernel launched in place of `routing` and `dispatch`
/// (fitsRoutingKernel): routing's results, then dispatch's.
SmallVector<Value> lowerRoutingKernel(IB &b, moe::TokenChoiceOp routing,
                                      moe::DispatchOp dispatch);

// Rows and experts (Experts.cpp).
SmallVector<Value> lowerPermute(IB &b, moe::PermuteOp op);
SmallVector<Value> lowerExpertFFN(IB &b, moe::ExpertFFNOp op);
/// The same FFNs as one grouped product per matmul over all rows, each row
/// reading its own expert's weights: no loop over experts and no slice
/// whose size depends on the routing (GPU targets). With `deviceKernels`,
/// bf16 / f16 FFNs use the tensor-core kernel of groupedGemm.
SmallVector<Value> lowerExpertFFNByRows(IB &b, moe::ExpertFFNOp op,
                                        bool deviceKernels);
SmallVector<Value> lowerCombine(IB &b, moe::CombineOp op);
/// The same scatter-add as a CUDA kernel with one thread per feature column
/// (DeviceCombine.cpp).
SmallVector<Value> lowerCombineOnDevice(IB &b, moe::CombineOp op);
SmallVector<Value> lowerSharedExpert(IB &b, moe::SharedExpertOp op);

// Metrics (Metrics.cpp).
SmallVector<Value> lowerLoadBalancingLoss(IB &b, moe::LoadBalancingLossOp op);
SmallVector<Value> lowerZLoss(IB &b, moe::ZLossOp op);
SmallVector<Value> lowerRoutingStats(IB &b, moe::RoutingStatsOp op);

// Gradients (Gradients.cpp).
SmallVector<Value> lowerGateGrad(IB &b, moe::GateGradOp op);
SmallVector<Value> lowerTokenChoiceGrad(IB &b, moe::TokenChoiceGradOp op);
SmallVector<Value> lowerExpertChoiceGrad(IB &b, moe::ExpertChoiceGradOp op);
SmallVector<Value> lowerDispatchGrad(IB &b, moe::DispatchGradOp op);
SmallVector<Value> lowerExpertFFNGrad(IB &b, moe::ExpertFFNGradOp op);
/// The gradients of the expert FFNs as grouped products over rows (input
/// gradient) and per-expert reductions over each segment's rows (weight
/// and bias gradients): the GPU form of lowerExpertFFNGrad.
SmallVector<Value> lowerExpertFFNGradByRows(IB &b, moe::ExpertFFNGradOp op,
                                            bool deviceKernels);
SmallVector<Value> lowerCombineGrad(IB &b, moe::CombineGradOp op);
SmallVector<Value> lowerSharedExpertGrad(IB &b, moe::SharedExpertGradOp op);
SmallVector<Value> lowerLoadBalancingLossGrad(IB &b,
                                              moe::LoadBalancingLossGradOp op);
SmallVector<Value> lowerZLossGrad(IB &b, moe::ZLossGradOp op);

// Hand-built GPU kernels (GroupedGemm.cpp).

/// Whether groupedGemm takes an lhs of `lhsElement` and weights of
/// `weightElement`: bf16 or f16 weights, and an lhs of the same type or f32.
bool hasTensorCoreGemm(Type lhsElement, Type weightElement);
/// out[r, n] = sum_k lhs[r, k] * W[k, n] in f32 ([R, N], tensor<?x?xf32>)
/// for the rows r of expert e's segment offsets[e] .. offsets[e+1] (clamped
/// to [0, R]), W = weights[e] ([E, K, N]) or, with `transposeWeights`,
/// weights[e]^T (weights [E, N, K]); rows of no segment are zero. One launch
/// of a tensor-core kernel (mma.sync m16n8k16, f32 accumulation); an f32 lhs
/// is split into two terms of the weights' type, which keeps the product
/// close to f32 (see GroupedGemm.cpp). Requires hasTensorCoreGemm.
Value groupedGemm(IB &b, Value lhs, Value weights, Value offsets,
                  bool transposeWeights);

// Shared pieces.

/// The expert of every row of the permuted input (i32, [R]): e where
/// offsets[e] <= row < offsets[e+1], or E for rows outside every segment
/// (padding).
Value rowExperts(IB &b, Value offsets, Value rows, Value experts);
/// out[r, n] = sum_k lhs[r, k] * weights[expert[r], k, n] in f32 ([R, N]),
/// or weights[expert[r], n, k] with `transposeWeights`; padding rows
/// (expert E) read the last expert and are zeroed by the caller.
Value groupedMatmul(IB &b, Value lhs, Value weights, Value expert, Value rows,
                    Value columns, bool transposeWeights = false);
using RowwiseBody =
    llvm::function_ref<Value(IB &, Value first, Value expert, Value second)>;
/// A [R, C] generic of `type` (extents `sizes`) over `first` ([R, C]), the
/// rows' experts (rowExperts) and an optional `second` ([R, C]); `body`
/// gets one element of each (`second` null without it).
Value rowwise(IB &b, RankedTensorType type, ArrayRef<Value> sizes,
              Value first, Value expert, Value second, RowwiseBody body);
/// The same product (rows of `lhs` [R, K] times their expert's weights) on
/// the tensor cores when `deviceKernels` is set and groupedGemm takes the
/// element types, else groupedMatmul; `expert` is rowExperts' result.
Value expertProduct(IB &b, Value lhs, Value weights, Value expert,
                    Value offsets, Value columns, bool transposeWeights,
                    bool deviceKernels);

/// The jitter multiplier u = 1 + eps * (2 U - 1) of moe.gate for the element
/// with i64 flat index `flat` = t * D + d, U = splitmix64(seed + flat *
/// golden) >> 40 / 2^24 (see passes/ConvertMoEToLinalg.cpp).
Value jitterMultiplier(IB &b, Value seed, Value flat, float eps);
/// counts[e] (i64, [E]) = entries of `indices` ([T, k]) equal to e; entries
/// outside [0, E) are skipped.
Value countAssignments(IB &b, Value indices, RankedTensorType countsType,
                       Value experts);
/// `value` ([..], f32) narrowed elementwise to `type`'s element type
/// (returned as is when that is f32); `sizes` are its extents.
Value narrowTo(IB &b, Value value, RankedTensorType type,
               ArrayRef<Value> sizes);

/// The best of `count` candidates, scored by `scoreOf` and restricted to
/// `eligible` ones when given, among those that rank after (prevScore,
/// prevIndex) in the routing order (higher score, then lower index): its
/// (score, index), index `count` when none qualifies (NaN scores never do).
/// Top-k is k such passes, starting after (+inf, -1).
std::pair<Value, Value>
nextRanked(IB &b, Value count, Value prevScore, Value prevIndex,
           llvm::function_ref<Value(IB &, Value)> scoreOf,
           llvm::function_ref<Value(IB &, Value)> eligible = nullptr);

/// Row-wise softmax of `logits` ([T, E], any float type) in f32:
/// exp(x - max) / sum(exp(x - max)).
Value softmaxF32(IB &b, Value logits);
/// Row-wise max and sum(exp(x - max)) of `logits` in f32 ([T] each).
std::pair<Value, Value> maxAndSumExp(IB &b, Value logits);

} // namespace moec::lowering

#endif // MOEC_PASSES_MOELOWERING_LOWERING_H
