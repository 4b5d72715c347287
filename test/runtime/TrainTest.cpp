//===- TrainTest.cpp - AdamW, clipping, schedules, accumulation -----------===//
//
// The optimizer is checked against a reference written here in double
// precision from the AdamW paper (Loshchilov & Hutter, "Decoupled Weight
// Decay Regularization", Algorithm 2), with the learning rate applied as
// PyTorch's AdamW does: theta -= lr * (mhat / (sqrt(vhat) + eps) + wd *
// theta).
//
//===----------------------------------------------------------------------===//

#include "TrainTestUtil.h"

#include <atomic>
#include <cstdio>
#include <limits>
#include <map>
#include <thread>

using namespace moert::test;

namespace {

struct Hyper {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.01;
};

/// AdamW in double precision. Parameters of rank 2 decay; rank 1 do not
/// (the optimizer's default rule). f16 and bf16 parameters are rounded to
/// their dtype after each step, as storing them does.
class ReferenceAdamW {
public:
  ReferenceAdamW(const moert::Session &session, Hyper hyper) : hyper(hyper) {
    for (const ParamSpec &spec : trainParams()) {
      State &state = states[spec.name];
      state.spec = spec;
      state.p = toDoubles(session.getParameter(spec.name));
      state.m.assign(state.p.size(), 0);
      state.v.assign(state.p.size(), 0);
    }
  }

  void step(const moert::TensorList &gradients, double lr,
            double gradScale = 1) {
    ++t;
    for (auto &[name, state] : states) {
      moert::Tensor gradient = gradients.find("grad." + name);
      if (!gradient)
        continue;
      std::vector<double> g = toDoubles(gradient);
      bool decays = state.spec.shape.size() >= 2;
      for (size_t i = 0; i < g.size(); ++i) {
        double gi = g[i] * gradScale;
        state.m[i] = hyper.beta1 * state.m[i] + (1 - hyper.beta1) * gi;
        state.v[i] = hyper.beta2 * state.v[i] + (1 - hyper.beta2) * gi * gi;
        double mHat = state.m[i] / (1 - std::pow(hyper.beta1, t));
        double vHat = state.v[i] / (1 - std::pow(hyper.beta2, t));
        state.p[i] -= lr * (mHat / (std::sqrt(vHat) + hyper.eps) +
                            (decays ? hyper.weightDecay * state.p[i] : 0));
      }
      if (state.spec.dtype != MOE_F32)
        state.p = roundTo(state.spec.dtype, state.spec.shape, state.p);
    }
  }

  struct State {
    ParamSpec spec;
    std::vector<double> p, m, v;
  };
  std::map<std::string, State> states;

private:
  Hyper hyper;
  int t = 0;
};

/// The largest |actual - expected| / (|expected| + floor) over a tensor. The
/// floor, near the size of one update, keeps parameters that pass through
/// zero from turning f32 rounding of an update into a large relative error.
double maxRelativeError(const std::vector<double> &actual,
                        const std::vector<double> &expected,
                        double floor = 1e-2) {
  double worst = 0;
  for (size_t i = 0; i < actual.size(); ++i)
    worst = std::max(worst, std::fabs(actual[i] - expected[i]) /
                                (std::fabs(expected[i]) + floor));
  return worst;
}

/// The largest |actual - expected| relative to the largest |expected|: for
/// moments, which pass through zero.
double maxScaledError(const std::vector<double> &actual,
                      const std::vector<double> &expected) {
  double worst = 0, scale = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    worst = std::max(worst, std::fabs(actual[i] - expected[i]));
    scale = std::max(scale, std::fabs(expected[i]));
  }
  return worst / scale;
}

/// Relative precision of a dtype's significand (one unit in the last place
/// at 1.0).
double epsilonOf(moe_dtype dtype) {
  return dtype == MOE_BF16 ? 0x1p-7 : dtype == MOE_F16 ? 0x1p-10 : 0x1p-23;
}

/// The parameters and moments of the optimizer, to compare states.
std::map<std::string, moert::Tensor> snapshot(const moert::Optimizer &opt) {
  std::map<std::string, moert::Tensor> state;
  moert::Session session = opt.session();
  for (const moert::ArgInfo &info : session.parameters()) {
    state[info.name] = session.getParameter(info.name);
    if (opt.paramTraining(info.name) >= MOE_PARAM_TRAINED) {
      state["optimizer.m." + info.name] = opt.state("optimizer.m." + info.name);
      state["optimizer.v." + info.name] = opt.state("optimizer.v." + info.name);
    }
  }
  return state;
}

void expectSameState(const std::map<std::string, moert::Tensor> &a,
                     const std::map<std::string, moert::Tensor> &b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto &[name, tensor] : a) {
    SCOPED_TRACE(name);
    expectSameTensor(tensor, b.at(name));
  }
}

