// The Supervisor on a real libuv loop with real children, an injected clock
// and a store that fails on demand: the behaviour that depends on time or on
// a failing store, without sleeping for it.
#include "supervisor/cgroup.h"
#include "supervisor/supervisor.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <memory>
#include <string>
#include <thread>

#include "base/log.h"
#include "supervisor/identity.h"
#include "support/test_util.h"

namespace orch {
namespace {

using test::ReadFile;
using test::TempDir;

class FakeClock : public Clock {
 public:
  int64_t NowMs() const override { return wall; }
  int64_t MonotonicMs() const override { return mono; }
  // Atomic: a store hook may move it from the writer thread.
  std::atomic<int64_t> wall{1'800'000'000'000};
  std::atomic<int64_t> mono{5'000'000};
};

// The real SQLite store, with calls that fail on demand (STYLE §11). The
// test thread arms faults while the store executor's writer thread calls it.
class FaultyStore : public JobStore {
 public:
  explicit FaultyStore(std::unique_ptr<JobStore> real) : real_(std::move(real)) {}
  // The next `n` calls of `method` fail with `code` and change nothing.
  void FailNext(const std::string& method, int n, Code code = Code::kBusy) {
    std::lock_guard lock(mu_);
    faults_[method] = {n, code};
  }
  // As FailNext, after `skip` calls of `method` that succeed.
  void FailAfter(const std::string& method, int skip, int n, Code code = Code::kBusy) {
    std::lock_guard lock(mu_);
    skips_[method] = skip;
    faults_[method] = {n, code};
  }
  int failed() const {
    std::lock_guard lock(mu_);
    return failed_;
  }

  Result<SubmitResult> Submit(const JobSpec& s, int64_t now) override {
    if (auto f = Fault("Submit")) return *f;
    return real_->Submit(s, now);
  }
  Result<std::optional<Claimed>> ClaimNext(const ClaimRequest& r) override {
    if (auto f = Fault("ClaimNext")) return *f;
    auto claimed = real_->ClaimNext(r);
    std::function<void()> hook;
    {
      std::lock_guard lock(mu_);
      hook.swap(after_claim_);
    }
    if (hook) hook();
    return claimed;
  }
  // Runs once, on the writer thread, right after the next claim.
  void AfterNextClaim(std::function<void()> hook) {
    std::lock_guard lock(mu_);
    after_claim_ = std::move(hook);
  }
  Status RecordSpawned(int64_t j, int64_t r, const ProcessIdentity& id, const std::string& p,
                       const std::string& cg = "") override {
    if (auto f = Fault("RecordSpawned")) return *f;
    return real_->RecordSpawned(j, r, id, p, cg);
  }
  Result<FinishResult> FinishRun(const RunEnd& e) override {
    if (auto f = Fault("FinishRun")) return *f;
    return real_->FinishRun(e);
  }
  Result<CancelResult> Cancel(int64_t j, int64_t now) override { return real_->Cancel(j, now); }
  Result<Job> Retry(int64_t j, int64_t now) override { return real_->Retry(j, now); }
  Status SetPaused(bool p) override { return real_->SetPaused(p); }
  Result<bool> IsPaused() override { return real_->IsPaused(); }
  Result<std::vector<ImpossibleQueued>> FindImpossibleQueued() override {
    return real_->FindImpossibleQueued();
  }
  Status RepairImpossibleQueued(int64_t j, std::optional<int64_t> r, RunOutcome o,
                                const std::string& why, int64_t now) override {
    return real_->RepairImpossibleQueued(j, r, o, why, now);
  }
  Status ReattachOpenRun(int64_t j, int64_t r, int64_t now) override {
    return real_->ReattachOpenRun(j, r, now);
  }
  Result<std::vector<RunningEntry>> ListRunning() override { return real_->ListRunning(); }
  Result<std::vector<RunningBrief>> ListRunningBrief() override {
    return real_->ListRunningBrief();
  }
  Result<JobPage> ListJobs(const JobQuery& q, int64_t limit, int64_t max_bytes) override {
    return real_->ListJobs(q, limit, max_bytes);
  }
  Result<Job> GetJob(int64_t j) override { return real_->GetJob(j); }
  Result<std::vector<Run>> GetRuns(int64_t j) override { return real_->GetRuns(j); }
  Result<std::optional<Run>> GetRun(int64_t r) override { return real_->GetRun(r); }
  Result<QueueCounts> Counts() override { return real_->Counts(); }
  Result<std::vector<MinuteStats>> Throughput(int64_t from, int64_t to) override {
    return real_->Throughput(from, to);
  }
  Result<std::optional<int64_t>> NextNotBefore(int64_t now) override {
    return real_->NextNotBefore(now);
  }
  Result<NodeInfo> AcquireNode(const NodeClaim& c) override { return real_->AcquireNode(c); }
  Result<std::vector<int64_t>> ContinueRuns(const std::string& incarnation,
                                            const std::vector<int64_t>& ids) override {
    return real_->ContinueRuns(incarnation, ids);
  }
  Result<LeaseRenewal> RenewLease(const NodeClaim& c) override { return real_->RenewLease(c); }
  Result<std::vector<NodeInfo>> ListNodes() override { return real_->ListNodes(); }
  Result<std::vector<Run>> ListRescuedRuns(const std::string& n, int64_t limit) override {
    return real_->ListRescuedRuns(n, limit);
  }
  Result<std::vector<RescuedRun>> RescueExpiredRuns(const RescueRequest& r) override {
    return real_->RescueExpiredRuns(r);
  }
  Status ProbeWritable() override { return real_->ProbeWritable(); }
  Status InTransaction(const std::function<void()>& ops) override {
    return real_->InTransaction(ops);
  }
  Status InSnapshot(const std::function<void()>& ops) override { return real_->InSnapshot(ops); }
  Result<std::vector<std::string>> IntegrityCheck() override { return real_->IntegrityCheck(); }
  Result<std::vector<Violation>> CheckInvariants(const InvariantLimits& l) override {
    return real_->CheckInvariants(l);
  }

