/// @file partitioned_aggregate.cpp
/// @brief `aggregate_in_parts`: one aggregation as several passes over key ranges of a log.
#include <capledger/backend.hpp>
#include <capledger/error.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace capledger {

namespace {

/// Keys [lo, hi) and how many lines have them.
struct key_range {
  std::int64_t lo = 0, hi = 0, lines = 0;
};

/// The lines of one part, gathered in input order, and the input position of each.
struct part_lines {
  shipment_columns columns;
  std::vector<std::int64_t> position;

  /// Gathers the lines i of @p lines whose key_of(i) is in @p range (a negative key: no part).
  template <typename KeyOf>
  void gather(const shipment_view& lines, KeyOf key_of, const key_range& range)
  {
    shipment_columns& c = columns;
    c.clear();
    position.clear();
    // Sized once: a part may be most of the host's memory's worth of lines.
    const auto n = static_cast<std::size_t>(range.lines);
    c.date.reserve(n), c.entity.reserve(n), c.country.reserve(n), c.chip.reserve(n), c.pathway.reserve(n);
    c.quantity.reserve(n), c.tpp.reserve(n), c.order.reserve(n), c.exporter.reserve(n), position.reserve(n);
    for (std::int64_t i = 0; i < lines.size; ++i) {
      const std::int64_t key = key_of(i);
      if (key < range.lo || key >= range.hi) { continue; }
      c.date.push_back(lines.date[i]);
      c.entity.push_back(lines.entity[i]);
      c.country.push_back(lines.country[i]);
      c.chip.push_back(lines.chip[i]);
      c.pathway.push_back(lines.pathway[i]);
      c.quantity.push_back(lines.quantity[i]);
      c.tpp.push_back(lines.tpp[i]);
      c.order.push_back(lines.order[i]);
      c.exporter.push_back(lines.exporter[i]);
      position.push_back(i);
    }
  }
  [[nodiscard]] std::int64_t input_position(std::int64_t line) const
  {
    return line < 0 ? line : position[static_cast<std::size_t>(line)];
  }
};

/// Consecutive key ranges covering every key with lines, each with at most @p max_lines.
template <typename KeyOf>
std::vector<key_range> cut_key_ranges(const shipment_view& lines, KeyOf key_of, std::int64_t keys,
                                      std::int64_t max_lines, const char* key_name,
                                      const char* lines_name = "lines")
{
  std::vector<std::int64_t> count(static_cast<std::size_t>(keys), 0);
  for (std::int64_t i = 0; i < lines.size; ++i) {
    const std::int64_t key = key_of(i);
    if (key < 0) { continue; }
    CAPLEDGER_EXPECTS(key < keys, std::string("a line's ") + key_name + " code is outside its dictionary");
    ++count[static_cast<std::size_t>(key)];
  }
  std::vector<key_range> ranges;
  for (std::int64_t key = 0; key < keys; ++key) {
    const std::int64_t n = count[static_cast<std::size_t>(key)];
    if (n > max_lines) {
      throw gpu_memory_short("one " + std::string(key_name) + " has " + std::to_string(n) + " " + lines_name +
                             ", more than the " + std::to_string(max_lines) +
                             " one pass of the GPU backend can hold");
    }
    if (n == 0) { continue; }
    if (ranges.empty() || ranges.back().lines + n > max_lines) { ranges.push_back({key, key, 0}); }
    ranges.back().hi = key + 1;
    ranges.back().lines += n;
  }
  return ranges;
}

void add_totals(std::vector<group_total>& into, const std::vector<group_total>& part)
{
  for (std::size_t k = 0; k < into.size(); ++k) { into[k] += part[k]; }
}

/// Appends a pass's sorted rows (keys above every row before) with input positions.
template <typename Row, typename Remap>
void append_rows(std::vector<Row>& into, const std::vector<Row>& part, Remap remap)
{
  for (Row row : part) {
    remap(row);
    into.push_back(row);
  }
}

}  // namespace

