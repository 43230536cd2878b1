/// @file file_io_test.cpp
/// @brief Memory and file helpers of host/file_io.hpp.
#include "file_io.hpp"

#include <capledger/error.hpp>

#include <gtest/gtest.h>

#include "test_support.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using capledger::detail::populate_pages;
using capledger::detail::unique_fd;

/// Pages of [data, data + pages x page size) that are in memory.
std::size_t resident_pages(const char* data, std::size_t pages, std::size_t page)
{
  std::vector<unsigned char> in_memory(pages);
  if (::mincore(const_cast<char*>(data), pages * page, in_memory.data()) != 0) { return SIZE_MAX; }
  std::size_t resident = 0;
  for (const unsigned char flag : in_memory) { resident += flag & 1U; }
  return resident;
}

// A fresh anonymous mapping has no page in memory until one is written. populate_pages must back
// every page that lies wholly inside the range it is given (48 MiB from 100 bytes into a page:
// several threads take slices whose ends are not page aligned) and none before it.
TEST(PopulatePages, BacksEveryPageOfTheRange)
{
  const auto page         = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t pages = (std::size_t{48} << 20) / page + 3;
  void* mapping = ::mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapping, MAP_FAILED);
  auto* base = static_cast<char*>(mapping);
  ::madvise(base, pages * page,
            MADV_NOHUGEPAGE);  // 4 KiB pages: one page's state says nothing of its neighbours
  ASSERT_EQ(resident_pages(base, pages, page), 0U);

  char* begin             = base + page + 100;
  const std::size_t bytes = (pages - 3) * page;  // ends 100 bytes into page pages - 2
  populate_pages(begin, bytes);

  EXPECT_EQ(resident_pages(base, 1, page), 0U) << "the page before the range";
  EXPECT_EQ(resident_pages(base + 2 * page, pages - 4, page), pages - 4) << "pages wholly inside the range";
  EXPECT_EQ(resident_pages(base + (pages - 1) * page, 1, page), 0U) << "the page after the range";
  ::munmap(mapping, pages * page);
}

// The id set's table is populated behind the merge, which writes into it at once: the
// population must back every page, those the owner never wrote included, and leave every byte
// the owner wrote while it ran as written (it faults pages in, it never writes them).
TEST(PopulatePages, BehindTheOwnerBacksThePagesAndKeepsItsWrites)
{
  const auto page         = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t pages = (std::size_t{32} << 20) / page;
  void* mapping = ::mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapping, MAP_FAILED);
  auto* base = static_cast<unsigned char*>(mapping);
  ::madvise(base, pages * page, MADV_NOHUGEPAGE);
  const auto mark = [](std::size_t p) { return static_cast<unsigned char>(1 + p % 251); };
  {
    const capledger::detail::pages_populated_behind populating(base, pages * page);
    // Meanwhile the owner writes one byte in every other page, from the far end (where the
    // population has not arrived yet) to the near end (where it has).
    for (std::size_t p = pages; p-- > 0;) {
      if (p % 2 == 0) { base[p * page + p % page] = mark(p); }
    }
  }  // joined
  EXPECT_EQ(resident_pages(reinterpret_cast<char*>(base), pages, page), pages);
  std::size_t kept = 0;
  for (std::size_t p = 0; p < pages; p += 2) { kept += base[p * page + p % page] == mark(p) ? 1 : 0; }
  EXPECT_EQ(kept, pages / 2);
  ::munmap(mapping, pages * page);
}

TEST(PopulatePages, NothingToDoForAnEmptyRange)
{
  populate_pages(nullptr, 0);
  char byte = 7;
  populate_pages(&byte, 0);
  EXPECT_EQ(byte, 7);
}

/// Names in @p dir, hidden ones (a temporary file) included.
std::set<std::string> names_in(const std::filesystem::path& dir)
{
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.insert(entry.path().filename());
  }
  return names;
}

