/// @file gpu_ingest.cu
/// @brief `make_gpu_line_reader` with CUDA: a text range's lines read by `device_csv::read_plain_line`
/// on the GPU, chunk by chunk, with exactly the vectors `read_ahead_on_host` gives.
///
/// The host cuts the range after `\n`s into chunks of whole lines (`cut_at_line_starts`), so no
/// line crosses a seam and a chunk is read with no state from the one before. Each chunk, on one
/// of two streams in turn (slot i % 2, each with its own pinned staging and device buffers):
///  1. the host copies its text into the slot's pinned buffer, and the DMA takes it to the device;
///  2. `cub::DeviceSelect::If` lists the chunk's `\n` positions (its line ends), and their count
///     comes back (pinned) to size the next steps;
///  3. `read_lines_kernel`, a thread a line, runs `read_plain_line` and writes the line's start,
///     plain flag and values, which come back (pinned) and are appended to the result; a chunk
///     of short lines (`min_bytes_a_line_on_device`) is read on the host instead.
/// The host waits for chunk i's count only after it has queued chunk i + 1's copy and selection on
/// the other stream, and appends chunk i's values while chunk i + 1's are read: the copy to the
/// device of one chunk runs beside the kernels and the copy back of the other.
///
/// Bytes a line of L bytes moves (its `\n` included): over the bus L to the device and 4 + 1 + 96
/// = 101 back (start, flag, `plain_line`); in device memory the selection reads L and writes 4, the
/// read kernel reads L + 8 and writes 101. The copy back dominates for lines under 101 bytes.
#include "cuda_utils.cuh"
#include "device_read.hpp"

#include <capledger/error.hpp>

