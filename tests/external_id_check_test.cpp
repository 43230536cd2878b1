/// @file external_id_check_test.cpp
/// @brief Repeated ids found out of memory: written to temporary files, sorted, compared by bytes.
#include "external_id_check.hpp"
#include "test_support.hpp"

#include <capledger/error.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using capledger::detail::external_id_check;
using capledger::detail::repeat_stream;
using repeat_list = std::vector<std::pair<std::uint64_t, std::uint64_t>>;

/// Every repeat @p stream holds, in its order.
repeat_list read_all(repeat_stream& stream)
{
  repeat_list all;
  std::uint64_t at = 0;
  while (const auto next = stream.next_at_or_after(at)) {
    all.push_back(*next);
    at = next->first + 1;
  }
  return all;
}

repeat_list read_all(repeat_stream&& stream)
{
  return read_all(stream);
}

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
  /// The search's stream. @param in_memory repeats held in memory before they go to disk
  repeat_stream stream(std::size_t buffered, std::size_t keep = external_id_check::all_repeats,
                       std::size_t in_memory = external_id_check::default_repeats_in_memory) const
  {
    external_id_check check(buffered, in_memory);
    for (const auto& [offset, hash] : hashes) { check.add(hash, offset); }
    return check.repeats(
        [this](std::uint64_t offset) {
          ++reads;
          return ids.at(offset);
        },
        keep);
  }
  repeat_list repeats(std::size_t buffered, std::size_t keep = external_id_check::all_repeats,
                      std::size_t in_memory = external_id_check::default_repeats_in_memory) const
  {
    return read_all(stream(buffered, keep, in_memory));
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
  EXPECT_EQ(read_all(check.repeats([&](std::uint64_t offset) { return ids.at(offset); })),
            (repeat_list{{30, 10}, {50, 10}}));
}

/// 200,000 records over all 256 files, a repeat every 7th record, and ids that share a hash
/// without being equal every 11th, into @p log; @p expected gets the repeats from a map of each
/// id's first use.
void many_part_log(fake_log& log, repeat_list& expected)
{
  std::map<std::string, std::uint64_t> first_use;
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
  std::sort(expected.begin(), expected.end());
}

