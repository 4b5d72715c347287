//===- DType.h - Element types --------------------------------------------===//
#ifndef MOERT_RUNTIME_DTYPE_H
#define MOERT_RUNTIME_DTYPE_H

#include "moe/runtime/moert.h"

#include <cstdint>
#include <utility>

namespace moert::detail {

/// Whether `dtype` is a moe_dtype (the ABI's types or U8).
bool isValidDType(int32_t dtype);
/// Whether `dtype` can be declared by a model (moe_abi_dtype).
bool isAbiDType(int32_t dtype);
bool isFloat(moe_dtype dtype);
/// Integers and bool.
bool isIntegral(moe_dtype dtype);
/// The values an integral dtype holds, inclusive.
std::pair<int64_t, int64_t> integralRange(moe_dtype dtype);

float halfToFloat(uint16_t half);
uint16_t floatToHalf(float value);
float bf16ToFloat(uint16_t bf16);
uint16_t floatToBf16(float value);

/// Element `index` of `data` as a double (any dtype).
double loadDouble(const void *data, int64_t index, moe_dtype dtype);
/// Stores `value` into element `index` of a floating-point array.
void storeDouble(void *data, int64_t index, moe_dtype dtype, double value);
/// Element `index` of an integral array.
int64_t loadInt(const void *data, int64_t index, moe_dtype dtype);
/// Stores `value`, which must be in integralRange(dtype).
void storeInt(void *data, int64_t index, moe_dtype dtype, int64_t value);

} // namespace moert::detail

#endif // MOERT_RUNTIME_DTYPE_H
