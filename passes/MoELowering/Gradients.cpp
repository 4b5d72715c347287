//===- Gradients.cpp - The moe backward ops -------------------------------===//
//
// Lowers the `moe.*_grad` ops that the vector-Jacobian products of
// dialects/MoE/MoEVJP.cpp emit, with the conventions of the forward lowering
// (passes/ConvertMoEToLinalg.cpp): tensors only, f32 arithmetic, results
// narrowed to the op's element type at the end. Products with a transposed
// operand materialise the transpose (linalg.transpose) and stay plain
// linalg.matmul ops, which the CPU schedule tiles.
//
// A result without uses is not computed (it is replaced by an uninitialised
// tensor that nothing reads): the weight gradients of frozen experts cost
// nothing.
//
//===----------------------------------------------------------------------===//

#include "passes/MoELowering/Lowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using arith::CmpIPredicate;

namespace moec::lowering {

namespace {

using utils::IteratorType;
constexpr IteratorType kPar = IteratorType::parallel;
constexpr IteratorType kRed = IteratorType::reduction;

/// The extents of a ranked tensor as index values.
SmallVector<Value> sizesOf(IB &b, Value tensor) {
  SmallVector<Value> sizes;
  for (int64_t d = 0; d < tensorType(tensor).getRank(); ++d)
    sizes.push_back(dim(b, tensor, d));
  return sizes;
}

/// The stand-in for a result without uses: nothing reads it.
Value unread(IB &b, Value result) {
  auto type = cast<RankedTensorType>(result.getType());
  return empty(b, type, SmallVector<Value>(type.getRank(), cIdx(b, 0)));
}

/// `value` (f32) narrowed to the element type of `type` and cast to `type`,
/// which may differ from it in static versus dynamic extents.
Value castTo(IB &b, Value value, RankedTensorType type) {
  Value narrowed =
      narrowTo(b, value, withElement(tensorType(value), type.getElementType()),
               sizesOf(b, value));
  if (narrowed.getType() == type)
    return narrowed;
  return tensor::CastOp::create(b, type, narrowed);
}

/// dest + value, narrowed to dest's element type, written into `dest` (a
/// slice of a zero-filled result: the op reads its init, so linalg's fusion
/// keeps it and the enclosing insert_slice bufferizes in place).
Value addInto(IB &b, Value value, Value dest) {
  Type element = tensorType(dest).getElementType();
  return elementwise(b, dest, {value}, [&](IB &nb, ValueRange args) {
    return fromF32(nb, arith::AddFOp::create(nb, toF32(nb, args[1]), args[0]),
                   element);
  });
}

/// Column sums [C] (f32) of the matrix `matrix` [n, C].
Value columnSums(IB &b, Value matrix) {
  auto type = RankedTensorType::get({tensorType(matrix).getDimSize(1)},
                                    b.getF32Type());
  return generic(b, filled(b, type, {dim(b, matrix, 1)}, cF32(b, 0.0)),
                 {matrix}, {projection(b, 2, {0, 1}), projection(b, 2, {1})},
                 {kRed, kPar}, [&](IB &nb, ValueRange args) {
                   return arith::AddFOp::create(nb, args[1],
                                                toF32(nb, args[0]));
                 });
}

/// `acc += lhs @ rhs` (f32 accumulator).
Value matmulAccumulate(IB &b, Value lhs, Value rhs, Value acc) {
  return linalg::MatmulOp::create(b, ValueRange{lhs, rhs}, ValueRange{acc})
      .getResult(0);
}

/// The weights of one FFN (one expert's slices): fc1, fc3 [D, F], fc2
/// [F, D_out], biases [F] / [D_out]; fc3 and the biases may be null.
struct FFNWeights {
  Value fc1, fc2, fc3, fc1Bias, fc2Bias, fc3Bias;
};

/// Which gradients of one FFN to compute.
struct FFNWanted {
  bool input = false, fc1 = false, fc2 = false, fc3 = false, fc1Bias = false,
       fc2Bias = false, fc3Bias = false;
};

/// Gradients of one FFN in f32; null where not wanted.
struct FFNGrads {
  Value input, fc1, fc2, fc3, fc1Bias, fc2Bias, fc3Bias;
};

/// The hidden pre-activations of an FFN and a way to evaluate elementwise
/// functions of them: `map(f)` is a [n, F] f32 generic whose body gets
/// z1 = a1 + fc1_bias and z3 = a3 + fc3_bias (null when not gated) and the
/// extra inputs' block arguments.
struct Hidden {
  Value a1, a3, fc1Bias, fc3Bias, n, hidden;

