/// @file csv_test.cpp
/// @brief detail::csv_reader (RFC 4180 records with line/column of each field), csv_header and
/// parse_int64.
#include "csv.hpp"

#include <capledger/error.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

using capledger::detail::csv_reader;
using capledger::detail::csv_status;

/// Values of the current record's fields, as owned strings.
std::vector<std::string> values(const csv_reader& reader)
{
  std::vector<std::string> out;
  for (const auto& field : reader.fields()) { out.emplace_back(field.value); }
  return out;
}

using strings = std::vector<std::string>;

TEST(CsvReader, EmptyInputHasNoRecord)
{
  csv_reader reader("");
  EXPECT_EQ(reader.next(), csv_status::end);
  EXPECT_EQ(reader.next(), csv_status::end);  // stays at the end
}

TEST(CsvReader, OnlyBlankLinesHaveNoRecord)
{
  csv_reader reader("\n\r\n\n");
  EXPECT_EQ(reader.next(), csv_status::end);
}

TEST(CsvReader, SplitsSimpleRecordsWithPositions)
{
  csv_reader reader("a,bb,ccc\nd,e,f\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"a", "bb", "ccc"}));
  EXPECT_EQ(reader.record_line(), 1);
  ASSERT_EQ(reader.fields().size(), 3U);
  EXPECT_EQ(reader.fields()[0].line, 1);
  EXPECT_EQ(reader.fields()[0].column, 1);
  EXPECT_EQ(reader.fields()[1].column, 3);  // "a," is 2 bytes
  EXPECT_EQ(reader.fields()[2].column, 6);  // "a,bb," is 5 bytes
  EXPECT_EQ(reader.raw(), "a,bb,ccc");

  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"d", "e", "f"}));
  EXPECT_EQ(reader.record_line(), 2);
  EXPECT_EQ(reader.fields()[2].line, 2);
  EXPECT_EQ(reader.fields()[2].column, 5);
  EXPECT_EQ(reader.next(), csv_status::end);
}

TEST(CsvReader, LastRecordWithoutLineEnd)
{
  csv_reader reader("a,b\nc,d");
  ASSERT_EQ(reader.next(), csv_status::record);
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"c", "d"}));
  EXPECT_EQ(reader.raw(), "c,d");
  EXPECT_EQ(reader.next(), csv_status::end);
}

TEST(CsvReader, EmptyFieldsAndTrailingComma)
{
  csv_reader reader(",x,\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"", "x", ""}));
  EXPECT_EQ(reader.fields()[0].column, 1);
  EXPECT_EQ(reader.fields()[1].column, 2);
  EXPECT_EQ(reader.fields()[2].column, 4);
}

TEST(CsvReader, QuotedFieldsHoldCommasAndQuotes)
{
  csv_reader reader(R"("a, b","say ""hi""",plain,"")" "\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"a, b", "say \"hi\"", "plain", ""}));
  // "a, b", is 7 bytes; "say ""hi""", is 13 bytes; plain, is 6 bytes.
  EXPECT_EQ(reader.fields()[0].column, 1);
  EXPECT_EQ(reader.fields()[1].column, 8);
  EXPECT_EQ(reader.fields()[2].column, 21);
  EXPECT_EQ(reader.fields()[3].column, 27);
}

TEST(CsvReader, OnlyAnEscapedQuote)
{
  csv_reader reader("\"\"\"\",\"\"\"\"\"\"\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"\"", "\"\""}));
}

TEST(CsvReader, SeveralEscapedFieldsStayValidTogether)
{
  // Many unescaped values in one record: their storage grows while the record is read, and
  // every field must still point at its own text afterwards.
  std::string line;
  strings expected;
  for (int i = 0; i < 40; ++i) {
    if (i > 0) { line += ','; }
    const std::string body = "v" + std::to_string(i) + std::string(static_cast<std::size_t>(i), 'x');
    line += "\"" + body + "\"\"q\"";
    expected.push_back(body + "\"q");
  }
  line += "\n";
  csv_reader reader(line);  // the reader views the text: it must outlive the reader
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), expected);
}

