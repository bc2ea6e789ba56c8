// The JobStore contract (SPEC §3, §4), run against every backend: SQLite on a
// fresh file and PostgreSQL on a fresh database.
#include <gtest/gtest.h>

#include "store/store_backends.h"

namespace orch::test {
namespace {

constexpr int64_t kNoByteCap = int64_t{1} << 40;

TEST_P(StoreContract, SubmitStoresEverySpecFieldAndDefaultsNotBeforeToNow) {
  JobSpec s = Spec({"/bin/sh", "-c", "echo \"x\""}, 7, "k1");
  s.name = "build";
  s.env = {{"A", "1"}, {"B", "two words"}};
  s.cwd = "/tmp";
  s.timeout_s = 30;
  s.max_attempts = 5;
  auto r = store()->Submit(s, 5000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->created);
  const Job& j = r->job;
  EXPECT_GT(j.id, 0);
  EXPECT_EQ("build", j.name);
  EXPECT_EQ(s.argv, j.argv);
  EXPECT_EQ(s.env, j.env);
  EXPECT_EQ("/tmp", j.cwd);
  EXPECT_EQ(JobStatus::kQueued, j.status);
  EXPECT_EQ(7, j.priority);
  EXPECT_EQ(std::optional<std::string>("k1"), j.serial_key);
  EXPECT_EQ(0, j.attempts);
  EXPECT_EQ(5, j.max_attempts);
  EXPECT_EQ(std::optional<int64_t>(30), j.timeout_s);
  EXPECT_EQ(5000, j.not_before);
  EXPECT_EQ(5000, j.created_at);
  EXPECT_FALSE(j.run_id || j.pid || j.started_at || j.finished_at);
  EXPECT_EQ(std::vector<std::string>{R"(["/bin/sh","-c","echo \"x\""])"},
            backend().Texts("SELECT argv FROM jobs"));
}

TEST_P(StoreContract, CgroupLimitsRoundTripAndARunKeepsItsCgroupAndAccounting) {
  JobSpec s = Spec();
  s.memory_max = int64_t{1} << 30;
  s.cpu_max = 1.5;
  s.pids_max = 64;
  s.stall_timeout_s = 120;
  int64_t id = MustSubmit(store(), s);
  auto job = store()->GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(std::optional<int64_t>(int64_t{1} << 30), job->memory_max);
  EXPECT_EQ(std::optional<double>(1.5), job->cpu_max);
  EXPECT_EQ(std::optional<int64_t>(64), job->pids_max);
  EXPECT_EQ(std::optional<int64_t>(120), job->stall_timeout_s);
  Claimed c = MustClaim(store(), Claim(2000));
  EXPECT_EQ(std::optional<double>(1.5), c.job.cpu_max);
  ProcessIdentity identity{"boot", 1, 4242, 99, 0};
  ASSERT_TRUE(store()->RecordSpawned(id, c.run.id, identity, "/l.out", "/cg/run-1").ok());
  RunEnd end = EndOf(c, RunOutcome::kStalled, 3000, 4000);
  end.cpu_usec = 1234;
  end.mem_peak_bytes = 5678;
  end.oom_kills = 0;
  auto finished = store()->FinishRun(end);
  ASSERT_TRUE(finished.ok()) << finished.status().ToString();
  EXPECT_EQ(JobStatus::kQueued, finished->job_status) << "stalled is retried like a timeout";
  auto run = store()->GetRun(c.run.id);
  ASSERT_TRUE(run.ok() && run->has_value());
  EXPECT_EQ("/cg/run-1", (*run)->cgroup);
  EXPECT_EQ("stalled", (*run)->outcome.value_or(""));
  EXPECT_EQ(std::optional<int64_t>(1234), (*run)->cpu_usec);
  EXPECT_EQ(std::optional<int64_t>(5678), (*run)->mem_peak_bytes);
  EXPECT_EQ(std::optional<int64_t>(0), (*run)->oom_kills);
}

TEST_P(StoreContract, ThroughputCountsRunsPerMinuteWithFirstAttemptWaits) {
  // Submitted in minute 1; claimed in minute 2 (waits 60 s and 90 s).
  int64_t a = MustSubmit(store(), Spec({"a"}), 60000);
  int64_t b = MustSubmit(store(), Spec({"b"}), 30000);
  Claimed ca = MustClaim(store(), Claim(120000));
  Claimed cb = MustClaim(store(), Claim(120000));
  ASSERT_EQ(a, ca.job.id);
  ASSERT_EQ(b, cb.job.id);
  // Both end in minute 3: one succeeds, one fails for good.
  ASSERT_TRUE(store()->FinishRun(EndOf(ca, RunOutcome::kSucceeded, 185000)).ok());
  ASSERT_TRUE(store()->FinishRun(EndOf(cb, RunOutcome::kFailed, 190000)).ok());
  auto rows = store()->Throughput(0, 300000);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(2u, rows->size());
  const MinuteStats& started = (*rows)[0];
  EXPECT_EQ(120000, started.minute);
  EXPECT_EQ(2, started.started);
  EXPECT_EQ(0, started.finished);
  EXPECT_DOUBLE_EQ(75000.0, started.wait_ms_avg.value_or(0));
  EXPECT_EQ(90000, started.wait_ms_max.value_or(0));
  const MinuteStats& ended = (*rows)[1];
  EXPECT_EQ(180000, ended.minute);
  EXPECT_EQ(0, ended.started);
  EXPECT_EQ(2, ended.finished);
  EXPECT_EQ(1, ended.succeeded);
  EXPECT_FALSE(ended.wait_ms_avg);
  // The window's ends: [from, to).
  EXPECT_EQ(1u, store()->Throughput(120000, 180000)->size());
  EXPECT_TRUE(store()->Throughput(240000, 300000)->empty());
}

TEST_P(StoreContract, EmptyArgvIsRejected) {
  auto r = store()->Submit(Spec({}), 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(Code::kInvalidArgument, r.status().code());
}

TEST_P(StoreContract, RepeatedIdempotencyKeyReturnsExistingJobUnchanged) {
  JobSpec s = Spec({"/bin/true"});
  s.idempotency_key = "once";
  auto first = store()->Submit(s, 1000);
  ASSERT_TRUE(first.ok());
  JobSpec other = Spec({"/bin/false"}, 9);
  other.idempotency_key = "once";
  auto second = store()->Submit(other, 2000);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_FALSE(second->created);
  EXPECT_EQ(first->job.id, second->job.id);
  EXPECT_EQ(std::vector<std::string>{"/bin/true"}, second->job.argv);
  EXPECT_EQ(1, store()->Counts()->queued);
}

TEST_P(StoreContract, ClaimTakesHighestPriorityThenLowestId) {
  int64_t low = MustSubmit(store(), Spec({"a"}, 0));
  int64_t high1 = MustSubmit(store(), Spec({"b"}, 5));
  int64_t high2 = MustSubmit(store(), Spec({"c"}, 5));
  EXPECT_EQ(high1, MustClaim(store(), Claim(2000)).job.id);
  EXPECT_EQ(high2, MustClaim(store(), Claim(2000)).job.id);
  EXPECT_EQ(low, MustClaim(store(), Claim(2000)).job.id);
  auto none = store()->ClaimNext(Claim(2000));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_P(StoreContract, ClaimOpensRunAndMarksJobRunning) {
  int64_t id = MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(3000));
  EXPECT_EQ(id, c.job.id);
  EXPECT_EQ(JobStatus::kRunning, c.job.status);
  EXPECT_EQ(1, c.job.attempts);
  EXPECT_EQ(std::optional<int64_t>(c.run.id), c.job.run_id);
  EXPECT_EQ(std::optional<int64_t>(3000), c.job.started_at);
  EXPECT_FALSE(c.job.pid.has_value()) << "pid stays NULL until RecordSpawned";
  EXPECT_EQ(id, c.run.job_id);
  EXPECT_EQ(1, c.run.attempt);
  EXPECT_EQ("test-incarnation", c.run.incarnation);
  EXPECT_EQ(3000, c.run.started_at);
  EXPECT_FALSE(c.run.ended_at.has_value());
  EXPECT_EQ(0, c.run.identity.pid);
}

TEST_P(StoreContract, ClaimWaitsForNotBefore) {
  JobSpec s = Spec();
  s.not_before = 10000;
  int64_t id = MustSubmit(store(), s, 1000);
  auto early = store()->ClaimNext(Claim(9999));
  ASSERT_TRUE(early.ok());
  EXPECT_FALSE(early->has_value());
  auto next = store()->NextNotBefore(5000);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(std::optional<int64_t>(10000), *next);
  EXPECT_EQ(id, MustClaim(store(), Claim(10000)).job.id);
  EXPECT_FALSE(store()->NextNotBefore(5000)->has_value());
}

TEST_P(StoreContract, ClaimSkipsRunningSerialKeyWithoutBlockingOthers) {
  int64_t a1 = MustSubmit(store(), Spec({"a1"}, 10, "A"));
  int64_t a2 = MustSubmit(store(), Spec({"a2"}, 10, "A"));
  int64_t b1 = MustSubmit(store(), Spec({"b1"}, 0, "B"));
  int64_t free1 = MustSubmit(store(), Spec({"free"}, 0));
  EXPECT_EQ(a1, MustClaim(store(), Claim(2000)).job.id);
  // a2 has the higher priority but its key is held: the walk moves on.
  EXPECT_EQ(b1, MustClaim(store(), Claim(2000)).job.id);
  EXPECT_EQ(free1, MustClaim(store(), Claim(2000)).job.id);
  auto none = store()->ClaimNext(Claim(2000));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value()) << "a2 must wait for a1";
  (void)a2;
}

TEST_P(StoreContract, SerialKeyIsFreedWhenItsJobEnds) {
  MustSubmit(store(), Spec({"a1"}, 0, "A"));
  int64_t a2 = MustSubmit(store(), Spec({"a2"}, 0, "A"));
  Claimed c = MustClaim(store(), Claim(2000));
  ASSERT_TRUE(store()->FinishRun(EndOf(c, RunOutcome::kSucceeded, 2500)).ok());
  EXPECT_EQ(a2, MustClaim(store(), Claim(3000)).job.id);
}

TEST_P(StoreContract, GateOffRunsSameKeyConcurrently) {
  MustSubmit(store(), Spec({"a1"}, 0, "A"));
  MustSubmit(store(), Spec({"a2"}, 0, "A"));
  MustClaim(store(), Claim(2000, 10, /*gate=*/false));
  MustClaim(store(), Claim(2000, 10, /*gate=*/false));
  EXPECT_EQ(2, store()->Counts()->running);
}

TEST_P(StoreContract, ClaimStopsAtMaxConcurrency) {
  for (int i = 0; i < 4; ++i) MustSubmit(store(), Spec());
  MustClaim(store(), Claim(2000, 2));
  MustClaim(store(), Claim(2000, 2));
  auto third = store()->ClaimNext(Claim(2000, 2));
  ASSERT_TRUE(third.ok());
  EXPECT_FALSE(third->has_value());
  EXPECT_EQ(2, store()->Counts()->running);
  EXPECT_TRUE(store()->ClaimNext(Claim(2000, 3))->has_value());
}

TEST_P(StoreContract, RecordSpawnedStampsIdentityOnRunAndPidOnJob) {
  MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(2000));
  ProcessIdentity id{"boot-1", 4026531836u, 4242, 987654321u, 77};
  ASSERT_TRUE(store()->RecordSpawned(c.job.id, c.run.id, id, "/logs/1.out").ok());
  auto run = store()->GetRun(c.run.id);
  ASSERT_TRUE(run.ok() && run->has_value());
  EXPECT_EQ(id, (*run)->identity);
  EXPECT_EQ("/logs/1.out", (*run)->log_path);
  EXPECT_EQ(std::optional<int64_t>(4242), store()->GetJob(c.job.id)->pid);
  auto running = store()->ListRunning();
  ASSERT_TRUE(running.ok());
  ASSERT_EQ(1u, running->size());
  EXPECT_EQ(c.job.id, (*running)[0].job.id);
  EXPECT_EQ(id, (*running)[0].run.identity);
}

