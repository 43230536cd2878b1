/// @file cli_test.cpp
/// @brief The `capledger` binary end to end: exit codes, messages, output directory, rejects, formats.
#include <capledger/backend.hpp>
#include <capledger/error.hpp>
#include <capledger/report.hpp>

#include "csv.hpp"

#include <gtest/gtest.h>

#include "test_support.hpp"
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using capledger::test::sample_dir;
using capledger::test::under_sanitizer;

using capledger::test::read_text;

struct run_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

/// Each test works in a fresh directory of its own, removed at the end.
class Cli : public ::testing::Test {
 protected:
  void SetUp() override
  {
    work_ = dir_ / "work";
    fs::create_directories(work_);
  }

  std::string write(const std::string& name, const std::string& content)
  {
    const fs::path path = work_ / name;
    std::ofstream(path, std::ios::binary) << content;
    return path.string();
  }

  /// Runs `capledger ARGS` in the work directory; stdout and stderr are captured in files
  /// outside it, so that the work directory holds only what the program writes.
  run_result run(const std::string& args, const std::string& stdin_file = "")
  {
    return run_shell("'" + std::string(CAPLEDGER_CLI_PATH) + "' " + args +
                     (stdin_file.empty() ? " </dev/null" : " <'" + stdin_file + "'"));
  }

  /// Runs a shell command line in the work directory, `CLI` standing for the program's path.
  run_result run_shell(std::string command_line)
  {
    for (std::size_t at; (at = command_line.find("CLI")) != std::string::npos;) {
      command_line.replace(at, 3, "'" + std::string(CAPLEDGER_CLI_PATH) + "'");
    }
    const fs::path out = dir_ / "stdout.txt";
    const fs::path err = dir_ / "stderr.txt";
    const std::string command = "cd '" + work_.string() + "' && { " + command_line + "; } >'" + out.string() +
                                "' 2>'" + err.string() + "'";
    const int status = std::system(command.c_str());
    run_result result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.out       = read_text(out);
    result.err       = read_text(err);
    return result;
  }

  /// `run` with one file-system call of the program failing: @p failure is `OP:N:ERRNO` (the Nth
  /// call of OP fails, tests/fail_io.cpp), as a disk that is full or breaking would make it fail.
  run_result run_failing(const std::string& failure, const std::string& args)
  {
    return run_shell("LD_PRELOAD='" CAPLEDGER_FAIL_IO_PATH "' CAPLEDGER_FAIL_IO=" + failure +
                     " ASAN_OPTIONS=\"$ASAN_OPTIONS:verify_asan_link_order=0\" CLI " + args + " </dev/null");
  }

  /// Names of the entries of @p dir (hidden ones included).
  static std::set<std::string> entries(const fs::path& dir)
  {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) { names.insert(entry.path().filename().string()); }
    return names;
  }

  capledger::test::scratch_dir scratch_{"capledger_cli_test"};
  fs::path dir_ = scratch_.root();
  fs::path work_;
};

const std::string header = "shipment_id,date,entity,country,chip,quantity\n";
/// Three tier-1 LICENSE lines: no rule applies, no cap is near.
const std::string clean_log = header +
                              "S1,2025-02-01,E1,US,H100-SXM,10\n"
                              "S2,2025-03-01,E1,DE,H100-SXM,20\n"
                              "S3,2025-04-01,E2,US,B200,5\n";

const std::set<std::string> output_files = {"summary.json",    "by_country.csv",  "by_entity.csv",
                                            "by_entity_country.csv", "by_chip.csv", "by_exporter.csv",
                                            "uveu_shares.csv", "findings.csv"};

/// Parses CSV text into rows of strings (header included).
std::vector<std::vector<std::string>> parse_csv(const std::string& text)
{
  std::vector<std::vector<std::string>> rows;
  capledger::detail::csv_reader reader(text);
  while (true) {
    const auto status = reader.next();
    if (status == capledger::detail::csv_status::end) { break; }
    EXPECT_EQ(status, capledger::detail::csv_status::record);
    if (status != capledger::detail::csv_status::record) { break; }
    std::vector<std::string> row;
    for (const auto& field : reader.fields()) { row.emplace_back(field.value); }
    rows.push_back(row);
  }
  return rows;
}

TEST_F(Cli, CleanLogExitsZero)
{
  const auto log = write("log.csv", clean_log);
  const auto r   = run("report --backend cpu " + log);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
}

TEST_F(Cli, SampleWithViolationsExitsOne)
{
  // The sample ships 10 H20 to CN (tier 3), among other breaches.
  const auto r = run("report --backend cpu " + (sample_dir() / "shipments.csv").string() + " --entities " +
                     (sample_dir() / "entities.csv").string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
}

TEST_F(Cli, BadLineExitsTwoWithPosition)
{
  // Line 3, the date field at column 4.
  const auto log = write("log.csv", header + "S1,2025-02-01,E1,US,H100-SXM,10\nS2,2025-02-30,E1,US,H100-SXM,10\n");
  const auto r   = run("report --backend cpu " + log);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(log + ":3:4: BAD_DATE"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("terminate"), std::string::npos) << r.err;
}

TEST_F(Cli, FormatWithOutIsNotedAsChangingNothing)
{
  const auto log = write("log.csv", clean_log);
  const auto r   = run("report --backend cpu " + log + " --out o1 --format json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");  // the files are written; stdout gets no JSON
  EXPECT_NE(r.err.find("capledger: note: --format json is for standard output without --out; --out o1 gets"),
            std::string::npos)
      << r.err;
  // Without --format, or without --out, no note.
  for (const char* args : {" --out o2", " --format csv"}) {
    const auto quiet = run("report --backend cpu " + log + args);
    EXPECT_EQ(quiet.exit_code, 0) << quiet.err;
    EXPECT_EQ(quiet.err.find("--format"), std::string::npos) << args << ": " << quiet.err;
  }
}

// What goes to stdout must arrive: a full disk or a closed stdout is exit 2 with a message, not
// a success whose answer was lost.
TEST_F(Cli, StdoutThatCannotBeWrittenIsAnError)
{
  const auto log = write("log.csv", clean_log);
  for (const char* redirect : {">/dev/full", ">&-"}) {
    for (const char* format : {"table", "csv", "json"}) {
      const auto r =
          run_shell("CLI report --backend cpu --format " + std::string(format) + " " + log + " " + redirect);
      EXPECT_EQ(r.exit_code, 2) << redirect << " " << format;
      EXPECT_NE(r.err.find("cannot write to standard output"), std::string::npos) << r.err;
    }
  }
  EXPECT_EQ(run_shell("CLI report --backend cpu " + log + " >/dev/null").exit_code, 0);

  // A pipe whose reader is gone (`| head` done reading): the same, not a death by SIGPIPE.
  int pipe_ends[2];
  ASSERT_EQ(::pipe(pipe_ends), 0);
  ::close(pipe_ends[0]);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGPIPE, SIG_DFL);  // as a shell leaves it
    ::dup2(pipe_ends[1], 1);
    const int quiet = ::open("/dev/null", O_WRONLY);
    ::dup2(quiet, 2);
    ::execl(CAPLEDGER_CLI_PATH, CAPLEDGER_CLI_PATH, "report", "--backend", "cpu", log.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(pipe_ends[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status)) << "ended by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 2);
  // `ledger verify` writes through its terminal guard (README "What people read"): the same.
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  EXPECT_EQ(run_shell("CLI ledger verify l.db >/dev/full").exit_code, 2);
  EXPECT_EQ(run_shell("CLI ledger verify l.db >/dev/null").exit_code, 0);
}

// A write past `ulimit -f` fails (EFBIG) like a full disk: exit 2 with a message and no staging
// file left, not a death by SIGXFSZ with `.NAME.tmp.PID` beside the output.
// CAPLEDGER_GPU_INGEST takes 0, 1 or host: another value (a script's `yes`) is not taken for 1
// in silence; the report is the one without it.
TEST_F(Cli, AGpuIngestSwitchItDoesNotKnowIsNoted)
{
  const auto log = write("log.csv", header + "S1,2025-02-01,E1,US,H100-SXM,10\n");
  for (const std::string value : {"yes", "true", "2"}) {
    const auto r =
        run_shell("CAPLEDGER_GPU_INGEST=" + value + " CLI report --backend cpu " + log + " --format csv");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("capledger: note: CAPLEDGER_GPU_INGEST='" + value +
                         "' is not 0, 1 or host: the GPU ingest stays off\n"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(r.err.find("GPU ingest was asked for"), std::string::npos) << r.err;
  }
  for (const std::string value : {"0", ""}) {
    const auto r =
        run_shell("CAPLEDGER_GPU_INGEST=" + value + " CLI report --backend cpu " + log + " --format csv");
    EXPECT_EQ(r.err.find("CAPLEDGER_GPU_INGEST"), std::string::npos) << r.err;
  }
}

TEST_F(Cli, FileSizeLimitIsAWriteErrorNotADeath)
{
  std::string log = header;
  std::string bad = header;
  for (int i = 0; i < 200; ++i) {
    log += "S" + std::to_string(i) + ",2025-02-01,ENTITY" + std::to_string(i) + ",US,H100-SXM,10\n";
    bad += "B" + std::to_string(i) + ",2025-02-30,ENTITY" + std::to_string(i) + ",US,H100-SXM,10\n";
  }
  const auto log_path = write("log.csv", log);
  const auto bad_path = write("bad.csv", bad);
  for (const std::string& command :
       {"CLI report --backend cpu " + log_path + " --out o",
        "CLI report --backend cpu --format json " + log_path,
        "CLI report --backend cpu --format csv " + bad_path + " --rejects r.csv",
        std::string("CLI generate --records 1000 --out g"),
        "cat " + log_path + " | CLI report --backend cpu - >/dev/null"}) {  // stdin copied to $TMPDIR
    // dash counts `ulimit -f` in 512-byte blocks, bash in 1024: either is far below the outputs.
    const auto r = run_shell("ulimit -f 1 && " + command);
    EXPECT_EQ(r.exit_code, 2) << command << ": " << r.err;
    EXPECT_NE(r.err.find("capledger: "), std::string::npos) << command << ": " << r.err;
    EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv", "bad.csv"})) << command;
  }
}

// The CPU's aggregation of a stored log (`--replay`, `verify`) splits it into slices, one a thread
// (a slice a 256 Ki lines): OMP_THREAD_LIMIT or OMP_DYNAMIC gave fewer threads than slices, which
// left slices unsummed (a crash, or totals short). Every limit gives the same bytes.
TEST_F(Cli, ThreadLimitsDoNotChangeALedgerReplay)
{
  ASSERT_EQ(run("generate --records 530000 --seed 4 --force-breaches --out g").exit_code, 0);
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  ASSERT_EQ(run("ledger ingest l.db g/shipments.csv --entities g/entities.csv").exit_code, 0);
  const auto replay = [&](const std::string& environment) {
    const auto report = run_shell(environment +
                                  " CLI ledger report l.db --replay --entities g/entities.csv "
                                  "--format csv </dev/null");
    const auto balances =
        run_shell(environment + " CLI ledger balances l.db --replay --format csv </dev/null");
    const auto verify = run_shell(environment + " CLI ledger verify l.db </dev/null");
    return std::to_string(report.exit_code) + report.out + std::to_string(balances.exit_code) + balances.out +
           std::to_string(verify.exit_code);
  };
  const std::string expected = replay("OMP_NUM_THREADS=2");
  EXPECT_EQ(expected.substr(0, 1), "1");  // the log breaks rules
  for (const char* environment :
       {"OMP_NUM_THREADS=2 OMP_THREAD_LIMIT=1", "OMP_NUM_THREADS=2 OMP_DYNAMIC=true"}) {
    EXPECT_TRUE(replay(environment) == expected) << environment;
  }
}

// Threads the system refuses (a memory limit too low for 63 thread stacks) stop the run with
// exit 2 and a message, not std::terminate on a running thread (SIGABRT).
TEST_F(Cli, RefusedThreadsAreAnErrorNotACrash)
{
  if (under_sanitizer) { GTEST_SKIP() << "ulimit -v: a sanitizer's shadow memory does not fit it"; }
  const auto log = write("log.csv", clean_log);
  const auto r =
      run_shell("ulimit -s 8192 && ulimit -v 200000 && OMP_NUM_THREADS=64 CLI report --backend cpu " + log +
                " --out o </dev/null");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("cannot start a thread"), std::string::npos) << r.err;
  EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv"})) << r.err;
}

// Memory limits from too low to start to enough: every run ends with an exit code and says why
// (exit 3 "out of memory", not "internal error: std::bad_alloc"; exit 2 for refused threads), never
// by a signal.
TEST_F(Cli, MemoryLimitsGiveAnExitCodeAndAMessage)
{
  if (under_sanitizer) { GTEST_SKIP() << "ulimit -v: a sanitizer's shadow memory does not fit it"; }
  ASSERT_EQ(run("generate --records 20000 --seed 2 --out g").exit_code, 0);
  for (int kib = 12000; kib <= 80000; kib += 4000) {
    const auto r =
        run_shell("ulimit -v " + std::to_string(kib) +
                  " && CLI report --backend cpu g/shipments.csv --entities g/entities.csv --out o");
    SCOPED_TRACE(std::to_string(kib) + " KiB: " + r.err);
    // 127: the loader could not map the libraries (below what any run needs); above 128: a signal.
    EXPECT_TRUE(r.exit_code >= 0 && (r.exit_code <= 3 || r.exit_code == 127));
    if (r.exit_code == 3) { EXPECT_NE(r.err.find("capledger: out of memory"), std::string::npos); }
    run_shell("rm -rf o");
  }
}

TEST_F(Cli, BadFlagExitsTwo)
{
  const auto log = write("log.csv", clean_log);
  EXPECT_EQ(run("report --backend cpu --no-such-flag " + log).exit_code, 2);
  EXPECT_EQ(run("report --backend cpu --format xml " + log).exit_code, 2);
  EXPECT_EQ(run("report --backend quantum " + log).exit_code, 2);
  EXPECT_EQ(run("report --backend cpu --as-of 2025-02-30 " + log).exit_code, 2);
  // An empty --as-of (a script's empty $DATE) is not "no --as-of", in every command that takes one.
  const auto empty_as_of = run("report --backend cpu --as-of '' " + log);
  EXPECT_EQ(empty_as_of.exit_code, 2);
  EXPECT_EQ(empty_as_of.err.rfind("capledger: --as-of: an empty value is not a YYYY-MM-DD date", 0), 0U)
      << empty_as_of.err;  // said by capledger, as every error is
  for (const char* command :
       {"ledger report l.db", "ledger balances l.db", "reconcile l.db --inventory i.csv"}) {
    const auto r = run(std::string(command) + " --as-of ''");
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_NE(r.err.find("--as-of: an empty value"), std::string::npos) << command << ": " << r.err;
  }
  EXPECT_EQ(run("report --backend cpu --warn-at 1.5 " + log).exit_code, 2);
  EXPECT_EQ(run("report --backend cpu --max-rejects 3 " + log).exit_code, 2);  // without --rejects
  EXPECT_EQ(run("report").exit_code, 2);                                    // no input
  EXPECT_EQ(run("").exit_code, 2);                                          // no subcommand
}

TEST_F(Cli, MissingFileExitsTwo)
{
  const auto r = run("report --backend cpu " + (work_ / "absent.csv").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("absent.csv"), std::string::npos) << r.err;
  const auto log = write("log.csv", clean_log);
  EXPECT_EQ(run("report --backend cpu " + log + " --entities " + (work_ / "nope.csv").string()).exit_code, 2);
  EXPECT_EQ(run("report --backend cpu " + log + " --rules " + (work_ / "nope.json").string()).exit_code, 2);
}

TEST_F(Cli, BadReferenceFileExitsTwo)
{
  const auto log   = write("log.csv", clean_log);
  const auto rules = write("rules.json", "{\"id\": ");
  EXPECT_EQ(run("report --backend cpu " + log + " --rules " + rules).exit_code, 2);
  const auto countries = write("countries.csv", "iso2,name,tier,g2g_partner\nUS,United States,7,0\n");
  EXPECT_EQ(run("report --backend cpu " + log + " --countries " + countries).exit_code, 2);
}

TEST_F(Cli, GpuBackendWithoutGpuExitsThree)
{
  if (capledger::gpu_available()) { GTEST_SKIP() << "a usable GPU is present"; }
  const auto log = write("log.csv", clean_log);
  const auto r   = run("report --backend gpu " + log);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("gpu"), std::string::npos) << r.err;
}

TEST_F(Cli, AutoBackendSaysWhichItUsed)
{
  const auto log = write("log.csv", clean_log);
  const auto r   = run("report " + log + " --out out");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json summary = json::parse(read_text(work_ / "out" / "summary.json"));
  const std::string expected = capledger::gpu_available() ? "gpu" : "cpu";
  EXPECT_EQ(summary["backend"], expected);
  EXPECT_NE(r.err.find("backend " + expected), std::string::npos) << r.err;
}

// `--backend` and host memory: the GPU path holds the whole log's columns in memory, the CPU
// path streams it. These call the choice itself (CI has no GPU to make `auto` consider one).
TEST(BackendChoice, CpuIsTheCpuWhateverElseThereIs)
{
  std::ostringstream notes;
  EXPECT_EQ(capledger::choose_backend("cpu", true, "", {1, 1}, notes), "cpu");
  EXPECT_EQ(notes.str(), "");
}

