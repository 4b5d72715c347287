//===- MoeRunTest.cpp - The moe-run tool, end to end ----------------------===//

#include "TestUtil.h"

using namespace moert::test;

namespace {

/// A linear.so parameter file with random values.
void writeLinearParams(const std::string &path, uint32_t seed) {
  moert::writeSafetensors(path,
                          {{"w", randomTensor({4, 4}, seed)},
                           {"bias", randomTensor({4}, seed + 1)},
                           {"out_norm.weight", randomTensor({4}, seed + 2)}});
}

std::string formatCounts(const std::vector<int32_t> &counts) {
  std::string text = "[";
  for (size_t i = 0; i < counts.size(); ++i)
    text += (i ? ", " : "") + std::to_string(counts[i]);
  return text + "]";
}

TEST(MoeRun, RunsAModelEndToEnd) {
  TempDir dir;
  for (uint32_t seed : {1u, 2u}) {
    SCOPED_TRACE(seed);
    writeLinearParams(dir / "p.safetensors", seed);
    moert::Tensor x = randomTensor({5, 4}, seed + 10);
    moert::writeNpy(dir / "x.npy", x);
    std::string out = dir / ("out" + std::to_string(seed));
    Result result =
        moeRun({fixture("linear"), "--params", dir / "p.safetensors", "--input",
                "x=" + (dir / "x.npy"), "--output-dir", out, "--threads", "2"});
    ASSERT_EQ(result.exitCode, 0) << result.out << result.err;

    moert::Session session(moert::Model::load(fixture("linear")), 1);
    session.loadParameters(dir / "p.safetensors");
    moert::TensorList expected = session.run("forward", {{"x", x}});
    for (const char *name : {"y", "tokens_per_expert", "aux_loss", "dropped"})
      expectSameTensor(moert::readNpy(out + "/" + name + ".npy"),
                       expected.at(name));

    expectContains(result.out, "model " + fixture("linear") +
                                   " (fixture linear, cpu test)");
    expectContains(result.out, "entry point forward on cpu, 2 threads");
    expectContains(result.out, "from " + (dir / "x.npy"));
    expectContains(result.out, "-> " + out + "/y.npy");
    expectContains(
        result.out,
        "tokens per expert (tokens_per_expert): " +
            formatCounts(expected.at("tokens_per_expert").toVector<int32_t>()));
    expectContains(
        result.out,
        "dropped tokens (dropped): " +
            std::to_string(expected.at("dropped").toVector<int64_t>()[0]));
    expectContains(result.out, "load-balancing aux loss (aux_loss): ");
  }
}

TEST(MoeRun, GeneratesEverythingFromTheSeed) {
  TempDir dir;
  auto run = [&](const std::string &name, const char *seed) {
    Result result = moeRun({fixture("linear"), "--seed", seed, "--dim",
                            "batch=6", "--output-dir", dir / name,
                            "--save-params", dir / (name + ".safetensors")});
    EXPECT_EQ(result.exitCode, 0) << result.err;
    expectContains(result.out,
                   "parameters random (seed " + std::string(seed) + ")");
    expectContains(result.out, "generated normal(0, 1)");
    return moert::readNpy(dir / (name + "/y.npy"));
  };
  moert::Tensor a = run("a", "3"), b = run("b", "3"), c = run("c", "4");
  EXPECT_EQ(a.shape(), (std::vector<int64_t>{6, 4}));
  expectSameTensor(a, b);
  EXPECT_NE(a.toVector<float>(), c.toVector<float>());
  // The saved parameters are those of moe_session_init_parameters(3).
  moert::Session session(moert::Model::load(fixture("linear")), 1);
  session.initParameters(3);
  moert::TensorList saved = moert::readSafetensors(dir / "a.safetensors");
  for (const char *name : {"w", "bias", "out_norm.weight"})
    expectSameTensor(saved.at(name), session.getParameter(name));
}

TEST(MoeRun, TokenInputsStayInsideTheVocabulary) {
  TempDir dir;
  // The fixture rejects ids >= 10; its embedding table has 10 rows.
  Result result =
      moeRun({fixture("dynamic"), "--entry", "embed", "--dim", "batch=4",
              "--dim", "seq=64", "--output-dir", dir.path.string()});
  ASSERT_EQ(result.exitCode, 0) << result.err;
  expectContains(result.out, "generated uniform [0, 10)");
  expectContains(result.out, "generated uniform {0, 1}");
  EXPECT_EQ(moert::readNpy(dir / "h.npy").shape(),
            (std::vector<int64_t>{4, 64, 3}));
}

TEST(MoeRun, CastsInputFilesToTheDeclaredDtype) {
  TempDir dir;
  moert::Tensor tokens = moert::Tensor::zeros(MOE_I64, {2, 3});
  tokens.fillUniformInt(5, 0, 10);
  moert::writeNpy(dir / "tokens.npy", tokens);
  moert::Tensor mask = moert::Tensor::zeros(MOE_BOOL, {2, 3});
  mask.fillUniformInt(6, 0, 2);
  moert::writeNpy(dir / "mask.npy", mask);
  moert::writeNpy(dir / "float_tokens.npy", randomTensor({2, 3}, 7));
  Result result =
      moeRun({fixture("dynamic"), "--entry", "embed", "--input",
              "tokens=" + (dir / "tokens.npy"), "--input",
              "mask=" + (dir / "mask.npy"), "--output-dir", dir / "out"});
  ASSERT_EQ(result.exitCode, 0) << result.err;
  int64_t kept = 0;
  for (int i = 0; i < 6; ++i)
    kept += static_cast<const uint8_t *>(mask.data())[i];
  EXPECT_EQ(moert::readNpy(dir / "out/kept.npy").toVector<int64_t>()[0], kept);
  result = moeRun({fixture("dynamic"), "--entry", "embed", "--input",
                   "tokens=" + (dir / "float_tokens.npy")});
  EXPECT_EQ(result.exitCode, 1);
  expectContains(result.err, "input 'tokens' from '" +
                                 (dir / "float_tokens.npy") +
                                 "': cannot cast f32 to i32");
}

TEST(MoeRun, DescribesAndHelps) {
  Result result = moeRun({fixture("linear"), "--describe"});
  EXPECT_EQ(result.exitCode, 0);
  expectContains(result.out, "entry 'score'");
  expectContains(result.out, "f32 [?batch, 4]");
  result = moeRun({"--help"});
  EXPECT_EQ(result.exitCode, 0);
  expectContains(result.out, "usage: moe-run MODEL.so [options]");
}

TEST(MoeRun, BadUsageAndBadFilesFailClearly) {
  TempDir dir;
  writeBytes(dir / "text.so", "not a library");
  writeBytes(dir / "file", "");
  moert::writeNpy(dir / "wide.npy", randomTensor({3, 5}, 1));
  struct Case {
    std::vector<std::string> args;
    int exitCode;
    std::string message;
  };
  std::string linear = fixture("linear");
  std::vector<Case> cases = {
      {{}, 2, "no model given"},
      {{linear, "--bogus"}, 2, "unknown option '--bogus'"},
      {{linear, "--threads", "abc"}, 2, "--threads expects an integer"},
      {{linear, "--threads=0"}, 2, "--threads expects an integer in [1, 4096]"},
      {{linear, "--seed"}, 2, "--seed needs a value"},
      {{linear, "--input", "x"}, 2, "--input expects NAME=VALUE, got 'x'"},
      {{linear, "--dim", "batch=-3"}, 2, "--dim batch expects an integer"},
      {{linear, "other.so"}, 2, "unexpected argument 'other.so'"},
      {{linear, "--input", "z=a.npy"},
       2,
       "entry point 'forward' has no input 'z'"},
      {{linear, "--input", "w=a.npy"},
       2,
       "entry point 'forward' has no input 'w'"},
      {{linear, "--dim", "seq=3"},
       2,
       "has no dimension 'seq' (it has 'batch')"},
      {{linear, "--entry", "nope"},
       2,
       "no entry point 'nope'; it has 'forward', 'score'"},
      {{fixture("views")}, 2, "no 'forward' entry point; choose one of"},
      {{"/nonexistent/model.so"}, 1, "'/nonexistent/model.so' does not exist"},
      {{dir / "text.so"}, 1, "not an ELF file"},
      {{fixture("no_symbol")}, 1, "does not export 'moe_abi_query'"},
      {{linear, "--params", dir / "none.safetensors"},
       1,
       "none.safetensors' does not exist"},
      {{linear, "--params", dir / "text.so"}, 1, "header length"},
      {{linear, "--input", "x=" + (dir / "none.npy")},
       1,
       "none.npy' does not exist"},
      {{linear, "--input", "x=" + (dir / "wide.npy")},
       1,
       "input 'x' dimension 1 is 5, expected 4"},
      {{fixture("views"), "--entry", "rejects"},
       1,
       "the model rejected its arguments"},
      {{linear, "--output-dir", dir / "file/sub"},
       1,
       "cannot create output directory"},
  };
  for (const Case &c : cases) {
    std::string command;
    for (const std::string &arg : c.args)
      command += " " + arg;
    SCOPED_TRACE("moe-run" + command);
    Result result = moeRun(c.args);
    EXPECT_EQ(result.exitCode, c.exitCode) << result.err;
    expectContains(result.err, c.message);
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'),
              c.exitCode == 2 ? 2 : 1)
        << result.err; // One message (plus the --help hint for usage).
  }
}

} // namespace
