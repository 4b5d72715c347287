//===- moe-run.cpp - Run a compiled model from the command line -----------===//
//
// Loads model.so, gives it parameters (random from a seed, or a safetensors
// file) and inputs (.npy files, or generated from the seed), runs one entry
// point on the CPU or a CUDA device (optionally repeated and timed), writes
// the results as .npy and prints a summary with the MoE routing metrics
// spelled out.
//
//===----------------------------------------------------------------------===//

#include "moe/runtime/moert.hpp"
#include "tools/common/CommandLine.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

using moetools::parseInteger;
using moetools::splitAssignment;
using moetools::UsageError;

const char usageText[] = R"(usage: moe-run MODEL.so [options]

Runs one entry point of a model compiled by moec and summarises its results.

options:
  --entry NAME           entry point to run (default: 'forward', or the only
                         entry point)
  --params FILE          load parameters from a safetensors file (default:
                         random parameters from --seed)
  --save-params FILE     save the parameters used as a safetensors file
  --input NAME=FILE      read input NAME from a .npy file (repeatable); inputs
                         not given are generated from --seed
  --dim NAME=N           extent of the dynamic dimension NAME in generated
                         inputs (repeatable; default 16)
  --output-dir DIR       write each result as DIR/NAME.npy
  --seed S               seed for parameters and generated inputs (default 0)
  --threads N            worker threads (default: one per CPU)
  --device D             cpu, cuda or cuda:N (default: the device the model
                         was compiled for; cuda means cuda:0)
  --repeat N             run N times and report invoke times (default 1)
  --warmup W             untimed runs before those (default 0)
  --timing-json FILE     write the timings as JSON (atomically)
  --describe             print the model's entry points and arguments, and exit
  -h, --help             print this help

Exit status: 0 on success, 1 when loading or running fails, 2 for bad usage.
)";

constexpr int64_t defaultDim = 16;
constexpr int64_t defaultTokenBound = 256;

struct Options {
  std::string model, entry, params, saveParams, outputDir, device, timingJson;
  int64_t repeat = 1, warmup = 0;
  std::vector<std::pair<std::string, std::string>> inputs;
  std::map<std::string, int64_t> dims;
  uint64_t seed = 0;
  int32_t threads = 0;
  bool describe = false, help = false;
};

Options parseOptions(int argc, char **argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      options.help = true;
      continue;
    }
    if (arg == "--describe") {
      options.describe = true;
      continue;
    }
    if (arg.rfind("-", 0) != 0) {
      if (!options.model.empty())
        throw UsageError("unexpected argument '" + arg + "' (the model is '" +
                         options.model + "')");
      options.model = arg;
      continue;
    }
    // "--flag value" or "--flag=value".
    std::string flag = arg, value;
    size_t equals = arg.find('=');
    static const std::set<std::string> valued = {
        "--entry",  "--params",     "--save-params", "--input",
        "--dim",    "--output-dir", "--seed",        "--threads",
        "--device", "--repeat",     "--warmup",      "--timing-json"};
    if (equals != std::string::npos) {
      flag = arg.substr(0, equals);
      value = arg.substr(equals + 1);
    }
    if (!valued.count(flag))
      throw UsageError("unknown option '" + arg + "'");
    if (equals == std::string::npos) {
      if (i + 1 >= argc)
        throw UsageError(flag + " needs a value");
      value = argv[++i];
    }
    if (value.empty())
      throw UsageError(flag + " needs a non-empty value");
    if (flag == "--entry")
      options.entry = value;
    else if (flag == "--params")
      options.params = value;
    else if (flag == "--save-params")
      options.saveParams = value;
    else if (flag == "--output-dir")
      options.outputDir = value;
    else if (flag == "--input")
      options.inputs.push_back(splitAssignment(value, flag));
    else if (flag == "--seed")
      options.seed = parseInteger<uint64_t>(value, flag, 0, UINT64_MAX);
    else if (flag == "--threads")
      options.threads = parseInteger<int32_t>(value, flag, 1, 4096);
    else if (flag == "--device") {
      try {
        moert::Device::parse(value);
      } catch (const moert::Error &e) {
        throw UsageError("--device: " + std::string(e.what()));
      }
      options.device = value;
    } else if (flag == "--repeat")
      options.repeat = parseInteger<int64_t>(value, flag, 1, 1000000);
    else if (flag == "--warmup")
      options.warmup = parseInteger<int64_t>(value, flag, 0, 1000000);
    else if (flag == "--timing-json")
      options.timingJson = value;
    else {
      auto [name, extent] = splitAssignment(value, flag);
      options.dims[name] =
          parseInteger<int64_t>(extent, "--dim " + name, 0, INT64_MAX);
    }
  }
  if (options.model.empty() && !options.help)
    throw UsageError("no model given");
  return options;
}

