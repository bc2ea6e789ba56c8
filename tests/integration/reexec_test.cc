// Re-exec in place (SPEC §14) against the real binary: SIGUSR2 and
// `orchestrator reexec` with running jobs, clients, a PID namespace, a job
// that exits inside the hand-over, broken new binaries and a lost hand-over.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "integration/daemon_harness.h"

namespace orch {
namespace {

using nlohmann::json;
using test::Daemon;
using test::TempDir;
using test::WaitFor;

std::string Incarnation(const Daemon& d) {
  json q = d.Get("/queue").Json();
  if (q.is_discarded() || !q.contains("supervisor")) return "";
  return q["supervisor"].value("incarnation", "");
}

// Sends SIGUSR2 to `target` and waits for another incarnation in /queue.
bool ReexecBySignal(const Daemon& d, pid_t target) {
  std::string before = Incarnation(d);
  if (before.empty() || kill(target, SIGUSR2) != 0) return false;
  return WaitFor(
             [&] {
               std::string now = Incarnation(d);
               return !now.empty() && now != before;
             },
             std::chrono::seconds(30)) &&
         WaitFor([&] { return d.Get("/readyz").status == 200; });
}

double Metric(const Daemon& d, const std::string& name) {
  std::string text = d.Get("/metrics").body;
  size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + name.size() + 2));
}

// A job that writes `marker` if it is ever sent SIGTERM, waits for the file
// `go`, sleeps `then_s`, and exits with `code`: it runs until the test says.
json Waiter(const std::string& marker, const std::string& go, int code, double then_s = 0) {
  std::string script = "trap 'echo term > " + marker + "; exit 143' TERM; while [ ! -e " + go +
                       " ]; do sleep 0.02; done; sleep " + std::to_string(then_s) + "; exit " +
                       std::to_string(code);
  return {{"argv", {"sh", "-c", script}}, {"max_attempts", 1}};
}

void Touch(const std::string& path) { std::ofstream(path) << "go"; }

