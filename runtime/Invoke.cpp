//===- Invoke.cpp - Runtime services shared by devices, and CUDA's --------===//

#include "Invoke.h"

#include <algorithm>

namespace moert::detail {

//===----------------------------------------------------------------------===//
// InvokeContext
//===----------------------------------------------------------------------===//

InvokeContext::InvokeContext(ThreadPool &pool, moe_device device) : pool(pool) {
  services.abi_version = MOE_ABI_VERSION;
  services.struct_size = sizeof(moe_runtime_services);
  services.context = this;
  services.parallel_for = parallelFor;
  services.num_threads = pool.size();
  services.device = device;
}

std::string InvokeContext::misuse() {
  std::lock_guard<std::mutex> lock(mutex);
  return error;
}

void InvokeContext::recordMisuse(const char *message) noexcept {
  try {
    std::lock_guard<std::mutex> lock(mutex);
    if (error.empty())
      error = message;
  } catch (...) {
  }
}

bool InvokeContext::validAlignment(size_t alignment) noexcept {
  if (alignment == 0 || (alignment & (alignment - 1)) || alignment > 4096) {
    recordMisuse("alloc was asked for an alignment that is not a power of two "
                 "up to 4096");
    return false;
  }
  return true;
}

void InvokeContext::parallelFor(void *context, int64_t iterations,
                                void (*body)(void *, int64_t, int64_t),
                                void *closure) noexcept {
  try {
    static_cast<InvokeContext *>(context)->pool.parallelFor(iterations, body,
                                                            closure);
  } catch (...) {
    body(closure, 0, iterations); // No memory for a job: run it here.
  }
}

//===----------------------------------------------------------------------===//
// CudaInvokeContext
//===----------------------------------------------------------------------===//

namespace {
// cuMemAllocAsync's blocks are aligned to this at least; alloc pads larger
// alignments.
constexpr size_t driverAlignment = 256;

cuda::CUdeviceptr address(const void *pointer) {
  return reinterpret_cast<cuda::CUdeviceptr>(pointer);
}
} // namespace

CudaInvokeContext::CudaInvokeContext(moe_session &session)
    : InvokeContext(*session.pool, MOE_DEVICE_CUDA),
      device(*session.cuda->device), module(*session.cuda->module),
      api(device.driver()) {
  device.makeCurrent();
  stream = device.acquireStream();
  services.alloc = alloc;
  services.free = release;
  services.cuda_function = function;
  services.cuda_launch = launch;
  services.cuda_copy = copy;
}

CudaInvokeContext::~CudaInvokeContext() {
  device.makeCurrentQuietly();
  freeAll();
  api.cuStreamSynchronize(stream);
  device.releaseStream(stream);
}

void CudaInvokeContext::freeAll() noexcept {
  for (auto *blocks : {&live, &claimed}) {
    for (const auto &block : *blocks)
      api.cuMemFreeAsync(block.second.base, stream);
    blocks->clear();
  }
  for (cuda::CUdeviceptr input : inputs)
    api.cuMemFreeAsync(input, stream);
  inputs.clear();
}

void CudaInvokeContext::recordFailure(cuda::CUresult result,
                                      const std::string &operation) {
  std::lock_guard<std::mutex> lock(mutex);
  if (!failure)
    failure.emplace(result == cuda::CUDA_ERROR_OUT_OF_MEMORY
                        ? MOE_STATUS_OUT_OF_MEMORY
                        : MOE_STATUS_DEVICE_ERROR,
                    api.failure(operation, result));
}

void CudaInvokeContext::throwRecordedFailure() {
  std::lock_guard<std::mutex> lock(mutex);
  if (failure)
    throw *failure;
}

void CudaInvokeContext::uploadState(const std::vector<StateSlot *> &slots) {
  for (StateSlot *slot : slots)
    api.check(api.cuMemcpyHtoDAsync(slot->device.get(), slot->value->data,
                                    slot->value->byteSize, stream),
              fmt::format("cuMemcpyHtoDAsync({} '{}', {} bytes)",
                          moe_role_name(slot->decl->role), slot->decl->name,
                          slot->value->byteSize));
  wait();
}

void *CudaInvokeContext::upload(const void *host, size_t bytes,
                                const std::string &what) {
  cuda::CUdeviceptr pointer = 0;
  api.check(api.cuMemAllocAsync(&pointer, std::max<size_t>(bytes, 1), stream),
            fmt::format("cuMemAllocAsync({} bytes for {})", bytes, what));
  inputs.push_back(pointer);
  if (bytes)
    api.check(api.cuMemcpyHtoDAsync(pointer, host, bytes, stream),
              fmt::format("cuMemcpyHtoDAsync({}, {} bytes)", what, bytes));
  return reinterpret_cast<void *>(pointer);
}

bool CudaInvokeContext::claim(void *allocated, size_t *size) {
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = claimed.find(allocated); it != claimed.end()) {
    *size = it->second.bytes;
    return true;
  }
  auto it = live.find(allocated);
  if (it == live.end())
    return false;
  *size = it->second.bytes;
  claimed.insert(*it);
  live.erase(it);
  return true;
}

void CudaInvokeContext::download(void *host, const void *source, size_t bytes,
                                 const std::string &what) {
  if (bytes)
    api.check(api.cuMemcpyDtoHAsync(host, address(source), bytes, stream),
              fmt::format("cuMemcpyDtoHAsync({}, {} bytes)", what, bytes));
}

