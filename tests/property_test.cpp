/// @file property_test.cpp
/// @brief Properties of reports on generated logs (SPEC §2-§5), on every backend: totals agree
/// across every grouping, splitting or reordering the input changes nothing it should not, and a
/// naive re-implementation of the running-total checks agrees with the engine's findings.
///
/// The naive reference reads the generated CSV text itself (its own parser, its own TPP
/// arithmetic, a stable sort by date string), so it shares no code with ingest or the backends.
#include <capledger/backend.hpp>
#include <capledger/calendar.hpp>
#include <capledger/checks.hpp>
#include <capledger/entities.hpp>
#include <capledger/error.hpp>
#include <capledger/generate.hpp>
#include <capledger/report.hpp>
#include <capledger/shipments.hpp>

#include <gtest/gtest.h>

#include "test_support.hpp"
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using namespace capledger;

// ---- a small, independent RFC 4180 reader ------------------------------------------------------

using csv_row   = std::vector<std::string>;
using csv_table = std::vector<csv_row>;

/// Parses @p text into records (quoted fields, doubled quotes, `\n` or `\r\n` line ends).
csv_table parse_csv(const std::string& text)
{
  csv_table rows;
  csv_row row;
  std::string field;
  bool quoted = false, any = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field.push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field.push_back(c);
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
      any    = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') { ++i; }
      if (any || !field.empty()) {
        row.push_back(std::move(field));
        rows.push_back(std::move(row));
      }
      row.clear();
      field.clear();
      any = false;
    } else {
      field.push_back(c);
      any = true;
    }
  }
  if (any || !field.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

/// The raw text of each record of a shipment log (header first); generated logs keep line breaks
/// out of quoted fields, so a record is a physical line.
std::vector<std::string> physical_lines(const std::string& text)
{
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) { lines.push_back(line); }
  }
  return lines;
}

std::string upper(std::string s)
{
  for (char& c : s) { c = static_cast<char>(std::toupper(static_cast<unsigned char>(c))); }
  return s;
}

using capledger::test::bundled;
using capledger::test::scratch_dir;

struct generated {
  std::string shipments;
  std::string entities;
};

struct gen_case {
  std::int64_t records;
  std::uint64_t seed;
  bool force_breaches;
};

std::string describe(const gen_case& c)
{
  return "records=" + std::to_string(c.records) + " seed=" + std::to_string(c.seed) +
         " force_breaches=" + (c.force_breaches ? "on" : "off");
}

generated generate(const gen_case& c)
{
  generate_options options;
  options.records        = c.records;
  options.seed           = c.seed;
  options.force_breaches = c.force_breaches;
  std::ostringstream shipments, entities;
  generate_log(options, bundled().countries, bundled().chips, bundled().rules, shipments, entities);
  return {shipments.str(), entities.str()};
}

/// Bundled tables plus the generated entities file.
reference_data with_entities(const std::string& entities_csv)
{
  reference_data ref = bundled();
  scratch_dir dir;
  const std::string path = dir.write("entities.csv", entities_csv);
  ref.entities           = load_entities(path, ref.countries);
  ref.entities_file      = file_fingerprint{path, static_cast<std::int64_t>(entities_csv.size()), ""};
  return ref;
}

using capledger::test::row_of;

std::vector<std::string> sorted_findings_of(const report_output& out, const std::string& rule)
{
  std::vector<std::string> rows = capledger::test::findings_of(out, rule);
  std::sort(rows.begin(), rows.end());
  return rows;
}

// ---- the naive reference -----------------------------------------------------------------------

struct naive_line {
  std::string id, date, entity, country, chip, pathway, order;
  std::int64_t quantity = 0, tpp = 0;
};

