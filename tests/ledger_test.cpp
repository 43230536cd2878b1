/// @file ledger_test.cpp
/// @brief The nightly ledger: report over nights equals report over files (byte for byte),
/// idempotent ingest, kill -9 during ingest, back-dated lines, balances, reconcile and check.
#include <capledger/generate.hpp>
#include <capledger/ledger.hpp>
#include <capledger/report.hpp>

#include <gtest/gtest.h>

#include "ledger_db.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;

using capledger::test::read_text;

using capledger::test::write_text;

/// A scratch directory, removed at the end of the test.
class ledger_test : public ::testing::Test {
 protected:
  void SetUp() override
  {
    std::string pattern = (fs::temp_directory_path() / "capledger-ledger-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  [[nodiscard]] fs::path at(const std::string& name) const { return dir_ / name; }

  /// Writes rule set @p name (its id) with the bundled window, country cap and UVEU shares and the
  /// given LPP limits and NVEU phases (JSON values), for tests whose limits differ from the bundled.
  void write_rules(const std::string& name, const std::string& lpp, const std::string& nveu_caps) const
  {
    write_text(
        at(name + ".json"),
        R"({"id":")" + name + R"(","counting_starts":"2025-01-13","counting_ends":"2027-12-31",)" +
            R"("h100_tpp":15832,"country_cap":{"tpp":790000000,"g2g_multiplier":2,"pathways":["LICENSE"]},)" +
            R"("lpp":)" + lpp + R"(,"nveu_caps":)" + nveu_caps +
            R"(,"uveu":{"max_tier2_country_share":0.07,"min_tier1_share":0.75,"min_us_share_if_us_hq":0.50}})");
  }

  /// A new ledger l.db holding night.csv, @p lines (after the header) of NVEU entity G (AE,
  /// ent.csv), ingested under the rule set @p rules of `write_rules`.
  void ingest_nveu_night(const std::string& rules, const std::string& lines) const
  {
    write_text(at("ent.csv"), "entity,hq_country,status,nveu_countries\nG,AE,NVEU,AE\n");
    write_text(at("night.csv"), "shipment_id,date,entity,country,chip,quantity,pathway\n" + lines);
    ASSERT_EQ(cli("ledger init l.db"), 0) << stderr_text();
    ASSERT_EQ(cli("ledger ingest l.db night.csv --entities ent.csv --rules " + rules + ".json"), 0)
        << stderr_text();
  }

  /// Runs the CLI with @p args (shell words) from the scratch directory; stdout into @p out.
  int cli(const std::string& args, std::string* out = nullptr) const
  {
    const std::string cmd = "cd '" + dir_.string() + "' && '" CAPLEDGER_CLI_PATH "' " + args + " >'" +
                            at("stdout").string() + "' 2>'" + at("stderr").string() + "'";
    const int status = std::system(cmd.c_str());
    if (out != nullptr) { *out = read_text(at("stdout")); }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  [[nodiscard]] std::string stderr_text() const { return read_text(at("stderr")); }

  /// `ledger report l.db` @p flags `--out inc`, expected to exit @p exit_code from the running
  /// state (stderr says `incremental`); returns that report's file @p name.
  std::string incremental_report_file(const std::string& flags, int exit_code, const std::string& name) const
  {
    fs::remove_all(at("inc"));
    EXPECT_EQ(cli("ledger report l.db" + flags + " --backend cpu --out inc"), exit_code) << stderr_text();
    EXPECT_NE(stderr_text().find("ledger report: incremental"), std::string::npos) << stderr_text();
    return read_text(at("inc/" + name));
  }

  /// Generates a log with every breach planted; writes entities.csv and returns the data lines
  /// (the header goes to @p header).
  std::vector<std::string> generated_lines(std::int64_t records, std::uint64_t seed, std::string& header) const
  {
    const capledger::reference_data ref = capledger::load_reference(capledger::report_options{});
    capledger::generate_options options;
    options.records        = records;
    options.seed           = seed;
    options.force_breaches = true;
    std::ostringstream shipments, entities;
    capledger::generate_log(options, ref.countries, ref.chips, ref.rules, shipments, entities);
    write_text(at("entities.csv"), entities.str());
    std::istringstream in(shipments.str());
    std::string line;
    std::getline(in, header);
    std::vector<std::string> lines;
    while (std::getline(in, line)) { lines.push_back(line); }
    return lines;
  }

  /// Writes a generated log split into @p nights files night0.csv ... by line ranges, and entities.csv.
  std::vector<std::string> generated_nights(std::int64_t records, int nights, std::uint64_t seed)
  {
    std::string header;
    std::vector<std::string> lines = generated_lines(records, seed, header);
    std::vector<std::string> names;
    for (int n = 0; n < nights; ++n) {
      const std::size_t begin = lines.size() * static_cast<std::size_t>(n) / static_cast<std::size_t>(nights);
      const std::size_t end   = lines.size() * static_cast<std::size_t>(n + 1) / static_cast<std::size_t>(nights);
      std::string text        = header + "\n";
      for (std::size_t i = begin; i < end; ++i) { text += lines[i] + "\n"; }
      names.push_back("night" + std::to_string(n) + ".csv");
      write_text(at(names.back()), text);
    }
    return names;
  }

  /// Every file of two output directories is byte-identical.
  void expect_same_outputs(const fs::path& a, const fs::path& b) const
  {
    std::vector<std::string> names_a, names_b;
    for (const auto& e : fs::directory_iterator(a)) { names_a.push_back(e.path().filename().string()); }
    for (const auto& e : fs::directory_iterator(b)) { names_b.push_back(e.path().filename().string()); }
    std::sort(names_a.begin(), names_a.end());
    std::sort(names_b.begin(), names_b.end());
    ASSERT_EQ(names_a, names_b);
    EXPECT_EQ(names_a.size(), 8U);
    for (const auto& name : names_a) { EXPECT_EQ(read_text(a / name), read_text(b / name)) << name; }
  }

  /// Runs @p sql on the ledger l.db, as a hand edit of the database would.
  void alter(const std::string& sql) const
  {
    capledger::detail::sql_connection db(at("l.db").string(),
                                         capledger::detail::sql_connection::mode::read_write);
    db.exec(sql);
  }

  static std::string join(const std::vector<std::string>& words, std::size_t count)
  {
    std::string out;
    for (std::size_t i = 0; i < count; ++i) { out += " " + words[i]; }
    return out;
  }

  fs::path dir_;
};

// `ledger verify`: a stored line or a running total altered in the database (a bit flip, a hand
// edit) makes the state and a replay of the lines disagree, and verify says where; a ledger
// without a state has nothing to compare; a state of other tables is a configuration error.
TEST_F(ledger_test, VerifyFindsAlteredLinesAndTotals)
{
  const auto nights = generated_nights(3000, 3, 21);
  ASSERT_EQ(cli("ledger init l.db"), 0) << stderr_text();
  for (std::size_t n = 0; n < nights.size(); ++n) {
    ASSERT_EQ(cli("ledger ingest l.db " + nights[n] + (n == 0 ? " --entities entities.csv" : "")), 0)
        << stderr_text();
  }
  std::string said;
  ASSERT_EQ(cli("ledger verify l.db", &said), 0) << said << stderr_text();
  EXPECT_NE(said.find("integrity: ok"), std::string::npos) << said;
  EXPECT_NE(said.find("running state: agrees with a replay of 3000 stored line(s)"), std::string::npos)
      << said;

  // A stored line's quantity, ten times what was ingested: totals of its chip, country, entity...
  alter("UPDATE lines SET quantity = quantity || '0' WHERE seq = 5");
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said << stderr_text();
  EXPECT_NE(said.find("running state: DISAGREES with a replay of 3000 stored line(s)"), std::string::npos)
      << said;
  EXPECT_NE(said.find("  by_chip.csv line "), std::string::npos) << said;
  alter("UPDATE lines SET quantity = substr(quantity, 1, length(quantity) - 1) WHERE seq = 5");
  ASSERT_EQ(cli("ledger verify l.db", &said), 0) << said;

  // A country's running cap total in the state.
  alter("UPDATE st_country_cap SET a = a + 1 WHERE key = (SELECT MIN(key) FROM st_country_cap)");
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said;
  EXPECT_NE(said.find("  by_country.csv line "), std::string::npos) << said;
  alter("UPDATE st_country_cap SET a = a - 1 WHERE key = (SELECT MIN(key) FROM st_country_cap)");
  ASSERT_EQ(cli("ledger verify l.db", &said), 0) << said;

  // A running total no report prints (an LPP consignee-year below its limit, b < 0: no crossing)
  // but `check` weighs proposed lines against.
  alter(
      "UPDATE st_lpp_annual SET a = a + 20000000 WHERE key = (SELECT MIN(key) FROM st_lpp_annual WHERE b < "
      "0)");
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said;
  EXPECT_NE(said.find("  limit total, LPP of ("), std::string::npos) << said;
  alter(
      "UPDATE st_lpp_annual SET a = a - 20000000 WHERE key = (SELECT MIN(key) FROM st_lpp_annual WHERE b < "
      "0)");
  ASSERT_EQ(cli("ledger verify l.db", &said), 0) << said;

  // Keys that name codes past the dictionaries or the countries table (one flipped bit in a pair
  // key's country part; an entity far past the last), or a first line of -1: the state is
  // damaged, never rendered (it indexed past the tables, or looked up a line nothing stored), so
  // `ledger report` replays and verify says which table.
  for (const auto& [table, sql] : std::vector<std::pair<std::string, std::string>>{
           {"pairs", "UPDATE st_pair SET key = key + 32768 WHERE key = (SELECT MIN(key) FROM st_pair)"},
           {"unauthorized pathways",
            "UPDATE st_unauth SET key = key + 8 * 65536 * 1000000 WHERE key = (SELECT MIN(key) FROM "
            "st_unauth)"},
           {"unauthorized pathways",
            "UPDATE st_unauth SET a = -1 WHERE key = (SELECT MIN(key) FROM st_unauth)"},
           {"prohibited destinations",
            "UPDATE st_prohibited SET a = -1 WHERE key = (SELECT MIN(key) FROM st_prohibited)"}}) {
    fs::copy_file(at("l.db"), at("whole.db"), fs::copy_options::overwrite_existing);
    alter(sql);
    EXPECT_EQ(cli("ledger verify l.db", &said), 1) << table << ": " << said;
    EXPECT_NE(said.find("running state: the running state is damaged (" + table + ")"), std::string::npos)
        << said;
    fs::remove_all(at("damaged-out"));
    fs::remove_all(at("replay-out"));
    EXPECT_EQ(cli("ledger report l.db --backend cpu --out damaged-out"), 1) << stderr_text();
    EXPECT_NE(stderr_text().find("ledger report: replay (the running state is damaged (" + table + "))"),
              std::string::npos)
        << stderr_text();
    EXPECT_EQ(cli("ledger report l.db --backend cpu --replay --out replay-out"), 1) << stderr_text();
    expect_same_outputs(at("replay-out"), at("damaged-out"));
    fs::copy_file(at("whole.db"), at("l.db"), fs::copy_options::overwrite_existing);
    ASSERT_EQ(cli("ledger verify l.db", &said), 0) << table << ": " << said;
  }

  // A stored line that no longer reads as a line (a quantity of 0): the replay stops, verify says
  // where (exit 1, a finding, not bad input).
  fs::copy_file(at("l.db"), at("whole.db"), fs::copy_options::overwrite_existing);
  alter("UPDATE lines SET quantity = '0' WHERE seq = 100");
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said << stderr_text();
  EXPECT_NE(said.find("stored lines: the replay stops: "), std::string::npos) << said;
  EXPECT_NE(said.find("BAD_QUANTITY"), std::string::npos) << said;
  fs::copy_file(at("whole.db"), at("l.db"), fs::copy_options::overwrite_existing);
  // A quantity or tpp_per_unit altered into text or a real: SQLite would read '12x' as 12 and
  // 'abc' as 0; the replay shows the stored text instead and stops there (a --replay report too).
  for (const std::string value : {"'12x'", "'abc'", "12.5"}) {
    for (const std::string column : {"quantity", "tpp_per_unit"}) {
      alter("UPDATE lines SET " + column + " = " + value + " WHERE seq = 100");
      const std::string shown = value == "12.5" ? "'12.5'" : value;
      EXPECT_EQ(cli("ledger verify l.db", &said), 1) << value << said << stderr_text();
      EXPECT_NE(said.find("stored lines: the replay stops: "), std::string::npos) << value << said;
      EXPECT_NE(said.find(shown + " is not a"), std::string::npos) << value << said;
      EXPECT_EQ(cli("ledger report l.db --backend cpu --replay"), 2) << value << stderr_text();
      EXPECT_NE(stderr_text().find(shown + " is not a"), std::string::npos) << value << stderr_text();
      fs::copy_file(at("whole.db"), at("l.db"), fs::copy_options::overwrite_existing);
    }
  }

  // A state under other rules: the caller must name the tables of the ingest.
  const fs::path bundled_rules = capledger::test::datasets_dir() / "rules";
  write_text(at("rules.json"), read_text(bundled_rules / "ai-diffusion-2025.json") + " ");  // other bytes
  // The state keeps each table's hash, so the message names the files that differ.
  EXPECT_EQ(cli("ledger verify l.db --rules rules.json", &said), 2) << said;
  EXPECT_NE(
      stderr_text().find("tables: of the tables read, rules.json differs from the one it was built under; "
                         "give the --countries, --chips and --rules the ledger was ingested with\n"),
      std::string::npos)
      << stderr_text();
  write_text(at("countries.csv"),
             read_text(capledger::test::datasets_dir() / "countries.csv") + "XX,Nowhere,2,0\n");
  EXPECT_EQ(cli("ledger verify l.db --rules rules.json --countries countries.csv", &said), 2) << said;
  EXPECT_NE(
      stderr_text().find("tables: of the tables read, countries.csv and rules.json differ from those it "
                         "was built under; give"),
      std::string::npos)
      << stderr_text();

  // Damage SQLite finds itself: the shipment-id index's root page says it holds no cells (its
  // page header's free-block, cell-count and content fields zeroed; the page type and, for an
  // interior page, the right-most child stay). A copy, so that the ledger stays whole for what
  // follows.
  fs::copy_file(at("l.db"), at("damaged.db"));
  std::int64_t root_page = 0;
  {
    capledger::detail::sql_connection db(at("damaged.db").string(),
                                         capledger::detail::sql_connection::mode::read_only);
    root_page = db.query_int("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_lines_1'")
                    .value_or(0);
  }
  ASSERT_GT(root_page, 1);
  {
    std::fstream file(at("damaged.db"), std::ios::in | std::ios::out | std::ios::binary);
    file.seekp((root_page - 1) * 4096 + 1);
    file.write(std::string(7, '\0').data(), 7);
  }
  EXPECT_EQ(cli("ledger verify damaged.db", &said), 1) << said << stderr_text();
  EXPECT_NE(said.find("integrity: SQLite found "), std::string::npos) << said;
  EXPECT_NE(said.find("*** in database main ***"), std::string::npos) << said;  // SQLite's own words

  // The state's record gone while its tables and the lines stay: damage, not a ledger without a
  // state (init makes the tables and every ingest writes the record).
  alter("DELETE FROM state_info");
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said;
  EXPECT_NE(said.find("running state: the running state is damaged (its record is missing)"),
            std::string::npos)
      << said;
  alter("DROP TABLE state_info");
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said;
  EXPECT_NE(said.find("running state: the running state is damaged (its record is missing)"),
            std::string::npos)
      << said;

  // No state at all (a ledger from before the state existed, none of its tables): nothing to
  // compare, but the stored lines must still replay; one that no longer reads as a line is a
  // finding here too.
  for (const char* table : {"st_entity", "st_exporter", "st_chip", "st_order", "st_country", "st_country_cap",
                            "st_pair", "st_nveu", "st_lpp_annual", "st_prohibited", "st_unauth", "st_line"}) {
    alter(std::string("DROP TABLE ") + table);
  }
  EXPECT_EQ(cli("ledger verify l.db", &said), 0) << said;
  EXPECT_NE(said.find("running state: none (no ingest has built one): nothing to compare"), std::string::npos)
      << said;
  alter("UPDATE lines SET quantity = '0' WHERE seq = 100");
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said << stderr_text();
  EXPECT_NE(said.find("stored lines: the replay stops: "), std::string::npos) << said;
}

/// A ledger of four nights whose running state keeps rows of zero: returns that bring an NVEU
/// pair, an LPP order and consignee-year and a country cap back to 0, and LPP orders whose lines
/// all lie outside the counting window. Night 3 is back-dated (the state is rebuilt), the others
/// extend it. E5 is a UVEU entity: its UVEU lines are authorized.
class verify_ledger_test : public ledger_test {
 protected:
  void SetUp() override
  {
    ledger_test::SetUp();
    write_text(at("entities.csv"), "entity,hq_country,status,nveu_countries\nE2,US,NVEU,IN\nE5,US,UVEU,\n");
    const std::string header = "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n";
    write_text(at("night1.csv"), header +
                                     "N1,2025-03-01,E1,AE,H100-SXM,1000,LICENSE,\n"
                                     "N2,2025-03-01,E2,IN,H100-SXM,2000,NVEU,\n"
                                     "N3,2025-03-02,E3,BR,H100-SXM,300,LPP,O1\n"
                                     "N4,2025-03-02,E5,DE,H100-SXM,10,UVEU,\n");
    write_text(at("night2.csv"), header +
                                     "N5,2025-04-01,E2,IN,H100-SXM,-2000,NVEU,\n"  // E2/IN back to 0
                                     "N6,2025-04-01,E3,BR,H100-SXM,-300,LPP,O1\n"  // O1, E3/2025 back to 0
                                     "N7,2028-02-01,E3,BR,H100-SXM,5,LPP,O8\n");   // after the window
    write_text(at("night3.csv"), header +
                                     "N8,2025-02-01,E1,AE,H100-SXM,-1000,LICENSE,\n"  // AE back to 0
                                     "N9,2024-06-01,E3,BR,H100-SXM,7,LPP,O9\n");      // before the window
    write_text(at("night4.csv"), header +
                                     "N10,2025-05-01,E4,AE,H100-SXM,1,LICENSE,\n"
                                     "N11,2025-05-01,E4,AE,H100-SXM,-1,LICENSE,\n");
    ASSERT_EQ(cli("ledger init l.db"), 0);
    for (const auto& [night, path] :
         std::vector<std::pair<std::string, std::string>>{{"night1.csv --entities entities.csv", "extended"},
                                                          {"night2.csv", "extended"},
                                                          {"night3.csv", "rebuilt"},
                                                          {"night4.csv", "extended"}}) {
      ASSERT_EQ(cli("ledger ingest l.db " + night), 0) << stderr_text();
      EXPECT_NE(stderr_text().find("running state " + path), std::string::npos)
          << night << ": " << stderr_text();
    }
  }
};

// An honest ledger verifies: its rows of keys whose lines net to zero, and of LPP orders outside
// the window, are rows the state writes (they are there, and not reported).
TEST_F(verify_ledger_test, VerifyAcceptsRowsOfZeroTheStateWrites)
{
  capledger::detail::sql_connection db(at("l.db").string(),
                                       capledger::detail::sql_connection::mode::read_only);
  for (const auto& [table, rows] :
       std::vector<std::pair<std::string, std::int64_t>>{{"st_country_cap", 1},  // AE
                                                         {"st_nveu", 1},         // E2/IN
                                                         {"st_lpp_annual", 1},   // E3/2025
                                                         {"st_order", 3}}) {     // O1, O8, O9
    EXPECT_EQ(db.query_int("SELECT COUNT(*) FROM " + table + " WHERE a = 0"), rows) << table;
  }
  std::string said;
  EXPECT_EQ(cli("ledger verify l.db", &said), 0) << said << stderr_text();
  EXPECT_NE(said.find("running state: agrees with a replay of 11 stored line(s)"), std::string::npos) << said;
}

// A row for a key no stored line touches, in each table `check` reads its limit totals from, and
// in st_unauth for a key the entities file authorizes: no report prints them, yet `check` (or a
// report under another entities file) would read them. Verify names each (exit 1). So does an
// LPP order's total where all the order's lines lie outside the window.
TEST_F(verify_ledger_test, VerifyFindsRowsNoStoredLineWrites)
{
  const capledger::reference_data ref = capledger::load_reference(capledger::report_options{});
  const auto country = [&](const char* iso2) { return std::to_string(ref.countries.find(iso2)); };
  const auto entity  = [](const char* id) {
    return "(SELECT code FROM st_entity WHERE text = '" + std::string(id) + "')";
  };
  const std::string uveu = std::to_string(static_cast<int>(capledger::pathway::uveu));
  for (const auto& [sql, expected] : std::vector<std::pair<std::string, std::string>>{
           // AG: tier 2, capped, and without a line.
           {"INSERT INTO st_country_cap VALUES (" + country("AG") + ", 5000000, -1, 0)",
            "row no stored line writes, st_country_cap AG, key " + country("AG") +
                ": running total 5000000, crossing line -1, total at the crossing 0\n"},
           {"INSERT INTO st_nveu VALUES (" + entity("E2") + " * 65536 + " + country("AE") +
                ", 1000000, -1, 0)",
            "row no stored line writes, st_nveu (E2, AE), key "},
           {"INSERT INTO st_lpp_annual VALUES (" + entity("E3") + " * 16384 + 2026, 1000000, -1, 0)",
            "row no stored line writes, st_lpp_annual (E3, 2026), key "},
           // The code the next new entity gets: its LPP lines of 2025 would add to this total.
           {"INSERT INTO st_lpp_annual VALUES ((SELECT entities FROM state_info) * 16384 + 2025, 1000000, "
            "-1, 0)",
            "row no stored line writes, st_lpp_annual (entity code 5, 2025), key 83945: running total "
            "1000000"},
           {"INSERT INTO st_order VALUES ((SELECT orders FROM state_info), 'O-NEVER', 1000000, -1, 0)",
            "row no stored line writes, st_order 'O-NEVER', code 3: running total 1000000, crossing line -1"},
           {"INSERT INTO st_unauth VALUES ((" + entity("E5") + " * 65536 + " + country("AE") + ") * 8 + " +
                uveu + ", (SELECT MIN(line) FROM st_line), 15832, 0)",
            "row no stored line writes, st_unauth (E5, AE, UVEU), key "},
           {"UPDATE st_order SET a = 1000000 WHERE text = 'O9'",
            "limit total, LPP order O9: replay 0, running state 1000000\n"}}) {
    fs::copy_file(at("l.db"), at("whole.db"), fs::copy_options::overwrite_existing);
    alter(sql);
    std::string said;
    EXPECT_EQ(cli("ledger verify l.db", &said), 1) << sql << ": " << said << stderr_text();
    // The first finding: no report file differs.
    EXPECT_NE(said.find("running state: DISAGREES with a replay of 11 stored line(s):\n  " + expected),
              std::string::npos)
        << sql << ": " << said;
    fs::copy_file(at("whole.db"), at("l.db"), fs::copy_options::overwrite_existing);
  }
  EXPECT_EQ(cli("ledger verify l.db"), 0);
}

// Verify's text is for people: a stored value shows escaped where quoted, a stored path (no
// value builder quotes it) passes stdout's guard. Here a stray order named with ESC [2K, U+009B,
// U+202E, a backslash and a byte that is no UTF-8, then a stored line's chip so named under a
// file record whose path holds ESC [2K and U+202E.
TEST_F(verify_ledger_test, VerifyTextEscapesStoredText)
{
  const std::string hostile = "char(27) || '[2K' || char(155) || char(8238) || '\\' || CAST(X'FF' AS TEXT)";
  const std::string shown   = "\\x1b[2K\\u009b\\u202e\\\\\\xff";
  fs::copy_file(at("l.db"), at("whole.db"), fs::copy_options::overwrite_existing);
  alter("INSERT INTO st_order VALUES ((SELECT orders FROM state_info), 'O' || " + hostile +
        ", 1000000, -1, 0)");
  std::string said;
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said << stderr_text();
  EXPECT_NE(said.find("\n  row no stored line writes, st_order 'O" + shown + "', code 3: "),
            std::string::npos)
      << said;
  fs::copy_file(at("whole.db"), at("l.db"), fs::copy_options::overwrite_existing);

  alter("UPDATE files SET path = 'n' || char(27) || '[2K' || char(8238) || '.csv' WHERE file_id = 1");
  alter("UPDATE lines SET chip = 'H' || " + hostile + " WHERE seq = 1");
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said << stderr_text();
  EXPECT_NE(said.find("stored lines: the replay stops: n\\x1b[2K\\u202e.csv:2: UNKNOWN_CHIP: 'H" + shown +
                      "' is not in the chips table"),
            std::string::npos)
      << said;
}

TEST_F(ledger_test, TenNightsGiveTheReportOfAllFiles)
{
  const auto nights = generated_nights(6000, 10, 11);
  ASSERT_EQ(cli("ledger init l.db"), 0) << stderr_text();
  for (std::size_t n = 0; n < nights.size(); ++n) {
    const std::string entities = n == 0 ? " --entities entities.csv" : "";
    ASSERT_EQ(cli("ledger ingest l.db " + nights[n] + entities), 0) << stderr_text();
  }
  const std::string all = join(nights, nights.size());
  for (const std::string flags : {"", " --as-of 2026-03-31 --warn-at 0.5,0.75"}) {
    const int expected = cli("report" + all + " --entities entities.csv --backend cpu --out full" + flags);
    ASSERT_NE(expected, 2) << stderr_text();
    EXPECT_EQ(cli("ledger report l.db --backend cpu --out nightly" + flags), expected) << stderr_text();
    expect_same_outputs(at("full"), at("nightly"));
  }
  std::string from_report, from_ledger;
  cli("report" + all + " --entities entities.csv --backend cpu --format json", &from_report);
  cli("ledger report l.db --backend cpu --format json", &from_ledger);
  EXPECT_EQ(from_ledger, from_report);
}

TEST_F(ledger_test, BackDatedLinesGiveTheSameReport)
{
  auto nights = generated_nights(3000, 5, 12);
  // The last night also carries lines dated before every earlier night (late-booked shipments).
  std::string late = read_text(at(nights[0]));
  const std::string header = late.substr(0, late.find('\n') + 1);
  std::istringstream first(late.substr(header.size()));
  std::string kept = header, moved, line;
  for (int i = 0; std::getline(first, line); ++i) { (i % 7 == 0 ? moved : kept) += line + "\n"; }
  write_text(at(nights[0]), kept);
  write_text(at(nights[4]), read_text(at(nights[4])) + moved);

  ASSERT_EQ(cli("ledger init l.db"), 0);
  for (const auto& night : nights) { ASSERT_EQ(cli("ledger ingest l.db " + night + " --entities entities.csv"), 0) << stderr_text(); }
  const int expected = cli("report" + join(nights, nights.size()) + " --entities entities.csv --backend cpu --out full");
  EXPECT_EQ(cli("ledger report l.db --backend cpu --out nightly"), expected);
  expect_same_outputs(at("full"), at("nightly"));
}

TEST_F(ledger_test, SameFileTwiceIsRefusedAndChangesNothing)
{
  const auto nights = generated_nights(500, 2, 13);
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db " + nights[0]), 0);
  std::string before, after;
  cli("ledger report l.db --backend cpu --format json", &before);
  // One good file and one repeat in the same night: all or nothing.
  EXPECT_EQ(cli("ledger ingest l.db " + nights[1] + " " + nights[0]), 2);
  EXPECT_NE(stderr_text().find(nights[0] + ":2:1: DUPLICATE_ID"), std::string::npos) << stderr_text();
  EXPECT_NE(stderr_text().find("was already used at " + nights[0] + ":2"), std::string::npos) << stderr_text();
  cli("ledger report l.db --backend cpu --format json", &after);
  EXPECT_EQ(after, before);
  EXPECT_NE(after.find("\"read\": 250"), std::string::npos);
}

/// A file fed twice is a DUPLICATE_ID line by line, also where its lines' tpp would take the
/// ledger's sum of |tpp| past 2^63 - 1 (they said TPP_OVERFLOW, which a filter on the reason missed).
TEST_F(ledger_test, SameFileTwiceIsADuplicateEvenWhereItsTppWouldOverflow)
{
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity,tpp_per_unit\n"
             "L1,2025-03-01,E1,AE,X,1,5000000000000000000\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv"), 0) << stderr_text();
  EXPECT_EQ(cli("ledger ingest l.db night.csv"), 2);
  EXPECT_NE(
      stderr_text().find("night.csv:2:1: DUPLICATE_ID: shipment id 'L1' was already used at night.csv:2"),
      std::string::npos)
      << stderr_text();
}

TEST_F(ledger_test, SameFileTwiceWithRejectsCountsOnce)
{
  const auto nights = generated_nights(400, 1, 14);
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db " + nights[0]), 0);
  ASSERT_EQ(cli("ledger ingest l.db " + nights[0] + " --rejects rejects.csv"), 0) << stderr_text();
  const std::string rejects = read_text(at("rejects.csv"));
  EXPECT_EQ(std::count(rejects.begin(), rejects.end(), '\n'), 401);  // header + every line
  EXPECT_NE(rejects.find("DUPLICATE_ID"), std::string::npos);
  // The ledger is what one report over the file fed twice (with --rejects) says: counted once.
  const int expected = cli("report " + nights[0] + " " + nights[0] + " --rejects r2.csv --backend cpu --out full");
  EXPECT_EQ(cli("ledger report l.db --backend cpu --out nightly"), expected);
  expect_same_outputs(at("full"), at("nightly"));
  EXPECT_NE(read_text(at("nightly") / "summary.json").find("\"rejected\": 400"), std::string::npos);
}

// A night with more rejected lines than --max-rejects stores nothing (its re-run adds its lines,
// not a DUPLICATE_ID for each), its rejects file ending with the line past the limit, as report's.
TEST_F(ledger_test, IngestPastMaxRejectsStoresNothing)
{
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity\n"
             "S1,2025-03-01,E1,AE,H100-SXM,10\n"
             "S2,2025-13-01,E1,AE,H100-SXM,5\n"
             "S3,2025-03-02,E1,AE,H100-SXM,0\n"
             "S4,2025-03-03,E2,IN,H100-SXM,7\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  EXPECT_EQ(cli("ledger ingest l.db night.csv --rejects stopped.csv --max-rejects 1"), 2);
  EXPECT_NE(stderr_text().find("more than 1 rejected lines (--max-rejects); last: night.csv:4:"),
            std::string::npos)
      << stderr_text();
  EXPECT_EQ(cli("report night.csv --backend cpu --rejects full.csv --max-rejects 1"), 2);
  EXPECT_EQ(read_text(at("stopped.csv")), read_text(at("full.csv")));
  ASSERT_EQ(cli("ledger ingest l.db night.csv --rejects again.csv"), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("4 read, 2 added, 2 rejected; ledger holds 2 line(s)"), std::string::npos)
      << stderr_text();
}

// A replay takes each file's rejects from one scan of them all, file by file: files without
// rejects between files with them, several nights, and reject rows of no file (a hand edit: file
// ids 0 and 99), which neither path lists, give the rejects file `report` writes over the files.
TEST_F(ledger_test, ReplayTakesEachFilesRejectsFromOneScan)
{
  const std::string head = "shipment_id,date,entity,country,chip,quantity\n";
  write_text(at("a.csv"), head + "A1,2025-03-01,E1,AE,H100-SXM,10\nA2,2025-13-01,E1,AE,H100-SXM,5\n");
  write_text(at("b.csv"), head + "B1,2025-03-02,E1,AE,H100-SXM,10\n");
  write_text(at("c.csv"), head + "C1,2025-03-03,E1,XX,H100-SXM,1\nC2,2025-03-03,E2,IN,H100-SXM,7\n" +
                              "C3,2025-03-03,E2,IN,H100-SXM,x\n");
  write_text(at("d.csv"), head + "D1,2025-03-04,E3,IN,H100-SXM,7\nA1,2025-03-04,E3,IN,H100-SXM,7\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db a.csv b.csv c.csv --rejects r1.csv"), 0) << stderr_text();
  ASSERT_EQ(cli("ledger ingest l.db d.csv --rejects r2.csv"), 0) << stderr_text();
  alter(
      "INSERT INTO rejects(file_id, line, col, reason, detail, raw) VALUES (0, 9, 1, 'X', 'x', 'x'), "
      "(99, 9, 1, 'X', 'x', 'x')");
  const int expected     = cli("report a.csv b.csv c.csv d.csv --backend cpu --out full --rejects full.csv");
  const std::string full = read_text(at("full.csv"));
  EXPECT_EQ(std::count(full.begin(), full.end(), '\n'), 5);  // header and A2, C1, C3, D's A1
  for (const std::string path : {"", " --replay"}) {
    SCOPED_TRACE("ledger report" + path);
    fs::remove_all(at("mine"));
    EXPECT_EQ(cli("ledger report l.db" + path + " --backend cpu --out mine --rejects mine.csv"), expected)
        << stderr_text();
    expect_same_outputs(at("full"), at("mine"));
    EXPECT_EQ(read_text(at("mine.csv")), full);
  }
}

