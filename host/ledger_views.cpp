/// @file ledger_views.cpp
/// @brief What the ledger answers besides reports: cap balances, inventory reconciliation and
/// what-if checks of proposed lines. All exact integer arithmetic over the replayed log.
#include <capledger/checks.hpp>
#include <capledger/entity_variants.hpp>
#include <capledger/error.hpp>
#include <capledger/ledger.hpp>

#include "csv.hpp"
#include "csv_text.hpp"
#include "file_io.hpp"
#include "key_table.hpp"
#include "ledger_state.hpp"
#include "spreadsheet_hints.hpp"
#include "terminal_text.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

namespace capledger {

namespace {

day_t effective_as_of(const shipment_log& log, std::optional<day_t> as_of)
{
  if (as_of) { return *as_of; }
  if (log.columns.date.empty()) { return std::numeric_limits<day_t>::max(); }
  return *std::max_element(log.columns.date.begin(), log.columns.date.end());
}

/// `0.95` for 950000 ppm: the level as the user would write it.
std::string level_text(ppm_t level)
{
  std::string text = exact_decimal(level, ppm_one, 6);
  while (text.back() == '0') { text.pop_back(); }
  if (text.back() == '.') { text.push_back('0'); }
  return text;
}

}  // namespace

// ---- balances ---------------------------------------------------------------------------------

cap_usage sum_cap_usage(const reference_data& ref, const shipment_log& log, std::optional<day_t> as_of)
{
  cap_usage usage;
  usage.as_of                = effective_as_of(log, as_of);
  usage.entities             = log.entities;
  const rule_context context = make_rule_context(ref.rules, ref.countries, ref.entities, log, usage.as_of);
  // The totals and crossings come from the same aggregation the report's checks use, so that a
  // cap is `exceeded` here exactly when `report` finds its violation: also when returns brought
  // the total back under the limit after the crossing line, and not when a later, lower NVEU
  // phase cap is under a total that no line took over the cap in force on its date.
  const aggregation agg = make_cpu_backend()->aggregate(log.view(), context, sizes_of(log, ref.countries));
  for (std::size_t k = 0; k < ref.countries.rows.size(); ++k) {
    usage.country_cap.push_back({agg.country_cap_total[k], agg.country_cap_crossing[k].line >= 0});
  }
  for (const auto& n : agg.nveu) {
    usage.nveu[{log.entities.text(static_cast<std::int32_t>(n.key / 65536)),
                ref.countries.rows[n.key % 65536].iso2}] = {n.total, n.first_crossing.line >= 0};
  }
  // Only the LPP (entity, year) keys and orders that crossed are in the aggregation; the totals of
  // all are summed here. An order's row names every consignee and destination of the lines it
  // counts, not one line's: an order is usually for one (entity, country), and where its lines
  // span several, the row should say so.
  const shipment_columns& c = log.columns;
  for (std::size_t i = 0; i < c.date.size(); ++i) {
    if (c.date[i] > usage.as_of || !ref.rules.in_window(c.date[i]) ||
        c.pathway[i] != static_cast<std::uint8_t>(pathway::lpp)) {
      continue;
    }
    usage.lpp_annual[{log.entities.text(c.entity[i]), year_of(c.date[i])}].tpp += c.tpp[i];
    cap_usage::order_used& o = usage.lpp_order[log.orders.text(c.order[i])];
    o.tpp += c.tpp[i];
    o.entities.insert(log.entities.text(c.entity[i]));
    o.countries.insert(ref.countries.rows[c.country[i]].iso2);
  }
  for (const auto& y : agg.lpp_annual) {
    usage.lpp_annual
        .at({log.entities.text(static_cast<std::int32_t>(y.key / 16384)), static_cast<int>(y.key % 16384)})
        .crossed = true;
  }
  for (const auto& o : agg.lpp_order) {
    usage.lpp_order.at(log.orders.text(static_cast<std::int32_t>(o.key))).crossed = true;
  }
  return usage;
}

std::vector<cap_balance> compute_balances(const reference_data& ref, const cap_usage& usage,
                                          const std::vector<ppm_t>& warn_levels)
{
  const day_t as_of = usage.as_of;
  // Every authorized NVEU pair has a balance, used or not.
  std::map<std::pair<std::string, std::string>, cap_usage::used> nveu_used = usage.nveu;
  for (const auto& info : ref.entities.rows) {
    if (info.status != entity_status::nveu) { continue; }
    for (const std::uint16_t country : info.nveu_countries) {
      nveu_used.emplace(std::pair(info.id, ref.countries.rows[country].iso2), cap_usage::used{});
    }
  }

  std::vector<cap_balance> rows;
  const auto add = [&](cap_balance b, const cap_usage::used& used) {
    b.consumed_tpp = used.tpp;
    b.used_pct     = exact_decimal(b.consumed_tpp, b.limit_tpp, 2, 100);
    if (used.crossed) {
      b.warn_level = "exceeded";
    } else if (const int level = highest_warn_level(b.consumed_tpp, b.limit_tpp, warn_levels); level >= 0) {
      b.warn_level = level_text(warn_levels[static_cast<std::size_t>(level)]);
    }
    rows.push_back(std::move(b));
  };
  // Country caps follow the countries and rules tables alone: no entity or line takes part.
  const rule_context context =
      make_rule_context(ref.rules, ref.countries, entity_table{}, dictionary{}, ref.chips, as_of);
  for (std::size_t k = 0; k < ref.countries.rows.size(); ++k) {
    if (context.country_cap_tpp[k] < 0) { continue; }
    cap_balance b;
    b.cap       = "COUNTRY_CAP";
    b.country   = ref.countries.rows[k].iso2;
    b.limit_tpp = context.country_cap_tpp[k];
    add(std::move(b), usage.country_cap.at(k));
  }
  const std::int64_t nveu_limit = nveu_cap_at_as_of(ref.rules, as_of);  // as CAP_NEAR_LIMIT weighs it
  for (const auto& [key, used] : nveu_used) {
    cap_balance b;
    b.cap       = "NVEU_CAP";
    b.entity    = key.first;
    b.country   = key.second;
    b.limit_tpp = nveu_limit;
    add(std::move(b), used);
  }
  for (const auto& [key, used] : usage.lpp_annual) {
    cap_balance b;
    b.cap       = "LPP_ANNUAL";
    b.entity    = key.first;
    b.year      = std::to_string(key.second);
    b.limit_tpp = ref.rules.lpp_per_consignee_year_tpp;
    add(std::move(b), used);
  }
  const auto joined = [](const std::set<std::string>& texts) {
    std::string text;
    for (const auto& t : texts) { text += (text.empty() ? "" : ";") + t; }
    return text;
  };
  for (const auto& [order_id, used] : usage.lpp_order) {
    cap_balance b;
    b.cap       = "LPP_ORDER";
    b.entity    = joined(used.entities);
    b.country   = joined(used.countries);
    b.order_id  = order_id;
    b.limit_tpp = ref.rules.lpp_per_order_tpp;
    add(std::move(b), used);
  }
  return rows;
}

std::string balances_text(const std::vector<cap_balance>& balances, const std::string& format)
{
  // order_id is last: the columns before it kept their places when LPP_ORDER rows came.
  const std::vector<std::string> header = {"cap",        "entity",       "country",       "year",
                                           "limit_tpp",  "consumed_tpp", "remaining_tpp", "used_pct",
                                           "warn_level", "order_id"};
  std::vector<std::vector<std::string>> rows;
  for (const auto& b : balances) {
    rows.push_back({b.cap, b.entity, b.country, b.year, std::to_string(b.limit_tpp),
                    std::to_string(b.consumed_tpp), b.remaining_tpp(), b.used_pct, b.warn_level, b.order_id});
  }
  if (format == "csv") { return to_csv(header, rows); }
  for (auto& r : rows) {  // before the widths: a cell is as wide as it is shown
    for (auto& cell : r) { cell = detail::terminal_text(cell); }
  }
  // Widths in terminal columns, not bytes: a consignee named in Chinese or with accents lines up.
  std::vector<std::size_t> width(header.size());
  for (std::size_t k = 0; k < header.size(); ++k) { width[k] = header[k].size(); }
  for (const auto& r : rows) {
    for (std::size_t k = 0; k < r.size(); ++k) { width[k] = std::max(width[k], detail::display_width(r[k])); }
  }
  std::string out;
  const auto print = [&](const std::vector<std::string>& r) {
    std::string text;
    for (std::size_t k = 0; k < r.size(); ++k) {
      // Text columns left-aligned, numbers right-aligned, as in a balance sheet.
      const std::string pad(width[k] - detail::display_width(r[k]), ' ');
      text += k < 4 || k >= 8 ? r[k] + pad : pad + r[k];
      if (k + 1 < r.size()) { text += "  "; }
    }
    text.erase(text.find_last_not_of(' ') + 1);  // no trailing spaces after empty last columns
    out += text + "\n";
  };
  print(header);
  for (const auto& r : rows) { print(r); }
  return out;
}

int run_ledger_balances(const std::string& db_path, const report_options& options, std::ostream& out,
                        std::ostream& diagnostics, bool replay)
{
  if (options.format != "table" && options.format != "csv") {
    throw config_error("--format must be table or csv, not " + detail::quoted(options.format));
  }
  detail::refuse_colliding_paths({reference_files_read(options), {}, {}, db_path});
  ledger_snapshot snapshot(db_path);  // the entities file and the state or lines of one commit
  const reference_data ref = load_ledger_reference(db_path, options);
  std::vector<cap_balance> balances;
  std::vector<std::string> notes;
  {
    const cap_usage usage = load_cap_usage(db_path, ref, options.as_of, replay, diagnostics);
    balances              = compute_balances(ref, usage, options.warn_at);
    notes                 = entity_variant_notes(usage.entities, ref.entities);
  }  // the usage freed before the text is built, as its peak of memory was
  snapshot.release();
  out << balances_text(balances, options.format);
  for (const std::string& note : notes) { diagnostics << note << "\n"; }
  return std::any_of(balances.begin(), balances.end(),
                     [](const cap_balance& b) { return b.warn_level == "exceeded"; })
             ? 1
             : 0;
}

// ---- reconcile --------------------------------------------------------------------------------

namespace {

/// Where each code's text falls in byte order: codes compare by these as their texts do.
std::vector<std::int32_t> places(const std::vector<std::int32_t>& sorted_codes)
{
  std::vector<std::int32_t> place(sorted_codes.size());
  for (std::size_t i = 0; i < sorted_codes.size(); ++i) {
    place[static_cast<std::size_t>(sorted_codes[i])] = static_cast<std::int32_t>(i);
  }
  return place;
}

/// The (entity, ISO, chip key) order of keys in codes of @p entities, the countries table and
/// @p chips: integer comparisons, not three of strings.
class key_order {
 public:
  key_order(const dictionary& entities, const country_table& countries, const dictionary& chips)
      : entity_(places(entities.sorted_codes())), chip_(places(chips.sorted_codes()))
  {
    std::vector<std::int32_t> by_iso(countries.rows.size());
    std::iota(by_iso.begin(), by_iso.end(), 0);
    std::sort(by_iso.begin(), by_iso.end(), [&](std::int32_t a, std::int32_t b) {
      return countries.rows[a].iso2 < countries.rows[b].iso2;
    });
    country_ = places(by_iso);
  }
  [[nodiscard]] std::tuple<std::int32_t, std::int32_t, std::int32_t> operator()(std::int32_t entity,
                                                                                std::uint16_t country,
                                                                                std::int32_t chip) const
  {
    return {entity_[static_cast<std::size_t>(entity)], country_[country],
            chip_[static_cast<std::size_t>(chip)]};
  }

