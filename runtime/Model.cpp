//===- Model.cpp - Loading and validating model.so ------------------------===//

#include "Model.h"

#include "DType.h"
#include "Error.h"
#include "File.h"
#include "Json.h"
#include "Tensor.h"

#include <algorithm>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <map>
#include <unistd.h>

using namespace moert::detail;

namespace moert::detail {

bool ArgDesc::produced() const {
  return role == MOE_ROLE_OUTPUT || role == MOE_ROLE_METRIC ||
         role == MOE_ROLE_GRADIENT;
}

bool ArgDesc::sessionState() const {
  return role == MOE_ROLE_PARAMETER || role == MOE_ROLE_OPTIMIZER_STATE;
}

std::string ArgDesc::shapeString() const {
  std::vector<std::string> dims;
  for (size_t i = 0; i < shape.size(); ++i)
    dims.push_back(shape[i] == MOE_DYNAMIC ? "?" + dimNames[i]
                                           : std::to_string(shape[i]));
  return fmt::format("[{}]", fmt::join(dims, ", "));
}

std::string ArgDesc::signature() const {
  return fmt::format("{} {}", moe_dtype_name(dtype), shapeString());
}

const ArgDesc *EntryDesc::findArg(std::string_view wanted) const {
  for (const ArgDesc &arg : args)
    if (arg.name == wanted)
      return &arg;
  return nullptr;
}

} // namespace moert::detail

const EntryDesc *moe_model::findEntry(std::string_view name) const {
  for (const EntryDesc &entry : entries)
    if (entry.name == name)
      return &entry;
  return nullptr;
}

moe_model::~moe_model() {
  if (library)
    dlclose(library);
}

namespace {

// Generous bounds that only garbage tables exceed; they keep a corrupt count
// from walking far past the tables.
constexpr int32_t maxEntries = 4096;
constexpr int32_t maxArgs = 1 << 16;

#if defined(__x86_64__)
constexpr int hostMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr int hostMachine = EM_AARCH64;
#else
constexpr int hostMachine = -1; // Unknown host: the machine is not checked.
#endif
static_assert(sizeof(void *) == 8, "moert expects a 64-bit host");

bool rangeInFile(uint64_t offset, uint64_t size, uint64_t fileSize) {
  return offset <= fileSize && size <= fileSize - offset;
}

/// dlopen() maps a library's segments without checking that the file holds
/// them; touching a page past the end of a truncated file raises SIGBUS. So
/// check the ELF headers first: every segment and the section table must lie
/// inside the file.
void checkElfFile(const std::string &path) {
  uint64_t size;
  FileDescriptor fd = openRegularFile(path, "model file", &size);
  Elf64_Ehdr header{};
  ssize_t got = pread(fd.get(), &header, sizeof(header), 0);
  if (got < 0)
    fail(MOE_STATUS_IO_ERROR, "cannot read model file '{}': {}", path,
         errnoMessage(errno));
  if (got < SELFMAG || std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0)
    fail(MOE_STATUS_INVALID_FILE,
         "model file '{}' is not a shared library (not an ELF file)", path);
  if (static_cast<size_t>(got) < sizeof(header))
    fail(MOE_STATUS_INVALID_FILE,
         "model file '{}' is truncated: {} bytes, shorter than an ELF header",
         path, size);
  if (header.e_ident[EI_CLASS] != ELFCLASS64 ||
      header.e_ident[EI_DATA] != ELFDATA2LSB)
    fail(MOE_STATUS_INVALID_FILE,
         "model file '{}' is not a 64-bit little-endian ELF file", path);
  if (header.e_type != ET_DYN)
    fail(MOE_STATUS_INVALID_FILE,
         "model file '{}' is an ELF file but not a shared library (type {})",
         path, header.e_type);
  if (hostMachine >= 0 && header.e_machine != hostMachine)
    fail(MOE_STATUS_INVALID_FILE,
         "model file '{}' is built for ELF machine {}, this host is {}", path,
         header.e_machine, hostMachine);
  if (header.e_phentsize != sizeof(Elf64_Phdr) ||
      !rangeInFile(header.e_phoff,
                   uint64_t(header.e_phnum) * sizeof(Elf64_Phdr), size))
    fail(MOE_STATUS_INVALID_FILE,
         "model file '{}' is truncated or corrupt: its program headers lie "
         "outside the file ({} bytes)",
         path, size);
  if (header.e_shoff != 0 &&
      !rangeInFile(header.e_shoff,
                   uint64_t(header.e_shnum) * header.e_shentsize, size))
    fail(MOE_STATUS_INVALID_FILE,
         "model file '{}' is truncated: its section headers end at byte {} "
         "but the file has {} bytes",
         path, header.e_shoff + uint64_t(header.e_shnum) * header.e_shentsize,
         size);
  for (int i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr segment;
    if (pread(fd.get(), &segment, sizeof(segment),
              header.e_phoff + i * sizeof(segment)) != sizeof(segment))
      fail(MOE_STATUS_IO_ERROR, "cannot read model file '{}'", path);
    if ((segment.p_type == PT_LOAD || segment.p_type == PT_DYNAMIC) &&
        !rangeInFile(segment.p_offset, segment.p_filesz, size))
      fail(MOE_STATUS_INVALID_FILE,
           "model file '{}' is truncated: segment {} ends at byte {} but the "
           "file has {} bytes",
           path, i, segment.p_offset + segment.p_filesz, size);
  }
}

/// Validates the ABI tables and copies them into `model`.
class TableReader {
public:
  TableReader(moe_model &model) : model(model) {}

