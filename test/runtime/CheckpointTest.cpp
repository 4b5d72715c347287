//===- CheckpointTest.cpp - Saving and resuming training ------------------===//

#include "TrainTestUtil.h"

using namespace moert::test;

namespace {

moert::AdamWConfig config() {
  moert::AdamWConfig config;
  config.schedule = {MOE_LR_COSINE, 0.03, 0.003, 2, 10};
  config.weightDecay = 0.05;
  config.maxGradNorm = 5;
  return config;
}

/// Training step `step` of a fixed schedule: even steps take one batch,
/// odd steps the mean of two micro-batches. The data depends only on the
/// step, as a data loader restored from a checkpoint's position would.
void trainStep(moert::Session &session, moert::Optimizer &optimizer,
               int64_t step) {
  uint32_t seed = 1000 + uint32_t(step) * 10;
  if (step % 2 == 0) {
    optimizer.step(session.run("train_step", trainBatch(6, seed)));
    return;
  }
  optimizer.accumulate(session.run("train_step", trainBatch(4, seed)));
  optimizer.accumulate(session.run("train_step", trainBatch(3, seed + 5)));
  optimizer.stepAccumulated(2);
}

/// Parameters, moments and the step count, bitwise.
void expectSameTraining(moert::Optimizer &a, moert::Optimizer &b) {
  EXPECT_EQ(a.stepCount(), b.stepCount());
  EXPECT_EQ(a.nextLr(), b.nextLr());
  expectSameParameters(a.session(), b.session());
  for (const ParamSpec &param : trainParams())
    for (const char *moment : {"optimizer.m.", "optimizer.v."}) {
      SCOPED_TRACE(moment + param.name);
      expectSameTensor(a.state(moment + param.name),
                       b.state(moment + param.name));
    }
}

/// `bytes` with `from` replaced by `to` (same length: the header length and
/// data offsets stay valid) everywhere; `from` must occur.
std::string replaceAll(std::string bytes, const std::string &from,
                       const std::string &to) {
  EXPECT_EQ(from.size(), to.size());
  size_t at = bytes.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  for (; at != std::string::npos; at = bytes.find(from, at + to.size()))
    bytes.replace(at, from.size(), to);
  return bytes;
}

TEST(Checkpoint, ResumeIsBitIdentical) {
  for (int64_t stopAt : {1, 4}) {
    SCOPED_TRACE(stopAt);
    constexpr int64_t total = 8;
    moert::Session straight = trainSession(5);
    moert::Optimizer straightOptimizer(straight, config());
    for (int64_t step = 0; step < total; ++step)
      trainStep(straight, straightOptimizer, step);

    TempDir dir;
    {
      moert::Session first = trainSession(5);
      moert::Optimizer firstOptimizer(first, config());
      for (int64_t step = 0; step < stopAt; ++step)
        trainStep(first, firstOptimizer, step);
      firstOptimizer.saveCheckpoint(
          dir / "ckpt.safetensors",
          {{"data.position", std::to_string(stopAt)}, {"rng", "0x1234abcd"}});
    } // The first run's objects are gone.

    moert::Session resumed(moert::Model::load(fixture("train")), 3);
    resumed.initParameters(77);
    moert::Optimizer resumedOptimizer(resumed, config());
    moert::Metadata metadata =
        resumedOptimizer.loadCheckpoint(dir / "ckpt.safetensors");
    EXPECT_EQ(metadata,
              (moert::Metadata{{"data.position", std::to_string(stopAt)},
                               {"rng", "0x1234abcd"}}));
    EXPECT_EQ(resumedOptimizer.stepCount(), stopAt);
    for (int64_t step = std::stoll(metadata.at("data.position")); step < total;
         ++step)
      trainStep(resumed, resumedOptimizer, step);
    expectSameTraining(resumedOptimizer, straightOptimizer);
  }
}

TEST(Checkpoint, RoundTripRestoresEverything) {
  TempDir dir;
  moert::Session session = trainSession(6);
  moert::Optimizer optimizer(session, config());
  for (int64_t step = 0; step < 3; ++step)
    trainStep(session, optimizer, step);
  std::string path = dir / "ckpt.safetensors";
  moert::Metadata metadata{{"note", "caf\xc3\xa9 \"quoted\"\n"}, {"empty", ""}};
  optimizer.saveCheckpoint(path, metadata);
  EXPECT_EQ(dir.list(), (std::vector<std::string>{"ckpt.safetensors"}));

  moert::Session fresh = trainSession(60);
  moert::Optimizer freshOptimizer(fresh, config());
  EXPECT_EQ(freshOptimizer.loadCheckpoint(path), metadata);
  expectSameTraining(freshOptimizer, optimizer);
  // The integer parameter round-trips too.
  expectSameTensor(fresh.getParameter("steps"), session.getParameter("steps"));

  // The C API: the metadata is optional both ways.
  moe_metadata *out = nullptr;
  ASSERT_EQ(
      moe_optimizer_save_checkpoint(optimizer.get(), path.c_str(), nullptr),
      nullptr);
  ASSERT_EQ(
      moe_optimizer_load_checkpoint(freshOptimizer.get(), path.c_str(), &out),
      nullptr);
  EXPECT_EQ(moe_metadata_size(out), 0);
  EXPECT_EQ(moe_metadata_find(out, "format"), nullptr);
  moe_metadata_free(out);
  ASSERT_EQ(moe_optimizer_load_checkpoint(freshOptimizer.get(), path.c_str(),
                                          nullptr),
            nullptr);
}

TEST(Checkpoint, IsAParameterFileWithNamedMoments) {
  TempDir dir;
  moert::Session session = trainSession(7);
  moert::Optimizer optimizer(session, config());
  trainStep(session, optimizer, 0);
  optimizer.saveCheckpoint(dir / "ckpt.safetensors");
  moert::Session other = trainSession(70);
  other.loadParameters(dir / "ckpt.safetensors");
  expectSameParameters(other, session);
  moert::TensorList tensors = moert::readSafetensors(dir / "ckpt.safetensors");
  EXPECT_EQ(tensors.size(), 6 + 2 * 5);
  moert::Tensor m = tensors.at("optimizer.m.e");
  EXPECT_EQ(m.dtype(), MOE_F32);
  EXPECT_EQ(m.shape(), (std::vector<int64_t>{7, 3}));
  expectSameTensor(m, optimizer.state("optimizer.m.e"));
  std::string bytes = readBytes(dir / "ckpt.safetensors");
  EXPECT_NE(bytes.find("\"moert.checkpoint\":\"1\",\"moert.optimizer\":"
                       "\"adamw\",\"moert.step\":\"1\""),
            std::string::npos);
}

TEST(Checkpoint, SavingChecksItsInputs) {
  TempDir dir;
  moert::Session session = trainSession(8);
  moert::Optimizer optimizer(session, config());
  std::string path = dir / "ckpt.safetensors";
  for (const char *key : {"format", "moert.step", "moert.other"})
    expectError(
        [&] {
          optimizer.saveCheckpoint(path, {{key, "1"}});
        },
        MOE_STATUS_INVALID_ARGUMENT,
        {"cannot save checkpoint",
         std::string("metadata key '") + key + "' is reserved"});
  expectError(
      [&] {
        optimizer.saveCheckpoint(path, {{"bad", "\xff"}});
      },
      MOE_STATUS_INVALID_ARGUMENT, {"is not valid UTF-8"});
  optimizer.accumulate(randomGradients(1));
  expectError([&] { optimizer.saveCheckpoint(path); },
              MOE_STATUS_INVALID_ARGUMENT,
              {"1 accumulated micro-batch(es) are pending"});
  optimizer.clearAccumulated();
  expectError([&] { optimizer.saveCheckpoint(dir / "no/such/dir/c"); },
              MOE_STATUS_IO_ERROR, {"no/such/dir"});
  EXPECT_TRUE(dir.list().empty());

  moert::Session empty(moert::Model::load(fixture("train")), 1);
  moert::Optimizer emptyOptimizer(empty, config());
  expectError([&] { emptyOptimizer.saveCheckpoint(path); },
              MOE_STATUS_INVALID_ARGUMENT,
              {"6 parameter(s) have no value yet: w, b, e, h, big, steps"});
  expectStatus(moe_optimizer_save_checkpoint(optimizer.get(), nullptr, nullptr),
               MOE_STATUS_INVALID_ARGUMENT, {"'path' is NULL"});
}

TEST(Checkpoint, BadFilesGiveClearErrorsAndChangeNothing) {
  TempDir dir;
  std::string good = dir / "good.safetensors";
  {
    moert::Session session = trainSession(9);
    moert::Optimizer optimizer(session, config());
    for (int64_t step = 0; step < 3; ++step)
      trainStep(session, optimizer, step);
    optimizer.saveCheckpoint(good);
  }
  std::string bytes = readBytes(good);

  moert::Session session = trainSession(90);
  moert::Optimizer optimizer(session, config());
  trainStep(session, optimizer, 0);
  moert::Session twin = trainSession(90);
  moert::Optimizer twinOptimizer(twin, config());
  trainStep(twin, twinOptimizer, 0);
  auto expectRejected = [&](const std::string &name,
                            const std::string &contents, moe_status_code code,
                            std::initializer_list<std::string> parts) {
    SCOPED_TRACE(name);
    std::string path = dir / name;
    writeBytes(path, contents);
    std::vector<std::string> expected(parts);
    expected.push_back(path);
    try {
      optimizer.loadCheckpoint(path);
      ADD_FAILURE() << "loading " << name << " succeeded";
    } catch (const moert::Error &e) {
      EXPECT_EQ(e.code(), code) << e.what();
      for (const std::string &part : expected)
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
            << "message lacks '" << part << "': " << e.what();
    }
    expectSameTraining(optimizer, twinOptimizer);
  };

  for (size_t length : {size_t(0), size_t(5), size_t(8), size_t(60),
                        bytes.size() / 2, bytes.size() - 1})
    expectRejected("cut" + std::to_string(length), bytes.substr(0, length),
                   MOE_STATUS_INVALID_FILE, {"safetensors file"});
  expectRejected("garbage",
                 replaceAll(bytes, "{\"__metadata__\"", "[\"__metadata__\""),
                 MOE_STATUS_INVALID_FILE, {"safetensors file"});
  expectRejected("version",
                 replaceAll(bytes, "\"moert.checkpoint\":\"1\"",
                            "\"moert.checkpoint\":\"7\""),
                 MOE_STATUS_INVALID_FILE,
                 {"has format version \"7\"; this runtime reads version 1"});
  expectRejected(
      "step", replaceAll(bytes, "\"moert.step\":\"3\"", "\"moert.step\":\"x\""),
      MOE_STATUS_INVALID_FILE, {"'moert.step' is \"x\", not a step count"});
  expectRejected("optimizer", replaceAll(bytes, "\"adamw\"", "\"sgd!!\""),
                 MOE_STATUS_INVALID_FILE,
                 {"'moert.optimizer' is \"sgd!!\", expected \"adamw\""});
  expectRejected("renamed",
                 replaceAll(bytes, "\"optimizer.m.w\"", "\"optimizer.m.q\""),
                 MOE_STATUS_INVALID_ARGUMENT,
                 {"holds 1 tensor(s) that model", "train.so",
                  "has no place for: optimizer.m.q"});
  expectRejected("shape",
                 replaceAll(bytes, "\"shape\":[3,5]", "\"shape\":[5,3]"),
                 MOE_STATUS_INVALID_ARGUMENT,
                 {"tensor 'w' is F32 [5, 3], but the session expects f32 "
                  "[3, 5]"});
  // i32 [2] and f32 [2] have the same size: only the dtype is wrong.
  expectRejected("dtype", replaceAll(bytes, "\"I32\"", "\"F32\""),
                 MOE_STATUS_INVALID_ARGUMENT,
                 {"tensor 'steps' is F32 [2], but the session expects i32 "
                  "[2]"});

  std::string parameters = dir / "parameters.safetensors";
  session.saveParameters(parameters);
  expectRejected("plain", readBytes(parameters), MOE_STATUS_INVALID_FILE,
                 {"is not a moert checkpoint", "moe_session_load_parameters"});

  // Moments the checkpoint lacks: it was saved with `e` frozen.
  std::string partial = dir / "partial.safetensors";
  {
    moert::Session frozen = trainSession(9);
    moert::AdamWConfig frozenConfig = config();
    frozenConfig.frozen = {"e"};
    moert::Optimizer frozenOptimizer(frozen, frozenConfig);
    trainStep(frozen, frozenOptimizer, 0);
    frozenOptimizer.saveCheckpoint(partial);
  }
  expectRejected("partial", readBytes(partial), MOE_STATUS_INVALID_ARGUMENT,
                 {"lacks 2 tensor(s): optimizer.m.e, optimizer.v.e"});
  // The other way round is fine: moments of parameters frozen now are
  // ignored.
  moert::AdamWConfig frozenConfig = config();
  frozenConfig.frozen = {"e"};
  moert::Optimizer frozenNow(trainSession(10), frozenConfig);
  frozenNow.loadCheckpoint(good);
  EXPECT_EQ(frozenNow.stepCount(), 3);

  // A checkpoint of another model.
  std::string linear = dir / "linear.safetensors";
  {
    moert::Session other(moert::Model::load(fixture("linear")), 1);
    other.initParameters(1);
    moert::Optimizer(other, config()).saveCheckpoint(linear);
  }
  expectRejected("linear", readBytes(linear), MOE_STATUS_INVALID_ARGUMENT,
                 {"tensor 'w' is F32 [4, 4], but the session expects f32 "
                  "[3, 5]"});
  expectError([&] { optimizer.loadCheckpoint(dir / "missing.safetensors"); },
              MOE_STATUS_NOT_FOUND, {"missing.safetensors' does not exist"});
}

TEST(Metadata, IsAnOrderedStringMap) {
  moe_metadata *metadata = nullptr;
  ASSERT_EQ(moe_metadata_create(&metadata), nullptr);
  ASSERT_EQ(moe_metadata_set(metadata, "b", "1"), nullptr);
  ASSERT_EQ(moe_metadata_set(metadata, "a", "2"), nullptr);
  ASSERT_EQ(moe_metadata_set(metadata, "b", "3"), nullptr);
  EXPECT_EQ(moe_metadata_size(metadata), 2);
  EXPECT_STREQ(moe_metadata_key(metadata, 0), "b");
  EXPECT_STREQ(moe_metadata_value(metadata, 0), "3");
  EXPECT_STREQ(moe_metadata_key(metadata, 1), "a");
  EXPECT_EQ(moe_metadata_key(metadata, 2), nullptr);
  EXPECT_EQ(moe_metadata_value(metadata, -1), nullptr);
  EXPECT_STREQ(moe_metadata_find(metadata, "a"), "2");
  EXPECT_EQ(moe_metadata_find(metadata, "c"), nullptr);
  expectStatus(moe_metadata_set(metadata, nullptr, "x"),
               MOE_STATUS_INVALID_ARGUMENT, {"'key' is NULL"});
  moe_metadata_free(metadata);
  moe_metadata_free(nullptr);
}

} // namespace
