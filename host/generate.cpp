/// @file generate.cpp
/// @brief Synthetic shipment logs: a seeded, integer-only generator with optional breach plants.
///
/// Shape of an ordinary log (the weights below are the generator's profile):
/// - consignees follow Zipf's law over their rank (weight 1/(rank+1)), so a few hyperscalers
///   carry most lines; the UVEU holders are among the top ranks;
/// - destinations come from each consignee's profile (home country, one secondary country, a
///   global mix); tier-2 traffic concentrates in a few hubs (AE, SA, IN, SG, MY, ...);
/// - export dates rise with time (density doubles from first to last day) and are non-decreasing
///   in generation order; the file order is then locally shuffled, as real logs are;
/// - every ordinary line respects the LPP, NVEU, UVEU-share and pathway rules by construction
///   (guards below); only country caps are left to grow, and tier-3 lines are rare.
///
/// Why generation order is date order: the guards keep running totals in generation order, and
/// the engine orders lines by (date, input position). With non-decreasing dates a prefix of the
/// engine's order by date is a prefix of generation order, so a guard that holds after every
/// generated line holds on every date the engine looks at. Within one date the engine may see
/// the lines in another order, so the guards count positive lines only (a return never lowers
/// them), which bounds every such reordering.
///
/// Why plants are guaranteed to fire: every plant alone exceeds its limit, and ordinary lines
/// never make a running total of any rule key negative, because a return takes back units of
/// one earlier-dated shipment of the same entity, country, chip, pathway and order, in the same
/// counting-window side and (for LPP) the same calendar year. The UVEU share plants are sized
/// last, from the exact final totals of their entity.

#include <capledger/calendar.hpp>
#include <capledger/entities.hpp>
#include <capledger/error.hpp>
#include <capledger/generate.hpp>

#include "csv_text.hpp"
#include "file_io.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <exception>
#include <filesystem>
#include <limits>
#include <ostream>
#include <streambuf>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace capledger {
namespace detail {
namespace {

// ---- portable randomness and integer arithmetic -----------------------------------------------

/// @brief splitmix64 step: the recommended way to expand one seed into xoshiro state.
std::uint64_t splitmix64(std::uint64_t& state) noexcept
{
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z               = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z               = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// @brief Unsigned 128-bit product, for exact share comparisons and sampling.
struct u128 {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
};

/// @brief Exact 64x64 -> 128-bit product; both branches give the same bits.
u128 mul_wide(std::uint64_t a, std::uint64_t b) noexcept
{
#if defined(__SIZEOF_INT128__)
  __extension__ const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
  return u128{static_cast<std::uint64_t>(p >> 64), static_cast<std::uint64_t>(p)};
#else
  const std::uint64_t mask = 0xFFFFFFFFULL;
  const std::uint64_t p0   = (a & mask) * (b & mask);
  const std::uint64_t p1   = (a & mask) * (b >> 32);
  const std::uint64_t p2   = (a >> 32) * (b & mask);
  const std::uint64_t p3   = (a >> 32) * (b >> 32);
  const std::uint64_t mid  = (p0 >> 32) + (p1 & mask) + (p2 & mask);
  return u128{p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32), (p0 & mask) | (mid << 32)};
#endif
}

/// @brief xoshiro256** with exact integer sampling; std:: distributions are implementation-defined.
class prng {
 public:
  explicit prng(std::uint64_t seed) noexcept
  {
    for (auto& word : state_) { word = splitmix64(seed); }
  }

  std::uint64_t next() noexcept
  {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t      = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// @brief Uniform in [0, n), n > 0, unbiased (Lemire's multiply-and-reject: a division only
  /// in the rare case that a rejection is possible).
  std::uint64_t below(std::uint64_t n) noexcept
  {
    u128 m = mul_wide(next(), n);
    if (m.lo < n) {
      const std::uint64_t threshold = (0 - n) % n;
      while (m.lo < threshold) { m = mul_wide(next(), n); }
    }
    return m.hi;
  }

  /// @brief True with probability num / den.
  bool chance(std::uint64_t num, std::uint64_t den) noexcept { return below(den) < num; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::array<std::uint64_t, 4> state_{};
};

bool operator<(const u128& a, const u128& b) noexcept
{
  return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo);
}

/// @brief a*b < c*d for non-negative a, b, c, d.
bool product_less(std::int64_t a, std::int64_t b, std::int64_t c, std::int64_t d) noexcept
{
  return mul_wide(static_cast<std::uint64_t>(a), static_cast<std::uint64_t>(b)) <
         mul_wide(static_cast<std::uint64_t>(c), static_cast<std::uint64_t>(d));
}

/// @brief Floor of the square root, by the bit-by-bit method (no floating point).
std::uint64_t isqrt(std::uint64_t n) noexcept
{
  std::uint64_t root = 0;
  std::uint64_t bit  = 1ULL << 62;
  while (bit > n) { bit >>= 2; }
  while (bit != 0) {
    if (n >= root + bit) {
      n -= root + bit;
      root = (root >> 1) + bit;
    } else {
      root >>= 1;
    }
    bit >>= 2;
  }
  return root;
}

/// @brief Items drawn in proportion to integer weights (cumulative sums + binary search).
class weighted_table {
 public:
  void add(int item, std::uint64_t weight)
  {
    if (weight == 0) { return; }
    total_ += weight;
    cumulative_.push_back(total_);
    items_.push_back(item);
  }
  [[nodiscard]] bool empty() const noexcept { return items_.empty(); }
  [[nodiscard]] const std::vector<int>& items() const noexcept { return items_; }
  [[nodiscard]] int pick(prng& rng) const
  {
    const std::uint64_t x = rng.below(total_);
    const auto it         = std::upper_bound(cumulative_.begin(), cumulative_.end(), x);
    return items_[static_cast<std::size_t>(it - cumulative_.begin())];
  }

