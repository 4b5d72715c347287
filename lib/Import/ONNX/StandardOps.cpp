//===- StandardOps.cpp - ai.onnx operators -> nn ops ----------------------===//
//
// One converter per operator of the standard domain. Shape computations on
// known integers are evaluated here (see Importer.h); everything else
// becomes nn ops, which infer their own result types.
//
//===----------------------------------------------------------------------===//

#include "Importer.h"

#include "dialects/NN/NNDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace moec;
using namespace moec::onnx_import;
using llvm::SmallVector;
using llvm::Twine;
using Node = onnx::NodeProto;

namespace {

//===----------------------------------------------------------------------===//
// Arithmetic on known integers
//===----------------------------------------------------------------------===//

enum class IntOp { Add, Sub, Mul, Div, Eq, Lt, Gt, Le, Ge };

/// `lhs op rhs` on two known elements: folded when both are constants,
/// arith ops on `index` values otherwise. Comparisons give 0 or 1.
Dim combine(GraphImporter &g, IntOp op, const Dim &lhs, const Dim &rhs) {
  if (lhs.isConstant() && rhs.isConstant()) {
    int64_t a = lhs.constant, c = rhs.constant;
    switch (op) {
    case IntOp::Add:
      return Dim::of(a + c);
    case IntOp::Sub:
      return Dim::of(a - c);
    case IntOp::Mul:
      return Dim::of(a * c);
    case IntOp::Div:
      if (c == 0)
        g.fail("integer division by zero in a shape computation");
      return Dim::of(a / c); // truncates toward zero, as onnxruntime does
    case IntOp::Eq:
      return Dim::of(a == c);
    case IntOp::Lt:
      return Dim::of(a < c);
    case IntOp::Gt:
      return Dim::of(a > c);
    case IntOp::Le:
      return Dim::of(a <= c);
    case IntOp::Ge:
      return Dim::of(a >= c);
    }
  }
  // Identities keep symbolic extents recognisable (S * 1 is S).
  if ((op == IntOp::Mul || op == IntOp::Div) && rhs.is(1))
    return lhs;
  if (op == IntOp::Mul && lhs.is(1))
    return rhs;
  if ((op == IntOp::Add || op == IntOp::Sub) && rhs.is(0))
    return lhs;
  if (op == IntOp::Add && lhs.is(0))
    return rhs;
  OpBuilder &b = g.builder();
  Location loc = g.loc();
  Value a = g.indexValue(lhs), c = g.indexValue(rhs);
  auto predicate = [&](arith::CmpIPredicate p) {
    Value bit = arith::CmpIOp::create(b, loc, p, a, c);
    return Dim{0, arith::SelectOp::create(
                      b, loc, bit, arith::ConstantIndexOp::create(b, loc, 1),
                      arith::ConstantIndexOp::create(b, loc, 0))};
  };
  switch (op) {
  case IntOp::Add:
    return {0, arith::AddIOp::create(b, loc, a, c)};
  case IntOp::Sub:
    return {0, arith::SubIOp::create(b, loc, a, c)};
  case IntOp::Mul:
    return {0, arith::MulIOp::create(b, loc, a, c)};
  case IntOp::Div:
    return {0, arith::DivSIOp::create(b, loc, a, c)};
  case IntOp::Eq:
    return predicate(arith::CmpIPredicate::eq);
  case IntOp::Lt:
    return predicate(arith::CmpIPredicate::slt);
  case IntOp::Gt:
    return predicate(arith::CmpIPredicate::sgt);
  case IntOp::Le:
    return predicate(arith::CmpIPredicate::sle);
  case IntOp::Ge:
    return predicate(arith::CmpIPredicate::sge);
  }
  llvm_unreachable("covered switch");
}

/// Elementwise `op` on two known tensors with numpy broadcasting (rank 0 or
/// 1, so one side has one element or both have the same count).
std::optional<KnownInts> combineKnown(GraphImporter &g, IntOp op,
                                      const KnownInts &lhs,
                                      const KnownInts &rhs, Type resultType) {
  size_t n = std::max(lhs.elements.size(), rhs.elements.size());
  if ((lhs.elements.size() != n && lhs.elements.size() != 1) ||
      (rhs.elements.size() != n && rhs.elements.size() != 1))
    return std::nullopt;
  KnownInts result;
  result.scalar = lhs.scalar && rhs.scalar;
  result.elementType = resultType;
  for (size_t i = 0; i < n; ++i)
    result.elements.push_back(
        combine(g, op, lhs.elements[lhs.elements.size() == 1 ? 0 : i],
                rhs.elements[rhs.elements.size() == 1 ? 0 : i]));
  return result;
}

/// The input's shape as known elements (constants and tensor.dim values).
SmallVector<Dim> shapeOf(GraphImporter &g, Value tensor) {
  SmallVector<Dim> dims;
  auto type = cast<RankedTensorType>(tensor.getType());
  for (int64_t i = 0; i < type.getRank(); ++i)
    dims.push_back(g.dimOf(tensor, i));
  return dims;
}

/// The axes of a reduction, Squeeze or Unsqueeze: an input from
/// `inputSince` on, an attribute before.
std::optional<SmallVector<int64_t>> axesOf(GraphImporter &g, const Node &node,
                                           int64_t inputSince,
                                           int inputIndex = 1) {
  if (g.opset() >= inputSince) {
    if (!g.hasInput(node, inputIndex))
      return std::nullopt;
    std::optional<SmallVector<int64_t>> axes =
        g.constantInts(node, inputIndex);
    if (!axes)
      g.fail("the axes must be constants");
    return axes;
  }
  return g.intsAttr(node, "axes");
}

RankedTensorType tensorType(Value v) {
  return cast<RankedTensorType>(v.getType());
}

void requireFloat(GraphImporter &g, Value v, llvm::StringRef what) {
  if (!isa<FloatType>(tensorType(v).getElementType()))
    g.fail(what + " must be a float tensor");
}

//===----------------------------------------------------------------------===//
// Constants and shapes
//===----------------------------------------------------------------------===//

void convertConstant(GraphImporter &g, const Node &node) {
  OpBuilder &b = g.builder();
  if (const onnx::AttributeProto *value = g.attribute(node, "value")) {
    TensorData data = readTensor(value->t(), g.modelDirectory());
    g.setConstantOutput(node, 0, g.constantFrom(data));
    return;
  }
  auto floats = [&](llvm::ArrayRef<float> v, bool scalar) {
    SmallVector<int64_t> shape;
    if (!scalar)
      shape.push_back(v.size());
    return DenseElementsAttr::get(
        RankedTensorType::get(shape, b.getF32Type()), v);
  };
  auto ints = [&](llvm::ArrayRef<int64_t> v, bool scalar) {
    SmallVector<int64_t> shape;
    if (!scalar)
      shape.push_back(v.size());
    return DenseElementsAttr::get(
        RankedTensorType::get(shape, b.getI64Type()), v);
  };
  if (const onnx::AttributeProto *a = g.attribute(node, "value_float"))
    return g.setConstantOutput(node, 0, floats({a->f()}, true));
  if (const onnx::AttributeProto *a = g.attribute(node, "value_floats"))
    return g.setConstantOutput(
        node, 0,
        floats(SmallVector<float>(a->floats().begin(), a->floats().end()),
               false));
  if (const onnx::AttributeProto *a = g.attribute(node, "value_int"))
    return g.setConstantOutput(node, 0, ints({a->i()}, true));
  if (const onnx::AttributeProto *a = g.attribute(node, "value_ints"))
    return g.setConstantOutput(
        node, 0,
        ints(SmallVector<int64_t>(a->ints().begin(), a->ints().end()), false));
  g.fail("only tensor, float(s) and int(s) values are supported");
}

void convertShape(GraphImporter &g, const Node &node) {
  RankedTensorType type = g.inputType(node, 0);
  int64_t rank = type.getRank();
  int64_t start = g.intAttr(node, "start", 0);
  int64_t end = g.intAttr(node, "end", rank);
  start = std::clamp<int64_t>(start < 0 ? start + rank : start, 0, rank);
  end = std::clamp<int64_t>(end < 0 ? end + rank : end, 0, rank);
  KnownInts known;
  known.elementType = g.builder().getI64Type();
  if (type.hasStaticShape()) {
    for (int64_t i = start; i < end; ++i)
      known.elements.push_back(Dim::of(type.getDimSize(i)));
  } else {
    Value tensor = g.input(node, 0);
    for (int64_t i = start; i < end; ++i)
      known.elements.push_back(g.dimOf(tensor, i));
  }
  g.setKnownOutput(node, 0, known);
}

void convertConstantOfShape(GraphImporter &g, const Node &node) {
  std::optional<KnownInts> shape = g.knownInput(node, 0);
  if (!shape)
    g.fail("the shape must be known at compile time");
  OpBuilder &b = g.builder();
  Type element = b.getF32Type();
  double value = 0.0;
  if (const onnx::AttributeProto *attr = g.attribute(node, "value")) {
    TensorData data = readTensor(attr->t(), g.modelDirectory());
    DenseElementsAttr constant = g.constantFrom(data);
    if (constant.getNumElements() != 1)
      g.fail("the value must have one element");
    element = constant.getElementType();
    if (isa<FloatType>(element))
      value = (*constant.getValues<APFloat>().begin()).convertToDouble();
    else
      value = (*constant.getValues<APInt>().begin()).getSExtValue();
  }
  // A short vector of integers stays known (exporters build shapes this way).
  if (isa<IntegerType>(element) && shape->elements.size() == 1 &&
      shape->elements[0].isConstant() && shape->elements[0].constant <= 64) {
    KnownInts known;
    known.elementType = element;
    known.elements.assign(shape->elements[0].constant,
                          Dim::of(static_cast<int64_t>(value)));
    return g.setKnownOutput(node, 0, known);
  }
  SmallVector<Value> dynamicSizes;
  RankedTensorType type = g.shapedType(shape->elements, element, dynamicSizes);
  Value scalar = g.scalarConstant(element, value);
  g.setOutput(node, 0,
              nn::ExpandOp::create(b, g.loc(), type, scalar, dynamicSizes));
}

void convertRange(GraphImporter &g, const Node &node) {
  RankedTensorType startType = g.inputType(node, 0);
  Type element = startType.getElementType();
  OpBuilder &b = g.builder();
  if (isa<IntegerType>(element)) {
    std::optional<KnownInts> start = g.knownInput(node, 0),
                             limit = g.knownInput(node, 1),
                             delta = g.knownInput(node, 2);
    if (!start || !limit || !delta || !delta->elements[0].isConstant())
      g.fail("start, limit and delta must be known at compile time (delta a "
             "constant)");
    int64_t step = delta->elements[0].constant;
    if (step == 0)
      g.fail("delta is 0");
    Dim first = start->elements[0], last = limit->elements[0];
    // n = max(ceil((limit - start) / delta), 0)
    Dim count;
    if (first.isConstant() && last.isConstant()) {
      double span = static_cast<double>(last.constant - first.constant);
      count = Dim::of(std::max<int64_t>(
          static_cast<int64_t>(std::ceil(span / step)), 0));
    } else {
      Value difference =
          g.indexValue(combine(g, IntOp::Sub, last, first));
      Value stepValue = arith::ConstantIndexOp::create(b, g.loc(), step);
      Value ceil = arith::CeilDivSIOp::create(b, g.loc(), difference, stepValue);
      count = {0, arith::MaxSIOp::create(
                      b, g.loc(), ceil,
                      arith::ConstantIndexOp::create(b, g.loc(), 0))};
    }
    if (count.isConstant() && count.constant <= 64) {
      KnownInts known;
      known.elementType = element;
      for (int64_t i = 0; i < count.constant; ++i)
        known.elements.push_back(
            combine(g, IntOp::Add, first, Dim::of(i * step)));
      return g.setKnownOutput(node, 0, known);
    }
    SmallVector<Value> dynamicSizes;
    RankedTensorType type = g.shapedType({count}, element, dynamicSizes);
    Value result = nn::IotaOp::create(b, g.loc(), type, dynamicSizes);
    if (step != 1)
      result = nn::MulOp::create(b, g.loc(), result,
                                 g.scalarConstant(element, step));
    if (!first.is(0))
      result = nn::AddOp::create(
          b, g.loc(), result,
          first.isConstant() ? g.scalarConstant(element, first.constant)
                             : g.materialize(KnownInts{{first}, true, element}));
    return g.setOutput(node, 0, result);
  }
  // Floating-point ranges: constants only.
  auto scalarOf = [&](int index) {
    DenseElementsAttr c = g.constantInput(node, index);
    if (!c || c.getNumElements() != 1)
      g.fail("a float Range needs constant start, limit and delta");
    return (*c.getValues<APFloat>().begin()).convertToDouble();
  };
  double start = scalarOf(0), limit = scalarOf(1), delta = scalarOf(2);
  if (delta == 0)
    g.fail("delta is 0");
  int64_t count = std::max<int64_t>(
      static_cast<int64_t>(std::ceil((limit - start) / delta)), 0);
  auto type = RankedTensorType::get({count}, element);
  Value result = nn::IotaOp::create(b, g.loc(), type, ValueRange());
  if (delta != 1)
    result = nn::MulOp::create(b, g.loc(), result,
                               g.scalarConstant(element, delta));
  if (start != 0)
    result = nn::AddOp::create(b, g.loc(), result,
                               g.scalarConstant(element, start));
  g.setOutput(node, 0, result);
}

void convertCast(GraphImporter &g, const Node &node) {
  int64_t to = g.intAttr(node, "to", 0);
  Type target = g.elementType(static_cast<int32_t>(to));
  if (std::optional<KnownInts> known = g.knownInput(node, 0);
      known && isa<IntegerType>(target)) {
    KnownInts result = *known;
    result.elementType = target;
    if (target.isInteger(1))
      for (Dim &d : result.elements)
        d = combine(g, IntOp::Eq, combine(g, IntOp::Eq, d, Dim::of(0)),
                    Dim::of(0));
    return g.setKnownOutput(node, 0, result);
  }
  Value input = g.input(node, 0);
  RankedTensorType type = tensorType(input);
  if (type.getElementType() == target)
    return g.setOutput(node, 0, input);
  g.setOutput(node, 0,
              nn::CastOp::create(g.builder(), g.loc(), type.clone(target),
                                 input));
}

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

void convertReshape(GraphImporter &g, const Node &node) {
  std::optional<KnownInts> shape = g.knownInput(node, 1);
  if (!shape)
    g.fail("the target shape must be known at compile time (computed from "
           "constants and input shapes)");
  bool allowZero = g.intAttr(node, "allowzero", 0) != 0;
  if (std::optional<KnownInts> known = g.knownInput(node, 0);
      known && shape->elements.size() <= 1) {
    if (shape->elements.size() == 0 && known->elements.size() != 1)
      g.fail("cannot reshape " + Twine(known->elements.size()) +
             " elements to a scalar");
    KnownInts result = *known;
    result.scalar = shape->elements.empty();
    return g.setKnownOutput(node, 0, result);
  }
  Value input = g.input(node, 0);
  SmallVector<Dim> inputShape = shapeOf(g, input);
  SmallVector<Dim> dims;
  int inferred = -1;
  for (auto [i, d] : llvm::enumerate(shape->elements)) {
    if (d.is(0) && !allowZero) {
      if (i >= inputShape.size())
        g.fail("shape entry 0 at position " + Twine(i) +
               " has no input dimension to copy");
      dims.push_back(inputShape[i]);
    } else if (d.is(-1)) {
      if (inferred >= 0)
        g.fail("the shape has more than one -1");
      inferred = i;
      dims.push_back(Dim::of(1));
    } else {
      if (d.isConstant() && d.constant < -1)
        g.fail("shape entry " + Twine(d.constant) + " is invalid");
      dims.push_back(d);
    }
  }
  if (inferred >= 0) {
    Dim total = Dim::of(1), known = Dim::of(1);
    for (const Dim &d : inputShape)
      total = combine(g, IntOp::Mul, total, d);
    for (auto [i, d] : llvm::enumerate(dims))
      if (static_cast<int>(i) != inferred)
        known = combine(g, IntOp::Mul, known, d);
    if (total.isConstant() && known.isConstant() &&
        (known.constant == 0 || total.constant % known.constant != 0))
      g.fail("cannot infer the -1 entry: " + Twine(total.constant) +
             " elements do not divide by " + Twine(known.constant));
    dims[inferred] = combine(g, IntOp::Div, total, known);
  }
  g.setOutput(node, 0, g.reshape(input, dims));
}

void convertUnsqueeze(GraphImporter &g, const Node &node) {
  std::optional<SmallVector<int64_t>> axes = axesOf(g, node, 13);
  if (!axes)
    g.fail("the axes are required");
  if (std::optional<KnownInts> known = g.knownInput(node, 0);
      known && known->scalar && axes->size() == 1) {
    KnownInts result = *known;
    result.scalar = false;
    return g.setKnownOutput(node, 0, result);
  }
  Value input = g.input(node, 0);
  SmallVector<Dim> inputShape = shapeOf(g, input);
  int64_t rank = inputShape.size() + axes->size();
  SmallVector<bool> inserted(rank, false);
  for (int64_t axis : *axes) {
    int64_t a = g.normalizeAxis(axis, rank);
    if (inserted[a])
      g.fail("axis " + Twine(axis) + " appears twice");
    inserted[a] = true;
  }
  SmallVector<Dim> dims;
  size_t next = 0;
  for (int64_t i = 0; i < rank; ++i)
    dims.push_back(inserted[i] ? Dim::of(1) : inputShape[next++]);
  g.setOutput(node, 0, g.reshape(input, dims));
}

void convertSqueeze(GraphImporter &g, const Node &node) {
  std::optional<SmallVector<int64_t>> axes = axesOf(g, node, 13);
  if (std::optional<KnownInts> known = g.knownInput(node, 0);
      known && !known->scalar && known->elements.size() == 1) {
    KnownInts result = *known;
    result.scalar = true;
    return g.setKnownOutput(node, 0, result);
  }
  Value input = g.input(node, 0);
  RankedTensorType type = tensorType(input);
  int64_t rank = type.getRank();
  SmallVector<bool> removed(rank, false);
  if (axes) {
    for (int64_t axis : *axes) {
      int64_t a = g.normalizeAxis(axis, rank);
      if (!type.isDynamicDim(a) && type.getDimSize(a) != 1)
        g.fail("dimension " + Twine(a) + " has extent " +
               Twine(type.getDimSize(a)) + ", not 1");
      removed[a] = true;
    }
  } else {
    for (int64_t i = 0; i < rank; ++i) {
      if (type.isDynamicDim(i))
        g.fail("without axes, every dimension must be static (dimension " +
               Twine(i) + " is dynamic)");
      removed[i] = type.getDimSize(i) == 1;
    }
  }
  SmallVector<Dim> dims;
  SmallVector<Dim> inputShape = shapeOf(g, input);
  for (int64_t i = 0; i < rank; ++i)
    if (!removed[i])
      dims.push_back(inputShape[i]);
  g.setOutput(node, 0, g.reshape(input, dims));
}

void convertTranspose(GraphImporter &g, const Node &node) {
  Value input = g.input(node, 0);
  int64_t rank = tensorType(input).getRank();
  SmallVector<int64_t> permutation;
  if (std::optional<SmallVector<int64_t>> perm = g.intsAttr(node, "perm"))
    permutation = *perm;
  else
    for (int64_t i = rank - 1; i >= 0; --i)
      permutation.push_back(i);
  if (static_cast<int64_t>(permutation.size()) != rank)
    g.fail("perm has " + Twine(permutation.size()) +
           " entries for a tensor of rank " + Twine(rank));
  g.setOutput(node, 0,
              nn::TransposeOp::create(g.builder(), g.loc(), input,
                                      permutation));
}

void convertConcat(GraphImporter &g, const Node &node) {
  int64_t axis = g.intAttr(node, "axis", 0);
  SmallVector<KnownInts> known;
  for (int i = 0; i < node.input_size(); ++i)
    if (std::optional<KnownInts> k = g.knownInput(node, i); k && !k->scalar)
      known.push_back(*k);
  if (static_cast<int>(known.size()) == node.input_size() &&
      (axis == 0 || axis == -1)) {
    KnownInts result = known.front();
    for (size_t i = 1; i < known.size(); ++i)
      llvm::append_range(result.elements, known[i].elements);
    return g.setKnownOutput(node, 0, result);
  }
  SmallVector<Value> inputs;
  for (int i = 0; i < node.input_size(); ++i)
    if (g.hasInput(node, i))
      inputs.push_back(g.input(node, i));
  if (inputs.size() == 1)
    return g.setOutput(node, 0, inputs.front());
  g.setOutput(node, 0,
              nn::ConcatOp::create(g.builder(), g.loc(), inputs, axis));
}

/// ONNX Slice's clamping of one start/end pair (positive step) on a known
/// extent; the result is [start, start + size).
std::pair<Dim, Dim> clampSlice(GraphImporter &g, Dim start, Dim end,
                               Dim extent) {
  OpBuilder &b = g.builder();
  Location loc = g.loc();
  auto clamp = [&](Dim v) -> Dim {
    if (v.isConstant() && extent.isConstant()) {
      int64_t x = v.constant < 0 ? v.constant + extent.constant : v.constant;
      return Dim::of(std::clamp<int64_t>(x, 0, extent.constant));
    }
    if (v.isConstant() && v.constant >= 0 && extent.isConstant())
      return Dim::of(std::min(v.constant, extent.constant));
    Value n = g.indexValue(extent);
    Value x;
    if (v.isConstant()) {
      if (v.constant == std::numeric_limits<int64_t>::max())
        return extent;
      x = v.constant < 0
              ? Value(arith::AddIOp::create(
                    b, loc, n, arith::ConstantIndexOp::create(b, loc, v.constant)))
              : arith::ConstantIndexOp::create(b, loc, v.constant);
    } else {
      // A runtime value may be negative: count it from the end then.
      Value zero = arith::ConstantIndexOp::create(b, loc, 0);
      Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                             v.dynamic, zero);
      x = arith::SelectOp::create(
          b, loc, negative, arith::AddIOp::create(b, loc, n, v.dynamic),
          v.dynamic);
    }
    x = arith::MaxSIOp::create(b, loc, x,
                               arith::ConstantIndexOp::create(b, loc, 0));
    return {0, arith::MinSIOp::create(b, loc, x, n)};
  };
  Dim first = clamp(start), last = clamp(end);
  Dim size = combine(g, IntOp::Sub, last, first);
  if (size.isConstant())
    size.constant = std::max<int64_t>(size.constant, 0);
  else
    size = {0, arith::MaxSIOp::create(b, loc, size.dynamic,
                                      arith::ConstantIndexOp::create(b, loc, 0))};
  return {first, size};
}

