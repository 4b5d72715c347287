/*===- moert_data.h - Instruction-tuning data for moert -----------*- C -*-===*
 *
 * Reads instruction-tuning records (JSONL), renders them through a prompt
 * template, tokenizes them (bytes or SentencePiece) and cuts them into the
 * [B, S] `tokens` / `targets` / `mask` batches a model's train_step takes,
 * with a deterministic, resumable order. For evaluation it gives each
 * record's prompt token ids and reference output, and decodes generated ids.
 * See docs/data.md for the formats and layouts in full.
 *
 * The conventions of moert.h hold here too:
 *
 * Errors. Fallible functions return `moe_status *` (NULL on success; the
 * caller frees anything else with moe_status_free). Messages name the file
 * and, for a record, its line: "data.jsonl:7: field \"output\" is a number,
 * expected a string". On error, out-parameters are left untouched.
 *
 * Handles. moe_dataset, moe_tokenizer and moe_batcher are reference
 * counted: an `**out` parameter gives the caller one reference, dropped with
 * the matching *_release() (NULL is a no-op); *_retain() adds one. Strings
 * returned as `const char *` are owned by the object they come from. Strings
 * returned through `char **out` are the caller's, freed with
 * moe_string_free().
 *
 * Thread safety. Retain and release are atomic. Datasets and tokenizers are
 * immutable once created: any number of threads may use them at once.
 * A batcher is not synchronised: one thread at a time.
 *
 *===----------------------------------------------------------------------===*/
#ifndef MOE_RUNTIME_MOERT_DATA_H
#define MOE_RUNTIME_MOERT_DATA_H

#include "moe/runtime/moert.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Frees a string returned through a `char **out` parameter. NULL is a no-op. */
MOERT_API void moe_string_free(char *string);

/*===------------------------------ Datasets ----------------------------===*/

/* Instruction-tuning records, each an instruction, an input (possibly
 * empty), a reference output and a task name (possibly empty). */
typedef struct moe_dataset moe_dataset;

/* Reads a JSONL file: one JSON object per line; lines holding only
 * whitespace are skipped. Each object has either the Alpaca fields
 * "instruction" (string), "input" (string, optional: "" when absent) and
 * "output" (string), or the FLAN fields "inputs" and "targets" (strings;
 * "inputs" becomes the instruction, the input is ""), never both kinds. An
 * optional "task" string names the record's task; other members are
 * ignored. Strings must not contain U+0000 (the byte tokenizer's
 * end-of-sequence byte, and C strings cannot hold it). The first bad line
 * fails the whole read with MOE_STATUS_INVALID_FILE and a message
 * "<path>:<line>: <what is wrong>"; a file without records fails too. */
MOERT_API moe_status *moe_dataset_read_jsonl(const char *path,
                                             moe_dataset **out);
MOERT_API void moe_dataset_retain(moe_dataset *dataset);
MOERT_API void moe_dataset_release(moe_dataset *dataset);

MOERT_API int64_t moe_dataset_size(const moe_dataset *dataset);
/* Fields of record `index`, owned by the dataset; NULL if out of range. */
MOERT_API const char *moe_dataset_instruction(const moe_dataset *dataset,
                                              int64_t index);
MOERT_API const char *moe_dataset_input(const moe_dataset *dataset,
                                        int64_t index);
MOERT_API const char *moe_dataset_output(const moe_dataset *dataset,
                                         int64_t index);
MOERT_API const char *moe_dataset_task(const moe_dataset *dataset,
                                       int64_t index);
/* The line of the JSONL file record `index` came from (1-based); -1 if out
 * of range. */
MOERT_API int64_t moe_dataset_line(const moe_dataset *dataset, int64_t index);

/*===--------------------------- Prompt templates -----------------------===*/

/* A template is text with the placeholders {instruction} and {input}
 * ("{{" and "}}" stand for literal braces; any other placeholder is an
 * error). The line holding {input} is the input section: when a record's
 * input is empty, that whole line, newline included, is left out, so
 * {input} must not share its line with {instruction}. The response follows
 * the rendered prompt directly. Functions taking a template accept NULL for
 * this default, which costs 9 bytes without an input and 17 with one: */
#define MOE_DEFAULT_PROMPT_TEMPLATE "{instruction}\nInput: {input}\nOutput: "

