/// @file calendar.hpp
/// @brief Dates as day numbers (days since 1970-01-01, proleptic Gregorian), parsed and printed exactly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace capledger {

/// Days since 1970-01-01; the only date representation between stages.
using day_t = std::int32_t;

/// @brief Parses a strict `YYYY-MM-DD` date (years 0001..9999, real month lengths, leap years).
/// @return the day number, or nullopt when @p text is not a valid date
[[nodiscard]] std::optional<day_t> parse_date(std::string_view text) noexcept;

/// @brief Formats a day number as `YYYY-MM-DD`.
[[nodiscard]] std::string format_date(day_t day);

/// @brief Calendar year of a day number.
[[nodiscard]] int year_of(day_t day) noexcept;

/// @brief Day number of a civil date (no validation).
[[nodiscard]] day_t days_from_civil(int year, unsigned month, unsigned day) noexcept;

}  // namespace capledger
