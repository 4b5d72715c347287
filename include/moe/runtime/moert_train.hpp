//===- moert_train.hpp - C++ wrapper over moert_train.h ---------*- C++ -*-===//
//
// RAII and exceptions over the training API, in the style of moert.hpp:
// copying an Optimizer retains it, failed calls throw moert::Error. Thread
// safety is that of the C functions (see moert_train.h).
//
//===----------------------------------------------------------------------===//
#ifndef MOE_RUNTIME_MOERT_TRAIN_HPP
#define MOE_RUNTIME_MOERT_TRAIN_HPP

#include "moe/runtime/moert.hpp"
#include "moe/runtime/moert_train.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moert {

/// moe_lr_schedule with the defaults of moe_adamw_config_init.
struct LrSchedule {
  moe_lr_decay decay = MOE_LR_CONSTANT;
  double lr = 1e-3;
  double minLr = 0;
  int64_t warmupSteps = 0;
  int64_t totalSteps = 0;

  moe_lr_schedule toC() const {
    return {decay, lr, minLr, warmupSteps, totalSteps};
  }
  /// Throws if a field is out of range.
  void check() const {
    moe_lr_schedule schedule = toC();
    moert::check(moe_lr_schedule_check(&schedule));
  }
  /// The rate at step index `step` (0 for the first step); throws if the
  /// schedule is invalid or step < 0.
  double at(int64_t step) const {
    check();
    if (step < 0)
      throw Error(MOE_STATUS_INVALID_ARGUMENT, "learning-rate schedule: step " +
                                                   std::to_string(step) +
                                                   " is negative");
    moe_lr_schedule schedule = toC();
    return moe_lr_schedule_at(&schedule, step);
  }
};

/// moe_adamw_config with owned globs; defaults as moe_adamw_config_init.
struct AdamWConfig {
  LrSchedule schedule;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weightDecay = 0.01;
  double maxGradNorm = 0; // 0: no clipping.
  /// Globs of parameters without weight decay; unset: rank 0 and 1.
  std::optional<std::vector<std::string>> noDecay;
  /// Globs of parameters never updated.
  std::vector<std::string> frozen;
};

/// moe_step_report.
using StepReport = moe_step_report;

/// The caller's checkpoint metadata.
using Metadata = std::map<std::string, std::string>;

class Optimizer : public detail::Handle<moe_optimizer, moe_optimizer_retain,
                                        moe_optimizer_release> {
public:
  using Handle::Handle;

  Optimizer(const Session &session, const AdamWConfig &config) {
    moe_adamw_config c;
    moe_adamw_config_init(&c);
    c.schedule = config.schedule.toC();
    c.beta1 = config.beta1;
    c.beta2 = config.beta2;
    c.eps = config.eps;
    c.weight_decay = config.weightDecay;
    c.max_grad_norm = config.maxGradNorm;
    std::vector<const char *> noDecay, frozen = pointers(config.frozen);
    if (config.noDecay)
      noDecay = pointers(*config.noDecay);
    // An empty vector's data() may be NULL, which would mean the rank rule.
    static const char *const noGlobs[] = {nullptr};
    if (config.noDecay) {
      c.no_decay = noDecay.empty() ? noGlobs : noDecay.data();
      c.num_no_decay = static_cast<int32_t>(noDecay.size());
    }
    c.frozen = frozen.data();
    c.num_frozen = static_cast<int32_t>(frozen.size());
    check(moe_optimizer_create(session.get(), &c, &raw));
  }

  Session session() const {
    moe_session *session = moe_optimizer_get_session(raw);
    moe_session_retain(session);
    return Session(session);
  }
  int64_t stepCount() const { return moe_optimizer_step_count(raw); }
  double nextLr() const { return moe_optimizer_next_lr(raw); }
  moe_param_training paramTraining(const std::string &name) const {
    return moe_optimizer_param_training(raw, name.c_str());
  }
  /// "optimizer.m.P" or "optimizer.v.P".
  Tensor state(const std::string &name) const {
    moe_tensor *out = nullptr;
    check(moe_optimizer_get_state(raw, name.c_str(), &out));
    return Tensor(out);
  }

  StepReport step(const TensorList &gradients) {
    StepReport report;
    check(moe_optimizer_step(raw, gradients.get(), &report));
    return report;
  }
  void accumulate(const TensorList &gradients) {
    check(moe_optimizer_accumulate(raw, gradients.get()));
  }
  int32_t numAccumulated() const { return moe_optimizer_num_accumulated(raw); }
  StepReport stepAccumulated(int64_t divisor) {
    StepReport report;
    check(moe_optimizer_step_accumulated(raw, divisor, &report));
    return report;
  }
  void clearAccumulated() { check(moe_optimizer_clear_accumulated(raw)); }

  void saveCheckpoint(const std::string &path, const Metadata &metadata = {}) {
    moe_metadata *rawMetadata = nullptr;
    check(moe_metadata_create(&rawMetadata));
    std::unique_ptr<moe_metadata, void (*)(moe_metadata *)> owned(
        rawMetadata, moe_metadata_free);
    for (const auto &[key, value] : metadata)
      check(moe_metadata_set(owned.get(), key.c_str(), value.c_str()));
    check(moe_optimizer_save_checkpoint(raw, path.c_str(), owned.get()));
  }
  /// Returns the caller's metadata stored in the checkpoint.
  Metadata loadCheckpoint(const std::string &path) {
    moe_metadata *rawMetadata = nullptr;
    check(moe_optimizer_load_checkpoint(raw, path.c_str(), &rawMetadata));
    std::unique_ptr<moe_metadata, void (*)(moe_metadata *)> owned(
        rawMetadata, moe_metadata_free);
    Metadata metadata;
    for (int32_t i = 0; i < moe_metadata_size(owned.get()); ++i)
      metadata[moe_metadata_key(owned.get(), i)] =
          moe_metadata_value(owned.get(), i);
    return metadata;
  }

private:
  static std::vector<const char *>
  pointers(const std::vector<std::string> &strings) {
    std::vector<const char *> result;
    for (const std::string &s : strings)
      result.push_back(s.c_str());
    return result;
  }
};

/// Throws moert::Error (MOE_STATUS_NON_FINITE) if a floating-point tensor
/// holds a NaN or an infinity, naming `name` and `step`.
inline void checkFinite(const Tensor &tensor, const std::string &name,
                        int64_t step) {
  check(moe_check_finite(tensor.get(), name.c_str(), step));
}

} // namespace moert

#endif // MOE_RUNTIME_MOERT_TRAIN_HPP
