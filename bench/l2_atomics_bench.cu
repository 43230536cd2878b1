/// @file l2_atomics_bench.cu
/// @brief The limits the dense pass runs against, measured on the card it runs on: 64-bit
/// atomicAdd throughput into tables that fit L2 and tables that do not (the pair table of 1,000
/// and of 100,000 entities), and plain column reading. The dense pass adds each line to the pair
/// table with one atomic on an 8-byte cell (carried cells), or two on a 16-byte one where a line's
/// parts do not fit one word; these kernels do exactly that at random cells (an integer hash of the
/// line number, so no index column is read), or only read 33 bytes a line.
/// Counters: `atomics/s` (every word of a cell counted), `bytes/s` read.
#include <benchmark/benchmark.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

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
BENCHMARK(bm_read_dense_pass_columns)
    ->Arg(400000000)
    ->ArgName("lines")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
