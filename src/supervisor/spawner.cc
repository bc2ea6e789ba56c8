#include "supervisor/spawner.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

#include "base/unique_fd.h"
#include "supervisor/child_report.h"
#include "supervisor/identity.h"

namespace orch {
namespace {

std::atomic<bool> force_fork_fallback{false};

// The exec helper, opened once (O_PATH) and exec'd through that fd, so that
// what runs is the file vetted at start whatever its path holds later; -1 =
// none: the child is a full copy of the daemon, made with clone3 or fork.
std::mutex exec_helper_mu;
int exec_helper_fd = -1;    // guarded by exec_helper_mu
std::string exec_helper;    // its path, for messages; guarded by exec_helper_mu

constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

// The first 64 bytes of struct clone_args (CLONE_ARGS_SIZE_VER0). Declared
// here because <linux/sched.h> clashes with glibc's <sched.h>.
struct CloneArgsV0 {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
};
static_assert(sizeof(CloneArgsV0) == 64);
// CLONE_ARGS_SIZE_VER2: the above, set_tid, set_tid_size and cgroup.
struct CloneArgsV2 {
  CloneArgsV0 v0;
  uint64_t set_tid;
  uint64_t set_tid_size;
  uint64_t cgroup;
};
static_assert(sizeof(CloneArgsV2) == 88);
constexpr uint64_t kCloneIntoCgroup = 0x200000000ULL;

}  // namespace

#if defined(__x86_64__)
// clone3 for a child that shares our memory (CLONE_VM): it starts on the
// stack given in the args and must never return into the caller's frame,
// so the call into `fn` and the exit happen here. glibc has no public
// clone3, and its clone() cannot say CLONE_INTO_CGROUP. Returns the pid or
// -errno, as the raw syscall does.
extern "C" long orch_clone3_vm(void* args, size_t size, int (*fn)(void*), void* arg);
asm(R"(
  .pushsection .text
  .p2align 4
  .globl orch_clone3_vm
  .hidden orch_clone3_vm
  .type orch_clone3_vm, @function
orch_clone3_vm:
  movq %rdx, %r8
  movq %rcx, %r9
  movl $435, %eax
  syscall
  testq %rax, %rax
  jz 1f
  ret
1:
  xorl %ebp, %ebp
  movq %r9, %rdi
  call *%r8
  movl %eax, %edi
  movl $60, %eax
  syscall
  hlt
  .size orch_clone3_vm, .-orch_clone3_vm
  .popsection
)");
#endif

namespace {

using Stage = ChildStage;

// Everything the child needs, built in the parent: between clone and exec
// the child may not allocate (another thread of the parent could have held
// the malloc lock at the moment of the copy).
struct ChildPlan {
  // Where argv[0] may be, in PATH order: tried one by one in the child, after
  // the switch to the job's user, as execvp would (permissions are the job
  // user's; the daemon never probes the filesystem as root for it).
  const char* const* candidates = nullptr;
  size_t ncandidates = 0;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* cwd = nullptr;  // nullptr = keep the parent's
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  int report_fd = -1;
  int gate_fd = -1;  // held spawn: wait for one byte before exec
  int max_fd = 1024;  // for the close() loop when close_range is missing
  bool set_nofile = false;
  rlimit nofile{};
  bool drop_privileges = false;
  uid_t uid = 0;
  gid_t gid = 0;
  const gid_t* groups = nullptr;
  size_t ngroups = 0;
  // With the exec helper: its fd, its argv, and the memfd with the plan.
  int helper_fd = -1;
  char* const* helper_argv = nullptr;
  int plan_fd = -1;
};

[[noreturn]] void ReportAndExit(int fd, Stage stage, int err) {
  ChildReport r{stage, err};
  ssize_t n;
  do {
    n = write(fd, &r, sizeof r);
  } while (n < 0 && errno == EINTR);
  _exit(127);
}

void CloseFrom(unsigned first, unsigned last, int max_fd) {
  if (first > last) return;
  if (close_range(first, last, 0) == 0) return;
  for (unsigned fd = first; fd <= last && fd < static_cast<unsigned>(max_fd); ++fd)
    close(static_cast<int>(fd));
}

// Runs in the new process, which after a raw clone3 is a copy of the parent
// in which glibc never learned it forked: its cached thread id and thread
// list are stale. So: async-signal-safe calls only, and raw syscalls for the
// credential changes (glibc's setuid() would try to broadcast to the
// parent's other threads). No raise()/abort() either (they use the cached tid).
[[noreturn]] void RunChild(const ChildPlan& p) {
  // The parent blocked every signal before cloning, so none of its handlers
  // can run here before the dispositions are back to default.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < _NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &dfl, nullptr);  // EINVAL for glibc's internal signals: harmless
  }

