/// @file gpu_ingest_bench.cpp
/// @brief A log's lines read ahead (`device_csv::read_plain_line` on every line) by the GPU line
/// reader (kernels/gpu_ingest.cu), beside its peers on this host: `read_ahead_on_host` on one core
/// and on every core (OpenMP, the range split at line starts). Built with CUDA only.
///
///   gpu_ingest_bench [--log=PATH] [--lines=N] [benchmark flags]
///
/// The log is PATH (a shipments CSV; its header row names the columns) or a generated one of N
/// lines (default 8,000,000, about 0.6 GB; `capledger generate`'s lines, seed 1). Counters: text
/// bytes/s and lines/s; for the GPU, `bus_fraction`: the time the bytes it must move over the bus
/// take at the copy bandwidths measured at start-up (pinned, 256 MiB each way: the text to the
/// device, 101 bytes a line back), over the time taken: 1 would be the bus's own limit. Each
/// reading's result stays in memory between iterations (the vectors are reused, as a caller
/// reusing its `lines_read_ahead` would).
#include <capledger/backend.hpp>
#include <capledger/generate.hpp>
#include <capledger/report.hpp>
#include <capledger/shipments.hpp>

#include <benchmark/benchmark.h>

#include "csv.hpp"
#include "device_read.hpp"

#include <cuda_runtime_api.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace capledger;
using clock_type = std::chrono::steady_clock;

std::string log_path;
std::int64_t generated_lines = 8000000;

/// The log, its layout and the device tables, made once.
struct bench_log {
  std::string text;
  std::size_t from  = 0;  ///< the first line after the header
  std::size_t lines = 0;
  device_csv::line_layout layout{};
  device_csv::tables tables{};
};

const bench_log& the_log()
{
  static const bench_log log = [] {
    bench_log made;
    const reference_data reference = load_reference(report_options{});
    if (!log_path.empty()) {
      std::ifstream in(log_path, std::ios::binary);
      std::ostringstream text;
      text << in.rdbuf();
      made.text = text.str();
    } else {
      generate_options options;
      options.records = generated_lines;
      options.seed    = 1;
      std::ostringstream shipments, entities;
      generate_log(options, reference.countries, reference.chips, reference.rules, shipments, entities);
      made.text = shipments.str();
    }
    const std::size_t header_end = made.text.find('\n');
    made.from                    = header_end == std::string::npos ? made.text.size() : header_end + 1;
    detail::csv_reader reader(std::string_view(made.text).substr(0, made.from));
    if (reader.next() == detail::csv_status::record) {
      made.layout = detail::make_line_layout(detail::csv_header(reader.fields(), "log"));
    }
    made.tables = detail::make_device_tables(reference.countries, reference.chips).value();
    made.lines  = static_cast<std::size_t>(std::count(
                      made.text.begin() + static_cast<std::ptrdiff_t>(made.from), made.text.end(), '\n')) +
                 (made.text.size() > made.from && made.text.back() != '\n' ? 1 : 0);
    std::cerr << "gpu_ingest_bench: " << made.lines << " lines, " << made.text.size() - made.from
              << " bytes after the header, " << (made.layout.field_count > 0 ? "a layout" : "NO layout")
              << "\n";
    return made;
  }();
  return log;
}

/// @brief Times @p read_all (wall clock) once an iteration and sets bytes/s and lines/s over the
/// iterations' own time (Google Benchmark's rate counters divide by the main thread's CPU time).
/// @return the seconds of all iterations
template <typename Read>
double time_reads(benchmark::State& state, const bench_log& log, Read&& read_all)
{
  double seconds = 0;
  for (auto _ : state) {
    const auto start = clock_type::now();
    read_all();
    const std::chrono::duration<double> took = clock_type::now() - start;
    state.SetIterationTime(took.count());
    seconds += took.count();
  }
  const auto iterations     = static_cast<double>(state.iterations());
  state.counters["bytes/s"] = static_cast<double>(log.text.size() - log.from) * iterations / seconds;
  state.counters["lines/s"] = static_cast<double>(log.lines) * iterations / seconds;
  return seconds;
}

/// Pinned copy bandwidth, bytes per second, to the device (@p to_device) or back.
double copy_bandwidth(bool to_device)
{
  constexpr std::size_t bytes = std::size_t{256} << 20;
  void* host                  = nullptr;
  void* device                = nullptr;
  double best                 = 0;
  if (cudaMallocHost(&host, bytes) == cudaSuccess && cudaMalloc(&device, bytes) == cudaSuccess) {
    std::memset(host, 1, bytes);
    for (int run = 0; run < 5; ++run) {
      const auto start = clock_type::now();
      if (to_device) {
        static_cast<void>(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice));
      } else {
        static_cast<void>(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost));
      }
      const std::chrono::duration<double> took = clock_type::now() - start;
      best                                     = std::max(best, static_cast<double>(bytes) / took.count());
    }
  }
  static_cast<void>(cudaFreeHost(host));
  static_cast<void>(cudaFree(device));
  static_cast<void>(cudaGetLastError());
  return best;
}

