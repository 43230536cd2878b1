/// @file rules_test.cpp
/// @brief Every rule of SPEC §4 on small hand-checked logs: exactly at each limit (no finding) and
/// one TPP over (a finding with its exact date, shipment_id, value and limit), on every backend.
///
/// Expected values are worked out by hand in the comments next to them; none is copied from
/// the program's output. Most cases use a small rule set (country cap 1000, LPP 100 per order
/// and 250 per consignee-year, NVEU 500/700/900, h100_tpp 3) and `tpp_per_unit` to hit exact
/// values; one case uses the bundled rule set.
#include <capledger/backend.hpp>
#include <capledger/calendar.hpp>
#include <capledger/checks.hpp>
#include <capledger/entities.hpp>
#include <capledger/error.hpp>
#include <capledger/report.hpp>
#include <capledger/shipments.hpp>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include "test_support.hpp"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using namespace capledger;

constexpr const char* log_header =
  "shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit\n";

/// A shipment log: the header, then one row per element.
std::string log_text(const std::vector<std::string>& rows)
{
  std::string text = log_header;
  for (const auto& row : rows) { text += row + "\n"; }
  return text;
}

using capledger::test::scratch_dir;

/// A small rule set with round limits.
struct small_rules {
  std::string counting_starts = "2025-01-01";
  std::string counting_ends   = "2027-12-31";
  std::int64_t h100_tpp       = 3;
  std::int64_t country_cap    = 1000;
  std::int64_t g2g_multiplier = 2;
  std::int64_t lpp_per_order  = 100;
  std::int64_t lpp_per_year   = 250;
  std::int64_t nveu_2025 = 500, nveu_2026 = 700, nveu_2027 = 900;

  [[nodiscard]] std::string json() const
  {
    std::ostringstream j;
    j << R"({"id": "test-small", "counting_starts": ")" << counting_starts << R"(", "counting_ends": ")"
      << counting_ends << R"(", "h100_tpp": )" << h100_tpp << R"(, "country_cap": {"tpp": )" << country_cap
      << R"(, "g2g_multiplier": )" << g2g_multiplier << R"(, "pathways": ["LICENSE"]},)"
      << R"("lpp": {"per_order_tpp": )" << lpp_per_order << R"(, "per_consignee_year_tpp": )" << lpp_per_year
      << "},"
      << R"("nveu_caps": [{"through": "2025-12-31", "tpp": )" << nveu_2025
      << R"(}, {"through": "2026-12-31", "tpp": )" << nveu_2026 << R"(}, {"through": "2027-12-31", "tpp": )"
      << nveu_2027 << "}],"
      << R"("uveu": {"max_tier2_country_share": 0.07, "min_tier1_share": 0.75, "min_us_share_if_us_hq": 0.50}})";
    return j.str();
  }
};

/// Entities used by most cases.
constexpr const char* default_entities =
  "entity,hq_country,status,nveu_countries,name\n"
  "U1,US,UVEU,,Universal One\n"
  "N1,US,NVEU,IN;AE,National One\n"
  "HQUS,US,NONE,,\n"
  "HQIN,IN,NONE,,\n"
  "NOHQ,,NONE,,\n"
  "\"Acme, Inc.\",US,NONE,,\"Acme, Inc.\"\n";

/// Loads reference data through `load_reference`: bundled tables unless overridden.
/// @param rules nullptr for the bundled rule set
reference_data make_reference(const small_rules* rules, const std::string& entities = default_entities,
                              const std::string& countries = "")
{
  scratch_dir dir;
  report_options options;
  if (rules != nullptr) { options.rules_path = dir.write("rules.json", rules->json()); }
  if (!entities.empty()) { options.entities_path = dir.write("entities.csv", entities); }
  if (!countries.empty()) { options.countries_path = dir.write("countries.csv", countries); }
  return load_reference(options);
}

/// The bundled countries table with India marked as a G2G partner.
std::string countries_with_india_g2g()
{
  std::string text = read_input_file(default_datasets_dir() + "/countries.csv");
  const std::string from = "IN,India,2,0";
  const auto at          = text.find(from);
  EXPECT_NE(at, std::string::npos);
  if (at != std::string::npos) { text.replace(at, from.size(), "IN,India,2,1"); }
  return text;
}

using capledger::test::findings_of;
using capledger::test::row_of;

/// The line of CSV file @p name that starts with `key,`; empty when none does.
std::string csv_line(const report_output& out, const std::string& name, const std::string& key)
{
  const auto it = out.files.find(name);
  if (it == out.files.end()) { return "<no " + name + ">"; }
  std::istringstream in(it->second);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ",", 0) == 0) { return line; }
  }
  return "";
}

day_t date(const char* text)
{
  const auto day = parse_date(text);
  EXPECT_TRUE(day.has_value()) << text;
  return day.value_or(0);
}

using capledger::test::file_list;

class RulesGolden : public capledger::test::backend_test {
 protected:
  report_output run(const reference_data& ref, const std::vector<std::string>& rows,
                    const report_options& options = {})
  {
    return report_of(ref, file_list{{"shipments.csv", log_text(rows)}}, options);
  }
};

using strings = std::vector<std::string>;

// ---- COUNTRY_CAP_EXCEEDED ----------------------------------------------------------------------

TEST_P(RulesGolden, CountryCapExactlyAtLimitIsNoViolation)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  // LICENSE 600 + 400 = 1000 = cap; the LPP line (50) and the NVEU line do not count against it.
  const auto out = run(ref, {"c1,2025-02-01,E1,IN,H100-SXM,1,LICENSE,,X,600",
                             "c2,2025-03-01,E1,IN,H100-SXM,2,,,X,200",
                             "c3,2025-03-02,E1,IN,H100-SXM,1,LPP,,X,50",
                             "c4,2025-03-03,N1,IN,H100-SXM,1,NVEU,,X,50"});
  EXPECT_EQ(findings_of(out, "COUNTRY_CAP_EXCEEDED"), strings{});
  // 1000 >= 0.95 x 1000: the highest level only, limit 950.
  EXPECT_EQ(findings_of(out, "CAP_NEAR_LIMIT"),
            (strings{"warning,CAP_NEAR_LIMIT,,IN,,,,,,1000,950"}));
  // records 4, units 1+2+1+1 = 5, tpp 1100 (h100 1100/3 = 366.67), cap pathway 1000 of 1000.
  EXPECT_EQ(csv_line(out, "by_country.csv", "IN"), "IN,2,4,5,1100,366.67,1000,1000,100.00,,");
  EXPECT_EQ(out.checks.violations, 0);
}

TEST_P(RulesGolden, CountryCapOneTppOverIsViolationAtCrossingLine)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  const auto out = run(ref, {"c1,2025-02-01,E1,IN,H100-SXM,1,LICENSE,,X,600",
                             "c2,2025-03-01,E1,IN,H100-SXM,1,license,,X,401"});
  EXPECT_EQ(findings_of(out, "COUNTRY_CAP_EXCEEDED"),
            (strings{"violation,COUNTRY_CAP_EXCEEDED,,IN,,,,2025-03-01,c2,1001,1000"}));
  EXPECT_EQ(findings_of(out, "CAP_NEAR_LIMIT"), strings{});  // exceeded: no warning as well
  // 1001/3 = 333.666.. -> 333.67; 1001/1000 = 100.1%.
  EXPECT_EQ(csv_line(out, "by_country.csv", "IN"), "IN,2,2,2,1001,333.67,1001,1000,100.10,2025-03-01,c2");
  EXPECT_EQ(out.checks.violations, 1);
}

TEST_P(RulesGolden, CountryCapCrossingFollowsDateOrderNotFileOrder)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  // Date order: s2 (400), s3 (1100: crossing), s1. File order would make s2 the crossing line.
  const auto out = run(ref, {"s1,2025-03-01,E1,IN,H100-SXM,1,,,X,700",
                             "s2,2025-02-01,E1,IN,H100-SXM,1,,,X,400",
                             "s3,2025-02-15,E1,IN,H100-SXM,1,,,X,700"});
  EXPECT_EQ(findings_of(out, "COUNTRY_CAP_EXCEEDED"),
            (strings{"violation,COUNTRY_CAP_EXCEEDED,,IN,,,,2025-02-15,s3,1100,1000"}));
}

