//===- Checkpoint.cpp - Saving and resuming training ----------------------===//
//
// A checkpoint is a safetensors file: the session's parameters and
// optimizer-state tensors under their names, the AdamW moments as
// optimizer.m.P / optimizer.v.P, and in __metadata__ the format version, the
// optimizer, the step count and the caller's entries.
//
//===----------------------------------------------------------------------===//

#include "Error.h"
#include "Optimizer.h"
#include "Safetensors.h"

#include <charconv>
#include <set>

using namespace moert::detail;

struct moe_metadata {
  safetensors::Metadata entries;
};

namespace {

// Metadata keys of the checkpoint itself; the caller's keys must not start
// with the prefix.
constexpr std::string_view reservedPrefix = "moert.";
constexpr const char *versionKey = "moert.checkpoint";
constexpr const char *optimizerKey = "moert.optimizer";
constexpr const char *stepKey = "moert.step";
constexpr const char *version = "1";
constexpr const char *optimizerName = "adamw";

bool isReservedKey(std::string_view key) {
  return key == "format" ||
         key.compare(0, reservedPrefix.size(), reservedPrefix) == 0;
}

const std::string *findValue(const safetensors::Metadata &metadata,
                             std::string_view key) {
  for (const auto &[name, value] : metadata)
    if (name == key)
      return &value;
  return nullptr;
}

/// The parameter whose moment `name` is ("optimizer.m.P" or
/// "optimizer.v.P"), or "" if it names no moment.
std::string momentOwner(const std::string &name, bool *first) {
  for (bool isFirst : {true, false}) {
    std::string prefix = isFirst ? firstMomentName("") : secondMomentName("");
    if (name.size() > prefix.size() &&
        name.compare(0, prefix.size(), prefix) == 0) {
      *first = isFirst;
      return name.substr(prefix.size());
    }
  }
  return "";
}

/// The step count stored in a checkpoint's metadata.
int64_t readStep(const safetensors::Metadata &metadata,
                 const std::string &what) {
  const std::string *text = findValue(metadata, stepKey);
  if (!text)
    fail(MOE_STATUS_INVALID_FILE, "{}: the metadata lacks '{}'", what, stepKey);
  int64_t step = -1;
  const char *end = text->data() + text->size();
  auto [last, error] = std::from_chars(text->data(), end, step);
  if (error != std::errc() || last != end || step < 0)
    fail(MOE_STATUS_INVALID_FILE,
         "{}: '{}' is \"{}\", not a step count (a non-negative integer)", what,
         stepKey, *text);
  return step;
}

/// Loads a checkpoint tensor after checking it against the declaration.
TensorRef loadChecked(const safetensors::Reader &reader,
                      const safetensors::Entry &entry, moe_dtype dtype,
                      const std::vector<int64_t> &shape,
                      const std::string &what) {
  if (entry.dtype != dtype || entry.shape != shape)
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "{}: tensor '{}' is {} {}, but the session expects {} {}", what,
         entry.name, entry.dtypeName, formatShape(entry.shape),
         moe_dtype_name(dtype), formatShape(shape));
  return reader.load(entry);
}

} // namespace

