//===- TensorTest.cpp - Tensors, casts, random fills, tensor lists --------===//

#include "TestUtil.h"

#include <cmath>
#include <cstring>
#include <limits>

using namespace moert::test;

namespace {

TEST(Tensor, OwnedTensorsCopyTheirData) {
  std::vector<float> values = randomFloats(6, 1);
  moert::Tensor t = moert::Tensor::fromVector({2, 3}, values);
  EXPECT_EQ(t.dtype(), MOE_F32);
  EXPECT_EQ(t.rank(), 2);
  EXPECT_EQ(t.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t.numElements(), 6);
  EXPECT_EQ(t.byteSize(), 24u);
  EXPECT_FALSE(t.isView());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  values[0] += 1;
  EXPECT_NE(t.data<float>()[0], values[0]);
  moert::Tensor zeros = moert::Tensor::zeros(MOE_I64, {0, 5});
  EXPECT_EQ(zeros.numElements(), 0);
  EXPECT_NE(zeros.data(), nullptr);
  EXPECT_EQ(moert::Tensor::zeros(MOE_F16, {}).numElements(), 1);
}

TEST(Tensor, ViewsBorrowCallerMemory) {
  std::vector<int32_t> values = {4, -7, 12};
  moert::Tensor view = moert::Tensor::view(MOE_I32, {3}, values.data(), 12);
  EXPECT_TRUE(view.isView());
  EXPECT_EQ(view.data(), values.data());
  values[1] = 99;
  EXPECT_EQ(view.data<int32_t>()[1], 99);
  expectError([&] { view.data<float>(); }, MOE_STATUS_INVALID_ARGUMENT,
              {"tensor has dtype i32, not f32"});
}

TEST(Tensor, CreationValidatesItsArguments) {
  moe_tensor *t = nullptr;
  int64_t negative[] = {2, -1};
  expectStatus(moe_tensor_create(MOE_F32, 2, negative, &t),
               MOE_STATUS_INVALID_ARGUMENT,
               {"moe_tensor_create", "dimension 1 has negative extent -1"});
  int64_t shape[MOE_MAX_RANK + 1] = {};
  expectStatus(moe_tensor_create(MOE_F32, MOE_MAX_RANK + 1, shape, &t),
               MOE_STATUS_INVALID_ARGUMENT, {"rank 17 is not in [0, 16]"});
  expectStatus(moe_tensor_create(moe_dtype(42), 0, nullptr, &t),
               MOE_STATUS_INVALID_ARGUMENT, {"invalid dtype 42"});
  int64_t big[] = {int64_t(1) << 40, int64_t(1) << 40};
  expectStatus(moe_tensor_create(MOE_F32, 2, big, &t),
               MOE_STATUS_INVALID_ARGUMENT, {"is too large"});
  expectStatus(moe_tensor_create(MOE_F32, 1, nullptr, &t),
               MOE_STATUS_INVALID_ARGUMENT, {"shape is NULL but rank is 1"});
  float data[4] = {1, 2, 3, 4};
  int64_t four[] = {4};
  expectStatus(moe_tensor_create_copy(MOE_F32, 1, four, data, 12, &t),
               MOE_STATUS_INVALID_ARGUMENT,
               {"byte_size is 12 but a f32 [4] tensor has 16 bytes"});
  int64_t three[] = {3};
  expectStatus(moe_tensor_create_view(MOE_F32, 1, three,
                                      reinterpret_cast<char *>(data) + 1, 12,
                                      &t),
               MOE_STATUS_INVALID_ARGUMENT, {"not aligned to the 4-byte"});
  expectStatus(moe_tensor_create_view(MOE_F32, 1, four, nullptr, 16, &t),
               MOE_STATUS_INVALID_ARGUMENT, {"'data' is NULL"});
  expectStatus(moe_tensor_create(MOE_F32, 1, four, nullptr),
               MOE_STATUS_INVALID_ARGUMENT, {"'out' is NULL"});
  EXPECT_EQ(t, nullptr);
}

TEST(Tensor, HalfPrecisionConversionsRoundToNearestEven) {
  std::vector<float> values = {0.0f,
                               -0.0f,
                               1.0f,
                               -2.5f,
                               65504.0f,
                               65519.0f,
                               65520.0f,
                               1e-7f,
                               std::ldexp(1.0f, -24),
                               std::ldexp(1.0f, -25),
                               1.0f + std::ldexp(1.0f, -11),
                               1.0f + 3 * std::ldexp(1.0f, -11),
                               std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN()};
  // 1e-7 is 1.68 subnormal units of 2^-24; 2^-25 and 1 + 2^-11 are ties
  // that go to the even neighbour, 1 + 3 * 2^-11 a tie that goes up.
  std::vector<float> expected = {0.0f,
                                 -0.0f,
                                 1.0f,
                                 -2.5f,
                                 65504.0f,
                                 65504.0f,
                                 INFINITY,
                                 std::ldexp(1.0f, -23),
                                 std::ldexp(1.0f, -24),
                                 0.0f,
                                 1.0f,
                                 1.0f + 4 * std::ldexp(1.0f, -11),
                                 INFINITY,
                                 NAN};
  moert::Tensor f16 =
      moert::Tensor::fromVector({int64_t(values.size())}, values).cast(MOE_F16);
  std::vector<float> back = f16.cast(MOE_F32).toVector<float>();
  for (size_t i = 0; i < values.size(); ++i) {
    SCOPED_TRACE(values[i]);
    if (std::isnan(expected[i]))
      EXPECT_TRUE(std::isnan(back[i]));
    else
      EXPECT_EQ(back[i], expected[i]);
    EXPECT_EQ(std::signbit(back[i]), std::signbit(expected[i]));
  }
}

TEST(Tensor, Bf16ConversionsRoundToNearestEven) {
  float halfway = 1.0f + std::ldexp(1.0f, -8);   // Tie: to even (1.0).
  float above = 1.0f + 3 * std::ldexp(1.0f, -8); // Tie: to even (1+2^-6).
  float near = 1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20);
  moert::Tensor t = moert::Tensor::fromVector<float>(
      {4}, {halfway, above, near, std::numeric_limits<float>::quiet_NaN()});
  std::vector<float> back = t.cast(MOE_BF16).cast(MOE_F32).toVector<float>();
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[1], 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(back[2], 1.0f + std::ldexp(1.0f, -7));
  EXPECT_TRUE(std::isnan(back[3]));
  // Every bf16 value survives f32 and back.
  moert::Tensor random = randomTensor({1000}, 3).cast(MOE_BF16);
  expectSameTensor(random.cast(MOE_F32).cast(MOE_BF16), random);
}

