/// @file generate_test.cpp
/// @brief The synthetic log generator: deterministic, well-formed, realistic, and its breach plants fire.
///
/// The rule checks here are a small independent re-implementation of SPEC §4, so that the
/// generator's promises are tested without relying on the engine under test.
#include <capledger/calendar.hpp>
#include <capledger/error.hpp>
#include <capledger/generate.hpp>
#include <capledger/reference.hpp>

#include <gtest/gtest.h>

#include "test_support.hpp"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using namespace capledger;

__extension__ typedef __int128 wide;  // exact share products in the reference checker (GCC, Clang)

using capledger::test::datasets_dir;

/// Reference data, loaded once for the whole suite.
struct reference {
  country_table countries = load_countries((datasets_dir() / "countries.csv").string());
  chip_table chips        = load_chips((datasets_dir() / "chips.csv").string());
  rule_set rules          = load_rule_set((datasets_dir() / "rules" / "ai-diffusion-2025.json").string());
};

const reference& ref()
{
  static const reference r;
  return r;
}

struct generated {
  std::string shipments;
  std::string entities;
};

generated generate(const generate_options& options)
{
  std::ostringstream shipments;
  std::ostringstream entities;
  generate_log(options, ref().countries, ref().chips, ref().rules, shipments, entities);
  return {shipments.str(), entities.str()};
}

generate_options options_for(std::int64_t records, std::uint64_t seed, bool force = false)
{
  generate_options o;
  o.records        = records;
  o.seed           = seed;
  o.force_breaches = force;
  return o;
}

/// Splits one CSV record (RFC 4180 quoting); the generator never writes line breaks in fields.
std::vector<std::string> split_record(const std::string& line)
{
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back().push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back().push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else {
      fields.back().push_back(c);
    }
  }
  EXPECT_FALSE(quoted) << "unterminated quote in: " << line;
  return fields;
}

/// A CSV file as a header-keyed table.
struct csv_table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  [[nodiscard]] std::size_t column(const std::string& name) const
  {
    const auto it = std::find(header.begin(), header.end(), name);
    EXPECT_NE(it, header.end()) << "missing column " << name;
    return static_cast<std::size_t>(it - header.begin());
  }
};

csv_table parse_csv(const std::string& text)
{
  csv_table table;
  std::istringstream in(text);
  std::string line;
  bool first = true;
  while (std::getline(in, line)) {
    EXPECT_FALSE(!line.empty() && line.back() == '\r') << "the generator writes \\n line ends";
    auto fields = split_record(line);
    if (first) {
      table.header = std::move(fields);
      first        = false;
    } else {
      EXPECT_EQ(fields.size(), table.header.size()) << line;
      table.rows.push_back(std::move(fields));
    }
  }
  EXPECT_FALSE(first) << "no header";
  EXPECT_TRUE(text.empty() || text.back() == '\n');
  return table;
}

// ---- an independent checker of SPEC §4 --------------------------------------------------------

struct parsed_line {
  day_t date           = 0;
  std::size_t position = 0;
  std::string id, entity, country, order;
  std::int64_t quantity = 0;
  std::int64_t tpp      = 0;
  std::string path;
  bool datacenter = true;
};

struct parsed_entity {
  std::string hq;
  std::string status;
  std::set<std::string> nveu;
};

struct parsed_log {
  std::vector<parsed_line> lines;  ///< in (date, input position) order
  std::map<std::string, parsed_entity> entities;
};