extern "C" {

moe_status *moe_metadata_create(moe_metadata **out) {
  return guard([&] {
    requireArg(out, "moe_metadata_create", "out");
    *out = new moe_metadata;
  });
}

void moe_metadata_free(moe_metadata *metadata) { delete metadata; }

moe_status *moe_metadata_set(moe_metadata *metadata, const char *key,
                             const char *value) {
  return guard([&] {
    requireArg(metadata, "moe_metadata_set", "metadata");
    requireArg(key, "moe_metadata_set", "key");
    requireArg(value, "moe_metadata_set", "value");
    for (auto &entry : metadata->entries)
      if (entry.first == key) {
        entry.second = value;
        return;
      }
    metadata->entries.emplace_back(key, value);
  });
}

int32_t moe_metadata_size(const moe_metadata *metadata) {
  return static_cast<int32_t>(metadata->entries.size());
}

const char *moe_metadata_key(const moe_metadata *metadata, int32_t index) {
  if (index < 0 || index >= moe_metadata_size(metadata))
    return nullptr;
  return metadata->entries[index].first.c_str();
}

const char *moe_metadata_value(const moe_metadata *metadata, int32_t index) {
  if (index < 0 || index >= moe_metadata_size(metadata))
    return nullptr;
  return metadata->entries[index].second.c_str();
}

const char *moe_metadata_find(const moe_metadata *metadata, const char *key) {
  if (!metadata || !key)
    return nullptr;
  const std::string *value = findValue(metadata->entries, key);
  return value ? value->c_str() : nullptr;
}

moe_status *moe_optimizer_save_checkpoint(moe_optimizer *optimizer,
                                          const char *path,
                                          const moe_metadata *metadata) {
  return guard([&] {
    requireArg(optimizer, "moe_optimizer_save_checkpoint", "optimizer");
    requireArg(path, "moe_optimizer_save_checkpoint", "path");
    std::string what = fmt::format("cannot save checkpoint '{}'", path);
    safetensors::Metadata entries{
        {versionKey, version},
        {optimizerKey, optimizerName},
        {stepKey, ""}, // Filled in under the lock.
    };
    if (metadata)
      for (const auto &[key, value] : metadata->entries) {
        if (isReservedKey(key))
          fail(MOE_STATUS_INVALID_ARGUMENT,
               "{}: metadata key '{}' is reserved (\"format\" and keys "
               "starting with \"{}\")",
               what, key, reservedPrefix);
        entries.emplace_back(key, value);
      }

    std::lock_guard<std::mutex> lock(optimizer->mutex);
    if (optimizer->numAccumulated > 0)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "{}: {} accumulated micro-batch(es) are pending and a checkpoint "
           "does not hold them; save after the step",
           what, optimizer->numAccumulated.load());
    entries[2].second = std::to_string(optimizer->steps);
    moe_session &session = *optimizer->session;
    std::shared_lock<TurnstileSharedMutex> sessionLock(session.mutex);
    std::vector<std::pair<std::string, const moe_tensor *>> tensors;
    std::vector<std::string> uninitialized;
    for (const StateSlot &slot : session.states) {
      if (!slot.initialized)
        uninitialized.push_back(slot.decl->name);
      tensors.emplace_back(slot.decl->name, slot.value.get());
    }
    if (!uninitialized.empty())
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "{}: {} parameter(s) have no value yet: {}", what,
           uninitialized.size(), joinNames(uninitialized));
    for (const ParamState &param : optimizer->params) {
      if (!param.trained())
        continue;
      const std::string &name = optimizer->decl(param).name;
      tensors.emplace_back(firstMomentName(name), param.m.get());
      tensors.emplace_back(secondMomentName(name), param.v.get());
    }
    std::set<std::string_view> names;
    for (const auto &item : tensors)
      if (!names.insert(item.first).second)
        fail(MOE_STATUS_INVALID_ARGUMENT,
             "{}: the model's tensor '{}' has the name of an optimizer "
             "moment",
             what, item.first);
    safetensors::write(path, tensors, entries);
  });
}

