/// @file csv_differential_fuzz.cpp
/// @brief libFuzzer target: detail::csv_reader against a deliberately simple reference reader.
///
/// The reference below is written from SPEC §1.1 / §7 and RFC 4180, one byte at a time as an
/// explicit state machine, sharing no code with host/csv.cpp. On every input both readers must
/// agree call by call: the status, every field's value, line and column, the record's line and
/// raw text, and an error's line and column.
///
/// The format, as the reference implements it (where RFC 4180 is silent or stricter, the
/// choice of capledger's reader, documented in host/csv.hpp, is taken):
/// - a line end is `\n`, `\r\n`, or a lone `\r` as the very last byte (a truncated `\r\n`);
///   any other `\r` is data;
/// - a leading UTF-8 byte-order mark is skipped, but its 3 bytes count in line 1's columns;
/// - a blank line (nothing before its line end) is skipped, and counted;
/// - spaces and tabs before a field (and before its opening quote) and after an unquoted
///   field or a closing quote are not part of the field; columns point at the field's first
///   byte after the leading spaces (the opening quote for a quoted field);
/// - a quoted field holds anything, `""` is one quote, `\n` inside it starts a new physical line;
/// - a quote inside an unquoted field is data (lenient, as the reader is);
/// - after a closing quote (and spaces) only `,`, a line end or the end of the text may follow,
///   else `bad_quote` at that byte; a quote never closed is `unterminated_quote` at the opening
///   quote; after either error, reading resumes at the start of the physical line that follows
///   the error position; the raw text of an error runs from the record's first byte to the end
///   of the physical line holding the error position;
/// - a record's raw text runs from its first byte to its line end, excluded.
///
/// The fast parser of issue 5 (host/fast_csv.hpp, `fast_csv_reader`) is compared too when it is
/// built in (run.sh defines CAPLEDGER_FUZZ_FAST_CSV when host/fast_csv*.cpp exist): read whole,
/// it must give the reference's results; read in chunks (limits at byte offsets derived from the
/// input, each chunk's reader starting at the previous one's `position()` and `line()`, as a
/// parallel ingest stitches chunks), the concatenated results must be the same.
#include "csv.hpp"
#ifdef CAPLEDGER_FUZZ_FAST_CSV
#include "fast_csv.hpp"
#endif

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

// ---- the reference reader ---------------------------------------------------------------------

struct ref_field {
  std::string value;
  std::int64_t line   = 0;
  std::int64_t column = 0;
};

/// What one call of `next()` returns, as plain data.
struct ref_result {
  csv_status status = csv_status::end;
  std::vector<ref_field> fields;
  std::string raw;
  std::int64_t record_line  = 0;
  std::int64_t error_line   = 0;
  std::int64_t error_column = 0;
};

class reference_reader {
 public:
  explicit reference_reader(std::string_view text) : t_(text)
  {
    if (t_.size() >= 3 && t_[0] == '\xEF' && t_[1] == '\xBB' && t_[2] == '\xBF') { i_ = 3; }
  }

