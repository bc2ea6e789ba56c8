// What a job running as an unprivileged user (supervisor.run_as) can make
// the root daemon do with files: nothing outside log_dir (SPEC §7).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "integration/daemon_harness.h"

namespace orch {
namespace {

using nlohmann::json;
using test::Daemon;
using test::ReadFile;
using test::TempDir;
using test::WaitFor;
using test::WriteFile;

// Waits until the reaper (which caps logs) has ticked `n` more times.
bool WaitTicks(const Daemon& d, int64_t n) {
  auto ticks = [&] { return d.Get("/queue").Json().value("reaper", json::object()).value("ticks_total", int64_t{0}); };
  int64_t start = ticks();
  return WaitFor([&] { return ticks() >= start + n; });
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename());
  return out;
}

class RunAsFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    // Everything but the daemon's own tree is reachable for the job user.
    chmod(dir_.path().c_str(), 0755);
    chmod(outside_.path().c_str(), 0777);
    victim_ = outside_.File("victim");
    WriteFile(victim_, std::string(5000, 'v'));
    chmod(victim_.c_str(), 0644);
  }
  std::string LogDir() const { return dir_.File("var/logs"); }

  TempDir dir_, outside_;
  std::string victim_;
};

TEST_F(RunAsFiles, AJobCannotSwapItsLogOrPlantTheNextJobsDirectory) {
  Daemon d(dir_, "[supervisor]\nrun_as = \"nobody:nogroup\"\nmax_log_bytes = 1024\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string logs = LogDir();
  std::string attack =
      "yes o | head -c 3000; "
      "rm -f " + logs + "/1/1.out; ln -s " + victim_ + " " + logs + "/1/1.out && echo SWAPPED; "
      "ln -s " + outside_.path() + " " + logs + "/2 && echo PLANTED; "
      "touch " + logs + "/1/x && echo WROTE; true";
  int64_t id = d.Submit({{"argv", {"sh", "-c", attack}}, {"cwd", "/"}});
  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Job(id).dump();
  ASSERT_TRUE(WaitTicks(d, 2));

  std::string out = d.Get("/jobs/" + std::to_string(id) + "/log").body;
  EXPECT_EQ(std::string::npos, out.find("SWAPPED")) << out;
  EXPECT_EQ(std::string::npos, out.find("PLANTED")) << out;
  EXPECT_EQ(std::string::npos, out.find("WROTE")) << out;
  EXPECT_NE(std::string::npos, out.find("bytes dropped]")) << "its own log was capped: " << out;
  std::string err = d.Get("/jobs/" + std::to_string(id) + "/log?stream=stderr").body;
  EXPECT_NE(std::string::npos, err.find("Permission denied")) << err;

  // The next job's logs land in a directory of the daemon's, not outside.
  int64_t next = d.Submit({{"argv", {"sh", "-c", "echo second"}}, {"cwd", "/"}});
  ASSERT_TRUE(d.WaitStatus(next, "succeeded")) << d.Job(next).dump();
  EXPECT_EQ("second\n", d.Get("/jobs/" + std::to_string(next) + "/log").body);
  struct stat st {};
  ASSERT_EQ(0, lstat((logs + "/" + std::to_string(next)).c_str(), &st));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(0u, st.st_uid) << "never chowned to the job user";
  ASSERT_EQ(0, lstat(logs.c_str(), &st));
  EXPECT_EQ(0u, st.st_mode & 0027) << std::oct << st.st_mode;

  EXPECT_EQ(std::string(5000, 'v'), ReadFile(victim_));
  EXPECT_EQ(std::vector<std::string>{"victim"}, Entries(outside_.path()));
  EXPECT_EQ(0, d.Stop());
}

// Defense in depth: even if a log's name is swapped (here by the test, as
// root), capping goes through the daemon's fd and the endpoint refuses.
TEST_F(RunAsFiles, ASwappedLogNameIsNeitherTruncatedNorServed) {
  Daemon d(dir_, "[supervisor]\nrun_as = \"nobody:nogroup\"\nmax_log_bytes = 1024\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"sh", "-c", "yes o | head -c 3000; exec sleep 60"}}, {"cwd", "/"}});
  ASSERT_TRUE(d.WaitStatus(id, "running"));
  json j;
  ASSERT_TRUE(WaitFor([&] {
    j = d.Job(id);
    return j.at("runs").size() == 1 && !j["runs"][0].at("log_path").is_null();
  })) << j.dump();
  std::string out_path = j["runs"][0]["log_path"].get<std::string>();
  std::string err_path = out_path.substr(0, out_path.size() - 4) + ".err";
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::file_size(out_path) >= 1024; }));

  ASSERT_EQ(0, unlink(out_path.c_str()));
  ASSERT_EQ(0, symlink(victim_.c_str(), out_path.c_str()));
  ASSERT_EQ(0, unlink(err_path.c_str()));
  ASSERT_EQ(0, mkfifo(err_path.c_str(), 0640));
  ASSERT_TRUE(WaitTicks(d, 3));
  EXPECT_EQ(std::string(5000, 'v'), ReadFile(victim_)) << "the cap followed the link";

  auto served = d.Get("/jobs/" + std::to_string(id) + "/log");
  EXPECT_EQ(403, served.status) << served.body;
  EXPECT_EQ("log_refused", served.Json()["error"]["code"]) << served.body;
  EXPECT_EQ(std::string::npos, served.body.find("vvvv"));
  auto fifo = d.Get("/jobs/" + std::to_string(id) + "/log?stream=stderr");
  EXPECT_EQ(403, fifo.status) << fifo.body;
  EXPECT_EQ(200, d.Get("/healthz").status) << "a FIFO must not hang the loop";

  EXPECT_EQ(202, d.Post("/jobs/" + std::to_string(id) + "/cancel").status);
  ASSERT_TRUE(d.WaitStatus(id, "cancelled"));
  EXPECT_EQ(std::string(5000, 'v'), ReadFile(victim_));
  EXPECT_EQ(0, d.Stop());
}

}  // namespace
}  // namespace orch
