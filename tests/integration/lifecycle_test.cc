// End to end: the real daemon runs real jobs; each expectation in words.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <sstream>

#include <gtest/gtest.h>

#include "integration/daemon_harness.h"

namespace orch {
namespace {

using nlohmann::json;
using test::Daemon;
using test::TempDir;
using test::WaitFor;

constexpr const char* kFastRetry =
    "[supervisor]\nmax_concurrency = 2\nbackoff_base_s = 0.05\nbackoff_max_s = 0.2\n"
    "kill_grace_s = 1\nshutdown_grace_s = 3\n";

TEST(Lifecycle, ExitZeroSucceedsAndTheLogIsReadable) {
  TempDir dir;
  Daemon d(dir, kFastRetry);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"sh", "-c", "echo hello; echo oops >&2"}}});
  ASSERT_GT(id, 0);
  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Job(id).dump();
  json j = d.Job(id);
  EXPECT_EQ(0, j["exit_code"]);
  EXPECT_EQ("succeeded", j["outcome"]);
  ASSERT_EQ(1u, j.at("runs").size());
  EXPECT_EQ(j.at("runs").at(0).at("id"), j.at("run_id")) << "run_id is kept after the job finishes";
  EXPECT_TRUE(j.at("pid").is_null()) << "pid only while running";
  EXPECT_EQ("exit 0", j["runs"][0]["reason"]);
  EXPECT_EQ("hello\n", d.Get("/jobs/" + std::to_string(id) + "/log").body);
  EXPECT_EQ("oops\n", d.Get("/jobs/" + std::to_string(id) + "/log?stream=stderr").body);
  EXPECT_EQ("lo\n", d.Get("/jobs/" + std::to_string(id) + "/log?tail_bytes=3").body);
  EXPECT_EQ(0, d.Stop());
}

// SPEC §13: a log tail follows with ?offset= and X-Log-Offset, and knows
// from X-Log-Complete when the run's last byte is out.
TEST(Lifecycle, ALogIsFollowedByOffsetUntilItsRunEnds) {
  TempDir dir;
  Daemon d(dir, kFastRetry);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"sh", "-c", "for i in 1 2 3 4; do echo line$i; sleep 0.3; done"}}});
  ASSERT_TRUE(d.WaitStatus(id, "running"));
  const std::string log = "/jobs/" + std::to_string(id) + "/log";
  std::string seen;
  int64_t offset = 0;
  int answers_while_running = 0;
  ASSERT_TRUE(WaitFor([&] {
    auto r = d.Get(log + "?offset=" + std::to_string(offset));
    EXPECT_EQ(200, r.status);
    seen += r.body;
    int64_t next = std::stoll(r.Header("X-Log-Offset"));
    EXPECT_EQ(offset + static_cast<int64_t>(r.body.size()), next) << r.headers;
    offset = next;
    if (r.Header("X-Log-Complete") == "true") return true;
    ++answers_while_running;
    return false;
  }, std::chrono::seconds(20)));
  EXPECT_EQ("line1\nline2\nline3\nline4\n", seen);
  EXPECT_GT(answers_while_running, 0) << "followed while it ran";
  EXPECT_EQ("succeeded", d.Job(id)["status"]);

  // Past the end (the log was cut after the client read that far): the
  // answer says so and goes on from the end that is there.
  auto past = d.Get(log + "?offset=100000");
  EXPECT_EQ(200, past.status);
  EXPECT_EQ("", past.body);
  EXPECT_EQ("true", past.Header("X-Log-Truncated"));
  EXPECT_EQ(std::to_string(seen.size()), past.Header("X-Log-Offset"));
  EXPECT_EQ("line4\n", d.Get(log + "?offset=" + std::to_string(seen.size() - 6)).body);
  EXPECT_EQ(400, d.Get(log + "?offset=1&tail_bytes=2").status);
  EXPECT_EQ(400, d.Get(log + "?offset=-1").status);
}

