//===- MicrosoftOps.cpp - com.microsoft operators -> moe ops --------------===//
//
// onnxruntime's MoE contrib op, in the layouts its current schema and its
// CPU kernel accept (moe_helper.h): weights are [E, out, in] ("column major"
// per expert); the legacy shapes [E, in, out] that onnxruntime still accepts
// hold the same bytes. The moe dialect computes `x @ W` with fc1/fc3
// [E, D, F] and fc2 [E, F, D], so initializers are re-laid-out once at
// import (parameters are stored in the new layout); weights that are not
// initializers are reshaped, transposed and split in the program.
//
//===----------------------------------------------------------------------===//

#include "Importer.h"

#include "dialects/MoE/MoEDialect.h"
#include "dialects/NN/NNDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"

#include <array>
#include <cstring>
#include <limits>

using namespace mlir;
using namespace moec;
using namespace moec::onnx_import;
using llvm::SmallVector;
using llvm::Twine;
using Node = onnx::NodeProto;

namespace {

/// How the two halves of a fused gated projection are stored along its
/// output dimension (swiglu_fusion).
enum class GateLayout { Separate, Interleaved, Concatenated };

/// Which columns of a fused [.., 2F] projection one half takes: the gate
/// (first of each pair, or the first half) or the linear part.
int64_t fusedColumn(GateLayout layout, bool gate, int64_t column,
                    int64_t half) {
  if (layout == GateLayout::Interleaved)
    return 2 * column + (gate ? 0 : 1);
  return column + (gate ? 0 : half);
}

/// Rewrites an initializer whose bytes are [E, P, Q] into [E, X, Y] with
/// `out[e, x, y] = in[source(e, x, y)]`.
void relayout(TensorData &data, int64_t p, int64_t q, int64_t x, int64_t y,
              const std::function<std::array<int64_t, 3>(
                  int64_t, int64_t, int64_t)> &source) {
  int64_t experts = data.shape[0];
  int64_t size = onnxElementSize(data.onnxType);
  std::vector<char> out(static_cast<size_t>(experts * x * y * size));
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t i = 0; i < x; ++i)
      for (int64_t j = 0; j < y; ++j) {
        auto [se, sp, sq] = source(e, i, j);
        std::memcpy(out.data() + ((e * x + i) * y + j) * size,
                    data.bytes.data() + ((se * p + sp) * q + sq) * size, size);
      }
  data.bytes = std::move(out);
  data.shape = {experts, x, y};
}

struct MoEShapes {
  int64_t experts = 0, hidden = 0, inter = 0;
  bool legacy = false;
  bool fused = false;
  GateLayout layout = GateLayout::Separate;
};

class MoEImporter {
public:
  MoEImporter(GraphImporter &g, const Node &node) : g(g), node(node) {}

  void run();

private:
  int64_t staticExtent(int index, int64_t dim);
  void checkShape(int index, llvm::ArrayRef<int64_t> expected,
                  llvm::StringRef what);
  /// Expert weight `index` in the dialect's [E, in, out] layout; with a
  /// fused projection, `gate` picks its half.
  Value weight(int index, bool isFc2, std::optional<bool> gate);
  /// Bias `index` ([E, width]), or its gate/linear half.
  Value bias(int index, std::optional<bool> gate);

  GraphImporter &g;
  const Node &node;
  MoEShapes shapes;
};

int64_t MoEImporter::staticExtent(int index, int64_t dim) {
  RankedTensorType type = g.inputType(node, index);
  if (type.getRank() <= dim || type.isDynamicDim(dim))
    g.fail("input " + Twine(index) + " must have a static extent at dimension " +
           Twine(dim));
  return type.getDimSize(dim);
}

