//===- Importer.cpp - The ONNX graph walk and the value table -------------===//

#include "Importer.h"

#include "dialects/MoE/MoEDialect.h"
#include "dialects/NN/NNDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Support/raw_ostream.h"

#include <set>

using namespace mlir;
using namespace moec;
using namespace moec::onnx_import;
using llvm::SmallVector;
using llvm::Twine;

bool KnownInts::allConstant() const {
  return llvm::all_of(elements, [](const Dim &d) { return d.isConstant(); });
}

SmallVector<int64_t> KnownInts::constants() const {
  SmallVector<int64_t> result;
  for (const Dim &d : elements)
    result.push_back(d.constant);
  return result;
}

/// A description of a node for messages: its name, or its position.
static std::string describe(const onnx::NodeProto &node, int position) {
  std::string name = node.name().empty()
                         ? "#" + std::to_string(position)
                         : "'" + node.name() + "'";
  return "node " + name + " (" + node.op_type() + ")";
}

GraphImporter::GraphImporter(MLIRContext &context,
                             const onnx::ModelProto &model,
                             std::map<std::string, TensorData> initializers,
                             std::string directory)
    : b(&context), model(model), initializers(std::move(initializers)),
      directory(std::move(directory)),
      currentLoc(UnknownLoc::get(&context)) {
  context.loadDialect<nn::NNDialect, moe::MoEDialect, func::FuncDialect,
                      arith::ArithDialect, tensor::TensorDialect>();
}

void GraphImporter::fail(const Twine &message) const {
  if (!currentNode)
    throw ImportError(message.str());
  int position = 0;
  for (const onnx::NodeProto &node : model.graph().node()) {
    if (&node == currentNode)
      break;
    ++position;
  }
  throw ImportError(describe(*currentNode, position) + ": " + message.str());
}

Type GraphImporter::elementType(int32_t onnxType) {
  switch (onnxType) {
  case onnx::TensorProto::FLOAT:
    return b.getF32Type();
  case onnx::TensorProto::FLOAT16:
    return b.getF16Type();
  case onnx::TensorProto::BFLOAT16:
    return b.getBF16Type();
  case onnx::TensorProto::INT64:
    return b.getI64Type();
  case onnx::TensorProto::INT32:
    return b.getI32Type();
  case onnx::TensorProto::BOOL:
    return b.getI1Type();
  default:
    fail("element type " + onnxTypeName(onnxType) + " is not supported");
  }
}

//===----------------------------------------------------------------------===//
// The walk
//===----------------------------------------------------------------------===//

ImportedModel GraphImporter::run() {
  const onnx::GraphProto &graph = model.graph();
  for (const onnx::OperatorSetIdProto &opset : model.opset_import())
    if (opset.domain().empty() || opset.domain() == "ai.onnx")
      opsetVersion = opset.version();
  if (opsetVersion == 0)
    fail("the model imports no ai.onnx opset");
  if (opsetVersion < 13)
    fail("opset " + Twine(opsetVersion) +
         " is older than 13, the oldest supported (convert the model with "
         "onnx.version_converter)");
  checkSupported();

  Location fileLoc = UnknownLoc::get(context());
  module = ModuleOp::create(b, fileLoc);
  b.setInsertionPointToEnd(module.getBody());
  function = func::FuncOp::create(b, fileLoc, "forward",
                                  b.getFunctionType({}, {}));
  Block *entry = function.addEntryBlock();
  b.setInsertionPointToStart(entry);

  declareInputs();
  convertNodes();
  declareOutputs();

  ImportedModel result;
  result.module = OwningOpRef<ModuleOp>(module);
  if (failed(verify(module)))
    throw ImportError("the imported module does not verify (see the "
                      "diagnostics above)");
  result.parameters = std::move(parameters);
  return result;
}

