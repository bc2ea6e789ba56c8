// SPEC §3 invariants: each one attacked once through the interface and once
// through raw SQL on the same store, on every backend.
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "store/store_backends.h"

namespace orch::test {
namespace {

class InvariantI1 : public StoreContract {};
class InvariantI2 : public StoreContract {};
class InvariantI3 : public StoreContract {};
class InvariantI4 : public StoreContract {};
class InvariantI5 : public StoreContract {};
class InvariantI6 : public StoreContract {};

bool HasViolation(const std::vector<Violation>& vs, const std::string& inv, int64_t job_id) {
  for (const auto& v : vs) {
    if (v.invariant == inv && v.job_id == job_id) return true;
  }
  return false;
}

// A raw write the schema must refuse, naming the rule (case aside: SQLite
// says "UNIQUE", PostgreSQL "unique").
void ExpectRefused(std::string error, const std::string& rule) {
  ASSERT_NE("", error) << "accepted, but " << rule << " should refuse it";
  for (auto& ch : error) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  EXPECT_NE(std::string::npos, error.find(rule)) << error;
}

std::vector<Violation> MustCheck(JobStore* store, InvariantLimits limits = {}) {
  auto r = store->CheckInvariants(limits);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::vector<Violation>{};
}

// ---- I1: queued ⇒ run_id, pid, started_at NULL ----

TEST_P(InvariantI1, EveryInterfacePathBackToQueuedClearsOwnership) {
  JobSpec spec = Spec();
  spec.max_attempts = 5;
  int64_t id = MustSubmit(store(), spec);
  auto expect_unowned = [&](const char* after) {
    Job j = *store()->GetJob(id);
    EXPECT_EQ(JobStatus::kQueued, j.status) << after;
    EXPECT_FALSE(j.run_id.has_value()) << after;
    EXPECT_FALSE(j.pid.has_value()) << after;
    EXPECT_FALSE(j.started_at.has_value()) << after;
  };
  for (RunOutcome o : {RunOutcome::kTransient, RunOutcome::kTimeout, RunOutcome::kLost,
                       RunOutcome::kInterrupted}) {
    Claimed c = MustClaim(store(), Claim(2000));
    ASSERT_TRUE(store()->RecordSpawned(id, c.run.id, ProcessIdentity{"b", 1, 999, 5, 0}, "l").ok());
    ASSERT_TRUE(store()->FinishRun(EndOf(c, o, 2100, 2000)).ok());
    expect_unowned(RunOutcomeName(o));
  }
  // Spend the attempts, then retry.
  for (;;) {
    Claimed c = MustClaim(store(), Claim(3000));
    auto r = store()->FinishRun(EndOf(c, RunOutcome::kTransient, 3100, 3000));
    ASSERT_TRUE(r.ok());
    if (r->job_status == JobStatus::kFailed) break;
  }
  ASSERT_TRUE(store()->Retry(id, 4000).ok());
  expect_unowned("retry");
  EXPECT_TRUE(MustCheck(store()).empty());
}

TEST_P(InvariantI1, RawUpdateToQueuedCarryingPidIsRejectedByCheck) {
  int64_t id = MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(2000));
  ASSERT_TRUE(store()->RecordSpawned(id, c.run.id, ProcessIdentity{"b", 1, 4242, 5, 0}, "l").ok());
  ExpectRefused(backend().Exec("UPDATE jobs SET status='queued', pid=4242 WHERE id=" +
                               std::to_string(id)),
                "i1_queued_owns_nothing");
  // Only flipping the status (leaving run_id/pid behind) is rejected too.
  EXPECT_NE("", backend().Exec("UPDATE jobs SET status='queued' WHERE id=" + std::to_string(id)));
  int64_t other = MustSubmit(store(), Spec());
  EXPECT_NE("", backend().Exec("UPDATE jobs SET run_id=7 WHERE id=" + std::to_string(other)));
  EXPECT_NE("", backend().Exec("INSERT INTO jobs(argv, status, created_at, updated_at, "
                               "started_at) VALUES ('[]', 'queued', 1, 1, 1)"));
  EXPECT_EQ(JobStatus::kRunning, store()->GetJob(id)->status);
}

// ---- I2: running ⇒ run_id NOT NULL and that run is open ----

TEST_P(InvariantI2, InterfaceNeverLeavesRunningJobWithoutOpenRun) {
  int64_t id = MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(2000));
  // A finish for a run that is not the job's current one must not close
  // the current run.
  RunEnd wrong = EndOf(c, RunOutcome::kSucceeded, 2100);
  wrong.run_id = c.run.id + 100;
  EXPECT_EQ(Code::kGuardMissed, store()->FinishRun(wrong).status().code());
  EXPECT_EQ(Code::kGuardMissed,
            store()->RecordSpawned(id, c.run.id + 100, ProcessIdentity{}, "x").code());
  auto running = store()->ListRunning();
  ASSERT_TRUE(running.ok());
  ASSERT_EQ(1u, running->size());
  EXPECT_EQ(c.run.id, (*running)[0].run.id);
  EXPECT_FALSE((*running)[0].run.ended_at.has_value());
  EXPECT_TRUE(MustCheck(store()).empty());
}

