//===- DataBatcher.cpp - [B, S] batches of instruction-tuning records -----===//

#include "Data.h"

#include "Error.h"
#include "Random.h"
#include "Tensor.h"
#include "Tokenizer.h"

#include <algorithm>
#include <charconv>
#include <numeric>
#include <sstream>
#include <tuple>

namespace moert::detail {
namespace {

/// One row of a batch under construction.
struct Row {
  std::vector<int32_t> tokens, targets;
  std::vector<float> mask;
  int64_t used = 0; // Sequence ids placed (S + 1 at most).
};

} // namespace
} // namespace moert::detail

using namespace moert::detail;

struct moe_batcher {
  moe_batcher(const moe_dataset &dataset, const moe_tokenizer &tokenizer,
              const moe_batcher_options &options);

  bool finished() const {
    return options.epochs > 0 && epoch >= options.epochs;
  }
  int64_t numRecords() const {
    return static_cast<int64_t>(promptLength.size());
  }
  int64_t sequenceLength(int64_t record) const {
    return offsets[record + 1] - offsets[record];
  }
  void startEpoch();
  void advance();
  /// Puts the record at the stream's head into `row` at `row.used`.
  void place(Row &row);
  TensorListRef next();
  std::string state() const;
  void setState(const std::string &text);

  std::atomic<int32_t> refs{1};
  moe_batcher_options options;
  int32_t eos;
  // Record r's sequence is ids[offsets[r] .. offsets[r + 1]).
  std::vector<int32_t> ids;
  std::vector<int64_t> offsets;
  std::vector<int64_t> promptLength;
  std::vector<int64_t> order; // This epoch's permutation of the records.
  int64_t epoch = 0, position = 0, truncated = 0;
  std::string stateText;
};

moe_batcher::moe_batcher(const moe_dataset &dataset,
                         const moe_tokenizer &tokenizer,
                         const moe_batcher_options &options)
    : options(options), eos(tokenizer.eosId()) {
  if (options.batch_size < 1)
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "moe_batcher_create: batch size {} is not positive",
         options.batch_size);
  if (options.seq_len < 1)
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "moe_batcher_create: sequence length {} is not positive",
         options.seq_len);
  if (options.mode != MOE_BATCH_PAD && options.mode != MOE_BATCH_PACK)
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "moe_batcher_create: unknown batch mode {}",
         static_cast<int>(options.mode));
  if (options.epochs < 0)
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "moe_batcher_create: epochs {} is negative", options.epochs);
  int64_t elements;
  if (__builtin_mul_overflow(options.batch_size, options.seq_len, &elements) ||
      elements > (int64_t(1) << 31))
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "moe_batcher_create: batch [{}, {}] is too large", options.batch_size,
         options.seq_len);
  // The caller's template string need not outlive this call.
  this->options.prompt_template = nullptr;
  PromptTemplate prompt(options.prompt_template);
  offsets.push_back(0);
  for (const Record &record : dataset.records) {
    std::vector<int32_t> promptIds =
        tokenizer.encode(prompt.render(record.instruction, record.input));
    std::vector<int32_t> outputIds = tokenizer.encode(record.output);
    ids.insert(ids.end(), promptIds.begin(), promptIds.end());
    ids.insert(ids.end(), outputIds.begin(), outputIds.end());
    ids.push_back(eos);
    offsets.push_back(static_cast<int64_t>(ids.size()));
    promptLength.push_back(static_cast<int64_t>(promptIds.size()));
  }
  startEpoch();
}

void moe_batcher::startEpoch() {
  order.resize(promptLength.size());
  std::iota(order.begin(), order.end(), 0);
  if (!options.shuffle)
    return;
  // Fisher-Yates with the runtime's portable generator: the same seed gives
  // the same order everywhere.
  Rng rng(mixSeed(options.seed, fmt::format("epoch {}", epoch)));
  for (int64_t i = numRecords() - 1; i > 0; --i)
    std::swap(order[i], order[rng.uniformInt(0, i + 1)]);
}

