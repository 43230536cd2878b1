/// @file spreadsheet_hints.hpp
/// @brief What a spreadsheet did to a value, said after a rejected line's message.
///
/// Shipment logs are often opened and saved in a spreadsheet on their way here; it rewrites long
/// ids in scientific notation (`1.23457E+11`, digits lost, so distinct shipments share an id),
/// numbers with thousands separators or a decimal point, dates as day numbers or with a time, and
/// adds a totals row. SPEC §1 rejects each such line as it stands; these hints say why it looks
/// the way it does. Each returns the text to append to the message, or nothing.
#pragma once

#include <string>
#include <string_view>

namespace capledger::detail {

/// `[+-]d[.ddd]E[+-]dd` (a comma for the point too): how a spreadsheet shows a number too long
/// for its cell.
[[nodiscard]] bool is_scientific_notation(std::string_view text) noexcept;

/// For a `DUPLICATE_ID`: the id is a number in scientific notation.
[[nodiscard]] std::string id_hint(std::string_view id);

/// For a `BAD_QUANTITY`: thousands separators, a decimal point with zeros after it, scientific notation.
[[nodiscard]] std::string quantity_hint(std::string_view quantity);

/// For a `BAD_DATE`: a spreadsheet's day number, or a valid date followed by a time of day.
[[nodiscard]] std::string date_hint(std::string_view date);

/// For any defect of a line: its shipment id or entity is a totals row's label (`Total`,
/// `Grand total`, ...).
[[nodiscard]] std::string totals_row_hint(std::string_view shipment_id, std::string_view entity);

}  // namespace capledger::detail
