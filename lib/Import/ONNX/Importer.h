//===- Importer.h - ONNX graph -> nn/moe ops (internal) ----------*- C++ -*-===//
//
// The pieces of the ONNX importer that the operator converters share: the
// table of imported values, compile-time knowledge about shape
// computations, attribute access, and errors.
//
// Exporters compute shapes in the graph (Shape -> Gather -> Concat ->
// Reshape). The importer evaluates those computations while it imports:
// a small integer tensor whose elements it knows, each a constant or an
// `index` value of the program (a dynamic extent), is "known" and never
// becomes a tensor unless the model uses it as data. Reshape, Expand, Slice
// and friends then get static extents where they exist and `index` operands
// for symbolic ones, so symbolic dimensions stay symbolic.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_LIB_IMPORT_ONNX_IMPORTER_H
#define MOEC_LIB_IMPORT_ONNX_IMPORTER_H

#include "moec/ImportONNX.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/StringMap.h"

#include <onnx/onnx_pb.h>

#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

namespace moec::onnx_import {

/// A problem with the model. The importer stops at the first one and moec
/// prints it as one line, prefixed with the file name.
struct ImportError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// One element of a known integer tensor: a constant, or an `index` value
/// computed by the program (typically a dynamic extent).
struct Dim {
  int64_t constant = 0;
  mlir::Value dynamic;

  static Dim of(int64_t value) { return {value, {}}; }
  bool isConstant() const { return !dynamic; }
  bool is(int64_t value) const { return isConstant() && constant == value; }
};

/// A rank-0 or rank-1 integer (or bool) tensor whose elements the importer
/// knows.
struct KnownInts {
  llvm::SmallVector<Dim> elements;
  bool scalar = false;
  mlir::Type elementType; // i64, i32 or i1

  bool allConstant() const;
  llvm::SmallVector<int64_t> constants() const;
};

/// An initializer: its bytes stay outside the MLIR context until the
/// importer decides whether it becomes a parameter or a constant.
struct TensorData {
  std::string name;
  int32_t onnxType = 0;
  std::vector<int64_t> shape;
  std::vector<char> bytes;

  int64_t numElements() const;
};

/// What the importer holds for one ONNX value name.
struct ImportedValue {
  mlir::Value tensor;                 // the program's value, once it exists
  std::optional<KnownInts> known;     // elements known while importing
  mlir::DenseElementsAttr constant;   // a compile-time constant
  const TensorData *initializer = nullptr; // a parameter not yet used
};

class GraphImporter;
using Converter =
    std::function<void(GraphImporter &, const onnx::NodeProto &)>;

/// The converters by op type, for one domain ("" is ai.onnx).
const llvm::StringMap<Converter> &standardConverters();
const llvm::StringMap<Converter> &microsoftConverters();

class GraphImporter {
public:
  GraphImporter(mlir::MLIRContext &context, const onnx::ModelProto &model,
                std::map<std::string, TensorData> initializers,
                std::string directory);

  /// Builds the module; throws ImportError.
  ImportedModel run();

  // --- Used by converters ---------------------------------------------------
  mlir::OpBuilder &builder() { return b; }
  mlir::Location loc() const { return currentLoc; }
  mlir::MLIRContext *context() { return b.getContext(); }
  int64_t opset() const { return opsetVersion; }

  /// Throws an ImportError about the node being converted.
  [[noreturn]] void fail(const llvm::Twine &message) const;

  bool hasInput(const onnx::NodeProto &node, int index) const;
  /// The input as a tensor of the program (materialising known values and
  /// constants, and creating a parameter on first use).
  mlir::Value input(const onnx::NodeProto &node, int index);
  mlir::RankedTensorType inputType(const onnx::NodeProto &node, int index);
  /// The input's elements, if known at compile time (constants included).
  std::optional<KnownInts> knownInput(const onnx::NodeProto &node, int index);
  /// Like knownInput, but every element must be a constant.
  std::optional<llvm::SmallVector<int64_t>>
  constantInts(const onnx::NodeProto &node, int index);
  /// The input as a compile-time constant, if it is one.
  mlir::DenseElementsAttr constantInput(const onnx::NodeProto &node,
                                        int index);
  /// A float initializer used as a parameter in another layout: `transform`
  /// rewrites its bytes and shape once. The parameter is named after the
  /// initializer plus `suffix` (parts of a split initializer), plus ".moe"
  /// when the initializer is also used as it is. Null if the input is not a
  /// parameter initializer.
  mlir::Value transformedParameter(
      const onnx::NodeProto &node, int index, llvm::StringRef suffix,
      const std::function<void(TensorData &)> &transform);
  /// The initializer behind an input, if it is one.
  const TensorData *initializerInput(const onnx::NodeProto &node, int index);

