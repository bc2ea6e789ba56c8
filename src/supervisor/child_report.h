// What a job's process tells the daemon when it could not exec: a stage and
// an errno, written to the report pipe (CLOEXEC, so a successful exec closes
// it and the daemon reads EOF). Shared by the spawner and the exec helper.
#pragma once

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

}  // namespace orch
