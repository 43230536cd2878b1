/// @file streaming_report.cpp
/// @brief `report` on the CPU in bounded memory: every aggregate of the CPU backend, computed as
/// the log streams past instead of from columns held in memory.
///
/// Totals are sums, so each chunk adds to them and is dropped. The running-total checks need
/// the lines in (date, input position) order, which a log need not follow; they keep, per key
/// and day, the day's sum and its highest running sum (`day_bin`). Walking a key's days in date
/// order then tells, exactly, on which day its running total first goes over the limit, and
/// only the lines of those days are read a second time (`shipment_log_builder::replay`, which
/// skips the sections of the log whose dates do not span one of those days, and, out of date
/// order, those that `position_filter` says hold no crossing key's line of its crossing day) to
/// find the crossing line itself. Memory grows with the keys and days that occur (and, unless
/// ids are checked out of memory, with the id set; out of date order, with the filters up to
/// their bound), not with the lines.
#include <capledger/checks.hpp>
#include <capledger/error.hpp>
#include <capledger/report.hpp>

#include "external_id_check.hpp"
#include "key_table.hpp"
#include "many_cores.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <unordered_map>

namespace capledger {

namespace {

using detail::key_table;

/// The lines of one key on one day, in input order: their sum and the highest running sum after
/// 1, 2, ... of them. A total of T before the day goes over L during it iff T + max_prefix > L.
struct day_bin {
  std::int64_t sum        = 0;
  std::int64_t max_prefix = std::numeric_limits<std::int64_t>::min();
  void add(std::int64_t tpp)
  {
    sum += tpp;  // exact: every partial sum is within the log's sum of |tpp| (ingest's bound)
    max_prefix = std::max(max_prefix, sum);
  }
};

/// Day bins of many keys: (key, day) to `day_bin`, one table per check, for days of the
/// counting window. A key and a day offset are packed into one table key.
class bin_table {
 public:
  /// Windows of up to 65,536 days (179 years) pack the key itself: keys are below 2^47 (an
  /// entity code < 2^31 times 65536 plus a country), so key * 2^16 fits. Longer windows pack a
  /// dense index of the key instead, beside a 32-bit day offset.
  /// @param dense_keys when keys are 0 .. dense_keys - 1 and the window is short: one array of
  /// bins, day-major, so lines of a log in date order touch a few cache lines, not a table.
  bin_table(day_t first_day, day_t last_day, std::int64_t dense_keys = 0)
      : first_day_(first_day),
        packed_(static_cast<std::int64_t>(last_day) - first_day < 65536),
        shift_(packed_ ? 16 : 32)
  {
    const std::int64_t days = static_cast<std::int64_t>(last_day) - first_day + 1;
    if (dense_keys > 0 && days > 0 && days * dense_keys <= (std::int64_t{1} << 22)) {
      dense_keys_ = dense_keys;
      days_       = days;
      dense_.resize(static_cast<std::size_t>(days * dense_keys));
    }
  }

  /// Starts loading the bin of (@p key, @p day) where its address needs no lookup: dense bins (a
  /// log out of date order sends each line to a bin of a random day) and packed keys (orders and
  /// (entity, year) keys are many, each bin a cache miss). Always inlined, as `key_table::prefetch`:
  /// not inlined, GCC deleted its calls.
  [[gnu::always_inline]] void prefetch(std::int64_t key, day_t day) const noexcept
  {
    const std::int64_t offset = static_cast<std::int64_t>(day) - first_day_;
    if (dense_keys_ > 0 && offset >= 0 && offset < days_ && key >= 0 && key < dense_keys_) {
      __builtin_prefetch(&dense_[static_cast<std::size_t>(offset * dense_keys_ + key)], 1);
    } else if (dense_keys_ == 0 && packed_) {  // a probe's first slot: any key is harmless here
      bins_.prefetch(key * (std::int64_t{1} << shift_) + offset);
    }
  }

  day_bin& at(std::int64_t key, day_t day)
  {
    if (dense_keys_ > 0) { return dense_[static_cast<std::size_t>((day - first_day_) * dense_keys_ + key)]; }
    return bins_.at(combined(key, day));
  }

  /// Lets go of every bin (`sorted` gives none afterwards).
  void release()
  {
    dense_keys_ = 0;
    dense_      = {};
    bins_       = {};
    key_index_  = {};
    keys_       = {};
  }

  struct entry {
    std::int64_t key;
    day_t day;
    day_bin bin;
  };
  /// Every (key, day, bin) of the keys @p keep(key) holds for, sorted by key then day.
  template <typename Keep>
  [[nodiscard]] std::vector<entry> sorted(Keep keep) const
  {
    std::vector<entry> out;
    if (dense_keys_ > 0) {  // key by key, day by day: sorted as it goes
      for (std::int64_t key = 0; key < dense_keys_; ++key) {
        if (!keep(key)) { continue; }
        for (std::int64_t d = 0; d < days_; ++d) {
          const day_bin& bin = dense_[static_cast<std::size_t>(d * dense_keys_ + key)];
          if (bin.max_prefix != day_bin{}.max_prefix) {
            out.push_back({key, static_cast<day_t>(first_day_ + d), bin});
          }
        }
      }
      return out;
    }
    out.reserve(bins_.size());
    bins_.for_each([&](std::int64_t packed, const day_bin& bin) {
      const std::int64_t high = packed >> shift_;  // arithmetic: undoes high * 2^shift for negative keys
      const auto day          = static_cast<day_t>(first_day_ + (packed & ((std::int64_t{1} << shift_) - 1)));
      const std::int64_t key  = packed_ ? high : keys_[static_cast<std::size_t>(high)];
      if (keep(key)) { out.push_back({key, day, bin}); }
    });
    std::sort(out.begin(), out.end(),
              [](const entry& a, const entry& b) { return a.key != b.key ? a.key < b.key : a.day < b.day; });
    return out;
  }

