/// @file shipments.hpp
/// @brief Shipment logs parsed once into columns of dense codes (SPEC §1.1), with rejects (SPEC §7).
#pragma once

#include <capledger/calendar.hpp>
#include <capledger/reference.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace capledger {

namespace device_csv {
struct line_layout;
}
namespace detail {
struct lines_read_ahead;
}

/// @brief Strings mapped to dense codes 0, 1, 2, ... in order of first appearance.
class dictionary {
 public:
  /// @return the code of @p text, adding it when new
  std::int32_t encode(std::string_view text);
  /// @return the code of @p text, or -1 when absent
  [[nodiscard]] std::int32_t find(std::string_view text) const;
  /// @brief `find` given @p hash = `detail::hash_bytes(text)`, with the two prefetches below:
  /// for many lookups in a row, each a few lookups ahead (`prefetch_slot` first, then
  /// `prefetch_text`), so that their cache misses overlap.
  [[nodiscard]] std::int32_t find(std::string_view text, std::uint64_t hash) const;
  /// (Always inlined, as every prefetching helper here: GCC takes a function that only prefetches
  /// for one without effects and deletes the calls it did not inline.)
  [[gnu::always_inline]] void prefetch_slot(std::uint64_t hash) const noexcept
  {
    if (!slots_.empty()) { __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]); }
  }
  /// @brief Prefetches the text that @p hash's first slot names, if any (reads that slot).
  [[gnu::always_inline]] void prefetch_text(std::uint64_t hash) const noexcept
  {
    if (slots_.empty()) { return; }
    const std::uint64_t slot = slots_[hash & (slots_.size() - 1)];
    if (slot != 0 && (slot >> 32) == (hash >> 32)) {
      __builtin_prefetch(&strings_[(slot & 0xffffffffU) - 1]);
    }
  }
  [[nodiscard]] const std::string& text(std::int32_t code) const { return strings_[code]; }
  [[nodiscard]] std::int32_t size() const noexcept { return static_cast<std::int32_t>(strings_.size()); }
  /// @return codes ordered by their text (byte order), for sorted outputs
  [[nodiscard]] std::vector<std::int32_t> sorted_codes() const;

 private:
  std::deque<std::string> strings_;  ///< a deque never moves its elements: text() stays valid
  /// Open addressing over the codes: each slot holds (high hash bits << 32) | (code + 1), or 0.
  /// Slots hold codes, not pointers, so copies and moves need nothing special.
  std::vector<std::uint64_t> slots_;
};

/// @brief A non-owning view of the columns, as backends take them.
struct shipment_view {
  std::int64_t size            = 0;
  const day_t* date            = nullptr;
  const std::int32_t* entity   = nullptr;
  const std::uint16_t* country = nullptr;
  const std::uint16_t* chip    = nullptr;
  const std::uint8_t* pathway  = nullptr;
  const std::int64_t* quantity = nullptr;
  const std::int64_t* tpp      = nullptr;
  const std::int32_t* order    = nullptr;
  const std::int32_t* exporter = nullptr;
};

/// @brief The accepted lines of all input files, in input order (file order, then line order).
/// Position i in every column is the same line; a line's position is its input position (SPEC §2).
struct shipment_columns {
  std::vector<day_t> date;
  std::vector<std::int32_t> entity;    ///< code in `shipment_log::entities`
  std::vector<std::uint16_t> country;  ///< code in the country table
  std::vector<std::uint16_t> chip;     ///< code in `shipment_log::chips`
  std::vector<std::uint8_t> pathway;   ///< `capledger::pathway` value
  std::vector<std::int64_t> quantity;
  std::vector<std::int64_t> tpp;       ///< quantity x tpp per unit, exact
  std::vector<std::int32_t> order;     ///< code in `shipment_log::orders` for LPP lines, else -1
  std::vector<std::int32_t> exporter;  ///< code in `shipment_log::exporters`
  [[nodiscard]] std::int64_t size() const noexcept { return static_cast<std::int64_t>(date.size()); }
  [[nodiscard]] shipment_view view() const;
  /// Empties every column (keeping their memory).
  void clear() noexcept
  {
    date.clear();
    entity.clear();
    country.clear();
    chip.clear();
    pathway.clear();
    quantity.clear();
    tpp.clear();
    order.clear();
    exporter.clear();
  }
};

