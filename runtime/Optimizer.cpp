//===- Optimizer.cpp - AdamW, clipping, schedules and accumulation --------===//

#include "Optimizer.h"

#include "DType.h"
#include "Error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fnmatch.h>

using namespace moert::detail;

namespace {

constexpr std::string_view gradientPrefix = "grad.";

// Elements per unit of parallel work. Sums of squares are added per chunk and
// the chunks in order, so norms do not depend on the number of threads.
constexpr int64_t chunkSize = 1 << 14;

/// Runs body(begin, end) over fixed chunks of [0, n) on the session's pool.
template <typename Body>
void forEachChunk(ThreadPool &pool, int64_t n, const Body &body) {
  struct Closure {
    const Body *body;
    int64_t n;
  } closure{&body, n};
  auto run = [](void *opaque, int64_t first, int64_t last) {
    const Closure &c = *static_cast<const Closure *>(opaque);
    for (int64_t chunk = first; chunk < last; ++chunk)
      (*c.body)(chunk, chunk * chunkSize,
                std::min(c.n, (chunk + 1) * chunkSize));
  };
  int64_t chunks = (n + chunkSize - 1) / chunkSize;
  try {
    pool.parallelFor(chunks, run, &closure);
  } catch (const std::bad_alloc &) {
    // No memory to queue a job (nothing ran): work on this thread. A step
    // must not stop halfway through its parameters.
    run(&closure, 0, chunks);
  }
}

// Element types AdamW updates, and how they convert to the f32 arithmetic.
struct F32 {
  using Storage = float;
  static float load(float x) { return x; }
  static float store(float x) { return x; }
};
struct F16 {
  using Storage = uint16_t;
  static float load(uint16_t x) { return halfToFloat(x); }
  static uint16_t store(float x) { return floatToHalf(x); }
};
struct BF16 {
  using Storage = uint16_t;
  static float load(uint16_t x) { return bf16ToFloat(x); }
  static uint16_t store(float x) { return floatToBf16(x); }
};

bool isTrainableDType(moe_dtype dtype) {
  return dtype == MOE_F32 || dtype == MOE_F16 || dtype == MOE_BF16;
}

/// Calls body(T{}) with the element type of a trainable dtype.
template <typename Body> void withType(moe_dtype dtype, const Body &body) {
  switch (dtype) {
  case MOE_F32:
    return body(F32{});
  case MOE_F16:
    return body(F16{});
  case MOE_BF16:
    return body(BF16{});
  default:
    fail(MOE_STATUS_INTERNAL, "no AdamW kernel for dtype {}",
         moe_dtype_name(dtype));
  }
}

/// A gradient to apply: caller memory (of the parameter's dtype) or an
/// accumulation buffer (f32).
struct Gradient {
  const void *data = nullptr; // Null: the parameter has none this step.
  moe_dtype dtype = MOE_F32;
};

double sumOfSquares(ThreadPool &pool, const Gradient &gradient, int64_t n) {
  std::vector<double> partial((n + chunkSize - 1) / chunkSize, 0.0);
  withType(gradient.dtype, [&](auto type) {
    using T = decltype(type);
    const auto *g = static_cast<const typename T::Storage *>(gradient.data);
    forEachChunk(pool, n, [&](int64_t chunk, int64_t begin, int64_t end) {
      double sum = 0;
      for (int64_t i = begin; i < end; ++i) {
        double x = T::load(g[i]);
        sum += x * x;
      }
      partial[chunk] = sum;
    });
  });
  double total = 0;
  for (double sum : partial)
    total += sum;
  return total;
}

/// The first element of a gradient that is not finite, or -1.
int64_t firstNonFinite(const Gradient &gradient, int64_t n, double *value) {
  int64_t found = -1;
  withType(gradient.dtype, [&](auto type) {
    using T = decltype(type);
    const auto *g = static_cast<const typename T::Storage *>(gradient.data);
    for (int64_t i = 0; i < n && found < 0; ++i)
      if (!std::isfinite(T::load(g[i]))) {
        found = i;
        *value = T::load(g[i]);
      }
  });
  return found;
}

/// Per-step constants of the update, in the f32 arithmetic it runs in.
struct UpdateScalars {
  float gradScale; // Clipping and the accumulation divisor.
  float beta1, oneMinusBeta1, beta2, oneMinusBeta2;
  float decay;                  // 1 - lr * weight_decay, or 1 without decay.
  float stepSize;               // lr / (1 - beta1^t).
  float invSqrtBiasCorrection2; // 1 / sqrt(1 - beta2^t).
  float eps;
};

template <typename P, typename G>
void adamwUpdate(typename P::Storage *p, const typename G::Storage *g, float *m,
                 float *v, int64_t begin, int64_t end, const UpdateScalars &s) {
  for (int64_t i = begin; i < end; ++i) {
    float grad = G::load(g[i]) * s.gradScale;
    m[i] = s.beta1 * m[i] + s.oneMinusBeta1 * grad;
    v[i] = s.beta2 * v[i] + s.oneMinusBeta2 * grad * grad;
    float denominator = std::sqrt(v[i]) * s.invSqrtBiasCorrection2 + s.eps;
    p[i] = P::store(P::load(p[i]) * s.decay - s.stepSize * m[i] / denominator);
  }
}

void checkGlobs(const char *const *globs, int32_t count, const char *field) {
  if (count < 0 || (count > 0 && !globs))
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "moe_optimizer_create: {} has {} globs but the array is {}", field,
         count, globs ? "given" : "NULL");
  for (int32_t i = 0; i < count; ++i)
    if (!globs[i] || !*globs[i])
      fail(MOE_STATUS_INVALID_ARGUMENT, "moe_optimizer_create: {}[{}] is {}",
           field, i, globs[i] ? "empty" : "NULL");
}

