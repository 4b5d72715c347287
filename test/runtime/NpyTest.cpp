//===- NpyTest.cpp - Reading and writing .npy files -----------------------===//

#include "TestUtil.h"

#include <cstdlib>

using namespace moert::test;

namespace {

/// An npy file of format `major`.0 with header `dict` and `data`.
std::string npyFile(int major, const std::string &dict,
                    const std::string &data) {
  std::string header = dict + "\n";
  std::string bytes = "\x93NUMPY";
  bytes += static_cast<char>(major);
  bytes += '\0';
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i)
    bytes += static_cast<char>(header.size() >> (8 * i));
  return bytes + header + data;
}

std::string floatBytes(const std::vector<float> &values) {
  return std::string(reinterpret_cast<const char *>(values.data()),
                     values.size() * sizeof(float));
}

TEST(Npy, RoundTripsEveryDtype) {
  TempDir dir;
  for (uint32_t seed : {1u, 2u, 3u}) {
    std::vector<moert::Tensor> tensors = {
        randomTensor({3, 4}, seed),
        randomTensor({5}, seed + 1).cast(MOE_F16),
        randomTensor({2, 1, 3}, seed + 2).cast(MOE_F64),
        randomTensor({}, seed + 3),
        moert::Tensor::zeros(MOE_F32, {0, 7}),
    };
    for (moe_dtype dtype : {MOE_I8, MOE_I32, MOE_I64, MOE_U8, MOE_BOOL}) {
      moert::Tensor t = moert::Tensor::zeros(dtype, {4, 2});
      t.fillUniformInt(seed * 10 + dtype, 0, dtype == MOE_BOOL ? 2 : 120);
      tensors.push_back(t);
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      SCOPED_TRACE(testing::Message()
                   << moe_dtype_name(tensors[i].dtype()) << " #" << i);
      std::string path = dir / (std::to_string(i) + ".npy");
      moert::writeNpy(path, tensors[i]);
      expectSameTensor(moert::readNpy(path), tensors[i]);
      std::string bytes = readBytes(path);
      size_t headerSize = uint8_t(bytes[8]) | (uint8_t(bytes[9]) << 8);
      EXPECT_EQ((10 + headerSize) % 64, 0u); // Data 64-byte aligned.
      EXPECT_EQ(bytes[9 + headerSize], '\n');
    }
  }
}

TEST(Npy, WritesNumpyHeaders) {
  TempDir dir;
  moert::writeNpy(dir / "v.npy", randomTensor({3}, 1));
  moert::writeNpy(dir / "s.npy", randomTensor({}, 1));
  moert::writeNpy(dir / "m.npy", moert::Tensor::zeros(MOE_I64, {2, 3}));
  EXPECT_NE(readBytes(dir / "v.npy")
                .find("{'descr': '<f4', 'fortran_order': False, 'shape': "
                      "(3,), }"),
            std::string::npos);
  EXPECT_NE(readBytes(dir / "s.npy").find("'shape': (), }"), std::string::npos);
  EXPECT_NE(readBytes(dir / "m.npy").find("'descr': '<i8'"), std::string::npos);
  EXPECT_NE(readBytes(dir / "m.npy").find("'shape': (2, 3), }"),
            std::string::npos);
}

TEST(Npy, RefusesToWriteBf16) {
  TempDir dir;
  expectError(
      [&] {
        moert::writeNpy(dir / "b.npy", randomTensor({2}, 1).cast(MOE_BF16));
      },
      MOE_STATUS_UNSUPPORTED, {"npy has no bf16 type", "cast to f32"});
  EXPECT_TRUE(dir.list().empty());
}