// Started with stdin or stdout closed, the run must not hand their numbers to the files it opens
// (what is meant for stdout would land in a rejects file, `-` would read a reference table).
TEST_F(Cli, ClosedStandardDescriptorsAreNotTakenByFiles)
{
  const std::string log      = (sample_dir() / "shipments.csv").string();
  const std::string entities = (sample_dir() / "entities.csv").string();
  const auto open_run =
      run("report --backend cpu " + log + " --entities " + entities + " --out open --rejects open.csv");
  ASSERT_EQ(open_run.exit_code, 1) << open_run.err;

  const auto closed_out = run_shell("CLI report --backend cpu " + log + " --entities " + entities +
                                    " --out closed --rejects closed.csv </dev/null >&-");
  EXPECT_EQ(closed_out.exit_code, 1) << closed_out.err;  // nothing is meant for stdout with --out
  for (const auto& file : entries(work_ / "open")) {
    EXPECT_EQ(read_text(work_ / "closed" / file), read_text(work_ / "open" / file)) << file;
  }
  EXPECT_EQ(read_text(work_ / "closed.csv"), read_text(work_ / "open.csv"));

  const auto table =
      run_shell("CLI report --backend cpu " + log + " --format csv --rejects table.csv </dev/null >&-");
  EXPECT_EQ(table.exit_code, 2) << table.err;
  EXPECT_NE(table.err.find("cannot write to standard output"), std::string::npos) << table.err;
  EXPECT_EQ(read_text(work_ / "table.csv"), read_text(work_ / "open.csv"));

  const auto no_stdin = run_shell("CLI report --backend cpu - <&-");
  EXPECT_EQ(no_stdin.exit_code, 2) << no_stdin.err;
  EXPECT_NE(no_stdin.err.find("-: read error"), std::string::npos) << no_stdin.err;
}

// Output names up to NAME_MAX bytes: their temporary siblings ("." + name + a suffix) would not
// fit, so they are shortened (and told apart by a hash of the whole name).
TEST_F(Cli, OutputNamesUpToNameMax)
{
  const std::string log = (sample_dir() / "shipments.csv").string();
  const std::string out(255, 'o');
  const std::string rejects = std::string(251, 'o') + ".csv";  // the same shortened prefix
  for (int round = 0; round < 2; ++round) {                    // the second replaces the first's outputs
    const auto r = run("report --backend cpu " + log + " --out " + out + " --rejects " + rejects);
    ASSERT_EQ(r.exit_code, 1) << r.err;
    EXPECT_TRUE(fs::exists(work_ / out / "summary.json"));
    EXPECT_EQ(read_text(work_ / rejects), "file,line,column,reason,raw\n");
    EXPECT_EQ(entries(work_), (std::set<std::string>{out, rejects}));  // no temporary left
  }
}

// The table keeps its columns apart however wide the numbers: every cell is its own word.
TEST_F(Cli, TableColumnsStayApartForWideNumbers)
{
  const std::string log = write("wide.csv",
                                "shipment_id,date,entity,country,chip,quantity,tpp_per_unit\n"
                                "O1,2025-03-01,E,AE,X,4611686018427387903,1\n");
  const auto r          = run("report --backend cpu " + log);
  ASSERT_EQ(r.exit_code, 1) << r.err;
  const auto words = [](const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> out;
    for (std::string w; in >> w;) { out.push_back(w); }
    return out;
  };
  std::istringstream table(r.out);
  int checked = 0;
  for (std::string line; std::getline(table, line);) {
    const auto w = words(line);
    if (!w.empty() && w[0] == "global") {
      EXPECT_EQ(w, (std::vector<std::string>{"global", "1", "4611686018427387903", "4611686018427387903",
                                             "291288909703599.54"}))
          << line;
      ++checked;
    }
    if (!w.empty() && w[0] == "AE") {
      ASSERT_GE(w.size(), 5U) << line;
      EXPECT_EQ(w[1], "4611686018427387903") << line;
      EXPECT_EQ(w[3], "790000000") << line;
      EXPECT_EQ(w[4], "583757723851.57%") << line;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 2) << r.out;
}

TEST(BackendChoice, AutoTakesAUsableGpuWhenTheLogFits)
{
  std::ostringstream notes;
  EXPECT_EQ(capledger::choose_backend("auto", true, "", {60'000'000'000, 100'000'000'000}, notes), "gpu");
  EXPECT_EQ(notes.str(), "capledger: backend gpu\n");
  // Sizes unknown (stdin, or no /proc): the GPU, as before.
  EXPECT_EQ(capledger::choose_backend("auto", true, "", {0, 100}, notes), "gpu");
  EXPECT_EQ(capledger::choose_backend("auto", true, "", {100, 0}, notes), "gpu");
}

TEST(BackendChoice, AutoStreamsOnTheCpuWhenTheLogWouldCrowdMemory)
{
  std::ostringstream notes;
  EXPECT_EQ(capledger::choose_backend("auto", true, "", {80'000'000'000, 100'000'000'000}, notes), "cpu");
  const std::string said = notes.str();
  EXPECT_NE(said.find("backend cpu"), std::string::npos) << said;
  EXPECT_NE(said.find("80.0 GB"), std::string::npos) << said;
  EXPECT_NE(said.find("100.0 GB"), std::string::npos) << said;
}

TEST(BackendChoice, AutoWithoutAGpuSaysWhy)
{
  std::ostringstream notes;
  EXPECT_EQ(capledger::choose_backend("auto", false, "no driver", {1, 100}, notes), "cpu");
  EXPECT_EQ(notes.str(), "capledger: backend cpu (no usable GPU: no driver)\n");
}

TEST(BackendChoice, GpuIsRefusedOnlyWhenTheLogCannotFit)
{
  std::ostringstream notes;
  // Past auto's three quarters but within what is available: asked for, so used.
  EXPECT_EQ(capledger::choose_backend("gpu", true, "", {90, 100}, notes), "gpu");
  EXPECT_EQ(capledger::choose_backend("gpu", true, "", {100, 100}, notes), "gpu");
  try {
    (void)capledger::choose_backend("gpu", true, "", {120'000'000'000, 100'000'000'000}, notes);
    ADD_FAILURE() << "a log larger than memory was accepted for the GPU path";
  } catch (const capledger::device_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("120.0 GB"), std::string::npos) << what;
    EXPECT_NE(what.find("--backend cpu"), std::string::npos) << what;
  }
  EXPECT_THROW((void)capledger::choose_backend("gpu", false, "no driver", {1, 100}, notes),
               capledger::device_error);
  EXPECT_THROW((void)capledger::choose_backend("fast", true, "", {}, notes), capledger::config_error);
  EXPECT_EQ(notes.str(), "");
}

/// A GPU backend whose free memory cannot take the log: refuses before computing anything.
class gpu_without_room final : public capledger::backend {
 public:
  int calls = 0;
  [[nodiscard]] std::string name() const override { return "gpu"; }
  [[nodiscard]] capledger::aggregation aggregate(const capledger::shipment_view&,
                                                 const capledger::rule_context&,
                                                 const capledger::dictionary_sizes&) override
  {
    ++calls;
    throw capledger::gpu_memory_short("not one line fits in a pass of the GPU backend");
  }
};

TEST(BackendChoice, AutoReportsOnTheCpuWhenGpuMemoryIsShort)
{
  capledger::report_options options;
  options.entities_path               = (sample_dir() / "entities.csv").string();
  options.every_view                  = true;
  const capledger::reference_data ref = capledger::load_reference(options);
  capledger::shipment_log_builder builder(ref.countries, ref.chips, capledger::ingest_options{});
  builder.add_file((sample_dir() / "shipments.csv").string());
  const capledger::shipment_log log = builder.finish();
  const capledger::report_output on_cpu =
      capledger::build_report(ref, log, options, *capledger::make_cpu_backend());

  options.backend = "auto";
  gpu_without_room gpu;
  std::ostringstream notes;
  const capledger::report_output fell_back =
      capledger::build_report_within_gpu_memory(ref, log, options, gpu, notes);
  EXPECT_EQ(gpu.calls, 1);
  EXPECT_EQ(fell_back.files, on_cpu.files);  // summary.json included: it names the cpu backend
  EXPECT_EQ(fell_back.json, on_cpu.json);
  EXPECT_EQ(fell_back.backend_used, "cpu");
  EXPECT_EQ(notes.str(),
            "capledger: backend cpu (the GPU's free memory cannot take this log: not one line fits in a pass "
            "of the GPU backend)\n");

  // Asked for by name, the GPU is refused (exit 3), naming the CPU; nothing is said on stderr.
  options.backend = "gpu";
  std::ostringstream quiet;
  try {
    static_cast<void>(capledger::build_report_within_gpu_memory(ref, log, options, gpu, quiet));
    ADD_FAILURE() << "--backend gpu fell back to the CPU";
  } catch (const capledger::device_error& e) {
    EXPECT_NE(std::string(e.what()).find("not one line fits"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--backend cpu"), std::string::npos) << e.what();
  }
  EXPECT_EQ(quiet.str(), "");
}

// What `report` starts the GPU beside the ingest for: exactly the cases `choose_backend` would
// send to the GPU were it usable.
TEST(BackendChoice, GpuPathIfUsableFollowsTheChoice)
{
  EXPECT_FALSE(capledger::gpu_path_if_usable("cpu", {1, 100}));
  EXPECT_TRUE(capledger::gpu_path_if_usable("auto", {60, 100}));
  EXPECT_TRUE(capledger::gpu_path_if_usable("auto", {0, 0}));      // sizes unknown
  EXPECT_FALSE(capledger::gpu_path_if_usable("auto", {80, 100}));  // past three quarters: streams
  EXPECT_TRUE(capledger::gpu_path_if_usable("gpu", {90, 100}));
  EXPECT_FALSE(capledger::gpu_path_if_usable("gpu", {120, 100}));  // refused when chosen for real
  EXPECT_THROW((void)capledger::gpu_path_if_usable("fast", {1, 100}), capledger::config_error);
}

// Where a GPU device node exists, `report` starts the GPU beside the ingest and chooses after
// it. With a node but no usable GPU (here: taken to exist on a machine without one), `auto`
// reports the columns on the CPU with the same bytes as `--backend cpu`, and `gpu` is exit 3
// with nothing written, also where the ingest stops first (--max-rejects).
TEST(BackendChoice, GpuStartedBesideTheIngestKeepsTheContract)
{
  if (capledger::gpu_available()) { GTEST_SKIP() << "a GPU is usable here: this needs a node without one"; }
  capledger::test::scratch_dir dir;
  capledger::report_options options;
  options.inputs        = {dir.write(
             "log.csv", read_text(sample_dir() / "shipments.csv") + "BAD1,2025-13-01,E,AE,H100-SXM,1,LICENSE,,,\n")};
  options.entities_path = (sample_dir() / "entities.csv").string();
  const auto run        = [&](const std::string& backend, const std::string& tag, std::ostringstream& notes) {
    capledger::report_options o = options;
    o.backend                   = backend;
    o.gpu_node_present          = backend != "cpu";
    o.out_dir                   = dir.path("out-" + tag);
    // Rejects go to rejects-TAG.csv, except for the runs without --rejects and with its folder missing.
    o.rejects_path = tag == "gpu-no-rejects"  ? std::string()
                     : tag == "gpu-no-folder" ? dir.path("missing/rejects.csv")
                                              : dir.path("rejects-" + tag + ".csv");
    std::ostringstream out;
    return capledger::run_report(o, out, notes);
  };
  std::ostringstream cpu_notes, auto_notes;
  const int on_cpu = run("cpu", "cpu", cpu_notes);
  ASSERT_EQ(on_cpu, 1) << cpu_notes.str();
  EXPECT_EQ(run("auto", "auto", auto_notes), on_cpu) << auto_notes.str();
  const std::string said = auto_notes.str();
  const auto chosen      = said.find("capledger: backend cpu (no usable GPU: ");
  ASSERT_NE(chosen, std::string::npos) << said;
  EXPECT_NE(
      said.find("capledger: the log was read into columns while the GPU started; the CPU aggregates them"),
      std::string::npos)
      << said;
  for (const auto& file : fs::directory_iterator(dir.root() / "out-cpu")) {
    const std::string name = file.path().filename().string();
    EXPECT_EQ(read_text(dir.root() / "out-auto" / name), read_text(file.path())) << name;
  }
  EXPECT_EQ(read_text(dir.root() / "rejects-auto.csv"), read_text(dir.root() / "rejects-cpu.csv"));
  EXPECT_NE(read_text(dir.root() / "rejects-cpu.csv").find("BAD_DATE"), std::string::npos);

  // After the ingest; where --max-rejects stops it; where a bad line without --rejects stops it;
  // where the rejects file cannot even be begun (its folder is missing).
  for (const std::string tag : {"gpu", "gpu-stopped", "gpu-no-rejects", "gpu-no-folder"}) {
    options.max_rejects = tag == "gpu-stopped" ? 0 : -1;
    std::ostringstream notes;
    EXPECT_THROW(static_cast<void>(run("gpu", tag, notes)), capledger::device_error) << tag;
    EXPECT_FALSE(fs::exists(dir.root() / ("out-" + tag))) << tag;
    EXPECT_FALSE(fs::exists(dir.root() / ("rejects-" + tag + ".csv"))) << tag;
  }
}

TEST(BackendChoice, WholeLogEstimateCountsLinesFromASample)
{
  const fs::path dir = fs::path(::testing::TempDir()) / ("estimate-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto write_lines = [&](const std::string& name, std::size_t lines, std::size_t length) {
    std::ofstream out(dir / name, std::ios::binary);
    const std::string line = std::string(length - 1, 'x') + "\n";
    for (std::size_t i = 0; i < lines; ++i) { out << line; }
    return (dir / name).string();
  };
  const std::string small = write_lines("small.csv", 10'000, 50);   // read whole: exact
  const std::string large = write_lines("large.csv", 200'000, 20);  // 4 MB: from its first MiB
  EXPECT_EQ(capledger::whole_log_memory_estimate({small}), 10'000U * 90U);
  const std::uint64_t both = capledger::whole_log_memory_estimate({small, large});
  EXPECT_GE(both, 209'000U * 90U);
  EXPECT_LE(both, 211'000U * 90U);
  EXPECT_EQ(capledger::whole_log_memory_estimate({small, "-"}), 0U);  // stdin: not known
  fs::remove_all(dir);
}

TEST_F(Cli, OutWritesExactlyTheEightFiles)
{
  const auto log = write("log.csv", clean_log);
  const auto r   = run("report --backend cpu " + log + " --out result");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(entries(work_ / "result"), output_files);
  // Nothing else beside it: no staging or old directory left behind.
  EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv", "result"}));

  const json summary = json::parse(read_text(work_ / "result" / "summary.json"));
  EXPECT_EQ(summary["lines"]["read"], 3);
  EXPECT_EQ(summary["lines"]["used"], 3);
  EXPECT_EQ(summary["lines"]["rejected"], 0);
  EXPECT_EQ(summary["backend"], "cpu");
  EXPECT_EQ(summary["as_of"], "2025-04-01");
  // 10 x 15832 + 20 x 15832 + 5 x 36000
  EXPECT_EQ(summary["totals"]["tpp"], 10 * 15832 + 20 * 15832 + 5 * 36000);
  EXPECT_EQ(summary["totals"]["units"], 35);
  EXPECT_EQ(summary["totals"]["records"], 3);

  const auto chips = parse_csv(read_text(work_ / "result" / "by_chip.csv"));
  const std::vector<std::vector<std::string>> expected_chips = {
    {"chip", "records", "units", "tpp"}, {"B200", "1", "5", "180000"}, {"H100-SXM", "2", "30", "474960"}};
  EXPECT_EQ(chips, expected_chips);
  const auto findings = parse_csv(read_text(work_ / "result" / "findings.csv"));
  ASSERT_EQ(findings.size(), 1U);  // header only
  EXPECT_EQ(findings[0], (std::vector<std::string>{"severity", "rule", "entity", "country", "pathway", "order_id",
                                                    "year", "date", "shipment_id", "value", "limit"}));
}

TEST_F(Cli, FailingRunLeavesNoOutputDirectory)
{
  const auto log = write("log.csv", header + "S1,2025-02-01,E1,US,H100-SXM,10\nS2,2025-02-01,E1,ZZ,H100-SXM,10\n");
  const auto r   = run("report --backend cpu " + log + " --out result");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(log + ":3:18: UNKNOWN_COUNTRY"), std::string::npos) << r.err;
  EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv"}));
}

// Exit 0 says the output will outlast a crash: a failed fsync of the folder that a rename changed
// is exit 2. Before the rename (the staging folder's own fsync) nothing changes; after it (the
// folder holding the output, the 2nd folder fsync) the new output stays, and the message says it
// is in place but may not last. So with the rejects file, whose folder is fsynced 2nd (after the
// directory is in place, before the directory's folder): both stay new, neither is undone.
TEST_F(Cli, AFailedFolderSyncIsExitTwo)
{
  const auto log = write("log.csv", clean_log);
  auto r         = run_failing("dirfsync:1:EIO", "report --backend cpu log.csv --out o");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.err.rfind("capledger: o: cannot flush " + work_.string() + "/.o.tmp.", 0), 0U) << r.err;
  EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv"}));

  r = run_failing("dirfsync:2:EIO", "report --backend cpu log.csv --out o");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.err, "capledger: o: in place, but cannot flush " + work_.string() +
                       " to disk: Input/output error; it may not survive a crash\n");
  EXPECT_EQ(entries(work_ / "o"), output_files);
  EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv", "o"}));

  write("bad.csv", clean_log + "S9,2025-13-01,E1,US,H100-SXM,1\n");
  write("o/findings.csv", "earlier\n");
  write("r.csv", "earlier\n");
  r = run_failing("dirfsync:2:EIO", "report --backend cpu bad.csv --out o --rejects r.csv");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("capledger: r.csv: in place, but cannot flush"), std::string::npos) << r.err;
  EXPECT_EQ(read_text(work_ / "o" / "findings.csv").rfind("severity,", 0), 0U) << "the new report stays";
  EXPECT_EQ(read_text(work_ / "r.csv").rfind("file,line,", 0), 0U);
  EXPECT_EQ(entries(work_), (std::set<std::string>{"bad.csv", "log.csv", "o", "r.csv"}));
}

// A ledger's commit lasts through a crash once its folder is flushed after the journal is deleted
// (`PRAGMA synchronous = EXTRA`; SQLite's other folder flush, when it makes the journal, ignores
// errors). When that flush fails the ledger or night is in place and the run says so (exit 2):
// a second ingest of the night finds its ids, and an init's ledger is not deleted.
TEST_F(Cli, ALedgerCommitWhoseFolderFlushFailsIsInPlaceAndExitTwo)
{
  const auto log = write("log.csv", clean_log);
  auto r         = run_failing("dirfsync:2:EIO", "ledger init l.db");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("l.db: committed, but cannot flush its folder to disk (disk I/O error); it may not "
                       "survive a crash"),
            std::string::npos)
      << r.err;
  ASSERT_EQ(run("ledger verify l.db").exit_code, 0) << "the ledger stays";

  r = run_failing("dirfsync:2:EIO", "ledger ingest l.db log.csv");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("l.db: committed, but cannot flush its folder"), std::string::npos) << r.err;
  r = run("ledger ingest l.db log.csv");
  EXPECT_EQ(r.exit_code, 2) << "the night is in the ledger: " << r.err;
  EXPECT_NE(r.err.find("DUPLICATE_ID"), std::string::npos) << r.err;
  EXPECT_EQ(run("ledger verify l.db").exit_code, 0);
}

// A folder a run made is fsynced into the folder above it once the output is in place: without
// that, a crash could lose the new folder, output and all, after exit 0. Fsyncs: the output's own
// folder first (two for generate, one a file), then the folders above each made folder,
// outermost first.
TEST_F(Cli, FoldersMadeForAnOutputAreFlushedIntoTheirParents)
{
  auto r = run_failing("dirfsync:3:EIO", "generate --records 5 --seed 1 --out x/y/g");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.err, "capledger: x/y/g: in place, but cannot flush " + work_.string() +
                       " to disk: Input/output error; it may not survive a crash\n");
  EXPECT_EQ(entries(work_ / "x" / "y" / "g"), (std::set<std::string>{"entities.csv", "shipments.csv"}));
  r = run_failing("dirfsync:5:EIO", "generate --records 5 --seed 1 --out a/b/g");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("cannot flush " + (work_ / "a" / "b").string() + " to disk"), std::string::npos)
      << r.err;
  EXPECT_EQ(run_failing("dirfsync:6:EIO", "generate --records 5 --seed 1 --out c/d/g").exit_code, 0);

  const auto log = write("log.csv", clean_log);
  r              = run_failing("dirfsync:3:EIO", "report --backend cpu log.csv --out m/o");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.err, "capledger: m/o: in place, but cannot flush " + work_.string() +
                       " to disk: Input/output error; it may not survive a crash\n");
  EXPECT_EQ(entries(work_ / "m" / "o"), output_files);
  write("bad.csv", clean_log + "S9,2025-13-01,E1,US,H100-SXM,1\n");
  r = run_failing("dirfsync:2:EIO", "report --backend cpu bad.csv --rejects n/r.csv --format json");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("capledger: n/r.csv: in place, but cannot flush " + work_.string() + " to disk"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(read_text(work_ / "n" / "r.csv").rfind("file,line,", 0), 0U);
}

