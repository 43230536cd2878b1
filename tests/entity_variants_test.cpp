/// @file entity_variants_test.cpp
/// @brief entity_variant_key and entity_variant_notes: ids written alike, told apart from distinct ones.
#include <capledger/entity_variants.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using capledger::dictionary;
using capledger::entity_place;
using capledger::entity_table;
using capledger::entity_variant_key;
using capledger::entity_variant_notes;
using capledger::entity_variants_of;

const std::string tail = ": counted as separate entities (entity ids match exactly)";

dictionary log_of(const std::vector<std::string>& ids)
{
  dictionary d;
  for (const auto& id : ids) { d.encode(id); }
  return d;
}

entity_table listing(const std::vector<std::string>& ids)
{
  entity_table table;
  for (const auto& id : ids) {
    table.index_of.emplace(id, static_cast<std::int32_t>(table.rows.size()));
    table.rows.push_back({});
    table.rows.back().id = id;
  }
  return table;
}

TEST(EntityVariantKey, FoldsAsciiCaseCollapsesBlanksDropsInvisibles)
{
  EXPECT_EQ(entity_variant_key("ACME Corp"), "acme corp");
  EXPECT_EQ(entity_variant_key("AZaz@[`{09"), "azaz@[`{09");  // only A-Z move
  EXPECT_EQ(entity_variant_key("  Acme \t\xc2\xa0 Corp\t"), "acme corp");
  EXPECT_EQ(entity_variant_key("Acme\xc2\xa0"
                               "Corp"),
            "acme corp");
  // Every other space is one too: U+202F (narrow no-break), U+2000, U+200A, U+3000 (ideographic).
  EXPECT_EQ(entity_variant_key("\xe2\x80\xaf"
                               "Acme\xe2\x80\x80\xe2\x80\x8a"
                               "Corp\xe3\x80\x80"
                               "AG"),
            "acme corp ag");
  // U+200B, U+2060, U+FEFF, U+00AD dropped, also between blanks (the run stays one space).
  EXPECT_EQ(entity_variant_key("\xef\xbb\xbf"
                               "A\xe2\x80\x8b"
                               "C\xe2\x81\xa0ME \xc2\xad Co\xc2\xadrp\xe2\x80\x8b"),
            "acme corp");
  // Kept: other characters near those bytes (U+00AC, U+200C), and a space is not removed.
  EXPECT_EQ(entity_variant_key("A\xc2\xac"
                               "B\xe2\x80\x8c"
                               "C"),
            "a\xc2\xac"
            "b\xe2\x80\x8c"
            "c");
  EXPECT_EQ(entity_variant_key("Acme Corp"), "acme corp");
  EXPECT_NE(entity_variant_key("AcmeCorp"), entity_variant_key("Acme Corp"));
  // Capitals of Latin-1, Latin Extended-A, Greek and Cyrillic lower-cased (the small letters worked
  // out from the Unicode charts): ÄRZTE, ŁÓDŹ, ΑΘΗΝΑ with Ά, ООО РОМАШКА with Ё, ҐРУНТ.
  EXPECT_EQ(entity_variant_key("\xc3\x84RZTE"), "\xc3\xa4rzte");
  EXPECT_EQ(entity_variant_key("\xc5\x81\xc3\x93"
                               "D\xc5\xb9"),
            "\xc5\x82\xc3\xb3"
            "d\xc5\xba");
  EXPECT_EQ(entity_variant_key("\xce\x91\xce\x98\xce\x97\xce\x9d\xce\x91 \xce\x86"),
            "\xce\xb1\xce\xb8\xce\xb7\xce\xbd\xce\xb1 \xce\xac");
  EXPECT_EQ(
      entity_variant_key(
          "\xd0\x9e\xd0\x9e\xd0\x9e  \xd0\xa0\xd0\x9e\xd0\x9c\xd0\x90\xd0\xa8\xd0\x9a\xd0\x90 \xd0\x81"),
      "\xd0\xbe\xd0\xbe\xd0\xbe \xd1\x80\xd0\xbe\xd0\xbc\xd0\xb0\xd1\x88\xd0\xba\xd0\xb0 \xd1\x91");
  EXPECT_EQ(entity_variant_key("\xd2\x90\xd0\xa0\xd0\xa3\xd0\x9d\xd0\xa2"),
            "\xd2\x91\xd1\x80\xd1\x83\xd0\xbd\xd1\x82");
  // Kept: small letters, × (U+00D7), ß, the Turkish İ (U+0130), and scripts without case (中).
  EXPECT_EQ(entity_variant_key("\xc3\xa4\xc3\x97\xc3\x9f\xc4\xb0\xe4\xb8\xad"),
            "\xc3\xa4\xc3\x97\xc3\x9f\xc4\xb0\xe4\xb8\xad");
}