// A file written piece by piece appears whole at commit, in place of the old one; until then the
// old one is untouched, and a writer dropped without commit leaves nothing behind.
// What `--backend auto` weighs the GPU path's columns against: more than nothing and no more
// than the machine has (MemTotal from /proc/meminfo, read here independently).
TEST(AvailableMemory, BetweenNothingAndTheMachinesMemory)
{
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::uint64_t total_kib = 0;
  ASSERT_TRUE(meminfo >> key >> total_kib) << "no /proc/meminfo";
  ASSERT_EQ(key, "MemTotal:");
  const std::uint64_t available = capledger::detail::available_memory();
  EXPECT_GT(available, 0U);
  EXPECT_LE(available, total_kib * 1024);
}

// The out-of-memory id check writes 16 bytes a line into $TMPDIR: a directory without room for
// them (and a tenth) stops the run before its first pass, not at its end; one in memory (tmpfs)
// is noted, since its files take the memory the check is meant to spare.
TEST(TemporaryRoom, TooLittleRoomStopsTheRunAndMemoryIsNoted)
{
  using capledger::detail::check_temporary_room;
  using capledger::detail::temporary_space;
  std::ostringstream notes;
  EXPECT_THROW(
      check_temporary_room(100'000'000'000, temporary_space{"/scratch", 105'000'000'000, false}, notes),
      capledger::config_error);
  try {
    check_temporary_room(100'000'000'000, temporary_space{"/scratch", 50'000'000'000, false}, notes);
    ADD_FAILURE() << "50 GB free was taken as room for 100 GB";
  } catch (const capledger::config_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("/scratch"), std::string::npos) << what;
    EXPECT_NE(what.find("100.0 GB"), std::string::npos) << what;
    EXPECT_NE(what.find("TMPDIR"), std::string::npos) << what;
  }
  check_temporary_room(100'000'000'000, temporary_space{"/scratch", 111'000'000'000, false}, notes);
  check_temporary_room(100'000'000'000, temporary_space{"/scratch", 0, false}, notes);  // unknown: go on
  EXPECT_EQ(notes.str(), "");
  check_temporary_room(1'000'000'000, temporary_space{"/tmp", 8'000'000'000, true}, notes);
  EXPECT_NE(notes.str().find("in memory"), std::string::npos) << notes.str();
  EXPECT_NE(notes.str().find("1.0 GB"), std::string::npos) << notes.str();
}

