#include "supervisor/supervisor.h"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <limits>
#include <random>

#include "base/log.h"
#include "base/test_hooks.h"
#include "supervisor/identity.h"
#include "supervisor/spawner.h"

namespace orch {

namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string NewIncarnationText() {
  std::random_device rd;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%d-%08x%08x", static_cast<int>(getpid()), rd(), rd());
  return buf;
}

double UnitRandom() {
  static std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

}  // namespace

int64_t BackoffMs(int64_t attempt, double base_s, double max_s, double unit_random) {
  double exp = std::min<double>(std::max<int64_t>(attempt - 1, 0), 62);
  double delay = std::min(max_s, base_s * std::pow(2.0, exp));
  double jitter = 0.8 + 0.4 * unit_random;
  return static_cast<int64_t>(std::llround(delay * jitter * 1000.0));
}

RunEnd DecideRunEnd(const ExitInfo& exit, StopCause cause, const std::vector<int64_t>& transient,
                    int64_t limit_s) {
  RunEnd end;
  end.exit_code = exit.ShellCode();
  if (!exit.exited) end.signal = exit.signal;
  std::string how = exit.exited ? "exit " + std::to_string(exit.code)
                                : "signal " + std::to_string(exit.signal);
  switch (cause) {
    case StopCause::kTimeout:
      end.outcome = RunOutcome::kTimeout;
      end.reason = "timeout";
      end.error = "timed out after " + std::to_string(limit_s) + "s (" + how + ")";
      return end;
    case StopCause::kStalled:
      end.outcome = RunOutcome::kStalled;
      end.reason = "no_progress";
      end.error = "no progress (no CPU time, no log output) for " + std::to_string(limit_s) +
                  "s (" + how + ")";
      return end;
    case StopCause::kCancel:
      end.outcome = RunOutcome::kCancelled;
      end.reason = "cancelled";
      return end;
    case StopCause::kShutdown:
      end.outcome = RunOutcome::kInterrupted;
      end.reason = "shutdown";
      return end;
    case StopCause::kUnrecorded:
      end.outcome = RunOutcome::kInterrupted;
      end.reason = "spawn_not_recorded";
      return end;
    case StopCause::kLeaseLost:
      end.outcome = RunOutcome::kLost;
      end.reason = "lease_lost";
      end.error = "stopped: this node lost its lease on the queue (" + how + ")";
      return end;
    case StopCause::kNone:
      break;
  }
  end.reason = how;
  if (exit.exited && exit.code == 0) {
    end.outcome = RunOutcome::kSucceeded;
  } else if (exit.exited &&
             std::find(transient.begin(), transient.end(), exit.code) != transient.end()) {
    end.outcome = RunOutcome::kTransient;
    end.error = how + " (transient)";
  } else {
    end.outcome = RunOutcome::kFailed;
    end.error = how;
  }
  return end;
}

namespace {
constexpr std::pair<StopCause, const char*> kStopCauseNames[] = {
    {StopCause::kNone, ""},
    {StopCause::kTimeout, "timeout"},
    {StopCause::kCancel, "cancel"},
    {StopCause::kShutdown, "shutdown"},
    {StopCause::kUnrecorded, "unrecorded"},
    {StopCause::kLeaseLost, "lease_lost"},
    {StopCause::kStalled, "stalled"},
};
}  // namespace

const char* StopCauseName(StopCause cause) {
  for (const auto& [c, name] : kStopCauseNames) {
    if (c == cause) return name;
  }
  return "";
}

std::optional<StopCause> StopCauseFromName(const std::string& name) {
  for (const auto& [c, n] : kStopCauseNames) {
    if (name == n) return c;
  }
  return std::nullopt;
}

// How long an adopted orphan's exit status is waited for after its exit.
constexpr int64_t kAdoptedExitWaitMs = 5000;

struct Supervisor::Running {
  Supervisor* sup = nullptr;
  int64_t job_id = 0;
  int64_t run_id = 0;
  int64_t attempt = 0;
  pid_t pid = 0;
  Pidfd pidfd;
  bool child = true;         // our child: reaped with waitid; else an adopted orphan
  bool killing_orphan = false;
  UvHandle<uv_poll_t> poll;
  int64_t started_mono_ms = 0;  // for timeout_s and the duration
  std::optional<int64_t> timeout_s;
  UniqueFd out_fd, err_fd;  // the parent's copies, O_APPEND: capped through them
  int64_t cut_out = 0, cut_err = 0;
  StopCause stop = StopCause::kNone;
  int64_t term_sent_mono_ms = 0;
  bool kill_sent = false;
  int64_t exit_seen_mono_ms = 0;  // adopted: exited, exit status not yet readable
  std::unique_ptr<HeldExec, HeldExecDeleter> exec;  // our child: its exec report
  // Held before exec until its identity is committed (OnRecorded).
  bool held = false;
  bool released = false;
  // Its processes: a process group or its cgroup (SPEC §12).
  std::unique_ptr<RunScope> scope = ProcessGroupScope();
  RunLeader leader() const { return RunLeader{pid, &pidfd, child}; }
  // Progress (stall detection): the last CPU time and log size seen, and
  // when either last grew.
  std::optional<int64_t> job_stall_timeout_s;
  int64_t last_progress_mono_ms = 0;
  int64_t last_cpu_usec = -1;
  int64_t last_log_bytes = -1;
  CgroupUsage usage;
  // The leader has exited and its end is decided; the rest of the run is
  // being waited for (its cgroup emptying), then the end is committed.
  bool draining = false;
  RunEnd end;
  int64_t detected_ns = 0;
  int64_t drain_started_mono_ms = 0;
  UvHandle<uv_fs_event_t> events;  // cgroup.events while draining
  UvHandle<uv_timer_t> remove_timer;
  int remove_tries = 0;
};

namespace {

// The leader's CPU time from /proc (process groups have no total).
std::optional<int64_t> LeaderCpuUsec(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return std::nullopt;
  char buf[1024];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // Fields after the command's closing parenthesis: state is field 3;
  // utime and stime are 14 and 15.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return std::nullopt;
  unsigned long long utime = 0, stime = 0;
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                  &stime) != 2) {
    return std::nullopt;
  }
  static const long ticks = sysconf(_SC_CLK_TCK);
  return static_cast<int64_t>((utime + stime) * 1000000ULL / static_cast<unsigned long long>(ticks));
}