TEST_P(RulesGolden, CountryCapSameDateTiesFollowInputPositionInOneFile)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  // Same date: t2 (600) comes first in the file, t1 (500) makes 1100. Ordering by id would pick t2.
  const auto out = run(ref, {"t2,2025-05-01,E1,IN,H100-SXM,1,,,X,600",
                             "t1,2025-05-01,E1,IN,H100-SXM,1,,,X,500"});
  EXPECT_EQ(findings_of(out, "COUNTRY_CAP_EXCEEDED"),
            (strings{"violation,COUNTRY_CAP_EXCEEDED,,IN,,,,2025-05-01,t1,1100,1000"}));
}

TEST_P(RulesGolden, CountryCapSameDateTiesFollowFileOrderAcrossFiles)
{
  const small_rules rules;
  const auto ref     = make_reference(&rules);
  const auto file_a  = log_text({"a1,2025-05-01,E1,IN,H100-SXM,1,,,X,500"});
  const auto file_b  = log_text({"b0,2025-04-01,E1,IN,H100-SXM,1,,,X,300",
                                 "b1,2025-05-01,E1,IN,H100-SXM,1,,,X,300"});
  // A then B: b0 300, a1 800, b1 1100 -> b1.
  const auto a_first = report_of(ref, file_list{{"a.csv", file_a}, {"b.csv", file_b}});
  EXPECT_EQ(findings_of(a_first, "COUNTRY_CAP_EXCEEDED"),
            (strings{"violation,COUNTRY_CAP_EXCEEDED,,IN,,,,2025-05-01,b1,1100,1000"}));
  // B then A: b0 300, b1 600, a1 1100 -> a1.
  const auto b_first = report_of(ref, file_list{{"b.csv", file_b}, {"a.csv", file_a}});
  EXPECT_EQ(findings_of(b_first, "COUNTRY_CAP_EXCEEDED"),
            (strings{"violation,COUNTRY_CAP_EXCEEDED,,IN,,,,2025-05-01,a1,1100,1000"}));
}

TEST_P(RulesGolden, CountryCapReturnAfterCrossingKeepsFirstCrossing)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  // 800, 1100 (crossing r2), 600, 1050: the finding stays on r2 with value 1100.
  const auto out = run(ref, {"r1,2025-02-01,E1,IN,H100-SXM,1,,,X,800",
                             "r2,2025-02-02,E1,IN,H100-SXM,1,,,X,300",
                             "r3,2025-02-03,E1,IN,H100-SXM,-1,,,X,500",
                             "r4,2025-02-04,E1,IN,H100-SXM,1,,,X,450"});
  EXPECT_EQ(findings_of(out, "COUNTRY_CAP_EXCEEDED"),
            (strings{"violation,COUNTRY_CAP_EXCEEDED,,IN,,,,2025-02-02,r2,1100,1000"}));
  // records 4, units 2, tpp 1050 (350.00 H100), cap pathway 1050 (105.00%).
  EXPECT_EQ(csv_line(out, "by_country.csv", "IN"), "IN,2,4,2,1050,350.00,1050,1000,105.00,2025-02-02,r2");
  // cap_used_pct is the total at as_of: brought back under (600) it is 60.00 beside the breach,
  // and a country with returns only is below 0 (-50: -5.00%, -16.67 H100, half away from zero).
  const auto under =
      run(ref, {"r1,2025-02-01,E1,IN,H100-SXM,1,,,X,800", "r2,2025-02-02,E1,IN,H100-SXM,1,,,X,300",
                "r3,2025-02-03,E1,IN,H100-SXM,-1,,,X,500", "r5,2025-02-03,E1,BR,H100-SXM,-1,,,X,50"});
  EXPECT_EQ(csv_line(under, "by_country.csv", "IN"), "IN,2,3,1,600,200.00,600,1000,60.00,2025-02-02,r2");
  EXPECT_EQ(csv_line(under, "by_country.csv", "BR"), "BR,2,1,-1,-50,-16.67,-50,1000,-5.00,,");
}

TEST_P(RulesGolden, CountryCapReturnBeforeCrossingDelaysIt)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  // 900, 700 (return), 950, 1010: crossing l4. Without the return l3 would cross at 1150.
  const auto out = run(ref, {"l1,2025-02-01,E1,IN,H100-SXM,1,,,X,900",
                             "l2,2025-02-02,E1,IN,H100-SXM,-1,,,X,200",
                             "l3,2025-02-03,E1,IN,H100-SXM,1,,,X,250",
                             "l4,2025-02-04,E1,IN,H100-SXM,1,,,X,60"});
  EXPECT_EQ(findings_of(out, "COUNTRY_CAP_EXCEEDED"),
            (strings{"violation,COUNTRY_CAP_EXCEEDED,,IN,,,,2025-02-04,l4,1010,1000"}));
}

TEST_P(RulesGolden, LinesOutsideWindowCountInTotalsButNotInChecks)
{
  const small_rules rules;  // window 2025-01-01 .. 2027-12-31
  const auto ref = make_reference(&rules);
  const auto out = run(ref, {"w0,2024-12-31,E1,IN,H100-SXM,1,,,X,900",  // before the window
                             "w1,2025-01-01,E1,IN,H100-SXM,1,,,X,1000", // first window day: at the cap
                             "w2,2028-01-01,E1,IN,H100-SXM,1,,,X,5",    // after the window
                             "w3,2024-12-31,E1,CN,H100-SXM,1,,,X,7",    // tier 3, outside
                             "w4,2028-01-01,E1,RU,H100-SXM,1,,,X,7"});  // tier 3, outside
  EXPECT_EQ(findings_of(out, "COUNTRY_CAP_EXCEEDED"), strings{});
  EXPECT_EQ(findings_of(out, "PROHIBITED_DESTINATION"), strings{});
  EXPECT_EQ(out.checks.violations, 0);
  // Totals: every line up to as_of (default: latest date, 2028-01-01). 1905/3 = 635.00.
  EXPECT_EQ(csv_line(out, "by_country.csv", "IN"), "IN,2,3,3,1905,635.00,1000,1000,100.00,,");
  EXPECT_EQ(csv_line(out, "by_country.csv", "CN"), "CN,3,1,1,7,2.33,,,,,");
  EXPECT_EQ(csv_line(out, "by_entity.csv", "E1"), "E1,NONE,,5,5,1919,639.67");
  ASSERT_TRUE(out.as_of.has_value());
  EXPECT_EQ(format_date(*out.as_of), "2028-01-01");
}

// SPEC §2: counting_ends is in the window. With as_of past it, lines dated on it still count in
// every check: IN 900 + 101 = 1001 crosses on 2027-12-31; CN that day is prohibited; RU the day
// after is not.
TEST_P(RulesGolden, LinesOnTheLastWindowDayCountInChecks)
{
  const small_rules rules;  // window 2025-01-01 .. 2027-12-31
  const auto ref = make_reference(&rules);
  const auto out = run(ref, {"e1,2027-06-01,E1,IN,H100-SXM,1,,,X,900",
                             "e2,2027-12-31,E1,IN,H100-SXM,1,,,X,101", "e3,2027-12-31,E1,CN,H100-SXM,1,,,X,7",
                             "e4,2028-01-01,E1,RU,H100-SXM,1,,,X,7"});  // as_of 2028-01-01
  EXPECT_EQ(findings_of(out, "COUNTRY_CAP_EXCEEDED"),
            (strings{"violation,COUNTRY_CAP_EXCEEDED,,IN,,,,2027-12-31,e2,1001,1000"}));
  EXPECT_EQ(findings_of(out, "PROHIBITED_DESTINATION"),
            (strings{"violation,PROHIBITED_DESTINATION,E1,CN,,,,2027-12-31,e3,7,"}));
  EXPECT_EQ(csv_line(out, "by_country.csv", "IN"), "IN,2,2,2,1001,333.67,1001,1000,100.10,2027-12-31,e2");
}