bool matchesAny(const char *const *globs, int32_t count,
                const std::string &name) {
  for (int32_t i = 0; i < count; ++i)
    if (fnmatch(globs[i], name.c_str(), 0) == 0)
      return true;
  return false;
}

void checkConfig(const moe_adamw_config &config) {
  if (moe_status *status = moe_lr_schedule_check(&config.schedule)) {
    std::string message = moe_status_get_message(status);
    moe_status_free(status);
    fail(MOE_STATUS_INVALID_ARGUMENT, "moe_optimizer_create: {}", message);
  }
  auto require = [](bool ok, const char *field, double value,
                    const char *range) {
    if (!ok)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "moe_optimizer_create: {} is {}, expected {}", field, value, range);
  };
  require(config.beta1 >= 0 && config.beta1 < 1, "beta1", config.beta1,
          "a value in [0, 1)");
  require(config.beta2 >= 0 && config.beta2 < 1, "beta2", config.beta2,
          "a value in [0, 1)");
  require(config.eps > 0 && std::isfinite(config.eps), "eps", config.eps,
          "a finite value > 0");
  require(config.weight_decay >= 0 && std::isfinite(config.weight_decay),
          "weight_decay", config.weight_decay, "a finite value >= 0");
  require(config.max_grad_norm >= 0 && std::isfinite(config.max_grad_norm),
          "max_grad_norm", config.max_grad_norm,
          "a finite value >= 0 (0: no clipping)");
  if (!config.no_decay && config.num_no_decay != 0)
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "moe_optimizer_create: no_decay is NULL (the rank rule) but "
         "num_no_decay is {}",
         config.num_no_decay);
  checkGlobs(config.no_decay, config.num_no_decay, "no_decay");
  checkGlobs(config.frozen, config.num_frozen, "frozen");
}

/// One step's or micro-batch's gradients, matched to the parameters and
/// validated; `where` starts every message.
std::vector<Gradient> matchGradients(moe_optimizer &optimizer,
                                     const moe_tensor_list &list,
                                     const std::string &where) {
  moe_session &session = *optimizer.session;
  std::vector<Gradient> gradients(optimizer.params.size());
  for (const auto &[name, tensor] : list.items) {
    if (name.compare(0, gradientPrefix.size(), gradientPrefix) != 0)
      continue;
    std::string paramName = name.substr(gradientPrefix.size());
    ParamState *param = optimizer.findParam(paramName);
    if (!param) {
      StateSlot *slot = session.findState(paramName);
      fail(MOE_STATUS_INVALID_ARGUMENT, "{}: gradient '{}' names {}", where,
           name,
           slot ? fmt::format("optimizer state '{}', which has no gradient",
                              paramName)
                : fmt::format("no parameter of model '{}'",
                              session.model->path));
    }
    const ArgDesc &decl = optimizer.decl(*param);
    if (tensor->dtype != decl.dtype || tensor->shape != decl.shape)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "{}: gradient '{}' is {}, but parameter '{}' is {}", where, name,
           describe(*tensor), decl.name, decl.signature());
    if (!param->frozenByName && !isTrainableDType(decl.dtype))
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "{}: gradient '{}' is for parameter '{}' of dtype {}, but AdamW "
           "updates f32, f16 and bf16 parameters only; freeze it to ignore "
           "its gradient",
           where, name, decl.name, moe_dtype_name(decl.dtype));
    if (param->trained())
      gradients[param - optimizer.params.data()] = {tensor->data,
                                                    tensor->dtype};
  }
  return gradients;
}

