//===- CommandLine.h - Flag parsing shared by the runtime tools -----------===//
//
// moe-run and moe-train link only libmoert, so they parse flags by hand;
// these are the pieces both need.
//
//===----------------------------------------------------------------------===//
#ifndef MOEC_TOOLS_COMMON_COMMANDLINE_H
#define MOEC_TOOLS_COMMON_COMMANDLINE_H

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>

namespace moetools {

/// A mistake on the command line: the tools exit with status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename T>
T parseInteger(const std::string &text, const std::string &flag, T min,
               T max) {
  T value{};
  auto [end, error] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < min ||
      value > max)
    throw UsageError(flag + " expects an integer in [" + std::to_string(min) +
                     ", " + std::to_string(max) + "], got '" + text + "'");
  return value;
}

/// A finite number in [min, max].
inline double parseReal(const std::string &text, const std::string &flag,
                        double min, double max) {
  char *end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end || !std::isfinite(value) || value < min ||
      value > max)
    throw UsageError(flag + " expects a number in [" + std::to_string(min) +
                     ", " + std::to_string(max) + "], got '" + text + "'");
  return value;
}

inline std::pair<std::string, std::string>
splitAssignment(const std::string &text, const std::string &flag) {
  size_t equals = text.find('=');
  if (equals == 0 || equals == std::string::npos || equals + 1 == text.size())
    throw UsageError(flag + " expects NAME=VALUE, got '" + text + "'");
  return {text.substr(0, equals), text.substr(equals + 1)};
}

} // namespace moetools

#endif // MOEC_TOOLS_COMMON_COMMANDLINE_H
