/// @file report.hpp
/// @brief The `report` job: inputs to findings to files (SPEC §5, §6), as a library call.
#pragma once

#include <capledger/backend.hpp>
#include <capledger/checks.hpp>
#include <capledger/entities.hpp>
#include <capledger/reference.hpp>
#include <capledger/shipments.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace capledger {

/// @brief Every option of `capledger report` (SPEC §6).
struct report_options {
  std::vector<std::string> inputs;  ///< shipment logs; `-` is stdin
  std::string entities_path;        ///< empty: no entities file
  std::string rules_path;           ///< empty: the bundled default rule set
  std::string countries_path;       ///< empty: the bundled table
  std::string chips_path;           ///< empty: the bundled table
  std::optional<day_t> as_of;       ///< empty: the latest date in the input
  std::string backend = "auto";     ///< auto, cpu or gpu
  std::string out_dir;              ///< empty: print to stdout in `format`
  std::string rejects_path;         ///< non-empty: keep going past bad lines, write them here
  std::int64_t max_rejects   = -1;  ///< with rejects_path: stop once more are rejected (-1: no limit)
  std::vector<ppm_t> warn_at = {800000, 900000, 950000};
  std::string format         = "table";  ///< table, json or csv
  /// CPU streaming: find repeated shipment ids out of memory (two passes over the inputs, which
  /// therefore cannot include stdin) instead of holding an id set.
  bool external_id_check = false;
  /// `run_report` sets `external_id_check` when the input files add up to more than this (the
  /// id set costs about 14 bytes per line; with lines of 60 bytes or more, some 500 MB at 2 GiB).
  std::uint64_t external_id_check_above = std::uint64_t{2} << 30;
  /// With `external_id_check`: repeated ids (16 bytes each) held in memory for the second pass;
  /// past this many they are written to a temporary file in sorted runs, merged as they are read
  /// (a log given twice with `--rejects` repeats every line of its copy). Unset: 16 Mi (256 MiB);
  /// tests set it tiny.
  std::optional<std::size_t> external_id_repeats_in_memory;
  /// Whether an NVIDIA device node is taken to exist, so that the GPU starts beside the ingest
  /// (`run_report`); unset: `gpu_likely_present()`. Tests set it to run that path without a GPU.
  std::optional<bool> gpu_node_present;
  /// The GPU ingest, experimental (not yet run on a card as part of a report): plain lines are read
  /// ahead on the GPU (`ingest_options::read_ahead`, kernels/gpu_ingest.cu), for either backend;
  /// the same report. Unset: when the environment has `CAPLEDGER_GPU_INGEST=1` (or `=host`: the
  /// lines read ahead on the host with the device's code, which tests use). Without a usable GPU,
  /// a note says so and the host reads every line.
  std::optional<bool> gpu_ingest;
  /// `render_report` builds only the stdout view `emit_report` prints (the table or the JSON;
  /// none with `out_dir`): a report of a million findings spent 13 s and 2.8 GB on a JSON
  /// nobody printed. True: build both (tests compare them).
  bool every_view = false;
};

/// @brief A reference or input file as summary.json names it.
struct file_fingerprint {
  std::string path;
  std::int64_t bytes = 0;
  std::string sha256;
};

/// @brief Reference tables, rule set and entities, with the fingerprints of their files.
struct reference_data {
  country_table countries;
  chip_table chips;
  rule_set rules;
  entity_table entities;
  file_fingerprint countries_file, chips_file, rules_file;
  std::optional<file_fingerprint> entities_file;
};

/// @brief The folder that holds the bundled reference data and rule sets.
/// Looked up in order: `$CAPLEDGER_DATASETS`, `datasets/` beside the executable or in its parent
/// folder, `../share/capledger/datasets` from it, the source tree the program was built from.
[[nodiscard]] std::string default_datasets_dir();

/// @brief The reference files a run with @p options reads: those its flags name, the bundled
/// ones where they name none (as `load_reference` picks them), and the entities file if given
/// (empty otherwise). Outputs are checked against them (`detail::refuse_colliding_paths`).
[[nodiscard]] std::vector<std::string> reference_files_read(const report_options& options);

/// @brief Refuses standard input (`-`) named for two things a run reads: @p own, the command's
/// own inputs (what each is, and its path: "--inventory"), the shipment log's files @p logs, and
/// the reference flags of @p options. Standard input can be read once: the second reader would
/// get nothing, or the first one's bytes. The log itself may name `-` twice where standard input
/// is a file (read again from its start: every line a DUPLICATE_ID, as SPEC has a file given
/// twice), not where it is a pipe, which the first read empties. Any pipe or FIFO named twice, by
/// any names (`- /dev/stdin`, one FIFO for two flags), is refused too.
/// @throw config_error naming both
void refuse_stdin_read_twice(const report_options& options,
                             const std::vector<std::pair<std::string, std::string>>& own,
                             const std::vector<std::string>& logs = {});

