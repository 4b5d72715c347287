//===- Json.h - A small strict JSON parser --------------------------------===//
//
// Enough JSON for safetensors headers: RFC 8259, strict (no trailing commas,
// no comments, no duplicate keys, valid UTF-8, bounded nesting), with
// integers kept exact so that 64-bit byte offsets survive.
//
//===----------------------------------------------------------------------===//
#ifndef MOERT_RUNTIME_JSON_H
#define MOERT_RUNTIME_JSON_H

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moert::detail::json {

struct Value {
  enum Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Null;
  bool boolean = false;
  double number = 0;
  /// Set for a number written without fraction or exponent that fits.
  std::optional<uint64_t> unsignedInteger;
  std::string string;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object; // In file order.

  /// Member `key` of an object, or null.
  const Value *find(std::string_view key) const;
  /// "object", "string", ...
  const char *kindName() const;
};

/// Parses `text` as one JSON value. Fails with MOE_STATUS_INVALID_FILE and a
/// message "<what>: <problem> at byte <offset>".
Value parse(std::string_view text, const std::string &what);

/// `text` as a JSON string literal, quotes included.
std::string quote(std::string_view text);

} // namespace moert::detail::json

#endif // MOERT_RUNTIME_JSON_H
