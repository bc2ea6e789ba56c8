// Starting a job's process (SPEC §4 "Spawn"). No uv_spawn: libuv would reap
// the child behind our back (STYLE §8).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/process_identity.h"
#include "base/status.h"
#include "supervisor/pidfd.h"

namespace orch {

struct SpawnRequest {
  std::vector<std::string> argv;              // argv[0] looked up in env PATH when it has no '/'
  std::map<std::string, std::string> env;     // the complete environment of the child
  std::string cwd;                            // "" = the daemon's
  std::string stdout_path;                    // opened O_APPEND|O_CREAT, 0640, in the parent
  std::string stderr_path;
  // run_as: "" = keep the daemon's user; else resolved user (and groups).
  bool drop_privileges = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

struct SpawnedProcess {
  Pidfd pidfd;
  pid_t pid = 0;
  ProcessIdentity identity;  // boot id, pidns, pid, start time, pidfs inode
  bool used_clone3 = true;   // false when clone3 was refused and fork+pidfd_open was used
};

// What went wrong when the process could not be started. exec failures come
// back from the child through a CLOEXEC pipe.
struct SpawnFailure {
  int err = 0;            // errno
  int shell_code = 127;   // 127 not found, 126 not executable / permission
  std::string message;    // "execvp /no/such: No such file or directory" / "cwd /x: ..."
};

struct SpawnOutcome {
  bool ok = false;
  SpawnedProcess process;  // when ok
  SpawnFailure failure;    // when !ok
};

// Starts the child in a new session/process group with stdin /dev/null,
// stdout/stderr appended to the given files, default signal dispositions, an
// empty mask, no inherited fds (close_range) and an optional uid/gid drop.
// Uses clone3(CLONE_PIDFD); on EPERM/ENOSYS (container seccomp) falls back to
// fork + pidfd_open before any wait. Blocks only until exec succeeded or
// failed. A failure to open a log file is a SpawnFailure too.
SpawnOutcome Spawn(const SpawnRequest& req);

// Test hook: force the fork+pidfd_open fallback.
void ForceForkFallbackForTest(bool on);

// Caps a run's log file at max_bytes: when larger, truncates it to max_bytes
// and, when `final` (the run ended), appends one line saying how much was cut.
// Safe while the child still writes (it opened the file O_APPEND).
Status EnforceLogCap(const std::string& path, int64_t max_bytes, bool final);

}  // namespace orch
