/// @file gpu_ingest_test.cpp
/// @brief `make_gpu_line_reader` (kernels/gpu_ingest.cu) reads exactly what `read_ahead_on_host`
/// reads, and `cut_at_line_starts` cuts a range into chunks of whole lines.
///
/// Logs are random and messy (every way a line becomes the host's: quotes, control and non-ASCII
/// bytes, field counts, dates, countries, chips, quantities, tpp overflow; CRLF and empty lines),
/// read with chunks of 1, 7, 64 and 4096 bytes and the default 64 MiB, so that lines end at, just
/// before and just after a seam and some lines are longer than a chunk. The chunking tests run on
/// every machine (chunk by chunk on the host, as the kernel reads them); the GPU tests skip with
/// a message where no usable GPU exists.
#include <capledger/backend.hpp>
#include <capledger/error.hpp>
#include <capledger/generate.hpp>
#include <capledger/report.hpp>

#include <gtest/gtest.h>

#include "csv.hpp"
#include "device_read.hpp"
#include "test_support.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace capledger;
using capledger::detail::lines_read_ahead;
using capledger::device_csv::plain_line;

const char* const header_line =
    "shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit";

device_csv::line_layout layout_of(std::string_view header)
{
  detail::csv_reader reader(header);
  EXPECT_EQ(reader.next(), detail::csv_status::record);
  return detail::make_line_layout(detail::csv_header(reader.fields(), "test.csv"));
}

const device_csv::tables& bundled_tables()
{
  static const device_csv::tables tables =
      detail::make_device_tables(test::bundled().countries, test::bundled().chips).value();
  return tables;
}

// ---- random messy logs ------------------------------------------------------------------------

/// @brief A shipment line as a log exporter writes it, then, one time in three or four, broken in one way
/// (or made odd in a way the device still reads: case, spaces, CRLF).
std::string random_line(std::mt19937_64& rng)
{
  const auto pick = [&rng](std::uint64_t n) { return static_cast<std::uint64_t>(rng() % n); };
  static const char* const countries[] = {"AE", "us", "CN", "Fr", "IN", "SG", "ZZ", "A1", "de"};
  static const char* const chips[]     = {"H100-SXM", "h200-nvl", "H100-NVL", "B200", "MI300X", "NOPE-9"};
  static const char* const pathways[]  = {"", "LICENSE", "lpp", "NVEU", "UVEU", "AIA", "ACA", "BOGUS"};
  // Months 01-12 and days 01-29 but for 00s now and then: day numbers vary, dates stay valid.
  const std::string month = pick(4) != 0 ? "0" + std::to_string(1 + pick(9)) : "1" + std::to_string(pick(3));
  const std::string date  = std::to_string(2024 + pick(3)) + "-" + month + "-" + std::to_string(pick(3)) +
                           std::to_string(pick(20) == 0 ? 0 : 1 + pick(9));
  std::vector<std::string> field{"S" + std::to_string(pick(1000000)),
                                 date,
                                 "ENT-" + std::to_string(pick(50)),
                                 countries[pick(std::size(countries))],
                                 chips[pick(std::size(chips))],
                                 (pick(10) == 0 ? "-" : "") + std::to_string(pick(100000)),
                                 pathways[pick(std::size(pathways))],
                                 pick(3) == 0 ? "ORD-" + std::to_string(pick(999)) : "",
                                 pick(2) ? "NVIDIA" : "",
                                 pick(4) == 0 ? std::to_string(1 + pick(20000)) : ""};
  if (pick(5) == 0) {
    std::string& padded = field[pick(field.size())];
    padded              = " " + padded + "\t ";
  }
  // The ways a line is the host's (or nearly: a leap day, 18 digits), one line in three or four.
  struct replacement {
    std::size_t field;
    const char* value;
  };
  static const replacement replacements[] = {
      {1, "2025-02-29"}, {1, "2024-02-29"},         {5, "0"},  {5, "+5"},  {5, "1234567890123456789"},
      {0, ""},           {5, "999999999999999999"}, {9, "-3"}, {3, "AEX"}, {9, "99999999"}};
  const std::uint64_t how = pick(60);
  if (how < std::size(replacements)) {
    field[replacements[how].field] = replacements[how].value;
  } else if (how < std::size(replacements) + 3) {  // a quote, a control byte, UTF-8
    static const char* const odd[] = {"\"q\"", "\x01", "\xc3\xa9"};
    field[pick(field.size())] += odd[how - std::size(replacements)];
  } else if (how == 13) {
    field.push_back("extra");
  } else if (how == 14) {
    field.pop_back();
  } else if (how == 15) {
    field[2] = std::string(40 + pick(200), 'E');
  } else if (how == 16) {
    return std::string(pick(300), 'x');
  } else if (how == 17) {
    return pick(2) ? "" : "\r";
  }
  std::string line;
  for (std::size_t i = 0; i < field.size(); ++i) { line += (i > 0 ? "," : "") + field[i]; }
  if (pick(8) == 0) { line += '\r'; }
  return line;
}

