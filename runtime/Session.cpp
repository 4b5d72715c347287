//===- Session.cpp - Parameters, runtime services and runs ----------------===//

#include "Session.h"
#include "DType.h"
#include "Error.h"
#include "Model.h"
#include "Random.h"
#include "Safetensors.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

using namespace moert::detail;

namespace {

// Past this, thread creation is more likely a bug than a wish.
constexpr int32_t maxThreads = 4096;

/// The services of one invoke call: tracks what `alloc` handed out so that
/// results can be told apart (owned vs views) and leaks reclaimed.
class InvokeContext {
public:
  explicit InvokeContext(ThreadPool &pool) : pool(pool) {
    services.abi_version = MOE_ABI_VERSION;
    services.struct_size = sizeof(moe_runtime_services);
    services.context = this;
    services.alloc = alloc;
    services.free = release;
    services.parallel_for = parallelFor;
    services.num_threads = pool.size();
    services.device = MOE_ABI_DEVICE_HOST;
    services.cuda_function = nullptr;
    services.cuda_launch = nullptr;
    services.cuda_copy = nullptr;
  }

  ~InvokeContext() {
    for (const auto &block : live)
      std::free(block.first);
  }

  /// If `allocated` is a live block from alloc, the storage that owns it
  /// from now on (shared by results in the same block) and its size.
  std::shared_ptr<void> claim(void *allocated, size_t *size) {
    if (auto it = claimed.find(allocated); it != claimed.end()) {
      *size = it->second.second;
      return it->second.first;
    }
    auto it = live.find(allocated);
    if (it == live.end())
      return nullptr;
    std::shared_ptr<void> storage(allocated, std::free);
    *size = it->second;
    live.erase(it);
    claimed.emplace(allocated, std::make_pair(storage, *size));
    return storage;
  }

  /// The first misuse of a service, or "".
  std::string misuse() {
    std::lock_guard<std::mutex> lock(mutex);
    return error;
  }

  moe_runtime_services services;

private:
  void recordMisuse(const char *message) noexcept {
    try {
      std::lock_guard<std::mutex> lock(mutex);
      if (error.empty())
        error = message;
    } catch (...) {
    }
  }

  static void *alloc(void *context, size_t bytes, size_t alignment) noexcept {
    auto *self = static_cast<InvokeContext *>(context);
    if (alignment == 0 || (alignment & (alignment - 1)) || alignment > 4096) {
      self->recordMisuse("alloc was asked for an alignment that is not a "
                         "power of two up to 4096");
      return nullptr;
    }
    void *memory = nullptr;
    if (posix_memalign(&memory, std::max<size_t>(alignment, 64),
                       std::max<size_t>(bytes, 1)) != 0)
      return nullptr;
    try {
      std::lock_guard<std::mutex> lock(self->mutex);
      self->live.emplace(memory, bytes);
    } catch (...) {
      std::free(memory);
      return nullptr;
    }
    return memory;
  }

  static void release(void *context, void *pointer) noexcept {
    auto *self = static_cast<InvokeContext *>(context);
    if (!pointer)
      return;
    {
      std::lock_guard<std::mutex> lock(self->mutex);
      auto it = self->live.find(pointer);
      if (it != self->live.end()) {
        std::free(pointer);
        self->live.erase(it);
        return;
      }
    }
    // Freeing it anyway could corrupt the heap.
    self->recordMisuse("free was called on a pointer that alloc did not "
                       "return or that was already freed");
  }

  static void parallelFor(void *context, int64_t iterations,
                          void (*body)(void *, int64_t, int64_t),
                          void *closure) noexcept {
    try {
      static_cast<InvokeContext *>(context)->pool.parallelFor(iterations, body,
                                                              closure);
    } catch (...) {
      body(closure, 0, iterations); // No memory for a job: run it here.
    }
  }

