/// @file device_csv_test.cpp
/// @brief `device_csv::read_plain_line` and `hash_bytes` (kernels/device_csv.cuh) on the host:
/// the hash bit for bit against `detail::hash_bytes`, hand-checked lines, a differential against
/// `shipment_log_builder` on random messy logs, and the share of a generated log read as plain.
#include "device_read.hpp"
#include "device_read_differential.hpp"
#include "fast_csv.hpp"
#include "string_index.hpp"
#include "test_support.hpp"

#include <capledger/generate.hpp>
#include <capledger/shipments.hpp>

#include <gtest/gtest.h>

#include <ctime>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace capledger::test {
namespace {

// ---------------------------------------------------------------------------------------------
// a. The hash.

TEST(DeviceCsvHash, EqualsHostHashOnEveryShortLengthAndLongOnes)
{
  std::mt19937_64 rng(20261128);
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n <= 100; ++n) { lengths.push_back(n); }
  for (const std::size_t n : {127, 128, 129, 255, 256, 257, 1000, 4096, 65537}) { lengths.push_back(n); }
  for (const std::size_t n : lengths) {
    for (int round = 0; round < 20; ++round) {
      std::string bytes(n, '\0');
      for (char& b : bytes) { b = static_cast<char>(rng()); }
      if (round == 1) { std::fill(bytes.begin(), bytes.end(), '\xff'); }  // sign extension of every byte
      if (round == 2) { std::fill(bytes.begin(), bytes.end(), '\0'); }
      const detail::hash_key& key = detail::process_hash_key();
      ASSERT_EQ(device_csv::hash_bytes(bytes.data(), static_cast<std::uint32_t>(n), key.seed, key.block),
                detail::hash_bytes(bytes))
          << "length " << n << " round " << round;
    }
  }
  // Different texts of one length hash apart (a hash that ignores bytes would still be "equal").
  EXPECT_NE(device_csv::hash_bytes("S0001", 5, 0, 0), device_csv::hash_bytes("S0002", 5, 0, 0));
  EXPECT_NE(device_csv::hash_bytes("abcdefghijklmnopq", 17, 0, 0),
            device_csv::hash_bytes("abcdefghijklmnopr", 17, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// b. Hand-checked lines. Expected days come from the C library's timegm, codes from the bundled
// tables' maps, TPP per unit from datasets/chips.csv as written there.

constexpr std::int64_t h100_tpp = 15832;  // H100-SXM
constexpr std::int64_t a100_tpp = 4992;   // A100
const char* const full_header =
    "shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit";

std::int32_t day_of(int year, int month, int day)
{
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon  = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = 12;
  return static_cast<std::int32_t>(timegm(&tm) / 86400);
}

int country(const char* iso)
{
  return bundled().countries.code_of.at(iso);
}
int chip(const char* key)
{
  return bundled().chips.code_of.at(key);
}

device_csv::line_layout layout_of(const std::string& header)
{
  detail::fast_csv_reader reader(header);
  EXPECT_EQ(reader.next(), detail::csv_status::record);
  return detail::make_line_layout(detail::csv_header(reader.fields(), "h.csv"));
}

const device_csv::tables& device_tables()
{
  static const device_csv::tables t = *detail::make_device_tables(bundled().countries, bundled().chips);
  return t;
}

/// A line's reading, with its texts.
struct read_result {
  device_csv::plain_line values;
  std::string text;
  [[nodiscard]] std::string span(device_csv::text_span s) const { return text.substr(s.offset, s.length); }
};

/// @p line (no `\n`) read under @p header, placed after a prefix so that offsets are not 0.
std::optional<read_result> read_line(const std::string& header, const std::string& line)
{
  read_result r;
  r.text                   = "PREFIX\n" + line + "\nNEXT";
  const auto layout        = layout_of(header);
  const std::uint32_t from = 7, to = static_cast<std::uint32_t>(7 + line.size());
  if (!device_csv::read_plain_line(r.text.data(), from, to, layout, device_tables(), r.values)) {
    return std::nullopt;
  }
  return r;
}

TEST(DeviceCsvLine, FullLineReadsEveryValue)
{
  const auto r = read_line(full_header, "S1,2025-03-01,ACME,DE,H100-SXM,20,LPP,O-7,NVIDIA,");
  ASSERT_TRUE(r);
  const auto& v = r->values;
  EXPECT_EQ(v.day, day_of(2025, 3, 1));
  EXPECT_EQ(v.day, 20148);  // 55 years of 365 days + 14 leap days + January + February
  EXPECT_EQ(v.country, country("DE"));
  EXPECT_EQ(v.chip, chip("H100-SXM"));
  EXPECT_EQ(v.pathway, static_cast<std::uint8_t>(pathway::lpp));
  EXPECT_EQ(v.quantity, 20);
  EXPECT_EQ(v.tpp, 20 * h100_tpp);
  EXPECT_EQ(r->span(v.id), "S1");
  EXPECT_EQ(r->span(v.entity), "ACME");
  EXPECT_EQ(r->span(v.order), "O-7");
  EXPECT_EQ(r->span(v.exporter), "NVIDIA");
  EXPECT_EQ(v.id_hash, detail::hash_bytes("S1"));
  EXPECT_EQ(v.entity_hash, detail::hash_bytes("ACME"));
  EXPECT_EQ(v.order_hash, detail::hash_bytes("O-7"));
  EXPECT_EQ(v.exporter_hash, detail::hash_bytes("NVIDIA"));
}

TEST(DeviceCsvLine, CrlfSpacesTabsAndLowerCase)
{
  const auto r =
      read_line(full_header, " S2 ,\t2024-02-29\t, Big Co ,ae,\th100-sxm ,  -3 , lpp , ,\tAMD x\t,\r");
  ASSERT_TRUE(r);
  const auto& v = r->values;
  EXPECT_EQ(v.day, day_of(2024, 2, 29));
  EXPECT_EQ(v.country, country("AE"));
  EXPECT_EQ(v.chip, chip("H100-SXM"));
  EXPECT_EQ(v.pathway, static_cast<std::uint8_t>(pathway::lpp));
  EXPECT_EQ(v.quantity, -3);
  EXPECT_EQ(v.tpp, -3 * h100_tpp);
  EXPECT_EQ(r->span(v.id), "S2");
  EXPECT_EQ(r->span(v.entity), "Big Co");   // inner space kept
  EXPECT_EQ(r->span(v.order), "S2");        // blank order_id: the shipment id
  EXPECT_EQ(r->span(v.exporter), "AMD x");  // inner space kept, tabs around trimmed
  EXPECT_EQ(v.order_hash, detail::hash_bytes("S2"));
  EXPECT_EQ(v.exporter_hash, detail::hash_bytes("AMD x"));

  // The CR of a CRLF line end belongs to the last field only: it is stripped before trimming.
  const auto crlf = read_line(full_header, "S3,2025-01-02,E,FR,A100,1,,,V,42\r");
  ASSERT_TRUE(crlf);
  EXPECT_EQ(crlf->values.tpp, 42);
  const auto crlf_spaces = read_line(full_header, "S3,2025-01-02,E,FR,A100,1,,,V, 42 \r");
  ASSERT_TRUE(crlf_spaces);
  EXPECT_EQ(crlf_spaces->values.tpp, 42);
  // Two CRs: a control byte in the line: the host's.
  EXPECT_FALSE(read_line(full_header, "S3,2025-01-02,E,FR,A100,1,,,V,42\r\r"));
}

TEST(DeviceCsvLine, AbsentOptionalColumnsAndOtherOrders)
{
  const std::string six = "shipment_id,date,entity,country,chip,quantity";
  const auto r          = read_line(six, "S4,2000-02-29,E1,US,A100,7");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->values.day, day_of(2000, 2, 29));
  EXPECT_EQ(r->values.pathway, static_cast<std::uint8_t>(pathway::license));
  EXPECT_EQ(r->values.tpp, 7 * a100_tpp);
  EXPECT_EQ(r->span(r->values.order), "S4");
  EXPECT_EQ(r->span(r->values.exporter), "");
  EXPECT_EQ(r->values.exporter_hash, detail::hash_bytes(""));
  EXPECT_FALSE(read_line(six, "S4,2000-02-29,E1,US,A100,7,"));  // a field too many
  EXPECT_FALSE(read_line(six, "S4,2000-02-29,E1,US,A100"));     // a field too few

  // Columns in another order, names in any case with spaces, unknown columns between them.
  const std::string mixed =
      " Quantity ,note,CHIP,country,Entity,DATE,Region,shipment_id,Order_ID,pathway,tpp_per_unit";
  const auto m = read_line(mixed, "-12,hello there,a100,jp,E9,2028-12-31,x,S5,ORD,aca,");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->values.quantity, -12);
  EXPECT_EQ(m->values.chip, chip("A100"));
  EXPECT_EQ(m->values.country, country("JP"));
  EXPECT_EQ(m->values.day, day_of(2028, 12, 31));
  EXPECT_EQ(m->values.pathway, static_cast<std::uint8_t>(pathway::aca));
  EXPECT_EQ(m->values.tpp, -12 * a100_tpp);
  EXPECT_EQ(m->span(m->values.id), "S5");
  EXPECT_EQ(m->span(m->values.entity), "E9");
  EXPECT_EQ(m->span(m->values.order), "ORD");
  EXPECT_EQ(m->values.order_hash, detail::hash_bytes("ORD"));
  // The unknown columns' text does not matter, unless it is not plain.
  EXPECT_TRUE(read_line(mixed, "-12,any ~ text!,a100,jp,E9,2028-12-31,,S5,ORD,aca,"));
  EXPECT_TRUE(read_line(mixed, "-12,\"q, r\",a100,jp,E9,2028-12-31,x,S5,ORD,aca,"));    // quoted whole
  EXPECT_FALSE(read_line(mixed, "-12,\"q\"\"\",a100,jp,E9,2028-12-31,x,S5,ORD,aca,"));  // a doubled quote
  EXPECT_FALSE(read_line(mixed, "-12,caf\xc3\xa9,a100,jp,E9,2028-12-31,x,S5,ORD,aca,"));
}

TEST(DeviceCsvLine, TppPerUnitOverridesTheTable)
{
  const auto r = read_line(full_header, "S6,2025-06-30,E,DE,H100-SXM,-4,UVEU,,,1000");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->values.tpp, -4000);
  EXPECT_EQ(r->values.chip, chip("H100-SXM"));
  EXPECT_EQ(r->values.pathway, static_cast<std::uint8_t>(pathway::uveu));
  // Not a positive plain integer: the host's (which rejects or reads `+5` its own way).
  for (const char* tpp : {"0", "-5", "+5", "5.0", "1e3", "0x10", "1000000000000000000"}) {
    EXPECT_FALSE(read_line(full_header, std::string("S6,2025-06-30,E,DE,H100-SXM,4,,,,") + tpp)) << tpp;
  }
  // A chip priced only by tpp_per_unit (not in the table): the host's ad-hoc chip.
  EXPECT_FALSE(read_line(full_header, "S7,2025-06-30,E,DE,XPU-9,4,,,,100"));
}