// An ingest whose rejects file or commit fails at the very end stores nothing, and says so: its
// re-run adds the night (not a DUPLICATE_ID for each line). A failed fsync of the rejects file's
// folder leaves the file in place but is still a failure before the commit.
TEST_F(Cli, AnIngestThatFailsAtItsEndSaysTheNightIsNotStored)
{
  write("log.csv", clean_log);
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  const auto night = write("night.csv", clean_log + "S9,2025-13-01,E1,US,H100-SXM,1\n");
  for (const std::string failure : {"dirfsync:1:EIO", "rename:1:ENOSPC", "fsync:2:EIO"}) {
    const auto r = run_failing(failure, "ledger ingest l.db night.csv --rejects r.csv");
    EXPECT_EQ(r.exit_code, 2) << failure << ": " << r.err;
    EXPECT_NE(r.err.find("; nothing of the night is stored\n"), std::string::npos)
        << failure << ": " << r.err;
    EXPECT_EQ(run("ledger verify l.db").exit_code, 0) << failure;
  }
  const auto r = run("ledger ingest l.db night.csv --rejects r.csv");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("3 added, 1 rejected"), std::string::npos) << r.err;
}

// Whichever of SQLite's writes to the ledger or its journal fails during an ingest (a disk that
// breaks partway), the run exits 2 and the ledger is exactly as before: no line of the night is
// kept, in the ledger or in the running state, and the night ingests whole afterwards. (After an
// I/O error SQLite may end the transaction itself; a statement that went on would then commit
// on its own.)
TEST_F(Cli, AnIngestWhoseLedgerWriteFailsStoresNothing)
{
  write("log.csv", clean_log);
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  ASSERT_EQ(run("ledger ingest l.db log.csv").exit_code, 0);
  std::string night_lines = header;
  for (int i = 0; i < 40; ++i) {
    night_lines += "N" + std::to_string(i) + ",2025-05-0" + std::to_string(1 + i % 9) + ",E" +
                   std::to_string(i % 3) + "," + (i % 2 == 0 ? "AE" : "US") + ",H100-SXM," +
                   std::to_string(1 + i) + "\n";
  }
  write("night.csv", night_lines);
  fs::copy_file(work_ / "l.db", work_ / "base.db");
  const std::string before = run("ledger report l.db --format json").out;
  ASSERT_NE(before.find("\"read\": 3,"), std::string::npos) << before;

  int failed_writes = 0;
  for (int n = 1; n <= 500; ++n) {
    fs::copy_file(work_ / "base.db", work_ / "l.db", fs::copy_options::overwrite_existing);
    const auto r = run_failing("pwrite:" + std::to_string(n) + ":EIO", "ledger ingest l.db night.csv");
    if (r.exit_code == 0) { break; }  // the night's writes number fewer than n
    ++failed_writes;
    EXPECT_EQ(r.exit_code, 2) << n << ": " << r.err;
    EXPECT_EQ(r.err.rfind("capledger: l.db: ", 0), 0U) << n << ", the ledger as given: " << r.err;
    EXPECT_NE(r.err.find("disk I/O error"), std::string::npos) << n << ": " << r.err;
    EXPECT_NE(r.err.find("; nothing of the night is stored\n"), std::string::npos) << n << ": " << r.err;
    EXPECT_EQ(run("ledger verify l.db").exit_code, 0) << n;
    EXPECT_EQ(run("ledger report l.db --format json").out, before) << n;
  }
  EXPECT_GT(failed_writes, 10) << "a night of 40 lines makes more writes than that";
  EXPECT_LT(failed_writes, 500) << "a run with no failing write comes at last";
  const std::string after = run("ledger report l.db --format json").out;
  EXPECT_NE(after.find("\"read\": 43,"), std::string::npos) << "the night is in, whole: " << after;
  EXPECT_EQ(run("ledger verify l.db").exit_code, 0);
}

// --out's missing folders are made, and a run that fails removes them again (a folder that was
// there stays): a full disk, a failed rename, or a fatal input error once the rejects file, staged
// beside --out, made them at the start.
TEST_F(Cli, AFailedRunRemovesTheFoldersItMade)
{
  const auto log = write("log.csv", clean_log);
  for (const std::string failure : {"write:1:ENOSPC", "rename:1:EIO", "dirfsync:1:EIO"}) {
    const auto r = run_failing(failure, "report --backend cpu log.csv --out a/b/o");
    EXPECT_EQ(r.exit_code, 2) << failure << ": " << r.err;
    EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv"})) << failure;
  }
  fs::create_directory(work_ / "a");
  EXPECT_EQ(run_failing("write:1:ENOSPC", "report --backend cpu log.csv --out a/b/o").exit_code, 2);
  EXPECT_TRUE(entries(work_ / "a").empty());
  write("no-entity.csv", "shipment_id,date\n");
  const auto r = run("report --backend cpu no-entity.csv --out n/o --rejects n/o/r.csv");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(entries(work_), (std::set<std::string>{"a", "log.csv", "no-entity.csv"}));
  ASSERT_EQ(run("report --backend cpu log.csv --out a/b/o").exit_code, 0);
  EXPECT_EQ(entries(work_ / "a" / "b" / "o"), output_files);
}

// A rejects file's or check --out's missing folders are made as --out's are, and removed again by
// a run that fails (a fatal input error here). check refuses an --out that is a directory before it
// reads anything: the bad proposed lines are never reached.
TEST_F(Cli, OutputFilesMakeMissingFoldersAsOutDoes)
{
  const auto log = write("log.csv", clean_log + "S9,2025-13-01,E1,US,H100-SXM,1\n");
  write("no-entity.csv", "shipment_id,date\n");
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  const std::set<std::string> before = {"l.db", "log.csv", "no-entity.csv"};
  for (const std::string failing : {"report --backend cpu no-entity.csv --rejects x/y/r.csv",
                                    "ledger ingest l.db no-entity.csv --rejects x/y/r.csv",
                                    "check l.db --proposed no-entity.csv --out x/y/c.csv"}) {
    const run_result r = run(failing);
    EXPECT_EQ(r.exit_code, 2) << failing;
    EXPECT_NE(r.err.find("MISSING_COLUMN"), std::string::npos) << failing << ": " << r.err;
    EXPECT_EQ(entries(work_), before) << failing;
  }
  auto r = run("report --backend cpu log.csv --rejects a/b/r.csv");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(read_text(work_ / "a" / "b" / "r.csv").find("BAD_DATE"), std::string::npos);
  r = run("ledger ingest l.db log.csv --rejects i/r.csv");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(read_text(work_ / "i" / "r.csv").find("BAD_DATE"), std::string::npos);
  r = run("check l.db --proposed " + log + " --out c/d/c.csv");
  EXPECT_EQ(r.exit_code, 2) << "its bad line stops check: " << r.err;
  EXPECT_FALSE(fs::exists(work_ / "c"));
  write("one.csv", header + "P1,2025-05-01,E1,US,H100-SXM,1\n");
  r = run("check l.db --proposed one.csv --out c/d/c.csv");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_text(work_ / "c" / "d" / "c.csv").substr(0, 5), "line,");

  fs::create_directory(work_ / "existing");
  r = run("check l.db --proposed no-entity.csv --out existing");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "capledger: existing: is a directory; name a file\n");
}

// Errors name the output as the user gave it, not the hidden staging path they never typed.
TEST_F(Cli, AnOutputThatCannotBeWrittenIsNamedAsGiven)
{
  const auto log = write("log.csv", clean_log);
  auto r         = run("report --backend cpu log.csv --out /proc/capledger-out");  // procfs: no mkdir
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(
      r.err.rfind(
          "capledger: /proc/capledger-out: cannot create its staging folder /proc/.capledger-out.tmp.", 0),
      0U)
      << r.err;
  r = run_failing("write:1:ENOSPC", "report --backend cpu log.csv --out o");  // by_chip.csv comes first
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "capledger: o/by_chip.csv: write failed: No space left on device\n");
  r = run_failing("fsync:8:EIO", "report --backend cpu log.csv --out o");  // uveu_shares.csv last
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "capledger: o/uveu_shares.csv: cannot flush to disk: Input/output error\n");
  EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv"}));
}

// An earlier output is swapped for the new one in one RENAME_EXCHANGE; only a file system that
// lacks the flag takes the two renames (a moment without an output), and a failure in either
// path keeps the earlier output whole, with nothing hidden left beside it.
TEST_F(Cli, AFailedSwapKeepsTheEarlierOutput)
{
  const auto earlier_log = write("earlier.csv", header + "S1,2025-02-01,E1,US,H100-SXM,10\n");
  const auto log         = write("log.csv", clean_log);
  const auto lines_read  = [&] {
    return json::parse(read_text(work_ / "result" / "summary.json"))["lines"]["read"].get<int>();
  };
  struct failure_case {
    std::string failure;
    int exit_code;
    int lines_read;  ///< 1: the earlier output; 3: the new one
  };
  for (const failure_case& c : std::vector<failure_case>{
           {"rename:1:EIO", 2, 1},                 // the swap fails on a failing disk: no second try
           {"rename:1:22", 0, 3},                  // EINVAL: no RENAME_EXCHANGE here, two renames
           {"rename:1:95", 0, 3},                  // EOPNOTSUPP, as some file systems say it
           {"rename:1:22,rename:2:EIO", 2, 1},     // setting the earlier output aside fails
           {"rename:1:22,rename:3:ENOSPC", 2, 1},  // the new one's rename fails: the earlier returns
       }) {
    fs::remove_all(work_ / "result");
    ASSERT_EQ(run("report --backend cpu " + earlier_log + " --out result").exit_code, 0);
    const auto r = run_failing(c.failure, "report --backend cpu " + log + " --out result");
    EXPECT_EQ(r.exit_code, c.exit_code) << c.failure << ": " << r.err;
    EXPECT_EQ(lines_read(), c.lines_read) << c.failure;
    EXPECT_EQ(entries(work_ / "result"), output_files) << c.failure;
    EXPECT_EQ(entries(work_), (std::set<std::string>{"earlier.csv", "log.csv", "result"})) << c.failure;
    if (c.exit_code == 2) {
      EXPECT_NE(r.err.find("capledger: result: cannot write output: "), std::string::npos) << r.err;
    }
  }
}

TEST_F(Cli, RerunReplacesAnExistingOutputDirectory)
{
  const auto first = write("first.csv", header + "S1,2025-02-01,E1,US,H100-SXM,10\n");
  ASSERT_EQ(run("report --backend cpu " + first + " --out result").exit_code, 0);
  const auto second = write("second.csv", clean_log);
  const auto r      = run("report --backend cpu " + second + " --out result");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(entries(work_ / "result"), output_files);
  EXPECT_EQ(entries(work_), (std::set<std::string>{"first.csv", "second.csv", "result"}));
  const json summary = json::parse(read_text(work_ / "result" / "summary.json"));
  EXPECT_EQ(summary["lines"]["read"], 3);
}

// The directory is replaced whole, never merged: a file the report does not write (someone's
// notes, a file dropped there by hand) would be deleted with it, so the run stops first (exit 2,
// before reading the log) and leaves everything as it was.
TEST_F(Cli, AFileThatIsNotAnOutputStopsTheRerun)
{
  const auto first = write("first.csv", header + "S1,2025-02-01,E1,US,H100-SXM,10\n");
  ASSERT_EQ(run("report --backend cpu " + first + " --out result").exit_code, 0);
  std::ofstream(work_ / "result" / "notes.txt") << "mine";
  const auto second = write("second.csv", clean_log);
  const auto r      = run("report --backend cpu " + second + " --out result");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("notes.txt"), std::string::npos) << r.err;
  std::set<std::string> kept = output_files;
  kept.insert("notes.txt");
  EXPECT_EQ(entries(work_ / "result"), kept);
  EXPECT_EQ(read_text(work_ / "result" / "notes.txt"), "mine");
  EXPECT_EQ(json::parse(read_text(work_ / "result" / "summary.json"))["lines"]["read"], 1);
}

// Outputs never replace what the run reads: the log named as its own rejects file, an output
// directory holding the log, the ledger database as a rejects or answer file. Each stops the run
// with exit 2 and leaves the file as it was.
TEST_F(Cli, OutputsThatWouldReplaceAnInputAreRefused)
{
  const auto log             = write("log.csv", clean_log + "S9,2025-13-01,E1,US,H100-SXM,1\n");
  const std::string log_text = read_text(log);
  auto r                     = run("report --backend cpu " + log + " --rejects " + log);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--rejects"), std::string::npos) << r.err;
  // The same file by another path.
  r = run("report --backend cpu " + log + " --rejects " + (work_ / "." / "log.csv").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(read_text(log), log_text);
  // The rejects file and the output directory on one path: refused before anything is written.
  r = run("report --backend cpu " + log + " --rejects both --out both/");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is the --out directory"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(work_ / "both"));

  ASSERT_EQ(run("report --backend cpu " + write("ok.csv", clean_log) + " --out result").exit_code, 0);
  fs::copy_file(log, work_ / "result" / "summary.json",
                fs::copy_options::overwrite_existing);  // named like an output
  r = run("report --backend cpu " + (work_ / "result" / "summary.json").string() + " --rejects " +
          (work_ / "bad.csv").string() + " --out result");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--out"), std::string::npos) << r.err;
  EXPECT_EQ(read_text(work_ / "result" / "summary.json"), log_text);

  const auto db = (work_ / "ledger.db").string();
  ASSERT_EQ(run("ledger init " + db).exit_code, 0);
  const std::string db_bytes = read_text(db);
  EXPECT_EQ(run("ledger ingest " + db + " " + log + " --rejects " + db).exit_code, 2);
  EXPECT_EQ(run("check " + db + " --proposed " + log + " --out " + db).exit_code, 2);
  EXPECT_EQ(run("check " + db + " --proposed " + log + " --out " + log).exit_code, 2);
  fs::create_directories(work_ / "books");
  fs::copy_file(db, work_ / "books" / "summary.json");  // the ledger, named like an output
  const auto inventory = write("inventory.csv", "entity,country,chip,units\n");
  r = run("reconcile " + (work_ / "books" / "summary.json").string() + " --inventory " + inventory +
          " --out books");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("holds the input"), std::string::npos) << r.err;
  EXPECT_EQ(read_text(work_ / "books" / "summary.json"), db_bytes);
  EXPECT_EQ(read_text(db), db_bytes);
  EXPECT_EQ(read_text(log), log_text);
}