bool WaitEnded(const Daemon& d, int64_t id) {
  return WaitFor(
      [&] {
        std::string s = d.Job(id).value("status", "");
        return s == "succeeded" || s == "failed" || s == "cancelled";
      },
      std::chrono::seconds(30));
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

TEST(Reexec, TwentyRunningJobsAreHandedOverUntouched) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 20\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string go = dir.File("go");
  std::vector<int64_t> ids;
  std::vector<int> codes;
  for (int i = 0; i < 18; ++i) {
    codes.push_back(i % 4);
    ids.push_back(d.Submit(Waiter(dir.File("term-" + std::to_string(i)), go, i % 4, 0.05 * i)));
  }
  // Killed by a signal of its own: its end says so after the hand-over too.
  int64_t killed = d.Submit(
      {{"argv", {"sh", "-c", "while [ ! -e " + go + " ]; do sleep 0.02; done; kill -KILL $$"}},
       {"max_attempts", 1}});
  // Counts every 100 ms until `go` (and at least to 40): its log must have
  // no gap and no repeat across the re-exec.
  int64_t printer = d.Submit({{"argv",
                               {"sh", "-c",
                                "i=0; while [ ! -e " + go + " ] || [ $i -lt 40 ]; do echo $i; "
                                "i=$((i+1)); sleep 0.1; done"}},
                              {"max_attempts", 1}});
  for (int64_t id : ids) ASSERT_TRUE(d.WaitStatus(id, "running")) << id;
  ASSERT_TRUE(d.WaitStatus(killed, "running"));
  ASSERT_TRUE(d.WaitStatus(printer, "running"));
  json before = d.Get("/queue").Json();
  ASSERT_EQ(20u, before["running"].size());
  std::map<int64_t, int64_t> pid_of;
  for (const json& r : before["running"]) pid_of[r["id"].get<int64_t>()] = r["pid"].get<int64_t>();

  ASSERT_TRUE(ReexecBySignal(d, d.pid())) << d.Log();
  json after = d.Get("/queue").Json();
  EXPECT_EQ(before["supervisor"]["pid"], after["supervisor"]["pid"]);
  EXPECT_EQ(d.pid(), after["supervisor"]["pid"].get<pid_t>());
  EXPECT_NE(before["supervisor"]["incarnation"], after["supervisor"]["incarnation"]);
  // The same processes, still running, under the new incarnation.
  ASSERT_EQ(20u, after["running"].size()) << after.dump();
  for (const json& r : after["running"]) {
    EXPECT_EQ(pid_of[r["id"].get<int64_t>()], r["pid"].get<int64_t>());
  }
  Touch(go);

  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_TRUE(WaitEnded(d, ids[i]));
    json job = d.Job(ids[i]);
    ASSERT_EQ(1u, job["runs"].size()) << job.dump();
    EXPECT_EQ(codes[i] == 0 ? "succeeded" : "failed", job["status"]) << job.dump();
    EXPECT_EQ(json(codes[i]), job["runs"][0]["exit_code"]) << job.dump();
    EXPECT_EQ(after["supervisor"]["incarnation"], job["runs"][0]["incarnation"]) << job.dump();
    EXPECT_FALSE(std::filesystem::exists(dir.File("term-" + std::to_string(i))))
        << "job " << ids[i] << " was sent SIGTERM";
  }
  ASSERT_TRUE(WaitEnded(d, killed));
  json k = d.Job(killed);
  ASSERT_EQ(1u, k["runs"].size());
  EXPECT_EQ(json(9), k["runs"][0]["signal"]) << k.dump();
  ASSERT_TRUE(WaitEnded(d, printer));
  json p = d.Job(printer);
  EXPECT_EQ("succeeded", p["status"]) << p.dump();
  std::string log = d.Get("/jobs/" + std::to_string(printer) + "/log").body;
  std::string expected;
  for (int i = 0; expected.size() < log.size(); ++i) expected += std::to_string(i) + "\n";
  EXPECT_EQ(expected, log);
  EXPECT_GE(std::count(log.begin(), log.end(), '\n'), 40);

  EXPECT_EQ(1, Metric(d, "orchestrator_handovers_total"));
  EXPECT_EQ(20, Metric(d, "orchestrator_runs_continued_total"));
  EXPECT_GT(Metric(d, "orchestrator_last_handover_pause_seconds"), 0);
  EXPECT_NE(std::string::npos, d.Log().find("re-exec done")) << d.Log();
  EXPECT_EQ(0, d.Stop());
}

// One GET /healthz on a kept-alive connection; false on any failure.
bool HealthzOn(int fd) {
  std::string req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    return false;
  }
  std::string got;
  char buf[4096];
  while (true) {
    size_t head = got.find("\r\n\r\n");
    if (head != std::string::npos) {
      size_t cl = got.find("Content-Length: ");
      if (cl != std::string::npos && cl < head) {
        size_t len = std::stoul(got.substr(cl + 16));
        if (got.size() >= head + 4 + len) return got.rfind("HTTP/1.1 200", 0) == 0;
      }
    }
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
  }
}

