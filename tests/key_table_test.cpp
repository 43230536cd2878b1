/// @file key_table_test.cpp
/// @brief The open-addressing key table against std::unordered_map, with its next tables written
/// ahead on another thread and without.

#include "key_table.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <unordered_map>

namespace {

using capledger::detail::key_table;

/// Adds @p keys random keys (negative ones among them, each drawn about twice) to a table and to
/// a map, with a `reserve` to another size partway (a table written ahead for one size is then
/// not the one wanted), and checks that they hold the same sums.
/// @param[out] taken the tables written ahead that the table took
void check_against_map(bool grow_ahead, std::size_t keys, bool reserve_partway, int& taken)
{
  key_table<std::int64_t> table;
  if (grow_ahead) { table.grow_ahead(); }
  std::unordered_map<std::int64_t, std::int64_t> model;
  std::mt19937_64 random(grow_ahead ? 7 : 8);
  const auto span = static_cast<std::int64_t>(keys);
  for (std::size_t k = 0; model.size() < keys; ++k) {
    const std::int64_t key =
        static_cast<std::int64_t>(random() % static_cast<std::uint64_t>(2 * span)) - span / 2;
    table.at(key) += key + 3;
    model[key] += key + 3;
    if (reserve_partway && model.size() == keys / 2 && table.capacity() < 4 * keys) {
      table.reserve(keys, 4 * keys);
    }
  }
  ASSERT_EQ(table.size(), model.size());
  std::size_t visited = 0;
  table.for_each([&](std::int64_t key, std::int64_t sum) {
    ++visited;
    const auto it = model.find(key);
    ASSERT_NE(it, model.end()) << "key " << key << " was never added";
    EXPECT_EQ(sum, it->second) << "key " << key;
  });
  EXPECT_EQ(visited, model.size());
  for (const auto& [key, sum] : model) {
    const std::int64_t* found = table.find(key);
    ASSERT_NE(found, nullptr) << "key " << key;
    EXPECT_EQ(*found, sum) << "key " << key;
  }
  EXPECT_EQ(table.find(span * 4), nullptr);
  taken = table.tables_taken();
}

int tables_taken(bool grow_ahead, std::size_t keys, bool reserve_partway)
{
  int taken = -1;
  check_against_map(grow_ahead, keys, reserve_partway, taken);
  return taken;
}

TEST(KeyTable, SumsAsAMapDoes)
{
  EXPECT_EQ(tables_taken(false, 100'000, true), 0);
}

/// Tables of 2^16 slots and more are written ahead at 9/16 of their keys (36,864 keys for 2^16):
/// 300,000 keys take the tables of 2^17, 2^18 and 2^19 slots so; with a `reserve` to 2^21 slots at
/// 150,000 keys, the table of 2^19 written ahead is thrown away; 40,000 keys end with a table
/// written ahead and never taken.
TEST(KeyTable, TablesWrittenAheadSumAsAMapDoes)
{
  EXPECT_EQ(tables_taken(true, 300'000, false), 3);
  EXPECT_EQ(tables_taken(true, 300'000, true), 2);
  EXPECT_EQ(tables_taken(true, 40'000, false), 0);
}

}  // namespace
