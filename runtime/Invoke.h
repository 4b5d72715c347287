//===- Invoke.h - The runtime services of one invoke call -----------------===//
//
// A model reaches the runtime only through the moe_runtime_services table
// passed to invoke (see moe/abi/moe_abi.h). Each call gets a fresh context
// that remembers what `alloc` handed out, so that results can be told apart
// (owned blocks vs views) and leaks reclaimed, and records the first misuse
// of a service. The host context lives in Session.cpp; the CUDA one, which
// also enqueues everything on the run's stream, is declared here.
//
//===----------------------------------------------------------------------===//
#ifndef MOERT_RUNTIME_INVOKE_H
#define MOERT_RUNTIME_INVOKE_H

#include "Cuda.h"
#include "Error.h"
#include "Session.h"
#include "ThreadPool.h"

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace moert::detail {

/// What the services of every device share: the session's pool behind
/// parallel_for, and the first misuse of a service.
class InvokeContext {
public:
  InvokeContext(ThreadPool &pool, moe_device device);
  InvokeContext(const InvokeContext &) = delete;
  InvokeContext &operator=(const InvokeContext &) = delete;

  /// The first misuse of a service, or "".
  std::string misuse();

  moe_runtime_services services{};

protected:
  void recordMisuse(const char *message) noexcept;
  /// Checks alloc's alignment argument, recording a misuse if it is bad.
  bool validAlignment(size_t alignment) noexcept;

  // Guards the derived contexts' bookkeeping too: workers call the services.
  std::mutex mutex;

private:
  static void parallelFor(void *context, int64_t iterations,
                          void (*body)(void *, int64_t, int64_t),
                          void *closure) noexcept;

  ThreadPool &pool;
  std::string error;
};

/// The services of one invoke call on a CUDA device: every alloc, free,
/// launch and copy goes to one stream of the session's device, and failures
/// are recorded (first one wins) for the run to report after invoke.
class CudaInvokeContext : public InvokeContext {
public:
  /// Takes a stream from the device's pool and makes the device's context
  /// current on the calling thread.
  explicit CudaInvokeContext(moe_session &session);
  /// Frees what is still allocated, waits for the stream (so no copy into
  /// host memory is left in flight) and gives the stream back.
  ~CudaInvokeContext();

  /// Copies the host values of `slots` to their device buffers and waits
  /// for the copies.
  void uploadState(const std::vector<StateSlot *> &slots);
  /// A device copy of `bytes` of host memory (enqueued), freed when the run
  /// ends; `what` names it in messages.
  void *upload(const void *host, size_t bytes, const std::string &what);
  /// If `allocated` is a block from alloc: true, its size, and the block is
  /// freed when the run ends (after the copies that read it).
  bool claim(void *allocated, size_t *size);
  /// Enqueues a copy from device memory into host memory, which must stay
  /// valid until finish() or the destructor.
  void download(void *host, const void *device, size_t bytes,
                const std::string &what);
  /// Waits for the stream; throws a failure recorded or met meanwhile.
  void wait();
  /// Frees the blocks (stream-ordered) and waits for the stream.
  void finish();
  /// Throws the first failure the services recorded (a DriverError).
  void throwRecordedFailure();

private:
  struct Block {
    cuda::CUdeviceptr base; // What cuMemAllocAsync returned.
    size_t bytes;           // What the model asked for.
  };

  void recordFailure(cuda::CUresult result, const std::string &operation);
  void freeAll() noexcept;

  static void *alloc(void *context, size_t bytes, size_t alignment) noexcept;
  static void release(void *context, void *pointer) noexcept;
  static void *function(void *context, const char *kernelName) noexcept;
  static void launch(void *context, void *function, int64_t gridX,
                     int64_t gridY, int64_t gridZ, int64_t blockX,
                     int64_t blockY, int64_t blockZ, int32_t sharedBytes,
                     void **params) noexcept;
  static void copy(void *context, void *dst, const void *src,
                   size_t bytes) noexcept;

  cuda::Device &device;
  cuda::Module &module;
  const cuda::Driver &api;
  cuda::CUstream stream;
  std::unordered_map<void *, Block> live, claimed;
  std::vector<cuda::CUdeviceptr> inputs;
  std::optional<cuda::DriverError> failure;
};

} // namespace moert::detail

#endif // MOERT_RUNTIME_INVOKE_H