TEST(DeviceCsvLine, DatesAsTheCalendarHasThem)
{
  const auto day = [](const char* date) -> std::optional<std::int32_t> {
    const auto r = read_line(full_header, std::string("S,") + date + ",E,DE,A100,1,,,,");
    return r ? std::optional(r->values.day) : std::nullopt;
  };
  EXPECT_EQ(day("1970-01-01"), 0);
  EXPECT_EQ(day("2024-02-29"), day_of(2024, 2, 29));
  EXPECT_EQ(day("2000-02-29"), day_of(2000, 2, 29));
  EXPECT_EQ(day("2400-02-29"), day_of(2400, 2, 29));
  EXPECT_EQ(day("1969-12-31"), -1);
  EXPECT_EQ(day("0001-01-01"), -719162);  // 1969 years back: 1969 x 365 + 477 leap days
  EXPECT_EQ(day("9999-12-31"), 2932896);
  EXPECT_EQ(day("2025-04-30"), day_of(2025, 4, 30));
  EXPECT_EQ(day("2025-12-31"), day_of(2025, 12, 31));
  for (const char* bad :
       {"2023-02-29", "1900-02-29", "2100-02-29", "2025-02-30", "2025-04-31", "2025-06-31", "2025-09-31",
        "2025-11-31", "2025-13-01", "2025-00-10", "2025-01-00", "2025-01-32", "0000-01-01", "2025-1-01",
        "2025/01/01", "20250101",   "2025-01-1 ", "2025-01-0a", "+025-01-01", "2025--1-01", ""}) {
    EXPECT_FALSE(day(bad)) << bad;
  }
}