 private:
  std::vector<std::int32_t> entity_, country_, chip_;
};

}  // namespace

namespace detail {

void sort_ledger_units(ledger_units& units, const country_table& countries)
{
  const key_order order(units.entities, countries, units.chips);
  std::sort(units.units.begin(), units.units.end(),
            [&](const ledger_units::entry& a, const ledger_units::entry& b) {
              return order(a.entity, a.country, a.chip) < order(b.entity, b.country, b.chip);
            });
}

}  // namespace detail

ledger_units sum_ledger_units(const reference_data& ref, const shipment_log& log, std::optional<day_t> as_of)
{
  ledger_units units;
  if (as_of || !log.columns.date.empty()) { units.as_of = effective_as_of(log, as_of); }
  units.entities = log.entities;
  std::vector<std::int32_t> chip_code;  // by the log's code
  for (const auto& chip : log.chips.rows) { chip_code.push_back(units.chips.encode(chip.key)); }
  const shipment_columns& c = log.columns;
  detail::key_table<std::int64_t> sums;  // by entity << 32 | country << 16 | chip
  for (std::size_t i = 0; i < c.date.size(); ++i) {
    if (c.date[i] > *units.as_of) { continue; }
    sums.at(static_cast<std::int64_t>(c.entity[i]) << 32 | std::int64_t{c.country[i]} << 16 | c.chip[i]) +=
        c.quantity[i];
  }
  units.units.reserve(sums.size());
  sums.for_each([&](std::int64_t key, std::int64_t n) {
    units.units.push_back({static_cast<std::int32_t>(key >> 32),
                           static_cast<std::uint16_t>(key >> 16 & 65535),
                           chip_code[static_cast<std::size_t>(key & 65535)], n});
  });
  detail::sort_ledger_units(units, ref.countries);
  return units;
}

inventory_reading reconcile_inventory(const reference_data& ref, const ledger_units& ledger,
                                      const std::string& inventory_path, std::string_view text,
                                      const std::function<void(const reconciliation_row&)>& row)
{
  std::vector<std::string> notes;
  std::set<std::string> noted_chips;  // upper-cased
  // The ledger's codes, and after them those of entities and chips only the inventory names.
  dictionary entities = ledger.entities;
  dictionary chips    = ledger.chips;
  dictionary named;  // the inventory's entity ids, for the notes
  struct inventory_row {
    ledger_units::entry key;                // units: those reported
    std::int64_t line, column;              // of the entity field
    std::int64_t units_line, units_column;  // of the units field
  };
  std::vector<inventory_row> inventory;

  detail::csv_reader reader(text);
  const auto read = [&] {
    if (reader.next() != detail::csv_status::record) {
      throw parse_error(inventory_path, 1, 1, "MISSING_COLUMN", "the file has no header row");
    }
    const detail::csv_header header(reader.fields(), inventory_path);
    detail::refuse_lf_cr_line_ends(text, reader.position(), reader.line(), inventory_path);
    const int col[4]     = {header.find("entity"), header.find("country"), header.find("chip"),
                            header.find("units")};
    const char* names[4] = {"entity", "country", "chip", "units"};
    for (int k = 0; k < 4; ++k) {
      if (col[k] < 0) { throw parse_error(inventory_path, 1, 1, "MISSING_COLUMN", header.missing(names[k])); }
    }
    while (true) {
      const auto status = reader.next();
      if (status == detail::csv_status::end) { break; }
      if (status != detail::csv_status::record) {
        const detail::quote_defect defect = detail::quote_defect_of(status);
        throw parse_error(inventory_path, reader.error_line(), reader.error_column(), defect.reason,
                          defect.explanation);
      }
      const auto& f = reader.fields();
      if (static_cast<int>(f.size()) != header.size()) {
        throw detail::wrong_field_count_error(inventory_path, f, header);
      }
      const auto& entity  = f[static_cast<std::size_t>(col[0])];
      const auto& country = f[static_cast<std::size_t>(col[1])];
      const auto& chip    = f[static_cast<std::size_t>(col[2])];
      const auto& units   = f[static_cast<std::size_t>(col[3])];
      if (entity.value.empty()) {
        throw parse_error(inventory_path, entity.line, entity.column, "EMPTY_FIELD", "empty entity");
      }
      const int country_code = ref.countries.find(country.value);
      if (country_code < 0) {
        // Columns are found by name: a header row repeated inside the file holds its names here.
        const bool repeated_header = detail::to_upper(detail::trim(entity.value)) == "ENTITY" &&
                                     detail::to_upper(detail::trim(country.value)) == "COUNTRY";
        throw parse_error(
            inventory_path, country.line, country.column, "UNKNOWN_COUNTRY",
            detail::quoted(country.value) + " is not in the countries table" +
                (repeated_header
                     ? ": the line repeats the header row (files joined together?); remove it"
                     : detail::did_you_mean(country_spelled_alike(ref.countries, country.value))));
      }
      if (chip.value.empty()) {
        throw parse_error(inventory_path, chip.line, chip.column, "EMPTY_FIELD", "empty chip");
      }
      // They are written to reconciliation.csv, which must read back as the UTF-8 a log's ids are.
      for (const auto* text : {&entity, &chip}) {
        if (!detail::valid_utf8(text->value)) {
          throw parse_error(inventory_path, text->line, text->column, "BAD_ENCODING",
                            std::string(text == &entity ? "entity" : "chip") + " is not valid UTF-8");
        }
      }
      std::int64_t reported = 0;
      if (!detail::parse_int64(units.value, reported) || reported < 0) {
        // A count of digits past 64 bits is a non-negative integer, but not one the ledger can weigh.
        const bool digits =
            !units.value.empty() && units.value.find_first_not_of("0123456789") == std::string::npos;
        throw parse_error(
            inventory_path, units.line, units.column, "BAD_QUANTITY",
            detail::quoted(units.value) +
                (digits ? " is past 9223372036854775807 (2^63 - 1), the most units a row may report"
                        : " is not a non-negative integer" + detail::quantity_hint(units.value)));
      }
      // Chip keys match case-insensitively, as in shipment logs; others are upper-cased (as the
      // ad-hoc chips of the ledger's lines are).
      const int chip_row = ref.chips.find(chip.value);
      // Units of a chip no table and no stored line knows are unshipped: likely a spelling
      // (`H100 SXM`), which the rows alone would show as a diversion and a shortfall.
      constexpr std::size_t chip_notes = 10;
      if (chip_row < 0 && reported > 0 && ledger.chips.find(detail::to_upper(chip.value)) < 0 &&
          notes.size() < chip_notes && noted_chips.insert(detail::to_upper(chip.value)).second) {
        const std::string alike = chip_spelled_alike(ref.chips, chip.value);
        notes.push_back("capledger: note: " + inventory_path + ":" + std::to_string(chip.line) + ":" +
                        std::to_string(chip.column) + ": chip " + detail::quoted(chip.value) +
                        " is in neither the chips table nor the ledger: its units are unshipped" +
                        detail::did_you_mean(alike));
      }
      const std::int32_t chip_code =
          chip_row >= 0 ? chips.encode(ref.chips.rows[static_cast<std::size_t>(chip_row)].key)
                        : chips.encode(detail::to_upper(chip.value));
      named.encode(entity.value);
      inventory.push_back(
          {{entities.encode(entity.value), static_cast<std::uint16_t>(country_code), chip_code, reported},
           entity.line,
           entity.column,
           units.line,
           units.column});
    }
  };
  // Sorted by key, then file order: a key's second row, the first of all in the file, is the one
  // refused as listed twice, unless a bad line comes before it.
  std::optional<key_order> order;  // of the codes read
  const auto key_of = [&](const ledger_units::entry& k) { return (*order)(k.entity, k.country, k.chip); };
  const auto refuse_repeated_key = [&] {
    order.emplace(entities, ref.countries, chips);
    std::stable_sort(inventory.begin(), inventory.end(), [&](const inventory_row& a, const inventory_row& b) {
      return key_of(a.key) < key_of(b.key);
    });
    const inventory_row* repeated = nullptr;
    const inventory_row* first    = nullptr;  // the first row of `repeated`'s key
    for (std::size_t i = 1, group = 0; i < inventory.size(); ++i) {
      if (key_of(inventory[i].key) != key_of(inventory[i - 1].key)) {
        group = i;
      } else if (!repeated || inventory[i].line < repeated->line) {
        repeated = &inventory[i];
        first    = &inventory[group];
      }
    }
    if (repeated) {
      // Stable sort: the group's first row is the key's first in the file. Named, since the two
      // may be spelled differently (`de` and `DE`, `h100-sxm` and `H100-SXM`).
      throw parse_error(inventory_path, repeated->line, repeated->column, "DUPLICATE_ID",
                        "(entity, country, chip) is listed twice: the same key as line " +
                            std::to_string(first->line) +
                            " (country and chip compare without case); give each key one row");
    }
  };
  try {
    read();
  } catch (const parse_error&) {
    refuse_repeated_key();
    throw;
  }
  refuse_repeated_key();

  // The chips table's tpp by chip code, also for a key whose lines priced it otherwise (`tpp_per_unit`).
  std::vector<int> chip_row(static_cast<std::size_t>(chips.size()));
  for (std::int32_t k = 0; k < chips.size(); ++k) {
    chip_row[static_cast<std::size_t>(k)] = ref.chips.find(chips.text(k));
  }
  // Both are sorted by key, each key once: merged, a key of both is one row.
  auto shipped = ledger.units.begin();
  auto listed  = inventory.begin();
  while (shipped != ledger.units.end() || listed != inventory.end()) {
    const bool from_ledger = listed == inventory.end() ||
                             (shipped != ledger.units.end() && key_of(*shipped) <= key_of(listed->key));
    const bool reported_listed =
        listed != inventory.end() && (!from_ledger || key_of(*shipped) == key_of(listed->key));
    const ledger_units::entry& key  = from_ledger ? *shipped : listed->key;
    const inventory_row* listed_row = reported_listed ? &*listed : nullptr;
    reconciliation_row r;
    r.ledger_units   = from_ledger ? shipped->units : 0;
    r.reported_units = reported_listed ? listed->key.units : 0;
    if (from_ledger) { ++shipped; }
    if (reported_listed) { ++listed; }
    // Shipped and all returned: nothing to reconcile.
    if (!reported_listed && r.ledger_units == 0) { continue; }
    r.entity  = entities.text(key.entity);
    r.country = ref.countries.rows[key.country].iso2;
    r.chip    = chips.text(key.chip);
    if (const int c = chip_row[static_cast<std::size_t>(key.chip)]; c >= 0) {
      std::int64_t difference = 0, tpp = 0;
      if (__builtin_sub_overflow(r.reported_units, r.ledger_units, &difference) ||
          __builtin_mul_overflow(difference, ref.chips.rows[static_cast<std::size_t>(c)].tpp, &tpp)) {
        const std::string what = "difference in tpp exceeds 64 bits for " + detail::quoted(r.entity) + "/" +
                                 detail::quoted(r.country) + "/" + detail::quoted(r.chip) + ": " +
                                 std::to_string(r.reported_units) + " units reported, " +
                                 std::to_string(r.ledger_units) + " in the ledger";
        // A key the inventory does not list has no row to name.
        if (listed_row == nullptr) { throw config_error(inventory_path + ": " + what); }
        throw parse_error(inventory_path, listed_row->units_line, listed_row->units_column, "TPP_OVERFLOW",
                          what);
      }
      r.difference_tpp = tpp;
    }
    if (r.reported_units == r.ledger_units) {
      r.status = "match";
    } else if (!from_ledger) {
      r.status = "unshipped";  // reported installed where nothing was ever shipped: possible diversion
    } else {
      r.status = r.reported_units < r.ledger_units ? "shortfall" : "surplus";
    }
    row(r);
  }
  return {std::move(named), std::move(notes)};
}

int run_reconcile(const std::string& db_path, const std::string& inventory_path,
                  const report_options& options, std::ostream& out, std::ostream& diagnostics, bool replay)
{
  refuse_stdin_read_twice(options, {{"--inventory", inventory_path}});
  std::vector<std::string> read = reference_files_read(options);
  read.push_back(inventory_path);
  detail::refuse_colliding_paths({read, {}, {"--out", options.out_dir}, db_path});
  if (!options.out_dir.empty()) {
    detail::check_output_dir_replaceable(options.out_dir, {"reconciliation.csv", "summary.json"});
  }
  ledger_snapshot snapshot(db_path);  // the entities file and the state or lines of one commit
  const reference_data ref = load_ledger_reference(db_path, options);
  const ledger_units units = load_ledger_units(db_path, ref, options.as_of, replay, diagnostics);
  snapshot.release();  // before the inventory, which may be a pipe
  // Read once: the summary's hash is of what was reconciled (a pipe has nothing left to read twice).
  const std::string inventory = read_input_file(inventory_path);
  // Rows go straight into the CSV text, which is written once whole: an error leaves no part of it.
  detail::csv_text csv({"entity", "country", "chip", "ledger_units", "reported_units", "difference",
                        "difference_tpp", "status"});
  std::map<std::string, std::int64_t> by_status = {
      {"match", 0}, {"shortfall", 0}, {"surplus", 0}, {"unshipped", 0}};
  std::int64_t rows = 0;
  const inventory_reading reading =
      reconcile_inventory(ref, units, inventory_path, inventory, [&](const reconciliation_row& r) {
        char numbers[3][24];
        const auto digits = [&](int k, std::int64_t n) {
          return std::string_view(
              numbers[k],
              static_cast<std::size_t>(std::to_chars(numbers[k], numbers[k] + 24, n).ptr - numbers[k]));
        };
        const std::string difference = r.difference();
        csv.add({r.entity, r.country, r.chip, digits(0, r.ledger_units), digits(1, r.reported_units),
                 difference, r.difference_tpp ? digits(2, *r.difference_tpp) : std::string_view(), r.status});
        ++by_status[std::string(r.status)];
        ++rows;
      });
  const std::int64_t mismatches = rows - by_status["match"];
  nlohmann::ordered_json summary;
  summary["tool"]       = "capledger";
  summary["version"]    = CAPLEDGER_VERSION;
  summary["ledger"]     = db_path;
  summary["inventory"]  = {{"path", inventory_path}, {"sha256", detail::sha256_hex(inventory)}};
  summary["as_of"] =
      units.as_of ? nlohmann::ordered_json(format_date(*units.as_of)) : nlohmann::ordered_json(nullptr);
  summary["rows"]       = rows;
  summary["by_status"]  = by_status;
  summary["mismatches"] = mismatches;

  std::ostringstream text;
  text << "reconciliation: " << rows << " key(s): " << by_status["match"] << " match, "
       << by_status["shortfall"] << " shortfall, " << by_status["surplus"] << " surplus, "
       << by_status["unshipped"] << " unshipped\n";
  if (!options.out_dir.empty()) {
    std::map<std::string, std::string> files;
    files["reconciliation.csv"] = csv.take();
    files["summary.json"] = summary.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    detail::write_directory_atomically(options.out_dir, files);
    out << text.str();
  } else {
    out << csv.take();
  }
  for (const std::string& note : entity_variant_notes(units.entities, ref.entities, reading.entities)) {
    diagnostics << note << "\n";
  }
  for (const std::string& note : reading.notes) { diagnostics << note << "\n"; }
  diagnostics << (options.out_dir.empty()
                      ? text.str()
                      : "capledger: wrote reconciliation.csv and summary.json to " + options.out_dir + "\n");
  return mismatches > 0 ? 1 : 0;
}

// ---- check ------------------------------------------------------------------------------------

namespace {

/// The limits `check` weighs lines against.
enum limit : std::size_t { country_cap_limit, nveu_limit, lpp_annual_limit, lpp_order_limit, limit_count };

/// The key of @p which for a line of these parts, in the codes of the log they come from.
std::int64_t limit_key(limit which, std::int32_t entity, std::int32_t country, std::int32_t order, day_t date)
{
  switch (which) {
    case country_cap_limit:
      return country;
    case nveu_limit:
      return entity_country_key(entity, country);
    case lpp_annual_limit:
      return entity_year_key(entity, year_of(date));
    default:
      return order;
  }
}

/// The limit of @p which in force on @p date for a line to @p country (a cap of -1: none).
std::int64_t limit_on(const rule_set& rules, const rule_context& context, limit which, std::int32_t country,
                      day_t date)
{
  switch (which) {
    case country_cap_limit:
      return context.country_cap_tpp[country];
    case nveu_limit:
      return nveu_cap_on(rules, date);
    case lpp_annual_limit:
      return rules.lpp_per_consignee_year_tpp;
    default:
      return rules.lpp_per_order_tpp;
  }
}

/// Calls @p add(limit, key) for each limit that line @p i of @p c counts toward, its key in @p c's
/// codes: in-window lines of the country-cap pathways, of NVEU, of LPP (SPEC §4). The one place
/// that says which lines a limit sums, for the ledger's lines and the proposed ones alike.
template <typename Add>
void for_each_limit_of(const rule_set& rules, const rule_context& context, const shipment_columns& c,
                       std::size_t i, Add add)
{
  if (!rules.in_window(c.date[i])) { return; }
  const auto key = [&](limit which) {
    return limit_key(which, c.entity[i], c.country[i], c.order[i], c.date[i]);
  };
  if ((context.country_cap_pathways >> c.pathway[i]) & 1U) { add(country_cap_limit, key(country_cap_limit)); }
  if (c.pathway[i] == static_cast<std::uint8_t>(pathway::nveu)) { add(nveu_limit, key(nveu_limit)); }
  if (c.pathway[i] == static_cast<std::uint8_t>(pathway::lpp)) {
    add(lpp_annual_limit, key(lpp_annual_limit));
    add(lpp_order_limit, key(lpp_order_limit));
  }
}

__extension__ typedef __int128 wide;  // a running total minus a limit: two int64 values apart
constexpr wide lowest = -(static_cast<wide>(1) << 126);  // below any such difference

/// The ledger's lines of each limit key that proposed lines touch, in SPEC order, for a proposed
/// line dated before some of them: ingested, it comes before those dated after it (SPEC §2; the
/// ledger's lines of its own date come first), so they weigh after it.
class ledger_lines_by_key {
 public:
  /// What a key's ledger lines dated after some day add: their tpp, and the highest of (their
  /// running total from that day through a line, minus the limit in force on that line's date).
  struct after_day {
    std::int64_t tpp = 0;
    std::optional<wide> peak_over_limit;  ///< none: no line after that day
  };

