/// @file ledger_state.hpp
/// @brief The ledger's per-key running state: every aggregate `ledger report` renders, kept in
/// the database and extended at each ingest, in the same transaction as the night's lines, so
/// that a report reads per-key rows instead of replaying every stored line.
///
/// The state is the CPU backend's aggregation of all stored lines at as_of = the ledger's latest
/// date, held in a form that can be extended: running totals of every key (not only the crossed
/// ones), the dictionaries in first-appearance order (so codes are the codes a replay assigns),
/// and the date, shipment id, entity and country of every line a crossing or first line names.
///
/// Validity. The state was computed under one countries table, chips table and rule set; their
/// content hashes form its validity key, and a report under other tables replays. The entities
/// file is deliberately not part of the key: the only aggregate that depends on it is
/// UNAUTHORIZED_PATHWAY for UVEU, NVEU and AIA lines, whose authorization depends on
/// (entity, country, pathway) alone. The state keeps first line and tpp of every such key (in
/// window, quantity > 0) whatever the entity's status, and the report keeps those that the
/// entities file in force makes unauthorized; UVEU shares and entity columns are computed at
/// report time from stored per-pair totals. So replacing the entities file never forces a replay.
///
/// Extension. Crossings are "first line in (date, input position) order whose running total
/// exceeds the limit in force on its date". A night whose in-window lines all date on or after
/// the latest in-window date already stored comes, in that order, entirely after the stored
/// lines (equal dates: later input position), so processing only the night's lines continues
/// every running total exactly. Totals are order-free sums. Any other night (a back-dated
/// in-window line), a state computed under other tables, or a state missing or out of step with
/// the lines table is rebuilt inside the ingest transaction from a replay of every stored line;
/// a stored line that the ingest's tables do not accept refuses the night.
#pragma once

#include <capledger/checks.hpp>
#include <capledger/ledger.hpp>
#include <capledger/report.hpp>

#include "ledger_db.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace capledger::detail {

/// @brief Creates the state tables when missing (ledgers created before them gain them at ingest).
void create_state_tables(sql_connection& db);

/// @brief How `update_ledger_state` brought the state up to date.
enum class state_update {
  incremental,  ///< the night's lines were folded in
  rebuilt       ///< rebuilt from a replay of every stored line
};

/// @brief Brings the stored state up to date with @p night, whose lines were just appended at
/// ledger positions [first_line, first_line + night lines). Runs inside the ingest transaction.
/// @param replay returns every stored line (the night's included) as one log, for a rebuild
/// @throw what @p replay throws (a stored line that @p ref's tables do not accept): the caller
///        rolls the night back
[[nodiscard]] state_update update_ledger_state(sql_connection& db, const reference_data& ref,
                                               const shipment_log& night, std::int64_t first_line,
                                               const std::function<shipment_log()>& replay);

/// @brief The stored state, read back as a report source.
class stored_state final : public report_source {
 public:
  [[nodiscard]] const dictionary& entities() const override { return entities_; }
  [[nodiscard]] const dictionary& exporters() const override { return exporters_; }
  [[nodiscard]] const chip_table& chips() const override { return chips_; }
  [[nodiscard]] std::string order_id(std::int32_t code) const override { return orders_.at(code); }
  [[nodiscard]] line_detail line(std::int64_t line) const override { return lines_.at(line); }
  [[nodiscard]] const std::vector<input_file>& files() const override { return files_; }
  [[nodiscard]] std::int64_t lines_read() const override { return lines_read_; }
  [[nodiscard]] std::int64_t lines_accepted() const override { return line_count_; }
  [[nodiscard]] std::int64_t rejected() const override { return rejected_; }

  /// The stored rejects read (`load_ledger_state`'s `rejects_read`: the first ones, or all), in
  /// ingest order; `rejected()` counts them all.
  [[nodiscard]] const std::vector<rejected_line>& rejects() const { return rejects_; }
  /// The latest date of the stored lines; nullopt for a ledger without lines.
  [[nodiscard]] std::optional<day_t> latest_date() const { return latest_; }
  /// The aggregation the CPU backend would compute over every stored line under @p context
  /// (whose as_of is on or after the latest date); UNAUTHORIZED_PATHWAY follows its entities.
  [[nodiscard]] aggregation aggregate(const rule_context& context) const;

 private:
  friend std::unique_ptr<stored_state> load_ledger_state(sql_connection&, const reference_data&,
                                                         std::optional<day_t>, std::string&, std::int64_t);
  dictionary entities_, exporters_;
  chip_table chips_;
  std::unordered_map<std::int32_t, std::string> orders_;  ///< crossed orders only
  std::unordered_map<std::int64_t, line_detail> lines_;   ///< lines the aggregates name
  std::vector<input_file> files_;
  std::vector<rejected_line> rejects_;
  std::int64_t rejected_   = 0;  ///< every stored reject of a stored file, read or not
  std::int64_t lines_read_ = 0, line_count_ = 0;
  std::optional<day_t> latest_;
  aggregation stored_;  ///< `unauthorized` holds every candidate key
};

