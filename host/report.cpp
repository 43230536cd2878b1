/// @file report.cpp
/// @brief The `report` job: load, ingest, aggregate on a backend, check, render, write (SPEC §5, §6).
#include <capledger/entity_variants.hpp>
#include <capledger/error.hpp>
#include <capledger/report.hpp>

#include "csv.hpp"
#include "csv_text.hpp"
#include "device_read.hpp"
#include "file_io.hpp"
#include "spreadsheet_hints.hpp"
#include "terminal_text.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iomanip>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <string_view>

#include <sys/stat.h>
#include <unistd.h>

namespace capledger {

namespace fs       = std::filesystem;
using ordered_json = nlohmann::ordered_json;
using detail::csv_text;

std::string default_datasets_dir()
{
  if (const char* env = std::getenv("CAPLEDGER_DATASETS"); env != nullptr && *env != '\0') { return env; }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& candidate :
         {exe.parent_path() / "datasets", exe.parent_path().parent_path() / "datasets",
          exe.parent_path().parent_path() / "share" / "capledger" / "datasets"}) {
      if (fs::exists(candidate / "countries.csv", ec)) { return candidate.string(); }
    }
  }
  return CAPLEDGER_DATASETS_DIR;
}

namespace {

/// Whether @p order_id is what exports write for "no value" (`NULL`, `N/A`, ...), any case.
bool placeholder_order_id(std::string_view order_id)
{
  const std::string upper = detail::to_upper(detail::trim(order_id));
  for (const char* placeholder : {"NULL", "N/A", "NA", "NONE", "NIL", "-", "TBD"}) {
    if (upper == placeholder) { return true; }
  }
  return false;
}

/// @param shown the name summary.json records: bundled files are named `bundled:<file>` so that
///              outputs do not depend on where capledger is installed
/// @param bytes the file as it was read for use: read once, so that a pipe or FIFO is
///              fingerprinted by what was used, not by a second, empty, read
file_fingerprint fingerprint(const std::string& bytes, const std::string& shown)
{
  return {shown, static_cast<std::int64_t>(bytes.size()), detail::sha256_hex(bytes)};
}

/// A reference file's path (the bundled one where @p given is empty) and its name in summary.json.
std::pair<std::string, std::string> reference_path(const std::string& given, const std::string& bundled)
{
  return given.empty() ? std::pair(default_datasets_dir() + "/" + bundled, "bundled:" + bundled)
                       : std::pair(given, given);
}

}  // namespace

std::vector<std::string> reference_files_read(const report_options& options)
{
  return {reference_path(options.countries_path, "countries.csv").first,
          reference_path(options.chips_path, "chips.csv").first,
          reference_path(options.rules_path, "rules/ai-diffusion-2025.json").first, options.entities_path};
}

void refuse_stdin_read_twice(const report_options& options,
                             const std::vector<std::pair<std::string, std::string>>& own,
                             const std::vector<std::string>& logs)
{
  const auto from_stdin            = std::count(logs.begin(), logs.end(), "-");
  const auto stdin_is_a_whole_file = [] {
    struct stat in {};
    return ::fstat(STDIN_FILENO, &in) == 0 && S_ISREG(in.st_mode) && ::lseek(STDIN_FILENO, 0, SEEK_CUR) == 0;
  };
  if (from_stdin > 1 && !stdin_is_a_whole_file()) {
    throw config_error("standard input ('-') is named " + std::to_string(from_stdin) +
                       " times for the shipment log, and it is not a file read from its start (a pipe): "
                       "it can be read once; name it once");
  }
  std::vector<std::pair<std::string, std::string>> reads = own;
  if (from_stdin > 0) { reads.insert(reads.begin(), {"the shipment log", "-"}); }
  reads.insert(reads.end(), {{"--entities", options.entities_path},
                             {"--rules", options.rules_path},
                             {"--countries", options.countries_path},
                             {"--chips", options.chips_path}});
  const std::string* first = nullptr;
  for (const auto& [what, path] : reads) {
    if (path != "-") { continue; }
    if (first != nullptr) {
      throw config_error("standard input ('-') is named for " + *first + " and for " + what +
                         ": it can be read once; give one of them a file");
    }
    first = &what;
  }
  // A pipe or FIFO can be read once by any name: the second reading of `- /dev/stdin` found no
  // header row, which misled, and a FIFO named twice waited forever for a second writer.
  std::vector<std::pair<std::string, std::string>> named;  // (what, path) of everything read
  for (const auto& log : logs) { named.emplace_back("the shipment log", log); }
  for (const auto& read : reads) {
    if (read.first != "the shipment log") { named.push_back(read); }
  }
  std::map<std::pair<dev_t, ino_t>, const std::pair<std::string, std::string>*> pipes;
  for (const auto& entry : named) {
    const auto& [what, path] = entry;
    struct stat st {};
    if (path.empty() || (path == "-" ? ::fstat(STDIN_FILENO, &st) : ::stat(path.c_str(), &st)) != 0 ||
        !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
      continue;
    }
    const auto [seen, first_time] = pipes.emplace(std::pair(st.st_dev, st.st_ino), &entry);
    if (first_time) { continue; }
    const auto& [first_what, first_path] = *seen->second;
    throw config_error(first_what == what
                           ? what + " names one pipe twice (" + detail::shown_input(first_path) + " and " +
                                 detail::shown_input(path) + "): it can be read once; name it once"
                           : first_what + " " + detail::shown_input(first_path) + " and " + what + " " +
                                 detail::shown_input(path) +
                                 " are one pipe: it can be read once; name it once");
  }
}

