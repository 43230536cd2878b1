/// @file file_io.cpp
/// @brief Reading inputs, hashing them, and writing outputs atomically (SPEC §5).
#include <capledger/error.hpp>
#include <capledger/shipments.hpp>

#include "file_io.hpp"

#include "many_cores.hpp"
#include "terminal_text.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

namespace capledger {

std::string read_input_file(const std::string& path)
{
  if (path == "-") {
    std::ostringstream buffer;
    buffer << std::cin.rdbuf();
    if (std::cin.bad()) { throw config_error("-: cannot read standard input"); }
    return std::move(buffer).str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) { throw config_error(path + ": cannot open: " + std::strerror(errno)); }
  // A directory opens, then reports a size no string can take: say what it is instead.
  std::error_code not_known;
  if (std::filesystem::is_directory(path, not_known)) {
    throw config_error(path + ": read error: Is a directory");
  }
  std::string text;
  in.seekg(0, std::ios::end);
  const auto size = in.tellg();
  if (size > 0) {
    text.resize(static_cast<std::size_t>(size));
    in.seekg(0, std::ios::beg);
    in.read(text.data(), size);
  } else {  // pipes and special files report no size
    in.seekg(0, std::ios::beg);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (in.bad()) { throw config_error(path + ": read error"); }
  return text;
}

namespace detail {

namespace {

std::string temporary_dir()
{
  const char* tmp = std::getenv("TMPDIR");
  return tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
}

/// Whether `renameat2` failed with @p error because the kernel or the file system lacks its flags
/// (RENAME_EXCHANGE, RENAME_NOREPLACE), so that a path without them may be taken instead.
bool rename_flags_unsupported(int error)
{
  return error == EINVAL || error == ENOSYS || error == EOPNOTSUPP;
}

}  // namespace

temporary_space temporary_space_here()
{
  temporary_space space;
  space.dir = temporary_dir();
  struct statfs fs_info {};
  if (::statfs(space.dir.c_str(), &fs_info) == 0) {
    space.available =
        static_cast<std::uint64_t>(fs_info.f_bavail) * static_cast<std::uint64_t>(fs_info.f_bsize);
    constexpr long tmpfs_magic = 0x01021994;  // TMPFS_MAGIC, <linux/magic.h>
    constexpr long ramfs_magic = 0x858458f6;  // RAMFS_MAGIC
    space.in_memory =
        static_cast<long>(fs_info.f_type) == tmpfs_magic || static_cast<long>(fs_info.f_type) == ramfs_magic;
  }
  return space;
}

void check_open_file_room(std::uint64_t needed)
{
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY ||
      limit.rlim_cur >= needed) {
    return;
  }
  if (limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= needed) {
    limit.rlim_cur = static_cast<rlim_t>(needed);
    if (::setrlimit(RLIMIT_NOFILE, &limit) == 0) { return; }
  }
  throw config_error("the out-of-memory id check keeps up to " + std::to_string(needed) +
                     " files open, and the limit on open files is " + std::to_string(limit.rlim_cur) +
                     " (hard limit " + std::to_string(limit.rlim_max) + "); raise it with ulimit -n");
}

std::string gigabytes(std::uint64_t bytes)
{
  std::ostringstream text;
  text.precision(1);
  text << std::fixed << static_cast<double>(bytes) / 1e9 << " GB";
  return text.str();
}

void check_temporary_room(std::uint64_t needed, const temporary_space& space, std::ostream& diagnostics)
{
  if (space.available > 0 && space.available < needed + needed / 10) {
    throw config_error("the out-of-memory id check needs about " + gigabytes(needed) +
                       " of temporary files in " + space.dir + ", which has " + gigabytes(space.available) +
                       " free; set TMPDIR to a directory with more room");
  }
  if (space.in_memory) {
    diagnostics << "capledger: note: " << space.dir << " is in memory (tmpfs): the id check's "
                << gigabytes(needed)
                << " of temporary files will take memory; set TMPDIR to a disk to spare it\n";
  }
}

void unique_fd::reset(int fd) noexcept
{
  if (fd_ >= 0) { ::close(fd_); }
  fd_ = fd;
}

int unique_fd::close() noexcept
{
  return ::close(release());
}

unique_fd anonymous_temp_file()
{
  const std::string dir = temporary_dir();
  // A file with no name at all where the file system can (no moment where a kill leaves it).
  unique_fd unnamed(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (unnamed.get() >= 0) { return unnamed; }
  std::string name = dir + "/capledger-XXXXXX";
  unique_fd file(::mkostemp(name.data(), O_CLOEXEC));
  if (file.get() < 0) {
    throw config_error("cannot create a temporary file in " + dir + ": " + std::strerror(errno));
  }
  ::unlink(name.c_str());  // gone when closed, whatever happens
  return file;
}

namespace {

/// Writes all of @p bytes to @p fd. @throw config_error naming @p name
void write_all(int fd, std::string_view bytes, const std::string& name)
{
  for (std::size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) { continue; }
    if (n <= 0) { throw config_error(name + ": write failed: " + std::strerror(errno)); }
    done += static_cast<std::size_t>(n);
  }
}

/// Copies what is left to read from @p in to @p out. @return the bytes copied. @throw config_error
std::size_t copy_rest(int in, int out, const std::string& name)
{
  std::vector<char> buffer(std::size_t{1} << 20);
  std::size_t total = 0;
  for (;;) {
    const ssize_t n = ::read(in, buffer.data(), buffer.size());
    if (n == 0) { return total; }
    if (n < 0) {
      if (errno == EINTR) { continue; }
      throw config_error(name + ": read error: " + std::strerror(errno));
    }
    write_all(out, std::string_view(buffer.data(), static_cast<std::size_t>(n)),
              name + " (its copy in a temporary file)");
    total += static_cast<std::size_t>(n);
  }
}

}  // namespace

namespace {

/// The mapped inputs `input_path_at` searches: fixed storage a signal handler can read. A slot is
/// free (0), being filled (1) or in use (2).
struct mapped_input {
  std::atomic<int> state{0};
  std::uintptr_t begin = 0, end = 0;
  char path[4096]{};
};
constexpr int mapped_slots = 64;
mapped_input mapped[mapped_slots];

}  // namespace

const char* input_path_at(const void* address) noexcept
{
  const auto at = reinterpret_cast<std::uintptr_t>(address);
  for (const mapped_input& m : mapped) {
    if (m.state.load(std::memory_order_acquire) == 2 && at >= m.begin && at < m.end) { return m.path; }
  }
  return nullptr;
}

input_bytes::input_bytes(const std::string& path)
{
  const bool from_stdin = path == "-";
  const int fd          = from_stdin ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) { throw config_error(path + ": cannot open: " + std::strerror(errno)); }
  const unique_fd opened(from_stdin ? -1 : fd);
  // A regular file read from its start; stdin may be one too (`< log.csv`), unless something
  // read part of it before (then only the rest is the input: copied like a pipe's).
  struct stat info {};
  const bool regular =
      ::fstat(fd, &info) == 0 && S_ISREG(info.st_mode) && (!from_stdin || ::lseek(fd, 0, SEEK_CUR) == 0);
  if (regular) {
    map(fd, static_cast<std::size_t>(info.st_size), path);
    return;
  }
  // A pipe (`zcat log.csv.gz | capledger report -`, `<(...)`): copied into an unlinked temporary
  // file and mapped from there (the mapping keeps the file), so that a log of any size costs
  // disk, not memory.
  const unique_fd spooled = anonymous_temp_file();
  map(spooled.get(), copy_rest(fd, spooled.get(), path), path);
}

void input_bytes::map(int fd, std::size_t size, const std::string& path)
{
  if (size == 0) { return; }  // nothing to map: an empty view
  void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (mapping == MAP_FAILED) {
    throw config_error(std::string("cannot map an input: ") + std::strerror(errno));
  }
  ::madvise(mapping, size, MADV_SEQUENTIAL);
  mapping_ = mapping;
  data_    = static_cast<const char*>(mapping);
  size_    = size;
  // Escaped now, as the stderr guard would: the handler writes it around the guard.
  const std::string shown = message_text(path);
  for (int s = 0; s < mapped_slots && shown.size() < sizeof(mapped_input::path); ++s) {
    int expected = 0;
    if (mapped[s].state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
      mapped[s].begin = reinterpret_cast<std::uintptr_t>(mapping);
      mapped[s].end   = mapped[s].begin + size;
      std::memcpy(mapped[s].path, shown.c_str(), shown.size() + 1);
      mapped[s].state.store(2, std::memory_order_release);
      registered_ = s;
      break;
    }
  }
}

input_bytes::~input_bytes()
{
  if (registered_ >= 0) { mapped[registered_].state.store(0, std::memory_order_release); }
  if (mapping_ != nullptr) { ::munmap(mapping_, size_); }
}

void input_bytes::release_before(std::size_t offset) noexcept
{
  // Whole pages only: the one holding `offset` is still being read.
  const std::size_t end = std::min(offset, size_) / page_size() * page_size();
  if (end <= released_) { return; }
  release(released_, end);
  released_ = end;
}

void input_bytes::release(std::size_t begin, std::size_t end) noexcept
{
  if (mapping_ == nullptr) { return; }
  // Every page the range touches, the partly used ones at its ends too: bytes of those that are
  // read again come back from the page cache.
  const std::size_t page  = page_size();
  const std::size_t first = begin / page * page;
  const std::size_t last  = (std::min(end, size_) + page - 1) / page * page;  // the mapping ends on a page
  if (last > first) { ::madvise(static_cast<char*>(mapping_) + first, last - first, MADV_DONTNEED); }
}

std::size_t input_bytes::page_size() noexcept
{
  static const auto size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

void advise_huge_pages(const void* data, std::size_t bytes) noexcept
{
  constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
  const auto begin              = (reinterpret_cast<std::uintptr_t>(data) + huge - 1) & ~(huge - 1);
  const auto end                = (reinterpret_cast<std::uintptr_t>(data) + bytes) & ~(huge - 1);
  if (data != nullptr && end > begin) {
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
}

namespace {

/// The first number in @p path (a /proc or /sys file), if it starts with one.
std::optional<std::uint64_t> number_in(const char* path)
{
  std::ifstream in(path);
  std::uint64_t value = 0;
  if (in >> value) { return value; }
  return std::nullopt;
}

}  // namespace

std::uint64_t available_memory()
{
  std::uint64_t available = 0;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    std::uint64_t kib = 0;
    meminfo >> kib;
    if (key == "MemAvailable:") {
      available = kib * 1024;
      break;
    }
    meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  // A container's limit: its room is the limit less what the cgroup already uses ("max", no
  // limit, reads as no number; v1 writes a huge number instead).
  for (const auto& [limit_path, usage_path] :
       {std::pair{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
        std::pair{"/sys/fs/cgroup/memory/memory.limit_in_bytes",
                  "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    const auto limit = number_in(limit_path);
    if (!limit) { continue; }
    const std::uint64_t used = number_in(usage_path).value_or(0);
    const std::uint64_t room = *limit > used ? *limit - used : 1;  // 1, not 0 (unknown): full
    if (available == 0 || room < available) { available = room; }
  }
  return available;
}

namespace {

#ifndef MADV_POPULATE_WRITE
constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14; older headers lack the name
#endif

/// `populate_pages`; @p may_write: where the kernel lacks the advice, write a zero to each page.
void populate(void* data, std::size_t bytes, bool may_write)
{
  constexpr std::size_t slice_bytes = std::size_t{16} << 20;
  const auto page                   = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin                  = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t first        = (begin + page - 1) / page * page;  // whole pages only: the
  const std::uintptr_t last         = (begin + bytes) / page * page;     // ends may hold other data
  if (data == nullptr || last <= first) { return; }
  const std::size_t pages   = (last - first) / page;
  const std::size_t threads = std::clamp<std::size_t>(
      (last - first) / slice_bytes, 1, std::min(8U, std::max(1U, std::thread::hardware_concurrency())));
  auto populate_slice = [&](std::size_t t) {
    const std::uintptr_t from = first + pages * t / threads * page;
    const std::uintptr_t to   = first + pages * (t + 1) / threads * page;
    if (to == from || ::madvise(reinterpret_cast<void*>(from), to - from, MADV_POPULATE_WRITE) == 0 ||
        !may_write) {
      return;
    }
    // No such advice (an older kernel): write to each page.
    for (std::uintptr_t at = from; at < to; at += page) { *reinterpret_cast<volatile char*>(at) = 0; }
  };
  std::vector<std::thread> workers;
  const auto populate_named = [&populate_slice](std::size_t t) {
    name_this_thread("cl-populate");
    populate_slice(t);
  };
  // Slices of workers the system refuses are populated here.
  for (std::size_t t = start_threads(workers, 1, threads, populate_named); t < threads; ++t) {
    populate_slice(t);
  }
  populate_slice(0);
  for (std::thread& worker : workers) { worker.join(); }
}

}  // namespace

void populate_pages(void* data, std::size_t bytes)
{
  populate(data, bytes, true);
}

pages_populated_behind::pages_populated_behind(void* data, std::size_t bytes)
    : thread_([data, bytes] {
        name_this_thread("cl-populate");
        populate(data, bytes, false);
      })
{
}

pages_populated_behind::~pages_populated_behind()
{
  thread_.join();
}

sha256_stream::sha256_stream() : context_(EVP_MD_CTX_new(), EVP_MD_CTX_free)
{
  if (context_ == nullptr || EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr) != 1) {
    throw logic_error("SHA-256 initialisation failed");
  }
}

void sha256_stream::update(std::string_view bytes)
{
  if (!bytes.empty() && EVP_DigestUpdate(context_.get(), bytes.data(), bytes.size()) != 1) {
    throw logic_error("SHA-256 computation failed");
  }
}

std::string sha256_stream::hex()
{
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(context_.get(), digest, &length) != 1) {
    throw logic_error("SHA-256 computation failed");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 15]);
  }
  return out;
}

std::string sha256_hex(std::string_view bytes)
{
  sha256_stream digest;
  digest.update(bytes);
  return digest.hex();
}

namespace {

namespace fs = std::filesystem;

/// Writes @p content to a new file @p path and fsyncs it. @throw config_error naming @p name, the
/// path the user gave (the staged file's own name means nothing to them)
void write_and_sync(const fs::path& path, std::string_view content, const std::string& name)
{
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) { throw config_error(name + ": cannot create " + path.string() + ": " + std::strerror(errno)); }
  unique_fd file(fd);
  write_all(fd, content, name);
  if (::fsync(fd) != 0) { throw config_error(name + ": cannot flush to disk: " + std::strerror(errno)); }
  if (file.close() != 0) { throw config_error(name + ": cannot flush to disk: " + std::strerror(errno)); }
}

/// Fsyncs folder @p dir, which makes the renames into it durable. @return why it failed, or "" (also
/// for EINVAL: a file system that cannot sync a folder, where there is nothing to wait for)
std::string directory_sync_error(const fs::path& dir)
{
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) { return std::string("cannot open ") + dir.string() + ": " + std::strerror(errno); }
  const unique_fd opened(fd);
  if (::fsync(fd) != 0 && errno != EINVAL) {
    return std::string("cannot flush ") + dir.string() + " to disk: " + std::strerror(errno);
  }
  return "";
}

/// After @p output was renamed into folder @p dir. @throw durability_unknown when that may not last
void sync_directory(const fs::path& dir, const std::string& output)
{
  if (const std::string error = directory_sync_error(dir); !error.empty()) {
    throw durability_unknown(output + ": in place, but " + error + "; it may not survive a crash");
  }
}

fs::path unique_sibling(const fs::path& target, const char* tag)
{
  const std::string name   = target.filename().string();
  const std::string suffix = std::string(".") + tag + "." + std::to_string(::getpid());
  // A name near NAME_MAX leaves no room for the dot and the suffix: shorten it, and tell two long
  // names with one prefix apart by a hash of the whole name.
  constexpr std::size_t name_max = 255;
  if (1 + name.size() + suffix.size() <= name_max) { return target.parent_path() / ("." + name + suffix); }
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016zx", std::hash<std::string>{}(name));
  const std::size_t room = name_max - 1 - suffix.size() - 1 - 16;
  return target.parent_path() / ("." + name.substr(0, room) + "~" + hash + suffix);
}

}  // namespace

