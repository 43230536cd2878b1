/// @file gpu_equivalence_test.cpp
/// @brief The CUDA backend returns exactly the CPU backend's aggregation on random logs.
///
/// Logs are drawn directly as columns (no CSV), around warp and block sizes, with few and many
/// entities (dense and sorted pair paths), negative quantities and day numbers, dates on both
/// sides of the window and of as_of, every pathway, tier-3 countries, and limits tight enough
/// that every running-total check crosses for some keys and not for others.
#include <capledger/backend.hpp>
#include <capledger/error.hpp>
#include <capledger/report.hpp>

#include <gtest/gtest.h>

#include "test_support.hpp"

#if defined(CAPLEDGER_HAS_CUDA)
#include <cuda_runtime_api.h>

#include "../kernels/cuda_utils.cuh"
#endif

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace {

using namespace capledger;

// ---- readable failure messages ----------------------------------------------------------------

std::string describe(std::int64_t v) { return std::to_string(v); }
std::string describe(const group_total& g)
{
  return "{records " + describe(g.records) + ", units " + describe(g.units) + ", tpp " + describe(g.tpp) + "}";
}
std::string describe(const pair_total& p)
{
  return "{entity " + describe(p.entity) + ", country " + describe(p.country) + ", " + describe(p.total) + "}";
}
std::string describe(const crossing& c)
{
  return "{line " + describe(c.line) + ", value " + describe(c.value) + "}";
}
std::string describe(const keyed_running_total& k)
{
  return "{key " + describe(k.key) + ", total " + describe(k.total) + ", crossing " +
         describe(k.first_crossing) + "}";
}
std::string describe(const keyed_first_line& k)
{
  return "{key " + describe(k.key) + ", first_line " + describe(k.first_line) + ", tpp " + describe(k.tpp) + "}";
}

template <typename T>
void expect_same(const std::string& context, const char* field, const std::vector<T>& cpu,
                 const std::vector<T>& gpu)
{
  if (cpu == gpu) { return; }
  std::ostringstream message;
  message << context << ": " << field << " differs (cpu " << cpu.size() << " entries, gpu " << gpu.size()
          << " entries)";
  for (std::size_t i = 0; i < std::min(cpu.size(), gpu.size()); ++i) {
    if (!(cpu[i] == gpu[i])) {
      message << "; first difference at index " << i << ": cpu " << describe(cpu[i]) << ", gpu "
              << describe(gpu[i]);
      break;
    }
  }
  ADD_FAILURE() << message.str();
}

void expect_same(const std::string& context, const aggregation& cpu, const aggregation& gpu)
{
  EXPECT_EQ(cpu.lines_used, gpu.lines_used) << context;
  expect_same(context, "by_country", cpu.by_country, gpu.by_country);
  expect_same(context, "by_entity", cpu.by_entity, gpu.by_entity);
  expect_same(context, "by_chip", cpu.by_chip, gpu.by_chip);
  expect_same(context, "by_exporter", cpu.by_exporter, gpu.by_exporter);
  expect_same(context, "by_entity_country", cpu.by_entity_country, gpu.by_entity_country);
  expect_same(context, "country_cap_total", cpu.country_cap_total, gpu.country_cap_total);
  expect_same(context, "country_cap_crossing", cpu.country_cap_crossing, gpu.country_cap_crossing);
  expect_same(context, "nveu", cpu.nveu, gpu.nveu);
  expect_same(context, "lpp_order", cpu.lpp_order, gpu.lpp_order);
  expect_same(context, "lpp_annual", cpu.lpp_annual, gpu.lpp_annual);
  expect_same(context, "prohibited", cpu.prohibited, gpu.prohibited);
  expect_same(context, "unauthorized", cpu.unauthorized, gpu.unauthorized);
  EXPECT_TRUE(cpu == gpu) << context;
}

// ---- random logs ------------------------------------------------------------------------------

/// Where the window, as_of and the line dates lie.
enum class calendar_layout {
  straddling,       ///< dates before, inside and after the window; as_of inside it; three years
  around_epoch,     ///< negative day numbers; as_of after the window end
  as_of_before,     ///< as_of before the window: every check is empty
  single_day,       ///< a one-day window
  before_year_one,  ///< years -1, 0 and 1: negative years in the LPP annual keys
  long_window,      ///< a window of 4,001 days (not in all_layouts: for the country-cap bins' limit)
};
constexpr calendar_layout all_layouts[] = {calendar_layout::straddling, calendar_layout::around_epoch,
                                           calendar_layout::as_of_before, calendar_layout::single_day,
                                           calendar_layout::before_year_one};

struct log_shape {
  std::int64_t lines     = 0;
  std::int32_t entities  = 1;
  std::int32_t countries = 40;
  std::int32_t chips     = 12;
  std::int32_t exporters = 7;
  calendar_layout layout = calendar_layout::straddling;
  std::uint64_t seed     = 1;
  std::int64_t tpp_scale = 1;  ///< multiplies every chip's TPP: large values carry across 32 bits
  /// Multiplies every quantity (chip TPP is then 1..4, so that TPP sums still fit): large unit sums
  /// leave no room to pack records and units into one word.
  std::int64_t quantity_scale = 1;
  bool returns                = true;  ///< some quantities negative
};

struct random_log {
  shipment_columns columns;
  rule_context rules;
  dictionary_sizes sizes;
};

random_log make_log(const log_shape& shape)
{
  std::mt19937_64 rng(shape.seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(shape.lines) * 131 +
                      static_cast<std::uint64_t>(shape.entities) * 7 + static_cast<std::uint64_t>(shape.layout));
  const auto uniform = [&rng](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  };

  random_log log;
  dictionary_sizes& sizes = log.sizes;
  sizes.entities          = shape.entities;
  sizes.countries         = shape.countries;
  sizes.chips             = shape.chips;
  sizes.exporters         = shape.exporters;
  sizes.orders            = static_cast<std::int32_t>(std::max<std::int64_t>(1, shape.lines / 20));

  rule_context& rules = log.rules;
  day_t date_lo = 0;
  day_t date_hi = 0;
  switch (shape.layout) {
    case calendar_layout::straddling:  // 2024-10-04 .. 2026-09-05, dates 2024 .. 2027
      rules.window_start = 20000, rules.window_end = 20700, rules.as_of = 20600;
      date_lo = 19800, date_hi = 20900;
      break;
    case calendar_layout::around_epoch:
      rules.window_start = -500, rules.window_end = 400, rules.as_of = 1000;
      date_lo = -800, date_hi = 1200;
      break;
    case calendar_layout::as_of_before:
      rules.window_start = 20000, rules.window_end = 20700, rules.as_of = 19950;
      date_lo = 19800, date_hi = 20900;
      break;
    case calendar_layout::single_day:
      rules.window_start = 20100, rules.window_end = 20100, rules.as_of = 20100;
      date_lo = 20095, date_hi = 20105;
      break;
    case calendar_layout::before_year_one:  // 0001-01-01 is day -719162; year 0 is a leap year
      rules.window_start = -719800, rules.window_end = -719000, rules.as_of = -719050;
      date_lo = -719900, date_hi = -718900;
      break;
    case calendar_layout::long_window:
      rules.window_start = -2000, rules.window_end = 2000, rules.as_of = 2000;
      date_lo = -2100, date_hi = 2000;
      break;
  }

  // Chips: a few cheap ones so that small quantities sit near the limits.
  std::vector<std::int64_t> chip_tpp(static_cast<std::size_t>(sizes.chips));
  for (auto& t : chip_tpp) { t = shape.quantity_scale > 1 ? uniform(1, 4) : uniform(1, 5000) * shape.tpp_scale; }

  shipment_columns& c = log.columns;
  const auto n        = static_cast<std::size_t>(shape.lines);
  c.date.resize(n), c.entity.resize(n), c.country.resize(n), c.chip.resize(n), c.pathway.resize(n);
  c.quantity.resize(n), c.tpp.resize(n), c.order.resize(n), c.exporter.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    c.date[i]    = static_cast<day_t>(uniform(date_lo, date_hi));
    c.entity[i]  = static_cast<std::int32_t>(uniform(0, sizes.entities - 1));
    c.country[i] = static_cast<std::uint16_t>(uniform(0, sizes.countries - 1));
    c.chip[i]    = static_cast<std::uint16_t>(uniform(0, sizes.chips - 1));
    c.pathway[i] = static_cast<std::uint8_t>(uniform(0, pathway_count - 1));
    std::int64_t quantity = uniform(shape.returns ? -4 : 1, 12);
    if (quantity == 0) { quantity = 1; }
    if (uniform(0, 50) == 0) { quantity *= 1000; }  // the odd big order
    c.quantity[i] = quantity * shape.quantity_scale;
    c.tpp[i]      = quantity * chip_tpp[c.chip[i]];
    c.order[i]    = c.pathway[i] == static_cast<std::uint8_t>(pathway::lpp)
                      ? static_cast<std::int32_t>(uniform(0, sizes.orders - 1))
                      : -1;
    c.exporter[i] = static_cast<std::int32_t>(uniform(0, sizes.exporters - 1));
  }

  // Countries: the first three tier 3, the next seven tier 1, the rest tier 2 with a cap.
  const auto countries = static_cast<std::size_t>(sizes.countries);
  rules.country_tier.resize(countries);
  rules.country_cap_tpp.assign(countries, -1);
  rules.country_cap_pathways = uniform(0, 3) == 0 ? 0b11 : 0b01;  // LICENSE, sometimes LPP too
  std::vector<std::int64_t> cap_pathway_tpp(countries, 0);  // positive in-window tpp: scales caps
  for (std::size_t i = 0; i < n; ++i) {
    const bool in_window = c.date[i] >= rules.window_start && c.date[i] <= rules.window_end &&
                           c.date[i] <= rules.as_of;
    if (in_window && ((rules.country_cap_pathways >> c.pathway[i]) & 1U) != 0 && c.tpp[i] > 0) {
      cap_pathway_tpp[c.country[i]] += c.tpp[i];
    }
  }
  for (std::size_t k = 0; k < countries; ++k) {
    rules.country_tier[k] = k < 3 ? 3 : k < 10 ? 1 : 2;
    if (rules.country_tier[k] == 2) { rules.country_cap_tpp[k] = uniform(0, cap_pathway_tpp[k]); }
  }

  rules.chip_datacenter.resize(static_cast<std::size_t>(sizes.chips));
  for (auto& flag : rules.chip_datacenter) { flag = static_cast<std::uint8_t>(uniform(0, 1)); }
  const auto entities = static_cast<std::size_t>(sizes.entities);
  rules.entity_is_uveu.resize(entities);
  rules.entity_hq_tier1.resize(entities);
  for (std::size_t e = 0; e < entities; ++e) {
    rules.entity_is_uveu[e]  = static_cast<std::uint8_t>(uniform(0, 2) == 0);
    rules.entity_hq_tier1[e] = static_cast<std::uint8_t>(uniform(0, 1));
  }
  // Four words per entity cover 256 countries; wider tables read into the following words (as the
  // CPU's arithmetic does), so pad the table to keep every read inside it.
  const std::size_t nveu_words =
    entities * rule_context::nveu_mask_words + (countries > 256 ? (countries + 63) / 64 : 0);
  rules.entity_nveu_countries.resize(nveu_words);
  for (auto& word : rules.entity_nveu_countries) { word = rng() & rng(); }

  // Limits near the typical per-key sums, so some keys cross and others stay below.
  const std::int64_t typical_line_tpp = 2500 * 6;
  const std::int64_t window_days      = std::max<std::int64_t>(1, rules.window_end - rules.window_start + 1);
  const std::int64_t lpp_lines        = shape.lines / pathway_count;
  rules.lpp_per_order_tpp = uniform(0, 3) * typical_line_tpp;
  rules.lpp_per_consignee_year_tpp =
    typical_line_tpp * uniform(0, std::max<std::int64_t>(1, lpp_lines / std::max(1, sizes.entities)));
  const std::int64_t nveu_per_key =
    typical_line_tpp * std::max<std::int64_t>(1, lpp_lines / (static_cast<std::int64_t>(sizes.entities) *
                                                              sizes.countries));
  // Three phases; the last one sometimes ends before the window does (its cap then carries on).
  const day_t third = static_cast<day_t>(window_days / 3);
  const auto phase  = [](std::int64_t through, std::int64_t tpp) {
    nveu_phase p;
    p.through = static_cast<day_t>(through);
    p.tpp     = tpp;
    return p;
  };
  rules.nveu_caps.push_back(phase(rules.window_start + third, uniform(0, nveu_per_key)));
  rules.nveu_caps.push_back(phase(rules.window_start + 2 * third, uniform(0, 2 * nveu_per_key)));
  const std::int64_t last_through =
    uniform(0, 1) == 0 ? rules.window_end : std::int64_t{rules.window_end} - 2;
  rules.nveu_caps.push_back(
    phase(std::max<std::int64_t>(last_through, rules.nveu_caps[1].through + 1), uniform(0, 3 * nveu_per_key)));
  return log;
}