// Standard input is the file or pipe behind it: an output at /dev/stdin (or /dev/fd/0) would
// replace the log read through it, and an --out directory holding that file would delete it.
TEST_F(Cli, AnOutputOverTheFileBehindStandardInputIsRefused)
{
  const auto log             = write("log.csv", clean_log + "S9,2025-13-01,E1,US,H100-SXM,1\n");
  const std::string log_text = read_text(log);
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  const std::string db_text                         = read_text(work_ / "l.db");
  const std::pair<std::string, std::string> cases[] = {
      {"report --backend cpu - --rejects /dev/stdin", "--rejects /dev/stdin is the input - (standard input)"},
      {"ledger ingest l.db - --rejects /dev/fd/0", "--rejects /dev/fd/0 is the input - (standard input)"},
      {"check l.db --proposed - --out /dev/stdin", "--out /dev/stdin is the input - (standard input)"}};
  for (const auto& [command, named] : cases) {
    const run_result r = run(command, log);
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_NE(r.err.find(named + ": writing it would replace that file"), std::string::npos)
        << command << ": " << r.err;
    EXPECT_EQ(read_text(log), log_text) << command;
  }
  EXPECT_EQ(read_text(work_ / "l.db"), db_text);
  fs::create_directories(work_ / "books");
  const auto inventory = write("books/reconciliation.csv", "entity,country,chip,units\nE1,US,H100-SXM,10\n");
  const run_result r   = run("reconcile l.db --inventory - --out books", inventory);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--out books holds the input - (standard input)"), std::string::npos) << r.err;
  EXPECT_EQ(read_text(inventory), "entity,country,chip,units\nE1,US,H100-SXM,10\n");
  // A pipe or /dev/null on stdin is no file an output could replace.
  EXPECT_EQ(run_shell("cat log.csv | CLI report --backend cpu - --rejects rejects.csv").exit_code, 0);
  EXPECT_EQ(run("report --backend cpu " + log + " --rejects /dev/null").exit_code, 0);
}

// Without --out the report goes to stdout: a rejects file that is stdout too (by its name, or the
// pipe or file stdout goes to) was mixed into it, or, a file, replaced it; with --out, stdout is
// free. /dev/null for both mixes nothing. Refused before the log is read (it has a bad line).
TEST_F(Cli, RejectsOnStandardOutputBesideTheReportIsRefused)
{
  const auto log = write("log.csv", clean_log + "S9,2025-13-01,E1,US,H100-SXM,1\n");
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  ASSERT_EQ(run("ledger ingest l.db " + log + " --rejects ingested.csv").exit_code, 0);
  // Through a pipe, the exit status is capledger's, kept in rc.
  const std::pair<std::string, std::string> cases[] = {
      {"{ CLI report --backend cpu log.csv --rejects /dev/stdout; echo $? >rc; } | cat",
       "--rejects /dev/stdout"},
      {"CLI report --backend cpu log.csv --format csv --rejects /dev/fd/1; echo $? >rc",
       "--rejects /dev/fd/1"},
      {"CLI report --backend cpu log.csv --rejects o.txt >o.txt; echo $? >rc", "--rejects o.txt"},
      {"{ CLI ledger report l.db --backend cpu --rejects /dev/stdout; echo $? >rc; } | cat",
       "--rejects /dev/stdout"}};
  for (const auto& [command, named] : cases) {
    const run_result r = run_shell(command);
    EXPECT_EQ(read_text(work_ / "rc"), "2\n") << command;
    EXPECT_EQ(r.err,
              "capledger: " + named +
                  " is standard output, where the report goes: the two would be mixed; name another path\n")
        << command;
    EXPECT_EQ(r.out, "") << command;
  }
  EXPECT_EQ(read_text(work_ / "o.txt"), "");
  auto r = run_shell("CLI report --backend cpu log.csv --out rep --rejects /dev/stdout | cat");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "file,line,column,reason,raw\nlog.csv,5,4,BAD_DATE,\"S9,2025-13-01,E1,US,H100-SXM,1\"\n");
  r = run_shell("CLI report --backend cpu log.csv --rejects /dev/null >/dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(run("ledger init l2.db").exit_code, 0);
  r = run_shell("CLI ledger ingest l2.db log.csv --rejects /dev/stdout | cat");  // ingest prints no answer
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("BAD_DATE"), std::string::npos) << r.out;
}

// `-` is no output: it wrote a file or folder named `-` where stdout was meant. An --out that is
// an input file is named as one (it was "exists and is not a directory").
TEST_F(Cli, DashAndAnInputAreNoOutputPath)
{
  const auto log = write("log.csv", clean_log);
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  const auto inventory = write("inventory.csv", "entity,country,chip,units\n");
  for (const std::string& command : std::vector<std::string>{
           "report --backend cpu " + log + " --rejects -", "report --backend cpu " + log + " --out -",
           "ledger ingest l.db " + log + " --rejects -", "ledger report l.db --backend cpu --out -",
           "ledger report l.db --backend cpu --rejects -",
           "reconcile l.db --inventory " + inventory + " --out -",
           "check l.db --proposed " + log + " --out -", "generate --records 5 --out -", "ledger init -"}) {
    const run_result r = run(command);
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_NE(r.err.find("'-' (standard input or output) names no file to write here (a file so named: ./-)"),
              std::string::npos)
        << command << ": " << r.err;
    EXPECT_FALSE(fs::exists(work_ / "-")) << command;
  }
  for (const std::string& command :
       std::vector<std::string>{"report --backend cpu " + log + " --out " + log,
                                "reconcile l.db --inventory " + inventory + " --out " + inventory}) {
    const run_result r = run(command);
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_NE(r.err.find(" is the input "), std::string::npos) << command << ": " << r.err;
  }
  const run_result r = run("ledger report l.db --backend cpu --out l.db");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--out l.db is the input l.db: it would be replaced by a directory"),
            std::string::npos)
      << r.err;
}

// generate's two files through links onto one: the entities were written over the log (exit 0).
TEST_F(Cli, GenerateRefusesItsTwoOutputsOnOneFile)
{
  fs::create_directories(work_ / "data");
  fs::create_symlink("entities.csv", work_ / "data" / "shipments.csv");
  const run_result r = run("generate --records 5 --out data");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--out data/shipments.csv and --out data/entities.csv are one file"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(entries(work_ / "data"), (std::set<std::string>{"shipments.csv"}));
}

TEST_F(Cli, RefusesANonEmptyDirectoryThatIsNotAnOutput)
{
  fs::create_directories(work_ / "precious");
  std::ofstream(work_ / "precious" / "thesis.txt") << "do not delete";
  const auto log = write("log.csv", clean_log);
  const auto r   = run("report --backend cpu " + log + " --out precious");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(entries(work_ / "precious"), (std::set<std::string>{"thesis.txt"}));
  EXPECT_EQ(read_text(work_ / "precious" / "thesis.txt"), "do not delete");
  EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv", "precious"}));
}

TEST_F(Cli, WritesIntoAnExistingEmptyDirectory)
{
  fs::create_directories(work_ / "empty");
  const auto log = write("log.csv", clean_log);
  ASSERT_EQ(run("report --backend cpu " + log + " --out empty").exit_code, 0);
  EXPECT_EQ(entries(work_ / "empty"), output_files);
}

TEST_F(Cli, RejectsFileListsBadLinesAndTheRunGoesOn)
{
  const std::string bad_quote = "S4,2025-02-01,\"E1\"x,US,H100-SXM,1";  // column 19
  const auto log = write("log.csv", clean_log + "S5,2025-02-30,E1,US,H100-SXM,10\n" + bad_quote +
                                      "\nS6,2025-05-01,E1,US,H100-SXM,1\n");
  const auto r = run("report --backend cpu " + log + " --rejects rejects.csv --out result");
  EXPECT_EQ(r.exit_code, 0) << r.err;  // the good lines have no violation
  const auto rows = parse_csv(read_text(work_ / "rejects.csv"));
  ASSERT_EQ(rows.size(), 3U);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"file", "line", "column", "reason", "raw"}));
  ASSERT_EQ(rows[1].size(), 5U);
  EXPECT_EQ(rows[1][0], log);
  EXPECT_EQ(rows[1][1], "5");
  EXPECT_EQ(rows[1][2], "4");
  EXPECT_EQ(rows[1][3], "BAD_DATE");
  EXPECT_EQ(rows[1][4], "S5,2025-02-30,E1,US,H100-SXM,10");
  ASSERT_EQ(rows[2].size(), 5U);
  EXPECT_EQ(rows[2][1], "6");
  EXPECT_EQ(rows[2][2], "19");
  EXPECT_EQ(rows[2][3], "BAD_QUOTE");
  EXPECT_EQ(rows[2][4], bad_quote);

  // The explanations go to stderr, with file:line:column.
  EXPECT_NE(r.err.find(log + ":5:4: BAD_DATE: '2025-02-30'"), std::string::npos) << r.err;

  const json summary = json::parse(read_text(work_ / "result" / "summary.json"));
  EXPECT_EQ(summary["lines"]["read"], 6);
  EXPECT_EQ(summary["lines"]["rejected"], 2);
  EXPECT_EQ(summary["lines"]["used"], 4);
}

/// A record that a quote error ends after a quoted line break took several physical lines: the
/// rejects file's raw holds all of them (it held the first alone, and the others were nowhere).
TEST_F(Cli, RejectedRecordSpanningLinesKeepsEveryLineInTheRejectsFile)
{
  const std::string bad_quote = "S5,2025-02-01,\"E1\nS6,2025-02-01,E1,US,H100-SXM,1\nS7,\"x\"y,US,H100-SXM,1";
  const std::string unterminated = "S8,2025-02-01,\"E1\nE2\",US,H100-SXM,\"1";
  const auto log =
      write("log.csv", clean_log + bad_quote + "\n" + unterminated + "\nS9,2025-05-01,E1,US,H100-SXM,1\n");
  const auto r = run("report --backend cpu " + log + " --rejects rejects.csv --out result");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto rows = parse_csv(read_text(work_ / "rejects.csv"));
  ASSERT_EQ(rows.size(), 3U);
  ASSERT_EQ(rows[1].size(), 5U);
  EXPECT_EQ(rows[1][1], "7");  // the text after the closing quote: line 7, column 5
  EXPECT_EQ(rows[1][2], "5");
  EXPECT_EQ(rows[1][3], "BAD_QUOTE");
  EXPECT_EQ(rows[1][4], bad_quote);
  ASSERT_EQ(rows[2].size(), 5U);
  EXPECT_EQ(rows[2][1], "9");  // the quote never closed: line 9, column 17
  EXPECT_EQ(rows[2][2], "17");
  EXPECT_EQ(rows[2][3], "UNTERMINATED_QUOTE");
  EXPECT_EQ(rows[2][4], unterminated);
  const json summary = json::parse(read_text(work_ / "result" / "summary.json"));
  EXPECT_EQ(summary["lines"]["read"], 6);  // three clean lines, S9 and the two rejected records
  EXPECT_EQ(summary["lines"]["rejected"], 2);
}

// A rejects file directly in --out is recognized however either path is spelled (through a link
// to the directory, or not); a rejects path naming a directory is refused before --out is written.
TEST_F(Cli, RejectsFileInTheOutputDirectoryThroughALink)
{
  const auto log = write("log.csv", clean_log + "S5,2025-02-30,E1,US,H100-SXM,10\n");
  fs::create_directory(work_ / "real");
  fs::create_directory_symlink("real", work_ / "link");
  for (const auto& [out, rejects] : {std::pair{"link", "real/R.csv"}, std::pair{"real", "link/R.csv"}}) {
    const auto r = run("report --backend cpu " + log + " --out " + out + " --rejects " + rejects);
    EXPECT_EQ(r.exit_code, 0) << out << " " << rejects << ": " << r.err;
    EXPECT_NE(read_text(work_ / "real" / "R.csv").find("BAD_DATE"), std::string::npos);
  }
  fs::create_directory(work_ / "rdir");
  const auto r = run("report --backend cpu " + log + " --out fresh --rejects rdir");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("rdir: is a directory"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(work_ / "fresh")) << "--out written although the run was refused";
}

TEST_F(Cli, RefusedOutputDirectoryWritesNoRejectsFile)
{
  const auto log = write("log.csv", clean_log + "S5,2025-02-30,E1,US,H100-SXM,10\n");
  fs::create_directories(work_ / "notes");
  write("notes/mine.txt", "not a capledger output");
  const auto r = run("report --backend cpu " + log + " --rejects rejects.csv --out notes");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_FALSE(fs::exists(work_ / "rejects.csv"));
  EXPECT_EQ(read_text(work_ / "notes" / "mine.txt"), "not a capledger output");
}

// A rejects file inside the output directory: the directory is put in place first (replacing the
// previous run's), then the rejects file inside it; the file is written as lines are rejected,
// so it must be staged out of the directory's way.
TEST_F(Cli, RejectsFileInsideTheOutputDirectory)
{
  for (const std::string bad : {"S5,2025-02-30,E1,US,H100-SXM,10", "S7,2025-02-01,E1,XX,H100-SXM,1"}) {
    const auto log = write("log.csv", clean_log + bad + "\n");
    const std::string out = bad[1] == '5' ? "result" : "./result/";  // the second replaces the first
    const auto r = run("report --backend cpu " + log + " --out " + out + " --rejects result/rejects.csv");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto rows = parse_csv(read_text(work_ / "result" / "rejects.csv"));
    ASSERT_EQ(rows.size(), 2U) << bad;
    EXPECT_EQ(rows[1][4], bad);
    EXPECT_TRUE(fs::exists(work_ / "result" / "summary.json"));
    EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv", "result"})) << "no staging file left behind";
  }
}

