/// @file ingest_test.cpp
/// @brief shipment_log_builder: header matching, encoding, defaults, and every bad-input reason of
/// SPEC §7 with its exact file, line and column.
#include <capledger/error.hpp>
#include <capledger/reference.hpp>
#include <capledger/shipments.hpp>

#include <gtest/gtest.h>

#include "test_support.hpp"

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace capledger;

using capledger::test::datasets_dir;

const country_table& countries()
{
  static const country_table table = load_countries((datasets_dir() / "countries.csv").string());
  return table;
}

const chip_table& chips()
{
  static const chip_table table = load_chips((datasets_dir() / "chips.csv").string());
  return table;
}

constexpr std::int64_t h100_tpp = 15832;  // chips.csv, H100-SXM
constexpr std::int64_t b200_tpp = 36000;  // chips.csv, B200

/// The minimal header; a data line `S1,2025-02-01,E1,AE,H100-SXM,10` has its fields at columns
/// 1 (id), 4 (date), 15 (entity), 18 (country), 21 (chip) and 30 (quantity).
const std::string header = "shipment_id,date,entity,country,chip,quantity\n";

shipment_log ingest(const std::string& text, ingest_options options = {})
{
  shipment_log_builder builder(countries(), chips(), options);
  builder.add_text("log.csv", text);
  return builder.finish();
}

ingest_options keep_rejects(std::int64_t max_rejects = -1)
{
  ingest_options options;
  options.keep_rejects = true;
  options.max_rejects  = max_rejects;
  return options;
}

/// Ingests @p text fail-fast and expects a parse_error at file:line:column with @p reason.
void expect_rejected(const std::string& text, std::int64_t line, std::int64_t column, const std::string& reason)
{
  try {
    (void)ingest(text);
    ADD_FAILURE() << "no parse_error; expected " << reason << " at " << line << ":" << column;
  } catch (const parse_error& e) {
    EXPECT_EQ(e.file(), "log.csv");
    EXPECT_EQ(e.reason(), reason) << e.what();
    EXPECT_EQ(e.line(), line) << e.what();
    EXPECT_EQ(e.column(), column) << e.what();
    const std::string prefix = "log.csv:" + std::to_string(line) + ":" + std::to_string(column) + ": " + reason;
    EXPECT_EQ(std::string(e.what()).rfind(prefix, 0), 0U) << e.what();
  }
}

// ---- good input ---------------------------------------------------------------------------------

TEST(Ingest, EmptyLogWithHeaderOnly)
{
  const shipment_log log = ingest(header);
  EXPECT_EQ(log.columns.size(), 0);
  EXPECT_EQ(log.lines_read, 0);
  ASSERT_EQ(log.files.size(), 1U);
  EXPECT_EQ(log.files[0].path, "log.csv");
  EXPECT_EQ(log.files[0].bytes, static_cast<std::int64_t>(header.size()));
  EXPECT_EQ(log.files[0].lines_read, 0);
}

TEST(Ingest, OneLineIsEncoded)
{
  const shipment_log log = ingest(header + "S1,2025-02-01,E1,AE,H100-SXM,10\n");
  ASSERT_EQ(log.columns.size(), 1);
  EXPECT_EQ(log.lines_read, 1);
  EXPECT_EQ(log.shipment_id(0), "S1");
  EXPECT_EQ(log.columns.date[0], days_from_civil(2025, 2, 1));
  EXPECT_EQ(log.entities.text(log.columns.entity[0]), "E1");
  EXPECT_EQ(log.columns.country[0], countries().find("AE"));
  EXPECT_EQ(log.columns.chip[0], chips().find("H100-SXM"));
  EXPECT_EQ(log.columns.pathway[0], static_cast<std::uint8_t>(pathway::license));
  EXPECT_EQ(log.columns.quantity[0], 10);
  EXPECT_EQ(log.columns.tpp[0], 10 * h100_tpp);
  EXPECT_EQ(log.columns.order[0], -1);
  EXPECT_EQ(log.exporters.text(log.columns.exporter[0]), "");
  EXPECT_EQ(log.source_line[0], 2);
  EXPECT_EQ(log.source_of(0), "log.csv:2");
}

TEST(Ingest, ColumnsInAnyOrderWithExtraColumns)
{
  const std::string text =
    " Quantity ,NOTE,CHIP,Country,exporter,Entity,Date,pathway,Shipment_ID,Order_Id,extra\n"
    "-3,hello,b200,de,Vendor A,E9,2025-03-04,,X-1,O-9,zzz\n"
    "7,,H100-SXM,AE,,E1,2025-03-05,LICENSE,X-2,,\n";
  const shipment_log log = ingest(text);
  ASSERT_EQ(log.columns.size(), 2);
  EXPECT_EQ(log.shipment_id(0), "X-1");
  EXPECT_EQ(log.shipment_id(1), "X-2");
  EXPECT_EQ(log.columns.date[0], days_from_civil(2025, 3, 4));
  EXPECT_EQ(log.entities.text(log.columns.entity[0]), "E9");
  EXPECT_EQ(log.columns.country[0], countries().find("DE"));
  EXPECT_EQ(log.columns.chip[0], chips().find("B200"));
  EXPECT_EQ(log.columns.quantity[0], -3);
  EXPECT_EQ(log.columns.tpp[0], -3 * b200_tpp);
  EXPECT_EQ(log.exporters.text(log.columns.exporter[0]), "Vendor A");
  EXPECT_EQ(log.columns.order[0], -1);  // order ids matter only to LPP lines
  EXPECT_EQ(log.columns.tpp[1], 7 * h100_tpp);
}

TEST(Ingest, CodesAreCaseInsensitive)
{
  const shipment_log log = ingest("shipment_id,date,entity,country,chip,quantity,pathway\n"
                                  "S1,2025-02-01,E1,ae,h100-sxm,2,lpp\n"
                                  "S2,2025-02-01,E1,Us,H100-sxm,2,nVeU\n"
                                  "S3,2025-02-01,E1,AE,H100-SXM,2,uveu\n"
                                  "S4,2025-02-01,E1,AE,H100-SXM,2,Aia\n"
                                  "S5,2025-02-01,E1,AE,H100-SXM,2,aca\n"
                                  "S6,2025-02-01,E1,AE,H100-SXM,2,license\n");
  ASSERT_EQ(log.columns.size(), 6);
  EXPECT_EQ(log.columns.country[0], countries().find("AE"));
  EXPECT_EQ(log.columns.country[1], countries().find("US"));
  EXPECT_EQ(log.columns.chip[0], chips().find("H100-SXM"));
  EXPECT_EQ(log.columns.chip[1], chips().find("H100-SXM"));
  const pathway expected[] = {pathway::lpp, pathway::nveu, pathway::uveu, pathway::aia, pathway::aca, pathway::license};
  for (int i = 0; i < 6; ++i) { EXPECT_EQ(log.columns.pathway[i], static_cast<std::uint8_t>(expected[i])) << i; }
  EXPECT_EQ(log.columns.tpp[0], 2 * h100_tpp);
}

