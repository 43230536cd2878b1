/// @file csv.cpp
/// @brief RFC 4180 record reader with exact line/column positions for error messages.
#include "csv.hpp"

#include "terminal_text.hpp"

#include <capledger/error.hpp>

#include <charconv>
#include <cstdint>
#include <cstring>
#include <utility>

namespace capledger::detail {

csv_reader::csv_reader(std::string_view text) : text_(text)
{
  if (text_.substr(0, 3) == "\xEF\xBB\xBF") {
    pos_ = 3;  // a byte-order mark is not data; columns still count its bytes, as editors do
  }
}

csv_status csv_reader::fail(csv_status status, std::size_t at_pos, std::int64_t at_line,
                            std::size_t at_line_start)
{
  error_line_          = at_line;
  error_column_        = static_cast<std::int64_t>(at_pos - at_line_start) + 1;
  // Raw: every physical line the record took, through the one holding the defect (a quoted line
  // break before it included), so that the rejects file shows each line the record dropped.
  std::size_t line_end = at_pos;
  while (line_end < text_.size() && text_[line_end] != '\n') { ++line_end; }
  raw_ = text_.substr(record_start_, line_end - record_start_);
  if (!raw_.empty() && raw_.back() == '\r') { raw_.remove_suffix(1); }
  // Resynchronise at the line after the defect, so that an unterminated quote does not swallow
  // the rest of the file: later lines are still read and reported.
  pos_        = at_pos;
  line_       = at_line;
  line_start_ = at_line_start;
  while (pos_ < text_.size() && text_[pos_] != '\n') { ++pos_; }
  if (pos_ < text_.size()) {
    ++pos_;
    ++line_;
    line_start_ = pos_;
  }
  return status;
}

csv_status csv_reader::next()
{
  fields_.clear();
  unescaped_.clear();
  // Skip blank lines (`\n` or `\r\n` alone, or a `\r` that ends the text: a truncated `\r\n`).
  while (pos_ < text_.size()) {
    if (text_[pos_] == '\n') {
      ++pos_;
      ++line_;
      line_start_ = pos_;
    } else if (text_[pos_] == '\r' && (pos_ + 1 == text_.size() || text_[pos_ + 1] == '\n')) {
      pos_ += pos_ + 1 == text_.size() ? 1 : 2;
      ++line_;
      line_start_ = pos_;
    } else {
      break;
    }
  }
  if (pos_ >= text_.size()) { return csv_status::end; }

  const std::size_t record_start = pos_;
  record_start_                  = pos_;
  record_line_                   = line_;
  // Unescaped values go to unescaped_, which may reallocate while the record is read; their
  // views are pointed into it once the record is complete.
  std::vector<std::pair<std::size_t, std::size_t>> unescaped_spans;  // (field index, offset)

  while (true) {
    // Leading spaces before a field (or before its opening quote) are not part of it.
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) { ++pos_; }
    csv_field field;
    field.line   = line_;
    field.column = static_cast<std::int64_t>(pos_ - line_start_) + 1;
    if (pos_ < text_.size() && text_[pos_] == '"') {
      const std::size_t quote_pos        = pos_;
      const std::int64_t quote_line      = line_;
      const std::size_t quote_line_start = line_start_;
      ++pos_;
      const std::size_t value_start = pos_;
      bool escaped                  = false;
      std::string value;
      while (true) {
        if (pos_ >= text_.size()) {
          return fail(csv_status::unterminated_quote, quote_pos, quote_line, quote_line_start);
        }
        const char c = text_[pos_];
        if (c == '"') {
          if (pos_ + 1 < text_.size() && text_[pos_ + 1] == '"') {
            if (!escaped) { value.assign(text_.substr(value_start, pos_ - value_start)); }
            escaped = true;
            value.push_back('"');
            pos_ += 2;
            continue;
          }
          break;
        }
        if (c == '\n') {
          ++line_;
          line_start_ = pos_ + 1;
        }
        if (escaped) { value.push_back(c); }
        ++pos_;
      }
      if (escaped) {
        unescaped_spans.emplace_back(fields_.size(), unescaped_.size());
        unescaped_ += value;
        field.value = std::string_view(nullptr, value.size());  // pointer fixed up below
      } else {
        field.value = text_.substr(value_start, pos_ - value_start);
      }
      ++pos_;  // closing quote
      while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) { ++pos_; }
      // A `\r` at the very end of the text is a truncated `\r\n` line end, as for unquoted fields.
      if (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != '\n' &&
          !(text_[pos_] == '\r' && (pos_ + 1 == text_.size() || text_[pos_ + 1] == '\n'))) {
        return fail(csv_status::bad_quote, pos_, line_, line_start_);
      }
    } else {
      const std::size_t value_start = pos_;
      while (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != '\n') { ++pos_; }
      std::size_t value_end = pos_;
      if (value_end > value_start && text_[value_end - 1] == '\r' &&
          (pos_ >= text_.size() || text_[pos_] == '\n')) {
        --value_end;  // CRLF line end
      }
      field.value = trim(text_.substr(value_start, value_end - value_start));
    }
    fields_.push_back(field);
    if (pos_ >= text_.size()) {
      raw_ = text_.substr(record_start, pos_ - record_start);
      if (!raw_.empty() && raw_.back() == '\r') { raw_.remove_suffix(1); }  // truncated `\r\n`
      break;
    }
    if (text_[pos_] == ',') {
      ++pos_;
      continue;
    }
    // Line end: `\n`, or `\r\n` after a quoted field.
    std::size_t raw_end = pos_;
    if (text_[pos_] == '\r') { ++pos_; }
    if (raw_end > record_start && text_[raw_end - 1] == '\r') { --raw_end; }
    raw_ = text_.substr(record_start, raw_end - record_start);
    if (pos_ < text_.size()) { ++pos_; }  // the `\n` (absent after a `\r` that ends the text)
    ++line_;
    line_start_ = pos_;
    break;
  }
  for (const auto& [index, offset] : unescaped_spans) {
    fields_[index].value = std::string_view(unescaped_.data() + offset, fields_[index].value.size());
  }
  return csv_status::record;
}

