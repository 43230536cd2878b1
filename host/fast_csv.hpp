/// @file fast_csv.hpp
/// @brief The ingest's CSV reader: `csv_reader`'s exact semantics, SIMD field splitting, and
/// reading from any line start so that a buffer can be split into chunks parsed in parallel.
///
/// Differential contract (what a fuzzer compares): for every text, `fast_csv_reader(text)` and
/// `csv_reader(text)` return the same sequence of `next()` statuses, and after each call the same
/// `raw()`, and after a `record` the same `fields()` (value bytes, line, column) and
/// `record_line()`, after an error the same `error_line()` / `error_column()`.
#pragma once

#include "csv.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace capledger::detail {

/// @brief A `csv_reader` that can start at any line start of a buffer and stop at a limit.
///
/// Reading from a line start is deterministic: whatever came before, the reference reader that
/// arrives at that position with a line start reads the same records from it. That is what
/// lets a caller parse chunks of one buffer independently and check the seams afterwards
/// (`position()` of one chunk's reader must equal the next chunk's start).
class fast_csv_reader {
 public:
  /// @brief Reads the whole of @p text (a leading byte-order mark is skipped).
  explicit fast_csv_reader(std::string_view text);
  /// @brief Reads the records of @p text that start before @p limit, beginning at @p begin, which
  /// must be 0 (a byte-order mark is then skipped) or follow a `\n`. Lines are numbered from @p first_line at
  /// @p begin; records may run past @p limit (quoted line breaks), never past the end of @p text.
  fast_csv_reader(std::string_view text, std::size_t begin, std::size_t limit, std::int64_t first_line);

  /// @brief As `csv_reader::next`; returns `end` once the next record would start at or after the limit.
  csv_status next();

  [[nodiscard]] const std::vector<csv_field>& fields() const noexcept { return fields_; }
  /// @brief Keeps at most @p count fields of a record; the rest are read and counted
  /// (`field_count`), not kept: one line of millions of commas is one bad line, not gigabytes of
  /// field records. Unlimited by default.
  void keep_at_most(std::size_t count) noexcept { keep_at_most_ = count; }
  /// @brief The fields of the last record, those not kept included.
  [[nodiscard]] std::size_t field_count() const noexcept { return field_count_; }
  [[nodiscard]] std::string_view raw() const noexcept { return raw_; }
  [[nodiscard]] std::int64_t record_line() const noexcept { return record_line_; }
  /// @brief Offset in the text where the last record (or the line of the last error) starts.
  [[nodiscard]] std::size_t record_start() const noexcept { return record_start_; }
  [[nodiscard]] std::int64_t error_line() const noexcept { return error_line_; }
  [[nodiscard]] std::int64_t error_column() const noexcept { return error_column_; }
  /// @brief Where the next record would start (a line start, or the end of the text).
  [[nodiscard]] std::size_t position() const noexcept { return pos_; }
  /// @brief The line number at `position()`.
  [[nodiscard]] std::int64_t line() const noexcept { return line_; }

  /// @brief For a reader that wants few of the lines (a replay of some days and countries):
  /// when the record at `position()` (before the limit) is one line without quotes, its fields
  /// @p first and @p second as `next` would give them, and `skip_peeked` then passes over the
  /// line without reading it; nullopt otherwise (blank lines, quotes, fewer fields, the text's
  /// last 16 bytes): `next` reads it. Peeking consumes nothing.
  [[nodiscard]] std::optional<std::pair<std::string_view, std::string_view>> peek_plain_fields(
      std::size_t first, std::size_t second);
  /// @brief Passes over the line at `position()`, which ends just before @p next_line_start (a
  /// line read elsewhere: the GPU ingest's).
  void skip_line(std::size_t next_line_start) noexcept
  {
    pos_        = next_line_start;
    line_start_ = pos_;
    ++line_;
  }
  /// @brief Passes over the line the last `peek_plain_fields` gave fields of.
  void skip_peeked() noexcept { skip_line(peeked_end_); }

 private:
  const char* data_;
  std::size_t size_;
  std::size_t limit_;
  std::size_t pos_;
  std::int64_t line_;
  std::size_t line_start_;
  std::vector<csv_field> fields_;
  std::size_t keep_at_most_ = static_cast<std::size_t>(-1);
  std::size_t field_count_  = 0;
  csv_field not_kept_;     ///< where a field past `keep_at_most_` is read
  std::string unescaped_;  ///< storage for quoted fields that held `""`
  std::vector<std::pair<std::size_t, std::size_t>> unescaped_spans_;  ///< (field index, offset)
  std::string_view raw_;
  std::size_t record_start_  = 0;
  std::int64_t record_line_  = 0;
  std::int64_t error_line_   = 0;
  std::int64_t error_column_ = 0;
  std::size_t peeked_end_    = 0;  ///< after the line `peek_plain_fields` last looked at

  /// Reads the record at `pos_` when it is one line without quotes (the common case) and at
  /// least 16 bytes remain; false, with nothing consumed, otherwise.
  bool read_plain_line();
  [[nodiscard]] std::size_t find_field_end(std::size_t from) const noexcept;
  /// The value of the unquoted field [begin, end) of a line: without the spaces and tabs around
  /// it, nor, for the line's @p last field, the CR of a CRLF line end.
  [[nodiscard]] std::string_view unquoted_value(std::size_t begin, std::size_t end, bool last) const noexcept;
  csv_status read_quoted(csv_field& field);
  csv_status fail(csv_status status, std::size_t at_pos, std::int64_t at_line, std::size_t at_line_start);
};

}  // namespace capledger::detail
