/// @file backend.hpp
/// @brief The aggregation step: one interface, a CPU and a CUDA implementation, one exact answer.
///
/// A backend turns the columns of a shipment log into integer aggregates: every total of
/// SPEC §3 and the running totals and first lines behind every check of SPEC §4. Turning
/// aggregates into findings and files is shared host code, so two backends that return equal
/// aggregates write byte-identical outputs.
#pragma once

#include <capledger/calendar.hpp>
#include <capledger/reference.hpp>
#include <capledger/shipments.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace capledger {

/// @brief Per-code lookup tables and limits a backend needs; plain arrays, easy to copy to a GPU.
struct rule_context {
  day_t as_of        = 0;  ///< lines dated later are ignored by everything
  day_t window_start = 0;  ///< counting window of the rule set (inclusive)
  day_t window_end   = 0;

  // Per country code.
  std::vector<std::uint8_t> country_tier;     ///< 1, 2 or 3
  std::vector<std::int64_t> country_cap_tpp;  ///< tier 2: cap in force (G2G applied); else -1
  std::uint8_t country_cap_pathways = 0;      ///< bit p: pathway p counts against country caps

  // Per chip code.
  std::vector<std::uint8_t> chip_datacenter;  ///< 1 for datacenter chips (and unknown chips)

  // Per entity code (the log's entity dictionary).
  std::vector<std::uint8_t> entity_is_uveu;
  std::vector<std::uint8_t> entity_hq_tier1;  ///< 1 when the HQ is known and tier 1
  /// NVEU authorization: bit (c % 64) of word [entity * 4 + c / 64] set when the entity is an
  /// NVEU authorized for country code c.
  std::vector<std::uint64_t> entity_nveu_countries;

  std::int64_t lpp_per_order_tpp          = 0;
  std::int64_t lpp_per_consignee_year_tpp = 0;
  std::vector<nveu_phase> nveu_caps;  ///< ascending `through`

  /// @brief UNAUTHORIZED_PATHWAY for a line of @p path (SPEC §4): UVEU by a non-UVEU, NVEU outside
  /// the entity's authorization, AIA unless a tier-1 destination and tier-1 HQ, ACA of a datacenter chip.
  [[nodiscard]] bool is_unauthorized(pathway path, std::int32_t entity, std::uint16_t country,
                                     std::uint16_t chip) const
  {
    switch (path) {
      case pathway::uveu:
        return entity_is_uveu[static_cast<std::size_t>(entity)] == 0;
      case pathway::nveu:
        return !nveu_authorized(entity, country);
      case pathway::aia:
        return country_tier[country] != 1 || entity_hq_tier1[static_cast<std::size_t>(entity)] == 0;
      case pathway::aca:
        return chip_datacenter[chip] != 0;
      default:
        return false;
    }
  }

  static constexpr int nveu_mask_words = 4;  ///< 256 bits cover every country code
  [[nodiscard]] bool nveu_authorized(std::int32_t entity, std::uint16_t country) const
  {
    return (entity_nveu_countries[static_cast<std::size_t>(entity) * nveu_mask_words + country / 64] >>
            (country % 64)) &
           1U;
  }
};

/// @brief records, units (sum of quantity) and tpp of one group.
struct group_total {
  std::int64_t records = 0;
  std::int64_t units   = 0;
  std::int64_t tpp     = 0;
  /// Counts one line of @p quantity units and @p line_tpp TPP (exact, as below).
  void add_line(std::int64_t quantity, std::int64_t line_tpp)
  {
    records += 1;
    units += quantity;
    tpp += line_tpp;
  }
  /// Adds another group's totals (exact: ingest bounds the sums of |quantity| and |tpp| of the
  /// whole log by INT64_MAX, so partial sums in any order fit).
  group_total& operator+=(const group_total& other)
  {
    records += other.records;
    units += other.units;
    tpp += other.tpp;
    return *this;
  }
  friend bool operator==(const group_total& a, const group_total& b)
  {
    return a.records == b.records && a.units == b.units && a.tpp == b.tpp;
  }
};

/// @brief Totals of one (entity, country) pair.
struct pair_total {
  std::int32_t entity   = 0;
  std::uint16_t country = 0;
  group_total total;
  friend bool operator==(const pair_total& a, const pair_total& b)
  {
    return a.entity == b.entity && a.country == b.country && a.total == b.total;
  }
};

/// @brief The first line (in (date, input position) order) after which a running total exceeds
/// the limit in force on that line's date; `line == -1` when it never does.
struct crossing {
  std::int64_t line  = -1;  ///< input position of the crossing line
  std::int64_t value = 0;   ///< running total just after it
  friend bool operator==(const crossing& a, const crossing& b)
  {
    return a.line == b.line && a.value == b.value;
  }
};

