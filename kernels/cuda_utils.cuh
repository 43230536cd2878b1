/// @file cuda_utils.cuh
/// @brief Error checking, RAII streams and stream-ordered device buffers for the CUDA backend.
#pragma once

#include <capledger/backend.hpp>
#include <capledger/error.hpp>

#include "file_io.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace capledger::detail {

/// @brief Throws `device_error` for a failed CUDA call, naming the call site and the CUDA error:
/// `gpu_memory_short` when the GPU ran out of memory (another process may have taken it), which
/// `--backend auto` answers by reporting on the CPU.
///
/// It also resets the runtime's last error: a failed call (an out-of-memory `cudaMallocAsync`, say)
/// records its error for `cudaGetLastError`, which the next `CAPLEDGER_CHECK_LAUNCH` and CUB (whose
/// `CubDebug` reads it after every call) would otherwise report as their own, failing the next
/// aggregation on this host thread. Sticky errors (a broken context) are reported again by the next
/// call whatever this does.
[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* what, const char* where)
{
  static_cast<void>(cudaGetLastError());
  const std::string message = std::string(where) + ": " + what + " failed: " + cudaGetErrorName(status) + ": " +
                              cudaGetErrorString(status);
  if (status == cudaErrorMemoryAllocation) { throw gpu_memory_short(message); }
  throw device_error(message);
}

}  // namespace capledger::detail

/// @brief "file:line" of the expansion site, as a string literal.
#define CAPLEDGER_HERE __FILE__ ":" CAPLEDGER_STRINGIFY(__LINE__)

