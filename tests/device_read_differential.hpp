/// @file device_read_differential.hpp
/// @brief The contract of `kernels/device_csv.cuh` checked on one log text against
/// `shipment_log_builder`: shared by tests/device_csv_test.cpp and tests/fuzz/device_read_fuzz.cpp.
///
/// The log's header is its first record (read by `fast_csv_reader`, as the builder reads it);
/// `read_ahead_on_host` reads every line after it. A line the device calls plain must be a line
/// the builder accepted (matched by source line), with the same date, country, chip, pathway,
/// quantity, tpp and texts, and hashes equal to `detail::hash_bytes` of its spans. Two
/// exceptions, both outside what one line can know, and both by the contract's own words:
/// - a continuation line of a multi-line record (a line where no record of the host's reader
///   starts): the host's reader, which starts the record on an earlier line with a quote, says
///   where it ends, and the integration skips the lines it covers. Such lines are counted, not
///   compared;
/// - a line rejected for what spans lines: `DUPLICATE_ID`, and `TPP_OVERFLOW` of the log's totals
///   (not the line's own quantity x tpp_per_unit).
#pragma once

#include "csv.hpp"
#include "device_read.hpp"
#include "fast_csv.hpp"
#include "string_index.hpp"

#include <capledger/error.hpp>
#include <capledger/shipments.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace capledger::test {

/// @brief What one differential run saw (for coverage assertions).
struct device_read_counts {
  std::size_t lines        = 0;  ///< lines after the header
  std::size_t plain        = 0;  ///< lines the device read
  std::size_t compared     = 0;  ///< plain lines matched to an accepted line and compared
  std::size_t continuation = 0;  ///< plain lines inside a multi-line record (skipped by the integration)
  std::size_t accepted     = 0;  ///< lines the builder accepted
};

