// Starting a job's process (SPEC §4 "Spawn"). No uv_spawn: libuv would reap
// the child behind our back (STYLE §8).
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/process_identity.h"
#include "base/status.h"
#include "supervisor/pidfd.h"

namespace orch {

struct SpawnRequest {
  // argv[0] is looked up in env's PATH (not the daemon's; when env has no
  // PATH: /usr/local/bin:/usr/bin:/bin) when it has no '/', by the child
  // after the privilege drop, as execvp would.
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  // the complete environment of the child
  std::string cwd;                         // "" = the daemon's; entered as the job's user
  // Where the child's stdout/stderr go: fds the caller opened and still owns
  // (the child dup2s them onto 1 and 2; they stay open here). -1 = /dev/null.
  int stdout_fd = -1;
  int stderr_fd = -1;
  // RLIMIT_NOFILE for the child: the limit the daemon started with, before
  // it raised its own. nullopt = inherit.
  std::optional<rlimit> nofile_limit;
  // run_as: "" = keep the daemon's user; else resolved user (and groups).
  bool drop_privileges = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  // Intent first: the child is created and its identity read, but it waits
  // before exec until ReleaseSpawned(). If the daemon dies first, the child
  // sees EOF on its gate and exits without running the job, so a run whose
  // pid was never recorded can never have run.
  bool hold_until_released = false;
  // The run's cgroup (an O_DIRECTORY fd the caller owns), -1 = none. The
  // child is created in it (clone3 CLONE_INTO_CGROUP); where the kernel or a
  // seccomp profile refuses that, it is moved there before its exec.
  int cgroup_fd = -1;
  // Called with the child's pid as soon as it exists, on the calling thread
  // (the caller's SIGCHLD handling must know it before anything can reap it).
  std::function<void(pid_t)> on_created;
};

// A child held before exec (SpawnRequest::hold_until_released): the pipes
// and what a failure message needs. Closing it without releasing lets the
// child exit without ever running the job.
struct HeldExec;
struct HeldExecDeleter {
  void operator()(HeldExec* h) const;
};

struct SpawnedProcess {
  Pidfd pidfd;
  pid_t pid = 0;
  ProcessIdentity identity;  // boot id, pidns, pid, start time, pidfs inode
  bool used_clone3 = true;   // false when clone3 was refused and fork+pidfd_open was used
  bool used_exec_helper = false;  // made with vfork semantics, through the exec helper
  bool cgroup_at_clone = false;   // created inside SpawnRequest::cgroup_fd
  std::unique_ptr<HeldExec, HeldExecDeleter> held;  // set while held before exec
};

// What went wrong when the process could not be started. exec failures come
// back from the child through a CLOEXEC pipe.
struct SpawnFailure {
  int err = 0;  // errno
  // 127 only when the executable was not found (ENOENT/ENOTDIR, or no match
  // in PATH); 126 for everything else: not executable, permission, bad cwd.
  int shell_code = 127;
  // Whose fault: false = the job's (its executable or cwd); true = the
  // host's (no memory, process or fd limits, I/O errors): nothing about the
  // job says it would fail again, so it must not spend an attempt.
  bool host_fault = false;
  // "exec /no/such: No such file or directory" / "cwd /x: ..." /
  // "clone3: Resource temporarily unavailable" / "setuid 65534: ..."
  std::string message;
};

struct SpawnOutcome {
  bool ok = false;
  SpawnedProcess process;  // when ok
  SpawnFailure failure;    // when !ok
};

// Starts the child in a new session/process group with stdin /dev/null,
// stdout/stderr appended to the given files, default signal dispositions, an
// empty mask, no inherited fds (close_range), the daemon's original fd limit
// and an optional uid/gid drop.
// Uses clone3(CLONE_PIDFD); on EPERM/ENOSYS (container seccomp) falls back to
// fork + pidfd_open before any wait. Without hold_until_released, blocks
// until exec succeeded or failed. On failure the child (if one was made) has
// been reaped; on success it is not reaped and the caller owns the pidfd. If the new process's identity cannot be read
// (no /proc), it is killed and reaped and that is a failure: a run without
// an identity could never be verified. Callable from any thread; all signals
// are blocked in the calling thread while the child is created.
SpawnOutcome Spawn(const SpawnRequest& req);

// Lets a held child go on to exec, without waiting for the exec: its result
// is read after the child has exited, with ExecFailureAfterExit().
Status ReleaseHeld(HeldExec& held);

// For a released child that has exited (or been killed): the failure it
// reported before exec, or nullopt when it exec'd or was never released.
std::optional<SpawnFailure> ExecFailureAfterExit(HeldExec& held);

// A released child's exec report, kept across the daemon's re-exec (SPEC
// §14): the fd stays open (its FD_CLOEXEC is the caller's to clear) and
// the next image takes it back with ImportHeld.
struct HeldExecState {
  int report_fd = -1;
  std::string argv0, cwd, helper;
  uid_t uid = 0;
  gid_t gid = 0;
};
HeldExecState ExportHeld(const HeldExec& held);
std::unique_ptr<HeldExec, HeldExecDeleter> ImportHeld(const HeldExecState& state);

// Test hook: force the fork+pidfd_open fallback.
void ForceForkFallbackForTest(bool on);

// The exec helper (orchestrator-exec): `fd` is an O_PATH descriptor of the
// file the daemon vetted, exec'd through the fd (execveat) so that a later
// change of its path cannot swap it; `path` is for messages; -1 = none. Takes
// ownership of `fd`. With it, Spawn creates the child with vfork semantics
// (clone CLONE_VM|CLONE_VFORK|CLONE_PIDFD): the child execs the helper at
// once, never holding a copy of the daemon's memory, and the helper drops
// privileges, enters the cwd, waits on the gate and execs the job. Without
// it, the child is a copy of the daemon (clone3, or fork) that does the same
// itself. Call it at start, before any Spawn (it closes the fd it replaces).
void SetExecHelper(int fd, std::string path);

}  // namespace orch
