//===- ConvertMoEToLinalg.cpp - moe ops -> linalg, tensor, scf, arith, math ===//
//
// Lowers every fine-grained `moe` op to upstream dialects on tensors. The
// per-op code lives in passes/MoELowering/ (Routing.cpp: gate,
// token_choice, expert_choice, dispatch; Experts.cpp: permute, expert_ffn,
// combine, shared_expert; Metrics.cpp: load_balancing_loss, z_loss,
// routing_stats; Gradients.cpp: the backward ops `moe.*_grad`; Emit.h:
// IR-building helpers). A `moe.layer` left over is an
// error: run `moe-decompose-layer` first.
//
// Design
// ------
// Everything stays on tensors, so one-shot bufferization handles the result
// like any other tensor program and later phases can tile / vectorise the
// dense parts. There are no private helper functions and no memrefs.
//
// * Dense parts are linalg: `moe.gate` is a `linalg.matmul` (+ a bias
//   generic), `moe.shared_expert` two or three matmuls around an activation
//   generic, `moe.permute` a `linalg.generic` over [R, D] that gathers with
//   `tensor.extract` (0 for token -1), softmax / sigmoid / column sums /
//   row maxima are generics.
// * `moe.expert_ffn` is an `scf.for` over experts whose body reads
//   offsets[e], offsets[e+1], extracts the expert's dynamic row segment
//   (`tensor.extract_slice` [n, D]) and the expert's weights (rank-reducing
//   slices [D, F], [F, D_out]), runs the matmuls + activation on it and
//   `tensor.insert_slice`s the rows into a zero-filled result (rows past
//   offsets[E] stay zero).
// * Control-heavy parts are `scf.for` / `scf.if` loops carrying tensors as
//   iter_args, reading with `tensor.extract` and writing with
//   `tensor.insert` (in place after bufferization: every write goes to the
//   latest value of the iter_arg and no older value is read after it).
//
// Shaped for one-shot bufferization and the moec pipeline:
// * Loops carry only the tensors they produce; scratch tensors (sort
//   buffers) are created inside the loop body that uses them. CSE merges
//   identical tensor.empty ops, and one empty tensor feeding several
//   iter_args of one loop makes the analysis order-dependent (it may then
//   reject the loop: "Yield operand is not equivalent to the corresponding
//   iter bbArg").
// * Results written into a slice of a larger tensor are produced directly in
//   that slice (the last op of an expert's FFN has the
//   `tensor.extract_slice` of the result as its init, and reads it, since
//   elementwise fusion swaps an unread init for a fresh tensor.empty), so
//   the `tensor.insert_slice` bufferizes in place: a copy into a strided
//   subview would lower to a call to `memrefCopy`, which model.so lacks.
// * `moe.combine` updates its accumulator in place. An init that is not the
//   result of a linalg op (a function argument, a cast) is first copied
//   with `linalg.copy` (an identity generic would be canonicalised away):
//   moec bufferizes function arguments as writable, and updating one in
//   place would overwrite the caller's buffer and return a view of it.
//
// Numerics: routing is computed in f32 (f16 / bf16 operands are extended
// first); matmuls accumulate in f32 (linalg.matmul with f16/bf16 operands
// and an f32 accumulator) and activations run in f32; results are narrowed
// to the op's element type at the end. `moe.combine` accumulates in f32 in
// row order (a copy of `init` for f16 / bf16).
//
// Routing algorithms (the spec, and test/reference/moe_reference.py where the
// spec is silent):
// * token_choice: probs = softmax (exp(x - max) / sum) or sigmoid
//   (1 / (1 + exp(-x))); selection = probs + bias. Groups are contiguous
//   ranges of E / G experts; a group's score is the f32 sum of its two best
//   selection scores (the best alone when E / G == 1). Top-k without a sort
//   or scratch buffer: pick j is the best candidate (higher score, then lower
//   index) among those ranked after pick j-1 in that total order; k passes
//   over E per token. The topk_groups best groups are found the same way
//   (ties to the lower group); an expert is eligible when its group ranks at
//   or before the topk_groups-th. weights = probs[indices], divided by their
//   f32 sum (accumulated best first) with `normalize`, then times
//   scaling_factor (skipped when 1).
// * expert_choice: C = min(T, ceil((cf * T) / E)) (MoEUtils.h, folded when T
//   and E are static, else the same f64 formula in IR). Per expert, the
//   tokens are sorted by decreasing probs[:, e] with a stable LSD radix sort
//   (four 8-bit passes on an order-preserving i32 key; -0 == +0) so ties go
//   to the lower token; the first C are tagged in a [T] mark tensor and then
//   emitted in increasing token order. O(E * T) with [T] scratch reused
//   across experts.
// * dispatch: with a capacity, assignments are visited in priority order
//   (choice rank j outer; tokens in order, or with batch_prioritized in the
//   stable radix-sorted order of decreasing weights[t, 0]); an expert keeps
//   an assignment while it holds fewer than C, recorded in an i8 [T, k]
//   mask. Counts -> exclusive prefix sum = offsets; then tokens in order
//   (choice rank inner) write row_token / row_weight at their expert's next
//   free row. R is the static result extent or min(T * k, E * C) computed
//   exactly as in MoEUtils.h (C saturates to INT64_MAX at >= 2^63). Padding
//   rows are -1 / 0.
// * Robustness: expert indices outside [0, E) and tokens outside [0, T)
//   (undefined by the spec) are skipped / read as zero rather than read or
//   written out of bounds; offsets are clamped to [0, R] in expert_ffn.
// * load_balancing_loss = E * sum_e (count_e / (T k)) * (colsum_e / T), 0
//   when T or T k is 0; z_loss = mean_t (max_t + log sum exp(x - max_t))^2,
//   0 when T is 0.
// * Activations: gelu / geglu use the exact x * 0.5 * (1 + erf(x / sqrt 2));
//   math.erf has no LLVM lowering, so the pass expands the erf ops it
//   created with upstream's polynomial approximation
//   (populatePolynomialApproximateErfPattern, ~1e-7 absolute error).
//   gelu_tanh uses math.tanh (llvm.intr.tanh -> libm).
//
// Jitter (moe.gate with jitter_eps > 0 and a seed)
// -----------------------------------------------
// For input element (t, d) of x [T, D], with i = t * D + d and all integer
// arithmetic on uint64 wrapping modulo 2^64 (the i64 seed taken as its bit
// pattern):
//
//   z = seed + i * 0x9E3779B97F4A7C15
//   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//   z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//   z =  z ^ (z >> 31)                          (splitmix64's finaliser)
//   U = float32(z >> 40) * 2^-24                (exact; U in [0, 1))
//   u = 1 + eps * (2 * U - 1)                   (float32 ops in this order)
//
// and the logits are (float32(x) * u) @ W (+ bias). NumPy reproduces it with
// uint64 arrays (see test/e2e/test_moe_ops.py, jitter_multipliers).
//
//===----------------------------------------------------------------------===//

