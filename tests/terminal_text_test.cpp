/// @file terminal_text_test.cpp
/// @brief Input text shown to people: `terminal_text`, stderr's `terminal_guard`, a table view.
#include <capledger/ledger.hpp>

#include "terminal_text.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using capledger::detail::terminal_guard;
using capledger::detail::terminal_text;

// ESC [2K (erase line), NUL, U+009B (CSI, a C1 control), U+202E (right-to-left override), a byte
// that is no UTF-8, a backslash: each escaped; letters of any script stay.
TEST(TerminalText, EscapesWhatDrivesATerminal)
{
  EXPECT_EQ(terminal_text(std::string("E\x1b[2K\0x\xc2\x9b\xe2\x80\xae\xff\\y", 15)),
            "E\\x1b[2K\\x00x\\u009b\\u202e\\xff\\\\y");
  EXPECT_EQ(terminal_text("a\nb\tc\rd\x7f"), "a\\x0ab\\x09c\\x0dd\\x7f");
  EXPECT_EQ(terminal_text("Caf\xc3\xa9 \xe4\xb8\xad \xd8\xb9 ~"),
            "Caf\xc3\xa9 \xe4\xb8\xad \xd8\xb9 ~");  // é 中 ع
  // C1's ends, U+0080 and U+009F, escaped; U+00A0 (no-break space, a space to the eye) too, U+00A1 kept.
  EXPECT_EQ(terminal_text("\xc2\x80\xc2\x9f\xc2\xa0\xc2\xa1"), "\\u0080\\u009f\\u00a0\xc2\xa1");
  // The soft hyphen U+00AD, invisible inside a word ("AC-ME" would look like "ACME"), escaped;
  // its neighbours U+00AC and U+00AE kept.
  EXPECT_EQ(terminal_text("\xc2\xac"
                          "AC\xc2\xadME\xc2\xae"),
            "\xc2\xac"
            "AC\\u00adME\xc2\xae");
  // Every bidirectional and format control named, and neighbours that are none: U+061B, U+200D,
  // U+2029, U+2030, U+2065, U+206A kept.
  EXPECT_EQ(terminal_text("\xd8\x9c\xe2\x80\x8e\xe2\x80\x8f\xe2\x80\xaa\xe2\x80\xab\xe2\x80\xac\xe2\x80\xad"
                          "\xe2\x81\xa6\xe2\x81\xa7\xe2\x81\xa8\xe2\x81\xa9"),
            "\\u061c\\u200e\\u200f\\u202a\\u202b\\u202c\\u202d\\u2066\\u2067\\u2068\\u2069");
  // Invisible characters that would make "AC?ME" look like "ACME": U+200B, U+2060, U+FEFF
  // escaped; the joiners U+200C and U+200D, which Persian and Indic names use, kept.
  EXPECT_EQ(terminal_text("AC\xe2\x80\x8bM\xe2\x81\xa0"
                          "E\xef\xbb\xbf"),
            "AC\\u200bM\\u2060E\\ufeff");
  EXPECT_EQ(terminal_text("\xe2\x80\x8c\xe2\x80\x8d"), "\xe2\x80\x8c\xe2\x80\x8d");
  EXPECT_EQ(terminal_text("\xd8\x9b\xe2\x80\x8d\xe2\x80\xa9\xe2\x80\xb0\xe2\x81\xa5\xe2\x81\xaa"),
            "\xd8\x9b\xe2\x80\x8d\xe2\x80\xa9\xe2\x80\xb0\xe2\x81\xa5\xe2\x81\xaa");
  // Every space but U+0020 looks like one: U+1680, U+2000, U+200A, U+202F, U+205F, U+3000
  // escaped; their neighbours U+167F, U+1FFF, U+205E, U+3001 kept (U+200B is listed above).
  EXPECT_EQ(terminal_text("\xe1\x9a\x80 \xe2\x80\x80 \xe2\x80\x8a \xe2\x80\xaf \xe2\x81\x9f \xe3\x80\x80"),
            "\\u1680 \\u2000 \\u200a \\u202f \\u205f \\u3000");
  EXPECT_EQ(terminal_text("\xe1\x99\xbf\xe1\xbf\xbf\xe2\x81\x9e\xe3\x80\x81"),
            "\xe1\x99\xbf\xe1\xbf\xbf\xe2\x81\x9e\xe3\x80\x81");
  // Not UTF-8, byte by byte: an overlong '/', a surrogate, past U+10FFFF, a lone continuation,
  // a sequence cut short by the text's end and one cut short by an ASCII letter.
  EXPECT_EQ(terminal_text("\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\x80|\xe2\x80"),
            "\\xc0\\xaf|\\xed\\xa0\\x80|\\xf4\\x90\\x80\\x80|\\x80|\\xe2\\x80");
  EXPECT_EQ(terminal_text("\xe2\x80z"), "\\xe2\\x80z");
  EXPECT_EQ(terminal_text("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");  // U+1F600, four bytes, kept
  EXPECT_EQ(terminal_text(""), "");
}

/// The code points of @p text if it is well-formed UTF-8 (written here from RFC 3629's table, not
/// with the decoder under test), else nothing.
std::optional<std::vector<char32_t>> code_points(const std::string& text)
{
  std::vector<char32_t> out;
  for (std::size_t i = 0; i < text.size();) {
    const auto b    = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const auto tail = [&](std::size_t k) { return k < text.size() && (b(k) & 0xC0U) == 0x80U; };
    if (b(i) < 0x80) {
      out.push_back(b(i++));
    } else if (b(i) >= 0xC2 && b(i) <= 0xDF && tail(i + 1)) {
      out.push_back(((b(i) & 0x1FU) << 6) | (b(i + 1) & 0x3FU));
      i += 2;
    } else if ((b(i) & 0xF0U) == 0xE0 && tail(i + 1) && tail(i + 2)) {
      const char32_t c = ((b(i) & 0x0FU) << 12) | ((b(i + 1) & 0x3FU) << 6) | (b(i + 2) & 0x3FU);
      if (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF)) { return std::nullopt; }
      out.push_back(c);
      i += 3;
    } else if (b(i) >= 0xF0 && b(i) <= 0xF4 && tail(i + 1) && tail(i + 2) && tail(i + 3)) {
      const char32_t c = ((b(i) & 0x07U) << 18) | ((b(i + 1) & 0x3FU) << 12) | ((b(i + 2) & 0x3FU) << 6) |
                         (b(i + 3) & 0x3FU);
      if (c < 0x10000 || c > 0x10FFFF) { return std::nullopt; }
      out.push_back(c);
      i += 4;
    } else {
      return std::nullopt;
    }
  }
  return out;
}

