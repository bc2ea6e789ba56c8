/* What a job's process tells the daemon when it could not exec: a stage and
 * an errno, written to the report pipe (CLOEXEC, so a successful exec closes
 * it and the daemon reads EOF); and the exec itself. Shared by the spawner
 * (C++) and the exec helper (C, built against musl where it is installed). */
#pragma once

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#ifdef __cplusplus
namespace orch {
#endif

enum ChildStage {
  kStageSetsid = 1,
  kStageStdio,
  kStageCwd,
  kStageSetgroups,
  kStageSetgid,
  kStageSetuid,
  kStageUidCheck,
  kStageExec,
  kStageRlimit,
  kStageHelper, /* the exec helper itself could not be started */
  kStageHelperArgs,
};

typedef struct ChildReport {
  int32_t stage;
  int32_t err;
} ChildReport;

static inline int ExecNotHere(int e) {
  return e == ENOENT || e == ENOTDIR || e == ELOOP || e == ENAMETOOLONG;
}

/* execve of each candidate path for argv[0] in PATH order, as execvp does;
 * returns only on failure, with the errno to report: the first that is not
 * "not here" (the file was found but cannot run), else EACCES when one was
 * found but not executable, else the last. Async-signal-safe. */
static inline int ExecFirstCandidate(const char* const* candidates, size_t n, char* const* argv,
                                     char* const* envp) {
  int err = ENOENT;
  int denied = 0;
  for (size_t i = 0; i < n; ++i) {
    execve(candidates[i], argv, envp);
    err = errno;
    if (err == EACCES) {
      denied = 1;
    } else if (!ExecNotHere(err)) {
      return err;
    }
  }
  return denied && ExecNotHere(err) ? EACCES : err;
}

#ifdef __cplusplus
}  // namespace orch
#endif