reference_data load_reference(const report_options& options)
{
  refuse_stdin_read_twice(options,
                          {});  // every command's reference flags; its own inputs too where it reads them
  reference_data ref;
  const auto [countries_path, countries_shown] = reference_path(options.countries_path, "countries.csv");
  const auto [chips_path, chips_shown]         = reference_path(options.chips_path, "chips.csv");
  const auto [rules_path, rules_shown] = reference_path(options.rules_path, "rules/ai-diffusion-2025.json");
  const std::string countries_text     = read_input_file(countries_path);
  const std::string chips_text         = read_input_file(chips_path);
  const std::string rules_text         = read_input_file(rules_path);
  ref.countries                        = parse_countries(countries_text, countries_path);
  ref.chips                            = parse_chips(chips_text, chips_path);
  ref.rules                            = parse_rule_set(rules_text, rules_path);
  ref.countries_file                   = fingerprint(countries_text, countries_shown);
  ref.chips_file                       = fingerprint(chips_text, chips_shown);
  ref.rules_file                       = fingerprint(rules_text, rules_shown);
  if (!options.entities_path.empty()) {
    const std::string entities_text = read_input_file(options.entities_path);
    ref.entities                    = parse_entities(entities_text, options.entities_path, ref.countries);
    ref.entities_file               = fingerprint(entities_text, options.entities_path);
  }
  return ref;
}

std::string to_csv(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows)
{
  csv_text out(header);
  for (const auto& row : rows) { out.add(row); }
  return out.take();
}

std::string choose_backend(const std::string& name, bool gpu_usable, const std::string& why_not,
                           const host_memory_fit& memory, std::ostream& diagnostics)
{
  if (name == "cpu") { return "cpu"; }
  if (name != "gpu" && name != "auto") {
    throw config_error("--backend must be auto, cpu or gpu, not " + detail::quoted(name));
  }
  const bool known        = memory.needed > 0 && memory.available > 0;
  const std::string sizes = known ? "the GPU path holds the whole log in memory, about " +
                                        detail::gigabytes(memory.needed) + " for these inputs, and " +
                                        detail::gigabytes(memory.available) + " are available"
                                  : std::string();
  if (name == "gpu") {
    if (!gpu_usable) { throw device_error("--backend gpu: no usable GPU: " + why_not); }
    if (known && memory.needed > memory.available) {
      throw device_error("--backend gpu: " + sizes + "; --backend cpu streams the log in bounded memory");
    }
    return "gpu";
  }
  if (!gpu_usable) {
    diagnostics << "capledger: backend cpu (no usable GPU: " << why_not << ")\n";
    return "cpu";
  }
  // Three quarters: the rest is for the aggregation's results, the report and the page cache.
  if (known && memory.needed > memory.available / 4 * 3) {
    diagnostics << "capledger: backend cpu (a GPU is usable, but " << sizes << "; the CPU path streams it)\n";
    return "cpu";
  }
  diagnostics << "capledger: backend gpu\n";
  return "gpu";
}

bool gpu_path_if_usable(const std::string& name, const host_memory_fit& memory)
{
  std::ostringstream unsaid;
  try {
    return choose_backend(name, true, "", memory, unsaid) == "gpu";
  } catch (const device_error&) {
    return false;  // `--backend gpu` refused for memory: said when chosen for real
  }
}

std::unique_ptr<backend> select_backend(const std::string& name, std::ostream& diagnostics,
                                        const host_memory_fit& memory)
{
  std::string why_not;
  const bool gpu_usable = (name == "gpu" || name == "auto") && gpu_available(&why_not);
  return choose_backend(name, gpu_usable, why_not, memory, diagnostics) == "gpu" ? make_gpu_backend()
                                                                                 : make_cpu_backend();
}

namespace {

/// The lines of @p inputs, from each file's size and its first mebibyte's line length; 0 when an
/// input is stdin (its size is not known before it is read).
std::uint64_t estimated_lines(const std::vector<std::string>& inputs)
{
  constexpr std::size_t sample_bytes = std::size_t{1} << 20;
  std::uint64_t lines                = 0;
  for (const auto& path : inputs) {
    if (path == "-") { return 0; }
    std::error_code error;
    const std::uint64_t size = fs::file_size(path, error);
    if (error || size == 0) { continue; }  // unreadable: ingest says why
    std::ifstream in(path, std::ios::binary);
    std::string sample(static_cast<std::size_t>(std::min<std::uint64_t>(size, sample_bytes)), '\0');
    in.read(sample.data(), static_cast<std::streamsize>(sample.size()));
    sample.resize(static_cast<std::size_t>(std::max<std::streamsize>(in.gcount(), 0)));
    const auto breaks = static_cast<std::uint64_t>(std::count(sample.begin(), sample.end(), '\n'));
    lines +=
        sample.empty() ? 0 : (size * std::max<std::uint64_t>(breaks, 1) + sample.size() - 1) / sample.size();
  }
  return lines;
}

}  // namespace

std::uint64_t whole_log_memory_estimate(const std::vector<std::string>& inputs)
{
  constexpr std::uint64_t bytes_per_line = 90;
  return estimated_lines(inputs) * bytes_per_line;
}