// Where the rejects file may not go in the output directory, which is replaced whole: a folder
// inside it (gone once the report is in place: the run used to fail after writing the report),
// or a report file's name (the rejects used to replace summary.json). Refused before anything is
// written. And a run stopped by --max-rejects leaves the directory as it was, so its rejects
// file there is not written either (it used to fail on a missing directory, or drop the stopped
// run's rejects beside an earlier report).
TEST_F(Cli, RejectsFileInTheOutputDirectoryOnlyWhereItCanGo)
{
  const auto log = write("log.csv", clean_log + "S9,2025-02-01,E1,US,NOPE,1\n");
  auto r         = run("report --backend cpu " + log + " --out result --rejects result/sub/rejects.csv");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("lies in a folder inside the --out directory"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(work_ / "result"));
  r = run("report --backend cpu " + log + " --out result --rejects result/summary.json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is the report's own summary.json"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(work_ / "result"));

  r = run("report --backend cpu " + log + " --out fresh --rejects fresh/rejects.csv --max-rejects 0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("more than 0 rejected lines"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("is not written: it lies in the --out directory"), std::string::npos) << r.err;
  EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv"}));

  ASSERT_EQ(run("report --backend cpu " + log + " --out result --rejects result/rejects.csv").exit_code, 0);
  const std::string before = read_text(work_ / "result" / "rejects.csv");
  const auto bad_twice =
      write("log.csv", clean_log + "S9,2025-02-01,E1,US,NOPE,1\nS8,2025-02-31,E1,US,H100-SXM,1\n");
  EXPECT_EQ(
      run("report --backend cpu " + bad_twice + " --out result --rejects result/rejects.csv --max-rejects 1")
          .exit_code,
      2);
  EXPECT_EQ(read_text(work_ / "result" / "rejects.csv"), before);  // the earlier run's, with its report
}

// A rejects file may not replace a bundled reference file either (found through
// CAPLEDGER_DATASETS here): only files named by a flag used to be checked.
TEST_F(Cli, RejectsFileOverABundledReferenceFileIsRefused)
{
  const fs::path datasets = work_ / "ds";
  fs::copy(capledger::default_datasets_dir(), datasets, fs::copy_options::recursive);
  const std::string chips = read_text(datasets / "chips.csv");
  const auto log          = write("log.csv", clean_log + "S9,2025-02-01,E1,US,NOPE,1\n");
  const auto r = run_shell("CAPLEDGER_DATASETS='" + datasets.string() + "' CLI report --backend cpu " + log +
                           " --rejects " + (datasets / "chips.csv").string() + " </dev/null");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--rejects"), std::string::npos) << r.err;
  EXPECT_EQ(read_text(datasets / "chips.csv"), chips);
}

TEST_F(Cli, NegativeMaxRejectsIsRefused)
{
  const auto log = write("log.csv", clean_log);
  for (const std::string value : {"-1", "abc", "1.5"}) {
    const run_result r = run("report --backend cpu " + log + " --rejects rejects.csv --max-rejects " + value);
    EXPECT_EQ(r.exit_code, 2) << value;
    // The value and what is wanted, not CLI11's range of doubles (300 digits).
    EXPECT_NE(r.err.find("'" + value + "' is not a whole number of 0 or more"), std::string::npos) << r.err;
  }
}

// A value past the 64-bit range is said to be that, not "not a whole number".
TEST_F(Cli, MaxRejectsPastSixtyFourBitsSaysSo)
{
  const auto log = write("log.csv", clean_log);
  const run_result r =
      run("report --backend cpu " + log + " --rejects rejects.csv --max-rejects 99999999999999999999");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is more than 9223372036854775807"), std::string::npos) << r.err;
}

// An empty file or folder name is refused (exit 2, nothing written), not taken for the flag left
// out: a script's empty $ENTITIES reported every entity as unlisted, an empty --rules used the
// bundled rules without a word, an empty --out wrote nothing and exited 0.
TEST_F(Cli, EmptyFileNamesAreRefused)
{
  const auto log = write("log.csv", clean_log);
  for (const std::string flag : {"--entities", "--rules", "--countries", "--chips", "--out", "--rejects"}) {
    const run_result r = run("report --backend cpu " + log + " " + flag + " ''");
    EXPECT_EQ(r.exit_code, 2) << flag << ": " << r.err;
    EXPECT_NE(r.err.find("an empty value names no file"), std::string::npos) << flag << ": " << r.err;
    EXPECT_EQ(entries(work_), std::set<std::string>{"log.csv"}) << flag;
  }
  for (const std::string& command :
       {"ledger ingest l.db " + log + " --entities ''", "check l.db --proposed " + log + " --out ''",
        std::string("check l.db --proposed ''"), std::string("reconcile l.db --inventory ''")}) {
    const run_result r = run(command);
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_NE(r.err.find("an empty value names no file"), std::string::npos) << command << ": " << r.err;
  }
}

// Reference files given as a pipe, a FIFO or stdin are read once: summary.json records the bytes
// that were used (a second read for the fingerprint found a pipe empty, and a FIFO blocked it).
TEST_F(Cli, ReferenceFilesThroughPipesAreFingerprintedAsRead)
{
  const auto log             = write("log.csv", clean_log);
  const std::string entities = (sample_dir() / "entities.csv").string();
  const std::string chips    = (capledger::test::datasets_dir() / "chips.csv").string();
  ASSERT_EQ(
      run("report --backend cpu " + log + " --entities " + entities + " --chips " + chips + " --out by-path")
          .exit_code,
      0);
  // (timeout: a second open of the FIFO would wait for a writer forever)
  const run_result piped = run_shell("mkfifo chips.fifo && { cat '" + chips +
                                     "' >chips.fifo & } && timeout 60 CLI report --backend cpu " + log +
                                     " --entities - --chips chips.fifo --out piped <'" + entities + "'");
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  const json by_path = json::parse(read_text(work_ / "by-path" / "summary.json"))["reference"];
  const json through = json::parse(read_text(work_ / "piped" / "summary.json"))["reference"];
  for (const char* file : {"entities", "chips"}) {
    EXPECT_EQ(through[file]["bytes"], by_path[file]["bytes"]) << file;
    EXPECT_EQ(through[file]["sha256"], by_path[file]["sha256"]) << file;
    EXPECT_GT(through[file]["bytes"].get<std::int64_t>(), 0) << file;
  }
}

// Standard input can be read once: named for two things a command reads (the log and a reference
// flag, two reference flags, an inventory or the proposed lines and a reference flag) the run is
// refused before it reads anything, naming both, and writes nothing; named once it works.
TEST_F(Cli, StandardInputNamedTwiceIsRefused)
{
  const auto log             = write("log.csv", clean_log);
  const std::string entities = (sample_dir() / "entities.csv").string();
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  ASSERT_EQ(run("ledger ingest l.db " + log).exit_code, 0);
  const std::pair<std::string, std::string> cases[] = {
      {"report --backend cpu - --entities - --out out", "the shipment log and for --entities"},
      {"report --backend cpu " + log + " --countries - --chips - --out out", "--countries and for --chips"},
      {"ledger ingest l.db - --entities -", "the shipment log and for --entities"},
      {"ledger balances l.db --rules - --chips -", "--rules and for --chips"},
      {"reconcile l.db --inventory - --countries - --out out", "--inventory and for --countries"},
      {"check l.db --proposed - --entities - --out out.csv", "the proposed lines and for --entities"}};
  for (const auto& [command, named] : cases) {
    const run_result r = run(command, log);
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_NE(r.err.find("standard input ('-') is named for " + named + ": it can be read once"),
              std::string::npos)
        << command << ": " << r.err;
    EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv", "l.db"})) << command;
  }
  EXPECT_EQ(run("report --backend cpu - --out out", log).exit_code, 0);
  EXPECT_EQ(run("report --backend cpu " + log + " --entities - --out out2", entities).exit_code, 0);
}

// One file named twice, or under another name (a link), is read twice (SPEC), every line of the
// second reading a DUPLICATE_ID: stderr says why before the error does; distinct files say nothing.
TEST_F(Cli, AFileNamedTwiceIsNoted)
{
  const auto log = write("log.csv", clean_log);
  std::filesystem::create_symlink("log.csv", work_ / "link.csv");
  const run_result r = run("report --backend cpu log.csv link.csv log.csv");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(
      r.err.rfind("capledger: note: link.csv is the same file as log.csv: its lines are read again, each a "
                  "DUPLICATE_ID of the first reading\n"
                  "capledger: note: log.csv is given twice: its lines are read again, each a DUPLICATE_ID of "
                  "the first reading\n"
                  "capledger: link.csv:2:1: DUPLICATE_ID: ",
                  0),
      0U)
      << r.err;
  write("copy.csv", clean_log);  // the same bytes in another file: not noted
  EXPECT_EQ(run("report --backend cpu log.csv copy.csv").err.find("note:"), std::string::npos);
}

// The log may name `-` twice where standard input is a file: it is read again from its start,
// and every line of the second reading is a DUPLICATE_ID, as for a file given twice. A pipe is
// emptied by the first reading; the second one found no header row, which misled. Refused.
TEST_F(Cli, StandardInputTwiceInTheLogIsAFileGivenTwiceOrRefused)
{
  const auto log = write("log.csv", clean_log);
  run_result r   = run("report --backend cpu - -", log);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.rfind("capledger: -:2:1: DUPLICATE_ID: shipment id 'S1' was already used at -:2", 0), 0U)
      << r.err;
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  for (const std::string& command :
       std::vector<std::string>{"report --backend cpu - " + log + " - --out out", "ledger ingest l.db - -"}) {
    r = run_shell("cat " + log + " | CLI " + command);
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_NE(r.err.find("capledger: standard input ('-') is named 2 times for the shipment log, and it is "
                         "not a file read from its start (a pipe): it can be read once"),
              std::string::npos)
        << command << ": " << r.err;
    EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv", "l.db"})) << command;
  }
  EXPECT_EQ(run_shell("cat " + log + " | CLI report --backend cpu - --out out").exit_code, 0);
}

// A pipe or FIFO can be read once whatever names it, and is no output for the run that reads it.
// Named twice (`- /dev/stdin`, a FIFO for two things), the second reading found no header row,
// which misled, or the log's bytes taken for the entities file, or (a FIFO) waited forever for a
// second writer. As an output (`--rejects /dev/stdin` over a pipe), libstdc++'s
// std::filesystem::equivalent does not compare pipes, so it was let through, and the run, holding
// the pipe's writing end, waited forever for the end of its input. All refused before anything
// is read or written (the FIFO is never opened: no writer is needed).
TEST_F(Cli, APipeIsReadOnceAndIsNoOutputOfTheRunReadingIt)
{
  const auto log = write("log.csv", clean_log + "S9,2025-13-01,E1,US,H100-SXM,1\n");
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  const std::string db_text = read_text(work_ / "l.db");
  ASSERT_EQ(::mkfifo((work_ / "log.fifo").c_str(), 0600), 0);
  const std::string twice = ": it can be read once; name it once";
  const std::string into  = ": writing into the pipe it reads, the run would wait forever";
  const std::pair<std::string, std::string> cases[] = {
      {"cat log.csv | timeout 20 CLI report --backend cpu - /dev/stdin",
       "the shipment log names one pipe twice (- (standard input) and /dev/stdin)" + twice},
      {"timeout 20 CLI report --backend cpu log.fifo log.fifo --out out",
       "the shipment log names one pipe twice (log.fifo and log.fifo)" + twice},
      {"cat log.csv | timeout 20 CLI report --backend cpu - --entities /dev/fd/0",
       "the shipment log - (standard input) and --entities /dev/fd/0 are one pipe" + twice},
      {"timeout 20 CLI ledger ingest l.db log.fifo --entities log.fifo",
       "the shipment log log.fifo and --entities log.fifo are one pipe" + twice},
      {"cat log.csv | timeout 20 CLI report --backend cpu - --rejects /dev/stdin",
       "--rejects /dev/stdin is the input - (standard input)" + into},
      {"cat log.csv | timeout 20 CLI ledger ingest l.db - --rejects /dev/fd/0",
       "--rejects /dev/fd/0 is the input - (standard input)" + into},
      {"timeout 20 CLI report --backend cpu log.fifo --rejects log.fifo",
       "--rejects log.fifo is the input log.fifo" + into}};
  for (const auto& [command, message] : cases) {
    const run_result r = run_shell(command);
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_NE(r.err.find("capledger: " + message), std::string::npos) << command << ": " << r.err;
    EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv", "l.db", "log.fifo"})) << command;
  }
  EXPECT_EQ(read_text(work_ / "l.db"), db_text);
  // Another pipe, or /dev/null, is still written as it is.
  EXPECT_EQ(run_shell("cat log.csv | timeout 20 CLI report --backend cpu - --rejects /dev/null").exit_code,
            0);
}

// A log given again with `\n\r` line ends (a CR at the start of every record, so in every
// shipment id) matched none of its ids: `report` counted each shipment twice, exit 0, and a ledger
// took the night again. An entities file so written matched no entity (a UVEU read as NONE).
// Refused at that CR (exit 2), nothing written or stored.
TEST_F(Cli, LineFeedCarriageReturnLineEndsAreRefused)
{
  const auto log    = write("log.csv", clean_log);
  std::string again = clean_log;
  for (std::size_t at = 0; (at = again.find('\n', at)) != std::string::npos; at += 2) {
    again.insert(at + 1, "\r");
  }
  write("again.csv", again);
  write("entities.csv", "entity,hq_country,status,nveu_countries\n\rE1,US,UVEU,\n");
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  ASSERT_EQ(run("ledger ingest l.db log.csv").exit_code, 0);
  const std::string db_text                         = read_text(work_ / "l.db");
  const std::pair<std::string, std::string> cases[] = {
      {"report --backend cpu log.csv again.csv --rejects rejects.csv --out out", "again.csv:2:1"},
      {"ledger ingest l.db again.csv --rejects rejects.csv", "again.csv:2:1"},
      {"report --backend cpu log.csv --entities entities.csv --out out", "entities.csv:2:1"}};
  for (const auto& [command, where] : cases) {
    const run_result r = run(command);
    EXPECT_EQ(r.exit_code, 2) << command;
    EXPECT_NE(r.err.find("capledger: " + where +
                         ": MALFORMED_HEADER: a carriage return follows the header row's line end: line ends "
                         "must be \\n or \\r\\n, not \\n\\r"),
              std::string::npos)
        << command << ": " << r.err;
    EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv", "again.csv", "entities.csv", "l.db"}))
        << command;
  }
  EXPECT_EQ(read_text(work_ / "l.db"), db_text);
}

// A folder given as a reference file is bad input naming it (exit 2), not an internal error.
TEST_F(Cli, AFolderAsAReferenceFileIsBadInput)
{
  const auto log = write("log.csv", clean_log);
  fs::create_directory(work_ / "adir");
  for (const std::string flag : {"--entities", "--rules", "--countries", "--chips"}) {
    const run_result r = run("report --backend cpu " + log + " " + flag + " adir");
    EXPECT_EQ(r.exit_code, 2) << flag << ": " << r.err;
    EXPECT_NE(r.err.find("adir: read error: Is a directory"), std::string::npos) << flag << ": " << r.err;
  }
}

// --warn-at levels past a millionth may end in zeros (0.80000000 is 0.8), as shares in rule files.
TEST_F(Cli, WarnAtLevelsMayEndInZeros)
{
  const auto log         = write("log.csv", clean_log);
  const run_result plain = run("report --backend cpu " + log + " --warn-at 0.8 --format csv");
  const run_result zeros = run("report --backend cpu " + log + " --warn-at 0.80000000 --format csv");
  ASSERT_EQ(zeros.exit_code, plain.exit_code) << zeros.err;
  EXPECT_EQ(zeros.out, plain.out);
  EXPECT_EQ(run("report --backend cpu " + log + " --warn-at 0.80000001").exit_code, 2);
}

// --warn-at is plain fractions in (0, 1], comma-separated, in any order, repeats allowed; anything
// else is refused (exit 2) rather than read some way the user did not mean.
TEST_F(Cli, WarnAtTakesOnlyACommaListOfPlainFractions)
{
  // AE (tier 2, cap 790000000) at 671500000 = 85% of its cap.
  const auto log = write("log.csv",
                         "shipment_id,date,entity,country,chip,quantity,tpp_per_unit\n"
                         "W1,2025-02-01,E1,AE,X1,1,671500000\n");
  const std::string findings =
      "severity,rule,entity,country,pathway,order_id,year,date,shipment_id,value,limit\n";
  const std::string at_80 = findings + "warning,CAP_NEAR_LIMIT,,AE,,,,,,671500000,632000000\n";
  const std::pair<std::string, std::string> taken[] = {
      {"0.9,0.8,0.9", at_80},  // 0.8 x cap = 632000000; 0.9 not reached
      {".8", at_80},
      {"0.85", findings + "warning,CAP_NEAR_LIMIT,,AE,,,,,,671500000,671500000\n"},  // reached exactly
      {"0.9", findings},
      {"1", findings}};
  for (const auto& [levels, expected] : taken) {
    const run_result r = run("report --backend cpu " + log + " --format csv --warn-at " + levels);
    EXPECT_EQ(r.exit_code, 0) << levels << ": " << r.err;
    EXPECT_EQ(r.out, expected) << levels;
  }
  for (const std::string levels : {"9e-1", "0.8, 0.9", "", "0", "1.0000001", "0.8,,0.9", "0.8,", "+0.8"}) {
    const run_result r = run("report --backend cpu " + log + " --warn-at '" + levels + "'");
    EXPECT_EQ(r.exit_code, 2) << levels;
    EXPECT_NE(r.err.find("is not a fraction in (0, 1] with at most 6 decimals"), std::string::npos)
        << levels << ": " << r.err;
  }
}

// The table's cap heading names the pathways the rule set counts against country caps.
TEST_F(Cli, CapHeadingNamesTheRuleSetsPathways)
{
  const auto log    = write("log.csv", header + "S1,2025-02-01,E1,AE,H100-SXM,10\n");
  std::string rules = read_text(capledger::test::datasets_dir() / "rules" / "ai-diffusion-2025.json");
  const auto at     = rules.find(R"("pathways": ["LICENSE"])");
  ASSERT_NE(at, std::string::npos);
  rules.replace(at, std::string(R"("pathways": ["LICENSE"])").size(), R"("pathways": ["LICENSE", "LPP"])");
  write("rules.json", rules);
  const run_result bundled = run("report --backend cpu " + log);
  const run_result both    = run("report --backend cpu " + log + " --rules rules.json");
  EXPECT_NE(bundled.out.find("tier-2 country caps in use (LICENSE-pathway tpp"), std::string::npos)
      << bundled.out;
  EXPECT_NE(both.out.find("tier-2 country caps in use (LICENSE+LPP-pathway tpp"), std::string::npos)
      << both.out;
}

TEST_F(Cli, RejectsWithViolationsExitsOne)
{
  // A tier-3 line is a violation even when other lines are rejected.
  const auto log = write("log.csv", header + "S1,2025-02-01,E1,CN,H20,10\nS2,2025-02-01,E1,XX,H20,10\n");
  const auto r   = run("report --backend cpu " + log + " --rejects rejects.csv");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(parse_csv(read_text(work_ / "rejects.csv")).size(), 2U);
}

TEST_F(Cli, RejectsFileIsWrittenEvenWhenEmpty)
{
  const auto log = write("log.csv", clean_log);
  ASSERT_EQ(run("report --backend cpu " + log + " --rejects rejects.csv").exit_code, 0);
  EXPECT_EQ(read_text(work_ / "rejects.csv"), "file,line,column,reason,raw\n");
}

TEST_F(Cli, MaxRejectsZeroWithOneBadLineExitsTwo)
{
  const auto log = write("log.csv", clean_log + "S9,2025-02-01,E1,US,NOPE,1\n");
  const auto r   = run("report --backend cpu " + log + " --rejects rejects.csv --max-rejects 0 --out result");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_FALSE(fs::exists(work_ / "result"));
  // The rejects file still holds the line that stopped the run.
  const auto rows = parse_csv(read_text(work_ / "rejects.csv"));
  ASSERT_EQ(rows.size(), 2U);
  EXPECT_EQ(rows[1][1], "5");
  EXPECT_EQ(rows[1][2], "21");
  // One allowed: the run goes on.
  EXPECT_EQ(run("report --backend cpu " + log + " --rejects rejects.csv --max-rejects 1").exit_code, 0);
}

TEST_F(Cli, AsOfExcludesLaterLines)
{
  const auto log = write("log.csv", clean_log);
  const auto r   = run("report --backend cpu " + log + " --as-of 2025-03-01 --out result");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json summary = json::parse(read_text(work_ / "result" / "summary.json"));
  EXPECT_EQ(summary["as_of"], "2025-03-01");
  EXPECT_EQ(summary["lines"]["read"], 3);
  EXPECT_EQ(summary["lines"]["used"], 2);
  EXPECT_EQ(summary["lines"]["after_as_of"], 1);
  EXPECT_EQ(summary["totals"]["tpp"], 30 * 15832);  // S3 (B200) is after as_of
  // A tier-3 line after as_of is not a violation.
  const auto later = write("later.csv", clean_log + "S4,2025-06-01,E1,CN,H20,10\n");
  EXPECT_EQ(run("report --backend cpu " + later + " --as-of 2025-04-01").exit_code, 0);
  EXPECT_EQ(run("report --backend cpu " + later).exit_code, 1);
  // The default as_of is the latest accepted date: lines set aside with --rejects (a bad field, a
  // repeated id, a sum past 2^63-1) do not move it.
  const auto set_aside = write("set_aside.csv", clean_log +
                                                    "S5,2025-09-01,E1,US,NOPE,1\n"
                                                    "S1,2025-10-01,E1,US,H100-SXM,1\n"
                                                    "S6,2025-11-01,E1,US,H100-SXM,582577819407199\n");
  ASSERT_EQ(run("report --backend cpu " + set_aside + " --rejects rejects.csv --out aside").exit_code, 0);
  const json aside = json::parse(read_text(work_ / "aside" / "summary.json"));
  EXPECT_EQ(aside["as_of"], "2025-04-01");
  EXPECT_EQ(aside["lines"]["rejected"], 3);
  EXPECT_EQ(aside["lines"]["after_as_of"], 0);
}

