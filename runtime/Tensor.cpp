//===- Tensor.cpp - Tensors and tensor lists ------------------------------===//

#include "Tensor.h"

#include "DType.h"
#include "Error.h"
#include "Random.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace moert::detail {

TensorRef retainTensor(moe_tensor *tensor) {
  moe_tensor_retain(tensor);
  return TensorRef(tensor);
}

ShapeSize checkShape(int32_t dtype, int32_t rank, const int64_t *shape,
                     const std::string &what) {
  if (!isValidDType(dtype))
    fail(MOE_STATUS_INVALID_ARGUMENT, "{}: invalid dtype {}", what, dtype);
  if (rank < 0 || rank > MOE_MAX_RANK)
    fail(MOE_STATUS_INVALID_ARGUMENT, "{}: rank {} is not in [0, {}]", what,
         rank, MOE_MAX_RANK);
  if (rank > 0 && !shape)
    fail(MOE_STATUS_INVALID_ARGUMENT, "{}: shape is NULL but rank is {}", what,
         rank);
  int64_t elements = 1;
  for (int32_t i = 0; i < rank; ++i) {
    if (shape[i] < 0)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "{}: dimension {} has negative extent {}", what, i, shape[i]);
    if (__builtin_mul_overflow(elements, shape[i], &elements))
      fail(MOE_STATUS_INVALID_ARGUMENT, "{}: shape {} is too large", what,
           formatShape(std::vector<int64_t>(shape, shape + rank)));
  }
  int64_t bytes;
  if (__builtin_mul_overflow(
          elements, static_cast<int64_t>(moe_dtype_size(moe_dtype(dtype))),
          &bytes))
    fail(MOE_STATUS_INVALID_ARGUMENT, "{}: shape {} is too large", what,
         formatShape(std::vector<int64_t>(shape, shape + rank)));
  return {elements, static_cast<size_t>(bytes)};
}

std::shared_ptr<void> allocateStorage(size_t bytes) {
  void *memory = nullptr;
  // Round up so that vectorised loops may read whole cache lines.
  size_t rounded = (std::max<size_t>(bytes, 1) + 63) & ~size_t(63);
  if (rounded < bytes || posix_memalign(&memory, 64, rounded) != 0)
    throw std::bad_alloc();
  std::memset(memory, 0, rounded);
  return std::shared_ptr<void>(memory, std::free);
}

TensorRef wrapTensor(moe_dtype dtype, std::vector<int64_t> shape,
                     std::shared_ptr<void> storage, void *data) {
  ShapeSize size = checkShape(dtype, static_cast<int32_t>(shape.size()),
                              shape.data(), "tensor");
  TensorRef tensor(new moe_tensor);
  tensor->dtype = dtype;
  tensor->shape = std::move(shape);
  tensor->numElements = size.elements;
  tensor->byteSize = size.bytes;
  tensor->data = data;
  tensor->storage = std::move(storage);
  return tensor;
}

TensorRef newTensor(moe_dtype dtype, std::vector<int64_t> shape) {
  ShapeSize size = checkShape(dtype, static_cast<int32_t>(shape.size()),
                              shape.data(), "tensor");
  std::shared_ptr<void> storage = allocateStorage(size.bytes);
  void *data = storage.get();
  return wrapTensor(dtype, std::move(shape), std::move(storage), data);
}

TensorRef copyTensor(const moe_tensor &tensor) {
  TensorRef copy = newTensor(tensor.dtype, tensor.shape);
  std::memcpy(copy->data, tensor.data, tensor.byteSize);
  return copy;
}

TensorRef castTensor(const moe_tensor &tensor, moe_dtype dtype) {
  if (!isValidDType(dtype))
    fail(MOE_STATUS_INVALID_ARGUMENT, "cannot cast to invalid dtype {}",
         static_cast<int32_t>(dtype));
  if (dtype == tensor.dtype)
    return copyTensor(tensor);
  TensorRef result = newTensor(dtype, tensor.shape);
  if (isFloat(dtype)) {
    for (int64_t i = 0; i < tensor.numElements; ++i)
      storeDouble(result->data, i, dtype,
                  loadDouble(tensor.data, i, tensor.dtype));
    return result;
  }
  if (isFloat(tensor.dtype))
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "cannot cast {} to {}: floating-point to integer conversion would "
         "truncate",
         moe_dtype_name(tensor.dtype), moe_dtype_name(dtype));
  auto [low, high] = integralRange(dtype);
  for (int64_t i = 0; i < tensor.numElements; ++i) {
    int64_t value = loadInt(tensor.data, i, tensor.dtype);
    if (value < low || value > high)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "cannot cast {} to {}: element {} ({}) is outside [{}, {}]",
           moe_dtype_name(tensor.dtype), moe_dtype_name(dtype), i, value, low,
           high);
    storeInt(result->data, i, dtype, value);
  }
  return result;
}