moert::AdamWConfig cosineConfig() {
  moert::AdamWConfig config;
  config.schedule = {MOE_LR_COSINE, 0.02, 0.002, 2, 6};
  config.weightDecay = 0.1;
  return config;
}

TEST(LrSchedule, WarmupThenDecayAtChosenSteps) {
  // Hand-computed: warmup 4 to lr 1; decay over steps 4..12 to 0.1.
  moert::LrSchedule cosine{MOE_LR_COSINE, 1.0, 0.1, 4, 12};
  moert::LrSchedule linear{MOE_LR_LINEAR, 1.0, 0.1, 4, 12};
  moert::LrSchedule constant{MOE_LR_CONSTANT, 1.0, 0.1, 4, 0};
  for (const moert::LrSchedule *s : {&cosine, &linear, &constant}) {
    EXPECT_DOUBLE_EQ(s->at(0), 0.25);
    EXPECT_DOUBLE_EQ(s->at(1), 0.5);
    EXPECT_DOUBLE_EQ(s->at(3), 1.0);
    EXPECT_DOUBLE_EQ(s->at(4), 1.0);
  }
  // Cosine: p = 2/8 gives 0.1 + 0.9 (1 + cos(pi / 4)) / 2.
  EXPECT_NEAR(cosine.at(6), 0.8681980515339464, 1e-15);
  EXPECT_NEAR(cosine.at(8), 0.55, 1e-15);
  EXPECT_NEAR(cosine.at(11), 0.1 + 0.9 * 0.03806023374435663, 1e-15);
  EXPECT_DOUBLE_EQ(cosine.at(12), 0.1);
  EXPECT_DOUBLE_EQ(cosine.at(1000), 0.1);
  EXPECT_NEAR(linear.at(6), 0.775, 1e-15);
  EXPECT_NEAR(linear.at(10), 0.325, 1e-15);
  EXPECT_DOUBLE_EQ(linear.at(12), 0.1);
  EXPECT_DOUBLE_EQ(constant.at(6), 1.0);
  EXPECT_DOUBLE_EQ(constant.at(1000000), 1.0);
  // No warmup: the first step has the peak rate.
  moert::LrSchedule noWarmup{MOE_LR_COSINE, 3e-4, 0, 0, 100};
  EXPECT_DOUBLE_EQ(noWarmup.at(0), 3e-4);
  EXPECT_NEAR(noWarmup.at(50), 1.5e-4, 1e-18);
  // The C function is the same pure function.
  moe_lr_schedule c = cosine.toC();
  for (int64_t step : {0, 5, 9, 40})
    EXPECT_EQ(moe_lr_schedule_at(&c, step), cosine.at(step));
}

TEST(LrSchedule, InvalidSchedulesAreRejected) {
  struct Case {
    moert::LrSchedule schedule;
    const char *message;
  } cases[] = {
      {{MOE_LR_COSINE, -1, 0, 0, 10}, "lr is -1"},
      {{MOE_LR_COSINE, std::nan(""), 0, 0, 10}, "lr is nan"},
      {{MOE_LR_COSINE, 1, 2, 0, 10}, "min_lr is 2, expected a value in [0"},
      {{MOE_LR_LINEAR, 1, 0, 20, 10}, "total_steps is 10, less than warmup"},
      {{MOE_LR_CONSTANT, 1, 0, -1, 0}, "warmup_steps is -1"},
      {{moe_lr_decay(7), 1, 0, 0, 0}, "decay 7 is not"},
  };
  for (const Case &c : cases) {
    expectError([&] { c.schedule.check(); }, MOE_STATUS_INVALID_ARGUMENT,
                {"learning-rate schedule", c.message});
    moe_lr_schedule raw = c.schedule.toC();
    EXPECT_TRUE(std::isnan(moe_lr_schedule_at(&raw, 0)));
  }
  moe_lr_schedule valid = moert::LrSchedule{}.toC();
  EXPECT_TRUE(std::isnan(moe_lr_schedule_at(&valid, -1)));
  EXPECT_TRUE(std::isnan(moe_lr_schedule_at(nullptr, 0)));
  expectStatus(moe_lr_schedule_check(nullptr), MOE_STATUS_INVALID_ARGUMENT,
               {"'schedule' is NULL"});
  // Constant schedules ignore min_lr and total_steps.
  moert::LrSchedule{MOE_LR_CONSTANT, 1, 5, 3, 0}.check();
}

