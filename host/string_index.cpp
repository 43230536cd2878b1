/// @file string_index.cpp
/// @brief The random key of `detail::hash_bytes`.
#include "string_index.hpp"

#include <chrono>
#include <random>

namespace capledger::detail {

hash_key random_hash_key() noexcept
{
  std::uint64_t words[2] = {0, 0};
  try {
    std::random_device device;
    for (std::uint64_t& w : words) { w = (std::uint64_t{device()} << 32) ^ device(); }
  } catch (...) {  // no entropy source: the clock and an address still differ from run to run
    const auto now = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    words[0]       = now ^ reinterpret_cast<std::uintptr_t>(&words);
    words[1]       = now * 0x9e3779b97f4a7c15ULL;
  }
  return {words[0], words[1]};
}

}  // namespace capledger::detail
