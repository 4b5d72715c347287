//===- Session.cpp - Parameters, runtime services and runs ----------------===//

#include "Session.h"
#include "DType.h"
#include "Error.h"
#include "Invoke.h"
#include "Model.h"
#include "Random.h"
#include "Safetensors.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

using namespace moert::detail;

namespace {

// Past this, thread creation is more likely a bug than a wish.
constexpr int32_t maxThreads = 4096;

/// The services of one invoke call on the CPU: alloc is posix_memalign, and
/// the blocks it hands out are tracked (see InvokeContext).
class HostInvokeContext : public InvokeContext {
public:
  explicit HostInvokeContext(ThreadPool &pool)
      : InvokeContext(pool, MOE_DEVICE_CPU) {
    services.alloc = alloc;
    services.free = release;
  }

  ~HostInvokeContext() {
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

private:
  static void *alloc(void *context, size_t bytes, size_t alignment) noexcept {
    auto *self = static_cast<HostInvokeContext *>(context);
    if (!self->validAlignment(alignment))
      return nullptr;
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
    auto *self = static_cast<HostInvokeContext *>(context);
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

  std::unordered_map<void *, size_t> live;
  std::map<void *, std::pair<std::shared_ptr<void>, size_t>> claimed;
};

/// Which argument first gave a dimension symbol its extent.
struct Binding {
  int64_t extent;
  std::string source;
};
using Bindings = std::map<std::string, Binding>;

/// Milliseconds since construction or the last lap.
class Stopwatch {
public:
  double lap() {
    auto now = std::chrono::steady_clock::now();
    double ms = std::chrono::duration<double, std::milli>(now - start).count();
    start = now;
    return ms;
  }

private:
  std::chrono::steady_clock::time_point start =
      std::chrono::steady_clock::now();
};

/// A produced descriptor, checked against its declaration: the elements it
/// addresses and where they lie relative to `aligned`.
struct ResultLayout {
  std::vector<int64_t> shape;
  const int64_t *strides;
  int64_t elements;
  size_t elementSize;
  const char *aligned;
  int64_t offset;
  __int128 low, high; // First and last element addressed, from `aligned`.
  bool contiguous;

  const char *first() const {
    return aligned + int64_t(low * __int128(elementSize));
  }
  size_t spanBytes() const { return size_t((high - low + 1) * elementSize); }
};

/// Everything about one run of one entry point.
class Run {
public:
  /// `timedPhases`: on a CUDA device, wait for the stream after each phase
  /// so that moe_run_timing separates them.
  Run(moe_session &session, const EntryDesc &entry, bool timedPhases)
      : session(session), entry(entry),
        where(fmt::format("entry point '{}'", entry.name)),
        timedPhases(timedPhases) {}

  TensorListRef execute(const moe_tensor_list *inputs, moe_run_timing &timing) {
    checkInputNames(inputs);
    descriptors.resize(entry.args.size());
    operands.assign(entry.args.size(), nullptr);
    for (size_t i = 0; i < entry.args.size(); ++i) {
      const ArgDesc &arg = entry.args[i];
      descriptors[i].assign(3 + 2 * arg.shape.size(), 0);
      pointers.push_back(descriptors[i].data());
      if (!arg.produced()) {
        operands[i] = &operand(arg, inputs);
        describeOperand(arg, *operands[i], descriptors[i]);
      }
    }
    if (!session.cuda)
      return executeOnHost(timing);
    try {
      return executeOnCuda(timing);
    } catch (const cuda::DriverError &error) {
      throw Error(error.code,
                  fmt::format("model '{}' {} on {}: {}", session.model->path,
                              where, session.deviceDescription, error.what()));
    }
  }

private:
  TensorListRef executeOnHost(moe_run_timing &timing) {
    HostInvokeContext context(*session.pool);
    Stopwatch stopwatch;
    int32_t result = entry.invoke(pointers.data(), &context.services);
    timing.invoke_ms = stopwatch.lap();
    checkResult(result, context.misuse());
    TensorListRef outputs(new moe_tensor_list);
    for (size_t i = 0; i < entry.args.size(); ++i)
      if (entry.args[i].produced())
        addToList(
            *outputs, entry.args[i].name,
            collectOnHost(entry.args[i], context, layout(entry.args[i], i)));
    timing.download_ms = stopwatch.lap();
    return outputs;
  }

  /// Uploads inputs (and parameters changed since the last run), invokes,
  /// downloads results and optimizer state the model updated, and waits
  /// for the stream once (after each phase when timed).
  TensorListRef executeOnCuda(moe_run_timing &timing) {
    // Host memory that copies write into: declared before the context,
    // whose destructor waits for the stream, so it outlives them.
    TensorListRef outputs(new moe_tensor_list);
    std::vector<std::pair<StateSlot *, TensorRef>> updatedState;
    struct Restride {
      TensorRef staging, result;
      ResultLayout layout;
    };
    std::vector<Restride> restrides;
    // Until the run succeeds, optimizer state on the device may be half
    // updated: the next run copies the host's values up again.
    struct Rollback {
      std::vector<StateSlot *> slots;
      ~Rollback() {
        for (StateSlot *slot : slots)
          slot->deviceCurrent = false;
      }
    } rollback;

    CudaInvokeContext context(session);
    Stopwatch stopwatch;
    uploadState(context);
    for (size_t i = 0; i < entry.args.size(); ++i) {
      const ArgDesc &arg = entry.args[i];
      auto *memref = reinterpret_cast<moe_abi_memref *>(descriptors[i].data());
      if (arg.sessionState()) {
        StateSlot &slot = *session.findState(arg.name);
        memref->allocated = memref->aligned =
            reinterpret_cast<void *>(slot.device.get());
        if (arg.role == MOE_ROLE_OPTIMIZER_STATE)
          rollback.slots.push_back(&slot);
      } else if (arg.role == MOE_ROLE_INPUT && !arg.shape.empty()) {
        // Rank-0 inputs stay in host memory: the model reads them there.
        memref->allocated = memref->aligned =
            context.upload(operands[i]->data, operands[i]->byteSize,
                           fmt::format("input '{}'", arg.name));
      }
    }
    if (timedPhases)
      context.wait();
    timing.upload_ms = stopwatch.lap();

    int32_t result = entry.invoke(pointers.data(), &context.services);
    if (timedPhases)
      context.wait();
    timing.invoke_ms = stopwatch.lap();
    context.throwRecordedFailure();
    checkResult(result, context.misuse());

    for (size_t i = 0; i < entry.args.size(); ++i) {
      const ArgDesc &arg = entry.args[i];
      std::string what =
          fmt::format("{} '{}'", moe_role_name(arg.role), arg.name);
      if (arg.role == MOE_ROLE_OPTIMIZER_STATE) {
        StateSlot &slot = *session.findState(arg.name);
        TensorRef mirror = newTensor(arg.dtype, arg.shape);
        context.download(mirror->data,
                         reinterpret_cast<void *>(slot.device.get()),
                         mirror->byteSize, what);
        updatedState.emplace_back(&slot, std::move(mirror));
        continue;
      }
      if (!arg.produced())
        continue;
      ResultLayout result = layout(arg, i);
      TensorRef tensor = newTensor(arg.dtype, result.shape);
      if (result.elements > 0) {
        size_t blockSize = 0;
        if (context.claim(memref(i).allocated, &blockSize))
          checkInBlock(arg, result, i, blockSize);
        if (result.contiguous) {
          context.download(tensor->data, result.first(), tensor->byteSize,
                           what);
        } else {
          TensorRef staging = newTensor(MOE_U8, {int64_t(result.spanBytes())});
          context.download(staging->data, result.first(), result.spanBytes(),
                           what);
          restrides.push_back(
              {std::move(staging), retainTensor(tensor.get()), result});
        }
      }
      addToList(*outputs, arg.name, std::move(tensor));
    }
    context.finish();
    for (Restride &job : restrides) {
      const ResultLayout &result = job.layout;
      // The staging buffer starts at element `low`.
      const char *base = static_cast<const char *>(job.staging->data) -
                         int64_t(result.low * __int128(result.elementSize)) +
                         result.offset * int64_t(result.elementSize);
      copyStrided(static_cast<char *>(job.result->data), base,
                  job.result->shape.data(), result.strides,
                  job.result->shape.size(), result.elementSize);
    }
    for (auto &[slot, mirror] : updatedState)
      slot->value = std::move(mirror);
    rollback.slots.clear();
    timing.download_ms = stopwatch.lap();
    return outputs;
  }

  /// Brings the parameters and optimizer state this entry reads to the
  /// device where the host holds newer values.
  void uploadState(CudaInvokeContext &context) {
    std::lock_guard<std::mutex> lock(session.cuda->uploadMutex);
    std::vector<StateSlot *> stale;
    for (const ArgDesc &arg : entry.args)
      if (arg.sessionState()) {
        StateSlot *slot = session.findState(arg.name);
        if (!slot->deviceCurrent)
          stale.push_back(slot);
      }
    if (stale.empty())
      return;
    context.uploadState(stale);
    for (StateSlot *slot : stale)
      slot->deviceCurrent = true;
  }

  void checkResult(int32_t result, const std::string &misuse) {
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
  }

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

  /// Checks a produced descriptor: extents, symbols, and a data pointer
  /// when it has elements.
  ResultLayout layout(const ArgDesc &arg, size_t index) {
    const moe_abi_memref &descriptor = memref(index);
    size_t rank = arg.shape.size();
    const int64_t *sizes = descriptor.sizes_and_strides;
    ResultLayout result;
    result.shape.assign(sizes, sizes + rank);
    result.strides = sizes + rank;
    for (size_t d = 0; d < rank; ++d)
      if (sizes[d] < 0)
        malformed(fmt::format("{} '{}' has negative extent {} in dimension {}",
                              moe_role_name(arg.role), arg.name, sizes[d], d));
    std::string problem = bind(arg, sizes);
    if (!problem.empty())
      malformed(problem);
    try {
      result.elements =
          checkShape(arg.dtype, static_cast<int32_t>(rank), sizes,
                     moe_role_name(arg.role) + (" '" + arg.name + "'"))
              .elements;
    } catch (const Error &e) {
      malformed(e.what());
    }
    result.elementSize = moe_dtype_size(arg.dtype);
    result.aligned = static_cast<const char *>(descriptor.aligned);
    result.offset = descriptor.offset;
    result.low = result.high = descriptor.offset;
    result.contiguous = true;
    if (result.elements == 0)
      return result;
    if (!descriptor.aligned)
      malformed(fmt::format("{} '{}' has a NULL data pointer",
                            moe_role_name(arg.role), arg.name));
    int64_t expected = 1;
    for (size_t d = rank; d-- > 0;) {
      __int128 span = __int128(sizes[d] - 1) * result.strides[d];
      (span < 0 ? result.low : result.high) += span;
      if (sizes[d] != 1 && result.strides[d] != expected)
        result.contiguous = false;
      expected *= sizes[d];
    }
    return result;
  }

  /// Checks that a result in a block from alloc stays inside it.
  void checkInBlock(const ArgDesc &arg, const ResultLayout &result,
                    size_t index, size_t blockSize) {
    __int128 begin =
        (result.aligned - static_cast<const char *>(memref(index).allocated)) +
        result.low * __int128(result.elementSize);
    __int128 end = begin + (result.high - result.low + 1) * result.elementSize;
    if (begin < 0 || end > __int128(blockSize))
      malformed(fmt::format("{} '{}' addresses bytes outside the {}-byte "
                            "block allocated for it",
                            moe_role_name(arg.role), arg.name, blockSize));
  }

  /// Turns a produced host descriptor into an owned contiguous tensor.
  TensorRef collectOnHost(const ArgDesc &arg, HostInvokeContext &context,
                          const ResultLayout &result) {
    if (result.elements == 0)
      return newTensor(arg.dtype, result.shape);
    size_t index = &arg - entry.args.data();
    size_t blockSize = 0;
    std::shared_ptr<void> storage =
        context.claim(memref(index).allocated, &blockSize);
    if (storage) {
      checkInBlock(arg, result, index, blockSize);
      if (result.contiguous)
        return wrapTensor(arg.dtype, result.shape, storage,
                          const_cast<char *>(result.first()));
    }
    // A view (of a constant, an input, a parameter) or a strided block:
    // copy into a contiguous tensor the caller owns.
    TensorRef tensor = newTensor(arg.dtype, result.shape);
    copyStrided(static_cast<char *>(tensor->data),
                result.aligned + result.offset * int64_t(result.elementSize),
                result.shape.data(), result.strides, result.shape.size(),
                result.elementSize);
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

  const moe_abi_memref &memref(size_t index) const {
    return *reinterpret_cast<const moe_abi_memref *>(descriptors[index].data());
  }

  moe_session &session;
  const EntryDesc &entry;
  std::string where;
  bool timedPhases;
  Bindings bindings;
  std::vector<std::vector<int64_t>> descriptors; // One memref per argument.
  std::vector<void *> pointers;                  // invoke's args.
  std::vector<const moe_tensor *> operands;      // Null for results.
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
  if (!model)
    return makeStatus(MOE_STATUS_INVALID_ARGUMENT,
                      "moe_session_create: argument 'model' is NULL");
  return moe_session_create_on(model, num_threads, model->device, 0, out);
}

moe_status *moe_session_create_on(moe_model *model, int32_t num_threads,
                                  moe_device device, int32_t ordinal,
                                  moe_session **out) {
  return guard([&] {
    requireArg(model, "moe_session_create_on", "model");
    requireArg(out, "moe_session_create_on", "out");
    if (num_threads < 0 || num_threads > maxThreads)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "moe_session_create: num_threads is {}, expected 0 (all CPUs) to "
           "{}",
           num_threads, maxThreads);
    if (!moe_device_name(device))
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "moe_session_create_on: device is {}, expected MOE_DEVICE_CPU or "
           "MOE_DEVICE_CUDA",
           int(device));
    if (device == MOE_DEVICE_CUDA && ordinal < 0)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "moe_session_create_on: CUDA device ordinal is {}, expected 0 or "
           "more",
           ordinal);
    if (device == MOE_DEVICE_CUDA && model->device != MOE_DEVICE_CUDA)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "model '{}' was compiled for the CPU (target '{}'); to run it on "
           "cuda:{}, recompile it with `moec --target=cuda`",
           model->path, model->target, ordinal);
    if (device == MOE_DEVICE_CPU && model->device != MOE_DEVICE_CPU)
      fail(MOE_STATUS_INVALID_ARGUMENT,
           "model '{}' was compiled for CUDA (target '{}') and runs only on "
           "a CUDA device; to run it on the CPU, recompile it without "
           "`--target=cuda`",
           model->path, model->target);
    auto session = std::make_unique<moe_session>();
    moe_model_retain(model);
    session->model.reset(model);
    session->device = device;
    if (device == MOE_DEVICE_CUDA) {
      session->ordinal = ordinal;
      session->cuda = std::make_unique<CudaSessionState>();
      session->cuda->device = cuda::Device::open(ordinal);
      session->deviceDescription = session->cuda->device->description();
      session->cuda->module =
          session->cuda->device->module(*model->abi, model->path);
    }
    session->pool = std::make_unique<ThreadPool>(
        num_threads ? num_threads : ThreadPool::defaultSize());
    for (const EntryDesc &entry : model->entries)
      for (const ArgDesc &arg : entry.args) {
        if (!arg.sessionState() || session->findState(arg.name))
          continue;
        StateSlot &slot = session->states.emplace_back();
        slot.decl = &arg;
        slot.value = newTensor(arg.dtype, arg.shape);
        slot.initialized = arg.role == MOE_ROLE_OPTIMIZER_STATE;
        if (session->cuda)
          slot.device = cuda::Buffer(
              session->cuda->device, slot.value->byteSize,
              fmt::format("{} '{}'", moe_role_name(arg.role), arg.name));
      }
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

moe_device moe_session_device(const moe_session *session) {
  return session->device;
}

int32_t moe_session_device_ordinal(const moe_session *session) {
  return session->ordinal;
}

const char *moe_session_device_description(const moe_session *session) {
  return session->deviceDescription.c_str();
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
    for (size_t i = 0; i < values.size(); ++i)
      session->states[i].assign(std::move(values[i]));
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
    for (size_t i = 0; i < values.size(); ++i)
      session->states[i].assign(std::move(values[i]));
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
    slot->assign(std::move(copy));
  });
}

moe_status *moe_session_run(moe_session *session, const char *entry,
                            const moe_tensor_list *inputs,
                            moe_tensor_list **outputs) {
  return moe_session_run_timed(session, entry, inputs, outputs, nullptr);
}

moe_status *moe_session_run_timed(moe_session *session, const char *entry,
                                  const moe_tensor_list *inputs,
                                  moe_tensor_list **outputs,
                                  moe_run_timing *timing) {
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
    moe_run_timing measured{};
    TensorListRef results =
        Run(*session, *desc, timing != nullptr).execute(inputs, measured);
    if (timing)
      *timing = measured;
    *outputs = results.release();
  });
}

} // extern "C"