 private:
  std::optional<Status> Fault(const std::string& method) {
    std::lock_guard lock(mu_);
    auto it = faults_.find(method);
    if (it == faults_.end() || it->second.first == 0) return std::nullopt;
    if (auto skip = skips_.find(method); skip != skips_.end() && skip->second > 0) {
      --skip->second;
      return std::nullopt;
    }
    --it->second.first;
    ++failed_;
    return Status(it->second.second, "injected fault in " + method);
  }

  std::unique_ptr<JobStore> real_;
  mutable std::mutex mu_;
  std::map<std::string, std::pair<int, Code>> faults_;
  std::map<std::string, int> skips_;
  int failed_ = 0;
  std::function<void()> after_claim_;
};

class SupervisorLoop : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(log::Setup("warn", "text").ok());
    ASSERT_EQ(0, uv_loop_init(&loop_));
    config_.store.path = dir_.File("q.db");
    config_.supervisor.log_dir = dir_.File("logs");
    config_.supervisor.backoff_base_s = 0.05;
    config_.supervisor.backoff_max_s = 0.1;
    config_.supervisor.kill_grace_s = 2;
    config_.supervisor.shutdown_grace_s = 2;
    config_.reaper.interval_ms = 10;
    // The supervisor's two connections (writer with faults, reader) and the
    // test's own, as three processes' worth of connections to one file.
    auto real = OpenJobStore(config_.store);
    ASSERT_TRUE(real.ok()) << real.status().ToString();
    store_ = std::make_unique<FaultyStore>(std::move(real).value());
    auto reader = OpenJobStore(config_.store);
    ASSERT_TRUE(reader.ok());
    reader_ = std::move(reader).value();
    auto db = OpenJobStore(config_.store);
    ASSERT_TRUE(db.ok());
    db_ = std::move(db).value();
  }