TEST_P(RulesGolden, LinesAfterAsOfAreIgnoredEverywhere)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  report_options options;
  options.as_of  = date("2025-06-30");
  const auto out = run(ref,
                       {"w1,2025-06-30,E1,IN,H100-SXM,1,,,X,1000",  // on as_of: counts
                        "w2,2025-07-01,E1,IN,H100-SXM,1,,,X,1",     // after: would cross
                        "w3,2025-07-01,E1,CN,H100-SXM,1,,,X,1"},    // after: would be prohibited
                       options);
  EXPECT_EQ(out.checks.violations, 0);
  EXPECT_EQ(csv_line(out, "by_country.csv", "IN"), "IN,2,1,1,1000,333.33,1000,1000,100.00,,");
  EXPECT_EQ(csv_line(out, "by_country.csv", "CN"), "");
  EXPECT_NE(out.files.at("summary.json").find("\"used\": 1,"), std::string::npos) << out.files.at("summary.json");
}

TEST_P(RulesGolden, CountryCapDoublesForG2gPartner)
{
  const small_rules rules;  // cap 1000, g2g multiplier 2
  const auto ref = make_reference(&rules, default_entities, countries_with_india_g2g());
  const auto at  = run(ref, {"g1,2025-02-01,E1,IN,H100-SXM,1,,,X,2000",
                             "g2,2025-02-01,E1,BR,H100-SXM,1,,,X,1001"});
  // IN may reach 2000; BR (not a partner) crosses at 1001.
  EXPECT_EQ(findings_of(at, "COUNTRY_CAP_EXCEEDED"),
            (strings{"violation,COUNTRY_CAP_EXCEEDED,,BR,,,,2025-02-01,g2,1001,1000"}));
  EXPECT_EQ(findings_of(at, "CAP_NEAR_LIMIT"), (strings{"warning,CAP_NEAR_LIMIT,,IN,,,,,,2000,1900"}));
  EXPECT_EQ(csv_line(at, "by_country.csv", "IN"), "IN,2,1,1,2000,666.67,2000,2000,100.00,,");

  const auto over = run(ref, {"g1,2025-02-01,E1,IN,H100-SXM,1,,,X,2000",
                              "g3,2025-02-02,E1,IN,H100-SXM,1,,,X,1"});
  EXPECT_EQ(findings_of(over, "COUNTRY_CAP_EXCEEDED"),
            (strings{"violation,COUNTRY_CAP_EXCEEDED,,IN,,,,2025-02-02,g3,2001,2000"}));
}

// ---- LPP ----------------------------------------------------------------------------------------

TEST_P(RulesGolden, LppOrderLimitKeyedByOrderWithEntityAndCountryOfCrossingLine)
{
  const small_rules rules;  // 100 per order, 250 per consignee-year
  const auto ref = make_reference(&rules);
  const auto out = run(ref, {"p1,2025-02-01,L1,IN,H100-SXM,1,LPP,O1,X,60",
                             "p2,2025-02-02,L1,IN,H100-SXM,1,LPP,O1,X,40",   // O1: 100, at the limit
                             "p3,2025-02-03,L1,IN,H100-SXM,1,LPP,O2,X,60",
                             "p4,2025-02-04,L2,BR,H100-SXM,1,LPP,O2,X,41",   // O2: 101 on L2/BR's line
                             "p5,2025-02-05,L3,IN,H100-SXM,1,lpp,,X,101",    // order = shipment id p5
                             "p6,2025-02-06,L3,IN,H100-SXM,1,LICENSE,O3,X,500"});  // not LPP
  EXPECT_EQ(findings_of(out, "LPP_ORDER_LIMIT"),
            (strings{"violation,LPP_ORDER_LIMIT,L2,BR,,O2,,2025-02-04,p4,101,100",
                     "violation,LPP_ORDER_LIMIT,L3,IN,,p5,,2025-02-05,p5,101,100"}));
  EXPECT_EQ(findings_of(out, "LPP_ANNUAL_LIMIT"), strings{});  // L1 160, L2 41, L3 101
}

TEST_P(RulesGolden, LppOrderReturnKeepsFirstCrossing)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  // Date order: q2 (70), q1 (120: crossing), q3 (20).
  const auto out = run(ref, {"q1,2025-03-01,L1,IN,H100-SXM,1,LPP,O9,X,50",
                             "q2,2025-02-01,L1,IN,H100-SXM,1,LPP,O9,X,70",
                             "q3,2025-04-01,L1,IN,H100-SXM,-1,LPP,O9,X,100"});
  EXPECT_EQ(findings_of(out, "LPP_ORDER_LIMIT"),
            (strings{"violation,LPP_ORDER_LIMIT,L1,IN,,O9,,2025-03-01,q1,120,100"}));
}

TEST_P(RulesGolden, LppAnnualLimitPerCalendarYearResetsOnJanuaryFirst)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  const auto out = run(ref, {"y1,2025-03-01,L1,IN,H100-SXM,1,LPP,A,X,100",
                             "y2,2025-07-01,L1,BR,H100-SXM,1,LPP,B,X,100",
                             "y3,2025-12-31,L1,IN,H100-SXM,1,LPP,C,X,50",    // 2025: 250, at the limit
                             "y4,2026-01-01,L1,IN,H100-SXM,1,LPP,D,X,100",   // 100 (350 without reset)
                             "y5,2026-02-01,L1,IN,H100-SXM,1,LPP,E,X,100",   // 200
                             "y6,2026-06-01,L1,IN,H100-SXM,1,LPP,F,X,51",    // 251: crossing
                             "y7,2026-07-01,L2,IN,H100-SXM,1,LPP,G,X,100",   // other entity
                             "y8,2026-07-02,L2,IN,H100-SXM,1,LPP,H,X,100"});
  EXPECT_EQ(findings_of(out, "LPP_ANNUAL_LIMIT"),
            (strings{"violation,LPP_ANNUAL_LIMIT,L1,,,,2026,2026-06-01,y6,251,250"}));
  EXPECT_EQ(findings_of(out, "LPP_ORDER_LIMIT"), strings{});
}

// A year before 1000 prints without leading zeros ("999"); its finding still comes before 2025's.
TEST_P(RulesGolden, LppAnnualFindingsSortedByYearAsANumber)
{
  small_rules rules;
  rules.counting_starts = "0999-01-01";
  const auto ref        = make_reference(&rules);
  const auto out =
      run(ref, {"y1,2025-03-01,L1,IN,H100-SXM,1,LPP,A,X,251", "y2,0999-03-01,L1,IN,H100-SXM,1,LPP,B,X,251"});
  EXPECT_EQ(findings_of(out, "LPP_ANNUAL_LIMIT"),
            (strings{"violation,LPP_ANNUAL_LIMIT,L1,,,,999,0999-03-01,y2,251,250",
                     "violation,LPP_ANNUAL_LIMIT,L1,,,,2025,2025-03-01,y1,251,250"}));
}

// ---- NVEU_CAP_EXCEEDED ---------------------------------------------------------------------------

TEST_P(RulesGolden, NveuCapExactlyAtAndOneOverIn2025)
{
  const small_rules rules;  // 500 through 2025
  const auto ref = make_reference(&rules);
  const auto at  = run(ref, {"n1,2025-06-01,N1,IN,H100-SXM,1,NVEU,,X,500",
                             "n2,2025-06-01,N1,AE,H100-SXM,1,NVEU,,X,500"});  // own running total
  EXPECT_EQ(findings_of(at, "NVEU_CAP_EXCEEDED"), strings{});
  EXPECT_EQ(findings_of(at, "CAP_NEAR_LIMIT"), (strings{"warning,CAP_NEAR_LIMIT,N1,AE,,,,,,500,475",
                                                       "warning,CAP_NEAR_LIMIT,N1,IN,,,,,,500,475"}));
  EXPECT_EQ(at.checks.violations, 0);

  const auto over = run(ref, {"n1,2025-06-01,N1,IN,H100-SXM,1,NVEU,,X,500",
                              "n2,2025-06-02,N1,IN,H100-SXM,1,NVEU,,X,1"});
  EXPECT_EQ(findings_of(over, "NVEU_CAP_EXCEEDED"),
            (strings{"violation,NVEU_CAP_EXCEEDED,N1,IN,,,,2025-06-02,n2,501,500"}));
  EXPECT_EQ(findings_of(over, "CAP_NEAR_LIMIT"), strings{});
}

