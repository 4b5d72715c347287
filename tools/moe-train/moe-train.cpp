//===- moe-train.cpp - Instruction-tune a compiled MoE model --------------===//
//
// Drives a model compiled with `moec --mode=train`: batches instruction data
// into train_step, applies AdamW from the runtime, logs metrics (routing
// included) as JSONL, evaluates held-out data by loss and by exact match of
// greedy generations, and checkpoints so that a resumed run repeats an
// uninterrupted one exactly.
//
//===----------------------------------------------------------------------===//

#include "moe/runtime/moert.hpp"
#include "moe/runtime/moert_data.hpp"
#include "moe/runtime/moert_train.hpp"
#include "tools/common/CommandLine.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <fnmatch.h>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

using moetools::parseInteger;
using moetools::parseReal;
using moetools::UsageError;

const char usageText[] = R"(usage: moe-train MODEL.so --data TRAIN.jsonl --steps N [options]

Instruction-tunes a model compiled with `moec --mode=train` (it needs the
entry points train_step and, for evaluation, forward).

data:
  --data FILE             training records (JSONL: instruction/input/output)
  --eval FILE             held-out records: loss and exact-match accuracy
                          (repeatable: each file is reported by its name)
  --template TEXT         prompt template with {instruction} and {input}
  --tokenizer byte|FILE   byte-level (default) or a SentencePiece .model
  --train-tokenizer FILE  train a SentencePiece model on --data, save it to
                          FILE and use it (see --vocab-size)
  --vocab-size N          pieces of --train-tokenizer (default 256)
  --seq-len S             ids per row when the model's length is dynamic
                          (default 128)
  --pack                  pack several records per row (default: one)
optimisation:
  --steps N               optimizer steps in total (required)
  --lr X                  peak learning rate (default 3e-3)
  --min-lr X              final learning rate (default 0.1 * lr)
  --warmup N              warmup steps (default 5% of --steps)
  --schedule cosine|linear|constant   decay after warmup (default cosine)
  --weight-decay X        AdamW decoupled weight decay (default 0.01)
  --beta1 X --beta2 X     AdamW betas (default 0.9, 0.95)
  --clip X                global gradient-norm clip, 0 = off (default 1)
  --accumulate K          micro-batches per step (default 1)
  --freeze LIST           comma-separated parameter groups (router, experts,
                          shared_experts, attention, norms, embeddings,
                          head) or name globs that are not updated
  --aux-loss-coef X       weight of the load-balancing loss (default: the
                          one compiled in)
  --z-loss-coef X         weight of the router z-loss (default: compiled in)
state:
  --params FILE           initial parameters (default: random from --seed)
  --seed S                parameter init, data order, jitter (default 0)
  --checkpoint FILE       write a checkpoint here every --checkpoint-every
                          steps and at the end
  --checkpoint-every N    (default 100)
  --resume FILE           continue from a checkpoint (same data and flags)
  --stop-after N          stop after step N as if interrupted (checkpoint,
                          no final evaluation); --resume continues
  --save FILE             final parameters as safetensors
reporting:
  --log FILE              metrics as JSON lines (one per step and evaluation)
  --eval-every N          evaluate every N steps and at the end (default:
                          only at the end)
  --eval-examples N       records decoded for exact match (default 64)
  --max-new-tokens N      generation limit (default 48)
  --threads N             worker threads (default: one per CPU)
  --device D              cpu, cuda or cuda:N (default: the device the model
                          was compiled for); on a GPU, train_step runs there
                          and AdamW updates the parameters on the host
  --quiet                 no progress bar
  -h, --help              print this help

Exit status: 0 on success, 1 when training fails (a NaN or infinite loss
stops it, naming the step), 2 for bad usage.
)";

const char *const kGroups[] = {"router",    "experts", "shared_experts",
                               "attention", "norms",   "embeddings",
                               "head"};