aggregation aggregate_in_parts(const shipment_view& lines, const rule_context& rules,
                               const dictionary_sizes& sizes, std::int64_t max_lines,
                               const aggregate_pass& pass)
{
  // A log that fits takes one pass; an empty one needs no room at all.
  if (lines.size <= std::max<std::int64_t>(max_lines, 0)) { return pass(lines); }
  if (max_lines <= 0) {
    throw gpu_memory_short(
        "not one line fits in a pass of the GPU backend (its tables alone fill the free GPU memory)");
  }

  // Three keyings: entity ranges for every total and every check keyed by entity first (NVEU,
  // LPP per consignee and year, prohibited, unauthorized), whose rows then come out in key order
  // range after range; then, among the lines that can count (dated in the window up to as_of,
  // every check's range), capped countries' cap-pathway lines for the country-cap crossings and
  // LPP lines for the per-order limit. All three are cut before any pass: a key too large for
  // one pass is refused before the GPU does any work.
  const auto entity_of = [&](std::int64_t i) { return std::int64_t{lines.entity[i]}; };
  const day_t last_day = std::min(rules.window_end, rules.as_of);
  const auto in_window = [&](std::int64_t i) {
    return lines.date[i] >= rules.window_start && lines.date[i] <= last_day;
  };
  const auto capped_country = [&](std::int64_t i) -> std::int64_t {
    const std::uint16_t country = lines.country[i];
    return in_window(i) && ((rules.country_cap_pathways >> lines.pathway[i]) & 1U) != 0 &&
                   rules.country_cap_tpp[country] >= 0
               ? country
               : -1;
  };
  const auto lpp_order = [&](std::int64_t i) -> std::int64_t {
    return in_window(i) && lines.pathway[i] == static_cast<std::uint8_t>(pathway::lpp) ? lines.order[i] : -1;
  };
  const auto entity_ranges  = cut_key_ranges(lines, entity_of, sizes.entities, max_lines, "entity");
  const auto country_ranges = cut_key_ranges(lines, capped_country, sizes.countries, max_lines, "country",
                                             "cap-pathway lines in the window");
  const auto order_ranges   = cut_key_ranges(lines, lpp_order, sizes.orders, max_lines, "LPP order");

  aggregation out = empty_aggregation(sizes);
  part_lines part;
  const auto running = [&](keyed_running_total& row) {
    row.first_crossing.line = part.input_position(row.first_crossing.line);
  };
  const auto first = [&](keyed_first_line& row) { row.first_line = part.input_position(row.first_line); };
  for (const key_range& range : entity_ranges) {
    part.gather(lines, entity_of, range);
    const aggregation a = pass(part.columns.view());
    out.lines_used += a.lines_used;
    add_totals(out.by_country, a.by_country);
    add_totals(out.by_entity, a.by_entity);
    add_totals(out.by_chip, a.by_chip);
    add_totals(out.by_exporter, a.by_exporter);
    for (std::size_t c = 0; c < out.country_cap_total.size(); ++c) {
      out.country_cap_total[c] += a.country_cap_total[c];
    }
    out.by_entity_country.insert(out.by_entity_country.end(), a.by_entity_country.begin(),
                                 a.by_entity_country.end());
    append_rows(out.nveu, a.nveu, running);
    append_rows(out.lpp_annual, a.lpp_annual, running);
    append_rows(out.prohibited, a.prohibited, first);
    append_rows(out.unauthorized, a.unauthorized, first);
  }
  for (const key_range& range : country_ranges) {
    part.gather(lines, capped_country, range);
    const aggregation a = pass(part.columns.view());
    for (auto c = static_cast<std::size_t>(range.lo); c < static_cast<std::size_t>(range.hi); ++c) {
      out.country_cap_crossing[c]      = a.country_cap_crossing[c];
      out.country_cap_crossing[c].line = part.input_position(a.country_cap_crossing[c].line);
    }
  }
  for (const key_range& range : order_ranges) {
    part.gather(lines, lpp_order, range);
    append_rows(out.lpp_order, pass(part.columns.view()).lpp_order, running);
  }
  return out;
}

}  // namespace capledger