  void TearDown() override {
    StopAll();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(0, uv_loop_close(&loop_)) << "a handle leaked";
  }

  // Graceful stop of the supervisor, then the store executor drains.
  void StopAll() {
    if (sup_) {
      bool done = false;
      sup_->Shutdown([&] { done = true; });
      EXPECT_TRUE(RunUntil([&] { return done; }));
    }
    if (exec_) {
      bool closed = false;
      exec_->Close([&] { closed = true; });
      EXPECT_TRUE(RunUntil([&] { return closed; }));
    }
    sup_.reset();
    exec_.reset();
  }

  void StartSupervisor(std::shared_ptr<const Containment> containment = nullptr) {
    exec_ = std::make_unique<StoreExecutor>(&loop_, store_.get(), reader_.get());
    ASSERT_TRUE(exec_->Start().ok());
    sup_ = std::make_unique<Supervisor>(&loop_, exec_.get(), config_, &metrics_, &clock_);
    ASSERT_TRUE(sup_->Init().ok());
    if (containment) sup_->SetContainment(std::move(containment));
    sup_->Start();
    ASSERT_TRUE(RunUntil([&] { return sup_->recovered(); }));
  }

  int64_t Submit(std::vector<std::string> argv, int64_t max_attempts = 3,
                 std::optional<int64_t> timeout_s = std::nullopt) {
    JobSpec spec;
    spec.argv = std::move(argv);
    spec.max_attempts = max_attempts;
    spec.timeout_s = timeout_s;
    auto r = db_->Submit(spec, clock_.NowMs());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (sup_) sup_->Kick();
    return r.ok() ? r->job.id : -1;
  }

  // Runs the loop until `cond` holds; false after 20 s of real time.
  bool RunUntil(const std::function<bool()>& cond) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      uv_run(&loop_, UV_RUN_ONCE);
    }
    return true;
  }
  // Lets `n` reaper ticks pass.
  bool Ticks(int n) {
    uint64_t target = metrics_.reaper_ticks_total + n;
    return RunUntil([&] { return metrics_.reaper_ticks_total >= target; });
  }
  JobStatus StatusOf(int64_t id) { return db_->GetJob(id)->status; }
  // Claims the next job as an earlier daemon that died before it spawned
  // anything; the run's id, or -1.
  int64_t ClaimAsADeadDaemon() {
    ClaimRequest req;
    req.incarnation = "a-dead-daemon";
    req.now_ms = clock_.NowMs();
    auto claimed = db_->ClaimNext(req);
    EXPECT_TRUE(claimed.ok() && claimed->has_value());
    return claimed.ok() && claimed->has_value() ? (*claimed)->run.id : -1;
  }
  std::vector<orch::Run> RunsOf(int64_t id) { return *db_->GetRuns(id); }

  TempDir dir_;
  uv_loop_t loop_{};
  Config config_;
  FakeClock clock_;
  Metrics metrics_;
  std::unique_ptr<FaultyStore> store_;
  std::unique_ptr<JobStore> reader_, db_;
  std::unique_ptr<StoreExecutor> exec_;
  std::unique_ptr<Supervisor> sup_;
};

TEST_F(SupervisorLoop, AnUnrecordedSpawnNeverRunsTheJobAndSpendsNoAttempt) {
  StartSupervisor();
  store_->FailNext("RecordSpawned", 1);
  std::string marker = dir_.File("ran");
  int64_t id = Submit({"/bin/sh", "-c", "echo once >> " + marker}, 1);
  ASSERT_TRUE(RunUntil([&] { return StatusOf(id) == JobStatus::kSucceeded; }));
  auto runs = RunsOf(id);
  ASSERT_EQ(2u, runs.size());
  EXPECT_EQ("interrupted", runs[0].outcome.value_or(""));
  EXPECT_EQ("spawn_not_recorded", runs[0].reason.value_or(""));
  EXPECT_EQ("once\n", ReadFile(marker)) << "the dropped child must not have run the job";
}