/// Every op type must have a converter, before anything is built, so that
/// one message lists them all.
void GraphImporter::checkSupported() {
  std::map<std::string, std::vector<std::string>> unsupported;
  int position = 0;
  for (const onnx::NodeProto &node : model.graph().node()) {
    const std::string &domain = node.domain();
    const llvm::StringMap<Converter> *table = nullptr;
    if (domain.empty() || domain == "ai.onnx")
      table = &standardConverters();
    else if (domain == "com.microsoft")
      table = &microsoftConverters();
    std::string type =
        (domain.empty() || domain == "ai.onnx" ? "" : domain + ".") +
        node.op_type();
    if (!table || !table->count(node.op_type()))
      unsupported[type].push_back(node.name().empty()
                                      ? "#" + std::to_string(position)
                                      : node.name());
    ++position;
  }
  if (unsupported.empty())
    return;
  std::string message = "unsupported ONNX operators: ";
  llvm::raw_string_ostream os(message);
  bool first = true;
  for (auto &[type, nodes] : unsupported) {
    os << (first ? "" : "; ") << type << " (node"
       << (nodes.size() > 1 ? "s " : " ");
    llvm::interleaveComma(nodes, os);
    os << ")";
    first = false;
  }
  throw ImportError(message);
}

void GraphImporter::declareInputs() {
  const onnx::GraphProto &graph = model.graph();
  std::set<std::string> initializerNames;
  for (auto &[name, data] : initializers)
    initializerNames.insert(name);
  Block &entry = function.getBody().front();
  for (const onnx::ValueInfoProto &info : graph.input()) {
    // Before IR version 4 initializers were also listed as inputs.
    if (initializerNames.count(info.name()))
      continue;
    if (!info.type().has_tensor_type())
      fail("graph input '" + info.name() + "' is not a tensor");
    const onnx::TypeProto::Tensor &tensorType = info.type().tensor_type();
    if (!tensorType.has_shape())
      fail("graph input '" + info.name() +
           "' has no shape (its rank must be known)");
    SmallVector<int64_t> shape;
    SmallVector<Attribute> dimNames;
    bool named = false;
    for (const onnx::TensorShapeProto::Dimension &dim :
         tensorType.shape().dim()) {
      if (dim.has_dim_value()) {
        shape.push_back(dim.dim_value());
        dimNames.push_back(b.getStringAttr(""));
      } else {
        shape.push_back(ShapedType::kDynamic);
        dimNames.push_back(b.getStringAttr(dim.dim_param()));
        named |= !dim.dim_param().empty();
      }
    }
    Type element = elementType(tensorType.elem_type());
    auto type = RankedTensorType::get(shape, element);
    values[info.name()].tensor = entry.addArgument(type, currentLoc);
    SmallVector<NamedAttribute> attributes = {
        b.getNamedAttr("moe.name", b.getStringAttr(info.name()))};
    if (named)
      attributes.push_back(
          b.getNamedAttr("moe.dims", b.getArrayAttr(dimNames)));
    argumentAttributes.push_back(b.getDictionaryAttr(attributes));
  }
  for (auto &[name, data] : initializers)
    values[name].initializer = &data;
}

void GraphImporter::convertNodes() {
  int position = 0;
  for (const onnx::NodeProto &node : model.graph().node()) {
    currentNode = &node;
    currentLoc = NameLoc::get(b.getStringAttr(describe(node, position)));
    for (int i = 0; i < node.input_size(); ++i)
      if (!node.input(i).empty() && !values.count(node.input(i)))
        fail("input '" + node.input(i) +
             "' is not defined before it (the graph must be a topologically "
             "sorted DAG)");
    const std::string &domain = node.domain();
    const llvm::StringMap<Converter> &table =
        domain.empty() || domain == "ai.onnx" ? standardConverters()
                                              : microsoftConverters();
    table.find(node.op_type())->second(*this, node);
    ++position;
  }
  currentNode = nullptr;
  currentLoc = UnknownLoc::get(context());
}