TEST(CsvReader, EmbeddedNewlineAdvancesLineOfLaterFields)
{
  // Record 1 spans physical lines 1..3.
  csv_reader reader("x,\"line1\nline2\nline3\",y,z\nnext,row\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"x", "line1\nline2\nline3", "y", "z"}));
  EXPECT_EQ(reader.record_line(), 1);
  EXPECT_EQ(reader.fields()[1].line, 1);
  EXPECT_EQ(reader.fields()[1].column, 3);
  // Line 3 is `line3",y,z`: y is at byte 8, z at byte 10.
  EXPECT_EQ(reader.fields()[2].line, 3);
  EXPECT_EQ(reader.fields()[2].column, 8);
  EXPECT_EQ(reader.fields()[3].line, 3);
  EXPECT_EQ(reader.fields()[3].column, 10);

  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"next", "row"}));
  EXPECT_EQ(reader.record_line(), 4);
  EXPECT_EQ(reader.fields()[1].line, 4);
  EXPECT_EQ(reader.fields()[1].column, 6);
}

TEST(CsvReader, CrlfLineEnds)
{
  csv_reader reader("a,b\r\n\"q\",c\r\n\"x\r\ny\",d\r\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"a", "b"}));
  EXPECT_EQ(reader.raw(), "a,b");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"q", "c"}));
  EXPECT_EQ(reader.record_line(), 2);
  EXPECT_EQ(reader.raw(), "\"q\",c");
  ASSERT_EQ(reader.next(), csv_status::record);
  // A line break inside quotes is data, kept as written.
  EXPECT_EQ(values(reader), (strings{"x\r\ny", "d"}));
  EXPECT_EQ(reader.record_line(), 3);
  EXPECT_EQ(reader.fields()[1].line, 4);
  EXPECT_EQ(reader.fields()[1].column, 4);  // `y",d`
  EXPECT_EQ(reader.next(), csv_status::end);
}

TEST(CsvReader, CrlfAfterQuotedFieldAtLineEnd)
{
  csv_reader reader("a,\"b\"\r\nc,d\r\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"a", "b"}));
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"c", "d"}));
  EXPECT_EQ(reader.record_line(), 2);
}

TEST(CsvReader, CarriageReturnAtEndOfFileIsALineEnd)
{
  // A file that ends in `\r` without `\n` (a truncated CRLF): the CR is not data, neither in
  // the value, nor in the raw text, nor after a closing quote.
  csv_reader unquoted("a,b\r");
  ASSERT_EQ(unquoted.next(), csv_status::record);
  EXPECT_EQ(values(unquoted), (strings{"a", "b"}));
  EXPECT_EQ(unquoted.raw(), "a,b");
  EXPECT_EQ(unquoted.next(), csv_status::end);

  csv_reader quoted("a,\"b\"\r");
  ASSERT_EQ(quoted.next(), csv_status::record);
  EXPECT_EQ(values(quoted), (strings{"a", "b"}));
  EXPECT_EQ(quoted.raw(), "a,\"b\"");
  EXPECT_EQ(quoted.next(), csv_status::end);
}

TEST(CsvReader, ByteOrderMarkIsNotData)
{
  csv_reader reader("\xEF\xBB\xBFid,name\nx,y\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"id", "name"}));
  // The BOM's 3 bytes still count in columns, as editors count them.
  EXPECT_EQ(reader.fields()[0].column, 4);
  EXPECT_EQ(reader.fields()[1].column, 7);
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(reader.fields()[0].column, 1);
}

TEST(CsvReader, ByteOrderMarkOnlyInFirstPosition)
{
  // A BOM later in the file is data.
  csv_reader reader("a\n\xEF\xBB\xBF" "b\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"\xEF\xBB\xBF" "b"}));
}

TEST(CsvReader, BlankLinesAreSkippedButCounted)
{
  csv_reader reader("\na,b\n\n\r\nc,d\n\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"a", "b"}));
  EXPECT_EQ(reader.record_line(), 2);
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"c", "d"}));
  EXPECT_EQ(reader.record_line(), 5);
  EXPECT_EQ(reader.fields()[1].line, 5);
  EXPECT_EQ(reader.next(), csv_status::end);
}

TEST(CsvReader, SpacesAroundUnquotedFieldsAreTrimmed)
{
  csv_reader reader("  a  ,\tb\t, c d ,   \n");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"a", "b", "c d", ""}));
  EXPECT_EQ(reader.fields()[0].column, 3);  // first byte of the value, after the spaces
  EXPECT_EQ(reader.fields()[1].column, 8);  // `  a  ,\t` is 7 bytes
  EXPECT_EQ(reader.fields()[2].column, 12); // `  a  ,\tb\t, ` is 11 bytes
}

