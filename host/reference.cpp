/// @file reference.cpp
/// @brief Loads and validates countries.csv, chips.csv and the rule-set JSON (SPEC §1.3).
#include <capledger/error.hpp>
#include <capledger/reference.hpp>
#include <capledger/shipments.hpp>

#include "csv.hpp"
#include "iso_countries.hpp"
#include "spreadsheet_hints.hpp"
#include "terminal_text.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>
#include <iterator>
#include <map>
#include <set>

namespace capledger {

std::string_view pathway_name(pathway p) noexcept
{
  static constexpr std::string_view names[pathway_count] = {"LICENSE", "LPP", "NVEU", "UVEU", "AIA", "ACA"};
  return names[static_cast<int>(p)];
}

int country_table::find(std::string_view iso2) const
{
  const auto it = code_of.find(detail::to_upper(iso2));
  return it == code_of.end() ? -1 : it->second;
}

int chip_table::find(std::string_view key) const
{
  const auto it = code_of.find(detail::to_upper(key));
  return it == code_of.end() ? -1 : it->second;
}

namespace {

/// @p c as `*_spelled_alike` compare text: an ASCII letter upper-cased, a digit, or 0 (skipped).
char letter_or_digit(char c)
{
  if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')) { return c; }
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : '\0';
}

/// @p text as `*_spelled_alike` compare it: its ASCII letters (upper-cased) and digits alone.
std::string letters_and_digits(std::string_view text)
{
  std::string kept;
  for (const char c : text) {
    if (const char kept_c = letter_or_digit(c)) { kept.push_back(kept_c); }
  }
  return kept;
}

/// Whether `letters_and_digits(text) == folded`, without a string for each row a file's rejected
/// lines compare against (a log of unknown countries would pay for one per country per line).
bool folds_to(std::string_view text, std::string_view folded)
{
  std::size_t at = 0;
  for (const char c : text) {
    const char kept = letter_or_digit(c);
    if (kept == '\0') { continue; }
    if (at == folded.size() || folded[at] != kept) { return false; }
    ++at;
  }
  return at == folded.size();
}

}  // namespace

chip_spellings::chip_spellings(const chip_table& chips)
{
  for (const chip& row : chips.rows) {
    std::string folded = letters_and_digits(row.key);
    if (!row.known || folded.empty()) { continue; }  // no key that has letters or digits folds to ""
    const auto [at, added] = key_of_.emplace(std::move(folded), row.key);
    if (!added) { at->second.clear(); }  // several: no guess
  }
}

std::string chip_spellings::alike(std::string_view key) const
{
  const auto at = key_of_.find(letters_and_digits(key));
  return at == key_of_.end() ? std::string() : at->second;
}

std::string chip_spelled_alike(const chip_table& chips, std::string_view key)
{
  return chip_spellings(chips).alike(key);
}

std::string country_spelled_alike(const country_table& countries, std::string_view value)
{
  const std::string wanted = letters_and_digits(value);
  if (wanted.empty()) { return ""; }
  // A name first: no ISO country's name is as short as a code, so the order only matters for
  // tables of one's own.
  std::string found;
  for (const country& row : countries.rows) {
    if (!folds_to(row.name, wanted) || row.iso2 == found) { continue; }
    if (!found.empty()) { return ""; }  // several countries of that name: no guess
    found = row.iso2;
  }
  if (!found.empty()) { return found; }
  const auto in_table = [&countries](std::string_view iso2) {
    return countries.find(iso2) >= 0 ? std::string(iso2) : std::string();
  };
  const auto look_up = [&wanted](const auto& aliases) -> std::string_view {
    const auto* const end = std::end(aliases);
    const auto* const it  = std::lower_bound(
         std::begin(aliases), end, wanted,
         [](const detail::iso_code_alias& entry, const std::string& code) { return entry.code < code; });
    return it != end && it->code == wanted ? it->alpha2 : std::string_view();
  };
  if (const std::string_view other = look_up(detail::iso_other_names); !other.empty()) {
    return in_table(other);
  }
  if (wanted.size() == 2 && countries.find(wanted) >= 0) { return wanted; }  // `U.S.`, ` us`
  if (wanted.size() == 3) { return in_table(look_up(detail::iso_alpha3_codes)); }
  for (const detail::iso_code_alias& reserved : detail::iso_reserved_codes) {
    if (reserved.code == wanted) { return in_table(reserved.alpha2); }
  }
  return "";
}

std::uint16_t chip_table::add_adhoc(std::string_view key)
{
  if (rows.size() >= 65535) { throw config_error("more than 65535 distinct chip models"); }
  chip row;
  row.key         = detail::to_upper(key);
  row.datacenter  = true;  // unknown chips count as datacenter chips: the conservative reading
  row.known       = false;
  const auto code = static_cast<std::uint16_t>(rows.size());
  code_of.emplace(row.key, code);
  rows.push_back(std::move(row));
  return code;
}

namespace {

/// Reads a reference CSV's @p text (@p path names it) and calls @p on_row(fields, line) for each
/// record after the header.
template <typename OnRow>
void read_reference_csv(std::string_view text, const std::string& path,
                        const std::vector<std::string_view>& required, OnRow on_row)
{
  detail::csv_reader reader(text);
  if (reader.next() != detail::csv_status::record) { throw config_error(path + ":1:1: missing header row"); }
  const detail::csv_header header(reader.fields(), path);
  // As in a log: with `\n\r` line ends each row's first field begins with a CR, a chip key that
  // matched no log's chip (its lines with tpp_per_unit were then priced as unknown datacenter chips).
  detail::refuse_lf_cr_line_ends(text, reader.position(), reader.line(), path);
  std::vector<int> columns;
  for (const auto name : required) {
    const int index = header.find(name);
    if (index < 0) { throw config_error(path + ":1:1: MISSING_COLUMN: " + header.missing(name)); }
    columns.push_back(index);
  }
  while (true) {
    const auto status = reader.next();
    if (status == detail::csv_status::end) { break; }
    if (status != detail::csv_status::record) {
      const detail::quote_defect defect = detail::quote_defect_of(status);
      throw config_error(path + ":" + std::to_string(reader.error_line()) + ":" +
                         std::to_string(reader.error_column()) + ": " + defect.reason + ": " +
                         defect.explanation);
    }
    const auto& fields = reader.fields();
    if (static_cast<int>(fields.size()) != header.size()) {
      const detail::csv_field& at =
          detail::wrong_field_count_at(fields, static_cast<std::size_t>(header.size()));
      throw config_error(path + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) +
                         ": WRONG_FIELD_COUNT: expected " + std::to_string(header.size()) +
                         " fields, found " + std::to_string(fields.size()));
    }
    std::vector<detail::csv_field> picked;
    picked.reserve(columns.size());
    for (const int index : columns) { picked.push_back(fields[static_cast<std::size_t>(index)]); }
    on_row(picked, path);
  }
}

[[noreturn]] void reference_defect(const std::string& path, const detail::csv_field& field,
                                   const std::string& what)
{
  throw config_error(path + ":" + std::to_string(field.line) + ":" + std::to_string(field.column) + ": " +
                     what);
}

bool parse_flag(std::string_view text, bool& value)
{
  if (text == "1") {
    value = true;
    return true;
  }
  if (text == "0") {
    value = false;
    return true;
  }
  return false;
}

/// Digits with at most one decimal point among them (`8.66`, `0`, `12.`): a non-negative decimal.
bool is_decimal(std::string_view text)
{
  bool digit = false, point = false;
  for (const char c : text) {
    if (c >= '0' && c <= '9') {
      digit = true;
    } else if (c == '.' && !point) {
      point = true;
    } else {
      return false;
    }
  }
  return digit;
}

}  // namespace