/// Fails with NON_FINITE naming the first parameter (in session order)
/// whose gradient holds a NaN or an infinity.
[[noreturn]] void failNonFinite(moe_optimizer &optimizer,
                                const std::vector<Gradient> &gradients,
                                const std::string &where,
                                const std::string &consequence) {
  for (size_t i = 0; i < gradients.size(); ++i) {
    if (!gradients[i].data)
      continue;
    const ArgDesc &decl = optimizer.decl(optimizer.params[i]);
    double value = 0;
    int64_t n =
        optimizer.session->states[optimizer.params[i].slot].value->numElements;
    int64_t index = firstNonFinite(gradients[i], n, &value);
    if (index >= 0)
      fail(MOE_STATUS_NON_FINITE,
           "{}: gradient 'grad.{}' (of parameter '{}', {}) is {} at element "
           "{}; {}",
           where, decl.name, decl.name, decl.signature(), value, index,
           consequence);
  }
  fail(MOE_STATUS_INTERNAL, "{}: the gradient norm is not finite", where);
}

/// Applies one AdamW step with `gradients` scaled by 1 / divisor.
moe_step_report step(moe_optimizer &optimizer,
                     const std::vector<Gradient> &gradients, int64_t divisor,
                     const std::string &where) {
  moe_session &session = *optimizer.session;
  const AdamWSettings &settings = optimizer.settings;
  double sum = 0;
  for (size_t i = 0; i < gradients.size(); ++i)
    if (gradients[i].data)
      sum += sumOfSquares(
          *session.pool, gradients[i],
          session.states[optimizer.params[i].slot].value->numElements);
  if (!std::isfinite(sum))
    failNonFinite(optimizer, gradients, where,
                  "parameters and optimizer moments are unchanged");

  moe_step_report report{};
  report.step = optimizer.steps + 1;
  report.lr = moe_lr_schedule_at(&settings.schedule, optimizer.steps);
  report.grad_norm = std::sqrt(sum) / double(divisor);
  report.clip_scale = 1;
  // As torch.nn.utils.clip_grad_norm_: the 1e-6 keeps a zero norm harmless.
  if (settings.maxGradNorm > 0)
    report.clip_scale =
        std::min(1.0, settings.maxGradNorm / (report.grad_norm + 1e-6));

  double t = double(report.step);
  UpdateScalars scalars;
  scalars.gradScale = float(report.clip_scale / double(divisor));
  // The moments are averages with weights beta and 1 - beta as rounded to
  // f32 (1 - beta is exact for beta >= 0.5), and the bias corrections use
  // the same beta: mixing in the exact 0.999 would skew v's correction by
  // 1.3e-5 relative.
  scalars.beta1 = float(settings.beta1);
  scalars.oneMinusBeta1 = 1.0f - scalars.beta1;
  scalars.beta2 = float(settings.beta2);
  scalars.oneMinusBeta2 = 1.0f - scalars.beta2;
  scalars.stepSize =
      float(report.lr / (1 - std::pow(double(scalars.beta1), t)));
  scalars.invSqrtBiasCorrection2 =
      float(1 / std::sqrt(1 - std::pow(double(scalars.beta2), t)));
  scalars.eps = float(settings.eps);

  std::unique_lock<TurnstileSharedMutex> lock(session.mutex);
  for (size_t i = 0; i < gradients.size(); ++i)
    if (gradients[i].data &&
        !session.states[optimizer.params[i].slot].initialized)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "{}: parameter '{}' has no value yet: call "
           "moe_session_init_parameters, moe_session_load_parameters or "
           "moe_session_set_parameter first",
           where, optimizer.decl(optimizer.params[i]).name);
  for (size_t i = 0; i < gradients.size(); ++i) {
    if (!gradients[i].data)
      continue;
    ParamState &param = optimizer.params[i];
    moe_tensor &value = *session.states[param.slot].value;
    scalars.decay = param.training == MOE_PARAM_TRAINED
                        ? float(1 - report.lr * settings.weightDecay)
                        : 1.0f;
    auto *m = static_cast<float *>(param.m->data);
    auto *v = static_cast<float *>(param.v->data);
    withType(value.dtype, [&](auto paramType) {
      using P = decltype(paramType);
      auto *p = static_cast<typename P::Storage *>(value.data);
      withType(gradients[i].dtype, [&](auto gradientType) {
        using G = decltype(gradientType);
        const auto *g =
            static_cast<const typename G::Storage *>(gradients[i].data);
        forEachChunk(*session.pool, value.numElements,
                     [&](int64_t, int64_t begin, int64_t end) {
                       adamwUpdate<P, G>(p, g, m, v, begin, end, scalars);
                     });
      });
    });
    session.states[param.slot].deviceCurrent = false;
    ++report.num_updated;
  }
  ++optimizer.steps;
  return report;
}