/// @brief Loads the reference data named by @p options (bundled defaults for empty paths).
/// @throw config_error, parse_error
[[nodiscard]] reference_data load_reference(const report_options& options);

/// @brief What a report run produced, ready to write or print.
struct report_output {
  std::map<std::string, std::string> files;  ///< file name -> content (SPEC §5)
  std::string table;                         ///< the readable stdout summary
  std::string json;                          ///< summary plus findings, for `--format json`
  check_results checks;
  std::vector<std::string> notes;  ///< for stderr only: entity ids written alike (`entity_variant_notes`)
  std::string backend_used;
  std::optional<day_t> as_of;
};

/// @brief Aggregates @p log on @p engine, applies the rules and renders every output. No I/O.
/// @throw device_error from the backend
[[nodiscard]] report_output build_report(const reference_data& reference, const shipment_log& log,
                                         const report_options& options, backend& engine);

/// @brief `build_report` on @p engine, except where the GPU's memory cannot take the log
/// (`gpu_memory_short`): `--backend auto` then reports on the CPU from the start and says so on
/// @p diagnostics (summary.json names `cpu`); `--backend gpu` is refused.
/// @throw device_error for `--backend gpu` (naming `--backend cpu`) and for every other failure
[[nodiscard]] report_output build_report_within_gpu_memory(const reference_data& reference,
                                                           const shipment_log& log,
                                                           const report_options& options, backend& engine,
                                                           std::ostream& diagnostics);

/// @brief `report` on the CPU without holding the log in memory: lines are aggregated chunk by
/// chunk as they are ingested, running totals are kept per (key, day), and only the days where
/// a limit is crossed are read a second time to find the crossing line. Outputs are
/// byte-identical to `build_report` on the CPU backend (summary.json included).
/// @param ingest     ingest options (`on_batch` is set here)
/// @param add_inputs adds the inputs to the builder it is given (`add_file`, `add_text`); texts
///                   given to `add_text` must stay valid until this returns
/// @param rejects    receives the rejected lines, also when too_many_rejects is thrown
/// @throw parse_error, too_many_rejects, config_error as ingest does
[[nodiscard]] report_output stream_report(const reference_data& reference, const report_options& options,
                                          ingest_options ingest,
                                          const std::function<void(shipment_log_builder&)>& add_inputs,
                                          std::vector<rejected_line>& rejects);

/// @brief Renders every output from aggregates that were already computed: the one place that
/// turns an `aggregation` (plus what @p source knows) into findings, files, JSON and the table.
/// `build_report` aggregates a shipment log and calls it; `ledger report` calls it with the
/// ledger's stored running state.
/// @param context     the rule context the aggregates were computed under
/// @param as_of       the as-of date shown (nullopt: an empty log without --as-of)
/// @param backend_used the backend name summary.json records
[[nodiscard]] report_output render_report(const reference_data& reference, const report_source& source,
                                          const report_options& options, const rule_context& context,
                                          const aggregation& agg, const std::string& backend_used,
                                          std::optional<day_t> as_of);

namespace detail {
class atomic_file_writer;
class directories_made;
}  // namespace detail

/// @brief The rejected lines of a run: the rejects file of SPEC §7 (`file,line,column,reason,raw`)
/// written as they arrive, into a temporary file that `commit` puts in place atomically (nothing
/// held in memory however many lines are bad), the first few kept for stderr, and their count.
class rejects_output {
 public:
  /// @param path    the rejects file; empty: no file (lines are only counted and noted)
  /// @param out_dir the run's `--out` directory, if any: a rejects file inside it is staged
  ///                beside it, since `emit_report` puts a new directory in its place first
  /// @throw config_error when the file cannot be created
  explicit rejects_output(const std::string& path, const std::string& out_dir = "");
  ~rejects_output();
  rejects_output(const rejects_output&)            = delete;
  rejects_output& operator=(const rejects_output&) = delete;

  void add(const rejected_line& line);
  /// Counts @p lines more rejected lines, neither written nor noted: those of a run without a
  /// rejects file past the ones `note` shows (`lines_noted`). @throw logic_error with a file
  void count_more(std::int64_t lines);
  /// How many of the first rejected lines `note` explains.
  static constexpr std::size_t lines_noted = 10;
  /// Puts the file in place; destroyed without it, the file is not written. @throw config_error
  void commit();
  /// After a run stopped early (`--max-rejects`): puts the file in place, unless it lies in the
  /// `--out` directory, which a stopped run leaves as it was (said on @p diagnostics).
  void commit_stopped(std::ostream& diagnostics);
  /// Explains the first rejected lines on @p diagnostics, and how many there were.
  void note(std::ostream& diagnostics) const;