country_table load_countries(const std::string& path)
{
  return parse_countries(read_input_file(path), path);
}

country_table parse_countries(std::string_view text, const std::string& path)
{
  country_table table;
  std::map<std::string, std::int64_t> line_of;  // each code's line, for a repeated one to name its first
  read_reference_csv(text, path, {"iso2", "name", "tier", "g2g_partner"},
                     [&](const std::vector<detail::csv_field>& f, const std::string& file) {
                       country row;
                       row.iso2 = detail::to_upper(f[0].value);
                       if (row.iso2.size() != 2 || !std::isalpha(static_cast<unsigned char>(row.iso2[0])) ||
                           !std::isalpha(static_cast<unsigned char>(row.iso2[1]))) {
                         reference_defect(file, f[0],
                                          detail::quoted(f[0].value) + " is not an ISO alpha-2 code");
                       }
                       row.name          = std::string(f[1].value);
                       std::int64_t tier = 0;
                       if (!detail::parse_int64(f[2].value, tier) || tier < 1 || tier > 3) {
                         reference_defect(file, f[2],
                                          "tier must be 1, 2 or 3, not " + detail::quoted(f[2].value));
                       }
                       row.tier = static_cast<int>(tier);
                       if (!parse_flag(f[3].value, row.g2g_partner)) {
                         reference_defect(file, f[3],
                                          "g2g_partner must be 0 or 1, not " + detail::quoted(f[3].value));
                       }
                       if (const auto first = line_of.find(row.iso2); first != line_of.end()) {
                         reference_defect(file, f[0],
                                          "country " + row.iso2 + " is listed twice: the same code as line " +
                                              std::to_string(first->second) +
                                              " (codes compare without case); give each country one row");
                       }
                       line_of.emplace(row.iso2, f[0].line);
                       table.code_of.emplace(row.iso2, 0);
                       table.rows.push_back(std::move(row));
                     });
  if (table.rows.empty()) {
    throw config_error(
        path + ": no countries: the table has a header row and no row under it (it lists each country)");
  }
  if (table.rows.size() > 256) { throw config_error(path + ": more than 256 countries"); }
  // Codes follow ISO order so that every output sorted by code is sorted by name.
  std::sort(table.rows.begin(), table.rows.end(),
            [](const country& a, const country& b) { return a.iso2 < b.iso2; });
  for (std::size_t i = 0; i < table.rows.size(); ++i) {
    table.code_of[table.rows[i].iso2] = static_cast<std::uint16_t>(i);
  }
  return table;
}