std::string stepName(const moe_optimizer &optimizer) {
  return fmt::format("optimizer step {}", optimizer.steps + 1);
}

void requireNothingAccumulated(const moe_optimizer &optimizer,
                               const char *function) {
  if (optimizer.numAccumulated > 0)
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "{}: {} accumulated micro-batch(es) are pending; take the step with "
         "moe_optimizer_step_accumulated or drop them with "
         "moe_optimizer_clear_accumulated",
         function, optimizer.numAccumulated.load());
}

} // namespace

ParamState *moe_optimizer::findParam(std::string_view name) {
  for (ParamState &param : params)
    if (decl(param).name == name)
      return &param;
  return nullptr;
}

void moe_optimizer::clearAccumulated() {
  for (ParamState &param : params)
    param.hasAccumulated = false;
  numAccumulated = 0;
}

extern "C" {

moe_status *moe_lr_schedule_check(const moe_lr_schedule *schedule) {
  return guard([&] {
    requireArg(schedule, "moe_lr_schedule_check", "schedule");
    const moe_lr_schedule &s = *schedule;
    if (s.decay != MOE_LR_CONSTANT && s.decay != MOE_LR_COSINE &&
        s.decay != MOE_LR_LINEAR)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "learning-rate schedule: decay {} is not MOE_LR_CONSTANT, "
           "MOE_LR_COSINE or MOE_LR_LINEAR",
           static_cast<int>(s.decay));
    if (!(s.lr >= 0) || !std::isfinite(s.lr))
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "learning-rate schedule: lr is {}, expected a finite value >= 0",
           s.lr);
    if (s.warmup_steps < 0)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "learning-rate schedule: warmup_steps is {}, expected >= 0",
           s.warmup_steps);
    if (s.decay == MOE_LR_CONSTANT)
      return;
    if (!(s.min_lr >= 0 && s.min_lr <= s.lr))
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "learning-rate schedule: min_lr is {}, expected a value in [0, lr "
           "= {}]",
           s.min_lr, s.lr);
    if (s.total_steps < s.warmup_steps)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "learning-rate schedule: total_steps is {}, less than warmup_steps "
           "({})",
           s.total_steps, s.warmup_steps);
  });
}

double moe_lr_schedule_at(const moe_lr_schedule *schedule, int64_t step) {
  if (step < 0)
    return std::nan("");
  if (moe_status *status = moe_lr_schedule_check(schedule)) {
    moe_status_free(status);
    return std::nan("");
  }
  const moe_lr_schedule &s = *schedule;
  if (step < s.warmup_steps)
    return s.lr * double(step + 1) / double(s.warmup_steps);
  if (s.decay == MOE_LR_CONSTANT)
    return s.lr;
  if (step >= s.total_steps)
    return s.min_lr;
  double progress =
      double(step - s.warmup_steps) / double(s.total_steps - s.warmup_steps);
  double remaining = s.decay == MOE_LR_COSINE
                         ? 0.5 * (1 + std::cos(M_PI * progress))
                         : 1 - progress;
  return s.min_lr + (s.lr - s.min_lr) * remaining;
}

void moe_adamw_config_init(moe_adamw_config *config) {
  if (!config)
    return;
  *config = moe_adamw_config{};
  config->schedule.decay = MOE_LR_CONSTANT;
  config->schedule.lr = 1e-3;
  config->beta1 = 0.9;
  config->beta2 = 0.999;
  config->eps = 1e-8;
  config->weight_decay = 0.01;
}