// The throughput chart's data: every minute of the window, runs started and
// finished in it.
TEST(Lifecycle, StatsCountRunsPerMinuteOverTheWindow) {
  TempDir dir;
  Daemon d(dir, kFastRetry);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t ok = d.Submit({{"argv", {"true"}}});
  int64_t bad = d.Submit({{"argv", {"false"}}, {"max_attempts", 1}});
  ASSERT_TRUE(d.WaitStatus(ok, "succeeded"));
  ASSERT_TRUE(d.WaitStatus(bad, "failed"));
  auto r = d.Get("/stats?minutes=5");
  ASSERT_EQ(200, r.status) << r.body;
  json stats = r.Json();
  ASSERT_EQ(5u, stats["minutes"].size()) << stats;
  int64_t started = 0, finished = 0, succeeded = 0;
  for (const auto& m : stats["minutes"]) {
    started += m["started"].get<int64_t>();
    finished += m["finished"].get<int64_t>();
    succeeded += m["succeeded"].get<int64_t>();
  }
  EXPECT_EQ(2, started);
  EXPECT_EQ(2, finished);
  EXPECT_EQ(1, succeeded);
  EXPECT_TRUE(stats["minutes"].back()["minute"].is_string());
  EXPECT_EQ(60u, d.Get("/stats").Json()["minutes"].size()) << "an hour by default";
  EXPECT_EQ(400, d.Get("/stats?minutes=0").status);
  EXPECT_EQ(400, d.Get("/stats?minutes=1441").status);
  EXPECT_EQ(400, d.Get("/stats?colour=red").status);
}

// A follower can pin a run (run_id=), so that a retry never hides the end
// of the run before it.
TEST(Lifecycle, ALogCanBeReadRunByRun) {
  TempDir dir;
  Daemon d(dir, kFastRetry);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"sh", "-c",
                                   "if [ -e m ]; then echo second; else touch m; echo first; "
                                   "exit 75; fi"}},
                         {"cwd", dir.path()}});
  ASSERT_TRUE(d.WaitStatus(id, "succeeded"));
  json runs = d.Job(id)["runs"];
  ASSERT_EQ(2u, runs.size());
  const std::string log = "/jobs/" + std::to_string(id) + "/log";
  EXPECT_EQ("second\n", d.Get(log).body);
  auto first = d.Get(log + "?run_id=" + runs[0]["id"].dump() + "&offset=0");
  EXPECT_EQ("first\n", first.body);
  EXPECT_EQ(runs[0]["id"].dump(), first.Header("X-Run-Id"));
  EXPECT_EQ("true", first.Header("X-Log-Complete"));
  auto none = d.Get(log + "?run_id=999999");
  EXPECT_EQ(404, none.status);
  EXPECT_EQ("not_found", none.Json()["error"]["code"]);
  EXPECT_EQ(400, d.Get(log + "?run_id=0").status);
}

// The cap cuts a live log back to max_log_bytes on reaper ticks and the job
// appends there again: a follower whose cut count is stale is sent back to
// the cap, where what came after the cut starts, never into the middle of it.
TEST(Lifecycle, AFollowerWithAStaleCutCountGoesOnFromTheCap) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_log_bytes = 1024\n[reaper]\ninterval_ms = 1000\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"sh", "-c",
                                   "head -c 3000 /dev/zero | tr '\\0' x; "
                                   "while :; do echo AFTER-THE-CUT-0123456789; sleep 0.02; done"}}});
  ASSERT_TRUE(d.WaitStatus(id, "running"));
  const std::string log = "/jobs/" + std::to_string(id) + "/log";
  bool checked = false;
  ASSERT_TRUE(WaitFor([&] {
    auto now = d.Get(log + "?offset=0");
    // "<incarnation>/<bytes cut>"
    std::string cut = now.Header("X-Log-Cut");
    size_t slash = cut.find('/');
    if (slash == std::string::npos || std::stoll(cut.substr(slash + 1)) <= 0 ||
        std::stoll(now.Header("X-Log-Offset")) < 1100) {
      return false;
    }
    std::string before = cut.substr(0, slash + 1) + "0";
    auto stale = d.Get(log + "?offset=1050&cut=" + before);
    EXPECT_EQ("true", stale.Header("X-Log-Truncated")) << stale.headers;
    EXPECT_TRUE(stale.body.empty() || stale.body.rfind("AFTER-THE-CUT-", 0) == 0) << stale.body;
    // A count from another incarnation (before a restart) says nothing.
    auto other = d.Get(log + "?offset=1050&cut=elsewhere/0");
    if (std::stoll(other.Header("X-Log-Offset")) >= 1050) {  // not cut meanwhile
      EXPECT_NE("true", other.Header("X-Log-Truncated")) << other.headers;
    }
    checked = true;
    return true;
  }, std::chrono::seconds(20)));
  EXPECT_TRUE(checked);
  ASSERT_EQ(202, d.Post("/jobs/" + std::to_string(id) + "/cancel").status);
}

