// Operator-facing behaviour of the real daemon: SIGHUP reload, run_as,
// per-run log caps, input validation of argv/env/cwd.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "integration/daemon_harness.h"

namespace orch {
namespace {

using nlohmann::json;
using test::Daemon;
using test::TempDir;
using test::WaitFor;

TEST(Reload, SighupAppliesReloadableKeysAndLogsWhatChanged) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 1\nshutdown_grace_s = 20\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t a = d.Submit({{"argv", {"sleep", "30"}}});
  int64_t b = d.Submit({{"argv", {"sleep", "30"}}});
  ASSERT_TRUE(d.WaitStatus(a, "running"));
  EXPECT_EQ("queued", d.Job(b)["status"]);

  std::string cfg = test::ReadFile(d.config_path());
  cfg.replace(cfg.find("max_concurrency = 1"), 19, "max_concurrency = 2");
  cfg.replace(cfg.find("shutdown_grace_s = 20"), 21, "shutdown_grace_s = 5");
  test::WriteFile(d.config_path(), cfg);
  kill(d.DaemonPid(), SIGHUP);
  EXPECT_TRUE(d.WaitStatus(b, "running")) << "claiming reacts to the reload";
  EXPECT_EQ(2, d.Get("/queue").Json()["max_concurrency"]);
  std::string log = d.Log();
  EXPECT_NE(std::string::npos, log.find("config changed key=supervisor.max_concurrency from=1 to=2"));
  EXPECT_NE(std::string::npos, log.find("needs a restart; ignored key=supervisor.shutdown_grace_s"));

  test::WriteFile(d.config_path(), cfg + "[bogus]\n");
  kill(d.DaemonPid(), SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return d.Log().find("reload rejected") != std::string::npos; }));
  EXPECT_EQ(200, d.Get("/healthz").status) << "a bad reload keeps the running config";
  EXPECT_EQ(0, d.Stop());
}

TEST(RunAs, JobsDropToTheUserAndCannotRegainRoot) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  TempDir dir;
  chmod(dir.path().c_str(), 0755);
  Daemon d(dir, "[supervisor]\nrun_as = \"nobody:nogroup\"\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"sh", "-c", "id -u; id -g; id -G; echo $HOME; "
                                               "su -c true root 2>/dev/null && echo REGAINED; "
                                               "cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs)'"}},
                         {"cwd", "/"}});
  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Job(id).dump();
  std::string out = d.Get("/jobs/" + std::to_string(id) + "/log").body;
  EXPECT_EQ(0u, out.find("65534\n65534\n65534\n")) << out;
  EXPECT_EQ(std::string::npos, out.find("REGAINED")) << out;
  EXPECT_NE(std::string::npos, out.find("CapEff:\t0000000000000000")) << out;
}

TEST(LogCap, OutputBeyondMaxLogBytesIsCutAndTheCutIsNoted) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_log_bytes = 4096\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"sh", "-c", "yes xxxxxxx | head -c 100000"}}});
  ASSERT_TRUE(d.WaitStatus(id, "succeeded"));
  std::string out = d.Get("/jobs/" + std::to_string(id) + "/log").body;
  std::string expected;
  while (expected.size() < 4096) expected += "xxxxxxx\n";
  EXPECT_EQ(expected.substr(0, 4096), out.substr(0, 4096));
  EXPECT_NE(std::string::npos, out.find("[orchestrator: output cut at the max_log_bytes limit; 95904 bytes dropped]"))
      << out.substr(4096);
  EXPECT_LT(out.size(), 4300u);
}

TEST(Validation, NulBytesAndHugeInputsAreRefused) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  EXPECT_EQ(400, d.Post("/jobs", "{\"argv\":[\"a\\u0000b\"]}").status);
  EXPECT_EQ(400, d.Post("/jobs", "{\"argv\":[\"true\"],\"env\":{\"A\":\"x\\u0000\"}}").status);
  EXPECT_EQ(400, d.Post("/jobs", "{\"argv\":[\"true\"],\"env\":{\"A=B\":\"x\"}}").status);
  EXPECT_EQ(400, d.Post("/jobs", "{\"argv\":[\"true\"],\"cwd\":\"/tmp\\u0000x\"}").status);
  EXPECT_EQ(400, d.Post("/jobs", "{\"argv\":[\"true\"],\"name\":\"" + std::string(300, 'n') + "\"}").status);
  EXPECT_EQ(400, d.Post("/jobs", "{\"argv\":[\"true\"],\"priority\":99999999999}").status);
  // The log path comes from ids, never from the job's name or argv.
  int64_t id = d.Submit({{"argv", {"true"}}, {"name", "../../etc/passwd"}});
  ASSERT_TRUE(d.WaitStatus(id, "succeeded"));
  std::string path = d.Job(id)["runs"][0]["log_path"];
  EXPECT_EQ(dir.File("var/logs/" + std::to_string(id) + "/" +
                     std::to_string(d.Job(id)["runs"][0]["id"].get<int64_t>()) + ".out"),
            path);
}

}  // namespace
}  // namespace orch