/// Undoes the escapes the README lists: `\\`, `\xHH` (a byte), `\uXXXX` (a code point, UTF-8).
std::string unescaped(const std::string& text)
{
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out += text[i];
    } else if (text[i + 1] == '\\') {
      out += '\\';
      ++i;
    } else if (text[i + 1] == 'x') {
      out += static_cast<char>(std::stoi(text.substr(i + 2, 2), nullptr, 16));
      i += 3;
    } else {
      const auto c = static_cast<char32_t>(std::stoi(text.substr(i + 2, 4), nullptr, 16));
      if (c < 0x800) {
        out += static_cast<char>(0xC0 | (c >> 6));
      } else {
        out += static_cast<char>(0xE0 | (c >> 12));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      }
      out += static_cast<char>(0x80 | (c & 0x3F));
      i += 5;
    }
  }
  return out;
}

// On random texts of ASCII, controls and whole, broken and cut-off UTF-8: the escaped text is
// well-formed UTF-8 without a control or listed character, and reads back as the input.
TEST(TerminalText, EscapedTextIsCleanAndReadsBack)
{
  // clang-format off
  const std::vector<std::string> pieces = {
      "a", "Z", " ", "\\", "x", "u", "\x1b", std::string(1, '\0'), "\n", "\x7f", "\xc3\xa9", "\xe4\xb8\xad",
      "\xf0\x9f\x98\x80", "\xc2\x9b", "\xe2\x80\xae", "\xe2\x80\x8b", "\xef\xbb\xbf",
      "\xc2\xad", "\xc2\xa0", "\xe2\x80\xaf", "\xe3\x80\x80", "\xe2\x80\x8d", "\xc2", "\xe2\x80", "\x80",
      "\xff", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80"};
  // clang-format on
  const auto listed = [](char32_t c) {
    return c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F) || c == 0x00A0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x202F || c == 0x205F || c == 0x3000 || c == 0x00AD ||
           c == 0x061C || c == 0x200B || c == 0x200E || c == 0x200F || (c >= 0x202A && c <= 0x202E) ||
           c == 0x2060 || (c >= 0x2066 && c <= 0x2069) || c == 0xFEFF;
  };
  std::mt19937 random(20261127);
  for (int round = 0; round < 20000; ++round) {
    std::string text;
    for (int n = static_cast<int>(random() % 12); n > 0; --n) { text += pieces[random() % pieces.size()]; }
    const std::string escaped = terminal_text(text);
    const auto points         = code_points(escaped);
    ASSERT_TRUE(points.has_value()) << "not UTF-8: " << escaped;
    for (const char32_t c : *points) {
      ASSERT_FALSE(listed(c)) << "U+" << std::hex << c << " in " << escaped;
    }
    ASSERT_EQ(unescaped(escaped), text) << escaped;
  }
}

