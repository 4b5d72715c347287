//===- SessionTest.cpp - Parameters, runs and runtime services ------------===//

#include "TestUtil.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

using namespace moert::test;

namespace {

/// A session on the linear fixture with random parameters from `seed`.
moert::Session linearSession(uint32_t seed) {
  moert::Session session(moert::Model::load(fixture("linear")), 2);
  session.setParameter("w", randomTensor({4, 4}, seed));
  session.setParameter("bias", randomTensor({4}, seed + 100));
  session.setParameter("out_norm.weight", randomTensor({4}, seed + 200));
  return session;
}

void expectNear(float actual, double expected) {
  EXPECT_NEAR(actual, expected, 1e-5 * (1 + std::fabs(expected)));
}

TEST(Session, LinearMatchesHandComputation) {
  for (uint32_t seed : {1u, 2u, 3u, 4u}) {
    SCOPED_TRACE(seed);
    moert::Session session = linearSession(seed);
    int64_t batch = 2 * seed + 1;
    moert::Tensor x = randomTensor({batch, 4}, seed + 300);
    moert::TensorList outputs = session.run("forward", {{"x", x}});
    ASSERT_EQ(outputs.size(), 4);
    EXPECT_EQ(outputs.name(0), "y");
    EXPECT_EQ(outputs.name(3), "dropped");

    std::vector<float> xs = x.toVector<float>();
    std::vector<float> w = session.getParameter("w").toVector<float>();
    std::vector<float> bias = session.getParameter("bias").toVector<float>();
    std::vector<float> norm =
        session.getParameter("out_norm.weight").toVector<float>();
    moert::Tensor y = outputs.at("y");
    ASSERT_EQ(y.shape(), (std::vector<int64_t>{batch, 4}));
    EXPECT_FALSE(y.isView());
    std::vector<float> ys = y.toVector<float>();
    std::vector<int32_t> counts(4, 0);
    double squares = 0;
    int64_t dropped = 0;
    for (int64_t i = 0; i < batch; ++i) {
      for (int j = 0; j < 4; ++j) {
        double acc = bias[j];
        for (int k = 0; k < 4; ++k)
          acc += double(xs[i * 4 + k]) * w[k * 4 + j];
        expectNear(ys[i * 4 + j], acc * norm[j]);
        squares += acc * norm[j] * acc * norm[j];
      }
      // Routing decisions are checked against the model's own y so that a
      // last-bit difference cannot flip an argmax.
      int best = std::max_element(ys.begin() + i * 4, ys.begin() + i * 4 + 4) -
                 (ys.begin() + i * 4);
      counts[best]++;
      dropped += ys[i * 4 + best] < 0;
    }
    EXPECT_EQ(outputs.at("tokens_per_expert").toVector<int32_t>(), counts);
    EXPECT_EQ(outputs.at("dropped").toVector<int64_t>()[0], dropped);
    moert::Tensor aux = outputs.at("aux_loss");
    EXPECT_EQ(aux.rank(), 0);
    expectNear(aux.toVector<float>()[0], squares / (batch * 4));
  }
}

TEST(Session, SharesParametersAcrossEntries) {
  moert::Session session = linearSession(9);
  EXPECT_EQ(session.parameters().size(), 3u);
  moert::Tensor x = randomTensor({3, 4}, 10);
  moert::Tensor s = session.run("score", {{"x", x}}).at("s");
  std::vector<float> w = session.getParameter("w").toVector<float>();
  std::vector<float> xs = x.toVector<float>();
  for (int i = 0; i < 3; ++i) {
    double expected = 0;
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 4; ++k)
        expected += double(xs[i * 4 + k]) * w[k * 4 + j];
    expectNear(s.toVector<float>()[i], expected);
  }
}

TEST(Session, ParametersNeedAValueBeforeRunning) {
  moert::Session session(moert::Model::load(fixture("linear")));
  EXPECT_GE(session.numThreads(), 1);
  expectError(
      [&] {
        session.run("forward", {{"x", randomTensor({2, 4}, 1)}});
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"parameter 'w' has no value yet", "moe_session_init_parameters"});
  expectError([&] { session.saveParameters("/nonexistent/p.safetensors"); },
              MOE_STATUS_INVALID_ARGUMENT,
              {"3 parameter(s) have no value", "w, bias, out_norm.weight"});
}

