//===- RoutingKernel.cpp - token_choice + dispatch as one GPU kernel ------===//
//
// On GPU targets (`device-kernels`), a dropless `moe.dispatch` of the
// indices and weights of a `moe.token_choice` (softmax or sigmoid scores,
// optional bias, normalize, scaling_factor; one group) becomes a single
// kernel launch instead of many small generic kernels and single-thread
// loops. It computes exactly what lowerTokenChoice and lowerDispatch specify
// (f32 routing, the same order of operations, ties to the lower expert,
// rows of an expert in increasing token order) and writes all six results.
//
// One block of kThreads threads, so that barriers order every phase and no
// grid-wide synchronisation is needed:
//
// 1. Thread i routes tokens i, i + kThreads, ...: probabilities over the E
//    experts, top-k by k selection passes, weights; it counts each pick in
//    a shared-memory histogram (atomic add).
// 2. Thread 0 turns the counts into offsets (exclusive prefix sum); the
//    shared counts become every expert's first row. Rows past offsets[E]
//    (only when a NaN score leaves a pick without an expert) are padding.
// 3. Stable placement, kThreads tokens per step, token t on thread t mod
//    kThreads (the thread that routed it). Each thread sets its lane's bit
//    in the mask word of (expert, warp) for each of its picks (atomic or),
//    so after a barrier a pick's row is the expert's first row of the step
//    + the mask bits of the earlier warps + the bits of the lower lanes of
//    its own warp. The k picks of a token are distinct experts, so one bit
//    per token and expert suffices. Then each expert's first row advances
//    by its mask's bit count and the masks are cleared.
//
// Every barrier is reached by all threads: the loops around them have the
// same trip count on every thread and no barrier sits in an scf.if.
//
//===----------------------------------------------------------------------===//

#include "passes/MoELowering/DeviceKernel.h"
#include "passes/MoELowering/Lowering.h"
#include "passes/NNLowering/Builders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/bit.h"
#include "llvm/Support/FormatVariadic.h"

#include <limits>

using namespace mlir;
using arith::CmpIPredicate;

namespace moec::lowering {

namespace {

constexpr int64_t kThreads = 1024;
constexpr int64_t kWarpSize = 32;
constexpr int64_t kWarps = kThreads / kWarpSize;
/// The placement masks take E * kWarps * 4 bytes of shared memory (32 KiB at
/// 256 experts), within the 48 KiB of static shared memory of a block.
constexpr int64_t kMaxExperts = 256;

Value load(IB &b, Value memref, ValueRange indices) {
  return memref::LoadOp::create(b, memref, indices);
}
void store(IB &b, Value value, Value memref, ValueRange indices) {
  memref::StoreOp::create(b, value, memref, indices);
}
SmallVector<Value> none(IB &) { return {}; }

/// for (i = first; i < end; i += kThreads) body(i).
void forEachStrided(IB &b, Value first, Value end,
                    llvm::function_ref<void(IB &, Value)> body) {
  scf::ForOp::create(b, first, end, cIdx(b, kThreads), ValueRange(),
                     [&](OpBuilder &nested, Location loc, Value i, ValueRange) {
                       IB ib(loc, nested);
                       body(ib, i);
                       scf::YieldOp::create(ib);
                     });
}

/// The kernel's configuration (everything its body depends on) and, while
/// the body is built, its arguments and shared buffers.
struct RoutingKernel {
  moe::ScoreFunction score;
  int64_t experts, k;
  bool normalize;
  float scaling;
  Type element;
  bool hasBias;

  // Inputs: logits [T, E], bias [E]; results: weights [T, k], indices [T, k],
  // probs [T, E], row_token [R], row_weight [R], offsets [E + 1], and with
  // f16 / bf16 logits the f32 probabilities [T, E] that selection and
  // weights read.
  Value logits, bias, weights, indices, probs, rowToken, rowWeight, offsets,
      probsF32;
  // Shared: counts [E + 1] (then each expert's next row, and the row total),
  // masks [E, kWarps].
  Value counts, masks;

