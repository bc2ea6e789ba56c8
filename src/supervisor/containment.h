// Where a run's processes live and how they are stopped (SPEC §4, §12): its
// process group (cgroup mode none) or its own cgroup. The supervisor
// signals, kills, measures and waits for a run only through a RunScope.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "base/status.h"
#include "store/job.h"
#include "supervisor/cgroup.h"
#include "supervisor/pidfd.h"

namespace orch {

// The run's first process: the one the supervisor spawned (child) or
// adopted after a restart (verified by identity, not our child).
struct RunLeader {
  pid_t pid = 0;
  const Pidfd* pidfd = nullptr;
  bool child = true;
};

class RunScope {
 public:
  virtual ~RunScope() = default;
  // `sig` to every process of the run.
  virtual void Signal(const RunLeader& leader, int sig) = 0;
  // The leader has exited and is not reaped yet (its zombie still holds its
  // group id): SIGKILL to whatever of the run is left.
  virtual void KillRest(const RunLeader& leader) = 0;
  // Whether any process of the run is left once the leader is reaped. A
  // process group is not followed after its leader: always false.
  virtual Result<bool> Populated() const = 0;
  // A file whose changes announce that Populated() may have changed ("" = none).
  virtual std::string events_path() const = 0;
  virtual CgroupUsage Usage() const = 0;
  virtual int cgroup_fd() const = 0;  // for CLONE_INTO_CGROUP; -1 = none
  virtual std::string cgroup() const = 0;  // its path; "" = none
  // Once nothing is left: kUnavailable while the kernel still holds it.
  virtual Status Remove() = 0;
};

// Chooses the RunScope for the mode the daemon set up (CgroupTree).
class Containment {
 public:
  explicit Containment(CgroupTree tree) : tree_(std::move(tree)) {}
  CgroupMode mode() const { return tree_.mode(); }
  const CgroupTree& tree() const { return tree_; }

  // A new run's scope, with its limits applied (launcher thread).
  Result<std::unique_ptr<RunScope>> Prepare(int64_t run_id, const CgroupLimits& limits) const;
  // A run recorded before (an orphan after a restart): its cgroup when it
  // had one that is still there, else its process group.
  std::unique_ptr<RunScope> ForRecorded(const Run& run) const;
  // The cgroup root/run-<id> left over by an earlier incarnation, if any.
  Result<std::unique_ptr<RunScope>> Leftover(int64_t run_id) const;

 private:
  CgroupTree tree_;
};

// A process group scope (mode none): the leader's session.
std::unique_ptr<RunScope> ProcessGroupScope();

// The job's limits as the cgroup takes them.
CgroupLimits LimitsOf(const Job& job);
// "memory_max: needs the memory cgroup controller, and this daemon's cgroup
// mode is tracking (…)": why `field` cannot be applied here.
std::string LimitRefusal(const CgroupTree& tree, const std::string& field);

}  // namespace orch
