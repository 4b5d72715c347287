//===- Optimizer.h - AdamW over a session's parameters --------------------===//
#ifndef MOERT_RUNTIME_OPTIMIZER_H
#define MOERT_RUNTIME_OPTIMIZER_H

#include "Session.h"

#include "moe/runtime/moert_train.h"

#include <atomic>
#include <mutex>
#include <string>
#include <string_view>

namespace moert::detail {

/// What the optimizer keeps for one PARAMETER of the session.
struct ParamState {
  size_t slot; // In moe_session::states.
  moe_param_training training;
  bool frozenByName = false;   // Matched a frozen glob.
  TensorRef m, v;              // f32; trained parameters only.
  TensorRef accumulated;       // f32; allocated by the first accumulation.
  bool hasAccumulated = false; // `accumulated` holds this step's sum.

  bool trained() const { return training >= MOE_PARAM_TRAINED; }
};

/// The numbers of moe_adamw_config; the globs are resolved at creation.
struct AdamWSettings {
  moe_lr_schedule schedule;
  double beta1, beta2, eps, weightDecay, maxGradNorm;
};

/// Checkpoint tensor names of the moments of `param`.
inline std::string firstMomentName(std::string_view param) {
  return "optimizer.m." + std::string(param);
}
inline std::string secondMomentName(std::string_view param) {
  return "optimizer.v." + std::string(param);
}

} // namespace moert::detail

struct moe_optimizer {
  std::atomic<int32_t> refs{1};
  moert::detail::SessionRef session;
  moert::detail::AdamWSettings settings;
  // Serialises steps, accumulation and checkpoints; taken before the
  // session's lock.
  std::mutex mutex;
  std::vector<moert::detail::ParamState> params; // Session order.
  std::atomic<int64_t> steps{0};
  std::atomic<int32_t> numAccumulated{0};

  const moert::detail::ArgDesc &decl(const moert::detail::ParamState &param) {
    return *session->states[param.slot].decl;
  }
  /// The state of parameter `name`, or null.
  moert::detail::ParamState *findParam(std::string_view name);
  /// Forgets accumulated gradients (keeping the buffers).
  void clearAccumulated();
};

#endif // MOERT_RUNTIME_OPTIMIZER_H
