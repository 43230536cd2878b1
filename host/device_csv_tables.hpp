/// @file device_csv_tables.hpp
/// @brief The host's side of `kernels/device_csv.cuh`: its tables from the reference tables and
/// its line layout from a file's header.
#pragma once

#include "../kernels/device_csv.cuh"
#include "csv.hpp"

#include <capledger/reference.hpp>

#include <optional>

namespace capledger::detail {

/// @return the device's copy of @p countries and the known chips of @p chips; nullopt where they
/// do not fit it (a country code that is not two letters, more than `max_chips` chips or a
/// longer key): the host then reads every line.
[[nodiscard]] std::optional<device_csv::tables> make_device_tables(const country_table& countries,
                                                                   const chip_table& chips);

/// @return where @p header puts each column; `field_count` 0 (no line for the device) where the
/// header has more than `device_csv::max_fields` fields or ends with a comma.
/// @throw parse_error as `csv_header::find` (a column named twice)
[[nodiscard]] device_csv::line_layout make_line_layout(const csv_header& header);

}  // namespace capledger::detail