TEST_P(RulesGolden, NveuCapIsThePhaseInForceOnTheLinesDate)
{
  const small_rules rules;  // 500 through 2025, 700 through 2026
  const auto ref = make_reference(&rules);
  const std::vector<std::string> lines = {"n1,2025-06-01,N1,IN,H100-SXM,1,NVEU,,X,450",
                                          "n2,2026-02-01,N1,IN,H100-SXM,1,NVEU,,X,150"};  // 600 <= 700
  const auto under = run(ref, lines);
  EXPECT_EQ(findings_of(under, "NVEU_CAP_EXCEEDED"), strings{});
  // as_of 2026-02-01: cap 700; 600/700 = 0.857 -> level 0.8, limit ceil(560) = 560.
  EXPECT_EQ(findings_of(under, "CAP_NEAR_LIMIT"), (strings{"warning,CAP_NEAR_LIMIT,N1,IN,,,,,,600,560"}));

  auto at = lines;
  at.push_back("n3,2026-03-01,N1,IN,H100-SXM,1,NVEU,,X,100");  // 700: at the 2026 cap
  EXPECT_EQ(findings_of(run(ref, at), "NVEU_CAP_EXCEEDED"), strings{});

  auto over = at;
  over.push_back("n4,2026-03-02,N1,IN,H100-SXM,1,NVEU,,X,1");  // 701
  EXPECT_EQ(findings_of(run(ref, over), "NVEU_CAP_EXCEEDED"),
            (strings{"violation,NVEU_CAP_EXCEEDED,N1,IN,,,,2026-03-02,n4,701,700"}));
}

TEST_P(RulesGolden, NveuPhaseBoundaryDays)
{
  const small_rules rules;  // 500 through 2025-12-31, 700 from 2026-01-01
  const auto ref = make_reference(&rules);
  // The last day of a phase still uses that phase's cap.
  EXPECT_EQ(findings_of(run(ref, {"n1,2025-12-31,N1,IN,H100-SXM,1,NVEU,,X,501"}), "NVEU_CAP_EXCEEDED"),
            (strings{"violation,NVEU_CAP_EXCEEDED,N1,IN,,,,2025-12-31,n1,501,500"}));
  // The first day of the next phase uses the next cap.
  EXPECT_EQ(findings_of(run(ref, {"n1,2026-01-01,N1,IN,H100-SXM,1,NVEU,,X,700"}), "NVEU_CAP_EXCEEDED"),
            strings{});
  EXPECT_EQ(findings_of(run(ref, {"n1,2026-01-01,N1,IN,H100-SXM,1,NVEU,,X,701"}), "NVEU_CAP_EXCEEDED"),
            (strings{"violation,NVEU_CAP_EXCEEDED,N1,IN,,,,2026-01-01,n1,701,700"}));
}

// README: NVEU near-limit warnings weigh the phase in force on min(as_of, counting_ends). Here the
// window ends 2026-12-31 while a later phase (900) runs to 2027-12-31 and as_of is 2027-06-01.
TEST_P(RulesGolden, NveuNearLimitUsesThePhaseOfTheWindowsLastDayAfterTheWindow)
{
  small_rules rules;  // 500 through 2025-12-31, 700 through 2026-12-31, 900 through 2027-12-31
  rules.counting_ends = "2026-12-31";
  const auto ref      = make_reference(&rules);
  const auto out      = run(ref, {"n1,2026-06-01,N1,IN,H100-SXM,1,NVEU,,X,650",
                                  "n2,2027-03-01,N1,IN,H100-SXM,1,NVEU,,X,100",  // after the window
                                  "l1,2027-06-01,E1,DE,H100-SXM,1,,,X,5"});      // as_of 2027-06-01
  EXPECT_EQ(findings_of(out, "NVEU_CAP_EXCEEDED"), strings{});
  // 650 of 700: 650 >= 0.9 x 700 = 630, < 0.95 x 700 = 665. (The 2027 phase, 900, would give no
  // warning: 650 < 720; the first phase, 500, would give level 0.95 and limit 475.)
  EXPECT_EQ(findings_of(out, "CAP_NEAR_LIMIT"), (strings{"warning,CAP_NEAR_LIMIT,N1,IN,,,,,,650,630"}));
}

// ---- PROHIBITED_DESTINATION ---------------------------------------------------------------------

TEST_P(RulesGolden, ProhibitedOneFindingPerEntityCountryWithSummedPositiveTpp)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  const auto out = run(ref, {"x1,2025-03-01,P1,CN,H100-SXM,2,,,X,10",   // 20
                             "x2,2025-02-01,P1,CN,H100-SXM,1,,,X,10",   // 10, first by date
                             "x3,2025-04-01,P1,CN,H100-SXM,-1,,,X,10",  // return: not summed
                             "x4,2025-05-01,P1,RU,H100-SXM,1,,,X,7",
                             "x5,2025-05-01,P2,CN,H100-SXM,-3,,,X,5",   // only a return: no finding
                             "x6,2024-12-01,P3,MO,H100-SXM,1,,,X,5",    // before the window
                             "x7,2025-06-01,P1,CN,H100-SXM,1,LPP,,X,4"}); // any pathway
  EXPECT_EQ(findings_of(out, "PROHIBITED_DESTINATION"),
            (strings{"violation,PROHIBITED_DESTINATION,P1,CN,,,,2025-02-01,x2,34,",
                     "violation,PROHIBITED_DESTINATION,P1,RU,,,,2025-05-01,x4,7,"}));
  // Totals count every line: CN records x1 x2 x3 x5 x7, tpp 20+10-10-15+4 = 9, units 2+1-1-3+1 = 0.
  EXPECT_EQ(csv_line(out, "by_country.csv", "CN"), "CN,3,5,0,9,3.00,,,,,");
}

// ---- UNAUTHORIZED_PATHWAY ------------------------------------------------------------------------

