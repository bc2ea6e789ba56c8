// The hot read paths must stay index-only with millions of rows: none of
// them may fall back to a full `SCAN jobs`.
#include <gtest/gtest.h>

#include "store/sqlite_store.h"
#include "store/store_fixture.h"

namespace orch::test {
namespace {

TEST(SqliteStoreQueryPlan, HotQueriesNeverScanJobs) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  auto store = MustOpen(cfg);
  for (int i = 0; i < 50; ++i) MustSubmit(store.get(), Spec({"x"}, i % 3, "k" + std::to_string(i % 4)));
  RawDb raw(cfg.path);
  ASSERT_EQ(SQLITE_OK, raw.Exec("ANALYZE"));
  for (const auto& [name, sql] : SqliteStore::HotQueriesForTest()) {
    auto plan = raw.Texts("EXPLAIN QUERY PLAN " + sql, 3);
    ASSERT_FALSE(plan.empty()) << name;
    std::string text;
    for (const auto& line : plan) text += line + "\n";
    for (const auto& line : plan) {
      bool full_scan = (line == "SCAN jobs" || line == "SCAN j" ||
                        line.rfind("SCAN jobs ", 0) == 0 || line.rfind("SCAN j ", 0) == 0) &&
                       line.find("USING") == std::string::npos;
      EXPECT_FALSE(full_scan) << name << " scans jobs:\n" << text;
    }
  }
}

TEST(SqliteStoreQueryPlan, SanitizeFindUsesThePartialIndex) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  auto store = MustOpen(cfg);
  RawDb raw(cfg.path);
  for (const auto& [name, sql] : SqliteStore::HotQueriesForTest()) {
    if (name != "sanitize_find") continue;
    auto plan = raw.Texts("EXPLAIN QUERY PLAN " + sql, 3);
    ASSERT_EQ(1u, plan.size());
    EXPECT_NE(std::string::npos, plan[0].find("jobs_impossible_queued")) << plan[0];
  }
}

// The status page's list of one serial key reads that key's rows only.
TEST(SqliteStoreQueryPlan, ListByKeyReadsTheKeyIndex) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  auto store = MustOpen(cfg);
  RawDb raw(cfg.path);
  for (const auto& [name, sql] : SqliteStore::HotQueriesForTest()) {
    if (name != "list_by_key" && name != "list_queued_by_key") continue;
    std::string text;
    for (const auto& line : raw.Texts("EXPLAIN QUERY PLAN " + sql, 3)) text += line + "\n";
    EXPECT_NE(std::string::npos, text.find("jobs_by_key")) << name << ":\n" << text;
  }
}

// GET /stats reads the last hour of runs, never the whole history.
TEST(SqliteStoreQueryPlan, ThroughputReadsRunsByTimeIndexes) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  auto store = MustOpen(cfg);
  RawDb raw(cfg.path);
  for (const auto& [name, sql] : SqliteStore::HotQueriesForTest()) {
    if (name != "started_per_minute" && name != "ended_per_minute") continue;
    std::string text;
    for (const auto& line : raw.Texts("EXPLAIN QUERY PLAN " + sql, 3)) text += line + "\n";
    const char* index = name == "started_per_minute" ? "runs_started_at" : "runs_ended_at";
    EXPECT_NE(std::string::npos, text.find(index)) << name << ":\n" << text;
  }
}

}  // namespace
}  // namespace orch::test
