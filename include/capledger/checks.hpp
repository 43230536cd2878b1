/// @file checks.hpp
/// @brief From aggregates to findings (SPEC §4): the rule logic shared by every backend.
#pragma once

#include <capledger/backend.hpp>
#include <capledger/entities.hpp>
#include <capledger/reference.hpp>
#include <capledger/shipments.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace capledger {

/// @brief Builds the per-code lookup tables a backend needs for @p log.
[[nodiscard]] rule_context make_rule_context(const rule_set& rules, const country_table& countries,
                                             const entity_table& entities, const shipment_log& log,
                                             day_t as_of);
/// @brief Same, from the dictionaries alone (entity codes of @p entity_codes, chips of @p chips).
[[nodiscard]] rule_context make_rule_context(const rule_set& rules, const country_table& countries,
                                             const entity_table& entities, const dictionary& entity_codes,
                                             const chip_table& chips, day_t as_of);

/// @brief Adds to @p context the entity codes of @p entity_codes and the chips of @p chips it
/// does not cover yet (a streaming ingest meets them as it goes).
void extend_rule_context(rule_context& context, const country_table& countries, const entity_table& entities,
                         const dictionary& entity_codes, const chip_table& chips);

/// @brief One accepted line as findings print it.
struct line_detail {
  day_t date = 0;
  std::string shipment_id;
  std::int32_t entity   = 0;  ///< entity code
  std::uint16_t country = 0;  ///< country code
};

/// @brief What rendering a report needs besides the aggregates: the dictionaries the codes of an
/// `aggregation` point into, the lines its crossings and first lines name, and the inputs.
/// A `shipment_log` provides it (`log_source`); so does the ledger's stored running state.
class report_source {
 public:
  virtual ~report_source()                                  = default;
  [[nodiscard]] virtual const dictionary& entities() const  = 0;
  [[nodiscard]] virtual const dictionary& exporters() const = 0;
  [[nodiscard]] virtual const chip_table& chips() const     = 0;
  /// Text of an order code that an `aggregation::lpp_order` entry names.
  [[nodiscard]] virtual std::string order_id(std::int32_t code) const = 0;
  /// The line at input position @p line (one that an aggregation's crossing or first line names).
  [[nodiscard]] virtual line_detail line(std::int64_t line) const    = 0;
  [[nodiscard]] virtual const std::vector<input_file>& files() const = 0;
  [[nodiscard]] virtual std::int64_t lines_read() const              = 0;
  /// Accepted lines (dated before or after as_of).
  [[nodiscard]] virtual std::int64_t lines_accepted() const = 0;
  [[nodiscard]] virtual std::int64_t rejected() const       = 0;
};

/// @brief The `report_source` of a shipment log held in memory.
class log_source final : public report_source {
 public:
  explicit log_source(const shipment_log& log) : log_(log) {}
  [[nodiscard]] const dictionary& entities() const override { return log_.entities; }
  [[nodiscard]] const dictionary& exporters() const override { return log_.exporters; }
  [[nodiscard]] const chip_table& chips() const override { return log_.chips; }
  [[nodiscard]] std::string order_id(std::int32_t code) const override { return log_.orders.text(code); }
  [[nodiscard]] line_detail line(std::int64_t line) const override;
  [[nodiscard]] const std::vector<input_file>& files() const override { return log_.files; }
  [[nodiscard]] std::int64_t lines_read() const override { return log_.lines_read; }
  [[nodiscard]] std::int64_t lines_accepted() const override { return log_.columns.size(); }
  [[nodiscard]] std::int64_t rejected() const override { return log_.lines_rejected; }

 private:
  const shipment_log& log_;
};

/// @brief The dictionary sizes of @p log, as `backend::aggregate` takes them.
[[nodiscard]] dictionary_sizes sizes_of(const shipment_log& log, const country_table& countries);

/// @brief One row of `findings.csv`; empty strings where a column does not apply.
struct finding {
  std::string severity;  ///< `violation` or `warning`
  std::string rule;
  std::string entity, country, pathway, order_id, year, date, shipment_id, value, limit;
};

/// @brief One row of `uveu_shares.csv`.
struct uveu_share_row {
  std::string entity, hq_country;
  std::int64_t installed_tpp = 0;
  std::string tier1_share, us_share, max_tier2_country, max_tier2_share;
  bool compliant = true;
};

/// @brief Everything the checks conclude.
struct check_results {
  std::vector<finding> findings;            ///< sorted by severity, rule, then the key columns
  std::vector<uveu_share_row> uveu_shares;  ///< sorted by entity
  std::int64_t violations = 0;
  std::int64_t warnings   = 0;
};

/// @brief Applies every rule of SPEC §4 to @p agg.
/// @param warn_levels `--warn-at` levels as parts per million, ascending
[[nodiscard]] check_results evaluate_checks(const aggregation& agg, const rule_context& context,
                                            const rule_set& rules, const country_table& countries,
                                            const entity_table& entities, const report_source& source,
                                            const std::vector<ppm_t>& warn_levels);

/// @brief The NVEU cap in force on @p date: the first phase whose `through` is on or after it
/// (the last phase after the final `through`).
[[nodiscard]] std::int64_t nveu_cap_on(const rule_set& rules, day_t date);

/// @brief The NVEU cap that totals up to @p as_of are weighed against (CAP_NEAR_LIMIT, `ledger
/// balances`): the one in force on @p as_of held within the counting window, so that a phase
/// ending before `counting_starts`, never in force, is never the limit.
[[nodiscard]] std::int64_t nveu_cap_at_as_of(const rule_set& rules, day_t as_of);

/// @brief Index of the highest `--warn-at` level that @p used reaches of @p cap (exact), or -1.
/// @param levels parts per million, ascending
[[nodiscard]] int highest_warn_level(std::int64_t used, std::int64_t cap, const std::vector<ppm_t>& levels);

/// @brief All rule names of SPEC §4, in the order summaries list them.
[[nodiscard]] const std::vector<std::string>& rule_names();

/// @brief `multiplier x numerator / denominator` rounded half away from zero to @p digits
/// decimals, computed exactly in 128-bit integers (so every backend and platform prints the same).
[[nodiscard]] std::string exact_decimal(std::int64_t numerator, std::int64_t denominator, int digits,
                                        std::int64_t multiplier = 1);

/// @brief `minuend - subtrahend` in decimal, exactly: a difference of two 64-bit values can need 65
/// bits (a limit less a total driven far below zero by returns), where a 64-bit result would wrap.
[[nodiscard]] std::string exact_difference(std::int64_t minuend, std::int64_t subtrahend);

/// @brief Parses a decimal fraction such as `0.95` into parts per million; nullopt when it has
/// more than 6 decimals or is malformed.
[[nodiscard]] std::optional<ppm_t> parse_ppm(std::string_view text);

}  // namespace capledger