void convertSlice(GraphImporter &g, const Node &node) {
  std::optional<KnownInts> starts = g.knownInput(node, 1),
                           ends = g.knownInput(node, 2);
  if (!starts || !ends)
    g.fail("starts and ends must be known at compile time");
  if (starts->elements.size() != ends->elements.size())
    g.fail("starts and ends differ in length");
  size_t n = starts->elements.size();
  SmallVector<int64_t> axes, steps(n, 1);
  if (g.hasInput(node, 3)) {
    std::optional<SmallVector<int64_t>> a = g.constantInts(node, 3);
    if (!a)
      g.fail("the axes must be constants");
    axes = *a;
  } else {
    for (size_t i = 0; i < n; ++i)
      axes.push_back(i);
  }
  if (g.hasInput(node, 4)) {
    std::optional<SmallVector<int64_t>> s = g.constantInts(node, 4);
    if (!s)
      g.fail("the steps must be constants");
    steps = *s;
  }
  if (axes.size() != n || steps.size() != n)
    g.fail("starts, ends, axes and steps differ in length");
  for (int64_t step : steps)
    if (step == 0)
      g.fail("a step is 0");

  // A slice of a known vector (shape arithmetic).
  if (std::optional<KnownInts> known = g.knownInput(node, 0);
      known && !known->scalar && n == 1 && starts->allConstant() &&
      ends->allConstant()) {
    int64_t extent = known->elements.size();
    int64_t step = steps[0];
    int64_t start = starts->elements[0].constant,
            end = ends->elements[0].constant;
    if (start < 0)
      start += extent;
    if (end < 0)
      end += extent;
    KnownInts result;
    result.elementType = known->elementType;
    if (step > 0) {
      start = std::clamp<int64_t>(start, 0, extent);
      end = std::clamp<int64_t>(end, 0, extent);
      for (int64_t i = start; i < end; i += step)
        result.elements.push_back(known->elements[i]);
    } else {
      start = std::clamp<int64_t>(start, -1, extent - 1);
      end = std::clamp<int64_t>(end, -1, extent - 1);
      for (int64_t i = start; i > end; i += step)
        result.elements.push_back(known->elements[i]);
    }
    return g.setKnownOutput(node, 0, result);
  }

  Value input = g.input(node, 0);
  RankedTensorType type = tensorType(input);
  int64_t rank = type.getRank();
  SmallVector<int64_t> allStarts(rank, 0),
      allEnds(rank, std::numeric_limits<int64_t>::max()), allSteps(rank, 1);
  bool dynamicBounds = !starts->allConstant() || !ends->allConstant();
  SmallVector<std::pair<Dim, Dim>> dynamicAxes(rank, {Dim::of(0), Dim::of(0)});
  SmallVector<bool> sliced(rank, false);
  for (size_t i = 0; i < n; ++i) {
    int64_t axis = g.normalizeAxis(axes[i], rank);
    if (sliced[axis])
      g.fail("axis " + Twine(axes[i]) + " appears twice");
    sliced[axis] = true;
    allSteps[axis] = steps[i];
    allStarts[axis] = starts->elements[i].constant;
    allEnds[axis] = ends->elements[i].constant;
    if (dynamicBounds)
      dynamicAxes[axis] = {starts->elements[i], ends->elements[i]};
  }
  if (!dynamicBounds) {
    g.setOutput(node, 0,
                nn::SliceOp::create(g.builder(), g.loc(), input, allStarts,
                                    allEnds, allSteps));
    return;
  }
  // Bounds the program computes (e.g. the sequence length): a unit-stride
  // tensor.extract_slice with the clamping done in index arithmetic.
  SmallVector<OpFoldResult> offsets, sizes, strides;
  OpBuilder &b = g.builder();
  for (int64_t d = 0; d < rank; ++d) {
    Dim extent = g.dimOf(input, d);
    strides.push_back(b.getIndexAttr(1));
    if (!sliced[d]) {
      offsets.push_back(b.getIndexAttr(0));
      sizes.push_back(extent.isConstant() ? OpFoldResult(b.getIndexAttr(
                                                extent.constant))
                                          : OpFoldResult(extent.dynamic));
      continue;
    }
    if (allSteps[d] != 1)
      g.fail("a slice whose bounds are computed at run time must have step 1");
    auto [first, size] =
        clampSlice(g, dynamicAxes[d].first, dynamicAxes[d].second, extent);
    offsets.push_back(first.isConstant() ? OpFoldResult(b.getIndexAttr(
                                               first.constant))
                                         : OpFoldResult(first.dynamic));
    sizes.push_back(size.isConstant()
                        ? OpFoldResult(b.getIndexAttr(size.constant))
                        : OpFoldResult(size.dynamic));
  }
  g.setOutput(node, 0,
              tensor::ExtractSliceOp::create(b, g.loc(), input, offsets, sizes,
                                             strides));
}

