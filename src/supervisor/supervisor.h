// Runs claimed jobs as child processes and keeps the store true to what is
// alive (SPEC §4, §5, §6). Loop thread only: every method runs on `loop`.
// Every store call goes through the StoreExecutor and its result comes back
// as an event; the loop never waits on the database. Writes are committed
// in the order they are posted, so a run's identity is committed before its
// process is released, and its end after its identity.
//
// Exit is an event: a uv_poll on each run's pidfd; the pidfd is reaped with
// waitid(P_PIDFD) here and nowhere else; OnSigchld() reaps every other child
// (reparented orphans) without stealing a job's status. Claiming is
// event-driven (submit, exit, earliest not_before, resume, reload); the
// reaper tick is the safety net behind it.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/blocking_worker.h"
#include "base/clock.h"
#include "base/status.h"
#include "base/uv_handle.h"
#include "config/config.h"
#include "store/job_store.h"
#include "store/store_executor.h"
#include "supervisor/containment.h"
#include "supervisor/log_dir.h"
#include "supervisor/metrics.h"
#include "supervisor/pidfd.h"
#include "supervisor/spawner.h"

namespace orch {

// min(max, base * 2^(attempt-1)) scaled by a jitter factor in [0.8, 1.2]
// taken from `unit_random` in [0, 1).
int64_t BackoffMs(int64_t attempt, double base_s, double max_s, double unit_random);

// Why the supervisor itself stopped a run, if it did.
enum class StopCause { kNone, kTimeout, kCancel, kShutdown, kUnrecorded, kLeaseLost, kStalled };

// Spawn failures that were the host's fault (SpawnFailure::host_fault): they
// do not spend the job's attempt, and claiming waits a growing delay.
struct HostFaultState {
  int64_t consecutive = 0;     // since a run last exec'd
  int64_t backoff_until_ms = 0;  // wall time, for display; 0 = not backing off
  int64_t backoff_left_ms = 0;   // monotonic
  std::string last_error;
};

// How a reaped child's exit maps to a run outcome (pure; see SPEC §4).
// `limit_s` is the timeout or the stall timeout the stop was for.
RunEnd DecideRunEnd(const ExitInfo& exit, StopCause cause, const std::vector<int64_t>& transient,
                    int64_t limit_s);

// Puts what the run's cgroup measured on its end. An end the job did not
// choose (failed or transient, not stopped by us) with OOM kills in its
// cgroup fails with reason oom_kill; returns true then.
bool ApplyCgroupUsage(RunEnd& end, const CgroupUsage& usage, StopCause stop);

// A run as one image of the daemon hands it to the next across execve
// (SPEC §14). Its fds stay open (the caller keeps them across the exec);
// times are CLOCK_MONOTONIC, which the exec does not reset.
struct HandedRun {
  int64_t run_id = 0;
  int64_t job_id = 0;
  int64_t attempt = 0;
  pid_t pid = 0;
  int pidfd = -1;
  bool child = true;  // ours to reap (false: an orphan adopted at a restart)
  bool killing_orphan = false;
  bool released = false;
  std::optional<HeldExecState> report;  // the exec report of our child
  int out_fd = -1, err_fd = -1;
  std::string cgroup;  // "" = a process group
  int64_t started_mono_ms = 0;
  std::optional<int64_t> timeout_s, stall_timeout_s;
  StopCause stop = StopCause::kNone;
  int64_t term_sent_mono_ms = 0;
  bool kill_sent = false;
  int64_t cut_out = 0, cut_err = 0;
  int64_t last_progress_mono_ms = 0, last_cpu_usec = -1, last_log_bytes = -1;
  int64_t exit_seen_mono_ms = 0;
};

const char* StopCauseName(StopCause cause);
std::optional<StopCause> StopCauseFromName(const std::string& name);

// What a running run of this daemon is doing now (GET /queue).
struct RunLiveStats {
  std::optional<double> cpu_s;         // CPU time of the whole run (its cgroup) or its leader
  std::optional<int64_t> mem_bytes;    // memory.current (mode full)
  double idle_s = 0;                   // since it last used CPU or wrote a log byte
};

class Supervisor {
 public:
  // `store` must outlive the supervisor and deliver its last results (its
  // Close) before the supervisor is destroyed.
  // config.cluster.node_id must be resolved (not ""); `incarnation` names
  // this process in the store (NewIncarnation()).
  Supervisor(uv_loop_t* loop, StoreExecutor* store, const Config& config, Metrics* metrics,
             const Clock* clock, std::string incarnation = NewIncarnation());
  static std::string NewIncarnation();
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Resolves run_as, creates and opens log_dir. Fails (for exit 2) on a bad
  // user or an unusable log_dir.
  Status Init();
  // RLIMIT_NOFILE the daemon started with (before raising its own): jobs get
  // this one, not the raised limit. Call before Start().
  void SetJobFileLimit(const rlimit& limit) { job_nofile_ = limit; }