 private:
  day_t first_day_;
  bool packed_;
  int shift_;
  std::int64_t dense_keys_ = 0;  ///< > 0: the bins live in `dense_`
  std::int64_t days_       = 0;
  std::vector<day_bin> dense_;
  key_table<day_bin> bins_;
  key_table<std::int64_t> key_index_;  ///< unpacked: key to its dense index + 1
  std::vector<std::int64_t> keys_;

  std::int64_t combined(std::int64_t key, day_t day)
  {
    const std::int64_t offset = static_cast<std::int64_t>(day) - first_day_;  // in the window: >= 0
    if (packed_) { return key * (std::int64_t{1} << shift_) + offset; }
    std::int64_t& index = key_index_.at(key);
    if (index == 0) {
      keys_.push_back(key);
      index = static_cast<std::int64_t>(keys_.size());
    }
    return (index - 1) * (std::int64_t{1} << shift_) + offset;
  }
};

/// For a log out of date order: which runs of input positions may hold a line of a given
/// check key on a given day. Each 512-line section of such a log holds lines of nearly every
/// day, so the second look, asked for a few crossing days, would read every section, while the
/// lines it needs are those of the crossing keys on their crossing days (in a shuffled
/// 5,000,000-line log, 1,598 lines in 1,349 of its 9,766 sections). A Bloom filter of 2 KiB per
/// block of 512 positions answers; a key sets 4 bits of one 64-bit word. It never misses a key it
/// holds, and answers yes to one it does not hold about once in 5,000 times with 512 keys in the
/// block (a line counts for one key, an LPP line two: once in 400 at 1,024, the most).
/// Blocks of lines in date order keep no filter (their sections' day ranges answer), nor blocks
/// past the first `max_blocks` (the memory stays bounded: 2 KiB per 512 lines up to then).
class position_filter {
 public:
  static constexpr int block_shift            = 9;                     ///< 512 positions a block
  static constexpr std::size_t max_blocks     = std::size_t{1} << 16;  ///< 128 MiB of filters at most
  static constexpr std::size_t max_keys_asked = 1024;  ///< more: nearly every block would answer yes

  /// The key of @p check's @p key on @p day, as `add` and `may_hold` take it.
  [[nodiscard]] static std::uint64_t key_of(int check, std::int64_t key, day_t day) noexcept
  {
    // Murmur3's finalizer over the three packed together: every bit of each moves the word and
    // the bits chosen.
    std::uint64_t x =
        (static_cast<std::uint64_t>(key) << 2 | static_cast<std::uint64_t>(check)) * 0x9e3779b97f4a7c15ULL ^
        static_cast<std::uint32_t>(day);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
  }
  /// The line at @p position (a line out of date order) counts for @p key.
  void add(std::int64_t position, std::uint64_t key)
  {
    const auto block = static_cast<std::size_t>(position >> block_shift);
    if (block >= max_blocks) { return; }
    if (block >= filter_of_.size()) { filter_of_.resize(std::max(block + 1, 2 * filter_of_.size()), none); }
    std::uint32_t& filter = filter_of_[block];
    if (filter == unfiltered) { return; }
    if (filter == none) {
      if (filters_ % filters_per_page == 0) {  // pages, not one vector: no copy as it grows
        pages_.emplace_back(new std::uint64_t[filters_per_page * words_per_block]());
      }
      filter = filters_++;
    }
    words_of(filter)[key >> 56] |= bits_of(key);
  }
  /// Lines in date order at positions @p first .. @p last: their blocks answer yes to every key.
  void keep_unfiltered(std::int64_t first, std::int64_t last)
  {
    const auto end = std::min(static_cast<std::size_t>(last >> block_shift) + 1, max_blocks);
    if (end > filter_of_.size()) { filter_of_.resize(std::max(end, 2 * filter_of_.size()), none); }
    for (auto block = static_cast<std::size_t>(first >> block_shift); block < end; ++block) {
      filter_of_[block] = unfiltered;
    }
  }
  /// @return false when no line at positions @p first .. @p last counts for any of @p keys
  [[nodiscard]] bool may_hold(std::int64_t first, std::int64_t last,
                              const std::vector<std::uint64_t>& keys) const
  {
    if (keys.size() > max_keys_asked) { return true; }
    for (auto block = static_cast<std::size_t>(first >> block_shift);
         block <= static_cast<std::size_t>(last >> block_shift); ++block) {
      if (block >= max_blocks) { return true; }
      if (block >= filter_of_.size() || filter_of_[block] == none) { continue; }  // no line counted
      if (filter_of_[block] == unfiltered) { return true; }
      const std::uint64_t* words = words_of(filter_of_[block]);
      for (const std::uint64_t key : keys) {
        const std::uint64_t bits = bits_of(key);
        if ((words[key >> 56] & bits) == bits) { return true; }
      }
    }
    return false;
  }