void convertSplit(GraphImporter &g, const Node &node) {
  Value input = g.input(node, 0);
  RankedTensorType type = tensorType(input);
  int64_t axis = g.normalizeAxis(g.intAttr(node, "axis", 0), type.getRank());
  int outputs = node.output_size();
  SmallVector<int64_t> sizes;
  if (g.hasInput(node, 1)) {
    std::optional<SmallVector<int64_t>> s = g.constantInts(node, 1);
    if (!s)
      g.fail("the split sizes must be constants");
    sizes = *s;
  } else {
    if (type.isDynamicDim(axis))
      g.fail("splitting a dynamic dimension needs explicit split sizes");
    int64_t extent = type.getDimSize(axis);
    int64_t parts = g.intAttr(node, "num_outputs", outputs);
    // Equal parts, the last one smaller (opset 18 semantics).
    int64_t part = (extent + parts - 1) / parts;
    for (int64_t i = 0, offset = 0; i < parts; ++i, offset += part)
      sizes.push_back(std::max<int64_t>(std::min(part, extent - offset), 0));
  }
  if (static_cast<int>(sizes.size()) != outputs)
    g.fail("the split has " + Twine(sizes.size()) + " parts for " +
           Twine(outputs) + " outputs");
  int64_t rank = type.getRank();
  int64_t offset = 0;
  for (int i = 0; i < outputs; ++i) {
    SmallVector<int64_t> starts(rank, 0),
        ends(rank, std::numeric_limits<int64_t>::max()), steps(rank, 1);
    starts[axis] = offset;
    ends[axis] = offset + sizes[i];
    offset += sizes[i];
    g.setOutput(node, i,
                nn::SliceOp::create(g.builder(), g.loc(), input, starts, ends,
                                    steps));
  }
}

