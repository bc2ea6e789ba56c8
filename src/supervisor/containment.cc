#include "supervisor/containment.h"

#include <signal.h>

#include <set>
#include <utility>

namespace orch {
namespace {

// The leader and its process group: all a run is in mode none, and the part
// of it a cgroup may not hold (a root job can move itself out).
void SignalLeaderGroup(const RunLeader& l, int sig) {
  if (l.pid <= 0 || l.pidfd == nullptr) return;  // kill(-0) would be the daemon's own group
  if (l.child) {
    // Unreaped child: its pid and process group cannot be reused yet.
    if (kill(-l.pid, sig) != 0 && errno == ESRCH) (void)l.pidfd->SendSignal(sig);
    return;
  }
  // Verified, still-alive leader of its own session: the group is its.
  if (!l.pidfd->Exited()) (void)kill(-l.pid, sig);
  (void)l.pidfd->SendSignal(sig);
}

// An exited leader's group id is free again once it is reaped; before, the
// zombie still holds it (our child only).
void KillLeaderGroupRest(const RunLeader& l) {
  if (l.child && l.pid > 0) (void)kill(-l.pid, SIGKILL);
}

class GroupScope final : public RunScope {
 public:
  void Signal(const RunLeader& l, int sig) override { SignalLeaderGroup(l, sig); }
  void KillRest(const RunLeader& l) override { KillLeaderGroupRest(l); }
  Result<bool> Populated() const override { return false; }
  std::string events_path() const override { return ""; }
  CgroupUsage Usage() const override { return {}; }
  int cgroup_fd() const override { return -1; }
  std::string cgroup() const override { return ""; }
  Status Remove() override { return Status::Ok(); }
};

class CgroupScope final : public RunScope {
 public:
  CgroupScope(RunCgroup cg, bool memory) : cg_(std::move(cg)), memory_(memory) {}
  void Signal(const RunLeader& l, int sig) override {
    if (sig == SIGKILL) {
      // And the leader with its group, whatever the cgroup's files said: a
      // root job can move itself out of its cgroup. A second SIGKILL costs
      // nothing.
      (void)KillCgroup(cg_.fd());
      SignalLeaderGroup(l, sig);
      return;
    }
    // Any other signal reaches each process once: many programs take a
    // second SIGTERM as "quit now, skip the clean-up". The leader gets it
    // through its pidfd only when it is not in the cgroup any more.
    std::set<pid_t> signalled;
    Status s = SignalCgroup(cg_.fd(), sig, &signalled);
    if (l.pidfd != nullptr && l.pid > 0 && (!s.ok() || signalled.count(l.pid) == 0)) {
      (void)l.pidfd->SendSignal(sig);
    }
  }
  void KillRest(const RunLeader& l) override {
    // An exited leader no longer counts as a member: usually nothing is left.
    auto populated = CgroupPopulated(cg_.fd());
    if (!populated.ok() || *populated) (void)KillCgroup(cg_.fd());
    // Read empty just now: the drain that follows at once need not read
    // the file again. Once only: something with the right to write
    // cgroup.procs can put a process back later, and a stray's sweep must
    // see it.
    emptied_ = populated.ok() && !*populated;
    KillLeaderGroupRest(l);
  }
  Result<bool> Populated() const override {
    if (std::exchange(emptied_, false)) return false;
    return CgroupPopulated(cg_.fd());
  }
  std::string events_path() const override { return cg_.events_path(); }
  CgroupUsage Usage() const override { return ReadCgroupUsage(cg_.fd(), memory_); }
  int cgroup_fd() const override { return cg_.fd(); }
  std::string cgroup() const override { return cg_.path(); }
  Status Remove() override {
    emptied_ = false;
    return cg_.Remove();
  }

 private:
  RunCgroup cg_;
  bool memory_;  // the memory controller is on: its files are there
  mutable bool emptied_ = false;  // KillRest read it empty; for one Populated()
};

}  // namespace

std::unique_ptr<RunScope> ProcessGroupScope() { return std::make_unique<GroupScope>(); }

Result<std::unique_ptr<RunScope>> Containment::Prepare(int64_t run_id,
                                                       const CgroupLimits& limits) const {
  // Checked at submit, and again here: the job may come from another node,
  // an older daemon, or a retry after a restart in another mode.
  if (std::string field = tree_.UnsupportedLimit(limits); !field.empty()) {
    return Status(Code::kInvalidArgument, LimitRefusal(tree_, field));
  }
  if (tree_.mode() == CgroupMode::kNone) return ProcessGroupScope();
  ORCH_ASSIGN_OR_RETURN(RunCgroup cg, RunCgroup::Create(tree_, run_id, limits));
  return std::unique_ptr<RunScope>(
      std::make_unique<CgroupScope>(std::move(cg), tree_.has_controller("memory")));
}

std::unique_ptr<RunScope> Containment::ForRecorded(const Run& run) const {
  // Only this run's own cgroup under our locked root: a wrong path in the
  // store must not make cgroup.kill reach some other service's processes.
  if (tree_.mode() != CgroupMode::kNone &&
      run.cgroup == tree_.root() + "/" + CgroupTree::RunName(run.id)) {
    if (auto cg = RunCgroup::Open(run.cgroup); cg.ok() && cg->OnCgroup2()) {
      // Recorded under another configuration maybe: its files say.
      return std::make_unique<CgroupScope>(std::move(cg).value(), true);
    }
  }
  return ProcessGroupScope();
}

Result<std::unique_ptr<RunScope>> Containment::Leftover(int64_t run_id) const {
  if (tree_.mode() == CgroupMode::kNone) return Status(Code::kNotFound, "no cgroups");
  ORCH_ASSIGN_OR_RETURN(RunCgroup cg,
                        RunCgroup::Open(tree_.root() + "/" + CgroupTree::RunName(run_id)));
  return std::unique_ptr<RunScope>(std::make_unique<CgroupScope>(std::move(cg), true));
}

std::string LimitRefusal(const CgroupTree& tree, const std::string& field) {
  std::string controller = field == "memory_max" ? "memory" : field == "cpu_max" ? "cpu" : "pids";
  return field + ": needs the " + controller + " cgroup controller, and this daemon's cgroup mode is " +
         CgroupModeName(tree.mode()) + " (" + tree.why() + ")";
}

CgroupLimits LimitsOf(const Job& job) {
  return CgroupLimits{job.memory_max, job.cpu_max, job.pids_max};
}

}  // namespace orch
