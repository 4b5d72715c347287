//===- Cuda.h - The CUDA driver, loaded at run time -----------------------===//
//
// libmoert never links libcuda: the driver is dlopen()ed the first time a
// session asks for a CUDA device (MOERT_LIBCUDA overrides the path), so the
// runtime builds and runs on machines without a GPU or a CUDA toolkit. The
// few driver types and constants it needs are declared here instead of
// including cuda.h.
//
// Every failing driver call becomes an Error whose message names the
// operation and carries the CUDA error's name, e.g.
// "cuLaunchKernel(moe_kernel_3) failed: CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES".
//
//===----------------------------------------------------------------------===//
#ifndef MOERT_RUNTIME_CUDA_H
#define MOERT_RUNTIME_CUDA_H

#include "Error.h"

#include "moe/abi/moe_abi.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace moert::detail::cuda {

// The driver API's types, as cuda.h declares them.
using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;

// The CUresult values the runtime tells apart.
constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;
constexpr CUresult CUDA_ERROR_STUB_LIBRARY = 34;
constexpr CUresult CUDA_ERROR_NO_DEVICE = 100;

/// A failed driver call, so that callers can add where it happened.
class DriverError : public Error {
public:
  using Error::Error;
};

/// The entry points of libcuda that the runtime uses, resolved by their
/// versioned names.
struct Driver {
  std::string path;
  void *library = nullptr;

  CUresult (*cuInit)(unsigned flags);
  CUresult (*cuGetErrorName)(CUresult error, const char **name);
  CUresult (*cuDeviceGetCount)(int *count);
  CUresult (*cuDeviceGet)(CUdevice *device, int ordinal);
  CUresult (*cuDeviceGetName)(char *name, int length, CUdevice device);
  CUresult (*cuDeviceGetAttribute)(int *value, int attribute, CUdevice device);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *context, CUdevice device);
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice device);
  CUresult (*cuCtxSetCurrent)(CUcontext context);
  CUresult (*cuStreamCreate)(CUstream *stream, unsigned flags);
  CUresult (*cuStreamDestroy)(CUstream stream);
  CUresult (*cuStreamSynchronize)(CUstream stream);
  CUresult (*cuMemAlloc)(CUdeviceptr *pointer, size_t bytes);
  CUresult (*cuMemFree)(CUdeviceptr pointer);
  CUresult (*cuMemAllocAsync)(CUdeviceptr *pointer, size_t bytes,
                              CUstream stream);
  CUresult (*cuMemFreeAsync)(CUdeviceptr pointer, CUstream stream);
  CUresult (*cuMemcpyAsync)(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                            CUstream stream);
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr dst, const void *src, size_t bytes,
                                CUstream stream);
  CUresult (*cuMemcpyDtoHAsync)(void *dst, CUdeviceptr src, size_t bytes,
                                CUstream stream);
  CUresult (*cuModuleLoadDataEx)(CUmodule *module, const void *image,
                                 unsigned numOptions, int *options,
                                 void **optionValues);
  CUresult (*cuModuleUnload)(CUmodule module);
  CUresult (*cuModuleGetFunction)(CUfunction *function, CUmodule module,
                                  const char *name);
  CUresult (*cuLaunchKernel)(CUfunction function, unsigned gridX,
                             unsigned gridY, unsigned gridZ, unsigned blockX,
                             unsigned blockY, unsigned blockZ,
                             unsigned sharedBytes, CUstream stream,
                             void **params, void **extra);

  /// "CUDA_ERROR_OUT_OF_MEMORY", or "CUDA error N" for a code the driver
  /// does not name.
  std::string errorName(CUresult result) const;
  /// "<operation> failed: <error name>".
  std::string failure(std::string_view operation, CUresult result) const;
  /// Throws a DriverError with failure()'s message unless `result` is
  /// success:
  /// OUT_OF_MEMORY for CUDA_ERROR_OUT_OF_MEMORY, else DEVICE_ERROR.
  void check(CUresult result, std::string_view operation) const;
};

/// The driver at MOERT_LIBCUDA, or else libcuda.so.1, loaded and
/// initialised (cuInit) on first use. A failure (no library, a missing entry
/// point, the toolkit's stub library, no device) is reported each time it is
/// asked for; a success is kept for the life of the process. Each path is
/// loaded once, so tests may switch MOERT_LIBCUDA between sessions.
const Driver &driver();

/// A CUDA device as the sessions on it share it: its primary context, a
/// pool of streams, and the device code of the models loaded on it.
class Module;
class Device : public std::enable_shared_from_this<Device> {
public:
  /// The device `ordinal` of the current driver; opened once and shared
  /// while sessions use it. Fails with one clear message for no driver, no
  /// device or an ordinal out of range.
  static std::shared_ptr<Device> open(int32_t ordinal);
  ~Device();
  Device(const Device &) = delete;
  Device &operator=(const Device &) = delete;

  const Driver &driver() const { return api; }
  /// "cuda:0 (NVIDIA H100 80GB HBM3, sm_90)"
  const std::string &description() const { return text; }

  /// Makes the primary context current on the calling thread.
  void makeCurrent() const;
  /// The same in destructors, where a failure cannot be reported.
  void makeCurrentQuietly() const noexcept;

  /// A stream for one run: reused from the pool or created.
  CUstream acquireStream();
  void releaseStream(CUstream stream);

  /// The module of `model` on this device, loaded once and shared by the
  /// model's sessions; `path` names the model in messages.
  std::shared_ptr<Module> module(const moe_abi_model &model,
                                 const std::string &path);

private:
  Device(const Driver &api, int32_t ordinal);

  const Driver &api;
  CUdevice handle = 0;
  CUcontext context = nullptr;
  std::string text;
  std::mutex mutex; // Guards streams and modules.
  std::vector<CUstream> streams;
  std::unordered_map<const moe_abi_model *, std::weak_ptr<Module>> modules;
};

/// The device code of one model loaded on one device: the cubin when the
/// driver takes it, else the PTX compiled by the driver's JIT.
class Module {
public:
  Module(std::shared_ptr<Device> device, const moe_abi_model &model,
         const std::string &path);
  ~Module();
  Module(const Module &) = delete;
  Module &operator=(const Module &) = delete;

  /// The kernel `name` (one of the model's kernel_names; cached by the
  /// pointer, which the ABI keeps stable). Throws on failure.
  CUfunction function(const char *name);
  /// The kernel name a function came from, for messages.
  std::string kernelName(CUfunction function);

private:
  std::shared_ptr<Device> device;
  CUmodule handle = nullptr;
  std::mutex mutex; // Guards the caches.
  std::unordered_map<const char *, CUfunction> functions;
  std::unordered_map<CUfunction, std::string> names;
};

/// Device memory that frees itself (synchronously, cuMemFree).
class Buffer {
public:
  Buffer() = default;
  Buffer(std::shared_ptr<Device> device, size_t bytes, const std::string &what);
  ~Buffer();
  Buffer(Buffer &&other) noexcept;
  Buffer &operator=(Buffer &&other) noexcept;

  CUdeviceptr get() const { return pointer; }

private:
  std::shared_ptr<Device> device;
  CUdeviceptr pointer = 0;
};

} // namespace moert::detail::cuda

#endif // MOERT_RUNTIME_CUDA_H