TEST_P(RulesGolden, UnauthorizedPathwayEachCondition)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  const auto out = run(ref, {
    "u1,2025-02-01,HQUS,IN,H100-SXM,1,UVEU,,X,10",    // UVEU by a non-UVEU
    "u2,2025-02-03,HQUS,IN,H100-SXM,2,uveu,,X,10",    // same key: 10 + 20
    "u3,2025-02-02,HQUS,IN,H100-SXM,-1,UVEU,,X,10",   // return: neither first nor summed
    "u4,2025-02-01,U1,US,H100-SXM,1,UVEU,,X,10",      // UVEU entity: fine
    "u5,2025-02-01,N1,IN,H100-SXM,1,NVEU,,X,10",      // NVEU authorized for IN: fine
    "u6,2025-02-04,N1,BR,H100-SXM,1,NVEU,,X,10",      // not authorized for BR
    "u7,2025-02-05,HQUS,IN,H100-SXM,1,NVEU,,X,10",    // not an NVEU at all
    "u8,2025-02-01,HQUS,DE,H100-SXM,1,AIA,,X,10",     // tier-1 HQ to tier 1: fine
    "u9,2025-02-06,HQUS,IN,H100-SXM,1,AIA,,X,10",     // AIA to a tier-2 country
    "u10,2025-02-07,HQIN,DE,H100-SXM,1,AIA,,X,10",    // HQ not tier 1
    "u11,2025-02-08,NOHQ,DE,H100-SXM,1,AIA,,X,10",    // HQ empty in the file: unknown
    "u12,2025-02-09,GHOST,DE,H100-SXM,1,AIA,,X,10",   // entity not listed: unknown HQ
    "u13,2025-02-10,HQUS,IN,RTX-4090,1,ACA,,X,10",    // ACA of a non-datacenter chip: fine
    "u14,2025-02-11,HQUS,IN,H100-SXM,1,ACA,,X,10",    // ACA of a datacenter chip
    "u15,2025-02-10,HQUS,IN,H100-SXM,-1,ACA,,X,10",   // return, dated before u14
    "u16,2025-02-12,HQUS,BR,A100,-2,AIA,,X,10",       // only a return: no finding
    "u17,2025-02-13,HQIN,IN,MYSTERY-1,1,ACA,,X,10",   // ad-hoc chip: counted as datacenter
    "u18,2025-02-14,HQUS,IN,RTX-4090,1,ACA,,,",       // chips-table TPP 5285, not datacenter
  });
  EXPECT_EQ(findings_of(out, "UNAUTHORIZED_PATHWAY"),
            (strings{"violation,UNAUTHORIZED_PATHWAY,GHOST,DE,AIA,,,2025-02-09,u12,10,",
                     "violation,UNAUTHORIZED_PATHWAY,HQIN,DE,AIA,,,2025-02-07,u10,10,",
                     "violation,UNAUTHORIZED_PATHWAY,HQIN,IN,ACA,,,2025-02-13,u17,10,",
                     "violation,UNAUTHORIZED_PATHWAY,HQUS,IN,ACA,,,2025-02-11,u14,10,",
                     "violation,UNAUTHORIZED_PATHWAY,HQUS,IN,AIA,,,2025-02-06,u9,10,",
                     "violation,UNAUTHORIZED_PATHWAY,HQUS,IN,NVEU,,,2025-02-05,u7,10,",
                     "violation,UNAUTHORIZED_PATHWAY,HQUS,IN,UVEU,,,2025-02-01,u1,30,",
                     "violation,UNAUTHORIZED_PATHWAY,N1,BR,NVEU,,,2025-02-04,u6,10,",
                     "violation,UNAUTHORIZED_PATHWAY,NOHQ,DE,AIA,,,2025-02-08,u11,10,"}));
  EXPECT_EQ(csv_line(out, "by_chip.csv", "RTX-4090"), "RTX-4090,2,2,5295");
  EXPECT_EQ(out.checks.violations, 9);
}

// SPEC §4: NVEU lines need an entity that is NVEU-authorized for the country. README: an
// nveu_countries list on a NONE or UVEU entity is checked and otherwise ignored, so their NVEU
// lines to a listed country are still UNAUTHORIZED_PATHWAY.
TEST_P(RulesGolden, NveuListOfANonNveuEntityAuthorizesNothing)
{
  const small_rules rules;
  const auto ref = make_reference(&rules,
                                  "entity,hq_country,status,nveu_countries\n"
                                  "NL,US,NONE,IN\nUL,US,UVEU,IN;AE\nNV,US,NVEU,IN\n");
  const auto out =
      run(ref, {"w1,2025-02-01,NL,IN,H100-SXM,1,NVEU,,X,10", "w2,2025-02-02,UL,AE,H100-SXM,1,NVEU,,X,20",
                "w3,2025-02-03,NV,IN,H100-SXM,1,NVEU,,X,30"});  // authorized
  EXPECT_EQ(findings_of(out, "UNAUTHORIZED_PATHWAY"),
            (strings{"violation,UNAUTHORIZED_PATHWAY,NL,IN,NVEU,,,2025-02-01,w1,10,",
                     "violation,UNAUTHORIZED_PATHWAY,UL,AE,NVEU,,,2025-02-02,w2,20,"}));
}

TEST_P(RulesGolden, NegativeLinesNeverMakeProhibitedOrUnauthorizedFindings)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  const auto out = run(ref, {"z1,2025-02-01,HQUS,CN,H100-SXM,-1,UVEU,,X,10",
                             "z2,2025-02-01,HQIN,DE,H100-SXM,-1,AIA,,X,10",
                             "z3,2025-02-01,HQUS,IN,H100-SXM,-1,ACA,,X,10",
                             "z4,2025-02-01,HQUS,IN,H100-SXM,-1,NVEU,,X,10"});
  EXPECT_EQ(out.checks.findings.size(), 0U) << out.files.at("findings.csv");
  EXPECT_EQ(out.checks.violations, 0);
}

// ---- UVEU shares ---------------------------------------------------------------------------------

TEST_P(RulesGolden, UveuSharesAtAndJustOverEachLimit)
{
  const small_rules rules;
  const std::string entities = "entity,hq_country,status,nveu_countries\n"
                               "V7,US,UVEU,\nV8,US,UVEU,\nW1,DE,UVEU,\nW2,DE,UVEU,\nX1,US,UVEU,\nX2,US,UVEU,\n"
                               "Z1,US,UVEU,\nZ2,US,UVEU,\nZ3,US,UVEU,\nR3,US,UVEU,\nNN,US,NONE,\n";
  const auto ref = make_reference(&rules, entities);
  report_options options;
  options.as_of  = date("2026-12-31");
  const auto out = run(ref,
                       {// V7: IN 700 of 10000 = exactly 7%.
                        "v1,2025-02-01,V7,US,H100-SXM,1,UVEU,,X,9300", "v2,2025-02-01,V7,IN,H100-SXM,1,UVEU,,X,700",
                        "v3,2027-01-01,V7,IN,H100-SXM,1,UVEU,,X,5000",  // after as_of: ignored
                        // V8: IN 701 of 10000; a 2024 line (outside the window) still counts.
                        "v4,2024-06-01,V8,US,H100-SXM,1,UVEU,,X,5000", "v5,2025-02-01,V8,US,H100-SXM,1,UVEU,,X,4299",
                        "v6,2025-02-01,V8,IN,H100-SXM,1,UVEU,,X,701",
                        // W1: tier 1 exactly 75%; W2: 74.99%.
                        "w1,2025-02-01,W1,DE,H100-SXM,1,UVEU,,X,7500", "w2,2025-02-01,W1,IN,H100-SXM,1,UVEU,,X,700",
                        "w3,2025-02-01,W1,BR,H100-SXM,1,UVEU,,X,700", "w4,2025-02-01,W1,MX,H100-SXM,1,UVEU,,X,700",
                        "w5,2025-02-01,W1,AE,H100-SXM,1,UVEU,,X,400",
                        "w6,2025-02-01,W2,DE,H100-SXM,1,UVEU,,X,7499", "w7,2025-02-01,W2,IN,H100-SXM,1,UVEU,,X,700",
                        "w8,2025-02-01,W2,BR,H100-SXM,1,UVEU,,X,700", "w9,2025-02-01,W2,MX,H100-SXM,1,UVEU,,X,700",
                        "w10,2025-02-01,W2,AE,H100-SXM,1,UVEU,,X,401",
                        // X1: US exactly 50%, tier 1 exactly 75%; X2: US 49.99%.
                        "x1,2025-02-01,X1,US,H100-SXM,1,UVEU,,X,5000", "x2,2025-02-01,X1,DE,H100-SXM,1,UVEU,,X,2500",
                        "x3,2025-02-01,X1,IN,H100-SXM,1,UVEU,,X,700", "x4,2025-02-01,X1,BR,H100-SXM,1,UVEU,,X,700",
                        "x5,2025-02-01,X1,MX,H100-SXM,1,UVEU,,X,700", "x6,2025-02-01,X1,AE,H100-SXM,1,UVEU,,X,400",
                        "x7,2025-02-01,X2,US,H100-SXM,1,UVEU,,X,4999", "x8,2025-02-01,X2,DE,H100-SXM,1,UVEU,,X,2501",
                        "x9,2025-02-01,X2,IN,H100-SXM,1,UVEU,,X,700", "x10,2025-02-01,X2,BR,H100-SXM,1,UVEU,,X,700",
                        "x11,2025-02-01,X2,MX,H100-SXM,1,UVEU,,X,700", "x12,2025-02-01,X2,AE,H100-SXM,1,UVEU,,X,400",
                        // Z1: installed 0; Z2: no lines; Z3: negative installed. No share rule applies.
                        "z1,2025-02-01,Z1,IN,H100-SXM,1,UVEU,,X,100", "z2,2025-03-01,Z1,IN,H100-SXM,-1,UVEU,,X,100",
                        "z3,2025-03-01,Z3,IN,H100-SXM,-1,UVEU,,X,50",
                        // R3: US 2 of 3, IN 1 of 3: 6-digit rounding.
                        "r1,2025-02-01,R3,US,H100-SXM,1,UVEU,,X,2", "r2,2025-02-01,R3,IN,H100-SXM,1,UVEU,,X,1",
                        // NN is not UVEU: no share row, whatever its shares.
                        "n1,2025-02-01,NN,IN,H100-SXM,1,,,X,1"},
                       options);
  EXPECT_EQ(findings_of(out, "UVEU_TIER2_SHARE"),
            (strings{"violation,UVEU_TIER2_SHARE,R3,IN,,,,,,0.333333,0.070000",
                     "violation,UVEU_TIER2_SHARE,V8,IN,,,,,,0.070100,0.070000"}));
  EXPECT_EQ(findings_of(out, "UVEU_TIER1_SHARE"),
            (strings{"violation,UVEU_TIER1_SHARE,R3,,,,,,,0.666667,0.750000",
                     "violation,UVEU_TIER1_SHARE,W2,,,,,,,0.749900,0.750000"}));
  EXPECT_EQ(findings_of(out, "UVEU_US_SHARE"),
            (strings{"violation,UVEU_US_SHARE,X2,US,,,,,,0.499900,0.500000"}));
  // Equal tier-2 maxima (BR, IN, MX at 700): the lowest ISO code is named.
  EXPECT_EQ(out.files.at("uveu_shares.csv"),
            "entity,hq_country,installed_tpp,tier1_share,us_share,max_tier2_country,max_tier2_share,compliant\n"
            "R3,US,3,0.666667,0.666667,IN,0.333333,0\n"
            "V7,US,10000,0.930000,0.930000,IN,0.070000,1\n"
            "V8,US,10000,0.929900,0.929900,IN,0.070100,0\n"
            "W1,DE,10000,0.750000,0.000000,BR,0.070000,1\n"
            "W2,DE,10000,0.749900,0.000000,BR,0.070000,0\n"
            "X1,US,10000,0.750000,0.500000,BR,0.070000,1\n"
            "X2,US,10000,0.750000,0.499900,BR,0.070000,0\n"
            "Z1,US,0,,,,,1\n"
            "Z2,US,0,,,,,1\n"
            "Z3,US,-50,,,,,1\n");
}

