/// @file external_id_check.cpp
/// @brief Repeated shipment ids found out of memory: partitioned temporary files, each searched
/// for equal hashes on its own, several at once.
#include "external_id_check.hpp"
#include "file_io.hpp"
#include "many_cores.hpp"

#include <capledger/error.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

namespace capledger::detail {

external_id_check::~external_id_check()
{
  for (auto& part : parts_) {
    if (part.fd >= 0) { ::close(part.fd); }
  }
}

void external_id_check::add(std::uint64_t hash, std::uint64_t offset)
{
  part& p = parts_[hash >> 56];
  p.buffer.push_back({hash, offset});
  if (p.buffer.size() >= buffered_) { spill(p); }
}

namespace {

/// Working memory of one part while its repeats are found: its entries (16 bytes each) and a
/// table of their hashes at most half full (at most 4 slots an entry, 9 bytes a slot).
constexpr std::size_t bytes_per_entry_at_work = 16 + 4 * 9;
/// What the parts processed at once may use together: the id check is out of memory so that
/// memory does not grow with the log, so this bounds the threads rather than the parts' size.
constexpr std::size_t parallel_budget_bytes = std::size_t{256} << 20;

/// The entries whose hash occurs more than once, sorted by (hash, offset): each entry counted once
/// in an open-addressing table of hashes (a part's is a few megabytes: it stays in cache), where
/// sorting every entry cost more than the rest of the search (bench/RESULTS.md).
std::vector<external_id_check_entry> entries_with_equal_hashes(
    const std::vector<external_id_check_entry>& entries)
{
  std::size_t capacity = 16;
  while (capacity < 2 * entries.size()) { capacity *= 2; }
  int shift = 64;
  for (std::size_t c = capacity; c > 1; c >>= 1) { --shift; }
  std::vector<std::uint64_t> hashes(capacity);
  std::vector<std::uint8_t> seen(capacity, 0);  // 0: empty slot, 1: hash met once, 2: more than once
  const auto slot_of = [&](std::uint64_t hash) {
    std::size_t s = static_cast<std::size_t>((hash * 0x9e3779b97f4a7c15ULL) >> shift);
    while (seen[s] != 0 && hashes[s] != hash) { s = (s + 1) & (capacity - 1); }
    return s;
  };
  bool any = false;
  for (const auto& e : entries) {
    const std::size_t s = slot_of(e.hash);
    hashes[s]           = e.hash;
    any                 = any || seen[s] == 1;
    seen[s]             = seen[s] == 0 ? 1 : 2;
  }
  std::vector<external_id_check_entry> equal;
  if (!any) { return equal; }
  for (const auto& e : entries) {
    if (seen[slot_of(e.hash)] == 2) { equal.push_back(e); }
  }
  std::sort(equal.begin(), equal.end(), [](const auto& a, const auto& b) {
    return a.hash != b.hash ? a.hash < b.hash : a.offset < b.offset;
  });
  return equal;
}

}  // namespace

/// The first `keep` repeats the parts' searches have found so far (a heap with the last on top), and
/// the offset from which no repeat can be one of them any more.
class external_id_check::first_repeats {
 public:
  explicit first_repeats(std::size_t keep) : keep_(std::max<std::size_t>(keep, 1)) {}
  [[nodiscard]] std::uint64_t bound() const { return bound_.load(std::memory_order_relaxed); }
  void add(std::uint64_t repeat, std::uint64_t first_use)
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (repeat >= bound_.load(std::memory_order_relaxed)) { return; }
    kept_.emplace_back(repeat, first_use);
    std::push_heap(kept_.begin(), kept_.end());
    if (kept_.size() > keep_) {
      std::pop_heap(kept_.begin(), kept_.end());
      kept_.pop_back();
    }
    if (kept_.size() == keep_) { bound_.store(kept_.front().first, std::memory_order_relaxed); }
  }
  [[nodiscard]] std::vector<std::pair<std::uint64_t, std::uint64_t>> sorted()
  {
    std::sort_heap(kept_.begin(), kept_.end());
    return std::move(kept_);
  }

 private:
  std::size_t keep_;
  std::mutex mutex_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> kept_;
  std::atomic<std::uint64_t> bound_{~std::uint64_t{0}};  // no repeat known: any can be one
};

