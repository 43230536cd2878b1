/// @file l2_atomics_bench.cu
/// @brief The limits the dense pass runs against, measured on the card it runs on: 64-bit
/// atomicAdd throughput into tables that fit L2 and tables that do not (the pair table of 1,000
/// and of 100,000 entities), and plain column reading. The dense pass adds each line to the pair
/// table with one atomic on an 8-byte cell (carried cells), or two on a 16-byte one where a line's
/// parts do not fit one word; these kernels do exactly that at random cells (an integer hash of the
/// line number, so no index column is read), or only read 33 bytes a line.
/// Counters: `atomics/s` (every word of a cell counted), `bytes/s` read.
///
/// And the ceiling of a partitioned pair pass (issue 3's open design, not built): lines
/// partitioned by their cell's high bits (one CUB radix pass over 4-byte cell keys carrying
/// 8-byte cell words), so that each part's cells fit L2, then one atomic a line in that order.
#include <benchmark/benchmark.h>

#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#include <cstdint>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <vector>

namespace {

using u64 = unsigned long long;

#define CHECK(call)                                                                        \
  do {                                                                                     \
    const cudaError_t status = (call);                                                     \
    if (status != cudaSuccess) {                                                           \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(status)); \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)

__device__ __forceinline__ std::uint32_t mix(std::uint64_t x)
{
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return static_cast<std::uint32_t>(x);
}

/// @p words atomics a line on cell hash(line) % cells, 8 x @p words bytes a cell: the dense
/// pass's pair adds.
__global__ void pair_cell_adds(std::int64_t lines, u64* table, std::uint32_t cells, int words)
{
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < lines;
       i += stride) {
    u64* cell = table + words * static_cast<std::uint64_t>(mix(static_cast<std::uint64_t>(i)) % cells);
    atomicAdd(cell, 1ULL);
    if (words == 2) { atomicAdd(cell + 1, static_cast<u64>(i)); }
  }
}

/// Line i's cell (hash(i) % cells) and cell word (i), the partition's input.
__global__ void make_cell_lines(std::int64_t lines, std::uint32_t cells, std::uint32_t* cell, u64* word)
{
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < lines;
       i += stride) {
    cell[i] = mix(static_cast<std::uint64_t>(i)) % cells;
    word[i] = static_cast<u64>(i);
  }
}

/// One atomic a line of its word on its cell, lines read in order: 12 bytes a line.
__global__ void ordered_cell_adds(std::int64_t lines, const std::uint32_t* cell, const u64* word, u64* table)
{
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < lines;
       i += stride) {
    atomicAdd(table + __ldg(cell + i), __ldg(word + i));
  }
}

/// Reads the dense pass's 33 bytes a line (date 4, entity 4, country 2, chip 2, exporter 4,
/// pathway 1, quantity 8, tpp 8) and sums them, so that nothing is optimized away.
__global__ void read_columns(std::int64_t lines, const std::int32_t* date, const std::int32_t* entity,
                             const std::uint16_t* country, const std::uint16_t* chip,
                             const std::int32_t* exporter, const std::uint8_t* pathway,
                             const std::int64_t* quantity, const std::int64_t* tpp, u64* out)
{
  u64 sum                   = 0;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < lines;
       i += stride) {
    sum += static_cast<u64>(__ldg(date + i)) + static_cast<u64>(__ldg(entity + i)) + __ldg(country + i) +
           __ldg(chip + i) + static_cast<u64>(__ldg(exporter + i)) + __ldg(pathway + i) +
           static_cast<u64>(__ldg(quantity + i)) + static_cast<u64>(__ldg(tpp + i));
  }
  if (sum == 42) { atomicAdd(out, sum); }  // practically never; keeps the loads
}

int grid()
{
  int device = 0;
  int sms    = 0;
  CHECK(cudaGetDevice(&device));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms * 8;
}