void MoEImporter::checkShape(int index, llvm::ArrayRef<int64_t> expected,
                             llvm::StringRef what) {
  if (!g.hasInput(node, index))
    return;
  RankedTensorType type = g.inputType(node, index);
  if (type.getShape() != expected) {
    std::string found, wanted;
    llvm::raw_string_ostream f(found), w(wanted);
    llvm::interleave(type.getShape(), f, "x");
    llvm::interleave(expected, w, "x");
    g.fail(what + " has shape [" + found + "], expected [" + wanted + "]" +
           (shapes.legacy ? " (legacy layout)" : ""));
  }
}

Value MoEImporter::weight(int index, bool isFc2, std::optional<bool> gate) {
  int64_t e = shapes.experts, h = shapes.hidden, f = shapes.inter;
  // onnxruntime reads both layouts as the same bytes, [E, out, in] (the
  // legacy one only declares another shape); the dialect wants [E, in, out]
  // with the experts in reverse order (see run()).
  int64_t in = isFc2 ? f : h, out = isFc2 ? h : f;
  int64_t storedOut = gate ? 2 * f : out;
  llvm::StringRef suffix = !gate ? "" : (*gate ? ".gate" : ".linear");
  if (Value parameter = g.transformedParameter(
          node, index, suffix, [&](TensorData &data) {
            relayout(data, storedOut, in, in, out,
                     [&](int64_t expert, int64_t i, int64_t j) {
                       int64_t column =
                           gate ? fusedColumn(shapes.layout, *gate, j, f) : j;
                       return std::array<int64_t, 3>{e - 1 - expert, column,
                                                     i};
                     });
          }))
    return parameter;
  // Not an initializer: the same re-layout as nn ops of the program.
  OpBuilder &b = g.builder();
  int64_t max = std::numeric_limits<int64_t>::max();
  int64_t min = std::numeric_limits<int64_t>::min();
  Value value = g.reshape(g.input(node, index), {Dim::of(e), Dim::of(storedOut),
                                                 Dim::of(in)});
  value = nn::SliceOp::create(b, g.loc(), value,
                              llvm::ArrayRef<int64_t>{e - 1, 0, 0},
                              llvm::ArrayRef<int64_t>{min, max, max},
                              llvm::ArrayRef<int64_t>{-1, 1, 1});
  value = nn::TransposeOp::create(b, g.loc(), value,
                                  llvm::ArrayRef<int64_t>{0, 2, 1});
  if (gate) {
    bool interleaved = shapes.layout == GateLayout::Interleaved;
    int64_t start = interleaved ? (*gate ? 0 : 1) : (*gate ? 0 : f);
    int64_t end = interleaved ? max : start + f;
    value = nn::SliceOp::create(
        b, g.loc(), value, llvm::ArrayRef<int64_t>{0, 0, start},
        llvm::ArrayRef<int64_t>{max, max, end},
        llvm::ArrayRef<int64_t>{1, 1, interleaved ? 2 : 1});
  }
  return value;
}

Value MoEImporter::bias(int index, std::optional<bool> gate) {
  if (!g.hasInput(node, index))
    return {};
  int64_t e = shapes.experts, f = shapes.inter;
  int64_t width = g.inputType(node, index).getDimSize(1);
  int64_t wanted = gate ? f : width;
  // A [E, W] bias is a [E, 1, W] weight for relayout.
  llvm::StringRef suffix = !gate ? "" : (*gate ? ".gate" : ".linear");
  if (Value parameter = g.transformedParameter(
          node, index, suffix, [&](TensorData &data) {
            relayout(data, 1, width, 1, wanted,
                     [&](int64_t expert, int64_t, int64_t j) {
                       int64_t column =
                           gate ? fusedColumn(shapes.layout, *gate, j, f) : j;
                       return std::array<int64_t, 3>{e - 1 - expert, 0,
                                                     column};
                     });
            data.shape = {e, wanted};
          }))
    return parameter;
  int64_t max = std::numeric_limits<int64_t>::max();
  int64_t min = std::numeric_limits<int64_t>::min();
  bool interleaved = shapes.layout == GateLayout::Interleaved;
  int64_t start = !gate ? 0 : interleaved ? (*gate ? 0 : 1) : (*gate ? 0 : f);
  int64_t end = !gate || interleaved ? max : start + f;
  return nn::SliceOp::create(
      g.builder(), g.loc(), g.input(node, index),
      llvm::ArrayRef<int64_t>{e - 1, start}, llvm::ArrayRef<int64_t>{min, end},
      llvm::ArrayRef<int64_t>{-1, gate && interleaved ? 2 : 1});
}