moe_status *moe_optimizer_load_checkpoint(moe_optimizer *optimizer,
                                          const char *path,
                                          moe_metadata **metadata) {
  return guard([&] {
    requireArg(optimizer, "moe_optimizer_load_checkpoint", "optimizer");
    requireArg(path, "moe_optimizer_load_checkpoint", "path");
    safetensors::Reader reader(path);
    std::string what = fmt::format("checkpoint '{}'", path);
    const safetensors::Metadata &stored = reader.metadata();
    const std::string *storedVersion = findValue(stored, versionKey);
    if (!storedVersion)
      fail(MOE_STATUS_INVALID_FILE,
           "{} is not a moert checkpoint: its metadata lacks '{}' (to load "
           "only parameters, use moe_session_load_parameters)",
           what, versionKey);
    if (*storedVersion != version)
      fail(MOE_STATUS_INVALID_FILE,
           "{} has format version \"{}\"; this runtime reads version {}", what,
           *storedVersion, version);
    const std::string *storedOptimizer = findValue(stored, optimizerKey);
    if (!storedOptimizer || *storedOptimizer != optimizerName)
      fail(MOE_STATUS_INVALID_FILE, "{}: '{}' is {}, expected \"{}\"", what,
           optimizerKey,
           storedOptimizer ? "\"" + *storedOptimizer + "\"" : "missing",
           optimizerName);
    int64_t step = readStep(stored, what);

    std::lock_guard<std::mutex> lock(optimizer->mutex);
    moe_session &session = *optimizer->session;
    // Everything is read and checked before anything changes.
    std::vector<TensorRef> values(session.states.size());
    std::vector<TensorRef> firstMoments(optimizer->params.size()),
        secondMoments(optimizer->params.size());
    std::vector<std::string> unplaced, missing;
    for (const safetensors::Entry &entry : reader.entries()) {
      if (StateSlot *slot = session.findState(entry.name)) {
        values[slot - session.states.data()] = loadChecked(
            reader, entry, slot->decl->dtype, slot->decl->shape, what);
        continue;
      }
      bool first = false;
      std::string owner = momentOwner(entry.name, &first);
      ParamState *param = owner.empty() ? nullptr : optimizer->findParam(owner);
      if (!param) {
        unplaced.push_back(entry.name);
        continue;
      }
      if (!param->trained())
        continue; // Frozen now; its moments do not matter.
      size_t index = param - optimizer->params.data();
      (first ? firstMoments : secondMoments)[index] = loadChecked(
          reader, entry, MOE_F32, optimizer->decl(*param).shape, what);
    }
    if (!unplaced.empty())
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "{} holds {} tensor(s) that model '{}' has no place for: {}", what,
           unplaced.size(), session.model->path, joinNames(unplaced));
    for (size_t i = 0; i < values.size(); ++i) {
      const ArgDesc &decl = *session.states[i].decl;
      if (values[i])
        continue;
      // Optimizer state the checkpoint lacks starts over, as in
      // moe_session_load_parameters.
      if (decl.role == MOE_ROLE_PARAMETER)
        missing.push_back(decl.name);
      else
        values[i] = newTensor(decl.dtype, decl.shape);
    }
    for (size_t i = 0; i < optimizer->params.size(); ++i) {
      const std::string &name = optimizer->decl(optimizer->params[i]).name;
      if (!optimizer->params[i].trained())
        continue;
      if (!firstMoments[i])
        missing.push_back(firstMomentName(name));
      if (!secondMoments[i])
        missing.push_back(secondMomentName(name));
    }
    if (!missing.empty())
      fail(MOE_STATUS_INVALID_ARGUMENT, "{} lacks {} tensor(s): {}", what,
           missing.size(), joinNames(missing));
    std::unique_ptr<moe_metadata> callerMetadata;
    if (metadata) {
      callerMetadata = std::make_unique<moe_metadata>();
      for (const auto &entry : stored)
        if (!isReservedKey(entry.first))
          callerMetadata->entries.push_back(entry);
    }

    std::unique_lock<TurnstileSharedMutex> sessionLock(session.mutex);
    for (size_t i = 0; i < values.size(); ++i)
      session.states[i].assign(std::move(values[i]));
    for (size_t i = 0; i < optimizer->params.size(); ++i)
      if (optimizer->params[i].trained()) {
        optimizer->params[i].m = std::move(firstMoments[i]);
        optimizer->params[i].v = std::move(secondMoments[i]);
      }
    optimizer->steps = step;
    optimizer->clearAccumulated();
    if (metadata)
      *metadata = callerMetadata.release();
  });
}

} // extern "C"