 private:
  static constexpr std::size_t words_per_block    = 256;          ///< chosen by a key's top 8 bits
  static constexpr std::uint32_t none             = 0xffffffffU;  ///< no line counted in the block yet
  static constexpr std::uint32_t unfiltered       = 0xfffffffeU;
  static constexpr std::uint32_t filters_per_page = 1024;  ///< 2 MiB
  std::vector<std::uint32_t> filter_of_;  ///< per block: its filter's index, or none / unfiltered
  std::vector<std::unique_ptr<std::uint64_t[]>> pages_;
  std::uint32_t filters_ = 0;

  [[nodiscard]] std::uint64_t* words_of(std::uint32_t filter) const noexcept
  {
    return pages_[filter / filters_per_page].get() + filter % filters_per_page * words_per_block;
  }

  [[nodiscard]] static std::uint64_t bits_of(std::uint64_t key) noexcept
  {
    return std::uint64_t{1} << (key & 63) | std::uint64_t{1} << (key >> 6 & 63) |
           std::uint64_t{1} << (key >> 12 & 63) | std::uint64_t{1} << (key >> 18 & 63);
  }
};

/// One key whose running total goes over its limit on `day`: where the second look starts.
struct crossing_search {
  day_t day           = 0;
  std::int64_t before = 0;  ///< running total before the day
  std::int64_t limit  = 0;
  std::int64_t within = 0;  ///< sum of the day's lines seen so far in the second look
  crossing found;
};

/// A key's final total, and the day it first goes over its limit when it does.
struct key_outcome {
  std::int64_t key   = 0;
  std::int64_t total = 0;
  bool crosses       = false;
  crossing_search search;
};

/// Any key may cross its limit (`walk_days`' default).
struct every_key {
  bool operator()(std::int64_t) const noexcept { return true; }
};

/// Walks each key's days in date order. @p limit_of(key, day) is the limit in force.
/// @param crossing_keys_only keep only the keys that cross (LPP: one outcome per order otherwise)
/// @param may_cross false for a key that cannot cross (the positive tpp of its lines sums to no
/// more than its limit): with crossing_keys_only, its days are not even sorted
template <typename LimitOf, typename MayCross = every_key>
std::vector<key_outcome> walk_days(const bin_table& bins, LimitOf limit_of, bool crossing_keys_only = false,
                                   MayCross may_cross = {})
{
  std::vector<key_outcome> out;
  for (const auto& e : bins.sorted([&](std::int64_t key) { return !crossing_keys_only || may_cross(key); })) {
    if (out.empty() || out.back().key != e.key) {
      if (crossing_keys_only && !out.empty() && !out.back().crosses) { out.pop_back(); }
      out.push_back({e.key, 0, false, {}});
    }
    key_outcome& k = out.back();
    if (!k.crosses) {
      const std::int64_t limit = limit_of(e.key, e.day);
      if (k.total + e.bin.max_prefix > limit) {
        k.crosses = true;
        k.search  = {e.day, k.total, limit, 0, {}};
      }
    }
    k.total += e.bin.sum;
  }
  if (crossing_keys_only && !out.empty() && !out.back().crosses) { out.pop_back(); }
  return out;
}

/// First line (in (date, input position) order) and summed tpp of one key's rule-breaking lines,
/// with what findings print about that line.
struct first_line_seen {
  std::int64_t line = -1;
  std::int64_t tpp  = 0;
  line_detail detail;
  void add(std::int64_t position, const line_batch& batch, std::int64_t k, std::int64_t line_tpp)
  {
    tpp += line_tpp;
    const day_t date = batch.columns.date[static_cast<std::size_t>(k)];
    if (line < 0 || date < detail.date) {  // positions only grow: an equal date keeps the first
      line   = position;
      detail = {date, std::string(batch.shipment_id(k)), batch.columns.entity[static_cast<std::size_t>(k)],
                batch.columns.country[static_cast<std::size_t>(k)]};
    }
  }
};

/// `v[index]`, growing @p v to hold it: its capacity doubles as it must, but only elements up to
/// @p index are made (and their memory touched).
template <typename Vector>
auto& grown_at(Vector& v, std::size_t index)
{
  if (index >= v.size()) {
    if (index >= v.capacity()) { v.reserve(std::max(index + 1, 2 * v.capacity())); }
    v.resize(index + 1);
  }
  return v[index];
}

/// Every aggregate of the CPU backend, fed one batch of lines at a time.
class streaming_aggregator {
 public:
  streaming_aggregator(const rule_context& context, std::size_t countries)
      : context_(context),
        country_bins_(context.window_start, context.window_end, static_cast<std::int64_t>(countries)),
        nveu_bins_(context.window_start, context.window_end),
        order_bins_(context.window_start, context.window_end),
        annual_bins_(context.window_start, context.window_end)
  {
    out_.by_country.resize(countries);
    pairs_.grow_ahead();
  }