int64_t FileSize(const UniqueFd& fd) {
  struct stat st {};
  if (!fd.valid() || fstat(fd.get(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_size);
}

}  // namespace

std::string Supervisor::NewIncarnation() { return NewIncarnationText(); }

Supervisor::Supervisor(uv_loop_t* loop, StoreExecutor* store, const Config& config, Metrics* metrics,
                       const Clock* clock, std::string incarnation)
    : loop_(loop),
      store_(store),
      config_(config),
      metrics_(metrics),
      clock_(clock),
      incarnation_(std::move(incarnation)),
      node_id_(config.cluster.node_id),
      shared_(config.store.backend == "postgres"),
      started_at_ms_(clock->NowMs()) {}

Supervisor::~Supervisor() = default;

Status Supervisor::Init() {
  const std::string& run_as = config_.supervisor.run_as;
  if (!run_as.empty()) {
    std::string user = run_as, group;
    if (auto colon = run_as.find(':'); colon != std::string::npos) {
      user = run_as.substr(0, colon);
      group = run_as.substr(colon + 1);
    }
    passwd* pw = getpwnam(user.c_str());
    if (pw == nullptr) {
      return Status(Code::kInvalidArgument, "supervisor.run_as: no such user \"" + user + "\"");
    }
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    home_ = pw->pw_dir;
    if (!group.empty()) {
      struct group* gr = getgrnam(group.c_str());
      if (gr == nullptr) {
        return Status(Code::kInvalidArgument, "supervisor.run_as: no such group \"" + group + "\"");
      }
      gid_ = gr->gr_gid;
    }
    int n = 64;
    groups_.resize(n);
    if (getgrouplist(pw->pw_name, gid_, groups_.data(), &n) < 0) {
      groups_.resize(n);
      getgrouplist(pw->pw_name, gid_, groups_.data(), &n);
    }
    groups_.resize(n);
    drop_privileges_ = true;
    if (geteuid() != 0 && uid_ != geteuid()) {
      return Status(Code::kInvalidArgument,
                    "supervisor.run_as needs the daemon to run as root to switch to " + run_as);
    }
  } else if (passwd* pw = getpwuid(geteuid()); pw != nullptr && pw->pw_dir != nullptr) {
    home_ = pw->pw_dir;
  }
  // The tree under log_dir is the daemon's alone: jobs write through fds
  // the parent opens, so nothing there is ever chowned to the run_as user.
  auto log_dir = LogDir::Open(config_.supervisor.log_dir);
  if (!log_dir.ok()) return log_dir.status();
  log_dir_ = std::move(log_dir).value();
  return Status::Ok();
}

void Supervisor::NoteStore(const Status& s) {
  if (s.ok()) return;
  if (s.code() == Code::kGuardMissed) {
    ++metrics_->guard_missed_total;
  } else {
    ++metrics_->store_errors_total;
  }
}

// What the I1 sweep did on the writer thread: its report, and the jobs it
// reattached to their live run, to be watched from the loop.
struct Supervisor::SweepResult {
  SweepResult() = default;
  SweepResult(Status s) : error(std::move(s)) {}  // NOLINT: a failed batch
  const Status& status() const { return error; }
  Status error;
  SanitizeReport report;
  std::vector<RunningEntry> reattached;
  std::vector<Status> reattach_errors;
};

bool Supervisor::Tracked(int64_t run_id) const {
  if (running_.count(run_id) != 0 || ending_.count(run_id) != 0) return true;
  if (launching_.count(run_id) != 0) return true;
  return std::any_of(pending_finishes_.begin(), pending_finishes_.end(),
                     [&](const RunEnd& p) { return p.run_id == run_id; });
}

std::unordered_set<int64_t> Supervisor::TrackedRunIds() const {
  std::unordered_set<int64_t> ids;
  for (const auto& [run_id, r] : running_) ids.insert(run_id);
  for (const auto& [run_id, l] : launching_) ids.insert(run_id);
  for (int64_t run_id : ending_) ids.insert(run_id);
  for (const auto& p : pending_finishes_) ids.insert(p.run_id);
  return ids;
}

void Supervisor::Sanitize(std::function<void(Status)> then) {
  if (!config_.reaper.sanitize_impossible_queued) {
    then(Status::Ok());
    return;
  }
  // A run this daemon watches is alive by definition; any other is checked
  // by identity (on the store thread: it only reads /proc) before anything
  // is closed. A run that starts being watched after this snapshot belongs
  // to a running job, which the sweep never touches.
  std::unordered_set<int64_t> watched = TrackedRunIds();
  int64_t now = clock_->NowMs();
  store_->Write(
      [this, watched = std::move(watched), now](JobStore& store) -> SweepResult {
        auto report = SanitizeImpossibleQueued(
            store, now,
            [&](const Run& run) {
              if (watched.count(run.id) != 0) return Result<bool>(true);
              return RunProcessLives(run);
            },
            [this](const Run& run) { return Mine(run.node_id); });
        if (!report.ok()) return SweepResult(report.status());
        SweepResult out;
        out.report = std::move(report).value();
        for (const auto& a : out.report.alive) {
          // Never forgotten: the job runs again under that run.
          Status s = store.ReattachOpenRun(a.job_id, a.open_run->id, now);
          if (s.code() == Code::kGuardMissed) continue;
          if (!s.ok()) {
            out.reattach_errors.push_back(s);
            continue;
          }
          auto job = store.GetJob(a.job_id);
          if (!job.ok()) {
            out.reattach_errors.push_back(job.status());
            continue;
          }
          out.reattached.push_back(RunningEntry{std::move(job).value(), *a.open_run});
        }
        return out;
      },
      [this, then = std::move(then)](SweepResult result) { OnSanitized(std::move(result), then); });
}

void Supervisor::OnSanitized(SweepResult result, const std::function<void(Status)>& then) {
  if (!result.error.ok()) {
    NoteStore(result.error);
    then(result.error);
    return;
  }
  const SanitizeReport& report = result.report;
  for (const Status& e : report.errors) {
    NoteStore(e);
    log::Error("impossible queued job not repaired; retrying on the next tick",
               {{"error", e.ToString()}});
  }
  for (int64_t id : report.repaired) {
    log::Warn("repaired impossible queued job: it carried a run while queued", {{"job_id", id}});
  }
  metrics_->impossible_queued_total += report.repaired.size() + result.reattached.size();
  Status first_error;
  for (const Status& e : result.reattach_errors) {
    NoteStore(e);
    if (first_error.ok()) first_error = e;
  }
  for (const auto& entry : result.reattached) {
    log::Warn("queued job had a live process; reattached its run",
              {{"job_id", entry.job.id}, {"run_id", entry.run.id},
               {"pid", entry.run.identity.pid}});
    // A process we do not watch yet is handled by orphan_policy like any orphan.
    if (stopping_ || Tracked(entry.run.id)) continue;
    Status r = Reconcile(entry, false);
    if (!r.ok() && first_error.ok()) first_error = r;
  }
  if (!report.repaired.empty()) Kick();
  then(first_error);
}

void Supervisor::Recover() {
  if (recovered_ || recovering_ || stopping_) return;
  recovering_ = true;
  auto fail = [this](const Status& s) {
    recovering_ = false;
    NoteStore(s);
    ++metrics_->reaper_errors_total;
    log::Error("start-up recovery failed; retrying on the next reaper tick",
               {{"error", s.ToString()}});
  };
  store_->Read([](JobStore& store) { return store.IsPaused(); }, [this, fail](Result<bool> paused) {
    if (!paused.ok()) return fail(paused.status());
    // A pause or resume answered since the read is newer than what it saw.
    if (!pause_changed_) paused_ = *paused;
    Sanitize([this, fail](Status sanitized) {
      if (!sanitized.ok()) return fail(sanitized);
      store_->Read([](JobStore& store) { return store.ListRunning(); },
                   [this, fail](Result<std::vector<RunningEntry>> running) {
                     if (!running.ok()) return fail(running.status());
                     if (stopping_) return fail(Status(Code::kUnavailable, "stopping"));
                     for (const auto& entry : *running) {
                       // A retried recovery must not reconcile again what it
                       // already watches.
                       if (entry.run.incarnation == incarnation_ || Tracked(entry.run.id) ||
                           !Mine(entry.run.node_id)) {
                         continue;
                       }
                       Status r = Reconcile(entry, true);
                       if (!r.ok()) return fail(r);
                     }
                     if (shared_) KillRescuedOrphans();
                     AdoptLeftoverCgroups();
                     recovering_ = false;
                     recovered_ = true;
                     log::Info("recovery done", {{"incarnation", incarnation_},
                                                 {"running_rows", running->size()}});
                     Kick();
                     ArmNotBeforeTimer();
                   });
    });
  });
}

// While this daemon was down (crashed, or waiting for its old lease to run
// out at start) other nodes may have rescued its runs and started the jobs
// again: a process of such a run that still lives here is killed, after its
// identity is verified. Its run is closed already; nothing is recorded.
void Supervisor::KillRescuedOrphans() {
  store_->Read(
      [node = node_id_](JobStore& store) { return store.ListRescuedRuns(node, 1000); },
      [this](Result<std::vector<Run>> runs) {
        if (!runs.ok()) {
          NoteStore(runs.status());
          log::Error("cannot list this node's rescued runs; their processes are not checked",
                     {{"error", runs.status().ToString()}});
          return;
        }
        for (const Run& run : *runs) {
          if (run.incarnation == incarnation_ || Tracked(run.id)) continue;
          auto v = Verify(run.identity);
          if (!v.ok() || v->gone) continue;
          ++metrics_->orphans_total;
          log::Warn("killing a process of a run another node rescued while this node was down",
                    {{"job_id", run.job_id}, {"run_id", run.id}, {"pid", run.identity.pid}});
          // Verified and alive: the leader of its own session, so the group is its.
          (void)kill(-static_cast<pid_t>(run.identity.pid), SIGKILL);
          (void)v->pidfd.SendSignal(SIGKILL);
        }
      });
}

// Run cgroups under our root that no run of ours holds now: of runs the
// store has closed (while this daemon was down, or by a rescue), of runs
// that never spawned, or of another database's runs. Whatever is in them is
// killed and they are removed.
void Supervisor::AdoptLeftoverCgroups() {
  auto ids = containment_->tree().ListRuns();
  if (!ids.ok()) {
    log::Warn("cannot list leftover run cgroups", {{"error", ids.status().ToString()}});
    return;
  }
  for (int64_t id : *ids) {
    if (Tracked(id) || strays_.count(id) != 0) continue;
    if (auto left = containment_->Leftover(id); left.ok()) {
      log::Info("leftover run cgroup: killing what is in it and removing it",
                {{"run_id", id}, {"cgroup", (*left)->cgroup()}});
      strays_[id] = std::move(left).value();
    }
  }
  SweepStrays();
}

// A running row that no pidfd of ours watches: decide by identity alone.
Status Supervisor::Reconcile(const RunningEntry& e, bool startup) {
  int64_t now = clock_->NowMs();
  RunEnd end;
  end.job_id = e.job.id;
  end.run_id = e.run.id;
  end.now_ms = now;
  end.outcome = RunOutcome::kLost;
  end.retry_not_before = now;

  if (e.run.identity.pid == 0) {
    // Intent without a stamped pid. A child is held before exec until its
    // pid is recorded, so an unstamped run never ran the job: requeued
    // without spending an attempt. One of ours is given spawn_grace_s.
    if (e.run.incarnation == incarnation_) {
      int64_t mono = clock_->MonotonicMs();
      auto seen = unstamped_seen_.try_emplace(e.run.id, mono).first;
      if (mono - seen->second < config_.reaper.spawn_grace_s * 1000) return Status::Ok();
      unstamped_seen_.erase(seen);
    }
    end.outcome = RunOutcome::kInterrupted;
    end.reason = "never_spawned";
    end.error = "run was claimed but never spawned";
    if (auto left = containment_->Leftover(e.run.id); left.ok()) {
      // Its process was made (it sits in the run's cgroup) but its pid was
      // never recorded: held before exec, it never ran the job. It goes
      // with the cgroup.
      if (auto populated = (*left)->Populated(); populated.ok() && *populated) {
        end.reason = "spawn_not_recorded";
        end.error = "its process was created but never recorded; killed before it ran the job";
      }
      strays_[e.run.id] = std::move(left).value();
    }
    ++metrics_->reaped_total;
    log::Warn("requeueing a run whose process never ran the job",
              {{"job_id", e.job.id}, {"run_id", e.run.id}, {"reason", end.reason}});
    Finish(end);
    return Status::Ok();
  }

  auto v = Verify(e.run.identity);
  if (!v.ok()) return v.status();
  // Still our own child, running or a zombie (the image before an exec left
  // it, its hand-over lost): waited for with its real exit status.
  bool child = v->pidfd.valid() && HasExited(v->pidfd.get()).ok();
  if (v->gone && !child) {
    end.reason = GoneReasonName(*v->gone);
    end.error = "process gone (" + end.reason + ")";
    ++metrics_->lost_total[end.reason];
    ++metrics_->reaped_total;
    log::Warn("run lost", {{"job_id", e.job.id}, {"run_id", e.run.id}, {"pid", e.run.identity.pid},
                           {"reason", end.reason}, {"startup", startup}});
    // Its leader is gone, but what it left in its cgroup is not the next
    // attempt's to meet.
    if (auto scope = containment_->ForRecorded(e.run); !scope->cgroup().empty()) {
      strays_[e.run.id] = std::move(scope);
    }
    Finish(end);
    return Status::Ok();
  }

  // The recorded process really lives: an orphan of a previous incarnation.
  if (!child) ++metrics_->orphans_total;
  auto r = std::make_unique<Running>();
  r->sup = this;
  r->job_id = e.job.id;
  r->run_id = e.run.id;
  r->attempt = e.run.attempt;
  r->pid = static_cast<pid_t>(e.run.identity.pid);
  r->pidfd = std::move(v->pidfd);
  r->child = child;
  if (r->child) run_by_pid_[r->pid] = r->run_id;
  r->scope = containment_->ForRecorded(e.run);
  r->job_stall_timeout_s = e.job.stall_timeout_s;
  // Elapsed time so far can only come from the stored wall time; from here
  // on it is measured on the monotonic clock.
  r->started_mono_ms = clock_->MonotonicMs() - std::max<int64_t>(now - e.run.started_at, 0);
  r->last_progress_mono_ms = clock_->MonotonicMs();
  r->timeout_s = e.job.timeout_s;
  if (!e.run.log_path.empty()) {
    auto out = log_dir_->OpenForAppend(e.job.id, e.run.id, LogStream::kStdout);
    auto err = log_dir_->OpenForAppend(e.job.id, e.run.id, LogStream::kStderr);
    if (out.ok()) r->out_fd = std::move(out).value();
    if (err.ok()) r->err_fd = std::move(err).value();
    for (const Status& st : {out.status(), err.status()}) {
      if (!st.ok() && st.code() != Code::kNotFound) {
        log::Warn("not capping an adopted run's log", {{"run_id", e.run.id}, {"error", st.ToString()}});
      }
    }
  }
  if (r->child) {
    log::Warn("adopting a run whose process is still our child (a re-exec without its hand-over)",
              {{"job_id", r->job_id}, {"run_id", r->run_id}, {"pid", r->pid}});
  } else if (config_.supervisor.orphan_policy == "adopt") {
    log::Info("adopting orphan", {{"job_id", r->job_id}, {"run_id", r->run_id}, {"pid", r->pid}});
  } else {
    log::Warn("killing orphan to requeue it",
              {{"job_id", r->job_id}, {"run_id", r->run_id}, {"pid", r->pid}});
    r->killing_orphan = true;
    r->kill_sent = true;
    SignalRun(*r, SIGKILL);
  }
  Watch(std::move(r));
  return Status::Ok();
}

void Supervisor::Start() {
  sigchld_.Init(uv_signal_init, loop_, this);
  uv_signal_start(
      sigchld_.get(),
      [](uv_signal_t* h, int) {
        if (h->data != nullptr) static_cast<Supervisor*>(h->data)->OnSigchld();
      },
      SIGCHLD);
  tick_timer_.Init(uv_timer_init, loop_, this);
  uv_timer_start(
      tick_timer_.get(),
      [](uv_timer_t* h) {
        if (h->data != nullptr) static_cast<Supervisor*>(h->data)->Tick();
      },
      config_.reaper.interval_ms, config_.reaper.interval_ms);
  kick_timer_.Init(uv_timer_init, loop_, this);
  {
    // On SQLite the row is only renewed (it shows the node alive in /queue);
    // nothing is judged by it.
    lease_timer_.Init(uv_timer_init, loop_, this);
    uint64_t every = static_cast<uint64_t>(std::max<int64_t>(LeaseMs() / 3, 100));
    uv_timer_start(
        lease_timer_.get(),
        [](uv_timer_t* h) {
          if (h->data == nullptr) return;
          auto* self = static_cast<Supervisor*>(h->data);
          self->CheckLease();
          self->RenewLease();
        },
        every, every);
    ArmLeaseTimers();
  }
  if (Status started = launcher_.Start(); !started.ok()) {
    log::Error("no launcher thread; processes are created on the loop",
               {{"error", started.ToString()}});
  }
  not_before_timer_.Init(uv_timer_init, loop_, this);
  host_backoff_timer_.Init(uv_timer_init, loop_, this);
  Recover();
}

void Supervisor::Kick() {
  if (!kick_timer_ || uv_is_active(reinterpret_cast<uv_handle_t*>(kick_timer_.get()))) return;
  uv_timer_start(
      kick_timer_.get(),
      [](uv_timer_t* h) {
        if (h->data != nullptr) static_cast<Supervisor*>(h->data)->ClaimPass();
      },
      0, 0);
}

void Supervisor::ApplyConfig(const Config& c) {
  bool interval_changed = config_.reaper.interval_ms != c.reaper.interval_ms;
  config_ = ApplyReloadable(config_, c);
  if (interval_changed && tick_timer_) {
    uv_timer_set_repeat(tick_timer_.get(), config_.reaper.interval_ms);
  }
  Kick();
}

// The jobs one claim pass took, in one transaction.
struct Supervisor::ClaimBatch {
  ClaimBatch() = default;
  ClaimBatch(Status s) : error(std::move(s)) {}  // NOLINT: a failed batch
  const Status& status() const { return error; }
  std::vector<Claimed> claimed;
  Status error;  // the claim that failed after those (they stay claimed)
};

void Supervisor::ClaimPass() {
  CheckLease();
  if (stopping_ || paused_ || !recovered_ || lease_lost_ || handing_) return;
  if (claiming_) {
    // What woke us (a submit, an exit) may have come after the claim in
    // flight read the queue: look again once it is done.
    claim_again_ = true;
    return;
  }
  claim_again_ = false;
  claim_retry_ = false;
  int64_t wait_ms = host_backoff_until_mono_ - clock_->MonotonicMs();
  if (wait_ms > 0) {
    // The host could not start processes: no claim until the delay passes.
    uv_timer_start(
        host_backoff_timer_.get(),
        [](uv_timer_t* h) {
          if (h->data != nullptr) static_cast<Supervisor*>(h->data)->Kick();
        },
        static_cast<uint64_t>(wait_ms), 0);
    return;
  }
  // As many as there are free slots, in one transaction; at most this many
  // per pass, so that one commit stays short.
  constexpr int64_t kMaxClaimsPerPass = 32;
  int64_t taken = static_cast<int64_t>(running_.size() + launching_.size());
  int64_t free = std::min(config_.supervisor.max_concurrency - taken, kMaxClaimsPerPass);
  if (free <= 0) return;
  ClaimRequest req;
  req.max_concurrency = config_.supervisor.max_concurrency;
  req.serial_gate_enabled = config_.supervisor.serial_gate_enabled;
  req.incarnation = incarnation_;
  req.node_id = node_id_;
  req.now_ms = clock_->NowMs();
  claiming_ = true;
  store_->Write(
      [req, free](JobStore& store) {
        ClaimBatch batch;
        for (int64_t i = 0; i < free; ++i) {
          auto c = store.ClaimNext(req);
          if (!c.ok()) {
            batch.error = c.status();
            break;
          }
          if (!c->has_value()) break;
          batch.claimed.push_back(std::move(**c));
        }
        // Claims made before a failure are kept (each is its own savepoint);
        // the failure still makes the pass retry on the tick.
        return batch;
      },
      [this, free, claimed_at = req.now_ms](ClaimBatch batch) {
        claiming_ = false;
        bool full = static_cast<int64_t>(batch.claimed.size()) == free;
        OnClaimed(std::move(batch));
        if (stopping_) {
          MaybeFinishShutdown();
        } else if (full || claim_again_ || host_backoff_until_mono_ > clock_->MonotonicMs()) {
          Kick();  // more may be claimable, or arms the backoff timer
        } else if (!claim_retry_) {
          // From the claim's own time: a not_before that passed between the
          // claim and this read must still wake a claim.
          ArmNotBeforeTimer(claimed_at);
        }
      });
}

void Supervisor::OnClaimed(ClaimBatch batch) {
  if (!batch.error.ok()) {
    NoteStore(batch.error);
    claim_retry_ = true;
    log::Error("claim failed; retrying on the next tick", {{"error", batch.error.ToString()}});
  }
  for (auto& c : batch.claimed) {
    ++metrics_->claimed_total;
    KillPointForTest("after_claim");
    if (stopping_ || lease_lost_ || host_backoff_until_mono_ > clock_->MonotonicMs()) {
      FinishUnlaunched(c);
    } else {
      Launch(std::move(c));
    }
  }
}

void Supervisor::FinishUnlaunched(const Claimed& c) {
  // Never started, so no attempt spent: claimed as the stop began, or after
  // a host fault earlier in this batch (one incident, counted once; the
  // rest wait with the job that hit it).
  RunEnd end;
  end.job_id = c.job.id;
  end.run_id = c.run.id;
  end.outcome = RunOutcome::kInterrupted;
  end.now_ms = clock_->NowMs();
  if (stopping_) {
    end.reason = "shutdown";
  } else if (lease_lost_) {
    end.reason = "lease_lost";
    end.error = "claimed as this node lost its lease; not started";
  } else {
    end.reason = "host_fault";
    end.error = host_fault_.last_error;
    end.retry_not_before = host_fault_.backoff_until_ms;
  }
  Finish(end);
}

void Supervisor::ArmNotBeforeTimer(std::optional<int64_t> after_ms) {
  if (!not_before_timer_) return;
  int64_t after = after_ms.value_or(clock_->NowMs());
  if (not_before_reading_) {
    // The read in flight may predate the change: read again, from the
    // earliest moment asked for.
    not_before_again_after_ =
        not_before_again_after_ ? std::min(*not_before_again_after_, after) : after;
    return;
  }
  not_before_again_after_.reset();
  uv_timer_stop(not_before_timer_.get());
  if (stopping_ || paused_) return;
  not_before_reading_ = true;
  store_->Read([after](JobStore& store) { return store.NextNotBefore(after); },
               [this](Result<std::optional<int64_t>> next) {
                 not_before_reading_ = false;
                 if (not_before_again_after_) return ArmNotBeforeTimer(not_before_again_after_);
                 if (!not_before_timer_ || stopping_ || paused_) return;
                 if (!next.ok() || !next->has_value()) return;
                 int64_t at = **next - clock_->NowMs();
                 uint64_t delay = static_cast<uint64_t>(std::max<int64_t>(at, 0)) + 1;
                 uv_timer_start(
                     not_before_timer_.get(),
                     [](uv_timer_t* h) {
                       if (h->data != nullptr) static_cast<Supervisor*>(h->data)->Kick();
                     },
                     delay, 0);
               });
}

std::map<std::string, std::string> Supervisor::JobEnvironment(const Job& job, const Run& run) const {
  std::map<std::string, std::string> env = {{"PATH", kDefaultPath}, {"HOME", home_}};
  for (const auto& [k, v] : job.env) env[k] = v;
  env["ORCH_JOB_ID"] = std::to_string(job.id);
  env["ORCH_RUN_ID"] = std::to_string(run.id);
  env["ORCH_ATTEMPT"] = std::to_string(run.attempt);
  env["ORCH_NODE_ID"] = node_id_;
  return env;
}

// What the launcher thread made of one claimed job.
struct Supervisor::Launched {
  Claimed claimed;
  Result<RunLogFiles> logs = Status(Code::kInternal, "not launched");
  SpawnOutcome spawned;
  std::unique_ptr<RunScope> scope;  // set when its processes may exist
  bool held_back = false;  // not tried: a launch before it met a host fault
};

void Supervisor::Launch(Claimed c) {
  SpawnRequest req;
  req.argv = c.job.argv;
  req.env = JobEnvironment(c.job, c.run);
  req.cwd = c.job.cwd;
  req.nofile_limit = job_nofile_;
  req.drop_privileges = drop_privileges_;
  req.uid = uid_;
  req.gid = gid_;
  req.groups = groups_;
  req.hold_until_released = true;
  // Launches posted together stop at the first host fault, as one incident.
  if (launching_.empty()) launch_fault_ = std::make_shared<std::atomic<bool>>(false);
  launching_[c.run.id] = Launching{c.job.id, StopCause::kNone};

  // The log files and the process are made on the launcher thread: the
  // creation sleeps until the child has exec'd the helper, and the loop has
  // exits and requests to serve meanwhile.
  auto launched = std::make_shared<Launched>();
  launched->claimed = std::move(c);
  LogDir* log_dir = log_dir_.get();
  auto work = [launched, req = std::move(req), log_dir, fault = launch_fault_,
               hook = launch_hook_, pids = launching_pids_,
               containment = containment_]() mutable {
    if (hook) hook();
    if (fault->load()) {
      launched->held_back = true;
      return;
    }
    const Claimed& claimed = launched->claimed;
    auto scope = containment->Prepare(claimed.run.id, LimitsOf(claimed.job));
    if (scope.ok()) {
      launched->scope = std::move(scope).value();
      launched->logs = log_dir->CreateRunLogs(claimed.job.id, claimed.run.id);
    }
    if (!scope.ok()) {
      // A limit the kernel refuses is the job's fault; anything else the host's.
      bool job_fault = scope.status().code() == Code::kInvalidArgument;
      launched->spawned.failure = {0, 126, !job_fault, "cgroup: " + scope.status().message()};
    } else if (!launched->logs.ok()) {
      launched->spawned.failure = {0, 126, true, launched->logs.status().message()};
    } else {
      req.cgroup_fd = launched->scope->cgroup_fd();
      req.stdout_fd = launched->logs->out.get();
      req.stderr_fd = launched->logs->err.get();
      pid_t created = 0;
      req.on_created = [&created, &pids](pid_t pid) {
        created = pid;
        std::lock_guard lock(pids->mu);
        pids->pids.insert(pid);
      };
      {
        std::lock_guard lock(pids->mu);
        ++pids->creating;
      }
      launched->spawned = Spawn(req);
      std::lock_guard lock(pids->mu);
      --pids->creating;
      if (!launched->spawned.ok && created != 0) pids->pids.erase(created);  // reaped already
    }
    if (!launched->spawned.ok && launched->spawned.failure.host_fault) fault->store(true);
  };
  auto done = [this, launched] { OnLaunched(std::move(*launched)); };
  if (!launcher_.Post(work, done)) {
    work();  // no launcher thread (it failed to start): on the loop, as a fallback
    done();
  }
}

void Supervisor::OnLaunched(Launched l) {
  const Claimed& c = l.claimed;
  if (l.scope && !l.spawned.ok) {
    // Its only process (if one was made) is reaped: the cgroup goes, now or
    // from the tick.
    if (!l.scope->Remove().ok()) strays_[c.run.id] = std::move(l.scope);
  }
  StopCause stop = StopCause::kNone;
  if (auto it = launching_.find(c.run.id); it != launching_.end()) {
    stop = it->second.stop;
    launching_.erase(it);
  }
  if (stop == StopCause::kCancel && (l.held_back || !l.spawned.ok)) {
    // Cancelled while it was being made, and it never started anyway.
    RunEnd end;
    end.job_id = c.job.id;
    end.run_id = c.run.id;
    end.outcome = RunOutcome::kCancelled;
    end.reason = "cancelled";
    end.now_ms = clock_->NowMs();
    Finish(end);
    Kick();
  } else if (l.held_back) {
    FinishUnlaunched(c);
    Kick();
  } else if (!l.spawned.ok) {
    RunEnd end = SpawnFailed(c.job.id, c.run.id, l.spawned.failure);
    end.now_ms = clock_->NowMs();
    Finish(end);
    Kick();  // its slot is free again, or a host fault's backoff must be armed
  } else {
    auto r = std::make_unique<Running>();
    Running* run = r.get();
    r->sup = this;
    r->job_id = c.job.id;
    r->run_id = c.run.id;
    r->attempt = c.run.attempt;
    r->pid = l.spawned.process.pid;
    r->pidfd = std::move(l.spawned.process.pidfd);
    r->started_mono_ms = clock_->MonotonicMs();
    r->timeout_s = c.job.timeout_s;
    r->out_fd = std::move(l.logs->out);
    r->err_fd = std::move(l.logs->err);
    r->exec = std::move(l.spawned.process.held);
    r->held = true;
    r->scope = std::move(l.scope);
    r->job_stall_timeout_s = c.job.stall_timeout_s;
    // Watched from its creation: a held child that dies before its record
    // commits is reaped through its pidfd like any other.
    run_by_pid_[r->pid] = r->run_id;
    {
      std::lock_guard lock(launching_pids_->mu);
      launching_pids_->pids.erase(r->pid);
    }
    Watch(std::move(r));

    KillPointForTest("after_spawn");
    int64_t job_id = c.job.id, run_id = c.run.id;
    ProcessIdentity identity = l.spawned.process.identity;
    std::string log_path = l.logs->out_path;
    std::string cgroup = run->scope->cgroup();
    store_->Write(
        [job_id, run_id, identity, log_path, cgroup](JobStore& store) {
          return store.RecordSpawned(job_id, run_id, identity, log_path, cgroup);
        },
        [this, run_id](Status stamped) { OnRecorded(run_id, stamped); });
    // Cancelled or stopped while it was being made: recorded, never released.
    if (stopping_ && stop == StopCause::kNone) stop = StopCause::kShutdown;
    if (stop != StopCause::kNone) RequestStop(*run, stop);
  }
  if (sigchld_deferred_) {
    sigchld_deferred_ = false;
    OnSigchld();
  }
  if (stopping_) MaybeFinishShutdown();
}

void Supervisor::OnRecorded(int64_t run_id, const Status& stamped) {
  NoteStore(stamped);
  auto it = running_.find(run_id);
  if (it == running_.end() || !it->second->held) {
    return;  // it died while held; its end is committed after this record
  }
  Running& r = *it->second;
  r.held = false;
  // Without a lease another node may already run this job: never release.
  if (stamped.ok() && r.stop == StopCause::kNone && lease_lost_) r.stop = StopCause::kLeaseLost;
  if (stamped.ok() && r.stop == StopCause::kNone) {
    // The exec's outcome is read when the child exits: the loop never
    // waits for an exec.
    Status released = ReleaseHeld(*r.exec);
    if (!released.ok()) log::Error("could not release child", {{"error", released.ToString()}});
    r.released = true;
    // timeout_s counts from here: waiting for the store is not the job's time.
    r.started_mono_ms = clock_->MonotonicMs();
    r.last_progress_mono_ms = r.started_mono_ms;
    log::Debug("job started", {{"job_id", r.job_id}, {"run_id", run_id}, {"pid", r.pid},
                               {"attempt", r.attempt}});
    return;
  }
  // An unrecorded process must not run, nor one stopped while it waited:
  // dropping the held child's gate makes it exit without exec.
  if (!stamped.ok()) {
    log::Error("could not record spawned process; dropping it",
               {{"job_id", r.job_id}, {"run_id", run_id}, {"error", stamped.ToString()}});
    if (r.stop == StopCause::kNone) r.stop = StopCause::kUnrecorded;
  }
  r.exec.reset();
}

RunEnd Supervisor::SpawnFailed(int64_t job_id, int64_t run_id, const SpawnFailure& failure) {
  RunEnd end;
  end.job_id = job_id;
  end.run_id = run_id;
  if (failure.host_fault) {
    // Nothing says the job would fail again: requeued, attempt kept.
    log::Warn("host could not start a job; requeued",
              {{"job_id", job_id}, {"run_id", run_id}, {"error", failure.message}});
    end.outcome = RunOutcome::kInterrupted;
    end.reason = "host_fault";
    end.error = failure.message;
    // The job waits twice the claim backoff, so that one job that keeps
    // failing this way cannot stand at the head of the queue for good.
    int64_t delay = NoteHostFault(failure.message);
    end.retry_not_before = clock_->NowMs() + 2 * delay;
    return end;
  }
  ++metrics_->spawn_failures_total;
  log::Warn("spawn failed", {{"job_id", job_id}, {"run_id", run_id}, {"error", failure.message}});
  end.outcome = RunOutcome::kSpawnFailed;
  end.reason = failure.message;
  end.error = failure.message;
  end.exit_code = failure.shell_code;
  return end;
}

int64_t Supervisor::NoteHostFault(const std::string& error) {
  ++metrics_->host_faults_total;
  ++host_fault_.consecutive;
  int64_t delay = BackoffMs(host_fault_.consecutive, config_.supervisor.backoff_base_s,
                            config_.supervisor.backoff_max_s, UnitRandom());
  host_backoff_until_mono_ = clock_->MonotonicMs() + delay;
  host_fault_.backoff_until_ms = clock_->NowMs() + delay;
  host_fault_.last_error = error;
  log::Warn("claiming backs off after a host fault",
            {{"consecutive", host_fault_.consecutive}, {"delay_ms", delay}, {"error", error}});
  return delay;
}

HostFaultState Supervisor::host_fault() const {
  HostFaultState state = host_fault_;
  state.backoff_left_ms = std::max<int64_t>(host_backoff_until_mono_ - clock_->MonotonicMs(), 0);
  if (state.backoff_left_ms == 0) state.backoff_until_ms = 0;
  return state;
}

void Supervisor::Watch(std::unique_ptr<Running> r) {
  Running* raw = r.get();
  int rc = raw->poll.Init(uv_poll_init, loop_, raw, raw->pidfd.get());
  if (rc == 0) {
    uv_poll_start(raw->poll.get(), UV_READABLE, [](uv_poll_t* h, int, int) {
      if (h->data == nullptr) return;
      auto* run = static_cast<Running*>(h->data);
      run->sup->OnProcessExit(run->run_id);
    });
  } else {
    log::Error("cannot watch pidfd; relying on the reaper tick",
               {{"run_id", raw->run_id}, {"error", uv_strerror(rc)}});
  }
  running_[raw->run_id] = std::move(r);
}

void Supervisor::SignalRun(Running& r, int sig) {
  // A draining run's leader is reaped: only its cgroup is left to reach.
  if (r.draining) return r.scope->KillRest(r.leader());
  r.scope->Signal(r.leader(), sig);
}

void Supervisor::RequestStop(Running& r, StopCause cause) {
  if (r.stop != StopCause::kNone && r.stop != StopCause::kUnrecorded) return;
  r.stop = cause;
  r.term_sent_mono_ms = clock_->MonotonicMs();
  SignalRun(r, SIGTERM);
}

void Supervisor::CapLogs(Running& r, bool final) {
  // Through the fds opened at spawn: whatever now sits at the log's name,
  // these are the files the job writes.
  for (auto [fd, cut] : {std::pair{&r.out_fd, &r.cut_out}, std::pair{&r.err_fd, &r.cut_err}}) {
    if (!fd->valid()) continue;
    auto removed = EnforceLogCap(fd->get(), config_.supervisor.max_log_bytes);
    if (removed.ok()) *cut += *removed;
    if (final && *cut > 0) (void)AppendLogCutNote(fd->get(), *cut);
  }
}

void Supervisor::OnProcessExit(int64_t run_id) {
  auto it = running_.find(run_id);
  if (it == running_.end() || it->second->draining) return;
  Running& r = *it->second;
  int64_t detected_ns = MonotonicNs();

  ExitInfo exit;
  std::optional<std::string> reap_failed;
  if (r.child) {
    auto exited = HasExited(r.pidfd.get());
    if (exited.ok() && !*exited) return;  // spurious wake-up
    Status reap_error = exited.status();
    if (reap_error.ok()) {
      // Confirmed exited: stragglers go before the leader is reaped, while
      // the zombie still reserves the group id.
      r.scope->KillRest(r.leader());
      auto reaped = ReapPidfd(r.pidfd.get());
      if (reaped.ok() && reaped->has_value()) {
        exit = **reaped;
      } else {
        reap_error = reaped.ok() ? Status(Code::kInternal, "exited child not reapable")
                                 : reaped.status();
      }
    }
    run_by_pid_.erase(r.pid);
    if (!reap_error.ok()) {
      // The level-triggered poll would wake us again at once: close it and
      // close the run instead of spinning on the error.
      log::Error("cannot reap a job's process; closing its run as lost",
                 {{"job_id", r.job_id}, {"run_id", run_id}, {"pid", r.pid},
                  {"error", reap_error.ToString()}});
      r.poll.Close();
      reap_failed = "cannot reap process: " + reap_error.ToString();
    }
  } else if (!r.pidfd.Exited()) {
    return;
  }
  if (r.child && !reap_failed) KillPointForTest("after_exit");

  RunEnd end;
  if (reap_failed) {
    end.outcome = RunOutcome::kLost;
    end.reason = "reap_failed";
    end.error = *reap_failed;
    ++metrics_->lost_total[end.reason];
  } else if (!r.child) {
    auto info = ExitInfoFromPidfd(r.pidfd.get());
    if (r.killing_orphan) {
      // The daemon's crash, not the job, ended this run: like a shutdown it
      // does not spend an attempt.
      end.outcome = RunOutcome::kInterrupted;
      end.reason = "orphan_killed";
      end.error = "orphan of a previous incarnation was killed to be requeued";
    } else if (!info && (r.exit_seen_mono_ms == 0 ||
                         clock_->MonotonicMs() - r.exit_seen_mono_ms < kAdoptedExitWaitMs)) {
      // Exited, but its exit status appears only once its parent (not us)
      // has reaped it: look again on the next tick.
      if (r.exit_seen_mono_ms == 0) r.exit_seen_mono_ms = clock_->MonotonicMs();
      r.poll.Close();
      return;
    } else if (info) {
      end = DecideRunEnd(*info, r.stop, config_.supervisor.transient_exit_codes, StopLimitS(r));
    } else {
      end.outcome = RunOutcome::kLost;
      end.reason = "adopted_exit_unknown";
      end.error = "adopted process exited; its status cannot be read on this kernel";
      ++metrics_->lost_total[end.reason];
    }
    ++metrics_->reaped_total;
  } else if (auto failure = r.exec ? ExecFailureAfterExit(*r.exec) : std::nullopt) {
    end = SpawnFailed(r.job_id, r.run_id, *failure);
  } else {
    if (r.released) host_fault_.consecutive = 0;  // it exec'd
    end = DecideRunEnd(exit, r.stop, config_.supervisor.transient_exit_codes, StopLimitS(r));
  }
  int64_t now = clock_->NowMs();
  end.job_id = r.job_id;
  end.run_id = r.run_id;
  end.now_ms = now;
  if (end.outcome != RunOutcome::kInterrupted) {
    end.retry_not_before = now + BackoffMs(r.attempt, config_.supervisor.backoff_base_s,
                                           config_.supervisor.backoff_max_s, UnitRandom());
  }
  if (end.outcome == RunOutcome::kTimeout) ++metrics_->timeouts_total;
  if (end.outcome == RunOutcome::kStalled) ++metrics_->stalled_total;

  metrics_->run_duration_seconds.Observe(
      static_cast<double>(clock_->MonotonicMs() - r.started_mono_ms) / 1000.0);
  log::Debug("job exited", {{"job_id", r.job_id}, {"run_id", r.run_id}, {"pid", r.pid},
                            {"outcome", RunOutcomeName(end.outcome)}, {"reason", end.reason}});
  r.end = std::move(end);
  r.detected_ns = detected_ns;
  r.draining = true;
  r.poll.Close();
  Drain(run_id);
}

int64_t Supervisor::DrainLimitMs() const {
  return std::max<int64_t>(config_.supervisor.kill_grace_s, 5) * 1000;
}

void Supervisor::Drain(int64_t run_id) {
  auto it = running_.find(run_id);
  if (it == running_.end() || !it->second->draining) return;
  Running& r = *it->second;
  auto populated = r.scope->Populated();
  if (populated.ok() && *populated) {
    int64_t mono = clock_->MonotonicMs();
    if (r.drain_started_mono_ms == 0) {
      // What the job left behind (a daemonized child, `setsid cmd &`) dies
      // with it; the cgroup says when the last one is gone.
      r.drain_started_mono_ms = mono;
      r.scope->KillRest(r.leader());
      int rc = r.events.Init(uv_fs_event_init, loop_, &r);
      if (rc == 0) {
        rc = uv_fs_event_start(
            r.events.get(),
            [](uv_fs_event_t* h, const char*, int, int) {
              if (h->data == nullptr) return;
              auto* run = static_cast<Running*>(h->data);
              run->sup->Drain(run->run_id);
            },
            r.scope->events_path().c_str(), 0);
      }
      if (rc != 0) {
        log::Warn("cannot watch a run's cgroup; the reaper tick looks instead",
                  {{"run_id", run_id}, {"error", uv_strerror(rc)}});
      }
      // Emptied between the read and the watch: no event would come.
      populated = r.scope->Populated();
      if (!populated.ok() || !*populated) return CompleteRun(run_id);
    }
    if (mono - r.drain_started_mono_ms < DrainLimitMs()) return;
    log::Error("processes of a run survive SIGKILL; its end is recorded without waiting for "
               "them, and the reaper keeps killing its cgroup",
               {{"job_id", r.job_id}, {"run_id", run_id}, {"cgroup", r.scope->cgroup()}});
  } else if (!populated.ok() && !r.scope->cgroup().empty()) {
    log::Warn("cannot read a run's cgroup; recording its end",
              {{"run_id", run_id}, {"error", populated.status().ToString()}});
  }
  CompleteRun(run_id);
}

void Supervisor::CompleteRun(int64_t run_id) {
  auto it = running_.find(run_id);
  if (it == running_.end()) return;
  Running& r = *it->second;
  r.events.Close();
  if (!r.scope->cgroup().empty()) {
    if (r.remove_tries == 0) Measure(r);
    Status removed = r.scope->Remove();
    if (removed.code() == Code::kUnavailable && ++r.remove_tries < 50) {
      // The kernel lets go of an emptied cgroup a moment later.
      if (!r.remove_timer) r.remove_timer.Init(uv_timer_init, loop_, &r);
      uv_timer_start(
          r.remove_timer.get(),
          [](uv_timer_t* h) {
            if (h->data == nullptr) return;
            auto* run = static_cast<Running*>(h->data);
            run->sup->CompleteRun(run->run_id);
          },
          20, 0);
      return;
    }
    if (!removed.ok()) {
      log::Warn("run cgroup not removed; the reaper tries again",
                {{"run_id", run_id}, {"error", removed.ToString()}});
      strays_[run_id] = std::move(r.scope);
    }
  }
  CapLogs(r, /*final=*/true);
  if (r.cut_out > 0 || r.cut_err > 0) {
    // A follower that read past the cap before this last cut learns of it
    // from the count (GET /jobs/{id}/log), after the run is gone too.
    ended_cuts_[run_id] = {r.cut_out, r.cut_err};
    if (ended_cuts_.size() > kEndedCutsKept) ended_cuts_.erase(ended_cuts_.begin());
  }
  RunEnd end = std::move(r.end);
  int64_t detected_ns = r.detected_ns;
  running_.erase(it);
  Finish(end, detected_ns);
  // The slot is free now: the claim is committed after this end (writes
  // commit in order), so the store counts the slot free as well. Posted at
  // once, it usually shares the end's commit.
  if (stopping_) {
    MaybeFinishShutdown();
  } else {
    ClaimPass();
  }
}

bool ApplyCgroupUsage(RunEnd& end, const CgroupUsage& usage, StopCause stop) {
  end.cpu_usec = usage.cpu_usec;
  end.mem_peak_bytes = usage.mem_peak_bytes;
  end.oom_kills = usage.oom_kills;
  if (usage.oom_kills.value_or(0) == 0 || stop != StopCause::kNone ||
      (end.outcome != RunOutcome::kFailed && end.outcome != RunOutcome::kTransient)) {
    return false;
  }
  // The kernel, not the job, ended it: a memory_max too small for it.
  end.outcome = RunOutcome::kFailed;
  end.error = "killed by the OOM killer (" + std::to_string(*usage.oom_kills) +
              " OOM kill(s) in its cgroup; " + end.reason + ")";
  end.reason = "oom_kill";
  return true;
}

void Supervisor::Measure(Running& r) {
  if (ApplyCgroupUsage(r.end, r.scope->Usage(), r.stop)) ++metrics_->oom_kills_total;
}

void Supervisor::SweepStrays() {
  for (auto it = strays_.begin(); it != strays_.end();) {
    RunScope& scope = *it->second;
    auto populated = scope.Populated();
    if (populated.ok() && *populated) {
      scope.KillRest(RunLeader{});
      ++it;
      continue;
    }
    Status removed = scope.Remove();
    if (removed.code() == Code::kUnavailable) {
      ++it;
      continue;
    }
    if (!removed.ok()) {
      log::Warn("cannot remove a leftover run cgroup", {{"run_id", it->first},
                                                        {"error", removed.ToString()}});
    } else {
      log::Info("removed a leftover run cgroup",
                {{"run_id", it->first}, {"cgroup", scope.cgroup()}});
    }
    it = strays_.erase(it);
  }
}

void Supervisor::Finish(const RunEnd& end, int64_t detected_ns) {
  if (!pending_finishes_.empty()) {
    // Ends are recorded in the order the runs ended: this one waits behind
    // those the store refused (the tick retries them all).
    pending_finishes_.push_back(end);
    return;
  }
  ending_.insert(end.run_id);
  store_->Write([end](JobStore& store) { return store.FinishRun(end); },
                [this, end, detected_ns](Result<FinishResult> result) {
                  ending_.erase(end.run_id);
                  if (result.ok()) {
                    if (detected_ns != 0) {
                      metrics_->exit_detection_seconds.Observe(
                          static_cast<double>(MonotonicNs() - detected_ns) / 1e9);
                    }
                    ++metrics_->finished_total[RunOutcomeName(end.outcome)];
                    log::Info("run finished",
                              {{"job_id", end.job_id}, {"run_id", end.run_id},
                               {"outcome", RunOutcomeName(end.outcome)}, {"reason", end.reason},
                               {"job_status", JobStatusName(result->job_status)}});
                  } else if (NoteStore(result.status());
                             result.status().code() == Code::kGuardMissed) {
                    log::Warn("run already closed elsewhere; nothing changed",
                              {{"job_id", end.job_id}, {"run_id", end.run_id},
                               {"error", result.status().message()}});
                  } else {
                    log::Error("could not record run end; will retry",
                               {{"job_id", end.job_id}, {"run_id", end.run_id},
                                {"error", result.status().ToString()}});
                    pending_finishes_.push_back(end);
                  }
                  if (stopping_) MaybeFinishShutdown();
                });
}

void Supervisor::Tick() {
  ++metrics_->reaper_ticks_total;
  metrics_->last_tick_at_ms = clock_->NowMs();
  // Before anything else: after a pause (SIGSTOP, a frozen VM) this is the
  // first look at the lease.
  CheckLease();
  if (shared_ && !lease_lost_ && recovered_ && !stopping_) {
    Rescue();
    RefreshShared();
  }

  if (!recovered_) Recover();
  if (sigchld_deferred_) {
    sigchld_deferred_ = false;
    OnSigchld();
  }

  if (!pending_finishes_.empty()) {
    // Retried in the order they ended; one that is refused again comes back.
    std::vector<RunEnd> pending;
    pending.swap(pending_finishes_);
    for (const auto& end : pending) Finish(end);
    Kick();
  }

  if (recovered_ && sweep_parts_ == 0) Sweep();

  std::vector<int64_t> exited, draining;
  int64_t mono = clock_->MonotonicMs();
  for (auto& [run_id, r] : running_) {
    if (r->draining) {
      draining.push_back(run_id);
    } else if (r->exit_seen_mono_ms != 0) {
      exited.push_back(run_id);
    }
  }
  for (int64_t run_id : exited) OnProcessExit(run_id);
  // Behind the cgroup.events watch.
  for (int64_t run_id : draining) Drain(run_id);
  SweepStrays();

  for (auto& [run_id, r] : running_) {
    if (r->draining) continue;
    if (r->timeout_s && r->stop == StopCause::kNone && !r->killing_orphan && !r->held &&
        mono - r->started_mono_ms >= *r->timeout_s * 1000) {
      log::Warn("run timed out", {{"job_id", r->job_id}, {"run_id", run_id}, {"pid", r->pid}});
      RequestStop(*r, StopCause::kTimeout);
    }
    SampleProgress(*r, mono);
    int64_t stall_s = StallTimeoutS(*r);
    if (stall_s > 0 && r->stop == StopCause::kNone && !r->killing_orphan && !r->held &&
        mono - r->last_progress_mono_ms >= stall_s * 1000) {
      log::Warn("run stalled: no CPU time and no log output; stopping it",
                {{"job_id", r->job_id}, {"run_id", run_id}, {"pid", r->pid},
                 {"stall_timeout_s", stall_s}});
      RequestStop(*r, StopCause::kStalled);
    }
    int64_t grace_ms = (stopping_ ? config_.supervisor.shutdown_grace_s
                                  : config_.supervisor.kill_grace_s) * 1000;
    if (r->stop != StopCause::kNone && !r->kill_sent && mono - r->term_sent_mono_ms >= grace_ms) {
      r->kill_sent = true;
      SignalRun(*r, SIGKILL);
    }
    CapLogs(*r, /*final=*/false);
  }
  if (claim_retry_) Kick();
}

int64_t Supervisor::StallTimeoutS(const Running& r) const {
  return r.job_stall_timeout_s.value_or(config_.supervisor.stall_timeout_s);
}

int64_t Supervisor::StopLimitS(const Running& r) const {
  return r.stop == StopCause::kStalled ? StallTimeoutS(r) : r.timeout_s.value_or(0);
}

void Supervisor::SampleProgress(Running& r, int64_t mono) {
  if (r.held) return;
  std::optional<int64_t> cpu;
  if (!r.scope->cgroup().empty()) {
    r.usage = r.scope->Usage();
    cpu = r.usage.cpu_usec;
  } else if (!r.pidfd.Exited()) {
    cpu = LeaderCpuUsec(r.pid);
    r.usage.cpu_usec = cpu;
  }
  int64_t bytes = FileSize(r.out_fd) + FileSize(r.err_fd) + r.cut_out + r.cut_err;
  int64_t cpu_now = cpu.value_or(r.last_cpu_usec);
  if (cpu_now != r.last_cpu_usec || bytes != r.last_log_bytes) {
    if (r.last_log_bytes >= 0 || r.last_cpu_usec >= 0) r.last_progress_mono_ms = mono;
    r.last_cpu_usec = cpu_now;
    r.last_log_bytes = bytes;
  }
}

std::optional<RunLiveStats> Supervisor::LiveStats(int64_t run_id) const {
  auto it = running_.find(run_id);
  if (it == running_.end()) return std::nullopt;
  const Running& r = *it->second;
  RunLiveStats s;
  if (r.usage.cpu_usec) s.cpu_s = static_cast<double>(*r.usage.cpu_usec) / 1e6;
  s.mem_bytes = r.usage.mem_bytes;
  if (!r.held && r.last_progress_mono_ms != 0) {
    s.idle_s = static_cast<double>(std::max<int64_t>(
                   clock_->MonotonicMs() - r.last_progress_mono_ms, 0)) / 1000.0;
  }
  return s;
}

void Supervisor::Sweep() {
  sweep_parts_ = 3;
  sweep_failed_ = false;
  Sanitize([this](Status s) { SweepPartDone(s); });

  // Liveness: rows that no pidfd of ours watches (rare) are read in full
  // and checked by identity.
  std::unordered_set<int64_t> tracked = TrackedRunIds();
  store_->Read(
      [this, tracked = std::move(tracked)](JobStore& store) -> Result<std::vector<RunningEntry>> {
        auto briefs = store.ListRunningBrief();
        if (!briefs.ok()) return briefs.status();
        std::vector<RunningEntry> out;
        for (const auto& brief : *briefs) {
          // Another node's run is that node's to check (or a rescuer's).
          if (tracked.count(brief.run_id) != 0 || !Mine(brief.node_id)) continue;
          auto job = store.GetJob(brief.job_id);
          if (!job.ok()) return job.status();
          auto run = store.GetRun(brief.run_id);
          if (!run.ok()) return run.status();
          if (job->status != JobStatus::kRunning || job->run_id != brief.run_id ||
              !run->has_value()) {
            continue;  // it moved on since the listing
          }
          out.push_back(RunningEntry{std::move(job).value(), std::move(**run)});
        }
        return out;
      },
      [this](Result<std::vector<RunningEntry>> rows) {
        Status first;
        if (!rows.ok()) {
          first = rows.status();
        } else if (!stopping_) {
          for (const auto& entry : *rows) {
            // Decided now, on the loop: a run tracked since the read is
            // ours to watch, not to reconcile.
            if (Tracked(entry.run.id)) continue;
            Status r = Reconcile(entry, false);
            if (!r.ok() && first.ok()) first = r;
          }
        }
        SweepPartDone(first);
      });

  store_->Probe([this](Status probe) { SweepPartDone(probe); });
}

void Supervisor::SweepPartDone(const Status& s) {
  if (!s.ok()) {
    NoteStore(s);
    sweep_failed_ = true;
    log::Error("reaper tick failed", {{"error", s.ToString()}});
  }
  if (--sweep_parts_ == 0 && sweep_failed_) ++metrics_->reaper_errors_total;
}

void Supervisor::OnSigchld() {
  // Reap every exited child that is not a job; a job's zombie is handed to
  // its pidfd handler instead, so its status is never stolen.
  for (int guard = 0; guard < 4096; ++guard) {
    siginfo_t info{};
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) return;
    auto it = run_by_pid_.find(info.si_pid);
    if (it != run_by_pid_.end()) {
      OnProcessExit(it->second);
      if (run_by_pid_.count(info.si_pid) != 0) return;  // could not reap it now
      continue;
    }
    bool launching;
    {
      std::lock_guard lock(launching_pids_->mu);
      launching = launching_pids_->creating > 0 || launching_pids_->pids.count(info.si_pid) != 0;
    }
    if (left_children_.count(info.si_pid) != 0) {
      sigchld_deferred_ = true;  // its waiter reaps it
      return;
    }
    if (!launching && keep_zombies_ && !recovered_) {
      // Maybe a job of the image before the exec: recovery reads its status.
      sigchld_deferred_ = true;
      return;
    }
    if (launching) {
      // A child the launcher made (or may be making), not yet handed to the
      // loop: looked at again when the next launch comes back, or the tick.
      sigchld_deferred_ = true;
      return;
    }
    int status;
    (void)waitpid(info.si_pid, &status, WNOHANG);
  }
}