/// @brief A rejected line (SPEC §7), as written to the `--rejects` file.
struct rejected_line {
  std::string file;
  std::int64_t line   = 0;
  std::int64_t column = 0;
  std::string reason;  ///< reason code, e.g. `BAD_DATE`
  std::string detail;  ///< human-readable explanation
  std::string raw;     ///< the record's raw text
};

/// @brief What was read from one input file.
struct input_file {
  std::string path;
  std::int64_t bytes = 0;
  std::string sha256;
  std::int64_t lines_read = 0;  ///< data records (the header excluded)
};

/// @brief The fields of one shipment line as the CSV reader returned them (quotes removed,
/// unquoted text trimmed); empty views for absent columns. A ledger stores them, replays them.
struct shipment_fields {
  std::string_view shipment_id, date, entity, country, chip, quantity, pathway, order_id, exporter,
      tpp_per_unit;
  std::int64_t source_line = 0;  ///< 1-based line of the record in its file
};

/// @brief Accepted lines handed over one chunk at a time by a streaming ingest (`ingest_options::on_batch`).
struct line_batch {
  std::int64_t first_position = 0;  ///< input position of the batch's first line (`positions` empty)
  /// Empty: the lines are consecutive, line k at `first_position + k`. Else line k's input
  /// position (a replay leaves out the lines of days it was not asked for).
  std::vector<std::int64_t> positions;
  shipment_columns columns;
  std::string id_bytes;               ///< line k's shipment id: [id_end[k-1], id_end[k])
  std::vector<std::size_t> id_end;
  [[nodiscard]] std::int64_t size() const noexcept { return columns.size(); }
  [[nodiscard]] std::int64_t position(std::int64_t k) const noexcept
  {
    return positions.empty() ? first_position + k : positions[static_cast<std::size_t>(k)];
  }
  [[nodiscard]] std::string_view shipment_id(std::int64_t k) const
  {
    const std::size_t begin = k == 0 ? 0 : id_end[static_cast<std::size_t>(k - 1)];
    return {id_bytes.data() + begin, id_end[static_cast<std::size_t>(k)] - begin};
  }
};

/// @brief The repeated shipment ids a first pass found (`ingest_options::repeated_ids`): (offset of a
/// repeat, offset of the id's first use) pairs, read in increasing order of the repeat's offset, so
/// that a list longer than memory can be streamed from disk.
class repeated_id_cursor {
 public:
  virtual ~repeated_id_cursor() = default;
  /// @brief The first pair whose repeat lies at or after @p offset, or nullopt when none is left.
  /// The pairs before @p offset are passed over for good: offsets are asked in increasing order.
  /// @throw config_error when a temporary file cannot be read back
  [[nodiscard]] virtual std::optional<std::pair<std::uint64_t, std::uint64_t>> next_at_or_after(
      std::uint64_t offset) = 0;
};