std::vector<naive_line> naive_parse(const std::string& shipments)
{
  const csv_table table = parse_csv(shipments);
  std::map<std::string, std::size_t> column;
  for (std::size_t i = 0; i < table.front().size(); ++i) { column[table.front()[i]] = i; }
  std::vector<naive_line> lines;
  for (std::size_t r = 1; r < table.size(); ++r) {
    const csv_row& row = table[r];
    const auto cell    = [&](const char* name) { return row.at(column.at(name)); };
    naive_line line;
    line.id       = cell("shipment_id");
    line.date     = cell("date");
    line.entity   = cell("entity");
    line.country  = upper(cell("country"));
    line.chip     = cell("chip");
    line.pathway  = cell("pathway").empty() ? "LICENSE" : upper(cell("pathway"));
    line.order    = cell("order_id").empty() ? line.id : cell("order_id");
    line.quantity = std::stoll(cell("quantity"));
    const std::string per_unit = cell("tpp_per_unit");
    std::int64_t unit_tpp      = 0;
    if (!per_unit.empty()) {
      unit_tpp = std::stoll(per_unit);
    } else {
      const int chip = bundled().chips.find(line.chip);
      EXPECT_GE(chip, 0) << line.chip;
      unit_tpp = chip >= 0 ? bundled().chips.rows[static_cast<std::size_t>(chip)].tpp : 0;
    }
    line.tpp = line.quantity * unit_tpp;
    lines.push_back(std::move(line));
  }
  return lines;
}

int tier_of(const std::string& iso)
{
  const int code = bundled().countries.find(iso);
  EXPECT_GE(code, 0) << iso;
  return bundled().countries.rows[static_cast<std::size_t>(code)].tier;
}

/// Findings of the running-total rules and PROHIBITED_DESTINATION, as the SPEC describes them.
std::map<std::string, std::vector<std::string>> naive_findings(const std::vector<naive_line>& lines,
                                                                std::string as_of)
{
  const rule_set& rules = bundled().rules;
  if (as_of.empty()) {
    for (const auto& l : lines) { as_of = std::max(as_of, l.date); }
  }
  const std::string first = format_date(rules.counting_starts);
  const std::string last  = std::min(format_date(rules.counting_ends), as_of);
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].date >= first && lines[i].date <= last) { order.push_back(i); }
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return lines[a].date < lines[b].date; });

  const auto cap_pathway = [&](const std::string& p) {
    for (int code = 0; code < pathway_count; ++code) {
      if (pathway_name(static_cast<pathway>(code)) == p) { return ((rules.country_cap_pathways >> code) & 1U) != 0; }
    }
    return false;
  };
  const auto nveu_cap = [&](const std::string& date) {
    for (const auto& phase : rules.nveu_caps) {
      if (format_date(phase.through) >= date) { return phase.tpp; }
    }
    return rules.nveu_caps.back().tpp;
  };
  struct running {
    std::int64_t total = 0;
    bool crossed       = false;
  };
  std::map<std::string, running> country, lpp_order, nveu;
  std::map<std::pair<std::string, std::string>, running> lpp_year;
  struct first_and_sum {
    std::size_t first = 0;
    std::int64_t tpp  = 0;
  };
  std::map<std::pair<std::string, std::string>, first_and_sum> prohibited;
  std::map<std::string, std::vector<std::string>> out;
  const auto emit = [&](const std::string& rule, const std::string& entity, const std::string& ctry,
                        const std::string& order_id, const std::string& year, const naive_line& l,
                        std::int64_t value, std::int64_t limit) {
    out[rule].push_back("violation," + rule + "," + entity + "," + ctry + ",," + order_id + "," + year + "," +
                        l.date + "," + l.id + "," + std::to_string(value) + "," + std::to_string(limit));
  };
  const auto add = [&](running& r, std::int64_t tpp, std::int64_t limit) {
    r.total += tpp;
    if (!r.crossed && r.total > limit) {
      r.crossed = true;
      return true;
    }
    return false;
  };

  for (const std::size_t i : order) {
    const naive_line& l = lines[i];
    const int code      = bundled().countries.find(l.country);
    const auto& info    = bundled().countries.rows[static_cast<std::size_t>(code)];
    if (info.tier == 2 && cap_pathway(l.pathway)) {
      const std::int64_t cap = rules.country_cap_tpp * (info.g2g_partner ? rules.g2g_multiplier : 1);
      if (add(country[l.country], l.tpp, cap)) {
        emit("COUNTRY_CAP_EXCEEDED", "", l.country, "", "", l, country[l.country].total, cap);
      }
    }
    if (l.pathway == "LPP") {
      if (add(lpp_order[l.order], l.tpp, rules.lpp_per_order_tpp)) {
        emit("LPP_ORDER_LIMIT", l.entity, l.country, l.order, "", l, lpp_order[l.order].total,
             rules.lpp_per_order_tpp);
      }
      const auto key = std::pair(l.entity, l.date.substr(0, 4));
      if (add(lpp_year[key], l.tpp, rules.lpp_per_consignee_year_tpp)) {
        emit("LPP_ANNUAL_LIMIT", l.entity, "", "", key.second, l, lpp_year[key].total,
             rules.lpp_per_consignee_year_tpp);
      }
    }
    if (l.pathway == "NVEU") {
      const std::string key = l.entity + "\x1f" + l.country;
      if (add(nveu[key], l.tpp, nveu_cap(l.date))) {
        emit("NVEU_CAP_EXCEEDED", l.entity, l.country, "", "", l, nveu[key].total, nveu_cap(l.date));
      }
    }
    if (l.quantity > 0 && info.tier == 3) {
      auto [it, added] = prohibited.try_emplace({l.entity, l.country}, first_and_sum{i, 0});
      it->second.tpp += l.tpp;
    }
  }
  for (const auto& [key, p] : prohibited) {
    const naive_line& l = lines[p.first];
    out["PROHIBITED_DESTINATION"].push_back("violation,PROHIBITED_DESTINATION," + key.first + "," + key.second +
                                            ",,,," + l.date + "," + l.id + "," + std::to_string(p.tpp) + ",");
  }
  for (auto& [rule, rows] : out) { std::sort(rows.begin(), rows.end()); }
  return out;
}

