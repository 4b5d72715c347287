//===- TokenizerSentencePiece.cpp - SentencePiece models ------------------===//
//
// libsentencepiece is linked privately: its C++ types never cross the C API.
//
//===----------------------------------------------------------------------===//

#include "Data.h"
#include "Error.h"
#include "File.h"
#include "Tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <mutex>
#include <unordered_map>

namespace moert::detail {
namespace {

class SentencePieceTokenizer : public moe_tokenizer {
public:
  explicit SentencePieceTokenizer(const std::string &path) {
    MappedFile file(path, "SentencePiece model");
    std::string_view bytes(reinterpret_cast<const char *>(file.data()),
                           file.size());
    sentencepiece::util::Status status =
        processor.LoadFromSerializedProto(bytes);
    if (!status.ok())
      fail(MOE_STATUS_INVALID_FILE, "SentencePiece model '{}' is invalid: {}",
           path, status.ToString());
    if (processor.eos_id() < 0)
      fail(MOE_STATUS_INVALID_FILE,
           "SentencePiece model '{}' defines no end-of-sequence piece "
           "(eos_id is -1)",
           path);
  }

  const char *kind() const override { return "sentencepiece"; }
  int32_t vocabSize() const override { return processor.GetPieceSize(); }
  int32_t eosId() const override { return processor.eos_id(); }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    sentencepiece::util::Status status = processor.Encode(text, &ids);
    if (!status.ok())
      fail(MOE_STATUS_INVALID_ARGUMENT, "SentencePiece cannot encode {}: {}",
           text, status.ToString());
    return std::vector<int32_t>(ids.begin(), ids.end());
  }

  std::string decode(const std::vector<int32_t> &ids) const override {
    std::string text;
    sentencepiece::util::Status status =
        processor.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    if (!status.ok())
      fail(MOE_STATUS_INVALID_ARGUMENT, "SentencePiece cannot decode: {}",
           status.ToString());
    return text;
  }

private:
  sentencepiece::SentencePieceProcessor processor;
};

/// Feeds each record's rendered prompt and output to the trainer.
class RecordTexts : public sentencepiece::SentenceIterator {
public:
  RecordTexts(const moe_dataset &dataset, const PromptTemplate &prompt)
      : dataset(dataset), prompt(prompt) {
    load();
  }
  bool done() const override { return index >= 2 * dataset.records.size(); }
  void Next() override {
    ++index;
    load();
  }
  const std::string &value() const override { return text; }
  sentencepiece::util::Status status() const override { return {}; }

private:
  void load() {
    if (done())
      return;
    const Record &record = dataset.records[index / 2];
    text = index % 2 == 0 ? prompt.render(record.instruction, record.input)
                          : record.output;
  }

  const moe_dataset &dataset;
  const PromptTemplate &prompt;
  size_t index = 0;
  std::string text;
};

// The trainer keeps global state (its logging level, pretokenizer).
std::mutex trainingMutex;

} // namespace

std::unique_ptr<moe_tokenizer> loadSentencePiece(const std::string &path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

} // namespace moert::detail

using namespace moert::detail;

extern "C" {

moe_status *moe_sentencepiece_train(const moe_dataset *dataset,
                                    const char *prompt_template,
                                    const char *model_type, int32_t vocab_size,
                                    int32_t byte_fallback, const char *path) {
  return guard([&] {
    requireArg(dataset, "moe_sentencepiece_train", "dataset");
    requireArg(model_type, "moe_sentencepiece_train", "model_type");
    requireArg(path, "moe_sentencepiece_train", "path");
    std::string type = model_type;
    if (type != "unigram" && type != "bpe")
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "moe_sentencepiece_train: model type '{}' is neither 'unigram' "
           "nor 'bpe'",
           type);
    if (vocab_size < 4)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "moe_sentencepiece_train: vocabulary size {} leaves no room "
           "beside <unk>, <s> and </s>",
           vocab_size);
    PromptTemplate prompt(prompt_template);
    RecordTexts texts(*dataset, prompt);
    // Text is modelled as it is: no normalisation, no dummy prefix, spaces
    // kept, every character covered; one thread for a deterministic result.
    std::unordered_map<std::string, std::string> options = {
        {"model_type", type},
        {"vocab_size", std::to_string(vocab_size)},
        {"byte_fallback", byte_fallback ? "true" : "false"},
        {"normalization_rule_name", "identity"},
        {"add_dummy_prefix", "false"},
        {"remove_extra_whitespaces", "false"},
        {"character_coverage", "1.0"},
        {"hard_vocab_limit", "false"},
        {"unk_id", "0"},
        {"bos_id", "1"},
        {"eos_id", "2"},
        {"pad_id", "-1"},
        {"num_threads", "1"},
        {"minloglevel", "2"},
        {"model_prefix", ""}};
    std::string model;
    {
      std::lock_guard<std::mutex> lock(trainingMutex);
      sentencepiece::util::Status status =
          sentencepiece::SentencePieceTrainer::Train(options, &texts, &model);
      if (!status.ok())
        fail(MOE_STATUS_INVALID_ARGUMENT,
             "cannot train a SentencePiece model for '{}': {}", path,
             status.ToString());
    }
    writeFileAtomically(path, {{model.data(), model.size()}},
                        "SentencePiece model");
  });
}

} // extern "C"