void convertExpand(GraphImporter &g, const Node &node) {
  std::optional<KnownInts> shape = g.knownInput(node, 1);
  if (!shape)
    g.fail("the shape must be known at compile time");
  Value input = g.input(node, 0);
  SmallVector<Dim> inputShape = shapeOf(g, input);
  size_t rank = std::max(inputShape.size(), shape->elements.size());
  SmallVector<Dim> dims;
  OpBuilder &b = g.builder();
  for (size_t i = 0; i < rank; ++i) {
    int64_t fromInput = i + inputShape.size() - rank;
    int64_t fromShape = i + shape->elements.size() - rank;
    Dim a = fromInput >= 0 ? inputShape[fromInput] : Dim::of(1);
    Dim s = fromShape >= 0 ? shape->elements[fromShape] : Dim::of(1);
    if (s.is(1)) {
      dims.push_back(a);
    } else if (a.is(1)) {
      dims.push_back(s);
    } else if (a.isConstant() && s.isConstant()) {
      if (a.constant != s.constant)
        g.fail("cannot broadcast extent " + Twine(a.constant) + " to " +
               Twine(s.constant));
      dims.push_back(a);
    } else if (a.isConstant() || s.isConstant()) {
      // A valid broadcast of a static extent other than 1 keeps it.
      dims.push_back(a.isConstant() ? a : s);
    } else {
      // Both symbolic: one is 1 or they are equal, so the larger is right.
      dims.push_back({0, arith::MaxSIOp::create(b, g.loc(), a.dynamic,
                                                s.dynamic)});
    }
  }
  SmallVector<Value> dynamicSizes;
  RankedTensorType type =
      g.shapedType(dims, tensorType(input).getElementType(), dynamicSizes);
  if (type == tensorType(input))
    return g.setOutput(node, 0, input);
  g.setOutput(node, 0,
              nn::ExpandOp::create(b, g.loc(), type, input, dynamicSizes));
}