#include "passes/MoELowering/DeviceKernel.h"
#include "passes/MoELowering/Lowering.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/TypeSwitch.h"

namespace moec {
#define GEN_PASS_DEF_CONVERTMOETOLINALG
#include "passes/Passes.h.inc"
} // namespace moec

using namespace mlir;
using namespace moec::lowering;

namespace {

/// How the target wants some ops lowered (the pass options).
struct TargetChoices {
  bool expertRows = false;
  bool deviceKernels = false;
};

/// Lowers one fine-grained op; returns its replacement values.
SmallVector<Value> lowerOp(IB &b, Operation *op, TargetChoices target) {
  return llvm::TypeSwitch<Operation *, SmallVector<Value>>(op)
      .Case([&](moec::moe::GateOp o) { return lowerGate(b, o); })
      .Case([&](moec::moe::TokenChoiceOp o) { return lowerTokenChoice(b, o); })
      .Case(
          [&](moec::moe::ExpertChoiceOp o) { return lowerExpertChoice(b, o); })
      .Case([&](moec::moe::DispatchOp o) { return lowerDispatch(b, o); })
      .Case([&](moec::moe::PermuteOp o) { return lowerPermute(b, o); })
      .Case([&](moec::moe::ExpertFFNOp o) {
        return target.expertRows
                   ? lowerExpertFFNByRows(b, o, target.deviceKernels)
                   : lowerExpertFFN(b, o);
      })
      .Case([&](moec::moe::CombineOp o) {
        return target.deviceKernels ? lowerCombineOnDevice(b, o)
                                    : lowerCombine(b, o);
      })
      .Case(
          [&](moec::moe::SharedExpertOp o) { return lowerSharedExpert(b, o); })
      .Case([&](moec::moe::LoadBalancingLossOp o) {
        return lowerLoadBalancingLoss(b, o);
      })
      .Case([&](moec::moe::ZLossOp o) { return lowerZLoss(b, o); })
      .Case(
          [&](moec::moe::RoutingStatsOp o) { return lowerRoutingStats(b, o); })
      .Case([&](moec::moe::GateGradOp o) { return lowerGateGrad(b, o); })
      .Case([&](moec::moe::TokenChoiceGradOp o) {
        return lowerTokenChoiceGrad(b, o);
      })
      .Case([&](moec::moe::ExpertChoiceGradOp o) {
        return lowerExpertChoiceGrad(b, o);
      })
      .Case(
          [&](moec::moe::DispatchGradOp o) { return lowerDispatchGrad(b, o); })
      .Case([&](moec::moe::ExpertFFNGradOp o) {
        return target.expertRows
                   ? lowerExpertFFNGradByRows(b, o, target.deviceKernels)
                   : lowerExpertFFNGrad(b, o);
      })
      .Case([&](moec::moe::CombineGradOp o) { return lowerCombineGrad(b, o); })
      .Case([&](moec::moe::SharedExpertGradOp o) {
        return lowerSharedExpertGrad(b, o);
      })
      .Case([&](moec::moe::LoadBalancingLossGradOp o) {
        return lowerLoadBalancingLossGrad(b, o);
      })
      .Case([&](moec::moe::ZLossGradOp o) { return lowerZLossGrad(b, o); })
      .Default([](Operation *) { return SmallVector<Value>(); });
}

/// Replaces each eligible moe.token_choice and the first dropless
/// moe.dispatch of its picks with one fused routing kernel; the routing
/// results stay available to their other users (losses, metrics, the
/// backward pass).
void fuseRouting(ModuleOp module, IRRewriter &rewriter) {
  SmallVector<std::pair<moec::moe::TokenChoiceOp, moec::moe::DispatchOp>> pairs;
  module.walk([&](moec::moe::TokenChoiceOp routing) {
    for (Operation *user : routing.getIndices().getUsers()) {
      auto dispatch = dyn_cast<moec::moe::DispatchOp>(user);
      if (dispatch && fitsRoutingKernel(routing, dispatch)) {
        pairs.emplace_back(routing, dispatch);
        return;
      }
    }
  });
  for (auto [routing, dispatch] : pairs) {
    rewriter.setInsertionPoint(routing);
    IB b(routing.getLoc(), rewriter);
    SmallVector<Value> results = lowerRoutingKernel(b, routing, dispatch);
    rewriter.replaceOp(dispatch, ArrayRef(results).drop_front(3));
    rewriter.replaceOp(routing, ArrayRef(results).take_front(3));
  }
}

struct ConvertMoEToLinalg
    : moec::impl::ConvertMoEToLinalgBase<ConvertMoEToLinalg> {
  using ConvertMoEToLinalgBase::ConvertMoEToLinalgBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *context = &getContext();

    bool layerLeft = false;
    module.walk([&](moec::moe::LayerOp layer) {
      layer.emitOpError()
          << "must be decomposed before lowering; run -moe-decompose-layer "
             "before -convert-moe-to-linalg";
      layerLeft = true;
    });
    if (layerLeft)
      return signalPassFailure();

    IRRewriter rewriter(context);
    if (deviceKernels)
      fuseRouting(module, rewriter);

    SmallVector<Operation *> ops;
    module.walk([&](Operation *op) {
      if (isa_and_nonnull<moec::moe::MoEDialect>(op->getDialect()))
        ops.push_back(op);
    });

    for (Operation *op : ops) {
      rewriter.setInsertionPoint(op);
      IB b(op->getLoc(), rewriter);
      SmallVector<Value> replacements =
          lowerOp(b, op, {expertRows, deviceKernels});
      if (replacements.size() != op->getNumResults()) {
        op->emitOpError() << "has no lowering to linalg";
        return signalPassFailure();
      }
      for (auto [from, to] : llvm::zip(op->getResults(), replacements))
        if (from.getType() != to.getType()) {
          op->emitOpError() << "internal error: lowering produced " << to.getType()
                            << " for a result of type " << from.getType();
          return signalPassFailure();
        }
      rewriter.replaceOp(op, replacements);
    }

    // Expand the erf ops the lowering created (math.erf has no LLVM
    // lowering); other erf ops in the module are left alone.
    SmallVector<Operation *> erfs;
    module.walk([&](math::ErfOp erf) {
      if (erf->removeAttr(kExpandErfAttr))
        erfs.push_back(erf);
    });
    if (!erfs.empty()) {
      RewritePatternSet patterns(context);
      populatePolynomialApproximateErfPattern(patterns);
      GreedyRewriteConfig config;
      config.setStrictness(GreedyRewriteStrictness::ExistingOps);
      if (failed(applyOpPatternsGreedily(erfs, std::move(patterns), config)))
        return signalPassFailure();
    }
  }
};

} // namespace