parsed_log parse_log(const generated& g)
{
  parsed_log log;
  const auto e = parse_csv(g.entities);
  for (const auto& row : e.rows) {
    parsed_entity pe;
    pe.hq     = row[e.column("hq_country")];
    pe.status = row[e.column("status")];
    std::stringstream list(row[e.column("nveu_countries")]);
    for (std::string code; std::getline(list, code, ';');) { pe.nveu.insert(code); }
    log.entities[row[e.column("entity")]] = pe;
  }
  const auto s = parse_csv(g.shipments);
  for (std::size_t i = 0; i < s.rows.size(); ++i) {
    const auto& row = s.rows[i];
    parsed_line l;
    l.position           = i;
    l.id                 = row[s.column("shipment_id")];
    l.date               = parse_date(row[s.column("date")]).value();
    l.entity             = row[s.column("entity")];
    l.country            = row[s.column("country")];
    l.quantity           = std::stoll(row[s.column("quantity")]);
    l.path               = row[s.column("pathway")];
    l.order              = row[s.column("order_id")].empty() ? l.id : row[s.column("order_id")];
    const int chip       = ref().chips.find(row[s.column("chip")]);
    const auto& tpp_text = row[s.column("tpp_per_unit")];
    const std::int64_t per_unit =
        tpp_text.empty() ? ref().chips.rows.at(static_cast<std::size_t>(chip)).tpp : std::stoll(tpp_text);
    l.datacenter = chip < 0 || ref().chips.rows[static_cast<std::size_t>(chip)].datacenter;
    l.tpp        = l.quantity * per_unit;
    log.lines.push_back(l);
  }
  std::stable_sort(log.lines.begin(), log.lines.end(),
                   [](const parsed_line& a, const parsed_line& b) { return a.date < b.date; });
  return log;
}

int tier(const std::string& iso2)
{
  const int code = ref().countries.find(iso2);
  return code < 0 ? 0 : ref().countries.rows[static_cast<std::size_t>(code)].tier;
}

/// Findings per violation rule (counted by key), as SPEC §4 defines them.
std::map<std::string, int> violations(const parsed_log& log)
{
  const rule_set& rules = ref().rules;
  std::map<std::string, int> found;
  const day_t as_of = log.lines.empty() ? 0 : log.lines.back().date;
  const auto status = [&](const std::string& e) {
    const auto it = log.entities.find(e);
    return it == log.entities.end() ? std::string("NONE") : it->second.status;
  };
  const auto hq_tier = [&](const std::string& e) {
    const auto it = log.entities.find(e);
    return it == log.entities.end() ? 0 : tier(it->second.hq);
  };
  std::map<std::string, std::int64_t> country_run, order_run, year_run, nveu_run;
  std::set<std::string> prohibited, country_cap, lpp_order, lpp_year, nveu_cap, unauthorized;
  for (const auto& l : log.lines) {
    if (l.date < rules.counting_starts || l.date > rules.counting_ends || l.date > as_of) { continue; }
    const int t = tier(l.country);
    if (l.quantity > 0 && t == 3) { prohibited.insert(l.entity + "/" + l.country); }
    if (l.path == "LICENSE" && t == 2) {
      const auto code = static_cast<std::size_t>(ref().countries.find(l.country));
      const std::int64_t cap =
          rules.country_cap_tpp * (ref().countries.rows[code].g2g_partner ? rules.g2g_multiplier : 1);
      if ((country_run[l.country] += l.tpp) > cap) { country_cap.insert(l.country); }
    }
    if (l.path == "LPP") {
      if ((order_run[l.order] += l.tpp) > rules.lpp_per_order_tpp) { lpp_order.insert(l.order); }
      const std::string key = l.entity + "/" + std::to_string(year_of(l.date));
      if ((year_run[key] += l.tpp) > rules.lpp_per_consignee_year_tpp) { lpp_year.insert(key); }
    }
    if (l.path == "NVEU") {
      std::int64_t cap = rules.nveu_caps.back().tpp;
      for (const auto& phase : rules.nveu_caps) {
        if (phase.through >= l.date) {
          cap = phase.tpp;
          break;
        }
      }
      const std::string key = l.entity + "/" + l.country;
      if ((nveu_run[key] += l.tpp) > cap) { nveu_cap.insert(key); }
    }
    if (l.quantity > 0) {
      const auto it = log.entities.find(l.entity);
      const bool bad =
          (l.path == "UVEU" && status(l.entity) != "UVEU") ||
          (l.path == "NVEU" && (status(l.entity) != "NVEU" || !it->second.nveu.count(l.country))) ||
          (l.path == "AIA" && (t != 1 || hq_tier(l.entity) != 1)) || (l.path == "ACA" && l.datacenter);
      if (bad) { unauthorized.insert(l.entity + "/" + l.country + "/" + l.path); }
    }
  }
  found["PROHIBITED_DESTINATION"] = static_cast<int>(prohibited.size());
  found["COUNTRY_CAP_EXCEEDED"]   = static_cast<int>(country_cap.size());
  found["LPP_ORDER_LIMIT"]        = static_cast<int>(lpp_order.size());
  found["LPP_ANNUAL_LIMIT"]       = static_cast<int>(lpp_year.size());
  found["NVEU_CAP_EXCEEDED"]      = static_cast<int>(nveu_cap.size());
  found["UNAUTHORIZED_PATHWAY"]   = static_cast<int>(unauthorized.size());

  // UVEU shares: every line up to as_of, exact integer comparisons.
  std::map<std::string, std::map<std::string, std::int64_t>> installed;
  for (const auto& l : log.lines) {
    if (status(l.entity) == "UVEU") { installed[l.entity][l.country] += l.tpp; }
  }
  for (const auto& [entity, by_country] : installed) {
    std::int64_t world = 0, tier1 = 0;
    for (const auto& [country, tpp] : by_country) {
      world += tpp;
      if (tier(country) == 1) { tier1 += tpp; }
    }
    if (world <= 0) { continue; }
    for (const auto& [country, tpp] : by_country) {
      if (tier(country) == 2 &&
          static_cast<wide>(tpp) * ppm_one > static_cast<wide>(rules.uveu_max_tier2_country_share) * world) {
        ++found["UVEU_TIER2_SHARE"];
      }
    }
    if (static_cast<wide>(tier1) * ppm_one < static_cast<wide>(rules.uveu_min_tier1_share) * world) {
      ++found["UVEU_TIER1_SHARE"];
    }
    const auto us = by_country.find("US");
    if (log.entities.at(entity).hq == "US" &&
        static_cast<wide>(us == by_country.end() ? 0 : us->second) * ppm_one <
            static_cast<wide>(rules.uveu_min_us_share_if_us_hq) * world) {
      ++found["UVEU_US_SHARE"];
    }
  }
  return found;
}