TEST(DeviceCsvLine, QuantitiesPlainOrTheHosts)
{
  const auto quantity = [](const std::string& q) -> std::optional<std::int64_t> {
    const auto r = read_line(full_header, "S,2025-01-01,E,DE,A100," + q + ",,,,");
    return r ? std::optional(r->values.quantity) : std::nullopt;
  };
  EXPECT_EQ(quantity("1"), 1);
  EXPECT_EQ(quantity("-1"), -1);
  EXPECT_EQ(quantity("007"), 7);
  EXPECT_EQ(quantity("999999999999999"), 999999999999999);
  for (const char* bad : {"0", "-0", "000", "+5", "-", "", "5.", "1,0", "1 0", "--1", "- 1", "0x1", "1e2",
                          "9999999999999999999", "12345678901234567890", "-9223372036854775808"}) {
    EXPECT_FALSE(quantity(bad)) << bad;
  }
}

TEST(DeviceCsvLine, TppOverflowIsTheHosts)
{
  // INT64_MAX = 649657 x 14197294936951: exactly at the bound is plain, one unit more is not.
  constexpr std::int64_t factor = 649657, units = 14197294936951;
  static_assert(factor * units == INT64_MAX);
  const auto line = [](std::int64_t q, std::int64_t tpp) {
    return "S,2025-01-01,E,DE,A100," + std::to_string(q) + ",,,," + std::to_string(tpp);
  };
  const auto at_bound = read_line(full_header, line(units, factor));
  ASSERT_TRUE(at_bound);
  EXPECT_EQ(at_bound->values.tpp, INT64_MAX);
  const auto negative = read_line(full_header, line(-units, factor));
  ASSERT_TRUE(negative);
  EXPECT_EQ(negative->values.tpp, -INT64_MAX);
  EXPECT_FALSE(read_line(full_header, line(units + 1, factor)));
  EXPECT_FALSE(read_line(full_header, line(-units - 1, factor)));
  EXPECT_FALSE(read_line(full_header, line(1000, 100000000000000000)));
  EXPECT_FALSE(read_line(full_header, line(999999999999999999, 10)));  // 10^19 - 10 > 2^63 - 1
  // From the table's price too: 10^15 x 15832 overflows.
  EXPECT_FALSE(read_line(full_header, "S,2025-01-01,E,DE,H100-SXM,999999999999999999,,,,"));
}