TEST(EntityVariantNotes, ByCase)
{
  EXPECT_EQ(
      entity_variant_notes(log_of({"Acme Corp", "E2", "ACME Corp"}), listing({})),
      std::vector<std::string>{"capledger: note: entity 'ACME Corp' is also written 'Acme Corp'" + tail});
}

TEST(EntityVariantNotes, BySpaces)
{
  // Byte order: '\t' < ' ' < 'C'; the tab is shown escaped.
  EXPECT_EQ(
      entity_variant_notes(log_of({"Acme Corp", "Acme  Corp", "Acme\tCorp", " Acme Corp"}), listing({})),
      std::vector<std::string>{"capledger: note: entity ' Acme Corp' is also written 'Acme\\x09Corp', "
                               "'Acme  Corp', 'Acme Corp'" +
                               tail});
}

TEST(EntityVariantNotes, ByAnInvisibleCharacter)
{
  EXPECT_EQ(entity_variant_notes(log_of({"AC\xe2\x80\x8bME", "ACME"}), listing({})),
            std::vector<std::string>{"capledger: note: entity 'ACME' is also written 'AC\\u200bME'" + tail});
}

TEST(EntityVariantNotes, ByASoftHyphen)
{
  EXPECT_EQ(entity_variant_notes(log_of({"ACME", "AC\xc2\xadME"}), listing({})),
            std::vector<std::string>{"capledger: note: entity 'ACME' is also written 'AC\\u00adME'" + tail});
}

TEST(EntityVariantNotes, NamesTheEntitiesFileSpellingFirst)
{
  // Listed 'acme' comes first though 'ACME' sorts before it; an id in both is one spelling.
  EXPECT_EQ(entity_variant_notes(log_of({"ACME", "acme", "Other"}), listing({"acme", "Other"})),
            std::vector<std::string>{"capledger: note: entity 'acme' (entities file) is also written 'ACME'" +
                                     tail});
}

TEST(EntityVariantNotes, AVariantOnlyTheEntitiesFileHolds)
{
  EXPECT_EQ(entity_variant_notes(log_of({}), listing({"Acme Corp", "ACME  CORP"})),
            std::vector<std::string>{"capledger: note: entity 'ACME  CORP' (entities file) is also written "
                                     "'Acme Corp' (entities file)" +
                                     tail});
  EXPECT_EQ(entity_variant_notes(log_of({"Zeta"}), listing({"ZETA"})),
            std::vector<std::string>{"capledger: note: entity 'ZETA' (entities file) is also written 'Zeta'" +
                                     tail});
}

TEST(EntityVariantNotes, MarksTheInventorysIdsAndNamesThemAfterTheLines)
{
  // reconcile: 'Acme' is the ledger's and the inventory's, 'ACME' the inventory's alone, 'acme' the
  // ledger's alone: by first place (lines, then inventory), then byte order. 'Zeta' (entities file)
  // and 'ZETA' (inventory) meet in the inventory only. 'E1' in both: one id, no note.
  EXPECT_EQ(
      entity_variant_notes(log_of({"acme", "Acme", "E1"}), listing({"Zeta"}),
                           log_of({"ZETA", "ACME", "Acme", "E1"})),
      (std::vector<std::string>{
          "capledger: note: entity 'Acme' (inventory) is also written 'acme', 'ACME' (inventory)" + tail,
          "capledger: note: entity 'Zeta' (entities file) is also written 'ZETA' (inventory)" + tail}));
}

TEST(EntityVariantNotes, NoneForDistinctIds)
{
  EXPECT_TRUE(
      entity_variant_notes(log_of({"Acme Corp", "Acme Corp Ltd", "AcmeCorp", "Acme-Corp", "E1", "E2"}),
                           listing({"Acme Corp", "E3"}))
          .empty());
  // Letters that differ beyond case: ä and a, Ё and Е.
  EXPECT_TRUE(
      entity_variant_notes(log_of({"\xc3\xa4rzte", "arzte", "\xd0\x81", "\xd0\x95"}), listing({})).empty());
}