// Holds launches on the launcher thread until Open() (or its end, so that a
// failed assertion cannot leave the launcher blocked).
class LaunchLatch {
 public:
  ~LaunchLatch() { Open(); }
  std::function<void()> Hook() {
    return [this] {
      std::unique_lock lock(mu_);
      ++waiting_;
      cv_.wait(lock, [&] { return open_; });
    };
  }
  int waiting() {
    std::lock_guard lock(mu_);
    return waiting_;
  }
  void Open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

TEST_F(SupervisorLoop, ACancelDuringTheLaunchEndsTheRunBeforeTheJobRuns) {
  StartSupervisor();
  LaunchLatch latch;
  sup_->SetLaunchHookForTest(latch.Hook());
  std::string marker = dir_.File("ran");
  int64_t id = Submit({"/bin/sh", "-c", "echo ran > " + marker});
  ASSERT_TRUE(RunUntil([&] { return latch.waiting() == 1; }));
  std::optional<Result<CancelResult>> cancelled;
  sup_->Cancel(id, [&](Result<CancelResult> r) { cancelled = std::move(r); });
  ASSERT_TRUE(RunUntil([&] { return cancelled.has_value(); }));
  ASSERT_TRUE(cancelled->ok()) << cancelled->status().ToString();
  latch.Open();
  sup_->SetLaunchHookForTest(nullptr);
  ASSERT_TRUE(RunUntil([&] { return StatusOf(id) == JobStatus::kCancelled; }));
  auto runs = RunsOf(id);
  ASSERT_EQ(1u, runs.size());
  EXPECT_EQ("cancelled", runs[0].outcome.value_or(""));
  EXPECT_NE(0, runs[0].identity.pid) << "its process was recorded before it was dropped";
  EXPECT_NE(0, access(marker.c_str(), F_OK)) << "the cancelled job ran";
}

TEST_F(SupervisorLoop, AStopWaitsForALaunchInFlightAndTheJobNeverRuns) {
  StartSupervisor();
  LaunchLatch latch;
  sup_->SetLaunchHookForTest(latch.Hook());
  std::string marker = dir_.File("ran");
  int64_t id = Submit({"/bin/sh", "-c", "echo ran > " + marker});
  ASSERT_TRUE(RunUntil([&] { return latch.waiting() == 1; }));
  bool stopped = false;
  sup_->Shutdown([&] { stopped = true; });
  for (int i = 0; i < 20; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_FALSE(stopped) << "stopped with a process being created";
  latch.Open();
  sup_->SetLaunchHookForTest(nullptr);
  ASSERT_TRUE(RunUntil([&] { return stopped; }));
  EXPECT_EQ(JobStatus::kQueued, StatusOf(id));
  auto runs = RunsOf(id);
  ASSERT_EQ(1u, runs.size());
  EXPECT_EQ("interrupted", runs[0].outcome.value_or(""));
  EXPECT_EQ("shutdown", runs[0].reason.value_or(""));
  EXPECT_NE(0, access(marker.c_str(), F_OK)) << "the job ran during the stop";
  // Stopped already: only the store is left to close (its last results may
  // still call the supervisor), as the daemon does.
  bool closed = false;
  exec_->Close([&] { closed = true; });
  ASSERT_TRUE(RunUntil([&] { return closed; }));
  sup_.reset();
  exec_.reset();
}

TEST_F(SupervisorLoop, ARunEndTheStoreRefusedIsRecordedOnALaterTick) {
  StartSupervisor();
  store_->FailNext("FinishRun", 3);
  int64_t id = Submit({"/bin/true"});
  ASSERT_TRUE(RunUntil([&] { return StatusOf(id) == JobStatus::kSucceeded; }));
  EXPECT_EQ(3, store_->failed());
  EXPECT_GE(metrics_.store_errors_total, 3u);
  EXPECT_EQ(0u, sup_->running_count());
}

// A not_before that passes between a claim that found nothing and the read
// that arms the wake-up timer must still wake a claim (the job would wait
// for an unrelated event otherwise).
TEST_F(SupervisorLoop, ANotBeforePassingJustAfterAnEmptyClaimStillWakesAClaim) {
  StartSupervisor();
  ASSERT_TRUE(Ticks(3));  // the start-up claim pass is over: the next one is ours
  JobSpec spec;
  spec.argv = {"/bin/true"};
  spec.not_before = clock_.NowMs() + 1000;
  auto submitted = db_->Submit(spec, clock_.NowMs());
  ASSERT_TRUE(submitted.ok());
  store_->AfterNextClaim([this] { clock_.wall += 2000; });
  sup_->Kick();
  EXPECT_TRUE(RunUntil([&] { return StatusOf(submitted->job.id) == JobStatus::kSucceeded; }));
}

TEST_F(SupervisorLoop, WallClockStepsNeitherTimeOutNorSpareAJob) {
  StartSupervisor();
  std::string pidfile = dir_.File("pid");
  // The leader ignores SIGTERM: only the SIGKILL escalation ends it.
  int64_t id = Submit({"/bin/sh", "-c",
                       "trap '' TERM; echo $$ > " + pidfile + "; while :; do sleep 0.05; done"},
                      1, 5);
  ASSERT_TRUE(RunUntil([&] { return !ReadFile(pidfile).empty(); }));

  clock_.wall += 3'600'000;  // NTP steps an hour forward
  ASSERT_TRUE(Ticks(5));
  EXPECT_EQ(JobStatus::kRunning, StatusOf(id)) << "a wall-clock step is not elapsed time";
  EXPECT_EQ(0u, metrics_.timeouts_total);

  clock_.mono += 5'000;  // timeout_s really passes: SIGTERM, ignored
  ASSERT_TRUE(Ticks(5));
  EXPECT_EQ(JobStatus::kRunning, StatusOf(id));

  clock_.wall -= 7'200'000;  // and two hours back: must not postpone the SIGKILL
  clock_.mono += 2'000;      // kill_grace_s
  ASSERT_TRUE(RunUntil([&] { return StatusOf(id) == JobStatus::kFailed; }));
  auto runs = RunsOf(id);
  ASSERT_EQ(1u, runs.size());
  EXPECT_EQ("timeout", runs[0].outcome.value_or(""));
  EXPECT_EQ(std::optional<int64_t>(SIGKILL), runs[0].signal);
}

// log_dir on a file system that turned read-only: the run's log files cannot
// be created (EROFS), the host's fault.
TEST_F(SupervisorLoop, AHostFaultKeepsTheAttemptAndClaimingWaitsForTheBackoff) {
  test::Tmpfs logs(dir_.File("logs"), "size=1m");
  if (!logs.ok()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  StartSupervisor();
  ASSERT_TRUE(logs.Remount("size=1m", MS_RDONLY));
  int64_t id = Submit({"/bin/true"}, 1);
  ASSERT_TRUE(RunUntil([&] { return sup_->host_fault().consecutive == 1; }));
  ASSERT_TRUE(Ticks(20));
  EXPECT_EQ(1, sup_->host_fault().consecutive) << "claimed again before the backoff passed";
  EXPECT_GT(sup_->host_fault().backoff_left_ms, 0);
  EXPECT_NE(std::string::npos, sup_->host_fault().last_error.find("Read-only file system"))
      << sup_->host_fault().last_error;
  Job job = *db_->GetJob(id);
  EXPECT_EQ(JobStatus::kQueued, job.status);
  EXPECT_GT(job.not_before, clock_.NowMs()) << "the faulting job steps back for the others";
  auto runs = RunsOf(id);
  ASSERT_EQ(1u, runs.size());
  EXPECT_EQ("interrupted", runs[0].outcome.value_or(""));
  EXPECT_EQ("host_fault", runs[0].reason.value_or(""));

  clock_.mono += 1'000;
  clock_.wall += 1'000;
  ASSERT_TRUE(RunUntil([&] { return sup_->host_fault().consecutive == 2; }));
  EXPECT_EQ(2u, metrics_.host_faults_total);

  ASSERT_TRUE(logs.Remount("size=1m"));
  clock_.mono += 1'000;
  clock_.wall += 1'000;
  ASSERT_TRUE(RunUntil([&] { return StatusOf(id) == JobStatus::kSucceeded; }));
  EXPECT_EQ(1, db_->GetJob(id)->attempts) << "host faults spent no attempt";
  EXPECT_EQ(3u, RunsOf(id).size());
  EXPECT_EQ(0u, metrics_.spawn_failures_total);
}

TEST_F(SupervisorLoop, AStopDuringAHostFaultBackoffDoesNotWaitForIt) {
  config_.supervisor.backoff_base_s = 300;
  config_.supervisor.backoff_max_s = 300;
  test::Tmpfs logs(dir_.File("logs"), "size=1m");
  if (!logs.ok()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  StartSupervisor();
  ASSERT_TRUE(logs.Remount("size=1m", MS_RDONLY));
  Submit({"/bin/true"});
  ASSERT_TRUE(RunUntil([&] { return sup_->host_fault().consecutive == 1; }));
  StopAll();
  auto start = std::chrono::steady_clock::now();
  uv_run(&loop_, UV_RUN_DEFAULT);  // returns once no handle is left
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10))
      << "a timer of the backoff kept the loop alive";
}

TEST_F(SupervisorLoop, ARunThatNeverSpawnedIsRequeuedWithoutSpendingTheAttempt) {
  int64_t id = Submit({"/bin/true"}, 1);
  ASSERT_GT(ClaimAsADeadDaemon(), 0);
  StartSupervisor();
  ASSERT_TRUE(RunUntil([&] { return StatusOf(id) == JobStatus::kSucceeded; }));
  auto runs = RunsOf(id);
  ASSERT_EQ(2u, runs.size());
  EXPECT_EQ("interrupted", runs[0].outcome.value_or(""));
  EXPECT_EQ("never_spawned", runs[0].reason.value_or(""));
}

// A leftover of a crash in cgroup mode: a run whose process was made (in its
// cgroup) but never recorded, and the cgroup of a run the store does not
// hold open. Recovery kills both trees and removes the cgroups; the first
// run is not "never spawned", and costs no attempt.
TEST_F(SupervisorLoop, RecoveryKillsAndRemovesLeftoverRunCgroups) {
  test::TestCgroupTree cgroups(dir_);
  const std::string& root = cgroups.root;
  if (root.empty()) GTEST_SKIP() << "no cgroup2 filesystem mounted here";
  auto tree = CgroupTree::SetUp({.mode = "auto", .root = root});
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  int64_t id = Submit({"/bin/true"}, 1);
  int64_t run_id = ClaimAsADeadDaemon();
  ASSERT_GT(run_id, 0);
  // A sleeper in run-<run_id> (the unrecorded process) and one in run-999.
  std::vector<Pidfd> sleepers;
  for (int64_t cg_id : {run_id, int64_t{999}}) {
    auto cg = RunCgroup::Create(*tree, cg_id, {});
    ASSERT_TRUE(cg.ok()) << cg.status().ToString();
    pid_t pid = test::ForkSleeperInCgroup(cg->path());
    ASSERT_GT(pid, 0);
    auto fd = Pidfd::Open(pid);
    ASSERT_TRUE(fd.ok());
    sleepers.push_back(std::move(fd).value());
    ASSERT_TRUE(test::WaitFor([&] {
      auto p = CgroupPopulated(cg->fd());
      return p.ok() && *p;
    }));
  }
  auto containment = std::make_shared<const Containment>(std::move(tree).value());
  StartSupervisor(containment);
  for (const Pidfd& s : sleepers) EXPECT_TRUE(RunUntil([&] { return s.Exited(); }));
  ASSERT_TRUE(RunUntil([&] { return StatusOf(id) == JobStatus::kSucceeded; }));
  auto runs = RunsOf(id);
  ASSERT_EQ(2u, runs.size());
  EXPECT_EQ("interrupted", runs[0].outcome.value_or(""));
  EXPECT_EQ("spawn_not_recorded", runs[0].reason.value_or(""));
  EXPECT_EQ(root + "/run-" + std::to_string(runs[1].id), runs[1].cgroup);
  EXPECT_TRUE(RunUntil([&] {
    auto left = containment->tree().ListRuns();
    return left.ok() && left->empty();
  })) << "every run cgroup removed";
}

// A limit this daemon cannot apply (the job came from a node in another
// mode, or before a restart in mode off) fails the run, naming the field
// and the mode: never a run without its limit, never a retry loop.
TEST_F(SupervisorLoop, ALimitTheModeCannotApplyFailsTheRunAtLaunch) {
  StartSupervisor();  // process groups: mode none
  JobSpec spec;
  spec.argv = {"/bin/true"};
  spec.memory_max = int64_t{1} << 30;
  auto submitted = db_->Submit(spec, clock_.NowMs());
  ASSERT_TRUE(submitted.ok());
  sup_->Kick();
  int64_t id = submitted->job.id;
  ASSERT_TRUE(RunUntil([&] { return StatusOf(id) == JobStatus::kFailed; }));
  auto runs = RunsOf(id);
  ASSERT_EQ(1u, runs.size());
  EXPECT_EQ("spawn_failed", runs[0].outcome.value_or(""));
  EXPECT_NE(std::string::npos, runs[0].reason.value_or("").find("memory_max")) << *runs[0].reason;
  EXPECT_NE(std::string::npos, runs[0].reason.value_or("").find("mode is none")) << *runs[0].reason;
  EXPECT_EQ(0, sup_->host_fault().consecutive) << "the job's fault, not the host's";
}

// An adopted orphan whose exit status nobody can read (its parent never
// reaps it, so the kernel has no exit info for us) ends lost after a wait.
TEST_F(SupervisorLoop, AnAdoptedOrphanWhoseStatusCannotBeReadEndsLost) {
  config_.supervisor.orphan_policy = "adopt";
  int64_t id = Submit({"/bin/true"}, 2);
  int64_t run_id = ClaimAsADeadDaemon();
  ASSERT_GT(run_id, 0);

  // The orphan is a grandchild: its parent (a child of ours) never reaps it.
  struct KillOnExit {
    pid_t pid = -1;
    pid_t orphan = -1;
    ~KillOnExit() {
      if (orphan > 0) kill(orphan, SIGKILL);  // still this boot: its pid is not reused yet
      if (pid <= 0) return;
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);  // the supervisor's SIGCHLD sweep may have reaped it
    }
  } parent;
  int pipe_fds[2];
  ASSERT_EQ(0, pipe(pipe_fds));
  parent.pid = fork();
  if (parent.pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    pid_t orphan = fork();
    if (orphan == 0) {
      execl("/bin/sleep", "sleep", "300", static_cast<char*>(nullptr));
      _exit(127);
    }
    (void)!write(pipe_fds[1], &orphan, sizeof orphan);
    for (;;) pause();
  }
  pid_t orphan = 0;
  ASSERT_EQ(static_cast<ssize_t>(sizeof orphan), read(pipe_fds[0], &orphan, sizeof orphan));
  parent.orphan = orphan;
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  auto pidfd = Pidfd::Open(orphan);
  ASSERT_TRUE(pidfd.ok());
  auto identity = IdentityOf(orphan, pidfd->get());
  ASSERT_TRUE(identity.ok());
  ASSERT_TRUE(db_->RecordSpawned(id, run_id, *identity, "").ok());

  StartSupervisor();
  EXPECT_EQ(1u, sup_->running_count()) << "adopted during recovery";
  ASSERT_EQ(0, pidfd->SendSignal(SIGKILL).ok() ? 0 : 1);
  ASSERT_TRUE(RunUntil([&] { return pidfd->Exited(); }));
  bool kernel_tells = ExitInfoFromPidfd(pidfd->get()).has_value();
  ASSERT_TRUE(Ticks(5));
  if (!kernel_tells) {
    EXPECT_EQ(JobStatus::kRunning, StatusOf(id)) << "the status may still appear: wait";
    clock_.mono += 6'000;
    ASSERT_TRUE(RunUntil([&] { return StatusOf(id) == JobStatus::kQueued; }));
    auto runs = RunsOf(id);
    ASSERT_EQ(1u, runs.size());
    EXPECT_EQ("lost", runs[0].outcome.value_or(""));
    EXPECT_EQ("adopted_exit_unknown", runs[0].reason.value_or(""));
    EXPECT_EQ(0u, sup_->running_count());
  }
  if (kernel_tells) GTEST_SKIP() << "this kernel reports the exit of an unreaped zombie";
}

// a claim batch whose second claim fails on the store keeps the
// first (its own savepoint) but must still retry the rest: free slots and
// claimable jobs must not wait for an unrelated event.
TEST_F(SupervisorLoop, AClaimThatFailsAfterOthersOfItsBatchIsRetried) {
  config_.supervisor.max_concurrency = 2;
  std::string go = dir_.File("go");
  std::string wait = "while [ ! -e " + go + " ]; do sleep 0.02; done";
  int64_t a = Submit({"/bin/sh", "-c", wait});
  int64_t b = Submit({"/bin/sh", "-c", wait});
  // The pass claims a, then the store refuses the claim of b (disk full).
  store_->FailAfter("ClaimNext", 1, 1, Code::kFull);
  StartSupervisor();
  ASSERT_TRUE(RunUntil([&] { return StatusOf(a) == JobStatus::kRunning; }));
  ASSERT_EQ(1, store_->failed());
  ASSERT_TRUE(Ticks(100));
  EXPECT_EQ(JobStatus::kRunning, StatusOf(b))
      << "a free slot and a claimable job, but the failed claim was never retried";
  EXPECT_GE(metrics_.store_errors_total, 1u) << "the failed claim was not even counted";
  std::ofstream(go).put('\n');
}

// one host fault (log_dir read-only) hit by a batch of claims
// counts once; before batching, claiming stopped at the first fault. Here
// every claimed job of the batch is launched and each fault doubles the
// backoff: one incident with max_concurrency 4 backs off 2^3 times longer.
TEST_F(SupervisorLoop, OneHostFaultInAClaimBatchCountsOnce) {
  config_.supervisor.max_concurrency = 4;
  test::Tmpfs logs(dir_.File("logs"), "size=1m");
  if (!logs.ok()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  StartSupervisor();
  bool paused = false;
  sup_->SetPaused(true, [&](Status s) { paused = s.ok(); });
  ASSERT_TRUE(RunUntil([&] { return paused; }));
  for (int i = 0; i < 4; ++i) Submit({"/bin/true"}, 1);
  ASSERT_TRUE(logs.Remount("size=1m", MS_RDONLY));
  bool resumed = false;
  sup_->SetPaused(false, [&](Status s) { resumed = s.ok(); });
  ASSERT_TRUE(RunUntil([&] { return resumed && sup_->host_fault().consecutive >= 1; }));
  ASSERT_TRUE(Ticks(20));
  EXPECT_EQ(1, sup_->host_fault().consecutive) << "one incident counted as many";
  EXPECT_EQ(1u, metrics_.host_faults_total);
  EXPECT_LE(sup_->host_fault().backoff_left_ms, 1200) << "backoff escalated within one pass";
  ASSERT_TRUE(logs.Remount("size=1m"));
}

}  // namespace
}  // namespace orch