  ref_result next()
  {
    ref_result r;
    enum class state { line_start, field_start, unquoted, quoted, quote_in_quoted, after_quote };
    state s = state::line_start;
    std::size_t record_start = 0;
    std::size_t quote_at = 0, quote_line_start = 0;
    std::int64_t quote_line = 0;
    ref_field field;
    std::string pending_spaces;  // spaces/tabs inside an unquoted field, kept only if text follows

    while (true) {
      const bool eof = i_ >= t_.size();
      const std::size_t eol = eof ? 0 : line_end_length(i_);  // > 0: a line end starts here
      const char c = eof ? '\0' : t_[i_];
      switch (s) {
        case state::line_start:
          if (eof) {
            r.status = csv_status::end;
            return r;
          }
          if (eol > 0) {  // blank line
            advance_line(eol);
            continue;
          }
          record_start  = i_;
          r.record_line = line_;
          s             = state::field_start;
          continue;

        case state::field_start:
          if (!eof && (c == ' ' || c == '\t')) {
            ++i_;
            continue;
          }
          field        = ref_field{};
          field.line   = line_;
          field.column = column();
          pending_spaces.clear();
          if (!eof && c == '"') {
            quote_at = i_, quote_line = line_, quote_line_start = line_start_;
            ++i_;
            s = state::quoted;
          } else {
            s = state::unquoted;
          }
          continue;

        case state::unquoted:
          if (eof || eol > 0 || c == ',') {
            r.fields.push_back(field);  // trailing spaces (pending_spaces) dropped
            if (c == ',' && !eof && eol == 0) {
              ++i_;
              s = state::field_start;
              continue;
            }
            return finish_record(r, record_start, eof ? 0 : eol);
          }
          if (c == ' ' || c == '\t') {
            pending_spaces.push_back(c);
          } else {
            field.value += pending_spaces;
            pending_spaces.clear();
            field.value.push_back(c);
          }
          ++i_;
          continue;

        case state::quoted:
          if (eof) {
            return error(r, csv_status::unterminated_quote, record_start, quote_at, quote_line,
                         quote_line_start);
          }
          if (c == '"') {
            ++i_;
            s = state::quote_in_quoted;
            continue;
          }
          field.value.push_back(c);
          ++i_;
          if (c == '\n') {
            ++line_;
            line_start_ = i_;
          }
          continue;

        case state::quote_in_quoted:  // a quote was just read inside a quoted field
          if (!eof && c == '"') {
            field.value.push_back('"');
            ++i_;
            s = state::quoted;
          } else {
            s = state::after_quote;
          }
          continue;

        case state::after_quote:
          if (!eof && (c == ' ' || c == '\t')) {
            ++i_;
            continue;
          }
          if (!eof && eol == 0 && c != ',') {
            return error(r, csv_status::bad_quote, record_start, i_, line_, line_start_);
          }
          r.fields.push_back(field);
          if (!eof && c == ',') {
            ++i_;
            s = state::field_start;
            continue;
          }
          return finish_record(r, record_start, eof ? 0 : eol);
      }
    }
  }

 private:
  std::string_view t_;
  std::size_t i_ = 0;
  std::int64_t line_ = 1;
  std::size_t line_start_ = 0;

  std::int64_t column() const { return static_cast<std::int64_t>(i_ - line_start_) + 1; }

  /// Length of the line end at @p at: 1 for `\n`, 2 for `\r\n`, 1 for `\r` as the last byte.
  std::size_t line_end_length(std::size_t at) const
  {
    if (t_[at] == '\n') { return 1; }
    if (t_[at] == '\r') {
      if (at + 1 == t_.size()) { return 1; }
      if (t_[at + 1] == '\n') { return 2; }
    }
    return 0;
  }

  void advance_line(std::size_t eol)
  {
    i_ += eol;
    ++line_;
    line_start_ = i_;
  }

  ref_result& finish_record(ref_result& r, std::size_t record_start, std::size_t eol)
  {
    r.status = csv_status::record;
    r.raw.assign(t_.substr(record_start, i_ - record_start));
    if (eol > 0) {
      advance_line(eol);
    }
    return r;
  }

  ref_result& error(ref_result& r, csv_status status, std::size_t record_start, std::size_t at,
                    std::int64_t at_line, std::size_t at_line_start)
  {
    r.status       = status;
    r.fields.clear();
    r.error_line   = at_line;
    r.error_column = static_cast<std::int64_t>(at - at_line_start) + 1;
    // Raw: the record's physical lines through the one holding the error position, without its
    // `\n` or `\r\n` (or a final lone `\r`).
    std::size_t end = at;
    while (end < t_.size() && t_[end] != '\n') { ++end; }
    if (end > record_start && t_[end - 1] == '\r') { --end; }
    r.raw.assign(t_.substr(record_start, end - record_start));
    // Resume after the physical line holding the error position.
    i_          = at;
    line_       = at_line;
    line_start_ = at_line_start;
    while (i_ < t_.size() && t_[i_] != '\n') { ++i_; }
    if (i_ < t_.size()) { advance_line(1); }
    return r;
  }
};

// ---- comparison -------------------------------------------------------------------------------