/// @brief A header and @p lines random lines; with or without a final `\n`.
std::string random_log(std::mt19937_64& rng, std::size_t lines, bool final_newline)
{
  std::string text = std::string(header_line) + "\n";
  for (std::size_t i = 0; i < lines; ++i) {
    text += random_line(rng);
    if (i + 1 < lines || final_newline) { text += '\n'; }
  }
  return text;
}

/// @brief The start of the line that holds byte @p at (a line start itself after a `\n`).
std::size_t line_start_at(std::string_view text, std::size_t at)
{
  while (at > 0 && text[at - 1] != '\n') { --at; }
  return at;
}

// ---- comparison -------------------------------------------------------------------------------

bool same_span(device_csv::text_span a, device_csv::text_span b)
{
  return a.offset == b.offset && a.length == b.length;
}

bool same_values(const plain_line& a, const plain_line& b)
{
  return a.day == b.day && a.country == b.country && a.chip == b.chip && a.pathway == b.pathway &&
         a.quantity == b.quantity && a.tpp == b.tpp && same_span(a.id, b.id) &&
         same_span(a.entity, b.entity) && same_span(a.order, b.order) && same_span(a.exporter, b.exporter) &&
         a.id_hash == b.id_hash && a.entity_hash == b.entity_hash && a.order_hash == b.order_hash &&
         a.exporter_hash == b.exporter_hash;
}

std::string describe(const plain_line& v)
{
  std::ostringstream s;
  s << "{day " << v.day << ", country " << v.country << ", chip " << v.chip << ", pathway " << int{v.pathway}
    << ", quantity " << v.quantity << ", tpp " << v.tpp << ", id " << v.id.offset << "+" << v.id.length
    << ", entity " << v.entity.offset << "+" << v.entity.length << ", order " << v.order.offset << "+"
    << v.order.length << ", exporter " << v.exporter.offset << "+" << v.exporter.length << ", hashes "
    << v.id_hash << " " << v.entity_hash << " " << v.order_hash << " " << v.exporter_hash << "}";
  return s.str();
}

/// @brief Whether @p got is @p want: the same `from`, the same plain lines (starts) and values.
::testing::AssertionResult same_read(const lines_read_ahead& want, const lines_read_ahead& got)
{
  if (want.from != got.from) {
    return ::testing::AssertionFailure() << "from " << got.from << ", want " << want.from;
  }
  if (want.size() != got.size() || got.values.size() != got.size()) {
    return ::testing::AssertionFailure()
           << "plain lines " << got.size() << " (values " << got.values.size() << "), want " << want.size();
  }
  for (std::size_t k = 0; k < want.size(); ++k) {
    if (want.line_start[k] != got.line_start[k] || !same_values(want.values[k], got.values[k])) {
      return ::testing::AssertionFailure()
             << "plain line " << k << " of " << want.size() << ": start " << got.line_start[k] << " "
             << describe(got.values[k]) << "; want start " << want.line_start[k] << " "
             << describe(want.values[k]);
    }
  }
  return ::testing::AssertionSuccess();
}

/// @brief The lines that start in [@p from, @p to) of @p text, plain or not.
std::size_t lines_in(std::string_view text, std::size_t from, std::size_t to)
{
  std::size_t lines = 0;
  for (std::size_t at = from; at < std::min(to, text.size()); ++lines) {
    const std::size_t newline = text.find('\n', at);
    at                        = newline == std::string_view::npos ? text.size() : newline + 1;
  }
  return lines;
}

lines_read_ahead on_host(std::string_view text, std::size_t from, std::size_t to,
                         const device_csv::line_layout& layout)
{
  lines_read_ahead out;
  detail::read_ahead_on_host(text, from, to, layout, bundled_tables(), out);
  return out;
}