// Every answer forbids being run or framed as a page, and sniffing.
TEST(Lifecycle, EveryResponseCarriesTheSecurityHeaders) {
  TempDir dir;
  Daemon d(dir, kFastRetry);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"sh", "-c", "echo '<script>alert(1)</script>'"}}});
  ASSERT_TRUE(d.WaitStatus(id, "succeeded"));
  for (const std::string& path : {std::string("/healthz"), std::string("/queue"),
                                  "/jobs/" + std::to_string(id) + "/log", std::string("/nope")}) {
    auto r = d.Get(path);
    EXPECT_EQ("default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
              r.Header("Content-Security-Policy")) << path;
    EXPECT_EQ("nosniff", r.Header("X-Content-Type-Options")) << path;
    EXPECT_EQ("no-referrer", r.Header("Referrer-Policy")) << path;
  }
  EXPECT_EQ("text/plain; charset=utf-8",
            d.Get("/jobs/" + std::to_string(id) + "/log").Header("Content-Type"));
}

TEST(Lifecycle, ExitThreeFailsWithoutRetry) {
  TempDir dir;
  Daemon d(dir, kFastRetry);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"sh", "-c", "exit 3"}}, {"max_attempts", 3}});
  ASSERT_TRUE(d.WaitStatus(id, "failed"));
  json j = d.Job(id);
  EXPECT_EQ(3, j["exit_code"]);
  EXPECT_EQ(1, j["attempts"]);
  EXPECT_EQ("exit 3", j["runs"][0]["reason"]);
}

TEST(Lifecycle, TransientExitIsRetriedWithBackoffUntilAttemptsAreSpent) {
  TempDir dir;
  Daemon d(dir, kFastRetry);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"sh", "-c", "exit 75"}}, {"max_attempts", 3}});
  ASSERT_TRUE(d.WaitStatus(id, "failed")) << d.Job(id).dump();
  json j = d.Job(id);
  EXPECT_EQ(3, j["attempts"]);
  ASSERT_EQ(3u, j["runs"].size());
  for (const auto& r : j["runs"]) EXPECT_EQ("transient", r["outcome"]);
  EXPECT_EQ(75, j["exit_code"]);
}

TEST(Lifecycle, TransientFailureThenSuccessSucceeds) {
  TempDir dir;
  Daemon d(dir, kFastRetry);
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string marker = dir.File("tried");
  int64_t id = d.Submit(
      {{"argv", {"sh", "-c", "if [ -e " + marker + " ]; then exit 0; fi; touch " + marker + "; exit 75"}}});
  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Job(id).dump();
  EXPECT_EQ(2, d.Job(id)["attempts"]);
}

TEST(Lifecycle, KilledByAForeignSignalFails) {
  TempDir dir;
  Daemon d(dir, kFastRetry);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"sh", "-c", "kill -9 $$"}}});
  ASSERT_TRUE(d.WaitStatus(id, "failed"));
  json j = d.Job(id);
  EXPECT_EQ(9, j["signal"]);
  EXPECT_EQ(137, j["exit_code"]);
  EXPECT_EQ("signal 9", j["runs"][0]["reason"]);
}

TEST(Lifecycle, MissingExecutableIsASpawnFailureWith127) {
  TempDir dir;
  Daemon d(dir, kFastRetry);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"/no/such/program"}}});
  ASSERT_TRUE(d.WaitStatus(id, "failed"));
  json j = d.Job(id);
  EXPECT_EQ(127, j["exit_code"]);
  EXPECT_EQ("spawn_failed", j["runs"][0]["outcome"]);
  EXPECT_NE(std::string::npos, j["error"].get<std::string>().find("No such file")) << j.dump();
  // The daemon keeps going.
  int64_t ok = d.Submit({{"argv", {"true"}}});
  EXPECT_TRUE(d.WaitStatus(ok, "succeeded"));
}