template <typename Launch>
double event_ms(Launch launch)
{
  cudaEvent_t start = nullptr;
  cudaEvent_t stop  = nullptr;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  CHECK(cudaEventRecord(start));
  launch();
  CHECK(cudaGetLastError());
  CHECK(cudaEventRecord(stop));
  CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, start, stop));
  CHECK(cudaEventDestroy(start));
  CHECK(cudaEventDestroy(stop));
  return ms;
}

bool skip_without_gpu(benchmark::State& state)
{
  int devices = 0;
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) { return false; }
  state.SkipWithError("no usable GPU");
  return true;
}

/// Args: lines, cells (entities x 249 countries), words a cell (1 or 2).
void bm_pair_cell_atomics(benchmark::State& state)
{
  if (skip_without_gpu(state)) { return; }
  const std::int64_t lines = state.range(0);
  const auto cells         = static_cast<std::uint32_t>(state.range(1));
  const auto words         = static_cast<int>(state.range(2));
  const std::uint64_t bytes = 8ULL * static_cast<std::uint64_t>(words) * cells;
  u64* table               = nullptr;
  CHECK(cudaMalloc(&table, bytes));
  CHECK(cudaMemset(table, 0, bytes));
  for (auto _ : state) {
    state.SetIterationTime(event_ms([&] { pair_cell_adds<<<grid(), 256>>>(lines, table, cells, words); }) / 1e3);
  }
  CHECK(cudaFree(table));
  state.counters["atomics/s"] = benchmark::Counter(static_cast<double>(words) * static_cast<double>(lines),
                                                   benchmark::Counter::kIsIterationInvariantRate);
  state.counters["table_MB"] = static_cast<double>(bytes) / 1e6;
}

void bm_read_dense_pass_columns(benchmark::State& state)
{
  if (skip_without_gpu(state)) { return; }
  const std::int64_t lines    = state.range(0);
  const std::size_t n         = static_cast<std::size_t>(lines);
  void* columns[8]            = {};
  const std::size_t widths[8] = {4, 4, 2, 2, 4, 1, 8, 8};
  for (int c = 0; c < 8; ++c) {
    CHECK(cudaMalloc(&columns[c], widths[c] * n));
    CHECK(cudaMemset(columns[c], 1, widths[c] * n));
  }
  u64* out = nullptr;
  CHECK(cudaMalloc(&out, sizeof(u64)));
  for (auto _ : state) {
    state.SetIterationTime(
        event_ms([&] {
          read_columns<<<grid(), 256>>>(
              lines, static_cast<const std::int32_t*>(columns[0]),
              static_cast<const std::int32_t*>(columns[1]), static_cast<const std::uint16_t*>(columns[2]),
              static_cast<const std::uint16_t*>(columns[3]), static_cast<const std::int32_t*>(columns[4]),
              static_cast<const std::uint8_t*>(columns[5]), static_cast<const std::int64_t*>(columns[6]),
              static_cast<const std::int64_t*>(columns[7]), out);
        }) /
        1e3);
  }
  for (void* column : columns) { CHECK(cudaFree(column)); }
  CHECK(cudaFree(out));
  state.counters["bytes/s"] =
      benchmark::Counter(33.0 * static_cast<double>(lines), benchmark::Counter::kIsIterationInvariantRate);
}

