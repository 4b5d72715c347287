//===- TestUtil.h - Shared helpers of the runtime tests -------------------===//
#ifndef MOERT_TEST_TESTUTIL_H
#define MOERT_TEST_TESTUTIL_H

#include "moe/runtime/moert.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

namespace moert::test {

inline std::string fixture(const std::string &name) {
  return std::string(MOERT_FIXTURE_DIR) + "/" + name + ".so";
}

/// A fresh directory, removed with its contents at the end of the test.
class TempDir {
public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "moert-test-XXXXXX").string();
    if (!mkdtemp(pattern.data()))
      throw std::runtime_error("mkdtemp failed");
    path = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string &name) const {
    return (path / name).string();
  }
  /// The names of the entries in the directory, sorted.
  std::vector<std::string> list() const {
    std::vector<std::string> names;
    for (const auto &entry : std::filesystem::directory_iterator(path))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::filesystem::path path;
};

inline void writeBytes(const std::string &path, const std::string &bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

inline std::string readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Asserts that `status` failed with `code` and a message containing every
/// one of `parts`; frees it.
inline void expectStatus(moe_status *status, moe_status_code code,
                         std::initializer_list<std::string> parts) {
  ASSERT_NE(status, nullptr) << "expected an error, got success";
  std::string message = moe_status_get_message(status);
  EXPECT_EQ(moe_status_get_code(status), code)
      << moe_status_code_name(moe_status_get_code(status)) << ": " << message;
  for (const std::string &part : parts)
    EXPECT_NE(message.find(part), std::string::npos)
        << "message lacks '" << part << "': " << message;
  moe_status_free(status);
}

/// Runs `body`, which must throw moert::Error with `code` and a message
/// containing every one of `parts`.
template <typename Body>
void expectError(Body &&body, moe_status_code code,
                 std::initializer_list<std::string> parts) {
  try {
    body();
    ADD_FAILURE() << "expected moert::Error";
  } catch (const moert::Error &e) {
    std::string message = e.what();
    EXPECT_EQ(e.code(), code) << message;
    for (const std::string &part : parts)
      EXPECT_NE(message.find(part), std::string::npos)
          << "message lacks '" << part << "': " << message;
  }
}

/// Random non-zero-mean values: tests never run on zeros.
inline std::vector<float> randomFloats(size_t n, uint32_t seed) {
  std::mt19937 engine(seed);
  std::normal_distribution<float> normal(0.25f, 1.0f);
  std::vector<float> values(n);
  for (float &value : values)
    value = normal(engine);
  return values;
}

inline moert::Tensor randomTensor(const std::vector<int64_t> &shape,
                                  uint32_t seed) {
  int64_t n = 1;
  for (int64_t extent : shape)
    n *= extent;
  return moert::Tensor::fromVector(shape, randomFloats(n, seed));
}

/// Bitwise equality of dtype, shape and data.
inline void expectSameTensor(const moert::Tensor &a, const moert::Tensor &b) {
  ASSERT_EQ(a.dtype(), b.dtype());
  ASSERT_EQ(a.shape(), b.shape());
  ASSERT_EQ(a.byteSize(), b.byteSize());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.byteSize()), 0);
}

/// What a moe-run process did.
struct Result {
  int exitCode;
  std::string out, err;
};

/// Runs moe-run with `args` and collects its exit code and output.
inline Result moeRun(const std::vector<std::string> &args) {
  TempDir logs;
  std::string outPath = logs / "stdout", errPath = logs / "stderr";
  std::vector<std::string> strings = {MOE_RUN};
  strings.insert(strings.end(), args.begin(), args.end());
  std::vector<char *> argv;
  for (std::string &arg : strings)
    argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t child = fork();
  if (child == 0) {
    int out = open(outPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(errPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
      _exit(126);
    execv(MOE_RUN, argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(child, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, readBytes(outPath),
          readBytes(errPath)};
}

inline void expectContains(const std::string &text, const std::string &part) {
  EXPECT_NE(text.find(part), std::string::npos) << "lacks '" << part << "':\n"
                                                << text;
}

} // namespace moert::test

#endif // MOERT_TEST_TESTUTIL_H