/// @brief Evaluates a CUDA runtime call and throws `capledger::device_error` (with file:line and the
/// CUDA error string) unless it returned `cudaSuccess`.
#define CAPLEDGER_CUDA_TRY(call)                                                            \
  do {                                                                                      \
    const cudaError_t capledger_cuda_status_ = (call);                                      \
    if (capledger_cuda_status_ != cudaSuccess) {                                            \
      ::capledger::detail::throw_cuda_error(capledger_cuda_status_, #call, CAPLEDGER_HERE); \
    }                                                                                       \
  } while (0)

/// @brief Checks the launch that just happened (bad configuration, missing kernel image, ...).
/// Errors raised while the kernel runs surface at the next synchronizing call, which is checked too.
#define CAPLEDGER_CHECK_LAUNCH() CAPLEDGER_CUDA_TRY(cudaGetLastError())

namespace capledger::detail {

/// @brief An owned CUDA stream; every aggregate call runs on its own one.
class cuda_stream {
 public:
  cuda_stream() { CAPLEDGER_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~cuda_stream()
  {
    // Waits for the work queued on it first. Destroying a stream with work in flight is legal, but
    // that work may read memory owned elsewhere and freed in another stream's order: when an
    // aggregation throws (an allocation failing, say) while its kernels still run, the caller then
    // frees the resident columns on their own stream, which does not wait for this one, and the
    // pool may reuse or unmap them under the running kernels. Failures here cannot be reported from
    // a destructor; sticky ones surface at the next checked call, and none is left behind.
    if (stream_ != nullptr) {
      if (cudaStreamSynchronize(stream_) != cudaSuccess) { static_cast<void>(cudaGetLastError()); }
      static_cast<void>(cudaStreamDestroy(stream_));
    }
  }
  cuda_stream(const cuda_stream&)            = delete;
  cuda_stream& operator=(const cuda_stream&) = delete;

  [[nodiscard]] cudaStream_t get() const noexcept { return stream_; }
  /// @brief Waits for all work queued so far; the only way results reach the host.
  void synchronize() const { CAPLEDGER_CUDA_TRY(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

/// @brief A CUDA event for timing, or waiting for, work on a stream (RAII).
class cuda_event {
 public:
  /// @param flags `cudaEventCreateWithFlags`'s: e.g. `cudaEventBlockingSync` for a host thread
  /// that waits on it and should leave its core to others meanwhile
  explicit cuda_event(unsigned flags = cudaEventDefault) { CAPLEDGER_CUDA_TRY(cudaEventCreateWithFlags(&event_, flags)); }
  ~cuda_event()
  {
    if (event_ != nullptr) { static_cast<void>(cudaEventDestroy(event_)); }
  }
  cuda_event(const cuda_event&)            = delete;
  cuda_event& operator=(const cuda_event&) = delete;

  void record(cudaStream_t stream) { CAPLEDGER_CUDA_TRY(cudaEventRecord(event_, stream)); }
  /// @brief Waits until the work recorded before this event has run.
  void synchronize() const { CAPLEDGER_CUDA_TRY(cudaEventSynchronize(event_)); }
  /// @brief Milliseconds from @p start to this event; both recorded, this one completed.
  [[nodiscard]] double since(const cuda_event& start) const
  {
    float ms = 0;
    CAPLEDGER_CUDA_TRY(cudaEventElapsedTime(&ms, start.event_, event_));
    return ms;
  }

 private:
  cudaEvent_t event_ = nullptr;
};

/// @brief Events recorded at the end of each phase of a stream's work, read back as milliseconds
/// per phase; records nothing when off, so that untimed calls pay nothing.
class phase_clock {
 public:
  phase_clock(bool on, cudaStream_t stream) : on_(on), stream_(stream)
  {
    if (on_) { mark("start"); }
  }
  /// @brief Ends the phase called @p name here, on the stream.
  void mark(std::string name)
  {
    if (!on_) { return; }
    names_.push_back(std::move(name));
    events_.emplace_back(std::make_unique<cuda_event>());
    events_.back()->record(stream_);
  }
  /// @brief The phases' times; the stream must have passed the last mark.
  [[nodiscard]] gpu_timing read() const
  {
    gpu_timing timing;
    for (std::size_t i = 1; i < events_.size(); ++i) {
      timing.phase_ms.emplace_back(names_[i], events_[i]->since(*events_[i - 1]));
    }
    if (events_.size() > 1) { timing.total_ms = events_.back()->since(*events_.front()); }
    return timing;
  }

 private:
  bool on_;
  cudaStream_t stream_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<cuda_event>> events_;
};

/// @brief The current device's default memory pool, which every `cudaMallocAsync` here draws on.
[[nodiscard]] inline cudaMemPool_t default_pool()
{
  int device = 0;
  CAPLEDGER_CUDA_TRY(cudaGetDevice(&device));
  cudaMemPool_t pool = nullptr;
  CAPLEDGER_CUDA_TRY(cudaDeviceGetDefaultMemPool(&pool, device));
  return pool;
}

/// @brief Keeps memory freed by stream-ordered frees in the device's default pool while it lives,
/// then trims the pool. The pool's default release threshold (0) hands freed memory back to the
/// driver at every synchronization, and the next large allocation maps it again: an aggregation
/// that synchronizes between its stages would pay that on every stage. The threshold is the
/// device's, so aggregations running at once on several host threads would restore it early
/// (costing time, not correctness); capledger runs one at a time.
class pool_retention {
 public:
  pool_retention() : pool_(default_pool())
  {
    CAPLEDGER_CUDA_TRY(cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &threshold_));
    std::uint64_t keep_all = UINT64_MAX;
    CAPLEDGER_CUDA_TRY(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep_all));
  }
  ~pool_retention()
  {
    // Failures here would only leave memory cached; the next checked call reports a broken context.
    static_cast<void>(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &threshold_));
    static_cast<void>(cudaMemPoolTrimTo(pool_, 0));
  }
  pool_retention(const pool_retention&)            = delete;
  pool_retention& operator=(const pool_retention&) = delete;

 private:
  cudaMemPool_t pool_     = nullptr;
  std::uint64_t threshold_ = 0;
};

/// @brief Returns what the default pool holds unused to the device (call once its frees have run).
inline void release_pooled_memory() { CAPLEDGER_CUDA_TRY(cudaMemPoolTrimTo(default_pool(), 0)); }

/// @brief Uninitialized device memory for @p size elements of T, allocated and freed in the order
/// of one stream (`cudaMallocAsync`), so that freeing a temporary never stalls the device as
/// `cudaFree` would.
template <typename T>
class device_buffer {
 public:
  device_buffer() = default;
  device_buffer(std::size_t size, cudaStream_t stream) : stream_(stream)
  {
    if (size > 0) {
      CAPLEDGER_CUDA_TRY(cudaMallocAsync(reinterpret_cast<void**>(&data_), size * sizeof(T), stream));
      size_ = size;
    }
  }
  ~device_buffer() { release(); }
  device_buffer(const device_buffer&)            = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& other) noexcept { swap(other); }
  device_buffer& operator=(device_buffer&& other) noexcept
  {
    if (this != &other) {
      release();
      swap(other);
    }
    return *this;
  }

  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t bytes() const noexcept { return size_ * sizeof(T); }

  /// @brief Frees the memory now (stream-ordered), e.g. once a pipeline stage is done with it.
  void release() noexcept
  {
    if (data_ != nullptr) {
      // Stream-ordered free: it cannot fail for a pointer we allocated unless the context is
      // already broken, and the next checked call reports that.
      static_cast<void>(cudaFreeAsync(data_, stream_));
      data_ = nullptr;
      size_ = 0;
    }
  }

  void swap(device_buffer& other) noexcept
  {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(stream_, other.stream_);
  }

 private:
  T* data_             = nullptr;
  std::size_t size_    = 0;
  cudaStream_t stream_ = nullptr;
};

/// @brief A zero-filled device buffer.
template <typename T>
[[nodiscard]] device_buffer<T> zeroed_device_buffer(std::size_t count, cudaStream_t stream)
{
  device_buffer<T> buffer(count, stream);
  if (count > 0) { CAPLEDGER_CUDA_TRY(cudaMemsetAsync(buffer.data(), 0, buffer.bytes(), stream)); }
  return buffer;
}

/// @brief Page-locked host memory (RAII): what copies between host and device run at full speed
/// from and into. Empty (`data()` null) when the driver cannot lock that much: callers then copy
/// from pageable memory, slower but the same bytes.
class pinned_buffer {
 public:
  explicit pinned_buffer(std::size_t bytes)
  {
    if (cudaMallocHost(&data_, bytes) != cudaSuccess) {
      data_ = nullptr;
      static_cast<void>(cudaGetLastError());  // not sticky: leave no error behind
    }
  }
  ~pinned_buffer()
  {
    if (data_ != nullptr) { static_cast<void>(cudaFreeHost(data_)); }
  }
  pinned_buffer(const pinned_buffer&)            = delete;
  pinned_buffer& operator=(const pinned_buffer&) = delete;
  [[nodiscard]] void* data() const noexcept { return data_; }

 private:
  void* data_ = nullptr;
};

/// Copies of at least this many bytes go through pinned staging (`to_host`, `copy_to_device`),
/// in chunks of `staging_chunk_bytes`.
constexpr std::size_t staged_copy_bytes   = std::size_t{32} << 20;
constexpr std::size_t staging_chunk_bytes = std::size_t{16} << 20;

/// @brief Two pinned buffers of `staging_chunk_bytes`, used in turn; `usable()` when both exist.
struct staging_pair {
  pinned_buffer buffers[2]{pinned_buffer(staging_chunk_bytes), pinned_buffer(staging_chunk_bytes)};
  cuda_event done[2];  ///< recorded after the last copy that used each buffer
  [[nodiscard]] bool usable() const noexcept { return buffers[0].data() != nullptr && buffers[1].data() != nullptr; }
  [[nodiscard]] char* buffer(std::size_t chunk) const noexcept { return static_cast<char*>(buffers[chunk % 2].data()); }
};

/// @brief Staging for a copy of @p bytes: null when the copy is small enough to go directly, or
/// when the driver cannot lock the staging memory (the direct copy is slower, never wrong).
[[nodiscard]] inline std::unique_ptr<staging_pair> staging_for(std::size_t bytes)
{
  if (bytes < staged_copy_bytes) { return nullptr; }
  auto staging = std::make_unique<staging_pair>();
  return staging->usable() ? std::move(staging) : nullptr;
}

/// @brief Copies @p bytes of pageable host memory to the device, in @p stream's order; returns
/// once @p host may be changed again. Large copies go through two pinned buffers in turn, the
/// host filling one while the DMA of the other runs (pageable memory is copied at a fraction of
/// the bus's speed).
inline void copy_to_device(void* device, const void* host, std::size_t bytes, cudaStream_t stream)
{
  const auto staging = staging_for(bytes);
  if (!staging) {
    if (bytes > 0) { CAPLEDGER_CUDA_TRY(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream)); }
    return;
  }
  constexpr std::size_t chunk = staging_chunk_bytes;
  auto* to                    = static_cast<char*>(device);
  const auto* from            = static_cast<const char*>(host);
  const std::size_t chunks    = (bytes + chunk - 1) / chunk;
  for (std::size_t i = 0; i < chunks; ++i) {
    if (i >= 2) { staging->done[i % 2].synchronize(); }  // the DMA that read this buffer last is done
    const std::size_t size = std::min(chunk, bytes - i * chunk);
    std::memcpy(staging->buffer(i), from + i * chunk, size);
    CAPLEDGER_CUDA_TRY(cudaMemcpyAsync(to + i * chunk, staging->buffer(i), size, cudaMemcpyHostToDevice, stream));
    staging->done[i % 2].record(stream);
  }
  // The staging buffers are freed on return: their last copies must have run.
  staging->done[0].synchronize();
  if (chunks > 1) { staging->done[1].synchronize(); }
}

/// @brief Copies @p count host elements into a new device buffer (stream-ordered).
template <typename T>
[[nodiscard]] device_buffer<T> to_device(const T* host, std::size_t count, cudaStream_t stream)
{
  static_assert(std::is_trivially_copyable_v<T>, "to_device copies bytes");
  device_buffer<T> buffer(count, stream);
  copy_to_device(buffer.data(), host, count * sizeof(T), stream);
  return buffer;
}

template <typename T>
[[nodiscard]] device_buffer<T> to_device(const std::vector<T>& host, cudaStream_t stream)
{
  return to_device(host.data(), host.size(), stream);
}

/// @brief Copies @p count device elements to a new host vector; synchronizes @p stream to do so.
/// A large copy straight into pageable memory runs at a few GB/s (the driver stages it a page at a
/// time), and a vector of that size is first zero-filled a page fault at a time: large copies here
/// go through two pinned buffers in turn (the DMA of one chunk running while the host appends the
/// other to the vector) into storage reserved, not zero-filled, and populated by several threads.
template <typename T>
[[nodiscard]] std::vector<T> to_host(const T* device, std::size_t count, cudaStream_t stream)
{
  static_assert(std::is_trivially_copyable_v<T>, "to_host copies bytes");
  std::vector<T> host;
  const auto staging = staging_for(count * sizeof(T));
  if (!staging) {
    host.resize(count);
    if (count > 0) {
      CAPLEDGER_CUDA_TRY(cudaMemcpyAsync(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost, stream));
    }
    CAPLEDGER_CUDA_TRY(cudaStreamSynchronize(stream));
    return host;
  }
  // Chunk i (whole elements) lands in buffer i % 2 and is appended once chunk i + 1 is on its way.
  const std::size_t per_chunk = staging_chunk_bytes / sizeof(T);
  const std::size_t chunks    = (count + per_chunk - 1) / per_chunk;
  auto send = [&](std::size_t i) {
    const std::size_t size = std::min(per_chunk, count - i * per_chunk);
    CAPLEDGER_CUDA_TRY(cudaMemcpyAsync(staging->buffer(i), device + i * per_chunk, size * sizeof(T),
                                       cudaMemcpyDeviceToHost, stream));
    staging->done[i % 2].record(stream);
  };
  send(0);
  host.reserve(count);
  populate_pages(host.data(), count * sizeof(T));
  for (std::size_t i = 0; i < chunks; ++i) {
    if (i + 1 < chunks) { send(i + 1); }
    staging->done[i % 2].synchronize();
    const auto* chunk = reinterpret_cast<const T*>(staging->buffer(i));
    host.insert(host.end(), chunk, chunk + std::min(per_chunk, count - i * per_chunk));
  }
  CAPLEDGER_CUDA_TRY(cudaStreamSynchronize(stream));
  return host;
}

/// @brief Reads one device value; synchronizes @p stream.
template <typename T>
[[nodiscard]] T read_scalar(const T* device, cudaStream_t stream)
{
  T value{};
  CAPLEDGER_CUDA_TRY(cudaMemcpyAsync(&value, device, sizeof(T), cudaMemcpyDeviceToHost, stream));
  CAPLEDGER_CUDA_TRY(cudaStreamSynchronize(stream));
  return value;
}

/// @brief Runs a CUB device algorithm with the usual two calls: a temporary-storage size query, then
/// the real run with freshly allocated stream-ordered scratch. @p where names the call site.
/// @param call `cudaError_t(void* d_temp_storage, std::size_t& temp_storage_bytes)`
template <typename CubCall>
void run_cub(const char* where, cudaStream_t stream, CubCall&& call)
{
  std::size_t temp_bytes = 0;
  cudaError_t status     = call(nullptr, temp_bytes);
  if (status != cudaSuccess) { throw_cuda_error(status, "CUB temporary storage query", where); }
  // Never hand CUB a null scratch pointer for the real run: it would take it for another size query
  // and silently do nothing.
  device_buffer<std::byte> temp(temp_bytes > 0 ? temp_bytes : 16, stream);
  status = call(temp.data(), temp_bytes);
  if (status != cudaSuccess) { throw_cuda_error(status, "CUB algorithm", where); }
  CAPLEDGER_CHECK_LAUNCH();
}

}  // namespace capledger::detail