  /// Adds @p batch; the context must cover its entity and chip codes.
  void add(const line_batch& batch)
  {
    const shipment_columns& c    = batch.columns;
    const day_t last_day         = std::min(context_.window_end, context_.as_of);
    constexpr std::int64_t ahead = 8;  // lines between a prefetch and its use
    // Lines out of date order go to country-day bins of random days, each a cache miss, so the
    // bins are prefetched too; in date order they sit in cache and the prefetch only costs.
    bool out_of_order = false;
    for (std::int64_t k = 1; k < std::min<std::int64_t>(batch.size(), 64) && !out_of_order; ++k) {
      out_of_order = c.date[static_cast<std::size_t>(k)] < c.date[static_cast<std::size_t>(k - 1)];
    }
    if (!out_of_order && batch.size() > 0) {
      filter_.keep_unfiltered(batch.position(0), batch.position(batch.size() - 1));
    }
    for (std::int64_t k = 0; k < batch.size(); ++k) {
      const auto i = static_cast<std::size_t>(k);
      if (k + ahead < batch.size()) {
        const auto j = static_cast<std::size_t>(k + ahead);
        pairs_.prefetch(entity_country_key(c.entity[j], c.country[j]));
        if (out_of_order) { country_bins_.prefetch(c.country[j], c.date[j]); }
        if (c.pathway[j] == static_cast<std::uint8_t>(pathway::lpp)) {
          const std::int64_t year_key = entity_year_key(c.entity[j], year_of_memo(c.date[j]));
          order_bins_.prefetch(c.order[j], c.date[j]);
          annual_bins_.prefetch(year_key, c.date[j]);
          annual_positive_tpp_.prefetch(year_key);
        } else if (c.pathway[j] == static_cast<std::uint8_t>(pathway::nveu)) {
          nveu_bins_.prefetch(entity_country_key(c.entity[j], c.country[j]), c.date[j]);
        }
      }
      const day_t date = c.date[i];
      latest_          = std::max(latest_, date);
      if (date > context_.as_of) { continue; }
      const std::int64_t q        = c.quantity[i];
      const std::int64_t tpp      = c.tpp[i];
      const std::int32_t entity   = c.entity[i];
      const std::uint16_t country = c.country[i];
      ++out_.lines_used;
      out_.by_country[country].add_line(q, tpp);
      grown_at(out_.by_chip, c.chip[i]).add_line(q, tpp);
      grown_at(out_.by_exporter, static_cast<std::size_t>(c.exporter[i])).add_line(q, tpp);
      pairs_.at(entity_country_key(entity, country)).add_line(q, tpp);
      if (date < context_.window_start || date > last_day) { continue; }

      const auto path = static_cast<pathway>(c.pathway[i]);
      // Out of date order, each (check key, day) a line counts for goes into its block's filter.
      const auto bin = [&](bin_table& bins, int check, std::int64_t key) {
        bins.at(key, date).add(tpp);
        if (out_of_order) { filter_.add(batch.position(k), position_filter::key_of(check, key, date)); }
      };
      if ((context_.country_cap_pathways >> c.pathway[i]) & 1U) {
        bin(country_bins_, country_check, country);
      }
      if (path == pathway::nveu) { bin(nveu_bins_, nveu_check, entity_country_key(entity, country)); }
      if (path == pathway::lpp) {
        const std::int64_t year_key = entity_year_key(entity, year_of_memo(date));
        bin(order_bins_, order_check, c.order[i]);
        bin(annual_bins_, annual_check, year_key);
        if (tpp > 0) {  // a running total never passes the sum of the positive tpp before it
          grown_at(order_positive_tpp_, static_cast<std::size_t>(c.order[i])) += tpp;
          annual_positive_tpp_.at(year_key) += tpp;
        }
      }
      if (q > 0) {
        const std::int64_t position = batch.position(k);
        if (context_.country_tier[country] == 3) {
          prohibited_.at(entity_country_key(entity, country)).add(position, batch, k, tpp);
        }
        if (context_.is_unauthorized(path, entity, country, c.chip[i])) {
          unauthorized_.at(entity_country_pathway_key(entity, country, c.pathway[i]))
              .add(position, batch, k, tpp);
        }
      }
    }
  }

  /// The latest date of every line added (as_of or not); INT_MIN when none.
  [[nodiscard]] day_t latest() const noexcept { return latest_; }