// ---- reading the outputs -----------------------------------------------------------------------

struct triple {
  std::int64_t records = 0, units = 0, tpp = 0;
  friend bool operator==(const triple& a, const triple& b)
  {
    return a.records == b.records && a.units == b.units && a.tpp == b.tpp;
  }
  friend std::ostream& operator<<(std::ostream& os, const triple& t)
  {
    return os << "{records " << t.records << ", units " << t.units << ", tpp " << t.tpp << "}";
  }
};

/// Sums the records/units/tpp columns of an output CSV; checks its header and that keys ascend.
triple sum_file(const report_output& out, const std::string& name, std::size_t first_column,
                std::size_t key_columns)
{
  const csv_table table = parse_csv(out.files.at(name));
  EXPECT_FALSE(table.empty()) << name;
  triple sum;
  csv_row previous_key;
  for (std::size_t r = 1; r < table.size(); ++r) {
    const csv_row& row = table[r];
    EXPECT_EQ(row.size(), table[0].size()) << name << " row " << r;
    EXPECT_EQ(table[0][first_column], "records") << name;
    sum.records += std::stoll(row.at(first_column));
    sum.units += std::stoll(row.at(first_column + 1));
    sum.tpp += std::stoll(row.at(first_column + 2));
    const csv_row key(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(key_columns));
    if (r > 1) { EXPECT_LT(previous_key, key) << name << " is not sorted at row " << r; }
    previous_key = key;
  }
  return sum;
}

triple json_triple(const nlohmann::json& j)
{
  return {j.at("records").get<std::int64_t>(), j.at("units").get<std::int64_t>(), j.at("tpp").get<std::int64_t>()};
}

nlohmann::json summary_without_inputs(const report_output& out)
{
  nlohmann::json j = nlohmann::json::parse(out.files.at("summary.json"));
  j.erase("inputs");
  return j;
}

using capledger::test::file_list;

using RulesProperty = capledger::test::backend_test;

