/// @file ledger_db.cpp
/// @brief SQLite connection and statement wrappers used by the ledger.
#include "ledger_db.hpp"

#include "file_io.hpp"

namespace capledger::detail {

namespace {

/// Throws config_error naming @p name with SQLite's message when @p rc is not a success code.
void sql_check(const std::string& name, sqlite3* db, int rc, const char* what)
{
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) { return; }
  throw config_error(name + ": " + what + ": " + sqlite3_errmsg(db));
}

}  // namespace

sql_statement::sql_statement(const sql_connection& db, std::string_view sql)
    : db_(db.handle()), name_(db.path())
{
  sql_check(name_, db_, sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr),
            "cannot prepare a statement");
}

sql_statement::~sql_statement()
{
  sqlite3_finalize(stmt_);
}

sql_statement& sql_statement::bind(int index, std::int64_t value)
{
  sql_check(name_, db_, sqlite3_bind_int64(stmt_, index, value), "bind");
  return *this;
}

sql_statement& sql_statement::bind(int index, std::string_view text)
{
  // SQLITE_STATIC: callers step before the text goes away, so no copy is needed. An empty view
  // may carry a null pointer, which SQLite would store as NULL rather than ''.
  const char* data = text.data() != nullptr ? text.data() : "";
  sql_check(name_, db_, sqlite3_bind_text(stmt_, index, data, static_cast<int>(text.size()), SQLITE_STATIC),
            "bind");
  return *this;
}

sql_statement& sql_statement::bind_null(int index)
{
  sql_check(name_, db_, sqlite3_bind_null(stmt_, index), "bind");
  return *this;
}

bool sql_statement::step()
{
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) { return true; }
  if (rc == SQLITE_DONE) { return false; }
  const std::string message = sqlite3_errmsg(db_);
  sqlite3_reset(stmt_);
  throw config_error(name_ + ": " + message);
}

void sql_statement::run()
{
  step();
  reset();
}

void sql_statement::reset()
{
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::string_view sql_statement::text(int column) const
{
  const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  return data == nullptr
             ? std::string_view()
             : std::string_view(data, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
}

sql_connection::sql_connection(const std::string& path, mode how) : path_(path)
{
  // No memory statistics: each of SQLite's allocations would take a global mutex (about 5% of a
  // first ingest's samples). Set once, before SQLite starts: every call to it goes through a connection.
  static const int no_memstatus = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  static_cast<void>(no_memstatus);
  int flags = SQLITE_OPEN_NOMUTEX;
  switch (how) {
    case mode::read_only:
      flags |= SQLITE_OPEN_READONLY;
      break;
    case mode::read_write:
      flags |= SQLITE_OPEN_READWRITE;
      break;
    case mode::create:
      flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
      break;
  }
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw config_error(path + ": cannot open the ledger: " + message);
  }
  // Another process may be ingesting: wait for its lock rather than fail at once.
  sqlite3_busy_timeout(db_, 10000);
}

sql_connection::~sql_connection()
{
  sqlite3_close(db_);
}

void sql_connection::exec(const std::string& sql)
{
  char* error  = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    const std::string message = error != nullptr ? error : sqlite3_errstr(rc);
    sqlite3_free(error);
    throw config_error(path_ + ": " + message);
  }
}

void sql_connection::commit()
{
  try {
    exec("COMMIT");
  } catch (const config_error&) {
    // The journal is deleted (the commit made) before the folder's fsync that failed.
    if (sqlite3_extended_errcode(db_) == SQLITE_IOERR_DIR_FSYNC && sqlite3_get_autocommit(db_) != 0) {
      throw durability_unknown(path_ + ": committed, but cannot flush its folder to disk (" +
                               sqlite3_errmsg(db_) + "); it may not survive a crash");
    }
    throw;
  }
}

std::optional<std::int64_t> sql_connection::query_int(const std::string& sql)
{
  sql_statement query(*this, sql);
  if (!query.step() || query.is_null(0)) { return std::nullopt; }
  return query.int64(0);
}

}  // namespace capledger::detail
