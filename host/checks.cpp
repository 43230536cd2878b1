/// @file checks.cpp
/// @brief Findings from aggregates (SPEC §4): exact integer comparisons, no floating point.
#include <capledger/checks.hpp>
#include <capledger/error.hpp>

#include <algorithm>
#include <tuple>

namespace capledger {

namespace {
__extension__ typedef __int128 wide;  // exact products of two int64 values
__extension__ typedef unsigned __int128 unsigned_wide;

std::string wide_to_string(wide value)
{
  if (value == 0) { return "0"; }
  const bool negative     = value < 0;
  unsigned_wide magnitude = negative ? -static_cast<unsigned_wide>(value) : static_cast<unsigned_wide>(value);
  std::string digits;
  while (magnitude > 0) {
    digits.push_back(static_cast<char>('0' + static_cast<int>(magnitude % 10)));
    magnitude /= 10;
  }
  if (negative) { digits.push_back('-'); }
  std::reverse(digits.begin(), digits.end());
  return digits;
}
}  // namespace

std::string exact_decimal(std::int64_t numerator, std::int64_t denominator, int digits,
                          std::int64_t multiplier)
{
  CAPLEDGER_EXPECTS(denominator > 0, "exact_decimal needs a positive denominator");
  CAPLEDGER_EXPECTS(digits >= 0 && digits <= 9 && multiplier > 0 && multiplier <= 1000,
                    "exact_decimal keeps its product within 128 bits");
  wide scale = multiplier;
  for (int i = 0; i < digits; ++i) { scale *= 10; }
  const wide scaled    = static_cast<wide>(numerator) * scale;
  const bool negative  = scaled < 0;
  const wide magnitude = negative ? -scaled : scaled;
  // Round half away from zero, so that the printed value does not depend on the sign.
  const wide rounded = (2 * magnitude + denominator) / (2 * static_cast<wide>(denominator));
  std::string text   = wide_to_string(rounded);
  if (digits > 0) {
    if (text.size() <= static_cast<std::size_t>(digits)) {
      text.insert(0, static_cast<std::size_t>(digits) + 1 - text.size(), '0');
    }
    text.insert(text.size() - static_cast<std::size_t>(digits), ".");
  }
  return negative && rounded != 0 ? "-" + text : text;
}

std::string exact_difference(std::int64_t minuend, std::int64_t subtrahend)
{
  return wide_to_string(static_cast<wide>(minuend) - subtrahend);
}

std::optional<ppm_t> parse_ppm(std::string_view text)
{
  if (text.empty()) { return std::nullopt; }
  ppm_t whole   = 0;
  std::size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    whole = whole * 10 + (text[i] - '0');
    if (whole > 1000) { return std::nullopt; }
  }
  ppm_t fraction      = 0;
  int fraction_digits = 0;
  if (i < text.size() && text[i] == '.') {
    for (++i; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
      if (fraction_digits == 6) {  // past a millionth only zeros: 0.80000000 is 0.8, as in rule files
        if (text[i] != '0') { return std::nullopt; }
        continue;
      }
      ++fraction_digits;
      fraction = fraction * 10 + (text[i] - '0');
    }
  }
  if (i != text.size() || (i == 0)) { return std::nullopt; }
  for (int d = fraction_digits; d < 6; ++d) { fraction *= 10; }
  return whole * ppm_one + fraction;
}

const std::vector<std::string>& rule_names()
{
  static const std::vector<std::string> names = {
      "PROHIBITED_DESTINATION", "COUNTRY_CAP_EXCEEDED", "LPP_ORDER_LIMIT",  "LPP_ANNUAL_LIMIT",
      "NVEU_CAP_EXCEEDED",      "UNAUTHORIZED_PATHWAY", "UVEU_TIER2_SHARE", "UVEU_TIER1_SHARE",
      "UVEU_US_SHARE",          "CAP_NEAR_LIMIT"};
  return names;
}

dictionary_sizes sizes_of(const shipment_log& log, const country_table& countries)
{
  dictionary_sizes sizes;
  sizes.entities  = log.entities.size();
  sizes.countries = static_cast<std::int32_t>(countries.rows.size());
  sizes.chips     = static_cast<std::int32_t>(log.chips.rows.size());
  sizes.exporters = log.exporters.size();
  sizes.orders    = log.orders.size();
  return sizes;
}

line_detail log_source::line(std::int64_t line) const
{
  const auto i = static_cast<std::size_t>(line);
  return {log_.columns.date[i], std::string(log_.shipment_id(line)), log_.columns.entity[i],
          log_.columns.country[i]};
}