void MoEImporter::run() {
  OpBuilder &b = g.builder();
  MLIRContext *ctx = g.context();
  int64_t k = g.intAttr(node, "k", 1);
  std::string activationName = g.stringAttr(node, "activation_type", "relu");
  bool normalize = g.intAttr(node, "normalize_routing_weights", 0) != 0;
  int64_t fusion = g.intAttr(node, "swiglu_fusion", 0);
  // Phi-3.5-MoE's SparseMixer top-2 (onnxruntime's CUDA kernel; its CPU
  // kernel ignores the attribute and routes plain top-2).
  bool sparseMixer = g.intAttr(node, "use_sparse_mixer", 0) != 0;
  if (sparseMixer && k != 2)
    g.fail("use_sparse_mixer=1 needs k = 2, not " + Twine(k));
  if (g.intAttr(node, "swiglu_limit_after_activation", 0) != 0)
    g.fail("swiglu_limit_after_activation=1 is not supported (onnxruntime "
           "runs it only on CUDA with quantized weights)");

  moe::Activation activation;
  bool gated = false;
  if (activationName == "relu")
    activation = moe::Activation::relu;
  else if (activationName == "gelu") // the kernels' tanh approximation
    activation = moe::Activation::gelu_tanh;
  else if (activationName == "silu")
    activation = moe::Activation::silu;
  else if (activationName == "identity")
    activation = moe::Activation::identity;
  else if (activationName == "relu2")
    activation = moe::Activation::relu2;
  else if (activationName == "swiglu")
    activation = moe::Activation::swiglu, gated = true;
  else if (activationName == "geglu")
    activation = moe::Activation::geglu_tanh, gated = true;
  else
    g.fail("activation_type '" + activationName +
           "' is unknown (expected relu, gelu, silu, identity, relu2, swiglu "
           "or geglu)");
  if (fusion < 0 || fusion > 2)
    g.fail("swiglu_fusion must be 0, 1 or 2, not " + Twine(fusion));
  bool hasFc3 = g.hasInput(node, 6);
  if (gated) {
    shapes.fused = fusion != 0;
    if (!shapes.fused && activation == moe::Activation::geglu_tanh)
      g.fail("geglu needs fused fc1 weights (swiglu_fusion 1 or 2)");
    if (!shapes.fused && !hasFc3)
      g.fail("swiglu with swiglu_fusion=0 needs fc3_experts_weights");
    if (shapes.fused && hasFc3)
      g.fail("fc3_experts_weights is not used with a fused gate "
             "(swiglu_fusion " + Twine(fusion) + ")");
    shapes.layout = fusion == 1   ? GateLayout::Interleaved
                    : fusion == 2 ? GateLayout::Concatenated
                                  : GateLayout::Separate;
  } else if (hasFc3) {
    // An fc3 gates the activation, Mixtral style: act(x W1) * (x W3).
    if (activation == moe::Activation::silu)
      activation = moe::Activation::swiglu;
    else if (activation == moe::Activation::gelu_tanh)
      activation = moe::Activation::geglu_tanh;
    else
      g.fail("fc3_experts_weights with activation_type '" + activationName +
             "' is not supported (silu and gelu can be gated)");
    gated = true;
  }

  Value input = g.input(node, 0);
  auto inputType = cast<RankedTensorType>(input.getType());
  if (inputType.getRank() != 2 && inputType.getRank() != 3)
    g.fail("the input must be [tokens, hidden] or [batch, seq, hidden]");
  if (!isa<FloatType>(inputType.getElementType()))
    g.fail("the input must be a float tensor");
  RankedTensorType fc1Type = g.inputType(node, 2), fc2Type = g.inputType(node, 4);
  if (fc1Type.getRank() != 3 || fc2Type.getRank() != 3)
    g.fail("fc1_experts_weights and fc2_experts_weights must be 3-d");
  shapes.hidden = staticExtent(0, inputType.getRank() - 1);
  shapes.experts = staticExtent(2, 0);
  int64_t routerExperts = staticExtent(1, 1);
  if (routerExperts != shapes.experts)
    g.fail("router_probs has " + Twine(routerExperts) +
           " experts but the weights have " + Twine(shapes.experts) +
           " (expert parallelism is not supported)");
  int64_t fc2Plane = staticExtent(4, 1) * staticExtent(4, 2);
  if (fc2Plane % shapes.hidden != 0)
    g.fail("fc2_experts_weights does not match hidden size " +
           Twine(shapes.hidden));
  int64_t e = shapes.experts, h = shapes.hidden;
  int64_t f = shapes.inter = fc2Plane / h;
  int64_t fc1Out = shapes.fused ? 2 * f : f;
  // onnxruntime's rule for the legacy [E, in, out] layout.
  shapes.legacy = (h != f && fc2Type.getDimSize(1) == f) ||
                  (h == f && shapes.fused && fc1Type.getDimSize(1) == h);
  if (shapes.legacy) {
    checkShape(2, {e, h, fc1Out}, "fc1_experts_weights");
    checkShape(4, {e, f, h}, "fc2_experts_weights");
    checkShape(6, {e, h, f}, "fc3_experts_weights");
  } else {
    checkShape(2, {e, fc1Out, h}, "fc1_experts_weights");
    checkShape(4, {e, h, f}, "fc2_experts_weights");
    checkShape(6, {e, f, h}, "fc3_experts_weights");
  }
  checkShape(3, {e, fc1Out}, "fc1_experts_bias");
  checkShape(5, {e, h}, "fc2_experts_bias");
  checkShape(7, {e, f}, "fc3_experts_bias");
  if (k < 1 || k > e)
    g.fail("k = " + Twine(k) + " must lie in [1, " + Twine(e) + "]");

  // Tokens as rows.
  Location loc = g.loc();
  SmallVector<Dim> inputShape;
  for (int64_t i = 0; i < inputType.getRank(); ++i)
    inputShape.push_back(g.dimOf(input, i));
  Value tokens = input;
  if (inputType.getRank() == 3) {
    Dim rows = inputShape[0];
    if (rows.isConstant() && inputShape[1].isConstant())
      rows = Dim::of(rows.constant * inputShape[1].constant);
    else
      rows = Dim{0, arith::MulIOp::create(b, loc, g.indexValue(inputShape[0]),
                                           g.indexValue(inputShape[1]))};
    tokens = g.reshape(input, {rows, Dim::of(h)});
  }
  Value logits = g.input(node, 1);
  if (cast<RankedTensorType>(logits.getType()).getElementType() !=
      inputType.getElementType())
    g.fail("router_probs and the input must have the same element type");

  // onnxruntime breaks routing ties toward the higher expert index,
  // moe.token_choice toward the lower one: numbering the experts from the
  // end (logits here, weights in weight() and bias()) gives onnxruntime's
  // choices exactly, e.g. for padding tokens whose logits are all equal.
  int64_t max = std::numeric_limits<int64_t>::max();
  logits = nn::SliceOp::create(b, loc, logits, llvm::ArrayRef<int64_t>{0, e - 1},
                               llvm::ArrayRef<int64_t>{
                                   max, std::numeric_limits<int64_t>::min()},
                               llvm::ArrayRef<int64_t>{1, -1});
  auto choice = moe::TokenChoiceOp::create(
      b, loc, logits, Value(),
      moe::ScoreFunctionAttr::get(ctx, sparseMixer
                                           ? moe::ScoreFunction::sparse_mixer
                                           : moe::ScoreFunction::softmax),
      b.getI64IntegerAttr(k),
      normalize && !sparseMixer ? b.getUnitAttr() : UnitAttr(),
      b.getI64IntegerAttr(1), b.getI64IntegerAttr(1), b.getF32FloatAttr(1.0f));
  auto dispatch = moe::DispatchOp::create(
      b, loc, choice.getIndices(), choice.getWeights(),
      b.getI64IntegerAttr(e), FloatAttr(), UnitAttr(), FloatAttr());
  Value rows = moe::PermuteOp::create(b, loc, tokens, dispatch.getRowToken());

  std::optional<bool> gateHalf, linearHalf;
  if (shapes.fused)
    gateHalf = true, linearHalf = false;
  Value fc1 = weight(2, /*isFc2=*/false, gateHalf);
  Value fc2 = weight(4, /*isFc2=*/true, std::nullopt);
  Value fc3 = shapes.fused ? weight(2, false, linearHalf)
              : hasFc3     ? weight(6, false, std::nullopt)
                           : Value();
  Value fc1Bias = bias(3, gateHalf);
  Value fc2Bias = bias(5, std::nullopt);
  Value fc3Bias = shapes.fused ? bias(3, linearHalf) : bias(7, std::nullopt);

  // SwiGLU's parameters; the defaults give the dialect's plain SwiGLU (and
  // onnxruntime's gated silu).
  bool swiglu = activationName == "swiglu";
  FloatAttr alpha = b.getF32FloatAttr(
      swiglu ? g.floatAttr(node, "activation_alpha", 1.0f) : 1.0f);
  FloatAttr beta = b.getF32FloatAttr(
      swiglu ? g.floatAttr(node, "activation_beta", 0.0f) : 0.0f);
  FloatAttr limit;
  if (swiglu && g.attribute(node, "swiglu_limit"))
    limit = b.getF32FloatAttr(g.floatAttr(node, "swiglu_limit", 0.0f));
  auto ffn = moe::ExpertFFNOp::create(
      b, loc, rows, dispatch.getOffsets(), fc1, fc2, fc3, fc1Bias, fc2Bias,
      fc3Bias, moe::ActivationAttr::get(ctx, activation), alpha, beta, limit);

  // combine accumulates into zeros of the tokens' shape.
  SmallVector<Value> dynamicSizes;
  Dim tokenCount = g.dimOf(tokens, 0);
  RankedTensorType tokensType = g.shapedType(
      {tokenCount, Dim::of(h)}, inputType.getElementType(), dynamicSizes);
  Value zeros = nn::ExpandOp::create(
      b, loc, tokensType, g.scalarConstant(inputType.getElementType(), 0.0),
      dynamicSizes);
  Value output = moe::CombineOp::create(b, loc, tokensType, ffn.getResult(),
                                        dispatch.getRowToken(),
                                        dispatch.getRowWeight(), zeros);
  if (inputType.getRank() == 3)
    output = g.reshape(output, inputShape);
  g.setOutput(node, 0, output);
}

} // namespace

const llvm::StringMap<Converter> &moec::onnx_import::microsoftConverters() {
  static const llvm::StringMap<Converter> table = {
      {"MoE",
       [](GraphImporter &g, const Node &node) { MoEImporter(g, node).run(); }},
      {"QMoE",
       [](GraphImporter &g, const Node &) {
         g.fail("quantized experts (com.microsoft.QMoE) are not supported "
                "yet; export the model with float expert weights "
                "(com.microsoft.MoE)");
       }},
  };
  return table;
}
