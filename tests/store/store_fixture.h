// Shared helpers for the store tests: a store on a fresh file, job specs,
// and a raw sqlite3 connection for writing what the interface never would.
#pragma once

#include <sqlite3.h>

#include <barrier>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "store/sqlite_store.h"
#include "support/test_util.h"

namespace orch::test {

inline Config::Store StoreConfigIn(const TempDir& dir, int64_t busy_timeout_ms = 5000) {
  Config::Store c;
  c.path = dir.File("state/orchestrator.db");
  c.synchronous = "normal";
  c.busy_timeout_ms = busy_timeout_ms;
  return c;
}

inline std::unique_ptr<SqliteStore> MustOpen(const Config::Store& config) {
  auto r = SqliteStore::Open(config);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return nullptr;
  return std::move(r.value());
}

inline JobSpec Spec(std::vector<std::string> argv = {"/bin/true"}, int64_t priority = 0,
                    std::optional<std::string> serial_key = std::nullopt) {
  JobSpec s;
  s.argv = std::move(argv);
  s.priority = priority;
  s.serial_key = std::move(serial_key);
  return s;
}

inline ClaimRequest Claim(int64_t now_ms, int64_t max_concurrency = 100, bool gate = true) {
  ClaimRequest r;
  r.max_concurrency = max_concurrency;
  r.serial_gate_enabled = gate;
  r.incarnation = "test-incarnation";
  r.now_ms = now_ms;
  return r;
}

inline RunEnd EndOf(const Claimed& c, RunOutcome outcome, int64_t now_ms,
                    int64_t retry_not_before = 0) {
  RunEnd e;
  e.job_id = c.job.id;
  e.run_id = c.run.id;
  e.outcome = outcome;
  e.reason = std::string("test ") + RunOutcomeName(outcome);
  e.now_ms = now_ms;
  e.retry_not_before = retry_not_before;
  return e;
}

// Submits and returns the job id (asserting success).
inline int64_t MustSubmit(JobStore* store, const JobSpec& spec, int64_t now_ms = 1000) {
  auto r = store->Submit(spec, now_ms);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->job.id : 0;
}

inline Claimed MustClaim(JobStore* store, const ClaimRequest& req) {
  auto r = store->ClaimNext(req);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r.ok() && r->has_value()) << "nothing was claimable";
  if (!r.ok() || !r->has_value()) return Claimed{};
  return **r;
}

// A call that failed with kBusy met another connection's write lock past
// busy_timeout. Claimers that race on purpose may retry that, this many times
// at most; any other error is a real failure.
constexpr int kMaxBusyRetries = 20;

inline const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const Result<T>& r) {
  return r.status();
}

// Calls `op` (a store call) again while it fails with kBusy, at most
// kMaxBusyRetries more times; returns the last result.
template <typename Op>
auto RetryOnBusy(Op op) -> decltype(op()) {
  auto r = op();
  for (int i = 0; i < kMaxBusyRetries && StatusOf(r).code() == Code::kBusy; ++i) r = op();
  return r;
}

// `claimers` threads, each with its own connection to the store of `cfg`,
// meet on one barrier and then call ClaimNext `tries` times each, all at
// once. Returns every job claimed. kBusy is retried (bounded); any other
// error fails the test.
inline std::vector<Claimed> ClaimConcurrently(const Config::Store& cfg, int claimers, int tries,
                                              const ClaimRequest& req) {
  std::barrier start(claimers);
  std::mutex mu;
  std::vector<Claimed> claimed;
  std::vector<std::thread> threads;
  for (int t = 0; t < claimers; ++t) {
    threads.emplace_back([&, t] {
      JobStoreOpenOptions options;
      options.background_maintenance = false;
      auto store = OpenJobStore(cfg, options);
      start.arrive_and_wait();  // also when the open failed: nobody waits forever
      if (!store.ok()) {
        ADD_FAILURE() << "claimer " << t << ": " << store.status().ToString();
        return;
      }
      ClaimRequest mine = req;
      mine.incarnation = "claimer-" + std::to_string(t);
      for (int i = 0; i < tries; ++i) {
        auto c = RetryOnBusy([&] { return (*store)->ClaimNext(mine); });
        if (!c.ok()) {
          ADD_FAILURE() << "claimer " << t << ": " << c.status().ToString();
          return;
        }
        if (c->has_value()) {
          std::lock_guard<std::mutex> lock(mu);
          claimed.push_back(**c);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  return claimed;
}

// A plain sqlite3 connection to the same file, as another tool would open it.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    EXPECT_EQ(SQLITE_OK, sqlite3_open(path.c_str(), &db_));
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close_v2(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  // Runs `sql`; returns the SQLite result code, message in last_error().
  int Exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    last_error_ = err ? err : "";
    sqlite3_free(err);
    return rc;
  }
  // The first column of the first row as an integer (-1 when no row).
  int64_t Int(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(SQLITE_OK, sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr)) << sql;
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  }
  // Every row's column `col` as text.
  std::vector<std::string> Texts(const std::string& sql, int col = 0) {
    sqlite3_stmt* st = nullptr;
    std::vector<std::string> out;
    EXPECT_EQ(SQLITE_OK, sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr))
        << sql << ": " << sqlite3_errmsg(db_);
    while (sqlite3_step(st) == SQLITE_ROW) {
      const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(st, col));
      out.push_back(t ? t : "");
    }
    sqlite3_finalize(st);
    return out;
  }
  const std::string& last_error() const { return last_error_; }
  sqlite3* raw() { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::string last_error_;
};

// Writes the ORCH-126 row: a queued job still carrying a dead run's
// ownership, as old code or a hand edit would leave it.
inline void WriteImpossibleQueued(const std::string& path, int64_t job_id, int64_t run_id,
                                  int64_t pid) {
  RawDb raw(path);
  ASSERT_EQ(SQLITE_OK, raw.Exec("PRAGMA ignore_check_constraints=ON; "
                                "UPDATE jobs SET status='queued', run_id=" +
                                std::to_string(run_id) + ", pid=" + std::to_string(pid) +
                                ", started_at=123 WHERE id=" + std::to_string(job_id)))
      << raw.last_error();
}

}  // namespace orch::test
