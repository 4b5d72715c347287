//===- Tokenizer.h - Byte and SentencePiece tokenizers --------------------===//
#ifndef MOERT_RUNTIME_TOKENIZER_H
#define MOERT_RUNTIME_TOKENIZER_H

#include "moe/runtime/moert_data.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

/// Immutable once created, so every method may run on any number of threads.
struct moe_tokenizer {
  virtual ~moe_tokenizer() = default;
  virtual const char *kind() const = 0;
  virtual int32_t vocabSize() const = 0;
  virtual int32_t eosId() const = 0;
  /// Ids of `text`, without an end-of-sequence id.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  /// Text of `ids`, all within the vocabulary and none the end of sequence.
  virtual std::string decode(const std::vector<int32_t> &ids) const = 0;

  std::atomic<int32_t> refs{1};
};

namespace moert::detail {

/// Loads a SentencePiece model file (TokenizerSentencePiece.cpp).
std::unique_ptr<moe_tokenizer> loadSentencePiece(const std::string &path);

} // namespace moert::detail

#endif // MOERT_RUNTIME_TOKENIZER_H
