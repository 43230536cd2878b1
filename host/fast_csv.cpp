/// @file fast_csv.cpp
/// @brief `fast_csv_reader`: the reference reader's state machine, with the byte loops replaced
/// by SIMD scans (a quote-free line in one pass, unquoted fields) and memchr (quoted fields,
/// error resynchronisation).
#include "fast_csv.hpp"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace capledger::detail {

fast_csv_reader::fast_csv_reader(std::string_view text) : fast_csv_reader(text, 0, text.size(), 1) {}

fast_csv_reader::fast_csv_reader(std::string_view text, std::size_t begin, std::size_t limit,
                                 std::int64_t first_line)
    : data_(text.data()),
      size_(text.size()),
      limit_(limit < text.size() ? limit : text.size()),
      pos_(begin),
      line_(first_line),
      line_start_(begin)
{
  // The first chunk of a text skips its byte-order mark as the whole-text reader does (columns
  // still count its bytes): without this, chunked reading saw the BOM as data in the first field.
  if (begin == 0 && text.substr(0, 3) == "\xEF\xBB\xBF") { pos_ = 3; }
}

std::size_t fast_csv_reader::find_field_end(std::size_t from) const noexcept
{
  const char* p         = data_ + from;
  const char* const end = data_ + size_;
#if defined(__SSE2__)
  // Fields are short (a few to a few dozen bytes): one 16-byte compare usually finds the end.
  const __m128i comma   = _mm_set1_epi8(',');
  const __m128i newline = _mm_set1_epi8('\n');
  while (end - p >= 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const auto mask     = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(bytes, comma), _mm_cmpeq_epi8(bytes, newline))));
    if (mask != 0) {
      return static_cast<std::size_t>(p - data_) + static_cast<unsigned>(__builtin_ctz(mask));
    }
    p += 16;
  }
#endif
  while (p < end && *p != ',' && *p != '\n') { ++p; }
  return static_cast<std::size_t>(p - data_);
}

#if defined(__SSE2__)
namespace {

/// One pass over the line at @p at in 16-byte blocks: calls @p on_comma(offset) for each comma
/// before the line end until it returns false, and returns the line end's offset; `none` when a
/// quote comes first (the general path reads the line) or the line runs into the text's last
/// 16 bytes.
template <typename OnComma>
std::size_t scan_plain_line(const char* data, std::size_t size, std::size_t at, OnComma on_comma)
{
  constexpr std::size_t none = static_cast<std::size_t>(-1);
  const __m128i comma        = _mm_set1_epi8(',');
  const __m128i newline      = _mm_set1_epi8('\n');
  const __m128i quote        = _mm_set1_epi8('"');
  bool calling               = true;
  for (; at + 16 <= size; at += 16) {
    const __m128i bytes   = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + at));
    const auto nl         = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, newline)));
    const unsigned before = nl != 0 ? (nl & (0U - nl)) - 1 : 0xffffU;  // bits before the first `\n`
    if ((static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, quote))) & before) != 0) {
      return none;
    }
    for (auto commas = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, comma))) & before;
         calling && commas != 0; commas &= commas - 1) {
      calling = on_comma(at + static_cast<unsigned>(__builtin_ctz(commas)));
    }
    if (nl != 0) { return at + static_cast<unsigned>(__builtin_ctz(nl)); }
  }
  return none;
}

}  // namespace
#endif

std::string_view fast_csv_reader::unquoted_value(std::size_t begin, std::size_t end, bool last) const noexcept
{
  while (begin < end && (data_[begin] == ' ' || data_[begin] == '\t')) { ++begin; }
  if (last && end > begin && data_[end - 1] == '\r') { --end; }  // CRLF line end
  while (end > begin && (data_[end - 1] == ' ' || data_[end - 1] == '\t')) { --end; }
  return {data_ + begin, end - begin};
}

bool fast_csv_reader::read_plain_line()
{
#if defined(__SSE2__)
  std::size_t field_start = pos_;
  const auto emit         = [this](std::size_t begin, std::size_t end, bool last) {
    if (++field_count_ > keep_at_most_) { return; }
    // Filled in place: a field built on the stack and copied stalls on store forwarding.
    csv_field& field = fields_.emplace_back();
    field.value      = unquoted_value(begin, end, last);
    field.line       = line_;
    field.column     = static_cast<std::int64_t>(field.value.data() - data_ - line_start_) + 1;
  };
  const std::size_t line_end = scan_plain_line(data_, size_, pos_, [&](std::size_t comma) {
    emit(field_start, comma, false);
    field_start = comma + 1;
    return true;
  });
  if (line_end == static_cast<std::size_t>(-1)) {
    fields_.clear();
    field_count_ = 0;
    return false;
  }
  emit(field_start, line_end, true);
  std::size_t raw_end = line_end;
  if (raw_end > record_start_ && data_[raw_end - 1] == '\r') { --raw_end; }
  raw_        = std::string_view(data_ + record_start_, raw_end - record_start_);
  pos_        = line_end + 1;
  line_start_ = pos_;
  ++line_;
  return true;
#else
  return false;
#endif
}