/// @brief What the reader does with each chunk, on the host: a device chunk is copied out of the
/// text alone (no byte before or after it), split at its `\n`s and read line by line from its own
/// start, and the starts and spans shifted by where it begins; a host chunk is one line.
lines_read_ahead chunk_by_chunk(std::string_view text, std::size_t from, std::size_t to,
                                const device_csv::line_layout& layout, std::size_t chunk_bytes)
{
  lines_read_ahead out;
  out.from = from;
  for (const detail::line_chunk& chunk : detail::cut_at_line_starts(text, from, to, chunk_bytes)) {
    const std::string alone(text.substr(chunk.begin, chunk.end - chunk.begin));
    const auto offset   = static_cast<std::uint32_t>(chunk.begin - from);
    std::uint32_t begin = 0;
    while (begin < alone.size()) {
      const std::size_t newline = alone.find('\n', begin);
      const auto end = static_cast<std::uint32_t>(newline == std::string::npos ? alone.size() : newline);
      plain_line line{};
      const bool plain =
          device_csv::read_plain_line(alone.data(), begin, end, layout, bundled_tables(), line);
      if (plain) {
        for (auto* span : {&line.id, &line.entity, &line.order, &line.exporter}) { span->offset += offset; }
        out.line_start.push_back(offset + begin);
        out.values.push_back(line);
      }
      begin = end + 1;
      if (!chunk.on_device) { EXPECT_GE(begin, alone.size()) << "a host chunk holds one line"; }
    }
  }
  return out;
}

/// @brief Checks the chunks' shape: contiguous from @p from, whole lines, device chunks within
/// @p chunk_bytes, host chunks one line longer than that.
void expect_well_cut(std::string_view text, std::size_t from, std::size_t to, std::size_t chunk_bytes)
{
  const auto chunks = detail::cut_at_line_starts(text, from, to, chunk_bytes);
  std::size_t at    = from;
  for (const detail::line_chunk& chunk : chunks) {
    ASSERT_EQ(chunk.begin, at);
    ASSERT_LT(chunk.begin, chunk.end);
    EXPECT_TRUE(chunk.end == text.size() || text[chunk.end - 1] == '\n')
        << "chunk [" << chunk.begin << ", " << chunk.end << ") ends inside a line";
    const std::size_t newlines =
        static_cast<std::size_t>(std::count(text.begin() + static_cast<std::ptrdiff_t>(chunk.begin),
                                            text.begin() + static_cast<std::ptrdiff_t>(chunk.end) - 1, '\n'));
    if (chunk.on_device) {
      EXPECT_LE(chunk.end - chunk.begin, chunk_bytes);
    } else {
      EXPECT_GT(chunk.end - chunk.begin, chunk_bytes);
      EXPECT_EQ(newlines, 0U) << "a host chunk holds one line";
    }
    at = chunk.end;
  }
  if (from < text.size() && from < to) {
    const std::size_t last = std::min(to, text.size()) - 1;
    const std::size_t end  = text.find('\n', last);
    EXPECT_EQ(at, end == std::string_view::npos ? text.size() : end + 1)
        << "the chunks end with the last line";
  } else {
    EXPECT_TRUE(chunks.empty());
  }
}

constexpr std::size_t seam_chunk_sizes[] = {1, 7, 64, 4096};

// ---- chunking, on every machine ---------------------------------------------------------------

TEST(GpuIngestChunks, ChunksAreWholeLinesInOrder)
{
  std::mt19937_64 rng(11);
  for (int round = 0; round < 40; ++round) {
    const std::string text = random_log(rng, 1 + rng() % 300, round % 2 == 0);
    const std::size_t from = line_start_at(text, rng() % text.size());
    const std::size_t to   = from + rng() % (text.size() - from + 10);
    for (const std::size_t chunk : seam_chunk_sizes) {
      SCOPED_TRACE("round " + std::to_string(round) + ", chunk " + std::to_string(chunk));
      expect_well_cut(text, from, to, chunk);
    }
  }
}

TEST(GpuIngestChunks, ReadingChunkByChunkIsReadingTheRange)
{
  std::mt19937_64 rng(12);
  std::size_t lines = 0, plain = 0;
  for (int round = 0; round < 60; ++round) {
    const std::string text      = random_log(rng, 1 + rng() % 400, round % 3 != 0);
    const auto layout           = layout_of(header_line);
    const std::size_t from      = round % 4 == 0 ? 0 : line_start_at(text, rng() % text.size());
    const std::size_t to        = round % 5 == 0 ? text.size() : from + rng() % (text.size() - from + 10);
    const lines_read_ahead want = on_host(text, from, to, layout);
    lines += lines_in(text, from, to);
    plain += want.size();
    for (const std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{64}, std::size_t{4096},
                                    detail::default_gpu_chunk_bytes}) {
      EXPECT_TRUE(same_read(want, chunk_by_chunk(text, from, to, layout, chunk)))
          << "round " << round << ", chunk " << chunk;
    }
  }
  // Both kinds of line, many of each: the logs are messy, not broken.
  EXPECT_GT(plain, lines / 3) << plain << " plain lines of " << lines;
  EXPECT_GT(lines - plain, lines / 10) << plain << " plain lines of " << lines;
}

