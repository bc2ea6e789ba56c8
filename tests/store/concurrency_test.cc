// Several SqliteStore instances (threads or processes) on one file: claims
// are serialized by BEGIN IMMEDIATE, so no job is ever claimed twice.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "store/sqlite_store.h"
#include "store/store_fixture.h"

namespace orch::test {
namespace {

// Claims and finishes until nothing is claimable; returns the job ids taken.
std::vector<int64_t> Drain(const Config::Store& cfg, const std::string& who) {
  std::vector<int64_t> taken;
  auto r = SqliteStore::Open(cfg);
  if (!r.ok()) return taken;
  auto& store = *r;
  for (;;) {
    ClaimRequest req = Claim(10000, 4);
    req.incarnation = who;
    auto c = store->ClaimNext(req);
    if (!c.ok()) continue;  // kBusy under contention is retried
    if (!c->has_value()) break;
    taken.push_back((*c)->job.id);
    RunEnd e = EndOf(**c, RunOutcome::kSucceeded, 10001);
    while (!store->FinishRun(e).ok()) {
    }
  }
  return taken;
}

TEST(SqliteStoreConcurrency, TwoThreadsNeverClaimTheSameJob) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  auto store = MustOpen(cfg);
  const int kJobs = 300;
  for (int i = 0; i < kJobs; ++i) MustSubmit(store.get(), Spec({"x"}, i % 5));
  std::vector<int64_t> a, b;
  std::thread ta([&] { a = Drain(cfg, "thread-a"); });
  std::thread tb([&] { b = Drain(cfg, "thread-b"); });
  ta.join();
  tb.join();
  std::set<int64_t> all(a.begin(), a.end());
  for (int64_t id : b) EXPECT_TRUE(all.insert(id).second) << "job " << id << " claimed twice";
  EXPECT_EQ(static_cast<size_t>(kJobs), all.size());
  auto c = store->Counts();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(kJobs, c->succeeded);
  EXPECT_EQ(0, c->queued + c->running + c->failed + c->cancelled);
  RawDb raw(cfg.path);
  EXPECT_EQ(kJobs, raw.Int("SELECT COUNT(*) FROM runs"));
  EXPECT_EQ(kJobs, raw.Int("SELECT COUNT(*) FROM jobs WHERE status='succeeded'"));
  EXPECT_TRUE(store->CheckInvariants()->empty());
}

TEST(SqliteStoreConcurrency, TwoProcessesNeverClaimTheSameJob) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  const int kJobs = 200;
  {
    auto store = MustOpen(cfg);
    for (int i = 0; i < kJobs; ++i) MustSubmit(store.get(), Spec({"x"}, 0));
  }
  std::vector<pid_t> kids;
  for (int k = 0; k < 2; ++k) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto ids = Drain(cfg, "proc-" + std::to_string(k));
      std::ofstream out(dir.File("claimed-" + std::to_string(k)));
      for (int64_t id : ids) out << id << "\n";
      out.close();
      _exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int st = 0;
    ASSERT_EQ(pid, waitpid(pid, &st, 0));
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  std::set<int64_t> all;
  size_t total = 0;
  for (int k = 0; k < 2; ++k) {
    std::ifstream in(dir.File("claimed-" + std::to_string(k)));
    int64_t id;
    while (in >> id) {
      ++total;
      all.insert(id);
    }
  }
  EXPECT_EQ(total, all.size()) << "some job was claimed twice";
  EXPECT_EQ(static_cast<size_t>(kJobs), all.size());
  auto store = MustOpen(cfg);
  EXPECT_EQ(kJobs, store->Counts()->succeeded);
  RawDb raw(cfg.path);
  EXPECT_EQ(kJobs, raw.Int("SELECT COUNT(*) FROM runs"));
}

TEST(SqliteStoreConcurrency, RacingClaimersRespectMaxConcurrency) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  {
    auto store = MustOpen(cfg);
    for (int i = 0; i < 50; ++i) MustSubmit(store.get(), Spec());
  }
  std::atomic<int> claimed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      auto r = SqliteStore::Open(cfg);
      if (!r.ok()) return;
      for (int i = 0; i < 20; ++i) {
        auto c = (*r)->ClaimNext(Claim(10000, 3));
        if (c.ok() && c->has_value()) ++claimed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(3, claimed.load());
  auto store = MustOpen(cfg);
  EXPECT_EQ(3, store->Counts()->running);
  EXPECT_TRUE(store->CheckInvariants(InvariantLimits{3, true})->empty());
}

}  // namespace
}  // namespace orch::test
