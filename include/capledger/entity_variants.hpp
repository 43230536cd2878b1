/// @file entity_variants.hpp
/// @brief Entity ids that probably name one consignee written two ways. Entities match by exact id
/// (SPEC §1.1, §1.2), and that stays; these only tell the analyst where it splits one consignee.
#pragma once

#include <capledger/entities.hpp>
#include <capledger/shipments.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace capledger {

/// @brief The key two ids written alike share: letters in lower case (ASCII, U+00C0 to U+04FF:
/// Latin-1, Latin Extended-A and -B, Greek and Coptic, Cyrillic, and U+1E00 to U+1EFF: Latin
/// Extended Additional, capitals by Unicode's simple mapping; other scripts' and the
/// Turkish dotted capital I keep theirs); the invisible U+200B, U+2060, U+FEFF and U+00AD (soft
/// hyphen) removed; each run of spaces, tabs and U+00A0 one space, none at either end. A key only
/// groups ids for `entity_variant_notes`; nothing matches by it.
[[nodiscard]] std::string entity_variant_key(std::string_view id);

/// @brief How many groups `entity_variant_notes` names by default: a log of millions of entities
/// must not flood stderr.
inline constexpr std::size_t entity_variant_groups_named = 20;

/// @brief How many spellings one note names (the first among them): past it the note counts the
/// rest, as `... and 5 more spelling(s): counted as ...`.
inline constexpr std::size_t entity_variant_spellings_named = 10;

/// @brief Where an entity id is written, as a note marks it. A group's ids come by the first of
/// their places in this order, then in byte order; an id is marked with each of its places.
enum class entity_place : std::uint8_t {
  proposed,       ///< `(proposed)`: the lines `check` weighs
  entities_file,  ///< `(entities file)`
  ledger,         ///< `(ledger)`: the ledger's stored lines, beside proposed ones
  lines,          ///< unmarked: the lines a report (or balance, or reconciliation) is over
  inventory,      ///< `(inventory)`: the inventory `reconcile` weighs against the ledger
};

/// @brief Notes for stderr (never for an output file: SPEC fixes those), one per group of two or
/// more distinct ids among @p line_entities, @p listed and @p inventory that share an
/// `entity_variant_key`:
/// `capledger: note: entity 'A' (entities file) is also written 'B', 'C': counted as separate
/// entities (entity ids match exactly)`. Ids are quoted as `detail::quoted` shows them and marked
/// as `entity_place` says (the lines' ids are `lines`). Groups come in key order; past @p at_most
/// of them, one more note counts the rest. One pass over the ids.
/// @param line_entities the entities of the lines (a log's, a ledger's)
/// @param listed        the entities file (empty where none is given)
/// @param inventory     the entities an inventory names (`reconcile`; empty elsewhere)
/// @param at_most       groups named
/// @return the notes, each without a line end; none when no ids are written alike
[[nodiscard]] std::vector<std::string> entity_variant_notes(
    const dictionary& line_entities, const entity_table& listed, const dictionary& inventory = {},
    std::size_t at_most = entity_variant_groups_named);

/// @brief The notes of `entity_variant_notes` for the groups that hold one of some ids (`check`'s
/// proposed lines' entities). Other ids are offered one at a time and kept only where written like
/// one of those: a ledger of millions of ids costs one key each, written in one reused buffer.
class entity_variants_of {
 public:
  /// @param ids   the ids a group must hold one of
  /// @param place where they are written
  entity_variants_of(const dictionary& ids, entity_place place);
  /// @brief Offers @p id, written at @p place (an id may be offered at several places).
  void add(std::string_view id, entity_place place);
  /// @return the notes, each without a line end; none when no id is written like one of the ids
  [[nodiscard]] std::vector<std::string> notes(std::size_t at_most = entity_variant_groups_named) const;

 private:
  /// Each key of the ids: the ids written so met, each with its places (bits by `entity_place`).
  std::map<std::string, std::map<std::string, unsigned>, std::less<>> groups_;
  std::string key_;  ///< the buffer each offered id's key is written in
};

}  // namespace capledger