void Supervisor::Cancel(int64_t job_id, std::function<void(Result<CancelResult>)> done) {
  int64_t now = clock_->NowMs();
  store_->Write(
      [job_id, now](JobStore& store) { return store.Cancel(job_id, now); },
      [this, job_id, done = std::move(done)](Result<CancelResult> result) {
        if (!result.ok()) {
          if (result.status().code() != Code::kNotFound &&
              result.status().code() != Code::kConflict) {
            NoteStore(result.status());
          }
        } else if (result->effect == CancelEffect::kRunningSignalNeeded ||
                   result->effect == CancelEffect::kAlreadyRequested) {
          // A claim committed before this cancel was delivered before it:
          // its run is watched by now, or still waits for its launch.
          for (auto& [run_id, r] : running_) {
            if (r->job_id == job_id) {
              log::Info("cancelling running job",
                        {{"job_id", job_id}, {"run_id", run_id}, {"pid", r->pid}});
              RequestStop(*r, StopCause::kCancel);
            }
          }
          for (auto& [run_id, l] : launching_) {
            if (l.job_id != job_id) continue;
            log::Info("cancelling a job being launched", {{"job_id", job_id}, {"run_id", run_id}});
            l.stop = StopCause::kCancel;
          }
        } else {
          log::Info("cancelled queued job", {{"job_id", job_id}});
        }
        done(std::move(result));
      });
}

