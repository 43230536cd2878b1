/// @file reference_test.cpp
/// @brief countries.csv, chips.csv, the rule set and entities.csv: the bundled files load, every
/// defect is fatal.
#include <capledger/calendar.hpp>
#include <capledger/entities.hpp>
#include <capledger/error.hpp>
#include <capledger/reference.hpp>

#include <gtest/gtest.h>

#include "iso_countries.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using namespace capledger;

using capledger::test::datasets_dir;

/// A fresh directory per test, removed at the end.
class ReferenceFiles : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& content) { return scratch_.write(name, content); }
  capledger::test::scratch_dir scratch_{"capledger_reference_test"};
  fs::path dir_ = scratch_.root();
};

/// Expects @p call to throw config_error whose message holds @p needle.
template <typename Call>
void expect_config_error(Call call, const std::string& needle)
{
  try {
    call();
    ADD_FAILURE() << "no config_error thrown (expected one mentioning '" << needle << "')";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

// ---- bundled data -----------------------------------------------------------------------------

TEST(BundledReference, CountriesLoadWithTheirTiers)
{
  const country_table table = load_countries((datasets_dir() / "countries.csv").string());
  EXPECT_EQ(table.rows.size(), 249U);
  EXPECT_EQ(table.code_of.size(), 249U);
  int tier_count[4] = {0, 0, 0, 0};
  for (const auto& row : table.rows) {
    ASSERT_GE(row.tier, 1);
    ASSERT_LE(row.tier, 3);
    ++tier_count[row.tier];
  }
  EXPECT_EQ(tier_count[1], 19);  // the US and its 18 closest partners
  EXPECT_EQ(tier_count[1] + tier_count[2] + tier_count[3], 249);
  // Codes are indices into rows sorted by ISO code.
  for (std::size_t i = 1; i < table.rows.size(); ++i) { EXPECT_LT(table.rows[i - 1].iso2, table.rows[i].iso2); }
  for (std::size_t i = 0; i < table.rows.size(); ++i) {
    EXPECT_EQ(table.find(table.rows[i].iso2), static_cast<int>(i));
  }
  const auto tier_of = [&](const char* iso) {
    const int code = table.find(iso);
    return code < 0 ? -1 : table.rows[static_cast<std::size_t>(code)].tier;
  };
  EXPECT_EQ(tier_of("US"), 1);
  EXPECT_EQ(tier_of("us"), 1);  // case-insensitive
  EXPECT_EQ(tier_of("CN"), 3);
  EXPECT_EQ(tier_of("HK"), 3);
  EXPECT_EQ(tier_of("MO"), 3);
  EXPECT_EQ(tier_of("AE"), 2);
  EXPECT_EQ(tier_of("IN"), 2);
  EXPECT_EQ(table.find("ZZ"), -1);
  // A quoted name with a comma survives.
  const int bq = table.find("BQ");
  ASSERT_GE(bq, 0);
  EXPECT_EQ(table.rows[static_cast<std::size_t>(bq)].name, "Bonaire, Sint Eustatius and Saba");
}

TEST(BundledReference, ChipsLoad)
{
  const chip_table chips = load_chips((datasets_dir() / "chips.csv").string());
  EXPECT_EQ(chips.rows.size(), 21U);
  const int h100 = chips.find("h100-sxm");
  ASSERT_GE(h100, 0);
  EXPECT_EQ(chips.rows[static_cast<std::size_t>(h100)].key, "H100-SXM");
  EXPECT_EQ(chips.rows[static_cast<std::size_t>(h100)].tpp, 15832);
  EXPECT_TRUE(chips.rows[static_cast<std::size_t>(h100)].datacenter);
  EXPECT_TRUE(chips.rows[static_cast<std::size_t>(h100)].known);
  const int rtx = chips.find("RTX-4090");
  ASSERT_GE(rtx, 0);
  EXPECT_FALSE(chips.rows[static_cast<std::size_t>(rtx)].datacenter);
  EXPECT_EQ(chips.find("NOPE"), -1);
}

// A chip the table does not know, written like one it does but for case, spaces and punctuation:
// named for messages; none where several are alike, nor an ad-hoc chip (its price is the line's).
TEST(ChipSpelledAlike, OnlyOneOfTheTablesOwnChips)
{
  chip_table chips = load_chips((datasets_dir() / "chips.csv").string());
  EXPECT_EQ(chip_spelled_alike(chips, "H100 SXM"), "H100-SXM");
  EXPECT_EQ(chip_spelled_alike(chips, "h100_nvl"), "H100-NVL");
  EXPECT_EQ(chip_spelled_alike(chips, "H100-SXM5"), "");
  EXPECT_EQ(chip_spelled_alike(chips, " -/ "), "");  // no letter or digit: alike nothing
  chips.add_adhoc("ZX-9");
  EXPECT_EQ(chip_spelled_alike(chips, "zx 9"), "");
  chip extra = chips.rows[static_cast<std::size_t>(chips.find("H100-SXM"))];
  extra.key  = "H100SXM";  // a second chip alike: no guess between them
  chips.code_of.emplace(extra.key, static_cast<std::uint16_t>(chips.rows.size()));
  chips.rows.push_back(extra);
  EXPECT_EQ(chip_spelled_alike(chips, "H100 SXM"), "");
  // One index answers every key a log rejects, as the scan did: a third chip alike is still no guess.
  extra.key = "h100.sxm";
  chips.rows.push_back(extra);
  const chip_spellings spellings(chips);
  for (const char* key : {"H100 SXM", "h100_nvl", "H100-SXM5", " -/ ", "zx 9", "", "RTX 4090"}) {
    EXPECT_EQ(spellings.alike(key), chip_spelled_alike(chips, key)) << key;
  }
  EXPECT_EQ(spellings.alike("H100 SXM"), "");
  EXPECT_EQ(spellings.alike("rtx_4090"), "RTX-4090");
}

// A country the table does not know, written as one it does by name (any case, spaces around;
// the whole name: `nigeria` is not Niger), by its ISO alpha-3 code or by an exceptionally
// reserved code: named for messages.
TEST(CountrySpelledAlike, NamesAlpha3AndReservedCodesOfTheBundledTable)
{
  const country_table countries = load_countries((datasets_dir() / "countries.csv").string());
  for (const auto& [value, alike] : {std::pair{"UK", "GB"},
                                     std::pair{"uk", "GB"},
                                     std::pair{"USA", "US"},
                                     std::pair{"usa", "US"},
                                     std::pair{"DEU", "DE"},
                                     std::pair{"United States", "US"},
                                     std::pair{"united states", "US"},
                                     std::pair{" Germany ", "DE"},
                                     std::pair{"EL", "GR"},
                                     std::pair{"united kingdom", "GB"},
                                     std::pair{"GBR", "GB"},
                                     std::pair{"chn", "CN"},
                                     std::pair{"ARE", "AE"},
                                     std::pair{"U.S.", "US"},
                                     std::pair{"nigeria", "NG"},
                                     std::pair{"Germanys", ""},
                                     std::pair{"Korea, Republic of", "KR"},
                                     std::pair{"Russia", "RU"},
                                     std::pair{"turkey", "TR"},
                                     std::pair{"U.A.E.", "AE"},
                                     std::pair{"Czech Republic", "CZ"},
                                     std::pair{"Burma", "MM"},
                                     std::pair{"DPRK", "KP"},
                                     std::pair{"England", "GB"},
                                     std::pair{"Ivory Coast", "CI"},
                                     std::pair{"P.R.C.", "CN"},
                                     std::pair{"Korea", ""},
                                     std::pair{"Russias", ""},
                                     std::pair{"XX", ""},
                                     std::pair{"ZZZ", ""},
                                     std::pair{"", ""},
                                     std::pair{"Atlantis", ""},
                                     std::pair{" . ", ""}}) {
    EXPECT_EQ(country_spelled_alike(countries, value), alike) << "'" << value << "'";
  }
}

// Only a country of the table given (`--countries` may be one's own): no guess at a code it lacks,
// none between two rows of one name.
TEST(CountrySpelledAlike, OnlyCountriesOfTheTableGiven)
{
  const country_table countries = parse_countries(
      "iso2,name,tier,g2g_partner\nDE,Germany,1,0\nUS,United States,1,0\nXA,Atlantis,2,0\nXB,ATLANTIS,3,0\n",
      "mine.csv");
  EXPECT_EQ(country_spelled_alike(countries, "USA"), "US");
  EXPECT_EQ(country_spelled_alike(countries, "germany"), "DE");
  for (const char* value : {"UK", "GBR", "United Kingdom", "EL", "GRC", "Atlantis"}) {
    EXPECT_EQ(country_spelled_alike(countries, value), "") << value;
  }
}

// The embedded ISO data: every alpha-3 code three capitals, ascending (binary search) and once,
// each standing for a distinct code of the bundled table (both hold the 249 ISO countries); the
// reserved codes two capitals that are not ISO codes themselves.
TEST(CountrySpelledAlike, EmbeddedIsoCodesAreWellFormedAndSorted)
{
  const country_table countries = load_countries((datasets_dir() / "countries.csv").string());
  const auto capitals           = [](std::string_view code, std::size_t size) {
    return code.size() == size &&
           std::all_of(code.begin(), code.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
  };
  std::set<std::string_view> alpha2;
  std::string_view previous;
  for (const detail::iso_code_alias& entry : detail::iso_alpha3_codes) {
    EXPECT_TRUE(capitals(entry.code, 3)) << entry.code;
    EXPECT_TRUE(capitals(entry.alpha2, 2)) << entry.code << " " << entry.alpha2;
    EXPECT_LT(previous, entry.code) << "not ascending, or twice: " << entry.code;
    EXPECT_GE(countries.find(entry.alpha2), 0) << entry.code << " " << entry.alpha2;
    EXPECT_TRUE(alpha2.insert(entry.alpha2).second) << entry.code << " " << entry.alpha2;
    previous = entry.code;
  }
  EXPECT_EQ(alpha2.size(), countries.rows.size());
  for (const detail::iso_code_alias& entry : detail::iso_reserved_codes) {
    EXPECT_TRUE(capitals(entry.code, 2)) << entry.code;
    EXPECT_LT(countries.find(entry.code), 0) << entry.code;
    EXPECT_GE(countries.find(entry.alpha2), 0) << entry.code << " " << entry.alpha2;
  }
  // Other names: folded (capitals and digits), ascending and once, none an alpha-3 code or the
  // table's own name (those are found first), each for a country of the table.
  previous = {};
  for (const detail::iso_code_alias& entry : detail::iso_other_names) {
    EXPECT_TRUE(entry.code.size() >= 3 &&
                std::all_of(entry.code.begin(), entry.code.end(),
                            [](char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }))
        << entry.code;
    EXPECT_LT(previous, entry.code) << "not ascending, or twice: " << entry.code;
    EXPECT_GE(countries.find(entry.alpha2), 0) << entry.code << " " << entry.alpha2;
    for (const detail::iso_code_alias& alpha3 : detail::iso_alpha3_codes) {
      EXPECT_NE(alpha3.code, entry.code);
    }
    for (const country& row : countries.rows) {
      std::string folded;
      for (const char c : row.name) {
        if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) { folded.push_back(c); }
        if (c >= 'a' && c <= 'z') { folded.push_back(static_cast<char>(c - 'a' + 'A')); }
      }
      EXPECT_NE(folded, entry.code) << row.name;
    }
    previous = entry.code;
  }
}

TEST(BundledReference, RuleSetLoads)
{
  const rule_set rules = load_rule_set((datasets_dir() / "rules" / "ai-diffusion-2025.json").string());
  EXPECT_EQ(rules.id, "ai-diffusion-2025");
  EXPECT_EQ(rules.counting_starts, days_from_civil(2025, 1, 13));
  EXPECT_EQ(rules.counting_ends, days_from_civil(2027, 12, 31));
  EXPECT_EQ(rules.h100_tpp, 15832);
  EXPECT_EQ(rules.country_cap_tpp, 790000000);
  EXPECT_EQ(rules.g2g_multiplier, 2);
  EXPECT_EQ(rules.country_cap_pathways, 1U << static_cast<int>(pathway::license));
  EXPECT_EQ(rules.lpp_per_order_tpp, 26900000);
  EXPECT_EQ(rules.lpp_per_consignee_year_tpp, 26900000);
  ASSERT_EQ(rules.nveu_caps.size(), 3U);
  EXPECT_EQ(rules.nveu_caps[0].through, days_from_civil(2025, 12, 31));
  EXPECT_EQ(rules.nveu_caps[0].tpp, 633000000);
  EXPECT_EQ(rules.nveu_caps[2].tpp, 5064000000);
  EXPECT_EQ(rules.uveu_max_tier2_country_share, 70000);
  EXPECT_EQ(rules.uveu_min_tier1_share, 750000);
  EXPECT_EQ(rules.uveu_min_us_share_if_us_hq, 500000);
}

// ---- countries.csv defects ----------------------------------------------------------------------

TEST_F(ReferenceFiles, CountriesSmallFileLoadsSortedWithFlags)
{
  const auto path = write("countries.csv", "iso2,name,tier,g2g_partner\nus,United States,1,0\nAE,Emirates,2,1\n");
  const country_table table = load_countries(path);
  ASSERT_EQ(table.rows.size(), 2U);
  EXPECT_EQ(table.rows[0].iso2, "AE");
  EXPECT_TRUE(table.rows[0].g2g_partner);
  EXPECT_EQ(table.rows[1].iso2, "US");  // upper-cased
  EXPECT_FALSE(table.rows[1].g2g_partner);
  EXPECT_EQ(table.find("ae"), 0);
  EXPECT_EQ(table.find("US"), 1);
}

TEST_F(ReferenceFiles, CountriesMissingColumn)
{
  const auto path = write("countries.csv", "iso2,name,g2g_partner\nUS,United States,0\n");
  expect_config_error([&] { (void)load_countries(path); }, "tier");
}

TEST_F(ReferenceFiles, CountriesBadTier)
{
  for (const char* tier : {"0", "4", "x", "", "1.5", "-1"}) {
    const auto path = write("countries.csv", std::string("iso2,name,tier,g2g_partner\nUS,United States,") + tier + ",0\n");
    // tier is field 3 on line 2: `US,United States,` is 17 bytes.
    expect_config_error([&] { (void)load_countries(path); },
                        path + ":2:18: tier must be 1, 2 or 3, not '" + tier + "'");
  }
}

TEST_F(ReferenceFiles, CountriesDuplicateIso)
{
  const auto path =
    write("countries.csv", "iso2,name,tier,g2g_partner\nUS,United States,1,0\nAE,Emirates,2,0\nus,Again,1,0\n");
  // The message names the first row too: the two may be written differently (`US`, `us`).
  expect_config_error([&] { (void)load_countries(path); },
                      path +
                          ":4:1: country US is listed twice: the same code as line 2 (codes compare "
                          "without case); give each country one row");
}

TEST_F(ReferenceFiles, CountriesBadIsoCode)
{
  for (const char* iso : {"USA", "U", "1A", ""}) {
    const auto path = write("countries.csv", std::string("iso2,name,tier,g2g_partner\n") + iso + ",Somewhere,2,0\n");
    expect_config_error([&] { (void)load_countries(path); }, path + ":2:");
  }
}

TEST_F(ReferenceFiles, CountriesBadG2gFlag)
{
  const auto path = write("countries.csv", "iso2,name,tier,g2g_partner\nUS,United States,1,yes\n");
  expect_config_error([&] { (void)load_countries(path); }, path + ":2:20:");
}

// A WRONG_FIELD_COUNT names the field past the header's count, or the last of too few, as a log's
// does; in the entities file too.
TEST_F(ReferenceFiles, WrongFieldCountNamesTheField)
{
  // `US,United, States,1,0`: the fifth field, `0`, starts at byte 21.
  const auto more = write("countries.csv", "iso2,name,tier,g2g_partner\nUS,United, States,1,0\n");
  expect_config_error([&] { (void)load_countries(more); },
                      more + ":2:21: WRONG_FIELD_COUNT: expected 4 fields, found 5");
  const auto fewer = write("fewer.csv", "iso2,name,tier,g2g_partner\nAE,Emirates,2,0\nUS,United States,1\n");
  expect_config_error([&] { (void)load_countries(fewer); },
                      fewer + ":3:18: WRONG_FIELD_COUNT: expected 4 fields, found 3");
  const country_table countries = load_countries((datasets_dir() / "countries.csv").string());
  for (const auto& [line, where] :
       {std::pair{"E1,US,NONE,,x", ":2:13: WRONG_FIELD_COUNT: expected 4 fields, found 5"},
        std::pair{"E1,US,NONE", ":2:7: WRONG_FIELD_COUNT: expected 4 fields, found 3"},
        std::pair{"E1,US,NONE,,",
                  ":2:13: WRONG_FIELD_COUNT: expected 4 fields, found 5: the "
                  "line ends with a comma"}}) {
    try {
      (void)parse_entities(std::string("entity,hq_country,status,nveu_countries\n") + line + "\n",
                           "entities.csv", countries);
      ADD_FAILURE() << "accepted: " << line;
    } catch (const parse_error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(std::string("entities.csv") + where, 0), 0U) << e.what();
    }
  }
}

TEST_F(ReferenceFiles, CountriesUnterminatedQuote)
{
  const auto path = write("countries.csv", "iso2,name,tier,g2g_partner\nUS,\"United States,1,0\n");
  expect_config_error([&] { (void)load_countries(path); },
                      path + ":2:4: UNTERMINATED_QUOTE: a quoted field is never closed");
}

// A quote error is said as a log's is (SPEC §7's reasons), in every CSV input the tool reads; a
// closing quote followed by text is placed at that text (`"H100"x`: column 7).
TEST_F(ReferenceFiles, QuoteErrorsNamedAsInALog)
{
  const auto chips =
      write("chips.csv", "chip,vendor,tpp,performance_density,datacenter\n\"H100\"x,NVIDIA,1,1,1\n");
  expect_config_error([&] { (void)load_chips(chips); },
                      chips + ":2:7: BAD_QUOTE: text follows a closing quote");
  const auto entities = write("entities.csv", "entity,hq_country,status\nE1,\"US,NONE\n");
  try {
    (void)load_entities(entities, load_countries((datasets_dir() / "countries.csv").string()));
    ADD_FAILURE() << "no error";
  } catch (const parse_error& e) {
    EXPECT_EQ(std::string(e.what()), entities + ":2:4: UNTERMINATED_QUOTE: a quoted field is never closed");
  }
}

TEST_F(ReferenceFiles, CountriesEmptyOrMissingFile)
{
  expect_config_error([&] { (void)load_countries(write("countries.csv", "")); }, "header");
  expect_config_error([&] { (void)load_countries(write("header_only.csv", "iso2,name,tier,g2g_partner\n")); },
                      "header_only.csv: no countries: the table has a header row and no row under it (it "
                      "lists each country)");
  expect_config_error(
      [&] {
        (void)load_chips(write("header_only.csv", "chip,vendor,tpp,performance_density,datacenter\r\n"));
      },
      "header_only.csv: no chips: the table has a header row and no row under it (it lists "
      "each chip)");
  expect_config_error([&] { (void)load_countries((dir_ / "absent.csv").string()); }, "absent.csv");
}

// ---- chips.csv defects --------------------------------------------------------------------------

TEST_F(ReferenceFiles, ChipsMissingColumn)
{
  const auto path = write("chips.csv", "chip,vendor,performance_density,datacenter\nX1,V,1.5,1\n");
  expect_config_error([&] { (void)load_chips(path); }, "tpp");
}

TEST_F(ReferenceFiles, ChipsBadTpp)
{
  for (const char* tpp : {"0", "-5", "abc", "", "1.5"}) {
    const auto path = write(
        "chips.csv", std::string("chip,vendor,tpp,performance_density,datacenter\nX1,V,") + tpp + ",1.5,1\n");
    expect_config_error([&] { (void)load_chips(path); }, path + ":2:6:");
  }
  // The value is quoted; digits past 64 bits are a positive integer, too large, not "no integer";
  // a spreadsheet's rewriting is named as in a log's quantity.
  for (const auto& [tpp, said] :
       {std::pair{"0", "tpp must be a positive integer, not '0'"},
        std::pair{"99999999999999999999",
                  "tpp '99999999999999999999' is past 9223372036854775807 (2^63 - 1)"},
        std::pair{"\"15,832\"", "tpp must be a positive integer, not '15,832'; thousands separators"}}) {
    const auto path = write(
        "chips.csv", std::string("chip,vendor,tpp,performance_density,datacenter\nX1,V,") + tpp + ",1.5,1\n");
    expect_config_error([&] { (void)load_chips(path); }, path + ":2:6: " + said);
  }
}

TEST_F(ReferenceFiles, ChipsDuplicateKeyIgnoringCase)
{
  const auto path =
      write("chips.csv", "chip,vendor,tpp,performance_density,datacenter\nX1,V,10,1,1\nx1,V,20,1,1\n");
  expect_config_error([&] { (void)load_chips(path); },
                      path +
                          ":3:1: chip x1 is listed twice: the same key as line 2 (keys compare without "
                          "case); give each chip one row");
}

// Chip codes are 16 bits: a 65536th row's code wrapped to the first row's, and a log's lines of
// that chip were counted as the first chip, at its tpp, without a word. A table of 65535 chips
// loads, each chip its own; one more row is refused at that row.
TEST_F(ReferenceFiles, ChipsTableOfMoreThan65535RowsIsRefused)
{
  std::string table = "chip,vendor,tpp,performance_density,datacenter\n";
  for (int i = 0; i < 65535; ++i) {
    table += "C" + std::to_string(i) + ",V," + std::to_string(i + 1) + ",1,1\n";
  }
  const chip_table most = parse_chips(table, "most.csv");
  ASSERT_EQ(most.rows.size(), 65535U);
  const int last = most.find("C65534");
  ASSERT_GE(last, 0);
  EXPECT_EQ(most.rows[static_cast<std::size_t>(last)].tpp, 65535);
  expect_config_error([&] { (void)parse_chips(table + "ZZZ,V,5,1,0\n", "more.csv"); },
                      "more.csv:65537:1: more than 65535 chips");
}

TEST_F(ReferenceFiles, ChipsBadDatacenterFlagAndEmptyKey)
{
  expect_config_error(
      [&] {
        (void)load_chips(write("a.csv", "chip,vendor,tpp,performance_density,datacenter\nX1,V,10,1,2\n"));
      },
      ":2:11:");
  expect_config_error(
      [&] {
        (void)load_chips(write("b.csv", "chip,vendor,tpp,performance_density,datacenter\n,V,10,1,1\n"));
      },
      ":2:1:");
}

// SPEC §1.3 lists performance_density among the chips table's columns: required, and a number.
TEST_F(ReferenceFiles, ChipsPerformanceDensityIsADecimalNumber)
{
  expect_config_error([&] { (void)load_chips(write("a.csv", "chip,vendor,tpp,datacenter\nX1,V,10,1\n")); },
                      "performance_density");
  for (const char* bad : {"", "x", "-1", "1.2.3", "1e3", "."}) {
    const auto path = write(
        "b.csv", std::string("chip,vendor,tpp,performance_density,datacenter\nX1,V,10,") + bad + ",1\n");
    expect_config_error([&] { (void)load_chips(path); }, path + ":2:9:");
  }
  for (const char* good : {"0", "8.66", "12."}) {
    const auto path = write(
        "c.csv", std::string("chip,vendor,tpp,performance_density,datacenter\nX1,V,10,") + good + ",1\n");
    EXPECT_NO_THROW((void)load_chips(path)) << good;
  }
}

// A log's chip must be valid UTF-8 (BAD_ENCODING), so a key that is not could never be matched.
// `\n\r` line ends (some exports) are refused in the reference tables as in a log: each row's
// first field began with the CR, so a chips table so written loaded keys ("\rRTX-4090") that no
// log's chip matched, and lines with tpp_per_unit were taken as unknown chips, counted as
// datacenter chips (an ACA line of an RTX-4090 became an UNAUTHORIZED_PATHWAY violation).
TEST_F(ReferenceFiles, LfCrLineEndsAreRefusedAsInALog)
{
  const std::string said =
      ":2:1: MALFORMED_HEADER: a carriage return follows the header row's line end: line "
      "ends must be \\n or \\r\\n, not \\n\\r";
  for (const auto& [name, text] :
       {std::pair{"chips.csv",
                  "chip,vendor,tpp,performance_density,datacenter\n\rRTX-4090,NVIDIA,5285,8.66,0\n\r"},
        std::pair{"countries.csv", "iso2,name,tier,g2g_partner\n\rUS,United States,1,0\n\r"}}) {
    const auto path = write(name, text);
    try {
      if (std::string(name) == "chips.csv") {
        (void)load_chips(path);
      } else {
        (void)load_countries(path);
      }
      ADD_FAILURE() << name << " with \\n\\r line ends loaded";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), path + said) << name;
    }
  }
}