TEST(GpuIngestChunks, EdgesOfTheRange)
{
  const std::string text = "a\nbb\n\nccc";
  EXPECT_TRUE(detail::cut_at_line_starts(text, 0, 0, 4).empty());
  EXPECT_TRUE(detail::cut_at_line_starts(text, text.size(), text.size() + 5, 4).empty());
  EXPECT_TRUE(detail::cut_at_line_starts(text, 2, 1, 4).empty());
  // `to` inside a line: that line is the last, whole; `to` at a line start: the line before is.
  auto chunks = detail::cut_at_line_starts(text, 0, 3, 64);
  ASSERT_EQ(chunks.size(), 1U);
  EXPECT_EQ(chunks[0].end, 5U);
  chunks = detail::cut_at_line_starts(text, 0, 2, 64);
  ASSERT_EQ(chunks.size(), 1U);
  EXPECT_EQ(chunks[0].end, 2U);
  // A last line without `\n`, longer than the chunk: a host chunk to the text's end.
  chunks = detail::cut_at_line_starts(text, 6, 100, 2);
  ASSERT_EQ(chunks.size(), 1U);
  EXPECT_FALSE(chunks[0].on_device);
  EXPECT_EQ(chunks[0].end, text.size());
  // An empty line fits a chunk of one byte.
  chunks = detail::cut_at_line_starts(text, 5, 6, 1);
  ASSERT_EQ(chunks.size(), 1U);
  EXPECT_TRUE(chunks[0].on_device);
  EXPECT_THROW(static_cast<void>(detail::cut_at_line_starts(text, 0, 3, 0)), logic_error);
  EXPECT_THROW(static_cast<void>(detail::cut_at_line_starts(text, 0, 3, detail::max_gpu_chunk_bytes + 1)),
               logic_error);
}

/// @brief A text of 4 GiB and a little more, mapped, not written (zero pages): "a\n", a line of
/// zero bytes whose `\n` lies past the 32-bit offsets, then three short lines, the last plain.
class giant_line_text {
 public:
  static constexpr std::size_t giant_end = (std::size_t{1} << 32) + 100;  ///< the `\n` of the line at 2
  giant_line_text()
  {
    if (test::under_sanitizer) {  // its checks of what memchr reads would touch 4 GiB of shadow
      why_ = "a sanitizer would check 4 GiB read by memchr";
      return;
    }
    const std::string tail = "b\nc\nS1,2025-01-02,E,AE,H100-SXM,5,,,,\n";
    size_                  = giant_end + 1 + tail.size();
    void* mapped =
        mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapped == MAP_FAILED) {
      why_ = "cannot map " + std::to_string(size_) + " bytes: " + std::strerror(errno);
      return;
    }
    base_ = static_cast<char*>(mapped);
    std::memcpy(base_, "a\n", 2);
    base_[giant_end] = '\n';
    std::memcpy(base_ + giant_end + 1, tail.data(), tail.size());
  }
  giant_line_text(const giant_line_text&)            = delete;
  giant_line_text& operator=(const giant_line_text&) = delete;
  ~giant_line_text()
  {
    if (base_ != nullptr) { munmap(base_, size_); }
  }
  /// Empty where it could not be mapped (`why`).
  [[nodiscard]] std::string_view text() const
  {
    return base_ == nullptr ? std::string_view() : std::string_view(base_, size_);
  }
  [[nodiscard]] const std::string& why() const { return why_; }

 private:
  char* base_       = nullptr;
  std::size_t size_ = 0;
  std::string why_;
};

// A window holds whole lines, so one line of 4 GiB (no `\n`: a file with CR line ends) makes it
// longer than the 32-bit offsets of `lines_read_ahead`, with lines after it: those lines are the
// host's too (read_ahead_on_host lists none of them). They were a device chunk, whose line starts
// and spans the reader cut to 32 bits.
TEST(GpuIngestChunks, LinesPastFourGibibytesAreTheHosts)
{
  const giant_line_text giant;
  const std::string_view text = giant.text();
  if (text.empty()) { GTEST_SKIP() << giant.why(); }
  constexpr std::size_t giant_end = giant_line_text::giant_end;
  for (const std::size_t from : {std::size_t{0}, std::size_t{2}}) {
    for (const std::size_t to : {text.size(), giant_end - 5}) {
      SCOPED_TRACE("from " + std::to_string(from) + " to " + std::to_string(to));
      const auto chunks = detail::cut_at_line_starts(text, from, to, 4096);
      ASSERT_FALSE(chunks.empty());
      std::size_t at = from;
      for (const detail::line_chunk& chunk : chunks) {
        EXPECT_EQ(chunk.begin, at);
        if (chunk.on_device) {
          EXPECT_LE(chunk.end - from, std::size_t{1} << 32) << "a device chunk past the 32-bit offsets";
        }
        at = chunk.end;
      }
      EXPECT_EQ(at, to == text.size() ? text.size() : giant_end + 1)
          << "the chunks end with the range's last line";
      EXPECT_FALSE(chunks.back().on_device);
    }
  }
}