namespace {

/// The paths `removed_on_signal` guards: fixed storage, so that the signal handler reads them
/// without allocating or locking. A slot is free (0), being filled (1) or guarded (2).
struct guarded_path {
  std::atomic<int> state{0};
  bool directory = false;
  char path[4096]{};
};
constexpr int guarded_slots = 64;
guarded_path guarded[guarded_slots];
/// While a `signals_deferred` lives: the handler notes its signal here instead of acting on it.
std::atomic<bool> deferring{false};
std::atomic<int> deferred_signal{0};

extern "C" void remove_guarded_and_reraise(int signal_number)
{
  if (deferring.load(std::memory_order_acquire)) {
    int none = 0;
    deferred_signal.compare_exchange_strong(none, signal_number, std::memory_order_acq_rel);
    return;
  }
  remove_guarded_paths();
  ::signal(signal_number, SIG_DFL);
  ::raise(signal_number);
}

}  // namespace

void remove_guarded_paths() noexcept
{
  // Files first, then directories (a staging directory is empty once its files are gone), in
  // passes while one goes: a folder a run made is empty only once the one it made inside is gone.
  for (guarded_path& g : guarded) {
    if (g.state.load(std::memory_order_acquire) == 2 && !g.directory) { ::unlink(g.path); }
  }
  for (bool removed = true; removed;) {
    removed = false;
    for (guarded_path& g : guarded) {
      if (g.state.load(std::memory_order_acquire) == 2 && g.directory && ::rmdir(g.path) == 0) {
        removed = true;
      }
    }
  }
}

