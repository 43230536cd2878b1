/// @file string_index.hpp
/// @brief A fast hash of short byte strings and an open-addressing string -> dense code map,
/// the dictionaries of the ingest hot loop (no node per entry, no allocation per lookup).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace capledger::detail {

/// @brief The two secret words `hash_bytes` mixes in.
struct hash_key {
  std::uint64_t seed  = 0;
  std::uint64_t block = 0;
};

/// @brief Random words, drawn once a process (std::random_device; the clock where it fails).
[[nodiscard]] hash_key random_hash_key() noexcept;

/// @brief This process's key. Logs come from exporters: with public constants, ids of 1,461
/// bytes whose bytes 8-15 are `k0 ^ 1461 * k2` all hash alike (the first block's product is 0),
/// and every table probed them one by one (quadratic: 20,000 ids took 75 s). Tables and codes
/// never reach the outputs in hash order, so the outputs do not depend on the key.
[[nodiscard]] inline const hash_key& process_hash_key() noexcept
{
  static const hash_key key = random_hash_key();
  return key;
}

/// @brief 64-bit hash of @p bytes under @p key (wyhash-style multiply-mix; the ids, entities and
/// orders it sees are mostly 8 to 32 bytes, read as overlapping 8-byte words).
[[nodiscard]] inline std::uint64_t hash_bytes(std::string_view bytes, const hash_key& key) noexcept
{
  __extension__ typedef unsigned __int128 uint128;  // GCC and Clang on 64-bit targets
  const auto mix = [](std::uint64_t a, std::uint64_t b) {
    const uint128 product = static_cast<uint128>(a) * b;
    return static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
  };
  const auto load64 = [](const char* p) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
  };
  constexpr std::uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL, k2 = 0x8ebc6af09c88c6e3ULL;
  const std::uint64_t k1s = k1 ^ key.block;  // secret: no text can zero a product on purpose
  const char* p           = bytes.data();
  std::size_t n           = bytes.size();
  std::uint64_t seed      = k0 ^ key.seed ^ (n * k2);
  std::uint64_t a = 0, b = 0;
  if (n >= 8) {
    while (n > 16) {
      seed = mix(load64(p) ^ k1s, load64(p + 8) ^ seed);
      p += 16;
      n -= 16;
    }
    // 1 to 16 bytes are left. Fewer than 8 only after the loop, which consumed 16 or more:
    // then the last 16 bytes are read (overlapping), never past the end.
    a = n >= 8 ? load64(p) : load64(p + n - 16);
    b = load64(p + n - 8);
  } else if (n >= 4) {
    std::uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + n - 4, 4);
    a = lo;
    b = hi;
  } else if (n > 0) {
    a = (static_cast<std::uint64_t>(static_cast<unsigned char>(p[0])) << 16) |
        (static_cast<std::uint64_t>(static_cast<unsigned char>(p[n / 2])) << 8) |
        static_cast<unsigned char>(p[n - 1]);
  }
  return mix(k1 ^ bytes.size(), mix(a ^ k1s, b ^ seed));
}

/// @brief `hash_bytes` under this process's key.
[[nodiscard]] inline std::uint64_t hash_bytes(std::string_view bytes) noexcept
{
  return hash_bytes(bytes, process_hash_key());
}