TEST(Lifecycle, TimeoutKillsTheWholeProcessGroup) {
  TempDir dir;
  Daemon d(dir, kFastRetry);
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string pidfile = dir.File("grandchild.pid");
  // The grandchild ignores SIGTERM; the leader does not, so SIGTERM ends the
  // leader and the group SIGKILL sent before it is reaped ends the grandchild.
  // (A leader that ignores SIGTERM too: TimeoutEscalatesToSigkill… below.)
  int64_t id = d.Submit({{"argv", {"sh", "-c",
                                   "sh -c 'trap \"\" TERM; echo $$ > " + pidfile +
                                       "; while :; do sleep 0.05; done' & wait"}},
                         {"timeout_s", 1},
                         {"max_attempts", 1}});
  ASSERT_TRUE(d.WaitStatus(id, "failed", std::chrono::seconds(20))) << d.Job(id).dump();
  json j = d.Job(id);
  EXPECT_EQ("timeout", j["runs"][0]["outcome"]);
  std::string gp = test::ReadFile(pidfile);
  ASSERT_FALSE(gp.empty());
  pid_t grandchild = std::stoi(gp);
  // Gone for real: not even a zombie is left (the daemon is its subreaper).
  EXPECT_TRUE(WaitFor([&] { return access(("/proc/" + std::to_string(grandchild)).c_str(), F_OK) != 0; }));
  EXPECT_EQ(1u, d.Get("/queue").Json()["reaper"]["timeouts_total"].get<uint64_t>());
}

// A process named by a pid the test got from its job, with its start time
// (field 22 of /proc/<pid>/stat) so that a reused pid is not mistaken for it.
struct Seen {
  pid_t pid = 0;
  std::string start_time;
};

std::string StartTimeOf(pid_t pid) {
  std::string stat = test::ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return "";
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  for (int i = 3; i <= 22 && fields >> f; ++i) {
  }
  return f;
}

// Reads "<pid>\n" from a pidfile the job wrote and notes who that is now.
std::optional<Seen> SeenFrom(const std::string& pidfile) {
  std::string text = test::ReadFile(pidfile);
  if (text.empty() || text.back() != '\n') return std::nullopt;
  Seen s{static_cast<pid_t>(std::stoi(text)), ""};
  s.start_time = StartTimeOf(s.pid);
  if (s.start_time.empty()) return std::nullopt;
  return s;
}

// Gone for real: no such pid, or another process on it. Not even a zombie
// may stay (the daemon is its subreaper).
bool Gone(const Seen& s) { return StartTimeOf(s.pid) != s.start_time; }

// Kills, at the end of a test, those of its job's processes that are still
// there (a daemon that never escalates would leave them running forever).
class KillLeftovers {
 public:
  explicit KillLeftovers(std::vector<std::optional<Seen>*> seen) : seen_(std::move(seen)) {}
  ~KillLeftovers() {
    for (auto* s : seen_) {
      if (s->has_value() && !Gone(**s)) kill((*s)->pid, SIGKILL);
    }
  }

 private:
  std::vector<std::optional<Seen>*> seen_;
};

// A job whose group leader and its child both ignore SIGTERM, each writing
// its pid to a file: only the SIGKILL escalation after kill_grace_s ends it.
json TermIgnoringGroup(const std::string& leader_pidfile, const std::string& child_pidfile) {
  std::string child =
      "trap \"\" TERM; echo $$ > " + child_pidfile + "; while :; do sleep 0.05; done";
  std::string leader = "trap '' TERM; echo $$ > " + leader_pidfile + "; sh -c '" + child +
                       "' & while :; do sleep 0.05; done";
  return {{"argv", {"sh", "-c", leader}}, {"max_attempts", 1}};
}

constexpr const char* kOneSecondGrace =
    "[supervisor]\nmax_concurrency = 2\nkill_grace_s = 1\nshutdown_grace_s = 3\n";

TEST(Lifecycle, TimeoutEscalatesToSigkillWhenTheGroupIgnoresSigterm) {
  TempDir dir;
  Daemon d(dir, kOneSecondGrace);
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string leader_file = dir.File("leader.pid"), child_file = dir.File("child.pid");
  json spec = TermIgnoringGroup(leader_file, child_file);
  spec["timeout_s"] = 1;
  int64_t id = d.Submit(spec);
  ASSERT_GT(id, 0);
  std::optional<Seen> leader, child;
  KillLeftovers cleanup({&leader, &child});
  ASSERT_TRUE(WaitFor([&] {
    leader = SeenFrom(leader_file);
    child = SeenFrom(child_file);
    return leader && child;
  })) << d.Job(id).dump();
  ASSERT_TRUE(d.WaitStatus(id, "failed", std::chrono::seconds(30))) << d.Job(id).dump();
  EXPECT_TRUE(WaitFor([&] { return Gone(*leader) && Gone(*child); }, std::chrono::seconds(20)))
      << "leader " << leader->pid << " or child " << child->pid << " survived";
  json j = d.Job(id);
  ASSERT_EQ(1u, j.at("runs").size()) << j.dump();
  const json& run = j.at("runs").at(0);
  EXPECT_EQ("timeout", run.at("outcome"));
  EXPECT_EQ("timeout", run.at("reason"));
  EXPECT_EQ(9, run.at("signal")) << "SIGTERM was ignored; SIGKILL ended it";
  EXPECT_EQ(9, j.at("signal"));
  EXPECT_EQ("timed out after 1s (signal 9)", j.at("error"));
  EXPECT_EQ(1u, d.Get("/queue").Json().at("reaper").at("timeouts_total").get<uint64_t>());
}