TEST(Tensor, IntegerCastsCheckRanges) {
  moert::Tensor wide = moert::Tensor::fromVector<int64_t>({3}, {-5, 127, 300});
  expectError([&] { wide.cast(MOE_I8); }, MOE_STATUS_INVALID_ARGUMENT,
              {"cannot cast i64 to i8", "element 2 (300)", "[-128, 127]"});
  EXPECT_EQ(wide.cast(MOE_I32).toVector<int32_t>(),
            (std::vector<int32_t>{-5, 127, 300}));
  expectError([&] { wide.cast(MOE_BOOL); }, MOE_STATUS_INVALID_ARGUMENT,
              {"element 0 (-5)"});
  expectError([&] { randomTensor({2}, 1).cast(MOE_I32); },
              MOE_STATUS_INVALID_ARGUMENT, {"would truncate"});
  moert::Tensor flags = moert::Tensor::fromVector<uint8_t>({3}, {0, 1, 1});
  EXPECT_EQ(flags.cast(MOE_BOOL).cast(MOE_F32).toVector<float>(),
            (std::vector<float>{0, 1, 1}));
  EXPECT_EQ(wide.cast(MOE_F64).toVector<double>(),
            (std::vector<double>{-5, 127, 300}));
}

TEST(Tensor, NormalFillIsDeterministicAndNormal) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    moert::Tensor a = moert::Tensor::zeros(MOE_F64, {200001});
    moert::Tensor b = moert::Tensor::zeros(MOE_F64, {200001});
    a.fillNormal(seed, 2.0, 3.0);
    b.fillNormal(seed, 2.0, 3.0);
    expectSameTensor(a, b);
    double sum = 0, squares = 0;
    for (double value : a.toVector<double>()) {
      sum += value;
      squares += (value - 2.0) * (value - 2.0);
    }
    EXPECT_NEAR(sum / a.numElements(), 2.0, 0.03);
    EXPECT_NEAR(std::sqrt(squares / a.numElements()), 3.0, 0.03);
  }
  moert::Tensor c = moert::Tensor::zeros(MOE_F64, {100});
  moert::Tensor d = moert::Tensor::zeros(MOE_F64, {100});
  c.fillNormal(1);
  d.fillNormal(2);
  EXPECT_NE(c.toVector<double>(), d.toVector<double>());
  moert::Tensor ints = moert::Tensor::zeros(MOE_I32, {4});
  expectError([&] { ints.fillNormal(1); }, MOE_STATUS_INVALID_ARGUMENT,
              {"needs a floating-point dtype"});
  expectError([&] { c.fillNormal(1, 0, -1); }, MOE_STATUS_INVALID_ARGUMENT,
              {"stddev >= 0"});
}

