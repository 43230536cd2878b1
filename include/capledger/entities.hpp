/// @file entities.hpp
/// @brief The entities file (SPEC §1.2): status, HQ country and NVEU authorizations per consignee.
#pragma once

#include <capledger/reference.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace capledger {

enum class entity_status : std::uint8_t { none = 0, nveu, uveu };

/// @brief Upper-case name of a status (`NONE`, `NVEU`, `UVEU`).
[[nodiscard]] std::string_view entity_status_name(entity_status s) noexcept;

/// @brief One row of `entities.csv`.
struct entity_info {
  std::string id;
  std::string name;
  int hq_country       = -1;  ///< country code, -1 when unknown
  entity_status status = entity_status::none;
  std::vector<std::uint16_t> nveu_countries;  ///< sorted country codes
};

/// @brief All entities of the file, looked up by id (exact, after trimming spaces).
struct entity_table {
  std::vector<entity_info> rows;
  std::unordered_map<std::string, std::int32_t> index_of;
  /// @return the row of @p id, or nullptr when the entity is not listed
  [[nodiscard]] const entity_info* find(const std::string& id) const;
};

/// @brief Loads `entities.csv`. Any defect is fatal.
/// @throw parse_error naming file:line:column, or config_error for a missing column
[[nodiscard]] entity_table load_entities(const std::string& path, const country_table& countries);

/// @brief Parses the content of an entities file (the ledger keeps it in its database).
/// @param text   the file's bytes
/// @param path   the name errors report (file:line:column)
/// @throw parse_error naming path:line:column, or config_error for a missing column
[[nodiscard]] entity_table parse_entities(std::string_view text, const std::string& path,
                                          const country_table& countries);

}  // namespace capledger
