/// @file chunked_ingest_test.cpp
/// @brief The parallel ingest reads a log in chunks: whatever the chunk size, the log, its
/// dictionaries, its rejects (line, column, raw text) and its first error are the same.
#include <capledger/calendar.hpp>
#include <capledger/error.hpp>
#include <capledger/reference.hpp>
#include <capledger/shipments.hpp>

#include <gtest/gtest.h>
#include <omp.h>

#include "test_support.hpp"

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace capledger;

const country_table& countries()
{
  static const country_table table =
      load_countries((capledger::test::datasets_dir() / "countries.csv").string());
  return table;
}

const chip_table& chips()
{
  static const chip_table table = load_chips((capledger::test::datasets_dir() / "chips.csv").string());
  return table;
}

/// A log of @p lines lines with every kind of trouble a seam can fall into: quoted fields with
/// line breaks and doubled quotes, CRLF, blank lines, padding, repeated ids, ad-hoc chips, bad
/// lines of every per-line reason, and a BOM.
std::string troubled_log(int lines, unsigned seed)
{
  std::mt19937 random(seed);
  const auto pick = [&](int n) { return static_cast<int>(random() % static_cast<unsigned>(n)); };
  const char* countries_used[] = {"AE", "de", "IN", "US", "sa", "ZZ"};
  const char* chips_used[]     = {"H100-SXM", "b200", "H20", "NEW-CHIP", ""};
  const char* pathways[]       = {"", "LICENSE", "lpp", "NVEU", "uveu", "AIA", "ACA", "BOGUS"};
  std::string text = "\xEF\xBB\xBFshipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit\n";
  for (int i = 0; i < lines; ++i) {
    const int id = pick(10) == 0 ? pick(i + 1) : i;  // about one line in ten repeats an id
    std::string line = "S" + std::to_string(id) + (pick(50) == 0 ? ",2025-02-30," : ",2025-0" + std::to_string(1 + pick(9)) + "-1" + std::to_string(pick(10)) + ",");
    line += pick(30) == 0 ? "\"E\n" + std::to_string(pick(40)) + "\"," : " E" + std::to_string(pick(40)) + " ,";
    line += std::string(countries_used[pick(6)]) + ",";
    const std::string chip = chips_used[pick(5)];
    line += pick(20) == 0 ? "\"" + chip + "\"" : chip;
    line += "," + std::to_string(pick(40) == 0 ? 0 : pick(100) - 10) + ",";
    line += std::string(pathways[pick(8)]) + ",";
    line += pick(3) == 0 ? "O" + std::to_string(pick(20)) : "";
    line += pick(10) == 0 ? ",\"Ex, \"\"port\"\"\r\nline two\"" : ",Exporter " + std::to_string(pick(3));
    line += chip == "NEW-CHIP" || pick(10) == 0 ? "," + std::to_string(1 + pick(50)) : ",";
    if (pick(100) == 0) { line += ",extra"; }
    if (pick(150) == 0) { line = "\"S" + std::to_string(i) + "\"x" + line; }  // text after a closing quote
    text += line + (pick(8) == 0 ? "\r\n" : "\n");
    if (pick(40) == 0) { text += pick(2) == 0 ? "\n" : "\r\n"; }
  }
  return text;
}

/// Everything a log holds, rendered so that two logs compare with one EXPECT_EQ.
std::string fingerprint(const shipment_log& log)
{
  std::string out;
  const auto& c = log.columns;
  for (std::int64_t i = 0; i < c.size(); ++i) {
    const auto k = static_cast<std::size_t>(i);
    out += std::string(log.shipment_id(i)) + " " + std::to_string(c.date[k]) + " " + log.entities.text(c.entity[k]) +
           " " + std::to_string(c.country[k]) + " " + log.chips.rows[c.chip[k]].key + " " + std::to_string(c.pathway[k]) +
           " " + std::to_string(c.quantity[k]) + " " + std::to_string(c.tpp[k]) + " " +
           (c.order[k] < 0 ? "-" : log.orders.text(c.order[k])) + " " + log.exporters.text(c.exporter[k]) + " " +
           std::to_string(c.entity[k]) + "/" + std::to_string(c.chip[k]) + "/" + std::to_string(c.order[k]) + "/" +
           std::to_string(c.exporter[k]) + " @" + log.source_of(i) + "\n";
  }
  for (const auto& r : log.rejects) {
    out += r.file + ":" + std::to_string(r.line) + ":" + std::to_string(r.column) + " " + r.reason + " " + r.detail +
           " [" + r.raw + "]\n";
  }
  for (const auto& f : log.files) {
    out += f.path + " " + std::to_string(f.bytes) + " " + f.sha256 + " " + std::to_string(f.lines_read) + "\n";
  }
  return out + std::to_string(log.lines_read);
}

