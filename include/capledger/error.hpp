/// @file error.hpp
/// @brief Exception types of the capledger API and the precondition macro that raises them.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace capledger {

/// @brief Bad input line or field: carries the file, 1-based line and column, and a reason code.
class parse_error : public std::runtime_error {
 public:
  /// @param file   file name as given by the user (`-` for stdin)
  /// @param line   1-based physical line of the offending field
  /// @param column 1-based byte column of the offending field within that line; 0 where it is
  /// not known (a line the ledger stored as fields), left out of the message
  /// @param reason reason code, e.g. `BAD_DATE` (SPEC §7)
  /// @param detail human-readable explanation
  parse_error(std::string file, std::int64_t line, std::int64_t column, std::string reason,
              std::string detail)
      : std::runtime_error(file + ":" + std::to_string(line) +
                           (column > 0 ? ":" + std::to_string(column) : "") + ": " + reason + ": " + detail),
        file_(std::move(file)),
        line_(line),
        column_(column),
        reason_(std::move(reason)),
        detail_(std::move(detail))
  {
  }
  [[nodiscard]] const std::string& file() const noexcept { return file_; }
  [[nodiscard]] std::int64_t line() const noexcept { return line_; }
  [[nodiscard]] std::int64_t column() const noexcept { return column_; }
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }
  [[nodiscard]] const std::string& detail() const noexcept { return detail_; }

 private:
  std::string file_;
  std::int64_t line_;
  std::int64_t column_;
  std::string reason_;
  std::string detail_;
};

/// @brief Bad configuration: reference tables, rule set, command-line values (exit code 2).
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @brief A GPU or driver failure (exit code 3): never turned into a wrong answer.
class device_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @brief The GPU's memory cannot take this log: a pass would hold not one line, one key has more
/// lines than a pass holds, a pass needs more than is free when it starts, or an allocation
/// failed (another process took the memory). No GPU
/// result is used then: `--backend gpu` exits 3, `--backend auto` reports on the CPU and says so.
class gpu_memory_short : public device_error {
 public:
  using device_error::device_error;
};

/// @brief A broken internal invariant (exit code 3).
class logic_error : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

}  // namespace capledger

#define CAPLEDGER_STRINGIFY_DETAIL(x) #x
#define CAPLEDGER_STRINGIFY(x) CAPLEDGER_STRINGIFY_DETAIL(x)

/// @brief Throws `capledger::logic_error` naming file:line when @p cond is false.
#define CAPLEDGER_EXPECTS(cond, msg)                                                                        \
  do {                                                                                                      \
    if (!(cond)) {                                                                                          \
      throw ::capledger::logic_error(std::string(__FILE__ ":" CAPLEDGER_STRINGIFY(__LINE__) ": ") + (msg)); \
    }                                                                                                       \
  } while (0)