  /// Keys in @p proposed's codes; @p context is the proposed log's.
  ledger_lines_by_key(const rule_set& rules, const rule_context& context, const shipment_log& proposed,
                      const shipment_log& ledger)
  {
    // The ledger's entity and order codes in the proposed log's (-1: no proposed line has it, so
    // no key of the proposed lines holds it).
    const auto translate = [](const dictionary& from, const dictionary& to) {
      std::vector<std::int32_t> code(static_cast<std::size_t>(from.size()));
      for (std::int32_t k = 0; k < from.size(); ++k) {
        code[static_cast<std::size_t>(k)] = to.find(from.text(k));
      }
      return code;
    };
    const std::vector<std::int32_t> entity = translate(ledger.entities, proposed.entities);
    const std::vector<std::int32_t> order  = translate(ledger.orders, proposed.orders);
    std::unordered_set<std::int64_t> asked[limit_count];  // the keys the proposed lines touch
    for (std::size_t i = 0; i < proposed.columns.date.size(); ++i) {
      for_each_limit_of(rules, context, proposed.columns, i,
                        [&](limit which, std::int64_t key) { asked[which].insert(key); });
    }
    const shipment_columns& c = ledger.columns;
    struct line {
      day_t date;
      std::size_t position;
      std::int64_t tpp, limit;
    };
    std::unordered_map<std::int64_t, std::vector<line>> lines[limit_count];
    for (std::size_t i = 0; i < c.date.size(); ++i) {
      const std::int32_t e = entity[static_cast<std::size_t>(c.entity[i])];
      const std::int32_t o =
          c.order[i] < 0 ? -1 : order[static_cast<std::size_t>(c.order[i])];  // LPP lines only
      for_each_limit_of(rules, context, c, i, [&](limit which, std::int64_t) {
        if ((which == lpp_order_limit ? o : which == country_cap_limit ? 0 : e) < 0) { return; }
        const std::int64_t key = limit_key(which, e, c.country[i], o, c.date[i]);
        if (asked[which].count(key) == 0) { return; }
        lines[which][key].push_back(
            {c.date[i], i, c.tpp[i], limit_on(rules, context, which, c.country[i], c.date[i])});
      });
    }
    for (std::size_t which = 0; which < limit_count; ++which) {
      for (auto& [key, of_key] : lines[which]) {
        std::sort(of_key.begin(), of_key.end(), [](const line& a, const line& b) {
          return std::tie(a.date, a.position) < std::tie(b.date, b.position);
        });
        key_lines& k         = keys_[which][key];
        std::int64_t through = 0;  // partial sums of one key's tpp stay within the ledger's |tpp| sum
        for (const line& l : of_key) {
          through += l.tpp;
          k.date.push_back(l.date);
          k.position.push_back(l.position);
          k.tpp_through.push_back(through);
          k.over_limit.push_back(static_cast<wide>(through) - l.limit);
        }
        k.build_tree();
      }
    }
  }

