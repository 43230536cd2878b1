/// @file gpu_backend.cu
/// @brief The CUDA backend: every aggregate of `backend::aggregate` computed on the GPU with exact
/// 64-bit integer arithmetic, equal field for field to the CPU backend.
///
/// Plan of one `aggregate` call (one stream, synchronized only to read counts and results back):
///  1. Upload the columns and the rule tables.
///  2. One fused pass over all lines sums the dense totals (country, chip, entity, exporter, the
///     per-country cap-pathway tpp and, when the table fits in memory, every (entity, country)
///     pair). Small tables and a prefix of the entity (or pair) codes are privatized per block in
///     shared memory, the rest take global atomics; records and units share a word when they fit
///     (`record_packing`); a dense pair table keeps records, units and tpp in one word a cell where
///     every line's parts fit, its fields' carries listed apart (`carried_layout`); with a dense
///     pair table, country and entity totals are its column and row sums. A pair table larger than
///     L2 is filled one entity range at a time from lines the pass stages (`pair_slices`). 64-bit
///     two's-complement sums are exact because ingest bounds the sum of |tpp| and of |quantity| by
///     INT64_MAX, so every partial sum, in any order, is representable.
///  3. The in-window lines are compacted and stably radix-sorted by date, which yields the SPEC §2
///     order (date, input position) once for all checks; one byte per slot says which checks
///     the slot's line belongs to.
///  4. Each check selects its lines from that order (order kept), stably sorts them by a dense
///     key code (so every key's lines stay in SPEC order), runs a segmented inclusive scan for the
///     running totals, and a reduce-by-key yields per key the final total and the first slot whose
///     running total exceeds the limit in force on that line's date (a min over flagged slots).
///     Rows are written in the aggregation's own layout and copied back as they are. The
///     country-cap check walks (country, day) bins instead and scans only the days on which a
///     country could cross (`country_cap_crossings_by_day`).
///  5. (entity, country) pairs too numerous for a dense table are sorted and reduced by key.
/// Phase times (CUDA events) come back through `gpu_timing`; bench/RESULTS.md has them.
#include "carried_cells.cuh"
#include "cuda_utils.cuh"
#include "line_rules.cuh"

#include <capledger/backend.hpp>
#include <capledger/error.hpp>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_select.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <algorithm>
#include <type_traits>
#include <initializer_list>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

namespace capledger {
namespace detail {

/// The operand type of CUDA's 64-bit atomics; sums wrap as two's complement and are read back as
/// int64, which is exact for sums that fit (see the file comment).
using u64 = unsigned long long;

constexpr int block_size = 256;
/// "No slot": the identity of the min that finds a key's first crossing.
constexpr std::int64_t no_slot = INT64_MAX;

/// @brief Where and how wide kernels launch.
struct launch_env {
  cudaStream_t stream = nullptr;
  int sm_count        = 1;
  int l2_bytes        = 0;
};

[[nodiscard]] int grid_for(std::int64_t count, const launch_env& env, int blocks_per_sm = 8)
{
  const std::int64_t needed = (count + block_size - 1) / block_size;
  return static_cast<int>(std::max<std::int64_t>(
    1, std::min<std::int64_t>(needed, static_cast<std::int64_t>(env.sm_count) * blocks_per_sm)));
}

[[nodiscard]] std::size_t count_of(std::int32_t codes) { return static_cast<std::size_t>(codes); }

/// @brief Number of radix bits that hold every value in [0, @p max_value].
[[nodiscard]] int bits_for(std::uint64_t max_value)
{
  int bits = 0;
  while (bits < 64 && (max_value >> bits) != 0) { ++bits; }
  return bits;
}

/// @brief Number of radix bits that hold every code in [0, @p codes).
[[nodiscard]] int bits_for_codes(std::uint64_t codes) { return codes > 1 ? bits_for(codes - 1) : 0; }

template <typename Function>
__global__ void for_each_kernel(std::int64_t count, Function function)
{
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    function(i);
  }
}

/// @brief Calls the device functor @p function on 0 .. count-1 (grid-stride).
template <typename Function>
void for_each_index(std::int64_t count, const launch_env& env, Function function)
{
  if (count <= 0) { return; }
  for_each_kernel<<<grid_for(count, env), block_size, 0, env.stream>>>(count, function);
  CAPLEDGER_CHECK_LAUNCH();
}

// ---- dense totals -----------------------------------------------------------------------------

/// @brief One table of per-code sums filled by the dense pass.
struct accumulator_table {
  u64* d_global        = nullptr;  ///< entries x width words, zeroed
  std::int64_t entries = 0;
  int width            = 0;        ///< 3: records, units, tpp; 2: records and units packed, tpp; 1: tpp
  int shared_offset    = 0;        ///< word offset of the per-block copy of the privatized cells
  /// Cells [0, shared_entries) are summed per block in shared memory, the rest by global atomics.
  /// A prefix, because dictionary codes follow first appearance: busy keys tend to get low codes.
  std::int64_t shared_entries = 0;
  bool carried                = false;  ///< one word a cell (`carried_layout`), width 1
};

/// Which of `dense_tables::table` holds which total.
enum : int {
  country_totals = 0,
  country_cap_totals,
  chip_totals,
  entity_totals,
  exporter_totals,
  pair_totals,  ///< (entity, country) cells, entity * countries + country; entries 0 when sorted
  dense_table_count
};

/// @brief How a cell of a group-total table holds records and units: in one word when every cell's
/// sums fit beside each other (records in the high bits, units plus an offset that makes each
/// line's part non-negative in the low `units_bits`), else in a word each. One word fewer is one
/// atomic fewer per line and table, and the dense pair table's cells shrink from 24 to 16 bytes.
struct record_packing {
  int width        = 3;  ///< words per cell: 2 packed, 3 not
  int units_bits   = 0;
  u64 units_offset = 0;  ///< -(smallest quantity) when that is negative, else 0
  /// -(smallest tpp) when negative, else 0: only in the three-word sums of carried pair cells
  /// (`totals_packing`), which hold units and tpp with each record's offsets.
  u64 tpp_offset = 0;

