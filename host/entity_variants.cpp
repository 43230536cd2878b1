/// @file entity_variants.cpp
/// @brief Groups entity ids written alike (case, spacing, invisible characters) for a note on stderr.
#include <capledger/entity_variants.hpp>

#include "csv.hpp"
#include "terminal_text.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>

namespace capledger {

namespace {

// UTF-8 of the characters a key drops (entity ids are checked UTF-8).
constexpr std::string_view invisible[] = {"\xE2\x80\x8B", "\xE2\x81\xA0", "\xEF\xBB\xBF", "\xC2\xAD"};

bool starts_with(std::string_view text, std::size_t at, std::string_view prefix)
{
  return text.compare(at, prefix.size(), prefix) == 0;
}

/// Capitals with a small letter, U+00C0 to U+04FF (Latin-1, Latin Extended-A and -B, Greek and
/// Coptic, Cyrillic) and U+1E00 to U+1EFF (Latin Extended Additional: Vietnamese's toned vowels):
/// each run `first` to `last` in steps of `step` maps to the code point `delta` away. Unicode 14's simple
/// lower-case mappings (Python's `unicodedata`), the Turkish dotted capital I (U+0130, whose small letter
/// depends on the language) left out; in code-point order.
struct case_run {
  char32_t first, last;
  int step, delta;
};
constexpr case_run capitals[] = {
    {0x00C0, 0x00D6, 1, 32},   {0x00D8, 0x00DE, 1, 32},    {0x0100, 0x012E, 2, 1},
    {0x0132, 0x0136, 2, 1},    {0x0139, 0x0147, 2, 1},     {0x014A, 0x0176, 2, 1},
    {0x0178, 0x0178, 1, -121}, {0x0179, 0x017D, 2, 1},     {0x0181, 0x0181, 1, 210},
    {0x0182, 0x0184, 2, 1},    {0x0186, 0x0186, 1, 206},   {0x0187, 0x0187, 1, 1},
    {0x0189, 0x018A, 1, 205},  {0x018B, 0x018B, 1, 1},     {0x018E, 0x018E, 1, 79},
    {0x018F, 0x018F, 1, 202},  {0x0190, 0x0190, 1, 203},   {0x0191, 0x0191, 1, 1},
    {0x0193, 0x0193, 1, 205},  {0x0194, 0x0194, 1, 207},   {0x0196, 0x0196, 1, 211},
    {0x0197, 0x0197, 1, 209},  {0x0198, 0x0198, 1, 1},     {0x019C, 0x019C, 1, 211},
    {0x019D, 0x019D, 1, 213},  {0x019F, 0x019F, 1, 214},   {0x01A0, 0x01A4, 2, 1},
    {0x01A6, 0x01A6, 1, 218},  {0x01A7, 0x01A7, 1, 1},     {0x01A9, 0x01A9, 1, 218},
    {0x01AC, 0x01AC, 1, 1},    {0x01AE, 0x01AE, 1, 218},   {0x01AF, 0x01AF, 1, 1},
    {0x01B1, 0x01B2, 1, 217},  {0x01B3, 0x01B5, 2, 1},     {0x01B7, 0x01B7, 1, 219},
    {0x01B8, 0x01B8, 1, 1},    {0x01BC, 0x01BC, 1, 1},     {0x01C4, 0x01C4, 1, 2},
    {0x01C5, 0x01C5, 1, 1},    {0x01C7, 0x01C7, 1, 2},     {0x01C8, 0x01C8, 1, 1},
    {0x01CA, 0x01CA, 1, 2},    {0x01CB, 0x01DB, 2, 1},     {0x01DE, 0x01EE, 2, 1},
    {0x01F1, 0x01F1, 1, 2},    {0x01F2, 0x01F4, 2, 1},     {0x01F6, 0x01F6, 1, -97},
    {0x01F7, 0x01F7, 1, -56},  {0x01F8, 0x021E, 2, 1},     {0x0220, 0x0220, 1, -130},
    {0x0222, 0x0232, 2, 1},    {0x023A, 0x023A, 1, 10795}, {0x023B, 0x023B, 1, 1},
    {0x023D, 0x023D, 1, -163}, {0x023E, 0x023E, 1, 10792}, {0x0241, 0x0241, 1, 1},
    {0x0243, 0x0243, 1, -195}, {0x0244, 0x0244, 1, 69},    {0x0245, 0x0245, 1, 71},
    {0x0246, 0x024E, 2, 1},    {0x0370, 0x0372, 2, 1},     {0x0376, 0x0376, 1, 1},
    {0x037F, 0x037F, 1, 116},  {0x0386, 0x0386, 1, 38},    {0x0388, 0x038A, 1, 37},
    {0x038C, 0x038C, 1, 64},   {0x038E, 0x038F, 1, 63},    {0x0391, 0x03A1, 1, 32},
    {0x03A3, 0x03AB, 1, 32},   {0x03CF, 0x03CF, 1, 8},     {0x03D8, 0x03EE, 2, 1},
    {0x03F4, 0x03F4, 1, -60},  {0x03F7, 0x03F7, 1, 1},     {0x03F9, 0x03F9, 1, -7},
    {0x03FA, 0x03FA, 1, 1},    {0x03FD, 0x03FF, 1, -130},  {0x0400, 0x040F, 1, 80},
    {0x0410, 0x042F, 1, 32},   {0x0460, 0x0480, 2, 1},     {0x048A, 0x04BE, 2, 1},
    {0x04C0, 0x04C0, 1, 15},   {0x04C1, 0x04CD, 2, 1},     {0x04D0, 0x04FE, 2, 1},
    {0x1E00, 0x1E94, 2, 1},    {0x1E9E, 0x1E9E, 1, -7615}, {0x1EA0, 0x1EFE, 2, 1}};

/// The small letter of capital @p c in the scripts a consignee's name is likely written in beside
/// ASCII (`capitals`); anything else as it is.
char32_t lower_case(char32_t c)
{
  const case_run* run = std::upper_bound(std::begin(capitals), std::end(capitals), c,
                                         [](char32_t value, const case_run& r) { return value < r.first; });
  if (run == std::begin(capitals)) { return c; }
  --run;
  if (c > run->last || (c - run->first) % static_cast<char32_t>(run->step) != 0) { return c; }
  return static_cast<char32_t>(static_cast<std::int64_t>(c) + run->delta);
}

/// Appends code point @p c (below U+10000) to @p out in UTF-8.
void append_utf8(char32_t c, std::string& out)
{
  if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
  } else {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
  }
  out += static_cast<char>(0x80 | (c & 0x3F));
}

/// Writes @p id's key over @p key: one buffer serves every id.
void write_key(std::string_view id, std::string& key)
{
  key.clear();
  bool blank = false;  // a run of blanks was passed: one space before the next character kept
  for (std::size_t at = 0; at < id.size();) {
    const char c = id[at];
    if (c == ' ' || c == '\t') {
      blank = true;
      ++at;
      continue;
    }
    if (static_cast<unsigned char>(c) >= 0x80) {
      const auto* dropped = std::find_if(std::begin(invisible), std::end(invisible),
                                         [&](std::string_view s) { return starts_with(id, at, s); });
      if (dropped != std::end(invisible)) {
        at += dropped->size();
        continue;
      }
      const detail::utf8_sequence character = detail::utf8_at(id, at);
      if (character.length > 0 && detail::other_space(character.code_point)) {
        blank = true;
        at += character.length;
        continue;
      }
      if (const char32_t lower = lower_case(character.code_point);
          character.length > 0 && lower != character.code_point) {
        if (blank && !key.empty()) { key += ' '; }
        blank = false;
        append_utf8(lower, key);
        at += character.length;
        continue;
      }
    }
    if (blank && !key.empty()) { key += ' '; }
    blank = false;
    key += c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    ++at;
  }
}

}  // namespace