  /// The first of a key's ledger lines dated after @p day on which the running total passes the
  /// limit in force on its date, @p added before them (a proposed line and those before it):
  /// its position in the ledger log. Only for a key and day where `after` found such a line.
  [[nodiscard]] std::size_t first_crossing(limit which, std::int64_t key, day_t day, wide added) const
  {
    const key_lines& k      = keys_[which].at(key);
    const std::size_t j     = first_after(k, day);
    const std::int64_t base = j == 0 ? 0 : k.tpp_through[j - 1];
    return k.position[k.first_above(j, base - added)];  // `after` promised one: it is in range
  }

  [[nodiscard]] after_day after(limit which, std::int64_t key, day_t day) const
  {
    const auto at = keys_[which].find(key);
    if (at == keys_[which].end()) { return {}; }
    const key_lines& k      = at->second;
    const std::size_t first = first_after(k, day);
    if (first == k.date.size()) { return {}; }
    const std::int64_t before = first == 0 ? 0 : k.tpp_through[first - 1];
    return {k.tpp_through.back() - before, k.peak_from(first) - before};
  }

 private:
  struct key_lines {
    std::vector<day_t> date;
    std::vector<std::size_t> position;      ///< in the ledger log
    std::vector<std::int64_t> tpp_through;  ///< running total through each line
    std::vector<wide> over_limit;           ///< running total through each line - its limit
    /// A max tree over over_limit: node v (1 <= v < leaves) holds the highest of its range, leaf
    /// leaves + j is line j (lowest past the last). A scan instead cost each back-dated proposed
    /// line the key's lines up to the crossing: lines x key lines (bench/RESULTS.md).
    std::size_t leaves = 1;
    std::vector<wide> tree;