TEST_P(InvariantI2, RawRunningWithoutRunIsRejectedAndClosedRunIsReported) {
  int64_t id = MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(2000));
  ExpectRefused(backend().Exec("UPDATE jobs SET run_id=NULL WHERE id=" + std::to_string(id)),
                "i2_running_has_run");
  // Closing the run behind the job's back cannot be a row CHECK; it is reported.
  ASSERT_EQ("", backend().Exec("UPDATE runs SET ended_at=5 WHERE id=" + std::to_string(c.run.id)));
  auto vs = MustCheck(store());
  EXPECT_TRUE(HasViolation(vs, "I2", id));
}

// ---- I3: at most one open run per job ----

// A leftover open run is never closed by a claim that has not looked at its
// process: the claim passes the job over (others still run) and the I1
// sweep closes the run after checking it, here one that never spawned.
TEST_P(InvariantI3, LeftoverOpenRunIsLeftToTheSweepNotClosedByAClaim) {
  int64_t id = MustSubmit(store(), Spec());
  int64_t other = MustSubmit(store(), Spec());
  {
    // A leftover open run for a queued job, as a crashed older version might leave.
    ASSERT_EQ("", backend().Exec("INSERT INTO runs(job_id, attempt, incarnation, node_id, "
                                 "started_at) VALUES (" + std::to_string(id) + ", 1, 'old', '', 1)"));
  }
  Claimed c = MustClaim(store(), Claim(2000));
  EXPECT_EQ(other, c.job.id) << "the job with an open run must wait for the sweep";
  EXPECT_FALSE((*store()->GetRuns(id))[0].ended_at.has_value());

  bool checked = false;
  auto report = SanitizeImpossibleQueued(*store(), 3000, [&](const orch::Run&) {
    checked = true;
    return Result<bool>(true);
  });
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_FALSE(checked) << "a run without a pid has no process to check";
  EXPECT_EQ(std::vector<int64_t>{id}, report->repaired);
  auto runs = *store()->GetRuns(id);
  ASSERT_EQ(1u, runs.size());
  EXPECT_EQ(std::optional<std::string>("interrupted"), runs[0].outcome);
  EXPECT_EQ(std::optional<std::string>("never_spawned"), runs[0].reason);

  Claimed again = MustClaim(store(), Claim(4000));
  EXPECT_EQ(id, again.job.id);
  EXPECT_EQ(1, again.job.attempts) << "a run that never spawned spent no attempt";
  EXPECT_TRUE(MustCheck(store()).empty());
}

TEST_P(InvariantI3, RawSecondOpenRunIsRejectedByUniqueIndex) {
  int64_t id = MustSubmit(store(), Spec());
  MustClaim(store(), Claim(2000));
  ExpectRefused(backend().Exec("INSERT INTO runs(job_id, attempt, incarnation, node_id, "
                               "started_at) VALUES (" + std::to_string(id) + ", 2, 'x', '', 3)"),
                "unique");
  // A closed run next to the open one is fine (history).
  EXPECT_EQ("", backend().Exec("INSERT INTO runs(job_id, attempt, incarnation, node_id, "
                               "started_at, ended_at) VALUES (" + std::to_string(id) +
                               ", 2, 'x', '', 3, 4)"));
}