// A field quoted whole, with no quote inside and nothing around its quotes, is read: its value is
// what lies between the quotes, spaces and commas included (RFC 4180; the host's reader agrees).
TEST(DeviceCsvLine, FieldsQuotedWhole)
{
  const auto q = read_line(
      full_header, "\"S8\",\"2025-05-05\",\" E, Inc \",\"de\",\"a100\",\"-2\",\"nveu\",\"\",\"V\",\"\"");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->span(q->values.id), "S8");
  EXPECT_EQ(q->span(q->values.entity), " E, Inc ");  // quoted: not trimmed
  EXPECT_EQ(q->values.entity_hash, detail::hash_bytes(" E, Inc "));
  EXPECT_EQ(q->span(q->values.order), "S8");  // "" is empty: the shipment id
  EXPECT_EQ(q->span(q->values.exporter), "V");
  EXPECT_EQ(q->values.country, country("DE"));
  EXPECT_EQ(q->values.quantity, -2);
  EXPECT_EQ(q->values.day, day_of(2025, 5, 5));
  EXPECT_EQ(q->values.pathway, static_cast<std::uint8_t>(pathway::nveu));
  const auto crlf = read_line(full_header, "S8,2025-05-05,E,DE,A100,2,NVEU,O,\"V, Ltd\",\r");
  ASSERT_TRUE(crlf);
  EXPECT_EQ(crlf->span(crlf->values.exporter), "V, Ltd");
  const auto last = read_line(full_header, "S8,2025-05-05,E,DE,A100,2,NVEU,O,V,\"7\"\r");
  ASSERT_TRUE(last);
  EXPECT_EQ(last->values.tpp, 14);
}

TEST(DeviceCsvLine, EveryOtherLineIsTheHosts)
{
  const std::string ok = "S8,2025-05-05,E,DE,A100,2,NVEU,O,V,";
  ASSERT_TRUE(read_line(full_header, ok));
  const char* const hosts[] = {
      "\"S\"\"8\",2025-05-05,E,DE,A100,2,NVEU,O,V,",      // a doubled quote inside
      " \"S8\",2025-05-05,E,DE,A100,2,NVEU,O,V,",         // a space before the opening quote
      "\"S8\" ,2025-05-05,E,DE,A100,2,NVEU,O,V,",         // a space after the closing quote
      "\"S8\"x,2025-05-05,E,DE,A100,2,NVEU,O,V,",         // text after the closing quote
      "S8,2025-05-05,E,DE,A100,2,NVEU,O,\"V\r",           // never closed: a record over lines
      "S8,2025-05-05,\"E\xc3\xa9\",DE,A100,2,NVEU,O,V,",  // not ASCII inside quotes
      "S8,2025-05-05,\"E\x01\",DE,A100,2,NVEU,O,V,",      // a control byte inside quotes
      "S8,2025-05-05,E\"x,DE,A100,2,NVEU,O,V,",           // a stray quote
      "S8,2025-05-05,\"E",                                // a quoted line break's first line
      "S8,2025-05-05,M\xc3\xbcller,DE,A100,2,NVEU,O,V,",  // UTF-8 (valid, but not ASCII)
      "S8,2025-05-05,E\xff,DE,A100,2,NVEU,O,V,",          // not UTF-8
      "S8,2025-05-05,E\x01,DE,A100,2,NVEU,O,V,",          // control byte
      "S8,2025-05-05,E\x7f,DE,A100,2,NVEU,O,V,",          // DEL
      "S8,2025-05-05,E\r,DE,A100,2,NVEU,O,V,",            // a CR inside the line
      "S8,2025-05-05,E,XX,A100,2,NVEU,O,V,",              // unknown country
      "S8,2025-05-05,E,D,A100,2,NVEU,O,V,",
      "S8,2025-05-05,E,DEU,A100,2,NVEU,O,V,",
      "S8,2025-05-05,E,D3,A100,2,NVEU,O,V,",
      "S8,2025-05-05,E,DE,A10,2,NVEU,O,V,",  // unknown chip
      "S8,2025-05-05,E,DE,A100 X,2,NVEU,O,V,",
      "S8,2025-05-05,E,DE,A100,2,LICENCE,O,V,",  // unknown pathway
      ",2025-05-05,E,DE,A100,2,NVEU,O,V,",       // empty id
      "S8,2025-05-05, ,DE,A100,2,NVEU,O,V,",     // empty entity (after trimming)
      "S8,2025-05-05,E,DE,,2,NVEU,O,V,",         // empty chip
      "S8,2025-05-05,E,DE,A100,2,NVEU,O,V",      // a field too few
      "S8,2025-05-05,E,DE,A100,2,NVEU,O,V,,",    // a field too many
      "shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit",  // header again
      "",
      "\r",
  };
  for (const char* line : hosts) { EXPECT_FALSE(read_line(full_header, line)) << line; }
}

