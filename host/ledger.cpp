/// @file ledger.cpp
/// @brief The ledger store: schema, idempotent all-or-nothing ingest, and the replay that turns
/// the stored lines back into the shipment log `report` would have read.
#include <capledger/entities.hpp>
#include <capledger/entity_variants.hpp>
#include <capledger/error.hpp>
#include <capledger/ledger.hpp>

#include "file_io.hpp"
#include "ledger_db.hpp"
#include "ledger_state.hpp"
#include "terminal_text.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <limits>
#include <sstream>
#include <thread>
#include <tuple>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace capledger {

namespace {

using detail::sql_connection;
using detail::sql_statement;

/// Marks the SQLite file as a capledger ledger ('CPLG'), so that another database is refused.
constexpr std::int64_t ledger_application_id = 0x43504c47;

/// Every write of the ledger is on disk before the command returns: FULL fsyncs the journal and
/// the database; EXTRA also fsyncs the folder once the journal is deleted, the moment of the
/// commit (under FULL a power loss just after it could bring the journal back, and undo the night).
constexpr const char* durable_commits = "PRAGMA synchronous = EXTRA";

constexpr const char* schema_sql = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- One row per ingested file, in ingest order: what summary.json lists as inputs.
CREATE TABLE files(
  file_id     INTEGER PRIMARY KEY,
  path        TEXT NOT NULL,
  bytes       INTEGER NOT NULL,
  sha256      TEXT NOT NULL,
  lines_read  INTEGER NOT NULL,
  ingested_at TEXT NOT NULL);
-- Accepted lines with their fields as read (quotes removed, unquoted text trimmed), in input
-- order. The UNIQUE index on shipment_id is what makes ingest idempotent.
CREATE TABLE lines(
  seq          INTEGER PRIMARY KEY,
  shipment_id  TEXT NOT NULL UNIQUE,
  date         TEXT NOT NULL,
  entity       TEXT NOT NULL,
  country      TEXT NOT NULL,
  chip         TEXT NOT NULL,
  quantity     INTEGER NOT NULL,
  pathway      TEXT NOT NULL,
  order_id     TEXT NOT NULL,
  exporter     TEXT NOT NULL,
  tpp_per_unit INTEGER,
  file_id      INTEGER NOT NULL REFERENCES files(file_id),
  source_line  INTEGER NOT NULL);
-- Lines rejected by an ingest run with --rejects: summary.json counts them as report would.
CREATE TABLE rejects(
  seq     INTEGER PRIMARY KEY,
  file_id INTEGER NOT NULL REFERENCES files(file_id),
  line    INTEGER NOT NULL,
  col     INTEGER NOT NULL,
  reason  TEXT NOT NULL,
  detail  TEXT NOT NULL,
  raw     TEXT NOT NULL);
-- The entities file last given to ingest (one row at most).
CREATE TABLE entities(slot INTEGER PRIMARY KEY CHECK (slot = 1), path TEXT NOT NULL, content BLOB NOT NULL);
)sql";

/// For a message about a file that is no ledger: what an empty one most likely is.
std::string empty_file_hint(const std::string& path)
{
  std::error_code ec;
  return std::filesystem::file_size(path, ec) == 0 && !ec
             ? " (it is empty, as a 'capledger ledger init' leaves it until it has finished, or if it was "
               "stopped: where none is running, remove it and run init again)"
             : "";
}

/// Opens an existing ledger and checks that it is one, of this schema version.
void open_checked(sql_connection& db)
{
  const auto app = db.query_int("PRAGMA application_id");
  if (app.value_or(0) != ledger_application_id) {
    throw config_error(db.path() + ": not a capledger ledger (create one with 'capledger ledger init')" +
                       empty_file_hint(db.path()));
  }
  const auto version = db.query_int("SELECT value FROM meta WHERE key = 'schema_version'");
  if (version.value_or(-1) != ledger_schema_version) {
    throw config_error(db.path() + ": ledger schema version " + std::to_string(version.value_or(-1)) +
                       " is not the supported version " + std::to_string(ledger_schema_version));
  }
}

sql_connection open_ledger(const std::string& path, sql_connection::mode how)
{
  // A path that cannot be looked up (a folder without search permission, a name too long) is a
  // ledger that cannot be opened (exit 2), not an internal error.
  std::error_code lookup;
  const bool found = std::filesystem::exists(path, lookup);
  if (lookup) { throw config_error(path + ": cannot open the ledger: " + lookup.message()); }
  if (!found) { throw config_error(path + ": no such ledger (create one with 'capledger ledger init')"); }
  // SQLite says only "disk I/O error" or "unable to open database file" of a folder.
  if (std::filesystem::is_directory(path, lookup)) {
    throw config_error(path +
                       ": is a folder, not a ledger file (name the file 'capledger ledger init' made)");
  }
  if (std::filesystem::exists(path + "-journal", lookup)) {
    // A journal left by a killed ingest must be rolled back before anyone reads, and SQLite can
    // only do that through a writable connection; reading once through one restores the ledger
    // as it was before that ingest. Read-only commands still never write a line themselves.
    // An ingest too: without write access it was told SQLite's bare "disk I/O error".
    // (The journal is also there while an ingest runs: then the read waits for its lock.)
    sql_connection recovery(path, sql_connection::mode::read_write);
    try {
      static_cast<void>(recovery.query_int("PRAGMA application_id"));  // the first read rolls back
    } catch (const config_error& e) {
      const int code = sqlite3_errcode(recovery.handle());
      if (code == SQLITE_BUSY || code == SQLITE_LOCKED) { throw; }  // an ingest still running
      throw config_error(
          path + "-journal, left by an ingest that did not finish, must be rolled back before the " +
          "ledger can be read, and SQLite does that only with write access to the ledger, its " +
          "journal and their folder (" + e.what() + "); run this once as a user who can write them");
    }
  }
  sql_connection db(path, how);
  open_checked(db);
  return db;
}