TEST_P(StoreContract, ContinueRunsMovesOnlyOpenRunsToTheNewIncarnation) {
  MustSubmit(store(), Spec());
  MustSubmit(store(), Spec());
  ClaimRequest req = Claim(2000);
  req.max_concurrency = 2;
  Claimed open = MustClaim(store(), req);
  Claimed closed = MustClaim(store(), req);
  ASSERT_TRUE(store()->FinishRun(EndOf(closed, RunOutcome::kSucceeded, 2100)).ok());
  auto continued = store()->ContinueRuns("next-1", {open.run.id, closed.run.id, 999});
  ASSERT_TRUE(continued.ok()) << continued.status().ToString();
  EXPECT_EQ(std::vector<int64_t>{open.run.id}, *continued);
  EXPECT_EQ("next-1", (**store()->GetRun(open.run.id)).incarnation);
  EXPECT_EQ(req.incarnation, (**store()->GetRun(closed.run.id)).incarnation) << "history kept";
  EXPECT_TRUE(store()->ContinueRuns("next-2", {})->empty());
}

TEST_P(StoreContract, RecordSpawnedOnClosedRunIsGuardMissed) {
  MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(2000));
  ASSERT_TRUE(store()->FinishRun(EndOf(c, RunOutcome::kSucceeded, 2100)).ok());
  Status s = store()->RecordSpawned(c.job.id, c.run.id, ProcessIdentity{"b", 0, 5, 6, 0}, "x");
  EXPECT_EQ(Code::kGuardMissed, s.code()) << s.ToString();
  EXPECT_FALSE(store()->GetJob(c.job.id)->pid.has_value());
}

