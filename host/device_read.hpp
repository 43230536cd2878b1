/// @file device_read.hpp
/// @brief The host's side of `kernels/device_csv.cuh`: its tables from the reference tables, its
/// line layout from a file's header, and a text's lines read ahead by it (on the GPU, or on the
/// host where tests check the builder that takes them).
#pragma once

#include "../kernels/device_csv.cuh"
#include "csv.hpp"

#include <capledger/reference.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace capledger::detail {

/// @return the device's copy of @p countries and the known chips of @p chips; nullopt where they
/// do not fit it (a country code that is not two letters, more than `max_chips` chips or a
/// longer key): the host then reads every line.
[[nodiscard]] std::optional<device_csv::tables> make_device_tables(const country_table& countries,
                                                                   const chip_table& chips);

/// @return where @p header puts each column; `field_count` 0 (no line for the device) where the
/// header has more than `device_csv::max_fields` fields or ends with a comma.
/// @throw parse_error as `csv_header::find` (a column named twice)
[[nodiscard]] device_csv::line_layout make_line_layout(const csv_header& header);

/// @brief The plain lines among those that start in bytes [from, to) of a text (a line ends at
/// each `\n`, the last one at `\n` or the text's end, so it may run past `to`), as
/// `device_csv::read_plain_line` read them, in text order; a line not listed is the host's. Only
/// plain lines: a log of blank or short lines would otherwise hold about 100 bytes a byte of text.
/// Spans' offsets count from `from`.
struct lines_read_ahead {
  std::size_t from = 0;
  std::vector<std::uint32_t> line_start;       ///< plain line k starts at `from + line_start[k]`
  std::vector<device_csv::plain_line> values;  ///< its values
  [[nodiscard]] std::size_t size() const noexcept { return line_start.size(); }
  void clear() noexcept
  {
    line_start.clear();
    values.clear();
  }
};

/// @brief Reads ahead the plain lines of @p text that start in [@p from, @p to) (@p from a line start)
/// on this core, up to the first that ends 4 GiB or more after @p from (that one and those after
/// it are the host's): what `gpu_line_reader::read` computes, for tests and for machines without one.
void read_ahead_on_host(std::string_view text, std::size_t from, std::size_t to,
                        const device_csv::line_layout& layout, const device_csv::tables& tables,
                        lines_read_ahead& out);

/// @brief Appends to @p out, read on this core, the plain lines of @p text that start in
/// [@p begin, @p to) (@p begin a line start at or after `out.from`), up to the first that ends
/// 4 GiB or more after `out.from`:
/// `read_ahead_on_host` is this from `from` on an empty @p out. For a GPU reader's chunks that are
/// better read here.
void append_read_on_host(std::string_view text, std::size_t begin, std::size_t to,
                         const device_csv::line_layout& layout, const device_csv::tables& tables,
                         lines_read_ahead& out);

/// @brief Whole lines of a read-ahead range, the unit a `gpu_line_reader` reads at once.
struct line_chunk {
  std::size_t begin = 0;  ///< a line start of the range
  std::size_t end   = 0;  ///< one past its last line's `\n` (or the text's end, where it has none)
  /// false: read on the host: one line longer than a chunk, or the range's lines from the first
  /// that ends past the 32-bit offsets of `lines_read_ahead` on (none of which is listed)
  bool on_device = true;
};

/// @brief Cuts the lines that start in [@p from, @p to) of @p text (as `read_ahead_on_host`
/// reads them) into chunks of whole lines of at most @p chunk_bytes bytes each, cut after the
/// last `\n` that fits; a line that does not fit in a chunk of its own is a chunk of one line,
/// read on the host, and so are, as one last chunk, the lines from the first that ends 4 GiB or
/// more after @p from on (a range is that long only where one of its lines nearly is). The chunks
/// follow each other without a gap: the first begins at @p from, the last ends where the range's
/// last line does. None for an empty range.
/// @throw logic_error when @p chunk_bytes is 0 or above `max_gpu_chunk_bytes`
[[nodiscard]] std::vector<line_chunk> cut_at_line_starts(std::string_view text, std::size_t from,
                                                         std::size_t to, std::size_t chunk_bytes);

/// The chunk size of `make_gpu_line_reader`: large enough that a chunk's copies and kernels
/// dwarf their launch costs, small enough that two in flight leave the GPU its memory.
inline constexpr std::size_t default_gpu_chunk_bytes = std::size_t{64} << 20;
/// Chunks are read with 32-bit positions, and CUB's selection counts its items in an `int`.
inline constexpr std::size_t max_gpu_chunk_bytes = std::size_t{1} << 30;

/// @brief Reads lines ahead on a GPU (kernels/gpu_ingest.cu): the bytes go to the device in
/// pinned, double-buffered chunks on streams, where lines are split and read while the next
/// chunk is copied; the lines' values come back.
class gpu_line_reader {
 public:
  virtual ~gpu_line_reader() = default;
  /// @brief What `read_ahead_on_host` gives for the same arguments, computed on the GPU.
  /// @throw device_error on any GPU failure
  virtual void read(std::string_view text, std::size_t from, std::size_t to,
                    const device_csv::line_layout& layout, lines_read_ahead& out) = 0;
};

/// @brief A reader on the current GPU, holding @p tables there.
/// @param chunk_bytes the most text one chunk carries to the device (`cut_at_line_starts`); tests
/// make it tiny to put lines at and across chunk seams
/// @throw logic_error when @p chunk_bytes is 0 or above `max_gpu_chunk_bytes`
/// @throw device_error without CUDA or a usable GPU
[[nodiscard]] std::unique_ptr<gpu_line_reader> make_gpu_line_reader(
    const device_csv::tables& tables, std::size_t chunk_bytes = default_gpu_chunk_bytes);

/// @brief Lines read ahead on the GPU until it fails, then by no one (every line the parsing
/// threads'): a GPU that fails while a log is read costs time, not the report. What failed is
/// kept for a note. `read` is `ingest_options::read_ahead`'s work (one thread at a time). Host
/// memory short for the results (`std::bad_alloc`: pinned staging fell back to pageable memory
/// that is not there either) counts as the GPU failing.
class gpu_read_ahead {
 public:
  explicit gpu_read_ahead(std::unique_ptr<gpu_line_reader> reader) : reader_(std::move(reader)) {}
  void read(std::string_view text, std::size_t from, std::size_t to, const device_csv::line_layout& layout,
            lines_read_ahead& out);
  /// @brief The GPU's error, once it failed (the lines from that window on were the host's).
  [[nodiscard]] std::optional<std::string> failure() const;
  /// @brief Lets the reader go (its device buffers and pinned staging) once the log is read, so
  /// the GPU aggregation sizes its passes without them; a later `read` reads nothing ahead.
  void release();

 private:
  std::unique_ptr<gpu_line_reader> reader_;
  mutable std::mutex mutex_;
  std::optional<std::string> failure_;
};

}  // namespace capledger::detail
