// Injected storage faults (STYLE §11): a held write lock and a full
// database come back as values, and nothing committed is lost.
#include <gtest/gtest.h>

#include "store/sqlite_store.h"
#include "store/store_fixture.h"

namespace orch::test {
namespace {

TEST(SqliteStoreFaults, WriteLockHeldPastBusyTimeoutIsBusyAndLosesNothing) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir, /*busy_timeout_ms=*/100);
  auto store = MustOpen(cfg);
  int64_t kept = MustSubmit(store.get(), Spec({"kept"}));
  RawDb locker(cfg.path);
  ASSERT_EQ(SQLITE_OK, locker.Exec("BEGIN IMMEDIATE"));

  auto submit = store->Submit(Spec({"blocked"}), 2000);
  ASSERT_FALSE(submit.ok());
  EXPECT_EQ(Code::kBusy, submit.status().code()) << submit.status().ToString();
  auto claim = store->ClaimNext(Claim(2000));
  ASSERT_FALSE(claim.ok());
  EXPECT_EQ(Code::kBusy, claim.status().code());
  // Reads still work in WAL mode while a writer holds the lock.
  auto job = store->GetJob(kept);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(JobStatus::kQueued, job->status);

  ASSERT_EQ(SQLITE_OK, locker.Exec("ROLLBACK"));
  EXPECT_TRUE(store->Submit(Spec({"after"}), 3000).ok());
  EXPECT_EQ(2, store->Counts()->queued);
  EXPECT_EQ(kept, MustClaim(store.get(), Claim(4000)).job.id);
}

TEST(SqliteStoreFaults, FullDatabaseIsFullAndEveryCommittedRowSurvivesReopen) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  std::vector<int64_t> committed;
  {
    auto store = MustOpen(cfg);
    for (int i = 0; i < 5; ++i) committed.push_back(MustSubmit(store.get(), Spec()));
    RawDb raw(cfg.path);
    int64_t pages = raw.Int("PRAGMA page_count");
    ASSERT_GT(pages, 0);
    ASSERT_TRUE(store->SetMaxPageCountForTest(pages + 8).ok());
    Status last;
    std::string big(3000, 'z');
    for (int i = 0; i < 1000; ++i) {
      auto r = store->Submit(Spec({"/bin/echo", big + std::to_string(i)}), 2000 + i);
      if (!r.ok()) {
        last = r.status();
        break;
      }
      committed.push_back(r->job.id);
    }
    ASSERT_FALSE(last.ok()) << "the database never filled up";
    EXPECT_EQ(Code::kFull, last.code()) << last.ToString();
    // The store stays usable for reads and for writes that need no new page.
    auto c = store->Counts();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(static_cast<int64_t>(committed.size()), c->queued);
    EXPECT_TRUE(store->SetPaused(true).ok());
  }
  auto store = MustOpen(cfg);
  for (int64_t id : committed) {
    auto j = store->GetJob(id);
    EXPECT_TRUE(j.ok()) << "job " << id << " lost: " << j.status().ToString();
  }
  auto c = store->Counts();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(static_cast<int64_t>(committed.size()), c->queued);
  EXPECT_EQ(std::vector<std::string>{"ok"}, *store->IntegrityCheck());
  EXPECT_TRUE(store->CheckInvariants()->empty());
  EXPECT_TRUE(*store->IsPaused());
}

}  // namespace
}  // namespace orch::test