TEST(CsvReader, SpacesInsideQuotesAreKept)
{
  csv_reader reader("  \" a \" ,b\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{" a ", "b"}));
  EXPECT_EQ(reader.fields()[0].column, 3);  // the opening quote
  EXPECT_EQ(reader.fields()[1].column, 10);
}

TEST(CsvReader, UnterminatedQuoteReportsTheOpeningQuote)
{
  csv_reader reader("h1,h2\nok,1\nx,\"never closed\nmore,2\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  ASSERT_EQ(reader.next(), csv_status::record);
  ASSERT_EQ(reader.next(), csv_status::unterminated_quote);
  EXPECT_EQ(reader.error_line(), 3);
  EXPECT_EQ(reader.error_column(), 3);
  EXPECT_EQ(reader.raw(), "x,\"never closed");
  // Reading resumes at the line after the opening quote: line 4 is still read.
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"more", "2"}));
  EXPECT_EQ(reader.record_line(), 4);
  EXPECT_EQ(reader.fields()[1].line, 4);
  EXPECT_EQ(reader.fields()[1].column, 6);
  EXPECT_EQ(reader.next(), csv_status::end);
}

TEST(CsvReader, UnterminatedQuoteOnLastLine)
{
  csv_reader reader("a\n\"b");
  ASSERT_EQ(reader.next(), csv_status::record);
  ASSERT_EQ(reader.next(), csv_status::unterminated_quote);
  EXPECT_EQ(reader.error_line(), 2);
  EXPECT_EQ(reader.error_column(), 1);
  EXPECT_EQ(reader.next(), csv_status::end);
}

TEST(CsvReader, TextAfterClosingQuoteIsBadQuote)
{
  csv_reader reader("a,\"bc\"x,d\ne,f\n");
  ASSERT_EQ(reader.next(), csv_status::bad_quote);
  EXPECT_EQ(reader.error_line(), 1);
  EXPECT_EQ(reader.error_column(), 7);  // the `x`
  EXPECT_EQ(reader.raw(), "a,\"bc\"x,d");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"e", "f"}));
  EXPECT_EQ(reader.record_line(), 2);
}

TEST(CsvReader, SpacesAfterClosingQuoteThenTextIsBadQuote)
{
  csv_reader reader("\"ab\"  z\n");
  ASSERT_EQ(reader.next(), csv_status::bad_quote);
  EXPECT_EQ(reader.error_line(), 1);
  EXPECT_EQ(reader.error_column(), 7);
}

TEST(CsvReader, SpacesAfterClosingQuoteAreAllowed)
{
  csv_reader reader("\"ab\"  ,c\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"ab", "c"}));
}

TEST(CsvReader, BadQuoteAfterEmbeddedNewline)
{
  // The quoted field spans lines 2-3; the stray text is on line 3, column 3.
  csv_reader reader("h\n\"a\nb\"x,1\nnext\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  ASSERT_EQ(reader.next(), csv_status::bad_quote);
  EXPECT_EQ(reader.error_line(), 3);
  EXPECT_EQ(reader.error_column(), 3);
  EXPECT_EQ(reader.raw(), "\"a\nb\"x,1");  // every physical line the record took
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"next"}));
  EXPECT_EQ(reader.record_line(), 4);
}

TEST(CsvReader, ErrorOnCrlfLineKeepsRawWithoutCarriageReturn)
{
  csv_reader reader("\"a\"b\r\nc\r\n");
  ASSERT_EQ(reader.next(), csv_status::bad_quote);
  EXPECT_EQ(reader.error_column(), 4);
  EXPECT_EQ(reader.raw(), "\"a\"b");
  ASSERT_EQ(reader.next(), csv_status::record);
  EXPECT_EQ(values(reader), (strings{"c"}));
  EXPECT_EQ(reader.record_line(), 2);
}