TEST(AdamW, MatchesReferenceForF32Bf16AndF16Parameters) {
  for (uint32_t seed : {1u, 2u}) {
    SCOPED_TRACE(seed);
    moert::Session session = trainSession(seed * 10);
    moert::AdamWConfig config = cosineConfig();
    moert::Optimizer optimizer(session, config);
    Hyper hyper;
    hyper.weightDecay = config.weightDecay;
    ReferenceAdamW reference(session, hyper);
    std::map<std::string, double> worst, worstMoment;
    for (int64_t step = 0; step < 7; ++step) {
      moert::TensorList gradients =
          randomGradients(seed * 100 + step * 10, step % 2 ? 0.3f : 2.0f);
      double lr = optimizer.nextLr();
      EXPECT_EQ(lr, config.schedule.at(step));
      moert::StepReport report = optimizer.step(gradients);
      EXPECT_EQ(report.step, step + 1);
      EXPECT_EQ(report.lr, lr);
      EXPECT_EQ(report.clip_scale, 1.0);
      EXPECT_EQ(report.num_updated, 5);
      EXPECT_EQ(optimizer.stepCount(), step + 1);
      reference.step(gradients, lr);
      for (auto &[name, state] : reference.states) {
        SCOPED_TRACE(name);
        std::vector<double> p = toDoubles(session.getParameter(name));
        double error = maxRelativeError(p, state.p);
        worst[name] = std::max(worst[name], error);
        // f32 parameters: the update runs in f32. bf16 and f16: both round
        // to the dtype, which may land one unit apart; a unit apart at one
        // step stays within about two later.
        EXPECT_LE(error, state.spec.dtype == MOE_F32
                             ? 1e-5
                             : 2 * epsilonOf(state.spec.dtype));
        for (const char *moment : {"m", "v"}) {
          std::vector<double> actual = toDoubles(
              optimizer.state(std::string("optimizer.") + moment + "." + name));
          const std::vector<double> &expected =
              *moment == 'm' ? state.m : state.v;
          double momentError = maxScaledError(actual, expected);
          worstMoment[name] = std::max(worstMoment[name], momentError);
          // f32 arithmetic weighs v by 1 - f32(0.999), 1.3e-5 below 0.001;
          // the bias correction divides the same factor out again.
          EXPECT_LE(momentError, 3e-5) << moment;
        }
      }
    }
    for (const auto &[name, error] : worst)
      std::printf("[ measured ] seed %u: AdamW '%s' (%s): max |error| / (|p| + "
                  "0.01) %.3g of parameters, %.3g of moments (relative to "
                  "their largest) after 7 steps\n",
                  seed, name.c_str(),
                  moe_dtype_name(reference.states[name].spec.dtype), error,
                  worstMoment[name]);
  }
}

TEST(AdamW, ClipsToTheGlobalNorm) {
  for (double maxNorm : {0.5, 1e6}) {
    SCOPED_TRACE(maxNorm);
    moert::Session session = trainSession(3);
    moert::AdamWConfig config = cosineConfig();
    config.maxGradNorm = maxNorm;
    moert::Optimizer optimizer(session, config);
    Hyper hyper;
    hyper.weightDecay = config.weightDecay;
    ReferenceAdamW reference(session, hyper);
    for (int64_t step = 0; step < 4; ++step) {
      moert::TensorList gradients = randomGradients(40 + step);
      double squares = 0;
      for (int32_t i = 0; i < gradients.size(); ++i)
        for (double g : toDoubles(gradients.at(i)))
          squares += g * g;
      double norm = std::sqrt(squares);
      double lr = optimizer.nextLr();
      moert::StepReport report = optimizer.step(gradients);
      EXPECT_NEAR(report.grad_norm, norm, 1e-12 * norm);
      double scale = std::min(1.0, maxNorm / (norm + 1e-6));
      EXPECT_NEAR(report.clip_scale, scale, 1e-15);
      // About 78,000 elements of N(0.25, 1): a norm near 290.
      EXPECT_EQ(report.clip_scale < 0.01, maxNorm < 1);
      reference.step(gradients, lr, scale);
    }
    for (auto &[name, state] : reference.states) {
      double error =
          maxRelativeError(toDoubles(session.getParameter(name)), state.p);
      EXPECT_LE(error, state.spec.dtype == MOE_F32
                           ? 1e-5
                           : 2 * epsilonOf(state.spec.dtype))
          << name;
    }
  }
}

