//===- moert.hpp - Header-only C++ wrapper over the moert C API -*- C++ -*-===//
//
// RAII handles over moert.h: copying a handle retains the object, destroying
// it releases it, and every failed call throws moert::Error with the
// status's code and message. Thread safety is that of the C functions
// underneath (see moert.h): models and sessions may be shared across
// threads, tensors and tensor lists need external synchronisation when one
// thread modifies them. Tensors are host memory on every device: sessions on
// a CUDA device copy inputs up and results back.
//
//===----------------------------------------------------------------------===//
#ifndef MOE_RUNTIME_MOERT_HPP
#define MOE_RUNTIME_MOERT_HPP

#include "moe/runtime/moert.h"

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace moert {

/// A failed runtime call.
class Error : public std::runtime_error {
public:
  Error(moe_status_code code, const std::string &message)
      : std::runtime_error(message), statusCode(code) {}
  moe_status_code code() const noexcept { return statusCode; }

private:
  moe_status_code statusCode;
};

/// Throws Error for a non-NULL status, which it frees.
inline void check(moe_status *status) {
  if (!status)
    return;
  Error error(moe_status_get_code(status), moe_status_get_message(status));
  moe_status_free(status);
  throw error;
}

namespace detail {
/// One counted reference to a C object; null when default-constructed or
/// moved from.
template <typename T, void (*Retain)(T *), void (*Release)(T *)> class Handle {
public:
  Handle() = default;
  /// Adopts a reference the caller owns.
  explicit Handle(T *raw) : raw(raw) {}
  Handle(const Handle &other) : raw(other.raw) { Retain(raw); }
  Handle(Handle &&other) noexcept : raw(std::exchange(other.raw, nullptr)) {}
  Handle &operator=(Handle other) noexcept {
    std::swap(raw, other.raw);
    return *this;
  }
  ~Handle() { Release(raw); }

  T *get() const { return raw; }
  /// Gives up the reference without releasing it.
  T *release() { return std::exchange(raw, nullptr); }
  explicit operator bool() const { return raw != nullptr; }

protected:
  T *raw = nullptr;
};
} // namespace detail

/// The moe_dtype of a C++ element type.
template <typename T> constexpr moe_dtype dtypeOf();
template <> constexpr moe_dtype dtypeOf<float>() { return MOE_F32; }
template <> constexpr moe_dtype dtypeOf<double>() { return MOE_F64; }
template <> constexpr moe_dtype dtypeOf<int8_t>() { return MOE_I8; }
template <> constexpr moe_dtype dtypeOf<int32_t>() { return MOE_I32; }
template <> constexpr moe_dtype dtypeOf<int64_t>() { return MOE_I64; }
template <> constexpr moe_dtype dtypeOf<uint8_t>() { return MOE_U8; }

class Tensor
    : public detail::Handle<moe_tensor, moe_tensor_retain, moe_tensor_release> {
public:
  using Handle::Handle;

  static Tensor zeros(moe_dtype dtype, const std::vector<int64_t> &shape) {
    moe_tensor *out = nullptr;
    check(moe_tensor_create(dtype, rankOf(shape), shape.data(), &out));
    return Tensor(out);
  }
  static Tensor copyOf(moe_dtype dtype, const std::vector<int64_t> &shape,
                       const void *data, size_t byteSize) {
    moe_tensor *out = nullptr;
    check(moe_tensor_create_copy(dtype, rankOf(shape), shape.data(), data,
                                 byteSize, &out));
    return Tensor(out);
  }
  /// An owned tensor with `values` (bool tensors: use copyOf with bytes).
  template <typename T>
  static Tensor fromVector(const std::vector<int64_t> &shape,
                           const std::vector<T> &values) {
    return copyOf(dtypeOf<T>(), shape, values.data(),
                  values.size() * sizeof(T));
  }
  /// A view of caller memory, which must outlive the tensor.
  static Tensor view(moe_dtype dtype, const std::vector<int64_t> &shape,
                     void *data, size_t byteSize) {
    moe_tensor *out = nullptr;
    check(moe_tensor_create_view(dtype, rankOf(shape), shape.data(), data,
                                 byteSize, &out));
    return Tensor(out);
  }

  moe_dtype dtype() const { return moe_tensor_dtype(raw); }
  int32_t rank() const { return moe_tensor_rank(raw); }
  std::vector<int64_t> shape() const {
    const int64_t *extents = moe_tensor_shape(raw);
    return std::vector<int64_t>(extents, extents + rank());
  }
  int64_t numElements() const { return moe_tensor_num_elements(raw); }
  size_t byteSize() const { return moe_tensor_byte_size(raw); }
  bool isView() const { return moe_tensor_is_view(raw) != 0; }
  void *data() const { return moe_tensor_data(raw); }
  /// Typed elements; throws if T does not match the dtype.
  template <typename T> T *data() const {
    if (dtypeOf<T>() != dtype())
      throw Error(MOE_STATUS_INVALID_ARGUMENT,
                  std::string("tensor has dtype ") + moe_dtype_name(dtype()) +
                      ", not " + moe_dtype_name(dtypeOf<T>()));
    return static_cast<T *>(data());
  }
  template <typename T> std::vector<T> toVector() const {
    const T *first = data<T>();
    return std::vector<T>(first, first + numElements());
  }

  Tensor cast(moe_dtype dtype) const {
    moe_tensor *out = nullptr;
    check(moe_tensor_cast(raw, dtype, &out));
    return Tensor(out);
  }
  void fillNormal(uint64_t seed, double mean = 0, double stddev = 1) {
    check(moe_tensor_fill_normal(raw, seed, mean, stddev));
  }
  void fillUniformInt(uint64_t seed, int64_t low, int64_t high) {
    check(moe_tensor_fill_uniform_int(raw, seed, low, high));
  }

  /// Another reference to a borrowed tensor.
  static Tensor retained(moe_tensor *tensor) {
    moe_tensor_retain(tensor);
    return Tensor(tensor);
  }

private:
  static int32_t rankOf(const std::vector<int64_t> &shape) {
    return static_cast<int32_t>(shape.size());
  }
};

/// Named tensors; default-constructs to a new empty list.
class TensorList
    : public detail::Handle<moe_tensor_list, moe_tensor_list_retain,
                            moe_tensor_list_release> {
public:
  using Handle::Handle;
  TensorList() { check(moe_tensor_list_create(&raw)); }
  TensorList(std::initializer_list<std::pair<std::string, Tensor>> items)
      : TensorList() {
    for (const auto &item : items)
      add(item.first, item.second);
  }

  void add(const std::string &name, const Tensor &tensor) {
    check(moe_tensor_list_add(raw, name.c_str(), tensor.get()));
  }
  int32_t size() const { return moe_tensor_list_size(raw); }
  std::string name(int32_t index) const {
    const char *name = moe_tensor_list_name(raw, index);
    if (!name)
      throw Error(MOE_STATUS_INVALID_ARGUMENT, "tensor list index " +
                                                   std::to_string(index) +
                                                   " is out of range");
    return name;
  }
  Tensor at(int32_t index) const {
    name(index); // Range check.
    return Tensor::retained(moe_tensor_list_get(raw, index));
  }
  /// The tensor called `name`, or a null Tensor.
  Tensor find(const std::string &name) const {
    moe_tensor *tensor = moe_tensor_list_find(raw, name.c_str());
    return tensor ? Tensor::retained(tensor) : Tensor();
  }
  /// The tensor called `name`; throws if absent.
  Tensor at(const std::string &name) const {
    Tensor tensor = find(name);
    if (!tensor)
      throw Error(MOE_STATUS_INVALID_ARGUMENT,
                  "tensor list has no tensor '" + name + "'");
    return tensor;
  }
};

/// A device to run on: the CPU, or a CUDA device by ordinal.
struct Device {
  moe_device kind = MOE_DEVICE_CPU;
  int32_t ordinal = 0;

  static Device cpu() { return {MOE_DEVICE_CPU, 0}; }
  static Device cuda(int32_t ordinal = 0) { return {MOE_DEVICE_CUDA, ordinal}; }
  /// "cpu", "cuda" (device 0) or "cuda:N"; throws INVALID_ARGUMENT
  /// otherwise.
  static Device parse(const std::string &text) {
    if (text == "cpu")
      return cpu();
    if (text == "cuda")
      return cuda();
    const std::string prefix = "cuda:";
    if (text.compare(0, prefix.size(), prefix) == 0 &&
        text.size() > prefix.size() && text.size() <= prefix.size() + 4 &&
        text.find_first_not_of("0123456789", prefix.size()) ==
            std::string::npos)
      return cuda(std::stoi(text.substr(prefix.size())));
    throw Error(MOE_STATUS_INVALID_ARGUMENT,
                "device '" + text + "' is not cpu, cuda or cuda:N");
  }
  /// "cpu" or "cuda:N".
  std::string name() const {
    return kind == MOE_DEVICE_CPU ? "cpu" : "cuda:" + std::to_string(ordinal);
  }
};

/// A copy of a moe_arg_info.
struct ArgInfo {
  std::string name;
  moe_role role;
  moe_dtype dtype;
  std::vector<int64_t> shape;        // MOE_DYNAMIC for dynamic extents.
  std::vector<std::string> dimNames; // "" where the extent has no symbol.

  explicit ArgInfo(const moe_arg_info &info)
      : name(info.name), role(info.role), dtype(info.dtype),
        shape(info.shape, info.shape + info.rank) {
    for (int32_t d = 0; d < info.rank; ++d)
      dimNames.push_back(info.dim_names && info.dim_names[d] ? info.dim_names[d]
                                                             : "");
  }
};

class Model
    : public detail::Handle<moe_model, moe_model_retain, moe_model_release> {
public:
  using Handle::Handle;

  static Model load(const std::string &path) {
    moe_model *out = nullptr;
    check(moe_model_load(path.c_str(), &out));
    return Model(out);
  }

  std::string path() const { return moe_model_path(raw); }
  std::string producer() const { return moe_model_producer(raw); }
  std::string target() const { return moe_model_target(raw); }
  std::string signatureJson() const { return moe_model_signature_json(raw); }
  /// The device the model was compiled for.
  moe_device device() const { return moe_model_device(raw); }
  std::string description() const { return moe_model_description(raw); }

  std::vector<std::string> entryNames() const {
    std::vector<std::string> names;
    for (int32_t e = 0; e < moe_model_num_entries(raw); ++e)
      names.push_back(moe_model_entry_name(raw, e));
    return names;
  }
  bool hasEntry(const std::string &entry) const {
    return moe_model_find_entry(raw, entry.c_str()) >= 0;
  }
  /// The arguments of `entry`; throws if there is no such entry.
  std::vector<ArgInfo> args(const std::string &entry) const {
    int32_t index = moe_model_find_entry(raw, entry.c_str());
    if (index < 0)
      throw Error(MOE_STATUS_INVALID_ARGUMENT,
                  "model has no entry point '" + entry + "'");
    std::vector<ArgInfo> args;
    for (int32_t a = 0; a < moe_model_num_args(raw, index); ++a)
      args.emplace_back(*moe_model_arg(raw, index, a));
    return args;
  }
};

class Session : public detail::Handle<moe_session, moe_session_retain,
                                      moe_session_release> {
public:
  using Handle::Handle;

  /// On the device the model was compiled for; numThreads 0: one per
  /// available CPU.
  explicit Session(const Model &model, int32_t numThreads = 0) {
    check(moe_session_create(model.get(), numThreads, &raw));
  }
  /// On `device`, which must be the kind the model was compiled for.
  Session(const Model &model, const Device &device, int32_t numThreads = 0) {
    check(moe_session_create_on(model.get(), numThreads, device.kind,
                                device.ordinal, &raw));
  }

  Model model() const {
    moe_model *model = moe_session_get_model(raw);
    moe_model_retain(model);
    return Model(model);
  }
  int32_t numThreads() const { return moe_session_num_threads(raw); }
  Device device() const {
    return {moe_session_device(raw), moe_session_device_ordinal(raw)};
  }
  /// "cpu" or e.g. "cuda:0 (NVIDIA H100 80GB HBM3, sm_90)".
  std::string deviceDescription() const {
    return moe_session_device_description(raw);
  }
  /// Parameters and optimizer state.
  std::vector<ArgInfo> parameters() const {
    std::vector<ArgInfo> infos;
    for (int32_t i = 0; i < moe_session_num_parameters(raw); ++i)
      infos.emplace_back(*moe_session_parameter_info(raw, i));
    return infos;
  }

  void initParameters(uint64_t seed) {
    check(moe_session_init_parameters(raw, seed));
  }
  void loadParameters(const std::string &path) {
    check(moe_session_load_parameters(raw, path.c_str()));
  }
  void saveParameters(const std::string &path) {
    check(moe_session_save_parameters(raw, path.c_str()));
  }
  Tensor getParameter(const std::string &name) const {
    moe_tensor *out = nullptr;
    check(moe_session_get_parameter(raw, name.c_str(), &out));
    return Tensor(out);
  }
  void setParameter(const std::string &name, const Tensor &value) {
    check(moe_session_set_parameter(raw, name.c_str(), value.get()));
  }

  TensorList run(const std::string &entry, const TensorList &inputs) {
    moe_tensor_list *out = nullptr;
    check(moe_session_run(raw, entry.c_str(), inputs.get(), &out));
    return TensorList(out);
  }
  /// run() that also measures its phases (see moe_session_run_timed).
  TensorList run(const std::string &entry, const TensorList &inputs,
                 moe_run_timing &timing) {
    moe_tensor_list *out = nullptr;
    check(
        moe_session_run_timed(raw, entry.c_str(), inputs.get(), &out, &timing));
    return TensorList(out);
  }
};

inline Tensor readNpy(const std::string &path) {
  moe_tensor *out = nullptr;
  check(moe_npy_read(path.c_str(), &out));
  return Tensor(out);
}

inline void writeNpy(const std::string &path, const Tensor &tensor) {
  check(moe_npy_write(path.c_str(), tensor.get()));
}

inline TensorList readSafetensors(const std::string &path) {
  moe_tensor_list *out = nullptr;
  check(moe_safetensors_read(path.c_str(), &out));
  return TensorList(out);
}

inline void writeSafetensors(const std::string &path,
                             const TensorList &tensors) {
  check(moe_safetensors_write(path.c_str(), tensors.get()));
}

} // namespace moert

#endif // MOE_RUNTIME_MOERT_HPP
