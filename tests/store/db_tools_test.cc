#include "store/db_tools.h"

#include <unistd.h>

#include <sstream>

#include <gtest/gtest.h>

#include "store/store_fixture.h"

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
    EXPECT_EQ(0, RunDbSanitize(cfg, Gone, out, err)) << err.str();
    EXPECT_NE(std::string::npos, out.str().find("repaired job " + std::to_string(id)))
        << out.str();
    EXPECT_NE(std::string::npos, out.str().find("1 job repaired")) << out.str();
  }
  std::ostringstream out, err;
  EXPECT_EQ(0, RunDbCheck(cfg, out, err)) << out.str();
  std::ostringstream out2, err2;
  EXPECT_EQ(0, RunDbSanitize(cfg, Gone, out2, err2));
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
  EXPECT_EQ(1, RunDbSanitize(cfg, Alive, out, err)) << err.str();
  EXPECT_NE(std::string::npos, out.str().find("left job " + std::to_string(id))) << out.str();
  std::ostringstream cout, cerr;
  EXPECT_EQ(1, RunDbCheck(cfg, cout, cerr)) << "still reported: " << cout.str();
}

TEST(DbTools, CheckOnMissingDatabaseExitsTwoAndCreatesNothing) {
  TempDir dir;
  Config::Store cfg;
  cfg.path = dir.File("nowhere/orchestrator.db");
  std::ostringstream out, err;
  EXPECT_EQ(2, RunDbCheck(cfg, out, err));
  EXPECT_NE(std::string::npos, err.str().find("cannot open")) << err.str();
  EXPECT_EQ(2, RunDbSanitize(cfg, Gone, out, err));
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