std::string context_of(const log_shape& shape)
{
  std::ostringstream text;
  text << "lines=" << shape.lines << " entities=" << shape.entities << " countries=" << shape.countries
       << " chips=" << shape.chips << " exporters=" << shape.exporters
       << " layout=" << static_cast<int>(shape.layout) << " seed=" << shape.seed
       << " quantity_scale=" << shape.quantity_scale << " returns=" << shape.returns;
  return text.str();
}

/// Runs both backends on one random log; true when they agree.
bool check_equivalence(const log_shape& shape, backend& cpu, backend& gpu)
{
  const random_log log     = make_log(shape);
  const shipment_view view = log.columns.view();
  const aggregation expected = cpu.aggregate(view, log.rules, log.sizes);
  const aggregation actual   = gpu.aggregate(view, log.rules, log.sizes);
  expect_same(context_of(shape), expected, actual);
  return expected == actual;
}

class GpuEquivalence : public ::testing::Test {
 protected:
  void SetUp() override
  {
    std::string why;
    if (!gpu_available(&why)) { GTEST_SKIP() << "no usable GPU: " << why; }
    cpu_ = make_cpu_backend();
    gpu_ = make_gpu_backend();
  }
  std::unique_ptr<backend> cpu_;
  std::unique_ptr<backend> gpu_;
};

TEST_F(GpuEquivalence, NameIsGpu) { EXPECT_EQ(gpu_->name(), "gpu"); }

TEST_F(GpuEquivalence, AroundWarpAndBlockSizes)
{
  for (const std::int64_t lines : {0, 1, 31, 32, 33, 63, 64, 65, 1023, 1024, 1025}) {
    for (const std::int32_t entities : {3, 2000}) {
      for (const calendar_layout layout : all_layouts) {
        for (std::uint64_t seed = 1; seed <= 6; ++seed) {
          log_shape shape;
          shape.lines    = lines;
          shape.entities = entities;
          shape.layout   = layout;
          shape.seed     = seed;
          if (!check_equivalence(shape, *cpu_, *gpu_)) { return; }  // one detailed failure is enough
        }
      }
    }
  }
}