  /// Finishes every aggregate; @p builder reads the crossing days' sections again for the crossing lines.
  aggregation finish(const dictionary_sizes& sizes, shipment_log_builder& builder)
  {
    out_.by_entity.resize(static_cast<std::size_t>(sizes.entities));
    out_.by_chip.resize(static_cast<std::size_t>(sizes.chips));
    out_.by_exporter.resize(static_cast<std::size_t>(sizes.exporters));
    // The (entity, country) rows are sorted on a thread of their own while the checks' days are
    // walked and read again here (they share nothing).
    std::future<void> pairs_sorted = std::async(std::launch::async, [this, &sizes] {
      // Sorted by (entity, country) without comparing them all: a counting pass places each
      // entity's pairs (millions, in a large log), then each entity's few countries are sorted.
      std::vector<std::size_t> run_start(static_cast<std::size_t>(sizes.entities) + 1, 0);
      pairs_.for_each([&](std::int64_t key, const group_total&) {
        ++run_start[static_cast<std::size_t>(key / 65536) + 1];
      });
      for (std::size_t e = 1; e < run_start.size(); ++e) { run_start[e] += run_start[e - 1]; }
      out_.by_entity_country.resize(pairs_.size());
      std::vector<std::size_t> next(run_start.begin(), run_start.end() - 1);
      pairs_.for_each([&](std::int64_t key, const group_total& total) {
        const auto entity                      = static_cast<std::size_t>(key / 65536);
        out_.by_entity_country[next[entity]++] = {static_cast<std::int32_t>(entity),
                                                  static_cast<std::uint16_t>(key % 65536), total};
      });
      for (std::size_t e = 0; e + 1 < run_start.size(); ++e) {
        std::sort(out_.by_entity_country.begin() + static_cast<std::ptrdiff_t>(run_start[e]),
                  out_.by_entity_country.begin() + static_cast<std::ptrdiff_t>(run_start[e + 1]),
                  [](const pair_total& a, const pair_total& b) { return a.country < b.country; });
      }
      // An entity's totals are the sum of its pairs' (a line adds to both or neither): summed
      // here, once a pair, rather than a line at a time into a table the size of the entities.
      for (const pair_total& row : out_.by_entity_country) {
        out_.by_entity[static_cast<std::size_t>(row.entity)] += row.total;
      }
      // Each table goes once its rows are out: it is the largest thing held while the report is
      // rendered (for millions of pairs, twice the rows' size).
      pairs_ = key_table<group_total>{};
    });

    // Day by day, which keys go over their limit and on which day. Of the LPP keys (one per
    // order: millions in a large log) only those whose positive tpp passes the limit are walked.
    country_ = walk_days(country_bins_, [&](std::int64_t country, day_t) {
      const std::int64_t cap = context_.country_cap_tpp[static_cast<std::size_t>(country)];
      return cap >= 0 ? cap : std::numeric_limits<std::int64_t>::max();  // uncapped: a total only
    });
    nveu_ =
        walk_days(nveu_bins_, [&](std::int64_t, day_t day) { return nveu_cap_on(context_.nveu_caps, day); });
    const std::int64_t per_order = context_.lpp_per_order_tpp, per_year = context_.lpp_per_consignee_year_tpp;
    order_ = walk_days(
        order_bins_, [&](std::int64_t, day_t) { return per_order; }, true,
        [&](std::int64_t order) {
          const auto at = static_cast<std::size_t>(order);  // an order of returns only has none
          return at < order_positive_tpp_.size() && order_positive_tpp_[at] > per_order;
        });
    annual_ = walk_days(
        annual_bins_, [&](std::int64_t, day_t) { return per_year; }, true,
        [&](std::int64_t key) {
          const std::int64_t* positive = annual_positive_tpp_.find(key);
          return positive != nullptr && *positive > per_year;
        });
    for (bin_table* bins : {&country_bins_, &nveu_bins_, &order_bins_, &annual_bins_}) { bins->release(); }
    order_positive_tpp_  = {};
    annual_positive_tpp_ = key_table<std::int64_t>{};
    find_crossing_lines(builder);
    filter_ = position_filter{};

    const auto countries = out_.by_country.size();
    out_.country_cap_total.assign(countries, 0);
    out_.country_cap_crossing.assign(countries, crossing{});
    for (const key_outcome& k : country_) {
      const auto c                 = static_cast<std::size_t>(k.key);
      out_.country_cap_total[c]    = k.total;
      out_.country_cap_crossing[c] = k.search.found;
    }
    for (const key_outcome& k : nveu_) { out_.nveu.push_back({k.key, k.total, k.search.found}); }
    for (const auto* family : {&order_, &annual_}) {
      auto& into = family == &order_ ? out_.lpp_order : out_.lpp_annual;
      for (const key_outcome& k : *family) { into.push_back({k.key, k.total, k.search.found}); }
    }
    details_.reserve(details_.size() + prohibited_.size() + unauthorized_.size(), 0);
    for (const auto& family :
         {std::pair{&prohibited_, &out_.prohibited}, std::pair{&unauthorized_, &out_.unauthorized}}) {
      std::vector<keyed_first_line>* into = family.second;
      family.first->for_each([&](std::int64_t key, const first_line_seen& seen) {
        into->push_back({key, seen.line, seen.tpp});
        details_.at(seen.line) = seen.detail;
      });
      std::sort(into->begin(), into->end(),
                [](const keyed_first_line& a, const keyed_first_line& b) { return a.key < b.key; });
      *family.first = key_table<first_line_seen>{};
    }
    pairs_sorted.get();
    return std::move(out_);
  }

  /// What findings print about the lines the aggregates name.
  [[nodiscard]] key_table<line_detail> take_details() { return std::move(details_); }

 private:
  const rule_context& context_;
  aggregation out_;
  day_t latest_ = std::numeric_limits<day_t>::min();
  /// The year of the last day asked: lines come mostly in date order, so one entry nearly always
  /// answers.
  day_t memo_day_ = std::numeric_limits<day_t>::min();
  int memo_year_  = 0;
  int year_of_memo(day_t day)
  {
    if (day != memo_day_) {
      memo_day_  = day;
      memo_year_ = year_of(day);
    }
    return memo_year_;
  }
  key_table<group_total> pairs_;
  bin_table country_bins_, nveu_bins_, order_bins_, annual_bins_;
  /// The checks' numbers in `filter_`'s keys.
  static constexpr int country_check = 0, nveu_check = 1, order_check = 2, annual_check = 3;
  position_filter filter_;  ///< where the lines out of date order of each (check key, day) lie
  /// Sums of the positive tpp of the LPP lines of each order (by code) and (entity, year): a key
  /// whose sum is within its limit cannot cross it.
  std::vector<std::int64_t> order_positive_tpp_;
  key_table<std::int64_t> annual_positive_tpp_;
  key_table<first_line_seen> prohibited_, unauthorized_;
  std::vector<key_outcome> country_, nveu_, order_, annual_;
  /// By position: an open-addressing table (key and detail side by side), where a node-based map
  /// cost an allocation per finding and two cache misses per lookup (a million findings).
  key_table<line_detail> details_;