shipment_log ingest(const std::vector<std::string>& files, std::size_t chunk_bytes,
                    std::uint64_t expected_input_bytes = 0, const test::host_read_ahead* read_ahead = nullptr)
{
  ingest_options options;
  options.keep_rejects         = true;
  options.chunk_bytes          = chunk_bytes;
  options.expected_input_bytes = expected_input_bytes;
  if (read_ahead != nullptr) { options.read_ahead = read_ahead->function(); }
  shipment_log_builder builder(countries(), chips(), options);
  for (std::size_t f = 0; f < files.size(); ++f) { builder.add_text("log" + std::to_string(f) + ".csv", files[f]); }
  return builder.finish();
}

TEST(ChunkedIngest, EveryChunkSizeBuildsTheSameLog)
{
  const std::vector<std::string> files = {troubled_log(3000, 1), troubled_log(500, 2)};
  const std::string whole              = fingerprint(ingest(files, std::size_t{1} << 30));
  ASSERT_GT(whole.size(), 1000U);
  for (const std::size_t chunk_bytes : {1, 2, 3, 17, 64, 100, 1000, 4096}) {
    EXPECT_EQ(fingerprint(ingest(files, chunk_bytes)), whole) << "chunk_bytes " << chunk_bytes;
  }
}

// Entity lookups trail the parse by a few lines (their dictionary slots are prefetched first).
// A quoted entity with doubled quotes is unescaped into the reader's own buffer, which its next
// line overwrites: each line must still get the entity written on it, known or new, quoted or
// not, in every chunk size and thread count.
TEST(ChunkedIngest, EveryLineKeepsItsOwnEntityWhateverItsQuoting)
{
  const std::vector<std::string> written = {"Plain One", "\"Say \"\"Hi\"\"\"", "\"Comma, Inc\"",
                                            "\"A \"\"B\"\" C\"", "Plain Two"};
  const std::vector<std::string> meant = {"Plain One", "Say \"Hi\"", "Comma, Inc", "A \"B\" C", "Plain Two"};
  std::string text                     = "shipment_id,date,entity,country,chip,quantity\n";
  std::vector<std::string> expected;
  for (int i = 0; i < 400; ++i) {
    const auto pick = static_cast<std::size_t>((i * 7 + i / 13) % 5);
    text += "S" + std::to_string(i) + ",2025-03-0" + std::to_string(1 + i % 9) + "," + written[pick] +
            ",DE,H100-SXM,1\n";
    expected.push_back(meant[pick]);
  }
  const test::openmp_threads_restored restore;
  for (const int threads : {1, 3}) {
    omp_set_num_threads(threads);
    for (const std::size_t chunk_bytes : {std::size_t{200}, std::size_t{1} << 20}) {
      const shipment_log log = ingest({text}, chunk_bytes);
      ASSERT_EQ(log.columns.size(), 400) << "threads " << threads << ", chunk_bytes " << chunk_bytes;
      for (std::int64_t i = 0; i < log.columns.size(); ++i) {
        ASSERT_EQ(log.entities.text(log.columns.entity[static_cast<std::size_t>(i)]),
                  expected[static_cast<std::size_t>(i)])
            << "line " << i + 2 << ", threads " << threads << ", chunk_bytes " << chunk_bytes;
      }
    }
  }
}

// The parsing threads carry their stage's name (bench/thread_times.py and `top -H` read it):
// while a batch is handed over, this process has threads called cl-parse.
TEST(ChunkedIngest, ParsingThreadsAreNamed)
{
  const test::openmp_threads_restored restore;
  omp_set_num_threads(3);
  std::set<std::string> names;
  ingest_options options;
  options.keep_rejects = true;
  options.chunk_bytes  = 512;
  options.on_batch     = [&](line_batch&) {
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      if (std::getline(comm, name)) { names.insert(name); }
    }
  };
  shipment_log_builder builder(countries(), chips(), options);
  builder.add_text("log.csv", troubled_log(500, 9));
  EXPECT_EQ(names.count("cl-parse"), 1U) << "threads seen: " << names.size();
}