#include <thrust/iterator/counting_iterator.h>
#include <cub/device/device_select.cuh>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace capledger::detail {
namespace {

constexpr int read_block_size = 256;

/// A chunk's results take 101 bytes a line (`results_layout`), so a chunk of blank or short lines
/// would ask pinned and device memory of many times its text (424 MB a slot for 4 MiB of blank
/// lines). A plain line holds at least 22 bytes (a date's 10, a country's 2, four more fields of
/// a byte, five commas and its `\n`): a chunk averaging under 16 bytes a line is mostly lines the
/// host reads anyway, and is read on the host, which gives the same vectors.
constexpr std::size_t min_bytes_a_line_on_device = 16;

/// The most lines a chunk of @p bytes is read on the device with: results are sized by it.
constexpr std::size_t max_device_lines(std::size_t bytes)
{
  return bytes / min_bytes_a_line_on_device + 1;
}

constexpr std::size_t table_words  = sizeof(device_csv::tables) / sizeof(std::uint32_t);
constexpr std::size_t layout_words = sizeof(device_csv::line_layout) / sizeof(std::uint32_t);
static_assert(sizeof(device_csv::tables) % sizeof(std::uint32_t) == 0 &&
                  sizeof(device_csv::line_layout) % sizeof(std::uint32_t) == 0,
              "the tables and the layout are staged in shared memory word by word");

/// Whether byte i of a chunk ends a line (CUB's selection operator).
struct is_line_end {
  const char* d_text;
  __device__ bool operator()(std::uint32_t i) const { return d_text[i] == '\n'; }
};

/// @brief Copies @p words 32-bit words from @p from to @p to with the whole block.
__device__ void block_copy(std::uint32_t* to, const std::uint32_t* from, std::size_t words)
{
  for (std::size_t i = threadIdx.x; i < words; i += blockDim.x) { to[i] = from[i]; }
}

/// @brief Reads the lines of one chunk, a thread a line: line k runs from the byte after line
/// k - 1's `\n` (0 for the first) to its own `\n` (@p d_line_end[k]), or to the chunk's end for a
/// last line without one (`line_count` = `newline_count` + 1 then).
///
/// The tables (3.6 KB) and the layout are staged in shared memory: threads index them by their
/// own line's country letters, chip and field numbers, which would serialize in constant memory.
/// Bytes: reads the chunk's text once (L a line, through L1: a warp's 32 lines are ~3 KB that its
/// threads walk byte by byte) and 8 of line ends; writes 4 + 1 + 96 = 101 a line.
/// @param chunk_offset where the chunk starts, counted from the read's `from`: added to the line
/// starts and the spans of plain lines, which the kernel reads from the chunk's own start
__global__ void __launch_bounds__(read_block_size)
    read_lines_kernel(const char* d_text, const std::uint32_t* d_line_end, std::uint32_t newline_count,
                      std::uint32_t line_count, std::uint32_t chunk_bytes, std::uint32_t chunk_offset,
                      const device_csv::tables* d_tables,
                      __grid_constant__ const device_csv::line_layout layout, std::uint32_t* d_line_start,
                      std::uint8_t* d_plain, device_csv::plain_line* d_values)
{
  // Aligned as the structs they hold (the tables' TPPs are 64-bit).
  __shared__ alignas(device_csv::tables) std::uint32_t s_tables_words[table_words];
  __shared__ alignas(device_csv::line_layout) std::uint32_t s_layout_words[layout_words];
  block_copy(s_tables_words, reinterpret_cast<const std::uint32_t*>(d_tables), table_words);
  block_copy(s_layout_words, reinterpret_cast<const std::uint32_t*>(&layout), layout_words);
  __syncthreads();
  const auto& tables       = *reinterpret_cast<const device_csv::tables*>(s_tables_words);
  const auto& block_layout = *reinterpret_cast<const device_csv::line_layout*>(s_layout_words);

  const std::uint32_t stride = gridDim.x * blockDim.x;
  for (std::uint32_t k = blockIdx.x * blockDim.x + threadIdx.x; k < line_count; k += stride) {
    const std::uint32_t begin = k == 0 ? 0 : d_line_end[k - 1] + 1;
    const std::uint32_t end   = k < newline_count ? d_line_end[k] : chunk_bytes;
    device_csv::plain_line line{};
    const bool plain = device_csv::read_plain_line(d_text, begin, end, block_layout, tables, line);
    if (plain) {  // spans count from the read's `from`, as the host's do
      line.id.offset += chunk_offset;
      line.entity.offset += chunk_offset;
      line.order.offset += chunk_offset;
      line.exporter.offset += chunk_offset;
    }
    d_line_start[k] = chunk_offset + begin;
    d_plain[k]      = plain ? 1 : 0;
    d_values[k]     = line;
  }
}

/// @brief Host memory the DMA reads or writes: pinned where the driver can lock it, pageable
/// otherwise (copies then wait for the host, slower but the same bytes). Grows, never shrinks.
class host_staging {
 public:
  /// @return room for @p bytes; what it held before is lost when it grows (by half, up to
  /// @p most: chunks cut at line ends differ by a few bytes, and a `cudaMallocHost` costs
  /// milliseconds)
  [[nodiscard]] char* reserve(std::size_t bytes, std::size_t most)
  {
    if (bytes > capacity_) {
      bytes = std::max(bytes, std::min(capacity_ + capacity_ / 2, most));
      // Empty first: an allocation that throws must not leave `data_` at the memory freed here,
      // which the next read would fill.
      data_     = nullptr;
      capacity_ = 0;
      pinned_.reset();
      pageable_.reset();
      pinned_ = std::make_unique<pinned_buffer>(bytes);
      data_   = static_cast<char*>(pinned_->data());
      if (data_ == nullptr) {
        pinned_.reset();
        pageable_ = std::make_unique<char[]>(bytes);
        data_     = pageable_.get();
      }
      capacity_ = bytes;
    }
    return data_;
  }
  [[nodiscard]] char* data() const noexcept { return data_; }