 private:
  std::vector<std::uint64_t> cumulative_;
  std::vector<int> items_;
  std::uint64_t total_ = 0;
};

// ---- text helpers ---------------------------------------------------------------------------

void append_int(std::string& out, std::int64_t value)
{
  char buf[24];
  const auto res = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, static_cast<std::size_t>(res.ptr - buf));
}

/// @brief Appends @p value left-padded with zeros to @p width digits (ids sort as text).
void append_padded(std::string& out, std::int64_t value, int width)
{
  char buf[24];
  const auto res   = std::to_chars(buf, buf + sizeof buf, value);
  const int digits = static_cast<int>(res.ptr - buf);
  for (int i = digits; i < width; ++i) { out.push_back('0'); }
  out.append(buf, static_cast<std::size_t>(digits));
}

int decimal_digits(std::int64_t value) noexcept
{
  int digits = 1;
  while (value >= 10) {
    value /= 10;
    ++digits;
  }
  return digits;
}

// ---- the profile: who buys what, where --------------------------------------------------------

struct weighted_code {
  const char* code;
  std::uint32_t weight;
};

// clang-format off
/// Tier-1 destinations: the US dominates, then the large allied markets.
constexpr std::array<weighted_code, 19> tier1_profile{{
  {"US", 40}, {"JP", 10}, {"DE", 8}, {"GB", 8}, {"FR", 6}, {"KR", 6}, {"TW", 6},
  {"CA", 5},  {"NL", 4},  {"AU", 4}, {"IE", 3}, {"SE", 2}, {"IT", 2}, {"ES", 2},
  {"FI", 1},  {"DK", 1},  {"NO", 1}, {"BE", 1}, {"NZ", 1},
}};

/// Tier-2 hubs: most capped traffic goes to a few data-centre markets.
constexpr std::array<weighted_code, 16> hot_tier2_profile{{
  {"AE", 20}, {"SA", 15}, {"IN", 14}, {"SG", 13}, {"MY", 11}, {"IL", 8}, {"BR", 6}, {"MX", 6},
  {"PL", 5},  {"CH", 4},  {"TH", 3},  {"VN", 3},  {"ID", 3},  {"TR", 2}, {"QA", 2}, {"KW", 1},
}};

/// The long tail of tier-2 buyers (uniform); the rest of tier 2 (Antarctica...) gets nothing.
constexpr std::array<const char*, 40> other_tier2_profile{{
  "AT", "PT", "CZ", "GR", "HU", "RO", "CL", "CO", "AR", "ZA", "EG", "KE", "NG", "PH",
  "PK", "KZ", "UA", "RS", "HR", "SK", "SI", "BG", "LT", "LV", "EE", "LU", "IS", "CY",
  "MT", "OM", "BH", "JO", "MA", "PE", "UY", "CR", "PA", "LK", "BD", "GE",
}};

/// Tier-3 destinations of the rare prohibited lines (others in tier 3 get weight 1).
constexpr std::array<weighted_code, 3> tier3_profile{{{"CN", 5}, {"HK", 4}, {"RU", 3}}};

/// Chip popularity in three eras (before 2025-07, before 2026-07, after): Hopper gives way to
/// Blackwell. Chips of the table that are not listed get weight 1 in every era.
struct chip_weights {
  const char* key;
  std::array<std::uint32_t, 3> weight;
};
constexpr std::array<chip_weights, 21> chip_profile{{
  {"H100-SXM", {30, 18, 8}}, {"H100-NVL", {6, 4, 2}},  {"H200-SXM", {14, 20, 12}},
  {"H200-NVL", {4, 6, 4}},   {"H800-SXM", {1, 1, 0}},  {"H800-PCIE", {1, 0, 0}},
  {"H20", {5, 4, 2}},        {"A100", {6, 3, 1}},      {"A800", {1, 0, 0}},
  {"B100", {2, 3, 2}},       {"B200", {4, 16, 18}},    {"B300", {0, 6, 20}},
  {"MI300X", {8, 6, 4}},     {"MI325X", {2, 5, 4}},    {"MI300A", {1, 1, 1}},
  {"MI350X", {0, 2, 6}},     {"MI355X", {0, 2, 7}},    {"MI250X", {1, 1, 0}},
  {"MI250", {1, 0, 0}},      {"MI210", {1, 1, 1}},     {"RTX-4090", {2, 2, 2}},
}};

/// Ad-hoc chips, absent from the table, so their lines carry `tpp_per_unit`.
struct adhoc_chip {
  const char* key;
  const char* vendor;
  std::int64_t tpp;
};
constexpr std::array<adhoc_chip, 3> adhoc_profile{{
  {"CUSTOM-ASIC-1", "Broadcom", 9600},
  {"CUSTOM-ASIC-2", "Marvell", 21000},
  {"CUSTOM-ASIC-3", "Broadcom", 30500},
}};

/// Sales channels: 0 is the chip vendor itself, the others are server makers reselling.
/// One name holds a comma so that quoting is exercised.
constexpr std::array<const char*, 5> reseller_profile{
  {"Supermicro", "Dell Technologies, Inc.", "Hewlett Packard Enterprise", "Lenovo", "GIGABYTE"}};
constexpr std::array<std::uint32_t, 6> channel_weights{35, 20, 15, 15, 10, 5};

constexpr std::array<const char*, 26> name_heads{
  {"Al",  "Bel", "Cor", "Dra", "Eon", "Fal", "Gal", "Hex", "Ion", "Jun", "Kor", "Lum", "Mer",
   "Nov", "Orb", "Pax", "Qua", "Ryn", "Sol", "Tur", "Ul",  "Ver", "Wex", "Xen", "Yar", "Zen"}};
constexpr std::array<const char*, 10> name_tails{
  {"a", "ex", "is", "on", "ix", "ara", "eon", "ium", "or", "us"}};
constexpr std::array<const char*, 10> name_kinds{{"Cloud", "Compute", "AI", "Data", "Systems",
                                                  "Labs", "Networks", "Technologies",
                                                  "Analytics", "Hosting"}};
constexpr std::array<const char*, 9> name_forms{
  {"Inc.", "Ltd", "LLC", "GmbH", "S.A.", "K.K.", "Pte. Ltd.", "FZ-LLC", "Holdings"}};

// clang-format on

// ---- generator state ------------------------------------------------------------------------

constexpr std::int64_t ppm = ppm_one;

struct gen_chip {
  std::string csv_key;  ///< key, CSV-quoted when needed
  std::int64_t tpp    = 0;
  bool datacenter     = true;
  bool adhoc          = false;
  int vendor_exporter = 0;
  std::string tpp_text;  ///< `tpp_per_unit` cell: set for ad-hoc chips only
};

struct gen_entity {
  std::string id;
  std::string name;
  int hq               = -1;  ///< country code (also for unlisted entities: it shapes their traffic)
  entity_status status = entity_status::none;
  bool listed          = true;
  std::vector<std::uint16_t> nveu_countries;  ///< sorted
  int secondary        = -1;
  int channel          = 0;
  std::int32_t tracker = -1;  ///< UVEU: index of its share tracker; NVEU: offset of its totals
};

/// @brief Installed tpp of one UVEU entity, to keep (or, for plants, break) the share rules.
struct uveu_tracker {
  std::int64_t world = 0;
  std::int64_t tier1 = 0;
  std::int64_t us    = 0;
  std::vector<std::int64_t> per_country;
};

/// @brief A recent positive line that a later return may take units back from.
struct shipped_line {
  std::int32_t entity    = -1;
  std::int32_t country   = 0;
  std::int32_t chip      = 0;
  pathway path           = pathway::license;
  std::int32_t exporter  = 0;
  std::int64_t order     = -1;
  std::int64_t remaining = 0;
  day_t day              = 0;
};

/// @brief One line planted by force_breaches.
struct planted_line {
  day_t day             = 0;
  std::int32_t entity   = 0;
  int country           = 0;
  int chip              = 0;
  std::int64_t quantity = 0;
  pathway path          = pathway::license;
  std::int64_t order    = -1;
};

/// @brief Holds back a few lines and releases them in a slightly shuffled order.
class line_shuffler {
 public:
  line_shuffler(std::ostream& out, prng& rng) : out_(out), rng_(rng) { buffer_.reserve(flush_at + 4096); }

  void push(const std::string& line)
  {
    std::size_t slot;
    if (filled_ < window) {
      slot = (head_ + filled_) % window;
      ++filled_;
    } else {
      write(ring_[head_]);
      slot  = head_;
      head_ = (head_ + 1) % window;
    }
    ring_[slot].assign(line);
    // One line in eight trades places with a held-back one: logs are roughly, not exactly, sorted.
    if (filled_ > 1 && rng_.chance(1, 8)) {
      const std::size_t other = (head_ + rng_.below(filled_)) % window;
      ring_[slot].swap(ring_[other]);
    }
  }

  void finish()
  {
    for (std::size_t i = 0; i < filled_; ++i) { write(ring_[(head_ + i) % window]); }
    filled_ = 0;
    drain();
  }

 private:
  static constexpr std::size_t window   = 16;
  static constexpr std::size_t flush_at = 1 << 20;

  void write(const std::string& line)
  {
    buffer_.append(line);
    if (buffer_.size() >= flush_at) { drain(); }
  }
  void drain()
  {
    out_.write(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
    buffer_.clear();
  }

  std::ostream& out_;
  prng& rng_;
  std::array<std::string, window> ring_;
  std::size_t head_   = 0;
  std::size_t filled_ = 0;
  std::string buffer_;
};

class log_generator {
 public:
  log_generator(const generate_options& options, const country_table& countries, const chip_table& chips,
                const rule_set& rules)
      : options_(options), countries_(countries), rules_(rules), rng_(options.seed)
  {
    first_day_ = options.first_day ? *options.first_day : days_from_civil(2024, 10, 1);
    last_day_  = options.last_day ? *options.last_day : days_from_civil(2027, 12, 31);
    build_country_pools();
    build_chips(chips);
    build_entities();
    if (options.force_breaches) { plan_plants(); }
    const std::int64_t plants = static_cast<std::int64_t>(mid_plants_.size()) + end_plant_count_;
    if (options.records < plants) {
      throw config_error("generate: --force-breaches needs at least " + std::to_string(plants) +
                         " records, got " + std::to_string(options.records));
    }
  }

