/// @file shipments.cpp
/// @brief Shipment-log ingest: CSV records validated and encoded once into columns (SPEC §1.1, §7).
#include <capledger/error.hpp>
#include <capledger/shipments.hpp>

#include "csv.hpp"
#include "device_read.hpp"
#include "fast_csv.hpp"
#include "file_io.hpp"
#include "many_cores.hpp"
#include "spreadsheet_hints.hpp"
#include "string_index.hpp"
#include "terminal_text.hpp"

#include <omp.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

namespace capledger {

// ---- dictionary -------------------------------------------------------------------------------

std::int32_t dictionary::encode(std::string_view text)
{
  if (4 * (strings_.size() + 1) > 3 * slots_.size()) {  // at most 3/4 full: short probes
    std::vector<std::uint64_t> grown(std::max<std::size_t>(64, 2 * slots_.size()), 0);
    for (const std::uint64_t slot : slots_) {
      if (slot == 0) { continue; }
      std::size_t s = detail::hash_bytes(strings_[(slot & 0xffffffffU) - 1]) & (grown.size() - 1);
      while (grown[s] != 0) { s = (s + 1) & (grown.size() - 1); }
      grown[s] = slot;
    }
    slots_ = std::move(grown);
  }
  const std::uint64_t hash = detail::hash_bytes(text);
  const std::size_t mask   = slots_.size() - 1;
  std::size_t s            = hash & mask;
  for (; slots_[s] != 0; s = (s + 1) & mask) {
    const std::uint64_t slot = slots_[s];
    if ((slot >> 32) == (hash >> 32) && detail::same_bytes(strings_[(slot & 0xffffffffU) - 1], text)) {
      return static_cast<std::int32_t>((slot & 0xffffffffU) - 1);
    }
  }
  if (strings_.size() >= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
    throw config_error("more than 2^31-1 distinct values in one dictionary");
  }
  strings_.emplace_back(text);
  slots_[s] = (hash & 0xffffffff00000000ULL) | strings_.size();
  return static_cast<std::int32_t>(strings_.size() - 1);
}

std::int32_t dictionary::find(std::string_view text) const
{
  return find(text, detail::hash_bytes(text));
}

std::int32_t dictionary::find(std::string_view text, std::uint64_t hash) const
{
  if (slots_.empty()) { return -1; }
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t s = hash & mask; slots_[s] != 0; s = (s + 1) & mask) {
    const std::uint64_t slot = slots_[s];
    if ((slot >> 32) == (hash >> 32) && detail::same_bytes(strings_[(slot & 0xffffffffU) - 1], text)) {
      return static_cast<std::int32_t>((slot & 0xffffffffU) - 1);
    }
  }
  return -1;
}

std::vector<std::int32_t> dictionary::sorted_codes() const
{
  std::vector<std::int32_t> codes(strings_.size());
  std::iota(codes.begin(), codes.end(), 0);
  std::sort(codes.begin(), codes.end(),
            [this](std::int32_t a, std::int32_t b) { return strings_[a] < strings_[b]; });
  return codes;
}

// ---- shipment_log -----------------------------------------------------------------------------

std::string_view shipment_log::shipment_id(std::int64_t line) const
{
  const std::int64_t begin = line == 0 ? 0 : id_end[static_cast<std::size_t>(line - 1)];
  const std::int64_t end   = id_end[static_cast<std::size_t>(line)];
  return {id_bytes.data() + begin, static_cast<std::size_t>(end - begin)};
}

std::string shipment_log::source_of(std::int64_t line) const
{
  const auto file = std::upper_bound(file_end.begin(), file_end.end(), line) - file_end.begin();
  return files[static_cast<std::size_t>(file)].path + ":" +
         std::to_string(source_line[static_cast<std::size_t>(line)]);
}

shipment_view shipment_columns::view() const
{
  return {size(),         date.data(),     entity.data(), country.data(), chip.data(),
          pathway.data(), quantity.data(), tpp.data(),    order.data(),   exporter.data()};
}

shipment_view shipment_log::view() const
{
  return columns.view();
}

// ---- builder ----------------------------------------------------------------------------------
//
// A file is ingested in windows of a few chunks each, chunks of 256 KiB cut at line starts.
// Phase 1, in parallel: each chunk is read (fast_csv_reader), every check that depends on a
// line alone is made, and values are encoded: with their final code when the log's dictionary
// had them when the window started (a read-only snapshot), else with a chunk-local code.
// Phase 2, on the calling thread, chunk after chunk in input order: the checks that depend on
// earlier lines (64-bit totals, repeated ids against the first occurrence) and the local codes
// mapped to the log's, which are so assigned in first-appearance order. With many cores and
// the ids in memory, the repeated ids of a window are found before its merge by all threads,
// each owning some of the id set's regions (`find_repeated_ids`). While one window is merged, the
// next is parsed; the file's SHA-256 is computed beside both (with many cores, on a thread of
// its own).
//
// Chunks are cut speculatively: a chunk's reader starts at a line start that may lie inside a
// quoted field of the previous chunk's last record. Reading from a line start is deterministic,
// so the merge only checks each seam (the previous chunk ended where this one began) and reads
// a chunk again from the right place when it did not. The result is byte for byte the log one
// reader going through the file line by line builds (tests/chunked_ingest_test.cpp).

namespace {

/// The columns of SPEC §1.1, in the order `shipment_fields` lists them: the GPU ingest's
/// (`device_csv::column`), which reads the same fields.
using device_csv::c_chip;
using device_csv::c_country;
using device_csv::c_date;
using device_csv::c_entity;
using device_csv::c_exporter;
using device_csv::c_id;
using device_csv::c_order;
using device_csv::c_pathway;
using device_csv::c_quantity;
using device_csv::c_tpp;
constexpr int record_columns = device_csv::column_count;

/// A bad line: reason code, detail, and the column whose field is where it was found.
struct line_defect {
  const char* reason;
  std::string detail;
  int column;
};

/// Bytes of the log's files before its last one (the file being read).
std::uint64_t input_bytes_before(const shipment_log& log)
{
  std::uint64_t bytes = 0;
  for (std::size_t f = 0; f + 1 < log.files.size(); ++f) {
    bytes += static_cast<std::uint64_t>(log.files[f].bytes);
  }
  return bytes;
}

bool add_overflows(std::uint64_t& sum, std::int64_t value)
{
  const std::uint64_t magnitude =
      value < 0 ? 0 - static_cast<std::uint64_t>(value) : static_cast<std::uint64_t>(value);
  sum += magnitude;
  return magnitude > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
         sum > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
}

/// Upper-cases @p text into @p buffer when it fits (lookups then allocate nothing).
template <std::size_t Size>
std::optional<std::string_view> upper_in(std::string_view text, char (&buffer)[Size])
{
  if (text.size() > Size) { return std::nullopt; }
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    buffer[i]    = c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
  }
  return std::string_view(buffer, text.size());
}

/// The last date text a reader parsed and its day: logs come roughly in date order, so most
/// lines repeat the previous line's date and skip the calendar arithmetic.
struct date_memo {
  char text[10] = {};
  day_t day     = 0;
  bool valid    = false;

  std::optional<day_t> parse(std::string_view date)
  {
    if (valid && date.size() == sizeof text && std::memcmp(date.data(), text, sizeof text) == 0) {
      return day;
    }
    const auto parsed = parse_date(date);
    if (parsed) {  // parse_date accepts only 10-byte dates
      std::memcpy(text, date.data(), sizeof text);
      day   = *parsed;
      valid = true;
    }
    return parsed;
  }
};

/// The lines a replay wants, told from a line's date and country: the days as one bit each from
/// the first to the last, and for some days the only countries wanted. A replay asks it once per
/// line.
class wanted_lines {
 public:
  explicit wanted_lines(const replay_scope& scope)
  {
    const std::vector<day_t>& days = scope.days;
    if (days.empty()) { return; }
    first_ = days.front();
    const auto span = static_cast<std::size_t>(static_cast<std::int64_t>(days.back()) - first_ + 1);
    bits_.resize((span + 63) / 64);
    for (std::size_t d = 0; d < days.size(); ++d) {
      const auto offset = static_cast<std::size_t>(static_cast<std::int64_t>(days[d]) - first_);
      bits_[offset / 64] |= std::uint64_t{1} << (offset % 64);
      if (d >= scope.countries.size() || scope.countries[d].empty()) { continue; }
      if (countries_of_.empty()) { countries_of_.assign(span, -1); }
      std::vector<std::uint64_t> mask;
      for (const std::uint16_t country : scope.countries[d]) {
        if (country / 64U >= mask.size()) { mask.resize(country / 64U + 1); }
        mask[country / 64U] |= std::uint64_t{1} << (country % 64U);
      }
      countries_of_[offset] = static_cast<std::int32_t>(masks_.size());
      masks_.push_back(std::move(mask));
    }
  }
  [[nodiscard]] bool has(day_t day) const noexcept
  {
    const std::int64_t offset = static_cast<std::int64_t>(day) - first_;
    if (offset < 0 || offset / 64 >= static_cast<std::int64_t>(bits_.size())) { return false; }
    return ((bits_[static_cast<std::size_t>(offset / 64)] >> (offset % 64)) & 1U) != 0;
  }
  /// @return whether a line of @p day (a day `has(day)` holds) and @p country (a code; -1: not
  /// known) may be wanted
  [[nodiscard]] bool has(day_t day, int country) const noexcept
  {
    if (countries_of_.empty() || country < 0) { return true; }
    const std::int32_t mask =
        countries_of_[static_cast<std::size_t>(static_cast<std::int64_t>(day) - first_)];
    if (mask < 0) { return true; }
    const std::vector<std::uint64_t>& bits = masks_[static_cast<std::size_t>(mask)];
    const auto word                        = static_cast<std::size_t>(country) / 64;
    return word < bits.size() && ((bits[word] >> (static_cast<unsigned>(country) % 64U)) & 1U) != 0;
  }

 private:
  day_t first_ = 0;
  std::vector<std::uint64_t> bits_;
  std::vector<std::int32_t> countries_of_;  ///< per day from the first: its mask, or -1 (every country)
  std::vector<std::vector<std::uint64_t>> masks_;
};

/// Appends @p bytes to @p out (vector::insert's generic range path is several times slower for
/// the short ids appended once per line).
void append_bytes(std::vector<char>& out, std::string_view bytes)
{
  const std::size_t at = out.size();
  out.resize(at + bytes.size());
  if (!bytes.empty()) { std::memcpy(out.data() + at, bytes.data(), bytes.size()); }
}

/// A line that passed every check that depends on the line alone.
struct checked_line {
  day_t date            = 0;
  std::uint16_t country = 0;
  std::int32_t chip     = -1;  ///< code in the builder's initial chip table; -1: an ad-hoc chip
  std::uint8_t pathway  = 0;
  std::int64_t quantity = 0;
  std::int64_t tpp      = 0;
};

/// Whether @p text is all ASCII (then every field of it is valid UTF-8), eight bytes at a time.
bool is_ascii(std::string_view text) noexcept
{
  std::uint64_t high = 0;
  std::size_t i      = 0;
  for (; i + 8 <= text.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, text.data() + i, 8);
    high |= word;
  }
  for (; i < text.size(); ++i) { high |= static_cast<unsigned char>(text[i]); }
  return (high & 0x8080808080808080ULL) == 0;
}

/// Appends a line to @p out; the chip code is the log's (ad-hoc chips resolved).
void push_line(shipment_columns& out, const checked_line& line, std::int32_t chip, std::int32_t entity,
               std::int32_t order, std::int32_t exporter)
{
  out.date.push_back(line.date);
  out.entity.push_back(entity);
  out.country.push_back(line.country);
  out.chip.push_back(static_cast<std::uint16_t>(chip));
  out.pathway.push_back(line.pathway);
  out.quantity.push_back(line.quantity);
  out.tpp.push_back(line.tpp);
  out.order.push_back(order);
  out.exporter.push_back(exporter);
}

