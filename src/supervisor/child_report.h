// What a job's process tells the daemon when it could not exec: a stage and
// an errno, written to the report pipe (CLOEXEC, so a successful exec closes
// it and the daemon reads EOF); and the exec itself. Shared by the spawner
// and the exec helper.
#pragma once

#include <errno.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace orch {

enum ChildStage : int32_t {
  kStageSetsid = 1,
  kStageStdio,
  kStageCwd,
  kStageSetgroups,
  kStageSetgid,
  kStageSetuid,
  kStageUidCheck,
  kStageExec,
  kStageRlimit,
  kStageHelper,  // the exec helper itself could not be started
  kStageHelperArgs,
};

struct ChildReport {
  int32_t stage;
  int32_t err;
};

// execve of each candidate path for argv[0] in PATH order, as execvp does;
// returns only on failure, with the errno to report: the first that is not
// "not here" (the file was found but cannot run), else EACCES when one was
// found but not executable, else the last. Async-signal-safe.
inline int ExecFirstCandidate(const char* const* candidates, size_t n, char* const* argv,
                              char* const* envp) {
  auto not_here = [](int e) { return e == ENOENT || e == ENOTDIR || e == ELOOP || e == ENAMETOOLONG; };
  int err = ENOENT;
  bool denied = false;
  for (size_t i = 0; i < n; ++i) {
    execve(candidates[i], argv, envp);
    err = errno;
    if (err == EACCES) {
      denied = true;
    } else if (!not_here(err)) {
      return err;
    }
  }
  return denied && not_here(err) ? EACCES : err;
}

}  // namespace orch
