/// @file cpu_backend.cpp
/// @brief The CPU backend: plain C++ aggregation, the reference every other backend must match.
#include <capledger/backend.hpp>
#include <capledger/error.hpp>

#include "key_table.hpp"
#include "many_cores.hpp"

#include <omp.h>

#include <algorithm>
#include <limits>

namespace capledger {

bool operator==(const aggregation& a, const aggregation& b)
{
  return a.lines_used == b.lines_used && a.by_country == b.by_country && a.by_entity == b.by_entity &&
         a.by_chip == b.by_chip && a.by_exporter == b.by_exporter &&
         a.by_entity_country == b.by_entity_country && a.country_cap_total == b.country_cap_total &&
         a.country_cap_crossing == b.country_cap_crossing && a.nveu == b.nveu && a.lpp_order == b.lpp_order &&
         a.lpp_annual == b.lpp_annual && a.prohibited == b.prohibited && a.unauthorized == b.unauthorized;
}

aggregation empty_aggregation(const dictionary_sizes& sizes)
{
  aggregation out;
  out.by_country.resize(static_cast<std::size_t>(sizes.countries));
  out.by_entity.resize(static_cast<std::size_t>(sizes.entities));
  out.by_chip.resize(static_cast<std::size_t>(sizes.chips));
  out.by_exporter.resize(static_cast<std::size_t>(sizes.exporters));
  out.country_cap_total.assign(static_cast<std::size_t>(sizes.countries), 0);
  out.country_cap_crossing.resize(static_cast<std::size_t>(sizes.countries));
  return out;
}

namespace {

using detail::key_table;

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
  map.for_each([&](std::int64_t key, const auto& value) { out.push_back(convert(key, value)); });
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
  /// SPEC §3: every line up to as_of. Each thread sums a contiguous slice into its own partials
  /// (exact integers: the order of additions does not matter), then the partials are added.
  static void accumulate_totals(const shipment_view& lines, const rule_context& rules,
                                const dictionary_sizes& sizes, aggregation& out)
  {
    struct partial {
      std::int64_t lines_used = 0;
      std::vector<group_total> by_country, by_entity, by_chip, by_exporter;
      key_table<group_total> pairs;
    };
    // A thread per ~256k lines at most: small logs are not worth the start-up.
    const int threads = static_cast<int>(std::clamp<std::int64_t>(lines.size / (std::int64_t{1} << 18), 1,
                                                                  std::max(1, omp_get_max_threads())));
    std::vector<partial> partials(static_cast<std::size_t>(threads));
    // Each slice is summed by whichever thread takes it (detail::share_items), so every line is
    // summed however many threads start.
    detail::share_items(
        static_cast<std::size_t>(threads), static_cast<std::size_t>(threads), nullptr, [&](const auto& take) {
          for (std::size_t slice; take(slice);) {
            const auto t             = static_cast<std::int64_t>(slice);
            partial& mine            = partials[slice];
            const std::int64_t begin = lines.size * t / threads;
            const std::int64_t end   = lines.size * (t + 1) / threads;
            mine.by_country.assign(static_cast<std::size_t>(sizes.countries), {});
            mine.by_entity.assign(static_cast<std::size_t>(sizes.entities), {});
            mine.by_chip.assign(static_cast<std::size_t>(sizes.chips), {});
            mine.by_exporter.assign(static_cast<std::size_t>(sizes.exporters), {});
            for (std::int64_t i = begin; i < end; ++i) {
              if (lines.date[i] > rules.as_of) { continue; }
              ++mine.lines_used;
              const std::int64_t q  = lines.quantity[i];
              const std::int64_t t_ = lines.tpp[i];
              mine.by_country[lines.country[i]].add_line(q, t_);
              mine.by_entity[static_cast<std::size_t>(lines.entity[i])].add_line(q, t_);
              mine.by_chip[lines.chip[i]].add_line(q, t_);
              mine.by_exporter[static_cast<std::size_t>(lines.exporter[i])].add_line(q, t_);
              mine.pairs.at(entity_country_key(lines.entity[i], lines.country[i])).add_line(q, t_);
            }
          }
        });
    partial& sum = partials.front();
    for (std::size_t t = 1; t < partials.size(); ++t) {
      const partial& other = partials[t];
      sum.lines_used += other.lines_used;
      for (auto [into, from] :
           {std::pair{&sum.by_country, &other.by_country}, std::pair{&sum.by_entity, &other.by_entity},
            std::pair{&sum.by_chip, &other.by_chip}, std::pair{&sum.by_exporter, &other.by_exporter}}) {
        for (std::size_t k = 0; k < into->size(); ++k) { (*into)[k] += (*from)[k]; }
      }
      sum.pairs.reserve(sum.pairs.size() + other.pairs.size(), other.pairs.capacity());
      other.pairs.for_each(
          [&](std::int64_t key, const group_total& total) { sum.pairs.at(key) += total; });
    }
    out.lines_used  = sum.lines_used;
    out.by_country  = std::move(sum.by_country);
    out.by_entity   = std::move(sum.by_entity);
    out.by_chip     = std::move(sum.by_chip);
    out.by_exporter = std::move(sum.by_exporter);
    out.by_entity_country.reserve(sum.pairs.size());
    sum.pairs.for_each([&](std::int64_t key, const group_total& total) {
      out.by_entity_country.push_back(
          {static_cast<std::int32_t>(key / 65536), static_cast<std::uint16_t>(key % 65536), total});
    });
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
    key_table<running_state> nveu;
    std::vector<running_state> lpp_order(static_cast<std::size_t>(sizes.orders));
    key_table<running_state> lpp_annual;
    key_table<first_line_state> prohibited;
    key_table<first_line_state> unauthorized;

    const day_t last_day = std::min(rules.window_end, rules.as_of);
    for (const std::int64_t i : lines_in_check_order(lines, rules.window_start, last_day)) {
      const std::int64_t tpp      = lines.tpp[i];
      const std::uint16_t country = lines.country[i];
      const std::int32_t entity   = lines.entity[i];
      const auto path             = static_cast<pathway>(lines.pathway[i]);
      const std::uint8_t tier     = rules.country_tier[country];

      if ((rules.country_cap_pathways >> lines.pathway[i]) & 1U) {
        const std::int64_t cap = rules.country_cap_tpp[country];
        // Uncapped countries still total their cap-pathway lines (shown as context only).
        country_cap[country].add(i, tpp, cap >= 0 ? cap : std::numeric_limits<std::int64_t>::max());
      }
      if (path == pathway::nveu) {
        nveu.at(entity_country_key(entity, country))
            .add(i, tpp, nveu_cap_on(rules.nveu_caps, lines.date[i]));
      }
      if (path == pathway::lpp) {
        lpp_order[static_cast<std::size_t>(lines.order[i])].add(i, tpp, rules.lpp_per_order_tpp);
        lpp_annual.at(entity_year_key(entity, year_of(lines.date[i])))
            .add(i, tpp, rules.lpp_per_consignee_year_tpp);
      }
      if (lines.quantity[i] > 0) {
        if (tier == 3) { prohibited.at(entity_country_key(entity, country)).add(i, tpp); }
        if (rules.is_unauthorized(path, entity, country, lines.chip[i])) {
          unauthorized.at(entity_country_pathway_key(entity, country, lines.pathway[i])).add(i, tpp);
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
    for (const auto& entry :
         sorted_entries<decltype(lpp_annual), keyed_running_total>(lpp_annual, to_running)) {
      if (entry.first_crossing.line >= 0) { out.lpp_annual.push_back(entry); }
    }
    out.prohibited   = sorted_entries<decltype(prohibited), keyed_first_line>(prohibited, to_first_line);
    out.unauthorized = sorted_entries<decltype(unauthorized), keyed_first_line>(unauthorized, to_first_line);
  }
};

}  // namespace

std::unique_ptr<backend> make_cpu_backend()
{
  return std::make_unique<cpu_backend>();
}

}  // namespace capledger