  void read(const moe_abi_model &abi) {
    if (abi.abi_version != MOE_ABI_VERSION)
      fail(MOE_STATUS_INCOMPATIBLE_MODEL,
           "model '{}' was built for model ABI version {}, but this runtime "
           "implements version {}: recompile it with a matching moec",
           model.path, abi.abi_version, MOE_ABI_VERSION);
    // The version matches, so the layout must too: anything else is a
    // broken producer.
    if (abi.struct_size != sizeof(moe_abi_model))
      invalid(fmt::format("its moe_abi_model is {} bytes, expected {}",
                          abi.struct_size, sizeof(moe_abi_model)));
    model.producer = abi.producer ? abi.producer : "";
    model.target = abi.target ? abi.target : "";
    model.signatureJson = abi.signature_json ? abi.signature_json : "";
    if (abi.num_entries <= 0 || abi.num_entries > maxEntries || !abi.entries)
      invalid(fmt::format("it declares {} entry points (expected 1 to {})",
                          abi.num_entries, maxEntries));
    readDeviceCode(abi);
    for (int32_t e = 0; e < abi.num_entries; ++e)
      readEntry(abi.entries[e], e);
    checkSharedState();
    if (!model.signatureJson.empty())
      readSignatureExtras();
  }

private:
  /// CUDA models carry PTX (and maybe a cubin) and name their kernels; CPU
  /// models carry no device code.
  void readDeviceCode(const moe_abi_model &abi) {
    if (abi.device == MOE_ABI_DEVICE_HOST) {
      if (abi.device_blob || abi.device_blob_size || abi.num_kernels ||
          abi.kernel_names || abi.device_ptx || abi.device_arch)
        invalid("it runs on the host (device 0) but carries device code "
                "(a device blob, PTX, an architecture or kernels)");
      model.device = MOE_DEVICE_CPU;
      return;
    }
    if (abi.device != MOE_ABI_DEVICE_CUDA)
      invalid(fmt::format("its device is {}, expected {} (host) or {} (cuda)",
                          abi.device, int(MOE_ABI_DEVICE_HOST),
                          int(MOE_ABI_DEVICE_CUDA)));
    model.device = MOE_DEVICE_CUDA;
    if (!abi.device_ptx || !*abi.device_ptx)
      invalid("it is a CUDA model without PTX (device_ptx is NULL or empty)");
    if ((abi.device_blob == nullptr) != (abi.device_blob_size == 0))
      invalid(fmt::format("its cubin is {} but its size is {}",
                          abi.device_blob ? "present" : "NULL",
                          abi.device_blob_size));
    if (abi.device_blob && (!abi.device_arch || !*abi.device_arch))
      invalid("it has a cubin but no device_arch saying what it is for");
    if (abi.num_kernels <= 0 || !abi.kernel_names)
      invalid(fmt::format("it is a CUDA model with {} kernel names",
                          abi.kernel_names ? abi.num_kernels : 0));
    for (int32_t k = 0; k < abi.num_kernels; ++k)
      if (!abi.kernel_names[k] || !*abi.kernel_names[k])
        invalid(fmt::format("its kernel {} has no name", k));
  }

