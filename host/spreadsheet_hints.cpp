/// @file spreadsheet_hints.cpp
/// @brief What a spreadsheet did to a value (see spreadsheet_hints.hpp).
#include "spreadsheet_hints.hpp"

#include "csv.hpp"

#include <capledger/calendar.hpp>

#include <array>

namespace capledger::detail {
namespace {

bool is_digit(char c) noexcept
{
  return c >= '0' && c <= '9';
}

/// @p text from @p at on is one or more digits; @return where they end
std::size_t digits_end(std::string_view text, std::size_t at) noexcept
{
  while (at < text.size() && is_digit(text[at])) { ++at; }
  return at;
}

/// Past a sign at @p at, if there is one. @return where the digits may begin
std::size_t after_sign(std::string_view text, std::size_t at) noexcept
{
  return at < text.size() && (text[at] == '+' || text[at] == '-') ? at + 1 : at;
}

/// `1,200`, `12 000`, `1'200'000`: groups of three digits after a first group of one to three,
/// with one separator throughout: a comma, space or apostrophe, or the no-break spaces French and
/// Swiss spreadsheets write (U+00A0, U+202F). A point is left out: `1.200` may be a decimal.
bool has_thousands_separators(std::string_view text) noexcept
{
  static constexpr std::string_view separators[] = {",", " ", "'", "\xC2\xA0", "\xE2\x80\xAF"};

  const std::size_t first = after_sign(text, 0);
  std::size_t at          = digits_end(text, first);
  if (at == first || at - first > 3 || at == text.size()) { return false; }
  std::string_view separator;
  for (const std::string_view candidate : separators) {
    if (text.substr(at, candidate.size()) == candidate) { separator = candidate; }
  }
  if (separator.empty()) { return false; }
  while (at < text.size()) {
    const std::size_t group = at + separator.size();
    if (text.substr(at, separator.size()) != separator || digits_end(text, group) != group + 3) {
      return false;
    }
    at = group + 3;
  }
  return true;
}

/// `20000.0`, `20000.00`: a whole number a spreadsheet wrote with a decimal point.
bool is_whole_with_zero_decimals(std::string_view text) noexcept
{
  const std::size_t first = after_sign(text, 0);
  std::size_t at          = digits_end(text, first);
  if (at == first || at == text.size() || text[at] != '.' || at + 1 == text.size()) { return false; }
  for (++at; at < text.size(); ++at) {
    if (text[at] != '0') { return false; }
  }
  return true;
}

/// A spreadsheet's day number for dates from 1954 to 2119 (Excel's and LibreOffice's count since
/// 1899-12-30: 45658 is 2025-01-01), written as five digits.
bool is_spreadsheet_day_number(std::string_view text) noexcept
{
  // 20000 is 1954-10-03, 80000 is 2119-01-10: five digits, and no other five-digit text passes
  // for a date here.
  constexpr int first = 20000;
  constexpr int last  = 80000;
  if (text.size() != 5 || digits_end(text, 0) != text.size()) { return false; }
  int value = 0;
  for (const char c : text) { value = value * 10 + (c - '0'); }
  return value >= first && value <= last;
}

bool is_totals_label(std::string_view text)
{
  static constexpr std::array<std::string_view, 5> labels{"TOTAL", "TOTALS", "GRAND TOTAL", "SUM",
                                                          "SUBTOTAL"};
  const std::string label = to_upper(trim(text));
  for (const std::string_view known : labels) {
    if (label == known) { return true; }
  }
  return false;
}

}  // namespace

bool is_scientific_notation(std::string_view text) noexcept
{
  std::size_t at = after_sign(text, 0);
  if (at >= text.size() || !is_digit(text[at])) { return false; }
  at = digits_end(text, at);
  if (at < text.size() && (text[at] == '.' || text[at] == ',')) {
    const std::size_t fraction = at + 1;
    at                         = digits_end(text, fraction);
    if (at == fraction) { return false; }
  }
  if (at >= text.size() || (text[at] != 'E' && text[at] != 'e')) { return false; }
  const std::size_t exponent = after_sign(text, at + 1);
  at                         = digits_end(text, exponent);
  return at > exponent && at == text.size();
}

std::string id_hint(std::string_view id)
{
  if (!is_scientific_notation(id)) { return {}; }
  return "; the id looks like a number a spreadsheet wrote in scientific notation, which drops its last "
         "digits (distinct ids then look alike): export the column as text";
}

std::string quantity_hint(std::string_view quantity)
{
  if (has_thousands_separators(quantity)) {
    return "; thousands separators are not read: write the digits alone";
  }
  if (is_whole_with_zero_decimals(quantity)) {
    return "; quantities are whole units: write it without the decimal point";
  }
  if (is_scientific_notation(quantity)) {
    return "; it looks like a number a spreadsheet wrote in scientific notation: export the column as "
           "whole numbers";
  }
  return {};
}

std::string date_hint(std::string_view date)
{
  if (is_spreadsheet_day_number(date)) {
    return "; it looks like a spreadsheet's day number (45658 is 2025-01-01): export the column as "
           "YYYY-MM-DD text";
  }
  constexpr std::size_t date_length = 10;
  if (date.size() > date_length && (date[date_length] == ' ' || date[date_length] == 'T') &&
      parse_date(date.substr(0, date_length))) {
    return "; a time of day is not read: keep the date alone";
  }
  return {};
}

std::string totals_row_hint(std::string_view shipment_id, std::string_view entity)
{
  if (!is_totals_label(shipment_id) && !is_totals_label(entity)) { return {}; }
  return "; the line looks like a spreadsheet's totals row: remove it";
}

}  // namespace capledger::detail