TEST(AdamW, ConfigDefaultsAndParameterTreatment) {
  moe_adamw_config c;
  moe_adamw_config_init(&c);
  EXPECT_EQ(c.schedule.decay, MOE_LR_CONSTANT);
  EXPECT_EQ(c.schedule.lr, 1e-3);
  EXPECT_EQ(c.beta1, 0.9);
  EXPECT_EQ(c.beta2, 0.999);
  EXPECT_EQ(c.eps, 1e-8);
  EXPECT_EQ(c.weight_decay, 0.01);
  EXPECT_EQ(c.max_grad_norm, 0);
  EXPECT_EQ(c.no_decay, nullptr);
  EXPECT_EQ(c.num_frozen, 0);

  moert::Session session = trainSession(5);
  moert::Optimizer byRank(session, {});
  EXPECT_EQ(byRank.paramTraining("w"), MOE_PARAM_TRAINED);
  EXPECT_EQ(byRank.paramTraining("b"), MOE_PARAM_TRAINED_NO_DECAY);
  EXPECT_EQ(byRank.paramTraining("e"), MOE_PARAM_TRAINED);
  EXPECT_EQ(byRank.paramTraining("h"), MOE_PARAM_TRAINED_NO_DECAY);
  EXPECT_EQ(byRank.paramTraining("steps"), MOE_PARAM_FROZEN); // i32
  EXPECT_EQ(byRank.paramTraining("nope"), MOE_PARAM_UNKNOWN);
  EXPECT_EQ(moe_optimizer_param_training(byRank.get(), nullptr),
            MOE_PARAM_UNKNOWN);

  moert::AdamWConfig config;
  config.noDecay = std::vector<std::string>{"e", "w"};
  config.frozen = {"bi?"};
  moert::Optimizer byGlob(session, config);
  EXPECT_EQ(byGlob.paramTraining("w"), MOE_PARAM_TRAINED_NO_DECAY);
  EXPECT_EQ(byGlob.paramTraining("e"), MOE_PARAM_TRAINED_NO_DECAY);
  EXPECT_EQ(byGlob.paramTraining("b"), MOE_PARAM_TRAINED);
  EXPECT_EQ(byGlob.paramTraining("big"), MOE_PARAM_FROZEN);
  config.noDecay = std::vector<std::string>{};
  config.frozen = {};
  moert::Optimizer allDecay(session, config);
  EXPECT_EQ(allDecay.paramTraining("b"), MOE_PARAM_TRAINED);
  EXPECT_EQ(allDecay.paramTraining("h"), MOE_PARAM_TRAINED);
}

TEST(AdamW, WeightDecayFollowsTheRule) {
  // With zero gradients the Adam term is 0/(0 + eps) = 0: what changes is
  // decay alone, p * (1 - lr wd) in f32.
  moert::Session session = trainSession(6);
  moert::AdamWConfig config;
  config.schedule.lr = 0.5;
  config.weightDecay = 0.2;
  config.noDecay = std::vector<std::string>{"b*"};
  moert::Optimizer optimizer(session, config);
  std::map<std::string, std::vector<float>> before;
  for (const char *name : {"w", "b", "big"})
    before[name] = session.getParameter(name).toVector<float>();
  moert::TensorList zeros;
  for (const ParamSpec &param : trainParams())
    zeros.add("grad." + param.name,
              moert::Tensor::zeros(param.dtype, param.shape));
  optimizer.step(zeros);
  std::vector<float> w = session.getParameter("w").toVector<float>();
  for (size_t i = 0; i < w.size(); ++i)
    EXPECT_EQ(w[i], before["w"][i] * (1.0f - 0.5f * 0.2f));
  EXPECT_EQ(session.getParameter("b").toVector<float>(), before["b"]);
  EXPECT_EQ(session.getParameter("big").toVector<float>(), before["big"]);
}

TEST(AdamW, RejectsBadConfigs) {
  moert::Session session = trainSession(7);
  auto expectRejected = [&](const moert::AdamWConfig &config,
                            std::initializer_list<std::string> parts) {
    expectError([&] { moert::Optimizer optimizer(session, config); },
                MOE_STATUS_INVALID_ARGUMENT, parts);
  };
  moert::AdamWConfig config;
  config.beta1 = 1;
  expectRejected(config, {"beta1 is 1, expected a value in [0, 1)"});
  config = {};
  config.beta2 = -0.5;
  expectRejected(config, {"beta2 is -0.5"});
  config = {};
  config.eps = 0;
  expectRejected(config, {"eps is 0"});
  config = {};
  config.weightDecay = std::numeric_limits<double>::infinity();
  expectRejected(config, {"weight_decay is inf"});
  config = {};
  config.maxGradNorm = -1;
  expectRejected(config, {"max_grad_norm is -1"});
  config = {};
  config.schedule = {MOE_LR_COSINE, 1, 0, 5, 2};
  expectRejected(config, {"moe_optimizer_create: learning-rate schedule",
                          "total_steps is 2"});
  config = {};
  config.frozen = {"layers.*"};
  expectRejected(config,
                 {"frozen glob 'layers.*' matches no parameter", "train.so"});
  config = {};
  config.frozen = {""};
  expectRejected(config, {"frozen[0] is empty"});

  moe_adamw_config c;
  moe_adamw_config_init(&c);
  c.num_no_decay = 2;
  moe_optimizer *out = nullptr;
  expectStatus(moe_optimizer_create(session.get(), &c, &out),
               MOE_STATUS_INVALID_ARGUMENT,
               {"no_decay is NULL (the rank rule) but num_no_decay is 2"});
  moe_adamw_config_init(&c);
  const char *globs[] = {"w", nullptr};
  c.frozen = globs;
  c.num_frozen = 2;
  expectStatus(moe_optimizer_create(session.get(), &c, &out),
               MOE_STATUS_INVALID_ARGUMENT, {"frozen[1] is NULL"});
  expectStatus(moe_optimizer_create(nullptr, &c, &out),
               MOE_STATUS_INVALID_ARGUMENT, {"'session' is NULL"});
  EXPECT_EQ(out, nullptr);
}