  /// Takes what the ABI tables do not carry (input defaults, parameter
  /// groups) from the JSON signature.
  void readSignatureExtras() {
    json::Value signature;
    try {
      signature = json::parse(model.signatureJson, "its signature JSON");
    } catch (const Error &error) {
      invalid(error.what());
    }
    // Only moec's schema carries extras; other producers may put anything
    // there.
    const json::Value *entries = signature.find("entries");
    if (!entries || entries->kind != json::Value::Array)
      return;
    for (const json::Value &jsonEntry : entries->array) {
      const json::Value *name = jsonEntry.find("name");
      const json::Value *args = jsonEntry.find("args");
      if (!name || name->kind != json::Value::String || !args ||
          args->kind != json::Value::Array)
        continue;
      auto entry = std::find_if(
          model.entries.begin(), model.entries.end(),
          [&](const EntryDesc &e) { return e.name == name->string; });
      if (entry == model.entries.end())
        continue;
      for (const json::Value &jsonArg : args->array) {
        const json::Value *argName = jsonArg.find("name");
        if (!argName || argName->kind != json::Value::String)
          continue;
        auto arg = std::find_if(
            entry->args.begin(), entry->args.end(),
            [&](const ArgDesc &a) { return a.name == argName->string; });
        if (arg == entry->args.end())
          continue;
        if (const json::Value *value = jsonArg.find("default")) {
          if (value->kind != json::Value::Number)
            invalid(fmt::format("the default of argument '{}' of '{}' is "
                                "not a number",
                                arg->name, entry->name));
          arg->defaultValue = value->number;
        }
        if (const json::Value *groups = jsonArg.find("groups")) {
          if (groups->kind != json::Value::Array)
            invalid(fmt::format("the groups of argument '{}' of '{}' are "
                                "not an array",
                                arg->name, entry->name));
          for (const json::Value &group : groups->array) {
            if (group.kind != json::Value::String)
              invalid(fmt::format("a group of argument '{}' of '{}' is not "
                                  "a string",
                                  arg->name, entry->name));
            arg->groups.push_back(group.string);
          }
        }
      }
    }
  }

  [[noreturn]] void invalid(const std::string &problem) {
    fail(MOE_STATUS_INCOMPATIBLE_MODEL, "model '{}' has invalid ABI tables: {}",
         model.path, problem);
  }

  void readEntry(const moe_abi_entry &abiEntry, int32_t index) {
    if (!abiEntry.name || !*abiEntry.name)
      invalid(fmt::format("entry point {} has no name", index));
    std::string name = abiEntry.name;
    if (model.findEntry(name))
      invalid(fmt::format("two entry points are called '{}'", name));
    if (!abiEntry.invoke)
      invalid(fmt::format("entry point '{}' has no invoke function", name));
    if (abiEntry.num_args < 0 || abiEntry.num_args > maxArgs ||
        (abiEntry.num_args > 0 && !abiEntry.args))
      invalid(fmt::format("entry point '{}' declares {} arguments", name,
                          abiEntry.num_args));
    EntryDesc &entry = model.entries.emplace_back();
    entry.name = name;
    entry.invoke = abiEntry.invoke;
    std::map<std::string, std::pair<int64_t, std::string>> staticDims;
    for (int32_t a = 0; a < abiEntry.num_args; ++a) {
      ArgDesc arg = readArg(entry, abiEntry.args[a], a);
      for (size_t d = 0; d < arg.shape.size(); ++d) {
        if (arg.shape[d] == MOE_DYNAMIC || arg.dimNames[d].empty())
          continue;
        auto [it, inserted] =
            staticDims.try_emplace(arg.dimNames[d], arg.shape[d], arg.name);
        if (!inserted && it->second.first != arg.shape[d])
          invalid(fmt::format("entry point '{}': dimension '{}' is {} in "
                              "argument '{}' but {} in argument '{}'",
                              name, arg.dimNames[d], it->second.first,
                              it->second.second, arg.shape[d], arg.name));
      }
      entry.args.push_back(std::move(arg));
    }
  }