const char* name(csv_status s)
{
  switch (s) {
    case csv_status::record: return "record";
    case csv_status::end: return "end";
    case csv_status::unterminated_quote: return "unterminated_quote";
    case csv_status::bad_quote: return "bad_quote";
  }
  return "?";
}

void print_escaped(std::string_view s)
{
  std::fputc('"', stderr);
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '"' && c != '\\') {
      std::fputc(c, stderr);
    } else {
      std::fprintf(stderr, "\\x%02x", u);
    }
  }
  std::fputc('"', stderr);
}

/// Reports a disagreement of @p impl with the reference at call @p call, then aborts.
[[noreturn]] void mismatch(const char* impl, std::size_t call, const char* what, const ref_result& want,
                           csv_status got_status, std::string_view got_raw)
{
  std::fprintf(stderr, "%s disagrees with the reference at call %zu: %s\n  reference: %s line %lld raw ",
               impl, call, what, name(want.status), static_cast<long long>(want.record_line));
  print_escaped(want.raw);
  std::fprintf(stderr, " error %lld:%lld\n  fields:", static_cast<long long>(want.error_line),
               static_cast<long long>(want.error_column));
  for (const auto& f : want.fields) {
    std::fprintf(stderr, " %lld:%lld=", static_cast<long long>(f.line), static_cast<long long>(f.column));
    print_escaped(f.value);
  }
  std::fprintf(stderr, "\n  %s: %s raw ", impl, name(got_status));
  print_escaped(got_raw);
  std::fprintf(stderr, "\n");
  std::abort();
}

/// Compares one call's results of a reader with csv_reader's observable API with the reference.
template <class Reader>
void compare_call(const char* impl, Reader& reader, csv_status got, std::size_t call, const ref_result& want)
{
  if (got != want.status) { mismatch(impl, call, "status", want, got, {}); }
  if (got == csv_status::end) { return; }
  const std::string_view raw = reader.raw();
  if (raw != want.raw) { mismatch(impl, call, "raw text", want, got, raw); }
  if (reader.record_line() != want.record_line) {
    std::fprintf(stderr, "  %s record line %lld\n", impl, static_cast<long long>(reader.record_line()));
    mismatch(impl, call, "record line", want, got, raw);
  }
  if (got != csv_status::record) {
    if (reader.error_line() != want.error_line || reader.error_column() != want.error_column) {
      std::fprintf(stderr, "  %s error at %lld:%lld\n", impl, static_cast<long long>(reader.error_line()),
                   static_cast<long long>(reader.error_column()));
      mismatch(impl, call, "error position", want, got, raw);
    }
    return;
  }
  const auto& fields = reader.fields();
  if (fields.size() != want.fields.size()) {
    std::fprintf(stderr, "  %s has %zu fields\n", impl, fields.size());
    mismatch(impl, call, "field count", want, got, raw);
  }
  for (std::size_t f = 0; f < fields.size(); ++f) {
    if (fields[f].value != want.fields[f].value || fields[f].line != want.fields[f].line ||
        fields[f].column != want.fields[f].column) {
      std::fprintf(stderr, "  %s field %zu: %lld:%lld=", impl, f, static_cast<long long>(fields[f].line),
                   static_cast<long long>(fields[f].column));
      print_escaped(fields[f].value);
      std::fprintf(stderr, "\n");
      mismatch(impl, call, "field", want, got, raw);
    }
  }
}

/// Runs a reader over the whole text: its results must be exactly the reference's.
template <class Reader>
void compare(const char* impl, Reader& reader, const std::vector<ref_result>& expected)
{
  for (std::size_t call = 0; call < expected.size(); ++call) {
    compare_call(impl, reader, reader.next(), call, expected[call]);
  }
}