void CudaInvokeContext::wait() {
  cuda::CUresult result = api.cuStreamSynchronize(stream);
  throwRecordedFailure();
  api.check(result, "cuStreamSynchronize");
}

void CudaInvokeContext::finish() {
  freeAll();
  wait();
}

void *CudaInvokeContext::alloc(void *context, size_t bytes,
                               size_t alignment) noexcept {
  auto *self = static_cast<CudaInvokeContext *>(context);
  if (!self->validAlignment(alignment))
    return nullptr;
  try {
    self->device.makeCurrentQuietly();
    // Blocks start at a multiple of driverAlignment, so this much padding
    // reaches a multiple of any larger alignment.
    size_t align = std::max(alignment, driverAlignment);
    cuda::CUdeviceptr base = 0;
    cuda::CUresult result = self->api.cuMemAllocAsync(
        &base, std::max<size_t>(bytes, 1) + (align - driverAlignment),
        self->stream);
    if (result != cuda::CUDA_SUCCESS) {
      // The model answers NULL with MOE_ABI_OUT_OF_MEMORY; the recorded
      // failure says what the driver said.
      self->recordFailure(result,
                          fmt::format("cuMemAllocAsync({} bytes)", bytes));
      return nullptr;
    }
    cuda::CUdeviceptr aligned =
        (base + align - 1) & ~cuda::CUdeviceptr(align - 1);
    auto *pointer = reinterpret_cast<void *>(aligned);
    std::lock_guard<std::mutex> lock(self->mutex);
    self->live.emplace(pointer, Block{base, bytes});
    return pointer;
  } catch (...) {
    return nullptr;
  }
}

void CudaInvokeContext::release(void *context, void *pointer) noexcept {
  auto *self = static_cast<CudaInvokeContext *>(context);
  if (!pointer)
    return;
  cuda::CUdeviceptr base = 0;
  {
    std::lock_guard<std::mutex> lock(self->mutex);
    if (auto it = self->live.find(pointer); it != self->live.end()) {
      base = it->second.base;
      self->live.erase(it);
    }
  }
  if (!base) {
    // Freeing it anyway could free a block still in use.
    self->recordMisuse("free was called on a pointer that alloc did not "
                       "return or that was already freed");
    return;
  }
  try {
    self->device.makeCurrentQuietly();
    cuda::CUresult result = self->api.cuMemFreeAsync(base, self->stream);
    if (result != cuda::CUDA_SUCCESS)
      self->recordFailure(result, "cuMemFreeAsync");
  } catch (...) {
  }
}

void *CudaInvokeContext::function(void *context,
                                  const char *kernelName) noexcept {
  auto *self = static_cast<CudaInvokeContext *>(context);
  try {
    if (!kernelName) {
      self->recordMisuse("cuda_function was called with a NULL kernel name");
      return nullptr;
    }
    self->device.makeCurrentQuietly();
    return self->module.function(kernelName);
  } catch (const cuda::DriverError &error) {
    std::lock_guard<std::mutex> lock(self->mutex);
    if (!self->failure)
      self->failure.emplace(error);
  } catch (...) {
  }
  return nullptr;
}

void CudaInvokeContext::launch(void *context, void *function, int64_t gridX,
                               int64_t gridY, int64_t gridZ, int64_t blockX,
                               int64_t blockY, int64_t blockZ,
                               int32_t sharedBytes, void **params) noexcept {
  auto *self = static_cast<CudaInvokeContext *>(context);
  try {
    if (!function) {
      // cuda_function has recorded why it returned NULL.
      if (self->misuse().empty())
        self->recordMisuse("cuda_launch was called with a NULL function");
      return;
    }
    for (int64_t extent : {gridX, gridY, gridZ, blockX, blockY, blockZ})
      if (extent < 1 || extent > int64_t(UINT32_MAX)) {
        self->recordMisuse("cuda_launch was called with a grid or block "
                           "extent outside [1, 2^32)");
        return;
      }
    if (sharedBytes < 0) {
      self->recordMisuse("cuda_launch was called with negative shared "
                         "memory");
      return;
    }
    auto *kernel = static_cast<cuda::CUfunction>(function);
    self->device.makeCurrentQuietly();
    cuda::CUresult result = self->api.cuLaunchKernel(
        kernel, unsigned(gridX), unsigned(gridY), unsigned(gridZ),
        unsigned(blockX), unsigned(blockY), unsigned(blockZ),
        unsigned(sharedBytes), self->stream, params, nullptr);
    if (result != cuda::CUDA_SUCCESS)
      self->recordFailure(result, fmt::format("cuLaunchKernel({})",
                                              self->module.kernelName(kernel)));
  } catch (...) {
  }
}

void CudaInvokeContext::copy(void *context, void *dst, const void *src,
                             size_t bytes) noexcept {
  auto *self = static_cast<CudaInvokeContext *>(context);
  if (!bytes)
    return;
  try {
    self->device.makeCurrentQuietly();
    cuda::CUresult result = self->api.cuMemcpyAsync(address(dst), address(src),
                                                    bytes, self->stream);
    if (result != cuda::CUDA_SUCCESS)
      self->recordFailure(result,
                          fmt::format("cuMemcpyAsync({} bytes)", bytes));
  } catch (...) {
  }
}

} // namespace moert::detail