// Latin Extended-B and the rarer Greek and Coptic capitals too (small letters from the Unicode
// charts): ȘTEFAN and ȚARA (Romanian, comma below), CƠ SỞ's Ơ and Ư (Vietnamese), Ǆ and its title
// case ǅ, Ⱥ (whose small letter ⱥ, U+2C65, takes three bytes), ϴ (small θ), Ϲ (lunate sigma), Ϳ,
// Ϙ, Ϣ (Coptic); an unassigned code point (U+03A2) and the small letters stay as written.
TEST(EntityVariantKey, FoldsLatinExtendedBAndRareGreekCapitals)
{
  EXPECT_EQ(entity_variant_key("\xc8\x98TEFAN \xc8\x9a"
                               "ARA"),
            "\xc8\x99tefan \xc8\x9b"
            "ara");
  EXPECT_EQ(entity_variant_key("\xc6\xa0\xc6\xaf"), "\xc6\xa1\xc6\xb0");
  EXPECT_EQ(entity_variant_key("\xc7\x84\xc7\x85"), "\xc7\x86\xc7\x86");
  EXPECT_EQ(entity_variant_key("\xc8\xba"), "\xe2\xb1\xa5");
  EXPECT_EQ(entity_variant_key("\xcf\xb4\xcf\xb9\xcd\xbf\xcf\x98\xcf\xa2"),
            "\xce\xb8\xcf\xb2\xcf\xb3\xcf\x99\xcf\xa3");
  EXPECT_EQ(entity_variant_key("\xce\xa2\xc8\x99\xcf\x99"), "\xce\xa2\xc8\x99\xcf\x99");
  // Latin Extended Additional: CÔNG TY ĐẦU TƯ (Vietnamese; Ầ U+1EA6, small ầ U+1EA7), Ḃ, and ẞ (small ß).
  EXPECT_EQ(entity_variant_key("C\xc3\x94NG TY \xc4\x90\xe1\xba\xa6U T\xc6\xaf"),
            "c\xc3\xb4ng ty \xc4\x91\xe1\xba\xa7u t\xc6\xb0");
  EXPECT_EQ(entity_variant_key("\xe1\xb8\x82\xe1\xba\x9e"), "\xe1\xb8\x83\xc3\x9f");
}

TEST(EntityVariantNotes, ByCaseOutsideAscii)
{
  // ООО РОМАШКА listed, ооо ромашка in the log; Ärzte and ÄRZTE both in the log.
  EXPECT_EQ(
      entity_variant_notes(
          log_of({"\xd0\xbe\xd0\xbe\xd0\xbe \xd1\x80\xd0\xbe\xd0\xbc\xd0\xb0\xd1\x88\xd0\xba\xd0\xb0",
                  "\xc3\x84rzte", "\xc3\x84RZTE"}),
          listing({"\xd0\x9e\xd0\x9e\xd0\x9e \xd0\xa0\xd0\x9e\xd0\x9c\xd0\x90\xd0\xa8\xd0\x9a\xd0\x90"})),
      (std::vector<std::string>{
          "capledger: note: entity '\xc3\x84RZTE' is also written '\xc3\x84rzte': counted as separate "
          "entities (entity ids match exactly)",
          "capledger: note: entity '\xd0\x9e\xd0\x9e\xd0\x9e "
          "\xd0\xa0\xd0\x9e\xd0\x9c\xd0\x90\xd0\xa8\xd0\x9a\xd0\x90' (entities file) "
          "is also written '\xd0\xbe\xd0\xbe\xd0\xbe "
          "\xd1\x80\xd0\xbe\xd0\xbc\xd0\xb0\xd1\x88\xd0\xba\xd0\xb0': counted as separate entities "
          "(entity ids match exactly)"}));
}