/// Runs a reader that may stop early (a chunk): its results up to its `end` must be the
/// reference's from call @p first on. @return the index of the first reference result it did not give
template <class Reader>
std::size_t compare_prefix(const char* impl, Reader& reader, const std::vector<ref_result>& expected,
                           std::size_t first)
{
  std::size_t call = first;
  while (true) {
    const csv_status got = reader.next();
    if (got == csv_status::end) { return call; }
    if (call >= expected.size()) { mismatch(impl, call, "record after the end", expected.back(), got, reader.raw()); }
    compare_call(impl, reader, got, call, expected[call]);
    ++call;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  const std::string owned(reinterpret_cast<const char*>(data), size);
  const std::string_view text(owned);

  // The reference's results up to and including `end` (which it must reach: each call consumes
  // at least one byte or returns `end`).
  std::vector<ref_result> expected;
  reference_reader ref(text);
  while (true) {
    if (expected.size() > size + 2) { std::abort(); }
    expected.push_back(ref.next());
    if (expected.back().status == csv_status::end) { break; }
  }

  csv_reader reader(text);
  compare("csv_reader", reader, expected);

#ifdef CAPLEDGER_FUZZ_FAST_CSV
  using capledger::detail::fast_csv_reader;
  {
    fast_csv_reader fast(text);
    compare("fast_csv_reader", fast, expected);
  }
  // Chunked, as a parallel ingest reads: chunk limits every `step` bytes (derived from the
  // input's bytes, so the fuzzer explores it), each reader starting where the last one stopped.
  std::size_t hash = 0;
  for (const auto byte : owned) { hash = hash * 31 + static_cast<unsigned char>(byte); }
  for (const std::size_t step : {std::size_t{1} + hash % 97, std::size_t{1} + size / 2}) {
    std::size_t begin = 0, call = 0, chunks = 0;
    std::int64_t line = 1;
    while (true) {
      if (++chunks > size + 2) { std::abort(); }  // every chunk must move on
      std::size_t limit = std::min(size, (begin / step + 1) * step);
      // A limit inside a byte-order mark would make the next chunk start after it with line 1's
      // columns counted from there; a caller cuts chunks at line starts, which never fall there.
      if (begin == 0 && text.substr(0, 3) == "\xEF\xBB\xBF") { limit = std::max(limit, std::min(size, std::size_t{4})); }
      fast_csv_reader chunk(text, begin, limit, line);
      call = compare_prefix("fast_csv_reader (chunk)", chunk, expected, call);
      if (chunk.position() >= size) { break; }
      if (chunk.position() <= begin) {  // begin < limit: the chunk holds a line start
        std::fprintf(stderr, "fast_csv_reader chunk [%zu, %zu) stopped at %zu\n", begin, limit, chunk.position());
        std::abort();
      }
      begin = chunk.position();
      line  = chunk.line();
    }
    // The last chunk's reader reached the end: then no result of the reference is left over.
    if (expected[call].status != csv_status::end) {
      mismatch("fast_csv_reader (chunks)", call, "chunks ended early", expected[call], csv_status::end, {});
    }
  }
  // `peek_plain_fields` (a replay's look at two fields of a line): where it gives them, `next`
  // (compared with the reference above) reads a record holding them, and skipping the line
  // lands where reading it does; where it gives none, nothing was consumed.
  {
    const std::size_t first = hash % 4, second = (hash >> 8) % 4;
    fast_csv_reader peeking(text), reading(text);
    for (std::size_t call = 0;; ++call) {
      const auto fields       = peeking.peek_plain_fields(first, second);
      const csv_status status = reading.next();
      if (fields) {
        if (status != csv_status::record || reading.fields().size() <= std::max(first, second) ||
            reading.fields()[first].value != fields->first ||
            reading.fields()[second].value != fields->second) {
          std::fprintf(stderr, "peek_plain_fields(%zu, %zu), call %zu: not the fields next reads\n", first,
                       second, call);
          std::abort();
        }
        peeking.skip_peeked();
      } else if (peeking.next() != status) {
        std::fprintf(stderr, "peek_plain_fields(%zu, %zu), call %zu: next after a declined peek differs\n",
                     first, second, call);
        std::abort();
      }
      if (peeking.position() != reading.position() || peeking.line() != reading.line()) {
        std::fprintf(stderr, "peek_plain_fields(%zu, %zu), call %zu: position differs\n", first, second,
                     call);
        std::abort();
      }
      if (status == csv_status::end) { break; }
    }
  }
#else
  // Built without the fast parser (no host/fast_csv*.cpp): only csv_reader is compared.
  // TODO(fast parser): run.sh builds this branch in once host/fast_csv*.cpp exists.
#endif
  return 0;
}
