/* orchestrator-exec: the small static program a job's process runs between
 * its creation and the job's own exec. The daemon creates the process with
 * vfork semantics (clone CLONE_VM|CLONE_VFORK), so it never copies the
 * daemon's memory; the new process execs this helper at once, and the helper
 * does what must happen as the job's process before the job runs: the fd
 * limit, the privilege drop, the cwd, waiting on the gate until the daemon
 * has recorded the process's identity, then the exec of the job.
 *
 *   orchestrator-exec PLAN_FD REPORT_FD
 *
 * PLAN_FD is a memfd of NUL-terminated fields (never the command line, which
 * every local user may read):
 *   GATE_FD NOFILE_CUR NOFILE_MAX UID GID CWD
 *   NGROUPS GROUP... NENV NAME=VALUE... NCANDIDATES CANDIDATE... NARGV ARG...
 * NOFILE_CUR "-" keeps the limit; UID "-" keeps the user (GID and the
 * groups are then ignored); CWD "" keeps the directory; GATE_FD -1 = exec
 * without waiting. The helper itself starts with an empty environment: it
 * runs as root until the drop, so nothing a client submits may reach libc's
 * start-up. Failures go to REPORT_FD as a ChildReport (child_report.h).
 *
 * C, and linked against musl where musl-tools is installed: glibc's static
 * start-up probes the CPU with dozens of cpuid instructions, each a trap to
 * the hypervisor on a VM, which made this helper's start cost as much as the
 * job's own (bench/README.md). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "supervisor/child_report.h"

static int report_fd = -1;

static _Noreturn void Fail(enum ChildStage stage, int err) {
  ChildReport r = {stage, err};
  if (report_fd >= 0) {
    ssize_t n;
    do {
      n = write(report_fd, &r, sizeof r);
    } while (n < 0 && errno == EINTR);
  }
  _exit(127);
}

static int ParseUnsigned(const char* s, unsigned long long* out) {
  if (s == NULL || *s < '0' || *s > '9') return 0;
  char* end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') return 0;
  *out = v;
  return 1;
}

static int ParseLong(const char* s, long long* out) {
  if (s == NULL || *s == '\0') return 0;
  char* end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0') return 0;
  *out = v;
  return 1;
}

/* The plan's fields, read whole from its fd. */
struct Plan {
  char** fields;
  size_t count;
  size_t next;
};

static char* Next(struct Plan* p) { return p->next < p->count ? p->fields[p->next++] : NULL; }

/* A count field, then that many fields: their start (NULL if short). */
static char** List(struct Plan* p, long long* n) {
  if (!ParseLong(Next(p), n) || *n < 0 || (size_t)*n > p->count - p->next) return NULL;
  char** first = p->fields + p->next;
  p->next += (size_t)*n;
  return first;
}