/// @brief Byte equality of short strings without a call to memcmp (most keys are 4 to 16 bytes).
[[nodiscard]] inline bool same_bytes(std::string_view a, std::string_view b) noexcept
{
  if (a.size() != b.size()) { return false; }
  const std::size_t n = a.size();
  if (n >= 8 && n <= 16) {
    std::uint64_t a0, a1, b0, b1;
    std::memcpy(&a0, a.data(), 8);
    std::memcpy(&b0, b.data(), 8);
    std::memcpy(&a1, a.data() + n - 8, 8);
    std::memcpy(&b1, b.data() + n - 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  }
  return n == 0 || std::memcmp(a.data(), b.data(), n) == 0;
}

/// @brief Strings mapped to codes 0, 1, 2, ... in order of first insertion; the strings live
/// in one byte arena, the table holds (hash tag, code) in one 64-bit slot.
class string_index {
 public:
  /// @return the code of @p text, adding it when new
  std::int32_t encode(std::string_view text) { return encode(text, hash_bytes(text)); }
  /// @param hash `hash_bytes(text)`, when the caller has it already
  std::int32_t encode(std::string_view text, std::uint64_t hash)
  {
    if (2 * (size() + 1) > static_cast<std::int64_t>(slots_.size())) { grow(); }
    for (std::size_t s = slot_of(hash);; s = (s + 1) & mask_) {
      const std::uint64_t slot = slots_[s];
      if (slot == 0) {
        if (ends_.size() >= 0x7fffffffU) { throw std::length_error("more than 2^31-1 distinct values"); }
        bytes_.insert(bytes_.end(), text.begin(), text.end());
        ends_.push_back(bytes_.size());
        slots_[s] = (hash & tag_mask) | ends_.size();
        return static_cast<std::int32_t>(ends_.size() - 1);
      }
      if ((slot & tag_mask) == (hash & tag_mask) && same_bytes(this->text(code_of(slot)), text)) {
        return code_of(slot);
      }
    }
  }
  /// @return the code of @p text, or -1 when absent
  [[nodiscard]] std::int32_t find(std::string_view text) const { return find(text, hash_bytes(text)); }
  [[nodiscard]] std::int32_t find(std::string_view text, std::uint64_t hash) const
  {
    if (slots_.empty()) { return -1; }
    for (std::size_t s = slot_of(hash);; s = (s + 1) & mask_) {
      const std::uint64_t slot = slots_[s];
      if (slot == 0) { return -1; }
      if ((slot & tag_mask) == (hash & tag_mask) && same_bytes(this->text(code_of(slot)), text)) {
        return code_of(slot);
      }
    }
  }
  /// Brings the slot a lookup of @p hash starts at into the cache (a lookup soon after hits).
  [[gnu::always_inline]] void prefetch(std::uint64_t hash) const noexcept
  {
    if (!slots_.empty()) { __builtin_prefetch(&slots_[slot_of(hash)]); }
  }
  [[nodiscard]] std::string_view text(std::int32_t code) const
  {
    const std::size_t begin = code == 0 ? 0 : ends_[static_cast<std::size_t>(code) - 1];
    return {bytes_.data() + begin, ends_[static_cast<std::size_t>(code)] - begin};
  }
  [[nodiscard]] std::int32_t size() const noexcept { return static_cast<std::int32_t>(ends_.size()); }
  /// @brief Removes every string, keeping the memory for the next use.
  void clear() noexcept
  {
    bytes_.clear();
    ends_.clear();
    std::fill(slots_.begin(), slots_.end(), 0);
  }

 private:
  static constexpr std::uint64_t tag_mask = 0xffffffff00000000ULL;  ///< high hash bits; low: code + 1
  std::vector<char> bytes_;
  std::vector<std::size_t> ends_;
  std::vector<std::uint64_t> slots_;
  std::size_t mask_ = 0;

  static std::int32_t code_of(std::uint64_t slot) noexcept
  {
    return static_cast<std::int32_t>((slot & 0xffffffffU) - 1);
  }
  [[nodiscard]] std::size_t slot_of(std::uint64_t hash) const noexcept
  {
    return static_cast<std::size_t>(hash) & mask_;
  }
  void grow()
  {
    std::vector<std::uint64_t> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : 2 * old.size(), 0);
    mask_ = slots_.size() - 1;
    for (const std::uint64_t slot : old) {
      if (slot == 0) { continue; }
      std::size_t s = slot_of(hash_bytes(text(code_of(slot))));
      while (slots_[s] != 0) { s = (s + 1) & mask_; }
      slots_[s] = slot;
    }
  }
};

}  // namespace capledger::detail