    [[nodiscard]] wide at(std::size_t v) const
    {
      if (v < leaves) { return tree[v]; }
      return v - leaves < over_limit.size() ? over_limit[v - leaves] : lowest;
    }
    void build_tree()
    {
      while (leaves < over_limit.size()) { leaves *= 2; }
      tree.assign(leaves, lowest);
      for (std::size_t v = leaves; v-- > 1;) { tree[v] = std::max(at(2 * v), at(2 * v + 1)); }
    }
    /// The highest over_limit from line @p j on.
    [[nodiscard]] wide peak_from(std::size_t j) const
    {
      wide best = lowest;
      for (std::size_t lo = j + leaves, hi = 2 * leaves; lo < hi; lo /= 2, hi /= 2) {
        if (lo % 2 == 1) { best = std::max(best, at(lo++)); }
        if (hi % 2 == 1) { best = std::max(best, at(--hi)); }
      }
      return best;
    }
    /// The first line from @p j on whose over_limit is above @p floor (the line count: none).
    [[nodiscard]] std::size_t first_above(std::size_t j, wide floor) const
    {
      if (j >= over_limit.size()) { return over_limit.size(); }
      std::size_t v = j + leaves;
      do {  // up while the subtrees right of j hold nothing above, then down to the leftmost leaf
        while (v % 2 == 0) { v /= 2; }
        if (at(v) > floor) {
          while (v < leaves) { v = at(2 * v) > floor ? 2 * v : 2 * v + 1; }
          return v - leaves;
        }
        ++v;
      } while ((v & (v - 1)) != 0);
      return over_limit.size();
    }
  };
  /// The first of @p k's lines dated after @p day (its size: none).
  static std::size_t first_after(const key_lines& k, day_t day)
  {
    return static_cast<std::size_t>(std::upper_bound(k.date.begin(), k.date.end(), day) - k.date.begin());
  }
  std::unordered_map<std::int64_t, key_lines> keys_[limit_count];
};

/// The UVEU share rules (SPEC §4) a UVEU entity's line of @p tpp to @p country can break, weighed
/// as limits on installed tpp once the line is in (@p installed: the entity's by country before
/// it): the most its country may hold (tier 2), the most outside tier 1 and, for a US HQ, outside
/// the US (the minimum shares turned around, exactly: a share of an integer total is met by an
/// integer part), each by @p row_of_limit(rule, limit, consumed before, breach). They
/// apply where the worldwide total is then above 0. A line that lifts that total from 0 or below
/// (returns left some country negative) brings every rule into force, and a return raises the
/// share of every other country and lowers the tier-1 or US share of a line in tier 1 or the US:
/// a rule then broken where no limit row weighs it is a @p rule_row.
template <typename RowOfLimit, typename RuleRow>
void weigh_uveu_shares(const reference_data& ref, const rule_context& context, const entity_info* info,
                       std::int32_t country, std::int64_t tpp,
                       const std::map<std::int32_t, std::int64_t>& installed, RowOfLimit row_of_limit,
                       RuleRow rule_row)
{
  const std::int32_t us = ref.countries.find("US");
  std::int64_t whole = tpp, here = 0, outside_tier1 = 0, outside_us = 0;
  for (const auto& [where, held] : installed) {
    whole += held;
    here += where == country ? held : 0;
    outside_tier1 += context.country_tier[where] != 1 ? held : 0;
    outside_us += where != us ? held : 0;
  }
  if (whole <= 0) { return; }
  const auto most = [whole](ppm_t share) {
    return static_cast<std::int64_t>(static_cast<wide>(share) * whole / ppm_one);
  };
  const rule_set& rules = ref.rules;
  const int tier        = context.country_tier[country];
  const bool us_hq      = us >= 0 && info != nullptr && info->hq_country == us;
  // A line adding tpp breaks a rule once its part is over the limit. A return takes as much from
  // the part as from the whole: it raises the part's share only where the part, with it in, holds
  // more than the whole (the rest net negative); over the limit otherwise, it lowers an over share.
  const auto weigh = [&](const char* rule, std::int64_t limit_tpp, std::int64_t before) {
    const std::int64_t with = before + tpp;
    row_of_limit(rule, limit_tpp, before, tpp > 0 ? with > limit_tpp : tpp < 0 && with > whole);
  };
  if (tier == 2) { weigh("UVEU_TIER2_SHARE", most(rules.uveu_max_tier2_country_share), here); }
  if (tier != 1) { weigh("UVEU_TIER1_SHARE", most(ppm_one - rules.uveu_min_tier1_share), outside_tier1); }
  if (us_hq && country != us) {
    weigh("UVEU_US_SHARE", most(ppm_one - rules.uveu_min_us_share_if_us_hq), outside_us);
  }
  if (tpp >= 0 && whole - tpp > 0) { return; }  // in force before a line that adds: no other share rises
  // The row has no limit columns: stderr names the part and its numbers.
  const auto holds = [whole](const std::string& part, std::int64_t held, std::int64_t limit_tpp) {
    return "with it, " + part + " " + std::to_string(held) + " of its " + std::to_string(whole) +
           " tpp worldwide, more than the " + std::to_string(limit_tpp) + " its share rule allows";
  };
  const std::int64_t tier2_most = most(rules.uveu_max_tier2_country_share);
  const std::pair<const std::int32_t, std::int64_t>* most_over =
      nullptr;  // the other tier-2 country most over
  for (const auto& held : installed) {
    if (held.first != country && context.country_tier[held.first] == 2 && held.second > tier2_most &&
        (most_over == nullptr || held.second > most_over->second)) {
      most_over = &held;
    }
  }
  if (most_over != nullptr) {
    const std::string& iso = ref.countries.rows[static_cast<std::size_t>(most_over->first)].iso2;
    rule_row("UVEU_TIER2_SHARE", holds("the entity holds in " + iso, most_over->second, tier2_most));
  }
  if (const std::int64_t limit_tpp = most(ppm_one - rules.uveu_min_tier1_share);
      tier == 1 && outside_tier1 > limit_tpp) {
    rule_row("UVEU_TIER1_SHARE", holds("the entity holds outside tier 1", outside_tier1, limit_tpp));
  }
  if (const std::int64_t limit_tpp = most(ppm_one - rules.uveu_min_us_share_if_us_hq);
      us_hq && country == us && outside_us > limit_tpp) {
    rule_row("UVEU_US_SHARE", holds("the entity holds outside the US", outside_us, limit_tpp));
  }
}

/// `ledger_limit_totals` of a replayed ledger: every line summed once, by key code.
class summed_totals final : public ledger_limit_totals {
 public:
  summed_totals(const reference_data& ref, const shipment_log& ledger)
      : entities_(ledger.entities), orders_(ledger.orders)
  {
    const rule_context context =
        make_rule_context(ref.rules, ref.countries, ref.entities, ledger, std::numeric_limits<day_t>::max());
    const shipment_columns& c = ledger.columns;
    for (std::size_t i = 0; i < c.date.size(); ++i) {
      for_each_limit_of(ref.rules, context, c, i,
                        [&](limit which, std::int64_t key) { totals_[which][key] += c.tpp[i]; });
      installed_[c.entity[i]][c.country[i]] += c.tpp[i];
    }
  }
  std::int64_t country_cap(std::int32_t country) override { return value(country_cap_limit, country); }
  std::int64_t nveu(std::string_view entity, std::int32_t country) override
  {
    const std::int32_t code = entities_.find(entity);
    return code < 0 ? 0 : value(nveu_limit, entity_country_key(code, country));
  }
  std::int64_t lpp_annual(std::string_view entity, std::int64_t year) override
  {
    const std::int32_t code = entities_.find(entity);
    return code < 0 ? 0 : value(lpp_annual_limit, entity_year_key(code, year));
  }
  std::int64_t lpp_order(std::string_view order) override
  {
    const std::int32_t code = orders_.find(order);
    return code < 0 ? 0 : value(lpp_order_limit, code);
  }
  std::map<std::int32_t, std::int64_t> installed(std::string_view entity) override
  {
    const auto at = installed_.find(entities_.find(entity));
    return at == installed_.end() ? std::map<std::int32_t, std::int64_t>{} : at->second;
  }