chip_table load_chips(const std::string& path)
{
  return parse_chips(read_input_file(path), path);
}

chip_table parse_chips(std::string_view text, const std::string& path)
{
  chip_table table;
  std::vector<std::int64_t> line_of;  // each row's line, for a repeated key to name its first
  read_reference_csv(text, path, {"chip", "vendor", "tpp", "performance_density", "datacenter"},
                     [&](const std::vector<detail::csv_field>& f, const std::string& file) {
                       chip row;
                       row.key = std::string(f[0].value);
                       if (row.key.empty()) { reference_defect(file, f[0], "empty chip key"); }
                       // A log's chip must be UTF-8, so such a row could never be matched.
                       if (!detail::valid_utf8(row.key)) {
                         reference_defect(file, f[0], "chip key is not valid UTF-8");
                       }
                       row.vendor = std::string(f[1].value);
                       if (!detail::parse_int64(f[2].value, row.tpp) || row.tpp <= 0) {
                         // Digits alone are a positive integer: say that it is too large, not that it is
                         // none.
                         const bool digits =
                             f[2].value.find_first_not_of("0123456789") == std::string_view::npos &&
                             f[2].value.find_first_not_of('0') != std::string_view::npos;
                         reference_defect(file, f[2],
                                          digits ? "tpp " + detail::quoted(f[2].value) +
                                                       " is past 9223372036854775807 (2^63 - 1)"
                                                 : "tpp must be a positive integer, not " +
                                                       detail::quoted(f[2].value) +
                                                       detail::quantity_hint(f[2].value));
                       }
                       // Not used by any rule here, but a table with a malformed one is not the table
                       // its author meant: checked like every other column.
                       if (!is_decimal(f[3].value)) {
                         reference_defect(file, f[3],
                                          "performance_density must be a non-negative decimal number, not " +
                                              detail::quoted(f[3].value));
                       }
                       if (!parse_flag(f[4].value, row.datacenter)) {
                         reference_defect(file, f[4],
                                          "datacenter must be 0 or 1, not " + detail::quoted(f[4].value));
                       }
                       const std::string upper = detail::to_upper(row.key);
                       if (const auto first = table.code_of.find(upper); first != table.code_of.end()) {
                         reference_defect(file, f[0],
                                          "chip " + detail::terminal_text(row.key) +
                                              " is listed twice: the same key as line " +
                                              std::to_string(line_of[first->second]) +
                                              " (keys compare without case); give each chip one row");
                       }
                       // Codes are 16 bits, as `add_adhoc`'s: a 65536th row's code would wrap to the
                       // first row's, and its lines be priced at that chip's tpp.
                       if (table.rows.size() >= 65535) {
                         reference_defect(file, f[0], "more than 65535 chips: the most a table may list");
                       }
                       table.code_of.emplace(upper, static_cast<std::uint16_t>(table.rows.size()));
                       table.rows.push_back(std::move(row));
                       line_of.push_back(f[0].line);
                     });
  if (table.rows.empty()) {
    throw config_error(path +
                       ": no chips: the table has a header row and no row under it (it lists each chip)");
  }
  return table;
}

