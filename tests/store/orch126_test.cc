// ORCH-126: after a container restart a job row said `queued` while still
// carrying run_id and pid from a dead run; a bare-pid liveness check saw the
// reused pid "alive", the job counted as running, and with
// max_concurrency = 1 the queue stopped forever.
#include <gtest/gtest.h>

#include "store/sqlite_store.h"
#include "store/store_fixture.h"

namespace orch::test {
namespace {

TEST(Orch126, QueuedRowCarryingDeadRunIsRepairedThenClaimedAtConcurrencyOne) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  auto store = MustOpen(cfg);
  int64_t id = MustSubmit(store.get(), Spec({"/bin/job"}));
  Claimed c = MustClaim(store.get(), Claim(2000, 1));
  ASSERT_TRUE(store->RecordSpawned(id, c.run.id, ProcessIdentity{"old-boot", 1, 31337, 99, 0},
                                   "/logs/1.out")
                  .ok());
  // What the old code wrote: status back to queued, ownership left behind,
  // the run never closed.
  WriteImpossibleQueued(cfg.path, id, c.run.id, 31337);

  auto before = store->CheckInvariants();
  ASSERT_TRUE(before.ok());
  bool reported = false;
  for (const auto& v : *before) {
    if (v.invariant == "I1" && v.job_id == id) {
      reported = true;
      EXPECT_NE(std::string::npos, v.detail.find("pid=31337")) << v.detail;
    }
  }
  EXPECT_TRUE(reported);

  auto found = store->FindImpossibleQueued();
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(std::vector<int64_t>{id}, *found);

  auto repaired = store->SanitizeImpossibleQueued(5000);
  ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
  EXPECT_EQ(std::vector<int64_t>{id}, *repaired);

  Job j = *store->GetJob(id);
  EXPECT_EQ(JobStatus::kQueued, j.status);
  EXPECT_FALSE(j.run_id || j.pid || j.started_at);
  orch::Run dead = **store->GetRun(c.run.id);
  EXPECT_EQ(std::optional<int64_t>(5000), dead.ended_at);
  EXPECT_EQ(std::optional<std::string>("lost"), dead.outcome);
  EXPECT_EQ(std::optional<std::string>("impossible_queued"), dead.reason);

  auto after = store->CheckInvariants();
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty()) << after->front().invariant << " " << after->front().detail;
  EXPECT_TRUE(store->FindImpossibleQueued()->empty());
  EXPECT_TRUE(store->SanitizeImpossibleQueued(6000)->empty()) << "a second sweep finds nothing";

  // Nothing counts as running, so the one slot is free and the job runs again.
  EXPECT_EQ(0, store->Counts()->running);
  auto claimed = store->ClaimNext(Claim(7000, 1));
  ASSERT_TRUE(claimed.ok()) << claimed.status().ToString();
  ASSERT_TRUE(claimed->has_value());
  EXPECT_EQ(id, (*claimed)->job.id);
  EXPECT_NE(c.run.id, (*claimed)->run.id);
}

TEST(Orch126, QueuedRowCarryingOnlyStartedAtIsAlsoRepaired) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  auto store = MustOpen(cfg);
  int64_t id = MustSubmit(store.get(), Spec());
  {
    RawDb raw(cfg.path);
    ASSERT_EQ(SQLITE_OK, raw.Exec("PRAGMA ignore_check_constraints=ON; UPDATE jobs SET "
                                  "started_at=5 WHERE id=" + std::to_string(id)));
  }
  EXPECT_EQ(std::vector<int64_t>{id}, *store->SanitizeImpossibleQueued(6000));
  EXPECT_FALSE(store->GetJob(id)->started_at.has_value());
}

}  // namespace
}  // namespace orch::test
