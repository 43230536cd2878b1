/// @file external_id_check.hpp
/// @brief Repeated shipment ids found out of memory, for logs whose id set would not fit.
#pragma once

#include "file_io.hpp"

#include <capledger/shipments.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace capledger::detail {

/// @brief The repeats `external_id_check::repeats` found, read in increasing order of the repeat's
/// offset (`ingest_options::repeated_ids`): a sorted list in memory, or, where they were more than
/// its memory budget, sorted runs in a temporary file (gone with the stream) merged as they are
/// read, the last run still in memory. Memory: the budget, and as much again for the runs' read
/// buffers at most.
class repeat_stream final : public repeated_id_cursor {
 public:
  using repeat    = std::pair<std::uint64_t, std::uint64_t>;  ///< (offset of a repeat, of its first use)
  repeat_stream() = default;                                  ///< no repeats
  /// @param sorted every repeat, sorted
  explicit repeat_stream(std::vector<repeat> sorted);
  repeat_stream(repeat_stream&&) noexcept            = default;
  repeat_stream& operator=(repeat_stream&&) noexcept = default;
  repeat_stream(const repeat_stream&)                = delete;
  repeat_stream& operator=(const repeat_stream&)     = delete;

  [[nodiscard]] std::optional<repeat> next_at_or_after(std::uint64_t offset) override;
  /// @brief The sorted runs read back from the temporary file (0: every repeat was kept in memory).
  [[nodiscard]] std::size_t runs_on_disk() const noexcept { return runs_on_disk_; }

 private:
  friend class external_id_check;
  /// A sorted run: its next pairs in `buffer` from `at`, the rest at bytes [next_byte, end_byte) of the file.
  struct source {
    std::vector<repeat> buffer;
    std::size_t at          = 0;
    std::uint64_t next_byte = 0;
    std::uint64_t end_byte  = 0;
  };
  /// @param fd the runs' file, taken over; @param runs their byte ranges; @param in_memory the last
  /// run, sorted; @param budget pairs the read buffers may hold together
  repeat_stream(unique_fd fd, const std::vector<std::pair<std::uint64_t, std::uint64_t>>& runs,
                std::vector<repeat> in_memory, std::size_t budget);
  /// Fills @p s's buffer from the file. @return false when the run is over
  bool refill(source& s) const;
  /// Restores the heap order below heap_[h].
  void sift_down(std::size_t h);

  unique_fd fd_;
  std::vector<source> sources_;
  std::vector<std::size_t> heap_;  ///< the sources with pairs left, the smallest head first
  std::size_t read_pairs_   = 0;   ///< pairs read from the file at a time, per run
  std::size_t runs_on_disk_ = 0;
  std::uint64_t asked_      = 0;  ///< the last offset asked for
};

/// @brief A line's id as the out-of-memory check stores it.
struct external_id_check_entry {
  std::uint64_t hash;
  std::uint64_t offset;
};

/// @brief (id hash, record offset) of every line goes to one of 256 temporary files by its hash;
/// then each file is searched for equal hashes on its own (several files at once, as many as fit
/// 256 MiB), and ids are read again (to compare bytes) only where hashes are equal. Memory: the
/// write buffers, then the records of the files being searched, and the repeats found up to
/// @p repeats_in_memory (past it they go to a temporary file in sorted runs: a log given twice
/// repeats every line of its copy).
class external_id_check {
 public:
  /// Records held per file before they are written, by default.
  static constexpr std::size_t default_buffered = 1024;
  /// Repeats held in memory by default: 16 Mi pairs, 256 MiB.
  static constexpr std::size_t default_repeats_in_memory = std::size_t{16} << 20;
  /// @param buffered records held per file before they are written (files are made on the first write)
  /// @param repeats_in_memory repeats held in memory before they go to disk in sorted runs (tests: tiny)
  explicit external_id_check(std::size_t buffered          = default_buffered,
                             std::size_t repeats_in_memory = default_repeats_in_memory)
      : buffered_(buffered), repeats_in_memory_(std::max<std::size_t>(repeats_in_memory, 1))
  {
  }
  external_id_check(const external_id_check&)            = delete;
  external_id_check& operator=(const external_id_check&) = delete;

  /// @brief Adds the id of the record at @p offset. @throw config_error when a temporary file fails
  void add(std::uint64_t hash, std::uint64_t offset);

  /// @brief The repeats: (offset of a repeat, offset of the id's first use) in order of the repeat,
  /// as `ingest_options::repeated_ids` takes them. Call once, after the last `add` (each temporary
  /// file is closed once searched).
  /// @param id_at the shipment id of the record at an offset; called from several threads at once
  /// @param keep  only the @p keep first repeats (smallest offsets): a second pass that stops at its
  ///              first bad line reaches one repeat at most, one stopped past `--max-rejects N` N + 1
  ///              (each repeat it reaches is a reject, or takes over the id of a TPP_OVERFLOW reject
  ///              before it). Equal hashes that cannot hold one of them are not read again, so a log
  ///              whose every id repeats (a file given twice) costs neither the reads nor the list.
  ///              More than `repeats_in_memory` are found as all of them are (out of memory).
  [[nodiscard]] repeat_stream repeats(const std::function<std::string(std::uint64_t)>& id_at,
                                      std::size_t keep = all_repeats);
  static constexpr std::size_t all_repeats = static_cast<std::size_t>(-1);

 private:
  using entry = external_id_check_entry;
  struct part {
    unique_fd fd;  ///< opened when the buffer first fills
    std::vector<entry> buffer;
    std::size_t written = 0;  ///< entries in the file
  };
  std::size_t buffered_;
  std::size_t repeats_in_memory_;
  std::array<part, 256> parts_;

  class first_repeats;
  class repeat_store;
  class repeat_sink;

  static void spill(part& p);
  /// The repeats within one part (its records are read back and let go, its file closed) handed to
  /// @p all, or, given @p first, only those that can be among its first repeats, added there.
  static void repeats_in(part& p, const std::function<std::string(std::uint64_t)>& id_at, repeat_sink* all,
                         first_repeats* first);
};

}  // namespace capledger::detail