TEST_F(GpuEquivalence, LargeLogs)
{
  for (const std::int32_t entities : {3, 60000}) {
    for (const calendar_layout layout : {calendar_layout::straddling, calendar_layout::around_epoch}) {
      for (std::uint64_t seed = 1; seed <= 2; ++seed) {
        log_shape shape;
        shape.lines    = 100000;
        shape.entities = entities;
        shape.layout   = layout;
        shape.seed     = seed;
        if (!check_equivalence(shape, *cpu_, *gpu_)) { return; }
      }
    }
  }
}

// With no more (entity, country) cells than lines, the dense pass sums only the pair table and the
// country and entity totals are its column and row sums. 40 countries: the pairs of about 75
// entities fill the shared memory left beside the cap, chip and exporter tables (3,028 cells of 2
// words), so 70 to 80 entities keep the pair table whole in shared memory or only a prefix, and
// 400 leave most of it in global memory; 20,000 lines keep every table dense. Rows of more than
// 32 countries and slabs of more than 256 entities test the row and column sums' strides.
TEST_F(GpuEquivalence, CountryAndEntityTotalsFromThePairTable)
{
  for (const std::int32_t entities : {1, 70, 74, 75, 76, 77, 80, 400, 499}) {
    for (const calendar_layout layout : {calendar_layout::straddling, calendar_layout::as_of_before}) {
      log_shape shape;
      shape.lines    = 20000;
      shape.entities = entities;
      shape.layout   = layout;
      shape.seed     = 19;
      if (!check_equivalence(shape, *cpu_, *gpu_)) { return; }
    }
  }
}

// ---- country-cap crossings found on (country, day) bins -------------------------------------

/// One capped country's lines, day by day from the window's first day (LICENSE, which always
/// counts against the cap), then another capped country's, interleaved on the same days, whose
/// cap no line reaches: its lines must not count towards the first's. The cap of country 10 is
/// @p cap; the line positions are in the order given, day by day.
random_log day_pattern_log(const std::vector<std::vector<std::int64_t>>& days, std::int64_t cap)
{
  log_shape shape;
  shape.lines        = 0;
  random_log log     = make_log(shape);
  shipment_columns& c = log.columns;
  for (std::size_t day = 0; day < days.size(); ++day) {
    for (const std::int64_t tpp : days[day]) {
      for (const std::uint16_t country : {std::uint16_t{10}, std::uint16_t{11}}) {
        c.date.push_back(static_cast<day_t>(log.rules.window_start + static_cast<day_t>(day)));
        c.entity.push_back(0);
        c.country.push_back(country);
        c.chip.push_back(0);
        c.pathway.push_back(static_cast<std::uint8_t>(pathway::license));
        const std::int64_t quantity = country == 10 ? tpp : (tpp > 0 ? tpp : -tpp);
        c.quantity.push_back(quantity);
        c.tpp.push_back(country == 10 ? tpp : 1000 * quantity);
        c.order.push_back(-1);
        c.exporter.push_back(0);
      }
    }
  }
  log.rules.country_cap_tpp.at(10) = cap;
  log.rules.country_cap_tpp.at(11) = std::int64_t{1} << 50;
  return log;
}

/// The GPU's and the CPU's country-10 crossing: each must be {line, value}, derived by hand.
void expect_country_cap_crossing(backend& cpu, backend& gpu, const random_log& log, const std::string& context,
                                 std::int64_t line, std::int64_t value)
{
  const shipment_view view = log.columns.view();
  const aggregation expected = cpu.aggregate(view, log.rules, log.sizes);
  const aggregation actual   = gpu.aggregate(view, log.rules, log.sizes);
  expect_same(context, expected, actual);
  EXPECT_EQ(expected.country_cap_crossing.at(10), (crossing{line, value})) << context << " (CPU)";
  EXPECT_EQ(actual.country_cap_crossing.at(10), (crossing{line, value})) << context << " (GPU)";
  EXPECT_EQ(actual.country_cap_crossing.at(11), crossing{}) << context;
}

// A day whose positive TPP could take the running total past the cap is scanned line by line:
// returns earlier in the day keep it below (no crossing that day), a later line crosses; a sum
// that only reaches the cap does not cross. Each line of country 10 is followed by one of 11, so
// country 10's k-th line is at position 2k.
TEST_F(GpuEquivalence, CountryCapCrossesInsideTheDay)
{
  expect_country_cap_crossing(*cpu_, *gpu_, day_pattern_log({{5, -3, 9, 100}}, 10), "one day", 4, 11);
  expect_country_cap_crossing(*cpu_, *gpu_, day_pattern_log({{4, 6}, {}, {1}}, 10), "reaches, then crosses", 4,
                              11);
  // Five days of a return before an equal shipment: each could cross, none does; day six does.
  std::vector<std::vector<std::int64_t>> days(5, std::vector<std::int64_t>{-20, 20});
  days.push_back({3, 8});
  expect_country_cap_crossing(*cpu_, *gpu_, day_pattern_log(days, 10), "five candidate days", 22, 11);
  expect_country_cap_crossing(*cpu_, *gpu_, day_pattern_log({{-20, 20}, {}, {}}, 10), "never", -1, 0);
}

// More days on which a country might cross than the bins path scans (16): the sorting check
// takes over and must give the same crossing.
TEST_F(GpuEquivalence, CountryCapWithManyCandidateDaysFallsBackToSorting)
{
  std::vector<std::vector<std::int64_t>> days(40, std::vector<std::int64_t>{-20, 20});
  days.push_back({11});
  expect_country_cap_crossing(*cpu_, *gpu_, day_pattern_log(days, 10), "forty candidate days", 160, 11);
}

// 300 countries over a 4,001-day window make more bins (1.2 M) than lines or 2^20: the sorting
// check runs instead, on random logs.
TEST_F(GpuEquivalence, CountryCapWithMoreBinsThanLinesSorts)
{
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    log_shape shape;
    shape.lines     = 20000;
    shape.entities  = 50;
    shape.countries = 300;
    shape.layout    = calendar_layout::long_window;
    shape.seed      = seed;
    if (!check_equivalence(shape, *cpu_, *gpu_)) { return; }
  }
}

/// A log whose dense pair table, in two words a cell (`gpu_tuning::pair_units_bits` -1), is filled
/// in slices of `slice_bytes` (packed records and units: 16 bytes a cell; unpacked, 24, so the test
/// gives unpacked logs half as many bytes again).
struct slicing {
  std::int64_t lines;
  std::int32_t entities;
  std::uint64_t slice_bytes;
  std::int32_t slices;  ///< expected: slice_bytes / (40 countries x 16 B) rows a slice, at most 256
                        ///< slices; 0 where the lines touch no more cells than a slice holds
};