/// Case-insensitive lookups of countries, initial chips and pathways that allocate nothing.
class reference_lookup {
 public:
  reference_lookup(const country_table& countries, const chip_table& chips)
      : countries_(&countries), chip_spellings_(chips)
  {
    two_letter_.fill(-1);
    for (const auto& [iso, code] : countries.code_of) {
      if (iso.size() == 2 && iso[0] >= 'A' && iso[0] <= 'Z' && iso[1] >= 'A' && iso[1] <= 'Z') {
        two_letter_[static_cast<std::size_t>((iso[0] - 'A') * 26 + (iso[1] - 'A'))] = code;
      } else {
        all_two_letter_ = false;
      }
    }
    for (const auto& [key, code] : chips.code_of) {
      chip_keys_.encode(key);
      chip_codes_.push_back(code);
    }
    for (const capledger::chip& row : chips.rows) { chip_prices_.push_back({row.known, row.tpp}); }
  }

  /// @return the country code of @p iso2 (any case), or -1
  [[nodiscard]] int country(std::string_view iso2) const
  {
    if (!all_two_letter_) { return countries_->find(iso2); }
    if (iso2.size() != 2) { return -1; }
    const int a = (iso2[0] | 0x20) - 'a';  // ASCII letters to lower case; anything else falls out of range
    const int b = (iso2[1] | 0x20) - 'a';
    if (a < 0 || a >= 26 || b < 0 || b >= 26 || !is_letter(iso2[0]) || !is_letter(iso2[1])) { return -1; }
    return two_letter_[static_cast<std::size_t>(a * 26 + b)];
  }
  /// @return the code of @p key (any case) in the initial chip table, or -1
  [[nodiscard]] int chip(std::string_view key) const
  {
    char buffer[64];
    const auto upper         = upper_in(key, buffer);
    const std::int32_t index = upper ? chip_keys_.find(*upper) : chip_keys_.find(detail::to_upper(key));
    return index < 0 ? -1 : chip_codes_[static_cast<std::size_t>(index)];
  }
  /// @return whether initial chip @p code has a TPP per unit in the table, and that TPP. Kept
  /// here because the log's own chip table grows (ad-hoc chips) while chunks are being parsed.
  [[nodiscard]] bool chip_known(int code) const { return chip_prices_[static_cast<std::size_t>(code)].known; }
  [[nodiscard]] std::int64_t chip_tpp(int code) const
  {
    return chip_prices_[static_cast<std::size_t>(code)].tpp;
  }
  /// @return `chip_spelled_alike` of @p key among the initial chips
  [[nodiscard]] std::string chip_spelled_alike(std::string_view key) const
  {
    return chip_spellings_.alike(key);
  }
  /// @return `country_spelled_alike` of @p value among the countries
  [[nodiscard]] std::string country_spelled_alike(std::string_view value) const
  {
    return capledger::country_spelled_alike(*countries_, value);
  }
  /// @return the pathway of @p name (any case), or -1
  [[nodiscard]] static int pathway_of(std::string_view name)
  {
    char buffer[8];
    const auto upper = upper_in(name, buffer);
    if (!upper) { return -1; }
    for (int p = 0; p < pathway_count; ++p) {
      if (*upper == pathway_name(static_cast<pathway>(p))) { return p; }
    }
    return -1;
  }

 private:
  const country_table* countries_;
  std::array<int, 26 * 26> two_letter_{};
  bool all_two_letter_ = true;
  detail::string_index chip_keys_;  ///< upper-case keys
  std::vector<int> chip_codes_;
  struct chip_price {
    bool known;
    std::int64_t tpp;
  };
  std::vector<chip_price> chip_prices_;  ///< by initial chip code
  chip_spellings chip_spellings_;        ///< of the initial chips (the log's own table grows)

  static bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
};

/// Accepted shipment ids in 10 bytes each. A slot holds 24 bits of the id's hash beside a 40-bit
/// payload that says where the id can be read again (a line index, or a byte offset in the
/// inputs; the builder gives it meaning), and 16 more hash bits, read only when the first 24
/// match. Slots are packed 10 bytes apart, so a probe touches one cache line (two for one slot in
/// eight): the 16 bits in an array of their own cost a second miss per new id, the merge
/// thread's largest stall. One table of 4,096 equal regions: the low 12 hash bits pick the
/// region, the top bits of the stored 24 the home slot in it, and probes wrap within the region,
/// so a slot's position and bits say where it goes in a table twice as large (growing never
/// reads an id). Ids are compared (read again) only when all 52 known hash bits match: for a
/// few billion ids, a handful of times.
class id_set {
 public:
  id_set() : counts_(regions, 0) {}
  id_set(const id_set&)            = delete;
  id_set& operator=(const id_set&) = delete;
  id_set& operator=(id_set&&)      = delete;  // `release`: the population thread goes first
  ~id_set()                        = default;

  /// Lets go of every id (waiting for the population of the table's pages first).
  void release()
  {
    populating_.reset();
    slots_.reset();
    bits_ = 0;
    counts_.assign(regions, 0);
    count_ = 0;
  }

  /// @param same_id says whether the id stored under a payload is the one looked for
  /// @return the payload of the id, or -1 when absent
  template <typename SameId>
  [[nodiscard]] std::int64_t find(std::uint64_t hash, SameId same_id) const
  {
    if (!slots_) { return -1; }
    const std::uint64_t tag   = hash >> payload_bits;
    const std::size_t base    = region_of(hash) << bits_;
    const std::size_t in_mask = (std::size_t{1} << bits_) - 1;
    for (std::size_t s = home(tag);; s = (s + 1) & in_mask) {
      const std::uint64_t slot = slots_[base + s].slot;
      if (slot == 0) { return -1; }
      if ((slot >> payload_bits) == tag && slots_[base + s].extra == extra_of(hash) &&
          same_id(payload_of(slot))) {
        return payload_of(slot);
      }
    }
  }
  /// Adds an id not in the set yet. @throw config_error past 2^40 - 1 payloads (a terabyte of input)
  void insert(std::uint64_t payload, std::uint64_t hash)
  {
    if (payload >= payload_mask) { throw config_error("the inputs are larger than 2^40 bytes"); }
    const std::size_t region = region_of(hash);
    if (!slots_ || 4 * (std::size_t{counts_[region]} + 1) > (std::size_t{3} << bits_)) { grow(bits_ + 1); }
    place(region, ((hash >> payload_bits) << payload_bits) | (payload + 1), extra_of(hash));
    ++counts_[region];
    ++count_;
  }
  /// Starts loading the slot where a probe for @p hash begins (the table is far larger than the
  /// caches; the merge knows its hashes ahead and hides the miss).
  [[gnu::always_inline]] void prefetch(std::uint64_t hash) const noexcept
  {
    if (!slots_) { return; }
    const std::size_t at = (region_of(hash) << bits_) + home(hash >> payload_bits);
    const char* bytes    = reinterpret_cast<const char*>(&slots_[at]);
    __builtin_prefetch(bytes, 1);                            // written when the id is new
    __builtin_prefetch(bytes + sizeof(packed_slot) - 1, 1);  // the next line, when the slot straddles one
  }
  /// Makes room for @p arrivals[r] more ids in each region r, so that `insert_in_region` never
  /// grows the table: threads that own disjoint regions can then find and insert at once.
  void make_room(const std::vector<std::uint32_t>& arrivals)
  {
    int bits = std::max(bits_, 2);
    for (std::size_t region = 0; region < regions; ++region) {
      while (4 * (std::size_t{counts_[region]} + arrivals[region]) > (std::size_t{3} << bits)) { ++bits; }
    }
    if (bits != bits_ || !slots_) { grow(bits); }
  }
  /// `insert` for a table `make_room` prepared: touches only the id's region (and its count);
  /// `add_count` adds the ids inserted so to the total.
  void insert_in_region(std::uint64_t payload, std::uint64_t hash)
  {
    if (payload >= payload_mask) { throw config_error("the inputs are larger than 2^40 bytes"); }
    const std::size_t region = region_of(hash);
    place(region, ((hash >> payload_bits) << payload_bits) | (payload + 1), extra_of(hash));
    ++counts_[region];
  }
  void add_count(std::size_t inserted) { count_ += inserted; }
  static constexpr std::size_t regions = 4096;  ///< hash bits 0-11
  static std::size_t region_of(std::uint64_t hash) { return hash & (regions - 1); }

  /// Makes room for about @p more ids (fewer rehashes while a large file is read).
  void reserve(std::size_t more)
  {
    // Regions fill unevenly: size them for the mean plus an eighth.
    const std::size_t per_region = (count_ + more) / regions * 9 / 8 + 4;
    int bits                     = std::max(bits_, 2);
    while (4 * per_region > (std::size_t{3} << bits)) { ++bits; }
    if (bits != bits_ || !slots_) { grow(bits); }
  }

 private:
  static constexpr int payload_bits           = 40;
  static constexpr std::uint64_t payload_mask = (std::uint64_t{1} << payload_bits) - 1;
  static constexpr int tag_bits               = 64 - payload_bits;
  /// calloc: a large table comes as untouched zero pages, faulted in (as huge pages) when used.
#pragma pack(push, 1)
  struct packed_slot {
    std::uint64_t slot;   ///< tag and payload + 1; 0: empty
    std::uint16_t extra;  ///< hash bits 12-27
  };
#pragma pack(pop)
  static_assert(sizeof(packed_slot) == 10, "ten bytes an id");
  std::unique_ptr<packed_slot[], void (*)(void*)> slots_{nullptr, std::free};
  int bits_ = 0;  ///< log2 of a region's slots, at most tag_bits
  std::vector<std::uint32_t> counts_;
  std::size_t count_ = 0;
  /// Faults in a fresh table's pages on another thread while the merge fills it (the merge
  /// thread took those faults itself: 3.5% of a 2-core report's samples, zeroing huge pages).
  /// Last: destroyed, so joined, before the table.
  std::unique_ptr<detail::pages_populated_behind> populating_;

  static std::uint16_t extra_of(std::uint64_t hash) { return static_cast<std::uint16_t>(hash >> 12); }
  [[nodiscard]] std::size_t home(std::uint64_t tag) const { return tag >> (tag_bits - bits_); }
  static std::int64_t payload_of(std::uint64_t slot) { return static_cast<std::int64_t>((slot & payload_mask) - 1); }
  void place(std::size_t region, std::uint64_t slot, std::uint16_t extra)
  {
    const std::size_t base    = region << bits_;
    const std::size_t in_mask = (std::size_t{1} << bits_) - 1;
    std::size_t s             = home(slot >> payload_bits);
    while (slots_[base + s].slot != 0) { s = (s + 1) & in_mask; }
    slots_[base + s] = {slot, extra};
  }
  template <typename T>
  static std::unique_ptr<T[], void (*)(void*)> zeroed(std::size_t count)
  {
    auto* memory = static_cast<T*>(std::calloc(count, sizeof(T)));
    if (memory == nullptr) { throw std::bad_alloc(); }
    detail::advise_huge_pages(memory, count * sizeof(T));
    return {memory, std::free};
  }
  void grow(int bits)
  {
    bits = std::max(bits, 2);
    if (bits > tag_bits) { throw config_error("more than 2^35 distinct shipment ids"); }
    populating_.reset();  // before the table it populates goes
    auto old_slots        = std::move(slots_);
    const int before_bits = bits_;
    slots_                = zeroed<packed_slot>(regions << bits);
    bits_                 = bits;
    if (!old_slots) {
      // Sized ahead from the inputs' size: worth a thread from a few huge pages on.
      const std::size_t bytes = (regions << bits) * sizeof(packed_slot);
      if (bytes >= (std::size_t{16} << 20)) {
        populating_ = std::make_unique<detail::pages_populated_behind>(slots_.get(), bytes);
      }
      return;
    }
    for (std::size_t region = 0; region < regions; ++region) {
      for (std::size_t s = region << before_bits; s < (region + 1) << before_bits; ++s) {
        if (old_slots[s].slot != 0) { place(region, old_slots[s].slot, old_slots[s].extra); }
      }
    }
  }
};

/// A rejected line found in phase 1, placed before the chunk's candidate line `before`.
struct pending_reject {
  std::size_t before;
  rejected_line line;  ///< `file` empty, line numbers counted from the chunk's first line
};