TEST_F(ReferenceFiles, ChipsKeyMustBeUtf8)
{
  const auto path =
      write("chips.csv", "chip,vendor,tpp,performance_density,datacenter\nX1,V,10,1,1\nX\xe9,V,10,1,1\n");
  expect_config_error([&] { (void)load_chips(path); }, path + ":3:1: chip key is not valid UTF-8");
  const chip_table table =
      load_chips(write("ok.csv", "chip,vendor,tpp,performance_density,datacenter\nX\xc3\xa9,V,10,1,1\n"));
  EXPECT_EQ(table.find("X\xc3\xa9"), 0);
}

// ---- entities.csv ------------------------------------------------------------------------------

// SPEC §1.2 lists nveu_countries among the columns. A file of entities none of which is NVEU
// does not need it; an NVEU entity in a file without it would be authorized nowhere, so the
// file is refused at that entity's status.
TEST_F(ReferenceFiles, NveuCountriesColumnIsNeededOnlyByNveuEntities)
{
  const country_table countries = load_countries((datasets_dir() / "countries.csv").string());
  const entity_table entities =
      load_entities(write("ok.csv", "entity,hq_country,status\nE1,US,UVEU\nE2,,NONE\n"), countries);
  ASSERT_EQ(entities.rows.size(), 2U);
  EXPECT_TRUE(entities.rows[0].nveu_countries.empty());

  const auto path = write("nveu.csv", "entity,hq_country,status\nE1,US,UVEU\nE2,DE,NVEU\n");
  try {
    (void)load_entities(path, countries);
    ADD_FAILURE() << "an NVEU entity without nveu_countries was accepted";
  } catch (const parse_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path + ":3:7:"), std::string::npos) << what;
    EXPECT_NE(what.find("nveu_countries"), std::string::npos) << what;
  }
}