TEST(CsvHeader, FindsNamesCaseInsensitivelyAndTrimmed)
{
  csv_reader reader(" Shipment_ID ,DATE,\"Entity \",x\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  const capledger::detail::csv_header header(reader.fields(), "h.csv");
  EXPECT_EQ(header.size(), 4);
  EXPECT_EQ(header.find("shipment_id"), 0);
  EXPECT_EQ(header.find("date"), 1);
  EXPECT_EQ(header.find("entity"), 2);
  EXPECT_EQ(header.find("x"), 3);
  EXPECT_EQ(header.find("country"), -1);
}

// Two columns of one name (after case and spaces): which one holds the values would be a guess,
// and a wrong guess a wrong total. The name is refused at its second field; a repeated name no
// one looks for is not.
TEST(CsvHeader, ANameGivenTwiceIsRefusedWhenLookedFor)
{
  csv_reader reader("quantity,x,x,date, Quantity\n");
  ASSERT_EQ(reader.next(), csv_status::record);
  const capledger::detail::csv_header header(reader.fields(), "h.csv");
  EXPECT_EQ(header.find("date"), 3);
  try {
    (void)header.find("quantity");
    ADD_FAILURE() << "a repeated column was accepted";
  } catch (const capledger::parse_error& e) {
    EXPECT_STREQ(
        e.what(),
        "h.csv:1:20: DUPLICATE_COLUMN: column 'quantity' appears twice in the header (fields 1 and 5)");
  }
}

// ---- parse_int64 ------------------------------------------------------------------------------

bool parses(const std::string& text, std::int64_t& value)
{
  return capledger::detail::parse_int64(text, value);
}

TEST(ParseInt64, AcceptsSignedDecimals)
{
  std::int64_t v = 0;
  ASSERT_TRUE(parses("0", v));
  EXPECT_EQ(v, 0);
  ASSERT_TRUE(parses("42", v));
  EXPECT_EQ(v, 42);
  ASSERT_TRUE(parses("+42", v));
  EXPECT_EQ(v, 42);
  ASSERT_TRUE(parses("-42", v));
  EXPECT_EQ(v, -42);
  ASSERT_TRUE(parses("-0", v));
  EXPECT_EQ(v, 0);
  ASSERT_TRUE(parses("007", v));
  EXPECT_EQ(v, 7);
}

TEST(ParseInt64, AcceptsTheExtremes)
{
  std::int64_t v = 0;
  ASSERT_TRUE(parses("9223372036854775807", v));
  EXPECT_EQ(v, std::numeric_limits<std::int64_t>::max());
  ASSERT_TRUE(parses("+9223372036854775807", v));
  EXPECT_EQ(v, std::numeric_limits<std::int64_t>::max());
  ASSERT_TRUE(parses("-9223372036854775808", v));
  EXPECT_EQ(v, std::numeric_limits<std::int64_t>::min());
}

TEST(ParseInt64, RejectsOverflow)
{
  std::int64_t v = 0;
  EXPECT_FALSE(parses("9223372036854775808", v));
  EXPECT_FALSE(parses("+9223372036854775808", v));
  EXPECT_FALSE(parses("-9223372036854775809", v));
  EXPECT_FALSE(parses("99999999999999999999999", v));
}

TEST(ParseInt64, RejectsMalformedText)
{
  std::int64_t v = 0;
  for (const char* text : {"", "+", "-", "+-1", "-+1", "++1", "--1", " 1", "1 ", " ", "1.0", "1e3", "0x10",
                           "1,000", "abc", "12a", "\t1"}) {
    EXPECT_FALSE(parses(text, v)) << "'" << text << "'";
  }
}

}  // namespace

// ---- regressions found by the fuzzers (tests/fuzz) ----------------------------------------------

namespace {

TEST(CsvReaderFuzzRegression, LoneCarriageReturnAtEndIsABlankLine)
{
  // csv_differential_fuzz, minimised to the single byte "\r": a `\r` that ends the text is a
  // truncated `\r\n`, so a line holding only it is blank, not a record with one empty field.
  csv_reader alone("\r");
  EXPECT_EQ(alone.next(), csv_status::end);

  csv_reader after_record("a,b\n\r");
  ASSERT_EQ(after_record.next(), csv_status::record);
  EXPECT_EQ(values(after_record), (strings{"a", "b"}));
  EXPECT_EQ(after_record.next(), csv_status::end);

  csv_reader after_crlf("a\r\n\r\n\r");
  ASSERT_EQ(after_crlf.next(), csv_status::record);
  EXPECT_EQ(values(after_crlf), (strings{"a"}));
  EXPECT_EQ(after_crlf.next(), csv_status::end);

  // A `\r` followed by more text is data, as before.
  csv_reader data("\rx\n");
  ASSERT_EQ(data.next(), csv_status::record);
  EXPECT_EQ(values(data), (strings{"\rx"}));
}

}  // namespace