// ---- tests ------------------------------------------------------------------------------------

TEST(Generate, SameOptionsGiveIdenticalBytes)
{
  for (const bool force : {false, true}) {
    const auto a = generate(options_for(5000, 42, force));
    const auto b = generate(options_for(5000, 42, force));
    EXPECT_EQ(a.shipments, b.shipments);
    EXPECT_EQ(a.entities, b.entities);
  }
}

TEST(Generate, DifferentSeedsGiveDifferentLogs)
{
  const auto a = generate(options_for(2000, 1));
  const auto b = generate(options_for(2000, 2));
  EXPECT_NE(a.shipments, b.shipments);
  EXPECT_NE(a.entities, b.entities);
}

TEST(Generate, HasExactlyTheRequestedRecordsAllValid)
{
  const day_t first = days_from_civil(2024, 10, 1);
  const day_t last  = days_from_civil(2027, 12, 31);
  for (const std::int64_t records : {0, 1, 31, 32, 33, 64, 65, 5000}) {
    SCOPED_TRACE(records);
    const auto g     = generate(options_for(records, 7));
    const auto table = parse_csv(g.shipments);
    EXPECT_EQ(table.header,
              (std::vector<std::string>{"shipment_id", "date", "entity", "country", "chip", "quantity",
                                        "pathway", "order_id", "exporter", "tpp_per_unit"}));
    ASSERT_EQ(static_cast<std::int64_t>(table.rows.size()), records);
    std::unordered_set<std::string> ids;
    const std::set<std::string> pathways{"LICENSE", "LPP", "NVEU", "UVEU", "AIA", "ACA"};
    for (const auto& row : table.rows) {
      EXPECT_TRUE(ids.insert(row[0]).second) << "duplicate id " << row[0];
      const auto date = parse_date(row[1]);
      ASSERT_TRUE(date.has_value()) << row[1];
      EXPECT_GE(*date, first);
      EXPECT_LE(*date, last);
      EXPECT_FALSE(row[2].empty());
      EXPECT_GE(ref().countries.find(row[3]), 0) << row[3];
      if (ref().chips.find(row[4]) < 0) {
        ASSERT_FALSE(row[9].empty()) << "unknown chip " << row[4] << " without tpp_per_unit";
        EXPECT_GT(std::stoll(row[9]), 0);
      }
      std::size_t used            = 0;
      const std::int64_t quantity = std::stoll(row[5], &used);
      EXPECT_EQ(used, row[5].size());
      EXPECT_NE(quantity, 0);
      EXPECT_TRUE(pathways.count(row[6])) << row[6];
      EXPECT_FALSE(row[8].empty());
    }
  }
}