TEST(TerminalText, QuotedIsTheEscapedValueInQuotes)
{
  EXPECT_EQ(capledger::detail::quoted("it's\x1b"), "'it's\\x1b'");
}

// The guard escapes what passes through but `\n` and `\`: a message's lines, a value's escapes.
TEST(TerminalGuard, EscapesAStreamButLineEndsAndBackslashes)
{
  std::ostringstream sink;
  std::streambuf* const own = sink.rdbuf();
  {
    const terminal_guard guard(sink);
    EXPECT_NE(static_cast<std::ostream&>(sink).rdbuf(), own);
    sink << "capledger: " << std::string("p\x1b]0;t\x07\0\xc2\x9b\xe2\x80\xae\xff\\x\tq", 18) << '\n'
         << 42 << "\n";
  }
  EXPECT_EQ(static_cast<std::ostream&>(sink).rdbuf(), own);  // put back
  EXPECT_EQ(sink.str(), "capledger: p\\x1b]0;t\\x07\\x00\\u009b\\u202e\\xff\\x\\x09q\n42\n");
}

// A character written in pieces is one character; one never finished is bytes.
TEST(TerminalGuard, HoldsACharacterWrittenInPieces)
{
  std::ostringstream sink;
  {
    const terminal_guard guard(sink);
    sink << "a\xe2\x80";
    sink.flush();
    EXPECT_EQ(sink.str(), "a");
    sink << '\xae' << "b\xe2"
         << "\x80"
         << "z\xf0\x9f";
  }
  EXPECT_EQ(sink.str(), "a\\u202eb\\xe2\\x80z\\xf0\\x9f");
}

TEST(TerminalGuard, AFailedWriteShowsOnTheStream)
{
  struct refusing : std::streambuf {
    int_type overflow(int_type) override { return traits_type::eof(); }
  } nowhere;
  std::ostream out(&nowhere);
  {
    const terminal_guard guard(out);
    out << "lost";
  }
  EXPECT_TRUE(out.bad());  // also after the guard gave the stream its buffer back

  // Text taken, the flush at the end failing (stdout on a full disk).
  struct unflushable : std::streambuf {
    int_type overflow(int_type c) override { return c; }
    int sync() override { return -1; }
  } full;
  std::ostream late(&full);
  {
    const terminal_guard guard(late);
    late << "taken";
    EXPECT_TRUE(late.good());
  }
  EXPECT_TRUE(late.bad());
}

// The balances table: cells escaped, and each column as wide as its widest cell shown (the
// escaped text, 31 characters for this entity), so the columns stay aligned. The CSV keeps the bytes.
TEST(TerminalText, BalancesTableEscapesAndAligns)
{
  capledger::cap_balance b;
  b.cap                          = "LPP_ORDER";
  b.entity                       = std::string("E\x1b[2K\0\xc2\x9b\xe2\x80\xae\xff\\x", 14);
  b.country                      = "AE";
  b.order_id                     = "O\t1";
  b.limit_tpp                    = 100;
  b.consumed_tpp                 = 50;
  b.used_pct                     = "50.00";
  const std::string entity_shown = "E\\x1b[2K\\x00\\u009b\\u202e\\xff\\\\x";
  ASSERT_EQ(entity_shown.size(), 31U);
  const auto pad = [](std::size_t n) { return std::string(n, ' '); };
  // Widths: cap 9, entity 31, country 7, year 4, then the headers' (numbers right-aligned), order_id 8.
  EXPECT_EQ(capledger::balances_text({b}, "table"),
            "cap" + pad(6) + "  entity" + pad(25) +
                "  country  year  limit_tpp  consumed_tpp  remaining_tpp  used_pct  warn_level  order_id\n" +
                "LPP_ORDER  " + entity_shown + "  AE" + pad(5) + "  " + pad(4) + "  " + pad(6) + "100  " +
                pad(10) + "50  " + pad(11) + "50  " + pad(3) + "50.00  " + pad(10) + "  O\\x091\n");
  EXPECT_EQ(capledger::balances_text({b}, "csv"),
            "cap,entity,country,year,limit_tpp,consumed_tpp,remaining_tpp,used_pct,warn_level,order_id\n"
            "LPP_ORDER," +
                b.entity + ",AE,,100,50,50,50.00,,O\t1\n");
}