TEST_F(Cli, TextThatIsNotUtf8IsBadInputNotAnInternalError)
{
  // A finding names the entity; its Latin-1 byte used to make the JSON writer throw (exit 3).
  const auto log = write("latin1.csv", header + "S1,2025-03-01,Caf\xe9,CN,H100-SXM,1\n");
  const auto r   = run("report --backend cpu " + log + " --out result");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("latin1.csv:2:15: BAD_ENCODING"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(work_ / "result"));
  // An entities file with such an id is a bad reference file (exit 2), not an internal error.
  const auto clean    = write("log.csv", clean_log);
  const auto entities = write("entities.csv", "entity,hq_country,status,nveu_countries\nU\xe9,US,UVEU,\n");
  const auto e        = run("report --backend cpu " + clean + " --entities " + entities);
  EXPECT_EQ(e.exit_code, 2) << e.err;
  EXPECT_NE(e.err.find("BAD_ENCODING"), std::string::npos) << e.err;
  // A file name that is not UTF-8 still gets a summary.json (the name is not the data).
  const auto odd = write("log\xe9.csv", clean_log);
  const auto n   = run("report --backend cpu '" + odd + "' --out named");
  EXPECT_EQ(n.exit_code, 0) << n.err;
  EXPECT_TRUE(fs::exists(work_ / "named" / "summary.json"));
}

TEST_F(Cli, StdinDash)
{
  const auto log = write("log.csv", clean_log + "S4,2025-06-01,E1,CN,H20,10\n");
  const auto r   = run("report --backend cpu - --format json", log);
  ASSERT_EQ(r.exit_code, 1) << r.err;
  const json doc = json::parse(r.out);
  ASSERT_EQ(doc["summary"]["inputs"].size(), 1U);
  EXPECT_EQ(doc["summary"]["inputs"][0]["path"], "-");
  EXPECT_EQ(doc["summary"]["inputs"][0]["bytes"], clean_log.size() + std::string("S4,2025-06-01,E1,CN,H20,10\n").size());
  EXPECT_EQ(doc["summary"]["lines"]["read"], 4);
}

// A report stopped by a signal (Ctrl-C, a scheduler's SIGTERM) removes the hidden temporary file
// its rejects go to (on a large bad log, as large as the bad lines) instead of leaving it behind,
// and the folders it made for its outputs, and still ends by that signal. The report here waits
// for stdin, a pipe kept open, so the signal arrives while the temporary file exists.
TEST_F(Cli, AReportStoppedByASignalLeavesNoTemporaryFile)
{
  int feed[2];
  ASSERT_EQ(::pipe(feed), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // async-signal-safe calls only until exec
    ::dup2(feed[0], 0);
    ::close(feed[0]);
    ::close(feed[1]);
    const int quiet = ::open("/dev/null", O_WRONLY);
    ::dup2(quiet, 1);
    ::dup2(quiet, 2);
    ::signal(SIGTERM, SIG_DFL);  // an ignored signal would stay ignored across exec
    if (::chdir(work_.c_str()) != 0) { ::_exit(126); }
    ::execl(CAPLEDGER_CLI_PATH, "capledger", "report", "-", "--backend", "cpu", "--rejects", "n/m/r.csv",
            "--out", "n/m/o", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(feed[0]);
  const auto temporary_files = [&] {
    std::set<std::string> hidden;
    if (!fs::is_directory(work_ / "n" / "m")) { return hidden; }
    for (const auto& entry : fs::directory_iterator(work_ / "n" / "m")) {
      const std::string name = entry.path().filename().string();
      if (name.rfind(".r.csv.", 0) == 0) { hidden.insert(name); }
    }
    return hidden;
  };
  for (int wait = 0; wait < 1000 && temporary_files().empty(); ++wait) { ::usleep(10000); }
  EXPECT_EQ(temporary_files().size(), 1U) << "the report never created its temporary rejects file";
  ::kill(child, SIGTERM);
  int status = 0;
  for (int wait = 0; wait < 1000 && ::waitpid(child, &status, WNOHANG) == 0; ++wait) { ::usleep(10000); }
  if (!WIFSIGNALED(status) && !WIFEXITED(status)) {  // still running: do not hang the suite
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    ADD_FAILURE() << "the report did not stop on SIGTERM";
  }
  ::close(feed[1]);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status;
  EXPECT_EQ(temporary_files(), std::set<std::string>{});
  EXPECT_FALSE(fs::exists(work_ / "n")) << "the folders the run made for its outputs";
}

// A refused generate option says which flag to change and what it was compared with, the default
// where the other day was left out: "the first day is after the last day" and "rates must be
// between 0 and their denominator" named neither. Nothing is written.
TEST_F(Cli, GenerateOptionErrorsNameTheFlags)
{
  for (const auto& [args, said] :
       {std::pair{"--first-day 2026-01-01 --last-day 2025-01-01",
                  "capledger: generate: --first-day 2026-01-01 is after --last-day 2025-01-01\n"},
        std::pair{
            "--first-day 2028-01-01",
            "capledger: generate: --first-day 2028-01-01 is after --last-day 2027-12-31 (the default)\n"},
        std::pair{"--first-day 1900-01-01 --last-day 2025-01-01",
                  "capledger: generate: --first-day 1900-01-01 to --last-day 2025-01-01 is more than a "
                  "century: generate's dates span at most one\n"},
        std::pair{"--returns-per-mille 2000",
                  "capledger: generate: --returns-per-mille must be between 0 and 1000, not 2000\n"}}) {
    const auto r = run(std::string("generate --records 10 --out g ") + args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_EQ(r.err, said) << args;
    EXPECT_FALSE(fs::exists(work_ / "g")) << args;
  }
}

// `generate` writes shipments.csv and entities.csv into --out; a folder that has either already
// (someone's real log, say) is left as it was (exit 2).
TEST_F(Cli, GenerateNeverReplacesAFile)
{
  fs::create_directories(work_ / "data");
  std::ofstream(work_ / "data" / "shipments.csv") << clean_log;
  const auto r = run("generate --records 50 --out data");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("shipments.csv"), std::string::npos) << r.err;
  EXPECT_EQ(read_text(work_ / "data" / "shipments.csv"), clean_log);
  EXPECT_EQ(entries(work_ / "data"), (std::set<std::string>{"shipments.csv"}));
  ASSERT_EQ(run("generate --records 50 --out fresh").exit_code, 0);
  EXPECT_EQ(entries(work_ / "fresh"), (std::set<std::string>{"entities.csv", "shipments.csv"}));
}

// A shipments.csv made after generate looked (another process, while the log was written) is not
// replaced either: the rename refuses (RENAME_NOREPLACE, or a hard link where the file system
// lacks it: EINVAL, 22), the run exits 2 naming it, and neither generated file is left.
TEST_F(Cli, GenerateNeverReplacesAFileMadeWhileItWrites)
{
  for (const std::string rename_lacks_noreplace : {"", "rename:1:22"}) {
    const run_result r =
        run_shell("LD_PRELOAD='" CAPLEDGER_FAIL_IO_PATH "' CAPLEDGER_FAIL_IO=" + rename_lacks_noreplace +
                  " CAPLEDGER_MADE_BEFORE_RENAME=g/shipments.csv ASAN_OPTIONS=\"$ASAN_OPTIONS:"
                  "verify_asan_link_order=0\" CLI generate --records 50 --out g </dev/null");
    EXPECT_EQ(r.exit_code, 2) << rename_lacks_noreplace << ": " << r.err;
    EXPECT_EQ(r.err.rfind("capledger: g/shipments.csv: exists", 0), 0U) << r.err;
    EXPECT_EQ(read_text(work_ / "g" / "shipments.csv"), "made meanwhile\n") << rename_lacks_noreplace;
    EXPECT_EQ(entries(work_ / "g"), (std::set<std::string>{"shipments.csv"})) << rename_lacks_noreplace;
    fs::remove_all(work_ / "g");
  }
  // Without RENAME_NOREPLACE, where nothing is in the way, the files land as they do with it.
  ASSERT_EQ(run_failing("rename:1:22", "generate --records 50 --out linked").exit_code, 0);
  ASSERT_EQ(run("generate --records 50 --out renamed").exit_code, 0);
  EXPECT_EQ(entries(work_ / "linked"), (std::set<std::string>{"entities.csv", "shipments.csv"}));
  for (const char* name : {"entities.csv", "shipments.csv"}) {
    EXPECT_EQ(read_text(work_ / "linked" / name), read_text(work_ / "renamed" / name)) << name;
  }
}

// generate's two files appear whole or not at all: a full disk in the log (its first mebibyte), in
// the entities file once the log is in place (which then goes again), or a failed rename leaves
// neither, and no folder it made. A failed fsync of their folder leaves both, and exit 2.
TEST_F(Cli, GenerateOnAFailingDiskLeavesNoFile)
{
  // 20000 lines: about 1.5 MB of log, written in two pieces (a mebibyte, then the rest at its
  // commit), then the entities file in one, so the 3rd write is the entities file's.
  const std::string args = "generate --records 20000 --out g/h";
  for (const std::string failure : {"write:1:ENOSPC", "write:3:ENOSPC", "rename:2:EIO", "fsync:2:EIO"}) {
    const auto r = run_failing(failure, args);
    EXPECT_EQ(r.exit_code, 2) << failure << ": " << r.err;
    EXPECT_TRUE(entries(work_).empty()) << failure << ": " << r.err;
  }
  fs::create_directory(work_ / "kept");
  auto r = run_failing("write:1:ENOSPC", "generate --records 20000 --out kept");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "capledger: kept/shipments.csv: write failed: No space left on device\n");
  EXPECT_TRUE(entries(work_ / "kept").empty());

  r = run_failing("dirfsync:1:EIO", args);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.rfind("capledger: g/h/shipments.csv: in place, but cannot flush", 0), 0U) << r.err;
  EXPECT_EQ(entries(work_ / "g" / "h"), (std::set<std::string>{"entities.csv", "shipments.csv"}));
  ASSERT_EQ(run("generate --records 20000 --out whole").exit_code, 0);
  EXPECT_EQ(read_text(work_ / "g" / "h" / "shipments.csv"), read_text(work_ / "whole" / "shipments.csv"));
  EXPECT_EQ(read_text(work_ / "g" / "h" / "entities.csv"), read_text(work_ / "whole" / "entities.csv"));
}

// A log piped in is copied to a temporary file, not held in memory: the report reads it again
// for the crossing lines' days, as it reads a file. Stdin that is a file is read from where it
// stands (here after a first line something else read), not from the file's start.
TEST_F(Cli, StdinPipeAndFileGiveTheSameReport)
{
  ASSERT_EQ(run("generate --records 20000 --seed 7 --force-breaches --out gen").exit_code, 0);
  const auto file = run("report --backend cpu gen/shipments.csv --entities gen/entities.csv --out from-file");
  ASSERT_EQ(file.exit_code, 1) << file.err;  // --force-breaches: violations
  const auto piped = run_shell(
      "cat gen/shipments.csv | CLI report --backend cpu - --entities gen/entities.csv --out from-pipe");
  EXPECT_EQ(piped.exit_code, 1) << piped.err;
  write("junk-first.csv",
        "a line read by the shell, not by capledger\n" + read_text(work_ / "gen" / "shipments.csv"));
  const auto rest = run_shell(
      "{ read -r skipped; exec CLI report --backend cpu - --entities gen/entities.csv "
      "--out from-rest; } <junk-first.csv");
  EXPECT_EQ(rest.exit_code, 1) << rest.err;
  const json whole = json::parse(read_text(work_ / "from-file" / "summary.json"));
  ASSERT_GT(whole["findings"]["violations"].get<int>(), 5);
  for (const std::string dir : {"from-pipe", "from-rest"}) {
    for (const auto& name : entries(work_ / "from-file")) {
      const std::string a = read_text(work_ / "from-file" / name), b = read_text(work_ / dir / name);
      if (name != "summary.json") {
        EXPECT_TRUE(a == b) << dir << "/" << name << " differs";
        continue;
      }
      const json s = json::parse(b);
      EXPECT_EQ(s["inputs"][0]["path"], "-");
      EXPECT_EQ(s["inputs"][0]["sha256"], whole["inputs"][0]["sha256"]) << dir;
      EXPECT_EQ(s["findings"], whole["findings"]) << dir;
    }
  }
}

TEST_F(Cli, StdinBadLineNamesDash)
{
  const auto log = write("log.csv", header + "S1,2025-02-01,E1,US,H100-SXM,0\n");
  const auto r   = run("report --backend cpu -", log);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("-:2:30: BAD_QUANTITY"), std::string::npos) << r.err;
}

TEST_F(Cli, FormatJsonParses)
{
  // 10 x H20 (2368) to CN: one PROHIBITED_DESTINATION finding worth 23680.
  const auto log = write("log.csv", clean_log + "S4,2025-08-01,E1,CN,H20,10\n");
  const auto r   = run("report --backend cpu " + log + " --format json");
  ASSERT_EQ(r.exit_code, 1) << r.err;
  json doc;
  ASSERT_NO_THROW(doc = json::parse(r.out)) << r.out;
  EXPECT_EQ(doc["summary"]["lines"]["read"], 4);
  EXPECT_EQ(doc["summary"]["findings"]["violations"], 1);
  EXPECT_EQ(doc["summary"]["findings"]["by_rule"]["PROHIBITED_DESTINATION"], 1);
  EXPECT_EQ(doc["summary"]["totals_by_tier"]["3"]["tpp"], 23680);
  ASSERT_EQ(doc["findings"].size(), 1U);
  const json& f = doc["findings"][0];
  EXPECT_EQ(f["severity"], "violation");
  EXPECT_EQ(f["rule"], "PROHIBITED_DESTINATION");
  EXPECT_EQ(f["entity"], "E1");
  EXPECT_EQ(f["country"], "CN");
  EXPECT_EQ(f["date"], "2025-08-01");
  EXPECT_EQ(f["shipment_id"], "S4");
  EXPECT_EQ(f["value"], "23680");
}

TEST_F(Cli, FormatCsvPrintsFindings)
{
  const auto log = write("log.csv", clean_log + "S4,2025-08-01,E1,CN,H20,10\nS5,2025-09-01,E1,CN,H20,5\n");
  const auto r   = run("report --backend cpu " + log + " --format csv");
  ASSERT_EQ(r.exit_code, 1) << r.err;
  const auto rows = parse_csv(r.out);
  ASSERT_EQ(rows.size(), 2U) << r.out;
  EXPECT_EQ(rows[0], (std::vector<std::string>{"severity", "rule", "entity", "country", "pathway", "order_id", "year",
                                                "date", "shipment_id", "value", "limit"}));
  // One finding per (entity, country): the first line, value = 15 x 2368 = 35520; no limit.
  EXPECT_EQ(rows[1], (std::vector<std::string>{"violation", "PROHIBITED_DESTINATION", "E1", "CN", "", "", "", "2025-08-01",
                                                "S4", "35520", ""}));
}

TEST_F(Cli, FormatCsvWithOutWritesTheDirectory)
{
  // --out takes precedence over stdout formats.
  const auto log = write("log.csv", clean_log);
  const auto r   = run("report --backend cpu " + log + " --format csv --out result");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(entries(work_ / "result"), output_files);
}

