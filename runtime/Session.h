//===- Session.h - The state a session holds ------------------------------===//
#ifndef MOERT_RUNTIME_SESSION_H
#define MOERT_RUNTIME_SESSION_H

#include "Cuda.h"
#include "Model.h"
#include "Tensor.h"
#include "ThreadPool.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace moert::detail {

/// A shared mutex that lets a waiting writer in: readers and writers pass a
/// turnstile, which a writer holds until it owns the lock, so a stream of
/// overlapping runs cannot starve a parameter update (glibc's rwlock, under
/// std::shared_mutex, prefers readers).
class TurnstileSharedMutex {
public:
  void lock() {
    std::lock_guard<std::mutex> pass(turnstile);
    mutex.lock();
  }
  void unlock() { mutex.unlock(); }
  void lock_shared() {
    std::lock_guard<std::mutex> pass(turnstile);
    mutex.lock_shared();
  }
  void unlock_shared() { mutex.unlock_shared(); }

private:
  std::mutex turnstile;
  std::shared_mutex mutex;
};

/// A parameter or optimizer-state tensor the session holds. On a CUDA
/// device the model reads `device`; `value` is its host mirror, which the
/// API reads and writes (get, set, load, save, the optimizer).
struct StateSlot {
  const ArgDesc *decl;
  TensorRef value;
  bool initialized;
  cuda::Buffer device;        // CUDA sessions only.
  bool deviceCurrent = false; // `device` holds `value`.

  /// Replaces the value; the device copy follows before the next run.
  void assign(TensorRef newValue) {
    value = std::move(newValue);
    initialized = true;
    deviceCurrent = false;
  }
};

/// What a session on a CUDA device holds besides its state slots.
struct CudaSessionState {
  std::shared_ptr<cuda::Device> device;
  std::shared_ptr<cuda::Module> module;
  // Serialises bringing stale slots to the device among concurrent runs
  // (which hold the session's lock shared).
  std::mutex uploadMutex;
};

} // namespace moert::detail

struct moe_session {
  std::atomic<int32_t> refs{1};
  moert::detail::ModelRef model;
  std::unique_ptr<moert::detail::ThreadPool> pool;
  moe_device device = MOE_DEVICE_CPU;
  int32_t ordinal = 0;
  std::string deviceDescription = "cpu";
  std::unique_ptr<moert::detail::CudaSessionState> cuda; // CUDA only.
  // Runs hold it shared (exclusive when they update optimizer state);
  // changing a parameter, in place or not, holds it exclusive.
  moert::detail::TurnstileSharedMutex mutex;
  // The list is fixed; values change. Declared after `cuda`, so device
  // buffers are freed before the device goes.
  std::vector<moert::detail::StateSlot> states;

  moert::detail::StateSlot *findState(std::string_view name) {
    for (moert::detail::StateSlot &slot : states)
      if (slot.decl->name == name)
        return &slot;
    return nullptr;
  }
};

namespace moert::detail {
struct SessionReleaser {
  void operator()(moe_session *session) const { moe_session_release(session); }
};
using SessionRef = std::unique_ptr<moe_session, SessionReleaser>;
} // namespace moert::detail

#endif // MOERT_RUNTIME_SESSION_H