/// Checks one sliced case against the CPU, packed and unpacked, in @p layouts; false on a failure.
bool check_sliced(const slicing& c, backend& cpu, std::initializer_list<calendar_layout> layouts)
{
  for (const std::int64_t quantity_scale : {std::int64_t{1}, std::int64_t{1} << 36}) {
    for (const calendar_layout layout : layouts) {
      log_shape shape;
      shape.lines                  = c.lines;
      shape.entities               = c.entities;
      shape.countries              = 40;
      shape.layout                 = layout;
      shape.quantity_scale         = quantity_scale;
      shape.seed                   = 11;
      const random_log log         = make_log(shape);
      const aggregation cpu_result = cpu.aggregate(log.columns.view(), log.rules, log.sizes);
      const auto resident          = upload_to_gpu(log.columns.view());
      gpu_tuning tuning;
      tuning.pair_slice_bytes = quantity_scale == 1 ? c.slice_bytes : c.slice_bytes / 2 * 3;
      tuning.pair_units_bits  = -1;  // two words a cell, as the slice counts assume (carried: PairCells*)
      gpu_timing timing;
      const aggregation gpu_result = aggregate_on_gpu(*resident, log.rules, log.sizes, &timing, tuning);
      const std::string context =
          context_of(shape) + " slice_bytes=" + std::to_string(tuning.pair_slice_bytes);
      expect_same(context, cpu_result, gpu_result);
      EXPECT_EQ(timing.pair_slices, c.slices) << context;
      if (::testing::Test::HasFailure()) { return false; }
    }
  }
  return true;
}

// A dense (entity, country) table larger than two slices of L2 is filled a slice (entity range)
// at a time from lines the dense pass staged. Slices of a few rows make these small logs take that
// path: 40 countries, 100 to 5,000 entities, slices of one row up to the 256-slice limit, lines
// around the pass's rounds of 1,024, records and units packed and not (quantity_scale), and each
// calendar layout (each leaves some lines used, so every case stages lines). Only 20,000 lines of
// 300 entities derive country and entity totals from the pairs and keep a prefix of about 3,000
// pair cells in shared memory (lines there are added, not staged).
TEST_F(GpuEquivalence, PairTableFilledInEntitySlices)
{
  // (A dense table needs at most 4 cells a line: 100 entities x 40 countries from 1,000 lines.)
  // The last case is not sliced: its 1,000 lines touch at most 16,000 bytes of cells (24,000
  // unpacked), which one slice holds, though the table (64,000 bytes) is larger than two.
  const slicing cases[] = {{1000, 100, 640, 100},   {1023, 100, 640, 100},    {1024, 100, 1280, 50},
                           {1025, 100, 640, 100},   {4097, 150, 2000, 50},    {20000, 300, 640, 150},
                           {60000, 5000, 640, 250}, {60000, 5000, 64000, 50}, {1000, 100, 20000, 0}};
  for (const slicing& c : cases) {
    if (!check_sliced(
            c, *cpu_,
            {calendar_layout::straddling, calendar_layout::around_epoch, calendar_layout::as_of_before,
             calendar_layout::single_day, calendar_layout::before_year_one})) {
      return;
    }
  }
  // The same log filled directly (never sliced) reports no slices.
  log_shape shape;
  shape.lines          = 20000;
  shape.entities       = 300;
  const random_log log = make_log(shape);
  const auto resident  = upload_to_gpu(log.columns.view());
  gpu_timing timing;
  gpu_tuning direct;
  direct.pair_slice_bytes = UINT64_MAX;
  EXPECT_TRUE(aggregate_on_gpu(*resident, log.rules, log.sizes, &timing, direct) ==
              cpu_->aggregate(log.columns.view(), log.rules, log.sizes));
  EXPECT_EQ(timing.pair_slices, 0);
}

// The sliced path small enough for compute-sanitizer (device_check.sh runs it under memcheck and
// racecheck): one row a slice, a round and one line, and the case that keeps pair cells in shared
// memory.
TEST_F(GpuEquivalence, PairTableSlicesOfOneRow)
{
  if (!check_sliced({1025, 100, 640, 100}, *cpu_, {calendar_layout::straddling})) { return; }
  EXPECT_TRUE(check_sliced({20000, 300, 640, 150}, *cpu_, {calendar_layout::straddling}));
}

// Columns uploaded once and aggregated twice (the benchmarks' path) give the CPU's answer each
// time: nothing of one aggregation leaks into the next.
TEST_F(GpuEquivalence, ResidentColumnsAggregateRepeatedly)
{
  for (const std::int64_t lines : {0, 1, 1025, 100000}) {
    log_shape shape;
    shape.lines    = lines;
    shape.entities = 2000;
    const random_log log   = make_log(shape);
    const aggregation cpu  = cpu_->aggregate(log.columns.view(), log.rules, log.sizes);
    const auto resident    = upload_to_gpu(log.columns.view());
    ASSERT_EQ(resident->size(), lines);
    EXPECT_TRUE(aggregate_on_gpu(*resident, log.rules, log.sizes) == cpu) << lines << " lines, first run";
    gpu_timing timing;
    EXPECT_TRUE(aggregate_on_gpu(*resident, log.rules, log.sizes, &timing) == cpu)
      << lines << " lines, second run (timed)";
    if (lines == 0) {  // no device work at all: nothing to time
      EXPECT_TRUE(timing.phase_ms.empty());
      EXPECT_EQ(timing.total_ms, 0.0);
      continue;
    }
    // The phases tile the call: their times add up to the total (events on one stream).
    ASSERT_FALSE(timing.phase_ms.empty());
    double phases = 0;
    for (const auto& [name, ms] : timing.phase_ms) {
      EXPECT_GE(ms, 0.0) << name;
      phases += ms;
    }
    EXPECT_GT(timing.total_ms, 0.0);
    EXPECT_NEAR(phases, timing.total_ms, 1e-3 * timing.phase_ms.size() + 1e-6 * timing.total_ms);
  }
}

// Dictionaries too large for shared memory: the country, chip and exporter tables take global
// atomics; a prefix of the entity codes is still summed in shared memory, the rest globally.
TEST_F(GpuEquivalence, WideDictionaries)
{
  for (const std::int64_t lines : {1, 1025, 100000}) {
    for (const std::int32_t entities : {1, 5000}) {
      log_shape shape;
      shape.lines     = lines;
      shape.entities  = entities;
      shape.countries = 2000;
      shape.chips     = 3000;
      shape.exporters = 5000;
      shape.seed      = 42;
      if (!check_equivalence(shape, *cpu_, *gpu_)) { return; }
    }
  }
}

// Key codes past 32 bits (20 million entities x 249 countries): the (entity, country) and
// (entity, country, pathway) checks and the pair sort take their 64-bit radix keys, which no
// smaller dictionary reaches. Not yet run on a GPU (written after the session's device time).
TEST_F(GpuEquivalence, KeyCodesWiderThan32Bits)
{
  log_shape shape;
  shape.lines     = 20000;
  shape.entities  = 20000000;
  shape.countries = 249;
  shape.seed      = 5;
  check_equivalence(shape, *cpu_, *gpu_);
}

// Results of 32 MB and more come back through pinned staging buffers of 16 MB in turn: 2,000,001
// entities make the entity totals 48,000,024 bytes (three chunks, the last one partial).
TEST_F(GpuEquivalence, LargeResultsComeBackThroughPinnedStaging)
{
  log_shape shape;
  shape.lines    = 20000;
  shape.entities = 2000001;
  shape.seed     = 13;
  check_equivalence(shape, *cpu_, *gpu_);
}

// Shared-memory counters are added as two 32-bit words with a carry: line TPP values past 2^32
// (and returns, which add two's-complement words) make both the low word wrap and the high word
// move, in shared cells (few entities) and in the global tail (many).
TEST_F(GpuEquivalence, LargeValuesCarryAcrossThe32BitWords)
{
  for (const std::int32_t entities : {5, 20000}) {
    for (const std::int64_t scale : {std::int64_t{1} << 20, std::int64_t{1} << 28}) {
      log_shape shape;
      shape.lines     = 20000;
      shape.entities  = entities;
      shape.tpp_scale = scale;
      shape.seed      = 11;
      if (!check_equivalence(shape, *cpu_, *gpu_)) { return; }
    }
  }
}