/// What phase 1 makes of one chunk: the lines that passed `check_line` (candidates), encoded
/// with the chunk's own dictionaries, and the lines it rejected.
struct parsed_chunk {
  std::size_t begin     = 0;  ///< first byte (a line start)
  std::size_t limit     = 0;  ///< records starting before it are this chunk's
  std::size_t end       = 0;  ///< where its reader stopped: the next chunk's begin if the seam is right
  std::int64_t end_line = 1;  ///< the line at `end`, counted from 1 at `begin`
  std::int64_t records  = 0;  ///< lines read, good and bad
  std::vector<checked_line> lines;
  /// Codes in the log's dictionaries (>= 0) or `local_code` of a value new in this chunk; order
  /// -1 for non-LPP lines.
  std::vector<std::int32_t> entity, order, exporter;
  std::vector<std::int32_t> adhoc_chip;  ///< local code for ad-hoc chips, else -1
  std::vector<std::int64_t> line;        ///< record line, counted from 1 at `begin`
  std::vector<std::size_t> start;        ///< record start, to re-read a late reject
  std::vector<std::uint64_t> id_hash;
  std::string id_bytes;  ///< candidate i's id: [id_end[i-1], id_end[i])
  std::vector<std::size_t> id_end;
  detail::string_index entities, orders, exporters;  ///< values not in the log's dictionaries yet
  detail::string_index adhoc_chips;                  ///< upper-case keys
  std::vector<pending_reject> rejects;
  /// Only with a day filter: candidate i's index among all the lines that would be candidates,
  /// those the filter passed over included.
  std::vector<std::uint32_t> ordinal;
  /// Candidate @p i's shipment id.
  [[nodiscard]] std::string_view id(std::size_t i) const
  {
    const std::size_t begin = i == 0 ? 0 : id_end[i - 1];
    return {id_bytes.data() + begin, id_end[i] - begin};
  }
  /// Set before the merge: the chunk lies inside a record of the one before (a quoted line break
  /// ran past the seam), so it has no lines of its own.
  bool inside_previous = false;
  /// From the window's id pass (`find_repeated_ids`): candidate i's id was first seen at this
  /// payload, or -1 when candidate i is its first occurrence (and is in the id set now).
  std::vector<std::int64_t> earlier_id;

  /// Empties the chunk for bytes [from, to), keeping every buffer: a window's chunks are reused
  /// for the next window, so their memory is allocated (and zeroed by the kernel) once.
  void reset(std::size_t from, std::size_t to)
  {
    begin    = from;
    limit    = to;
    end      = 0;
    end_line = 1;
    records  = 0;
    for (auto* column : {&entity, &order, &exporter, &adhoc_chip}) { column->clear(); }
    lines.clear();
    line.clear();
    start.clear();
    id_hash.clear();
    id_bytes.clear();
    id_end.clear();
    for (auto* dictionary : {&entities, &orders, &exporters, &adhoc_chips}) { dictionary->clear(); }
    rejects.clear();
    ordinal.clear();
    inside_previous = false;
    earlier_id.clear();
  }
};

/// The code phase 1 gives to a value that is new in its chunk's dictionary @p local_index: below
/// -1, so that -1 stays "no order".
constexpr std::int32_t local_code(std::int32_t local_index)
{
  return -2 - local_index;
}

/// One of the log's dictionaries as phase 1 sees it: a read-only index of the values the log
/// had when the window started (those get their final code at once, so the merge has nothing
/// to look up for them), and the chunk's own index of the values that were new.
struct dictionary_snapshot {
  detail::string_index known;  ///< the dictionary's codes, caught up before each window

  void catch_up(const dictionary& log_dictionary)
  {
    for (std::int32_t code = known.size(); code < log_dictionary.size(); ++code) {
      known.encode(log_dictionary.text(code));
    }
  }
  [[nodiscard]] std::int32_t encode(std::string_view text, detail::string_index& chunk_new) const
  {
    return encode(text, detail::hash_bytes(text), chunk_new);
  }
  [[nodiscard]] std::int32_t encode(std::string_view text, std::uint64_t hash,
                                    detail::string_index& chunk_new) const
  {
    const std::int32_t code = known.find(text, hash);
    return code >= 0 ? code : local_code(chunk_new.encode(text, hash));
  }
};

/// The log's dictionaries as one window's parse sees them. Orders have none: an LPP order's
/// lines come close together, so a snapshot would hold (twice, with two windows) a copy of a
/// dictionary that grows with the log for lookups that nearly never hit; each chunk encodes its
/// orders itself.
struct dictionary_snapshots {
  dictionary_snapshot entities, orders, exporters;

  /// Adds the values the log gained since the last call; never while the window is parsed.
  void catch_up(const shipment_log& log)
  {
    entities.catch_up(log.entities);
    exporters.catch_up(log.exporters);
  }
};

/// What the parsing threads read on every lookup, on cache lines of its own: beside the merge
/// thread's counters (in `shipment_log_builder::state`) it cost 7% more CPU time (false sharing).
struct alignas(64) window_dictionaries {
  dictionary_snapshots of[2];
};

/// Threads that parse chunks, started once for one file's ingest (or one replay); they sleep
/// while nothing is posted (nothing spins while the merge runs alone). Destroying the pool runs
/// what is posted.
class parse_pool {
 public:
  /// @param name what the threads are called (`detail::name_this_thread`)
  parse_pool(std::size_t threads, const char* name)
  {
    try {
      start(threads, name);
    } catch (const std::system_error& e) {
      // A thread the system refuses (`ulimit -u`, `-v`): the started ones are stopped and joined,
      // not destroyed running (std::terminate).
      stop();
      throw config_error(std::string("cannot start a thread (") + e.what() +
                         "): the limits on processes or memory (ulimit -u, -v) are too low for " +
                         std::to_string(threads) + " threads; lower OMP_NUM_THREADS or raise them");
    } catch (...) {
      stop();
      throw;
    }
  }
  parse_pool(const parse_pool&)            = delete;
  parse_pool& operator=(const parse_pool&) = delete;
  ~parse_pool() { stop(); }
  void post(std::function<void()> task)
  {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      tasks_.push_back(std::move(task));
    }
    ready_.notify_one();
  }

 private:
  void start(std::size_t threads, const char* name)
  {
    for (std::size_t t = 0; t < threads; ++t) {
      threads_.emplace_back([this, name] {
        detail::name_this_thread(name);
        while (true) {
          std::function<void()> task;
          {
            std::unique_lock<std::mutex> lock(mutex_);
            ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
            if (tasks_.empty()) { return; }  // stopping, and nothing left to run
            task = std::move(tasks_.front());
            tasks_.pop_front();
          }
          task();  // tasks catch their own exceptions
        }
      });
    }
  }
  void stop()
  {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& thread : threads_) { thread.join(); }
  }
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

/// Tasks posted to a `parse_pool` that one thread waits for together; the first exception a
/// task throws is rethrown by `finish`. Destroying the group waits for its tasks.
class task_group {
 public:
  task_group()                             = default;
  task_group(const task_group&)            = delete;
  task_group& operator=(const task_group&) = delete;
  ~task_group() { wait(); }

  template <typename Task>
  void post(parse_pool& pool, Task task)
  {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      ++pending_;
    }
    pool.post([this, task] {
      std::exception_ptr error;
      try {
        task();
      } catch (...) {
        error = std::current_exception();
      }
      const std::lock_guard<std::mutex> lock(mutex_);
      if (error && !error_) { error_ = error; }
      if (--pending_ == 0) { done_.notify_all(); }
    });
  }
  /// Waits for every task posted. @throw the first exception a task threw
  void finish()
  {
    wait();
    if (auto error = std::exchange(error_, nullptr)) { std::rethrow_exception(error); }
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  std::size_t pending_ = 0;
  std::exception_ptr error_;

  void wait()
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
  }
};

/// A window of chunks parsed by a `parse_pool`.
struct window {
  std::vector<parsed_chunk> chunks;
  std::size_t used            = 0;
  dictionary_snapshots* known = nullptr;  ///< the builder's, kept from file to file
  detail::lines_read_ahead ahead;         ///< the window's lines read ahead (`ingest_options::read_ahead`)

  /// Posts the `used` chunks to @p pool, each parsed with @p parse(chunk, *known).
  template <typename Parse>
  void start(parse_pool& pool, Parse parse)
  {
    for (std::size_t k = 0; k < used; ++k) {
      tasks_.post(pool, [this, parse, k] { parse(chunks[k], *known); });
    }
  }
  /// Waits for the parse. @throw what a parsing task threw
  void finish() { tasks_.finish(); }

 private:
  task_group tasks_;  ///< last: destroyed (waiting for the tasks) before what they use
};

/// Where the line after the one holding byte @p at of @p text starts (the text's end at most).
std::size_t line_start_after(std::string_view text, std::size_t at) noexcept
{
  if (at >= text.size()) { return text.size(); }
  const void* newline = std::memchr(text.data() + at, '\n', text.size() - at);
  return newline == nullptr ? text.size()
                            : static_cast<std::size_t>(static_cast<const char*>(newline) - text.data()) + 1;
}

/// Reads lines ahead (`ingest_options::read_ahead`) on a thread of its own, window by window, up
/// to `depth` windows in front of the parse: the GPU's work and its copies overlap the parse and
/// the merge instead of holding up the thread that cuts the windows and merges them. It cuts the
/// windows with the ingest's own `window_end`.
class read_ahead_thread {
 public:
  read_ahead_thread(std::string_view text, std::size_t first,
                    std::function<std::size_t(std::size_t)> window_end,
                    const decltype(ingest_options::read_ahead)& read, const device_csv::line_layout& layout)
  {
    thread_ = std::thread([this, text, first, window_end = std::move(window_end), &read, layout] {
      detail::name_this_thread("cl-read-ahead");
      for (std::size_t from = first; from < text.size();) {
        item next;
        {
          std::unique_lock<std::mutex> lock(mutex_);
          changed_.wait(lock, [this] { return stopping_ || ready_.size() < depth; });
          if (stopping_) { return; }
          if (!spare_.empty()) {
            next.lines = std::move(spare_.back());
            spare_.pop_back();
          }
        }
        const std::size_t to = window_end(from);
        next.to              = to;
        try {
          read(text, from, to, layout, next.lines);
        } catch (...) {
          next.error = std::current_exception();
        }
        const bool failed = next.error != nullptr;
        {
          const std::lock_guard<std::mutex> lock(mutex_);
          ready_.push_back(std::move(next));
        }
        changed_.notify_all();
        if (failed) { return; }
        from = to;
      }
    });
  }
  read_ahead_thread(const read_ahead_thread&)            = delete;
  read_ahead_thread& operator=(const read_ahead_thread&) = delete;
  ~read_ahead_thread()
  {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }
  /// Swaps the lines read ahead of the window [@p from, @p to) into @p out (its old contents are
  /// reused). @throw what reading them threw
  void take(std::size_t from, std::size_t to, detail::lines_read_ahead& out)
  {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return !ready_.empty(); });
    item next = std::move(ready_.front());
    ready_.pop_front();
    if (next.error) { std::rethrow_exception(next.error); }
    if (next.lines.from != from || next.to != to) {
      throw std::logic_error("lines read ahead for another window than the one cut");
    }
    std::swap(out, next.lines);
    spare_.push_back(std::move(next.lines));
    lock.unlock();
    changed_.notify_all();
  }

 private:
  static constexpr std::size_t depth = 3;
  struct item {
    std::size_t to = 0;
    detail::lines_read_ahead lines;
    std::exception_ptr error;
  };
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<item> ready_;
  std::vector<detail::lines_read_ahead> spare_;
  bool stopping_ = false;
  std::thread thread_;  ///< last: started once the rest exists
};

/// Field indices of the record columns in a file (-1: absent optional column).
using column_map = std::array<int, record_columns>;

}  // namespace