  ThreadPool &pool;
  std::mutex mutex; // Guards live and error: workers call the services.
  std::unordered_map<void *, size_t> live;
  std::map<void *, std::pair<std::shared_ptr<void>, size_t>> claimed;
  std::string error;
};

/// Which argument first gave a dimension symbol its extent.
struct Binding {
  int64_t extent;
  std::string source;
};
using Bindings = std::map<std::string, Binding>;

/// Everything about one run of one entry point.
class Run {
public:
  Run(moe_session &session, const EntryDesc &entry)
      : session(session), entry(entry),
        where(fmt::format("entry point '{}'", entry.name)) {}

  TensorListRef execute(const moe_tensor_list *inputs) {
    checkInputNames(inputs);
    std::vector<std::vector<int64_t>> descriptors(entry.args.size());
    std::vector<void *> pointers;
    for (size_t i = 0; i < entry.args.size(); ++i) {
      const ArgDesc &arg = entry.args[i];
      descriptors[i].assign(3 + 2 * arg.shape.size(), 0);
      pointers.push_back(descriptors[i].data());
      if (!arg.produced())
        describeOperand(arg, operand(arg, inputs), descriptors[i]);
    }
    InvokeContext context(*session.pool);
    int32_t result = entry.invoke(pointers.data(), &context.services);
    std::string misuse = context.misuse();
    if (result != MOE_ABI_OK)
      fail(result == MOE_ABI_OUT_OF_MEMORY      ? MOE_STATUS_OUT_OF_MEMORY
           : result == MOE_ABI_INVALID_ARGUMENT ? MOE_STATUS_INVALID_ARGUMENT
                                                : MOE_STATUS_MODEL_FAILED,
           "model '{}' {} failed: {}{}", session.model->path, where,
           result == MOE_ABI_OUT_OF_MEMORY ? "out of memory"
           : result == MOE_ABI_INVALID_ARGUMENT
               ? "the model rejected its arguments"
               : fmt::format("internal error (status {})", result),
           misuse.empty() ? "" : "; it also misused the runtime: " + misuse);
    if (!misuse.empty())
      malformed(misuse);
    TensorListRef outputs(new moe_tensor_list);
    for (size_t i = 0; i < entry.args.size(); ++i)
      if (entry.args[i].produced())
        addToList(*outputs, entry.args[i].name,
                  collect(entry.args[i], descriptors[i], context));
    return outputs;
  }

private:
  [[noreturn]] void malformed(const std::string &problem) {
    fail(MOE_STATUS_MODEL_FAILED,
         "model '{}' {} returned malformed results: {}", session.model->path,
         where, problem);
  }

  void checkInputNames(const moe_tensor_list *inputs) {
    if (!inputs)
      return;
    for (const auto &item : inputs->items) {
      const ArgDesc *arg = entry.findArg(item.first);
      if (!arg) {
        std::vector<std::string> names;
        for (const ArgDesc &candidate : entry.args)
          if (candidate.role == MOE_ROLE_INPUT)
            names.push_back("'" + candidate.name + "'");
        fail(MOE_STATUS_INVALID_ARGUMENT,
             "{} has no argument '{}'; its inputs are: {}", where, item.first,
             names.empty() ? "none"
                           : fmt::format("{}", fmt::join(names, ", ")));
      }
      if (arg->sessionState())
        fail(MOE_STATUS_INVALID_ARGUMENT,
             "{}: '{}' is a {} held by the session, not an input; use "
             "moe_session_set_parameter to change it",
             where, arg->name, moe_role_name(arg->role));
      if (arg->produced())
        fail(MOE_STATUS_INVALID_ARGUMENT,
             "{}: '{}' is an {} of the model, not an input", where, arg->name,
             moe_role_name(arg->role));
    }
  }

