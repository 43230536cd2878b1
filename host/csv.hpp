/// @file csv.hpp
/// @brief RFC 4180 record reader over an in-memory buffer, tracking line and column of every field.
#pragma once

#include <capledger/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace capledger::detail {

/// @brief One field of a record: its value (quotes removed, `""` unescaped, surrounding spaces of
/// unquoted text trimmed) and where it starts.
struct csv_field {
  std::string_view value;
  std::int64_t line   = 0;  ///< 1-based physical line of the field's first byte
  std::int64_t column = 0;  ///< 1-based byte column of the field's first byte
};

/// @brief What `csv_reader::next` found.
enum class csv_status { record, end, unterminated_quote, bad_quote };

/// @brief The reason code (SPEC §7) and explanation of a record the reader stopped at, the same
/// for every CSV input (logs, entities, reference tables, inventories).
struct quote_defect {
  const char* reason;
  const char* explanation;
};
/// @param status `unterminated_quote` or `bad_quote`
[[nodiscard]] constexpr quote_defect quote_defect_of(csv_status status) noexcept
{
  return status == csv_status::unterminated_quote
             ? quote_defect{"UNTERMINATED_QUOTE", "a quoted field is never closed"}
             : quote_defect{"BAD_QUOTE", "text follows a closing quote"};
}

/// @brief Splits a buffer into records. Fields of a record stay valid until the next call.
///
/// Accepts `\n` and `\r\n` line ends, a leading UTF-8 byte-order mark, quoted fields holding
/// commas, quotes and line breaks. Blank lines are skipped: they hold no data.
class csv_reader {
 public:
  explicit csv_reader(std::string_view text);

  /// @brief Reads the next record into `fields()`.
  /// @return `record`, `end`, or an error whose position is `error_line()` / `error_column()`;
  ///         after an error the reader has skipped to the start of the next physical line.
  csv_status next();

  [[nodiscard]] const std::vector<csv_field>& fields() const noexcept { return fields_; }
  /// @brief The raw bytes of the last record (without its line end); after an error, the
  /// record's physical lines through the one holding the error (where reading resumes after).
  [[nodiscard]] std::string_view raw() const noexcept { return raw_; }
  /// @brief 1-based line where the last record starts.
  [[nodiscard]] std::int64_t record_line() const noexcept { return record_line_; }
  [[nodiscard]] std::int64_t error_line() const noexcept { return error_line_; }
  [[nodiscard]] std::int64_t error_column() const noexcept { return error_column_; }
  /// @brief The offset where the next record's search starts, and its line number.
  [[nodiscard]] std::size_t position() const noexcept { return pos_; }
  [[nodiscard]] std::int64_t line() const noexcept { return line_; }

 private:
  std::string_view text_;
  std::size_t pos_        = 0;
  std::int64_t line_      = 1;
  std::size_t line_start_ = 0;
  std::vector<csv_field> fields_;
  std::string unescaped_;  ///< storage for quoted fields that held `""`
  std::string_view raw_;
  std::size_t record_start_  = 0;
  std::int64_t record_line_  = 0;
  std::int64_t error_line_   = 0;
  std::int64_t error_column_ = 0;

  csv_status fail(csv_status status, std::size_t at_pos, std::int64_t at_line, std::size_t at_line_start);
};

/// @return whether @p text (a header's first name, a whole file) is UTF-16 read as bytes: it holds
/// NUL bytes or starts with a UTF-16 byte-order mark
[[nodiscard]] bool looks_utf16(std::string_view text) noexcept;

/// @brief Refuses a file whose line ends are `\n\r` (some exports): the carriage return after
/// each `\n` would begin the next record, so every first field (a shipment or entity id) would
/// hold it and match no other file's ids (a log given again that way counted every line twice).
/// SPEC 1.1 allows `\n` and `\r\n` only; a header row whose line end a lone `\r` follows tells.
/// @param after_header the offset just past the header row's line end, on line @p line
/// @throw parse_error MALFORMED_HEADER, at that carriage return
void refuse_lf_cr_line_ends(std::string_view text, std::size_t after_header, std::int64_t line,
                            const std::string& file);