// An entity listed twice is refused (which row's status was meant would be a guess), naming both
// rows' lines: the second may be far down a long file.
TEST_F(ReferenceFiles, EntityListedTwiceNamesItsFirstRow)
{
  const country_table countries = load_countries((datasets_dir() / "countries.csv").string());
  const auto path               = write("e.csv",
                                        "entity,hq_country,status,nveu_countries\nE1,US,UVEU,\nE2,AE,NONE,\n"
                                                      "E1,AE,NVEU,AE\n");
  try {
    (void)load_entities(path, countries);
    ADD_FAILURE() << "an entity listed twice was accepted";
  } catch (const parse_error& e) {
    EXPECT_EQ(std::string(e.what()),
              path +
                  ":4:1: DUPLICATE_ID: entity 'E1' is listed twice: the same id as line 2; give each "
                  "entity one row");
  }
}

// An unknown hq_country written as a country of the table is named, as an unknown chip is.
TEST_F(ReferenceFiles, UnknownHqCountryNamesTheCountryItIsWrittenLike)
{
  const country_table countries = load_countries((datasets_dir() / "countries.csv").string());
  for (const auto& [cell, said] :
       {std::pair{"USA", "'USA' is not in the countries table; did you mean 'US'?"},
        std::pair{"ZZ", "'ZZ' is not in the countries table"}}) {
    const auto path = write("e.csv", std::string("entity,hq_country,status\nE1,") + cell + ",NONE\n");
    try {
      (void)load_entities(path, countries);
      ADD_FAILURE() << "accepted: " << cell;
    } catch (const parse_error& e) {
      EXPECT_EQ(std::string(e.what()), path + ":2:4: UNKNOWN_COUNTRY: " + said) << cell;
    }
  }
}