void Supervisor::SetPaused(bool paused, std::function<void(Status)> done) {
  store_->Write([paused](JobStore& store) { return store.SetPaused(paused); },
                [this, paused, done = std::move(done)](Status s) {
                  NoteStore(s);
                  if (s.ok()) {
                    if (paused_ != paused) log::Info(paused ? "queue paused" : "queue resumed");
                    paused_ = paused;
                    pause_changed_ = true;
                    ++pause_sets_;
                    if (!paused) Kick();
                    ArmNotBeforeTimer();
                  }
                  done(s);
                });
}

std::optional<int64_t> Supervisor::LogCutBytes(int64_t run_id, LogStream stream) const {
  bool err = stream == LogStream::kStderr;
  if (auto it = running_.find(run_id); it != running_.end()) {
    return err ? it->second->cut_err : it->second->cut_out;
  }
  if (auto it = ended_cuts_.find(run_id); it != ended_cuts_.end()) {
    return err ? it->second.second : it->second.first;
  }
  return std::nullopt;
}

bool Supervisor::IsRunAlive(int64_t run_id) const {
  auto it = running_.find(run_id);
  return it != running_.end() && !it->second->pidfd.Exited();
}

void Supervisor::BeginHandover() {
  handing_ = true;
  log::Info("re-exec: claiming stops until the hand-over",
            {{"running", running_.size()}, {"launching", launching_.size()}});
}

