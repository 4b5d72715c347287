//===- Session.h - The state a session holds ------------------------------===//
#ifndef MOERT_RUNTIME_SESSION_H
#define MOERT_RUNTIME_SESSION_H

#include "Model.h"
#include "Tensor.h"
#include "ThreadPool.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
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

/// A parameter or optimizer-state tensor the session holds.
struct StateSlot {
  const ArgDesc *decl;
  TensorRef value;
  bool initialized;
};

} // namespace moert::detail

struct moe_session {
  std::atomic<int32_t> refs{1};
  moert::detail::ModelRef model;
  std::unique_ptr<moert::detail::ThreadPool> pool;
  // Runs hold it shared (exclusive when they update optimizer state);
  // changing a parameter, in place or not, holds it exclusive.
  moert::detail::TurnstileSharedMutex mutex;
  // The list is fixed; values change.
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
