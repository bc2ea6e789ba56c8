// ORCH-126: after a container restart a job row said `queued` while still
// carrying run_id and pid from a dead run; a bare-pid liveness check saw the
// reused pid "alive", the job counted as running, and with
// max_concurrency = 1 the queue stopped forever.
#include <gtest/gtest.h>

#include "store/store_backends.h"

namespace orch::test {
namespace {

class Orch126 : public StoreContract {};

// What the old code wrote: a queued job still carrying a dead run's ownership.
void WriteImpossibleQueued(const BackendStore& backend, int64_t job_id, int64_t run_id,
                           int64_t pid) {
  ASSERT_EQ("", backend.Exec(backend.WithoutCheckConstraints() +
                             "UPDATE jobs SET status='queued', run_id=" + std::to_string(run_id) +
                             ", pid=" + std::to_string(pid) + ", started_at=123 WHERE id=" +
                             std::to_string(job_id)));
}

Result<bool> Gone(const orch::Run&) { return false; }

// True when a claim found nothing to claim.
bool MustClaimNothing(JobStore* store, const ClaimRequest& req) {
  auto claimed = store->ClaimNext(req);
  EXPECT_TRUE(claimed.ok()) << claimed.status().ToString();
  return claimed.ok() && !claimed->has_value();
}

TEST_P(Orch126, QueuedRowCarryingDeadRunIsRepairedThenClaimedAtConcurrencyOne) {
  int64_t id = MustSubmit(store(), Spec({"/bin/job"}));
  Claimed c = MustClaim(store(), Claim(2000, 1));
  ASSERT_TRUE(store()->RecordSpawned(id, c.run.id, ProcessIdentity{"old-boot", 1, 31337, 99, 0},
                                   "/logs/1.out")
                  .ok());
  // What the old code wrote: status back to queued, ownership left behind,
  // the run never closed.
  WriteImpossibleQueued(backend(), id, c.run.id, 31337);

  auto before = store()->CheckInvariants();
  ASSERT_TRUE(before.ok());
  bool reported = false;
  for (const auto& v : *before) {
    if (v.invariant == "I1" && v.job_id == id) {
      reported = true;
      EXPECT_NE(std::string::npos, v.detail.find("pid=31337")) << v.detail;
    }
  }
  EXPECT_TRUE(reported);

  auto found = store()->FindImpossibleQueued();
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(1u, found->size());
  EXPECT_EQ(id, found->at(0).job_id);
  ASSERT_TRUE(found->at(0).open_run.has_value());
  EXPECT_EQ(31337, found->at(0).open_run->identity.pid);

  // The recorded process is checked before anything is closed.
  std::vector<int64_t> checked;
  auto repaired = SanitizeImpossibleQueued(*store(), 5000, [&](const orch::Run& r) {
    checked.push_back(r.id);
    return Result<bool>(false);
  });
  ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
  EXPECT_EQ(std::vector<int64_t>{c.run.id}, checked);
  EXPECT_EQ(std::vector<int64_t>{id}, repaired->repaired);
  EXPECT_TRUE(repaired->alive.empty());

  Job j = *store()->GetJob(id);
  EXPECT_EQ(JobStatus::kQueued, j.status);
  EXPECT_FALSE(j.run_id || j.pid || j.started_at);
  orch::Run dead = **store()->GetRun(c.run.id);
  EXPECT_EQ(std::optional<int64_t>(5000), dead.ended_at);
  EXPECT_EQ(std::optional<std::string>("lost"), dead.outcome);
  EXPECT_EQ(std::optional<std::string>("impossible_queued"), dead.reason);

  auto after = store()->CheckInvariants();
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty()) << after->front().invariant << " " << after->front().detail;
  EXPECT_TRUE(store()->FindImpossibleQueued()->empty());
  EXPECT_TRUE(SanitizeImpossibleQueued(*store(), 6000, Gone)->repaired.empty())
      << "a second sweep finds nothing";

  // Nothing counts as running, so the one slot is free and the job runs again.
  EXPECT_EQ(0, store()->Counts()->running);
  auto claimed = store()->ClaimNext(Claim(7000, 1));
  ASSERT_TRUE(claimed.ok()) << claimed.status().ToString();
  ASSERT_TRUE(claimed->has_value());
  EXPECT_EQ(id, (*claimed)->job.id);
  EXPECT_NE(c.run.id, (*claimed)->run.id);
}

TEST_P(Orch126, QueuedRowCarryingOnlyStartedAtIsAlsoRepaired) {
  int64_t id = MustSubmit(store(), Spec());
  ASSERT_EQ("", backend().Exec(backend().WithoutCheckConstraints() +
                               "UPDATE jobs SET started_at=5 WHERE id=" + std::to_string(id)));
  EXPECT_EQ(std::vector<int64_t>{id}, SanitizeImpossibleQueued(*store(), 6000, Gone)->repaired);
  EXPECT_FALSE(store()->GetJob(id)->started_at.has_value());
}

// A queued job whose open run's process still lives is never closed
// blindly: it is reported, and the daemon reattaches it.
TEST_P(Orch126, QueuedRowWhoseProcessLivesIsLeftAndCanBeReattached) {
  int64_t id = MustSubmit(store(), Spec());
  Claimed c = MustClaim(store(), Claim(1000, 1));
  ASSERT_TRUE(store()->RecordSpawned(id, c.run.id, ProcessIdentity{"boot", 1, 4242, 99, 0},
                                   "/logs/1.out")
                  .ok());
  WriteImpossibleQueued(backend(), id, c.run.id, 4242);

  auto report = SanitizeImpossibleQueued(*store(), 5000, [](const orch::Run&) {
    return Result<bool>(true);
  });
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->repaired.empty());
  ASSERT_EQ(1u, report->alive.size());
  EXPECT_EQ(c.run.id, report->alive[0].open_run->id);
  EXPECT_FALSE((*store()->GetRun(c.run.id))->ended_at.has_value()) << "closed without a check";
  EXPECT_TRUE(MustClaimNothing(store(), Claim(5000, 4))) << "claimed while its run is open";

  ASSERT_TRUE(store()->ReattachOpenRun(id, c.run.id, 6000).ok());
  Job j = *store()->GetJob(id);
  EXPECT_EQ(JobStatus::kRunning, j.status);
  EXPECT_EQ(std::optional<int64_t>(c.run.id), j.run_id);
  EXPECT_EQ(std::optional<int64_t>(4242), j.pid);
  EXPECT_EQ(c.run.attempt, j.attempts);
  EXPECT_TRUE(store()->CheckInvariants()->empty());
  EXPECT_EQ(Code::kGuardMissed, store()->ReattachOpenRun(id, c.run.id, 7000).code());
}

INSTANTIATE_TEST_SUITE_P(Backends, Orch126, ::testing::Values("sqlite", "postgres"), BackendName);

}  // namespace
}  // namespace orch::test