void GraphImporter::declareOutputs() {
  SmallVector<Value> results;
  SmallVector<Attribute> resultAttributes;
  for (const onnx::ValueInfoProto &info : model.graph().output()) {
    auto it = values.find(info.name());
    if (it == values.end())
      fail("graph output '" + info.name() + "' is not produced by any node");
    Value value = it->second.tensor;
    if (!value) {
      value = it->second.known ? materialize(*it->second.known)
              : it->second.constant
                  ? Value(arith::ConstantOp::create(b, currentLoc,
                                                    it->second.constant))
                  : parameterArgument(*it->second.initializer);
    }
    results.push_back(value);
    SmallVector<NamedAttribute> attributes = {
        b.getNamedAttr("moe.name", b.getStringAttr(info.name()))};
    auto type = cast<RankedTensorType>(value.getType());
    if (info.type().has_tensor_type() &&
        info.type().tensor_type().has_shape() &&
        info.type().tensor_type().shape().dim_size() == type.getRank()) {
      SmallVector<Attribute> dimNames;
      bool named = false;
      for (auto [i, dim] :
           llvm::enumerate(info.type().tensor_type().shape().dim())) {
        bool symbolic = type.isDynamicDim(i) && !dim.dim_param().empty();
        dimNames.push_back(b.getStringAttr(symbolic ? dim.dim_param() : ""));
        named |= symbolic;
      }
      if (named)
        attributes.push_back(
            b.getNamedAttr("moe.dims", b.getArrayAttr(dimNames)));
    }
    resultAttributes.push_back(b.getDictionaryAttr(attributes));
  }
  func::ReturnOp::create(b, UnknownLoc::get(context()), results);
  Block &entry = function.getBody().front();
  function.setFunctionType(
      b.getFunctionType(entry.getArgumentTypes(), ValueRange(results).getTypes()));
  function.setAllArgAttrs(argumentAttributes);
  function.setAllResultAttrs(resultAttributes);
}

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

ImportedValue &GraphImporter::lookup(const onnx::NodeProto &node, int index) {
  if (!hasInput(node, index))
    fail("input " + Twine(index) + " is required");
  return values.at(node.input(index));
}

bool GraphImporter::hasInput(const onnx::NodeProto &node, int index) const {
  return index < node.input_size() && !node.input(index).empty();
}

const TensorData *GraphImporter::initializerInput(const onnx::NodeProto &node,
                                                  int index) {
  if (!hasInput(node, index))
    return nullptr;
  auto it = initializers.find(node.input(index));
  return it == initializers.end() ? nullptr : &it->second;
}

/// Float initializers with more than one element are parameters: weights,
/// which users train or replace. The rest (scalars such as epsilon, integer
/// shapes and indices) are constants that shape evaluation needs.
static bool isParameter(const TensorData &data) {
  bool isFloat = data.onnxType == onnx::TensorProto::FLOAT ||
                 data.onnxType == onnx::TensorProto::FLOAT16 ||
                 data.onnxType == onnx::TensorProto::BFLOAT16;
  return isFloat && data.numElements() > 1;
}

Value GraphImporter::parameterArgument(const TensorData &data) {
  auto it = parameterArguments.find(data.name);
  if (it != parameterArguments.end())
    return it->second;
  Type element = elementType(data.onnxType);
  auto type = RankedTensorType::get(data.shape, element);
  Block &entry = function.getBody().front();
  Value argument = entry.addArgument(type, UnknownLoc::get(context()));
  argumentAttributes.push_back(b.getDictionaryAttr(
      {b.getNamedAttr("moe.name", b.getStringAttr(data.name)),
       b.getNamedAttr("moe.role", b.getStringAttr("parameter"))}));
  parameters.push_back({data.name, safetensorsDtype(data.onnxType), data.shape,
                        data.bytes});
  parameterArguments[data.name] = argument;
  return argument;
}