void Supervisor::CancelHandover() {
  if (!handing_) return;
  handing_ = false;
  Kick();
}

bool Supervisor::Quiet() const {
  if (!recovered_ || recovering_ || stopping_ || claiming_ || !launching_.empty() ||
      !ending_.empty() || !pending_finishes_.empty() || renewing_ || rescuing_ ||
      sweep_parts_ != 0) {
    return false;
  }
  return std::none_of(running_.begin(), running_.end(),
                      [](const auto& each) { return each.second->held || each.second->draining; });
}

std::vector<HandedRun> Supervisor::HandRuns() const {
  std::vector<HandedRun> out;
  for (const auto& [run_id, r] : running_) {
    HandedRun h;
    h.run_id = run_id;
    h.job_id = r->job_id;
    h.attempt = r->attempt;
    h.pid = r->pid;
    h.pidfd = r->pidfd.get();
    h.child = r->child;
    h.killing_orphan = r->killing_orphan;
    h.released = r->released;
    if (r->exec) h.report = ExportHeld(*r->exec);
    h.out_fd = r->out_fd.get();
    h.err_fd = r->err_fd.get();
    h.cgroup = r->scope->cgroup();
    h.started_mono_ms = r->started_mono_ms;
    h.timeout_s = r->timeout_s;
    h.stall_timeout_s = r->job_stall_timeout_s;
    h.stop = r->stop;
    h.term_sent_mono_ms = r->term_sent_mono_ms;
    h.kill_sent = r->kill_sent;
    h.cut_out = r->cut_out;
    h.cut_err = r->cut_err;
    h.last_progress_mono_ms = r->last_progress_mono_ms;
    h.last_cpu_usec = r->last_cpu_usec;
    h.last_log_bytes = r->last_log_bytes;
    h.exit_seen_mono_ms = r->exit_seen_mono_ms;
    out.push_back(std::move(h));
  }
  return out;
}

