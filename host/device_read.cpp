#include "device_read.hpp"

#include "string_index.hpp"

#include <capledger/error.hpp>

#include <algorithm>
#include <cstring>
#include <new>

namespace capledger::detail {

std::optional<device_csv::tables> make_device_tables(const country_table& countries, const chip_table& chips)
{
  device_csv::tables t{};
  std::fill(std::begin(t.country_by_letters), std::end(t.country_by_letters), std::int16_t{-1});
  for (const auto& [iso, code] : countries.code_of) {
    if (iso.size() != 2 || iso[0] < 'A' || iso[0] > 'Z' || iso[1] < 'A' || iso[1] > 'Z') {
      return std::nullopt;
    }
    t.country_by_letters[(iso[0] - 'A') * 26 + (iso[1] - 'A')] = static_cast<std::int16_t>(code);
  }
  for (const auto& [key, code] : chips.code_of) {
    const capledger::chip& row = chips.rows[code];
    if (!row.known || row.tpp <= 0) { continue; }  // priced per line only: the host's
    if (t.chip_count == device_csv::max_chips || key.size() > device_csv::chip_key_bytes) {
      return std::nullopt;
    }
    std::copy(key.begin(), key.end(), t.chip_key[t.chip_count]);
    t.chip_key_length[t.chip_count] = static_cast<std::uint8_t>(key.size());
    t.chip_code[t.chip_count]       = code;
    t.chip_tpp[t.chip_count]        = row.tpp;
    ++t.chip_count;
  }
  const hash_key& key = process_hash_key();
  t.hash_seed         = key.seed;
  t.hash_block        = key.block;
  return t;
}

device_csv::line_layout make_line_layout(const csv_header& header)
{
  device_csv::line_layout layout{};
  std::fill(std::begin(layout.column_of_field), std::end(layout.column_of_field), std::int8_t{-1});
  if (header.size() > device_csv::max_fields || header.ends_unnamed()) { return layout; }
  for (int c = 0; c < device_csv::column_count; ++c) {
    const int field = header.find(device_csv::column_names[c]);
    if (field < 0 && c <= device_csv::c_quantity) { return layout; }  // the host's MISSING_COLUMN
    if (field >= 0) { layout.column_of_field[field] = static_cast<std::int8_t>(c); }
  }
  layout.field_count = header.size();
  return layout;
}

void read_ahead_on_host(std::string_view text, std::size_t from, std::size_t to,
                        const device_csv::line_layout& layout, const device_csv::tables& tables,
                        lines_read_ahead& out)
{
  out.clear();
  out.from = from;
  append_read_on_host(text, from, to, layout, tables, out);
}

void append_read_on_host(std::string_view text, std::size_t begin, std::size_t to,
                         const device_csv::line_layout& layout, const device_csv::tables& tables,
                         lines_read_ahead& out)
{
  const std::size_t from = out.from;
  const char* base       = text.data() + from;
  const std::size_t size = text.size() - from;
  device_csv::plain_line line;
  for (std::size_t at = begin - from; from + at < to && at < size;) {
    const void* newline = std::memchr(base + at, '\n', size - at);
    const std::size_t end =
        newline == nullptr ? size : static_cast<std::size_t>(static_cast<const char*>(newline) - base);
    if (end > UINT32_MAX) { break; }  // a line past the offsets' range: the host's (it is one bad line)
    line = device_csv::plain_line{};
    if (device_csv::read_plain_line(base, static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(end),
                                    layout, tables, line)) {
      out.line_start.push_back(static_cast<std::uint32_t>(at));
      out.values.push_back(line);
    }
    at = end + 1;
  }
}

std::vector<line_chunk> cut_at_line_starts(std::string_view text, std::size_t from, std::size_t to,
                                           std::size_t chunk_bytes)
{
  CAPLEDGER_EXPECTS(chunk_bytes > 0 && chunk_bytes <= max_gpu_chunk_bytes,
                    "a GPU line reader's chunk holds 1 byte to max_gpu_chunk_bytes");
  std::vector<line_chunk> chunks;
  if (from >= text.size() || to <= from) { return chunks; }
  const char* base       = text.data();
  const std::size_t size = text.size();
  // The range's last line ends at the first `\n` from byte to - 1 on (or at the text's end).
  const std::size_t last_byte = std::min(to, size) - 1;
  const void* last_newline    = std::memchr(base + last_byte, '\n', size - last_byte);
  const std::size_t last_end  = last_newline == nullptr
                                    ? size
                                    : static_cast<std::size_t>(static_cast<const char*>(last_newline) - base);
  const std::size_t stop      = last_newline == nullptr ? size : last_end + 1;
  // Lines that end past the 32-bit offsets are the host's (which lists none of them): from the
  // first line whose `\n` lies beyond them on. That is not only the last line: a window holds
  // whole lines, and one of 4 GiB without `\n` (a file with CR line ends) makes it longer.
  std::size_t device_stop = stop;
  if (last_end - from > UINT32_MAX) {
    const void* before = memrchr(base + from, '\n', std::size_t{UINT32_MAX} + 1);
    device_stop =
        before == nullptr ? from : static_cast<std::size_t>(static_cast<const char*>(before) - base) + 1;
  }
  for (std::size_t begin = from; begin < device_stop;) {
    if (device_stop - begin <= chunk_bytes) {
      chunks.push_back({begin, device_stop, true});
      break;
    }
    if (const void* newline = memrchr(base + begin, '\n', chunk_bytes); newline != nullptr) {
      const auto end = static_cast<std::size_t>(static_cast<const char*>(newline) - base) + 1;
      chunks.push_back({begin, end, true});
      begin = end;
      continue;
    }
    // A line longer than a chunk: the host's, whole.
    const void* newline   = std::memchr(base + begin + chunk_bytes, '\n', device_stop - begin - chunk_bytes);
    const std::size_t end = newline == nullptr
                                ? device_stop
                                : static_cast<std::size_t>(static_cast<const char*>(newline) - base) + 1;
    chunks.push_back({begin, end, false});
    begin = end;
  }
  if (device_stop < stop) { chunks.push_back({device_stop, stop, false}); }
  return chunks;
}

void gpu_read_ahead::read(std::string_view text, std::size_t from, std::size_t to,
                          const device_csv::line_layout& layout, lines_read_ahead& out)
{
  if (reader_ && !failure()) {
    try {
      reader_->read(text, from, to, layout, out);
      return;
    } catch (const device_error& e) {
      const std::lock_guard<std::mutex> lock(mutex_);
      failure_ = e.what();
    } catch (const std::bad_alloc&) {
      const std::lock_guard<std::mutex> lock(mutex_);
      failure_ = "host memory short for the lines read on the GPU";
    }
  }
  out.clear();  // no line read ahead: the parsing threads read them all
  out.from = from;
}

void gpu_read_ahead::release()
{
  reader_.reset();
}

std::optional<std::string> gpu_read_ahead::failure() const
{
  const std::lock_guard<std::mutex> lock(mutex_);
  return failure_;
}

}  // namespace capledger::detail