TEST(Generate, EntitiesFileIsConsistent)
{
  const auto g        = generate(options_for(20000, 3));
  const auto entities = parse_csv(g.entities);
  EXPECT_EQ(entities.header,
            (std::vector<std::string>{"entity", "name", "hq_country", "status", "nveu_countries"}));
  std::set<std::string> listed;
  std::map<std::string, int> statuses;
  for (const auto& row : entities.rows) {
    EXPECT_TRUE(listed.insert(row[0]).second) << "duplicate entity " << row[0];
    EXPECT_FALSE(row[1].empty());
    const int hq = ref().countries.find(row[2]);
    ASSERT_GE(hq, 0) << row[2];
    ++statuses[row[3]];
    if (row[3] == "UVEU") { EXPECT_EQ(tier(row[2]), 1) << "UVEU holders sit in tier 1"; }
    if (row[3] == "NVEU") {
      ASSERT_FALSE(row[4].empty());
      std::stringstream list(row[4]);
      for (std::string code; std::getline(list, code, ';');) { EXPECT_EQ(tier(code), 2) << code; }
    } else {
      EXPECT_TRUE(row[4].empty());
    }
  }
  EXPECT_GE(statuses["UVEU"], 3);
  EXPECT_GE(statuses["NVEU"], 2);
  EXPECT_GT(statuses["NONE"], statuses["UVEU"] + statuses["NVEU"]);
  EXPECT_EQ(statuses.size(), 3U);
  EXPECT_NE(g.entities.find("\""), std::string::npos) << "some names need quoting";

  // Some consignees of the log are deliberately missing from entities.csv (unknown HQ).
  const auto shipments = parse_csv(g.shipments);
  std::set<std::string> unlisted;
  for (const auto& row : shipments.rows) {
    if (!listed.count(row[2])) { unlisted.insert(row[2]); }
  }
  EXPECT_FALSE(unlisted.empty());
}

TEST(Generate, ShapeLooksLikeARealLog)
{
  const auto g     = generate(options_for(50000, 11));
  const auto table = parse_csv(g.shipments);
  std::map<std::string, std::int64_t> per_entity, per_country, per_pathway;
  std::int64_t returns = 0, adhoc = 0, tier2 = 0, tier3 = 0, out_of_order = 0;
  for (std::size_t i = 0; i < table.rows.size(); ++i) {
    const auto& row = table.rows[i];
    ++per_entity[row[2]];
    ++per_country[row[3]];
    ++per_pathway[row[6]];
    returns += std::stoll(row[5]) < 0;
    adhoc += !row[9].empty();
    tier2 += tier(row[3]) == 2;
    tier3 += tier(row[3]) == 3;
    if (i > 0 && row[1] < table.rows[i - 1][1]) { ++out_of_order; }
  }
  const auto n = static_cast<std::int64_t>(table.rows.size());
  EXPECT_GT(returns * 100, n * 1);  // about 2% returns
  EXPECT_LT(returns * 100, n * 3);
  EXPECT_GT(adhoc, 0);
  for (const char* p : {"LICENSE", "LPP", "NVEU", "UVEU", "AIA", "ACA"}) {
    EXPECT_GT(per_pathway[p], 0) << p;
  }
  EXPECT_GT(per_pathway["LICENSE"] * 2, n) << "most lines are licensed";
  // Power law: the largest consignee alone carries several percent of all lines.
  std::int64_t largest = 0;
  for (const auto& [entity, count] : per_entity) { largest = std::max(largest, count); }
  EXPECT_GT(largest * 100, n * 3);
  // Tier-2 traffic concentrates in the hubs.
  std::int64_t hubs = 0;
  for (const char* hub : {"AE", "SA", "IN", "SG", "MY", "IL", "BR", "MX", "PL"}) { hubs += per_country[hub]; }
  EXPECT_GT(tier2, n / 5);
  EXPECT_GT(hubs * 2, tier2);
  EXPECT_GT(per_country["US"], per_country["AE"]);
  EXPECT_LT(tier3 * 1000, n) << "prohibited destinations stay rare";
  // Roughly, not exactly, sorted by date.
  EXPECT_GT(out_of_order, 0);
  EXPECT_LT(out_of_order * 5, n);
}

