/// @file external_id_check_test.cpp
/// @brief Repeated ids found out of memory: written to temporary files, sorted, compared by bytes.
#include "external_id_check.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using capledger::detail::external_id_check;
using repeat_list = std::vector<std::pair<std::uint64_t, std::uint64_t>>;

/// Ids by record offset, with hashes chosen by the test (collisions on purpose).
struct fake_log {
  std::map<std::uint64_t, std::string> ids;
  std::map<std::uint64_t, std::uint64_t> hashes;
  void add(std::uint64_t offset, const std::string& id, std::uint64_t hash)
  {
    ids[offset]    = id;
    hashes[offset] = hash;
  }
  mutable std::atomic<std::size_t> reads{0};  ///< ids read by the search
  repeat_list repeats(std::size_t buffered, std::size_t keep = external_id_check::all_repeats) const
  {
    external_id_check check(buffered);
    for (const auto& [offset, hash] : hashes) { check.add(hash, offset); }
    return check.repeats(
        [this](std::uint64_t offset) {
          ++reads;
          return ids.at(offset);
        },
        keep);
  }
};

TEST(ExternalIdCheck, FindsEveryRepeatAndItsFirstUseAcrossSpilledFiles)
{
  fake_log log;
  const std::uint64_t top = std::uint64_t{7} << 56;  // all in one of the 256 files
  log.add(100, "A", top | 1);
  log.add(200, "B", top | 1);  // same hash, another id: not a repeat
  log.add(300, "A", top | 1);  // repeat of 100
  log.add(400, "C", top | 2);
  log.add(500, "B", top | 1);  // repeat of 200
  log.add(600, "A", top | 1);  // repeat of 100 (the first use, not the last)
  log.add(700, "D", std::uint64_t{200} << 56);
  log.add(800, "D", std::uint64_t{200} << 56);  // repeat of 700, in another file
  const repeat_list expected = {{300, 100}, {500, 200}, {600, 100}, {800, 700}};
  for (const std::size_t buffered : {1, 2, 3, 1024}) {  // 1024: nothing is ever written out
    EXPECT_EQ(log.repeats(buffered), expected) << "buffered " << buffered;
  }
}

TEST(ExternalIdCheck, DistinctIdsGiveNoRepeats)
{
  fake_log log;
  for (std::uint64_t i = 0; i < 5000; ++i) {
    log.add(i * 10, "S" + std::to_string(i), (i * 0x9e3779b97f4a7c15ULL) | 1);
  }
  EXPECT_TRUE(log.repeats(7).empty());
}

TEST(ExternalIdCheck, EqualHashesAreComparedInInputOrderWhateverTheAddOrder)
{
  // Offsets added out of order (a file's records are added in order, but the check must not
  // depend on it): the first use is the smallest offset.
  external_id_check check(1);
  const std::map<std::uint64_t, std::string> ids = {{50, "X"}, {10, "X"}, {30, "X"}};
  for (const std::uint64_t offset : {50, 10, 30}) { check.add(42, offset); }
  EXPECT_EQ(check.repeats([&](std::uint64_t offset) { return ids.at(offset); }),
            (repeat_list{{30, 10}, {50, 10}}));
}

// Every part at once (the search runs parts on several threads): 200,000 records over all 256
// files, a repeat every 7th record, and ids that share a hash without being equal every 11th;
// checked against a map of each id's first use.
TEST(ExternalIdCheck, ManyPartsSearchedAtOnceMatchAMapOfFirstUses)
{
  fake_log log;
  std::map<std::string, std::uint64_t> first_use;
  repeat_list expected;
  for (std::uint64_t i = 0; i < 200'000; ++i) {
    const std::uint64_t offset = i * 100;
    std::string id     = "S" + std::to_string(i % 7 == 6 ? i / 2 : i);  // every 7th: an earlier id, mostly
    std::uint64_t hash = std::hash<std::string>{}(id)*0x9e3779b97f4a7c15ULL;
    const auto add     = [&](std::uint64_t at_offset, const std::string& text) {
      const auto [at, fresh] = first_use.emplace(text, at_offset);
      if (!fresh) { expected.emplace_back(at_offset, at->second); }
      log.add(at_offset, text, hash);
    };
    add(offset, id);
    if (i % 11 == 0) { add(offset + 50, id + "-twin"); }  // another id with this id's hash
  }
  ASSERT_GT(expected.size(), 10'000U);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(log.repeats(64), expected);
}

// A second pass that stops at its first bad line, or past --max-rejects N, needs the first one or
// N + 1 repeats: asked for the first K, the search gives the first K of the whole list (a map of
// first uses, as above), whatever the parts' threads find first.
TEST(ExternalIdCheck, TheFirstRepeatsAloneAreTheWholeListsFirst)
{
  fake_log log;
  std::map<std::string, std::uint64_t> first_use;
  repeat_list expected;
  for (std::uint64_t i = 0; i < 50'000; ++i) {
    const std::uint64_t offset = (i * 7919) % 50'000 * 10;  // ids in no order of hash or offset
    const std::string id       = "S" + std::to_string(i % 3 == 2 ? i / 3 : i);
    log.add(offset, id, std::hash<std::string>{}(id)*0x9e3779b97f4a7c15ULL);
  }
  for (const auto& [offset, id] : log.ids) {  // in offset order: the first use is the first seen
    const auto [at, fresh] = first_use.emplace(id, offset);
    if (!fresh) { expected.emplace_back(offset, at->second); }
  }
  ASSERT_GT(expected.size(), 10'000U);
  for (const std::size_t keep : {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{4000},
                                 expected.size(), expected.size() + 5}) {
    const repeat_list want(expected.begin(),
                           expected.begin() + static_cast<std::ptrdiff_t>(std::min(keep, expected.size())));
    EXPECT_EQ(log.repeats(16, keep), want) << "keep " << keep;
  }
}

// A log whose every id repeats (a file given twice): only the first repeat matters to a second
// pass that stops at it, and the search reads few ids again to find it, where the whole list
// reads every one (a 38 M-line log given twice took 75 s and 7.5 GB before it said DUPLICATE_ID).
TEST(ExternalIdCheck, TheFirstRepeatOfALogGivenTwiceReadsFewIds)
{
  fake_log log;
  constexpr std::uint64_t ids = 100'000;
  for (std::uint64_t i = 0; i < ids; ++i) {
    const std::string id     = "S" + std::to_string(i);
    const std::uint64_t hash = std::hash<std::string>{}(id)*0x9e3779b97f4a7c15ULL;
    log.add(i, id, hash);
    log.add(ids + i, id, hash);  // the second copy of the file
  }
  EXPECT_EQ(log.repeats(1024).size(), ids);
  EXPECT_EQ(log.reads.load(), 2 * ids);
  log.reads = 0;
  EXPECT_EQ(log.repeats(1024, 1), (repeat_list{{ids, 0}}));
  EXPECT_LT(log.reads.load(), ids / 20) << "ids read again to find the first repeat";
}

TEST(ExternalIdCheck, AFailureInAnyPartReachesTheCaller)
{
  external_id_check check(1);
  for (std::uint64_t i = 0; i < 1000; ++i) { check.add((i % 256) << 56 | 5, i); }  // four per part
  EXPECT_THROW((void)check.repeats([](std::uint64_t offset) -> std::string {
    if (offset == 777) { throw std::runtime_error("cannot read the id"); }
    return "same";
  }),
               std::runtime_error);
}

}  // namespace