// ---- on the GPU -------------------------------------------------------------------------------

class GpuIngest : public ::testing::Test {
 protected:
  void SetUp() override
  {
    std::string why;
    if (!gpu_available(&why)) { GTEST_SKIP() << "no usable GPU: " << why; }
  }

  /// @brief Reads [from, to) on the GPU with chunks of @p chunk_bytes and checks it against the host.
  static void expect_same_read(std::string_view text, std::size_t from, std::size_t to,
                               const device_csv::line_layout& layout, std::size_t chunk_bytes,
                               const std::string& context)
  {
    const auto reader = detail::make_gpu_line_reader(bundled_tables(), chunk_bytes);
    lines_read_ahead got;
    got.line_start.assign(3, 7);  // left over from an earlier read: `read` starts afresh
    reader->read(text, from, to, layout, got);
    EXPECT_TRUE(same_read(on_host(text, from, to, layout), got)) << context << ", chunk " << chunk_bytes;
  }
};

TEST_F(GpuIngest, RandomMessyLogsAtEveryChunkSize)
{
  std::mt19937_64 rng(21);
  const auto layout = layout_of(header_line);
  for (const std::size_t lines : {1, 31, 32, 33, 255, 256, 257, 3000}) {
    const std::string text = random_log(rng, lines, lines % 2 == 1);
    const std::size_t from = line_start_at(text, rng() % text.size());
    for (const std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{64}, std::size_t{4096},
                                    detail::default_gpu_chunk_bytes}) {
      expect_same_read(text, 0, text.size(), layout, chunk, std::to_string(lines) + " lines, whole");
      expect_same_read(text, from, from + rng() % (text.size() - from + 1), layout, chunk,
                       std::to_string(lines) + " lines, from " + std::to_string(from));
    }
  }
}

TEST_F(GpuIngest, EmptyRanges)
{
  const std::string text = std::string(header_line) + "\nS1,2025-01-02,E,AE,H100-SXM,5,,,,\n";
  const auto layout      = layout_of(header_line);
  for (const std::size_t chunk : seam_chunk_sizes) {
    expect_same_read(text, 0, 0, layout, chunk, "from = to = 0");
    expect_same_read(text, text.size(), text.size() + 3, layout, chunk, "from at the text's end");
    expect_same_read("", 0, 10, layout, chunk, "empty text");
  }
}

TEST_F(GpuIngest, OneLineWithoutFinalNewline)
{
  const std::string line = "S1,2025-01-02,E,AE,H100-SXM,5,,,,";
  const std::string text = std::string(header_line) + "\n" + line;
  const auto layout      = layout_of(header_line);
  const std::size_t from = text.size() - line.size();
  for (const std::size_t chunk :
       {std::size_t{7}, line.size() - 1, line.size(), line.size() + 1, std::size_t{4096}}) {
    expect_same_read(text, from, text.size(), layout, chunk, "the last line alone");
    expect_same_read(text, from, from + 1, layout, chunk, "the last line, to its first byte");
    expect_same_read(text, 0, text.size(), layout, chunk, "header and line");
  }
  // And that line is read (not the host's): the test reads values, not only flags.
  const lines_read_ahead host = on_host(text, from, text.size(), layout);
  ASSERT_EQ(host.size(), 1U);  // the line is plain
}

TEST_F(GpuIngest, LinesAtAndAcrossChunkSeams)
{
  // Lines of 63, 64 and 65 bytes (their `\n` included) and empty lines: with chunks of 64 bytes a
  // `\n` falls at, before and after each seam; with 7-byte chunks every line is longer than one.
  const auto layout  = layout_of(header_line);
  const auto line_of = [](std::size_t bytes, int k) {
    std::string line = "S" + std::to_string(k) + ",2025-01-02,ENT,AE,H100-SXM,5,,,";
    line += std::string(bytes - 2 - line.size(), 'X');  // the exporter pads it out
    return line + ",\n";
  };
  std::string text = std::string(header_line) + "\n";
  text += std::string(64 - text.size() % 64, '\n');  // the first line starts at a seam
  for (int k = 0; k < 60; ++k) {
    text += line_of(63 + static_cast<std::size_t>(k % 3), k) + (k % 7 == 0 ? "\n" : "");
  }
  for (const std::size_t chunk : {std::size_t{7}, std::size_t{63}, std::size_t{64}, std::size_t{65},
                                  std::size_t{128}, std::size_t{4096}}) {
    expect_same_read(text, 0, text.size(), layout, chunk, "seams");
    expect_same_read(text, 128, text.size() - 64, layout, chunk, "seams, from a seam");
  }
}

