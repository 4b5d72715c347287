//===- Data.h - Instruction-tuning records and prompt templates -----------===//
#ifndef MOERT_RUNTIME_DATA_H
#define MOERT_RUNTIME_DATA_H

#include "moe/runtime/moert_data.h"

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moert::detail {

struct Record {
  std::string instruction;
  std::string input;
  std::string output;
  std::string task;
  int64_t line; // 1-based line of the JSONL file.
};

/// A validated prompt template (see moert_data.h for the syntax).
class PromptTemplate {
public:
  /// Parses `text` (nullptr: the default); fails with INVALID_ARGUMENT.
  explicit PromptTemplate(const char *text);
  std::string render(std::string_view instruction,
                     std::string_view input) const;

private:
  struct Part {
    enum Kind { Text, Instruction, Input } kind;
    std::string text;
    size_t offset; // In the template, for the input line and messages.
  };
  using Parts = std::vector<Part>;
  /// Parses `text`, which starts at byte `offset` of the template.
  static Parts parse(std::string_view text, size_t offset);
  static std::string render(const Parts &parts, std::string_view instruction,
                            std::string_view input);

  Parts withInput;
  Parts withoutInput; // The input line removed.
};

/// A malloc'ed copy of `text`, for `char **out` parameters.
char *copyString(const std::string &text);

} // namespace moert::detail

struct moe_dataset {
  std::atomic<int32_t> refs{1};
  std::vector<moert::detail::Record> records;
};

#endif // MOERT_RUNTIME_DATA_H