/* Renders `prompt_template` (NULL: the default) for one record into a new
 * string (free with moe_string_free). Fails with INVALID_ARGUMENT on a bad
 * template. */
MOERT_API moe_status *moe_prompt_render(const char *prompt_template,
                                        const char *instruction,
                                        const char *input, char **out);

/*===------------------------------ Tokenizers --------------------------===*/

typedef struct moe_tokenizer moe_tokenizer;

/* End-of-sequence id of the byte tokenizer: byte 0, which text never holds
 * (datasets refuse U+0000). It also pads batches. */
#define MOE_BYTE_EOS_ID 0

/* The byte tokenizer: ids 0..255 are the bytes of the UTF-8 text, 256 ids,
 * end of sequence MOE_BYTE_EOS_ID. */
MOERT_API moe_status *moe_tokenizer_create_byte(moe_tokenizer **out);
/* Loads a SentencePiece .model file. Its end-of-sequence piece (eos_id,
 * "</s>" by default) is the tokenizer's; a model without one is refused. */
MOERT_API moe_status *moe_tokenizer_load_sentencepiece(const char *path,
                                                       moe_tokenizer **out);
MOERT_API void moe_tokenizer_retain(moe_tokenizer *tokenizer);
MOERT_API void moe_tokenizer_release(moe_tokenizer *tokenizer);

/* "byte" or "sentencepiece". Static string. */
MOERT_API const char *moe_tokenizer_kind(const moe_tokenizer *tokenizer);
/* Number of ids: valid ids are 0 .. vocab_size - 1. */
MOERT_API int32_t moe_tokenizer_vocab_size(const moe_tokenizer *tokenizer);
MOERT_API int32_t moe_tokenizer_eos_id(const moe_tokenizer *tokenizer);

/* Token ids of `text` (no end-of-sequence id added) as a new i32 tensor of
 * shape [n]. */
MOERT_API moe_status *moe_tokenizer_encode(const moe_tokenizer *tokenizer,
                                           const char *text, moe_tensor **out);
/* Text of `ids` up to, not including, the first end-of-sequence id, as a new
 * string (free with moe_string_free). An id outside the vocabulary fails
 * with INVALID_ARGUMENT naming its position. The byte tokenizer returns the
 * bytes as they are, even when they are not valid UTF-8. */
MOERT_API moe_status *moe_tokenizer_decode(const moe_tokenizer *tokenizer,
                                           const int32_t *ids, int64_t count,
                                           char **out);

/* Trains a SentencePiece model on the texts the model will see: each
 * record's rendered prompt (`prompt_template`, NULL: the default) and its
 * output. `model_type` is "unigram" or "bpe"; `vocab_size` is an upper
 * bound (a small corpus may give fewer pieces) that counts the pieces <unk>
 * = 0, <s> = 1 and </s> = 2 (the end of sequence). Text is kept as it is
 * (no normalisation, spaces and newlines preserved); with `byte_fallback`
 * nonzero, characters outside the vocabulary become byte pieces <0xNN>, so
 * every text round-trips exactly (this needs vocab_size >= 259 + the number
 * of distinct characters); otherwise they decode as the unknown piece
 * (U+2047 between spaces). Deterministic: the same records and arguments
 * give the same file. The model is written
 * atomically to `path` (see moe_safetensors_write). Serialised internally:
 * concurrent calls run one after the other. */
MOERT_API moe_status *
moe_sentencepiece_train(const moe_dataset *dataset, const char *prompt_template,
                        const char *model_type, int32_t vocab_size,
                        int32_t byte_fallback, const char *path);

/*===----------------------------- Evaluation ---------------------------===*/

/* Token ids of record `index`'s rendered prompt: what greedy decoding starts
 * from (the reference is moe_dataset_output). A new i32 tensor [n]. */
MOERT_API moe_status *moe_dataset_encode_prompt(const moe_dataset *dataset,
                                                int64_t index,
                                                const moe_tokenizer *tokenizer,
                                                const char *prompt_template,
                                                moe_tensor **out);

/*===------------------------------ Batching ----------------------------===*/

/* Each record becomes the sequence prompt ids + output ids + end of
 * sequence (prompt and output are tokenized separately, so the boundary is
 * exact). A row holds tokens[t] = seq[t] and targets[t] = seq[t + 1], and
 * mask[t] = 1 exactly where targets[t] is an output id or the end of
 * sequence: the loss counts the response only. */
