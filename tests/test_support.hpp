/// @file test_support.hpp
/// @brief Helpers every test file shares: scratch directories and whole-file reads and writes.
#pragma once

#include <capledger/backend.hpp>
#include <capledger/generate.hpp>
#include <capledger/report.hpp>
#include <capledger/shipments.hpp>

#include "device_read.hpp"

#include <gtest/gtest.h>

#include <omp.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace capledger::test {

namespace fs = std::filesystem;

/// @brief Whether this build runs under AddressSanitizer or ThreadSanitizer (the house's ASan and
/// TSan builds): their shadow memory needs terabytes of address space, so a test that limits it
/// (`ulimit -v`) checks the sanitizer, not capledger, and skips.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool under_sanitizer = true;
#else
inline constexpr bool under_sanitizer = false;
#endif

/// @brief The repository's `datasets/` folder: the bundled reference tables and the sample log.
inline fs::path datasets_dir()
{
  return (fs::path(CAPLEDGER_TEST_DATA_DIR) / ".." / ".." / "datasets").lexically_normal();
}

/// @brief The bundled sample log's folder (`shipments.csv`, `entities.csv`).
inline fs::path sample_dir()
{
  return datasets_dir() / "sample";
}

/// @brief The bundled reference tables (loaded once).
inline const reference_data& bundled()
{
  static const reference_data ref = load_reference(report_options{});
  return ref;
}