void Supervisor::AdoptHanded(std::vector<HandedRun> runs, const std::string& from_incarnation) {
  std::vector<int64_t> ids;
  for (HandedRun& h : runs) {
    auto r = std::make_unique<Running>();
    r->sup = this;
    r->job_id = h.job_id;
    r->run_id = h.run_id;
    r->attempt = h.attempt;
    r->pid = h.pid;
    r->pidfd = Pidfd(h.pidfd);
    r->child = h.child;
    r->killing_orphan = h.killing_orphan;
    r->released = h.released;
    if (h.report) r->exec = ImportHeld(*h.report);
    r->out_fd = UniqueFd(h.out_fd);
    r->err_fd = UniqueFd(h.err_fd);
    Run recorded;
    recorded.id = h.run_id;
    recorded.cgroup = h.cgroup;
    r->scope = containment_->ForRecorded(recorded);
    r->started_mono_ms = h.started_mono_ms;
    r->timeout_s = h.timeout_s;
    r->job_stall_timeout_s = h.stall_timeout_s;
    r->stop = h.stop;
    r->term_sent_mono_ms = h.term_sent_mono_ms;
    r->kill_sent = h.kill_sent;
    r->cut_out = h.cut_out;
    r->cut_err = h.cut_err;
    r->last_progress_mono_ms = h.last_progress_mono_ms;
    r->last_cpu_usec = h.last_cpu_usec;
    r->last_log_bytes = h.last_log_bytes;
    r->exit_seen_mono_ms = h.exit_seen_mono_ms;
    if (r->child) run_by_pid_[r->pid] = r->run_id;
    log::Info("run continued", {{"job_id", r->job_id},
                                {"run_id", r->run_id},
                                {"pid", r->pid},
                                {"from_incarnation", from_incarnation}});
    ids.push_back(r->run_id);
    Watch(std::move(r));
  }
  metrics_->runs_continued_total += runs.size();
  if (ids.empty()) return;
  store_->Write([ids, to = incarnation_](JobStore& store) { return store.ContinueRuns(to, ids); },
                [this, ids](Result<std::vector<int64_t>> continued) {
                  if (!continued.ok()) {
                    // The rows keep the old incarnation; the runs are watched all the same.
                    NoteStore(continued.status());
                    log::Warn("handed-over runs not recorded as this incarnation's",
                              {{"runs", ids.size()}, {"error", continued.status().ToString()}});
                    return;
                  }
                  std::unordered_set<int64_t> open(continued->begin(), continued->end());
                  for (int64_t id : ids) {
                    auto it = running_.find(id);
                    if (open.count(id) != 0 || it == running_.end() || it->second->draining)
                      continue;
                    // Closed by another node while the daemon re-executed: not ours to run.
                    Running& r = *it->second;
                    log::Warn("killing a handed-over run the store closed meanwhile",
                              {{"job_id", r.job_id}, {"run_id", id}, {"pid", r.pid}});
                    r.stop = StopCause::kLeaseLost;
                    r.kill_sent = true;
                    SignalRun(r, SIGKILL);
                  }
                });
}