namespace {

std::vector<std::string> total_cells(const group_total& t)
{
  return {std::to_string(t.records), std::to_string(t.units), std::to_string(t.tpp)};
}

template <typename... Parts>
std::vector<std::string> row_of(std::vector<std::string> head, const std::vector<std::string>& tail,
                                Parts... more)
{
  head.insert(head.end(), tail.begin(), tail.end());
  (head.push_back(std::move(more)), ...);
  return head;
}

ordered_json total_json(const group_total& t, std::int64_t h100_tpp)
{
  return ordered_json{{"records", t.records},
                      {"units", t.units},
                      {"tpp", t.tpp},
                      {"h100_equiv", exact_decimal(t.tpp, h100_tpp, 2)}};
}

ordered_json fingerprint_json(const file_fingerprint& f)
{
  return ordered_json{{"path", f.path}, {"bytes", f.bytes}, {"sha256", f.sha256}};
}

/// `{"summary": ..., "findings": [...]}` as `ordered_json::dump(2)` writes it, with the findings
/// written one at a time instead of built as a JSON tree first (a million findings as a tree took
/// 2.8 GB; `RulesGolden.JsonViewIsTheSummaryAndFindingsAsOneTree` holds the two to the same bytes).
std::string report_json(const ordered_json& summary, const check_results& checks)
{
  constexpr auto replace_bad_bytes = nlohmann::json::error_handler_t::replace;
  std::string text                 = "{\n  \"summary\": ";
  const std::string inner          = summary.dump(2, ' ', false, replace_bad_bytes);
  for (const char c : inner) {  // one level deeper: a JSON text holds no raw line breaks but its own
    text += c;
    if (c == '\n') { text += "  "; }
  }
  text += ",\n  \"findings\": ";
  if (checks.findings.empty()) { return text + "[]\n}\n"; }
  text += "[\n";
  ordered_json value;
  for (std::size_t i = 0; i < checks.findings.size(); ++i) {
    const finding& f                                          = checks.findings[i];
    const std::pair<const char*, const std::string*> fields[] = {
        {"severity", &f.severity}, {"rule", &f.rule},       {"entity", &f.entity},
        {"country", &f.country},   {"pathway", &f.pathway}, {"order_id", &f.order_id},
        {"year", &f.year},         {"date", &f.date},       {"shipment_id", &f.shipment_id},
        {"value", &f.value},       {"limit", &f.limit}};
    text += "    {\n";
    for (std::size_t k = 0; k < std::size(fields); ++k) {
      value = *fields[k].second;
      text += "      \"";
      text += fields[k].first;
      text += "\": ";
      text += value.dump(-1, ' ', false, replace_bad_bytes);
      text += k + 1 < std::size(fields) ? ",\n" : "\n";
    }
    text += i + 1 < checks.findings.size() ? "    },\n" : "    }\n";
  }
  return text + "  ]\n}\n";
}

std::string render_table(const report_output& out, const reference_data& ref, const rule_context& context,
                         const aggregation& agg, const report_source& source, const group_total& global,
                         const std::vector<group_total>& tiers)
{
  std::ostringstream t;
  const std::int64_t h100 = ref.rules.h100_tpp;
  t << "capledger report  rule set " << detail::terminal_text(ref.rules.id) << "  as of "
    << (out.as_of ? format_date(*out.as_of) : std::string("-")) << "  backend " << out.backend_used << "\n";
  t << "lines: " << source.lines_read() << " read, " << agg.lines_used << " used, " << source.rejected()
    << " rejected\n\n";
  // The scope table: each column as wide as its default or its widest cell and a space, so that
  // numbers of any size stay apart and aligned.
  std::vector<std::array<std::string, 5>> rows{{"scope", "records", "units", "tpp", "h100_equiv"}};
  const auto add_row = [&](const std::string& name, const group_total& g) {
    rows.push_back({name, std::to_string(g.records), std::to_string(g.units), std::to_string(g.tpp),
                    exact_decimal(g.tpp, h100, 2)});
  };
  add_row("global", global);
  for (int tier = 1; tier <= 3; ++tier) {
    add_row("tier " + std::to_string(tier), tiers[static_cast<std::size_t>(tier)]);
  }
  std::array<std::size_t, 5> width{10, 12, 16, 22, 16};
  for (const auto& row : rows) {
    for (std::size_t c = 1; c < width.size(); ++c) { width[c] = std::max(width[c], row[c].size() + 1); }
  }
  for (const auto& row : rows) {
    t << std::left << std::setw(static_cast<int>(width[0])) << row[0] << std::right;
    for (std::size_t c = 1; c < width.size(); ++c) { t << std::setw(static_cast<int>(width[c])) << row[c]; }
    t << "\n";
  }

  std::string cap_pathways;  // the rule set's, not always LICENSE alone
  for (int p = 0; p < pathway_count; ++p) {
    if (((ref.rules.country_cap_pathways >> p) & 1U) == 0) { continue; }
    cap_pathways += (cap_pathways.empty() ? "" : "+") + std::string(pathway_name(static_cast<pathway>(p)));
  }
  t << "\ntier-2 country caps in use (" << cap_pathways << "-pathway tpp, counting window):\n";
  bool any_cap = false;
  for (std::size_t c = 0; c < ref.countries.rows.size(); ++c) {
    if (context.country_cap_tpp[c] < 0 || agg.by_country[c].records == 0) { continue; }
    any_cap           = true;
    const crossing& x = agg.country_cap_crossing[c];
    const std::string used_pct = exact_decimal(agg.country_cap_total[c], context.country_cap_tpp[c], 2, 100);
    t << "  " << ref.countries.rows[c].iso2 << std::right << std::setw(22) << agg.country_cap_total[c]
      << " of " << std::setw(14) << context.country_cap_tpp[c]
      << std::setw(static_cast<int>(std::max<std::size_t>(10, used_pct.size() + 1))) << used_pct << "%"
      << (x.line >= 0 ? "  EXCEEDED on " + format_date(source.line(x.line).date) : "") << "\n";
  }
  if (!any_cap) { t << "  (none)\n"; }

  t << "\nfindings: " << out.checks.violations << " violation(s), " << out.checks.warnings << " warning(s)\n";
  for (const auto& f : out.checks.findings) {
    t << "  " << f.severity << "  " << f.rule;
    const auto part = [&](const char* label, const std::string& v) {
      if (!v.empty()) { t << "  " << label << "=" << detail::terminal_text(v); }
    };
    part("entity", f.entity);
    part("country", f.country);
    part("pathway", f.pathway);
    part("order", f.order_id);
    part("year", f.year);
    part("date", f.date);
    part("shipment", f.shipment_id);
    part("value", f.value);
    part("limit", f.limit);
    t << "\n";
  }
  return t.str();
}

}  // namespace

report_output build_report(const reference_data& ref, const shipment_log& log, const report_options& options,
                           backend& engine)
{
  std::optional<day_t> as_of_shown = options.as_of;
  if (!as_of_shown && !log.columns.date.empty()) {
    as_of_shown = *std::max_element(log.columns.date.begin(), log.columns.date.end());
  }
  const day_t as_of          = as_of_shown.value_or(std::numeric_limits<day_t>::max());
  const rule_context context = make_rule_context(ref.rules, ref.countries, ref.entities, log, as_of);
  const aggregation agg      = engine.aggregate(log.view(), context, sizes_of(log, ref.countries));
  return render_report(ref, log_source(log), options, context, agg, engine.name(), as_of_shown);
}