  /// The first word a line adds to its cell (the second is its tpp when packed).
  [[nodiscard]] __host__ __device__ u64 packed_line(u64 units) const
  {
    return (1ULL << units_bits) + units + units_offset;
  }
  /// The cell's records, units and tpp. Exact: `choose_record_packing` makes records and the
  /// offset units of any cell fit their fields, so the modular sums are the true ones.
  [[nodiscard]] __host__ __device__ group_total unpack(const u64* cell) const
  {
    group_total total;
    if (width == 3) {
      total.records = static_cast<std::int64_t>(cell[0]);
      total.units   = static_cast<std::int64_t>(cell[1] - cell[0] * units_offset);
      total.tpp     = static_cast<std::int64_t>(cell[2] - cell[0] * tpp_offset);
      return total;
    }
    const u64 records = cell[0] >> units_bits;
    total.records     = static_cast<std::int64_t>(records);
    total.units       = static_cast<std::int64_t>((cell[0] & ((1ULL << units_bits) - 1)) - records * units_offset);
    total.tpp         = static_cast<std::int64_t>(cell[1]);
    return total;
  }
};

/// @brief Packs records and units into one word when, for @p lines lines whose quantities lie in
/// @p range, records (at most `lines`) and units plus the offset (at most |quantity| summed plus
/// lines x offset) both fit: bits(lines) + bits(that bound) <= 64.
[[nodiscard]] record_packing choose_record_packing(std::int64_t lines, const value_range& range)
{
  record_packing packing;
  if (lines <= 0 || range.abs_sum == ~0ULL) { return packing; }
  const u64 offset = range.min < 0 ? 0ULL - static_cast<u64>(range.min) : 0ULL;
  const unsigned __int128 bound =
    static_cast<unsigned __int128>(range.abs_sum) + static_cast<unsigned __int128>(lines) * offset;
  if (bound >> 64 != 0) { return packing; }
  const int units_bits = bits_for(static_cast<std::uint64_t>(bound));
  if (units_bits + bits_for(static_cast<std::uint64_t>(lines)) > 64) { return packing; }
  packing.width        = 2;
  packing.units_bits   = units_bits;
  packing.units_offset = offset;
  return packing;
}

struct dense_tables {
  accumulator_table table[dense_table_count];
  record_packing packing;
  /// The pair table's cells, when it is carried (one word a cell), and where their carries go.
  carried_layout carried;
  carry_list carries;
  /// With a dense pair table, country and entity totals are its column and row sums
  /// (`derive_totals_from_pairs`): the pass adds each line to neither.
  bool derive_from_pairs = false;
  int shared_words       = 0;
};

/// @brief Code bounds of the dictionaries; a line outside them is an ingest bug, reported, not used.
struct code_bounds {
  std::int32_t entities  = 0;
  std::int32_t countries = 0;
  std::int32_t chips     = 0;
  std::int32_t exporters = 0;
  std::int32_t orders    = 0;
};

/// @brief Adds @p value to a 64-bit shared-memory counter with native 32-bit atomics: a 64-bit
/// shared atomicAdd is a compare-and-swap loop on sm_90, which spins under contention. The low
/// word's add returns the old value, so exactly the add that wraps it carries into the high word;
/// the counter ends as the sum modulo 2^64, as a 64-bit add would (intermediate states may be torn;
/// nothing reads them before the block's barrier).
__device__ __forceinline__ void shared_add(u64* counter, u64 value)
{
  auto* words          = reinterpret_cast<unsigned*>(counter);  // little-endian: low word first
  const auto low       = static_cast<unsigned>(value);
  const auto high      = static_cast<unsigned>(value >> 32);
  const unsigned old   = atomicAdd(words, low);
  const unsigned carry = old + low < old ? 1U : 0U;
  if (high + carry != 0U) { atomicAdd(words + 1, high + carry); }
}

/// @brief Adds a line to cell @p index of @p table (`accumulator_table::width` says which words).
__device__ __forceinline__ void add_line(const accumulator_table& table, const record_packing& packing,
                                         u64* shared_sums, std::int64_t index, u64 units, u64 tpp)
{
  const bool shared = index < table.shared_entries;
  u64* cell = shared ? shared_sums + table.shared_offset + table.width * index : table.d_global + table.width * index;
  auto add  = [shared](u64* word, u64 value) {
    if (shared) {
      shared_add(word, value);
    } else {
      atomicAdd(word, value);
    }
  };
  if (table.width == 3) {
    add(cell, 1ULL);
    add(cell + 1, units);
    add(cell + 2, tpp);
  } else if (table.width == 2) {
    add(cell, packing.packed_line(units));
    add(cell + 1, tpp);
  } else {
    add(cell, tpp);
  }
}

/// Carries a carried pair table may list (32 bytes each): past this bound its cells take two words.
constexpr std::uint64_t max_carries = std::uint64_t{1} << 22;

/// @brief Lists what an add to a carried cell owes its exact sums, when anything.
__device__ __forceinline__ void list_carries(const carry_list& carries, std::int64_t cell, const carry_fix& fix)
{
  if ((fix.records | fix.units | fix.tpp) == 0) { return; }
  const unsigned long long slot = atomicAdd(carries.count, 1ULL);
  if (slot < carries.capacity) {  // past it only by a bug, which the host reports
    carry_entry& entry = carries.entries[slot];
    entry.cell         = static_cast<std::uint64_t>(cell);
    entry.fix          = fix;
  }
}

/// @brief Adds @p value (a line's word, or a block's sums of a cell) to carried cell @p cell:
/// one 64-bit atomic in global memory; in shared memory two 32-bit ones, tpp's half first (a
/// 64-bit shared atomicAdd is a compare-and-swap loop on sm_90), its carry added to the other.
__device__ __forceinline__ void add_carried(const carried_layout& layout, const carry_list& carries, u64* word,
                                            bool shared, std::int64_t cell, u64 value)
{
  u64 old = 0;
  if (shared) {
    auto* halves            = reinterpret_cast<unsigned*>(word);  // little-endian: tpp's half first
    const auto low          = static_cast<unsigned>(value);
    const unsigned old_low  = atomicAdd(halves, low);
    const unsigned carry    = old_low + low < old_low ? 1U : 0U;
    const unsigned old_high = atomicAdd(halves + 1, static_cast<unsigned>(value >> 32) + carry);
    old                     = (static_cast<u64>(old_high) << 32) | old_low;
  } else {
    old = atomicAdd(word, value);
  }
  list_carries(carries, cell, layout.carries(old, value));
}

/// @brief Adds a line's word to pair cell @p cell: in this block's shared copy when privatized.
__device__ __forceinline__ void add_carried_line(const dense_tables& tables, u64* shared_sums, std::int64_t cell,
                                                 u64 word)
{
  const accumulator_table& pairs = tables.table[pair_totals];
  const bool shared              = cell < pairs.shared_entries;
  u64* target = shared ? shared_sums + pairs.shared_offset + cell : pairs.d_global + cell;
  add_carried(tables.carried, tables.carries, target, shared, cell, word);
}

/// @brief The dense (entity, country) table filled one entity range ("slice") at a time. With
/// 100,000 entities and 249 countries the table is 398 MB, six times an H200's L2, and lines
/// arrive in no entity order: added directly, most lines' cells miss L2 (ncu: 65% hits, the
/// pass bound by those atomics). So the dense pass adds lines of slice 0 (the first entities,
/// the busiest: codes follow first appearance) directly, and writes every other line's cell and
/// sums (20 bytes) into its slice's range of a staging area; `add_staged_slice` then adds one
/// slice at a time, whose cells fit in L2. Integer sums in another order are the same sums.
struct pair_slices {
  std::int32_t rows  = 0;  ///< entities per slice; 0: not sliced, every line adds directly
  std::int32_t count = 0;  ///< slices, slice 0 (never staged) included
  std::uint32_t* d_next = nullptr;  ///< per slice: its next free staging slot (slice 0: unused)
  std::uint32_t* d_cell = nullptr;  ///< per staging slot: the line's pair cell
  u64* d_first = nullptr;  ///< its first word: records and units packed, or units alone, or its carried word
  u64* d_tpp   = nullptr;  ///< nullptr for carried cells (their word holds it)
};
/// Slices at most: their counters take 8 bytes each of the dense pass's shared memory.
constexpr std::int32_t max_pair_slices = 256;
/// Lines each thread of the dense pass takes per round: a sliced pass reserves staging slots
/// once per round and slice, so larger rounds mean fewer atomics on those few counters.
constexpr int lines_per_thread = 4;

/// @brief What one line leaves for the sliced pair table: slice 0 means nothing.
struct staged_line {
  std::int32_t slice = 0;
  std::uint32_t rank = 0;  ///< its place among the round's lines of its slice in this block
  std::uint32_t cell = 0;
  u64 first          = 0;
  u64 tpp            = 0;
};

/// @brief Adds line @p i to every dense table (see `dense_totals_kernel`); a line of a staged
/// slice skips the pair table and is returned to be staged (ranked by @p slice_counts).
__device__ __forceinline__ staged_line add_dense_line(const line_columns_view& lines, const rule_tables_view& rules,
                                                      const code_bounds& bounds, const dense_tables& tables,
                                                      const pair_slices& slices, u64* shared_sums,
                                                      std::uint32_t* slice_counts, std::int64_t i, u64& used,
                                                      int& bad_code)
{
  staged_line staged;
  // Read-only loads: they need not wait behind this thread's atomics of the previous line.
  const day_t date            = __ldg(lines.date + i);
  const std::int32_t entity   = __ldg(lines.entity + i);
  const std::uint16_t country = __ldg(lines.country + i);
  const std::uint16_t chip    = __ldg(lines.chip + i);
  const std::int32_t exporter = __ldg(lines.exporter + i);
  const std::uint8_t pathway  = __ldg(lines.pathway + i);
  bool valid = entity >= 0 && entity < bounds.entities && country < bounds.countries && chip < bounds.chips &&
               exporter >= 0 && exporter < bounds.exporters && pathway < pathway_count;
  if (valid && pathway == pathway_lpp) {
    const std::int32_t order = __ldg(lines.order + i);
    valid                    = order >= 0 && order < bounds.orders;
  }
  if (!valid) {
    bad_code = 1;
    return staged;
  }
  if (!is_used(rules, date)) { return staged; }
  ++used;
  const u64 units = static_cast<u64>(__ldg(lines.quantity + i));
  const u64 tpp   = static_cast<u64>(__ldg(lines.tpp + i));
  if (!tables.derive_from_pairs) {
    add_line(tables.table[country_totals], tables.packing, shared_sums, country, units, tpp);
    add_line(tables.table[entity_totals], tables.packing, shared_sums, entity, units, tpp);
  }
  add_line(tables.table[chip_totals], tables.packing, shared_sums, chip, units, tpp);
  add_line(tables.table[exporter_totals], tables.packing, shared_sums, exporter, units, tpp);
  const accumulator_table& pairs = tables.table[pair_totals];
  if (pairs.entries > 0) {
    const std::int64_t cell  = static_cast<std::int64_t>(entity) * bounds.countries + country;
    const std::int32_t slice = slices.rows > 0 ? entity / slices.rows : 0;
    if (slice > 0 && cell >= pairs.shared_entries) {
      staged.slice = slice;
      staged.rank  = atomicAdd(slice_counts + slice, 1U);
      staged.cell  = static_cast<std::uint32_t>(cell);  // dense pair tables have at most 2^31 cells
      staged.first = pairs.carried       ? tables.carried.line_word(units, tpp)
                     : pairs.width == 2 ? tables.packing.packed_line(units)
                                        : units;
      staged.tpp   = tpp;
    } else if (pairs.carried) {
      add_carried_line(tables, shared_sums, cell, tables.carried.line_word(units, tpp));
    } else {
      add_line(pairs, tables.packing, shared_sums, cell, units, tpp);
    }
  }
  if (is_in_window(rules, date) && ((rules.country_cap_pathways >> pathway) & 1U) != 0) {
    add_line(tables.table[country_cap_totals], tables.packing, shared_sums, country, units, tpp);
  }
  return staged;
}

/// @brief The fused pass over all lines: every SPEC §3 total, lines_used, the cap-pathway tpp per
/// country, and a check that every code lies inside its dictionary. Each block takes rounds of
/// `lines_per_thread` x block_size lines; when the pair table is sliced, each round ends by
/// reserving, per slice, one range of staging slots for the block's lines of that slice (its
/// counters sit in shared memory after the privatized tables) and writing them there. Four blocks
/// a multiprocessor, as the 48 KB of shared memory each allows: the registers that leaves (64) hold
/// a round's staged lines without spilling.
__global__ void __launch_bounds__(block_size, 4)
  dense_totals_kernel(line_columns_view lines, rule_tables_view rules, code_bounds bounds,
                      dense_tables tables, pair_slices slices, u64* d_lines_used, u64* d_bad_code)
{
  extern __shared__ u64 shared_sums[];
  using block_reduce = cub::BlockReduce<u64, block_size>;
  __shared__ typename block_reduce::TempStorage reduce_storage;
  auto* slice_counts = reinterpret_cast<std::uint32_t*>(shared_sums + tables.shared_words);
  std::uint32_t* slice_bases = slice_counts + slices.count;

  for (int w = threadIdx.x; w < tables.shared_words; w += blockDim.x) { shared_sums[w] = 0; }
  for (int k = threadIdx.x; k < slices.count; k += blockDim.x) { slice_counts[k] = 0; }
  __syncthreads();

  u64 used     = 0;
  int bad_code = 0;
  const std::int64_t round  = static_cast<std::int64_t>(lines_per_thread) * blockDim.x;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * round;
  // Every thread of a block runs the same rounds: the sliced rounds end in barriers.
  for (std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * round; first < lines.size; first += stride) {
    staged_line staged[lines_per_thread];
#pragma unroll
    for (int k = 0; k < lines_per_thread; ++k) {
      const std::int64_t i = first + static_cast<std::int64_t>(k) * blockDim.x + threadIdx.x;
      if (i < lines.size) {
        staged[k] = add_dense_line(lines, rules, bounds, tables, slices, shared_sums, slice_counts, i, used, bad_code);
      }
    }
    if (slices.rows == 0) { continue; }
    __syncthreads();  // the round's counts are complete
    for (int k = threadIdx.x; k < slices.count; k += blockDim.x) {
      const std::uint32_t count = slice_counts[k];
      if (count != 0) {
        slice_bases[k]  = atomicAdd(slices.d_next + k, count);
        slice_counts[k] = 0;
      }
    }
    __syncthreads();  // the bases are set (and the counts zero for the next round)
#pragma unroll
    for (int k = 0; k < lines_per_thread; ++k) {
      if (staged[k].slice > 0) {
        const std::uint32_t slot = slice_bases[staged[k].slice] + staged[k].rank;
        slices.d_cell[slot]  = staged[k].cell;
        slices.d_first[slot] = staged[k].first;
        if (slices.d_tpp != nullptr) { slices.d_tpp[slot] = staged[k].tpp; }
      }
    }
  }

  bad_code             = __syncthreads_or(bad_code);  // also the barrier before the flush below
  const u64 block_used = block_reduce(reduce_storage).Sum(used);

  // Flush the privatized tables; cells no line of this block touched stay out of the atomics.
#pragma unroll
  for (int t = 0; t < dense_table_count; ++t) {
    const accumulator_table& table = tables.table[t];
    const u64* local = shared_sums + table.shared_offset;
    for (std::int64_t e = threadIdx.x; e < table.shared_entries; e += blockDim.x) {
      // Skip cells whose first word is 0: no line touched them (it counts records, packed or
      // not), or, holding tpp alone, they add nothing; a carried cell of 0 has its carries listed.
      const u64* cell = local + table.width * e;
      if (table.carried) {  // its fields, each within its width, add as a line's do
        if (cell[0] != 0) { add_carried(tables.carried, tables.carries, table.d_global + e, false, e, cell[0]); }
      } else if (cell[0] != 0) {
        for (int w = 0; w < table.width; ++w) { atomicAdd(table.d_global + table.width * e + w, cell[w]); }
      }
    }
  }
  if (threadIdx.x == 0) {
    if (block_used != 0) { atomicAdd(d_lines_used, block_used); }
    if (bad_code != 0) { atomicOr(d_bad_code, 1ULL); }
  }
}

/// @brief Lines per staged slice (slice 0 aside): an upper bound on what the dense pass stages,
/// which also counts lines it will find unused or invalid. A warp's lines of one slice take one
/// shared-memory atomic (a few slices take most lines: one counter each would serialize them).
__global__ void __launch_bounds__(block_size)
  count_lines_by_slice(const std::int32_t* entity, std::int64_t size, std::int32_t rows, std::int32_t slices,
                       std::uint32_t* counts)
{
  __shared__ std::uint32_t local[max_pair_slices];
  for (int k = threadIdx.x; k < max_pair_slices; k += blockDim.x) { local[k] = 0; }
  __syncthreads();
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  // Every thread of a block runs the same rounds, so that whole warps meet at the match.
  for (std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x; first < size; first += stride) {
    const std::int64_t i = first + threadIdx.x;
    std::int32_t slice   = -1;
    if (i < size) {
      const std::int32_t e = __ldg(entity + i);
      if (e >= rows && e / rows < slices) { slice = e / rows; }
    }
    const unsigned peers = __match_any_sync(0xffffffffU, slice);
    if (slice >= 0 && static_cast<int>(threadIdx.x % 32) == __ffs(peers) - 1) {
      atomicAdd(local + slice, static_cast<std::uint32_t>(__popc(peers)));
    }
  }
  __syncthreads();
  for (int k = threadIdx.x; k < slices; k += blockDim.x) {
    if (local[k] != 0) { atomicAdd(counts + k, local[k]); }
  }
}

/// Lines `sample_pair_cells` looks at, spread evenly over the log.
constexpr std::int64_t pair_sample_lines = std::int64_t{1} << 21;

/// @brief Counts in @p distinct the pair cells that @p samples lines, spread over the log, touch
/// (each cell's first touch sets its bit in @p seen, a bitmap of the whole table).
__global__ void __launch_bounds__(block_size)
  sample_pair_cells(const std::int32_t* entity, const std::uint16_t* country, std::int64_t size, std::int64_t samples,
                    std::int32_t entities, std::int32_t countries, std::uint32_t* seen, u64* distinct)
{
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < samples; k += stride) {
    const std::int64_t i = k * size / samples;  // at most 2^21 x 2^31: no overflow
    const std::int32_t e = __ldg(entity + i);
    const std::int32_t c = __ldg(country + i);
    if (e < 0 || e >= entities || c >= countries) { continue; }  // the dense pass reports it
    const std::int64_t cell   = static_cast<std::int64_t>(e) * countries + c;
    const std::uint32_t bit   = 1U << (cell % 32);
    if ((atomicOr(seen + cell / 32, bit) & bit) == 0) { atomicAdd(distinct, 1ULL); }
  }
}

/// @brief Adds the lines the dense pass staged for one slice, slots [begin, *d_end), to the pair
/// table; the slice's cells stay in L2, and the staged words, read once, are loaded evict-first.
__global__ void __launch_bounds__(block_size)
  add_staged_slice(u64* pairs, int width, carried_layout carried, carry_list carries, const std::uint32_t* cell,
                   const u64* first_word, const u64* tpp, std::int64_t begin, const std::uint32_t* d_end)
{
  const std::int64_t end    = *d_end;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t j = begin + static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < end;
       j += stride) {
    const auto c = static_cast<std::int64_t>(__ldcs(cell + j));
    u64* words   = pairs + c * width;
    if (carried.used()) {
      add_carried(carried, carries, words, false, c, __ldcs(first_word + j));
    } else if (width == 2) {
      atomicAdd(words, __ldcs(first_word + j));
      atomicAdd(words + 1, __ldcs(tpp + j));
    } else {
      atomicAdd(words, 1ULL);
      atomicAdd(words + 1, __ldcs(first_word + j));
      atomicAdd(words + 2, __ldcs(tpp + j));
    }
  }
}

/// Entity rows of the pair table each block of `country_totals_from_pairs` sums.
constexpr std::int64_t pair_rows_per_block = 256;

/// @brief Adds pair cell @p cell's sums to @p sum: its `width` words, or a carried cell's fields
/// (records, units and tpp with their offsets: three words of sums either way but for width 2).
__device__ __forceinline__ void add_pair_cell(const u64* pairs, std::int64_t cell, int width,
                                              const carried_layout& carried, u64 (&sum)[3])
{
  if (carried.used()) {
    const carried_sums fields = carried.fields(pairs[cell]);
    sum[0] += fields.records;
    sum[1] += fields.units;
    sum[2] += fields.tpp;
    return;
  }
  for (int w = 0; w < width; ++w) { sum[w] += pairs[cell * width + w]; }
}

/// @brief Country totals as the column sums of the dense pair table (cell entity x countries +
/// country, `width` words each): each block sums a slab of rows per column, then adds its sums.
__global__ void __launch_bounds__(block_size)
  country_totals_from_pairs(const u64* pairs, std::int64_t entities, std::int32_t countries, int width,
                            carried_layout carried, u64* country_totals)
{
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * pair_rows_per_block;
  const std::int64_t last  = first + pair_rows_per_block < entities ? first + pair_rows_per_block : entities;
  const int out_width      = carried.used() ? 3 : width;
  for (std::int32_t c = threadIdx.x; c < countries; c += blockDim.x) {
    u64 sum[3] = {0, 0, 0};
    for (std::int64_t e = first; e < last; ++e) { add_pair_cell(pairs, e * countries + c, width, carried, sum); }
    // An untouched column adds nothing (a carried field may wrap to 0 while the others do not).
    if ((sum[0] | sum[1] | sum[2]) != 0) {
      for (int w = 0; w < out_width; ++w) {
        atomicAdd(country_totals + static_cast<std::int64_t>(c) * out_width + w, sum[w]);
      }
    }
  }
}