// Without `--rejects`, `ledger report` reads only the stored rejects it explains on stderr and
// counts the rest in SQL: summary.json and stderr (the first ten, "... and 5 more", "15 line(s)
// rejected") as `report` over the same files gives them, on both paths; a reject row of no file
// (a hand edit) is counted by neither.
TEST_F(ledger_test, ReportWithoutRejectsFileCountsTheStoredRejectsItDoesNotRead)
{
  const std::string head = "shipment_id,date,entity,country,chip,quantity\n";
  std::string a = head, b = head;
  for (int i = 0; i < 9; ++i) { a += "A" + std::to_string(i) + ",2025-03-01,E1,XX,H100-SXM,1\n"; }
  a += "A9,2025-03-01,E1,AE,H100-SXM,10\n";
  for (int i = 0; i < 6; ++i) { b += "B" + std::to_string(i) + ",2025-03-02,E1,AE,H100-SXM,x\n"; }
  b += "B9,2025-03-02,E2,IN,H100-SXM,7\n";
  write_text(at("a.csv"), a);
  write_text(at("b.csv"), b);
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db a.csv --rejects r1.csv"), 0) << stderr_text();
  ASSERT_EQ(cli("ledger ingest l.db b.csv --rejects r2.csv"), 0) << stderr_text();
  alter("INSERT INTO rejects(file_id, line, col, reason, detail, raw) VALUES (99, 9, 1, 'X', 'x', 'x')");
  const auto noted = [](const std::string& said) {
    const auto from = said.find("capledger: rejected ");
    const auto to   = said.find(" line(s) rejected");
    return from == std::string::npos || to == std::string::npos ? said : said.substr(from, to - from);
  };
  const int expected       = cli("report a.csv b.csv --backend cpu --out full --rejects full.csv");
  const std::string report = noted(stderr_text());
  ASSERT_NE(report.find("capledger: ... and 5 more\ncapledger: 15"), std::string::npos) << report;
  for (const std::string path : {"", " --replay"}) {
    SCOPED_TRACE("ledger report" + path);
    fs::remove_all(at("mine"));
    EXPECT_EQ(cli("ledger report l.db" + path + " --backend cpu --out mine"), expected) << stderr_text();
    expect_same_outputs(at("full"), at("mine"));
    EXPECT_EQ(noted(stderr_text()), report);
  }
}

TEST_F(ledger_test, ReportCountsStoredRejectsAgainstMaxRejectsAsReportDoes)
{
  // Two bad lines, kept aside at ingest: `--max-rejects 1` stops `ledger report` (both paths) as it
  // stops `report` over the same file, with the same rejects file and no output directory;
  // `--max-rejects 2` lets both run to the same outputs.
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity\n"
             "S1,2025-03-01,E1,AE,H100-SXM,10\n"
             "S2,2025-13-01,E1,AE,H100-SXM,5\n"
             "S3,2025-03-02,E1,AE,H100-SXM,0\n"
             "S4,2025-03-03,E2,IN,H100-SXM,7\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv --rejects ingested.csv"), 0) << stderr_text();
  EXPECT_EQ(cli("report night.csv --backend cpu --out full --rejects full.csv --max-rejects 1"), 2);
  const std::string stop = stderr_text();
  EXPECT_NE(stop.find("more than 1 rejected lines (--max-rejects); last: night.csv:4:"), std::string::npos)
      << stop;
  for (const std::string path : {"", " --replay"}) {
    SCOPED_TRACE("ledger report" + path);
    EXPECT_EQ(
        cli("ledger report l.db" + path + " --backend cpu --out mine --rejects mine.csv --max-rejects 1"), 2);
    EXPECT_NE(stderr_text().find(stop.substr(stop.find("more than"))), std::string::npos) << stderr_text();
    EXPECT_FALSE(fs::exists(at("mine")));
    EXPECT_EQ(read_text(at("mine.csv")), read_text(at("full.csv")));
  }
  const int expected = cli("report night.csv --backend cpu --out full --rejects full.csv --max-rejects 2");
  for (const std::string path : {"", " --replay"}) {
    SCOPED_TRACE("ledger report" + path);
    fs::remove_all(at("mine"));
    EXPECT_EQ(
        cli("ledger report l.db" + path + " --backend cpu --out mine --rejects mine.csv --max-rejects 2"),
        expected)
        << stderr_text();
    expect_same_outputs(at("full"), at("mine"));
    EXPECT_EQ(read_text(at("mine.csv")), read_text(at("full.csv")));
  }
}

TEST_F(ledger_test, IngestKilledAtAnyMomentLeavesBeforeOrAfter)
{
  const auto nights = generated_nights(120000, 8, 15);
  ASSERT_EQ(cli("ledger init l.db"), 0);
  // The state of the ledger after k nights, as one report over those files sees it.
  std::vector<std::string> expected_state;
  for (std::size_t k = 0; k <= nights.size(); ++k) {
    std::string json;
    if (k == 0) {
      cli("ledger report l.db --backend cpu --format json", &json);
    } else {
      cli("report" + join(nights, k) + " --backend cpu --format json", &json);
    }
    expected_state.push_back(json);
  }
  // Calibrate: how long one uninterrupted ingest of a night takes here, so kills spread over it.
  ASSERT_EQ(cli("ledger init calibration.db"), 0);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(cli("ledger ingest calibration.db " + nights[0]), 0);
  const auto ingest_ms = std::max<long>(
    20, static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count()));
  std::mt19937 random(20250113);
  std::size_t done = 0;  // nights committed
  int kills = 0, landed_after = 0;
  for (int iteration = 0; iteration < 20 && done < nights.size(); ++iteration) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      // Same relative names as the expected reports, so that summary.json's inputs agree.
      if (::chdir(dir_.c_str()) != 0) { ::_exit(126); }
      const std::string db = "l.db", file = nights[done];
      const int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      ::execl(CAPLEDGER_CLI_PATH, CAPLEDGER_CLI_PATH, "ledger", "ingest", db.c_str(), file.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Delays from "before SQLite opens" to around the commit (scheduling noise pushes some past it).
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<long>(random() % static_cast<unsigned long>(ingest_ms))));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    kills += WIFSIGNALED(status) ? 1 : 0;
    std::string state;
    cli("ledger report l.db --backend cpu --format json", &state);
    if (state == expected_state[done + 1]) {
      ++done;
      ++landed_after;
    } else {
      ASSERT_EQ(state, expected_state[done]) << "iteration " << iteration << ": neither before nor after";
    }
  }
  EXPECT_GT(kills, 0);
  // The next run succeeds and the ledger ends as one report over every night.
  for (; done < nights.size(); ++done) { ASSERT_EQ(cli("ledger ingest l.db " + nights[done]), 0) << stderr_text(); }
  std::string final_state;
  cli("ledger report l.db --backend cpu --format json", &final_state);
  EXPECT_EQ(final_state, expected_state.back());
  std::cout << "[ crash loop: " << kills << " kills, " << landed_after << " landed after commit ]\n";
}

/// A tiny ledger whose every figure is checked by hand. H100-SXM is 15832 TPP per unit; AE and BR
/// are tier 2 (cap 790,000,000), IN tier 2, CN tier 3, DE tier 1; NVEU cap 633,000,000 in 2025;
/// LPP 26,900,000 per order and per consignee-year.
class tiny_ledger_test : public ledger_test {
 protected:
  void SetUp() override
  {
    ledger_test::SetUp();
    write_text(at("entities.csv"), "entity,hq_country,status,nveu_countries\nE2,US,NVEU,IN\n");
    write_text(at("night.csv"),
               "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
               "L1,2025-03-01,E1,AE,H100-SXM,40000,LICENSE,\n"   // 633,280,000 of AE's cap
               "L2,2025-03-01,E2,IN,H100-SXM,30000,NVEU,\n"      // 474,960,000 of E2/IN's NVEU cap
               "L3,2025-03-01,E3,BR,H100-SXM,1000,LPP,O1\n");    // 15,832,000 of order O1 and E3/2025
    ASSERT_EQ(cli("ledger init l.db"), 0);
    ASSERT_EQ(cli("ledger ingest l.db night.csv --entities entities.csv"), 0) << stderr_text();
  }
};

