/// @file ingest_fuzz.cpp
/// @brief libFuzzer target: arbitrary bytes through shipment_log_builder::add_text (SPEC §1.1, §7).
///
/// Input layout: `fuzz_log.hpp` (a header byte 0 picks; the chunk size of the parallel ingest,
/// `ingest_options::chunk_bytes`, where the default, 4 MiB here, is one chunk for inputs of
/// fuzzing size).
///
/// Checked on every input:
/// - no crash, UB or leak (the sanitizers), and no exception other than parse_error for a bad
///   header, which keep_rejects mode must raise too, at the same place;
/// - keep_rejects mode: lines_read == accepted + rejected, per file and in total; every column
///   has one entry per accepted line; rejects have positions inside the input, a known reason
///   and a raw text taken from the input;
/// - feeding the same text again as a second file accepts nothing (SPEC §1.1: a log fed twice
///   never counts twice);
/// - small chunks with 8 threads (the many-core id pass) and the default chunks with 1 give the
///   same log (lines, rejects, lines read);
/// - plain lines read ahead as the GPU ingest does (`ingest_options::read_ahead`, with the device's
///   line reader run on the host), small chunks and 8 threads: the same log, rejects and first error;
/// - replaying the accepted fields through add_stored (as a ledger does) gives the same log;
/// - with max_rejects N, too_many_rejects is thrown exactly when there are more than N rejects,
///   after the same first N+1 rejects;
/// - fail-fast mode either throws the parse_error of keep_rejects mode's first reject (same
///   line, column, reason), or succeeds exactly when keep_rejects mode rejected nothing, with
///   the same accepted lines (every column, id, dictionary and source line).
#include <capledger/error.hpp>
#include <capledger/reference.hpp>
#include <capledger/shipments.hpp>

#include "device_read.hpp"
#include "fuzz_log.hpp"

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace capledger;

constexpr std::size_t default_chunk_bytes = std::size_t{4} << 20;
std::size_t g_chunk_bytes                  = default_chunk_bytes;

const country_table* g_countries = nullptr;
const chip_table* g_chips        = nullptr;

[[noreturn]] void fail(const char* what, const std::string& detail = {})
{
  std::fprintf(stderr, "ingest invariant violated: %s %s\n", what, detail.c_str());
  std::abort();
}

