/// @file calendar.hpp
/// @brief Dates as day numbers (days since 1970-01-01, proleptic Gregorian), parsed and printed exactly.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace capledger {

/// Days since 1970-01-01; the only date representation between stages.
using day_t = std::int32_t;

/// @brief Day number of a civil date (no validation). Howard Hinnant's days_from_civil.
[[nodiscard]] constexpr day_t days_from_civil(int year, unsigned month, unsigned day) noexcept
{
  year -= month <= 2 ? 1 : 0;
  const int era             = (year >= 0 ? year : year - 399) / 400;
  const auto year_of_era    = static_cast<unsigned>(year - era * 400);
  const unsigned day_of_yr  = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const unsigned day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_yr;
  return era * 146097 + static_cast<int>(day_of_era) - 719468;
}

/// @brief Parses a strict `YYYY-MM-DD` date (years 0001..9999, real month lengths, leap years).
/// @return the day number, or nullopt when @p text is not a valid date
///
/// Inline, all ten bytes checked at once: a log out of date order parses a date on every line
/// (and again for the lines a replay reads), and out of line the optional came back through
/// the stack, a store-forwarding stall on every call.
[[nodiscard]] inline std::optional<day_t> parse_date(std::string_view text) noexcept
{
  if (text.size() != 10) { return std::nullopt; }
  std::uint64_t head = 0;  // "YYYY-MM-", byte i at bits 8i
  std::uint16_t tail = 0;  // "DD"
  std::memcpy(&head, text.data(), sizeof head);
  std::memcpy(&tail, text.data() + sizeof head, sizeof tail);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  head = __builtin_bswap64(head);
  tail = __builtin_bswap16(tail);
#endif
  constexpr std::uint64_t dashes = 0xFF0000FF00000000ULL;  // bytes 4 and 7
  if ((head & dashes) != 0x2D00002D00000000ULL) { return std::nullopt; }
  // Digits XOR '0' are 0..9: no high nibble, and none after adding 6.
  const std::uint64_t digits = (head ^ 0x3030303030303030ULL) & ~dashes;
  const std::uint32_t days   = tail ^ 0x3030U;
  if (((digits | (digits + 0x0606060606060606ULL)) & 0xF0F0F0F0F0F0F0F0ULL) != 0 ||
      ((days | (days + 0x0606U)) & 0xF0F0U) != 0) {
    return std::nullopt;
  }
  const auto digit = [digits](int i) { return static_cast<int>((digits >> (8 * i)) & 0xFF); };
  const int year   = digit(0) * 1000 + digit(1) * 100 + digit(2) * 10 + digit(3);
  const int month  = digit(5) * 10 + digit(6);
  const int day    = static_cast<int>(days & 0xFF) * 10 + static_cast<int>(days >> 8);
  if (year < 1 || month < 1 || month > 12 || day < 1) { return std::nullopt; }
  constexpr int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap              = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (day > month_days[month - 1] + (month == 2 && leap ? 1 : 0)) { return std::nullopt; }
  return days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
}

/// @brief Formats a day number as `YYYY-MM-DD`.
[[nodiscard]] std::string format_date(day_t day);

/// @brief Calendar year of a day number.
[[nodiscard]] int year_of(day_t day) noexcept;

}  // namespace capledger
