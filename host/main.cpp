/// @file main.cpp
/// @brief The `capledger` command line (SPEC §6): parses flags, runs a job, maps errors to exit codes.
#include <capledger/error.hpp>
#include <capledger/generate.hpp>
#include <capledger/ledger.hpp>
#include <capledger/report.hpp>

#include <CLI/CLI.hpp>

#include "file_io.hpp"
#include "terminal_text.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <iostream>
#include <limits>
#include <new>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace {

using namespace capledger;

constexpr int exit_bad_input = 2;
constexpr int exit_internal  = 3;

/// A whole number of 0 or more, in decimal (`--max-rejects`, `generate`'s numbers). A transform:
/// the value checked is written back in plain decimal for CLI11 to convert, which would read `010`
/// as octal 8 and `0x10` as 16, and take a value past the type's range for its largest value.
template <typename Count>
CLI::Validator a_count()
{
  return CLI::Validator(
      [](std::string& text) {
        const std::string not_whole = detail::quoted(text) + " is not a whole number of 0 or more";
        if (!text.empty() && text.front() == '-') { return not_whole; }
        Count n              = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec == std::errc::result_out_of_range) {
          return detail::quoted(text) + " is more than " + std::to_string(std::numeric_limits<Count>::max());
        }
        if (ec != std::errc() || end != text.data() + text.size()) { return not_whole; }
        text = std::to_string(n);
        return std::string();
      },
      "COUNT");
}

/// A file or folder name: given empty, refused rather than taken for no flag (a script's empty
/// $ENTITIES would otherwise report every entity as unlisted, its empty $OUT write nothing).
/// Nor a flag: CLI11 gives a flag whose value is missing the next argument, so `--out --rejects`
/// would write a folder named `--rejects`.
const CLI::Validator a_name(
    [](std::string& text) {
      if (text.empty()) { return std::string("an empty value names no file"); }
      if (text.size() > 1 && text.front() == '-') {
        return detail::quoted(text) +
               " is a flag, not a file name: the value is missing (a file so named: ./" + text + ")";
      }
      return std::string();
    },
    "PATH");

/// A file or folder written: `a_name`, and not `-`, which elsewhere is standard input and here
/// would be taken for a file or folder of that name in the working directory.
const CLI::Validator an_output(
    [](std::string& text) {
      if (text == "-") {
        return std::string(
            "'-' (standard input or output) names no file to write here (a file so named: ./-)");
      }
      return a_name(text);
    },
    "PATH");

/// `--as-of`: given empty, refused rather than taken for no flag (a script's empty $DATE would
/// otherwise count the whole log without a word); the date itself is parsed with the other flags.
const CLI::Validator a_date(
    [](std::string& text) {
      return text.empty() ? std::string("an empty value is not a YYYY-MM-DD date") : std::string();
    },
    "DATE");