TEST(Session, InitParametersFollowsTheDocumentedRule) {
  moert::Model model = moert::Model::load(fixture("linear"));
  moert::Session a(model, 1), b(model, 1), c(model, 1);
  a.initParameters(7);
  b.initParameters(7);
  c.initParameters(8);
  for (float value : a.getParameter("bias").toVector<float>())
    EXPECT_EQ(value, 0.0f);
  for (float value : a.getParameter("out_norm.weight").toVector<float>())
    EXPECT_EQ(value, 1.0f);
  std::vector<float> w = a.getParameter("w").toVector<float>();
  double squares = 0;
  for (float value : w) {
    EXPECT_NE(value, 0.0f);
    EXPECT_LT(std::fabs(value), 0.02 * 6);
    squares += double(value) * value;
  }
  double stddev = std::sqrt(squares / w.size());
  EXPECT_GT(stddev, 0.005);
  EXPECT_LT(stddev, 0.05);
  expectSameTensor(a.getParameter("w"), b.getParameter("w"));
  EXPECT_NE(w, c.getParameter("w").toVector<float>());
  // A table of another model with another name gets other values.
  moert::Session lm(moert::Model::load(fixture("dynamic")), 1);
  lm.initParameters(7);
  EXPECT_EQ(lm.getParameter("embed_tokens.weight").shape(),
            (std::vector<int64_t>{10, 3}));
}

TEST(Session, GetAndSetParameterCheckNamesAndShapes) {
  moert::Session session = linearSession(1);
  expectError([&] { session.getParameter("nope"); },
              MOE_STATUS_INVALID_ARGUMENT, {"no parameter 'nope'"});
  expectError(
      [&] {
        session.setParameter("w", randomTensor({4, 5}, 1));
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"parameter 'w' is f32 [4, 4]", "given is f32 [4, 5]"});
  expectError(
      [&] {
        session.setParameter("w", moert::Tensor::zeros(MOE_F64, {4, 4}));
      },
      MOE_STATUS_INVALID_ARGUMENT, {"f64 [4, 4]"});
  // Setting copies: changing the source afterwards changes nothing.
  moert::Tensor value = randomTensor({4, 4}, 5);
  session.setParameter("w", value);
  value.data<float>()[0] += 1;
  EXPECT_NE(session.getParameter("w").toVector<float>()[0],
            value.data<float>()[0]);
}

TEST(Session, RejectsBadInputs) {
  moert::Session session = linearSession(2);
  moert::Tensor x = randomTensor({3, 4}, 3);
  expectError(
      [&] {
        session.run("backward", {{"x", x}});
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"no entry point 'backward'", "'forward', 'score'"});
  expectError([&] { session.run("forward", {}); }, MOE_STATUS_INVALID_ARGUMENT,
              {"missing input 'x' (f32 [?batch, 4])"});
  expectError(
      [&] {
        session.run("forward", {{"x", x}, {"z", x}});
      },
      MOE_STATUS_INVALID_ARGUMENT, {"no argument 'z'", "inputs are: 'x'"});
  expectError(
      [&] {
        session.run("forward", {{"x", x}, {"w", x}});
      },
      MOE_STATUS_INVALID_ARGUMENT, {"'w' is a parameter held by the session"});
  expectError(
      [&] {
        session.run("forward", {{"x", x}, {"y", x}});
      },
      MOE_STATUS_INVALID_ARGUMENT, {"'y' is an output"});
  expectError(
      [&] {
        session.run("forward", {{"x", moert::Tensor::zeros(MOE_F64, {3, 4})}});
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"input 'x' has dtype f64, expected f32 [?batch, 4]"});
  expectError(
      [&] {
        session.run("forward", {{"x", randomTensor({12}, 4)}});
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"input 'x' has shape [12] (rank 1), expected rank 2"});
  expectError(
      [&] {
        session.run("forward", {{"x", randomTensor({3, 5}, 4)}});
      },
      MOE_STATUS_INVALID_ARGUMENT, {"input 'x' dimension 1 is 5, expected 4"});
  moe_tensor_list *out = nullptr;
  expectStatus(moe_session_run(session.get(), "forward", nullptr, &out),
               MOE_STATUS_INVALID_ARGUMENT, {"missing input 'x'"});
  expectStatus(moe_session_run(session.get(), nullptr, nullptr, &out),
               MOE_STATUS_INVALID_ARGUMENT, {"'entry' is NULL"});
  EXPECT_EQ(out, nullptr);
}

