//===- DataTest.cpp - Records, templates, tokenizers and batches ----------===//

#include "TestUtil.h"

#include "moe/runtime/moert_data.hpp"

#include <cstdlib>
#include <map>
#include <numeric>
#include <optional>
#include <set>

using namespace moert::test;

namespace {

/// A JSONL file in `dir` with `text`; returns its path.
std::string jsonl(const TempDir &dir, const std::string &text,
                  const std::string &name = "data.jsonl") {
  std::string path = dir / name;
  writeBytes(path, text);
  return path;
}

/// The message of the error reading `text` as JSONL (expects INVALID_FILE).
std::string readError(const std::string &text) {
  TempDir dir;
  std::string path = jsonl(dir, text);
  moe_dataset *dataset = nullptr;
  moe_status *status = moe_dataset_read_jsonl(path.c_str(), &dataset);
  EXPECT_EQ(dataset, nullptr);
  EXPECT_EQ(moe_status_get_code(status), MOE_STATUS_INVALID_FILE);
  std::string message = moe_status_get_message(status);
  moe_status_free(status);
  // Strip the directory so tests can compare whole messages.
  size_t at = message.find(path);
  if (at != std::string::npos)
    message.replace(at, path.size(), "data.jsonl");
  return message;
}

std::string templateError(const char *text) {
  char *out = nullptr;
  moe_status *status = moe_prompt_render(text, "i", "x", &out);
  EXPECT_EQ(out, nullptr);
  EXPECT_EQ(moe_status_get_code(status), MOE_STATUS_INVALID_ARGUMENT);
  std::string message = moe_status_get_message(status);
  moe_status_free(status);
  return message;
}

/// A JSON string literal (the records' text is ASCII or UTF-8 here).
std::string quoted(const std::string &text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '\n')
      out += "\\n";
    else if (c == '"' || c == '\\')
      out += std::string("\\") + c;
    else
      out += c;
  }
  return out + "\"";
}

struct TestRecord {
  std::string instruction, input, output;
};

std::string recordsJsonl(const std::vector<TestRecord> &records) {
  std::string text;
  for (const TestRecord &r : records)
    text += "{\"instruction\": " + quoted(r.instruction) +
            ", \"input\": " + quoted(r.input) +
            ", \"output\": " + quoted(r.output) + "}\n";
  return text;
}

/// Records of varied lengths, deterministic in `seed`, never empty output.
std::vector<TestRecord> randomRecords(int count, uint32_t seed) {
  std::mt19937 engine(seed);
  auto word = [&](int low, int high) {
    std::string w;
    int length = std::uniform_int_distribution<int>(low, high)(engine);
    for (int i = 0; i < length; ++i)
      w += static_cast<char>('a' + engine() % 26);
    return w;
  };
  std::vector<TestRecord> records;
  for (int i = 0; i < count; ++i)
    records.push_back(
        {"Do " + word(1, 12), i % 3 ? word(0, 9) : "", word(1, 15)});
  return records;
}

/// The byte-tokenizer sequence of a record: prompt + output + end.
struct Expected {
  std::vector<int32_t> ids;
  size_t promptLength;
};

Expected byteSequence(const TestRecord &r, const char *promptTemplate) {
  std::string prompt =
      moert::renderPrompt(promptTemplate, r.instruction, r.input);
  Expected e;
  for (unsigned char c : prompt + r.output)
    e.ids.push_back(c);
  e.ids.push_back(MOE_BYTE_EOS_ID);
  e.promptLength = prompt.size();
  return e;
}

struct Batch {
  std::vector<int32_t> tokens, targets;
  std::vector<float> mask;
  std::vector<int64_t> shape;
};

Batch unpack(const moert::TensorList &list) {
  EXPECT_EQ(list.size(), 3);
  EXPECT_EQ(list.name(0), "tokens");
  EXPECT_EQ(list.name(1), "targets");
  EXPECT_EQ(list.name(2), "mask");
  Batch batch;
  batch.tokens = list.at("tokens").toVector<int32_t>();
  batch.targets = list.at("targets").toVector<int32_t>();
  batch.mask = list.at("mask").toVector<float>();
  batch.shape = list.at("tokens").shape();
  EXPECT_EQ(list.at("targets").shape(), batch.shape);
  EXPECT_EQ(list.at("mask").shape(), batch.shape);
  return batch;
}

/// Every batch until the batcher is done (at most `limit`).
std::vector<Batch> drain(moert::Batcher &batcher, size_t limit = 100000) {
  std::vector<Batch> batches;
  while (batches.size() < limit) {
    std::optional<moert::TensorList> list = batcher.next();
    if (!list)
      break;
    batches.push_back(unpack(*list));
  }
  return batches;
}