rule_context make_rule_context(const rule_set& rules, const country_table& countries,
                               const entity_table& entities, const shipment_log& log, day_t as_of)
{
  return make_rule_context(rules, countries, entities, log.entities, log.chips, as_of);
}

rule_context make_rule_context(const rule_set& rules, const country_table& countries,
                               const entity_table& entities, const dictionary& entity_codes,
                               const chip_table& chips, day_t as_of)
{
  rule_context context;
  context.as_of                      = as_of;
  context.window_start               = rules.counting_starts;
  context.window_end                 = rules.counting_ends;
  context.country_cap_pathways       = rules.country_cap_pathways;
  context.lpp_per_order_tpp          = rules.lpp_per_order_tpp;
  context.lpp_per_consignee_year_tpp = rules.lpp_per_consignee_year_tpp;
  context.nveu_caps                  = rules.nveu_caps;
  for (const auto& c : countries.rows) {
    context.country_tier.push_back(static_cast<std::uint8_t>(c.tier));
    context.country_cap_tpp.push_back(
        c.tier == 2 ? rules.country_cap_tpp * (c.g2g_partner ? rules.g2g_multiplier : 1) : -1);
  }
  extend_rule_context(context, countries, entities, entity_codes, chips);
  return context;
}

namespace {

/// Adds the next entity code to @p context (@p info null: an entity the entities file does not list).
void add_entity_to_context(rule_context& context, const country_table& countries, const entity_info* info)
{
  const std::size_t e = context.entity_is_uveu.size();
  context.entity_is_uveu.push_back(0);
  context.entity_hq_tier1.push_back(0);
  context.entity_nveu_countries.resize((e + 1) * rule_context::nveu_mask_words, 0);
  if (info == nullptr) { return; }  // not listed: NONE with an unknown HQ
  context.entity_is_uveu[e] = info->status == entity_status::uveu ? 1 : 0;
  context.entity_hq_tier1[e] =
      info->hq_country >= 0 && countries.rows[static_cast<std::size_t>(info->hq_country)].tier == 1 ? 1 : 0;
  if (info->status == entity_status::nveu) {
    for (const std::uint16_t c : info->nveu_countries) {
      context.entity_nveu_countries[e * rule_context::nveu_mask_words + c / 64] |= std::uint64_t{1} << (c % 64);
    }
  }
}

}  // namespace

void extend_rule_context(rule_context& context, const country_table& countries, const entity_table& entities,
                         const dictionary& entity_codes, const chip_table& chips)
{
  for (std::size_t c = context.chip_datacenter.size(); c < chips.rows.size(); ++c) {
    context.chip_datacenter.push_back(chips.rows[c].datacenter ? 1 : 0);
  }
  for (auto e = static_cast<std::int32_t>(context.entity_is_uveu.size()); e < entity_codes.size(); ++e) {
    add_entity_to_context(context, countries, entities.find(entity_codes.text(e)));
  }
}


std::int64_t nveu_cap_on(const rule_set& rules, day_t date)
{
  return nveu_cap_on(rules.nveu_caps, date);
}

std::int64_t nveu_cap_at_as_of(const rule_set& rules, day_t as_of)
{
  return nveu_cap_on(rules, std::clamp(as_of, rules.counting_starts, rules.counting_ends));
}

int highest_warn_level(std::int64_t used, std::int64_t cap, const std::vector<ppm_t>& levels)
{
  // Levels ascend, so the ones reached are a prefix: a search, since every capped key asks (a
  // scan cost keys x levels).
  const auto past = std::partition_point(levels.begin(), levels.end(), [&](ppm_t level) {
    return static_cast<wide>(used) * ppm_one >= static_cast<wide>(cap) * level;
  });
  return static_cast<int>(past - levels.begin()) - 1;
}

namespace {

/// Smallest integer tpp that reaches @p level of @p cap: used >= it  <=>  used / cap >= level.
std::int64_t level_tpp(std::int64_t cap, ppm_t level)
{
  const wide product = static_cast<wide>(cap) * level;
  return static_cast<std::int64_t>((product + ppm_one - 1) / ppm_one);
}

std::string share_text(wide part, wide whole)
{
  return exact_decimal(static_cast<std::int64_t>(part), static_cast<std::int64_t>(whole), 6);
}

}  // namespace

