//===- Tensor.h - Tensors and tensor lists --------------------------------===//
#ifndef MOERT_RUNTIME_TENSOR_H
#define MOERT_RUNTIME_TENSOR_H

#include "moe/runtime/moert.h"

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

struct moe_tensor {
  std::atomic<int32_t> refs{1};
  moe_dtype dtype;
  std::vector<int64_t> shape;
  int64_t numElements;
  size_t byteSize;
  void *data;
  std::shared_ptr<void> storage; // Keeps `data` alive; null for views.
};

namespace moert::detail {

struct TensorReleaser {
  void operator()(moe_tensor *tensor) const { moe_tensor_release(tensor); }
};
/// One reference to a tensor.
using TensorRef = std::unique_ptr<moe_tensor, TensorReleaser>;

/// Another reference to `tensor`.
TensorRef retainTensor(moe_tensor *tensor);

struct ShapeSize {
  int64_t elements;
  size_t bytes;
};
/// Validates dtype and shape (rank, extents >= 0, no overflow); `what` names
/// the tensor in messages.
ShapeSize checkShape(int32_t dtype, int32_t rank, const int64_t *shape,
                     const std::string &what);

/// `bytes` (at least one) of 64-byte aligned, zeroed memory.
std::shared_ptr<void> allocateStorage(size_t bytes);
/// New owned tensor of zeros.
TensorRef newTensor(moe_dtype dtype, std::vector<int64_t> shape);
/// New tensor over `data`, kept alive by `storage` (null: a view).
TensorRef wrapTensor(moe_dtype dtype, std::vector<int64_t> shape,
                     std::shared_ptr<void> storage, void *data);
/// New owned copy.
TensorRef copyTensor(const moe_tensor &tensor);
TensorRef castTensor(const moe_tensor &tensor, moe_dtype dtype);
void fillNormal(moe_tensor &tensor, uint64_t seed, double mean, double stddev);
void fillUniformInt(moe_tensor &tensor, uint64_t seed, int64_t low,
                    int64_t high);

/// "[2, 3]"
std::string formatShape(const std::vector<int64_t> &shape);
/// "f32 [2, 3]"
std::string describe(const moe_tensor &tensor);

} // namespace moert::detail

struct moe_tensor_list {
  std::atomic<int32_t> refs{1};
  std::vector<std::pair<std::string, moert::detail::TensorRef>> items;
};

namespace moert::detail {
struct TensorListReleaser {
  void operator()(moe_tensor_list *list) const {
    moe_tensor_list_release(list);
  }
};
using TensorListRef = std::unique_ptr<moe_tensor_list, TensorListReleaser>;

/// Appends, failing on an empty or duplicate name.
void addToList(moe_tensor_list &list, const std::string &name,
               TensorRef tensor);
} // namespace moert::detail

#endif // MOERT_RUNTIME_TENSOR_H