  using Body = llvm::function_ref<Value(IB &, Value, Value, ValueRange)>;
  Value map(IB &b, ValueRange extra, Body body) const {
    AffineMap id = projection(b, 2, {0, 1}), col = projection(b, 2, {1});
    SmallVector<Value> inputs = {a1};
    SmallVector<AffineMap> maps = {id};
    auto add = [&](Value v, AffineMap map) -> int {
      if (!v)
        return -1;
      inputs.push_back(v);
      maps.push_back(map);
      return inputs.size() - 1;
    };
    int i3 = add(a3, id), b1 = add(fc1Bias, col), b3 = add(fc3Bias, col);
    size_t first = inputs.size();
    for (Value v : extra)
      add(v, id);
    maps.push_back(id);
    auto type = RankedTensorType::get(tensorType(a1).getShape(),
                                      b.getF32Type());
    return generic(b, empty(b, type, {n, hidden}), inputs, maps, {kPar, kPar},
                   [&](IB &nb, ValueRange args) {
                     Value z1 = args[0], z3;
                     if (b1 >= 0)
                       z1 = arith::AddFOp::create(nb, z1, toF32(nb, args[b1]));
                     if (i3 >= 0) {
                       z3 = args[i3];
                       if (b3 >= 0)
                         z3 = arith::AddFOp::create(nb, z3,
                                                    toF32(nb, args[b3]));
                     }
                     return body(nb, z1, z3,
                                 args.slice(first, extra.size()));
                   });
  }
};

Hidden hiddenOf(IB &b, Value x, Value n, const FFNWeights &w) {
  Value hidden = dim(b, w.fc1, 1);
  Hidden h{matmulF32(b, x, w.fc1, n, hidden), Value(), w.fc1Bias, Value(), n,
           hidden};
  if (w.fc3) {
    h.a3 = matmulF32(b, x, w.fc3, n, hidden);
    h.fc3Bias = w.fc3Bias;
  }
  return h;
}

/// The activation output h = act(z1) (* z3), [n, F] f32.
Value activations(IB &b, const Hidden &h, const FFNActivation &activation) {
  return h.map(b, {}, [&](IB &nb, Value z1, Value z3, ValueRange) {
    Value v = activate(nb, z1, activation);
    return z3 ? arith::MulFOp::create(nb, v, gatedFactor(nb, z3, activation))
              : v;
  });
}

/// Backward of the FFN y = act(x @ fc1 + b1) (* (x @ fc3 + b3)) @ fc2 + b2
/// on the rows x [n, D] with the output gradient dy [n, D_out].
FFNGrads ffnBackward(IB &b, Value x, Value dy, Value n, const FFNWeights &w,
                     const FFNActivation &activation,
                     const FFNWanted &want) {
  FFNGrads grads;
  Value features = dim(b, x, 1), out = dim(b, w.fc2, 1);
  Hidden h = hiddenOf(b, x, n, w);
  if (want.fc2)
    grads.fc2 =
        matmulF32(b, transposed(b, activations(b, h, activation)), dy,
                  h.hidden, out);
  if (want.fc2Bias)
    grads.fc2Bias = columnSums(b, dy);
  bool gated = static_cast<bool>(w.fc3);
  bool needA1 = want.input || want.fc1 || want.fc1Bias;
  bool needA3 = gated && (want.input || want.fc3 || want.fc3Bias);
  if (!needA1 && !needA3)
    return grads;
  Value dh = matmulF32(b, dy, transposed(b, w.fc2), n, h.hidden);
  Value da1, da3;
  if (needA1)
    da1 = h.map(b, {dh}, [&](IB &nb, Value z1, Value z3, ValueRange args) {
      Value v = arith::MulFOp::create(nb, args[0],
                                      activateGrad(nb, z1, activation));
      return z3 ? arith::MulFOp::create(nb, v,
                                        gatedFactor(nb, z3, activation))
                : v;
    });
  if (needA3)
    da3 = h.map(b, {dh}, [&](IB &nb, Value z1, Value z3, ValueRange args) {
      return gatedFactorGrad(
          nb, z3,
          arith::MulFOp::create(nb, args[0], activate(nb, z1, activation)),
          activation);
    });
  Value xT = (want.fc1 || want.fc3) ? transposed(b, x) : Value();
  if (want.fc1)
    grads.fc1 = matmulF32(b, xT, da1, features, h.hidden);
  if (want.fc3)
    grads.fc3 = matmulF32(b, xT, da3, features, h.hidden);
  if (want.fc1Bias)
    grads.fc1Bias = columnSums(b, da1);
  if (want.fc3Bias)
    grads.fc3Bias = columnSums(b, da3);
  if (want.input) {
    grads.input = matmulF32(b, da1, transposed(b, w.fc1), n, features);
    if (gated)
      grads.input =
          matmulAccumulate(b, da3, transposed(b, w.fc3), grads.input);
  }
  return grads;
}

/// dp [T, E] (f32): `probsGrad` widened, or zeros.
Value initialProbsGrad(IB &b, Value probs, Value probsGrad) {
  RankedTensorType type = withElement(tensorType(probs), b.getF32Type());
  SmallVector<Value> sizes = sizesOf(b, probs);
  if (!probsGrad)
    return filled(b, type, sizes, cF32(b, 0.0));
  return elementwise(b, empty(b, type, sizes), {probsGrad},
                     [&](IB &nb, ValueRange args) {
                       return toF32(nb, args[0]);
                     });
}

/// The logits gradient [T, E] (`resultType`) from the probabilities' `dp`
/// (f32): p * (dp - sum_e dp * p) for softmax, dp * p * (1 - p) for sigmoid.
Value scoreBackward(IB &b, Value probs, Value dp, moe::ScoreFunction score,
                    RankedTensorType resultType) {
  Type element = resultType.getElementType();
  SmallVector<Value> sizes = sizesOf(b, probs);
  AffineMap id = projection(b, 2, {0, 1}), row = projection(b, 2, {0});
  if (score == moe::ScoreFunction::sigmoid)
    return elementwise(b, empty(b, resultType, sizes), {probs, dp},
                       [&](IB &nb, ValueRange args) {
                         Value p = toF32(nb, args[0]);
                         Value slope = arith::MulFOp::create(
                             nb, p, arith::SubFOp::create(nb, cF32(nb, 1.0), p));
                         return fromF32(
                             nb, arith::MulFOp::create(nb, args[1], slope),
                             element);
                       });
  auto rowType = RankedTensorType::get({resultType.getDimSize(0)},
                                       b.getF32Type());
  Value dot = generic(
      b, filled(b, rowType, {sizes[0]}, cF32(b, 0.0)), {probs, dp},
      {id, id, row}, {kPar, kRed}, [&](IB &nb, ValueRange args) {
        return arith::AddFOp::create(
            nb, args[2],
            arith::MulFOp::create(nb, toF32(nb, args[0]), args[1]));
      });
  return generic(b, empty(b, resultType, sizes), {probs, dp, dot},
                 {id, id, row, id}, {kPar, kPar},
                 [&](IB &nb, ValueRange args) {
                   Value p = toF32(nb, args[0]);
                   Value centered = arith::SubFOp::create(nb, args[1], args[2]);
                   return fromF32(nb, arith::MulFOp::create(nb, p, centered),
                                  element);
                 });
}

/// `tensor[indices] += value` for an f32 tensor.
Value addAt(IB &b, Value tensor, ValueRange indices, Value value) {
  return insert(b, arith::AddFOp::create(b, extract(b, tensor, indices), value),
                tensor, indices);
}

/// Rows offsets[e] .. offsets[e+1] clamped to [0, rows].
std::pair<Value, Value> segment(IB &b, Value offsets, Value e, Value rows) {
  Value zero = cIdx(b, 0);
  Value lo = toIndex(b, extract(b, offsets, {e}));
  Value hi = toIndex(b, extract(b, offsets, {addI(b, e, cIdx(b, 1))}));
  lo = minSI(b, maxSI(b, lo, zero), rows);
  hi = minSI(b, maxSI(b, hi, lo), rows);
  return {lo, hi};
}

} // namespace

//===----------------------------------------------------------------------===//
// moe.gate_grad
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerGateGrad(IB &b, moe::GateGradOp op) {
  Value grad = op.getLogitsGrad(), x = op.getInput(), weight = op.getWeight();
  Value tokens = dim(b, x, 0), features = dim(b, x, 1),
        experts = dim(b, weight, 1);
  float eps = op.getJitterEps().convertToFloat();
  Value seed = eps > 0.0f ? op.getSeed() : Value();
  // u of the element (t, d) of a generic over [T, D].
  auto jitter = [&](IB &nb) {
    Value flat =
        addI(nb, mulI(nb, loopIndex(nb, 0), features), loopIndex(nb, 1));
    return jitterMultiplier(nb, seed, toInt(nb, flat, nb.getI64Type()), eps);
  };
  RankedTensorType f32Input = withElement(tensorType(x), b.getF32Type());

  Value inputGrad = unread(b, op.getInputGrad());
  if (!op.getInputGrad().use_empty()) {
    Value g = matmulF32(b, grad, transposed(b, weight), tokens, features);
    if (seed)
      g = elementwise(b, empty(b, f32Input, {tokens, features}), {g},
                      [&](IB &nb, ValueRange args) {
                        return arith::MulFOp::create(nb, args[0], jitter(nb));
                      });
    inputGrad = castTo(b, g, op.getInputGrad().getType());
  }
  Value weightGrad = unread(b, op.getWeightGrad());
  if (!op.getWeightGrad().use_empty()) {
    Value lhs = x;
    if (seed)
      lhs = elementwise(b, empty(b, f32Input, {tokens, features}), {x},
                        [&](IB &nb, ValueRange args) {
                          return arith::MulFOp::create(
                              nb, toF32(nb, args[0]), jitter(nb));
                        });
    weightGrad = castTo(b, matmulF32(b, transposed(b, lhs), grad, features,
                                     experts),
                        op.getWeightGrad().getType());
  }
  Value biasGrad = unread(b, op.getBiasGrad());
  if (!op.getBiasGrad().use_empty())
    biasGrad = castTo(b, columnSums(b, grad), op.getBiasGrad().getType());
  return {inputGrad, weightGrad, biasGrad};
}

//===----------------------------------------------------------------------===//
// moe.token_choice_grad, moe.expert_choice_grad
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerTokenChoiceGrad(IB &b, moe::TokenChoiceGradOp op) {
  Value probs = op.getProbs(), indices = op.getIndices(),
        weightsGrad = op.getWeightsGrad();
  Value zero = cIdx(b, 0);
  Value tokens = dim(b, probs, 0), experts = dim(b, probs, 1),
        k = dim(b, indices, 1);
  float scaling = op.getScalingFactor().convertToFloat();
  Value dp = initialProbsGrad(b, probs, op.getProbsGrad());
  if (weightsGrad) {
    dp = forLoop1(b, zero, tokens, dp, [&](IB &tb, Value t, ValueRange tIt) {
      // Expert j of the token (clamped into range) and whether it is valid.
      auto expertOf = [&](IB &nb, Value j) -> std::pair<Value, Value> {
        Value e = toIndex(nb, extract(nb, indices, {t, j}));
        Value valid = inRange(nb, e, experts);
        return {select(nb, valid, e, zero), valid};
      };
      auto probOf = [&](IB &nb, Value j) {
        auto [e, valid] = expertOf(nb, j);
        return select(nb, valid, toF32(nb, extract(nb, probs, {t, e})),
                      cF32(nb, 0.0));
      };
      // With normalize, w_j = s p_j / S: dp_j += s (dw_j - A) / S with
      // S = sum_j p_j and A = sum_j dw_j p_j / S.
      Value sum, mean;
      if (op.getNormalize()) {
        SmallVector<Value> sums = forLoop(
            tb, zero, k, {cF32(tb, 0.0), cF32(tb, 0.0)},
            [&](IB &nb, Value j, ValueRange it) {
              Value p = probOf(nb, j);
              Value dw = toF32(nb, extract(nb, weightsGrad, {t, j}));
              return SmallVector<Value>{
                  arith::AddFOp::create(nb, it[0], p),
                  arith::AddFOp::create(nb, it[1],
                                        arith::MulFOp::create(nb, dw, p))};
            });
        sum = sums[0];
        mean = arith::DivFOp::create(tb, sums[1], sum);
      }
      return SmallVector<Value>{forLoop1(
          tb, zero, k, tIt[0], [&](IB &nb, Value j, ValueRange it) {
            auto [e, valid] = expertOf(nb, j);
            Value coeff = toF32(nb, extract(nb, weightsGrad, {t, j}));
            if (sum)
              coeff = arith::DivFOp::create(
                  nb, arith::SubFOp::create(nb, coeff, mean), sum);
            if (scaling != 1.0f)
              coeff = arith::MulFOp::create(nb, coeff, cF32(nb, scaling));
            return ifElse(
                nb, valid,
                [&](IB &ib) -> SmallVector<Value> {
                  return {addAt(ib, it[0], {t, e}, coeff)};
                },
                [&](IB &) -> SmallVector<Value> { return {it[0]}; });
          })};
    });
  }
  return {scoreBackward(b, probs, dp, op.getScore(),
                        op.getLogitsGrad().getType())};
}

SmallVector<Value> lowerExpertChoiceGrad(IB &b, moe::ExpertChoiceGradOp op) {
  Value probs = op.getProbs(), rowToken = op.getRowToken(),
        offsets = op.getOffsets(), rowWeightGrad = op.getRowWeightGrad();
  Value zero = cIdx(b, 0);
  Value tokens = dim(b, probs, 0), experts = dim(b, probs, 1),
        rows = dim(b, rowToken, 0);
  Value dp = initialProbsGrad(b, probs, op.getProbsGrad());
  if (rowWeightGrad) {
    // Row r of expert e carries probs[row_token[r], e].
    dp = forLoop1(b, zero, experts, dp, [&](IB &eb, Value e, ValueRange eIt) {
      auto [lo, hi] = segment(eb, offsets, e, rows);
      return SmallVector<Value>{forLoop1(
          eb, lo, hi, eIt[0], [&](IB &nb, Value r, ValueRange it) {
            Value t = toIndex(nb, extract(nb, rowToken, {r}));
            return ifElse(
                nb, inRange(nb, t, tokens),
                [&](IB &ib) -> SmallVector<Value> {
                  Value g = toF32(ib, extract(ib, rowWeightGrad, {r}));
                  return {addAt(ib, it[0], {t, e}, g)};
                },
                [&](IB &) -> SmallVector<Value> { return {it[0]}; });
          })};
    });
  }
  return {scoreBackward(b, probs, dp, moe::ScoreFunction::softmax,
                        op.getLogitsGrad().getType())};
}

//===----------------------------------------------------------------------===//
// moe.dispatch_grad
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerDispatchGrad(IB &b, moe::DispatchGradOp op) {
  Value grad = op.getRowWeightGrad(), indices = op.getIndices(),
        rowToken = op.getRowToken(), offsets = op.getOffsets();
  RankedTensorType type = op.getWeightsGrad().getType();
  Value zero = cIdx(b, 0);
  Value tokens = dim(b, indices, 0), k = dim(b, indices, 1),
        rows = dim(b, rowToken, 0);
  Value experts = subI(b, dim(b, offsets, 0), cIdx(b, 1));
  // Dropped assignments have no row and keep 0.
  Value init = filled(b, type, {tokens, k}, cFloat(b, type.getElementType(), 0));
  return {forLoop1(
      b, zero, experts, init, [&](IB &eb, Value e, ValueRange eIt) {
        auto [lo, hi] = segment(eb, offsets, e, rows);
        Value e32 = toInt(eb, e, eb.getI32Type());
        return SmallVector<Value>{forLoop1(
            eb, lo, hi, eIt[0], [&](IB &rb, Value r, ValueRange rIt) {
              Value t = toIndex(rb, extract(rb, rowToken, {r}));
              Value valid = inRange(rb, t, tokens);
              Value safe = select(rb, valid, t, zero);
              // The choice j of token t that named expert e.
              return SmallVector<Value>{forLoop1(
                  rb, zero, k, rIt[0], [&](IB &nb, Value j, ValueRange it) {
                    Value match = andI(
                        nb, valid,
                        cmpI(nb, CmpIPredicate::eq,
                             extract(nb, indices, {safe, j}), e32));
                    return ifElse(
                        nb, match,
                        [&](IB &ib) -> SmallVector<Value> {
                          return {insert(ib, extract(ib, grad, {r}), it[0],
                                         {safe, j})};
                        },
                        [&](IB &) -> SmallVector<Value> { return {it[0]}; });
                  })};
            })};
      })};
}

//===----------------------------------------------------------------------===//
// moe.expert_ffn_grad, moe.shared_expert_grad
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerExpertFFNGrad(IB &b, moe::ExpertFFNGradOp op) {
  Value dy = op.getResultGrad(), x = op.getInput(), offsets = op.getOffsets();
  Value zero = cIdx(b, 0), one = cIdx(b, 1);
  Value rows = dim(b, x, 0), features = dim(b, x, 1);
  Value experts = dim(b, op.getFc1(), 0), out = dim(b, op.getFc2(), 2);

  // The results in op order with, per result, the operand it differentiates.
  SmallVector<Value> results(op->getResults());
  SmallVector<Value> operands = {x, op.getFc1(), op.getFc2()};
  for (Value operand : {op.getFc3(), op.getFc1Bias(), op.getFc2Bias(),
                        op.getFc3Bias()})
    if (operand)
      operands.push_back(operand);
  auto used = [](Value result) { return result && !result.use_empty(); };
  FFNWanted want;
  want.input = used(op.getInputGrad());
  want.fc1 = used(op.getFc1Grad());
  want.fc2 = used(op.getFc2Grad());
  want.fc3 = used(op.getFc3Grad());
  want.fc1Bias = used(op.getFc1BiasGrad());
  want.fc2Bias = used(op.getFc2BiasGrad());
  want.fc3Bias = used(op.getFc3BiasGrad());

  // The loop carries the used results, zero-filled (input rows past
  // offsets[E] and experts without rows keep 0).
  SmallVector<Value> inits;
  SmallVector<unsigned> carried;
  for (auto [index, result] : llvm::enumerate(results)) {
    if (!used(result))
      continue;
    auto type = cast<RankedTensorType>(result.getType());
    inits.push_back(filled(b, type, sizesOf(b, operands[index]),
                           cFloat(b, type.getElementType(), 0.0)));
    carried.push_back(index);
  }
  SmallVector<Value> replacements;
  for (Value result : results)
    replacements.push_back(unread(b, result));
  if (inits.empty())
    return replacements;

  SmallVector<Value> loop = forLoop(
      b, zero, experts, inits, [&](IB &eb, Value e, ValueRange it) {
        auto [lo, hi] = segment(eb, offsets, e, rows);
        Value n = subI(eb, hi, lo);
        int64_t dynamic = ShapedType::kDynamic;
        Value xs = slice(eb, x, {lo, zero}, {n, features},
                         {dynamic, tensorType(x).getDimSize(1)});
        Value dys = slice(eb, dy, {lo, zero}, {n, out},
                          {dynamic, tensorType(dy).getDimSize(1)});
        // Expert e's [1, A, B] slice of `value` ([E, A, B]) as [A, B], or
        // its [1, A] slice of an [E, A] value as [A].
        auto ofExpert = [&](Value value) -> Value {
          if (!value)
            return Value();
          ArrayRef<int64_t> shape = tensorType(value).getShape();
          SmallVector<Value> offsets(shape.size(), zero), sizes = {one};
          offsets[0] = e;
          for (size_t d = 1; d < shape.size(); ++d)
            sizes.push_back(dim(eb, value, d));
          return slice(eb, value, offsets, sizes, shape.drop_front());
        };
        FFNWeights weights{ofExpert(op.getFc1()),     ofExpert(op.getFc2()),
                           ofExpert(op.getFc3()),     ofExpert(op.getFc1Bias()),
                           ofExpert(op.getFc2Bias()), ofExpert(op.getFc3Bias())};
        FFNGrads grads =
            ffnBackward(eb, xs, dys, n, weights, ffnActivationOf(op), want);
        SmallVector<Value> perResult = {grads.input, grads.fc1, grads.fc2};
        for (auto [operand, grad] :
             {std::pair<Value, Value>{op.getFc3(), grads.fc3},
              {op.getFc1Bias(), grads.fc1Bias},
              {op.getFc2Bias(), grads.fc2Bias},
              {op.getFc3Bias(), grads.fc3Bias}})
          if (operand)
            perResult.push_back(grad);
        SmallVector<Value> next;
        for (auto [acc, index] : llvm::zip(it, carried)) {
          // The input gradient's rows of the segment, or expert e's slice of
          // a weight gradient.
          SmallVector<Value> offsets, sizes;
          SmallVector<int64_t> shape;
          ArrayRef<int64_t> accShape = tensorType(acc).getShape();
          if (index == 0) {
            offsets = {lo, zero};
            sizes = {n, features};
            shape = {dynamic, accShape[1]};
          } else {
            offsets.assign(accShape.size(), zero);
            offsets[0] = e;
            sizes = {one};
            for (size_t d = 1; d < accShape.size(); ++d)
              sizes.push_back(dim(eb, acc, d));
            shape.assign(accShape.drop_front().begin(),
                         accShape.drop_front().end());
          }
          Value dest = slice(eb, acc, offsets, sizes, shape);
          next.push_back(insertSlice(eb, addInto(eb, perResult[index], dest),
                                     acc, offsets, sizes));
        }
        return next;
      });
  for (auto [value, index] : llvm::zip(loop, carried))
    replacements[index] = value;
  return replacements;
}

namespace {

/// out[e, i, j] = sum of lhs[r, i] * rhs[r, j] over the rows r of expert e's
/// segment, or out[e, i] = sum of lhs[r, i] without `rhs`; f32, `type`'s
/// shape with `sizes`. One thread's worth of work per element on a GPU: a
/// loop over the segment, so no row is visited by more than one expert.
Value segmentSums(IB &b, Value offsets, Value rows, Value lhs, Value rhs,
                  RankedTensorType type, ArrayRef<Value> sizes) {
  unsigned rank = type.getRank();
  SmallVector<utils::IteratorType> iterators(rank, kPar);
  return generic(
      b, empty(b, withElement(type, b.getF32Type()), sizes), {},
      {b.getMultiDimIdentityMap(rank)}, iterators,
      [&](IB &nb, ValueRange) {
        auto [lo, hi] = segment(nb, offsets, loopIndex(nb, 0), rows);
        // linalg.index must sit in the generic's body, not in the loop's.
        Value i = loopIndex(nb, 1), j = rhs ? loopIndex(nb, 2) : Value();
        return forLoop1(
            nb, lo, hi, cF32(nb, 0.0), [&](IB &lb, Value r, ValueRange acc) {
              Value term = toF32(lb, extract(lb, lhs, {r, i}));
              if (rhs)
                term = arith::MulFOp::create(
                    lb, term,
                    toF32(lb, extract(lb, rhs, {r, j})));
              return SmallVector<Value>{
                  arith::AddFOp::create(lb, acc[0], term)};
            });
      });
}

/// z[r, f] = a[r, f] + bias[expert[r], f] (f32); padding rows read the last
/// expert's bias.
Value addRowBias(IB &b, Value a, Value bias, Value expert) {
  if (!bias)
    return a;
  Value last = subI(b, dim(b, bias, 0), cIdx(b, 1));
  return rowwise(b, tensorType(a), sizesOf(b, a), a, expert, Value(),
                 [&](IB &nb, Value v, Value rowExpert, Value) {
                   Value e = minSI(nb, toIndex(nb, rowExpert), last);
                   return arith::AddFOp::create(
                       nb, v,
                       toF32(nb, extract(nb, bias, {e, loopIndex(nb, 1)})));
                 });
}

} // namespace

SmallVector<Value> lowerExpertFFNGradByRows(IB &b, moe::ExpertFFNGradOp op,
                                            bool deviceKernels) {
  Value dy = op.getResultGrad(), x = op.getInput(), offsets = op.getOffsets();
  Value fc1 = op.getFc1(), fc2 = op.getFc2(), fc3 = op.getFc3();
  Value rows = dim(b, x, 0), features = dim(b, x, 1);
  Value experts = dim(b, fc1, 0), hidden = dim(b, fc1, 2);
  auto used = [](Value result) { return result && !result.use_empty(); };
  SmallVector<Value> replacements;
  for (Value result : op->getResults())
    replacements.push_back(unread(b, result));
  bool gated = static_cast<bool>(fc3);
  bool wantInput = used(op.getInputGrad());
  bool needA1 = wantInput || used(op.getFc1Grad()) ||
                used(op.getFc1BiasGrad());
  bool needA3 = gated && (wantInput || used(op.getFc3Grad()) ||
                          used(op.getFc3BiasGrad()));
  if (!needA1 && !needA3 && !used(op.getFc2Grad()) &&
      !used(op.getFc2BiasGrad()))
    return replacements;

  // Results in op order: input, fc1, fc2, then the optional operands' ones.
  auto setResult = [&](Value result, Value value) {
    if (!used(result))
      return;
    unsigned index = cast<OpResult>(result).getResultNumber();
    replacements[index] =
        castTo(b, value, cast<RankedTensorType>(result.getType()));
  };
  auto segmentGrad = [&](Value result, Value operand, Value lhs, Value rhs) {
    if (used(result))
      setResult(result,
                segmentSums(b, offsets, rows, lhs, rhs,
                            cast<RankedTensorType>(result.getType()),
                            sizesOf(b, operand)));
  };

  Value expert = rowExperts(b, offsets, rows, experts);
  auto product = [&](Value lhs, Value weights, Value columns,
                     bool transposeWeights) {
    return expertProduct(b, lhs, weights, expert, offsets, columns,
                         transposeWeights, deviceKernels);
  };
  Value a1 = addRowBias(b, product(x, fc1, hidden, false), op.getFc1Bias(),
                        expert);
  Value a3 = gated ? addRowBias(b, product(x, fc3, hidden, false),
                                op.getFc3Bias(), expert)
                   : Value();
  Hidden h{a1, a3, Value(), Value(), rows, hidden};
  FFNActivation activation = ffnActivationOf(op);
  if (used(op.getFc2Grad()))
    segmentGrad(op.getFc2Grad(), fc2, activations(b, h, activation), dy);
  segmentGrad(op.getFc2BiasGrad(), op.getFc2Bias(), dy, Value());
  if (!needA1 && !needA3)
    return replacements;

  Value dh = product(dy, fc2, hidden, /*transposeWeights=*/true);
  Value da1 = h.map(b, {dh}, [&](IB &nb, Value z1, Value z3, ValueRange args) {
    Value v =
        arith::MulFOp::create(nb, args[0], activateGrad(nb, z1, activation));
    return z3 ? arith::MulFOp::create(nb, v, gatedFactor(nb, z3, activation))
              : v;
  });
  Value da3 =
      needA3 ? h.map(b, {dh},
                     [&](IB &nb, Value z1, Value z3, ValueRange args) {
                       return gatedFactorGrad(
                           nb, z3,
                           arith::MulFOp::create(
                               nb, args[0], activate(nb, z1, activation)),
                           activation);
                     })
             : Value();
  segmentGrad(op.getFc1Grad(), fc1, x, da1);
  segmentGrad(op.getFc1BiasGrad(), op.getFc1Bias(), da1, Value());
  if (gated) {
    segmentGrad(op.getFc3Grad(), fc3, x, da3);
    segmentGrad(op.getFc3BiasGrad(), op.getFc3Bias(), da3, Value());
  }
  if (!wantInput)
    return replacements;

  // dx = da1 @ fc1[e]^T (+ da3 @ fc3[e]^T), zero on padding rows.
  Value dx1 = product(da1, fc1, features, /*transposeWeights=*/true);
  Value dx3 =
      gated ? product(da3, fc3, features, /*transposeWeights=*/true) : Value();
  Value dx = rowwise(
      b, tensorType(dx1), {rows, features}, dx1, expert, dx3,
      [&](IB &nb, Value v1, Value rowExpert, Value v3) {
        Value v = v3 ? arith::AddFOp::create(nb, v1, v3) : v1;
        Value valid = cmpI(nb, CmpIPredicate::slt, toIndex(nb, rowExpert),
                           experts);
        return select(nb, valid, v, cF32(nb, 0.0));
      });
  setResult(op.getInputGrad(), dx);
  return replacements;
}

SmallVector<Value> lowerSharedExpertGrad(IB &b, moe::SharedExpertGradOp op) {
  Value dy = op.getResultGrad(), x = op.getInput(), gate = op.getGate();
  Value tokens = dim(b, x, 0), out = dim(b, op.getFc2(), 1);
  auto used = [](Value result) { return result && !result.use_empty(); };
  FFNWanted want;
  want.input = used(op.getInputGrad());
  want.fc1 = used(op.getFc1Grad());
  want.fc2 = used(op.getFc2Grad());
  want.fc3 = used(op.getFc3Grad());
  bool wantGate = used(op.getGateGrad());
  FFNWeights weights{op.getFc1(), op.getFc2(), op.getFc3(),
                     Value(),     Value(),     Value()};
  FFNActivation activation{op.getActivation()};

  // y = s * f(x), s = sigmoid(x @ gate): f receives dy * s and x @ gate
  // receives s (1 - s) sum_d dy * f.
  Value ffnGrad = dy, logitGrad;
  if (gate) {
    AffineMap id = projection(b, 2, {0, 1}),
              gateMap = AffineMap::get(
                  2, 0, {b.getAffineDimExpr(0), b.getAffineConstantExpr(0)},
                  b.getContext());
    Value logit = matmulF32(b, x, gate, tokens, cIdx(b, 1));
    auto f32Out = RankedTensorType::get(
        {tensorType(x).getDimSize(0), tensorType(dy).getDimSize(1)},
        b.getF32Type());
    ffnGrad = generic(b, empty(b, f32Out, {tokens, out}), {dy, logit},
                      {id, gateMap, id}, {kPar, kPar},
                      [&](IB &nb, ValueRange args) {
                        return arith::MulFOp::create(nb, toF32(nb, args[0]),
                                                     sigmoid(nb, args[1]));
                      });
    if (want.input || wantGate) {
      Value f = matmulF32(
          b, activations(b, hiddenOf(b, x, tokens, weights), activation),
          op.getFc2(), tokens, out);
      auto columnType = RankedTensorType::get(
          {tensorType(x).getDimSize(0), 1}, b.getF32Type());
      Value dot = generic(
          b, filled(b, columnType, {tokens, cIdx(b, 1)}, cF32(b, 0.0)),
          {dy, f}, {id, id, gateMap}, {kPar, kRed},
          [&](IB &nb, ValueRange args) {
            return arith::AddFOp::create(
                nb, args[2],
                arith::MulFOp::create(nb, toF32(nb, args[0]), args[1]));
          });
      logitGrad = elementwise(
          b, empty(b, columnType, {tokens, cIdx(b, 1)}), {logit, dot},
          [&](IB &nb, ValueRange args) {
            Value s = sigmoid(nb, args[0]);
            Value slope = arith::MulFOp::create(
                nb, s, arith::SubFOp::create(nb, cF32(nb, 1.0), s));
            return arith::MulFOp::create(nb, slope, args[1]);
          });
    }
  }
  FFNGrads grads =
      ffnBackward(b, x, ffnGrad, tokens, weights, activation, want);
  if (gate && want.input)
    grads.input =
        matmulAccumulate(b, logitGrad, transposed(b, gate), grads.input);

  auto finish = [&](Value result, Value grad) -> Value {
    if (!used(result))
      return unread(b, result);
    return castTo(b, grad, cast<RankedTensorType>(result.getType()));
  };
  SmallVector<Value> replacements = {
      finish(op.getInputGrad(), grads.input),
      finish(op.getFc1Grad(), grads.fc1), finish(op.getFc2Grad(), grads.fc2)};
  if (op.getFc3())
    replacements.push_back(finish(op.getFc3Grad(), grads.fc3));
  if (gate)
    replacements.push_back(finish(
        op.getGateGrad(),
        wantGate ? matmulF32(b, transposed(b, x), logitGrad, dim(b, x, 1),
                             cIdx(b, 1))
                 : Value()));
  return replacements;
}

//===----------------------------------------------------------------------===//
// moe.combine_grad
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerCombineGrad(IB &b, moe::CombineGradOp op) {
  Value grad = op.getResultGrad(), x = op.getInput(),
        rowToken = op.getRowToken(), rowWeight = op.getRowWeight();
  Type element = tensorType(x).getElementType();
  Value tokens = dim(b, grad, 0), rows = dim(b, x, 0),
        features = dim(b, x, 1);
  AffineMap id = projection(b, 2, {0, 1}), row = projection(b, 2, {0});
  // result_grad[row_token[r], d] at (r, d) of a generic over [R, D]; 0 for
  // padding rows.
  auto gathered = [&](IB &nb, Value token) {
    Value t = toIndex(nb, token);
    Value valid = inRange(nb, t, tokens);
    Value safe = select(nb, valid, t, cIdx(nb, 0));
    Value g = toF32(nb, extract(nb, grad, {safe, loopIndex(nb, 1)}));
    return select(nb, valid, g, cF32(nb, 0.0));
  };

  Value inputGrad = unread(b, op.getInputGrad());
  if (!op.getInputGrad().use_empty())
    inputGrad = generic(b, empty(b, op.getInputGrad().getType(),
                                 {rows, features}),
                        {rowToken, rowWeight}, {row, row, id}, {kPar, kPar},
                        [&](IB &nb, ValueRange args) {
                          Value v = arith::MulFOp::create(
                              nb, toF32(nb, args[1]), gathered(nb, args[0]));
                          return fromF32(nb, v, element);
                        });
  Value weightGrad = unread(b, op.getRowWeightGrad());
  if (!op.getRowWeightGrad().use_empty()) {
    auto type = RankedTensorType::get({tensorType(x).getDimSize(0)},
                                      b.getF32Type());
    Value dot = generic(
        b, filled(b, type, {rows}, cF32(b, 0.0)), {x, rowToken},
        {id, row, row}, {kPar, kRed}, [&](IB &nb, ValueRange args) {
          return arith::AddFOp::create(
              nb, args[2],
              arith::MulFOp::create(nb, toF32(nb, args[0]),
                                    gathered(nb, args[1])));
        });
    weightGrad = castTo(b, dot, op.getRowWeightGrad().getType());
  }
  return {inputGrad, weightGrad};
}

//===----------------------------------------------------------------------===//
// moe.load_balancing_loss_grad, moe.z_loss_grad
//===----------------------------------------------------------------------===//

SmallVector<Value> lowerLoadBalancingLossGrad(IB &b,
                                              moe::LoadBalancingLossGradOp op) {
  Value probs = op.getProbs(), indices = op.getIndices();
  RankedTensorType type = op.getProbsGrad().getType();
  Value zero = cIdx(b, 0);
  Value tokens = dim(b, probs, 0), experts = dim(b, probs, 1);
  Value assignments = mulI(b, dim(b, indices, 0), dim(b, indices, 1));
  Value counts = countAssignments(
      b, indices, RankedTensorType::get({type.getDimSize(1)}, b.getI64Type()),
      experts);
  // d/dP_e of E sum_e f_e P_e with P_e = mean_t probs[t, e]: E f_e / T.
  Value scale = arith::DivFOp::create(
      b,
      arith::MulFOp::create(b, extract(b, op.getLossGrad(), {}),
                            indexToF32(b, experts)),
      indexToF32(b, tokens));
  Value n = indexToF32(b, assignments);
  Value none = cmpI(b, CmpIPredicate::eq, assignments, zero);
  return {generic(
      b, empty(b, type, {tokens, experts}), {counts},
      {projection(b, 2, {1}), projection(b, 2, {0, 1})}, {kPar, kPar},
      [&](IB &nb, ValueRange args) {
        Value fraction = arith::DivFOp::create(
            nb, arith::SIToFPOp::create(nb, nb.getF32Type(), args[0]), n);
        Value v = arith::MulFOp::create(nb, scale, fraction);
        return fromF32(nb, select(nb, none, cF32(nb, 0.0), v),
                       type.getElementType());
      })};
}

SmallVector<Value> lowerZLossGrad(IB &b, moe::ZLossGradOp op) {
  Value logits = op.getLogits();
  RankedTensorType type = op.getLogitsGrad().getType();
  Value tokens = dim(b, logits, 0), experts = dim(b, logits, 1);
  auto [max, sumExp] = maxAndSumExp(b, logits);
  // d/dx of mean_t lse_t^2 = 2 lse_t softmax_t / T (no elements when T = 0).
  Value scale = arith::DivFOp::create(
      b,
      arith::MulFOp::create(b, cF32(b, 2.0), extract(b, op.getLossGrad(), {})),
      indexToF32(b, tokens));
  AffineMap id = projection(b, 2, {0, 1}), row = projection(b, 2, {0});
  return {generic(
      b, empty(b, type, {tokens, experts}), {logits, max, sumExp},
      {id, row, row, id}, {kPar, kPar}, [&](IB &nb, ValueRange args) {
        Value p = arith::DivFOp::create(
            nb,
            math::ExpOp::create(
                nb, arith::SubFOp::create(nb, toF32(nb, args[0]), args[1])),
            args[2]);
        Value lse =
            arith::AddFOp::create(nb, args[1], math::LogOp::create(nb, args[2]));
        Value v = arith::MulFOp::create(nb, arith::MulFOp::create(nb, scale, lse),
                                        p);
        return fromF32(nb, v, type.getElementType());
      })};
}

} // namespace moec::lowering
