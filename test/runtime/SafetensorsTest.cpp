//===- SafetensorsTest.cpp - Safetensors reading, checks, writing ---------===//

#include "TestUtil.h"

#include <csignal>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace moert::test;

namespace {

/// A safetensors file: the 8-byte little-endian header length, the header
/// and the data.
std::string safetensorsFile(const std::string &header,
                            const std::string &data) {
  std::string bytes;
  for (int i = 0; i < 8; ++i)
    bytes += static_cast<char>(uint64_t(header.size()) >> (8 * i));
  return bytes + header + data;
}

/// Random tensors of every dtype, including a scalar and an empty tensor.
moert::TensorList randomTensors(uint32_t seed) {
  moert::TensorList list;
  list.add("layers.0.w", randomTensor({3, 5}, seed));
  list.add("half", randomTensor({7}, seed + 1).cast(MOE_F16));
  list.add("brain", randomTensor({2, 3}, seed + 2).cast(MOE_BF16));
  list.add("double", randomTensor({4}, seed + 3).cast(MOE_F64));
  list.add("scalar", randomTensor({}, seed + 4));
  list.add("empty", moert::Tensor::zeros(MOE_F32, {0, 3}));
  for (moe_dtype dtype : {MOE_I8, MOE_I32, MOE_I64, MOE_U8, MOE_BOOL}) {
    moert::Tensor t = moert::Tensor::zeros(dtype, {2, 3});
    t.fillUniformInt(seed + dtype, 0, dtype == MOE_BOOL ? 2 : 100);
    list.add(std::string("int_") + moe_dtype_name(dtype), t);
  }
  return list;
}

TEST(Safetensors, RoundTripIsBitExact) {
  TempDir dir;
  for (uint32_t seed : {1u, 2u, 3u}) {
    moert::TensorList tensors = randomTensors(seed);
    std::string path = dir / ("t" + std::to_string(seed) + ".safetensors");
    moert::writeSafetensors(path, tensors);
    moert::TensorList back = moert::readSafetensors(path);
    ASSERT_EQ(back.size(), tensors.size());
    for (int32_t i = 0; i < tensors.size(); ++i) {
      SCOPED_TRACE(tensors.name(i));
      moert::Tensor read = back.find(tensors.name(i));
      ASSERT_TRUE(read);
      expectSameTensor(read, tensors.at(i));
    }
    // The header is padded so that the data section is 8-byte aligned,
    // and carries the metadata that Hugging Face loaders look for.
    std::string bytes = readBytes(path);
    uint64_t headerSize = 0;
    for (int i = 7; i >= 0; --i)
      headerSize = (headerSize << 8) | uint8_t(bytes[i]);
    EXPECT_EQ((8 + headerSize) % 8, 0u);
    EXPECT_NE(bytes.find("\"__metadata__\":{\"format\":\"pt\"}"),
              std::string::npos);
    EXPECT_EQ(dir.list().size(), seed); // No temporary files left.
  }
}

TEST(Safetensors, ReadsFilesWrittenByOthers) {
  // As the Python library writes them: metadata, space padding, tensors in
  // any order, escaped names.
  TempDir dir;
  std::vector<float> a = randomFloats(4, 7);
  int64_t b[2] = {-3, 1ll << 40};
  std::string data(reinterpret_cast<const char *>(b), sizeof(b));
  data += std::string(reinterpret_cast<const char *>(a.data()), 16);
  std::string header =
      "{\"__metadata__\": {\"format\": \"pt\", \"note\": \"caf\\u00e9\"},"
      " \"a\\/x\": {\"dtype\": \"F32\", \"shape\": [2, 2], "
      "\"data_offsets\": [16, 32]},\n \"b\": {\"shape\": [2], \"dtype\": "
      "\"I64\", \"data_offsets\": [0, 16]}}   ";
  writeBytes(dir / "f.safetensors", safetensorsFile(header, data));
  moert::TensorList list = moert::readSafetensors(dir / "f.safetensors");
  ASSERT_EQ(list.size(), 2);
  EXPECT_EQ(list.name(0), "a/x");
  EXPECT_EQ(list.at("a/x").toVector<float>(), a);
  EXPECT_EQ(list.at("b").toVector<int64_t>(),
            (std::vector<int64_t>{-3, 1ll << 40}));
}

struct Malformed {
  const char *name;
  std::string bytes;
  const char *message;
};

std::vector<Malformed> malformedFiles() {
  std::string eight(8, 'x'), sixteen(16, 'y');
  std::string tensor = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]}}";
  std::string hugeLength(8, '\xff');
  return {
      {"Empty", "", "truncated: 0 bytes"},
      {"ShortLength", std::string("\x05\x00\x00", 3), "truncated: 3 bytes"},
      {"HeaderBeyondFile", safetensorsFile(tensor, eight).substr(0, 30),
       "header length 54 exceeds the 22 bytes"},
      {"HugeHeaderLength", hugeLength + tensor, "exceeds"},
      {"TruncatedData", safetensorsFile(tensor, "abc"),
       "data_offsets [0, 8] lie outside the 3-byte data section"},
      {"BadJson", safetensorsFile("{\"t\":", ""), "unexpected end of JSON"},
      {"TrailingComma",
       safetensorsFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]},}",
                       eight),
       "expected a string key"},
      {"TrailingText", safetensorsFile(tensor + "x", eight),
       "unexpected text after the JSON value"},
      {"InvalidUtf8", safetensorsFile("{\"\xff\":1}", ""), "invalid UTF-8"},
      {"LoneSurrogate", safetensorsFile("{\"\\ud800\":1}", ""),
       "unpaired high surrogate"},
      {"DuplicateKey", safetensorsFile("{\"t\":{},\"t\":{}}", ""),
       "duplicate key \"t\""},
      {"NotAnObject", safetensorsFile("[1, 2]", ""),
       "header is an array, not a JSON object"},
      {"DeepNesting",
       safetensorsFile(std::string(100, '[') + std::string(100, ']'), ""),
       "nesting deeper than 64"},
      {"EntryNotAnObject", safetensorsFile("{\"t\":\"F32\"}", ""),
       "tensor 't': expected an object, found a string"},
      {"MissingDtype",
       safetensorsFile("{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", eight),
       "'dtype' is missing"},
      {"UnknownDtype",
       safetensorsFile("{\"t\":{\"dtype\":\"F99\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]}}",
                       eight),
       "unknown dtype \"F99\""},
      {"NegativeExtent",
       safetensorsFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],"
                       "\"data_offsets\":[0,8]}}",
                       eight),
       "'shape' must hold non-negative integers"},
      {"FractionalExtent",
       safetensorsFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],"
                       "\"data_offsets\":[0,8]}}",
                       eight),
       "'shape' must hold non-negative integers"},
      {"OneOffset",
       safetensorsFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[8]}}",
                       eight),
       "'data_offsets' must be two non-negative integers"},
      {"ReversedOffsets",
       safetensorsFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[0],"
                       "\"data_offsets\":[8,0]}}",
                       eight),
       "data_offsets [8, 0] are reversed"},
      {"OffsetsOutOfRange",
       safetensorsFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[12,20]}}",
                       sixteen),
       "data_offsets [12, 20] lie outside the 16-byte data section"},
      {"ByteCountMismatch",
       safetensorsFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[3],"
                       "\"data_offsets\":[0,8]}}",
                       eight),
       "F32 [3] needs 12 bytes but data_offsets [0, 8] span 8"},
      {"DtypeSizeMismatch",
       safetensorsFile("{\"t\":{\"dtype\":\"F64\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]}}",
                       eight),
       "F64 [2] needs 16 bytes"},
      {"Overlap",
       safetensorsFile("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\","
                       "\"shape\":[2],\"data_offsets\":[4,12]}}",
                       sixteen),
       "tensors 'a' (bytes [0, 8)) and 'b' (bytes [4, 12)) overlap"},
      {"ShapeOverflow",
       safetensorsFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,"
                       "4294967296],\"data_offsets\":[0,8]}}",
                       eight),
       "is too large"},
      {"BadMetadata", safetensorsFile("{\"__metadata__\":{\"a\":1}}", ""),
       "'__metadata__' must map strings to strings"},
      {"EmptyName",
       safetensorsFile("{\"\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]}}",
                       eight),
       "a tensor has an empty name"},
  };
}

