/// @file calendar.cpp
/// @brief Day-number arithmetic (Howard Hinnant's civil-calendar algorithms), no locale, no time zones.
#include <capledger/calendar.hpp>

#include <cstdio>

namespace capledger {

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

}  // namespace

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