// The first country of the table (code 0: AD in the bundled one) is a known HQ like any other:
// by_entity.csv and uveu_shares.csv name it. A1 (UVEU, HQ AD) ships 100 to the US: tier-1 and
// US shares 1.000000, no tier-2 country, compliant (the US-share rule is for US HQs only).
TEST_P(RulesGolden, HqInTheFirstCountryOfTheTableIsNamed)
{
  const small_rules rules;
  const auto ref = make_reference(&rules, "entity,hq_country,status,nveu_countries\nA1,AD,UVEU,\n");
  ASSERT_EQ(ref.countries.find("AD"), 0);
  const auto out = run(ref, {"a1,2025-02-01,A1,US,H100-SXM,1,UVEU,,X,100"});
  EXPECT_EQ(csv_line(out, "by_entity.csv", "A1"), "A1,UVEU,AD,1,1,100,33.33");
  EXPECT_EQ(csv_line(out, "uveu_shares.csv", "A1"), "A1,AD,100,1.000000,1.000000,,,1");
  EXPECT_EQ(out.checks.findings.size(), 0U) << out.files.at("findings.csv");
}

// ---- CAP_NEAR_LIMIT ------------------------------------------------------------------------------

TEST_P(RulesGolden, NearLimitWarningsAtEachDefaultLevelHighestOnly)
{
  const small_rules rules;  // cap 1000: levels 800, 900, 950
  const auto ref = make_reference(&rules);
  const auto out = run(ref, {"k1,2025-02-01,E1,IN,H100-SXM,1,,,X,799",   // below 0.8
                             "k2,2025-02-01,E1,BR,H100-SXM,1,,,X,800",   // 0.8
                             "k3,2025-02-01,E1,MX,H100-SXM,1,,,X,949",   // 0.9
                             "k4,2025-02-01,E1,AE,H100-SXM,1,,,X,950",   // 0.95
                             "k5,2025-02-01,E1,SA,H100-SXM,1,,,X,1000",  // at the cap: 0.95
                             "k6,2025-02-01,E1,PL,H100-SXM,1,,,X,1001",  // exceeded: violation only
                             "k7,2025-02-01,E1,DE,H100-SXM,1,,,X,5000"}); // tier 1: uncapped
  EXPECT_EQ(findings_of(out, "CAP_NEAR_LIMIT"), (strings{"warning,CAP_NEAR_LIMIT,,AE,,,,,,950,950",
                                                        "warning,CAP_NEAR_LIMIT,,BR,,,,,,800,800",
                                                        "warning,CAP_NEAR_LIMIT,,MX,,,,,,949,900",
                                                        "warning,CAP_NEAR_LIMIT,,SA,,,,,,1000,950"}));
  EXPECT_EQ(out.checks.warnings, 4);
  EXPECT_EQ(out.checks.violations, 1);
}

TEST_P(RulesGolden, NearLimitLevelTppIsRoundedUp)
{
  small_rules rules;
  rules.country_cap = 1001;  // 0.8 -> 800.8 -> 801; 0.9 -> 900.9 -> 901; 0.95 -> 950.95 -> 951
  const auto ref = make_reference(&rules);
  const auto out = run(ref, {"k1,2025-02-01,E1,IN,H100-SXM,1,,,X,800",
                             "k2,2025-02-01,E1,BR,H100-SXM,1,,,X,801",
                             "k3,2025-02-01,E1,AE,H100-SXM,1,,,X,950",
                             "k4,2025-02-01,E1,MX,H100-SXM,1,,,X,951"});
  EXPECT_EQ(findings_of(out, "CAP_NEAR_LIMIT"), (strings{"warning,CAP_NEAR_LIMIT,,AE,,,,,,950,901",
                                                        "warning,CAP_NEAR_LIMIT,,BR,,,,,,801,801",
                                                        "warning,CAP_NEAR_LIMIT,,MX,,,,,,951,951"}));
}

TEST_P(RulesGolden, NearLimitCustomWarnAt)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  const std::vector<std::string> lines = {"k1,2025-02-01,E1,IN,H100-SXM,1,,,X,499",
                                          "k2,2025-02-01,E1,BR,H100-SXM,1,,,X,500",
                                          "k3,2025-02-01,E1,MX,H100-SXM,1,,,X,990",
                                          "k4,2025-02-01,E1,AE,H100-SXM,1,,,X,989",
                                          "k5,2025-02-01,N1,IN,H100-SXM,1,NVEU,,X,250"};  // NVEU cap 500
  report_options options;
  options.warn_at = {500000, 990000};
  EXPECT_EQ(findings_of(run(ref, lines, options), "CAP_NEAR_LIMIT"),
            (strings{"warning,CAP_NEAR_LIMIT,,AE,,,,,,989,500", "warning,CAP_NEAR_LIMIT,,BR,,,,,,500,500",
                     "warning,CAP_NEAR_LIMIT,,MX,,,,,,990,990", "warning,CAP_NEAR_LIMIT,N1,IN,,,,,,250,250"}));
  options.warn_at = {};
  EXPECT_EQ(findings_of(run(ref, lines, options), "CAP_NEAR_LIMIT"), strings{});
}

// ---- outputs -------------------------------------------------------------------------------------

