//===- Safetensors.cpp - The safetensors file format ----------------------===//

#include "Safetensors.h"

#include "Error.h"
#include "Json.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace moert::detail::safetensors {
namespace {

// The reference implementation's limit; it keeps a corrupt length from
// making the parser chew through a whole checkpoint.
constexpr uint64_t maxHeaderSize = 100u << 20;

struct DTypeSpelling {
  const char *name;
  size_t size;
  std::optional<moe_dtype> dtype;
};

// Every fixed-size dtype of the format; moert holds tensors of most.
const DTypeSpelling spellings[] = {
    {"BOOL", 1, MOE_BOOL}, {"U8", 1, MOE_U8},   {"I8", 1, MOE_I8},
    {"F8_E5M2", 1, {}},    {"F8_E4M3", 1, {}},  {"I16", 2, {}},
    {"U16", 2, {}},        {"F16", 2, MOE_F16}, {"BF16", 2, MOE_BF16},
    {"I32", 4, MOE_I32},   {"U32", 4, {}},      {"F32", 4, MOE_F32},
    {"F64", 8, MOE_F64},   {"I64", 8, MOE_I64}, {"U64", 8, {}},
};

const DTypeSpelling *findSpelling(std::string_view name) {
  for (const DTypeSpelling &spelling : spellings)
    if (name == spelling.name)
      return &spelling;
  return nullptr;
}

const char *spell(moe_dtype dtype) {
  for (const DTypeSpelling &spelling : spellings)
    if (spelling.dtype == dtype)
      return spelling.name;
  return nullptr;
}

uint64_t readLE64(const uint8_t *bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i)
    value = (value << 8) | bytes[i];
  return value;
}

/// Parses one tensor's header entry.
Entry readEntry(const std::string &name, const json::Value &value,
                uint64_t dataSize, const std::string &what) {
  std::string where = fmt::format("{}: tensor '{}'", what, name);
  if (value.kind != json::Value::Object)
    fail(MOE_STATUS_INVALID_FILE, "{}: expected an object, found {}", where,
         value.kindName());
  Entry entry;
  entry.name = name;
  const json::Value *dtype = value.find("dtype");
  if (!dtype || dtype->kind != json::Value::String)
    fail(MOE_STATUS_INVALID_FILE, "{}: 'dtype' is missing or not a string",
         where);
  const DTypeSpelling *spelling = findSpelling(dtype->string);
  if (!spelling)
    fail(MOE_STATUS_INVALID_FILE, "{}: unknown dtype {}", where,
         json::quote(dtype->string));
  entry.dtypeName = dtype->string;
  entry.dtype = spelling->dtype;

  const json::Value *shape = value.find("shape");
  if (!shape || shape->kind != json::Value::Array)
    fail(MOE_STATUS_INVALID_FILE, "{}: 'shape' is missing or not an array",
         where);
  if (shape->array.size() > MOE_MAX_RANK)
    fail(MOE_STATUS_INVALID_FILE, "{}: rank {} exceeds the maximum {}", where,
         shape->array.size(), MOE_MAX_RANK);
  uint64_t elements = 1;
  for (const json::Value &extent : shape->array) {
    if (!extent.unsignedInteger ||
        *extent.unsignedInteger > uint64_t(INT64_MAX))
      fail(MOE_STATUS_INVALID_FILE,
           "{}: 'shape' must hold non-negative integers", where);
    entry.shape.push_back(static_cast<int64_t>(*extent.unsignedInteger));
    if (__builtin_mul_overflow(elements, *extent.unsignedInteger, &elements))
      fail(MOE_STATUS_INVALID_FILE, "{}: shape {} is too large", where,
           formatShape(entry.shape));
  }

  const json::Value *offsets = value.find("data_offsets");
  if (!offsets || offsets->kind != json::Value::Array ||
      offsets->array.size() != 2 || !offsets->array[0].unsignedInteger ||
      !offsets->array[1].unsignedInteger)
    fail(MOE_STATUS_INVALID_FILE,
         "{}: 'data_offsets' must be two non-negative integers [begin, end]",
         where);
  entry.begin = *offsets->array[0].unsignedInteger;
  entry.end = *offsets->array[1].unsignedInteger;
  if (entry.begin > entry.end)
    fail(MOE_STATUS_INVALID_FILE, "{}: data_offsets [{}, {}] are reversed",
         where, entry.begin, entry.end);
  if (entry.end > dataSize)
    fail(MOE_STATUS_INVALID_FILE,
         "{}: data_offsets [{}, {}] lie outside the {}-byte data section "
         "(truncated file?)",
         where, entry.begin, entry.end, dataSize);
  uint64_t bytes;
  if (__builtin_mul_overflow(elements, spelling->size, &bytes))
    fail(MOE_STATUS_INVALID_FILE, "{}: shape {} is too large", where,
         formatShape(entry.shape));
  if (bytes != entry.end - entry.begin)
    fail(MOE_STATUS_INVALID_FILE,
         "{}: {} {} needs {} bytes but data_offsets [{}, {}] span {}", where,
         entry.dtypeName, formatShape(entry.shape), bytes, entry.begin,
         entry.end, entry.end - entry.begin);
  return entry;
}

