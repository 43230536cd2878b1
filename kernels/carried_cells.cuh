/// @file carried_cells.cuh
/// @brief The dense (entity, country) table in one 64-bit word a cell, one atomic add a line.
///
/// A cell's records, units and tpp share a word: tpp (plus an offset that makes every line's part
/// non-negative) in the low 32 bits, units (plus its offset) in the next `units_bits`, records in
/// the rest. A line adds its three parts with one 64-bit atomicAdd, where two words a cell took
/// two: the dense pass is bound by those atomics (bench/RESULTS.md, session 13's ceilings). A field
/// may wrap and carry into the next (or, the records field, out of the word); the add that wraps it
/// sees so in the value the atomic returns, and writes what the field lost to a short list of
/// `carry_fix`es. The list is sized by a bound on the carries (`carried_layout::fix_bound`): a
/// field of b bits carries at most (what is added to it) / 2^b times in all cells together. The
/// exact sums are then the fields plus the fixes of their cell.
///
/// Plain arithmetic on both sides of the bus: the host test (tests/carried_cells_test.cpp) drives
/// the same functions through every order of adds that atomics allow.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define CAPLEDGER_HOST_DEVICE __host__ __device__
#else
#define CAPLEDGER_HOST_DEVICE
#endif

namespace capledger::detail {

/// @brief Raw sums of carried cells: records, units plus records x units offset, tpp plus records x
/// tpp offset, each modulo 2^64 (the true values fit 63 bits, so the modular sums are exact).
struct carried_sums {
  std::uint64_t records = 0;
  std::uint64_t units   = 0;
  std::uint64_t tpp     = 0;

  CAPLEDGER_HOST_DEVICE carried_sums& operator+=(const carried_sums& other)
  {
    records += other.records;
    units += other.units;
    tpp += other.tpp;
    return *this;
  }
};

/// What one add owes its cell's exact sums: each field's carry out, less the carry it took in.
using carry_fix = carried_sums;

/// @brief One entry of the list of carries: the cell and what its sums lost.
struct carry_entry {
  std::uint64_t cell = 0;
  carry_fix fix;
};

/// @brief Where a pass's carries go: `capacity` entries from `fix_bound`, and their count (which
/// may pass the capacity only by a bug: the host checks it and refuses the result).
struct carry_list {
  carry_entry* entries       = nullptr;
  unsigned long long* count  = nullptr;
  std::uint64_t capacity     = 0;
};

/// @brief The fields of a carried cell. `units_bits` 0: the table is not carried.
struct carried_layout {
  static constexpr int tpp_bits = 32;  ///< the low half: a shared-memory cell adds it on its own
  int units_bits                = 0;
  std::uint64_t units_offset    = 0;  ///< -(smallest quantity) when negative, else 0
  std::uint64_t tpp_offset      = 0;  ///< -(smallest tpp) when negative, else 0

  [[nodiscard]] CAPLEDGER_HOST_DEVICE bool used() const { return units_bits > 0; }
  [[nodiscard]] CAPLEDGER_HOST_DEVICE int records_bits() const { return 64 - tpp_bits - units_bits; }

  /// The word one line adds (`choose_carried_layout` makes every line's parts fit their fields).
  [[nodiscard]] CAPLEDGER_HOST_DEVICE std::uint64_t line_word(std::uint64_t units, std::uint64_t tpp) const
  {
    return (std::uint64_t{1} << (tpp_bits + units_bits)) + ((units + units_offset) << tpp_bits) + tpp + tpp_offset;
  }

  /// @brief What adding @p value (each field within its width) to a word that held @p old owes
  /// the exact sums. For a shared-memory cell added as two 32-bit halves, @p old is the high
  /// half's old value above the low half's: each half's carries depend on that half alone.
  [[nodiscard]] CAPLEDGER_HOST_DEVICE carry_fix carries(std::uint64_t old, std::uint64_t value) const
  {
    const std::uint64_t low        = 0xffffffffULL;
    const std::uint64_t units_mask = (std::uint64_t{1} << units_bits) - 1;
    const int high_shift           = tpp_bits + units_bits;
    const std::uint64_t tpp_carry  = ((old & low) + (value & low)) >> tpp_bits;
    const std::uint64_t units_carry =
      (((old >> tpp_bits) & units_mask) + ((value >> tpp_bits) & units_mask) + tpp_carry) >> units_bits;
    const std::uint64_t records_carry = ((old >> high_shift) + (value >> high_shift) + units_carry) >> records_bits();
    carry_fix fix;
    fix.tpp     = tpp_carry << tpp_bits;
    fix.units   = (units_carry << units_bits) - tpp_carry;
    fix.records = (records_carry << records_bits()) - units_carry;
    return fix;
  }