struct Options {
  std::vector<std::string> evals;
  std::string model, data, templateText, tokenizer = "byte",
                                               trainTokenizer;
  int32_t vocabSize = 256;
  int64_t seqLen = 128;
  bool pack = false, quiet = false, help = false, hasTemplate = false;
  int64_t steps = 0, warmup = -1, accumulate = 1;
  double lr = 3e-3, minLr = -1, weightDecay = 0.01, beta1 = 0.9, beta2 = 0.95,
         clip = 1.0;
  moe_lr_decay schedule = MOE_LR_COSINE;
  std::vector<std::string> freeze;
  std::map<std::string, double> coefficients; // Overrides by input name.
  std::string params, checkpoint, resume, save, log;
  uint64_t seed = 0;
  int64_t stopAfter = 0;
  int64_t checkpointEvery = 100, evalEvery = 0, evalExamples = 64,
          maxNewTokens = 48;
  int32_t threads = 0;
  std::string device; // "": the model's.
};

std::vector<std::string> splitList(const std::string &text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');)
    if (!item.empty())
      items.push_back(item);
  return items;
}

Options parseOptions(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      o.help = true;
      continue;
    }
    if (arg == "--pack" || arg == "--quiet") {
      (arg == "--pack" ? o.pack : o.quiet) = true;
      continue;
    }
    if (arg.rfind("-", 0) != 0) {
      if (!o.model.empty())
        throw UsageError("unexpected argument '" + arg + "' (the model is '" +
                         o.model + "')");
      o.model = arg;
      continue;
    }
    std::string flag = arg, value;
    size_t equals = arg.find('=');
    if (equals != std::string::npos) {
      flag = arg.substr(0, equals);
      value = arg.substr(equals + 1);
    } else {
      if (i + 1 >= argc)
        throw UsageError(flag + " needs a value");
      value = argv[++i];
    }
    if (value.empty() && flag != "--template")
      throw UsageError(flag + " needs a non-empty value");
    auto real = [&](double min, double max) {
      return parseReal(value, flag, min, max);
    };
    auto count = [&](int64_t min) {
      return parseInteger<int64_t>(value, flag, min, INT64_MAX);
    };
    if (flag == "--data")
      o.data = value;
    else if (flag == "--eval")
      o.evals.push_back(value);
    else if (flag == "--template") {
      o.templateText = value;
      o.hasTemplate = true;
    } else if (flag == "--tokenizer")
      o.tokenizer = value;
    else if (flag == "--train-tokenizer")
      o.trainTokenizer = value;
    else if (flag == "--vocab-size")
      o.vocabSize = parseInteger<int32_t>(value, flag, 8, 1 << 20);
    else if (flag == "--seq-len")
      o.seqLen = count(2);
    else if (flag == "--steps")
      o.steps = count(1);
    else if (flag == "--lr")
      o.lr = real(0, 10);
    else if (flag == "--min-lr")
      o.minLr = real(0, 10);
    else if (flag == "--warmup")
      o.warmup = count(0);
    else if (flag == "--schedule") {
      if (value == "cosine")
        o.schedule = MOE_LR_COSINE;
      else if (value == "linear")
        o.schedule = MOE_LR_LINEAR;
      else if (value == "constant")
        o.schedule = MOE_LR_CONSTANT;
      else
        throw UsageError("--schedule expects cosine, linear or constant, got "
                         "'" + value + "'");
    } else if (flag == "--weight-decay")
      o.weightDecay = real(0, 10);
    else if (flag == "--beta1")
      o.beta1 = real(0, 0.999999);
    else if (flag == "--beta2")
      o.beta2 = real(0, 0.999999);
    else if (flag == "--clip")
      o.clip = real(0, 1e9);
    else if (flag == "--accumulate")
      o.accumulate = count(1);
    else if (flag == "--freeze")
      for (const std::string &item : splitList(value))
        o.freeze.push_back(item);
    else if (flag == "--aux-loss-coef")
      o.coefficients["aux_loss_coef"] = real(0, 1e6);
    else if (flag == "--z-loss-coef")
      o.coefficients["z_loss_coef"] = real(0, 1e6);
    else if (flag == "--params")
      o.params = value;
    else if (flag == "--seed")
      o.seed = parseInteger<uint64_t>(value, flag, 0, UINT64_MAX);
    else if (flag == "--checkpoint")
      o.checkpoint = value;
    else if (flag == "--checkpoint-every")
      o.checkpointEvery = count(1);
    else if (flag == "--resume")
      o.resume = value;
    else if (flag == "--stop-after")
      o.stopAfter = count(1);
    else if (flag == "--save")
      o.save = value;
    else if (flag == "--log")
      o.log = value;
    else if (flag == "--eval-every")
      o.evalEvery = count(1);
    else if (flag == "--eval-examples")
      o.evalExamples = count(0);
    else if (flag == "--max-new-tokens")
      o.maxNewTokens = count(1);
    else if (flag == "--threads")
      o.threads = parseInteger<int32_t>(value, flag, 1, 4096);
    else if (flag == "--device") {
      try {
        moert::Device::parse(value);
      } catch (const moert::Error &e) {
        throw UsageError("--device: " + std::string(e.what()));
      }
      o.device = value;
    }
    else
      throw UsageError("unknown option '" + arg + "'");
  }
  if (o.help)
    return o;
  if (o.model.empty())
    throw UsageError("no model given");
  if (o.data.empty())
    throw UsageError("--data is required");
  if (o.steps == 0)
    throw UsageError("--steps is required");
  if (!o.trainTokenizer.empty() && o.tokenizer != "byte")
    throw UsageError("--train-tokenizer and --tokenizer exclude each other");
  if (o.minLr < 0)
    o.minLr = 0.1 * o.lr;
  if (o.minLr > o.lr)
    throw UsageError("--min-lr must not exceed --lr");
  if (o.warmup < 0)
    o.warmup = o.steps / 20;
  if (o.warmup > o.steps)
    throw UsageError("--warmup must not exceed --steps");
  return o;
}