TEST(Reexec, ClientsHammeringHealthzThroughTheReexecSeeNoFailure) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t job = d.Submit(Waiter(dir.File("term"), dir.File("go"), 0));
  ASSERT_TRUE(d.WaitStatus(job, "running"));
  std::atomic<bool> done{false};
  std::atomic<int> fresh_ok{0}, fresh_failed{0}, kept_ok{0}, kept_failed{0};
  // A new connection per request, and one connection kept alive throughout.
  std::thread fresh([&] {
    while (!done) {
      test::HttpResult r = test::HttpCall("GET", d.url() + "/healthz");
      (r.status == 200 ? fresh_ok : fresh_failed)++;
    }
  });
  std::thread kept([&] {
    int fd = test::ConnectTcp(d.address());
    while (!done && fd >= 0) (HealthzOn(fd) ? kept_ok : kept_failed)++;
    if (fd < 0) kept_failed++;
    close(fd);
  });
  ASSERT_TRUE(WaitFor([&] { return fresh_ok > 20 && kept_ok > 20; }));
  for (int i = 0; i < 3; ++i) {
    int fresh_before = fresh_ok, kept_before = kept_ok;
    EXPECT_TRUE(ReexecBySignal(d, d.pid())) << d.Log();
    // The kept connection goes on in the new image.
    EXPECT_TRUE(
        WaitFor([&] { return fresh_ok > fresh_before + 50 && kept_ok > kept_before + 50; }));
  }
  done = true;
  fresh.join();
  kept.join();
  EXPECT_EQ(0, fresh_failed.load()) << "of " << fresh_ok.load();
  EXPECT_EQ(0, kept_failed.load()) << "of " << kept_ok.load();
  EXPECT_EQ(3, Metric(d, "orchestrator_handovers_total"));
  EXPECT_EQ("running", d.Job(job)["status"]);
  EXPECT_FALSE(std::filesystem::exists(dir.File("term")));
  EXPECT_EQ(0, d.Stop());
}

TEST(Reexec, AsPid1ItStillReapsOrphansAndItsJobsFinish) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start({"unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"}))
      << d.Log();
  int64_t longer = d.Submit(Waiter(dir.File("term"), dir.File("go"), 4));
  ASSERT_TRUE(d.WaitStatus(longer, "running"));
  pid_t daemon_pid = d.DaemonPid();
  ASSERT_TRUE(ReexecBySignal(d, daemon_pid)) << d.Log();
  EXPECT_EQ(1, d.Get("/queue").Json()["supervisor"]["pid"].get<int>()) << "still PID 1";
  Touch(dir.File("go"));

  std::string marker = dir.File("escaped");
  int64_t escapee = d.Submit({{"argv",
                               {"sh", "-c",
                                "setsid sh -c 'touch " + marker + "; sleep 0.5' & while [ ! -e " +
                                    marker + " ]; do sleep 0.01; done; exit 0"}}});
  ASSERT_TRUE(d.WaitStatus(escapee, "succeeded"));
  ASSERT_TRUE(WaitEnded(d, longer));
  json job = d.Job(longer);
  ASSERT_EQ(1u, job["runs"].size());
  EXPECT_EQ(json(4), job["runs"][0]["exit_code"]) << job.dump();
  EXPECT_FALSE(std::filesystem::exists(dir.File("term")));
  EXPECT_TRUE(WaitFor([&] { return !test::HasChildren(daemon_pid); }, std::chrono::seconds(10)))
      << "the escaped grandchild was reaped by the new image as PID 1";
  EXPECT_EQ(0, d.Stop());
}

#ifdef ORCH_TEST_HOOKS
TEST(Reexec, AJobThatExitsDuringTheHandOverIsRecordedWithItsRealStatus) {
  TempDir dir;
  // The old image stands still 1.5 s between the hand-over and the execve.
  Daemon d(dir, "", {"ORCH_TEST_HANDOVER_DELAY_MS=1500"});
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string go = dir.File("go");
  int64_t id =
      d.Submit({{"argv", {"sh", "-c", "while [ ! -e " + go + " ]; do sleep 0.01; done; exit 7"}},
                {"max_attempts", 1}});
  ASSERT_TRUE(d.WaitStatus(id, "running"));
  std::string before = Incarnation(d);
  ASSERT_EQ(0, kill(d.pid(), SIGUSR2));
  ASSERT_TRUE(WaitFor([&] { return d.Log().find("re-exec: handing over") != std::string::npos; }));
  Touch(go);
  ASSERT_TRUE(WaitEnded(d, id)) << d.Log();
  json job = d.Job(id);
  ASSERT_EQ(1u, job["runs"].size()) << job.dump();
  EXPECT_EQ("failed", job["status"]);
  EXPECT_EQ(json(7), job["runs"][0]["exit_code"]) << job.dump();
  EXPECT_EQ("exit 7", job["runs"][0]["reason"]) << job.dump();
  EXPECT_NE(before, Incarnation(d));
  EXPECT_EQ(0, d.Stop());
}