DenseElementsAttr
GraphImporter::constantFrom(const TensorData &data) {
  Type element;
  if (data.onnxType == onnx::TensorProto::DOUBLE)
    element = b.getF32Type(); // narrowed below: doubles are constants only
  else
    element = elementType(data.onnxType);
  auto type = RankedTensorType::get(data.shape, element);
  if (data.onnxType == onnx::TensorProto::BOOL) {
    SmallVector<bool> bits;
    for (char byte : data.bytes)
      bits.push_back(byte != 0);
    return DenseElementsAttr::get(type, bits);
  }
  if (data.onnxType == onnx::TensorProto::DOUBLE) {
    SmallVector<float> narrowed;
    for (int64_t i = 0; i < data.numElements(); ++i) {
      double value;
      std::memcpy(&value, data.bytes.data() + 8 * i, 8);
      narrowed.push_back(static_cast<float>(value));
    }
    return DenseElementsAttr::get(type, llvm::ArrayRef(narrowed));
  }
  bool isSplat = false;
  llvm::ArrayRef<char> raw(data.bytes.data(), data.bytes.size());
  if (!DenseElementsAttr::isValidRawBuffer(type, raw, isSplat))
    fail("initializer '" + data.name + "' has malformed data");
  return DenseElementsAttr::getFromRawBuffer(type, raw);
}

Value GraphImporter::input(const onnx::NodeProto &node, int index) {
  ImportedValue &value = lookup(node, index);
  if (value.tensor)
    return value.tensor;
  if (value.known)
    return value.tensor = materialize(*value.known);
  if (!value.constant && value.initializer) {
    if (isParameter(*value.initializer))
      return value.tensor = parameterArgument(*value.initializer);
    value.constant = constantFrom(*value.initializer);
  }
  // Constants are materialised where they are used, so that each use sees
  // a defining op it can fold.
  return arith::ConstantOp::create(b, currentLoc, value.constant);
}

RankedTensorType GraphImporter::inputType(const onnx::NodeProto &node,
                                          int index) {
  ImportedValue &value = lookup(node, index);
  if (value.tensor)
    return cast<RankedTensorType>(value.tensor.getType());
  if (value.known) {
    SmallVector<int64_t> shape;
    if (!value.known->scalar)
      shape.push_back(value.known->elements.size());
    return RankedTensorType::get(shape, value.known->elementType);
  }
  if (value.constant)
    return cast<RankedTensorType>(value.constant.getType());
  return RankedTensorType::get(value.initializer->shape,
                               elementType(value.initializer->onnxType));
}

DenseElementsAttr GraphImporter::constantInput(const onnx::NodeProto &node,
                                               int index) {
  if (!hasInput(node, index))
    return {};
  ImportedValue &value = lookup(node, index);
  if (!value.constant && value.initializer && !value.tensor)
    value.constant = constantFrom(*value.initializer);
  if (!value.constant && value.known && value.known->allConstant()) {
    SmallVector<int64_t> shape;
    if (!value.known->scalar)
      shape.push_back(value.known->elements.size());
    auto type = RankedTensorType::get(shape, value.known->elementType);
    SmallVector<APInt> ints;
    for (int64_t v : value.known->constants())
      ints.push_back(
          APInt(value.known->elementType.getIntOrFloatBitWidth(), v, true));
    return DenseElementsAttr::get(type, ints);
  }
  return value.constant;
}

std::optional<KnownInts> GraphImporter::knownInput(const onnx::NodeProto &node,
                                                   int index) {
  if (!hasInput(node, index))
    return std::nullopt;
  ImportedValue &value = lookup(node, index);
  if (value.known)
    return value.known;
  if (value.tensor)
    return std::nullopt;
  DenseElementsAttr constant = constantInput(node, index);
  if (!constant)
    return std::nullopt;
  auto type = cast<RankedTensorType>(constant.getType());
  if (!type.getElementType().isInteger() || type.getRank() > 1 ||
      type.getNumElements() > 64)
    return std::nullopt;
  KnownInts known;
  known.scalar = type.getRank() == 0;
  known.elementType = type.getElementType();
  bool isBool = type.getElementType().isInteger(1);
  for (const APInt &v : constant.getValues<APInt>())
    known.elements.push_back(
        Dim::of(isBool ? v.getZExtValue() : v.getSExtValue()));
  return known;
}