TEST(Ingest, EntityIdsAreCaseSensitiveButTrimmed)
{
  const shipment_log log = ingest(header + "S1,2025-02-01, E1 ,AE,H100-SXM,1\nS2,2025-02-01,e1,AE,H100-SXM,1\n"
                                           "S3,2025-02-01,\"E1\",AE,H100-SXM,1\n");
  ASSERT_EQ(log.columns.size(), 3);
  EXPECT_EQ(log.columns.entity[0], log.columns.entity[2]);
  EXPECT_NE(log.columns.entity[0], log.columns.entity[1]);
  EXPECT_EQ(log.entities.size(), 2);
}

TEST(Ingest, DefaultPathwayIsLicense)
{
  // Column absent.
  const shipment_log absent = ingest(header + "S1,2025-02-01,E1,AE,H100-SXM,1\n");
  EXPECT_EQ(absent.columns.pathway[0], static_cast<std::uint8_t>(pathway::license));
  // Column present, value empty or blank.
  const shipment_log empty = ingest("shipment_id,date,entity,country,chip,quantity,pathway\n"
                                    "S1,2025-02-01,E1,AE,H100-SXM,1,\nS2,2025-02-01,E1,AE,H100-SXM,1,   \n");
  EXPECT_EQ(empty.columns.pathway[0], static_cast<std::uint8_t>(pathway::license));
  EXPECT_EQ(empty.columns.pathway[1], static_cast<std::uint8_t>(pathway::license));
}

TEST(Ingest, LppOrderDefaultsToShipmentId)
{
  const shipment_log log = ingest("shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"
                                  "S1,2025-02-01,E1,IN,H100-SXM,1,LPP,\n"
                                  "S2,2025-02-02,E1,IN,H100-SXM,1,LPP,O-7\n"
                                  "S3,2025-02-03,E1,IN,H100-SXM,1,LPP,O-7\n"
                                  "S4,2025-02-04,E1,IN,H100-SXM,1,LICENSE,O-7\n"
                                  "O-7,2025-02-05,E1,IN,H100-SXM,1,LPP,\n");
  ASSERT_EQ(log.columns.size(), 5);
  ASSERT_GE(log.columns.order[0], 0);
  EXPECT_EQ(log.orders.text(log.columns.order[0]), "S1");
  EXPECT_EQ(log.orders.text(log.columns.order[1]), "O-7");
  EXPECT_EQ(log.columns.order[1], log.columns.order[2]);
  EXPECT_EQ(log.columns.order[3], -1);  // not LPP
  // A line whose shipment id equals another line's order id joins that order.
  EXPECT_EQ(log.columns.order[4], log.columns.order[1]);
  EXPECT_EQ(log.orders.size(), 2);
}

TEST(Ingest, LppOrderWithoutOrderColumn)
{
  const shipment_log log = ingest("shipment_id,date,entity,country,chip,quantity,pathway\n"
                                  "S1,2025-02-01,E1,IN,H100-SXM,1,LPP\n");
  ASSERT_EQ(log.columns.size(), 1);
  EXPECT_EQ(log.orders.text(log.columns.order[0]), "S1");
}

TEST(Ingest, TppPerUnitOverridesTheChipsTable)
{
  const shipment_log log = ingest("shipment_id,date,entity,country,chip,quantity,tpp_per_unit\n"
                                  "S1,2025-02-01,E1,AE,H100-SXM,10,100\n"
                                  "S2,2025-02-01,E1,AE,H100-SXM,-4,\n");
  ASSERT_EQ(log.columns.size(), 2);
  EXPECT_EQ(log.columns.tpp[0], 1000);
  EXPECT_EQ(log.columns.chip[0], chips().find("H100-SXM"));
  EXPECT_EQ(log.columns.tpp[1], -4 * h100_tpp);
}

TEST(Ingest, UnknownChipWithTppPerUnitBecomesAdHocChip)
{
  const shipment_log log = ingest("shipment_id,date,entity,country,chip,quantity,tpp_per_unit\n"
                                  "S1,2025-02-01,E1,AE,custom-asic,4,2500\n"
                                  "S2,2025-02-01,E1,AE,CUSTOM-ASIC,3,100\n");
  ASSERT_EQ(log.columns.size(), 2);
  EXPECT_EQ(log.columns.tpp[0], 10000);
  EXPECT_EQ(log.columns.tpp[1], 300);
  EXPECT_EQ(log.columns.chip[0], log.columns.chip[1]);
  const chip& adhoc = log.chips.rows[log.columns.chip[0]];
  EXPECT_EQ(adhoc.key, "CUSTOM-ASIC");
  EXPECT_FALSE(adhoc.known);
  EXPECT_TRUE(adhoc.datacenter);
  EXPECT_EQ(log.chips.rows.size(), chips().rows.size() + 1);
}

// Chip codes are 16 bits: the error for the line whose chip would be one model too many names
// that line and the chip's column.
TEST(Ingest, TooManyChipModelsNamesTheLine)
{
  std::string text  = "shipment_id,date,entity,country,chip,quantity,tpp_per_unit\n";
  const auto models = static_cast<int>(65535 - chips().rows.size());  // ad-hoc models that fit
  char chip[16];
  for (int i = 0; i <= models; ++i) {
    std::snprintf(chip, sizeof chip, "chip-%07d", i);
    text += "S" + std::to_string(1000000 + i) + ",2025-02-01,E1,AE," + chip + ",1,5\n";
  }
  try {
    (void)ingest(text);
    FAIL() << "no error for " << models + 1 << " ad-hoc chip models";
  } catch (const config_error& e) {
    // Line 1 is the header, so model i is on line i + 2; `S1000000,2025-02-01,E1,AE,` is 26 bytes.
    std::snprintf(chip, sizeof chip, "CHIP-%07d", models);
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("log.csv:" + std::to_string(models + 2) + ":27: ", 0), 0U) << what;
    EXPECT_NE(what.find(std::string("'") + chip + "'"), std::string::npos) << what;
  }
}

TEST(Ingest, AdHocChipStillNeedsTppPerUnitOnEveryLine)
{
  const std::string text = "shipment_id,date,entity,country,chip,quantity,tpp_per_unit\n"
                           "S1,2025-02-01,E1,AE,custom-asic,4,2500\n"
                           "S2,2025-02-01,E1,AE,custom-asic,4,\n";
  expect_rejected(text, 3, 21, "UNKNOWN_CHIP");
}

TEST(Ingest, CrlfBomAndBlankLines)
{
  const shipment_log log = ingest("\xEF\xBB\xBF" "shipment_id,date,entity,country,chip,quantity\r\n"
                                  "\r\n"
                                  "S1,2025-02-01,E1,AE,H100-SXM,10\r\n"
                                  "\r\n"
                                  "S2,2025-02-01,E1,AE,H100-SXM,20\r\n");
  ASSERT_EQ(log.columns.size(), 2);
  EXPECT_EQ(log.lines_read, 2);  // blank lines are not lines read
  EXPECT_EQ(log.columns.quantity[1], 20);
  EXPECT_EQ(log.source_line[0], 3);
  EXPECT_EQ(log.source_line[1], 5);
}

