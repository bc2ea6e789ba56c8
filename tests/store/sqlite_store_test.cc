#include "store/sqlite_store.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "store/store_fixture.h"

namespace orch::test {
namespace {

TEST(SqliteStore, OpenCreatesParentDirectoriesAndWalDatabase) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  auto store = MustOpen(cfg);
  ASSERT_NE(store, nullptr);
  struct stat st {};
  ASSERT_EQ(0, stat(dir.File("state").c_str(), &st));
  EXPECT_EQ(0750u, st.st_mode & 0777);
  ASSERT_EQ(0, stat(cfg.path.c_str(), &st));
  EXPECT_EQ(0u, st.st_mode & 0007) << "the database must not be world-readable";
  RawDb raw(cfg.path);
  EXPECT_EQ(std::vector<std::string>{"wal"}, raw.Texts("PRAGMA journal_mode"));
  EXPECT_EQ(SqliteStore::kSchemaVersion, raw.Int("PRAGMA user_version"));
}

TEST(SqliteStore, ReopenKeepsJobsAndDoesNotMigrateTwice) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  int64_t id = 0;
  {
    auto store = MustOpen(cfg);
    id = MustSubmit(store.get(), Spec({"/bin/echo", "hi"}));
  }
  auto store = MustOpen(cfg);
  auto job = store->GetJob(id);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ((std::vector<std::string>{"/bin/echo", "hi"}), job->argv);
}

// A version 1 file (before runs.node_id and nodes) is migrated in place and
// keeps its jobs and runs.
TEST(SqliteStore, VersionOneFileIsMigratedKeepingItsRows) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  int64_t id = 0, run_id = 0;
  {
    auto store = MustOpen(cfg);
    id = MustSubmit(store.get(), Spec({"/bin/echo", "v1"}));
    run_id = MustClaim(store.get(), Claim(2000)).run.id;
  }
  {
    RawDb raw(cfg.path);
    // Back to the v1 columns (the v1 CHECK on runs.outcome is rebuilt by v3).
    ASSERT_EQ(SQLITE_OK,
              raw.Exec("ALTER TABLE runs DROP COLUMN node_id; DROP TABLE nodes; "
                       "ALTER TABLE runs DROP COLUMN cgroup; ALTER TABLE runs DROP COLUMN cpu_usec; "
                       "ALTER TABLE runs DROP COLUMN mem_peak_bytes; "
                       "ALTER TABLE runs DROP COLUMN oom_kills; "
                       "ALTER TABLE jobs DROP COLUMN memory_max; ALTER TABLE jobs DROP COLUMN cpu_max; "
                       "ALTER TABLE jobs DROP COLUMN pids_max; "
                       "ALTER TABLE jobs DROP COLUMN stall_timeout_s; DROP INDEX jobs_by_key; "
                       "PRAGMA user_version=1"))
        << raw.last_error();
  }
  auto store = MustOpen(cfg);
  ASSERT_NE(store, nullptr);
  RawDb raw(cfg.path);
  EXPECT_EQ(SqliteStore::kSchemaVersion, raw.Int("PRAGMA user_version"));
  EXPECT_EQ(0, raw.Int("SELECT COUNT(*) FROM nodes"));
  auto run = store->GetRun(run_id);
  ASSERT_TRUE(run.ok() && run->has_value());
  EXPECT_EQ("", (*run)->node_id);
  EXPECT_EQ("", (*run)->cgroup);
  EXPECT_EQ(JobStatus::kRunning, store->GetJob(id)->status);
  // v3's outcome and accounting columns take a run's end.
  RunEnd end;
  end.job_id = id;
  end.run_id = run_id;
  end.outcome = RunOutcome::kStalled;
  end.reason = "no_progress";
  end.now_ms = 3000;
  end.retry_not_before = 3000;
  end.cpu_usec = 1234;
  auto finished = store->FinishRun(end);
  ASSERT_TRUE(finished.ok()) << finished.status().ToString();
  EXPECT_EQ(JobStatus::kQueued, finished->job_status);
  EXPECT_EQ("stalled", store->GetRun(run_id).value()->outcome.value_or(""));
  EXPECT_EQ(1234, store->GetRun(run_id).value()->cpu_usec.value_or(0));
}