report_output build_report_within_gpu_memory(const reference_data& ref, const shipment_log& log,
                                             const report_options& options, backend& engine,
                                             std::ostream& diagnostics)
{
  try {
    return build_report(ref, log, options, engine);
  } catch (const gpu_memory_short& e) {
    if (options.backend != "auto") {
      throw device_error("--backend gpu: " + std::string(e.what()) + "; --backend cpu reports this log");
    }
    // Nothing the GPU computed is used: the CPU computes the whole report again.
    diagnostics << "capledger: backend cpu (the GPU's free memory cannot take this log: " << e.what()
                << ")\n";
    return build_report(ref, log, options, *make_cpu_backend());
  }
}

report_output render_report(const reference_data& ref, const report_source& source,
                            const report_options& options, const rule_context& context,
                            const aggregation& agg, const std::string& backend_used,
                            std::optional<day_t> as_of)
{
  report_output out;
  out.backend_used = backend_used;
  out.as_of        = as_of;
  out.checks = evaluate_checks(agg, context, ref.rules, ref.countries, ref.entities, source, options.warn_at);
  const dictionary& entities  = source.entities();
  out.notes                   = entity_variant_notes(entities, ref.entities);
  // An export that wrote `NULL` where it had no order joins all such LPP lines into one order:
  // where that order crosses its limit, the finding alone reads as one large order.
  for (const finding& f : out.checks.findings) {
    if (f.rule == "LPP_ORDER_LIMIT" && placeholder_order_id(f.order_id)) {
      out.notes.push_back("capledger: note: LPP_ORDER_LIMIT of order_id " + detail::quoted(f.order_id) +
                          ": every LPP line with that order_id counts as one order; an empty order_id is the "
                          "line's own shipment_id");
    }
  }
  // A shipment_id a spreadsheet rewrote as `1.23457E+11` lost its last digits: a finding citing it
  // points at an id the source system may not have (one note, however many findings).
  const auto scientific_id = [](const finding& f) { return detail::is_scientific_notation(f.shipment_id); };
  const std::vector<finding>& found = out.checks.findings;
  if (const auto first = std::find_if(found.begin(), found.end(), scientific_id); first != found.end()) {
    const auto count = std::count_if(first, found.end(), scientific_id);
    out.notes.push_back(
        "capledger: note: " + std::to_string(count) + (count == 1 ? " finding names" : " findings name") +
        " a shipment_id in scientific notation (first listed: " + detail::quoted(first->shipment_id) + ", " +
        first->rule +
        "): a spreadsheet writes a long number so and drops its last digits, so the source "
        "system may know the shipment by another id; export the column as text");
  }
  const dictionary& exporters = source.exporters();
  const chip_table& log_chips = source.chips();
  const std::int64_t h100     = ref.rules.h100_tpp;

  // by_country.csv, and global and per-tier totals from it.
  group_total global;
  std::vector<group_total> tiers(4);
  std::vector<std::vector<std::string>> rows;
  for (std::size_t c = 0; c < ref.countries.rows.size(); ++c) {
    const group_total& g = agg.by_country[c];
    if (g.records == 0) { continue; }
    const country& info = ref.countries.rows[c];
    for (group_total* sum : {&global, &tiers[static_cast<std::size_t>(info.tier)]}) {
      sum->records += g.records;
      sum->units += g.units;
      sum->tpp += g.tpp;
    }
    std::vector<std::string> cap_cells(5);
    if (info.tier == 2) {
      const std::int64_t cap = context.country_cap_tpp[c];
      const crossing& x      = agg.country_cap_crossing[c];
      cap_cells              = {std::to_string(agg.country_cap_total[c]), std::to_string(cap),
                                exact_decimal(agg.country_cap_total[c], cap, 2, 100),
                   x.line >= 0 ? format_date(source.line(x.line).date) : "",
                   x.line >= 0 ? source.line(x.line).shipment_id : ""};
    }
    rows.push_back(row_of({info.iso2, std::to_string(info.tier)}, total_cells(g),
                          exact_decimal(g.tpp, h100, 2), cap_cells[0], cap_cells[1], cap_cells[2],
                          cap_cells[3], cap_cells[4]));
  }
  out.files["by_country.csv"] =
      to_csv({"country", "tier", "records", "units", "tpp", "h100_equiv", "cap_pathway_tpp", "cap_tpp",
              "cap_used_pct", "breach_date", "breach_shipment_id"},
             rows);

  const std::vector<std::int32_t> entities_by_id = entities.sorted_codes();
  // by_entity_country.csv, the largest file (a row per pair: millions in a large log), is
  // written beside the others on a thread of its own; it reads only what is const here.
  std::future<std::string> by_pair_text = std::async(std::launch::async, [&] {
    // Pairs come sorted by (entity code, country code), so each entity's pairs are one run; the
    // file is sorted by (entity id, country code, which is ISO order): the runs in entity-id
    // order, each id escaped once, the numbers written straight into the text (a log may hold
    // millions of pairs).
    const std::vector<pair_total>& pairs = agg.by_entity_country;
    CAPLEDGER_EXPECTS(std::is_sorted(pairs.begin(), pairs.end(),
                                     [](const pair_total& a, const pair_total& b) {
                                       return entity_country_key(a.entity, a.country) <
                                              entity_country_key(b.entity, b.country);
                                     }),
                      "aggregation::by_entity_country is not sorted by (entity, country)");
    std::vector<std::size_t> run_start(static_cast<std::size_t>(entities.size()) + 1, 0);
    for (const pair_total& p : pairs) { ++run_start[static_cast<std::size_t>(p.entity) + 1]; }
    for (std::size_t e = 1; e < run_start.size(); ++e) { run_start[e] += run_start[e - 1]; }
    csv_text by_pair({"entity", "country", "records", "units", "tpp"});
    for (const std::int32_t e : entities_by_id) {
      const auto code = static_cast<std::size_t>(e);
      if (run_start[code] == run_start[code + 1]) { continue; }
      const std::string entity_cell = csv_text::cell(entities.text(e));
      for (std::size_t k = run_start[code]; k < run_start[code + 1]; ++k) {
        by_pair.add_prepared(entity_cell, ref.countries.rows[pairs[k].country].iso2, pairs[k].total);
      }
    }
    return by_pair.take();
  });
  csv_text by_entity({"entity", "status", "hq_country", "records", "units", "tpp", "h100_equiv"});
  for (const std::int32_t e : entities_by_id) {
    const group_total& g = agg.by_entity[static_cast<std::size_t>(e)];
    if (g.records == 0) { continue; }
    const entity_info* info  = ref.entities.find(entities.text(e));
    const std::string status = std::string(entity_status_name(info ? info->status : entity_status::none));
    const std::string hq     = info && info->hq_country >= 0
                                   ? ref.countries.rows[static_cast<std::size_t>(info->hq_country)].iso2
                                   : "";
    by_entity.add(row_of({entities.text(e), status, hq}, total_cells(g), exact_decimal(g.tpp, h100, 2)));
  }
  out.files["by_entity.csv"] = by_entity.take();

  out.files["by_entity_country.csv"] = by_pair_text.get();

  rows.clear();
  std::vector<std::size_t> chips(log_chips.rows.size());
  for (std::size_t k = 0; k < chips.size(); ++k) { chips[k] = k; }
  std::sort(chips.begin(), chips.end(),
            [&](std::size_t a, std::size_t b) { return log_chips.rows[a].key < log_chips.rows[b].key; });
  for (const std::size_t k : chips) {
    if (agg.by_chip[k].records == 0) { continue; }
    rows.push_back(row_of({log_chips.rows[k].key}, total_cells(agg.by_chip[k])));
  }
  out.files["by_chip.csv"] = to_csv({"chip", "records", "units", "tpp"}, rows);

  rows.clear();
  for (const std::int32_t x : exporters.sorted_codes()) {
    if (agg.by_exporter[static_cast<std::size_t>(x)].records == 0) { continue; }
    rows.push_back(row_of({exporters.text(x)}, total_cells(agg.by_exporter[static_cast<std::size_t>(x)])));
  }
  out.files["by_exporter.csv"] = to_csv({"exporter", "records", "units", "tpp"}, rows);

  csv_text uveu({"entity", "hq_country", "installed_tpp", "tier1_share", "us_share", "max_tier2_country",
                 "max_tier2_share", "compliant"});
  for (const auto& u : out.checks.uveu_shares) {
    uveu.add({u.entity, u.hq_country, std::to_string(u.installed_tpp), u.tier1_share, u.us_share,
              u.max_tier2_country, u.max_tier2_share, u.compliant ? "1" : "0"});
  }
  out.files["uveu_shares.csv"] = uveu.take();

  csv_text findings({"severity", "rule", "entity", "country", "pathway", "order_id", "year", "date",
                     "shipment_id", "value", "limit"});
  for (const auto& f : out.checks.findings) {
    findings.add({f.severity, f.rule, f.entity, f.country, f.pathway, f.order_id, f.year, f.date,
                  f.shipment_id, f.value, f.limit});
  }
  out.files["findings.csv"] = findings.take();

  ordered_json summary;
  summary["tool"]    = "capledger";
  summary["version"] = CAPLEDGER_VERSION;
  summary["rule_set"] =
      ordered_json{{"id", ref.rules.id}, {"path", ref.rules_file.path}, {"sha256", ref.rules_file.sha256}};
  summary["reference"] = ordered_json{
      {"countries", fingerprint_json(ref.countries_file)},
      {"chips", fingerprint_json(ref.chips_file)},
      {"entities", ref.entities_file ? fingerprint_json(*ref.entities_file) : ordered_json(nullptr)}};
  ordered_json inputs = ordered_json::array();
  for (const auto& f : source.files()) {
    inputs.push_back(
        {{"path", f.path}, {"bytes", f.bytes}, {"sha256", f.sha256}, {"lines_read", f.lines_read}});
  }
  summary["inputs"]         = inputs;
  summary["as_of"]          = out.as_of ? ordered_json(format_date(*out.as_of)) : ordered_json(nullptr);
  summary["backend"]        = out.backend_used;
  summary["lines"]          = ordered_json{{"read", source.lines_read()},
                                  {"used", agg.lines_used},
                                  {"after_as_of", source.lines_accepted() - agg.lines_used},
                                  {"rejected", source.rejected()}};
  summary["totals"]         = total_json(global, h100);
  summary["totals_by_tier"] = ordered_json{{"1", total_json(tiers[1], h100)},
                                           {"2", total_json(tiers[2], h100)},
                                           {"3", total_json(tiers[3], h100)}};
  ordered_json by_rule      = ordered_json::object();
  for (const auto& rule : rule_names()) { by_rule[rule] = 0; }
  for (const auto& f : out.checks.findings) { by_rule[f.rule] = by_rule[f.rule].get<std::int64_t>() + 1; }
  summary["findings"] = ordered_json{
      {"violations", out.checks.violations}, {"warnings", out.checks.warnings}, {"by_rule", by_rule}};
  // Every value from the data is UTF-8 (checked at ingest); a file name need not be, and is
  // written with U+FFFD for its stray bytes rather than failing the run.
  constexpr auto replace_bad_bytes = nlohmann::json::error_handler_t::replace;
  out.files["summary.json"]        = summary.dump(2, ' ', false, replace_bad_bytes) + "\n";
  CAPLEDGER_EXPECTS(
      out.files.size() == report_file_names().size() &&
          std::all_of(out.files.begin(), out.files.end(),
                      [](const auto& file) { return report_file_names().count(file.first) == 1; }),
      "report_file_names() lists every file render_report writes");

  const bool printed = options.out_dir.empty();
  if (options.every_view || (printed && options.format == "json")) {
    out.json = report_json(summary, out.checks);
  }
  if (options.every_view || (printed && options.format == "table")) {
    out.table = render_table(out, ref, context, agg, source, global, tiers);
  }
  return out;
}