TEST_F(tiny_ledger_test, CheckAnswersPerProposedLine)
{
  write_text(at("proposed.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "P1,2025-03-02,E1,AE,H100-SXM,9000,LICENSE,\n"   // 142,488,000: fits 156,720,000
             "P2,2025-03-02,E4,AE,H100-SXM,1000,LICENSE,\n"   // 15,832,000 > 14,232,000 left
             "P3,2025-03-02,E2,IN,H100-SXM,10000,NVEU,\n"     // 158,320,000 > 158,040,000 left
             "P4,2025-03-02,E3,BR,H100-SXM,700,LPP,O1\n"      // 11,082,400 > 11,068,000 left (order and year)
             "P5,2025-03-02,E3,BR,H100-SXM,100,LPP,O2\n"      // new order fits; the year is already over
             "P6,2025-03-02,E5,CN,H100-SXM,1,LICENSE,\n"      // tier 3
             "P7,2025-03-02,E1,DE,H100-SXM,5,LICENSE,\n");    // tier 1: nothing applies
  std::string csv;
  EXPECT_EQ(cli("check l.db --proposed proposed.csv", &csv), 1) << stderr_text();
  EXPECT_EQ(csv,
            "line,shipment_id,date,entity,country,pathway,tpp,rule,limit_tpp,consumed_before_tpp,headroom_before_tpp,status\n"
            "1,P1,2025-03-02,E1,AE,LICENSE,142488000,COUNTRY_CAP_EXCEEDED,790000000,633280000,156720000,ok\n"
            "2,P2,2025-03-02,E4,AE,LICENSE,15832000,COUNTRY_CAP_EXCEEDED,790000000,775768000,14232000,breach\n"
            "3,P3,2025-03-02,E2,IN,NVEU,158320000,NVEU_CAP_EXCEEDED,633000000,474960000,158040000,breach\n"
            "4,P4,2025-03-02,E3,BR,LPP,11082400,LPP_ORDER_LIMIT,26900000,15832000,11068000,breach\n"
            "4,P4,2025-03-02,E3,BR,LPP,11082400,LPP_ANNUAL_LIMIT,26900000,15832000,11068000,breach\n"
            "5,P5,2025-03-02,E3,BR,LPP,1583200,LPP_ORDER_LIMIT,26900000,0,26900000,ok\n"
            "5,P5,2025-03-02,E3,BR,LPP,1583200,LPP_ANNUAL_LIMIT,26900000,26914400,-14400,breach\n"
            "6,P6,2025-03-02,E5,CN,LICENSE,15832,PROHIBITED_DESTINATION,,,,breach\n"
            "7,P7,2025-03-02,E1,DE,LICENSE,79160,,,,,ok\n");

  // Read-only: the ledger is unchanged, and an id already in the ledger is refused.
  std::string state;
  cli("ledger report l.db --backend cpu --format json", &state);
  EXPECT_NE(state.find("\"read\": 3"), std::string::npos);
  write_text(at("again.csv"), "shipment_id,date,entity,country,chip,quantity\nL2,2025-03-02,E1,DE,H100-SXM,1\n");
  EXPECT_EQ(cli("check l.db --proposed again.csv"), 2);
  EXPECT_NE(stderr_text().find("again.csv:2:1: DUPLICATE_ID"), std::string::npos) << stderr_text();
}

// A night dated one day before the state's latest in-window line is back-dated: the state is
// rebuilt, and the running total takes it before that line. AE: L1 03-01 633,280,000; N3 03-02
// 142,488,000 (775,768,000); N2 03-03 15,832,000 (791,600,000 > 790,000,000: N2 crosses).
// Extended in ingest order instead, N3 would be the crossing line.
TEST_F(tiny_ledger_test, NightOneDayBeforeTheLatestLineRebuildsTheState)
{
  const std::string header = "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n";
  write_text(at("night2.csv"), header + "N2,2025-03-03,E1,AE,H100-SXM,1000,LICENSE,\n");
  ASSERT_EQ(cli("ledger ingest l.db night2.csv"), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("running state extended"), std::string::npos) << stderr_text();
  write_text(at("night3.csv"), header + "N3,2025-03-02,E1,AE,H100-SXM,9000,LICENSE,\n");
  ASSERT_EQ(cli("ledger ingest l.db night3.csv"), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("running state rebuilt from every line"), std::string::npos) << stderr_text();
  EXPECT_EQ(incremental_report_file("", 1, "findings.csv"),
            "severity,rule,entity,country,pathway,order_id,year,date,shipment_id,value,limit\n"
            "violation,COUNTRY_CAP_EXCEEDED,,AE,,,,2025-03-03,N2,791600000,790000000\n");
}

// README: lines before counting_starts only change totals, which do not depend on order, so a
// night of them dated before the ledger's latest line extends the state (no rebuild). AE: L1
// 633,280,000 in the window, W1 (2024-06-01) 500 x 15,832 = 7,916,000 before it; cap-pathway tpp
// 633,280,000 of 790,000,000 = 80.16%.
TEST_F(tiny_ledger_test, NightBeforeTheWindowExtendsTheState)
{
  write_text(at("night2.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "W1,2024-06-01,E1,AE,H100-SXM,500,LICENSE,\n");
  ASSERT_EQ(cli("ledger ingest l.db night2.csv"), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("running state extended"), std::string::npos) << stderr_text();
  const std::string by_country = incremental_report_file("", 0, "by_country.csv");
  EXPECT_NE(by_country.find("\nAE,2,2,40500,641196000,40500.00,633280000,790000000,80.16,,\n"),
            std::string::npos)
      << by_country;
}

// SPEC §4: ACA of a datacenter chip is UNAUTHORIZED_PATHWAY, whatever chip the table lists first.
// Under a chips table whose first row (code 0) is not a datacenter chip, the running state still
// names A1 (2 x H100-SXM = 31,664 tpp) and not A2 (RTX-4090, not a datacenter chip).
TEST_F(ledger_test, StoredAcaFindingsDoNotDependOnTheFirstChipOfTheTable)
{
  write_text(at("chips.csv"),
             "chip,vendor,tpp,performance_density,datacenter\n"
             "RTX-4090,NVIDIA,5285,1.0,0\nH100-SXM,NVIDIA,15832,19.45,1\n");
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "A1,2025-03-01,E1,IN,H100-SXM,2,ACA,\n"
             "A2,2025-03-02,E1,IN,RTX-4090,1,ACA,\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv --chips chips.csv"), 0) << stderr_text();
  EXPECT_EQ(incremental_report_file(" --chips chips.csv", 1, "findings.csv"),
            "severity,rule,entity,country,pathway,order_id,year,date,shipment_id,value,limit\n"
            "violation,UNAUTHORIZED_PATHWAY,E1,IN,ACA,,,2025-03-01,A1,31664,\n");
}

// A rejects file that cannot be written stops the night before anything of it is stored (it was
// written after the commit: the ingest exited 2 with the night stored, and its re-run found every
// line a duplicate).
TEST_F(tiny_ledger_test, IngestWhoseRejectsFileCannotBeWrittenStoresNothing)
{
  write_text(at("night2.csv"),
             "shipment_id,date,entity,country,chip,quantity\nN1,2025-03-05,E1,DE,H100-SXM,1\n"
             "N2,2025-03-05,E1,XX,H100-SXM,1\n");
  // procfs: its missing folder cannot be made, not even by root.
  EXPECT_EQ(cli("ledger ingest l.db night2.csv --rejects /proc/no-such-folder/rejects.csv"), 2);
  EXPECT_NE(stderr_text().find("/proc/no-such-folder/rejects.csv"), std::string::npos) << stderr_text();
  EXPECT_NE(stderr_text().find("; nothing of the night is stored\n"), std::string::npos) << stderr_text();
  ASSERT_EQ(cli("ledger ingest l.db night2.csv --rejects rejects.csv"), 0) << stderr_text();
  // N1 added, not a duplicate of a stored N1; N2 rejected for its country.
  EXPECT_NE(stderr_text().find("2 read, 1 added, 1 rejected"), std::string::npos) << stderr_text();
  EXPECT_NE(read_text(at("rejects.csv")).find("UNKNOWN_COUNTRY"), std::string::npos);
}

/// A stream buffer that, at its first write, says so and waits until released: it stops a command
/// in-process where it writes its first diagnostic.
class pausing_buffer : public std::stringbuf {
 public:
  std::promise<void> paused;
  std::promise<void> release;

 protected:
  std::streamsize xsputn(const char* text, std::streamsize size) override
  {
    pause_once();
    return std::stringbuf::xsputn(text, size);
  }
  int_type overflow(int_type c) override
  {
    pause_once();
    return std::stringbuf::overflow(c);
  }

 private:
  void pause_once()
  {
    if (done_) { return; }
    done_ = true;
    paused.set_value();
    release.get_future().wait();
  }
  bool done_ = false;
};

// A night (a new line and an entities file that revokes E2's NVEU authorization) that commits while
// `ledger report` runs: the report is of the ledger before it or after it. It read the stored
// entities file and the state through two connections, and a commit between them (paused here at
// the backend's line, written between those reads) gave the new line without its finding. Also
// with the ledger in WAL mode (another tool's doing), where each connection sees the latest commit:
// ingest puts it back into rollback-journal mode first, which waits for the report's lock.
class ledger_snapshot_test : public tiny_ledger_test, public ::testing::WithParamInterface<bool> {};

TEST_P(ledger_snapshot_test, ReportDuringAnIngestIsOfOneCommit)
{
  write_text(at("revoked.csv"), "entity,hq_country,status,nveu_countries\nE2,US,NONE,\n");
  if (GetParam()) { alter("PRAGMA journal_mode = WAL"); }  // as another tool may leave it
  write_text(
      at("night2.csv"),
      "shipment_id,date,entity,country,chip,quantity,pathway\nL4,2025-03-02,E2,IN,H100-SXM,100,NVEU\n");
  capledger::report_options options;
  options.format = "json";
  const auto db  = at("l.db").string();
  const auto run = [&](const std::string& path) {
    std::ostringstream out, diagnostics;
    capledger::run_ledger_report(path, options, out, diagnostics, false);
    return out.str();
  };
  const std::string before = run(db);
  fs::copy_file(at("l.db"), at("after.db"));
  ASSERT_EQ(cli("ledger ingest after.db night2.csv --entities revoked.csv"), 0) << stderr_text();
  const std::string after = run(at("after.db").string());
  ASSERT_NE(after.find("UNAUTHORIZED_PATHWAY"), std::string::npos);

  pausing_buffer buffer;
  std::ostream diagnostics(&buffer);
  std::ostringstream out;
  std::thread report([&] { capledger::run_ledger_report(db, options, out, diagnostics, false); });
  buffer.paused.get_future().wait();
  auto ingest = std::async(std::launch::async,
                           [&] { return cli("ledger ingest l.db night2.csv --entities revoked.csv"); });
  // Unfixed, the ingest commits at once; fixed, it waits for the report's lock (10 s at most).
  ingest.wait_for(std::chrono::seconds(2));
  buffer.release.set_value();
  report.join();
  EXPECT_EQ(ingest.get(), 0) << stderr_text();
  EXPECT_TRUE(out.str() == before || out.str() == after) << out.str();
  EXPECT_EQ(run(db), after);
  capledger::detail::sql_connection check(db, capledger::detail::sql_connection::mode::read_only);
  capledger::detail::sql_statement mode(check, "PRAGMA journal_mode");
  ASSERT_TRUE(mode.step());
  EXPECT_EQ(mode.text(0), "delete");
}

INSTANTIATE_TEST_SUITE_P(RollbackAndWal, ledger_snapshot_test, ::testing::Bool());

// An entities file given through stdin (or a pipe) is read once: validated, and stored as read
// (a second read, for the stored copy, found it empty and refused the night).
TEST_F(tiny_ledger_test, IngestReadsTheEntitiesFileOnce)
{
  const std::string entities = "entity,hq_country,status,nveu_countries\nE2,US,NVEU,IN;AE\n";
  write_text(at("entities2.csv"), entities);
  write_text(at("night2.csv"),
             "shipment_id,date,entity,country,chip,quantity\nN1,2025-03-05,E1,DE,H100-SXM,1\n");
  ASSERT_EQ(cli("ledger ingest l.db night2.csv --entities - < entities2.csv"), 0) << stderr_text();
  capledger::detail::sql_connection db(at("l.db").string(),
                                       capledger::detail::sql_connection::mode::read_only);
  capledger::detail::sql_statement stored(db, "SELECT path, content FROM entities");
  ASSERT_TRUE(stored.step());
  EXPECT_EQ(stored.text(0), "-");
  EXPECT_EQ(stored.text(1), entities);
}

// Proposed lines weigh on one another in SPEC order (date, then position), as once ingested: a
// return listed first but dated later does not make room for the line before it (taken in file
// order, Q2 fitted: 633,280,000 - 79,160,000 + 158,320,000 = 712,440,000; ingested, Q2 crosses at
// 791,600,000). Rows stay in file order.
TEST_F(tiny_ledger_test, CheckWeighsProposedLinesInDateOrder)
{
  write_text(at("proposed.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "Q1,2025-04-05,E1,AE,H100-SXM,-5000,LICENSE,\n"
             "Q2,2025-04-01,E1,AE,H100-SXM,10000,LICENSE,\n");
  std::string csv;
  EXPECT_EQ(cli("check l.db --proposed proposed.csv", &csv), 1) << stderr_text();
  EXPECT_EQ(
      csv,
      "line,shipment_id,date,entity,country,pathway,tpp,rule,limit_tpp,consumed_before_tpp,headroom_before_"
      "tpp,status\n"
      "1,Q1,2025-04-05,E1,AE,LICENSE,-79160000,COUNTRY_CAP_EXCEEDED,790000000,791600000,-1600000,ok\n"
      "2,Q2,2025-04-01,E1,AE,LICENSE,158320000,COUNTRY_CAP_EXCEEDED,790000000,633280000,156720000,breach\n");
  // Both dated after the ledger's lines: the running state answers.
  EXPECT_NE(stderr_text().find("check: running state of 3 line(s)"), std::string::npos) << stderr_text();
}

// A proposed line dated before some of the ledger's lines is weighed where ingest would put it:
// after the ledger's lines of its date and before its later ones, which then weigh after it.
// Ledger (AE's LICENSE lines by date): L1 03-01 +633,280,000; M1 05-01 -158,320,000; M3 09-01
// +142,488,000 (617,448,000 in all); E2/IN's NVEU: L2 03-01 474,960,000, M2 2026-02-01 949,920,000
// (the 2026 phase cap is 1,699,000,000).
TEST_F(tiny_ledger_test, CheckWeighsBackDatedLinesAmongTheLedgersByDate)
{
  write_text(at("night2.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "M1,2025-05-01,E1,AE,H100-SXM,-10000,LICENSE,\n"
             "M3,2025-09-01,E4,AE,H100-SXM,9000,LICENSE,\n"
             "M2,2026-02-01,E2,IN,H100-SXM,60000,NVEU,\n"
             "M4,2025-05-01,E5,BR,H100-SXM,-20000,LICENSE,\n"
             "M5,2025-08-01,E5,BR,H100-SXM,49000,LICENSE,\n");
  ASSERT_EQ(cli("ledger ingest l.db night2.csv"), 0) << stderr_text();
  // B1 crosses AE's cap on its own date (633,280,000 + 158,320,000), before M1's return: weighed
  // after every ledger line it seemed to fit (617,448,000 + 158,320,000). B2 fits the 2025 NVEU
  // phase (474,960,000 + 79,160,000), and M2 the 2026 one after it: weighed after M2 it seemed to
  // breach the 2025 cap.
  write_text(at("early.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "B1,2025-04-01,E1,AE,H100-SXM,10000,LICENSE,\n"
             "B2,2025-06-01,E2,IN,H100-SXM,5000,NVEU,\n");
  const std::string early =
      "line,shipment_id,date,entity,country,pathway,tpp,rule,limit_tpp,consumed_before_tpp,headroom_before_"
      "tpp,status\n"
      "1,B1,2025-04-01,E1,AE,LICENSE,158320000,COUNTRY_CAP_EXCEEDED,790000000,633280000,156720000,breach\n"
      "2,B2,2025-06-01,E2,IN,NVEU,79160000,NVEU_CAP_EXCEEDED,633000000,474960000,158040000,ok\n";
  // D1 comes after M1, dated the same day (474,960,000 before it) and leaves M3 within the cap.
  // C1 fits on its date (474,975,832 + 174,152,000) but M3 then crosses (791,615,832): a breach.
  // G1 (332,472,000) leaves BR within its cap after M4's return (15,832,000), not after M5
  // (791,600,000): a breach too.
  write_text(at("later.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "C1,2025-06-01,E1,AE,H100-SXM,11000,LICENSE,\n"
             "D1,2025-05-01,E1,AE,H100-SXM,1,LICENSE,\n"
             "G1,2025-04-01,E5,BR,H100-SXM,21000,LICENSE,\n");
  const std::string later =
      "line,shipment_id,date,entity,country,pathway,tpp,rule,limit_tpp,consumed_before_tpp,headroom_before_"
      "tpp,status\n"
      "1,C1,2025-06-01,E1,AE,LICENSE,174152000,COUNTRY_CAP_EXCEEDED,790000000,474975832,315024168,breach\n"
      "2,D1,2025-05-01,E1,AE,LICENSE,15832,COUNTRY_CAP_EXCEEDED,790000000,474960000,315040000,ok\n"
      "3,G1,2025-04-01,E5,BR,LICENSE,332472000,COUNTRY_CAP_EXCEEDED,790000000,0,790000000,breach\n";
  for (const char* replay : {"", " --replay"}) {
    std::string csv;
    EXPECT_EQ(cli(std::string("check l.db --proposed early.csv") + replay, &csv), 1) << stderr_text();
    EXPECT_EQ(csv, early) << replay;
    EXPECT_EQ(cli(std::string("check l.db --proposed later.csv") + replay, &csv), 1) << stderr_text();
    EXPECT_EQ(csv, later) << replay;
    // The breaches with room on their own dates name the later line the total passes the cap on
    // (G1's the second after it: M4's return leaves BR under).
    for (const char* said : {"line 1 (C1): COUNTRY_CAP_EXCEEDED: with it, the running total passes the limit "
                             "on the ledger's later line M3 (2025-09-01)\n",
                             "line 3 (G1): COUNTRY_CAP_EXCEEDED: with it, the running total passes the limit "
                             "on the ledger's later line M5 (2025-08-01)\n"}) {
      EXPECT_NE(stderr_text().find(said), std::string::npos) << replay << stderr_text();
    }
    EXPECT_EQ(stderr_text().find("line 2 (D1)"), std::string::npos) << stderr_text();
  }
  // Without --replay: the running state's final totals and the stored lines dated after the
  // earliest proposed line (M1, M3, M2, M4, M5), not a replay of every line.
  cli("check l.db --proposed later.csv");
  EXPECT_NE(stderr_text().find(
                "check: running state of 8 line(s), and the 5 stored line(s) dated after 2025-04-01"),
            std::string::npos)
      << stderr_text();
}

// Many back-dated proposed lines of one key, each with room on its date: each names the first
// later ledger line its running total passes the cap on, found by a search of the key's lines
// (a scan from each line's date cost lines x ledger lines). The ledger's AE total wanders with
// several peaks, so each added amount crosses on another line; expected by a scan here.
TEST_F(ledger_test, CheckNamesEachBackDatedLinesCrossingAmongManyLaterLines)
{
  std::string night = "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n";
  std::vector<std::int64_t> through;  // AE's running total in units after each ledger line
  std::vector<std::string> date;
  std::int64_t units = 0;  // at most 38,641 units (611,764,312 tpp): the ledger crosses nothing
  for (std::int64_t j = 0; j < 300; ++j) {
    // Up 0-599 units a line, with a fall every 25th line: peaks of different heights.
    const std::int64_t q = j % 25 == 24 ? -(j * 104729 % 9000) : (j * 7919 + 13) % 600;
    units += q;
    const std::string day = "2025-" + std::string(j < 224 ? "0" : "") + std::to_string(2 + j / 28) + "-" +
                            std::string(j % 28 < 9 ? "0" : "") + std::to_string(1 + j % 28);
    through.push_back(units);
    date.emplace_back(day);
    night += "L" + std::to_string(j) + "," + day + ",E1,AE,H100-SXM," + std::to_string(q) + ",LICENSE,\n";
  }
  write_text(at("night.csv"), night);
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv"), 0) << stderr_text();
  std::string proposed = "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n";
  for (int k = 1; k <= 60; ++k) {
    proposed += "P" + std::to_string(k) + ",2025-01-31,E9,AE,H100-SXM,800,LICENSE,\n";
  }
  write_text(at("proposed.csv"), proposed);
  const std::int64_t cap = 790000000, tpp = 15832;
  for (const char* replay : {"", " --replay"}) {
    std::set<std::size_t> named;  // the ledger lines named
    EXPECT_EQ(cli(std::string("check l.db --proposed proposed.csv") + replay), 1) << stderr_text();
    const std::string said = stderr_text();
    for (int k = 1; k <= 60; ++k) {
      const std::int64_t added = 800 * k * tpp;  // P1..Pk, all before every ledger line
      std::string expected;
      std::size_t crossing = 0;
      for (std::size_t j = 0; j < through.size() && added <= cap; ++j) {
        if (through[j] * tpp + added > cap) {
          crossing = j;
          expected = "line " + std::to_string(k) + " (P" + std::to_string(k) +
                     "): COUNTRY_CAP_EXCEEDED: with it, the running total passes the limit on the ledger's "
                     "later line L" +
                     std::to_string(j) + " (" + date[j] + ")\n";
          break;
        }
      }
      const std::string prefix = "line " + std::to_string(k) + " (P" + std::to_string(k) + "):";
      if (expected.empty()) {
        EXPECT_EQ(said.find(prefix), std::string::npos) << replay << said;
      } else {
        EXPECT_NE(said.find(expected), std::string::npos) << replay << expected << said;
        named.insert(crossing);
      }
    }
    EXPECT_EQ(named.size(), 46U) << replay;  // each of P1..P46 another line
  }
}

// A UVEU entity's line is weighed against the share rules it can break, as limits on installed
// tpp with the line in (SPEC §4: every line counts). Ledger: U1 (HQ US) holds 9,000 H100-SXM in
// the US, 500 in DE, 600 in AE. P1 (100 to AE): 10,200 in all, AE may hold 7% of 161,486,400 =
// 11,304,048 and holds 9,499,200 + 1,583,200; outside tier 1 at most 25% (40,371,600), outside the
// US at most 50% (80,743,200, now 17,415,200). P2 (100 more to AE): AE's 7% of 163,069,600 is
// 11,414,872 < 12,665,600. P3 (to DE, tier 1): only the US share.
TEST_F(ledger_test, CheckWeighsTheUveuShareRules)
{
  write_text(at("entities.csv"), "entity,hq_country,status,nveu_countries\nU1,US,UVEU,\n");
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "A1,2025-03-01,U1,US,H100-SXM,9000,UVEU,\n"
             "A2,2025-03-01,U1,DE,H100-SXM,500,UVEU,\n"
             "A3,2025-03-01,U1,AE,H100-SXM,600,UVEU,\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv --entities entities.csv"), 0) << stderr_text();
  write_text(at("proposed.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "P1,2025-03-02,U1,AE,H100-SXM,100,UVEU,\n"
             "P2,2025-03-02,U1,AE,H100-SXM,100,UVEU,\n"
             "P3,2025-03-02,U1,DE,H100-SXM,100,UVEU,\n");
  const std::string expected =
      "line,shipment_id,date,entity,country,pathway,tpp,rule,limit_tpp,consumed_before_tpp,headroom_before_"
      "tpp,status\n"
      "1,P1,2025-03-02,U1,AE,UVEU,1583200,UVEU_TIER2_SHARE,11304048,9499200,1804848,ok\n"
      "1,P1,2025-03-02,U1,AE,UVEU,1583200,UVEU_TIER1_SHARE,40371600,9499200,30872400,ok\n"
      "1,P1,2025-03-02,U1,AE,UVEU,1583200,UVEU_US_SHARE,80743200,17415200,63328000,ok\n"
      "2,P2,2025-03-02,U1,AE,UVEU,1583200,UVEU_TIER2_SHARE,11414872,11082400,332472,breach\n"
      "2,P2,2025-03-02,U1,AE,UVEU,1583200,UVEU_TIER1_SHARE,40767400,11082400,29685000,ok\n"
      "2,P2,2025-03-02,U1,AE,UVEU,1583200,UVEU_US_SHARE,81534800,18998400,62536400,ok\n"
      "3,P3,2025-03-02,U1,DE,UVEU,1583200,UVEU_US_SHARE,82326400,20581600,61744800,ok\n";
  for (const char* replay : {"", " --replay"}) {
    std::string csv;
    EXPECT_EQ(cli(std::string("check l.db --proposed proposed.csv") + replay, &csv), 1) << stderr_text();
    EXPECT_EQ(csv, expected) << replay;
  }
}

// A line that lifts a UVEU entity's worldwide total from 0 or below brings the share rules into
// force: U1 (HQ US) holds 100 H100-SXM in AE and -100 in the US (a return), 0 in all. P1 (10 to the
// US, tier 1: no limit row) leaves 158,320 worldwide, AE holding 1,583,200 of it: every share rule
// is then broken, so P1 is a breach of each (rows without limit columns), as `report` would find.
TEST_F(ledger_test, CheckWeighsTheShareRulesALineBringsIntoForce)
{
  write_text(at("entities.csv"), "entity,hq_country,status,nveu_countries\nU1,US,UVEU,\n");
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "A1,2025-03-01,U1,AE,H100-SXM,100,UVEU,\n"
             "A2,2025-03-01,U1,US,H100-SXM,-100,UVEU,\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv --entities entities.csv"), 0) << stderr_text();
  write_text(at("proposed.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "P1,2025-03-02,U1,US,H100-SXM,10,UVEU,\n");
  const std::string expected =
      "line,shipment_id,date,entity,country,pathway,tpp,rule,limit_tpp,consumed_before_tpp,headroom_before_"
      "tpp,status\n"
      "1,P1,2025-03-02,U1,US,UVEU,158320,UVEU_TIER2_SHARE,,,,breach\n"
      "1,P1,2025-03-02,U1,US,UVEU,158320,UVEU_TIER1_SHARE,,,,breach\n"
      "1,P1,2025-03-02,U1,US,UVEU,158320,UVEU_US_SHARE,,,,breach\n";
  for (const char* replay : {"", " --replay"}) {
    std::string csv;
    EXPECT_EQ(cli(std::string("check l.db --proposed proposed.csv") + replay, &csv), 1) << stderr_text();
    EXPECT_EQ(csv, expected) << replay;
  }
  // Ingested, the line leaves the three findings.
  ASSERT_EQ(cli("ledger ingest l.db proposed.csv"), 0) << stderr_text();
  ASSERT_EQ(cli("ledger report l.db --out rep"), 1) << stderr_text();
  const std::string findings = read_text(at("rep/findings.csv"));
  for (const char* rule : {"UVEU_TIER2_SHARE,U1,AE,", "UVEU_TIER1_SHARE,U1,,", "UVEU_US_SHARE,U1,US,"}) {
    EXPECT_NE(findings.find(rule), std::string::npos) << rule << "\n" << findings;
  }
}

// A return is a breach of each share rule it leaves broken at a part whose share it moves the wrong
// way, and ok where it only lowers an over share. Three UVEU entities (HQ DE: no US rule), in
// H100-SXM: U2 holds 9,000 in the US, 700 in AE, 300 in BR; P1 returns one from BR: AE then holds
// 700 of 9,999 (100 * 700 > 7 * 9,999), a share the return raised, a breach row without limit
// columns; BR's own rows are ok (7% of 158,304,168 tpp is 11,081,291; 25% is 39,576,042). U3 holds
// 7,500 in DE and 650, 650, 650, 550 in AE, BR, IN, MX (tier 1 at 75% exactly); P2 returns one
// from DE: 7,499 of 9,999 in tier 1 (100 * 7,499 < 75 * 9,999) while each tier-2 country stays
// within 7%. U4 holds 9,000 in the US and 1,000 in AE (10%); P3 returns 100 from AE: AE still holds
// 900 of 9,900, over 7%, but less of it: ok (7% of 156,736,800 is 10,971,576, 25% 39,184,200).
TEST_F(ledger_test, CheckWeighsAReturnAgainstTheShareRules)
{
  write_text(at("entities.csv"),
             "entity,hq_country,status,nveu_countries\nU2,DE,UVEU,\nU3,DE,UVEU,\nU4,DE,UVEU,\n");
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "A1,2025-03-01,U2,US,H100-SXM,9000,UVEU,\n"
             "A2,2025-03-01,U2,AE,H100-SXM,700,UVEU,\n"
             "A3,2025-03-01,U2,BR,H100-SXM,300,UVEU,\n"
             "B1,2025-03-01,U3,DE,H100-SXM,7500,UVEU,\n"
             "B2,2025-03-01,U3,AE,H100-SXM,650,UVEU,\n"
             "B3,2025-03-01,U3,BR,H100-SXM,650,UVEU,\n"
             "B4,2025-03-01,U3,IN,H100-SXM,650,UVEU,\n"
             "B5,2025-03-01,U3,MX,H100-SXM,550,UVEU,\n"
             "C1,2025-03-01,U4,US,H100-SXM,9000,UVEU,\n"
             "C2,2025-03-01,U4,AE,H100-SXM,1000,UVEU,\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv --entities entities.csv"), 0) << stderr_text();
  write_text(at("proposed.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
             "P1,2025-03-02,U2,BR,H100-SXM,-1,UVEU,\n"
             "P2,2025-03-02,U3,DE,H100-SXM,-1,UVEU,\n"
             "P3,2025-03-02,U4,AE,H100-SXM,-100,UVEU,\n");
  const std::string expected =
      "line,shipment_id,date,entity,country,pathway,tpp,rule,limit_tpp,consumed_before_tpp,headroom_before_"
      "tpp,status\n"
      "1,P1,2025-03-02,U2,BR,UVEU,-15832,UVEU_TIER2_SHARE,11081291,4749600,6331691,ok\n"
      "1,P1,2025-03-02,U2,BR,UVEU,-15832,UVEU_TIER1_SHARE,39576042,15832000,23744042,ok\n"
      "1,P1,2025-03-02,U2,BR,UVEU,-15832,UVEU_TIER2_SHARE,,,,breach\n"
      "2,P2,2025-03-02,U3,DE,UVEU,-15832,UVEU_TIER1_SHARE,,,,breach\n"
      "3,P3,2025-03-02,U4,AE,UVEU,-1583200,UVEU_TIER2_SHARE,10971576,15832000,-4860424,ok\n"
      "3,P3,2025-03-02,U4,AE,UVEU,-1583200,UVEU_TIER1_SHARE,39184200,15832000,23352200,ok\n";
  for (const char* replay : {"", " --replay"}) {
    std::string csv;
    EXPECT_EQ(cli(std::string("check l.db --proposed proposed.csv") + replay, &csv), 1) << stderr_text();
    EXPECT_EQ(csv, expected) << replay;
    // The rows without limit columns are explained on stderr: 700 and 2,500 of 9,999 units.
    for (const char* why :
         {"line 1 (P1): UVEU_TIER2_SHARE: with it, the entity holds in AE 11082400 of its "
          "158304168 tpp worldwide, more than the 11081291 its share rule allows\n",
          "line 2 (P2): UVEU_TIER1_SHARE: with it, the entity holds outside tier 1 39580000 "
          "of its 158304168 tpp worldwide, more than the 39576042 its share rule allows\n"}) {
      EXPECT_NE(stderr_text().find(why), std::string::npos) << why << stderr_text();
    }
  }
  // Ingested, the returns leave U2's AE and U3's tier-1 share broken, and break nothing else.
  ASSERT_EQ(cli("ledger ingest l.db proposed.csv"), 0) << stderr_text();
  ASSERT_EQ(cli("ledger report l.db --out rep"), 1) << stderr_text();
  const std::string findings = read_text(at("rep/findings.csv"));
  for (const char* rule : {"UVEU_TIER2_SHARE,U2,AE,", "UVEU_TIER1_SHARE,U3,,", "UVEU_TIER2_SHARE,U4,AE,"}) {
    EXPECT_NE(findings.find(rule), std::string::npos) << rule << "\n" << findings;
  }
  for (const char* rule :
       {"UVEU_TIER2_SHARE,U2,BR,", "UVEU_TIER1_SHARE,U2,", "UVEU_TIER2_SHARE,U3,", "UVEU_TIER1_SHARE,U4,"}) {
    EXPECT_EQ(findings.find(rule), std::string::npos) << rule << "\n" << findings;
  }
}

// An answer written to /dev/stdout that is a pipe goes down the pipe (it named no file to replace).
TEST_F(tiny_ledger_test, CheckOutToDevStdoutThroughAPipe)
{
  write_text(at("proposed.csv"),
             "shipment_id,date,entity,country,chip,quantity\nP1,2025-03-02,E1,DE,H100-SXM,5\n");
  std::string direct;
  ASSERT_EQ(cli("check l.db --proposed proposed.csv", &direct), 0) << stderr_text();
  const std::string piped =
      "cd '" + dir_.string() +
      "' && { '" CAPLEDGER_CLI_PATH
      "' check l.db --proposed proposed.csv --out /dev/stdout 2>err.txt; echo $? >rc.txt; } | "
      "cat >piped.csv";
  ASSERT_EQ(std::system(piped.c_str()), 0);
  EXPECT_EQ(read_text(at("rc.txt")), "0\n") << read_text(at("err.txt"));
  EXPECT_EQ(read_text(at("piped.csv")), direct);
}

// A state table dropped (damage in the state's structure): check, report and verify replay or
// say so, never a raw SQLite error; the next ingest rebuilds the state rather than extend it.
TEST_F(tiny_ledger_test, AMissingStateTableIsDamage)
{
  write_text(at("proposed.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway\nP1,2025-03-02,E2,IN,H100-SXM,1,NVEU\n");
  std::string before;
  ASSERT_EQ(cli("check l.db --proposed proposed.csv", &before), 0) << stderr_text();
  alter("DROP TABLE st_nveu");
  std::string after;
  EXPECT_EQ(cli("check l.db --proposed proposed.csv", &after), 0) << stderr_text();
  EXPECT_EQ(after, before);
  EXPECT_NE(stderr_text().find("check: replay (the running state is damaged (a table is missing))"),
            std::string::npos)
      << stderr_text();
  EXPECT_EQ(cli("ledger report l.db --backend cpu --format csv"), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("ledger report: replay (the running state is damaged (a table is missing))"),
            std::string::npos)
      << stderr_text();
  std::string said;
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said;
  EXPECT_NE(said.find("running state: the running state is damaged (a table is missing)"), std::string::npos)
      << said;
  write_text(
      at("night2.csv"),
      "shipment_id,date,entity,country,chip,quantity,pathway\nL9,2025-03-05,E1,DE,H100-SXM,1,LICENSE\n");
  ASSERT_EQ(cli("ledger ingest l.db night2.csv"), 0) << stderr_text();
  EXPECT_EQ(cli("ledger verify l.db", &said), 0) << said;  // the NVEU total of L2 is back
}

/// `check` reads the ledger's totals from the running state; with `--replay`, or where the state
/// cannot stand for the stored lines (other rules), it sums a replay of them. Every total below is
/// worked out by hand, and each of the four limits has a value of its own.
TEST_F(ledger_test, CheckReadsTheRunningStateOrAReplay)
{
  write_text(at("entities.csv"), "entity,hq_country,status,nveu_countries\nE2,US,NVEU,IN\n");
  const std::string header = "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n";
  write_text(at("night1.csv"), header +
                                   "L1,2025-03-01,E1,AE,H100-SXM,1000,LICENSE,\n"  // AE 15,832,000
                                   "L2,2025-03-01,E2,IN,H100-SXM,2000,NVEU,\n"     // E2/IN 31,664,000
                                   "L3,2025-03-01,E3,BR,H100-SXM,300,LPP,O1\n"     // O1, E3/2025 4,749,600
                                   "L4,2025-04-01,E3,BR,H100-SXM,20,LPP,O3\n");    // O3 316,640
  write_text(at("night2.csv"), header +
                                   "L5,2025-05-01,E3,BR,H100-SXM,-50,LPP,O1\n"    // -791,600
                                   "L6,2025-12-20,E3,BR,H100-SXM,7,LPP,O1\n"      // O1, E3/2025 110,824
                                   "L7,2024-06-01,E1,AE,H100-SXM,500,LICENSE,\n"  // before the window
                                   "L8,2025-06-01,E4,AE,H100-SXM,3,LICENSE,\n");  // AE 47,496
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night1.csv --entities entities.csv"), 0) << stderr_text();
  ASSERT_EQ(cli("ledger ingest l.db night2.csv"), 0) << stderr_text();  // back-dated: state rebuilt
  write_text(at("proposed.csv"), header +
                                     "P1,2025-12-31,E1,AE,H100-SXM,1,LICENSE,\n"
                                     "P2,2025-12-31,E2,IN,H100-SXM,1,NVEU,\n"
                                     "P3,2025-12-31,E3,BR,H100-SXM,1,LPP,O1\n"
                                     "P4,2026-07-01,E3,BR,H100-SXM,1,LPP,O3\n"
                                     "P5,2025-12-31,E9,BR,H100-SXM,1,LPP,O9\n"
                                     "P6,2025-12-31,E2,AE,H100-SXM,1,NVEU,\n");
  const std::string expected =
      "line,shipment_id,date,entity,country,pathway,tpp,rule,limit_tpp,consumed_before_tpp,headroom_before_"
      "tpp,status\n"
      "1,P1,2025-12-31,E1,AE,LICENSE,15832,COUNTRY_CAP_EXCEEDED,790000000,15879496,774120504,ok\n"
      "2,P2,2025-12-31,E2,IN,NVEU,15832,NVEU_CAP_EXCEEDED,633000000,31664000,601336000,ok\n"
      "3,P3,2025-12-31,E3,BR,LPP,15832,LPP_ORDER_LIMIT,26900000,4068824,22831176,ok\n"
      "3,P3,2025-12-31,E3,BR,LPP,15832,LPP_ANNUAL_LIMIT,26900000,4385464,22514536,ok\n"
      "4,P4,2026-07-01,E3,BR,LPP,15832,LPP_ORDER_LIMIT,26900000,316640,26583360,ok\n"
      "4,P4,2026-07-01,E3,BR,LPP,15832,LPP_ANNUAL_LIMIT,26900000,0,26900000,ok\n"
      "5,P5,2025-12-31,E9,BR,LPP,15832,LPP_ORDER_LIMIT,26900000,0,26900000,ok\n"
      "5,P5,2025-12-31,E9,BR,LPP,15832,LPP_ANNUAL_LIMIT,26900000,0,26900000,ok\n"
      "6,P6,2025-12-31,E2,AE,NVEU,15832,UNAUTHORIZED_PATHWAY,,,,breach\n"
      "6,P6,2025-12-31,E2,AE,NVEU,15832,NVEU_CAP_EXCEEDED,633000000,0,633000000,ok\n";
  std::string state_csv, replay_csv;
  EXPECT_EQ(cli("check l.db --proposed proposed.csv", &state_csv), 1) << stderr_text();
  EXPECT_NE(stderr_text().find("check: running state of 8 line(s)"), std::string::npos) << stderr_text();
  EXPECT_EQ(state_csv, expected);
  EXPECT_EQ(cli("check l.db --proposed proposed.csv --replay", &replay_csv), 1) << stderr_text();
  EXPECT_NE(stderr_text().find("check: replay (--replay)"), std::string::npos) << stderr_text();
  EXPECT_EQ(replay_csv, expected);

  // Rules under which the state was not built: a window from 2024 counts L7 (AE 7,916,000 more).
  std::string rules        = read_text(capledger::default_datasets_dir() + "/rules/ai-diffusion-2025.json");
  const std::string starts = "\"counting_starts\": \"2025-01-13\"";
  ASSERT_NE(rules.find(starts), std::string::npos);
  rules.replace(rules.find(starts), starts.size(), "\"counting_starts\": \"2024-01-01\"");
  write_text(at("rules.json"), rules);
  std::string other_csv;
  EXPECT_EQ(cli("check l.db --proposed proposed.csv --rules rules.json", &other_csv), 1) << stderr_text();
  EXPECT_NE(stderr_text().find(
                "check: replay (the running state follows other countries, chips or rules tables): the "
                "ledger is weighed under the tables given (the bundled ones where none is), not those it "
                "was ingested with"),
            std::string::npos)
      << stderr_text();
  EXPECT_NE(other_csv.find("\n1,P1,2025-12-31,E1,AE,LICENSE,15832,COUNTRY_CAP_EXCEEDED,790000000,23795496,"),
            std::string::npos)
      << other_csv;
}

/// A total driven far below zero by returns puts a limit's headroom, and a reconciliation's
/// difference, past 2^63 - 1: printed exactly (a 64-bit subtraction wrapped them negative), or, for
/// a difference in tpp, refused as an overflow.
TEST_F(ledger_test, DifferencesPastSixtyFourBitsArePrintedExactly)
{
  const std::string header =
      "shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit\n";
  // -(2^63 - 101) tpp to AE under LICENSE: AE's 790,000,000 cap has 9,223,372,037,644,775,707 left.
  write_text(at("night.csv"), header + "R1,2025-03-01,E1,AE,X,-9223372036854775707,LICENSE,,V,1\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv"), 0) << stderr_text();
  std::string csv;
  EXPECT_EQ(cli("ledger balances l.db --format csv", &csv), 0) << stderr_text();
  EXPECT_NE(csv.find("\nCOUNTRY_CAP,,AE,,790000000,-9223372036854775707,9223372037644775707,"),
            std::string::npos)
      << csv;

  write_text(at("proposed.csv"), header + "P1,2025-03-02,E1,AE,X,5,LICENSE,,V,1\n");
  EXPECT_EQ(cli("check l.db --proposed proposed.csv", &csv), 0) << stderr_text();
  EXPECT_NE(csv.find(",COUNTRY_CAP_EXCEEDED,790000000,-9223372036854775707,9223372037644775707,ok\n"),
            std::string::npos)
      << csv;

  // 2^63 - 1 units reported against -(2^63 - 101) in the ledger: a difference of 2^64 - 102.
  write_text(at("inventory.csv"), "entity,country,chip,units\nE1,AE,X,9223372036854775807\n");
  EXPECT_EQ(cli("reconcile l.db --inventory inventory.csv", &csv), 1) << stderr_text();
  EXPECT_NE(csv.find(",9223372036854775807,18446744073709551514,,surplus\n"), std::string::npos) << csv;

  // The same units of a chip in the table (1 tpp a unit): the difference in tpp needs 65 bits.
  std::string chips = read_text(capledger::default_datasets_dir() + "/chips.csv");
  write_text(at("chips.csv"), chips + "ONE,V,1,0.01,1\n");
  write_text(at("night1.csv"), header + "R1,2025-03-01,E1,AE,ONE,-9223372036854775707,LICENSE,,V,\n");
  ASSERT_EQ(cli("ledger init l1.db"), 0);
  ASSERT_EQ(cli("ledger ingest l1.db night1.csv --chips chips.csv"), 0) << stderr_text();
  write_text(at("inventory.csv"), "entity,country,chip,units\nE1,AE,ONE,9223372036854775807\n");
  EXPECT_EQ(cli("reconcile l1.db --inventory inventory.csv --chips chips.csv"), 2);
  EXPECT_NE(stderr_text().find("difference in tpp exceeds 64 bits"), std::string::npos) << stderr_text();
}

// Proposed lines are validated against the |tpp| sum the ledger's lines had when ingested; replayed
// under other chips tables they can weigh more, and with the proposal pass 64 bits: TPP_OVERFLOW,
// as `report` over the ledger's files and the proposal would say (the sums wrapped, and a breach
// was answered ok with a negative consumed figure).
TEST_F(ledger_test, CheckUnderOtherChipsRefusesTotalsPastSixtyFourBits)
{
  const std::string chips = read_text(capledger::default_datasets_dir() + "/chips.csv");
  write_text(at("chips1.csv"), chips + "BIG,ACME,1,0.01,1\n");
  write_text(at("chips2.csv"), chips + "BIG,ACME,6917529027641081856,0.01,1\n");  // 3 * 2^61 a unit
  // One unit to AE: 1 tpp as ingested, 3 * 2^61 replayed under chips2.csv.
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway\n"
             "L1,2025-03-01,E1,AE,BIG,1,LICENSE\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv --chips chips1.csv"), 0) << stderr_text();
  // 2^61 - 1 tpp (its own tpp_per_unit): 2^63 - 1 with the replayed line, the most that fits.
  const std::string header = "shipment_id,date,entity,country,chip,quantity,pathway,tpp_per_unit\n";
  write_text(at("fits.csv"), header + "P1,2025-03-02,E1,AE,BIG,1,LICENSE,2305843009213693951\n");
  write_text(at("past.csv"), header +
                                 "P1,2025-03-02,E1,AE,BIG,1,LICENSE,2305843009213693951\n"
                                 "P2,2025-03-03,E1,AE,BIG,-1,LICENSE,1\n");
  for (const char* replay : {"", " --replay"}) {
    std::string csv;
    EXPECT_EQ(cli(std::string("check l.db --proposed fits.csv --chips chips2.csv") + replay, &csv), 1)
        << stderr_text();
    EXPECT_NE(csv.find("\n1,P1,2025-03-02,E1,AE,LICENSE,2305843009213693951,COUNTRY_CAP_EXCEEDED,790000000,"
                       "6917529027641081856,-6917529026851081856,breach\n"),
              std::string::npos)
        << csv;
    EXPECT_EQ(cli(std::string("check l.db --proposed past.csv --chips chips2.csv") + replay, &csv), 2);
    EXPECT_NE(
        stderr_text().find("past.csv:3: TPP_OVERFLOW: with the ledger's lines replayed under these tables"),
        std::string::npos)
        << stderr_text();
  }
  // Under the ledger's own tables the same lines weigh 1 + 2^61 - 1 + 1: answered.
  EXPECT_EQ(cli("check l.db --proposed past.csv --chips chips1.csv"), 1) << stderr_text();
}

TEST_F(tiny_ledger_test, BalancesPerCap)
{
  std::string csv;
  EXPECT_EQ(cli("ledger balances l.db --format csv", &csv), 0) << stderr_text();
  EXPECT_NE(csv.find("\nCOUNTRY_CAP,,AE,,790000000,633280000,156720000,80.16,0.8,\n"), std::string::npos)
      << csv;
  EXPECT_NE(csv.find("\nCOUNTRY_CAP,,BR,,790000000,0,790000000,0.00,,\n"), std::string::npos);
  EXPECT_NE(csv.find("\nNVEU_CAP,E2,IN,,633000000,474960000,158040000,75.03,,\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\nLPP_ANNUAL,E3,,2025,26900000,15832000,11068000,58.86,,\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\nLPP_ORDER,E3,BR,,26900000,15832000,11068000,58.86,,O1\n"), std::string::npos) << csv;
  EXPECT_EQ(csv.find("COUNTRY_CAP,,DE"), std::string::npos);  // tier 1: no cap
  EXPECT_EQ(cli("ledger balances l.db --format csv --warn-at 0.5,0.75", &csv), 0);
  EXPECT_NE(csv.find("\nNVEU_CAP,E2,IN,,633000000,474960000,158040000,75.03,0.75,\n"), std::string::npos)
      << csv;
  // Before the counting window nothing is consumed.
  EXPECT_EQ(cli("ledger balances l.db --format csv --as-of 2025-01-01", &csv), 0);
  EXPECT_NE(csv.find("\nCOUNTRY_CAP,,AE,,790000000,0,790000000,0.00,,\n"), std::string::npos) << csv;
}

TEST_F(ledger_test, BalancesCallACapExceededOnceItsLimitWasCrossedEvenAfterReturns)
{
  // AE: 40,000 + 10,000 H100-SXM = 791,600,000 > 790,000,000 on S2 (the crossing line), then a
  // return of 1,000 units brings the total back to 775,768,000: report still finds the violation,
  // so balances must say `exceeded`, not a warn level.
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity\n"
             "S1,2025-03-01,E1,AE,H100-SXM,40000\n"
             "S2,2025-03-02,E1,AE,H100-SXM,10000\n"
             "S3,2025-03-03,E1,AE,H100-SXM,-1000\n");
  ASSERT_EQ(cli("ledger init l.db"), 0) << stderr_text();
  ASSERT_EQ(cli("ledger ingest l.db night.csv"), 0) << stderr_text();
  std::string findings;
  EXPECT_EQ(cli("ledger report l.db --backend cpu --format csv", &findings), 1) << stderr_text();
  EXPECT_NE(findings.find("violation,COUNTRY_CAP_EXCEEDED,,AE,,,,2025-03-02,S2,791600000,790000000"),
            std::string::npos) << findings;
  std::string csv;
  EXPECT_EQ(cli("ledger balances l.db --format csv", &csv), 1) << stderr_text();
  EXPECT_NE(csv.find("\nCOUNTRY_CAP,,AE,,790000000,775768000,14232000,98.20,exceeded,\n"), std::string::npos)
      << csv;
}