TEST_P(StoreContract, SuccessEndsJobWithFinishedAtAndClosedRun) {
  MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(2000));
  RunEnd e = EndOf(c, RunOutcome::kSucceeded, 2600);
  e.exit_code = 0;
  auto r = store()->FinishRun(e);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(JobStatus::kSucceeded, r->job_status);
  Job j = *store()->GetJob(c.job.id);
  EXPECT_EQ(JobStatus::kSucceeded, j.status);
  EXPECT_EQ(std::optional<int64_t>(2600), j.finished_at);
  EXPECT_EQ(std::optional<int64_t>(0), j.exit_code);
  EXPECT_EQ(std::optional<std::string>("succeeded"), j.outcome);
  auto run = **store()->GetRun(c.run.id);
  EXPECT_EQ(std::optional<int64_t>(2600), run.ended_at);
  EXPECT_EQ(std::optional<std::string>("succeeded"), run.outcome);
  EXPECT_EQ(std::optional<std::string>("test succeeded"), run.reason);
}

TEST_P(StoreContract, FailureAndSpawnFailureEndJobFailed) {
  for (RunOutcome o : {RunOutcome::kFailed, RunOutcome::kSpawnFailed}) {
    MustSubmit(store(), Spec());
    Claimed c = MustClaim(store(), Claim(2000));
    RunEnd e = EndOf(c, o, 2100);
    e.exit_code = 127;
    e.error = "exec failed";
    auto r = store()->FinishRun(e);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(JobStatus::kFailed, r->job_status);
    Job j = *store()->GetJob(c.job.id);
    EXPECT_EQ(std::optional<std::string>("exec failed"), j.error);
    EXPECT_EQ(std::optional<int64_t>(127), j.exit_code);
    EXPECT_TRUE(j.finished_at.has_value());
  }
}

