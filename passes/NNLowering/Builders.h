//===- Builders.h - IR builders shared by the nn lowerings ---*- C++ -*-===//
//
// The helpers that the patterns of convert-nn-to-linalg share (forward ops in
// ConvertNNToLinalg.cpp, gradient ops in Gradients.cpp). Conventions, stated
// in ConvertNNToLinalg.cpp: f16/bf16 compute in f32 inside generic bodies,
// reductions and contractions accumulate in compute-type tensors, numpy
// broadcasting lives in indexing maps, and dynamic extents are read with
// tensor.dim.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_PASSES_NNLOWERING_BUILDERS_H
#define MOEC_PASSES_NNLOWERING_BUILDERS_H

#include "mlir/Dialect/Utils/ReshapeOpsUtils.h"
#include "mlir/Dialect/Utils/StructuredOpsUtils.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/STLFunctionalExtras.h"

#include <optional>

namespace moec::nnlowering {

using mlir::AffineExpr;
using mlir::AffineMap;
using mlir::ArrayRef;
using mlir::function_ref;
using mlir::Location;
using mlir::MLIRContext;
using mlir::OpBuilder;
using mlir::OpFoldResult;
using mlir::RankedTensorType;
using mlir::ReassociationIndices;
using mlir::SmallVector;
using mlir::Type;
using mlir::Value;
using mlir::ValueRange;
using mlir::utils::IteratorType;

//===----------------------------------------------------------------------===//
// Scalars
//===----------------------------------------------------------------------===//

/// f16 and bf16 compute in f32; wider types compute as they are.
Type computeType(Type elementType);

/// Converts a float scalar to `type` (extension or rounding).
Value castFloat(OpBuilder &b, Location loc, Value value, Type type);

Value floatConst(OpBuilder &b, Location loc, Type type, double value);

Value indexConst(OpBuilder &b, Location loc, int64_t value);

Value minusInfinity(OpBuilder &b, Location loc, Type type);

/// An index value converted to a float of `type`, e.g. an extent that
/// divides a sum into a mean.
Value indexToFloat(OpBuilder &b, Location loc, Value index, Type type);

/// An integer id as an index clamped into [0, size), the row that
/// tensor.extract may read.
Value clampedIndex(OpBuilder &b, Location loc, Value id, Value size);

/// Like clampedIndex, but a negative id first counts from the end (numpy and
/// ONNX indices).
Value wrappedIndex(OpBuilder &b, Location loc, Value id, Value size);

/// Zero (false for i1) of a float or integer type.
Value zeroOf(OpBuilder &b, Location loc, Type type);

Value loopIndex(OpBuilder &b, Location loc, int64_t dim);

/// 1 / (1 + exp(-x)); exp overflows to inf for very negative x, which gives
/// the exact limit 0 rather than NaN.
Value sigmoid(OpBuilder &b, Location loc, Value x);

//===----------------------------------------------------------------------===//
// Shapes and maps
//===----------------------------------------------------------------------===//

RankedTensorType rankedType(Value value);

Value dimValue(OpBuilder &b, Location loc, Value tensor, int64_t dim);

/// The extent that several operand dimensions share (the verifier checked
/// that they agree): a static one when any operand knows it.
OpFoldResult sharedSize(OpBuilder &b, Location loc,
                        ArrayRef<std::pair<Value, int64_t>> dims);

/// Indexing expressions of the first `count` dimensions of `type`, aligned
/// at the end of loops [0, loops) as numpy aligns broadcast shapes.
SmallVector<AffineExpr> broadcastExprs(RankedTensorType type, int64_t count,
                                       int64_t loops, MLIRContext *context);

/// Extent of broadcast loop `loop` of `loops`: `extent` when static, else
/// read from the first operand (value, number of broadcast dims) whose
/// aligned dimension is not a broadcast 1.
OpFoldResult broadcastSize(OpBuilder &b, Location loc, int64_t extent,
                           int64_t loop, int64_t loops,
                           ArrayRef<std::pair<Value, int64_t>> operands);

/// Loop extents and operand indexing maps of an elementwise op whose
/// `operands` broadcast together (numpy) to `type`.
struct BroadcastLoops {
  SmallVector<OpFoldResult> sizes;
  SmallVector<AffineMap> maps;
};
BroadcastLoops broadcastLoops(OpBuilder &b, Location loc, RankedTensorType type,
                              ValueRange operands);

/// The identity map of `loops` loops without the loops in `dropped`.
AffineMap dropDimsMap(int64_t loops, ArrayRef<int64_t> dropped,
                      MLIRContext *context);

/// The map from `loops` loops to the loops `dims`.
AffineMap dimsMap(int64_t loops, ArrayRef<int64_t> dims, MLIRContext *context);

SmallVector<IteratorType> iterators(int64_t loops,
                                    ArrayRef<int64_t> reductions = {});

/// The extents of `tensor` but dimension `dim`.
SmallVector<OpFoldResult> sizesWithout(OpBuilder &b, Location loc, Value tensor,
                                       int64_t dim);

/// A tensor of `sizes` filled with `value`: the init of a reduction.
Value filledTensor(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                   Type elementType, double value);

/// Casts to the op's result type when the lowering knows fewer (or more)
/// static extents than type inference merged from the operands.
Value castToType(OpBuilder &b, Location loc, Value value, Type type);

//===----------------------------------------------------------------------===//
// Generic builders
//===----------------------------------------------------------------------===//

using BodyFn =
    function_ref<SmallVector<Value>(OpBuilder &, Location, ValueRange)>;
using ScalarFn = function_ref<Value(OpBuilder &, Location, ValueRange)>;

/// A linalg.generic whose body computes in f32: floating-point inputs are
/// extended before `body` sees them (the outputs, accumulators or unused,
/// are passed as they are) and the yielded values are rounded to the output
/// element types.
SmallVector<Value> buildGeneric(OpBuilder &b, Location loc, ValueRange inputs,
                                ValueRange inits, ArrayRef<AffineMap> maps,
                                ArrayRef<IteratorType> iteratorTypes,
                                BodyFn body);

/// A parallel generic producing a new tensor of `sizes`; `inputMaps` index
/// the inputs from the result's loops.
Value buildElementwise(OpBuilder &b, Location loc, ValueRange inputs,
                       ArrayRef<AffineMap> inputMaps,
                       ArrayRef<OpFoldResult> sizes, Type elementType,
                       ScalarFn body);

/// The elementwise op of result `type` over `operands` that broadcast
/// together (numpy): broadcastLoops + buildElementwise, cast to `type`.
Value buildBroadcastElementwise(OpBuilder &b, Location loc,
                                RankedTensorType type, ValueRange operands,
                                ScalarFn body);

/// Reduces `input` over dimension `axis` into a compute-type tensor of the
/// other dimensions, starting from `init`. `extras` have the result's shape
/// and are read at the same position. `combine` receives the (extended)
/// input element, the extras and the accumulator, and returns the new
/// accumulator.
Value buildReduction(OpBuilder &b, Location loc, Value input, int64_t axis,
                     double init, ValueRange extras, ScalarFn combine);

/// Rounds a compute-type tensor to `elementType` (no-op when it already has
/// it): the final step of f32 accumulations for f16/bf16 results.
Value convertElements(OpBuilder &b, Location loc, Value tensor,
                      Type elementType);

/// A zero-initialised compute-type accumulator of `sizes`.
Value zeroAccumulator(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                      Type elementType);

/// The body of a contraction: acc + lhs * rhs.
SmallVector<Value> multiplyAccumulate(OpBuilder &b, Location loc,
                                      ValueRange args);

/// linalg.matmul of two rank-2 tensors into a compute-type accumulator.
Value buildMatmul(OpBuilder &b, Location loc, Value lhs, Value rhs);

/// linalg.transpose of a rank-2 tensor.
Value transposeMatrix(OpBuilder &b, Location loc, Value matrix);

/// Reassociation that keeps the last dimension and groups all others.
SmallVector<ReassociationIndices> leadingGroups(int64_t rank);

/// `[..., M, K]` (rank >= 2) as the matrix `[prod(...) * M, K]`.
Value collapseToMatrix(OpBuilder &b, Location loc, Value tensor);

/// Undoes collapseToMatrix of `like`: the rows of `matrix` become the leading
/// dimensions of `like`.
Value expandFromMatrix(OpBuilder &b, Location loc, Value matrix, Value like);
/// Sum of `input` over its last dimension, optionally of a function of the
/// element and a per-row value.
Value sumLastDim(OpBuilder &b, Location loc, Value input, ValueRange extras,
                 ScalarFn term);

/// The extent of the last dimension (the normalised features) as a float.
Value featureCount(OpBuilder &b, Location loc, Value input, Type type);

/// x - sum / count: an element's deviation from its row's mean.
Value deviationFromMean(OpBuilder &b, Location loc, Value x, Value sum,
                        Value count);

/// Layer normalisation's row statistics over the last dimension, in two
/// passes (which does not cancel catastrophically like E[x^2] - E[x]^2):
/// the row sums, and the sums of squared deviations from the row means.
std::pair<Value, Value> layerNormRowSums(OpBuilder &b, Location loc,
                                         Value input, Value count);

/// Maps of a normalisation's final generic: the input itself, per-row
/// statistics, then per-feature parameters.
SmallVector<AffineMap> normalizationMaps(int64_t rank, int64_t rowValues,
                                         int64_t featureValues,
                                         MLIRContext *context);
/// Maximum of `input` over `axis` (-inf for an empty axis).
Value maxOverDim(OpBuilder &b, Location loc, Value input, int64_t axis);

/// Sum of exp(x - max) over `axis`, given the maxima over that axis.
Value sumExpOverDim(OpBuilder &b, Location loc, Value input, int64_t axis,
                    Value max);

/// The product of the extents of `tensor` as an index value.
Value elementCount(OpBuilder &b, Location loc, Value tensor);

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

/// heads / kv_heads of attention operands, the number of query heads sharing
/// a key/value head; std::nullopt when a head count is dynamic (the indexing
/// maps need a constant).
std::optional<int64_t> headGroup(RankedTensorType query, RankedTensorType key);

/// The attention `scale` attribute, or 1/sqrt(head_dim) of `query` (rounded
/// from f64 like the constant a frontend would write) when it is 0.
Value attentionScale(OpBuilder &b, Location loc, float scale, Value query,
                     Type type);

/// Unnormalised attention weights and their row sums, in the compute type.
struct AttentionWeights {
  /// exp(q k^T * scale - max) over [batch, heads, seq_q, seq_kv], 0 where
  /// the causal mask hides the key.
  Value weights;
  /// Sum of `weights` over seq_kv ([batch, heads, seq_q]); 0 for a query
  /// that sees no key.
  Value sum;
  /// The scale of the scores (a compute-type scalar).
  Value scale;
};

/// The masked softmax numerators of attention (the part that nn.attention
/// and nn.attention_grad share); `scale` is the op's attribute. `sizes` are
/// batch, heads, seq_q, seq_kv.
AttentionWeights buildAttentionWeights(OpBuilder &b, Location loc, Value query,
                                       Value key, int64_t group, bool causal,
                                       float scale,
                                       ArrayRef<OpFoldResult> sizes,
                                       Type elementType);

} // namespace moec::nnlowering

#endif // MOEC_PASSES_NNLOWERING_BUILDERS_H
