/// @file terminal_text.hpp
/// @brief Text from input files as a terminal may show it: no byte of it moves the cursor,
/// recolours, hides or reorders what the analyst reads, and the escaped form reads back as one text.
#pragma once

#include <ostream>
#include <streambuf>
#include <string>
#include <string_view>

namespace capledger::detail {

/// @brief @p text with everything a terminal acts on escaped, for a value shown to people (a
/// table cell, a value quoted in a message): C0 controls (`\n` and `\t` too) and DEL as `\xHH`;
/// C1 controls, the bidirectional and format controls U+061C, U+200E, U+200F, U+202A-U+202E
/// and U+2066-U+2069, every space but U+0020 (`other_space`), and the invisible U+00AD, U+200B,
/// U+2060 and U+FEFF as `\uXXXX`; a byte that is no part
/// of well-formed UTF-8 as `\xHH`; and `\` as `\\`, so that an escape in the output was made here. Hex digits
/// are lower-case. Printable ASCII and every other UTF-8 character stay as they are. Data outputs keep their
/// bytes.
[[nodiscard]] std::string terminal_text(std::string_view text);

/// @brief Whether @p c is a space other than U+0020 (Unicode's space separators: U+00A0, U+1680,
/// U+2000-U+200A, U+202F, U+205F, U+3000): it looks like one, so names holding it are shown
/// escaped and read as spaced alike.
[[nodiscard]] bool other_space(char32_t c) noexcept;

/// @brief The columns a terminal gives @p shown (text `terminal_text` made: well-formed UTF-8,
/// no controls), for aligning tables: 2 for East Asian wide and fullwidth characters (CJK, Hangul,
/// fullwidth forms, emoji), 0 for nonspacing and enclosing marks, variation selectors and the
/// joiners, 1 for the rest (spacing marks included), as glibc's wcwidth counts them.
[[nodiscard]] std::size_t display_width(std::string_view shown);

/// @brief @p text as `terminal_guard` passes it on to stderr: escaped like `terminal_text`, but
/// `\n` and `\` kept. For what is written to stderr around the guard (a signal handler's message).
[[nodiscard]] std::string message_text(std::string_view text);

/// @brief `'` + `terminal_text(value)` + `'`: a value as messages quote it.
[[nodiscard]] std::string quoted(std::string_view value);

/// @brief `; did you mean 'ALIKE'?` after a message about a value no table knows, or "" when
/// @p alike is empty (no `*_spelled_alike` guess).
[[nodiscard]] std::string did_you_mean(std::string_view alike);

/// @brief Stands between a stream for people and its buffer until destroyed, passing everything
/// written on escaped as `terminal_text` escapes it except `\n`, which ends a message's lines,
/// and `\`, which is a quoted value's own escape. The last guard of stderr: whoever built a
/// message (a library's exception, a path, a value no builder quoted), no byte of it drives the
/// terminal. A UTF-8 character written in pieces is held until it is whole.
class terminal_guard final : public std::streambuf {
 public:
  explicit terminal_guard(std::ostream& stream);
  ~terminal_guard() override;
  terminal_guard(const terminal_guard&)            = delete;
  terminal_guard& operator=(const terminal_guard&) = delete;

 protected:
  int_type overflow(int_type c) override;
  std::streamsize xsputn(const char* text, std::streamsize count) override;
  int sync() override;

 private:
  /// Writes `pending_` on escaped, all of it or up to a character cut short at its end.
  bool pass(bool to_the_end);

  std::ostream& stream_;
  std::streambuf* sink_;
  std::string pending_;  ///< written, not yet passed on: at most the first bytes of one character
};

}  // namespace capledger::detail