// A replay (the streaming report's second look at the crossing days) hands back every accepted
// line of the days asked for, in input order, each at the position and with the id it had the
// first time: in sections where every line was a candidate, the lines of other days are passed
// over by date, and the positions of the rest count the repeated ids the merge rejected; in
// sections with rejected lines every line is checked again. The troubled log has all three, in
// random date order.
TEST(ChunkedIngest, ReplayHandsBackTheLinesOfTheDaysAskedForAtTheirPositions)
{
  const std::vector<std::string> files = {troubled_log(3000, 11), troubled_log(800, 12)};
  const std::vector<day_t> days        = {*parse_date("2025-02-13"), *parse_date("2025-05-10"),
                                          *parse_date("2025-05-11"), *parse_date("2025-09-19")};
  const test::openmp_threads_restored restore;
  for (const int threads : {1, 3}) {
    omp_set_num_threads(threads);
    for (const std::size_t chunk_bytes : {std::size_t{64}, std::size_t{1000}, std::size_t{1} << 20}) {
      SCOPED_TRACE("threads " + std::to_string(threads) + ", chunk_bytes " + std::to_string(chunk_bytes));
      std::map<std::int64_t, std::pair<std::string, day_t>> first_time;  // position: id, date
      std::map<std::int64_t, std::uint16_t> country_at;                  // position: country code
      ingest_options options;
      options.keep_rejects = true;
      options.chunk_bytes  = chunk_bytes;
      options.on_batch     = [&](line_batch& batch) {
        for (std::int64_t k = 0; k < batch.size(); ++k) {
          first_time[batch.position(k)] = {std::string(batch.shipment_id(k)),
                                           batch.columns.date[static_cast<std::size_t>(k)]};
          country_at[batch.position(k)] = batch.columns.country[static_cast<std::size_t>(k)];
        }
      };
      shipment_log_builder builder(countries(), chips(), options);
      for (std::size_t f = 0; f < files.size(); ++f) {
        builder.add_text("log" + std::to_string(f) + ".csv", files[f]);
      }
      builder.inputs_done();
      ASSERT_GT(builder.current().lines_rejected, 100);  // rejects and repeated ids: the cases above
      std::vector<std::int64_t> wanted;                  // the positions a replay must hand back
      for (const auto& [position, line] : first_time) {
        if (std::binary_search(days.begin(), days.end(), line.second)) { wanted.push_back(position); }
      }
      ASSERT_GT(wanted.size(), 20U);

      std::vector<std::int64_t> handed;
      builder.replay({days, {}, {}}, [&](const line_batch& batch) {
        for (std::int64_t k = 0; k < batch.size(); ++k) {
          const auto at = first_time.find(batch.position(k));
          ASSERT_NE(at, first_time.end()) << "position " << batch.position(k);
          EXPECT_EQ(at->second.first, batch.shipment_id(k)) << "position " << batch.position(k);
          EXPECT_EQ(at->second.second, batch.columns.date[static_cast<std::size_t>(k)]);
          if (std::binary_search(days.begin(), days.end(), at->second.second)) {
            handed.push_back(at->first);
          }
        }
      });
      EXPECT_EQ(handed, wanted);

      // The caller's filter: sections whose positions lie inside [500, 2500] are not read, so
      // their lines of those days do not come back (those at 1011-1989 lie in such a section
      // whatever the sections' bounds); every other line of those days does.
      constexpr std::int64_t skip_from = 500, skip_to = 2500;
      const auto outside = [&](std::int64_t first, std::int64_t last) {
        EXPECT_LE(first, last);
        return first < skip_from || last > skip_to;
      };
      std::vector<std::int64_t> filtered;
      builder.replay({days, {}, outside}, [&](const line_batch& batch) {
        for (std::int64_t k = 0; k < batch.size(); ++k) {
          const day_t date = batch.columns.date[static_cast<std::size_t>(k)];
          if (std::binary_search(days.begin(), days.end(), date)) { filtered.push_back(batch.position(k)); }
        }
      });
      std::size_t inside_wanted = 0;
      for (const std::int64_t position : wanted) {
        const bool in_a_skipped_section = position >= skip_from + 511 && position <= skip_to - 511;
        const bool handed_back          = std::binary_search(filtered.begin(), filtered.end(), position);
        if (position < skip_from || position > skip_to) {
          EXPECT_TRUE(handed_back) << "position " << position;
        }
        if (in_a_skipped_section) {
          ++inside_wanted;
          EXPECT_FALSE(handed_back) << "position " << position;
        }
      }
      EXPECT_GT(inside_wanted, 5U);
      EXPECT_TRUE(std::is_sorted(filtered.begin(), filtered.end()));

      // Countries asked for on the second day only (the country of its first line): that day's
      // lines of other countries are passed over where read with the filter (not in sections
      // with rejects: with 64-byte chunks, a line each, most sections have none), every line
      // asked for still comes back.
      std::uint16_t only_country = 0;
      for (const auto& [position, line] : first_time) {
        if (line.second == days[1]) {
          only_country = country_at[position];
          break;
        }
      }
      replay_scope by_country{days, {{}, {only_country}, {}, {}}, {}};
      std::set<std::int64_t> back;
      builder.replay(by_country, [&](const line_batch& batch) {
        for (std::int64_t k = 0; k < batch.size(); ++k) { back.insert(batch.position(k)); }
      });
      std::size_t left_out = 0, kept = 0;
      for (const std::int64_t position : wanted) {
        const bool other_country =
            first_time[position].second == days[1] && country_at[position] != only_country;
        if (!other_country) {
          EXPECT_EQ(back.count(position), 1U) << "position " << position;
          kept += first_time[position].second == days[1] ? 1 : 0;
        } else if (back.count(position) == 0) {
          ++left_out;
        }
      }
      EXPECT_GT(kept, 0U);
      if (chunk_bytes == 64) { EXPECT_GT(left_out, 5U); }
      if (HasFailure()) { return; }
    }
  }
}