/// Args: lines, cells, partition bits (0: no partition, the lines' own order). Manual time: the
/// partition and the adds; counters split them.
void bm_partitioned_pair_adds(benchmark::State& state)
{
  if (skip_without_gpu(state)) { return; }
  const std::int64_t lines = state.range(0);
  const auto cells         = static_cast<std::uint32_t>(state.range(1));
  const auto bits          = static_cast<int>(state.range(2));
  const auto n             = static_cast<std::size_t>(lines);
  int cell_bits            = 1;
  while ((std::uint64_t{1} << cell_bits) < cells) { ++cell_bits; }
  std::uint32_t* cell[2] = {};
  u64* word[2]           = {};
  u64* table             = nullptr;
  for (int k = 0; k < 2; ++k) {
    CHECK(cudaMalloc(&cell[k], n * sizeof(std::uint32_t)));
    CHECK(cudaMalloc(&word[k], n * sizeof(u64)));
  }
  CHECK(cudaMalloc(&table, std::size_t{cells} * sizeof(u64)));
  // The high `bits` of a cell number pick its part: a radix pass over those bits only.
  cub::DoubleBuffer<std::uint32_t> keys(cell[0], cell[1]);
  cub::DoubleBuffer<u64> values(word[0], word[1]);
  std::size_t temp_bytes = 0;
  CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys, values, static_cast<int>(lines),
                                        cell_bits - bits, cell_bits));
  void* temp = nullptr;
  CHECK(cudaMalloc(&temp, std::max<std::size_t>(temp_bytes, 1)));
  double partition_ms = 0;
  double adds_ms      = 0;
  for (auto _ : state) {
    // The sort may leave either buffer altered: the lines are made afresh (untimed).
    make_cell_lines<<<grid(), 256>>>(lines, cells, cell[0], word[0]);
    CHECK(cudaGetLastError());
    CHECK(cudaMemset(table, 0, std::size_t{cells} * sizeof(u64)));
    keys.selector   = 0;
    values.selector = 0;
    const double partition = bits == 0 ? 0.0 : event_ms([&] {
      CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys, values, static_cast<int>(lines),
                                            cell_bits - bits, cell_bits));
    });
    const double adds = event_ms([&] {
      ordered_cell_adds<<<grid(), 256>>>(lines, keys.Current(), values.Current(), table);
    });
    partition_ms += partition;
    adds_ms += adds;
    state.SetIterationTime((partition + adds) / 1e3);
  }
  // The table's sum is the same in any order: 0 + 1 + ... + (lines - 1), unless a line was lost
  // or changed on the way.
  std::vector<u64> sums(cells);
  CHECK(cudaMemcpy(sums.data(), table, std::size_t{cells} * sizeof(u64), cudaMemcpyDeviceToHost));
  const u64 total = std::accumulate(sums.begin(), sums.end(), u64{0});
  if (total != static_cast<u64>(lines) * static_cast<u64>(lines - 1) / 2) {
    state.SkipWithError("the partitioned adds lost or changed lines");
  }
  for (int k = 0; k < 2; ++k) {
    CHECK(cudaFree(cell[k]));
    CHECK(cudaFree(word[k]));
  }
  CHECK(cudaFree(table));
  CHECK(cudaFree(temp));
  const auto iterations        = static_cast<double>(state.iterations());
  state.counters["partition_ms"] = partition_ms / iterations;
  state.counters["adds_ms"]      = adds_ms / iterations;
  state.counters["part_MB"]      = 8.0 * cells / static_cast<double>(1 << bits) / 1e6;
}

}  // namespace

// 4e8 lines as in issue 3's shape; 249,000 cells (1,000 entities, 2 or 4 MB: in L2) and
// 24,900,000 (100,000 entities, 199 or 398 MB: not); one word a cell and two.
BENCHMARK(bm_pair_cell_atomics)
    ->Args({400000000, 249000, 1})
    ->Args({400000000, 24900000, 1})
    ->Args({400000000, 249000, 2})
    ->Args({400000000, 24900000, 2})
    ->ArgNames({"lines", "cells", "words"})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
// 100,000 entities' 24,900,000 cells (199 MB) in 1 (no partition), 8, 16 and 32 parts (25, 12
// and 6 MB a part).
BENCHMARK(bm_partitioned_pair_adds)
    ->Args({400000000, 24900000, 0})
    ->Args({400000000, 24900000, 3})
    ->Args({400000000, 24900000, 4})
    ->Args({400000000, 24900000, 5})
    ->ArgNames({"lines", "cells", "bits"})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(bm_read_dense_pass_columns)
    ->Arg(400000000)
    ->ArgName("lines")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