// nveu_countries is `;`-separated (SPEC §1.2); a list written with commas or spaces (`"AE, IN"`, as
// a spreadsheet cell holds one) is one unknown code, and the message says how to write the list.
TEST_F(ReferenceFiles, NveuCountriesWrittenWithCommasSayHowToSeparateThem)
{
  const country_table countries = load_countries((datasets_dir() / "countries.csv").string());
  for (const auto& [cell, said] :
       {std::pair{"\"AE, IN\"",
                  "'AE, IN' in nveu_countries is not in the countries "
                  "table: separate the codes with ';' (AE;IN)"},
        std::pair{"AE IN",
                  "'AE IN' in nveu_countries is not in the countries table: "
                  "separate the codes with ';' (AE;IN)"},
        std::pair{"AE;XX", "'XX' in nveu_countries is not in the countries table"},
        std::pair{"AE;UK", "'UK' in nveu_countries is not in the countries table; did you mean 'GB'?"},
        // one country's name, though it holds spaces: the country, not how to separate codes
        std::pair{
            "United Arab Emirates",
            "'United Arab Emirates' in nveu_countries is not in the countries table; did you mean 'AE'?"}}) {
    const auto path =
        write("e.csv", std::string("entity,hq_country,status,nveu_countries\nE2,DE,NVEU,") + cell + "\n");
    try {
      (void)load_entities(path, countries);
      ADD_FAILURE() << "accepted: " << cell;
    } catch (const parse_error& e) {
      EXPECT_EQ(std::string(e.what()), path + ":2:12: UNKNOWN_COUNTRY: " + said) << cell;
    }
  }
}

