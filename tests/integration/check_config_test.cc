// `orchestrator check-config` against the real binary.
#include <gtest/gtest.h>
#include <unistd.h>

#include "support/test_util.h"

namespace orch {
namespace {

using test::OrchestratorBinary;
using test::RunCommand;

TEST(CheckConfig, RootConfigIsValidAndPrinted) {
  auto r = RunCommand({OrchestratorBinary(), "check-config", "--config",
                       test::SourceDir() + "/orchestrator.toml"});
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_NE(std::string::npos, r.out.find("max_concurrency = 1"));
  EXPECT_NE(std::string::npos, r.out.find("# file"));
}

TEST(CheckConfig, UnknownSupervisorKeyExitsTwoNamingKeyAndLine) {
  test::TempDir dir;
  test::WriteFile(dir.File("bad.toml"), "[supervisor]\nmax_concurrency = 1\nmax_concurrancy = 2\n");
  auto r = RunCommand({OrchestratorBinary(), "check-config", "--config", dir.File("bad.toml")});
  EXPECT_EQ(2, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("bad.toml:3:1")) << r.err;
  EXPECT_NE(std::string::npos, r.err.find("supervisor.max_concurrancy")) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(CheckConfig, BadEnvironmentValueExitsTwoNamingTheVariable) {
  auto r = RunCommand({OrchestratorBinary(), "check-config", "--config",
                       test::SourceDir() + "/orchestrator.toml"},
                      {"ORCH_MAX_CONCURRENCY=abc"});
  EXPECT_EQ(2, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("ORCH_MAX_CONCURRENCY")) << r.err;
}

TEST(CheckConfig, FlagBeatsEnvironment) {
  auto r = RunCommand({OrchestratorBinary(), "check-config", "--config",
                       test::SourceDir() + "/orchestrator.toml", "--max-concurrency", "7"},
                      {"ORCH_MAX_CONCURRENCY=3"});
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_NE(std::string::npos, r.out.find("max_concurrency = 7")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("# flag"));
}

TEST(Cli, VersionAndHelpWork) {
  auto v = RunCommand({OrchestratorBinary(), "--version"});
  EXPECT_EQ(0, v.exit_code);
  EXPECT_NE(std::string::npos, v.out.find("orchestrator "));
  for (const char* sub : {"serve", "check-config", "submit", "status", "jobs", "show", "cancel",
                          "retry", "logs", "db"}) {
    auto h = RunCommand({OrchestratorBinary(), sub, "--help"});
    EXPECT_EQ(0, h.exit_code) << sub;
    EXPECT_FALSE(h.out.empty()) << sub;
  }
}

TEST(Cli, UnknownSubcommandIsAUsageError) {
  auto r = RunCommand({OrchestratorBinary(), "frobnicate"});
  EXPECT_EQ(2, r.exit_code);
}

}  // namespace
}  // namespace orch

namespace orch {
namespace {

// A config found in the current directory (not named with --config) that
// someone else could have written is refused, not used by a root daemon.
TEST(CheckConfig, AnImplicitConfigSomeoneElseOwnsIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  test::TempDir dir;
  std::string planted = dir.File("orchestrator.toml");
  test::WriteFile(planted, "[supervisor]\nmax_concurrency = 7\n");
  ASSERT_EQ(0, chown(planted.c_str(), 65534, 65534));
  auto r = RunCommand({"sh", "-c", "cd '" + dir.path() + "' && exec '" + OrchestratorBinary() +
                                       "' check-config"});
  EXPECT_EQ(2, r.exit_code) << r.out;
  EXPECT_NE(std::string::npos, r.err.find("refusing to use it")) << r.err;
  EXPECT_EQ(std::string::npos, r.out.find("max_concurrency = 7"));

  ASSERT_EQ(0, chown(planted.c_str(), 0, 0));
  auto owned = RunCommand({"sh", "-c", "cd '" + dir.path() + "' && exec '" +
                                           OrchestratorBinary() + "' check-config"});
  EXPECT_EQ(0, owned.exit_code) << owned.err;
  EXPECT_NE(std::string::npos, owned.out.find("max_concurrency = 7")) << owned.out;
}

}  // namespace
}  // namespace orch
