/// @file device_read_fuzz.cpp
/// @brief libFuzzer target: the contract of `kernels/device_csv.cuh` (`read_plain_line`, read over
/// a text by `read_ahead_on_host`) against `shipment_log_builder` on arbitrary logs.
///
/// Input layout: `fuzz_log.hpp` (a header byte 0 picks, the builder's chunk size), as ingest_fuzz.
///
/// Checked (tests/device_read_differential.hpp): every line the device reads as plain, where a
/// record of the host's reader starts, is a line the builder accepted (or rejected only for a
/// repeated id or the log's 64-bit totals), with the same date, country, chip, pathway, quantity,
/// tpp and texts, and hashes equal to `detail::hash_bytes`; a header the builder refuses gives a
/// layout that reads no line. Plain-looking continuation lines of a quoted multi-line record are
/// counted, not compared: the integration skips them (the record's first line has the quote).
#include "../device_read_differential.hpp"
#include "fuzz_log.hpp"

#include <capledger/reference.hpp>

#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/)
{
  static_cast<void>(capledger::fuzz::bundled_tables());
  omp_set_num_threads(2);  // the builder's seams, not its thread count, are what matter here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  if (size == 0) { return 0; }
  const capledger::fuzz::log_input input = capledger::fuzz::read_log_input(data, size);
  const capledger::fuzz::tables& ref     = capledger::fuzz::bundled_tables();
  const std::string violation =
      capledger::test::device_read_violation(input.text, ref.countries, ref.chips, input.chunk_bytes);
  if (!violation.empty()) {
    std::fprintf(stderr, "device_csv contract violated: %s\n", violation.c_str());
    std::abort();
  }
  return 0;
}
