//===- moert_data.hpp - C++ wrapper over moert_data.h ---------*- C++ -*-===//
//
// RAII handles over the data API, in the style of moert.hpp: copying a
// handle retains the object, failed calls throw moert::Error. Datasets and
// tokenizers may be shared across threads; a Batcher is used by one thread
// at a time.
//
//===----------------------------------------------------------------------===//
#ifndef MOE_RUNTIME_MOERT_DATA_HPP
#define MOE_RUNTIME_MOERT_DATA_HPP

#include "moe/runtime/moert.hpp"
#include "moe/runtime/moert_data.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moert {

namespace detail {
/// Takes a string from a `char **out` parameter.
inline std::string adoptString(char *raw) {
  std::unique_ptr<char, void (*)(char *)> owner(raw, moe_string_free);
  return raw;
}
} // namespace detail

/// Renders a prompt template (nullptr: the default).
inline std::string renderPrompt(const char *promptTemplate,
                                const std::string &instruction,
                                const std::string &input) {
  char *out = nullptr;
  check(moe_prompt_render(promptTemplate, instruction.c_str(), input.c_str(),
                          &out));
  return detail::adoptString(out);
}

class Dataset : public detail::Handle<moe_dataset, moe_dataset_retain,
                                      moe_dataset_release> {
public:
  using Handle::Handle;

  static Dataset readJsonl(const std::string &path) {
    moe_dataset *out = nullptr;
    check(moe_dataset_read_jsonl(path.c_str(), &out));
    return Dataset(out);
  }

  int64_t size() const { return moe_dataset_size(raw); }
  std::string instruction(int64_t index) const {
    return field(moe_dataset_instruction(raw, index), index);
  }
  std::string input(int64_t index) const {
    return field(moe_dataset_input(raw, index), index);
  }
  std::string output(int64_t index) const {
    return field(moe_dataset_output(raw, index), index);
  }
  std::string task(int64_t index) const {
    return field(moe_dataset_task(raw, index), index);
  }
  /// The record's line in its JSONL file; -1 if out of range.
  int64_t line(int64_t index) const { return moe_dataset_line(raw, index); }

private:
  std::string field(const char *value, int64_t index) const {
    if (!value)
      throw Error(MOE_STATUS_INVALID_ARGUMENT,
                  "record " + std::to_string(index) +
                      " is out of range (the dataset has " +
                      std::to_string(size()) + ")");
    return value;
  }
};

class Tokenizer : public detail::Handle<moe_tokenizer, moe_tokenizer_retain,
                                        moe_tokenizer_release> {
public:
  using Handle::Handle;

  static Tokenizer bytes() {
    moe_tokenizer *out = nullptr;
    check(moe_tokenizer_create_byte(&out));
    return Tokenizer(out);
  }
  static Tokenizer loadSentencePiece(const std::string &path) {
    moe_tokenizer *out = nullptr;
    check(moe_tokenizer_load_sentencepiece(path.c_str(), &out));
    return Tokenizer(out);
  }
  /// Trains a SentencePiece model on `dataset` and writes it to `path`.
  static void trainSentencePiece(const Dataset &dataset,
                                 const std::string &path,
                                 const std::string &modelType,
                                 int32_t vocabSize, bool byteFallback,
                                 const char *promptTemplate = nullptr) {
    check(moe_sentencepiece_train(dataset.get(), promptTemplate,
                                  modelType.c_str(), vocabSize,
                                  byteFallback ? 1 : 0, path.c_str()));
  }

  std::string kind() const { return moe_tokenizer_kind(raw); }
  int32_t vocabSize() const { return moe_tokenizer_vocab_size(raw); }
  int32_t eosId() const { return moe_tokenizer_eos_id(raw); }

  std::vector<int32_t> encode(const std::string &text) const {
    moe_tensor *out = nullptr;
    check(moe_tokenizer_encode(raw, text.c_str(), &out));
    return Tensor(out).toVector<int32_t>();
  }
  /// Text up to the first end-of-sequence id.
  std::string decode(const std::vector<int32_t> &ids) const {
    char *out = nullptr;
    check(moe_tokenizer_decode(raw, ids.data(),
                               static_cast<int64_t>(ids.size()), &out));
    return detail::adoptString(out);
  }
  /// Ids of record `index`'s rendered prompt.
  std::vector<int32_t>
  encodePrompt(const Dataset &dataset, int64_t index,
               const char *promptTemplate = nullptr) const {
    moe_tensor *out = nullptr;
    check(moe_dataset_encode_prompt(dataset.get(), index, raw, promptTemplate,
                                    &out));
    return Tensor(out).toVector<int32_t>();
  }
};

/// moe_batcher_options with its defaults.
struct BatcherOptions : moe_batcher_options {
  BatcherOptions() { moe_batcher_options_init(this); }
};

class Batcher : public detail::Handle<moe_batcher, moe_batcher_retain,
                                      moe_batcher_release> {
public:
  using Handle::Handle;

  Batcher(const Dataset &dataset, const Tokenizer &tokenizer,
          const moe_batcher_options &options) {
    check(moe_batcher_create(dataset.get(), tokenizer.get(), &options, &raw));
  }

  /// "tokens", "targets" and "mask"; nullopt once the last epoch is done.
  std::optional<TensorList> next() {
    moe_tensor_list *out = nullptr;
    check(moe_batcher_next(raw, &out));
    if (!out)
      return std::nullopt;
    return TensorList(out);
  }

  int64_t epoch() const { return moe_batcher_epoch(raw); }
  int64_t position() const { return moe_batcher_position(raw); }
  int64_t numTruncated() const { return moe_batcher_num_truncated(raw); }
  int64_t sequenceLength(int64_t index) const {
    return moe_batcher_sequence_length(raw, index);
  }
  std::string state() const { return moe_batcher_get_state(raw); }
  void setState(const std::string &state) {
    check(moe_batcher_set_state(raw, state.c_str()));
  }
};

} // namespace moert

#endif // MOE_RUNTIME_MOERT_DATA_HPP
