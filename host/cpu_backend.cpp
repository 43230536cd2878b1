/// @file cpu_backend.cpp
/// @brief The CPU backend: plain C++ aggregation, the reference every other backend must match.
#include <capledger/backend.hpp>
#include <capledger/error.hpp>

#include <algorithm>
#include <limits>
#include <unordered_map>

namespace capledger {

bool operator==(const aggregation& a, const aggregation& b)
{
  return a.lines_used == b.lines_used && a.by_country == b.by_country && a.by_entity == b.by_entity &&
         a.by_chip == b.by_chip && a.by_exporter == b.by_exporter &&
         a.by_entity_country == b.by_entity_country && a.country_cap_total == b.country_cap_total &&
         a.country_cap_crossing == b.country_cap_crossing && a.nveu == b.nveu &&
         a.lpp_order == b.lpp_order && a.lpp_annual == b.lpp_annual && a.prohibited == b.prohibited &&
         a.unauthorized == b.unauthorized;
}

namespace {

void add_line(group_total& total, std::int64_t quantity, std::int64_t tpp)
{
  total.records += 1;
  total.units += quantity;
  total.tpp += tpp;
}

/// Running total of one key with its first crossing.
struct running_state {
  std::int64_t total = 0;
  crossing first_crossing;
  void add(std::int64_t line, std::int64_t tpp, std::int64_t limit)
  {
    total += tpp;
    if (first_crossing.line < 0 && total > limit) { first_crossing = {line, total}; }
  }
};

/// First line and summed tpp of one key's rule-breaking lines.
struct first_line_state {
  std::int64_t first_line = -1;
  std::int64_t tpp        = 0;
  void add(std::int64_t line, std::int64_t line_tpp)
  {
    if (first_line < 0) { first_line = line; }
    tpp += line_tpp;
  }
};

std::int64_t nveu_limit_on(const std::vector<nveu_phase>& phases, day_t date)
{
  for (const auto& phase : phases) {
    if (phase.through >= date) { return phase.tpp; }
  }
  return phases.back().tpp;
}

/// In-window lines up to as_of, in (date, input position) order: a counting sort by day, which
/// is stable, so equal dates keep their input order.
std::vector<std::int64_t> lines_in_check_order(const shipment_view& lines, day_t first_day, day_t last_day)
{
  if (last_day < first_day) { return {}; }
  const auto days = static_cast<std::size_t>(last_day - first_day) + 1;
  std::vector<std::int64_t> start(days + 1, 0);
  for (std::int64_t i = 0; i < lines.size; ++i) {
    const day_t d = lines.date[i];
    if (d >= first_day && d <= last_day) { ++start[static_cast<std::size_t>(d - first_day) + 1]; }
  }
  for (std::size_t d = 0; d < days; ++d) { start[d + 1] += start[d]; }
  std::vector<std::int64_t> order(static_cast<std::size_t>(start[days]));
  for (std::int64_t i = 0; i < lines.size; ++i) {
    const day_t d = lines.date[i];
    if (d >= first_day && d <= last_day) {
      order[static_cast<std::size_t>(start[static_cast<std::size_t>(d - first_day)]++)] = i;
    }
  }
  return order;
}

template <typename Map, typename Out, typename Convert>
std::vector<Out> sorted_entries(const Map& map, Convert convert)
{
  std::vector<Out> out;
  out.reserve(map.size());
  for (const auto& [key, value] : map) { out.push_back(convert(key, value)); }
  std::sort(out.begin(), out.end(), [](const Out& a, const Out& b) { return a.key < b.key; });
  return out;
}

keyed_running_total to_running(std::int64_t key, const running_state& s)
{
  return {key, s.total, s.first_crossing};
}
keyed_first_line to_first_line(std::int64_t key, const first_line_state& s)
{
  return {key, s.first_line, s.tpp};
}

class cpu_backend final : public backend {
 public:
  [[nodiscard]] std::string name() const override { return "cpu"; }

  [[nodiscard]] aggregation aggregate(const shipment_view& lines, const rule_context& rules,
                                      const dictionary_sizes& sizes) override
  {
    aggregation out;
    accumulate_totals(lines, rules, sizes, out);
    accumulate_checks(lines, rules, sizes, out);
    return out;
  }

 private:
  /// SPEC §3: every line up to as_of.
  static void accumulate_totals(const shipment_view& lines, const rule_context& rules,
                                const dictionary_sizes& sizes, aggregation& out)
  {
    out.by_country.assign(static_cast<std::size_t>(sizes.countries), {});
    out.by_entity.assign(static_cast<std::size_t>(sizes.entities), {});
    out.by_chip.assign(static_cast<std::size_t>(sizes.chips), {});
    out.by_exporter.assign(static_cast<std::size_t>(sizes.exporters), {});
    std::unordered_map<std::int64_t, group_total> pairs;
    pairs.reserve(static_cast<std::size_t>(std::min<std::int64_t>(lines.size, 1 << 20)));
    for (std::int64_t i = 0; i < lines.size; ++i) {
      if (lines.date[i] > rules.as_of) { continue; }
      ++out.lines_used;
      const std::int64_t q = lines.quantity[i];
      const std::int64_t t = lines.tpp[i];
      add_line(out.by_country[lines.country[i]], q, t);
      add_line(out.by_entity[static_cast<std::size_t>(lines.entity[i])], q, t);
      add_line(out.by_chip[lines.chip[i]], q, t);
      add_line(out.by_exporter[static_cast<std::size_t>(lines.exporter[i])], q, t);
      add_line(pairs[entity_country_key(lines.entity[i], lines.country[i])], q, t);
    }
    out.by_entity_country.reserve(pairs.size());
    for (const auto& [key, total] : pairs) {
      out.by_entity_country.push_back(
        {static_cast<std::int32_t>(key / 65536), static_cast<std::uint16_t>(key % 65536), total});
    }
    std::sort(out.by_entity_country.begin(), out.by_entity_country.end(),
              [](const pair_total& a, const pair_total& b) {
                return entity_country_key(a.entity, a.country) < entity_country_key(b.entity, b.country);
              });
  }