 private:
  std::unique_ptr<pinned_buffer> pinned_;
  std::unique_ptr<char[]> pageable_;
  char* data_           = nullptr;
  std::size_t capacity_ = 0;
};

/// @brief Makes @p buffer hold at least @p count elements (its contents are not kept), growing by
/// half, up to @p most, as `host_staging::reserve`.
template <typename T>
void grow(device_buffer<T>& buffer, std::size_t count, std::size_t most, cudaStream_t stream)
{
  if (buffer.size() < count) {
    buffer = device_buffer<T>(std::max(count, std::min(buffer.size() + buffer.size() / 2, most)), stream);
  }
}

/// @brief What one chunk in flight holds: a stream and the buffers of its steps.
struct chunk_slot {
  cuda_stream stream;  // declared first: destroyed last, after the buffers freed on it
  // Waited for by the read-ahead thread, which yields its core meanwhile (the parsing threads'
  // core; the default event spins).
  cuda_event count_ready{cudaEventBlockingSync | cudaEventDisableTiming};
  cuda_event results_ready{cudaEventBlockingSync | cudaEventDisableTiming};
  host_staging text;     ///< the chunk's text, read by the copy to the device
  host_staging results;  ///< line starts, plain flags and values, written by the copy back
  host_staging count;    ///< the number of `\n`s
  device_buffer<char> d_text;
  device_buffer<std::uint32_t> d_line_end;
  device_buffer<std::uint32_t> d_count;
  device_buffer<std::byte> d_select_temp;
  device_buffer<std::uint32_t> d_line_start;
  device_buffer<std::uint8_t> d_plain;
  device_buffer<device_csv::plain_line> d_values;
  line_chunk chunk;
  std::uint32_t lines = 0;
};

/// Where a chunk's results lie in its slot's `results` staging: values first (8-byte aligned).
struct results_layout {
  std::size_t values = 0, line_start = 0, plain = 0, bytes = 0;
  explicit results_layout(std::size_t lines)
      : line_start(lines * sizeof(device_csv::plain_line)),
        plain(line_start + lines * sizeof(std::uint32_t)),
        bytes(plain + lines)
  {
  }
};

class cuda_line_reader final : public gpu_line_reader {
 public:
  cuda_line_reader(const device_csv::tables& tables, std::size_t chunk_bytes)
      : chunk_bytes_(chunk_bytes), tables_(tables)
  {
    CAPLEDGER_CUDA_TRY(cudaGetDevice(&device_));
    CAPLEDGER_CUDA_TRY(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device_));
    d_tables_ = to_device(&tables, 1, slots_[0].stream.get());
    // Both streams read the tables: the copy must be done before either runs a kernel.
    slots_[0].stream.synchronize();
  }
  cuda_line_reader(const cuda_line_reader&)            = delete;
  cuda_line_reader& operator=(const cuda_line_reader&) = delete;
  ~cuda_line_reader() override
  {
    // A read that threw may have left work queued on either stream: a kernel on slot 1's stream
    // reads `d_tables_`, freed first and on slot 0's stream, and copies read or write the slots'
    // pinned staging, freed before their own stream is waited for. Errors cannot be reported here.
    for (const chunk_slot& slot : slots_) {
      if (cudaStreamSynchronize(slot.stream.get()) != cudaSuccess) { static_cast<void>(cudaGetLastError()); }
    }
  }

  void read(std::string_view text, std::size_t from, std::size_t to, const device_csv::line_layout& layout,
            lines_read_ahead& out) override
  {
    // The calling thread (a read-ahead thread) has its own current device: the reader's, here.
    CAPLEDGER_CUDA_TRY(cudaSetDevice(device_));
    // A read that threw may have left copies in flight into the buffers reused here.
    for (const chunk_slot& slot : slots_) { slot.stream.synchronize(); }
    out.clear();
    out.from          = from;
    const auto chunks = cut_at_line_starts(text, from, to, chunk_bytes_);
    if (chunks.empty()) { return; }
    const std::size_t range_bytes = chunks.back().end - from;
    // Chunk i + 1's copy and selection are queued before chunk i's results are waited for.
    chunk_slot* in_flight = nullptr;
    std::size_t next_slot = 0;
    for (const line_chunk& chunk : chunks) {
      if (!chunk.on_device) {
        if (in_flight != nullptr) { append(*in_flight, out, range_bytes); }
        in_flight = nullptr;
        append_read_on_host(text, chunk.begin, chunk.end, layout, tables_, out);
        continue;
      }
      chunk_slot& slot = slots_[next_slot];
      next_slot ^= 1;
      send_and_split(text, chunk, slot);
      if (in_flight != nullptr) { append(*in_flight, out, range_bytes); }
      in_flight = read_lines(text, from, layout, slot, out) ? &slot : nullptr;
    }
    if (in_flight != nullptr) { append(*in_flight, out, range_bytes); }
  }