void moe_batcher::advance() {
  if (++position < numRecords())
    return;
  ++epoch;
  position = 0;
  if (!finished())
    startEpoch();
}

void moe_batcher::place(Row &row) {
  int64_t record = order[position];
  const int32_t *sequence = ids.data() + offsets[record];
  int64_t length = sequenceLength(record);
  int64_t seqLen = options.seq_len;
  int64_t room = seqLen + 1 - row.used;
  if (length > room)
    ++truncated;
  int64_t kept = std::min(length, room);
  // Sequence id j at stream position p is the token at p and the target at
  // p - 1; the loss counts targets in the response (and the end of
  // sequence), never a record's first id, whose context is not its own.
  for (int64_t j = 0; j < kept; ++j) {
    int64_t p = row.used + j;
    if (p < seqLen)
      row.tokens[p] = sequence[j];
    if (p >= 1) {
      row.targets[p - 1] = sequence[j];
      row.mask[p - 1] = j >= std::max<int64_t>(promptLength[record], 1);
    }
  }
  row.used += kept;
}

TensorListRef moe_batcher::next() {
  if (finished())
    return nullptr;
  int64_t rows = options.batch_size, seqLen = options.seq_len;
  std::vector<Row> batch(rows);
  for (Row &row : batch) {
    row.tokens.assign(seqLen, eos);
    row.targets.assign(seqLen, eos);
    row.mask.assign(seqLen, 0.0f);
    while (!finished()) {
      int64_t length = sequenceLength(order[position]);
      // A record starts a row, or joins one it fits into whole.
      if (row.used > 0 &&
          (options.mode == MOE_BATCH_PAD || row.used + length > seqLen + 1))
        break;
      place(row);
      advance();
      if (row.used >= seqLen + 1)
        break;
    }
  }
  int64_t width = seqLen;
  if (options.trim) {
    width = 1;
    for (const Row &row : batch)
      width = std::max(width, row.used - 1);
  }
  TensorRef tokens = newTensor(MOE_I32, {rows, width});
  TensorRef targets = newTensor(MOE_I32, {rows, width});
  TensorRef mask = newTensor(MOE_F32, {rows, width});
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(batch[r].tokens.begin(), width,
                static_cast<int32_t *>(tokens->data) + r * width);
    std::copy_n(batch[r].targets.begin(), width,
                static_cast<int32_t *>(targets->data) + r * width);
    std::copy_n(batch[r].mask.begin(), width,
                static_cast<float *>(mask->data) + r * width);
  }
  TensorListRef list(new moe_tensor_list);
  addToList(*list, "tokens", std::move(tokens));
  addToList(*list, "targets", std::move(targets));
  addToList(*list, "mask", std::move(mask));
  return list;
}

std::string moe_batcher::state() const {
  return fmt::format("moe-batcher-v1 records={} shuffle={} seed={} epoch={} "
                     "position={} truncated={}",
                     numRecords(), options.shuffle ? 1 : 0, options.seed, epoch,
                     position, truncated);
}