TEST(DeviceCsvLine, LayoutsTheDeviceDoesNotRead)
{
  EXPECT_EQ(layout_of(std::string(full_header) + ",").field_count, 0);          // header ends with a comma
  EXPECT_EQ(layout_of("shipment_id,date,entity,country,chip").field_count, 0);  // no quantity
  std::string wide = full_header;
  for (int k = 0; k < 60; ++k) { wide += ",extra" + std::to_string(k); }  // 70 fields
  EXPECT_EQ(layout_of(wide).field_count, 0);
  EXPECT_EQ(layout_of(full_header).field_count, 10);
  EXPECT_FALSE(read_line(std::string(full_header) + ",", "S,2025-01-01,E,DE,A100,1,,,,,"));
}

// ---------------------------------------------------------------------------------------------
// c. The differential against shipment_log_builder, on random messy logs.

const char* const spec_columns[]    = {"shipment_id", "date",    "entity",   "country",  "chip",
                                       "quantity",    "pathway", "order_id", "exporter", "tpp_per_unit"};
const char* const known_countries[] = {"DE", "AE", "US", "FR", "JP", "IN", "SA", "CN", "BR", "SG"};
const char* const known_chips[]     = {"H100-SXM", "A100", "B200", "MI300X", "RTX-4090", "H20", "MI250X"};
const char* const pathways[]        = {"LICENSE", "LPP", "NVEU", "UVEU", "AIA", "ACA"};

/// A random log and which of its lines the device must read (canonical valid lines).
struct random_log {
  std::string text;
  std::vector<std::int64_t> must_be_plain;  ///< 1-based line numbers
  bool header_readable = true;              ///< no comma at the end, every required column
};

class log_maker {
 public:
  explicit log_maker(std::uint64_t seed) : rng_(seed) {}

