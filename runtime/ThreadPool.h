//===- ThreadPool.h - The workers behind the parallel_for service ---------===//
#ifndef MOERT_RUNTIME_THREADPOOL_H
#define MOERT_RUNTIME_THREADPOOL_H

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace moert::detail {

/// A fixed set of threads running parallel_for jobs. The calling thread
/// works on its own job too, so a pool of N threads has N-1 workers, and
/// several threads (concurrent runs) may submit jobs at once.
class ThreadPool {
public:
  using Body = void (*)(void *closure, int64_t begin, int64_t end);

  explicit ThreadPool(int32_t numThreads);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int32_t size() const { return numThreads; }
  /// Runs body over disjoint chunks covering [0, iterations); returns when
  /// all are done.
  void parallelFor(int64_t iterations, Body body, void *closure);

  /// CPUs this process may run on.
  static int32_t defaultSize();

private:
  struct Job;
  void stop();
  void workerLoop();
  /// Runs chunks of `job` until none is left; then records them as done.
  void work(const std::shared_ptr<Job> &job);

  int32_t numThreads;
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::shared_ptr<Job>> queue; // Jobs with chunks left.
  bool stopping = false;
  std::vector<std::thread> workers;
};

} // namespace moert::detail

#endif // MOERT_RUNTIME_THREADPOOL_H