std::optional<SmallVector<int64_t>>
GraphImporter::constantInts(const onnx::NodeProto &node, int index) {
  std::optional<KnownInts> known = knownInput(node, index);
  if (!known || !known->allConstant())
    return std::nullopt;
  return known->constants();
}

Value GraphImporter::transformedParameter(
    const onnx::NodeProto &node, int index, llvm::StringRef suffix,
    const std::function<void(TensorData &)> &transform) {
  const TensorData *original = initializerInput(node, index);
  if (!original || !isParameter(*original))
    return {};
  // Keep the initializer's name unless it is also used as it is.
  bool usedAsIs = false;
  for (const onnx::NodeProto &other : model.graph().node())
    for (int i = 0; i < other.input_size(); ++i)
      if (other.input(i) == original->name && &other != &node)
        usedAsIs = true;
  std::string name = original->name + suffix.str();
  if (suffix.empty() && usedAsIs)
    name += ".moe";
  auto it = parameterArguments.find(name);
  if (it != parameterArguments.end())
    return it->second;
  TensorData copy = *original;
  copy.name = name;
  transform(copy);
  return parameterArgument(copy);
}

void GraphImporter::setOutput(const onnx::NodeProto &node, int index,
                              Value value) {
  if (index >= node.output_size() || node.output(index).empty())
    return;
  ImportedValue &slot = values[node.output(index)];
  slot = ImportedValue();
  slot.tensor = value;
}

void GraphImporter::forwardValue(const onnx::NodeProto &node, int inputIndex,
                                 int outputIndex) {
  if (outputIndex >= node.output_size() || node.output(outputIndex).empty())
    return;
  ImportedValue value = lookup(node, inputIndex);
  values[node.output(outputIndex)] = value;
}

void GraphImporter::setKnownOutput(const onnx::NodeProto &node, int index,
                                   KnownInts known) {
  if (index >= node.output_size() || node.output(index).empty())
    return;
  ImportedValue &slot = values[node.output(index)];
  slot = ImportedValue();
  slot.known = std::move(known);
}

