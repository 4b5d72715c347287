//===- ThreadPool.cpp - The workers behind the parallel_for service -------===//

#include "ThreadPool.h"

#include <algorithm>
#include <atomic>
#include <sched.h>

namespace moert::detail {

struct ThreadPool::Job {
  Body body;
  void *closure;
  int64_t iterations, chunkSize, numChunks;
  std::atomic<int64_t> next{0};
  int64_t done = 0; // Guarded by the pool mutex.
  std::condition_variable finished;
};

ThreadPool::ThreadPool(int32_t numThreads) : numThreads(numThreads) {
  try {
    for (int32_t i = 1; i < numThreads; ++i)
      workers.emplace_back([this] { workerLoop(); });
  } catch (...) {
    stop(); // The destructor will not run: join the workers started so far.
    throw;
  }
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  wake.notify_all();
  for (std::thread &worker : workers)
    worker.join();
}

int32_t ThreadPool::defaultSize() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

void ThreadPool::work(const std::shared_ptr<Job> &job) {
  int64_t count = 0;
  for (int64_t chunk; (chunk = job->next.fetch_add(1)) < job->numChunks;
       ++count) {
    int64_t begin = chunk * job->chunkSize;
    job->body(job->closure, begin,
              std::min(job->iterations, begin + job->chunkSize));
  }
  std::lock_guard<std::mutex> lock(mutex);
  // Every chunk is claimed: no thread should pick the job up again.
  auto it = std::find(queue.begin(), queue.end(), job);
  if (it != queue.end())
    queue.erase(it);
  job->done += count;
  if (job->done == job->numChunks)
    job->finished.notify_all();
}

void ThreadPool::workerLoop() {
  std::unique_lock<std::mutex> lock(mutex);
  while (true) {
    wake.wait(lock, [this] { return stopping || !queue.empty(); });
    if (stopping)
      return;
    std::shared_ptr<Job> job = queue.front();
    lock.unlock();
    work(job);
    lock.lock();
  }
}

void ThreadPool::parallelFor(int64_t iterations, Body body, void *closure) {
  if (iterations <= 0)
    return;
  // A few chunks per thread balance uneven chunks without much overhead.
  int64_t numChunks = std::min<int64_t>(iterations, int64_t(numThreads) * 4);
  if (workers.empty() || numChunks == 1) {
    body(closure, 0, iterations);
    return;
  }
  auto job = std::make_shared<Job>();
  job->body = body;
  job->closure = closure;
  job->iterations = iterations;
  job->chunkSize = (iterations + numChunks - 1) / numChunks;
  job->numChunks = (iterations + job->chunkSize - 1) / job->chunkSize;
  {
    std::lock_guard<std::mutex> lock(mutex);
    queue.push_back(job);
  }
  wake.notify_all();
  work(job);
  std::unique_lock<std::mutex> lock(mutex);
  job->finished.wait(lock, [&] { return job->done == job->numChunks; });
}

} // namespace moert::detail
