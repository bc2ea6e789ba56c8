#include "supervisor/containment.h"

#include <signal.h>

namespace orch {
namespace {

class GroupScope final : public RunScope {
 public:
  void Signal(const RunLeader& l, int sig) override {
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
  void KillRest(const RunLeader& l) override {
    // An adopted leader's group id is free again once it has exited.
    if (l.child && l.pid > 0) (void)kill(-l.pid, SIGKILL);
  }
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
    Status s = sig == SIGKILL ? KillCgroup(cg_.fd()) : SignalCgroup(cg_.fd(), sig);
    // The leader at least, whatever the cgroup's files said.
    if (!s.ok() && l.pidfd != nullptr) (void)l.pidfd->SendSignal(sig);
  }
  void KillRest(const RunLeader&) override {
    // An exited leader no longer counts as a member: usually nothing is left.
    auto populated = CgroupPopulated(cg_.fd());
    if (!populated.ok() || *populated) (void)KillCgroup(cg_.fd());
  }
  Result<bool> Populated() const override { return CgroupPopulated(cg_.fd()); }
  std::string events_path() const override { return cg_.events_path(); }
  CgroupUsage Usage() const override { return ReadCgroupUsage(cg_.fd(), memory_); }
  int cgroup_fd() const override { return cg_.fd(); }
  std::string cgroup() const override { return cg_.path(); }
  Status Remove() override { return cg_.Remove(); }

 private:
  RunCgroup cg_;
  bool memory_;  // the memory controller is on: its files are there
};

}  // namespace

std::unique_ptr<RunScope> ProcessGroupScope() { return std::make_unique<GroupScope>(); }

Result<std::unique_ptr<RunScope>> Containment::Prepare(int64_t run_id,
                                                       const CgroupLimits& limits) const {
  if (tree_.mode() == CgroupMode::kNone) return ProcessGroupScope();
  ORCH_ASSIGN_OR_RETURN(RunCgroup cg, RunCgroup::Create(tree_, run_id, limits));
  return std::unique_ptr<RunScope>(
      std::make_unique<CgroupScope>(std::move(cg), tree_.has_controller("memory")));
}

std::unique_ptr<RunScope> Containment::ForRecorded(const Run& run) const {
  // Only what can be this run's own cgroup: a wrong path in the store must
  // not make cgroup.kill reach some other service's processes.
  const std::string name = "/" + CgroupTree::RunName(run.id);
  if (run.cgroup.size() > name.size() &&
      run.cgroup.compare(run.cgroup.size() - name.size(), name.size(), name) == 0) {
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

CgroupLimits LimitsOf(const Job& job) {
  return CgroupLimits{job.memory_max, job.cpu_max, job.pids_max};
}

}  // namespace orch