TEST_F(ledger_test, BalancesExceededOnlyWhereALineCrossedTheCapInForceOnItsDate)
{
  // A rule set whose NVEU phase cap falls from 633,000,000 to 100,000,000 in 2026: 10,000
  // H100-SXM (158,320,000) under the 2025 cap cross nothing, so report finds no
  // NVEU_CAP_EXCEEDED; the 2026 balance is over its limit, at its highest warn level, not
  // `exceeded`.
  write_rules("falling", R"({"per_order_tpp":26900000,"per_consignee_year_tpp":26900000})",
              R"([{"through":"2025-12-31","tpp":633000000},{"through":"2027-12-31","tpp":100000000}])");
  ingest_nveu_night("falling",
                    "S1,2025-06-01,G,AE,H100-SXM,10000,NVEU\n"
                    "S2,2026-02-01,G,AE,H100-SXM,1,LICENSE\n");
  if (HasFatalFailure()) { return; }
  std::string findings;
  EXPECT_EQ(
      cli("report night.csv --entities ent.csv --rules falling.json --backend cpu --format csv", &findings),
      0)
      << stderr_text();
  EXPECT_EQ(findings.find("NVEU_CAP_EXCEEDED"), std::string::npos) << findings;
  std::string csv;
  EXPECT_EQ(cli("ledger balances l.db --rules falling.json --format csv", &csv), 0) << stderr_text();
  EXPECT_NE(csv.find("\nNVEU_CAP,G,AE,,100000000,158320000,-58320000,158.32,0.95,\n"), std::string::npos)
      << csv;
}

