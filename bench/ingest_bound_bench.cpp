/// @file ingest_bound_bench.cpp
/// @brief How fast one core can go through a shipment log with capledger's own helpers and
/// nothing else: the per-line floor that `report --backend cpu` is measured against (issue 5).
///
/// Usage: `ingest_bound_bench FILE [--benchmark_... flags]`, FILE a log in the SPEC format whose
/// data lines hold no quotes and whose columns are in SPEC order (what `capledger generate`
/// writes). Single thread; each stage adds work to the one before:
///   split   line ends and commas, 64 bytes at a time (SSE2 masks), fields counted
///   fields  + date (`parse_date` with the same one-entry memo as the ingest), country, quantity,
///           pathway and chip checked as the ingest checks them
///   hash    + `hash_bytes` of the shipment id, entity, order and exporter
///   ids     + the id looked up and added in a flat open-addressing set of its hashes (2^24
///           slots on huge pages; counting stops past half full: a bound)
///   all     + the entity and exporter in `string_index` dictionaries, and records, units and
///           tpp summed per country, entity and (entity, country) in `key_table`
///   *_prefetched  the same with the id set's slot prefetched 16 lines before the id is added,
///           as the ingest's merge does
///   sha256  the file's SHA-256 alone (OpenSSL, as the report takes it)
/// Not a parser: a line that breaks the assumptions is counted, not reported. What the report
/// does beyond `all` (every check, exact duplicate confirmation, rejects, section records,
/// output files, two threads' hand-over) is the price of being exact and explainable.
#include <capledger/backend.hpp>
#include <capledger/calendar.hpp>

#include "csv.hpp"
#include "file_io.hpp"
#include "key_table.hpp"
#include "string_index.hpp"

#include <benchmark/benchmark.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace capledger;

std::unique_ptr<detail::input_bytes> input;

enum class stage { split, fields, hash, ids, all };

/// Calls @p line(fields, count) for every line after the header with the views of its fields.
template <typename Line>
void for_each_line(std::string_view text, Line line)
{
  const std::size_t header_end = text.find('\n') + 1;
  const char* data             = text.data();
  std::string_view fields[16];
  int count               = 0;
  std::size_t field_start = header_end;
#if defined(__SSE2__)
  const __m128i comma = _mm_set1_epi8(','), newline = _mm_set1_epi8('\n');
#endif
  for (std::size_t block = header_end & ~std::size_t{63}; block + 64 <= text.size(); block += 64) {
    std::uint64_t separators = 0, newlines = 0;
#if defined(__SSE2__)
    for (int k = 0; k < 4; ++k) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + block + 16 * k));
      const auto nl =
          static_cast<std::uint64_t>(static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, newline))));
      const auto commas =
          static_cast<std::uint64_t>(static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, comma))));
      newlines |= nl << (16 * k);
      separators |= (nl | commas) << (16 * k);
    }
#else
    for (int i = 0; i < 64; ++i) {
      const char c = data[block + static_cast<std::size_t>(i)];
      newlines |= static_cast<std::uint64_t>(c == '\n') << i;
      separators |= static_cast<std::uint64_t>(c == '\n' || c == ',') << i;
    }
#endif
    if (block < header_end) { separators &= ~std::uint64_t{0} << (header_end - block); }
    for (; separators != 0; separators &= separators - 1) {
      const auto bit       = static_cast<unsigned>(__builtin_ctzll(separators));
      const std::size_t at = block + bit;
      if (count < 16) { fields[count] = std::string_view(data + field_start, at - field_start); }
      ++count;
      field_start = at + 1;
      if (((newlines >> bit) & 1U) != 0) {
        line(fields, count);
        count = 0;
      }
    }
  }
}

struct sums {
  detail::key_table<group_total> pairs;
  std::vector<group_total> by_country = std::vector<group_total>(26 * 26);
  std::vector<group_total> by_entity;
  std::uint64_t* ids   = nullptr;  ///< flat set of id hashes (0: empty), half full at most
  std::size_t id_slots = 0;
  std::size_t id_count = 0;
  detail::string_index entities, exporters, chips;
  /// Adds @p hash to the id set unless there (counting stops past half full: a bound).
  void insert_id(std::uint64_t hash)
  {
    if (2 * (id_count + 1) > id_slots) { return; }
    const std::uint64_t key = hash | 1U;
    for (std::size_t slot = hash & (id_slots - 1);; slot = (slot + 1) & (id_slots - 1)) {
      if (ids[slot] == key) { return; }  // a repeat (by hash)
      if (ids[slot] == 0) {
        ids[slot] = key;
        ++id_count;
        return;
      }
    }
  }
  void add(group_total& t, std::int64_t q, std::int64_t tpp)
  {
    t.records += 1;
    t.units += q;
    t.tpp += tpp;
  }
};