  random_log make(int lines)
  {
    random_log log;
    // Header: required columns, some optional ones, some unknown ones, shuffled, names in any case.
    columns_.clear();
    for (int c = 0; c < 10; ++c) {
      if (c < 6 || chance(70)) { columns_.push_back(spec_columns[c]); }
    }
    for (int e = pick(3); e > 0; --e) { columns_.push_back("extra" + std::to_string(e)); }
    std::shuffle(columns_.begin(), columns_.end(), rng_);
    if (chance(3)) {  // a required column missing: the builder refuses the file
      columns_.erase(std::find(columns_.begin(), columns_.end(), std::string(spec_columns[pick(6)])));
      log.header_readable = false;
    }
    crlf_ = chance(30);
    std::string header;
    for (std::size_t f = 0; f < columns_.size(); ++f) {
      std::string name = columns_[f];
      if (chance(30)) { std::transform(name.begin(), name.end(), name.begin(), ::toupper); }
      if (chance(10)) { name = " " + name + "\t"; }
      header += (f > 0 ? "," : "") + name;
    }
    const bool trailing_comma = chance(5);
    if (trailing_comma) {
      header += ",";
      log.header_readable = false;
    }
    log.text          = header + eol();
    std::int64_t line = 2;
    for (int k = 0; k < lines; ++k) {
      std::map<std::string, std::string> v = valid_values();
      const int kind                       = pick(100);
      bool canonical                       = false;
      std::string text;
      bool text_chosen = false;
      if (kind < 55) {
        canonical = true;
      } else if (kind < 60) {
        v["quantity"] = one_of({"+5", "0", "-0", "9999999999999999999", "12345678901234567890",
                                "-1234567890123456789", "5.0", " 1 2", "", "1e3", "- 4"});
      } else if (kind < 64) {
        v["date"] =
            one_of({"2023-02-29", "2025-04-31", "2025-13-01", "0000-01-01", "2025-1-1", "20250101",
                    "9999-12-31", "0001-01-01", "1900-02-29", "2000-02-29", "2100-02-29", "2025-02-30", ""});
      } else if (kind < 67) {
        v["country"] = one_of({"XX", "D", "DEU", "d3", "", "ZZ", "uk", "Ae"});
      } else if (kind < 70) {
        v["chip"] = one_of({"H100", "XPU-9", "", "a100 ", "B2OO"});
        if (chance(50)) { v["tpp_per_unit"] = std::to_string(1 + pick(100000)); }  // priced per line only
      } else if (kind < 73) {
        v[field_to_dirty()] += one_of({"M\xc3\xbcller", "\xff\xfe", "\xc3", "\xe2\x82\xac", "\xef\xbb\xbf"});
      } else if (kind < 76) {
        v[field_to_dirty()] += one_of({"\x01", "\x7f", "\r", "\x1f", "\x0b"});
      } else if (kind < 80) {
        const std::string f = field_to_dirty();
        v[f] = one_of({"\"" + v[f] + "\"", "\"" + v[f] + " \"\"q\"\"\"", "\"" + v[f] + ", x\"", v[f] + "\"x",
                       "\"" + v[f] + "\"x"});
      } else if (kind < 84) {
        // A quoted line break whose next line looks like a plain line: the record's first line
        // has the quote (the host's), the next lines are continuation lines.
        std::map<std::string, std::string> inner = valid_values();
        std::string hidden                       = join(inner);
        const std::string f                      = field_to_dirty();
        v[f] = "\"" + v[f] + eol() + hidden + (chance(20) ? eol() + join(valid_values()) : "") + "\"";
        if (chance(10)) { v[f].pop_back(); }  // never closed: the rest of the file is one record
      } else if (kind < 86) {
        text        = one_of({"", "\r", " ", "\t"});  // blank and near-blank lines
        text_chosen = true;
      } else if (kind < 89) {
        text = join(v) + one_of({",", ",,x"});                                        // fields too many
        if (chance(50)) { text = text.substr(0, text.rfind(',', text.size() - 2)); }  // or too few
        text_chosen = true;
      } else if (kind < 91) {
        text        = header;  // the header again, mid-file
        text_chosen = true;
      } else if (kind < 93) {
        // Products over 64 bits, and 19-20 digit quantities priced at 1 (a reader that lets one
        // wrap would find a small product).
        if (chance(50)) {
          v["tpp_per_unit"] = one_of({"100000000000000000", "999999999999999999", "9223372036854775807",
                                      "18446744073709551616", "4611686018427387904"});
          v["quantity"]     = one_of({"1000", "-1000", "2", "1", "-92233720368"});
        } else {
          v["tpp_per_unit"] = "1";
          v["quantity"]     = one_of({"9999999999999999999", "12345678901234567890", "1234567890123456789",
                                      "-1234567890123456789", "-9223372036854775808", "9223372036854775807"});
        }
      } else if (kind < 95) {
        if (!ids_.empty()) { v["shipment_id"] = ids_[pick(static_cast<int>(ids_.size()))]; }  // a repeated id
      } else if (kind < 97) {
        v[one_of({"shipment_id", "entity", "chip"})] = one_of({"", " ", "\t"});
      } else if (kind < 98) {
        v["pathway"] = one_of({"LICENCE", "lpp ", "NV EU", "X"});
      } else {
        for (int n = pick(40); n > 0; --n) { text += static_cast<char>(pick(2) ? 32 + pick(95) : pick(256)); }
        text_chosen = true;
      }
      if (!text_chosen) { text = join(v); }
      if (canonical && log.header_readable) { log.must_be_plain.push_back(line); }
      log.text += text;
      line += 1 + static_cast<std::int64_t>(std::count(text.begin(), text.end(), '\n'));
      if (k + 1 < lines || chance(70)) { log.text += eol(); }  // else the last line has no line end
    }
    return log;
  }

 private:
  std::mt19937_64 rng_;
  std::vector<std::string> columns_;
  std::vector<std::string> ids_;
  bool crlf_   = false;
  int next_id_ = 0;

