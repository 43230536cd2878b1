/// @file device_read_fuzz.cpp
/// @brief libFuzzer target: the contract of `kernels/device_csv.cuh` (`read_plain_line`, read over
/// a text by `read_ahead_on_host`) against `shipment_log_builder` on arbitrary logs.
///
/// Input layout: byte 0 picks a header. When `byte0 % 4 == 0` the rest is the whole log (the
/// fuzzer finds a header itself); otherwise one of `headers` below, chosen by `byte0 / 4 % 4`, is
/// put before the rest. `byte0 / 16` picks the builder's chunk size (0: the default; 1..15: 1 to
/// 99 bytes), as in ingest_fuzz.
///
/// Checked (tests/device_read_differential.hpp): every line the device reads as plain, where a
/// record of the host's reader starts, is a line the builder accepted (or rejected only for a
/// repeated id or the log's 64-bit totals), with the same date, country, chip, pathway, quantity,
/// tpp and texts, and hashes equal to `detail::hash_bytes`; a header the builder refuses gives a
/// layout that reads no line. Plain-looking continuation lines of a quoted multi-line record are
/// counted, not compared: the integration skips them (the record's first line has the quote).
#include "../device_read_differential.hpp"

#include <capledger/reference.hpp>

#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#ifndef CAPLEDGER_DATASETS_DIR
#define CAPLEDGER_DATASETS_DIR "datasets"
#endif

namespace {

using namespace capledger;

const country_table* g_countries = nullptr;
const chip_table* g_chips        = nullptr;

const char* const headers[] = {
    "shipment_id,date,entity,country,chip,quantity\n",
    "shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit\n",
    "\xEF\xBB\xBF Quantity ,CHIP,\"country\",entity,Date,Shipment_ID,tpp_per_unit,extra\r\n",
    "pathway,order_id,shipment_id,date,entity,country,chip,quantity,exporter\n",
};
constexpr std::size_t header_count = sizeof(headers) / sizeof(headers[0]);

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/)
{
  const char* dir                      = std::getenv("CAPLEDGER_DATASETS_DIR");
  const std::string base               = dir != nullptr ? dir : CAPLEDGER_DATASETS_DIR;
  static const country_table countries = load_countries(base + "/countries.csv");
  static const chip_table chips        = load_chips(base + "/chips.csv");
  g_countries                          = &countries;
  g_chips                              = &chips;
  omp_set_num_threads(2);  // the builder's seams, not its thread count, are what matter here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  if (size == 0) { return 0; }
  const unsigned selector = data[0];
  std::string text;
  if (selector % 4 != 0) { text = headers[(selector / 4) % header_count]; }
  text.append(reinterpret_cast<const char*>(data) + 1, size - 1);
  text.shrink_to_fit();  // only the log's bytes: ASan sees any read past its end
  const std::size_t chunk_class = selector / 16;
  const std::size_t chunk_bytes = chunk_class == 0 ? 0 : chunk_class * 7 - 6;
  const std::string violation   = test::device_read_violation(text, *g_countries, *g_chips, chunk_bytes);
  if (!violation.empty()) {
    std::fprintf(stderr, "device_csv contract violated: %s\n", violation.c_str());
    std::abort();
  }
  return 0;
}