  /// The tensor passed for an input, parameter or optimizer state.
  const moe_tensor &operand(const ArgDesc &arg, const moe_tensor_list *inputs) {
    if (arg.sessionState()) {
      StateSlot *slot = session.findState(arg.name);
      if (!slot->initialized)
        fail(MOE_STATUS_INVALID_ARGUMENT,
             "{}: parameter '{}' has no value yet: call "
             "moe_session_init_parameters, moe_session_load_parameters or "
             "moe_session_set_parameter first",
             where, arg.name);
      return *slot->value;
    }
    const moe_tensor *tensor =
        inputs ? moe_tensor_list_find(inputs, arg.name.c_str()) : nullptr;
    if (!tensor)
      fail(MOE_STATUS_INVALID_ARGUMENT, "{}: missing input '{}' ({})", where,
           arg.name, arg.signature());
    if (tensor->dtype != arg.dtype)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "{}: input '{}' has dtype {}, expected {}", where, arg.name,
           moe_dtype_name(tensor->dtype), arg.signature());
    if (tensor->shape.size() != arg.shape.size())
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "{}: input '{}' has shape {} (rank {}), expected rank {}: {}", where,
           arg.name, formatShape(tensor->shape), tensor->shape.size(),
           arg.shape.size(), arg.signature());
    return *tensor;
  }

  /// Checks `sizes` against the declaration and the symbols bound so far,
  /// binding new symbols. Returns a problem, or "".
  std::string bind(const ArgDesc &arg, const int64_t *sizes) {
    for (size_t d = 0; d < arg.shape.size(); ++d) {
      std::string here = fmt::format("{} '{}' dimension {}",
                                     moe_role_name(arg.role), arg.name, d);
      if (arg.shape[d] != MOE_DYNAMIC && sizes[d] != arg.shape[d])
        return fmt::format("{} is {}, expected {} ({} is {})", here, sizes[d],
                           arg.shape[d], arg.name, arg.signature());
      const std::string &symbol = arg.dimNames[d];
      if (symbol.empty())
        continue;
      auto [it, inserted] =
          bindings.try_emplace(symbol, Binding{sizes[d], here});
      if (!inserted && it->second.extent != sizes[d])
        return fmt::format("{} ('{}') is {}, but {} set '{}' to {}", here,
                           symbol, sizes[d], it->second.source, symbol,
                           it->second.extent);
    }
    return "";
  }

  void describeOperand(const ArgDesc &arg, const moe_tensor &tensor,
                       std::vector<int64_t> &descriptor) {
    std::string problem = bind(arg, tensor.shape.data());
    if (!problem.empty())
      fail(MOE_STATUS_INVALID_ARGUMENT, "{}: {}", where, problem);
    auto *memref = reinterpret_cast<moe_abi_memref *>(descriptor.data());
    memref->allocated = memref->aligned = tensor.data;
    memref->offset = 0;
    size_t rank = arg.shape.size();
    int64_t stride = 1;
    for (size_t d = rank; d-- > 0;) {
      memref->sizes_and_strides[d] = tensor.shape[d];
      memref->sizes_and_strides[rank + d] = stride;
      stride *= tensor.shape[d];
    }
  }

  /// Turns a produced descriptor into an owned contiguous tensor.
  TensorRef collect(const ArgDesc &arg, std::vector<int64_t> &descriptor,
                    InvokeContext &context) {
    const auto *memref =
        reinterpret_cast<const moe_abi_memref *>(descriptor.data());
    size_t rank = arg.shape.size();
    const int64_t *sizes = memref->sizes_and_strides;
    const int64_t *strides = sizes + rank;
    std::vector<int64_t> shape(sizes, sizes + rank);
    for (size_t d = 0; d < rank; ++d)
      if (sizes[d] < 0)
        malformed(fmt::format("{} '{}' has negative extent {} in dimension {}",
                              moe_role_name(arg.role), arg.name, sizes[d], d));
    std::string problem = bind(arg, sizes);
    if (!problem.empty())
      malformed(problem);
    ShapeSize size;
    try {
      size = checkShape(arg.dtype, static_cast<int32_t>(rank), sizes,
                        moe_role_name(arg.role) + (" '" + arg.name + "'"));
    } catch (const Error &e) {
      malformed(e.what());
    }
    if (size.elements == 0)
      return newTensor(arg.dtype, shape);
    if (!memref->aligned)
      malformed(fmt::format("{} '{}' has a NULL data pointer",
                            moe_role_name(arg.role), arg.name));

    // The byte range the descriptor addresses, relative to `aligned`.
    __int128 elementSize = moe_dtype_size(arg.dtype);
    __int128 low = memref->offset, high = memref->offset;
    bool contiguous = true;
    int64_t expected = 1;
    for (size_t d = rank; d-- > 0;) {
      __int128 span = __int128(sizes[d] - 1) * strides[d];
      (span < 0 ? low : high) += span;
      if (sizes[d] != 1 && strides[d] != expected)
        contiguous = false;
      expected *= sizes[d];
    }
    const char *aligned = static_cast<const char *>(memref->aligned);
    const char *first = aligned + int64_t(low * elementSize);

    size_t blockSize = 0;
    std::shared_ptr<void> storage =
        context.claim(memref->allocated, &blockSize);
    if (storage) {
      __int128 begin =
          (aligned - static_cast<const char *>(memref->allocated)) +
          low * elementSize;
      __int128 end = begin + (high - low + 1) * elementSize;
      if (begin < 0 || end > __int128(blockSize))
        malformed(fmt::format("{} '{}' addresses bytes outside the {}-byte "
                              "block allocated for it",
                              moe_role_name(arg.role), arg.name, blockSize));
      if (contiguous)
        return wrapTensor(arg.dtype, shape, storage, const_cast<char *>(first));
    }
    // A view (of a constant, an input, a parameter) or a strided block:
    // copy into a contiguous tensor the caller owns.
    TensorRef tensor = newTensor(arg.dtype, shape);
    copyStrided(static_cast<char *>(tensor->data),
                aligned + memref->offset * int64_t(elementSize), sizes, strides,
                rank, static_cast<size_t>(elementSize));
    return tensor;
  }

  static void copyStrided(char *out, const char *base, const int64_t *sizes,
                          const int64_t *strides, size_t rank,
                          size_t elementSize) {
    if (rank == 0) {
      std::memcpy(out, base, elementSize);
      return;
    }
    int64_t rows = 1;
    for (size_t d = 0; d + 1 < rank; ++d)
      rows *= sizes[d];
    int64_t columns = sizes[rank - 1];
    int64_t columnStride = strides[rank - 1] * int64_t(elementSize);
    std::vector<int64_t> index(rank, 0);
    for (int64_t row = 0; row < rows; ++row) {
      const char *source = base;
      for (size_t d = 0; d + 1 < rank; ++d)
        source += index[d] * strides[d] * int64_t(elementSize);
      if (columnStride == int64_t(elementSize)) {
        std::memcpy(out, source, columns * elementSize);
        out += columns * elementSize;
      } else {
        for (int64_t c = 0; c < columns; ++c, out += elementSize)
          std::memcpy(out, source + c * columnStride, elementSize);
      }
      for (size_t d = rank - 1; d-- > 0;) { // Next row index, odometer-style.
        if (++index[d] < sizes[d])
          break;
        index[d] = 0;
      }
    }
  }

  moe_session &session;
  const EntryDesc &entry;
  std::string where;
  Bindings bindings;
};

