/// @file csv_text.hpp
/// @brief CSV written row by row (RFC 4180 quoting where needed, `\n` line ends).
#pragma once

#include <capledger/backend.hpp>

#include <charconv>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace capledger::detail {

/// CSV text written row by row: a large table (a row per (entity, country) pair) never exists
/// both as cells and as text.
class csv_text {
 public:
  csv_text() = default;
  explicit csv_text(const std::vector<std::string>& header) { add(header); }
  void add(const std::vector<std::string>& cells) { add_cells(cells); }
  /// A row of views: large tables (findings) are written without copying their cells first.
  void add(std::initializer_list<std::string_view> cells) { add_cells(cells); }
  /// A row of a cell already in CSV form (`cell`), a cell that needs no quoting (a country code)
  /// and a group's records, units and tpp.
  void add_prepared(std::string_view csv_cell, std::string_view plain, const group_total& total)
  {
    text_ += csv_cell;
    text_.push_back(',');
    text_ += plain;
    for (const std::int64_t value : {total.records, total.units, total.tpp}) {
      char digits[24];
      text_.push_back(',');
      text_.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
    }
    text_.push_back('\n');
  }
  /// @p value as one CSV cell: quoted when it holds a comma, quote or line break, or starts or
  /// ends with a space or tab (which readers would trim), quotes doubled.
  [[nodiscard]] static std::string cell(std::string_view value)
  {
    csv_text one;
    one.add({value});
    std::string text = one.take();
    text.pop_back();  // the row's line end
    return text;
  }
  /// Bytes of text so far.
  [[nodiscard]] std::size_t size() const noexcept { return text_.size(); }
  /// The text so far; the next row starts a new one.
  [[nodiscard]] std::string take()
  {
    std::string text;
    text.swap(text_);
    return text;
  }

 private:
  std::string text_;

  template <typename Cells>
  void add_cells(const Cells& cells)
  {
    bool first = true;
    for (const std::string_view cell : cells) {
      if (!first) { text_.push_back(','); }
      first            = false;
      const bool quote = cell.find_first_of(",\"\r\n") != std::string_view::npos ||
                         (!cell.empty() && (cell.front() == ' ' || cell.back() == ' ' ||
                                            cell.front() == '\t' || cell.back() == '\t'));
      if (!quote) {
        text_ += cell;
        continue;
      }
      text_.push_back('"');
      for (const char c : cell) {
        if (c == '"') { text_.push_back('"'); }
        text_.push_back(c);
      }
      text_.push_back('"');
    }
    text_.push_back('\n');
  }
};

}  // namespace capledger::detail
