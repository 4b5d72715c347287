//===- CxxWrapperTest.cpp - RAII handles and exceptions of moert.hpp ------===//

#include "TestUtil.h"

using namespace moert::test;

namespace {

TEST(CxxWrapper, HandlesShareAndRelease) {
  moert::Tensor a = randomTensor({4}, 1);
  moe_tensor *raw = a.get();
  {
    moert::Tensor b = a; // Retains.
    EXPECT_EQ(b.get(), raw);
    moert::Tensor c = std::move(b);
    EXPECT_FALSE(b);
    EXPECT_EQ(c.get(), raw);
  }
  // `a` still owns a live tensor.
  EXPECT_EQ(a.numElements(), 4);
  moert::Tensor d;
  EXPECT_FALSE(d);
  d = a;
  a = moert::Tensor();
  EXPECT_EQ(d.numElements(), 4);
  moe_tensor *released = d.release();
  EXPECT_FALSE(d);
  moe_tensor_release(released);
}

TEST(CxxWrapper, ErrorsCarryCodeAndMessage) {
  try {
    moert::Model::load("/nonexistent/model.so");
    FAIL() << "expected an exception";
  } catch (const moert::Error &e) {
    EXPECT_EQ(e.code(), MOE_STATUS_NOT_FOUND);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.so"),
              std::string::npos);
  }
  EXPECT_NO_THROW(moert::check(nullptr));
}

TEST(CxxWrapper, SessionRunWithInitializerList) {
  moert::Model model = moert::Model::load(fixture("dynamic"));
  moert::Session session(model, 1);
  EXPECT_EQ(session.model().get(), model.get());
  EXPECT_EQ(session.parameters().size(), 1u);
  EXPECT_EQ(session.parameters()[0].name, "embed_tokens.weight");
  moert::Tensor a = randomTensor({1, 2}, 3), b = randomTensor({2, 1}, 4);
  moert::TensorList out = session.run("matmul", {{"a", a}, {"b", b}});
  float expected = a.data<float>()[0] * b.data<float>()[0] +
                   a.data<float>()[1] * b.data<float>()[1];
  EXPECT_FLOAT_EQ(out.at("c").toVector<float>()[0], expected);
}

} // namespace