void Supervisor::Shutdown(std::function<void()> done) {
  stopping_ = true;
  shutdown_done_ = std::move(done);
  kick_timer_.Close();
  not_before_timer_.Close();
  host_backoff_timer_.Close();
  for (auto& [run_id, l] : launching_) l.stop = StopCause::kShutdown;
  log::Info("stopping: terminating running jobs",
            {{"running", running_.size()}, {"grace_s", config_.supervisor.shutdown_grace_s}});
  for (auto& [run_id, r] : running_) {
    if (r->killing_orphan || r->draining) continue;
    r->stop = StopCause::kNone;
    RequestStop(*r, StopCause::kShutdown);
  }
  shutdown_timer_.Init(uv_timer_init, loop_, this);
  uv_timer_start(
      shutdown_timer_.get(),
      [](uv_timer_t* h) {
        if (h->data == nullptr) return;
        auto* self = static_cast<Supervisor*>(h->data);
        for (auto& [run_id, r] : self->running_) {
          if (!r->kill_sent) {
            r->kill_sent = true;
            log::Warn("grace over; killing job", {{"job_id", r->job_id}, {"pid", r->pid}});
            self->SignalRun(*r, SIGKILL);
          }
        }
      },
      static_cast<uint64_t>(config_.supervisor.shutdown_grace_s) * 1000, 0);
  MaybeFinishShutdown();
}