// A return is no breach, but where an NVEU phase cap fell under the total, the return is the first
// line of the key against the lower cap, so report names it as the crossing line once ingested:
// check says so on stderr (status ok, exit 0); a return that brings the total under the cap, or
// one the old phase's cap holds, is not noted; a shipment there is a breach.
TEST_F(ledger_test, CheckNotesAReturnThatReportWouldNameUnderAFallenNveuCap)
{
  write_rules("falling", R"({"per_order_tpp":26900000,"per_consignee_year_tpp":26900000})",
              R"([{"through":"2025-12-31","tpp":633000000},{"through":"2027-12-31","tpp":100000000}])");
  ingest_nveu_night("falling", "S1,2025-06-01,G,AE,H100-SXM,10000,NVEU\n");  // 158,320,000
  if (HasFatalFailure()) { return; }
  const std::string header = "shipment_id,date,entity,country,chip,quantity,pathway\n";
  write_text(at("p.csv"), header +
                              "R1,2026-02-01,G,AE,H100-SXM,-1,NVEU\n"     // 158,304,168 > 100,000,000
                              "R0,2025-07-01,G,AE,H100-SXM,-1,NVEU\n"     // under the 2025 cap
                              "R2,2026-03-01,G,AE,H100-SXM,-9000,NVEU\n"  // 15,800,336 after it
                              "P1,2026-04-01,G,AE,H100-SXM,10000,NVEU\n");
  std::string csv;
  EXPECT_EQ(cli("check l.db --proposed p.csv --entities ent.csv --rules falling.json", &csv), 1)
      << stderr_text();
  EXPECT_NE(
      csv.find("\n1,R1,2026-02-01,G,AE,NVEU,-15832,NVEU_CAP_EXCEEDED,100000000,158304168,-58304168,ok\n"),
      std::string::npos)
      << csv;
  EXPECT_NE(
      csv.find(",P1,2026-04-01,G,AE,NVEU,158320000,NVEU_CAP_EXCEEDED,100000000,15800336,84199664,breach\n"),
      std::string::npos)
      << csv;
  EXPECT_NE(
      stderr_text().find("capledger: check: line 1 (R1): NVEU_CAP_EXCEEDED: a return, not a breach, but the "
                         "running total after it (158288336) is over the cap in force on its date "
                         "(100000000): once ingested, report names this line as the crossing line unless a "
                         "line before it crossed\n"),
      std::string::npos)
      << stderr_text();
  EXPECT_EQ(stderr_text().find("line 2 (R0)"), std::string::npos) << stderr_text();
  EXPECT_EQ(stderr_text().find("line 3 (R2)"), std::string::npos) << stderr_text();
  // What the note says: with R1 in, report names it.
  write_text(at("r1.csv"), header + "R1,2026-02-01,G,AE,H100-SXM,-1,NVEU\n");
  std::string findings;
  EXPECT_EQ(cli("report night.csv r1.csv --entities ent.csv --rules falling.json --backend cpu --format csv",
                &findings),
            1)
      << stderr_text();
  EXPECT_NE(findings.find("violation,NVEU_CAP_EXCEEDED,G,AE,,,,2026-02-01,R1,158304168,100000000\n"),
            std::string::npos)
      << findings;
}

// A phase that ends before counting_starts is never in force: with as_of before the window, a
// balance is held against the phase counting starts under (633,000,000), not the earlier one (1).
TEST_F(ledger_test, BalancesNeverHoldAPhaseEndedBeforeTheWindow)
{
  write_rules("early", R"({"per_order_tpp":26900000,"per_consignee_year_tpp":26900000})",
              R"([{"through":"2024-12-31","tpp":1},{"through":"2027-12-31","tpp":633000000}])");
  ingest_nveu_night("early",
                    "S1,2024-06-01,G,AE,H100-SXM,1,NVEU\n"
                    "S2,2025-02-01,G,AE,H100-SXM,1,NVEU\n");
  if (HasFatalFailure()) { return; }
  std::string csv;
  EXPECT_EQ(cli("ledger balances l.db --rules early.json --format csv --as-of 2024-07-01", &csv), 0)
      << stderr_text();
  EXPECT_NE(csv.find("\nNVEU_CAP,G,AE,,633000000,0,633000000,0.00,,\n"), std::string::npos) << csv;
}

/// The rows of a balances CSV from the first row of cap @p cap to the end ("" when it has none).
static std::string balance_rows_from(const std::string& csv, const std::string& cap)
{
  const std::size_t at = csv.find("\n" + cap + ",");
  return at == std::string::npos ? std::string() : csv.substr(at + 1);
}

TEST_F(ledger_test, BalancesListEveryLppOrderAcrossNights)
{
  // Chip X at 100,000 tpp a unit; LPP 26,900,000 per order and per consignee-year (269 units).
  const std::string header = "shipment_id,date,entity,country,chip,quantity,pathway,order_id,tpp_per_unit\n";
  write_text(at("night1.csv"), header +
                                   "A1,2025-03-01,E3,BR,X,100,LPP,O1,100000\n"     // O1 10,000,000
                                   "A2,2025-03-01,E4,AE,X,50,LPP,O2,100000\n"      // O2 5,000,000
                                   "A3,2025-03-01,E1,AE,X,10,LICENSE,O1,100000\n"  // not LPP: not in O1
                                   "A4,2025-03-02,E5,IN,X,30,LPP,,100000\n");      // order A4 (its id)
  write_text(at("night2.csv"), header +
                                   "B1,2025-04-01,E3,BR,X,150,LPP,O1,100000\n"  // O1 25,000,000
                                   "B2,2025-04-02,E3,BR,X,-20,lpp,O1,100000\n"  // return: O1 23,000,000
                                   "B3,2025-04-02,E6,MY,X,40,LPP,O2,100000\n"   // O2 9,000,000, 2 consignees
                                   "B4,2025-04-03,E4,AE,X,200,LPP,O10,100000\n");  // O10 20,000,000
  ASSERT_EQ(cli("ledger init l.db"), 0) << stderr_text();
  ASSERT_EQ(cli("ledger ingest l.db night1.csv"), 0) << stderr_text();
  std::string csv;
  EXPECT_EQ(cli("ledger balances l.db --format csv", &csv), 0) << stderr_text();
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "cap,entity,country,year,limit_tpp,consumed_tpp,remaining_tpp,used_pct,warn_level,order_id");
  EXPECT_NE(csv.find("\nCOUNTRY_CAP,,AE,,790000000,1000000,789000000,0.13,,\n"), std::string::npos) << csv;
  // Order rows come last, by order id in byte order; an order's consignee and destination are its
  // lines'.
  EXPECT_EQ(balance_rows_from(csv, "LPP_ANNUAL"),
            "LPP_ANNUAL,E3,,2025,26900000,10000000,16900000,37.17,,\n"
            "LPP_ANNUAL,E4,,2025,26900000,5000000,21900000,18.59,,\n"
            "LPP_ANNUAL,E5,,2025,26900000,3000000,23900000,11.15,,\n"
            "LPP_ORDER,E5,IN,,26900000,3000000,23900000,11.15,,A4\n"
            "LPP_ORDER,E3,BR,,26900000,10000000,16900000,37.17,,O1\n"
            "LPP_ORDER,E4,AE,,26900000,5000000,21900000,18.59,,O2\n");

  // The second night: O1 less its return (92.94% before it, 85.50% after: level 0.8); O2 now
  // spans two consignees in two countries, each listed once; O10 sorts between O1 and O2.
  ASSERT_EQ(cli("ledger ingest l.db night2.csv"), 0) << stderr_text();
  EXPECT_EQ(cli("ledger balances l.db --format csv", &csv), 0) << stderr_text();
  EXPECT_EQ(balance_rows_from(csv, "LPP_ANNUAL"),
            "LPP_ANNUAL,E3,,2025,26900000,23000000,3900000,85.50,0.8,\n"
            "LPP_ANNUAL,E4,,2025,26900000,25000000,1900000,92.94,0.9,\n"
            "LPP_ANNUAL,E5,,2025,26900000,3000000,23900000,11.15,,\n"
            "LPP_ANNUAL,E6,,2025,26900000,4000000,22900000,14.87,,\n"
            "LPP_ORDER,E5,IN,,26900000,3000000,23900000,11.15,,A4\n"
            "LPP_ORDER,E3,BR,,26900000,23000000,3900000,85.50,0.8,O1\n"
            "LPP_ORDER,E4,AE,,26900000,20000000,6900000,74.35,,O10\n"
            "LPP_ORDER,E4;E6,AE;MY,,26900000,9000000,17900000,33.46,,O2\n");
  // The table has the same columns, order_id last (no trailing spaces).
  std::string table;
  EXPECT_EQ(cli("ledger balances l.db", &table), 0) << stderr_text();
  EXPECT_NE(table.find("  warn_level  order_id\n"), std::string::npos) << table;
  EXPECT_NE(
      table.find("\nLPP_ORDER    E4;E6   AE;MY           26900000       9000000       17900000     33.46"
                 "              O2\n"),
      std::string::npos)
      << table;
  EXPECT_EQ(table.find(" \n"), std::string::npos) << table;  // rows whose last columns are empty too
}

TEST_F(ledger_test, BalancesCountAnOrdersLinesInTheWindowUpToAsOf)
{
  // The bundled window is 2025-01-13 .. 2027-12-31. X: 100,000 tpp a unit.
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity,pathway,order_id,tpp_per_unit\n"
             "C1,2025-01-12,E3,BR,X,100,LPP,P1,100000\n"     // before the window: not counted
             "C2,2025-01-13,E3,BR,X,50,LPP,P1,100000\n"      // P1 5,000,000
             "C3,2027-12-31,E7,SG,X,20,LPP,P1,100000\n"      // P1 7,000,000
             "C4,2028-01-01,E8,AE,X,200,LPP,P1,100000\n"     // after the window: not counted, not named
             "C5,2024-06-01,E3,BR,X,300,LPP,P2,100000\n"     // P2: no line in the window, no row
             "C6,2025-06-01,E9,MY,X,100,LPP,P3,100000\n"     // P3 10,000,000
             "C7,2026-06-01,E9,MY,X,100,LPP,P3,100000\n"     // P3 20,000,000: an order spans years
             "C8,2026-06-02,E10,IN,X,200,LPP,P4,100000\n");  // P4 20,000,000
  ASSERT_EQ(cli("ledger init l.db"), 0) << stderr_text();
  ASSERT_EQ(cli("ledger ingest l.db night.csv"), 0) << stderr_text();
  std::string csv;
  EXPECT_EQ(cli("ledger balances l.db --format csv", &csv), 0) << stderr_text();
  EXPECT_EQ(balance_rows_from(csv, "LPP_ORDER"),
            "LPP_ORDER,E3;E7,BR;SG,,26900000,7000000,19900000,26.02,,P1\n"
            "LPP_ORDER,E9,MY,,26900000,20000000,6900000,74.35,,P3\n"
            "LPP_ORDER,E10,IN,,26900000,20000000,6900000,74.35,,P4\n");
  // As of 2026-01-01: C3, C7 and C8 are later; P4 has no row yet.
  EXPECT_EQ(cli("ledger balances l.db --format csv --as-of 2026-01-01", &csv), 0) << stderr_text();
  EXPECT_EQ(balance_rows_from(csv, "LPP_ORDER"),
            "LPP_ORDER,E3,BR,,26900000,5000000,21900000,18.59,,P1\n"
            "LPP_ORDER,E9,MY,,26900000,10000000,16900000,37.17,,P3\n");
  // As of the day before the window: no order has a counted line.
  EXPECT_EQ(cli("ledger balances l.db --format csv --as-of 2025-01-12", &csv), 0) << stderr_text();
  EXPECT_EQ(csv.find("LPP_ORDER"), std::string::npos) << csv;
}

TEST_F(ledger_test, BalancesCallAnOrderExceededExactlyWhenReportFindsItsViolation)
{
  // LPP 20,000,000 per order, 50,000,000 per consignee-year: no consignee-year is exceeded here,
  // so exit 1 comes from the orders alone. X: 100,000 tpp a unit, Y: 1.
  write_rules("rules", R"({"per_order_tpp":20000000,"per_consignee_year_tpp":50000000})",
              R"([{"through":"2025-12-31","tpp":633000000},{"through":"2027-12-31","tpp":5064000000}])");
  const std::string header = "shipment_id,date,entity,country,chip,quantity,pathway,order_id,tpp_per_unit\n";
  write_text(at("night1.csv"), header +
                                   "D1,2025-03-10,E1,AE,X,150,LPP,Q1,100000\n"   // Q1 15,000,000
                                   "D2,2025-03-12,E2,AE,X,60,LPP,Q1,100000\n"    // Q1 21,000,000: crosses
                                   "D5,2025-03-10,E3,BR,X,150,LPP,Q3,100000\n"   // Q3 15,000,000
                                   "D6,2025-03-12,E3,BR,X,60,LPP,Q3,100000\n");  // Q3 21,000,000: crosses
  write_text(at("night2.csv"), header +
                                   "D3,2025-03-15,E2,AE,X,-40,LPP,Q1,100000\n"  // Q1 back to 17,000,000
                                   "D4,2025-03-20,E1,AE,X,200,LPP,Q2,100000\n"  // Q2 at its limit exactly
                                   // Back-dated: by date Q3 runs -5M, 10M, 16M and never crosses.
                                   "D7,2025-03-01,E3,BR,X,-50,LPP,Q3,100000\n"
                                   "D8,2025-03-20,E4,IN,Y,20000001,LPP,Q4,1\n");  // one tpp over
  ASSERT_EQ(cli("ledger init l.db"), 0) << stderr_text();
  ASSERT_EQ(cli("ledger ingest l.db night1.csv --rules rules.json"), 0) << stderr_text();
  std::string csv;
  EXPECT_EQ(cli("ledger balances l.db --rules rules.json --format csv", &csv), 1) << stderr_text();
  EXPECT_EQ(balance_rows_from(csv, "LPP_ORDER"),
            "LPP_ORDER,E1;E2,AE,,20000000,21000000,-1000000,105.00,exceeded,Q1\n"
            "LPP_ORDER,E3,BR,,20000000,21000000,-1000000,105.00,exceeded,Q3\n");

  ASSERT_EQ(cli("ledger ingest l.db night2.csv --rules rules.json"), 0) << stderr_text();
  EXPECT_EQ(cli("ledger balances l.db --rules rules.json --format csv", &csv), 1) << stderr_text();
  // Q1 stays exceeded after its return (85.00%, which alone would be level 0.8); Q2 at 100.00% is
  // at the highest level, not exceeded; Q3 no longer crossed in date order.
  EXPECT_EQ(balance_rows_from(csv, "LPP_ORDER"),
            "LPP_ORDER,E1;E2,AE,,20000000,17000000,3000000,85.00,exceeded,Q1\n"
            "LPP_ORDER,E1,AE,,20000000,20000000,0,100.00,0.95,Q2\n"
            "LPP_ORDER,E3,BR,,20000000,16000000,4000000,80.00,0.8,Q3\n"
            "LPP_ORDER,E4,IN,,20000000,20000001,-1,100.00,exceeded,Q4\n");
  EXPECT_EQ(csv.find("exceeded,\n"), std::string::npos) << csv;  // only orders are exceeded
  std::string findings;
  EXPECT_EQ(cli("ledger report l.db --rules rules.json --backend cpu --format csv", &findings), 1)
      << stderr_text();
  EXPECT_NE(findings.find("violation,LPP_ORDER_LIMIT,E2,AE,,Q1,,2025-03-12,D2,21000000,20000000\n"),
            std::string::npos)
      << findings;
  EXPECT_NE(findings.find("violation,LPP_ORDER_LIMIT,E4,IN,,Q4,,2025-03-20,D8,20000001,20000000\n"),
            std::string::npos)
      << findings;
  EXPECT_EQ(findings.find(",Q2,"), std::string::npos) << findings;
  EXPECT_EQ(findings.find(",Q3,"), std::string::npos) << findings;

  // As of 2025-03-11, before Q1's crossing line: 15,000,000 (75.00%), not exceeded; Q3 is D7 and
  // D5 (10,000,000); Q2 and Q4 have no line yet.
  EXPECT_EQ(cli("ledger balances l.db --rules rules.json --format csv --as-of 2025-03-11", &csv), 0)
      << stderr_text();
  EXPECT_EQ(balance_rows_from(csv, "LPP_ORDER"),
            "LPP_ORDER,E1,AE,,20000000,15000000,5000000,75.00,,Q1\n"
            "LPP_ORDER,E3,BR,,20000000,10000000,10000000,50.00,,Q3\n");
}

