/// @file generate.hpp
/// @brief Synthetic shipment logs and entity files (SPEC §1.1, §1.2), deterministic per options.
#pragma once

#include <capledger/calendar.hpp>
#include <capledger/reference.hpp>

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

namespace capledger {

/// @brief What `generate_log` produces. Equal options give byte-identical files on every platform.
///
/// The generator draws everything from its own PRNG (xoshiro256**) with integer sampling, so
/// the output depends only on these options and the reference tables, never on the standard
/// library or the floating-point unit.
struct generate_options {
  /// Data lines of `shipments.csv` (the header excluded), force-breach plants included.
  std::int64_t records = 1000;
  /// Seed of the PRNG; every other choice follows from it.
  std::uint64_t seed = 1;
  /// Distinct consignees; 0 derives clamp(records / 50, 20, 100000). Values below 10 are raised
  /// to 10 so that every status (UVEU, NVEU, NONE, unlisted) has members.
  std::int64_t entities = 0;
  /// Plant lines that make every violation rule of SPEC §4 fire (COUNTRY_CAP_EXCEEDED,
  /// PROHIBITED_DESTINATION, LPP_ORDER_LIMIT, LPP_ANNUAL_LIMIT, NVEU_CAP_EXCEEDED,
  /// UNAUTHORIZED_PATHWAY, UVEU_TIER2_SHARE, UVEU_TIER1_SHARE, UVEU_US_SHARE), sized from the
  /// rule set. Needs 18 records with the bundled rule set (more when the yearly LPP limit is
  /// many times the per-order one); fewer is a config_error.
  bool force_breaches = false;
  /// Returns (negative quantities) per thousand lines; each takes back units of an earlier-dated
  /// shipment of the same entity, country, chip, pathway and order.
  std::int64_t returns_per_mille = 20;
  /// Ordinary lines to tier-3 (prohibited) destinations per million lines.
  std::int64_t prohibited_per_million = 10;
  /// Lines of ad-hoc chips (not in the chips table, priced by `tpp_per_unit`) per million lines.
  std::int64_t adhoc_per_million = 500;
  /// First export date of ordinary lines; default 2024-10-01.
  std::optional<day_t> first_day;
  /// Last export date of ordinary lines; default 2027-12-31.
  std::optional<day_t> last_day;
};

/// @brief Writes `shipments.csv` and `entities.csv` into @p out_dir (created when missing).
///
/// Without `force_breaches` the ordinary lines respect the LPP, NVEU, UVEU-share and pathway
/// rules by construction; country caps are not steered, so large logs breach them naturally,
/// and tier-3 lines appear at `prohibited_per_million`.
/// @param options   what to generate
/// @param countries country table (tiers decide where traffic goes)
/// @param chips     chips table (only rows with `known` set are used)
/// @param rules     rule set: the limits that plants exceed and ordinary lines stay under
/// @param out_dir   output folder
/// @throw config_error on invalid options, too few records for the plants, or an unwritable folder
void generate_log(const generate_options& options, const country_table& countries, const chip_table& chips,
                  const rule_set& rules, const std::string& out_dir);

/// @brief Same as the folder overload, writing into streams (used by tests).
/// @param shipments receives `shipments.csv`
/// @param entities  receives `entities.csv`
/// @throw config_error on invalid options or too few records for the plants
void generate_log(const generate_options& options, const country_table& countries, const chip_table& chips,
                  const rule_set& rules, std::ostream& shipments, std::ostream& entities);

}  // namespace capledger