const std::vector<gen_case>& all_cases()
{
  static const std::vector<gen_case> cases = {
    {0, 1, false},    {1, 1, false},     {1, 9, false},     {100, 1, false},  {100, 2, true},
    {100, 3, true},   {5000, 4, false},  {5000, 5, true},   {50000, 6, true}, {50000, 7, false},
  };
  return cases;
}

// ---- properties ----------------------------------------------------------------------------------

TEST_P(RulesProperty, TotalsAgreeAcrossEveryGrouping)
{
  for (const gen_case& c : all_cases()) {
    SCOPED_TRACE(describe(c));
    const generated g = generate(c);
    const auto ref    = with_entities(g.entities);
    const auto out    = report_of(ref, {{"shipments.csv", g.shipments}});

    // Independent totals straight from the CSV text (every line: as_of is the latest date).
    triple naive;
    std::map<int, triple> naive_tier;
    for (const auto& l : naive_parse(g.shipments)) {
      for (triple* t : {&naive, &naive_tier[tier_of(l.country)]}) {
        t->records += 1;
        t->units += l.quantity;
        t->tpp += l.tpp;
      }
    }
    EXPECT_EQ(naive.records, c.records);

    const auto summary = nlohmann::json::parse(out.files.at("summary.json"));
    EXPECT_EQ(json_triple(summary.at("totals")), naive);
    for (int tier = 1; tier <= 3; ++tier) {
      EXPECT_EQ(json_triple(summary.at("totals_by_tier").at(std::to_string(tier))), naive_tier[tier]) << tier;
    }
    EXPECT_EQ(summary.at("lines").at("read").get<std::int64_t>(), c.records);
    EXPECT_EQ(summary.at("lines").at("used").get<std::int64_t>(), c.records);
    EXPECT_EQ(sum_file(out, "by_country.csv", 2, 1), naive);
    EXPECT_EQ(sum_file(out, "by_entity.csv", 3, 1), naive);
    EXPECT_EQ(sum_file(out, "by_entity_country.csv", 2, 2), naive);
    EXPECT_EQ(sum_file(out, "by_chip.csv", 1, 1), naive);
    EXPECT_EQ(sum_file(out, "by_exporter.csv", 1, 1), naive);

    // summary.json counts findings per rule as findings.csv lists them.
    std::map<std::string, std::int64_t> per_rule;
    for (const auto& f : out.checks.findings) { ++per_rule[f.rule]; }
    for (const auto& rule : rule_names()) {
      EXPECT_EQ(summary.at("findings").at("by_rule").at(rule).get<std::int64_t>(), per_rule[rule]) << rule;
    }
    EXPECT_EQ(parse_csv(out.files.at("findings.csv")).size(), out.checks.findings.size() + 1);
  }
}

TEST_P(RulesProperty, SplittingTheLogIntoTwoFilesChangesNothing)
{
  for (const gen_case& c : all_cases()) {
    if (c.records == 0) { continue; }
    SCOPED_TRACE(describe(c));
    const generated g = generate(c);
    const auto ref    = with_entities(g.entities);
    const auto lines  = physical_lines(g.shipments);
    ASSERT_EQ(static_cast<std::int64_t>(lines.size()), c.records + 1);
    const auto whole = report_of(ref, {{"shipments.csv", g.shipments}});
    for (const std::size_t cut : {std::size_t{1}, lines.size() / 2, lines.size()}) {
      std::string part1 = lines[0] + "\n", part2 = lines[0] + "\n";
      for (std::size_t i = 1; i < lines.size(); ++i) { (i < cut ? part1 : part2) += lines[i] + "\n"; }
      const auto split = report_of(ref, {{"part1.csv", part1}, {"part2.csv", part2}});
      for (const auto& [name, content] : whole.files) {
        if (name == "summary.json") {
          EXPECT_EQ(summary_without_inputs(split), summary_without_inputs(whole)) << "cut " << cut;
        } else {
          EXPECT_EQ(split.files.at(name), content) << name << ", cut " << cut;
        }
      }
      const auto inputs = nlohmann::json::parse(split.files.at("summary.json")).at("inputs");
      ASSERT_EQ(inputs.size(), 2U);
      EXPECT_EQ(inputs[0].at("lines_read").get<std::int64_t>() + inputs[1].at("lines_read").get<std::int64_t>(),
                c.records);
    }
  }
}