/// Resident kilobytes of this process's mappings of @p path (/proc/self/smaps), or -1 when
/// smaps cannot be read.
long mapped_kilobytes(const fs::path& path)
{
  std::ifstream smaps("/proc/self/smaps");
  if (!smaps) { return -1; }
  const std::string name = fs::canonical(path).string();
  long total             = 0;
  bool inside            = false;
  for (std::string line; std::getline(smaps, line);) {
    const auto dash = line.find('-');
    if (dash != std::string::npos && dash > 0 && line.find_first_not_of("0123456789abcdef") == dash) {
      inside = line.size() >= name.size() && line.compare(line.size() - name.size(), name.size(), name) == 0;
    } else if (inside && line.rfind("Rss:", 0) == 0) {
      total += std::stol(line.substr(4));
    }
  }
  return total;
}

// A replay reads some sections of a file again and lets go of their pages, and of the pages
// between them: the kernel maps more than the bytes read (fault-around, large folios of the page
// cache), so releasing each section alone left the pages around the sections read mapped, and a
// shuffled 38,000,000-line log (2.9 GB) peaked at 775 MB instead of 429 MB (439 MB of its file's
// pages left mapped by the second look). Here every fourth section is read again.
TEST(ChunkedIngest, ReplayLetsGoOfThePagesItMapped)
{
  const test::scratch_dir dir("capledger_replay_pages");
  std::string text = "shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit\n";
  constexpr int lines = 200000;  // 390 sections of 512 lines, about 25 KB each
  for (int i = 0; i < lines; ++i) {
    text += "S" + std::to_string(i) + ",2025-03-05,E" + std::to_string(i % 50) + ",US,H100-SXM,1,,,,\n";
  }
  const std::string path = dir.write("log.csv", text);
  ingest_options options;
  options.on_batch = [](line_batch&) {};
  shipment_log_builder builder(countries(), chips(), options);
  builder.add_file(path);
  builder.inputs_done();
  const long before = mapped_kilobytes(path);
  if (before < 0) { GTEST_SKIP() << "no /proc/self/smaps"; }
  std::int64_t handed = 0, asked = 0;
  const auto every_fourth = [&](std::int64_t, std::int64_t) { return asked++ % 4 == 0; };
  builder.replay({{*parse_date("2025-03-05")}, {}, every_fourth},
                 [&](const line_batch& batch) { handed += batch.size(); });
  EXPECT_GT(asked, 300);         // the sections, in order
  EXPECT_GT(handed, lines / 6);  // those asked for were read (a chunk's last section is shorter)
  EXPECT_LT(handed, lines / 3);
  EXPECT_LE(mapped_kilobytes(path), before + 16)
      << "kilobytes of the log mapped after the replay, " << before << " before it";
}