namespace {

/// Whether @p path lands in @p dir (a `detail::resolved_path`) or in a folder below it, links followed.
bool lies_in(const fs::path& dir, const std::string& path)
{
  const fs::path parent = detail::resolved_path(path).parent_path();
  return std::mismatch(dir.begin(), dir.end(), parent.begin(), parent.end()).first == dir.end();
}

}  // namespace

rejects_output::rejects_output(const std::string& path, const std::string& out_dir) : path_(path)
{
  if (path_.empty()) { return; }
  std::string staging_dir;
  if (!out_dir.empty() && lies_in(detail::resolved_path(out_dir), path_)) {
    // The directory is replaced before the file is put in place.
    out_dir_    = out_dir;
    staging_dir = detail::resolved_path(out_dir).parent_path().string();
    folders_    = std::make_unique<detail::directories_made>(staging_dir, out_dir);  // as the directory's
  }
  file_ = std::make_unique<detail::atomic_file_writer>(path_, staging_dir);
  csv_text header({"file", "line", "column", "reason", "raw"});
  file_->append(header.take());
}

rejects_output::~rejects_output() = default;

void rejects_output::add(const rejected_line& line)
{
  ++count_;
  // Without the raw text, which `note` does not show (a rejected line can be megabytes long).
  if (first_.size() < lines_noted) {
    first_.push_back({line.file, line.line, line.column, line.reason, line.detail, {}});
  }
  if (!file_) { return; }
  // `reason` holds the bare code (DUPLICATE_ID, ...) so the file can be filtered by it; the
  // explanations go to stderr (`note`).
  csv_text row;
  row.add({line.file, std::to_string(line.line), std::to_string(line.column), line.reason, line.raw});
  file_->append(row.take());
}

