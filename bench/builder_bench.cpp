/// @file builder_bench.cpp
/// @brief The ingest alone, as each backend's report runs it: `shipment_log_builder` over a log
/// file with every OpenMP thread, building whole-log columns (what `report --backend gpu`
/// uploads) or streaming batches to a sink that drops them (what `report --backend cpu`
/// aggregates as they come). Wall time per pass; counters: lines/s and bytes/s of the file.
///
/// Usage: `builder_bench FILE [--benchmark_... flags]` (OMP_NUM_THREADS sets the threads).
#include <capledger/report.hpp>
#include <capledger/shipments.hpp>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <string>

namespace {

using namespace capledger;

std::string path;

void run_builder(benchmark::State& state, bool columns)
{
  const reference_data ref = load_reference(report_options{});
  std::int64_t lines       = 0;
  for (auto _ : state) {
    ingest_options options;
    if (!columns) {
      options.on_batch = [](line_batch&) {};
    }
    shipment_log_builder builder(ref.countries, ref.chips, options);
    builder.add_file(path);
    lines = builder.accepted();
    if (columns) {
      const shipment_log log = builder.finish();
      benchmark::DoNotOptimize(log.columns.size());
    }
  }
  state.counters["lines/s"] = benchmark::Counter(
      static_cast<double>(lines) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(std::filesystem::file_size(path)));
}

}  // namespace

int main(int argc, char** argv)
{
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: builder_bench FILE [--benchmark_... flags]\n");
    return 2;
  }
  path    = argv[1];
  argv[1] = argv[0];
  ++argv;
  --argc;
  benchmark::RegisterBenchmark("builder/columns", run_builder, true)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("builder/streaming", run_builder, false)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
