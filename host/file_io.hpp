/// @file file_io.hpp
/// @brief File and memory helpers: inputs mapped, temporary files and their room, memory, SHA-256,
/// and outputs that appear whole or not at all and never over an input.
#pragma once

#include <capledger/error.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header

namespace capledger::detail {

/// @brief Owns a file descriptor (-1: none) and closes it when destroyed, ignoring the error: for
/// files read, or thrown away. Where the close's error matters (the last of an output written),
/// `close` it and check what it returns.
class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept
  {
    reset(other.release());
    return *this;
  }
  unique_fd(const unique_fd&)            = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  /// @return the descriptor, no longer owned (-1: none)
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the descriptor held, if any (its error ignored), and takes @p fd.
  void reset(int fd = -1) noexcept;
  /// Closes the descriptor now. @return `::close`'s result, errno set on -1
  [[nodiscard]] int close() noexcept;

 private:
  int fd_ = -1;
};

/// @brief An unlinked temporary file in `$TMPDIR` (or /tmp), gone when closed. @throw config_error
[[nodiscard]] unique_fd anonymous_temp_file();

/// @brief @p bytes as decimal gigabytes with one decimal, for messages: "12.3 GB".
[[nodiscard]] std::string gigabytes(std::uint64_t bytes);

/// @brief Where `anonymous_temp_file` puts its files, and what that file system can take.
struct temporary_space {
  std::string dir;                  ///< `$TMPDIR`, or /tmp
  std::uint64_t available = 0;      ///< bytes free for this user; 0 when unknown
  bool in_memory          = false;  ///< a tmpfs or ramfs: its files take memory
};
[[nodiscard]] temporary_space temporary_space_here();

/// @brief Before temporary files of about @p needed bytes are written into @p space (the
/// out-of-memory id check: 16 bytes a line): refuses (config_error) when the directory has less
/// room than that and a tenth, so a long run does not fail at the end of its first pass, and notes
/// on @p diagnostics when the directory is in memory, where the files take the memory that the
/// check is meant to spare.
void check_temporary_room(std::uint64_t needed, const temporary_space& space, std::ostream& diagnostics);

/// @brief Before a step that keeps up to @p needed files open at once (the out-of-memory id
/// check's 256 part files): raises the soft limit on open files (`ulimit -Sn`) to @p needed where
/// the hard limit allows, and otherwise refuses (config_error, naming both numbers and
/// `ulimit -n`), so that the run stops before its first pass with the cause, not partway with
/// "Too many open files" in `$TMPDIR`.
void check_open_file_room(std::uint64_t needed);

/// @brief An input file's bytes, mapped read-only (no copy; the pages come from the page cache):
/// a regular file directly, a pipe (stdin, `/dev/fd/N`) after it is copied into an unlinked
/// temporary file, so that no input is held in memory whatever its size.
class input_bytes {
 public:
  /// @param path a file, or `-` for stdin. @throw config_error when it cannot be read
  explicit input_bytes(const std::string& path);
  ~input_bytes();
  input_bytes(const input_bytes&)            = delete;
  input_bytes& operator=(const input_bytes&) = delete;

  [[nodiscard]] std::string_view view() const noexcept { return {data_, size_}; }
  /// @brief The bytes before @p offset will not be read again: their pages leave this process's
  /// memory (they stay in the page cache), so a log costs no more memory than the part being
  /// read. Reading them again is still correct, only slower.
  void release_before(std::size_t offset) noexcept;
  /// @brief The same for every page that bytes [begin, end) touch (bytes read a second time).
  void release(std::size_t begin, std::size_t end) noexcept;

 private:
  const char* data_     = nullptr;
  std::size_t size_     = 0;
  void* mapping_        = nullptr;
  std::size_t released_ = 0;

  int registered_ = -1;  ///< its slot for `input_path_at`