/// @brief Entity totals as the row sums of the dense pair table: one warp per entity.
__global__ void __launch_bounds__(block_size)
  entity_totals_from_pairs(const u64* pairs, std::int64_t entities, std::int32_t countries, int width,
                           carried_layout carried, u64* entity_totals)
{
  const unsigned lane       = threadIdx.x % 32;
  const std::int64_t warps  = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  const int out_width       = carried.used() ? 3 : width;
  for (std::int64_t e = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; e < entities;
       e += warps) {
    u64 sum[3] = {0, 0, 0};
    for (std::int32_t c = static_cast<std::int32_t>(lane); c < countries; c += 32) {
      add_pair_cell(pairs, e * countries + c, width, carried, sum);
    }
    for (int w = 0; w < out_width; ++w) {
      for (int offset = 16; offset > 0; offset /= 2) { sum[w] += __shfl_down_sync(0xffffffffU, sum[w], offset); }
      if (lane == 0) { entity_totals[e * out_width + w] = sum[w]; }
    }
  }
}

/// @brief The carries of carried pair cells, summed per cell: cells ascending, each with its fix,
/// and a bitmap of them (a cell whose word wrapped to 0 is occupied by its carries alone).
struct settled_carries {
  std::int64_t count = 0;
  device_buffer<std::uint32_t> d_cells;
  device_buffer<carry_fix> d_fixes;
  device_buffer<std::uint32_t> d_bits;

  [[nodiscard]] const std::uint32_t* bits() const { return count > 0 ? d_bits.data() : nullptr; }
};

/// @brief Adds each carried cell's summed fixes to its entity's and its country's sums (three
/// words each, `country_totals_from_pairs` and `entity_totals_from_pairs`).
__global__ void __launch_bounds__(block_size)
  add_carries_to_totals(const std::uint32_t* cells, const carry_fix* fixes, std::int64_t count,
                        std::int32_t countries, u64* country_totals, u64* entity_totals)
{
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < count; k += stride) {
    const std::int64_t cell = cells[k];
    const u64 sums[3]       = {fixes[k].records, fixes[k].units, fixes[k].tpp};
    u64* country            = country_totals + (cell % countries) * 3;
    u64* entity             = entity_totals + (cell / countries) * 3;
    for (int w = 0; w < 3; ++w) {
      atomicAdd(country + w, sums[w]);
      atomicAdd(entity + w, sums[w]);
    }
  }
}

/// @brief Fills the country and entity tables from the dense pair table the pass filled (exact:
/// sums of sums are the same modular sums). Entity cells are written whole; country cells are
/// added to the zeroed table.
void derive_totals_from_pairs(const dense_tables& tables, const settled_carries& carries, std::int32_t countries,
                              const launch_env& env)
{
  const accumulator_table& pairs   = tables.table[pair_totals];
  const std::int64_t entities      = countries > 0 ? pairs.entries / countries : 0;
  const int width                  = pairs.width;
  if (entities == 0) { return; }
  u64* d_country = tables.table[country_totals].d_global;
  u64* d_entity  = tables.table[entity_totals].d_global;
  const auto slabs = static_cast<unsigned>((entities + pair_rows_per_block - 1) / pair_rows_per_block);
  country_totals_from_pairs<<<slabs, block_size, 0, env.stream>>>(pairs.d_global, entities, countries, width,
                                                                   tables.carried, d_country);
  CAPLEDGER_CHECK_LAUNCH();
  const std::int64_t warps_per_block = block_size / 32;
  const int grid = static_cast<int>(std::min<std::int64_t>((entities + warps_per_block - 1) / warps_per_block,
                                                           static_cast<std::int64_t>(env.sm_count) * 16));
  entity_totals_from_pairs<<<grid, block_size, 0, env.stream>>>(pairs.d_global, entities, countries, width,
                                                                tables.carried, d_entity);
  CAPLEDGER_CHECK_LAUNCH();
  if (carries.count > 0) {  // after the entity sums, which write their cells whole
    add_carries_to_totals<<<grid_for(carries.count, env), block_size, 0, env.stream>>>(
      carries.d_cells.data(), carries.d_fixes.data(), carries.count, countries, d_country, d_entity);
    CAPLEDGER_CHECK_LAUNCH();
  }
}

/// Shared memory (in words) a dense pass may use per block: what a launch may ask for without the
/// cudaFuncSetAttribute opt-in, i.e. 48 KB less the kernel's static shared memory (the BlockReduce
/// storage, 80 bytes on sm_90): static plus dynamic must stay within 48 KB or the launch fails.
[[nodiscard]] std::int64_t dense_shared_budget_words()
{
  cudaFuncAttributes attributes{};
  CAPLEDGER_CUDA_TRY(cudaFuncGetAttributes(&attributes, dense_totals_kernel));
  const std::int64_t default_limit = 48 * 1024 - static_cast<std::int64_t>(attributes.sharedSizeBytes);
  const std::int64_t bytes =
    std::min<std::int64_t>(default_limit, attributes.maxDynamicSharedSizeBytes);
  return std::max<std::int64_t>(bytes, 0) / static_cast<std::int64_t>(sizeof(u64));
}

/// @brief Privatizes tables in shared memory, hottest first, while they fit @p budget_words: the
/// small tables whole, then as long a prefix of the entity codes as fits (a few large entities
/// would otherwise serialize the global atomics on their cells), then the pairs if room is left.
/// When country and entity totals are derived from the pairs, the pass adds to neither: a prefix
/// of the pair cells (the leading entities' rows) takes their place.
void assign_shared_memory(dense_tables& tables, std::int64_t budget_words)
{
  std::int64_t used = 0;
  auto assign = [&](int t, std::int64_t cells) {
    accumulator_table& table = tables.table[t];
    table.shared_offset      = static_cast<int>(used);
    table.shared_entries     = cells;
    used += cells * table.width;
  };
  auto try_whole = [&](std::initializer_list<int> group) {
    std::int64_t words = 0;
    for (const int t : group) { words += tables.table[t].entries * tables.table[t].width; }
    if (words == 0 || used + words > budget_words) { return; }
    for (const int t : group) { assign(t, tables.table[t].entries); }
  };
  // Few countries and chips take most lines each: their cells are the most contended.
  if (tables.derive_from_pairs) {
    try_whole({country_cap_totals});
    try_whole({chip_totals});
    try_whole({exporter_totals});
    const accumulator_table& pairs = tables.table[pair_totals];
    assign(pair_totals, std::min(pairs.entries, (budget_words - used) / pairs.width));
    tables.shared_words = static_cast<int>(used);
    return;
  }
  try_whole({country_totals, country_cap_totals});
  try_whole({chip_totals});
  try_whole({exporter_totals});
  const accumulator_table& entities = tables.table[entity_totals];
  assign(entity_totals, std::min(entities.entries, (budget_words - used) / entities.width));
  if (tables.table[entity_totals].shared_entries == entities.entries) { try_whole({pair_totals}); }
  tables.shared_words = static_cast<int>(used);
}

[[nodiscard]] std::vector<group_total> to_group_totals(const std::vector<u64>& words, const record_packing& packing)
{
  const auto width = static_cast<std::size_t>(packing.width);
  std::vector<group_total> totals(words.size() / width);
  for (std::size_t i = 0; i < totals.size(); ++i) { totals[i] = packing.unpack(words.data() + width * i); }
  return totals;
}

// ---- keyed checks -----------------------------------------------------------------------------

/// @brief Per key: summed tpp, and the first slot (in SPEC order) that matters to the check.
struct sum_and_first {
  std::int64_t sum        = 0;
  std::int64_t first_slot = no_slot;
};

struct sum_and_first_op {
  __host__ __device__ sum_and_first operator()(const sum_and_first& a, const sum_and_first& b) const
  {
    return {a.sum + b.sum, a.first_slot < b.first_slot ? a.first_slot : b.first_slot};
  }
};

struct int64_plus {
  __host__ __device__ std::int64_t operator()(std::int64_t a, std::int64_t b) const { return a + b; }
};

struct key_equal {
  template <typename Key>
  __host__ __device__ bool operator()(Key a, Key b) const { return a == b; }
};

/// @brief (entity, country) as the dense code entity * countries + country, which orders pairs as
/// `entity_country_key` does while spanning far fewer radix bits (25 for 100,000 entities and 249
/// countries, against 33).
struct entity_country_code {
  std::int64_t countries = 1;
  __host__ __device__ std::uint64_t encode(std::int64_t entity, std::int64_t country) const
  {
    return static_cast<std::uint64_t>(entity * countries + country);
  }
  __host__ __device__ std::int64_t entity_of(std::uint64_t code) const
  {
    return static_cast<std::int64_t>(code) / countries;
  }
  __host__ __device__ std::int64_t country_of(std::uint64_t code) const
  {
    return static_cast<std::int64_t>(code) % countries;
  }
};

// A check is a functor over input positions of in-window used lines:
//   operator()(line) -> bool       does the line belong to the check
//   membership_bit                 its bit in the per-slot membership bytes (one gathering pass
//                                  evaluates every check's operator(); the selections then read
//                                  one byte per slot, in order, instead of gathering columns each)
//   sort_key(line)   -> uint64     its key as a dense code, in the order of the reported key, so
//                                  radix sorts cover few bits (in 32-bit keys when they fit)
//   public_key(code) -> int64      the key the aggregation reports (backend.hpp's packing)
//   limit(line)      -> int64      the limit in force for the line (running-total checks)

struct nveu_check {
  static constexpr std::uint8_t membership_bit = 1;
  line_columns_view lines;
  rule_tables_view rules;
  entity_country_code pairs;
  __device__ bool operator()(std::int32_t line) const { return lines.pathway[line] == pathway_nveu; }
  __device__ std::uint64_t sort_key(std::int32_t line) const
  {
    return pairs.encode(lines.entity[line], lines.country[line]);
  }
  __device__ std::int64_t public_key(std::uint64_t code) const
  {
    return entity_country_key(pairs.entity_of(code), pairs.country_of(code));
  }
  __device__ std::int64_t limit(std::int32_t line) const { return nveu_limit(rules, lines.date[line]); }
};

struct lpp_order_check {
  static constexpr std::uint8_t membership_bit = 2;  // the LPP lines, as for lpp_annual_check
  line_columns_view lines;
  rule_tables_view rules;
  __device__ bool operator()(std::int32_t line) const { return lines.pathway[line] == pathway_lpp; }
  __device__ std::uint64_t sort_key(std::int32_t line) const
  {
    return static_cast<std::uint64_t>(lines.order[line]);
  }
  __device__ std::int64_t public_key(std::uint64_t code) const { return static_cast<std::int64_t>(code); }
  __device__ std::int64_t limit(std::int32_t) const { return rules.lpp_per_order_tpp; }
};

/// Keyed by (entity, calendar year); the code is entity * years + (year - first_year), where the
/// in-window lines' years run from first_year over `years` years.
struct lpp_annual_check {
  static constexpr std::uint8_t membership_bit = 2;
  line_columns_view lines;
  rule_tables_view rules;
  std::int64_t first_year = 0;
  std::int64_t years      = 1;
  __device__ bool operator()(std::int32_t line) const { return lines.pathway[line] == pathway_lpp; }
  __device__ std::uint64_t sort_key(std::int32_t line) const
  {
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(lines.entity[line]) * years +
                                      civil_year(lines.date[line]) - first_year);
  }
  __device__ std::int64_t public_key(std::uint64_t code) const
  {
    const auto c = static_cast<std::int64_t>(code);
    return entity_year_key(c / years, c % years + first_year);
  }
  __device__ std::int64_t limit(std::int32_t) const { return rules.lpp_per_consignee_year_tpp; }
};

/// Cap-pathway lines of tier-2 countries (those with a cap); the key is the country code.
struct country_cap_check {
  static constexpr std::uint8_t membership_bit = 4;
  line_columns_view lines;
  rule_tables_view rules;
  __device__ bool operator()(std::int32_t line) const
  {
    return ((rules.country_cap_pathways >> lines.pathway[line]) & 1U) != 0 &&
           rules.country_cap_tpp[lines.country[line]] >= 0;
  }
  __device__ std::uint64_t sort_key(std::int32_t line) const { return lines.country[line]; }
  __device__ std::int64_t public_key(std::uint64_t code) const { return static_cast<std::int64_t>(code); }
  __device__ std::int64_t limit(std::int32_t line) const
  {
    return rules.country_cap_tpp[lines.country[line]];
  }
};

struct prohibited_check {
  static constexpr std::uint8_t membership_bit = 8;
  line_columns_view lines;
  rule_tables_view rules;
  entity_country_code pairs;
  __device__ bool operator()(std::int32_t line) const
  {
    return lines.quantity[line] > 0 && rules.country_tier[lines.country[line]] == 3;
  }
  __device__ std::uint64_t sort_key(std::int32_t line) const
  {
    return pairs.encode(lines.entity[line], lines.country[line]);
  }
  __device__ std::int64_t public_key(std::uint64_t code) const
  {
    return entity_country_key(pairs.entity_of(code), pairs.country_of(code));
  }
  __device__ std::int64_t limit(std::int32_t) const { return INT64_MAX; }
};