// ---- I4: terminal ⇒ finished_at NOT NULL, no open run ----

TEST_P(InvariantI4, EveryTerminalTransitionSetsFinishedAtAndClosesTheRun) {
  for (RunOutcome o : {RunOutcome::kSucceeded, RunOutcome::kFailed, RunOutcome::kCancelled,
                       RunOutcome::kSpawnFailed}) {
    MustSubmit(store(), Spec());
    Claimed c = MustClaim(store(), Claim(2000));
    ASSERT_TRUE(store()->FinishRun(EndOf(c, o, 2100)).ok());
    Job j = *store()->GetJob(c.job.id);
    EXPECT_TRUE(IsTerminal(j.status));
    EXPECT_EQ(std::optional<int64_t>(2100), j.finished_at);
    EXPECT_TRUE((*store()->GetRun(c.run.id))->ended_at.has_value());
  }
  int64_t q = MustSubmit(store(), Spec());
  ASSERT_TRUE(store()->Cancel(q, 2200).ok());
  EXPECT_TRUE(store()->GetJob(q)->finished_at.has_value());
  EXPECT_TRUE(MustCheck(store()).empty());
}

TEST_P(InvariantI4, RawTerminalWithoutFinishedAtIsRejectedAndOpenRunIsReported) {
  int64_t id = MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(2000));
  ExpectRefused(backend().Exec("UPDATE jobs SET status='succeeded' WHERE id=" +
                               std::to_string(id)),
                "i4_terminal_has_finished_at");
  // Terminal with finished_at but the run left open: reported.
  ASSERT_EQ("", backend().Exec("UPDATE jobs SET status='failed', finished_at=9 WHERE id=" +
                                std::to_string(id)));
  auto vs = MustCheck(store());
  EXPECT_TRUE(HasViolation(vs, "I4", id));
  (void)c;
}

// ---- I5: running ≤ max_concurrency, counted at claim time ----

// Finishes every claimed run (succeeded) through `store`, freeing the slots.
void FinishAll(JobStore* store, const std::vector<Claimed>& claimed) {
  for (const auto& c : claimed) {
    auto r = store->FinishRun(EndOf(c, RunOutcome::kSucceeded, 2100));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
  }
}

TEST_P(InvariantI5, ConcurrentClaimersOnOneFileNeverExceedMaxConcurrency) {
  constexpr int kRounds = 20, kLimit = 2;
  for (int i = 0; i < kRounds * kLimit + 2; ++i) MustSubmit(store(), Spec());
  for (int round = 0; round < kRounds; ++round) {
    // Four connections, three claims each, all at once, two free slots.
    std::vector<Claimed> claimed = ClaimConcurrently(backend().config(), 4, 3, Claim(2000, kLimit));
    EXPECT_EQ(static_cast<size_t>(kLimit), claimed.size())
        << "round " << round << ": the free slots are filled, and no more";
    EXPECT_EQ(kLimit, store()->Counts()->running) << round;
    EXPECT_EQ(kLimit, backend().Int("SELECT COUNT(*) FROM jobs WHERE status='running'")) << round;
    EXPECT_EQ(kLimit, backend().Int("SELECT COUNT(*) FROM runs WHERE ended_at IS NULL")) << round;
    EXPECT_TRUE(MustCheck(store(), InvariantLimits{kLimit, true}).empty()) << round;
    FinishAll(store(), claimed);
  }
}