std::optional<std::pair<std::string_view, std::string_view>> fast_csv_reader::peek_plain_fields(
    std::size_t first, std::size_t second)
{
#if defined(__SSE2__)
  if (pos_ >= limit_ || data_[pos_] == '\n' || data_[pos_] == '\r') { return std::nullopt; }
  // read_plain_line's pass, counting commas instead of emitting every field.
  const std::size_t index[2] = {first, second};
  const std::size_t last     = std::max(first, second);
  std::size_t begin[2], end[2];
  for (int f = 0; f < 2; ++f) {
    begin[f] = index[f] == 0 ? pos_ : size_;  // size_: not reached yet
    end[f]   = size_;
  }
  std::size_t commas_seen    = 0;
  const std::size_t line_end = scan_plain_line(data_, size_, pos_, [&](std::size_t comma) {
    for (int f = 0; f < 2; ++f) {
      if (commas_seen == index[f]) { end[f] = comma; }
      if (commas_seen + 1 == index[f]) { begin[f] = comma + 1; }
    }
    return ++commas_seen <= last;  // both fields found: only the line end is wanted now
  });
  if (line_end == static_cast<std::size_t>(-1) || begin[0] == size_ || begin[1] == size_) {
    return std::nullopt;  // fewer fields: `next` says
  }
  peeked_end_      = line_end + 1;
  const auto value = [&](int f) {
    const bool no_comma_after = end[f] == size_;  // the line's last field
    return unquoted_value(begin[f], no_comma_after ? line_end : end[f], no_comma_after);
  };
  return std::pair{value(0), value(1)};
#else
  (void)first;
  (void)second;
  return std::nullopt;
#endif
}

csv_status fast_csv_reader::fail(csv_status status, std::size_t at_pos, std::int64_t at_line,
                                 std::size_t at_line_start)
{
  error_line_    = at_line;
  error_column_  = static_cast<std::int64_t>(at_pos - at_line_start) + 1;
  // Raw: the record's physical lines through the one holding the defect (as the reference reader).
  const auto* nl             = static_cast<const char*>(std::memchr(data_ + at_pos, '\n', size_ - at_pos));
  const std::size_t line_end = nl != nullptr ? static_cast<std::size_t>(nl - data_) : size_;
  raw_                       = std::string_view(data_ + record_start_, line_end - record_start_);
  if (!raw_.empty() && raw_.back() == '\r') { raw_.remove_suffix(1); }
  // Resynchronise at the line after the defect, as the reference reader does.
  line_ = at_line;
  if (nl != nullptr) {
    pos_ = line_end + 1;
    ++line_;
    line_start_ = pos_;
  } else {
    pos_        = size_;
    line_start_ = at_line_start;
  }
  return status;
}

