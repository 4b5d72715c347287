//===- ModelTest.cpp - Loading model.so and validating its tables ---------===//
//
// A model file may be anything a user points at: each bad file must give a
// clear status naming the file and the problem, never a crash.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

using namespace moert::test;

namespace {

TEST(Model, LoadsAndDescribesEntryPoints) {
  moert::Model model = moert::Model::load(fixture("linear"));
  EXPECT_EQ(model.path(), fixture("linear"));
  EXPECT_EQ(model.producer(), "fixture linear");
  EXPECT_EQ(model.target(), "cpu test");
  EXPECT_EQ(model.signatureJson(), "{\"entries\":[\"forward\",\"score\"]}");
  EXPECT_EQ(model.entryNames(), (std::vector<std::string>{"forward", "score"}));

  std::vector<moert::ArgInfo> args = model.args("forward");
  ASSERT_EQ(args.size(), 8u);
  EXPECT_EQ(args[0].name, "x");
  EXPECT_EQ(args[0].role, MOE_ROLE_INPUT);
  EXPECT_EQ(args[0].dtype, MOE_F32);
  EXPECT_EQ(args[0].shape, (std::vector<int64_t>{MOE_DYNAMIC, 4}));
  EXPECT_EQ(args[0].dimNames, (std::vector<std::string>{"batch", ""}));
  EXPECT_EQ(args[3].name, "out_norm.weight");
  EXPECT_EQ(args[3].role, MOE_ROLE_PARAMETER);
  EXPECT_EQ(args[5].name, "tokens_per_expert");
  EXPECT_EQ(args[5].role, MOE_ROLE_METRIC);
  EXPECT_EQ(args[5].dtype, MOE_I32);
  EXPECT_EQ(args[6].shape, std::vector<int64_t>{});

  std::string description = model.description();
  for (const char *part :
       {"entry 'forward'", "entry 'score'", "f32 [?batch, 4]", "metric",
        "tokens_per_expert", "i64 []"})
    EXPECT_NE(description.find(part), std::string::npos) << description;
}

TEST(Model, CQueriesHandleOutOfRange) {
  moert::Model model = moert::Model::load(fixture("linear"));
  moe_model *raw = model.get();
  EXPECT_EQ(moe_model_num_entries(raw), 2);
  EXPECT_EQ(moe_model_find_entry(raw, "score"), 1);
  EXPECT_EQ(moe_model_find_entry(raw, "backward"), -1);
  EXPECT_EQ(moe_model_find_entry(raw, nullptr), -1);
  EXPECT_EQ(moe_model_entry_name(raw, 2), nullptr);
  EXPECT_EQ(moe_model_entry_name(raw, -1), nullptr);
  EXPECT_EQ(moe_model_num_args(raw, 1), 3);
  EXPECT_EQ(moe_model_num_args(raw, 5), -1);
  EXPECT_EQ(moe_model_arg(raw, 0, 8), nullptr);
  EXPECT_EQ(moe_model_arg(raw, 7, 0), nullptr);
  const moe_arg_info *s = moe_model_arg(raw, 1, 2);
  ASSERT_NE(s, nullptr);
  EXPECT_STREQ(s->name, "s");
  EXPECT_EQ(s->rank, 1);
  EXPECT_STREQ(s->dim_names[0], "batch");
}

TEST(Model, RejectsNullArguments) {
  moe_model *model = nullptr;
  expectStatus(moe_model_load(nullptr, &model), MOE_STATUS_INVALID_ARGUMENT,
               {"moe_model_load", "'path' is NULL"});
  expectStatus(moe_model_load(fixture("linear").c_str(), nullptr),
               MOE_STATUS_INVALID_ARGUMENT, {"'out' is NULL"});
  EXPECT_EQ(model, nullptr);
}

TEST(Model, RejectsMissingFileAndDirectory) {
  TempDir dir;
  moe_model *model = nullptr;
  expectStatus(moe_model_load((dir / "absent.so").c_str(), &model),
               MOE_STATUS_NOT_FOUND, {dir / "absent.so", "does not exist"});
  expectStatus(moe_model_load(dir.path.c_str(), &model),
               MOE_STATUS_INVALID_ARGUMENT, {"is a directory"});
  EXPECT_EQ(model, nullptr);
}

TEST(Model, RejectsTextFile) {
  TempDir dir;
  writeBytes(dir / "model.so", "this is not a shared library\n");
  moe_model *model = nullptr;
  expectStatus(moe_model_load((dir / "model.so").c_str(), &model),
               MOE_STATUS_INVALID_FILE, {dir / "model.so", "not an ELF file"});
  writeBytes(dir / "empty.so", "");
  expectStatus(moe_model_load((dir / "empty.so").c_str(), &model),
               MOE_STATUS_INVALID_FILE, {"not an ELF file"});
}

TEST(Model, RejectsTruncatedCopies) {
  TempDir dir;
  std::string bytes = readBytes(fixture("linear"));
  ASSERT_GT(bytes.size(), 4096u);
  // Cuts in the ELF header, the program headers, the segments and the
  // section table: each must be caught before dlopen maps missing pages.
  for (size_t size : {size_t(3), size_t(20), size_t(63), size_t(64),
                      size_t(200), size_t(1000), bytes.size() / 4,
                      bytes.size() / 2, bytes.size() - 100, bytes.size() - 1}) {
    SCOPED_TRACE(size);
    std::string path = dir / ("cut" + std::to_string(size) + ".so");
    writeBytes(path, bytes.substr(0, size));
    moe_model *model = nullptr;
    moe_status *status = moe_model_load(path.c_str(), &model);
    ASSERT_NE(status, nullptr);
    std::string message = moe_status_get_message(status);
    EXPECT_EQ(moe_status_get_code(status), MOE_STATUS_INVALID_FILE) << message;
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_TRUE(message.find("truncated") != std::string::npos ||
                message.find("not an ELF") != std::string::npos)
        << message;
    moe_status_free(status);
  }
}

TEST(Model, RejectsGarbageAfterElfMagic) {
  TempDir dir;
  for (uint32_t seed : {1u, 2u, 3u, 4u, 5u}) {
    std::mt19937 engine(seed);
    std::string bytes = "\x7f"
                        "ELF";
    bytes += '\x02'; // 64-bit, so that the header checks go further.
    bytes += '\x01';
    for (int i = 0; i < 4000; ++i)
      bytes += static_cast<char>(engine());
    std::string path = dir / ("garbage" + std::to_string(seed) + ".so");
    writeBytes(path, bytes);
    moe_model *model = nullptr;
    moe_status *status = moe_model_load(path.c_str(), &model);
    EXPECT_NE(status, nullptr);
    EXPECT_EQ(model, nullptr);
    moe_status_free(status);
  }
}

TEST(Model, RejectsForeignLibrary) {
  expectError([] { moert::Model::load(MOERT_LIBRARY); },
              MOE_STATUS_INCOMPATIBLE_MODEL,
              {MOERT_LIBRARY, "not a moec model", "moe_abi_query"});
}

TEST(Model, RejectsLibraryWithoutQuerySymbol) {
  expectError([] { moert::Model::load(fixture("no_symbol")); },
              MOE_STATUS_INCOMPATIBLE_MODEL,
              {"no_symbol.so", "does not export 'moe_abi_query'"});
}

TEST(Model, RejectsOtherAbiVersion) {
  expectError([] { moert::Model::load(fixture("bad_version")); },
              MOE_STATUS_INCOMPATIBLE_MODEL,
              {"bad_version.so", "ABI version 99",
               "implements version " + std::to_string(MOE_ABI_VERSION)});
}

struct TableDefect {
  int defect;
  const char *message;
};

void PrintTo(const TableDefect &defect, std::ostream *out) {
  *out << "defect " << defect.defect;
}

class InvalidTables : public testing::TestWithParam<TableDefect> {};

TEST_P(InvalidTables, AreRejectedWithTheirProblem) {
  std::string path = fixture("bad_table_" + std::to_string(GetParam().defect));
  expectError([&] { moert::Model::load(path); }, MOE_STATUS_INCOMPATIBLE_MODEL,
              {path, GetParam().message});
}

INSTANTIATE_TEST_SUITE_P(
    Model, InvalidTables,
    testing::Values(
        TableDefect{1, "argument 'x' is declared twice"},
        TableDefect{2, "argument 'x' has invalid dtype 42"},
        TableDefect{3, "argument 'x' has invalid role 9"},
        TableDefect{4, "entry point 'forward' has no invoke function"},
        TableDefect{5, "two entry points are called 'forward'"},
        TableDefect{6, "moe_abi_model is 8 bytes"},
        TableDefect{7, "moe_abi_query() returned NULL"},
        TableDefect{8, "parameter with dynamic dimension 0"},
        TableDefect{9, "'w' is a parameter f32 [4] in entry point 'forward' "
                       "but a parameter f32 [8] in entry point 'other'"},
        TableDefect{10, "argument 'x' has invalid rank -1"},
        TableDefect{11, "declares 0 entry points"},
        TableDefect{12, "dimension 'd' is 4 in argument 'x' but 8 in "
                        "argument 'y'"},
        TableDefect{13, "dimension 0 has invalid extent -5"},
        TableDefect{14, "argument 0 has no name"},
        TableDefect{15, "runs on the host (device 0) but carries device code"},
        TableDefect{16, "its device is 7, expected 0 (host) or 1 (cuda)"},
        TableDefect{17, "CUDA model without PTX"},
        TableDefect{18, "CUDA model with 0 kernel names"},
        TableDefect{19, "its kernel 0 has no name"},
        TableDefect{20, "has a cubin but no device_arch"}),
    [](const testing::TestParamInfo<TableDefect> &info) {
      return "Defect" + std::to_string(info.param.defect);
    });

TEST(Model, LoadsTheSameLibraryTwice) {
  moert::Model first = moert::Model::load(fixture("linear"));
  moert::Model second = moert::Model::load(fixture("linear"));
  first = moert::Model();
  EXPECT_EQ(second.entryNames().size(), 2u); // Still loaded.
}

} // namespace