  // Starts the reaper timer, the SIGCHLD watch and start-up recovery: the
  // pause flag is read, the I1 sweep runs once, then every running row of
  // another incarnation is verified by identity: gone → lost and requeued;
  // alive → per orphan_policy. Until recovery succeeds nothing is claimed;
  // the reaper tick retries it while the store is unavailable.
  void Start();
  bool recovered() const { return recovered_; }
  // Schedules one claim pass on this loop iteration (coalesced).
  void Kick();
  // Another node changed the shared queue (a job queued, a key or slot
  // freed, a pause or resume): look again.
  void OnQueueChanged();

  // Applies the reloadable keys of `config` (SIGHUP) and kicks a claim.
  void ApplyConfig(const Config& config);
  const Config& config() const { return config_; }

  // queued → cancelled at once; running → SIGTERM to the group, SIGKILL
  // after kill_grace_s, then cancelled. `done` gets the store's answer.
  void Cancel(int64_t job_id, std::function<void(Result<CancelResult>)> done);
  // Persists the pause flag, then applies it; `done` gets the store's answer.
  void SetPaused(bool paused, std::function<void(Status)> done);
  bool paused() const { return paused_; }

  // Graceful stop (SPEC §6): no more claims, SIGTERM to every job group,
  // SIGKILL after shutdown_grace_s, runs recorded as interrupted (requeued).
  // `done` runs when no job process is left and every run end has been
  // handed to the store (one last try for those it refused before).
  void Shutdown(std::function<void()> done);

  // True while we hold the run's pidfd and the process has not exited.
  bool IsRunAlive(int64_t run_id) const;
  // Bytes cut from a run's stream at max_log_bytes so far (a lower bound),
  // for the runs this incarnation holds or ended lately; nullopt for others.
  std::optional<int64_t> LogCutBytes(int64_t run_id, LogStream stream) const;
  const std::string& incarnation() const { return incarnation_; }
  size_t running_count() const { return running_.size(); }
  int64_t started_at_ms() const { return started_at_ms_; }
  const LogDir& log_dir() const { return *log_dir_; }
  // Host-fault backoff, for GET /queue and /metrics; backoff_until_ms is 0
  // once the delay has passed.
  HostFaultState host_fault() const;

  // Several hosts on one queue (store.backend = "postgres", SPEC §11). The
  // daemon acquired the node's lease at `acquired_ms` (Clock::BoottimeMs,
  // taken before the request); from Start() on it is renewed about every
  // lease_s / 3. Until the lease is renewed in time, nothing is claimed and
  // every run is stopped (lease_lost).
  void SetLeaseAcquired(int64_t acquired_ms) { lease_deadline_ms_ = acquired_ms + LeaseMs(); }
  const std::string& node_id() const { return node_id_; }
  bool shared_store() const { return shared_; }
  // False while this node has no valid lease (shared store only).
  bool lease_held() const { return !shared_ || !lease_lost_; }
  // A run this daemon may check, adopt or signal: on a shared store only
  // the runs of its own node.
  bool Mine(const std::string& run_node_id) const { return !shared_ || run_node_id == node_id_; }

  // Where runs live (SPEC §12); process groups until the daemon sets the
  // mode it found. Call before Start().
  void SetContainment(std::shared_ptr<const Containment> c) { containment_ = std::move(c); }
  const Containment& containment() const { return *containment_; }
  std::optional<RunLiveStats> LiveStats(int64_t run_id) const;

  // Re-exec in place (SPEC §14). BeginHandover stops claiming; Quiet() is
  // true once nothing of the supervisor's is in flight: no claim, launch or
  // held child, no run ending or draining, no store write of its own
  // pending. HandRuns() then lists every run, its fds left open.
  // CancelHandover claims again (the exec failed or was given up).
  void BeginHandover();
  void CancelHandover();
  bool handing_over() const { return handing_; }
  bool Quiet() const;
  std::vector<HandedRun> HandRuns() const;
  // Before Start(): watches the runs `from_incarnation` handed over, as
  // they were, and records them as this incarnation's. A run the store has
  // closed meanwhile (another node rescued it) is killed.
  void AdoptHanded(std::vector<HandedRun> runs, const std::string& from_incarnation);
  // Before Start(), after an exec whose hand-over was lost: zombies are left
  // for recovery (they may be jobs, whose exit status it must read).
  void KeepZombiesUntilRecovered() { keep_zombies_ = true; }
  // A child of the daemon's own that the SIGCHLD reaper leaves to whoever
  // waits for it (the re-exec's preflight, which libuv reaps).
  void LeaveChild(pid_t pid) { left_children_.insert(pid); }
  void ForgetChild(pid_t pid) { left_children_.erase(pid); }

