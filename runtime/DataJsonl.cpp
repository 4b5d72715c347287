//===- DataJsonl.cpp - Reading instruction-tuning records from JSONL ------===//

#include "Data.h"

#include "Error.h"
#include "File.h"
#include "Json.h"

namespace moert::detail {
namespace {

/// Reports a problem with line `line` of `path`.
template <typename... Args>
[[noreturn]] void lineError(const std::string &path, int64_t line,
                            fmt::format_string<Args...> format,
                            Args &&...args) {
  fail(MOE_STATUS_INVALID_FILE, "{}:{}: {}", path, line,
       fmt::format(format, std::forward<Args>(args)...));
}

/// Field `name` of `object` as a string; nullptr when absent.
const std::string *stringField(const json::Value &object, const char *name,
                               const std::string &path, int64_t line) {
  const json::Value *value = object.find(name);
  if (!value)
    return nullptr;
  if (value->kind != json::Value::String)
    lineError(path, line, "field \"{}\" is {}, expected a string", name,
              value->kindName());
  if (value->string.find('\0') != std::string::npos)
    lineError(path, line,
              "field \"{}\" contains U+0000, which is the end-of-sequence "
              "byte and cannot be part of a text",
              name);
  return &value->string;
}

Record parseRecord(std::string_view text, const std::string &path,
                   int64_t line) {
  json::Value object = json::parse(text, fmt::format("{}:{}", path, line));
  if (object.kind != json::Value::Object)
    lineError(path, line, "expected a JSON object, got {}", object.kindName());
  auto field = [&](const char *name) {
    return stringField(object, name, path, line);
  };
  const std::string *instruction = field("instruction"),
                    *input = field("input"), *output = field("output"),
                    *inputs = field("inputs"), *targets = field("targets"),
                    *task = field("task");
  bool alpaca = instruction || input || output;
  bool flan = inputs || targets;
  if (alpaca && flan)
    lineError(path, line,
              "mixes the Alpaca fields (\"instruction\", \"input\", "
              "\"output\") with the FLAN fields (\"inputs\", \"targets\")");
  Record record;
  record.line = line;
  if (task)
    record.task = *task;
  if (flan) {
    if (!inputs)
      lineError(path, line, "has \"targets\" but no \"inputs\"");
    if (!targets)
      lineError(path, line, "has \"inputs\" but no \"targets\"");
    record.instruction = *inputs;
    record.output = *targets;
    return record;
  }
  if (!alpaca)
    lineError(path, line,
              "has neither \"instruction\" and \"output\" nor \"inputs\" and "
              "\"targets\"");
  if (!instruction)
    lineError(path, line, "missing field \"instruction\"");
  if (!output)
    lineError(path, line, "missing field \"output\"");
  record.instruction = *instruction;
  record.output = *output;
  if (input)
    record.input = *input;
  return record;
}

bool isBlank(std::string_view text) {
  return text.find_first_not_of(" \t\r") == std::string_view::npos;
}

} // namespace
} // namespace moert::detail

using namespace moert::detail;

extern "C" {

moe_status *moe_dataset_read_jsonl(const char *path, moe_dataset **out) {
  return guard([&] {
    requireArg(path, "moe_dataset_read_jsonl", "path");
    requireArg(out, "moe_dataset_read_jsonl", "out");
    MappedFile file(path, "dataset");
    std::string_view text(reinterpret_cast<const char *>(file.data()),
                          file.size());
    auto dataset = std::make_unique<moe_dataset>();
    int64_t line = 0;
    for (size_t start = 0; start < text.size();) {
      size_t end = text.find('\n', start);
      if (end == std::string_view::npos)
        end = text.size();
      std::string_view content = text.substr(start, end - start);
      ++line;
      start = end + 1;
      if (!isBlank(content))
        dataset->records.push_back(parseRecord(content, path, line));
    }
    if (dataset->records.empty())
      fail(MOE_STATUS_INVALID_FILE, "dataset '{}' holds no records", path);
    *out = dataset.release();
  });
}

void moe_dataset_retain(moe_dataset *dataset) {
  if (dataset)
    dataset->refs.fetch_add(1, std::memory_order_relaxed);
}

void moe_dataset_release(moe_dataset *dataset) {
  if (dataset && dataset->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete dataset;
}

int64_t moe_dataset_size(const moe_dataset *dataset) {
  return static_cast<int64_t>(dataset->records.size());
}

static const Record *recordAt(const moe_dataset *dataset, int64_t index) {
  if (index < 0 || index >= moe_dataset_size(dataset))
    return nullptr;
  return &dataset->records[static_cast<size_t>(index)];
}

const char *moe_dataset_instruction(const moe_dataset *dataset, int64_t index) {
  const Record *record = recordAt(dataset, index);
  return record ? record->instruction.c_str() : nullptr;
}

const char *moe_dataset_input(const moe_dataset *dataset, int64_t index) {
  const Record *record = recordAt(dataset, index);
  return record ? record->input.c_str() : nullptr;
}

const char *moe_dataset_output(const moe_dataset *dataset, int64_t index) {
  const Record *record = recordAt(dataset, index);
  return record ? record->output.c_str() : nullptr;
}

const char *moe_dataset_task(const moe_dataset *dataset, int64_t index) {
  const Record *record = recordAt(dataset, index);
  return record ? record->task.c_str() : nullptr;
}

int64_t moe_dataset_line(const moe_dataset *dataset, int64_t index) {
  const Record *record = recordAt(dataset, index);
  return record ? record->line : -1;
}

} // extern "C"