/// Keyed by (entity, country, pathway); the code is the pair's code * pathway_count + pathway.
struct unauthorized_check {
  static constexpr std::uint8_t membership_bit = 16;
  line_columns_view lines;
  rule_tables_view rules;
  entity_country_code pairs;
  __device__ bool operator()(std::int32_t line) const
  {
    return lines.quantity[line] > 0 && is_unauthorized(lines, rules, line);
  }
  __device__ std::uint64_t sort_key(std::int32_t line) const
  {
    return pairs.encode(lines.entity[line], lines.country[line]) * pathway_count + lines.pathway[line];
  }
  __device__ std::int64_t public_key(std::uint64_t code) const
  {
    const std::uint64_t pair = code / pathway_count;
    return entity_country_pathway_key(pairs.entity_of(pair), pairs.country_of(pair),
                                      static_cast<std::int64_t>(code % pathway_count));
  }
  __device__ std::int64_t limit(std::int32_t) const { return INT64_MAX; }
};

enum class check_kind {
  running_total,  ///< first line whose running total exceeds its limit
  first_line      ///< first line of the key, whatever its value
};

/// @brief The row a check reports per key, written on the device in the aggregation's own layout
/// so that it is copied to the host as it is.
template <check_kind Kind>
using check_row =
  std::conditional_t<Kind == check_kind::running_total, keyed_running_total, keyed_first_line>;

struct has_crossing {
  __device__ bool operator()(const keyed_running_total& row) const { return row.first_crossing.line >= 0; }
};

/// @brief Keeps the current half of a sorted double buffer in @p first and frees the other half.
template <typename T>
void keep_current(cub::DoubleBuffer<T>& sorted, device_buffer<T>& first, device_buffer<T>& second)
{
  if (sorted.Current() == second.data()) { first.swap(second); }
  second.release();
}

/// @brief Where a keyed check runs and how its stages are timed ("<name>.select", ...).
struct check_env {
  const std::int32_t* d_window_order = nullptr;  ///< in-window used lines in SPEC order
  const std::uint8_t* d_membership   = nullptr;  ///< per slot of that order: the checks' bits
  std::int64_t window_count          = 0;
  line_columns_view lines;
  u64* d_count = nullptr;
  launch_env launch;
  phase_clock* clock = nullptr;
};

struct has_bit {
  std::uint8_t bit = 0;
  __device__ bool operator()(std::uint8_t membership) const { return (membership & bit) != 0; }
};

struct gather_tpp {
  const std::int64_t* tpp = nullptr;
  __device__ std::int64_t operator()(std::int32_t line) const { return tpp[line]; }
};

/// @brief Slot j of a check's key-sorted lines as the reduction's item: the line's tpp, and j
/// itself when the line matters (it crosses; or, for first-line checks, always).
template <typename Check>
struct slot_item {
  Check check;
  const std::int32_t* sorted_lines = nullptr;
  const std::int64_t* running      = nullptr;  ///< null: a first-line check
  __device__ sum_and_first operator()(std::int64_t j) const
  {
    const std::int32_t line = sorted_lines[j];
    const bool counts       = running == nullptr || running[j] > check.limit(line);
    return sum_and_first{check.lines.tpp[line], counts ? j : no_slot};
  }
};

/// @brief `run_keyed_check` with sort keys of type @p Key (32 bits when the codes fit).
template <check_kind Kind, typename Key, typename Check>
std::vector<check_row<Kind>> run_keyed_check_as(const Check& check, const std::string& name, int key_bits,
                                                bool crossing_keys_only, const check_env& at)
{
  const cudaStream_t stream     = at.launch.stream;
  const launch_env& env         = at.launch;
  const line_columns_view lines = at.lines;

  // 1. The check's lines, still in SPEC order (selection is stable).
  device_buffer<std::int32_t> d_lines(static_cast<std::size_t>(at.window_count), stream);
  const auto flags = thrust::make_transform_iterator(at.d_membership, has_bit{Check::membership_bit});
  run_cub(CAPLEDGER_HERE, stream, [&](void* d_temp, std::size_t& temp_bytes) {
    return cub::DeviceSelect::Flagged(d_temp, temp_bytes, at.d_window_order, flags, d_lines.data(),
                                      at.d_count, at.window_count, stream);
  });
  const auto count = static_cast<std::int64_t>(read_scalar(at.d_count, stream));
  at.clock->mark(name + ".select");
  if (count == 0) { return {}; }

  // 2. Group by key. Radix sort is stable, so each key's lines keep SPEC order.
  device_buffer<Key> d_keys(static_cast<std::size_t>(count), stream);
  {
    Key* keys                 = d_keys.data();
    const std::int32_t* order = d_lines.data();
    for_each_index(count, env,
                   [=] __device__(std::int64_t j) { keys[j] = static_cast<Key>(check.sort_key(order[j])); });
  }
  if (key_bits > 0) {
    device_buffer<Key> d_keys_alt(static_cast<std::size_t>(count), stream);
    device_buffer<std::int32_t> d_lines_alt(static_cast<std::size_t>(count), stream);
    cub::DoubleBuffer<Key> keys(d_keys.data(), d_keys_alt.data());
    cub::DoubleBuffer<std::int32_t> values(d_lines.data(), d_lines_alt.data());
    run_cub(CAPLEDGER_HERE, stream, [&](void* d_temp, std::size_t& temp_bytes) {
      return cub::DeviceRadixSort::SortPairs(d_temp, temp_bytes, keys, values, count, 0, key_bits, stream);
    });
    keep_current(keys, d_keys, d_keys_alt);
    keep_current(values, d_lines, d_lines_alt);
  }
  const Key* d_sorted_keys           = d_keys.data();
  const std::int32_t* d_sorted_lines = d_lines.data();
  at.clock->mark(name + ".sort");

  // 3. Running totals per key, in SPEC order.
  device_buffer<std::int64_t> d_running;
  if constexpr (Kind == check_kind::running_total) {
    const auto tpp = thrust::make_transform_iterator(d_sorted_lines, gather_tpp{lines.tpp});
    d_running      = device_buffer<std::int64_t>(static_cast<std::size_t>(count), stream);
    run_cub(CAPLEDGER_HERE, stream, [&](void* d_temp, std::size_t& temp_bytes) {
      return cub::DeviceScan::InclusiveScanByKey(d_temp, temp_bytes, d_sorted_keys, tpp, d_running.data(),
                                                 int64_plus{}, count, key_equal{}, stream);
    });
    at.clock->mark(name + ".scan");
  }

  // 4. Per key: the total, and the first slot that crosses (or simply the first slot).
  device_buffer<Key> d_unique_keys(static_cast<std::size_t>(count), stream);
  device_buffer<sum_and_first> d_per_key(static_cast<std::size_t>(count), stream);
  {
    const auto items = thrust::make_transform_iterator(
      thrust::counting_iterator<std::int64_t>(0), slot_item<Check>{check, d_sorted_lines, d_running.data()});
    run_cub(CAPLEDGER_HERE, stream, [&](void* d_temp, std::size_t& temp_bytes) {
      return cub::DeviceReduce::ReduceByKey(d_temp, temp_bytes, d_sorted_keys, d_unique_keys.data(),
                                            items, d_per_key.data(), at.d_count, sum_and_first_op{},
                                            count, stream);
    });
  }
  const auto key_count = static_cast<std::int64_t>(read_scalar(at.d_count, stream));
  d_keys.release();  // lower the peak: the rows need only the unique keys
  at.clock->mark(name + ".reduce");

  // 5. One row per key, with the crossing (or first) line's position resolved.
  using row = check_row<Kind>;
  device_buffer<row> d_rows(static_cast<std::size_t>(key_count), stream);
  {
    row* rows                    = d_rows.data();
    const Key* unique_keys       = d_unique_keys.data();
    const sum_and_first* per_key = d_per_key.data();
    const std::int64_t* running  = d_running.data();
    const std::int32_t* sorted_lines = d_sorted_lines;  // captured outside the constexpr-ifs
    for_each_index(key_count, env, [=] __device__(std::int64_t r) {
      const sum_and_first reduced = per_key[r];
      const std::int64_t first    = reduced.first_slot;
      const std::int64_t line     = first != no_slot ? sorted_lines[first] : -1;
      const std::int64_t value    = first != no_slot && running != nullptr ? running[first] : 0;
      row out;
      out.key = check.public_key(unique_keys[r]);
      if constexpr (Kind == check_kind::running_total) {
        out.total                = reduced.sum;
        out.first_crossing.line  = line;
        out.first_crossing.value = value;
      } else {
        out.tpp        = reduced.sum;
        out.first_line = line;  // every slot counts: the key's first line
      }
      rows[r] = out;
    });
  }
  std::int64_t row_count = key_count;
  if constexpr (Kind == check_kind::running_total) {
    if (crossing_keys_only) {  // most keys never cross: copy only those that do
      device_buffer<row> d_crossing(static_cast<std::size_t>(key_count), stream);
      run_cub(CAPLEDGER_HERE, stream, [&](void* d_temp, std::size_t& temp_bytes) {
        return cub::DeviceSelect::If(d_temp, temp_bytes, d_rows.data(), d_crossing.data(), at.d_count,
                                     key_count, has_crossing{}, stream);
      });
      row_count = static_cast<std::int64_t>(read_scalar(at.d_count, stream));
      d_rows.swap(d_crossing);
    }
  }
  std::vector<row> rows = to_host(d_rows.data(), static_cast<std::size_t>(row_count), stream);
  at.clock->mark(name + ".results");
  return rows;
}

/// @brief Runs one keyed check over the in-window lines, given in SPEC order.
/// @param key_bits radix bits covering every `check.sort_key`
/// @param crossing_keys_only running totals: report only keys that cross
/// @return one row per key that has lines (or crosses), ascending by key
template <check_kind Kind, typename Check>
std::vector<check_row<Kind>> run_keyed_check(const Check& check, const std::string& name, int key_bits,
                                             const check_env& at, bool crossing_keys_only = false)
{
  if (at.window_count == 0) { return {}; }
  return key_bits <= 32
           ? run_keyed_check_as<Kind, std::uint32_t>(check, name, key_bits, crossing_keys_only, at)
           : run_keyed_check_as<Kind, std::uint64_t>(check, name, key_bits, crossing_keys_only, at);
}

// ---- country-cap crossings by (country, day) bins ---------------------------------------------

/// A country whose running total could cross on more days than this without crossing (returns
/// later in the day pull it back) is left to the sorting check: each such day costs a scan.
constexpr int max_cap_candidate_days = 16;

/// @brief First SPEC-order slot of each window day (`days + 1` entries): a binary search of the
/// date-sorted slots.
struct day_start_of {
  const std::int32_t* order;
  const day_t* date;
  std::int64_t slots;
  day_t first_day;
  std::int64_t* day_start;
  __device__ void operator()(std::int64_t day) const
  {
    std::int64_t low  = 0;
    std::int64_t high = slots;
    while (low < high) {
      const std::int64_t mid = low + (high - low) / 2;
      if (date[order[mid]] - first_day < day) {
        low = mid + 1;
      } else {
        high = mid;
      }
    }
    day_start[day] = low;
  }
};

struct int64_min {
  __device__ std::int64_t operator()(std::int64_t a, std::int64_t b) const { return b < a ? b : a; }
};

/// @brief One block per country: walks the days on the bins, and scans a day's lines in SPEC
/// order only where the running total plus the day's positive tpp could exceed the cap. Writes
/// the crossing line and value (line -1: none); sets @p fallback when a country has more such
/// days than `max_cap_candidate_days`.
__global__ void __launch_bounds__(block_size)
  country_cap_crossings_kernel(const std::int32_t* order, const std::uint8_t* membership,
                               const std::int64_t* day_start, std::int64_t days, const u64* bin_positive,
                               const u64* bin_negative, line_columns_view lines, rule_tables_view rules,
                               std::int64_t* crossing_line, std::int64_t* crossing_value, u64* fallback)
{
  using block_scan   = cub::BlockScan<std::int64_t, block_size>;
  using block_reduce = cub::BlockReduce<std::int64_t, block_size>;
  __shared__ union {
    typename block_scan::TempStorage scan;
    typename block_reduce::TempStorage reduce;
  } temp;
  __shared__ std::int64_t shared_day;
  __shared__ std::int64_t shared_running;
  __shared__ std::int64_t shared_slot;

  const auto country       = static_cast<std::int32_t>(blockIdx.x);
  const std::int64_t limit = rules.country_cap_tpp[country];
  if (limit < 0) { return; }  // not capped: not in the check
  const u64* positives = bin_positive + country * days;
  const u64* negatives = bin_negative + country * days;
  std::int64_t day     = 0;
  std::int64_t running = 0;  // the same in every thread
  for (int candidates = 0;; ++candidates) {
    if (threadIdx.x == 0) {  // the next day on which the running total could exceed the limit
      std::int64_t d = day;
      std::int64_t r = running;
      while (d < days && r + static_cast<std::int64_t>(positives[d]) <= limit) {
        r += static_cast<std::int64_t>(positives[d] - negatives[d]);
        ++d;
      }
      shared_day     = d;
      shared_running = r;
    }
    __syncthreads();
    day     = shared_day;
    running = shared_running;
    if (day >= days) { return; }
    if (candidates == max_cap_candidate_days) {
      if (threadIdx.x == 0) { atomicOr(fallback, 1ULL); }
      return;
    }
    const std::int64_t last = day_start[day + 1];
    for (std::int64_t base = day_start[day]; base < last; base += block_size) {
      const std::int64_t slot = base + threadIdx.x;
      std::int64_t tpp        = 0;
      bool counts             = false;
      if (slot < last && (membership[slot] & country_cap_check::membership_bit) != 0) {
        const std::int32_t line = order[slot];
        if (lines.country[line] == country) {
          tpp    = lines.tpp[line];
          counts = true;
        }
      }
      std::int64_t prefix     = 0;
      std::int64_t tile_total = 0;
      block_scan(temp.scan).InclusiveSum(tpp, prefix, tile_total);
      __syncthreads();  // the scan's storage is the reduce's
      const std::int64_t crossing_slot = counts && running + prefix > limit ? slot : no_slot;
      const std::int64_t first = block_reduce(temp.reduce).Reduce(crossing_slot, int64_min{});
      if (threadIdx.x == 0) { shared_slot = first; }
      __syncthreads();
      const std::int64_t found = shared_slot;
      if (found != no_slot) {
        if (slot == found) {
          crossing_line[country]  = order[slot];
          crossing_value[country] = running + prefix;
        }
        return;
      }
      running += tile_total;
      __syncthreads();  // every thread has read shared_slot and the storage before their reuse
    }
    ++day;
  }
}