/// splitmix64: the per-step jitter seed depends on (seed, step) only, so a
/// resumed run draws the same noise.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string jsonString(const std::string &text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\')
      out += '\\', out += static_cast<char>(c);
    else if (c < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
      out += buffer;
    } else
      out += static_cast<char>(c);
  }
  return out + "\"";
}

std::string jsonNumber(double value) {
  if (!std::isfinite(value))
    return "null";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.9g", value);
  return buffer;
}

/// A result tensor as JSON: a number for one element, else a flat array.
std::string jsonTensor(const moert::Tensor &tensor) {
  moert::Tensor values = tensor.cast(MOE_F64);
  const double *data = values.data<double>();
  int64_t n = values.numElements();
  if (values.rank() == 0)
    return jsonNumber(data[0]);
  std::string out = "[";
  for (int64_t i = 0; i < n; ++i)
    out += (i ? "," : "") + jsonNumber(data[i]);
  return out + "]";
}

double scalarOf(const moert::Tensor &tensor) {
  return tensor.cast(MOE_F64).data<double>()[0];
}

std::string formatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0)
    return "--:--";
  auto total = static_cast<int64_t>(seconds + 0.5);
  char buffer[32];
  if (total >= 3600)
    std::snprintf(buffer, sizeof buffer, "%" PRId64 ":%02" PRId64 ":%02" PRId64,
                  total / 3600, total / 60 % 60, total % 60);
  else
    std::snprintf(buffer, sizeof buffer, "%" PRId64 ":%02" PRId64, total / 60,
                  total % 60);
  return buffer;
}

/// The one-line progress display on stderr: redrawn in place on a
/// terminal, a plain line every tenth of the run otherwise.
class Progress {
public:
  Progress(int64_t total, bool quiet)
      : total(total), quiet(quiet), terminal(isatty(STDERR_FILENO)) {}

  void update(int64_t step, const std::string &status, double etaSeconds) {
    if (quiet)
      return;
    constexpr int width = 24;
    int filled = static_cast<int>(width * step / total);
    std::string bar(filled, '#');
    bar.resize(width, '-');
    std::string line = "[" + bar + "] " + std::to_string(step) + "/" +
                       std::to_string(total) + " " + status + " ETA " +
                       formatDuration(etaSeconds);
    if (terminal) {
      std::fprintf(stderr, "\r%-110s", line.c_str());
      if (step == total)
        std::fputc('\n', stderr);
    } else if (step == total || step % std::max<int64_t>(1, total / 10) == 0) {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }
  /// Ends an in-place line before other output.
  void interrupt() {
    if (!quiet && terminal)
      std::fputc('\n', stderr);
  }

private:
  int64_t total;
  bool quiet, terminal;
};

/// The inputs of an entry point that moe-train provides besides the batch.
struct ExtraInputs {
  struct Scalar {
    std::string name;
    double value;
    moe_dtype dtype;
  };
  std::vector<Scalar> scalars;    // loss coefficients
  std::vector<std::string> seeds; // 0-d i64 jitter seeds
};

class Trainer {
public:
  explicit Trainer(const Options &options) : o(options) {}
  int run();

private:
  const Options &o;
  moert::Model model{nullptr};
  moert::Session session{nullptr};
  moert::Tokenizer tokenizer{nullptr};
  std::unique_ptr<moert::Optimizer> optimizer;
  moert::Dataset trainData{nullptr};
  std::vector<std::pair<std::string, moert::Dataset>> evalSets;
  int64_t batchSize = 0, seqLen = 0, vocab = 0;
  bool dynamicSeq = false;
  std::ofstream log;
  Progress *progress = nullptr;
  double evalSeconds = 0; // Kept out of the training throughput.