#if __has_include("fast_csv.hpp")
#include "fast_csv.hpp"

namespace {

using capledger::detail::fast_csv_reader;

TEST(FastCsvReaderFuzzRegression, LoneCarriageReturnAtEndIsABlankLine)
{
  // csv_differential_fuzz: the fast reader kept the old blank-line rule and read "\r" as a record.
  fast_csv_reader alone("\r");
  EXPECT_EQ(alone.next(), csv_status::end);
  fast_csv_reader after_record("a,b\r\n\r");
  ASSERT_EQ(after_record.next(), csv_status::record);
  EXPECT_EQ(after_record.next(), csv_status::end);
}

TEST(FastCsvReaderFuzzRegression, FirstChunkSkipsTheByteOrderMark)
{
  // csv_differential_fuzz (chunked reading): a chunk reader starting at 0 read the BOM as data of
  // the first field, so a chunked ingest would not find the `shipment_id` column.
  const std::string text = "\xEF\xBB\xBFid,name\nx,y\n";
  fast_csv_reader first(text, 0, 11, 1);  // line 2 starts at byte 11
  ASSERT_EQ(first.next(), csv_status::record);
  ASSERT_EQ(first.fields().size(), 2U);
  EXPECT_EQ(first.fields()[0].value, "id");
  EXPECT_EQ(first.fields()[0].column, 4);  // the BOM's bytes still count, as csv_reader counts them
  EXPECT_EQ(first.raw(), "id,name");
  EXPECT_EQ(first.next(), csv_status::end);
  EXPECT_EQ(first.position(), 11U);
  fast_csv_reader second(text, first.position(), text.size(), first.line());
  ASSERT_EQ(second.next(), csv_status::record);
  EXPECT_EQ(second.fields()[0].value, "x");
  EXPECT_EQ(second.record_line(), 2);
  EXPECT_EQ(second.next(), csv_status::end);
}

// `peek_plain_fields` (a replay's look at a line's date and country) against `next`: two
// readers in lockstep over random texts of commas, quotes, spaces, tabs, CR, LF and short and
// long lines, each from several starting lines and limits, asking for two fields (in either
// order, or the same one twice). Where the peek gives them, `next` reads a record with those
// fields, and skipping lands where reading does; where it gives none, nothing was consumed
// and `next` reads on as usual.
// A reader keeping at most k fields of a record reads what an unlimited one reads (statuses,
// raw text, errors, the fields' count) and keeps the first k of its fields, quoted ones with
// `""` included: how a line of millions of commas stays one bad line of bounded memory.
TEST(FastCsvReader, FieldsPastTheLimitAreCountedNotKept)
{
  std::mt19937 random(11);
  const char alphabet[] = {'a', 'b', ',', ',', ',', ',', '"', '"', ' ', '\r', '\n'};
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const auto length = static_cast<std::size_t>(random() % 300);
    for (std::size_t i = 0; i < length; ++i) { text += alphabet[random() % sizeof alphabet]; }
    const std::size_t keep = random() % 5;
    capledger::detail::fast_csv_reader all(text), some(text);
    some.keep_at_most(keep);
    for (int record = 0; record < 1000; ++record) {
      const csv_status want = all.next();
      ASSERT_EQ(some.next(), want) << round;
      if (want == csv_status::end) { break; }
      ASSERT_EQ(some.raw(), all.raw()) << round;
      if (want != csv_status::record) {
        ASSERT_EQ(some.error_line(), all.error_line()) << round;
        ASSERT_EQ(some.error_column(), all.error_column()) << round;
        continue;
      }
      ASSERT_EQ(some.field_count(), all.fields().size()) << round;
      ASSERT_EQ(some.fields().size(), std::min(keep, all.fields().size())) << round;
      for (std::size_t f = 0; f < some.fields().size(); ++f) {
        ASSERT_EQ(some.fields()[f].value, all.fields()[f].value) << round << " field " << f;
        ASSERT_EQ(some.fields()[f].line, all.fields()[f].line) << round;
        ASSERT_EQ(some.fields()[f].column, all.fields()[f].column) << round;
      }
    }
  }
}