TEST(Npy, ReadsOtherVersionsAndSpellings) {
  TempDir dir;
  std::vector<float> values = randomFloats(6, 4);
  struct Case {
    int major;
    const char *dict;
  };
  for (Case c : {Case{1, "{'descr': '<f4', 'fortran_order': False, "
                         "'shape': (2, 3), }"},
                 Case{2, "{'shape': (2, 3), 'fortran_order': False, "
                         "'descr': '<f4'}"},
                 Case{3, "{\"descr\": \"<f4\", \"fortran_order\": False, "
                         "\"shape\": (2L, 3L)}     "}}) {
    SCOPED_TRACE(c.dict);
    std::string path = dir / "f.npy";
    writeBytes(path, npyFile(c.major, c.dict, floatBytes(values)));
    moert::Tensor t = moert::readNpy(path);
    EXPECT_EQ(t.shape(), (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(t.toVector<float>(), values);
  }
}

struct Malformed {
  const char *name;
  std::string bytes;
  moe_status_code code;
  const char *message;
};

std::vector<Malformed> malformedFiles() {
  std::string six = floatBytes(randomFloats(6, 5));
  std::string good =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  return {
      {"Empty", "", MOE_STATUS_INVALID_FILE, "not an npy file"},
      {"BadMagic", "\x93NUMPZ\x01\x00\x10\x00", MOE_STATUS_INVALID_FILE,
       "not an npy file"},
      {"TruncatedPreamble", npyFile(1, good, six).substr(0, 8),
       MOE_STATUS_INVALID_FILE, "truncated in its preamble"},
      {"HeaderPastEnd", npyFile(1, good, six).substr(0, 40),
       MOE_STATUS_INVALID_FILE, "header runs past the end"},
      {"Version4", npyFile(4, good, six), MOE_STATUS_UNSUPPORTED,
       "format version 4.0"},
      {"FortranOrder",
       npyFile(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
               six),
       MOE_STATUS_UNSUPPORTED, "Fortran order"},
      {"BigEndian",
       npyFile(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }",
               six),
       MOE_STATUS_UNSUPPORTED, "big-endian ('>f4')"},
      {"Complex",
       npyFile(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }",
               six),
       MOE_STATUS_UNSUPPORTED, "dtype '<c8', which moert does not support"},
      {"Structured",
       npyFile(1,
               "{'descr': [('a', '<f4')], 'fortran_order': False, "
               "'shape': (6,), }",
               six),
       MOE_STATUS_UNSUPPORTED, "structured array"},
      {"TruncatedData", npyFile(1, good, six.substr(0, 20)),
       MOE_STATUS_INVALID_FILE,
       "f32 [2, 3] needs 24 bytes of data but the file has 20 (truncated"},
      {"TrailingData", npyFile(1, good, six + "xx"), MOE_STATUS_INVALID_FILE,
       "needs 24 bytes of data but the file has 26"},
      {"MissingKey", npyFile(1, "{'descr': '<f4', 'shape': (2, 3), }", six),
       MOE_STATUS_INVALID_FILE, "lacks 'descr', 'fortran_order' or 'shape'"},
      {"UnknownKey",
       npyFile(1, "{'descr': '<f4', 'order': 'C', 'shape': (2, 3), }", six),
       MOE_STATUS_INVALID_FILE, "unexpected key 'order'"},
      {"NegativeExtent",
       npyFile(1,
               "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }",
               six),
       MOE_STATUS_INVALID_FILE, "expected a non-negative integer extent"},
      {"NotADict", npyFile(1, "('<f4', False, (2, 3))", six),
       MOE_STATUS_INVALID_FILE, "expected '{'"},
      {"BadBool",
       npyFile(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }",
               "\x01\x05"),
       MOE_STATUS_INVALID_FILE, "bool element 1 is 5"},
  };
}

void PrintTo(const Malformed &file, std::ostream *out) { *out << file.name; }

class MalformedNpy : public testing::TestWithParam<Malformed> {};

TEST_P(MalformedNpy, IsRejectedClearly) {
  TempDir dir;
  std::string path = dir / "bad.npy";
  writeBytes(path, GetParam().bytes);
  moe_tensor *tensor = nullptr;
  expectStatus(moe_npy_read(path.c_str(), &tensor), GetParam().code,
               {path, GetParam().message});
  EXPECT_EQ(tensor, nullptr);
}

INSTANTIATE_TEST_SUITE_P(Npy, MalformedNpy, testing::ValuesIn(malformedFiles()),
                         [](const testing::TestParamInfo<Malformed> &info) {
                           return std::string(info.param.name);
                         });