  /// Maps @p size bytes of @p fd (none: an empty view), read as @p path. @throw config_error
  void map(int fd, std::size_t size, const std::string& path);
  static std::size_t page_size() noexcept;
};

/// @brief @p path made absolute, with `..` and symbolic links resolved as far as it exists, a link
/// followed even where what it names does not exist yet: where an output written through
/// @p path lands. @throw config_error for a loop of links
[[nodiscard]] std::filesystem::path resolved_path(const std::string& path);

/// @brief For a SIGBUS handler (a mapped input truncated by another process while it is read):
/// the path of the `input_bytes` whose mapping holds @p address, escaped as stderr's guard would
/// (`message_text`), or null. Async-signal-safe.
[[nodiscard]] const char* input_path_at(const void* address) noexcept;

/// @brief Removes every temporary file and directory a `removed_on_signal` guards: for a signal
/// handler that ends the process itself. Async-signal-safe.
void remove_guarded_paths() noexcept;

/// @brief Asks for transparent huge pages for the whole 2 MiB pages inside [data, data + bytes):
/// large buffers that are about to be filled then cost a page fault per 2 MiB, not per 4 KiB.
/// A hint only; nothing changes where the kernel does not offer them.
void advise_huge_pages(const void* data, std::size_t bytes) noexcept;

/// @brief Backs the whole pages inside [data, data + bytes) with memory before they are written,
/// from several threads: one `MADV_POPULATE_WRITE` per slice where the kernel has it (Linux 5.14
/// and later), else a zero written to each page, so only for memory whose contents do not matter
/// yet. A large buffer filled from end to end otherwise takes its page faults one at a time
/// inside the copy, which on the GPU machines' VMs cost as much as the copy itself.
void populate_pages(void* data, std::size_t bytes);

/// @brief `populate_pages` on a thread of its own, for memory its owner starts writing at once:
/// `MADV_POPULATE_WRITE` faults pages in without writing them, so it does not race with the
/// owner; where the kernel lacks it nothing is done (the owner's writes fault them in as before).
/// Joins on destruction: destroy it before the memory it populates.
class pages_populated_behind {
 public:
  pages_populated_behind(void* data, std::size_t bytes);
  pages_populated_behind(const pages_populated_behind&)            = delete;
  pages_populated_behind& operator=(const pages_populated_behind&) = delete;
  ~pages_populated_behind();

 private:
  std::thread thread_;
};

/// @brief Memory this process can still get: the kernel's MemAvailable, or less where a cgroup
/// (v2 `memory.max`, v1 `memory.limit_in_bytes`) leaves less room. 0 when neither can be read.
[[nodiscard]] std::uint64_t available_memory();

/// @brief SHA-256 of bytes that arrive piece by piece (a file hashed as it is parsed).
class sha256_stream {
 public:
  sha256_stream();
  /// @brief Hashes @p bytes after everything given before. @throw logic_error
  void update(std::string_view bytes);
  /// @brief Lower-case hex digest of everything given; call once, last. @throw logic_error
  [[nodiscard]] std::string hex();

 private:
  std::unique_ptr<evp_md_ctx_st, void (*)(evp_md_ctx_st*)> context_;
};

/// @brief Lower-case hex SHA-256 of @p bytes.
[[nodiscard]] std::string sha256_hex(std::string_view bytes);

/// @brief An output path and the flag that named it (for messages).
struct named_output {
  std::string flag;  ///< `--rejects`, `--out`, ...
  std::string path;  ///< empty: none
};

/// @brief @p input as messages name it: `-` is `- (standard input)`.
[[nodiscard]] std::string shown_input(const std::string& input);

/// @brief The paths one run reads and writes, checked together by `refuse_colliding_paths`.
struct run_paths {
  std::vector<std::string> inputs;  ///< every file the run reads; `-` is standard input, empty skipped
  std::vector<named_output> files;  ///< the files it writes
  named_output directory;           ///< a directory it replaces whole
  std::string ledger;               ///< the ledger database it opens (read; ingest writes it too)
};