/// @brief Trims ASCII spaces and tabs at both ends.
[[nodiscard]] std::string_view trim(std::string_view text) noexcept;

/// @brief Upper-cases ASCII letters.
[[nodiscard]] std::string to_upper(std::string_view text);

/// @brief Parses a whole decimal int64 (optional sign, digits only). @return false on any defect
[[nodiscard]] bool parse_int64(std::string_view text, std::int64_t& value) noexcept;
/// @return whether @p text is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates)
[[nodiscard]] bool valid_utf8(std::string_view text) noexcept;

/// @brief The UTF-8 sequence at one place of a text (RFC 3629).
struct utf8_sequence {
  std::size_t length  = 0;      ///< its bytes; 0 where the bytes there are no well-formed sequence
  char32_t code_point = 0;      ///< valid where `length` > 0
  bool cut_off_by_end = false;  ///< no sequence only because the text ends inside one that begins well
};
/// @brief The sequence that starts at @p text[@p at] (`at` < size).
[[nodiscard]] utf8_sequence utf8_at(std::string_view text, std::size_t at) noexcept;

}  // namespace capledger::detail

namespace capledger::detail {

/// @brief Maps a header row's column names (trimmed, case-insensitive) to field indices.
class csv_header {
 public:
  /// @param file named by the error `find` throws
  csv_header(const std::vector<csv_field>& fields, std::string file);
  /// @return the field index of @p name (lower-case), or -1 when the header lacks it
  /// @throw parse_error (DUPLICATE_COLUMN) at its second field when the header has it twice:
  /// which one holds the values would be a guess
  [[nodiscard]] int find(std::string_view name) const;
  [[nodiscard]] int size() const noexcept { return static_cast<int>(names_.size()); }
  /// @return why @p name is missing, for MISSING_COLUMN: with the names the header has, or what
  /// the file seems to be instead (UTF-16 text, values separated by semicolons or tabs)
  [[nodiscard]] std::string missing(std::string_view name) const;
  /// @return whether the header's last name is empty (and not its only one): a header row that
  /// ends with a comma, as some spreadsheets and ERP exports write it
  [[nodiscard]] bool ends_unnamed() const noexcept { return names_.size() > 1 && names_.back().empty(); }

 private:
  std::vector<std::string> names_;
  std::vector<std::string> written_;  ///< the names as the file has them
  std::vector<csv_field> fields_;  ///< where each name stands (values not kept)
  std::string file_;
};

/// @brief The detail of a WRONG_FIELD_COUNT: the counts, and where the likely cause is a comma at
/// the end of the line or of the header (ERP and spreadsheet exports write both), that cause.
/// @param last_is_empty whether the record's last field is empty
/// @param header_ends_unnamed `csv_header::ends_unnamed` of the file's header
[[nodiscard]] std::string wrong_field_count(std::size_t expected, std::size_t found, bool last_is_empty,
                                            bool header_ends_unnamed);

/// @brief The field a WRONG_FIELD_COUNT names: the first past the header's @p expected count or,
/// with too few, the record's last (@p fields as the reader holds them: at least one).
[[nodiscard]] const csv_field& wrong_field_count_at(const std::vector<csv_field>& fields,
                                                    std::size_t expected);

/// @brief The WRONG_FIELD_COUNT of a record of @p path whose @p fields do not match @p header: at
/// `wrong_field_count_at`, said as `wrong_field_count` says it (the entities file, an inventory).
[[nodiscard]] parse_error wrong_field_count_error(const std::string& path,
                                                  const std::vector<csv_field>& fields,
                                                  const csv_header& header);

}  // namespace capledger::detail
