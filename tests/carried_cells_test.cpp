// The arithmetic of carried pair cells (kernels/carried_cells.cuh), which the GPU's dense pass
// runs with atomics: here every order of adds that atomics allow is played out on the host, and
// the cells' fields plus their fixes must give the exact sums, with no more fixes than the bound
// the list is sized by.
#include "../kernels/carried_cells.cuh"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <random>
#include <vector>

namespace capledger::detail {
namespace {

struct test_line {
  std::int64_t cell;
  std::int64_t quantity;
  std::int64_t tpp;
};

value_range range_of(const std::vector<test_line>& lines, std::int64_t test_line::*field)
{
  value_range range;
  for (const test_line& line : lines) {
    const std::int64_t v = line.*field;
    range.min            = std::min(range.min, v);
    range.max            = std::max(range.max, v);
    range.abs_sum += v < 0 ? 0ULL - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
  }
  return range;
}

/// The cells as the GPU leaves them: one word each, and the list of fixes.
struct carried_table {
  std::vector<std::uint64_t> words;
  std::vector<carry_entry> fixes;
};

void add_carried(const carried_layout& layout, carried_table& table, std::int64_t cell, std::uint64_t value)
{
  const std::uint64_t old = table.words[static_cast<std::size_t>(cell)];
  table.words[static_cast<std::size_t>(cell)] += value;  // atomicAdd: returns old
  const carry_fix fix = layout.carries(old, value);
  if ((fix.records | fix.units | fix.tpp) != 0) { table.fixes.push_back({static_cast<std::uint64_t>(cell), fix}); }
}

/// Plays the dense pass: lines in a random order, cells below @p shared_cells summed per "block"
/// in a word of two 32-bit halves (the low halves of a block's adds in one random order, the high
/// halves in another: two atomics interleave so), then each block's words flushed to the table.
carried_table play(const carried_layout& layout, const std::vector<test_line>& lines, std::int64_t cells,
                   std::int64_t shared_cells, int blocks, std::mt19937_64& rng)
{
  carried_table table;
  table.words.assign(static_cast<std::size_t>(cells), 0);
  std::vector<std::size_t> order(lines.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<std::vector<std::size_t>> block_lines(static_cast<std::size_t>(blocks));
  for (const std::size_t i : order) {
    const test_line& line = lines[i];
    if (line.cell < shared_cells) {
      block_lines[rng() % block_lines.size()].push_back(i);
      continue;
    }
    add_carried(layout, table, line.cell, layout.line_word(static_cast<std::uint64_t>(line.quantity),
                                                           static_cast<std::uint64_t>(line.tpp)));
  }
  for (const std::vector<std::size_t>& mine : block_lines) {
    std::vector<std::uint32_t> low(static_cast<std::size_t>(shared_cells), 0);
    std::vector<std::uint32_t> high(static_cast<std::size_t>(shared_cells), 0);
    std::vector<std::uint32_t> old_low(mine.size());
    std::vector<std::uint32_t> high_part(mine.size());
    for (std::size_t k = 0; k < mine.size(); ++k) {  // the low halves, in this block's order
      const test_line& line = lines[mine[k]];
      const std::uint64_t value =
        layout.line_word(static_cast<std::uint64_t>(line.quantity), static_cast<std::uint64_t>(line.tpp));
      auto& word   = low[static_cast<std::size_t>(line.cell)];
      old_low[k]   = word;
      word         = static_cast<std::uint32_t>(word + value);
      const auto carry = static_cast<std::uint32_t>((std::uint64_t{old_low[k]} + (value & 0xffffffffULL)) >> 32);
      high_part[k] = static_cast<std::uint32_t>(value >> 32) + carry;
    }
    std::vector<std::size_t> high_order(mine.size());
    std::iota(high_order.begin(), high_order.end(), 0);
    std::shuffle(high_order.begin(), high_order.end(), rng);
    for (const std::size_t k : high_order) {  // the high halves, in another order
      const test_line& line = lines[mine[k]];
      const std::uint64_t value =
        layout.line_word(static_cast<std::uint64_t>(line.quantity), static_cast<std::uint64_t>(line.tpp));
      auto& word            = high[static_cast<std::size_t>(line.cell)];
      const std::uint32_t old_high = word;
      word                  = word + high_part[k];
      const carry_fix fix   = layout.carries((std::uint64_t{old_high} << 32) | old_low[k], value);
      if ((fix.records | fix.units | fix.tpp) != 0) {
        table.fixes.push_back({static_cast<std::uint64_t>(line.cell), fix});
      }
    }
    for (std::int64_t c = 0; c < shared_cells; ++c) {  // the flush
      const std::uint64_t word =
        (std::uint64_t{high[static_cast<std::size_t>(c)]} << 32) | low[static_cast<std::size_t>(c)];
      if (word != 0) { add_carried(layout, table, c, word); }
    }
  }
  return table;
}

struct exact_total {
  std::int64_t records = 0;
  std::int64_t units   = 0;
  std::int64_t tpp     = 0;
  bool operator==(const exact_total& o) const { return records == o.records && units == o.units && tpp == o.tpp; }
};

/// Checks the table's cells against the exact sums of @p lines; the fixes against @p bound.
void expect_exact(const carried_layout& layout, const carried_table& table, const std::vector<test_line>& lines,
                  std::uint64_t bound, const std::string& context)
{
  std::vector<exact_total> want(table.words.size());
  for (const test_line& line : lines) {
    exact_total& t = want[static_cast<std::size_t>(line.cell)];
    ++t.records;
    t.units += line.quantity;
    t.tpp += line.tpp;
  }
  std::vector<carried_sums> raw(table.words.size());
  for (std::size_t c = 0; c < raw.size(); ++c) { raw[c] = layout.fields(table.words[c]); }
  for (const carry_entry& entry : table.fixes) { raw[entry.cell] += entry.fix; }
  for (std::size_t c = 0; c < raw.size(); ++c) {
    exact_total got;
    layout.totals(raw[c], got.records, got.units, got.tpp);
    ASSERT_TRUE(got == want[c]) << context << " cell " << c << ": records " << got.records << "/" << want[c].records
                                << " units " << got.units << "/" << want[c].units << " tpp " << got.tpp << "/"
                                << want[c].tpp;
  }
  EXPECT_LE(table.fixes.size(), bound) << context;
}

// Narrow fields over a few cells carry on most lines: every field wraps, records out of the
// word too, through direct adds, shared halves in two orders and flushes; quantities and tpp
// negative (returns) and up to their fields' limits.
TEST(CarriedCells, FieldsPlusFixesAreTheExactSumsInAnyOrderOfAdds)
{
  std::mt19937_64 rng(20261127);
  std::size_t carried_cells_seen = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const std::int64_t cells        = 1 + static_cast<std::int64_t>(rng() % 12);
    const std::int64_t shared_cells = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(cells + 1));
    const auto count                = static_cast<std::size_t>(1 + rng() % 3000);
    const int quantity_bits         = 1 + static_cast<int>(rng() % 28);
    const int tpp_bits              = 1 + static_cast<int>(rng() % 30);
    const bool returns              = rng() % 2 == 0;
    std::vector<test_line> lines(count);
    for (test_line& line : lines) {
      line.cell     = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(cells));
      line.quantity = static_cast<std::int64_t>(rng() % (std::uint64_t{1} << quantity_bits));
      line.tpp      = static_cast<std::int64_t>(rng() % (std::uint64_t{1} << tpp_bits));
      if (returns && rng() % 4 == 0) {
        line.quantity = -line.quantity;
        line.tpp      = -line.tpp;
      }
    }
    const value_range quantity = range_of(lines, &test_line::quantity);
    const value_range tpp      = range_of(lines, &test_line::tpp);
    std::uint64_t bound        = 0;
    // The narrowest units field the lines allow (the most carries), or the one chosen freely.
    const bool narrow = trial % 3 != 0;
    carried_layout layout =
      choose_carried_layout(static_cast<std::int64_t>(count), quantity, tpp, 0, ~0ULL, bound);
    if (!layout.used()) { continue; }  // tpp + offset past 32 bits: the two-word cells take these
    if (narrow) {
      int bits = 1;
      while ((static_cast<std::uint64_t>(quantity.max) + layout.units_offset) >> bits != 0) { ++bits; }
      layout = choose_carried_layout(static_cast<std::int64_t>(count), quantity, tpp, bits, ~0ULL, bound);
      ASSERT_TRUE(layout.used());
      ASSERT_EQ(layout.units_bits, bits);
    }
    const carried_table table = play(layout, lines, cells, shared_cells, 1 + static_cast<int>(rng() % 4), rng);
    carried_cells_seen += table.fixes.empty() ? 0 : 1;
    expect_exact(layout, table, lines, bound,
                 "trial " + std::to_string(trial) + " units_bits " + std::to_string(layout.units_bits));
    if (::testing::Test::HasFailure()) { return; }
  }
  EXPECT_GT(carried_cells_seen, 100U) << "too few trials carried at all";
}

