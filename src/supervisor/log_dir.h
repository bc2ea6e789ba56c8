// The per-run log files under supervisor.log_dir (SPEC §4, §7):
// <log_dir>/<job id>/<run id>.out and .err, named from ids only.
//
// Jobs may run as another user (run_as) and must never be able to make the
// root daemon write, truncate or serve a file elsewhere. So the whole tree
// belongs to the daemon (0750, never chowned to a job user); every name is
// resolved with openat() from an fd of log_dir, with O_NOFOLLOW and
// O_NONBLOCK; only regular files with one link, owned by the daemon, are
// used; and the child writes through fds the parent opened. Its methods
// only read fd_ and path_: the loop and the launcher thread may share it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "base/unique_fd.h"

namespace orch {

enum class LogStream { kStdout, kStderr };

struct RunLogFiles {
  UniqueFd out;  // O_WRONLY|O_APPEND, empty
  UniqueFd err;
  std::string out_path;  // for the store's runs.log_path and messages
};

class LogDir {
 public:
  // Creates `path` (and parents) when missing and opens it. A directory left
  // group- or world-writable, or owned by someone else (as earlier versions
  // left it for run_as), is taken back: owner the daemon, mode 0750.
  static Result<std::unique_ptr<LogDir>> Open(const std::string& path);

  // Creates <job>/ and fresh <run>.out and <run>.err for a new run. Any
  // leftover entry with those names (a file from an older store, a planted
  // link, a non-directory at <job>) is removed, never followed. Errors are
  // the host's (kIo, kFull, ...).
  Result<RunLogFiles> CreateRunLogs(int64_t job_id, int64_t run_id);

  // Opens a run's existing log: read-only for the log endpoint, or for
  // appending to cap a run this daemon did not create (an adopted orphan).
  // kNotFound when missing; kPermission when the name is not a regular file
  // with one link owned by the daemon (a symlink, FIFO, hard link, ...).
  Result<UniqueFd> OpenForRead(int64_t job_id, int64_t run_id, LogStream stream) const;
  Result<UniqueFd> OpenForAppend(int64_t job_id, int64_t run_id, LogStream stream) const;

  // The path a run's log has (for messages and the store; never opened by name).
  std::string PathOf(int64_t job_id, int64_t run_id, LogStream stream) const;
  const std::string& path() const { return path_; }

 private:
  LogDir(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  Result<UniqueFd> OpenExisting(int64_t job_id, int64_t run_id, LogStream stream,
                                int flags) const;
  Result<UniqueFd> OpenJobDir(int64_t job_id, bool create) const;

  std::string path_;
  UniqueFd fd_;
};

// Caps a run's log at max_bytes through its fd: when larger, truncates it to
// max_bytes and returns how many bytes were removed; else (and for
// max_bytes <= 0 = no cap) 0. Safe while the child still writes (its fd is
// O_APPEND: the next write lands at the new end).
Result<int64_t> EnforceLogCap(int fd, int64_t max_bytes);

// Appends the line that says `cut_bytes` bytes were dropped at the
// max_log_bytes limit (SPEC §4). `fd` must be O_APPEND.
Status AppendLogCutNote(int fd, int64_t cut_bytes);

}  // namespace orch
