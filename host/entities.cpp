/// @file entities.cpp
/// @brief Loads entities.csv (SPEC §1.2); any defect is fatal and named by file:line:column.
#include <capledger/entities.hpp>
#include <capledger/error.hpp>
#include <capledger/shipments.hpp>

#include "csv.hpp"
#include "terminal_text.hpp"

#include <algorithm>

namespace capledger {

std::string_view entity_status_name(entity_status s) noexcept
{
  switch (s) {
    case entity_status::nveu:
      return "NVEU";
    case entity_status::uveu:
      return "UVEU";
    default:
      return "NONE";
  }
}

const entity_info* entity_table::find(const std::string& id) const
{
  const auto it = index_of.find(id);
  return it == index_of.end() ? nullptr : &rows[static_cast<std::size_t>(it->second)];
}

entity_table load_entities(const std::string& path, const country_table& countries)
{
  return parse_entities(read_input_file(path), path, countries);
}

entity_table parse_entities(std::string_view text, const std::string& path, const country_table& countries)
{
  detail::csv_reader reader(text);
  if (reader.next() != detail::csv_status::record) {
    throw parse_error(path, 1, 1, "MISSING_COLUMN", "the file has no header row");
  }
  const detail::csv_header header(reader.fields(), path);
  detail::refuse_lf_cr_line_ends(text, reader.position(), reader.line(), path);
  const int col_entity = header.find("entity");
  const int col_hq     = header.find("hq_country");
  const int col_status = header.find("status");
  const int col_nveu   = header.find("nveu_countries");
  const int col_name   = header.find("name");
  for (const auto& [index, name] :
       {std::pair{col_entity, "entity"}, std::pair{col_hq, "hq_country"}, std::pair{col_status, "status"}}) {
    if (index < 0) { throw parse_error(path, 1, 1, "MISSING_COLUMN", header.missing(name)); }
  }

  entity_table table;
  // Sized for a row a line: growing the index by rehashing held an eighth of a 200,000-entity load.
  // At most a row per 16 bytes (real rows are longer), so that a file of blank lines or of quoted
  // line breaks cannot make a small input reserve gigabytes; past that the table grows as before.
  const auto lines    = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
  const auto expected = std::min(lines, text.size() / 16);
  table.rows.reserve(expected);
  table.index_of.reserve(expected);
  std::vector<std::int64_t> line_of;  // each row's line, for a repeated id to name its first
  line_of.reserve(expected);
  while (true) {
    const auto status = reader.next();
    if (status == detail::csv_status::end) { break; }
    if (status != detail::csv_status::record) {
      const detail::quote_defect defect = detail::quote_defect_of(status);
      throw parse_error(path, reader.error_line(), reader.error_column(), defect.reason, defect.explanation);
    }
    const auto& f = reader.fields();
    if (static_cast<int>(f.size()) != header.size()) {
      throw detail::wrong_field_count_error(path, f, header);
    }
    const auto& id_field = f[static_cast<std::size_t>(col_entity)];
    entity_info row;
    row.id = std::string(id_field.value);
    if (row.id.empty()) {
      throw parse_error(path, id_field.line, id_field.column, "EMPTY_FIELD", "empty entity id");
    }
    if (!detail::valid_utf8(row.id)) {
      throw parse_error(path, id_field.line, id_field.column, "BAD_ENCODING", "entity id is not valid UTF-8");
    }
    if (col_name >= 0) { row.name = std::string(f[static_cast<std::size_t>(col_name)].value); }

    const auto& hq = f[static_cast<std::size_t>(col_hq)];
    if (!hq.value.empty()) {
      row.hq_country = countries.find(hq.value);
      if (row.hq_country < 0) {
        throw parse_error(path, hq.line, hq.column, "UNKNOWN_COUNTRY",
                          detail::quoted(hq.value) + " is not in the countries table" +
                              detail::did_you_mean(country_spelled_alike(countries, hq.value)));
      }
    }

    const auto& st          = f[static_cast<std::size_t>(col_status)];
    const std::string upper = detail::to_upper(st.value);
    if (upper == "UVEU") {
      row.status = entity_status::uveu;
    } else if (upper == "NVEU") {
      row.status = entity_status::nveu;
      // Without the column an NVEU would be authorized nowhere and every NVEU line of it a
      // violation: an omission, not a fact about the entity.
      if (col_nveu < 0) {
        throw parse_error(path, st.line, st.column, "MISSING_COLUMN",
                          "entity " + detail::quoted(row.id) +
                              " is NVEU but the file has no nveu_countries column (where it is authorized)");
      }
    } else if (upper == "NONE" || upper.empty()) {
      row.status = entity_status::none;
    } else {
      throw parse_error(path, st.line, st.column, "BAD_STATUS",
                        detail::quoted(st.value) + " is not UVEU, NVEU or NONE");
    }

    if (col_nveu >= 0) {
      const auto& nveu      = f[static_cast<std::size_t>(col_nveu)];
      std::string_view list = nveu.value;
      while (!list.empty()) {
        const auto cut             = list.find(';');
        const std::string_view iso = detail::trim(list.substr(0, cut));
        list = cut == std::string_view::npos ? std::string_view() : list.substr(cut + 1);
        if (iso.empty()) { continue; }
        const int code = countries.find(iso);
        if (code < 0) {
          // `AE, IN` (a quoted list written with commas, as for a spreadsheet cell) reads as one code;
          // but one country's name or code (`United Arab Emirates`, `U. K.`) is not a list.
          const std::string alike = country_spelled_alike(countries, iso);
          const bool commas       = alike.empty() && iso.find_first_of(", ") != std::string_view::npos;
          throw parse_error(
              path, nveu.line, nveu.column, "UNKNOWN_COUNTRY",
              detail::quoted(iso) + " in nveu_countries is not in the countries table" +
                  (commas ? ": separate the codes with ';' (AE;IN)" : detail::did_you_mean(alike)));
        }
        row.nveu_countries.push_back(static_cast<std::uint16_t>(code));
      }
      std::sort(row.nveu_countries.begin(), row.nveu_countries.end());
      row.nveu_countries.erase(std::unique(row.nveu_countries.begin(), row.nveu_countries.end()),
                               row.nveu_countries.end());
    }
    const auto [first, added] = table.index_of.emplace(row.id, static_cast<std::int32_t>(table.rows.size()));
    if (!added) {
      // Which row's status, HQ and NVEU countries were meant would be a guess.
      throw parse_error(path, id_field.line, id_field.column, "DUPLICATE_ID",
                        "entity " + detail::quoted(row.id) + " is listed twice: the same id as line " +
                            std::to_string(line_of[static_cast<std::size_t>(first->second)]) +
                            "; give each entity one row");
    }
    table.rows.push_back(std::move(row));
    line_of.push_back(id_field.line);
  }
  return table;
}

}  // namespace capledger