/// @brief The country-cap crossings from (country, day) bins; false, with @p out untouched, when
/// the sorting check must run instead (bins too many for the window, or a country with too many
/// days on which it might cross).
/// @param window_first the first window day (every slot's date is in [window_first, window_last])
bool country_cap_crossings_by_day(const country_cap_check& check, const rule_tables_view& rules,
                                  day_t window_first, day_t window_last, std::int32_t countries,
                                  const check_env& at, std::vector<crossing>& out)
{
  const launch_env& env = at.launch;
  const cudaStream_t s  = env.stream;
  const std::int64_t days = static_cast<std::int64_t>(window_last) - window_first + 1;
  const std::int64_t bins = days * countries;
  // Bins cost a word pair each; where they outnumber the lines, sorting the lines is cheaper.
  if (at.window_count == 0 || countries == 0 || bins > std::max<std::int64_t>(at.window_count, 1 << 20)) {
    return false;
  }
  auto d_positive = zeroed_device_buffer<u64>(static_cast<std::size_t>(bins), s);
  auto d_negative = zeroed_device_buffer<u64>(static_cast<std::size_t>(bins), s);
  {
    // Per (country, day) bin: the positive TPP (a bound on any running total inside the day) and
    // the returned TPP; the day's TPP is their difference. One atomic a line, not two for a sum
    // beside the positive part: this pass is bound by its atomics.
    const line_columns_view lines = at.lines;
    u64* positive                 = d_positive.data();
    u64* negative                 = d_negative.data();
    for_each_index(lines.size, env, [=] __device__(std::int64_t i) {
      const day_t date = __ldg(lines.date + i);
      if (date < window_first || date > window_last || !check(static_cast<std::int32_t>(i))) { return; }
      const std::int64_t bin = lines.country[i] * days + (date - window_first);
      const std::int64_t tpp = lines.tpp[i];
      if (tpp > 0) {
        atomicAdd(positive + bin, static_cast<u64>(tpp));
      } else if (tpp < 0) {
        atomicAdd(negative + bin, 0ULL - static_cast<u64>(tpp));
      }
    });
  }
  device_buffer<std::int64_t> d_day_start(static_cast<std::size_t>(days + 1), s);
  for_each_index(days + 1, env,
                 day_start_of{at.d_window_order, at.lines.date, at.window_count, window_first, d_day_start.data()});
  at.clock->mark("country_cap.bins");

  auto d_line  = device_buffer<std::int64_t>(static_cast<std::size_t>(countries), s);
  auto d_value = zeroed_device_buffer<std::int64_t>(static_cast<std::size_t>(countries), s);
  {
    std::int64_t* line = d_line.data();
    for_each_index(countries, env, [=] __device__(std::int64_t c) { line[c] = -1; });
  }
  u64* d_fallback = at.d_count;
  CAPLEDGER_CUDA_TRY(cudaMemsetAsync(d_fallback, 0, sizeof(u64), s));
  country_cap_crossings_kernel<<<static_cast<unsigned>(countries), block_size, 0, s>>>(
    at.d_window_order, at.d_membership, d_day_start.data(), days, d_positive.data(), d_negative.data(), at.lines,
    rules, d_line.data(), d_value.data(), d_fallback);
  CAPLEDGER_CHECK_LAUNCH();
  const bool fell_back           = read_scalar(d_fallback, s) != 0;
  const std::vector<std::int64_t> lines  = to_host(d_line.data(), d_line.size(), s);
  const std::vector<std::int64_t> values = to_host(d_value.data(), d_value.size(), s);
  at.clock->mark("country_cap.crossings");
  if (fell_back) { return false; }
  for (std::size_t c = 0; c < lines.size(); ++c) {
    if (lines[c] >= 0) { out[c] = crossing{lines[c], values[c]}; }
  }
  return true;
}

// ---- (entity, country) pairs ------------------------------------------------------------------

/// @brief One occupied (entity, country) pair, written on the device in the aggregation's layout.
__device__ __forceinline__ pair_total make_pair_total(std::int64_t entity, std::int64_t country,
                                                      std::int64_t records, std::int64_t units,
                                                      std::int64_t tpp)
{
  pair_total pair;
  pair.entity        = static_cast<std::int32_t>(entity);
  pair.country       = static_cast<std::uint16_t>(country);
  pair.total.records = records;
  pair.total.units   = units;
  pair.total.tpp     = tpp;
  return pair;
}

struct group_sums {
  std::int64_t records = 0;
  std::int64_t units   = 0;
  std::int64_t tpp     = 0;
};

struct group_sums_plus {
  __host__ __device__ group_sums operator()(const group_sums& a, const group_sums& b) const
  {
    return {a.records + b.records, a.units + b.units, a.tpp + b.tpp};
  }
};

struct used_line {
  const day_t* date;
  day_t as_of;
  __device__ bool operator()(std::int32_t line) const { return date[line] <= as_of; }
};

[[nodiscard]] __device__ __forceinline__ bool bit_set(const std::uint32_t* bits, std::int64_t index)
{
  return bits != nullptr && ((bits[index / 32] >> (index % 32)) & 1U) != 0;
}

/// A touched cell: its first word holds records (packed or not), or, carried, it has carries.
struct occupied_cell {
  const u64* cells;
  int width;
  const std::uint32_t* carried_bits;  ///< carried cells with carries; nullptr when none
  __device__ bool operator()(std::int32_t cell) const
  {
    return cells[width * static_cast<std::int64_t>(cell)] != 0 || bit_set(carried_bits, cell);
  }
};