  if (setsid() < 0) ReportAndExit(p.report_fd, kStageSetsid, errno);

  // All source fds are >= 3 (the parent made sure), so no dup2 clobbers another.
  if (dup2(p.stdin_fd, 0) < 0 || dup2(p.stdout_fd, 1) < 0 || dup2(p.stderr_fd, 2) < 0) {
    ReportAndExit(p.report_fd, kStageStdio, errno);
  }

  if (p.set_nofile && setrlimit(RLIMIT_NOFILE, &p.nofile) < 0) {
    ReportAndExit(p.report_fd, kStageRlimit, errno);
  }

  if (p.drop_privileges) {
    if (syscall(SYS_setgroups, p.ngroups, p.groups) < 0) {
      ReportAndExit(p.report_fd, kStageSetgroups, errno);
    }
    if (syscall(SYS_setgid, p.gid) < 0) ReportAndExit(p.report_fd, kStageSetgid, errno);
    if (syscall(SYS_setuid, p.uid) < 0) ReportAndExit(p.report_fd, kStageSetuid, errno);
    // Defense in depth: a drop that left a way back to root is no drop.
    if (p.uid != 0 && syscall(SYS_setuid, 0) == 0) ReportAndExit(p.report_fd, kStageUidCheck, 0);
  }

  // As the job's user: it must not learn which paths only root can reach.
  if (p.cwd != nullptr && chdir(p.cwd) < 0) ReportAndExit(p.report_fd, kStageCwd, errno);

  // Close everything but 0-2, the report pipe (which is CLOEXEC, so a
  // successful exec closes it and the parent reads EOF) and the gate.
  unsigned lo = static_cast<unsigned>(p.report_fd), hi = lo;
  if (p.gate_fd >= 0) {
    lo = std::min(lo, static_cast<unsigned>(p.gate_fd));
    hi = std::max(hi, static_cast<unsigned>(p.gate_fd));
  }
  CloseFrom(3, lo - 1, p.max_fd);
  CloseFrom(lo + 1, hi - 1, p.max_fd);
  CloseFrom(hi + 1, ~0U, p.max_fd);

  if (p.gate_fd >= 0) {
    char go = 0;
    ssize_t n;
    do {
      n = read(p.gate_fd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) _exit(127);  // the supervisor died before recording us
    close(p.gate_fd);
  }

  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);