TEST_P(StoreContract, TransientRequeuesWithBackoffUntilAttemptsAreSpentThenFails) {
  JobSpec s = Spec();
  s.max_attempts = 3;
  int64_t id = MustSubmit(store(), s);
  int64_t now = 2000;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    Claimed c = MustClaim(store(), Claim(now));
    EXPECT_EQ(attempt, c.job.attempts);
    EXPECT_EQ(attempt, c.run.attempt);
    RunOutcome o = attempt == 2 ? RunOutcome::kTimeout : RunOutcome::kTransient;
    auto r = store()->FinishRun(EndOf(c, o, now + 10, now + 5000));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    Job j = *store()->GetJob(id);
    if (attempt < 3) {
      EXPECT_EQ(JobStatus::kQueued, r->job_status);
      EXPECT_EQ(now + 5000, j.not_before);
      EXPECT_FALSE(j.run_id || j.pid || j.started_at || j.finished_at);
      EXPECT_FALSE(store()->ClaimNext(Claim(now + 4999))->has_value()) << "backoff respected";
      now += 5000;
    } else {
      EXPECT_EQ(JobStatus::kFailed, r->job_status);
      EXPECT_TRUE(j.finished_at.has_value());
    }
  }
  EXPECT_EQ(3u, store()->GetRuns(id)->size());
}

TEST_P(StoreContract, LostRunIsRetriedLikeTransient) {
  MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(2000));
  auto r = store()->FinishRun(EndOf(c, RunOutcome::kLost, 2100, 2200));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(JobStatus::kQueued, r->job_status);
}