TEST(Session, SymbolicDimensionsMustAgree) {
  moert::Session session(moert::Model::load(fixture("dynamic")), 1);
  for (uint32_t seed : {1u, 2u, 3u}) {
    int64_t n = seed + 1, m = seed + 2, k = seed + 3;
    moert::Tensor a = randomTensor({n, m}, seed),
                  b = randomTensor({m, k}, seed + 10);
    moert::Tensor c = session.run("matmul", {{"a", a}, {"b", b}}).at("c");
    ASSERT_EQ(c.shape(), (std::vector<int64_t>{n, k}));
    std::vector<float> as = a.toVector<float>(), bs = b.toVector<float>();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < k; ++j) {
        double expected = 0;
        for (int64_t l = 0; l < m; ++l)
          expected += double(as[i * m + l]) * bs[l * k + j];
        expectNear(c.toVector<float>()[i * k + j], expected);
      }
  }
  expectError(
      [&] {
        session.run("matmul", {{"a", randomTensor({3, 5}, 1)},
                               {"b", randomTensor({4, 2}, 2)}});
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"entry point 'matmul'", "input 'b' dimension 0 ('m') is 4",
       "input 'a' dimension 1 set 'm' to 5"});

  session.initParameters(3);
  moert::Tensor tokens = moert::Tensor::zeros(MOE_I32, {2, 3});
  tokens.fillUniformInt(4, 0, 10);
  moert::Tensor mask = moert::Tensor::zeros(MOE_BOOL, {2, 4});
  mask.fillUniformInt(5, 0, 2);
  expectError(
      [&] {
        session.run("embed", {{"tokens", tokens}, {"mask", mask}});
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"input 'mask' dimension 1 ('seq') is 4",
       "input 'tokens' dimension 1 set 'seq' to 3"});
}

TEST(Session, EmbeddingWithMaskAndModelRejection) {
  moert::Session session(moert::Model::load(fixture("dynamic")), 1);
  session.initParameters(11);
  std::vector<float> table =
      session.getParameter("embed_tokens.weight").toVector<float>();
  moert::Tensor tokens = moert::Tensor::zeros(MOE_I32, {2, 5});
  tokens.fillUniformInt(12, 0, 10);
  moert::Tensor mask = moert::Tensor::zeros(MOE_BOOL, {2, 5});
  mask.fillUniformInt(13, 0, 2);
  moert::TensorList out =
      session.run("embed", {{"tokens", tokens}, {"mask", mask}});
  std::vector<float> h = out.at("h").toVector<float>();
  const int32_t *ids = tokens.data<int32_t>();
  const uint8_t *keep = static_cast<const uint8_t *>(mask.data());
  int64_t kept = 0;
  for (int i = 0; i < 10; ++i) {
    kept += keep[i];
    for (int d = 0; d < 3; ++d)
      EXPECT_EQ(h[i * 3 + d], keep[i] ? table[ids[i] * 3 + d] : 0.0f);
  }
  EXPECT_EQ(out.at("kept").toVector<int64_t>()[0], kept);

  tokens.data<int32_t>()[3] = 10; // Out of the vocabulary.
  expectError(
      [&] {
        session.run("embed", {{"tokens", tokens}, {"mask", mask}});
      },
      MOE_STATUS_INVALID_ARGUMENT,
      {"entry point 'embed' failed", "the model rejected its arguments"});
}

TEST(Session, ConstantViewsAreCopiedAndOutliveTheModel) {
  moert::TensorList out;
  {
    moert::Session session(moert::Model::load(fixture("views")), 1);
    out = session.run("constant", {});
  } // The library is unloaded here; results must not point into it.
  moert::Tensor c = out.at("c"), row = out.at("row");
  EXPECT_FALSE(c.isView());
  EXPECT_EQ(c.toVector<float>(),
            (std::vector<float>{1.5f, -2.0f, 3.25f, 4.0f, -5.5f, 6.0f}));
  EXPECT_EQ(row.toVector<float>(), (std::vector<float>{4.0f, -5.5f, 6.0f}));
}

TEST(Session, InputAliasesAreCopied) {
  moert::Session session(moert::Model::load(fixture("views")), 1);
  for (uint32_t seed : {1u, 2u, 3u}) {
    moert::Tensor x = randomTensor({int64_t(seed) * 7}, seed);
    moert::TensorList out = session.run("alias", {{"x", x}});
    std::vector<float> xs = x.toVector<float>();
    EXPECT_EQ(out.at("same").toVector<float>(), xs);
    EXPECT_NE(out.at("same").data(), x.data());
    std::reverse(xs.begin(), xs.end());
    EXPECT_EQ(out.at("reversed").toVector<float>(), xs);
  }
}