  void run(std::ostream& shipments, std::ostream& entities)
  {
    write_entities(entities);
    write_shipments(shipments);
  }

 private:
  // ---- setup ----------------------------------------------------------------------------------

  [[nodiscard]] int tier_of(int code) const { return countries_.rows[static_cast<std::size_t>(code)].tier; }

  [[nodiscard]] int code_of_tier(const char* iso2, int tier) const
  {
    const int code = countries_.find(iso2);
    return (code >= 0 && tier_of(code) == tier) ? code : -1;
  }

  void build_country_pools()
  {
    const int n = static_cast<int>(countries_.rows.size());
    std::vector<bool> in_profile(static_cast<std::size_t>(n), false);
    for (const auto& p : tier1_profile) {
      const int code = code_of_tier(p.code, 1);
      if (code >= 0) {
        tier1_.add(code, p.weight);
        in_profile[static_cast<std::size_t>(code)] = true;
      }
    }
    for (const auto& p : hot_tier2_profile) {
      const int code = code_of_tier(p.code, 2);
      if (code >= 0) {
        hot2_.add(code, p.weight);
        in_profile[static_cast<std::size_t>(code)] = true;
        hot2_order_.push_back(code);
      }
    }
    for (const char* iso2 : other_tier2_profile) {
      const int code = code_of_tier(iso2, 2);
      if (code >= 0 && !in_profile[static_cast<std::size_t>(code)]) {
        other2_.add(code, 1);
        in_profile[static_cast<std::size_t>(code)] = true;
      }
    }
    for (const auto& p : tier3_profile) {
      const int code = code_of_tier(p.code, 3);
      if (code >= 0) {
        tier3_.add(code, p.weight);
        in_profile[static_cast<std::size_t>(code)] = true;
      }
    }
    // Countries a custom table adds keep a small share, so no tier is left without traffic.
    for (int code = 0; code < n; ++code) {
      if (in_profile[static_cast<std::size_t>(code)]) { continue; }
      if (tier_of(code) == 1) { tier1_.add(code, 1); }
      if (tier_of(code) == 3) { tier3_.add(code, 1); }
      if (tier_of(code) == 2 && hot2_.empty() && other2_.empty()) { fallback2_.add(code, 1); }
    }
    if (hot2_.empty()) { std::swap(hot2_, other2_); }
    if (hot2_.empty()) { std::swap(hot2_, fallback2_); }
    if (other2_.empty()) { other2_ = hot2_; }
    if (tier1_.empty() || hot2_.empty()) {
      throw config_error("generate: the country table needs tier-1 and tier-2 countries");
    }
    for (const int code : hot2_.items()) {
      if (std::find(hot2_order_.begin(), hot2_order_.end(), code) == hot2_order_.end()) {
        hot2_order_.push_back(code);
      }
    }
    us_ = code_of_tier("US", 1);
    country_csv_.reserve(static_cast<std::size_t>(n));
    for (const auto& row : countries_.rows) { country_csv_.push_back(csv_text::cell(row.iso2)); }
  }

  int exporter_index(const std::string& name)
  {
    for (std::size_t i = 0; i < exporter_names_.size(); ++i) {
      if (exporter_names_[i] == name) { return static_cast<int>(i); }
    }
    exporter_names_.push_back(name);
    exporter_csv_.push_back(csv_text::cell(name));
    return static_cast<int>(exporter_names_.size() - 1);
  }

  void build_chips(const chip_table& chips)
  {
    // Profile weights by table row; rows the profile does not name get 1 in every era.
    std::vector<std::array<std::uint32_t, 3>> profile_weight(chips.rows.size(), {1, 1, 1});
    for (const auto& p : chip_profile) {
      const int row = chips.find(p.key);
      if (row >= 0) { profile_weight[static_cast<std::size_t>(row)] = p.weight; }
    }
    for (std::size_t row_index = 0; row_index < chips.rows.size(); ++row_index) {
      const chip& row = chips.rows[row_index];
      if (!row.known || row.tpp <= 0) { continue; }
      gen_chip c;
      c.csv_key          = csv_text::cell(row.key);
      c.tpp              = row.tpp;
      c.datacenter       = row.datacenter;
      c.vendor_exporter  = exporter_index(row.vendor.empty() ? std::string("UNKNOWN") : row.vendor);
      const auto& weight = profile_weight[row_index];
      const int index    = static_cast<int>(chips_.size());
      for (int era = 0; era < 3; ++era) {
        era_chips_[static_cast<std::size_t>(era)].add(index, weight[static_cast<std::size_t>(era)]);
      }
      if (!row.datacenter) { consumer_chips_.add(index, 1); }
      if (row.datacenter && (big_chip_ < 0 || row.tpp > chips_[static_cast<std::size_t>(big_chip_)].tpp)) {
        big_chip_ = index;
      }
      chips_.push_back(std::move(c));
    }
    if (chips_.empty()) { throw config_error("generate: the chips table has no chip with a TPP"); }
    for (auto& era : era_chips_) {
      if (era.empty()) {
        for (int i = 0; i < static_cast<int>(chips_.size()); ++i) { era.add(i, 1); }
      }
    }
    if (big_chip_ < 0) { big_chip_ = 0; }
    for (const auto& p : adhoc_profile) {
      if (chips.find(p.key) >= 0) { continue; }  // a table that knows it: not ad hoc any more
      gen_chip c;
      c.csv_key         = csv_text::cell(p.key);
      c.tpp             = p.tpp;
      c.adhoc           = true;
      c.vendor_exporter = exporter_index(p.vendor);
      c.tpp_text        = std::to_string(p.tpp);
      adhoc_chips_.add(static_cast<int>(chips_.size()), 1);
      chips_.push_back(std::move(c));
    }
    for (const char* reseller : reseller_profile) { resellers_.push_back(exporter_index(reseller)); }
    for (std::size_t i = 0; i < channel_weights.size(); ++i) {
      channels_.add(static_cast<int>(i), channel_weights[i]);
    }
    era_starts_ = {days_from_civil(2025, 7, 1), days_from_civil(2026, 7, 1)};
  }

  std::string make_name()
  {
    std::string name = name_heads[rng_.below(name_heads.size())];
    name += name_tails[rng_.below(name_tails.size())];
    const char* kind          = name_kinds[rng_.below(name_kinds.size())];
    const char* form          = name_forms[rng_.below(name_forms.size())];
    const std::uint64_t style = rng_.below(100);
    if (style < 3) {  // a nickname in quotes, so writers must double them
      return name + " \"" + kind + "\" " + form;
    }
    const std::string_view form_text(form);
    if (style < 60 && (form_text == "Inc." || form_text == "Ltd" || form_text == "LLC")) {
      return name + " " + kind + ", " + form;  // "Acme Cloud, Inc." must be quoted
    }
    return name + " " + kind + " " + form;
  }