// Every name SPEC.md fixes, in one run that gives every `report` flag: the eight output files,
// each header, the summary.json fields of SPEC §5, the rejects file's columns and a reject of
// each reason SPEC §7 lists, the stdout formats and the exit codes. The expected strings are
// copied from SPEC (reason codes from the README's list), and the figures worked by hand.
TEST_F(Cli, EveryNameTheSpecFixes)
{
  // Columns in another order and case, spaces around names (inside quotes too), an unknown
  // column; the reasons of
  // SPEC §7 one a line, in its order (an unterminated quote last: it ends its record).
  const auto log = write(
      "log.csv",
      "note, QUANTITY ,chip,Country,\" Entity \",date,Shipment_ID,pathway,order_id,exporter,tpp_per_unit\n"
      "n,10,H100-SXM,us,E1,2025-02-01,S1,,,V1,\n"
      "n,2,H100-SXM,CN,E2,2025-03-01,S2,LICENSE,,V2,\n"
      "n,1,H100-SXM,US,E1,2025-07-01,S3,,,,\n"
      "n,1,H100-SXM,US,E1,2025-02-01\n"
      "n,1,H100-SXM,US,E1,2025-02-30,R2,,,,\n"
      "n,0,H100-SXM,US,E1,2025-02-01,R3,,,,\n"
      "n,1,H100-SXM,ZZ,E1,2025-02-01,R4,,,,\n"
      "n,1,NO-SUCH-CHIP,US,E1,2025-02-01,R5,,,,\n"
      "n,1,H100-SXM,US,E1,2025-02-01,R6,LEASE,,,\n"
      "n,1,H100-SXM,US,E1,2025-02-01,S1,,,,\n"
      "n,9223372036854775807,H100-SXM,US,E1,2025-02-01,R8,,,,2\n"
      "n,1,H100-SXM,US,\"E1,2025-02-01,R9,,,,\n");
  const auto entities =
      write("entities.csv", "name,status,entity,hq_country,nveu_countries\nOne,NONE,E1,US,\n");
  const fs::path data     = capledger::test::datasets_dir();
  const std::string rules = (data / "rules" / "ai-diffusion-2025.json").string();
  const std::string flags = " --entities " + entities + " --rules " + rules + " --countries " +
                            (data / "countries.csv").string() + " --chips " + (data / "chips.csv").string() +
                            " --as-of 2025-06-30 --backend cpu --warn-at 0.8,0.9,0.95";
  // S2 ships to CN (tier 3): one violation, exit 1; nine rejects are not more than 9.
  const auto r = run("report " + log + flags + " --out result --rejects rejects.csv --max-rejects 9");
  ASSERT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(entries(work_ / "result"),
            (std::set<std::string>{"summary.json", "by_country.csv", "by_entity.csv", "by_entity_country.csv",
                                   "by_chip.csv", "by_exporter.csv", "uveu_shares.csv", "findings.csv"}));
  const auto header_of = [&](const std::string& file) {
    const std::string text = read_text(work_ / "result" / file);
    return text.substr(0, text.find('\n'));
  };
  EXPECT_EQ(header_of("by_country.csv"),
            "country,tier,records,units,tpp,h100_equiv,cap_pathway_tpp,cap_tpp,"
            "cap_used_pct,breach_date,breach_shipment_id");
  EXPECT_EQ(header_of("by_entity.csv"), "entity,status,hq_country,records,units,tpp,h100_equiv");
  EXPECT_EQ(header_of("by_entity_country.csv"), "entity,country,records,units,tpp");
  EXPECT_EQ(header_of("by_chip.csv"), "chip,records,units,tpp");
  EXPECT_EQ(header_of("by_exporter.csv"), "exporter,records,units,tpp");
  EXPECT_EQ(
      header_of("uveu_shares.csv"),
      "entity,hq_country,installed_tpp,tier1_share,us_share,max_tier2_country,max_tier2_share,compliant");
  EXPECT_EQ(header_of("findings.csv"),
            "severity,rule,entity,country,pathway,order_id,year,date,shipment_id,value,limit");
  // The mapped columns carried the values: E1 (NONE, HQ US) has S1 only, 10 x 15832.
  EXPECT_EQ(read_text(work_ / "result" / "by_entity.csv"),
            "entity,status,hq_country,records,units,tpp,h100_equiv\nE1,NONE,US,1,10,158320,10.00\n"
            "E2,NONE,,1,2,31664,2.00\n");

  // SPEC §5's summary.json fields; hashes and sizes by the system's own tools.
  const auto sha256_of = [&](const std::string& path) {
    const auto h = run_shell("sha256sum '" + path + "'");
    return h.out.substr(0, 64);
  };
  const json summary = json::parse(read_text(work_ / "result" / "summary.json"));
  EXPECT_EQ(summary["rule_set"]["id"], "ai-diffusion-2025");
  EXPECT_EQ(summary["rule_set"]["sha256"], sha256_of(rules));
  ASSERT_EQ(summary["inputs"].size(), 1U);
  EXPECT_EQ(summary["inputs"][0]["bytes"], fs::file_size(log));
  EXPECT_EQ(summary["inputs"][0]["sha256"], sha256_of(log));
  EXPECT_EQ(summary["as_of"], "2025-06-30");
  EXPECT_EQ(summary["backend"], "cpu");
  // 12 records read: S1, S2, S3 (after as_of) and nine rejected.
  EXPECT_EQ(summary["lines"]["read"], 12);
  EXPECT_EQ(summary["lines"]["used"], 2);
  EXPECT_EQ(summary["lines"]["rejected"], 9);
  // 10 x 15832 + 2 x 15832 = 189984, 12.00 H100s.
  EXPECT_EQ(summary["totals"],
            (json{{"records", 2}, {"units", 12}, {"tpp", 189984}, {"h100_equiv", "12.00"}}));
  EXPECT_EQ(summary["totals_by_tier"]["1"]["tpp"], 158320);
  EXPECT_EQ(summary["totals_by_tier"]["2"]["tpp"], 0);
  EXPECT_EQ(summary["totals_by_tier"]["3"]["tpp"], 31664);
  std::set<std::string> rules_counted;
  for (const auto& item : summary["findings"]["by_rule"].items()) { rules_counted.insert(item.key()); }
  EXPECT_EQ(rules_counted, (std::set<std::string>{"PROHIBITED_DESTINATION", "COUNTRY_CAP_EXCEEDED",
                                                  "LPP_ORDER_LIMIT", "LPP_ANNUAL_LIMIT", "NVEU_CAP_EXCEEDED",
                                                  "UNAUTHORIZED_PATHWAY", "UVEU_TIER2_SHARE",
                                                  "UVEU_TIER1_SHARE", "UVEU_US_SHARE", "CAP_NEAR_LIMIT"}));
  EXPECT_EQ(summary["findings"]["by_rule"]["PROHIBITED_DESTINATION"], 1);
  const auto version = run("--version");
  EXPECT_EQ(version.out, "capledger " + summary["version"].get<std::string>() + "\n");

  // SPEC §7: the rejects file's columns, one line of each reason, in input order.
  const auto rejects = parse_csv(read_text(work_ / "rejects.csv"));
  ASSERT_EQ(rejects.size(), 10U);
  EXPECT_EQ(rejects[0], (std::vector<std::string>{"file", "line", "column", "reason", "raw"}));
  const std::vector<std::string> reasons = {"WRONG_FIELD_COUNT", "BAD_DATE",     "BAD_QUANTITY",
                                            "UNKNOWN_COUNTRY",   "UNKNOWN_CHIP", "UNKNOWN_PATHWAY",
                                            "DUPLICATE_ID",      "TPP_OVERFLOW", "UNTERMINATED_QUOTE"};
  for (std::size_t k = 0; k < reasons.size(); ++k) {
    EXPECT_EQ(rejects[k + 1][1], std::to_string(k + 5));
    EXPECT_EQ(rejects[k + 1][3], reasons[k]) << "line " << k + 5;
  }
  // More than N rejected stops the run; nothing is written to --out.
  EXPECT_EQ(run("report " + log + flags + " --out stopped --rejects rejects.csv --max-rejects 8").exit_code,
            2);
  EXPECT_FALSE(fs::exists(work_ / "stopped"));
  // A missing required column is fatal even with --rejects.
  const auto no_quantity =
      write("no_quantity.csv", "shipment_id,date,entity,country,chip\nS1,2025-02-01,E1,US,B200\n");
  const auto missing = run("report --backend cpu " + no_quantity + " --rejects rejects.csv");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("MISSING_COLUMN"), std::string::npos) << missing.err;

  // Without --out: --format json is {"summary", "findings"}, csv is findings.csv.
  const auto as_json = run("report " + log + flags + " --rejects rejects.csv --format json");
  ASSERT_EQ(as_json.exit_code, 1) << as_json.err;
  const json doc = json::parse(as_json.out);
  EXPECT_EQ(doc["summary"], summary);
  EXPECT_EQ(doc["findings"].size(), 1U);
  const auto as_csv = run("report " + log + flags + " --rejects rejects.csv --format csv");
  ASSERT_EQ(as_csv.exit_code, 1) << as_csv.err;
  EXPECT_EQ(as_csv.out, read_text(work_ / "result" / "findings.csv"));
  const auto as_table = run("report " + log + flags + " --rejects rejects.csv --format table");
  EXPECT_EQ(as_table.exit_code, 1) << as_table.err;
  EXPECT_FALSE(as_table.out.empty());
}

}  // namespace

TEST_F(Cli, BundledSampleGivesTheHandComputedFindings)
{
  // datasets/sample was written to break most rules; every figure below is worked out by hand:
  // AE: 20,000 + 20,000 H100-SXM (15,832) = 633,280,000, then S0003 10,000 H200-SXM (15,832)
  //     -> 791,600,000 > 790,000,000 (S0004's return comes after the crossing).
  // SMALLCO LPP order O-1: 1,000 + 800 H100-SXM = 28,497,600 > 26,900,000 (order and year 2025).
  // GULFAI NVEU AE: 40,000 x 15,832 = 633,280,000 > 633,000,000 (2025 phase); NVEU to IN is not
  //     authorized: 100 MI300X x 20,919 = 2,091,900.
  // ACME-AE to CN: 10 H20 x 2,368 = 23,680.
  // HYPERSCALE-US: MY 10,000 / 110,000 B200 = 0.090909 > 0.07.
  // SA: 40,000 x 15,832 = 633,280,000 >= 0.8 x 790,000,000 = 632,000,000, < 0.9 x cap.
  const std::string dir = sample_dir().string();
  const auto r = run("report --backend cpu " + dir + "/shipments.csv --entities " + dir + "/entities.csv --out result");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(read_text(work_ / "result" / "findings.csv"),
            "severity,rule,entity,country,pathway,order_id,year,date,shipment_id,value,limit\n"
            "violation,COUNTRY_CAP_EXCEEDED,,AE,,,,2025-04-01,S0003,791600000,790000000\n"
            "violation,LPP_ANNUAL_LIMIT,SMALLCO,,,,2025,2025-05-03,S0006,28497600,26900000\n"
            "violation,LPP_ORDER_LIMIT,SMALLCO,IN,,O-1,,2025-05-03,S0006,28497600,26900000\n"
            "violation,NVEU_CAP_EXCEEDED,GULFAI,AE,,,,2025-06-01,S0007,633280000,633000000\n"
            "violation,PROHIBITED_DESTINATION,ACME-AE,CN,,,,2025-08-01,S0011,23680,\n"
            "violation,UNAUTHORIZED_PATHWAY,GULFAI,IN,NVEU,,,2025-06-02,S0008,2091900,\n"
            "violation,UVEU_TIER2_SHARE,HYPERSCALE-US,MY,,,,,,0.090909,0.070000\n"
            "warning,CAP_NEAR_LIMIT,,SA,,,,,,633280000,632000000\n");
}

// Text from input files reaches the analyst's terminal escaped (README "What people read"): a
// value naming itself `ESC[2K` (erase line), NUL, U+009B (CSI), U+202E (right-to-left override),
// a byte that is no UTF-8, or with a backslash or a line break, cannot hide or reorder a line.
namespace {

const std::string terminal_header = "shipment_id,date,entity,country,chip,quantity,pathway,tpp_per_unit\n";
/// An entity of ESC [2K, NUL, U+009B, U+202E and a backslash (logs are UTF-8: no bad byte here).
const std::string hostile_entity("E\x1b[2K\0\xc2\x9b\xe2\x80\xae\\x", 13);
const std::string hostile_entity_shown = "E\\x1b[2K\\x00\\u009b\\u202e\\\\x";
/// A value with all of the above, a byte that is no UTF-8 and a line break (a quoted field).
const std::string hostile_field("X\x1b[2K\0\xc2\x9b\xe2\x80\xae\xff\\\nY", 15);
const std::string hostile_field_shown = "X\\x1b[2K\\x00\\u009b\\u202e\\xff\\\\\\x0aY";

/// Whether @p text holds a byte a terminal acts on, other than `\n`: C0, DEL, or the UTF-8 of
/// U+009B and U+202E.
bool holds_terminal_controls(const std::string& text)
{
  for (const char c : text) {
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\n') || c == 0x7f) { return true; }
  }
  return text.find("\xc2\x9b") != std::string::npos || text.find("\xe2\x80\xae") != std::string::npos;
}

}  // namespace

TEST_F(Cli, TableViewEscapesInputText)
{
  // 3 units at tpp 7 to CN (tier 3): one PROHIBITED_DESTINATION of 21.
  const auto log = write("log.csv", terminal_header +
                                        "S\xe2\x80\xae"
                                        "1,2025-03-01," +
                                        hostile_entity + ",CN,H100-SXM,3,,7\n");
  const auto r   = run("report --backend cpu " + log);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.out.find("\n  violation  PROHIBITED_DESTINATION  entity=" + hostile_entity_shown +
                       "  country=CN  date=2025-03-01  shipment=S\\u202e1  value=21\n"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(holds_terminal_controls(r.out)) << r.out;
}

TEST_F(Cli, StderrMessagesEscapeInputText)
{
  // Field 4 opens with its quote at byte 18 of line 2; the value's line break would otherwise
  // start a line of its own.
  const auto country =
      write("country.csv", terminal_header + "S1,2025-03-01,E1,\"" + hostile_field + "\",H100-SXM,3,,7\n");
  const auto r = run("report --backend cpu " + country);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "capledger: " + country + ":2:18: UNKNOWN_COUNTRY: '" + hostile_field_shown +
                       "' is not in the countries table\n");

  // The same value as a chip, rejected: the note on stderr is escaped, the rejects file's raw
  // column keeps the line's bytes.
  const std::string line = "S1,2025-03-01,E1,AE,\"" + hostile_field + "\",3,,";
  const auto chip        = write("chip.csv", terminal_header + line + "\n");
  const auto rejected    = run("report --backend cpu --rejects rejects.csv " + chip);
  EXPECT_EQ(rejected.exit_code, 0) << rejected.err;
  EXPECT_NE(rejected.err.find("capledger: rejected " + chip + ":2:21: UNKNOWN_CHIP: '" + hostile_field_shown +
                              "' is not in the chips table and the line has no tpp_per_unit\n"),
            std::string::npos)
      << rejected.err;
  EXPECT_FALSE(holds_terminal_controls(rejected.err)) << rejected.err;
  const auto rows = parse_csv(read_text(work_ / "rejects.csv"));
  ASSERT_EQ(rows.size(), 2U);
  EXPECT_EQ(rows[1][4], line);

  // A message no value builder quoted (a path given on the command line) passes stderr's guard:
  // controls escaped, its backslash left as it is.
  const auto missing = run("report --backend cpu 'no\x1b[2K\xc2\x9b\xe2\x80\xae\xff\\x.csv'");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(missing.err.rfind("capledger: no\\x1b[2K\\u009b\\u202e\\xff\\x.csv: ", 0), 0U) << missing.err;
}

// Data outputs are data: the files under --out, `--format csv` and `--format json` (JSON escapes
// the C0 controls itself), the balances, check and reconcile CSV keep the input's bytes.
TEST_F(Cli, DataOutputsKeepInputBytes)
{
  const std::string id =
      "S\xe2\x80\xae"
      "1";
  const auto log =
      write("log.csv", terminal_header + id + ",2025-03-01," + hostile_entity + ",AE,H100-SXM,3,LPP,7\n");
  const auto entity_row = [&](const std::string& csv, std::size_t column) {
    for (const auto& row : parse_csv(csv)) {
      if (row.size() > column && row[column] == hostile_entity) { return true; }
    }
    return false;
  };
  ASSERT_EQ(run("report --backend cpu --out out " + log).exit_code, 0);
  EXPECT_TRUE(entity_row(read_text(work_ / "out" / "by_entity.csv"), 0));
  EXPECT_TRUE(entity_row(read_text(work_ / "out" / "by_entity_country.csv"), 0));

  // A finding to CN, in CSV and JSON on stdout.
  const auto prohibited =
      write("cn.csv", terminal_header + id + ",2025-03-01," + hostile_entity + ",CN,H100-SXM,3,,7\n");
  const auto csv = run("report --backend cpu --format csv " + prohibited);
  EXPECT_TRUE(entity_row(csv.out, 2)) << csv.out;
  EXPECT_NE(csv.out.find("," + id + ",21,"), std::string::npos) << csv.out;
  const auto as_json = run("report --backend cpu --format json " + prohibited);
  const json report  = json::parse(as_json.out);
  EXPECT_EQ(report["findings"][0]["entity"], hostile_entity);
  EXPECT_EQ(report["findings"][0]["shipment_id"], id);
  EXPECT_NE(as_json.out.find("\"E\\u001b[2K\\u0000\xc2\x9b\xe2\x80\xae\\\\x\""), std::string::npos)
      << as_json.out;

  // The ledger's CSV views; its balances table escapes.
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  ASSERT_EQ(run("ledger ingest l.db " + log).exit_code, 0);
  EXPECT_TRUE(entity_row(run("ledger balances l.db --format csv").out, 1));
  const auto table = run("ledger balances l.db");
  EXPECT_NE(table.out.find("\nLPP_ANNUAL   " + hostile_entity_shown + "  "), std::string::npos) << table.out;
  EXPECT_FALSE(holds_terminal_controls(table.out)) << table.out;
  const auto proposed =
      write("p.csv", terminal_header + "P1,2025-03-02," + hostile_entity + ",AE,H100-SXM,1,LPP,7\n");
  EXPECT_TRUE(entity_row(run("check l.db --proposed " + proposed).out, 3));
  const auto inventory =
      write("inventory.csv", "entity,country,chip,units\n" + hostile_entity + ",AE,H100-SXM,3\n");
  EXPECT_TRUE(entity_row(run("reconcile l.db --inventory " + inventory).out, 0));
}