std::string utc_now()
{
  const std::time_t now = std::time(nullptr);
  std::tm parts{};
  gmtime_r(&now, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

std::int64_t parse_stored_int(std::string_view text)
{
  std::int64_t value = 0;
  for (const char c : text) {
    if (c >= '0' && c <= '9') { value = value * 10 + (c - '0'); }
  }
  return text.empty() || text.front() != '-' ? value : -value;
}

std::uint64_t magnitude(std::int64_t value)
{
  return value < 0 ? 0 - static_cast<std::uint64_t>(value) : static_cast<std::uint64_t>(value);
}

/// The sums of |tpp| and |quantity| that SPEC §2 bounds by 2^63 - 1 (the meta table keeps the
/// ledger's). Adding one line to sums within the bound cannot wrap.
struct magnitude_sums {
  std::uint64_t tpp = 0, quantity = 0;
  void add(const shipment_columns& c, std::size_t line)
  {
    tpp += magnitude(c.tpp[line]);
    quantity += magnitude(c.quantity[line]);
  }
  [[nodiscard]] bool past_64_bits() const
  {
    constexpr auto bound = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    return tpp > bound || quantity > bound;
  }
};

/// An integer of the `meta` table (0 when absent).
std::int64_t meta_value(sql_connection& db, const char* key)
{
  return db.query_int(std::string("SELECT value FROM meta WHERE key = '") + key + "'").value_or(0);
}

/// The file and source line of the stored line with a shipment id.
constexpr const char* find_id_sql =
    "SELECT f.path, l.source_line FROM lines l JOIN files f ON f.file_id = l.file_id WHERE l.shipment_id = ?";

/// Options that read lines as coming after the ledger's (a night's, or `check`'s proposed ones):
/// an id already stored is a `DUPLICATE_ID` naming its `file:line`, found by @p find_id
/// (`find_id_sql`, which must outlive the options), and the stored lines' |tpp| and |quantity|
/// sums count toward the 64-bit bound.
ingest_options reading_after_the_ledger(sql_connection& db, sql_statement& find_id)
{
  ingest_options ingest;
  ingest.earlier_abs_tpp_sum      = static_cast<std::uint64_t>(meta_value(db, "abs_tpp_sum"));
  ingest.earlier_abs_quantity_sum = static_cast<std::uint64_t>(meta_value(db, "abs_quantity_sum"));
  // With no line stored, no id is looked up (0.4 s of a first ingest of 1,000,000 lines): the
  // night's own lines, inserted as read, get their `files` rows after, so find_id misses them.
  const bool none_stored = !db.query_int("SELECT MAX(seq) FROM lines");
  ingest.earlier_id      = [&find_id, none_stored](std::string_view id) -> std::optional<std::string> {
    if (none_stored) { return std::nullopt; }
    find_id.bind(1, id);
    std::optional<std::string> where;
    if (find_id.step()) { where = std::string(find_id.text(0)) + ":" + std::to_string(find_id.int64(1)); }
    find_id.reset();
    return where;
  };
  return ingest;
}

/// The columns of a stored line that `stored_line_text` reads, in its order.
constexpr const char* stored_line_columns =
    "SELECT shipment_id, date, entity, country, chip, quantity, pathway, order_id, exporter, tpp_per_unit, "
    "file_id, source_line";

/// A stored line's fields as the builder takes them: views of the row's text, and of the two
/// integers written back as text here (valid until the next row).
struct stored_line_text {
  std::string quantity, tpp_per_unit;
  shipment_fields fields(const sql_statement& row)
  {
    // Ingest stores integers. A value altered into text ('12x') or a real would read as SQLite's
    // conversion of it (12, or 0 for 'abc'); its text goes to the builder instead, which refuses it.
    const auto integer_text = [&row](int column) {
      return row.is_integer(column) ? std::to_string(row.int64(column)) : std::string(row.text(column));
    };
    quantity     = integer_text(5);
    tpp_per_unit = row.is_null(9) ? std::string() : integer_text(9);
    return shipment_fields{row.text(0), row.text(1), row.text(2), row.text(3),  row.text(4),  quantity,
                           row.text(6), row.text(7), row.text(8), tpp_per_unit, row.int64(11)};
  }
};

/// Feeds every stored file, with its lines and rejects, to @p builder in ingest order: the log
/// `report` would have built from the original files. Runs inside the caller's transaction.
void replay_ledger(sql_connection& db, shipment_log_builder& builder)
{
  sql_statement files(db, "SELECT file_id, path, bytes, sha256, lines_read FROM files ORDER BY file_id");
  // Every reject in one sorted scan, taken file by file beside `files`: a query per file scanned
  // the whole table (rejects has no file_id index), files x rejects in all.
  sql_statement rejects(db,
                        "SELECT file_id, line, col, reason, detail, raw FROM rejects ORDER BY file_id, seq");
  bool has_reject = rejects.step();
  // One ordered scan over all lines: a file's lines are consecutive in seq (one ingest, one file
  // after another), so each file takes the run of rows carrying its file_id.
  sql_statement lines(db, std::string(stored_line_columns) + " FROM lines ORDER BY seq");
  bool has_row = lines.step();
  bool advance = false;
  stored_line_text text;
  while (files.step()) {
    const std::int64_t file_id = files.int64(0);
    input_file info;
    info.path       = std::string(files.text(1));
    info.bytes      = files.int64(2);
    info.sha256     = std::string(files.text(3));
    info.lines_read = files.int64(4);
    std::vector<rejected_line> rejected;
    while (has_reject && rejects.int64(0) < file_id) { has_reject = rejects.step(); }  // of no file
    for (; has_reject && rejects.int64(0) == file_id; has_reject = rejects.step()) {
      rejected.push_back({info.path, rejects.int64(1), rejects.int64(2), std::string(rejects.text(3)),
                          std::string(rejects.text(4)), std::string(rejects.text(5))});
    }
    const auto next = [&](shipment_fields& f) {
      if (advance) {
        has_row = lines.step();
        advance = false;
      }
      if (!has_row || lines.int64(10) != file_id) { return false; }
      f       = text.fields(lines);
      advance = true;  // the views stay valid until the builder has taken the line
      return true;
    };
    builder.add_stored(info, next, rejected);
  }
  if (advance) { has_row = lines.step(); }
  if (has_row) { throw config_error(db.path() + ": lines without a file record; the ledger is damaged"); }
}

/// `replay_ledger` for a command that reads the ledger under the tables given: a stored line they
/// refuse (a chip the --chips table lacks) is said to be one, since the file and line named were
/// accepted when ingested and the user would look for the fault there.
void replay_ledger_under(sql_connection& db, shipment_log_builder& builder)
{
  try {
    replay_ledger(db, builder);
  } catch (const parse_error& e) {
    throw config_error(std::string(e.what()) +
                       " (a line stored in the ledger, replayed under the countries, chips and rules tables "
                       "given: give those the ledger was ingested with)");
  }
}

/// The stored lines dated after @p day, in ingest order, as one log built under @p ref: what a
/// proposed line dated on or after @p day finds after it in SPEC order. Runs inside the caller's
/// transaction (the running state read there stands for every stored line under @p ref).
shipment_log lines_dated_after(sql_connection& db, const reference_data& ref, day_t day)
{
  const std::string after = format_date(day);  // dates are stored as YYYY-MM-DD: text order is date order
  sql_statement lines(db, std::string(stored_line_columns) + " FROM lines WHERE date > ? ORDER BY seq");
  lines.bind(1, after);
  stored_line_text text;
  shipment_log_builder builder(ref.countries, ref.chips, ingest_options{});
  input_file file;
  file.path = db.path();
  builder.add_stored(file,
                     [&](shipment_fields& f) {
                       if (!lines.step()) { return false; }  // the builder has taken the line before
                       f = text.fields(lines);
                       return true;
                     },
                     {});
  return builder.finish();
}

/// The report the running state stands for, rendered as `report` renders a backend's
/// aggregation: as of `--as-of`, else the ledger's latest date.
report_output render_state_report(const reference_data& ref, const detail::stored_state& state,
                                  const report_options& options, const std::string& backend_name)
{
  const std::optional<day_t> as_of = options.as_of ? options.as_of : state.latest_date();
  const rule_context context =
      make_rule_context(ref.rules, ref.countries, ref.entities, state.entities(), state.chips(),
                        as_of.value_or(std::numeric_limits<day_t>::max()));
  return render_report(ref, state, options, context, state.aggregate(context), backend_name, as_of);
}

}  // namespace

void ledger_init(const std::string& db_path)
{
  // Created exclusively: of two inits racing for one path, one creates the ledger and the other
  // is told it exists (a check, then a create, let both through to SQLite's own error).
  const int fd = ::open(db_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int error = errno;
    if (error == EEXIST) {
      throw config_error(db_path + ": already exists; not replacing it with an empty ledger" +
                         empty_file_hint(db_path));
    }
    throw config_error(db_path + ": cannot create the ledger: " + std::strerror(error));
  }
  ::close(fd);
  try {
    // SQLite would take a file already there for the new ledger's own and delete it: a hot journal
    // of a ledger once at this path, or someone's file.
    for (const auto& [side, kind] : detail::ledger_side_files(db_path)) {
      std::error_code ec;
      if (std::filesystem::exists(std::filesystem::symlink_status(side, ec))) {
        throw config_error(side + " exists, where SQLite keeps the ledger's " + kind +
                           " file: it would delete it; move it elsewhere first");
      }
    }
    sql_connection db(db_path, sql_connection::mode::read_write);  // an empty file is an empty database
    db.exec(durable_commits);
    db.exec("BEGIN IMMEDIATE");
    db.exec(schema_sql);
    detail::create_state_tables(db);
    db.exec("INSERT INTO meta(key, value) VALUES ('schema_version', " +
            std::to_string(ledger_schema_version) + "), ('abs_tpp_sum', 0), ('abs_quantity_sum', 0)");
    db.exec("PRAGMA application_id = " + std::to_string(ledger_application_id));
    db.commit();
  } catch (const detail::durability_unknown&) {
    throw;  // the ledger is made: it stays
  } catch (...) {
    // The file is this init's own (created exclusively above; SQLite rolled its journal back as
    // the connection closed): left empty, it would block the next init and read as no ledger.
    std::error_code ignored;
    std::filesystem::remove(db_path, ignored);
    throw;
  }
}

ledger_ingest_result ledger_ingest(const ledger_ingest_options& options)
{
  // Said by every failure once the rejects file is begun, when a user may think otherwise.
  const std::string not_stored = "; nothing of the night is stored";
  if (options.inputs.empty()) { throw config_error("ledger ingest needs at least one shipment log"); }
  report_options reference_options;
  reference_options.countries_path = options.countries_path;
  reference_options.chips_path     = options.chips_path;
  reference_options.rules_path     = options.rules_path;
  refuse_stdin_read_twice(reference_options, {{"--entities", options.entities_path}}, options.inputs);
  std::vector<std::string> read = reference_files_read(reference_options);
  read.push_back(options.entities_path);
  read.insert(read.end(), options.inputs.begin(), options.inputs.end());
  detail::refuse_colliding_paths({read, {{"--rejects", options.rejects_path}}, {}, options.db_path});
  const reference_data ref         = load_reference(reference_options);
  // The entities file is read here alone, once (its content is stored; the running state does
  // not depend on it), and validated before the ledger is touched: a bad one changes nothing.
  std::string entities_text;
  if (!options.entities_path.empty()) {
    entities_text = read_input_file(options.entities_path);
    (void)parse_entities(entities_text, options.entities_path, ref.countries);
  }

  // Begun before the ledger is touched: a rejects file that cannot be created (a folder that
  // cannot be made) stops the night before anything of it is stored.
  rejects_output rejects_file = [&options, &not_stored] {
    try {
      return rejects_output(options.rejects_path);
    } catch (const config_error& e) {
      throw config_error(e.what() + not_stored);
    }
  }();
  const auto write_rejects = [&rejects_file](const std::vector<rejected_line>& rejected) {
    for (const rejected_line& r : rejected) { rejects_file.add(r); }
    try {
      rejects_file.commit();
    } catch (const detail::durability_unknown& e) {
      throw config_error(e.what());  // a plain failure here: the night is rolled back all the same
    }
  };

  sql_connection db = open_ledger(options.db_path, sql_connection::mode::read_write);
  try {
    // The default rollback journal makes the transaction atomic: a process killed at any moment
    // leaves the ledger as before or as after. A ledger another tool put in WAL mode is put back:
    // there a reader's connections each see the latest commit, and a night committing between its
    // reads (ledger_snapshot) gave a report of neither. The switch needs the ledger to itself, and
    // SQLite does not wait for readers there: it is retried for as long as a lock is waited for.
    for (int waited_ms = 0;; waited_ms += 50) {
      try {
        sql_statement mode(db, "PRAGMA journal_mode = DELETE");
        if (mode.step() && mode.text(0) == "delete") { break; }
        throw config_error(options.db_path + ": cannot take the ledger out of WAL mode");
      } catch (const config_error&) {
        if (sqlite3_errcode(db.handle()) != SQLITE_BUSY || waited_ms >= 10000) { throw; }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    db.exec(durable_commits);
    db.exec("BEGIN IMMEDIATE");  // one writer at a time; a second ingest waits for the lock
    const std::int64_t first_file_id = db.query_int("SELECT MAX(file_id) FROM files").value_or(0) + 1;
    // Lines are never deleted, so seq runs 1..count and MAX(seq) counts them (COUNT(*) would scan).
    const std::int64_t first_line = db.query_int("SELECT MAX(seq) FROM lines").value_or(0);
    std::int64_t file_id          = first_file_id;

    sql_statement find_id(db, find_id_sql);
    sql_statement insert_line(
        db,
        "INSERT INTO lines(shipment_id, date, entity, country, chip, quantity, pathway, "
        "order_id, exporter, tpp_per_unit, file_id, source_line) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");

    ingest_options ingest = reading_after_the_ledger(db, find_id);
    ingest.keep_rejects   = !options.rejects_path.empty();
    ingest.max_rejects    = options.max_rejects;
    ingest.on_accepted = [&](const shipment_fields& f) {
      const std::int64_t quantity = parse_stored_int(f.quantity);  // validated already
      insert_line.bind(1, f.shipment_id).bind(2, f.date).bind(3, f.entity).bind(4, f.country).bind(5, f.chip);
      insert_line.bind(6, quantity).bind(7, f.pathway).bind(8, f.order_id).bind(9, f.exporter);
      if (f.tpp_per_unit.empty()) {
        insert_line.bind_null(10);
      } else {
        insert_line.bind(10, parse_stored_int(f.tpp_per_unit));
      }
      insert_line.bind(11, file_id).bind(12, f.source_line);
      insert_line.run();
    };

    shipment_log_builder builder(ref.countries, ref.chips, ingest);
    std::vector<std::size_t> rejects_end;  // rejects of file i end at rejects_end[i]
    try {
      for (const auto& path : options.inputs) {
        builder.add_file(path);
        rejects_end.push_back(builder.rejects().size());
        ++file_id;
      }
    } catch (const too_many_rejects&) {
      write_rejects(builder.rejects());
      throw;
    }
    const shipment_log night = builder.finish();

    const std::string now = utc_now();
    sql_statement insert_file(db,
                              "INSERT INTO files(file_id, path, bytes, sha256, lines_read, ingested_at) "
                              "VALUES (?, ?, ?, ?, ?, ?)");
    sql_statement insert_reject(
        db, "INSERT INTO rejects(file_id, line, col, reason, detail, raw) VALUES (?, ?, ?, ?, ?, ?)");
    std::size_t reject = 0;
    for (std::size_t f = 0; f < night.files.size(); ++f) {
      const input_file& file = night.files[f];
      const auto id          = first_file_id + static_cast<std::int64_t>(f);
      insert_file.bind(1, id).bind(2, file.path).bind(3, file.bytes).bind(4, file.sha256);
      insert_file.bind(5, file.lines_read).bind(6, now);
      insert_file.run();
      for (; reject < rejects_end[f]; ++reject) {
        const rejected_line& r = night.rejects[reject];
        insert_reject.bind(1, id)
            .bind(2, r.line)
            .bind(3, r.column)
            .bind(4, r.reason)
            .bind(5, r.detail)
            .bind(6, r.raw);
        insert_reject.run();
      }
    }

    magnitude_sums sums{ingest.earlier_abs_tpp_sum, ingest.earlier_abs_quantity_sum};
    for (std::size_t i = 0; i < night.columns.tpp.size(); ++i) { sums.add(night.columns, i); }
    db.exec("UPDATE meta SET value = " + std::to_string(sums.tpp) + " WHERE key = 'abs_tpp_sum'");
    db.exec("UPDATE meta SET value = " + std::to_string(sums.quantity) + " WHERE key = 'abs_quantity_sum'");

    if (!options.entities_path.empty()) {
      sql_statement put(db, "INSERT OR REPLACE INTO entities(slot, path, content) VALUES (1, ?, ?)");
      put.bind(1, options.entities_path).bind(2, entities_text);
      put.run();
    }

    // The running state follows in the same transaction: extended by the night's lines alone
    // when they come after every stored line in check order, rebuilt from a replay otherwise
    // (always under tables other than the state's).
    const detail::state_update how = detail::update_ledger_state(db, ref, night, first_line, [&] {
      shipment_log_builder all(ref.countries, ref.chips, ingest_options{});
      try {
        replay_ledger(db, all);
      } catch (const parse_error& e) {
        // Kept, the night could leave lines that fail these tables beside lines that fail the
        // ledger's own: a ledger no table set can report. Refused; the rollback below undoes it.
        // (A line of the night fails only where the stored lines weigh more under these tables:
        // their sums then pass 64 bits.)
        throw config_error(std::string("ledger ingest: refused: replayed under the "
                                       "countries, chips and rules tables given, ") +
                           (all.accepted() < first_line ? "a line stored in the ledger"
                                                        : "a line of this night, after the stored ones,") +
                           " does not validate: " + e.what() +
                           "; ingest under tables that accept every stored line, such as those the ledger "
                           "was ingested with, or start a new ledger for these tables");
      }
      return all.finish();
    });

    ledger_ingest_result result;
    result.files         = static_cast<std::int64_t>(night.files.size());
    result.lines_read    = night.lines_read;
    result.lines_added   = night.columns.size();
    result.rejected      = static_cast<std::int64_t>(night.rejects.size());
    result.ledger_lines  = first_line + night.columns.size();
    result.state_rebuilt = how == detail::state_update::rebuilt;
    // The rejects file is put in place before the night is committed: nothing that can fail comes
    // after the commit, so an ingest that exits 2 stored nothing (its re-run would otherwise find
    // every line a duplicate), but for a commit whose folder fsync failed, which says the night is
    // in. A commit that fails otherwise leaves the night's rejects file beside a ledger without the
    // night, which its re-run writes again.
    write_rejects(night.rejects);
    db.commit();  // one that fails is rolled back below, or by the next open (a hot journal)
    return result;
  } catch (const detail::durability_unknown&) {
    throw;  // from the commit alone: the night is in the ledger, nothing to roll back
  } catch (...) {
    // Nothing of this night stays: the ledger is exactly as before.
    try {
      db.exec("ROLLBACK");
    } catch (...) {  // the transaction may already be gone; the original error matters
    }
    // A failure of the ledger (SQLite, a full or failing disk), an input, the rejects file or the
    // commit says so, where a user may think otherwise; bad lines say their file:line:column.
    try {
      throw;
    } catch (const config_error& e) {
      throw config_error(e.what() + not_stored);
    }
  }
}

struct ledger_snapshot::held {
  sql_connection db;
};

ledger_snapshot::ledger_snapshot(const std::string& db_path)
    : held_(std::make_unique<held>(held{open_ledger(db_path, sql_connection::mode::read_only)}))
{
  held_->db.exec("BEGIN");
  // A deferred transaction takes its shared lock at its first read: now. The process's other
  // connections share that lock (SQLite keeps one per file and process).
  static_cast<void>(held_->db.query_int("SELECT value FROM meta WHERE key = 'schema_version'"));
}

ledger_snapshot::~ledger_snapshot()
{
  release();
}

void ledger_snapshot::release() noexcept
{
  if (!held_) { return; }
  try {
    held_->db.exec("COMMIT");  // a read transaction: nothing to lose
  } catch (...) {              // closing the connection ends it all the same
  }
  held_.reset();
}

reference_data load_ledger_reference(const std::string& db_path, const report_options& options)
{
  reference_data ref = load_reference(options);
  if (!options.entities_path.empty()) { return ref; }
  sql_connection db = open_ledger(db_path, sql_connection::mode::read_only);
  sql_statement stored(db, "SELECT path, content FROM entities WHERE slot = 1");
  if (stored.step()) {
    const std::string path(stored.text(0));
    const std::string_view content = stored.text(1);
    ref.entities                   = parse_entities(content, path, ref.countries);
    ref.entities_file =
        file_fingerprint{path, static_cast<std::int64_t>(content.size()), detail::sha256_hex(content)};
  }
  return ref;
}

shipment_log load_ledger_log(const std::string& db_path, const reference_data& ref)
{
  sql_connection db = open_ledger(db_path, sql_connection::mode::read_only);
  // A read transaction: the files, lines and rejects read below are one consistent snapshot even
  // while another process ingests.
  db.exec("BEGIN");
  shipment_log_builder builder(ref.countries, ref.chips, ingest_options{});
  replay_ledger_under(db, builder);
  db.exec("COMMIT");
  return builder.finish();
}

namespace {

/// The proposed lines were validated against the |tpp| and |quantity| sums the ledger's lines had
/// when ingested; replayed under other chips tables they may weigh more. Proposed lines that would
/// take the sums past 64 bits with the replayed ones are a TPP_OVERFLOW, as in `report` over the
/// ledger's files and the proposal (the first such line named; its column is not kept). The
/// proposal is one file.
void refuse_totals_past_64_bits(const shipment_log& ledger, const shipment_log& proposed)
{
  magnitude_sums sums;  // the replay's own stay within the bound
  for (std::size_t i = 0; i < ledger.columns.tpp.size(); ++i) { sums.add(ledger.columns, i); }
  for (std::size_t i = 0; i < proposed.columns.tpp.size(); ++i) {
    sums.add(proposed.columns, i);
    if (sums.past_64_bits()) {
      throw parse_error(
          proposed.files.front().path, proposed.source_line[i], 0, "TPP_OVERFLOW",
          "with the ledger's lines replayed under these tables, the totals would exceed 64 bits "
          "(sum of |tpp| or |quantity| > 2^63-1)");
    }
  }
}

}  // namespace

check_inputs load_check_inputs(const std::string& db_path, const reference_data& ref,
                               const std::string& proposed_path, bool replay, std::ostream& diagnostics)
{
  sql_connection db = open_ledger(db_path, sql_connection::mode::read_only);
  db.exec("BEGIN");  // the ids, sums, state or lines read below are one snapshot
  check_inputs inputs;
  {
    sql_statement find_id(db, find_id_sql);
    shipment_log_builder builder(ref.countries, ref.chips, reading_after_the_ledger(db, find_id));
    builder.add_file(proposed_path);
    inputs.proposed = builder.finish();
  }
  entity_variants_of variants(inputs.proposed.entities, entity_place::proposed);
  for (const entity_info& row : ref.entities.rows) { variants.add(row.id, entity_place::entities_file); }
  std::string why = "--replay";
  if (!replay) {
    // The earliest date a limit total is asked for: a proposed line in the counting window.
    std::optional<day_t> weighed_from;
    for (const day_t d : inputs.proposed.columns.date) {
      if (ref.rules.in_window(d) && (!weighed_from || d < *weighed_from)) { weighed_from = d; }
    }
    const std::int64_t lines = db.query_int("SELECT MAX(seq) FROM lines").value_or(0);
    const auto read_lines_after = [&](day_t after) {
      inputs.ledger_lines = lines_dated_after(db, ref, after);
    };
    const auto each_entity = [&](std::string_view id) { variants.add(id, entity_place::ledger); };
    inputs.ledger          =  // takes `db` over
        detail::stored_limit_totals(db, ref, why, weighed_from, read_lines_after, each_entity);
    if (inputs.ledger) {
      inputs.notes = variants.notes();
      diagnostics << "capledger: check: running state of " << lines << " line(s)";
      if (inputs.ledger_lines) {
        diagnostics << ", and the " << inputs.ledger_lines->columns.size() << " stored line(s) dated after "
                    << format_date(*weighed_from) << ", among which proposed lines dated before the ledger's "
                    << "latest line in the counting window are weighed by date";
      }
      diagnostics << "\n";
      return inputs;
    }
  }
  diagnostics << "capledger: check: replay (" << why << ")";
  if (why == detail::state_of_other_tables) {  // a what-if under other tables, or tables forgotten
    diagnostics << ": the ledger is weighed under the tables given (the bundled ones where none is), "
                << "not those it was ingested with";
  }
  diagnostics << "\n";
  shipment_log_builder builder(ref.countries, ref.chips, ingest_options{});
  replay_ledger_under(db, builder);
  inputs.ledger_lines = builder.finish();
  for (std::int32_t e = 0; e < inputs.ledger_lines->entities.size(); ++e) {
    variants.add(inputs.ledger_lines->entities.text(e), entity_place::ledger);
  }
  inputs.notes = variants.notes();
  refuse_totals_past_64_bits(*inputs.ledger_lines, inputs.proposed);
  inputs.ledger = sum_limit_totals(ref, *inputs.ledger_lines);
  db.exec("COMMIT");
  return inputs;
}

namespace {

/// What @p command reads of a ledger: from its running state (@p load_stored, in one read
/// transaction) where that stands for the stored lines, else, or with @p replay, summed over a
/// replay of them (@p sum). Says which on @p diagnostics.
template <typename Stored, typename Value, typename LoadStored, typename Sum>
Value from_state_or_replay(const char* command, const std::string& db_path, bool replay,
                           std::ostream& diagnostics, LoadStored load_stored, Value Stored::*value, Sum sum)
{
  std::string why = "--replay";
  if (!replay) {
    sql_connection db = open_ledger(db_path, sql_connection::mode::read_only);
    db.exec("BEGIN");  // one consistent snapshot of the state
    std::optional<Stored> stored = load_stored(db, why);
    db.exec("COMMIT");
    if (stored) {
      diagnostics << "capledger: " << command << ": running state of " << stored->lines << " line(s)\n";
      return std::move(*stored.*value);
    }
  }
  diagnostics << "capledger: " << command << ": replay (" << why << ")\n";
  return sum();
}

}  // namespace

cap_usage load_cap_usage(const std::string& db_path, const reference_data& ref, std::optional<day_t> as_of,
                         bool replay, std::ostream& diagnostics)
{
  return from_state_or_replay(
      "ledger balances", db_path, replay, diagnostics,
      [&](sql_connection& db, std::string& why) {
        return detail::load_stored_cap_usage(db, ref, as_of, why);
      },
      &detail::stored_cap_usage::usage,
      [&] { return sum_cap_usage(ref, load_ledger_log(db_path, ref), as_of); });
}

ledger_units load_ledger_units(const std::string& db_path, const reference_data& ref,
                               std::optional<day_t> as_of, bool replay, std::ostream& diagnostics)
{
  return from_state_or_replay(
      "reconcile", db_path, replay, diagnostics,
      [&](sql_connection& db, std::string& why) { return detail::load_stored_units(db, ref, as_of, why); },
      &detail::stored_units::units,
      [&] { return sum_ledger_units(ref, load_ledger_log(db_path, ref), as_of); });
}

int run_ledger_report(const std::string& db_path, const report_options& options, std::ostream& out,
                      std::ostream& diagnostics, bool replay)
{
  check_report_format(options);
  check_report_outputs(options, db_path);
  ledger_snapshot snapshot(db_path);  // the entities file and the state or lines of one commit
  const reference_data ref        = load_ledger_reference(db_path, options);
  std::unique_ptr<backend> engine = select_backend(options.backend, diagnostics);
  std::string why                 = "--replay";
  if (!replay) {
    sql_connection db = open_ledger(db_path, sql_connection::mode::read_only);
    db.exec("BEGIN");  // one consistent snapshot of the state, files and rejects
    // Without a rejects file only the rejects `note` shows are read (no --max-rejects can stop
    // the run: it needs --rejects); the rest are counted.
    const std::int64_t rejects_read =
        options.rejects_path.empty() ? static_cast<std::int64_t>(rejects_output::lines_noted) : -1;
    const std::unique_ptr<detail::stored_state> state =
        detail::load_ledger_state(db, ref, options.as_of, why, rejects_read);
    db.exec("COMMIT");
    if (state) {
      snapshot.release();
      // The stored running state stands for the backend's aggregation of every line (the
      // aggregates are exact integers, equal on every backend): render it as `report` would.
      diagnostics << "capledger: ledger report: incremental (running state of " << state->lines_accepted()
                  << " line(s))\n";
      const report_output report = render_state_report(ref, *state, options, engine->name());
      rejects_output rejects(options.rejects_path, options.out_dir);
      add_stored_rejects(rejects, state->rejects(), options, diagnostics);
      rejects.count_more(state->rejected() - static_cast<std::int64_t>(state->rejects().size()));
      return emit_report(report, rejects, options, out, diagnostics);
    }
  }
  diagnostics << "capledger: ledger report: replay (" << why << ")\n";
  const shipment_log log = load_ledger_log(db_path, ref);
  snapshot.release();
  return finish_report(ref, log, options, *engine, out, diagnostics);
}

namespace {

/// The first line where @p a and @p b differ (1-based), both texts' lines there; 0 when equal.
std::tuple<std::size_t, std::string, std::string> first_difference(const std::string& a, const std::string& b)
{
  std::istringstream in_a(a), in_b(b);
  std::string line_a, line_b;
  for (std::size_t line = 1;; ++line) {
    const bool more_a = static_cast<bool>(std::getline(in_a, line_a));
    const bool more_b = static_cast<bool>(std::getline(in_b, line_b));
    if (!more_a && !more_b) { return {0, "", ""}; }
    if (!more_a) { line_a = "(end of file)"; }
    if (!more_b) { line_b = "(end of file)"; }
    if (!more_a || !more_b || line_a != line_b) { return {line, line_a, line_b}; }
  }
}

}  // namespace

int run_ledger_verify(const std::string& db_path, const report_options& options, std::ostream& out)
{
  detail::refuse_colliding_paths({reference_files_read(options), {}, {}, db_path});
  const ledger_snapshot snapshot(db_path);  // the entities file and the state and lines of one commit
  sql_connection db = open_ledger(db_path, sql_connection::mode::read_only);

  // 1. SQLite's own check, first (everything after reads the tables): every page, b-tree and
  // index against its table. Damage that stops the check itself is a finding too.
  std::vector<std::string> problems;
  try {
    sql_statement check(db, "PRAGMA integrity_check");
    while (check.step()) {
      if (check.text(0) != "ok") { problems.emplace_back(check.text(0)); }
    }
  } catch (const config_error& e) {
    problems.emplace_back(e.what());
  }
  if (!problems.empty()) {
    out << "integrity: SQLite found " << problems.size() << " problem(s) in " << db_path << ":\n";
    for (std::size_t i = 0; i < std::min<std::size_t>(problems.size(), 10); ++i) {
      out << "  " << detail::terminal_text(problems[i]) << "\n";
    }
    return 1;
  }
  out << "integrity: ok (SQLite's integrity_check)\n";

  // 2. The running state against a replay of every stored line, read in one snapshot: both must
  // render the very same report, file for file.
  const reference_data ref = load_ledger_reference(db_path, options);
  db.exec("BEGIN");
  std::string why;
  const std::unique_ptr<detail::stored_state> state = detail::load_ledger_state(db, ref, std::nullopt, why);
  // A ledger without an ingest yet, or from before the state existed (the next ingest builds
  // it): no state to compare, but its lines must still replay.
  const bool no_state = !state && why == detail::no_state_yet;
  if (!state && !no_state) {
    if (why == detail::state_of_other_tables) {
      // The state keeps each table's hash: the ones that differ can be named (none where its
      // record was altered by hand into another form).
      const std::vector<std::string> files = detail::tables_unlike_state(db, ref);
      std::string differing;
      for (std::size_t i = 0; i < files.size(); ++i) {
        differing += (i == 0 ? ": of the tables read, " : i + 1 == files.size() ? " and " : ", ") + files[i];
      }
      if (!files.empty()) {
        differing += files.size() == 1 ? " differs from the one it was built under"
                                       : " differ from those it was built under";
      }
      throw config_error("ledger verify: " + why + differing +
                         "; give the --countries, --chips and --rules the ledger was ingested with");
    }
    out << "running state: " << why << "\n";
    return 1;
  }
  shipment_log_builder builder(ref.countries, ref.chips, ingest_options{});
  // A stored line that no longer validates (parse_error) or a line without its file record
  // (config_error) is damage found, not bad input; anything else stays what it is.
  const auto replay_stops = [&out](const std::exception& e) {
    out << "stored lines: the replay stops: " << e.what() << "\n";
    return 1;
  };
  try {
    replay_ledger(db, builder);
  } catch (const parse_error& e) {
    return replay_stops(e);
  } catch (const config_error& e) {
    return replay_stops(e);
  }
  const shipment_log log = builder.finish();
  if (no_state) {  // (a ledger left so by an older ingest, which kept nights under tables its
                   // stored lines fail, stops the replay above)
    out << "running state: none (no ingest has built one): nothing to compare; " << log.columns.date.size()
        << " stored line(s) replay\n";
    return 0;
  }
  // Read in this same snapshot: rows for keys no stored line touches, which only the rows show
  // (`check` reads them, the report may not print them); then the limit totals `check` and later
  // ingests read key by key (they take the connection and its read transaction over).
  constexpr std::size_t shown          = 10;
  const std::vector<std::string> stray = detail::stray_state_rows(db, ref, log, shown);
  // What balances and reconcile read, where the state has those parts (read here: the totals
  // take `db` over).
  std::string why_no_caps, why_no_units;
  const std::optional<detail::stored_cap_usage> stored_caps =
      detail::load_stored_cap_usage(db, ref, std::nullopt, why_no_caps);
  const std::optional<detail::stored_units> stored_units =
      detail::load_stored_units(db, ref, std::nullopt, why_no_units);
  std::string why_not_totals;
  const std::unique_ptr<ledger_limit_totals> stored_totals =
      detail::stored_limit_totals(db, ref, why_not_totals, std::nullopt, {}, {});

  const report_output from_state = render_state_report(ref, *state, options, "cpu");
  const report_output from_lines = build_report(ref, log, options, *make_cpu_backend());
  std::size_t differing          = 0;
  const auto differs             = [&] {
    if (differing++ == 0) {
      out << "running state: DISAGREES with a replay of " << log.columns.date.size() << " stored line(s):\n";
    }
  };
  for (const auto& [name, text] : from_lines.files) {
    const auto stored                 = from_state.files.find(name);
    const std::string state_text      = stored == from_state.files.end() ? std::string() : stored->second;
    const auto [line, replayed, kept] = first_difference(text, state_text);
    if (line == 0) { continue; }
    differs();
    out << "  " << name << " line " << line << ": replay " << detail::quoted(replayed) << ", running state "
        << detail::quoted(kept) << "\n";
  }
  // Findings no report prints: totals of keys below every limit, which `check` weighs proposed
  // lines against, and rows no stored line writes.
  const auto list = [&](const std::vector<std::string>& found, const char* kind, const char* first) {
    if (found.empty()) { return; }
    differs();
    for (const std::string& f : found) { out << "  " << kind << ", " << f << "\n"; }
    if (found.size() == shown) { out << "  (the first " << shown << " " << first << ")\n"; }
  };
  list(stored_totals
           ? limit_total_differences(ref, log, *stored_totals, shown)
           : std::vector<std::string>{"the running state's limit totals cannot be read: " + why_not_totals},
       "limit total", "limit totals that differ");
  list(stray, "row no stored line writes", "such rows");
  // A later part's output from the state against the replay's (@p texts: replay, state), where
  // the state has the part current; a part missing or stale (an older capledger's doing) is no
  // damage, any other reason is.
  const auto compare_part = [&](const char* what, bool stored, const auto& texts, const std::string& why,
                                const char* missing, const char* stale) {
    if (stored) {
      const auto [replay_text, state_text] = texts();
      const auto [line, replayed, kept]    = first_difference(replay_text, state_text);
      if (line == 0) { return; }
      differs();
      out << "  " << what << " line " << line << ": replay " << detail::quoted(replayed) << ", running state "
          << detail::quoted(kept) << "\n";
    } else if (why != missing && why != stale) {
      differs();
      out << "  " << what << ": " << why << "\n";
    }
  };
  // The balances, which read the order parties no other output does.
  compare_part(
      "ledger balances", stored_caps.has_value(),
      [&] {
        return std::pair(
            balances_text(compute_balances(ref, sum_cap_usage(ref, log, std::nullopt), options.warn_at),
                          "csv"),
            balances_text(compute_balances(ref, stored_caps->usage, options.warn_at), "csv"));
      },
      why_no_caps, detail::state_without_order_parties, detail::state_with_stale_order_parties);
  // The units per (entity, country, chip) that reconcile weighs, which no other output shows.
  const auto units_text = [&](const ledger_units& units) {
    std::vector<std::vector<std::string>> cells;
    for (const ledger_units::entry& e : units.units) {
      cells.push_back({units.entities.text(e.entity), ref.countries.rows[e.country].iso2,
                       units.chips.text(e.chip), std::to_string(e.units)});
    }
    return to_csv({"entity", "country", "chip", "ledger_units"}, cells);
  };
  compare_part(
      "reconcile units", stored_units.has_value(),
      [&] {
        return std::pair(units_text(sum_ledger_units(ref, log, std::nullopt)),
                         units_text(stored_units->units));
      },
      why_no_units, detail::state_without_units, detail::state_with_stale_units);
  if (differing > 0) { return 1; }
  out << "running state: agrees with a replay of " << log.columns.date.size() << " stored line(s) ("
      << from_lines.files.size() << " report files, " << (stored_caps ? "the balances, " : "")
      << (stored_units ? "the units per key, " : "") << "every limit total and every keyed row compared)\n";
  // A part missing or stale (an older capledger's doing) is no damage, but say what was not compared.
  if (!stored_caps) { out << "  ledger balances not compared: " << why_no_caps << "\n"; }
  if (!stored_units) { out << "  reconcile units not compared: " << why_no_units << "\n"; }
  return 0;
}

}  // namespace capledger