TEST_P(StoreContract, InterruptedRequeuesNowWithoutSpendingAnAttempt) {
  JobSpec s = Spec();
  s.max_attempts = 1;
  int64_t id = MustSubmit(store(), s);
  for (int i = 0; i < 3; ++i) {
    Claimed c = MustClaim(store(), Claim(2000 + i));
    EXPECT_EQ(1, c.job.attempts);
    auto r = store()->FinishRun(EndOf(c, RunOutcome::kInterrupted, 2000 + i, 0));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(JobStatus::kQueued, r->job_status);
    Job j = *store()->GetJob(id);
    EXPECT_EQ(0, j.attempts);
    EXPECT_EQ(2000 + i, j.not_before) << "interrupted jobs are claimable at once";
  }
  // ... unless the run end asks for a later start (a host fault).
  Claimed c = MustClaim(store(), Claim(3000));
  ASSERT_TRUE(store()->FinishRun(EndOf(c, RunOutcome::kInterrupted, 3000, 7000)).ok());
  EXPECT_EQ(7000, store()->GetJob(id)->not_before);
  EXPECT_EQ(0, store()->GetJob(id)->attempts);
}

TEST_P(StoreContract, FinishForOldRunAfterNewerClaimIsGuardMissedAndChangesNothing) {
  int64_t id = MustSubmit(store(), Spec());
  Claimed old_claim = MustClaim(store(), Claim(2000));
  ASSERT_TRUE(store()->FinishRun(EndOf(old_claim, RunOutcome::kInterrupted, 2100)).ok());
  Claimed new_claim = MustClaim(store(), Claim(2200));
  ASSERT_NE(old_claim.run.id, new_claim.run.id);
  Job before = *store()->GetJob(id);
  auto runs_before = *store()->GetRuns(id);

  // A late completion of the first run arrives: fenced off by run_id.
  RunEnd late = EndOf(old_claim, RunOutcome::kSucceeded, 2300);
  auto r = store()->FinishRun(late);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(Code::kGuardMissed, r.status().code());

  Job after = *store()->GetJob(id);
  EXPECT_EQ(JobStatus::kRunning, after.status);
  EXPECT_EQ(before.run_id, after.run_id);
  EXPECT_EQ(before.updated_at, after.updated_at);
  auto runs_after = *store()->GetRuns(id);
  ASSERT_EQ(runs_before.size(), runs_after.size());
  for (size_t i = 0; i < runs_after.size(); ++i) {
    EXPECT_EQ(runs_before[i].ended_at, runs_after[i].ended_at);
    EXPECT_EQ(runs_before[i].outcome, runs_after[i].outcome);
  }
  // Finishing the same run twice is also fenced.
  ASSERT_TRUE(store()->FinishRun(EndOf(new_claim, RunOutcome::kSucceeded, 2400)).ok());
  EXPECT_EQ(Code::kGuardMissed,
            store()->FinishRun(EndOf(new_claim, RunOutcome::kFailed, 2500)).status().code());
  EXPECT_EQ(JobStatus::kSucceeded, store()->GetJob(id)->status);
}

TEST_P(StoreContract, CancelQueuedJobEndsItAtOnce) {
  int64_t id = MustSubmit(store(), Spec());
  auto r = store()->Cancel(id, 3000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(CancelEffect::kCancelled, r->effect);
  EXPECT_EQ(JobStatus::kCancelled, r->job.status);
  EXPECT_EQ(std::optional<int64_t>(3000), r->job.finished_at);
  EXPECT_FALSE(store()->ClaimNext(Claim(4000))->has_value());
}

TEST_P(StoreContract, CancelRunningJobAsksForSignalAndEndsCancelledWhateverTheOutcome) {
  int64_t id = MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(2000));
  auto r = store()->Cancel(id, 2100);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(CancelEffect::kRunningSignalNeeded, r->effect);
  EXPECT_TRUE(r->job.cancel_requested);
  EXPECT_EQ(JobStatus::kRunning, r->job.status);
  auto again = store()->Cancel(id, 2150);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(CancelEffect::kAlreadyRequested, again->effect);
  // The process died of the SIGTERM (a transient-looking outcome): still cancelled.
  auto f = store()->FinishRun(EndOf(c, RunOutcome::kTransient, 2200, 9999));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(JobStatus::kCancelled, f->job_status);
  EXPECT_TRUE(store()->GetJob(id)->finished_at.has_value());
}

