//===- CudaTest.cpp - Sessions on a CUDA device, through the fake driver --===//
//
// No GPU is needed: MOERT_LIBCUDA points the runtime at libfakecuda.so
// (fakecuda/fake_cuda.h), whose "device" is host memory and whose kernels
// are host functions of the fixture cuda_affine.c. These tests cover the
// runtime's CUDA plumbing (driver loading, device selection, memory,
// streams, module loading with the PTX fallback, error reporting); they say
// nothing about real GPUs or moec's device code.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include "fakecuda/fake_cuda.h"
#include "moe/runtime/moert_train.hpp"

#include <cmath>
#include <cstdlib>
#include <dlfcn.h>
#include <thread>

using namespace moert::test;

namespace {

/// Points the runtime at the fake driver with default settings, and
/// restores the environment afterwards.
class Cuda : public testing::Test {
protected:
  void SetUp() override {
    setenv("MOERT_LIBCUDA", MOERT_FAKE_CUDA, 1);
    for (const char *name : {"MOERT_FAKE_CUDA_DEVICES", "MOERT_FAKE_CUDA_ARCH",
                             "MOERT_FAKE_CUDA_FAIL"})
      unsetenv(name);
    fake = dlopen(MOERT_FAKE_CUDA, RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(fake, nullptr) << dlerror();
    liveAllocations = reinterpret_cast<fake_cuda_counter_fn>(
        dlsym(fake, FAKE_CUDA_LIVE_ALLOCATIONS));
    ptxLoads = reinterpret_cast<fake_cuda_counter_fn>(
        dlsym(fake, FAKE_CUDA_PTX_LOADS));
    ASSERT_TRUE(liveAllocations && ptxLoads);
  }
  void TearDown() override {
    for (const char *name : {"MOERT_LIBCUDA", "MOERT_FAKE_CUDA_DEVICES",
                             "MOERT_FAKE_CUDA_ARCH", "MOERT_FAKE_CUDA_FAIL"})
      unsetenv(name);
    dlclose(fake);
  }

  void *fake = nullptr;
  fake_cuda_counter_fn liveAllocations = nullptr, ptxLoads = nullptr;
};

const float offsets[4] = {0.5f, -0.25f, 1.0f, 2.0f};

moert::Session cudaSession(const std::string &name = "cuda_affine") {
  return moert::Session(moert::Model::load(fixture(name)),
                        moert::Device::cuda(0), 2);
}

void setRandomParameters(moert::Session &session, uint32_t seed) {
  session.setParameter("w", randomTensor({4, 4}, seed));
  session.setParameter("bias", randomTensor({4}, seed + 1));
}

/// y = (x @ w + bias) * scale + offsets, in double.
std::vector<double> referenceForward(const moert::Tensor &x,
                                     const moert::Tensor &w,
                                     const moert::Tensor &bias, double scale) {
  int64_t rows = x.shape()[0];
  const float *xs = x.data<float>(), *ws = w.data<float>(),
              *bs = bias.data<float>();
  std::vector<double> y(rows * 4);
  for (int64_t i = 0; i < rows; ++i)
    for (int j = 0; j < 4; ++j) {
      double acc = bs[j];
      for (int k = 0; k < 4; ++k)
        acc += double(xs[i * 4 + k]) * ws[k * 4 + j];
      y[i * 4 + j] = acc * scale + offsets[j];
    }
  return y;
}

/// mean((x @ w + bias - target)^2), in double.
double referenceLoss(const moert::Tensor &x, const moert::Tensor &target,
                     const moert::Tensor &w, const moert::Tensor &bias) {
  std::vector<double> pred = referenceForward(x, w, bias, 1.0);
  const float *t = target.data<float>();
  double sum = 0;
  for (size_t e = 0; e < pred.size(); ++e) {
    double diff = pred[e] - offsets[e % 4] - t[e];
    sum += diff * diff;
  }
  return sum / double(pred.size());
}

/// Largest |a - b| / max(|b|, 1) over the elements: relative for values of
/// magnitude 1 and more, absolute below (where f32 cancellation dominates).
double maxRelativeError(const float *actual,
                        const std::vector<double> &expected) {
  double worst = 0;
  for (size_t e = 0; e < expected.size(); ++e)
    worst = std::max(worst, std::abs(actual[e] - expected[e]) /
                                std::max(std::abs(expected[e]), 1.0));
  return worst;
}

moert::TensorList forwardInputs(int64_t rows, uint32_t seed, float scale) {
  return {{"x", randomTensor({rows, 4}, seed)},
          {"scale", moert::Tensor::fromVector<float>({}, {scale})}};
}

TEST_F(Cuda, ModelsReportTheirDevice) {
  EXPECT_EQ(moert::Model::load(fixture("cuda_affine")).device(),
            MOE_DEVICE_CUDA);
  EXPECT_EQ(moert::Model::load(fixture("linear")).device(), MOE_DEVICE_CPU);
  EXPECT_STREQ(moe_device_name(MOE_DEVICE_CUDA), "cuda");
  EXPECT_STREQ(moe_device_name(MOE_DEVICE_CPU), "cpu");
  EXPECT_EQ(moe_device_name(moe_device(7)), nullptr);
  EXPECT_STREQ(moe_status_code_name(MOE_STATUS_DEVICE_ERROR), "device error");
}

TEST_F(Cuda, ForwardMatchesTheReference) {
  moert::Session session = cudaSession();
  EXPECT_EQ(session.device().kind, MOE_DEVICE_CUDA);
  EXPECT_EQ(session.deviceDescription(),
            "cuda:0 (Fake CUDA device 0 (moert tests), sm_90)");
  int64_t idle = liveAllocations(); // The parameters' buffers.
  EXPECT_EQ(idle, 3);
  double worst = 0;
  for (uint32_t seed : {1u, 2u, 3u})
    for (int64_t rows : {1, 7, 33, 301}) { // 301 * 4 threads: 10 blocks.
      SCOPED_TRACE(testing::Message() << "seed " << seed << " rows " << rows);
      setRandomParameters(session, seed);
      float scale = 0.75f + 0.5f * float(seed);
      moert::TensorList inputs = forwardInputs(rows, seed + 10, scale);
      moert::TensorList out = session.run("forward", inputs);
      std::vector<double> expected =
          referenceForward(inputs.at("x"), session.getParameter("w"),
                           session.getParameter("bias"), scale);
      moert::Tensor y = out.at("y"), yt = out.at("yt");
      ASSERT_EQ(y.shape(), (std::vector<int64_t>{rows, 4}));
      ASSERT_EQ(yt.shape(), (std::vector<int64_t>{4, rows}));
      worst = std::max(worst, maxRelativeError(y.data<float>(), expected));
      int64_t positive = 0;
      for (int64_t i = 0; i < rows; ++i)
        for (int j = 0; j < 4; ++j) {
          EXPECT_EQ(yt.data<float>()[j * rows + i], y.data<float>()[i * 4 + j]);
          positive += expected[i * 4 + j] > 0;
        }
      EXPECT_EQ(out.at("positive").data<int64_t>()[0], positive);
      EXPECT_EQ(liveAllocations(), idle); // Every run's block was freed.
    }
  EXPECT_LT(worst, 1e-5);
  RecordProperty("max_relative_error", std::to_string(worst));
  session = moert::Session(nullptr);
  EXPECT_EQ(liveAllocations(), 0);
}

TEST_F(Cuda, EmptyBatch) {
  moert::Session session = cudaSession();
  setRandomParameters(session, 4);
  moert::TensorList out = session.run("forward", forwardInputs(0, 5, 2.0f));
  EXPECT_EQ(out.at("y").shape(), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(out.at("positive").data<int64_t>()[0], 0);
}

TEST_F(Cuda, ParametersFollowTheHostCopy) {
  TempDir dir;
  moert::Session session = cudaSession();
  expectError([&] { session.run("forward", forwardInputs(3, 1, 1.0f)); },
              MOE_STATUS_INVALID_ARGUMENT, {"parameter 'w' has no value yet"});
  setRandomParameters(session, 7);
  moert::TensorList inputs = forwardInputs(5, 8, 1.5f);
  moert::Tensor first = session.run("forward", inputs).at("y");
  // A changed parameter reaches the device before the next run.
  session.setParameter("w", randomTensor({4, 4}, 9));
  moert::Tensor second = session.run("forward", inputs).at("y");
  std::vector<double> expected =
      referenceForward(inputs.at("x"), session.getParameter("w"),
                       session.getParameter("bias"), 1.5);
  EXPECT_LT(maxRelativeError(second.data<float>(), expected), 1e-5);
  EXPECT_NE(std::memcmp(first.data(), second.data(), first.byteSize()), 0);
  // Saved and loaded into another CUDA session, and into init.
  session.saveParameters(dir / "p.safetensors");
  moert::Session other = cudaSession();
  other.loadParameters(dir / "p.safetensors");
  expectSameTensor(other.run("forward", inputs).at("y"), second);
  other.initParameters(3);
  expectSameTensor(other.getParameter("bias"),
                   moert::Tensor::zeros(MOE_F32, {4}));
  EXPECT_LT(
      maxRelativeError(other.run("forward", inputs).at("y").data<float>(),
                       referenceForward(inputs.at("x"), other.getParameter("w"),
                                        other.getParameter("bias"), 1.5)),
      1e-5);
}

TEST_F(Cuda, CubinForAnotherGpuFallsBackToPtx) {
  setenv("MOERT_FAKE_CUDA_ARCH", "sm_80", 1);
  int64_t before = ptxLoads();
  moert::Session session = cudaSession();
  EXPECT_EQ(ptxLoads(), before + 1);
  setRandomParameters(session, 11);
  moert::TensorList inputs = forwardInputs(6, 12, 0.5f);
  EXPECT_LT(maxRelativeError(
                session.run("forward", inputs).at("y").data<float>(),
                referenceForward(inputs.at("x"), session.getParameter("w"),
                                 session.getParameter("bias"), 0.5)),
            1e-5);
}

TEST_F(Cuda, ModelsWithoutCubinCompileThePtx) {
  int64_t before = ptxLoads();
  moert::Session session = cudaSession("cuda_affine_ptx_only");
  EXPECT_EQ(ptxLoads(), before + 1);
  setRandomParameters(session, 13);
  EXPECT_EQ(session.run("forward", forwardInputs(2, 14, 1.0f)).at("y").shape(),
            (std::vector<int64_t>{2, 4}));
}

TEST_F(Cuda, RefusedDeviceCodeReportsBothErrorsAndTheJitLog) {
  setenv("MOERT_FAKE_CUDA_ARCH", "sm_80", 1);
  expectError([] { cudaSession("cuda_affine_bad_ptx"); },
              MOE_STATUS_DEVICE_ERROR,
              {"cannot load the device code of model",
               "cuda_affine_bad_ptx.so' on cuda:0",
               "cuModuleLoadDataEx(cubin for sm_90) failed: "
               "CUDA_ERROR_NO_BINARY_FOR_GPU",
               "cuModuleLoadDataEx(PTX) failed: CUDA_ERROR_INVALID_PTX",
               "JIT log:\nptxas fatal   : fake-jit-error"});
  EXPECT_EQ(liveAllocations(), 0);
}

TEST_F(Cuda, DeviceMismatchSaysHowToRecompile) {
  // Decided before the driver is needed.
  setenv("MOERT_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
  moert::Model cpuModel = moert::Model::load(fixture("linear"));
  expectError([&] { moert::Session session(cpuModel, moert::Device::cuda(1)); },
              MOE_STATUS_INVALID_ARGUMENT,
              {"was compiled for the CPU (target 'cpu test')",
               "to run it on cuda:1, recompile it with `moec --target=cuda`"});
  moert::Model cudaModel = moert::Model::load(fixture("cuda_affine"));
  expectError([&] { moert::Session session(cudaModel, moert::Device::cpu()); },
              MOE_STATUS_INVALID_ARGUMENT,
              {"was compiled for CUDA (target 'cuda sm_90')",
               "recompile it without `--target=cuda`"});
  moe_session *session = nullptr;
  expectStatus(
      moe_session_create_on(cudaModel.get(), 1, moe_device(5), 0, &session),
      MOE_STATUS_INVALID_ARGUMENT, {"device is 5"});
  expectStatus(
      moe_session_create_on(cudaModel.get(), 1, MOE_DEVICE_CUDA, -1, &session),
      MOE_STATUS_INVALID_ARGUMENT, {"ordinal is -1"});
  EXPECT_EQ(session, nullptr);
}

TEST_F(Cuda, MissingDriverIsOneClearError) {
  setenv("MOERT_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
  expectError([] { cudaSession(); }, MOE_STATUS_DEVICE_ERROR,
              {"cannot load the CUDA driver '/nonexistent/libcuda.so.1'",
               "MOERT_LIBCUDA"});
}

TEST_F(Cuda, NoDeviceAndBadOrdinal) {
  moert::Model model = moert::Model::load(fixture("cuda_affine"));
  expectError([&] { moert::Session session(model, moert::Device::cuda(3)); },
              MOE_STATUS_DEVICE_ERROR,
              {"CUDA device 3 does not exist: this machine has 1 CUDA "
               "device(s), cuda:0"});
  setenv("MOERT_FAKE_CUDA_DEVICES", "0", 1);
  expectError([&] { moert::Session session(model, moert::Device::cuda(0)); },
              MOE_STATUS_DEVICE_ERROR, {"no CUDA device"});
}

struct Injection {
  const char *entry;
  int code;
  moe_status_code status;
  std::vector<std::string> message;
};

class CudaFailure : public Cuda,
                    public testing::WithParamInterface<Injection> {};

TEST_P(CudaFailure, CarriesTheCudaErrorAndChangesNothing) {
  const Injection &injection = GetParam();
  moert::Session session = cudaSession();
  setRandomParameters(session, 21);
  moert::TensorList inputs = forwardInputs(9, 22, 1.25f);
  int64_t idle = liveAllocations();
  setenv("MOERT_FAKE_CUDA_FAIL",
         (std::string(injection.entry) + "=" + std::to_string(injection.code))
             .c_str(),
         1);
  try {
    session.run("forward", inputs);
    ADD_FAILURE() << "expected an error";
  } catch (const moert::Error &e) {
    std::string message = e.what();
    EXPECT_EQ(e.code(), injection.status) << message;
    for (const std::string &part : injection.message)
      EXPECT_NE(message.find(part), std::string::npos)
          << "lacks '" << part << "': " << message;
    EXPECT_NE(message.find("entry point 'forward' on cuda:0"),
              std::string::npos)
        << message;
  }
  unsetenv("MOERT_FAKE_CUDA_FAIL");
  EXPECT_EQ(liveAllocations(), idle); // Nothing leaked on the device.
  // The next run works, with the parameters as they were set.
  std::vector<double> expected =
      referenceForward(inputs.at("x"), session.getParameter("w"),
                       session.getParameter("bias"), 1.25);
  EXPECT_LT(maxRelativeError(
                session.run("forward", inputs).at("y").data<float>(), expected),
            1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Cuda, CudaFailure,
    testing::Values(
        Injection{"cuLaunchKernel",
                  701,
                  MOE_STATUS_DEVICE_ERROR,
                  {"cuLaunchKernel(affine) failed: "
                   "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"}},
        Injection{"cuModuleGetFunction",
                  500,
                  MOE_STATUS_DEVICE_ERROR,
                  {"cuModuleGetFunction(affine) failed: CUDA_ERROR_NOT_FOUND"}},
        Injection{"cuStreamSynchronize",
                  719,
                  MOE_STATUS_DEVICE_ERROR,
                  {"cuStreamSynchronize failed: CUDA_ERROR_LAUNCH_FAILED"}},
        Injection{"cuMemAllocAsync",
                  2,
                  MOE_STATUS_OUT_OF_MEMORY,
                  {"cuMemAllocAsync(144 bytes for input 'x') failed: "
                   "CUDA_ERROR_OUT_OF_MEMORY"}},
        Injection{"cuMemcpyHtoDAsync_v2",
                  1,
                  MOE_STATUS_DEVICE_ERROR,
                  {"cuMemcpyHtoDAsync(parameter 'w', 64 bytes) failed: "
                   "CUDA_ERROR_INVALID_VALUE"}},
        Injection{"cuMemcpyAsync",
                  1,
                  MOE_STATUS_DEVICE_ERROR,
                  {"cuMemcpyAsync(4 bytes) failed: CUDA_ERROR_INVALID_VALUE"}},
        Injection{"cuMemcpyDtoHAsync_v2",
                  1,
                  MOE_STATUS_DEVICE_ERROR,
                  {"cuMemcpyDtoHAsync(output 'y', 144 bytes) failed: "
                   "CUDA_ERROR_INVALID_VALUE"}}),
    [](const testing::TestParamInfo<Injection> &info) {
      return std::string(info.param.entry);
    });

TEST_F(Cuda, FailuresAtSessionCreation) {
  moert::Model model = moert::Model::load(fixture("cuda_affine"));
  setenv("MOERT_FAKE_CUDA_FAIL", "cuMemAlloc_v2=2", 1);
  expectError([&] { moert::Session session(model, moert::Device::cuda(0)); },
              MOE_STATUS_OUT_OF_MEMORY,
              {"cuMemAlloc(64 bytes for parameter 'w') failed: "
               "CUDA_ERROR_OUT_OF_MEMORY"});
  setenv("MOERT_FAKE_CUDA_FAIL", "cuDevicePrimaryCtxRetain=101", 1);
  expectError(
      [&] { moert::Session session(model, moert::Device::cuda(0)); },
      MOE_STATUS_DEVICE_ERROR,
      {"cuDevicePrimaryCtxRetain(0) failed: CUDA_ERROR_INVALID_DEVICE"});
  EXPECT_EQ(liveAllocations(), 0);
}

/// train_step on the device, AdamW on the host: the gradients match central
/// differences of the model's own loss, an optimizer step reaches the device,
/// and the optimizer state the model updates in place comes back.
TEST_F(Cuda, TrainingWithTheRuntimeOptimizer) {
  moert::Session session = cudaSession();
  setRandomParameters(session, 31);
  moert::TensorList batch = {{"x", randomTensor({6, 4}, 32)},
                             {"target", randomTensor({6, 4}, 33)}};
  auto loss = [&] {
    return double(session.run("train_step", batch).at("loss").data<float>()[0]);
  };
  moert::TensorList out = session.run("train_step", batch);
  double expectedLoss =
      referenceLoss(batch.at("x"), batch.at("target"),
                    session.getParameter("w"), session.getParameter("bias"));
  double lossError =
      std::abs(out.at("loss").data<float>()[0] - expectedLoss) / expectedLoss;
  EXPECT_LT(lossError, 1e-5);

  // The loss is quadratic in the parameters: central differences are exact
  // but for f32 rounding.
  double worstGradient = 0;
  const double h = 1e-2;
  for (const char *name : {"w", "bias"}) {
    moert::Tensor value = session.getParameter(name);
    moert::Tensor gradient = out.at(std::string("grad.") + name);
    for (int64_t e = 0; e < value.numElements(); ++e) {
      moert::Tensor moved = value.cast(MOE_F32);
      moved.data<float>()[e] += float(h);
      session.setParameter(name, moved);
      double up = loss();
      moved.data<float>()[e] -= float(2 * h);
      session.setParameter(name, moved);
      double down = loss();
      double numeric = (up - down) / (2 * h);
      worstGradient = std::max(worstGradient,
                               std::abs(gradient.data<float>()[e] - numeric) /
                                   std::max(std::abs(numeric), 1e-2));
    }
    session.setParameter(name, value);
  }
  EXPECT_LT(worstGradient, 2e-3);
  RecordProperty("gradient_max_relative_error", std::to_string(worstGradient));

  // ema.w starts at zero and takes 0.1 w per run, on the device.
  moert::Session fresh = cudaSession();
  setRandomParameters(fresh, 31);
  std::vector<float> w = fresh.getParameter("w").toVector<float>();
  std::vector<float> ema(16, 0.0f);
  for (int run = 0; run < 2; ++run) {
    fresh.run("train_step", batch);
    for (int e = 0; e < 16; ++e)
      ema[e] = 0.9f * ema[e] + 0.1f * w[e];
  }
  EXPECT_EQ(fresh.getParameter("ema.w").toVector<float>(), ema);

  // An AdamW step on the host reaches the device for the next run.
  moert::AdamWConfig config;
  config.schedule.lr = 0.05;
  moert::Optimizer optimizer(fresh, config);
  optimizer.step(fresh.run("train_step", batch));
  double stepped =
      referenceLoss(batch.at("x"), batch.at("target"), fresh.getParameter("w"),
                    fresh.getParameter("bias"));
  double after = fresh.run("train_step", batch).at("loss").data<float>()[0];
  EXPECT_LT(std::abs(after - stepped) / stepped, 1e-5);
  EXPECT_LT(after, expectedLoss);
}

TEST_F(Cuda, FailedRunKeepsTheOptimizerState) {
  moert::Session session = cudaSession();
  setRandomParameters(session, 41);
  moert::TensorList batch = {{"x", randomTensor({3, 4}, 42)},
                             {"target", randomTensor({3, 4}, 43)}};
  session.run("train_step", batch);
  moert::Tensor before = session.getParameter("ema.w");
  setenv("MOERT_FAKE_CUDA_FAIL", "cuMemcpyDtoHAsync_v2=1", 1);
  expectError([&] { session.run("train_step", batch); },
              MOE_STATUS_DEVICE_ERROR, {"cuMemcpyDtoHAsync"});
  unsetenv("MOERT_FAKE_CUDA_FAIL");
  expectSameTensor(session.getParameter("ema.w"), before);
  // The device copy, updated by the failed run, is replaced by the host's.
  session.run("train_step", batch);
  std::vector<float> w = session.getParameter("w").toVector<float>();
  std::vector<float> expected = before.toVector<float>();
  for (int e = 0; e < 16; ++e)
    expected[e] = 0.9f * expected[e] + 0.1f * w[e];
  EXPECT_EQ(session.getParameter("ema.w").toVector<float>(), expected);
}

TEST_F(Cuda, ConcurrentRunsUseTheirOwnStreams) {
  moert::Session session = cudaSession();
  setRandomParameters(session, 51);
  std::vector<std::thread> threads;
  std::vector<double> worst(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        moert::TensorList inputs = forwardInputs(5 + t, 60 + 10 * t + i, 1.0f);
        moert::Tensor y = session.run("forward", inputs).at("y");
        worst[t] = std::max(
            worst[t],
            maxRelativeError(
                y.data<float>(),
                referenceForward(inputs.at("x"), session.getParameter("w"),
                                 session.getParameter("bias"), 1.0)));
      }
    });
  for (std::thread &thread : threads)
    thread.join();
  for (double error : worst)
    EXPECT_LT(error, 1e-5);
}

TEST_F(Cuda, TimedRunsMeasureEachPhase) {
  moert::Session session = cudaSession();
  setRandomParameters(session, 71);
  moe_run_timing timing{-1, -1, -1};
  moert::TensorList inputs = forwardInputs(4, 72, 1.0f);
  moert::TensorList out = session.run("forward", inputs, timing);
  EXPECT_GE(timing.upload_ms, 0);
  EXPECT_GE(timing.invoke_ms, 0);
  EXPECT_GE(timing.download_ms, 0);
  expectSameTensor(out.at("y"), session.run("forward", inputs).at("y"));
}

TEST_F(Cuda, MoeRunOnTheFakeDevice) {
  TempDir dir;
  std::string json = dir / "timing.json";
  Result result = moeRun({fixture("cuda_affine"), "--device=cuda:0", "--repeat",
                          "3", "--warmup", "1", "--timing-json", json,
                          "--output-dir", dir / "out"});
  ASSERT_EQ(result.exitCode, 0) << result.out << result.err;
  expectContains(result.out, "entry point forward on cuda:0 (Fake CUDA");
  expectContains(result.out, "timing over 3 runs (1 warmup): invoke min");
  expectContains(result.out, "upload median");
  std::string text = readBytes(json);
  for (const char *part :
       {"{\"device\": \"cuda:0\", \"entry\": \"forward\", \"runs\": 3, "
        "\"invoke_ms\": {\"min\": ",
        "\"median\": ", "\"mean\": ", "\"upload_ms\": ", "\"download_ms\": "})
    expectContains(text, part);
  EXPECT_EQ(dir.list(), (std::vector<std::string>{"out", "timing.json"}));
  EXPECT_EQ(moert::readNpy(dir / "out/y.npy").shape(),
            (std::vector<int64_t>{16, 4}));

  // The default device is the model's.
  result = moeRun({fixture("cuda_affine")});
  EXPECT_EQ(result.exitCode, 0) << result.err;
  result = moeRun({fixture("cuda_affine"), "--device", "cpu"});
  EXPECT_EQ(result.exitCode, 1);
  expectContains(result.err, "recompile it without `--target=cuda`");
  result = moeRun({fixture("linear"), "--device", "cuda"});
  EXPECT_EQ(result.exitCode, 1);
  expectContains(result.err, "recompile it with `moec --target=cuda`");
  result = moeRun({fixture("linear"), "--device", "gpu"});
  EXPECT_EQ(result.exitCode, 2);
  expectContains(result.err, "--device: device 'gpu' is not cpu, cuda or "
                             "cuda:N");
  setenv("MOERT_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
  result = moeRun({fixture("cuda_affine")});
  EXPECT_EQ(result.exitCode, 1);
  expectContains(result.err, "moe-run: error: cannot load the CUDA driver "
                             "'/nonexistent/libcuda.so.1'");
}

TEST_F(Cuda, MoeRunTimesCpuRunsToo) {
  TempDir dir;
  Result result = moeRun(
      {fixture("linear"), "--repeat", "2", "--timing-json", dir / "t.json"});
  ASSERT_EQ(result.exitCode, 0) << result.err;
  expectContains(readBytes(dir / "t.json"),
                 "{\"device\": \"cpu\", \"entry\": \"forward\", \"runs\": 2, ");
}

} // namespace