moe_status *moe_optimizer_create(moe_session *session,
                                 const moe_adamw_config *config,
                                 moe_optimizer **out) {
  return guard([&] {
    requireArg(session, "moe_optimizer_create", "session");
    requireArg(config, "moe_optimizer_create", "config");
    requireArg(out, "moe_optimizer_create", "out");
    checkConfig(*config);
    auto optimizer = std::make_unique<moe_optimizer>();
    moe_session_retain(session);
    optimizer->session.reset(session);
    optimizer->settings = {config->schedule,     config->beta1,
                           config->beta2,        config->eps,
                           config->weight_decay, config->max_grad_norm};
    std::vector<bool> frozenGlobUsed(config->num_frozen, false);
    for (size_t slot = 0; slot < session->states.size(); ++slot) {
      const ArgDesc &decl = *session->states[slot].decl;
      if (decl.role != MOE_ROLE_PARAMETER)
        continue;
      ParamState param;
      param.slot = slot;
      for (int32_t i = 0; i < config->num_frozen; ++i)
        if (fnmatch(config->frozen[i], decl.name.c_str(), 0) == 0)
          param.frozenByName = frozenGlobUsed[i] = true;
      bool decays =
          config->no_decay
              ? !matchesAny(config->no_decay, config->num_no_decay, decl.name)
              : decl.shape.size() > 1;
      param.training = param.frozenByName || !isTrainableDType(decl.dtype)
                           ? MOE_PARAM_FROZEN
                       : decays ? MOE_PARAM_TRAINED
                                : MOE_PARAM_TRAINED_NO_DECAY;
      if (param.trained()) {
        param.m = newTensor(MOE_F32, decl.shape);
        param.v = newTensor(MOE_F32, decl.shape);
      }
      optimizer->params.push_back(std::move(param));
    }
    // A frozen glob that matches nothing is most likely a typo, which would
    // silently train what was meant to stay fixed.
    for (int32_t i = 0; i < config->num_frozen; ++i)
      if (!frozenGlobUsed[i])
        fail(MOE_STATUS_INVALID_ARGUMENT,
             "moe_optimizer_create: frozen glob '{}' matches no parameter of "
             "model '{}'",
             config->frozen[i], session->model->path);
    *out = optimizer.release();
  });
}

void moe_optimizer_retain(moe_optimizer *optimizer) {
  if (optimizer)
    optimizer->refs.fetch_add(1, std::memory_order_relaxed);
}

void moe_optimizer_release(moe_optimizer *optimizer) {
  if (optimizer && optimizer->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete optimizer;
}

moe_session *moe_optimizer_get_session(const moe_optimizer *optimizer) {
  return optimizer->session.get();
}

int64_t moe_optimizer_step_count(const moe_optimizer *optimizer) {
  return optimizer->steps;
}

double moe_optimizer_next_lr(const moe_optimizer *optimizer) {
  return moe_lr_schedule_at(&optimizer->settings.schedule, optimizer->steps);
}

moe_param_training moe_optimizer_param_training(const moe_optimizer *optimizer,
                                                const char *name) {
  if (!name)
    return MOE_PARAM_UNKNOWN;
  // The list and each parameter's treatment are fixed at creation.
  ParamState *param = const_cast<moe_optimizer *>(optimizer)->findParam(name);
  return param ? param->training : MOE_PARAM_UNKNOWN;
}

moe_status *moe_optimizer_get_state(moe_optimizer *optimizer, const char *name,
                                    moe_tensor **out) {
  return guard([&] {
    requireArg(optimizer, "moe_optimizer_get_state", "optimizer");
    requireArg(name, "moe_optimizer_get_state", "name");
    requireArg(out, "moe_optimizer_get_state", "out");
    std::lock_guard<std::mutex> lock(optimizer->mutex);
    for (ParamState &param : optimizer->params) {
      if (!param.trained())
        continue;
      const std::string &paramName = optimizer->decl(param).name;
      if (name == firstMomentName(paramName)) {
        *out = copyTensor(*param.m).release();
        return;
      }
      if (name == secondMomentName(paramName)) {
        *out = copyTensor(*param.v).release();
        return;
      }
    }
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "moe_optimizer_get_state: the optimizer has no state '{}'; its "
         "names are optimizer.m.P and optimizer.v.P for a trained parameter "
         "P",
         name);
  });
}

moe_status *moe_optimizer_step(moe_optimizer *optimizer,
                               const moe_tensor_list *gradients,
                               moe_step_report *report) {
  return guard([&] {
    requireArg(optimizer, "moe_optimizer_step", "optimizer");
    requireArg(gradients, "moe_optimizer_step", "gradients");
    std::lock_guard<std::mutex> lock(optimizer->mutex);
    requireNothingAccumulated(*optimizer, "moe_optimizer_step");
    std::string where = stepName(*optimizer);
    moe_step_report done = step(
        *optimizer, matchGradients(*optimizer, *gradients, where), 1, where);
    if (report)
      *report = done;
  });
}

