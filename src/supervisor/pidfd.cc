#include "supervisor/pidfd.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

namespace orch {
namespace {

// struct pidfd_info as of Linux 6.15 (include/uapi/linux/pidfd.h,
// PIDFD_INFO_SIZE_VER0 = 64 bytes), where `exit_code` took the place of
// `spare0[1]`. Debian 12's headers predate it. The kernel copies
// min(our size, its size), so a newer kernel with a larger struct is fine.
struct PidfdInfoV0 {
  uint64_t mask;
  uint64_t cgroupid;
  uint32_t pid;
  uint32_t tgid;
  uint32_t ppid;
  uint32_t ruid;
  uint32_t rgid;
  uint32_t euid;
  uint32_t egid;
  uint32_t suid;
  uint32_t sgid;
  uint32_t fsuid;
  uint32_t fsgid;
  int32_t exit_code;  // a wait(2) status, valid when PIDFD_INFO_EXIT is in mask
};
static_assert(sizeof(PidfdInfoV0) == 64);

constexpr unsigned long kPidfsIoctlMagic = 0xFF;
constexpr unsigned long kPidfdGetInfo = _IOWR(kPidfsIoctlMagic, 11, PidfdInfoV0);
constexpr uint64_t kPidfdInfoExit = 1ULL << 3;

}  // namespace

Pidfd::~Pidfd() {
  if (fd_ >= 0) close(fd_);
}

Pidfd& Pidfd::operator=(Pidfd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = o.Release();
  }
  return *this;
}

Result<Pidfd> Pidfd::Open(pid_t pid) {
  // pidfds are always close-on-exec.
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    int err = errno;
    if (err == ESRCH)
      return Status(Code::kNotFound, "pidfd_open " + std::to_string(pid) + ": no such process");
    return FromErrno("pidfd_open " + std::to_string(pid), err);
  }
  return Pidfd(fd);
}

Status Pidfd::SendSignal(int sig) const {
  if (syscall(SYS_pidfd_send_signal, fd_, sig, nullptr, 0) == 0) return Status::Ok();
  int err = errno;
  if (err == ESRCH) return Status(Code::kNotFound, "pidfd_send_signal: process has exited");
  return FromErrno("pidfd_send_signal", err);
}

bool Pidfd::Exited() const {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  int rc;
  do {
    rc = poll(&p, 1, 0);
  } while (rc < 0 && errno == EINTR);
  return rc > 0 && (p.revents & POLLIN) != 0;
}

Result<bool> HasExited(int pidfd) {
  siginfo_t info{};
  int rc;
  do {
    rc = waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                WEXITED | WNOHANG | WNOWAIT);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return FromErrno("waitid(P_PIDFD, WNOWAIT)");
  return info.si_pid != 0;
}

Result<std::optional<ExitInfo>> ReapPidfd(int pidfd) {
  siginfo_t info{};
  int rc;
  do {
    rc = waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return FromErrno("waitid(P_PIDFD)");
  if (info.si_pid == 0) return std::optional<ExitInfo>();
  ExitInfo out;
  switch (info.si_code) {
    case CLD_EXITED:
      out.exited = true;
      out.code = info.si_status;
      break;
    case CLD_KILLED:
    case CLD_DUMPED:
      out.signal = info.si_status;
      break;
    default:
      // WEXITED only reports the three codes above; anything else is a kernel
      // contract we do not understand.
      return Status(Code::kInternal,
                    "waitid(P_PIDFD): unexpected si_code " + std::to_string(info.si_code));
  }
  return std::optional<ExitInfo>(out);
}

std::optional<ExitInfo> ExitInfoFromPidfd(int pidfd) {
  PidfdInfoV0 info{};
  info.mask = kPidfdInfoExit;
  // ENOTTY (no pidfs ioctls, < 6.13), EINVAL (older PIDFD_GET_INFO), ESRCH
  // (gone and no exit info): all mean "cannot tell".
  if (ioctl(pidfd, kPidfdGetInfo, &info) < 0) return std::nullopt;
  if ((info.mask & kPidfdInfoExit) == 0) return std::nullopt;
  int status = info.exit_code;
  ExitInfo out;
  if (WIFEXITED(status)) {
    out.exited = true;
    out.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    out.signal = WTERMSIG(status);
  } else {
    return std::nullopt;
  }
  return out;
}

}  // namespace orch