TEST_F(ledger_test, ReconcileStatuses)
{
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity\n"
             "S1,2025-03-01,E1,AE,H100-SXM,10\n"
             "S2,2025-03-02,E1,AE,H100-SXM,-2\n"
             "S3,2025-03-01,E2,IN,H100-SXM,5\n"
             "S4,2025-03-01,E3,BR,H100-NVL,7\n"
             "S5,2025-03-01,E4,FR,H100-SXM,3\n"
             "S6,2025-03-02,E4,FR,H100-SXM,-3\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv"), 0) << stderr_text();
  write_text(at("inventory.csv"),
             "entity,country,chip,units\n"
             "E1,ae,h100-sxm,8\n"     // 10 - 2 shipped: match
             "E2,IN,H100-SXM,3\n"     // 5 shipped: shortfall of 2 x 15832
             "E3,BR,H100-NVL,9\n"     // 7 shipped: surplus of 2 x 13364
             "E9,AE,H100-SXM,4\n");   // nothing shipped: possible diversion
  std::string summary;
  EXPECT_EQ(cli("reconcile l.db --inventory inventory.csv --out rec", &summary), 1) << stderr_text();
  EXPECT_EQ(read_text(at("rec") / "reconciliation.csv"),
            "entity,country,chip,ledger_units,reported_units,difference,difference_tpp,status\n"
            "E1,AE,H100-SXM,8,8,0,0,match\n"
            "E2,IN,H100-SXM,5,3,-2,-31664,shortfall\n"
            "E3,BR,H100-NVL,7,9,2,26728,surplus\n"
            "E9,AE,H100-SXM,0,4,4,63328,unshipped\n");
  EXPECT_NE(summary.find("4 key(s): 1 match, 1 shortfall, 1 surplus, 1 unshipped"), std::string::npos) << summary;
  EXPECT_NE(read_text(at("rec") / "summary.json").find("\"mismatches\": 3"), std::string::npos);
  // The inventory through stdin is read once: the summary hashes what was reconciled (a second
  // read, for the hash, found the pipe empty).
  const std::string by_path = read_text(at("rec") / "summary.json");
  EXPECT_EQ(cli("reconcile l.db --inventory - --out rec-piped < inventory.csv"), 1) << stderr_text();
  const std::string piped = read_text(at("rec-piped") / "summary.json");
  const auto sha          = [](const std::string& summary_json) {
    const auto at_sha = summary_json.find("\"sha256\"");
    return at_sha == std::string::npos ? std::string() : summary_json.substr(at_sha, 80);
  };
  EXPECT_FALSE(sha(by_path).empty()) << by_path;
  EXPECT_EQ(sha(piped), sha(by_path)) << piped;

  write_text(at("inventory.csv"), "entity,country,chip,units\nE1,AE,H100-SXM,8\nE2,IN,H100-SXM,5\nE3,BR,H100-NVL,7\n");
  EXPECT_EQ(cli("reconcile l.db --inventory inventory.csv"), 0) << stderr_text();
  EXPECT_EQ(stderr_text().find("note: "), std::string::npos) << stderr_text();
  // A chip neither the table nor a stored line knows is unshipped whatever its count: noted, with
  // the table's chip it is written like, if one; once per chip.
  write_text(at("inventory.csv"),
             "entity,country,chip,units\nE1,AE,H100 SXM,8\nE2,IN,MYSTERY9,5\n"
             "E3,BR,mystery9,1\n");
  EXPECT_EQ(cli("reconcile l.db --inventory inventory.csv"), 1) << stderr_text();
  EXPECT_NE(stderr_text().find(
                "capledger: note: inventory.csv:2:7: chip 'H100 SXM' is in neither the chips table nor "
                "the ledger: its units are unshipped; did you mean 'H100-SXM'?\n"),
            std::string::npos)
      << stderr_text();
  EXPECT_NE(stderr_text().find(
                "capledger: note: inventory.csv:3:7: chip 'MYSTERY9' is in neither the chips table nor "
                "the ledger: its units are unshipped\n"),
            std::string::npos)
      << stderr_text();
  EXPECT_EQ(stderr_text().find("inventory.csv:4:"), std::string::npos) << stderr_text();
  write_text(at("inventory.csv"), "entity,country,chip,units\nE1,AE,H100-SXM,many\n");
  EXPECT_EQ(cli("reconcile l.db --inventory inventory.csv"), 2);
  EXPECT_NE(stderr_text().find("inventory.csv:2:16: BAD_QUANTITY"), std::string::npos) << stderr_text();
  // Units past 64 bits are refused as out of range, not called "not a non-negative integer".
  write_text(at("inventory.csv"), "entity,country,chip,units\nE1,AE,H100-SXM,9223372036854775808\n");
  EXPECT_EQ(cli("reconcile l.db --inventory inventory.csv"), 2);
  EXPECT_NE(stderr_text().find("'9223372036854775808' is past 9223372036854775807 (2^63 - 1)"),
            std::string::npos)
      << stderr_text();
  write_text(at("inventory.csv"), "entity,country,chip,units\nE9,AE,ZCHIP,9223372036854775807\n");
  EXPECT_EQ(cli("reconcile l.db --inventory inventory.csv"), 1) << stderr_text();
}

// The ledger's keys and the inventory's are merged in key order, whichever file order and case
// the inventory uses, on both paths; a bad inventory is refused at its first bad line in file
// order, a key listed twice counting as bad at its second row.
TEST_F(ledger_test, ReconcileMergesKeysAndRefusesTheFirstBadLine)
{
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity\n"
             "S1,2025-03-01,E1,AE,H100-SXM,8\n"
             "S2,2025-03-01,E2,IN,H100-SXM,5\n"
             "S3,2025-03-01,E3,BR,H100-NVL,7\n"
             "S4,2025-03-01,E4,FR,H100-SXM,3\n"
             "S5,2025-03-02,E4,FR,H100-SXM,-3\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv"), 0) << stderr_text();
  write_text(at("inventory.csv"),
             "entity,country,chip,units\n"
             "E3,BR,H100-NVL,7\n"
             "E2,AE,H100-SXM,1\n"
             "E0,US,b200,2\n"
             "E1,AE,H100-SXM,8\n"
             "E2,in,h100-nvl,0\n");
  for (const char* flags : {"", " --replay"}) {
    std::string csv;
    EXPECT_EQ(cli(std::string("reconcile l.db --inventory inventory.csv") + flags, &csv), 1) << stderr_text();
    EXPECT_EQ(csv,  // B200 36000, H100-SXM 15832 tpp a unit; E4 all returned and not listed: no row
              "entity,country,chip,ledger_units,reported_units,difference,difference_tpp,status\n"
              "E0,US,B200,0,2,2,72000,unshipped\n"
              "E1,AE,H100-SXM,8,8,0,0,match\n"
              "E2,AE,H100-SXM,0,1,1,15832,unshipped\n"
              "E2,IN,H100-NVL,0,0,0,0,match\n"
              "E2,IN,H100-SXM,5,0,-5,-79160,shortfall\n"
              "E3,BR,H100-NVL,7,7,0,0,match\n")
        << flags;
  }
  const std::string head = "entity,country,chip,units\nE1,AE,H100-SXM,8\n";
  for (const auto& [rows, error] :
       {// E9 sorts after E1 but is listed twice first
        std::pair{
            "E9,AE,H100-SXM,1\nE9,AE,H100-SXM,2\ne1,ae,h100-sxm,8\nE1,ae,h100-sxm,8\n",
            "inventory.csv:4:1: DUPLICATE_ID: (entity, country, chip) is listed twice: the same key as line "
            "3 (country and chip compare without case); give each key one row\n"},
        std::pair{"E2,in,h100-sxm,1\nE3,AE,H100-SXM,1\nE2,IN,H100-SXM,2\n",  // spelled in another case
                  "inventory.csv:5:1: DUPLICATE_ID: (entity, country, chip) is listed twice: the same key as "
                  "line 3"},
        // monthly inventories joined: the header again
        std::pair{
            "entity,country,chip,units\nE2,IN,H100-SXM,2\n",
            "inventory.csv:3:8: UNKNOWN_COUNTRY: 'country' is not in the countries table: the line repeats "
            "the header row (files joined together?); remove it\n"},
        std::pair{
            "E2,IN,H100-SXM,2,\n",
            "inventory.csv:3:18: WRONG_FIELD_COUNT: expected 4 fields, found 5: the line ends with a comma"},
        std::pair{"E2,IN,H100-SXM\n", "inventory.csv:3:7: WRONG_FIELD_COUNT: expected 4 fields, found 3\n"},
        // saved by a spreadsheet: said as in a log
        std::pair{
            "E2,IN,H100-SXM,\"1,200\"\n",
            "inventory.csv:3:16: BAD_QUANTITY: '1,200' is not a non-negative integer; thousands separators "
            "are not read: write the digits alone\n"},
        std::pair{"E1,AE,H100-SXM,8\nE2,QQ,H100-SXM,1\n", "inventory.csv:3:1: DUPLICATE_ID"},
        std::pair{"E2,QQ,H100-SXM,1\nE1,AE,H100-SXM,8\n", "inventory.csv:3:4: UNKNOWN_COUNTRY"},
        std::pair{"E2,Germany,H100-SXM,1\n",
                  "inventory.csv:3:4: UNKNOWN_COUNTRY: 'Germany' is not in the countries table; did you "
                  "mean 'DE'?\n"}}) {
    write_text(at("inventory.csv"), head + rows);
    for (const char* flags : {"", " --replay"}) {
      EXPECT_EQ(cli(std::string("reconcile l.db --inventory inventory.csv") + flags), 2) << rows;
      EXPECT_NE(stderr_text().find(error), std::string::npos) << rows << stderr_text();
    }
  }
}

// reconciliation.csv writes the inventory's entity and chip back as read, so they must be UTF-8
// as a log's are (a row no UTF-8 reader could read otherwise); a message quotes them escaped, so
// an id holding a line break cannot write a line of its own to stderr.
TEST_F(ledger_test, ReconcileRefusesTextThatIsNotUtf8AndQuotesIdsInMessages)
{
  write_text(at("chips.csv"),
             "chip,vendor,tpp,performance_density,datacenter\nBIG,X,4611686018427387904,1,1\n");
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity\nS1,2025-03-01,\"a\nb\",AE,BIG,1\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv --chips chips.csv"), 0) << stderr_text();
  for (const auto& [rows, error] :
       {std::pair{"E1,AE,BIG,1\nE\xc0\xaf,AE,BIG,1\n",  // overlong '/'
                  "inventory.csv:3:1: BAD_ENCODING: entity is not valid UTF-8"},
        std::pair{"E1,AE,\xed\xa0\x80,1\n",
                  "inventory.csv:2:7: BAD_ENCODING: chip is not valid UTF-8"},      // a surrogate
        std::pair{"E1,AE,B\xe2\x82,1\n", "inventory.csv:2:7: BAD_ENCODING: chip"},  // cut short
        // 3 - 1 units of 2^62 tpp: past 64 bits
        std::pair{"\"a\nb\",AE,BIG,3\n",
                  "inventory.csv:3:11: TPP_OVERFLOW: difference in tpp exceeds 64 bits for "
                  "'a\\x0ab'/'AE'/'BIG': 3 units reported, 1 in the ledger\n"}}) {
    write_text(at("inventory.csv"), std::string("entity,country,chip,units\n") + rows);
    for (const char* flags : {"", " --replay"}) {
      std::string csv;
      EXPECT_EQ(cli(std::string("reconcile l.db --chips chips.csv --inventory inventory.csv") + flags, &csv),
                2)
          << rows << csv;
      EXPECT_NE(stderr_text().find(error), std::string::npos) << rows << stderr_text();
    }
  }
}

TEST_F(ledger_test, RefusesMissingForeignAndExistingDatabases)
{
  EXPECT_EQ(cli("ledger report missing.db"), 2);
  write_text(at("not-a-ledger.db"), "hello");
  EXPECT_EQ(cli("ledger report not-a-ledger.db"), 2);
  ASSERT_EQ(cli("ledger init l.db"), 0);
  EXPECT_EQ(cli("ledger init l.db"), 2);
  // An empty ledger reports like an empty log.
  write_text(at("empty.csv"), "shipment_id,date,entity,country,chip,quantity\n");
  ASSERT_EQ(cli("ledger ingest l.db empty.csv"), 0) << stderr_text();
  const int expected = cli("report empty.csv --backend cpu --out full");
  EXPECT_EQ(cli("ledger report l.db --backend cpu --out nightly"), expected);
  expect_same_outputs(at("full"), at("nightly"));
}

// SQLite creates and deletes the files beside the ledger while it writes: an output there, by
// any path to it, would be lost or taken for the ledger's journal.
TEST_F(ledger_test, OutputsWhereSqliteKeepsTheLedgersJournalAreRefused)
{
  write_text(at("a.csv"),
             "shipment_id,date,entity,country,chip,quantity\nA1,2025-03-01,E1,AE,H100-SXM,1\n"
             "A2,2025-03-01,E1,AE,H100-SXM,0\n");
  write_text(at("p.csv"), "shipment_id,date,entity,country,chip,quantity\nP1,2025-03-02,E1,AE,H100-SXM,1\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  fs::create_symlink("l.db", at("link.db"));
  for (const std::string kind : {"journal", "wal", "shm"}) {
    const std::string name    = "l.db-" + kind;
    const std::string refused = " is where SQLite keeps the ledger l.db's " + kind +
                                " file, which it creates and deletes; name another path\n";
    EXPECT_EQ(cli("ledger ingest l.db a.csv --rejects " + name), 2) << kind;
    EXPECT_NE(stderr_text().find("capledger: --rejects " + name + refused), std::string::npos)
        << stderr_text();
    EXPECT_EQ(cli("ledger ingest l.db a.csv --rejects ./" + name), 2) << kind;
    EXPECT_NE(stderr_text().find("--rejects ./" + name + " is where"), std::string::npos) << stderr_text();
    // Through a link to the ledger, SQLite names its files after the ledger itself.
    EXPECT_EQ(cli("ledger ingest link.db a.csv --rejects " + name), 2) << kind;
    EXPECT_NE(stderr_text().find("--rejects " + name + " is where SQLite keeps the ledger link.db's"),
              std::string::npos)
        << stderr_text();
    EXPECT_EQ(cli("ledger report l.db --rejects " + name), 2) << kind;
    EXPECT_NE(stderr_text().find("capledger: --rejects " + name + refused), std::string::npos)
        << stderr_text();
    EXPECT_EQ(cli("check l.db --proposed p.csv --out " + name), 2) << kind;
    EXPECT_NE(stderr_text().find("capledger: --out " + name + refused), std::string::npos) << stderr_text();
    // Output folders too: one there would keep SQLite from writing its file.
    EXPECT_EQ(cli("ledger report l.db --backend cpu --out " + name), 2) << kind;
    EXPECT_NE(stderr_text().find("capledger: --out " + name + refused), std::string::npos) << stderr_text();
    EXPECT_EQ(cli("reconcile l.db --inventory p.csv --out " + name), 2) << kind;
    EXPECT_NE(stderr_text().find("capledger: --out " + name + refused), std::string::npos) << stderr_text();
    EXPECT_FALSE(fs::exists(at(name))) << name;
  }
  ASSERT_EQ(cli("ledger ingest l.db a.csv --rejects r.csv"), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("1 added, 1 rejected; ledger holds 1 line(s)"), std::string::npos)
      << stderr_text();
}

// Opening the ledger deletes what lies at DB-journal or DB-wal (a journal that fails its header
// check, a write-ahead log of a ledger not in WAL mode): an input there, by any path (a link, or
// standard input), was read and then lost, also by the read-only commands. Every ledger command
// refuses it before reading anything; init refuses to start beside one.
TEST_F(ledger_test, InputsWhereSqliteKeepsTheLedgersJournalAreRefused)
{
  const std::string header = "shipment_id,date,entity,country,chip,quantity\n";
  write_text(at("a.csv"), header + "A1,2025-03-01,E1,AE,H100-SXM,1\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db a.csv"), 0) << stderr_text();
  const std::string log       = header + "B1,2025-03-02,E1,AE,H100-SXM,1\n";
  const std::string inventory = "entity,country,chip,units\nE1,AE,H100-SXM,1\n";
  const std::string rules = read_text(capledger::test::datasets_dir() / "rules" / "ai-diffusion-2025.json");
  fs::create_symlink("l.db", at("link.db"));
  struct refused_input {
    std::string command;  // NAME stands for the input's path
    std::string content;
  };
  const refused_input commands[] = {
      {"ledger ingest l.db NAME", log},
      {"ledger ingest l.db a.csv --entities NAME", "entity,hq_country,status\n"},
      {"ledger report l.db --backend cpu --rules NAME", rules},
      {"ledger balances l.db --rules NAME", rules},
      {"ledger verify l.db --rules NAME", rules},
      {"reconcile l.db --inventory NAME", inventory},
      {"check link.db --proposed NAME", log},
      {"check l.db --proposed - < NAME", log}};
  const std::string db_bytes = read_text(at("l.db"));
  for (const std::string kind : {"journal", "wal"}) {
    const std::string side = "l.db-" + kind;
    fs::create_symlink(side, at("to-side"));
    for (const auto& [command, content] : commands) {
      for (const std::string& name : {side, std::string("to-side")}) {
        write_text(at(side), content);
        std::string line = command;
        line.replace(line.find("NAME"), 4, name);
        EXPECT_EQ(cli(line), 2) << line;
        EXPECT_NE(stderr_text().find(" is where SQLite keeps the ledger "), std::string::npos)
            << line << ": " << stderr_text();
        ASSERT_TRUE(fs::exists(at(side))) << line;
        EXPECT_EQ(read_text(at(side)), content) << line;
      }
    }
    fs::remove(at("to-side"));
    fs::remove(at(side));
    EXPECT_EQ(read_text(at("l.db")), db_bytes);

    write_text(at("new.db-" + kind), "mine");
    EXPECT_EQ(cli("ledger init new.db"), 2) << kind;
    EXPECT_NE(
        stderr_text().find("new.db-" + kind + " exists, where SQLite keeps the ledger's " + kind + " file"),
        std::string::npos)
        << stderr_text();
    EXPECT_EQ(read_text(at("new.db-" + kind)), "mine");
    EXPECT_FALSE(fs::exists(at("new.db")));
    fs::remove(at("new.db-" + kind));
  }
  EXPECT_EQ(cli("ledger init new.db"), 0) << stderr_text();
}

// Inits racing for one path (threads released together, so that they reach the file within
// microseconds of each other): one creates the ledger, every other is told it exists.
// An init that fails after creating its file removes it (left empty, it blocked the next init and
// read as no ledger); an empty file met by init or another command is said to be one.
TEST_F(ledger_test, InitThatFailsLeavesNoFileAndAnEmptyFileIsNamedAsSuch)
{
  std::filesystem::create_directory(at("l.db-journal"));  // where SQLite must write its journal
  EXPECT_EQ(cli("ledger init l.db"), 2);
  EXPECT_FALSE(std::filesystem::exists(at("l.db"))) << stderr_text();
  EXPECT_TRUE(std::filesystem::is_directory(at("l.db-journal")));  // not this init's to remove

  write_text(at("empty.db"), "");
  const std::string hint =
      "(it is empty, as a 'capledger ledger init' leaves it until it has finished, or if "
      "it was stopped: where none is running, remove it and run init again)";
  EXPECT_EQ(cli("ledger init empty.db"), 2);
  EXPECT_NE(stderr_text().find("already exists; not replacing it with an empty ledger " + hint),
            std::string::npos)
      << stderr_text();
  EXPECT_EQ(cli("ledger report empty.db"), 2);
  EXPECT_NE(stderr_text().find("not a capledger ledger (create one with 'capledger ledger init') " + hint),
            std::string::npos)
      << stderr_text();
  write_text(at("other.db"), "not empty");
  EXPECT_EQ(cli("ledger init other.db"), 2);
  EXPECT_EQ(stderr_text().find("it is empty"), std::string::npos) << stderr_text();
}

// A reader that finds a journal it cannot roll back (SQLite needs write access for that; a folder
// stands in here, as tests may run as root) says what blocks it, not SQLite's bare "disk I/O error".
// A ledger path that cannot be looked up (here a name past the file system's limit; also a folder
// without search permission) is exit 2 naming it, not an internal error (exit 3) from the lookup.
TEST_F(ledger_test, LedgerPathThatCannotBeLookedUpIsBadInput)
{
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity\nA1,2025-03-01,E1,DE,H100-SXM,1\n");
  write_text(at("proposed.csv"),
             "shipment_id,date,entity,country,chip,quantity\nP1,2025-03-01,E1,DE,H100-SXM,1\n");
  const std::string db = std::string(300, 'a') + ".db";
  for (const std::string& command :
       {"ledger balances " + db, "ledger report " + db, "ledger ingest " + db + " night.csv",
        "check " + db + " --proposed proposed.csv", "ledger verify " + db}) {
    EXPECT_EQ(cli(command), 2) << command << ": " << stderr_text();
    EXPECT_NE(stderr_text().find(db + ": cannot open the ledger: File name too long"), std::string::npos)
        << command << ": " << stderr_text();
  }
}

// A folder named as the ledger (a typo, or the folder the ledger lives in) is said to be one,
// where SQLite said only "disk I/O error" or "unable to open database file"; exit 2.
TEST_F(ledger_test, FormatWithOutIsNoted)
{
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity\nA1,2025-03-01,E1,DE,H100-SXM,1\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db night.csv"), 0) << stderr_text();
  EXPECT_EQ(cli("ledger report l.db --out o --format csv"), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("capledger: note: --format csv is for standard output without --out"),
            std::string::npos)
      << stderr_text();
  EXPECT_EQ(cli("ledger report l.db --out o2"), 0) << stderr_text();
  EXPECT_EQ(stderr_text().find("--format"), std::string::npos) << stderr_text();
}

TEST_F(ledger_test, LedgerPathThatIsAFolderIsSaidToBeOne)
{
  std::filesystem::create_directory(at("ledgers"));
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity\nA1,2025-03-01,E1,DE,H100-SXM,1\n");
  for (const char* command :
       {"ledger balances ledgers", "ledger report ledgers", "ledger ingest ledgers night.csv",
        "check ledgers --proposed night.csv", "ledger verify ledgers"}) {
    EXPECT_EQ(cli(command), 2) << command << ": " << stderr_text();
    EXPECT_NE(stderr_text().find("ledgers: is a folder, not a ledger file (name the file 'capledger ledger "
                                 "init' made)"),
              std::string::npos)
        << command << ": " << stderr_text();
  }
  EXPECT_TRUE(std::filesystem::is_empty(at("ledgers")));
}

// A stored line the tables given refuse (here a chips table without the line's chip) names the
// ingested file and line, which was accepted when ingested: the message says it is a stored line
// replayed under the tables given, and which tables to give, on every command that replays.
TEST_F(ledger_test, StoredLineRefusedByTheTablesGivenIsSaidToBeStored)
{
  ASSERT_EQ(cli("ledger init l.db"), 0);
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity\nA1,2025-03-01,E1,DE,H100-SXM,1\n");
  ASSERT_EQ(cli("ledger ingest l.db night.csv"), 0) << stderr_text();
  write_text(at("chips.csv"), "chip,vendor,tpp,performance_density,datacenter\nB200,NVIDIA,36000,1,1\n");
  write_text(at("proposed.csv"),
             "shipment_id,date,entity,country,chip,quantity\nP1,2025-03-02,E1,DE,B200,1\n");
  for (const std::string& command :
       {std::string("ledger report l.db --backend cpu"), std::string("ledger balances l.db"),
        std::string("check l.db --proposed proposed.csv")}) {
    EXPECT_EQ(cli(command + " --chips chips.csv"), 2) << command;
    EXPECT_NE(
        stderr_text().find("night.csv:2: UNKNOWN_CHIP: 'H100-SXM' is not in the chips table and the line "
                           "has no tpp_per_unit (a line stored in the ledger, replayed under the "
                           "countries, chips and rules tables given: give those the ledger was "
                           "ingested with)"),
        std::string::npos)
        << command << ": " << stderr_text();
  }
}