  ArgDesc readArg(const EntryDesc &entry, const moe_abi_arg &abiArg,
                  int32_t index) {
    std::string where = fmt::format("entry point '{}'", entry.name);
    if (!abiArg.name || !*abiArg.name)
      invalid(fmt::format("{}: argument {} has no name", where, index));
    ArgDesc arg;
    arg.name = abiArg.name;
    where += fmt::format(": argument '{}'", arg.name);
    if (entry.findArg(arg.name))
      invalid(fmt::format("{} is declared twice", where));
    if (!moe_role_name(moe_role(abiArg.role)))
      invalid(fmt::format("{} has invalid role {}", where, abiArg.role));
    if (!isAbiDType(abiArg.dtype))
      invalid(fmt::format("{} has invalid dtype {}", where, abiArg.dtype));
    if (abiArg.rank < 0 || abiArg.rank > MOE_MAX_RANK ||
        (abiArg.rank > 0 && !abiArg.shape))
      invalid(fmt::format("{} has invalid rank {}", where, abiArg.rank));
    arg.role = moe_role(abiArg.role);
    arg.dtype = moe_dtype(abiArg.dtype);
    for (int32_t d = 0; d < abiArg.rank; ++d) {
      int64_t extent = abiArg.shape[d];
      if (extent < 0 && extent != MOE_DYNAMIC)
        invalid(fmt::format("{} dimension {} has invalid extent {}", where, d,
                            extent));
      const char *dimName = abiArg.dim_names ? abiArg.dim_names[d] : nullptr;
      if (extent == MOE_DYNAMIC && arg.sessionState())
        invalid(fmt::format("{} is a {} with dynamic dimension {}; the "
                            "session needs a static shape to hold it",
                            where, moe_role_name(arg.role), d));
      arg.shape.push_back(extent);
      arg.dimNames.push_back(dimName ? dimName : "");
    }
    if (arg.sessionState()) {
      try {
        checkShape(arg.dtype, abiArg.rank, arg.shape.data(), where);
      } catch (const Error &e) {
        invalid(e.what());
      }
    }
    return arg;
  }

  /// Parameters and optimizer state are shared by name across entries.
  void checkSharedState() {
    std::map<std::string, std::pair<const ArgDesc *, const EntryDesc *>> seen;
    for (const EntryDesc &entry : model.entries)
      for (const ArgDesc &arg : entry.args) {
        if (!arg.sessionState())
          continue;
        auto [it, inserted] = seen.try_emplace(arg.name, &arg, &entry);
        const ArgDesc &first = *it->second.first;
        if (!inserted && (first.role != arg.role || first.dtype != arg.dtype ||
                          first.shape != arg.shape))
          invalid(fmt::format(
              "'{}' is a {} {} in entry point '{}' but a {} {} in entry "
              "point '{}'",
              arg.name, moe_role_name(first.role), first.signature(),
              it->second.second->name, moe_role_name(arg.role), arg.signature(),
              entry.name));
      }
  }

  moe_model &model;
};

/// Points each moe_arg_info at its ArgDesc, once no vector moves anymore.
void finishInfos(moe_model &model) {
  for (EntryDesc &entry : model.entries)
    for (ArgDesc &arg : entry.args) {
      arg.dimNamePointers.clear();
      for (const std::string &dimName : arg.dimNames)
        arg.dimNamePointers.push_back(dimName.empty() ? nullptr
                                                      : dimName.c_str());
      arg.info = moe_arg_info{
          arg.name.c_str(),
          arg.role,
          arg.dtype,
          static_cast<int32_t>(arg.shape.size()),
          arg.shape.empty() ? nullptr : arg.shape.data(),
          arg.dimNamePointers.empty() ? nullptr : arg.dimNamePointers.data()};
    }
}

std::string describeModel(const moe_model &model) {
  std::string text = fmt::format("model '{}'\n", model.path);
  text += fmt::format("  producer: {}\n  target: {}\n",
                      model.producer.empty() ? "?" : model.producer,
                      model.target.empty() ? "?" : model.target);
  for (const EntryDesc &entry : model.entries) {
    text += fmt::format("  entry '{}':\n", entry.name);
    size_t width = 0;
    for (const ArgDesc &arg : entry.args)
      width = std::max(width, arg.name.size());
    for (const ArgDesc &arg : entry.args)
      text += fmt::format("    {:<15} {:<{}} {}\n", moe_role_name(arg.role),
                          arg.name, width, arg.signature());
  }
  return text;
}

} // namespace