/// Builds the expected [S] row from a stream of whole sequences written
/// one after another (what packing and padding both amount to): position p
/// of the stream is the token at p and the target at p - 1, whose mask is 1
/// iff it is a response id or end of a sequence and not a sequence's first.
void expectRow(const Batch &batch, int64_t row,
               const std::vector<const Expected *> &sequences) {
  int64_t S = batch.shape[1];
  std::vector<int32_t> stream;
  std::vector<bool> response;
  for (const Expected *e : sequences)
    for (size_t j = 0; j < e->ids.size(); ++j) {
      stream.push_back(e->ids[j]);
      response.push_back(j >= e->promptLength && j > 0);
    }
  for (int64_t t = 0; t < S; ++t) {
    SCOPED_TRACE(testing::Message() << "row " << row << " column " << t);
    size_t at = row * S + t;
    bool hasToken = t < static_cast<int64_t>(stream.size());
    bool hasTarget = t + 1 < static_cast<int64_t>(stream.size());
    EXPECT_EQ(batch.tokens[at], hasToken ? stream[t] : MOE_BYTE_EOS_ID);
    EXPECT_EQ(batch.targets[at], hasTarget ? stream[t + 1] : MOE_BYTE_EOS_ID);
    EXPECT_EQ(batch.mask[at], hasTarget && response[t + 1] ? 1.0f : 0.0f);
  }
}

moert::BatcherOptions options(int64_t B, int64_t S, moe_batch_mode mode,
                              bool shuffle = false, uint64_t seed = 0,
                              int64_t epochs = 1) {
  moert::BatcherOptions o;
  o.batch_size = B;
  o.seq_len = S;
  o.mode = mode;
  o.shuffle = shuffle;
  o.seed = seed;
  o.epochs = epochs;
  return o;
}

//===----------------------------------------------------------------------===//
// JSONL
//===----------------------------------------------------------------------===//

TEST(DataJsonl, ReadsAlpacaAndFlanRecordsWithUnicode) {
  TempDir dir;
  std::string path = jsonl(
      dir, "{\"instruction\": \"Translate.\", \"input\": \"h\xc3\xa9llo "
           "\xe4\xb8\x96\xe7\x95\x8c\", \"output\": \"\\u00e9t\\u00e9 "
           "\\ud83d\\ude42\", \"task\": \"t1\", \"id\": 7}\r\n"
           "\n"
           "   \t\n"
           "{\"output\": \"no input\", \"instruction\": \"Say it.\"}\n"
           "{\"inputs\": \"Q: 2+2?\", \"targets\": \"4\", \"task\": \"flan\"}");
  moert::Dataset data = moert::Dataset::readJsonl(path);
  ASSERT_EQ(data.size(), 3);
  EXPECT_EQ(data.instruction(0), "Translate.");
  EXPECT_EQ(data.input(0), "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c");
  EXPECT_EQ(data.output(0), "\xc3\xa9t\xc3\xa9 \xf0\x9f\x99\x82");
  EXPECT_EQ(data.task(0), "t1");
  EXPECT_EQ(data.line(0), 1);
  EXPECT_EQ(data.input(1), "");
  EXPECT_EQ(data.task(1), "");
  EXPECT_EQ(data.line(1), 4);
  EXPECT_EQ(data.instruction(2), "Q: 2+2?");
  EXPECT_EQ(data.input(2), "");
  EXPECT_EQ(data.output(2), "4");
  EXPECT_EQ(data.line(2), 5);
  EXPECT_EQ(moe_dataset_output(data.get(), 3), nullptr);
  EXPECT_EQ(moe_dataset_instruction(data.get(), -1), nullptr);
  EXPECT_EQ(data.line(3), -1);
  expectError([&] { data.output(3); }, MOE_STATUS_INVALID_ARGUMENT,
              {"record 3 is out of range (the dataset has 3)"});
}

TEST(DataJsonl, MalformedLinesNameFileLineAndProblem) {
  const std::string good = "{\"instruction\": \"a\", \"output\": \"b\"}\n";
  EXPECT_EQ(readError(good + "{\"instruction\": \"a\", \"output\": 3}\n"),
            "data.jsonl:2: field \"output\" is a number, expected a string");
  EXPECT_EQ(readError("{\"instruction\": \"a\"}"),
            "data.jsonl:1: missing field \"output\"");
  EXPECT_EQ(readError("{\"input\": \"x\", \"output\": \"b\"}"),
            "data.jsonl:1: missing field \"instruction\"");
  EXPECT_EQ(readError(good + good + "[1, 2]\n"),
            "data.jsonl:3: expected a JSON object, got an array");
  EXPECT_EQ(readError("{\"instruction\": \"a\" \"output\": \"b\"}"),
            "data.jsonl:1: expected ',' or '}' at byte 20");
  EXPECT_EQ(readError("{\"instruction\": \"a\", \"output\": \"b\"} x"),
            "data.jsonl:1: unexpected text after the JSON value at byte 36");
  EXPECT_EQ(readError("\n{\"instruction\": \"a\", \"targets\": \"b\"}"),
            "data.jsonl:2: mixes the Alpaca fields (\"instruction\", "
            "\"input\", \"output\") with the FLAN fields (\"inputs\", "
            "\"targets\")");
  EXPECT_EQ(readError("{\"inputs\": \"a\"}"),
            "data.jsonl:1: has \"inputs\" but no \"targets\"");
  EXPECT_EQ(readError("{\"targets\": \"a\"}"),
            "data.jsonl:1: has \"targets\" but no \"inputs\"");
  EXPECT_EQ(readError("{\"question\": \"a\"}"),
            "data.jsonl:1: has neither \"instruction\" and \"output\" nor "
            "\"inputs\" and \"targets\"");
  EXPECT_EQ(readError("{\"instruction\": \"a\", \"output\": \"b\", "
                      "\"task\": null}"),
            "data.jsonl:1: field \"task\" is null, expected a string");
  EXPECT_EQ(readError("{\"instruction\": \"a\\u0000\", \"output\": \"b\"}"),
            "data.jsonl:1: field \"instruction\" contains U+0000, which is "
            "the end-of-sequence byte and cannot be part of a text");
  EXPECT_EQ(readError("{\"instruction\": \"\xff\", \"output\": \"b\"}"),
            "data.jsonl:1: invalid UTF-8 at byte 17");
  EXPECT_EQ(readError(good + "{\"instruction\": \"a\", \"output\": \"b\", "
                             "\"output\": \"c\"}"),
            "data.jsonl:2: duplicate key \"output\" at byte 36");
  EXPECT_EQ(readError("\n  \n"), "dataset 'data.jsonl' holds no records");
}