struct shipment_log_builder::state {
  const country_table& countries;
  ingest_options options;
  shipment_log log;
  reference_lookup lookup;
  id_set ids;
  /// The two windows' copies of the dictionaries, kept from file to file: catching up copies
  /// only what the log gained since the last window (fresh copies per file copied every entity
  /// again for each file of a log given as many files).
  std::unique_ptr<window_dictionaries> snapshots = std::make_unique<window_dictionaries>();
  /// Payloads the id pass put in `ids` whose lines were then rejected (TPP_OVERFLOW), each with
  /// the payload of the first later line with that id that was accepted (-1: none yet): the
  /// id's true first occurrence. Empty unless a log's 64-bit totals overflow.
  std::unordered_map<std::int64_t, std::int64_t> withdrawn_ids;
  /// Columns (not streaming) with the id pass: the pass runs before the merge numbers the
  /// accepted lines, so the id set's payloads are candidate ordinals (every line that passed
  /// phase 1, in input order), and this maps each to its accepted line, or -1. Set once, before
  /// the first id is stored; from then on every payload is an ordinal.
  bool ordinal_payloads = false;
  std::vector<std::int64_t> line_of_candidate;
  /// Columns mode: the ids of `withdrawn_ids` (their lines were never stored).
  std::unordered_map<std::int64_t, std::string> withdrawn_id_text;
  std::int64_t accepted = 0;  ///< lines accepted so far: the next line's input position
  // Sums of |tpp| and |quantity| over accepted lines. Keeping both within int64 guarantees that
  // every total and running total, in any grouping and order, is exact on every backend.
  std::uint64_t abs_tpp_sum      = 0;
  std::uint64_t abs_quantity_sum = 0;

  // Streaming (options.on_batch set): the inputs stay readable, each merged chunk is recorded so
  // that `replay` can read it again, and accepted lines go to `batch` instead of the log.
  struct streamed_file {
    std::string name;
    std::string_view text;
    std::uint64_t base = 0;  ///< offset of the file's first byte in all inputs, one after another
    column_map columns{};
    int field_count             = 0;
    detail::input_bytes* pages = nullptr;  ///< the file's mapping (null for texts given in memory)
    bool header_ends_unnamed    = false;    ///< `csv_header::ends_unnamed`
  };
  /// `section_lines` candidates in a row of a merged chunk: what `replay` reads again, and where a
  /// repeated id's first occurrence gets its line number (line breaks counted from `start`).
  struct section {
    std::size_t start           = 0;  ///< the first candidate's record start (a line start)
    std::int64_t line           = 0;  ///< its line in the file
    std::uint32_t candidate     = 0;  ///< its index among the chunk's candidates
    std::int64_t first_position = 0;  ///< input position of the section's first accepted line
    day_t first_day = std::numeric_limits<day_t>::max(), last_day = std::numeric_limits<day_t>::min();
    /// A line of it was rejected by phase 1, so its records are not all candidates: a replay
    /// checks all of them again instead of skipping lines by date.
    bool had_rejects = false;
  };
  static constexpr std::size_t section_lines = 512;
  /// A merged chunk with candidate lines.
  struct chunk_record {
    std::size_t file = 0;
    std::size_t begin = 0, limit = 0;
    std::vector<std::uint32_t> skipped;  ///< candidates rejected by the merge (repeated ids, totals)
    std::vector<section> sections;
  };
  std::vector<streamed_file> streamed;
  std::vector<std::unique_ptr<detail::input_bytes>> mapped;  ///< files kept mapped while streaming
  std::vector<chunk_record> chunk_records;
  line_batch batch;

  [[nodiscard]] bool streaming() const noexcept { return static_cast<bool>(options.on_batch); }

  state(const country_table& c, chip_table chips, ingest_options o)
      : countries(c), options(std::move(o)), lookup(c, chips)
  {
    log.chips        = std::move(chips);
    abs_tpp_sum      = options.earlier_abs_tpp_sum;
    abs_quantity_sum = options.earlier_abs_quantity_sum;
  }

  void reject(const std::string& file, const line_defect& defect, std::int64_t line, std::int64_t column,
              std::string_view raw)
  {
    if (!options.keep_rejects) { throw parse_error(file, line, column, defect.reason, defect.detail); }
    keep_reject({file, line, column, defect.reason, defect.detail, std::string(raw)});
  }
  void keep_reject(rejected_line bad)
  {
    if (options.on_id) { return; }  // a first pass that only collects ids: the second one keeps the rejects
    if (options.max_rejects >= 0 && log.lines_rejected + 1 > options.max_rejects) {
      const too_many_rejects stop(options.max_rejects, bad);
      record_reject(std::move(bad));  // the rejects file holds the line that stopped the run
      throw stop;
    }
    record_reject(std::move(bad));
  }
  /// Counts a rejected line and hands it to `on_reject`, or keeps it in the log.
  void record_reject(rejected_line bad)
  {
    ++log.lines_rejected;
    if (options.on_reject) {
      options.on_reject(bad);
    } else {
      log.rejects.push_back(std::move(bad));
    }
  }

  /// Set by `inputs_done`: the id set that finds repeats across files is gone.
  bool inputs_closed = false;
  void expect_open() const
  {
    CAPLEDGER_EXPECTS(!inputs_closed,
                      "a shipment_log_builder takes no input after inputs_done() or finish()");
  }

  /// Ingests one file: its fingerprint, its lines, its place in `log.file_end`.
  void add(const std::string& name, std::string_view text, detail::input_bytes* pages)
  {
    expect_open();
    input_file info;
    info.path  = name;
    info.bytes = static_cast<std::int64_t>(text.size());
    log.files.push_back(info);
    if (streaming()) {
      const std::uint64_t base = streamed.empty() ? 0 : streamed.back().base + streamed.back().text.size();
      streamed.push_back({name, text, base, {}, 0, pages});
    }
    log.files.back().sha256 = ingest(name, text, pages);
    log.file_end.push_back(accepted);
  }
  /// @param pages the file's mapping, whose parsed pages are let go as the ingest moves on (or null)
  /// @return the SHA-256 of @p text, hashed window by window as the merge passes over it
  std::string ingest(const std::string& name, std::string_view text, detail::input_bytes* pages);
  /// Reserves the columns for @p more lines whose ids are about @p id_bytes_per_line long, and
  /// backs the pages of the next @p populate_lines of them with memory.
  void reserve_lines(std::size_t more, std::size_t populate_lines, std::size_t id_bytes_per_line);
  /// @param dates the calling reader's memo of its last date
  /// @param ascii the whole record is ASCII (no UTF-8 check needed)
  [[nodiscard]] std::optional<line_defect> check_line(const detail::csv_field* const* record,
                                                      date_memo& dates, checked_line& out, bool ascii) const;
  /// Phase 1 for one chunk: reads, checks and encodes its lines (thread-safe: reads the state
  /// only). With @p only, a line it does not want is passed over once its date and country are
  /// read (replay, of sections whose lines were all candidates), and `ordinal` says where the
  /// others were. With @p ahead (not with @p only), a line read ahead as plain is taken from it.
  void parse_chunk(std::string_view text, const column_map& columns, int field_count,
                   bool header_ends_unnamed, const dictionary_snapshots& known, parsed_chunk& chunk,
                   const wanted_lines* only = nullptr, const detail::lines_read_ahead* ahead = nullptr) const;
  void merge_chunk(const std::string& name, std::string_view text, const column_map& columns,
                   std::int64_t first_line, const parsed_chunk& chunk);
  /// Sets each candidate's `earlier_id` for window @p w, in @p parts tasks (this thread runs one)
  /// that own disjoint regions of the id set and read the window in input order: each id's first
  /// occurrence is the one in the set, exactly as the serial merge would have it.
  void find_repeated_ids(parse_pool& pool, std::size_t parts, window& w);
  /// `admit`'s @p looked_up when the merge has no `earlier_id` for the line.
  static constexpr std::int64_t not_looked_up = -2;
  /// Admits a candidate line (one that passed `check_line`) or says why not, and with ordinal
  /// payloads maps its ordinal to its line: every candidate passes here exactly once.
  /// @param payload where the id can be read again: the line index, the candidate ordinal
  ///                (`ordinal_payloads`), or (streaming) the record's offset in all inputs
  /// @param looked_up the line's `earlier_id`, or `not_looked_up` (the id set is searched here)
  [[nodiscard]] std::optional<line_defect> admit(std::string_view id, std::uint64_t id_hash,
                                                 std::uint64_t payload, std::int64_t quantity,
                                                 std::int64_t tpp, std::int64_t looked_up = not_looked_up)
  {
    const std::int64_t line_index = accepted;  // the line's index if it is accepted
    auto bad                      = check_id_and_totals(id, id_hash, payload, quantity, tpp, looked_up);
    if (ordinal_payloads) { line_of_candidate.push_back(bad ? -1 : line_index); }
    return bad;
  }
  /// `admit`'s checks: repeated ids (the id set updated) and the log's 64-bit totals.
  [[nodiscard]] std::optional<line_defect> check_id_and_totals(std::string_view id, std::uint64_t id_hash,
                                                               std::uint64_t payload, std::int64_t quantity,
                                                               std::int64_t tpp, std::int64_t looked_up);
  /// `file:line` of the id stored under @p payload.
  [[nodiscard]] std::string source_of_id(std::int64_t payload) const;
  /// Whether the id stored under @p payload (of a line merged already) is @p id.
  [[nodiscard]] bool stored_id_is(std::int64_t payload, std::string_view id) const;
  /// The payload under which the next candidate line's id would be stored (columns mode).
  [[nodiscard]] std::uint64_t next_column_payload() const
  {
    return static_cast<std::uint64_t>(ordinal_payloads ? static_cast<std::int64_t>(line_of_candidate.size())
                                                       : accepted);
  }
  /// The shipment id of the record at @p offset of all inputs (streaming).
  [[nodiscard]] std::string id_at(std::uint64_t offset) const;
  void append(const checked_line& line, std::int32_t chip, std::int32_t entity, std::int32_t order,
              std::int32_t exporter, std::int64_t source_line, std::string_view id);
  /// Appends to `batch` (streaming) what `append` adds to the log's columns.
  void clear_batch(std::int64_t first_position);
  void append_to_batch(const checked_line& line, std::int32_t chip, std::int32_t entity, std::int32_t order,
                       std::int32_t exporter, std::string_view id);
  void replay(const replay_scope& scope, const std::function<void(const line_batch&)>& sink);
  /// Validates, admits and encodes one record whose fields are indexed by `device_csv::column`.
  void accept(const std::string& name, const detail::csv_field* fields, std::int64_t record_line,
              std::string_view raw);
};

shipment_log_builder::shipment_log_builder(const country_table& countries, chip_table chips,
                                           ingest_options options)
    : state_(std::make_unique<state>(countries, std::move(chips), options))
{
}

shipment_log_builder::~shipment_log_builder() = default;

void shipment_log_builder::add_file(const std::string& path)
{
  auto bytes = std::make_unique<detail::input_bytes>(path);
  state_->add(path, bytes->view(), bytes.get());
  if (state_->streaming()) { state_->mapped.push_back(std::move(bytes)); }  // read again later
}

void shipment_log_builder::add_text(const std::string& name, std::string_view text)
{
  state_->add(name, text, nullptr);
}

void shipment_log_builder::add_stored(const input_file& file,
                                      const std::function<bool(shipment_fields&)>& next,
                                      const std::vector<rejected_line>& rejected)
{
  state_->expect_open();
  shipment_log& log = state_->log;
  log.files.push_back(file);
  log.files.back().lines_read = 0;  // counted by accept(), then checked against the original
  shipment_fields f;
  while (next(f)) {
    detail::csv_field fields[record_columns];
    const std::string_view values[record_columns] = {f.shipment_id, f.date,        f.entity,  f.country,
                                                     f.chip,        f.quantity,    f.pathway, f.order_id,
                                                     f.exporter,    f.tpp_per_unit};
    // The ledger keeps a line's fields, not where they stood in it: no column to name (0).
    for (int c = 0; c < record_columns; ++c) { fields[c] = {values[c], f.source_line, 0}; }
    ++log.files.back().lines_read;
    ++log.lines_read;
    state_->accept(file.path, fields, f.source_line, {});
  }
  const std::int64_t accepted = log.files.back().lines_read;
  log.files.back().lines_read = file.lines_read;
  log.lines_read += file.lines_read - accepted;  // the rejected lines were read too
  // Rejected when the file was first read: not counted against --max-rejects again.
  for (const rejected_line& r : rejected) { state_->record_reject(r); }
  log.file_end.push_back(state_->accepted);
}

const std::vector<rejected_line>& shipment_log_builder::rejects() const
{
  return state_->log.rejects;
}

void shipment_log_builder::replay(const replay_scope& scope,
                                  const std::function<void(const line_batch&)>& sink)
{
  state_->replay(scope, sink);
}

