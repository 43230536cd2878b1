/// @file main.cpp
/// @brief The `capledger` command line (SPEC §6): parses flags, runs a job, maps errors to exit codes.
#include <capledger/error.hpp>
#include <capledger/generate.hpp>
#include <capledger/report.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>

namespace {

using namespace capledger;

constexpr int exit_bad_input = 2;
constexpr int exit_internal  = 3;

std::vector<ppm_t> parse_warn_levels(const std::string& list)
{
  std::vector<ppm_t> levels;
  std::size_t start = 0;
  while (start <= list.size()) {
    const auto comma = list.find(',', start);
    const std::string item(list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    const auto level = parse_ppm(item);
    if (!level || *level <= 0 || *level > ppm_one) {
      throw config_error("--warn-at: '" + item + "' is not a fraction in (0, 1] with at most 6 decimals");
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
  if (!day) { throw config_error(flag + ": '" + text + "' is not a valid YYYY-MM-DD date"); }
  return *day;
}

/// Runs @p job, turning every exception into a message on stderr and the exit code of SPEC §6.
template <typename Job>
int guarded(Job job)
{
  try {
    return job();
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
  } catch (const std::exception& e) {
    std::cerr << "capledger: internal error: " << e.what() << "\n";
    return exit_internal;
  }
}

}  // namespace

int main(int argc, char** argv)
{
  CLI::App app{"capledger: compute-capacity accounting for AI-chip export rules"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("capledger ") + CAPLEDGER_VERSION);

  // ---- report ----
  report_options report;
  std::string as_of, warn_at = "0.8,0.9,0.95";
  CLI::App* report_cmd = app.add_subcommand("report", "aggregate shipment logs, apply the rule set, report findings");
  report_cmd->add_option("files", report.inputs, "shipment logs (CSV); '-' reads stdin")->required();
  report_cmd->add_option("--entities", report.entities_path, "entities file (entity,hq_country,status,nveu_countries)");
  report_cmd->add_option("--rules", report.rules_path, "rule set JSON (default: bundled ai-diffusion-2025)");
  report_cmd->add_option("--countries", report.countries_path, "countries table (default: bundled)");
  report_cmd->add_option("--chips", report.chips_path, "chips table (default: bundled)");
  report_cmd->add_option("--as-of", as_of, "ignore lines after this date (default: latest date in the input)");
  report_cmd->add_option("--backend", report.backend, "auto, cpu or gpu")->capture_default_str();
  report_cmd->add_option("--out", report.out_dir, "write every output file into this directory, atomically");
  report_cmd->add_option("--rejects", report.rejects_path, "skip bad lines and write them to this CSV file");
  report_cmd->add_option("--max-rejects", report.max_rejects, "with --rejects: stop once more lines are rejected");
  report_cmd->add_option("--warn-at", warn_at, "CAP_NEAR_LIMIT levels, fractions of a cap")->capture_default_str();
  report_cmd->add_option("--format", report.format, "stdout format without --out: table, json or csv")
    ->capture_default_str();

  // ---- generate ----
  generate_options generate;
  std::string generate_out;
  CLI::App* generate_cmd = app.add_subcommand("generate", "write a deterministic synthetic log and entities file");
  generate_cmd->add_option("--records", generate.records, "data lines to write")->required();
  generate_cmd->add_option("--seed", generate.seed, "PRNG seed")->capture_default_str();
  generate_cmd->add_option("--entities", generate.entities, "distinct consignees (0: derived from --records)");
  generate_cmd->add_flag("--force-breaches", generate.force_breaches, "plant lines that make every violation rule fire");
  generate_cmd->add_option("--returns-per-mille", generate.returns_per_mille, "returns per thousand lines")
    ->capture_default_str();
  generate_cmd->add_option("--out", generate_out, "output directory (shipments.csv, entities.csv)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : exit_bad_input;
  }

  if (report_cmd->parsed()) {
    return guarded([&] {
      if (!as_of.empty()) { report.as_of = parse_date_flag("--as-of", as_of); }
      report.warn_at = parse_warn_levels(warn_at);
      if (report.max_rejects >= 0 && report.rejects_path.empty()) {
        throw config_error("--max-rejects needs --rejects FILE");
      }
      return run_report(report, std::cout, std::cerr);
    });
  }
  if (generate_cmd->parsed()) {
    return guarded([&] {
      const reference_data ref = load_reference(report_options{});
      generate_log(generate, ref.countries, ref.chips, ref.rules, generate_out);
      std::cerr << "capledger: wrote " << generate.records << " lines to " << generate_out << "/shipments.csv\n";
      return 0;
    });
  }
  return exit_internal;
}