void PrintTo(const Malformed &file, std::ostream *out) { *out << file.name; }

class MalformedSafetensors : public testing::TestWithParam<Malformed> {};

TEST_P(MalformedSafetensors, AreRejectedByReaderAndSession) {
  TempDir dir;
  std::string path = dir / "bad.safetensors";
  writeBytes(path, GetParam().bytes);
  moe_tensor_list *list = nullptr;
  expectStatus(moe_safetensors_read(path.c_str(), &list),
               MOE_STATUS_INVALID_FILE, {path, GetParam().message});
  EXPECT_EQ(list, nullptr);
  moert::Session session(moert::Model::load(fixture("linear")), 1);
  expectStatus(moe_session_load_parameters(session.get(), path.c_str()),
               MOE_STATUS_INVALID_FILE, {path, GetParam().message});
}

INSTANTIATE_TEST_SUITE_P(Safetensors, MalformedSafetensors,
                         testing::ValuesIn(malformedFiles()),
                         [](const testing::TestParamInfo<Malformed> &info) {
                           return std::string(info.param.name);
                         });

TEST(Safetensors, CorruptedHeadersGiveAStatusNotACrash) {
  TempDir dir;
  moert::writeSafetensors(dir / "good.safetensors", randomTensors(4));
  std::string good = readBytes(dir / "good.safetensors");
  for (uint32_t seed = 0; seed < 300; ++seed) {
    std::mt19937 engine(seed);
    std::string bytes = good;
    // Corrupt a few bytes of the length or the header, or cut the file.
    for (int i = 0; i < 3; ++i)
      bytes[engine() % 300] = static_cast<char>(engine());
    if (seed % 5 == 0)
      bytes.resize(engine() % bytes.size());
    writeBytes(dir / "bad.safetensors", bytes);
    moe_tensor_list *list = nullptr;
    moe_status *status =
        moe_safetensors_read((dir / "bad.safetensors").c_str(), &list);
    EXPECT_TRUE((status == nullptr) != (list == nullptr));
    moe_status_free(status);
    moe_tensor_list_release(list);
  }
}