/// @return "" when @p text keeps the contract, else the first violation, for people
inline std::string device_read_violation(std::string_view text, const country_table& countries,
                                         const chip_table& chips, std::size_t chunk_bytes,
                                         device_read_counts* counts = nullptr)
{
  using std::to_string;
  const auto tables = detail::make_device_tables(countries, chips);
  if (!tables) { return "make_device_tables: the tables do not fit"; }

  detail::fast_csv_reader reader(text);
  if (reader.next() != detail::csv_status::record) {
    return "";
  }  // no header: the builder throws, nothing to read
  device_csv::line_layout layout{};
  bool layout_threw = false;
  try {
    // As the builder: a header it refuses, or `\n\r` line ends after it, gives no layout.
    const detail::csv_header header(reader.fields(), "log.csv");
    detail::refuse_lf_cr_line_ends(text, reader.position(), reader.line(), "log.csv");
    layout = detail::make_line_layout(header);
  } catch (const parse_error&) {
    layout_threw = true;  // a malformed header or a column named twice: the builder throws too
  }

  // The builder's view, with every accepted line's fields as the reader gave them.
  struct accepted_fields {
    std::string id, entity, order_id, exporter;
  };
  std::unordered_map<std::int64_t, accepted_fields> fields_of_line;
  ingest_options options;
  options.keep_rejects = true;
  options.chunk_bytes  = chunk_bytes;
  options.on_accepted  = [&](const shipment_fields& f) {
    fields_of_line[f.source_line] = {std::string(f.shipment_id), std::string(f.entity),
                                     std::string(f.order_id), std::string(f.exporter)};
  };
  shipment_log_builder builder(countries, chips, options);
  try {
    builder.add_text("log.csv", text);
  } catch (const parse_error& e) {
    // Only a header the host refuses: then the device must read no line of the file.
    if (!layout_threw && layout.field_count != 0) {
      return std::string("the builder refused the header (") + e.what() + ") but the layout reads lines";
    }
    return "";
  }
  if (layout_threw) { return "make_line_layout threw on a header the builder took"; }
  const shipment_log log = builder.finish();

  // Where the host's reader starts each record after the header.
  const std::size_t begin       = reader.position();
  const std::int64_t first_line = reader.line();
  std::unordered_set<std::size_t> record_starts;
  for (detail::csv_status status; (status = reader.next()) != detail::csv_status::end;) {
    record_starts.insert(reader.record_start());
  }

  detail::lines_read_ahead ahead;
  detail::read_ahead_on_host(text, begin, text.size(), layout, *tables, ahead);
  if (ahead.values.size() != ahead.size()) { return "read_ahead_on_host: columns of different sizes"; }

  std::unordered_map<std::int64_t, std::size_t> accepted_at;  // source line -> log line
  for (std::size_t i = 0; i < log.source_line.size(); ++i) { accepted_at[log.source_line[i]] = i; }
  std::unordered_map<std::int64_t, std::vector<const rejected_line*>> rejects_at;
  for (const rejected_line& r : log.rejects) { rejects_at[r.line].push_back(&r); }

  device_read_counts seen;
  for (std::size_t at = begin; at < text.size(); ++seen.lines) {  // each `\n` ends a line
    const std::size_t newline = text.find('\n', at);
    at                        = newline == std::string_view::npos ? text.size() : newline + 1;
  }
  seen.accepted    = log.source_line.size();
  const char* base = text.data() + begin;
  std::size_t counted_to = begin;       // line breaks counted up to here
  std::int64_t line      = first_line;  // the line at `counted_to` (the reader numbers lines so too)
  for (std::size_t k = 0; k < ahead.size(); ++k) {
    // Plain lines only, in text order, each at a line start.
    const std::size_t start = begin + ahead.line_start[k];
    if (start < counted_to || (k > 0 && start == counted_to)) {
      return "plain line " + to_string(k) + " is not after the one before";
    }
    if (start > begin && text[start - 1] != '\n') {
      return "plain line " + to_string(k) + " does not follow a newline";
    }
    line += std::count(text.begin() + static_cast<std::ptrdiff_t>(counted_to),
                       text.begin() + static_cast<std::ptrdiff_t>(start), '\n');
    counted_to = start;
    ++seen.plain;
    const std::string where = "line " + to_string(line) + " (plain): ";
    if (record_starts.count(start) == 0) {
      ++seen.continuation;
      continue;
    }
    const auto at = accepted_at.find(line);
    if (at == accepted_at.end()) {
      const auto r = rejects_at.find(line);
      if (r == rejects_at.end()) { return where + "neither accepted nor rejected"; }
      for (const rejected_line* reject : r->second) {
        const bool spans_lines =
            reject->reason == "DUPLICATE_ID" ||
            (reject->reason == "TPP_OVERFLOW" && reject->detail.rfind("the log's totals", 0) == 0);
        if (!spans_lines) { return where + "rejected by the host: " + reject->reason + " " + reject->detail; }
      }
      continue;
    }
    ++seen.compared;
    const std::size_t i             = at->second;
    const device_csv::plain_line& p = ahead.values[k];
    const auto span = [&](device_csv::text_span s) { return std::string_view(base + s.offset, s.length); };
    const shipment_columns& c = log.columns;
    if (c.date[i] != p.day) { return where + "day " + to_string(p.day) + ", host " + to_string(c.date[i]); }
    if (c.country[i] != p.country) {
      return where + "country " + to_string(p.country) + ", host " + to_string(c.country[i]);
    }
    if (c.chip[i] != p.chip) {
      return where + "chip " + to_string(p.chip) + ", host " + to_string(c.chip[i]);
    }
    if (c.pathway[i] != p.pathway) {
      return where + "pathway " + to_string(p.pathway) + ", host " + to_string(c.pathway[i]);
    }
    if (c.quantity[i] != p.quantity) {
      return where + "quantity " + to_string(p.quantity) + ", host " + to_string(c.quantity[i]);
    }
    if (c.tpp[i] != p.tpp) { return where + "tpp " + to_string(p.tpp) + ", host " + to_string(c.tpp[i]); }
    if (log.shipment_id(static_cast<std::int64_t>(i)) != span(p.id)) { return where + "shipment id differs"; }
    if (log.entities.text(c.entity[i]) != span(p.entity)) { return where + "entity differs"; }
    if (log.exporters.text(c.exporter[i]) != span(p.exporter)) { return where + "exporter differs"; }
    if (c.pathway[i] == static_cast<std::uint8_t>(pathway::lpp) &&
        log.orders.text(c.order[i]) != span(p.order)) {
      return where + "LPP order differs";
    }
    const auto fields = fields_of_line.find(line);
    if (fields == fields_of_line.end()) { return where + "accepted without on_accepted's fields"; }
    const accepted_fields& f = fields->second;
    if (f.id != span(p.id) || f.entity != span(p.entity) || f.exporter != span(p.exporter)) {
      return where + "a text differs from the reader's field";
    }
    if ((f.order_id.empty() ? f.id : f.order_id) != span(p.order)) { return where + "order differs"; }
    if (p.id_hash != detail::hash_bytes(span(p.id)) || p.entity_hash != detail::hash_bytes(span(p.entity)) ||
        p.order_hash != detail::hash_bytes(span(p.order)) ||
        p.exporter_hash != detail::hash_bytes(span(p.exporter))) {
      return where + "a hash differs from detail::hash_bytes";
    }
  }
  if (counts != nullptr) { *counts = seen; }
  return "";
}

}  // namespace capledger::test