extern "C" {

moe_status *moe_model_load(const char *path, moe_model **out) {
  return guard([&] {
    requireArg(path, "moe_model_load", "path");
    requireArg(out, "moe_model_load", "out");
    checkElfFile(path);
    ModelRef model(new moe_model);
    model->path = path;
    // A bare file name would send dlopen() searching the library path; the
    // caller means the file in the current directory.
    std::string file = std::strchr(path, '/') ? path : std::string("./") + path;
    model->library = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!model->library)
      fail(MOE_STATUS_INCOMPATIBLE_MODEL, "cannot load model '{}': {}", path,
           dlerror());
    auto query = reinterpret_cast<moe_abi_query_fn>(
        dlsym(model->library, MOE_ABI_QUERY_SYMBOL));
    if (!query)
      fail(MOE_STATUS_INCOMPATIBLE_MODEL,
           "'{}' is not a moec model: it does not export '{}'", path,
           MOE_ABI_QUERY_SYMBOL);
    const moe_abi_model *abi = query();
    if (!abi)
      fail(MOE_STATUS_INCOMPATIBLE_MODEL, "model '{}': {}() returned NULL",
           path, MOE_ABI_QUERY_SYMBOL);
    TableReader(*model).read(*abi);
    model->abi = abi;
    finishInfos(*model);
    model->description = describeModel(*model);
    *out = model.release();
  });
}

void moe_model_retain(moe_model *model) {
  if (model)
    model->refs.fetch_add(1, std::memory_order_relaxed);
}

void moe_model_release(moe_model *model) {
  if (model && model->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete model;
}

const char *moe_model_path(const moe_model *model) {
  return model->path.c_str();
}

const char *moe_model_producer(const moe_model *model) {
  return model->producer.c_str();
}

const char *moe_model_target(const moe_model *model) {
  return model->target.c_str();
}

const char *moe_model_signature_json(const moe_model *model) {
  return model->signatureJson.c_str();
}

moe_device moe_model_device(const moe_model *model) { return model->device; }

const char *moe_model_description(const moe_model *model) {
  return model->description.c_str();
}

int32_t moe_model_num_entries(const moe_model *model) {
  return static_cast<int32_t>(model->entries.size());
}

const char *moe_model_entry_name(const moe_model *model, int32_t entry) {
  if (entry < 0 || entry >= moe_model_num_entries(model))
    return nullptr;
  return model->entries[entry].name.c_str();
}

int32_t moe_model_find_entry(const moe_model *model, const char *name) {
  if (!name)
    return -1;
  const EntryDesc *entry = model->findEntry(name);
  return entry ? static_cast<int32_t>(entry - model->entries.data()) : -1;
}

int32_t moe_model_num_args(const moe_model *model, int32_t entry) {
  if (entry < 0 || entry >= moe_model_num_entries(model))
    return -1;
  return static_cast<int32_t>(model->entries[entry].args.size());
}

const moe_arg_info *moe_model_arg(const moe_model *model, int32_t entry,
                                  int32_t arg) {
  if (arg < 0 || arg >= moe_model_num_args(model, entry))
    return nullptr;
  return &model->entries[entry].args[arg].info;
}

int moe_model_arg_default(const moe_model *model, int32_t entry, int32_t arg,
                          double *value) {
  if (arg < 0 || arg >= moe_model_num_args(model, entry) || !value)
    return 0;
  const std::optional<double> &given =
      model->entries[entry].args[arg].defaultValue;
  if (!given)
    return 0;
  *value = *given;
  return 1;
}

int32_t moe_model_arg_num_groups(const moe_model *model, int32_t entry,
                                 int32_t arg) {
  if (arg < 0 || arg >= moe_model_num_args(model, entry))
    return 0;
  return static_cast<int32_t>(model->entries[entry].args[arg].groups.size());
}

const char *moe_model_arg_group(const moe_model *model, int32_t entry,
                                int32_t arg, int32_t group) {
  if (group < 0 || group >= moe_model_arg_num_groups(model, entry, arg))
    return nullptr;
  return model->entries[entry].args[arg].groups[group].c_str();
}

} // extern "C"