  // Runs on the launcher thread before each launch (tests hold it there).
  void SetLaunchHookForTest(std::function<void()> hook) { launch_hook_ = std::move(hook); }

 private:
  struct Running;

  struct ClaimBatch;
  struct SweepResult;

  void ClaimPass();
  void OnClaimed(ClaimBatch batch);
  // A claimed job's log files and held process are made on the launcher
  // thread; OnLaunched watches it and records its identity.
  struct Launched;
  void Launch(Claimed claimed);
  void FinishUnlaunched(const Claimed& claimed);
  void OnLaunched(Launched launched);
  void OnRecorded(int64_t run_id, const Status& stamped);
  void Watch(std::unique_ptr<Running> r);
  RunEnd SpawnFailed(int64_t job_id, int64_t run_id, const SpawnFailure& failure);
  // Counts a host fault and starts the claim backoff; returns its delay (ms).
  int64_t NoteHostFault(const std::string& error);
  void OnProcessExit(int64_t run_id);
  // After the leader's exit: waits for the rest of the run to be gone
  // (its cgroup empty), then CompleteRun.
  void Drain(int64_t run_id);
  // Measures, removes the cgroup (retried while the kernel holds it), then
  // hands the end to the store and frees the slot.
  void CompleteRun(int64_t run_id);
  void Measure(Running& r);  // the cgroup's accounting onto the run's end
  int64_t DrainLimitMs() const;
  int64_t StopLimitS(const Running& r) const;
  // Cgroups of runs no Running holds: killed and removed on each tick.
  void SweepStrays();
  void AdoptLeftoverCgroups();
  void SampleProgress(Running& r, int64_t mono);
  int64_t StallTimeoutS(const Running& r) const;
  // Truncates the run's logs to max_log_bytes; `final` adds the cut note.
  void CapLogs(Running& r, bool final);
  // Hands a run's end to the store; a refused one is retried on the tick.
  void Finish(const RunEnd& end, int64_t detected_ns = 0);
  void Tick();
  void Recover();
  // The store's half of a tick: the I1 sweep, the liveness pass over
  // running rows no pidfd of ours watches, and the write probe.
  void Sweep();
  void SweepPartDone(const Status& s);
  // Posts the I1 sweep; `then` runs after its result was handled.
  void Sanitize(std::function<void(Status)> then);
  void OnSanitized(SweepResult result, const std::function<void(Status)>& then);
  // Whether a run is ours to decide now: being launched, watched, ending,
  // or its end waiting for a retry.
  bool Tracked(int64_t run_id) const;
  // The same runs, as a snapshot for work done on a store thread.
  std::unordered_set<int64_t> TrackedRunIds() const;
  Status Reconcile(const RunningEntry& entry, bool startup);
  void KillRescuedOrphans();
  void SignalRun(Running& r, int sig);
  void RequestStop(Running& r, StopCause cause);
  void OnSigchld();
  // Wakes a claim at the earliest not_before later than `after_ms` (now
  // when not given).
  void ArmNotBeforeTimer(std::optional<int64_t> after_ms = std::nullopt);
  void MaybeFinishShutdown();
  void NoteStore(const Status& s);  // counts failed store calls for /metrics
  int64_t LeaseMs() const { return config_.cluster.lease_s * 1000; }
  void RenewLease();
  // The lease ran out (or was found lapsed): stop every run, claim nothing.
  void LoseLease(const std::string& why);
  void CheckLease();
  int64_t LeaseMarginMs() const;
  void ArmLeaseTimers();
  void StopRunsForLease();
  void KillLeaseLostRuns();
  void Rescue();
  // Another node may pause or resume the shared queue, or take a cancel
  // for a run of ours: read the pause flag and the running list again.
  void RefreshShared();
  std::map<std::string, std::string> JobEnvironment(const Job& job, const Run& run) const;