  void build_entities()
  {
    std::int64_t count = options_.entities > 0 ? options_.entities
                                               : std::clamp<std::int64_t>(options_.records / 50, 20, 100000);
    count              = std::max<std::int64_t>(count, 10);
    const auto n       = static_cast<std::size_t>(count);
    entities_.resize(n);

    // Ids are a random permutation of 1..n, so an id says nothing about the size of its holder.
    std::vector<std::int64_t> number(n);
    for (std::size_t i = 0; i < n; ++i) { number[i] = static_cast<std::int64_t>(i) + 1; }
    for (std::size_t i = n - 1; i > 0; --i) { std::swap(number[i], number[rng_.below(i + 1)]); }
    const int width = std::max(6, decimal_digits(count));
    for (std::size_t i = 0; i < n; ++i) {
      entities_[i].id = "ENT";
      append_padded(entities_[i].id, number[i], width);
    }

    // Statuses. UVEU holders are hyperscalers: drawn among the top ranks, the largest in the US.
    const std::int64_t uveu_count = std::clamp<std::int64_t>(count / 200, 3, 50);
    std::int64_t chosen           = 0;
    for (std::size_t r = 0; r < n && chosen < uveu_count; ++r) {
      if (r == 0 || rng_.chance(1, 3)) {
        entities_[r].status = entity_status::uveu;
        ++chosen;
      }
    }
    for (std::size_t r = 1; r < n && chosen < uveu_count; ++r) {  // small tables: fill from the top
      if (entities_[r].status != entity_status::uveu) {
        entities_[r].status = entity_status::uveu;
        ++chosen;
      }
    }
    const std::int64_t nveu_count     = std::max<std::int64_t>(2, count * 4 / 100);
    const std::int64_t unlisted_count = std::max<std::int64_t>(1, count * 3 / 100);
    for (std::int64_t k = 0; k < nveu_count;) {
      auto& e = entities_[rng_.below(n)];
      if (e.status == entity_status::none) {
        e.status = entity_status::nveu;
        ++k;
      }
    }
    for (std::int64_t k = 0; k < unlisted_count;) {
      auto& e = entities_[rng_.below(n)];
      if (e.status == entity_status::none && e.listed) {
        e.listed = false;
        ++k;
      }
    }

    for (std::size_t r = 0; r < n; ++r) {
      auto& e = entities_[r];
      e.name  = make_name();
      switch (e.status) {
        case entity_status::uveu: {
          e.hq      = (us_ >= 0 && (uveu_.empty() || rng_.chance(70, 100))) ? us_ : tier1_.pick(rng_);
          e.tracker = static_cast<std::int32_t>(uveu_.size());
          uveu_tracker t;
          t.per_country.assign(countries_.rows.size(), 0);
          uveu_.push_back(std::move(t));
          uveu_entities_.push_back(static_cast<std::int32_t>(r));
          break;
        }
        case entity_status::nveu: {
          e.hq = rng_.chance(80, 100) ? hot2_.pick(rng_) : tier1_.pick(rng_);
          if (tier_of(e.hq) == 2) { e.nveu_countries.push_back(static_cast<std::uint16_t>(e.hq)); }
          const std::size_t wanted = 1 + rng_.below(3);
          for (int attempt = 0; attempt < 20 && e.nveu_countries.size() < wanted; ++attempt) {
            const auto code = static_cast<std::uint16_t>(hot2_.pick(rng_));
            if (std::find(e.nveu_countries.begin(), e.nveu_countries.end(), code) == e.nveu_countries.end()) {
              e.nveu_countries.push_back(code);
            }
          }
          std::sort(e.nveu_countries.begin(), e.nveu_countries.end());
          e.tracker = static_cast<std::int32_t>(nveu_totals_.size());
          nveu_totals_.resize(nveu_totals_.size() + e.nveu_countries.size(), 0);
          break;
        }
        case entity_status::none: {
          const std::uint64_t where = rng_.below(100);
          e.hq = where < 45 ? tier1_.pick(rng_) : where < 90 ? hot2_.pick(rng_) : other2_.pick(rng_);
          break;
        }
      }
      e.secondary = rng_.chance(55, 100) ? tier1_.pick(rng_) : hot2_.pick(rng_);
      e.channel   = channels_.pick(rng_);
      // Zipf's law: weight 1/(rank+1), scaled to integers; rank 0 gets ~8% of 100000 entities.
      zipf_.add(static_cast<int>(r), (1ULL << 40) / (r + 1));
    }
  }

  // ---- breach plants ---------------------------------------------------------------------------

  /// @brief Listed NONE entities, the ordinary consignees that plants are pinned on.
  [[nodiscard]] std::vector<std::int32_t> listed_none_entities() const
  {
    std::vector<std::int32_t> out;
    for (std::size_t r = 0; r < entities_.size(); ++r) {
      if (entities_[r].status == entity_status::none && entities_[r].listed) {
        out.push_back(static_cast<std::int32_t>(r));
      }
    }
    return out;
  }

  /// @brief Quantity q with q * tpp > limit: one line (or the sum of a split) crosses it alone.
  static std::int64_t quantity_over(std::int64_t limit, std::int64_t tpp)
  {
    return std::max<std::int64_t>(limit, 0) / tpp + 1;
  }

  void plant_split(day_t day, std::int32_t entity, int country, int chip, std::int64_t total, int parts,
                   pathway path, std::int64_t order)
  {
    parts = static_cast<int>(std::min<std::int64_t>(parts, total));
    for (int i = 0; i < parts; ++i) {
      const std::int64_t q = i + 1 < parts ? total / parts : total - (total / parts) * (parts - 1);
      mid_plants_.push_back(planted_line{day, entity, country, chip, q, path, order});
    }
  }

  void plan_plants()
  {
    const auto none = listed_none_entities();
    // Distinct consignees per plant when there are enough; sharing one would not stop any rule.
    if (none.empty()) { throw config_error("generate: no NONE entity to plant breaches on"); }
    const auto pick_none = [&](std::size_t k) { return none[(none.size() / 2 + k) % none.size()]; };

    const day_t ws       = rules_.counting_starts;
    const day_t we       = std::max(rules_.counting_ends, ws);
    const day_t d0       = ws + std::min<day_t>(45, (we - ws) / 4);
    const auto plant_day = [&](int group) { return std::min<day_t>(d0 + 7 * group, we); };
    const int big        = big_chip_;
    const auto tpp       = chips_[static_cast<std::size_t>(big)].tpp;
    const int tier1      = us_ >= 0 ? us_ : tier1_.items().front();

    // A capped destination: the first hub that is not a G2G partner (its cap is not multiplied).
    int capped = -1;
    for (const int code : hot2_order_) {
      if (!countries_.rows[static_cast<std::size_t>(code)].g2g_partner) {
        capped = code;
        break;
      }
    }
    if (capped < 0) { capped = hot2_order_.front(); }
    const int other_capped = hot2_order_.size() > 1 ? hot2_order_[1] : capped;

    // COUNTRY_CAP_EXCEEDED: three lines on a pathway the cap counts, together over the cap.
    pathway cap_path = pathway::license;
    bool cap_counts  = false;
    for (int p = 0; p < pathway_count; ++p) {
      if ((rules_.country_cap_pathways >> p) & 1U) {
        if (!cap_counts || p == static_cast<int>(pathway::license)) { cap_path = static_cast<pathway>(p); }
        cap_counts = true;
      }
    }
    if (cap_counts) {
      const std::int64_t multiplier =
          countries_.rows[static_cast<std::size_t>(capped)].g2g_partner ? rules_.g2g_multiplier : 1;
      plant_split(plant_day(0), pick_none(0), capped, big,
                  quantity_over(rules_.country_cap_tpp * multiplier, tpp), 3, cap_path, -1);
    }

    // PROHIBITED_DESTINATION: one positive line to a tier-3 country.
    if (!tier3_.empty()) {
      const int prohibited = tier3_.items().front();
      mid_plants_.push_back(
          planted_line{plant_day(1), pick_none(1), prohibited, big, 8, pathway::license, -1});
    }

    // LPP_ORDER_LIMIT: one order of three LPP lines, together over the per-order limit.
    plant_split(plant_day(2), pick_none(2), capped, big, quantity_over(rules_.lpp_per_order_tpp, tpp), 3,
                pathway::lpp, next_order_++);

    // LPP_ANNUAL_LIMIT: another consignee, orders each under the per-order limit (when the chip
    // allows it), summing over the yearly limit within one calendar year.
    {
      const std::int64_t units_per_order = std::max<std::int64_t>(
          1, std::min(rules_.lpp_per_order_tpp, rules_.lpp_per_consignee_year_tpp) * 3 / 5 / tpp);
      const std::int64_t orders =
          std::max<std::int64_t>(rules_.lpp_per_consignee_year_tpp, 0) / (units_per_order * tpp) + 1;
      if (orders > 100000) {
        throw config_error("generate: LPP limits too far apart to plant a yearly breach");
      }
      const day_t first = plant_day(3);
      const int year    = year_of(first);
      for (std::int64_t k = 0; k < orders; ++k) {
        day_t day = first + static_cast<day_t>(k);
        if (day > we || year_of(day) != year) { day = first; }
        mid_plants_.push_back(
            planted_line{day, pick_none(3), other_capped, big, units_per_order, pathway::lpp, next_order_++});
      }
    }

    // NVEU_CAP_EXCEEDED: an NVEU holder in its own authorized country, over the phase cap.
    {
      const day_t day  = plant_day(4);
      std::int64_t cap = -1;
      for (const auto& phase : rules_.nveu_caps) {
        if (phase.through >= day) {
          cap = phase.tpp;
          break;
        }
      }
      for (std::size_t r = 0; r < entities_.size() && cap >= 0; ++r) {
        const auto& e = entities_[r];
        if (e.status == entity_status::nveu && !e.nveu_countries.empty()) {
          plant_split(day, static_cast<std::int32_t>(r), e.nveu_countries.front(), big,
                      quantity_over(cap, tpp), 2, pathway::nveu, -1);
          break;
        }
      }
    }

    // UNAUTHORIZED_PATHWAY, every branch: UVEU by a non-holder, NVEU without authorization,
    // AIA to a tier-2 country, ACA of a datacenter chip.
    {
      const day_t day = plant_day(5);
      const auto who  = pick_none(4);
      mid_plants_.push_back(planted_line{day, who, tier1, big, 8, pathway::uveu, -1});
      mid_plants_.push_back(planted_line{day, who, capped, big, 8, pathway::nveu, -1});
      mid_plants_.push_back(planted_line{day, who, capped, big, 8, pathway::aia, -1});
      if (chips_[static_cast<std::size_t>(big)].datacenter) {
        mid_plants_.push_back(planted_line{day, who, tier1, big, 8, pathway::aca, -1});
      }
    }
    std::stable_sort(mid_plants_.begin(), mid_plants_.end(),
                     [](const planted_line& a, const planted_line& b) { return a.day < b.day; });

    // UVEU shares: sized after the ordinary lines, one line each (see plant_uveu_shares).
    for (const auto r : uveu_entities_) {
      if (uveu_us_holder_ < 0 && us_ >= 0 && entities_[static_cast<std::size_t>(r)].hq == us_ &&
          rules_.uveu_min_us_share_if_us_hq > 0) {
        uveu_us_holder_ = r;
      } else if (uveu_tier2_holder_ < 0 && rules_.uveu_max_tier2_country_share < ppm) {
        uveu_tier2_holder_ = r;
      } else if (uveu_tier1_holder_ < 0 && rules_.uveu_min_tier1_share > 0) {
        uveu_tier1_holder_ = r;
      }
    }
    end_plant_count_ = (uveu_us_holder_ >= 0) + (uveu_tier2_holder_ >= 0) + (uveu_tier1_holder_ >= 0);
    capped_          = capped;
    other_capped_    = other_capped;
  }