/// @brief Refuses, before a run reads anything, a path on which it would lose a file: an output
/// file that is an input (the same file by any path; `-` by the file or pipe behind standard
/// input) or another output; an output directory (replaced whole) that is an input or holds one,
/// or that is an output file; an output file that is standard output (`/dev/stdout`, or the file or
/// pipe behind it) when the run's answer goes there, which the two would be mixed in (or, for a
/// file, the answer lost when the output replaces it); and an output or input where SQLite keeps a
/// file beside the ledger (`-journal`, `-wal`, `-shm`, after the path as given or through its
/// links), which SQLite creates and deletes, or takes for the ledger's journal.
/// @param stdout_answer what the run prints on standard output ("the report"); empty: nothing
/// @throw config_error naming both paths
void refuse_colliding_paths(const run_paths& run, const std::string& stdout_answer = "");

/// @brief The files SQLite keeps beside the ledger @p db_path: (path, kind) for `journal`, `wal`
/// and `shm`, after the path as given and after it with its links followed.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> ledger_side_files(const std::string& db_path);

/// @brief An output that is in place, but the fsync of the folder holding it failed: the rename that
/// put it there may not survive a crash. Exit 2 like any config_error; what was committed with it
/// is not undone (undoing would take another rename, as unsure as this one).
class durability_unknown : public config_error {
 public:
  using config_error::config_error;
};

class removed_on_signal;

/// @brief Makes folder @p dir and the missing folders above it; destroyed before `keep`, or on a
/// signal that ends the run (SIGINT, SIGTERM, SIGHUP), it removes again those it made that are
/// still empty, deepest first: a run that fails leaves no empty folder behind.
/// @throw config_error naming @p output (the path the user gave) when one cannot be made
class directories_made {
 public:
  directories_made(const std::filesystem::path& dir, const std::string& output);
  ~directories_made();
  directories_made(const directories_made&)            = delete;
  directories_made& operator=(const directories_made&) = delete;
  /// The output is in place: its folders stay, each fsynced into the folder above it (the
  /// deepest's own entries are the caller's to fsync). @throw durability_unknown naming the output
  void keep();

 private:
  std::string output_;                       ///< as given, for messages
  std::vector<std::filesystem::path> made_;  ///< outermost first
  std::vector<std::unique_ptr<removed_on_signal>> on_signal_;  ///< each of made_, until `keep`
  void remove_made() noexcept;
};

/// @brief Refuses (config_error) to replace an existing directory @p out_dir that holds anything
/// but files named in @p replaceable (a previous output of the same command): replacing the
/// directory deletes everything in it. A missing or empty directory is fine.
void check_output_dir_replaceable(const std::string& out_dir, const std::set<std::string>& replaceable);

/// @brief Writes every (file name, content) pair into directory @p out_dir atomically: the files are
/// written and fsynced in a sibling temporary directory, which is then renamed into place (the
/// missing folders above it made first). An existing @p out_dir is replaced only when it holds
/// nothing but files of these names or of @p also_replaceable (`check_output_dir_replaceable`).
/// @throw config_error when the directory cannot be written or replaced; durability_unknown
void write_directory_atomically(const std::string& out_dir, const std::map<std::string, std::string>& files,
                                const std::set<std::string>& also_replaceable = {});

/// @brief A temporary file or directory this process is writing, removed if a signal (SIGINT,
/// SIGTERM, SIGHUP) stops the process first: an interrupted report leaves no hidden half-written
/// rejects file (as large as the bad lines) or output staging directory behind. The owner still
/// renames or removes it itself; destroying this only forgets it. The handler, installed with the
/// first one where those signals have their default action, uses only unlink and rmdir on paths
/// copied into fixed slots (async-signal-safe), then lets the signal end the process as before.
/// Paths beyond the slots (64, of 4 KiB) are simply not guarded.
class removed_on_signal {
 public:
  removed_on_signal(const std::string& path, bool directory);
  ~removed_on_signal();
  removed_on_signal(const removed_on_signal&)            = delete;
  removed_on_signal& operator=(const removed_on_signal&) = delete;

