//===- Tokenizer.cpp - The byte tokenizer and the tokenizer C API ---------===//

#include "Tokenizer.h"

#include "Data.h"
#include "Error.h"
#include "Tensor.h"

#include <cstring>

namespace moert::detail {
namespace {

/// Ids are the bytes of the UTF-8 text; byte 0 ends a sequence.
class ByteTokenizer : public moe_tokenizer {
public:
  const char *kind() const override { return "byte"; }
  int32_t vocabSize() const override { return 256; }
  int32_t eosId() const override { return MOE_BYTE_EOS_ID; }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i)
      ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  std::string decode(const std::vector<int32_t> &ids) const override {
    std::string text(ids.size(), '\0');
    for (size_t i = 0; i < ids.size(); ++i)
      text[i] = static_cast<char>(ids[i]);
    return text;
  }
};

TensorRef idsTensor(const std::vector<int32_t> &ids) {
  TensorRef tensor = newTensor(MOE_I32, {static_cast<int64_t>(ids.size())});
  if (!ids.empty())
    std::memcpy(tensor->data, ids.data(), ids.size() * sizeof(int32_t));
  return tensor;
}

} // namespace
} // namespace moert::detail

using namespace moert::detail;

extern "C" {

moe_status *moe_tokenizer_create_byte(moe_tokenizer **out) {
  return guard([&] {
    requireArg(out, "moe_tokenizer_create_byte", "out");
    *out = new ByteTokenizer;
  });
}

moe_status *moe_tokenizer_load_sentencepiece(const char *path,
                                             moe_tokenizer **out) {
  return guard([&] {
    requireArg(path, "moe_tokenizer_load_sentencepiece", "path");
    requireArg(out, "moe_tokenizer_load_sentencepiece", "out");
    *out = loadSentencePiece(path).release();
  });
}

void moe_tokenizer_retain(moe_tokenizer *tokenizer) {
  if (tokenizer)
    tokenizer->refs.fetch_add(1, std::memory_order_relaxed);
}

void moe_tokenizer_release(moe_tokenizer *tokenizer) {
  if (tokenizer && tokenizer->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete tokenizer;
}

const char *moe_tokenizer_kind(const moe_tokenizer *tokenizer) {
  return tokenizer->kind();
}

int32_t moe_tokenizer_vocab_size(const moe_tokenizer *tokenizer) {
  return tokenizer->vocabSize();
}

int32_t moe_tokenizer_eos_id(const moe_tokenizer *tokenizer) {
  return tokenizer->eosId();
}

moe_status *moe_tokenizer_encode(const moe_tokenizer *tokenizer,
                                 const char *text, moe_tensor **out) {
  return guard([&] {
    requireArg(tokenizer, "moe_tokenizer_encode", "tokenizer");
    requireArg(text, "moe_tokenizer_encode", "text");
    requireArg(out, "moe_tokenizer_encode", "out");
    *out = idsTensor(tokenizer->encode(text)).release();
  });
}

moe_status *moe_tokenizer_decode(const moe_tokenizer *tokenizer,
                                 const int32_t *ids, int64_t count,
                                 char **out) {
  return guard([&] {
    requireArg(tokenizer, "moe_tokenizer_decode", "tokenizer");
    if (count > 0)
      requireArg(ids, "moe_tokenizer_decode", "ids");
    requireArg(out, "moe_tokenizer_decode", "out");
    if (count < 0)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "moe_tokenizer_decode: count {} is "
           "negative",
           count);
    std::vector<int32_t> kept;
    for (int64_t i = 0; i < count && ids[i] != tokenizer->eosId(); ++i) {
      if (ids[i] < 0 || ids[i] >= tokenizer->vocabSize())
        fail(MOE_STATUS_INVALID_ARGUMENT,
             "moe_tokenizer_decode: id {} at position {} is outside the "
             "vocabulary of {} ids",
             ids[i], i, tokenizer->vocabSize());
      kept.push_back(ids[i]);
    }
    *out = copyString(tokenizer->decode(kept));
  });
}

moe_status *moe_dataset_encode_prompt(const moe_dataset *dataset, int64_t index,
                                      const moe_tokenizer *tokenizer,
                                      const char *prompt_template,
                                      moe_tensor **out) {
  return guard([&] {
    requireArg(dataset, "moe_dataset_encode_prompt", "dataset");
    requireArg(tokenizer, "moe_dataset_encode_prompt", "tokenizer");
    requireArg(out, "moe_dataset_encode_prompt", "out");
    int64_t size = moe_dataset_size(dataset);
    if (index < 0 || index >= size)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "moe_dataset_encode_prompt: record {} is out of range (the "
           "dataset has {})",
           index, size);
    const Record &record = dataset->records[static_cast<size_t>(index)];
    std::string prompt = PromptTemplate(prompt_template)
                             .render(record.instruction, record.input);
    *out = idsTensor(tokenizer->encode(prompt)).release();
  });
}

} // extern "C"