TEST(FastCsvReader, PeekedFieldsAreTheFieldsNextReads)
{
  std::mt19937 random(7);
  const char alphabet[] = {'a', 'b', '1', ',', ',', ',', '"', ' ', '\t', '\r', '\n', '\n'};
  int peeked            = 0;
  for (int round = 0; round < 1500; ++round) {
    std::string text;
    const auto length = static_cast<std::size_t>(random() % 400);
    for (std::size_t i = 0; i < length; ++i) {
      // Mostly plain lines of a few fields, so that peeks succeed often.
      text += random() % 4 == 0 ? alphabet[random() % sizeof alphabet] : "xy,z9\n"[random() % 6];
    }
    std::vector<std::size_t> starts = {0};
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\n') { starts.push_back(i + 1); }
    }
    const std::size_t begin  = starts[random() % starts.size()];
    const std::size_t limit  = begin + random() % (text.size() - begin + 2);
    const std::size_t first  = random() % 4;
    const std::size_t second = random() % 4;
    fast_csv_reader peeking(text, begin, limit, 1), reading(text, begin, limit, 1);
    for (int step = 0; step < 1000; ++step) {
      SCOPED_TRACE("round " + std::to_string(round) + ", step " + std::to_string(step));
      const auto fields = peeking.peek_plain_fields(first, second);
      const auto status = reading.next();
      if (fields) {
        ++peeked;
        ASSERT_EQ(status, csv_status::record);
        ASSERT_GT(reading.fields().size(), std::max(first, second));
        ASSERT_EQ(fields->first, reading.fields()[first].value);
        ASSERT_EQ(fields->second, reading.fields()[second].value);
        peeking.skip_peeked();
      } else {
        ASSERT_EQ(peeking.next(), status);
      }
      ASSERT_EQ(peeking.position(), reading.position());
      ASSERT_EQ(peeking.line(), reading.line());
      if (status == csv_status::end) { break; }
    }
  }
  EXPECT_GT(peeked, 2000);  // the peek was taken, not only declined
}

}  // namespace
#endif

#if __has_include("string_index.hpp")
#include "string_index.hpp"

namespace {

TEST(HashBytesFuzzRegression, ReadsNoByteAfterTheText)
{
  // ingest_fuzz (ASan heap-buffer-overflow in hash_bytes via add_stored): for 17 to 23 bytes, and
  // every length 16k+1 .. 16k+7, the tail word was read from past the end. The hash of a text must
  // not depend on the bytes that follow it.
  for (std::size_t n = 0; n <= 80; ++n) {
    std::string a(n, 'x');
    std::string b(n, 'x');
    for (std::size_t i = 0; i < n; ++i) { a[i] = b[i] = static_cast<char>('a' + i % 26); }
    a += "AAAAAAAAAAAAAAAA";
    b += "BBBBBBBBBBBBBBBB";
    EXPECT_EQ(capledger::detail::hash_bytes(std::string_view(a.data(), n)),
              capledger::detail::hash_bytes(std::string_view(b.data(), n)))
      << "length " << n;
  }
}

TEST(HashBytes, CraftedIdsDoNotCollideUnderTheProcessKey)
{
  // Under public constants (the key 0) every 1,461-byte text whose bytes 8-15 are
  // k0 ^ 1461 * k2 ("Pi* IR89") hashed alike, whatever its first 8 bytes: a log of such
  // ids made each table's probes quadratic. The process key is secret: they hash apart, and
  // their low 12 bits (the id set's region) spread.
  const auto crafted = [](unsigned i) {
    std::string id = "ID" + std::to_string(100000 + i) + "Pi* IR89";
    return id + std::string(1461 - id.size(), 'x');
  };
  std::set<std::uint64_t> under_zero, under_process, regions;
  for (unsigned i = 0; i < 4096; ++i) {
    const std::string id = crafted(i);
    under_zero.insert(capledger::detail::hash_bytes(id, capledger::detail::hash_key{}));
    under_process.insert(capledger::detail::hash_bytes(id));
    regions.insert(capledger::detail::hash_bytes(id) & 4095);
  }
  EXPECT_EQ(under_zero.size(), 1U);
  EXPECT_EQ(under_process.size(), 4096U);
  EXPECT_GT(regions.size(), 2000U);
}

}  // namespace
#endif