TEST(Tensor, UniformIntFillStaysInRange) {
  for (uint64_t seed : {4u, 5u, 6u}) {
    moert::Tensor t = moert::Tensor::zeros(MOE_I32, {5000});
    t.fillUniformInt(seed, -3, 7);
    std::vector<int> seen(10, 0);
    for (int32_t value : t.toVector<int32_t>()) {
      ASSERT_GE(value, -3);
      ASSERT_LT(value, 7);
      seen[value + 3]++;
    }
    for (int count : seen)
      EXPECT_GT(count, 400); // About 500 each.
  }
  moert::Tensor bytes = moert::Tensor::zeros(MOE_I8, {4});
  expectError([&] { bytes.fillUniformInt(1, 0, 256); },
              MOE_STATUS_INVALID_ARGUMENT, {"does not fit i8"});
  expectError([&] { bytes.fillUniformInt(1, 5, 5); },
              MOE_STATUS_INVALID_ARGUMENT, {"[5, 5) is empty"});
  moert::Tensor floats = moert::Tensor::zeros(MOE_F32, {4});
  expectError([&] { floats.fillUniformInt(1, 0, 2); },
              MOE_STATUS_INVALID_ARGUMENT, {"needs an integer or bool dtype"});
}

TEST(TensorList, KeepsNamedTensorsInOrder) {
  moert::Tensor a = randomTensor({2}, 1), b = randomTensor({3}, 2);
  moert::TensorList list{{"a", a}, {"b", b}};
  EXPECT_EQ(list.size(), 2);
  EXPECT_EQ(list.name(1), "b");
  EXPECT_EQ(list.at(0).get(), a.get());
  EXPECT_EQ(list.at("b").get(), b.get());
  EXPECT_FALSE(list.find("c"));
  expectError([&] { list.at("c"); }, MOE_STATUS_INVALID_ARGUMENT,
              {"no tensor 'c'"});
  expectError([&] { list.add("a", b); }, MOE_STATUS_INVALID_ARGUMENT,
              {"already has a tensor named 'a'"});
  expectError([&] { list.add("", b); }, MOE_STATUS_INVALID_ARGUMENT,
              {"needs a name"});
  EXPECT_EQ(moe_tensor_list_get(list.get(), 2), nullptr);
  EXPECT_EQ(moe_tensor_list_name(list.get(), -1), nullptr);
  EXPECT_EQ(moe_tensor_list_find(list.get(), nullptr), nullptr);
}

TEST(Status, CodesAndMessages) {
  EXPECT_EQ(moe_status_get_code(nullptr), MOE_STATUS_OK);
  EXPECT_STREQ(moe_status_get_message(nullptr), "");
  moe_status_free(nullptr);
  EXPECT_STREQ(moe_status_code_name(MOE_STATUS_INVALID_FILE), "invalid file");
  EXPECT_STREQ(moe_status_code_name(moe_status_code(99)), "unknown");
  EXPECT_STREQ(moe_dtype_name(MOE_BF16), "bf16");
  EXPECT_EQ(moe_dtype_size(MOE_U8), 1u);
  EXPECT_EQ(moe_dtype_size(moe_dtype(0)), 0u);
  EXPECT_STREQ(moe_role_name(MOE_ROLE_OPTIMIZER_STATE), "optimizer state");
  EXPECT_STREQ(moe_runtime_version(), "0.1.0");
}

} // namespace