// ---- rule set defects ---------------------------------------------------------------------------

/// A valid rule set; each defect test edits one part of it.
std::string valid_rules(const std::string& phases = R"([{"through": "2025-12-31", "tpp": 100},
                                                        {"through": "2027-12-31", "tpp": 200}])",
                        const std::string& pathways = R"(["LICENSE"])",
                        const std::string& max_tier2_share = "0.07",
                        const std::string& counting_ends = "2027-12-31",
                        const std::string& h100 = "15832")
{
  return R"({"id": "test-rules", "counting_starts": "2025-01-13", "counting_ends": ")" + counting_ends +
         R"(", "h100_tpp": )" + h100 + R"(,
    "country_cap": {"tpp": 790000000, "g2g_multiplier": 2, "pathways": )" + pathways + R"(},
    "lpp": {"per_order_tpp": 26900000, "per_consignee_year_tpp": 26900000},
    "nveu_caps": )" + phases + R"(,
    "uveu": {"max_tier2_country_share": )" + max_tier2_share +
         R"(, "min_tier1_share": 0.75, "min_us_share_if_us_hq": 0.5}})";
}

TEST(RuleSet, ValidRuleSetParses)
{
  const rule_set rules = parse_rule_set(valid_rules(), "r.json");
  EXPECT_EQ(rules.id, "test-rules");
  ASSERT_EQ(rules.nveu_caps.size(), 2U);
  EXPECT_EQ(rules.nveu_caps[1].through, days_from_civil(2027, 12, 31));
  EXPECT_EQ(rules.nveu_caps[1].tpp, 200);
  EXPECT_EQ(rules.uveu_max_tier2_country_share, 70000);
  EXPECT_EQ(rules.uveu_min_us_share_if_us_hq, 500000);
}

TEST(RuleSet, PathwaysAreCaseInsensitiveAndCombine)
{
  const rule_set rules = parse_rule_set(valid_rules(R"([{"through": "2027-12-31", "tpp": 1}])", R"(["license", "Lpp"])"),
                                        "r.json");
  EXPECT_EQ(rules.country_cap_pathways, (1U << static_cast<int>(pathway::license)) |
                                          (1U << static_cast<int>(pathway::lpp)));
}

// SPEC §4 caps LICENSE lines and §1.3 does not name the list: a rule set written from the SPEC
// alone has none, and caps LICENSE lines.
TEST(RuleSet, PathwaysDefaultToLicense)
{
  std::string text = valid_rules(R"([{"through": "2027-12-31", "tpp": 1}])", R"(["LPP"])");
  const auto at    = text.find(R"(, "pathways": ["LPP"])");
  ASSERT_NE(at, std::string::npos);
  text.erase(at, std::string(R"(, "pathways": ["LPP"])").size());
  EXPECT_EQ(parse_rule_set(text, "r.json").country_cap_pathways, 1U << static_cast<int>(pathway::license));
}

TEST(RuleSet, SixDecimalShareIsExact)
{
  const rule_set rules =
    parse_rule_set(valid_rules(R"([{"through": "2027-12-31", "tpp": 1}])", R"(["LICENSE"])", "0.070001"), "r.json");
  EXPECT_EQ(rules.uveu_max_tier2_country_share, 70001);
}

// A share is compared exactly, so it may have at most 6 decimals as written: 0.0700000000001 is
// not 0.07 (a tolerance around multiples of 10^-6 took it for 0.07), nor is 0.07000000000000000001
// (the same double as 0.07). Trailing zeros and exponents count as the value they write.
TEST(RuleSet, SharesWithMoreThanSixDecimalsAreRefused)
{
  const std::string one_phase = R"([{"through": "2027-12-31", "tpp": 1}])";
  for (const char* bad :
       {"0.0700000000001", "0.07000000001", "0.0000001", "0.0700001", "1.0000001", "0.07000000000000000001",
        "1.0000000000000000001", "7e-7", "0.5E-6", "7000001e-8", "700001e-7"}) {
    expect_config_error(
        [&] { (void)parse_rule_set(valid_rules(one_phase, R"(["LICENSE"])", bad), "r.json"); },
        "at most 6 decimal digits");
  }
  for (const auto& [good, ppm] :
       {std::pair{"0.07", 70000}, std::pair{"0.0700000", 70000}, std::pair{"0.000001", 1},
        std::pair{"1", 1000000}, std::pair{"0", 0}, std::pair{"1.0", 1000000}, std::pair{"1e-6", 1},
        std::pair{"7E-2", 70000}, std::pair{"0.7e-1", 70000}, std::pair{"700000e-7", 70000},
        std::pair{"0.000000070e6", 70000}, std::pair{"70000E-6", 70000}}) {
    EXPECT_EQ(
        parse_rule_set(valid_rules(one_phase, R"(["LICENSE"])", good), "r.json").uveu_max_tier2_country_share,
        ppm)
        << good;
  }
}