 private:
  int slot_ = -1;
};

/// @brief While alive, SIGINT, SIGTERM and SIGHUP wait (where `removed_on_signal`'s handler has
/// them): the first one to arrive is raised when this is destroyed. Around commits that belong
/// together (the report directory, then the rejects file), so that an interrupt leaves both old
/// or both new, never one of each.
class signals_deferred {
 public:
  signals_deferred();
  ~signals_deferred();
  signals_deferred(const signals_deferred&)            = delete;
  signals_deferred& operator=(const signals_deferred&) = delete;
};

/// @brief `write_directory_atomically` in two steps: the constructor writes and fsyncs the files
/// in the sibling staging directory (the slow part), `commit` puts it in place; destroyed without
/// `commit`, it removes the staging directory and leaves @p out_dir as it was.
class staged_directory {
 public:
  /// @throw config_error as `write_directory_atomically`, and for the working directory or one
  ///        holding it (replacing it would leave the caller in a deleted directory)
  staged_directory(const std::string& out_dir, const std::map<std::string, std::string>& files,
                   const std::set<std::string>& also_replaceable = {});
  ~staged_directory();
  staged_directory(const staged_directory&)            = delete;
  staged_directory& operator=(const staged_directory&) = delete;
  /// @param then runs once the new directory is in place; when it throws, the earlier directory
  ///             (or none) is put back before the exception goes on, so the two change together
  ///             (but for durability_unknown: what it wrote is in place, so the new directory stays)
  /// @throw config_error; durability_unknown once the new directory is in place
  void commit(const std::function<void()>& then = {});

 private:
  std::string out_dir_;  ///< as given, for messages
  std::filesystem::path target_, staging_;
  std::unique_ptr<directories_made> parents_;  ///< before staging_guard_: removed after the staging folder
  std::unique_ptr<removed_on_signal> staging_guard_;
  bool staged_ = false;
};

/// @brief Whether an `atomic_file_writer` may replace a file already at its path.
enum class if_exists { replace, refuse };

/// @brief A file written piece by piece into a temporary sibling and renamed into place by
/// `commit`, so that a file of any size is never held in memory and never seen half written.
/// Missing folders above it are made (staged beside it); destroyed without `commit`, it removes
/// the temporary file and those folders, and leaves any old file as it was.
class atomic_file_writer {
 public:
  /// @param staging_dir where the temporary file goes (empty: beside @p path); on @p path's
  ///                    file system, its folders made by the caller, and left alone until `commit`
  /// @param existing    `refuse`: a file at @p path, there now or made before `commit`, is never
  ///                    replaced (config_error naming it)
  /// @throw config_error when the temporary file cannot be created, or @p path exists and is refused
  explicit atomic_file_writer(const std::string& path, const std::string& staging_dir = "",
                              if_exists existing = if_exists::replace);
  ~atomic_file_writer();
  atomic_file_writer(const atomic_file_writer&)            = delete;
  atomic_file_writer& operator=(const atomic_file_writer&) = delete;

  /// @throw config_error when a write fails
  void append(std::string_view bytes);
  /// Flushes, fsyncs and renames the file into place; nothing can be appended afterwards.
  /// @throw config_error; durability_unknown once the file is in place
  void commit();

 private:
  std::string path_;  ///< as given, for messages
  std::string target_, staging_;
  if_exists existing_;
  std::unique_ptr<directories_made> parents_;  ///< folders made for it, until it is in place
  std::unique_ptr<removed_on_signal> guard_;   ///< the staging file, until renamed or removed
  unique_fd fd_;
  bool direct_ = false;  ///< the target is a device or a pipe: written as it is, no staging
  std::string buffer_;  ///< written out once it holds a mebibyte
  void flush();
};

}  // namespace capledger::detail