TEST(DataJsonl, MissingFileAndNullArguments) {
  moe_dataset *dataset = nullptr;
  expectStatus(moe_dataset_read_jsonl("/nonexistent/x.jsonl", &dataset),
               MOE_STATUS_NOT_FOUND,
               {"dataset '/nonexistent/x.jsonl' does not exist"});
  expectStatus(moe_dataset_read_jsonl(nullptr, &dataset),
               MOE_STATUS_INVALID_ARGUMENT,
               {"moe_dataset_read_jsonl: argument 'path' is NULL"});
  EXPECT_EQ(dataset, nullptr);
  moe_dataset_release(nullptr);
}

//===----------------------------------------------------------------------===//
// Templates
//===----------------------------------------------------------------------===//

TEST(DataTemplate, DefaultTemplateDropsTheInputLineWhenEmpty) {
  EXPECT_EQ(moert::renderPrompt(nullptr, "Add.", "1 + 2"),
            "Add.\nInput: 1 + 2\nOutput: ");
  EXPECT_EQ(moert::renderPrompt(nullptr, "What is 1 + 2?", ""),
            "What is 1 + 2?\nOutput: ");
  // Costs stated in moert_data.h.
  EXPECT_EQ(moert::renderPrompt(nullptr, "", "").size(), 9u);
  EXPECT_EQ(moert::renderPrompt(nullptr, "", "x").size(), 17u + 1u);
}

TEST(DataTemplate, CustomTemplates) {
  const char *qa = "### {instruction}\n[{input}]\nA:";
  EXPECT_EQ(moert::renderPrompt(qa, "Sort.", "b a"), "### Sort.\n[b a]\nA:");
  EXPECT_EQ(moert::renderPrompt(qa, "Sort.", ""), "### Sort.\nA:");
  // The input on the last line: its newline is the one before it.
  const char *last = "{instruction}\n{input}";
  EXPECT_EQ(moert::renderPrompt(last, "I", "x"), "I\nx");
  EXPECT_EQ(moert::renderPrompt(last, "I", ""), "I");
  // The input on the first line.
  EXPECT_EQ(moert::renderPrompt("ctx {input}\n{instruction} =", "I", ""),
            "I =");
  // Escapes, and values are never re-read as placeholders.
  const char *braces = "{{{instruction}}}\n{{input}}: {input}\n";
  EXPECT_EQ(moert::renderPrompt(braces, "{input}", "{x}"),
            "{{input}}\n{input}: {x}\n");
  EXPECT_EQ(moert::renderPrompt(braces, "i", ""), "{i}\n");
  // UTF-8 passes through.
  EXPECT_EQ(moert::renderPrompt(nullptr, "\xc3\xa9", "\xe4\xb8\x96"),
            "\xc3\xa9\nInput: \xe4\xb8\x96\nOutput: ");
}

TEST(DataTemplate, BadTemplatesAreRefusedWithTheirPosition) {
  EXPECT_EQ(templateError("{instruction}\n{output}\n{input}"),
            "prompt template: unknown placeholder '{output}' at byte 14 "
            "(known: {instruction}, {input}; write '{{' for a literal '{')");
  EXPECT_EQ(templateError("{instruction}\n{input}\n{oops"),
            "prompt template: unmatched '{' at byte 22 (write '{{' for a "
            "literal '{')");
  EXPECT_EQ(templateError("{instruction}\n{input} }"),
            "prompt template: unmatched '}' at byte 22 (write '}}' for a "
            "literal '}')");
  EXPECT_EQ(templateError("{instruction}"),
            "prompt template: needs {input} exactly once, not 0 times");
  EXPECT_EQ(templateError("{input}\n{input}\n{instruction}"),
            "prompt template: needs {input} exactly once, not 2 times");
  EXPECT_EQ(templateError("{input}"),
            "prompt template: needs {instruction} exactly once, not 0 times");
  EXPECT_EQ(templateError("Q: {instruction} {input}\nA:"),
            "prompt template: {input} shares its line with {instruction}, "
            "but the input line is left out when a record has no input");
}

//===----------------------------------------------------------------------===//
// Byte tokenizer
//===----------------------------------------------------------------------===//