  std::string name() const;
  void build(IB &b, gpu::GPUFuncOp kernel);
  void routeToken(IB &b, Value t);
  void writeOffsets(IB &b);
  void markPicks(IB &b, Value t, Value warp, Value laneBit);
  void placePicks(IB &b, Value t, Value warp, Value lanesBelow);
  void advanceRows(IB &b, Value tid);
  /// Calls `body` with each pick of token t whose expert lies in [0, E).
  void forEachPick(IB &b, Value t,
                   llvm::function_ref<void(IB &, Value j, Value e)> body);
  Value bitsOf(IB &b, Value e, Value warp);
};

std::string RoutingKernel::name() const {
  std::string typeName;
  llvm::raw_string_ostream os(typeName);
  os << element;
  return llvm::formatv("moe_routing_{0}_e{1}_k{2}{3}{4}_x{5}_{6}",
                       moe::stringifyScoreFunction(score), experts, k,
                       normalize ? "_norm" : "", hasBias ? "_bias" : "",
                       llvm::utohexstr(llvm::bit_cast<uint32_t>(scaling)),
                       typeName)
      .str();
}

void RoutingKernel::build(IB &b, gpu::GPUFuncOp kernel) {
  ValueRange args = kernel.getArguments();
  logits = args[0];
  if (hasBias)
    bias = args[1];
  args = args.drop_front(hasBias ? 2 : 1);
  weights = args[0], indices = args[1], probs = args[2], rowToken = args[3],
  rowWeight = args[4], offsets = args[5];
  probsF32 = element.isF32() ? probs : args[6];
  counts = kernel.getWorkgroupAttributions()[0];
  masks = kernel.getWorkgroupAttributions()[1];

  Value zero = cIdx(b, 0), numExperts = cIdx(b, experts);
  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value tokens = memref::DimOp::create(b, logits, 0);
  Value rows = memref::DimOp::create(b, rowToken, 0);

  forEachStrided(b, tid, cIdx(b, experts + 1),
                 [&](IB &nb, Value e) { store(nb, cI32(nb, 0), counts, {e}); });
  forEachStrided(b, tid, numExperts, [&](IB &nb, Value e) {
    forLoop(nb, zero, cIdx(nb, kWarps), {}, [&](IB &wb, Value w, ValueRange) {
      store(wb, cI32(wb, 0), masks, {e, w});
      return SmallVector<Value>();
    });
  });
  gpu::BarrierOp::create(b);

  forEachStrided(b, tid, tokens, [&](IB &nb, Value t) { routeToken(nb, t); });
  gpu::BarrierOp::create(b);

  ifElse(
      b, cmpI(b, CmpIPredicate::eq, tid, zero),
      [&](IB &nb) {
        writeOffsets(nb);
        return SmallVector<Value>();
      },
      none);
  gpu::BarrierOp::create(b);

  Value used = toIndex(b, load(b, counts, {numExperts}));
  forEachStrided(b, addI(b, used, tid), rows, [&](IB &nb, Value r) {
    store(nb, cI32(nb, -1), rowToken, {r});
    store(nb, cFloat(nb, element, 0.0), rowWeight, {r});
  });

  Value warpSize = cIdx(b, kWarpSize);
  Value warp = arith::DivUIOp::create(b, tid, warpSize);
  Value lane =
      toInt(b, arith::RemUIOp::create(b, tid, warpSize), b.getI32Type());
  Value laneBit = arith::ShLIOp::create(b, cI32(b, 1), lane);
  Value lanesBelow = subI(b, laneBit, cI32(b, 1));
  Value steps = arith::CeilDivUIOp::create(b, tokens, cIdx(b, kThreads));
  forLoop(b, zero, steps, {}, [&](IB &sb, Value step, ValueRange) {
    Value t = addI(sb, mulI(sb, step, cIdx(sb, kThreads)), tid);
    Value active = cmpI(sb, CmpIPredicate::ult, t, tokens);
    ifElse(
        sb, active,
        [&](IB &nb) {
          markPicks(nb, t, warp, laneBit);
          return SmallVector<Value>();
        },
        none);
    gpu::BarrierOp::create(sb);
    ifElse(
        sb, active,
        [&](IB &nb) {
          placePicks(nb, t, warp, lanesBelow);
          return SmallVector<Value>();
        },
        none);
    gpu::BarrierOp::create(sb);
    advanceRows(sb, tid);
    gpu::BarrierOp::create(sb);
    return SmallVector<Value>();
  });
}

void RoutingKernel::routeToken(IB &b, Value t) {
  Value zero = cIdx(b, 0), numExperts = cIdx(b, experts);
  auto logit = [&](IB &nb, Value e) {
    return toF32(nb, load(nb, logits, {t, e}));
  };
  auto storeProb = [&](IB &nb, Value e, Value p) {
    store(nb, fromF32(nb, p, element), probs, {t, e});
    if (probsF32 != probs)
      store(nb, p, probsF32, {t, e});
  };
  // Probabilities, in the operation order of softmaxF32 / sigmoid.
  if (score == moe::ScoreFunction::softmax) {
    Value max = forLoop1(b, zero, numExperts,
                         cF32(b, -std::numeric_limits<float>::infinity()),
                         [&](IB &nb, Value e, ValueRange it) {
                           return SmallVector<Value>{arith::MaximumFOp::create(
                               nb, logit(nb, e), it[0])};
                         });
    auto shiftedExp = [&](IB &nb, Value e) -> Value {
      return math::ExpOp::create(nb,
                                 arith::SubFOp::create(nb, logit(nb, e), max));
    };
    Value sum = forLoop1(
        b, zero, numExperts, cF32(b, 0.0), [&](IB &nb, Value e, ValueRange it) {
          return SmallVector<Value>{
              arith::AddFOp::create(nb, it[0], shiftedExp(nb, e))};
        });
    forLoop(b, zero, numExperts, {}, [&](IB &nb, Value e, ValueRange) {
      storeProb(nb, e, arith::DivFOp::create(nb, shiftedExp(nb, e), sum));
      return SmallVector<Value>();
    });
  } else {
    forLoop(b, zero, numExperts, {}, [&](IB &nb, Value e, ValueRange) {
      storeProb(nb, e, sigmoid(nb, logit(nb, e)));
      return SmallVector<Value>();
    });
  }

  auto prob = [&](IB &nb, Value e) { return load(nb, probsF32, {t, e}); };
  auto selection = [&](IB &nb, Value e) -> Value {
    Value p = prob(nb, e);
    if (!bias)
      return p;
    return arith::AddFOp::create(nb, p, toF32(nb, load(nb, bias, {e})));
  };
  // Top-k; each pick is counted and its probability summed, best first.
  Value inf = cF32(b, std::numeric_limits<float>::infinity());
  Value sum =
      forLoop(b, zero, cIdx(b, k), {inf, cIdx(b, -1), cF32(b, 0.0)},
              [&](IB &jb, Value j, ValueRange prev) {
                auto [best, pick] =
                    nextRanked(jb, numExperts, prev[0], prev[1], selection);
                store(jb, toInt(jb, pick, jb.getI32Type()), indices, {t, j});
                // Only NaN scores leave no expert (pick = E).
                Value found = cmpI(jb, CmpIPredicate::ult, pick, numExperts);
                ifElse(
                    jb, found,
                    [&](IB &nb) {
                      memref::AtomicRMWOp::create(
                          nb, arith::AtomicRMWKind::addi, cI32(nb, 1), counts,
                          ValueRange{pick});
                      return SmallVector<Value>();
                    },
                    none);
                Value p = prob(jb, select(jb, found, pick, zero));
                return SmallVector<Value>{
                    best, pick, arith::AddFOp::create(jb, prev[2], p)};
              })
          .back();
  forLoop(b, zero, cIdx(b, k), {}, [&](IB &jb, Value j, ValueRange) {
    Value e = toIndex(jb, load(jb, indices, {t, j}));
    Value safe =
        select(jb, cmpI(jb, CmpIPredicate::ult, e, numExperts), e, zero);
    Value w = prob(jb, safe);
    if (normalize)
      w = arith::DivFOp::create(jb, w, sum);
    if (scaling != 1.0f)
      w = arith::MulFOp::create(jb, w, cF32(jb, scaling));
    store(jb, fromF32(jb, w, element), weights, {t, j});
    return SmallVector<Value>();
  });
}

void RoutingKernel::writeOffsets(IB &b) {
  Value zero = cIdx(b, 0), one = cIdx(b, 1), numExperts = cIdx(b, experts);
  store(b, cI32(b, 0), offsets, {zero});
  Value total = forLoop1(b, zero, numExperts, cI32(b, 0),
                         [&](IB &nb, Value e, ValueRange it) {
                           Value next = addI(nb, it[0], load(nb, counts, {e}));
                           store(nb, it[0], counts, {e});
                           store(nb, next, offsets, {addI(nb, e, one)});
                           return SmallVector<Value>{next};
                         });
  store(b, total, counts, {numExperts});
}

void RoutingKernel::forEachPick(
    IB &b, Value t, llvm::function_ref<void(IB &, Value, Value)> body) {
  forLoop(b, cIdx(b, 0), cIdx(b, k), {}, [&](IB &jb, Value j, ValueRange) {
    Value e = toIndex(jb, load(jb, indices, {t, j}));
    ifElse(
        jb, inRange(jb, e, cIdx(jb, experts)),
        [&](IB &nb) {
          body(nb, j, e);
          return SmallVector<Value>();
        },
        none);
    return SmallVector<Value>();
  });
}

Value RoutingKernel::bitsOf(IB &b, Value e, Value warp) {
  return load(b, masks, {e, warp});
}

void RoutingKernel::markPicks(IB &b, Value t, Value warp, Value laneBit) {
  forEachPick(b, t, [&](IB &nb, Value, Value e) {
    memref::AtomicRMWOp::create(nb, arith::AtomicRMWKind::ori, laneBit, masks,
                                ValueRange{e, warp});
  });
}

void RoutingKernel::placePicks(IB &b, Value t, Value warp, Value lanesBelow) {
  forEachPick(b, t, [&](IB &nb, Value j, Value e) {
    Value earlierWarps =
        forLoop1(nb, cIdx(nb, 0), warp, cI32(nb, 0),
                 [&](IB &wb, Value w, ValueRange it) {
                   return SmallVector<Value>{addI(
                       wb, it[0], math::CtPopOp::create(wb, bitsOf(wb, e, w)))};
                 });
    Value lowerLanes =
        math::CtPopOp::create(nb, andI(nb, bitsOf(nb, e, warp), lanesBelow));
    Value row =
        addI(nb, load(nb, counts, {e}), addI(nb, earlierWarps, lowerLanes));
    Value r = toIndex(nb, row);
    store(nb, toInt(nb, t, nb.getI32Type()), rowToken, {r});
    store(nb, load(nb, weights, {t, j}), rowWeight, {r});
  });
}

void RoutingKernel::advanceRows(IB &b, Value tid) {
  forEachStrided(b, tid, cIdx(b, experts), [&](IB &nb, Value e) {
    Value placed = forLoop1(nb, cIdx(nb, 0), cIdx(nb, kWarps), cI32(nb, 0),
                            [&](IB &wb, Value w, ValueRange it) {
                              Value bits = bitsOf(wb, e, w);
                              store(wb, cI32(wb, 0), masks, {e, w});
                              return SmallVector<Value>{addI(
                                  wb, it[0], math::CtPopOp::create(wb, bits))};
                            });
    store(nb, addI(nb, load(nb, counts, {e}), placed), counts, {e});
  });
}

} // namespace

bool fitsRoutingKernel(moe::TokenChoiceOp routing, moe::DispatchOp dispatch) {
  int64_t experts = routing.getLogits().getType().getDimSize(1);
  int64_t dispatchExperts = dispatch.getNumExperts(), k = routing.getK();
  return dispatch.getIndices() == routing.getIndices() &&
         dispatch.getWeights() == routing.getWeights() &&
         !dispatch.getCapacityFactor() &&
         (routing.getScore() == moe::ScoreFunction::softmax ||
          routing.getScore() == moe::ScoreFunction::sigmoid) &&
         routing.getNumGroups() == 1 && !ShapedType::isDynamic(experts) &&
         experts == dispatchExperts && experts <= kMaxExperts && k <= experts;
}

SmallVector<Value> lowerRoutingKernel(IB &b, moe::TokenChoiceOp routing,
                                      moe::DispatchOp dispatch) {
  Value logits = routing.getLogits();
  RankedTensorType logitsType = routing.getLogits().getType();
  Type element = logitsType.getElementType();
  Type i32 = b.getI32Type();
  int64_t experts = logitsType.getDimSize(1), k = routing.getK();
  constexpr int64_t dyn = ShapedType::kDynamic;

  RoutingKernel config{routing.getScore(),
                       experts,
                       k,
                       routing.getNormalize(),
                       routing.getScalingFactor().convertToFloat(),
                       element,
                       static_cast<bool>(routing.getBias())};

  // The kernel takes any token count: static extents are cast away.
  auto byTokens = RankedTensorType::get({dyn, experts}, element);
  SmallVector<Value> inputs = {
      nnlowering::castToType(b, b.getLoc(), logits, byTokens)};
  SmallVector<RankedTensorType> inputTypes = {byTokens};
  if (Value bias = routing.getBias()) {
    inputs.push_back(bias);
    inputTypes.push_back(cast<RankedTensorType>(bias.getType()));
  }
  Value tokens = dim(b, logits, 0), kk = cIdx(b, k),
        numExperts = cIdx(b, experts);
  RankedTensorType rowTokenType = dispatch.getRowToken().getType();
  Value rows = rowTokenType.isDynamicDim(0)
                   ? mulI(b, tokens, kk)
                   : cIdx(b, rowTokenType.getDimSize(0));
  SmallVector<RankedTensorType> resultTypes = {
      RankedTensorType::get({dyn, k}, element),
      RankedTensorType::get({dyn, k}, i32),
      byTokens,
      RankedTensorType::get({dyn}, i32),
      RankedTensorType::get({dyn}, element),
      RankedTensorType::get({experts + 1}, i32)};
  SmallVector<SmallVector<Value>> resultSizes = {
      {tokens, kk}, {tokens, kk}, {tokens, numExperts},
      {rows},       {rows},       {cIdx(b, experts + 1)}};
  if (!element.isF32()) {
    resultTypes.push_back(withElement(byTokens, b.getF32Type()));
    resultSizes.push_back({tokens, numExperts});
  }

  SmallVector<MemRefType> shared = {sharedMemRef({experts + 1}, i32),
                                    sharedMemRef({experts, kWarps}, i32)};
  gpu::GPUFuncOp kernel =
      getOrBuildKernel(b, config.name(), TypeRange(), inputTypes, resultTypes,
                       shared, [&](IB &body, gpu::GPUFuncOp built) {
                         built.setKnownBlockSizeAttr(
                             body.getDenseI32ArrayAttr({kThreads, 1, 1}));
                         config.build(body, built);
                       });
  Value one = cIdx(b, 1);
  SmallVector<Value> results =
      launchKernel(b, kernel, {one, one, one}, {cIdx(b, kThreads), one, one},
                   ValueRange(), inputs, resultTypes, resultSizes);
  // Back to the ops' result types (static extents where they have them):
  // routing's weights, indices, probs, then dispatch's row_token,
  // row_weight, offsets.
  SmallVector<Type> types(routing->getResultTypes());
  llvm::append_range(types, dispatch->getResultTypes());
  SmallVector<Value> replacements;
  // The f32 probabilities of f16 / bf16 logits are scratch.
  for (auto [value, type] :
       llvm::zip_equal(ArrayRef(results).take_front(types.size()), types))
    replacements.push_back(nnlowering::castToType(b, b.getLoc(), value, type));
  return replacements;
}

} // namespace moec::lowering