  /// @brief Smallest q >= 1 with @p holds(q * tpp); @p holds is monotone in q.
  template <typename Predicate>
  static std::int64_t smallest_quantity(std::int64_t tpp, Predicate holds)
  {
    std::int64_t high = 1;
    while (!holds(high * tpp)) {
      if (high > std::numeric_limits<std::int64_t>::max() / 2 / tpp) {
        throw config_error("generate: a UVEU share plant would overflow 64-bit TPP");
      }
      high *= 2;
    }
    std::int64_t low = high / 2;  // !holds(low * tpp) unless low == 0
    while (high - low > 1) {
      const std::int64_t mid          = low + (high - low) / 2;
      (holds(mid * tpp) ? high : low) = mid;
    }
    return high;
  }

  /// @brief Appends one line per UVEU share rule, each sized from its holder's exact totals.
  void plant_uveu_shares()
  {
    const int big        = big_chip_;
    const std::int64_t t = chips_[static_cast<std::size_t>(big)].tpp;
    const day_t day      = last_day_;
    if (uveu_us_holder_ >= 0) {
      // US share below the minimum: a tier-1 line outside the US (tier-1 share stays intact).
      const auto& tr =
          uveu_[static_cast<std::size_t>(entities_[static_cast<std::size_t>(uveu_us_holder_)].tracker)];
      int abroad = -1;
      for (const int code : tier1_.items()) {
        if (code != us_) {
          abroad = code;
          break;
        }
      }
      if (abroad < 0) { abroad = capped_; }
      const std::int64_t m = rules_.uveu_min_us_share_if_us_hq;
      const std::int64_t q = smallest_quantity(t, [&](std::int64_t x) {
        return product_less(ppm, tr.us, m, tr.world + x);  // us / (world + x) < m
      });
      emit_uveu(day, uveu_us_holder_, abroad, big, q);
    }
    if (uveu_tier2_holder_ >= 0) {
      const auto& tr =
          uveu_[static_cast<std::size_t>(entities_[static_cast<std::size_t>(uveu_tier2_holder_)].tracker)];
      const std::int64_t s    = rules_.uveu_max_tier2_country_share;
      const std::int64_t part = tr.per_country[static_cast<std::size_t>(capped_)];
      const std::int64_t q    = smallest_quantity(t, [&](std::int64_t x) {
        return product_less(s, tr.world + x, ppm, part + x);  // (part + x) / (world + x) > s
      });
      emit_uveu(day, uveu_tier2_holder_, capped_, big, q);
    }
    if (uveu_tier1_holder_ >= 0) {
      const auto& tr =
          uveu_[static_cast<std::size_t>(entities_[static_cast<std::size_t>(uveu_tier1_holder_)].tracker)];
      const std::int64_t m = rules_.uveu_min_tier1_share;
      const std::int64_t q = smallest_quantity(t, [&](std::int64_t x) {
        return product_less(ppm, tr.tier1, m, tr.world + x);  // tier1 / (world + x) < m
      });
      emit_uveu(day, uveu_tier1_holder_, other_capped_, big, q);
    }
  }

  void emit_uveu(day_t day, std::int32_t entity, int country, int chip, std::int64_t quantity)
  {
    const std::int64_t tpp = quantity * chips_[static_cast<std::size_t>(chip)].tpp;
    apply_uveu(entities_[static_cast<std::size_t>(entity)], country, tpp);
    emit(day, entity, country, chip, quantity, pathway::uveu, -1,
         chips_[static_cast<std::size_t>(chip)].vendor_exporter);
  }

  // ---- ordinary traffic ---------------------------------------------------------------------

  /// @brief Day of the i-th of n ordinary lines: non-decreasing, density doubling over the range.
  [[nodiscard]] day_t base_day(std::int64_t i, std::int64_t n) const
  {
    // Inverse CDF of a density proportional to (1 + d) on [0, 1]: d = sqrt(1 + 3u) - 1.
    constexpr std::uint64_t scale = 1ULL << 30;
    const std::uint64_t u         = (static_cast<std::uint64_t>(i) << 30) / static_cast<std::uint64_t>(n);
    const std::uint64_t root      = isqrt(scale * scale + 3 * u * scale);
    const auto span               = static_cast<std::uint64_t>(last_day_ - first_day_);
    return first_day_ + static_cast<day_t>(span * (root - scale) / scale);
  }

  int pick_global(prng& rng)
  {
    const std::uint64_t r = rng.below(100);
    return r < 50 ? tier1_.pick(rng) : r < 92 ? hot2_.pick(rng) : other2_.pick(rng);
  }