// The ingest parses with one thread fewer than OpenMP's thread count (at least one): one, two
// and seven parsing threads build the same log as the default, with chunks small enough that
// each window holds many and a fast thread takes over a slow one's chunks.
TEST(ChunkedIngest, EveryThreadCountBuildsTheSameLog)
{
  const std::vector<std::string> files = {troubled_log(3000, 4), troubled_log(700, 5)};
  const std::string whole              = fingerprint(ingest(files, std::size_t{1} << 30));
  const test::openmp_threads_restored restore;
  for (const int threads : {1, 2, 3, 8}) {
    omp_set_num_threads(threads);
    for (const std::size_t chunk_bytes : {std::size_t{97}, std::size_t{2048}}) {
      EXPECT_EQ(fingerprint(ingest(files, chunk_bytes)), whole)
        << "OpenMP threads " << threads << ", chunk_bytes " << chunk_bytes;
    }
  }
}

// Many files: the parsing threads' dictionary copies carry over from file to file, ids repeat
// across files (the troubled logs share their id range), and the expected size of all inputs,
// only a hint for sizing the id set and the columns, may be missing, exact or wrong either way.
TEST(ChunkedIngest, ManyFilesAndAnySizeHintBuildTheSameLog)
{
  const std::vector<std::string> files = {troubled_log(900, 6), troubled_log(40, 7), troubled_log(1200, 8),
                                          troubled_log(0, 9), troubled_log(600, 10)};
  std::uint64_t total                  = 0;
  for (const auto& f : files) { total += f.size(); }
  const std::string whole = fingerprint(ingest(files, std::size_t{1} << 30));
  const test::openmp_threads_restored restore;
  for (const int threads : {1, 8}) {
    omp_set_num_threads(threads);
    for (const std::uint64_t hint :
         {total, total + 1, total - 1, std::uint64_t{1}, files[0].size() + 10, 20 * total}) {
      EXPECT_EQ(fingerprint(ingest(files, 97, hint)), whole)
          << "OpenMP threads " << threads << ", hint " << hint;
    }
  }
}

// Rejected lines handed over as they are found (`on_reject`, what `report --rejects` streams to
// its file) are the ones the log keeps without it, in the same order, whatever the threads.
TEST(ChunkedIngest, RejectsHandedOverAreTheOnesKept)
{
  const std::vector<std::string> files = {troubled_log(1500, 13), troubled_log(400, 14)};
  const shipment_log kept              = ingest(files, 97);
  ASSERT_GT(kept.rejects.size(), 100U);
  EXPECT_EQ(kept.lines_rejected, static_cast<std::int64_t>(kept.rejects.size()));
  const test::openmp_threads_restored restore;
  for (const int threads : {1, 8}) {
    omp_set_num_threads(threads);
    std::vector<rejected_line> handed;
    ingest_options options;
    options.keep_rejects = true;
    options.chunk_bytes  = 97;
    options.on_reject    = [&](const rejected_line& r) { handed.push_back(r); };
    shipment_log_builder builder(countries(), chips(), options);
    for (std::size_t f = 0; f < files.size(); ++f) {
      builder.add_text("log" + std::to_string(f) + ".csv", files[f]);
    }
    shipment_log log = builder.finish();
    EXPECT_TRUE(log.rejects.empty());
    EXPECT_EQ(log.lines_rejected, kept.lines_rejected);
    log.rejects = handed;
    EXPECT_EQ(fingerprint(log), fingerprint(kept)) << "OpenMP threads " << threads;
  }
}

