//===- ModelFile.cpp - Reading ONNX files, writing parameters --------------===//
//
// Everything that touches bytes on disk: the model protobuf, initializers in
// their three encodings (raw_data, typed fields, external data files) and
// the safetensors file of the parameters.
//
//===----------------------------------------------------------------------===//

#include "Importer.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <cstring>

using namespace moec;
using namespace moec::onnx_import;
using llvm::Twine;

int64_t moec::onnx_import::onnxElementSize(int32_t onnxType) {
  switch (onnxType) {
  case onnx::TensorProto::FLOAT:
  case onnx::TensorProto::INT32:
    return 4;
  case onnx::TensorProto::FLOAT16:
  case onnx::TensorProto::BFLOAT16:
    return 2;
  case onnx::TensorProto::INT64:
  case onnx::TensorProto::DOUBLE:
    return 8;
  case onnx::TensorProto::BOOL:
  case onnx::TensorProto::INT8:
  case onnx::TensorProto::UINT8:
    return 1;
  default:
    return 0;
  }
}

const char *moec::onnx_import::safetensorsDtype(int32_t onnxType) {
  switch (onnxType) {
  case onnx::TensorProto::FLOAT:
    return "F32";
  case onnx::TensorProto::FLOAT16:
    return "F16";
  case onnx::TensorProto::BFLOAT16:
    return "BF16";
  case onnx::TensorProto::INT64:
    return "I64";
  case onnx::TensorProto::INT32:
    return "I32";
  case onnx::TensorProto::BOOL:
    return "BOOL";
  default:
    return "";
  }
}

std::string moec::onnx_import::onnxTypeName(int32_t onnxType) {
  if (onnx::TensorProto::DataType_IsValid(onnxType))
    return onnx::TensorProto::DataType_Name(
        static_cast<onnx::TensorProto::DataType>(onnxType));
  return "type " + std::to_string(onnxType);
}

int64_t TensorData::numElements() const {
  int64_t count = 1;
  for (int64_t extent : shape)
    count *= extent;
  return count;
}

/// The bytes of an external data entry, checked against the file.
static std::vector<char> readExternal(const onnx::TensorProto &tensor,
                                      llvm::StringRef modelDirectory,
                                      uint64_t expectedBytes) {
  std::string location;
  uint64_t offset = 0;
  std::optional<uint64_t> length;
  for (const onnx::StringStringEntryProto &entry : tensor.external_data()) {
    const std::string &key = entry.key();
    llvm::StringRef value = entry.value();
    if (key == "location") {
      location = entry.value();
    } else if (key == "offset" || key == "length") {
      uint64_t parsed;
      if (value.getAsInteger(10, parsed))
        throw ImportError("initializer '" + tensor.name() + "': external " +
                          key + " '" + entry.value() + "' is not a number");
      (key == "offset" ? offset : length.emplace()) = parsed;
    }
  }
  if (location.empty())
    throw ImportError("initializer '" + tensor.name() +
                      "': external data without a location");
  // Like onnxruntime, only files beside the model (or below it).
  llvm::StringRef relative = location;
  if (llvm::sys::path::is_absolute(relative) ||
      llvm::any_of(llvm::make_range(llvm::sys::path::begin(relative),
                                    llvm::sys::path::end(relative)),
                   [](llvm::StringRef part) { return part == ".."; }))
    throw ImportError("initializer '" + tensor.name() +
                      "': external data location '" + location +
                      "' must be a relative path inside the model's directory");
  llvm::SmallString<256> path(modelDirectory);
  llvm::sys::path::append(path, relative);
  if (length && *length != expectedBytes)
    throw ImportError("initializer '" + tensor.name() + "': external length " +
                      std::to_string(*length) + " does not match its shape (" +
                      std::to_string(expectedBytes) + " bytes)");
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> file =
      llvm::MemoryBuffer::getFileSlice(path, expectedBytes, offset,
                                       /*IsVolatile=*/false);
  uint64_t fileSize = 0;
  if (llvm::sys::fs::file_size(path, fileSize))
    throw ImportError("initializer '" + tensor.name() +
                      "': external data file '" + std::string(path) +
                      "' cannot be read");
  if (offset + expectedBytes > fileSize || !file)
    throw ImportError("initializer '" + tensor.name() +
                      "': external data file '" + std::string(path) +
                      "' has " + std::to_string(fileSize) +
                      " bytes, too few for " + std::to_string(expectedBytes) +
                      " bytes at offset " + std::to_string(offset));
  llvm::StringRef data = (*file)->getBuffer();
  return std::vector<char>(data.begin(), data.end());
}