std::string entity_variant_key(std::string_view id)
{
  std::string key;
  write_key(id, key);
  return key;
}

namespace {

/// One spelling of a group: an id and where it is written (bits by `entity_place`).
struct spelling {
  std::string_view id;
  unsigned places;
};

unsigned bit(entity_place place)
{
  return 1U << static_cast<unsigned>(place);
}

/// The notes on @p groups (by key: the notes' order), each the spellings met with that key, an id
/// possibly more than once: the one place ids written alike are grouped and named.
std::vector<std::string> notes_of(std::map<std::string, std::vector<spelling>> groups, std::size_t at_most)
{
  const auto first_place = [](const spelling& s) { return s.places & (~s.places + 1); };  // lowest bit
  for (auto at = groups.begin(); at != groups.end();) {
    // Each id once, with all its places; then by first place, then byte order.
    std::vector<spelling>& group = at->second;
    std::sort(group.begin(), group.end(), [](const spelling& a, const spelling& b) { return a.id < b.id; });
    std::size_t kept = 0;
    for (const spelling& s : group) {
      if (kept > 0 && group[kept - 1].id == s.id) {
        group[kept - 1].places |= s.places;
      } else {
        group[kept++] = s;
      }
    }
    group.resize(kept);
    std::stable_sort(group.begin(), group.end(),
                     [&](const spelling& a, const spelling& b) { return first_place(a) < first_place(b); });
    at = group.size() < 2 ? groups.erase(at) : std::next(at);  // one id, or keys that share a hash
  }

  constexpr std::pair<entity_place, const char*> marks[] = {{entity_place::proposed, "proposed"},
                                                            {entity_place::entities_file, "entities file"},
                                                            {entity_place::ledger, "ledger"},
                                                            {entity_place::inventory, "inventory"}};

  const auto shown = [&](const spelling& s) {
    std::string text = detail::quoted(s.id), mark;
    for (const auto& [place, name] : marks) {
      if ((s.places & bit(place)) != 0) { mark += (mark.empty() ? "" : ", ") + std::string(name); }
    }
    return mark.empty() ? text : text + " (" + mark + ")";
  };
  std::vector<std::string> notes;
  for (const auto& named : groups) {
    const std::vector<spelling>& group = named.second;
    if (notes.size() == at_most) {
      notes.push_back("capledger: note: and " + std::to_string(groups.size() - at_most) +
                      " more group(s) of entity ids written alike");
      break;
    }
    // A crafted log can write one id a million ways: a note names the first ones and counts the
    // rest, so stderr stays readable (a million spellings made 24 MB of one note).
    std::string note = "capledger: note: entity " + shown(group.front()) + " is also written ";
    const std::size_t named_spellings = std::min(group.size(), entity_variant_spellings_named);
    for (std::size_t i = 1; i < named_spellings; ++i) { note += (i > 1 ? ", " : "") + shown(group[i]); }
    if (named_spellings < group.size()) {
      note += " and " + std::to_string(group.size() - named_spellings) + " more spelling(s)";
    }
    notes.push_back(note + ": counted as separate entities (entity ids match exactly)");
  }
  return notes;
}

}  // namespace

