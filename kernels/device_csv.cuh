/// @file device_csv.cuh
/// @brief The GPU ingest's reading of one shipment line (SPEC §1.1), one source for the device and
/// the host (tests and fuzzers run it on the CPU against the host's reader and checks).
///
/// The division of work that keeps a GPU ingest exact: a line that the host would accept without
/// a word (one line of printable ASCII, no quote but around a whole field, the header's field count, a valid
/// date, a country and a chip of the tables, a plain non-zero quantity), nearly every line of a real log, is
/// read here into its values; every other line is the host's, read by the host's reader and checks from that
/// line's start, as today. The device never decides a reject, a message or a record that spans lines: a
/// record with a quoted line break begins on a line with a quote, which is the host's, and the host's reader
/// tells where that record ends (the lines it covers are then skipped, however they look). So lines can be
/// split at every `\n` with no quote state, chunk by chunk.
///
/// Contract (tests/device_csv_test.cpp checks it against `shipment_log_builder`): where
/// `read_plain_line` returns true, the host accepts that line with the same date, country code,
/// chip code (of the initial chip table), pathway, quantity and tpp, and with field values equal
/// to the spans' texts; the hashes equal `detail::hash_bytes` of those texts.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define CAPLEDGER_HD __host__ __device__
#else
#define CAPLEDGER_HD
#endif

