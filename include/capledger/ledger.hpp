/// @file ledger.hpp
/// @brief The nightly-reconciliation ledger: a durable SQLite store of every accepted shipment
/// line, idempotent ingest, reports over all nights, cap balances, inventory reconciliation and
/// what-if checks of proposed shipments.
///
/// The ledger keeps each line's original fields in input order, the fingerprint of every file
/// it came from, the lines rejected on the way, and the entities file. `ledger report` reads the
/// per-key running state that each ingest extends (host/ledger_state.hpp), or replays the stored
/// fields through `shipment_log_builder` when that state cannot stand for the report; either
/// way it is the report that `capledger report` gives over all ingested files, byte for byte.
#pragma once

#include <capledger/checks.hpp>
#include <capledger/report.hpp>

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace capledger {

/// Version of the ledger's schema, kept in its `meta` table; a ledger of another version is refused.
inline constexpr std::int64_t ledger_schema_version = 1;

/// @brief Creates an empty ledger at @p db_path.
/// @throw config_error when the file already exists or cannot be created
void ledger_init(const std::string& db_path);

/// @brief Options of `capledger ledger ingest`.
struct ledger_ingest_options {
  std::string db_path;
  std::vector<std::string> inputs;  ///< the night's shipment logs, in order
  std::string entities_path;        ///< non-empty: validated, then replaces the stored entities file
  std::string countries_path;       ///< empty: bundled (validation of country codes)
  std::string chips_path;           ///< empty: bundled (validation of chip keys)
  std::string rules_path;           ///< empty: bundled; the rule set the running state follows
  std::string rejects_path;         ///< non-empty: skip bad lines (and duplicates), write them here
  std::int64_t max_rejects = -1;    ///< with rejects_path: fail once more are rejected
};

/// @brief What one ingest added.
struct ledger_ingest_result {
  std::int64_t files        = 0;      ///< files recorded
  std::int64_t lines_read   = 0;      ///< data records read
  std::int64_t lines_added  = 0;      ///< lines appended to the ledger
  std::int64_t rejected     = 0;      ///< lines rejected (kept only with rejects_path)
  std::int64_t ledger_lines = 0;      ///< lines in the ledger afterwards
  bool state_rebuilt        = false;  ///< the running state was rebuilt from every line, not extended
};

/// @brief Validates the night's files as `report` does and appends them in one transaction.
/// A shipment id already in the ledger is a `DUPLICATE_ID` reject naming the earlier file:line.
/// Either everything is committed (durably: synchronous=FULL) or nothing is. Under tables other
/// than the running state follows, the state is rebuilt from a replay of every stored line.
/// @throw parse_error on the first bad line without rejects_path, too_many_rejects, config_error
///        (also when a stored line does not validate under the tables given: nothing is stored)
[[nodiscard]] ledger_ingest_result ledger_ingest(const ledger_ingest_options& options);

/// @brief A read transaction on the ledger, held while it lives: a reading command takes one first,
/// so that its reads, each through its own connection (the stored entities file, then the state or
/// the lines), see one committed state. An ingest cannot commit while it is held (rollback journal);
/// without it, one committing between those reads mixed the old entities file with the new night.
class ledger_snapshot {
 public:
  /// Rolls back a journal left by a killed ingest, as every command's first open does.
  /// @throw config_error for a missing or foreign ledger, or one locked past the busy timeout
  explicit ledger_snapshot(const std::string& db_path);
  ~ledger_snapshot();
  /// Ends it once everything is read: an output written to a slow pipe then holds no ingest back.
  void release() noexcept;
  ledger_snapshot(const ledger_snapshot&)            = delete;
  ledger_snapshot& operator=(const ledger_snapshot&) = delete;

 private:
  struct held;
  std::unique_ptr<held> held_;
};

/// @brief Reference data for a ledger command: the tables named by @p options, and the entities
/// file given there or else the one stored in the ledger (summary.json names its original path).
/// @throw config_error, parse_error
[[nodiscard]] reference_data load_ledger_reference(const std::string& db_path, const report_options& options);

/// @brief Rebuilds the shipment log of every ingested file, in ingest order, as `report` would
/// have read it (dictionaries, rejects, file fingerprints and line counts included).
/// @throw config_error for a missing or foreign database; parse_error when a stored line does not
///        validate under @p reference (other tables than at ingest)
[[nodiscard]] shipment_log load_ledger_log(const std::string& db_path, const reference_data& reference);

/// @brief `capledger ledger report`: every output of `report` over all ingested files.
///
/// Reads the running state that ingest keeps (per-key totals, running totals and crossings)
/// when it stands for the requested report: same countries, chips and rules tables as the state
/// was built under, and no `--as-of` before the ledger's latest date. Otherwise, or with
/// @p replay, replays every stored line through a backend. Notes which on @p diagnostics
/// (`ledger report: incremental ...` or `ledger report: replay (why)`).
/// @return the exit code of SPEC §6
int run_ledger_report(const std::string& db_path, const report_options& options, std::ostream& out,
                      std::ostream& diagnostics, bool replay = false);

/// @brief `capledger ledger verify`: SQLite's integrity check of the database, then the running
/// state against a replay of every stored line (both render the same report, file for file),
/// read in one snapshot. Prints what it found on @p out, the first differing line of each
/// differing file included.
/// @return 0 when both hold (or there is no state yet), 1 when either fails
/// @throw config_error where the state follows other tables than @p options names
int run_ledger_verify(const std::string& db_path, const report_options& options, std::ostream& out);

/// @brief One cap's balance: limit in force, consumed, remaining, percent used.
struct cap_balance {
  std::string cap;       ///< `COUNTRY_CAP`, `NVEU_CAP`, `LPP_ANNUAL` or `LPP_ORDER`
  std::string entity;    ///< NVEU and LPP caps (an order's: all of its lines' consignees, `;`-joined)
  std::string country;   ///< country and NVEU caps (an order's: all of its lines' destinations)
  std::string year;      ///< LPP annual caps
  std::string order_id;  ///< LPP order caps
  std::int64_t limit_tpp    = 0;
  std::int64_t consumed_tpp = 0;
  [[nodiscard]] std::string remaining_tpp() const { return exact_difference(limit_tpp, consumed_tpp); }
  std::string used_pct;    ///< 100 x consumed / limit, exact, 2 decimals
  std::string warn_level;  ///< `exceeded`, the highest `--warn-at` level reached (e.g. `0.9`), or empty
};

/// @brief What the balances are computed from: each cap key's consumed tpp (in-window lines up to
/// `as_of`) and whether a line took its running total past the limit in force on that line's
/// date (SPEC §4: then `report` finds the violation), by the key's text.
struct cap_usage {
  struct used {
    std::int64_t tpp = 0;
    bool crossed     = false;
  };
  /// An LPP order's, with the consignees and destinations of every line it counts.
  struct order_used : used {
    std::set<std::string> entities, countries;
  };
  day_t as_of = 0;                                           ///< the date the balances stand at
  std::vector<used> country_cap;                             ///< by countries-table code
  std::map<std::pair<std::string, std::string>, used> nveu;  ///< (entity, ISO) keys with NVEU lines
  std::map<std::pair<std::string, int>, used> lpp_annual;    ///< (entity, year) keys with LPP lines
  std::map<std::string, order_used> lpp_order;               ///< orders with LPP lines, by order id
  /// Every stored line's entity id (also of lines no cap counts, or dated after `as_of`): the ids
  /// `ledger report` notes as written alike (`entity_variant_notes`), so `ledger balances` notes them too.
  dictionary entities;
};

/// @brief `cap_usage` summed over the lines of @p log at @p as_of (default: its latest date).
[[nodiscard]] cap_usage sum_cap_usage(const reference_data& reference, const shipment_log& log,
                                      std::optional<day_t> as_of);

/// @brief `cap_usage` of a ledger at @p as_of (default: its latest date): read from the running
/// state that ingest keeps where it stands for every stored line there (as `ledger report` decides,
/// and the state holds the orders' consignees and destinations), else, or with @p replay, summed
/// over a replay. Notes which on @p diagnostics (`ledger balances: running state of N line(s)` or
/// `ledger balances: replay (why)`).
/// @throw config_error for a missing or foreign database; parse_error, replaying, for a stored line
///        that does not validate under @p reference
[[nodiscard]] cap_usage load_cap_usage(const std::string& db_path, const reference_data& reference,
                                       std::optional<day_t> as_of, bool replay, std::ostream& diagnostics);

/// @brief Balances of every cap in @p usage: each tier-2 country, each NVEU (entity, country) that
/// is authorized or has NVEU lines, each LPP (consignee, year) with LPP lines and each LPP order
/// with LPP lines, in that order, each group sorted by its key.
/// @param warn_levels parts per million, ascending
[[nodiscard]] std::vector<cap_balance> compute_balances(const reference_data& reference,
                                                        const cap_usage& usage,
                                                        const std::vector<ppm_t>& warn_levels);

/// @brief @p balances as `ledger balances` prints them in @p format (`table` or `csv`).
[[nodiscard]] std::string balances_text(const std::vector<cap_balance>& balances, const std::string& format);

/// @brief `capledger ledger balances`: prints the balances in `options.format` (table or csv), and
/// on @p diagnostics `ledger report`'s notes on the stored lines' and entities file's entity ids
/// written alike (`entity_variant_notes`).
/// @param replay sum a replay of the stored lines even where the running state stands for them
/// @return 0, or 1 when a cap is exceeded
int run_ledger_balances(const std::string& db_path, const report_options& options, std::ostream& out,
                        std::ostream& diagnostics, bool replay = false);

/// @brief One row of `reconciliation.csv`.
struct reconciliation_row {
  std::string_view entity, country, chip;
  std::int64_t ledger_units   = 0;
  std::int64_t reported_units = 0;
  /// reported - ledger, exact (it may need 65 bits)
  [[nodiscard]] std::string difference() const { return exact_difference(reported_units, ledger_units); }
  /// difference x the chips-table tpp; none for chips outside the table
  std::optional<std::int64_t> difference_tpp;
  std::string_view status;  ///< `match`, `shortfall`, `surplus` or `unshipped`
};

/// @brief What `reconcile` weighs an inventory against: the net units of every (entity, ISO,
/// chip key) with a ledger line up to `as_of` (0 for one shipped and all returned).
struct ledger_units {
  /// One key's net units: codes of `entities` and `chips`, and the countries table's row.
  struct entry {
    std::int32_t entity   = 0;
    std::uint16_t country = 0;
    std::int32_t chip     = 0;
    std::int64_t units    = 0;
  };
  std::optional<day_t> as_of;  ///< the date counted up to; nullopt: no line and no --as-of
  dictionary entities;         ///< every stored line's entity id (also dated after `as_of`): the notes'
  dictionary chips;            ///< chip keys: the table's spelling, or an ad-hoc chip's upper-cased key
  std::vector<entry> units;    ///< one per key, sorted by (entity, ISO, chip key) in byte order
};

/// @brief `ledger_units` summed over the lines of @p log at @p as_of (default: its latest date).
[[nodiscard]] ledger_units sum_ledger_units(const reference_data& reference, const shipment_log& log,
                                            std::optional<day_t> as_of);

/// @brief `ledger_units` of a ledger at @p as_of (default: its latest date): read from the running
/// state where it stands for every stored line there (as `ledger report` decides, and the state
/// holds the units per key), else, or with @p replay, summed over a replay. Notes which on
/// @p diagnostics (`reconcile: running state of N line(s)` or `reconcile: replay (why)`).
/// @throw config_error for a missing or foreign database; parse_error, replaying, for a stored line
///        that does not validate under @p reference
[[nodiscard]] ledger_units load_ledger_units(const std::string& db_path, const reference_data& reference,
                                             std::optional<day_t> as_of, bool replay,
                                             std::ostream& diagnostics);

/// @brief Compares an inventory (`entity,country,chip,units`) with the ledger's @p units: calls
/// @p row for each row, sorted by (entity, country, chip); ledger keys with zero net units that the
/// inventory does not list are left out. A row's views stay valid only during the call.
/// @param inventory_text the inventory file's content; @p inventory_path names it in messages
/// @return what was read besides the rows
/// @throw parse_error for a bad inventory line (file:line:column); config_error where a difference
///        in tpp exceeds 64 bits
struct inventory_reading {
  dictionary entities;  ///< the entity ids the inventory names (`entity_variant_notes`' `inventory`)
  std::vector<std::string> notes;  ///< for stderr: chips neither the chips table nor the ledger knows
};
[[nodiscard]] inventory_reading reconcile_inventory(
    const reference_data& reference, const ledger_units& units, const std::string& inventory_path,
    std::string_view inventory_text, const std::function<void(const reconciliation_row&)>& row);

/// @brief `capledger reconcile`: writes reconciliation.csv and summary.json into `options.out_dir`
/// (atomically) and a summary to @p out; without out_dir the CSV goes to @p out. Notes on
/// @p diagnostics the entity ids written alike among the stored lines', the entities file's and
/// the inventory's (`entity_variant_notes`).
/// @param replay sum a replay of the stored lines even where the running state stands for them
/// @return 0 when everything matches, 1 otherwise
int run_reconcile(const std::string& db_path, const std::string& inventory_path,
                  const report_options& options, std::ostream& out, std::ostream& diagnostics,
                  bool replay = false);

/// @brief One answer of `check`: one limit or pathway rule that applies to one proposed line.
struct proposed_check {
  std::int64_t line = 0;  ///< 1-based position among the proposed lines
  std::string shipment_id, date, entity, country, pathway;
  std::int64_t tpp = 0;
  std::string rule;       ///< rule of SPEC §4, or empty when no limit applies to the line
  /// Empty for PROHIBITED_DESTINATION and UNAUTHORIZED_PATHWAY, and for a share rule a line breaks
  /// at a part no limit of it weighs (README `check`)
  std::string limit_tpp;
  std::string consumed_before_tpp, headroom_before_tpp;
  std::string status;  ///< `ok` or `breach`
  /// Why a breach whose columns do not show it is one, for stderr: the ledger's later line a
  /// back-dated line's total passes the limit on, or the part a share rule breaks at.
  std::string explanation;
};

/// @brief The in-window tpp a ledger's stored lines put on each limit key that `check` weighs
/// proposed lines against, whatever their dates: the ledger's whole history counts against
/// tomorrow's shipments.
class ledger_limit_totals {
 public:
  virtual ~ledger_limit_totals() = default;
  /// Lines of the country-cap pathways to @p country (a countries-table code).
  [[nodiscard]] virtual std::int64_t country_cap(std::int32_t country) = 0;
  /// NVEU lines of (@p entity, @p country).
  [[nodiscard]] virtual std::int64_t nveu(std::string_view entity, std::int32_t country) = 0;
  /// LPP lines of @p entity dated in @p year.
  [[nodiscard]] virtual std::int64_t lpp_annual(std::string_view entity, std::int64_t year) = 0;
  /// LPP lines of order @p order.
  [[nodiscard]] virtual std::int64_t lpp_order(std::string_view order) = 0;
  /// Installed tpp of @p entity (SPEC §4: all its lines, in or out of the window) by country code,
  /// for each country it has lines to.
  [[nodiscard]] virtual std::map<std::int32_t, std::int64_t> installed(std::string_view entity) = 0;
};

/// @brief `ledger_limit_totals` summed over every line of @p ledger (a replayed ledger log).
[[nodiscard]] std::unique_ptr<ledger_limit_totals> sum_limit_totals(const reference_data& reference,
                                                                    const shipment_log& ledger);

/// @brief The limit totals of every key the lines of @p ledger count toward, and of every LPP order
/// they name, where @p stored holds another total: the first @p at_most, each described with both
/// totals (`ledger verify`).
[[nodiscard]] std::vector<std::string> limit_total_differences(const reference_data& reference,
                                                               const shipment_log& ledger,
                                                               ledger_limit_totals& stored,
                                                               std::size_t at_most);

/// @brief What `check` reads from a ledger, in one read snapshot of it.
struct check_inputs {
  /// The proposed lines, validated as lines read after the ledger's: an id already in the ledger
  /// is a `DUPLICATE_ID` naming its `file:line`, and the ledger's |tpp| and |quantity| sums count
  /// toward `TPP_OVERFLOW`.
  shipment_log proposed;
  /// From the running state that ingest keeps, or, when that state cannot stand for every stored
  /// line under @p reference (other tables, none yet), with `replay`, or when a proposed line in
  /// the counting window is dated before the ledger's latest line there, summed over a replay.
  std::unique_ptr<ledger_limit_totals> ledger;
  /// The replayed lines, when replayed: `check_proposed` weighs proposed lines among them by date.
  std::optional<shipment_log> ledger_lines;
  /// For stderr only: the groups of entity ids written alike that hold a proposed line's, among
  /// those, the entities file's and the stored lines' (`entity_variants_of`).
  std::vector<std::string> notes;
};

/// @brief Reads `check`'s inputs; notes on @p diagnostics whether the totals come from the running
/// state or a replay (and why).
/// @throw config_error for a missing or foreign database; parse_error for a bad proposed line, or,
///        replaying, a stored line that does not validate under @p reference
[[nodiscard]] check_inputs load_check_inputs(const std::string& db_path, const reference_data& reference,
                                             const std::string& proposed_path, bool replay,
                                             std::ostream& diagnostics);

/// @brief What-if for @p proposed lines, each placed among the ledger's lines and the proposed
/// lines before it as ingest would place it (SPEC §2 order: date, then position, the ledger's lines
/// first): checked against the running totals of the in-window lines before it, and, where
/// @p ledger_lines (the replayed ledger) has lines of its key dated after it, against the running
/// totals it leaves on those.
/// @param ledger_lines null: every proposed line comes after the ledger's lines of its keys (the
///        caller's promise; the running state has final totals only)
/// @param row          called with each row, in file order of the proposed lines (a line's rows as
///                     soon as it and every line before it are weighed)
void check_proposed(const reference_data& reference, const shipment_log& proposed,
                    ledger_limit_totals& ledger, const shipment_log* ledger_lines,
                    const std::function<void(const proposed_check&)>& row);

/// @brief `capledger check`: CSV of `check_proposed` to @p out_path (empty: @p out); the ledger is
/// opened read-only. @param replay sum the ledger's lines even where the running state stands for them
/// @return 0, or 1 when any proposed line would breach
int run_check(const std::string& db_path, const std::string& proposed_path, const std::string& out_path,
              bool replay, const report_options& options, std::ostream& out, std::ostream& diagnostics);

}  // namespace capledger