// Records carry out of the word when a cell takes more lines than its records field holds.
TEST(CarriedCells, RecordsCarryOutOfTheWord)
{
  std::vector<test_line> lines(5000, test_line{0, (1LL << 29) - 1, 1});
  std::uint64_t bound = 0;
  const carried_layout layout = choose_carried_layout(5000, range_of(lines, &test_line::quantity),
                                                      range_of(lines, &test_line::tpp), 29, ~0ULL, bound);
  ASSERT_TRUE(layout.used());
  ASSERT_EQ(layout.records_bits(), 3);  // 8 records a field: 624 carries out of the word
  std::mt19937_64 rng(7);
  const carried_table table = play(layout, lines, 1, 0, 1, rng);
  expect_exact(layout, table, lines, bound, "one cell");
  EXPECT_GE(table.fixes.size(), 624U);
}

// The lines of GpuEquivalence.PairCellWrappedToZeroIsStillReported wrap their cell's word to 0,
// directly and in a shared cell: the cell's sums are then all in its fixes.
TEST(CarriedCells, ThreeLinesWrapTheWordToZero)
{
  const std::vector<test_line> lines = {
      {0, 1LL << 30, 1LL << 31}, {0, 1LL << 29, 1LL << 30}, {0, (1LL << 29) - 1, 1LL << 30}};
  std::uint64_t bound         = 0;
  const carried_layout layout = choose_carried_layout(3, range_of(lines, &test_line::quantity),
                                                      range_of(lines, &test_line::tpp), 31, ~0ULL, bound);
  ASSERT_TRUE(layout.used());
  for (const std::int64_t shared_cells : {0, 1}) {
    std::mt19937_64 rng(3);
    const carried_table table = play(layout, lines, 1, shared_cells, 1, rng);
    EXPECT_EQ(table.words[0], 0U) << shared_cells;
    expect_exact(layout, table, lines, bound, "shared_cells " + std::to_string(shared_cells));
  }
}