void bm_read_ahead_gpu(benchmark::State& state)
{
  std::string why;
  if (!gpu_available(&why)) {
    state.SkipWithError(("no usable GPU: " + why).c_str());
    return;
  }
  const bench_log& log          = the_log();
  static const double to_device = copy_bandwidth(true), to_host = copy_bandwidth(false);
  const auto reader =
      detail::make_gpu_line_reader(log.tables, static_cast<std::size_t>(state.range(0)) << 20);
  detail::lines_read_ahead out;
  // Once untimed: the pool's and the pinned staging's first allocations, and `out`'s room.
  reader->read(log.text, log.from, log.text.size(), log.layout, out);
  const double seconds =
      time_reads(state, log, [&] { reader->read(log.text, log.from, log.text.size(), log.layout, out); });
  benchmark::DoNotOptimize(out.values.data());
  // The bus's limit: the text one way, 101 bytes a line the other, both at once.
  const double bus_seconds       = std::max(static_cast<double>(log.text.size() - log.from) / to_device,
                                            static_cast<double>(log.lines) * 101.0 / to_host);
  state.counters["bus_fraction"] = bus_seconds * static_cast<double>(state.iterations()) / seconds;
  state.counters["h2d_GB/s"]     = to_device / 1e9;
  state.counters["d2h_GB/s"]     = to_host / 1e9;
}

void bm_read_ahead_host_one_core(benchmark::State& state)
{
  const bench_log& log = the_log();
  detail::lines_read_ahead out;
  time_reads(state, log, [&] {
    detail::read_ahead_on_host(log.text, log.from, log.text.size(), log.layout, log.tables, out);
  });
  benchmark::DoNotOptimize(out.values.data());
}

/// Every core: the range cut into a part a thread, at line starts, each read into its own result
/// (not merged into one, as the GPU's is: this peer is spared that copy).
void bm_read_ahead_host_all_cores(benchmark::State& state)
{
  const bench_log& log = the_log();
  const int threads    = omp_get_max_threads();
  const auto parts     = static_cast<std::size_t>(threads);
  std::vector<detail::lines_read_ahead> read(parts);
  std::vector<std::size_t> cut(parts + 1, log.text.size());
  cut[0]                  = log.from;
  const std::size_t bytes = log.text.size() - log.from;
  for (std::size_t k = 1; k < parts; ++k) {
    const std::size_t newline = log.text.find('\n', std::max(log.from + bytes * k / parts, cut[k - 1]));
    cut[k]                    = newline == std::string::npos ? log.text.size() : newline + 1;
  }
  time_reads(state, log, [&] {
#pragma omp parallel for schedule(static, 1) num_threads(threads)
    for (int t = 0; t < threads; ++t) {
      const auto k = static_cast<std::size_t>(t);
      detail::read_ahead_on_host(log.text, cut[k], cut[k + 1], log.layout, log.tables, read[k]);
    }
  });
  state.counters["threads"] = threads;
}

/// @brief The ingest `report` runs, on every OpenMP thread: `shipment_log_builder` streaming its
/// batches to a sink that drops them (the CPU report's ingest) or building whole-log columns (the
/// GPU report's), with no line read ahead (`read_ahead` 0), lines read ahead by the GPU line reader
/// in chunks of 4 MiB (1: a window of 16 cores' parse is 7.5 MiB, so each call overlaps two
/// chunks), or by `read_ahead_on_host` on the read-ahead thread (2): what the GPU ingest buys end
/// to end on this host. `accepted` must be the same in every row.
void bm_builder(benchmark::State& state, bool columns)
{
  const std::int64_t read_ahead = state.range(0);
  std::string why;
  if (read_ahead == 1 && !gpu_available(&why)) {
    state.SkipWithError(("no usable GPU: " + why).c_str());
    return;
  }
  const bench_log& log                  = the_log();
  static const reference_data reference = load_reference(report_options{});
  std::unique_ptr<detail::gpu_line_reader> reader;
  if (read_ahead == 1) { reader = detail::make_gpu_line_reader(log.tables, std::size_t{4} << 20); }
  std::int64_t accepted = 0;
  time_reads(state, log, [&] {
    ingest_options options;
    if (!columns) {
      options.on_batch = [](line_batch&) {};
    }
    if (read_ahead == 1) {
      options.read_ahead = [&reader](std::string_view text, std::size_t from, std::size_t to,
                                     const device_csv::line_layout& layout, detail::lines_read_ahead& out) {
        reader->read(text, from, to, layout, out);
      };
    } else if (read_ahead == 2) {
      options.read_ahead = [&log](std::string_view text, std::size_t from, std::size_t to,
                                  const device_csv::line_layout& layout, detail::lines_read_ahead& out) {
        detail::read_ahead_on_host(text, from, to, layout, log.tables, out);
      };
    }
    shipment_log_builder builder(reference.countries, reference.chips, options);
    builder.add_text("shipments.csv", log.text);
    accepted = builder.accepted();
    if (columns) {
      const shipment_log built = builder.finish();
      benchmark::DoNotOptimize(built.columns.size());
    }
  });
  state.counters["accepted"] = static_cast<double>(accepted);
  state.counters["threads"]  = omp_get_max_threads();
}

BENCHMARK_CAPTURE(bm_builder, streaming, false)
    ->ArgName("read_ahead")
    ->DenseRange(0, 2)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_builder, columns, true)
    ->ArgName("read_ahead")
    ->DenseRange(0, 2)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(bm_read_ahead_gpu)
    ->ArgName("chunk_mib")
    ->Arg(16)
    ->Arg(64)
    ->Arg(256)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(bm_read_ahead_host_one_core)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bm_read_ahead_host_all_cores)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv)
{
  // Our own flags first; the rest are Google Benchmark's.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--log=", 0) == 0) {
      log_path = arg.substr(6);
    } else if (arg.rfind("--lines=", 0) == 0) {
      generated_lines = std::stoll(arg.substr(8));
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) { return 1; }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
