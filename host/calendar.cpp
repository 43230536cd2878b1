/// @file calendar.cpp
/// @brief Day-number arithmetic (Howard Hinnant's civil-calendar algorithms), no locale, no time zones.
#include <capledger/calendar.hpp>

#include <cstdio>

namespace capledger {

day_t days_from_civil(int year, unsigned month, unsigned day) noexcept
{
  year -= month <= 2 ? 1 : 0;
  const int era             = (year >= 0 ? year : year - 399) / 400;
  const auto year_of_era    = static_cast<unsigned>(year - era * 400);
  const unsigned day_of_yr  = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const unsigned day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_yr;
  return era * 146097 + static_cast<int>(day_of_era) - 719468;
}

namespace {
struct civil_date {
  int year;
  unsigned month;
  unsigned day;
};

civil_date civil_from_days(day_t z) noexcept
{
  z += 719468;
  const int era         = (z >= 0 ? z : z - 146096) / 146097;
  const auto day_of_era = static_cast<unsigned>(z - era * 146097);
  const unsigned year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const unsigned day_of_yr = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const unsigned mp        = (5 * day_of_yr + 2) / 153;
  const unsigned day       = day_of_yr - (153 * mp + 2) / 5 + 1;
  const unsigned month     = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int>(year_of_era) + era * 400 + (month <= 2 ? 1 : 0), month, day};
}

bool is_leap(int year) noexcept
{
  return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}
}  // namespace

std::optional<day_t> parse_date(std::string_view text) noexcept
{
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') { return std::nullopt; }
  int parts[3]         = {0, 0, 0};
  const int starts[3]  = {0, 5, 8};
  const int lengths[3] = {4, 2, 2};
  for (int p = 0; p < 3; ++p) {
    for (int i = 0; i < lengths[p]; ++i) {
      const char c = text[starts[p] + i];
      if (c < '0' || c > '9') { return std::nullopt; }
      parts[p] = parts[p] * 10 + (c - '0');
    }
  }
  const int year                      = parts[0];
  const int month                     = parts[1];
  const int day                       = parts[2];
  static constexpr int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (year < 1 || month < 1 || month > 12 || day < 1) { return std::nullopt; }
  const int last = month_days[month - 1] + (month == 2 && is_leap(year) ? 1 : 0);
  if (day > last) { return std::nullopt; }
  return days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
}

std::string format_date(day_t day)
{
  const civil_date c = civil_from_days(day);
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%04d-%02u-%02u", c.year, c.month, c.day);
  return buffer;
}

int year_of(day_t day) noexcept
{
  return civil_from_days(day).year;
}

}  // namespace capledger
