//===- Model.h - A loaded model.so ----------------------------------------===//
#ifndef MOERT_RUNTIME_MODEL_H
#define MOERT_RUNTIME_MODEL_H

#include "moe/runtime/moert.h"

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moert::detail {

/// One argument, copied out of the ABI tables after validation.
struct ArgDesc {
  std::string name;
  moe_role role;
  moe_dtype dtype;
  std::vector<int64_t> shape;
  std::vector<std::string> dimNames; // "" for none.
  std::vector<const char *> dimNamePointers;
  moe_arg_info info; // Points into the fields above.
  /// From the signature JSON: an input's default value, a parameter's
  /// groups.
  std::optional<double> defaultValue;
  std::vector<std::string> groups;

  /// Whether the model fills this argument (output, metric, gradient).
  bool produced() const;
  /// Whether the session owns it (parameter, optimizer state).
  bool sessionState() const;
  /// "[?batch, 4]"
  std::string shapeString() const;
  /// "f32 [?batch, 4]"
  std::string signature() const;
};

struct EntryDesc {
  std::string name;
  std::vector<ArgDesc> args;
  int32_t (*invoke)(void *const *args, const moe_runtime_services *services);

  const ArgDesc *findArg(std::string_view name) const;
};

} // namespace moert::detail

struct moe_model {
  std::atomic<int32_t> refs{1};
  std::string path, producer, target, signatureJson, description;
  void *library = nullptr;
  const moe_abi_model *abi = nullptr; // Inside `library`.
  moe_device device = MOE_DEVICE_CPU;
  std::vector<moert::detail::EntryDesc> entries;

  const moert::detail::EntryDesc *findEntry(std::string_view name) const;
  ~moe_model();
};

namespace moert::detail {
struct ModelReleaser {
  void operator()(moe_model *model) const { moe_model_release(model); }
};
using ModelRef = std::unique_ptr<moe_model, ModelReleaser>;
} // namespace moert::detail

#endif // MOERT_RUNTIME_MODEL_H
