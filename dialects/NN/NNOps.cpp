//===- NNOps.cpp - nn dialect operations ----------------------------------===//

#include "dialects/Common/ShapeUtils.h"
#include "dialects/NN/NNDialect.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/Support/CheckedArithmetic.h"

using namespace mlir;
using namespace moec;
using namespace moec::nn;

namespace {
/// Operands of nn ops are ranked tensors by their ODS constraints; these
/// accessors keep the shape code below short.
RankedTensorType ranked(Type type) { return cast<RankedTensorType>(type); }
RankedTensorType ranked(Value value) { return ranked(value.getType()); }

} // namespace

LogicalResult moec::nn::inferBroadcastResult(
    std::optional<Location> location, StringRef opName, Type lhsType,
    Type rhsType, SmallVectorImpl<Type> &inferred) {
  auto lhs = ranked(lhsType), rhs = ranked(rhsType);
  if (lhs.getElementType() != rhs.getElementType())
    return inferFailure(location, opName, "'lhs' (", lhs, ") and 'rhs' (", rhs,
                        ") must have the same element type");
  auto shape = broadcastShapes(lhs.getShape(), rhs.getShape());
  if (!shape)
    return inferFailure(location, opName, "shapes of 'lhs' (",
                        shapeToString(lhs.getShape()), ") and 'rhs' (",
                        shapeToString(rhs.getShape()),
                        ") are not broadcast-compatible");
  inferred.push_back(RankedTensorType::get(*shape, lhs.getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// LinearOp
//===----------------------------------------------------------------------===//

LogicalResult LinearOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> location,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &inferred) {
  StringRef name = getOperationName();
  auto input = ranked(adaptor.getInput()), weight = ranked(adaptor.getWeight());
  if (input.getRank() < 1)
    return inferFailure(location, name, "'input' must have rank >= 1, got ",
                        input);
  if (weight.getRank() != 2)
    return inferFailure(location, name,
                        "'weight' must have rank 2 ([in, out]), got ", weight);
  if (weight.getElementType() != input.getElementType())
    return inferFailure(location, name, "'weight' element type (",
                        weight.getElementType(),
                        ") must match 'input' element type (",
                        input.getElementType(), ")");
  int64_t in = input.getShape().back();
  if (!dimsCompatible(in, weight.getDimSize(0)))
    return inferFailure(location, name, "'weight' shape (",
                        shapeToString(weight.getShape()),
                        ") must be [in, out] with in = ", in,
                        ", the last dimension of 'input' (",
                        shapeToString(input.getShape()), ")");
  int64_t out = weight.getDimSize(1);
  if (Value bias = adaptor.getBias()) {
    ShapeChecker check(location, name);
    check.elementType(bias, "bias", input.getElementType(), "input");
    check.rank(bias, "bias", 1, "[out]");
    check.dim(bias, "bias", 0, out, "the out size of 'weight'");
    if (!check.passed())
      return failure();
    out = mergeDims(out, ranked(bias).getDimSize(0));
  }
  SmallVector<int64_t> shape(input.getShape());
  shape.back() = out;
  inferred.push_back(RankedTensorType::get(shape, input.getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// MatmulOp
//===----------------------------------------------------------------------===//

LogicalResult MatmulOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> location,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &inferred) {
  StringRef name = getOperationName();
  auto lhs = ranked(adaptor.getLhs()), rhs = ranked(adaptor.getRhs());
  if (lhs.getRank() < 2)
    return inferFailure(location, name, "'lhs' must have rank >= 2, got ",
                        lhs);
  if (rhs.getRank() < 2)
    return inferFailure(location, name, "'rhs' must have rank >= 2, got ",
                        rhs);
  if (lhs.getElementType() != rhs.getElementType())
    return inferFailure(location, name, "'lhs' (", lhs, ") and 'rhs' (", rhs,
                        ") must have the same element type");
  ArrayRef<int64_t> a = lhs.getShape(), b = rhs.getShape();
  int64_t m = a[a.size() - 2], kA = a.back();
  if (adaptor.getTransposeLhs())
    std::swap(m, kA);
  int64_t kB = b[b.size() - 2], n = b.back();
  if (adaptor.getTransposeRhs())
    std::swap(kB, n);
  if (!dimsCompatible(kA, kB))
    return inferFailure(location, name, "contraction sizes differ: 'lhs' (",
                        shapeToString(a), ") gives K = ", kA, ", 'rhs' (",
                        shapeToString(b), ") gives K = ", kB);
  auto batch = broadcastShapes(a.drop_back(2), b.drop_back(2));
  if (!batch)
    return inferFailure(location, name, "batch dimensions of 'lhs' (",
                        shapeToString(a), ") and 'rhs' (", shapeToString(b),
                        ") are not broadcast-compatible");
  batch->push_back(m);
  batch->push_back(n);
  inferred.push_back(RankedTensorType::get(*batch, lhs.getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// Normalisation and softmax
//===----------------------------------------------------------------------===//

/// Checks that `param` is a vector over the last dimension of `input` with the
/// input's element type (norm scales and biases).
static void checkFeatureVector(ShapeChecker &check, RankedTensorType input,
                               Value param, StringRef name) {
  // A scalar has no last dimension to compare against.
  if (input.getRank() < 1) {
    check.fail("'input' must have rank >= 1, got ", input);
    return;
  }
  check.elementType(param, name, input.getElementType(), "input");
  check.rank(param, name, 1, "[features]");
  check.dim(param, name, 0, input.getShape().back(),
            "the last dimension of 'input'");
}

/// Written as !(epsilon >= 0) so that NaN is rejected and -0.0 accepted.
static LogicalResult verifyEpsilon(Operation *op, const APFloat &epsilon) {
  float value = epsilon.convertToFloat();
  if (!(value >= 0.0f))
    return op->emitOpError() << "'epsilon' must be >= 0, got " << value;
  return success();
}

LogicalResult RMSNormOp::verify() {
  if (failed(verifyEpsilon(*this, getEpsilon())))
    return failure();
  ShapeChecker check(*this);
  checkFeatureVector(check, getInput().getType(), getWeight(), "weight");
  return check.status();
}

LogicalResult LayerNormOp::verify() {
  if (failed(verifyEpsilon(*this, getEpsilon())))
    return failure();
  ShapeChecker check(*this);
  checkFeatureVector(check, getInput().getType(), getWeight(), "weight");
  if (Value bias = getBias()) {
    checkFeatureVector(check, getInput().getType(), bias, "bias");
    // A dynamic feature extent in 'input' does not make the two agree.
    check.dim(bias, "bias", 0, dimOf(getWeight(), 0), "the size of 'weight'");
  }
  return check.status();
}

LogicalResult SoftmaxOp::verify() {
  int64_t rank = getInput().getType().getRank();
  int64_t axis = getAxis();
  if (axis < -rank || axis >= rank)
    return emitOpError() << "'axis' " << axis
                         << " is out of range for 'input' ("
                         << shapeToString(getInput().getType().getShape())
                         << ", rank " << rank << ")";
  return success();
}

//===----------------------------------------------------------------------===//
// EmbeddingOp
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> location,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &inferred) {
  auto table = ranked(adaptor.getTable()), ids = ranked(adaptor.getIds());
  if (table.getRank() != 2)
    return inferFailure(location, getOperationName(),
                        "'table' must have rank 2 ([vocab, d]), got ", table);
  SmallVector<int64_t> shape(ids.getShape());
  shape.push_back(table.getDimSize(1));
  inferred.push_back(RankedTensorType::get(shape, table.getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// RotaryOp
//===----------------------------------------------------------------------===//

LogicalResult RotaryOp::verify() {
  RankedTensorType input = getInput().getType();
  ShapeChecker check(*this);
  check.rank(getInput(), "input", 4, "[batch, seq, heads, head_dim]");
  if (!check.passed())
    return failure();
  if (!(getTheta().convertToFloat() > 0.0f))
    return emitOpError() << "'theta' must be > 0, got "
                         << getTheta().convertToFloat();
  int64_t headDim = input.getDimSize(3);
  int64_t rotaryDim = getRotaryDim();
  if (rotaryDim < 0 || rotaryDim % 2 != 0)
    return emitOpError() << "'rotary_dim' must be even and >= 0, got "
                         << rotaryDim;
  if (!ShapedType::isDynamic(headDim)) {
    if (rotaryDim > headDim)
      return emitOpError() << "'rotary_dim' (" << rotaryDim
                           << ") exceeds the head dimension of 'input' ("
                           << shapeToString(input.getShape()) << ")";
    if (rotaryDim == 0 && headDim % 2 != 0)
      return emitOpError() << "head dimension of 'input' ("
                           << shapeToString(input.getShape())
                           << ") must be even to rotate all features";
  }
  if (Value positions = getPositions()) {
    int64_t rank = ranked(positions).getRank();
    if (rank == 2)
      check.dim(positions, "positions", 0, input.getDimSize(0),
                "the batch size of 'input'");
    if (rank == 1 || rank == 2)
      check.dim(positions, "positions", rank - 1, input.getDimSize(1),
                "the sequence length of 'input'");
    else
      check.fail("'positions' must be [seq] or [batch, seq], got ",
                 positions.getType());
  }
  return check.status();
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

/// The result type of attention over `q`, `k`, `v` (shared by nn.attention
/// and nn.attention_grad, whose `grad` must have it).
static LogicalResult inferAttentionResult(std::optional<Location> location,
                                          StringRef name, RankedTensorType q,
                                          RankedTensorType k,
                                          RankedTensorType v,
                                          SmallVectorImpl<Type> &inferred) {
  const char *names[] = {"query", "key", "value"};
  RankedTensorType types[] = {q, k, v};
  for (int i = 0; i < 3; ++i) {
    if (types[i].getRank() != 4)
      return inferFailure(location, name, "'", names[i],
                          "' must have rank 4 ([batch, seq, heads, "
                          "head_dim]), got ",
                          types[i]);
    if (types[i].getElementType() != q.getElementType())
      return inferFailure(location, name, "'", names[i], "' element type (",
                          types[i].getElementType(),
                          ") must match 'query' element type (",
                          q.getElementType(), ")");
  }
  for (int d = 0; d < 3; ++d)
    if (!dimsCompatible(k.getDimSize(d), v.getDimSize(d)))
      return inferFailure(location, name, "'key' (",
                          shapeToString(k.getShape()), ") and 'value' (",
                          shapeToString(v.getShape()),
                          ") must agree in batch, seq_kv and kv_heads");
  if (!dimsCompatible(q.getDimSize(0), k.getDimSize(0)))
    return inferFailure(location, name, "batch of 'query' (",
                        shapeToString(q.getShape()),
                        ") differs from batch of 'key' (",
                        shapeToString(k.getShape()), ")");
  if (!dimsCompatible(q.getDimSize(3), k.getDimSize(3)))
    return inferFailure(location, name, "head_dim of 'query' (",
                        shapeToString(q.getShape()),
                        ") differs from head_dim of 'key' (",
                        shapeToString(k.getShape()), ")");
  int64_t heads = q.getDimSize(2), kvHeads = k.getDimSize(2);
  if (!ShapedType::isDynamic(heads) && !ShapedType::isDynamic(kvHeads) &&
      (kvHeads == 0 || heads % kvHeads != 0))
    return inferFailure(location, name, "heads of 'query' (",
                        shapeToString(q.getShape()),
                        ") must be a multiple of kv_heads of 'key' (",
                        shapeToString(k.getShape()), ")");
  int64_t batch =
      mergeDims(mergeDims(q.getDimSize(0), k.getDimSize(0)), v.getDimSize(0));
  inferred.push_back(RankedTensorType::get(
      {batch, q.getDimSize(1), heads, v.getDimSize(3)}, q.getElementType()));
  return success();
}

LogicalResult AttentionOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> location,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &inferred) {
  return inferAttentionResult(
      location, getOperationName(), ranked(adaptor.getQuery()),
      ranked(adaptor.getKey()), ranked(adaptor.getValue()), inferred);
}

//===----------------------------------------------------------------------===//
// ReshapeOp
//===----------------------------------------------------------------------===//

/// Checks that `sizes` hold one `index` per dynamic dimension of `result`.
static LogicalResult verifyDynamicSizes(Operation *op, ValueRange sizes,
                                        RankedTensorType result) {
  if (sizes.size() == result.getNumDynamicDims())
    return success();
  return op->emitOpError() << "has " << sizes.size()
                           << " 'dynamic_sizes' but result " << result
                           << " has " << result.getNumDynamicDims()
                           << " dynamic dimensions";
}

/// Product of the static extents of `shape`; std::nullopt when it overflows
/// int64_t (types may spell such shapes, and wrapped products are garbage).
static std::optional<int64_t> staticProduct(ArrayRef<int64_t> shape) {
  int64_t product = 1;
  for (int64_t d : shape) {
    if (ShapedType::isDynamic(d))
      continue;
    std::optional<int64_t> next = llvm::checkedMul(product, d);
    if (!next)
      return std::nullopt;
    product = *next;
  }
  return product;
}

/// Whether a static `input` has an element count that `result` can hold.
/// Without `sizesGiven` the element count determines the (at most one)
/// dynamic extent of `result`, so its static extents must not multiply to 0.
/// Dynamic inputs are checked at run time.
static bool elementCountsAgree(RankedTensorType input, RankedTensorType result,
                               bool sizesGiven) {
  if (!input.hasStaticShape())
    return true;
  std::optional<int64_t> count = staticProduct(input.getShape());
  std::optional<int64_t> known = staticProduct(result.getShape());
  if (!count || !known)
    return false;
  if (result.hasStaticShape())
    return *known == *count;
  if (*known == 0)
    return sizesGiven && *count == 0;
  return *count % *known == 0;
}

LogicalResult ReshapeOp::verify() {
  auto input = ranked(getInput()), result = ranked(getResult());
  if (input.getElementType() != result.getElementType())
    return emitOpError() << "result element type (" << result.getElementType()
                         << ") must match 'input' element type ("
                         << input.getElementType() << ")";
  int64_t sizes = getDynamicSizes().size();
  if (sizes == 0 && result.getNumDynamicDims() > 1)
    return emitOpError() << "result " << result
                         << " has more than one dynamic dimension, so it "
                            "needs 'dynamic_sizes' (one per dynamic "
                            "dimension)";
  if (sizes != 0 && failed(verifyDynamicSizes(*this, getDynamicSizes(),
                                               result)))
    return failure();
  if (!elementCountsAgree(input, result, sizes != 0)) {
    InFlightDiagnostic diag = emitOpError() << "cannot reshape 'input' "
                                            << shapeToString(input.getShape());
    if (std::optional<int64_t> count = staticProduct(input.getShape()))
      diag << " (" << *count << " elements)";
    else
      diag << " (at least 2^63 elements)";
    return diag << " to " << shapeToString(result.getShape());
  }
  return success();
}

/// Whether `sizes`, the dynamic sizes of a reshape to `type`, read the
/// extents of the same dimensions of `input` (as a reshape back does).
static bool sizesOfInput(ValueRange sizes, Value input,
                         RankedTensorType type) {
  int64_t next = 0;
  for (int64_t i = 0; i < type.getRank(); ++i) {
    if (!type.isDynamicDim(i))
      continue;
    auto dim = sizes[next++].getDefiningOp<tensor::DimOp>();
    if (!dim || dim.getSource() != input || dim.getConstantIndex() != i)
      return false;
  }
  return true;
}

OpFoldResult ReshapeOp::fold(FoldAdaptor) {
  RankedTensorType type = getType();
  if (getInput().getType() != type)
    return {};
  // One dynamic extent is fixed by the element count; several are the
  // input's only when the sizes say so.
  if (type.getNumDynamicDims() <= 1 ||
      sizesOfInput(getDynamicSizes(), getInput(), type))
    return getInput();
  return {};
}

namespace {
/// reshape(reshape(x)) -> reshape(x): row-major reshapes compose.
struct ComposeReshapes : OpRewritePattern<ReshapeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ReshapeOp op,
                                PatternRewriter &rewriter) const override {
    auto producer = op.getInput().getDefiningOp<ReshapeOp>();
    if (!producer)
      return failure();
    // A dynamic intermediate hides a count mismatch that the composed reshape
    // would fail to verify; leave such a pair for run time to report.
    if (!elementCountsAgree(ranked(producer.getInput()), op.getType(),
                            !op.getDynamicSizes().empty()))
      return failure();
    rewriter.replaceOpWithNewOp<ReshapeOp>(op, op.getType(),
                                           producer.getInput(),
                                           op.getDynamicSizes());
    return success();
  }
};
} // namespace

void ReshapeOp::getCanonicalizationPatterns(RewritePatternSet &patterns,
                                            MLIRContext *context) {
  patterns.add<ComposeReshapes>(context);
}

//===----------------------------------------------------------------------===//
// TransposeOp
//===----------------------------------------------------------------------===//

LogicalResult TransposeOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> location,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &inferred) {
  auto input = ranked(adaptor.getInput());
  ArrayRef<int64_t> perm = adaptor.getPermutation();
  int64_t rank = input.getRank();
  SmallVector<bool> seen(rank, false);
  bool valid = static_cast<int64_t>(perm.size()) == rank;
  for (int64_t p : perm) {
    if (!valid || p < 0 || p >= rank || seen[p]) {
      valid = false;
      break;
    }
    seen[p] = true;
  }
  if (!valid) {
    std::string text;
    llvm::raw_string_ostream os(text);
    llvm::interleaveComma(perm, os);
    return inferFailure(location, getOperationName(), "'permutation' [", text,
                        "] is not a permutation of the ", rank,
                        " dimensions of 'input' (",
                        shapeToString(input.getShape()), ")");
  }
  SmallVector<int64_t> shape;
  for (int64_t p : perm)
    shape.push_back(input.getDimSize(p));
  inferred.push_back(RankedTensorType::get(shape, input.getElementType()));
  return success();
}

OpFoldResult TransposeOp::fold(FoldAdaptor) {
  for (auto [i, p] : llvm::enumerate(getPermutation()))
    if (static_cast<int64_t>(i) != p)
      return {};
  return getInput();
}

namespace {
/// transpose(transpose(x, p1), p2) -> transpose(x, p1 o p2).
struct ComposeTransposes : OpRewritePattern<TransposeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(TransposeOp op,
                                PatternRewriter &rewriter) const override {
    auto producer = op.getInput().getDefiningOp<TransposeOp>();
    if (!producer)
      return failure();
    ArrayRef<int64_t> inner = producer.getPermutation();
    SmallVector<int64_t> composed;
    for (int64_t p : op.getPermutation())
      composed.push_back(inner[p]);
    rewriter.replaceOpWithNewOp<TransposeOp>(op, producer.getInput(),
                                             composed);
    return success();
  }
};
} // namespace

void TransposeOp::getCanonicalizationPatterns(RewritePatternSet &patterns,
                                              MLIRContext *context) {
  patterns.add<ComposeTransposes>(context);
}

//===----------------------------------------------------------------------===//
// CrossEntropyOp
//===----------------------------------------------------------------------===//

/// The 0-d loss type of a cross-entropy over `logits`, `targets` and the
/// optional `mask` (shared by nn.cross_entropy and nn.cross_entropy_grad).
static LogicalResult
inferCrossEntropyResult(std::optional<Location> location, StringRef name,
                        RankedTensorType logits, RankedTensorType targets,
                        Value maskValue, SmallVectorImpl<Type> &inferred) {
  if (logits.getRank() < 1)
    return inferFailure(location, name,
                        "'logits' must have rank >= 1 ([..., vocab]), got ",
                        logits);
  ArrayRef<int64_t> lead = logits.getShape().drop_back();
  auto sameLead = [&](RankedTensorType type) {
    if (type.getRank() != static_cast<int64_t>(lead.size()))
      return false;
    for (auto [a, b] : llvm::zip(type.getShape(), lead))
      if (!dimsCompatible(a, b))
        return false;
    return true;
  };
  if (!sameLead(targets))
    return inferFailure(location, name, "'targets' shape (",
                        shapeToString(targets.getShape()),
                        ") must equal the leading shape of 'logits' (",
                        shapeToString(lead), ")");
  if (maskValue) {
    auto mask = ranked(maskValue);
    if (!sameLead(mask))
      return inferFailure(location, name, "'mask' shape (",
                          shapeToString(mask.getShape()),
                          ") must equal the shape of 'targets', the leading "
                          "shape of 'logits' (",
                          shapeToString(logits.getShape()), ")");
    // The mask weighs per-position losses computed in the logits' type.
    if (mask.getElementType() != logits.getElementType())
      return inferFailure(location, name, "'mask' element type (",
                          mask.getElementType(),
                          ") must match 'logits' element type (",
                          logits.getElementType(), ")");
  }
  inferred.push_back(RankedTensorType::get({}, logits.getElementType()));
  return success();
}

LogicalResult CrossEntropyOp::inferReturnTypes(
    MLIRContext *, std::optional<Location> location, Adaptor adaptor,
    SmallVectorImpl<Type> &inferred) {
  return inferCrossEntropyResult(
      location, getOperationName(), ranked(adaptor.getLogits()),
      ranked(adaptor.getTargets()), adaptor.getMask(), inferred);
}

//===----------------------------------------------------------------------===//
// Reductions
//===----------------------------------------------------------------------===//

LogicalResult moec::nn::inferReductionResult(
    std::optional<Location> location, StringRef opName, Type inputType,
    ArrayRef<int64_t> axes, bool keepDims, SmallVectorImpl<Type> &inferred) {
  auto input = ranked(inputType);
  int64_t rank = input.getRank();
  SmallVector<bool> reduced(rank, false);
  for (int64_t axis : axes) {
    int64_t normalized = axis < 0 ? axis + rank : axis;
    if (normalized < 0 || normalized >= rank)
      return inferFailure(location, opName, "axis ", axis,
                          " is out of range for 'input' (",
                          shapeToString(input.getShape()), ", rank ", rank,
                          ")");
    if (reduced[normalized])
      return inferFailure(location, opName, "axis ", axis, " of 'input' (",
                          shapeToString(input.getShape()),
                          ") is listed twice");
    reduced[normalized] = true;
  }
  SmallVector<int64_t> shape;
  for (int64_t i = 0; i < rank; ++i) {
    if (!reduced[i])
      shape.push_back(input.getDimSize(i));
    else if (keepDims)
      shape.push_back(1);
  }
  inferred.push_back(RankedTensorType::get(shape, input.getElementType()));
  return success();
}

SmallVector<int64_t> moec::nn::normalizeAxes(ArrayRef<int64_t> axes,
                                             int64_t rank) {
  return llvm::map_to_vector(
      axes, [&](int64_t axis) { return normalizeAxis(axis, rank); });
}

//===----------------------------------------------------------------------===//
// Tensor manipulation
//===----------------------------------------------------------------------===//

/// `axis` counted from the front when it names a dimension of `type`
/// (negative values count from the end).
static std::optional<int64_t> checkedAxis(int64_t axis,
                                          RankedTensorType type) {
  int64_t rank = type.getRank();
  if (axis < -rank || axis >= rank)
    return std::nullopt;
  return normalizeAxis(axis, rank);
}

/// Fails inference with "'axis' <axis> is out of range for '<name>' (...)".
static LogicalResult axisOutOfRange(std::optional<Location> location,
                                    StringRef opName, int64_t axis,
                                    StringRef name, RankedTensorType type) {
  return inferFailure(location, opName, "'axis' ", axis,
                      " is out of range for '", name, "' (",
                      shapeToString(type.getShape()), ", rank ",
                      type.getRank(), ")");
}

LogicalResult ConcatOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> location,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &inferred) {
  StringRef name = getOperationName();
  ValueRange inputs = adaptor.getInputs();
  if (inputs.empty())
    return inferFailure(location, name, "needs at least one input");
  RankedTensorType first = ranked(inputs.front());
  std::optional<int64_t> axis = checkedAxis(adaptor.getAxis(), first);
  if (!axis)
    return axisOutOfRange(location, name, adaptor.getAxis(), "inputs", first);
  SmallVector<int64_t> shape(first.getShape());
  shape[*axis] = 0;
  for (auto [index, value] : llvm::enumerate(inputs)) {
    RankedTensorType type = ranked(value);
    if (type.getElementType() != first.getElementType())
      return inferFailure(location, name, "input #", index, " (", type,
                          ") must have the element type of input #0 (",
                          first, ")");
    if (type.getRank() != first.getRank())
      return inferFailure(location, name, "input #", index, " (", type,
                          ") must have the rank of input #0 (", first, ")");
    for (int64_t d = 0; d < type.getRank(); ++d) {
      int64_t extent = type.getDimSize(d);
      if (d == *axis) {
        shape[d] = ShapedType::isDynamic(extent) ||
                           ShapedType::isDynamic(shape[d])
                       ? ShapedType::kDynamic
                       : shape[d] + extent;
        continue;
      }
      if (!dimsCompatible(shape[d], extent))
        return inferFailure(location, name, "input #", index, " (",
                            shapeToString(type.getShape()),
                            ") has extent ", extent, " in dimension ", d,
                            ", where the other inputs have ", shape[d],
                            " (only dimension ", *axis, " may differ)");
      shape[d] = mergeDims(shape[d], extent);
    }
  }
  inferred.push_back(RankedTensorType::get(shape, first.getElementType()));
  return success();
}

LogicalResult SliceOp::inferReturnTypes(MLIRContext *,
                                        std::optional<Location> location,
                                        Adaptor adaptor,
                                        SmallVectorImpl<Type> &inferred) {
  StringRef name = getOperationName();
  RankedTensorType input = ranked(adaptor.getInput());
  int64_t rank = input.getRank();
  ArrayRef<int64_t> starts = adaptor.getStarts(), ends = adaptor.getEnds(),
                    steps = adaptor.getSteps();
  for (auto [list, listName] : {std::pair(starts, "starts"),
                                std::pair(ends, "ends"),
                                std::pair(steps, "steps")})
    if (static_cast<int64_t>(list.size()) != rank)
      return inferFailure(location, name, "'", listName, "' has ",
                          list.size(), " entries but 'input' (",
                          shapeToString(input.getShape()), ") has rank ",
                          rank);
  SmallVector<int64_t> shape;
  for (int64_t d = 0; d < rank; ++d) {
    int64_t step = steps[d], extent = input.getDimSize(d);
    if (step == 0)
      return inferFailure(location, name, "'steps' must be nonzero, got 0 "
                                          "for dimension ",
                          d);
    if (ShapedType::isDynamic(extent)) {
      shape.push_back(ShapedType::kDynamic);
      continue;
    }
    // ONNX Slice: count from the end, then clamp (the upper bound wins for
    // an empty dimension, which makes the slice empty).
    auto clamp = [](int64_t value, int64_t low, int64_t high) {
      return std::min(std::max(value, low), high);
    };
    int64_t start = starts[d] < 0 ? starts[d] + extent : starts[d];
    int64_t end = ends[d] < 0 ? ends[d] + extent : ends[d];
    int64_t count;
    if (step > 0) {
      start = clamp(start, 0, extent);
      end = clamp(end, 0, extent);
      count = end > start ? (end - start - 1) / step + 1 : 0;
    } else {
      start = clamp(start, 0, extent - 1);
      end = clamp(end, -1, extent - 1);
      // (start - end - 1) / step rounds toward zero, and -step may
      // overflow.
      count = start > end ? 1 - (start - end - 1) / step : 0;
    }
    shape.push_back(count);
  }
  inferred.push_back(RankedTensorType::get(shape, input.getElementType()));
  return success();
}

LogicalResult GatherOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> location,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &inferred) {
  RankedTensorType input = ranked(adaptor.getInput());
  RankedTensorType indices = ranked(adaptor.getIndices());
  std::optional<int64_t> axis = checkedAxis(adaptor.getAxis(), input);
  if (!axis)
    return axisOutOfRange(location, getOperationName(), adaptor.getAxis(),
                          "input", input);
  ArrayRef<int64_t> shape = input.getShape();
  SmallVector<int64_t> result(shape.take_front(*axis));
  llvm::append_range(result, indices.getShape());
  llvm::append_range(result, shape.drop_front(*axis + 1));
  inferred.push_back(RankedTensorType::get(result, input.getElementType()));
  return success();
}

LogicalResult WhereOp::inferReturnTypes(MLIRContext *,
                                        std::optional<Location> location,
                                        Adaptor adaptor,
                                        SmallVectorImpl<Type> &inferred) {
  StringRef name = getOperationName();
  RankedTensorType condition = ranked(adaptor.getCondition());
  RankedTensorType onTrue = ranked(adaptor.getTrueValue());
  RankedTensorType onFalse = ranked(adaptor.getFalseValue());
  if (onTrue.getElementType() != onFalse.getElementType())
    return inferFailure(location, name, "'true_value' (", onTrue,
                        ") and 'false_value' (", onFalse,
                        ") must have the same element type");
  std::optional<SmallVector<int64_t>> shape =
      broadcastShapes(onTrue.getShape(), onFalse.getShape());
  if (shape)
    shape = broadcastShapes(condition.getShape(), *shape);
  if (!shape)
    return inferFailure(location, name, "shapes of 'condition' (",
                        shapeToString(condition.getShape()),
                        "), 'true_value' (", shapeToString(onTrue.getShape()),
                        ") and 'false_value' (",
                        shapeToString(onFalse.getShape()),
                        ") are not broadcast-compatible");
  inferred.push_back(RankedTensorType::get(*shape, onTrue.getElementType()));
  return success();
}

LogicalResult CompareOp::inferReturnTypes(MLIRContext *context,
                                          std::optional<Location> location,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &inferred) {
  SmallVector<Type, 1> broadcast;
  if (failed(inferBroadcastResult(location, getOperationName(),
                                  adaptor.getLhs().getType(),
                                  adaptor.getRhs().getType(), broadcast)))
    return failure();
  inferred.push_back(
      ranked(broadcast.front()).clone(IntegerType::get(context, 1)));
  return success();
}

LogicalResult CastOp::verify() {
  RankedTensorType input = getInput().getType(), result = getType();
  if (input.getShape() != result.getShape())
    return emitOpError() << "result shape ("
                         << shapeToString(result.getShape())
                         << ") must equal the shape of 'input' ("
                         << shapeToString(input.getShape()) << ")";
  return success();
}

OpFoldResult CastOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType())
    return getInput();
  return {};
}

LogicalResult ExpandOp::verify() {
  RankedTensorType input = getInput().getType(), result = getType();
  if (input.getElementType() != result.getElementType())
    return emitOpError() << "result element type (" << result.getElementType()
                         << ") must match 'input' element type ("
                         << input.getElementType() << ")";
  int64_t lead = result.getRank() - input.getRank();
  if (lead < 0)
    return emitOpError() << "'input' (" << shapeToString(input.getShape())
                         << ") has more dimensions than the result ("
                         << shapeToString(result.getShape()) << ")";
  for (int64_t i = 0; i < input.getRank(); ++i) {
    int64_t extent = input.getDimSize(i);
    if (extent != 1 && !dimsCompatible(extent, result.getDimSize(i + lead)))
      return emitOpError() << "dimension " << i << " of 'input' ("
                           << shapeToString(input.getShape())
                           << ") must be 1 or the extent of the aligned "
                              "result dimension ("
                           << shapeToString(result.getShape()) << ")";
  }
  return verifyDynamicSizes(*this, getDynamicSizes(), result);
}

LogicalResult TopKOp::inferReturnTypes(MLIRContext *context,
                                       std::optional<Location> location,
                                       Adaptor adaptor,
                                       SmallVectorImpl<Type> &inferred) {
  StringRef name = getOperationName();
  RankedTensorType input = ranked(adaptor.getInput());
  std::optional<int64_t> axis = checkedAxis(adaptor.getAxis(), input);
  if (!axis)
    return axisOutOfRange(location, name, adaptor.getAxis(), "input", input);
  int64_t k = adaptor.getK(), extent = input.getDimSize(*axis);
  if (!ShapedType::isDynamic(extent) && k > extent)
    return inferFailure(location, name, "'k' (", k,
                        ") exceeds the extent of dimension ", *axis,
                        " of 'input' (", shapeToString(input.getShape()), ")");
  SmallVector<int64_t> shape(input.getShape());
  shape[*axis] = k;
  inferred.push_back(RankedTensorType::get(shape, input.getElementType()));
  inferred.push_back(
      RankedTensorType::get(shape, IntegerType::get(context, 64)));
  return success();
}

LogicalResult IotaOp::verify() {
  RankedTensorType result = getType();
  if (result.getRank() != 1)
    return emitOpError() << "result must have rank 1, got " << result;
  return verifyDynamicSizes(*this, getDynamicSizes(), result);
}

LogicalResult TriluOp::verify() {
  RankedTensorType input = getInput().getType();
  if (input.getRank() < 2)
    return emitOpError() << "'input' must have rank >= 2 (matrices in the "
                            "last two dimensions), got "
                         << input;
  return success();
}

//===----------------------------------------------------------------------===//
// Gradient ops
//===----------------------------------------------------------------------===//

LogicalResult RMSNormGradOp::verify() {
  if (failed(verifyEpsilon(*this, getEpsilon())))
    return failure();
  ShapeChecker check(*this);
  checkFeatureVector(check, getInput().getType(), getWeight(), "weight");
  return check.status();
}

LogicalResult LayerNormGradOp::verify() {
  if (failed(verifyEpsilon(*this, getEpsilon())))
    return failure();
  ShapeChecker check(*this);
  checkFeatureVector(check, getInput().getType(), getWeight(), "weight");
  return check.status();
}

LogicalResult EmbeddingGradOp::verify() {
  RankedTensorType table = getTable().getType(), ids = getIds().getType();
  if (table.getRank() != 2)
    return emitOpError() << "'table' must have rank 2 ([vocab, d]), got "
                         << table;
  ShapeChecker check(*this);
  check.elementType(getGrad(), "grad", table.getElementType(), "table");
  check.rank(getGrad(), "grad", ids.getRank() + 1, "the shape of 'ids' + [d]");
  for (int64_t i = 0; i < ids.getRank(); ++i)
    check.dim(getGrad(), "grad", i, ids.getDimSize(i),
              "the matching extent of 'ids'");
  check.dim(getGrad(), "grad", ids.getRank(), table.getDimSize(1),
            "the feature size d of 'table'");
  return check.status();
}

/// `grad` must have the forward result type `expected`, up to dynamic
/// extents.
static LogicalResult verifyResultGrad(Operation *op, Value grad,
                                      Type expected) {
  auto gradType = ranked(grad), type = ranked(expected);
  bool compatible = gradType.getElementType() == type.getElementType() &&
                    gradType.getRank() == type.getRank();
  for (int64_t i = 0; compatible && i < type.getRank(); ++i)
    compatible = dimsCompatible(gradType.getDimSize(i), type.getDimSize(i));
  if (!compatible)
    return op->emitOpError() << "'grad' (" << gradType
                             << ") must have the forward result type " << type;
  return success();
}

LogicalResult AttentionGradOp::verify() {
  SmallVector<Type, 1> inferred;
  if (failed(inferAttentionResult(getLoc(), getOperationName(),
                                  getQuery().getType(), getKey().getType(),
                                  getValue().getType(), inferred)))
    return failure();
  return verifyResultGrad(*this, getGrad(), inferred.front());
}

LogicalResult CrossEntropyGradOp::verify() {
  SmallVector<Type, 1> inferred;
  if (failed(inferCrossEntropyResult(
          getLoc(), getOperationName(), getLogits().getType(),
          getTargets().getType(), getMask(), inferred)))
    return failure();
  return verifyResultGrad(*this, getGrad(), inferred.front());
}

#define GET_OP_CLASSES
#include "dialects/NN/NNOps.cpp.inc"
