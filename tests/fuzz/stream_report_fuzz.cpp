/// @file stream_report_fuzz.cpp
/// @brief libFuzzer target: the streaming report (what `report --backend cpu` runs) against the
/// column report on the CPU backend, on arbitrary logs.
///
/// Input layout: byte 0 picks the chunk size (`0`: the default, else 1 to 255 bytes, so that
/// records, sections and errors meet chunk seams), byte 1 whether a header is put before the
/// rest (odd: the bundled sample's header) and where the rest is split into two files, byte 2
/// an as-of date (0: none, else that many days after 2025-01-01), byte 3 whether bad lines are
/// kept (--rejects) or fatal. The rest is the log. The reference tables are the bundled ones
/// and the entities file is the sample's (NVEU and UVEU entities: GULFAI, HYPERSCALE-US, ...).
///
/// Checked on every input: the column report (`build_report` over the log's columns) and the
/// streaming report, with ids checked in memory and out of memory, end the same way (same
/// exception text, or the same 8 files, table and JSON byte for byte) with the same rejects
/// (except that out of memory, a log over the 64-bit total bound is a config_error by design).
#include <capledger/backend.hpp>
#include <capledger/calendar.hpp>
#include <capledger/error.hpp>
#include <capledger/report.hpp>

#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#ifndef CAPLEDGER_DATASETS_DIR
#define CAPLEDGER_DATASETS_DIR "datasets"
#endif

namespace {

using namespace capledger;

struct outcome {
  std::string error;  ///< "" when the report finished
  std::optional<report_output> out;
  std::vector<rejected_line> rejects;
  bool rejects_defined = false;
};

template <typename Body>
outcome record(Body body)
{
  outcome o;
  try {
    body(o);
    o.rejects_defined = true;
  } catch (const too_many_rejects& e) {
    o.error           = std::string("too_many_rejects: ") + e.what();
    o.rejects_defined = true;
  } catch (const parse_error& e) {
    o.error = std::string("parse_error: ") + e.what();
  } catch (const config_error& e) {
    o.error = std::string("config_error: ") + e.what();
  }
  return o;
}

[[noreturn]] void fail(const char* what, const std::string& detail = {})
{
  std::fprintf(stderr, "streaming report differs from the column report: %s\n%s\n", what, detail.c_str());
  std::abort();
}

void expect_same(const outcome& column, const outcome& stream, const char* how)
{
  if (column.error != stream.error) { fail(how, "error: '" + column.error + "' vs '" + stream.error + "'"); }
  if (column.out.has_value() != stream.out.has_value()) { fail(how, "one finished, the other did not"); }
  if (column.out) {
    if (column.out->files != stream.out->files) {
      for (const auto& [name, text] : column.out->files) {
        const auto it = stream.out->files.find(name);
        if (it == stream.out->files.end() || it->second != text) {
          fail(how, name + ":\n--- column\n" + text + "--- stream\n" +
                        (it == stream.out->files.end() ? std::string("<missing>") : it->second));
        }
      }
      fail(how, "file lists differ");
    }
    if (column.out->table != stream.out->table || column.out->json != stream.out->json) {
      fail(how, "table/json");
    }
  }
  if (column.rejects_defined && stream.rejects_defined) {
    if (column.rejects.size() != stream.rejects.size()) { fail(how, "number of rejects"); }
    for (std::size_t i = 0; i < column.rejects.size(); ++i) {
      const rejected_line& a = column.rejects[i];
      const rejected_line& b = stream.rejects[i];
      if (a.file != b.file || a.line != b.line || a.column != b.column || a.reason != b.reason ||
          a.detail != b.detail || a.raw != b.raw) {
        fail(how, "reject " + std::to_string(i) + ": " + a.reason + " " + a.detail + " vs " + b.reason + " " +
                      b.detail);
      }
    }
  }
}

const reference_data& reference()
{
  static const reference_data ref = [] {
    report_options options;
    options.entities_path = std::string(CAPLEDGER_DATASETS_DIR) + "/sample/entities.csv";
    return load_reference(options);
  }();
  return ref;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  if (size < 4) { return 0; }
  const reference_data& ref = reference();
  ingest_options ingest;
  ingest.chunk_bytes  = data[0];
  ingest.keep_rejects = (data[3] & 1U) != 0;
  ingest.max_rejects  = (data[3] & 2U) != 0 ? data[3] / 4 : -1;
  report_options options;
  if (data[2] != 0) { options.as_of = *parse_date("2025-01-01") + data[2]; }

  std::string body(reinterpret_cast<const char*>(data) + 4, size - 4);
  const std::string header = (data[1] & 1U) != 0
                                 ? "shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,"
                                   "tpp_per_unit\n"
                                 : "";
  // Two files: the split falls at a line start so both are logs with rows.
  std::vector<std::pair<std::string, std::string>> files;
  const std::size_t cut = body.empty() ? 0 : (data[1] / 2U) * body.size() / 128U;
  const std::size_t at  = body.find('\n', cut);
  if ((data[1] & 2U) != 0 && at != std::string::npos && at + 1 < body.size()) {
    files.push_back({"a.csv", header + body.substr(0, at + 1)});
    files.push_back({"b.csv", header + body.substr(at + 1)});
  } else {
    files.push_back({"a.csv", header + body});
  }

  // The column report runs serially (1 thread), the in-memory streamed one with the many-core
  // pipeline (8 threads: the id pass, the hashing and aggregating threads; host/many_cores.hpp).
  omp_set_num_threads(1);
  const outcome column = record([&](outcome& o) {
    shipment_log_builder builder(ref.countries, ref.chips, ingest);
    try {
      for (const auto& [name, text] : files) { builder.add_text(name, text); }
    } catch (const too_many_rejects&) {
      o.rejects = builder.rejects();
      throw;
    }
    const shipment_log log = builder.finish();
    o.rejects              = log.rejects;
    o.out                  = build_report(ref, log, options, *make_cpu_backend());
  });
  // Out of memory twice: the repeats in memory, then on disk in sorted runs of two.
  for (const int variant : {0, 1, 2}) {
    const bool external         = variant > 0;
    report_options streaming    = options;
    streaming.external_id_check = external;
    if (variant == 2) { streaming.external_id_repeats_in_memory = 2; }
    omp_set_num_threads(external ? 1 : 8);
    const outcome stream        = record([&](outcome& o) {
      o.out = stream_report(
                 ref, streaming, ingest,
                 [&](shipment_log_builder& builder) {
            for (const auto& [name, text] : files) { builder.add_text(name, text); }
          },
                 o.rejects);
    });
    // Out of memory, a log over the 64-bit bound is refused (documented): nothing to compare.
    if (external && stream.error.rfind("config_error: the log's sums", 0) == 0) { continue; }
    expect_same(column, stream,
                variant == 2 ? "ids out of memory, repeats on disk"
                : external   ? "ids out of memory"
                             : "ids in memory");
  }
  return 0;
}