typedef enum moe_batch_mode {
  /* One record per row, cut after S + 1 sequence ids if longer (counted as
   * truncated) and padded with the end-of-sequence id, mask 0. */
  MOE_BATCH_PAD = 0,
  /* Whole records one after another in a row while they fit (S + 1
   * sequence ids per row); the next record starts the next row. A record
   * longer than a row fills one alone, truncated. The model's attention is
   * plain causal: it does cross record boundaries within a row, so a record
   * sees the records packed before it (each ends with the end-of-sequence
   * id). Use MOE_BATCH_PAD where records must not see each other. */
  MOE_BATCH_PACK = 1
} moe_batch_mode;

typedef struct moe_batcher_options {
  /* B, rows per batch, >= 1. */
  int64_t batch_size;
  /* S, ids per row, >= 1. */
  int64_t seq_len;
  moe_batch_mode mode;
  /* Nonzero: each epoch visits the records in a new order drawn from
   * `seed`; zero: in file order. */
  int32_t shuffle;
  uint64_t seed;
  /* Passes over the data; 0: endless. */
  int64_t epochs;
  /* Nonzero: shrink S to the longest row of each batch, for models whose
   * sequence length is dynamic. */
  int32_t trim;
  /* NULL: MOE_DEFAULT_PROMPT_TEMPLATE. */
  const char *prompt_template;
} moe_batcher_options;

/* Fills `options` with the defaults: B = 8, S = 128, MOE_BATCH_PAD,
 * shuffled with seed 0, endless, no trim, the default template. */
MOERT_API void moe_batcher_options_init(moe_batcher_options *options);

typedef struct moe_batcher moe_batcher;

/* Cuts `dataset` into batches: the records are visited epoch by epoch
 * (each epoch a permutation of all records, or file order without
 * `shuffle`), and a batch takes the next records of that stream, continuing
 * into the next epoch when one ends. Every record is tokenized here, so
 * the dataset, tokenizer and options need not outlive the call. */
MOERT_API moe_status *moe_batcher_create(const moe_dataset *dataset,
                                         const moe_tokenizer *tokenizer,
                                         const moe_batcher_options *options,
                                         moe_batcher **out);
MOERT_API void moe_batcher_retain(moe_batcher *batcher);
MOERT_API void moe_batcher_release(moe_batcher *batcher);

/* The next batch: a new list with "tokens" (i32 [B, S]), "targets" (i32
 * [B, S]) and "mask" (f32 [B, S]), ready to be passed (with any other
 * inputs added) to moe_session_run. When the last epoch ends inside a
 * batch, its remaining rows are padding (mask 0); after it, *out is set to
 * NULL. */
MOERT_API moe_status *moe_batcher_next(moe_batcher *batcher,
                                       moe_tensor_list **out);

/* Where the stream stands: the current epoch (0-based; == epochs once
 * finished) and the number of records of that epoch already batched. */
MOERT_API int64_t moe_batcher_epoch(const moe_batcher *batcher);
MOERT_API int64_t moe_batcher_position(const moe_batcher *batcher);
/* Records whose sequence was cut to fit a row so far (each counted every
 * time it is batched). */
MOERT_API int64_t moe_batcher_num_truncated(const moe_batcher *batcher);
/* Number of sequence ids (prompt + output + end of sequence) of record
 * `index`; -1 if out of range. */
MOERT_API int64_t moe_batcher_sequence_length(const moe_batcher *batcher,
                                              int64_t index);

/* The stream position as a short string, e.g.
 * "moe-batcher-v1 records=1000 seed=7 epoch=2 position=136 truncated=3",
 * owned by the batcher and valid until its next call. Saved with a
 * checkpoint and given to moe_batcher_set_state of a batcher created with
 * the same dataset and options, it resumes the exact same stream. */
MOERT_API const char *moe_batcher_get_state(moe_batcher *batcher);
/* Restores a state from moe_batcher_get_state. Fails with INVALID_ARGUMENT,
 * the batcher unchanged, if the state is malformed, was saved for another
 * number of records, shuffle flag or seed, or lies outside the stream.
 * Batch size, sequence length and mode may differ from the saving batcher's:
 * the stream of records is the same. */
MOERT_API moe_status *moe_batcher_set_state(moe_batcher *batcher,
                                            const char *state);

#ifdef __cplusplus
}
#endif

#endif /* MOE_RUNTIME_MOERT_DATA_H */
