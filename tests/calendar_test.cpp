/// @file calendar_test.cpp
/// @brief Day numbers: strict YYYY-MM-DD parsing, formatting, year_of, days_from_civil.
#include <capledger/calendar.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace {

using capledger::day_t;
using capledger::days_from_civil;
using capledger::format_date;
using capledger::parse_date;
using capledger::year_of;

/// Month lengths written out independently of the library.
int month_length(int year, int month)
{
  static const int lengths[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return lengths[month - 1] + (month == 2 && leap ? 1 : 0);
}

std::string text_of(int year, int month, int day)
{
  char buffer[32];  // room for any int, as -Wformat-truncation counts
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02d", year, month, day);
  return buffer;
}

TEST(Calendar, DaysFromCivilKnownValues)
{
  EXPECT_EQ(days_from_civil(1970, 1, 1), 0);
  EXPECT_EQ(days_from_civil(1970, 1, 2), 1);
  EXPECT_EQ(days_from_civil(1969, 12, 31), -1);
  EXPECT_EQ(days_from_civil(1971, 1, 1), 365);
  EXPECT_EQ(days_from_civil(1972, 3, 1), 365 + 365 + 31 + 29);  // 1972 is a leap year
  // 30 years from 1970 with 7 leap days (72..96), plus Jan (31) and Feb 2000 (29).
  EXPECT_EQ(days_from_civil(2000, 1, 1), 30 * 365 + 7);
  EXPECT_EQ(days_from_civil(2000, 3, 1), 11017);
  // 0001-01-01 is proleptic ordinal 1 and 1970-01-01 is ordinal 719163.
  EXPECT_EQ(days_from_civil(1, 1, 1), -719162);
  // 9999-12-31 is ordinal 3652059.
  EXPECT_EQ(days_from_civil(9999, 12, 31), 3652059 - 719163);
}

TEST(Calendar, ParseDateAcceptsRealDates)
{
  EXPECT_EQ(parse_date("1970-01-01"), day_t{0});
  EXPECT_EQ(parse_date("2000-03-01"), day_t{11017});
  EXPECT_EQ(parse_date("2025-01-13"), day_t{20101});  // 2025-01-01 is 20089 (55 years, 14 leap days)
  EXPECT_EQ(parse_date("0001-01-01"), day_t{-719162});
  EXPECT_EQ(parse_date("9999-12-31"), day_t{3652059 - 719163});
  EXPECT_EQ(parse_date("2025-12-31"), days_from_civil(2025, 12, 31));
  EXPECT_EQ(parse_date("2025-04-30"), days_from_civil(2025, 4, 30));
}

TEST(Calendar, ParseDateLeapDays)
{
  EXPECT_TRUE(parse_date("2024-02-29").has_value());   // divisible by 4
  EXPECT_FALSE(parse_date("2023-02-29").has_value());  // common year
  EXPECT_FALSE(parse_date("1900-02-29").has_value());  // century, not divisible by 400
  EXPECT_FALSE(parse_date("2100-02-29").has_value());
  EXPECT_TRUE(parse_date("2000-02-29").has_value());   // divisible by 400
  EXPECT_TRUE(parse_date("1600-02-29").has_value());
  EXPECT_FALSE(parse_date("2024-02-30").has_value());
  EXPECT_EQ(*parse_date("2000-02-29") + 1, *parse_date("2000-03-01"));
  EXPECT_EQ(*parse_date("1900-02-28") + 1, *parse_date("1900-03-01"));
}

TEST(Calendar, ParseDateRejectsBadMonthsAndDays)
{
  for (const char* text : {"2025-00-10", "2025-13-01", "2025-99-01", "2025-01-00", "2025-01-32", "2025-04-31",
                           "2025-06-31", "2025-09-31", "2025-11-31", "2025-02-29", "0000-01-01"}) {
    EXPECT_FALSE(parse_date(text).has_value()) << text;
  }
}

TEST(Calendar, ParseDateRejectsWrongShapes)
{
  for (const char* text :
       {"", "2025-1-01", "2025-01-1", "25-01-01", "02025-01-01", "2025-01-011", "2025/01/01", "2025.01.01",
        "20250101", " 2025-01-01", "2025-01-01 ", "+025-01-01", "-025-01-01", "2025-+1-01", "2025--1-01",
        "2025-01-+1", "2025-0a-01", "2025-01-3x", "abcd-ef-gh", "2025-01-01T00:00", "2025_01_01"}) {
    EXPECT_FALSE(parse_date(text).has_value()) << "'" << text << "'";
  }
}

// Every byte value at every position of a few dates (all ten bytes are checked at once, so a
// wrong mask or carry would let one through): the text parses exactly when each byte is a digit
// or the dash its position wants and the digits make a calendar date, and then to that date.
TEST(Calendar, EveryByteAtEveryPositionIsCheckedOnItsOwn)
{
  for (const char* base : {"2025-01-13", "2000-02-29", "1999-12-31", "0001-01-01", "9999-09-09"}) {
    for (int position = 0; position < 10; ++position) {
      for (int value = 0; value < 256; ++value) {
        std::string text                         = base;
        text[static_cast<std::size_t>(position)] = static_cast<char>(value);
        bool shaped                              = true;
        for (int i = 0; i < 10; ++i) {
          const char c = text[static_cast<std::size_t>(i)];
          shaped       = shaped && (i == 4 || i == 7 ? c == '-' : c >= '0' && c <= '9');
        }
        const auto number = [&](int from, int count) {
          return std::stoi(text.substr(static_cast<std::size_t>(from), static_cast<std::size_t>(count)));
        };
        const bool valid = shaped && number(0, 4) >= 1 && number(5, 2) >= 1 && number(5, 2) <= 12 &&
                           number(8, 2) >= 1 && number(8, 2) <= month_length(number(0, 4), number(5, 2));
        const auto parsed = parse_date(text);
        ASSERT_EQ(parsed.has_value(), valid) << base << " with byte " << value << " at " << position;
        if (valid) {
          ASSERT_EQ(*parsed, days_from_civil(number(0, 4), static_cast<unsigned>(number(5, 2)),
                                             static_cast<unsigned>(number(8, 2))))
              << text;
        }
      }
    }
  }
}

TEST(Calendar, EveryDayOfFourCenturiesMatchesAnIndependentWalk)
{
  // Walk the calendar day by day with month lengths written out above: each valid date is the
  // next day number, parses to it, and formats back to itself; day 32 / month 13 never parse.
  day_t expected = days_from_civil(1800, 1, 1);
  for (int year = 1800; year < 2200; ++year) {
    for (int month = 1; month <= 12; ++month) {
      const int last = month_length(year, month);
      for (int day = 1; day <= last; ++day) {
        const std::string text = text_of(year, month, day);
        const auto parsed = parse_date(text);
        ASSERT_TRUE(parsed.has_value()) << text;
        ASSERT_EQ(*parsed, expected) << text;
        ASSERT_EQ(format_date(expected), text);
        ASSERT_EQ(year_of(expected), year) << text;
        ++expected;
      }
      ASSERT_FALSE(parse_date(text_of(year, month, last + 1)).has_value()) << text_of(year, month, last + 1);
    }
  }
  // 400 Gregorian years hold exactly 146097 days.
  EXPECT_EQ(expected - days_from_civil(1800, 1, 1), 146097);
}

TEST(Calendar, FormatDateRoundTripsOverTheWholeRange)
{
  const day_t first = days_from_civil(1, 1, 1);
  const day_t last  = days_from_civil(9999, 12, 31);
  for (day_t day = first; day <= last; day += 7) {
    const std::string text = format_date(day);
    ASSERT_EQ(text.size(), 10U) << day;
    const auto parsed = parse_date(text);
    ASSERT_TRUE(parsed.has_value()) << text;
    ASSERT_EQ(*parsed, day) << text;
  }
  EXPECT_EQ(format_date(first), "0001-01-01");
  EXPECT_EQ(format_date(last), "9999-12-31");
  EXPECT_EQ(format_date(0), "1970-01-01");
  EXPECT_EQ(format_date(-1), "1969-12-31");
  EXPECT_EQ(format_date(11017), "2000-03-01");
}

TEST(Calendar, YearOfAroundYearBoundaries)
{
  EXPECT_EQ(year_of(0), 1970);
  EXPECT_EQ(year_of(-1), 1969);
  EXPECT_EQ(year_of(364), 1970);
  EXPECT_EQ(year_of(365), 1971);
  EXPECT_EQ(year_of(days_from_civil(2024, 12, 31)), 2024);
  EXPECT_EQ(year_of(days_from_civil(2024, 12, 31) + 1), 2025);
  EXPECT_EQ(year_of(days_from_civil(2025, 1, 1) - 1), 2024);
  EXPECT_EQ(year_of(days_from_civil(1, 1, 1)), 1);
  EXPECT_EQ(year_of(days_from_civil(9999, 12, 31)), 9999);
}

}  // namespace