TEST(Lifecycle, CancelEscalatesToSigkillWhenTheGroupIgnoresSigterm) {
  TempDir dir;
  Daemon d(dir, kOneSecondGrace);
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string leader_file = dir.File("leader.pid"), child_file = dir.File("child.pid");
  int64_t id = d.Submit(TermIgnoringGroup(leader_file, child_file));
  ASSERT_GT(id, 0);
  std::optional<Seen> leader, child;
  KillLeftovers cleanup({&leader, &child});
  ASSERT_TRUE(WaitFor([&] {
    leader = SeenFrom(leader_file);
    child = SeenFrom(child_file);
    return leader && child;
  })) << d.Job(id).dump();
  EXPECT_EQ(202, d.Post("/jobs/" + std::to_string(id) + "/cancel").status);
  ASSERT_TRUE(d.WaitStatus(id, "cancelled", std::chrono::seconds(30))) << d.Job(id).dump();
  EXPECT_TRUE(WaitFor([&] { return Gone(*leader) && Gone(*child); }, std::chrono::seconds(20)))
      << "leader " << leader->pid << " or child " << child->pid << " survived";
  json j = d.Job(id);
  ASSERT_EQ(1u, j.at("runs").size()) << j.dump();
  const json& run = j.at("runs").at(0);
  EXPECT_EQ("cancelled", run.at("outcome"));
  EXPECT_EQ("cancelled", run.at("reason"));
  EXPECT_EQ(9, run.at("signal")) << "SIGTERM was ignored; SIGKILL ended it";
}

TEST(Lifecycle, CancelQueuedAndRunningJobs) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 1\nkill_grace_s = 1\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t running = d.Submit({{"argv", {"sleep", "60"}}});
  ASSERT_TRUE(d.WaitStatus(running, "running"));
  int64_t queued = d.Submit({{"argv", {"true"}}});
  auto q = d.Post("/jobs/" + std::to_string(queued) + "/cancel");
  EXPECT_EQ(202, q.status);
  EXPECT_EQ("cancelled", q.Json()["status"]);
  auto r = d.Post("/jobs/" + std::to_string(running) + "/cancel");
  EXPECT_EQ(202, r.status);
  ASSERT_TRUE(d.WaitStatus(running, "cancelled"));
  EXPECT_EQ("cancelled", d.Job(running)["runs"][0]["outcome"]);
  // Cancelling a finished job is a conflict; retry brings it back.
  EXPECT_EQ(409, d.Post("/jobs/" + std::to_string(running) + "/cancel").status);
  EXPECT_EQ(200, d.Post("/jobs/" + std::to_string(queued) + "/retry").status);
  EXPECT_TRUE(d.WaitStatus(queued, "succeeded"));
}

TEST(Lifecycle, SigtermRequeuesRunningJobsAsInterruptedAndLeavesNoProcess) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 2\nshutdown_grace_s = 2\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string pids = dir.File("pids");
  int64_t a = d.Submit({{"argv", {"sh", "-c", "echo $$ >> " + pids + "; exec sleep 60"}}});
  int64_t b = d.Submit({{"argv", {"sh", "-c", "trap '' TERM; echo $$ >> " + pids + "; while :; do sleep 0.05; done"}}});
  ASSERT_TRUE(d.WaitStatus(a, "running"));
  ASSERT_TRUE(d.WaitStatus(b, "running"));
  ASSERT_TRUE(WaitFor([&] {
    std::string text = test::ReadFile(pids);
    return std::count(text.begin(), text.end(), '\n') == 2;
  }));
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(0, d.Stop(SIGTERM, std::chrono::seconds(20)));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  for (int64_t id : {a, b}) {
    std::string row = test::Sql(d.db_path(), "SELECT status, attempts, run_id IS NULL, pid IS NULL FROM jobs WHERE id=" + std::to_string(id));
    EXPECT_EQ("queued|0|1|1\n", row) << id;
    EXPECT_EQ("interrupted\n", test::Sql(d.db_path(), "SELECT outcome FROM runs WHERE job_id=" + std::to_string(id)));
  }
  std::string text = test::ReadFile(pids);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string p = text.substr(pos, nl - pos);
    EXPECT_NE(0, access(("/proc/" + p).c_str(), F_OK)) << "job process " << p << " survived";
    pos = nl + 1;
  }
}