TEST(Npy, CorruptedFilesGiveAStatusNotACrash) {
  TempDir dir;
  moert::writeNpy(dir / "good.npy", randomTensor({3, 5}, 6));
  std::string good = readBytes(dir / "good.npy");
  for (uint32_t seed = 0; seed < 300; ++seed) {
    std::mt19937 engine(seed);
    std::string bytes = good;
    for (int i = 0; i < 2; ++i)
      bytes[engine() % 64] = static_cast<char>(engine());
    if (seed % 5 == 0)
      bytes.resize(engine() % bytes.size());
    writeBytes(dir / "bad.npy", bytes);
    moe_tensor *tensor = nullptr;
    moe_status *status = moe_npy_read((dir / "bad.npy").c_str(), &tensor);
    EXPECT_TRUE((status == nullptr) != (tensor == nullptr));
    moe_status_free(status);
    moe_tensor_release(tensor);
  }
}

TEST(Npy, MissingFile) {
  TempDir dir;
  expectError([&] { moert::readNpy(dir / "none.npy"); }, MOE_STATUS_NOT_FOUND,
              {"npy file", "none.npy", "does not exist"});
}

/// NumPy reads what moert writes and moert reads what NumPy writes.
TEST(Npy, InteroperatesWithNumpy) {
  std::string python = MOERT_PYTHON;
  if (python.empty() ||
      std::system((python + " -c 'import numpy' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "python3 with numpy is not available";
  TempDir dir;
  moert::Tensor a = randomTensor({3, 4}, 8);
  moert::Tensor b = moert::Tensor::zeros(MOE_I64, {5});
  b.fillUniformInt(9, -50, 50);
  moert::writeNpy(dir / "a.npy", a);
  moert::writeNpy(dir / "b.npy", b);
  moert::writeNpy(dir / "c.npy", randomTensor({2, 2}, 10).cast(MOE_F16));
  std::string script =
      "import numpy as np, sys\n"
      "d = sys.argv[1]\n"
      "a = np.load(d + '/a.npy'); b = np.load(d + '/b.npy')\n"
      "c = np.load(d + '/c.npy')\n"
      "assert a.dtype == np.float32 and a.shape == (3, 4)\n"
      "assert b.dtype == np.int64 and b.shape == (5,)\n"
      "assert c.dtype == np.float16 and c.shape == (2, 2)\n"
      "(a.astype(np.float64) * 2).tofile(d + '/a2.raw')\n"
      "np.save(d + '/b2.npy', b * 3)\n"
      "np.lib.format.write_array(open(d + '/v2.npy', 'wb'),\n"
      "    np.arange(6, dtype=np.int32).reshape(2, 3), version=(2, 0))\n"
      "np.save(d + '/bool.npy', np.array([True, False, True]))\n"
      "np.save(d + '/u8.npy', np.array([[0, 255]], dtype=np.uint8))\n";
  writeBytes(dir / "check.py", script);
  ASSERT_EQ(
      std::system((python + " " + (dir / "check.py") + " " + dir.path.string())
                      .c_str()),
      0);
  std::string raw = readBytes(dir / "a2.raw");
  ASSERT_EQ(raw.size(), 12 * sizeof(double));
  const double *doubled = reinterpret_cast<const double *>(raw.data());
  for (int i = 0; i < 12; ++i)
    EXPECT_EQ(doubled[i], 2.0 * a.data<float>()[i]);
  std::vector<int64_t> b2 = moert::readNpy(dir / "b2.npy").toVector<int64_t>();
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(b2[i], 3 * b.data<int64_t>()[i]);
  EXPECT_EQ(moert::readNpy(dir / "v2.npy").toVector<int32_t>(),
            (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  moert::Tensor flags = moert::readNpy(dir / "bool.npy");
  EXPECT_EQ(flags.dtype(), MOE_BOOL);
  EXPECT_EQ(std::string(static_cast<const char *>(flags.data()), 3),
            std::string("\x01\x00\x01", 3));
  EXPECT_EQ(moert::readNpy(dir / "u8.npy").toVector<uint8_t>(),
            (std::vector<uint8_t>{0, 255}));
}

} // namespace