TEST_P(RulesGolden, FindingsCsvOrderingAndQuoting)
{
  const small_rules rules;
  const auto ref = make_reference(&rules);
  const auto out = run(ref, {"q1,2025-02-01,\"Acme, Inc.\",CN,H100-SXM,1,,,X,5",
                             "q2,2025-02-02,E1,IN,H100-SXM,1,,,X,1001",
                             "q3,2025-02-03,E1,BR,H100-SXM,1,,,X,950",
                             "q4,2025-02-04,HQUS,IN,H100-SXM,1,UVEU,,X,7",
                             "q5,2025-02-05,L1,IN,H100-SXM,1,LPP,,X,101"});
  // Sorted by severity, rule, then entity, country, pathway, order_id, year.
  EXPECT_EQ(out.files.at("findings.csv"),
            "severity,rule,entity,country,pathway,order_id,year,date,shipment_id,value,limit\n"
            "violation,COUNTRY_CAP_EXCEEDED,,IN,,,,2025-02-02,q2,1001,1000\n"
            "violation,LPP_ORDER_LIMIT,L1,IN,,q5,,2025-02-05,q5,101,100\n"
            "violation,PROHIBITED_DESTINATION,\"Acme, Inc.\",CN,,,,2025-02-01,q1,5,\n"
            "violation,UNAUTHORIZED_PATHWAY,HQUS,IN,UVEU,,,2025-02-04,q4,7,\n"
            "warning,CAP_NEAR_LIMIT,,BR,,,,,,950,950\n");
  EXPECT_EQ(out.checks.violations, 4);
  EXPECT_EQ(out.checks.warnings, 1);
  // 5/3 = 1.67; the entities file gives Acme its US HQ.
  EXPECT_EQ(csv_line(out, "by_entity.csv", "\"Acme, Inc.\""), "\"Acme, Inc.\",NONE,US,1,1,5,1.67");
}

// The JSON view (`--format json`) is the summary and the findings as one JSON tree, dumped with
// an indent of 2: written finding by finding, it must give the tree's bytes, escapes included.
// It and the table are built only when printed.
TEST_P(RulesGolden, JsonViewIsTheSummaryAndFindingsAsOneTree)
{
  const small_rules rules;
  const auto ref       = make_reference(&rules);
  const strings tricky = {"q1,2025-02-01,\"Acme, \"\"Inc.\"\"\",CN,H100-SXM,1,,,X,5",
                          "q2,2025-02-02,\"Line\nBreak\\\xC3\x9C\",CN,H100-SXM,1,,,X,6",
                          "q3,2025-02-03,E1,IN,H100-SXM,1,,,X,1001"};
  const strings clean  = {"c1,2025-02-01,E1,IN,H100-SXM,1,,,X,5"};
  for (const auto* rows : {&tricky, &clean}) {
    report_options json;
    json.format    = "json";
    const auto out = run(ref, *rows, json);
    using ordered  = nlohmann::ordered_json;
    ordered tree   = {{"summary", ordered::parse(out.files.at("summary.json"))},
                      {"findings", ordered::array()}};
    for (const finding& f : out.checks.findings) {
      tree["findings"].push_back({{"severity", f.severity},
                                  {"rule", f.rule},
                                  {"entity", f.entity},
                                  {"country", f.country},
                                  {"pathway", f.pathway},
                                  {"order_id", f.order_id},
                                  {"year", f.year},
                                  {"date", f.date},
                                  {"shipment_id", f.shipment_id},
                                  {"value", f.value},
                                  {"limit", f.limit}});
    }
    EXPECT_EQ(out.json, tree.dump(2) + "\n");
    EXPECT_EQ(out.checks.findings.size(), rows == &tricky ? 3U : 0U);
    EXPECT_EQ(out.table, "") << "the table is not printed with --format json";

    report_options to_directory;
    to_directory.out_dir = "never-written";  // render_report does no I/O
    const auto files     = run(ref, *rows, to_directory);
    EXPECT_EQ(files.json, "");
    EXPECT_EQ(files.table, "");
    EXPECT_EQ(files.files, out.files);
  }
  const auto both = run(ref, tricky, [] {
    report_options o;
    o.every_view = true;
    return o;
  }());
  EXPECT_NE(both.table.find("findings: 3 violation(s)"), std::string::npos);
  EXPECT_EQ(nlohmann::ordered_json::parse(both.json).at("findings").size(), 3U);
}

TEST_P(RulesGolden, ByCountryCapColumnsAndRounding)
{
  small_rules rules;
  rules.country_cap = 3;
  const auto ref = make_reference(&rules);
  const auto out = run(ref, {"b1,2025-02-01,E1,IN,H100-SXM,1,,,X,1",
                             "b2,2025-02-01,E1,IN,H100-SXM,1,LPP,,X,10",  // not a cap pathway
                             "b3,2025-02-01,E1,BR,H100-SXM,1,,,X,2",
                             "b4,2025-02-01,E1,US,H100-SXM,1,,,X,5",
                             "b5,2025-02-01,E1,CN,H100-SXM,1,,,X,4",
                             "b6,2025-02-01,E1,MX,H100-SXM,-1,,,X,1"});
  // IN: 11/3 = 3.67, cap pathway 1 of 3 = 33.33%; BR: 2/3 = 0.67 and 66.67%;
  // MX: -1/3 = -0.33 and -33.33% (half away from zero); tiers 1 and 3 leave the cap columns empty.
  EXPECT_EQ(out.files.at("by_country.csv"),
            "country,tier,records,units,tpp,h100_equiv,cap_pathway_tpp,cap_tpp,cap_used_pct,breach_date,"
            "breach_shipment_id\n"
            "BR,2,1,1,2,0.67,2,3,66.67,,\n"
            "CN,3,1,1,4,1.33,,,,,\n"
            "IN,2,2,2,11,3.67,1,3,33.33,,\n"
            "MX,2,1,-1,-1,-0.33,-1,3,-33.33,,\n"
            "US,1,1,1,5,1.67,,,,,\n");
}

// The readable table (SPEC §5, no --out) lists each tier-2 cap in use: cap-pathway tpp, the cap,
// the percentage used and the crossing date where one line crossed it. Tokens, not spacing.
TEST_P(RulesGolden, TableListsEachTier2CapInUseWithItsPercentAndBreach)
{
  const small_rules rules;  // cap 1000; IN is a G2G partner here: 2000
  const auto ref     = make_reference(&rules, default_entities, countries_with_india_g2g());
  const auto out     = run(ref, {"t1,2025-02-01,E1,BR,H100-SXM,1,,,X,600",
                                 "t2,2025-03-01,E1,BR,H100-SXM,1,,,X,401",    // 1001 > 1000: crosses
                                 "t3,2025-02-01,E1,IN,H100-SXM,1,,,X,1999",   // 1999 of 2000
                                 "t4,2025-02-01,E1,MX,H100-SXM,1,LPP,,X,50",  // not a cap pathway: 0 of 1000
                                 "t5,2025-02-01,E1,DE,H100-SXM,1,,,X,7"});    // tier 1: not listed
  const auto cap_row = [&](const std::string& iso) {
    std::istringstream in(out.table);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream words(line);
      std::vector<std::string> tokens;
      for (std::string w; words >> w;) { tokens.push_back(w); }
      if (!tokens.empty() && tokens[0] == iso && tokens.size() >= 5 && tokens[2] == "of") { return tokens; }
    }
    return std::vector<std::string>{};
  };
  EXPECT_EQ(cap_row("BR"), (strings{"BR", "1001", "of", "1000", "100.10%", "EXCEEDED", "on", "2025-03-01"}))
      << out.table;
  EXPECT_EQ(cap_row("IN"), (strings{"IN", "1999", "of", "2000", "99.95%"})) << out.table;
  EXPECT_EQ(cap_row("MX"), (strings{"MX", "0", "of", "1000", "0.00%"})) << out.table;
  EXPECT_EQ(cap_row("DE"), strings{}) << out.table;
}