  /// The fields of @p word as raw sums (a cell's exact raw sums add its fixes).
  [[nodiscard]] CAPLEDGER_HOST_DEVICE carried_sums fields(std::uint64_t word) const
  {
    carried_sums sums;
    sums.records = word >> (tpp_bits + units_bits);
    sums.units   = (word >> tpp_bits) & ((std::uint64_t{1} << units_bits) - 1);
    sums.tpp     = word & 0xffffffffULL;
    return sums;
  }

  /// @brief Records, units and tpp of raw sums: the offsets of each record taken away (modulo
  /// 2^64, then read as signed: exact, as the true sums fit 63 bits).
  CAPLEDGER_HOST_DEVICE void totals(const carried_sums& raw, std::int64_t& records, std::int64_t& units,
                                    std::int64_t& tpp) const
  {
    records = static_cast<std::int64_t>(raw.records);
    units   = static_cast<std::int64_t>(raw.units - raw.records * units_offset);
    tpp     = static_cast<std::int64_t>(raw.tpp - raw.records * tpp_offset);
  }
};

/// @brief The range of one column's values over a pass's lines.
struct value_range {
  std::int64_t min     = INT64_MAX;
  std::int64_t max     = INT64_MIN;
  std::uint64_t abs_sum = 0;  ///< sum of |value|, saturating at 2^64 - 1
};

/// @brief The carried layout for @p lines lines whose quantities and tpp lie in @p quantity and
/// @p tpp, with @p fix_bound set to the most carries its adds can make; not used (`units_bits`
/// 0) when a line's tpp or units do not fit their fields or the bound passes @p max_fixes.
/// @param units_bits the units field's width, 0 to choose the one with the fewest carries (tests
/// force narrow fields, so that small logs carry often)
[[nodiscard]] inline carried_layout choose_carried_layout(std::int64_t lines, const value_range& quantity,
                                                          const value_range& tpp, int units_bits,
                                                          std::uint64_t max_fixes, std::uint64_t& fix_bound)
{
  using u128 = unsigned __int128;
  carried_layout none;
  fix_bound = 0;
  if (lines <= 0 || quantity.min > quantity.max || tpp.min > tpp.max || quantity.abs_sum == ~0ULL ||
      tpp.abs_sum == ~0ULL) {
    return none;
  }
  const auto offset_of = [](std::int64_t min) { return min < 0 ? 0ULL - static_cast<std::uint64_t>(min) : 0ULL; };
  const std::uint64_t units_offset = offset_of(quantity.min);
  const std::uint64_t tpp_offset   = offset_of(tpp.min);
  // The largest part a line adds to each field, and what all lines add to it.
  const u128 units_max = static_cast<u128>(static_cast<std::uint64_t>(quantity.max) + units_offset);
  const u128 tpp_max   = static_cast<u128>(static_cast<std::uint64_t>(tpp.max) + tpp_offset);
  if (tpp_max >> carried_layout::tpp_bits != 0) { return none; }
  int narrowest = 1;
  while (units_max >> narrowest != 0) { ++narrowest; }
  const u128 n         = static_cast<u128>(lines);
  const u128 units_sum = static_cast<u128>(quantity.abs_sum) + n * units_offset;
  const u128 tpp_sum   = static_cast<u128>(tpp.abs_sum) + n * tpp_offset;
  // A field of b bits that is added S in all, and takes in C carries, carries out at most
  // (S + C) / 2^b times over all cells (each cell's count is the floor of its own share).
  const auto bound_for = [&](int bits) {
    const u128 tpp_carries     = tpp_sum >> carried_layout::tpp_bits;
    const u128 units_carries   = (units_sum + tpp_carries) >> bits;
    const u128 records_carries = (n + units_carries) >> (64 - carried_layout::tpp_bits - bits);
    return tpp_carries + units_carries + records_carries;
  };
  int best = 0;
  u128 best_bound = 0;
  const int last = 64 - carried_layout::tpp_bits - 1;  // records keep at least one bit
  for (int bits = narrowest; bits <= last; ++bits) {
    if (units_bits != 0 && bits != units_bits) { continue; }
    const u128 bound = bound_for(bits);
    if (best == 0 || bound < best_bound) {
      best       = bits;
      best_bound = bound;
    }
  }
  if (best == 0 || best_bound > max_fixes) { return none; }
  carried_layout layout;
  layout.units_bits   = best;
  layout.units_offset = units_offset;
  layout.tpp_offset   = tpp_offset;
  fix_bound           = static_cast<std::uint64_t>(best_bound);
  return layout;
}

}  // namespace capledger::detail