 private:
  /// Steps 1 and 2 of a chunk: its text to the device, its `\n`s listed, their count on its way back.
  void send_and_split(std::string_view text, const line_chunk& chunk, chunk_slot& slot)
  {
    const cudaStream_t stream = slot.stream.get();
    const std::size_t bytes   = chunk.end - chunk.begin;
    slot.chunk                = chunk;
    // The slot's last chunk was appended: its staging and buffers are free.
    char* staged = slot.text.reserve(bytes, chunk_bytes_);
    std::memcpy(staged, text.data() + chunk.begin, bytes);
    grow(slot.d_text, bytes, chunk_bytes_, stream);
    CAPLEDGER_CUDA_TRY(cudaMemcpyAsync(slot.d_text.data(), staged, bytes, cudaMemcpyHostToDevice, stream));
    grow(slot.d_line_end, bytes, chunk_bytes_, stream);
    grow(slot.d_count, 1, 1, stream);
    // The selection: reads the chunk (bytes), writes 4 bytes a line end.
    const auto items = static_cast<std::int64_t>(bytes);
    const thrust::counting_iterator<std::uint32_t> positions(0);
    const is_line_end line_end{slot.d_text.data()};
    std::size_t temp_bytes = 0;
    CAPLEDGER_CUDA_TRY(cub::DeviceSelect::If(nullptr, temp_bytes, positions, slot.d_line_end.data(),
                                             slot.d_count.data(), items, line_end, stream));
    grow(slot.d_select_temp, std::max<std::size_t>(temp_bytes, 16), temp_bytes, stream);
    temp_bytes = slot.d_select_temp.size();
    CAPLEDGER_CUDA_TRY(cub::DeviceSelect::If(slot.d_select_temp.data(), temp_bytes, positions,
                                             slot.d_line_end.data(), slot.d_count.data(), items, line_end,
                                             stream));
    CAPLEDGER_CHECK_LAUNCH();
    char* count = slot.count.reserve(sizeof(std::uint32_t), sizeof(std::uint32_t));
    CAPLEDGER_CUDA_TRY(
        cudaMemcpyAsync(count, slot.d_count.data(), sizeof(std::uint32_t), cudaMemcpyDeviceToHost, stream));
    slot.count_ready.record(stream);
    // `staged` may be refilled only once the copy has read it; the slot's next use comes after
    // this chunk's results are in, which follow the copy in the stream's order.
  }

  /// Step 3: waits for the chunk's line count, reads its lines and queues their copy back, or,
  /// for a chunk of short lines, reads them here and appends them to @p out.
  /// @return whether the device reads them (their results are then to be appended)
  bool read_lines(std::string_view text, std::size_t from, const device_csv::line_layout& layout,
                  chunk_slot& slot, lines_read_ahead& out)
  {
    const cudaStream_t stream = slot.stream.get();
    const std::size_t bytes   = slot.chunk.end - slot.chunk.begin;
    slot.count_ready.synchronize();
    std::uint32_t newlines = 0;
    std::memcpy(&newlines, slot.count.data(), sizeof newlines);
    // Every chunk but the text's last ends with a `\n`; a last line without one is a line too.
    slot.lines              = newlines + (ends_with_newline(slot) ? 0 : 1);
    const std::size_t lines = slot.lines;
    if (lines > max_device_lines(bytes)) {
      append_read_on_host(text, slot.chunk.begin, slot.chunk.end, layout, tables_, out);
      return false;
    }
    const std::size_t most_lines = max_device_lines(chunk_bytes_);
    grow(slot.d_line_start, lines, most_lines, stream);
    grow(slot.d_plain, lines, most_lines, stream);
    grow(slot.d_values, lines, most_lines, stream);
    const auto offset = static_cast<std::uint32_t>(slot.chunk.begin - from);
    const std::int64_t needed_blocks =
        (static_cast<std::int64_t>(lines) + read_block_size - 1) / read_block_size;
    const int blocks = static_cast<int>(std::min<std::int64_t>(needed_blocks, std::int64_t{sm_count_} * 8));
    read_lines_kernel<<<blocks, read_block_size, 0, stream>>>(
        slot.d_text.data(), slot.d_line_end.data(), newlines, slot.lines, static_cast<std::uint32_t>(bytes),
        offset, d_tables_.data(), layout, slot.d_line_start.data(), slot.d_plain.data(),
        slot.d_values.data());
    CAPLEDGER_CHECK_LAUNCH();
    const results_layout at(lines);
    char* results = slot.results.reserve(at.bytes, results_layout(most_lines).bytes);
    CAPLEDGER_CUDA_TRY(cudaMemcpyAsync(results + at.values, slot.d_values.data(),
                                       lines * sizeof(device_csv::plain_line), cudaMemcpyDeviceToHost,
                                       stream));
    CAPLEDGER_CUDA_TRY(cudaMemcpyAsync(results + at.line_start, slot.d_line_start.data(),
                                       lines * sizeof(std::uint32_t), cudaMemcpyDeviceToHost, stream));
    CAPLEDGER_CUDA_TRY(
        cudaMemcpyAsync(results + at.plain, slot.d_plain.data(), lines, cudaMemcpyDeviceToHost, stream));
    slot.results_ready.record(stream);
    return true;
  }