TEST(Lifecycle, SubmitValidationNamesTheField) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  struct Case {
    std::string body;
    std::string field;
  } cases[] = {{"{}", "argv"},
               {"{\"argv\":[]}", "argv"},
               {"{\"argv\":[1]}", "argv[0]"},
               {"{\"argv\":[\"true\"],\"bogus\":1}", "bogus"},
               {"{\"argv\":[\"true\"],\"priority\":\"high\"}", "priority"},
               {"{\"argv\":[\"true\"],\"env\":{\"A\":1}}", "env.A"},
               {"{\"argv\":[\"true\"],\"timeout_s\":-1}", "timeout_s"},
               {"{\"argv\":[\"true\"],\"max_attempts\":0}", "max_attempts"},
               {"{\"argv\":[\"true\"],\"cwd\":\"relative\"}", "cwd"},
               {"[1,2]", "body"},
               {"{not json", "body"}};
  for (const auto& c : cases) {
    auto r = d.Post("/jobs", c.body);
    EXPECT_EQ(400, r.status) << c.body;
    auto j = r.Json();
    ASSERT_TRUE(j.is_object()) << r.body;
    EXPECT_EQ(0u, j["error"]["message"].get<std::string>().rfind(c.field, 0)) << r.body;
  }
}

TEST(Lifecycle, IdempotencyKeyReturnsTheExistingJob) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  json spec = {{"argv", {"true"}}, {"idempotency_key", "nightly-2026-11-28"}};
  auto first = d.Post("/jobs", spec.dump());
  auto second = d.Post("/jobs", spec.dump());
  EXPECT_EQ(201, first.status);
  EXPECT_EQ(200, second.status);
  EXPECT_EQ(first.Json()["id"], second.Json()["id"]);
}

TEST(Lifecycle, JobEnvironmentIsExactlyTheSubmissionPlusTheBase) {
  TempDir dir;
  Daemon d(dir, "", {"SECRET_DAEMON_VAR=leak", "ORCH_LOG_LEVEL=debug"});
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"/usr/bin/env"}}, {"env", {{"FOO", "bar"}}}});
  ASSERT_TRUE(d.WaitStatus(id, "succeeded"));
  std::string env = d.Get("/jobs/" + std::to_string(id) + "/log").body;
  std::vector<std::string> names;
  size_t pos = 0;
  while (pos < env.size()) {
    size_t nl = env.find('\n', pos);
    std::string line = env.substr(pos, nl - pos);
    names.push_back(line.substr(0, line.find('=')));
    pos = nl + 1;
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ((std::vector<std::string>{"FOO", "HOME", "ORCH_ATTEMPT", "ORCH_JOB_ID", "ORCH_NODE_ID",
                                      "ORCH_RUN_ID", "PATH"}),
            names)
      << env;
  EXPECT_NE(std::string::npos, env.find("ORCH_JOB_ID=" + std::to_string(id)));
  const std::string node = d.Get("/queue").Json()["cluster"]["node_id"];
  EXPECT_FALSE(node.empty());
  EXPECT_NE(std::string::npos, env.find("ORCH_NODE_ID=" + node + "\n")) << env;
}

TEST(Lifecycle, JobInheritsNoDaemonFileDescriptors) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"ls", "/proc/self/fd"}}});
  ASSERT_TRUE(d.WaitStatus(id, "succeeded"));
  // ls itself opens one fd for the directory it lists.
  std::string fds = d.Get("/jobs/" + std::to_string(id) + "/log").body;
  EXPECT_EQ("0\n1\n2\n3\n", fds);
}

}  // namespace
}  // namespace orch