TEST(CarriedCells, LayoutRefusesLinesThatDoNotFitAndBoundsPastTheLimit)
{
  std::uint64_t bound = 1;
  value_range quantity{-3, 64, 1000};
  value_range tpp{-100, (1LL << 32) - 101, 5000};  // tpp + 100 fits 32 bits exactly
  carried_layout layout = choose_carried_layout(100, quantity, tpp, 0, ~0ULL, bound);
  ASSERT_TRUE(layout.used());
  EXPECT_EQ(layout.units_offset, 3U);
  EXPECT_EQ(layout.tpp_offset, 100U);
  EXPECT_GE(layout.units_bits, 7);  // 64 + 3 needs 7 bits
  tpp.max += 1;  // one past
  layout = choose_carried_layout(100, quantity, tpp, 0, ~0ULL, bound);
  EXPECT_FALSE(layout.used());
  EXPECT_EQ(bound, 0U);
  // Units that leave the records field no bit.
  tpp.max = 1000;
  quantity.max = INT64_MAX / 2;
  EXPECT_FALSE(choose_carried_layout(100, quantity, tpp, 0, ~0ULL, bound).used());
  // A units field narrower than the largest line.
  quantity.max = 64;
  EXPECT_FALSE(choose_carried_layout(100, quantity, tpp, 6, ~0ULL, bound).used());
  EXPECT_TRUE(choose_carried_layout(100, quantity, tpp, 7, ~0ULL, bound).used());
  // The bound: units add 1000 + 100 x 3 to a 7-bit field, carrying at most 1300 / 128 = 10 times;
  // tpp adds 5000 + 100 x 100 to 32 bits and records 110 to 25, neither carrying.
  ASSERT_TRUE(choose_carried_layout(100, quantity, tpp, 7, ~0ULL, bound).used());
  EXPECT_EQ(bound, 10U);
  EXPECT_TRUE(choose_carried_layout(100, quantity, tpp, 7, 10, bound).used());
  EXPECT_FALSE(choose_carried_layout(100, quantity, tpp, 7, 9, bound).used());
  // Chosen freely, the units field is wide enough not to carry at all.
  ASSERT_TRUE(choose_carried_layout(100, quantity, tpp, 0, ~0ULL, bound).used());
  EXPECT_EQ(bound, 0U);
}

}  // namespace
}  // namespace capledger::detail