  /// Whether the chunk's last byte, still in its staging, is a `\n`.
  [[nodiscard]] static bool ends_with_newline(const chunk_slot& slot)
  {
    return slot.text.data()[slot.chunk.end - slot.chunk.begin - 1] == '\n';
  }

  /// Waits for a chunk's results and appends them to @p out.
  /// @param range_bytes the bytes of the read's lines, for the first guess of their number
  static void append(chunk_slot& slot, lines_read_ahead& out, std::size_t range_bytes)
  {
    slot.results_ready.synchronize();
    const std::size_t lines = slot.lines;
    if (out.line_start.capacity() == 0 && lines > 0) {
      // The first chunk's lines per byte, for the whole range: one allocation, not log2(lines).
      // Not more than a line in 32 bytes, though, whatever the first chunk says (a chunk of empty
      // lines): a guess short of the lines costs the vectors' doubling, one far over them memory.
      const auto per_byte =
          static_cast<double>(lines) / static_cast<double>(slot.chunk.end - slot.chunk.begin);
      const std::size_t guess =
          std::min(static_cast<std::size_t>(per_byte * static_cast<double>(range_bytes) * 1.02) + 1,
                   range_bytes / 32 + lines);
      out.line_start.reserve(guess);
      out.values.reserve(guess);
    }
    // Only the plain lines are kept (`lines_read_ahead`): the others are the host's.
    const results_layout at(lines);
    const char* results = slot.results.data();
    const auto* values  = reinterpret_cast<const device_csv::plain_line*>(results + at.values);
    const auto* starts  = reinterpret_cast<const std::uint32_t*>(results + at.line_start);
    const auto* plain   = reinterpret_cast<const std::uint8_t*>(results + at.plain);
    for (std::size_t k = 0; k < lines; ++k) {
      if (plain[k] == 0) { continue; }
      out.line_start.push_back(starts[k]);
      out.values.push_back(values[k]);
    }
  }

  std::size_t chunk_bytes_;
  int device_   = 0;
  int sm_count_ = 1;
  device_csv::tables tables_;  ///< for the chunks read on the host
  chunk_slot slots_[2];
  device_buffer<device_csv::tables> d_tables_;  ///< freed on slot 0's stream: declared after it
};

}  // namespace

std::unique_ptr<gpu_line_reader> make_gpu_line_reader(const device_csv::tables& tables,
                                                      std::size_t chunk_bytes)
{
  CAPLEDGER_EXPECTS(chunk_bytes > 0 && chunk_bytes <= max_gpu_chunk_bytes,
                    "a GPU line reader's chunk holds 1 byte to max_gpu_chunk_bytes");
  std::string why;
  if (!gpu_available(&why)) { throw device_error("the GPU line reader is not usable: " + why); }
  return std::make_unique<cuda_line_reader>(tables, chunk_bytes);
}

}  // namespace capledger::detail
