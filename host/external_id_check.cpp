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
#include <memory>
#include <mutex>
#include <utility>

namespace capledger::detail {

void external_id_check::add(std::uint64_t hash, std::uint64_t offset)
{
  part& p = parts_[hash >> 56];
  p.buffer.push_back({hash, offset});
  if (p.buffer.size() >= buffered_) { spill(p); }
}

namespace {

/// Writes @p bytes at the end of temporary file @p fd. @throw config_error
void write_temporary(int fd, const void* data, std::size_t bytes)
{
  if (bytes > 0 && ::write(fd, data, bytes) != static_cast<ssize_t>(bytes)) {
    throw config_error("cannot write a temporary file (disk full?)");
  }
}

/// Reads @p bytes at @p offset of temporary file @p fd. @throw config_error
void read_temporary(int fd, void* data, std::size_t bytes, std::uint64_t offset)
{
  if (bytes > 0 && ::pread(fd, data, bytes, static_cast<off_t>(offset)) != static_cast<ssize_t>(bytes)) {
    throw config_error("cannot read back a temporary file");
  }
}

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

/// Every repeat the parts' searches find, in no order: in memory up to the budget; past it, what is
/// held is sorted and written out as a run of one temporary file (so the runs hold `budget` pairs
/// or nearly, and few are merged when they are read).
class external_id_check::repeat_store {
 public:
  explicit repeat_store(std::size_t budget) : budget_(budget) {}
  repeat_store(const repeat_store&)            = delete;
  repeat_store& operator=(const repeat_store&) = delete;

  /// Takes @p found (left empty, its memory kept).
  void take(std::vector<repeat_stream::repeat>& found)
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (!held_.empty() && held_.size() + found.size() > budget_) { write_run(); }
    const std::size_t needed = held_.size() + found.size();
    if (needed > held_.capacity()) {  // grown to the budget, not past it
      held_.reserve(std::max(needed, std::min(budget_, 2 * held_.capacity())));
    }
    held_.insert(held_.end(), found.begin(), found.end());
    found.clear();
  }

  /// What was taken, as a stream (after the last `take`).
  repeat_stream finish()
  {
    std::sort(held_.begin(), held_.end());
    if (runs_.empty()) { return repeat_stream(std::move(held_)); }
    return repeat_stream(std::move(fd_), runs_, std::move(held_), budget_);
  }

 private:
  void write_run()
  {
    std::sort(held_.begin(), held_.end());
    if (fd_.get() < 0) { fd_ = anonymous_temp_file(); }
    const std::size_t bytes = held_.size() * sizeof(repeat_stream::repeat);
    write_temporary(fd_.get(), held_.data(), bytes);
    runs_.emplace_back(written_, written_ + bytes);
    written_ += bytes;
    held_.clear();
  }

  std::size_t budget_;
  std::mutex mutex_;
  std::vector<repeat_stream::repeat> held_;
  unique_fd fd_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> runs_;  ///< byte ranges in the file
  std::uint64_t written_ = 0;
};

/// One search thread's repeats on their way to the store, a few at a time (the store's lock is
/// taken once per batch).
class external_id_check::repeat_sink {
 public:
  repeat_sink(repeat_store& store, std::size_t batch) : store_(store), batch_(batch) {}
  void add(std::uint64_t repeat, std::uint64_t first_use)
  {
    found_.emplace_back(repeat, first_use);
    if (found_.size() >= batch_) { store_.take(found_); }
  }
  void flush() { store_.take(found_); }

 private:
  repeat_store& store_;
  std::size_t batch_;
  std::vector<repeat_stream::repeat> found_;
};

void external_id_check::repeats_in(part& p, const std::function<std::string(std::uint64_t)>& id_at,
                                   repeat_sink* all, first_repeats* first)
{
  std::vector<entry> entries(p.written);
  read_temporary(p.fd.get(), entries.data(), p.written * sizeof(entry), 0);
  p.fd.reset();  // read: its room on disk is free for the repeats' runs
  entries.insert(entries.end(), p.buffer.begin(), p.buffer.end());  // the part never written out
  p.buffer                       = {};
  const std::vector<entry> equal = entries_with_equal_hashes(entries);
  entries                        = {};
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
        all->add(equal[k].offset, same->second);
      } else {
        firsts.emplace_back(std::move(id), equal[k].offset);
      }
    }
    run = end;
  }
}

