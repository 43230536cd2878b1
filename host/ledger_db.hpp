/// @file ledger_db.hpp
/// @brief A thin RAII layer over SQLite for the ledger: a connection, prepared statements, and
/// errors turned into `config_error` (a ledger that cannot be read or written is bad input, exit 2).
#pragma once

#include <capledger/error.hpp>

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace capledger::detail {

class sql_connection;

/// @brief One prepared statement; reset after each use so it can be bound and stepped again. Its
/// errors name the ledger as the connection was opened (the path the user gave).
class sql_statement {
 public:
  sql_statement(const sql_connection& db, std::string_view sql);
  ~sql_statement();
  sql_statement(const sql_statement&)            = delete;
  sql_statement& operator=(const sql_statement&) = delete;

  /// Binds parameter @p index (1-based). Text is bound without copying: step before it dies.
  sql_statement& bind(int index, std::int64_t value);
  sql_statement& bind(int index, std::string_view text);
  sql_statement& bind_null(int index);
  /// @return true when a row is available, false when the statement is done. @throw config_error
  bool step();
  /// Steps a statement that returns no rows, then resets it.
  void run();
  void reset();

  [[nodiscard]] std::int64_t int64(int column) const { return sqlite3_column_int64(stmt_, column); }
  [[nodiscard]] bool is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  [[nodiscard]] bool is_integer(int column) const
  {
    return sqlite3_column_type(stmt_, column) == SQLITE_INTEGER;
  }
  /// The column's text; valid until the next step or reset.
  [[nodiscard]] std::string_view text(int column) const;

 private:
  sqlite3* db_;
  const std::string& name_;  ///< the connection's path
  sqlite3_stmt* stmt_ = nullptr;
};

/// @brief An open ledger database.
class sql_connection {
 public:
  enum class mode { read_only, read_write, create };
  /// @throw config_error when the file cannot be opened in @p how
  sql_connection(const std::string& path, mode how);
  ~sql_connection();
  sql_connection(const sql_connection&)            = delete;
  sql_connection& operator=(const sql_connection&) = delete;
  sql_connection(sql_connection&& other) noexcept : db_(other.db_), path_(std::move(other.path_))
  {
    other.db_ = nullptr;
  }
  sql_connection& operator=(sql_connection&&) = delete;

  /// Runs one or more statements that return no rows. @throw config_error
  void exec(const std::string& sql);
  /// Commits the open transaction. @throw durability_unknown when it is committed but the fsync
  /// of the ledger's folder after the journal's deletion failed (`PRAGMA synchronous = EXTRA`):
  /// a crash may then undo it; config_error when it is not committed
  void commit();
  /// The single integer a query returns, or nullopt when it returns no row or NULL.
  [[nodiscard]] std::optional<std::int64_t> query_int(const std::string& sql);
  [[nodiscard]] sqlite3* handle() const noexcept { return db_; }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

}  // namespace capledger::detail
