// orchestrator-exec: the small static program a job's process runs between
// its creation and the job's own exec. The daemon creates the process with
// vfork semantics (clone CLONE_VM|CLONE_VFORK), so it never copies the
// daemon's memory; the new process execs this helper at once, and the helper
// does what must happen as the job's process before the job runs: the fd
// limit, the privilege drop, the cwd, waiting on the gate until the daemon
// has recorded the process's identity, then the exec of the job.
//
//   orchestrator-exec REPORT_FD GATE_FD NOFILE_CUR NOFILE_MAX UID GID CWD
//                     NGROUPS GROUP... NENV NAME=VALUE... CANDIDATE... -- ARGV...
//
// NOFILE_CUR "-" keeps the limit; UID "-" keeps the user (GID and the
// groups are then ignored); CWD "" keeps the directory; GATE_FD -1 = exec
// without waiting. The helper itself starts with an empty environment: it
// runs as root until the drop, so nothing a client submits may reach libc's
// start-up; the job's environment comes as NAME=VALUE arguments. Failures go
// to REPORT_FD as a ChildReport (child_report.h).
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "supervisor/child_report.h"

namespace {

int report_fd = -1;

[[noreturn]] void Fail(orch::ChildStage stage, int err) {
  orch::ChildReport r{stage, err};
  if (report_fd >= 0) {
    ssize_t n;
    do {
      n = write(report_fd, &r, sizeof r);
    } while (n < 0 && errno == EINTR);
  }
  _exit(127);
}

bool ParseUnsigned(const char* s, unsigned long long* out) {
  if (s == nullptr || *s < '0' || *s > '9') return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

bool ParseLong(const char* s, long long* out) {
  if (s == nullptr || *s == '\0') return false;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // Fixed arguments first; anything malformed is the daemon's bug.
  constexpr int kFixed = 9;
  long long report = -1;
  if (argc < kFixed + 2 || !ParseLong(argv[1], &report)) _exit(127);
  report_fd = static_cast<int>(report);
  long long gate = -1, uid = 0, gid = 0, ngroups = 0;
  if (!ParseLong(argv[2], &gate)) Fail(orch::kStageHelperArgs, EINVAL);
  const char* nofile_cur = argv[3];
  const char* nofile_max = argv[4];
  const char* uid_text = argv[5];
  const char* gid_text = argv[6];
  const char* cwd = argv[7];
  if (!ParseLong(argv[8], &ngroups) || ngroups < 0 || ngroups > argc - kFixed - 2) {
    Fail(orch::kStageHelperArgs, EINVAL);
  }
  char** group_args = argv + kFixed;
  int env_at = kFixed + static_cast<int>(ngroups);
  long long nenv = 0;
  if (!ParseLong(argv[env_at], &nenv) || nenv < 0 || nenv > argc - env_at - 3) {
    Fail(orch::kStageHelperArgs, EINVAL);
  }
  auto** job_env = static_cast<char**>(std::malloc(sizeof(char*) * (nenv + 1)));
  if (job_env == nullptr) Fail(orch::kStageHelperArgs, ENOMEM);
  for (long long i = 0; i < nenv; ++i) job_env[i] = argv[env_at + 1 + i];
  job_env[nenv] = nullptr;
  int first = env_at + 1 + static_cast<int>(nenv);
  int sep = first;
  while (sep < argc && std::strcmp(argv[sep], "--") != 0) ++sep;
  if (sep >= argc - 1) Fail(orch::kStageHelperArgs, EINVAL);
  char** candidates = argv + first;
  int ncandidates = sep - first;
  char** job_argv = argv + sep + 1;

  if (std::strcmp(nofile_cur, "-") != 0) {
    unsigned long long cur = 0, max = 0;
    if (!ParseUnsigned(nofile_cur, &cur) || !ParseUnsigned(nofile_max, &max)) {
      Fail(orch::kStageHelperArgs, EINVAL);
    }
    rlimit rl{static_cast<rlim_t>(cur), static_cast<rlim_t>(max)};
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) Fail(orch::kStageRlimit, errno);
  }

  if (std::strcmp(uid_text, "-") != 0) {
    if (!ParseLong(uid_text, &uid) || !ParseLong(gid_text, &gid)) {
      Fail(orch::kStageHelperArgs, EINVAL);
    }
    // A process of its own (not a copy of the daemon): malloc and the libc
    // credential calls are safe here.
    auto* groups = static_cast<gid_t*>(std::malloc(sizeof(gid_t) * (ngroups + 1)));
    if (groups == nullptr) Fail(orch::kStageSetgroups, ENOMEM);
    for (long long i = 0; i < ngroups; ++i) {
      unsigned long long g = 0;
      if (!ParseUnsigned(group_args[i], &g)) Fail(orch::kStageHelperArgs, EINVAL);
      groups[i] = static_cast<gid_t>(g);
    }
    if (setgroups(static_cast<size_t>(ngroups), groups) < 0) Fail(orch::kStageSetgroups, errno);
    if (setgid(static_cast<gid_t>(gid)) < 0) Fail(orch::kStageSetgid, errno);
    if (setuid(static_cast<uid_t>(uid)) < 0) Fail(orch::kStageSetuid, errno);
    // Defense in depth: a drop that left a way back to root is no drop.
    if (uid != 0 && setuid(0) == 0) Fail(orch::kStageUidCheck, 0);
  }

  // As the job's user: it must not learn which paths only root can reach.
  if (*cwd != '\0' && chdir(cwd) < 0) Fail(orch::kStageCwd, errno);

  // A successful exec of the job closes the report pipe: EOF = it ran.
  if (fcntl(report_fd, F_SETFD, FD_CLOEXEC) < 0) Fail(orch::kStageHelperArgs, errno);

  if (gate >= 0) {
    char go = 0;
    ssize_t n;
    do {
      n = read(static_cast<int>(gate), &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) _exit(127);  // the supervisor died before recording us
    close(static_cast<int>(gate));
  }

  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);

  int err = ENOENT;
  bool denied = false;
  for (int i = 0; i < ncandidates; ++i) {
    execve(candidates[i], job_argv, job_env);
    err = errno;
    if (err == EACCES) {
      denied = true;
    } else if (err != ENOENT && err != ENOTDIR && err != ELOOP && err != ENAMETOOLONG) {
      break;  // found, but it cannot run: that is the answer
    }
  }
  if (denied && (err == ENOENT || err == ENOTDIR || err == ELOOP || err == ENAMETOOLONG)) {
    err = EACCES;
  }
  Fail(orch::kStageExec, err);
}