void Supervisor::MaybeFinishShutdown() {
  if (!stopping_ || !shutdown_done_ || !running_.empty() || claiming_ || !ending_.empty() ||
      !launching_.empty()) {
    return;
  }
  if (!pending_finishes_.empty() && !final_flush_) {
    // One last try for the ends the store refused; their results call back.
    final_flush_ = true;
    std::vector<RunEnd> pending;
    pending.swap(pending_finishes_);
    for (const auto& end : pending) Finish(end);
    return;
  }
  if (!pending_finishes_.empty()) {
    log::Error("stopping with run ends the store refused; recovery at the next start closes them",
               {{"runs", pending_finishes_.size()}});
  }
  SweepStrays();
  tick_timer_.Close();
  shutdown_timer_.Close();
  lease_timer_.Close();
  lease_term_timer_.Close();
  lease_kill_timer_.Close();
  sigchld_.Close();
  launcher_.Stop();
  if (shared_ && pending_finishes_.empty()) {
    // No run of ours is open: let the node_id go now rather than at the
    // lease's end, so that a restart does not wait for it.
    NodeClaim release{node_id_, incarnation_, 0, ORCH_VERSION};
    store_->Write([release](JobStore& store) { return store.RenewLease(release); },
                  [](Result<LeaseRenewal>) {});
  }
  auto done = std::move(shutdown_done_);
  shutdown_done_ = nullptr;
  done();
}

// Runs are stopped a fifth of the lease before it can end (SIGTERM), and
// killed when it ends: by the time any other node may judge the lease over
// and start the jobs again, the copies here are gone. Both moments are
// timers armed at each renewal, so neither waits for a tick.
int64_t Supervisor::LeaseMarginMs() const { return LeaseMs() / 5; }

void Supervisor::ArmLeaseTimers() {
  if (!shared_ || lease_deadline_ms_ == 0 || stopping_) return;
  int64_t left = lease_deadline_ms_ - clock_->BoottimeMs();
  auto arm = [this](UvHandle<uv_timer_t>& timer, int64_t in_ms, void (*fire)(uv_timer_t*)) {
    if (!timer) timer.Init(uv_timer_init, loop_, this);
    uv_timer_start(timer.get(), fire, static_cast<uint64_t>(std::max<int64_t>(in_ms, 0)), 0);
  };
  arm(lease_term_timer_, left - LeaseMarginMs(), [](uv_timer_t* h) {
    if (h->data != nullptr) static_cast<Supervisor*>(h->data)->CheckLease();
  });
  arm(lease_kill_timer_, left, [](uv_timer_t* h) {
    if (h->data != nullptr) static_cast<Supervisor*>(h->data)->KillLeaseLostRuns();
  });
}

void Supervisor::CheckLease() {
  if (!shared_ || lease_lost_ || lease_deadline_ms_ == 0) return;
  int64_t now = clock_->BoottimeMs();
  if (now < lease_deadline_ms_ - LeaseMarginMs()) return;
  int64_t since_ms = now - (lease_deadline_ms_ - LeaseMs());
  LoseLease("not renewed for " + std::to_string(since_ms) + " ms of its " +
            std::to_string(config_.cluster.lease_s) + " s lease");
}

void Supervisor::KillLeaseLostRuns() {
  for (auto& [run_id, r] : running_) {
    if (r->stop == StopCause::kLeaseLost && !r->kill_sent) {
      r->kill_sent = true;
      SignalRun(*r, SIGKILL);
    }
  }
}

void Supervisor::LoseLease(const std::string& why) {
  if (!lease_lost_) {
    ++metrics_->lease_lost_total;
    log::Error("lease lost: stopping every run of this node and claiming nothing until it is "
               "renewed",
               {{"node_id", node_id_}, {"why", why}, {"running", running_.size()}});
  }
  lease_lost_ = true;
  StopRunsForLease();
  // Found over already (the daemon was frozen past it): another node may run
  // these jobs by now, so the grace is short.
  if (lease_deadline_ms_ == 0 || clock_->BoottimeMs() >= lease_deadline_ms_) {
    lease_kill_timer_.Init(uv_timer_init, loop_, this);
    uv_timer_start(
        lease_kill_timer_.get(),
        [](uv_timer_t* h) {
          if (h->data != nullptr) static_cast<Supervisor*>(h->data)->KillLeaseLostRuns();
        },
        static_cast<uint64_t>(std::min(LeaseMarginMs(), config_.supervisor.kill_grace_s * 1000)),
        0);
  }
}

void Supervisor::StopRunsForLease() {
  for (auto& [run_id, l] : launching_) {
    if (l.stop == StopCause::kNone) l.stop = StopCause::kLeaseLost;
  }
  for (auto& [run_id, r] : running_) {
    if (r->killing_orphan) continue;
    RequestStop(*r, StopCause::kLeaseLost);
  }
}

void Supervisor::RenewLease() {
  if (renewing_) return;
  renewing_ = true;
  NodeClaim claim{node_id_, incarnation_, LeaseMs(), ORCH_VERSION};
  // The store's lease starts no earlier than this moment, so a deadline
  // counted from here ends before the one other nodes judge by.
  int64_t sent_ms = clock_->BoottimeMs();
  store_->Write([claim](JobStore& store) { return store.RenewLease(claim); },
                [this, sent_ms](Result<LeaseRenewal> renewed) {
                  renewing_ = false;
                  if (!renewed.ok()) {
                    NoteStore(renewed.status());
                    ++metrics_->lease_renewal_failures_total;
                    if (shared_ && renewed.status().code() == Code::kGuardMissed) {
                      // Another incarnation took this node_id: never ours again.
                      lease_deadline_ms_ = 0;
                      LoseLease(renewed.status().message());
                      return;
                    }
                    log::Warn("lease not renewed", {{"node_id", node_id_},
                                                     {"error", renewed.status().ToString()}});
                    CheckLease();
                    return;
                  }
                  ++metrics_->lease_renewals_total;
                  if (!shared_) return;
                  if (renewed->lapsed) {
                    // Others may have rescued our runs while it had lapsed:
                    // everything that runs here now is stopped, then we go on.
                    LoseLease("found lapsed when renewed");
                  }
                  lease_deadline_ms_ = sent_ms + LeaseMs();
                  if (lease_lost_) {
                    log::Warn("lease renewed; claiming again", {{"node_id", node_id_}});
                    lease_lost_ = false;
                    Kick();
                  }
                  // A lapsed lease's kill timer stays: those runs are past saving.
                  if (!renewed->lapsed) ArmLeaseTimers();
                });
}

void Supervisor::OnQueueChanged() {
  if (stopping_) return;
  RefreshShared();
  Kick();
}

void Supervisor::RefreshShared() {
  if (reading_shared_) return;
  reading_shared_ = true;
  struct Seen {
    Seen() = default;
    Seen(Status s) : error(std::move(s)) {}  // NOLINT: a failed read
    const Status& status() const { return error; }
    Status error;
    bool paused = false;
    std::vector<RunningBrief> running;
  };
  uint64_t sets_before = pause_sets_;
  store_->Read(
      [](JobStore& store) -> Seen {
        auto paused = store.IsPaused();
        if (!paused.ok()) return paused.status();
        auto running = store.ListRunningBrief();
        if (!running.ok()) return running.status();
        Seen seen;
        seen.paused = *paused;
        seen.running = std::move(running).value();
        return seen;
      },
      [this, sets_before](Seen seen) {
        reading_shared_ = false;
        if (!seen.error.ok() || stopping_) return;
        // A pause or resume answered here since the read wins.
        if (pause_sets_ == sets_before && paused_ != seen.paused) {
          log::Info(seen.paused ? "queue paused by another node" : "queue resumed by another node");
          paused_ = seen.paused;
          if (!paused_) Kick();
        }
        // A cancel asked of another node reaches the run here.
        for (const auto& brief : seen.running) {
          if (!brief.cancel_requested || !Mine(brief.node_id)) continue;
          if (auto it = running_.find(brief.run_id); it != running_.end()) {
            if (it->second->stop != StopCause::kNone) continue;
            log::Info("cancelling running job (asked through another node)",
                      {{"job_id", brief.job_id}, {"run_id", brief.run_id}});
            RequestStop(*it->second, StopCause::kCancel);
          } else if (auto l = launching_.find(brief.run_id); l != launching_.end()) {
            l->second.stop = StopCause::kCancel;
          }
        }
      });
}

void Supervisor::Rescue() {
  if (rescuing_) return;
  rescuing_ = true;
  RescueRequest req;
  req.self = node_id_;
  req.now_ms = clock_->NowMs();
  double base = config_.supervisor.backoff_base_s, max = config_.supervisor.backoff_max_s;
  int64_t now = req.now_ms;
  req.retry_not_before = [now, base, max](int64_t attempt) {
    return now + BackoffMs(attempt, base, max, UnitRandom());
  };
  store_->Write([req](JobStore& store) { return store.RescueExpiredRuns(req); },
                [this](Result<std::vector<RescuedRun>> rescued) {
                  rescuing_ = false;
                  if (!rescued.ok()) {
                    NoteStore(rescued.status());
                    return;
                  }
                  for (const auto& r : *rescued) {
                    ++metrics_->rescued_runs_total;
                    ++metrics_->lost_total["node_lost"];
                    log::Warn("rescued a run of a node whose lease ran out",
                              {{"job_id", r.job_id}, {"run_id", r.run_id}, {"node_id", r.node_id},
                               {"job_status", JobStatusName(r.job_status)}});
                  }
                  if (!rescued->empty()) {
                    Kick();
                    ArmNotBeforeTimer();
                  }
                });
}

}  // namespace orch