std::string_view trim(std::string_view text) noexcept
{
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) { text.remove_prefix(1); }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) { text.remove_suffix(1); }
  return text;
}

std::string to_upper(std::string_view text)
{
  std::string out(text);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') { c = static_cast<char>(c - 'a' + 'A'); }
  }
  return out;
}

bool parse_int64(std::string_view text, std::int64_t& value) noexcept
{
  if (text.empty()) { return false; }
  const char* first = text.data();
  const char* last  = text.data() + text.size();
  if (*first == '+') {
    ++first;
    if (first == last || *first == '-') { return false; }
  }
  const auto [end, error] = std::from_chars(first, last, value);
  return error == std::errc() && end == last;
}

bool valid_utf8(std::string_view text) noexcept
{
  std::size_t at = 0;
  while (at < text.size()) {
    // ASCII, nearly all of a log, eight bytes at a time.
    for (std::uint64_t word; text.size() - at >= 8; at += 8) {
      std::memcpy(&word, text.data() + at, 8);
      if ((word & 0x8080808080808080ULL) != 0) { break; }
    }
    if (at == text.size()) { break; }
    const std::size_t length = utf8_at(text, at).length;
    if (length == 0) { return false; }
    at += length;
  }
  return true;
}

utf8_sequence utf8_at(std::string_view text, std::size_t at) noexcept
{
  const auto byte          = [&](std::size_t k) { return static_cast<unsigned char>(text[at + k]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) { return {1, lead, false}; }
  std::size_t length  = 0;
  char32_t code_point = 0;
  unsigned char low   = 0x80;  // bounds of the second byte, which rule out overlong forms and surrogates
  unsigned char high  = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length     = 2;
    code_point = lead & 0x1FU;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length     = 3;
    code_point = lead & 0x0FU;
    if (lead == 0xE0) { low = 0xA0; }
    if (lead == 0xED) { high = 0x9F; }
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length     = 4;
    code_point = lead & 0x07U;
    if (lead == 0xF0) { low = 0x90; }
    if (lead == 0xF4) { high = 0x8F; }
  } else {
    return {};
  }
  for (std::size_t k = 1; k < length; ++k) {
    if (at + k == text.size()) { return {0, 0, true}; }
    const unsigned char next = byte(k);
    if (next < (k == 1 ? low : 0x80) || next > (k == 1 ? high : 0xBF)) { return {}; }
    code_point = code_point << 6U | (next & 0x3FU);
  }
  return {length, code_point, false};
}

}  // namespace capledger::detail