namespace {

void install_signal_cleanup()
{
  static std::once_flag once;
  std::call_once(once, [] {
    for (const int signal_number : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction current {};
      if (::sigaction(signal_number, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) {
        continue;  // someone else handles (or ignores) it: leave it to them
      }
      struct sigaction cleanup {};
      cleanup.sa_handler = remove_guarded_and_reraise;
      sigemptyset(&cleanup.sa_mask);
      ::sigaction(signal_number, &cleanup, nullptr);
    }
  });
}

}  // namespace

removed_on_signal::removed_on_signal(const std::string& path, bool directory)
{
  if (path.size() >= sizeof(guarded_path::path)) { return; }
  install_signal_cleanup();
  for (int s = 0; s < guarded_slots; ++s) {
    int expected = 0;
    if (guarded[s].state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
      std::memcpy(guarded[s].path, path.c_str(), path.size() + 1);
      guarded[s].directory = directory;
      guarded[s].state.store(2, std::memory_order_release);
      slot_ = s;
      return;
    }
  }
}

removed_on_signal::~removed_on_signal()
{
  if (slot_ >= 0) { guarded[slot_].state.store(0, std::memory_order_release); }
}

signals_deferred::signals_deferred()
{
  install_signal_cleanup();
  deferring.store(true, std::memory_order_release);
}

signals_deferred::~signals_deferred()
{
  deferring.store(false, std::memory_order_release);
  if (const int signal_number = deferred_signal.exchange(0, std::memory_order_acq_rel); signal_number != 0) {
    ::raise(signal_number);  // now handled as it would have been: clean up, then end the process
  }
}

fs::path resolved_path(const std::string& path)
{
  fs::path at = fs::absolute(path);
  if (at.filename().empty()) { at = at.parent_path(); }  // `result/`
  std::error_code ec;
  // A link is followed even where what it names does not exist yet (`weakly_canonical` keeps a
  // dangling link as written, and a rename would then replace the link itself).
  for (int hops = 0; fs::is_symlink(fs::symlink_status(at, ec)); ++hops) {
    if (hops == 40) { throw config_error(path + ": too many levels of symbolic links"); }
    const fs::path to = fs::read_symlink(at, ec);
    if (ec) { break; }
    at = to.is_absolute() ? to : at.parent_path() / to;
  }
  fs::path out = fs::weakly_canonical(at, ec);
  if (ec) { out = at.lexically_normal(); }
  if (out.filename().empty()) { out = out.parent_path(); }
  return out;
}

std::string shown_input(const std::string& input)
{
  return input == "-" ? "- (standard input)" : input;
}

namespace {

/// Whether @p a and @p b name one file, folder, pipe or FIFO, by device and inode. Not
/// `fs::equivalent`: libstdc++'s does not compare two files that are neither regular files nor
/// folders ("not supported", false), so a pipe on stdin let `- --rejects /dev/stdin` through, and
/// the run, holding the pipe's writing end, waited forever for the end of its input. A character
/// device (/dev/null, a terminal) holds no file an output could replace: never the same.
bool same_file(const std::string& a, const std::string& b)
{
  struct stat at {};
  struct stat bt {};
  if (::stat(a.c_str(), &at) == 0 && ::stat(b.c_str(), &bt) == 0) {
    return at.st_dev == bt.st_dev && at.st_ino == bt.st_ino && !S_ISCHR(at.st_mode);
  }
  return resolved_path(a) == resolved_path(b);
}

bool inside(const fs::path& directory, const fs::path& path)
{
  const auto [end_of_dir, end_of_path] =
      std::mismatch(directory.begin(), directory.end(), path.begin(), path.end());
  return end_of_dir == directory.end() && end_of_path != path.end();
}

}  // namespace

std::vector<std::pair<std::string, std::string>> ledger_side_files(const std::string& db_path)
{
  // SQLite names them after the database's path with its links followed.
  std::vector<std::pair<std::string, std::string>> sides;
  for (const std::string& base : {db_path, resolved_path(db_path).string()}) {
    for (const char* kind : {"journal", "wal", "shm"}) { sides.emplace_back(base + "-" + kind, kind); }
  }
  return sides;
}

namespace {

/// The path by which @p input is compared with the outputs: standard input (`-`) by the file or
/// pipe behind it (an output at /dev/stdin would replace the log read through it); a terminal
/// or /dev/null, which no output can replace, not at all (empty).
std::string compared_input(const std::string& input)
{
  if (input != "-") { return input; }
  struct stat in {};
  if (::fstat(STDIN_FILENO, &in) != 0 || !(S_ISREG(in.st_mode) || S_ISFIFO(in.st_mode))) { return {}; }
  return "/dev/stdin";
}

bool is_pipe(const std::string& path)
{
  struct stat at {};
  return ::stat(path.c_str(), &at) == 0 && (S_ISFIFO(at.st_mode) || S_ISSOCK(at.st_mode));
}

/// Whether an output written at @p path lands on standard output: by its name (`/dev/stdout`,
/// `/dev/fd/1`) or as the file or pipe stdout goes to. Not where stdout is /dev/null or another
/// device that is not a terminal: nothing is read back there to be mixed up.
bool is_standard_output(const std::string& path)
{
  struct stat out {};
  struct stat at {};
  if (::fstat(STDOUT_FILENO, &out) != 0 || (S_ISCHR(out.st_mode) && ::isatty(STDOUT_FILENO) == 0)) {
    return false;
  }
  return ::stat(path.c_str(), &at) == 0 && at.st_dev == out.st_dev && at.st_ino == out.st_ino;
}

}  // namespace

void refuse_colliding_paths(const run_paths& run, const std::string& stdout_answer)
{
  std::vector<std::string> inputs = run.inputs;
  inputs.push_back(run.ledger);
  std::vector<named_output> outputs = run.files;
  outputs.push_back(run.directory);
  for (const auto& input : inputs) {
    const std::string compared = compared_input(input);
    if (compared.empty()) { continue; }
    for (const auto& file : run.files) {
      if (!file.path.empty() && same_file(file.path, compared)) {
        throw config_error(file.flag + " " + file.path + " is the input " + shown_input(input) +
                           (is_pipe(compared) ? ": writing into the pipe it reads, the run would wait "
                                                "forever for the input's end; name another path"
                                              : ": writing it would replace that file; name another path"));
      }
    }
    if (run.directory.path.empty()) { continue; }
    if (same_file(run.directory.path, compared)) {
      throw config_error(run.directory.flag + " " + run.directory.path + " is the input " +
                         shown_input(input) + ": it would be replaced by a directory; name another path");
    }
    if (inside(resolved_path(run.directory.path), resolved_path(compared))) {
      throw config_error(run.directory.flag + " " + run.directory.path + " holds the input " +
                         shown_input(input) +
                         ": the directory is replaced whole, which would delete it; name another directory");
    }
  }
  for (std::size_t i = 0; i < run.files.size(); ++i) {
    const named_output& file = run.files[i];
    if (file.path.empty()) { continue; }
    for (std::size_t j = i + 1; j < run.files.size(); ++j) {
      if (!run.files[j].path.empty() && same_file(file.path, run.files[j].path)) {
        throw config_error(file.flag + " " + file.path + " and " + run.files[j].flag + " " +
                           run.files[j].path +
                           " are one file: one output would replace the other; name another path");
      }
    }
    if (!stdout_answer.empty() && is_standard_output(file.path)) {
      throw config_error(file.flag + " " + file.path + " is standard output, where " + stdout_answer +
                         " goes: the two would be mixed; name another path");
    }
    // One path for both would write the directory, then fail to put the file in its place.
    if (!run.directory.path.empty() && resolved_path(file.path) == resolved_path(run.directory.path)) {
      throw config_error(file.flag + " " + file.path + " is the " + run.directory.flag +
                         " directory; name another file");
    }
  }
  if (run.ledger.empty()) { return; }
  for (const auto& [side, kind] : ledger_side_files(run.ledger)) {
    for (const auto& output : outputs) {
      if (!output.path.empty() && same_file(output.path, side)) {
        throw config_error(output.flag + " " + output.path + " is where SQLite keeps the ledger " +
                           run.ledger + "'s " + kind +
                           " file, which it creates and deletes; name another path");
      }
    }
    // Opening the ledger would take the file for its journal (or write-ahead log) and delete it.
    for (const auto& input : run.inputs) {
      const std::string compared = compared_input(input);
      if (!compared.empty() && same_file(compared, side)) {
        throw config_error("the input " + shown_input(input) + " is where SQLite keeps the ledger " +
                           run.ledger + "'s " + kind +
                           " file, which it deletes when it opens the ledger; move it elsewhere");
      }
    }
  }
}

directories_made::directories_made(const fs::path& dir, const std::string& output) : output_(output)
{
  std::error_code ec;
  std::vector<fs::path> missing;  // deepest first
  for (fs::path at = dir; !at.empty() && !fs::exists(at, ec); at = at.parent_path()) {
    missing.push_back(at);
    if (at == at.parent_path()) { break; }
  }
  try {
    for (auto at = missing.rbegin(); at != missing.rend(); ++at) {
      if (fs::create_directory(*at, ec)) {
        made_.push_back(*at);
        on_signal_.push_back(std::make_unique<removed_on_signal>(at->string(), true));
      } else if (ec) {
        throw config_error(output + ": cannot create the folder " + at->string() + ": " + ec.message());
      }  // else made meanwhile by someone else: theirs
    }
  } catch (...) {
    remove_made();  // those made before the one that failed
    throw;
  }
}

void directories_made::keep()
{
  on_signal_.clear();
  const std::vector<fs::path> made = std::exchange(made_, {});
  for (const fs::path& folder : made) { sync_directory(fs::absolute(folder).parent_path(), output_); }
}

directories_made::~directories_made()
{
  remove_made();
}

void directories_made::remove_made() noexcept
{
  for (auto at = made_.rbegin(); at != made_.rend(); ++at) {
    if (::rmdir(at->c_str()) != 0) { break; }  // something is in it now: it and those above stay
  }
}

void check_output_dir_replaceable(const std::string& out_dir, const std::set<std::string>& replaceable)
{
  std::error_code ec;
  const fs::path target = resolved_path(out_dir);
  if (!fs::exists(target, ec)) { return; }
  if (!fs::is_directory(target, ec)) { throw config_error(out_dir + ": exists and is not a directory"); }
  for (const auto& entry : fs::directory_iterator(target, ec)) {
    const std::string name = entry.path().filename().string();
    std::error_code type_error;  // an entry whose type cannot be read is not a file we wrote
    if (replaceable.count(name) == 0 || !entry.is_regular_file(type_error)) {
      throw config_error(out_dir + ": exists and holds " + name +
                         ", which this command does not write; replacing the directory would delete it");
    }
  }
  if (ec) { throw config_error(out_dir + ": cannot list: " + ec.message()); }
}

staged_directory::staged_directory(const std::string& out_dir,
                                   const std::map<std::string, std::string>& files,
                                   const std::set<std::string>& also_replaceable)
    : out_dir_(out_dir)
{
  // Through links: a link to a directory stays a link, and its target is what is replaced (and
  // what `check_output_dir_replaceable` looked into).
  target_ = resolved_path(out_dir);
  std::error_code ec;
  const fs::path here = fs::current_path(ec);
  if (!ec && (target_ == here || inside(target_, here))) {
    throw config_error(out_dir +
                       ": is the working directory or holds it; the output directory is replaced whole, "
                       "which would leave this shell in a deleted directory; name another");
  }
  std::set<std::string> replaceable = also_replaceable;
  for (const auto& [name, content] : files) { replaceable.insert(name); }
  check_output_dir_replaceable(out_dir, replaceable);
  parents_ = std::make_unique<directories_made>(target_.parent_path(), out_dir);
  staging_ = unique_sibling(target_, "tmp");
  fs::remove_all(staging_, ec);
  staging_guard_ = std::make_unique<removed_on_signal>(staging_.string(), true);
  if (!fs::create_directory(staging_, ec)) {
    throw config_error(out_dir + ": cannot create its staging folder " + staging_.string() + ": " +
                       ec.message());
  }
  try {
    std::vector<std::unique_ptr<removed_on_signal>> file_guards;
    for (const auto& [name, content] : files) {
      file_guards.push_back(std::make_unique<removed_on_signal>((staging_ / name).string(), false));
      write_and_sync(staging_ / name, content, (fs::path(out_dir) / name).string());
    }
    struct stat old {};
    if (::stat(target_.c_str(), &old) == 0 && S_ISDIR(old.st_mode)) {
      ::chmod(staging_.c_str(), old.st_mode & 07777);  // a report directory kept private stays so
    }
    if (const std::string error = directory_sync_error(staging_); !error.empty()) {
      throw config_error(out_dir + ": " + error);  // not in place yet: the run fails, nothing changed
    }
    staged_ = true;
  } catch (...) {
    fs::remove_all(staging_, ec);
    throw;
  }
}

staged_directory::~staged_directory()
{
  if (staged_) {
    std::error_code ec;
    fs::remove_all(staging_, ec);  // not committed: the old output stays as it was
  }
}

void staged_directory::commit(const std::function<void()>& then)
{
  CAPLEDGER_EXPECTS(staged_, "commit twice");
  staged_ = false;
  std::error_code ec;
  fs::path earlier;  // the earlier output, kept until `then` has succeeded
  bool exchanged = false;
  try {
    if (fs::exists(target_)) {
      // One exchange of the two directories where the file system has it (ext4, xfs, btrfs,
      // tmpfs): at no moment, a crash included, is there no output; the old one is then under the
      // staging name. Where it lacks the flag, two renames, the old output set aside first; any
      // other failure (a failing disk) stops here, the old output in place, rather than try the
      // path that has a moment without one.
      if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE) == 0) {
        earlier   = staging_;
        exchanged = true;
      } else if (!rename_flags_unsupported(errno)) {
        throw fs::filesystem_error("cannot swap it for the earlier output", target_,
                                   std::error_code(errno, std::generic_category()));
      } else {
        earlier = unique_sibling(target_, "old");
        fs::remove_all(earlier, ec);
        fs::rename(target_, earlier);
        try {
          fs::rename(staging_, target_);
        } catch (const fs::filesystem_error&) {
          fs::rename(earlier, target_, ec);  // a failed run leaves the old output where it was
          throw;
        }
      }
    } else {
      fs::rename(staging_, target_);
    }
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(staging_, ec);
    throw config_error(out_dir_ + ": cannot write output: " + e.what());
  }
  std::exception_ptr then_not_durable;
  try {
    if (then) { then(); }
  } catch (const durability_unknown&) {
    then_not_durable = std::current_exception();  // what it wrote is in place: so stays this directory
  } catch (...) {
    // The new output goes back under the staging name and is removed; the earlier one returns.
    if (exchanged) {
      // Exchanged back, or else the earlier output is still under the staging name: kept there.
      if (::renameat2(AT_FDCWD, earlier.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE) == 0) {
        fs::remove_all(staging_, ec);
      }
    } else if (fs::rename(target_, staging_, ec); !ec) {
      fs::remove_all(staging_, ec);
      if (!earlier.empty()) { fs::rename(earlier, target_, ec); }
    }
    throw;
  }
  if (!earlier.empty()) { fs::remove_all(earlier, ec); }
  sync_directory(target_.parent_path(), out_dir_);
  parents_->keep();
  if (then_not_durable) { std::rethrow_exception(then_not_durable); }
}