TEST(AdamW, GradientsAreValidatedByName) {
  moert::Session session = trainSession(8);
  moert::Optimizer optimizer(session, cosineConfig());
  optimizer.step(randomGradients(1));
  auto before = snapshot(optimizer);
  auto withExtra = [](const std::string &name, const moert::Tensor &tensor) {
    moert::TensorList gradients = randomGradients(2);
    gradients.add(name, tensor);
    return gradients;
  };
  expectError(
      [&] { optimizer.step(withExtra("grad.q", randomTensor({2}, 1))); },
      MOE_STATUS_INVALID_ARGUMENT,
      {"optimizer step 2: gradient 'grad.q' names no parameter of "
       "model",
       "train.so"});
  moert::TensorList wrongShape;
  wrongShape.add("grad.w", randomTensor({5, 3}, 1));
  expectError([&] { optimizer.step(wrongShape); }, MOE_STATUS_INVALID_ARGUMENT,
              {"gradient 'grad.w' is f32 [5, 3], but parameter 'w' is f32 "
               "[3, 5]"});
  moert::TensorList wrongDtype;
  wrongDtype.add("grad.e", randomTensor({7, 3}, 1));
  expectError([&] { optimizer.step(wrongDtype); }, MOE_STATUS_INVALID_ARGUMENT,
              {"gradient 'grad.e' is f32 [7, 3], but parameter 'e' is bf16 "
               "[7, 3]"});
  expectError(
      [&] {
        optimizer.step(withExtra(
            "grad.steps", moert::Tensor::fromVector<int32_t>({2}, {1, 1})));
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"gradient 'grad.steps' is for parameter 'steps' of dtype i32",
       "freeze it"});
  expectStatus(moe_optimizer_step(optimizer.get(), nullptr, nullptr),
               MOE_STATUS_INVALID_ARGUMENT, {"'gradients' is NULL"});
  expectSameState(before, snapshot(optimizer));
  EXPECT_EQ(optimizer.stepCount(), 1);

  // Results that are not gradients (the loss, metrics) are ignored, and a
  // frozen integer parameter's gradient too.
  moert::AdamWConfig config = cosineConfig();
  config.frozen = {"steps"};
  moert::Optimizer freezing(session, config);
  moert::TensorList outputs =
      withExtra("grad.steps", moert::Tensor::fromVector<int32_t>({2}, {1, 1}));
  outputs.add("loss", moert::Tensor::fromVector<float>({}, {1.5f}));
  EXPECT_EQ(freezing.step(outputs).num_updated, 5);
}

TEST(AdamW, FrozenParametersStayBitIdentical) {
  moert::Session session = trainSession(9);
  moert::AdamWConfig config = cosineConfig();
  config.frozen = {"b", "?ig"};
  moert::Optimizer optimizer(session, config);
  moert::Tensor b = session.getParameter("b"),
                big = session.getParameter("big");
  moert::Tensor w = session.getParameter("w");
  for (uint32_t step = 0; step < 5; ++step)
    EXPECT_EQ(optimizer.step(randomGradients(step * 7)).num_updated, 3);
  expectSameTensor(session.getParameter("b"), b);
  expectSameTensor(session.getParameter("big"), big);
  EXPECT_NE(session.getParameter("w").toVector<float>(), w.toVector<float>());
  expectError([&] { optimizer.state("optimizer.m.b"); },
              MOE_STATUS_INVALID_ARGUMENT,
              {"no state 'optimizer.m.b'", "trained parameter"});
}