  int pick_destination(const gen_entity& e)
  {
    const std::uint64_t r = rng_.below(100);
    switch (e.status) {
      case entity_status::uveu:
        if (e.hq == us_) { return r < 68 ? us_ : r < 95 ? tier1_.pick(rng_) : hot2_.pick(rng_); }
        if (r < 45) { return e.hq; }
        if (r < 70 && us_ >= 0) { return us_; }
        return r < 95 ? tier1_.pick(rng_) : hot2_.pick(rng_);
      case entity_status::nveu:
        if (r < 75) { return e.nveu_countries[rng_.below(e.nveu_countries.size())]; }
        return pick_global(rng_);
      case entity_status::none:
        break;
    }
    return r < 60 ? e.hq : r < 80 ? e.secondary : pick_global(rng_);
  }

  int pick_chip(day_t day)
  {
    if (!adhoc_chips_.empty() &&
        rng_.chance(static_cast<std::uint64_t>(options_.adhoc_per_million), 1000000)) {
      return adhoc_chips_.pick(rng_);
    }
    const std::size_t era = day < era_starts_[0] ? 0 : day < era_starts_[1] ? 1 : 2;
    return era_chips_[era].pick(rng_);
  }

  /// @brief Units on a line: 8-GPU servers mostly, single cards sometimes, big orders for the top.
  std::int64_t pick_quantity(std::size_t rank)
  {
    const bool top        = rank < std::max<std::size_t>(3, entities_.size() / 100);
    const std::uint64_t r = rng_.below(1000);
    if (top && r < 30) { return 8 * static_cast<std::int64_t>(64 + rng_.below(449)); }  // 512..4096
    if (r < 280) { return 1 + static_cast<std::int64_t>(rng_.below(8)); }
    if (r < 930) { return 8 * (1 + static_cast<std::int64_t>(rng_.below(8))); }
    return 8 * (9 + static_cast<std::int64_t>(rng_.below(24)));  // 72..256
  }

  int pick_exporter(const gen_entity& e, int chip)
  {
    const int channel =
        rng_.chance(75, 100) ? e.channel : static_cast<int>(rng_.below(channel_weights.size()));
    return channel == 0 ? chips_[static_cast<std::size_t>(chip)].vendor_exporter
                        : resellers_[static_cast<std::size_t>(channel - 1)];
  }

  /// The NVEU cap in force on @p day (reference.hpp's lookup); a rule set without phases has none.
  [[nodiscard]] std::int64_t nveu_cap_on(day_t day) const
  {
    return rules_.nveu_caps.empty() ? std::numeric_limits<std::int64_t>::max()
                                    : capledger::nveu_cap_on(rules_.nveu_caps, day);
  }

  /// @brief Whether adding @p delta tpp in @p country keeps a UVEU holder within every share rule.
  [[nodiscard]] bool uveu_allows(const gen_entity& e, int country, std::int64_t delta) const
  {
    const auto& tr           = uveu_[static_cast<std::size_t>(e.tracker)];
    const std::int64_t world = tr.world + delta;
    if (world <= 0) { return true; }  // shares apply to a positive installed base only
    const int tier           = tier_of(country);
    const std::int64_t tier1 = tr.tier1 + (tier == 1 ? delta : 0);
    const std::int64_t us    = tr.us + (country == us_ ? delta : 0);
    if (product_less(ppm, tier1, rules_.uveu_min_tier1_share, world)) { return false; }
    if (e.hq == us_ && us_ >= 0 && product_less(ppm, us, rules_.uveu_min_us_share_if_us_hq, world)) {
      return false;
    }
    const std::int64_t s = rules_.uveu_max_tier2_country_share;
    if (delta >= 0) {  // a growing base only raises the share of the country that grows
      return tier != 2 ||
             !product_less(s, world, ppm, tr.per_country[static_cast<std::size_t>(country)] + delta);
    }
    for (std::size_t c = 0; c < tr.per_country.size(); ++c) {
      if (countries_.rows[c].tier != 2) { continue; }
      const std::int64_t part = tr.per_country[c] + (static_cast<int>(c) == country ? delta : 0);
      if (product_less(s, world, ppm, part)) { return false; }
    }
    return true;
  }

  void apply_uveu(const gen_entity& e, int country, std::int64_t delta)
  {
    auto& tr = uveu_[static_cast<std::size_t>(e.tracker)];
    tr.world += delta;
    if (tier_of(country) == 1) { tr.tier1 += delta; }
    if (country == us_) { tr.us += delta; }
    tr.per_country[static_cast<std::size_t>(country)] += delta;
  }

  void remember(std::int32_t entity, int country, int chip, pathway path, int exporter, std::int64_t order,
                std::int64_t quantity, day_t day)
  {
    if (remember_one_in_ > 1 && !rng_.chance(1, remember_one_in_)) { return; }
    shipped_line& s = pool_[pool_next_ % pool_.size()];
    ++pool_next_;
    s = shipped_line{entity, country, chip, path, exporter, order, quantity, day};
  }

  /// @brief Takes units back from a remembered shipment, when one is eligible.
  bool try_return(day_t day)
  {
    const std::size_t filled = std::min<std::size_t>(pool_next_, pool_.size());
    if (filled == 0) { return false; }
    shipped_line& s = pool_[rng_.below(filled)];
    if (s.remaining <= 0 || s.day >= day) { return false; }  // strictly later: (date, pos) safe
    // Never lower a total that the shipment itself was not part of: the counting window and
    // the LPP calendar year must be the same for both lines.
    if (s.day < rules_.counting_starts && day >= rules_.counting_starts) { return false; }
    if (s.path == pathway::lpp && year_of(s.day) != year_of(day)) { return false; }
    const std::int64_t q = 1 + static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(s.remaining)));
    const std::int64_t tpp = q * chips_[static_cast<std::size_t>(s.chip)].tpp;
    const auto& e          = entities_[static_cast<std::size_t>(s.entity)];
    if (e.status == entity_status::uveu) {
      if (!uveu_allows(e, s.country, -tpp)) { return false; }
      apply_uveu(e, s.country, -tpp);
    }
    s.remaining -= q;
    emit(day, s.entity, s.country, s.chip, -q, s.path, s.order, s.exporter);
    return true;
  }

  /// @brief A few tries at try_return, so that ineligible slots barely lower the return rate.
  bool try_returns(day_t day)
  {
    for (int attempt = 0; attempt < 8; ++attempt) {
      if (try_return(day)) { return true; }
    }
    return false;
  }

  /// @brief One ordinary event: a line, or an LPP order of several lines. @return lines written
  std::int64_t ordinary_event(day_t day, std::int64_t budget)
  {
    const auto rank     = static_cast<std::size_t>(zipf_.pick(rng_));
    const auto who      = static_cast<std::int32_t>(rank);
    const gen_entity& e = entities_[rank];

    if (e.status == entity_status::none && !tier3_.empty() &&
        rng_.chance(static_cast<std::uint64_t>(options_.prohibited_per_million), 1000000)) {
      const int country = tier3_.pick(rng_);
      const int chip    = pick_chip(day);
      // Draws are sequenced one statement each: the order of evaluation of function arguments
      // is unspecified, and GCC and Clang differ, which would change the bytes.
      const std::int64_t quantity = pick_quantity(rank);
      const int exporter          = pick_exporter(e, chip);
      emit(day, who, country, chip, quantity, pathway::license, -1, exporter);
      return 1;
    }

    int country  = pick_destination(e);
    pathway path = pathway::license;
    int chip     = -1;
    if (e.status == entity_status::none) {
      if (tier_of(country) == 2 && budget >= 2 && rng_.chance(12, 100)) {
        return lpp_order(day, who, country, budget);
      }
      if (!consumer_chips_.empty() && rng_.chance(1, 100)) {
        path = pathway::aca;  // consumer cards under ACA: the one chip class it covers
        chip = consumer_chips_.pick(rng_);
      } else if (tier_of(country) == 1 && e.listed && tier_of(e.hq) == 1 && rng_.chance(4, 100)) {
        path = pathway::aia;
      }
    }
    if (chip < 0) { chip = pick_chip(day); }
    const std::int64_t quantity = pick_quantity(rank);
    const std::int64_t tpp      = quantity * chips_[static_cast<std::size_t>(chip)].tpp;

    if (e.status == entity_status::uveu) {
      path = rng_.chance(85, 100) ? pathway::uveu : pathway::license;
      // Home (the US for US holders) only raises the tier-1 and US shares and lowers every
      // tier-2 share, so it is always a compliant destination.
      if (!uveu_allows(e, country, tpp)) { country = e.hq; }
      apply_uveu(e, country, tpp);
    } else if (e.status == entity_status::nveu) {
      const auto it = std::lower_bound(e.nveu_countries.begin(), e.nveu_countries.end(), country);
      if (it != e.nveu_countries.end() && *it == country && rng_.chance(80, 100)) {
        std::int64_t& total = nveu_totals_[static_cast<std::size_t>(e.tracker) +
                                           static_cast<std::size_t>(it - e.nveu_countries.begin())];
        if (total <= nveu_cap_on(day) - tpp) {  // over the phase cap: ship under a licence instead
          total += tpp;
          path = pathway::nveu;
        }
      }
    }
    // Half the lines carry their own order id, the others leave it to default to the line id.
    const std::int64_t order = rng_.chance(1, 2) ? next_order_++ : -1;
    const int exporter       = pick_exporter(e, chip);
    emit(day, who, country, chip, quantity, path, order, exporter);
    remember(who, country, chip, path, exporter, order, quantity, day);
    return 1;
  }