// A key the rule set does not know is refused: a misspelled optional key (`pathway`) would
// otherwise be passed over and its default used. A key given twice is refused too.
TEST(RuleSet, UnknownAndRepeatedKeysAreRefused)
{
  const std::string good = valid_rules();
  const auto edited      = [&](const std::string& old_text, const std::string& new_text) {
    std::string text = good;
    const auto at    = text.find(old_text);
    EXPECT_NE(at, std::string::npos) << old_text;
    return at == std::string::npos ? text : text.replace(at, old_text.size(), new_text);
  };
  const std::pair<std::string, std::string> defects[] = {
      {edited("\"pathways\"", "\"pathway\""), "country_cap: unknown key 'pathway'"},
      {edited("{\"id\"", "{\"idd\": 1, \"id\""), "unknown key 'idd'"},
      {edited("\"per_order_tpp\"", "\"per_order\": 5, \"per_order_tpp\""), "lpp: unknown key 'per_order'"},
      {edited("{\"through\": \"2025-12-31\"", "{\"from\": \"2025-01-01\", \"through\": \"2025-12-31\""),
       "nveu_caps[0]: unknown key 'from'"},
      {edited("\"min_tier1_share\"", "\"max_tier1_share\": 0.5, \"min_tier1_share\""),
       "uveu: unknown key 'max_tier1_share'"},
      {edited("\"h100_tpp\": 15832", "\"h100_tpp\": 15832, \"h100_tpp\": 1"),
       "r.json:1:105: key 'h100_tpp' is given twice"},
      // Named by the object that repeats it: every phase has a `tpp`.
      {edited("\"tpp\": 790000000", "\"tpp\": 790000000, \"tpp\": 5"),
       "r.json:2:39: country_cap: key 'tpp' is given twice"},
      {edited("\"tpp\": 200", "\"tpp\": 200, \"tpp\": 300"),
       "r.json:5:95: nveu_caps[1]: key 'tpp' is given twice"},  // at the second name
      {edited("[{\"through\": \"2025-12-31\"", "[7, {\"through\": \"2025-12-31\", \"tpp\": 1"),
       "r.json:4:58: nveu_caps[1]: key 'tpp' is given twice"},  // a number counts as an element too
      // A share's decimals are its own, not those of a key of that name written later elsewhere.
      {edited("0.5}}", "0.5}, \"x\": {\"max_tier2_country_share\": 0.0700001}}"),
       "r.json:6:103: unknown key 'x'"},
  };
  for (const auto& [text, message] : defects) {
    expect_config_error([&] { (void)parse_rule_set(text, "r.json"); }, message);
  }
  // `title` and `notes` are optional text: another kind is refused, as for every other key.
  for (const auto& [old_text, new_text] :
       {std::pair{"{\"id\"", "{\"notes\": 5, \"id\""}, std::pair{"{\"id\"", "{\"title\": [1], \"id\""}}) {
    const std::string key = std::string(new_text).substr(2, 5);
    expect_config_error([&] { (void)parse_rule_set(edited(old_text, new_text), "r.json"); },
                        "'" + key + "' must be a string");
  }
  // The bundled rule set's own keys, `title` and `notes` included, are known.
  EXPECT_NO_THROW((void)load_rule_set((datasets_dir() / "rules" / "ai-diffusion-2025.json").string()));
}

TEST(RuleSet, BadJson)
{
  // A number past a double is bad JSON here (exit 2), not an internal error.
  std::string huge = valid_rules();
  huge.replace(huge.find("15832"), 5, "1e999");
  expect_config_error([&] { (void)parse_rule_set(huge, "huge.json"); }, "huge.json: invalid JSON");
  expect_config_error([] { (void)parse_rule_set("{\"id\": \"x\",", "broken.json"); }, "broken.json");
  expect_config_error([] { (void)parse_rule_set("", "empty.json"); }, "empty.json");
  // Nesting is bounded before the text is held: 64 levels load (then the value is judged), 65 not.
  for (const int depth : {64, 65}) {
    std::string nested = valid_rules();
    nested.replace(nested.find("{\"id\""), 1,
                   "{\"notes\": " + std::string(depth - 1, '[') + std::string(depth - 1, ']') + ", ");
    expect_config_error(
        [&] { (void)parse_rule_set(nested, "deep.json"); },
        depth == 64 ? "deep.json:1:11: 'notes' must be a string" : "deep.json: nested deeper than 64 levels");
  }
  // A syntax error is named `file:line:column: reason` as in every other input, without the JSON
  // library's own code; a value past a double has no place, only the file.
  expect_config_error([] { (void)parse_rule_set("{\"id\": \"x\",\n \"h100_tpp\": 5x}", "typo.json"); },
                      "typo.json:2:15: invalid JSON: syntax error while parsing object - invalid literal");
  expect_config_error([&] { (void)parse_rule_set(huge, "huge.json"); },
                      "huge.json: invalid JSON: number overflow parsing '1e999'");
  // UTF-16 (a spreadsheet's or an editor's "Unicode") fails at its first byte: say why.
  expect_config_error([] { (void)parse_rule_set(std::string("\xFF\xFE{\0}\0", 6), "wide.json"); },
                      "wide.json:1:1: invalid JSON: ");
  expect_config_error([] { (void)parse_rule_set(std::string("\xFF\xFE{\0}\0", 6), "wide.json"); },
                      "UTF-16 byte-order mark; save it as UTF-8)");
  // Not said to miss every key.
  expect_config_error([] { (void)parse_rule_set("[1, 2]", "array.json"); },
                      "array.json: a rule set is a JSON object");
}

TEST(RuleSet, MissingKeys)
{
  const std::string good = valid_rules();
  for (const char* key : {"\"id\"", "\"counting_starts\"", "\"h100_tpp\"", "\"tpp\": 790000000",
                          "\"g2g_multiplier\"", "\"per_order_tpp\"", "\"per_consignee_year_tpp\"",
                          "\"nveu_caps\"", "\"min_tier1_share\"", "\"min_us_share_if_us_hq\"", "\"uveu\""}) {
    std::string text = good;
    const auto at    = text.find(key);
    ASSERT_NE(at, std::string::npos) << key;
    text.replace(at, 1, "\"renamed_");  // the key is no longer there
    expect_config_error([&] { (void)parse_rule_set(text, "r.json"); }, "r.json");
  }
}