void convertGather(GraphImporter &g, const Node &node) {
  int64_t axis = g.intAttr(node, "axis", 0);
  std::optional<KnownInts> data = g.knownInput(node, 0);
  std::optional<KnownInts> indices = g.knownInput(node, 1);
  if (data && !data->scalar && indices && indices->allConstant()) {
    int64_t extent = data->elements.size();
    KnownInts result;
    result.scalar = indices->scalar;
    result.elementType = data->elementType;
    for (int64_t i : indices->constants()) {
      if (i < -extent || i >= extent)
        g.fail("index " + Twine(i) + " is out of range for " + Twine(extent) +
               " elements");
      result.elements.push_back(data->elements[i < 0 ? i + extent : i]);
    }
    return g.setKnownOutput(node, 0, result);
  }
  Value table = g.input(node, 0);
  Value ids = g.input(node, 1);
  RankedTensorType tableType = tensorType(table);
  bool isEmbedding = g.normalizeAxis(axis, tableType.getRank()) == 0 &&
                     tableType.getRank() == 2 && tableType.hasStaticShape() &&
                     isa<FloatType>(tableType.getElementType()) &&
                     !g.constantInput(node, 1);
  if (isEmbedding) {
    // Gather counts negative ids from the end; nn.embedding takes row
    // numbers, so ids below 0 get the vocabulary size added first.
    OpBuilder &b = g.builder();
    Type idType = tensorType(ids).getElementType();
    Value zero = g.scalarConstant(idType, 0);
    Value rows = g.scalarConstant(idType, tableType.getDimSize(0));
    Value negative = nn::CompareOp::create(b, g.loc(),
                                           nn::ComparePredicate::lt, ids, zero);
    Value wrapped = nn::WhereOp::create(
        b, g.loc(), negative, nn::AddOp::create(b, g.loc(), ids, rows), ids);
    return g.setOutput(
        node, 0, nn::EmbeddingOp::create(b, g.loc(), table, wrapped));
  }
  g.setOutput(node, 0,
              nn::GatherOp::create(g.builder(), g.loc(), table, ids, axis));
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

template <typename OpT>
void convertBinary(GraphImporter &g, const Node &node, IntOp intOp) {
  std::optional<KnownInts> lhs = g.knownInput(node, 0),
                           rhs = g.knownInput(node, 1);
  if (lhs && rhs && lhs->elementType == rhs->elementType)
    if (std::optional<KnownInts> result =
            combineKnown(g, intOp, *lhs, *rhs, lhs->elementType))
      return g.setKnownOutput(node, 0, *result);
  g.setOutput(node, 0,
              OpT::create(g.builder(), g.loc(), g.input(node, 0),
                          g.input(node, 1)));
}

void convertPow(GraphImporter &g, const Node &node) {
  Value base = g.input(node, 0);
  requireFloat(g, base, "the base");
  OpBuilder &b = g.builder();
  if (DenseElementsAttr exponent = g.constantInput(node, 1);
      exponent && exponent.isSplat()) {
    Type type = exponent.getElementType();
    double value = isa<FloatType>(type)
                       ? exponent.getSplatValue<APFloat>().convertToDouble()
                       : static_cast<double>(
                             exponent.getSplatValue<APInt>().getSExtValue());
    // The exponents normalisation layers use, exactly as x * x and sqrt(x).
    int64_t baseRank = tensorType(base).getRank();
    bool broadcastsBase =
        cast<RankedTensorType>(exponent.getType()).getRank() > baseRank;
    if (!broadcastsBase) {
      if (value == 1.0)
        return g.setOutput(node, 0, base);
      if (value == 2.0)
        return g.setOutput(node, 0, nn::MulOp::create(b, g.loc(), base, base));
      if (value == 0.5)
        return g.setOutput(node, 0, nn::SqrtOp::create(b, g.loc(), base));
    }
  }
  Value exponent = g.input(node, 1);
  Type element = tensorType(base).getElementType();
  if (tensorType(exponent).getElementType() != element)
    exponent = nn::CastOp::create(b, g.loc(),
                                  tensorType(exponent).clone(element), exponent);
  g.setOutput(node, 0, nn::PowOp::create(b, g.loc(), base, exponent));
}

template <typename OpT>
void convertUnary(GraphImporter &g, const Node &node) {
  Value input = g.input(node, 0);
  requireFloat(g, input, "the input");
  g.setOutput(node, 0, OpT::create(g.builder(), g.loc(), input));
}

void convertNeg(GraphImporter &g, const Node &node) {
  if (std::optional<KnownInts> known = g.knownInput(node, 0)) {
    KnownInts result = *known;
    for (Dim &d : result.elements)
      d = combine(g, IntOp::Sub, Dim::of(0), d);
    return g.setKnownOutput(node, 0, result);
  }
  g.setOutput(node, 0, nn::NegOp::create(g.builder(), g.loc(), g.input(node, 0)));
}

void convertGelu(GraphImporter &g, const Node &node) {
  std::string approximate = g.stringAttr(node, "approximate", "none");
  nn::GeluApproximation kind;
  if (approximate == "none")
    kind = nn::GeluApproximation::none;
  else if (approximate == "tanh")
    kind = nn::GeluApproximation::tanh;
  else
    g.fail("approximate must be none or tanh, not '" + approximate + "'");
  Value input = g.input(node, 0);
  requireFloat(g, input, "the input");
  g.setOutput(node, 0, nn::GeluOp::create(g.builder(), g.loc(), input, kind));
}

void convertCompare(GraphImporter &g, const Node &node, IntOp intOp,
                    nn::ComparePredicate predicate) {
  std::optional<KnownInts> lhs = g.knownInput(node, 0),
                           rhs = g.knownInput(node, 1);
  if (lhs && rhs)
    if (std::optional<KnownInts> result = combineKnown(
            g, intOp, *lhs, *rhs, g.builder().getI1Type()))
      return g.setKnownOutput(node, 0, *result);
  g.setOutput(node, 0,
              nn::CompareOp::create(g.builder(), g.loc(), predicate,
                                    g.input(node, 0), g.input(node, 1)));
}

void convertWhere(GraphImporter &g, const Node &node) {
  std::optional<KnownInts> condition = g.knownInput(node, 0),
                           x = g.knownInput(node, 1), y = g.knownInput(node, 2);
  if (condition && x && y && condition->allConstant()) {
    size_t n = std::max({condition->elements.size(), x->elements.size(),
                         y->elements.size()});
    auto at = [&](const KnownInts &k, size_t i) {
      return k.elements[k.elements.size() == 1 ? 0 : i];
    };
    bool broadcastable = llvm::all_of(
        llvm::ArrayRef<const KnownInts *>{&*condition, &*x, &*y},
        [&](const KnownInts *k) {
          return k->elements.size() == 1 || k->elements.size() == n;
        });
    if (broadcastable) {
      KnownInts result;
      result.scalar = condition->scalar && x->scalar && y->scalar;
      result.elementType = x->elementType;
      for (size_t i = 0; i < n; ++i)
        result.elements.push_back(at(*condition, i).constant ? at(*x, i)
                                                             : at(*y, i));
      return g.setKnownOutput(node, 0, result);
    }
  }
  g.setOutput(node, 0,
              nn::WhereOp::create(g.builder(), g.loc(), g.input(node, 0),
                                  g.input(node, 1), g.input(node, 2)));
}

//===----------------------------------------------------------------------===//
// Linear algebra, normalisation, reductions
//===----------------------------------------------------------------------===//

void convertMatMul(GraphImporter &g, const Node &node) {
  Value lhs = g.input(node, 0), rhs = g.input(node, 1);
  requireFloat(g, lhs, "A");
  requireFloat(g, rhs, "B");
  OpBuilder &b = g.builder();
  // numpy's 1-d rules: a vector operand gains a unit dimension that the
  // result then drops.
  bool lhsVector = tensorType(lhs).getRank() == 1,
       rhsVector = tensorType(rhs).getRank() == 1;
  if (lhsVector)
    lhs = g.reshape(lhs, {Dim::of(1), g.dimOf(lhs, 0)});
  if (rhsVector)
    rhs = g.reshape(rhs, {g.dimOf(rhs, 0), Dim::of(1)});
  Value result =
      tensorType(rhs).getRank() == 2
          ? Value(nn::LinearOp::create(b, g.loc(), lhs, rhs, Value()))
          : Value(nn::MatmulOp::create(b, g.loc(), lhs, rhs, false, false));
  if (lhsVector || rhsVector) {
    SmallVector<Dim> dims = shapeOf(g, result);
    int64_t rank = dims.size();
    if (rhsVector)
      dims.erase(dims.begin() + rank - 1);
    if (lhsVector)
      dims.erase(dims.begin() + rank - 2);
    result = g.reshape(result, dims);
  }
  g.setOutput(node, 0, result);
}

void convertGemm(GraphImporter &g, const Node &node) {
  Value a = g.input(node, 0), bMatrix = g.input(node, 1);
  requireFloat(g, a, "A");
  if (tensorType(a).getRank() != 2 || tensorType(bMatrix).getRank() != 2)
    g.fail("A and B must be matrices");
  float alpha = g.floatAttr(node, "alpha", 1.0f);
  float beta = g.floatAttr(node, "beta", 1.0f);
  bool transA = g.intAttr(node, "transA", 0) != 0;
  bool transB = g.intAttr(node, "transB", 0) != 0;
  OpBuilder &b = g.builder();
  Type element = tensorType(a).getElementType();
  Value result =
      !transA && !transB
          ? Value(nn::LinearOp::create(b, g.loc(), a, bMatrix, Value()))
          : Value(nn::MatmulOp::create(b, g.loc(), a, bMatrix, transA, transB));
  if (alpha != 1.0f)
    result = nn::MulOp::create(b, g.loc(), result,
                               g.scalarConstant(element, alpha));
  if (g.hasInput(node, 2) && beta != 0.0f) {
    Value c = g.input(node, 2);
    if (beta != 1.0f)
      c = nn::MulOp::create(b, g.loc(), c, g.scalarConstant(element, beta));
    result = nn::AddOp::create(b, g.loc(), result, c);
  }
  g.setOutput(node, 0, result);
}

void convertSoftmax(GraphImporter &g, const Node &node) {
  Value input = g.input(node, 0);
  requireFloat(g, input, "the input");
  int64_t axis = g.normalizeAxis(g.intAttr(node, "axis", -1),
                                 tensorType(input).getRank());
  g.setOutput(node, 0,
              nn::SoftmaxOp::create(g.builder(), g.loc(), input, axis));
}

void convertLayerNormalization(GraphImporter &g, const Node &node) {
  Value input = g.input(node, 0);
  requireFloat(g, input, "X");
  int64_t rank = tensorType(input).getRank();
  if (g.normalizeAxis(g.intAttr(node, "axis", -1), rank) != rank - 1)
    g.fail("only normalisation over the last dimension is supported");
  for (int i = 1; i < node.output_size(); ++i)
    if (!node.output(i).empty())
      g.fail("the Mean and InvStdDev outputs are not supported");
  Value scale = g.input(node, 1);
  Value bias = g.hasInput(node, 2) ? g.input(node, 2) : Value();
  float epsilon = g.floatAttr(node, "epsilon", 1e-5f);
  g.setOutput(node, 0,
              nn::LayerNormOp::create(g.builder(), g.loc(), input, scale, bias,
                                      g.builder().getF32FloatAttr(epsilon)));
}

template <typename OpT>
void convertReduce(GraphImporter &g, const Node &node, int64_t axesInputSince) {
  Value input = g.input(node, 0);
  requireFloat(g, input, "the input");
  bool keepDims = g.intAttr(node, "keepdims", 1) != 0;
  std::optional<SmallVector<int64_t>> axes = axesOf(g, node, axesInputSince);
  int64_t rank = tensorType(input).getRank();
  if (!axes || axes->empty()) {
    if (g.intAttr(node, "noop_with_empty_axes", 0))
      return g.setOutput(node, 0, input);
    axes.emplace();
    for (int64_t i = 0; i < rank; ++i)
      axes->push_back(i);
  }
  for (int64_t &axis : *axes)
    axis = g.normalizeAxis(axis, rank);
  g.setOutput(node, 0,
              OpT::create(g.builder(), g.loc(), input, *axes, keepDims));
}

void convertTopK(GraphImporter &g, const Node &node) {
  std::optional<SmallVector<int64_t>> k = g.constantInts(node, 1);
  if (!k || k->size() != 1)
    g.fail("K must be a constant with one element");
  Value input = g.input(node, 0);
  requireFloat(g, input, "the input");
  int64_t axis = g.normalizeAxis(g.intAttr(node, "axis", -1),
                                 tensorType(input).getRank());
  bool largest = g.intAttr(node, "largest", 1) != 0;
  auto topk = nn::TopKOp::create(g.builder(), g.loc(), input, (*k)[0], axis,
                                 largest);
  g.setOutput(node, 0, topk.getValues());
  g.setOutput(node, 1, topk.getIndices());
}

void convertTrilu(GraphImporter &g, const Node &node) {
  int64_t diagonal = 0;
  if (g.hasInput(node, 1)) {
    std::optional<SmallVector<int64_t>> k = g.constantInts(node, 1);
    if (!k || k->size() != 1)
      g.fail("k must be a constant with one element");
    diagonal = (*k)[0];
  }
  bool upper = g.intAttr(node, "upper", 1) != 0;
  g.setOutput(node, 0,
              nn::TriluOp::create(g.builder(), g.loc(), g.input(node, 0),
                                  diagonal, upper));
}

} // namespace

