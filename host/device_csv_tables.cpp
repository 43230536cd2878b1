#include "device_csv_tables.hpp"

#include <algorithm>

namespace capledger::detail {

std::optional<device_csv::tables> make_device_tables(const country_table& countries, const chip_table& chips)
{
  device_csv::tables t{};
  std::fill(std::begin(t.country_by_letters), std::end(t.country_by_letters), std::int16_t{-1});
  for (const auto& [iso, code] : countries.code_of) {
    if (iso.size() != 2 || iso[0] < 'A' || iso[0] > 'Z' || iso[1] < 'A' || iso[1] > 'Z') {
      return std::nullopt;
    }
    t.country_by_letters[(iso[0] - 'A') * 26 + (iso[1] - 'A')] = static_cast<std::int16_t>(code);
  }
  for (const auto& [key, code] : chips.code_of) {
    const capledger::chip& row = chips.rows[code];
    if (!row.known || row.tpp <= 0) { continue; }  // priced per line only: the host's
    if (t.chip_count == device_csv::max_chips || key.size() > device_csv::chip_key_bytes) {
      return std::nullopt;
    }
    std::copy(key.begin(), key.end(), t.chip_key[t.chip_count]);
    t.chip_key_length[t.chip_count] = static_cast<std::uint8_t>(key.size());
    t.chip_code[t.chip_count]       = code;
    t.chip_tpp[t.chip_count]        = row.tpp;
    ++t.chip_count;
  }
  return t;
}

device_csv::line_layout make_line_layout(const csv_header& header)
{
  static constexpr const char* names[device_csv::column_count] = {
      "shipment_id", "date",    "entity",   "country",  "chip",
      "quantity",    "pathway", "order_id", "exporter", "tpp_per_unit"};
  device_csv::line_layout layout{};
  std::fill(std::begin(layout.column_of_field), std::end(layout.column_of_field), std::int8_t{-1});
  if (header.size() > device_csv::max_fields || header.ends_unnamed()) { return layout; }
  for (int c = 0; c < device_csv::column_count; ++c) {
    const int field = header.find(names[c]);
    if (field < 0 && c <= device_csv::c_quantity) { return layout; }  // the host's MISSING_COLUMN
    if (field >= 0) { layout.column_of_field[field] = static_cast<std::int8_t>(c); }
  }
  layout.field_count = header.size();
  return layout;
}

}  // namespace capledger::detail
