// cgroup v2 for runs (SPEC §12): finding the hierarchy, the daemon's tree
// of run cgroups, and the files of one run's cgroup. The per-cgroup
// functions take a directory fd, so they work the same on a fake tree of
// plain files (tests) as on cgroupfs.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"

namespace orch {

// full: cpu, memory and pids controllers for each run; tracking: cgroup v2
// without them (kill, populated, cpu.stat); none: process groups only.
enum class CgroupMode { kNone, kTracking, kFull };
const char* CgroupModeName(CgroupMode mode);

// The first cgroup2 filesystem in /proc/self/mountinfo text: where it is
// mounted, and which of its directories is mounted there ("/" unless a
// subtree was bind-mounted). Mountinfo escapes spaces as \040.
struct Cgroup2Mount {
  std::string point;
  std::string root = "/";
  // The directory of `cgroup` (a path as /proc/self/cgroup gives it), or
  // nullopt when it lies outside what is mounted.
  std::optional<std::string> DirOf(const std::string& cgroup) const;
};
std::optional<Cgroup2Mount> FindCgroup2Mount(std::string_view mountinfo);
// The unified hierarchy's path ("0::/a/b" → "/a/b") in /proc/self/cgroup text.
std::optional<std::string> OwnCgroup2Path(std::string_view proc_self_cgroup);

struct CgroupLimits {
  std::optional<int64_t> memory_max;  // bytes
  std::optional<double> cpu_max;      // cores
  std::optional<int64_t> pids_max;
  bool any() const { return memory_max || cpu_max || pids_max; }
};

struct CgroupUsage {
  std::optional<int64_t> cpu_usec;        // cpu.stat usage_usec
  std::optional<int64_t> mem_peak_bytes;  // memory.peak
  std::optional<int64_t> mem_bytes;       // memory.current
  std::optional<int64_t> oom_kills;       // memory.events oom_kill
};

// Whatever of the four the cgroup's files give; missing files stay unset.
// `memory` = false skips the memory files (no memory controller: saves
// three failed opens per call).
CgroupUsage ReadCgroupUsage(int dirfd, bool memory = true);
// memory.max, cpu.max ("quota period", period 100 ms) and pids.max.
Status WriteCgroupLimits(int dirfd, const CgroupLimits& limits);
// cgroup.events "populated".
Result<bool> CgroupPopulated(int dirfd);
// The pids in cgroup.procs.
Result<std::vector<pid_t>> CgroupProcs(int dirfd);
// SIGKILL to every process in the cgroup and its descendants: cgroup.kill,
// or where the kernel lacks it (before 5.14) freeze, kill each, thaw.
Status KillCgroup(int dirfd);
// `sig` to each process of the cgroup and its descendants, through a pidfd
// opened while it was listed as a member and confirmed a member after, so a
// pid reused by a process elsewhere is never signalled. The pids signalled
// are added to `signalled` when given.
Status SignalCgroup(int dirfd, int sig, std::set<pid_t>* signalled = nullptr);

// The daemon's tree of run cgroups: `root` (a directory on cgroup2, locked
// by this daemon), one child per run named run-<run id>.
struct CgroupSetupOptions {
  std::string mode = "auto";  // cgroup.mode: "auto" or "off"
  std::string root;           // cgroup.root: "" = own cgroup + /runs
  // This image follows a re-exec: its own cgroup may be the `supervisor`
  // leaf the first image moved into, and the runs stay beside that leaf.
  bool after_reexec = false;
  // Inputs, replaceable in tests.
  std::string mountinfo_path = "/proc/self/mountinfo";
  std::string self_cgroup_path = "/proc/self/cgroup";
};

class CgroupTree {
 public:
  // Decides the mode. kNone with why() when cgroup v2 cannot be used and the
  // root was not asked for explicitly; an error (exit 2) when an explicit
  // cgroup.root is unusable, or when another daemon holds the root.
  static Result<CgroupTree> SetUp(const CgroupSetupOptions& options);
  static CgroupTree None(std::string why);

  CgroupMode mode() const { return mode_; }
  const std::string& root() const { return root_; }  // "" in mode none
  const std::string& why() const { return why_; }    // how the mode was chosen
  int root_fd() const { return root_fd_.get(); }
  bool has_controller(const std::string& name) const;
  // Which limit this mode cannot apply ("" = all can): "memory_max" needs
  // the memory controller, "cpu_max" cpu, "pids_max" pids.
  std::string UnsupportedLimit(const CgroupLimits& limits) const;

  static std::string RunName(int64_t run_id) { return "run-" + std::to_string(run_id); }
  // run-<id> directories now under the root.
  Result<std::vector<int64_t>> ListRuns() const;

 private:
  CgroupMode mode_ = CgroupMode::kNone;
  std::string root_;
  std::string why_;
  std::vector<std::string> controllers_;
  UniqueFd root_fd_;  // O_DIRECTORY, flock'ed
};

// One run's cgroup.
class RunCgroup {
 public:
  // Creates root/run-<id> (an empty leftover of that name is reused) and
  // writes the limits. Thread-safe (only the root fd is shared).
  static Result<RunCgroup> Create(const CgroupTree& tree, int64_t run_id,
                                  const CgroupLimits& limits);
  // An existing run cgroup at `path` (recovery, adoption).
  static Result<RunCgroup> Open(const std::string& path);

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  bool OnCgroup2() const;
  std::string events_path() const { return path_ + "/cgroup.events"; }
  // rmdir of the cgroup and of any it holds (a job may make its own below
  // it), deepest first; kUnavailable while processes remain or the kernel
  // has not let go of it yet. Only while the directory at path() is still
  // the one this object opened.
  Status Remove() const;

 private:
  std::string path_;
  UniqueFd fd_;
};

}  // namespace orch