Metadata readMetadata(const json::Value &value, const std::string &what) {
  bool valid = value.kind == json::Value::Object;
  Metadata metadata;
  for (const auto &member : value.object) {
    valid = valid && member.second.kind == json::Value::String;
    metadata.emplace_back(member.first, member.second.string);
  }
  if (!valid)
    fail(MOE_STATUS_INVALID_FILE,
         "{}: '__metadata__' must map strings to strings", what);
  return metadata;
}

/// Fails unless `text` is UTF-8, which the reader insists on.
void checkUtf8(const std::string &text, const std::string &path) {
  try {
    json::parse(json::quote(text), "metadata");
  } catch (const Error &) {
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "cannot write safetensors file '{}': metadata {} is not valid UTF-8",
         path, json::quote(text));
  }
}

} // namespace

Reader::Reader(const std::string &path)
    : filePath(path), file(path, "safetensors file") {
  std::string what = fmt::format("safetensors file '{}'", path);
  if (file.size() < 8)
    fail(MOE_STATUS_INVALID_FILE,
         "{} is truncated: {} bytes, shorter than the 8-byte header length",
         what, file.size());
  uint64_t headerSize = readLE64(file.data());
  if (headerSize > file.size() - 8)
    fail(MOE_STATUS_INVALID_FILE,
         "{}: the header length {} exceeds the {} bytes after it (truncated "
         "file?)",
         what, headerSize, file.size() - 8);
  if (headerSize > maxHeaderSize)
    fail(MOE_STATUS_INVALID_FILE,
         "{}: the header length {} exceeds the {}-byte limit", what, headerSize,
         maxHeaderSize);
  std::string_view header(reinterpret_cast<const char *>(file.data()) + 8,
                          headerSize);
  json::Value root = json::parse(header, what + " header");
  if (root.kind != json::Value::Object)
    fail(MOE_STATUS_INVALID_FILE, "{}: the header is {}, not a JSON object",
         what, root.kindName());
  data = file.data() + 8 + headerSize;
  uint64_t dataSize = file.size() - 8 - headerSize;
  for (const auto &[name, value] : root.object) {
    if (name == "__metadata__") {
      meta = readMetadata(value, what);
      continue;
    }
    if (name.empty())
      fail(MOE_STATUS_INVALID_FILE, "{}: a tensor has an empty name", what);
    index.emplace(name, list.size());
    list.push_back(readEntry(name, value, dataSize, what));
  }
  // Tensors must not share bytes; holes between them are tolerated.
  std::vector<const Entry *> sorted;
  for (const Entry &entry : list)
    if (entry.begin != entry.end)
      sorted.push_back(&entry);
  std::sort(sorted.begin(), sorted.end(),
            [](const Entry *a, const Entry *b) { return a->begin < b->begin; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->begin < sorted[i - 1]->end)
      fail(MOE_STATUS_INVALID_FILE,
           "{}: tensors '{}' (bytes [{}, {})) and '{}' (bytes [{}, {})) "
           "overlap",
           what, sorted[i - 1]->name, sorted[i - 1]->begin, sorted[i - 1]->end,
           sorted[i]->name, sorted[i]->begin, sorted[i]->end);
}

const Entry *Reader::find(std::string_view name) const {
  auto it = index.find(std::string(name));
  return it == index.end() ? nullptr : &list[it->second];
}

TensorRef Reader::load(const Entry &entry) const {
  if (!entry.dtype)
    fail(MOE_STATUS_UNSUPPORTED,
         "safetensors file '{}': tensor '{}' has dtype {}, which moert does "
         "not support",
         filePath, entry.name, entry.dtypeName);
  TensorRef tensor = newTensor(*entry.dtype, entry.shape);
  // The data section need not be aligned: copy bytes.
  std::memcpy(tensor->data, data + entry.begin, entry.end - entry.begin);
  return tensor;
}

void write(
    const std::string &path,
    const std::vector<std::pair<std::string, const moe_tensor *>> &tensors,
    const Metadata &metadata) {
  // Widest elements first: with the header padded to 8 bytes, every tensor
  // starts aligned to its element size.
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return moe_dtype_size(tensors[a].second->dtype) >
           moe_dtype_size(tensors[b].second->dtype);
  });
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"";
  for (const auto &[key, value] : metadata) {
    if (key == "format")
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "cannot write safetensors file '{}': the metadata key 'format' is "
           "reserved",
           path);
    for (const std::string *text : {&key, &value})
      checkUtf8(*text, path);
    header += fmt::format(",{}:{}", json::quote(key), json::quote(value));
  }
  header += '}';
  uint64_t offset = 0;
  for (size_t i : order) {
    const auto &[name, tensor] = tensors[i];
    if (name == "__metadata__")
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "cannot write safetensors file '{}': '__metadata__' is reserved "
           "and cannot name a tensor",
           path);
    const char *dtype = spell(tensor->dtype);
    header += fmt::format(
        ",{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
        json::quote(name), dtype, fmt::join(tensor->shape, ","), offset,
        offset + tensor->byteSize);
    offset += tensor->byteSize;
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  uint8_t length[8];
  for (int i = 0; i < 8; ++i)
    length[i] = static_cast<uint8_t>(uint64_t(header.size()) >> (8 * i));
  std::vector<Piece> pieces{{length, 8}, {header.data(), header.size()}};
  for (size_t i : order)
    pieces.push_back({tensors[i].second->data, tensors[i].second->byteSize});
  writeFileAtomically(path, pieces, "safetensors file");
}

} // namespace moert::detail::safetensors

using namespace moert::detail;

extern "C" {

moe_status *moe_safetensors_read(const char *path, moe_tensor_list **out) {
  return guard([&] {
    requireArg(path, "moe_safetensors_read", "path");
    requireArg(out, "moe_safetensors_read", "out");
    safetensors::Reader reader(path);
    TensorListRef list(new moe_tensor_list);
    for (const safetensors::Entry &entry : reader.entries())
      addToList(*list, entry.name, reader.load(entry));
    *out = list.release();
  });
}

moe_status *moe_safetensors_write(const char *path,
                                  const moe_tensor_list *tensors) {
  return guard([&] {
    requireArg(path, "moe_safetensors_write", "path");
    requireArg(tensors, "moe_safetensors_write", "tensors");
    std::vector<std::pair<std::string, const moe_tensor *>> items;
    for (const auto &[name, tensor] : tensors->items)
      items.emplace_back(name, tensor.get());
    safetensors::write(path, items);
  });
}

} // extern "C"
