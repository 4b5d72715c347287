//===- TrainTestUtil.h - Shared helpers of the training tests -------------===//
#ifndef MOERT_TEST_TRAINTESTUTIL_H
#define MOERT_TEST_TRAINTESTUTIL_H

#include "TestUtil.h"

#include "moe/runtime/moert_train.hpp"

#include <cmath>
#include <string>
#include <vector>

namespace moert::test {

/// The trainable parameters of the train fixture, as (name, dtype, shape).
struct ParamSpec {
  std::string name;
  moe_dtype dtype;
  std::vector<int64_t> shape;
};

inline const std::vector<ParamSpec> &trainParams() {
  static const std::vector<ParamSpec> params = {
      {"w", MOE_F32, {3, 5}},       {"b", MOE_F32, {5}},
      {"e", MOE_BF16, {7, 3}},      {"h", MOE_F16, {11}},
      {"big", MOE_F32, {301, 257}},
  };
  return params;
}

/// A random tensor of `dtype` (values rounded from f32 normal samples).
inline moert::Tensor randomOf(moe_dtype dtype,
                              const std::vector<int64_t> &shape, uint32_t seed,
                              float scale = 1) {
  moert::Tensor values = randomTensor(shape, seed);
  for (int64_t i = 0; i < values.numElements(); ++i)
    values.data<float>()[i] *= scale;
  return dtype == MOE_F32 ? values : values.cast(dtype);
}

/// A session on the train fixture with random parameters from `seed`.
inline moert::Session trainSession(uint32_t seed, int32_t threads = 2) {
  moert::Session session(moert::Model::load(fixture("train")), threads);
  for (const ParamSpec &param : trainParams())
    session.setParameter(param.name,
                         randomOf(param.dtype, param.shape, seed++));
  session.setParameter("steps",
                       moert::Tensor::fromVector<int32_t>({2}, {3, 4}));
  return session;
}

/// Random gradients "grad.P" for every parameter of trainParams().
inline moert::TensorList randomGradients(uint32_t seed, float scale = 1) {
  moert::TensorList gradients;
  for (const ParamSpec &param : trainParams())
    gradients.add("grad." + param.name,
                  randomOf(param.dtype, param.shape, seed++, scale));
  return gradients;
}

/// Elements of a floating-point tensor as doubles.
inline std::vector<double> toDoubles(const moert::Tensor &tensor) {
  return tensor.cast(MOE_F64).toVector<double>();
}

/// `values` rounded to `dtype` (nearest even), as doubles.
inline std::vector<double> roundTo(moe_dtype dtype,
                                   const std::vector<int64_t> &shape,
                                   const std::vector<double> &values) {
  return toDoubles(moert::Tensor::fromVector(shape, values).cast(dtype));
}

/// A batch for train_step: x [rows, 3] and target [rows, 5].
inline moert::TensorList trainBatch(int64_t rows, uint32_t seed) {
  return {{"x", randomTensor({rows, 3}, seed)},
          {"target", randomTensor({rows, 5}, seed + 1)}};
}

/// Whether every parameter of the two sessions is bitwise equal.
inline void expectSameParameters(const moert::Session &a,
                                 const moert::Session &b) {
  for (const moert::ArgInfo &info : a.parameters()) {
    SCOPED_TRACE(info.name);
    expectSameTensor(a.getParameter(info.name), b.getParameter(info.name));
  }
}

} // namespace moert::test

#endif // MOERT_TEST_TRAINTESTUTIL_H