std::string lowercase(std::string text) {
  for (char &c : text)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

bool contains(const std::string &text, const char *part) {
  return text.find(part) != std::string::npos;
}

std::string formatShape(const std::vector<int64_t> &shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

std::string formatNumber(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.6g", value);
  return buffer;
}

std::string formatList(const std::vector<double> &values) {
  constexpr size_t shown = 64;
  std::string text = "[";
  for (size_t i = 0; i < values.size() && i < shown; ++i)
    text += (i ? ", " : "") + formatNumber(values[i]);
  if (values.size() > shown)
    text += ", ... (" + std::to_string(values.size()) + " values)";
  return text + "]";
}

std::vector<double> valuesOf(const moert::Tensor &tensor) {
  return tensor.cast(MOE_F64).toVector<double>();
}

bool isIntegral(moe_dtype dtype) {
  return dtype == MOE_I8 || dtype == MOE_I32 || dtype == MOE_I64 ||
         dtype == MOE_U8 || dtype == MOE_BOOL;
}

/// Small integer vectors (expert counts) read better as values than as
/// statistics.
std::string summarise(const moert::Tensor &tensor) {
  std::vector<double> values = valuesOf(tensor);
  if (values.size() == 1)
    return "value " + formatNumber(values[0]);
  if (tensor.rank() <= 1 && isIntegral(tensor.dtype()) && values.size() <= 32)
    return formatList(values);
  if (values.empty())
    return "empty";
  double min = INFINITY, max = -INFINITY, sum = 0, squares = 0;
  size_t finite = 0;
  for (double value : values) {
    if (!std::isfinite(value))
      continue;
    ++finite;
    min = std::min(min, value);
    max = std::max(max, value);
    sum += value;
  }
  double mean = finite ? sum / finite : NAN;
  for (double value : values)
    if (std::isfinite(value))
      squares += (value - mean) * (value - mean);
  std::string text = "min " + formatNumber(min) + "  max " + formatNumber(max) +
                     "  mean " + formatNumber(mean) + "  std " +
                     formatNumber(finite ? std::sqrt(squares / finite) : NAN);
  if (finite < values.size())
    text += "  non-finite " + std::to_string(values.size() - finite);
  return text;
}

/// A readable line for the routing metrics of MoE layers, or "".
std::string describeMetric(const std::string &name,
                           const moert::Tensor &tensor) {
  std::string key = lowercase(name);
  std::vector<double> values = valuesOf(tensor);
  double sum = 0;
  for (double value : values)
    sum += value;
  if (contains(key, "tokens_per_expert"))
    return "tokens per expert (" + name + "): " + formatList(values);
  if (contains(key, "load"))
    return "expert load (" + name + "): " + formatList(values);
  if (contains(key, "dropped"))
    return "dropped tokens (" + name + "): " + formatNumber(sum);
  if (contains(key, "z_loss"))
    return "router z-loss (" + name + "): " +
           (values.size() == 1 ? formatNumber(sum) : formatList(values));
  if (contains(key, "aux"))
    return "load-balancing aux loss (" + name + "): " +
           (values.size() == 1 ? formatNumber(sum) : formatList(values));
  return "";
}

std::string chooseEntry(const moert::Model &model, const std::string &wanted) {
  std::vector<std::string> names = model.entryNames();
  std::string list;
  for (const std::string &name : names)
    list += (list.empty() ? "'" : ", '") + name + "'";
  if (!wanted.empty()) {
    if (!model.hasEntry(wanted))
      throw UsageError("model has no entry point '" + wanted + "'; it has " +
                       list);
    return wanted;
  }
  if (model.hasEntry("forward"))
    return "forward";
  if (names.size() == 1)
    return names[0];
  throw UsageError("model has no 'forward' entry point; choose one of " + list +
                   " with --entry");
}

/// Integer inputs are token ids: below the vocabulary size when an embedding
/// table (a rank-2 parameter whose name contains "embed") reveals it.
int64_t tokenBound(const std::vector<moert::ArgInfo> &args) {
  int64_t bound = defaultTokenBound;
  bool found = false;
  for (const moert::ArgInfo &arg : args)
    if (arg.role == MOE_ROLE_PARAMETER && arg.shape.size() == 2 &&
        contains(lowercase(arg.name), "embed") && arg.shape[0] > 0) {
      bound = found ? std::min(bound, arg.shape[0]) : arg.shape[0];
      found = true;
    }
  return bound;
}

/// Reads --input files, generates the other inputs, and describes each.
moert::TensorList makeInputs(const Options &options,
                             const std::vector<moert::ArgInfo> &args,
                             const std::string &entry,
                             std::vector<std::string> &notes) {
  std::map<std::string, int64_t> dims;
  std::set<std::string> symbols;
  std::map<std::string, moert::Tensor> given;
  for (const moert::ArgInfo &arg : args)
    for (const std::string &symbol : arg.dimNames)
      if (!symbol.empty())
        symbols.insert(symbol);
  for (const auto &[name, extent] : options.dims) {
    if (!symbols.count(name)) {
      std::string list;
      for (const std::string &symbol : symbols)
        list += (list.empty() ? "'" : ", '") + symbol + "'";
      throw UsageError("--dim " + name + ": entry point '" + entry +
                       "' has no dimension '" + name + "' (it has " +
                       (list.empty() ? "none" : list) + ")");
    }
    dims[name] = extent;
  }
  for (const auto &[name, path] : options.inputs) {
    auto arg =
        std::find_if(args.begin(), args.end(),
                     [&](const moert::ArgInfo &a) { return a.name == name; });
    if (arg == args.end() || arg->role != MOE_ROLE_INPUT)
      throw UsageError("--input " + name + ": entry point '" + entry +
                       "' has no input '" + name + "'");
    if (given.count(name))
      throw UsageError("--input " + name + " is given twice");
    moert::Tensor tensor = moert::readNpy(path);
    if (tensor.dtype() != arg->dtype) {
      try {
        tensor = tensor.cast(arg->dtype);
      } catch (const moert::Error &e) {
        throw moert::Error(e.code(), "input '" + name + "' from '" + path +
                                         "': " + e.what());
      }
    }
    // Generated inputs follow the extents that the files fix.
    for (size_t d = 0; d < arg->shape.size() && d < size_t(tensor.rank()); ++d)
      if (!arg->dimNames[d].empty())
        dims.emplace(arg->dimNames[d], tensor.shape()[d]);
    notes.push_back("from " + path);
    given.emplace(name, tensor);
  }

  moert::TensorList inputs;
  int64_t bound = tokenBound(args);
  for (size_t i = 0; i < args.size(); ++i) {
    const moert::ArgInfo &arg = args[i];
    if (arg.role != MOE_ROLE_INPUT)
      continue;
    if (auto it = given.find(arg.name); it != given.end()) {
      inputs.add(arg.name, it->second);
      continue;
    }
    std::vector<int64_t> shape = arg.shape;
    for (size_t d = 0; d < shape.size(); ++d)
      if (shape[d] == MOE_DYNAMIC)
        shape[d] =
            arg.dimNames[d].empty()
                ? defaultDim
                : dims.emplace(arg.dimNames[d], defaultDim).first->second;
    moert::Tensor tensor = moert::Tensor::zeros(arg.dtype, shape);
    uint64_t seed = options.seed + 0x9e3779b97f4a7c15ull * (i + 1);
    if (arg.dtype == MOE_BOOL) {
      tensor.fillUniformInt(seed, 0, 2);
      notes.push_back("generated uniform {0, 1}");
    } else if (isIntegral(arg.dtype)) {
      int64_t high =
          arg.dtype == MOE_I8 ? std::min<int64_t>(bound, 128) : bound;
      tensor.fillUniformInt(seed, 0, high);
      notes.push_back("generated uniform [0, " + std::to_string(high) + ")");
    } else {
      tensor.fillNormal(seed, 0, 1);
      notes.push_back("generated normal(0, 1)");
    }
    inputs.add(arg.name, tensor);
  }
  return inputs;
}

/// Output files are named after results; keep the names portable.
std::string fileName(const std::string &name) {
  std::string file;
  for (char c : name)
    file += std::isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                    c == '_' || c == '-'
                ? c
                : '_';
  return file + ".npy";
}

void makeDirectories(const std::string &path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    std::string prefix = path.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0777) != 0 && errno != EEXIST)
      throw moert::Error(MOE_STATUS_IO_ERROR,
                         "cannot create output directory '" + prefix +
                             "': " + std::strerror(errno));
    if (slash == std::string::npos)
      return;
  }
}

