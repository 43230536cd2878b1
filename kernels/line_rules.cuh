/// @file line_rules.cuh
/// @brief Device-side views of the shipment columns and rule tables, and the per-line rule tests
/// (window, pathway authorization, phase caps) that the CUDA aggregation kernels share.
///
/// Everything here mirrors `rule_context` and SPEC §2/§4 line for line; the keys are built with the
/// very `constexpr` functions of backend.hpp, so both backends pack and order keys alike.
#pragma once

#include <capledger/backend.hpp>

#include <cstdint>

namespace capledger::detail {

/// @brief Non-owning device pointers to the columns of a shipment log (see `shipment_view`).
struct line_columns_view {
  std::int64_t size = 0;
  const day_t* date             = nullptr;
  const std::int32_t* entity    = nullptr;
  const std::uint16_t* country  = nullptr;
  const std::uint16_t* chip     = nullptr;
  const std::uint8_t* pathway   = nullptr;
  const std::int64_t* quantity  = nullptr;
  const std::int64_t* tpp       = nullptr;
  const std::int32_t* order     = nullptr;
  const std::int32_t* exporter  = nullptr;
};

/// @brief Non-owning device copy of a `rule_context`.
struct rule_tables_view {
  day_t as_of        = 0;
  day_t window_start = 0;
  day_t window_end   = 0;
  std::uint8_t country_cap_pathways = 0;

  const std::uint8_t* country_tier          = nullptr;
  const std::int64_t* country_cap_tpp       = nullptr;
  const std::uint8_t* chip_datacenter       = nullptr;
  const std::uint8_t* entity_is_uveu        = nullptr;
  const std::uint8_t* entity_hq_tier1       = nullptr;
  const std::uint64_t* entity_nveu_countries = nullptr;
  std::int64_t entity_nveu_words = 0;

  std::int64_t lpp_per_order_tpp          = 0;
  std::int64_t lpp_per_consignee_year_tpp = 0;
  const day_t* nveu_through    = nullptr;
  const std::int64_t* nveu_tpp = nullptr;
  int nveu_phase_count         = 0;
};

inline constexpr std::uint8_t pathway_lpp     = static_cast<std::uint8_t>(pathway::lpp);
inline constexpr std::uint8_t pathway_nveu    = static_cast<std::uint8_t>(pathway::nveu);
inline constexpr std::uint8_t pathway_uveu    = static_cast<std::uint8_t>(pathway::uveu);
inline constexpr std::uint8_t pathway_aia     = static_cast<std::uint8_t>(pathway::aia);
inline constexpr std::uint8_t pathway_aca     = static_cast<std::uint8_t>(pathway::aca);

/// @brief Civil (proleptic Gregorian) year of a day number: Howard Hinnant's `civil_from_days`,
/// kept to the year and done in 64 bits so no day number can overflow it. Must agree with the host
/// `year_of()` (host/calendar.cpp), which the LPP annual keys of the CPU backend use.
__host__ __device__ constexpr std::int64_t civil_year(std::int64_t day)
{
  const std::int64_t z           = day + 719468;
  const std::int64_t era         = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t day_of_era  = z - era * 146097;
  const std::int64_t year_of_era =
    (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const std::int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const std::int64_t mp          = (5 * day_of_year + 2) / 153;  // March-based month, 0..11
  return year_of_era + era * 400 + (mp >= 10 ? 1 : 0);           // January and February: next year
}
static_assert(civil_year(0) == 1970 && civil_year(-1) == 1969 && civil_year(59) == 1970);
static_assert(civil_year(-719528) == 0 && civil_year(-719529) == -1 && civil_year(2932896) == 9999);

/// @brief Used by everything: dated on or before `as_of`.
__device__ __forceinline__ bool is_used(const rule_tables_view& rules, day_t date)
{
  return date <= rules.as_of;
}

/// @brief Counted by the checks of SPEC §4: used and inside the counting window.
__device__ __forceinline__ bool is_in_window(const rule_tables_view& rules, day_t date)
{
  return date <= rules.as_of && date >= rules.window_start && date <= rules.window_end;
}

/// @brief NVEU cap in force on @p date: the first phase whose `through` is on or after it, else the
/// last phase (`nveu_cap_on`). Phases ascend by `through`; a search, as on the host: a rule set
/// may list a phase a day, and every NVEU line asks.
__device__ __forceinline__ std::int64_t nveu_limit(const rule_tables_view& rules, day_t date)
{
  if (rules.nveu_phase_count == 0) { return INT64_MAX; }  // no phases: nothing can cross
  int low = 0, high = rules.nveu_phase_count;             // the first phase on or after date
  while (low < high) {
    const int middle = low + (high - low) / 2;
    if (rules.nveu_through[middle] < date) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  return rules.nveu_tpp[low < rules.nveu_phase_count ? low : rules.nveu_phase_count - 1];
}

/// @brief `rule_context::nveu_authorized`, with the same word arithmetic.
__device__ __forceinline__ bool is_nveu_authorized(const rule_tables_view& rules, std::int32_t entity,
                                                   std::uint16_t country)
{
  const std::int64_t word =
    static_cast<std::int64_t>(entity) * rule_context::nveu_mask_words + country / 64;
  if (word >= rules.entity_nveu_words) { return false; }
  return ((rules.entity_nveu_countries[word] >> (country % 64)) & 1U) != 0;
}

/// @brief A positive line sent under a pathway the entity, country or chip does not allow (SPEC §4
/// UNAUTHORIZED_PATHWAY); the quantity test is the caller's.
__device__ __forceinline__ bool is_unauthorized(const line_columns_view& lines,
                                                const rule_tables_view& rules, std::int64_t line)
{
  const std::int32_t entity   = lines.entity[line];
  const std::uint16_t country = lines.country[line];
  switch (lines.pathway[line]) {
    case pathway_uveu: return rules.entity_is_uveu[entity] == 0;
    case pathway_nveu: return !is_nveu_authorized(rules, entity, country);
    case pathway_aia: return rules.country_tier[country] != 1 || rules.entity_hq_tier1[entity] == 0;
    case pathway_aca: return rules.chip_datacenter[lines.chip[line]] != 0;
    default: return false;
  }
}

}  // namespace capledger::detail