void write_directory_atomically(const std::string& out_dir, const std::map<std::string, std::string>& files,
                                const std::set<std::string>& also_replaceable)
{
  staged_directory(out_dir, files, also_replaceable).commit();
}

namespace {

config_error refused_existing(const std::string& path)
{
  return config_error(path +
                      ": exists, and this output never replaces a file: remove it or name another path");
}

/// Renames @p from to @p to unless @p to exists (EEXIST), in one step that no file made meanwhile
/// can slip under: RENAME_NOREPLACE, or where the file system lacks it, a hard link (which fails on
/// an existing name too) and the unlink of @p from. @return 0, or -1 with errno set
int rename_no_replace(const char* from, const char* to)
{
  if (::renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) { return 0; }
  if (!rename_flags_unsupported(errno)) { return -1; }
  if (::link(from, to) != 0) { return -1; }
  ::unlink(from);  // the file is in place; a failure leaves only its hidden second name
  return 0;
}

}  // namespace

atomic_file_writer::atomic_file_writer(const std::string& path, const std::string& staging_dir,
                                       if_exists existing)
    : path_(path),
      target_(resolved_path(path).string()),  // through links: the link stays, its target is replaced
      existing_(existing)
{
  // Through the name as given: /dev/stdout and /dev/fd/N are links the kernel resolves to a pipe
  // or a terminal that no path names (target_ reads "/proc/self/fd/pipe:[...]").
  struct stat there {};
  const bool exists = ::stat(path_.c_str(), &there) == 0;
  if (exists && existing_ == if_exists::refuse) { throw refused_existing(path_); }
  if (exists && S_ISDIR(there.st_mode)) {
    throw config_error(path_ + ": is a directory; name a file");  // said now, before any output is in place
  }
  if (exists && !S_ISREG(there.st_mode)) {
    // A device or a pipe (`--rejects /dev/null`, a FIFO) is written as it is: replacing it by a
    // file (as root, /dev/null itself) is never what was meant, and a stream has no half state to hide.
    direct_ = true;
    fd_.reset(::open(path_.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd_.get() < 0) { throw config_error(path_ + ": cannot open: " + std::strerror(errno)); }
    return;
  }
  const fs::path beside = unique_sibling(fs::path(target_), "tmp");
  if (staging_dir.empty()) { parents_ = std::make_unique<directories_made>(beside.parent_path(), path_); }
  staging_ = staging_dir.empty() ? beside.string() : (fs::path(staging_dir) / beside.filename()).string();
  guard_   = std::make_unique<removed_on_signal>(staging_, false);
  fd_.reset(::open(staging_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd_.get() < 0) {
    throw config_error(path_ + ": cannot create " + staging_ + ": " + std::strerror(errno));
  }
}

atomic_file_writer::~atomic_file_writer()
{
  if (fd_.get() >= 0) {  // not committed: the old file, if any, stays as it was
    fd_.reset();
    if (!direct_) { ::unlink(staging_.c_str()); }
  }
}

void atomic_file_writer::append(std::string_view bytes)
{
  CAPLEDGER_EXPECTS(fd_.get() >= 0, "append after commit");
  buffer_ += bytes;
  if (buffer_.size() >= (std::size_t{1} << 20)) { flush(); }
}

void atomic_file_writer::flush()
{
  write_all(fd_.get(), buffer_, path_);
  buffer_.clear();
}

void atomic_file_writer::commit()
{
  CAPLEDGER_EXPECTS(fd_.get() >= 0, "commit twice");
  flush();
  if (direct_) {
    if (fd_.close() != 0) { throw config_error(path_ + ": cannot write: " + std::strerror(errno)); }
    return;
  }
  struct stat old {};
  if (::stat(target_.c_str(), &old) == 0 && S_ISREG(old.st_mode)) {
    ::fchmod(fd_.get(), old.st_mode & 07777);  // a rejects file kept private stays so
  }
  if (::fsync(fd_.get()) != 0) {
    throw config_error(path_ + ": cannot flush to disk: " + std::strerror(errno));
  }
  // From here on the destructor leaves the file alone: it is closed or renamed.
  if (fd_.close() != 0) {
    ::unlink(staging_.c_str());
    throw config_error(path_ + ": cannot flush to disk: " + std::strerror(errno));
  }
  const bool refuse = existing_ == if_exists::refuse;
  if ((refuse ? rename_no_replace(staging_.c_str(), target_.c_str())
              : ::rename(staging_.c_str(), target_.c_str())) != 0) {
    const int error = errno;
    ::unlink(staging_.c_str());
    if (refuse && error == EEXIST) { throw refused_existing(path_); }  // made since the constructor looked
    throw config_error(path_ + ": cannot write: " + std::strerror(error));
  }
  guard_.reset();  // renamed: nothing left to remove
  sync_directory(fs::path(target_).parent_path(), path_);
  if (parents_) { parents_->keep(); }
}

}  // namespace detail
}  // namespace capledger