TEST(DataTokenizer, BytesRoundTripAndStopAtTheEnd) {
  moert::Tokenizer bytes = moert::Tokenizer::bytes();
  EXPECT_EQ(bytes.kind(), "byte");
  EXPECT_EQ(bytes.vocabSize(), 256);
  EXPECT_EQ(bytes.eosId(), 0);
  std::string text = "A\xc3\xa9 \xf0\x9f\x99\x82\n~";
  std::vector<int32_t> ids = bytes.encode(text);
  EXPECT_EQ(ids, (std::vector<int32_t>{65, 0xc3, 0xa9, 32, 0xf0, 0x9f, 0x99,
                                       0x82, 10, 126}));
  EXPECT_EQ(bytes.decode(ids), text);
  EXPECT_TRUE(bytes.encode("").empty());
  EXPECT_EQ(bytes.decode({104, 105, 0, 120, 300}), "hi");
  EXPECT_EQ(bytes.decode({}), "");
  // Generated bytes need not be UTF-8; they come back as they are.
  EXPECT_EQ(bytes.decode({0xff, 65}), "\xff"
                                      "A");
  expectError(
      [&] {
        bytes.decode({65, 256});
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"moe_tokenizer_decode: id 256 at position 1 is outside the "
       "vocabulary of 256 ids"});
  expectError([&] { bytes.decode({-1}); }, MOE_STATUS_INVALID_ARGUMENT,
              {"id -1 at position 0"});
}

TEST(DataTokenizer, EncodesRecordPromptsForEvaluation) {
  TempDir dir;
  moert::Dataset data = moert::Dataset::readJsonl(
      jsonl(dir, recordsJsonl({{"Add.", "1 + 2", "3"}, {"Hi?", "", "yo"}})));
  moert::Tokenizer bytes = moert::Tokenizer::bytes();
  std::vector<int32_t> prompt = bytes.encodePrompt(data, 0);
  EXPECT_EQ(bytes.decode(prompt), "Add.\nInput: 1 + 2\nOutput: ");
  EXPECT_EQ(bytes.decode(bytes.encodePrompt(data, 1, "{instruction}\n{input}")),
            "Hi?");
  EXPECT_EQ(data.output(1), "yo");
  expectError([&] { bytes.encodePrompt(data, 2); }, MOE_STATUS_INVALID_ARGUMENT,
              {"moe_dataset_encode_prompt: record 2 is out of range (the "
               "dataset has 2)"});
}

//===----------------------------------------------------------------------===//
// Batches
//===----------------------------------------------------------------------===//

TEST(DataBatcher, PaddedRowsMaskExactlyTheResponse) {
  TempDir dir;
  for (uint32_t seed : {1u, 2u, 3u}) {
    std::vector<TestRecord> records = randomRecords(13, seed);
    moert::Dataset data =
        moert::Dataset::readJsonl(jsonl(dir, recordsJsonl(records)));
    moert::Tokenizer bytes = moert::Tokenizer::bytes();
    const int64_t B = 4, S = 61; // Longest sequence: 12+9+15+17+1 = 54 ids.
    moert::Batcher batcher(data, bytes, options(B, S, MOE_BATCH_PAD));
    std::vector<Batch> batches = drain(batcher);
    ASSERT_EQ(batches.size(), 4u); // 13 records, the last batch 1 + 3 pads.
    for (size_t b = 0; b < batches.size(); ++b) {
      ASSERT_EQ(batches[b].shape, (std::vector<int64_t>{B, S}));
      for (int64_t r = 0; r < B; ++r) {
        size_t index = b * B + r;
        if (index < records.size()) {
          Expected e = byteSequence(records[index], nullptr);
          EXPECT_EQ(batcher.sequenceLength(index),
                    static_cast<int64_t>(e.ids.size()));
          expectRow(batches[b], r, {&e});
        } else {
          expectRow(batches[b], r, {});
        }
      }
    }
    EXPECT_EQ(batcher.numTruncated(), 0);
    EXPECT_EQ(batcher.epoch(), 1);
    EXPECT_FALSE(batcher.next());
  }
}

TEST(DataBatcher, MaskCountsOutputIdsAndTheEndOnly) {
  TempDir dir;
  moert::Dataset data =
      moert::Dataset::readJsonl(jsonl(dir, recordsJsonl({{"Q", "", "ab"}})));
  moert::Batcher batcher(data, moert::Tokenizer::bytes(),
                         options(1, 16, MOE_BATCH_PAD));
  Batch batch = unpack(*batcher.next());
  // "Q\nOutput: " is 10 ids, then 'a' 'b' and the end: 13 ids.
  for (int t = 0; t < 16; ++t) {
    SCOPED_TRACE(t);
    EXPECT_EQ(batch.mask[t], t >= 9 && t <= 11 ? 1.0f : 0.0f);
  }
  EXPECT_EQ(batch.targets[9], 'a');
  EXPECT_EQ(batch.targets[10], 'b');
  EXPECT_EQ(batch.targets[11], MOE_BYTE_EOS_ID);
  EXPECT_EQ(batch.tokens[0], 'Q');
  EXPECT_EQ(batch.tokens[9], ' ');
  EXPECT_EQ(batch.tokens[12], MOE_BYTE_EOS_ID);
}