TEST(Generate, OrdinaryLinesRespectTheGuardedRules)
{
  for (const std::uint64_t seed : {1, 2, 3}) {
    SCOPED_TRACE(seed);
    const auto found = violations(parse_log(generate(options_for(30000, seed))));
    EXPECT_EQ(found.at("LPP_ORDER_LIMIT"), 0);
    EXPECT_EQ(found.at("LPP_ANNUAL_LIMIT"), 0);
    EXPECT_EQ(found.at("NVEU_CAP_EXCEEDED"), 0);
    EXPECT_EQ(found.at("UNAUTHORIZED_PATHWAY"), 0);
    EXPECT_EQ(found.count("UVEU_TIER2_SHARE"), 0U);
    EXPECT_EQ(found.count("UVEU_TIER1_SHARE"), 0U);
    EXPECT_EQ(found.count("UVEU_US_SHARE"), 0U);
  }
  // A small default-sized log complies entirely.
  for (const auto& [rule, count] : violations(parse_log(generate(options_for(1000, 1))))) {
    EXPECT_EQ(count, 0) << rule;
  }
}

TEST(Generate, ForceBreachesMakesEveryViolationRuleFire)
{
  const std::vector<std::string> rules{
      "PROHIBITED_DESTINATION", "COUNTRY_CAP_EXCEEDED", "LPP_ORDER_LIMIT",
      "LPP_ANNUAL_LIMIT",       "NVEU_CAP_EXCEEDED",    "UNAUTHORIZED_PATHWAY",
      "UVEU_TIER2_SHARE",       "UVEU_TIER1_SHARE",     "UVEU_US_SHARE"};
  for (const std::int64_t records : {18, 100, 1000, 40000}) {
    for (const std::uint64_t seed : {1, 9}) {
      SCOPED_TRACE("records " + std::to_string(records) + " seed " + std::to_string(seed));
      const auto g   = generate(options_for(records, seed, true));
      const auto log = parse_log(g);
      ASSERT_EQ(static_cast<std::int64_t>(log.lines.size()), records);
      auto found = violations(log);
      for (const auto& rule : rules) { EXPECT_GT(found[rule], 0) << rule; }
    }
  }
}

TEST(Generate, ForceBreachesNeedsRoomForThePlants)
{
  EXPECT_THROW((void)generate(options_for(5, 1, true)), config_error);
}

TEST(Generate, RejectsBadOptions)
{
  EXPECT_THROW((void)generate(options_for(-1, 1)), config_error);
  generate_options o = options_for(10, 1);
  o.first_day        = days_from_civil(2026, 1, 1);
  o.last_day         = days_from_civil(2025, 1, 1);
  EXPECT_THROW((void)generate(o), config_error);
  o          = options_for(10, 1);
  o.entities = -3;
  EXPECT_THROW((void)generate(o), config_error);
}

TEST(Generate, HonoursEntityCountAndDateRange)
{
  generate_options o = options_for(3000, 5);
  o.entities         = 40;
  o.first_day        = days_from_civil(2025, 3, 1);
  o.last_day         = days_from_civil(2025, 3, 31);
  const auto g       = generate(o);
  const auto table   = parse_csv(g.shipments);
  std::set<std::string> entities;
  for (const auto& row : table.rows) {
    entities.insert(row[2]);
    EXPECT_GE(row[1], "2025-03-01");
    EXPECT_LE(row[1], "2025-03-31");
  }
  EXPECT_LE(entities.size(), 40U);
  EXPECT_GT(entities.size(), 20U);
}

TEST(Generate, DirectoryOverloadWritesTheSameFiles)
{
  static std::atomic<int> counter{0};
  const fs::path dir =
      fs::temp_directory_path() /
      ("capledger_generate_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++)) / "nested";
  const auto options = options_for(700, 13, true);
  generate_log(options, ref().countries, ref().chips, ref().rules, dir.string());
  const auto read = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const auto g = generate(options);
  EXPECT_EQ(read(dir / "shipments.csv"), g.shipments);
  EXPECT_EQ(read(dir / "entities.csv"), g.entities);
  std::error_code ec;
  fs::remove_all(dir.parent_path(), ec);
}

}  // namespace
