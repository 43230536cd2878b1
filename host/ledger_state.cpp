/// @file ledger_state.cpp
/// @brief The ledger's per-key running state (see ledger_state.hpp): extended at ingest, read by
/// `ledger report` instead of a replay of every stored line.
#include "ledger_state.hpp"

#include "terminal_text.hpp"

#include <capledger/error.hpp>

#include <algorithm>
#include <array>
#include <iterator>
#include <limits>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

namespace capledger::detail {

namespace {

// Every keyed table holds three integers per key; what they mean depends on the table:
//   totals   (records, units, tpp)
//   running  (total, crossing line or -1, running total just after the crossing)
//   first    (first line or -1, summed tpp, unused)
// Dictionary tables add the text, unique, and their key is the code (first-appearance order).
constexpr const char* state_schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS state_info(
  slot           INTEGER PRIMARY KEY CHECK (slot = 1),
  validity       TEXT NOT NULL,     -- sha256 of the countries, chips and rules the state follows
  lines          INTEGER NOT NULL,  -- lines folded in: ledger positions [0, lines)
  max_date       INTEGER,           -- latest date of those lines (the state's as_of)
  max_check_date INTEGER,           -- latest date of those lines inside the counting window
  entities       INTEGER NOT NULL,  -- dictionary sizes: the next code of each
  exporters      INTEGER NOT NULL,
  orders         INTEGER NOT NULL,
  chips          INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS st_entity(code INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS st_exporter(code INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS st_chip(code INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS st_order(code INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS st_order_crossed ON st_order(code) WHERE b >= 0;
CREATE TABLE IF NOT EXISTS st_country(key INTEGER PRIMARY KEY, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS st_country_cap(key INTEGER PRIMARY KEY, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS st_pair(key INTEGER PRIMARY KEY, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS st_nveu(key INTEGER PRIMARY KEY, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS st_lpp_annual(key INTEGER PRIMARY KEY, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS st_prohibited(key INTEGER PRIMARY KEY, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS st_unauth(key INTEGER PRIMARY KEY, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS st_line(line INTEGER PRIMARY KEY, date INTEGER NOT NULL, shipment_id TEXT NOT NULL,
                                   entity INTEGER NOT NULL, country INTEGER NOT NULL);
-- Parts added since the state's first version (ledgers of before gain them at their next ingest,
-- which rebuilds the state). Each is written with the validity and line count of state_info, so a
-- part that an older capledger did not extend with the rest no longer matches it and is not read.
CREATE TABLE IF NOT EXISTS state_parts(name TEXT PRIMARY KEY, validity TEXT NOT NULL, lines INTEGER NOT NULL);
-- 'order_parties': the (order, consignee, destination) of every in-window LPP line (balances).
CREATE TABLE IF NOT EXISTS st_order_party(order_code INTEGER NOT NULL, entity INTEGER NOT NULL,
                                          country INTEGER NOT NULL, PRIMARY KEY (order_code, entity, country))
                                          WITHOUT ROWID;
-- 'units': per (entity, country, chip) key (units_key) of every line, the lines and their net
-- units, (lines, units, 0) (reconcile); a key shipped and all returned keeps its row.
CREATE TABLE IF NOT EXISTS st_units(key INTEGER PRIMARY KEY, a INTEGER NOT NULL, b INTEGER NOT NULL, c INTEGER NOT NULL);
)sql";

constexpr const char* state_tables[] = {"st_entity",     "st_exporter",    "st_chip",   "st_order",
                                        "st_country",    "st_country_cap", "st_pair",   "st_nveu",
                                        "st_lpp_annual", "st_prohibited",  "st_unauth", "st_line"};
// The later parts' tables: where they are missing (an older ledger), the rest still stands for
// `ledger report` and `check`.
constexpr const char* part_tables[] = {"state_parts", "st_order_party", "st_units"};
/// A later part: its name in state_parts and the table that holds it.
struct state_part {
  const char* name;
  const char* table;
};
constexpr state_part order_parties{"order_parties", "st_order_party"};
constexpr state_part units_part{"units", "st_units"};
constexpr state_part later_parts[] = {order_parties, units_part};

/// The st_units key of (entity, country, chip) codes: entity_country_key * 65536 + chip.
constexpr std::int64_t units_key(std::int64_t entity, std::int64_t country, std::int64_t chip)
{
  return entity_country_key(entity, country) * 65536 + chip;
}

struct row {
  std::int64_t a = 0, b = 0, c = 0;
};
constexpr row totals_row{0, 0, 0};
constexpr row running_row{0, -1, 0};
constexpr row first_row{-1, 0, 0};

void add_total(row& r, std::int64_t quantity, std::int64_t tpp)
{
  r.a += 1;
  r.b += quantity;
  r.c += tpp;
}

/// The running-total rule of every limit: true when this line is the key's first crossing.
bool add_running(row& r, std::int64_t line, std::int64_t tpp, std::int64_t limit)
{
  r.a += tpp;
  if (r.b < 0 && r.a > limit) {
    r.b = line;
    r.c = r.a;
    return true;
  }
  return false;
}

void add_units(row& r, std::int64_t quantity)
{
  r.a += 1;
  r.b += quantity;
}

/// True when this line is the key's first line.
bool add_first(row& r, std::int64_t line, std::int64_t tpp)
{
  r.b += tpp;
  if (r.a < 0) {
    r.a = line;
    return true;
  }
  return false;
}

/// Rows of one integer-keyed table that a night touches: read on first use, written back at flush.
class int_table {
 public:
  int_table(sql_connection& db, const std::string& name, row fresh)
      : fresh_(fresh),
        select_(db, "SELECT a, b, c FROM " + name + " WHERE key = ?"),
        upsert_(db, "INSERT OR REPLACE INTO " + name + "(key, a, b, c) VALUES (?, ?, ?, ?)")
  {
  }
  row& get(std::int64_t key)
  {
    const auto it = cache_.find(key);
    if (it != cache_.end()) { return it->second; }
    row r = fresh_;
    select_.bind(1, key);
    if (select_.step()) { r = {select_.int64(0), select_.int64(1), select_.int64(2)}; }
    select_.reset();
    return cache_.emplace(key, r).first->second;
  }
  void flush()
  {
    for (const auto& [key, r] : cache_) {
      upsert_.bind(1, key).bind(2, r.a).bind(3, r.b).bind(4, r.c);
      upsert_.run();
    }
  }

 private:
  row fresh_;
  sql_statement select_, upsert_;
  std::unordered_map<std::int64_t, row> cache_;
};

/// Rows of one integer-keyed table of sums alone, which a night adds to: written as an upsert per
/// key at flush, never read (its sums are bounded by the ledger's |quantity| sum, under 2^63).
class sum_table {
 public:
  sum_table(sql_connection& db, const std::string& name)
      : upsert_(db, upsert_sql(name, 1)), upsert_batch_(db, upsert_sql(name, batch))
  {
  }
  row& get(std::int64_t key) { return added_[key]; }
  void flush()
  {
    // In key order: each write lands next to the last in the b-tree (0.4 s less of 4 s, measured
    // on a night of 1,000,000 lines). Rows go `batch` to a statement: one step for many rows
    // (its 284,000 rows took 0.20-0.25 s, 0.10-0.13 s so).
    std::vector<std::pair<std::int64_t, row>> rows(added_.begin(), added_.end());
    std::sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    std::size_t i = 0;
    for (; i + batch <= rows.size(); i += batch) {
      for (std::size_t j = 0; j < batch; ++j) {
        const auto& [key, r] = rows[i + j];
        const int at         = static_cast<int>(4 * j);
        upsert_batch_.bind(at + 1, key).bind(at + 2, r.a).bind(at + 3, r.b).bind(at + 4, r.c);
      }
      upsert_batch_.run();
    }
    for (; i < rows.size(); ++i) {
      const auto& [key, r] = rows[i];
      upsert_.bind(1, key).bind(2, r.a).bind(3, r.b).bind(4, r.c);
      upsert_.run();
    }
  }

 private:
  static constexpr std::size_t batch = 64;
  static std::string upsert_sql(const std::string& name, std::size_t rows)
  {
    std::string sql = "INSERT INTO " + name + "(key, a, b, c) VALUES (?, ?, ?, ?)";
    for (std::size_t j = 1; j < rows; ++j) { sql += ", (?, ?, ?, ?)"; }
    return sql + " ON CONFLICT(key) DO UPDATE SET a = a + excluded.a, b = b + excluded.b, c = c + excluded.c";
  }
  sql_statement upsert_, upsert_batch_;
  std::unordered_map<std::int64_t, row> added_;
};

/// A dictionary table: text -> code in first-appearance order, with one row per code.
class dict_table {
 public:
  dict_table(sql_connection& db, const std::string& name, row fresh, std::int64_t& next_code)
      : fresh_(fresh),
        next_(next_code),
        find_(db, "SELECT code, a, b, c FROM " + name + " WHERE text = ?"),
        update_(db, "UPDATE " + name + " SET a = ?, b = ?, c = ? WHERE code = ?"),
        insert_(db, "INSERT INTO " + name + "(code, text, a, b, c) VALUES (?, ?, ?, ?, ?)")
  {
  }
  /// The code of @p text, assigned (the next one, or @p fixed) when it is new.
  std::int64_t code_of(const std::string& text, std::int64_t fixed = -1)
  {
    find_.bind(1, text);
    entry e{fresh_, {}, false};
    std::int64_t code = 0;
    if (find_.step()) {
      code = find_.int64(0);
      e.r  = {find_.int64(1), find_.int64(2), find_.int64(3)};
    } else {
      code     = fixed >= 0 ? fixed : next_++;
      e.text   = text;
      e.is_new = true;
    }
    find_.reset();
    cache_.emplace(code, std::move(e));
    return code;
  }
  row& at(std::int64_t code) { return cache_.at(code).r; }
  void flush()
  {
    for (const auto& [code, e] : cache_) {
      if (e.is_new) {
        insert_.bind(1, code).bind(2, e.text).bind(3, e.r.a).bind(4, e.r.b).bind(5, e.r.c);
        insert_.run();
      } else {
        update_.bind(1, e.r.a).bind(2, e.r.b).bind(3, e.r.c).bind(4, code);
        update_.run();
      }
    }
  }

 private:
  struct entry {
    row r;
    std::string text;
    bool is_new;
  };
  row fresh_;
  std::int64_t& next_;
  sql_statement find_, update_, insert_;
  std::unordered_map<std::int64_t, entry> cache_;
};

/// The `state_info` row.
struct state_info {
  std::string validity;
  std::int64_t lines = 0;
  std::optional<day_t> max_date, max_check_date;
  std::int64_t entities = 0, exporters = 0, orders = 0, chips = 0;
};

/// The validity key's parts, one per table, separated by spaces.
std::vector<std::pair<std::string, const file_fingerprint*>> validity_parts(const reference_data& ref)
{
  return {{"countries:" + ref.countries_file.sha256, &ref.countries_file},
          {"chips:" + ref.chips_file.sha256, &ref.chips_file},
          {"rules:" + ref.rules_file.sha256, &ref.rules_file}};
}

std::string validity_key(const reference_data& ref)
{
  std::string key;
  for (const auto& part : validity_parts(ref)) { key += (key.empty() ? "" : " ") + part.first; }
  return key;
}

bool has_state_tables(sql_connection& db)
{
  return db.query_int("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'state_info'")
             .value_or(0) > 0;
}

/// How many tables of @p tables are there.
template <std::size_t N>
std::int64_t tables_present(sql_connection& db, const char* const (&tables)[N])
{
  std::string names;
  for (const char* table : tables) { names += std::string(names.empty() ? "'" : ", '") + table + "'"; }
  return db.query_int("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN (" + names + ")")
      .value_or(0);
}

/// Whether every table of @p tables is there (a dropped state table is damage: replay instead).
template <std::size_t N>
bool has_every_table(sql_connection& db, const char* const (&tables)[N])
{
  return tables_present(db, tables) == static_cast<std::int64_t>(N);
}

std::optional<state_info> read_info(sql_connection& db)
{
  sql_statement q(db,
                  "SELECT validity, lines, max_date, max_check_date, entities, exporters, orders, chips "
                  "FROM state_info WHERE slot = 1");
  if (!q.step()) { return std::nullopt; }
  state_info info;
  info.validity = std::string(q.text(0));
  info.lines    = q.int64(1);
  if (!q.is_null(2)) { info.max_date = static_cast<day_t>(q.int64(2)); }
  if (!q.is_null(3)) { info.max_check_date = static_cast<day_t>(q.int64(3)); }
  info.entities  = q.int64(4);
  info.exporters = q.int64(5);
  info.orders    = q.int64(6);
  info.chips     = q.int64(7);
  return info;
}

void write_info(sql_connection& db, const state_info& info)
{
  sql_statement put(
      db,
      "INSERT OR REPLACE INTO state_info(slot, validity, lines, max_date, max_check_date, entities, "
      "exporters, orders, chips) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)");
  put.bind(1, info.validity).bind(2, info.lines);
  if (info.max_date) {
    put.bind(3, std::int64_t{*info.max_date});
  } else {
    put.bind_null(3);
  }
  if (info.max_check_date) {
    put.bind(4, std::int64_t{*info.max_check_date});
  } else {
    put.bind_null(4);
  }
  put.bind(5, info.entities).bind(6, info.exporters).bind(7, info.orders).bind(8, info.chips);
  put.run();
  // Written by `fold` with the rest: the parts stand for the same lines under the same tables.
  sql_statement part(db, "INSERT OR REPLACE INTO state_parts(name, validity, lines) VALUES (?, ?, ?)");
  for (const state_part& p : later_parts) {
    part.bind(1, p.name).bind(2, info.validity).bind(3, info.lines);
    part.run();
  }
}

/// Whether @p part of the state stands for the same lines under the same tables as @p info; else
/// whether its table is missing (a ledger of a capledger before it) or it is stale (one ingested
/// since by such a capledger, which extends the rest, or rebuilds it and clears state_parts).
enum class part_status { current, missing, stale };
part_status part_of(sql_connection& db, const state_info& info, const state_part& part)
{
  const char* const tables[] = {"state_parts", part.table};
  if (!has_every_table(db, tables)) { return part_status::missing; }
  sql_statement q(db, "SELECT validity, lines FROM state_parts WHERE name = ?");
  q.bind(1, part.name);
  return q.step() && q.text(0) == info.validity && q.int64(1) == info.lines ? part_status::current
                                                                            : part_status::stale;
}

/// Folds the lines of @p log (ledger positions first_line + i) into the state: all of them into
/// the totals, the in-window ones into the checks in (date, input position) order. The caller
/// has made sure that they come after every line already folded in, in that order.
void fold(sql_connection& db, state_info& info, const reference_data& ref, const shipment_log& log,
          std::int64_t first_line)
{
  dict_table entities(db, "st_entity", totals_row, info.entities);
  dict_table exporters(db, "st_exporter", totals_row, info.exporters);
  dict_table orders(db, "st_order", running_row, info.orders);
  dict_table chips(db, "st_chip", totals_row, info.chips);
  int_table country(db, "st_country", totals_row), country_cap(db, "st_country_cap", running_row);
  int_table pairs(db, "st_pair", totals_row), nveu(db, "st_nveu", running_row);
  int_table lpp_annual(db, "st_lpp_annual", running_row);
  int_table prohibited(db, "st_prohibited", first_row), unauthorized(db, "st_unauth", first_row);
  sum_table units(db, "st_units");

  // The log's codes, in its own first-appearance order, to the ledger's: new strings get the
  // next codes in that order, which is the order a replay of every line would give them.
  const auto map_codes = [](const dictionary& d, dict_table& table) {
    std::vector<std::int32_t> codes(static_cast<std::size_t>(d.size()));
    for (std::int32_t k = 0; k < d.size(); ++k) {
      codes[static_cast<std::size_t>(k)] = static_cast<std::int32_t>(table.code_of(d.text(k)));
    }
    return codes;
  };
  const std::vector<std::int32_t> entity_code   = map_codes(log.entities, entities);
  const std::vector<std::int32_t> exporter_code = map_codes(log.exporters, exporters);
  const std::vector<std::int32_t> order_code    = map_codes(log.orders, orders);
  std::vector<std::uint16_t> chip_code(log.chips.rows.size());
  const auto reference_chips = static_cast<std::int64_t>(ref.chips.rows.size());
  for (std::size_t k = 0; k < chip_code.size(); ++k) {
    const auto code =
        chips.code_of(log.chips.rows[k].key,
                      static_cast<std::int64_t>(k) < reference_chips ? static_cast<std::int64_t>(k) : -1);
    chip_code[k] = static_cast<std::uint16_t>(code);
  }

  // The rule context of the night's own codes: tiers, caps, pathways, chips. Entities play no
  // part here (see the header: their rules are decided at report time).
  const rule_context rules =
      make_rule_context(ref.rules, ref.countries, entity_table{}, log, std::numeric_limits<day_t>::max());
  const shipment_columns& c = log.columns;
  const std::int64_t n      = c.size();

  for (std::int64_t i = 0; i < n; ++i) {
    const auto k         = static_cast<std::size_t>(i);
    const std::int32_t e = entity_code[static_cast<std::size_t>(c.entity[k])];
    add_total(country.get(c.country[k]), c.quantity[k], c.tpp[k]);
    add_total(entities.at(e), c.quantity[k], c.tpp[k]);
    add_total(chips.at(chip_code[c.chip[k]]), c.quantity[k], c.tpp[k]);
    add_total(exporters.at(exporter_code[static_cast<std::size_t>(c.exporter[k])]), c.quantity[k], c.tpp[k]);
    add_total(pairs.get(entity_country_key(e, c.country[k])), c.quantity[k], c.tpp[k]);
    add_units(units.get(units_key(e, c.country[k], chip_code[c.chip[k]])), c.quantity[k]);
    if (!info.max_date || c.date[k] > *info.max_date) { info.max_date = c.date[k]; }
  }

  std::vector<std::int64_t> order;  // in-window lines in (date, input position) order
  for (std::int64_t i = 0; i < n; ++i) {
    const day_t d = c.date[static_cast<std::size_t>(i)];
    if (d >= rules.window_start && d <= rules.window_end) { order.push_back(i); }
  }
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t x, std::int64_t y) {
    return c.date[static_cast<std::size_t>(x)] < c.date[static_cast<std::size_t>(y)];
  });

  std::vector<std::int64_t> named;  // lines that became a crossing or a first line
  std::set<std::tuple<std::int64_t, std::int64_t, std::int64_t>> parties;  // (order, entity, country)
  for (const std::int64_t i : order) {
    const auto k                     = static_cast<std::size_t>(i);
    const std::int64_t line          = first_line + i;
    const std::int64_t tpp           = c.tpp[k];
    const std::uint16_t country_code = c.country[k];
    const std::int32_t e             = entity_code[static_cast<std::size_t>(c.entity[k])];
    const auto path                  = static_cast<pathway>(c.pathway[k]);
    bool names                       = false;
    if ((rules.country_cap_pathways >> c.pathway[k]) & 1U) {
      const std::int64_t cap = rules.country_cap_tpp[country_code];
      names |= add_running(country_cap.get(country_code), line, tpp,
                           cap >= 0 ? cap : std::numeric_limits<std::int64_t>::max());
    }
    if (path == pathway::nveu) {
      names |= add_running(nveu.get(entity_country_key(e, country_code)), line, tpp,
                           nveu_cap_on(ref.rules, c.date[k]));
    }
    if (path == pathway::lpp) {
      parties.emplace(order_code[static_cast<std::size_t>(c.order[k])], e, country_code);
      names |= add_running(orders.at(order_code[static_cast<std::size_t>(c.order[k])]), line, tpp,
                           rules.lpp_per_order_tpp);
      names |= add_running(lpp_annual.get(entity_year_key(e, year_of(c.date[k]))), line, tpp,
                           rules.lpp_per_consignee_year_tpp);
    }
    if (c.quantity[k] > 0) {
      if (rules.country_tier[country_code] == 3) {
        names |= add_first(prohibited.get(entity_country_key(e, country_code)), line, tpp);
      }
      // UVEU, NVEU and AIA lines are candidates whatever the entity's status (decided at report
      // time); ACA depends on the chip alone, which the validity key fixes.
      const bool candidate = path == pathway::uveu || path == pathway::nveu || path == pathway::aia ||
                             (path == pathway::aca && rules.chip_datacenter[c.chip[k]] != 0);
      if (candidate) {
        names |=
            add_first(unauthorized.get(entity_country_pathway_key(e, country_code, c.pathway[k])), line, tpp);
      }
    }
    if (names) { named.push_back(i); }
    info.max_check_date = c.date[k];  // ascending within the night, and not before the stored ones
  }

  sql_statement put_line(
      db, "INSERT OR REPLACE INTO st_line(line, date, shipment_id, entity, country) VALUES (?, ?, ?, ?, ?)");
  for (const std::int64_t i : named) {
    const auto k = static_cast<std::size_t>(i);
    put_line.bind(1, first_line + i).bind(2, std::int64_t{c.date[k]}).bind(3, log.shipment_id(i));
    put_line.bind(4, std::int64_t{entity_code[static_cast<std::size_t>(c.entity[k])]})
        .bind(5, std::int64_t{c.country[k]});
    put_line.run();
  }
  sql_statement put_party(
      db, "INSERT OR IGNORE INTO st_order_party(order_code, entity, country) VALUES (?, ?, ?)");
  for (const auto& [order_code, entity, country_code] : parties) {
    put_party.bind(1, order_code).bind(2, entity).bind(3, country_code);
    put_party.run();
  }
  for (dict_table* t : {&entities, &exporters, &orders, &chips}) { t->flush(); }
  for (int_table* t : {&country, &country_cap, &pairs, &nveu, &lpp_annual, &prohibited, &unauthorized}) {
    t->flush();
  }
  units.flush();
  info.lines += n;
}

/// Builds the state of @p all, every line of the ledger, in @p db's empty state tables.
void build_state(sql_connection& db, const reference_data& ref, const shipment_log& all)
{
  state_info info;
  info.validity = validity_key(ref);
  info.chips    = static_cast<std::int64_t>(ref.chips.rows.size());
  fold(db, info, ref, all, 0);
  write_info(db, info);
}

}  // namespace

void create_state_tables(sql_connection& db)
{
  db.exec(state_schema_sql);
}

state_update update_ledger_state(sql_connection& db, const reference_data& ref, const shipment_log& night,
                                 std::int64_t first_line, const std::function<shipment_log()>& replay)
{
  // A table dropped since (damage) is made anew, empty: the state then no longer stands for the
  // stored lines, and is rebuilt rather than extended.
  const bool whole = has_every_table(db, state_tables) && has_every_table(db, part_tables);
  create_state_tables(db);
  const std::string validity     = validity_key(ref);
  std::optional<state_info> info = read_info(db);
  // A state without its later parts (an older ledger's) is rebuilt, with them, once.
  bool extend = whole && info && info->validity == validity && info->lines == first_line &&
                std::all_of(std::begin(later_parts), std::end(later_parts), [&](const state_part& part) {
                  return part_of(db, *info, part) == part_status::current;
                });
  if (extend && info->max_check_date) {
    for (const day_t d : night.columns.date) {
      if (ref.rules.in_window(d) && d < *info->max_check_date) {
        extend = false;  // a back-dated in-window line: running totals change before stored crossings
        break;
      }
    }
  }
  if (extend) {
    fold(db, *info, ref, night, first_line);
    write_info(db, *info);
    return state_update::incremental;
  }
  for (const char* table : state_tables) { db.exec(std::string("DELETE FROM ") + table); }
  for (const char* table : part_tables) { db.exec(std::string("DELETE FROM ") + table); }
  if (first_line == 0) {  // the ledger held no line before this night: the night is everything
    build_state(db, ref, night);
    return state_update::incremental;
  }
  build_state(db, ref, replay());
  return state_update::rebuilt;
}

aggregation stored_state::aggregate(const rule_context& context) const
{
  aggregation agg = stored_;
  agg.lines_used  = line_count_;
  for (std::size_t c = 0; c < agg.country_cap_crossing.size(); ++c) {
    if (context.country_cap_tpp[c] < 0) { agg.country_cap_crossing[c] = crossing{}; }
  }
  agg.unauthorized.clear();
  for (const keyed_first_line& u : stored_.unauthorized) {
    const auto path    = static_cast<pathway>(u.key % 8);
    const auto entity  = static_cast<std::int32_t>(u.key / 8 / 65536);
    const auto country = static_cast<std::uint16_t>(u.key / 8 % 65536);
    // ACA candidates were kept only for datacenter chips: all of them are unauthorized.
    if (path == pathway::aca || context.is_unauthorized(path, entity, country, 0)) {
      agg.unauthorized.push_back(u);
    }
  }
  return agg;
}

namespace {

/// The state's info when it stands for every stored line under @p ref; else nullopt and why.
std::optional<state_info> current_state_info(sql_connection& db, const reference_data& ref,
                                             std::string& why_not)
{
  std::optional<state_info> info;
  if (has_state_tables(db)) { info = read_info(db); }
  const std::int64_t stored_lines = db.query_int("SELECT MAX(seq) FROM lines").value_or(0);
  if (!info && stored_lines > 0 && (has_state_tables(db) || tables_present(db, state_tables) > 0)) {
    // init makes the tables and every ingest writes the record: lines without it are damage (a
    // ledger from before the state has none of its tables).
    why_not = "the running state is damaged (its record is missing)";
  } else if (!info) {
    why_not = no_state_yet;
  } else if (info->validity != validity_key(ref)) {
    why_not = state_of_other_tables;
    info.reset();
  } else if (info->lines != stored_lines) {
    why_not = "the running state is out of step with the stored lines";
    info.reset();
  } else if (!has_every_table(db, state_tables)) {
    why_not = "the running state is damaged (a table is missing)";
    info.reset();
  }
  return info;
}

/// `current_state_info`, where the state also stands for the stored lines at @p as_of (nullopt:
/// the latest date): it has every line up to its latest date, so an earlier as-of needs the lines.
std::optional<state_info> state_info_at(sql_connection& db, const reference_data& ref,
                                        std::optional<day_t> as_of, std::string& why_not)
{
  std::optional<state_info> info = current_state_info(db, ref, why_not);
  if (info && as_of && info->max_date && *as_of < *info->max_date) {
    why_not = "--as-of is before the ledger's latest date";
    info.reset();
  }
  return info;
}

/// The running totals of the state's limit keys, read one key at a time: `check` asks about the
/// keys of a few proposed lines, not every key of the ledger. Holds the connection, and the read
/// transaction it was opened in, until the last key is read.
class stored_totals final : public ledger_limit_totals {
 public:
  explicit stored_totals(sql_connection&& db)
      : db_(std::move(db)),
        entity_(db_, "SELECT code FROM st_entity WHERE text = ?"),
        order_(db_, "SELECT a FROM st_order WHERE text = ?"),
        country_cap_(db_, "SELECT a FROM st_country_cap WHERE key = ?"),
        nveu_(db_, "SELECT a FROM st_nveu WHERE key = ?"),
        lpp_annual_(db_, "SELECT a FROM st_lpp_annual WHERE key = ?"),
        pairs_(db_, "SELECT key, c FROM st_pair WHERE key >= ? AND key < ?")
  {
  }
  stored_totals(const stored_totals&)            = delete;
  stored_totals& operator=(const stored_totals&) = delete;
  ~stored_totals() override
  {
    try {
      db_.exec("COMMIT");  // a read transaction: nothing to lose; the statements go next, then the connection
    } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): ending a read cannot lose data
    }
  }
  std::int64_t country_cap(std::int32_t country) override { return running(country_cap_, country); }
  std::int64_t nveu(std::string_view entity, std::int32_t country) override
  {
    const auto code = entity_code(entity);
    return code ? running(nveu_, entity_country_key(*code, country)) : 0;
  }
  std::int64_t lpp_annual(std::string_view entity, std::int64_t year) override
  {
    const auto code = entity_code(entity);
    return code ? running(lpp_annual_, entity_year_key(*code, year)) : 0;
  }
  std::int64_t lpp_order(std::string_view order) override
  {
    return first_int(order_.bind(1, order)).value_or(0);
  }
  std::map<std::int32_t, std::int64_t> installed(std::string_view entity) override
  {
    std::map<std::int32_t, std::int64_t> by_country;
    const auto code = entity_code(entity);
    if (!code) { return by_country; }
    pairs_.bind(1, entity_country_key(*code, 0)).bind(2, entity_country_key(*code + 1, 0));
    while (pairs_.step()) {
      by_country[static_cast<std::int32_t>(pairs_.int64(0) % 65536)] = pairs_.int64(1);
    }
    pairs_.reset();
    return by_country;
  }

 private:
  sql_connection db_;  ///< first: destroyed after the statements on it
  sql_statement entity_, order_, country_cap_, nveu_, lpp_annual_, pairs_;

  /// The first column of @p q's first row (nullopt: no row); resets @p q.
  static std::optional<std::int64_t> first_int(sql_statement& q)
  {
    std::optional<std::int64_t> value;
    if (q.step()) { value = q.int64(0); }
    q.reset();
    return value;
  }
  std::optional<std::int64_t> entity_code(std::string_view entity)
  {
    return first_int(entity_.bind(1, entity));
  }
  /// A key without a row has no line: its running total is 0.
  static std::int64_t running(sql_statement& q, std::int64_t key)
  {
    return first_int(q.bind(1, key)).value_or(0);
  }
};

}  // namespace

std::vector<std::string> tables_unlike_state(sql_connection& db, const reference_data& ref)
{
  std::vector<std::string> differing;
  const std::optional<state_info> info = has_state_tables(db) ? read_info(db) : std::nullopt;
  if (!info) { return differing; }
  std::istringstream stored(info->validity);
  for (const auto& [part, file] : validity_parts(ref)) {
    std::string stored_part;
    stored >> stored_part;
    if (stored_part != part) { differing.push_back(file->path); }
  }
  return differing;
}

std::unique_ptr<ledger_limit_totals> stored_limit_totals(
    sql_connection& db, const reference_data& ref, std::string& why_not, std::optional<day_t> weighed_from,
    const std::function<void(day_t)>& read_lines_after,
    const std::function<void(std::string_view)>& each_entity)
{
  const std::optional<state_info> info = current_state_info(db, ref, why_not);
  if (!info) { return nullptr; }
  if (weighed_from && info->max_check_date && *weighed_from < *info->max_check_date) {
    read_lines_after(*weighed_from);
  }
  if (each_entity) {
    sql_statement q(db, "SELECT text FROM st_entity");
    while (q.step()) { each_entity(q.text(0)); }
  }
  return std::make_unique<stored_totals>(std::move(db));
}

std::unique_ptr<stored_state> load_ledger_state(sql_connection& db, const reference_data& ref,
                                                std::optional<day_t> as_of, std::string& why_not,
                                                std::int64_t rejects_read)
{
  const std::optional<state_info> info = state_info_at(db, ref, as_of, why_not);
  if (!info) { return nullptr; }

  auto state         = std::make_unique<stored_state>();
  stored_state& s    = *state;
  aggregation& agg   = s.stored_;
  s.line_count_      = info->lines;
  s.latest_          = info->max_date;
  const auto damaged = [&](const char* what) {
    why_not = std::string("the running state is damaged (") + what + ")";
    return nullptr;
  };

  const auto read_dictionary = [&](const char* table, dictionary& d, std::vector<group_total>& totals,
                                   std::int64_t count) {
    totals.assign(static_cast<std::size_t>(count), {});
    sql_statement q(db, std::string("SELECT code, text, a, b, c FROM ") + table + " ORDER BY code");
    while (q.step()) {
      if (q.int64(0) != d.size() || d.encode(q.text(1)) != q.int64(0) || q.int64(0) >= count) {
        return false;
      }
      totals[static_cast<std::size_t>(q.int64(0))] = {q.int64(2), q.int64(3), q.int64(4)};
    }
    return d.size() == count;
  };
  if (!read_dictionary("st_entity", s.entities_, agg.by_entity, info->entities)) {
    return damaged("entities");
  }
  if (!read_dictionary("st_exporter", s.exporters_, agg.by_exporter, info->exporters)) {
    return damaged("exporters");
  }

  s.chips_ = ref.chips;
  agg.by_chip.assign(static_cast<std::size_t>(info->chips), {});
  {
    sql_statement q(db, "SELECT code, text, a, b, c FROM st_chip ORDER BY code");
    while (q.step()) {
      const std::int64_t code = q.int64(0);
      if (code >= info->chips) { return damaged("chips"); }
      if (code < static_cast<std::int64_t>(ref.chips.rows.size())) {
        if (ref.chips.rows[static_cast<std::size_t>(code)].key != q.text(1)) { return damaged("chips"); }
      } else if (code != static_cast<std::int64_t>(s.chips_.rows.size()) ||
                 s.chips_.add_adhoc(q.text(1)) != code) {
        return damaged("chips");
      }
      agg.by_chip[static_cast<std::size_t>(code)] = {q.int64(2), q.int64(3), q.int64(4)};
    }
    if (static_cast<std::int64_t>(s.chips_.rows.size()) != info->chips) { return damaged("chips"); }
  }

  const auto countries = ref.countries.rows.size();
  // Every key must name codes the dictionaries and the countries table hold: a damaged key
  // (a flipped bit) would index past them when the report is rendered.
  const auto valid_entity  = [&](std::int64_t e) { return e >= 0 && e < info->entities; };
  const auto valid_country = [&](std::int64_t c) {
    return c >= 0 && c < static_cast<std::int64_t>(countries);
  };
  const auto valid_pair_key = [&](std::int64_t key) {
    return key >= 0 && valid_entity(key / 65536) && valid_country(key % 65536);
  };
  const auto valid_pathway_key = [&](std::int64_t key) {
    return key >= 0 && key % 8 < pathway_count && valid_pair_key(key / 8);
  };
  const auto valid_year_key = [&](std::int64_t key) { return key >= 0 && valid_entity(key / 16384); };
  agg.by_country.assign(countries, {});
  agg.country_cap_total.assign(countries, 0);
  agg.country_cap_crossing.assign(countries, {});
  {
    sql_statement q(db, "SELECT key, a, b, c FROM st_country ORDER BY key");
    while (q.step()) {
      if (!valid_country(q.int64(0))) { return damaged("countries"); }
      agg.by_country[static_cast<std::size_t>(q.int64(0))] = {q.int64(1), q.int64(2), q.int64(3)};
    }
    sql_statement cap(db, "SELECT key, a, b, c FROM st_country_cap ORDER BY key");
    while (cap.step()) {
      if (!valid_country(cap.int64(0))) { return damaged("countries"); }
      agg.country_cap_total[static_cast<std::size_t>(cap.int64(0))]    = cap.int64(1);
      agg.country_cap_crossing[static_cast<std::size_t>(cap.int64(0))] = {cap.int64(2), cap.int64(3)};
    }
  }
  {
    sql_statement q(db, "SELECT key, a, b, c FROM st_pair ORDER BY key");
    while (q.step()) {
      if (!valid_pair_key(q.int64(0))) { return damaged("pairs"); }
      agg.by_entity_country.push_back({static_cast<std::int32_t>(q.int64(0) / 65536),
                                       static_cast<std::uint16_t>(q.int64(0) % 65536),
                                       {q.int64(1), q.int64(2), q.int64(3)}});
    }
  }
  const auto read_running = [&](const std::string& sql, std::vector<keyed_running_total>& out,
                                const auto& valid_key) {
    sql_statement q(db, sql);
    while (q.step()) {
      if (!valid_key(q.int64(0))) { return false; }
      out.push_back({q.int64(0), q.int64(1), {q.int64(2), q.int64(3)}});
    }
    return true;
  };
  if (!read_running("SELECT key, a, b, c FROM st_nveu ORDER BY key", agg.nveu, valid_pair_key)) {
    return damaged("NVEU totals");
  }
  if (!read_running("SELECT key, a, b, c FROM st_lpp_annual WHERE b >= 0 ORDER BY key", agg.lpp_annual,
                    valid_year_key)) {
    return damaged("LPP annual totals");
  }
  {
    sql_statement q(db, "SELECT code, a, b, c, text FROM st_order WHERE b >= 0 ORDER BY code");
    while (q.step()) {
      if (q.int64(0) < 0 || q.int64(0) >= info->orders) { return damaged("orders"); }
      agg.lpp_order.push_back({q.int64(0), q.int64(1), {q.int64(2), q.int64(3)}});
      s.orders_.emplace(static_cast<std::int32_t>(q.int64(0)), std::string(q.text(4)));
    }
  }
  const auto read_first = [&](const std::string& sql, std::vector<keyed_first_line>& out,
                              const auto& valid_key) {
    sql_statement q(db, sql);
    while (q.step()) {
      // Every such key has a first line; a negative one (what crossings use for "none") would
      // be looked up as a line nothing stored.
      if (!valid_key(q.int64(0)) || q.int64(1) < 0) { return false; }
      out.push_back({q.int64(0), q.int64(1), q.int64(2)});
    }
    return true;
  };
  if (!read_first("SELECT key, a, b FROM st_prohibited ORDER BY key", agg.prohibited, valid_pair_key)) {
    return damaged("prohibited destinations");
  }
  if (!read_first("SELECT key, a, b FROM st_unauth ORDER BY key", agg.unauthorized, valid_pathway_key)) {
    return damaged("unauthorized pathways");
  }

  // The lines that crossings and first lines name: what the findings print of them.
  std::vector<std::int64_t> named;
  for (const crossing& x : agg.country_cap_crossing) { named.push_back(x.line); }
  for (const auto* list : {&agg.nveu, &agg.lpp_order, &agg.lpp_annual}) {
    for (const auto& r : *list) { named.push_back(r.first_crossing.line); }
  }
  for (const auto* list : {&agg.prohibited, &agg.unauthorized}) {
    for (const auto& r : *list) { named.push_back(r.first_line); }
  }
  sql_statement line(db, "SELECT date, shipment_id, entity, country FROM st_line WHERE line = ?");
  for (const std::int64_t l : named) {
    if (l < 0 || s.lines_.count(l) != 0) { continue; }
    line.bind(1, l);
    if (!line.step() || !valid_entity(line.int64(2)) || !valid_country(line.int64(3))) {
      return damaged("line details");
    }
    s.lines_.emplace(
        l, line_detail{static_cast<day_t>(line.int64(0)), std::string(line.text(1)),
                       static_cast<std::int32_t>(line.int64(2)), static_cast<std::uint16_t>(line.int64(3))});
    line.reset();
  }

  // Inputs and rejects, as a replay lists them: files in ingest order, rejects file by file.
  {
    sql_statement q(db, "SELECT path, bytes, sha256, lines_read FROM files ORDER BY file_id");
    while (q.step()) {
      s.files_.push_back({std::string(q.text(0)), q.int64(1), std::string(q.text(2)), q.int64(3)});
      s.lines_read_ += q.int64(3);
    }
    // (LIMIT -1: no limit.)
    sql_statement r(db,
                    "SELECT f.path, r.line, r.col, r.reason, r.detail, r.raw FROM rejects r "
                    "JOIN files f ON f.file_id = r.file_id ORDER BY r.file_id, r.seq LIMIT ?");
    r.bind(1, rejects_read < 0 ? std::int64_t{-1} : rejects_read);
    while (r.step()) {
      s.rejects_.push_back({std::string(r.text(0)), r.int64(1), r.int64(2), std::string(r.text(3)),
                            std::string(r.text(4)), std::string(r.text(5))});
    }
    s.rejected_ = static_cast<std::int64_t>(s.rejects_.size());
    if (rejects_read >= 0 && s.rejected_ == rejects_read) {
      s.rejected_ =
          db.query_int("SELECT COUNT(*) FROM rejects r JOIN files f ON f.file_id = r.file_id").value_or(0);
    }
  }
  return state;
}

namespace {

/// The texts of the state's entities by code, which every key must find; nullopt where the
/// dictionary is not the one @p info counts (damage).
std::optional<std::vector<std::string>> entity_texts(sql_connection& db, const state_info& info)
{
  std::vector<std::string> entity;
  sql_statement q(db, "SELECT code, text FROM st_entity ORDER BY code");
  while (q.step()) {
    if (q.int64(0) != static_cast<std::int64_t>(entity.size())) { return std::nullopt; }
    entity.emplace_back(q.text(1));
  }
  if (static_cast<std::int64_t>(entity.size()) != info.entities) { return std::nullopt; }
  return entity;
}

/// `state_info_at`, where @p part is current too; otherwise nullopt and why: @p missing or @p stale.
std::optional<state_info> state_info_with(sql_connection& db, const reference_data& ref,
                                          std::optional<day_t> as_of, const state_part& part,
                                          const char* missing, const char* stale, std::string& why_not)
{
  std::optional<state_info> info = state_info_at(db, ref, as_of, why_not);
  if (!info) { return std::nullopt; }
  if (const part_status status = part_of(db, *info, part); status != part_status::current) {
    why_not = status == part_status::missing ? missing : stale;
    return std::nullopt;
  }
  return info;
}

}  // namespace

std::optional<stored_cap_usage> load_stored_cap_usage(sql_connection& db, const reference_data& ref,
                                                      std::optional<day_t> as_of, std::string& why_not)
{
  const std::optional<state_info> info = state_info_with(
      db, ref, as_of, order_parties, state_without_order_parties, state_with_stale_order_parties, why_not);
  if (!info) { return std::nullopt; }
  const auto damaged = [&](const char* what) {
    why_not = std::string("the running state is damaged (") + what + ")";
    return std::nullopt;
  };
  stored_cap_usage stored;
  stored.lines      = info->lines;
  cap_usage& usage  = stored.usage;
  usage.as_of       = as_of.value_or(info->max_date.value_or(std::numeric_limits<day_t>::max()));
  const auto& rows  = ref.countries.rows;
  const auto iso_of = [&](std::int64_t c) -> const std::string* {
    return c >= 0 && c < static_cast<std::int64_t>(rows.size()) ? &rows[static_cast<std::size_t>(c)].iso2
                                                                : nullptr;
  };
  const std::optional<std::vector<std::string>> entities = entity_texts(db, *info);
  if (!entities) { return damaged("entities"); }
  const std::vector<std::string>& entity = *entities;
  for (const std::string& text : entity) { usage.entities.encode(text); }
  const auto entity_of = [&](std::int64_t e) -> const std::string* {
    return e >= 0 && e < static_cast<std::int64_t>(entity.size()) ? &entity[static_cast<std::size_t>(e)]
                                                                  : nullptr;
  };

  usage.country_cap.assign(rows.size(), {});
  {
    sql_statement q(db, "SELECT key, a, b FROM st_country_cap");
    while (q.step()) {
      if (iso_of(q.int64(0)) == nullptr) { return damaged("countries"); }
      usage.country_cap[static_cast<std::size_t>(q.int64(0))] = {q.int64(1), q.int64(2) >= 0};
    }
  }
  {
    sql_statement q(db, "SELECT key, a, b FROM st_nveu");
    while (q.step()) {
      const std::int64_t key = q.int64(0);
      const std::string* e   = key >= 0 ? entity_of(key / 65536) : nullptr;
      const std::string* c   = iso_of(key % 65536);
      if (e == nullptr || c == nullptr) { return damaged("NVEU totals"); }
      usage.nveu[{*e, *c}] = {q.int64(1), q.int64(2) >= 0};
    }
  }
  {
    sql_statement q(db, "SELECT key, a, b FROM st_lpp_annual");
    while (q.step()) {
      const std::int64_t key = q.int64(0);
      const std::string* e   = key >= 0 ? entity_of(key / 16384) : nullptr;
      if (e == nullptr) { return damaged("LPP annual totals"); }
      usage.lpp_annual[{*e, static_cast<int>(key % 16384)}] = {q.int64(1), q.int64(2) >= 0};
    }
  }
  {
    // Orders with a counted line are those with a party; st_order also keeps the others.
    sql_statement q(db,
                    "SELECT p.entity, p.country, o.text, o.a, o.b FROM st_order_party p "
                    "LEFT JOIN st_order o ON o.code = p.order_code");
    while (q.step()) {
      const std::string* e = entity_of(q.int64(0));
      const std::string* c = iso_of(q.int64(1));
      if (e == nullptr || c == nullptr || q.is_null(2)) { return damaged("LPP order parties"); }
      cap_usage::order_used& o = usage.lpp_order[std::string(q.text(2))];
      o.tpp                    = q.int64(3);
      o.crossed                = q.int64(4) >= 0;
      o.entities.insert(*e);
      o.countries.insert(*c);
    }
  }
  return stored;
}

std::optional<stored_units> load_stored_units(sql_connection& db, const reference_data& ref,
                                              std::optional<day_t> as_of, std::string& why_not)
{
  const std::optional<state_info> info =
      state_info_with(db, ref, as_of, units_part, state_without_units, state_with_stale_units, why_not);
  if (!info) { return std::nullopt; }
  const auto damaged = [&](const char* what) {
    why_not = std::string("the running state is damaged (") + what + ")";
    return std::nullopt;
  };
  const std::optional<std::vector<std::string>> entity = entity_texts(db, *info);
  if (!entity) { return damaged("entities"); }
  stored_units stored;
  // The units' dictionary codes of the state's entity and chip codes.
  std::vector<std::int32_t> entity_code, chip_code;
  for (const std::string& text : *entity) { entity_code.push_back(stored.units.entities.encode(text)); }
  // Chip keys by the state's codes: the table's spelling, or an ad-hoc chip's upper-cased key.
  {
    sql_statement q(db, "SELECT code, text FROM st_chip ORDER BY code");
    while (q.step()) {
      if (q.int64(0) != static_cast<std::int64_t>(chip_code.size())) { return damaged("chips"); }
      chip_code.push_back(stored.units.chips.encode(q.text(1)));
    }
    if (static_cast<std::int64_t>(chip_code.size()) != info->chips) { return damaged("chips"); }
  }
  stored.lines             = info->lines;
  stored.units.as_of       = as_of ? as_of : info->max_date;
  const auto entities      = static_cast<std::int64_t>(entity_code.size());
  const auto chips         = static_cast<std::int64_t>(chip_code.size());
  const auto country_count = static_cast<std::int64_t>(ref.countries.rows.size());
  sql_statement q(db, "SELECT key, a, b FROM st_units");
  while (q.step()) {
    const std::int64_t key = q.int64(0);
    const std::int64_t e = key / 65536 / 65536, c = key / 65536 % 65536, k = key % 65536;
    if (key < 0 || e >= entities || c >= country_count || k >= chips || q.int64(1) <= 0) {
      return damaged("units");
    }
    stored.units.units.push_back({entity_code[static_cast<std::size_t>(e)], static_cast<std::uint16_t>(c),
                                  chip_code[static_cast<std::size_t>(k)], q.int64(2)});
  }
  sort_ledger_units(stored.units, ref.countries);
  return stored;
}

namespace {

/// How a keyed table's key reads (the key functions of backend.hpp); `text`: a dictionary's text.
enum class key_shape { text, country, entity_country, entity_year, entity_country_pathway };

/// A table whose rows stand for keys, and what its three integers hold (see `state_schema_sql`).
struct keyed_table {
  const char* name;
  key_shape shape;
  const char* const* columns;  ///< three names; null: unused
};

constexpr const char* totals_columns[]  = {"records", "units", "tpp"};
constexpr const char* running_columns[] = {"running total", "crossing line", "total at the crossing"};
constexpr const char* first_columns[]   = {"first line", "tpp", nullptr};

// Every state table but st_line: a row there for a line nothing names is never read, and the
// line's row is written anew when something does.
constexpr keyed_table keyed_tables[] = {{"st_entity", key_shape::text, totals_columns},
                                        {"st_exporter", key_shape::text, totals_columns},
                                        {"st_chip", key_shape::text, totals_columns},
                                        {"st_order", key_shape::text, running_columns},
                                        {"st_country", key_shape::country, totals_columns},
                                        {"st_country_cap", key_shape::country, running_columns},
                                        {"st_pair", key_shape::entity_country, totals_columns},
                                        {"st_nveu", key_shape::entity_country, running_columns},
                                        {"st_lpp_annual", key_shape::entity_year, running_columns},
                                        {"st_prohibited", key_shape::entity_country, first_columns},
                                        {"st_unauth", key_shape::entity_country_pathway, first_columns}};

/// A later part's rows as `stray_state_rows` compares them: up to four integer columns, by name.
struct part_columns {
  state_part part;
  const char* select;
  const char* columns[4];
};
constexpr part_columns later_part_columns[] = {
    {order_parties,
     "SELECT order_code, entity, country, 0 FROM st_order_party",
     {"order code", "entity code", "country code", nullptr}},
    {units_part, "SELECT key, a, b, c FROM st_units", {"key", "lines", "units", "c"}}};

}  // namespace

std::vector<std::string> stray_state_rows(sql_connection& db, const reference_data& ref,
                                          const shipment_log& replay, std::size_t at_most)
{
  // Which rows the stored lines give is what the writer itself writes: the state it builds from
  // them, in memory. Any other row is one no line accounts for.
  sql_connection built(":memory:", sql_connection::mode::create);
  create_state_tables(built);
  build_state(built, ref, replay);

  // Keys named in the state's own codes; a stray key may name codes past its tables.
  sql_statement entity(db, "SELECT text FROM st_entity WHERE code = ?");
  const auto entity_name = [&](std::int64_t code) {
    entity.bind(1, code);
    std::string name = entity.step() ? terminal_text(entity.text(0)) : "entity code " + std::to_string(code);
    entity.reset();
    return name;
  };
  const auto country_name = [&](std::int64_t code) {
    return code < static_cast<std::int64_t>(ref.countries.rows.size())
               ? ref.countries.rows[static_cast<std::size_t>(code)].iso2
               : "country code " + std::to_string(code);
  };
  const auto key_name = [&](key_shape shape, std::int64_t key) {
    switch (shape) {
      case key_shape::country:
        return country_name(key);
      case key_shape::entity_country:
        return "(" + entity_name(key / 65536) + ", " + country_name(key % 65536) + ")";
      case key_shape::entity_year:
        return "(" + entity_name(key / 16384) + ", " + std::to_string(key % 16384) + ")";
      default:
        return "(" + entity_name(key / 8 / 65536) + ", " + country_name(key / 8 % 65536) + ", " +
               (key % 8 < pathway_count ? std::string(pathway_name(static_cast<pathway>(key % 8)))
                                        : "pathway code " + std::to_string(key % 8)) +
               ")";
    }
  };

  std::vector<std::string> stray;
  for (const keyed_table& t : keyed_tables) {
    const bool by_text     = t.shape == key_shape::text;
    const std::string key  = by_text ? "text" : "key";
    const std::string code = by_text ? "code" : "key";
    sql_statement row(db, "SELECT " + key + ", " + code + ", a, b, c FROM " + t.name + " ORDER BY " + code);
    sql_statement held(built, "SELECT 1 FROM " + std::string(t.name) + " WHERE " + key + " = ?");
    while (stray.size() < at_most && row.step()) {
      if (by_text) {
        held.bind(1, row.text(0));
      } else {
        held.bind(1, row.int64(0));
      }
      const bool written = held.step();
      held.reset();
      if (written) { continue; }
      std::string text = std::string(t.name) + " ";
      if (by_text) {
        text += quoted(row.text(0)) + ", code ";
      } else if (row.int64(1) >= 0) {  // a negative key names nothing: its number says which row
        text += key_name(t.shape, row.int64(1)) + ", key ";
      } else {
        text += "key ";
      }
      text += std::to_string(row.int64(1));
      for (int k = 0; k < 3 && t.columns[k] != nullptr; ++k) {
        text += (k == 0 ? ": " : ", ") + std::string(t.columns[k]) + " " + std::to_string(row.int64(2 + k));
      }
      stray.push_back(std::move(text));
    }
  }
  // The later parts, where current, row for row both ways: also the counts no output prints and
  // a party an order names on other lines too are what the lines write, or damage.
  const std::optional<state_info> info = read_info(db);
  for (const part_columns& part : later_part_columns) {
    if (!info || part_of(db, *info, part.part) != part_status::current) { continue; }
    const auto rows_of = [&](sql_connection& from) {
      std::set<std::array<std::int64_t, 4>> rows;
      sql_statement q(from, part.select);
      while (q.step()) { rows.insert({q.int64(0), q.int64(1), q.int64(2), q.int64(3)}); }
      return rows;
    };
    const auto stored = rows_of(db), written = rows_of(built);
    const auto name = [&](const std::array<std::int64_t, 4>& r) {
      std::string text = std::string(part.part.table) + " ";
      for (int k = 0; k < 4 && part.columns[k] != nullptr; ++k) {
        text += (k == 0 ? "" : ", ") + std::string(part.columns[k]) + " " + std::to_string(r[k]);
      }
      return text;
    };
    for (const auto& r : stored) {
      if (stray.size() < at_most && written.count(r) == 0) { stray.push_back(name(r)); }
    }
    for (const auto& r : written) {
      if (stray.size() < at_most && stored.count(r) == 0) {
        stray.push_back(name(r) + " missing (the stored lines write it)");
      }
    }
  }
  return stray;
}

}  // namespace capledger::detail