std::vector<std::pair<std::uint64_t, std::uint64_t>> external_id_check::repeats_in(
    part& p, const std::function<std::string(std::uint64_t)>& id_at, first_repeats* first)
{
  std::vector<entry> entries(p.written);
  const auto bytes = static_cast<ssize_t>(p.written * sizeof(entry));
  if (p.written > 0 && ::pread(p.fd, entries.data(), static_cast<std::size_t>(bytes), 0) != bytes) {
    throw config_error("cannot read back a temporary file");
  }
  entries.insert(entries.end(), p.buffer.begin(), p.buffer.end());  // the part never written out
  p.buffer                       = {};
  const std::vector<entry> equal = entries_with_equal_hashes(entries);
  entries                        = {};
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  for (std::size_t run = 0; run < equal.size();) {
    std::size_t end = run + 1;
    while (end < equal.size() && equal[end].hash == equal[run].hash) { ++end; }
    // Equal hashes: compare the ids themselves, in input order (a repeat is never the first).
    std::vector<std::pair<std::string, std::uint64_t>> firsts;  // distinct ids and their first use
    for (std::size_t k = run; k < end; ++k) {
      // The smallest offset from here that can be a repeat (offsets grow along the run): past the
      // first repeats, so is the rest of the run.
      if (first != nullptr && equal[std::max(k, run + 1)].offset >= first->bound()) { break; }
      std::string id = id_at(equal[k].offset);
      const auto same =
          std::find_if(firsts.begin(), firsts.end(), [&](const auto& f) { return f.first == id; });
      if (same != firsts.end() && first != nullptr) {
        first->add(equal[k].offset, same->second);
      } else if (same != firsts.end()) {
        out.emplace_back(equal[k].offset, same->second);
      } else {
        firsts.emplace_back(std::move(id), equal[k].offset);
      }
    }
    run = end;
  }
  return out;
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> external_id_check::repeats(
    const std::function<std::string(std::uint64_t)>& id_at, std::size_t keep)
{
  std::unique_ptr<first_repeats> first;
  if (keep != all_repeats) { first = std::make_unique<first_repeats>(keep); }
  // The parts are independent: several at a time, as many as the budget holds for the largest.
  std::size_t largest = 0;
  for (const auto& p : parts_) { largest = std::max(largest, p.written + p.buffer.size()); }
  const auto fit    = static_cast<int>(std::min<std::size_t>(
      parallel_budget_bytes / std::max<std::size_t>(1, largest * bytes_per_entry_at_work), 256));
  const int threads = std::max(1, std::min(fit, omp_get_max_threads()));
  std::vector<std::vector<std::pair<std::uint64_t, std::uint64_t>>> found(parts_.size());
  std::vector<std::exception_ptr> failures(static_cast<std::size_t>(threads));
  // Threads of their own rather than an OpenMP loop: exceptions come back through their slots, and
  // ThreadSanitizer sees the joins (it cannot see libgomp's barriers).
  std::atomic<std::size_t> next{0};
  const auto search = [&](std::size_t worker) {
    try {
      for (std::size_t k; (k = next.fetch_add(1)) < parts_.size();) {
        found[k] = repeats_in(parts_[k], id_at, first.get());
      }
    } catch (...) {
      failures[worker] = std::current_exception();
      next             = parts_.size();  // the others stop after their current part
    }
  };
  std::vector<std::thread> helpers;
  for (std::size_t worker = 1; worker < failures.size(); ++worker) {
    helpers.emplace_back([&search, worker] {
      name_this_thread("cl-idsearch");
      search(worker);
    });
  }
  search(0);
  for (auto& helper : helpers) { helper.join(); }
  for (const auto& failure : failures) {
    if (failure) { std::rethrow_exception(failure); }
  }
  if (first) { return first->sorted(); }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  for (auto& part_repeats : found) { out.insert(out.end(), part_repeats.begin(), part_repeats.end()); }
  std::sort(out.begin(), out.end());
  return out;
}

void external_id_check::spill(part& p)
{
  if (p.fd < 0) { p.fd = anonymous_temp_file(); }
  const auto bytes = static_cast<ssize_t>(p.buffer.size() * sizeof(entry));
  if (bytes > 0 && ::write(p.fd, p.buffer.data(), static_cast<std::size_t>(bytes)) != bytes) {
    throw config_error("cannot write a temporary file (disk full?)");
  }
  p.written += p.buffer.size();
  p.buffer.clear();
}

}  // namespace capledger::detail