TEST_P(StoreContract, CancelTerminalIsConflictAndUnknownIsNotFound) {
  int64_t id = MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(2000));
  ASSERT_TRUE(store()->FinishRun(EndOf(c, RunOutcome::kSucceeded, 2100)).ok());
  EXPECT_EQ(Code::kConflict, store()->Cancel(id, 2200).status().code());
  EXPECT_EQ(Code::kNotFound, store()->Cancel(12345, 2200).status().code());
  EXPECT_EQ(Code::kNotFound, store()->GetJob(12345).status().code());
  EXPECT_FALSE(store()->GetRun(12345)->has_value());
}

TEST_P(StoreContract, RetryRequeuesFailedAndCancelledWithFreshAttempts) {
  int64_t failed = MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(2000));
  RunEnd e = EndOf(c, RunOutcome::kFailed, 2100);
  e.exit_code = 3;
  e.error = "exit 3";
  ASSERT_TRUE(store()->FinishRun(e).ok());
  int64_t cancelled = MustSubmit(store(), Spec());
  ASSERT_TRUE(store()->Cancel(cancelled, 2200).ok());

  for (int64_t id : {failed, cancelled}) {
    auto r = store()->Retry(id, 3000);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(JobStatus::kQueued, r->status);
    EXPECT_EQ(0, r->attempts);
    EXPECT_EQ(3000, r->not_before);
    EXPECT_FALSE(r->finished_at || r->outcome || r->error || r->exit_code || r->signal);
    EXPECT_FALSE(r->run_id || r->pid || r->started_at);
    EXPECT_FALSE(r->cancel_requested);
  }
  EXPECT_EQ(failed, MustClaim(store(), Claim(3000)).job.id);
  EXPECT_EQ(Code::kConflict, store()->Retry(failed, 3100).status().code()) << "running";
  EXPECT_EQ(Code::kConflict, store()->Retry(cancelled, 3100).status().code()) << "queued";
}

TEST_P(StoreContract, PauseIsPersistedAcrossReopen) {
  EXPECT_FALSE(*store()->IsPaused());
  ASSERT_TRUE(store()->SetPaused(true).ok());
  Reopen();
  EXPECT_TRUE(*store()->IsPaused());
  ASSERT_TRUE(store()->SetPaused(false).ok());
  Reopen();
  EXPECT_FALSE(*store()->IsPaused());
}

// A page stops once its jobs' argv/env pass the byte budget, so huge jobs
// are never all loaded at once; it always holds one.
TEST_P(StoreContract, ListJobsStopsAtTheByteBudget) {
  JobSpec big = Spec();
  big.argv = {"echo", std::string(1000, 'a')};
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(MustSubmit(store(), big));
  auto page = store()->ListJobs(std::nullopt, 0, 100, 2500);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(3u, page->jobs.size()) << "stops at the row that passes 2500 bytes";
  EXPECT_EQ(std::optional<int64_t>(ids[2]), page->next_cursor);
  auto one = store()->ListJobs(std::nullopt, 0, 100, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(1u, one->jobs.size());
  auto rest = store()->ListJobs(std::nullopt, ids[2], 100, 2500);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(2u, rest->jobs.size());
  EXPECT_FALSE(rest->next_cursor.has_value());
}

TEST_P(StoreContract, ListJobsPagesByIdWithStatusFilter) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 7; ++i) ids.push_back(MustSubmit(store(), Spec()));
  ASSERT_TRUE(store()->Cancel(ids[1], 2000).ok());
  ASSERT_TRUE(store()->Cancel(ids[4], 2000).ok());

  std::vector<int64_t> seen;
  int64_t after = 0;
  int pages = 0;
  for (;;) {
    auto page = store()->ListJobs(std::nullopt, after, 3, kNoByteCap);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    for (const auto& j : page->jobs) seen.push_back(j.id);
    ++pages;
    if (!page->next_cursor) break;
    after = *page->next_cursor;
  }
  EXPECT_EQ(ids, seen);
  EXPECT_EQ(3, pages);  // 3 + 3 + 1

  auto cancelled = store()->ListJobs(JobStatus::kCancelled, 0, 10, kNoByteCap);
  ASSERT_TRUE(cancelled.ok());
  ASSERT_EQ(2u, cancelled->jobs.size());
  EXPECT_EQ(ids[1], cancelled->jobs[0].id);
  EXPECT_EQ(ids[4], cancelled->jobs[1].id);
  EXPECT_FALSE(cancelled->next_cursor.has_value());
  auto queued = store()->ListJobs(JobStatus::kQueued, ids[2], 2, kNoByteCap);
  ASSERT_TRUE(queued.ok());
  ASSERT_EQ(2u, queued->jobs.size());
  EXPECT_EQ(ids[3], queued->jobs[0].id);
  EXPECT_EQ(ids[5], queued->jobs[1].id);
  EXPECT_EQ(std::optional<int64_t>(ids[5]), queued->next_cursor);
  EXPECT_EQ(Code::kInvalidArgument,
            store()->ListJobs(std::nullopt, 0, 0, kNoByteCap).status().code());
}