struct ingest_options {
  bool keep_rejects        = false;  ///< false: the first bad line throws parse_error
  std::int64_t max_rejects = -1;     ///< with keep_rejects: throw once more than this many (-1: no limit)
  /// With keep_rejects: each rejected line goes to this, in input order, as it is found, instead
  /// of into `shipment_log::rejects` (which then stays empty): memory stays bounded however many
  /// lines are bad. `shipment_log::lines_rejected` counts them either way.
  std::function<void(const rejected_line&)> on_reject;
  /// Shipment ids accepted before this builder existed (a ledger's earlier nights): returns the
  /// `file:line` of the earlier line for a known id, nullopt otherwise. Consulted before the
  /// builder's own ids, so a repeat is reported against the first occurrence, as one run would.
  std::function<std::optional<std::string>(std::string_view shipment_id)> earlier_id;
  /// Called once per accepted line, in input order, with its fields (the views die on return).
  std::function<void(const shipment_fields&)> on_accepted;
  /// Sums of |tpp| and |quantity| of the earlier lines: the 64-bit bound on totals spans them too.
  std::uint64_t earlier_abs_tpp_sum      = 0;
  std::uint64_t earlier_abs_quantity_sum = 0;
  /// Bytes per parallel parsing chunk (0: the default, 256 KiB). The log is the same for every
  /// value; tests and fuzzers set it tiny to put chunk seams everywhere.
  std::size_t chunk_bytes = 0;
  /// Bytes of all the inputs this builder will read, when known (0: unknown). The id set (and
  /// the columns) are then sized for every input at the first, not grown file by file: a log
  /// given as 50 files cost 23% more CPU time than the same log as one, most of it growing the
  /// id set (bench/RESULTS.md). Only a size hint: a wrong value costs memory or time, never a
  /// different log.
  std::uint64_t expected_input_bytes = 0;
  /// Streaming: when set, accepted lines are handed to it chunk by chunk, in input order, and
  /// the log keeps no columns and no ids (memory stays bounded by the dictionaries and the id
  /// set). Texts given to `add_text` must then stay valid until the builder is destroyed: a
  /// repeated id is confirmed, and `replay` reads again, from the input text. It may take the
  /// batch's contents (swap them out): the builder clears the batch before filling it again.
  std::function<void(line_batch&)> on_batch;
  /// Streaming, the first of two passes of an external duplicate check (a log whose ids do not
  /// fit in memory): no id set is kept; every line that would be accepted hands its id's hash
  /// and the offset of its record in all inputs (files one after another) to this, and rejects
  /// are not kept. A line over the 64-bit bound (TPP_OVERFLOW) is a config_error here.
  std::function<void(std::uint64_t id_hash, std::uint64_t offset)> on_id;
  /// Streaming, the second pass: the repeated ids the first found, as (offset of the repeat,
  /// offset of the id's first use), asked for in input order. No id set is kept; a line at a
  /// listed offset is DUPLICATE_ID.
  repeated_id_cursor* repeated_ids = nullptr;
  /// The GPU ingest (kernels/device_csv.cuh): when set, called for each parsing window with its
  /// bytes [from, to) of a file's text and the file's layout, to read its lines ahead (on the GPU,
  /// `detail::gpu_line_reader`; in tests, `detail::read_ahead_on_host`) with tables made from
  /// this builder's countries and chips; the parsing threads then take each plain line's values
  /// from it and read the other lines themselves. The log is the same with it as without.
  std::function<void(std::string_view text, std::size_t from, std::size_t to,
                     const device_csv::line_layout& layout, detail::lines_read_ahead& out)>
      read_ahead;
};

/// @brief Everything ingest produces: the columns and the dictionaries their codes point into.
struct shipment_log {
  shipment_columns columns;
  dictionary entities;
  dictionary orders;
  dictionary exporters;
  chip_table chips;                       ///< the reference table plus ad-hoc chips met in the log
  std::vector<char> id_bytes;             ///< shipment ids, concatenated
  std::vector<std::int64_t> id_end;       ///< id of line i is id_bytes[id_end[i-1] .. id_end[i])
  std::vector<std::int64_t> source_line;  ///< line i's 1-based line number in its file
  std::vector<std::int64_t> file_end;     ///< lines of file f are [file_end[f-1], file_end[f])
  std::vector<input_file> files;
  std::vector<rejected_line> rejects;  ///< empty when `ingest_options::on_reject` took them
  std::int64_t lines_rejected = 0;
  std::int64_t lines_read     = 0;

  [[nodiscard]] std::string_view shipment_id(std::int64_t line) const;
  /// @return `file:line` of an accepted line, for explanations
  [[nodiscard]] std::string source_of(std::int64_t line) const;
  [[nodiscard]] shipment_view view() const;
};