// Terminal columns, not bytes: wide CJK and Hangul 2, a combining accent and a joiner 0, an emoji 2,
// the marks of Indic and Thai script by their category.
TEST(TerminalText, DisplayWidthCountsTerminalColumns)
{
  using capledger::detail::display_width;
  EXPECT_EQ(display_width("ACME"), 4U);
  EXPECT_EQ(display_width("\xe5\x8d\x8e\xe4\xb8\xba"), 4U);          // 华为: 6 bytes
  EXPECT_EQ(display_width("\xec\x82\xbc\xec\x84\xb1"), 4U);          // 삼성: 6 bytes
  EXPECT_EQ(display_width("Cafe\xcc\x81"), 4U);                      // e + U+0301
  EXPECT_EQ(display_width("Caf\xc3\xa9"), 4U);                       // é precomposed
  EXPECT_EQ(display_width("\xd8\xb4\xd8\xb1\xd9\x83\xd8\xa9"), 4U);  // شركة
  EXPECT_EQ(display_width("a\xe2\x80\x8d"
                          "b"),
            2U);                                      // a ZWJ b
  EXPECT_EQ(display_width("\xf0\x9f\x98\x80!"), 3U);  // U+1F600 and '!'
  EXPECT_EQ(display_width("\xef\xbc\xa1"), 2U);       // fullwidth A
  EXPECT_EQ(display_width("\\u202e"), 6U);            // an escape as shown
  // Marks of other scripts by their Unicode category: a nonspacing mark (Mn) takes no column, a
  // spacing one (Mc) one, as wcwidth has it.
  EXPECT_EQ(display_width("\xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\xa8\xe0\xa5\x8d\xe0\xa4\xa6\xe0\xa5\x80"),
            5U);  // हिन्दी: ह, ि (Mc), न, ् (virama, Mn), द, ी (Mc)
  EXPECT_EQ(display_width("\xe0\xb8\x97\xe0\xb8\xb5\xe0\xb9\x88"), 1U);  // ที่: ท and two Mn marks
  EXPECT_EQ(display_width("\xe0\xae\xa4\xe0\xae\xae\xe0\xae\xbf\xe0\xae\xb4\xe0\xaf\x8d"),
            4U);  // தமிழ்: த, ம, ி (Mc), ழ, ் (Mn)
}

// The balances table lines up a consignee named in Chinese and one with a combining accent.
TEST(TerminalText, BalancesTableAlignsByTerminalColumns)
{
  capledger::cap_balance wide, accent;
  wide.cap = accent.cap = "LPP_ANNUAL";
  wide.entity           = "\xe5\x8d\x8e\xe4\xb8\xba";  // 华为: 2 characters, 4 columns, 6 bytes
  accent.entity         = "Cafe\xcc\x81s";             // Cafés: 5 columns, 7 bytes
  wide.country = accent.country = "AE";
  wide.year = accent.year = "2025";
  wide.limit_tpp = accent.limit_tpp = 100;
  wide.used_pct = accent.used_pct = "0.00";
  const auto pad                  = [](std::size_t n) { return std::string(n, ' '); };
  // entity column 6 wide (the header); after it the columns as in BalancesTableEscapesAndAligns.
  const std::string rest = "  AE" + pad(5) + "  2025  " + pad(6) + "100  " + pad(11) + "0  " + pad(10) +
                           "100  " + pad(4) + "0.00\n";
  EXPECT_EQ(capledger::balances_text({wide, accent}, "table"),
            "cap         entity  country  year  limit_tpp  consumed_tpp  remaining_tpp  used_pct  warn_level "
            " order_id\n"
            "LPP_ANNUAL  " +
                wide.entity + pad(2) + rest + "LPP_ANNUAL  " + accent.entity + pad(1) + rest);
}

}  // namespace