TEST_P(RulesGolden, BundledRuleSetLimits)
{
  const auto ref = make_reference(nullptr);  // bundled ai-diffusion-2025
  const auto out = run(ref, {
    // Country cap 790,000,000: IN exactly at it, BR one TPP over.
    "d1,2025-02-01,E1,IN,H100-SXM,790,,,X,1000000",
    "d2,2025-02-01,E1,BR,H100-SXM,790,,,X,1000000",
    "d3,2025-02-02,E1,BR,H100-SXM,1,,,X,1",
    // LPP 26,900,000 per order and per consignee-year: L1 at both, L2 one over both.
    "o1,2025-03-01,L1,IN,H100-SXM,269,LPP,,X,100000",
    "o2,2025-03-01,L2,IN,H100-SXM,1,LPP,,X,26900001",
    // NVEU: 633,000,000 in 2025, 1,699,000,000 in 2026.
    "n1,2025-06-01,N1,IN,H100-SXM,633,NVEU,,X,1000000",
    "n2,2026-06-01,N1,IN,H100-SXM,1066,NVEU,,X,1000000",
    "n3,2026-07-01,N1,IN,H100-SXM,1,NVEU,,X,1",
    // Window starts 2025-01-13.
    "p1,2025-01-12,P1,CN,H100-SXM,1,,,X,5",
    "p2,2025-01-13,P1,RU,H100-SXM,2,,,X,5",
  });
  EXPECT_EQ(out.files.at("findings.csv"),
            "severity,rule,entity,country,pathway,order_id,year,date,shipment_id,value,limit\n"
            "violation,COUNTRY_CAP_EXCEEDED,,BR,,,,2025-02-02,d3,790000001,790000000\n"
            "violation,LPP_ANNUAL_LIMIT,L2,,,,2025,2025-03-01,o2,26900001,26900000\n"
            "violation,LPP_ORDER_LIMIT,L2,IN,,o2,,2025-03-01,o2,26900001,26900000\n"
            "violation,NVEU_CAP_EXCEEDED,N1,IN,,,,2026-07-01,n3,1699000001,1699000000\n"
            "violation,PROHIBITED_DESTINATION,P1,RU,,,,2025-01-13,p2,10,\n"
            "warning,CAP_NEAR_LIMIT,,IN,,,,,,790000000,750500000\n");
  // 790,000,001 / 15832 = 49898.9389.. -> 49898.94; 100.0000001% -> 100.00.
  EXPECT_EQ(csv_line(out, "by_country.csv", "BR"),
            "BR,2,2,791,790000001,49898.94,790000001,790000000,100.00,2025-02-02,d3");
}

// ---- exit codes ----------------------------------------------------------------------------------

TEST_P(RulesGolden, ExitCodeOneForViolationsZeroForWarningsOnly)
{
  const small_rules rules;
  scratch_dir dir;
  report_options options;
  options.rules_path    = dir.write("rules.json", rules.json());
  options.entities_path = dir.write("entities.csv", default_entities);
  options.backend       = cli_backend();
  options.format        = "csv";

  const auto run_cli = [&](const std::vector<std::string>& rows, std::string& findings_csv) {
    options.inputs = {dir.write("shipments.csv", log_text(rows))};
    std::ostringstream out, diagnostics;
    const int code = run_report(options, out, diagnostics);
    findings_csv   = out.str();
    return code;
  };
  std::string csv;
  EXPECT_EQ(run_cli({"e1,2025-02-01,E1,IN,H100-SXM,1,,,X,10"}, csv), 0);
  EXPECT_EQ(csv, "severity,rule,entity,country,pathway,order_id,year,date,shipment_id,value,limit\n");
  EXPECT_EQ(run_cli({"e1,2025-02-01,E1,IN,H100-SXM,1,,,X,999"}, csv), 0);  // a warning only
  EXPECT_NE(csv.find("warning,CAP_NEAR_LIMIT,,IN,,,,,,999,950"), std::string::npos) << csv;
  EXPECT_EQ(run_cli({"e1,2025-02-01,E1,IN,H100-SXM,1,,,X,1001"}, csv), 1);
  EXPECT_EQ(run_cli({"e1,2025-02-01,E1,CN,H100-SXM,1,,,X,1"}, csv), 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, RulesGolden, ::testing::Values(std::string("cpu"), std::string("stream"), std::string("gpu")),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// ---- exact arithmetic helpers (backend-independent) ----------------------------------------------

TEST(RulesExactDecimal, RoundsHalfAwayFromZero)
{
  EXPECT_EQ(exact_decimal(1, 3, 2, 100), "33.33");
  EXPECT_EQ(exact_decimal(2, 3, 2, 100), "66.67");
  EXPECT_EQ(exact_decimal(-2, 3, 2, 100), "-66.67");
  EXPECT_EQ(exact_decimal(1, 200, 2), "0.01");   // 0.005 -> 0.01
  EXPECT_EQ(exact_decimal(-1, 200, 2), "-0.01");
  EXPECT_EQ(exact_decimal(-1, 300, 2), "0.00");  // no "-0.00"
  EXPECT_EQ(exact_decimal(7, 100, 6), "0.070000");
  EXPECT_EQ(exact_decimal(0, 5, 6), "0.000000");
}

TEST(RulesParsePpm, ExactFractions)
{
  EXPECT_EQ(parse_ppm("0.95"), std::optional<ppm_t>(950000));
  EXPECT_EQ(parse_ppm("1"), std::optional<ppm_t>(1000000));
  EXPECT_EQ(parse_ppm("0.000001"), std::optional<ppm_t>(1));
  EXPECT_EQ(parse_ppm("0.0000001"), std::nullopt);
  EXPECT_EQ(parse_ppm("abc"), std::nullopt);
  EXPECT_EQ(parse_ppm(""), std::nullopt);
}

// Both are searches (a rule set may list a phase a day, `--warn-at` thousands of levels): each
// answer is held to the scan it replaced, on every day and usage around each boundary.
TEST(RulesSearches, NveuPhaseInForceIsTheFirstPhaseOnOrAfterTheDate)
{
  std::vector<nveu_phase> phases;
  for (day_t through = 100; through < 400; through += 1 + through % 5) {
    phases.push_back({through, static_cast<std::int64_t>(phases.size()) + 1});
  }
  const auto scanned = [&](day_t date) {
    for (const nveu_phase& phase : phases) {
      if (phase.through >= date) { return phase.tpp; }
    }
    return phases.back().tpp;
  };
  for (day_t date = 90; date < 410; ++date) { EXPECT_EQ(nveu_cap_on(phases, date), scanned(date)) << date; }
  const std::vector<nveu_phase> one = {{200, 7}};
  EXPECT_EQ(nveu_cap_on(one, 199), 7);
  EXPECT_EQ(nveu_cap_on(one, 200), 7);
  EXPECT_EQ(nveu_cap_on(one, 201), 7);  // after the last phase: the last
}

TEST(RulesSearches, HighestWarnLevelIsTheLastLevelReached)
{
  const std::vector<ppm_t> levels = {1, 250000, 500000, 500001, 800000, 999999, 1000000};
  const auto scanned              = [&](std::int64_t used, std::int64_t cap) {
    int reached = -1;
    for (std::size_t i = 0; i < levels.size(); ++i) {
      if (used * ppm_one >= cap * levels[i]) {  // within 64 bits at these sizes
        reached = static_cast<int>(i);
      }
    }
    return reached;
  };
  const std::int64_t cap = 1000000;
  for (std::int64_t used = -2; used <= cap + 2; used += used < 10 || used > cap - 10 ? 1 : 997) {
    EXPECT_EQ(highest_warn_level(used, cap, levels), scanned(used, cap)) << used;
  }
  for (const std::int64_t used : {0, 1, 249999, 250000, 500000, 500001, 999999, 1000000, 1000001}) {
    EXPECT_EQ(highest_warn_level(used, cap, levels), scanned(used, cap)) << used;
  }
  EXPECT_EQ(highest_warn_level(10, cap, {}), -1);
  EXPECT_EQ(highest_warn_level(cap, cap, {ppm_one, ppm_one}), 1);  // equal levels: the last
}

}  // namespace