std::string shipment_log_builder::shipment_id_at(std::uint64_t offset) const
{
  CAPLEDGER_EXPECTS(state_->streaming(), "ids are read again only from streamed inputs");
  return state_->id_at(offset);
}

std::int64_t shipment_log_builder::accepted() const
{
  return state_->accepted;
}

const shipment_log& shipment_log_builder::current() const
{
  return state_->log;
}

shipment_log shipment_log_builder::finish()
{
  inputs_done();
  shipment_log log          = std::move(state_->log);
  state_->log               = shipment_log{};
  state_->line_of_candidate = {};  // 8 bytes a line in columns mode with the id pass
  return log;
}

void shipment_log_builder::inputs_done()
{
  state_->inputs_closed = true;
  state_->ids.release();
  state_->withdrawn_ids.clear();
  state_->withdrawn_id_text.clear();
  state_->snapshots = std::make_unique<window_dictionaries>();
}

std::string shipment_log_builder::state::ingest(const std::string& name, std::string_view text,
                                                detail::input_bytes* pages)
{
  detail::fast_csv_reader reader(text);
  const auto first = reader.next();
  // A missing or malformed header is fatal even with --rejects: nothing in the file could be
  // interpreted.
  if (first == detail::csv_status::end) {
    throw parse_error(name, 1, 1, "MISSING_COLUMN", "the file has no header row");
  }
  if (first != detail::csv_status::record) {
    const bool unterminated = first == detail::csv_status::unterminated_quote;
    throw parse_error(name, reader.error_line(), reader.error_column(),
                      unterminated ? "UNTERMINATED_QUOTE" : "BAD_QUOTE",
                      unterminated ? "a quoted field of the header row is never closed"
                                   : "text follows a closing quote in the header row");
  }
  const detail::csv_header header(reader.fields(), name);
  detail::refuse_lf_cr_line_ends(text, reader.position(), reader.line(), name);
  const auto& names = device_csv::column_names;
  column_map columns{};
  for (int c = 0; c < record_columns; ++c) {
    columns[static_cast<std::size_t>(c)] = header.find(names[c]);
    if (columns[static_cast<std::size_t>(c)] < 0 && c <= c_quantity) {
      throw parse_error(name, reader.record_line(), 1, "MISSING_COLUMN", header.missing(names[c]));
    }
  }
  // The GPU ingest reads the lines of files whose header it can follow.
  const device_csv::line_layout layout =
      options.read_ahead ? detail::make_line_layout(header) : device_csv::line_layout{};
  const bool read_ahead = layout.field_count > 0;
  if (streaming()) {
    streamed.back().columns     = columns;
    streamed.back().field_count = header.size();
    streamed.back().header_ends_unnamed = header.ends_unnamed();
  }

  // Windows bound the memory phase 1 holds and the file pages kept mapped. Chunks of 256 KiB
  // (about 3,000 lines) keep what a worker parsed, and the batch the merge builds from it, in
  // the core's L2 cache: 4 MiB chunks cost 15-20% more CPU time (bench/RESULTS.md). Two chunks
  // per thread let a fast thread take over a slow one's second chunk. Two windows alternate: the
  // next one is parsed while this thread merges the current one. The merge is the pipeline's
  // longest stage, so it keeps a core of its own: one parsing thread fewer than cores.
  const auto threads            = static_cast<std::size_t>(std::max(1, omp_get_max_threads() - 1));
  const std::size_t chunk_bytes = options.chunk_bytes > 0 ? options.chunk_bytes : std::size_t{256} << 10;
  const std::size_t chunks_per_window = 2 * threads;
  const auto chunk_end                = [text, chunk_bytes](std::size_t from) {
    return line_start_after(text, from + chunk_bytes - 1);
  };
  const auto window_end = [text, chunk_end, chunks_per_window](std::size_t from) {
    for (std::size_t k = 0; k < chunks_per_window && from < text.size(); ++k) { from = chunk_end(from); }
    return from;
  };
  // With many cores and the ids in memory, a window's repeated ids are found by all threads at
  // once (`find_repeated_ids`) before the merge, which was the pipeline's serial stage.
  const bool many_core_pipeline = detail::many_cores();
  const bool pass_possible =
      many_core_pipeline && !options.earlier_id && !options.on_id && options.repeated_ids == nullptr;
  if (pass_possible && !streaming() && accepted == 0) { ordinal_payloads = true; }  // no id stored yet
  const bool ids_in_parallel = pass_possible && (streaming() || ordinal_payloads);
  parse_pool pool(threads, "cl-parse");
  std::size_t next_cut = reader.position();  // where the next window's first chunk begins
  std::optional<read_ahead_thread> reading_ahead;
  if (read_ahead) { reading_ahead.emplace(text, next_cut, window_end, options.read_ahead, layout); }
  const auto cut_and_start = [&](window& w) {
    w.chunks.resize(chunks_per_window);
    w.used = 0;
    for (; w.used < chunks_per_window && next_cut < text.size(); ++w.used) {
      const std::size_t to = chunk_end(next_cut);
      w.chunks[w.used].reset(next_cut, to);
      next_cut = to;
    }
    w.known->catch_up(log);
    const detail::lines_read_ahead* ahead = nullptr;
    if (reading_ahead && w.used > 0) {
      reading_ahead->take(w.chunks[0].begin, next_cut, w.ahead);
      ahead = &w.ahead;
    }
    w.start(pool, [&, ahead](parsed_chunk& chunk, const dictionary_snapshots& known) {
      parse_chunk(text, columns, header.size(), header.ends_unnamed(), known, chunk, nullptr, ahead);
    });
  };

  // The fingerprint is taken window by window: by this thread after each merge, or with many
  // cores by a thread of its own, a window behind (in the parse pool the hash would hold up the
  // next window's id pass). Each window's hash waits for the one before, so the pages let go
  // after hashing are never more than two windows back.
  detail::sha256_stream digest;
  std::size_t hashed      = 0;
  const auto hash_through = [&](std::size_t end) {
    digest.update(text.substr(hashed, end - hashed));
    hashed = end;
    if (pages != nullptr) { pages->release_before(end); }
  };
  std::optional<parse_pool> hasher;
  if (many_core_pipeline) { hasher.emplace(1, "cl-sha256"); }
  task_group hashing;  // after what its task uses: destroyed (waiting for the task) first
  input_file& info  = log.files.back();
  std::size_t pos   = reader.position();
  std::int64_t line = reader.line();
  window windows[2];  // after the pool and everything their tasks use: destroyed first, once their tasks ran
  windows[0].known = &snapshots->of[0];
  windows[1].known = &snapshots->of[1];
  cut_and_start(windows[0]);
  for (std::size_t current = 0;; current = 1 - current) {
    window& w = windows[current];
    w.finish();
    if (w.used == 0) { break; }
    if (current == 0 && pos == reader.position() && w.chunks[0].end > w.chunks[0].begin) {
      // Reserve the columns from the file's first chunk's line length: no doubling past the need.
      // With the size of every input known, the rest of them; a later file then reserves nothing more.
      const parsed_chunk& first = w.chunks[0];
      const double per_line     = static_cast<double>(first.end - first.begin) /
                              static_cast<double>(std::max<std::int64_t>(1, first.records));
      const std::uint64_t before_file = input_bytes_before(log);
      const std::uint64_t rest        = options.expected_input_bytes >= before_file + text.size()
                                            ? options.expected_input_bytes - before_file - pos
                                            : text.size() - pos;
      const auto lines_in             = [&](std::uint64_t bytes) {
        return static_cast<std::size_t>(static_cast<double>(bytes) / per_line * 1.02) + 16;
      };
      reserve_lines(lines_in(rest), lines_in(text.size() - pos),
                    first.id_bytes.size() / std::max<std::size_t>(1, first.id_end.size()) + 1);
    }
    for (std::size_t k = 0, at = pos; k < w.used; ++k) {
      parsed_chunk& chunk = w.chunks[k];
      if (chunk.begin != at) {
        // The previous chunk's last record ran past the seam (a quoted line break): this chunk
        // started inside it. Parse it again from where that record ended.
        if (at >= chunk.limit) {
          chunk.inside_previous = true;
          continue;
        }
        chunk.reset(at, chunk.limit);
        parse_chunk(text, columns, header.size(), header.ends_unnamed(), *w.known, chunk, nullptr,
                    read_ahead ? &w.ahead : nullptr);
      }
      at = chunk.end;
    }
    if (ids_in_parallel) { find_repeated_ids(pool, threads + 1, w); }
    cut_and_start(windows[1 - current]);
    for (std::size_t k = 0; k < w.used; ++k) {
      parsed_chunk& chunk = w.chunks[k];
      if (chunk.inside_previous) { continue; }
      merge_chunk(name, text, columns, line, chunk);
      info.lines_read += chunk.records;
      log.lines_read += chunk.records;
      pos = chunk.end;
      line += chunk.end_line - 1;
    }
    if (!hasher) {
      hash_through(pos);
      continue;
    }
    hashing.finish();
    hashing.post(*hasher, [&hash_through, pos] { hash_through(pos); });
  }
  hashing.finish();
  hash_through(text.size());
  return digest.hex();
}

void shipment_log_builder::state::reserve_lines(std::size_t more, std::size_t populate_lines,
                                                std::size_t id_bytes_per_line)
{
  // Reserving once avoids copies on growth; huge pages make the first touch of these hundreds
  // of megabytes a few hundred page faults instead of a hundred thousand.
  if (!options.on_id && options.repeated_ids == nullptr) { ids.reserve(more); }
  if (streaming()) { return; }  // nothing else grows with the log
  // The pages this file's lines will fill are backed now, by several threads at once: taken
  // one fault at a time by the merge thread as it appended, they cost the columns of 20 M lines
  // 2-4 s of system time on cpu-2c, and the builder 6.2-8.2 s against 4.9 s (bench/RESULTS.md).
  // Only this file's share: a wrong size hint for the other inputs costs no memory.
  // `per_line` elements a line: a column holds one, the ids a few bytes.
  // A column that must grow takes half its size again at least: growing to this file's need alone
  // copied every earlier file's lines once a file, so 2,000 files of 250 lines cost 3.9 s of CPU
  // against 1.2 s for 1,000.
  const auto reserve = [more, populate_lines](auto& column, std::size_t per_line = 1) {
    const std::size_t needed = column.size() + more * per_line;
    if (needed > column.capacity()) { column.reserve(std::max(needed, column.capacity() + column.capacity() / 2)); }
    detail::advise_huge_pages(column.data(), column.capacity() * sizeof(column[0]));
    const std::size_t backed = std::min(column.capacity() - column.size(), populate_lines * per_line);
    detail::populate_pages(column.data() + column.size(), backed * sizeof(column[0]));
  };
  shipment_columns& c = log.columns;
  reserve(c.date);
  reserve(c.entity);
  reserve(c.country);
  reserve(c.chip);
  reserve(c.pathway);
  reserve(c.quantity);
  reserve(c.tpp);
  reserve(c.order);
  reserve(c.exporter);
  reserve(log.source_line);
  reserve(log.id_end);
  if (ordinal_payloads) { reserve(line_of_candidate); }  // one entry a candidate: about a line
  reserve(log.id_bytes, id_bytes_per_line);
}