TEST(DataBatcher, LayoutsDocumentedInDataMd) {
  TempDir dir;
  moert::Dataset data = moert::Dataset::readJsonl(
      jsonl(dir, recordsJsonl({{"ppp", "", "ab"}, {"q", "", "c"}})));
  auto row0 = [&](moe_batch_mode mode) {
    moert::BatcherOptions o = options(1, 8, mode);
    o.prompt_template = "{input}\n{instruction}"; // The prompt is "ppp".
    moert::Batcher batcher(data, moert::Tokenizer::bytes(), o);
    return unpack(*batcher.next());
  };
  auto ids = [](const std::string &text) {
    std::vector<int32_t> out;
    for (char c : text)
      out.push_back(c == '$' ? MOE_BYTE_EOS_ID : c);
    return out;
  };
  Batch pad = row0(MOE_BATCH_PAD);
  EXPECT_EQ(pad.tokens, ids("pppab$$$"));
  EXPECT_EQ(pad.targets, ids("ppab$$$$"));
  EXPECT_EQ(pad.mask, (std::vector<float>{0, 0, 1, 1, 1, 0, 0, 0}));
  Batch pack = row0(MOE_BATCH_PACK);
  EXPECT_EQ(pack.tokens, ids("pppab$qc"));
  EXPECT_EQ(pack.targets, ids("ppab$qc$"));
  EXPECT_EQ(pack.mask, (std::vector<float>{0, 0, 1, 1, 1, 0, 1, 1}));
}

TEST(DataBatcher, PaddingTruncatesAndCounts) {
  TempDir dir;
  std::vector<TestRecord> records = {
      {"I", "", "short"}, {"I", "", "a much longer response"}, {"J", "", "x"}};
  moert::Dataset data =
      moert::Dataset::readJsonl(jsonl(dir, recordsJsonl(records)));
  const int64_t S = 16; // "I\nOutput: " + 5 + 1 = 16 ids fit in S + 1.
  moert::Batcher batcher(data, moert::Tokenizer::bytes(),
                         options(3, S, MOE_BATCH_PAD, false, 0, 2));
  std::vector<Batch> batches = drain(batcher);
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batcher.numTruncated(), 2); // Record 1, once per epoch.
  Expected longOne = byteSequence(records[1], nullptr);
  longOne.ids.resize(S + 1); // What survives the cut.
  for (const Batch &batch : batches) {
    Expected e0 = byteSequence(records[0], nullptr),
             e2 = byteSequence(records[2], nullptr);
    expectRow(batch, 0, {&e0});
    expectRow(batch, 1, {&longOne});
    expectRow(batch, 2, {&e2});
  }
}

TEST(DataBatcher, PackingFillsRowsWithWholeRecords) {
  TempDir dir;
  for (uint32_t seed : {4u, 5u, 6u}) {
    std::vector<TestRecord> records = randomRecords(40, seed);
    records.push_back({"Long", "", std::string(150, 'z')}); // Alone, cut.
    moert::Dataset data =
        moert::Dataset::readJsonl(jsonl(dir, recordsJsonl(records)));
    const int64_t B = 3, S = 127;
    moert::Batcher batcher(data, moert::Tokenizer::bytes(),
                           options(B, S, MOE_BATCH_PACK));
    std::vector<Batch> batches = drain(batcher);
    // Greedy packing computed here from the sequence lengths alone.
    std::vector<Expected> expected;
    for (const TestRecord &r : records)
      expected.push_back(byteSequence(r, nullptr));
    std::vector<std::vector<const Expected *>> rows(1);
    size_t used = 0;
    int64_t cut = 0;
    for (Expected &e : expected) {
      if (used > 0 && used + e.ids.size() > S + 1) {
        rows.emplace_back();
        used = 0;
      }
      if (e.ids.size() > S + 1) {
        e.ids.resize(S + 1);
        ++cut;
      }
      rows.back().push_back(&e);
      used += e.ids.size();
    }
    ASSERT_EQ(batches.size(), (rows.size() + B - 1) / B);
    for (size_t row = 0; row < batches.size() * B; ++row)
      expectRow(batches[row / B], row % B,
                row < rows.size() ? rows[row]
                                  : std::vector<const Expected *>{});
    EXPECT_EQ(batcher.numTruncated(), cut);
    EXPECT_EQ(cut, 1);
    EXPECT_LT(rows.size(), records.size() / 2); // Packing did pack.
  }
}

TEST(DataBatcher, TrimShrinksToTheLongestRow) {
  TempDir dir;
  std::vector<TestRecord> records = {{"A", "", "xy"}, {"B", "in", "z"}};
  moert::Dataset data =
      moert::Dataset::readJsonl(jsonl(dir, recordsJsonl(records)));
  moert::BatcherOptions o = options(2, 100, MOE_BATCH_PAD);
  o.trim = 1;
  moert::Batcher batcher(data, moert::Tokenizer::bytes(), o);
  Batch batch = unpack(*batcher.next());
  Expected e0 = byteSequence(records[0], nullptr),
           e1 = byteSequence(records[1], nullptr);
  int64_t width =
      static_cast<int64_t>(std::max(e0.ids.size(), e1.ids.size()) - 1);
  EXPECT_EQ(batch.shape, (std::vector<int64_t>{2, width}));
  expectRow(batch, 0, {&e0});
  expectRow(batch, 1, {&e1});
}

/// The record index of each padded row, found by its tokens.
std::vector<int64_t> rowRecords(const std::vector<Batch> &batches,
                                const std::vector<TestRecord> &records) {
  std::map<std::vector<int32_t>, int64_t> byPrompt;
  for (size_t i = 0; i < records.size(); ++i) {
    Expected e = byteSequence(records[i], nullptr);
    byPrompt[std::vector<int32_t>(e.ids.begin(), e.ids.end() - 1)] = i;
  }
  std::vector<int64_t> order;
  for (const Batch &batch : batches)
    for (int64_t r = 0; r < batch.shape[0]; ++r) {
      std::vector<int32_t> row(batch.tokens.begin() + r * batch.shape[1],
                               batch.tokens.begin() + (r + 1) * batch.shape[1]);
      while (!row.empty() && row.back() == MOE_BYTE_EOS_ID)
        row.pop_back();
      if (row.empty())
        continue; // Padding row.
      auto found = byPrompt.find(row);
      EXPECT_NE(found, byPrompt.end());
      order.push_back(found == byPrompt.end() ? -1 : found->second);
    }
  return order;
}