TEST(AdamW, TrainsTheFixtureModel) {
  moert::Session session = trainSession(11);
  moert::AdamWConfig config;
  config.schedule = {MOE_LR_COSINE, 0.05, 0.005, 5, 60};
  config.maxGradNorm = 10;
  moert::Optimizer optimizer(session, config);
  moert::Tensor big = session.getParameter("big");
  moert::Tensor steps = session.getParameter("steps");
  moert::TensorList batch = trainBatch(16, 12);
  float first = 0, last = 0;
  for (int64_t step = 0; step < 60; ++step) {
    moert::TensorList outputs = session.run("train_step", batch);
    moert::checkFinite(outputs.at("loss"), "loss", step + 1);
    (step == 0 ? first : last) = outputs.at("loss").toVector<float>()[0];
    moert::StepReport report = optimizer.step(outputs);
    EXPECT_EQ(report.num_updated, 4); // big and steps have no gradient.
    EXPECT_GT(report.grad_norm, 0);
  }
  std::printf("[ measured ] train fixture: loss %.4g -> %.4g in 60 steps\n",
              first, last);
  EXPECT_LT(last, 0.5f * first);
  expectSameTensor(session.getParameter("big"), big);
  expectSameTensor(session.getParameter("steps"), steps);
}

TEST(AdamW, NonFiniteGradientsChangeNothing) {
  moert::Session session = trainSession(12), twin = trainSession(12);
  moert::Optimizer optimizer(session, cosineConfig()),
      twinOptimizer(twin, cosineConfig());
  for (uint32_t step = 0; step < 2; ++step) {
    optimizer.step(randomGradients(step));
    twinOptimizer.step(randomGradients(step));
  }
  auto before = snapshot(optimizer);
  struct Poison {
    const char *gradient;
    int64_t element;
    double value;
    const char *printed;
  } poisons[] = {
      {"grad.w", 7, std::numeric_limits<double>::infinity(), "inf"},
      {"grad.e", 20, std::nan(""), "nan"},
      {"grad.h", 0, -std::numeric_limits<double>::infinity(), "-inf"},
      {"grad.big", 77356, std::nan(""), "nan"},
  };
  for (const Poison &poison : poisons) {
    SCOPED_TRACE(poison.gradient);
    moert::TensorList gradients = randomGradients(50);
    moert::Tensor target = gradients.at(poison.gradient);
    moert::Tensor wide = target.cast(MOE_F64);
    wide.data<double>()[poison.element] = poison.value;
    moert::TensorList poisoned;
    for (int32_t i = 0; i < gradients.size(); ++i)
      poisoned.add(gradients.name(i), gradients.name(i) == poison.gradient
                                          ? wide.cast(target.dtype())
                                          : gradients.at(i));
    std::string element = "at element " + std::to_string(poison.element);
    expectError([&] { optimizer.step(poisoned); }, MOE_STATUS_NON_FINITE,
                {"optimizer step 3", std::string("'") + poison.gradient + "'",
                 std::string("is ") + poison.printed, element,
                 "parameters and optimizer moments are unchanged"});
    expectError([&] { optimizer.accumulate(poisoned); }, MOE_STATUS_NON_FINITE,
                {"micro-batch 1 of optimizer step 3", poison.gradient,
                 "nothing was accumulated"});
    EXPECT_EQ(optimizer.numAccumulated(), 0);
    EXPECT_EQ(optimizer.stepCount(), 2);
    expectSameState(before, snapshot(optimizer));
  }
  // The first offending parameter in session order is named.
  moert::TensorList two = randomGradients(51);
  static_cast<uint16_t *>(two.at("grad.h").data())[3] = 0x7c00; // f16 inf
  two.at("grad.w").data<float>()[2] = std::nanf("");
  expectError([&] { optimizer.step(two); }, MOE_STATUS_NON_FINITE,
              {"gradient 'grad.w'", "at element 2"});
  // Training goes on as if the failed steps never happened.
  optimizer.step(randomGradients(60));
  twinOptimizer.step(randomGradients(60));
  expectSameState(snapshot(twinOptimizer), snapshot(optimizer));
}

TEST(AdamW, CheckFiniteNamesTheStep) {
  moert::checkFinite(moert::Tensor::fromVector<float>({}, {2.5f}), "loss", 3);
  moert::checkFinite(moert::Tensor::fromVector<int32_t>({2}, {1, 2}), "n", 3);
  expectError(
      [&] {
        moert::checkFinite(
            moert::Tensor::fromVector<float>({}, {std::nanf("")}), "loss", 12);
      },
      MOE_STATUS_NON_FINITE, {"step 12: loss is nan"});
  moert::Tensor inf = moert::Tensor::fromVector<float>(
      {3}, {1.0f, 2.0f, -std::numeric_limits<float>::infinity()});
  expectError([&] { moert::checkFinite(inf.cast(MOE_BF16), "aux", 4); },
              MOE_STATUS_NON_FINITE,
              {"step 4: aux (bf16 [3]) is -inf at element 2"});
  moert::Tensor nan = moert::Tensor::fromVector<float>({}, {std::nanf("")});
  expectStatus(moe_check_finite(nan.get(), nullptr, 1), MOE_STATUS_NON_FINITE,
               {"step 1: tensor is nan"});
  EXPECT_STREQ(moe_status_code_name(MOE_STATUS_NON_FINITE), "non-finite value");
}

