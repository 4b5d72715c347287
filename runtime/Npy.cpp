//===- Npy.cpp - NumPy .npy files -----------------------------------------===//
//
// Format: "\x93NUMPY", major, minor, a header length (2 bytes LE for 1.0,
// 4 bytes for 2.0 and 3.0), then a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
// spaces and a newline, then the data.
//
//===----------------------------------------------------------------------===//

#include "Error.h"
#include "File.h"
#include "Tensor.h"

#include <cstring>

using namespace moert::detail;

namespace {

constexpr char magic[] = "\x93NUMPY";
constexpr size_t magicSize = 6;

struct Descr {
  const char *name;
  moe_dtype dtype;
};

// numpy writes '|' for one-byte types; '<' is accepted for them too.
const Descr descrs[] = {
    {"<f4", MOE_F32}, {"<f2", MOE_F16},  {"<f8", MOE_F64},  {"|i1", MOE_I8},
    {"<i1", MOE_I8},  {"<i4", MOE_I32},  {"<i8", MOE_I64},  {"|u1", MOE_U8},
    {"<u1", MOE_U8},  {"|b1", MOE_BOOL}, {"<b1", MOE_BOOL},
};

struct Header {
  std::string descr;
  bool fortranOrder = false;
  std::vector<int64_t> shape;
};

/// Parses the subset of Python literal syntax that npy headers use.
class HeaderParser {
public:
  HeaderParser(std::string_view text, const std::string &what)
      : text(text), what(what) {}

  Header parse() {
    Header header;
    bool seenDescr = false, seenOrder = false, seenShape = false;
    expect('{');
    while (!peek('}')) {
      std::string key = parseString();
      expect(':');
      if (key == "descr") {
        if (peek('['))
          fail(MOE_STATUS_UNSUPPORTED,
               "{} holds a structured array, which moert does not support",
               what);
        header.descr = parseString();
        seenDescr = true;
      } else if (key == "fortran_order") {
        header.fortranOrder = parseBool();
        seenOrder = true;
      } else if (key == "shape") {
        header.shape = parseShape();
        seenShape = true;
      } else {
        error(fmt::format("unexpected key '{}'", key));
      }
      if (!peek('}'))
        expect(',');
    }
    expect('}');
    skipSpace();
    if (pos != text.size())
      error("unexpected text after the header dict");
    if (!seenDescr || !seenOrder || !seenShape)
      error("the header lacks 'descr', 'fortran_order' or 'shape'");
    return header;
  }

private:
  [[noreturn]] void error(const std::string &problem) {
    fail(MOE_STATUS_INVALID_FILE, "{}: malformed header: {} at byte {}", what,
         problem, pos);
  }

  void skipSpace() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\n'))
      ++pos;
  }

  bool peek(char c) {
    skipSpace();
    return pos < text.size() && text[pos] == c;
  }

  void expect(char c) {
    if (!peek(c))
      error(fmt::format("expected '{}'", c));
    ++pos;
  }

  std::string parseString() {
    skipSpace();
    if (pos >= text.size() || (text[pos] != '\'' && text[pos] != '"'))
      error("expected a string");
    char quote = text[pos++];
    size_t end = text.find(quote, pos);
    if (end == std::string_view::npos)
      error("unterminated string");
    std::string value(text.substr(pos, end - pos));
    pos = end + 1;
    return value;
  }

  bool parseBool() {
    skipSpace();
    for (auto [word, value] : {std::pair("True", true), {"False", false}})
      if (text.substr(pos, std::strlen(word)) == word) {
        pos += std::strlen(word);
        return value;
      }
    error("expected True or False");
  }

  std::vector<int64_t> parseShape() {
    std::vector<int64_t> shape;
    expect('(');
    while (!peek(')')) {
      size_t start = pos;
      int64_t extent = 0;
      while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
        if (__builtin_mul_overflow(extent, 10, &extent) ||
            __builtin_add_overflow(extent, text[pos] - '0', &extent))
          error("extent too large");
        ++pos;
      }
      if (pos == start)
        error("expected a non-negative integer extent");
      if (pos < text.size() && text[pos] == 'L') // Python 2 long.
        ++pos;
      shape.push_back(extent);
      if (shape.size() > MOE_MAX_RANK)
        error(fmt::format("rank exceeds the maximum {}", MOE_MAX_RANK));
      if (!peek(')'))
        expect(',');
    }
    expect(')');
    return shape;
  }

  std::string_view text;
  const std::string &what;
  size_t pos = 0;
};

moe_dtype dtypeOf(const std::string &descr, const std::string &what) {
  for (const Descr &known : descrs)
    if (descr == known.name)
      return known.dtype;
  if (!descr.empty() && descr[0] == '>')
    fail(MOE_STATUS_UNSUPPORTED,
         "{} is big-endian ('{}'); moert reads little-endian data only", what,
         descr);
  fail(MOE_STATUS_UNSUPPORTED,
       "{} has dtype '{}', which moert does not support (supported: <f4, "
       "<f2, <f8, |i1, <i4, <i8, |u1, |b1)",
       what, descr);
}