// A chunk averaging under 16 bytes a line (blank lines, short junk) is read on the host, so that
// its results (101 bytes a line) do not take many times its text in pinned and device memory;
// beside it, chunks of plain lines are the device's, and the whole reads as on the host: runs
// of blank lines with plain lines inside them, at their edges and after them.
TEST_F(GpuIngest, ChunksOfShortLinesAreReadOnTheHost)
{
  const auto layout = layout_of(header_line);
  const auto plain  = [](int k) { return "S" + std::to_string(k) + ",2025-01-02,ENT,AE,H100-SXM,5,,,,\n"; };
  std::string text  = std::string(header_line) + "\n" + std::string(200000, '\n');
  for (int k = 0; k < 300; ++k) { text += plain(k); }
  for (int k = 300; k < 310; ++k) { text += std::string(5000, '\n') + "x\n,\n" + plain(k); }
  text += std::string(100000, '\n') + plain(310);
  ASSERT_EQ(on_host(text, 0, text.size(), layout).size(), 311U);
  for (const std::size_t chunk : {std::size_t{4096}, std::size_t{65536}, detail::default_gpu_chunk_bytes}) {
    expect_same_read(text, 0, text.size(), layout, chunk, "short lines");
    expect_same_read(text, 150000, text.size() - 50000, layout, chunk, "short lines, inside a run");
  }
}

TEST_F(GpuIngest, CrlfLines)
{
  std::mt19937_64 rng(31);
  std::string text = std::string(header_line) + "\r\n";
  for (int k = 0; k < 500; ++k) {
    std::string line = random_line(rng);
    if (!line.empty() && line.back() == '\r') { line.pop_back(); }
    text += line + "\r\n";
  }
  text += "S9,2025-01-02,E,AE,H100-SXM,5,,,,\r";  // a last line with a CR and no LF
  const auto layout = layout_of(header_line);
  for (const std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{64}, std::size_t{4096}}) {
    expect_same_read(text, 0, text.size(), layout, chunk, "CRLF");
  }
}

TEST_F(GpuIngest, LinesLongerThanTheChunk)
{
  std::mt19937_64 rng(41);
  const auto layout = layout_of(header_line);
  std::string text  = std::string(header_line) + "\n";
  for (int k = 0; k < 200; ++k) {
    text += k % 5 == 0
                ? "S" + std::to_string(k) + ",2025-01-02," + std::string(5000, 'E') + ",AE,H100-SXM,5,,,,"
                : random_line(rng);
    text += '\n';
  }
  text += "S9,2025-01-02," + std::string(9000, 'E') + ",AE,H100-SXM,5,,,,";  // last, no `\n`, long
  for (const std::size_t chunk : {std::size_t{64}, std::size_t{4096}, std::size_t{8192}}) {
    expect_same_read(text, 0, text.size(), layout, chunk, "long lines");
  }
}

// Past a line of 4 GiB, the device lists nothing, as the host
// (GpuIngestChunks.LinesPastFourGibibytesAreTheHosts).
TEST_F(GpuIngest, LinesPastFourGibibytes)
{
  const giant_line_text giant;
  if (giant.text().empty()) { GTEST_SKIP() << giant.why(); }
  const auto layout = layout_of(header_line);
  expect_same_read(giant.text(), 0, giant.text().size(), layout, 4096, "past a line of 4 GiB");
}

TEST_F(GpuIngest, OtherLayouts)
{
  std::mt19937_64 rng(51);
  std::string text;
  for (int k = 0; k < 400; ++k) { text += random_line(rng) + "\n"; }
  // Columns in another order with one of no SPEC column (each line then has a field too few or
  // its values in other places: mostly the host's, a few read), and a layout the device reads
  // nothing with.
  const auto reordered = layout_of("date,shipment_id,entity,country,chip,quantity,pathway,order_id,exporter");
  device_csv::line_layout none{};
  for (const std::size_t chunk : {std::size_t{64}, std::size_t{4096}}) {
    expect_same_read(text, 0, text.size(), reordered, chunk, "reordered header");
    expect_same_read(text, 0, text.size(), none, chunk, "no layout");
  }
}

TEST_F(GpuIngest, GeneratedLogInManyChunksAndOne)
{
  const std::string text      = test::generate_with_bundled(200000, 7).shipments;
  const std::size_t from      = text.find('\n') + 1;
  const auto layout           = layout_of(std::string_view(text).substr(0, from - 1));
  const lines_read_ahead host = on_host(text, from, text.size(), layout);
  ASSERT_EQ(lines_in(text, from, text.size()), 200000U);
  EXPECT_GT(host.size(), 190000U) << "a generated log is nearly all plain";
  const auto reader = detail::make_gpu_line_reader(bundled_tables(), std::size_t{1} << 20);
  lines_read_ahead got;
  for (int again = 0; again < 2; ++again) {  // the reader and `out` reused
    reader->read(text, from, text.size(), layout, got);
    EXPECT_TRUE(same_read(host, got)) << "1 MiB chunks, read " << again;
  }
  expect_same_read(text, from, text.size(), layout, detail::default_gpu_chunk_bytes, "one chunk");
}