namespace capledger::detail {

bool looks_utf16(std::string_view text) noexcept
{
  return text.substr(0, 2) == "\xFF\xFE" || text.substr(0, 2) == "\xFE\xFF" ||
         text.find('\0') != std::string_view::npos;
}

void refuse_lf_cr_line_ends(std::string_view text, std::size_t after_header, std::int64_t line,
                            const std::string& file)
{
  // (A lone `\r` at the end is a `\r\n` cut short: a blank line.)
  if (after_header + 1 < text.size() && text[after_header] == '\r' && text[after_header + 1] != '\n') {
    throw parse_error(file, line, 1, "MALFORMED_HEADER",
                      "a carriage return follows the header row's line end: line ends must be \\n or "
                      "\\r\\n, not \\n\\r");
  }
}

csv_header::csv_header(const std::vector<csv_field>& fields, std::string file) : file_(std::move(file))
{
  names_.reserve(fields.size());
  for (const auto& field : fields) {
    fields_.push_back({{}, field.line, field.column});
    // SPEC 1.1 allows \n and \r\n line ends only. A carriage return in a column name is a file
    // with bare-CR line ends (old Mac, some exports): read on, its whole text is one header row
    // and the log would count 0 lines with exit 0. UTF-16 text with \r\n line ends (a
    // spreadsheet's "Unicode text") keeps a CR before each \n byte too: that file is told it is
    // UTF-16 by `missing`, not sent after its line ends.
    if (field.value.find('\r') != std::string_view::npos && !looks_utf16(fields.front().value)) {
      throw parse_error(file_, field.line, field.column, "MALFORMED_HEADER",
                        "a column name holds a carriage return: line ends must be \\n or \\r\\n");
    }
    written_.emplace_back(field.value);
    std::string name(trim(field.value));
    for (char& c : name) {
      if (c >= 'A' && c <= 'Z') { c = static_cast<char>(c - 'A' + 'a'); }
    }
    names_.push_back(std::move(name));
  }
}

int csv_header::find(std::string_view name) const
{
  int found = -1;
  for (std::size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] != name) { continue; }
    if (found >= 0) {
      throw parse_error(file_, fields_[i].line, fields_[i].column, "DUPLICATE_COLUMN",
                        "column " + quoted(name) + " appears twice in the header (fields " +
                            std::to_string(found + 1) + " and " + std::to_string(i + 1) + ")");
    }
    found = static_cast<int>(i);
  }
  return found;
}

std::string csv_header::missing(std::string_view name) const
{
  const std::string why        = "required column " + quoted(name) + " is missing";
  const std::string_view first = written_.empty() ? std::string_view() : std::string_view(written_.front());
  // Files a spreadsheet saves for another locale or as "Unicode text": said, rather than listed.
  if (looks_utf16(first)) {
    return why + ": the header holds NUL bytes or a UTF-16 byte-order mark; the file must be UTF-8";
  }
  if (written_.size() == 1) {
    for (const auto& [separator, what] : {std::pair{';', "semicolons"}, std::pair{'\t', "tabs"}}) {
      if (first.find(separator) != std::string_view::npos) {
        return why + ": the header is one column holding " + what + "; fields must be separated by commas";
      }
    }
  }
  constexpr std::size_t names_shown = 12, bytes_shown = 40;
  std::string listed;
  for (std::size_t i = 0; i < written_.size() && i < names_shown; ++i) {
    std::string_view shown = written_[i];
    if (shown.size() > bytes_shown) {  // cut before a UTF-8 continuation byte: whole characters
      std::size_t end = bytes_shown;
      while (end > 0 && (static_cast<unsigned char>(shown[end]) & 0xC0U) == 0x80U) { --end; }
      shown = shown.substr(0, end);
    }
    listed += (i == 0 ? "" : ", ") + quoted(shown) + (shown.size() < written_[i].size() ? "..." : "");
  }
  if (written_.size() > names_shown) {
    listed += " and " + std::to_string(written_.size() - names_shown) + " more";
  }
  return why + " (the header names " + listed + ")";
}

std::string wrong_field_count(std::size_t expected, std::size_t found, bool last_is_empty,
                              bool header_ends_unnamed)
{
  std::string why = "expected " + std::to_string(expected) + " fields, found " + std::to_string(found);
  if (found == expected + 1 && last_is_empty) {
    why += ": the line ends with a comma (an empty field past the header's last column); remove it";
  } else if (found + 1 == expected && header_ends_unnamed) {
    why +=
        ": the header ends with a comma (an unnamed last column) and this line does not; remove the "
        "header's last comma";
  }
  return why;
}

const csv_field& wrong_field_count_at(const std::vector<csv_field>& fields, std::size_t expected)
{
  return fields.size() > expected ? fields[expected] : fields.back();
}

parse_error wrong_field_count_error(const std::string& path, const std::vector<csv_field>& fields,
                                    const csv_header& header)
{
  const auto expected = static_cast<std::size_t>(header.size());
  const csv_field& at = wrong_field_count_at(fields, expected);
  return parse_error(
      path, at.line, at.column, "WRONG_FIELD_COUNT",
      wrong_field_count(expected, fields.size(), !fields.empty() && fields.back().value.empty(),
                        header.ends_unnamed()));
}

}  // namespace capledger::detail
