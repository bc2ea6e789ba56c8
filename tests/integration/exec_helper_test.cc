// The exec helper (orchestrator-exec) is used only from next to the daemon's
// binary and only when nobody but root can change it; otherwise the daemon
// says so and spawns the old way, and jobs still run.
#include <sys/stat.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "integration/daemon_harness.h"

namespace orch {
namespace {

namespace fs = std::filesystem;
using test::Daemon;
using test::TempDir;

bool Runs(Daemon& d) {
  int64_t id = d.Submit({{"argv", {"sh", "-c", "echo ran"}}, {"max_attempts", 1}});
  return id > 0 && d.WaitStatus(id, "succeeded");
}

TEST(ExecHelper, TheBuiltDaemonSpawnsThroughItsHelper) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start());
  ASSERT_TRUE(Runs(d));
  ASSERT_NE(std::string::npos, d.Log().find("orchestrator started")) << d.Log();
  EXPECT_EQ(std::string::npos, d.Log().find("exec helper")) << d.Log();
  EXPECT_EQ(0, d.Stop());
}

TEST(ExecHelper, AMissingOrUntrustedHelperIsNotUsedAndJobsStillRun) {
  TempDir dir;
  fs::create_directories(dir.File("bin"));
  std::string bin = dir.File("bin/orchestrator");
  fs::copy_file(test::OrchestratorBinary(), bin);
  Daemon d(dir);
  d.UseBinary(bin, d.config_path());
  ASSERT_TRUE(d.Start());
  ASSERT_TRUE(Runs(d));
  EXPECT_NE(std::string::npos, d.Log().find("exec helper not found")) << d.Log();
  EXPECT_EQ(0, d.Stop());

  // One that others may change is not exec'd as root.
  std::string helper = dir.File("bin/orchestrator-exec");
  fs::copy_file(fs::path(test::OrchestratorBinary()).parent_path() / "orchestrator-exec", helper);
  ASSERT_EQ(0, chmod(helper.c_str(), 0775));
  ASSERT_TRUE(d.Start());
  ASSERT_TRUE(Runs(d));
  EXPECT_NE(std::string::npos, d.Log().find("exec helper not used")) << d.Log();
  EXPECT_EQ(0, d.Stop());
}

}  // namespace
}  // namespace orch