/// @brief Too many rejected lines (more than `--max-rejects`).
/// @brief What `shipment_log_builder::replay` reads again.
struct replay_scope {
  std::vector<day_t> days;  ///< sorted, no repeats
  /// Empty, or one entry per day: the country codes whose lines alone are wanted that day
  /// (none listed: every line of the day).
  std::vector<std::vector<std::uint16_t>> countries;
  /// When set, a section whose input positions lie in [first, last] is not read where it
  /// returns false: the caller knows it needs none of them.
  std::function<bool(std::int64_t first, std::int64_t last)> may_hold;
};

class too_many_rejects : public std::runtime_error {
 public:
  /// @param max_rejects the `--max-rejects` limit; @param last the rejected line past it
  too_many_rejects(std::int64_t max_rejects, const rejected_line& last)
      : std::runtime_error("more than " + std::to_string(max_rejects) +
                           " rejected lines (--max-rejects); last: " + last.file + ":" +
                           std::to_string(last.line) + ":" + std::to_string(last.column) + ": " +
                           last.reason + ": " + last.detail)
  {
  }
};

/// @brief Builds a shipment log from one file after another; ids are unique across all of them.
class shipment_log_builder {
 public:
  shipment_log_builder(const country_table& countries, chip_table chips, ingest_options options);
  ~shipment_log_builder();
  shipment_log_builder(const shipment_log_builder&)            = delete;
  shipment_log_builder& operator=(const shipment_log_builder&) = delete;

  /// @brief Reads and ingests a file (`-` reads stdin).
  /// @throw parse_error on the first bad line (without keep_rejects), too_many_rejects,
  ///        config_error when the file cannot be read
  void add_file(const std::string& path);
  /// @brief Ingests @p text as if it were the content of a file named @p name.
  void add_text(const std::string& name, std::string_view text);
  /// @brief Appends lines that were read and validated before (a ledger replaying its nights).
  /// They go through the same validation and encoding as `add_text`, so the log is the one
  /// `add_text` would have built from the original file.
  /// @param file     the original file's fingerprint; `lines_read` counts its rejected lines too
  /// @param next     fills the next line's fields and returns true, or returns false at the end
  /// @param rejected the lines rejected when the file was first read, appended to the log's rejects
  /// @throw parse_error when a line no longer validates (other reference tables than at ingest)
  void add_stored(const input_file& file, const std::function<bool(shipment_fields&)>& next,
                  const std::vector<rejected_line>& rejected);
  /// @brief Lines rejected so far (also after a too_many_rejects was thrown).
  [[nodiscard]] const std::vector<rejected_line>& rejects() const;
  /// @brief Streaming only: hands to @p sink again, in input order, every accepted line dated on
  /// one of `scope.days` (of one of the day's countries, where `scope.countries` names some):
  /// the same lines, positions and codes as the first time. Only the sections of the log (at
  /// most 512 lines in a row) whose dates span one of the days are read again, so logs roughly
  /// in date order read little; in a section, a line of another day or country costs its date's
  /// and country's reading. Batches may hold other lines too.
  void replay(const replay_scope& scope, const std::function<void(const line_batch&)>& sink);
  /// @brief Streaming: the shipment id of the record at @p offset of all inputs (as `on_id` gives it).
  [[nodiscard]] std::string shipment_id_at(std::uint64_t offset) const;
  /// @brief Accepted lines so far.
  [[nodiscard]] std::int64_t accepted() const;
  /// @brief The log as built so far: dictionaries, chips, files, rejects (streaming: no columns).
  [[nodiscard]] const shipment_log& current() const;
  /// @brief Hands over the log (after `inputs_done`); the builder keeps nothing of it.
  [[nodiscard]] shipment_log finish();
  /// @brief No more inputs: lets go of what only reading them needs (the id set, the parsing
  /// threads' copies of the dictionaries) before the report is built. `current`, `replay` and
  /// `shipment_id_at` keep working; adding an input afterwards is a logic_error (repeats of
  /// earlier ids could no longer be found).
  void inputs_done();

 private:
  struct state;
  std::unique_ptr<state> state_;
};

/// @brief Reads a whole file (`-`: stdin) into memory. @throw config_error when it cannot be read
[[nodiscard]] std::string read_input_file(const std::string& path);

}  // namespace capledger
