//===- Gradients.h - Lowering of the nn gradient ops -------*- C++ -*-===//
#ifndef MOEC_PASSES_NNLOWERING_GRADIENTS_H
#define MOEC_PASSES_NNLOWERING_GRADIENTS_H

#include "mlir/IR/PatternMatch.h"

namespace moec::nnlowering {

/// Adds the convert-nn-to-linalg patterns of the reductions (nn.reduce_sum,
/// nn.reduce_mean, nn.reduce_max) and of the
/// backward ops (nn.unary_grad, nn.rms_norm_grad, nn.layer_norm_grad,
/// nn.embedding_grad, nn.attention_grad, nn.cross_entropy_grad).
void populateGradientLoweringPatterns(mlir::RewritePatternSet &patterns);

} // namespace moec::nnlowering

#endif // MOEC_PASSES_NNLOWERING_GRADIENTS_H
