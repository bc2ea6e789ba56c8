#include "supervisor/identity.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <mutex>

namespace orch {
namespace {

// PID_FS_MAGIC from linux/magic.h (6.9+); Debian 12's headers lack it.
constexpr decltype(statfs::f_type) kPidFsMagic = 0x50494446;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n'; }

// Reads a small /proc file whole. Errors keep errno's meaning.
Result<std::string> ReadProcFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FromErrno(path);  // ENOENT becomes kNotFound
  std::string out;
  char buf[1024];
  while (true) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      // A /proc/<pid> file opened just before the process was reaped reads ESRCH.
      int err = errno;
      close(fd);
      if (err == ESRCH) return Status(Code::kNotFound, path + ": no such process");
      return FromErrno(path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

}  // namespace

Result<std::string> CurrentBootId() {
  // Leaked on purpose: no destructor runs at exit while another thread reads.
  static auto* mu = new std::mutex();
  static auto* cached = new std::string();
  std::lock_guard<std::mutex> lock(*mu);
  if (!cached->empty()) return *cached;
  auto text = ReadProcFile("/proc/sys/kernel/random/boot_id");
  if (!text.ok()) return text.status();
  std::string id = std::move(text.value());
  while (!id.empty() && IsSpace(id.back())) id.pop_back();
  if (id.empty()) return Status(Code::kIo, "/proc/sys/kernel/random/boot_id is empty");
  *cached = id;
  return id;
}

uint64_t CurrentPidNsIno() {
  // A process never leaves its own PID namespace: read once.
  static std::atomic<uint64_t> cached{0};
  uint64_t ino = cached.load(std::memory_order_relaxed);
  if (ino != 0) return ino;
  struct stat st {};
  if (stat("/proc/self/ns/pid", &st) != 0) return 0;
  cached.store(st.st_ino, std::memory_order_relaxed);
  return st.st_ino;
}

std::optional<uint64_t> ParseStatStartTime(std::string_view text) {
  // "<pid> (<comm>) <state> <ppid> ... <starttime> ...": comm may hold any
  // byte, but nothing after it can contain ')', so the LAST ')' ends comm.
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0 || text.substr(i, 2) != " (") return std::nullopt;
  size_t close = text.rfind(')');
  if (close == std::string_view::npos || close < i + 1) return std::nullopt;
  std::string_view rest = text.substr(close + 1);
  if (rest.empty() || rest[0] != ' ') return std::nullopt;
  // Field 3 (state) is the first token after ')', so field 22 is the 20th.
  constexpr int kStartTimeToken = 20;
  size_t pos = 0;
  std::string_view token;
  for (int n = 0; n < kStartTimeToken; ++n) {
    while (pos < rest.size() && IsSpace(rest[pos])) ++pos;
    size_t begin = pos;
    while (pos < rest.size() && !IsSpace(rest[pos])) ++pos;
    if (pos == begin) return std::nullopt;
    token = rest.substr(begin, pos - begin);
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
  if (ec != std::errc() || end != token.data() + token.size()) return std::nullopt;
  return value;
}

Result<uint64_t> ReadStartTime(int64_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  auto text = ReadProcFile(path);
  if (!text.ok()) return text.status();
  auto start = ParseStatStartTime(*text);
  if (!start) return Status(Code::kInternal, path + ": malformed stat line");
  return *start;
}

uint64_t PidfsInode(int pidfd) {
  struct statfs sfs {};
  if (fstatfs(pidfd, &sfs) != 0 || sfs.f_type != kPidFsMagic) return 0;
  struct stat st {};
  if (fstat(pidfd, &st) != 0) return 0;
  return st.st_ino;
}

Result<ProcessIdentity> IdentityOf(int64_t pid, int pidfd) {
  auto boot = CurrentBootId();
  if (!boot.ok()) return boot.status();
  auto start = ReadStartTime(pid);
  if (!start.ok()) return start.status();
  ProcessIdentity id;
  id.boot_id = *boot;
  id.pidns_ino = CurrentPidNsIno();
  id.pid = pid;
  id.start_time = *start;
  id.pidfs_ino = PidfsInode(pidfd);
  return id;
}

const char* GoneReasonName(GoneReason r) {
  switch (r) {
    case GoneReason::kBootChanged:
      return "boot_changed";
    case GoneReason::kPidGone:
      return "pid_gone";
    case GoneReason::kStartTimeMismatch:
      return "start_time_mismatch";
  }
  return "unknown";
}

Result<VerifyResult> Verify(const ProcessIdentity& id) {
  auto gone = [](GoneReason r) {
    VerifyResult v;
    v.gone = r;
    return v;
  };
  auto boot = CurrentBootId();
  if (!boot.ok()) return boot.status();
  // Pids of another boot mean nothing now; touch no process.
  if (*boot != id.boot_id) return gone(GoneReason::kBootChanged);
  if (id.pid <= 0 || id.pid > INT32_MAX) return gone(GoneReason::kPidGone);

  // Order matters: the pidfd pins whatever process holds the pid NOW; the
  // stat read afterwards describes that same process unless it exited in
  // between, which the pidfd then reports (checked last).
  auto pidfd = Pidfd::Open(static_cast<pid_t>(id.pid));
  if (!pidfd.ok()) {
    if (pidfd.status().code() == Code::kNotFound) return gone(GoneReason::kPidGone);
    return pidfd.status();
  }
  auto start = ReadStartTime(id.pid);
  if (!start.ok()) {
    if (start.status().code() == Code::kNotFound) return gone(GoneReason::kPidGone);
    return start.status();
  }
  if (pidfd->Exited()) {
    // A zombie of the recorded process keeps its pidfd: its parent (the
    // daemon itself, after a re-exec) can still read its exit status.
    VerifyResult v = gone(GoneReason::kPidGone);
    if (*start == id.start_time) v.pidfd = std::move(pidfd).value();
    return v;
  }
  if (*start != id.start_time) return gone(GoneReason::kStartTimeMismatch);
  uint64_t ino = PidfsInode(pidfd->get());
  if (id.pidfs_ino != 0 && ino != 0 && ino != id.pidfs_ino) {
    return gone(GoneReason::kStartTimeMismatch);
  }
  VerifyResult v;
  v.pidfd = std::move(pidfd).value();
  return v;
}

Result<bool> RunProcessLives(const Run& run) {
  if (run.identity.pid == 0) return false;
  auto v = Verify(run.identity);
  if (!v.ok()) return v.status();
  return !v->gone.has_value();
}

}  // namespace orch