TensorRef readNpy(const std::string &path) {
  std::string what = fmt::format("npy file '{}'", path);
  MappedFile file(path, "npy file");
  const uint8_t *bytes = file.data();
  if (file.size() < magicSize || std::memcmp(bytes, magic, magicSize) != 0)
    fail(MOE_STATUS_INVALID_FILE, "{} is not an npy file (no \\x93NUMPY magic)",
         what);
  if (file.size() < magicSize + 4)
    fail(MOE_STATUS_INVALID_FILE, "{} is truncated in its preamble", what);
  uint8_t major = bytes[6], minor = bytes[7];
  size_t headerStart, headerSize;
  if (major == 1 && minor == 0) {
    headerStart = 10;
    headerSize = bytes[8] | (size_t(bytes[9]) << 8);
  } else if ((major == 2 || major == 3) && minor == 0) {
    if (file.size() < 12)
      fail(MOE_STATUS_INVALID_FILE, "{} is truncated in its preamble", what);
    headerStart = 12;
    headerSize = bytes[8] | (size_t(bytes[9]) << 8) |
                 (size_t(bytes[10]) << 16) | (size_t(bytes[11]) << 24);
  } else {
    fail(MOE_STATUS_UNSUPPORTED,
         "{} has format version {}.{}; moert reads 1.0, 2.0 and 3.0", what,
         major, minor);
  }
  if (headerSize > file.size() - headerStart)
    fail(MOE_STATUS_INVALID_FILE,
         "{} is truncated: its {}-byte header runs past the end of the file",
         what, headerSize);
  Header header =
      HeaderParser(
          std::string_view(reinterpret_cast<const char *>(bytes) + headerStart,
                           headerSize),
          what)
          .parse();
  if (header.fortranOrder)
    fail(MOE_STATUS_UNSUPPORTED,
         "{} is in Fortran order; moert reads C order only (save "
         "np.ascontiguousarray(a))",
         what);
  moe_dtype dtype = dtypeOf(header.descr, what);
  ShapeSize size = checkShape(dtype, static_cast<int32_t>(header.shape.size()),
                              header.shape.data(), what);
  size_t dataStart = headerStart + headerSize;
  size_t available = file.size() - dataStart;
  if (available != size.bytes)
    fail(MOE_STATUS_INVALID_FILE,
         "{}: {} {} needs {} bytes of data but the file has {}{}", what,
         moe_dtype_name(dtype), formatShape(header.shape), size.bytes,
         available, available < size.bytes ? " (truncated file?)" : "");
  TensorRef tensor = newTensor(dtype, header.shape);
  std::memcpy(tensor->data, bytes + dataStart, size.bytes);
  if (dtype == MOE_BOOL)
    for (int64_t i = 0; i < size.elements; ++i)
      if (static_cast<uint8_t *>(tensor->data)[i] > 1)
        fail(MOE_STATUS_INVALID_FILE, "{}: bool element {} is {}, not 0 or 1",
             what, i, static_cast<uint8_t *>(tensor->data)[i]);
  return tensor;
}

void writeNpy(const std::string &path, const moe_tensor &tensor) {
  const char *descr = nullptr;
  for (const Descr &known : descrs)
    if (known.dtype == tensor.dtype && !descr)
      descr = known.name;
  if (!descr)
    fail(MOE_STATUS_UNSUPPORTED,
         "cannot write npy file '{}': npy has no {} type (cast to f32 first)",
         path, moe_dtype_name(tensor.dtype));
  std::string shape;
  for (int64_t extent : tensor.shape)
    shape += fmt::format("{}, ", extent);
  if (tensor.shape.size() > 1)
    shape.resize(shape.size() - 2); // (2, 3) but (2,) and ().
  else if (tensor.shape.size() == 1)
    shape.pop_back();
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}",
                  descr, shape);
  // Pad with spaces and a newline so that the data starts 64-byte aligned.
  // Format 1.0 suffices: with rank <= MOE_MAX_RANK the header stays far
  // below its 64 KiB limit.
  constexpr size_t preamble = 10;
  header.append(63 - (preamble + header.size()) % 64, ' ');
  header += '\n';
  std::string start(magic, magicSize);
  start += '\x01';
  start += '\0';
  start += static_cast<char>(header.size() & 0xff);
  start += static_cast<char>(header.size() >> 8);
  writeFileAtomically(path,
                      {{start.data(), start.size()},
                       {header.data(), header.size()},
                       {tensor.data, tensor.byteSize}},
                      "npy file");
}

} // namespace

extern "C" {

moe_status *moe_npy_read(const char *path, moe_tensor **out) {
  return guard([&] {
    requireArg(path, "moe_npy_read", "path");
    requireArg(out, "moe_npy_read", "out");
    *out = readNpy(path).release();
  });
}

moe_status *moe_npy_write(const char *path, const moe_tensor *tensor) {
  return guard([&] {
    requireArg(path, "moe_npy_write", "path");
    requireArg(tensor, "moe_npy_write", "tensor");
    writeNpy(path, *tensor);
  });
}

} // extern "C"