// Every part at once (the search runs parts on several threads), checked against a map of each
// id's first use.
TEST(ExternalIdCheck, ManyPartsSearchedAtOnceMatchAMapOfFirstUses)
{
  repeat_list expected;
  fake_log log;
  many_part_log(log, expected);
  ASSERT_GT(expected.size(), 10'000U);
  EXPECT_EQ(log.repeats(64), expected);
}

// Past their memory budget the repeats go to a temporary file in sorted runs, merged as they are
// read: the same list as in memory (and as a map of first uses), with runs of one pair or many,
// read back one pair or many at a time; and asked for at offsets that skip some, the same answers
// as a search of the whole list.
TEST(ExternalIdCheck, RepeatsPastTheMemoryBudgetAreMergedFromSortedRunsOnDisk)
{
  fake_log small;  // the first test's log: four repeats, two of them in one part
  const std::uint64_t top = std::uint64_t{7} << 56;
  for (const auto& [offset, id, hash] : std::vector<std::tuple<std::uint64_t, std::string, std::uint64_t>>{
           {100, "A", top | 1},
           {200, "B", top | 1},
           {300, "A", top | 1},
           {400, "C", top | 2},
           {500, "B", top | 1},
           {600, "A", top | 1},
           {700, "D", std::uint64_t{200} << 56},
           {800, "D", std::uint64_t{200} << 56}}) {
    small.add(offset, id, hash);
  }
  const repeat_list small_expected = {{300, 100}, {500, 200}, {600, 100}, {800, 700}};
  for (const std::size_t in_memory : {1, 2, 3}) {
    for (const std::size_t buffered : {1, 1024}) {
      SCOPED_TRACE("in memory " + std::to_string(in_memory) + ", buffered " + std::to_string(buffered));
      repeat_stream stream = small.stream(buffered, external_id_check::all_repeats, in_memory);
      EXPECT_GT(stream.runs_on_disk(), 0U);
      EXPECT_EQ(read_all(stream), small_expected);
    }
  }

  repeat_list expected;
  fake_log log;
  many_part_log(log, expected);
  const repeat_list in_memory_list = read_all(log.stream(64));
  ASSERT_EQ(in_memory_list, expected);
  std::mt19937_64 random(5);
  for (const std::size_t in_memory :
       {std::size_t{1}, std::size_t{1000}, std::size_t{30'000}, expected.size()}) {
    SCOPED_TRACE("in memory " + std::to_string(in_memory));
    repeat_stream stream = log.stream(64, external_id_check::all_repeats, in_memory);
    EXPECT_EQ(stream.runs_on_disk() > 0, in_memory < expected.size());
    EXPECT_EQ(read_all(stream), in_memory_list);
    // Offsets in increasing order, some repeats among them, many skipped.
    repeat_stream skipping = log.stream(64, external_id_check::all_repeats, in_memory);
    for (std::uint64_t at = 0; at < 20'000'000; at += 1 + random() % 5000) {
      const auto want = std::lower_bound(expected.begin(), expected.end(), std::pair(at, std::uint64_t{0}));
      const auto got  = skipping.next_at_or_after(at);
      ASSERT_EQ(got.has_value(), want != expected.end()) << at;
      if (got) { ASSERT_EQ(*got, *want) << at; }
    }
    EXPECT_THROW((void)skipping.next_at_or_after(0), capledger::logic_error)
        << "an offset asked out of order";
  }
}

// Asked for more first repeats than memory holds, the search finds them all, as without a limit,
// on disk: a second pass stops at the same line whatever follows it.
TEST(ExternalIdCheck, MoreFirstRepeatsThanMemoryHoldsAreFoundAsAllOfThem)
{
  repeat_list expected;
  fake_log log;
  many_part_log(log, expected);
  for (const std::size_t keep : {std::size_t{999}, std::size_t{1000}, std::size_t{4000}}) {
    repeat_stream stream = log.stream(64, keep, 1000);
    EXPECT_EQ(stream.runs_on_disk() > 0, keep >= 1000) << keep;
    const repeat_list got = read_all(stream);
    EXPECT_EQ(got.size(), keep < 1000 ? keep : expected.size()) << keep;
    EXPECT_TRUE(std::equal(got.begin(), got.end(), expected.begin())) << keep;
  }
}

// The temporary files (the 256 parts, each closed once searched, and the repeats' runs, closed
// with their stream) are all gone after the search and after a failure in it.
TEST(ExternalIdCheck, TemporaryFilesAreGoneAfterSuccessAndAfterAFailure)
{
  const capledger::test::temporary_files_watch watch;
  repeat_list expected;
  fake_log log;
  many_part_log(log, expected);
  {
    external_id_check check(1, 100);
    for (const auto& [offset, hash] : log.hashes) { check.add(hash, offset); }
    EXPECT_EQ(watch.open_files(), 256U);
    repeat_stream stream = check.repeats([&](std::uint64_t offset) { return log.ids.at(offset); });
    EXPECT_EQ(watch.open_files(), 1U) << "the parts are closed, the runs' file is open";
    EXPECT_EQ(read_all(stream), expected);
  }
  EXPECT_EQ(watch.open_files(), 0U);
  {
    external_id_check check(1, 100);
    for (const auto& [offset, hash] : log.hashes) { check.add(hash, offset); }
    std::atomic<std::size_t> reads{0};
    EXPECT_THROW((void)check.repeats([&](std::uint64_t offset) -> std::string {
      if (++reads == 20'000) { throw std::runtime_error("cannot read the id"); }  // runs written by then
      return log.ids.at(offset);
    }),
                 std::runtime_error);
  }
  EXPECT_EQ(watch.open_files(), 0U);
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
