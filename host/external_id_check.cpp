/// @file external_id_check.cpp
/// @brief Repeated shipment ids found out of memory: partitioned temporary files, sorted one by one.
#include "external_id_check.hpp"
#include "file_io.hpp"

#include <capledger/error.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace capledger::detail {

external_id_check::~external_id_check()
{
  for (auto& part : parts_) {
    if (part.fd >= 0) { ::close(part.fd); }
  }
}

void external_id_check::add(std::uint64_t hash, std::uint64_t offset)
{
  part& p = parts_[hash >> 56];
  p.buffer.push_back({hash, offset});
  if (p.buffer.size() >= buffered_) { spill(p); }
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> external_id_check::repeats(
    const std::function<std::string(std::uint64_t)>& id_at)
{
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  std::vector<entry> entries;
  for (auto& p : parts_) {
    entries.resize(p.written);
    const auto bytes = static_cast<ssize_t>(p.written * sizeof(entry));
    if (p.written > 0 && ::pread(p.fd, entries.data(), static_cast<std::size_t>(bytes), 0) != bytes) {
      throw config_error("cannot read back a temporary file");
    }
    entries.insert(entries.end(), p.buffer.begin(), p.buffer.end());  // the part never written out
    p.buffer = {};
    std::sort(entries.begin(), entries.end(), [](const entry& a, const entry& b) {
      return a.hash != b.hash ? a.hash < b.hash : a.offset < b.offset;
    });
    for (std::size_t run = 0; run < entries.size();) {
      std::size_t end = run + 1;
      while (end < entries.size() && entries[end].hash == entries[run].hash) { ++end; }
      if (end - run > 1) {  // equal hashes: compare the ids themselves, in input order
        std::vector<std::pair<std::string, std::uint64_t>> firsts;  // distinct ids and their first use
        for (std::size_t k = run; k < end; ++k) {
          std::string id = id_at(entries[k].offset);
          const auto same =
              std::find_if(firsts.begin(), firsts.end(), [&](const auto& f) { return f.first == id; });
          if (same != firsts.end()) {
            out.emplace_back(entries[k].offset, same->second);
          } else {
            firsts.emplace_back(std::move(id), entries[k].offset);
          }
        }
      }
      run = end;
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void external_id_check::spill(part& p)
{
  if (p.fd < 0) { p.fd = anonymous_temp_file(); }
  const auto bytes = static_cast<ssize_t>(p.buffer.size() * sizeof(entry));
  if (bytes > 0 && ::write(p.fd, p.buffer.data(), static_cast<std::size_t>(bytes)) != bytes) {
    throw config_error("cannot write a temporary file (disk full?)");
  }
  p.written += p.buffer.size();
  p.buffer.clear();
}

}  // namespace capledger::detail
