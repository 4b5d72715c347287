//===- ImportONNX.h - ONNX models into the nn and moe dialects ---*- C++ -*-===//
//
// The ONNX frontend of moec. It reads a model file (protobuf, with external
// data files next to it), and builds a module whose entry point @forward
// takes the graph inputs and the parameters and returns the graph outputs.
// Float initializers with more than one element become parameters
// (moe.role = "parameter", named after the initializer); their values come
// back to the caller, which writes them as safetensors. Other initializers
// and Constant nodes become constants in the IR.
//
// This header is free of protobuf and ONNX types: only the compiler links
// the importer library, which is built with exceptions and RTTI as protobuf
// wants them.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_IMPORTONNX_H
#define MOEC_IMPORTONNX_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace moec {

/// The value of one parameter, in the layout of the imported module (which
/// may differ from the ONNX initializer's: expert weights are transposed to
/// the moe dialect's `x @ W` layout).
struct ParameterValue {
  std::string name;
  std::string dtype; // safetensors dtype: F32, F16, BF16, I64, I32, BOOL
  std::vector<int64_t> shape;
  std::vector<char> bytes; // little-endian, row-major
};

struct ImportedModel {
  mlir::OwningOpRef<mlir::ModuleOp> module;
  std::vector<ParameterValue> parameters;
};

/// Imports the ONNX model at `path`. Errors are one message that names the
/// file and what is wrong (every unsupported operator with its nodes, a
/// malformed file, a missing external data file, ...).
llvm::Expected<ImportedModel> importONNXFile(mlir::MLIRContext &context,
                                             llvm::StringRef path);

/// Writes `parameters` as a safetensors file, atomically (a temporary file
/// renamed into place).
llvm::Error writeSafetensors(llvm::StringRef path,
                             llvm::ArrayRef<ParameterValue> parameters);

} // namespace moec

#endif // MOEC_IMPORTONNX_H