#define CHECK(cond, ...)                      \
  do {                                        \
    if (!(cond)) { fail(#cond, ##__VA_ARGS__); } \
  } while (0)

const std::set<std::string> known_reasons = {
  "WRONG_FIELD_COUNT", "UNTERMINATED_QUOTE", "BAD_QUOTE",    "BAD_DATE",       "BAD_QUANTITY",
  "UNKNOWN_COUNTRY",   "UNKNOWN_CHIP",       "UNKNOWN_PATHWAY", "DUPLICATE_ID", "TPP_OVERFLOW",
  "EMPTY_FIELD",       "BAD_TPP_PER_UNIT",   "MISSING_COLUMN",  "BAD_ENCODING",
};

/// Owned copies of the fields `on_accepted` passed, for replaying them through `add_stored`.
struct stored_line {
  std::string values[10];
  std::int64_t source_line = 0;
};

struct run_result {
  std::optional<shipment_log> log;
  std::vector<stored_line> stored;
  std::optional<parse_error> error;
  std::int64_t accepted_first = 0;  ///< on_accepted calls during the first file
  std::int64_t accepted_total = 0;
};

run_result ingest(std::string_view text, bool keep_rejects, bool twice, bool read_ahead = false)
{
  run_result result;
  ingest_options options;
  options.keep_rejects = keep_rejects;
  options.chunk_bytes  = g_chunk_bytes;
  if (read_ahead) {
    static const device_csv::tables tables = *detail::make_device_tables(*g_countries, *g_chips);
    options.read_ahead = [](std::string_view t, std::size_t from, std::size_t to,
                            const device_csv::line_layout& layout, detail::lines_read_ahead& out) {
      detail::read_ahead_on_host(t, from, to, layout, tables, out);
    };
  }
  options.on_accepted  = [&result](const shipment_fields& f) {
    ++result.accepted_total;
    CHECK(!f.shipment_id.empty());
    CHECK(f.source_line >= 1);
    stored_line line;
    const std::string_view values[10] = {f.shipment_id, f.date,     f.entity,  f.country,  f.chip,
                                         f.quantity,    f.pathway,  f.order_id, f.exporter, f.tpp_per_unit};
    for (int i = 0; i < 10; ++i) { line.values[i] = std::string(values[i]); }
    line.source_line = f.source_line;
    result.stored.push_back(std::move(line));
  };
  shipment_log_builder builder(*g_countries, *g_chips, options);
  try {
    builder.add_text("a.csv", text);
    result.accepted_first = result.accepted_total;
    if (twice) {
      builder.add_text("b.csv", text);
      CHECK(result.accepted_total == result.accepted_first, "a log fed twice counted twice");
    }
    result.log = builder.finish();
  } catch (const parse_error& e) {
    result.error = e;
  }
  // Any other exception escapes and libFuzzer reports it as a crash.
  return result;
}

void check_log(std::string_view text, const shipment_log& log, std::int64_t accepted, bool twice)
{
  const auto& c      = log.columns;
  const auto n       = static_cast<std::size_t>(c.size());
  CHECK(static_cast<std::int64_t>(n) == accepted);
  CHECK(c.entity.size() == n && c.country.size() == n && c.chip.size() == n && c.pathway.size() == n &&
        c.quantity.size() == n && c.tpp.size() == n && c.order.size() == n && c.exporter.size() == n);
  CHECK(log.id_end.size() == n && log.source_line.size() == n);
  CHECK(log.files.size() == (twice ? 2U : 1U));
  CHECK(log.file_end.size() == log.files.size());
  std::int64_t lines = 0;
  for (const auto& f : log.files) { lines += f.lines_read; }
  CHECK(lines == log.lines_read);
  CHECK(log.lines_read == c.size() + static_cast<std::int64_t>(log.rejects.size()),
        std::to_string(log.lines_read) + " != " + std::to_string(c.size()) + " + " +
          std::to_string(log.rejects.size()));
  if (twice) {
    CHECK(log.files[0].lines_read == log.files[1].lines_read);
    CHECK(log.file_end[0] == log.file_end[1]);  // the second file added no line
  }
  std::set<std::string_view> ids;
  for (std::size_t i = 0; i < n; ++i) {
    CHECK(c.quantity[i] != 0);
    CHECK(c.country[i] < g_countries->rows.size());
    CHECK(c.chip[i] < log.chips.rows.size());
    CHECK(c.entity[i] >= 0 && c.entity[i] < log.entities.size());
    CHECK(c.exporter[i] >= 0 && c.exporter[i] < log.exporters.size());
    CHECK(c.order[i] >= -1 && c.order[i] < log.orders.size());
    CHECK(i == 0 || log.source_line[i] > log.source_line[i - 1]);
    CHECK(ids.insert(log.shipment_id(static_cast<std::int64_t>(i))).second, "duplicate id accepted");
  }
  const std::int64_t max_line = 1 + static_cast<std::int64_t>(std::count(text.begin(), text.end(), '\n'));
  for (const auto& r : log.rejects) {
    CHECK(known_reasons.count(r.reason) == 1, r.reason);
    CHECK(r.line >= 1 && r.line <= max_line, std::to_string(r.line));
    CHECK(r.column >= 1 && r.column <= static_cast<std::int64_t>(text.size()) + 1, std::to_string(r.column));
    if (r.reason == "UNTERMINATED_QUOTE" || r.reason == "BAD_QUOTE") {
      // The record's lines through the error's: it started no earlier than line 1.
      const auto breaks = static_cast<std::int64_t>(std::count(r.raw.begin(), r.raw.end(), '\n'));
      CHECK(breaks < r.line, "the raw text of a quote error starts before the input");
    }
    CHECK(text.find(r.raw) != std::string_view::npos, "reject raw text is not from the input");
  }
}

bool same_lines(const shipment_log& a, const shipment_log& b)
{
  const auto& x = a.columns;
  const auto& y = b.columns;
  if (x.date != y.date || x.country != y.country || x.chip != y.chip || x.pathway != y.pathway ||
      x.quantity != y.quantity || x.tpp != y.tpp || x.order != y.order || a.id_bytes != b.id_bytes ||
      a.id_end != b.id_end || a.source_line != b.source_line) {
    return false;
  }
  for (std::size_t i = 0; i < x.entity.size(); ++i) {
    if (a.entities.text(x.entity[i]) != b.entities.text(y.entity[i]) ||
        a.exporters.text(x.exporter[i]) != b.exporters.text(y.exporter[i]) ||
        (x.order[i] >= 0 && a.orders.text(x.order[i]) != b.orders.text(y.order[i])) ||
        a.chips.rows[x.chip[i]].key != b.chips.rows[y.chip[i]].key) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/)
{
  g_countries = &fuzz::bundled_tables().countries;
  g_chips     = &fuzz::bundled_tables().chips;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  if (size == 0) { return 0; }
  const fuzz::log_input input    = fuzz::read_log_input(data, size);
  const std::string& text        = input.text;
  const std::size_t small_chunks = input.chunk_bytes == 0 ? default_chunk_bytes : input.chunk_bytes;
  g_chunk_bytes                  = small_chunks;
  // Small chunks with the many-core id pass (8 threads, host/many_cores.hpp), one chunk serially.
  omp_set_num_threads(8);
  const run_result keep  = ingest(text, /*keep_rejects=*/true, /*twice=*/true);
  const run_result fast  = ingest(text, /*keep_rejects=*/false, /*twice=*/false);
  const run_result ahead = ingest(text, /*keep_rejects=*/true, /*twice=*/false, /*read_ahead=*/true);
  omp_set_num_threads(1);
  g_chunk_bytes         = default_chunk_bytes;
  const run_result once = ingest(text, /*keep_rejects=*/true, /*twice=*/false);

  if (keep.error) {
    // Only a bad or missing header is fatal with keep_rejects; fail-fast stops at the same place.
    const auto& e = *keep.error;
    CHECK(e.reason() == "MISSING_COLUMN" || e.reason() == "DUPLICATE_COLUMN" || e.reason() == "BAD_QUOTE" ||
              e.reason() == "UNTERMINATED_QUOTE" || e.reason() == "MALFORMED_HEADER",
          e.what());
    CHECK(e.file() == "a.csv", e.what());
    CHECK(fast.error.has_value(), e.what());
    CHECK(fast.error->line() == e.line() && fast.error->column() == e.column() &&
            fast.error->reason() == e.reason(),
          std::string(e.what()) + " vs " + fast.error->what());
    CHECK(once.error.has_value() && once.error->line() == e.line() && once.error->column() == e.column() &&
          once.error->reason() == e.reason());
    CHECK(ahead.error.has_value() && ahead.error->line() == e.line() && ahead.error->column() == e.column() &&
          ahead.error->reason() == e.reason(), "lines read ahead: another first error");
    return 0;
  }
  CHECK(keep.log.has_value());
  const shipment_log& log = *keep.log;
  check_log(text, log, keep.accepted_first, /*twice=*/true);

  // A ledger replays the accepted fields of a night through add_stored: the log must be the one
  // add_text built (same lines, same count of lines read, same rejects).
  {
    CHECK(once.log.has_value() && !once.error);
    check_log(text, *once.log, once.accepted_first, /*twice=*/false);
    // Chunked as the input asked (keep) or in one chunk (once): the same lines and rejects.
    CHECK(same_lines(*once.log, log), "small chunks accepted other lines than one chunk");
    std::size_t first_rejects = 0;
    for (const auto& r : log.rejects) {
      if (r.file != "a.csv") { continue; }
      CHECK(first_rejects < once.log->rejects.size(), "small chunks rejected more lines");
      const auto& o = once.log->rejects[first_rejects++];
      CHECK(r.line == o.line && r.column == o.column && r.reason == o.reason && r.raw == o.raw &&
              r.detail == o.detail,
            "small chunks: " + r.reason + " at " + std::to_string(r.line) + ":" + std::to_string(r.column) +
              ", one chunk: " + o.reason + " at " + std::to_string(o.line) + ":" + std::to_string(o.column));
    }
    CHECK(first_rejects == once.log->rejects.size(), "small chunks rejected fewer lines");
    // Lines read ahead (the GPU ingest's integration): the same log, line for line, reject for reject.
    CHECK(ahead.log.has_value() && !ahead.error, "lines read ahead: an error one chunk did not have");
    check_log(text, *ahead.log, ahead.accepted_first, /*twice=*/false);
    CHECK(same_lines(*ahead.log, *once.log), "lines read ahead: other lines accepted");
    CHECK(ahead.log->lines_read == once.log->lines_read && ahead.log->rejects.size() == once.log->rejects.size(),
          "lines read ahead: other lines read or rejected");
    for (std::size_t i = 0; i < once.log->rejects.size(); ++i) {
      const rejected_line& a = ahead.log->rejects[i];
      const rejected_line& o = once.log->rejects[i];
      CHECK(a.line == o.line && a.column == o.column && a.reason == o.reason && a.raw == o.raw &&
              a.detail == o.detail,
            "lines read ahead: reject " + std::to_string(i) + " " + a.reason + " vs " + o.reason);
    }
    CHECK(log.files[0].lines_read == once.log->lines_read);
    ingest_options options;
    options.keep_rejects = true;
    shipment_log_builder replay(*g_countries, *g_chips, options);
    std::size_t next_line = 0;
    replay.add_stored(once.log->files[0],
                      [&](shipment_fields& f) {
                        if (next_line == once.stored.size()) { return false; }
                        const stored_line& l = once.stored[next_line++];
                        f = shipment_fields{l.values[0], l.values[1], l.values[2], l.values[3], l.values[4],
                                            l.values[5], l.values[6], l.values[7], l.values[8], l.values[9],
                                            l.source_line};
                        return true;
                      },
                      once.log->rejects);
    const shipment_log replayed = replay.finish();
    CHECK(same_lines(replayed, *once.log), "add_stored built another log than add_text");
    CHECK(replayed.lines_read == once.log->lines_read && replayed.rejects.size() == once.log->rejects.size());
  }

  // --max-rejects N: with more than N rejects the run stops with too_many_rejects once the
  // (N+1)-th is met, having rejected the same first N+1 lines; otherwise nothing changes.
  if (!once.log->rejects.empty()) {
    const std::int64_t max_rejects = static_cast<std::int64_t>(size % 4);
    ingest_options options;
    options.keep_rejects = true;
    options.max_rejects  = max_rejects;
    options.chunk_bytes  = small_chunks;
    shipment_log_builder limited(*g_countries, *g_chips, options);
    bool stopped = false;
    try {
      limited.add_text("a.csv", text);
    } catch (const too_many_rejects&) {
      stopped = true;
    }
    const auto& all   = once.log->rejects;
    const bool over   = static_cast<std::int64_t>(all.size()) > max_rejects;
    CHECK(stopped == over, "too_many_rejects thrown: " + std::to_string(stopped) + ", rejects " +
                             std::to_string(all.size()) + ", max " + std::to_string(max_rejects));
    const auto& got = limited.rejects();
    CHECK(got.size() == (over ? static_cast<std::size_t>(max_rejects) + 1 : all.size()));
    for (std::size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i].line == all[i].line && got[i].column == all[i].column && got[i].reason == all[i].reason);
    }
  }

  // The rejects of the first file, in order.
  std::vector<const rejected_line*> first_file;
  for (const auto& r : log.rejects) {
    if (r.file == "a.csv") { first_file.push_back(&r); }
  }
  if (fast.error) {
    const auto& e = *fast.error;
    CHECK(!first_file.empty(), std::string("fail-fast threw, keep_rejects rejected nothing: ") + e.what());
    const rejected_line& r = *first_file.front();
    CHECK(e.line() == r.line && e.column() == r.column && e.reason() == r.reason,
          std::string(e.what()) + " vs first reject " + r.reason + " at " + std::to_string(r.line) + ":" +
            std::to_string(r.column));
  } else {
    CHECK(fast.log.has_value());
    CHECK(first_file.empty(), "fail-fast accepted a file that keep_rejects rejected lines of");
    check_log(text, *fast.log, fast.accepted_first, /*twice=*/false);
    CHECK(same_lines(*fast.log, log), "fail-fast and keep_rejects accepted different lines");
  }
  return 0;
}