/// @brief Reads the stored state when it can stand for a replay under @p ref at @p as_of
/// (nullopt: the latest date); otherwise returns null and says why in @p why_not.
/// Call inside a read transaction.
/// Why no state stands for the stored lines, where callers act on the reason (`ledger verify`).
inline constexpr const char* no_state_yet = "the ledger has no running state yet";
inline constexpr const char* state_of_other_tables =
    "the running state follows other countries, chips or rules tables";
/// Why the state cannot stand for `ledger balances` where it stands for `ledger report`: it has no
/// such part (an earlier capledger's ledger), or one that an earlier capledger did not extend.
inline constexpr const char* state_without_order_parties =
    "the running state has no consignees and destinations of LPP orders yet: the next ingest adds them";
inline constexpr const char* state_with_stale_order_parties =
    "the running state's consignees and destinations of LPP orders do not stand for the same lines and "
    "tables as the rest of it (a capledger without them ingested since): the next ingest rebuilds them";
/// Why the state cannot stand for `reconcile` where it stands for `ledger report` (the same two cases).
inline constexpr const char* state_without_units =
    "the running state has no units per (entity, country, chip) yet: the next ingest adds them";
inline constexpr const char* state_with_stale_units =
    "the running state's units per (entity, country, chip) do not stand for the same lines and tables "
    "as the rest of it (a capledger without them ingested since): the next ingest rebuilds them";

/// @param rejects_read how many of the stored rejects to read, the first ones (-1: all); the rest
///        are only counted. `ledger report` without `--rejects` needs the few it notes, not the
///        raw text of every reject a ledger has gathered in its years (4,000,000 held a gigabyte).
[[nodiscard]] std::unique_ptr<stored_state> load_ledger_state(sql_connection& db, const reference_data& ref,
                                                              std::optional<day_t> as_of,
                                                              std::string& why_not,
                                                              std::int64_t rejects_read = -1);

/// @brief What `ledger balances` reads of the stored state: each cap key's usage, by the key's text.
struct stored_cap_usage {
  cap_usage usage;
  std::int64_t lines = 0;  ///< the stored lines it stands for
};

/// @brief The cap usage the stored state gives at @p as_of (nullopt: the latest date) where it can
/// stand for a replay, under the same test as `load_ledger_state`, and holds its later part with
/// the LPP orders' consignees and destinations; otherwise nullopt and why in @p why_not.
/// Call inside a read transaction.
[[nodiscard]] std::optional<stored_cap_usage> load_stored_cap_usage(sql_connection& db,
                                                                    const reference_data& ref,
                                                                    std::optional<day_t> as_of,
                                                                    std::string& why_not);

/// @brief Sorts @p units' entries by (entity, ISO, chip key) in byte order, as `ledger_units` keeps them.
void sort_ledger_units(ledger_units& units, const country_table& countries);

/// @brief What `reconcile` reads of the stored state: each (entity, country, chip) key's units.
struct stored_units {
  ledger_units units;
  std::int64_t lines = 0;  ///< the stored lines it stands for
};

/// @brief The ledger units the stored state gives at @p as_of (nullopt: the latest date) where it
/// can stand for a replay, under the same test as `load_ledger_state`, and holds its later part
/// with the units per key; otherwise nullopt and why in @p why_not. Call inside a read transaction.
[[nodiscard]] std::optional<stored_units> load_stored_units(sql_connection& db, const reference_data& ref,
                                                            std::optional<day_t> as_of, std::string& why_not);

/// @brief The countries, chips and rules files of @p ref (their names in summary.json, in that
/// order) whose content differs from that the stored running state was built under (the state
/// keeps each one's hash); empty when no state is stored or none differs. Call inside a read
/// transaction.
[[nodiscard]] std::vector<std::string> tables_unlike_state(sql_connection& db, const reference_data& ref);

/// @brief The ledger's limit totals read from the running state, key by key, when it stands for
/// every stored line under @p ref; otherwise null, and why in @p why_not. Call inside a read
/// transaction: on success the result takes @p db over (it must not be used again) and ends that
/// transaction when destroyed, so every key is read from one snapshot. Its totals are final ones:
/// where @p weighed_from (the earliest date a total is asked for) is before the stored lines'
/// latest in-window date, @p read_lines_after(*weighed_from) is called first, on @p db in that
/// transaction, for the lines a proposed line meets after it; and @p each_entity, where given, is
/// called with each entity id of the stored lines.
[[nodiscard]] std::unique_ptr<ledger_limit_totals> stored_limit_totals(
    sql_connection& db, const reference_data& ref, std::string& why_not, std::optional<day_t> weighed_from,
    const std::function<void(day_t)>& read_lines_after,
    const std::function<void(std::string_view)>& each_entity);

/// @brief The rows of the state's keyed tables (dictionaries, totals, running totals, first
/// lines) for keys that no stored line touches: rows a state built from @p replay, every stored
/// line, would not hold, yet `check`, a later ingest or a report under another entities file
/// would read; and, for the later parts where current, every row that differs from those that
/// state holds, either way. The first @p at_most, each named by table, key and values
/// (`ledger verify`).
/// Call inside the read transaction the state was read in.
[[nodiscard]] std::vector<std::string> stray_state_rows(sql_connection& db, const reference_data& ref,
                                                        const shipment_log& replay, std::size_t at_most);

}  // namespace capledger::detail