// The status page's filters: a name anywhere in the name, an exact serial
// key, newest first with a cursor below the last id seen.
TEST_P(StoreContract, ListJobsFiltersByNameAndKeyNewestFirst) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 6; ++i) {
    JobSpec s = Spec();
    s.name = i % 2 == 0 ? "nightly-report-" + std::to_string(i) : "backup";
    if (i >= 3) s.serial_key = "db";
    ids.push_back(MustSubmit(store(), s));
  }
  ASSERT_TRUE(store()->Cancel(ids[4], 2000).ok());

  auto named = store()->ListJobs({.name_contains = "report"}, 10, kNoByteCap);
  ASSERT_TRUE(named.ok()) << named.status().ToString();
  ASSERT_EQ(3u, named->jobs.size());
  EXPECT_EQ(ids[0], named->jobs[0].id);
  EXPECT_EQ(ids[4], named->jobs[2].id);
  EXPECT_TRUE(store()->ListJobs({.name_contains = "REPORT"}, 10, kNoByteCap)->jobs.empty());

  auto newest = store()->ListJobs({.newest_first = true}, 4, kNoByteCap);
  ASSERT_TRUE(newest.ok());
  ASSERT_EQ(4u, newest->jobs.size());
  EXPECT_EQ(ids[5], newest->jobs[0].id);
  EXPECT_EQ(ids[2], newest->jobs[3].id);
  ASSERT_EQ(std::optional<int64_t>(ids[2]), newest->next_cursor);
  auto older = store()->ListJobs({.newest_first = true, .cursor = ids[2]}, 4, kNoByteCap);
  ASSERT_EQ(2u, older->jobs.size());
  EXPECT_EQ(ids[1], older->jobs[0].id);
  EXPECT_EQ(ids[0], older->jobs[1].id);
  EXPECT_FALSE(older->next_cursor.has_value());

  auto keyed = store()->ListJobs(
      {.status = JobStatus::kQueued, .serial_key = "db", .newest_first = true}, 10, kNoByteCap);
  ASSERT_EQ(2u, keyed->jobs.size());
  EXPECT_EQ(ids[5], keyed->jobs[0].id);
  EXPECT_EQ(ids[3], keyed->jobs[1].id);
  auto all = store()->ListJobs({.status = JobStatus::kCancelled, .name_contains = "nightly",
                                .serial_key = "db"},
                               10, kNoByteCap);
  ASSERT_EQ(1u, all->jobs.size());
  EXPECT_EQ(ids[4], all->jobs[0].id);
}