namespace {

using json = nlohmann::json;

/// A rule-set defect at a place in the file: `parse_rule_set` names its line and column. @p where
/// is the message's start (the file, then the object: `rules.json: nveu_caps[1]`), @p key the
/// member of that object it concerns (none: the object itself).
struct rule_error : config_error {
  enum class at { value, key, object };  ///< where in the text: the member's value, its name, the object
  rule_error(std::string where_, std::string key_, at point_, const std::string& message)
      : config_error(message), where(std::move(where_)), key(std::move(key_)), point(point_)
  {
  }
  std::string where, key;
  at point;
};

/// Refuses a key of @p object that is not in @p known: a misspelled optional key (`pathway` for
/// `pathways`) would otherwise be passed over and its default used without a word.
void only_known_keys(const json& object, std::initializer_list<const char*> known, const std::string& where)
{
  if (!object.is_object()) { return; }  // `member` says what is wrong with it
  for (const auto& item : object.items()) {
    if (std::none_of(known.begin(), known.end(), [&](const char* k) { return item.key() == k; })) {
      throw rule_error(where, item.key(), rule_error::at::key,
                       where + ": unknown key " + detail::quoted(item.key()));
    }
  }
}

/// A first pass over a rule set's text: its depth, a key given twice in one object (the JSON
/// library keeps the last: which value was meant would be a guess), and the text of each
/// fractional number as written, by its place, so that shares are judged by their written decimals
/// (a double cannot tell 0.07000000000000000001 from 0.07).
class written_json final : public nlohmann::json_sax<json> {
 public:
  /// A fractional number's place (`uveu.min_tier1_share`, `nveu_caps[0].tpp`) -> the number as
  /// written: a key of the same name elsewhere is another number.
  std::map<std::string, std::string> fraction_text;
  std::string repeated;                              ///< the first key given twice, if any
  std::string repeated_in;  ///< where that object is (`nveu_caps[1]`; empty: the top level)
  std::size_t repeated_end               = 0;      ///< the byte just past the repeated name's closing quote
  bool too_deep                          = false;  ///< nested deeper than max_depth: the scan stopped there
  static constexpr std::size_t max_depth = 64;
  /// Where each member's name ends (just past its closing quote) and each object or array begins
  /// (its bracket), as byte offsets, by place: the messages name a line and column.
  std::map<std::string, std::size_t> key_end, container_start;
  const std::size_t* consumed = nullptr;  ///< the bytes the parser has read so far