check_results evaluate_checks(const aggregation& agg, const rule_context& context, const rule_set& rules,
                              const country_table& countries, const entity_table& entities,
                              const report_source& source, const std::vector<ppm_t>& warn_levels)
{
  check_results results;
  const dictionary& entity_codes = source.entities();
  const auto entity_id   = [&](std::int64_t e) { return entity_codes.text(static_cast<std::int32_t>(e)); };
  const auto country_iso = [&](std::int64_t c) { return countries.rows[static_cast<std::size_t>(c)].iso2; };
  const auto violation   = [&](const char* rule) {
    finding f;
    f.severity = "violation";
    f.rule     = rule;
    return f;
  };
  const auto at_line = [&](finding& f, const line_detail& line) {
    f.date        = format_date(line.date);
    f.shipment_id = line.shipment_id;
  };

  for (const auto& p : agg.prohibited) {
    finding f = violation("PROHIBITED_DESTINATION");
    f.entity  = entity_id(p.key / 65536);
    f.country = country_iso(p.key % 65536);
    f.value   = std::to_string(p.tpp);
    at_line(f, source.line(p.first_line));
    results.findings.push_back(std::move(f));
  }
  for (std::size_t c = 0; c < agg.country_cap_crossing.size(); ++c) {
    const crossing& x = agg.country_cap_crossing[c];
    if (x.line < 0) { continue; }
    finding f = violation("COUNTRY_CAP_EXCEEDED");
    f.country = country_iso(static_cast<std::int64_t>(c));
    f.value   = std::to_string(x.value);
    f.limit   = std::to_string(context.country_cap_tpp[c]);
    at_line(f, source.line(x.line));
    results.findings.push_back(std::move(f));
  }
  for (const auto& o : agg.lpp_order) {
    const line_detail line = source.line(o.first_crossing.line);
    finding f              = violation("LPP_ORDER_LIMIT");
    f.entity               = entity_id(line.entity);
    f.country              = country_iso(line.country);
    f.order_id             = source.order_id(static_cast<std::int32_t>(o.key));
    f.value                = std::to_string(o.first_crossing.value);
    f.limit                = std::to_string(rules.lpp_per_order_tpp);
    at_line(f, line);
    results.findings.push_back(std::move(f));
  }
  for (const auto& y : agg.lpp_annual) {
    finding f = violation("LPP_ANNUAL_LIMIT");
    f.entity  = entity_id(y.key / 16384);
    f.year    = std::to_string(y.key % 16384);
    f.value   = std::to_string(y.first_crossing.value);
    f.limit   = std::to_string(rules.lpp_per_consignee_year_tpp);
    at_line(f, source.line(y.first_crossing.line));
    results.findings.push_back(std::move(f));
  }
  for (const auto& n : agg.nveu) {
    if (n.first_crossing.line < 0) { continue; }
    finding f              = violation("NVEU_CAP_EXCEEDED");
    f.entity               = entity_id(n.key / 65536);
    f.country              = country_iso(n.key % 65536);
    f.value                = std::to_string(n.first_crossing.value);
    const line_detail line = source.line(n.first_crossing.line);
    f.limit                = std::to_string(nveu_cap_on(rules, line.date));
    at_line(f, line);
    results.findings.push_back(std::move(f));
  }
  for (const auto& u : agg.unauthorized) {
    finding f = violation("UNAUTHORIZED_PATHWAY");
    f.entity  = entity_id(u.key / 8 / 65536);
    f.country = country_iso(u.key / 8 % 65536);
    f.pathway = std::string(pathway_name(static_cast<pathway>(u.key % 8)));
    f.value   = std::to_string(u.tpp);
    at_line(f, source.line(u.first_line));
    results.findings.push_back(std::move(f));
  }

  // UVEU shares: all lines up to as_of, every UVEU entity of the entities file.
  const int us_code = countries.find("US");
  for (const auto& info : entities.rows) {
    if (info.status != entity_status::uveu) { continue; }
    uveu_share_row row;
    row.entity              = info.id;
    row.hq_country          = info.hq_country >= 0 ? country_iso(info.hq_country) : "";
    const std::int32_t code = entity_codes.find(info.id);
    wide whole = 0, tier1 = 0, us = 0;
    std::vector<std::pair<std::uint16_t, std::int64_t>> tier2;  // (country, installed)
    if (code >= 0) {
      const auto first = std::lower_bound(agg.by_entity_country.begin(), agg.by_entity_country.end(), code,
                                          [](const pair_total& p, std::int32_t e) { return p.entity < e; });
      for (auto it = first; it != agg.by_entity_country.end() && it->entity == code; ++it) {
        whole += it->total.tpp;
        const int tier = countries.rows[it->country].tier;
        if (tier == 1) { tier1 += it->total.tpp; }
        if (tier == 2) { tier2.emplace_back(it->country, it->total.tpp); }
        if (it->country == us_code) { us += it->total.tpp; }
      }
    }
    row.installed_tpp = static_cast<std::int64_t>(whole);
    if (whole > 0) {
      row.tier1_share = share_text(tier1, whole);
      row.us_share    = share_text(us, whole);
      // Countries come in code (= ISO) order, so the first maximum is the lowest ISO code.
      const auto max_it = std::max_element(tier2.begin(), tier2.end(),
                                           [](const auto& a, const auto& b) { return a.second < b.second; });
      if (max_it != tier2.end()) {
        row.max_tier2_country = country_iso(max_it->first);
        row.max_tier2_share   = share_text(max_it->second, whole);
      }
      const auto share_finding = [&](const char* rule, const std::string& country, wide part, ppm_t limit) {
        finding f = violation(rule);
        f.entity  = info.id;
        f.country = country;
        f.value   = share_text(part, whole);
        f.limit   = exact_decimal(limit, ppm_one, 6);
        results.findings.push_back(std::move(f));
        row.compliant = false;
      };
      for (const auto& [country, installed] : tier2) {
        if (static_cast<wide>(installed) * ppm_one >
            static_cast<wide>(rules.uveu_max_tier2_country_share) * whole) {
          share_finding("UVEU_TIER2_SHARE", country_iso(country), installed,
                        rules.uveu_max_tier2_country_share);
        }
      }
      if (tier1 * ppm_one < static_cast<wide>(rules.uveu_min_tier1_share) * whole) {
        share_finding("UVEU_TIER1_SHARE", "", tier1, rules.uveu_min_tier1_share);
      }
      if (us_code >= 0 && info.hq_country == us_code &&
          us * ppm_one < static_cast<wide>(rules.uveu_min_us_share_if_us_hq) * whole) {
        share_finding("UVEU_US_SHARE", "US", us, rules.uveu_min_us_share_if_us_hq);
      }
    }
    results.uveu_shares.push_back(std::move(row));
  }
  std::sort(results.uveu_shares.begin(), results.uveu_shares.end(),
            [](const uveu_share_row& a, const uveu_share_row& b) { return a.entity < b.entity; });

  // Near-limit warnings: caps that are in use at or above a level but not exceeded.
  const auto warning = [&](std::int64_t used, std::int64_t cap, finding f) {
    const int level = highest_warn_level(used, cap, warn_levels);
    if (level < 0) { return; }
    f.severity = "warning";
    f.rule     = "CAP_NEAR_LIMIT";
    f.value    = std::to_string(used);
    f.limit    = std::to_string(level_tpp(cap, warn_levels[static_cast<std::size_t>(level)]));
    results.findings.push_back(std::move(f));
  };
  for (std::size_t c = 0; c < agg.country_cap_total.size(); ++c) {
    if (context.country_cap_tpp[c] < 0 || agg.country_cap_crossing[c].line >= 0) { continue; }
    finding f;
    f.country = country_iso(static_cast<std::int64_t>(c));
    warning(agg.country_cap_total[c], context.country_cap_tpp[c], std::move(f));
  }
  const std::int64_t nveu_cap = nveu_cap_at_as_of(rules, context.as_of);
  for (const auto& n : agg.nveu) {
    if (n.first_crossing.line >= 0) { continue; }
    finding f;
    f.entity  = entity_id(n.key / 65536);
    f.country = country_iso(n.key % 65536);
    warning(n.total, nveu_cap, std::move(f));
  }

  // Years in numeric order: the cell has no leading zeros, so a shorter one is an earlier year
  // (999 before 2025, as `ledger balances` lists them).
  using text     = const std::string&;
  const auto key = [](const finding& f) {
    return std::tuple<text, text, text, text, text, text, std::size_t, text>(
        f.severity, f.rule, f.entity, f.country, f.pathway, f.order_id, f.year.size(), f.year);
  };
  std::sort(results.findings.begin(), results.findings.end(),
            [&](const finding& a, const finding& b) { return key(a) < key(b); });
  for (const auto& f : results.findings) {
    (f.severity == "violation" ? results.violations : results.warnings) += 1;
  }
  return results;
}

}  // namespace capledger