TEST(DataBatcher, ShuffledEpochsAreDeterministicPermutations) {
  TempDir dir;
  std::vector<TestRecord> records = randomRecords(29, 7);
  for (size_t i = 0; i < records.size(); ++i)
    records[i].instruction += std::to_string(i); // Distinct rows.
  moert::Dataset data =
      moert::Dataset::readJsonl(jsonl(dir, recordsJsonl(records)));
  moert::Tokenizer bytes = moert::Tokenizer::bytes();
  auto run = [&](uint64_t seed) {
    moert::Batcher batcher(data, bytes,
                           options(4, 64, MOE_BATCH_PAD, true, seed, 3));
    std::vector<Batch> batches = drain(batcher);
    EXPECT_EQ(batches.size(), 22u); // ceil(3 * 29 / 4)
    EXPECT_EQ(batcher.epoch(), 3);
    EXPECT_EQ(batcher.position(), 0);
    return rowRecords(batches, records);
  };
  std::vector<int64_t> a = run(11), b = run(11), c = run(12);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  ASSERT_EQ(a.size(), 3 * records.size());
  std::vector<int64_t> identity(records.size());
  std::iota(identity.begin(), identity.end(), 0);
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> visit(a.begin() + epoch * records.size(),
                               a.begin() + (epoch + 1) * records.size());
    EXPECT_NE(visit, identity);
    std::sort(visit.begin(), visit.end());
    EXPECT_EQ(visit, identity) << "epoch " << epoch;
  }
  // Epochs differ from one another.
  EXPECT_FALSE(std::equal(a.begin(), a.begin() + records.size(),
                          a.begin() + records.size()));
}

TEST(DataBatcher, ResumesTheExactStreamFromItsState) {
  TempDir dir;
  std::vector<TestRecord> records = randomRecords(23, 9);
  moert::Dataset data =
      moert::Dataset::readJsonl(jsonl(dir, recordsJsonl(records)));
  moert::Tokenizer bytes = moert::Tokenizer::bytes();
  for (moe_batch_mode mode : {MOE_BATCH_PAD, MOE_BATCH_PACK}) {
    moert::BatcherOptions o = options(3, 40, mode, true, 5, 4);
    moert::Batcher reference(data, bytes, o);
    std::vector<Batch> all = drain(reference);
    for (size_t cut :
         {size_t(0), size_t(1), size_t(7), all.size() - 1, all.size()}) {
      SCOPED_TRACE(testing::Message() << "mode " << mode << " cut " << cut);
      moert::Batcher first(data, bytes, o);
      EXPECT_EQ(drain(first, cut).size(), cut);
      std::string state = first.state();
      moert::Batcher resumed(data, bytes, o);
      resumed.setState(state);
      EXPECT_EQ(resumed.state(), state);
      std::vector<Batch> rest = drain(resumed);
      ASSERT_EQ(cut + rest.size(), all.size());
      for (size_t i = 0; i < rest.size(); ++i) {
        EXPECT_EQ(rest[i].tokens, all[cut + i].tokens);
        EXPECT_EQ(rest[i].targets, all[cut + i].targets);
        EXPECT_EQ(rest[i].mask, all[cut + i].mask);
      }
      EXPECT_EQ(resumed.numTruncated(), reference.numTruncated());
    }
  }
  moert::Batcher batcher(data, bytes, options(2, 40, MOE_BATCH_PAD, true, 5));
  batcher.next();
  EXPECT_EQ(batcher.state(), "moe-batcher-v1 records=23 shuffle=1 seed=5 "
                             "epoch=0 position=2 truncated=0");
}

TEST(DataBatcher, BadStatesAreRefusedAndLeaveTheBatcherAlone) {
  TempDir dir;
  moert::Dataset data =
      moert::Dataset::readJsonl(jsonl(dir, recordsJsonl(randomRecords(10, 1))));
  moert::Batcher batcher(data, moert::Tokenizer::bytes(),
                         options(2, 64, MOE_BATCH_PAD, true, 3, 2));
  batcher.next();
  std::string before = batcher.state();
  auto refused = [&](const std::string &state, const std::string &problem) {
    expectError([&] { batcher.setState(state); }, MOE_STATUS_INVALID_ARGUMENT,
                {"batcher state '" + state + "': " + problem});
    EXPECT_EQ(batcher.state(), before);
  };
  refused("v0", "does not start with 'moe-batcher-v1'");
  refused("moe-batcher-v1 records=10", "expected 'shuffle=<number>'");
  refused("moe-batcher-v1 records=1x shuffle=1 seed=3 epoch=0 position=1 "
          "truncated=0",
          "'records=1x' is not a valid number");
  refused("moe-batcher-v1 records=11 shuffle=1 seed=3 epoch=0 position=1 "
          "truncated=0",
          "saved for 11 records, but the dataset has 10");
  refused("moe-batcher-v1 records=10 shuffle=1 seed=4 epoch=0 position=1 "
          "truncated=0",
          "saved for shuffle=1 seed=4, but this batcher has shuffle=1 seed=3");
  refused("moe-batcher-v1 records=10 shuffle=1 seed=3 epoch=0 position=10 "
          "truncated=0",
          "epoch 0 position 10 lies outside the stream (10 records, 2 "
          "epochs)");
  refused("moe-batcher-v1 records=10 shuffle=1 seed=3 epoch=2 position=1 "
          "truncated=0",
          "epoch 2 position 1 lies outside the stream");
  refused("moe-batcher-v1 records=10 shuffle=1 seed=3 epoch=0 position=1 "
          "truncated=0 extra",
          "unexpected 'extra'");
  // The finished state is valid.
  batcher.setState("moe-batcher-v1 records=10 shuffle=1 seed=3 epoch=2 "
                   "position=0 truncated=0");
  EXPECT_FALSE(batcher.next());
}

