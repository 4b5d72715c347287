//===- Cuda.cpp - The CUDA driver, devices and modules --------------------===//

#include "Cuda.h"

#include "Error.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <map>
#include <type_traits>
#include <utility>

namespace moert::detail::cuda {

namespace {

// Driver constants, as cuda.h defines them.
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
constexpr int CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED = 115;
constexpr int CU_JIT_INFO_LOG_BUFFER = 3;
constexpr int CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4;
constexpr int CU_JIT_ERROR_LOG_BUFFER = 5;
constexpr int CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6;
constexpr unsigned CU_STREAM_NON_BLOCKING = 1;

constexpr const char defaultLibrary[] = "libcuda.so.1";

std::string libraryPath() {
  const char *path = std::getenv("MOERT_LIBCUDA");
  return path && *path ? path : defaultLibrary;
}

/// Loads and initialises the driver at `path`; throws on failure.
std::unique_ptr<Driver> loadDriver(const std::string &path) {
  auto api = std::make_unique<Driver>();
  api->path = path;
  dlerror();
  api->library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!api->library) {
    const char *why = dlerror();
    fail(MOE_STATUS_DEVICE_ERROR,
         "cannot load the CUDA driver '{}': {} (is an NVIDIA driver "
         "installed? MOERT_LIBCUDA may name libcuda.so.1 elsewhere)",
         path, why ? why : "unknown error");
  }
  // The library stays loaded for the life of the process, also after a
  // failure below: a driver cannot be unloaded safely once initialised.
  auto resolve = [&](auto &entry, const char *name) {
    void *symbol = dlsym(api->library, name);
    if (!symbol)
      fail(MOE_STATUS_DEVICE_ERROR,
           "the CUDA driver '{}' lacks the entry point {}: it is older than "
           "CUDA 11.2 or not a CUDA driver",
           path, name);
    entry = reinterpret_cast<std::remove_reference_t<decltype(entry)>>(symbol);
  };
  resolve(api->cuInit, "cuInit");
  resolve(api->cuGetErrorName, "cuGetErrorName");
  resolve(api->cuDeviceGetCount, "cuDeviceGetCount");
  resolve(api->cuDeviceGet, "cuDeviceGet");
  resolve(api->cuDeviceGetName, "cuDeviceGetName");
  resolve(api->cuDeviceGetAttribute, "cuDeviceGetAttribute");
  resolve(api->cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  resolve(api->cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
  resolve(api->cuCtxSetCurrent, "cuCtxSetCurrent");
  resolve(api->cuStreamCreate, "cuStreamCreate");
  resolve(api->cuStreamDestroy, "cuStreamDestroy_v2");
  resolve(api->cuStreamSynchronize, "cuStreamSynchronize");
  resolve(api->cuMemAlloc, "cuMemAlloc_v2");
  resolve(api->cuMemFree, "cuMemFree_v2");
  resolve(api->cuMemAllocAsync, "cuMemAllocAsync");
  resolve(api->cuMemFreeAsync, "cuMemFreeAsync");
  resolve(api->cuMemcpyAsync, "cuMemcpyAsync");
  resolve(api->cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
  resolve(api->cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
  resolve(api->cuModuleLoadDataEx, "cuModuleLoadDataEx");
  resolve(api->cuModuleUnload, "cuModuleUnload");
  resolve(api->cuModuleGetFunction, "cuModuleGetFunction");
  resolve(api->cuLaunchKernel, "cuLaunchKernel");
  CUresult result = api->cuInit(0);
  if (result == CUDA_ERROR_STUB_LIBRARY)
    fail(MOE_STATUS_DEVICE_ERROR,
         "'{}' is the CUDA toolkit's stub library, not a driver: install an "
         "NVIDIA driver or point MOERT_LIBCUDA at its libcuda.so.1",
         path);
  if (result == CUDA_ERROR_NO_DEVICE)
    fail(MOE_STATUS_DEVICE_ERROR,
         "no CUDA device: the driver '{}' found none (cuInit failed: {})", path,
         api->errorName(result));
  api->check(result, "cuInit");
  return api;
}

} // namespace

std::string Driver::errorName(CUresult result) const {
  const char *name = nullptr;
  if (cuGetErrorName(result, &name) == CUDA_SUCCESS && name)
    return name;
  return fmt::format("CUDA error {}", result);
}

std::string Driver::failure(std::string_view operation, CUresult result) const {
  return fmt::format("{} failed: {}", operation, errorName(result));
}

void Driver::check(CUresult result, std::string_view operation) const {
  if (result != CUDA_SUCCESS)
    throw DriverError(result == CUDA_ERROR_OUT_OF_MEMORY
                          ? MOE_STATUS_OUT_OF_MEMORY
                          : MOE_STATUS_DEVICE_ERROR,
                      failure(operation, result));
}

const Driver &driver() {
  static std::mutex mutex;
  // Never freed: devices and modules point into the drivers.
  static auto *loaded = new std::map<std::string, std::unique_ptr<Driver>>;
  std::string path = libraryPath();
  std::lock_guard<std::mutex> lock(mutex);
  auto it = loaded->find(path);
  if (it == loaded->end())
    it = loaded->emplace(path, loadDriver(path)).first;
  return *it->second;
}

//===----------------------------------------------------------------------===//
// Device
//===----------------------------------------------------------------------===//

std::shared_ptr<Device> Device::open(int32_t ordinal) {
  const Driver &api = cuda::driver();
  static std::mutex mutex;
  static auto *opened =
      new std::map<std::pair<const Driver *, int32_t>, std::weak_ptr<Device>>;
  std::lock_guard<std::mutex> lock(mutex);
  std::weak_ptr<Device> &slot = (*opened)[{&api, ordinal}];
  if (std::shared_ptr<Device> device = slot.lock())
    return device;
  std::shared_ptr<Device> device(new Device(api, ordinal));
  slot = device;
  return device;
}

Device::Device(const Driver &api, int32_t ordinal) : api(api) {
  int count = 0;
  api.check(api.cuDeviceGetCount(&count), "cuDeviceGetCount");
  if (count == 0)
    fail(MOE_STATUS_DEVICE_ERROR, "no CUDA device: the driver '{}' found none",
         api.path);
  if (ordinal < 0 || ordinal >= count)
    fail(MOE_STATUS_DEVICE_ERROR,
         "CUDA device {} does not exist: this machine has {} CUDA device(s), "
         "cuda:0{}",
         ordinal, count,
         count > 1 ? fmt::format(" to cuda:{}", count - 1) : std::string());
  api.check(api.cuDeviceGet(&handle, ordinal),
            fmt::format("cuDeviceGet({})", ordinal));
  char name[256] = {};
  api.check(api.cuDeviceGetName(name, sizeof(name) - 1, handle),
            "cuDeviceGetName");
  int major = 0, minor = 0, pools = 0;
  api.check(api.cuDeviceGetAttribute(
                &major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, handle),
            "cuDeviceGetAttribute(compute capability)");
  api.check(api.cuDeviceGetAttribute(
                &minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, handle),
            "cuDeviceGetAttribute(compute capability)");
  api.check(api.cuDeviceGetAttribute(
                &pools, CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, handle),
            "cuDeviceGetAttribute(memory pools)");
  text = fmt::format("cuda:{} ({}, sm_{}{})", ordinal, name, major, minor);
  // Runs allocate with cuMemAllocAsync, which needs memory pools.
  if (!pools)
    fail(MOE_STATUS_DEVICE_ERROR,
         "CUDA device {} does not support stream-ordered allocation "
         "(cuMemAllocAsync); moert needs CUDA 11.2 or newer on a device "
         "with memory pools",
         text);
  api.check(api.cuDevicePrimaryCtxRetain(&context, handle),
            fmt::format("cuDevicePrimaryCtxRetain({})", ordinal));
}

Device::~Device() {
  api.cuCtxSetCurrent(context);
  for (CUstream stream : streams)
    api.cuStreamDestroy(stream);
  api.cuDevicePrimaryCtxRelease(handle);
}

void Device::makeCurrent() const {
  api.check(api.cuCtxSetCurrent(context), "cuCtxSetCurrent");
}

void Device::makeCurrentQuietly() const noexcept {
  api.cuCtxSetCurrent(context);
}

CUstream Device::acquireStream() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!streams.empty()) {
      CUstream stream = streams.back();
      streams.pop_back();
      return stream;
    }
  }
  CUstream stream = nullptr;
  makeCurrent();
  api.check(api.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING),
            "cuStreamCreate");
  return stream;
}

