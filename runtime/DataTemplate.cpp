//===- DataTemplate.cpp - Prompt templates --------------------------------===//

#include "Data.h"

#include "Error.h"

#include <cstdlib>
#include <cstring>

namespace moert::detail {
namespace {

constexpr std::string_view instructionPlaceholder = "{instruction}";
constexpr std::string_view inputPlaceholder = "{input}";

[[noreturn]] void templateError(const std::string &problem) {
  fail(MOE_STATUS_INVALID_ARGUMENT, "prompt template: {}", problem);
}

} // namespace

PromptTemplate::Parts PromptTemplate::parse(std::string_view text,
                                            size_t offset) {
  Parts parts;
  auto appendText = [&](char c, size_t at) {
    if (parts.empty() || parts.back().kind != Part::Text)
      parts.push_back({Part::Text, "", at});
    parts.back().text += c;
  };
  for (size_t pos = 0; pos < text.size();) {
    std::string_view rest = text.substr(pos);
    size_t at = offset + pos;
    if (rest.substr(0, 2) == "{{" || rest.substr(0, 2) == "}}") {
      appendText(rest[0], at);
      pos += 2;
    } else if (rest.substr(0, instructionPlaceholder.size()) ==
               instructionPlaceholder) {
      parts.push_back({Part::Instruction, "", at});
      pos += instructionPlaceholder.size();
    } else if (rest.substr(0, inputPlaceholder.size()) == inputPlaceholder) {
      parts.push_back({Part::Input, "", at});
      pos += inputPlaceholder.size();
    } else if (rest[0] == '{') {
      size_t close = rest.find('}');
      if (close == std::string_view::npos)
        templateError(fmt::format(
            "unmatched '{{' at byte {} (write '{{{{' for a literal '{{')", at));
      templateError(fmt::format("unknown placeholder '{}' at byte {} (known: "
                                "{}, {}; write '{{{{' for a literal '{{')",
                                rest.substr(0, close + 1), at,
                                instructionPlaceholder, inputPlaceholder));
    } else if (rest[0] == '}') {
      templateError(fmt::format(
          "unmatched '}}' at byte {} (write '}}}}' for a literal '}}')", at));
    } else {
      appendText(rest[0], at);
      ++pos;
    }
  }
  return parts;
}

PromptTemplate::PromptTemplate(const char *text) {
  std::string_view whole = text ? text : MOE_DEFAULT_PROMPT_TEMPLATE;
  withInput = parse(whole, 0);
  const Part *input = nullptr;
  int instructions = 0, inputs = 0;
  for (const Part &part : withInput) {
    instructions += part.kind == Part::Instruction;
    inputs += part.kind == Part::Input;
    if (part.kind == Part::Input)
      input = &part;
  }
  if (instructions != 1)
    templateError(fmt::format("needs {} exactly once, not {} times",
                              instructionPlaceholder, instructions));
  if (inputs != 1)
    templateError(fmt::format("needs {} exactly once, not {} times",
                              inputPlaceholder, inputs));

  // The input section is the line holding {input} (a newline is never part
  // of a placeholder or an escape, so lines are found in the raw text).
  size_t lineStart = whole.rfind('\n', input->offset);
  lineStart = lineStart == std::string_view::npos ? 0 : lineStart + 1;
  size_t lineEnd = whole.find('\n', input->offset);
  for (const Part &part : withInput)
    if (part.kind == Part::Instruction && part.offset >= lineStart &&
        part.offset < lineEnd)
      templateError(fmt::format(
          "{} shares its line with {}, but the input line is left out when "
          "a record has no input",
          inputPlaceholder, instructionPlaceholder));
  // Cut the line with its newline; the last line has none, so cut the
  // newline before it instead.
  size_t cutStart = lineStart, cutEnd = lineEnd + 1;
  if (lineEnd == std::string_view::npos) {
    cutStart = lineStart > 0 ? lineStart - 1 : 0;
    cutEnd = whole.size();
  }
  withoutInput = parse(whole.substr(0, cutStart), 0);
  for (Part &part : parse(whole.substr(cutEnd), cutEnd))
    withoutInput.push_back(std::move(part));
}

std::string PromptTemplate::render(const Parts &parts,
                                   std::string_view instruction,
                                   std::string_view input) {
  std::string out;
  for (const Part &part : parts) {
    switch (part.kind) {
    case Part::Text:
      out += part.text;
      break;
    case Part::Instruction:
      out += instruction;
      break;
    case Part::Input:
      out += input;
      break;
    }
  }
  return out;
}

std::string PromptTemplate::render(std::string_view instruction,
                                   std::string_view input) const {
  return render(input.empty() ? withoutInput : withInput, instruction, input);
}

char *copyString(const std::string &text) {
  char *copy = static_cast<char *>(std::malloc(text.size() + 1));
  if (!copy)
    throw std::bad_alloc();
  std::memcpy(copy, text.data(), text.size() + 1);
  return copy;
}

} // namespace moert::detail

using namespace moert::detail;

extern "C" {

void moe_string_free(char *string) { std::free(string); }

moe_status *moe_prompt_render(const char *prompt_template,
                              const char *instruction, const char *input,
                              char **out) {
  return guard([&] {
    requireArg(instruction, "moe_prompt_render", "instruction");
    requireArg(input, "moe_prompt_render", "input");
    requireArg(out, "moe_prompt_render", "out");
    *out =
        copyString(PromptTemplate(prompt_template).render(instruction, input));
  });
}

} // extern "C"
