/// @file entity_variants.hpp
/// @brief Entity ids that probably name one consignee written two ways. Entities match by exact id
/// (SPEC §1.1, §1.2), and that stays; these only tell the analyst where it splits one consignee.
#pragma once

#include <capledger/entities.hpp>
#include <capledger/shipments.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace capledger {

/// @brief The key two ids written alike share: ASCII letters in lower case; the invisible U+200B,
/// U+2060, U+FEFF and U+00AD (soft hyphen) removed; each run of spaces, tabs and U+00A0 one space,
/// none at either end. Letters outside ASCII keep their case (`Ä` and `ä` give two keys): no
/// Unicode case folding. A key only groups ids for `entity_variant_notes`; nothing matches by it.
[[nodiscard]] std::string entity_variant_key(std::string_view id);

/// @brief How many groups `entity_variant_notes` names by default: a log of millions of entities
/// must not flood stderr.
inline constexpr std::size_t entity_variant_groups_named = 20;

/// @brief Notes for stderr (never for an output file: SPEC fixes those), one per group of two or
/// more distinct ids among @p line_entities and @p listed that share an `entity_variant_key`:
/// `capledger: note: entity 'A' (entities file) is also written 'B', 'C': counted as separate
/// entities (entity ids match exactly)`. Ids are quoted as `detail::quoted` shows them; those of the
/// entities file come first in a group and are marked, then the others in byte order. Groups come
/// in key order; past @p at_most of them, one more note counts the rest. One pass over the ids.
/// @param line_entities the entities of the lines (a log's, a ledger's, proposed lines')
/// @param listed        the entities file (empty where none is given)
/// @param at_most       groups named
/// @return the notes, each without a line end; none when no ids are written alike
[[nodiscard]] std::vector<std::string> entity_variant_notes(
    const dictionary& line_entities, const entity_table& listed,
    std::size_t at_most = entity_variant_groups_named);

}  // namespace capledger