/// @brief The whole content of @p path ("" when it cannot be read).
inline std::string read_text(const fs::path& path)
{
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

/// @brief Writes @p text to @p path, replacing it.
inline void write_text(const fs::path& path, const std::string& text)
{
  std::ofstream(path, std::ios::binary) << text;
}

/// @brief A generated log (`capledger generate`'s shipments and entities) over the bundled tables.
struct generated_log {
  std::string shipments;
  std::string entities;
};
inline generated_log generate_with_bundled(std::int64_t records, std::uint64_t seed,
                                           bool force_breaches = false)
{
  generate_options options;
  options.records        = records;
  options.seed           = seed;
  options.force_breaches = force_breaches;
  std::ostringstream shipments, entities;
  generate_log(options, bundled().countries, bundled().chips, bundled().rules, shipments, entities);
  return {shipments.str(), entities.str()};
}

/// @brief `ingest_options::read_ahead` as the GPU ingest sets it, computed on this core
/// (`detail::read_ahead_on_host`), counting the lines it read. @p change, when given, alters each
/// line read (to show that the builder takes those values).
class host_read_ahead {
 public:
  explicit host_read_ahead(const country_table& countries, const chip_table& chips,
                           std::function<void(device_csv::plain_line&)> change = {})
      : tables_(std::make_shared<device_csv::tables>(*detail::make_device_tables(countries, chips))),
        change_(std::move(change))
  {
  }
  [[nodiscard]] auto function() const
  {
    return [tables = tables_, plain = plain_, change = change_](
               std::string_view text, std::size_t from, std::size_t to, const device_csv::line_layout& layout,
               detail::lines_read_ahead& out) {
      detail::read_ahead_on_host(text, from, to, layout, *tables, out);
      *plain += static_cast<std::int64_t>(out.size());
      if (change) {
        for (auto& line : out.values) { change(line); }
      }
    };
  }
  /// @brief Lines read ahead as plain so far (a line read twice counts twice).
  [[nodiscard]] std::int64_t plain_lines() const { return *plain_; }

 private:
  std::shared_ptr<const device_csv::tables> tables_;
  std::shared_ptr<std::atomic<std::int64_t>> plain_ = std::make_shared<std::atomic<std::int64_t>>(0);
  std::function<void(device_csv::plain_line&)> change_;
};

/// @brief A fresh folder under the system temp directory, removed with its content at scope exit.
class scratch_dir {
 public:
  explicit scratch_dir(const std::string& tag = "capledger_test")
  {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            (tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~scratch_dir()
  {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  scratch_dir(const scratch_dir&)            = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  [[nodiscard]] const fs::path& root() const noexcept { return path_; }
  /// @brief Path of @p name inside the folder, as a string.
  [[nodiscard]] std::string path(const std::string& name) const { return (path_ / name).string(); }
  /// @brief Writes @p text into @p name inside the folder and returns its path.
  std::string write(const std::string& name, const std::string& text) const
  {
    write_text(path_ / name, text);
    return path(name);
  }

 private:
  fs::path path_;
};

/// @brief A finding as its `findings.csv` row:
/// `severity,rule,entity,country,pathway,order_id,year,date,shipment_id,value,limit`.
inline std::string row_of(const finding& f)
{
  return f.severity + "," + f.rule + "," + f.entity + "," + f.country + "," + f.pathway + "," + f.order_id + "," +
         f.year + "," + f.date + "," + f.shipment_id + "," + f.value + "," + f.limit;
}

/// @brief The rows (as `row_of`) of @p out's findings of @p rule, in report order.
inline std::vector<std::string> findings_of(const report_output& out, const std::string& rule)
{
  std::vector<std::string> rows;
  for (const auto& f : out.checks.findings) {
    if (f.rule == rule) { rows.push_back(row_of(f)); }
  }
  return rows;
}

/// @brief (file name, file text) pairs, ingested in order as one run's inputs.
using file_list = std::vector<std::pair<std::string, std::string>>;

/// @brief Base of the tests that run once per way of computing a report: "cpu" and "gpu"
/// backends over the log's columns, and "stream" (the CPU aggregating as the log streams past,
/// what `capledger report --backend cpu` runs). The GPU case skips with a message where no GPU
/// is usable.
class backend_test : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override
  {
    if (GetParam() == "gpu") {
      std::string why;
      if (!gpu_available(&why)) { GTEST_SKIP() << "no usable GPU: " << why; }
    }
    engine_ = select_backend(cli_backend(), std::cerr);
  }

  /// @brief The `--backend` value that runs this test's way (`report --backend cpu` streams).
  [[nodiscard]] std::string cli_backend() const { return GetParam() == "stream" ? "cpu" : GetParam(); }

  /// @brief The report of @p files (ingested fail-fast) on this test's backend.
  report_output report_of(const reference_data& ref, const file_list& files, const report_options& options = {})
  {
    if (GetParam() == "stream") {
      std::vector<rejected_line> rejects;
      return stream_report(
          ref, options, ingest_options{},
          [&](shipment_log_builder& builder) {
            for (const auto& [name, text] : files) { builder.add_text(name, text); }
          },
          rejects);
    }
    shipment_log_builder builder(ref.countries, ref.chips, ingest_options{});
    for (const auto& [name, text] : files) { builder.add_text(name, text); }
    const shipment_log log = builder.finish();
    return build_report(ref, log, options, *engine_);
  }

  std::unique_ptr<backend> engine_;
};

/// @brief While it lives, `$TMPDIR` is a scratch folder of its own (the old value restored after),
/// where it counts the temporary files this process holds open: they are unlinked as they are
/// made (`detail::anonymous_temp_file`: O_TMPFILE's `#123 (deleted)` or an unlinked
/// `capledger-XXXXXX`), so only /proc/self/fd still names them.
class temporary_files_watch {
 public:
  temporary_files_watch()
  {
    if (const char* before = std::getenv("TMPDIR")) { saved_ = before; }
    ::setenv("TMPDIR", dir_.root().c_str(), 1);
  }
  ~temporary_files_watch()
  {
    if (saved_) {
      ::setenv("TMPDIR", saved_->c_str(), 1);
    } else {
      ::unsetenv("TMPDIR");
    }
  }
  temporary_files_watch(const temporary_files_watch&)            = delete;
  temporary_files_watch& operator=(const temporary_files_watch&) = delete;

  /// @brief capledger's temporary files open in the folder now.
  [[nodiscard]] std::size_t open_files() const
  {
    const std::string prefix = dir_.root().string() + "/";
    std::size_t open         = 0;
    std::error_code ec;
    for (const auto& fd : fs::directory_iterator("/proc/self/fd", ec)) {
      const fs::path target = fs::read_symlink(fd.path(), ec);
      if (!ec && target.string().rfind(prefix, 0) == 0) { ++open; }
    }
    return open;
  }

 private:
  scratch_dir dir_{"capledger_tmpdir"};
  std::optional<std::string> saved_;
};

/// @brief Restores OpenMP's thread count when a test that sets it ends, however it ends.
struct openmp_threads_restored {
  int threads = omp_get_max_threads();
  ~openmp_threads_restored() { omp_set_num_threads(threads); }
};

}  // namespace capledger::test