  /// The second look: only the lines dated on a crossing day of some key, in input order.
  void find_crossing_lines(shipment_log_builder& builder)
  {
    std::unordered_map<std::int64_t, crossing_search*> country, nveu, order, annual;
    std::vector<std::pair<day_t, std::int64_t>> crossings;  // (day, country; -1: another check's key)
    std::vector<std::uint64_t> wanted;  // (check key, crossing day) as `filter_` knows them
    for (auto [family, index, check] :
         {std::tuple{&country_, &country, country_check}, std::tuple{&nveu_, &nveu, nveu_check},
          std::tuple{&order_, &order, order_check}, std::tuple{&annual_, &annual, annual_check}}) {
      for (key_outcome& k : *family) {
        // A country without a cap has no crossing to report (its limit is never reached anyway).
        if (k.crosses &&
            (family != &country_ || context_.country_cap_tpp[static_cast<std::size_t>(k.key)] >= 0)) {
          (*index)[k.key] = &k.search;
          crossings.emplace_back(k.search.day, family == &country_ ? k.key : -1);
          wanted.push_back(position_filter::key_of(check, k.key, k.search.day));
        }
      }
    }
    if (crossings.empty()) { return; }
    // On a day where only country caps cross, only those countries' lines are read again.
    replay_scope scope;
    std::sort(crossings.begin(), crossings.end());
    for (std::size_t c = 0; c < crossings.size();) {
      const day_t day = crossings[c].first;
      scope.days.push_back(day);
      std::vector<std::uint16_t>& countries = scope.countries.emplace_back();
      bool every_line                       = false;  // another check's key crosses that day
      for (; c < crossings.size() && crossings[c].first == day; ++c) {
        every_line = every_line || crossings[c].second < 0;
        countries.push_back(static_cast<std::uint16_t>(crossings[c].second));
      }
      if (every_line) { countries.clear(); }
    }
    const std::vector<day_t>& days = scope.days;
    const auto on_a_crossing_day   = [&](day_t day) {
      return std::binary_search(days.begin(), days.end(), day);
    };

    const auto look = [&](std::unordered_map<std::int64_t, crossing_search*>& index, std::int64_t key,
                          day_t day, std::int64_t tpp, std::int64_t position, const line_batch& batch,
                          std::int64_t k) {
      const auto it = index.find(key);
      if (it == index.end()) { return; }
      crossing_search& s = *it->second;
      if (s.day != day || s.found.line >= 0) { return; }
      s.within += tpp;
      if (s.before + s.within > s.limit) {
        s.found            = {position, s.before + s.within};
        const auto i       = static_cast<std::size_t>(k);
        details_.at(position) = {day, std::string(batch.shipment_id(k)), batch.columns.entity[i],
                                 batch.columns.country[i]};
      }
    };
    scope.may_hold = [&](std::int64_t first, std::int64_t last) {
      return filter_.may_hold(first, last, wanted);
    };
    builder.replay(scope, [&](const line_batch& batch) {
      const shipment_columns& c = batch.columns;
      for (std::int64_t k = 0; k < batch.size(); ++k) {
        const auto i     = static_cast<std::size_t>(k);
        const day_t date = c.date[i];
        // Days past as_of or outside the window hold no crossing: never on the list.
        if (!on_a_crossing_day(date) || date > context_.as_of) { continue; }
        const std::int64_t position = batch.position(k);
        const std::int64_t tpp      = c.tpp[i];
        const auto path             = static_cast<pathway>(c.pathway[i]);
        if ((context_.country_cap_pathways >> c.pathway[i]) & 1U) {
          look(country, c.country[i], date, tpp, position, batch, k);
        }
        if (path == pathway::nveu) {
          look(nveu, entity_country_key(c.entity[i], c.country[i]), date, tpp, position, batch, k);
        }
        if (path == pathway::lpp) {
          look(order, c.order[i], date, tpp, position, batch, k);
          look(annual, entity_year_key(c.entity[i], year_of(date)), date, tpp, position, batch, k);
        }
      }
    });
  }
};

/// The `report_source` of a streamed log: its dictionaries and the few lines findings name.
class streamed_source final : public report_source {
 public:
  streamed_source(const shipment_log& log, std::int64_t accepted, key_table<line_detail> lines)
      : log_(log), accepted_(accepted), lines_(std::move(lines))
  {
  }
  [[nodiscard]] const dictionary& entities() const override { return log_.entities; }
  [[nodiscard]] const dictionary& exporters() const override { return log_.exporters; }
  [[nodiscard]] const chip_table& chips() const override { return log_.chips; }
  [[nodiscard]] std::string order_id(std::int32_t code) const override { return log_.orders.text(code); }
  [[nodiscard]] line_detail line(std::int64_t line) const override
  {
    const line_detail* detail = lines_.find(line);
    if (detail == nullptr) {
      throw logic_error("streamed report: no detail kept for line " + std::to_string(line));
    }
    return *detail;
  }
  [[nodiscard]] const std::vector<input_file>& files() const override { return log_.files; }
  [[nodiscard]] std::int64_t lines_read() const override { return log_.lines_read; }
  [[nodiscard]] std::int64_t lines_accepted() const override { return accepted_; }
  [[nodiscard]] std::int64_t rejected() const override { return log_.lines_rejected; }