TEST(Session, StridedOwnedResultsAreMadeContiguous) {
  moert::Session session(moert::Model::load(fixture("views")), 1);
  for (uint32_t seed : {1u, 2u}) {
    int64_t r = 2 + seed, c = 5 - seed;
    moert::Tensor x = randomTensor({r, c}, seed);
    moert::TensorList out = session.run("transposed", {{"x", x}});
    moert::Tensor t = out.at("t"), copy = out.at("copy");
    ASSERT_EQ(t.shape(), (std::vector<int64_t>{c, r}));
    std::vector<float> xs = x.toVector<float>(), ts = t.toVector<float>();
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j)
        EXPECT_EQ(ts[j * r + i], xs[i * c + j]);
    EXPECT_EQ(copy.toVector<float>(), xs);
  }
}

TEST(Session, MalformedResultsAndModelErrorsAreReported) {
  moert::Session session(moert::Model::load(fixture("views")), 1);
  moert::TensorList in{{"x", randomTensor({2}, 1)}};
  expectError([&] { session.run("bad_shape", in); }, MOE_STATUS_MODEL_FAILED,
              {"views.so", "entry point 'bad_shape' returned malformed",
               "output 'y' dimension 0 is 4, expected 3"});
  expectError([&] { session.run("out_of_bounds", in); },
              MOE_STATUS_MODEL_FAILED,
              {"output 'y' addresses bytes outside the 8-byte block"});
  expectError([&] { session.run("bad_free", in); }, MOE_STATUS_MODEL_FAILED,
              {"free was called on a pointer that alloc did not return"});
  expectError([&] { session.run("rejects", in); }, MOE_STATUS_INVALID_ARGUMENT,
              {"entry point 'rejects' failed: the model rejected"});
  expectError([&] { session.run("internal", in); }, MOE_STATUS_MODEL_FAILED,
              {"entry point 'internal' failed: internal error (status 3)"});
  // The session still works after every failure.
  EXPECT_EQ(session.run("alias", in).at("same").toVector<float>(),
            in.at("x").toVector<float>());
}

TEST(Session, ParallelForCoversEveryIterationOnce) {
  moert::Model model = moert::Model::load(fixture("parallel"));
  for (int32_t threads : {1, 2, 3, 8}) {
    moert::Session session(model, threads);
    EXPECT_EQ(session.numThreads(), threads);
    session.setParameter("scale", moert::Tensor::fromVector<float>({}, {1.5f}));
    for (int64_t n :
         {int64_t(0), int64_t(1), int64_t(7), int64_t(1000), int64_t(100003)}) {
      SCOPED_TRACE(testing::Message() << threads << " threads, n = " << n);
      moert::Tensor x = randomTensor({n}, uint32_t(n + threads));
      moert::TensorList out = session.run("forward", {{"x", x}});
      std::vector<float> xs = x.toVector<float>();
      std::vector<float> ys = out.at("y").toVector<float>();
      ASSERT_EQ(ys.size(), xs.size());
      for (size_t i = 0; i < xs.size(); ++i)
        ASSERT_EQ(ys[i], 3.0f * xs[i]);
      EXPECT_EQ(out.at("covered").toVector<int64_t>()[0], n);
      int64_t chunks = out.at("chunks").toVector<int64_t>()[0];
      EXPECT_LE(chunks, n);
      EXPECT_GE(chunks, n > 0 ? 1 : 0);
      EXPECT_LE(chunks, threads == 1 ? 1 : n);
      EXPECT_EQ(out.at("threads").toVector<int32_t>()[0], threads);
    }
  }
}

TEST(Session, ConcurrentRunsShareOneSession) {
  moert::Session session(moert::Model::load(fixture("parallel")), 4);
  session.setParameter("scale", moert::Tensor::fromVector<float>({}, {0.5f}));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (uint32_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (uint32_t i = 0; i < 25; ++i) {
        moert::Tensor x = randomTensor({int64_t(500 + 37 * i)}, t * 100 + i);
        moert::TensorList out = session.run("forward", {{"x", x}});
        std::vector<float> xs = x.toVector<float>();
        std::vector<float> ys = out.at("y").toVector<float>();
        for (size_t k = 0; k < xs.size(); ++k)
          failures += ys[k] != xs[k];
      }
    });
  for (std::thread &thread : threads)
    thread.join();
  EXPECT_EQ(failures, 0);
}

TEST(Session, ParameterUpdatesWaitForRuns) {
  moert::Session session = linearSession(4);
  moert::Tensor x = randomTensor({64, 4}, 5);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint32_t seed = 0; !stop; ++seed)
      session.initParameters(seed % 3);
  });
  for (int i = 0; i < 200; ++i) {
    moert::Tensor y = session.run("forward", {{"x", x}}).at("y");
    ASSERT_EQ(y.numElements(), 256);
  }
  stop = true;
  writer.join();
}

