// Several SqliteStore instances (threads or processes) on one file: claims
// are serialized by BEGIN IMMEDIATE, so no job is ever claimed twice.
#include <sys/wait.h>
#include <unistd.h>

#include <barrier>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>

#include "store/sqlite_store.h"
#include "store/store_fixture.h"

namespace orch::test {
namespace {

// Opens its own store on the file, calls `ready` (a barrier shared with the
// other claimers), then claims and finishes until nothing is claimable;
// returns the job ids taken. Only kBusy is retried, and only
// kMaxBusyRetries times in a row; any other error ends the drain with it.
Result<std::vector<int64_t>> Drain(const Config::Store& cfg, const std::string& who,
                                   const std::function<void()>& ready) {
  auto r = SqliteStore::Open(cfg);
  ready();  // also when the open failed: nobody waits forever
  if (!r.ok()) return Status(r.status().code(), who + ": open: " + r.status().message());
  auto& store = *r;
  std::vector<int64_t> taken;
  for (;;) {
    ClaimRequest req = Claim(10000, 4);
    req.incarnation = who;
    auto c = RetryOnBusy([&] { return store->ClaimNext(req); });
    if (!c.ok()) return Status(c.status().code(), who + ": claim: " + c.status().message());
    if (!c->has_value()) break;
    taken.push_back((*c)->job.id);
    RunEnd e = EndOf(**c, RunOutcome::kSucceeded, 10001);
    auto f = RetryOnBusy([&] { return store->FinishRun(e); });
    if (!f.ok()) return Status(f.status().code(), who + ": finish: " + f.status().message());
  }
  return taken;
}

TEST(SqliteStoreConcurrency, TwoThreadsNeverClaimTheSameJob) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  auto store = MustOpen(cfg);
  const int kJobs = 300;
  for (int i = 0; i < kJobs; ++i) MustSubmit(store.get(), Spec({"x"}, i % 5));
  std::barrier start(2);
  auto arrive = [&] { start.arrive_and_wait(); };
  Result<std::vector<int64_t>> a = Status(Code::kInternal, "not run");
  Result<std::vector<int64_t>> b = Status(Code::kInternal, "not run");
  std::thread ta([&] { a = Drain(cfg, "thread-a", arrive); });
  std::thread tb([&] { b = Drain(cfg, "thread-b", arrive); });
  ta.join();
  tb.join();
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  std::set<int64_t> all(a->begin(), a->end());
  for (int64_t id : *b) EXPECT_TRUE(all.insert(id).second) << "job " << id << " claimed twice";
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
  // A pipe barrier: each child opens its store and says so on `ready`, then
  // blocks on `go` until the parent closes it, which wakes them together.
  int ready[2], go[2];
  ASSERT_EQ(0, pipe(ready));
  ASSERT_EQ(0, pipe(go));
  std::vector<pid_t> kids;
  for (int k = 0; k < 2; ++k) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(ready[0]);
      close(go[1]);
      auto ids = Drain(cfg, "proc-" + std::to_string(k), [&] {
        char c = 'r';
        (void)!write(ready[1], &c, 1);
        (void)!read(go[0], &c, 1);  // EOF: everyone is ready
      });
      if (!ids.ok()) {
        std::ofstream(dir.File("error-" + std::to_string(k))) << ids.status().ToString();
        _exit(1);
      }
      std::ofstream out(dir.File("claimed-" + std::to_string(k)));
      for (int64_t id : *ids) out << id << "\n";
      out.close();
      _exit(0);
    }
    kids.push_back(pid);
  }
  close(ready[1]);
  close(go[0]);
  char c;
  for (size_t n = 0; n < kids.size(); ++n) {
    // A child that died before saying ready must not hang the test: the
    // other one keeps the pipe open.
    pollfd p{ready[0], POLLIN, 0};
    if (poll(&p, 1, 60000) != 1 || read(ready[0], &c, 1) != 1) {
      for (pid_t kid : kids) kill(kid, SIGKILL);
      for (pid_t kid : kids) waitpid(kid, nullptr, 0);
      FAIL() << "a child never got ready";
    }
  }
  close(go[1]);
  close(ready[0]);
  for (size_t k = 0; k < kids.size(); ++k) {
    int st = 0;
    ASSERT_EQ(kids[k], waitpid(kids[k], &st, 0));
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
        << "proc-" << k << ": " << ReadFile(dir.File("error-" + std::to_string(k)));
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
  // Four connections, twenty claims each, all at once, three slots.
  std::vector<Claimed> claimed = ClaimConcurrently(cfg, 4, 20, Claim(10000, 3));
  EXPECT_EQ(3u, claimed.size());
  auto store = MustOpen(cfg);
  EXPECT_EQ(3, store->Counts()->running);
  EXPECT_TRUE(store->CheckInvariants(InvariantLimits{3, true})->empty());
}

}  // namespace
}  // namespace orch::test