/* 0, or the errno that kept the plan from being read (EINVAL: malformed). */
static int ReadPlan(int fd, struct Plan* plan) {
  size_t cap = 1 << 16, size = 0;
  char* buf = malloc(cap);
  for (;;) {
    if (buf == NULL) return ENOMEM;
    if (size == cap) {
      cap *= 2;
      char* bigger = realloc(buf, cap);
      if (bigger == NULL) return ENOMEM;
      buf = bigger;
      continue;
    }
    ssize_t n = read(fd, buf + size, cap - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;
    size += (size_t)n;
  }
  close(fd);
  if (size == 0 || buf[size - 1] != '\0') return EINVAL;
  size_t count = 0;
  for (size_t i = 0; i < size; ++i) count += buf[i] == '\0';
  plan->fields = malloc(sizeof(char*) * (count + 1));
  if (plan->fields == NULL) return ENOMEM;
  for (size_t i = 0, start = 0; i < size; ++i) {
    if (buf[i] == '\0') {
      plan->fields[plan->count++] = buf + start;
      start = i + 1;
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  /* Anything wrong from here on is reported, so that the daemon takes it for
   * the host's fault, not the job's exit 127; only without a report fd is
   * there no one to tell. */
  long long plan_fd = -1, report = -1, gate = -1, uid = 0, gid = 0;
  struct Plan plan = {NULL, 0, 0};
  if (argc != 3 || !ParseLong(argv[2], &report)) _exit(127);
  report_fd = (int)report;
  if (!ParseLong(argv[1], &plan_fd)) Fail(kStageHelperArgs, EINVAL);
  int read_err = ReadPlan((int)plan_fd, &plan);
  if (read_err != 0) Fail(kStageHelperArgs, read_err);
  if (!ParseLong(Next(&plan), &gate)) Fail(kStageHelperArgs, EINVAL);
  const char* nofile_cur = Next(&plan);
  const char* nofile_max = Next(&plan);
  const char* uid_text = Next(&plan);
  const char* gid_text = Next(&plan);
  const char* cwd = Next(&plan);
  long long ngroups = 0, nenv = 0, ncandidates = 0, nargv = 0;
  char** group_args = List(&plan, &ngroups);
  char** job_env = group_args ? List(&plan, &nenv) : NULL;
  char** candidates = job_env ? List(&plan, &ncandidates) : NULL;
  char** job_argv = candidates ? List(&plan, &nargv) : NULL;
  if (cwd == NULL || job_argv == NULL || nargv == 0 || plan.next != plan.count) {
    Fail(kStageHelperArgs, EINVAL);
  }
  /* NULL-terminated in place: each list is followed by the next count field
   * (or, for argv, by the array's own end). */
  char** env_copy = malloc(sizeof(char*) * (size_t)(nenv + 1));
  if (env_copy == NULL) Fail(kStageHelperArgs, ENOMEM);
  memcpy(env_copy, job_env, sizeof(char*) * (size_t)nenv);
  env_copy[nenv] = NULL;
  job_env = env_copy;
  plan.fields[plan.count] = NULL;

  if (strcmp(nofile_cur, "-") != 0) {
    unsigned long long cur = 0, max = 0;
    if (!ParseUnsigned(nofile_cur, &cur) || !ParseUnsigned(nofile_max, &max)) {
      Fail(kStageHelperArgs, EINVAL);
    }
    struct rlimit rl = {(rlim_t)cur, (rlim_t)max};
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) Fail(kStageRlimit, errno);
  }

  if (strcmp(uid_text, "-") != 0) {
    if (!ParseLong(uid_text, &uid) || !ParseLong(gid_text, &gid)) Fail(kStageHelperArgs, EINVAL);
    /* A process of its own (not a copy of the daemon): malloc and the libc
     * credential calls are safe here. */
    gid_t* groups = malloc(sizeof(gid_t) * (size_t)(ngroups + 1));
    if (groups == NULL) Fail(kStageSetgroups, ENOMEM);
    for (long long i = 0; i < ngroups; ++i) {
      unsigned long long g = 0;
      if (!ParseUnsigned(group_args[i], &g)) Fail(kStageHelperArgs, EINVAL);
      groups[i] = (gid_t)g;
    }
    if (setgroups((size_t)ngroups, groups) < 0) Fail(kStageSetgroups, errno);
    if (setgid((gid_t)gid) < 0) Fail(kStageSetgid, errno);
    if (setuid((uid_t)uid) < 0) Fail(kStageSetuid, errno);
    /* Defense in depth: a drop that left a way back to root is no drop. */
    if (uid != 0 && setuid(0) == 0) Fail(kStageUidCheck, 0);
  }

  /* As the job's user: it must not learn which paths only root can reach. */
  if (*cwd != '\0' && chdir(cwd) < 0) Fail(kStageCwd, errno);

  /* A successful exec of the job closes the report pipe: EOF = it ran. */
  if (fcntl(report_fd, F_SETFD, FD_CLOEXEC) < 0) Fail(kStageHelperArgs, errno);

  if (gate >= 0) {
    char go = 0;
    ssize_t n;
    do {
      n = read((int)gate, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) _exit(127); /* the supervisor died before recording us */
    close((int)gate);
  }

  /* The daemon ignores some signals (SIGPIPE); an ignored signal stays
   * ignored across exec, so the job would inherit it. Blocked since the
   * clone, so nothing arrives half-way. The raw call: libc's sigaction
   * refuses the signals it keeps for itself (32-34 in musl), which a job
   * may use. */
  struct {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
  } dfl = {SIG_DFL, 0, NULL, 0};
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, 8);
  }
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, NULL);

  Fail(kStageExec, ExecFirstCandidate((const char* const*)candidates, (size_t)ncandidates,
                                      job_argv, job_env));
}