TEST_P(InvariantI5, RawExtraRunningRowsBlockClaimsAndAreReported) {
  for (int i = 0; i < 3; ++i) MustSubmit(store(), Spec());
  // Another writer marks two jobs running behind the store's back.
  {
    ASSERT_EQ("", backend().Exec("INSERT INTO runs(id, job_id, attempt, incarnation, node_id, "
                                 "started_at) VALUES (101, 1, 1, 'raw', '', 1), "
                                 "(102, 2, 1, 'raw', '', 1); "
                                 "UPDATE jobs SET status='running', run_id=100+id, started_at=1 "
                                 "WHERE id IN (1, 2)"));
  }
  EXPECT_EQ(2, store()->Counts()->running) << "triggers count raw writes too";
  EXPECT_FALSE(store()->ClaimNext(Claim(2000, 1))->has_value());
  auto vs = MustCheck(store(), InvariantLimits{1, true});
  ASSERT_EQ(1u, vs.size());
  EXPECT_EQ("I5", vs[0].invariant);
  // PostgreSQL counts per node (SPEC §11).
  EXPECT_NE(std::string::npos,
            vs[0].detail.find(backend().is_postgres() ? "2 runs open on node" : "2 jobs running"))
      << vs[0].detail;
}

// ---- I6: with the gate on, one running job per serial_key ----

TEST_P(InvariantI6, ConcurrentClaimsWithGateNeverRunTheSameKeyTwice) {
  constexpr int kPerKey = 16;
  for (int i = 0; i < kPerKey; ++i) {
    MustSubmit(store(), Spec({"x"}, 0, "K"));
    MustSubmit(store(), Spec({"x"}, 0, "L"));
  }
  for (int round = 0; round < kPerKey; ++round) {
    // Plenty of slots: only the gate holds the claimers back.
    std::vector<Claimed> claimed = ClaimConcurrently(backend().config(), 4, 3, Claim(2000, 10));
    std::map<std::string, int> per_key;
    for (const auto& c : claimed) ++per_key[c.job.serial_key.value_or("")];
    EXPECT_EQ((std::map<std::string, int>{{"K", 1}, {"L", 1}}), per_key)
        << "round " << round << ": one run per key, and a gated key does not block the other";
    EXPECT_EQ(0, backend().Int("SELECT COUNT(*) FROM (SELECT serial_key FROM jobs WHERE "
                               "status='running' GROUP BY serial_key HAVING COUNT(*) > 1) AS d"))
        << round;
    EXPECT_TRUE(MustCheck(store()).empty()) << round;
    FinishAll(store(), claimed);
  }
  EXPECT_EQ(2 * kPerKey, store()->Counts()->succeeded);
}

TEST_P(InvariantI6, RawSecondRunningJobOnKeyIsReportedAndGatesFurtherClaims) {
  int64_t j1 = MustSubmit(store(), Spec({"x"}, 0, "K"));
  int64_t j2 = MustSubmit(store(), Spec({"x"}, 0, "K"));
  MustSubmit(store(), Spec({"x"}, 0, "K"));
  {
    ASSERT_EQ("", backend().Exec("INSERT INTO runs(id, job_id, attempt, incarnation, node_id, "
                                 "started_at) VALUES (201, 1, 1, 'raw', '', 1), "
                                 "(202, 2, 1, 'raw', '', 1); "
                                 "UPDATE jobs SET status='running', run_id=200+id, started_at=1 "
                                 "WHERE id IN (1, 2)"));
  }
  EXPECT_FALSE(store()->ClaimNext(Claim(2000, 10))->has_value());
  auto vs = MustCheck(store());
  EXPECT_TRUE(HasViolation(vs, "I6", j1));
  EXPECT_TRUE(HasViolation(vs, "I6", j2));
  EXPECT_TRUE(MustCheck(store(), InvariantLimits{0, false}).empty())
      << "with the gate off a shared key is allowed";
}

INSTANTIATE_TEST_SUITE_P(Backends, InvariantI1, ::testing::Values("sqlite", "postgres"),
                         BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, InvariantI2, ::testing::Values("sqlite", "postgres"),
                         BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, InvariantI3, ::testing::Values("sqlite", "postgres"),
                         BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, InvariantI4, ::testing::Values("sqlite", "postgres"),
                         BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, InvariantI5, ::testing::Values("sqlite", "postgres"),
                         BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, InvariantI6, ::testing::Values("sqlite", "postgres"),
                         BackendName);

}  // namespace
}  // namespace orch::test