/// @brief Running-total check of one key: its final total (in window, up to as_of) and crossing.
struct keyed_running_total {
  std::int64_t key   = 0;
  std::int64_t total = 0;
  crossing first_crossing;
  friend bool operator==(const keyed_running_total& a, const keyed_running_total& b)
  {
    return a.key == b.key && a.total == b.total && a.first_crossing == b.first_crossing;
  }
};

/// @brief Lines of one key that break a rule: the first of them and their summed tpp.
struct keyed_first_line {
  std::int64_t key        = 0;
  std::int64_t first_line = -1;
  std::int64_t tpp        = 0;
  friend bool operator==(const keyed_first_line& a, const keyed_first_line& b)
  {
    return a.key == b.key && a.first_line == b.first_line && a.tpp == b.tpp;
  }
};

/// Keys of the sparse aggregates, packed into one int64 so every backend sorts them alike.
/// (entity, country): entity * 65536 + country.
[[nodiscard]] constexpr std::int64_t entity_country_key(std::int64_t entity, std::int64_t country)
{
  return entity * 65536 + country;
}
/// (entity, country, pathway): entity_country_key * 8 + pathway.
[[nodiscard]] constexpr std::int64_t entity_country_pathway_key(std::int64_t entity, std::int64_t country,
                                                                std::int64_t pathway_code)
{
  return entity_country_key(entity, country) * 8 + pathway_code;
}
/// (entity, year): entity * 16384 + year.
[[nodiscard]] constexpr std::int64_t entity_year_key(std::int64_t entity, std::int64_t year)
{
  return entity * 16384 + year;
}

/// @brief Everything a backend computes. Dense vectors are indexed by code; sparse vectors hold
/// only keys that occur and are sorted by key ascending.
struct aggregation {
  // SPEC §3 totals: all lines up to as_of, in or out of the window.
  std::int64_t lines_used = 0;                ///< lines dated on or before as_of
  std::vector<group_total> by_country;        ///< per country code
  std::vector<group_total> by_entity;         ///< per entity code
  std::vector<group_total> by_chip;           ///< per chip code
  std::vector<group_total> by_exporter;       ///< per exporter code
  std::vector<pair_total> by_entity_country;  ///< sparse, sorted by (entity, country)

  // SPEC §4 checks: in-window lines up to as_of.
  std::vector<std::int64_t> country_cap_total;  ///< per country code: cap-pathway tpp
  std::vector<crossing> country_cap_crossing;   ///< per country code (tier 2 only)
  std::vector<keyed_running_total> nveu;        ///< NVEU lines by entity_country_key
  std::vector<keyed_running_total> lpp_order;   ///< LPP lines by order code (crossing keys only)
  std::vector<keyed_running_total> lpp_annual;  ///< LPP lines by entity_year_key (crossing keys only)
  std::vector<keyed_first_line> prohibited;     ///< by entity_country_key
  std::vector<keyed_first_line> unauthorized;   ///< by entity_country_pathway_key

  friend bool operator==(const aggregation& a, const aggregation& b);
};

/// @brief How many distinct codes each column of a `shipment_view` may hold.
struct dictionary_sizes {
  std::int32_t entities  = 0;
  std::int32_t countries = 0;
  std::int32_t chips     = 0;
  std::int32_t exporters = 0;
  std::int32_t orders    = 0;
};

/// @brief The aggregation of no line: dense vectors sized for @p sizes, all zero; no check row.
[[nodiscard]] aggregation empty_aggregation(const dictionary_sizes& sizes);

/// @brief The interface every backend implements.
class backend {
 public:
  virtual ~backend() = default;
  /// @brief Short name written to outputs: `cpu` or `gpu`.
  [[nodiscard]] virtual std::string name() const = 0;
  /// @brief Computes every aggregate of @p lines under @p rules.
  /// @param sizes how many codes each dictionary column may hold
  /// @throw device_error on any GPU failure
  [[nodiscard]] virtual aggregation aggregate(const shipment_view& lines, const rule_context& rules,
                                              const dictionary_sizes& sizes) = 0;
};

/// @brief One aggregation of lines that a backend can hold at once (the parts of `aggregate_in_parts`).
using aggregate_pass = std::function<aggregation(const shipment_view& lines)>;

/// @brief Exactly what @p pass returns for all of @p lines, computed by passes over parts of at
/// most @p max_lines lines each: how a backend with bounded memory (a GPU) aggregates a larger log.
///
/// Totals are sums, so any split adds up. A check needs all the lines of each of its keys in one
/// pass, in input order, so parts are ranges of key codes of the lines gathered in input order:
/// entity ranges for every total and every entity-keyed check, then (on the lines that can count)
/// country ranges for the country-cap crossings and order ranges for the LPP per-order check.
/// Positions the passes report are mapped back to input positions.
/// @throw device_error when one key (an entity, a capped country's cap-pathway lines in the window,
///        an LPP order) has more than @p max_lines lines: no split keeps it in one pass
[[nodiscard]] aggregation aggregate_in_parts(const shipment_view& lines, const rule_context& rules,
                                             const dictionary_sizes& sizes, std::int64_t max_lines,
                                             const aggregate_pass& pass);