/// @brief Position of @p value in the ascending @p values (present: the caller knows it is).
[[nodiscard]] __device__ std::int64_t position_in(const std::uint32_t* values, std::int64_t count,
                                                  std::uint32_t value)
{
  std::int64_t low = 0;
  std::int64_t high = count;
  while (low < high) {
    const std::int64_t middle = low + (high - low) / 2;
    if (values[middle] < value) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  return low;
}

struct add_carry_fixes {
  __host__ __device__ carry_fix operator()(carry_fix a, const carry_fix& b) const
  {
    a += b;
    return a;
  }
};

/// @brief Sums the listed carries of the carried pair table per cell (see `settled_carries`).
/// @throw device_error when the pass listed more carries than their bound (a bug: the sums would
/// be short of them)
[[nodiscard]] settled_carries settle_carries(const dense_tables& tables, std::int64_t cell_count,
                                             const launch_env& env)
{
  settled_carries settled;
  if (!tables.carried.used()) { return settled; }
  const cudaStream_t s = env.stream;
  const std::uint64_t listed = read_scalar(tables.carries.count, s);
  if (listed > tables.carries.capacity) {
    throw device_error("the dense pair table listed " + std::to_string(listed) + " carries, more than their bound " +
                       std::to_string(tables.carries.capacity) + " (a bug in carried_cells.cuh)");
  }
  if (listed == 0) { return settled; }
  const auto n = static_cast<std::int64_t>(listed);
  device_buffer<std::uint32_t> d_keys(static_cast<std::size_t>(n), s);
  device_buffer<std::int32_t> d_index(static_cast<std::size_t>(n), s);
  {
    std::uint32_t* keys        = d_keys.data();
    std::int32_t* index        = d_index.data();
    const carry_entry* entries = tables.carries.entries;
    for_each_index(n, env, [=] __device__(std::int64_t j) {
      keys[j]  = static_cast<std::uint32_t>(entries[j].cell);  // dense pair tables have at most 2^31 cells
      index[j] = static_cast<std::int32_t>(j);
    });
    device_buffer<std::uint32_t> d_keys_alt(static_cast<std::size_t>(n), s);
    device_buffer<std::int32_t> d_index_alt(static_cast<std::size_t>(n), s);
    cub::DoubleBuffer<std::uint32_t> key_buffers(d_keys.data(), d_keys_alt.data());
    cub::DoubleBuffer<std::int32_t> index_buffers(d_index.data(), d_index_alt.data());
    const int key_bits = std::max(bits_for_codes(static_cast<std::uint64_t>(cell_count)), 1);
    run_cub(CAPLEDGER_HERE, s, [&](void* d_temp, std::size_t& temp_bytes) {
      return cub::DeviceRadixSort::SortPairs(d_temp, temp_bytes, key_buffers, index_buffers, n, 0, key_bits, s);
    });
    keep_current(key_buffers, d_keys, d_keys_alt);
    keep_current(index_buffers, d_index, d_index_alt);
  }
  device_buffer<carry_fix> d_items(static_cast<std::size_t>(n), s);
  {
    carry_fix* items           = d_items.data();
    const std::int32_t* index  = d_index.data();
    const carry_entry* entries = tables.carries.entries;
    for_each_index(n, env, [=] __device__(std::int64_t j) { items[j] = entries[index[j]].fix; });
  }
  settled.d_cells = device_buffer<std::uint32_t>(static_cast<std::size_t>(n), s);
  settled.d_fixes = device_buffer<carry_fix>(static_cast<std::size_t>(n), s);
  auto d_count    = zeroed_device_buffer<u64>(1, s);
  run_cub(CAPLEDGER_HERE, s, [&](void* d_temp, std::size_t& temp_bytes) {
    return cub::DeviceReduce::ReduceByKey(d_temp, temp_bytes, d_keys.data(), settled.d_cells.data(), d_items.data(),
                                          settled.d_fixes.data(), d_count.data(), add_carry_fixes{}, n, s);
  });
  settled.count  = static_cast<std::int64_t>(read_scalar(d_count.data(), s));
  settled.d_bits = zeroed_device_buffer<std::uint32_t>(static_cast<std::size_t>((cell_count + 31) / 32), s);
  std::uint32_t* bits        = settled.d_bits.data();
  const std::uint32_t* cells = settled.d_cells.data();
  for_each_index(settled.count, env, [=] __device__(std::int64_t k) {
    atomicOr(bits + cells[k] / 32, 1U << (cells[k] % 32));
  });
  return settled;
}

/// @brief Compacts the dense pair table filled by the dense pass; cell order is (entity, country).
[[nodiscard]] std::vector<pair_total> compact_pair_table(const u64* d_cells, std::int64_t cell_count,
                                                       std::int32_t countries, const record_packing& packing,
                                                       const carried_layout& carried,
                                                       const settled_carries& carries, u64* d_count,
                                                       const launch_env& env)
{
  const cudaStream_t stream = env.stream;
  const int width           = carried.used() ? 1 : packing.width;
  const std::uint32_t* carried_bits = carries.bits();
  device_buffer<std::int32_t> d_occupied(static_cast<std::size_t>(cell_count), stream);
  run_cub(CAPLEDGER_HERE, stream, [&](void* d_temp, std::size_t& temp_bytes) {
    return cub::DeviceSelect::If(d_temp, temp_bytes, thrust::counting_iterator<std::int32_t>(0),
                                 d_occupied.data(), d_count, cell_count,
                                 occupied_cell{d_cells, width, carried_bits}, stream);
  });
  const auto rows = static_cast<std::int64_t>(read_scalar(d_count, stream));
  device_buffer<pair_total> d_rows(static_cast<std::size_t>(rows), stream);
  pair_total* out             = d_rows.data();
  const std::int32_t* cell    = d_occupied.data();
  const std::uint32_t* fixed  = carries.count > 0 ? carries.d_cells.data() : nullptr;
  const carry_fix* fixes      = carries.count > 0 ? carries.d_fixes.data() : nullptr;
  const std::int64_t fixed_count = carries.count;
  for_each_index(rows, env, [=] __device__(std::int64_t r) {
    const std::int64_t c = cell[r];
    group_total total;
    if (carried.used()) {
      carried_sums raw = carried.fields(d_cells[c]);
      if (bit_set(carried_bits, c)) {
        raw += fixes[position_in(fixed, fixed_count, static_cast<std::uint32_t>(c))];
      }
      carried.totals(raw, total.records, total.units, total.tpp);
    } else {
      total = packing.unpack(d_cells + packing.width * c);
    }
    out[r] = make_pair_total(c / countries, c % countries, total.records, total.units, total.tpp);
  });
  return to_host(d_rows.data(), static_cast<std::size_t>(rows), stream);
}

/// @brief `sort_pairs` with sort keys of type @p Key (32 bits when the pair codes fit).
template <typename Key>
[[nodiscard]] std::vector<pair_total> sort_pairs_as(const line_columns_view& lines, const rule_tables_view& rules,
                                                  const entity_country_code& codes, int key_bits,
                                                  u64* d_count, const launch_env& env)
{
  const cudaStream_t stream = env.stream;
  device_buffer<std::int32_t> d_lines(static_cast<std::size_t>(lines.size), stream);
  run_cub(CAPLEDGER_HERE, stream, [&](void* d_temp, std::size_t& temp_bytes) {
    return cub::DeviceSelect::If(d_temp, temp_bytes, thrust::counting_iterator<std::int32_t>(0),
                                 d_lines.data(), d_count, lines.size, used_line{lines.date, rules.as_of},
                                 stream);
  });
  const auto count = static_cast<std::int64_t>(read_scalar(d_count, stream));
  if (count == 0) { return {}; }

  device_buffer<Key> d_keys(static_cast<std::size_t>(count), stream);
  {
    Key* keys                    = d_keys.data();
    const std::int32_t* order    = d_lines.data();
    const std::int32_t* entity   = lines.entity;
    const std::uint16_t* country = lines.country;
    for_each_index(count, env, [=] __device__(std::int64_t j) {
      keys[j] = static_cast<Key>(codes.encode(entity[order[j]], country[order[j]]));
    });
  }
  {
    device_buffer<Key> d_keys_alt(static_cast<std::size_t>(count), stream);
    device_buffer<std::int32_t> d_lines_alt(static_cast<std::size_t>(count), stream);
    cub::DoubleBuffer<Key> keys(d_keys.data(), d_keys_alt.data());
    cub::DoubleBuffer<std::int32_t> values(d_lines.data(), d_lines_alt.data());
    run_cub(CAPLEDGER_HERE, stream, [&](void* d_temp, std::size_t& temp_bytes) {
      return cub::DeviceRadixSort::SortPairs(d_temp, temp_bytes, keys, values, count, 0,
                                             std::max(key_bits, 1), stream);
    });
    keep_current(keys, d_keys, d_keys_alt);
    keep_current(values, d_lines, d_lines_alt);
  }

  device_buffer<Key> d_unique_keys(static_cast<std::size_t>(count), stream);
  device_buffer<group_sums> d_sums(static_cast<std::size_t>(count), stream);
  {
    device_buffer<group_sums> d_items(static_cast<std::size_t>(count), stream);
    group_sums* items             = d_items.data();
    const std::int32_t* order     = d_lines.data();
    const std::int64_t* quantity  = lines.quantity;
    const std::int64_t* tpp       = lines.tpp;
    for_each_index(count, env, [=] __device__(std::int64_t j) {
      const std::int32_t line = order[j];
      items[j]                = group_sums{1, quantity[line], tpp[line]};
    });
    const Key* sorted_keys = d_keys.data();
    run_cub(CAPLEDGER_HERE, stream, [&](void* d_temp, std::size_t& temp_bytes) {
      return cub::DeviceReduce::ReduceByKey(d_temp, temp_bytes, sorted_keys, d_unique_keys.data(),
                                            items, d_sums.data(), d_count, group_sums_plus{}, count,
                                            stream);
    });
  }
  const auto rows = static_cast<std::int64_t>(read_scalar(d_count, stream));
  d_keys.release();  // lower the peak: the rows need only the per-key sums
  d_lines.release();
  device_buffer<pair_total> d_rows(static_cast<std::size_t>(rows), stream);
  pair_total* out          = d_rows.data();
  const Key* unique_keys = d_unique_keys.data();
  const group_sums* sums = d_sums.data();
  for_each_index(rows, env, [=] __device__(std::int64_t r) {
    const std::uint64_t code = unique_keys[r];
    out[r] = make_pair_total(codes.entity_of(code), codes.country_of(code), sums[r].records, sums[r].units,
                             sums[r].tpp);
  });
  return to_host(d_rows.data(), static_cast<std::size_t>(rows), stream);
}

/// @brief Pairs by sort and reduce-by-key, for logs whose dense pair table would be too large.
/// @param key_bits radix bits covering every code of @p codes
[[nodiscard]] std::vector<pair_total> sort_pairs(const line_columns_view& lines,
                                               const rule_tables_view& rules, const entity_country_code& codes,
                                               int key_bits, u64* d_count, const launch_env& env)
{
  return key_bits <= 32 ? sort_pairs_as<std::uint32_t>(lines, rules, codes, key_bits, d_count, env)
                        : sort_pairs_as<std::uint64_t>(lines, rules, codes, key_bits, d_count, env);
}

// ---- the sliced pair table --------------------------------------------------------------------

/// @brief How to slice the dense pair table of @p lines (see `pair_slices`): slices of at most
/// @p slice_bytes (0: a third of the GPU's L2), at most `max_pair_slices` of them. Not sliced
/// when the table is no larger than two slices, or when the lines touch few of its cells: where
/// the cells a sample of 2^21 lines touches fit in one slice (each entity ships to a few
/// countries, as in real logs), they stay in L2 as they are, and staging would only add traffic.
[[nodiscard]] pair_slices plan_pair_slices(const line_columns_view& lines, const dictionary_sizes& sizes, int width,
                                           std::uint64_t slice_bytes, const launch_env& env)
{
  pair_slices slices;
  if (slice_bytes == 0) {
    if (env.l2_bytes <= 0) { return slices; }  // L2 size unknown: slices of nothing would be all staging
    slice_bytes = static_cast<std::uint64_t>(env.l2_bytes) / 3;
  }
  const std::uint64_t cell_bytes  = 8ULL * static_cast<std::uint64_t>(width);
  const std::uint64_t row_bytes   = cell_bytes * static_cast<std::uint64_t>(sizes.countries);
  const std::uint64_t table_bytes = row_bytes * static_cast<std::uint64_t>(sizes.entities);
  if (row_bytes == 0 || table_bytes / 2 <= slice_bytes) { return slices; }

  const cudaStream_t s       = env.stream;
  const std::int64_t cells   = static_cast<std::int64_t>(sizes.entities) * sizes.countries;
  auto d_seen                = zeroed_device_buffer<std::uint32_t>(static_cast<std::size_t>((cells + 31) / 32), s);
  auto d_distinct            = zeroed_device_buffer<u64>(1, s);
  const std::int64_t samples = std::min(lines.size, pair_sample_lines);
  sample_pair_cells<<<grid_for(samples, env), block_size, 0, s>>>(lines.entity, lines.country, lines.size, samples,
                                                                  sizes.entities, sizes.countries, d_seen.data(),
                                                                  d_distinct.data());
  CAPLEDGER_CHECK_LAUNCH();
  // Carried cells (8 bytes) are not sliced where 2^21 sampled cells fit a slice (a third of L2:
  // 20 MB on an H200): there, at 100,000 entities, slicing cost more than it saved (bench/RESULTS.md,
  // session 17), though the log touches far more cells than the sample.
  if (read_scalar(d_distinct.data(), s) * cell_bytes <= slice_bytes) { return slices; }

  const std::int64_t entities = sizes.entities;
  std::int64_t rows           = std::max<std::int64_t>(1, static_cast<std::int64_t>(slice_bytes / row_bytes));
  rows = std::max(rows, (entities + max_pair_slices - 1) / max_pair_slices);
  const std::int64_t count = (entities + rows - 1) / rows;
  if (count < 2) { return slices; }
  slices.rows  = static_cast<std::int32_t>(rows);
  slices.count = static_cast<std::int32_t>(count);
  return slices;
}

/// @brief The staging area of a sliced pair table: each slice's range sized by its lines, the
/// dense pass's slot counters, and the per-slice adds that empty it into the table.
class staged_pair_lines {
 public:
  /// @param plan from `plan_pair_slices`; not sliced (rows 0): nothing is allocated
  /// @param carried the pair table's cells are carried: a staged line is its cell and one word
  staged_pair_lines(const line_columns_view& lines, const pair_slices& plan, bool carried, const launch_env& env)
    : slices_(plan)
  {
    if (slices_.rows == 0) { return; }
    const cudaStream_t s = env.stream;
    auto d_counts        = zeroed_device_buffer<std::uint32_t>(count_of(slices_.count), s);
    count_lines_by_slice<<<grid_for(lines.size, env), block_size, 0, s>>>(lines.entity, lines.size, slices_.rows,
                                                                          slices_.count, d_counts.data());
    CAPLEDGER_CHECK_LAUNCH();
    const std::vector<std::uint32_t> counts = to_host(d_counts.data(), d_counts.size(), s);
    // Slice k's slots are [begin_[k], begin_[k] + counts[k]); slice 0 has none.
    begin_.assign(counts.size() + 1, 0);
    for (std::size_t k = 1; k < counts.size(); ++k) { begin_[k + 1] = begin_[k] + counts[k]; }
    const auto capacity = static_cast<std::size_t>(begin_.back());
    std::vector<std::uint32_t> next(counts.size(), 0);
    for (std::size_t k = 1; k < counts.size(); ++k) { next[k] = static_cast<std::uint32_t>(begin_[k]); }
    d_next_  = to_device(next, s);
    d_cell_  = device_buffer<std::uint32_t>(capacity, s);
    d_first_ = device_buffer<u64>(capacity, s);
    if (!carried) { d_tpp_ = device_buffer<u64>(capacity, s); }
    slices_.d_next  = d_next_.data();
    slices_.d_cell  = d_cell_.data();
    slices_.d_first = d_first_.data();
    slices_.d_tpp   = carried ? nullptr : d_tpp_.data();
  }
  [[nodiscard]] const pair_slices& slices() const { return slices_; }
  /// Adds what the dense pass staged to @p pairs, slice after slice (one launch each, so that
  /// only that slice's cells are in use).
  void add_to(const dense_tables& tables, const launch_env& env) const
  {
    const accumulator_table& pairs = tables.table[pair_totals];
    for (std::int32_t k = 1; k < slices_.count; ++k) {
      const std::int64_t capacity = begin_[k + 1] - begin_[k];
      if (capacity == 0) { continue; }
      add_staged_slice<<<grid_for(capacity, env), block_size, 0, env.stream>>>(
        pairs.d_global, pairs.width, tables.carried, tables.carries, slices_.d_cell, slices_.d_first, slices_.d_tpp,
        begin_[k], slices_.d_next + k);
      CAPLEDGER_CHECK_LAUNCH();
    }
  }

 private:
  pair_slices slices_;
  std::vector<std::int64_t> begin_;  ///< per slice, and one past the last: first staging slot
  device_buffer<std::uint32_t> d_next_;
  device_buffer<std::uint32_t> d_cell_;
  device_buffer<u64> d_first_;
  device_buffer<u64> d_tpp_;
};

// ---- the whole aggregation --------------------------------------------------------------------

/// Device bytes per line of the resident columns.
constexpr std::uint64_t column_bytes_per_line = 37;
/// Device bytes per line the aggregation adds at its peak, a running-total check where every line
/// is its own key (an LPP order per line when `order_id` is absent) with 64-bit keys: the SPEC
/// order (4 B) and membership (1), the sorted positions (4), running totals (8), unique keys (8),
/// per-key sums (16), rows (32) and the crossing rows selected from them (32): 105 B, rounded up
/// for CUB's scratch. (The sparse pair sort peaks lower, at 72 B.)
constexpr std::uint64_t work_bytes_per_line = 112;
constexpr std::uint64_t device_headroom_bytes = 64ULL << 20;

struct window_line {
  const day_t* date;
  day_t first;
  day_t last;
  __device__ bool operator()(std::int32_t line) const
  {
    const day_t d = date[line];
    return d >= first && d <= last;
  }
};

void check_inputs(const shipment_view& lines, const rule_context& rules, const dictionary_sizes& sizes)
{
  CAPLEDGER_EXPECTS(sizes.entities >= 0 && sizes.countries >= 0 && sizes.chips >= 0 &&
                      sizes.exporters >= 0 && sizes.orders >= 0,
                    "dictionary sizes must not be negative");
  CAPLEDGER_EXPECTS(sizes.countries <= 65536 && sizes.chips <= 65536,
                    "country and chip codes are 16-bit");
  const auto countries = static_cast<std::size_t>(sizes.countries);
  const auto entities  = static_cast<std::size_t>(sizes.entities);
  CAPLEDGER_EXPECTS(rules.country_tier.size() >= countries && rules.country_cap_tpp.size() >= countries,
                    "rule_context country tables are smaller than the country dictionary");
  CAPLEDGER_EXPECTS(rules.chip_datacenter.size() >= static_cast<std::size_t>(sizes.chips),
                    "rule_context chip table is smaller than the chip dictionary");
  CAPLEDGER_EXPECTS(rules.entity_is_uveu.size() >= entities && rules.entity_hq_tier1.size() >= entities,
                    "rule_context entity tables are smaller than the entity dictionary");
  CAPLEDGER_EXPECTS(lines.size >= 0, "negative line count");
}

/// Line positions are int32 on the device: one pass takes at most this many lines.
constexpr std::int64_t max_lines_per_pass = INT32_MAX;

/// The bytes this process can still allocate: free on the device, plus what the default pool
/// holds unused (stream-ordered allocations come from it, and it reserves more than it hands out:
/// on an H200 a pass's 4.5 MB of columns took about 35 MB of what `cudaMemGetInfo` calls free).
[[nodiscard]] std::uint64_t free_device_bytes()
{
  std::size_t free_bytes  = 0;
  std::size_t total_bytes = 0;
  CAPLEDGER_CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes));
  const cudaMemPool_t pool = default_pool();
  std::uint64_t reserved = 0;
  std::uint64_t used     = 0;
  CAPLEDGER_CUDA_TRY(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved));
  CAPLEDGER_CUDA_TRY(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used));
  return free_bytes + (reserved > used ? reserved - used : 0);
}

/// Device bytes of the per-code tables of one aggregation, the dense pair table aside.
[[nodiscard]] std::uint64_t dictionary_table_bytes(const dictionary_sizes& sizes)
{
  return 24ULL * (static_cast<std::uint64_t>(sizes.countries) + sizes.entities + sizes.chips + sizes.exporters) +
         8ULL * sizes.countries + 34ULL * static_cast<std::uint64_t>(sizes.entities);  // + the entity rule tables
}

/// How many lines one pass (upload and aggregation) can take in the free GPU memory: the columns
/// and the aggregation's peak per line, after the tables, the headroom, and the eighth of free
/// memory a dense pair table may take.
[[nodiscard]] std::int64_t lines_that_fit(const dictionary_sizes& sizes)
{
  const std::uint64_t free_bytes = free_device_bytes();
  const std::uint64_t reserved   = free_bytes / 8 + dictionary_table_bytes(sizes) + device_headroom_bytes;
  if (reserved >= free_bytes) { return 0; }
  const std::uint64_t lines = (free_bytes - reserved) / (column_bytes_per_line + work_bytes_per_line);
  return static_cast<std::int64_t>(std::min<std::uint64_t>(lines, max_lines_per_pass));
}

