/// @file fail_io.cpp
/// @brief An LD_PRELOAD library that fails chosen file-system calls of a program, so that tests
/// see what an output does on a disk that fails: `CAPLEDGER_FAIL_IO=OP:N:ERRNO` makes the Nth call
/// (from 1) of OP fail with ERRNO (`EIO`, `ENOSPC` or a number). OP is `write` (`writev` too; to a
/// file, not to stderr or a pipe, whose writes a test cannot count), `pwrite` (`pwrite64` too:
/// SQLite's writes to the ledger and its journal), `fsync` (of a file),
/// `dirfsync` (fsync of a directory), `close` or `rename` (`renameat2` too); `fdatasync` counts
/// as `fsync`. Up to four such failures, joined by `,`, fail a call each (`rename:1:22,rename:3:EIO`:
/// a file system without `renameat2`'s flags, then a failure in the path taken instead). Every
/// other call goes through. `CAPLEDGER_MADE_BEFORE_RENAME=PATH` creates file
/// PATH (holding "made meanwhile\n") just before the first rename, as another process might between
/// a program's look for a file and its rename.
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

struct injection {
  char op[16]{};
  long nth  = 0;  ///< 0: nothing fails
  int error = 0;
};

/// The calls of each op so far, counted once whatever the number of injections naming it.
struct op_count {
  char op[16]{};
  std::atomic<long> seen{0};
};

constexpr int most_injections = 4;

struct injections {
  injection chosen[most_injections];
  op_count counts[most_injections];
};

injections& parsed()
{
  static injections* const it = [] {
    static injections all;
    const char* spec = std::getenv("CAPLEDGER_FAIL_IO");
    for (int i = 0; spec != nullptr && i < most_injections; ++i) {
      injection& one = all.chosen[i];
      char error[16]{};
      if (std::sscanf(spec, "%15[a-z]:%ld:%15[A-Z0-9]", one.op, &one.nth, error) != 3) {
        one.nth = 0;
        break;
      }
      one.error = std::strcmp(error, "EIO") == 0      ? EIO
                  : std::strcmp(error, "ENOSPC") == 0 ? ENOSPC
                                                      : std::atoi(error);
      std::strcpy(all.counts[i].op, one.op);
      spec = std::strchr(spec, ',');
      if (spec != nullptr) { ++spec; }
    }
    return &all;
  }();
  return *it;
}

/// Whether this call of @p op is one to fail (errno then set).
bool fails(const char* op)
{
  injections& all = parsed();
  long call       = 0;  // this call's number among @p op's calls; 0 while no injection names it
  for (op_count& count : all.counts) {
    if (std::strcmp(count.op, op) == 0) {
      call = ++count.seen;
      break;
    }
  }
  for (const injection& one : all.chosen) {
    if (call != 0 && one.nth == call && std::strcmp(one.op, op) == 0) {
      errno = one.error;
      return true;
    }
  }
  return false;
}

template <typename Function>
Function next(const char* name)
{
  return reinterpret_cast<Function>(::dlsym(RTLD_NEXT, name));
}

void make_file_before_first_rename()
{
  static std::atomic<bool> done{false};
  const char* path = std::getenv("CAPLEDGER_MADE_BEFORE_RENAME");
  if (path == nullptr || done.exchange(true)) { return; }
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) { return; }
  // The real calls: these are not the program's, and must not count towards a chosen failure.
  next<ssize_t (*)(int, const void*, size_t)>("write")(fd, "made meanwhile\n", 15);
  next<int (*)(int)>("close")(fd);
}

const char* fsync_kind(int fd)
{
  struct stat info {};
  return ::fstat(fd, &info) == 0 && S_ISDIR(info.st_mode) ? "dirfsync" : "fsync";
}

}  // namespace

extern "C" {

ssize_t write(int fd, const void* bytes, size_t count)
{
  static const auto real = next<ssize_t (*)(int, const void*, size_t)>("write");
  struct stat info {};
  const bool to_a_file = ::fstat(fd, &info) == 0 && S_ISREG(info.st_mode);
  return to_a_file && fails("write") ? -1 : real(fd, bytes, count);
}

ssize_t writev(int fd, const struct iovec* pieces, int count)  // std::ofstream's large writes
{
  static const auto real = next<ssize_t (*)(int, const struct iovec*, int)>("writev");
  struct stat info {};
  const bool to_a_file = ::fstat(fd, &info) == 0 && S_ISREG(info.st_mode);
  return to_a_file && fails("write") ? -1 : real(fd, pieces, count);
}

ssize_t pwrite(int fd, const void* bytes, size_t count, off_t offset)
{
  static const auto real = next<ssize_t (*)(int, const void*, size_t, off_t)>("pwrite");
  return fails("pwrite") ? -1 : real(fd, bytes, count, offset);
}

ssize_t pwrite64(int fd, const void* bytes, size_t count, off64_t offset)
{
  static const auto real = next<ssize_t (*)(int, const void*, size_t, off64_t)>("pwrite64");
  return fails("pwrite") ? -1 : real(fd, bytes, count, offset);
}

int fsync(int fd)
{
  static const auto real = next<int (*)(int)>("fsync");
  return fails(fsync_kind(fd)) ? -1 : real(fd);
}

int fdatasync(int fd)
{
  static const auto real = next<int (*)(int)>("fdatasync");
  return fails(fsync_kind(fd)) ? -1 : real(fd);
}

int close(int fd)
{
  static const auto real = next<int (*)(int)>("close");
  if (!fails("close")) { return real(fd); }
  const int error = errno;
  real(fd);  // the descriptor is gone all the same, as after a failed close on Linux
  errno = error;
  return -1;
}

int rename(const char* from, const char* to)
{
  static const auto real = next<int (*)(const char*, const char*)>("rename");
  make_file_before_first_rename();
  return fails("rename") ? -1 : real(from, to);
}

int renameat2(int from_dir, const char* from, int to_dir, const char* to, unsigned int flags)
{
  static const auto real = next<int (*)(int, const char*, int, const char*, unsigned int)>("renameat2");
  make_file_before_first_rename();
  return fails("rename") ? -1 : real(from_dir, from, to_dir, to, flags);
}

}  // extern "C"
