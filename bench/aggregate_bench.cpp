/// @file aggregate_bench.cpp
/// @brief The aggregation step (every total and check) on in-memory columns, per backend.
///
/// Shape (issue 3): entity = floor(E * u^3) for uniform u (a few very large entities), 249
/// countries uniform, 7 chip models, quantity 1..64, 1,096 days; or, the sparse shape beside it,
/// each entity shipping to a few countries of its own (`countries_per_entity` > 0, drawn
/// uniformly among those). Counters: records/s and the
/// bytes of the columns read once per second (date 4, entity 4, country 2, chip 2, pathway 1,
/// quantity 8, tpp 8, order 4, exporter 4 = 37 bytes a line).
#include <capledger/backend.hpp>
#include <capledger/calendar.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>
#include <cstdint>
#include <iostream>
#include <string>

namespace {

using namespace capledger;

constexpr std::int64_t bytes_per_line = 37;

struct synthetic_log {
  shipment_columns columns;
  rule_context rules;
  dictionary_sizes sizes;
};

std::uint64_t splitmix64(std::uint64_t& state)
{
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z               = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z               = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// @param countries_per_entity 0: every line's country uniform over all 249; k > 0: uniform over
/// k countries fixed per entity (the realistic sparse shape: few (entity, country) pairs)
synthetic_log make_log(std::int64_t lines, std::int32_t entities, int countries_per_entity = 0)
{
  synthetic_log log;
  constexpr int countries = 249;
  constexpr int chips     = 7;
  const day_t first_day   = days_from_civil(2025, 1, 13);
  auto& c                 = log.columns;
  const auto count        = static_cast<std::size_t>(lines);
  c.date.reserve(count); c.entity.reserve(count); c.country.reserve(count); c.chip.reserve(count);
  c.pathway.reserve(count); c.quantity.reserve(count); c.tpp.reserve(count); c.order.reserve(count);
  c.exporter.reserve(count);
  std::uint64_t state     = 42;
  for (std::int64_t i = 0; i < lines; ++i) {
    const double u       = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
    const auto entity    = static_cast<std::int32_t>(static_cast<double>(entities) * u * u * u);
    const std::uint64_t r = splitmix64(state);
    const auto pathway_code = static_cast<std::uint8_t>((r >> 40) % 16 < 12 ? 0 : (r >> 40) % 6);
    const std::int64_t quantity = static_cast<std::int64_t>(r % 64) + 1;
    c.date.push_back(first_day + static_cast<day_t>((r >> 8) % 1096));
    c.entity.push_back(entity);
    if (countries_per_entity > 0) {
      // The entity's k countries: a start of its own, then steps of 37 (coprime to 249).
      std::uint64_t entity_state = static_cast<std::uint64_t>(entity);
      const std::uint64_t first  = splitmix64(entity_state) % countries;
      const std::uint64_t pick   = (r >> 20) % static_cast<std::uint64_t>(countries_per_entity);
      c.country.push_back(static_cast<std::uint16_t>((first + 37 * pick) % countries));
    } else {
      c.country.push_back(static_cast<std::uint16_t>((r >> 20) % countries));
    }
    c.chip.push_back(static_cast<std::uint16_t>((r >> 30) % chips));
    c.pathway.push_back(pathway_code);
    c.quantity.push_back(quantity);
    c.tpp.push_back(quantity * 15832);
    c.order.push_back(pathway_code == 1 ? static_cast<std::int32_t>(i / 4) : -1);
    c.exporter.push_back(static_cast<std::int32_t>((r >> 50) % 8));
  }
  log.sizes = {entities, countries, chips, 8, static_cast<std::int32_t>(lines / 4 + 1)};
  auto& rules        = log.rules;
  rules.as_of        = first_day + 1095;
  rules.window_start = first_day;
  rules.window_end   = first_day + 1095;
  for (int k = 0; k < countries; ++k) {
    const int tier = k % 20 == 0 ? 1 : (k % 31 == 0 ? 3 : 2);
    rules.country_tier.push_back(static_cast<std::uint8_t>(tier));
    rules.country_cap_tpp.push_back(tier == 2 ? 790000000 : -1);
  }
  rules.country_cap_pathways = 1;
  rules.chip_datacenter.assign(chips, 1);
  rules.entity_is_uveu.assign(static_cast<std::size_t>(entities), 0);
  rules.entity_hq_tier1.assign(static_cast<std::size_t>(entities), 0);
  rules.entity_nveu_countries.assign(static_cast<std::size_t>(entities) * rule_context::nveu_mask_words, 0);
  for (std::int32_t e = 0; e < entities; e += 97) {
    rules.entity_is_uveu[static_cast<std::size_t>(e)] = 1;
    rules.entity_nveu_countries[static_cast<std::size_t>(e) * rule_context::nveu_mask_words] = ~0ULL;
  }
  rules.lpp_per_order_tpp          = 26900000;
  rules.lpp_per_consignee_year_tpp = 26900000;
  rules.nveu_caps = {{first_day + 350, 633000000}, {first_day + 715, 1699000000}, {first_day + 1095, 5064000000}};
  return log;
}

/// records/s and bytes/s of the timed iterations (manual time: wall or CUDA events).
void set_rate_counters(benchmark::State& state)
{
  state.counters["records/s"] = benchmark::Counter(static_cast<double>(state.range(0)),
                                                   benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes/s"]   = benchmark::Counter(static_cast<double>(state.range(0) * bytes_per_line),
                                                   benchmark::Counter::kIsIterationInvariantRate,
                                                   benchmark::Counter::OneK::kIs1024);
}

/// Times @p aggregate (which returns only once its results are on the host) per iteration and
/// reports records/s and column bytes/s.
template <typename Aggregate>
void time_aggregation(benchmark::State& state, Aggregate aggregate)
{
  for (auto _ : state) {
    const auto start   = std::chrono::steady_clock::now();
    aggregation result = aggregate();
    benchmark::DoNotOptimize(result);
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  set_rate_counters(state);
}

/// `backend::aggregate` on host-resident columns (for the GPU: the copies included).
void run(benchmark::State& state, backend& engine)
{
  const synthetic_log log =
    make_log(state.range(0), static_cast<std::int32_t>(state.range(1)), static_cast<int>(state.range(2)));
  const shipment_view lines = log.columns.view();
  time_aggregation(state, [&] { return engine.aggregate(lines, log.rules, log.sizes); });
}

void bm_aggregate_cpu(benchmark::State& state)
{
  auto engine = make_cpu_backend();
  run(state, *engine);
}

bool skip_without_gpu(benchmark::State& state)
{
  std::string why;
  if (gpu_available(&why)) { return false; }
  state.SkipWithError(("no usable GPU: " + why).c_str());
  return true;
}

void bm_aggregate_gpu(benchmark::State& state)
{
  if (skip_without_gpu(state)) { return; }
  auto engine = make_gpu_backend();
  run(state, *engine);
}

/// The aggregation alone on columns already in GPU memory (the upload happens once, untimed),
/// timed by CUDA events on its stream; the wall time of the call is the `wall_ms` counter and
/// each phase's event time a `ms:<phase>` counter (averages over the iterations).
void gpu_resident(benchmark::State& state, const gpu_tuning& tuning)
{
  if (skip_without_gpu(state)) { return; }
  const synthetic_log log =
    make_log(state.range(0), static_cast<std::int32_t>(state.range(1)), static_cast<int>(state.range(2)));
  const auto resident = upload_to_gpu(log.columns.view());
  double wall_ms          = 0;
  std::vector<std::pair<std::string, double>> phase_ms;
  for (auto _ : state) {
    gpu_timing timing;
    const auto start   = std::chrono::steady_clock::now();
    aggregation result = aggregate_on_gpu(*resident, log.rules, log.sizes, &timing, tuning);
    wall_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    benchmark::DoNotOptimize(result);
    state.SetIterationTime(timing.total_ms / 1e3);
    state.counters["pair_slices"] = timing.pair_slices;
    state.counters["pair_units_bits"] = timing.pair_units_bits;
    state.counters["carried_cells"]   = static_cast<double>(timing.carried_cells);
    if (phase_ms.empty()) { phase_ms.assign(timing.phase_ms.size(), {"", 0.0}); }
    for (std::size_t p = 0; p < timing.phase_ms.size() && p < phase_ms.size(); ++p) {
      phase_ms[p].first = timing.phase_ms[p].first;
      phase_ms[p].second += timing.phase_ms[p].second;
    }
  }
  set_rate_counters(state);
  state.counters["wall_ms"] = benchmark::Counter(wall_ms, benchmark::Counter::kAvgIterations);
  for (const auto& [name, ms] : phase_ms) {
    state.counters["ms:" + name] = benchmark::Counter(ms, benchmark::Counter::kAvgIterations);
  }
}

void bm_aggregate_gpu_resident(benchmark::State& state)
{
  gpu_resident(state, gpu_tuning{});
}

/// The same with the dense (entity, country) table filled directly, never a slice of it at a time:
/// what slicing gains, measured in the same run.
void bm_aggregate_gpu_resident_unsliced(benchmark::State& state)
{
  gpu_tuning unsliced;
  unsliced.pair_slice_bytes = UINT64_MAX;
  gpu_resident(state, unsliced);
}

/// The same with the dense (entity, country) table in two words a cell (two atomics a line), as
/// before its cells were carried in one: what one word gains, measured in the same run.
void bm_aggregate_gpu_resident_two_word(benchmark::State& state)
{
  gpu_tuning two_words;
  two_words.pair_units_bits = -1;
  gpu_resident(state, two_words);
}

/// The same with the carries summed after the SPEC order (`gpu_tuning::carries_after_order`, an
/// experiment): whether the order phase gets back what carried cells cost it.
void bm_aggregate_gpu_resident_carries_after_order(benchmark::State& state)
{
  gpu_tuning late;
  late.carries_after_order = true;
  gpu_resident(state, late);
}

void sizes(benchmark::internal::Benchmark* b, int max_log2)
{
  for (int log2 = 16; log2 <= max_log2; log2 += 4) {
    for (const std::int64_t entities : {1000, 100000}) { b->Args({std::int64_t{1} << log2, entities, 0}); }
  }
  b->ArgNames({"lines", "entities", "countries_per_entity"})->UseManualTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

// Wall time of `backend::aggregate` on host-resident columns (the GPU figure includes the copies).
BENCHMARK(bm_aggregate_cpu)->Apply([](benchmark::internal::Benchmark* b) {
  sizes(b, 24);
  b->Args({std::int64_t{1} << 20, 100000, 3});  // the sparse shape
});
BENCHMARK(bm_aggregate_gpu)->Apply([](benchmark::internal::Benchmark* b) { sizes(b, 28); });
// The step issue 3 measures: device-resident columns, every total and check; 4e8 lines and 1e5
// entities is the comparison shape.
BENCHMARK(bm_aggregate_gpu_resident)->Apply([](benchmark::internal::Benchmark* b) {
  sizes(b, 28);
  b->Args({400000000, 100000, 0});
  b->Args({400000000, 1000, 0});  // the pair table fits in L2: the dense pass without DRAM atomics
  // The sparse shape: 100,000 entities each shipping to 3 countries (300,000 pairs, not 24.9 M).
  b->Args({std::int64_t{1} << 24, 100000, 3});
  b->Args({400000000, 100000, 3});
});
BENCHMARK(bm_aggregate_gpu_resident_two_word)->Apply([](benchmark::internal::Benchmark* b) {
  b->Args({std::int64_t{1} << 24, 100000, 0});
  b->Args({400000000, 100000, 0});
  b->Args({400000000, 1000, 0});
  b->Args({400000000, 100000, 3});
  b->ArgNames({"lines", "entities", "countries_per_entity"})->UseManualTime()->Unit(benchmark::kMillisecond);
});
BENCHMARK(bm_aggregate_gpu_resident_carries_after_order)->Apply([](benchmark::internal::Benchmark* b) {
  b->Args({400000000, 100000, 0});
  b->Args({400000000, 1000, 0});
  b->Args({400000000, 100000, 3});
  b->ArgNames({"lines", "entities", "countries_per_entity"})->UseManualTime()->Unit(benchmark::kMillisecond);
});
BENCHMARK(bm_aggregate_gpu_resident_unsliced)->Apply([](benchmark::internal::Benchmark* b) {
  b->Args({std::int64_t{1} << 24, 100000, 0});
  b->Args({400000000, 100000, 0});
  b->Args({400000000, 100000, 3});
  b->ArgNames({"lines", "entities", "countries_per_entity"})->UseManualTime()->Unit(benchmark::kMillisecond);
});

namespace {

/// Same summary as bench/torch_peer.py's checksum(): sum of (index + 1) * value, wrapping.
std::uint64_t checksum(const std::vector<std::uint64_t>& values)
{
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < values.size(); ++i) { sum += (i + 1) * values[i]; }
  return sum;
}

/// `--verify FILE`: loads the columns bench/torch_peer.py dumped, aggregates them on every usable
/// backend and prints the checksums of the totals torch computed, to compare with FILE.json.
int verify(const std::string& path, std::int32_t entities)
{
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) { std::cerr << path << ": cannot open\n"; return 2; }
  std::int64_t n = 0;
  bool ok = std::fread(&n, 8, 1, file) == 1;
  shipment_columns c;
  const auto load = [&](auto& column) {
    column.resize(static_cast<std::size_t>(n));
    ok = ok && std::fread(column.data(), sizeof(column[0]), column.size(), file) == column.size();
  };
  load(c.date); load(c.entity); load(c.country); load(c.chip); load(c.pathway); load(c.quantity); load(c.tpp);
  std::fclose(file);
  if (!ok) { std::cerr << path << ": truncated\n"; return 2; }
  c.order.assign(static_cast<std::size_t>(n), -1);
  c.exporter.assign(static_cast<std::size_t>(n), 0);
  synthetic_log log = make_log(0, entities);
  log.columns        = std::move(c);
  log.rules.as_of    = log.rules.window_end;
  log.sizes.orders   = 1;
  log.sizes.exporters = 1;
  std::vector<std::unique_ptr<backend>> engines;
  engines.push_back(make_cpu_backend());
  if (gpu_available()) { engines.push_back(make_gpu_backend()); }
  for (auto& engine : engines) {
    const aggregation a = engine->aggregate(log.columns.view(), log.rules, log.sizes);
    std::vector<std::uint64_t> country, entity, pair(static_cast<std::size_t>(entities) * 249);
    for (const auto& t : a.by_country) { country.push_back(static_cast<std::uint64_t>(t.tpp)); }
    for (const auto& t : a.by_entity) { entity.push_back(static_cast<std::uint64_t>(t.tpp)); }
    for (const auto& p : a.by_entity_country) {
      pair[static_cast<std::size_t>(p.entity) * 249 + p.country] = static_cast<std::uint64_t>(p.total.tpp);
    }
    std::cout << engine->name() << ": country " << checksum(country) << " entity " << checksum(entity)
              << " pair " << checksum(pair) << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv)
{
  if (argc == 4 && std::string(argv[1]) == "--verify") {
    return verify(argv[2], static_cast<std::int32_t>(std::stol(argv[3])));
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) { return 1; }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