// Dense tables that just fill the shared memory a block may take without opting in (48 KB less the
// dense kernel's static BlockReduce storage, 6,134 words): with records and units packed, 40
// countries (80 words, 40 more for the cap totals), 12 chips (24), 7 exporters (14) and about 2,988
// entities (2 words each); with large quantities, unpacked, 160 + 36 + 21 words and about 1,972
// entities (3 each). Both land within a few words of the limit on either side, so the entity table
// is privatized whole on one side and as a prefix on the other.
TEST_F(GpuEquivalence, SharedMemoryBudgetEdge)
{
  using edge = std::tuple<std::int64_t, std::int32_t, std::int32_t>;  // quantity scale, entities
  for (const auto& [quantity_scale, first, last] : {edge{1, 2982, 2994}, edge{std::int64_t{1} << 36, 1966, 1980}}) {
    for (std::int32_t entities = first; entities <= last; ++entities) {
      log_shape shape;
      shape.lines          = 3000;
      shape.entities       = entities;
      shape.quantity_scale = quantity_scale;
      shape.seed           = 7;
      if (!check_equivalence(shape, *cpu_, *gpu_)) { return; }
    }
  }
}

// The dense pass packs records and units into one word while bits(lines) + bits(sum of |quantity|
// + lines x the largest return) <= 64: for these 3,000 lines up to quantities of about 2^28 with
// returns (which offset every line's units) and 2^33 without. Doubling the quantities adds one bit
// a step, so the sweep crosses from packed (far from, then right at the 64-bit edge) to unpacked,
// and stops before TPP sums would overflow. One chip and one exporter gather all lines in one cell
// each, as near the bound as a cell gets; one entity keeps every cell in shared memory, 5,000
// put most entity and pair cells in the global tables.
TEST_F(GpuEquivalence, RecordsAndUnitsPackedUpToTheWordEdge)
{
  for (const bool returns : {true, false}) {
    for (int shift = 20; shift <= 40; ++shift) {
      for (const std::int32_t entities : {1, 5000}) {
        log_shape shape;
        shape.lines          = 3000;
        shape.entities       = entities;
        shape.chips          = 1;
        shape.exporters      = 1;
        shape.quantity_scale = std::int64_t{1} << shift;
        shape.returns        = returns;
        shape.seed           = 17;
        if (!check_equivalence(shape, *cpu_, *gpu_)) { return; }
      }
    }
  }
}

/// The narrowest units field a carried pair cell of @p log may have: its largest quantity plus the
/// offset of its smallest return.
int narrowest_units_bits(const random_log& log)
{
  const auto [low, high]     = std::minmax_element(log.columns.quantity.begin(), log.columns.quantity.end());
  const std::uint64_t offset = *low < 0 ? 0ULL - static_cast<std::uint64_t>(*low) : 0ULL;
  int bits                   = 1;
  while ((static_cast<std::uint64_t>(*high) + offset) >> bits != 0) { ++bits; }
  return bits;
}

// The dense pair table's cells in one word (records, units and tpp in fields, one atomic a line),
// with the narrowest units field the lines allow, so that fields wrap and carry on many lines: tpp
// past its 32 bits (tpp_scale), units past theirs, records out of the word (quantity_scale leaves
// records 8 bits), or with the widest units field (31 bits: records carry out of the word every
// second line). In shared cells (one entity; 50 with the whole table shared and totals not
// derived), the global table, its slices (tpp_scale 48: staged lines carry tpp too) and the derived
// country and entity totals (300 entities: fewer cells than lines). Every case must carry
// somewhere, and equal the CPU.
TEST_F(GpuEquivalence, PairCellsCarriedInNarrowFields)
{
  struct carried_case {
    std::int64_t lines;
    std::int32_t entities;
    std::int64_t quantity_scale;
    std::int64_t tpp_scale;
    std::uint64_t slice_bytes;  ///< UINT64_MAX: filled directly
    bool widest;                ///< a units field of 31 bits, not the narrowest
  };
  const carried_case cases[] = {
      {60000, 1, 1, 16, UINT64_MAX, false},      {60000, 5, 1, 16, UINT64_MAX, false},
      {60000, 300, 1, 16, UINT64_MAX, false},    {60000, 300, 1, 48, 640, false},
      {60000, 1, 1024, 1, UINT64_MAX, false},    {60000, 5, 1024, 1, UINT64_MAX, false},
      {60000, 300, 1024, 1, 320, false},         {60000, 5000, 1, 16, 640, false},
      {60000, 5000, 1024, 1, UINT64_MAX, false}, {60000, 300, 1, 1, 640, true},
      {60000, 1, 1, 1, UINT64_MAX, true},        {1500, 50, 1, 16, UINT64_MAX, true}};
  for (const carried_case& c : cases) {
    for (const calendar_layout layout : {calendar_layout::straddling, calendar_layout::around_epoch}) {
      log_shape shape;
      shape.lines                  = c.lines;
      shape.entities               = c.entities;
      shape.quantity_scale         = c.quantity_scale;
      shape.tpp_scale              = c.tpp_scale;
      shape.layout                 = layout;
      shape.seed                   = 23;
      const random_log log         = make_log(shape);
      const aggregation cpu_result = cpu_->aggregate(log.columns.view(), log.rules, log.sizes);
      const auto resident          = upload_to_gpu(log.columns.view());
      gpu_tuning tuning;
      tuning.pair_slice_bytes    = c.slice_bytes;
      tuning.pair_units_bits     = c.widest ? 31 : narrowest_units_bits(log);
      tuning.carries_after_order = layout == calendar_layout::around_epoch;  // both places
      gpu_timing timing;
      const aggregation gpu_result = aggregate_on_gpu(*resident, log.rules, log.sizes, &timing, tuning);
      const std::string context    = context_of(shape) + " tpp_scale=" + std::to_string(c.tpp_scale) +
                                  " slice_bytes=" + std::to_string(c.slice_bytes) +
                                  " units_bits=" + std::to_string(tuning.pair_units_bits) +
                                  " carries_after_order=" + std::to_string(tuning.carries_after_order);
      expect_same(context, cpu_result, gpu_result);
      EXPECT_EQ(timing.pair_units_bits, tuning.pair_units_bits) << context;
      EXPECT_GT(timing.carried_cells, 0) << context;
      EXPECT_EQ(timing.pair_slices > 0, c.slice_bytes != UINT64_MAX) << context;
      if (::testing::Test::HasFailure()) { return; }
    }
  }
}