TEST(GpuIngestUnavailable, NamesWhy)
{
  std::string why;
  if (gpu_available(&why)) { GTEST_SKIP() << "a GPU is usable here"; }
  try {
    static_cast<void>(detail::make_gpu_line_reader(bundled_tables()));
    ADD_FAILURE() << "a reader without a GPU";
  } catch (const device_error& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();
  }
}

/// `report` with the GPU ingest asked for (`report_options::gpu_ingest`, or `CAPLEDGER_GPU_INGEST=1`)
/// writes the same files and rejects as without it, on either backend; stderr says whether the GPU
/// read the lines or, where no GPU is usable, why the host read every line. On a card this runs
/// the whole GPU ingest inside a report.
TEST(GpuIngestReport, TheSameReportWithTheGpuIngestAskedFor)
{
  namespace fs = std::filesystem;
  const test::scratch_dir dir;
  const test::generated_log log = test::generate_with_bundled(3000, 17, true);
  report_options options;
  options.inputs = {dir.write("shipments.csv", log.shipments + "BAD1,2025-13-01,E,AE,H100-SXM,1,,,,\n"),
                    dir.write("more.csv", std::string(header_line) + "\nS-1,2025-03-01,E1,de,a100,3,,,,\n")};
  options.entities_path = dir.write("entities.csv", log.entities);
  const bool usable     = gpu_available();
  const auto run = [&](const std::string& backend, std::optional<bool> gpu_ingest, const std::string& tag) {
    report_options o = options;
    o.backend        = backend;
    o.gpu_ingest     = gpu_ingest;
    o.out_dir        = dir.path("out-" + tag);
    o.rejects_path   = dir.path("rejects-" + tag + ".csv");
    std::ostringstream out, notes;
    EXPECT_EQ(run_report(o, out, notes), 1) << tag << ": " << notes.str();  // the log breaks rules
    return notes.str();
  };
  for (const std::string backend : {"cpu", "auto"}) {
    SCOPED_TRACE("backend " + backend);
    const std::string plain_notes = run(backend, false, backend + "-plain");
    EXPECT_EQ(plain_notes.find("GPU ingest"), std::string::npos) << plain_notes;
    const std::string notes = run(backend, true, backend + "-ingest");
    EXPECT_NE(
        notes.find(usable ? "capledger: note: the GPU ingest (experimental) reads plain lines on the GPU\n"
                          : "capledger: note: the GPU ingest was asked for, but "),
        std::string::npos)
        << notes;
    std::size_t compared = 0;
    for (const auto& file : fs::directory_iterator(dir.root() / ("out-" + backend + "-plain"))) {
      const std::string name = file.path().filename().string();
      EXPECT_EQ(test::read_text(dir.root() / ("out-" + backend + "-ingest") / name),
                test::read_text(file.path()))
          << name;
      ++compared;
    }
    EXPECT_EQ(compared, 8U);
    const std::string rejects = test::read_text(dir.root() / ("rejects-" + backend + "-plain.csv"));
    EXPECT_NE(rejects.find("BAD_DATE"), std::string::npos);
    EXPECT_EQ(test::read_text(dir.root() / ("rejects-" + backend + "-ingest.csv")), rejects);
  }
  // Asked for by the environment (only "1" asks).
  for (const char* value : {"1", "0"}) {
    ::setenv("CAPLEDGER_GPU_INGEST", value, 1);
    const std::string notes = run("cpu", std::nullopt, std::string("env-") + value);
    ::unsetenv("CAPLEDGER_GPU_INGEST");
    EXPECT_EQ(notes.find("GPU ingest") != std::string::npos, std::string(value) == "1")
        << value << ": " << notes;
  }
}

