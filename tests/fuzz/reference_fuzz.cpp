/// @file reference_fuzz.cpp
/// @brief libFuzzer target: arbitrary bytes as a rule set, a countries table, a chips table or an
/// entities file (SPEC §1.2-1.3, §7: "Reference and rule files with errors are always fatal").
///
/// Input layout: byte 0 % 4 picks the file (0 rule set, 1 countries, 2 chips, 3 entities, read
/// against the bundled countries); the rest is its text.
///
/// Checked on every input:
/// - no crash, UB or leak (the sanitizers), and no exception but config_error or parse_error
///   (exit 2), whose message names the file: anything else would be exit 3, an internal error;
/// - what loads keeps the README's promises: a rule set's window is not inverted, its caps and
///   limits are positive, its NVEU phases ascend and cover the window's end, its shares lie in
///   [0, 1]; countries have tiers 1 to 3 and distinct upper-case codes that `find` returns in any
///   case; chips have a positive tpp and distinct keys in any case; entities have distinct ids,
///   a known HQ or none, and sorted NVEU countries of the table.
#include <capledger/entities.hpp>
#include <capledger/error.hpp>
#include <capledger/reference.hpp>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#ifndef CAPLEDGER_DATASETS_DIR
#define CAPLEDGER_DATASETS_DIR "datasets"
#endif

namespace {

using namespace capledger;

const country_table* g_countries = nullptr;

[[noreturn]] void fail(const char* what, const std::string& detail = {})
{
  std::fprintf(stderr, "reference_fuzz: %s %s\n", what, detail.c_str());
  std::abort();
}

void expect(bool condition, const char* what)
{
  if (!condition) { fail(what); }
}

std::string upper(std::string_view text)
{
  std::string out(text);
  for (char& c : out) { c = static_cast<char>(std::toupper(static_cast<unsigned char>(c))); }
  return out;
}

void check_rules(const rule_set& rules)
{
  expect(rules.counting_starts <= rules.counting_ends, "inverted window");
  expect(rules.h100_tpp > 0 && rules.country_cap_tpp > 0 && rules.g2g_multiplier > 0, "non-positive cap");
  expect(rules.lpp_per_order_tpp > 0 && rules.lpp_per_consignee_year_tpp > 0, "non-positive LPP limit");
  expect(!rules.nveu_caps.empty(), "no NVEU phase");
  for (std::size_t k = 1; k < rules.nveu_caps.size(); ++k) {
    expect(rules.nveu_caps[k - 1].through < rules.nveu_caps[k].through, "NVEU phases not ascending");
  }
  expect(rules.nveu_caps.back().through >= rules.counting_ends, "NVEU phases end before the window");
  for (const ppm_t share :
       {rules.uveu_max_tier2_country_share, rules.uveu_min_tier1_share, rules.uveu_min_us_share_if_us_hq}) {
    expect(share >= 0 && share <= ppm_one, "share outside [0, 1]");
  }
}

void check_countries(const country_table& table)
{
  std::set<std::string> seen;
  for (std::size_t code = 0; code < table.rows.size(); ++code) {
    const country& c = table.rows[code];
    expect(c.tier >= 1 && c.tier <= 3, "tier outside 1-3");
    expect(c.iso2 == upper(c.iso2), "code not upper case");
    expect(seen.insert(c.iso2).second, "code twice");
    expect(table.find(c.iso2) == static_cast<int>(code), "find misses a code");
    std::string lower = c.iso2;
    for (char& ch : lower) { ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch))); }
    expect(table.find(lower) == static_cast<int>(code), "find misses a lower-case code");
  }
}

void check_chips(const chip_table& table)
{
  std::set<std::string> seen;
  for (std::size_t code = 0; code < table.rows.size(); ++code) {
    const chip& c = table.rows[code];
    expect(c.tpp > 0, "non-positive chip tpp");
    expect(seen.insert(upper(c.key)).second, "chip key twice in some case");
    expect(table.find(c.key) == static_cast<int>(code), "find misses a chip");
  }
}

void check_entities(const entity_table& table)
{
  std::set<std::string> seen;
  for (const entity_info& e : table.rows) {
    expect(!e.id.empty(), "empty entity id");
    expect(seen.insert(e.id).second, "entity twice");
    expect(table.find(e.id) == &e, "find misses an entity");
    expect(e.hq_country >= -1 && e.hq_country < static_cast<int>(g_countries->rows.size()),
           "HQ outside the table");
    for (std::size_t k = 0; k < e.nveu_countries.size(); ++k) {
      expect(e.nveu_countries[k] < g_countries->rows.size(), "NVEU country outside the table");
      if (k > 0) { expect(e.nveu_countries[k - 1] < e.nveu_countries[k], "NVEU countries not sorted"); }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
  static const country_table countries = load_countries(CAPLEDGER_DATASETS_DIR "/countries.csv");
  g_countries                          = &countries;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  if (size == 0) { return 0; }
  const int kind = data[0] % 4;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string origin = "fuzz.file";
  try {
    switch (kind) {
      case 0:
        check_rules(parse_rule_set(text, origin));
        break;
      case 1:
        check_countries(parse_countries(text, origin));
        break;
      case 2:
        check_chips(parse_chips(text, origin));
        break;
      default:
        check_entities(parse_entities(text, origin, *g_countries));
        break;
    }
  } catch (const config_error& e) {
    if (std::string_view(e.what()).find(origin) == std::string_view::npos) {
      fail("message without the file:", e.what());
    }
  } catch (const parse_error& e) {
    if (std::string_view(e.what()).find(origin) == std::string_view::npos) {
      fail("message without the file:", e.what());
    }
  } catch (const std::exception& e) {
    fail("exception other than config_error or parse_error:", e.what());
  }
  return 0;
}