  bool null() override { return element(); }
  bool boolean(bool) override { return element(); }
  bool number_integer(number_integer_t) override { return element(); }
  bool number_unsigned(number_unsigned_t) override { return element(); }
  bool number_float(number_float_t, const string_t& text) override
  {
    element();
    fraction_text[place(open_.size())] = text;
    return true;
  }
  bool string(string_t&) override { return element(); }
  bool binary(binary_t&) override { return element(); }
  bool start_object(std::size_t) override { return enter(false); }
  bool key(string_t& name) override
  {
    if (!open_.back().keys.insert(name).second && repeated.empty()) {
      repeated     = name;
      repeated_in  = place(open_.size() - 1);
      repeated_end = consumed != nullptr ? *consumed : 0;
    }
    open_.back().key = name;
    // The parser hands a name over before it reads on: the bytes read end at its closing quote.
    if (consumed != nullptr) { key_end[place(open_.size())] = *consumed; }
    return true;
  }
  bool end_object() override
  {
    open_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return enter(true); }
  bool end_array() override
  {
    open_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override
  {
    return false;  // the DOM parse that follows says what is wrong
  }

 private:
  /// An open object or array, and where in it the parse is: the messages name the object
  /// that repeats a key as the rule set's other messages do (`nveu_caps[1]`), as a key or an
  /// index alone does not (every phase has a `tpp`).
  struct container {
    bool array           = false;
    std::size_t elements = 0;    ///< an array's values so far
    std::string key;             ///< an object's latest key
    std::set<std::string> keys;  ///< an object's keys so far
  };

  /// A rule set is 3 levels deep: deeper text is refused before the parse that keeps it (a
  /// 10 MB file of brackets held 390 MB there, and the places held here more).
  bool enter(bool array)
  {
    element();
    if (open_.size() == max_depth) {
      too_deep = true;
      return false;
    }
    // The bracket is the last byte read: nothing is read past it before this call.
    if (consumed != nullptr && *consumed > 0) { container_start[place(open_.size())] = *consumed - 1; }
    open_.emplace_back();
    open_.back().array = array;
    return true;
  }

  bool element()
  {
    if (!open_.empty() && open_.back().array) { ++open_.back().elements; }
    return true;
  }

  /// The place of the value the first @p depth open containers hold: each object's key, each
  /// array's index (its latest element, counted already).
  std::string place(std::size_t depth) const
  {
    std::string where;
    for (std::size_t i = 0; i < depth; ++i) {
      if (open_[i].array) {
        where += "[" + std::to_string(open_[i].elements - 1) + "]";
      } else {
        where += (where.empty() ? "" : ".") + open_[i].key;
      }
    }
    return where;
  }

  std::vector<container> open_;
};

/// Decimal places of a JSON number as written (`0.0700` 2, `1e-6` 6, `7E-2` 2, `700000e-7` 2,
/// `1` 0): the number is its digits times 10^-scale (scale: the digits after the point less the
/// exponent), and each trailing zero of the digits takes one place off the scale.
std::int64_t written_decimals(std::string_view text)
{
  const std::size_t e           = text.find_first_of("eE");
  const std::string_view digits = text.substr(0, e);
  std::int64_t exponent         = 0;
  if (e != std::string_view::npos) {
    const std::string_view power = text.substr(e + 1);
    const bool plus              = !power.empty() && power.front() == '+';
    const auto [end, error] =
        std::from_chars(power.data() + (plus ? 1 : 0), power.data() + power.size(), exponent);
    if (error != std::errc() || end != power.data() + power.size()) { return INT64_MAX; }
  }
  const std::size_t point = digits.find('.');
  std::int64_t scale =
      (point == std::string_view::npos ? 0 : static_cast<std::int64_t>(digits.size() - point - 1));
  // An exponent this far out makes the places huge or none; bounded, the sums below cannot overflow.
  if (exponent < -1000000 || exponent > 1000000) { return exponent < 0 ? INT64_MAX : 0; }
  scale -= exponent;
  std::string_view all = digits;  // the digits with the point among them; zeros at its end
  while (!all.empty() && (all.back() == '0' || all.back() == '.')) {
    if (all.back() == '0') { --scale; }
    all.remove_suffix(1);
  }
  if (all.find_first_not_of("0.-+") == std::string_view::npos) { return 0; }  // zero has no places
  return scale > 0 ? scale : 0;
}

/// The JSON library's @p what as the other inputs' errors are written: `rules.json:6:20: invalid
/// JSON: ...`, where the library names a place (`[json.exception.parse_error.101] parse error at
/// line 6, column 20: `), less the library's own code; and why where the text is not UTF-8 at all.
std::string json_syntax_message(std::string_view text, const std::string& origin, std::string_view what)
{
  if (what.substr(0, 1) == "[") { what.remove_prefix(std::min(what.size(), what.find("] ") + 2)); }
  std::string place;
  constexpr std::string_view at_line = "parse error at line ", column = ", column ";
  if (what.substr(0, at_line.size()) == at_line) {
    const std::size_t comma = what.find(column), colon = what.find(": ");
    if (comma != std::string_view::npos && colon != std::string_view::npos && comma < colon) {
      place = ":" + std::string(what.substr(at_line.size(), comma - at_line.size())) + ":" +
              std::string(what.substr(comma + column.size(), colon - comma - column.size()));
      what.remove_prefix(colon + 2);
    }
  }
  return origin + place + ": invalid JSON: " + std::string(what) +
         (detail::looks_utf16(text)
              ? " (the file holds NUL bytes or a UTF-16 byte-order mark; save it as UTF-8)"
              : "");
}

/// An iterator over a rule set's text that counts the bytes the JSON parser has read, so that
/// `written_json` can note where each member is (the library's parser keeps no positions).
struct counting_iterator {
  using iterator_category = std::input_iterator_tag;
  using value_type        = char;
  using difference_type   = std::ptrdiff_t;
  using pointer           = const char*;
  using reference         = const char&;
  const char* at;
  const char* begin;
  std::size_t* consumed;
  reference operator*() const { return *at; }
  counting_iterator& operator++()
  {
    ++at;
    *consumed = static_cast<std::size_t>(at - begin);
    return *this;
  }
  bool operator==(const counting_iterator& other) const { return at == other.at; }
  bool operator!=(const counting_iterator& other) const { return at != other.at; }
};

/// `:line:column` of byte @p at of @p text (both 1-based, the column in bytes, as in the CSV inputs).
std::string text_position(std::string_view text, std::size_t at)
{
  const std::string_view before = text.substr(0, at);
  const std::size_t newline     = before.rfind('\n');
  const std::size_t line_start  = newline == std::string_view::npos ? 0 : newline + 1;
  return ":" + std::to_string(1 + std::count(before.begin(), before.end(), '\n')) + ":" +
         std::to_string(at - line_start + 1);
}

/// The opening quote of the member name whose closing quote ends just before byte @p end of @p text.
std::size_t name_start(std::string_view text, std::size_t end)
{
  std::size_t at = end - 1;  // the closing quote
  do {
    --at;
  } while (at > 0 && (text[at] != '"' || text[at - 1] == '\\'));
  return at;
}

/// Parses a rule set's @p text, refusing a key given twice in one object; @p written gets the
/// fractional numbers as written.
json parse_rule_json(std::string_view text, const std::string& origin, written_json& written)
{
  std::size_t consumed = 0;
  written.consumed     = &consumed;
  const counting_iterator first{text.data(), text.data(), &consumed};
  const counting_iterator last{text.data() + text.size(), text.data(), &consumed};
  const bool scanned = json::sax_parse(first, last, &written);
  written.consumed   = nullptr;
  if (written.too_deep) {
    throw config_error(origin + ": nested deeper than " + std::to_string(written_json::max_depth) +
                       " levels");
  }
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {  // parse errors, and numbers past a double (1e999)
    throw config_error(json_syntax_message(text, origin, e.what()));
  }
  if (scanned && !written.repeated.empty()) {
    // At the second name (a name takes 2 bytes or more past the object's `{`).
    const std::string at =
        written.repeated_end >= 3 ? text_position(text, name_start(text, written.repeated_end)) : "";
    throw config_error(origin + at + (written.repeated_in.empty() ? "" : ": " + written.repeated_in) +
                       ": key " + detail::quoted(written.repeated) + " is given twice in one object");
  }
  // Else every key would be said to be missing.
  if (!doc.is_object()) { throw config_error(origin + ": a rule set is a JSON object ({...})"); }
  return doc;
}

/// @p value as its JSON text, for a message: cut short past 40 bytes (a list or object given for
/// a number may be long), escaped for the terminal.
std::string shown(const json& value)
{
  std::string text = value.dump();
  if (text.size() > 40) { text = text.substr(0, 37) + "..."; }
  return detail::terminal_text(text);
}

const json& member(const json& object, const char* key, const std::string& where)
{
  // (`where` names the object: the top level is always one, `parse_rule_json` says.)
  if (!object.is_object()) {
    throw rule_error(where, "", rule_error::at::object,
                     where + " must be an object ({...}), not " + shown(object));
  }
  if (!object.contains(key)) {
    throw rule_error(where, "", rule_error::at::object, where + ": missing '" + key + "'");
  }
  return object.at(key);
}

std::int64_t positive_integer(const json& object, const char* key, const std::string& where)
{
  const json& value = member(object, key, where);
  // An unsigned integer past 2^63 - 1 read as signed wraps to a negative number: refused, but said
  // to be too large rather than not positive.
  if (value.is_number_unsigned() && value.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
    throw rule_error(where, key, rule_error::at::value,
                     where + ": '" + key + "' " + value.dump() + " is past 9223372036854775807 (2^63 - 1)");
  }
  if (!value.is_number_integer() || value.get<std::int64_t>() <= 0) {
    throw rule_error(where, key, rule_error::at::value,
                     where + ": '" + key + "' must be a positive integer, not " + shown(value));
  }
  return value.get<std::int64_t>();
}

day_t date_member(const json& object, const char* key, const std::string& where)
{
  const json& value = member(object, key, where);
  const auto day    = value.is_string() ? parse_date(value.get<std::string>()) : std::nullopt;
  if (!day) {
    throw rule_error(where, key, rule_error::at::value,
                     where + ": '" + key + "' must be a YYYY-MM-DD date, not " + shown(value));
  }
  return *day;
}

/// Shares are compared exactly, so they must be decimal fractions with at most 6 digits.
/// @param place the object's place in the rule set (`uveu`), where its fractions were written
ppm_t share_member(const json& object, const char* place, const char* key, const std::string& where,
                   const written_json& written)
{
  const json& value = member(object, key, where);
  if (!value.is_number()) {
    throw rule_error(where, key, rule_error::at::value,
                     where + ": '" + key + "' must be a number, not " + shown(value));
  }
  const double share = value.get<double>();
  // The decimals as written (0.0700000000001 has 13), not a tolerance around a multiple of 10^-6,
  // which took 0.0700000000001 for 0.07. An integer (0, 1) has none.
  const auto text             = written.fraction_text.find(std::string(place) + "." + key);
  const std::int64_t decimals = text == written.fraction_text.end() ? 0 : written_decimals(text->second);
  const double nearest       = std::round(share * static_cast<double>(ppm_one));
  // A minus sign on a share, even on 0 (`-0`, `-0.0`), is refused as on a chips table's
  // performance_density: a fraction of a total is written without one. (The JSON library keeps an
  // integer written with a sign as signed, one without as unsigned.)
  const bool minus = value.is_number_float() ? std::signbit(share) : !value.is_number_unsigned();
  if (minus || !(share >= 0.0 && share <= 1.0) || decimals > 6) {
    throw rule_error(
        where, key, rule_error::at::value,
        where + ": '" + key +
            "' must be a fraction between 0 and 1, written without a sign, with at most 6 decimal digits, "
            "not " +
            // As written: a double prints 0.07000000000000000001 as 0.07.
            (text != written.fraction_text.end() ? detail::terminal_text(text->second)
             : minus && value == 0               ? std::string("-0")  // an integer -0 prints as 0
                                                 : shown(value)));
  }
  return static_cast<ppm_t>(nearest);
}

}  // namespace

namespace {

/// @p e's message with the line and column of its place after the file's name (`rules.json:6:15:
/// 'h100_tpp' must be ...`): a member's value, a member's name, or an object's opening bracket.
/// Unchanged where the place is not known.
std::string placed(const rule_error& e, std::string_view text, const std::string& origin,
                   const written_json& written)
{
  const std::string message = e.what();
  const std::string object  = e.where.size() > origin.size() + 2 ? e.where.substr(origin.size() + 2) : "";
  const std::string member  = object.empty() ? e.key : object + "." + e.key;
  std::size_t at            = std::string_view::npos;
  const auto key_end        = written.key_end.find(e.point == rule_error::at::object ? object : member);
  if (e.point == rule_error::at::object && written.container_start.count(object) != 0) {
    at = written.container_start.at(object);
  } else if (key_end != written.key_end.end() && key_end->second > 0) {  // (an object given as a number too)
    at = key_end->second;
    if (e.point == rule_error::at::key) {
      at = name_start(text, at);
    } else {  // on past the colon to the value
      while (at < text.size() && std::string_view(" \t\r\n:").find(text[at]) != std::string_view::npos) {
        ++at;
      }
    }
  }
  if (at == std::string_view::npos || at > text.size() || message.compare(0, origin.size(), origin) != 0) {
    return message;
  }
  return origin + text_position(text, at) + message.substr(origin.size());
}

/// The rule set @p doc holds (`parse_rule_set`); its defects are `rule_error`s.
rule_set rule_set_of(const json& doc, const std::string& origin, const written_json& written)
{
  rule_set rules;
  const json& id = member(doc, "id", origin);
  if (!id.is_string() || id.get<std::string>().empty()) {
    throw rule_error(origin, "id", rule_error::at::value, origin + ": 'id' must be a non-empty string");
  }
  rules.id = id.get<std::string>();
  for (const char* text_key : {"title", "notes"}) {  // optional, but text where given
    if (doc.contains(text_key) && !doc[text_key].is_string()) {
      throw rule_error(origin, text_key, rule_error::at::value,
                       origin + ": '" + text_key + "' must be a string");
    }
  }
  if (doc.contains("title")) { rules.title = doc["title"].get<std::string>(); }
  rules.counting_starts = date_member(doc, "counting_starts", origin);
  rules.counting_ends   = date_member(doc, "counting_ends", origin);
  if (rules.counting_starts > rules.counting_ends) {
    throw rule_error(origin, "counting_ends", rule_error::at::value,
                     origin + ": counting_starts " + format_date(rules.counting_starts) +
                         " is after counting_ends " + format_date(rules.counting_ends));
  }
  rules.h100_tpp = positive_integer(doc, "h100_tpp", origin);

  const std::string cap_where = origin + ": country_cap";
  const json& cap             = member(doc, "country_cap", origin);
  rules.country_cap_tpp       = positive_integer(cap, "tpp", cap_where);
  rules.g2g_multiplier        = positive_integer(cap, "g2g_multiplier", cap_where);
  // SPEC §4 caps LICENSE lines and §1.3 does not name this list: a rule set without it caps
  // LICENSE lines, one with it the pathways it names.
  const json license   = json::array({"LICENSE"});
  const json& pathways = cap.contains("pathways") ? cap["pathways"] : license;
  if (!pathways.is_array() || pathways.empty()) {
    throw rule_error(cap_where, "pathways", rule_error::at::value,
                     cap_where + ": 'pathways' must be a non-empty list");
  }
  for (const auto& name : pathways) {
    bool found = false;
    for (int p = 0; p < pathway_count && name.is_string(); ++p) {
      if (detail::to_upper(name.get<std::string>()) == pathway_name(static_cast<pathway>(p))) {
        rules.country_cap_pathways |= static_cast<std::uint8_t>(1U << p);
        found = true;
      }
    }
    if (!found) {
      throw rule_error(cap_where, "pathways", rule_error::at::value,
                       cap_where + ": unknown pathway " + name.dump());
    }
  }

  const std::string lpp_where      = origin + ": lpp";
  const json& lpp                  = member(doc, "lpp", origin);
  rules.lpp_per_order_tpp          = positive_integer(lpp, "per_order_tpp", lpp_where);
  rules.lpp_per_consignee_year_tpp = positive_integer(lpp, "per_consignee_year_tpp", lpp_where);

  const json& phases = member(doc, "nveu_caps", origin);
  if (!phases.is_array() || phases.empty()) {
    throw rule_error(origin, "nveu_caps", rule_error::at::value,
                     origin + ": 'nveu_caps' must be a non-empty list");
  }
  for (std::size_t i = 0; i < phases.size(); ++i) {
    const std::string where = origin + ": nveu_caps[" + std::to_string(i) + "]";
    nveu_phase phase{date_member(phases[i], "through", where), positive_integer(phases[i], "tpp", where)};
    if (!rules.nveu_caps.empty() && phase.through <= rules.nveu_caps.back().through) {
      throw rule_error(where, "through", rule_error::at::value,
                       where +
                           ": phases must be in increasing 'through' order: " + format_date(phase.through) +
                           " is not after the phase before's " + format_date(rules.nveu_caps.back().through));
    }
    rules.nveu_caps.push_back(phase);
  }
  // Every in-window date must have a phase in force, or the NVEU limit would be undefined.
  if (rules.nveu_caps.back().through < rules.counting_ends) {
    throw rule_error(origin + ": nveu_caps[" + std::to_string(rules.nveu_caps.size() - 1) + "]", "through",
                     rule_error::at::value,
                     origin + ": the last nveu_caps phase ends before counting_ends (" +
                         format_date(rules.nveu_caps.back().through) + " < " +
                         format_date(rules.counting_ends) +
                         "): no NVEU cap would be in force after it; extend its 'through' or add a phase");
  }

  const std::string uveu_where       = origin + ": uveu";
  const json& uveu                   = member(doc, "uveu", origin);
  rules.uveu_max_tier2_country_share =
      share_member(uveu, "uveu", "max_tier2_country_share", uveu_where, written);
  rules.uveu_min_tier1_share       = share_member(uveu, "uveu", "min_tier1_share", uveu_where, written);
  rules.uveu_min_us_share_if_us_hq = share_member(uveu, "uveu", "min_us_share_if_us_hq", uveu_where, written);
  // Caps times the multiplier must stay exact.
  if (rules.country_cap_tpp > INT64_MAX / rules.g2g_multiplier) {
    throw rule_error(cap_where, "g2g_multiplier", rule_error::at::value,
                     cap_where + ": tpp x g2g_multiplier overflows 64 bits");
  }
  // Last, so that a misspelled required key is said to be missing.
  only_known_keys(doc,
                  {"id", "title", "notes", "counting_starts", "counting_ends", "h100_tpp", "country_cap",
                   "lpp", "nveu_caps", "uveu"},
                  origin);
  only_known_keys(cap, {"tpp", "g2g_multiplier", "pathways"}, cap_where);
  only_known_keys(lpp, {"per_order_tpp", "per_consignee_year_tpp"}, lpp_where);
  for (std::size_t i = 0; i < phases.size(); ++i) {
    only_known_keys(phases[i], {"through", "tpp"}, origin + ": nveu_caps[" + std::to_string(i) + "]");
  }
  only_known_keys(uveu, {"max_tier2_country_share", "min_tier1_share", "min_us_share_if_us_hq"}, uveu_where);
  return rules;
}

}  // namespace

rule_set parse_rule_set(std::string_view json_text, const std::string& origin)
{
  written_json written;
  const json doc = parse_rule_json(json_text, origin, written);
  try {
    return rule_set_of(doc, origin, written);
  } catch (const rule_error& e) {
    throw config_error(placed(e, json_text, origin, written));
  }
}

rule_set load_rule_set(const std::string& path)
{
  return parse_rule_set(read_input_file(path), path);
}

std::int64_t nveu_cap_on(const std::vector<nveu_phase>& phases, day_t date)
{
  // Phases ascend by `through`; a search, since this is asked for every NVEU line and a rule set
  // may list a phase a day (a scan cost lines x phases).
  const auto in_force = std::lower_bound(phases.begin(), phases.end(), date,
                                         [](const nveu_phase& phase, day_t d) { return phase.through < d; });
  return in_force != phases.end() ? in_force->tpp : phases.back().tpp;
}

}  // namespace capledger