// A carried cell whose word wraps to exactly 0 holds its sums in its carries alone, and is still
// a row: three lines of 2^31 - 1 units and 2^32 tpp in all, records in one bit (tpp carries into
// units, which carry 2^31 into records: 3 + 1 records wrap too), and no other line in that cell.
// Where the cell is shared (one entity, 12 lines: the block's copy wraps to 0 and is not flushed)
// and where it is not (a cell of the last of 1,500 entities, 20,003 lines).
TEST_F(GpuEquivalence, PairCellWrappedToZeroIsStillReported)
{
  const std::int64_t quantity[3] = {std::int64_t{1} << 30, std::int64_t{1} << 29,
                                    (std::int64_t{1} << 29) - 1};
  const std::int64_t tpp[3]      = {std::int64_t{1} << 31, std::int64_t{1} << 30, std::int64_t{1} << 30};
  for (const std::int32_t entities : {1, 1500}) {
    log_shape shape;
    shape.lines             = entities == 1 ? 12 : 20003;
    shape.entities          = entities;
    shape.returns           = false;
    shape.seed              = 31;
    random_log log          = make_log(shape);
    shipment_columns& c     = log.columns;
    const std::size_t first = c.entity.size() - 3;
    for (std::size_t i = 0; i < first; ++i) {  // every other line avoids the cell
      if (c.entity[i] == entities - 1 && c.country[i] == 3) { c.country[i] = 4; }
    }
    for (std::size_t k = 0; k < 3; ++k) {
      c.entity[first + k]   = entities - 1;
      c.country[first + k]  = 3;
      c.date[first + k]     = log.rules.window_start;  // used and in the window
      c.quantity[first + k] = quantity[k];
      c.tpp[first + k]      = tpp[k];
    }
    const aggregation cpu_result = cpu_->aggregate(c.view(), log.rules, log.sizes);
    const auto resident          = upload_to_gpu(c.view());
    gpu_tuning tuning;
    tuning.pair_units_bits = 31;
    gpu_timing timing;
    const aggregation gpu_result = aggregate_on_gpu(*resident, log.rules, log.sizes, &timing, tuning);
    const std::string context    = context_of(shape);
    expect_same(context, cpu_result, gpu_result);
    EXPECT_EQ(timing.pair_units_bits, 31) << context;
    const auto row =
        std::find_if(gpu_result.by_entity_country.begin(), gpu_result.by_entity_country.end(),
                     [&](const pair_total& p) { return p.entity == entities - 1 && p.country == 3; });
    ASSERT_NE(row, gpu_result.by_entity_country.end()) << context;
    EXPECT_EQ(row->total.records, 3) << context;
    EXPECT_EQ(row->total.units, (std::int64_t{1} << 31) - 1) << context;
    EXPECT_EQ(row->total.tpp, std::int64_t{1} << 32) << context;
  }
}

// The cells each way on one log: one word chosen freely (few carries, if any), its carries summed
// after the SPEC order too (`carries_after_order`), and two words (`pair_units_bits` -1, the
// layout of lines whose parts do not fit one word); shared cells (one entity), derived totals
// (300) and a table of more cells than lines (1,500). Small enough for compute-sanitizer
// (device_check.sh runs it under memcheck and racecheck).
TEST_F(GpuEquivalence, PairCellsInOneWordOrTwo)
{
  for (const std::int32_t entities : {1, 300, 1500}) {
    log_shape shape;
    shape.lines                  = 20000;
    shape.entities               = entities;
    shape.seed                   = 29;
    const random_log log         = make_log(shape);
    const aggregation cpu_result = cpu_->aggregate(log.columns.view(), log.rules, log.sizes);
    const auto resident          = upload_to_gpu(log.columns.view());
    for (const auto& [units_bits, after_order] :
         {std::pair{0, false}, std::pair{0, true}, std::pair{-1, false}}) {
      gpu_tuning tuning;
      tuning.pair_units_bits     = units_bits;
      tuning.carries_after_order = after_order;
      gpu_timing timing;
      const aggregation gpu_result = aggregate_on_gpu(*resident, log.rules, log.sizes, &timing, tuning);
      const std::string context    = context_of(shape) + " pair_units_bits=" + std::to_string(units_bits) +
                                  " carries_after_order=" + std::to_string(after_order);
      expect_same(context, cpu_result, gpu_result);
      EXPECT_EQ(timing.pair_units_bits > 0, units_bits == 0) << context;
      if (::testing::Test::HasFailure()) { return; }
    }
  }
}

// A log split into parts (what the GPU backend does with a log larger than its memory) gives the
// whole log's answer on the GPU too: parts of 700 lines cut 20,000 lines into about 30 entity
// ranges, several country ranges and several LPP-order ranges.
TEST_F(GpuEquivalence, LogsLargerThanOnePass)
{
  const auto gpu_in_parts = make_gpu_backend(gpu_tuning{700});
  for (const calendar_layout layout : all_layouts) {
    log_shape shape;
    shape.lines    = 20000;
    shape.entities = 300;
    shape.layout   = layout;
    shape.seed     = 9;
    if (!check_equivalence(shape, *cpu_, *gpu_in_parts)) { return; }
  }
}

#if defined(CAPLEDGER_HAS_CUDA)
// A CUDA call that fails and throws (here an allocation of four times the GPU's memory, as an
// aggregation's allocation fails when another process took the memory) leaves no error behind:
// the runtime records it for `cudaGetLastError`, which the next aggregation's first launch check
// and CUB (its CubDebug reads it after every call) would report as theirs. Not yet run on a GPU.
TEST_F(GpuEquivalence, FailedCallLeavesNoErrorForTheNextAggregation)
{
  std::size_t free_bytes  = 0;
  std::size_t total_bytes = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
  {
    const detail::cuda_stream stream;
    try {
      const detail::device_buffer<std::byte> too_large(total_bytes * 4, stream.get());
      ADD_FAILURE() << "allocated " << total_bytes * 4 << " bytes on a GPU of " << total_bytes;
    } catch (const device_error& e) {
      EXPECT_NE(dynamic_cast<const gpu_memory_short*>(&e), nullptr) << e.what();
    }
  }
  EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess) << cudaGetErrorName(cudaPeekAtLastError());
  log_shape shape;
  shape.lines    = 1025;
  shape.entities = 2000;
  check_equivalence(shape, *cpu_, *gpu_);
}

// A stream waits for its work before it is destroyed: an aggregation that throws while its kernels
// run destroys its stream on the way out, and its caller then frees the columns those kernels read
// on another stream, which the memory pool may reuse or unmap at once. Here a 1 GiB memset (a few
// hundred microseconds) stands in for those kernels: the event after it has completed as soon as
// the stream is gone. Not yet run on a GPU.
TEST_F(GpuEquivalence, StreamWaitsForItsWorkWhenDestroyed)
{
  constexpr std::size_t bytes = std::size_t{1} << 30;
  void* memory                = nullptr;
  ASSERT_EQ(cudaMalloc(&memory, bytes), cudaSuccess);
  cudaEvent_t done = nullptr;
  ASSERT_EQ(cudaEventCreate(&done), cudaSuccess);
  {
    const detail::cuda_stream stream;
    ASSERT_EQ(cudaMemsetAsync(memory, 1, bytes, stream.get()), cudaSuccess);
    ASSERT_EQ(cudaEventRecord(done, stream.get()), cudaSuccess);
  }
  EXPECT_EQ(cudaEventQuery(done), cudaSuccess) << "the stream was destroyed with its work still running";
  EXPECT_EQ(cudaEventSynchronize(done), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(done), cudaSuccess);
  EXPECT_EQ(cudaFree(memory), cudaSuccess);
}
#endif

// ---- aggregate_in_parts (every machine: the CPU backend runs the passes) ------------------------

/// `aggregate_in_parts` over the CPU backend, counting its passes.
struct counted_cpu_passes {
  std::unique_ptr<backend> cpu = make_cpu_backend();
  const random_log* log        = nullptr;
  int passes                   = 0;
  std::int64_t largest_pass    = 0;
  aggregation run(std::int64_t max_lines)
  {
    return aggregate_in_parts(log->columns.view(), log->rules, log->sizes, max_lines, [&](const shipment_view& part) {
      ++passes;
      largest_pass = std::max(largest_pass, part.size);
      return cpu->aggregate(part, log->rules, log->sizes);
    });
  }
};