void run_stage(benchmark::State& state, stage upto, bool prefetch_ids)
{
  constexpr std::int64_t pending_lines = 16;
  std::uint64_t pending[pending_lines] = {};
  const std::string_view text          = input->view();
  std::int64_t lines                   = 0;
  std::vector<std::uint64_t> id_set;
  id_set.reserve(std::size_t{1} << 24);
  detail::advise_huge_pages(id_set.data(), id_set.capacity() * sizeof(std::uint64_t));
  id_set.resize(id_set.capacity());
  for (auto _ : state) {
    lines                  = 0;
    std::uint64_t checksum = 0;
    state.PauseTiming();  // a fresh id set, as the ingest's (huge pages, zeroed) is at its start
    std::fill(id_set.begin(), id_set.end(), 0);
    state.ResumeTiming();
    sums s;
    s.ids              = id_set.data();
    s.id_slots         = id_set.size();
    char last_date[10] = {};
    day_t last_day     = 0;
    for_each_line(text, [&](const std::string_view* f, int count) {
      ++lines;
      if (upto == stage::split || count != 10) {
        checksum += static_cast<std::uint64_t>(count);
        return;
      }
      // SPEC order: shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp
      day_t day = last_day;
      if (f[1].size() != 10 || std::memcmp(f[1].data(), last_date, 10) != 0) {
        const auto parsed = parse_date(f[1]);
        day               = parsed.value_or(0);
        if (f[1].size() == 10) { std::memcpy(last_date, f[1].data(), 10); }
        last_day = day;
      }
      const int country       = f[3].size() == 2 ? (f[3][0] - 'A') * 26 + (f[3][1] - 'A') : 0;
      std::int64_t quantity   = 0;
      const bool quantity_ok  = detail::parse_int64(f[5], quantity);
      const bool lpp          = f[6] == "LPP";
      const std::int32_t chip = s.chips.encode(f[4]);  // the ingest looks chips up in a table like this
      const std::int64_t tpp  = quantity * (1000 + chip);
      checksum += static_cast<std::uint64_t>(day) + static_cast<std::uint64_t>(country) + quantity_ok + lpp;
      if (upto == stage::fields) { return; }
      const std::uint64_t id_hash       = detail::hash_bytes(f[0]);
      const std::uint64_t entity_hash   = detail::hash_bytes(f[2]);
      const std::uint64_t exporter_hash = detail::hash_bytes(f[8]);
      checksum += id_hash ^ entity_hash ^ exporter_hash ^ (lpp ? detail::hash_bytes(f[7]) : 0);
      if (upto == stage::hash) { return; }
      if (prefetch_ids) {
        // As the ingest's merge does: the slot is fetched now and the id added 16 lines later.
        __builtin_prefetch(&s.ids[id_hash & (s.id_slots - 1)], 1);
        std::uint64_t& waiting = pending[lines % pending_lines];
        if (lines > pending_lines) { s.insert_id(waiting); }
        waiting = id_hash;
      } else {
        s.insert_id(id_hash);
      }
      if (upto == stage::ids) { return; }
      const std::int32_t entity = s.entities.encode(f[2], entity_hash);
      checksum += static_cast<std::uint64_t>(s.exporters.encode(f[8], exporter_hash));
      if (static_cast<std::size_t>(entity) >= s.by_entity.size()) { s.by_entity.resize(2 * (entity + 1)); }
      s.add(s.by_country[static_cast<std::size_t>(country) % s.by_country.size()], quantity, tpp);
      s.add(s.by_entity[static_cast<std::size_t>(entity)], quantity, tpp);
      s.add(s.pairs.at(entity_country_key(entity, country)), quantity, tpp);
    });
    for (std::int64_t k = std::max<std::int64_t>(1, lines - pending_lines + 1); prefetch_ids && k <= lines;
         ++k) {
      s.insert_id(pending[k % pending_lines]);
    }
    benchmark::DoNotOptimize(checksum);
    benchmark::DoNotOptimize(s.pairs.size());
    benchmark::DoNotOptimize(s.id_count);
  }
  state.counters["lines"] = static_cast<double>(lines);
  state.counters["ns/line"] =
      benchmark::Counter(static_cast<double>(lines) * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(text.size()));
}

void run_sha256(benchmark::State& state)
{
  for (auto _ : state) {
    detail::sha256_stream digest;
    digest.update(input->view());
    benchmark::DoNotOptimize(digest.hex());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(input->view().size()));
}

}  // namespace

int main(int argc, char** argv)
{
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: ingest_bound_bench FILE [--benchmark_... flags]\n");
    return 2;
  }
  input   = std::make_unique<detail::input_bytes>(argv[1]);
  argv[1] = argv[0];
  ++argv;
  --argc;
  benchmark::RegisterBenchmark("split", run_stage, stage::split, false)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("fields", run_stage, stage::fields, false)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("hash", run_stage, stage::hash, false)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("ids", run_stage, stage::ids, false)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("ids_prefetched", run_stage, stage::ids, true)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("all", run_stage, stage::all, false)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("all_prefetched", run_stage, stage::all, true)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("sha256", run_sha256)->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