TEST(Safetensors, DtypesMoertLacksAreReportedWhenNeeded) {
  TempDir dir;
  std::string header =
      "{\"u\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[0,4]},"
      "\"w\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[4,68]},"
      "\"bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[68,84]},"
      "\"out_norm.weight\":{\"dtype\":\"F32\",\"shape\":[4],"
      "\"data_offsets\":[84,100]}}";
  std::vector<float> values = randomFloats(24, 3);
  std::string data =
      std::string("\x01\x00\x02\x00", 4) +
      std::string(reinterpret_cast<const char *>(values.data()), 96);
  writeBytes(dir / "u16.safetensors", safetensorsFile(header, data));
  moe_tensor_list *list = nullptr;
  expectStatus(moe_safetensors_read((dir / "u16.safetensors").c_str(), &list),
               MOE_STATUS_UNSUPPORTED,
               {"tensor 'u' has dtype U16, which moert does not support"});
  // A session that does not need 'u' loads the rest.
  moert::Session session(moert::Model::load(fixture("linear")), 1);
  session.loadParameters(dir / "u16.safetensors");
  EXPECT_EQ(session.getParameter("bias").toVector<float>(),
            std::vector<float>(values.begin() + 16, values.begin() + 20));
}

TEST(Safetensors, WriteRejectsReservedName) {
  TempDir dir;
  expectError(
      [&] {
        moert::writeSafetensors(dir / "m.safetensors",
                                {{"__metadata__", randomTensor({2}, 1)}});
      },
      MOE_STATUS_INVALID_ARGUMENT, {"'__metadata__' is reserved"});
  EXPECT_TRUE(dir.list().empty());
}

TEST(Safetensors, FailedSaveLeavesNoPartialFile) {
  TempDir dir;
  moert::TensorList tensors = randomTensors(5);
  // The target is a directory: rename fails after the data was written.
  std::filesystem::create_directory(dir / "target");
  expectError([&] { moert::writeSafetensors(dir / "target", tensors); },
              MOE_STATUS_IO_ERROR, {"target", "rename"});
  EXPECT_EQ(dir.list(), std::vector<std::string>{"target"});
  // The directory does not exist: nothing can be created.
  expectError(
      [&] { moert::writeSafetensors(dir / "missing/p.safetensors", tensors); },
      MOE_STATUS_IO_ERROR, {"missing/p.safetensors", "No such file"});
  EXPECT_EQ(dir.list(), std::vector<std::string>{"target"});
}

TEST(Safetensors, WriteFailureKeepsTheOldFile) {
  TempDir dir;
  std::string path = dir / "p.safetensors";
  moert::writeSafetensors(path, {{"old", randomTensor({3}, 1)}});
  std::string old = readBytes(path);
  // In a child process, limit file sizes so that writing a 4 MB tensor
  // fails half-way (EFBIG), as a full disk would.
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    signal(SIGXFSZ, SIG_IGN);
    rlimit limit{1 << 20, 1 << 20};
    setrlimit(RLIMIT_FSIZE, &limit);
    moe_tensor_list *list = nullptr;
    moe_tensor *big = nullptr;
    int64_t shape[] = {1 << 20};
    if (moe_tensor_list_create(&list) ||
        moe_tensor_create(MOE_F32, 1, shape, &big) ||
        moe_tensor_fill_normal(big, 1, 0, 1) ||
        moe_tensor_list_add(list, "big", big))
      _exit(10);
    moe_status *status = moe_safetensors_write(path.c_str(), list);
    bool failedClearly =
        status && moe_status_get_code(status) == MOE_STATUS_IO_ERROR &&
        std::string(moe_status_get_message(status)).find(path) !=
            std::string::npos;
    _exit(failedClearly ? 0 : 11);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(readBytes(path), old);
  EXPECT_EQ(dir.list(), std::vector<std::string>{"p.safetensors"});
  // Without the limit, the same save replaces the file.
  moert::writeSafetensors(path, {{"new", randomTensor({1 << 20}, 2)}});
  EXPECT_EQ(moert::readSafetensors(path).name(0), "new");
  EXPECT_EQ(dir.list(), std::vector<std::string>{"p.safetensors"});
}

} // namespace