TEST_F(ledger_test, ReaderThatCannotRollBackAJournalSaysWhy)
{
  ASSERT_EQ(cli("ledger init l.db"), 0);
  write_text(at("night.csv"),
             "shipment_id,date,entity,country,chip,quantity\nA1,2025-03-01,E1,DE,H100-SXM,1\n");
  std::filesystem::create_directory(at("l.db-journal"));
  for (const char* command : {"ledger report l.db --backend cpu", "ledger ingest l.db night.csv"}) {
    EXPECT_EQ(cli(command), 2) << command;
    EXPECT_NE(
        stderr_text().find("l.db-journal, left by an ingest that did not finish, must be rolled back before "
                           "the ledger can be read, and SQLite does that only with write access"),
        std::string::npos)
        << command << ": " << stderr_text();
  }
  // A journal beside a database that is no ledger: that is the error, not the journal.
  {
    capledger::detail::sql_connection other(at("other.db").string(),
                                            capledger::detail::sql_connection::mode::create);
    other.exec("CREATE TABLE t(a)");
  }
  write_text(at("other.db-journal"), "");
  EXPECT_EQ(cli("ledger report other.db --backend cpu"), 2);
  EXPECT_NE(stderr_text().find("other.db: not a capledger ledger"), std::string::npos) << stderr_text();
  EXPECT_EQ(stderr_text().find("left by an ingest"), std::string::npos) << stderr_text();
}

TEST_F(ledger_test, ConcurrentInitsCreateOneLedgerAndRefuseTheRest)
{
  constexpr int rounds = 20, racers = 4;
  for (int round = 0; round < rounds; ++round) {
    const std::string path = at("race" + std::to_string(round) + ".db").string();
    std::atomic<int> ready{0};
    std::vector<std::string> errors(racers);
    std::vector<std::thread> threads;
    for (int t = 0; t < racers; ++t) {
      threads.emplace_back([&, t] {
        ++ready;
        while (ready.load() < racers) {}
        try {
          capledger::ledger_init(path);
        } catch (const capledger::config_error& e) {
          errors[static_cast<std::size_t>(t)] = e.what();
        }
      });
    }
    for (std::thread& t : threads) { t.join(); }
    const std::string refused = path + ": already exists; not replacing it with an empty ledger";
    EXPECT_EQ(std::count(errors.begin(), errors.end(), std::string()), 1) << "round " << round;
    for (const std::string& e : errors) {
      // (The file may still be empty, the winner not yet done: said so after the refusal.)
      EXPECT_TRUE(e.empty() || e.rfind(refused, 0) == 0) << "round " << round << ": " << e;
    }
  }
  EXPECT_EQ(cli("ledger report race0.db --backend cpu --format csv"), 0) << stderr_text();
  EXPECT_EQ(cli("ledger init race0.db"), 2);
  EXPECT_NE(stderr_text().find("race0.db: already exists; not replacing it with an empty ledger"),
            std::string::npos)
      << stderr_text();
}

}  // namespace

// ---- the running state: incremental `ledger report` -------------------------------------------

/// Nights in date order (each dated on or after the ledger's latest line), a back-dated night,
/// more nights in order, and an entities file replaced mid-way: after every night the report
/// read from the running state equals the replay of every stored line and `report` over every
/// file, byte for byte; and stderr proves which path ran, so a silent replay fails the test.
class ledger_state_test : public ledger_test {
 protected:
  /// Generated lines sorted by date (stable), split into @p chunks files chunk0.csv ...; the
  /// lines of chunks [0, late_until) with index % 11 == 0 are held back into late.csv instead.
  std::vector<std::string> dated_chunks(std::int64_t records, int chunks, int late_until, std::uint64_t seed)
  {
    std::string header;
    std::vector<std::string> lines = generated_lines(records, seed, header);
    const auto date_of = [](const std::string& l) { return l.substr(l.find(',') + 1, 10); };
    std::stable_sort(lines.begin(), lines.end(),
                     [&](const std::string& a, const std::string& b) { return date_of(a) < date_of(b); });
    std::vector<std::string> names;
    std::string late = header + "\n";
    for (int n = 0; n < chunks; ++n) {
      const std::size_t begin = lines.size() * static_cast<std::size_t>(n) / static_cast<std::size_t>(chunks);
      const std::size_t end   = lines.size() * static_cast<std::size_t>(n + 1) / static_cast<std::size_t>(chunks);
      std::string text        = header + "\n";
      for (std::size_t i = begin; i < end; ++i) { (n < late_until && i % 11 == 0 ? late : text) += lines[i] + "\n"; }
      names.push_back("chunk" + std::to_string(n) + ".csv");
      write_text(at(names.back()), text);
    }
    write_text(at("late.csv"), late);
    return names;
  }

  /// `ledger report` (incremental), `ledger report --replay` and `report` over @p files agree.
  void expect_all_paths_agree(const std::string& files, const std::string& entities, const std::string& flags,
                              const char* expected_path = "incremental")
  {
    SCOPED_TRACE(files + flags);
    fs::remove_all(at("full"));
    fs::remove_all(at("inc"));
    fs::remove_all(at("rep"));
    const std::string entities_flag = entities.empty() ? std::string() : " --entities " + entities;
    const int expected = cli("report" + files + entities_flag + " --backend cpu --out full" + flags);
    ASSERT_NE(expected, 2) << stderr_text();
    EXPECT_EQ(cli("ledger report l.db --backend cpu --out inc" + flags), expected) << stderr_text();
    EXPECT_NE(stderr_text().find(std::string("ledger report: ") + expected_path), std::string::npos) << stderr_text();
    expect_same_outputs(at("full"), at("inc"));
    EXPECT_EQ(cli("ledger report l.db --backend cpu --replay --out rep" + flags), expected) << stderr_text();
    EXPECT_NE(stderr_text().find("ledger report: replay (--replay)"), std::string::npos) << stderr_text();
    expect_same_outputs(at("full"), at("rep"));
  }
};

TEST_F(ledger_state_test, InOrderNightsBackDatedNightAndNewEntitiesAllMatchTheReplay)
{
  const auto chunks = dated_chunks(9000, 14, 10, 21);
  ASSERT_EQ(cli("ledger init l.db"), 0);
  std::string files;
  for (int n = 0; n < 10; ++n) {  // ten nights in date order: each extends the state
    ASSERT_EQ(cli("ledger ingest l.db " + chunks[static_cast<std::size_t>(n)] + (n == 0 ? " --entities entities.csv" : "")), 0)
      << stderr_text();
    EXPECT_NE(stderr_text().find("running state extended"), std::string::npos) << stderr_text();
    files += " " + chunks[static_cast<std::size_t>(n)];
    expect_all_paths_agree(files, "entities.csv", "");
  }
  // Table and JSON outputs too, and an --as-of on or after the latest date stays incremental.
  for (const std::string format : {"table", "json", "csv"}) {
    std::string from_report, from_state;
    cli("report" + files + " --entities entities.csv --backend cpu --format " + format, &from_report);
    cli("ledger report l.db --backend cpu --format " + format, &from_state);
    EXPECT_NE(stderr_text().find("ledger report: incremental"), std::string::npos) << stderr_text();
    EXPECT_EQ(from_state, from_report) << format;
  }
  expect_all_paths_agree(files, "entities.csv", " --as-of 2029-01-01 --warn-at 0.5,0.75");
  // An --as-of before the latest date needs the lines themselves: replay.
  expect_all_paths_agree(files, "entities.csv", " --as-of 2026-03-31", "replay (--as-of");

  // A back-dated night: lines from every earlier night's dates. The state is rebuilt once.
  ASSERT_EQ(cli("ledger ingest l.db late.csv"), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("running state rebuilt from every line"), std::string::npos) << stderr_text();
  files += " late.csv";
  expect_all_paths_agree(files, "entities.csv", "");

  // More nights in order; the entities file is replaced on the way (UVEU entities lose their
  // status, US-headquartered ones move to MX): UNAUTHORIZED_PATHWAY and the UVEU shares change,
  // and the state still only extends.
  std::string replaced = read_text(at("entities.csv"));
  for (const auto& [from, to] : {std::pair<std::string, std::string>{",UVEU,", ",NONE,"}, {",US,NONE,", ",MX,NONE,"}}) {
    for (auto p = replaced.find(from); p != std::string::npos; p = replaced.find(from, p + to.size())) {
      replaced.replace(p, from.size(), to);
    }
  }
  write_text(at("entities2.csv"), replaced);
  for (int n = 10; n < 14; ++n) {
    ASSERT_EQ(cli("ledger ingest l.db " + chunks[static_cast<std::size_t>(n)] + (n == 12 ? " --entities entities2.csv" : "")), 0)
      << stderr_text();
    EXPECT_NE(stderr_text().find("running state extended"), std::string::npos) << stderr_text();
    files += " " + chunks[static_cast<std::size_t>(n)];
    expect_all_paths_agree(files, n >= 12 ? "entities2.csv" : "entities.csv", "");
  }
  // Entities given to the report itself (not the stored ones).
  std::string from_report, from_state;
  const int expected = cli("report" + files + " --entities entities.csv --backend cpu --format json", &from_report);
  EXPECT_EQ(cli("ledger report l.db --entities entities.csv --backend cpu --format json", &from_state), expected);
  EXPECT_NE(stderr_text().find("ledger report: incremental"), std::string::npos) << stderr_text();
  EXPECT_EQ(from_state, from_report);
  std::string stored_entities;
  cli("ledger report l.db --backend cpu --format json", &stored_entities);
  EXPECT_NE(stored_entities, from_state);  // the replaced entities file does change the report
  // The bundled rule set named by its path: same content, same state.
  expect_all_paths_agree(files, "entities2.csv", " --rules '" + capledger::default_datasets_dir() +
                                                    "/rules/ai-diffusion-2025.json'");
  std::string findings;
  cli("ledger report l.db --backend cpu --format csv", &findings);
  EXPECT_NE(findings.find("UNAUTHORIZED_PATHWAY"), std::string::npos);
  EXPECT_NE(findings.find("LPP_ORDER_LIMIT"), std::string::npos);
  EXPECT_NE(findings.find("NVEU_CAP_EXCEEDED"), std::string::npos);
  EXPECT_NE(findings.find("COUNTRY_CAP_EXCEEDED"), std::string::npos);
  // Every row of the state, built night by night and once rebuilt, is one the lines write.
  std::string said;
  EXPECT_EQ(cli("ledger verify l.db", &said), 0) << said << stderr_text();
}

TEST_F(ledger_state_test, OtherTablesThanTheStateFollowsReplay)
{
  const auto chunks = dated_chunks(1500, 2, 0, 22);
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db " + chunks[0] + " --entities entities.csv"), 0) << stderr_text();
  // A rule set of other content: the state does not follow it, so the report replays.
  std::string rules = read_text(capledger::default_datasets_dir() + "/rules/ai-diffusion-2025.json");
  const auto title  = rules.find("\"title\": \"");
  ASSERT_NE(title, std::string::npos);
  rules.insert(title + 10, "another ");  // same thresholds, another text
  write_text(at("rules.json"), rules);
  ASSERT_NE(cli("report " + chunks[0] + " --rules rules.json --backend cpu"), 2) << stderr_text();
  {
    expect_all_paths_agree(" " + chunks[0], "entities.csv", " --rules rules.json", "replay (the running state follows other");
    // Ingesting under those rules rebuilds the state for them; then the report is incremental.
    ASSERT_EQ(cli("ledger ingest l.db " + chunks[1] + " --rules rules.json"), 0) << stderr_text();
    EXPECT_NE(stderr_text().find("running state rebuilt"), std::string::npos) << stderr_text();
    expect_all_paths_agree(" " + chunks[0] + " " + chunks[1], "entities.csv", " --rules rules.json");
  }
}

/// The bundled countries table without the rows of @p dropped, with @p added appended.
static std::string countries_without(const std::string& dropped, const std::string& added = "")
{
  std::istringstream in(read_text(capledger::default_datasets_dir() + "/countries.csv"));
  std::string countries, line;
  while (std::getline(in, line)) {
    if (line.rfind(dropped + ",", 0) != 0) { countries += line + "\n"; }
  }
  return countries + added;
}

TEST_F(ledger_state_test, StoredLinesInvalidUnderNewTablesRefuseTheNight)
{
  write_text(at("a.csv"), "shipment_id,date,entity,country,chip,quantity\nA1,2025-03-01,E1,BR,H100-SXM,10\n");
  write_text(at("b.csv"), "shipment_id,date,entity,country,chip,quantity\nB1,2025-03-02,E1,AE,H100-SXM,5\n");
  // The bundled countries without BR: a.csv's line no longer validates under them.
  write_text(at("countries.csv"), countries_without("BR"));
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db a.csv"), 0) << stderr_text();
  // The rebuild for those tables replays the stored line, which fails as it would in the file:
  // named by file and line (the ledger keeps a line's fields, not their columns: no column).
  EXPECT_EQ(cli("ledger ingest l.db b.csv --countries countries.csv"), 2);
  EXPECT_NE(stderr_text().find("capledger: ledger ingest: refused: replayed under the countries, "
                               "chips and rules tables given, a line stored in the ledger does not validate: "
                               "a.csv:2: UNKNOWN_COUNTRY: "),
            std::string::npos)
      << stderr_text();
  EXPECT_NE(
      stderr_text().find("; ingest under tables that accept every stored line, such as those the ledger "
                         "was ingested with, or start a new ledger for these tables; nothing of the night "
                         "is stored\n"),
      std::string::npos)
      << stderr_text();
  // Nothing of the night stayed: the state still stands for a.csv alone; the night goes in under
  // the ledger's tables.
  expect_all_paths_agree(" a.csv", "", "");
  ASSERT_EQ(cli("ledger ingest l.db b.csv"), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("ledger holds 2 line(s); running state extended"), std::string::npos)
      << stderr_text();
  expect_all_paths_agree(" a.csv b.csv", "", "");
}

// Tables that drop a country the stored lines ship to and add one the night ships to: kept, the
// night would leave a ledger that neither table set can report. The night is refused and the
// ledger is left as it was, byte for byte, with no rejects file.
TEST_F(ledger_state_test, NightUnderTablesTheStoredLinesFailIsRefusedAndTheLedgerUnchanged)
{
  write_text(at("a.csv"),
             "shipment_id,date,entity,country,chip,quantity\n"
             "A1,2025-03-01,E1,SG,H100-SXM,10\nA2,2025-03-01,E2,AE,H100-SXM,3\n");
  write_text(at("b.csv"),
             "shipment_id,date,entity,country,chip,quantity\n"
             "B1,2025-03-02,E1,XX,H100-SXM,5\nB2,2025-03-02,E1,AE,H100-SXM,0\n");
  write_text(at("countries.csv"), countries_without("SG", "XX,Nowhere,2,0\n"));
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db a.csv"), 0) << stderr_text();
  std::string before, after;
  const int code = cli("ledger report l.db --backend cpu --format csv", &before);
  ASSERT_NE(code, 2) << stderr_text();
  const std::string bytes = read_text(at("l.db"));

  // The night's own line fails the ledger's tables...
  EXPECT_EQ(cli("ledger ingest l.db b.csv"), 2);
  EXPECT_NE(stderr_text().find("b.csv:2:18: UNKNOWN_COUNTRY: "), std::string::npos) << stderr_text();
  // ...and the stored lines fail the night's.
  EXPECT_EQ(cli("ledger ingest l.db b.csv --countries countries.csv --rejects r.csv"), 2);
  EXPECT_NE(stderr_text().find("a line stored in the ledger does not validate: a.csv:2: UNKNOWN_COUNTRY: "),
            std::string::npos)
      << stderr_text();
  EXPECT_EQ(read_text(at("l.db")), bytes);
  for (const auto& e : fs::directory_iterator(dir_)) {  // no rejects file, no staging file, no journal
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name.rfind("r.csv", 0) != 0 && name.rfind(".r.csv", 0) != 0 && name != "l.db-journal")
        << name;
  }
  EXPECT_EQ(cli("ledger report l.db --backend cpu --format csv", &after), code) << stderr_text();
  EXPECT_NE(stderr_text().find("ledger report: incremental (running state of 2 line(s))"), std::string::npos)
      << stderr_text();
  EXPECT_EQ(after, before);
  std::string said;
  EXPECT_EQ(cli("ledger verify l.db", &said), 0) << said << stderr_text();

  // An empty ledger has no stored line to fail: the night is its state under these tables.
  ASSERT_EQ(cli("ledger init m.db"), 0);
  ASSERT_EQ(cli("ledger ingest m.db b.csv --countries countries.csv --rejects r.csv"), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("ledger holds 1 line(s); running state extended"), std::string::npos)
      << stderr_text();
  std::string from_files, from_ledger;
  const int expected =
      cli("report b.csv --countries countries.csv --rejects r2.csv --backend cpu --format csv", &from_files);
  EXPECT_EQ(cli("ledger report m.db --countries countries.csv --backend cpu --format csv", &from_ledger),
            expected);
  EXPECT_NE(stderr_text().find("ledger report: incremental"), std::string::npos) << stderr_text();
  EXPECT_EQ(from_ledger, from_files);
}

// A stored line may weigh more under the night's chips table than when it was ingested: the
// night's line then passes 64 bits only in the replay, and is named as the night's.
TEST_F(ledger_state_test, NightLinePastSixtyFourBitsUnderNewTablesIsRefused)
{
  const std::string chips = read_text(capledger::default_datasets_dir() + "/chips.csv");
  write_text(at("chips1.csv"), chips + "BIG,ACME,1,0.01,1\n");
  write_text(at("chips2.csv"), chips + "BIG,ACME,2,0.01,1\n");
  // 3 * 2^60 units at 1 TPP, then 2^60 at 2: 5 * 2^60 as ingested, 8 * 2^60 = 2^63 replayed.
  write_text(at("a.csv"),
             "shipment_id,date,entity,country,chip,quantity\nA1,2025-03-01,E1,US,BIG,3458764513820540928\n");
  write_text(at("b.csv"),
             "shipment_id,date,entity,country,chip,quantity\nB1,2025-03-02,E1,US,BIG,1152921504606846976\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db a.csv --chips chips1.csv"), 0) << stderr_text();
  EXPECT_EQ(cli("ledger ingest l.db b.csv --chips chips2.csv"), 2);
  EXPECT_NE(stderr_text().find("a line of this night, after the stored ones, does not validate: b.csv:2: "
                               "TPP_OVERFLOW: "),
            std::string::npos)
      << stderr_text();
  EXPECT_EQ(cli("ledger report l.db --chips chips1.csv --backend cpu"), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("ledger report: incremental (running state of 1 line(s))"), std::string::npos)
      << stderr_text();
}

// ---- the running state: `ledger balances` ------------------------------------------------------

/// `ledger balances` read from the running state equals `ledger balances --replay` byte for byte
/// (both formats, exit code), and stderr proves which path ran.
class balances_state_test : public ledger_state_test {
 protected:
  /// The latest date of the data lines of @p files.
  std::string latest_date(const std::vector<std::string>& files) const
  {
    std::string latest;
    for (const auto& name : files) {
      std::istringstream in(read_text(at(name)));
      std::string line;
      std::getline(in, line);  // the header
      while (std::getline(in, line)) {
        const auto comma = line.find(',');
        if (comma != std::string::npos && line.size() > comma + 10) {
          latest = std::max(latest, line.substr(comma + 1, 10));
        }
      }
    }
    return latest;
  }

  /// Both paths agree under @p flags; @p expected_path is what the default path says on stderr.
  void expect_balances_agree(const std::string& flags, const std::string& expected_path)
  {
    for (const char* format : {"csv", "table"}) {
      SCOPED_TRACE(flags + " --format " + format);
      std::string from_state, from_replay;
      const int code = cli("ledger balances l.db --format " + std::string(format) + flags, &from_state);
      ASSERT_NE(code, 2) << stderr_text();
      EXPECT_NE(stderr_text().find("capledger: ledger balances: " + expected_path), std::string::npos)
          << stderr_text();
      EXPECT_EQ(cli("ledger balances l.db --replay --format " + std::string(format) + flags, &from_replay),
                code)
          << stderr_text();
      EXPECT_NE(stderr_text().find("capledger: ledger balances: replay (--replay)\n"), std::string::npos)
          << stderr_text();
      EXPECT_EQ(from_state, from_replay);
    }
  }
};

TEST_F(balances_state_test, BalancesFromTheRunningStateEqualTheReplay)
{
  for (const std::uint64_t seed : {41, 42, 43}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    fs::remove(at("l.db"));
    // Nights in date order (2024 to 2027: every NVEU phase is the one in force at some night's
    // latest date), a back-dated night of lines held back from the first three, then the rest.
    const auto chunks = dated_chunks(6000, 5, 3, seed);
    // The third night also brings a malformed line and an id the first night stored: rejects.
    {
      std::istringstream first(read_text(at(chunks[0])));
      std::string header, repeated;
      std::getline(first, header);
      std::getline(first, repeated);
      write_text(at(chunks[2]),
                 read_text(at(chunks[2])) + "bad,2025-13-01,E,AE,H100-SXM,1,,,,\n" + repeated + "\n");
      // The fourth, an LPP order of returns alone, to a consignee and a destination no shipment
      // of it names: they are the order's all the same.
      const std::string day = latest_date({chunks[3]});
      write_text(at(chunks[3]), read_text(at(chunks[3])) + "RET1," + day +
                                    ",ZRET,SG,H100-SXM,-5,LPP,ZORDER,,\n" + "RET2," + day +
                                    ",ZRET2,MY,H100-SXM,-3,LPP,ZORDER,,\n");
    }
    ASSERT_EQ(cli("ledger init l.db"), 0);
    std::vector<std::string> ingested;
    std::int64_t lines = 0;
    for (const std::string& night :
         {chunks[0], chunks[1], chunks[2], std::string("late.csv"), chunks[3], chunks[4]}) {
      SCOPED_TRACE(night);
      ASSERT_LE(cli("ledger ingest l.db " + night + " --rejects rej-" + night +
                    (ingested.empty() ? " --entities entities.csv" : "")),
                1)
          << stderr_text();
      const std::string said = stderr_text();
      const auto holds       = said.find("ledger holds ");
      ASSERT_NE(holds, std::string::npos) << said;
      lines = std::stoll(said.substr(holds + 13));
      ingested.push_back(night);
      const std::string state  = "running state of " + std::to_string(lines) + " line(s)\n";
      const std::string latest = latest_date(ingested);
      expect_balances_agree("", state);
      expect_balances_agree(" --as-of " + latest + " --warn-at 0.5,0.75", state);
      expect_balances_agree(" --as-of 2029-01-01", state);  // after the counting window
      // Before the latest date: the lines themselves, on both paths.
      expect_balances_agree(
          " --as-of 2025-06-30",
          latest > "2025-06-30" ? "replay (--as-of is before the ledger's latest date)\n" : state);
    }
    const std::string rejected = read_text(at("rej-" + chunks[2]));
    EXPECT_NE(rejected.find("DUPLICATE_ID"), std::string::npos) << rejected;
    EXPECT_NE(rejected.find("bad,2025-13-01"), std::string::npos) << rejected;
    // The outputs compared hold every kind of row, and caps crossed.
    std::string csv;
    EXPECT_EQ(cli("ledger balances l.db --format csv", &csv), 1) << stderr_text();
    for (const char* row : {"\nCOUNTRY_CAP,", "\nNVEU_CAP,", "\nLPP_ANNUAL,", "\nLPP_ORDER,", ",exceeded,",
                            "\nLPP_ORDER,ZRET;ZRET2,MY;SG,,26900000,-126656,"}) {
      EXPECT_NE(csv.find(row), std::string::npos) << row;
    }
  }
}

