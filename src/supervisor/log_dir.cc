#include "supervisor/log_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/make_dirs.h"

namespace orch {
namespace {

std::string FileName(int64_t run_id, LogStream stream) {
  return std::to_string(run_id) + (stream == LogStream::kStdout ? ".out" : ".err");
}

Status Refused(const std::string& what, const std::string& why) {
  return Status(Code::kPermission, what + ": " + why + "; refusing to use it");
}

// Gives a directory back to the daemon: earlier versions chowned job log
// directories to the run_as user and made log_dir group-writable for it.
Status TakeBack(int fd, const std::string& what) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return FromErrno("fstat " + what);
  if (!S_ISDIR(st.st_mode)) return Refused(what, "not a directory");
  uid_t uid = geteuid();
  gid_t gid = getegid();
  if (st.st_uid != uid || ((st.st_mode & S_IWGRP) != 0 && st.st_gid != gid)) {
    if (fchown(fd, uid, gid) != 0) return FromErrno("chown " + what);
  }
  if ((st.st_mode & 0027) != 0 && fchmod(fd, st.st_mode & 0750) != 0) {
    return FromErrno("chmod " + what);
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<LogDir>> LogDir::Open(const std::string& path) {
  if (path.empty()) return Status(Code::kInvalidArgument, "supervisor.log_dir is empty");
  if (Status made = MakeDirs(path); !made.ok()) {
    return Status(made.code(), "supervisor.log_dir: " + made.message());
  }
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return FromErrno("supervisor.log_dir: cannot open " + path);
  Status s = TakeBack(fd.get(), "supervisor.log_dir " + path);
  if (!s.ok()) return s;
  return std::unique_ptr<LogDir>(new LogDir(path, std::move(fd)));
}

std::string LogDir::PathOf(int64_t job_id, int64_t run_id, LogStream stream) const {
  return path_ + "/" + std::to_string(job_id) + "/" + FileName(run_id, stream);
}

Result<UniqueFd> LogDir::OpenJobDir(int64_t job_id, bool create) const {
  std::string name = std::to_string(job_id);
  std::string what = path_ + "/" + name;
  bool made = false;
  if (create) {
    made = mkdirat(fd_.get(), name.c_str(), 0750) == 0;
    if (!made && errno != EEXIST) return FromErrno("log directory " + what);
  }
  UniqueFd dir(openat(fd_.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir.valid() && create && (errno == ELOOP || errno == ENOTDIR)) {
    // Something else sits at the name (a link or file an older version let
    // a job plant): the name is the daemon's, so it is replaced, never
    // followed.
    if (unlinkat(fd_.get(), name.c_str(), 0) != 0) return FromErrno("log directory " + what);
    if (mkdirat(fd_.get(), name.c_str(), 0750) != 0) return FromErrno("log directory " + what);
    made = true;
    dir = UniqueFd(openat(fd_.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  }
  if (!dir.valid()) {
    if (errno == ELOOP || errno == ENOTDIR) return Refused("log directory " + what, "not a directory");
    return FromErrno("log directory " + what);
  }
  // Only a writer takes a directory back (readers rely on the file checks),
  // and only one it found there: what it made itself is already its own.
  if (create && !made) {
    Status s = TakeBack(dir.get(), "log directory " + what);
    if (!s.ok()) return s;
  }
  return dir;
}

Result<RunLogFiles> LogDir::CreateRunLogs(int64_t job_id, int64_t run_id) {
  auto dir = OpenJobDir(job_id, true);
  if (!dir.ok()) return dir.status();
  RunLogFiles files;
  files.out_path = PathOf(job_id, run_id, LogStream::kStdout);
  for (LogStream stream : {LogStream::kStdout, LogStream::kStderr}) {
    std::string name = FileName(run_id, stream);
    std::string what = "open log " + PathOf(job_id, run_id, stream);
    constexpr int kFlags = O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    UniqueFd fd(openat(dir->get(), name.c_str(), kFlags, 0640));
    if (!fd.valid() && errno == EEXIST) {
      // Left by a run whose record was lost, or planted: replaced, never opened.
      if (unlinkat(dir->get(), name.c_str(), 0) != 0 && errno != ENOENT) return FromErrno(what);
      fd = UniqueFd(openat(dir->get(), name.c_str(), kFlags, 0640));
    }
    if (!fd.valid()) return FromErrno(what);
    (stream == LogStream::kStdout ? files.out : files.err) = std::move(fd);
  }
  return files;
}

Result<UniqueFd> LogDir::OpenExisting(int64_t job_id, int64_t run_id, LogStream stream,
                                      int flags) const {
  std::string what = "log " + PathOf(job_id, run_id, stream);
  auto dir = OpenJobDir(job_id, false);
  if (!dir.ok()) return dir.status();
  std::string name = FileName(run_id, stream);
  // O_NONBLOCK: a FIFO in place of the file must not hang the loop.
  UniqueFd fd(openat(dir->get(), name.c_str(), flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ELOOP) return Refused(what, "a symbolic link");
    if (errno == ENXIO) return Refused(what, "not a regular file");
    return FromErrno(what);
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return FromErrno("fstat " + what);
  if (!S_ISREG(st.st_mode)) return Refused(what, "not a regular file");
  if (st.st_nlink != 1) return Refused(what, "a file with other links");
  if (st.st_uid != geteuid()) return Refused(what, "not owned by the daemon");
  return fd;
}

Result<UniqueFd> LogDir::OpenForRead(int64_t job_id, int64_t run_id, LogStream stream) const {
  return OpenExisting(job_id, run_id, stream, O_RDONLY);
}

Result<UniqueFd> LogDir::OpenForAppend(int64_t job_id, int64_t run_id, LogStream stream) const {
  return OpenExisting(job_id, run_id, stream, O_WRONLY | O_APPEND);
}

Result<int64_t> EnforceLogCap(int fd, int64_t max_bytes) {
  if (max_bytes <= 0 || fd < 0) return int64_t{0};
  struct stat st {};
  if (fstat(fd, &st) != 0) return FromErrno("fstat log");
  if (!S_ISREG(st.st_mode) || st.st_size <= max_bytes) return int64_t{0};
  // Bytes the child appends between fstat and ftruncate are dropped too and
  // not counted: the count is a lower bound.
  if (ftruncate(fd, max_bytes) != 0) return FromErrno("ftruncate log");
  return static_cast<int64_t>(st.st_size) - max_bytes;
}

Status AppendLogCutNote(int fd, int64_t cut_bytes) {
  if (cut_bytes <= 0 || fd < 0) return Status::Ok();
  std::string note = "\n[orchestrator: output cut at the max_log_bytes limit; " +
                     std::to_string(cut_bytes) + " bytes dropped]\n";
  size_t off = 0;
  while (off < note.size()) {
    ssize_t n = write(fd, note.data() + off, note.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FromErrno("write log");
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace orch
