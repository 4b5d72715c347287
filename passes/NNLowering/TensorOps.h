//===- TensorOps.h - Lowering of the nn tensor-manipulation ops -*- C++ -*-===//
#ifndef MOEC_PASSES_NNLOWERING_TENSOROPS_H
#define MOEC_PASSES_NNLOWERING_TENSOROPS_H

#include "mlir/IR/PatternMatch.h"

namespace moec::nnlowering {

/// Adds the convert-nn-to-linalg patterns of the ops that ONNX graphs use to
/// move data around (nn.concat, nn.slice, nn.gather, nn.where, nn.compare,
/// nn.cast, nn.expand, nn.topk, nn.iota, nn.trilu).
void populateTensorOpLoweringPatterns(mlir::RewritePatternSet &patterns);

} // namespace moec::nnlowering

#endif // MOEC_PASSES_NNLOWERING_TENSOROPS_H