 private:
  const shipment_log& log_;
  std::int64_t accepted_;
  key_table<line_detail> lines_;
};

/// What the rule context gains for the entity and chip codes a batch may be the first to use:
/// worked out on the ingest's merge thread (which owns the dictionaries), appended on the
/// aggregating thread (which owns the context the aggregator reads).
struct context_growth {
  std::vector<std::uint8_t> chip_datacenter;
  std::vector<std::uint8_t> entity_is_uveu;
  std::vector<std::uint8_t> entity_hq_tier1;
  std::vector<std::uint64_t> entity_nveu_countries;

  template <typename T>
  static void append_tail(std::vector<T>& to, const std::vector<T>& from, std::size_t from_size)
  {
    to.insert(to.end(), from.begin() + static_cast<std::ptrdiff_t>(from_size), from.end());
  }
  /// The entries of @p grown for chips from @p chips and entities from @p entities on.
  static context_growth since(const rule_context& grown, std::size_t chips, std::size_t entities)
  {
    context_growth growth;
    append_tail(growth.chip_datacenter, grown.chip_datacenter, chips);
    append_tail(growth.entity_is_uveu, grown.entity_is_uveu, entities);
    append_tail(growth.entity_hq_tier1, grown.entity_hq_tier1, entities);
    append_tail(growth.entity_nveu_countries, grown.entity_nveu_countries,
                entities * rule_context::nveu_mask_words);
    return growth;
  }
  void apply_to(rule_context& context) const
  {
    append_tail(context.chip_datacenter, chip_datacenter, 0);
    append_tail(context.entity_is_uveu, entity_is_uveu, 0);
    append_tail(context.entity_hq_tier1, entity_hq_tier1, 0);
    append_tail(context.entity_nveu_countries, entity_nveu_countries, 0);
  }
};

/// @brief Runs `streaming_aggregator::add` on a thread of its own, batch after batch in input
/// order, so that the ingest's merge thread (the one step of the ingest that cannot run in
/// parallel) only hands batches over. At most `depth` batches wait; their buffers are recycled.
class aggregating_thread {
 public:
  aggregating_thread(streaming_aggregator& aggregator, rule_context& context)
      : aggregator_(aggregator), context_(context), thread_([this] {
          detail::name_this_thread("cl-aggregate");
          run();
        })
  {
  }
  aggregating_thread(const aggregating_thread&)            = delete;
  aggregating_thread& operator=(const aggregating_thread&) = delete;
  ~aggregating_thread() { stop(); }

  /// Takes @p batch's lines (leaving it empty, with recycled capacity) and the context they need.
  void push(line_batch& batch, context_growth growth)
  {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return waiting_.size() < depth || failure_; });
    if (failure_) { std::rethrow_exception(failure_); }
    work item;
    if (!spare_.empty()) {
      item.batch = std::move(spare_.back());
      spare_.pop_back();
    }
    std::swap(item.batch, batch);
    item.growth = std::move(growth);
    waiting_.push_back(std::move(item));
    changed_.notify_all();
  }

  /// Waits until every batch is added; rethrows what the aggregator threw.
  void finish()
  {
    stop();
    if (failure_) { std::rethrow_exception(failure_); }
  }

 private:
  static constexpr std::size_t depth = 4;
  struct work {
    line_batch batch;
    context_growth growth;
  };

  void run()
  {
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
      changed_.wait(lock, [&] { return !waiting_.empty() || closed_; });
      if (waiting_.empty()) { return; }  // closed and drained
      work item = std::move(waiting_.front());
      waiting_.pop_front();
      changed_.notify_all();
      lock.unlock();
      try {
        item.growth.apply_to(context_);
        aggregator_.add(item.batch);
      } catch (...) {
        lock.lock();
        failure_ = std::current_exception();
        waiting_.clear();
        changed_.notify_all();
        return;
      }
      lock.lock();
      spare_.push_back(std::move(item.batch));
    }
  }

  void stop()
  {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
      changed_.notify_all();
    }
    if (thread_.joinable()) { thread_.join(); }
  }

  streaming_aggregator& aggregator_;
  rule_context& context_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<work> waiting_;
  std::vector<line_batch> spare_;
  std::exception_ptr failure_;
  bool closed_ = false;
  std::thread thread_;  ///< last: starts once every member above exists
};