std::string lowercase(std::string text) {
  for (char &c : text)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

/// The initial value of a parameter (see moe_session_init_parameters).
TensorRef initialValue(const ArgDesc &decl, uint64_t seed) {
  TensorRef value = newTensor(decl.dtype, decl.shape);
  std::string name = lowercase(decl.name);
  if (decl.role != MOE_ROLE_PARAMETER || !isFloat(decl.dtype) ||
      name.find("bias") != std::string::npos)
    return value;
  if (decl.shape.size() == 1 && name.find("norm") != std::string::npos) {
    for (int64_t i = 0; i < value->numElements; ++i)
      storeDouble(value->data, i, decl.dtype, 1.0);
    return value;
  }
  fillNormal(*value, mixSeed(seed, decl.name), 0.0, 0.02);
  return value;
}

} // namespace

extern "C" {

moe_status *moe_session_create(moe_model *model, int32_t num_threads,
                               moe_session **out) {
  return guard([&] {
    requireArg(model, "moe_session_create", "model");
    requireArg(out, "moe_session_create", "out");
    if (num_threads < 0 || num_threads > maxThreads)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "moe_session_create: num_threads is {}, expected 0 (all CPUs) to "
           "{}",
           num_threads, maxThreads);
    if (model->numKernels > 0)
      fail(MOE_STATUS_UNSUPPORTED,
           "model '{}' targets '{}' with {} device kernels; this runtime runs "
           "CPU models only",
           model->path, model->target, model->numKernels);
    auto session = std::make_unique<moe_session>();
    moe_model_retain(model);
    session->model.reset(model);
    session->pool = std::make_unique<ThreadPool>(
        num_threads ? num_threads : ThreadPool::defaultSize());
    for (const EntryDesc &entry : model->entries)
      for (const ArgDesc &arg : entry.args)
        if (arg.sessionState() && !session->findState(arg.name))
          session->states.push_back({&arg, newTensor(arg.dtype, arg.shape),
                                     arg.role == MOE_ROLE_OPTIMIZER_STATE});
    *out = session.release();
  });
}