void rejects_output::count_more(std::int64_t lines)
{
  CAPLEDGER_EXPECTS(lines == 0 || (!file_ && first_.size() == lines_noted),
                    "rejected lines are only counted without a rejects file, past the ones noted");
  count_ += lines;
}

void rejects_output::commit()
{
  if (file_) { file_->commit(); }
  if (folders_) { folders_->keep(); }
}

void rejects_output::commit_stopped(std::ostream& diagnostics)
{
  if (out_dir_.empty()) {
    commit();
    return;
  }
  diagnostics << "capledger: " << path_ << " is not written: it lies in the --out directory " << out_dir_
              << ", which a stopped run leaves as it was\n";
}

void rejects_output::note(std::ostream& diagnostics) const
{
  if (count_ == 0) { return; }
  for (const rejected_line& r : first_) {
    diagnostics << "capledger: rejected " << r.file << ":" << r.line << ":" << r.column << ": " << r.reason
                << ": " << r.detail << "\n";
  }
  if (count_ > static_cast<std::int64_t>(first_.size())) {
    diagnostics << "capledger: ... and " << count_ - static_cast<std::int64_t>(first_.size()) << " more\n";
  }
  diagnostics << "capledger: " << count_ << " line(s) rejected"
              << (path_.empty() ? std::string() : ", all in " + path_) << "\n";
}

void check_report_format(const report_options& options)
{
  if (options.format != "table" && options.format != "json" && options.format != "csv") {
    throw config_error("--format must be table, json or csv, not " + detail::quoted(options.format));
  }
}

int finish_report(const reference_data& ref, const shipment_log& log, const report_options& options,
                  backend& engine, std::ostream& out, std::ostream& diagnostics)
{
  rejects_output rejects(options.rejects_path, options.out_dir);
  add_stored_rejects(rejects, log.rejects, options, diagnostics);
  return emit_report(build_report_within_gpu_memory(ref, log, options, engine, diagnostics), rejects, options,
                     out, diagnostics);
}

void add_stored_rejects(rejects_output& rejects, const std::vector<rejected_line>& stored,
                        const report_options& options, std::ostream& diagnostics)
{
  std::int64_t count = 0;
  for (const rejected_line& r : stored) {
    rejects.add(r);
    if (options.max_rejects >= 0 && ++count > options.max_rejects) {
      rejects.commit_stopped(diagnostics);
      throw too_many_rejects(options.max_rejects, r);
    }
  }
}

namespace {

/// The name of the rejects file when it lies directly in the `--out` directory (a previous run's
/// copy of it is replaced with the directory), else nothing.
std::set<std::string> rejects_file_in_out_dir(const report_options& options)
{
  if (options.rejects_path.empty() || options.out_dir.empty()) { return {}; }
  const auto file = detail::resolved_path(options.rejects_path);
  if (file.parent_path() != detail::resolved_path(options.out_dir)) { return {}; }
  return {file.filename().string()};
}

}  // namespace

const std::set<std::string>& report_file_names()
{
  static const std::set<std::string> names = {"summary.json",          "by_country.csv", "by_entity.csv",
                                              "by_entity_country.csv", "by_chip.csv",    "by_exporter.csv",
                                              "uveu_shares.csv",       "findings.csv"};
  return names;
}

void check_report_outputs(const report_options& options, const std::string& ledger)
{
  refuse_stdin_read_twice(options, {}, options.inputs);
  std::vector<std::string> read = options.inputs;
  for (const std::string& path : reference_files_read(options)) { read.push_back(path); }
  detail::refuse_colliding_paths(
      {read, {{"--rejects", options.rejects_path}}, {"--out", options.out_dir}, ledger},
      options.out_dir.empty() ? "the report" : "");
  if (options.out_dir.empty()) { return; }
  // The directory is replaced whole: a rejects file in a folder inside it would have no folder to
  // go to once the report is in place, and one under a report file's name would replace it.
  const std::set<std::string> rejects_here = rejects_file_in_out_dir(options);
  if (!options.rejects_path.empty() && rejects_here.empty() &&
      lies_in(detail::resolved_path(options.out_dir), options.rejects_path)) {
    throw config_error("--rejects " + options.rejects_path + " lies in a folder inside the --out directory " +
                       options.out_dir + ", which is replaced whole; put it directly in " + options.out_dir +
                       " or outside it");
  }
  std::set<std::string> replaceable = report_file_names();
  for (const auto& name : rejects_here) {
    if (replaceable.count(name) != 0) {
      throw config_error("--rejects " + options.rejects_path + " is the report's own " + name + " in --out " +
                         options.out_dir + "; name another file");
    }
    replaceable.insert(name);
  }
  detail::check_output_dir_replaceable(options.out_dir, replaceable);
}

