//===- DType.cpp - Element types and conversions --------------------------===//

#include "DType.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace moert::detail {
namespace {

uint32_t floatBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

float bitsFloat(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

template <typename T> T load(const void *data, int64_t index) {
  T value;
  std::memcpy(&value, static_cast<const char *>(data) + index * sizeof(T),
              sizeof(T));
  return value;
}

template <typename T> void store(void *data, int64_t index, T value) {
  std::memcpy(static_cast<char *>(data) + index * sizeof(T), &value, sizeof(T));
}

} // namespace

bool isValidDType(int32_t dtype) {
  return isAbiDType(dtype) || dtype == MOE_U8;
}

bool isAbiDType(int32_t dtype) {
  return dtype >= MOE_ABI_F32 && dtype <= MOE_ABI_BOOL;
}

bool isFloat(moe_dtype dtype) {
  return dtype == MOE_F32 || dtype == MOE_F16 || dtype == MOE_BF16 ||
         dtype == MOE_F64;
}

bool isIntegral(moe_dtype dtype) {
  return dtype == MOE_I8 || dtype == MOE_I32 || dtype == MOE_I64 ||
         dtype == MOE_BOOL || dtype == MOE_U8;
}

std::pair<int64_t, int64_t> integralRange(moe_dtype dtype) {
  switch (dtype) {
  case MOE_I8:
    return {-128, 127};
  case MOE_I32:
    return {std::numeric_limits<int32_t>::min(),
            std::numeric_limits<int32_t>::max()};
  case MOE_BOOL:
    return {0, 1};
  case MOE_U8:
    return {0, 255};
  default:
    return {std::numeric_limits<int64_t>::min(),
            std::numeric_limits<int64_t>::max()};
  }
}

float halfToFloat(uint16_t half) {
  uint32_t sign = static_cast<uint32_t>(half & 0x8000) << 16;
  uint32_t exponent = (half >> 10) & 0x1f;
  uint32_t mantissa = half & 0x3ff;
  if (exponent == 0) {
    float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31)
    return bitsFloat(sign | 0x7f800000 | (mantissa << 13));
  return bitsFloat(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

uint16_t floatToHalf(float value) {
  uint32_t bits = floatBits(value);
  uint32_t sign = (bits >> 16) & 0x8000;
  uint32_t magnitude = bits & 0x7fffffff;
  if (magnitude >= 0x7f800000) // Inf stays Inf; NaN stays a quiet NaN.
    return sign | 0x7c00 |
           (magnitude > 0x7f800000 ? 0x200 | ((magnitude >> 13) & 0x3ff) : 0);
  if (magnitude >= 0x477ff000) // >= 65520 rounds (to even) to Inf.
    return sign | 0x7c00;
  if (magnitude < 0x38800000) { // Below 2^-14: a subnormal half.
    // Scaling by 2^24 is exact; nearbyint rounds to nearest even.
    float scaled = bitsFloat(magnitude) * 16777216.0f;
    return sign | static_cast<uint32_t>(std::nearbyint(scaled));
  }
  uint32_t exponent = (magnitude >> 23) - 127 + 15;
  uint32_t half = (exponent << 10) | ((magnitude >> 13) & 0x3ff);
  uint32_t rest = magnitude & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1)))
    ++half; // A carry into the exponent is the correct rounding.
  return sign | half;
}

float bf16ToFloat(uint16_t bf16) {
  return bitsFloat(static_cast<uint32_t>(bf16) << 16);
}

uint16_t floatToBf16(float value) {
  uint32_t bits = floatBits(value);
  if ((bits & 0x7fffffff) > 0x7f800000)
    return (bits >> 16) | 0x40; // Keep NaN a (quiet) NaN.
  bits += 0x7fff + ((bits >> 16) & 1);
  return bits >> 16;
}

double loadDouble(const void *data, int64_t index, moe_dtype dtype) {
  switch (dtype) {
  case MOE_F32:
    return load<float>(data, index);
  case MOE_F16:
    return halfToFloat(load<uint16_t>(data, index));
  case MOE_BF16:
    return bf16ToFloat(load<uint16_t>(data, index));
  case MOE_F64:
    return load<double>(data, index);
  default:
    return static_cast<double>(loadInt(data, index, dtype));
  }
}

void storeDouble(void *data, int64_t index, moe_dtype dtype, double value) {
  switch (dtype) {
  case MOE_F32:
    return store<float>(data, index, static_cast<float>(value));
  case MOE_F16:
    return store<uint16_t>(data, index, floatToHalf(static_cast<float>(value)));
  case MOE_BF16:
    return store<uint16_t>(data, index, floatToBf16(static_cast<float>(value)));
  default:
    return store<double>(data, index, value);
  }
}

int64_t loadInt(const void *data, int64_t index, moe_dtype dtype) {
  switch (dtype) {
  case MOE_I8:
    return load<int8_t>(data, index);
  case MOE_I32:
    return load<int32_t>(data, index);
  case MOE_I64:
    return load<int64_t>(data, index);
  default: // bool, u8
    return load<uint8_t>(data, index);
  }
}

void storeInt(void *data, int64_t index, moe_dtype dtype, int64_t value) {
  switch (dtype) {
  case MOE_I8:
    return store<int8_t>(data, index, static_cast<int8_t>(value));
  case MOE_I32:
    return store<int32_t>(data, index, static_cast<int32_t>(value));
  case MOE_I64:
    return store<int64_t>(data, index, value);
  default:
    return store<uint8_t>(data, index, static_cast<uint8_t>(value));
  }
}

} // namespace moert::detail

extern "C" {

size_t moe_dtype_size(moe_dtype dtype) {
  switch (dtype) {
  case MOE_F32:
  case MOE_I32:
    return 4;
  case MOE_F16:
  case MOE_BF16:
    return 2;
  case MOE_F64:
  case MOE_I64:
    return 8;
  case MOE_I8:
  case MOE_BOOL:
  case MOE_U8:
    return 1;
  }
  return 0;
}

const char *moe_dtype_name(moe_dtype dtype) {
  switch (dtype) {
  case MOE_F32:
    return "f32";
  case MOE_F16:
    return "f16";
  case MOE_BF16:
    return "bf16";
  case MOE_F64:
    return "f64";
  case MOE_I8:
    return "i8";
  case MOE_I32:
    return "i32";
  case MOE_I64:
    return "i64";
  case MOE_BOOL:
    return "bool";
  case MOE_U8:
    return "u8";
  }
  return nullptr;
}

const char *moe_device_name(moe_device device) {
  switch (device) {
  case MOE_DEVICE_CPU:
    return "cpu";
  case MOE_DEVICE_CUDA:
    return "cuda";
  }
  return nullptr;
}

const char *moe_role_name(moe_role role) {
  switch (role) {
  case MOE_ROLE_INPUT:
    return "input";
  case MOE_ROLE_PARAMETER:
    return "parameter";
  case MOE_ROLE_OUTPUT:
    return "output";
  case MOE_ROLE_METRIC:
    return "metric";
  case MOE_ROLE_GRADIENT:
    return "gradient";
  case MOE_ROLE_OPTIMIZER_STATE:
    return "optimizer state";
  }
  return nullptr;
}

} // extern "C"
