//===- Json.cpp - A small strict JSON parser ------------------------------===//

#include "Json.h"

#include "Error.h"

#include <charconv>
#include <unordered_set>

namespace moert::detail::json {
namespace {

// Deep enough for any real header, shallow enough for the stack.
constexpr int maxDepth = 64;

class Parser {
public:
  Parser(std::string_view text, const std::string &what)
      : text(text), what(what) {}

  Value parseDocument() {
    Value value = parseValue(0);
    skipSpace();
    if (pos != text.size())
      error("unexpected text after the JSON value");
    return value;
  }

private:
  [[noreturn]] void error(const std::string &problem) {
    fail(MOE_STATUS_INVALID_FILE, "{}: {} at byte {}", what, problem, pos);
  }

  void skipSpace() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' ||
                                 text[pos] == '\n' || text[pos] == '\r'))
      ++pos;
  }

  bool consume(char c) {
    if (pos < text.size() && text[pos] == c) {
      ++pos;
      return true;
    }
    return false;
  }

  void expectWord(std::string_view word) {
    if (text.substr(pos, word.size()) != word)
      error("invalid literal");
    pos += word.size();
  }

  Value parseValue(int depth) {
    if (depth > maxDepth)
      error(fmt::format("nesting deeper than {}", maxDepth));
    skipSpace();
    if (pos >= text.size())
      error("unexpected end of JSON");
    Value value;
    switch (text[pos]) {
    case '{':
      value.kind = Value::Object;
      parseObject(value, depth);
      break;
    case '[':
      value.kind = Value::Array;
      parseArray(value, depth);
      break;
    case '"':
      value.kind = Value::String;
      value.string = parseString();
      break;
    case 't':
      expectWord("true");
      value.kind = Value::Bool;
      value.boolean = true;
      break;
    case 'f':
      expectWord("false");
      value.kind = Value::Bool;
      break;
    case 'n':
      expectWord("null");
      break;
    default:
      value.kind = Value::Number;
      parseNumber(value);
    }
    return value;
  }

  void parseObject(Value &value, int depth) {
    ++pos; // '{'
    skipSpace();
    if (consume('}'))
      return;
    std::unordered_set<std::string> keys;
    while (true) {
      skipSpace();
      if (pos >= text.size() || text[pos] != '"')
        error("expected a string key");
      size_t keyPos = pos;
      std::string key = parseString();
      if (!keys.insert(key).second) {
        pos = keyPos;
        error(fmt::format("duplicate key {}", quote(key)));
      }
      skipSpace();
      if (!consume(':'))
        error("expected ':'");
      value.object.emplace_back(std::move(key), parseValue(depth + 1));
      skipSpace();
      if (consume('}'))
        return;
      if (!consume(','))
        error("expected ',' or '}'");
    }
  }

  void parseArray(Value &value, int depth) {
    ++pos; // '['
    skipSpace();
    if (consume(']'))
      return;
    while (true) {
      value.array.push_back(parseValue(depth + 1));
      skipSpace();
      if (consume(']'))
        return;
      if (!consume(','))
        error("expected ',' or ']'");
    }
  }

  void parseNumber(Value &value) {
    size_t start = pos;
    consume('-');
    if (consume('0')) {
      // No leading zeros.
    } else if (pos < text.size() && text[pos] >= '1' && text[pos] <= '9') {
      while (pos < text.size() && isdigit(text[pos]))
        ++pos;
    } else {
      error("invalid value");
    }
    bool integral = true;
    if (consume('.')) {
      integral = false;
      if (!digits())
        error("expected digits after '.'");
    }
    if (consume('e') || consume('E')) {
      integral = false;
      if (!consume('+'))
        consume('-');
      if (!digits())
        error("expected digits in the exponent");
    }
    // from_chars ignores the C locale, unlike strtod.
    const char *first = text.data() + start, *last = text.data() + pos;
    if (std::from_chars(first, last, value.number).ec ==
        std::errc::result_out_of_range)
      error("number out of range");
    uint64_t parsed;
    if (integral && *first != '-' &&
        std::from_chars(first, last, parsed).ec == std::errc())
      value.unsignedInteger = parsed;
  }

  bool digits() {
    size_t start = pos;
    while (pos < text.size() && isdigit(text[pos]))
      ++pos;
    return pos > start;
  }

  static bool isdigit(char c) { return c >= '0' && c <= '9'; }

  unsigned hex4() {
    if (pos + 4 > text.size())
      error("truncated \\u escape");
    unsigned code = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text[pos++];
      code <<= 4;
      if (c >= '0' && c <= '9')
        code |= c - '0';
      else if (c >= 'a' && c <= 'f')
        code |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        code |= c - 'A' + 10;
      else
        error("invalid \\u escape");
    }
    return code;
  }

  static void appendUtf8(std::string &out, unsigned code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xc0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      out += static_cast<char>(0xe0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (code >> 18));
      out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    }
  }

  /// Copies one well-formed UTF-8 sequence starting at `pos`.
  void copyUtf8(std::string &out) {
    unsigned char lead = text[pos];
    int length;
    unsigned code, min;
    if (lead >= 0xc2 && lead <= 0xdf) {
      length = 2, code = lead & 0x1f, min = 0x80;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3, code = lead & 0x0f, min = 0x800;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4, code = lead & 0x07, min = 0x10000;
    } else {
      error("invalid UTF-8");
    }
    if (pos + length > text.size())
      error("truncated UTF-8 sequence");
    for (int i = 1; i < length; ++i) {
      unsigned char next = text[pos + i];
      if ((next & 0xc0) != 0x80)
        error("invalid UTF-8");
      code = (code << 6) | (next & 0x3f);
    }
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
      error("invalid UTF-8");
    out.append(text.substr(pos, length));
    pos += length;
  }

  std::string parseString() {
    ++pos; // '"'
    std::string out;
    while (true) {
      if (pos >= text.size())
        error("unterminated string");
      unsigned char c = text[pos];
      if (c == '"') {
        ++pos;
        return out;
      }
      if (c < 0x20)
        error("control character in a string");
      if (c >= 0x80) {
        copyUtf8(out);
        continue;
      }
      ++pos;
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (pos >= text.size())
        error("unterminated string");
      switch (text[pos++]) {
      case '"':
        out += '"';
        break;
      case '\\':
        out += '\\';
        break;
      case '/':
        out += '/';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        unsigned code = hex4();
        if (code >= 0xdc00 && code <= 0xdfff)
          error("unpaired low surrogate in \\u escape");
        if (code >= 0xd800 && code <= 0xdbff) {
          if (!consume('\\') || !consume('u'))
            error("unpaired high surrogate in \\u escape");
          unsigned low = hex4();
          if (low < 0xdc00 || low > 0xdfff)
            error("unpaired high surrogate in \\u escape");
          code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        }
        appendUtf8(out, code);
        break;
      }
      default:
        --pos;
        error("invalid escape");
      }
    }
  }

  std::string_view text;
  const std::string &what;
  size_t pos = 0;
};

} // namespace

const Value *Value::find(std::string_view key) const {
  for (const auto &member : object)
    if (member.first == key)
      return &member.second;
  return nullptr;
}

const char *Value::kindName() const {
  switch (kind) {
  case Null:
    return "null";
  case Bool:
    return "a boolean";
  case Number:
    return "a number";
  case String:
    return "a string";
  case Array:
    return "an array";
  case Object:
    return "an object";
  }
  return "?";
}

Value parse(std::string_view text, const std::string &what) {
  return Parser(text, what).parseDocument();
}

std::string quote(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

} // namespace moert::detail::json