TEST(RuleSet, PhasesMustBeInIncreasingOrder)
{
  expect_config_error(
      [] {
        (void)parse_rule_set(
            valid_rules(R"([{"through": "2026-12-31", "tpp": 100}, {"through": "2025-12-31", "tpp": 200},
                                           {"through": "2027-12-31", "tpp": 300}])"),
            "r.json");
      },
      "r.json:4:70: nveu_caps[1]: phases must be in increasing 'through' order: 2025-12-31 is not after the "
      "phase "
      "before's 2026-12-31");
  expect_config_error(
    [] {
      (void)parse_rule_set(valid_rules(R"([{"through": "2027-12-31", "tpp": 100}, {"through": "2027-12-31", "tpp": 200}])"),
                           "r.json");
    },
    "nveu_caps[1]");
}

TEST(RuleSet, LastPhaseMustCoverCountingEnds)
{
  expect_config_error(
      [] {
        (void)parse_rule_set(
            valid_rules(R"([{"through": "2025-12-31", "tpp": 100}, {"through": "2027-12-30", "tpp": 200}])"),
            "r.json");
      },
      "r.json:4:70: the last nveu_caps phase ends before counting_ends (2027-12-30 < 2027-12-31): no NVEU "
      "cap "
      "would be in force after it; extend its 'through' or add a phase");
  // Ending exactly on counting_ends, or after it, is fine.
  EXPECT_NO_THROW((void)parse_rule_set(valid_rules(R"([{"through": "2027-12-31", "tpp": 1}])"), "r.json"));
  EXPECT_NO_THROW((void)parse_rule_set(valid_rules(R"([{"through": "2030-01-01", "tpp": 1}])"), "r.json"));
}

TEST(RuleSet, BadPhaseContents)
{
  expect_config_error([] { (void)parse_rule_set(valid_rules("[]"), "r.json"); }, "nveu_caps");
  expect_config_error([] { (void)parse_rule_set(valid_rules(R"([{"through": "2027-02-30", "tpp": 1}])"), "r.json"); },
                      "through");
  expect_config_error([] { (void)parse_rule_set(valid_rules(R"([{"through": "2027-12-31", "tpp": 0}])"), "r.json"); },
                      "tpp");
  expect_config_error([] { (void)parse_rule_set(valid_rules(R"([{"through": "2027-12-31", "tpp": 1.5}])"), "r.json"); },
                      "tpp");
}

TEST(RuleSet, ShareWithMoreThanSixDecimals)
{
  const std::string phases = R"([{"through": "2027-12-31", "tpp": 1}])";
  expect_config_error([&] { (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "0.0700001"), "r.json"); },
                      "max_tier2_country_share");
  expect_config_error([&] { (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "0.1234567"), "r.json"); },
                      "max_tier2_country_share");
  expect_config_error([&] { (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "1.5"), "r.json"); },
                      "max_tier2_country_share");
  expect_config_error([&] { (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "-0.1"), "r.json"); },
                      "max_tier2_country_share");
  expect_config_error(
      [&] { (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "\"0.07\""), "r.json"); },
      "r.json:5:41: uveu: 'max_tier2_country_share' must be a number, not \"0.07\"");
  // The value refused is shown as written: as a double, 0.07000000000000000001 prints as 0.07,
  // which would read as a valid share refused.
  expect_config_error(
      [&] {
        (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "0.07000000000000000001"), "r.json");
      },
      "r.json:5:41: uveu: 'max_tier2_country_share' must be a fraction between 0 and 1, written without a "
      "sign, "
      "with at most 6 decimal digits, not 0.07000000000000000001");
  expect_config_error([&] { (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "2"), "r.json"); },
                      "with at most 6 decimal digits, not 2");
}

// A share of 0 written with a minus sign is refused, as a chips table's performance_density of
// `-0` is: neither value can be negative, so a sign on one is a typo, not another way to write 0.
TEST(RuleSet, ShareOfZeroWithASignIsRefusedAsADensityIs)
{
  const std::string phases = R"([{"through": "2027-12-31", "tpp": 1}])";
  for (const char* bad : {"-0", "-0.0", "-0e0", "-0.000000", "-0E+3"}) {
    expect_config_error([&] { (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", bad), "r.json"); },
                        "r.json:5:41: uveu: 'max_tier2_country_share' must be a fraction between 0 and 1, "
                        "written without a sign");
  }
  for (const char* good : {"0", "0.0", "0e0", "0.000000"}) {
    EXPECT_EQ(
        parse_rule_set(valid_rules(phases, R"(["LICENSE"])", good), "r.json").uveu_max_tier2_country_share, 0)
        << good;
  }
  for (const char* bad : {"-0", "-0.0", "+0"}) {
    const auto path = ::testing::TempDir() + "/signed-density.csv";
    std::ofstream(path) << "chip,vendor,tpp,performance_density,datacenter\nX1,V,10," << bad << ",1\n";
    expect_config_error([&] { (void)load_chips(path); }, path + ":2:9: performance_density");
  }
}

TEST(RuleSet, UnknownPathwayInCountryCap)
{
  const std::string phases = R"([{"through": "2027-12-31", "tpp": 1}])";
  expect_config_error([&] { (void)parse_rule_set(valid_rules(phases, R"(["LICENSE", "EXPORT"])"), "r.json"); },
                      "EXPORT");
  expect_config_error([&] { (void)parse_rule_set(valid_rules(phases, R"([7])"), "r.json"); }, "pathway");
  expect_config_error([&] { (void)parse_rule_set(valid_rules(phases, R"([])"), "r.json"); }, "pathways");
  expect_config_error([&] { (void)parse_rule_set(valid_rules(phases, R"("LICENSE")"), "r.json"); }, "pathways");
}

TEST(RuleSet, CountingWindowAndH100)
{
  const std::string phases = R"([{"through": "2030-12-31", "tpp": 1}])";
  expect_config_error(
      [&] { (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "0.07", "2024-12-31"), "r.json"); },
      "r.json:1:72: counting_starts 2025-01-13 is after counting_ends 2024-12-31");
  expect_config_error(
      [&] { (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "0.07", "2027-13-01"), "r.json"); },
      "r.json:1:72: 'counting_ends' must be a YYYY-MM-DD date, not \"2027-13-01\"");
  expect_config_error(
    [&] { (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "0.07", "2027-12-31", "0"), "r.json"); },
    "h100_tpp");
  expect_config_error(
      [&] {
        (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "0.07", "2027-12-31", "\"15832\""),
                             "r.json");
      },
      "r.json:1:98: 'h100_tpp' must be a positive integer, not \"15832\"");
  // The value is said; one past 2^63 - 1 (read as signed it wrapped negative) is too large, not
  // "not positive"; a long value is cut short.
  for (const auto& [h100, said] :
       {std::pair{"1e3", "'h100_tpp' must be a positive integer, not 1000.0"},
        std::pair{"9223372036854775808",
                  "'h100_tpp' 9223372036854775808 is past 9223372036854775807 (2^63 - 1)"},
        std::pair{"[1111111111, 2222222222, 3333333333, 4444444444]",  // its first 37 bytes, then ...
                  "'h100_tpp' must be a positive integer, not [1111111111,2222222222,3333333333,444..."}}) {
    try {
      (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "0.07", "2027-12-31", h100), "r.json");
      ADD_FAILURE() << "accepted " << h100;
    } catch (const config_error& e) {
      EXPECT_EQ(std::string(e.what()), std::string("r.json:1:98: ") + said);
    }
  }
}

