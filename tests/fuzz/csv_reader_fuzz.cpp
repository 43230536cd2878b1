/// @file csv_reader_fuzz.cpp
/// @brief libFuzzer target: arbitrary bytes through detail::csv_reader, checking its invariants.
///
/// Invariants checked on every input (any violation aborts, so libFuzzer records a crash):
/// - the reader terminates: at most size+2 calls to next() before `end`, and `end` is sticky;
/// - every field's line/column points inside the input, on that physical line, at the field's
///   first byte (an opening quote for quoted fields, the value's first byte for unquoted ones);
/// - an unquoted or unescaped quoted value is a view into the input at its position;
///   an escaped quoted value equals the unescaped text between its quotes;
/// - field positions are strictly increasing through a record; record lines strictly increasing;
/// - raw() is a substring of the input starting at the record's line start (after a BOM);
/// - after an error the reader progresses: the next record or error is on a later line.
#include "csv.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using capledger::detail::csv_reader;
using capledger::detail::csv_status;

[[noreturn]] void fail(const char* what, std::int64_t a = 0, std::int64_t b = 0)
{
  std::fprintf(stderr, "csv_reader invariant violated: %s (%lld, %lld)\n", what,
               static_cast<long long>(a), static_cast<long long>(b));
  std::abort();
}

#define CHECK(cond, ...)                 \
  do {                                   \
    if (!(cond)) { fail(#cond, ##__VA_ARGS__); } \
  } while (0)

/// Byte offsets where each physical line (1-based) starts; lines are split at `\n` only.
std::vector<std::size_t> line_starts(std::string_view text)
{
  std::vector<std::size_t> starts{0, 0};  // index 0 unused
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') { starts.push_back(i + 1); }
  }
  return starts;
}

bool within(std::string_view outer, std::string_view inner)
{
  if (inner.empty()) {
    return inner.data() == nullptr ||
           (inner.data() >= outer.data() && inner.data() <= outer.data() + outer.size());
  }
  return inner.data() >= outer.data() && inner.data() + inner.size() <= outer.data() + outer.size();
}

/// Offset of (line, column) in text, checking that it lies on that line (or at its very end).
std::size_t offset_of(std::string_view text, const std::vector<std::size_t>& starts,
                      std::int64_t line, std::int64_t column)
{
  CHECK(line >= 1 && static_cast<std::size_t>(line) < starts.size(), line, column);
  CHECK(column >= 1, line, column);
  const std::size_t start = starts[static_cast<std::size_t>(line)];
  const std::size_t end   = static_cast<std::size_t>(line) + 1 < starts.size()
                              ? starts[static_cast<std::size_t>(line) + 1] - 1  // the `\n`
                              : text.size();
  const std::size_t offset = start + static_cast<std::size_t>(column - 1);
  CHECK(offset <= end, line, column);
  return offset;
}

std::string unescape(std::string_view quoted_body)
{
  std::string out;
  for (std::size_t i = 0; i < quoted_body.size(); ++i) {
    out.push_back(quoted_body[i]);
    if (quoted_body[i] == '"') { ++i; }  // `""` -> `"`
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  // Copy to a heap buffer of exactly `size` bytes, so ASan catches any read past the end.
  const std::string owned(reinterpret_cast<const char*>(data), size);
  const std::string_view text(owned);
  const auto starts         = line_starts(text);
  const bool bom            = text.substr(0, 3) == "\xEF\xBB\xBF";

  csv_reader reader(text);
  std::int64_t last_record_line = 0;  // line of the previous record or error
  std::int64_t error_at_line    = 0;  // line of the last error, 0 when the last call was not one
  std::size_t calls             = 0;
  while (true) {
    CHECK(++calls <= size + 2, static_cast<std::int64_t>(calls), static_cast<std::int64_t>(size));
    const csv_status status = reader.next();
    if (status == csv_status::end) {
      CHECK(reader.next() == csv_status::end);
      break;
    }
    CHECK(within(text, reader.raw()));
    const std::size_t record_start = offset_of(text, starts, reader.record_line(), 1) +
                                     (bom && reader.record_line() == 1 ? 3 : 0);
    CHECK(reader.raw().data() == text.data() + record_start, reader.record_line());
    CHECK(reader.record_line() > last_record_line, reader.record_line(), last_record_line);
    if (error_at_line > 0) {
      // Progress after an error: the reader resumed on a later line.
      const std::int64_t now = status == csv_status::record ? reader.record_line() : reader.error_line();
      CHECK(now > error_at_line, now, error_at_line);
    }
    last_record_line = reader.record_line();

    if (status != csv_status::record) {
      CHECK(status == csv_status::unterminated_quote || status == csv_status::bad_quote);
      const std::size_t at = offset_of(text, starts, reader.error_line(), reader.error_column());
      CHECK(reader.error_line() >= reader.record_line(), reader.error_line(), reader.record_line());
      if (status == csv_status::unterminated_quote) {
        CHECK(at < size && text[at] == '"', reader.error_line(), reader.error_column());
      }
      // The raw text of an error is the record's physical lines through the error's, without its
      // line end.
      const auto breaks =
          static_cast<std::int64_t>(std::count(reader.raw().begin(), reader.raw().end(), '\n'));
      CHECK(breaks == reader.error_line() - reader.record_line(), breaks, reader.error_line());
      error_at_line = reader.error_line();
      continue;
    }
    error_at_line = 0;

    const auto& fields = reader.fields();
    CHECK(!fields.empty());
    std::size_t previous = 0;
    bool first           = true;
    for (const auto& field : fields) {
      CHECK(field.line >= reader.record_line(), field.line, reader.record_line());
      const std::size_t at = offset_of(text, starts, field.line, field.column);
      CHECK(at >= record_start, field.line, field.column);
      CHECK(first || at > previous, field.line, field.column);
      first    = false;
      previous = at;
      if (at < size && text[at] == '"') {
        // Quoted: the value is the text up to the closing quote, `""` unescaped.
        std::size_t close = at + 1;
        while (close < size) {
          if (text[close] == '"') {
            if (close + 1 < size && text[close + 1] == '"') {
              close += 2;
              continue;
            }
            break;
          }
          ++close;
        }
        CHECK(close < size, field.line, field.column);
        const std::string_view body = text.substr(at + 1, close - at - 1);
        if (body.find('"') == std::string_view::npos) {
          CHECK(field.value.data() == body.data() && field.value.size() == body.size(), field.line, field.column);
        } else {
          CHECK(field.value == unescape(body), field.line, field.column);
        }
      } else {
        CHECK(within(text, field.value), field.line, field.column);
        CHECK(field.value.empty() || field.value.data() == text.data() + at, field.line, field.column);
        CHECK(field.value.find('\n') == std::string_view::npos);
        CHECK(field.value.find(',') == std::string_view::npos);
        if (!field.value.empty()) {
          CHECK(field.value.front() != ' ' && field.value.front() != '\t');
          CHECK(field.value.back() != ' ' && field.value.back() != '\t');
        }
      }
    }
    // The raw text spans the record: it ends at or after the last field's first byte.
    CHECK(reader.raw().data() + reader.raw().size() >= text.data() + previous, fields.back().line,
          fields.back().column);
  }
  return 0;
}
