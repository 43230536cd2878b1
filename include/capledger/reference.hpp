/// @file reference.hpp
/// @brief Reference data (countries, chips) and the rule set, loaded from files, validated once.
#pragma once

#include <capledger/calendar.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace capledger {

/// Authorization pathways of SPEC §1.1, in a fixed order (their codes travel in columns).
enum class pathway : std::uint8_t { license = 0, lpp, nveu, uveu, aia, aca };
inline constexpr int pathway_count = 6;

/// @brief Upper-case name of a pathway (`LICENSE`, `LPP`, ...).
[[nodiscard]] std::string_view pathway_name(pathway p) noexcept;

/// @brief One row of `countries.csv`.
struct country {
  std::string iso2;  ///< upper-case ISO 3166-1 alpha-2 code
  std::string name;
  int tier         = 2;  ///< 1: no caps, 2: capped, 3: prohibited
  bool g2g_partner = false;
};

/// @brief `countries.csv`, sorted by ISO code; a country's code is its index.
struct country_table {
  std::vector<country> rows;
  std::unordered_map<std::string, std::uint16_t> code_of;  ///< upper-case ISO -> code
  /// @return the code of @p iso2 (any case), or -1 when unknown
  [[nodiscard]] int find(std::string_view iso2) const;
};

/// @brief Of the table's countries, the ISO code of the one @p value most plausibly names, for
/// messages about a country the table does not know: its name (`united states`, ` Germany `), its
/// code with dots or spaces (`U.S.`), another name exports use (`Russia`, `UAE`, `Burma`), its
/// ISO 3166-1 alpha-3 code (`USA`, `deu`) or the exceptional reservations `UK` (GB) and `EL` (GR). Compared
/// as `chip_spelled_alike` compares: ASCII letters and digits alone, in any case. "" when none is in the
/// table, or several names are.
[[nodiscard]] std::string country_spelled_alike(const country_table& countries, std::string_view value);

/// @brief One row of `chips.csv`.
struct chip {
  std::string key;  ///< as spelled in the table (or upper-cased, for ad-hoc chips)
  std::string vendor;
  std::int64_t tpp = 0;  ///< TPP per unit; 0 for ad-hoc chips seen only with `tpp_per_unit`
  bool datacenter  = true;
  bool known       = true;  ///< false for chips that are not in the table
};

/// @brief `chips.csv`; a chip's code is its index. Ad-hoc chips are appended during ingest.
struct chip_table {
  std::vector<chip> rows;
  std::unordered_map<std::string, std::uint16_t> code_of;  ///< upper-case key -> code
  /// @return the code of @p key (any case), or -1 when unknown
  [[nodiscard]] int find(std::string_view key) const;
  /// @brief Adds an ad-hoc chip (unknown to the table, priced per line) and returns its code.
  std::uint16_t add_adhoc(std::string_view key);
};

/// @brief Of the table's own chips (not ad-hoc ones), the key of the one written as @p key but for
/// case, spaces and punctuation (`H100 SXM` or `h100_sxm` for `H100-SXM`): "" when none is, or
/// several are. For messages about a chip the table does not know.
[[nodiscard]] std::string chip_spelled_alike(const chip_table& chips, std::string_view key);

/// @brief `chip_spelled_alike` over one table for many keys: the table's own chips by their
/// letters and digits, so that a key costs its length, not the table's rows (a log asks for each
/// line it rejects as `UNKNOWN_CHIP`: a scan cost those lines x the chips table's rows).
class chip_spellings {
 public:
  explicit chip_spellings(const chip_table& chips);
  /// @return `chip_spelled_alike(chips, key)` for the table given
  [[nodiscard]] std::string alike(std::string_view key) const;

 private:
  std::unordered_map<std::string, std::string> key_of_;  ///< letters and digits -> key; "" for several
};

/// @brief One NVEU phase: the cap applies to lines dated on or before `through`.
struct nveu_phase {
  day_t through    = 0;
  std::int64_t tpp = 0;
};

/// @brief The NVEU cap in force on @p date: the first phase whose `through` is on or after it
/// (the last phase after the final `through`). @p phases: ascending `through`, not empty.
[[nodiscard]] std::int64_t nveu_cap_on(const std::vector<nveu_phase>& phases, day_t date);

/// @brief A decimal fraction held exactly as parts per million (0.07 -> 70000).
using ppm_t                    = std::int64_t;
inline constexpr ppm_t ppm_one = 1000000;

/// @brief The rule set (SPEC §1.3): every threshold of SPEC §4, nothing hard-coded.
struct rule_set {
  std::string id;
  std::string title;
  day_t counting_starts                   = 0;
  day_t counting_ends                     = 0;
  std::int64_t h100_tpp                   = 0;
  std::int64_t country_cap_tpp            = 0;
  std::int64_t g2g_multiplier             = 1;
  std::uint8_t country_cap_pathways       = 0;  ///< bit i set: pathway i counts against the country cap
  std::int64_t lpp_per_order_tpp          = 0;
  std::int64_t lpp_per_consignee_year_tpp = 0;
  std::vector<nveu_phase> nveu_caps;  ///< ascending `through`; the last covers counting_ends
  ppm_t uveu_max_tier2_country_share = 0;
  ppm_t uveu_min_tier1_share         = 0;
  ppm_t uveu_min_us_share_if_us_hq   = 0;

  /// In the counting window (SPEC §2): the lines every check but the UVEU shares counts.
  [[nodiscard]] bool in_window(day_t date) const { return date >= counting_starts && date <= counting_ends; }
};

/// @brief Loads `countries.csv`. @throw config_error on any defect (file:line in the message)
[[nodiscard]] country_table load_countries(const std::string& path);
/// @brief Parses a countries table from its text (@p origin names it in messages).
[[nodiscard]] country_table parse_countries(std::string_view text, const std::string& origin);
/// @brief Loads `chips.csv`. @throw config_error on any defect
[[nodiscard]] chip_table load_chips(const std::string& path);
/// @brief Parses a chips table from its text (@p origin names it in messages).
[[nodiscard]] chip_table parse_chips(std::string_view text, const std::string& origin);
/// @brief Loads and validates a rule-set JSON file. @throw config_error on any defect
[[nodiscard]] rule_set load_rule_set(const std::string& path);
/// @brief Parses a rule set from JSON text (@p origin names it in messages). @throw config_error
[[nodiscard]] rule_set parse_rule_set(std::string_view json_text, const std::string& origin);

}  // namespace capledger
