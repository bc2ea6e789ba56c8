// orchestrator-exec: the small static program a job's process runs between
// its creation and the job's own exec. The daemon creates the process with
// vfork semantics (clone CLONE_VM|CLONE_VFORK), so it never copies the
// daemon's memory; the new process execs this helper at once, and the helper
// does what must happen as the job's process before the job runs: the fd
// limit, the privilege drop, the cwd, waiting on the gate until the daemon
// has recorded the process's identity, then the exec of the job.
//
//   orchestrator-exec PLAN_FD
//
// PLAN_FD is a memfd of NUL-terminated fields (never the command line, which
// every local user may read):
//   REPORT_FD GATE_FD NOFILE_CUR NOFILE_MAX UID GID CWD
//   NGROUPS GROUP... NENV NAME=VALUE... NCANDIDATES CANDIDATE... NARGV ARG...
// NOFILE_CUR "-" keeps the limit; UID "-" keeps the user (GID and the
// groups are then ignored); CWD "" keeps the directory; GATE_FD -1 = exec
// without waiting. The helper itself starts with an empty environment: it
// runs as root until the drop, so nothing a client submits may reach libc's
// start-up. Failures go to REPORT_FD as a ChildReport (child_report.h).
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


// The plan's fields, read whole from its fd.
struct Plan {
  char** fields = nullptr;
  size_t count = 0;
  size_t next = 0;
  char* Next() { return next < count ? fields[next++] : nullptr; }
  // A count field, then that many fields: their start (nullptr if short).
  char** List(long long* n);
};

char** Plan::List(long long* n) {
  if (!ParseLong(Next(), n) || *n < 0 || static_cast<size_t>(*n) > count - next) return nullptr;
  char** first = fields + next;
  next += static_cast<size_t>(*n);
  return first;
}

bool ReadPlan(int fd, Plan* plan) {
  size_t cap = 1 << 16, size = 0;
  char* buf = static_cast<char*>(std::malloc(cap));
  for (;;) {
    if (buf == nullptr) return false;
    if (size == cap) {
      cap *= 2;
      buf = static_cast<char*>(std::realloc(buf, cap));
      continue;
    }
    ssize_t n = read(fd, buf + size, cap - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  close(fd);
  if (size == 0 || buf[size - 1] != '\0') return false;
  size_t count = 0;
  for (size_t i = 0; i < size; ++i) count += buf[i] == '\0';
  plan->fields = static_cast<char**>(std::malloc(sizeof(char*) * (count + 1)));
  if (plan->fields == nullptr) return false;
  for (size_t i = 0, start = 0; i < size; ++i) {
    if (buf[i] == '\0') {
      plan->fields[plan->count++] = buf + start;
      start = i + 1;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // Anything malformed is the daemon's bug: without a report fd, exit 127.
  long long plan_fd = -1, report = -1, gate = -1, uid = 0, gid = 0;
  Plan plan;
  if (argc != 2 || !ParseLong(argv[1], &plan_fd) || !ReadPlan(static_cast<int>(plan_fd), &plan) ||
      !ParseLong(plan.Next(), &report)) {
    _exit(127);
  }
  report_fd = static_cast<int>(report);
  if (!ParseLong(plan.Next(), &gate)) Fail(orch::kStageHelperArgs, EINVAL);
  const char* nofile_cur = plan.Next();
  const char* nofile_max = plan.Next();
  const char* uid_text = plan.Next();
  const char* gid_text = plan.Next();
  const char* cwd = plan.Next();
  long long ngroups = 0, nenv = 0, ncandidates = 0, nargv = 0;
  char** group_args = plan.List(&ngroups);
  char** job_env = group_args ? plan.List(&nenv) : nullptr;
  char** candidates = job_env ? plan.List(&ncandidates) : nullptr;
  char** job_argv = candidates ? plan.List(&nargv) : nullptr;
  if (cwd == nullptr || job_argv == nullptr || nargv == 0 || plan.next != plan.count) {
    Fail(orch::kStageHelperArgs, EINVAL);
  }
  // NULL-terminated in place: each list is followed by the next count field
  // (or, for argv, by the array's own end).
  auto** env_copy = static_cast<char**>(std::malloc(sizeof(char*) * (nenv + 1)));
  if (env_copy == nullptr) Fail(orch::kStageHelperArgs, ENOMEM);
  std::memcpy(env_copy, job_env, sizeof(char*) * nenv);
  env_copy[nenv] = nullptr;
  job_env = env_copy;
  plan.fields[plan.count] = nullptr;

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

  Fail(orch::kStageExec, orch::ExecFirstCandidate(candidates, static_cast<size_t>(ncandidates),
                                                   job_argv, job_env));
}