TEST(AggregateInParts, EqualsOnePassOverTheWholeLog)
{
  for (const calendar_layout layout : all_layouts) {
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
      for (const std::int64_t max_lines : {150, 400, 1999, 2000}) {
        log_shape shape;
        shape.lines    = 2000;
        shape.entities = 50;
        shape.layout   = layout;
        shape.seed     = seed;
        const random_log log = make_log(shape);
        const aggregation whole = make_cpu_backend()->aggregate(log.columns.view(), log.rules, log.sizes);
        counted_cpu_passes parts;
        parts.log                = &log;
        const aggregation split  = parts.run(max_lines);
        const std::string context = context_of(shape) + " max_lines=" + std::to_string(max_lines);
        expect_same(context, whole, split);
        EXPECT_LE(parts.largest_pass, max_lines) << context;
        if (max_lines >= shape.lines) {
          EXPECT_EQ(parts.passes, 1) << context;  // a log that fits takes one pass over itself
        } else {
          // Entity ranges alone need at least lines / max_lines passes.
          EXPECT_GE(parts.passes, (shape.lines + max_lines - 1) / max_lines) << context;
        }
        if (HasFailure()) { return; }
      }
    }
  }
}

// Positions the passes report are input positions: with one entity per part and crossings
// everywhere, every reported line must be one of the key's own lines in the whole log.
TEST(AggregateInParts, ManyPartsWithSkewedEntities)
{
  log_shape shape;
  shape.lines    = 5000;
  shape.entities = 400;
  shape.seed     = 3;
  random_log log = make_log(shape);
  // A few large entities, as in real logs: entity = floor(400 u^3).
  std::mt19937_64 rng(17);
  for (auto& entity : log.columns.entity) {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    entity         = static_cast<std::int32_t>(400 * u * u * u);
  }
  const aggregation whole = make_cpu_backend()->aggregate(log.columns.view(), log.rules, log.sizes);
  counted_cpu_passes parts;
  parts.log = &log;
  // The largest entity holds about 5000 * (1/400)^(1/3) = 680 lines; 1000 keeps it in one part.
  expect_same("skewed entities", whole, parts.run(1000));
  EXPECT_GE(parts.passes, 5);
}

// Every LPP line its own order (`order_id` absent): the per-order check's keys are as many as its
// lines, its deepest memory use per line (work_bytes_per_line is sized for it).
TEST_F(GpuEquivalence, EveryLppLineItsOwnOrder)
{
  for (const std::int32_t entities : {7, 3000}) {
    log_shape shape;
    shape.lines         = 20000;
    shape.entities      = entities;
    shape.seed          = 11;
    random_log log      = make_log(shape);
    std::int32_t orders = 0;
    for (auto& order : log.columns.order) {
      if (order >= 0) { order = orders++; }
    }
    log.sizes.orders           = std::max(orders, 1);
    const aggregation expected = cpu_->aggregate(log.columns.view(), log.rules, log.sizes);
    expect_same(context_of(shape) + " one order per LPP line", expected,
                gpu_->aggregate(log.columns.view(), log.rules, log.sizes));
    EXPECT_FALSE(expected.lpp_order.empty()) << "no order crossed: the shape tests too little";
  }
}

// ---- too little free GPU memory (another process holds the rest) ---------------------------------
// These hold nearly all the GPU's memory: ctest runs them alone (RUN_SERIAL, tests/CMakeLists.txt),
// and bench/device_check.sh after its parallel shards.

/// Holds all but about @p keep bytes of the GPU's free memory while it lives.
class free_memory_held {
 public:
  explicit free_memory_held(std::uint64_t keep)
  {
#if defined(CAPLEDGER_HAS_CUDA)
    std::size_t free_bytes  = 0;
    std::size_t total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
      throw std::runtime_error("cudaMemGetInfo failed");
    }
    // The driver maps in 2 MiB pages; step down until the allocation is granted.
    for (std::uint64_t more = 0; free_bytes > keep + more && held_ == nullptr; more += 2ULL << 20) {
      if (cudaMalloc(&held_, free_bytes - keep - more) != cudaSuccess) {
        held_ = nullptr;
        static_cast<void>(cudaGetLastError());
      }
      if (more > (64ULL << 20)) { throw std::runtime_error("could not hold the GPU's free memory"); }
    }
#else
    static_cast<void>(keep);
#endif
  }
  ~free_memory_held()
  {
#if defined(CAPLEDGER_HAS_CUDA)
    static_cast<void>(cudaFree(held_));
#endif
  }
  free_memory_held(const free_memory_held&)            = delete;
  free_memory_held& operator=(const free_memory_held&) = delete;

 private:
  void* held_ = nullptr;
};

class GpuMemoryShort : public GpuEquivalence {};

