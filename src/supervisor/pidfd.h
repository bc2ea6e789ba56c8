// An owned pidfd (closed on destruction) and the syscalls around it.
#pragma once

#include <sys/types.h>

#include <optional>

#include "base/status.h"

namespace orch {

class Pidfd {
 public:
  Pidfd() = default;
  explicit Pidfd(int fd) : fd_(fd) {}
  ~Pidfd();
  Pidfd(Pidfd&& o) noexcept : fd_(o.Release()) {}
  Pidfd& operator=(Pidfd&& o) noexcept;
  Pidfd(const Pidfd&) = delete;
  Pidfd& operator=(const Pidfd&) = delete;

  bool valid() const { return fd_ >= 0; }
  int get() const { return fd_; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

  // pidfd_open(2); kNotFound when the pid does not exist.
  static Result<Pidfd> Open(pid_t pid);
  // pidfd_send_signal(2). kNotFound (ESRCH) when the process has exited.
  Status SendSignal(int sig) const;
  // True when the process has exited (the fd polls readable).
  bool Exited() const;

 private:
  int fd_ = -1;
};

// How a process ended, shell style (STYLE §4).
struct ExitInfo {
  bool exited = false;  // normal exit with `code`
  int code = 0;
  int signal = 0;       // when killed by a signal
  // 128+signal for a signal, else the exit code.
  int ShellCode() const { return exited ? code : 128 + signal; }
};

// True when our own child has exited (a zombie waiting to be reaped); does
// not reap it (WNOWAIT). An error (ECHILD: not our child, or reaped already)
// is returned as such.
Result<bool> HasExited(int pidfd);

// waitid(P_PIDFD, WEXITED|WNOHANG) on our own child: the one place that reaps
// a job (STYLE §8). nullopt when it has not exited yet.
Result<std::optional<ExitInfo>> ReapPidfd(int pidfd);

// Exit status of a process that is not our child, via PIDFD_GET_INFO with
// PIDFD_INFO_EXIT (kernel 6.15+). nullopt when the kernel cannot tell.
std::optional<ExitInfo> ExitInfoFromPidfd(int pidfd);

}  // namespace orch