// Once its inputs are done (or its log handed over) a builder has let go of its id set: an input
// added then could repeat an earlier id unnoticed, so it is refused.
TEST(ChunkedIngest, ABuilderTakesNoInputAfterItsInputsAreDone)
{
  const std::string text = troubled_log(300, 11);
  for (const bool handed_over : {false, true}) {
    ingest_options options;
    options.keep_rejects = true;
    shipment_log_builder builder(countries(), chips(), options);
    builder.add_text("log0.csv", text);
    const std::int64_t accepted = builder.accepted();
    ASSERT_GT(accepted, 100);
    if (handed_over) {
      EXPECT_EQ(builder.finish().columns.size(), accepted);
    } else {
      builder.inputs_done();
      EXPECT_EQ(builder.accepted(), accepted);  // the log stays
    }
    EXPECT_THROW(builder.add_text("log1.csv", text), logic_error) << "handed over " << handed_over;
  }
}

TEST(ChunkedIngest, TheFirstErrorIsTheSameWithoutRejects)
{
  const std::string text = troubled_log(2000, 3);
  const auto first_error = [&](std::size_t chunk_bytes) -> std::optional<std::string> {
    ingest_options options;
    options.chunk_bytes = chunk_bytes;
    shipment_log_builder builder(countries(), chips(), options);
    try {
      builder.add_text("log.csv", text);
    } catch (const parse_error& e) {
      return std::string(e.what());
    }
    return std::nullopt;
  };
  const auto whole = first_error(std::size_t{1} << 30);
  ASSERT_TRUE(whole.has_value());
  for (const std::size_t chunk_bytes : {1, 5, 64, 700}) { EXPECT_EQ(first_error(chunk_bytes), whole); }
}

TEST(ChunkedIngest, SeamInsideAQuotedLineBreakAndAnUnterminatedQuote)
{
  // Chunks of 1 byte start on every line, so each continuation line of a quoted field starts a
  // chunk whose speculative parse is wrong and must be redone from the record's end.
  const std::string text =
    "shipment_id,date,entity,country,chip,quantity,exporter\n"
    "S1,2025-02-01,E1,AE,H100-SXM,1,\"a\nb\nc\"\n"
    "S2,2025-02-01,E1,AE,H100-SXM,2,\"x\n\n\"\n"
    "S3,2025-02-01,E1,AE,H100-SXM,3,\"never closed\nS4,2025-02-01,E1,AE,H100-SXM,4,x\n";
  const std::string whole = fingerprint(ingest({text}, std::size_t{1} << 30));
  for (const std::size_t chunk_bytes : {1, 2, 40, 60}) {
    EXPECT_EQ(fingerprint(ingest({text}, chunk_bytes)), whole) << "chunk_bytes " << chunk_bytes;
  }
  const shipment_log log = ingest({text}, 1);
  ASSERT_EQ(log.columns.size(), 3);  // S1, S2 and S4 (read again after S3's unterminated quote)
  EXPECT_EQ(log.source_of(2), "log0.csv:9");
  ASSERT_EQ(log.rejects.size(), 1U);
  EXPECT_EQ(log.rejects[0].reason, "UNTERMINATED_QUOTE");
  EXPECT_EQ(log.rejects[0].line, 8);
  EXPECT_EQ(log.rejects[0].column, 32);
}