/// @brief The plain C++ backend; runs everywhere and is the reference for the GPU.
[[nodiscard]] std::unique_ptr<backend> make_cpu_backend();

/// @brief True when this build has CUDA support and a usable GPU and driver are present. It also
/// starts the driver and the GPU's context (about half a second on an H200 host).
/// @param why set to the reason when the answer is false
[[nodiscard]] bool gpu_available(std::string* why = nullptr);

/// @brief Whether `gpu_available` is likely true, known without starting the driver: this build
/// has CUDA support and an NVIDIA device node exists. Only for choosing what to overlap.
[[nodiscard]] bool gpu_likely_present();

/// @brief Settings of the GPU aggregation that tests and benchmarks change; the defaults are what
/// `report` uses.
struct gpu_tuning {
  /// Logs larger than this many lines are aggregated in parts. 0: as many as free GPU memory holds.
  std::int64_t max_lines_per_pass = 0;
  /// Bytes of the dense (entity, country) table that one entity range ("slice") spans: a table
  /// larger than two slices, whose cells a sample of the lines touches more of than one slice
  /// holds, is filled a slice at a time, so that its cells stay in L2. 0: a third of the GPU's
  /// L2 cache; UINT64_MAX: never sliced.
  std::uint64_t pair_slice_bytes = 0;
  /// The dense (entity, country) table's cells: 0 one word each (records, units and tpp in fields,
  /// one atomic a line; kernels/carried_cells.cuh) where every line's parts fit, its units field
  /// as wide as carries fewest; k > 0 the same with a units field of k bits (tests: narrow fields
  /// carry often); -1 two words each (records and units packed, tpp), as where lines do not fit.
  int pair_units_bits = 0;
  /// An experiment, not yet run on a card: sum the carried cells' carries (whose count the host
  /// reads, waiting for the GPU) after the SPEC order rather than right after the dense pass, so
  /// that the GPU need not idle while the host sets up the order (with carried cells that phase
  /// took 3-4 ms longer on an H200, bench/RESULTS.md session 17). The same results either way.
  bool carries_after_order = false;
};

/// @brief The CUDA backend. Logs larger than GPU memory are aggregated in parts (`aggregate_in_parts`).
/// @throw device_error when the build has no CUDA or no GPU is usable
[[nodiscard]] std::unique_ptr<backend> make_gpu_backend(const gpu_tuning& tuning = {});

/// @brief A log's columns held in GPU memory (opaque: no CUDA types), so that repeated
/// aggregations, and benchmarks of the aggregation step alone, pay for the upload once.
class gpu_columns {
 public:
  virtual ~gpu_columns() = default;
  /// @brief Number of lines.
  [[nodiscard]] virtual std::int64_t size() const = 0;
};

/// @brief Copies @p lines to GPU memory; returns once they are there.
/// @throw device_error without CUDA or a usable GPU, or when the columns do not fit
[[nodiscard]] std::unique_ptr<gpu_columns> upload_to_gpu(const shipment_view& lines);

/// @brief CUDA-event times of one GPU aggregation on its stream (host work between its copies back
/// included): the whole call and each phase, in run order.
struct gpu_timing {
  double total_ms = 0;
  std::vector<std::pair<std::string, double>> phase_ms;
  /// Entity ranges the dense (entity, country) table was filled in (`gpu_tuning::pair_slice_bytes`);
  /// 0 when it was filled directly or not used.
  std::int32_t pair_slices = 0;
  /// Width of the units field of carried pair cells (`gpu_tuning::pair_units_bits`); 0 when the
  /// cells took two words or more, or no dense pair table was used.
  std::int32_t pair_units_bits = 0;
  /// Cells of the carried pair table whose fields carried (each summed from its listed carries).
  std::int64_t carried_cells = 0;
};

/// @brief What `make_gpu_backend()->aggregate` returns for the uploaded lines, without the upload.
/// @param timing when given: filled with the call's CUDA-event times
/// @param tuning `pair_slice_bytes` and `pair_units_bits` apply (the columns are one pass already)
/// @throw device_error on any GPU failure
[[nodiscard]] aggregation aggregate_on_gpu(const gpu_columns& lines, const rule_context& rules,
                                           const dictionary_sizes& sizes, gpu_timing* timing = nullptr,
                                           const gpu_tuning& tuning = {});

}  // namespace capledger