TEST(Session, SaveAndLoadRoundTrip) {
  TempDir dir;
  moert::Session a = linearSession(21);
  a.saveParameters(dir / "p.safetensors");
  moert::Session b(a.model(), 1);
  b.loadParameters(dir / "p.safetensors");
  for (const char *name : {"w", "bias", "out_norm.weight"})
    expectSameTensor(a.getParameter(name), b.getParameter(name));
  moert::Tensor x = randomTensor({5, 4}, 22);
  expectSameTensor(a.run("forward", {{"x", x}}).at("y"),
                   b.run("forward", {{"x", x}}).at("y"));
  // The file is plain safetensors: the generic reader sees the same.
  moert::TensorList file = moert::readSafetensors(dir / "p.safetensors");
  EXPECT_EQ(file.size(), 3);
  expectSameTensor(file.at("w"), a.getParameter("w"));
}

TEST(Session, LoadReportsParametersThatDoNotMatch) {
  TempDir dir;
  moert::Session session = linearSession(31);
  moert::Tensor before = session.getParameter("w");
  moert::writeSafetensors(dir / "partial.safetensors",
                          {{"w", randomTensor({4, 4}, 1)}});
  expectError(
      [&] { session.loadParameters(dir / "partial.safetensors"); },
      MOE_STATUS_INVALID_ARGUMENT,
      {"partial.safetensors", "lacks 2 parameter(s)", "bias, out_norm.weight"});
  moert::writeSafetensors(dir / "shape.safetensors",
                          {{"w", randomTensor({4, 5}, 1)},
                           {"bias", randomTensor({4}, 2)},
                           {"out_norm.weight", randomTensor({4}, 3)}});
  expectError([&] { session.loadParameters(dir / "shape.safetensors"); },
              MOE_STATUS_INVALID_ARGUMENT,
              {"parameter 'w'", "stores shape [4, 5]", "declares f32 [4, 4]"});
  moert::writeSafetensors(dir / "dtype.safetensors",
                          {{"w", randomTensor({4, 4}, 1)},
                           {"bias", randomTensor({4}, 2).cast(MOE_F16)},
                           {"out_norm.weight", randomTensor({4}, 3)}});
  expectError([&] { session.loadParameters(dir / "dtype.safetensors"); },
              MOE_STATUS_INVALID_ARGUMENT,
              {"parameter 'bias'", "stores it as F16", "declares f32 [4]"});
  expectError([&] { session.loadParameters(dir / "absent.safetensors"); },
              MOE_STATUS_NOT_FOUND, {"absent.safetensors", "does not exist"});
  // Failed loads change nothing.
  expectSameTensor(session.getParameter("w"), before);
  // Tensors the model does not declare are ignored.
  moert::writeSafetensors(dir / "extra.safetensors",
                          {{"w", randomTensor({4, 4}, 1)},
                           {"bias", randomTensor({4}, 2)},
                           {"out_norm.weight", randomTensor({4}, 3)},
                           {"unused", randomTensor({2}, 4)}});
  session.loadParameters(dir / "extra.safetensors");
  expectSameTensor(session.getParameter("w"), randomTensor({4, 4}, 1));
}

TEST(Session, CreateValidatesArguments) {
  moert::Model model = moert::Model::load(fixture("linear"));
  moe_session *session = nullptr;
  expectStatus(moe_session_create(model.get(), -1, &session),
               MOE_STATUS_INVALID_ARGUMENT, {"num_threads is -1"});
  expectStatus(moe_session_create(nullptr, 1, &session),
               MOE_STATUS_INVALID_ARGUMENT, {"'model' is NULL"});
  EXPECT_EQ(session, nullptr);
}

TEST(Session, HoldsItsModel) {
  moe_model *model = nullptr;
  ASSERT_EQ(moe_model_load(fixture("linear").c_str(), &model), nullptr);
  moe_session *session = nullptr;
  ASSERT_EQ(moe_session_create(model, 1, &session), nullptr);
  moe_model_release(model); // The session keeps it alive.
  EXPECT_EQ(moe_session_get_model(session), model);
  EXPECT_EQ(moe_session_num_parameters(session), 3);
  const moe_arg_info *info = moe_session_parameter_info(session, 2);
  ASSERT_NE(info, nullptr);
  EXPECT_STREQ(info->name, "out_norm.weight");
  EXPECT_EQ(moe_session_parameter_info(session, 3), nullptr);
  ASSERT_EQ(moe_session_init_parameters(session, 1), nullptr);
  moe_session_release(session);
}

} // namespace