  int pick(int n) { return static_cast<int>(rng_() % static_cast<std::uint64_t>(n)); }
  bool chance(int percent) { return pick(100) < percent; }
  std::string one_of(std::initializer_list<std::string> options)
  {
    return *(options.begin() + pick(static_cast<int>(options.size())));
  }
  std::string eol() { return crlf_ ? "\r\n" : "\n"; }
  std::string any_case(std::string s)
  {
    for (char& c : s) {
      if (chance(30)) { c = static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }
    }
    return s;
  }
  std::string pad(std::string s)
  {
    if (chance(10)) { s = one_of({" ", "\t", "  "}) + s; }
    if (chance(10)) { s += one_of({" ", "\t", " \t"}); }
    return s;
  }
  /// A line's values that the device must read: unique id, a valid date, known country and chip.
  std::map<std::string, std::string> valid_values()
  {
    std::map<std::string, std::string> v;
    v["shipment_id"] = "S" + std::to_string(next_id_++) + (chance(5) ? " x" : "");
    ids_.push_back(v["shipment_id"]);
    const int year = 2020 + pick(11), month = 1 + pick(12);
    const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int day          = 1 + pick(days[month - 1]);
    if (month == 2 && year % 4 == 0 && chance(20)) { day = 29; }  // leap days (2020, 2024, 2028)
    char date[40];
    std::snprintf(date, sizeof date, "%04d-%02d-%02d", year, month, day);
    v["date"]         = date;
    v["entity"]       = one_of({"ACME", "Big Co", "E1", "E2", "e1", "Z-9"});
    v["country"]      = any_case(known_countries[pick(10)]);
    v["chip"]         = any_case(known_chips[pick(7)]);
    std::int64_t q    = chance(3) ? 999999999 : 1 + pick(100000);  // x 56,000 (B300) at most: no overflow
    v["quantity"]     = chance(15) ? "-" + std::to_string(q) : (chance(3) ? "00" : "") + std::to_string(q);
    v["pathway"]      = chance(30) ? "" : any_case(pathways[pick(6)]);
    v["order_id"]     = chance(40) ? "" : "O" + std::to_string(pick(50));
    v["exporter"]     = chance(20) ? "" : one_of({"NVIDIA", "AMD", "Vendor X"});
    v["tpp_per_unit"] = chance(15) ? std::to_string(1 + pick(50000)) : "";
    for (const char* c : {"shipment_id", "entity", "country", "chip", "quantity", "pathway", "exporter"}) {
      v[c] = pad(v[c]);
    }
    return v;
  }
  std::string field_to_dirty()
  {
    // One of the header's columns (extras included): where the header lacks a SPEC column, its
    // value would not be written.
    return columns_[static_cast<std::size_t>(pick(static_cast<int>(columns_.size())))];
  }
  std::string join(const std::map<std::string, std::string>& v)
  {
    std::string line;
    for (std::size_t f = 0; f < columns_.size(); ++f) {
      const auto at = v.find(columns_[f]);
      line += (f > 0 ? "," : "") + (at != v.end() ? at->second : std::string("x"));
    }
    return line;
  }
};

TEST(DeviceCsvDifferential, RandomMessyLogsAgainstTheBuilder)
{
  const reference_data& ref = bundled();
  device_read_counts total;
  std::size_t must_be_plain = 0;
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    log_maker maker(seed);
    const random_log log = maker.make(20 + static_cast<int>(seed % 7) * 15);
    for (const std::size_t chunk_bytes : {std::size_t{0}, std::size_t{1} + seed % 97}) {
      device_read_counts counts;
      const std::string violation =
          device_read_violation(log.text, ref.countries, ref.chips, chunk_bytes, &counts);
      ASSERT_EQ(violation, "") << "seed " << seed << ", chunk_bytes " << chunk_bytes << "\n" << log.text;
      if (chunk_bytes == 0) {
        total.lines += counts.lines;
        total.plain += counts.plain;
        total.compared += counts.compared;
        total.continuation += counts.continuation;
        total.accepted += counts.accepted;
      }
    }
    // The device reads every canonical valid line (an expectation of the generator's, not of the
    // builder's: a reader that says "host" more often than the contract needs fails here).
    if (!log.header_readable) { continue; }
    detail::fast_csv_reader reader(log.text);
    ASSERT_EQ(reader.next(), detail::csv_status::record);
    const auto layout = detail::make_line_layout(detail::csv_header(reader.fields(), "log.csv"));
    const auto tables = detail::make_device_tables(ref.countries, ref.chips);
    ASSERT_TRUE(tables);
    detail::lines_read_ahead ahead;
    detail::read_ahead_on_host(log.text, reader.position(), log.text.size(), layout, *tables, ahead);
    std::vector<std::size_t> line_starts;  // of the lines after the header, from its end
    for (std::size_t at = reader.position(); at < log.text.size(); at = log.text.find('\n', at) + 1) {
      line_starts.push_back(at - reader.position());
      if (log.text.find('\n', at) == std::string::npos) { break; }
    }
    for (const std::int64_t line : log.must_be_plain) {
      const auto k = static_cast<std::size_t>(line - reader.line());
      ASSERT_LT(k, line_starts.size()) << "seed " << seed;
      EXPECT_TRUE(std::binary_search(ahead.line_start.begin(), ahead.line_start.end(), line_starts[k]))
          << "seed " << seed << ", line " << line << ": "
          << log.text.substr(reader.position() + line_starts[k], 120);
      ++must_be_plain;
    }
  }
  // The logs reach every case the test is for.
  EXPECT_GT(total.compared, 5000U);
  EXPECT_GT(total.continuation, 50U);
  EXPECT_GT(total.lines - total.plain, 2000U);
  EXPECT_GT(must_be_plain, 5000U);
  std::cout << "device_read differential: " << total.lines << " lines, " << total.plain << " plain, "
            << total.compared << " compared, " << total.continuation << " continuation lines, "
            << total.accepted << " accepted\n";
}