std::optional<line_defect> shipment_log_builder::state::check_line(const detail::csv_field* const* record,
                                                                   date_memo& dates, checked_line& out,
                                                                   bool ascii) const
{
  // Every field in column-of-SPEC order; the first defect is the one reported.
  const auto value = [record](int column) { return record[column]->value; };
  if (value(c_id).empty()) { return line_defect{"EMPTY_FIELD", "empty shipment_id", c_id}; }
  const auto day = dates.parse(value(c_date));
  if (!day) {
    std::string why = detail::quoted(value(c_date)) + " is not a valid YYYY-MM-DD date";
    // Columns are found by name, so a header row repeated inside the file (monthly exports joined
    // together) holds its own column names here: say that, not only that `date` is no date.
    if (detail::to_upper(detail::trim(value(c_id))) == "SHIPMENT_ID" &&
        detail::to_upper(detail::trim(value(c_date))) == "DATE") {
      why += ": the line repeats the header row (files joined together?); remove it";
    }
    return line_defect{"BAD_DATE", std::move(why) + detail::date_hint(value(c_date)), c_date};
  }
  if (value(c_entity).empty()) { return line_defect{"EMPTY_FIELD", "empty entity", c_entity}; }
  const int country = lookup.country(value(c_country));
  if (country < 0) {
    return line_defect{"UNKNOWN_COUNTRY",
                       detail::quoted(value(c_country)) + " is not in the countries table" +
                           detail::did_you_mean(lookup.country_spelled_alike(value(c_country))),
                       c_country};
  }
  std::int64_t quantity = 0;
  if (!detail::parse_int64(value(c_quantity), quantity) || quantity == 0) {
    return line_defect{"BAD_QUANTITY",
                       detail::quoted(value(c_quantity)) + " is not a non-zero integer" +
                           detail::quantity_hint(value(c_quantity)),
                       c_quantity};
  }
  std::int64_t tpp_per_unit = 0;
  if (!value(c_tpp).empty() && (!detail::parse_int64(value(c_tpp), tpp_per_unit) || tpp_per_unit <= 0)) {
    return line_defect{"BAD_TPP_PER_UNIT", detail::quoted(value(c_tpp)) + " is not a positive integer",
                       c_tpp};
  }
  if (value(c_chip).empty()) { return line_defect{"EMPTY_FIELD", "empty chip", c_chip}; }
  const int chip = lookup.chip(value(c_chip));
  if (tpp_per_unit == 0) {
    if (chip < 0 || !lookup.chip_known(chip)) {
      const std::string alike = lookup.chip_spelled_alike(value(c_chip));
      return line_defect{"UNKNOWN_CHIP",
                         detail::quoted(value(c_chip)) +
                             " is not in the chips table and the line has no tpp_per_unit" +
                             detail::did_you_mean(alike),
                         c_chip};
    }
    tpp_per_unit = lookup.chip_tpp(chip);
  }
  int pathway_code = 0;  // LICENSE when empty or absent
  if (!value(c_pathway).empty()) {
    pathway_code = reference_lookup::pathway_of(value(c_pathway));
    if (pathway_code < 0) {
      return line_defect{"UNKNOWN_PATHWAY", detail::quoted(value(c_pathway)) + " is not a pathway",
                         c_pathway};
    }
  }
  std::int64_t tpp = 0;
  if (__builtin_mul_overflow(quantity, tpp_per_unit, &tpp)) {
    return line_defect{"TPP_OVERFLOW", "quantity x tpp_per_unit exceeds 64 bits", c_quantity};
  }
  // SPEC §1.1: logs are UTF-8. The free-text values reach the outputs (summary.json and the
  // JSON report among them), so one that is not UTF-8 is bad input here, not a failure there.
  for (const int column : {c_id, c_entity, c_chip, c_order, c_exporter}) {
    if (!ascii && !detail::valid_utf8(value(column))) {
      return line_defect{"BAD_ENCODING",
                         std::string(device_csv::column_names[column]) + " is not valid UTF-8", column};
    }
  }
  out = {*day, static_cast<std::uint16_t>(country), chip, static_cast<std::uint8_t>(pathway_code), quantity,
         tpp};
  return std::nullopt;
}

void shipment_log_builder::state::parse_chunk(std::string_view text, const column_map& columns,
                                              int field_count, bool header_ends_unnamed,
                                              const dictionary_snapshots& known, parsed_chunk& chunk,
                                              const wanted_lines* only,
                                              const detail::lines_read_ahead* ahead) const
{
  detail::fast_csv_reader reader(text, chunk.begin, chunk.limit, 1);
  reader.keep_at_most(static_cast<std::size_t>(field_count) + 1);  // one past the header names the bad field
  date_memo dates;
  const auto hold = [&](const char* reason, std::string detail, std::int64_t line, std::int64_t column) {
    chunk.rejects.push_back(
        {chunk.lines.size(),
         {std::string(), line, column, reason, std::move(detail), std::string(reader.raw())}});
  };
  // Entities are looked up a few lines after their slot in the snapshot is prefetched: the
  // snapshot of tens of thousands of entities is not in this core's cache, and the lookups held
  // half of this function's time. In line order, so new entities get chunk codes in order.
  struct pending_entity {
    std::string_view text;
    std::uint64_t hash;
    std::size_t candidate;
  };
  constexpr std::size_t lookahead = 8;
  std::array<pending_entity, lookahead> pending{};
  std::size_t oldest = 0, waiting = 0;
  const auto resolve_oldest = [&] {
    const pending_entity& p   = pending[oldest];
    chunk.entity[p.candidate] = known.entities.encode(p.text, p.hash, chunk.entities);
    oldest                    = (oldest + 1) % lookahead;
    --waiting;
  };
  const auto resolve_all = [&] {
    while (waiting > 0) { resolve_oldest(); }
  };
  std::uint32_t next_ordinal = 0;  // lines with the header's field count so far
  const auto encode_entity   = [&](std::string_view value, std::uint64_t hash) {
    chunk.entity.push_back(-1);
    // An unescaped quoted value lives in the reader's buffer until its next line: look it up now.
    const auto at = reinterpret_cast<std::uintptr_t>(value.data());
    const auto in = reinterpret_cast<std::uintptr_t>(text.data());
    if (at < in || at + value.size() > in + text.size()) {
      resolve_all();
      chunk.entity.back() = known.entities.encode(value, hash, chunk.entities);
      return;
    }
    known.entities.known.prefetch(hash);
    if (waiting == lookahead) { resolve_oldest(); }
    pending[(oldest + waiting) % lookahead] = {value, hash, chunk.entity.size() - 1};
    ++waiting;
  };
  const auto date_column    = static_cast<std::size_t>(columns[c_date]);
  const auto country_column = static_cast<std::size_t>(columns[c_country]);
  // With a filter: the line's date is a day not asked for, or its country one not asked for
  // that day. A bad date or an unknown country is not: the line goes on to be checked (and
  // rejected) as without the filter.
  const auto passed_over = [&](std::string_view date, std::string_view country) {
    if (only == nullptr) { return false; }
    const auto day = dates.parse(date);
    return day && (!only->has(*day) || !only->has(*day, lookup.country(country)));
  };
  // An accepted line's values. Each text comes with its hash, or 0 where it is to be hashed
  // (where it is looked up: the reader's lines hash only an LPP line's order).
  struct hashed {
    std::string_view text;
    std::uint64_t hash;
  };
  const auto hash_of = [](const hashed& value) {
    return value.hash != 0 ? value.hash : detail::hash_bytes(value.text);
  };
  const auto take = [&](const checked_line& line, std::int64_t record_line, std::size_t record_start,
                        const hashed& id, const hashed& entity, const hashed& order, const hashed& exporter,
                        std::string_view chip) {
    chunk.lines.push_back(line);
    chunk.line.push_back(record_line);
    chunk.start.push_back(record_start);
    chunk.id_hash.push_back(id.hash);
    chunk.id_bytes.append(id.text);
    chunk.id_end.push_back(chunk.id_bytes.size());
    if (options.on_id) { return; }  // a pass that only collects ids: no values to encode
    encode_entity(entity.text, hash_of(entity));
    // Orders matter only to the LPP per-order limit; encoding them for other lines would
    // build a dictionary as large as the log for nothing.
    chunk.order.push_back(line.pathway == static_cast<std::uint8_t>(pathway::lpp)
                              ? known.orders.encode(order.text, hash_of(order), chunk.orders)
                              : -1);
    chunk.exporter.push_back(known.exporters.encode(exporter.text, hash_of(exporter), chunk.exporters));
    std::int32_t adhoc = -1;
    if (line.chip < 0) {
      char buffer[64];
      const auto upper = upper_in(chip, buffer);
      adhoc = upper ? chunk.adhoc_chips.encode(*upper) : chunk.adhoc_chips.encode(detail::to_upper(chip));
    }
    chunk.adhoc_chip.push_back(adhoc);
  };
  // Lines read ahead (plain ones only): the next one at or after the reader's position.
  std::size_t next_ahead = 0;
  if (ahead != nullptr) {
    next_ahead = static_cast<std::size_t>(
        std::lower_bound(ahead->line_start.begin(), ahead->line_start.end(), chunk.begin - ahead->from) -
        ahead->line_start.begin());
  }
  const auto ahead_start = [ahead](std::size_t k) { return ahead->from + ahead->line_start[k]; };
  while (true) {
    if (ahead != nullptr) {
      const std::size_t at = reader.position();
      while (next_ahead < ahead->size() && ahead_start(next_ahead) < at) { ++next_ahead; }
      if (at < chunk.limit && next_ahead < ahead->size() && ahead_start(next_ahead) == at) {
        const device_csv::plain_line& v = ahead->values[next_ahead];
        const auto view                 = [&](device_csv::text_span span) {
          return std::string_view(text.data() + ahead->from + span.offset, span.length);
        };
        ++chunk.records;
        ++next_ordinal;
        take({v.day, v.country, v.chip, v.pathway, v.quantity, v.tpp}, reader.line(), at,
             {view(v.id), v.id_hash}, {view(v.entity), v.entity_hash}, {view(v.order), v.order_hash},
             {view(v.exporter), v.exporter_hash}, std::string_view());  // a table's chip: no ad-hoc key
        reader.skip_line(line_start_after(text, at));
        continue;
      }
    }
    if (only != nullptr) {
      // A plain line not asked for is passed over from its date and country alone (every line
      // here has the header's field count: the caller's section had no rejects).
      if (const auto fields = reader.peek_plain_fields(date_column, country_column)) {
        if (passed_over(fields->first, fields->second)) {
          reader.skip_peeked();
          ++chunk.records;
          ++next_ordinal;
          continue;
        }
      }
    }
    const auto status = reader.next();
    if (status == detail::csv_status::end) { break; }
    ++chunk.records;
    if (status != detail::csv_status::record) {
      const detail::quote_defect defect = detail::quote_defect_of(status);
      hold(defect.reason, defect.explanation, reader.error_line(), reader.error_column());
    } else if (const auto& fields = reader.fields();
               reader.field_count() != static_cast<std::size_t>(field_count)) {
      const auto& at = detail::wrong_field_count_at(fields, static_cast<std::size_t>(field_count));
      hold("WRONG_FIELD_COUNT",
           detail::wrong_field_count(static_cast<std::size_t>(field_count), reader.field_count(),
                                     reader.field_count() == fields.size() && fields.back().value.empty(),
                                     header_ends_unnamed),
           at.line, at.column);
    } else {
      // Pointers, not copies: copying ten fields a line (and zeroing them first) cost more than
      // the checks.
      static const detail::csv_field absent{};
      const detail::csv_field* record[record_columns];
      for (int c = 0; c < record_columns; ++c) {
        // An absent optional column reads as an empty field (never a defect: only required columns can be
        // bad).
        const int index = columns[static_cast<std::size_t>(c)];
        record[c]       = index < 0 ? &absent : &fields[static_cast<std::size_t>(index)];
      }
      const std::uint32_t ordinal = next_ordinal++;
      if (passed_over(record[c_date]->value, record[c_country]->value)) { continue; }
      checked_line line;
      if (auto bad = check_line(record, dates, line, is_ascii(reader.raw()))) {
        hold(bad->reason, bad->detail + detail::totals_row_hint(record[c_id]->value, record[c_entity]->value),
             record[bad->column]->line, record[bad->column]->column);
      } else {
        const std::string_view id    = record[c_id]->value;
        const std::string_view order = record[c_order]->value.empty() ? id : record[c_order]->value;
        if (only != nullptr) { chunk.ordinal.push_back(ordinal); }
        take(line, reader.record_line(), reader.record_start(), {id, detail::hash_bytes(id)},
             {record[c_entity]->value, 0}, {order, 0}, {record[c_exporter]->value, 0}, record[c_chip]->value);
        continue;
      }
    }
    // Without --rejects the merge stops at this line's error: nothing after it matters.
    if (!options.keep_rejects) {
      resolve_all();
      return;
    }
  }
  resolve_all();
  chunk.end      = reader.position();
  chunk.end_line = reader.line();
}

namespace {

/// Reads again the record that starts at @p start (a line start) on line @p line.
detail::fast_csv_reader read_again(std::string_view text, std::size_t start, std::int64_t line)
{
  detail::fast_csv_reader reader(text, start, start + 1, line);
  reader.next();
  return reader;
}

}  // namespace