  ReportAndExit(p.report_fd, kStageExec,
                ExecFirstCandidate(p.candidates, p.ncandidates, p.argv, p.envp));
}

// Runs in the child made with CLONE_VM|CLONE_VFORK: it shares the daemon's
// memory while the calling thread sleeps, so it only touches its own stack,
// the plan and its fd table (copied, as are the signal dispositions), and
// execs the helper at once. Raw syscalls only: a sanitizer's interceptors
// would update the daemon's own bookkeeping from here.
int RunHelperChild(void* arg) {
  const ChildPlan& p = *static_cast<const ChildPlan*>(arg);
  // Every signal stays blocked until the helper has reset the dispositions
  // (the exec resets those with handlers, the helper the ignored ones):
  // the fewer syscalls here, the shorter the loop sleeps in the vfork.
  if (syscall(SYS_setsid) < 0) ReportAndExit(p.report_fd, kStageSetsid, errno);
  if (syscall(SYS_dup2, p.stdin_fd, 0) < 0 || syscall(SYS_dup2, p.stdout_fd, 1) < 0 ||
      syscall(SYS_dup2, p.stderr_fd, 2) < 0) {
    ReportAndExit(p.report_fd, kStageStdio, errno);
  }
  // The helper inherits the report pipe, the gate and the plan; it sets
  // CLOEXEC on the report pipe again before the job's exec. The helper's own
  // fd is CLOEXEC: exec'ing it closes it.
  int keep[] = {p.report_fd, p.gate_fd, p.plan_fd, p.helper_fd};
  for (int fd : {p.report_fd, p.gate_fd, p.plan_fd}) {
    if (fd >= 0 && syscall(SYS_fcntl, fd, F_SETFD, 0) < 0) {
      ReportAndExit(p.report_fd, kStageHelper, errno);
    }
  }
  std::sort(std::begin(keep), std::end(keep));
  unsigned next = 3;
  for (int fd : keep) {
    if (fd < 0) continue;
    if (static_cast<unsigned>(fd) > next) syscall(SYS_close_range, next, fd - 1, 0);
    next = static_cast<unsigned>(fd) + 1;
  }
  syscall(SYS_close_range, next, ~0U, 0);
  char empty[] = "";
  char* const no_env[] = {nullptr};
  syscall(SYS_execveat, p.helper_fd, empty, p.helper_argv, no_env, AT_EMPTY_PATH);
  ReportAndExit(p.report_fd, kStageHelper, errno);
}

// The exec helper's plan (see exec_helper.c): NUL-terminated fields in a
// memfd, never on its command line, which every local user may read.
Result<int> WritePlan(const std::vector<std::string>& fields) {
  int fd = static_cast<int>(syscall(SYS_memfd_create, "orchestrator-plan", MFD_CLOEXEC));
  if (fd < 0) return FromErrno("memfd_create");
  std::string blob;
  for (const auto& f : fields) {
    blob += f;
    blob += '\0';
  }
  size_t done = 0;
  while (done < blob.size()) {
    ssize_t n = write(fd, blob.data() + done, blob.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      close(fd);
      return FromErrno("write plan", err);
    }
    done += static_cast<size_t>(n);
  }
  if (lseek(fd, 0, SEEK_SET) != 0) {
    int err = errno;
    close(fd);
    return FromErrno("lseek plan", err);
  }
  return fd;
}

SpawnOutcome Fail(int err, int shell_code, std::string message, bool host_fault) {
  SpawnOutcome out;
  out.ok = false;
  out.failure.err = err;
  out.failure.shell_code = shell_code;
  out.failure.host_fault = host_fault;
  out.failure.message = std::move(message);
  return out;
}

// The host's fault, not the job's: the same request could succeed later.
SpawnOutcome HostFault(int err, std::string message) {
  return Fail(err, 126, std::move(message), true);
}

// exec and chdir fail for the job's reasons (no such file, permission, not
// an executable) or, with these, for the host's.
bool IsResourceError(int err) {
  return err == EAGAIN || err == ENOMEM || err == ENFILE || err == EMFILE || err == EIO ||
         err == ENOSPC || err == EINTR;
}

std::string ErrText(int err) { return std::strerror(err); }

// Moves fd to a number >= 3 (CLOEXEC), so that the child's dup2 onto 0-2
// never overwrites a descriptor it still has to copy.
int AboveStdio(int fd) {
  if (fd < 0 || fd >= 3) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int err = errno;
  close(fd);
  errno = err;
  return moved;
}

// /dev/null, opened once per mode (>= 3, CLOEXEC): read-only for every
// child's stdin, write-only for missing outputs. -1 with errno when it
// cannot be opened.
int DevNull(int mode) {
  static std::mutex mu;
  static int read_fd = -1, write_fd = -1;
  std::lock_guard lock(mu);
  int& fd = mode == O_RDONLY ? read_fd : write_fd;
  if (fd < 0) fd = AboveStdio(open("/dev/null", mode | O_CLOEXEC));
  return fd;
}

// An fd the child dup2s onto 1 or 2: the caller's own when it is >= 3 (the
// child has a copy of the whole table anyway), else a copy above stdio that
// `owned` keeps; /dev/null for -1.
int OutputFd(int fd, UniqueFd& owned) {
  if (fd < 0) return DevNull(O_WRONLY);
  if (fd >= 3) return fd;
  owned = UniqueFd(fcntl(fd, F_DUPFD_CLOEXEC, 3));
  return owned.get();
}

// The fd limit, for the close() loop where close_range is missing: read
// once, after the daemon raised its own limit at start.
int MaxFd() {
  static const int max_fd = [] {
    long open_max = sysconf(_SC_OPEN_MAX);
    return open_max > 0 ? static_cast<int>(std::min<long>(open_max, 1 << 20)) : 1024;
  }();
  return max_fd;
}

// The paths execve tries for argv[0]: itself when it has a '/', else each
// absolute directory of the JOB's PATH (not the daemon's; when env has no
// PATH: kDefaultPath) joined with it. Relative PATH entries are skipped: they
// would mean the daemon's cwd here and the job's cwd in the child.
std::vector<std::string> ExecCandidates(const std::string& name,
                                        const std::map<std::string, std::string>& env) {
  if (name.find('/') != std::string::npos) return {name};
  if (name.empty()) return {};
  auto it = env.find("PATH");
  std::string search = it != env.end() ? it->second : kDefaultPath;
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= search.size()) {
    size_t end = search.find(':', pos);
    if (end == std::string::npos) end = search.size();
    std::string dir = search.substr(pos, end - pos);
    pos = end + 1;
    if (!dir.empty() && dir[0] == '/') out.push_back(dir + "/" + name);
  }
  return out;
}

}  // namespace