// Free memory that holds not one line: `--backend gpu` is refused before the GPU computes
// anything; `--backend auto` reports the log on the CPU, byte for byte, and says why.
TEST_F(GpuMemoryShort, AutoReportsOnTheCpu)
{
  report_options options;
  const std::filesystem::path sample = capledger::test::sample_dir();
  options.entities_path    = (sample / "entities.csv").string();
  options.every_view       = true;
  const reference_data ref = load_reference(options);
  shipment_log_builder builder(ref.countries, ref.chips, ingest_options{});
  builder.add_file((sample / "shipments.csv").string());
  const shipment_log log     = builder.finish();
  const report_output on_cpu = build_report(ref, log, options, *cpu_);
  const report_output on_gpu = build_report(ref, log, options, *gpu_);  // loads the kernels first
  EXPECT_EQ(on_gpu.backend_used, "gpu");

  const free_memory_held held(32ULL << 20);  // below the backend's 64 MiB headroom
  options.backend = "auto";
  std::ostringstream notes;
  const report_output fell_back = build_report_within_gpu_memory(ref, log, options, *gpu_, notes);
  EXPECT_EQ(fell_back.files, on_cpu.files);
  EXPECT_EQ(fell_back.backend_used, "cpu");
  EXPECT_NE(notes.str().find("capledger: backend cpu (the GPU's free memory cannot take this log"),
            std::string::npos)
      << notes.str();

  options.backend = "gpu";
  try {
    static_cast<void>(build_report_within_gpu_memory(ref, log, options, *gpu_, notes));
    ADD_FAILURE() << "--backend gpu ran without room for one line";
  } catch (const device_error& e) {
    EXPECT_NE(std::string(e.what()).find("not one line fits"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--backend cpu"), std::string::npos) << e.what();
  }
}

// The command line with the GPU's memory held by this process: `--backend gpu` exits 3 and
// writes no output; `--backend auto` writes what `--backend cpu` writes, and says why.
TEST_F(GpuMemoryShort, CommandLineGpuExitsThreeAndAutoUsesTheCpu)
{
  const std::filesystem::path sample = capledger::test::sample_dir();
  const std::filesystem::path work =
      std::filesystem::path(::testing::TempDir()) / ("gpu-short-" + std::to_string(::getpid()));
  std::filesystem::remove_all(work);
  std::filesystem::create_directories(work);
  const auto report = [&](const std::string& backend, const std::string& out) {
    const std::string command =
        "'" + std::string(CAPLEDGER_CLI_PATH) + "' report '" + (sample / "shipments.csv").string() +
        "' --entities '" + (sample / "entities.csv").string() + "' --backend " + backend + " --out '" +
        (work / out).string() + "' >/dev/null 2>'" + (work / (out + ".err")).string() + "'";
    const int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  const int cpu_status = report("cpu", "cpu");
  ASSERT_TRUE(cpu_status == 0 || cpu_status == 1) << capledger::test::read_text(work / "cpu.err");
  {
    const free_memory_held held(32ULL << 20);
    EXPECT_EQ(report("gpu", "gpu"), 3) << capledger::test::read_text(work / "gpu.err");
    EXPECT_FALSE(std::filesystem::exists(work / "gpu"));
    EXPECT_EQ(report("auto", "auto"), cpu_status) << capledger::test::read_text(work / "auto.err");
  }
  // A child process with 32 MiB free may not even make its own context ("no usable GPU"), or
  // finds no room for a line: the CPU either way, said as one of the two.
  const std::string said = capledger::test::read_text(work / "auto.err");
  EXPECT_TRUE(said.find("capledger: backend cpu (the GPU's free memory cannot take this log") !=
                  std::string::npos ||
              said.find("capledger: backend cpu (no usable GPU") != std::string::npos)
      << said;
  for (const char* file : {"by_entity_country.csv", "findings.csv", "by_country.csv", "summary.json"}) {
    const std::string expected = capledger::test::read_text(work / "cpu" / file);
    EXPECT_FALSE(expected.empty()) << file;
    EXPECT_EQ(capledger::test::read_text(work / "auto" / file), expected) << file;
  }
  std::filesystem::remove_all(work);
}

// With little free memory a log takes several passes sized from what is free, and still gives
// exactly the CPU's aggregation; with less, it gives that or is refused as too short for the
// log (which `auto` answers on the CPU), never another error.
TEST_F(GpuMemoryShort, PassesAreSizedByFreeMemory)
{
  log_shape shape;
  shape.lines                = 3'000'000;
  shape.entities             = 2000;
  shape.seed                 = 5;
  const random_log log       = make_log(shape);
  const aggregation expected = cpu_->aggregate(log.columns.view(), log.rules, log.sizes);
  // One pass first, with the memory free: it loads every kernel this log launches.
  expect_same("one pass", expected, gpu_->aggregate(log.columns.view(), log.rules, log.sizes));

  for (const std::uint64_t keep_mib : {96, 128, 160}) {
    const free_memory_held held(keep_mib << 20);
    try {
      expect_same("passes in " + std::to_string(keep_mib) + " MiB", expected,
                  gpu_->aggregate(log.columns.view(), log.rules, log.sizes));
    } catch (const gpu_memory_short& e) {
      std::cout << "[          ] " << keep_mib << " MiB free: " << e.what() << "\n";
    }
  }

  log_shape crowded    = shape;
  crowded.lines        = 1'500'000;
  crowded.entities     = 1;
  const random_log one = make_log(crowded);
  // The backend keeps 64 MiB and an eighth of what is free: 256 MiB leave room for about a
  // million lines a pass.
  const free_memory_held held(256ULL << 20);
  expect_same("passes sized by free memory", expected,
              gpu_->aggregate(log.columns.view(), log.rules, log.sizes));
  // The pass size, as the refusal of a log with one entity states it.
  try {
    static_cast<void>(gpu_->aggregate(one.columns.view(), one.rules, one.sizes));
    ADD_FAILURE() << "one entity of 1,500,000 lines fit in one pass: the memory was not held";
  } catch (const gpu_memory_short& e) {
    const std::string what = e.what();
    const auto at          = what.find("more than the ");
    ASSERT_NE(at, std::string::npos) << what;
    const std::int64_t per_pass = std::stoll(what.substr(at + 14));
    std::cout << "[          ] lines per pass in 256 MiB: " << per_pass << "\n";
    EXPECT_GT(per_pass, 100'000) << what;
    EXPECT_LT(per_pass, crowded.lines) << what;
  }
}

/// Splits @p log in passes of @p max_lines, which must be refused before any pass with a
/// gpu_memory_short whose message holds @p reason.
void expect_refused(const random_log& log, std::int64_t max_lines, const std::string& reason)
{
  counted_cpu_passes parts;
  parts.log = &log;
  try {
    static_cast<void>(parts.run(max_lines));
    ADD_FAILURE() << "split into passes of " << max_lines << "; expected: " << reason;
  } catch (const gpu_memory_short& e) {  // `auto` reports such a log on the CPU instead
    EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
  }
  EXPECT_EQ(parts.passes, 0) << reason;
}

// An empty log needs no room: it takes its one (empty) pass even when not one line would fit.
TEST(AggregateInParts, EmptyLogTakesOnePassWithoutRoom)
{
  log_shape empty;
  empty.lines          = 0;
  empty.entities       = 5;
  const random_log log = make_log(empty);
  counted_cpu_passes parts;
  parts.log = &log;
  EXPECT_TRUE(parts.run(0) == make_cpu_backend()->aggregate(log.columns.view(), log.rules, log.sizes));
  EXPECT_EQ(parts.passes, 1);
}

TEST(AggregateInParts, OneKeyLargerThanAPassIsRefused)
{
  log_shape one_entity;
  one_entity.lines    = 500;
  one_entity.entities = 1;
  const random_log log = make_log(one_entity);
  expect_refused(log, 100, "one entity has 500 lines");
  expect_refused(log, 0, "not one line fits");

  // Eleven countries: only the last is tier 2 with a cap, so all the cap-pathway lines in the
  // window are one key; entities and orders each stay far below 20 lines.
  log_shape one_capped;
  one_capped.lines     = 3000;
  one_capped.entities  = 500;
  one_capped.countries = 11;
  expect_refused(make_log(one_capped), 20, "cap-pathway lines in the window");
}

// Runs on every machine: the reference keeps the LPP annual key -1 (entity 0, year -1), which the
// before_year_one layout produces and the GPU backend reports; an open-addressing table whose empty
// mark was -1 used to drop it.
TEST(CpuBackend, KeepsLppAnnualKeyMinusOne)
{
  shipment_columns c;
  const auto add = [&c](day_t date, std::int32_t entity) {
    c.date.push_back(date), c.entity.push_back(entity), c.country.push_back(0), c.chip.push_back(0);
    c.pathway.push_back(static_cast<std::uint8_t>(pathway::lpp)), c.quantity.push_back(1);
    c.tpp.push_back(10), c.order.push_back(0), c.exporter.push_back(0);
  };
  add(-719800, 0), add(-719790, 0), add(-719780, 1), add(-719770, 1);  // all in year -1
  rule_context rules;
  rules.as_of = -719000, rules.window_start = -719900, rules.window_end = -719000;
  rules.country_tier = {1}, rules.country_cap_tpp = {-1}, rules.chip_datacenter = {1};
  rules.entity_is_uveu = {0, 0}, rules.entity_hq_tier1 = {0, 0};
  rules.entity_nveu_countries.assign(2 * rule_context::nveu_mask_words, 0);
  rules.lpp_per_order_tpp = 1000, rules.lpp_per_consignee_year_tpp = 15;
  rules.nveu_caps = {nveu_phase{0, 5}};
  dictionary_sizes sizes;
  sizes.entities = 2, sizes.countries = 1, sizes.chips = 1, sizes.exporters = 1, sizes.orders = 1;
  const aggregation a = make_cpu_backend()->aggregate(c.view(), rules, sizes);
  ASSERT_EQ(a.lpp_annual.size(), 2U);
  EXPECT_EQ(a.lpp_annual[0], (keyed_running_total{entity_year_key(0, -1), 20, crossing{1, 20}}));
  EXPECT_EQ(a.lpp_annual[1], (keyed_running_total{entity_year_key(1, -1), 20, crossing{3, 20}}));
}

// Runs on every machine: without a GPU the backend says why and refuses cleanly.
TEST(GpuBackend, UnavailableSaysWhy)
{
  std::string why;
  if (gpu_available(&why)) { GTEST_SKIP() << "a GPU is usable here"; }
  EXPECT_FALSE(why.empty());
  EXPECT_THROW(static_cast<void>(make_gpu_backend()), device_error);
  EXPECT_THROW(static_cast<void>(upload_to_gpu(shipment_view{})), device_error);
}

}  // namespace