TEST(Ingest, LineNumberAfterQuotedEmbeddedNewline)
{
  // Line 2's record spans physical lines 2 and 3; the next record starts on line 4.
  const std::string good = header + "S1,2025-02-01,\"E\n1\",AE,H100-SXM,10\n";
  const shipment_log log = ingest(good + "S2,2025-02-01,E1,AE,H100-SXM,20\n");
  ASSERT_EQ(log.columns.size(), 2);
  EXPECT_EQ(log.entities.text(log.columns.entity[0]), "E\n1");
  EXPECT_EQ(log.source_line[0], 2);
  EXPECT_EQ(log.source_line[1], 4);
  expect_rejected(good + "S2,2025-02-31,E1,AE,H100-SXM,20\n", 4, 4, "BAD_DATE");
  // A bad field after the line break: `1",ZZ,...` puts ZZ on line 3, column 4.
  expect_rejected(header + "S1,2025-02-01,\"E\n1\",ZZ,H100-SXM,10\n", 3, 4, "UNKNOWN_COUNTRY");
}

TEST(Ingest, SeveralFilesKeepInputOrder)
{
  shipment_log_builder builder(countries(), chips(), {});
  builder.add_text("a.csv", header + "A1,2025-02-01,E1,AE,H100-SXM,1\nA2,2025-02-01,E1,AE,H100-SXM,2\n");
  builder.add_text("b.csv", header + "B1,2025-01-01,E1,AE,H100-SXM,3\n");
  const shipment_log log = builder.finish();
  ASSERT_EQ(log.columns.size(), 3);
  EXPECT_EQ(log.shipment_id(2), "B1");
  EXPECT_EQ(log.file_end, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(log.source_of(1), "a.csv:3");
  EXPECT_EQ(log.source_of(2), "b.csv:2");
  ASSERT_EQ(log.files.size(), 2U);
  EXPECT_EQ(log.files[0].lines_read, 2);
  EXPECT_EQ(log.files[1].lines_read, 1);
  EXPECT_EQ(log.lines_read, 3);
}

// ---- every reason of SPEC §7, fail-fast ---------------------------------------------------------

TEST(IngestRejects, WrongFieldCountTooMany)
{
  // The first extra field: `S1,2025-02-01,E1,AE,H100-SXM,10,` is 32 bytes.
  expect_rejected(header + "S1,2025-02-01,E1,AE,H100-SXM,10,extra\n", 2, 33, "WRONG_FIELD_COUNT");
}

// A line of many fields: the reader keeps one past the header's, the message counts them all.
TEST(IngestRejects, WrongFieldCountOfAVeryWideLine)
{
  const std::string wide = "S1,2025-02-01,E1,AE,H100-SXM,10" + std::string(100000, ',') + "\n";
  expect_rejected(header + wide, 2, 33, "WRONG_FIELD_COUNT");
  try {
    (void)ingest(header + wide);
  } catch (const parse_error& e) {
    EXPECT_NE(std::string(e.what()).find("found 100006"), std::string::npos) << e.what();
  }
}

TEST(IngestRejects, WrongFieldCountTooFew)
{
  // Reported at the last field present (the chip, column 21).
  expect_rejected(header + "S0,2025-02-01,E1,AE,H100-SXM,1\nS1,2025-02-01,E1,AE,H100-SXM\n", 3, 21,
                  "WRONG_FIELD_COUNT");
}

TEST(IngestRejects, UnterminatedQuote)
{
  expect_rejected(header + "S1,2025-02-01,\"E1,AE,H100-SXM,10\n", 2, 15, "UNTERMINATED_QUOTE");
}

TEST(IngestRejects, BadQuote)
{
  // `"E1"` occupies columns 15-18; the stray x is column 19.
  expect_rejected(header + "S1,2025-02-01,\"E1\"x,AE,H100-SXM,10\n", 2, 19, "BAD_QUOTE");
}

TEST(IngestRejects, BadDate)
{
  for (const char* date : {"2025-02-30", "2025-2-01", "", "yesterday", "2023-02-29"}) {
    expect_rejected(header + "S1," + date + ",E1,AE,H100-SXM,10\n", 2, 4, "BAD_DATE");
  }
}

TEST(IngestRejects, BadQuantityText)
{
  for (const char* quantity : {"ten", "1.5", "1e3", "+-1", "", "99999999999999999999"}) {
    expect_rejected(header + "S1,2025-02-01,E1,AE,H100-SXM," + quantity + "\n", 2, 30, "BAD_QUANTITY");
  }
}

TEST(IngestRejects, BadQuantityZero)
{
  expect_rejected(header + "S1,2025-02-01,E1,AE,H100-SXM,0\n", 2, 30, "BAD_QUANTITY");
  expect_rejected(header + "S1,2025-02-01,E1,AE,H100-SXM,-0\n", 2, 30, "BAD_QUANTITY");
}

TEST(IngestRejects, UnknownCountry)
{
  expect_rejected(header + "S1,2025-02-01,E1,ZZ,H100-SXM,10\n", 2, 18, "UNKNOWN_COUNTRY");
  expect_rejected(header + "S1,2025-02-01,E1,USA,H100-SXM,10\n", 2, 18, "UNKNOWN_COUNTRY");
  expect_rejected(header + "S1,2025-02-01,E1,,H100-SXM,10\n", 2, 18, "UNKNOWN_COUNTRY");
}

TEST(IngestRejects, UnknownChip)
{
  expect_rejected(header + "S1,2025-02-01,E1,AE,H999,10\n", 2, 21, "UNKNOWN_CHIP");
  // With a tpp_per_unit column but an empty value.
  expect_rejected("shipment_id,date,entity,country,chip,quantity,tpp_per_unit\nS1,2025-02-01,E1,AE,H999,10,\n", 2, 21,
                  "UNKNOWN_CHIP");
}

// An unknown chip written like a table's chip but for case, spaces and punctuation gets a
// suggestion; one like none (or like an ad-hoc chip only) gets none.
TEST(IngestRejects, UnknownChipSpelledLikeAKnownOneIsNamed)
{
  const auto said = [](const std::string& chip) -> std::string {
    try {
      (void)ingest(header + "S1,2025-02-01,E1,AE," + chip + ",10\n");
    } catch (const parse_error& e) {
      EXPECT_EQ(e.reason(), "UNKNOWN_CHIP") << e.what();
      return e.what();
    }
    ADD_FAILURE() << chip << " accepted";
    return "";
  };
  for (const char* chip : {"H100 SXM", "h100_sxm", "H100SXM", "\"H-100 / SXM\""}) {
    EXPECT_NE(said(chip).find("; did you mean 'H100-SXM'?"), std::string::npos) << chip;
  }
  for (const char* chip : {"H100-SXM5", "H999", "---"}) {
    EXPECT_EQ(said(chip).find("did you mean"), std::string::npos) << chip;
  }
}

// So is an unknown country written as one of the table: by name, alpha-3 code or reserved code.
TEST(IngestRejects, UnknownCountryWrittenLikeAKnownOneIsNamed)
{
  for (const auto& [country, said] :
       {std::pair{"UK",
                  "log.csv:2:18: UNKNOWN_COUNTRY: 'UK' is not in the countries table; did you mean 'GB'?"},
        std::pair{"usa",
                  "log.csv:2:18: UNKNOWN_COUNTRY: 'usa' is not in the countries table; did you mean 'US'?"},
        std::pair{"\"united states\"",
                  "log.csv:2:18: UNKNOWN_COUNTRY: 'united states' is not in the countries table; did you "
                  "mean 'US'?"},
        std::pair{"Atlantis", "log.csv:2:18: UNKNOWN_COUNTRY: 'Atlantis' is not in the countries table"}}) {
    try {
      (void)ingest(header + "S1,2025-02-01,E1," + country + ",H100-SXM,10\n");
      ADD_FAILURE() << country << " accepted";
    } catch (const parse_error& e) {
      EXPECT_EQ(std::string(e.what()), said);
    }
  }
}

TEST(IngestRejects, UnknownPathway)
{
  // `S1,2025-02-01,E1,AE,H100-SXM,10,` is 32 bytes.
  expect_rejected("shipment_id,date,entity,country,chip,quantity,pathway\nS1,2025-02-01,E1,AE,H100-SXM,10,EXPORT\n",
                  2, 33, "UNKNOWN_PATHWAY");
}

TEST(IngestRejects, DuplicateIdWithinFile)
{
  expect_rejected(header + "S1,2025-02-01,E1,AE,H100-SXM,10\nS2,2025-02-01,E1,AE,H100-SXM,10\n"
                           "S1,2025-03-01,E2,IN,B200,1\n",
                  4, 1, "DUPLICATE_ID");
}

TEST(IngestRejects, DuplicateIdAfterTrimming)
{
  expect_rejected(header + "S1,2025-02-01,E1,AE,H100-SXM,10\n  S1 ,2025-02-01,E1,AE,H100-SXM,10\n", 3, 3,
                  "DUPLICATE_ID");
}

TEST(IngestRejects, IdsAreCaseSensitive)
{
  const shipment_log log = ingest(header + "S1,2025-02-01,E1,AE,H100-SXM,10\ns1,2025-02-01,E1,AE,H100-SXM,10\n");
  EXPECT_EQ(log.columns.size(), 2);
}

TEST(IngestRejects, DuplicateIdAcrossFiles)
{
  shipment_log_builder builder(countries(), chips(), {});
  builder.add_text("first.csv", header + "S1,2025-02-01,E1,AE,H100-SXM,10\nS2,2025-02-01,E1,AE,H100-SXM,10\n");
  try {
    builder.add_text("second.csv", header + "S3,2025-02-01,E1,AE,H100-SXM,10\nS2,2025-02-01,E1,AE,H100-SXM,10\n");
    ADD_FAILURE() << "the same id in a second file was accepted";
  } catch (const parse_error& e) {
    EXPECT_EQ(e.file(), "second.csv");
    EXPECT_EQ(e.line(), 3);
    EXPECT_EQ(e.column(), 1);
    EXPECT_EQ(e.reason(), "DUPLICATE_ID");
    EXPECT_NE(e.detail().find("first.csv:3"), std::string::npos) << e.detail();
  }
}

TEST(IngestRejects, SameLogTwiceNeverCountsTwice)
{
  const std::string text = header + "S1,2025-02-01,E1,AE,H100-SXM,10\n";
  shipment_log_builder builder(countries(), chips(), keep_rejects());
  builder.add_text("a.csv", text);
  builder.add_text("a-again.csv", text);
  const shipment_log log = builder.finish();
  EXPECT_EQ(log.columns.size(), 1);
  ASSERT_EQ(log.rejects.size(), 1U);
  EXPECT_EQ(log.rejects[0].file, "a-again.csv");
  EXPECT_EQ(log.rejects[0].reason, "DUPLICATE_ID");
}

TEST(IngestRejects, TppOverflowOfOneLine)
{
  // 2^63 / 15832 is about 5.8e14; 10^15 units overflow, and so does INT64_MAX units.
  expect_rejected(header + "S1,2025-02-01,E1,AE,H100-SXM,1000000000000000\n", 2, 30, "TPP_OVERFLOW");
  expect_rejected(header + "S1,2025-02-01,E1,AE,H100-SXM,-1000000000000000\n", 2, 30, "TPP_OVERFLOW");
  expect_rejected("shipment_id,date,entity,country,chip,quantity,tpp_per_unit\n"
                  "S1,2025-02-01,E1,AE,X,3,4000000000000000000\n",
                  2, 23, "TPP_OVERFLOW");
  // 582000000000000 x 15832 = 9214224000000000000 < 2^63-1 = 9223372036854775807: accepted.
  const shipment_log log = ingest(header + "S1,2025-02-01,E1,AE,H100-SXM,582000000000000\n");
  ASSERT_EQ(log.columns.size(), 1);
  EXPECT_EQ(log.columns.tpp[0], 9214224000000000000);
}

TEST(IngestRejects, TppOverflowOfTheLogsTotal)
{
  // Each line is 5e18; two of them exceed 2^63-1 in absolute sum, whatever their signs.
  const std::string head = "shipment_id,date,entity,country,chip,quantity,tpp_per_unit\n";
  const std::string big  = "S1,2025-02-01,E1,AE,X,1,5000000000000000000\n";
  expect_rejected(head + big + "S2,2025-02-01,E1,AE,X,1,5000000000000000000\n", 3, 23, "TPP_OVERFLOW");
  expect_rejected(head + big + "S2,2025-02-01,E1,AE,X,-1,5000000000000000000\n", 3, 23, "TPP_OVERFLOW");
  // 5e18 + 4e18 = 9e18 fits.
  const shipment_log log = ingest(head + big + "S2,2025-02-01,E1,AE,X,-1,4000000000000000000\n");
  EXPECT_EQ(log.columns.size(), 2);
}

TEST(IngestRejects, TextThatIsNotUtf8)
{
  // SPEC §1.1: logs are UTF-8. A Latin-1 byte in a value that reaches the outputs (0xE9 alone
  // is not UTF-8) is bad input at that field, not a crash when summary.json is written.
  expect_rejected(header + "S1,2025-02-01,Caf\xe9,AE,H100-SXM,10\n", 2, 15, "BAD_ENCODING");
  expect_rejected(header + "S\xff,2025-02-01,E1,AE,H100-SXM,10\n", 2, 1, "BAD_ENCODING");
  expect_rejected("shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter\n"
                  "S1,2025-02-01,E1,AE,H100-SXM,10,LPP,O\xc3,X\n",
                  2, 37, "BAD_ENCODING");
  expect_rejected("shipment_id,date,entity,country,chip,quantity,exporter\n"
                  "S1,2025-02-01,E1,AE,H100-SXM,10,\xed\xa0\x80\n",  // an encoded surrogate
                  2, 33, "BAD_ENCODING");
  // Well-formed multi-byte UTF-8 is ordinary text.
  const shipment_log log = ingest(header + "S\xc3\xa9,2025-02-01,Caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80,AE,H100-SXM,10\n");
  ASSERT_EQ(log.columns.size(), 1);
  EXPECT_EQ(log.entities.text(0), "Caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  // With rejects kept, the line is skipped and the run goes on.
  const shipment_log kept = ingest(header + "S1,2025-02-01,Caf\xe9,AE,H100-SXM,10\nS2,2025-02-01,E1,AE,H100-SXM,1\n",
                                   keep_rejects());
  ASSERT_EQ(kept.rejects.size(), 1U);
  EXPECT_EQ(kept.rejects[0].reason, "BAD_ENCODING");
  EXPECT_EQ(kept.columns.size(), 1);
}

TEST(IngestRejects, MissingColumnIsFatal)
{
  for (const char* missing : {"shipment_id", "date", "entity", "country", "chip", "quantity"}) {
    std::string head = "shipment_id,date,entity,country,chip,quantity";
    head.replace(head.find(missing), std::string(missing).size(), "other");
    for (const bool keep : {false, true}) {
      ingest_options options;
      options.keep_rejects = keep;
      try {
        (void)ingest(head + "\nS1,2025-02-01,E1,AE,H100-SXM,10\n", options);
        ADD_FAILURE() << "missing " << missing << " accepted";
      } catch (const parse_error& e) {
        EXPECT_EQ(e.reason(), "MISSING_COLUMN");
        EXPECT_EQ(e.line(), 1);
        EXPECT_EQ(e.column(), 1);
        EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
      }
    }
  }
}

// A missing column's message says what the header holds instead: its names as written (twelve at
// most, each cut to 40 bytes of whole characters), or what the file seems to be (UTF-16 text, values
// separated by semicolons or tabs, as spreadsheets save them for some locales).
TEST(IngestRejects, MissingColumnSaysWhatTheHeaderHolds)
{
  const auto message = [](const std::string& text) -> std::string {
    try {
      (void)ingest(text, keep_rejects());
    } catch (const parse_error& e) {
      EXPECT_EQ(e.reason(), "MISSING_COLUMN");
      return e.what();
    }
    ADD_FAILURE() << "accepted: " << text;
    return "";
  };
  const std::string needs = "required column 'shipment_id' is missing";
  EXPECT_NE(
      message("Id, Date ,entity,country,chip,Qty\nS1,2025-02-01,E1,AE,H100-SXM,10\n")
          .find(needs +
                " (the header names 'Id', 'Date', 'entity', 'country', 'chip', 'Qty')"),  // unquoted: trimmed
      std::string::npos);
  std::string wide;  // 14 names, the first 61 bytes: 'a' and 30 two-byte characters, whose 20th
  for (int k = 0; k < 13; ++k) { wide += "c" + std::to_string(k) + ","; }  // ends at byte 41
  std::string long_name = "a";
  for (int k = 0; k < 30; ++k) { long_name += "\xC3\xA9"; }
  EXPECT_NE(message(long_name + "," + wide + "\n")
                .find(needs + " (the header names '" + long_name.substr(0, 39) +
                      "'..., 'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', "
                      "'c8', 'c9', 'c10' and 3 more)"),
            std::string::npos);
  const std::string utf16_said =
      needs + ": the header holds NUL bytes or a UTF-16 byte-order mark; the file must be UTF-8";
  // ASCII text as UTF-16, little- or big-endian, after its byte-order mark or without one.
  const auto utf16 = [](const std::string& ascii, bool big_endian, bool mark) {
    std::string bytes = !mark ? "" : big_endian ? "\xFE\xFF" : "\xFF\xFE";
    for (const char c : ascii) { bytes += big_endian ? std::string{'\0', c} : std::string{c, '\0'}; }
    return bytes;
  };
  // A spreadsheet's "Unicode text" has \r\n line ends: each \n byte ends a line after a CR byte,
  // which once made it a MALFORMED_HEADER about line ends rather than a UTF-16 file.
  for (const std::string ascii : {"shipment_id,date\n", "shipment_id\tdate\r\nS1\t2025-02-01\r\n"}) {
    for (const auto& [big_endian, mark] :
         {std::pair{false, true}, std::pair{true, true}, std::pair{false, false}}) {
      EXPECT_NE(message(utf16(ascii, big_endian, mark)).find(utf16_said), std::string::npos)
          << "big-endian " << big_endian << ", mark " << mark << ": " << ascii;
    }
  }
  EXPECT_NE(
      message("shipment_id;date;entity;country;chip;quantity\nS1;2025-02-01;E1;AE;H100-SXM;10\n")
          .find(needs + ": the header is one column holding semicolons; fields must be separated by commas"),
      std::string::npos);
  EXPECT_NE(message("shipment_id\tdate\tentity\n").find(needs + ": the header is one column holding tabs"),
            std::string::npos);
}

// Exports joined by hand and ERP writers: the reject says the likely cause, not only the symptom.
// A header row repeated inside the file (monthly files joined) is a BAD_DATE at its date that says
// so; a line, or the header, ending with a comma is a WRONG_FIELD_COUNT that says so.
TEST(IngestRejects, RepeatedHeaderAndTrailingCommasSayTheirCause)
{
  const auto message = [](const std::string& text) -> std::string {
    try {
      (void)ingest(text);
    } catch (const parse_error& e) {
      return e.what();
    }
    ADD_FAILURE() << "accepted: " << text;
    return "";
  };
  const std::string line = "S1,2025-02-01,E1,AE,H100-SXM,10\n";
  EXPECT_EQ(message(header + line + "Shipment_ID, DATE ,entity,country,chip,quantity\n"),
            "log.csv:3:14: BAD_DATE: 'DATE' is not a valid YYYY-MM-DD date: the line repeats the header row "
            "(files joined together?); remove it");
  EXPECT_EQ(message(header + "S2,date,E1,AE,H100-SXM,10\n"),  // an id of its own: only a bad date
            "log.csv:2:4: BAD_DATE: 'date' is not a valid YYYY-MM-DD date");
  EXPECT_EQ(
      message(header + "S1,2025-02-01,E1,AE,H100-SXM,10,\n"),
      "log.csv:2:33: WRONG_FIELD_COUNT: expected 6 fields, found 7: the line ends with a comma (an empty "
      "field past the header's last column); remove it");
  EXPECT_EQ(message(header + "S1,2025-02-01,E1,AE,H100-SXM,10,x\n"),  // a value: no guess
            "log.csv:2:33: WRONG_FIELD_COUNT: expected 6 fields, found 7");
  EXPECT_EQ(
      message("shipment_id,date,entity,country,chip,quantity,\n" + line),
      "log.csv:2:30: WRONG_FIELD_COUNT: expected 7 fields, found 6: the header ends with a comma (an unnamed "
      "last column) and this line does not; remove the header's last comma");
  EXPECT_EQ(message(header + "S1,2025-02-01,E1,AE,H100-SXM\n"),  // a plain header: no guess
            "log.csv:2:21: WRONG_FIELD_COUNT: expected 6 fields, found 5");
  // Both with a trailing comma: an unnamed column, ignored like any unknown one.
  EXPECT_EQ(
      ingest("shipment_id,date,entity,country,chip,quantity,\nS1,2025-02-01,E1,AE,H100-SXM,10,\n").lines_read,
      1);
}

// Logs opened and saved in a spreadsheet: the reject adds what the spreadsheet did to the value.
TEST(IngestRejects, SpreadsheetRewritesSayTheirCause)
{
  const auto message = [](const std::string& lines) -> std::string {
    try {
      (void)ingest(header + lines);
    } catch (const parse_error& e) {
      return e.what();
    }
    ADD_FAILURE() << "accepted: " << lines;
    return "";
  };
  const std::string whole_units = "; quantities are whole units: write it without the decimal point";
  const std::string separators  = "; thousands separators are not read: write the digits alone";
  EXPECT_EQ(message("S1,2025-02-01,E1,AE,H100-SXM,\"1,200\"\n"),
            "log.csv:2:30: BAD_QUANTITY: '1,200' is not a non-zero integer" + separators);
  EXPECT_EQ(message("S1,2025-02-01,E1,AE,H100-SXM,-12 000 000\n"),
            "log.csv:2:30: BAD_QUANTITY: '-12 000 000' is not a non-zero integer" + separators);
  EXPECT_EQ(message("S1,2025-02-01,E1,AE,H100-SXM,1'200\n"),
            "log.csv:2:30: BAD_QUANTITY: '1'200' is not a non-zero integer" + separators);
  // No-break spaces (French and Swiss spreadsheets); the message shows them escaped.
  const std::string nbsp   = "\xC2\xA0";
  const std::string narrow = "\xE2\x80\xAF";
  EXPECT_EQ(message("S1,2025-02-01,E1,AE,H100-SXM,1" + nbsp + "200" + nbsp + "000\n"),
            "log.csv:2:30: BAD_QUANTITY: '1\\u00a0200\\u00a0000' is not a non-zero integer" + separators);
  EXPECT_EQ(message("S1,2025-02-01,E1,AE,H100-SXM,12" + narrow + "000\n"),
            "log.csv:2:30: BAD_QUANTITY: '12\\u202f000' is not a non-zero integer" + separators);
  EXPECT_EQ(message("S1,2025-02-01,E1,AE,H100-SXM,1" + nbsp + "200 000\n"),  // mixed: no guess
            "log.csv:2:30: BAD_QUANTITY: '1\\u00a0200 000' is not a non-zero integer");
  EXPECT_EQ(message("S1,2025-02-01,E1,AE,H100-SXM,20000.00\n"),
            "log.csv:2:30: BAD_QUANTITY: '20000.00' is not a non-zero integer" + whole_units);
  EXPECT_EQ(message("S1,2025-02-01,E1,AE,H100-SXM,2.5E+04\n"),
            "log.csv:2:30: BAD_QUANTITY: '2.5E+04' is not a non-zero integer; it looks like a number a "
            "spreadsheet wrote in scientific notation: export the column as whole numbers");
  // Not what a spreadsheet writes, or not only a number: no guess.
  for (const std::string quantity :
       {"1.5", "20000.", "1,2000", "1,200,00", "12,000 000", "1.200", "E5", "1e"}) {
    EXPECT_EQ(message("S1,2025-02-01,E1,AE,H100-SXM,\"" + quantity + "\"\n"),
              "log.csv:2:30: BAD_QUANTITY: '" + quantity + "' is not a non-zero integer")
        << quantity;
  }
  EXPECT_EQ(
      message("S1,45658,E1,AE,H100-SXM,10\n"),
      "log.csv:2:4: BAD_DATE: '45658' is not a valid YYYY-MM-DD date; it looks like a spreadsheet's day "
      "number (45658 is 2025-01-01): export the column as YYYY-MM-DD text");
  const std::string time_of_day = "; a time of day is not read: keep the date alone";
  EXPECT_EQ(message("S1,2025-02-01 09:30:00,E1,AE,H100-SXM,10\n"),
            "log.csv:2:4: BAD_DATE: '2025-02-01 09:30:00' is not a valid YYYY-MM-DD date" + time_of_day);
  EXPECT_EQ(message("S1,2025-02-01T09:30,E1,AE,H100-SXM,10\n"),
            "log.csv:2:4: BAD_DATE: '2025-02-01T09:30' is not a valid YYYY-MM-DD date" + time_of_day);
  for (const std::string date : {"19999", "80001", "456580", "2025-02-30 09:30", "2025-02-01X9"}) {
    EXPECT_EQ(message("S1," + date + ",E1,AE,H100-SXM,10\n"),
              "log.csv:2:4: BAD_DATE: '" + date + "' is not a valid YYYY-MM-DD date")
        << date;
  }
  // A rewritten id is found where it hurts: two shipments whose ids now read alike.
  EXPECT_EQ(
      message("1.23457E+11,2025-02-01,E1,AE,H100-SXM,10\n1.23457E+11,2025-02-02,E2,AE,H100-SXM,10\n"),
      "log.csv:3:1: DUPLICATE_ID: shipment id '1.23457E+11' was already used at log.csv:2; the id looks "
      "like a number a spreadsheet wrote in scientific notation, which drops its last digits (distinct "
      "ids then look alike): export the column as text");
  EXPECT_NE(message("1E+5,2025-02-01,E1,AE,H100-SXM,10\n1E+5,2025-02-02,E2,AE,H100-SXM,10\n")
                .find("; the id looks like a number a spreadsheet wrote in scientific notation"),
            std::string::npos);
  EXPECT_EQ(message("S1E5,2025-02-01,E1,AE,H100-SXM,10\nS1E5,2025-02-02,E2,AE,H100-SXM,10\n"),
            "log.csv:3:1: DUPLICATE_ID: shipment id 'S1E5' was already used at log.csv:2");
  // A totals row, whatever its first defect, labelled in the id or the entity column.
  const std::string totals = "; the line looks like a spreadsheet's totals row: remove it";
  EXPECT_EQ(message("Total,,,,,40000\n"),
            "log.csv:2:7: BAD_DATE: '' is not a valid YYYY-MM-DD date" + totals);
  EXPECT_EQ(message(",,Grand total ,,,40000\n"), "log.csv:2:1: EMPTY_FIELD: empty shipment_id" + totals);
  EXPECT_EQ(message("SUM,2025-02-01,E1,,H100-SXM,40000\n"),
            "log.csv:2:19: UNKNOWN_COUNTRY: '' is not in the countries table" + totals);
  EXPECT_EQ(message("Totally,,,,,40000\n"), "log.csv:2:9: BAD_DATE: '' is not a valid YYYY-MM-DD date");
}

// A column given twice (names compare without case and surrounding spaces) is fatal, with
// --rejects too: which of the two holds the values would be a guess.
TEST(IngestRejects, RepeatedColumnIsFatal)
{
  for (const bool keep : {false, true}) {
    ingest_options options;
    options.keep_rejects = keep;
    try {
      (void)ingest(
          "shipment_id,date,entity,country,chip,quantity, QUANTITY \nS1,2025-02-01,E1,AE,H100-SXM,1,2\n",
          options);
      ADD_FAILURE() << "a repeated quantity column was accepted";
    } catch (const parse_error& e) {
      EXPECT_EQ(e.reason(), "DUPLICATE_COLUMN");
      EXPECT_EQ(e.line(), 1);
    }
  }
}

TEST(IngestRejects, EmptyFileIsMissingColumn)
{
  for (const char* text : {"", "\n\n", "\xEF\xBB\xBF"}) {
    try {
      (void)ingest(text, keep_rejects());
      ADD_FAILURE() << "an empty file was accepted";
    } catch (const parse_error& e) {
      EXPECT_EQ(e.reason(), "MISSING_COLUMN");
    }
  }
}

// A log with bare-CR line ends (SPEC allows \n and \r\n only) is one header row to the reader:
// it used to load as a header-only log, 0 lines read and exit 0, every shipment silently
// dropped. Fatal like any malformed header, with --rejects too, naming the first such column.
// `\n\r` line ends (some exports) put a CR at the start of every record instead: each shipment id
// began with it, so the same log given again that way, beside its `\n` copy or into a ledger,
// matched none of its ids and every line counted twice. Fatal too, at that CR.
TEST(IngestRejects, BareCarriageReturnLineEndsAreAMalformedHeader)
{
  struct bad_log {
    std::string text;
    std::int64_t line, column;
  };
  const bad_log logs[] = {
      // The last column optional: every required name stays whole, so only the CR gives it away.
      {"shipment_id,date,entity,country,chip,quantity,exporter\rS1,2025-02-01,E1,AE,H100-SXM,10,NV\r", 1,
       47},  // "exporter\rS1"
      {"shipment_id,date,entity,country,chip,quantity\n\rS1,2025-02-01,E1,AE,H100-SXM,10\n\rS2,2025-02-01,E1,"
       "AE,H100-SXM,10\n\r",
       2, 1}};
  for (const bad_log& log : logs) {
    for (const bool keep : {false, true}) {
      ingest_options options;
      options.keep_rejects = keep;
      try {
        (void)ingest(log.text, options);
        ADD_FAILURE() << "a log with bare-CR line ends was accepted: " << log.text;
      } catch (const parse_error& e) {
        EXPECT_EQ(e.reason(), "MALFORMED_HEADER");
        EXPECT_EQ(e.line(), log.line);
        EXPECT_EQ(e.column(), log.column);
      }
    }
  }
  // \r\n line ends stay what they are, and so do a CRLF blank line after the header and a lone CR
  // that ends the file (a `\r\n` cut short).
  EXPECT_EQ(ingest("shipment_id,date,entity,country,chip,quantity\r\nS1,2025-02-01,E1,AE,H100-SXM,10\r\n")
                .lines_read,
            1);
  EXPECT_EQ(ingest("shipment_id,date,entity,country,chip,quantity\n\r\nS1,2025-02-01,E1,AE,H100-SXM,10\n")
                .lines_read,
            1);
  EXPECT_EQ(ingest("shipment_id,date,entity,country,chip,quantity\n\r").lines_read, 0);
}

TEST(IngestRejects, MissingColumnNamesTheHeaderLine)
{
  // Blank lines before the header: the header, and so the defect, is on line 3.
  try {
    (void)ingest("\n\nshipment_id,date,entity,country,chip\nS1,2025-02-01,E1,AE,H100-SXM\n");
    ADD_FAILURE() << "missing quantity accepted";
  } catch (const parse_error& e) {
    EXPECT_EQ(e.reason(), "MISSING_COLUMN");
    EXPECT_EQ(e.line(), 3);
    EXPECT_EQ(e.column(), 1);
  }
}

TEST(IngestRejects, MalformedHeaderIsFatalAtItsPosition)
{
  // A header that cannot be split is not a missing header: the quote defect is reported where it
  // is, and it is fatal even with keep_rejects (no line of the file could be interpreted).
  for (const bool keep : {false, true}) {
    ingest_options options;
    options.keep_rejects = keep;
    try {
      (void)ingest("shipment_id,\"date\"x,entity,country,chip,quantity\nS1,2025-02-01,E1,AE,H100-SXM,1\n", options);
      ADD_FAILURE() << "a malformed header was accepted";
    } catch (const parse_error& e) {
      EXPECT_EQ(e.reason(), "BAD_QUOTE");
      EXPECT_EQ(e.line(), 1);
      EXPECT_EQ(e.column(), 19);  // `shipment_id,"date"` is 18 bytes
    }
    try {
      (void)ingest("shipment_id,date,\"entity,country,chip,quantity\n", options);
      ADD_FAILURE() << "a malformed header was accepted";
    } catch (const parse_error& e) {
      EXPECT_EQ(e.reason(), "UNTERMINATED_QUOTE");
      EXPECT_EQ(e.line(), 1);
      EXPECT_EQ(e.column(), 18);
    }
  }
}

TEST(IngestRejects, EmptyFields)
{
  expect_rejected(header + ",2025-02-01,E1,AE,H100-SXM,10\n", 2, 1, "EMPTY_FIELD");
  expect_rejected(header + "\"\",2025-02-01,E1,AE,H100-SXM,10\n", 2, 1, "EMPTY_FIELD");
  expect_rejected(header + "S1,2025-02-01,,AE,H100-SXM,10\n", 2, 15, "EMPTY_FIELD");
  expect_rejected(header + "S1,2025-02-01,E1,AE,,10\n", 2, 21, "EMPTY_FIELD");
}

TEST(IngestRejects, BadTppPerUnit)
{
  const std::string head = "shipment_id,date,entity,country,chip,quantity,tpp_per_unit\n";
  for (const char* tpp : {"0", "-5", "abc", "1.5"}) {
    // `S1,2025-02-01,E1,AE,H100-SXM,10,` is 32 bytes.
    expect_rejected(head + "S1,2025-02-01,E1,AE,H100-SXM,10," + tpp + "\n", 2, 33, "BAD_TPP_PER_UNIT");
  }
}

TEST(IngestRejects, FirstDefectInColumnOrderIsReported)
{
  // Both the date and the country are bad: the date comes first.
  expect_rejected(header + "S1,2025-13-01,E1,ZZ,H100-SXM,10\n", 2, 4, "BAD_DATE");
}

// ---- keep_rejects -------------------------------------------------------------------------------

TEST(IngestKeepRejects, BadLinesCollectedGoodLinesKept)
{
  const std::string text = header +
                           "S1,2025-02-01,E1,AE,H100-SXM,10\n"     // line 2: good
                           "S2,2025-02-30,E1,AE,H100-SXM,10\n"     // line 3: BAD_DATE col 4
                           "S3,2025-02-01,E1,ZZ,H100-SXM,10\n"     // line 4: UNKNOWN_COUNTRY col 18
                           "S4,2025-02-01,E1,AE,H100-SXM,5\n"      // line 5: good
                           "S5,2025-02-01,\"E1,AE,H100-SXM,10\n"   // line 6: UNTERMINATED_QUOTE col 15
                           "S6,2025-02-01,E1,AE,H100-SXM,0\n"      // line 7: BAD_QUANTITY col 30
                           "S1,2025-02-01,E1,AE,H100-SXM,1\n"      // line 8: DUPLICATE_ID col 1
                           "S7,2025-02-01,E1,AE,H100-SXM,1,x\n"    // line 9: WRONG_FIELD_COUNT col 32
                           "S8,2025-02-01,E1,AE,H100-SXM,-2\n";    // line 10: good
  const shipment_log log = ingest(text, keep_rejects());
  ASSERT_EQ(log.columns.size(), 3);
  EXPECT_EQ(log.shipment_id(0), "S1");
  EXPECT_EQ(log.shipment_id(1), "S4");
  EXPECT_EQ(log.shipment_id(2), "S8");
  EXPECT_EQ(log.columns.tpp[2], -2 * h100_tpp);
  EXPECT_EQ(log.source_line, (std::vector<std::int64_t>{2, 5, 10}));
  EXPECT_EQ(log.lines_read, 9);
  EXPECT_EQ(log.lines_read, log.columns.size() + static_cast<std::int64_t>(log.rejects.size()));

  struct expected_reject {
    std::int64_t line, column;
    const char* reason;
    std::string raw;
  };
  const std::vector<expected_reject> expected = {
    {3, 4, "BAD_DATE", "S2,2025-02-30,E1,AE,H100-SXM,10"},
    {4, 18, "UNKNOWN_COUNTRY", "S3,2025-02-01,E1,ZZ,H100-SXM,10"},
    {6, 15, "UNTERMINATED_QUOTE", "S5,2025-02-01,\"E1,AE,H100-SXM,10"},
    {7, 30, "BAD_QUANTITY", "S6,2025-02-01,E1,AE,H100-SXM,0"},
    {8, 1, "DUPLICATE_ID", "S1,2025-02-01,E1,AE,H100-SXM,1"},
    {9, 32, "WRONG_FIELD_COUNT", "S7,2025-02-01,E1,AE,H100-SXM,1,x"},
  };
  ASSERT_EQ(log.rejects.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(log.rejects[i].file, "log.csv") << i;
    EXPECT_EQ(log.rejects[i].line, expected[i].line) << i;
    EXPECT_EQ(log.rejects[i].column, expected[i].column) << i;
    EXPECT_EQ(log.rejects[i].reason, expected[i].reason) << i;
    EXPECT_EQ(log.rejects[i].raw, expected[i].raw) << i;
    EXPECT_FALSE(log.rejects[i].detail.empty()) << i;
  }
}

TEST(IngestKeepRejects, MaxRejectsThrowsOnceExceeded)
{
  const std::string text = header +
                           "S1,2025-02-30,E1,AE,H100-SXM,10\n"
                           "S2,2025-02-01,E1,AE,H100-SXM,10\n"
                           "S3,2025-02-01,E1,ZZ,H100-SXM,10\n"
                           "S4,2025-02-01,E1,ZZ,H100-SXM,10\n";
  // Two bad lines within a limit of 2: no throw.
  {
    const std::string two = header + "S1,2025-02-30,E1,AE,H100-SXM,10\nS2,2025-02-01,E1,AE,H100-SXM,10\n"
                                     "S3,2025-02-01,E1,ZZ,H100-SXM,10\n";
    const shipment_log log = ingest(two, keep_rejects(2));
    EXPECT_EQ(log.rejects.size(), 2U);
    EXPECT_EQ(log.columns.size(), 1);
  }
  // Three bad lines with a limit of 2: the third throws, and the rejects so far are kept.
  shipment_log_builder builder(countries(), chips(), keep_rejects(2));
  EXPECT_THROW(builder.add_text("log.csv", text), too_many_rejects);
  ASSERT_EQ(builder.rejects().size(), 3U);
  EXPECT_EQ(builder.rejects()[2].line, 5);
}

TEST(IngestKeepRejects, MaxRejectsZeroStopsAtTheFirstBadLine)
{
  shipment_log_builder builder(countries(), chips(), keep_rejects(0));
  try {
    builder.add_text("log.csv", header + "S1,2025-02-01,E1,AE,H100-SXM,10\nS2,2025-02-01,E1,AE,H999,10\n");
    ADD_FAILURE() << "no too_many_rejects";
  } catch (const too_many_rejects& e) {
    EXPECT_NE(std::string(e.what()).find("log.csv:3:21"), std::string::npos) << e.what();
  }
  ASSERT_EQ(builder.rejects().size(), 1U);
  EXPECT_EQ(builder.rejects()[0].reason, "UNKNOWN_CHIP");
}

TEST(IngestKeepRejects, RejectedIdsAreNotRegistered)
{
  // A rejected line's id can be used by a later, corrected line.
  const shipment_log log = ingest(header + "S1,2025-02-30,E1,AE,H100-SXM,10\nS1,2025-02-28,E1,AE,H100-SXM,10\n",
                                  keep_rejects());
  ASSERT_EQ(log.columns.size(), 1);
  EXPECT_EQ(log.shipment_id(0), "S1");
  EXPECT_EQ(log.columns.date[0], days_from_civil(2025, 2, 28));
  ASSERT_EQ(log.rejects.size(), 1U);
  EXPECT_EQ(log.rejects[0].reason, "BAD_DATE");
}

TEST(IngestKeepRejects, RejectedDuplicateLeavesNoTrace)
{
  // S1 (5e18) accepted; its duplicate (4e18) rejected; S2 (4e18) must be accepted: 5e18 + 4e18
  // fits, but it would not if the rejected duplicate's tpp had been counted. The id of S2 must
  // read back exactly, and a third S1 is still a duplicate.
  const std::string text = "shipment_id,date,entity,country,chip,quantity,tpp_per_unit\n"
                           "S1,2025-02-01,E1,AE,X,1,5000000000000000000\n"
                           "S1,2025-02-01,E1,AE,X,1,4000000000000000000\n"
                           "S2,2025-02-01,E1,AE,X,1,4000000000000000000\n"
                           "S1,2025-02-01,E1,AE,X,1,1\n";
  const shipment_log log = ingest(text, keep_rejects());
  ASSERT_EQ(log.columns.size(), 2);
  EXPECT_EQ(log.shipment_id(0), "S1");
  EXPECT_EQ(log.shipment_id(1), "S2");
  ASSERT_EQ(log.rejects.size(), 2U);
  EXPECT_EQ(log.rejects[0].reason, "DUPLICATE_ID");
  EXPECT_EQ(log.rejects[0].line, 3);
  EXPECT_EQ(log.rejects[1].reason, "DUPLICATE_ID");
  EXPECT_EQ(log.rejects[1].line, 5);
}

TEST(IngestKeepRejects, ReadingResumesAfterAnUnterminatedQuote)
{
  // The unterminated quote on line 2 runs to the end of the file; lines 3 and 4 are still read.
  const shipment_log log = ingest(header + "S1,\"2025-02-01,E1,AE,H100-SXM,10\n"
                                           "S2,2025-02-01,E1,AE,H100-SXM,10\n"
                                           "S3,2025-02-01,E1,AE,H100-SXM,10\n",
                                  keep_rejects());
  ASSERT_EQ(log.columns.size(), 2);
  EXPECT_EQ(log.shipment_id(0), "S2");
  EXPECT_EQ(log.source_line[0], 3);
  ASSERT_EQ(log.rejects.size(), 1U);
  EXPECT_EQ(log.rejects[0].reason, "UNTERMINATED_QUOTE");
  EXPECT_EQ(log.rejects[0].line, 2);
  EXPECT_EQ(log.rejects[0].column, 4);
  EXPECT_EQ(log.lines_read, 3);
}

TEST(IngestKeepRejects, FailedAdHocLineAddsNoChip)
{
  const shipment_log log = ingest("shipment_id,date,entity,country,chip,quantity,tpp_per_unit\n"
                                  "S1,2025-02-30,E1,AE,custom-asic,4,2500\n",
                                  keep_rejects());
  EXPECT_EQ(log.columns.size(), 0);
  EXPECT_EQ(log.chips.rows.size(), chips().rows.size());
}

}  // namespace

// ---- regressions found by the fuzzers (tests/fuzz) ----------------------------------------------

namespace {

TEST(IngestFuzzRegression, TrailingBareCarriageReturnIsNotALine)
{
  // A log whose last line is a lone `\r` (a truncated `\r\n` after a blank line) was read as a
  // one-field record: fail-fast stopped with WRONG_FIELD_COUNT, keep_rejects rejected it.
  const std::string text = header + "S1,2025-02-01,E1,AE,H100-SXM,10\r\n\r";
  const shipment_log strict = ingest(text);
  EXPECT_EQ(strict.columns.size(), 1);
  EXPECT_EQ(strict.lines_read, 1);
  const shipment_log kept = ingest(text, keep_rejects());
  EXPECT_EQ(kept.columns.size(), 1);
  EXPECT_TRUE(kept.rejects.empty());
  EXPECT_EQ(kept.lines_read, 1);
}

}  // namespace
