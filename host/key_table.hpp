/// @file key_table.hpp
/// @brief An open-addressing map from int64 keys to small values, for per-key aggregates.
#pragma once

#include "file_io.hpp"
#include "many_cores.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <future>
#include <limits>
#include <utility>
#include <vector>

namespace capledger::detail {

/// Per-key state for int64 keys (any but INT64_MIN) in an open-addressing table: a line costs one
/// probe, not a node allocation and a pointer chase as in std::unordered_map (the hot spot of
/// both passes with many entities).
template <typename Value>
class key_table {
 public:
  Value& at(std::int64_t key)
  {
    if (4 * (count_ + 1) > 3 * slots_.size()) { rehash(std::max<std::size_t>(4096, 2 * slots_.size())); }
    std::size_t s = slot_of(key);
    while (slots_[s].key != key) {
      if (slots_[s].key == empty) {
        slots_[s].key = key;
        ++count_;
        if (grow_ahead_ && 16 * count_ == 9 * slots_.size() && slots_.size() >= grow_ahead_from) {
          prepare_next();
        }
        break;
      }
      s = (s + 1) & mask_;
    }
    return slots_[s].value;
  }
  /// @return the value of @p key, or null when the key was never added
  [[nodiscard]] Value* find(std::int64_t key) { return const_cast<Value*>(std::as_const(*this).find(key)); }
  [[nodiscard]] const Value* find(std::int64_t key) const
  {
    if (slots_.empty()) { return nullptr; }
    for (std::size_t s = slot_of(key);; s = (s + 1) & mask_) {
      if (slots_[s].key == key) { return &slots_[s].value; }
      if (slots_[s].key == empty) { return nullptr; }
    }
  }
  /// Starts loading the slot where @p key's probe begins: a caller that knows its next keys
  /// hides the cache miss of a table larger than the caches. (Always inlined: GCC deletes the
  /// calls of a function that only prefetches, taking it for one without effects.)
  [[gnu::always_inline]] void prefetch(std::int64_t key) const noexcept
  {
    if (!slots_.empty()) { __builtin_prefetch(&slots_[slot_of(key)], 1); }
  }
  template <typename Visit>
  void for_each(Visit visit) const
  {
    for (const slot& s : slots_) {
      if (s.key != empty) { visit(s.key, s.value); }
    }
  }
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  /// Makes room for @p count keys. Merging another table walks it in slot (= hash) order;
  /// a destination at least as large keeps those keys spread out instead of piling them into
  /// one long probe run, which made merges quadratic.
  void reserve(std::size_t count, std::size_t at_least_capacity)
  {
    std::size_t capacity = std::max<std::size_t>(4096, slots_.size());
    while (4 * count > 3 * capacity || capacity < at_least_capacity) { capacity *= 2; }
    if (capacity != slots_.size()) { rehash(capacity); }
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return slots_.size(); }
  /// Writes each next, twice as large, table on another thread once the table is 9/16 full (it
  /// grows at 3/4, and is 3/8 full after growing): the calling thread then only moves its keys
  /// over. For a table that grows while a busy thread fills it (first writes to fresh memory are
  /// page faults and zeroing: 3% of a 2-core report's samples, on its busiest thread, for the
  /// pair table).
  void grow_ahead() noexcept { grow_ahead_ = true; }
  /// Tables written ahead and taken when the table grew.
  [[nodiscard]] int tables_taken() const noexcept { return tables_taken_; }

 private:
  /// No key is INT64_MIN; keys can be negative: entity_year_key(0, -1) == -1 (years before 1).
  static constexpr std::int64_t empty = std::numeric_limits<std::int64_t>::min();
  /// Key and value side by side: a probe that finds its key has the value in the same cache line.
  struct slot {
    std::int64_t key = empty;
    Value value{};
  };
  std::vector<slot> slots_;
  std::size_t mask_  = 0;
  std::size_t count_ = 0;
  int shift_         = 64;
  /// Smaller tables are written faster than a thread starts.
  static constexpr std::size_t grow_ahead_from = std::size_t{1} << 16;
  bool grow_ahead_                             = false;
  std::future<std::vector<slot>> next_;  ///< the next table's empty slots, being written
  int tables_taken_ = 0;

  [[nodiscard]] static std::vector<slot> empty_slots(std::size_t capacity)
  {
    std::vector<slot> slots;
    slots.reserve(capacity);
    // Probes land anywhere in the table: on huge pages a table of tens of megabytes costs a few
    // TLB entries instead of a page walk per probe (asked before the first touch).
    advise_huge_pages(slots.data(), capacity * sizeof(slot));
    slots.assign(capacity, slot{});
    return slots;
  }
  void prepare_next()
  {
    next_ = std::async(std::launch::async, [capacity = 2 * slots_.size()] {
      name_this_thread("cl-grow");
      return empty_slots(capacity);
    });
  }

  /// Fibonacci hashing: the top bits of the product mix every bit of the key.
  [[nodiscard]] std::size_t slot_of(std::int64_t key) const noexcept
  {
    return static_cast<std::size_t>((static_cast<std::uint64_t>(key) * 0x9e3779b97f4a7c15ULL) >> shift_);
  }
  void rehash(std::size_t capacity)
  {
    std::vector<slot> old = std::move(slots_);
    slots_                = std::vector<slot>();
    if (next_.valid()) { slots_ = next_.get(); }  // rethrows its bad_alloc, as writing it here would
    if (slots_.size() == capacity) {
      ++tables_taken_;
    } else {  // none written ahead, or `reserve` asked for another size
      slots_ = empty_slots(capacity);
    }
    mask_  = capacity - 1;
    shift_ = 64;
    for (std::size_t c = capacity; c > 1; c >>= 1) { --shift_; }
    for (slot& s : old) {
      if (s.key == empty) { continue; }
      std::size_t t = slot_of(s.key);
      while (slots_[t].key != empty) { t = (t + 1) & mask_; }
      slots_[t] = std::move(s);
    }
  }
};

}  // namespace capledger::detail