  /// Each limit total, keyed as the interface asks: @p each(name of the key, total, what @p other
  /// holds for that key).
  template <typename Each>
  void compare(ledger_limit_totals& other, Each each) const
  {
    for (const auto& [country, total] : totals_[country_cap_limit]) {
      each("country cap of country code " + std::to_string(country), total,
           other.country_cap(static_cast<std::int32_t>(country)));
    }
    for (const auto& [key, total] : totals_[nveu_limit]) {
      const std::string& entity = entities_.text(static_cast<std::int32_t>(key / 65536));
      each(
          "NVEU of (" + detail::terminal_text(entity) + ", country code " + std::to_string(key % 65536) + ")",
          total, other.nveu(entity, static_cast<std::int32_t>(key % 65536)));
    }
    for (const auto& [key, total] : totals_[lpp_annual_limit]) {
      // Keys of stored lines: their years (four digits) are not negative.
      const std::string& entity = entities_.text(static_cast<std::int32_t>(key / 16384));
      each("LPP of (" + detail::terminal_text(entity) + ", " + std::to_string(key % 16384) + ")", total,
           other.lpp_annual(entity, key % 16384));
    }
    // Every order of the ledger's LPP lines, also one whose lines all lie outside the window:
    // the running state keeps a row (a total) for each.
    for (std::int32_t code = 0; code < orders_.size(); ++code) {
      const std::string& order = orders_.text(code);
      each("LPP order " + detail::terminal_text(order), value(lpp_order_limit, code), other.lpp_order(order));
    }
  }