/// @param bytes_per_line what each line still needs (columns not yet uploaded count too)
void check_device_memory(std::int64_t line_count, std::uint64_t bytes_per_line, std::uint64_t table_bytes)
{
  const std::uint64_t free_bytes = free_device_bytes();
  const std::uint64_t needed =
    static_cast<std::uint64_t>(line_count) * bytes_per_line + table_bytes + device_headroom_bytes;
  if (needed > free_bytes) {
    throw gpu_memory_short("the GPU backend needs about " + std::to_string(needed >> 20) + " MiB for " +
                           std::to_string(line_count) + " lines, but only " +
                           std::to_string(free_bytes >> 20) + " MiB of GPU memory are free");
  }
}

struct value_range_of_line {
  __device__ value_range operator()(std::int64_t value) const
  {
    return {value, value, value < 0 ? 0ULL - static_cast<std::uint64_t>(value) : static_cast<std::uint64_t>(value)};
  }
};

struct merge_value_ranges {
  __device__ value_range operator()(const value_range& a, const value_range& b) const
  {
    const std::uint64_t sum = a.abs_sum + b.abs_sum;
    return {a.min < b.min ? a.min : b.min, a.max > b.max ? a.max : b.max, sum < a.abs_sum ? ~0ULL : sum};
  }
};

/// @brief The range of @p count values of the device column @p values.
[[nodiscard]] value_range range_of(const std::int64_t* values, std::int64_t count, cudaStream_t s)
{
  auto d_range = zeroed_device_buffer<value_range>(1, s);
  run_cub(CAPLEDGER_HERE, s, [&](void* d_temp, std::size_t& temp_bytes) {
    return cub::DeviceReduce::Reduce(d_temp, temp_bytes, thrust::make_transform_iterator(values, value_range_of_line{}),
                                     d_range.data(), count, merge_value_ranges{}, value_range{}, s);
  });
  return read_scalar(d_range.data(), s);
}

/// @brief The columns of a log in GPU memory: uploaded once, then aggregated any number of times
/// (the public `gpu_columns`; `aggregate` on host columns uploads into one of these first).
class resident_columns final : public gpu_columns {
 public:
  explicit resident_columns(const shipment_view& view)
  {
    // Refuse with a clear message before allocating, rather than fail inside the copies.
    check_device_memory(view.size, column_bytes_per_line, 0);
    const auto count = static_cast<std::size_t>(view.size);
    const cudaStream_t s = stream_.get();
    d_date_     = to_device(view.date, count, s);
    d_entity_   = to_device(view.entity, count, s);
    d_country_  = to_device(view.country, count, s);
    d_chip_     = to_device(view.chip, count, s);
    d_pathway_  = to_device(view.pathway, count, s);
    d_quantity_ = to_device(view.quantity, count, s);
    d_tpp_      = to_device(view.tpp, count, s);
    d_order_    = to_device(view.order, count, s);
    d_exporter_ = to_device(view.exporter, count, s);
    size_       = view.size;
    if (count > 0) {
      quantity_range_ = range_of(d_quantity_.data(), view.size, s);
      tpp_range_      = range_of(d_tpp_.data(), view.size, s);
    }
    // Ready for any stream once this returns.
    stream_.synchronize();
  }
  [[nodiscard]] std::int64_t size() const override { return size_; }
  /// The range of the quantities and of the tpp: bounds the dense pass packs by.
  [[nodiscard]] const value_range& quantities() const { return quantity_range_; }
  [[nodiscard]] const value_range& tpps() const { return tpp_range_; }
  [[nodiscard]] line_columns_view view() const
  {
    line_columns_view lines;
    lines.size     = size_;
    lines.date     = d_date_.data();
    lines.entity   = d_entity_.data();
    lines.country  = d_country_.data();
    lines.chip     = d_chip_.data();
    lines.pathway  = d_pathway_.data();
    lines.quantity = d_quantity_.data();
    lines.tpp      = d_tpp_.data();
    lines.order    = d_order_.data();
    lines.exporter = d_exporter_.data();
    return lines;
  }

 private:
  cuda_stream stream_;  ///< declared first: it outlives the buffers' stream-ordered frees
  std::int64_t size_ = 0;
  value_range quantity_range_;
  value_range tpp_range_;
  device_buffer<day_t> d_date_;
  device_buffer<std::int32_t> d_entity_;
  device_buffer<std::uint16_t> d_country_;
  device_buffer<std::uint16_t> d_chip_;
  device_buffer<std::uint8_t> d_pathway_;
  device_buffer<std::int64_t> d_quantity_;
  device_buffer<std::int64_t> d_tpp_;
  device_buffer<std::int32_t> d_order_;
  device_buffer<std::int32_t> d_exporter_;
};