std::vector<ppm_t> parse_warn_levels(const std::string& list)
{
  std::vector<ppm_t> levels;
  std::size_t start = 0;
  while (start <= list.size()) {
    const auto comma = list.find(',', start);
    const std::string item(
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    const auto level = parse_ppm(item);
    if (!level || *level <= 0 || *level > ppm_one) {
      throw config_error("--warn-at: " + detail::quoted(item) +
                         " is not a fraction in (0, 1] with at most 6 decimals");
    }
    levels.push_back(*level);
    if (comma == std::string::npos) { break; }
    start = comma + 1;
  }
  std::sort(levels.begin(), levels.end());
  levels.erase(std::unique(levels.begin(), levels.end()), levels.end());
  return levels;
}

day_t parse_date_flag(const std::string& flag, const std::string& text)
{
  const auto day = parse_date(text);
  if (!day) { throw config_error(flag + ": " + detail::quoted(text) + " is not a valid YYYY-MM-DD date"); }
  return *day;
}

/// Runs @p job, turning every exception into a message on stderr and the exit code of SPEC §6.
template <typename Job>
int guarded(Job job)
{
  try {
    const int code = job();
    // What went to stdout (a report table, CSV or JSON) must have arrived: a full disk or a
    // closed stdout otherwise passes for success with the answer lost.
    if (!std::cout.flush()) {
      std::cerr << "capledger: cannot write to standard output (a full disk, or stdout closed)\n";
      return exit_bad_input;
    }
    return code;
  } catch (const parse_error& e) {
    std::cerr << "capledger: " << e.what() << "\n";
    return exit_bad_input;
  } catch (const config_error& e) {
    std::cerr << "capledger: " << e.what() << "\n";
    return exit_bad_input;
  } catch (const too_many_rejects& e) {
    std::cerr << "capledger: " << e.what() << "\n";
    return exit_bad_input;
  } catch (const device_error& e) {
    std::cerr << "capledger: device error: " << e.what() << "\n";
    return exit_internal;
  } catch (const std::bad_alloc&) {
    // Not a bug of capledger's ("internal error: std::bad_alloc" said so): memory ran short.
    std::cerr << "capledger: out of memory: the machine's memory, or a limit on it (ulimit -v, a "
                 "cgroup), is too small for this run\n";
    return exit_internal;
  } catch (const std::exception& e) {
    std::cerr << "capledger: internal error: " << e.what() << "\n";
    return exit_internal;
  }
}

/// Flags shared by every command that reads reference data and a rule set.
void add_reference_flags(CLI::App* cmd, report_options& options)
{
  cmd->add_option("--entities", options.entities_path,
                  "entities file (entity,hq_country,status,nveu_countries)")
      ->check(a_name);
  cmd->add_option("--rules", options.rules_path, "rule set JSON (default: bundled ai-diffusion-2025)")
      ->check(a_name);
  cmd->add_option("--countries", options.countries_path, "countries table (default: bundled)")->check(a_name);
  cmd->add_option("--chips", options.chips_path, "chips table (default: bundled)")->check(a_name);
}

/// Every flag of `report` except the input files (shared by `report` and `ledger report`).
void add_report_flags(CLI::App* cmd, report_options& options, std::string& as_of, std::string& warn_at)
{
  add_reference_flags(cmd, options);
  cmd->add_option("--as-of", as_of, "ignore lines after this date (default: latest date in the input)")
      ->check(a_date);
  cmd->add_option("--backend", options.backend, "auto, cpu or gpu")->capture_default_str();
  cmd->add_option("--out", options.out_dir, "write every output file into this directory, atomically")
      ->check(an_output);
  cmd->add_option("--rejects", options.rejects_path, "skip bad lines and write them to this CSV file")
      ->check(an_output);
  cmd->add_option("--max-rejects", options.max_rejects, "with --rejects: stop once more lines are rejected")
      ->transform(a_count<std::int64_t>());
  cmd->add_option("--warn-at", warn_at, "CAP_NEAR_LIMIT levels, fractions of a cap")->capture_default_str();
  cmd->add_option("--format", options.format, "stdout format without --out: table, json or csv")
      ->capture_default_str();
}

/// Turns the text flags into `options` and checks the combinations.
void finish_report_flags(report_options& options, const std::string& as_of, const std::string& warn_at)
{
  if (!as_of.empty()) { options.as_of = parse_date_flag("--as-of", as_of); }
  options.warn_at = parse_warn_levels(warn_at);
  if (options.max_rejects >= 0 && options.rejects_path.empty()) {
    throw config_error("--max-rejects needs --rejects FILE");
  }
}

/// A `--format` given with `--out` changes nothing (the files are SPEC's CSV and JSON, and nothing
/// goes to stdout): said, so that a script that waits for JSON on stdout learns why none comes.
void note_format_with_out(const CLI::App* cmd, const report_options& options)
{
  if (cmd->count("--format") > 0 && !options.out_dir.empty()) {
    std::cerr << "capledger: note: --format " << options.format << " is for standard output without --out; "
              << "--out " << options.out_dir << " gets the files of SPEC 5 and stdout nothing\n";
  }
}

}  // namespace

namespace {

/// Input files are memory-mapped; a file truncated by another process while capledger reads it
/// raises SIGBUS on the missing pages. Say which file and exit 2 (bad input) instead of crashing,
/// removing the hidden temporary files first; no output can be half-written, since outputs only
/// appear by an atomic rename at the end.
extern "C" void input_truncated(int, siginfo_t* info, void*)
{
  const char* path = capledger::detail::input_path_at(info->si_addr);
  const auto say   = [](const char* text) {
    [[maybe_unused]] const auto ignored = ::write(STDERR_FILENO, text, std::strlen(text));
  };
  say("capledger: ");
  say(path != nullptr ? path : "an input file");
  say(" was truncated or changed while being read; nothing was written\n");
  capledger::detail::remove_guarded_paths();
  ::_exit(2);
}

}  // namespace

