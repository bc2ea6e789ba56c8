#include "store/db_tools.h"

#include <unistd.h>

#include <sstream>

#include <gtest/gtest.h>

#include "store/store_backends.h"

namespace orch::test {
namespace {

Result<bool> Gone(const orch::Run&) { return false; }
Result<bool> Alive(const orch::Run&) { return true; }

TEST(DbTools, CheckOnCleanDatabaseExitsZero) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  {
    auto store = MustOpen(cfg);
    MustSubmit(store.get(), Spec());
  }
  std::ostringstream out, err;
  EXPECT_EQ(0, RunDbCheck(cfg, out, err)) << out.str() << err.str();
  EXPECT_NE(std::string::npos, out.str().find("integrity_check: ok"));
  EXPECT_NE(std::string::npos, out.str().find("0 invariant violations"));
}

TEST(DbTools, CheckReportsInjectedI1ViolationAndSanitizeRepairsIt) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  int64_t id = 0;
  {
    auto store = MustOpen(cfg);
    MustSubmit(store.get(), Spec());
    id = MustSubmit(store.get(), Spec());
  }
  WriteImpossibleQueued(cfg.path, id, 77, 4242);
  {
    std::ostringstream out, err;
    EXPECT_EQ(1, RunDbCheck(cfg, out, err));
    EXPECT_NE(std::string::npos, out.str().find("I1 job " + std::to_string(id) + ":"))
        << out.str();
  }
  {
    std::ostringstream out, err;
    EXPECT_EQ(0, RunDbSanitize(cfg, "", Gone, out, err)) << err.str();
    EXPECT_NE(std::string::npos, out.str().find("repaired job " + std::to_string(id)))
        << out.str();
    EXPECT_NE(std::string::npos, out.str().find("1 job repaired")) << out.str();
  }
  std::ostringstream out, err;
  EXPECT_EQ(0, RunDbCheck(cfg, out, err)) << out.str();
  std::ostringstream out2, err2;
  EXPECT_EQ(0, RunDbSanitize(cfg, "", Gone, out2, err2));
  EXPECT_NE(std::string::npos, out2.str().find("0 jobs repaired")) << out2.str();
}

TEST(DbTools, SanitizeLeavesAJobWhoseProcessLivesAndSaysSo) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  int64_t id = 0;
  {
    auto store = MustOpen(cfg);
    id = MustSubmit(store.get(), Spec());
    Claimed c = MustClaim(store.get(), Claim(1000));
    ASSERT_TRUE(store->RecordSpawned(id, c.run.id, ProcessIdentity{"boot", 1, 4242, 9, 0}, "/l")
                    .ok());
    WriteImpossibleQueued(cfg.path, id, c.run.id, 4242);
  }
  std::ostringstream out, err;
  EXPECT_EQ(1, RunDbSanitize(cfg, "", Alive, out, err)) << err.str();
  EXPECT_NE(std::string::npos, out.str().find("left job " + std::to_string(id))) << out.str();
  std::ostringstream cout, cerr;
  EXPECT_EQ(1, RunDbCheck(cfg, cout, cerr)) << "still reported: " << cout.str();
}

// On a shared PostgreSQL queue the offline tools see the whole queue but
// check only this host's node's runs: another node's run is never judged by
// this host's /proc.
TEST(DbTools, OnPostgresCheckSeesTheQueueAndSanitizeTouchesOnlyThisNodesRuns) {
  BackendStore pg("postgres");
  Config::Store cfg = pg.config();
  int64_t mine = 0, theirs = 0;
  {
    auto store = pg.Open();
    ASSERT_NE(store, nullptr);
    for (const char* node : {"here", "there"}) {
      int64_t id = MustSubmit(store.get(), Spec());
      ClaimRequest req = Claim(1000);
      req.node_id = node;
      Claimed c = MustClaim(store.get(), req);
      ASSERT_TRUE(
          store->RecordSpawned(id, c.run.id, ProcessIdentity{"b", 1, 4242, 9, 0}, "/l").ok());
      ASSERT_EQ("", pg.Exec(pg.WithoutCheckConstraints() +
                            "UPDATE jobs SET status='queued' WHERE id=" + std::to_string(id)));
      (std::string(node) == "here" ? mine : theirs) = id;
    }
  }
  std::ostringstream out, err;
  EXPECT_EQ(1, RunDbCheck(cfg, out, err)) << err.str();
  EXPECT_NE(std::string::npos, out.str().find("I1 job " + std::to_string(theirs))) << out.str();
  std::vector<int64_t> checked;
  std::ostringstream out2, err2;
  EXPECT_EQ(0, RunDbSanitize(cfg, "here",
                             [&](const orch::Run& r) {
                               checked.push_back(r.job_id);
                               return Result<bool>(false);
                             },
                             out2, err2))
      << err2.str();
  EXPECT_EQ(std::vector<int64_t>{mine}, checked) << "only this node's run is checked";
  EXPECT_NE(std::string::npos, out2.str().find("1 job repaired")) << out2.str();
  EXPECT_EQ("queued", pg.Texts("SELECT status FROM jobs WHERE id=" + std::to_string(theirs))[0]);
  EXPECT_EQ(1, pg.Int("SELECT count(*) FROM runs WHERE ended_at IS NULL"))
      << "the other node's run is left open for its node (or a rescue)";
}

TEST(DbTools, CheckOnMissingDatabaseExitsTwoAndCreatesNothing) {
  TempDir dir;
  Config::Store cfg;
  cfg.path = dir.File("nowhere/orchestrator.db");
  std::ostringstream out, err;
  EXPECT_EQ(2, RunDbCheck(cfg, out, err));
  EXPECT_NE(std::string::npos, err.str().find("cannot open")) << err.str();
  EXPECT_EQ(2, RunDbSanitize(cfg, "", Gone, out, err));
  EXPECT_NE(0, access(dir.File("nowhere").c_str(), F_OK)) << "must not create directories";
  cfg.path = dir.File("missing.db");
  EXPECT_EQ(2, RunDbCheck(cfg, out, err));
  EXPECT_NE(0, access(cfg.path.c_str(), F_OK)) << "must not create the database";
}

TEST(DbTools, CheckOnGarbageFileExitsTwo) {
  TempDir dir;
  Config::Store cfg;
  cfg.path = dir.File("garbage.db");
  WriteFile(cfg.path, std::string(8192, 'x'));
  std::ostringstream out, err;
  EXPECT_EQ(2, RunDbCheck(cfg, out, err));
  EXPECT_NE(std::string::npos, err.str().find("cannot open")) << err.str();
}

}  // namespace
}  // namespace orch::test