// An order_id an export wrote as `NULL` joins every LPP line so written into one order (SPEC: the
// order is the order_id): where that order crosses the per-order limit (26,900,000: two lines of
// 1,000 H100-SXM, 31,664,000, of two consignees each under their annual limit), stderr says why;
// a real order id crossing it is a plain finding, and a placeholder that crosses nothing is not noted.
TEST_F(Cli, APlaceholderOrderIdCrossingItsLimitIsNoted)
{
  const std::string lpp_header = "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n";
  const auto log               = write("lpp.csv", lpp_header +
                                                      "A1,2025-03-01,E1,AE,H100-SXM,1000,LPP,NULL\n"
                                                                    "A2,2025-03-02,E2,AE,H100-SXM,1000,LPP, NULL \n"
                                                                    "A3,2025-03-02,E3,AE,H100-SXM,1000,LPP,ORD-7\n"
                                                                    "A4,2025-03-02,E4,AE,H100-SXM,1000,LPP,ORD-7\n"
                                                                    "A5,2025-03-02,E5,AE,H100-SXM,1,LPP,N/A\n"
                                                                    "A6,2025-03-03,E6,AE,H100-SXM,1000,LPP,none\n"
                                                                    "A7,2025-03-03,E7,AE,H100-SXM,1000,LPP,none\n");
  const run_result r           = run("report --backend cpu " + log + " --format csv");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.out.find("violation,LPP_ORDER_LIMIT,E2,AE,,NULL,,2025-03-02,A2,31664000,26900000\n"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(
      r.err,
      "capledger: note: LPP_ORDER_LIMIT of order_id 'NULL': every LPP line with that order_id counts as one "
      "order; an empty order_id is the line's own shipment_id\n"
      "capledger: note: LPP_ORDER_LIMIT of order_id 'none': every LPP line with that order_id counts as one "
      "order; an empty order_id is the line's own shipment_id\n");
}

// A shipment_id a spreadsheet wrote in scientific notation lost digits; the findings that cite one
// are counted in one note naming the first listed (findings sort by rule, then entity). An id so
// written that no finding cites, and a finding with a plain id, are not counted.
TEST_F(Cli, FindingsCitingIdsInScientificNotationAreNoted)
{
  const auto log     = write("sci.csv", header +
                                            "1.23457E+11,2025-03-01,E1,BY,H100-SXM,1\n"
                                                "S2,2025-03-01,E2,BY,H100-SXM,1\n"
                                                "2.5e+10,2025-03-02,E3,AF,H100-SXM,1\n"
                                                "7.1E+11,2025-03-02,E4,US,H100-SXM,1\n");
  const run_result r = run("report --backend cpu " + log + " --format csv");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.out.find("violation,PROHIBITED_DESTINATION,E1,BY,,,,2025-03-01,1.23457E+11,"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(
      r.err,
      "capledger: note: 2 findings name a shipment_id in scientific notation (first listed: "
      "'1.23457E+11', PROHIBITED_DESTINATION): a spreadsheet writes a long number so and drops its last "
      "digits, so the source system may know the shipment by another id; export the column as text\n");
  // One such finding says so in the singular.
  const run_result one = run("report --backend cpu " + log + " --as-of 2025-03-01 --format csv");
  EXPECT_NE(one.err.find("capledger: note: 1 finding names a shipment_id"), std::string::npos) << one.err;
}

// One consignee written two ways stays two entities (SPEC §1.2), and every command that matches
// lines to entities says so on stderr, never in its outputs; the exit code is the rules' alone.
TEST_F(Cli, EntityIdsWrittenAlikeAreNotedOnStderr)
{
  const auto entities = write("e.csv", "entity,hq_country,status,nveu_countries\nACME Corp,US,UVEU,\n");
  const auto log      = write("log.csv", header +
                                             "S1,2025-02-01,Acme Corp,US,H100-SXM,10\n"
                                                  "S2,2025-03-01,ACME Corp,US,H100-SXM,20\n");
  const std::string note =
      "capledger: note: entity 'ACME Corp' (entities file) is also written 'Acme Corp': counted as separate "
      "entities (entity ids match exactly)\n";
  const auto r = run("report --backend cpu " + log + " --entities " + entities + " --out o");
  EXPECT_EQ(r.exit_code, 0) << r.err;  // tier-1 LICENSE lines, a compliant UVEU: no finding
  EXPECT_EQ(r.err, note + "capledger: wrote 8 files to o\n");
  for (const auto& name : output_files) {
    EXPECT_EQ(read_text(work_ / "o" / name).find("note"), std::string::npos) << name;
  }

  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  ASSERT_EQ(run("ledger ingest l.db " + log + " --entities " + entities).exit_code, 0);
  for (const std::string command : {"ledger report l.db", "ledger report l.db --replay"}) {
    const auto lr = run(command);
    EXPECT_EQ(lr.exit_code, 0) << command << ": " << lr.err;
    EXPECT_NE(lr.err.find(note), std::string::npos) << command << ": " << lr.err;
    EXPECT_EQ(lr.out.find("note"), std::string::npos) << command;
  }
  // A proposed line to a variant of the UVEU: check names the proposed spelling first, then the
  // others, each marked with every place it is written.
  const auto proposed = write("p.csv", header + "P1,2025-04-01,acme corp,US,H100-SXM,1\n");
  const auto c        = run("check l.db --proposed " + proposed);
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_NE(c.err.find("capledger: note: entity 'acme corp' (proposed) is also written 'ACME Corp' (entities "
                       "file, ledger), 'Acme Corp' (ledger): counted as separate entities (entity ids match "
                       "exactly)\n"),
            std::string::npos)
      << c.err;
  EXPECT_EQ(c.out.find("note"), std::string::npos);
}

// What a vendor checks before a shipment leaves: the ledger says 'Acme Corp', the proposed line
// 'ACME Corp', so its consignee total is weighed apart from the stored ones. check says so from the
// running state and from a replay alike, and names no group that no proposed line's id is in.
TEST_F(Cli, CheckNotesAProposedVariantOfAStoredEntityOnly)
{
  const auto entities = write("e.csv",
                              "entity,hq_country,status,nveu_countries\n"
                              "Zeta Ltd,US,NONE,\nZETA LTD,US,NONE,\n");
  const auto log      = write("log.csv", header +
                                             "S1,2025-02-01,Acme Corp,US,H100-SXM,10\n"
                                                  "S2,2025-02-02,Beta,US,H100-SXM,1\n"
                                                  "S3,2025-02-03,BETA,US,H100-SXM,1\n");
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  ASSERT_EQ(run("ledger ingest l.db " + log + " --entities " + entities).exit_code, 0);
  const std::string state  = "capledger: check: running state of 3 line(s)\n";
  const std::string replay = "capledger: check: replay (--replay)\n";

  const auto variant = write("p.csv", header +
                                          "P1,2025-04-01,ACME Corp,US,H100-SXM,1\n"
                                          "P2,2025-04-01,E9,US,H100-SXM,1\n");
  const std::string note =
      "capledger: note: entity 'ACME Corp' (proposed) is also written 'Acme Corp' "
      "(ledger): counted as separate entities (entity ids match exactly)\n";
  const std::string tail2 = "capledger: 2 proposed line(s), 0 breach(es)\n";
  EXPECT_EQ(run("check l.db --proposed " + variant).err, state + note + tail2);
  EXPECT_EQ(run("check l.db --replay --proposed " + variant).err, replay + note + tail2);

  // The stored spelling itself: one id, no note.
  const auto same         = write("q.csv", header + "P1,2025-04-01,Acme Corp,US,H100-SXM,1\n");
  const std::string tail1 = "capledger: 1 proposed line(s), 0 breach(es)\n";
  EXPECT_EQ(run("check l.db --proposed " + same).err, state + tail1);
  EXPECT_EQ(run("check l.db --replay --proposed " + same).err, replay + tail1);
}

// The nightly views split a consignee written two ways as `ledger report` does, so they note it as
// it does: `ledger balances` over the stored lines' and the entities file's ids, `reconcile` over
// the inventory's too (marked), from the running state and a replay alike; stderr only.
TEST_F(Cli, BalancesAndReconcileNoteEntityIdsWrittenAlike)
{
  // The entities file's spelling sorts last in byte order, yet comes first. 'Acme Corp.' and
  // 'AcmeCorp' differ beyond case, blanks and invisible characters: no part of the note.
  const auto entities = write("e.csv", "entity,hq_country,status,nveu_countries\nacme corp,US,NONE,\n");
  const auto log      = write("log.csv", header +
                                             "S1,2025-02-01,ACME Corp,US,H100-SXM,10\n"
                                                  "S2,2025-02-02,Acme  Corp,US,H100-SXM,5\n"
                                                  "S3,2025-03-01,Acme Corp.,US,H100-SXM,1\n"
                                                  "S4,2025-03-01,AcmeCorp,US,H100-SXM,1\n");
  ASSERT_EQ(run("ledger init l.db").exit_code, 0);
  ASSERT_EQ(run("ledger ingest l.db " + log + " --entities " + entities).exit_code, 0);
  const std::string tail = ": counted as separate entities (entity ids match exactly)\n";
  const std::string note =
      "capledger: note: entity 'acme corp' (entities file) is also written 'ACME Corp', "
      "'Acme  Corp'" +
      tail;
  EXPECT_NE(run("ledger report l.db").err.find(note), std::string::npos);

  const auto state  = run("ledger balances l.db --format csv");
  const auto replay = run("ledger balances l.db --format csv --replay");
  EXPECT_EQ(state.exit_code, 0);
  EXPECT_EQ(state.err, "capledger: ledger balances: running state of 4 line(s)\n" + note);
  EXPECT_EQ(replay.err, "capledger: ledger balances: replay (--replay)\n" + note);
  EXPECT_EQ(state.out, replay.out);
  EXPECT_EQ(state.out.find("note"), std::string::npos);
  // Every stored id, as `ledger report --as-of` names them: also those of lines after as_of.
  EXPECT_NE(run("ledger balances l.db --as-of 2025-02-01").err.find(note), std::string::npos);

  // The inventory's ids join the groups, marked, after the ledger's: 'Acme  Corp' is both the
  // ledger's and the inventory's, 'ACME CORP' the inventory's alone; 'ZED' and 'Zed' are a group
  // of the inventory alone.
  const auto inventory =
      write("inventory.csv",
            "entity,country,chip,units\nACME CORP,US,H100-SXM,10\nAcme  Corp,US,H100-SXM,5\n"
            "Zed,US,H100-SXM,0\nZED,US,B200,0\n");
  const std::string notes =
      "capledger: note: entity 'acme corp' (entities file) is also written 'ACME Corp', "
      "'Acme  Corp' (inventory), 'ACME CORP' (inventory)" +
      tail + "capledger: note: entity 'ZED' (inventory) is also written 'Zed' (inventory)" + tail;
  const std::string summary = "reconciliation: 7 key(s): 3 match, 3 shortfall, 0 surplus, 1 unshipped\n";
  const auto r              = run("reconcile l.db --inventory " + inventory);
  EXPECT_EQ(r.exit_code, 1);  // the unshipped and shortfall rows
  EXPECT_EQ(r.err, "capledger: reconcile: running state of 4 line(s)\n" + notes + summary);
  EXPECT_EQ(r.out.find("note"), std::string::npos);
  const auto to_dir = run("reconcile l.db --replay --inventory " + inventory + " --out rec");
  EXPECT_EQ(to_dir.exit_code, 1);
  EXPECT_EQ(to_dir.out, summary);
  EXPECT_EQ(to_dir.err, "capledger: reconcile: replay (--replay)\n" + notes +
                            "capledger: wrote reconciliation.csv and summary.json to rec\n");
  for (const char* name : {"reconciliation.csv", "summary.json"}) {
    EXPECT_EQ(read_text(work_ / "rec" / name).find("note"), std::string::npos) << name;
  }

  // Ids alike only beyond the rule: no note on either command.
  const auto apart = write("apart.csv", header + "S1,2025-02-01,Acme Corp.,US,H100-SXM,1\n");
  ASSERT_EQ(run("ledger init m.db").exit_code, 0);
  ASSERT_EQ(run("ledger ingest m.db " + apart + " --entities " + entities).exit_code, 0);
  const auto beyond = write("beyond.csv", "entity,country,chip,units\nAcmeCorp,US,H100-SXM,1\n");
  EXPECT_EQ(run("ledger balances m.db").err, "capledger: ledger balances: running state of 1 line(s)\n");
  EXPECT_EQ(run("ledger balances m.db --replay").err, "capledger: ledger balances: replay (--replay)\n");
  EXPECT_EQ(run("reconcile m.db --inventory " + beyond).err,
            "capledger: reconcile: running state of 1 line(s)\n"
            "reconciliation: 2 key(s): 0 match, 1 shortfall, 0 surplus, 1 unshipped\n");
  EXPECT_EQ(run("reconcile m.db --replay --inventory " + beyond).err,
            "capledger: reconcile: replay (--replay)\n"
            "reconciliation: 2 key(s): 0 match, 1 shortfall, 0 surplus, 1 unshipped\n");
}

namespace {

// CLI11 gives a flag whose value is missing the next argument: `--out --rejects` (a script's
// empty $OUT) wrote a report folder named `--rejects` and exited 0.
TEST_F(Cli, AFlagIsNotTakenForAMissingFileName)
{
  write("log.csv", clean_log);
  for (const std::string args : {"--out --rejects", "--rejects --out", "--entities --out x"}) {
    const run_result r = run("report --backend cpu log.csv " + args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_EQ(r.out, "") << args;
    EXPECT_NE(r.err.find("' is a flag, not a file name: the value is missing"), std::string::npos) << r.err;
    EXPECT_EQ(entries(work_), std::set<std::string>{"log.csv"}) << args;
  }
  // '-' alone is stdin, still a name.
  EXPECT_EQ(
      run("report --backend cpu log.csv --entities -", (sample_dir() / "entities.csv").string()).exit_code,
      0);
}

// Counts are decimal: CLI11 alone read `--max-rejects 010` as octal 8 and refused `08`.
TEST_F(Cli, CountsAreDecimalWithLeadingZeros)
{
  std::string log = header;
  for (int i = 1; i <= 9; ++i) { log += "B" + std::to_string(i) + ",2025-02-01,E1,US,H100-SXM,0\n"; }
  write("nine.csv", log);
  EXPECT_EQ(run("report --backend cpu nine.csv --rejects r.csv --max-rejects 010").exit_code, 0);  // 9 <= 10
  EXPECT_EQ(run("report --backend cpu nine.csv --rejects r.csv --max-rejects 08").exit_code, 2);   // 9 > 8
  EXPECT_EQ(run("report --backend cpu nine.csv --rejects r.csv --max-rejects 0x10").exit_code, 2);
  // Refused on a clean log, where any limit taken would let the run pass.
  write("clean.csv", clean_log);
  for (const std::string value : {"+5", "-0", "''", "' 5'", "9223372036854775808"}) {
    EXPECT_EQ(run("report --backend cpu clean.csv --rejects r.csv --max-rejects " + value).exit_code, 2)
        << value;
  }
  EXPECT_EQ(run("report --backend cpu nine.csv --rejects r.csv --max-rejects 9223372036854775807").exit_code,
            0);
  // --seed alone spans 64 bits.
  EXPECT_EQ(run("generate --records 1 --seed 18446744073709551615 --out g").exit_code, 0);
  EXPECT_EQ(run("generate --records 1 --seed 18446744073709551616 --out h").exit_code, 2);
  EXPECT_EQ(run("generate --records 1 --entities 9223372036854775808 --out h").exit_code, 2);
}

// generate checks every number before it makes its folder: a refused run left an empty log behind,
// a seed past 64 bits or below 0 was taken for 2^64 - 1, and an empty --records for 0.
TEST_F(Cli, GenerateRefusesBadNumbersBeforeWritingAnything)
{
  for (const std::string args :
       {"--records -1", "--records ''", "--records 5 --force-breaches", "--records 5 --seed -1",
        "--records 5 --seed 99999999999999999999", "--records 5 --seed ''",
        "--records 5 --returns-per-mille 2000", "--records 5 --first-day ''"}) {
    const run_result r = run("generate --out g " + args);
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.err;
    EXPECT_TRUE(entries(work_).empty()) << args;
  }
  ASSERT_EQ(run("generate --out g --records 010").exit_code, 0);
  const std::string lines = read_text(work_ / "g" / "shipments.csv");
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 11);  // header and 10 lines
}

// --version answers on every command as --help does; an unknown command is named.
TEST_F(Cli, VersionOnEveryCommandAndUnknownCommandsNamed)
{
  for (const std::string command : {"", "report", "ledger", "ledger init", "check", "generate"}) {
    const run_result r = run(command + " --version");
    EXPECT_EQ(r.exit_code, 0) << command << ": " << r.err;
    EXPECT_EQ(r.out.rfind("capledger ", 0), 0U) << command << ": " << r.out;
  }
  const run_result top = run("frobnicate");
  EXPECT_EQ(top.exit_code, 2);
  EXPECT_EQ(top.err.rfind("capledger: 'frobnicate' is not a command (one of: report ledger", 0), 0U)
      << top.err;
  const run_result ledger = run("ledger frob x.db");
  EXPECT_EQ(ledger.exit_code, 2);
  EXPECT_EQ(ledger.err.rfind("capledger: 'frob' is not a command (one of: init ingest", 0), 0U) << ledger.err;
  EXPECT_TRUE(entries(work_).empty());
}

// A flag given twice is refused (which value was meant would be a guess) in words, not CLI11's
// "--rules: At Most 1 required but received 2"; nothing is written.
TEST_F(Cli, FlagGivenTwiceIsSaidToBe)
{
  write("log.csv", clean_log);
  for (const std::string& args :
       {std::string("report log.csv --as-of 2025-03-01 --as-of 2025-12-01 --out out"),
        std::string("generate --records 5 --out out --out other")}) {
    const run_result r = run(args);
    EXPECT_EQ(r.exit_code, 2) << args;
    const std::string flag = args.rfind("report", 0) == 0 ? "--as-of" : "--out";
    EXPECT_EQ(r.err, "capledger: " + flag +
                         " is given 2 times: give it once (which value was meant would be a guess)\n"
                         "Run with --help for more information.\n")
        << args;
  }
  EXPECT_EQ(entries(work_), (std::set<std::string>{"log.csv"}));
}

}  // namespace