TEST(Accumulation, EqualsOneStepOnTheWholeBatch) {
  // The fixture's loss is a sum over rows, so the gradients of two halves add
  // up to the whole batch's, up to the rounding of the sums.
  for (uint32_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    moert::Session whole = trainSession(seed), parts = trainSession(seed);
    moert::Optimizer wholeOptimizer(whole, cosineConfig()),
        partsOptimizer(parts, cosineConfig());
    double worst = 0;
    for (int64_t step = 0; step < 4; ++step) {
      int64_t first = 3 + seed, second = 5;
      moert::TensorList batch =
          trainBatch(first + second, seed * 100 + uint32_t(step));
      std::vector<float> x = batch.at("x").toVector<float>(),
                         t = batch.at("target").toVector<float>();
      auto slice = [&](int64_t begin, int64_t rows) {
        return moert::TensorList{
            {"x", moert::Tensor::fromVector<float>(
                      {rows, 3},
                      std::vector<float>(x.begin() + begin * 3,
                                         x.begin() + (begin + rows) * 3))},
            {"target", moert::Tensor::fromVector<float>(
                           {rows, 5}, std::vector<float>(
                                          t.begin() + begin * 5,
                                          t.begin() + (begin + rows) * 5))}};
      };
      moert::StepReport expected =
          wholeOptimizer.step(whole.run("train_step", batch));
      partsOptimizer.accumulate(parts.run("train_step", slice(0, first)));
      partsOptimizer.accumulate(parts.run("train_step", slice(first, second)));
      EXPECT_EQ(partsOptimizer.numAccumulated(), 2);
      moert::StepReport actual = partsOptimizer.stepAccumulated(1);
      EXPECT_EQ(partsOptimizer.numAccumulated(), 0);
      EXPECT_EQ(actual.step, expected.step);
      EXPECT_EQ(actual.num_updated, 4);
      // The bf16 and f16 gradients of the halves round differently from
      // the whole batch's.
      EXPECT_NEAR(actual.grad_norm, expected.grad_norm,
                  1e-3 * expected.grad_norm);
      for (const char *name : {"w", "b", "e", "h"})
        worst = std::max(worst,
                         maxRelativeError(toDoubles(parts.getParameter(name)),
                                          toDoubles(whole.getParameter(name))));
    }
    std::printf("[ measured ] seed %u: accumulated vs whole-batch steps: max "
                "relative parameter difference %.3g after 4 steps\n",
                seed, worst);
    // Adam normalises the step, so gradient rounding barely shows; bf16 and
    // f16 parameters may round one unit apart.
    EXPECT_LE(worst, 2 * epsilonOf(MOE_BF16));
    for (const char *name : {"w", "b"})
      EXPECT_LE(maxRelativeError(toDoubles(parts.getParameter(name)),
                                 toDoubles(whole.getParameter(name))),
                1e-5)
          << name;
  }
}

TEST(Accumulation, MeanOfMicroBatchesIsExact) {
  // g + g = 2g and 2g / 2 = g exactly, so the mean of two copies is
  // bit-identical to one step with g; a sum of two copies is a step with 2g.
  moert::Session once = trainSession(21), twice = trainSession(21),
                 doubled = trainSession(21), summed = trainSession(21);
  moert::Optimizer onceOptimizer(once, cosineConfig()),
      twiceOptimizer(twice, cosineConfig()),
      doubledOptimizer(doubled, cosineConfig()),
      summedOptimizer(summed, cosineConfig());
  for (uint32_t step = 0; step < 3; ++step) {
    moert::TensorList g = randomGradients(30 + step);
    moert::TensorList g2;
    for (int32_t i = 0; i < g.size(); ++i) {
      moert::Tensor wide = g.at(i).cast(MOE_F64);
      for (int64_t e = 0; e < wide.numElements(); ++e)
        wide.data<double>()[e] *= 2;
      g2.add(g.name(i), wide.cast(g.at(i).dtype()));
    }
    moert::StepReport expected = onceOptimizer.step(g);
    twiceOptimizer.accumulate(g);
    twiceOptimizer.accumulate(g);
    moert::StepReport mean = twiceOptimizer.stepAccumulated(2);
    EXPECT_EQ(mean.grad_norm, expected.grad_norm);
    doubledOptimizer.step(g2);
    summedOptimizer.accumulate(g);
    summedOptimizer.accumulate(g);
    summedOptimizer.stepAccumulated(1);
  }
  expectSameParameters(twice, once);
  expectSameParameters(summed, doubled);
  expectSameState(snapshot(twiceOptimizer), snapshot(onceOptimizer));
}