// The out-of-memory id check keeps 256 part files open: a low soft limit on open files is raised
// where the hard one allows, a low hard limit stops the run before its first pass, naming it.
TEST(TemporaryRoom, TooFewOpenFilesAreRaisedOrRefusedBeforeTheCheck)
{
  const pid_t child = ::fork();  // limits are the process's: changed in a child only
  ASSERT_GE(child, 0);
  if (child == 0) {
    rlimit limit{64, 1024};
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) { ::_exit(10); }
    capledger::detail::check_open_file_room(320);
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur != 320) { ::_exit(11); }
    limit = rlimit{64, 100};
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) { ::_exit(12); }
    try {
      capledger::detail::check_open_file_room(320);
      ::_exit(13);
    } catch (const capledger::config_error& e) {
      const std::string what = e.what();
      ::_exit(what.find("ulimit -n") != std::string::npos && what.find("64") != std::string::npos ? 0 : 14);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST(TemporaryRoom, TheDirectoryIsTmpdirAndItsRoomIsRead)
{
  const char* before      = std::getenv("TMPDIR");
  const std::string saved = before != nullptr ? before : "";
  const std::string dir   = ::testing::TempDir();
  ::setenv("TMPDIR", dir.c_str(), 1);
  const capledger::detail::temporary_space space = capledger::detail::temporary_space_here();
  if (saved.empty()) {
    ::unsetenv("TMPDIR");
  } else {
    ::setenv("TMPDIR", saved.c_str(), 1);
  }
  EXPECT_EQ(space.dir, dir);
  EXPECT_GT(space.available, 0U);
}

// A temporary file in $TMPDIR that no one can see: no entry in the folder, not even between its
// creation and the first write (O_TMPFILE where the file system has it), readable and writable,
// closed on exec.
TEST(TemporaryRoom, AnonymousTemporaryFilesHaveNoName)
{
  const char* before      = std::getenv("TMPDIR");
  const std::string saved = before != nullptr ? before : "";
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / ("anonymous-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  ::setenv("TMPDIR", dir.c_str(), 1);
  {
    const capledger::detail::unique_fd file = capledger::detail::anonymous_temp_file();
    ASSERT_GE(file.get(), 0);
    EXPECT_TRUE(std::filesystem::is_empty(dir));
    EXPECT_EQ(::write(file.get(), "abc", 3), 3);
    char back[3] = {};
    EXPECT_EQ(::pread(file.get(), back, 3, 0), 3);
    EXPECT_EQ(std::string(back, 3), "abc");
    EXPECT_NE(::fcntl(file.get(), F_GETFD) & FD_CLOEXEC, 0);
  }
  if (saved.empty()) {
    ::unsetenv("TMPDIR");
  } else {
    ::setenv("TMPDIR", saved.c_str(), 1);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
}

/// Whether @p fd is open in this process.
bool is_open(int fd)
{
  return ::fcntl(fd, F_GETFD) != -1;
}

/// A descriptor for a check of its own (/dev/null: nothing to clean up).
int open_null()
{
  return ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

TEST(UniqueFd, ClosesWhatItHoldsWhenDestroyed)
{
  const int fd = open_null();
  ASSERT_GE(fd, 0);
  {
    const unique_fd owned(fd);
    EXPECT_EQ(owned.get(), fd);
    EXPECT_TRUE(is_open(fd));
  }
  EXPECT_FALSE(is_open(fd));
}

TEST(UniqueFd, ReleaseHandsItOverUnclosed)
{
  const int fd = open_null();
  ASSERT_GE(fd, 0);
  {
    unique_fd owned(fd);
    EXPECT_EQ(owned.release(), fd);
    EXPECT_EQ(owned.get(), -1);
  }
  EXPECT_TRUE(is_open(fd));
  ::close(fd);
}

TEST(UniqueFd, AMovedFromOneClosesNothing)
{
  const int fd = open_null();
  ASSERT_GE(fd, 0);
  unique_fd last;
  {
    unique_fd first(fd);
    unique_fd second(std::move(first));
    EXPECT_EQ(first.get(), -1);  // NOLINT(bugprone-use-after-move): what is left is the point
    last = std::move(second);
    EXPECT_EQ(second.get(), -1);  // NOLINT(bugprone-use-after-move)
  }
  EXPECT_TRUE(is_open(fd));
  EXPECT_EQ(last.get(), fd);
  last.reset();
  EXPECT_FALSE(is_open(fd));
}

TEST(UniqueFd, ResetAndMoveAssignmentCloseTheOld)
{
  const int first = open_null(), second = open_null(), third = open_null();
  ASSERT_GE(std::min({first, second, third}), 0);
  unique_fd owned(first);
  owned.reset(second);
  EXPECT_FALSE(is_open(first));
  EXPECT_TRUE(is_open(second));
  owned = unique_fd(third);
  EXPECT_FALSE(is_open(second));
  EXPECT_TRUE(is_open(third));
  EXPECT_EQ(owned.get(), third);
}

// The checked close of an output: its result is the caller's, and the destructor does not close
// again (the number, free again, may be someone else's by then).
TEST(UniqueFd, CloseReportsAndLeavesNothingForTheDestructor)
{
  const int fd = open_null();
  ASSERT_GE(fd, 0);
  int reused = -1;
  {
    unique_fd owned(fd);
    EXPECT_EQ(owned.close(), 0);
    EXPECT_EQ(owned.get(), -1);
    EXPECT_FALSE(is_open(fd));
    reused = open_null();  // the lowest free number: fd's
    ASSERT_EQ(reused, fd);
    EXPECT_EQ(owned.close(), -1);
    EXPECT_EQ(errno, EBADF);
  }
  EXPECT_TRUE(is_open(reused));
  ::close(reused);
}

TEST(AtomicFileWriter, TheFileAppearsWholeAtCommitOrNotAtAll)
{
  const capledger::test::scratch_dir dir;
  const auto target = dir.root() / "rejects.csv";
  capledger::test::write_text(target, "old\n");
  {
    capledger::detail::atomic_file_writer file(target.string());
    file.append("first,");
    file.append(std::string(3u << 20, 'x'));  // past the writer's buffer: some of it is on disk
    EXPECT_EQ(capledger::test::read_text(target), "old\n");
    EXPECT_EQ(names_in(dir.root()).size(), 2U) << "the file and its temporary sibling";
  }  // dropped: not committed
  EXPECT_EQ(capledger::test::read_text(target), "old\n");
  EXPECT_EQ(names_in(dir.root()), (std::set<std::string>{"rejects.csv"}));

  capledger::detail::atomic_file_writer file(target.string());
  file.append("new,");
  file.append("file\n");
  file.commit();
  EXPECT_EQ(capledger::test::read_text(target), "new,file\n");
  EXPECT_EQ(names_in(dir.root()), (std::set<std::string>{"rejects.csv"}));
  EXPECT_THROW(file.append("late"), capledger::logic_error);
}

// Staged elsewhere (beside a directory that is about to be replaced), it still lands at its path.
TEST(AtomicFileWriter, StagedInAnotherDirectory)
{
  const capledger::test::scratch_dir dir;
  std::filesystem::create_directories(dir.root() / "out");
  capledger::detail::atomic_file_writer file((dir.root() / "out" / "r.csv").string(), dir.root().string());
  file.append("row\n");
  EXPECT_EQ(names_in(dir.root() / "out").size(), 0U) << "nothing inside out/ before commit";
  file.commit();
  EXPECT_EQ(capledger::test::read_text(dir.root() / "out" / "r.csv"), "row\n");
  EXPECT_EQ(names_in(dir.root()), (std::set<std::string>{"out"}));
}

/// Writes @p content to @p path in one commit of an `atomic_file_writer`.
void write_whole(const std::string& path, std::string_view content)
{
  capledger::detail::atomic_file_writer file(path);
  file.append(content);
  file.commit();
}

// A link stays a link: its target is what is replaced, and keeps its permissions. A pipe (or a
// device: `--rejects /dev/null`) is written as it is, never replaced by a file.
TEST(AtomicFileWriter, ThroughALinkAndIntoAPipe)
{
  namespace fs = std::filesystem;
  const capledger::test::scratch_dir dir;
  const auto target = dir.root() / "r.csv";
  capledger::test::write_text(target, "old\n");
  fs::permissions(target, fs::perms::owner_read | fs::perms::owner_write);
  fs::create_symlink("r.csv", dir.root() / "link");
  write_whole((dir.root() / "link").string(), "new\n");
  EXPECT_TRUE(fs::is_symlink(dir.root() / "link"));
  EXPECT_EQ(capledger::test::read_text(target), "new\n");
  EXPECT_EQ(fs::status(target).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);

  // A link to nothing yet: the file it names is made, the link stays. A directory is refused at once.
  fs::create_symlink("made.csv", dir.root() / "dangling");
  write_whole((dir.root() / "dangling").string(), "made\n");
  EXPECT_TRUE(fs::is_symlink(dir.root() / "dangling"));
  EXPECT_EQ(capledger::test::read_text(dir.root() / "made.csv"), "made\n");
  fs::create_directory(dir.root() / "folder");
  EXPECT_THROW(capledger::detail::atomic_file_writer((dir.root() / "folder").string()),
               capledger::config_error);
  fs::remove(dir.root() / "folder");

  const auto pipe = dir.root() / "pipe";
  ASSERT_EQ(::mkfifo(pipe.c_str(), 0600), 0);
  // The read end open first, without blocking: the writer's open returns at once, and the rows
  // wait in the pipe's buffer (a writer that replaced the pipe leaves it empty: no hang).
  const int read_end = ::open(pipe.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(read_end, 0);
  write_whole(pipe.string(), "rows\n");
  char received[16]{};
  const ssize_t got = ::read(read_end, received, sizeof(received));
  ::close(read_end);
  EXPECT_EQ(std::string(received, got > 0 ? static_cast<std::size_t>(got) : 0), "rows\n");
  EXPECT_TRUE(fs::is_fifo(pipe));
  EXPECT_EQ(names_in(dir.root()), (std::set<std::string>{"dangling", "link", "made.csv", "pipe", "r.csv"}))
      << "no temporary file";
}

// An output directory given through a link: the link stays, the directory it names is replaced
// (and keeps its permissions). The working directory, or one holding it, is refused.
TEST(StagedDirectory, ThroughALinkButNeverTheWorkingDirectory)
{
  namespace fs = std::filesystem;
  const capledger::test::scratch_dir dir;
  fs::create_directories(dir.root() / "real");
  capledger::test::write_text(dir.root() / "real" / "a.csv", "old\n");
  fs::permissions(dir.root() / "real", fs::perms::owner_all);
  fs::create_directory_symlink("real", dir.root() / "link");
  capledger::detail::write_directory_atomically((dir.root() / "link").string(), {{"a.csv", "new\n"}});
  EXPECT_TRUE(fs::is_symlink(dir.root() / "link"));
  EXPECT_EQ(capledger::test::read_text(dir.root() / "real" / "a.csv"), "new\n");
  EXPECT_EQ(fs::status(dir.root() / "real").permissions() & fs::perms::all, fs::perms::owner_all);

  const fs::path was = fs::current_path();
  fs::current_path(dir.root() / "real");
  EXPECT_THROW(capledger::detail::write_directory_atomically(".", {{"a.csv", "x\n"}}),
               capledger::config_error);
  EXPECT_THROW(capledger::detail::write_directory_atomically((dir.root()).string(), {{"a.csv", "x\n"}}),
               capledger::config_error);
  fs::current_path(was);
  EXPECT_EQ(capledger::test::read_text(dir.root() / "real" / "a.csv"), "new\n");
}

// What is committed with the directory (the rejects file) failing puts the earlier output back,
// or none where there was none: a run that fails changes nothing.
TEST(StagedDirectory, AFailureOfWhatFollowsPutsTheEarlierOutputBack)
{
  namespace fs = std::filesystem;
  const capledger::test::scratch_dir dir;
  const auto out       = dir.root() / "out";
  const auto rejecting = [] { throw capledger::config_error("rejects.csv: cannot write"); };
  capledger::detail::staged_directory first(out.string(), {{"a.csv", "new\n"}});
  EXPECT_THROW(first.commit(rejecting), capledger::config_error);
  EXPECT_EQ(names_in(dir.root()), (std::set<std::string>{})) << "no output, no staging directory";

  capledger::detail::write_directory_atomically(out.string(), {{"a.csv", "old\n"}});
  capledger::detail::staged_directory second(out.string(), {{"a.csv", "new\n"}});
  EXPECT_THROW(second.commit(rejecting), capledger::config_error);
  EXPECT_EQ(capledger::test::read_text(out / "a.csv"), "old\n");
  EXPECT_EQ(names_in(dir.root()), (std::set<std::string>{"out"}));

  bool ran = false;
  capledger::detail::staged_directory third(out.string(), {{"a.csv", "new\n"}});
  third.commit([&] {
    ran = true;
    EXPECT_EQ(capledger::test::read_text(out / "a.csv"), "new\n") << "runs once the new one is in place";
  });
  EXPECT_TRUE(ran);
  EXPECT_EQ(names_in(dir.root()), (std::set<std::string>{"out"}));
}

// A signal that arrives while outputs are committed together waits for the last of them.
TEST(SignalsDeferred, ASignalWaitsForTheEndOfTheScope)
{
  const capledger::test::scratch_dir dir;
  const auto marker = dir.root() / "committed";
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    {
      const capledger::detail::signals_deferred together;
      ::raise(SIGTERM);
      std::ofstream(marker) << "both\n";  // still running: the signal waits
    }
    ::_exit(0);  // not reached: the signal is raised at the end of the scope
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;
  EXPECT_EQ(capledger::test::read_text(marker), "both\n");
}

// A SIGBUS handler names the input whose mapping faulted: every mapped input is found by any
// address inside it, and forgotten once unmapped.
TEST(InputBytes, AnAddressInsideAMappingNamesItsFile)
{
  const capledger::test::scratch_dir dir;
  const auto a = dir.root() / "a.csv";
  const auto b = dir.root() / "b.csv";
  capledger::test::write_text(a, std::string(10000, 'a'));
  capledger::test::write_text(b, "bb\n");
  const char* inside_a = nullptr;
  {
    const capledger::detail::input_bytes first(a.string());
    const capledger::detail::input_bytes second(b.string());
    inside_a = first.view().data() + 9999;
    ASSERT_NE(capledger::detail::input_path_at(inside_a), nullptr);
    EXPECT_EQ(std::string(capledger::detail::input_path_at(inside_a)), a.string());
    EXPECT_EQ(std::string(capledger::detail::input_path_at(second.view().data())), b.string());
    const char* past_a = capledger::detail::input_path_at(first.view().data() + first.view().size());
    EXPECT_TRUE(past_a == nullptr || std::string(past_a) != a.string()) << "one past the end is not a's";
    const int on_the_stack = 0;
    EXPECT_EQ(capledger::detail::input_path_at(&on_the_stack), nullptr);
  }
  EXPECT_EQ(capledger::detail::input_path_at(inside_a), nullptr);
}

// The handler writes the path around stderr's guard, so the name it keeps is escaped already: a
// file named with terminal controls cannot clear or recolour the screen from that message.
TEST(InputBytes, TheNameASignalHandlerWritesIsEscaped)
{
  const capledger::test::scratch_dir dir;
  const auto odd = dir.root() / "log\x1b[2J\xe2\x80\xae.csv";  // ESC[2J (clear), U+202E (reorder)
  capledger::test::write_text(odd, "x\n");
  const capledger::detail::input_bytes input(odd.string());
  const char* named = capledger::detail::input_path_at(input.view().data());
  ASSERT_NE(named, nullptr);
  EXPECT_EQ(std::string(named), (dir.root() / "log\\x1b[2J\\u202e.csv").string());
}

TEST(AtomicFileWriter, AnUnwritableDirectoryIsAConfigError)
{
  // procfs: no folder can be made there, not even by root.
  EXPECT_THROW(capledger::detail::atomic_file_writer("/proc/nonexistent-capledger-dir/r.csv"),
               capledger::config_error);
}

// Missing folders above the file are made, as `--out`'s are; dropped without a commit (a run that
// fails), the writer removes them again, those it made only.
TEST(AtomicFileWriter, MakesMissingFoldersAndRemovesThemIfNotCommitted)
{
  const capledger::test::scratch_dir dir;
  std::filesystem::create_directory(dir.root() / "a");
  const auto target = dir.root() / "a" / "b" / "c" / "r.csv";
  {
    capledger::detail::atomic_file_writer file(target.string());
    file.append("lost\n");
    EXPECT_TRUE(std::filesystem::is_directory(dir.root() / "a" / "b" / "c"));
  }
  EXPECT_EQ(names_in(dir.root()), (std::set<std::string>{"a"}));
  EXPECT_TRUE(names_in(dir.root() / "a").empty());
  write_whole(target.string(), "kept\n");
  EXPECT_EQ(capledger::test::read_text(target), "kept\n");
}

// `if_exists::refuse` never replaces a file: one there at the start is refused at once, and one
// made while the file is written (another process, between the look and the rename) is kept,
// the new file dropped (config_error naming the path).
TEST(AtomicFileWriter, RefusesAFileThereAtTheStartOrMadeBeforeTheCommit)
{
  const capledger::test::scratch_dir dir;
  const auto target = dir.root() / "shipments.csv";
  capledger::test::write_text(target, "real log\n");
  EXPECT_THROW(
      capledger::detail::atomic_file_writer(target.string(), "", capledger::detail::if_exists::refuse),
      capledger::config_error);
  std::filesystem::remove(target);

  capledger::detail::atomic_file_writer file(target.string(), "", capledger::detail::if_exists::refuse);
  file.append("synthetic\n");
  capledger::test::write_text(target, "real log\n");  // made meanwhile
  try {
    file.commit();
    ADD_FAILURE() << "the file made meanwhile was replaced";
  } catch (const capledger::config_error& e) {
    EXPECT_EQ(std::string(e.what()).find(target.string() + ": exists"), 0U) << e.what();
  }
  EXPECT_EQ(capledger::test::read_text(target), "real log\n");
  EXPECT_EQ(names_in(dir.root()), (std::set<std::string>{"shipments.csv"})) << "no temporary file left";
}

}  // namespace