 private:
  std::string path_;
  std::string out_dir_;  ///< the `--out` directory the file lies in, if it does
  std::unique_ptr<detail::directories_made> folders_;  ///< made for the staging, removed after it
  std::unique_ptr<detail::atomic_file_writer> file_;
  std::vector<rejected_line> first_;  ///< the ones `note` shows, without their raw text
  std::int64_t count_ = 0;
};

/// @brief The files `render_report` writes into an `--out` directory (SPEC §5).
[[nodiscard]] const std::set<std::string>& report_file_names();

/// @brief Refuses (config_error), before a report run reads anything, outputs that would lose a
/// file: those `detail::refuse_colliding_paths` refuses over the inputs, reference files and the
/// @p ledger the report is of (empty: none), a rejects file in a folder inside `--out` or under a
/// report file's name, or an existing `--out` directory holding anything besides a previous
/// report's files (and this run's rejects file).
void check_report_outputs(const report_options& options, const std::string& ledger = {});

/// @brief Writes @p report's outputs (`--out` directory, or stdout in `options.format`), then
/// commits @p rejects' file and notes the rejects on @p diagnostics.
/// @return the exit code of SPEC §6 (0, or 1 when there are violations)
int emit_report(const report_output& report, rejects_output& rejects, const report_options& options,
                std::ostream& out, std::ostream& diagnostics);

/// @brief Host memory and the GPU path: `report --backend gpu` builds the whole log's columns in
/// host memory before the upload (the CPU path streams the log in bounded memory instead).
struct host_memory_fit {
  std::uint64_t needed    = 0;  ///< estimate for the whole log's columns; 0: unknown or none
  std::uint64_t available = 0;  ///< what the machine (or its cgroup) can still give; 0: unknown
};

/// @brief The backend `--backend NAME` (auto, cpu, gpu) runs on: "cpu" or "gpu". `auto` takes the
/// GPU when one is usable and the whole log fits in three quarters of the available memory, and
/// notes its choice on @p diagnostics; `gpu` is refused when the log cannot fit at all, so that a
/// year's log fails at once with the sizes instead of being killed for memory hours in.
/// @param gpu_usable whether a GPU is usable; @p why_not says why not
/// @throw device_error for `gpu` without a usable GPU or memory, config_error for an unknown name
[[nodiscard]] std::string choose_backend(const std::string& name, bool gpu_usable, const std::string& why_not,
                                         const host_memory_fit& memory, std::ostream& diagnostics);

/// @brief Whether `choose_backend` would pick the GPU for @p name and @p memory were the GPU
/// usable (says nothing; false where it would refuse).
[[nodiscard]] bool gpu_path_if_usable(const std::string& name, const host_memory_fit& memory);

/// @brief Makes the backend `choose_backend` picks on this machine.
/// @throw as `choose_backend`
[[nodiscard]] std::unique_ptr<backend> select_backend(const std::string& name, std::ostream& diagnostics,
                                                      const host_memory_fit& memory = {});

/// @brief Estimated host memory of the whole-log columns for @p inputs (`report --backend gpu`):
/// about 90 bytes a line (86 measured for 12-byte shipment ids: columns, source lines, ids and
/// their set), the lines counted from the first mebibyte of each file's average line length.
/// 0 when an input is stdin (its size is not known before it is read).
[[nodiscard]] std::uint64_t whole_log_memory_estimate(const std::vector<std::string>& inputs);

/// @brief Throws config_error unless `options.format` is table, json or csv.
void check_report_format(const report_options& options);

/// @brief `ledger report`'s stored rejected lines, counted as `report` counts the lines it
/// rejects: each added to @p rejects; past `options.max_rejects` the run stops as `report`'s
/// does, the rejects file (`commit_stopped`) ending with the line past the limit.
/// @throw too_many_rejects
void add_stored_rejects(rejects_output& rejects, const std::vector<rejected_line>& stored,
                        const report_options& options, std::ostream& diagnostics);

/// @brief `ledger report` from a replayed log: builds the report of @p log, writes its outputs
/// (`--out` directory, or stdout in `options.format`) and the rejects file of `log.rejects`
/// (when `options.rejects_path` is set; `add_stored_rejects`).
/// @return the exit code of SPEC §6 (0, or 1 when there are violations)
int finish_report(const reference_data& reference, const shipment_log& log, const report_options& options,
                  backend& engine, std::ostream& out, std::ostream& diagnostics);

/// @brief Runs `capledger report` end to end. @return the exit code of SPEC §6
int run_report(const report_options& options, std::ostream& out, std::ostream& diagnostics);

/// @brief Renders rows as CSV (RFC 4180 quoting where needed, `\n` line ends).
[[nodiscard]] std::string to_csv(const std::vector<std::string>& header,
                                 const std::vector<std::vector<std::string>>& rows);

}  // namespace capledger