TEST(Accumulation, MisuseIsReported) {
  moert::Session session = trainSession(22);
  moert::Optimizer optimizer(session, cosineConfig());
  expectError([&] { optimizer.stepAccumulated(1); },
              MOE_STATUS_INVALID_ARGUMENT,
              {"optimizer step 1: no micro-batch gradients were accumulated"});
  optimizer.accumulate(randomGradients(1));
  expectError([&] { optimizer.stepAccumulated(0); },
              MOE_STATUS_INVALID_ARGUMENT,
              {"divisor of the accumulated gradients is 0, expected >= 1"});
  expectError([&] { optimizer.step(randomGradients(2)); },
              MOE_STATUS_INVALID_ARGUMENT,
              {"1 accumulated micro-batch(es) are pending"});
  moert::TensorList bad;
  bad.add("grad.zz", randomTensor({1}, 1));
  expectError([&] { optimizer.accumulate(bad); }, MOE_STATUS_INVALID_ARGUMENT,
              {"micro-batch 2 of optimizer step 1: gradient 'grad.zz'"});
  EXPECT_EQ(optimizer.numAccumulated(), 1);
  auto before = snapshot(optimizer);
  optimizer.clearAccumulated();
  EXPECT_EQ(optimizer.numAccumulated(), 0);
  expectSameState(before, snapshot(optimizer));
  // After a clear, a parameter absent from the new micro-batches gets no
  // update.
  moert::TensorList onlyW;
  onlyW.add("grad.w", randomTensor({3, 5}, 3));
  moert::Tensor b = session.getParameter("b");
  optimizer.accumulate(onlyW);
  EXPECT_EQ(optimizer.stepAccumulated(1).num_updated, 1);
  expectSameTensor(session.getParameter("b"), b);
}

TEST(AdamW, StepsAndRunsFromSeveralThreads) {
  moert::Session session = trainSession(30, 3);
  moert::Optimizer optimizer(session, cosineConfig());
  moert::TensorList batch = trainBatch(8, 31);
  moert::TensorList input{{"x", batch.at("x")}};
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, runs{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t)
    readers.emplace_back([&] {
      while (!stop) {
        moert::Tensor y = session.run("forward", input).at("y");
        for (float value : y.toVector<float>())
          failures += !std::isfinite(value);
        session.getParameter("w");
        moe_optimizer_step_count(optimizer.get());
        moe_optimizer_next_lr(optimizer.get());
        ++runs;
      }
    });
  // Two trainers share the optimizer: their steps are serialised.
  std::thread other([&] {
    for (int i = 0; i < 20; ++i)
      optimizer.step(randomGradients(uint32_t(i), 0.5f));
  });
  for (int i = 0; i < 20; ++i)
    optimizer.step(session.run("train_step", batch));
  other.join();
  stop = true;
  for (std::thread &reader : readers)
    reader.join();
  EXPECT_EQ(failures, 0);
  EXPECT_GT(runs, 0);
  EXPECT_EQ(optimizer.stepCount(), 40);
}

TEST(AdamW, CApiHandlesNullArguments) {
  moert::Session session = trainSession(40);
  moert::Optimizer optimizer(session, {});
  EXPECT_EQ(optimizer.session().get(), session.get());
  EXPECT_EQ(optimizer.nextLr(), 1e-3);
  moe_optimizer_retain(nullptr);
  moe_optimizer_release(nullptr);
  moe_tensor *out = nullptr;
  expectStatus(moe_optimizer_get_state(optimizer.get(), nullptr, &out),
               MOE_STATUS_INVALID_ARGUMENT, {"'name' is NULL"});
  expectStatus(moe_optimizer_accumulate(nullptr, nullptr),
               MOE_STATUS_INVALID_ARGUMENT, {"'optimizer' is NULL"});
  expectStatus(moe_optimizer_step_accumulated(nullptr, 1, nullptr),
               MOE_STATUS_INVALID_ARGUMENT, {"'optimizer' is NULL"});
  expectStatus(moe_optimizer_clear_accumulated(nullptr),
               MOE_STATUS_INVALID_ARGUMENT, {"'optimizer' is NULL"});
  expectStatus(moe_check_finite(nullptr, "loss", 1),
               MOE_STATUS_INVALID_ARGUMENT, {"'tensor' is NULL"});
  moe_adamw_config_init(nullptr);
  EXPECT_EQ(out, nullptr);
}

} // namespace
