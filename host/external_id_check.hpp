/// @file external_id_check.hpp
/// @brief Repeated shipment ids found out of memory, for logs whose id set would not fit.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace capledger::detail {

/// @brief A line's id as the out-of-memory check stores it.
struct external_id_check_entry {
  std::uint64_t hash;
  std::uint64_t offset;
};

/// @brief (id hash, record offset) of every line goes to one of 256 temporary files by its hash;
/// then each file is searched for equal hashes on its own (several files at once, as many as fit
/// 256 MiB), and ids are read again (to compare bytes) only where hashes are equal. Memory: the
/// write buffers, then the records of the files being searched.
class external_id_check {
 public:
  /// @param buffered records held per file before they are written (files are made on the first write)
  explicit external_id_check(std::size_t buffered = 1024) : buffered_(buffered) {}
  ~external_id_check();
  external_id_check(const external_id_check&)            = delete;
  external_id_check& operator=(const external_id_check&) = delete;

  /// @brief Adds the id of the record at @p offset. @throw config_error when a temporary file fails
  void add(std::uint64_t hash, std::uint64_t offset);

  /// @brief The repeats: (offset of a repeat, offset of the id's first use) sorted by the repeat,
  /// as `ingest_options::repeated_ids` takes them. Call once, after the last `add`.
  /// @param id_at the shipment id of the record at an offset; called from several threads at once
  /// @param keep  only the @p keep first repeats (smallest offsets): a second pass that stops at its
  ///              first bad line reaches one repeat at most, one stopped past `--max-rejects N` N + 1
  ///              (each repeat it reaches is a reject, or takes over the id of a TPP_OVERFLOW reject
  ///              before it). Equal hashes that cannot hold one of them are not read again, so a log
  ///              whose every id repeats (a file given twice) costs neither the reads nor the list.
  [[nodiscard]] std::vector<std::pair<std::uint64_t, std::uint64_t>> repeats(
      const std::function<std::string(std::uint64_t)>& id_at, std::size_t keep = all_repeats);
  static constexpr std::size_t all_repeats = static_cast<std::size_t>(-1);

 private:
  using entry = external_id_check_entry;
  struct part {
    int fd = -1;  ///< opened when the buffer first fills
    std::vector<entry> buffer;
    std::size_t written = 0;  ///< entries in the file
  };
  std::size_t buffered_;
  std::array<part, 256> parts_;

  class first_repeats;

  static void spill(part& p);
  /// The repeats within one part (its records are read back and let go), or, given @p first, only
  /// those that can be among its first repeats, added there.
  static std::vector<std::pair<std::uint64_t, std::uint64_t>> repeats_in(
      part& p, const std::function<std::string(std::uint64_t)>& id_at, first_repeats* first);
};

}  // namespace capledger::detail