TensorData moec::onnx_import::readTensor(const onnx::TensorProto &tensor,
                                         llvm::StringRef modelDirectory) {
  TensorData data;
  data.name = tensor.name();
  data.onnxType = tensor.data_type();
  for (int64_t extent : tensor.dims()) {
    if (extent < 0)
      throw ImportError("initializer '" + tensor.name() +
                        "' has a negative extent");
    data.shape.push_back(extent);
  }
  int64_t elementSize = onnxElementSize(data.onnxType);
  if (elementSize == 0)
    throw ImportError("initializer '" + tensor.name() + "' has element type " +
                      onnxTypeName(data.onnxType) + ", which is not supported");
  if (tensor.segment().end() != 0 || tensor.segment().begin() != 0)
    throw ImportError("initializer '" + tensor.name() +
                      "' is segmented, which is not supported");
  uint64_t bytes = static_cast<uint64_t>(data.numElements()) * elementSize;
  auto sizeMismatch = [&](uint64_t found) {
    return ImportError("initializer '" + tensor.name() + "' holds " +
                       std::to_string(found) + " bytes, but its shape needs " +
                       std::to_string(bytes));
  };

  if (tensor.data_location() == onnx::TensorProto::EXTERNAL) {
    data.bytes = readExternal(tensor, modelDirectory, bytes);
    return data;
  }
  if (tensor.has_raw_data()) {
    const std::string &raw = tensor.raw_data();
    if (raw.size() != bytes)
      throw sizeMismatch(raw.size());
    data.bytes.assign(raw.begin(), raw.end());
    return data;
  }
  // The typed fields: one repeated field per storage class.
  data.bytes.resize(bytes);
  char *out = data.bytes.data();
  int64_t count = data.numElements();
  auto checkCount = [&](int64_t found) {
    if (found != count)
      throw sizeMismatch(found * elementSize);
  };
  switch (data.onnxType) {
  case onnx::TensorProto::FLOAT:
    checkCount(tensor.float_data_size());
    std::memcpy(out, tensor.float_data().data(), bytes);
    break;
  case onnx::TensorProto::DOUBLE:
    checkCount(tensor.double_data_size());
    std::memcpy(out, tensor.double_data().data(), bytes);
    break;
  case onnx::TensorProto::INT64:
    checkCount(tensor.int64_data_size());
    std::memcpy(out, tensor.int64_data().data(), bytes);
    break;
  default:
    // INT32, INT8, UINT8, BOOL, FLOAT16 and BFLOAT16 live in int32_data, one
    // element per entry, in its low bytes.
    checkCount(tensor.int32_data_size());
    for (int64_t i = 0; i < count; ++i) {
      int32_t value = tensor.int32_data(i);
      std::memcpy(out + i * elementSize, &value, elementSize);
    }
    break;
  }
  return data;
}

llvm::Expected<ImportedModel>
moec::importONNXFile(mlir::MLIRContext &context, llvm::StringRef path) {
  auto error = [&](const Twine &message) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   path + ": " + message);
  };
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> file =
      llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                  /*RequiresNullTerminator=*/false);
  if (!file)
    return error("cannot read: " + file.getError().message());
  llvm::StringRef bytes = (*file)->getBuffer();

  onnx::ModelProto model;
  google::protobuf::io::ArrayInputStream stream(bytes.data(),
                                                static_cast<int>(bytes.size()));
  google::protobuf::io::CodedInputStream coded(&stream);
  coded.SetTotalBytesLimit(std::numeric_limits<int>::max());
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    return error("files over 2 GiB must keep their weights as external data");
  if (!model.ParseFromCodedStream(&coded) || !coded.ConsumedEntireMessage())
    return error("not a valid ONNX model (the protobuf does not parse)");
  if (!model.has_graph())
    return error("not a valid ONNX model (no graph)");

  llvm::SmallString<256> directory(path);
  llvm::sys::path::remove_filename(directory);
  if (directory.empty())
    directory = ".";
  try {
    rewriteSparseMoE(*model.mutable_graph());
    std::map<std::string, TensorData> initializers;
    for (const onnx::TensorProto &tensor : model.graph().initializer())
      initializers[tensor.name()] = readTensor(tensor, directory);
    GraphImporter importer(context, model, std::move(initializers),
                           std::string(directory));
    ImportedModel imported = importer.run();
    raiseDecomposedMoE(*imported.module, imported.parameters);
    return std::move(imported);
  } catch (const ImportError &e) {
    return error(e.what());
  }
}

llvm::Error moec::writeSafetensors(llvm::StringRef path,
                                   llvm::ArrayRef<ParameterValue> parameters) {
  llvm::json::Object header;
  uint64_t offset = 0;
  for (const ParameterValue &parameter : parameters) {
    llvm::json::Array shape;
    for (int64_t extent : parameter.shape)
      shape.push_back(extent);
    uint64_t end = offset + parameter.bytes.size();
    header[parameter.name] = llvm::json::Object{
        {"dtype", parameter.dtype},
        {"shape", std::move(shape)},
        {"data_offsets", llvm::json::Array{offset, end}}};
    offset = end;
  }
  std::string headerText;
  llvm::raw_string_ostream(headerText) << llvm::json::Value(std::move(header));
  // The data starts 8-byte aligned, as the format recommends.
  headerText.append((8 - headerText.size() % 8) % 8, ' ');

  llvm::SmallString<256> temporary(path);
  temporary += ".tmp%%%%%%";
  int fd;
  if (std::error_code ec =
          llvm::sys::fs::createUniqueFile(temporary, fd, temporary))
    return llvm::createStringError(ec, "cannot write " + path + ": " +
                                           ec.message());
  {
    llvm::raw_fd_ostream out(fd, /*shouldClose=*/true);
    uint64_t headerSize = headerText.size();
    char sizeBytes[8];
    for (int i = 0; i < 8; ++i)
      sizeBytes[i] = static_cast<char>((headerSize >> (8 * i)) & 0xff);
    out.write(sizeBytes, 8);
    out << headerText;
    for (const ParameterValue &parameter : parameters)
      out.write(parameter.bytes.data(), parameter.bytes.size());
    out.close();
    if (out.has_error()) {
      std::error_code ec = out.error();
      out.clear_error();
      llvm::sys::fs::remove(temporary);
      return llvm::createStringError(ec, "cannot write " + path + ": " +
                                             ec.message());
    }
  }
  if (std::error_code ec = llvm::sys::fs::rename(temporary, path)) {
    llvm::sys::fs::remove(temporary);
    return llvm::createStringError(ec, "cannot write " + path + ": " +
                                           ec.message());
  }
  return llvm::Error::success();
}