TEST_P(StoreContract, CountsMatchFullCountAfterMixedOperations) {
  JobSpec once = Spec();
  once.max_attempts = 1;
  for (int i = 0; i < 20; ++i) MustSubmit(store(), i % 3 == 0 ? once : Spec(), 1000 + i);
  std::vector<Claimed> running;
  for (int i = 0; i < 12; ++i) running.push_back(MustClaim(store(), Claim(5000 + i)));
  const RunOutcome outcomes[] = {RunOutcome::kSucceeded, RunOutcome::kFailed,
                                 RunOutcome::kTransient, RunOutcome::kInterrupted,
                                 RunOutcome::kCancelled, RunOutcome::kLost};
  for (size_t i = 0; i < 9; ++i) {
    ASSERT_TRUE(store()->FinishRun(EndOf(running[i], outcomes[i % 6], 6000)).ok());
  }
  ASSERT_TRUE(store()->Cancel(running[10].job.id, 6100).ok());
  ASSERT_TRUE(store()->Cancel(store()->ListJobs(JobStatus::kQueued, 0, 1, kNoByteCap)->jobs[0].id, 6100).ok());
  auto failed = store()->ListJobs(JobStatus::kFailed, 0, 1, kNoByteCap);
  ASSERT_FALSE(failed->jobs.empty());
  ASSERT_TRUE(store()->Retry(failed->jobs[0].id, 6200).ok());

  auto c = store()->Counts();
  ASSERT_TRUE(c.ok());
  auto count = [&](const char* s) {
    return backend().Int(std::string("SELECT COUNT(*) FROM jobs WHERE status='") + s + "'");
  };
  EXPECT_EQ(count("queued"), c->queued);
  EXPECT_EQ(count("running"), c->running);
  EXPECT_EQ(count("succeeded"), c->succeeded);
  EXPECT_EQ(count("failed"), c->failed);
  EXPECT_EQ(count("cancelled"), c->cancelled);
  EXPECT_EQ(20, c->queued + c->running + c->succeeded + c->failed + c->cancelled);
  EXPECT_EQ(backend().Int("SELECT MIN(created_at) FROM jobs WHERE status='queued'"),
            c->oldest_queued_created_at.value_or(-1));
}

TEST_P(StoreContract, CountsHaveNoOldestQueuedWhenQueueIsEmpty) {
  auto c = store()->Counts();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(0, c->queued);
  EXPECT_FALSE(c->oldest_queued_created_at.has_value());
}

TEST_P(StoreContract, ProbeWritableSucceedsOnHealthyStore) {
  EXPECT_TRUE(store()->ProbeWritable().ok());
  EXPECT_TRUE(store()->ProbeWritable().ok());
  auto ic = store()->IntegrityCheck();
  ASSERT_TRUE(ic.ok());
  EXPECT_EQ(std::vector<std::string>{"ok"}, *ic);
}

// Submit answers with the job it built, not a read-back: it must be the row
// exactly as a later read sees it.
TEST_P(StoreContract, SubmitAnswersWithTheJobAsStored) {
  JobSpec spec;
  spec.name = "nightly \"backup\"";
  spec.argv = {"/bin/sh", "-c", "echo \xc3\xa9 'q' \\n"};
  spec.env = {{"A", "1"}, {"B", "two words"}};
  spec.cwd = "/tmp";
  spec.priority = -3;
  spec.serial_key = "db";
  spec.timeout_s = 90;
  spec.max_attempts = 5;
  spec.idempotency_key = "key-1";
  for (int64_t not_before : {int64_t{0}, int64_t{1'900'000'000'000}}) {
    spec.not_before = not_before;
    spec.idempotency_key = "key-" + std::to_string(not_before);
    auto submitted = store()->Submit(spec, 1'800'000'000'123);
    ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
    ASSERT_TRUE(submitted->created);
    const Job& a = submitted->job;
    auto read = store()->GetJob(a.id);
    ASSERT_TRUE(read.ok());
    const Job& b = *read;
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.argv, b.argv);
    EXPECT_EQ(a.env, b.env);
    EXPECT_EQ(a.cwd, b.cwd);
    EXPECT_EQ(a.status, b.status);
    EXPECT_EQ(a.priority, b.priority);
    EXPECT_EQ(a.serial_key, b.serial_key);
    EXPECT_EQ(a.attempts, b.attempts);
    EXPECT_EQ(a.max_attempts, b.max_attempts);
    EXPECT_EQ(a.timeout_s, b.timeout_s);
    EXPECT_EQ(a.not_before, b.not_before);
    EXPECT_EQ(a.idempotency_key, b.idempotency_key);
    EXPECT_EQ(a.created_at, b.created_at);
    EXPECT_EQ(a.updated_at, b.updated_at);
    EXPECT_EQ(a.started_at, b.started_at);
    EXPECT_EQ(a.finished_at, b.finished_at);
    EXPECT_EQ(a.run_id, b.run_id);
    EXPECT_EQ(a.pid, b.pid);
    EXPECT_EQ(a.exit_code, b.exit_code);
    EXPECT_EQ(a.signal, b.signal);
    EXPECT_EQ(a.outcome, b.outcome);
    EXPECT_EQ(a.error, b.error);
    EXPECT_EQ(a.cancel_requested, b.cancel_requested);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreContract, ::testing::Values("sqlite", "postgres"),
                         BackendName);

}  // namespace
}  // namespace orch::test