TEST(EntityVariantNotes, NamesTheFirstGroupsInKeyOrderAndCountsTheRest)
{
  std::vector<std::string> ids;
  for (int g = 24; g >= 0; --g) {  // 25 groups, met in reverse key order
    const std::string n = (g < 10 ? "0" : "") + std::to_string(g);
    ids.push_back("E" + n);
    ids.push_back("e" + n);
  }
  const std::vector<std::string> notes = entity_variant_notes(log_of(ids), listing({}));
  ASSERT_EQ(notes.size(), 21U);
  EXPECT_EQ(notes[0], "capledger: note: entity 'E00' is also written 'e00'" + tail);
  EXPECT_EQ(notes[19], "capledger: note: entity 'E19' is also written 'e19'" + tail);
  EXPECT_EQ(notes[20], "capledger: note: and 5 more group(s) of entity ids written alike");
  // Exactly at the cap: all named, no count.
  ids.resize(40);  // groups 24 down to 5
  EXPECT_EQ(entity_variant_notes(log_of(ids), listing({})).size(), 20U);
  EXPECT_EQ(entity_variant_notes(log_of(ids), listing({}), {}, 1),
            (std::vector<std::string>{"capledger: note: entity 'E05' is also written 'e05'" + tail,
                                      "capledger: note: and 19 more group(s) of entity ids written alike"}));
}

TEST(EntityVariantNotes, NamesTheFirstSpellingsOfAGroupAndCountsTheRest)
{
  // The 16 spellings of "abcd" in either case, met in reverse byte order: the first ten in byte
  // order are named, the other six counted.
  std::vector<std::string> ids;
  for (int upper = 15; upper >= 0; --upper) {
    std::string id = "abcd";
    for (int i = 0; i < 4; ++i) {
      if ((upper & (8 >> i)) != 0) { id[i] = static_cast<char>(id[i] - 'a' + 'A'); }
    }
    ids.push_back(id);
  }
  const std::string first_ten =
      "capledger: note: entity 'ABCD' is also written 'ABCd', 'ABcD', 'ABcd', "
      "'AbCD', 'AbCd', 'AbcD', 'Abcd', 'aBCD', 'aBCd'";
  EXPECT_EQ(entity_variant_notes(log_of(ids), listing({})),
            std::vector<std::string>{first_ten + " and 6 more spelling(s)" + tail});
  // The first ten met (the same ten): all named, no count.
  ids.resize(10);
  EXPECT_EQ(entity_variant_notes(log_of(ids), listing({})), std::vector<std::string>{first_ten + tail});
}

/// check's notes: the proposed ids, then the entities file's and the ledger's offered one by one.
std::vector<std::string> proposed_notes(const std::vector<std::string>& proposed,
                                        const std::vector<std::string>& file,
                                        const std::vector<std::string>& ledger)
{
  entity_variants_of variants(log_of(proposed), entity_place::proposed);
  for (const auto& id : file) { variants.add(id, entity_place::entities_file); }
  for (const auto& id : ledger) { variants.add(id, entity_place::ledger); }
  return variants.notes();
}

TEST(EntityVariantsOf, NamesOnlyGroupsThatHoldAProposedId)
{
  // Other/OTHER (entities file) and Beta/BETA (ledger) hold no proposed id: no note. Key order:
  // 'acme corp' before 'zeta'; in a group the proposed spelling first, then byte order.
  EXPECT_EQ(proposed_notes({"Zeta", "ACME Corp", "E1"}, {"Other", "OTHER", "zeta"},
                           {"acme  corp", "Beta", "BETA", "Acme Corp", "E1"}),
            (std::vector<std::string>{
                "capledger: note: entity 'ACME Corp' (proposed) is also written 'Acme Corp' (ledger), "
                "'acme  corp' (ledger)" +
                    tail,
                "capledger: note: entity 'Zeta' (proposed) is also written 'zeta' (entities file)" + tail}));
}

TEST(EntityVariantsOf, MarksAnIdWithEveryPlaceItIsWritten)
{
  // 'ACME' sorts before 'acme', but the proposed spelling comes first; an id met twice is one.
  EXPECT_EQ(
      proposed_notes({"acme"}, {"ACME"}, {"acme", "ACME", "acme"}),
      std::vector<std::string>{
          "capledger: note: entity 'acme' (proposed, ledger) is also written 'ACME' (entities file, ledger)" +
          tail});
}

TEST(EntityVariantsOf, NoneForAProposedIdWrittenAsStored)
{
  EXPECT_TRUE(proposed_notes({"Acme Corp"}, {"Acme Corp"}, {"Acme Corp", "Beta", "BETA"}).empty());
  EXPECT_TRUE(proposed_notes({}, {"Acme Corp"}, {"ACME CORP"}).empty());
}

}  // namespace