TEST_P(RulesProperty, ShufflingLinesWithinADateKeepsTotals)
{
  for (const gen_case& c : all_cases()) {
    if (c.records < 2) { continue; }
    SCOPED_TRACE(describe(c));
    const generated g = generate(c);
    const auto ref    = with_entities(g.entities);
    auto lines        = physical_lines(g.shipments);
    const std::string header = lines.front();
    lines.erase(lines.begin());
    // Group by date (the second field; ids hold no commas), then shuffle inside each group.
    const auto date_of = [](const std::string& line) { return line.substr(line.find(',') + 1, 10); };
    std::stable_sort(lines.begin(), lines.end(),
                     [&](const std::string& a, const std::string& b) { return date_of(a) < date_of(b); });
    std::mt19937_64 rng(c.seed * 7919 + 1);
    for (std::size_t begin = 0; begin < lines.size();) {
      std::size_t end = begin;
      while (end < lines.size() && date_of(lines[end]) == date_of(lines[begin])) { ++end; }
      std::shuffle(lines.begin() + static_cast<std::ptrdiff_t>(begin), lines.begin() + static_cast<std::ptrdiff_t>(end),
                   rng);
      begin = end;
    }
    std::string shuffled = header + "\n";
    for (const auto& l : lines) { shuffled += l + "\n"; }
    ASSERT_NE(shuffled, g.shipments);

    const auto original = report_of(ref, {{"shipments.csv", g.shipments}});
    const auto moved    = report_of(ref, {{"shipments.csv", shuffled}});
    for (const char* name : {"by_entity.csv", "by_entity_country.csv", "by_chip.csv", "by_exporter.csv",
                             "uveu_shares.csv"}) {
      EXPECT_EQ(moved.files.at(name), original.files.at(name)) << name;
    }
    // by_country.csv: every column but the breach line (which may move within its date).
    auto a = parse_csv(original.files.at("by_country.csv")), b = parse_csv(moved.files.at("by_country.csv"));
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t r = 0; r < a.size(); ++r) {
      EXPECT_EQ(csv_row(a[r].begin(), a[r].begin() + 9), csv_row(b[r].begin(), b[r].begin() + 9)) << "row " << r;
    }
    const auto sa = nlohmann::json::parse(original.files.at("summary.json"));
    const auto sb = nlohmann::json::parse(moved.files.at("summary.json"));
    EXPECT_EQ(sa.at("totals"), sb.at("totals"));
    EXPECT_EQ(sa.at("totals_by_tier"), sb.at("totals_by_tier"));
  }
}

TEST_P(RulesProperty, NaiveRunningTotalChecksAgreeWithTheEngine)
{
  const std::vector<std::string> rules = {"COUNTRY_CAP_EXCEEDED", "LPP_ORDER_LIMIT", "LPP_ANNUAL_LIMIT",
                                          "NVEU_CAP_EXCEEDED", "PROHIBITED_DESTINATION"};
  for (const gen_case& c : all_cases()) {
    SCOPED_TRACE(describe(c));
    const generated g = generate(c);
    const auto ref    = with_entities(g.entities);
    const auto lines  = naive_parse(g.shipments);
    const auto out    = report_of(ref, {{"shipments.csv", g.shipments}});
    auto expected     = naive_findings(lines, "");
    for (const auto& rule : rules) { EXPECT_EQ(sorted_findings_of(out, rule), expected[rule]) << rule; }
    if (c.force_breaches) {
      for (const auto& rule : rules) { EXPECT_FALSE(expected[rule].empty()) << rule << " was not planted"; }
    }

    // The same with --as-of in the middle of the counting window.
    report_options options;
    options.as_of       = parse_date("2026-06-30");
    const auto mid      = report_of(ref, {{"shipments.csv", g.shipments}}, options);
    auto expected_mid   = naive_findings(lines, "2026-06-30");
    for (const auto& rule : rules) { EXPECT_EQ(sorted_findings_of(mid, rule), expected_mid[rule]) << rule << " as of"; }
  }
}