void moe_session_retain(moe_session *session) {
  if (session)
    session->refs.fetch_add(1, std::memory_order_relaxed);
}

void moe_session_release(moe_session *session) {
  if (session && session->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete session;
}

moe_model *moe_session_get_model(const moe_session *session) {
  return session->model.get();
}

int32_t moe_session_num_threads(const moe_session *session) {
  return session->pool->size();
}

int32_t moe_session_num_parameters(const moe_session *session) {
  return static_cast<int32_t>(session->states.size());
}

const moe_arg_info *moe_session_parameter_info(const moe_session *session,
                                               int32_t index) {
  if (index < 0 || index >= moe_session_num_parameters(session))
    return nullptr;
  return &session->states[index].decl->info;
}

moe_status *moe_session_init_parameters(moe_session *session, uint64_t seed) {
  return guard([&] {
    requireArg(session, "moe_session_init_parameters", "session");
    std::vector<TensorRef> values;
    for (const StateSlot &slot : session->states)
      values.push_back(initialValue(*slot.decl, seed));
    std::unique_lock<TurnstileSharedMutex> lock(session->mutex);
    for (size_t i = 0; i < values.size(); ++i) {
      session->states[i].value = std::move(values[i]);
      session->states[i].initialized = true;
    }
  });
}

moe_status *moe_session_load_parameters(moe_session *session,
                                        const char *path) {
  return guard([&] {
    requireArg(session, "moe_session_load_parameters", "session");
    requireArg(path, "moe_session_load_parameters", "path");
    safetensors::Reader reader(path);
    std::vector<TensorRef> values;
    std::vector<std::string> missing;
    for (const StateSlot &slot : session->states) {
      const ArgDesc &decl = *slot.decl;
      const safetensors::Entry *entry = reader.find(decl.name);
      if (!entry) {
        if (decl.role == MOE_ROLE_PARAMETER)
          missing.push_back(decl.name);
        values.push_back(newTensor(decl.dtype, decl.shape));
        continue;
      }
      if (entry->dtype != decl.dtype)
        fail(MOE_STATUS_INVALID_ARGUMENT,
             "{} '{}': safetensors file '{}' stores it as {}, but the model "
             "declares {}",
             moe_role_name(decl.role), decl.name, path, entry->dtypeName,
             decl.signature());
      if (entry->shape != decl.shape)
        fail(MOE_STATUS_INVALID_ARGUMENT,
             "{} '{}': safetensors file '{}' stores shape {}, but the model "
             "declares {}",
             moe_role_name(decl.role), decl.name, path,
             formatShape(entry->shape), decl.signature());
      values.push_back(reader.load(*entry));
    }
    if (!missing.empty())
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "safetensors file '{}' lacks {} parameter(s) of model '{}': {}",
           path, missing.size(), session->model->path, joinNames(missing));
    std::unique_lock<TurnstileSharedMutex> lock(session->mutex);
    for (size_t i = 0; i < values.size(); ++i) {
      session->states[i].value = std::move(values[i]);
      session->states[i].initialized = true;
    }
  });
}