namespace capledger::device_csv {

/// The columns of SPEC §1.1 (the order of `shipment_fields`).
enum column : int {
  c_id,
  c_date,
  c_entity,
  c_country,
  c_chip,
  c_quantity,
  c_pathway,
  c_order,
  c_exporter,
  c_tpp,
  column_count
};

/// Their names in a header row (the host matches them trimmed, in any case).
inline constexpr const char* column_names[column_count] = {
    "shipment_id", "date", "entity", "country", "chip", "quantity", "pathway", "order_id", "exporter", "tpp_per_unit"};

inline constexpr int max_fields     = 64;  ///< a header with more fields: every line is the host's
inline constexpr int max_chips      = 64;  ///< chip keys the device knows (datasets/chips.csv: 21)
inline constexpr int chip_key_bytes = 24;  ///< longer keys: the table is the host's alone

/// @brief Where a file's header puts each column.
struct line_layout {
  int field_count = 0;  ///< fields of the header; 0: the device reads no line of this file
  std::int8_t column_of_field[max_fields];  ///< the `column` field f holds, or -1 (a column not of SPEC's)
};

/// @brief The reference tables as the device reads them: plain arrays, copied as they are.
struct tables {
  std::int16_t country_by_letters[26 * 26];  ///< code of the upper-case ISO pair "AB" at 26 A + B, or -1
  int chip_count = 0;
  char chip_key[max_chips][chip_key_bytes];  ///< upper case, as the chip table's `code_of` keys
  std::uint8_t chip_key_length[max_chips];
  std::uint16_t chip_code[max_chips];
  std::int64_t chip_tpp[max_chips];  ///< TPP per unit, > 0
  std::uint64_t hash_seed  = 0;      ///< `detail::hash_key` of the host's hashes
  std::uint64_t hash_block = 0;
};

/// @brief Bytes [offset, offset + length) of the text given to `read_plain_line`.
struct text_span {
  std::uint32_t offset = 0;
  std::uint32_t length = 0;
};

/// @brief The values of a line `read_plain_line` read.
struct plain_line {
  std::int32_t day      = 0;  ///< `day_t`
  std::uint16_t country = 0;
  std::uint16_t chip    = 0;  ///< code in the initial chip table
  std::uint8_t pathway  = 0;  ///< `capledger::pathway`
  std::int64_t quantity = 0;
  std::int64_t tpp      = 0;  ///< quantity x TPP per unit, exact
  text_span id, entity, order,
      exporter;  ///< order: the order_id, or the shipment_id where that is empty or absent
  std::uint64_t id_hash = 0, entity_hash = 0, order_hash = 0, exporter_hash = 0;
};

namespace detail {

CAPLEDGER_HD inline std::uint64_t mix(std::uint64_t a, std::uint64_t b) noexcept
{
#if defined(__CUDA_ARCH__)
  return (a * b) ^ __umul64hi(a, b);
#else
  __extension__ typedef unsigned __int128 uint128;
  const uint128 product = static_cast<uint128>(a) * b;
  return static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
#endif
}

/// Little-endian load of @p n <= 8 bytes (byte by byte: the device has no unaligned loads).
CAPLEDGER_HD inline std::uint64_t load_le(const char* p, int n) noexcept
{
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) { v = (v << 8) | static_cast<unsigned char>(p[i]); }
  return v;
}

CAPLEDGER_HD inline bool is_space(char c) noexcept
{
  return c == ' ' || c == '\t';
}

CAPLEDGER_HD inline char upper(char c) noexcept
{
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

/// Whether @p a (any case) is the upper-case @p key of @p n bytes.
CAPLEDGER_HD inline bool equals_upper(const char* a, std::uint32_t n, const char* key,
                                      std::uint32_t key_n) noexcept
{
  if (n != key_n) { return false; }
  for (std::uint32_t i = 0; i < n; ++i) {
    if (upper(a[i]) != key[i]) { return false; }
  }
  return true;
}

/// A plain signed decimal (an optional `-`, 1 to 18 digits): what `detail::parse_int64` reads the
/// same way, with no overflow possible. Anything else (`+5`, 19 digits) is the host's.
CAPLEDGER_HD inline bool parse_plain_int(const char* p, std::uint32_t n, std::int64_t& value) noexcept
{
  const bool negative       = n > 0 && p[0] == '-';
  const std::uint32_t first = negative ? 1 : 0;
  if (n <= first || n - first > 18) { return false; }
  std::int64_t v = 0;
  for (std::uint32_t i = first; i < n; ++i) {
    if (p[i] < '0' || p[i] > '9') { return false; }
    v = v * 10 + (p[i] - '0');
  }
  value = negative ? -v : v;
  return true;
}

/// `YYYY-MM-DD` as `parse_date` reads it (years 0001..9999, real month lengths), to its day number
/// (`days_from_civil`); false for anything else.
CAPLEDGER_HD inline bool parse_day(const char* p, std::uint32_t n, std::int32_t& day) noexcept
{
  if (n != 10 || p[4] != '-' || p[7] != '-') { return false; }
  int digit[10];
  for (int i = 0; i < 10; ++i) {
    if (i == 4 || i == 7) { continue; }
    if (p[i] < '0' || p[i] > '9') { return false; }
    digit[i] = p[i] - '0';
  }
  int year        = digit[0] * 1000 + digit[1] * 100 + digit[2] * 10 + digit[3];
  const int month = digit[5] * 10 + digit[6];
  const int d     = digit[8] * 10 + digit[9];
  if (year < 1 || month < 1 || month > 12 || d < 1) { return false; }
  const bool leap      = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  const int month_days = month == 2                                                ? (leap ? 29 : 28)
                         : (month == 4 || month == 6 || month == 9 || month == 11) ? 30
                                                                                   : 31;
  if (d > month_days) { return false; }
  // days_from_civil (calendar.hpp), for years >= 1.
  year -= month <= 2 ? 1 : 0;
  const int era              = year / 400;
  const unsigned year_of_era = static_cast<unsigned>(year - era * 400);
  const unsigned day_of_year =
      (153 * static_cast<unsigned>(month > 2 ? month - 3 : month + 9) + 2) / 5 + static_cast<unsigned>(d) - 1;
  const unsigned day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  day                       = era * 146097 + static_cast<int>(day_of_era) - 719468;
  return true;
}

/// The pathway named @p p (any case; empty: LICENSE), as `capledger::pathway`, or -1.
CAPLEDGER_HD inline int pathway_of(const char* p, std::uint32_t n) noexcept
{
  if (n == 0) { return 0; }
  const char* const names[]     = {"LICENSE", "LPP", "NVEU", "UVEU", "AIA", "ACA"};
  const std::uint32_t lengths[] = {7, 3, 4, 4, 3, 3};
  for (int k = 0; k < 6; ++k) {
    if (equals_upper(p, n, names[k], lengths[k])) { return k; }
  }
  return -1;
}

}  // namespace detail

/// @brief `capledger::detail::hash_bytes` (host/string_index.hpp) under the key (@p key_seed,
/// @p key_block), bit for bit, on either side.
CAPLEDGER_HD inline std::uint64_t hash_bytes(const char* p, std::uint32_t size, std::uint64_t key_seed,
                                             std::uint64_t key_block) noexcept
{
  using detail::load_le;
  using detail::mix;
  constexpr std::uint64_t k0 = 0xa0761d6478bd642fULL, k1 = 0xe7037ed1a0b428dbULL, k2 = 0x8ebc6af09c88c6e3ULL;
  const std::uint64_t k1s = k1 ^ key_block;
  std::uint64_t n         = size;
  std::uint64_t seed      = k0 ^ key_seed ^ (n * k2);
  std::uint64_t a = 0, b = 0;
  if (n >= 8) {
    while (n > 16) {
      seed = mix(load_le(p, 8) ^ k1s, load_le(p + 8, 8) ^ seed);
      p += 16;
      n -= 16;
    }
    a = n >= 8 ? load_le(p, 8) : load_le(p + n - 16, 8);
    b = load_le(p + n - 8, 8);
  } else if (n >= 4) {
    a = load_le(p, 4);
    b = load_le(p + n - 4, 4);
  } else if (n > 0) {
    a = (static_cast<std::uint64_t>(static_cast<unsigned char>(p[0])) << 16) |
        (static_cast<std::uint64_t>(static_cast<unsigned char>(p[n / 2])) << 8) |
        static_cast<unsigned char>(p[n - 1]);
  }
  return mix(k1 ^ size, mix(a ^ k1s, b ^ seed));
}

/// @brief Reads the line @p text [@p begin, @p end) (its `\n` excluded; a `\r` before it allowed)
/// when it is plain in the sense of this file's contract.
/// @return true with @p out filled; false where the line is the host's (@p out then unspecified)
CAPLEDGER_HD inline bool read_plain_line(const char* text, std::uint32_t begin, std::uint32_t end,
                                         const line_layout& layout, const tables& t, plain_line& out) noexcept
{
  if (layout.field_count <= 0 || layout.field_count > max_fields) { return false; }
  if (end > begin && text[end - 1] == '\r') { --end; }  // CRLF
  // Split at commas. Every byte of a value printable ASCII or a tab (nothing to check as UTF-8,
  // no control byte); a field either unquoted (spaces and tabs around it trimmed, as the host
  // does) or quoted whole, `"Dell Technologies, Inc."`, with no quote inside and nothing around
  // its quotes. Any other quote (a doubled one, a field quoted over several lines) is the host's.
  // Only the fields of SPEC's columns are kept (spans in registers, not an array of every field).
  text_span value[column_count];
  for (int c = 0; c < column_count; ++c) { value[c] = text_span{end, 0}; }
  const auto printable = [](char byte) {
    const auto c = static_cast<unsigned char>(byte);
    return c == '\t' || (c >= 0x20 && c <= 0x7e);
  };
  int fields = 0;
  for (std::uint32_t field_start = begin;;) {
    if (fields == layout.field_count) { return false; }
    std::uint32_t b = field_start, e = field_start, at = field_start;
    if (at < end && text[at] == '"') {
      for (++at; at < end && text[at] != '"'; ++at) {
        if (!printable(text[at])) { return false; }
      }
      if (at == end) { return false; }  // not closed on this line
      b = field_start + 1;
      e = at++;
      if (at < end && text[at] != ',') { return false; }  // a doubled quote, or text after the closing one
    } else {
      for (; at < end && text[at] != ','; ++at) {
        if (text[at] == '"' || !printable(text[at])) { return false; }
      }
      e = at;
      while (b < e && detail::is_space(text[b])) { ++b; }
      while (e > b && detail::is_space(text[e - 1])) { --e; }
    }
    const int c = layout.column_of_field[fields];
    if (c >= 0) { value[c] = text_span{b, e - b}; }
    ++fields;
    if (at == end) { break; }
    field_start = at + 1;
  }
  if (fields != layout.field_count) { return false; }

  const text_span id = value[c_id], date = value[c_date], entity = value[c_entity],
                  country = value[c_country], chip = value[c_chip], quantity = value[c_quantity],
                  path = value[c_pathway], order = value[c_order], exporter = value[c_exporter],
                  tpp_text = value[c_tpp];
  if (id.length == 0 || entity.length == 0 || chip.length == 0) { return false; }
  if (!detail::parse_day(text + date.offset, date.length, out.day)) { return false; }

  if (country.length != 2) { return false; }
  const int a = detail::upper(text[country.offset]) - 'A', b = detail::upper(text[country.offset + 1]) - 'A';
  if (a < 0 || a >= 26 || b < 0 || b >= 26) { return false; }
  const int country_code = t.country_by_letters[a * 26 + b];
  if (country_code < 0) { return false; }

  if (!detail::parse_plain_int(text + quantity.offset, quantity.length, out.quantity) || out.quantity == 0) {
    return false;
  }
  int chip_index = -1;
  for (int k = 0; k < t.chip_count && chip_index < 0; ++k) {
    if (detail::equals_upper(text + chip.offset, chip.length, t.chip_key[k], t.chip_key_length[k])) {
      chip_index = k;
    }
  }
  if (chip_index < 0) { return false; }
  std::int64_t tpp_per_unit = t.chip_tpp[chip_index];
  if (tpp_text.length > 0 &&
      (!detail::parse_plain_int(text + tpp_text.offset, tpp_text.length, tpp_per_unit) ||
       tpp_per_unit <= 0)) {
    return false;
  }
  const int pathway = detail::pathway_of(text + path.offset, path.length);
  if (pathway < 0) { return false; }
  // |quantity| < 10^18 and tpp_per_unit < 10^18: the product's overflow is checked by division.
  const std::uint64_t magnitude = static_cast<std::uint64_t>(out.quantity < 0 ? -out.quantity : out.quantity);
  if (magnitude > static_cast<std::uint64_t>(INT64_MAX) / static_cast<std::uint64_t>(tpp_per_unit)) {
    return false;
  }
  out.tpp     = out.quantity * tpp_per_unit;
  out.country = static_cast<std::uint16_t>(country_code);
  out.chip    = t.chip_code[chip_index];
  out.pathway = static_cast<std::uint8_t>(pathway);

  out.id            = id;
  out.entity        = entity;
  out.order         = order.length > 0 ? order : id;
  out.exporter      = exporter;
  out.id_hash       = hash_bytes(text + id.offset, id.length, t.hash_seed, t.hash_block);
  out.entity_hash   = hash_bytes(text + entity.offset, entity.length, t.hash_seed, t.hash_block);
  out.order_hash    = order.length > 0 ? hash_bytes(text + order.offset, order.length, t.hash_seed, t.hash_block) : out.id_hash;
  out.exporter_hash = hash_bytes(text + exporter.offset, exporter.length, t.hash_seed, t.hash_block);
  return true;
}

}  // namespace capledger::device_csv