void shipment_log_builder::state::find_repeated_ids(parse_pool& pool, std::size_t parts, window& w)
{
  std::vector<std::uint32_t> arrivals(id_set::regions, 0);
  std::vector<std::size_t> first_candidate(w.used + 1, 0);  // the window's candidates, chunk by chunk
  for (std::size_t k = 0; k < w.used; ++k) {
    parsed_chunk& chunk    = w.chunks[k];
    first_candidate[k + 1] = first_candidate[k] + (chunk.inside_previous ? 0 : chunk.lines.size());
    if (chunk.inside_previous) { continue; }
    chunk.earlier_id.assign(chunk.lines.size(), -1);
    for (const std::uint64_t hash : chunk.id_hash) { ++arrivals[id_set::region_of(hash)]; }
  }
  ids.make_room(arrivals);  // no task grows the table
  // Payloads: streaming, the record's offset in all inputs; columns, its candidate ordinal.
  const std::uint64_t file_base    = streaming() ? streamed.back().base : 0;
  const std::uint64_t ordinal_base = line_of_candidate.size();
  const auto payload_of            = [&](std::size_t k, std::size_t i) {
    return streaming() ? file_base + w.chunks[k].start[i] : ordinal_base + first_candidate[k] + i;
  };
  const auto same_id = [&](std::int64_t stored, std::string_view id) {
    if (streaming() || static_cast<std::uint64_t>(stored) < ordinal_base) { return stored_id_is(stored, id); }
    // A candidate of this window, which the merge has not reached yet.
    const std::size_t local = static_cast<std::uint64_t>(stored) - ordinal_base;
    const auto after        = std::upper_bound(first_candidate.begin(), first_candidate.end(), local);
    const std::size_t k     = static_cast<std::size_t>(after - first_candidate.begin()) - 1;
    return w.chunks[k].id(local - first_candidate[k]) == id;
  };
  std::vector<std::size_t> inserted(parts, 0);
  const auto pass = [&](std::size_t part) {
    // Regions in one block per part: the per-region counts a part updates sit together.
    const std::size_t first_region = part * id_set::regions / parts;
    const std::size_t end_region   = (part + 1) * id_set::regions / parts;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> mine;  // (chunk, candidate), input order
    for (std::size_t k = 0; k < w.used; ++k) {
      const parsed_chunk& chunk = w.chunks[k];
      if (chunk.inside_previous) { continue; }
      for (std::size_t i = 0; i < chunk.id_hash.size(); ++i) {
        const std::size_t region = id_set::region_of(chunk.id_hash[i]);
        if (region >= first_region && region < end_region) {
          mine.emplace_back(static_cast<std::uint32_t>(k), static_cast<std::uint32_t>(i));
        }
      }
    }
    constexpr std::size_t prefetch_distance = 16;
    std::size_t added                       = 0;
    for (std::size_t j = 0; j < mine.size(); ++j) {
      if (j + prefetch_distance < mine.size()) {
        const auto [k, i] = mine[j + prefetch_distance];
        ids.prefetch(w.chunks[k].id_hash[i]);
      }
      const auto [k, i]          = mine[j];
      parsed_chunk& chunk        = w.chunks[k];
      const std::string_view id  = chunk.id(i);
      const std::int64_t earlier =
          ids.find(chunk.id_hash[i], [&](std::int64_t stored) { return same_id(stored, id); });
      if (earlier >= 0) {
        chunk.earlier_id[i] = earlier;
      } else {
        ids.insert_in_region(payload_of(k, i), chunk.id_hash[i]);
        ++added;
      }
    }
    inserted[part] = added;
  };
  task_group parts_done;
  for (std::size_t part = 1; part < parts; ++part) {
    parts_done.post(pool, [&pass, part] { pass(part); });
  }
  pass(0);
  parts_done.finish();
  for (const std::size_t n : inserted) { ids.add_count(n); }
}

void shipment_log_builder::state::merge_chunk(const std::string& name, std::string_view text,
                                              const column_map& columns, std::int64_t first_line,
                                              const parsed_chunk& chunk)
{
  const std::int64_t base = first_line - 1;  // chunk lines count from 1 at its first line
  std::vector<std::int32_t> entity_code(static_cast<std::size_t>(chunk.entities.size()), -1);
  std::vector<std::int32_t> order_code(static_cast<std::size_t>(chunk.orders.size()), -1);
  std::vector<std::int32_t> exporter_code(static_cast<std::size_t>(chunk.exporters.size()), -1);
  std::vector<std::int32_t> chip_code(static_cast<std::size_t>(chunk.adhoc_chips.size()), -1);
  chunk_record* record = nullptr;
  if (streaming() && !chunk.lines.empty()) {
    chunk_records.push_back({streamed.size() - 1, chunk.begin, chunk.limit, {}, {}});
    record = &chunk_records.back();
  }
  std::size_t next_reject   = 0;
  const auto rejects_before = [&](std::size_t candidate) {
    for (; next_reject < chunk.rejects.size() && chunk.rejects[next_reject].before <= candidate;
         ++next_reject) {
      // Before candidate `candidate`'s section starts, so in the last section begun (if any).
      if (record != nullptr && !record->sections.empty()) { record->sections.back().had_rejects = true; }
      rejected_line bad = chunk.rejects[next_reject].line;
      bad.file          = name;
      bad.line += base;
      if (!options.keep_rejects) { throw parse_error(name, bad.line, bad.column, bad.reason, bad.detail); }
      keep_reject(std::move(bad));
    }
  };
  const auto global_code = [](std::int32_t code, std::vector<std::int32_t>& codes,
                              const detail::string_index& local, dictionary& global) {
    if (code >= 0) { return code; }
    std::int32_t& mapped =
        codes[static_cast<std::size_t>(local_code(code))];  // local_code is its own inverse
    if (mapped < 0) { mapped = global.encode(local.text(local_code(code))); }
    return mapped;
  };
  {
    // In a log out of date order an LPP order's lines lie far apart, so most orders new to
    // this chunk are known to the log already: found here together, each slot and text
    // prefetched a few orders ahead (one at a time in the loop below, each cost the merge
    // thread two cache misses).
    const auto local_orders = static_cast<std::size_t>(chunk.orders.size());
    std::vector<std::uint64_t> hashes(local_orders);
    for (std::size_t k = 0; k < local_orders; ++k) {
      hashes[k] = detail::hash_bytes(chunk.orders.text(static_cast<std::int32_t>(k)));
    }
    constexpr std::size_t slot_ahead = 16, text_ahead = 8;
    for (std::size_t k = 0; k < local_orders; ++k) {
      if (k + slot_ahead < local_orders) { log.orders.prefetch_slot(hashes[k + slot_ahead]); }
      if (k + text_ahead < local_orders) { log.orders.prefetch_text(hashes[k + text_ahead]); }
      order_code[k] = log.orders.find(chunk.orders.text(static_cast<std::int32_t>(k)), hashes[k]);
    }
  }
  if (streaming()) { clear_batch(accepted); }
  const std::uint64_t file_base           = streaming() ? streamed.back().base : 0;
  constexpr std::size_t prefetch_distance = 16;
  const bool looked_up                    = !chunk.earlier_id.empty();  // by `find_repeated_ids`
  for (std::size_t i = 0; i < chunk.lines.size(); ++i) {
    if (!looked_up && i + prefetch_distance < chunk.lines.size()) {
      ids.prefetch(chunk.id_hash[i + prefetch_distance]);
    }
    rejects_before(i);
    const checked_line& line  = chunk.lines[i];
    const std::string_view id = chunk.id(i);
    if (record != nullptr && i % section_lines == 0) {
      record->sections.push_back({chunk.start[i], chunk.line[i] + base, static_cast<std::uint32_t>(i), accepted});
    }
    const std::uint64_t payload = streaming() ? file_base + chunk.start[i] : next_column_payload();
    if (auto bad = admit(id, chunk.id_hash[i], payload, line.quantity, line.tpp,
                         looked_up ? chunk.earlier_id[i] : not_looked_up)) {
      if (record != nullptr) { record->skipped.push_back(static_cast<std::uint32_t>(i)); }
      // Rare: read the record again for the field's position and the raw text.
      const auto again = read_again(text, chunk.start[i], chunk.line[i] + base);
      const detail::csv_field& at =
          again.fields()[static_cast<std::size_t>(columns[static_cast<std::size_t>(bad->column)])];
      reject(name, *bad, at.line, at.column, again.raw());
      continue;
    }
    if (options.on_id) { continue; }  // admit handed the id over; nothing else is kept
    std::int32_t chip = line.chip;
    if (chip < 0) {
      std::int32_t& code = chip_code[static_cast<std::size_t>(chunk.adhoc_chip[i])];
      if (code < 0) {
        const std::string_view key = chunk.adhoc_chips.text(chunk.adhoc_chip[i]);
        const int known            = log.chips.find(key);
        try {
          code = known >= 0 ? known : log.chips.add_adhoc(key);
        } catch (const config_error& e) {  // the chip table is full: say which line overflowed it
          const auto again            = read_again(text, chunk.start[i], chunk.line[i] + base);
          const detail::csv_field& at = again.fields()[static_cast<std::size_t>(columns[c_chip])];
          throw config_error(name + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": " +
                             e.what() + " (chip " + detail::quoted(key) + ")");
        }
      }
      chip = code;
    }
    const std::int32_t order =
        chunk.order[i] == -1 ? -1 : global_code(chunk.order[i], order_code, chunk.orders, log.orders);
    append(line, chip, global_code(chunk.entity[i], entity_code, chunk.entities, log.entities), order,
           global_code(chunk.exporter[i], exporter_code, chunk.exporters, log.exporters),
           chunk.line[i] + base, id);
    if (record != nullptr) {
      section& current  = record->sections.back();
      current.first_day = std::min(current.first_day, line.date);
      current.last_day  = std::max(current.last_day, line.date);
    }
    if (options.on_accepted) {
      const auto again = read_again(text, chunk.start[i], chunk.line[i] + base);
      std::string_view v[record_columns];
      for (int c = 0; c < record_columns; ++c) {
        const int index = columns[static_cast<std::size_t>(c)];
        if (index >= 0) { v[c] = again.fields()[static_cast<std::size_t>(index)].value; }
      }
      options.on_accepted(shipment_fields{v[c_id], v[c_date], v[c_entity], v[c_country], v[c_chip],
                                          v[c_quantity], v[c_pathway], v[c_order], v[c_exporter], v[c_tpp],
                                          chunk.line[i] + base});
    }
  }
  rejects_before(std::numeric_limits<std::size_t>::max());
  if (streaming() && batch.size() > 0) { options.on_batch(batch); }
}