/// A GPU that fails while a log is read (`gpu_read_ahead`, as `report` runs the GPU ingest): from
/// that window on the parsing threads read every line, the log is the same, the GPU is not asked
/// again, and its error is kept for the note. Runs everywhere (the failing GPU is a stand-in).
TEST(GpuIngestFallback, AFailingGpuCostsTimeNotTheLog)
{
  struct failing_reader : detail::gpu_line_reader {
    int calls      = 0;
    int fail_at    = 0;
    bool host_side = false;  // host memory short for the results, not the device
    void read(std::string_view text, std::size_t from, std::size_t to, const device_csv::line_layout& layout,
              lines_read_ahead& out) override
    {
      if (++calls >= fail_at) {
        if (host_side) { throw std::bad_alloc(); }
        throw gpu_memory_short("cudaMalloc: out of memory (a stand-in)");
      }
      detail::read_ahead_on_host(text, from, to, layout, bundled_tables(), out);
    }
  };
  const std::string text =
      test::generate_with_bundled(8000, 19).shipments + "B1,2025-02-30,E,AE,H100-SXM,1,,,,\n";
  const auto build =
      [&](const std::function<void(std::string_view, std::size_t, std::size_t, const device_csv::line_layout&,
                                   lines_read_ahead&)>& read_ahead) {
        ingest_options options;
        options.keep_rejects = true;
        options.chunk_bytes  = 4096;
        options.read_ahead   = read_ahead;
        shipment_log_builder builder(test::bundled().countries, test::bundled().chips, options);
        builder.add_text("log.csv", text);
        return builder.finish();
      };
  const shipment_log expected = build(nullptr);
  ASSERT_EQ(expected.columns.size(), 8000);
  ASSERT_EQ(expected.rejects.size(), 1U);
  // Windows grow with the threads: count this machine's (a reader that never fails), then fail at
  // the first, the second and the last (5 was past the last at 8 threads and more).
  int windows = 0;
  static_cast<void>(build([&](std::string_view t, std::size_t from, std::size_t to,
                              const device_csv::line_layout& layout, lines_read_ahead& out) {
    ++windows;
    detail::read_ahead_on_host(t, from, to, layout, bundled_tables(), out);
  }));
  ASSERT_GE(windows, 3);
  for (const auto& [fail_at, host_side] :
       {std::pair{1, false}, std::pair{2, false}, std::pair{windows, false}, std::pair{1, true},
        std::pair{windows - 1, true}}) {
    SCOPED_TRACE("the GPU fails at its call " + std::to_string(fail_at) +
                 (host_side ? ", host memory short" : ""));
    auto reader                    = std::make_unique<failing_reader>();
    reader->fail_at                = fail_at;
    reader->host_side              = host_side;
    const failing_reader& stand_in = *reader;
    detail::gpu_read_ahead gpu_ingest(std::move(reader));
    const shipment_log log =
        build([&](std::string_view t, std::size_t from, std::size_t to, const device_csv::line_layout& layout,
                  lines_read_ahead& out) { gpu_ingest.read(t, from, to, layout, out); });
    EXPECT_EQ(stand_in.calls, fail_at);  // not asked again once it failed
    ASSERT_TRUE(gpu_ingest.failure().has_value());
    EXPECT_EQ(*gpu_ingest.failure(), host_side ? "host memory short for the lines read on the GPU"
                                               : "cudaMalloc: out of memory (a stand-in)");
    const shipment_columns& a = expected.columns;
    const shipment_columns& b = log.columns;
    EXPECT_TRUE(a.date == b.date && a.entity == b.entity && a.country == b.country && a.chip == b.chip &&
                a.pathway == b.pathway && a.quantity == b.quantity && a.tpp == b.tpp && a.order == b.order &&
                a.exporter == b.exporter);
    EXPECT_EQ(log.id_bytes, expected.id_bytes);
    EXPECT_EQ(log.source_line, expected.source_line);
    ASSERT_EQ(log.rejects.size(), 1U);
    EXPECT_EQ(log.rejects[0].line, expected.rejects[0].line);
    EXPECT_EQ(log.rejects[0].reason, "BAD_DATE");
  }
}

// Once released (the log read), the reader is gone: a read reads nothing ahead and is no failure.
TEST(GpuIngestFallback, ReleasedReaderReadsNothingAhead)
{
  struct counting_reader : detail::gpu_line_reader {
    int* calls = nullptr;
    void read(std::string_view text, std::size_t from, std::size_t to, const device_csv::line_layout& layout,
              lines_read_ahead& out) override
    {
      ++*calls;
      detail::read_ahead_on_host(text, from, to, layout, bundled_tables(), out);
    }
  };
  const std::string text               = test::generate_with_bundled(50, 3).shipments;
  const std::size_t body               = text.find('\n') + 1;
  const device_csv::line_layout layout = layout_of(std::string_view(text).substr(0, body - 1));
  int calls                            = 0;
  auto reader                          = std::make_unique<counting_reader>();
  reader->calls                        = &calls;
  detail::gpu_read_ahead gpu_ingest(std::move(reader));
  lines_read_ahead out;
  gpu_ingest.read(text, body, text.size(), layout, out);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(out.size(), 50U);
  gpu_ingest.release();
  gpu_ingest.read(text, body, text.size(), layout, out);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(out.size(), 0U);
  EXPECT_EQ(out.from, body);
  EXPECT_FALSE(gpu_ingest.failure().has_value());
}

}  // namespace
