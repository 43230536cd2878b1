/// @file terminal_text.cpp
/// @brief The one escaping of input text for people's eyes: table views, messages, stderr's guard.
#include "terminal_text.hpp"

#include "csv.hpp"

#include <utf8proc.h>

#include <cstdint>

namespace capledger::detail {

bool other_space(char32_t c) noexcept
{
  return c == 0x00A0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

namespace {

/// Code points a terminal acts on though they are no C0 control: C1 controls (CSI and OSC among
/// them), those that reorder or hide text (the Unicode bidirectional and format controls), and
/// those that look like another character or none in a name (every space but U+0020: no-break,
/// narrow no-break, the typographic widths, ideographic; soft hyphen, zero-width space, word
/// joiner, zero-width no-break space): two different entities must not look like one.
bool terminal_control(char32_t c)
{
  return (c >= 0x80 && c <= 0x9F) || other_space(c) || c == 0x00AD || c == 0x061C || c == 0x200B ||
         c == 0x200E || c == 0x200F || (c >= 0x202A && c <= 0x202E) || c == 0x2060 ||
         (c >= 0x2066 && c <= 0x2069) || c == 0xFEFF;
}

enum class escaping {
  value,    ///< everything, `\n` and `\` included
  message,  ///< keeps `\n` (line ends) and `\` (the escapes of the values quoted in it)
};

/// Appends @p text to @p out escaped; @return the bytes taken: all, or with @p hold_cut_off, up to
/// a character the end of @p text cuts short (the rest of it may be written next).
std::size_t escape(std::string_view text, escaping mode, bool hold_cut_off, std::string& out)
{
  const auto hex = [&out](const char* prefix, std::uint32_t n, int digits) {
    out += prefix;
    for (int d = digits - 1; d >= 0; --d) { out += "0123456789abcdef"[(n >> (4 * d)) & 0xFU]; }
  };
  std::size_t at = 0;
  while (at < text.size()) {
    const auto byte = static_cast<unsigned char>(text[at]);
    if (byte < 0x80) {
      if (byte == '\\' && mode == escaping::value) {
        out += "\\\\";
      } else if ((byte < 0x20 || byte == 0x7F) && !(byte == '\n' && mode == escaping::message)) {
        hex("\\x", byte, 2);
      } else {
        out += static_cast<char>(byte);
      }
      ++at;
      continue;
    }
    const utf8_sequence character = utf8_at(text, at);
    if (character.cut_off_by_end && hold_cut_off) { break; }
    if (character.length == 0) {
      hex("\\x", byte, 2);  // one byte at a time: the next may begin a well-formed character
      ++at;
      continue;
    }
    if (terminal_control(character.code_point)) {
      hex("\\u", character.code_point, 4);
    } else {
      out.append(text.substr(at, character.length));
    }
    at += character.length;
  }
  return at;
}

/// Columns of one code point on a terminal, from utf8proc's tables (Unicode's East Asian Width
/// and general categories, kept current by its maintainers): wide CJK and Hangul 2, nonspacing and
/// enclosing marks of every script 0. A spacing mark (Mc: the vowel signs of Indic scripts) takes
/// a column, as in wcwidth and on terminals, where utf8proc gives it none.
std::size_t columns_of(char32_t c)
{
  const auto code_point = static_cast<utf8proc_int32_t>(c);
  const int width       = utf8proc_charwidth(code_point);
  return width == 0 && utf8proc_category(code_point) == UTF8PROC_CATEGORY_MC
             ? 1
             : static_cast<std::size_t>(width);
}

}  // namespace

std::size_t display_width(std::string_view shown)
{
  std::size_t width = 0;
  for (std::size_t at = 0; at < shown.size();) {
    const utf8_sequence character = utf8_at(shown, at);
    if (character.length == 0) {  // not text terminal_text made: a byte, a column
      ++width;
      ++at;
      continue;
    }
    width += static_cast<unsigned char>(shown[at]) < 0x80 ? 1 : columns_of(character.code_point);
    at += character.length;
  }
  return width;
}

std::string terminal_text(std::string_view text)
{
  std::string out;
  out.reserve(text.size());
  escape(text, escaping::value, false, out);
  return out;
}

std::string message_text(std::string_view text)
{
  std::string out;
  out.reserve(text.size());
  escape(text, escaping::message, false, out);
  return out;
}

std::string quoted(std::string_view value)
{
  return "'" + terminal_text(value) + "'";
}

std::string did_you_mean(std::string_view alike)
{
  return alike.empty() ? std::string() : "; did you mean " + quoted(alike) + "?";
}

terminal_guard::terminal_guard(std::ostream& stream) : stream_(stream), sink_(stream.rdbuf())
{
  stream_.rdbuf(this);
}

terminal_guard::~terminal_guard()
{
  // A character still cut short is no character: its bytes, escaped.
  const bool passed                  = pass(true) && sink_->pubsync() != -1;
  const std::ios_base::iostate state = stream_.rdstate();
  stream_.rdbuf(sink_);  // (which clears the state: a failed write must still show)
  stream_.setstate(passed ? state : state | std::ios_base::badbit);
}

terminal_guard::int_type terminal_guard::overflow(int_type c)
{
  if (traits_type::eq_int_type(c, traits_type::eof())) { return traits_type::not_eof(c); }
  pending_ += traits_type::to_char_type(c);
  return pass(false) ? c : traits_type::eof();
}

std::streamsize terminal_guard::xsputn(const char* text, std::streamsize count)
{
  pending_.append(text, static_cast<std::size_t>(count));
  return pass(false) ? count : 0;
}

int terminal_guard::sync()
{
  return sink_->pubsync();
}

bool terminal_guard::pass(bool to_the_end)
{
  std::string escaped;
  const std::size_t taken = escape(pending_, escaping::message, !to_the_end, escaped);
  pending_.erase(0, taken);
  const auto size = static_cast<std::streamsize>(escaped.size());
  return sink_->sputn(escaped.data(), size) == size;
}

}  // namespace capledger::detail