int emit_report(const report_output& report, rejects_output& rejects, const report_options& options,
                std::ostream& out, std::ostream& diagnostics)
{
  // The output directory first: when it is refused, the run fails before anything is written.
  std::optional<detail::staged_directory> staged;
  if (!options.out_dir.empty()) {
    staged.emplace(options.out_dir, report.files, rejects_file_in_out_dir(options));
  }
  {
    const detail::signals_deferred together;  // an interrupt leaves both outputs old or both new
    if (staged) {
      staged->commit([&rejects] { rejects.commit(); });  // a rejects file that fails puts the old report back
    } else {
      rejects.commit();
    }
  }
  for (const std::string& note : report.notes) { diagnostics << note << "\n"; }
  rejects.note(diagnostics);

  if (!options.out_dir.empty()) {
    diagnostics << "capledger: wrote " << report.files.size() << " files to " << options.out_dir << "\n";
  } else if (options.format == "json") {
    out << report.json;
  } else if (options.format == "csv") {
    out << report.files.at("findings.csv");
  } else {
    out << report.table;
  }
  return report.checks.violations > 0 ? 1 : 0;
}

namespace {

/// `CAPLEDGER_GPU_INGEST=host`: the GPU ingest's lines read ahead on the host with the device's
/// code, so that every command-line test can run the GPU ingest's integration without a GPU.
class host_line_reader final : public detail::gpu_line_reader {
 public:
  explicit host_line_reader(const device_csv::tables& tables) : tables_(tables) {}
  void read(std::string_view text, std::size_t from, std::size_t to, const device_csv::line_layout& layout,
            detail::lines_read_ahead& out) override
  {
    detail::read_ahead_on_host(text, from, to, layout, tables_, out);
  }

 private:
  device_csv::tables tables_;
};

/// The GPU ingest `report_options::gpu_ingest` (or the environment) asks for, or null (not asked,
/// or no usable GPU: then a note says why).
std::shared_ptr<detail::gpu_read_ahead> gpu_ingest_if_asked(const report_options& options,
                                                            const reference_data& ref,
                                                            std::ostream& diagnostics)
{
  const char* env             = std::getenv("CAPLEDGER_GPU_INGEST");
  const std::string_view mode = env == nullptr ? std::string_view() : std::string_view(env);
  if (!options.gpu_ingest && !mode.empty() && mode != "0" && mode != "1" && mode != "host") {
    diagnostics << "capledger: note: CAPLEDGER_GPU_INGEST=" << detail::quoted(mode)
                << " is not 0, 1 or host: the GPU ingest stays off\n";
  }
  if (!options.gpu_ingest.value_or(mode == "1" || mode == "host")) { return nullptr; }
  std::string why;
  const auto tables = detail::make_device_tables(ref.countries, ref.chips);
  if (!tables) {
    why = "the country or chip table does not fit the GPU's line reader";
  } else if (mode == "host" && !options.gpu_ingest) {
    diagnostics << "capledger: note: CAPLEDGER_GPU_INGEST=host: the GPU ingest's lines are read on the host "
                   "(a test of the GPU ingest without a GPU)\n";
    return std::make_shared<detail::gpu_read_ahead>(std::make_unique<host_line_reader>(*tables));
  } else if (gpu_available(&why)) {
    try {
      // Chunks of 4 MiB: a 16-core parse window (7.5 MiB) is then two, whose copies and kernels overlap.
      auto ingest = std::make_shared<detail::gpu_read_ahead>(
          detail::make_gpu_line_reader(*tables, std::size_t{4} << 20));
      diagnostics << "capledger: note: the GPU ingest (experimental) reads plain lines on the GPU\n";
      return ingest;
    } catch (const device_error& e) {
      why = e.what();
    }
  }
  diagnostics << "capledger: note: the GPU ingest was asked for, but " << why
              << ": the host reads every line\n";
  return nullptr;
}

/// After the ingest: says whether the GPU ingest failed on the way (the host read the rest).
/// Once the log is read: lets the GPU ingest's reader go (its device and pinned memory) and says
/// what failed, if it did. @return the failure
std::optional<std::string> finish_gpu_ingest(detail::gpu_read_ahead* ingest, std::ostream& diagnostics)
{
  if (ingest == nullptr) { return std::nullopt; }
  ingest->release();
  const auto failure = ingest->failure();
  if (failure) {
    diagnostics << "capledger: note: the GPU ingest failed (" << *failure
                << "); the host read the lines from there on\n";
  }
  return failure;
}

}  // namespace