TEST(DataBatcher, BadOptionsAreRefused) {
  TempDir dir;
  moert::Dataset data =
      moert::Dataset::readJsonl(jsonl(dir, recordsJsonl(randomRecords(3, 1))));
  moert::Tokenizer bytes = moert::Tokenizer::bytes();
  auto refused = [&](moert::BatcherOptions o, const std::string &message) {
    expectError([&] { moert::Batcher(data, bytes, o); },
                MOE_STATUS_INVALID_ARGUMENT, {message});
  };
  refused(options(0, 8, MOE_BATCH_PAD),
          "moe_batcher_create: batch size 0 is not positive");
  refused(options(2, -1, MOE_BATCH_PAD),
          "moe_batcher_create: sequence length -1 is not positive");
  refused(options(2, 8, moe_batch_mode(7)),
          "moe_batcher_create: unknown batch mode 7");
  refused(options(2, 8, MOE_BATCH_PAD, false, 0, -1),
          "moe_batcher_create: epochs -1 is negative");
  refused(options(int64_t(1) << 40, int64_t(1) << 30, MOE_BATCH_PAD),
          "is too large");
  moert::BatcherOptions o = options(2, 8, MOE_BATCH_PAD);
  o.prompt_template = "{instruction}";
  refused(o, "prompt template: needs {input} exactly once");
  moe_batcher *out = nullptr;
  expectStatus(moe_batcher_create(data.get(), bytes.get(), nullptr, &out),
               MOE_STATUS_INVALID_ARGUMENT,
               {"moe_batcher_create: argument 'options' is NULL"});
  moert::BatcherOptions defaults;
  EXPECT_EQ(defaults.batch_size, 8);
  EXPECT_EQ(defaults.seq_len, 128);
  EXPECT_EQ(defaults.mode, MOE_BATCH_PAD);
  EXPECT_EQ(defaults.shuffle, 1);
  EXPECT_EQ(defaults.epochs, 0);
  EXPECT_EQ(defaults.prompt_template, nullptr);
}

TEST(DataBatcher, EndlessStreamsKeepGoing) {
  TempDir dir;
  moert::Dataset data =
      moert::Dataset::readJsonl(jsonl(dir, recordsJsonl(randomRecords(5, 2))));
  moert::Batcher batcher(data, moert::Tokenizer::bytes(),
                         options(3, 64, MOE_BATCH_PAD, true, 1, 0));
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(batcher.next());
  EXPECT_EQ(batcher.epoch(), 6); // 30 rows over 5 records.
  EXPECT_EQ(batcher.position(), 0);
}

//===----------------------------------------------------------------------===//
// SentencePiece, trained on the generated mixture
//===----------------------------------------------------------------------===//