  /// @brief An LPP order: 2-5 small lines under one order id, downgraded to LICENSE when it
  /// would breach the per-order or the consignee's yearly limit.
  std::int64_t lpp_order(day_t day, std::int32_t who, int country, std::int64_t budget)
  {
    const gen_entity& e = entities_[static_cast<std::size_t>(who)];
    const auto lines    = static_cast<std::int64_t>(
        std::min<std::uint64_t>(2 + rng_.below(4), static_cast<std::uint64_t>(budget)));
    std::array<int, 5> chip{};
    std::array<std::int64_t, 5> quantity{};
    std::int64_t order_tpp = 0;
    for (std::int64_t i = 0; i < lines; ++i) {
      chip[static_cast<std::size_t>(i)]     = pick_chip(day);
      quantity[static_cast<std::size_t>(i)] = 1 + static_cast<std::int64_t>(rng_.below(8));
      order_tpp += quantity[static_cast<std::size_t>(i)] *
                   chips_[static_cast<std::size_t>(chip[static_cast<std::size_t>(i)])].tpp;
    }
    const auto key       = (static_cast<std::uint64_t>(who) << 16) | static_cast<std::uint16_t>(year_of(day));
    std::int64_t& yearly = lpp_yearly_[key];
    pathway path         = pathway::license;
    if (order_tpp <= rules_.lpp_per_order_tpp && yearly <= rules_.lpp_per_consignee_year_tpp - order_tpp) {
      yearly += order_tpp;
      path = pathway::lpp;
    }
    const std::int64_t order = next_order_++;
    const int exporter       = pick_exporter(e, chip[0]);
    for (std::int64_t i = 0; i < lines; ++i) {
      const auto k = static_cast<std::size_t>(i);
      emit(day, who, country, chip[k], quantity[k], path, order, exporter);
      remember(who, country, chip[k], path, exporter, order, quantity[k], day);
    }
    return lines;
  }

  // ---- output -------------------------------------------------------------------------------

  void append_day(std::string& out, day_t day)
  {
    if (day >= first_day_ && day <= last_day_) {
      const auto& text = day_text_[static_cast<std::size_t>(day - first_day_)];
      out.append(text.data(), text.size());
    } else {
      out.append(format_date(day));
    }
  }

  void emit(day_t day, std::int32_t entity, int country, int chip, std::int64_t quantity, pathway path,
            std::int64_t order, int exporter)
  {
    const gen_chip& c = chips_[static_cast<std::size_t>(chip)];
    line_.clear();
    line_ += "SHP";
    append_padded(line_, ++shipment_counter_, id_width_);
    line_.push_back(',');
    append_day(line_, day);
    line_.push_back(',');
    line_ += entities_[static_cast<std::size_t>(entity)].id;
    line_.push_back(',');
    line_ += country_csv_[static_cast<std::size_t>(country)];
    line_.push_back(',');
    line_ += c.csv_key;
    line_.push_back(',');
    append_int(line_, quantity);
    line_.push_back(',');
    line_ += pathway_text_[static_cast<std::size_t>(path)];
    line_.push_back(',');
    if (order >= 0) {
      line_ += "ORD";
      append_padded(line_, order + 1, id_width_);
    }
    line_.push_back(',');
    line_ += exporter_csv_[static_cast<std::size_t>(exporter)];
    line_.push_back(',');
    line_ += c.tpp_text;
    line_.push_back('\n');
    shuffler_->push(line_);
  }

  void write_entities(std::ostream& out)
  {
    // Sorted by id, the way an exported master-data table usually is.
    std::vector<std::size_t> order(entities_.size());
    for (std::size_t i = 0; i < order.size(); ++i) { order[i] = i; }
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return entities_[a].id < entities_[b].id; });
    std::string buffer = "entity,name,hq_country,status,nveu_countries\n";
    for (const std::size_t i : order) {
      const gen_entity& e = entities_[i];
      if (!e.listed) { continue; }
      buffer += e.id;
      buffer.push_back(',');
      buffer += csv_text::cell(e.name);
      buffer.push_back(',');
      buffer += country_csv_[static_cast<std::size_t>(e.hq)];
      buffer.push_back(',');
      buffer += entity_status_name(e.status);
      buffer.push_back(',');
      for (std::size_t k = 0; k < e.nveu_countries.size(); ++k) {
        if (k > 0) { buffer.push_back(';'); }
        buffer += countries_.rows[e.nveu_countries[k]].iso2;
      }
      buffer.push_back('\n');
    }
    out.write(buffer.data(), static_cast<std::streamsize>(buffer.size()));
  }

  void write_shipments(std::ostream& out)
  {
    const std::int64_t natural =
        options_.records - static_cast<std::int64_t>(mid_plants_.size()) - end_plant_count_;
    id_width_ = std::max(9, decimal_digits(options_.records));
    for (int p = 0; p < pathway_count; ++p) {
      pathway_text_[static_cast<std::size_t>(p)] = std::string(pathway_name(static_cast<pathway>(p)));
    }
    day_text_.clear();
    for (day_t d = first_day_; d <= last_day_; ++d) {
      const std::string text = format_date(d);
      std::array<char, 10> cell{};
      std::copy_n(text.data(), std::min<std::size_t>(text.size(), cell.size()), cell.begin());
      day_text_.push_back(cell);
    }

    static const char header[] =
        "shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit\n";
    out.write(header, static_cast<std::streamsize>(sizeof header - 1));
    // The shuffler has its own stream of randomness, so the lines do not depend on its choices.
    prng shuffle_rng(options_.seed ^ 0x5DEECE66DULL);
    line_shuffler shuffler(out, shuffle_rng);
    shuffler_ = &shuffler;

    // Returns need shipments dated before today: at millions of lines a day's traffic alone
    // would fill the pool, so only a sample is remembered, sized to span about 60 days.
    const std::uint64_t lines_per_day =
        static_cast<std::uint64_t>(natural) / (static_cast<std::uint64_t>(last_day_ - first_day_) + 1);
    remember_one_in_ = std::max<std::uint64_t>(1, 60 * lines_per_day / pool_.size());

    std::size_t next_plant = 0;
    for (std::int64_t i = 0; i < natural;) {
      const day_t day = base_day(i, natural);
      while (next_plant < mid_plants_.size() && mid_plants_[next_plant].day <= day) {
        emit_plant(mid_plants_[next_plant++]);
      }
      if (options_.returns_per_mille > 0 &&
          rng_.chance(static_cast<std::uint64_t>(options_.returns_per_mille), 1000) && try_returns(day)) {
        ++i;
        continue;
      }
      i += ordinary_event(day, natural - i);
    }
    while (next_plant < mid_plants_.size()) { emit_plant(mid_plants_[next_plant++]); }
    if (options_.force_breaches) { plant_uveu_shares(); }
    shuffler.finish();
    shuffler_ = nullptr;
  }

  void emit_plant(const planted_line& p)
  {
    emit(p.day, p.entity, p.country, p.chip, p.quantity, p.path, p.order,
         chips_[static_cast<std::size_t>(p.chip)].vendor_exporter);
  }

  const generate_options& options_;
  const country_table& countries_;
  const rule_set& rules_;
  prng rng_;
  day_t first_day_ = 0;
  day_t last_day_  = 0;

  weighted_table tier1_, hot2_, other2_, tier3_, fallback2_;
  std::vector<int> hot2_order_;  ///< hubs in profile order: plants pick the first ones
  int us_ = -1;
  std::vector<std::string> country_csv_;

  std::vector<gen_chip> chips_;
  std::array<weighted_table, 3> era_chips_;
  std::array<day_t, 2> era_starts_{};
  weighted_table adhoc_chips_, consumer_chips_, channels_;
  int big_chip_ = -1;  ///< the datacenter chip with the most TPP: plants need few units of it
  std::vector<std::string> exporter_names_, exporter_csv_;
  std::vector<int> resellers_;

  std::vector<gen_entity> entities_;
  weighted_table zipf_;
  std::vector<uveu_tracker> uveu_;
  std::vector<std::int32_t> uveu_entities_;  ///< UVEU holders in rank order
  std::vector<std::int64_t> nveu_totals_;    ///< positive NVEU tpp per (holder, authorized country)
  std::unordered_map<std::uint64_t, std::int64_t> lpp_yearly_;  ///< looked up only, never iterated

  std::vector<shipped_line> pool_ = std::vector<shipped_line>(16384);
  std::uint64_t pool_next_        = 0;
  std::uint64_t remember_one_in_  = 1;  ///< sampling keeps about two months of shipments in the pool

  std::vector<planted_line> mid_plants_;
  std::int64_t end_plant_count_ = 0;
  std::int32_t uveu_us_holder_ = -1, uveu_tier2_holder_ = -1, uveu_tier1_holder_ = -1;
  int capped_ = -1, other_capped_ = -1;
  std::int64_t next_order_ = 0;

  std::int64_t shipment_counter_ = 0;
  int id_width_                  = 9;
  std::array<std::string, pathway_count> pathway_text_;
  std::vector<std::array<char, 10>> day_text_;
  std::string line_;
  line_shuffler* shuffler_ = nullptr;
};