void fillNormal(moe_tensor &tensor, uint64_t seed, double mean, double stddev) {
  if (!isFloat(tensor.dtype))
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "cannot fill a {} tensor with normal samples: it needs a "
         "floating-point dtype",
         moe_dtype_name(tensor.dtype));
  if (!std::isfinite(mean) || !std::isfinite(stddev) || stddev < 0)
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "normal(mean={}, stddev={}) needs a finite mean and a finite "
         "stddev >= 0",
         mean, stddev);
  Rng rng(seed);
  for (int64_t i = 0; i < tensor.numElements; i += 2) {
    double first, second;
    rng.normalPair(first, second);
    storeDouble(tensor.data, i, tensor.dtype, mean + stddev * first);
    if (i + 1 < tensor.numElements)
      storeDouble(tensor.data, i + 1, tensor.dtype, mean + stddev * second);
  }
}

void fillUniformInt(moe_tensor &tensor, uint64_t seed, int64_t low,
                    int64_t high) {
  if (!isIntegral(tensor.dtype))
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "cannot fill a {} tensor with integers: it needs an integer or "
         "bool dtype",
         moe_dtype_name(tensor.dtype));
  auto [min, max] = integralRange(tensor.dtype);
  if (low >= high || low < min || high - 1 > max)
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "integer range [{}, {}) is empty or does not fit {} ([{}, {}])", low,
         high, moe_dtype_name(tensor.dtype), min, max);
  Rng rng(seed);
  for (int64_t i = 0; i < tensor.numElements; ++i)
    storeInt(tensor.data, i, tensor.dtype, rng.uniformInt(low, high));
}

std::string formatShape(const std::vector<int64_t> &shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::string describe(const moe_tensor &tensor) {
  return fmt::format("{} {}", moe_dtype_name(tensor.dtype),
                     formatShape(tensor.shape));
}

void addToList(moe_tensor_list &list, const std::string &name,
               TensorRef tensor) {
  if (name.empty())
    fail(MOE_STATUS_INVALID_ARGUMENT, "a tensor list entry needs a name");
  for (const auto &item : list.items)
    if (item.first == name)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "the tensor list already has a tensor named '{}'", name);
  list.items.emplace_back(name, std::move(tensor));
}

} // namespace moert::detail

using namespace moert::detail;

namespace {

/// Shared by the three constructors: validates and checks `byte_size`.
ShapeSize checkCreate(const char *function, moe_dtype dtype, int32_t rank,
                      const int64_t *shape, size_t byteSize, moe_tensor **out) {
  requireArg(out, function, "out");
  ShapeSize size = checkShape(dtype, rank, shape, function);
  if (byteSize != size.bytes)
    fail(MOE_STATUS_INVALID_ARGUMENT,
         "{}: byte_size is {} but a {} {} tensor has {} bytes", function,
         byteSize, moe_dtype_name(dtype),
         formatShape(std::vector<int64_t>(shape, shape + rank)), size.bytes);
  return size;
}

std::vector<int64_t> shapeVector(int32_t rank, const int64_t *shape) {
  return rank ? std::vector<int64_t>(shape, shape + rank)
              : std::vector<int64_t>();
}

} // namespace

extern "C" {

moe_status *moe_tensor_create(moe_dtype dtype, int32_t rank,
                              const int64_t *shape, moe_tensor **out) {
  return guard([&] {
    requireArg(out, "moe_tensor_create", "out");
    checkShape(dtype, rank, shape, "moe_tensor_create");
    *out = newTensor(dtype, shapeVector(rank, shape)).release();
  });
}

moe_status *moe_tensor_create_copy(moe_dtype dtype, int32_t rank,
                                   const int64_t *shape, const void *data,
                                   size_t byte_size, moe_tensor **out) {
  return guard([&] {
    ShapeSize size = checkCreate("moe_tensor_create_copy", dtype, rank, shape,
                                 byte_size, out);
    if (size.bytes)
      requireArg(data, "moe_tensor_create_copy", "data");
    TensorRef tensor = newTensor(dtype, shapeVector(rank, shape));
    if (size.bytes)
      std::memcpy(tensor->data, data, size.bytes);
    *out = tensor.release();
  });
}

moe_status *moe_tensor_create_view(moe_dtype dtype, int32_t rank,
                                   const int64_t *shape, void *data,
                                   size_t byte_size, moe_tensor **out) {
  return guard([&] {
    ShapeSize size = checkCreate("moe_tensor_create_view", dtype, rank, shape,
                                 byte_size, out);
    if (size.bytes)
      requireArg(data, "moe_tensor_create_view", "data");
    if (reinterpret_cast<uintptr_t>(data) % moe_dtype_size(dtype))
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "moe_tensor_create_view: data {} is not aligned to the {}-byte "
           "element size",
           data, moe_dtype_size(dtype));
    *out = wrapTensor(dtype, shapeVector(rank, shape), nullptr, data).release();
  });
}