// A rule set's defects are named `file:line:column:` as a CSV input's are (the JSON library keeps
// no positions; the first pass over the text notes them): a wrong value at the value, an unknown
// key at its name, a missing key at its object's opening brace. Lines end in \r\n here.
TEST(RuleSet, DefectsNameLineAndColumn)
{
  const std::string lines[] = {
      "{",                                                                                         // 1
      "  \"id\": \"t\", \"counting_starts\": \"2025-01-13\", \"counting_ends\": \"2027-12-31\",",  // 2
      "  \"h100_tpp\": 15832,",                                                                    // 3
      "  \"country_cap\": {\"tpp\": 790000000, \"g2g_multiplier\": 2},",                           // 4
      "  \"lpp\": {",                                                                              // 5
      "    \"per_order_tpp\": 26900000,",                                                          // 6
      "    \"per_consignee_year_tpp\": 26900000},",                                                // 7
      "  \"nveu_caps\": [{\"through\": \"2027-12-31\", \"tpp\": 5}],",                             // 8
      "  \"uveu\": {\"max_tier2_country_share\": 0.07, \"min_tier1_share\": 0.75, \"min_us_share_if_us_hq\": "
      "0.5}",
      "}"};
  const auto edited = [&](int line, const std::string& from, const std::string& to) {
    std::string text;
    for (int i = 0; i < 10; ++i) {
      std::string row = lines[i];
      if (i + 1 == line) { row.replace(row.find(from), from.size(), to); }
      text += row + "\r\n";
    }
    return text;
  };
  EXPECT_NO_THROW((void)parse_rule_set(edited(3, "15832", "15832"), "r.json"));
  for (const auto& [text, said] :
       {// `    "per_order_tpp": ` is 21 bytes: the value is at column 22.
        std::pair{edited(6, "26900000", "0"),
                  "r.json:6:22: lpp: 'per_order_tpp' must be a positive integer, not 0"},
        // Missing is said before unknown: at the object's brace, `  "country_cap": {` column 18.
        std::pair{edited(4, "g2g_multiplier", "g2g_multiplyer"),
                  "r.json:4:18: country_cap: missing 'g2g_multiplier'"},
        // `  "country_cap": {"tpp": 790000000, "g2g_multiplier": 2, ` is 57 bytes: the name is at 58.
        std::pair{edited(4, "}", ", \"pathway\": [\"LPP\"]}"),
                  "r.json:4:58: country_cap: unknown key 'pathway'"},
        // A missing key: at its object's brace, `  "lpp": {` column 10.
        std::pair{edited(6, "\"per_order_tpp\": 26900000,", ""), "r.json:5:10: lpp: missing 'per_order_tpp'"},
        std::pair{edited(5, "{", "5, \"x\": {"), "r.json:5:10: lpp must be an object ({...}), not 5"},
        // `  "nveu_caps": [{"through": ` is 28 bytes.
        std::pair{edited(8, "2027-12-31", "2027-12-32"),
                  "r.json:8:29: nveu_caps[0]: 'through' must be a YYYY-MM-DD date, not \"2027-12-32\""}}) {
    try {
      (void)parse_rule_set(text, "r.json");
      ADD_FAILURE() << "accepted: " << said;
    } catch (const config_error& e) {
      EXPECT_EQ(std::string(e.what()), said);
    }
  }
}

// SPEC §2: in window is counting_starts <= date <= counting_ends, so a window of one day
// (counting_ends == counting_starts) is a window; only an end before the start is a defect.
TEST(RuleSet, OneDayCountingWindowIsValid)
{
  const std::string phases = R"([{"through": "2030-12-31", "tpp": 1}])";
  const rule_set rules =
      parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "0.07", "2025-01-13"), "r.json");
  EXPECT_EQ(rules.counting_starts, days_from_civil(2025, 1, 13));
  EXPECT_EQ(rules.counting_ends, days_from_civil(2025, 1, 13));
  EXPECT_TRUE(rules.in_window(days_from_civil(2025, 1, 13)));
  EXPECT_FALSE(rules.in_window(days_from_civil(2025, 1, 12)));
  EXPECT_FALSE(rules.in_window(days_from_civil(2025, 1, 14)));
  expect_config_error(
      [&] { (void)parse_rule_set(valid_rules(phases, R"(["LICENSE"])", "0.07", "2025-01-12"), "r.json"); },
      "r.json:1:72: counting_starts 2025-01-13 is after counting_ends 2025-01-12");  // at the end's value
}

// The G2G cap (country_cap.tpp x g2g_multiplier) must be exact in 64 bits: the largest tpp whose
// product fits (floor(INT64_MAX / 2) x 2 = INT64_MAX - 1) loads, one more is refused.
TEST(RuleSet, G2gCapMustFitIn64Bits)
{
  const auto with_cap = [](const std::string& tpp) {
    std::string text       = valid_rules();
    const std::string from = R"("tpp": 790000000)";
    const auto at          = text.find(from);
    EXPECT_NE(at, std::string::npos);
    return text.replace(at, from.size(), R"("tpp": )" + tpp);
  };
  const rule_set fits = parse_rule_set(with_cap("4611686018427387903"), "r.json");
  EXPECT_EQ(fits.country_cap_tpp, 4611686018427387903);
  EXPECT_EQ(fits.g2g_multiplier, 2);
  expect_config_error(
      [&] { (void)parse_rule_set(with_cap("4611686018427387904"), "r.json"); },
      "r.json:2:67: country_cap: tpp x g2g_multiplier overflows 64 bits");  // at the multiplier
}

// Country codes index 256-bit NVEU masks (four 64-bit words an entity): a table of 256 countries
// loads, one of 257 is refused before any code past the masks is handed out.
TEST_F(ReferenceFiles, CountriesAtMost256)
{
  const auto table_of = [](int rows) {
    std::string text = "iso2,name,tier,g2g_partner\n";
    for (int i = 0; i < rows; ++i) {
      text += std::string{static_cast<char>('A' + i / 26), static_cast<char>('A' + i % 26)} + ",C" +
              std::to_string(i) + ",2,0\n";
    }
    return text;
  };
  const country_table full = parse_countries(table_of(256), "c.csv");
  EXPECT_EQ(full.rows.size(), 256U);
  EXPECT_EQ(full.find("JV"), 255);  // 'J' = 9: 9 x 26 + 21 = 255, the last code
  expect_config_error([&] { (void)parse_countries(table_of(257), "c.csv"); },
                      "c.csv: more than 256 countries");
}

TEST_F(ReferenceFiles, LoadRuleSetNamesTheFile)
{
  const auto path = write("rules.json", "{not json");
  expect_config_error([&] { (void)load_rule_set(path); }, path);
  expect_config_error([&] { (void)load_rule_set((dir_ / "absent.json").string()); }, "absent.json");
  const auto good = write("good.json", valid_rules());
  EXPECT_EQ(load_rule_set(good).id, "test-rules");
}

}  // namespace