void check_options(const generate_options& options)
{
  if (options.records < 0) { throw config_error("generate: --records must be >= 0"); }
  if (options.records > (std::int64_t{1} << 32)) {
    throw config_error("generate: --records must be <= 2^32");
  }
  if (options.entities < 0 || options.entities > std::numeric_limits<std::int32_t>::max()) {
    throw config_error("generate: --entities must be between 0 and 2^31 - 1");
  }
  if (options.returns_per_mille < 0 || options.returns_per_mille > 1000) {
    throw config_error("generate: --returns-per-mille must be between 0 and 1000, not " +
                       std::to_string(options.returns_per_mille));
  }
  if (options.prohibited_per_million < 0 || options.prohibited_per_million > 1000000 ||
      options.adhoc_per_million < 0 || options.adhoc_per_million > 1000000) {
    throw config_error("generate: rates per million must be between 0 and 1000000");
  }
  // Each day named with its flag, or as that flag's default where it was left out: a --first-day
  // after the default last day was refused without a word of which day it was compared with.
  const day_t first = options.first_day ? *options.first_day : days_from_civil(2024, 10, 1);
  const day_t last  = options.last_day ? *options.last_day : days_from_civil(2027, 12, 31);
  const auto named  = [](const std::optional<day_t>& given, day_t day, const char* flag) {
    return std::string(flag) + " " + format_date(day) + (given ? "" : " (the default)");
  };
  const std::string first_is = named(options.first_day, first, "--first-day");
  const std::string last_is  = named(options.last_day, last, "--last-day");
  if (first > last) { throw config_error("generate: " + first_is + " is after " + last_is); }
  if (last - first > 100 * 366) {
    throw config_error("generate: " + first_is + " to " + last_is +
                       " is more than a century: generate's dates span at most one");
  }
}

/// Checks @p options and plans the log: every refusal comes from here, before anything is written.
log_generator make_generator(const generate_options& options, const country_table& countries,
                             const chip_table& chips, const rule_set& rules)
{
  check_options(options);
  return log_generator(options, countries, chips, rules);
}

/// The generator's streams, written into files put in place atomically: a log of any size is
/// staged piece by piece, never held whole.
class staged_file_buffer final : public std::streambuf {
 public:
  explicit staged_file_buffer(atomic_file_writer& file) : file_(file) {}

 protected:
  std::streamsize xsputn(const char* bytes, std::streamsize count) override
  {
    file_.append({bytes, static_cast<std::size_t>(count)});
    return count;
  }
  int_type overflow(int_type byte) override
  {
    if (!traits_type::eq_int_type(byte, traits_type::eof())) {
      const char one = traits_type::to_char_type(byte);
      file_.append({&one, 1});
    }
    return traits_type::not_eof(byte);
  }

 private:
  atomic_file_writer& file_;
};

}  // namespace

void generate_log(const generate_options& options, const country_table& countries, const chip_table& chips,
                  const rule_set& rules, std::ostream& shipments, std::ostream& entities)
{
  make_generator(options, countries, chips, rules).run(shipments, entities);
}

}  // namespace detail

void generate_log(const generate_options& options, const country_table& countries, const chip_table& chips,
                  const rule_set& rules, std::ostream& shipments, std::ostream& entities)
{
  detail::generate_log(options, countries, chips, rules, shipments, entities);
  if (!shipments || !entities) { throw config_error("generate: writing the output failed"); }
}

void generate_log(const generate_options& options, const country_table& countries, const chip_table& chips,
                  const rule_set& rules, const std::string& out_dir)
{
  namespace fs = std::filesystem;
  // Options are checked before the folder and files are made: a refused run leaves none.
  auto generator = detail::make_generator(options, countries, chips, rules);
  const fs::path dir(out_dir);
  // Two links in --out naming one file would have the entities written over the log.
  detail::refuse_colliding_paths(
      {{},
       {{"--out", (dir / "shipments.csv").string()}, {"--out", (dir / "entities.csv").string()}},
       {},
       {}});
  detail::directories_made folders(dir, out_dir);
  // Never over a file already there, nor one made while the log is written: `--out` pointed at a
  // folder of real logs would otherwise replace a shipments.csv with synthetic lines.
  const auto refuse = detail::if_exists::refuse;
  detail::atomic_file_writer shipments_file((dir / "shipments.csv").string(), "", refuse);
  detail::atomic_file_writer entities_file((dir / "entities.csv").string(), "", refuse);
  {
    detail::staged_file_buffer shipments_buffer(shipments_file), entities_buffer(entities_file);
    std::ostream shipments(&shipments_buffer), entities(&entities_buffer);
    shipments.exceptions(std::ios::badbit);  // the writer's own error (a full disk), not a bare flag
    entities.exceptions(std::ios::badbit);
    generator.run(shipments, entities);
  }
  // Both files or neither: neither was there before, so the first is taken away when the second
  // fails. One whose folder's fsync failed is in place all the same; the other follows it.
  std::exception_ptr not_durable;
  const auto commit = [&not_durable](detail::atomic_file_writer& file) {
    try {
      file.commit();
    } catch (const detail::durability_unknown&) {
      if (!not_durable) { not_durable = std::current_exception(); }
    }
  };
  commit(shipments_file);
  try {
    commit(entities_file);
  } catch (...) {
    std::error_code ec;
    fs::remove(dir / "shipments.csv", ec);
    throw;
  }
  folders.keep();
  if (not_durable) { std::rethrow_exception(not_durable); }
}

}  // namespace capledger