moe_status *moe_optimizer_accumulate(moe_optimizer *optimizer,
                                     const moe_tensor_list *gradients) {
  return guard([&] {
    requireArg(optimizer, "moe_optimizer_accumulate", "optimizer");
    requireArg(gradients, "moe_optimizer_accumulate", "gradients");
    std::lock_guard<std::mutex> lock(optimizer->mutex);
    std::string where =
        fmt::format("micro-batch {} of {}", optimizer->numAccumulated + 1,
                    stepName(*optimizer));
    std::vector<Gradient> matched =
        matchGradients(*optimizer, *gradients, where);
    ThreadPool &pool = *optimizer->session->pool;
    for (size_t i = 0; i < matched.size(); ++i) {
      if (!matched[i].data)
        continue;
      ParamState &param = optimizer->params[i];
      // Checked here, before anything is added, so that the message names
      // the micro-batch and the buffers stay as they were.
      double value = 0;
      if (firstNonFinite(matched[i], param.m->numElements, &value) >= 0)
        failNonFinite(*optimizer, matched, where, "nothing was accumulated");
      if (!param.accumulated)
        param.accumulated = newTensor(MOE_F32, param.m->shape);
    }
    for (size_t i = 0; i < matched.size(); ++i) {
      if (!matched[i].data)
        continue;
      ParamState &param = optimizer->params[i];
      auto *sum = static_cast<float *>(param.accumulated->data);
      bool first = !param.hasAccumulated;
      withType(matched[i].dtype, [&](auto type) {
        using G = decltype(type);
        const auto *g =
            static_cast<const typename G::Storage *>(matched[i].data);
        forEachChunk(pool, param.m->numElements,
                     [&](int64_t, int64_t begin, int64_t end) {
                       for (int64_t e = begin; e < end; ++e)
                         sum[e] =
                             first ? G::load(g[e]) : sum[e] + G::load(g[e]);
                     });
      });
      param.hasAccumulated = true;
    }
    ++optimizer->numAccumulated;
  });
}

int32_t moe_optimizer_num_accumulated(const moe_optimizer *optimizer) {
  return optimizer->numAccumulated;
}

moe_status *moe_optimizer_step_accumulated(moe_optimizer *optimizer,
                                           int64_t divisor,
                                           moe_step_report *report) {
  return guard([&] {
    requireArg(optimizer, "moe_optimizer_step_accumulated", "optimizer");
    std::lock_guard<std::mutex> lock(optimizer->mutex);
    std::string where = stepName(*optimizer);
    if (divisor < 1)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "{}: the divisor of the accumulated gradients is {}, expected >= 1",
           where, divisor);
    if (optimizer->numAccumulated == 0)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "{}: no micro-batch gradients were accumulated; call "
           "moe_optimizer_accumulate first",
           where);
    std::vector<Gradient> sums(optimizer->params.size());
    for (size_t i = 0; i < sums.size(); ++i)
      if (optimizer->params[i].hasAccumulated)
        sums[i] = {optimizer->params[i].accumulated->data, MOE_F32};
    moe_step_report done =
        step(*optimizer, sums, divisor,
             fmt::format("{} (sum of {} micro-batches)", where,
                         optimizer->numAccumulated.load()));
    optimizer->clearAccumulated();
    if (report)
      *report = done;
  });
}

moe_status *moe_optimizer_clear_accumulated(moe_optimizer *optimizer) {
  return guard([&] {
    requireArg(optimizer, "moe_optimizer_clear_accumulated", "optimizer");
    std::lock_guard<std::mutex> lock(optimizer->mutex);
    optimizer->clearAccumulated();
  });
}

moe_status *moe_check_finite(const moe_tensor *tensor, const char *name,
                             int64_t step) {
  return guard([&] {
    requireArg(tensor, "moe_check_finite", "tensor");
    if (!isFloat(tensor->dtype))
      return;
    for (int64_t i = 0; i < tensor->numElements; ++i) {
      double value = loadDouble(tensor->data, i, tensor->dtype);
      if (std::isfinite(value))
        continue;
      const char *what = name ? name : "tensor";
      if (tensor->shape.empty())
        fail(MOE_STATUS_NON_FINITE, "step {}: {} is {}", step, what, value);
      fail(MOE_STATUS_NON_FINITE, "step {}: {} ({}) is {} at element {}", step,
           what, describe(*tensor), value, i);
    }
  });
}

} // extern "C"
