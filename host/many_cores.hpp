/// @file many_cores.hpp
/// @brief Whether the ingest runs its many-core pipeline, and the names of its threads.
#pragma once

#include <omp.h>
#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace capledger::detail {

/// From this many OpenMP threads (the host's cores by default) the ingest takes work off its
/// merge thread, the one serial stage: repeated ids are found by all threads, the SHA-256 runs on
/// a thread of its own, and so does the streamed report's aggregation. On the GPU hosts' 16
/// cores that made `report --backend cpu` 1.7-2.2x faster; on 2 cores the extra work and
/// threads cost 9-12% (bench/RESULTS.md, session 6). 3 to 15 threads were not measured.
constexpr int many_core_threads = 8;

inline bool many_cores()
{
  return omp_get_max_threads() >= many_core_threads;
}

/// Names the calling thread (at most 15 characters; `cl-` and its role) so that `top -H`, perf
/// and `bench/thread_times.py` can tell the pipeline's stages apart.
inline void name_this_thread(const char* name)
{
  pthread_setname_np(pthread_self(), name);
}

/// Starts threads running `work(k)` for k = @p first .. @p last - 1 into @p threads (reserved
/// first: no reallocation once one runs) until the system refuses one (`ulimit -u`, `-v`): never a
/// running thread destroyed (std::terminate). @return the k not started (@p last if all were).
template <typename Work>
std::size_t start_threads(std::vector<std::thread>& threads, std::size_t first, std::size_t last,
                          const Work& work)
{
  threads.reserve(threads.size() + (last > first ? last - first : 0));
  for (std::size_t k = first; k < last; ++k) {
    try {
      threads.emplace_back([work, k] { work(k); });  // a copy: the threads outlive the call
    } catch (const std::system_error&) {
      return k;
    }
  }
  return last;
}

/// Runs `work(take)` on up to @p threads threads, this one included (those the system refuses are
/// done without): `take(k)` sets k to the next of the items [0, @p count) no thread has taken and
/// returns false once none is left, so every item is worked on however many threads started. The
/// first exception stops the others after their current item and is rethrown once all are joined.
/// Threads of their own rather than OpenMP: libgomp ends the process with status 1 when the system
/// refuses a thread, OMP_THREAD_LIMIT gives fewer than asked, and ThreadSanitizer sees these joins.
/// @param name what the started threads are called (`name_this_thread`), or null
template <typename Work>
void share_items(std::size_t count, std::size_t threads, const char* name, const Work& work)
{
  std::atomic<std::size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  const auto run = [&] {
    try {
      work([&next, count](std::size_t& k) { return (k = next.fetch_add(1)) < count; });
    } catch (...) {
      const std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) { failure = std::current_exception(); }
      next = count;
    }
  };
  std::vector<std::thread> helpers;
  start_threads(helpers, 1, threads, [&run, name](std::size_t) {
    if (name != nullptr) { name_this_thread(name); }
    run();
  });
  run();
  for (auto& helper : helpers) { helper.join(); }
  if (failure) { std::rethrow_exception(failure); }
}

}  // namespace capledger::detail