struct HeldExec {
  int gate_fd = -1;
  int report_fd = -1;
  std::string argv0, cwd, helper;
  uid_t uid = 0;
  gid_t gid = 0;
  ~HeldExec() {
    if (gate_fd >= 0) close(gate_fd);
    if (report_fd >= 0) close(report_fd);
  }
};

void HeldExecDeleter::operator()(HeldExec* h) const { delete h; }

namespace {

SpawnOutcome ChildFailure(const HeldExec& req, const ChildReport& r) {
  int err = r.err;
  switch (r.stage) {
    case kStageRlimit:
      return HostFault(err, "setrlimit RLIMIT_NOFILE: " + ErrText(err));
    case kStageExec:
      return Fail(err, err == ENOENT || err == ENOTDIR ? 127 : 126,
                  "exec " + req.argv0 + ": " + ErrText(err), IsResourceError(err));
    case kStageCwd:
      return Fail(err, 126, "cwd " + req.cwd + ": " + ErrText(err), IsResourceError(err));
    case kStageSetsid:
      return HostFault(err, "setsid: " + ErrText(err));
    case kStageStdio:
      return HostFault(err, "dup2 stdio: " + ErrText(err));
    case kStageSetgroups:
      return HostFault(err, "setgroups: " + ErrText(err));
    case kStageSetgid:
      return HostFault(err, "setgid " + std::to_string(req.gid) + ": " + ErrText(err));
    case kStageSetuid:
      return HostFault(err, "setuid " + std::to_string(req.uid) + ": " + ErrText(err));
    case kStageUidCheck:
      return HostFault(EPERM,
                       "setuid " + std::to_string(req.uid) + ": setuid(0) still succeeds afterwards");
    case kStageHelper:
      return HostFault(err, "exec helper " + req.helper + ": " + ErrText(err));
    case kStageHelperArgs:
      return HostFault(err, "exec helper " + req.helper + ": cannot read its plan: " + ErrText(err));
    default:
      return HostFault(EPROTO, "child reported unknown stage " + std::to_string(r.stage));
  }
}

// Waits (blocking) for our own child that is known to be exiting and reaps
// it through the one reaping function.
void WaitAndReap(const Pidfd& pidfd) {
  pollfd p{pidfd.get(), POLLIN, 0};
  while (poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
  auto reaped = ReapPidfd(pidfd.get());
  (void)reaped;  // ECHILD if someone else reaped it: nothing left to do
}

Status MoveIntoCgroup(int cgroup_fd, pid_t pid) {
  UniqueFd procs(openat(cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!procs.valid()) return FromErrno("open cgroup.procs");
  std::string text = std::to_string(pid);
  ssize_t n;
  do {
    n = write(procs.get(), text.data(), text.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return FromErrno("cgroup.procs " + text);
  return Status::Ok();
}

// Reads the child's report: EOF = exec succeeded (the CLOEXEC write end
// closed). On failure the child is reaped.
std::optional<SpawnFailure> AwaitExec(const HeldExec& held, const Pidfd& pidfd) {
  ChildReport report{};
  ssize_t n;
  do {
    n = read(held.report_fd, &report, sizeof report);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return std::nullopt;
  WaitAndReap(pidfd);
  if (n != static_cast<ssize_t>(sizeof report)) {
    return HostFault(EPROTO, "exec " + held.argv0 + ": short report from child").failure;
  }
  return ChildFailure(held, report).failure;
}

}  // namespace

Status ReleaseHeld(HeldExec& held) {
  char go = 1;
  ssize_t n;
  do {
    n = write(held.gate_fd, &go, 1);
  } while (n < 0 && errno == EINTR);
  int err = errno;
  close(held.gate_fd);
  held.gate_fd = -1;
  return n == 1 ? Status::Ok() : FromErrno("release held child", err);
}

std::optional<SpawnFailure> ExecFailureAfterExit(HeldExec& held) {
  if (held.report_fd < 0) return std::nullopt;
  // The child is gone, so every write end is closed: this never blocks.
  ChildReport report{};
  ssize_t n;
  do {
    n = read(held.report_fd, &report, sizeof report);
  } while (n < 0 && errno == EINTR);
  close(held.report_fd);
  held.report_fd = -1;
  if (n != static_cast<ssize_t>(sizeof report)) return std::nullopt;
  return ChildFailure(held, report).failure;
}

HeldExecState ExportHeld(const HeldExec& held) {
  return HeldExecState{held.report_fd, held.argv0, held.cwd, held.helper, held.uid, held.gid};
}

std::unique_ptr<HeldExec, HeldExecDeleter> ImportHeld(const HeldExecState& state) {
  std::unique_ptr<HeldExec, HeldExecDeleter> held(new HeldExec);
  held->report_fd = state.report_fd;
  held->argv0 = state.argv0;
  held->cwd = state.cwd;
  held->helper = state.helper;
  held->uid = state.uid;
  held->gid = state.gid;
  return held;
}

void ForceForkFallbackForTest(bool on) { force_fork_fallback.store(on); }

void SetExecHelper(int fd, std::string path) {
  std::lock_guard lock(exec_helper_mu);
  if (exec_helper_fd >= 0) close(exec_helper_fd);
  exec_helper_fd = fd;
  exec_helper = std::move(path);
}

SpawnOutcome Spawn(const SpawnRequest& req) {
  if (req.argv.empty()) return Fail(EINVAL, 127, "exec: empty argv", false);
  std::vector<std::string> candidates = ExecCandidates(req.argv[0], req.env);
  std::vector<const char*> candidate_ptrs;
  for (const auto& c : candidates) candidate_ptrs.push_back(c.c_str());
  if (candidates.empty()) {
    return Fail(ENOENT, 127, "exec " + req.argv[0] + ": " + ErrText(ENOENT), false);
  }

  // argv/envp arrays: the child may not allocate.
  std::vector<std::string> argv_store = req.argv;
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_store;
  for (const auto& [k, v] : req.env) env_store.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  auto host_errno = [](const std::string& what) {
    int err = errno;
    return HostFault(err, what + ": " + ErrText(err));
  };
  int null_fd = DevNull(O_RDONLY);
  if (null_fd < 0) return host_errno("open /dev/null");
  UniqueFd out_copy, err_copy;
  int out_fd = OutputFd(req.stdout_fd, out_copy);
  if (out_fd < 0) return host_errno("stdout fd");
  int err_fd = OutputFd(req.stderr_fd, err_copy);
  if (err_fd < 0) return host_errno("stderr fd");
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) < 0) return host_errno("pipe2");
  UniqueFd report_r(pipe_fds[0]);
  UniqueFd report_w(AboveStdio(pipe_fds[1]));
  if (report_w.get() < 0) return host_errno("pipe2");
  UniqueFd gate_r, gate_w;
  if (req.hold_until_released) {
    int gate_fds[2];
    if (pipe2(gate_fds, O_CLOEXEC) < 0) return host_errno("pipe2");
    gate_r = UniqueFd(AboveStdio(gate_fds[0]));
    gate_w = UniqueFd(gate_fds[1]);
    if (gate_r.get() < 0) return host_errno("pipe2");
  }

  ChildPlan plan;
  plan.candidates = candidate_ptrs.data();
  plan.ncandidates = candidate_ptrs.size();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.cwd = req.cwd.empty() ? nullptr : req.cwd.c_str();
  plan.stdin_fd = null_fd;
  plan.stdout_fd = out_fd;
  plan.stderr_fd = err_fd;
  plan.report_fd = report_w.get();
  plan.gate_fd = gate_r.get();
  plan.max_fd = MaxFd();
  if (req.nofile_limit) {
    plan.set_nofile = true;
    plan.nofile = *req.nofile_limit;
  }
  plan.drop_privileges = req.drop_privileges;
  plan.uid = req.uid;
  plan.gid = req.gid;
  plan.groups = req.groups.data();
  plan.ngroups = req.groups.size();

  std::string helper;
  int helper_fd = -1;
  if (!force_fork_fallback.load()) {
    std::lock_guard lock(exec_helper_mu);
    helper_fd = exec_helper_fd;
    helper = exec_helper;
  }
  bool use_helper = helper_fd >= 0;
  char helper_arg0[] = "orchestrator-exec";
  std::string plan_arg;
  std::string report_arg;
  char* helper_argv[4] = {helper_arg0, nullptr, nullptr, nullptr};
  UniqueFd plan_fd;
  std::vector<char> child_stack;
  if (use_helper) {
    auto num = [](auto v) { return std::to_string(v); };
    std::vector<std::string> fields = {
        num(gate_r.get()),
        req.nofile_limit ? num(req.nofile_limit->rlim_cur) : "-",
        req.nofile_limit ? num(req.nofile_limit->rlim_max) : "-",
        req.drop_privileges ? num(req.uid) : "-",
        req.drop_privileges ? num(req.gid) : "-",
        req.cwd,
        num(req.drop_privileges ? req.groups.size() : 0)};
    if (req.drop_privileges) {
      for (gid_t g : req.groups) fields.push_back(num(g));
    }
    fields.push_back(num(env_store.size()));
    fields.insert(fields.end(), env_store.begin(), env_store.end());
    fields.push_back(num(candidates.size()));
    fields.insert(fields.end(), candidates.begin(), candidates.end());
    fields.push_back(num(req.argv.size()));
    fields.insert(fields.end(), req.argv.begin(), req.argv.end());
    auto written = WritePlan(fields);
    if (!written.ok()) return HostFault(EIO, written.status().message());
    plan_fd = UniqueFd(AboveStdio(*written));
    if (!plan_fd.valid()) return host_errno("plan fd");
    plan_arg = num(plan_fd.get());
    helper_argv[1] = plan_arg.data();
    report_arg = num(report_w.get());
    helper_argv[2] = report_arg.data();
    plan.helper_fd = helper_fd;
    plan.helper_argv = helper_argv;
    plan.plan_fd = plan_fd.get();
    child_stack.resize(64 * 1024);
  }

  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);

  SpawnOutcome out;
  int child_pidfd = -1;
  pid_t pid = -1;
  int clone_err = ENOSYS;
  bool into_cgroup = false;
  if (use_helper) {
    // vfork semantics: no copy of the daemon's memory at all; this thread
    // sleeps until the child has exec'd the helper (or failed to).
#if defined(__x86_64__)
    if (req.cgroup_fd >= 0) {
      CloneArgsV2 args{};
      args.v0.flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | kCloneIntoCgroup;
      args.v0.pidfd = reinterpret_cast<uint64_t>(&child_pidfd);
      args.v0.exit_signal = SIGCHLD;
      args.v0.stack = reinterpret_cast<uint64_t>(child_stack.data());
      args.v0.stack_size = child_stack.size();
      args.cgroup = static_cast<uint64_t>(req.cgroup_fd);
      long made = orch_clone3_vm(&args, sizeof args, RunHelperChild, &plan);
      // Refused (seccomp, a kernel before 5.7): clone() below, then moved.
      if (made > 0) {
        pid = static_cast<pid_t>(made);
        into_cgroup = true;
      }
    }
#endif
    if (pid < 0) {
      pid = clone(RunHelperChild, child_stack.data() + child_stack.size(),
                  CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &plan, &child_pidfd);
    }
    if (pid < 0) {
      int err = errno;
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      return HostFault(err, "clone: " + ErrText(err));
    }
  } else if (!force_fork_fallback.load()) {
    CloneArgsV2 args{};
    args.v0.flags = CLONE_PIDFD;
    args.v0.pidfd = reinterpret_cast<uint64_t>(&child_pidfd);
    args.v0.exit_signal = SIGCHLD;
    if (req.cgroup_fd >= 0) {
      args.v0.flags |= kCloneIntoCgroup;
      args.cgroup = static_cast<uint64_t>(req.cgroup_fd);
      pid = static_cast<pid_t>(syscall(SYS_clone3, &args, sizeof args));
      if (pid == 0) RunChild(plan);
      into_cgroup = pid > 0;
      args.v0.flags &= ~kCloneIntoCgroup;
    }
    if (pid < 0) {
      pid = static_cast<pid_t>(syscall(SYS_clone3, &args.v0, sizeof args.v0));
      if (pid == 0) RunChild(plan);
    }
    clone_err = errno;
    if (pid < 0 && clone_err != EPERM && clone_err != ENOSYS) {
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      return HostFault(clone_err, "clone3: " + ErrText(clone_err));
    }
  }
  out.process.used_clone3 = !use_helper && pid > 0;
  out.process.used_exec_helper = use_helper;
  if (pid < 0) {
    // Container seccomp profiles refuse clone3. An unreaped child's pid cannot
    // be reused, so pidfd_open before any wait yields the right process.
    pid = fork();
    if (pid == 0) RunChild(plan);
    int fork_err = errno;
    if (pid < 0) {
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      return HostFault(fork_err, "fork: " + ErrText(fork_err));
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (req.on_created) req.on_created(pid);

  if (child_pidfd >= 0) {
    out.process.pidfd = Pidfd(child_pidfd);
  } else {
    auto opened = Pidfd::Open(pid);
    if (!opened.ok()) {
      // No pidfd (kernel < 5.3): our own unreaped child's pid is pinned until
      // we wait, so this kill and this pid-wait reach the right process. The
      // only reaping outside ReapPidfd, because there is no pidfd to use.
      kill(pid, SIGKILL);
      siginfo_t info{};
      while (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED) < 0 && errno == EINTR) {
      }
      return HostFault(EIO, "pidfd_open after fork: " + opened.status().message());
    }
    out.process.pidfd = std::move(opened).value();
  }
  out.process.pid = pid;
  out.process.cgroup_at_clone = into_cgroup;
  if (req.cgroup_fd >= 0 && !into_cgroup) {
    // Still before the job's exec: it waits on its gate, or (not held) has
    // only just been made. Our unreaped child's pid names it.
    Status moved = MoveIntoCgroup(req.cgroup_fd, pid);
    if (!moved.ok()) {
      (void)out.process.pidfd.SendSignal(SIGKILL);
      WaitAndReap(out.process.pidfd);
      return HostFault(EIO, moved.message());
    }
  }

  report_w.Reset();
  gate_r.Reset();
  auto held = std::unique_ptr<HeldExec, HeldExecDeleter>(new HeldExec);
  held->report_fd = report_r.Release();
  held->gate_fd = gate_w.Release();
  held->argv0 = req.argv[0];
  held->cwd = req.cwd;
  held->helper = helper;
  held->uid = req.uid;
  held->gid = req.gid;
  if (!req.hold_until_released) {
    if (auto failure = AwaitExec(*held, out.process.pidfd)) {
      SpawnOutcome failed;
      failed.failure = std::move(*failure);
      return failed;
    }
    held.reset();
  }

  auto identity = IdentityOf(pid, out.process.pidfd.get());
  if (!identity.ok()) {
    (void)out.process.pidfd.SendSignal(SIGKILL);
    WaitAndReap(out.process.pidfd);
    return HostFault(EIO,
                "identity of pid " + std::to_string(pid) + ": " + identity.status().ToString());
  }
  out.process.identity = std::move(identity).value();
  out.process.held = std::move(held);
  out.ok = true;
  return out;
}

}  // namespace orch