  void setOutput(const onnx::NodeProto &node, int index, mlir::Value value);
  void setKnownOutput(const onnx::NodeProto &node, int index, KnownInts value);
  void setConstantOutput(const onnx::NodeProto &node, int index,
                         mlir::DenseElementsAttr value);

  // Attributes.
  const onnx::AttributeProto *attribute(const onnx::NodeProto &node,
                                        llvm::StringRef name) const;
  int64_t intAttr(const onnx::NodeProto &node, llvm::StringRef name,
                  int64_t defaultValue) const;
  float floatAttr(const onnx::NodeProto &node, llvm::StringRef name,
                  float defaultValue) const;
  std::string stringAttr(const onnx::NodeProto &node, llvm::StringRef name,
                         llvm::StringRef defaultValue) const;
  std::optional<llvm::SmallVector<int64_t>>
  intsAttr(const onnx::NodeProto &node, llvm::StringRef name) const;

  // Helpers for building.
  /// Extent `dim` of a tensor: a constant where static.
  Dim dimOf(mlir::Value tensor, int64_t dim);
  mlir::Value indexValue(const Dim &dim);
  /// A tensor holding the known elements (i64/i32/i1 as declared).
  mlir::Value materialize(const KnownInts &known);
  /// `axis` counted from the front; fails on out-of-range axes.
  int64_t normalizeAxis(int64_t axis, int64_t rank) const;
  /// A 0-d (or shaped, splat) constant of `elementType`.
  mlir::Value scalarConstant(mlir::Type elementType, double value);
  /// A tensor of the known shape: static extents in the type, the dynamic
  /// ones returned in `dynamicSizes`.
  mlir::RankedTensorType
  shapedType(llvm::ArrayRef<Dim> shape, mlir::Type elementType,
             llvm::SmallVectorImpl<mlir::Value> &dynamicSizes);
  /// nn.reshape to a shape given as Dims.
  mlir::Value reshape(mlir::Value input, llvm::ArrayRef<Dim> shape);
  /// Converts an ONNX element type; fails on unsupported ones.
  mlir::Type elementType(int32_t onnxType);
  /// The elements of an initializer or Constant node's value.
  mlir::DenseElementsAttr constantFrom(const TensorData &data);
  /// The output takes the input's imported value (known, constant or not).
  void forwardValue(const onnx::NodeProto &node, int inputIndex,
                    int outputIndex);
  /// The model's directory (external data of Constant nodes).
  llvm::StringRef modelDirectory() const { return directory; }

private:
  void declareInputs();
  void checkSupported();
  void convertNodes();
  void declareOutputs();
  mlir::Value parameterArgument(const TensorData &data);
  ImportedValue &lookup(const onnx::NodeProto &node, int index);
  const onnx::NodeProto *currentNode = nullptr;

  mlir::OpBuilder b;
  const onnx::ModelProto &model;
  std::map<std::string, TensorData> initializers;
  std::string directory;
  std::map<std::string, ImportedValue> values;
  int64_t opsetVersion = 0;
  mlir::Location currentLoc;
  mlir::ModuleOp module;
  mlir::func::FuncOp function;
  llvm::SmallVector<mlir::Attribute> argumentAttributes;
  std::vector<ParameterValue> parameters;
  std::map<std::string, mlir::Value> parameterArguments;
};

/// The bytes of one element of an ONNX tensor type (0 for unsupported types).
int64_t onnxElementSize(int32_t onnxType);
/// The safetensors dtype name of an ONNX element type.
const char *safetensorsDtype(int32_t onnxType);
/// The ONNX name of an element type, for messages.
std::string onnxTypeName(int32_t onnxType);

/// Rewrites the experts of MoE FFNs exported in the sparse form (NonZero,
/// Gather, ScatterND/ScatterElements with reduction add, per expert) into
/// the dense form that moe-raise-decomposed recognises; see SparseMoE.cpp.
void rewriteSparseMoE(onnx::GraphProto &graph);

/// Runs moe-raise-decomposed, then replaces each nn.concat of parameters it
/// built (the experts' weights, one per expert) by one parameter holding the
/// stacked values, updating `parameters`.
void raiseDecomposedMoE(mlir::ModuleOp module,
                        std::vector<ParameterValue> &parameters);

/// Reads a TensorProto's values (raw, typed fields or external data relative
/// to `modelDirectory`); throws ImportError.
TensorData readTensor(const onnx::TensorProto &tensor,
                      llvm::StringRef modelDirectory);

} // namespace moec::onnx_import

#endif // MOEC_LIB_IMPORT_ONNX_IMPORTER_H