std::optional<line_defect> shipment_log_builder::state::check_id_and_totals(
    std::string_view id, std::uint64_t id_hash, std::uint64_t payload, std::int64_t quantity,
    std::int64_t tpp, std::int64_t looked_up)
{
  // A repeated id is said first, also where the line would pass the 64-bit bound: a file fed
  // twice is a DUPLICATE_ID line by line, whatever its values.
  if (options.earlier_id) {
    if (const auto earlier = options.earlier_id(id)) {
      return line_defect{
          "DUPLICATE_ID",
          "shipment id " + detail::quoted(id) + " was already used at " + *earlier + detail::id_hint(id),
          c_id};
    }
  }
  if (options.on_id) {
    // The first of two passes: ids go out, repeats are found later. Its sums would count the
    // repeats too, so the 64-bit bound is the second pass's alone.
    options.on_id(id_hash, payload);
    return std::nullopt;
  }
  std::int64_t earlier = -1;
  bool stored          = looked_up != not_looked_up;  // the id set holds the id already
  bool repeat          = looked_up >= 0;              // a repeat of a line before it, as the id pass found
  if (stored) {
    earlier = looked_up;
  } else if (options.repeated_ids != nullptr) {  // the second pass: the first found every repeat
    // Candidates come here once each, in input order: the cursor moves forward only.
    const auto at = options.repeated_ids->next_at_or_after(payload);
    if (at && at->first == payload) {
      earlier = static_cast<std::int64_t>(at->second);
      repeat  = true;
    }
  } else {
    earlier = ids.find(id_hash, [&](std::int64_t at) { return stored_id_is(at, id); });
  }
  std::int64_t* owner_to_be = nullptr;  // a withdrawn first occurrence's slot this line would take
  if (earlier >= 0) {
    if (const auto at = withdrawn_ids.find(earlier); at != withdrawn_ids.end()) {
      // That line was rejected: the first line accepted after it owns the id.
      stored = true;
      if (at->second < 0) {
        owner_to_be = &at->second;
        earlier     = -1;
      } else {
        earlier = at->second == static_cast<std::int64_t>(payload) ? -1 : at->second;
      }
    }
  }
  if (earlier >= 0) {
    return line_defect{"DUPLICATE_ID",
                       "shipment id " + detail::quoted(id) + " was already used at " + source_of_id(earlier) +
                           detail::id_hint(id),
                       c_id};
  }
  std::uint64_t tpp_sum = abs_tpp_sum;
  std::uint64_t qty_sum = abs_quantity_sum;
  if (add_overflows(tpp_sum, tpp) || add_overflows(qty_sum, quantity)) {
    // Where the id pass or the first pass took this line for its id's first occurrence, the
    // line after it with that id takes its place. (A line the id set was searched for was not
    // added to it: the next one finds nothing.)
    if (looked_up == -1 || (options.repeated_ids != nullptr && !repeat)) {
      withdrawn_ids.emplace(static_cast<std::int64_t>(payload), -1);
      if (!streaming()) { withdrawn_id_text.emplace(static_cast<std::int64_t>(payload), std::string(id)); }
    }
    return line_defect{"TPP_OVERFLOW",
                       "the log's totals would exceed 64 bits (sum of |tpp| or |quantity| > 2^63-1)",
                       c_quantity};
  }
  if (owner_to_be != nullptr) { *owner_to_be = static_cast<std::int64_t>(payload); }
  abs_tpp_sum      = tpp_sum;
  abs_quantity_sum = qty_sum;
  if (!streaming()) {
    append_bytes(log.id_bytes, id);
    log.id_end.push_back(static_cast<std::int64_t>(log.id_bytes.size()));
  }
  if (options.repeated_ids == nullptr && !stored) { ids.insert(payload, id_hash); }
  return std::nullopt;
}

bool shipment_log_builder::state::stored_id_is(std::int64_t payload, std::string_view id) const
{
  if (streaming()) { return id_at(static_cast<std::uint64_t>(payload)) == id; }
  if (!ordinal_payloads) { return detail::same_bytes(log.shipment_id(payload), id); }
  const std::int64_t line = line_of_candidate[static_cast<std::size_t>(payload)];
  return line >= 0 ? detail::same_bytes(log.shipment_id(line), id) : withdrawn_id_text.at(payload) == id;
}

std::string shipment_log_builder::state::source_of_id(std::int64_t payload) const
{
  if (!streaming()) {
    return log.source_of(ordinal_payloads ? line_of_candidate[static_cast<std::size_t>(payload)] : payload);
  }
  const auto offset = static_cast<std::uint64_t>(payload);
  // The chunk that holds the record (records are in offset order), then its nearest mark before it.
  const auto chunk = std::prev(std::upper_bound(
      chunk_records.begin(), chunk_records.end(), offset,
      [this](std::uint64_t at, const chunk_record& r) { return at < streamed[r.file].base + r.begin; }));
  const streamed_file& file = streamed[chunk->file];
  const std::size_t start   = offset - file.base;
  const auto mark           = std::prev(
      std::upper_bound(chunk->sections.begin(), chunk->sections.end(), start,
                       [](std::size_t at, const section& m) { return at < m.start; }));
  const std::string_view between = file.text.substr(mark->start, start - mark->start);
  const auto breaks              = std::count(between.begin(), between.end(), '\n');
  return file.name + ":" + std::to_string(mark->line + breaks);
}

std::string shipment_log_builder::state::id_at(std::uint64_t offset) const
{
  const auto file = std::prev(std::upper_bound(
      streamed.begin(), streamed.end(), offset,
      [](std::uint64_t at, const streamed_file& f) { return at < f.base; }));
  const auto again = read_again(file->text, offset - file->base, 1);
  return std::string(again.fields()[static_cast<std::size_t>(file->columns[c_id])].value);
}

void shipment_log_builder::state::append(const checked_line& line, std::int32_t chip, std::int32_t entity,
                                         std::int32_t order, std::int32_t exporter, std::int64_t source_line,
                                         std::string_view id)
{
  ++accepted;
  if (streaming()) {
    append_to_batch(line, chip, entity, order, exporter, id);
    return;
  }
  push_line(log.columns, line, chip, entity, order, exporter);
  log.source_line.push_back(source_line);
}

void shipment_log_builder::state::clear_batch(std::int64_t first_position)
{
  batch.first_position = first_position;
  batch.positions.clear();
  batch.columns.clear();
  batch.id_bytes.clear();
  batch.id_end.clear();
}

void shipment_log_builder::state::append_to_batch(const checked_line& line, std::int32_t chip,
                                                  std::int32_t entity, std::int32_t order,
                                                  std::int32_t exporter, std::string_view id)
{
  push_line(batch.columns, line, chip, entity, order, exporter);
  batch.id_bytes.append(id);
  batch.id_end.push_back(batch.id_bytes.size());
}

void shipment_log_builder::state::replay(const replay_scope& scope,
                                         const std::function<void(const line_batch&)>& sink)
{
  CAPLEDGER_EXPECTS(streaming(), "replay needs a streaming ingest");
  const std::vector<day_t>& days = scope.days;
  if (days.empty()) { return; }
  dictionary_snapshots known;  // every value is in the dictionaries now: codes are found, not added
  known.catch_up(log);
  const wanted_lines wanted(scope);
  // The wanted sections, each parsed again on its own (a section starts at a record start); in
  // groups read in parallel, then handed over in input order.
  struct wanted_section {
    const chunk_record* chunk;
    std::size_t index;
  };
  std::vector<wanted_section> todo;
  for (const chunk_record& record : chunk_records) {
    for (std::size_t k = 0; k < record.sections.size(); ++k) {
      const section& part = record.sections[k];
      const auto at       = std::lower_bound(days.begin(), days.end(), part.first_day);
      if (at == days.end() || *at > part.last_day) { continue; }
      // Its accepted lines, at most one per candidate, start at first_position.
      if (scope.may_hold && !scope.may_hold(part.first_position, part.first_position + section_lines - 1)) {
        continue;
      }
      todo.push_back({&record, k});
    }
  }
  if (todo.empty()) { return; }  // no thread to start
  // Every core parses: the calling thread only waits while they do.
  const auto threads = static_cast<std::size_t>(std::max(1, omp_get_max_threads()));
  std::vector<parsed_chunk> parsed(4 * threads);
  parse_pool pool(threads, "cl-reparse");
  task_group parsing;  // after the pool: destroyed first, once its tasks ran
  std::vector<std::size_t> released_to(streamed.size(), 0);  // per file: pages before it let go
  for (std::size_t group = 0; group < todo.size(); group += parsed.size()) {
    const std::size_t count = std::min(parsed.size(), todo.size() - group);
    for (std::size_t g = 0; g < count; ++g) {
      parsing.post(pool, [&, g] {
        const auto& [record, k]   = todo[group + g];
        const section& part       = record->sections[k];
        const streamed_file& file = streamed[record->file];
        const std::size_t end =
            k + 1 < record->sections.size() ? record->sections[k + 1].start : record->limit;
        parsed[g].reset(part.start, end);
        // A section on the list holds lines of other days (and countries) too: they are passed
        // over once their date and country are read. Only where every record was a candidate, so
        // that the lines passed over can be counted without checking them.
        parse_chunk(file.text, file.columns, file.field_count, file.header_ends_unnamed, known, parsed[g],
                    part.had_rejects ? nullptr : &wanted);
      });
    }
    parsing.finish();
    for (std::size_t g = 0; g < count; ++g) {
      const auto& [record, k]   = todo[group + g];
      const section& part       = record->sections[k];
      const parsed_chunk& chunk = parsed[g];
      const bool filtered       = !part.had_rejects;  // parsed with the day filter
      clear_batch(part.first_position);
      // Candidates the merge rejected: not accepted, so not counted in positions.
      const auto skipped_begin =
          std::lower_bound(record->skipped.begin(), record->skipped.end(), part.candidate);
      auto skipped = skipped_begin;
      for (std::size_t i = 0; i < chunk.lines.size(); ++i) {
        const std::uint32_t ordinal = filtered ? chunk.ordinal[i] : static_cast<std::uint32_t>(i);
        if (ordinal >= section_lines) { break; }
        const std::uint32_t candidate = part.candidate + ordinal;
        while (skipped != record->skipped.end() && *skipped < candidate) { ++skipped; }
        if (skipped != record->skipped.end() && *skipped == candidate) { continue; }
        const checked_line& line = chunk.lines[i];
        const std::int32_t chip =
            line.chip >= 0 ? line.chip : log.chips.find(chunk.adhoc_chips.text(chunk.adhoc_chip[i]));
        const std::int32_t order =
            chunk.order[i] >= -1 ? chunk.order[i] : log.orders.find(chunk.orders.text(local_code(chunk.order[i])));
        CAPLEDGER_EXPECTS(chip >= 0 && chunk.entity[i] >= 0 && chunk.exporter[i] >= 0 && order >= -1,
                          "a replayed line has a value the first reading did not add");
        if (filtered) {
          batch.positions.push_back(part.first_position + ordinal - (skipped - skipped_begin));
        }
        const std::size_t id_begin = i == 0 ? 0 : chunk.id_end[i - 1];
        append_to_batch(line, chip, chunk.entity[i], order, chunk.exporter[i],
                        std::string_view(chunk.id_bytes.data() + id_begin, chunk.id_end[i] - id_begin));
      }
      if (batch.size() > 0) { sink(batch); }
      const streamed_file& file = streamed[record->file];
      if (file.pages != nullptr) {
        // Every page before the section's end, those between it and the last section read too:
        // reading a section maps more than its own pages (fault-around, large folios of the
        // page cache), and pages of sections passed over were never let go.
        file.pages->release(std::min(released_to[record->file], chunk.begin), chunk.end);
        released_to[record->file] = std::max(released_to[record->file], chunk.end);
      }
    }
  }
  for (std::size_t f = 0; f < streamed.size(); ++f) {  // what the last sections read mapped past them
    if (streamed[f].pages != nullptr && released_to[f] > 0) {
      streamed[f].pages->release(released_to[f], streamed[f].text.size());
    }
  }
}

void shipment_log_builder::state::accept(const std::string& name, const detail::csv_field* record,
                                         std::int64_t record_line, std::string_view raw)
{
  CAPLEDGER_EXPECTS(!streaming(), "stored lines are replayed into columns");
  checked_line line;
  const std::string_view id = record[c_id].value;
  date_memo dates;
  const detail::csv_field* fields_at[record_columns];
  for (int c = 0; c < record_columns; ++c) { fields_at[c] = &record[c]; }
  auto bad = check_line(fields_at, dates, line, false);
  if (!bad) { bad = admit(id, detail::hash_bytes(id), next_column_payload(), line.quantity, line.tpp); }
  if (bad) {
    reject(name, *bad, record[bad->column].line, record[bad->column].column, raw);
    return;
  }
  std::int32_t chip = line.chip;
  if (chip < 0) {
    const int known = log.chips.find(record[c_chip].value);
    chip            = known >= 0 ? known : log.chips.add_adhoc(record[c_chip].value);
  }
  const std::string_view order = record[c_order].value.empty() ? id : record[c_order].value;
  append(line, chip, log.entities.encode(record[c_entity].value),
         line.pathway == static_cast<std::uint8_t>(pathway::lpp) ? log.orders.encode(order) : -1,
         log.exporters.encode(record[c_exporter].value), record_line, id);
  if (options.on_accepted) {
    const auto v = [record](int column) { return record[column].value; };
    options.on_accepted(shipment_fields{v(c_id), v(c_date), v(c_entity), v(c_country), v(c_chip),
                                        v(c_quantity), v(c_pathway), v(c_order), v(c_exporter), v(c_tpp),
                                        record_line});
  }
}

}  // namespace capledger
