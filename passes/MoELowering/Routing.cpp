//===- Routing.cpp - gate, token_choice, expert_choice, dispatch ----------===//
//
// See passes/ConvertMoEToLinalg.cpp for the design and the jitter formula.
//
//===----------------------------------------------------------------------===//

#include "passes/MoELowering/Lowering.h"

#include "dialects/MoE/MoEUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <limits>

using namespace mlir;
using arith::CmpFPredicate;
using arith::CmpIPredicate;

namespace moec::lowering {

namespace {

using utils::IteratorType;
constexpr IteratorType kPar = IteratorType::parallel;
constexpr IteratorType kRed = IteratorType::reduction;

//===----------------------------------------------------------------------===//
// Capacity
//===----------------------------------------------------------------------===//

/// MoEUtils.h tokenChoiceCapacity evaluated at run time (index result):
/// ceil(((factor * T) * k) / E) in f64, INT64_MAX when not below 2^63.
Value capacityAtRuntime(IB &b, double factor, Value tokens, Value k,
                        Value experts) {
  Value slots = arith::MulFOp::create(b, cF64(b, factor),
                                      indexToF64(b, tokens));
  slots = arith::MulFOp::create(b, slots, indexToF64(b, k));
  slots = arith::DivFOp::create(b, slots, indexToF64(b, experts));
  Value fits = cmpF(b, CmpFPredicate::OLT, slots, cF64(b, 0x1p63));
  Value ceil = arith::FPToSIOp::create(b, b.getI64Type(),
                                       math::CeilOp::create(b, slots));
  Value capacity =
      select(b, fits, ceil, cI64(b, std::numeric_limits<int64_t>::max()));
  return toIndex(b, capacity);
}

/// The token-choice capacity C as an index, folded when T and k are static.
Value tokenChoiceCapacity(IB &b, double factor, Value tokens, Value k,
                          int64_t experts) {
  std::optional<int64_t> t = getConstantIntValue(tokens);
  std::optional<int64_t> kk = getConstantIntValue(k);
  if (t && kk)
    return cIdx(b, moe::tokenChoiceCapacity(factor, *t, *kk, experts));
  return capacityAtRuntime(b, factor, tokens, k, cIdx(b, experts));
}

//===----------------------------------------------------------------------===//
// Sorting
//===----------------------------------------------------------------------===//

/// An i32 key whose unsigned order is the decreasing order of the f32
/// `value` (-0 and +0 are equal, as in a float comparison).
Value descendingKey(IB &b, Value value) {
  Value zero = cF32(b, 0.0);
  value = select(b, cmpF(b, CmpFPredicate::OEQ, value, zero), zero, value);
  Value bits = arith::BitcastOp::create(b, b.getI32Type(), value);
  Value negative = cmpI(b, CmpIPredicate::slt, bits, cI32(b, 0));
  return select(b, negative, bits,
                arith::XOrIOp::create(b, bits, cI32(b, 0x7FFFFFFF)));
}

/// perm[i] = i for the [n] i32 tensor `perm`.
Value iota(IB &b, Value perm) {
  return generic(b, perm, {}, {projection(b, 1, {0})}, {kPar},
                 [&](IB &nb, ValueRange) {
                   return toInt(nb, loopIndex(nb, 0), nb.getI32Type());
                 });
}

/// Stable LSD radix sort (four 8-bit passes) of the i32 ids in `perm[0, n)`
/// by the unsigned i32 `keys[id]`. `scratch` is an [n] i32 tensor and
/// `histogram` a [256] i32 tensor, both overwritten. Returns the sorted perm
/// and the scratch tensors (in that order) so callers can reuse them.
std::array<Value, 3> radixSort(IB &b, Value perm, Value scratch, Value keys,
                               Value histogram, Value n) {
  Value zero = cIdx(b, 0);
  Value buffers[2] = {perm, scratch};
  for (int pass = 0; pass < 4; ++pass) {
    Value src = buffers[pass % 2], dst = buffers[1 - pass % 2];
    auto digitOf = [&](IB &nb, Value id) {
      Value key = extract(nb, keys, {toIndex(nb, id)});
      Value shifted =
          arith::ShRUIOp::create(nb, key, cI32(nb, 8 * pass));
      return toIndex(nb,
                     arith::AndIOp::create(nb, shifted, cI32(nb, 255)));
    };
    Value hist =
        linalg::FillOp::create(b, cI32(b, 0), histogram).getResult(0);
    hist = forLoop1(b, zero, n, hist, [&](IB &nb, Value i, ValueRange it) {
      Value digit = digitOf(nb, extract(nb, src, {i}));
      Value count = extract(nb, it[0], {digit});
      return SmallVector<Value>{
          insert(nb, addI(nb, count, cI32(nb, 1)), it[0], {digit})};
    });
    // Exclusive prefix sum: the first slot of every digit.
    hist = forLoop(b, zero, cIdx(b, 256), {hist, cI32(b, 0)},
                   [&](IB &nb, Value d, ValueRange it) {
                     Value count = extract(nb, it[0], {d});
                     return SmallVector<Value>{insert(nb, it[1], it[0], {d}),
                                               addI(nb, it[1], count)};
                   })
               .front();
    SmallVector<Value> out = forLoop(
        b, zero, n, {dst, hist}, [&](IB &nb, Value i, ValueRange it) {
          Value id = extract(nb, src, {i});
          Value digit = digitOf(nb, id);
          Value slot = extract(nb, it[1], {digit});
          Value next = insert(nb, addI(nb, slot, cI32(nb, 1)), it[1], {digit});
          return SmallVector<Value>{insert(nb, id, it[0], {toIndex(nb, slot)}),
                                    next};
        });
    buffers[1 - pass % 2] = out[0];
    histogram = out[1];
  }
  return {buffers[0], buffers[1], histogram};
}

/// The routing order ranks candidates by higher score, then lower index (a
/// total order on non-NaN scores). rankedAfter: (score, index) comes after
/// (prevScore, prevIndex); betterThan: it comes before (bestScore,
/// bestIndex).
Value rankedAfter(IB &b, Value score, Value index, Value prevScore,
                  Value prevIndex) {
  return orI(b, cmpF(b, CmpFPredicate::OLT, score, prevScore),
             andI(b, cmpF(b, CmpFPredicate::OEQ, score, prevScore),
                  cmpI(b, CmpIPredicate::sgt, index, prevIndex)));
}
Value betterThan(IB &b, Value score, Value index, Value bestScore,
                 Value bestIndex) {
  return orI(b, cmpF(b, CmpFPredicate::OGT, score, bestScore),
             andI(b, cmpF(b, CmpFPredicate::OEQ, score, bestScore),
                  cmpI(b, CmpIPredicate::slt, index, bestIndex)));
}

/// The `numPicks`-th best of `count` candidates scored by `scoreOf` in the
/// routing order, found by `numPicks` selection passes, each taking the
/// best candidate ranked after the previous pick. Returns (score, index);
/// the index is `count` when fewer candidates qualify (NaN scores never do).
std::pair<Value, Value>
selectRanked(IB &b, Value count, Value numPicks,
             llvm::function_ref<Value(IB &, Value)> scoreOf) {
  Value inf = cF32(b, std::numeric_limits<float>::infinity());
  SmallVector<Value> pick = forLoop(
      b, cIdx(b, 0), numPicks, {inf, cIdx(b, -1)},
      [&](IB &nb, Value, ValueRange prev) {
        auto [score, index] = nextRanked(nb, count, prev[0], prev[1], scoreOf);
        return SmallVector<Value>{score, index};
      });
  return {pick[0], pick[1]};
}

/// The SparseMixer weight of token t's pick j, expert `pick` (see
/// moe.token_choice), from the f32 `logits`: 1 / sum over the experts e
/// whose logit is within a relative 2 * eps of the pick's, m - x_e <=
/// 2 eps max(|x_e|, m), of exp(x_e - m); the second pick leaves out the
/// first (`indices[t, 0]`). The comparison is the negation of onnxruntime's
/// mask (m - x_e > 2 eps max(|x_e|, m)), in the same f32 arithmetic.
Value sparseMixerWeight(IB &b, Value logits, Value indices, Value t, Value j,
                        Value pick) {
  // Phi-3.5-MoE's router jitter, which onnxruntime's kernel hard-codes.
  constexpr float kEps = 0.01f;
  Value m = extract(b, logits, {t, pick});
  Value first = toIndex(b, extract(b, indices, {t, cIdx(b, 0)}));
  Value firstPick = cmpI(b, CmpIPredicate::eq, j, cIdx(b, 0));
  Value sum = forLoop1(
      b, cIdx(b, 0), dim(b, logits, 1), cF32(b, 0.0),
      [&](IB &sb, Value e, ValueRange it) {
        Value x = extract(sb, logits, {t, e});
        Value factor =
            arith::MaximumFOp::create(sb, math::AbsFOp::create(sb, x), m);
        Value gap = arith::SubFOp::create(sb, m, x);
        Value window =
            arith::MulFOp::create(sb, cF32(sb, 2.0f * kEps), factor);
        Value near = cmpF(sb, CmpFPredicate::ULE, gap, window);
        Value counted = andI(
            sb, near,
            orI(sb, firstPick, cmpI(sb, CmpIPredicate::ne, e, first)));
        Value term = math::ExpOp::create(sb, arith::SubFOp::create(sb, x, m));
        return SmallVector<Value>{
            select(sb, counted, arith::AddFOp::create(sb, it[0], term),
                   it[0])};
      });
  return arith::DivFOp::create(b, cF32(b, 1.0), sum);
}

} // namespace

//===----------------------------------------------------------------------===//
// Top-k
//===----------------------------------------------------------------------===//

std::pair<Value, Value>
nextRanked(IB &b, Value count, Value prevScore, Value prevIndex,
           llvm::function_ref<Value(IB &, Value)> scoreOf,
           llvm::function_ref<Value(IB &, Value)> eligible) {
  Value inf = cF32(b, std::numeric_limits<float>::infinity());
  SmallVector<Value> best = forLoop(
      b, cIdx(b, 0), count, {arith::NegFOp::create(b, inf), count},
      [&](IB &nb, Value i, ValueRange it) {
        Value score = scoreOf(nb, i);
        Value take = andI(nb, rankedAfter(nb, score, i, prevScore, prevIndex),
                          betterThan(nb, score, i, it[0], it[1]));
        if (eligible)
          take = andI(nb, take, eligible(nb, i));
        return SmallVector<Value>{select(nb, take, score, it[0]),
                                  select(nb, take, i, it[1])};
      });
  return {best[0], best[1]};
}

//===----------------------------------------------------------------------===//
// Jitter
//===----------------------------------------------------------------------===//

Value jitterMultiplier(IB &b, Value seed, Value flat, float eps) {
  Type i64 = b.getI64Type();
  auto c64 = [&](uint64_t v) {
    return cInt(b, i64, static_cast<int64_t>(v));
  };
  Value z = addI(b, seed, mulI(b, flat, c64(0x9E3779B97F4A7C15ULL)));
  auto xorShift = [&](Value v, int64_t shift) {
    return arith::XOrIOp::create(b, v,
                                 arith::ShRUIOp::create(b, v, c64(shift)));
  };
  z = mulI(b, xorShift(z, 30), c64(0xBF58476D1CE4E5B9ULL));
  z = mulI(b, xorShift(z, 27), c64(0x94D049BB133111EBULL));
  z = xorShift(z, 31);
  Value top24 = arith::ShRUIOp::create(b, z, c64(40));
  Value uniform = arith::MulFOp::create(
      b, arith::UIToFPOp::create(b, b.getF32Type(), top24),
      cF32(b, 1.0 / 16777216.0));
  Value centered = arith::SubFOp::create(
      b, arith::MulFOp::create(b, cF32(b, 2.0), uniform), cF32(b, 1.0));
  return arith::AddFOp::create(
      b, cF32(b, 1.0), arith::MulFOp::create(b, cF32(b, eps), centered));
}

//===----------------------------------------------------------------------===//
// Softmax
//===----------------------------------------------------------------------===//

std::pair<Value, Value> maxAndSumExp(IB &b, Value logits) {
  RankedTensorType type = tensorType(logits);
  Value tokens = dim(b, logits, 0);
  auto rowType = RankedTensorType::get({type.getDimSize(0)}, b.getF32Type());
  AffineMap id = projection(b, 2, {0, 1}), row = projection(b, 2, {0});
  Value max = generic(
      b,
      filled(b, rowType, {tokens},
             cF32(b, -std::numeric_limits<float>::infinity())),
      {logits}, {id, row}, {kPar, kRed}, [&](IB &nb, ValueRange args) {
        return arith::MaximumFOp::create(nb, toF32(nb, args[0]), args[1]);
      });
  Value sum = generic(b, filled(b, rowType, {tokens}, cF32(b, 0.0)),
                      {logits, max}, {id, row, row}, {kPar, kRed},
                      [&](IB &nb, ValueRange args) {
                        Value shifted = arith::SubFOp::create(
                            nb, toF32(nb, args[0]), args[1]);
                        return arith::AddFOp::create(
                            nb, args[2], math::ExpOp::create(nb, shifted));
                      });
  return {max, sum};
}

Value softmaxF32(IB &b, Value logits) {
  RankedTensorType type = tensorType(logits);
  auto [max, sum] = maxAndSumExp(b, logits);
  AffineMap id = projection(b, 2, {0, 1}), row = projection(b, 2, {0});
  Value init = empty(b, withElement(type, b.getF32Type()),
                     {dim(b, logits, 0), dim(b, logits, 1)});
  return generic(b, init, {logits, max, sum}, {id, row, row, id},
                 {kPar, kPar}, [&](IB &nb, ValueRange args) {
                   Value shifted = arith::SubFOp::create(
                       nb, toF32(nb, args[0]), args[1]);
                   return arith::DivFOp::create(
                       nb, math::ExpOp::create(nb, shifted), args[2]);
                 });
}

Value narrowTo(IB &b, Value value, RankedTensorType type,
                      ArrayRef<Value> sizes) {
  if (type.getElementType().isF32())
    return value;
  return elementwise(b, empty(b, type, sizes), {value},
                     [&](IB &nb, ValueRange args) {
                       return fromF32(nb, args[0], type.getElementType());
                     });
}

//===----------------------------------------------------------------------===//
// moe.gate
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerGate(IB &b, moe::GateOp op) {
  Value x = op.getInput(), weight = op.getWeight(), bias = op.getBias();
  RankedTensorType resultType = op.getLogits().getType();
  Type element = resultType.getElementType();
  Value tokens = dim(b, x, 0), features = dim(b, x, 1),
        experts = dim(b, weight, 1);

  Value lhs = x;
  float eps = op.getJitterEps().convertToFloat();
  if (eps > 0.0f && op.getSeed()) {
    Value seed = op.getSeed();
    Value init = empty(b, withElement(tensorType(x), b.getF32Type()),
                       {tokens, features});
    lhs = elementwise(b, init, {x}, [&](IB &nb, ValueRange args) {
      Value flat = addI(nb, mulI(nb, loopIndex(nb, 0), features),
                        loopIndex(nb, 1));
      Value u = jitterMultiplier(nb, seed, toInt(nb, flat, nb.getI64Type()),
                                 eps);
      return arith::MulFOp::create(nb, toF32(nb, args[0]), u);
    });
  }
  Value logits = matmulF32(b, lhs, weight, tokens, experts);
  if (!bias && element.isF32())
    return {logits};
  SmallVector<Value> inputs = {logits};
  SmallVector<AffineMap> maps = {projection(b, 2, {0, 1})};
  if (bias) {
    inputs.push_back(bias);
    maps.push_back(projection(b, 2, {1}));
  }
  maps.push_back(projection(b, 2, {0, 1}));
  return {generic(b, empty(b, resultType, {tokens, experts}), inputs, maps,
                  {kPar, kPar}, [&](IB &nb, ValueRange args) {
                    Value v = args[0];
                    if (bias)
                      v = arith::AddFOp::create(nb, v, toF32(nb, args[1]));
                    return fromF32(nb, v, element);
                  })};
}

//===----------------------------------------------------------------------===//
// moe.token_choice
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerTokenChoice(IB &b, moe::TokenChoiceOp op) {
  Value logits = op.getLogits(), bias = op.getBias();
  RankedTensorType logitsType = op.getLogits().getType();
  RankedTensorType weightsType = op.getWeights().getType();
  RankedTensorType indicesType = op.getIndices().getType();
  Type element = logitsType.getElementType();
  Type i32 = b.getI32Type();
  int64_t k = op.getK();
  int64_t numGroups = op.getNumGroups();
  int64_t topkGroups = numGroups > 1 ? op.getTopkGroups() : 1;
  float scaling = op.getScalingFactor().convertToFloat();
  bool normalize = op.getNormalize();
  Value zero = cIdx(b, 0);
  Value tokens = dim(b, logits, 0), experts = dim(b, logits, 1);
  Value kk = cIdx(b, k);
  RankedTensorType f32Type = withElement(logitsType, b.getF32Type());

  bool sparseMixer = op.getScore() == moe::ScoreFunction::sparse_mixer;

  // 1. Probabilities in f32 (softmax for sparse_mixer too).
  Value probs;
  if (op.getScore() == moe::ScoreFunction::sigmoid) {
    probs = elementwise(b, empty(b, f32Type, {tokens, experts}), {logits},
                        [&](IB &nb, ValueRange args) {
                          return sigmoid(nb, toF32(nb, args[0]));
                        });
  } else {
    probs = softmaxF32(b, logits);
  }

  // 2. Selection scores; SparseMixer ranks the logits themselves.
  Value selection = probs;
  if (sparseMixer)
    selection = element.isF32()
                    ? logits
                    : elementwise(b, empty(b, f32Type, {tokens, experts}),
                                  {logits}, [&](IB &nb, ValueRange args) {
                                    return toF32(nb, args[0]);
                                  });
  if (bias)
    selection = generic(
        b, empty(b, f32Type, {tokens, experts}), {probs, bias},
        {projection(b, 2, {0, 1}), projection(b, 2, {1}),
         projection(b, 2, {0, 1})},
        {kPar, kPar}, [&](IB &nb, ValueRange args) {
          return arith::AddFOp::create(nb, args[0], toF32(nb, args[1]));
        });

  // 3. Group scores [T, G]: the sum of the two best selection scores of the
  // group's E / G experts (the best alone when groups have one expert).
  Value groupScores, groupSize, groups = cIdx(b, numGroups);
  if (numGroups > 1) {
    groupSize = arith::DivUIOp::create(b, experts, groups);
    auto type = RankedTensorType::get({logitsType.getDimSize(0), numGroups},
                                      b.getF32Type());
    Value ninf = cF32(b, -std::numeric_limits<float>::infinity());
    groupScores = forLoop1(
        b, zero, tokens, empty(b, type, {tokens, groups}),
        [&](IB &tb, Value t, ValueRange tIt) {
          return SmallVector<Value>{forLoop1(
              tb, zero, groups, tIt[0], [&](IB &gb, Value g, ValueRange gIt) {
                Value first = mulI(gb, g, groupSize);
                SmallVector<Value> top2 = forLoop(
                    gb, zero, groupSize, {ninf, ninf},
                    [&](IB &sb, Value s, ValueRange best) {
                      Value v = extract(sb, selection, {t, addI(sb, first, s)});
                      Value above1 = cmpF(sb, CmpFPredicate::OGT, v, best[0]);
                      Value above2 = cmpF(sb, CmpFPredicate::OGT, v, best[1]);
                      return SmallVector<Value>{
                          select(sb, above1, v, best[0]),
                          select(sb, above1, best[0],
                                 select(sb, above2, v, best[1]))};
                    });
                Value score = select(
                    gb, cmpI(gb, CmpIPredicate::eq, groupSize, cIdx(gb, 1)),
                    top2[0], arith::AddFOp::create(gb, top2[0], top2[1]));
                return SmallVector<Value>{insert(gb, score, gIt[0], {t, g})};
              })};
        });
  }

  // 4./5. Per token: the eligible groups, top-k, weights.
  SmallVector<Value> results = forLoop(
      b, zero, tokens,
      {empty(b, weightsType, {tokens, kk}), empty(b, indicesType, {tokens, kk})},
      [&](IB &tb, Value t, ValueRange it) {
        // The topk_groups-th best group is the eligibility threshold.
        Value thresholdScore, thresholdGroup;
        if (numGroups > 1)
          std::tie(thresholdScore, thresholdGroup) = selectRanked(
              tb, groups, cIdx(tb, topkGroups), [&](IB &nb, Value g) {
                return extract(nb, groupScores, {t, g});
              });
        auto inEligibleGroup = [&](IB &nb, Value e) -> Value {
          Value g = arith::DivUIOp::create(nb, e, groupSize);
          Value score = extract(nb, groupScores, {t, g});
          return orI(nb, cmpF(nb, CmpFPredicate::OGT, score, thresholdScore),
                     andI(nb,
                          cmpF(nb, CmpFPredicate::OEQ, score, thresholdScore),
                          cmpI(nb, CmpIPredicate::sle, g, thresholdGroup)));
        };
        llvm::function_ref<Value(IB &, Value)> eligible;
        if (numGroups > 1)
          eligible = inEligibleGroup;
        Value inf = cF32(tb, std::numeric_limits<float>::infinity());
        // k passes; each picks the best eligible expert ranked after the
        // previous pick, writes its index and accumulates its probability.
        SmallVector<Value> picked = forLoop(
            tb, zero, kk, {it[1], inf, cIdx(tb, -1), cF32(tb, 0.0)},
            [&](IB &jb, Value j, ValueRange jIt) {
              auto [score, pick] = nextRanked(
                  jb, experts, jIt[1], jIt[2],
                  [&](IB &eb, Value e) { return extract(eb, selection, {t, e}); },
                  eligible);
              // Only NaN scores leave no candidate; keep the read in bounds.
              Value safe = select(
                  jb, cmpI(jb, CmpIPredicate::ult, pick, experts), pick, zero);
              Value p = extract(jb, probs, {t, safe});
              return SmallVector<Value>{
                  insert(jb, toInt(jb, pick, i32), jIt[0], {t, j}), score, pick,
                  arith::AddFOp::create(jb, jIt[3], p)};
            });
        Value indices = picked[0], sum = picked[3];
        Value weights = forLoop1(
            tb, zero, kk, it[0], [&](IB &jb, Value j, ValueRange jIt) {
              Value e = toIndex(jb, extract(jb, indices, {t, j}));
              Value safe = select(
                  jb, cmpI(jb, CmpIPredicate::ult, e, experts), e, zero);
              Value w =
                  sparseMixer
                      ? sparseMixerWeight(jb, selection, indices, t, j, safe)
                      : extract(jb, probs, {t, safe});
              if (normalize)
                w = arith::DivFOp::create(jb, w, sum);
              if (scaling != 1.0f)
                w = arith::MulFOp::create(jb, w, cF32(jb, scaling));
              return SmallVector<Value>{
                  insert(jb, fromF32(jb, w, element), jIt[0], {t, j})};
            });
        return SmallVector<Value>{weights, indices};
      });

  Value probsOut = narrowTo(b, probs, logitsType, {tokens, experts});
  return {results[0], results[1], probsOut};
}

//===----------------------------------------------------------------------===//
// moe.expert_choice
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerExpertChoice(IB &b, moe::ExpertChoiceOp op) {
  Value logits = op.getLogits();
  RankedTensorType logitsType = op.getLogits().getType();
  Type element = logitsType.getElementType();
  Type i32 = b.getI32Type();
  double factor = op.getCapacityFactor().convertToDouble();
  Value zero = cIdx(b, 0), one = cIdx(b, 1);
  Value tokens = dim(b, logits, 0), experts = dim(b, logits, 1);

  // C = min(T, ceil((factor * T) / E)), R = E * C.
  Value capacity;
  std::optional<int64_t> t = getConstantIntValue(tokens);
  std::optional<int64_t> e = getConstantIntValue(experts);
  if (t && e)
    capacity = cIdx(b, moe::expertChoiceCapacity(factor, *t, *e));
  else
    capacity = minSI(b, tokens,
                     capacityAtRuntime(b, factor, tokens, one, experts));
  Value rows = mulI(b, experts, capacity);

  Value probs = softmaxF32(b, logits);

  // offsets[e] = e * C.
  RankedTensorType offsetsType = op.getOffsets().getType();
  Value offsets = generic(
      b, empty(b, offsetsType, {addI(b, experts, one)}), {},
      {projection(b, 1, {0})}, {kPar}, [&](IB &nb, ValueRange) {
        return toInt(nb, mulI(nb, loopIndex(nb, 0), capacity), i32);
      });

  auto tokenVector =
      RankedTensorType::get({logitsType.getDimSize(0)}, b.getI32Type());
  // mark[t] = e + 1 once expert e has chosen token t.
  Value mark = filled(b, tokenVector, {tokens}, cI32(b, 0));

  // The loop carries only the results and the marks; the sort's scratch
  // tensors are created in the body (sharing them through iter_args, after
  // CSE merges their tensor.empty ops, can defeat in-place bufferization).
  SmallVector<Value> loop = forLoop(
      b, zero, experts,
      {empty(b, op.getRowToken().getType(), {rows}),
       empty(b, op.getRowWeight().getType(), {rows}), mark},
      [&](IB &eb, Value ex, ValueRange it) {
        Value rowToken = it[0], rowWeight = it[1], mark = it[2];
        // Sort the tokens by decreasing probs[:, e], ties to the lower
        // token (the radix sort is stable).
        Value keys = forLoop1(eb, zero, tokens, empty(eb, tokenVector, {tokens}),
                              [&](IB &nb, Value tok, ValueRange kIt) {
                                Value p = extract(nb, probs, {tok, ex});
                                return SmallVector<Value>{insert(
                                    nb, descendingKey(nb, p), kIt[0], {tok})};
                              });
        Value sorted =
            radixSort(eb, iota(eb, empty(eb, tokenVector, {tokens})),
                      empty(eb, tokenVector, {tokens}), keys,
                      empty(eb, RankedTensorType::get({256}, i32),
                            {cIdx(eb, 256)}),
                      tokens)[0];
        Value tag = toInt(eb, addI(eb, ex, one), i32);
        mark = forLoop1(eb, zero, capacity, mark,
                        [&](IB &nb, Value c, ValueRange mIt) {
                          Value tok = toIndex(nb, extract(nb, sorted, {c}));
                          return SmallVector<Value>{
                              insert(nb, tag, mIt[0], {tok})};
                        });
        // Emit the chosen tokens in increasing token order.
        SmallVector<Value> emitted = forLoop(
            eb, zero, tokens, {rowToken, rowWeight, mulI(eb, ex, capacity)},
            [&](IB &nb, Value tok, ValueRange rIt) {
              Value chosen =
                  cmpI(nb, CmpIPredicate::eq, extract(nb, mark, {tok}), tag);
              return ifElse(
                  nb, chosen,
                  [&](IB &ib) -> SmallVector<Value> {
                    Value row = rIt[2];
                    Value p = extract(ib, probs, {tok, ex});
                    return {insert(ib, toInt(ib, tok, i32), rIt[0], {row}),
                            insert(ib, fromF32(ib, p, element), rIt[1], {row}),
                            addI(ib, row, cIdx(ib, 1))};
                  },
                  [&](IB &) -> SmallVector<Value> {
                    return {rIt[0], rIt[1], rIt[2]};
                  });
            });
        return SmallVector<Value>{emitted[0], emitted[1], mark};
      });

  Value probsOut = narrowTo(b, probs, logitsType, {tokens, experts});
  return {loop[0], loop[1], offsets, probsOut};
}

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerDispatch(IB &b, moe::DispatchOp op) {
  Value indices = op.getIndices(), weights = op.getWeights();
  RankedTensorType rowTokenType = op.getRowToken().getType();
  RankedTensorType rowWeightType = op.getRowWeight().getType();
  RankedTensorType offsetsType = op.getOffsets().getType();
  Type i32 = b.getI32Type();
  int64_t numExperts = op.getNumExperts();
  std::optional<double> factor;
  if (auto attr = op.getCapacityFactorAttr())
    factor = attr.getValueAsDouble();
  Value zero = cIdx(b, 0), one = cIdx(b, 1);
  Value tokens = dim(b, indices, 0), k = dim(b, indices, 1);
  Value experts = cIdx(b, numExperts);
  Value assignments = mulI(b, tokens, k);

  // Rows: T * k when dropless, else min(T * k, E * C) (MoEUtils.h).
  Value capacity;
  if (factor)
    capacity = tokenChoiceCapacity(b, *factor, tokens, k, numExperts);
  Value rows;
  if (!rowTokenType.isDynamicDim(0)) {
    rows = cIdx(b, rowTokenType.getDimSize(0));
  } else if (!factor) {
    rows = assignments;
  } else {
    Value needed = arith::CeilDivUIOp::create(b, assignments, experts);
    rows = select(b, cmpI(b, CmpIPredicate::sge, capacity, needed),
                  assignments, mulI(b, experts, capacity));
  }

  // An assignment counts only when its expert lies in [0, E) (the spec
  // makes other values undefined; skipping them keeps memory safe).
  auto expertOf = [&](IB &nb, Value t, Value j) -> std::pair<Value, Value> {
    Value e = toIndex(nb, extract(nb, indices, {t, j}));
    Value valid = inRange(nb, e, experts);
    return {select(nb, valid, e, zero), valid};
  };
  auto increment = [&](IB &nb, Value counts, Value e) {
    return insert(nb, addI(nb, extract(nb, counts, {e}), cI32(nb, 1)), counts,
                  {e});
  };

  auto vectorType = RankedTensorType::get({numExperts}, i32);
  Value counts = filled(b, vectorType, {experts}, cI32(b, 0));
  Value kept;
  if (factor) {
    // Visit the assignments in priority order: choice rank first, then
    // tokens in order or by decreasing weights[t, 0]. An expert keeps an
    // assignment while it holds fewer than C.
    Value order;
    if (op.getBatchPrioritized()) {
      auto tokenVector = RankedTensorType::get(
          {op.getIndices().getType().getDimSize(0)}, i32);
      // weights[t, 0] exists only when k > 0.
      Value keyed = select(b, cmpI(b, CmpIPredicate::sgt, k, zero), tokens,
                           zero);
      Value keys = forLoop1(
          b, zero, keyed, empty(b, tokenVector, {tokens}),
          [&](IB &nb, Value t, ValueRange it) {
            Value w = toF32(nb, extract(nb, weights, {t, zero}));
            return SmallVector<Value>{
                insert(nb, descendingKey(nb, w), it[0], {t})};
          });
      Value perm = iota(b, empty(b, tokenVector, {tokens}));
      order = radixSort(b, perm, empty(b, tokenVector, {tokens}), keys,
                        empty(b, RankedTensorType::get({256}, i32),
                              {cIdx(b, 256)}),
                        tokens)[0];
    }
    auto keptType = RankedTensorType::get(
        op.getIndices().getType().getShape(), b.getI8Type());
    kept = filled(b, keptType, {tokens, k}, cInt(b, b.getI8Type(), 0));
    SmallVector<Value> result = forLoop(
        b, zero, k, {kept, counts}, [&](IB &jb, Value j, ValueRange jIt) {
          return forLoop(
              jb, zero, tokens, {jIt[0], jIt[1]},
              [&](IB &nb, Value i, ValueRange it) {
                Value t = order ? toIndex(nb, extract(nb, order, {i})) : i;
                auto [e, valid] = expertOf(nb, t, j);
                Value load = toIndex(nb, extract(nb, it[1], {e}));
                Value take = andI(
                    nb, valid, cmpI(nb, CmpIPredicate::slt, load, capacity));
                return ifElse(
                    nb, take,
                    [&](IB &ib) -> SmallVector<Value> {
                      return {insert(ib, cInt(ib, ib.getI8Type(), 1), it[0],
                                     {t, j}),
                              increment(ib, it[1], e)};
                    },
                    [&](IB &) -> SmallVector<Value> {
                      return {it[0], it[1]};
                    });
              });
        });
    kept = result[0];
    counts = result[1];
  } else {
    counts = forLoop1(
        b, zero, tokens, counts, [&](IB &tb, Value t, ValueRange tIt) {
          return SmallVector<Value>{forLoop1(
              tb, zero, k, tIt[0], [&](IB &nb, Value j, ValueRange it) {
                auto [e, valid] = expertOf(nb, t, j);
                return ifElse(
                    nb, valid,
                    [&](IB &ib) -> SmallVector<Value> {
                      return {increment(ib, it[0], e)};
                    },
                    [&](IB &) -> SmallVector<Value> { return {it[0]}; });
              })};
        });
  }

  // offsets = exclusive prefix sum of the counts (plus the total); the
  // counts become each expert's next free row.
  Value offsets = empty(b, offsetsType, {addI(b, experts, one)});
  offsets = insert(b, cI32(b, 0), offsets, {zero});
  SmallVector<Value> prefix = forLoop(
      b, zero, experts, {offsets, counts, cI32(b, 0)},
      [&](IB &nb, Value e, ValueRange it) {
        Value count = extract(nb, it[1], {e});
        Value next = addI(nb, it[2], count);
        return SmallVector<Value>{insert(nb, next, it[0], {addI(nb, e, one)}),
                                  insert(nb, it[2], it[1], {e}), next};
      });
  offsets = prefix[0];
  Value cursor = prefix[1];

  // Rows: every kept assignment in token order (then choice rank), at its
  // expert's next free row; padding rows keep token -1 and weight 0.
  Value rowToken = filled(b, rowTokenType, {rows}, cI32(b, -1));
  Value rowWeight = filled(b, rowWeightType, {rows},
                           cFloat(b, rowWeightType.getElementType(), 0.0));
  SmallVector<Value> filledRows = forLoop(
      b, zero, tokens, {rowToken, rowWeight, cursor},
      [&](IB &tb, Value t, ValueRange tIt) {
        return forLoop(
            tb, zero, k, tIt, [&](IB &nb, Value j, ValueRange it) {
              auto [e, take] = expertOf(nb, t, j);
              if (kept)
                take = andI(nb, take,
                            cmpI(nb, CmpIPredicate::ne,
                                 extract(nb, kept, {t, j}),
                                 cInt(nb, nb.getI8Type(), 0)));
              return ifElse(
                  nb, take,
                  [&](IB &ib) -> SmallVector<Value> {
                    Value row32 = extract(ib, it[2], {e});
                    Value row = toIndex(ib, row32);
                    Value w = extract(ib, weights, {t, j});
                    return {insert(ib, toInt(ib, t, i32), it[0], {row}),
                            insert(ib, w, it[1], {row}),
                            insert(ib, addI(ib, row32, cI32(ib, 1)), it[2],
                                   {e})};
                  },
                  [&](IB &) -> SmallVector<Value> {
                    return {it[0], it[1], it[2]};
                  });
            });
      });
  return {filledRows[0], filledRows[1], offsets};
}

} // namespace moec::lowering