TEST(Reexec, AnUnreadableHandOverFallsBackToRecoveryAndNoJobRunsTwice) {
  TempDir dir;
  int port = FreePort();
  Daemon d(dir,
           "[server]\nlisten = \"127.0.0.1:" + std::to_string(port) +
               "\"\n[supervisor]\nmax_concurrency = 8\n",
           {"ORCH_TEST_HANDOVER=corrupt", "ORCH_TEST_HANDOVER_DELAY_MS=1000"});
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string go = dir.File("go");
  // One ends inside the hand-over (a zombie the new image must not lose),
  // the others after it.
  int64_t early =
      d.Submit({{"argv", {"sh", "-c", "while [ ! -e " + go + " ]; do sleep 0.01; done; exit 5"}},
                {"max_attempts", 1}});
  std::vector<int64_t> later;
  for (int i = 0; i < 4; ++i)
    later.push_back(d.Submit(Waiter(dir.File("term-" + std::to_string(i)), dir.File("go2"), i)));
  ASSERT_TRUE(d.WaitStatus(early, "running"));
  for (int64_t id : later) ASSERT_TRUE(d.WaitStatus(id, "running"));
  std::string before = Incarnation(d);
  ASSERT_EQ(0, kill(d.pid(), SIGUSR2));
  ASSERT_TRUE(WaitFor([&] { return d.Log().find("re-exec: handing over") != std::string::npos; }));
  Touch(go);
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string now = Incarnation(d);
        return !now.empty() && now != before;
      },
      std::chrono::seconds(30)))
      << d.Log();
  EXPECT_NE(std::string::npos, d.Log().find("cannot be read")) << d.Log();
  Touch(dir.File("go2"));

  ASSERT_TRUE(WaitEnded(d, early));
  json e = d.Job(early);
  ASSERT_EQ(1u, e["runs"].size()) << e.dump();
  EXPECT_EQ(json(5), e["runs"][0]["exit_code"]) << e.dump();
  for (size_t i = 0; i < later.size(); ++i) {
    ASSERT_TRUE(WaitEnded(d, later[i]));
    json job = d.Job(later[i]);
    ASSERT_EQ(1u, job["runs"].size()) << "ran once: " << job.dump();
    EXPECT_EQ(json(static_cast<int>(i)), job["runs"][0]["exit_code"]) << job.dump();
    EXPECT_FALSE(std::filesystem::exists(dir.File("term-" + std::to_string(i))));
  }
  EXPECT_EQ(0, d.Stop());
}
#endif