/// The out-of-memory id check reads every input twice: the repeats the first pass found hold
/// only for the bytes the second pass reads if no file changed in between (a log still being
/// appended to, say). Both passes hash every file, so a change cannot go unseen.
void expect_same_inputs(const std::vector<input_file>& first, const std::vector<input_file>& second)
{
  CAPLEDGER_EXPECTS(first.size() == second.size(), "both passes read the same list of inputs");
  for (std::size_t f = 0; f < first.size(); ++f) {
    if (first[f].bytes != second[f].bytes || first[f].sha256 != second[f].sha256) {
      throw config_error(second[f].path + ": changed while capledger read it (" + std::to_string(first[f].bytes) +
                         " bytes, SHA-256 " + first[f].sha256 + " in the first pass over the inputs; " +
                         std::to_string(second[f].bytes) + " bytes, SHA-256 " + second[f].sha256 +
                         " in the second); run the report on a file that is not being written");
    }
  }
}

}  // namespace

report_output stream_report(const reference_data& ref, const report_options& options, ingest_options ingest,
                            const std::function<void(shipment_log_builder&)>& add_inputs,
                            std::vector<rejected_line>& rejects)
{
  // Without --as-of every line counts (as_of is the latest date, known only at the end).
  const day_t as_of = options.as_of.value_or(std::numeric_limits<day_t>::max());
  rule_context context =
      make_rule_context(ref.rules, ref.countries, ref.entities, dictionary{}, chip_table{}, as_of);
  detail::repeat_stream repeats;             // the second pass's repeated ids, read as it goes
  std::vector<input_file> first_pass_files;  // what the first pass read, to compare with the second
  std::exception_ptr first_pass_error;       // a header the first pass stopped at
  if (options.external_id_check) {
    // A first pass over the inputs finds the repeated ids; the second one, below, rejects them.
    detail::external_id_check ids(
        detail::external_id_check::default_buffered,
        options.external_id_repeats_in_memory.value_or(detail::external_id_check::default_repeats_in_memory));
    ingest_options first = ingest;
    first.keep_rejects   = true;  // the second pass decides what is fatal
    first.max_rejects    = -1;
    first.on_batch       = [](line_batch&) {};
    first.on_id          = [&](std::uint64_t hash, std::uint64_t offset) { ids.add(hash, offset); };
    shipment_log_builder finder(ref.countries, ref.chips, first);
    try {
      add_inputs(finder);
    } catch (const parse_error&) {
      // A header no one can read (with keep_rejects nothing else throws here). The second pass
      // stops at it too, or first at a bad line of an earlier file, as one pass would: the ids of
      // the files before it are all it needs.
      first_pass_error = std::current_exception();
    }
    // The second pass stops at its first bad line, or past --max-rejects: it reaches that many
    // repeats at most (external_id_check::repeats says why).
    const std::size_t keep = !ingest.keep_rejects     ? 1
                             : ingest.max_rejects < 0 ? detail::external_id_check::all_repeats
                                                      : static_cast<std::size_t>(ingest.max_rejects) + 1;
    repeats = ids.repeats([&](std::uint64_t offset) { return finder.shipment_id_at(offset); }, keep);
    ingest.repeated_ids = &repeats;
    first_pass_files    = finder.current().files;
  }
  streaming_aggregator aggregator(context, ref.countries.rows.size());
  // With many cores the aggregation gets a thread of its own (`many_cores`). The merge thread
  // then extends its own copy of the context and hands the growth over with each batch: the
  // aggregating thread alone touches `context` until `finish`.
  std::optional<aggregating_thread> aggregating;
  rule_context merge_context;  // the merge thread's copy, with an aggregating thread only
  if (detail::many_cores()) {
    merge_context = context;  // before the thread starts: from then on it alone touches `context`
    aggregating.emplace(aggregator, context);
  }
  const shipment_log_builder* building = nullptr;
  ingest.on_batch                      = [&](line_batch& batch) {
    const shipment_log& so_far = building->current();  // the codes the batch uses are in it
    if (!aggregating) {
      extend_rule_context(context, ref.countries, ref.entities, so_far.entities, so_far.chips);
      aggregator.add(batch);
      return;
    }
    const std::size_t chips    = merge_context.chip_datacenter.size();
    const std::size_t entities = merge_context.entity_is_uveu.size();
    extend_rule_context(merge_context, ref.countries, ref.entities, so_far.entities, so_far.chips);
    aggregating->push(batch, context_growth::since(merge_context, chips, entities));
  };
  shipment_log_builder builder(ref.countries, ref.chips, ingest);
  building = &builder;
  try {
    add_inputs(builder);
  } catch (const too_many_rejects&) {
    aggregating.reset();
    rejects = builder.rejects();
    throw;
  }
  builder.inputs_done();
  if (aggregating) { aggregating->finish(); }
  const std::int64_t accepted  = builder.accepted();
  const shipment_log& log      = builder.current();
  if (first_pass_error) {
    std::rethrow_exception(first_pass_error);
  }  // the header read well the second time?
  if (options.external_id_check) { expect_same_inputs(first_pass_files, log.files); }
  const dictionary_sizes sizes = sizes_of(log, ref.countries);
  aggregation agg              = aggregator.finish(sizes, builder);
  rejects                      = log.rejects;

  std::optional<day_t> as_of_shown = options.as_of;
  if (!as_of_shown && accepted > 0) { as_of_shown = aggregator.latest(); }
  const rule_context final_context = make_rule_context(
      ref.rules, ref.countries, ref.entities, log, as_of_shown.value_or(std::numeric_limits<day_t>::max()));
  return render_report(ref, streamed_source(log, accepted, aggregator.take_details()), options, final_context,
                       agg, "cpu", as_of_shown);
}

}  // namespace capledger