 private:
  dictionary entities_, orders_;
  std::unordered_map<std::int64_t, std::int64_t> totals_[limit_count];
  std::unordered_map<std::int32_t, std::map<std::int32_t, std::int64_t>> installed_;  // entity, country

  std::int64_t value(limit which, std::int64_t key) const
  {
    const auto at = totals_[which].find(key);
    return at == totals_[which].end() ? 0 : at->second;
  }
};

}  // namespace

std::unique_ptr<ledger_limit_totals> sum_limit_totals(const reference_data& ref, const shipment_log& ledger)
{
  return std::make_unique<summed_totals>(ref, ledger);
}

std::vector<std::string> limit_total_differences(const reference_data& ref, const shipment_log& ledger,
                                                 ledger_limit_totals& stored, std::size_t at_most)
{
  std::vector<std::string> differences;
  summed_totals(ref, ledger)
      .compare(stored, [&](const std::string& key, std::int64_t replayed, std::int64_t kept) {
        if (replayed != kept && differences.size() < at_most) {
          differences.push_back(key + ": replay " + std::to_string(replayed) + ", running state " +
                                std::to_string(kept));
        }
      });
  return differences;
}

void check_proposed(const reference_data& ref, const shipment_log& proposed, ledger_limit_totals& ledger,
                    const shipment_log* ledger_lines, const std::function<void(const proposed_check&)>& row)
{
  const rule_context context =
      make_rule_context(ref.rules, ref.countries, ref.entities, proposed, std::numeric_limits<day_t>::max());
  const shipment_columns& c = proposed.columns;
  // The ledger's total on line i's key of a limit, asked by the key's parts.
  const auto ledger_total = [&](limit which, std::size_t i) {
    switch (which) {
      case country_cap_limit:
        return ledger.country_cap(c.country[i]);
      case nveu_limit:
        return ledger.nveu(proposed.entities.text(c.entity[i]), c.country[i]);
      case lpp_annual_limit:
        return ledger.lpp_annual(proposed.entities.text(c.entity[i]), year_of(c.date[i]));
      default:
        return ledger.lpp_order(proposed.orders.text(c.order[i]));
    }
  };
  std::optional<ledger_lines_by_key> later;  // none: every proposed line comes after the ledger's
  if (ledger_lines != nullptr) { later.emplace(ref.rules, context, proposed, *ledger_lines); }
  // Each key the proposed lines touch (codes of the proposed log): the ledger's total, read when
  // first met, and the tpp of the proposed lines weighed so far.
  struct key_totals {
    std::int64_t ledger = 0, proposed = 0;
  };
  std::map<std::int64_t, key_totals> running[limit_count];
  // Each UVEU entity's installed tpp by country (codes of the proposed log): the ledger's, read
  // when first met, and the proposed lines weighed so far.
  std::map<std::int32_t, std::map<std::int32_t, std::int64_t>> uveu_installed;

  // The proposed lines weigh on one another in SPEC §2 order (date, then position), as they would
  // once ingested; each line's rows are then given in file order, as soon as every line before it
  // is weighed: a file in date order keeps one line's rows (all of them held 1.2 KB a row).
  std::vector<std::size_t> spec_order(static_cast<std::size_t>(c.size()));
  std::iota(spec_order.begin(), spec_order.end(), std::size_t{0});
  std::stable_sort(spec_order.begin(), spec_order.end(),
                   [&](std::size_t a, std::size_t b) { return c.date[a] < c.date[b]; });
  std::vector<std::vector<proposed_check>> rows_of_line(spec_order.size());
  // A line weighed has a row at least (an `ok` one where no limit applies): lines without rows
  // are those not weighed yet.
  std::size_t next_given = 0;  // the first line whose rows are not given yet
  for (const std::size_t i : spec_order) {
    const auto line                   = static_cast<std::int64_t>(i);
    std::vector<proposed_check>& rows = rows_of_line[i];
    key_totals* totals[limit_count]       = {};         // this line's keys' totals
    std::int64_t keys[limit_count]        = {};         // and the keys
    std::int64_t used_before[limit_count] = {};         // tpp before it in SPEC order
    ledger_lines_by_key::after_day after[limit_count];  // the ledger's lines after its date
    for_each_limit_of(ref.rules, context, c, i, [&](limit which, std::int64_t key) {
      auto [at, fresh] = running[which].try_emplace(key);
      if (fresh) { at->second.ledger = ledger_total(which, i); }
      totals[which] = &at->second;
      keys[which]   = key;
      if (later) { after[which] = later->after(which, key, c.date[i]); }
      used_before[which] = at->second.ledger - after[which].tpp + at->second.proposed;
    });
    proposed_check base;
    base.line                = line + 1;
    base.shipment_id         = std::string(proposed.shipment_id(line));
    base.date                = format_date(c.date[i]);
    base.entity              = proposed.entities.text(c.entity[i]);
    base.country             = ref.countries.rows[c.country[i]].iso2;
    base.pathway             = std::string(pathway_name(static_cast<pathway>(c.pathway[i])));
    base.tpp                 = c.tpp[i];
    const std::size_t before = rows.size();
    // A row of a limit; @p crossing names the ledger's later line a @p breach passes the limit on,
    // asked for where the line itself stays within.
    const auto row_of_limit = [&](const char* rule, std::int64_t limit_tpp, std::int64_t used, bool breach,
                                  const auto& crossing) {
      proposed_check r      = base;
      r.rule                = rule;
      r.limit_tpp           = std::to_string(limit_tpp);
      r.consumed_before_tpp = std::to_string(used);
      r.headroom_before_tpp = exact_difference(limit_tpp, used);
      r.status              = breach ? "breach" : "ok";
      if (breach && used + c.tpp[i] <= limit_tpp) {
        r.explanation =
            "with it, the running total passes the limit on the ledger's later line " + crossing();
      }
      rows.push_back(std::move(r));
    };
    // A rule without a limit the line breaches (no limit columns), and why where that is not plain.
    const auto rule_row = [&](const char* rule, std::string explanation) {
      proposed_check r = base;
      r.rule           = rule;
      r.status         = "breach";
      r.explanation    = std::move(explanation);
      rows.push_back(std::move(r));
    };
    // A line that adds tpp breaches a limit when the total passes it on the line, or, for a line
    // dated before some of the ledger's, on one of those (their peak over their limits).
    const auto limit_row = [&](const char* rule, limit which) {
      const std::int64_t limit_tpp    = limit_on(ref.rules, context, which, c.country[i], c.date[i]);
      const std::int64_t used         = used_before[which];
      const std::optional<wide>& peak = after[which].peak_over_limit;
      const bool passes_later         = peak && static_cast<wide>(used) + c.tpp[i] + *peak > 0;
      row_of_limit(rule, limit_tpp, used, c.tpp[i] > 0 && (used + c.tpp[i] > limit_tpp || passes_later), [&] {
        const std::size_t q =
            later->first_crossing(which, keys[which], c.date[i], static_cast<wide>(used) + c.tpp[i]);
        return detail::terminal_text(ledger_lines->shipment_id(static_cast<std::int64_t>(q))) + " (" +
               format_date(ledger_lines->columns.date[q]) + ")";
      });
      // An NVEU cap can fall with its phase: a total within the old cap crosses nothing until the
      // key's next line, so a return that leaves it over the new one is, once ingested, the line
      // report names (SPEC §2's crossing line), though it lowers the total.
      if (which == nveu_limit && c.tpp[i] < 0 && used + c.tpp[i] > limit_tpp) {
        rows.back().explanation =
            "a return, not a breach, but the running total after it (" + std::to_string(used + c.tpp[i]) +
            ") is over the cap in force on its date (" + std::to_string(limit_tpp) +
            "): once ingested, report names this line as the crossing line unless a line before it crossed";
      }
    };
    if (ref.rules.in_window(c.date[i])) {
      const int tier  = context.country_tier[c.country[i]];
      const auto path = static_cast<pathway>(c.pathway[i]);
      const bool adds = c.quantity[i] > 0;
      if (adds && tier == 3) { rule_row("PROHIBITED_DESTINATION", ""); }
      if (adds && context.is_unauthorized(path, c.entity[i], c.country[i], c.chip[i])) {
        rule_row("UNAUTHORIZED_PATHWAY", "");
      }
    }
    if (totals[country_cap_limit] != nullptr && context.country_cap_tpp[c.country[i]] >= 0) {
      limit_row("COUNTRY_CAP_EXCEEDED", country_cap_limit);
    }
    if (totals[lpp_order_limit] != nullptr) {
      limit_row("LPP_ORDER_LIMIT", lpp_order_limit);
      limit_row("LPP_ANNUAL_LIMIT", lpp_annual_limit);
    }
    if (totals[nveu_limit] != nullptr) { limit_row("NVEU_CAP_EXCEEDED", nveu_limit); }
    if (context.entity_is_uveu[static_cast<std::size_t>(c.entity[i])] != 0) {
      auto [at, fresh] = uveu_installed.try_emplace(c.entity[i]);
      if (fresh) { at->second = ledger.installed(base.entity); }
      const auto share_row = [&](const char* rule, std::int64_t limit_tpp, std::int64_t used, bool breach) {
        row_of_limit(rule, limit_tpp, used, breach, [] { return std::string(); });  // over with it in: none
      };
      weigh_uveu_shares(ref, context, ref.entities.find(base.entity), c.country[i], c.tpp[i], at->second,
                        share_row, rule_row);
      at->second[c.country[i]] += c.tpp[i];
    }
    if (rows.size() == before) {  // no limit applies (tier 1, or outside the counting window)
      proposed_check r = base;
      r.status         = "ok";
      rows.push_back(std::move(r));
    }
    for (key_totals* t : totals) {
      if (t != nullptr) { t->proposed += c.tpp[i]; }
    }
    for (; next_given < rows_of_line.size() && !rows_of_line[next_given].empty(); ++next_given) {
      for (const proposed_check& r : rows_of_line[next_given]) { row(r); }
      std::vector<proposed_check>().swap(rows_of_line[next_given]);
    }
  }
}

int run_check(const std::string& db_path, const std::string& proposed_path, const std::string& out_path,
              bool replay, const report_options& options, std::ostream& out, std::ostream& diagnostics)
{
  refuse_stdin_read_twice(options, {{"the proposed lines", proposed_path}});
  std::vector<std::string> read = reference_files_read(options);
  read.push_back(proposed_path);
  detail::refuse_colliding_paths({read, {{"--out", out_path}}, {}, db_path});
  // Begun before anything is read: an --out that is a directory, or that cannot be created, is
  // refused before the ledger and the proposed lines are.
  std::optional<detail::atomic_file_writer> out_file;
  if (!out_path.empty()) { out_file.emplace(out_path); }
  ledger_snapshot snapshot(db_path);  // the entities file and the state or lines of one commit
  const reference_data ref = load_ledger_reference(db_path, options);
  check_inputs inputs      = load_check_inputs(db_path, ref, proposed_path, replay, diagnostics);
  snapshot.release();
  for (const std::string& note : inputs.notes) { diagnostics << note << "\n"; }
  // Rows go to --out's staging file a mebibyte at a time, as they come; to stdout only once all
  // are made, so a run that fails prints none.
  detail::csv_text csv({"line", "shipment_id", "date", "entity", "country", "pathway", "tpp", "rule",
                        "limit_tpp", "consumed_before_tpp", "headroom_before_tpp", "status"});
  std::int64_t breaches = 0;
  check_proposed(ref, inputs.proposed, *inputs.ledger, inputs.ledger_lines ? &*inputs.ledger_lines : nullptr,
                 [&](const proposed_check& r) {
                   breaches += r.status == "breach" ? 1 : 0;
                   if (!r.explanation.empty()) {
                     diagnostics << "capledger: check: line " << r.line << " ("
                                 << detail::terminal_text(r.shipment_id) << "): " << r.rule << ": "
                                 << r.explanation << "\n";
                   }
                   const std::string line = std::to_string(r.line), tpp = std::to_string(r.tpp);
                   csv.add({line, r.shipment_id, r.date, r.entity, r.country, r.pathway, tpp, r.rule,
                            r.limit_tpp, r.consumed_before_tpp, r.headroom_before_tpp, r.status});
                   if (out_file && csv.size() >= (std::size_t{1} << 20)) { out_file->append(csv.take()); }
                 });
  if (out_file) {
    out_file->append(csv.take());
    out_file->commit();
  } else {
    out << csv.take();
  }
  diagnostics << "capledger: " << inputs.proposed.columns.size() << " proposed line(s), " << breaches
              << " breach(es)\n";
  return breaches > 0 ? 1 : 0;
}

}  // namespace capledger