  uv_loop_t* loop_;
  StoreExecutor* store_;
  Config config_;
  Metrics* metrics_;
  const Clock* clock_;
  std::string incarnation_;
  std::string node_id_;
  bool shared_ = false;  // several nodes share the store (PostgreSQL)
  int64_t started_at_ms_;
  int64_t lease_deadline_ms_ = 0;  // Clock::BoottimeMs until which the lease surely lasts
  bool lease_lost_ = false;
  bool renewing_ = false;
  bool rescuing_ = false;
  bool reading_shared_ = false;
  uint64_t pause_sets_ = 0;  // pauses and resumes answered here
  bool recovered_ = false;
  bool recovering_ = false;   // the recovery chain is in flight
  bool paused_ = false;
  bool pause_changed_ = false;  // by SetPaused: recovery's read of the flag is older
  bool stopping_ = false;
  bool claim_retry_ = false;  // a claim failed on the store: retry on the tick
  bool claiming_ = false;     // a claim batch is in flight
  bool claim_again_ = false;  // kicked while it was: claim again after it
  int sweep_parts_ = 0;       // parts of this tick's store sweep still in flight
  bool sweep_failed_ = false;
  bool not_before_reading_ = false;
  std::optional<int64_t> not_before_again_after_;  // asked again while reading
  bool final_flush_ = false;  // shutdown's last try of refused run ends was made
  bool handing_ = false;      // a re-exec waits for quiet: nothing is claimed
  bool keep_zombies_ = false;
  std::unordered_set<pid_t> left_children_;
  HostFaultState host_fault_;
  int64_t host_backoff_until_mono_ = 0;
  std::optional<rlimit> job_nofile_;
  std::unique_ptr<LogDir> log_dir_;
  std::shared_ptr<const Containment> containment_ =
      std::make_shared<Containment>(CgroupTree::None("not set up"));
  // Cgroups left behind (a run closed while its processes were not ours to
  // wait for, or that outlived the wait): killed and removed from the tick.
  std::map<int64_t, std::unique_ptr<RunScope>> strays_;
  // Unstamped runs of this incarnation that no launch tracks: first seen at
  // (monotonic ms), for reaper.spawn_grace_s.
  std::unordered_map<int64_t, int64_t> unstamped_seen_;
  std::function<void()> shutdown_done_;

  // run_as, resolved once
  bool drop_privileges_ = false;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  std::vector<gid_t> groups_;
  std::string home_ = "/";

  std::map<int64_t, std::unique_ptr<Running>> running_;  // by run id
  // Cut counts of the runs that ended with a cut, the newest few by run id.
  static constexpr size_t kEndedCutsKept = 4096;
  std::map<int64_t, std::pair<int64_t, int64_t>> ended_cuts_;  // run id → {stdout, stderr}
  std::unordered_map<pid_t, int64_t> run_by_pid_;        // our children only
  std::vector<RunEnd> pending_finishes_;                 // store was unavailable
  // Runs whose end is posted and not yet committed (or refused), by run id.
  std::unordered_set<int64_t> ending_;

  UvHandle<uv_timer_t> tick_timer_;
  UvHandle<uv_timer_t> kick_timer_;
  UvHandle<uv_timer_t> not_before_timer_;
  UvHandle<uv_timer_t> host_backoff_timer_;
  UvHandle<uv_timer_t> shutdown_timer_;
  UvHandle<uv_timer_t> lease_timer_;
  UvHandle<uv_timer_t> lease_term_timer_;  // SIGTERM a fifth of a lease before its end
  UvHandle<uv_timer_t> lease_kill_timer_;  // SIGKILL at the lease's end
  UvHandle<uv_signal_t> sigchld_;
  // Claimed jobs whose processes the launcher thread is making, by run id.
  struct Launching {
    int64_t job_id = 0;
    StopCause stop = StopCause::kNone;  // cancel or shutdown while it was
  };
  std::map<int64_t, Launching> launching_;
  std::shared_ptr<std::atomic<bool>> launch_fault_;  // set by the launcher thread
  // Children the launcher thread has made that the loop does not know yet,
  // and whether it is making one: the SIGCHLD handler must not reap them.
  struct LaunchingPids {
    std::mutex mu;
    int creating = 0;
    std::unordered_set<pid_t> pids;
  };
  std::shared_ptr<LaunchingPids> launching_pids_ = std::make_shared<LaunchingPids>();
  bool sigchld_deferred_ = false;  // a zombie was left for later
  std::function<void()> launch_hook_;
  // Last: destroyed (joined) first, as its work uses log_dir_.
  BlockingWorker launcher_{loop_, "orch-launcher"};
};

}  // namespace orch