class DataSentencePiece : public testing::Test {
protected:
  static void SetUpTestSuite() {
    mixture = new TempDir;
    std::string command = std::string(MOERT_PYTHON) + " " +
                          MOERT_MIXTURE_GENERATOR + " --out " +
                          mixture->path.string() +
                          " --seed 5 --train-per-task 60 --valid-per-task 10 "
                          "--held-out-per-task 20 > /dev/null";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  static void TearDownTestSuite() { delete mixture; }
  static std::string split(const std::string &name) {
    return *mixture / (name + ".jsonl");
  }
  static TempDir *mixture;
};
TempDir *DataSentencePiece::mixture = nullptr;

TEST_F(DataSentencePiece, TrainLoadAndRoundTripEveryText) {
  moert::Dataset train = moert::Dataset::readJsonl(split("train"));
  ASSERT_EQ(train.size(), 600);
  TempDir dir;
  for (const char *type : {"unigram", "bpe"}) {
    SCOPED_TRACE(type);
    std::string path = dir / (std::string(type) + ".model");
    moert::Tokenizer::trainSentencePiece(train, path, type, 600, true);
    EXPECT_EQ(dir.list().size(), type == std::string("unigram") ? 1u : 2u)
        << "no temporary file is left behind";
    moert::Tokenizer sp = moert::Tokenizer::loadSentencePiece(path);
    EXPECT_EQ(sp.kind(), "sentencepiece");
    EXPECT_LE(sp.vocabSize(), 600);
    EXPECT_GT(sp.vocabSize(), 259);
    EXPECT_EQ(sp.eosId(), 2);
    // Exact round trips on every text, including unseen ones (held-out
    // cluster, a character never in the data).
    size_t ids = 0, bytes = 0;
    for (const char *name : {"train", "valid", "held_out"}) {
      moert::Dataset data = moert::Dataset::readJsonl(split(name));
      for (int64_t i = 0; i < data.size(); ++i) {
        std::string prompt =
            moert::renderPrompt(nullptr, data.instruction(i), data.input(i));
        for (const std::string &text : {prompt, data.output(i)}) {
          std::vector<int32_t> encoded = sp.encode(text);
          ASSERT_EQ(sp.decode(encoded), text);
          for (int32_t id : encoded)
            ASSERT_TRUE(id >= 0 && id < sp.vocabSize() && id != sp.eosId());
          ids += encoded.size();
          bytes += text.size();
        }
      }
    }
    // Measured: unigram 1.99, bpe 2.46 bytes per piece.
    EXPECT_LT(ids * 3, bytes * 2) << "pieces should be longer than a byte";
    std::string odd = "\xc3\xa9t\xc3\xa9 {\t}  \n\n \xf0\x9f\x99\x82";
    EXPECT_EQ(sp.decode(sp.encode(odd)), odd);
    std::vector<int32_t> withEnd = sp.encode("abc");
    withEnd.push_back(sp.eosId());
    withEnd.push_back(sp.encode("zzz")[0]);
    EXPECT_EQ(sp.decode(withEnd), "abc");
    expectError([&] { sp.decode({sp.vocabSize()}); },
                MOE_STATUS_INVALID_ARGUMENT,
                {"is outside the vocabulary of " +
                 std::to_string(sp.vocabSize()) + " ids"});
  }
}

TEST_F(DataSentencePiece, TrainingIsDeterministic) {
  moert::Dataset train = moert::Dataset::readJsonl(split("train"));
  TempDir dir;
  moert::Tokenizer::trainSentencePiece(train, dir / "a.model", "unigram", 300,
                                       false);
  moert::Tokenizer::trainSentencePiece(train, dir / "b.model", "unigram", 300,
                                       false);
  EXPECT_EQ(readBytes(dir / "a.model"), readBytes(dir / "b.model"));
  // Without byte fallback an unseen character is lost.
  moert::Tokenizer sp = moert::Tokenizer::loadSentencePiece(dir / "a.model");
  EXPECT_LE(sp.vocabSize(), 300);
  EXPECT_EQ(sp.decode(sp.encode("sort \xe4\xb8\x96")), "sort  \xe2\x81\x87 ");
}

TEST_F(DataSentencePiece, BatchesMaskTheResponsePieces) {
  moert::Dataset train = moert::Dataset::readJsonl(split("train"));
  TempDir dir;
  moert::Tokenizer::trainSentencePiece(train, dir / "m.model", "bpe", 500,
                                       true);
  moert::Tokenizer sp = moert::Tokenizer::loadSentencePiece(dir / "m.model");
  moert::Batcher batcher(train, sp, options(4, 128, MOE_BATCH_PACK));
  // In file order, rows hold records 0, 1, ... whole: the masked targets of
  // each row, split at the end ids, are the records' outputs.
  std::vector<std::string> outputs;
  while (auto list = batcher.next()) {
    Batch batch = unpack(*list);
    for (int64_t r = 0; r < batch.shape[0]; ++r) {
      std::vector<int32_t> response;
      for (int64_t t = 0; t < batch.shape[1]; ++t) {
        size_t at = r * batch.shape[1] + t;
        if (batch.mask[at] == 0)
          continue;
        if (batch.targets[at] == sp.eosId()) {
          outputs.push_back(sp.decode(response));
          response.clear();
        } else {
          response.push_back(batch.targets[at]);
        }
      }
      EXPECT_TRUE(response.empty());
    }
  }
  EXPECT_EQ(batcher.numTruncated(), 0);
  ASSERT_EQ(outputs.size(), static_cast<size_t>(train.size()));
  for (int64_t i = 0; i < train.size(); ++i)
    EXPECT_EQ(outputs[i], train.output(i));
}

TEST_F(DataSentencePiece, BadTrainingArgumentsAndModels) {
  moert::Dataset train = moert::Dataset::readJsonl(split("train"));
  TempDir dir;
  expectError(
      [&] {
        moert::Tokenizer::trainSentencePiece(train, dir / "x.model", "word",
                                             300, false);
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"moe_sentencepiece_train: model type 'word' is neither 'unigram' nor "
       "'bpe'"});
  expectError(
      [&] {
        moert::Tokenizer::trainSentencePiece(train, dir / "x.model", "unigram",
                                             40, false);
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"cannot train a SentencePiece model for '" + (dir / "x.model") + "'",
       "Vocabulary size is smaller than required_chars"});
  expectError(
      [&] {
        moert::Tokenizer::trainSentencePiece(train, dir / "x.model", "unigram",
                                             3, false);
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"vocabulary size 3 leaves no room beside <unk>, <s> and </s>"});
  EXPECT_TRUE(dir.list().empty());
  writeBytes(dir / "junk.model", "this is not a model");
  expectError(
      [&] { moert::Tokenizer::loadSentencePiece(dir / "junk.model"); },
      MOE_STATUS_INVALID_FILE,
      {"SentencePiece model '" + (dir / "junk.model") + "' is invalid"});
  expectError([&] { moert::Tokenizer::loadSentencePiece(dir / "none"); },
              MOE_STATUS_NOT_FOUND,
              {"SentencePiece model '" + (dir / "none") + "' does not exist"});
}

} // namespace