TEST(SqliteStore, NewerSchemaIsRefusedWithClearMessage) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  { ASSERT_NE(MustOpen(cfg), nullptr); }
  {
    RawDb raw(cfg.path);
    ASSERT_EQ(SQLITE_OK, raw.Exec("PRAGMA user_version=99"));
  }
  auto r = SqliteStore::Open(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(Code::kCorrupt, r.status().code());
  EXPECT_NE(std::string::npos, r.status().message().find(
                                   "schema version 99 is newer than this binary supports (" +
                                   std::to_string(SqliteStore::kSchemaVersion) + ")"))
      << r.status().message();
}

TEST(SqliteStore, BadSynchronousValueIsInvalidArgument) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  cfg.synchronous = "sometimes";
  auto r = SqliteStore::Open(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(Code::kInvalidArgument, r.status().code());
}





























TEST(SqliteStore, BackgroundCheckpointerEmptiesTheWalOffTheCallersThread) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  SqliteOpenOptions options;
  options.background_checkpoint_ms = 10;
  auto r = SqliteStore::Open(cfg, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto& store = *r;
  ASSERT_NE(nullptr, store->CheckpointerForTest());
  for (int i = 0; i < 50; ++i) MustSubmit(store.get(), Spec());
  int64_t before = store->CheckpointerForTest()->checkpoints();
  EXPECT_TRUE(WaitFor([&] { return store->CheckpointerForTest()->checkpoints() > before + 1; }));
  EXPECT_EQ(0, store->CheckpointerForTest()->failures());
  // A checkpoint that copies nothing would also "succeed": the frames count.
  EXPECT_TRUE(WaitFor([&] { return store->CheckpointerForTest()->frames_copied() > 0; }));
  auto pragma = store->DbForTest()->Prepare("PRAGMA wal_autocheckpoint");
  ASSERT_TRUE(pragma.ok());
  ASSERT_TRUE(*pragma->Step());
  EXPECT_EQ(SqliteStore::kSafetyNetCheckpointPages, pragma->Int(0));
  options.background_checkpoint_ms = 0;
  auto plain = SqliteStore::Open(cfg, options);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(nullptr, (*plain)->CheckpointerForTest());
}

TEST(FromSqlite, MapsResultCodesToStatusCodes) {
  EXPECT_TRUE(FromSqlite(nullptr, SQLITE_OK).ok());
  EXPECT_EQ(Code::kBusy, FromSqlite(nullptr, SQLITE_BUSY).code());
  EXPECT_EQ(Code::kBusy, FromSqlite(nullptr, SQLITE_BUSY_SNAPSHOT).code());
  EXPECT_EQ(Code::kBusy, FromSqlite(nullptr, SQLITE_LOCKED).code());
  EXPECT_EQ(Code::kFull, FromSqlite(nullptr, SQLITE_FULL).code());
  EXPECT_EQ(Code::kReadOnly, FromSqlite(nullptr, SQLITE_READONLY).code());
  EXPECT_EQ(Code::kCorrupt, FromSqlite(nullptr, SQLITE_CORRUPT).code());
  EXPECT_EQ(Code::kCorrupt, FromSqlite(nullptr, SQLITE_NOTADB).code());
  EXPECT_EQ(Code::kIo, FromSqlite(nullptr, SQLITE_IOERR_WRITE).code());
  EXPECT_EQ(Code::kIo, FromSqlite(nullptr, SQLITE_CONSTRAINT).code());
  EXPECT_NE(std::string::npos, FromSqlite(nullptr, SQLITE_FULL).message().find("full"));
}

}  // namespace
}  // namespace orch::test