namespace {

/// Descriptors 0-2 closed by the caller would be taken by the first files this run opens, and
/// what is meant for stdout would be written into them (a rejects file, an input). Each is held
/// by /dev/null opened the wrong way round, so that using it fails as a closed one would: a
/// report to a closed stdout is a write error (exit 2), a read of a closed stdin a read error.
void hold_closed_standard_descriptors()
{
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) { continue; }
    // open() takes the lowest free descriptor: fd itself (lower ones are open, no thread runs yet).
    static_cast<void>(::open("/dev/null", fd == 0 ? O_WRONLY : O_RDONLY));
  }
}

}  // namespace

int main(int argc, char** argv)
{
  hold_closed_standard_descriptors();
  // Messages quote input text (values escaped where quoted); what else reaches them, such as a
  // library's exception or a path, is escaped on its way out: no byte of stderr drives the terminal.
  const detail::terminal_guard stderr_guard(std::cerr);
  struct sigaction on_bus {};
  on_bus.sa_sigaction = input_truncated;
  on_bus.sa_flags     = SA_SIGINFO;
  sigemptyset(&on_bus.sa_mask);
  ::sigaction(SIGBUS, &on_bus, nullptr);
  // A pipe closed early (`| head`) is a write error like any closed stdout (exit 2, said on
  // stderr), not a silent death by SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  // A write past `ulimit -f` fails with EFBIG, a write error like a full disk (exit 2, the
  // staging files removed), rather than SIGXFSZ killing the run with its temporary files left.
  ::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"capledger: compute-capacity accounting for AI-chip export rules"};
  // Command-line errors say who speaks, as every other error does.
  app.failure_message([](const CLI::App* failed, const CLI::Error& e) {
    // CLI11 says only "A subcommand is required" of a misspelled one: name the word it did not know.
    const CLI::App* at = failed;
    while (!at->get_subcommands().empty()) { at = at->get_subcommands().front(); }
    const std::vector<std::string> left = at->remaining();
    if (at->get_require_subcommand_min() > 0 && !left.empty()) {
      std::string known;
      for (const CLI::App* command : at->get_subcommands({})) { known += " " + command->get_name(); }
      return "capledger: " + detail::quoted(left.front()) + " is not a command (one of:" + known +
             ")\nRun with --help for more information.\n";
    }
    // A flag given twice: CLI11 says "--rules: At Most 1 required but received 2".
    const std::string what    = e.what();
    const std::string twice   = ": At Most 1 required but received ";
    const std::size_t at_most = what.find(twice);
    if (at_most != std::string::npos) {
      return "capledger: " + what.substr(0, at_most) + " is given " + what.substr(at_most + twice.size()) +
             " times: give it once (which value was meant would be a guess)\nRun with --help for more "
             "information.\n";
    }
    return "capledger: " + CLI::FailureMessage::simple(failed, e);
  });
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("capledger ") + CAPLEDGER_VERSION);

  // ---- report ----
  report_options report;
  std::string as_of, warn_at = "0.8,0.9,0.95";
  CLI::App* report_cmd =
      app.add_subcommand("report", "aggregate shipment logs, apply the rule set, report findings");
  report_cmd->add_option("files", report.inputs, "shipment logs (CSV); '-' reads stdin")->required();
  add_report_flags(report_cmd, report, as_of, warn_at);

  // ---- ledger, reconcile, check ----
  std::string db_path, inventory_path, proposed_path, check_out;
  ledger_ingest_options ingest;
  CLI::App* ledger_cmd =
      app.add_subcommand("ledger", "the nightly ledger: init, ingest, report, verify, balances");
  ledger_cmd->require_subcommand(1);
  CLI::App* init_cmd = ledger_cmd->add_subcommand("init", "create an empty ledger database");
  init_cmd->add_option("db", db_path, "ledger database file (SQLite)")->required()->check(an_output);
  CLI::App* ingest_cmd =
      ledger_cmd->add_subcommand("ingest", "append a night's shipment logs in one transaction");
  ingest_cmd->add_option("db", ingest.db_path, "ledger database file")->required();
  ingest_cmd->add_option("files", ingest.inputs, "shipment logs (CSV)")->required();
  ingest_cmd->add_option("--entities", ingest.entities_path, "entities file; replaces the stored one")
      ->check(a_name);
  ingest_cmd->add_option("--countries", ingest.countries_path, "countries table (default: bundled)")
      ->check(a_name);
  ingest_cmd->add_option("--chips", ingest.chips_path, "chips table (default: bundled)")->check(a_name);
  ingest_cmd
      ->add_option("--rules", ingest.rules_path, "rule set the running state follows (default: bundled)")
      ->check(a_name);
  ingest_cmd
      ->add_option("--rejects", ingest.rejects_path, "skip bad and duplicate lines, write them to this CSV")
      ->check(an_output);
  ingest_cmd
      ->add_option("--max-rejects", ingest.max_rejects, "with --rejects: fail once more lines are rejected")
      ->transform(a_count<std::int64_t>());
  CLI::App* ledger_report_cmd = ledger_cmd->add_subcommand("report", "report over every ingested line");
  ledger_report_cmd->add_option("db", db_path, "ledger database file")->required();
  add_report_flags(ledger_report_cmd, report, as_of, warn_at);
  bool replay = false;
  ledger_report_cmd->add_flag("--replay", replay, "ignore the running state: replay every stored line");
  CLI::App* verify_cmd = ledger_cmd->add_subcommand(
      "verify", "check the database, and the running state against a replay of every stored line");
  verify_cmd->add_option("db", db_path, "ledger database file")->required();
  add_reference_flags(verify_cmd, report);
  CLI::App* balances_cmd =
      ledger_cmd->add_subcommand("balances", "limit, consumed and remaining tpp of every cap");
  balances_cmd->add_option("db", db_path, "ledger database file")->required();
  add_reference_flags(balances_cmd, report);
  balances_cmd->add_option("--as-of", as_of, "balances on this date (default: latest date in the ledger)")
      ->check(a_date);
  balances_cmd->add_option("--warn-at", warn_at, "warning levels, fractions of a cap")->capture_default_str();
  balances_cmd->add_option("--format", report.format, "table or csv")->capture_default_str();
  bool balances_replay = false;
  balances_cmd->add_flag("--replay", balances_replay, "ignore the running state: sum every stored line");

  CLI::App* reconcile_cmd =
      app.add_subcommand("reconcile", "compare reported installed units with the ledger");
  reconcile_cmd->add_option("db", db_path, "ledger database file")->required();
  reconcile_cmd->add_option("--inventory", inventory_path, "inventory CSV (entity,country,chip,units)")
      ->required()
      ->check(a_name);
  reconcile_cmd
      ->add_option("--out", report.out_dir, "write reconciliation.csv and summary.json here, atomically")
      ->check(an_output);
  reconcile_cmd->add_option("--as-of", as_of, "count ledger lines up to this date (default: latest)")
      ->check(a_date);
  add_reference_flags(reconcile_cmd, report);
  bool reconcile_replay = false;
  reconcile_cmd->add_flag("--replay", reconcile_replay, "ignore the running state: sum every stored line");

  CLI::App* check_cmd =
      app.add_subcommand("check", "would proposed shipment lines cross a limit? (read-only)");
  check_cmd->add_option("db", db_path, "ledger database file")->required();
  check_cmd->add_option("--proposed", proposed_path, "proposed lines, same format as shipment logs")
      ->required()
      ->check(a_name);
  check_cmd->add_option("--out", check_out, "write the CSV answer here instead of stdout")->check(an_output);
  bool check_replay = false;
  check_cmd->add_flag("--replay", check_replay, "ignore the running state: sum every stored line");
  add_reference_flags(check_cmd, report);

  // ---- generate ----
  generate_options generate;
  std::string generate_out;
  CLI::App* generate_cmd =
      app.add_subcommand("generate", "write a deterministic synthetic log and entities file");
  generate_cmd->add_option("--records", generate.records, "data lines to write")
      ->transform(a_count<std::int64_t>())
      ->required();
  generate_cmd->add_option("--seed", generate.seed, "PRNG seed")
      ->transform(a_count<std::uint64_t>())
      ->capture_default_str();
  generate_cmd->add_option("--entities", generate.entities, "distinct consignees (0: derived from --records)")
      ->transform(a_count<std::int64_t>());
  generate_cmd->add_flag("--force-breaches", generate.force_breaches,
                         "plant lines that make every violation rule fire");
  generate_cmd->add_option("--returns-per-mille", generate.returns_per_mille, "returns per thousand lines")
      ->transform(a_count<std::int64_t>())
      ->capture_default_str();
  generate_cmd->add_option("--out", generate_out, "output directory (shipments.csv, entities.csv)")
      ->check(an_output)
      ->required();
  std::string first_day, last_day;
  generate_cmd
      ->add_option("--first-day", first_day, "first export date of ordinary lines (default 2024-10-01)")
      ->check(a_date);
  generate_cmd->add_option("--last-day", last_day, "last export date of ordinary lines (default 2027-12-31)")
      ->check(a_date);

  // `--version` on every command, as `--help`: `report --version` otherwise said "files is required".
  for (CLI::App* command : app.get_subcommands({})) {
    for (CLI::App* leaf : command->get_subcommands({})) {
      leaf->set_version_flag("--version", app.version());
    }
    command->set_version_flag("--version", app.version());
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : exit_bad_input;
  }

  if (report_cmd->parsed()) {
    return guarded([&] {
      finish_report_flags(report, as_of, warn_at);
      note_format_with_out(report_cmd, report);
      return run_report(report, std::cout, std::cerr);
    });
  }
  if (init_cmd->parsed()) {
    return guarded([&] {
      ledger_init(db_path);
      std::cerr << "capledger: created ledger " << db_path << "\n";
      return 0;
    });
  }
  if (ingest_cmd->parsed()) {
    return guarded([&] {
      if (ingest.max_rejects >= 0 && ingest.rejects_path.empty()) {
        throw config_error("--max-rejects needs --rejects FILE");
      }
      const ledger_ingest_result r = ledger_ingest(ingest);
      std::cerr << "capledger: ingested " << r.files << " file(s): " << r.lines_read << " read, "
                << r.lines_added << " added, " << r.rejected << " rejected; ledger holds " << r.ledger_lines
                << " line(s); running state " << (r.state_rebuilt ? "rebuilt from every line" : "extended")
                << "\n";
      return 0;
    });
  }
  if (ledger_report_cmd->parsed()) {
    return guarded([&] {
      finish_report_flags(report, as_of, warn_at);
      note_format_with_out(ledger_report_cmd, report);
      return run_ledger_report(db_path, report, std::cout, std::cerr, replay);
    });
  }
  if (verify_cmd->parsed()) {
    return guarded([&] {
      const detail::terminal_guard stdout_guard(std::cout);  // verify's stdout is text for people only
      return run_ledger_verify(db_path, report, std::cout);
    });
  }
  if (balances_cmd->parsed()) {
    return guarded([&] {
      finish_report_flags(report, as_of, warn_at);
      return run_ledger_balances(db_path, report, std::cout, std::cerr, balances_replay);
    });
  }
  if (reconcile_cmd->parsed()) {
    return guarded([&] {
      finish_report_flags(report, as_of, warn_at);
      return run_reconcile(db_path, inventory_path, report, std::cout, std::cerr, reconcile_replay);
    });
  }
  if (check_cmd->parsed()) {
    return guarded([&] {
      return run_check(db_path, proposed_path, check_out, check_replay, report, std::cout, std::cerr);
    });
  }
  if (generate_cmd->parsed()) {
    return guarded([&] {
      if (!first_day.empty()) { generate.first_day = parse_date_flag("--first-day", first_day); }
      if (!last_day.empty()) { generate.last_day = parse_date_flag("--last-day", last_day); }
      const reference_data ref = load_reference(report_options{});
      generate_log(generate, ref.countries, ref.chips, ref.rules, generate_out);
      std::cerr << "capledger: wrote " << generate.records << " lines to " << generate_out
                << "/shipments.csv\n";
      return 0;
    });
  }
  return exit_internal;
}