void Device::releaseStream(CUstream stream) {
  try {
    std::lock_guard<std::mutex> lock(mutex);
    streams.push_back(stream);
  } catch (...) {
    api.cuStreamDestroy(stream); // No memory to keep it: let it go.
  }
}

std::shared_ptr<Module> Device::module(const moe_abi_model &model,
                                       const std::string &path) {
  std::lock_guard<std::mutex> lock(mutex);
  std::weak_ptr<Module> &slot = modules[&model];
  if (std::shared_ptr<Module> loaded = slot.lock())
    return loaded;
  // Sessions hold the device, so `this` is owned by a shared_ptr.
  auto loaded = std::make_shared<Module>(shared_from_this(), model, path);
  slot = loaded;
  return loaded;
}

//===----------------------------------------------------------------------===//
// Module
//===----------------------------------------------------------------------===//

namespace {

/// cuModuleLoadDataEx with the JIT's logs captured.
struct ImageLoad {
  CUresult result;
  CUmodule module = nullptr;
  std::string errorLog, infoLog;
};

ImageLoad loadImage(const Driver &api, const void *image) {
  constexpr size_t logSize = 16384;
  std::vector<char> errors(logSize, 0), infos(logSize, 0);
  int options[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                   CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {errors.data(), reinterpret_cast<void *>(logSize - 1),
                    infos.data(), reinterpret_cast<void *>(logSize - 1)};
  ImageLoad load;
  load.result = api.cuModuleLoadDataEx(&load.module, image, 4, options, values);
  load.errorLog = errors.data();
  load.infoLog = infos.data();
  return load;
}

} // namespace

Module::Module(std::shared_ptr<Device> owner, const moe_abi_model &model,
               const std::string &path)
    : device(std::move(owner)) {
  const Driver &api = device->driver();
  device->makeCurrent();
  std::string cubinFailure;
  if (model.device_blob) {
    ImageLoad cubin = loadImage(api, model.device_blob);
    if (cubin.result == CUDA_SUCCESS) {
      handle = cubin.module;
      return;
    }
    // Typically CUDA_ERROR_NO_BINARY_FOR_GPU: a cubin for another
    // architecture. The PTX is what the driver can compile for this one.
    cubinFailure =
        api.failure(fmt::format("cuModuleLoadDataEx(cubin for {})",
                                model.device_arch ? model.device_arch : "?"),
                    cubin.result);
  }
  ImageLoad ptx = loadImage(api, model.device_ptx);
  if (ptx.result != CUDA_SUCCESS) {
    std::string log = ptx.errorLog.empty() ? ptx.infoLog : ptx.errorLog;
    while (!log.empty() && (log.back() == '\n' || log.back() == '\0'))
      log.pop_back();
    throw Error(
        ptx.result == CUDA_ERROR_OUT_OF_MEMORY ? MOE_STATUS_OUT_OF_MEMORY
                                               : MOE_STATUS_DEVICE_ERROR,
        fmt::format("cannot load the device code of model '{}' on {}: {}{}{}",
                    path, device->description(),
                    cubinFailure.empty() ? "" : cubinFailure + "; then ",
                    api.failure("cuModuleLoadDataEx(PTX)", ptx.result),
                    log.empty() ? "" : "; JIT log:\n" + log));
  }
  handle = ptx.module;
}

Module::~Module() {
  device->makeCurrentQuietly();
  device->driver().cuModuleUnload(handle);
}

CUfunction Module::function(const char *name) {
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = functions.find(name); it != functions.end())
    return it->second;
  const Driver &api = device->driver();
  CUfunction function = nullptr;
  api.check(api.cuModuleGetFunction(&function, handle, name),
            fmt::format("cuModuleGetFunction({})", name));
  names.emplace(function, name);
  functions.emplace(name, function);
  return function;
}

std::string Module::kernelName(CUfunction function) {
  std::lock_guard<std::mutex> lock(mutex);
  auto it = names.find(function);
  return it == names.end() ? "an unknown function" : it->second;
}

//===----------------------------------------------------------------------===//
// Buffer
//===----------------------------------------------------------------------===//

Buffer::Buffer(std::shared_ptr<Device> owner, size_t size,
               const std::string &what)
    : device(std::move(owner)) {
  const Driver &api = device->driver();
  device->makeCurrent();
  // cuMemAlloc refuses 0 bytes; every buffer gets an address.
  api.check(api.cuMemAlloc(&pointer, std::max<size_t>(size, 1)),
            fmt::format("cuMemAlloc({} bytes for {})", size, what));
}

Buffer::~Buffer() {
  if (!pointer)
    return;
  device->makeCurrentQuietly();
  device->driver().cuMemFree(pointer);
}

Buffer::Buffer(Buffer &&other) noexcept
    : device(std::move(other.device)),
      pointer(std::exchange(other.pointer, 0)) {}

Buffer &Buffer::operator=(Buffer &&other) noexcept {
  std::swap(device, other.device);
  std::swap(pointer, other.pointer);
  return *this;
}

} // namespace moert::detail::cuda