void moe_batcher::setState(const std::string &text) {
  auto bad = [&](const std::string &problem) {
    fail(MOE_STATUS_INVALID_ARGUMENT, "batcher state '{}': {}", text, problem);
  };
  std::istringstream words(text);
  std::string word;
  if (!(words >> word) || word != "moe-batcher-v1")
    bad("does not start with 'moe-batcher-v1'");
  const char *keys[] = {"records", "shuffle",  "seed",
                        "epoch",   "position", "truncated"};
  uint64_t values[6];
  for (int i = 0; i < 6; ++i) {
    std::string prefix = std::string(keys[i]) + "=";
    if (!(words >> word) || word.compare(0, prefix.size(), prefix) != 0)
      bad(fmt::format("expected '{}<number>'", prefix));
    const char *first = word.data() + prefix.size(),
               *last = word.data() + word.size();
    auto [end, error] = std::from_chars(first, last, values[i]);
    if (error != std::errc() || end != last || first == last ||
        (i != 2 && values[i] > uint64_t(INT64_MAX)))
      bad(fmt::format("'{}' is not a valid number", word));
  }
  if (words >> word)
    bad(fmt::format("unexpected '{}'", word));
  auto [records, shuffle, seed, newEpoch, newPosition, newTruncated] =
      std::tuple(int64_t(values[0]), values[1], values[2], int64_t(values[3]),
                 int64_t(values[4]), int64_t(values[5]));
  if (records != numRecords())
    bad(fmt::format("saved for {} records, but the dataset has {}", records,
                    numRecords()));
  if (shuffle != (options.shuffle ? 1u : 0u) ||
      (options.shuffle && seed != options.seed))
    bad(fmt::format("saved for shuffle={} seed={}, but this batcher has "
                    "shuffle={} seed={}",
                    shuffle, seed, options.shuffle ? 1 : 0, options.seed));
  if (newPosition >= records ||
      (options.epochs > 0 && (newEpoch > options.epochs ||
                              (newEpoch == options.epochs && newPosition))))
    bad(fmt::format("epoch {} position {} lies outside the stream ({} "
                    "records, {} epochs)",
                    newEpoch, newPosition, records,
                    options.epochs ? std::to_string(options.epochs)
                                   : std::string("endless")));
  epoch = newEpoch;
  position = newPosition;
  truncated = newTruncated;
  if (!finished())
    startEpoch();
}

extern "C" {

void moe_batcher_options_init(moe_batcher_options *options) {
  *options = moe_batcher_options{};
  options->batch_size = 8;
  options->seq_len = 128;
  options->mode = MOE_BATCH_PAD;
  options->shuffle = 1;
}

moe_status *moe_batcher_create(const moe_dataset *dataset,
                               const moe_tokenizer *tokenizer,
                               const moe_batcher_options *options,
                               moe_batcher **out) {
  return guard([&] {
    requireArg(dataset, "moe_batcher_create", "dataset");
    requireArg(tokenizer, "moe_batcher_create", "tokenizer");
    requireArg(options, "moe_batcher_create", "options");
    requireArg(out, "moe_batcher_create", "out");
    *out = new moe_batcher(*dataset, *tokenizer, *options);
  });
}

void moe_batcher_retain(moe_batcher *batcher) {
  if (batcher)
    batcher->refs.fetch_add(1, std::memory_order_relaxed);
}

void moe_batcher_release(moe_batcher *batcher) {
  if (batcher && batcher->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete batcher;
}

moe_status *moe_batcher_next(moe_batcher *batcher, moe_tensor_list **out) {
  return guard([&] {
    requireArg(batcher, "moe_batcher_next", "batcher");
    requireArg(out, "moe_batcher_next", "out");
    *out = batcher->next().release();
  });
}

int64_t moe_batcher_epoch(const moe_batcher *batcher) { return batcher->epoch; }

int64_t moe_batcher_position(const moe_batcher *batcher) {
  return batcher->position;
}

int64_t moe_batcher_num_truncated(const moe_batcher *batcher) {
  return batcher->truncated;
}

int64_t moe_batcher_sequence_length(const moe_batcher *batcher, int64_t index) {
  if (index < 0 || index >= batcher->numRecords())
    return -1;
  return batcher->sequenceLength(index);
}

const char *moe_batcher_get_state(moe_batcher *batcher) {
  batcher->stateText = batcher->state();
  return batcher->stateText.c_str();
}

moe_status *moe_batcher_set_state(moe_batcher *batcher, const char *state) {
  return guard([&] {
    requireArg(batcher, "moe_batcher_set_state", "batcher");
    requireArg(state, "moe_batcher_set_state", "state");
    batcher->setState(state);
  });
}

} // extern "C"