  const char *promptTemplate() const {
    return o.hasTemplate ? o.templateText.c_str() : nullptr;
  }
  ExtraInputs extraInputs(const std::string &entry);
  void addExtras(const ExtraInputs &extras, moert::TensorList &inputs,
                 int64_t step);
  void setUpShapes();
  std::vector<std::string> frozenGlobs();
  moert::Batcher makeBatcher(const moert::Dataset &data, bool training);
  void evaluate(int64_t step);
  void evaluateSet(int64_t step, const std::string &name,
                   const moert::Dataset &data);
  std::vector<std::string> generate(const moert::Dataset &data,
                                    const std::vector<int64_t> &records);
  void writeLog(const std::string &line) {
    if (log.is_open()) {
      log << line << '\n';
      log.flush();
    }
  }
};

ExtraInputs Trainer::extraInputs(const std::string &entry) {
  ExtraInputs extras;
  int32_t index = moe_model_find_entry(model.get(), entry.c_str());
  for (int32_t a = 0; a < moe_model_num_args(model.get(), index); ++a) {
    const moe_arg_info *arg = moe_model_arg(model.get(), index, a);
    std::string name = arg->name;
    if (arg->role != MOE_ROLE_INPUT || name == "tokens" ||
        name == "targets" || name == "mask")
      continue;
    double value = 0;
    if (o.coefficients.count(name))
      value = o.coefficients.at(name);
    else if (moe_model_arg_default(model.get(), index, a, &value) == 0) {
      if (arg->rank == 0 && arg->dtype == MOE_I64) {
        extras.seeds.push_back(name);
        continue;
      }
      throw moert::Error(MOE_STATUS_INVALID_ARGUMENT,
                         "'" + entry + "' takes input '" + name +
                             "', which moe-train cannot provide (it gives "
                             "tokens, targets, mask, 0-d i64 seeds and "
                             "inputs with defaults)");
    }
    if (arg->rank != 0)
      throw moert::Error(MOE_STATUS_INVALID_ARGUMENT,
                         "'" + entry + "' input '" + name +
                             "' has a default but is not 0-d");
    extras.scalars.push_back({name, value, arg->dtype});
  }
  return extras;
}

void Trainer::addExtras(const ExtraInputs &extras, moert::TensorList &inputs,
                        int64_t step) {
  for (const ExtraInputs::Scalar &scalar : extras.scalars)
    inputs.add(scalar.name, moert::Tensor::fromVector<double>({}, {scalar.value})
                                .cast(scalar.dtype));
  for (const std::string &name : extras.seeds)
    inputs.add(name, moert::Tensor::fromVector<int64_t>(
                         {}, {static_cast<int64_t>(
                                 mix(o.seed ^ mix(static_cast<uint64_t>(
                                                  step))) >> 1)}));
}

void Trainer::setUpShapes() {
  if (!model.hasEntry("train_step"))
    throw moert::Error(MOE_STATUS_INVALID_ARGUMENT,
                       "'" + o.model +
                           "' has no train_step entry point: compile it with "
                           "`moec --mode=train`");
  for (const moert::ArgInfo &arg : model.args("train_step")) {
    if (arg.name != "tokens")
      continue;
    if (arg.shape.size() != 2)
      throw moert::Error(MOE_STATUS_INVALID_ARGUMENT,
                         "train_step's 'tokens' must be [batch, seq]");
    if (arg.shape[0] == MOE_DYNAMIC)
      throw moert::Error(MOE_STATUS_INVALID_ARGUMENT,
                         "train_step's batch size must be static");
    batchSize = arg.shape[0];
    dynamicSeq = arg.shape[1] == MOE_DYNAMIC;
    seqLen = dynamicSeq ? o.seqLen : arg.shape[1];
  }
  if (!batchSize)
    throw moert::Error(MOE_STATUS_INVALID_ARGUMENT,
                       "train_step has no input 'tokens'");
  if (model.hasEntry("forward"))
    for (const moert::ArgInfo &arg : model.args("forward"))
      if (arg.name == "logits" && !arg.shape.empty())
        vocab = arg.shape.back();
  if (vocab > 0 && tokenizer.vocabSize() > vocab)
    throw moert::Error(MOE_STATUS_INVALID_ARGUMENT,
                       "the tokenizer has " +
                           std::to_string(tokenizer.vocabSize()) +
                           " ids but the model's vocabulary is " +
                           std::to_string(vocab));
}

std::vector<std::string> Trainer::frozenGlobs() {
  std::vector<std::string> globs;
  int32_t entry = moe_model_find_entry(model.get(), "train_step");
  for (const std::string &item : o.freeze) {
    bool isGroup = std::find(std::begin(kGroups), std::end(kGroups), item) !=
                   std::end(kGroups);
    bool matched = false;
    for (int32_t a = 0; a < moe_model_num_args(model.get(), entry); ++a) {
      const moe_arg_info *arg = moe_model_arg(model.get(), entry, a);
      if (arg->role != MOE_ROLE_PARAMETER)
        continue;
      bool hit = false;
      if (isGroup) {
        for (int32_t g = 0; g < moe_model_arg_num_groups(model.get(), entry, a);
             ++g)
          hit |= item == moe_model_arg_group(model.get(), entry, a, g);
      } else {
        hit = fnmatch(item.c_str(), arg->name, 0) == 0;
      }
      if (hit) {
        // Escape glob characters so the name matches only itself.
        std::string literal;
        for (char c : std::string(arg->name)) {
          if (c == '*' || c == '?' || c == '[' || c == '\\')
            literal += '\\';
          literal += c;
        }
        globs.push_back(literal);
        matched = true;
      }
    }
    if (!matched)
      throw UsageError("--freeze '" + item +
                       "' matches no parameter (groups: router, experts, "
                       "shared_experts, attention, norms, embeddings, head; "
                       "otherwise a glob over parameter names)");
  }
  return globs;
}

moert::Batcher Trainer::makeBatcher(const moert::Dataset &data,
                                    bool training) {
  moert::BatcherOptions options;
  options.batch_size = batchSize;
  options.seq_len = seqLen;
  options.mode = o.pack && training ? MOE_BATCH_PACK : MOE_BATCH_PAD;
  options.shuffle = training ? 1 : 0;
  options.seed = o.seed;
  options.epochs = training ? 0 : 1;
  options.trim = dynamicSeq ? 1 : 0;
  options.prompt_template = promptTemplate();
  return moert::Batcher(data, tokenizer, options);
}

std::vector<std::string>
Trainer::generate(const moert::Dataset &data,
                  const std::vector<int64_t> &records) {
  ExtraInputs extras = extraInputs("forward");
  int32_t eos = tokenizer.eosId();
  std::vector<std::string> outputs;
  for (size_t first = 0; first < records.size(); first += batchSize) {
    size_t rows = std::min<size_t>(batchSize, records.size() - first);
    std::vector<std::vector<int32_t>> ids(rows);
    std::vector<size_t> promptLength(rows);
    std::vector<bool> done(rows, false);
    for (size_t r = 0; r < rows; ++r) {
      ids[r] = tokenizer.encodePrompt(data, records[first + r],
                                      promptTemplate());
      promptLength[r] = ids[r].size();
      done[r] = ids[r].empty() || static_cast<int64_t>(ids[r].size()) >= seqLen;
    }
    // Rows are right-padded: attention is causal, so the logits at a row's
    // last real position ignore the padding after it.
    for (int64_t t = 0; t < o.maxNewTokens; ++t) {
      if (std::all_of(done.begin(), done.end(), [](bool d) { return d; }))
        break;
      int64_t length = seqLen;
      if (dynamicSeq) {
        length = 1;
        for (const auto &row : ids)
          length = std::max<int64_t>(length, row.size());
      }
      std::vector<int32_t> tokens(batchSize * length, eos);
      for (size_t r = 0; r < rows; ++r)
        std::copy(ids[r].begin(), ids[r].end(), tokens.begin() + r * length);
      moert::TensorList inputs;
      inputs.add("tokens",
                 moert::Tensor::fromVector<int32_t>({batchSize, length}, tokens));
      inputs.add("targets", moert::Tensor::fromVector<int32_t>(
                                {batchSize, length},
                                std::vector<int32_t>(tokens.size(), 0)));
      inputs.add("mask", moert::Tensor::fromVector<float>(
                             {batchSize, length},
                             std::vector<float>(tokens.size(), 0.0f)));
      addExtras(extras, inputs, 0);
      moert::Tensor logits =
          session.run("forward", inputs).at("logits").cast(MOE_F32);
      const float *data = logits.data<float>();
      int64_t vocabSize = logits.shape().back();
      for (size_t r = 0; r < rows; ++r) {
        if (done[r])
          continue;
        const float *row = data + (r * length + ids[r].size() - 1) * vocabSize;
        auto next = static_cast<int32_t>(
            std::max_element(row, row + vocabSize) - row);
        if (next == eos) {
          done[r] = true;
          continue;
        }
        ids[r].push_back(next);
        done[r] = static_cast<int64_t>(ids[r].size()) >= seqLen;
      }
    }
    for (size_t r = 0; r < rows; ++r)
      outputs.push_back(tokenizer.decode(std::vector<int32_t>(
          ids[r].begin() + promptLength[r], ids[r].end())));
  }
  return outputs;
}

void Trainer::evaluate(int64_t step) {
  if (!model.hasEntry("forward"))
    return;
  auto begin = std::chrono::steady_clock::now();
  for (const auto &[name, data] : evalSets)
    evaluateSet(step, name, data);
  evalSeconds += std::chrono::duration<double>(
                     std::chrono::steady_clock::now() - begin)
                     .count();
}

void Trainer::evaluateSet(int64_t step, const std::string &name,
                          const moert::Dataset &evalData) {
  ExtraInputs extras = extraInputs("forward");
  // Loss over the whole held-out set, weighted by target tokens.
  moert::Batcher batcher = makeBatcher(evalData, /*training=*/false);
  double lossSum = 0, tokenSum = 0;
  while (std::optional<moert::TensorList> batch = batcher.next()) {
    addExtras(extras, *batch, 0);
    moert::TensorList out = session.run("forward", *batch);
    moert::Tensor mask = batch->at("mask");
    double tokens = 0;
    for (float m : mask.toVector<float>())
      tokens += m;
    lossSum += scalarOf(out.at("loss")) * tokens;
    tokenSum += tokens;
  }
  double loss = tokenSum > 0 ? lossSum / tokenSum : NAN;

  // Exact match on records spread evenly over the file.
  int64_t total = evalData.size();
  int64_t count = std::min(o.evalExamples, total);
  std::vector<int64_t> records;
  for (int64_t i = 0; i < count; ++i)
    records.push_back(i * total / count);
  std::vector<std::string> outputs = generate(evalData, records);
  std::map<std::string, std::pair<int64_t, int64_t>> byTask;
  int64_t correct = 0;
  std::string samples = "[";
  for (size_t i = 0; i < records.size(); ++i) {
    bool hit = outputs[i] == evalData.output(records[i]);
    correct += hit;
    auto &[taskHits, taskTotal] = byTask[evalData.task(records[i])];
    taskHits += hit;
    ++taskTotal;
    if (i < 4)
      samples += std::string(i ? "," : "") + "{\"prompt\":" +
                 jsonString(moert::renderPrompt(
                     promptTemplate(), evalData.instruction(records[i]),
                     evalData.input(records[i]))) +
                 ",\"reference\":" + jsonString(evalData.output(records[i])) +
                 ",\"generated\":" + jsonString(outputs[i]) + "}";
  }
  samples += "]";
  double accuracy = count ? static_cast<double>(correct) / count : NAN;
  std::string tasks = "{";
  for (const auto &[task, counts] : byTask)
    tasks += std::string(tasks.size() > 1 ? "," : "") + jsonString(task) +
             ":" + jsonNumber(static_cast<double>(counts.first) /
                              counts.second);
  tasks += "}";
  if (progress)
    progress->interrupt();
  std::fprintf(stderr,
               "eval %s @ step %" PRId64 ": loss %.4f, exact match %" PRId64
               "/%" PRId64 " (%.1f%%)\n",
               name.c_str(), step, loss, correct, count, 100 * accuracy);
  writeLog("{\"eval\":true,\"step\":" + std::to_string(step) +
           ",\"eval_set\":" + jsonString(name) +
           ",\"eval_loss\":" + jsonNumber(loss) +
           ",\"exact_match\":" + jsonNumber(accuracy) +
           ",\"examples\":" + std::to_string(count) +
           ",\"exact_match_by_task\":" + tasks + ",\"samples\":" + samples +
           "}");
}

int Trainer::run() {
  model = moert::Model::load(o.model);
  session = moert::Session(model,
                           o.device.empty() ? moert::Device{model.device(), 0}
                                            : moert::Device::parse(o.device),
                           o.threads);
  trainData = moert::Dataset::readJsonl(o.data);
  for (const std::string &path : o.evals) {
    // Reported by file name without directory and extension.
    std::string name = path.substr(path.find_last_of('/') + 1);
    name = name.substr(0, name.find('.'));
    evalSets.emplace_back(name, moert::Dataset::readJsonl(path));
  }
  if (!o.trainTokenizer.empty()) {
    moert::Tokenizer::trainSentencePiece(trainData, o.trainTokenizer,
                                         "unigram", o.vocabSize,
                                         /*byteFallback=*/false,
                                         promptTemplate());
    tokenizer = moert::Tokenizer::loadSentencePiece(o.trainTokenizer);
  } else if (o.tokenizer == "byte") {
    tokenizer = moert::Tokenizer::bytes();
  } else {
    tokenizer = moert::Tokenizer::loadSentencePiece(o.tokenizer);
  }
  setUpShapes();

  moert::AdamWConfig config;
  config.schedule.decay = o.schedule;
  config.schedule.lr = o.lr;
  config.schedule.minLr = o.minLr;
  config.schedule.warmupSteps = o.warmup;
  config.schedule.totalSteps = o.steps;
  config.beta1 = o.beta1;
  config.beta2 = o.beta2;
  config.weightDecay = o.weightDecay;
  config.maxGradNorm = o.clip;
  config.frozen = frozenGlobs();
  optimizer = std::make_unique<moert::Optimizer>(session, config);

  moert::Batcher batcher = makeBatcher(trainData, /*training=*/true);
  if (!o.resume.empty()) {
    moert::Metadata metadata = optimizer->loadCheckpoint(o.resume);
    auto state = metadata.find("moe-train.batcher");
    if (state == metadata.end())
      throw moert::Error(MOE_STATUS_INVALID_FILE,
                         "'" + o.resume +
                             "' holds no moe-train data position "
                             "(moe-train.batcher): it was not written by "
                             "moe-train");
    batcher.setState(state->second);
  } else if (!o.params.empty()) {
    session.loadParameters(o.params);
  } else {
    session.initParameters(o.seed);
  }
  if (!o.log.empty()) {
    log.open(o.log, std::ios::app);
    if (!log)
      throw moert::Error(MOE_STATUS_IO_ERROR,
                         "cannot open the log '" + o.log + "' for appending");
  }

  ExtraInputs extras = extraInputs("train_step");
  int64_t start = optimizer->stepCount();
  Progress bar(o.steps, o.quiet);
  progress = &bar;
  auto begin = std::chrono::steady_clock::now();
  double tokensSeen = 0;
  auto saveCheckpoint = [&] {
    if (o.checkpoint.empty())
      return;
    optimizer->saveCheckpoint(
        o.checkpoint, {{"moe-train.batcher", batcher.state()},
                       {"moe-train.seed", std::to_string(o.seed)},
                       {"moe-train.data", o.data}});
  };

  int64_t last = o.stopAfter ? std::min(o.stopAfter, o.steps) : o.steps;
  for (int64_t step = start + 1; step <= last; ++step) {
    std::map<std::string, double> sums;
    std::map<std::string, moert::Tensor> lastMetrics;
    double tokens = 0, targetTokens = 0;
    moe_step_report report{};
    for (int64_t micro = 0; micro < o.accumulate; ++micro) {
      std::optional<moert::TensorList> batch = batcher.next();
      addExtras(extras, *batch, step * o.accumulate + micro);
      moert::TensorList out = session.run("train_step", *batch);
      moert::Tensor loss = out.at("loss");
      try {
        moert::checkFinite(loss, "loss", step);
      } catch (const moert::Error &error) {
        bar.interrupt();
        throw moert::Error(MOE_STATUS_NON_FINITE,
                           std::string(error.what()) +
                               ": training stopped before applying it");
      }
      for (int32_t i = 0; i < out.size(); ++i) {
        std::string name = out.name(i);
        if (name.rfind("grad.", 0) == 0)
          continue;
        moert::Tensor value = out.at(i);
        if (value.rank() == 0)
          sums[name] += scalarOf(value);
        else
          lastMetrics.insert_or_assign(name, value);
      }
      moert::Tensor shape = batch->at("tokens");
      tokens += static_cast<double>(shape.numElements());
      for (float m : batch->at("mask").toVector<float>())
        targetTokens += m;
      if (o.accumulate == 1)
        report = optimizer->step(out);
      else
        optimizer->accumulate(out);
    }
    if (o.accumulate > 1)
      report = optimizer->stepAccumulated(o.accumulate);
    tokensSeen += tokens;
    double elapsed = std::chrono::duration<double>(
                         std::chrono::steady_clock::now() - begin)
                         .count();
    double tokensPerSecond = tokensSeen / (elapsed - evalSeconds);
    double eta = elapsed / (step - start) * (o.steps - step);

    std::string line = "{\"step\":" + std::to_string(step);
    for (const auto &[name, sum] : sums)
      line += ",\"" + name + "\":" + jsonNumber(sum / o.accumulate);
    for (const auto &[name, value] : lastMetrics)
      line += ",\"" + name + "\":" + jsonTensor(value);
    line += ",\"lr\":" + jsonNumber(report.lr) +
            ",\"grad_norm\":" + jsonNumber(report.grad_norm) +
            ",\"tokens\":" + jsonNumber(tokens) +
            ",\"target_tokens\":" + jsonNumber(targetTokens) +
            ",\"tokens_per_s\":" + jsonNumber(tokensPerSecond) +
            ",\"elapsed_s\":" + jsonNumber(elapsed) + "}";
    writeLog(line);

    char status[160];
    double aux = sums.count("aux_loss") ? sums["aux_loss"] / o.accumulate : NAN;
    std::snprintf(status, sizeof status,
                  "loss %.4f aux %.3f lr %.2e %.0f tok/s",
                  sums["loss"] / o.accumulate, aux, report.lr,
                  tokensPerSecond);
    bar.update(step, status, eta);

    if (!o.checkpoint.empty() && step % o.checkpointEvery == 0)
      saveCheckpoint();
    if (o.evalEvery && step % o.evalEvery == 0 && step != o.steps)
      evaluate(step);
  }
  if (start < last)
    saveCheckpoint();
  if (last < o.steps) {
    std::fprintf(stderr, "stopped after step %" PRId64 " of %" PRId64 "%s\n",
                 last, o.steps,
                 o.checkpoint.empty() ? "" : "; --resume continues");
    return 0;
  }
  evaluate(o.steps);
  if (!o.save.empty())
    session.saveParameters(o.save);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options options;
  try {
    options = parseOptions(argc, argv);
  } catch (const UsageError &error) {
    std::fprintf(stderr, "moe-train: %s\n(moe-train --help for usage)\n",
                 error.what());
    return 2;
  }
  if (options.help) {
    std::fputs(usageText, stdout);
    return 0;
  }
  try {
    return Trainer(options).run();
  } catch (const UsageError &error) {
    std::fprintf(stderr, "moe-train: %s\n", error.what());
    return 2;
  } catch (const std::exception &error) {
    std::fprintf(stderr, "moe-train: %s\n", error.what());
    return 1;
  }
}