/// Reads the quoted field at `pos_` into @p field (the last of `fields_`). @return `record`, or
/// the error it failed with
csv_status fast_csv_reader::read_quoted(csv_field& field)
{
  const std::size_t quote_pos        = pos_;
  const std::int64_t quote_line      = line_;
  const std::size_t quote_line_start = line_start_;
  const std::size_t value_start      = ++pos_;
  std::size_t escaped_at             = std::string::npos;  // offset in unescaped_ once a `""` was met
  while (true) {
    const auto* quote = static_cast<const char*>(std::memchr(data_ + pos_, '"', size_ - pos_));
    if (quote == nullptr) {
      return fail(csv_status::unterminated_quote, quote_pos, quote_line, quote_line_start);
    }
    const auto quote_at = static_cast<std::size_t>(quote - data_);
    // Line breaks inside the quotes move the line count on.
    for (const char* nl = data_ + pos_;
         (nl = static_cast<const char*>(
              std::memchr(nl, '\n', quote_at - static_cast<std::size_t>(nl - data_)))) != nullptr;
         ++nl) {
      ++line_;
      line_start_ = static_cast<std::size_t>(nl - data_) + 1;
    }
    const bool doubled = quote_at + 1 < size_ && data_[quote_at + 1] == '"';
    if (doubled || escaped_at != std::string::npos) {
      if (escaped_at == std::string::npos) {
        escaped_at = unescaped_.size();
        unescaped_.append(data_ + value_start, quote_at - value_start);
      } else {
        unescaped_.append(data_ + pos_, quote_at - pos_);
      }
    }
    if (doubled) {
      unescaped_.push_back('"');
      pos_ = quote_at + 2;
      continue;
    }
    pos_ = quote_at;
    break;
  }
  if (escaped_at != std::string::npos && &field != &not_kept_) {
    unescaped_spans_.emplace_back(static_cast<std::size_t>(&field - fields_.data()), escaped_at);
    field.value = std::string_view(nullptr, unescaped_.size() - escaped_at);  // pointer fixed up at the end
  } else {
    field.value = std::string_view(data_ + value_start, pos_ - value_start);
  }
  ++pos_;  // closing quote
  while (pos_ < size_ && (data_[pos_] == ' ' || data_[pos_] == '\t')) { ++pos_; }
  // A `\r` at the very end of the text is a truncated `\r\n` line end, as for unquoted fields.
  if (pos_ < size_ && data_[pos_] != ',' && data_[pos_] != '\n' &&
      !(data_[pos_] == '\r' && (pos_ + 1 == size_ || data_[pos_ + 1] == '\n'))) {
    return fail(csv_status::bad_quote, pos_, line_, line_start_);
  }
  return csv_status::record;
}

csv_status fast_csv_reader::next()
{
  fields_.clear();
  field_count_ = 0;
  unescaped_.clear();
  unescaped_spans_.clear();
  // Skip blank lines (`\n` or `\r\n` alone, or a `\r` that ends the text: a truncated `\r\n`).
  // They end at line starts, so a limit at a line start is met exactly.
  while (pos_ < limit_) {
    if (data_[pos_] == '\n') {
      ++pos_;
    } else if (data_[pos_] == '\r' && (pos_ + 1 == size_ || data_[pos_ + 1] == '\n')) {
      pos_ += pos_ + 1 == size_ ? 1 : 2;
    } else {
      break;
    }
    ++line_;
    line_start_ = pos_;
  }
  if (pos_ >= limit_) { return csv_status::end; }

  record_start_ = pos_;
  record_line_  = line_;
  if (read_plain_line()) { return csv_status::record; }
  while (true) {
    while (pos_ < size_ && (data_[pos_] == ' ' || data_[pos_] == '\t')) { ++pos_; }
    // Filled in place, as in read_plain_line: a field built on the stack and copied stalled on
    // store forwarding (half of this function's time in a log with quoted values).
    csv_field& field = ++field_count_ <= keep_at_most_ ? fields_.emplace_back() : not_kept_;
    field.line       = line_;
    field.column     = static_cast<std::int64_t>(pos_ - line_start_) + 1;
    if (pos_ < size_ && data_[pos_] == '"') {
      if (const csv_status status = read_quoted(field); status != csv_status::record) { return status; }
    } else {
      const std::size_t value_start = pos_;
      pos_                          = find_field_end(pos_);
      std::size_t value_end         = pos_;
      if (value_end > value_start && data_[value_end - 1] == '\r' && (pos_ >= size_ || data_[pos_] == '\n')) {
        --value_end;  // CRLF line end (or a final CR)
      }
      while (value_end > value_start && (data_[value_end - 1] == ' ' || data_[value_end - 1] == '\t')) {
        --value_end;
      }
      field.value = std::string_view(data_ + value_start, value_end - value_start);
    }
    if (pos_ >= size_) {
      raw_ = std::string_view(data_ + record_start_, pos_ - record_start_);
      if (!raw_.empty() && raw_.back() == '\r') { raw_.remove_suffix(1); }  // truncated `\r\n`
      break;
    }
    if (data_[pos_] == ',') {
      ++pos_;
      continue;
    }
    // Line end: `\n`, or `\r\n` after a quoted field.
    std::size_t raw_end = pos_;
    if (data_[pos_] == '\r') { ++pos_; }
    if (raw_end > record_start_ && data_[raw_end - 1] == '\r') { --raw_end; }
    raw_ = std::string_view(data_ + record_start_, raw_end - record_start_);
    if (pos_ < size_) { ++pos_; }  // the `\n` (absent after a `\r` that ends the text)
    ++line_;
    line_start_ = pos_;
    break;
  }
  for (const auto& [index, offset] : unescaped_spans_) {
    fields_[index].value = std::string_view(unescaped_.data() + offset, fields_[index].value.size());
  }
  return csv_status::record;
}

}  // namespace capledger::detail