int run_report(const report_options& options, std::ostream& out, std::ostream& diagnostics)
{
  check_report_format(options);
  if (options.inputs.empty()) { throw config_error("report needs at least one shipment log"); }
  check_report_outputs(options);
  const reference_data ref = load_reference(options);
  const host_memory_fit memory{options.backend == "cpu" ? 0 : whole_log_memory_estimate(options.inputs),
                               detail::available_memory()};
  std::uint64_t input_bytes = 0;
  bool from_stdin           = false;
  // One file named twice (a glob and its file, a link) is read twice as SPEC says, every line of
  // it then a DUPLICATE_ID: say why before the first such error does.
  std::map<std::pair<dev_t, ino_t>, std::string> files_seen;  // (device, inode) -> the first name
  for (const auto& path : options.inputs) {
    from_stdin = from_stdin || path == "-";
    struct stat st {};
    // Not a regular file (unreadable, a pipe): ingest says why, or reads it as it comes.
    if (path == "-" || ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) { continue; }
    input_bytes += static_cast<std::uint64_t>(st.st_size);
    const auto [seen, first] = files_seen.emplace(std::pair(st.st_dev, st.st_ino), path);
    if (!first) {
      diagnostics << "capledger: note: " << detail::message_text(path) << " is "
                  << (seen->second == path ? "given twice"
                                           : "the same file as " + detail::message_text(seen->second))
                  << ": its lines are read again, each a DUPLICATE_ID of the first reading\n";
    }
  }
  // Starting the GPU (driver and context) takes about half a second on an H200 host, which came
  // before the first line was read. Where a GPU is likely, the inputs are files (a log of
  // unknown size, stdin, must stream if the GPU proves unusable) and the log is for the
  // GPU path if the GPU is usable, the columns are built while a thread starts it, and the
  // choice is made (and said) after the ingest; elsewhere it is made now.
  std::unique_ptr<backend> engine;
  std::future<std::pair<bool, std::string>> gpu_started;
  if (options.backend != "cpu" && !from_stdin && options.gpu_node_present.value_or(gpu_likely_present()) &&
      gpu_path_if_usable(options.backend, memory)) {
    gpu_started = std::async(std::launch::async, [] {
      std::string why;
      const bool usable = gpu_available(&why);
      return std::make_pair(usable, why);
    });
  } else {
    engine = select_backend(options.backend, diagnostics, memory);
  }
  // `--backend gpu` without a usable GPU is exit 3, as when chosen first, also where what follows
  // fails (the rejects file, the ingest): the GPU thread is asked before anything is written.
  const auto refuse_gpu_if_unusable = [&] {
    if (!gpu_started.valid() || options.backend != "gpu") { return; }
    const auto [usable, why_not] = gpu_started.get();
    if (!usable) {  // throws: `--backend gpu` without a usable GPU
      static_cast<void>(choose_backend(options.backend, usable, why_not, memory, diagnostics));
    }
  };

  // Rejected lines go to the rejects file as they are found (written in place at the end, also
  // when --max-rejects stops the run): memory does not grow with the bad lines.
  rejects_output rejects = [&] {
    try {
      return rejects_output(options.rejects_path, options.out_dir);
    } catch (...) {
      refuse_gpu_if_unusable();
      throw;
    }
  }();
  ingest_options ingest;
  ingest.keep_rejects         = !options.rejects_path.empty();
  ingest.max_rejects          = options.max_rejects;
  ingest.on_reject            = [&rejects](const rejected_line& line) { rejects.add(line); };
  ingest.expected_input_bytes = input_bytes;
  const std::shared_ptr<detail::gpu_read_ahead> gpu_ingest = gpu_ingest_if_asked(options, ref, diagnostics);
  if (gpu_ingest) {
    ingest.read_ahead = [gpu_ingest](std::string_view text, std::size_t from, std::size_t to,
                                     const device_csv::line_layout& layout, detail::lines_read_ahead& lines) {
      gpu_ingest->read(text, from, to, layout, lines);
    };
  }
  if (engine && engine->name() == "cpu") {
    // The CPU needs no columns: it aggregates the log as it streams past (bounded memory), and
    // for large inputs it finds repeated ids out of memory too.
    report_options streaming    = options;
    streaming.external_id_check = !from_stdin && input_bytes > options.external_id_check_above;
    if (streaming.external_id_check) {
      diagnostics << "capledger: " << input_bytes << " bytes of input: shipment ids are checked for repeats "
                  << "out of memory (a first pass over the inputs)\n";
      constexpr std::uint64_t spilled_per_line = 16;  // (id hash, offset)
      detail::check_temporary_room(estimated_lines(options.inputs) * spilled_per_line,
                                   detail::temporary_space_here(), diagnostics);
      // Its 256 part files are open at once, with the inputs, outputs and a file of repeats.
      detail::check_open_file_room(256 + 64);
    }
    std::vector<rejected_line> kept;  // stays empty: `on_reject` takes every rejected line
    report_output report;
    try {
      report = stream_report(
          ref, streaming, ingest,
          [&](shipment_log_builder& builder) {
            for (const auto& path : options.inputs) { builder.add_file(path); }
          },
          kept);
    } catch (const too_many_rejects&) {
      rejects.commit_stopped(diagnostics);
      throw;
    }
    static_cast<void>(finish_gpu_ingest(gpu_ingest.get(), diagnostics));
    return emit_report(report, rejects, options, out, diagnostics);
  }
  shipment_log_builder builder(ref.countries, ref.chips, ingest);
  try {
    for (const auto& path : options.inputs) { builder.add_file(path); }
  } catch (const too_many_rejects&) {
    refuse_gpu_if_unusable();
    rejects.commit_stopped(diagnostics);
    throw;
  } catch (...) {
    refuse_gpu_if_unusable();
    throw;
  }
  const shipment_log log = builder.finish();
  // A GPU that failed while it read lines may have lost its context (an illegal address is
  // sticky): it aggregates nothing. `auto` takes the CPU, `gpu` exits 3, as for a GPU found
  // unusable.
  const std::optional<std::string> gpu_ingest_failure = finish_gpu_ingest(gpu_ingest.get(), diagnostics);
  const std::string failed_while_reading =
      gpu_ingest_failure ? "the GPU failed while it read the log: " + *gpu_ingest_failure : std::string();
  if (engine && engine->name() == "gpu" && gpu_ingest_failure) {
    if (options.backend == "gpu") { throw device_error(failed_while_reading); }
    diagnostics << "capledger: backend cpu (" << failed_while_reading << ")\n";
    engine = make_cpu_backend();
  }
  if (!engine) {
    const auto [usable, why_not] = gpu_started.get();
    if (choose_backend(options.backend, usable && !gpu_ingest_failure,
                       usable ? failed_while_reading : why_not, memory, diagnostics) == "gpu") {
      engine = make_gpu_backend();
    } else {
      diagnostics
          << "capledger: the log was read into columns while the GPU started; the CPU aggregates them\n";
      engine = make_cpu_backend();
    }
  }
  return emit_report(build_report_within_gpu_memory(ref, log, options, *engine, diagnostics), rejects,
                     options, out, diagnostics);
}

}  // namespace capledger