void moe_tensor_retain(moe_tensor *tensor) {
  if (tensor)
    tensor->refs.fetch_add(1, std::memory_order_relaxed);
}

void moe_tensor_release(moe_tensor *tensor) {
  if (tensor && tensor->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete tensor;
}

moe_dtype moe_tensor_dtype(const moe_tensor *tensor) { return tensor->dtype; }

int32_t moe_tensor_rank(const moe_tensor *tensor) {
  return static_cast<int32_t>(tensor->shape.size());
}

const int64_t *moe_tensor_shape(const moe_tensor *tensor) {
  return tensor->shape.empty() ? nullptr : tensor->shape.data();
}

int64_t moe_tensor_num_elements(const moe_tensor *tensor) {
  return tensor->numElements;
}

size_t moe_tensor_byte_size(const moe_tensor *tensor) {
  return tensor->byteSize;
}

void *moe_tensor_data(const moe_tensor *tensor) { return tensor->data; }

int moe_tensor_is_view(const moe_tensor *tensor) {
  return tensor->storage == nullptr;
}

moe_status *moe_tensor_cast(const moe_tensor *tensor, moe_dtype dtype,
                            moe_tensor **out) {
  return guard([&] {
    requireArg(tensor, "moe_tensor_cast", "tensor");
    requireArg(out, "moe_tensor_cast", "out");
    *out = castTensor(*tensor, dtype).release();
  });
}

moe_status *moe_tensor_fill_normal(moe_tensor *tensor, uint64_t seed,
                                   double mean, double stddev) {
  return guard([&] {
    requireArg(tensor, "moe_tensor_fill_normal", "tensor");
    fillNormal(*tensor, seed, mean, stddev);
  });
}

moe_status *moe_tensor_fill_uniform_int(moe_tensor *tensor, uint64_t seed,
                                        int64_t low, int64_t high) {
  return guard([&] {
    requireArg(tensor, "moe_tensor_fill_uniform_int", "tensor");
    fillUniformInt(*tensor, seed, low, high);
  });
}

moe_status *moe_tensor_list_create(moe_tensor_list **out) {
  return guard([&] {
    requireArg(out, "moe_tensor_list_create", "out");
    *out = new moe_tensor_list;
  });
}

void moe_tensor_list_retain(moe_tensor_list *list) {
  if (list)
    list->refs.fetch_add(1, std::memory_order_relaxed);
}

void moe_tensor_list_release(moe_tensor_list *list) {
  if (list && list->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete list;
}

moe_status *moe_tensor_list_add(moe_tensor_list *list, const char *name,
                                moe_tensor *tensor) {
  return guard([&] {
    requireArg(list, "moe_tensor_list_add", "list");
    requireArg(name, "moe_tensor_list_add", "name");
    requireArg(tensor, "moe_tensor_list_add", "tensor");
    addToList(*list, name, retainTensor(tensor));
  });
}

int32_t moe_tensor_list_size(const moe_tensor_list *list) {
  return static_cast<int32_t>(list->items.size());
}

const char *moe_tensor_list_name(const moe_tensor_list *list, int32_t index) {
  if (index < 0 || index >= moe_tensor_list_size(list))
    return nullptr;
  return list->items[index].first.c_str();
}

moe_tensor *moe_tensor_list_get(const moe_tensor_list *list, int32_t index) {
  if (index < 0 || index >= moe_tensor_list_size(list))
    return nullptr;
  return list->items[index].second.get();
}

moe_tensor *moe_tensor_list_find(const moe_tensor_list *list,
                                 const char *name) {
  if (!list || !name)
    return nullptr;
  for (const auto &item : list->items)
    if (item.first == name)
      return item.second.get();
  return nullptr;
}

} // extern "C"