repeat_stream external_id_check::repeats(const std::function<std::string(std::uint64_t)>& id_at,
                                         std::size_t keep)
{
  // More first repeats than memory holds are found as all of them are: a second pass stops at
  // the same line with a longer list.
  std::unique_ptr<first_repeats> first;
  if (keep < repeats_in_memory_) { first = std::make_unique<first_repeats>(keep); }
  repeat_store all(repeats_in_memory_);
  // The parts are independent: several at a time, as many as the budget holds for the largest.
  std::size_t largest = 0;
  for (const auto& p : parts_) { largest = std::max(largest, p.written + p.buffer.size()); }
  const auto fit    = static_cast<int>(std::min<std::size_t>(
      parallel_budget_bytes / std::max<std::size_t>(1, largest * bytes_per_entry_at_work), 256));
  const int threads = std::max(1, std::min(fit, omp_get_max_threads()));
  // Each thread's batch: an eighth of the budget shared among them (the store holds the rest).
  const std::size_t batch = std::max<std::size_t>(
      1, std::min<std::size_t>(repeats_in_memory_ / (8 * static_cast<std::size_t>(threads)),
                               std::size_t{1} << 16));
  // Threads that the system refuses leave their parts to the others (the result is the same).
  share_items(parts_.size(), static_cast<std::size_t>(threads), "cl-idsearch", [&](const auto& take) {
    repeat_sink sink(all, batch);
    for (std::size_t k; take(k);) { repeats_in(parts_[k], id_at, &sink, first.get()); }
    sink.flush();
  });
  if (first) { return repeat_stream(first->sorted()); }
  return all.finish();
}

void external_id_check::spill(part& p)
{
  if (p.fd.get() < 0) { p.fd = anonymous_temp_file(); }
  write_temporary(p.fd.get(), p.buffer.data(), p.buffer.size() * sizeof(entry));
  p.written += p.buffer.size();
  p.buffer.clear();
}

repeat_stream::repeat_stream(std::vector<repeat> sorted)
{
  if (sorted.empty()) { return; }
  sources_.push_back({std::move(sorted), 0, 0, 0});
  heap_.push_back(0);
}

repeat_stream::repeat_stream(unique_fd fd, const std::vector<std::pair<std::uint64_t, std::uint64_t>>& runs,
                             std::vector<repeat> in_memory, std::size_t budget)
    : fd_(std::move(fd)), runs_on_disk_(runs.size())
{
  // The read buffers share a budget: many runs read fewer pairs at a time, never more memory.
  read_pairs_ = std::max<std::size_t>(1, std::min<std::size_t>(4096, budget / runs.size()));
  for (const auto& [begin, end] : runs) {
    source run{{}, 0, begin, end};
    if (refill(run)) { sources_.push_back(std::move(run)); }
  }
  if (!in_memory.empty()) { sources_.push_back({std::move(in_memory), 0, 0, 0}); }
  for (std::size_t s = 0; s < sources_.size(); ++s) { heap_.push_back(s); }
  for (std::size_t h = heap_.size() / 2; h-- > 0;) { sift_down(h); }
}

std::optional<repeat_stream::repeat> repeat_stream::next_at_or_after(std::uint64_t offset)
{
  CAPLEDGER_EXPECTS(offset >= asked_, "repeated ids are asked for in input order");
  asked_ = offset;
  while (!heap_.empty()) {
    source& s         = sources_[heap_.front()];
    const repeat head = s.buffer[s.at];
    if (head.first >= offset) { return head; }
    if (++s.at == s.buffer.size() && !refill(s)) {
      heap_.front() = heap_.back();
      heap_.pop_back();
      s.buffer = {};
    }
    if (!heap_.empty()) { sift_down(0); }
  }
  return std::nullopt;
}

bool repeat_stream::refill(source& s) const
{
  if (s.next_byte == s.end_byte) { return false; }
  const std::size_t pairs = std::min<std::size_t>(read_pairs_, (s.end_byte - s.next_byte) / sizeof(repeat));
  const std::optional<std::uint64_t> before =
      s.buffer.empty() ? std::nullopt : std::optional<std::uint64_t>(s.buffer.back().first);
  s.buffer.resize(pairs);
  read_temporary(fd_.get(), s.buffer.data(), pairs * sizeof(repeat), s.next_byte);
  s.next_byte += pairs * sizeof(repeat);
  s.at = 0;
  // A run read back out of order would pass over repeats unseen (or forever): never quietly.
  CAPLEDGER_EXPECTS(!before || s.buffer.front().first > *before, "a run of repeats reads back in order");
  return true;
}

void repeat_stream::sift_down(std::size_t h)
{
  const auto head = [this](std::size_t at) {
    const source& s = sources_[heap_[at]];
    return s.buffer[s.at].first;
  };
  while (true) {
    std::size_t least = h;
    for (std::size_t child = 2 * h + 1; child <= 2 * h + 2 && child < heap_.size(); ++child) {
      if (head(child) < head(least)) { least = child; }
    }
    if (least == h) { return; }
    std::swap(heap_[h], heap_[least]);
    h = least;
  }
}

}  // namespace capledger::detail