TEST(Reexec, ABrokenNewBinaryIsNotExecutedAndTheOldImageGoesOn) {
  TempDir dir;
  std::string bin_dir = dir.File("bin");
  std::filesystem::create_directories(bin_dir);
  std::string binary = bin_dir + "/orchestrator";
  std::filesystem::copy_file(test::OrchestratorBinary(), binary);
  Daemon d(dir, "[supervisor]\nmax_concurrency = 2\n");
  d.UseBinary(binary, d.config_path());
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t job = d.Submit(Waiter(dir.File("term"), dir.File("go"), 0));
  ASSERT_TRUE(d.WaitStatus(job, "running"));
  std::string incarnation = Incarnation(d);
  // A package upgrade replaces the file by a rename; so do these.
  auto install = [&](const std::string& content_from, mode_t mode) {
    std::string next = binary + ".new";
    std::filesystem::remove(next);
    std::filesystem::copy_file(content_from, next);
    chmod(next.c_str(), mode);
    std::filesystem::rename(next, binary);
  };
  std::string script = dir.File("broken.sh");
  std::ofstream(script) << "#!/bin/sh\necho 'this build is broken' >&2\nexit 2\n";

  install(test::OrchestratorBinary(), 0644);
  test::HttpResult r = d.Post("/admin/reexec");
  EXPECT_EQ(409, r.status) << r.body;
  EXPECT_NE(std::string::npos, r.body.find("cannot run the new binary")) << r.body;

  install(script, 0755);
  r = d.Post("/admin/reexec");
  EXPECT_EQ(409, r.status) << r.body;
  EXPECT_NE(std::string::npos, r.body.find("failed its self-check")) << r.body;
  EXPECT_NE(std::string::npos, r.body.find("this build is broken")) << r.body;
  ASSERT_EQ(0, kill(d.pid(), SIGUSR2));
  EXPECT_TRUE(WaitFor([&] {
    std::string log = d.Log();
    size_t first = log.find("re-exec abandoned");
    return first != std::string::npos &&
           log.find("re-exec abandoned", first + 1) != std::string::npos &&
           log.find("re-exec abandoned", log.find("re-exec abandoned", first + 1) + 1) !=
               std::string::npos;
  })) << d.Log();
  test::CommandResult cli = test::RunCommand({test::OrchestratorBinary(), "reexec", "--server",
                                              d.url(), "--token-file", dir.File("var/token")});
  EXPECT_EQ(1, cli.exit_code) << cli.out << cli.err;
  EXPECT_NE(std::string::npos, cli.err.find("failed its self-check")) << cli.err;

  // Nothing changed: the same image, the job untouched and still claimed for.
  EXPECT_EQ(incarnation, Incarnation(d));
  EXPECT_EQ("running", d.Job(job)["status"]);
  int64_t after = d.Submit({{"argv", {"true"}}});
  EXPECT_TRUE(d.WaitStatus(after, "succeeded"));

  // A good binary again: `orchestrator reexec` upgrades and says so.
  install(test::OrchestratorBinary(), 0755);
  cli = test::RunCommand({test::OrchestratorBinary(), "reexec", "--server", d.url(), "--token-file",
                          dir.File("var/token")});
  EXPECT_EQ(0, cli.exit_code) << cli.out << cli.err;
  EXPECT_NE(std::string::npos, cli.out.find("re-executed in place: pid " + std::to_string(d.pid())))
      << cli.out;
  EXPECT_NE(incarnation, Incarnation(d));
  EXPECT_EQ("running", d.Job(job)["status"]);
  EXPECT_FALSE(std::filesystem::exists(dir.File("term")));
  EXPECT_EQ(0, d.Stop());
}

TEST(Reexec, TwiceInARowWhileJobsAreSubmittedAndClaimed) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 4\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  std::atomic<bool> stop{false};
  std::atomic<int> refused{0};
  std::vector<int64_t> ids;
  std::thread submitter([&] {
    for (int i = 0; i < 300 && !stop; ++i) {
      int64_t id = d.Submit(
          {{"argv", {"sh", "-c", "sleep 0.0" + std::to_string(i % 10)}}, {"max_attempts", 1}});
      if (id < 0) {
        refused++;
      } else {
        ids.push_back(id);
      }
    }
  });
  ASSERT_TRUE(WaitFor([&] { return Metric(d, "orchestrator_jobs_claimed_total") > 10; }));
  EXPECT_TRUE(ReexecBySignal(d, d.pid())) << d.Log();
  EXPECT_TRUE(ReexecBySignal(d, d.pid())) << d.Log();
  submitter.join();
  EXPECT_EQ(0, refused.load());
  ASSERT_GT(ids.size(), 100u);
  for (int64_t id : ids) {
    ASSERT_TRUE(d.WaitStatus(id, "succeeded", std::chrono::seconds(60))) << d.Job(id).dump();
    EXPECT_EQ(1u, d.Job(id)["runs"].size()) << d.Job(id).dump();
  }
  EXPECT_EQ(2, Metric(d, "orchestrator_handovers_total"));
  EXPECT_EQ(0, d.Stop());
}

}  // namespace
}  // namespace orch