// A ledger whose state has no order parties (as an older capledger left it), or whose parts an
// older capledger did not extend with the rest, or whose parties are damaged: balances replays and
// says why, `ledger report` still reads the state, and the next ingest rebuilds the state with them.
TEST_F(balances_state_test, StateWithoutCurrentOrderPartiesReplays)
{
  const auto chunks = dated_chunks(3000, 3, 0, 44);
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db " + chunks[0] + " --entities entities.csv"), 0) << stderr_text();
  const std::string absent =
      "replay (the running state has no consignees and destinations of LPP orders "
      "yet: the next ingest adds them)\n";
  alter("DROP TABLE st_order_party; DROP TABLE state_parts");
  expect_balances_agree("", absent);
  EXPECT_LE(cli("ledger report l.db --backend cpu --format csv"), 1);
  EXPECT_NE(stderr_text().find("ledger report: incremental"), std::string::npos) << stderr_text();
  ASSERT_EQ(cli("ledger ingest l.db " + chunks[1]), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("running state rebuilt from every line"), std::string::npos) << stderr_text();
  expect_balances_agree("", "running state of ");

  // An older capledger's ingest extends state_info, not the parts (which miss its night's lines):
  // the part is there but stale, which balances says as such, and verify does not call damage.
  alter("UPDATE state_parts SET lines = lines - 1; DELETE FROM st_order_party");
  expect_balances_agree("",
                        "replay (the running state's consignees and destinations of LPP orders do not stand "
                        "for the same lines and tables as the rest of it (a capledger without them ingested "
                        "since): the next ingest rebuilds them)\n");
  std::string verified;
  EXPECT_EQ(cli("ledger verify l.db", &verified), 0) << verified << stderr_text();
  EXPECT_NE(verified.find("(8 report files, every limit total"), std::string::npos) << verified;
  EXPECT_NE(verified.find("\n  ledger balances not compared: the running state's consignees and destinations "
                          "of LPP orders do not stand for the same lines"),
            std::string::npos)
      << verified;
  EXPECT_NE(verified.find("\n  reconcile units not compared: the running state's units per (entity, country, "
                          "chip) do not stand"),
            std::string::npos)
      << verified;  // both parts' records were made stale
  ASSERT_EQ(cli("ledger ingest l.db " + chunks[2]), 0) << stderr_text();
  EXPECT_NE(stderr_text().find("running state rebuilt from every line"), std::string::npos) << stderr_text();
  expect_balances_agree("", "running state of ");

  // A party naming an entity past the dictionary, or an order the state does not hold.
  for (const char* damage :
       {"INSERT INTO st_order_party SELECT order_code, 1000000, country FROM st_order_party",
        "INSERT INTO st_order_party VALUES (1000000, 0, 0)"}) {
    SCOPED_TRACE(damage);
    alter(damage);
    expect_balances_agree("", "replay (the running state is damaged (LPP order parties))\n");
    std::string said;
    EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said << stderr_text();
    EXPECT_NE(said.find("\n  ledger balances: the running state is damaged (LPP order parties)\n"),
              std::string::npos)
        << said;
    alter("DELETE FROM st_order_party WHERE order_code = 1000000 OR entity = 1000000");
    expect_balances_agree("", "running state of ");
  }
  // Parties that name codes the state holds, but no line: only a replay shows them (verify).
  std::string said;
  EXPECT_EQ(cli("ledger verify l.db", &said), 0) << said << stderr_text();
  EXPECT_NE(said.find("(8 report files, the balances, the units per key, every limit total"),
            std::string::npos)
      << said;
  // A party whose consignee and destination the order names on other lines: the balances are the
  // same, the row-for-row comparison shows it. (An order of two consignees in two countries.)
  write_text(
      at("two-party.csv"),
      "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
      "TP1,2026-06-01,ZTWO1,AE,H100-SXM,1,LPP,ZORDER\nTP2,2026-06-01,ZTWO2,SA,H100-SXM,1,LPP,ZORDER\n");
  ASSERT_EQ(cli("ledger ingest l.db two-party.csv"), 0) << stderr_text();
  EXPECT_EQ(cli("ledger verify l.db", &said), 0) << said << stderr_text();
  alter(
      "CREATE TABLE kept AS SELECT * FROM st_order_party; INSERT INTO st_order_party SELECT a.order_code, "
      "a.entity, b.country FROM st_order_party a JOIN st_order_party b ON a.order_code = b.order_code "
      "AND a.entity != b.entity AND a.country != b.country WHERE NOT EXISTS (SELECT 1 FROM st_order_party "
      "c WHERE c.order_code = a.order_code AND c.entity = a.entity AND c.country = b.country) LIMIT 1");
  {
    capledger::detail::sql_connection db(at("l.db").string(),
                                         capledger::detail::sql_connection::mode::read_only);
    ASSERT_EQ(db.query_int("SELECT (SELECT COUNT(*) FROM st_order_party) - (SELECT COUNT(*) FROM kept)"), 1);
  }
  expect_balances_agree("", "running state of ");
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said << stderr_text();
  EXPECT_NE(said.find("\n  row no stored line writes, st_order_party order code "), std::string::npos)
      << said;
  EXPECT_EQ(said.find("\n  ledger balances line "), std::string::npos) << said;
  alter("DELETE FROM st_order_party; INSERT INTO st_order_party SELECT * FROM kept; DROP TABLE kept");
  EXPECT_EQ(cli("ledger verify l.db", &said), 0) << said << stderr_text();
  alter(
      "INSERT OR IGNORE INTO st_order_party SELECT order_code, entity, (country + 1) % 50 FROM "
      "st_order_party");
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said << stderr_text();
  EXPECT_NE(said.find("\n  ledger balances line "), std::string::npos) << said;
}

// ---- the running state: `reconcile` ------------------------------------------------------------

/// `reconcile` read from the running state equals `reconcile --replay` byte for byte (files,
/// stdout, stderr past the line that names the path, exit code), and stderr proves which path ran.
class reconcile_state_test : public balances_state_test {
 protected:
  struct reconciled {
    int code = -1;
    std::string out, err, csv, summary;
  };

  /// `reconcile l.db` with @p args, whose stderr must begin `capledger: reconcile: ` @p path.
  reconciled reconcile(const std::string& args, const std::string& path)
  {
    fs::remove_all(at("rec"));
    reconciled r;
    r.code                 = cli("reconcile l.db " + args, &r.out);
    const std::string err  = stderr_text();
    const std::string said = "capledger: reconcile: " + path;
    EXPECT_EQ(err.substr(0, said.size()), said);
    r.err = err.substr(std::min(err.size(), err.find('\n') + 1));
    for (auto [name, text] :
         {std::pair{"reconciliation.csv", &r.csv}, std::pair{"summary.json", &r.summary}}) {
      *text = fs::exists(at("rec") / name) ? read_text(at("rec") / name) : "(none)";
    }
    return r;
  }

  /// Both paths agree on @p inventory under @p flags, with --out and without; the default path
  /// says @p expected_path. @return the state path's CSV without --out (stdout)
  std::string expect_reconcile_agree(const std::string& inventory, const std::string& flags,
                                     const std::string& expected_path)
  {
    std::string csv;
    for (const char* out : {" --out rec", ""}) {
      const std::string args = "--inventory " + inventory + out + flags;
      SCOPED_TRACE(args);
      const reconciled state  = reconcile(args, expected_path);
      const reconciled replay = reconcile(args + " --replay", "replay (--replay)\n");
      EXPECT_TRUE(state.code == 0 || state.code == 1 || state.code == 2) << state.code;
      EXPECT_EQ(state.code, replay.code);
      EXPECT_EQ(state.out, replay.out);
      EXPECT_EQ(state.err, replay.err);
      EXPECT_EQ(state.csv, replay.csv);
      EXPECT_EQ(state.summary, replay.summary);
      if (*out == '\0') { csv = state.out; }
    }
    return csv;
  }

  /// An inventory of the ledger's keys (reconciled against an empty one, on the replay path) with
  /// rows matched, short, over, left out or spelled in lower case, and @p extra rows after them
  /// (for entities `Z...`, which it leaves out).
  void write_inventory_of_ledger_keys(const std::string& name, const std::string& extra)
  {
    write_text(at("empty.csv"), "entity,country,chip,units\n");
    std::string keys;
    ASSERT_LE(cli("reconcile l.db --inventory empty.csv --replay", &keys), 1) << stderr_text();
    std::istringstream in(keys);
    std::string line, text = "entity,country,chip,units\n";
    std::getline(in, line);  // the header
    for (int i = 0; std::getline(in, line); ++i) {
      std::vector<std::string> f;
      std::istringstream cells(line);
      for (std::string cell; std::getline(cells, cell, ',');) { f.push_back(cell); }
      ASSERT_EQ(f.size(), 8U) << line;
      const std::int64_t ledger = std::stoll(f[3]);
      std::int64_t reported     = std::max<std::int64_t>(ledger, 0);
      if (i % 5 == 1) { reported = std::max<std::int64_t>(ledger - 1, 0); }
      if (i % 5 == 2) { reported += 3; }
      if (i % 5 == 3 || f[0][0] == 'Z') { continue; }
      if (i % 5 == 4) {
        for (std::string* s : {&f[1], &f[2]}) {
          std::transform(s->begin(), s->end(), s->begin(), [](unsigned char c) { return std::tolower(c); });
        }
      }
      text += f[0] + "," + f[1] + "," + f[2] + "," + std::to_string(reported) + "\n";
    }
    write_text(at(name), text + extra);
  }
};

TEST_F(reconcile_state_test, ReconcileFromTheRunningStateEqualsTheReplay)
{
  // Keys worked by hand: ZOVR's line prices H100-SXM (15832 tpp in the table) at 999 a unit;
  // ZADH's chip is outside the table, priced by its line; ZFULL ships 5 and returns 5 a night
  // later; ZREJ's only line is rejected; nothing at all is shipped to ZNONE or ZZERO.
  const std::string hand_rows =
      "ZOVR,AE,H100-SXM,6\nZADH,fr,Zchip-9,5\nZFULL,IN,h100-nvl,2\nZNONE,AE,H100-SXM,4\n"
      "ZREJ,AE,H100-SXM,1\nZZERO,AE,B200,0\n";
  for (const std::uint64_t seed : {51, 52}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    fs::remove(at("l.db"));
    const auto chunks = dated_chunks(6000, 5, 3, seed);
    {
      const auto append = [&](const std::string& chunk, const std::string& rows) {
        write_text(at(chunk), read_text(at(chunk)) + rows);
      };
      const std::string day0 = latest_date({chunks[0]}), day1 = latest_date({chunks[1]});
      append(chunks[0], "OVR1," + day0 + ",ZOVR,AE,H100-SXM,4,,,,999\nADH1," + day0 +
                            ",ZADH,FR,zchip-9,3,,,,100\nFULL1," + day0 + ",ZFULL,IN,H100-NVL,5,,,,\n");
      append(chunks[1], "FULL2," + day1 + ",ZFULL,IN,H100-NVL,-5,,,,\n");
      // Rejected: a malformed date, and an id the first night stored.
      std::istringstream first(read_text(at(chunks[0])));
      std::string header, repeated;
      std::getline(first, header);
      std::getline(first, repeated);
      append(chunks[2], "REJ1,2025-13-01,ZREJ,AE,H100-SXM,1,,,,\n" + repeated + "\n");
    }
    ASSERT_EQ(cli("ledger init l.db"), 0);
    std::vector<std::string> ingested;
    for (const std::string& night :
         {chunks[0], chunks[1], chunks[2], std::string("late.csv"), chunks[3], chunks[4]}) {
      SCOPED_TRACE(night);
      ASSERT_LE(cli("ledger ingest l.db " + night + " --rejects rej-" + night +
                    (ingested.empty() ? " --entities entities.csv" : "")),
                1)
          << stderr_text();
      const std::string said = stderr_text();
      const auto holds       = said.find("ledger holds ");
      ASSERT_NE(holds, std::string::npos) << said;
      const std::string state =
          "running state of " + std::to_string(std::stoll(said.substr(holds + 13))) + " line(s)\n";
      ingested.push_back(night);
      write_inventory_of_ledger_keys("inventory.csv", hand_rows);
      const std::string latest = latest_date(ingested);
      for (const std::string& as_of :
           {std::string(), " --as-of " + latest, std::string(" --as-of 2029-01-01"),
            std::string(" --as-of 2025-06-30")}) {
        const std::string path = !as_of.empty() && latest > as_of.substr(9)
                                     ? "replay (--as-of is before the ledger's latest date)\n"
                                     : state;
        expect_reconcile_agree("empty.csv", as_of, path);
        EXPECT_EQ(expect_reconcile_agree("inventory.csv", as_of, path).rfind("entity,", 0), 0U);
      }
    }
    EXPECT_NE(read_text(at("rej-" + chunks[2])).find("REJ1,2025-13-01"), std::string::npos);
    EXPECT_NE(read_text(at("rej-" + chunks[2])).find("DUPLICATE_ID"), std::string::npos);
    const std::string csv = expect_reconcile_agree("inventory.csv", "", "running state of ");
    for (const char* row :
         {"\nZOVR,AE,H100-SXM,4,6,2,31664,surplus\n", "\nZADH,FR,ZCHIP-9,3,5,2,,surplus\n",
          "\nZFULL,IN,H100-NVL,0,2,2,26728,surplus\n", "\nZNONE,AE,H100-SXM,0,4,4,63328,unshipped\n",
          "\nZREJ,AE,H100-SXM,0,1,1,15832,unshipped\n", "\nZZERO,AE,B200,0,0,0,0,match\n", ",match\n",
          ",shortfall\n", ",surplus\n"}) {
      EXPECT_NE(csv.find(row), std::string::npos) << row;
    }
    // Shipped and all returned, and not listed: no row.
    EXPECT_EQ(expect_reconcile_agree("empty.csv", "", "running state of ").find("\nZFULL,"),
              std::string::npos);

    // Bad inventories: the same error, file:line:column, on both paths.
    const std::string head = "entity,country,chip,units\nZOVR,AE,H100-SXM,6\n";
    write_text(at("dup.csv"), head + "ZOVR,ae,h100-sxm,7\n");
    write_text(at("units.csv"), head + "ZADH,FR,ZCHIP-9,-1\n");
    write_text(at("country.csv"), head + "ZADH,QQ,ZCHIP-9,1\n");
    for (const auto& [inventory, error] : {std::pair{"dup.csv", "dup.csv:3:1: DUPLICATE_ID"},
                                           std::pair{"units.csv", "units.csv:3:17: BAD_QUANTITY"},
                                           std::pair{"country.csv", "country.csv:3:6: UNKNOWN_COUNTRY"}}) {
      expect_reconcile_agree(inventory, "", "running state of ");
      EXPECT_EQ(cli(std::string("reconcile l.db --inventory ") + inventory), 2);
      EXPECT_NE(stderr_text().find(error), std::string::npos) << stderr_text();
    }
  }
}

// A ledger whose state has no units part (as an older capledger left it), or whose part an older
// capledger did not extend with the rest, replays reconcile, saying why, while balances and
// `ledger report` still read the state; the next ingest rebuilds it with the part. Under other
// chips than the state follows, reconcile replays. Damaged units replay, and verify names them.
TEST_F(reconcile_state_test, StateWithoutCurrentUnitsReplays)
{
  const auto chunks = dated_chunks(3000, 4, 0, 53);
  write_text(at("inventory.csv"), "entity,country,chip,units\nZ1,AE,H100-SXM,2\n");
  ASSERT_EQ(cli("ledger init l.db"), 0);
  ASSERT_EQ(cli("ledger ingest l.db " + chunks[0] + " --entities entities.csv"), 0) << stderr_text();
  const std::string absent =
      "replay (the running state has no units per (entity, country, chip) yet: the next ingest adds them)\n";
  const auto rebuilt_by = [&](const std::string& night) {
    ASSERT_EQ(cli("ledger ingest l.db " + night), 0) << stderr_text();
    EXPECT_NE(stderr_text().find("running state rebuilt from every line"), std::string::npos)
        << stderr_text();
    expect_reconcile_agree("inventory.csv", "", "running state of ");
  };
  // A ledger of the capledger before the part: no table, no record.
  alter("DROP TABLE st_units; DELETE FROM state_parts WHERE name = 'units'");
  expect_reconcile_agree("inventory.csv", "", absent);
  expect_balances_agree("", "running state of ");
  EXPECT_LE(cli("ledger report l.db --backend cpu --format csv"), 1);
  EXPECT_NE(stderr_text().find("ledger report: incremental"), std::string::npos) << stderr_text();
  rebuilt_by(chunks[1]);

  // An older capledger's ingest extends state_info and the parts it knows, not this one: the
  // part is there but stale, which reconcile says as such, and verify does not call damage.
  alter("UPDATE state_parts SET lines = lines - 1 WHERE name = 'units'");
  expect_reconcile_agree("inventory.csv", "",
                         "replay (the running state's units per (entity, country, chip) do not stand for the "
                         "same lines and tables as the rest of it (a capledger without them ingested since): "
                         "the next ingest rebuilds them)\n");
  expect_balances_agree("", "running state of ");
  std::string verified;
  EXPECT_EQ(cli("ledger verify l.db", &verified), 0) << verified << stderr_text();
  EXPECT_NE(verified.find("(8 report files, the balances, every limit total"), std::string::npos) << verified;
  // The capledger of the order parties alone rebuilds the state clearing state_parts, not st_units.
  alter("DELETE FROM state_parts WHERE name = 'units'");
  expect_reconcile_agree("inventory.csv", "",
                         "replay (the running state's units per (entity, country, chip) do not stand for the "
                         "same lines and tables as the rest of it (a capledger without them ingested since): "
                         "the next ingest rebuilds them)\n");
  rebuilt_by(chunks[2]);

  // Other chips than the state's: their tpp per unit prices the difference.
  const std::string chips = read_text(capledger::default_datasets_dir() + "/chips.csv");
  write_text(at("chips.csv"), chips + "ZCHIP,V,1,0.01,1\n");
  expect_reconcile_agree("inventory.csv", " --chips chips.csv",
                         "replay (the running state follows other countries, chips or rules tables)\n");

  // Damage: a key past the entities, a row of no line.
  std::string said;
  for (const char* damage : {"INSERT INTO st_units VALUES (1000000 * 65536 * 65536, 1, 5, 0)",
                             "UPDATE st_units SET a = 0 WHERE key = (SELECT MIN(key) FROM st_units)"}) {
    SCOPED_TRACE(damage);
    alter("CREATE TABLE kept AS SELECT * FROM st_units; " + std::string(damage));
    expect_reconcile_agree("inventory.csv", "", "replay (the running state is damaged (units))\n");
    EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said << stderr_text();
    EXPECT_NE(said.find("\n  reconcile units: the running state is damaged (units)\n"), std::string::npos)
        << said;
    alter("DELETE FROM st_units; INSERT INTO st_units SELECT * FROM kept; DROP TABLE kept");
  }
  EXPECT_EQ(cli("ledger verify l.db", &said), 0) << said << stderr_text();
  EXPECT_NE(said.find("(8 report files, the balances, the units per key, every limit total"),
            std::string::npos)
      << said;
  // Units that name codes the state holds, but not what the lines give: only a replay shows them.
  for (const char* damage :
       {"UPDATE st_units SET b = b + 1 WHERE key = (SELECT MAX(key) FROM st_units)",
        "DELETE FROM st_units WHERE key = (SELECT MIN(key) FROM st_units)",
        "INSERT INTO st_units SELECT key + 1, a, b, c FROM st_units WHERE key + 1 NOT IN "
        "(SELECT key FROM st_units) LIMIT 1"}) {
    SCOPED_TRACE(damage);
    alter("CREATE TABLE kept AS SELECT * FROM st_units; " + std::string(damage));
    EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said << stderr_text();
    EXPECT_NE(said.find("\n  reconcile units line "), std::string::npos) << said;
    alter("DELETE FROM st_units; INSERT INTO st_units SELECT * FROM kept; DROP TABLE kept");
  }
  // A line count no output prints: only the row-for-row comparison shows it.
  alter(
      "CREATE TABLE kept AS SELECT * FROM st_units; UPDATE st_units SET a = a + 1 WHERE key = "
      "(SELECT MAX(key) FROM st_units)");
  expect_reconcile_agree("inventory.csv", "", "running state of ");
  EXPECT_EQ(cli("ledger verify l.db", &said), 1) << said << stderr_text();
  EXPECT_NE(said.find("\n  row no stored line writes, st_units key "), std::string::npos) << said;
  EXPECT_NE(said.find(" missing (the stored lines write it)\n"), std::string::npos) << said;
  alter("DELETE FROM st_units; INSERT INTO st_units SELECT * FROM kept; DROP TABLE kept");
  EXPECT_EQ(cli("ledger verify l.db", &said), 0) << said << stderr_text();
}