/// @brief Every aggregate of the lines in @p columns (already in GPU memory).
/// @param timing when given: CUDA-event times of the call and of each phase
[[nodiscard]] aggregation aggregate_resident(const resident_columns& columns, const rule_context& rules,
                                             const dictionary_sizes& sizes, const gpu_tuning& tuning,
                                             gpu_timing* timing = nullptr)
{
  aggregation result = empty_aggregation(sizes);
  const std::int64_t n = columns.size();
  if (n == 0) { return result; }  // every total is zero and every check empty

  const code_bounds bounds{sizes.entities, sizes.countries, sizes.chips, sizes.exporters, sizes.orders};
  const std::int64_t pair_cells = static_cast<std::int64_t>(sizes.entities) * sizes.countries;
  // A dense pair table (one to three atomics a line, one sweep of the table) beats sorting the lines
  // while the table is not much larger than the log, and it may take an eighth of the free GPU memory.
  const record_packing packing  = choose_record_packing(n, columns.quantities());
  const int width                = packing.width;  // words per group-total cell
  std::uint64_t carry_bound      = 0;
  carried_layout carried =
    tuning.pair_units_bits < 0 ? carried_layout{}
                               : choose_carried_layout(n, columns.quantities(), columns.tpps(), tuning.pair_units_bits,
                                                       max_carries, carry_bound);
  // The table and, carried, its carries' list and their settling (a sort and a reduce: 128 bytes a carry).
  const auto pair_table_bytes = [pair_cells](int words, std::uint64_t carries) {
    return 8 * static_cast<std::uint64_t>(words) * static_cast<std::uint64_t>(pair_cells) + carries * 128;
  };
  const std::uint64_t pair_budget = free_device_bytes() / 8;
  if (carried.used() && pair_table_bytes(1, carry_bound) > pair_budget) {  // two words may fit without the list
    carried     = carried_layout{};
    carry_bound = 0;
  }
  const int pair_width           = carried.used() ? 1 : width;
  const std::uint64_t pair_bytes = pair_table_bytes(pair_width, carry_bound);
  // (compact_pair_table numbers the cells in 32 bits; more would need 137 GB free, beyond an H200.)
  const bool dense_pairs =
    pair_cells > 0 && pair_cells <= 4 * n && pair_cells <= INT32_MAX && pair_bytes <= pair_budget;
  if (!dense_pairs) {
    carried     = carried_layout{};
    carry_bound = 0;
  }
  const std::uint64_t table_bytes = dictionary_table_bytes(sizes) + (dense_pairs ? pair_bytes : 0);

  int device = 0;
  CAPLEDGER_CUDA_TRY(cudaGetDevice(&device));
  launch_env env;
  CAPLEDGER_CUDA_TRY(cudaDeviceGetAttribute(&env.sm_count, cudaDevAttrMultiProcessorCount, device));
  CAPLEDGER_CUDA_TRY(cudaDeviceGetAttribute(&env.l2_bytes, cudaDevAttrL2CacheSize, device));
  check_device_memory(n, work_bytes_per_line, table_bytes);

  const pool_retention keep_freed_memory;
  // Declared before every buffer so it outlives their stream-ordered frees.
  const cuda_stream stream;
  env.stream = stream.get();
  const cudaStream_t s = env.stream;
  phase_clock clock(timing != nullptr, s);

  // 1. Rule tables (the columns are resident already).
  const auto count              = static_cast<std::size_t>(n);
  const line_columns_view lines = columns.view();

  std::vector<day_t> nveu_through;
  std::vector<std::int64_t> nveu_tpp;
  for (const nveu_phase& phase : rules.nveu_caps) {
    nveu_through.push_back(phase.through);
    nveu_tpp.push_back(phase.tpp);
  }
  const auto d_country_tier    = to_device(rules.country_tier, s);
  const auto d_country_cap_tpp = to_device(rules.country_cap_tpp, s);
  const auto d_chip_datacenter = to_device(rules.chip_datacenter, s);
  const auto d_entity_is_uveu  = to_device(rules.entity_is_uveu, s);
  const auto d_entity_hq_tier1 = to_device(rules.entity_hq_tier1, s);
  const auto d_entity_nveu     = to_device(rules.entity_nveu_countries, s);
  const auto d_nveu_through    = to_device(nveu_through, s);
  const auto d_nveu_tpp        = to_device(nveu_tpp, s);
  rule_tables_view tables;
  tables.as_of                      = rules.as_of;
  tables.window_start               = rules.window_start;
  tables.window_end                 = rules.window_end;
  tables.country_cap_pathways       = rules.country_cap_pathways;
  tables.country_tier               = d_country_tier.data();
  tables.country_cap_tpp            = d_country_cap_tpp.data();
  tables.chip_datacenter            = d_chip_datacenter.data();
  tables.entity_is_uveu             = d_entity_is_uveu.data();
  tables.entity_hq_tier1            = d_entity_hq_tier1.data();
  tables.entity_nveu_countries      = d_entity_nveu.data();
  tables.entity_nveu_words          = static_cast<std::int64_t>(rules.entity_nveu_countries.size());
  tables.lpp_per_order_tpp          = rules.lpp_per_order_tpp;
  tables.lpp_per_consignee_year_tpp = rules.lpp_per_consignee_year_tpp;
  tables.nveu_through               = d_nveu_through.data();
  tables.nveu_tpp                   = d_nveu_tpp.data();
  tables.nveu_phase_count           = static_cast<int>(nveu_through.size());

  clock.mark("rule_tables");

  // 2. The fused dense pass. Counters: [0] lines used, [1] bad-code flag, [2] selection counts,
  // [3] carries listed.
  auto d_counters       = zeroed_device_buffer<u64>(4, s);
  u64* d_count          = d_counters.data() + 2;
  const auto words_for  = [width](std::size_t cells) { return cells * static_cast<std::size_t>(width); };
  // Summing the pair table's rows and columns reads at most two words a line when it has no more
  // cells than lines, where adding each line to the country and entity cells costs four atomics.
  const bool derive_from_pairs = dense_pairs && pair_cells <= n;
  // Derived from carried cells, country and entity sums are three words with each record's offsets.
  record_packing totals_packing = packing;
  if (derive_from_pairs && carried.used()) {
    totals_packing              = record_packing{};
    totals_packing.units_offset = carried.units_offset;
    totals_packing.tpp_offset   = carried.tpp_offset;
  }
  const int totals_width = totals_packing.width;
  auto d_country_totals  = zeroed_device_buffer<u64>(count_of(sizes.countries) * totals_width, s);
  auto d_cap_totals      = zeroed_device_buffer<u64>(count_of(sizes.countries), s);
  auto d_chip_totals     = zeroed_device_buffer<u64>(words_for(count_of(sizes.chips)), s);
  auto d_entity_totals   = zeroed_device_buffer<u64>(count_of(sizes.entities) * totals_width, s);
  auto d_exporter_totals = zeroed_device_buffer<u64>(words_for(count_of(sizes.exporters)), s);
  auto d_pair_totals     = zeroed_device_buffer<u64>(
    dense_pairs ? static_cast<std::size_t>(pair_cells) * static_cast<std::size_t>(pair_width) : 0, s);
  device_buffer<carry_entry> d_carries(static_cast<std::size_t>(carry_bound), s);
  dense_tables dense;
  dense.packing                   = packing;
  dense.table[country_totals]     = {d_country_totals.data(), sizes.countries, totals_width};
  dense.table[country_cap_totals] = {d_cap_totals.data(), sizes.countries, 1};
  dense.table[chip_totals]        = {d_chip_totals.data(), sizes.chips, width};
  dense.table[entity_totals]      = {d_entity_totals.data(), sizes.entities, totals_width};
  dense.table[exporter_totals]    = {d_exporter_totals.data(), sizes.exporters, width};
  dense.table[pair_totals]        = {d_pair_totals.data(), dense_pairs ? pair_cells : 0, pair_width};
  dense.table[pair_totals].carried = carried.used();
  dense.carried                   = carried;
  dense.carries                   = {d_carries.data(), d_counters.data() + 3, carry_bound};
  dense.derive_from_pairs         = derive_from_pairs;
  std::int32_t slice_count = 0;
  {
    // The staging area (20 bytes a line at most, 12 carried) is freed before the checks, whose
    // per-line work (`work_bytes_per_line`) is larger: the memory check above covers it.
    staged_pair_lines staging(lines,
                              dense_pairs ? plan_pair_slices(lines, sizes, pair_width, tuning.pair_slice_bytes, env)
                                          : pair_slices{},
                              carried.used(), env);
    const pair_slices& slices = staging.slices();
    slice_count               = slices.count;
    clock.mark("pair_slice_counts");
    // Two u32 counters per slice follow the privatized tables in shared memory.
    const std::int64_t slice_words = slices.count;
    assign_shared_memory(dense, dense_shared_budget_words() - slice_words);
    const std::size_t shared_bytes = static_cast<std::size_t>(dense.shared_words + slice_words) * sizeof(u64);
    int blocks_per_sm              = 0;
    CAPLEDGER_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &blocks_per_sm, dense_totals_kernel, block_size, shared_bytes));
    // Each block takes rounds of lines_per_thread lines a thread.
    const int grid = grid_for((n + lines_per_thread - 1) / lines_per_thread, env, std::max(blocks_per_sm, 1));
    dense_totals_kernel<<<grid, block_size, shared_bytes, s>>>(lines, tables, bounds, dense, slices,
                                                               d_counters.data(), d_counters.data() + 1);
    CAPLEDGER_CHECK_LAUNCH();
    clock.mark("dense_totals");
    staging.add_to(dense, env);
    clock.mark("pair_slices");
  }
  // The carries are summed (reading their count waits for the GPU) and the country and entity
  // totals derived here, or, with `carries_after_order`, after the SPEC order (an experiment: see
  // gpu_tuning).
  settled_carries carries;
  const auto settle_and_derive = [&] {
    carries = settle_carries(dense, pair_cells, env);
    d_carries.release();
    clock.mark("pair_carries");
    if (dense.derive_from_pairs) { derive_totals_from_pairs(dense, carries, sizes.countries, env); }
    clock.mark("pair_rows_and_columns");
  };
  if (!tuning.carries_after_order) { settle_and_derive(); }

  // 3. In-window used lines in SPEC order: compacted in input order, then stably sorted by date.
  const day_t window_first = rules.window_start;
  const day_t window_last  = std::min(rules.window_end, rules.as_of);
  device_buffer<std::int32_t> d_window(count, s);
  std::int64_t window_count = 0;
  if (window_first <= window_last) {
    run_cub(CAPLEDGER_HERE, s, [&](void* d_temp, std::size_t& temp_bytes) {
      return cub::DeviceSelect::If(d_temp, temp_bytes, thrust::counting_iterator<std::int32_t>(0),
                                   d_window.data(), d_count, n,
                                   window_line{lines.date, window_first, window_last}, s);
    });
  }
  {
    const std::vector<u64> counters = to_host(d_counters.data(), 3, s);
    if (counters[1] != 0) {
      throw logic_error("GPU backend: a line holds a code outside its dictionary (entity, country, "
                        "chip, exporter, pathway or LPP order)");
    }
    result.lines_used = static_cast<std::int64_t>(counters[0]);
    window_count      = window_first <= window_last ? static_cast<std::int64_t>(counters[2]) : 0;
  }
  const std::uint64_t date_span =
    static_cast<std::uint64_t>(static_cast<std::int64_t>(window_last) - window_first);
  const int date_bits = window_count > 1 ? bits_for(date_span) : 0;
  if (date_bits > 0) {
    const auto items = static_cast<std::size_t>(window_count);
    device_buffer<std::uint32_t> d_day(items, s);
    device_buffer<std::uint32_t> d_day_alt(items, s);
    device_buffer<std::int32_t> d_window_alt(items, s);
    {
      std::uint32_t* day          = d_day.data();
      const std::int32_t* window  = d_window.data();
      const day_t* date           = lines.date;
      for_each_index(window_count, env, [=] __device__(std::int64_t j) {
        day[j] = static_cast<std::uint32_t>(static_cast<std::int64_t>(date[window[j]]) - window_first);
      });
    }
    cub::DoubleBuffer<std::uint32_t> keys(d_day.data(), d_day_alt.data());
    cub::DoubleBuffer<std::int32_t> values(d_window.data(), d_window_alt.data());
    run_cub(CAPLEDGER_HERE, s, [&](void* d_temp, std::size_t& temp_bytes) {
      return cub::DeviceRadixSort::SortPairs(d_temp, temp_bytes, keys, values, window_count, 0,
                                             date_bits, s);
    });
    keep_current(values, d_window, d_window_alt);
  }
  const std::int32_t* d_spec_order = d_window.data();
  clock.mark("spec_order");
  if (tuning.carries_after_order) { settle_and_derive(); }

  // Dense totals back to the host (the dense pass is long done by now; this reads its output).
  result.by_country  = to_group_totals(to_host(d_country_totals.data(), d_country_totals.size(), s), totals_packing);
  result.by_entity   = to_group_totals(to_host(d_entity_totals.data(), d_entity_totals.size(), s), totals_packing);
  result.by_chip     = to_group_totals(to_host(d_chip_totals.data(), d_chip_totals.size(), s), packing);
  result.by_exporter = to_group_totals(to_host(d_exporter_totals.data(), d_exporter_totals.size(), s), packing);
  {
    const std::vector<u64> cap = to_host(d_cap_totals.data(), d_cap_totals.size(), s);
    for (std::size_t c = 0; c < cap.size(); ++c) {
      result.country_cap_total[c] = static_cast<std::int64_t>(cap[c]);
    }
  }
  d_country_totals.release();
  d_entity_totals.release();
  d_chip_totals.release();
  d_exporter_totals.release();
  d_cap_totals.release();
  clock.mark("totals_to_host");

  // 4. Keyed checks, each on dense key codes (see entity_country_code).
  const entity_country_code pair_codes{std::max<std::int64_t>(sizes.countries, 1)};
  const std::uint64_t entity_count = static_cast<std::uint64_t>(std::max(sizes.entities, 1));
  const int pair_bits = bits_for_codes(entity_count * static_cast<std::uint64_t>(pair_codes.countries));
  // Years of in-window lines lie between those of the window's first and last used day.
  const std::int64_t first_year = civil_year(window_first);
  const std::int64_t years      = std::max<std::int64_t>(civil_year(window_last) - first_year + 1, 1);
  const nveu_check nveu{lines, tables, pair_codes};
  const lpp_order_check lpp_order{lines, tables};
  const lpp_annual_check lpp_annual{lines, tables, first_year, years};
  const country_cap_check country_cap{lines, tables};
  const prohibited_check prohibited{lines, tables, pair_codes};
  const unauthorized_check unauthorized{lines, tables, pair_codes};

  // Every check's membership of every slot: evaluated in input order, where reading the columns
  // is coalesced, then gathered into SPEC order one byte per slot (gathering the columns by SPEC
  // order instead took 5x as long on an H200).
  device_buffer<std::uint8_t> d_membership(static_cast<std::size_t>(window_count), s);
  if (window_count > 0) {
    device_buffer<std::uint8_t> d_line_membership(count, s);
    std::uint8_t* line_membership = d_line_membership.data();
    for_each_index(n, env, [=] __device__(std::int64_t i) {
      const auto line   = static_cast<std::int32_t>(i);
      std::uint8_t bits = 0;
      if (nveu(line)) { bits |= nveu_check::membership_bit; }
      if (lpp_order(line)) { bits |= lpp_order_check::membership_bit; }
      if (country_cap(line)) { bits |= country_cap_check::membership_bit; }
      if (prohibited(line)) { bits |= prohibited_check::membership_bit; }
      if (unauthorized(line)) { bits |= unauthorized_check::membership_bit; }
      line_membership[i] = bits;
    });
    std::uint8_t* membership = d_membership.data();
    for_each_index(window_count, env,
                   [=] __device__(std::int64_t j) { membership[j] = line_membership[d_spec_order[j]]; });
  }
  clock.mark("membership");

  const check_env at{d_spec_order, d_membership.data(), window_count, lines, d_count, env, &clock};
  constexpr check_kind running_total = check_kind::running_total;
  constexpr check_kind first_line    = check_kind::first_line;
  result.nveu      = run_keyed_check<running_total>(nveu, "nveu", pair_bits, at);
  result.lpp_order = run_keyed_check<running_total>(
    lpp_order, "lpp_order", bits_for_codes(static_cast<std::uint64_t>(std::max(sizes.orders, 1))), at, true);
  result.lpp_annual = run_keyed_check<running_total>(
    lpp_annual, "lpp_annual", bits_for_codes(entity_count * static_cast<std::uint64_t>(years)), at, true);
  if (!country_cap_crossings_by_day(country_cap, tables, window_first, window_last, sizes.countries, at,
                                    result.country_cap_crossing)) {
    for (const keyed_running_total& row : run_keyed_check<running_total>(
           country_cap, "country_cap", bits_for_codes(static_cast<std::uint64_t>(pair_codes.countries)), at,
           true)) {
      result.country_cap_crossing[static_cast<std::size_t>(row.key)] = row.first_crossing;
    }
  }
  result.prohibited   = run_keyed_check<first_line>(prohibited, "prohibited", pair_bits, at);
  result.unauthorized = run_keyed_check<first_line>(
    unauthorized, "unauthorized",
    bits_for_codes(entity_count * static_cast<std::uint64_t>(pair_codes.countries) * pathway_count), at);
  d_membership.release();

  // 5. (entity, country) pairs.
  result.by_entity_country =
    dense_pairs ? compact_pair_table(d_pair_totals.data(), pair_cells, sizes.countries, packing, carried, carries,
                                     d_count, env)
                : sort_pairs(lines, tables, pair_codes, pair_bits, d_count, env);

  clock.mark("pairs");
  stream.synchronize();
  if (timing != nullptr) {
    *timing             = clock.read();
    timing->pair_slices     = slice_count;
    timing->pair_units_bits = carried.units_bits;
    timing->carried_cells   = carries.count;
  }
  return result;
}

/// @brief The `backend` facade; all state lives in one `aggregate` call. A log larger than one
/// pass is aggregated in parts, each uploaded and aggregated in turn (`aggregate_in_parts`).
class gpu_backend final : public backend {
 public:
  explicit gpu_backend(const gpu_tuning& tuning) : tuning_(tuning) {}
  [[nodiscard]] std::string name() const override { return "gpu"; }
  [[nodiscard]] aggregation aggregate(const shipment_view& lines, const rule_context& rules,
                                      const dictionary_sizes& sizes) override
  {
    check_inputs(lines, rules, sizes);
    const std::int64_t max_lines = tuning_.max_lines_per_pass;
    const std::int64_t per_pass  = max_lines > 0 ? std::min(max_lines, max_lines_per_pass) : lines_that_fit(sizes);
    return aggregate_in_parts(lines, rules, sizes, per_pass, [&](const shipment_view& part) {
      aggregation result = aggregate_resident(resident_columns(part), rules, sizes, tuning_);
      // The pass's columns are freed in their stream's order: return them to the device before
      // the next pass checks what is free.
      CAPLEDGER_CUDA_TRY(cudaDeviceSynchronize());
      release_pooled_memory();
      return result;
    });
  }

 private:
  gpu_tuning tuning_;
};

}  // namespace detail

std::unique_ptr<gpu_columns> upload_to_gpu(const shipment_view& lines)
{
  CAPLEDGER_EXPECTS(lines.size >= 0, "negative line count");
  if (lines.size > detail::max_lines_per_pass) {
    throw device_error("columns uploaded at once hold at most 2^31-1 lines (got " + std::to_string(lines.size) +
                       "); `aggregate` on host columns takes larger logs in parts");
  }
  return std::make_unique<detail::resident_columns>(lines);
}

aggregation aggregate_on_gpu(const gpu_columns& lines, const rule_context& rules, const dictionary_sizes& sizes,
                             gpu_timing* timing, const gpu_tuning& tuning)
{
  const auto* resident = dynamic_cast<const detail::resident_columns*>(&lines);
  CAPLEDGER_EXPECTS(resident != nullptr, "aggregate_on_gpu takes columns made by upload_to_gpu");
  detail::check_inputs(shipment_view{resident->size()}, rules, sizes);
  return detail::aggregate_resident(*resident, rules, sizes, tuning, timing);
}

bool gpu_available(std::string* why)
{
  const auto fail = [why](std::string reason) {
    if (why != nullptr) { *why = std::move(reason); }
    static_cast<void>(cudaGetLastError());  // leave no error behind for later callers
    return false;
  };
  int device_count = 0;
  cudaError_t status = cudaGetDeviceCount(&device_count);
  if (status != cudaSuccess) {
    return fail(std::string("no usable CUDA driver or device (") + cudaGetErrorName(status) + ": " +
                cudaGetErrorString(status) + ")");
  }
  if (device_count == 0) { return fail("no CUDA device found"); }
  int device = 0;
  status     = cudaGetDevice(&device);
  if (status != cudaSuccess) {
    return fail(std::string("cannot select a CUDA device: ") + cudaGetErrorString(status));
  }
  int pools = 0;
  status    = cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device);
  if (status != cudaSuccess || pools == 0) {
    return fail("the CUDA device does not support stream-ordered memory allocation");
  }
  // Loading a kernel proves that this build carries code the device can run (the build targets
  // sm_90; an older GPU fails here rather than at the first launch).
  cudaFuncAttributes attributes{};
  status = cudaFuncGetAttributes(&attributes, detail::dense_totals_kernel);
  if (status != cudaSuccess) {
    return fail(std::string("this build has no kernels for the installed GPU (") +
                cudaGetErrorString(status) + ")");
  }
  // The context exists from here on (cudaFuncGetAttributes may have made it already): the slow
  // start is all inside this call, which `report` runs beside its ingest.
  status = cudaFree(nullptr);
  if (status != cudaSuccess) {
    return fail(std::string("cannot create a CUDA context: ") + cudaGetErrorString(status));
  }
  if (why != nullptr) { why->clear(); }
  return true;
}

bool gpu_likely_present() { return ::access("/dev/nvidiactl", F_OK) == 0; }

std::unique_ptr<backend> make_gpu_backend(const gpu_tuning& tuning)
{
  CAPLEDGER_EXPECTS(tuning.max_lines_per_pass >= 0, "negative max_lines_per_pass");
  std::string why;
  if (!gpu_available(&why)) { throw device_error("the GPU backend is not usable: " + why); }
  return std::make_unique<detail::gpu_backend>(tuning);
}

}  // namespace capledger