std::vector<std::string> entity_variant_notes(const dictionary& line_entities, const entity_table& listed,
                                              const dictionary& inventory, std::size_t at_most)
{
  // Every id of the entities file, the lines and the inventory (one in two of them is met twice)
  // by its key's hash, sorted: ids written alike share a hash, so keys are built again and compared
  // only in runs of equal hashes of two or more ids (few or none). A key kept for each id, and a
  // look-up in the entities file for each line's id, cost 0.5 s for a million ids.
  std::vector<std::pair<std::size_t, spelling>> by_hash;
  by_hash.reserve(listed.rows.size() + static_cast<std::size_t>(line_entities.size()) +
                  static_cast<std::size_t>(inventory.size()));
  std::string key;
  const auto add = [&](std::string_view id, entity_place place) {
    write_key(id, key);
    by_hash.push_back({std::hash<std::string_view>{}(key), {id, bit(place)}});
  };
  for (const entity_info& row : listed.rows) { add(row.id, entity_place::entities_file); }
  for (std::int32_t e = 0; e < line_entities.size(); ++e) { add(line_entities.text(e), entity_place::lines); }
  for (std::int32_t e = 0; e < inventory.size(); ++e) { add(inventory.text(e), entity_place::inventory); }
  std::sort(by_hash.begin(), by_hash.end(), [](const auto& a, const auto& b) { return a.first < b.first; });

  std::map<std::string, std::vector<spelling>> groups;
  for (std::size_t run = 0, end = 0; run < by_hash.size(); run = end) {
    const std::string_view first = by_hash[run].second.id;
    bool one_id                  = true;
    for (end = run + 1; end < by_hash.size() && by_hash[end].first == by_hash[run].first; ++end) {
      one_id = one_id && by_hash[end].second.id == first;
    }
    if (one_id) { continue; }
    for (std::size_t i = run; i < end; ++i) {
      groups[entity_variant_key(by_hash[i].second.id)].push_back(by_hash[i].second);
    }
  }
  return notes_of(std::move(groups), at_most);
}

entity_variants_of::entity_variants_of(const dictionary& ids, entity_place place)
{
  for (std::int32_t e = 0; e < ids.size(); ++e) {
    groups_[entity_variant_key(ids.text(e))][ids.text(e)] |= bit(place);
  }
}

void entity_variants_of::add(std::string_view id, entity_place place)
{
  write_key(id, key_);
  const auto group = groups_.find(key_);
  if (group != groups_.end()) { group->second[std::string(id)] |= bit(place); }
}

std::vector<std::string> entity_variants_of::notes(std::size_t at_most) const
{
  std::map<std::string, std::vector<spelling>> groups;
  for (const auto& [key, ids] : groups_) {
    for (const auto& [id, places] : ids) { groups[key].push_back({id, places}); }
  }
  return notes_of(std::move(groups), at_most);
}

}  // namespace capledger