const llvm::StringMap<Converter> &moec::onnx_import::standardConverters() {
  using G = GraphImporter;
  static const llvm::StringMap<Converter> table = {
      {"Constant", convertConstant},
      {"Identity", [](G &g, const Node &n) { g.forwardValue(n, 0, 0); }},
      {"Dropout", [](G &g, const Node &n) { g.forwardValue(n, 0, 0); }},
      {"Shape", convertShape},
      {"ConstantOfShape", convertConstantOfShape},
      {"Range", convertRange},
      {"Cast", convertCast},
      {"Reshape", convertReshape},
      {"Unsqueeze", convertUnsqueeze},
      {"Squeeze", convertSqueeze},
      {"Transpose", convertTranspose},
      {"Concat", convertConcat},
      {"Slice", convertSlice},
      {"Split", convertSplit},
      {"Expand", convertExpand},
      {"Gather", convertGather},
      {"Add",
       [](G &g, const Node &n) { convertBinary<nn::AddOp>(g, n, IntOp::Add); }},
      {"Sub",
       [](G &g, const Node &n) { convertBinary<nn::SubOp>(g, n, IntOp::Sub); }},
      {"Mul",
       [](G &g, const Node &n) { convertBinary<nn::MulOp>(g, n, IntOp::Mul); }},
      {"Div",
       [](G &g, const Node &n) { convertBinary<nn::DivOp>(g, n, IntOp::Div); }},
      {"Pow", convertPow},
      {"Sqrt", convertUnary<nn::SqrtOp>},
      {"Reciprocal", convertUnary<nn::ReciprocalOp>},
      {"Neg", convertNeg},
      {"Exp", convertUnary<nn::ExpOp>},
      {"Log", convertUnary<nn::LogOp>},
      {"Sigmoid", convertUnary<nn::SigmoidOp>},
      {"Tanh", convertUnary<nn::TanhOp>},
      {"Erf", convertUnary<nn::ErfOp>},
      {"Relu", convertUnary<nn::ReluOp>},
      {"Gelu", convertGelu},
      {"Equal",
       [](G &g, const Node &n) {
         convertCompare(g, n, IntOp::Eq, nn::ComparePredicate::eq);
       }},
      {"Less",
       [](G &g, const Node &n) {
         convertCompare(g, n, IntOp::Lt, nn::ComparePredicate::lt);
       }},
      {"LessOrEqual",
       [](G &g, const Node &n) {
         convertCompare(g, n, IntOp::Le, nn::ComparePredicate::le);
       }},
      {"Greater",
       [](G &g, const Node &n) {
         convertCompare(g, n, IntOp::Gt, nn::ComparePredicate::gt);
       }},
      {"GreaterOrEqual",
       [](G &g, const Node &n) {
         convertCompare(g, n, IntOp::Ge, nn::ComparePredicate::ge);
       }},
      {"Where", convertWhere},
      {"MatMul", convertMatMul},
      {"Gemm", convertGemm},
      {"Softmax", convertSoftmax},
      {"LayerNormalization", convertLayerNormalization},
      {"ReduceMean",
       [](G &g, const Node &n) { convertReduce<nn::ReduceMeanOp>(g, n, 18); }},
      {"ReduceSum",
       [](G &g, const Node &n) { convertReduce<nn::ReduceSumOp>(g, n, 13); }},
      {"ReduceMax",
       [](G &g, const Node &n) { convertReduce<nn::ReduceMaxOp>(g, n, 18); }},
      {"TopK", convertTopK},
      {"Trilu", convertTrilu},
  };
  return table;
}