  /// SPEC §4: in-window lines up to as_of, in (date, input position) order.
  static void accumulate_checks(const shipment_view& lines, const rule_context& rules,
                                const dictionary_sizes& sizes, aggregation& out)
  {
    const auto countries = static_cast<std::size_t>(sizes.countries);
    std::vector<running_state> country_cap(countries);
    std::unordered_map<std::int64_t, running_state> nveu;
    std::vector<running_state> lpp_order(static_cast<std::size_t>(sizes.orders));
    std::unordered_map<std::int64_t, running_state> lpp_annual;
    std::unordered_map<std::int64_t, first_line_state> prohibited;
    std::unordered_map<std::int64_t, first_line_state> unauthorized;

    const day_t last_day = std::min(rules.window_end, rules.as_of);
    for (const std::int64_t i : lines_in_check_order(lines, rules.window_start, last_day)) {
      const std::int64_t tpp     = lines.tpp[i];
      const std::uint16_t country = lines.country[i];
      const std::int32_t entity  = lines.entity[i];
      const auto path            = static_cast<pathway>(lines.pathway[i]);
      const std::uint8_t tier    = rules.country_tier[country];

      if ((rules.country_cap_pathways >> lines.pathway[i]) & 1U) {
        const std::int64_t cap = rules.country_cap_tpp[country];
        // Uncapped countries still total their cap-pathway lines (shown as context only).
        country_cap[country].add(i, tpp, cap >= 0 ? cap : std::numeric_limits<std::int64_t>::max());
      }
      if (path == pathway::nveu) {
        nveu[entity_country_key(entity, country)].add(i, tpp, nveu_limit_on(rules.nveu_caps, lines.date[i]));
      }
      if (path == pathway::lpp) {
        lpp_order[static_cast<std::size_t>(lines.order[i])].add(i, tpp, rules.lpp_per_order_tpp);
        lpp_annual[entity_year_key(entity, year_of(lines.date[i]))].add(i, tpp,
                                                                         rules.lpp_per_consignee_year_tpp);
      }
      if (lines.quantity[i] > 0) {
        if (tier == 3) { prohibited[entity_country_key(entity, country)].add(i, tpp); }
        if (is_unauthorized(rules, path, entity, country, lines.chip[i])) {
          unauthorized[entity_country_pathway_key(entity, country, lines.pathway[i])].add(i, tpp);
        }
      }
    }

    out.country_cap_total.resize(countries);
    out.country_cap_crossing.resize(countries);
    for (std::size_t c = 0; c < countries; ++c) {
      out.country_cap_total[c] = country_cap[c].total;
      if (rules.country_cap_tpp[c] >= 0) { out.country_cap_crossing[c] = country_cap[c].first_crossing; }
    }
    out.nveu = sorted_entries<decltype(nveu), keyed_running_total>(nveu, to_running);
    for (std::size_t order = 0; order < lpp_order.size(); ++order) {
      if (lpp_order[order].first_crossing.line >= 0) {
        out.lpp_order.push_back(to_running(static_cast<std::int64_t>(order), lpp_order[order]));
      }
    }
    for (const auto& entry : sorted_entries<decltype(lpp_annual), keyed_running_total>(lpp_annual, to_running)) {
      if (entry.first_crossing.line >= 0) { out.lpp_annual.push_back(entry); }
    }
    out.prohibited   = sorted_entries<decltype(prohibited), keyed_first_line>(prohibited, to_first_line);
    out.unauthorized = sorted_entries<decltype(unauthorized), keyed_first_line>(unauthorized, to_first_line);
  }

  static bool is_unauthorized(const rule_context& rules, pathway path, std::int32_t entity,
                              std::uint16_t country, std::uint16_t chip)
  {
    switch (path) {
      case pathway::uveu: return rules.entity_is_uveu[static_cast<std::size_t>(entity)] == 0;
      case pathway::nveu: return !rules.nveu_authorized(entity, country);
      case pathway::aia:
        return rules.country_tier[country] != 1 || rules.entity_hq_tier1[static_cast<std::size_t>(entity)] == 0;
      case pathway::aca: return rules.chip_datacenter[chip] != 0;
      default: return false;
    }
  }
};

}  // namespace

std::unique_ptr<backend> make_cpu_backend() { return std::make_unique<cpu_backend>(); }

}  // namespace capledger