void GraphImporter::setConstantOutput(const onnx::NodeProto &node, int index,
                                      DenseElementsAttr constant) {
  if (index >= node.output_size() || node.output(index).empty())
    return;
  ImportedValue &slot = values[node.output(index)];
  slot = ImportedValue();
  slot.constant = constant;
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

const onnx::AttributeProto *
GraphImporter::attribute(const onnx::NodeProto &node,
                         llvm::StringRef name) const {
  for (const onnx::AttributeProto &attr : node.attribute())
    if (attr.name() == name) {
      if (!attr.ref_attr_name().empty())
        fail("attribute '" + name + "' refers to a function attribute");
      return &attr;
    }
  return nullptr;
}

int64_t GraphImporter::intAttr(const onnx::NodeProto &node,
                               llvm::StringRef name,
                               int64_t defaultValue) const {
  const onnx::AttributeProto *attr = attribute(node, name);
  if (!attr)
    return defaultValue;
  if (attr->type() != onnx::AttributeProto::INT)
    fail("attribute '" + name + "' must be an integer");
  return attr->i();
}

float GraphImporter::floatAttr(const onnx::NodeProto &node,
                               llvm::StringRef name,
                               float defaultValue) const {
  const onnx::AttributeProto *attr = attribute(node, name);
  if (!attr)
    return defaultValue;
  if (attr->type() != onnx::AttributeProto::FLOAT)
    fail("attribute '" + name + "' must be a float");
  return attr->f();
}

std::string GraphImporter::stringAttr(const onnx::NodeProto &node,
                                      llvm::StringRef name,
                                      llvm::StringRef defaultValue) const {
  const onnx::AttributeProto *attr = attribute(node, name);
  if (!attr)
    return defaultValue.str();
  if (attr->type() != onnx::AttributeProto::STRING)
    fail("attribute '" + name + "' must be a string");
  return attr->s();
}

std::optional<SmallVector<int64_t>>
GraphImporter::intsAttr(const onnx::NodeProto &node,
                        llvm::StringRef name) const {
  const onnx::AttributeProto *attr = attribute(node, name);
  if (!attr)
    return std::nullopt;
  if (attr->type() != onnx::AttributeProto::INTS)
    fail("attribute '" + name + "' must be a list of integers");
  return SmallVector<int64_t>(attr->ints().begin(), attr->ints().end());
}

//===----------------------------------------------------------------------===//
// Building helpers
//===----------------------------------------------------------------------===//

Dim GraphImporter::dimOf(Value tensor, int64_t dim) {
  auto type = cast<RankedTensorType>(tensor.getType());
  if (!type.isDynamicDim(dim))
    return Dim::of(type.getDimSize(dim));
  return {0, tensor::DimOp::create(b, currentLoc, tensor, dim)};
}

Value GraphImporter::indexValue(const Dim &dim) {
  if (!dim.isConstant())
    return dim.dynamic;
  return arith::ConstantIndexOp::create(b, currentLoc, dim.constant);
}

Value GraphImporter::materialize(const KnownInts &known) {
  SmallVector<Value> elements;
  for (const Dim &d : known.elements) {
    if (d.isConstant()) {
      elements.push_back(arith::ConstantOp::create(
          b, currentLoc, b.getIntegerAttr(known.elementType, d.constant)));
      continue;
    }
    elements.push_back(arith::IndexCastOp::create(b, currentLoc,
                                                  known.elementType, d.dynamic));
  }
  SmallVector<int64_t> shape;
  if (!known.scalar)
    shape.push_back(known.elements.size());
  auto type = RankedTensorType::get(shape, known.elementType);
  return tensor::FromElementsOp::create(b, currentLoc, type, elements);
}

int64_t GraphImporter::normalizeAxis(int64_t axis, int64_t rank) const {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1))
    fail("axis " + Twine(axis) + " is out of range for rank " + Twine(rank));
  return axis < 0 ? axis + rank : axis;
}

Value GraphImporter::scalarConstant(Type elementType, double value) {
  auto type = RankedTensorType::get({}, elementType);
  Attribute element;
  if (auto floatType = dyn_cast<FloatType>(elementType))
    element = b.getFloatAttr(floatType, value);
  else
    element = b.getIntegerAttr(elementType, static_cast<int64_t>(value));
  return arith::ConstantOp::create(b, currentLoc,
                                   DenseElementsAttr::get(type, element));
}

RankedTensorType
GraphImporter::shapedType(llvm::ArrayRef<Dim> shape, Type elementType,
                          SmallVectorImpl<Value> &dynamicSizes) {
  SmallVector<int64_t> extents;
  for (const Dim &d : shape) {
    if (d.isConstant()) {
      if (d.constant < 0)
        fail("extent " + Twine(d.constant) + " is negative");
      extents.push_back(d.constant);
    } else {
      extents.push_back(ShapedType::kDynamic);
      dynamicSizes.push_back(d.dynamic);
    }
  }
  return RankedTensorType::get(extents, elementType);
}

Value GraphImporter::reshape(Value input, llvm::ArrayRef<Dim> shape) {
  auto inputType = cast<RankedTensorType>(input.getType());
  SmallVector<Value> dynamicSizes;
  RankedTensorType type =
      shapedType(shape, inputType.getElementType(), dynamicSizes);
  if (type == inputType)
    return input;
  return nn::ReshapeOp::create(b, currentLoc, type, input, dynamicSizes);
}
