//===- Safetensors.h - The safetensors file format ------------------------===//
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, optional
// "__metadata__": {string: string}}, then the data section, which the
// offsets index.
//
//===----------------------------------------------------------------------===//
#ifndef MOERT_RUNTIME_SAFETENSORS_H
#define MOERT_RUNTIME_SAFETENSORS_H

#include "File.h"
#include "Tensor.h"

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace moert::detail::safetensors {

/// `__metadata__`: string keys and values.
using Metadata = std::vector<std::pair<std::string, std::string>>;

struct Entry {
  std::string name;
  std::string dtypeName;          // As in the file: "F32", "U16", ...
  std::optional<moe_dtype> dtype; // Empty for types moert lacks.
  std::vector<int64_t> shape;
  uint64_t begin, end; // In the data section.
};

/// A memory-mapped safetensors file whose header has been validated in full:
/// well-formed JSON, known dtypes, byte counts matching dtype and shape,
/// offsets inside the file and not overlapping.
class Reader {
public:
  explicit Reader(const std::string &path);

  const std::string &path() const { return filePath; }
  const std::vector<Entry> &entries() const { return list; }
  const Entry *find(std::string_view name) const;
  /// The `__metadata__` map, in file order.
  const Metadata &metadata() const { return meta; }
  /// An owned copy of the tensor's data.
  TensorRef load(const Entry &entry) const;

private:
  std::string filePath;
  MappedFile file;
  std::vector<Entry> list;
  std::unordered_map<std::string, size_t> index;
  Metadata meta;
  const uint8_t *data = nullptr;
};

/// Writes the tensors, in a layout that keeps every tensor aligned to its
/// element size, atomically. `metadata` joins `"format": "pt"` in
/// `__metadata__`.
void write(
    const std::string &path,
    const std::vector<std::pair<std::string, const moe_tensor *>> &tensors,
    const Metadata &metadata = {});

} // namespace moert::detail::safetensors

#endif // MOERT_RUNTIME_SAFETENSORS_H