/// The timings of the timed runs.
struct Timings {
  std::vector<double> invoke, upload, download;

  static double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    size_t n = values.size();
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  }
  static double mean(const std::vector<double> &values) {
    return std::accumulate(values.begin(), values.end(), 0.0) /
           double(values.size());
  }
};

std::string jsonString(const std::string &text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string jsonNumber(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.6f", value);
  return buffer;
}

/// Writes `text` to `path` through a temporary file in the same directory
/// and a rename, so that readers see the old file or the whole new one.
void writeAtomically(const std::string &path, const std::string &text) {
  size_t slash = path.rfind('/');
  std::string temporary =
      (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) +
      ".moe-run-XXXXXX";
  int fd = ::mkstemp(temporary.data());
  if (fd < 0)
    throw moert::Error(MOE_STATUS_IO_ERROR, "cannot create a temporary file "
                                            "next to '" +
                                                path +
                                                "': " + std::strerror(errno));
  bool written =
      ::write(fd, text.data(), text.size()) == ssize_t(text.size()) &&
      ::fsync(fd) == 0;
  int error = errno;
  written = ::close(fd) == 0 && written;
  if (!written || ::rename(temporary.c_str(), path.c_str()) != 0) {
    error = written ? errno : error;
    ::unlink(temporary.c_str());
    throw moert::Error(MOE_STATUS_IO_ERROR,
                       "cannot write '" + path + "': " + std::strerror(error));
  }
}

void writeTimingJson(const std::string &path, const std::string &device,
                     const std::string &entry, const Timings &timings) {
  std::string text =
      "{\"device\": " + jsonString(device) +
      ", \"entry\": " + jsonString(entry) +
      ", \"runs\": " + std::to_string(timings.invoke.size()) +
      ", \"invoke_ms\": {\"min\": " +
      jsonNumber(
          *std::min_element(timings.invoke.begin(), timings.invoke.end())) +
      ", \"median\": " + jsonNumber(Timings::median(timings.invoke)) +
      ", \"mean\": " + jsonNumber(Timings::mean(timings.invoke)) +
      "}, \"upload_ms\": " + jsonNumber(Timings::median(timings.upload)) +
      ", \"download_ms\": " + jsonNumber(Timings::median(timings.download)) +
      "}\n";
  writeAtomically(path, text);
}

void printTable(const std::vector<std::vector<std::string>> &rows) {
  std::vector<size_t> widths;
  for (const auto &row : rows)
    for (size_t c = 0; c < row.size(); ++c) {
      widths.resize(std::max(widths.size(), row.size()));
      widths[c] = std::max(widths[c], row[c].size());
    }
  for (const auto &row : rows) {
    std::string line = " ";
    for (size_t c = 0; c < row.size(); ++c)
      line += " " + row[c] +
              (c + 1 < row.size() ? std::string(widths[c] - row[c].size(), ' ')
                                  : "");
    std::printf("%s\n", line.c_str());
  }
}

int run(const Options &options) {
  moert::Model model = moert::Model::load(options.model);
  if (options.describe) {
    std::printf("%s", model.description().c_str());
    return 0;
  }
  std::string entry = chooseEntry(model, options.entry);
  std::vector<moert::ArgInfo> args = model.args(entry);
  moert::Device device = options.device.empty()
                             ? moert::Device{model.device(), 0}
                             : moert::Device::parse(options.device);
  moert::Session session(model, device, options.threads);
  if (!options.params.empty())
    session.loadParameters(options.params);
  else
    session.initParameters(options.seed);
  if (!options.saveParams.empty())
    session.saveParameters(options.saveParams);
  std::vector<std::string> notes;
  moert::TensorList inputs = makeInputs(options, args, entry, notes);
  for (int64_t i = 0; i < options.warmup; ++i)
    session.run(entry, inputs);
  // Untimed runs wait for a CUDA stream once; timed ones after each phase.
  bool timed =
      options.repeat > 1 || options.warmup > 0 || !options.timingJson.empty();
  Timings timings;
  moert::TensorList outputs{nullptr};
  for (int64_t i = 0; i < options.repeat; ++i) {
    if (!timed) {
      outputs = session.run(entry, inputs);
      continue;
    }
    moe_run_timing timing{};
    outputs = session.run(entry, inputs, timing);
    timings.invoke.push_back(timing.invoke_ms);
    timings.upload.push_back(timing.upload_ms);
    timings.download.push_back(timing.download_ms);
  }

  std::printf(
      "model %s (%s, %s)\n", options.model.c_str(),
      model.producer().empty() ? "unknown producer" : model.producer().c_str(),
      model.target().empty() ? "unknown target" : model.target().c_str());
  std::printf(
      "entry point %s on %s, %d threads, parameters %s\n", entry.c_str(),
      session.deviceDescription().c_str(), session.numThreads(),
      options.params.empty()
          ? ("random (seed " + std::to_string(options.seed) + ")").c_str()
          : ("from " + options.params).c_str());
  std::vector<std::vector<std::string>> rows;
  for (int32_t i = 0; i < inputs.size(); ++i) {
    moert::Tensor tensor = inputs.at(i);
    rows.push_back({"input", inputs.name(i), moe_dtype_name(tensor.dtype()),
                    formatShape(tensor.shape()), notes[i]});
  }
  if (!options.outputDir.empty())
    makeDirectories(options.outputDir);
  std::vector<std::string> metricLines;
  for (int32_t i = 0; i < outputs.size(); ++i) {
    std::string name = outputs.name(i);
    moert::Tensor tensor = outputs.at(i);
    auto arg =
        std::find_if(args.begin(), args.end(),
                     [&](const moert::ArgInfo &a) { return a.name == name; });
    std::string summary = summarise(tensor);
    if (!options.outputDir.empty()) {
      std::string path = options.outputDir + "/" + fileName(name);
      // npy has no bfloat16; f32 holds every bf16 value exactly.
      moert::writeNpy(path, tensor.dtype() == MOE_BF16 ? tensor.cast(MOE_F32)
                                                       : tensor);
      summary += "  -> " + path;
    }
    rows.push_back({moe_role_name(arg->role), name,
                    moe_dtype_name(tensor.dtype()), formatShape(tensor.shape()),
                    summary});
    if (arg->role == MOE_ROLE_METRIC) {
      std::string line = describeMetric(name, tensor);
      if (!line.empty())
        metricLines.push_back(line);
    }
  }
  printTable(rows);
  if (!metricLines.empty()) {
    std::printf("routing:\n");
    for (const std::string &line : metricLines)
      std::printf("  %s\n", line.c_str());
  }
  if (timed) {
    std::printf("timing over %zu runs (%lld warmup): invoke min %.3f ms  "
                "median %.3f ms  mean %.3f ms",
                timings.invoke.size(), static_cast<long long>(options.warmup),
                *std::min_element(timings.invoke.begin(), timings.invoke.end()),
                Timings::median(timings.invoke), Timings::mean(timings.invoke));
    if (device.kind == MOE_DEVICE_CUDA)
      std::printf("; upload median %.3f ms  download median %.3f ms",
                  Timings::median(timings.upload),
                  Timings::median(timings.download));
    std::printf("\n");
    if (!options.timingJson.empty())
      writeTimingJson(options.timingJson, device.name(), entry, timings);
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  try {
    Options options = parseOptions(argc, argv);
    if (options.help) {
      std::printf("%s", usageText);
      return 0;
    }
    return run(options);
  } catch (const UsageError &e) {
    std::fprintf(stderr, "moe-run: %s\n(run 'moe-run --help' for usage)\n",
                 e.what());
    return 2;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "moe-run: error: %s\n", e.what());
    return 1;
  }
}