// The GPU ingest reads plain lines ahead (kernels/device_csv.cuh) and the parsing threads read
// the others: the same log, whatever the chunks and threads (a third of these troubled lines are
// plain: 1,232 of 3,600); a
// record whose quoted line breaks hold lines that look plain is still one record.
TEST(ChunkedIngest, LinesReadAheadBuildTheSameLog)
{
  const std::vector<std::string> files = {
      troubled_log(3000, 21), troubled_log(600, 22),
      "shipment_id,date,entity,country,chip,quantity,exporter\n"
      "S1,2025-02-01,E1,AE,H100-SXM,1,\"a\nS9,2025-02-01,E1,AE,H100-SXM,5,x\nc\"\n"
      "S2,2025-02-01,E1,AE,H100-SXM,2,x\n"
      "S3,2025-02-01,E1,AE,H100-SXM,3,\"never closed\nS4,2025-02-01,E1,AE,H100-SXM,4,x\n"};
  const std::string whole = fingerprint(ingest(files, std::size_t{1} << 30));
  const test::openmp_threads_restored restore;
  for (const int threads : {1, 2, 8}) {
    omp_set_num_threads(threads);
    for (const std::size_t chunk_bytes :
         {std::size_t{1}, std::size_t{97}, std::size_t{2048}, std::size_t{1} << 30}) {
      const test::host_read_ahead read_ahead(countries(), chips());
      EXPECT_EQ(fingerprint(ingest(files, chunk_bytes, 0, &read_ahead)), whole)
          << "OpenMP threads " << threads << ", chunk_bytes " << chunk_bytes;
      EXPECT_GT(read_ahead.plain_lines(), 1000)
          << "OpenMP threads " << threads << ", chunk_bytes " << chunk_bytes;
    }
  }
  // The lines read ahead are taken as read: altered there, the log differs.
  const test::host_read_ahead altered(countries(), chips(),
                                      [](device_csv::plain_line& line) { line.quantity += 1; });
  EXPECT_NE(fingerprint(ingest(files, 97, 0, &altered)), whole);
}

// Lines are read ahead on a thread of their own: a failure there (a GPU gone, say) is the ingest's
// failure, with its message, and nothing hangs, whichever window it happens in.
TEST(ChunkedIngest, AFailureReadingAheadIsTheIngestsFailure)
{
  const std::string text = troubled_log(2000, 23);
  for (const int failing_call : {1, 2, 7}) {
    const test::host_read_ahead host(countries(), chips());
    auto calls = std::make_shared<std::atomic<int>>(0);
    ingest_options options;
    options.keep_rejects = true;
    options.chunk_bytes  = 97;
    options.read_ahead   = [read = host.function(), calls, failing_call](
                             std::string_view t, std::size_t from, std::size_t to,
                             const device_csv::line_layout& layout, detail::lines_read_ahead& out) {
      if (++*calls == failing_call) { throw device_error("the GPU went away"); }
      read(t, from, to, layout, out);
    };
    shipment_log_builder builder(countries(), chips(), options);
    EXPECT_THROW(
        {
          try {
            builder.add_text("log.csv", text);
          } catch (const device_error& e) {
            EXPECT_STREQ(e.what(), "the GPU went away");
            throw;
          }
        },
        device_error)
        << "failing call " << failing_call;
  }
}

// Lines read ahead hold a few bytes per byte of text whatever the lines: only plain lines are
// listed (the parsing threads read every other line themselves). When every line of a window took
// 101 bytes (`plain_line`, its start and flag), a log of blank lines (one byte each) made each
// window's read-ahead ~100 times its text, up to five windows at once: a 60 MB file of blank lines
// took 3.2 GB (OMP_NUM_THREADS=16, CAPLEDGER_GPU_INGEST=host) against 41 MB without.
TEST(ChunkedIngest, LinesReadAheadHoldAFewBytesPerByteOfText)
{
  std::string text = "shipment_id,date,entity,country,chip,quantity\n";
  for (int i = 0; i < 200000; ++i) { text += i % 2 == 0 ? "\n" : "x\n"; }  // blank, and one field short
  text += "S1,2025-01-01,E1,US,H100-SXM,1\n";
  const test::host_read_ahead host(countries(), chips());
  auto worst = std::make_shared<std::atomic<double>>(0.0);
  ingest_options options;
  options.keep_rejects = true;
  options.chunk_bytes  = 4096;
  options.read_ahead   = [read = host.function(), worst](std::string_view t, std::size_t from, std::size_t to,
                                                       const device_csv::line_layout& layout,
                                                       detail::lines_read_ahead& out) {
    read(t, from, to, layout, out);
    const double held     = static_cast<double>(out.values.capacity() * sizeof(device_csv::plain_line) +
                                            out.line_start.capacity() * sizeof(std::uint32_t));
    const double per_byte = held / static_cast<double>(std::max<std::size_t>(1, to - from));
    if (per_byte > *worst) { *worst = per_byte; }
  };
  shipment_log_builder builder(countries(), chips(), options);
  builder.add_text("log.csv", text);
  EXPECT_EQ(builder.finish().lines_read, 100001);
  EXPECT_LE(*worst, 8.0) << "bytes held by lines read ahead per byte of the window's text";
}

}  // namespace