moe_status *moe_session_save_parameters(moe_session *session,
                                        const char *path) {
  return guard([&] {
    requireArg(session, "moe_session_save_parameters", "session");
    requireArg(path, "moe_session_save_parameters", "path");
    std::shared_lock<TurnstileSharedMutex> lock(session->mutex);
    std::vector<std::pair<std::string, const moe_tensor *>> tensors;
    std::vector<std::string> uninitialized;
    for (const StateSlot &slot : session->states) {
      if (!slot.initialized)
        uninitialized.push_back(slot.decl->name);
      tensors.emplace_back(slot.decl->name, slot.value.get());
    }
    if (!uninitialized.empty())
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "cannot save parameters to '{}': {} parameter(s) have no value "
           "yet: {}",
           path, uninitialized.size(), joinNames(uninitialized));
    safetensors::write(path, tensors);
  });
}

moe_status *moe_session_get_parameter(moe_session *session, const char *name,
                                      moe_tensor **out) {
  return guard([&] {
    requireArg(session, "moe_session_get_parameter", "session");
    requireArg(name, "moe_session_get_parameter", "name");
    requireArg(out, "moe_session_get_parameter", "out");
    std::shared_lock<TurnstileSharedMutex> lock(session->mutex);
    StateSlot *slot = session->findState(name);
    if (!slot)
      fail(MOE_STATUS_INVALID_ARGUMENT, "model '{}' has no parameter '{}'",
           session->model->path, name);
    *out = copyTensor(*slot->value).release();
  });
}

moe_status *moe_session_set_parameter(moe_session *session, const char *name,
                                      const moe_tensor *value) {
  return guard([&] {
    requireArg(session, "moe_session_set_parameter", "session");
    requireArg(name, "moe_session_set_parameter", "name");
    requireArg(value, "moe_session_set_parameter", "value");
    StateSlot *slot = session->findState(name);
    if (!slot)
      fail(MOE_STATUS_INVALID_ARGUMENT, "model '{}' has no parameter '{}'",
           session->model->path, name);
    const ArgDesc &decl = *slot->decl;
    if (value->dtype != decl.dtype || value->shape != decl.shape)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "parameter '{}' is {}, but the value given is {}", name,
           decl.signature(), describe(*value));
    TensorRef copy = copyTensor(*value);
    std::unique_lock<TurnstileSharedMutex> lock(session->mutex);
    slot->value = std::move(copy);
    slot->initialized = true;
  });
}

moe_status *moe_session_run(moe_session *session, const char *entry,
                            const moe_tensor_list *inputs,
                            moe_tensor_list **outputs) {
  return guard([&] {
    requireArg(session, "moe_session_run", "session");
    requireArg(entry, "moe_session_run", "entry");
    requireArg(outputs, "moe_session_run", "outputs");
    const moe_model &model = *session->model;
    const EntryDesc *desc = model.findEntry(entry);
    if (!desc) {
      std::vector<std::string> names;
      for (const EntryDesc &candidate : model.entries)
        names.push_back("'" + candidate.name + "'");
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "model '{}' has no entry point '{}'; it has {}", model.path, entry,
           fmt::join(names, ", "));
    }
    bool updatesState =
        std::any_of(desc->args.begin(), desc->args.end(), [](const ArgDesc &a) {
          return a.role == MOE_ROLE_OPTIMIZER_STATE;
        });
    std::shared_lock<TurnstileSharedMutex> shared(session->mutex,
                                                  std::defer_lock);
    std::unique_lock<TurnstileSharedMutex> exclusive(session->mutex,
                                                     std::defer_lock);
    if (updatesState)
      exclusive.lock();
    else
      shared.lock();
    *outputs = Run(*session, *desc).execute(inputs).release();
  });
}

} // extern "C"