/// Quoted records whose later lines look plain: the device reads them, the integration skips
/// them (they are not compared). A quote never closed ends its record at its own line (the host's
/// reader resynchronises on the next line), so the line after it starts a record again.
TEST(DeviceCsvDifferential, ContinuationLinesOfQuotedRecords)
{
  const reference_data& ref = bundled();
  const std::string text =
      "shipment_id,date,entity,country,chip,quantity\n"
      "S1,2025-01-01,\"E\nS2,2025-01-02,E,DE,A100,5\nS3,2025-01-03,E,DE,A100,5\n\",DE,A100,1\n"
      "S4,2025-01-04,E,DE,A100,5\n"
      "S5,2025-01-05,\"never closed\nS6,2025-01-06,E,DE,A100,5\n";
  device_read_counts counts;
  EXPECT_EQ(device_read_violation(text, ref.countries, ref.chips, 0, &counts), "");
  EXPECT_EQ(counts.lines, 7U);
  EXPECT_EQ(counts.plain, 4U);         // S2, S3, S4, S6
  EXPECT_EQ(counts.continuation, 2U);  // S2, S3: inside S1's record
  EXPECT_EQ(counts.compared, 2U);      // S4, S6
  EXPECT_EQ(counts.accepted, 3U);      // S1 (an entity with line breaks), S4, S6
}

/// Headers the builder refuses (device_read_fuzz's first finding was the harness's: a header
/// whose name holds a CR throws MALFORMED_HEADER from csv_header itself): no line is plain, and
/// the check says so without throwing. A header ending with a comma is taken by the builder, but
/// its lines are all the host's.
TEST(DeviceCsvDifferential, HeadersTheDeviceDoesNotRead)
{
  const reference_data& ref = bundled();
  const std::string line    = "S1,2025-01-01,E,DE,A100,5\n";
  for (const std::string header :
       {"shipment_id,date,entity\rx,country,chip,quantity\n",
        "shipment_id,date,entity,country,chip,quantity,Date\n", "shipment_id,date,entity,country,chip\n",
        "shipment_id,date,entity,country,chip,quantity,\n"}) {
    device_read_counts counts;
    EXPECT_EQ(device_read_violation(header + line + line.substr(0, line.size() - 1) + ",\n", ref.countries,
                                    ref.chips, 0, &counts),
              "")
        << header;
    EXPECT_EQ(counts.plain, 0U) << header;
  }
}

// ---------------------------------------------------------------------------------------------
// d. Coverage: nearly every line of a generated log is the device's.

TEST(DeviceCsvCoverage, GeneratedLogIsNearlyAllPlain)
{
  const reference_data& ref = bundled();
  const std::string text    = generate_with_bundled(20000, 11, true).shipments;
  device_read_counts counts;
  ASSERT_EQ(device_read_violation(text, ref.countries, ref.chips, 0, &counts), "");
  EXPECT_EQ(counts.lines, 20000U);
  EXPECT_EQ(counts.compared, counts.plain);
  EXPECT_EQ(counts.accepted, 20000U);
  // The generator quotes one exporter ("Dell Technologies, Inc.", about 14% of its lines), quoted
  // whole: read too. At least 99% of all lines, and of those without a quote, are plain (the rest:
  // ad-hoc chips priced per line).
  std::size_t quoted = 0;
  for (std::size_t at = text.find('\n'); at + 1 < text.size(); at = text.find('\n', at + 1)) {
    const std::size_t end = text.find('\n', at + 1);
    if (text.substr(at + 1, end - at - 1).find('"') != std::string::npos) { ++quoted; }
  }
  EXPECT_GT(quoted, 0U);
  EXPECT_GE(counts.plain * 100, (counts.lines - quoted) * 99)
      << counts.plain << " of " << counts.lines - quoted;
  EXPECT_GE(counts.plain * 100, counts.lines * 99) << counts.plain << " of " << counts.lines;
  std::cout << "generated log: " << counts.plain << " of " << counts.lines << " lines plain, " << quoted
            << " with a quote\n";

  // The bundled sample: 15 of its 16 lines are read (and match the builder), the two with an
  // exporter quoted whole (S0005, S0006) among them; S0016's exporter has doubled quotes: the host's.
  const std::string sample = read_text(sample_dir() / "shipments.csv");
  ASSERT_FALSE(sample.empty());
  device_read_counts sample_counts;
  ASSERT_EQ(device_read_violation(sample, ref.countries, ref.chips, 0, &sample_counts), "");
  EXPECT_EQ(sample_counts.lines, 16U);
  EXPECT_EQ(sample_counts.plain, 15U);
  EXPECT_EQ(sample_counts.compared, 15U);
}

}  // namespace
}  // namespace capledger::test
