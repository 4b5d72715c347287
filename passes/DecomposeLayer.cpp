//===- DecomposeLayer.cpp - moe.layer -> fine-grained moe ops -------------===//

#include "dialects/MoE/MoEDialect.h"
#include "passes/GraphBuilders.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"

namespace moec {
#define GEN_PASS_DEF_MOEDECOMPOSELAYER
#include "passes/Passes.h.inc"
} // namespace moec

using namespace mlir;
using namespace moec::moe;

namespace {

void decompose(LayerOp layer, IRRewriter &rewriter) {
  rewriter.setInsertionPoint(layer);
  Location loc = layer.getLoc();
  Value input = layer.getInput();
  int64_t experts = layer.getRouterWeight().getType().getDimSize(1);

  Value logits = GateOp::create(rewriter, loc, input, layer.getRouterWeight(),
                                layer.getRouterBias(), layer.getSeed(),
                                layer.getJitterEpsAttr());

  Value rowToken, rowWeight, offsets, auxLoss, tokensPerExpert, dropped;
  if (layer.getRouting() == Routing::token_choice) {
    auto choice = TokenChoiceOp::create(
        rewriter, loc, logits, layer.getSelectionBias(), layer.getScoreAttr(),
        layer.getKAttr(), layer.getNormalizeAttr(), layer.getNumGroupsAttr(),
        layer.getTopkGroupsAttr(), layer.getScalingFactorAttr());
    auto dispatch = DispatchOp::create(
        rewriter, loc, choice.getIndices(), choice.getWeights(),
        rewriter.getI64IntegerAttr(experts), layer.getCapacityFactorAttr(),
        layer.getBatchPrioritizedAttr(), layer.getEvalCapacityFactorAttr());
    rowToken = dispatch.getRowToken();
    rowWeight = dispatch.getRowWeight();
    offsets = dispatch.getOffsets();
    auxLoss = LoadBalancingLossOp::create(rewriter, loc, choice.getProbs(),
                                          choice.getIndices());
    auto stats = RoutingStatsOp::create(rewriter, loc, offsets,
                                        choice.getIndices());
    tokensPerExpert = stats.getTokensPerExpert();
    dropped = stats.getDropped();
  } else {
    auto choice = ExpertChoiceOp::create(rewriter, loc, logits,
                                         layer.getCapacityFactorAttr(),
                                         layer.getEvalCapacityFactorAttr());
    rowToken = choice.getRowToken();
    rowWeight = choice.getRowWeight();
    offsets = choice.getOffsets();
    // Expert choice fills every expert exactly: there is no imbalance to
    // penalise, and the layer reports a zero auxiliary loss.
    auxLoss = arith::ConstantOp::create(
        rewriter, loc,
        DenseElementsAttr::get(layer.getAuxLoss().getType(),
                               rewriter.getF32FloatAttr(0.0f)));
    auto stats = RoutingStatsOp::create(rewriter, loc, offsets, Value());
    tokensPerExpert = stats.getTokensPerExpert();
    dropped = stats.getDropped();
  }

  Value rows = PermuteOp::create(rewriter, loc, input, rowToken);
  Value expertRows = ExpertFFNOp::create(
      rewriter, loc, rows, offsets, layer.getFc1(), layer.getFc2(),
      layer.getFc3(), layer.getFc1Bias(), layer.getFc2Bias(),
      layer.getFc3Bias(), layer.getActivationAttr(),
      layer.getSwigluAlphaAttr(), layer.getSwigluBetaAttr(),
      layer.getSwigluLimitAttr());

  // The shared expert's output seeds the accumulator, so combine adds the
  // routed experts on top of it without a separate add.
  Value init;
  if (layer.getSharedFc1())
    init = SharedExpertOp::create(rewriter, loc, input, layer.getSharedFc1(),
                                  layer.getSharedFc2(), layer.getSharedFc3(),
                                  layer.getSharedGate(),
                                  layer.getActivationAttr());
  else
    init = moec::createZeros(rewriter, loc, input, expertRows,
                             layer.getOutput().getType());
  // The shared expert may know an extent the routed experts leave dynamic
  // (or the reverse); combine needs its accumulator in the layer's type.
  if (init.getType() != layer.getOutput().getType())
    init = tensor::CastOp::create(rewriter, loc, layer.getOutput().getType(),
                                  init);
  Value output =
      CombineOp::create(rewriter, loc, expertRows, rowToken, rowWeight, init);
  Value zLoss = ZLossOp::create(rewriter, loc, logits);

  rewriter.replaceOp(layer,
                     {output, auxLoss, zLoss, tokensPerExpert, dropped});
}

struct MoEDecomposeLayer
    : moec::impl::MoEDecomposeLayerBase<MoEDecomposeLayer> {
  void runOnOperation() override {
    SmallVector<LayerOp> layers;
    getOperation()->walk([&](LayerOp layer) { layers.push_back(layer); });
    IRRewriter rewriter(&getContext());
    for (LayerOp layer : layers)
      decompose(layer, rewriter);
  }
};

} // namespace