TEST_P(RulesProperty, ForceBreachesMakesEveryViolationRuleFire)
{
  const std::vector<std::string> violation_rules = {
    "PROHIBITED_DESTINATION", "COUNTRY_CAP_EXCEEDED", "LPP_ORDER_LIMIT",  "LPP_ANNUAL_LIMIT", "NVEU_CAP_EXCEEDED",
    "UNAUTHORIZED_PATHWAY",   "UVEU_TIER2_SHARE",     "UVEU_TIER1_SHARE", "UVEU_US_SHARE"};
  for (const gen_case& c : all_cases()) {
    if (!c.force_breaches) { continue; }
    SCOPED_TRACE(describe(c));
    const generated g = generate(c);
    const auto out    = report_of(with_entities(g.entities), {{"shipments.csv", g.shipments}});
    std::set<std::string> fired;
    for (const auto& f : out.checks.findings) {
      if (f.severity == "violation") { fired.insert(f.rule); }
    }
    for (const auto& rule : violation_rules) { EXPECT_EQ(fired.count(rule), 1U) << rule; }
    EXPECT_GT(out.checks.violations, 0);
  }
}

TEST_P(RulesProperty, WithoutForceBreachesOrdinaryLinesKeepTheSteeredRules)
{
  // generate.hpp: ordinary lines respect the LPP, NVEU, UVEU-share and pathway rules by construction.
  for (const gen_case& c : all_cases()) {
    if (c.force_breaches) { continue; }
    SCOPED_TRACE(describe(c));
    const generated g = generate(c);
    const auto out    = report_of(with_entities(g.entities), {{"shipments.csv", g.shipments}});
    for (const auto& f : out.checks.findings) {
      EXPECT_TRUE(f.rule == "COUNTRY_CAP_EXCEEDED" || f.rule == "PROHIBITED_DESTINATION" ||
                  f.rule == "CAP_NEAR_LIMIT")
        << "unexpected " << row_of(f);
    }
  }
}

TEST_P(RulesProperty, EmptyLogWritesHeadersOnly)
{
  const generated g = generate({0, 1, false});
  EXPECT_EQ(g.shipments, "shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit\n");
  const auto out = report_of(with_entities(g.entities), {{"shipments.csv", g.shipments}});
  for (const char* name : {"by_country.csv", "by_entity.csv", "by_entity_country.csv", "by_chip.csv",
                           "by_exporter.csv", "findings.csv"}) {
    EXPECT_EQ(parse_csv(out.files.at(name)).size(), 1U) << name;
  }
  EXPECT_FALSE(out.as_of.has_value());
  EXPECT_EQ(out.checks.findings.size(), 0U);
  const auto summary = nlohmann::json::parse(out.files.at("summary.json"));
  EXPECT_TRUE(summary.at("as_of").is_null());
  EXPECT_EQ(json_triple(summary.at("totals")), triple{});
}

TEST_P(RulesProperty, SameOptionsGiveIdenticalOutputs)
{
  const gen_case c{5000, 11, true};
  const generated a = generate(c), b = generate(c);
  ASSERT_EQ(a.shipments, b.shipments);
  ASSERT_EQ(a.entities, b.entities);
  const auto ref = with_entities(a.entities);
  EXPECT_EQ(report_of(ref, {{"shipments.csv", a.shipments}}).files, report_of(ref, {{"shipments.csv", b.shipments}}).files);
}

INSTANTIATE_TEST_SUITE_P(Backends, RulesProperty, ::testing::Values(std::string("cpu"), std::string("stream"), std::string("gpu")),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(RulesPropertyGenerator, ForceBreachesWithTooFewRecordsIsAConfigError)
{
  EXPECT_THROW((void)generate({1, 1, true}), config_error);
}

}  // namespace
