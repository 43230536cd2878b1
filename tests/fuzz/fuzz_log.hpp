/// @file fuzz_log.hpp
/// @brief What the shipment-log fuzz targets (ingest_fuzz, device_read_fuzz) share: the bundled
/// tables and the input layout, so that one seed corpus means the same log to both.
///
/// Input layout: byte 0 picks a header. When `byte0 % 4 == 0` the rest is the whole log (the
/// fuzzer must find a header itself); otherwise one of `headers`, chosen by `byte0 / 4 % 4`, is
/// put before the rest, so that most inputs reach the data lines. `byte0 / 16` picks a chunk size
/// for the parallel ingest: 0 the default, 1..15 chunks of 1 to 99 bytes, so that records, quoted
/// line breaks and errors meet chunk seams.
#pragma once

#include <capledger/reference.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#ifndef CAPLEDGER_DATASETS_DIR
#define CAPLEDGER_DATASETS_DIR "datasets"
#endif

namespace capledger::fuzz {

struct tables {
  country_table countries;
  chip_table chips;
};

/// @brief The bundled countries and chips, loaded once (from `$CAPLEDGER_DATASETS_DIR` when set).
inline const tables& bundled_tables()
{
  static const tables loaded = [] {
    const char* dir        = std::getenv("CAPLEDGER_DATASETS_DIR");
    const std::string base = dir != nullptr ? dir : CAPLEDGER_DATASETS_DIR;
    return tables{load_countries(base + "/countries.csv"), load_chips(base + "/chips.csv")};
  }();
  return loaded;
}

inline constexpr const char* headers[] = {
    "shipment_id,date,entity,country,chip,quantity\n",
    "shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit\n",
    "\xEF\xBB\xBF Quantity ,CHIP,\"country\",entity,Date,Shipment_ID,tpp_per_unit,extra\r\n",
    "pathway,order_id,shipment_id,date,entity,country,chip,quantity,exporter\n",
};
inline constexpr std::size_t header_count = sizeof(headers) / sizeof(headers[0]);

/// @brief A fuzzer input read as the layout above says.
struct log_input {
  std::string text;             ///< the log: only its own bytes, so ASan sees any read past its end
  std::size_t chunk_bytes = 0;  ///< 0: the ingest's default
};

/// @pre @p size > 0
inline log_input read_log_input(const std::uint8_t* data, std::size_t size)
{
  const unsigned selector = data[0];
  log_input input;
  if (selector % 4 != 0) { input.text = headers[(selector / 4) % header_count]; }
  input.text.append(reinterpret_cast<const char*>(data) + 1, size - 1);
  input.text.shrink_to_fit();
  const std::size_t chunk_class = selector / 16;
  input.chunk_bytes             = chunk_class == 0 ? 0 : chunk_class * 7 - 6;
  return input;
}

}  // namespace capledger::fuzz
