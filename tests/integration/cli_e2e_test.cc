// The client subcommands against the real daemon (SPEC §9): what people see,
// what scripts get with --json, and the exit statuses 0 / 1.
#include <unistd.h>

#include <algorithm>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "integration/daemon_harness.h"
#include "support/test_util.h"

namespace orch::test {
namespace {

using nlohmann::json;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class CliE2e : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(daemon_.Start()) << daemon_.Log(); }

  // `orchestrator ARGS… --server URL` with the caller's ORCH_* cleared.
  CommandResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {
        "env", "-u", "ORCH_URL", "-u", "ORCH_TOKEN_FILE", OrchestratorBinary()};
    // Options go before a "--" that ends submit's own options.
    auto dashdash = std::find(args.begin(), args.end(), "--");
    args.insert(dashdash, {"--server", daemon_.url(), "--token-file", dir_.File("var/token")});
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  int64_t SubmitId(std::vector<std::string> args) {
    args.insert(args.begin(), "submit");
    CommandResult r = Cli(args);
    EXPECT_EQ(0, r.exit_code) << r.err;
    try {
      return std::stoll(r.out);
    } catch (const std::exception&) {
      ADD_FAILURE() << "submit printed no id: " << r.out;
      return -1;
    }
  }

  TempDir dir_;
  Daemon daemon_{dir_};
};

TEST_F(CliE2e, SubmitPrintsTheIdThenShowAndLogsDescribeTheJob) {
  int64_t id = SubmitId({"--name", "greeting", "--env", "WHO=world", "--cwd", dir_.path(), "--",
                         "sh", "-c", "echo hello $WHO"});
  ASSERT_GT(id, 0);
  ASSERT_TRUE(daemon_.WaitStatus(id, "succeeded"));

  CommandResult show = Cli({"show", std::to_string(id)});
  EXPECT_EQ(0, show.exit_code) << show.err;
  EXPECT_TRUE(Contains(show.out, "job " + std::to_string(id) + "  greeting  succeeded"))
      << show.out;
  EXPECT_TRUE(Contains(show.out, "sh -c 'echo hello $WHO'")) << show.out;
  EXPECT_TRUE(Contains(show.out, "WHO=world")) << show.out;
  EXPECT_TRUE(Contains(show.out, "runs:")) << show.out;

  CommandResult logs = Cli({"logs", std::to_string(id)});
  EXPECT_EQ(0, logs.exit_code) << logs.err;
  EXPECT_EQ("hello world\n", logs.out);
  CommandResult tail = Cli({"logs", std::to_string(id), "--tail", "6"});
  EXPECT_EQ("world\n", tail.out);
}

TEST_F(CliE2e, JsonOutputIsTheServersJson) {
  CommandResult r =
      Cli({"submit", "--json", "--priority", "-3", "--serial-key", "k", "--max-attempts", "2",
           "--timeout", "60", "--cwd", dir_.path(), "--", "true"});
  ASSERT_EQ(0, r.exit_code) << r.err;
  json job = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(job.is_object()) << r.out;
  EXPECT_EQ(json::array({"true"}), job["argv"]);
  EXPECT_EQ(-3, job["priority"]);
  EXPECT_EQ("k", job["serial_key"]);
  EXPECT_EQ(2, job["max_attempts"]);
  EXPECT_EQ(60, job["timeout_s"]);
  EXPECT_EQ(dir_.path(), job["cwd"]);

  CommandResult list = Cli({"jobs", "--json"});
  ASSERT_EQ(0, list.exit_code) << list.err;
  json page = json::parse(list.out, nullptr, false);
  ASSERT_TRUE(page.is_object()) << list.out;
  ASSERT_EQ(1u, page["jobs"].size());
  EXPECT_EQ(job["id"], page["jobs"][0]["id"]);

  CommandResult queue = Cli({"status", "--json"});
  ASSERT_EQ(0, queue.exit_code) << queue.err;
  EXPECT_TRUE(json::parse(queue.out, nullptr, false).contains("counts")) << queue.out;
}

TEST_F(CliE2e, SubmitDefaultsToTheCallersDirectory) {
  CommandResult r = Cli({"submit", "--json", "--", "true"});
  ASSERT_EQ(0, r.exit_code) << r.err;
  char cwd[4096];
  ASSERT_NE(nullptr, getcwd(cwd, sizeof cwd));
  EXPECT_EQ(std::string(cwd), json::parse(r.out, nullptr, false).value("cwd", ""));
}

TEST_F(CliE2e, PauseShowsInStatusAndAQueuedJobSaysWhy) {
  CommandResult p = Cli({"pause"});
  EXPECT_EQ(0, p.exit_code) << p.err;
  EXPECT_TRUE(Contains(p.out, "paused")) << p.out;
  int64_t id = SubmitId({"--", "true"});
  CommandResult status = Cli({"status"});
  EXPECT_EQ(0, status.exit_code) << status.err;
  EXPECT_TRUE(Contains(status.out, "PAUSED")) << status.out;
  EXPECT_TRUE(Contains(status.out, "queued 1")) << status.out;
  CommandResult show = Cli({"show", std::to_string(id)});
  EXPECT_TRUE(Contains(show.out, "blocked by  the queue is paused")) << show.out;

  CommandResult r = Cli({"resume"});
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_TRUE(daemon_.WaitStatus(id, "succeeded"));
}

TEST_F(CliE2e, ServerRefusalsExit1WithTheServersMessage) {
  CommandResult missing = Cli({"show", "999"});
  EXPECT_EQ(1, missing.exit_code);
  EXPECT_TRUE(Contains(missing.err, "not_found")) << missing.err;

  int64_t id = SubmitId({"--", "true"});
  ASSERT_TRUE(daemon_.WaitStatus(id, "succeeded"));
  CommandResult retry = Cli({"retry", std::to_string(id)});
  EXPECT_EQ(1, retry.exit_code);
  EXPECT_TRUE(Contains(retry.err, "conflict")) << retry.err;
}

TEST_F(CliE2e, CancelStopsARunningJobAndRetryQueuesItAgain) {
  int64_t id = SubmitId({"--", "sleep", "30"});
  ASSERT_TRUE(daemon_.WaitStatus(id, "running"));
  CommandResult c = Cli({"cancel", std::to_string(id)});
  EXPECT_EQ(0, c.exit_code) << c.err;
  ASSERT_TRUE(daemon_.WaitStatus(id, "cancelled"));
  CommandResult r = Cli({"retry", std::to_string(id)});
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_TRUE(Contains(r.out, "again")) << r.out;
  ASSERT_TRUE(daemon_.WaitStatus(id, "running"));
  EXPECT_EQ(0, Cli({"cancel", std::to_string(id)}).exit_code);
  EXPECT_TRUE(daemon_.WaitStatus(id, "cancelled"));
}

TEST_F(CliE2e, LogsFollowPrintsEverythingUntilTheJobEnds) {
  int64_t id = SubmitId({"--", "sh", "-c", "echo one; sleep 1; echo two >&2; echo three"});
  CommandResult out = Cli({"logs", std::to_string(id), "--follow"});
  EXPECT_EQ(0, out.exit_code) << out.err;
  EXPECT_EQ("one\nthree\n", out.out);
  CommandResult err = Cli({"logs", std::to_string(id), "--stream", "stderr"});
  EXPECT_EQ("two\n", err.out);
}

// `orchestrator logs ID --follow` against the daemon `d` of `dir`.
CommandResult FollowLogs(const Daemon& d, const TempDir& dir, int64_t id) {
  return test::RunCommand({test::OrchestratorBinary(), "logs", std::to_string(id), "--follow",
                           "--server", d.url(), "--token-file", dir.File("var/token")});
}

// A retry is a new run with a log of its own: the follow moves on to it and
// ends with the job, printing each run's output once.
TEST(CliLogs, FollowMovesOnToTheNextRunOfARetriedJob) {
  TempDir dir;
  // The retry waits about 2 s: the follow starts well inside that wait.
  Daemon d(dir, "[supervisor]\nbackoff_base_s = 2\nbackoff_max_s = 2\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string marker = dir.File("second");
  int64_t id = d.Submit({{"argv", {"sh", "-c",
                                   "if [ -e " + marker + " ]; then echo second; exit 0; fi; "
                                   "touch " + marker + "; echo first; exit 75"}}});
  ASSERT_GT(id, 0);
  ASSERT_TRUE(WaitFor([&] { return d.Job(id)["runs"].size() == 1 && d.Job(id)["status"] == "queued"; }))
      << "the first run ended";
  CommandResult r = FollowLogs(d, dir, id);
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ("first\nsecond\n", r.out) << r.err;
  EXPECT_EQ("succeeded", d.Job(id)["status"]);
}

// Runs shorter than the follow's poll interval come and go between two
// polls: each is still printed, in order, whole.
TEST(CliLogs, FollowPrintsEveryRunEvenThoseBetweenTwoPolls) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nbackoff_base_s = 0.05\nbackoff_max_s = 0.05\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string count = dir.File("count");
  int64_t id = d.Submit({{"argv", {"sh", "-c",
                                   "n=$(cat " + count + " 2>/dev/null || echo 0); n=$((n+1)); "
                                   "echo $n > " + count + "; echo \"attempt $n\"; "
                                   // The first run outlasts the follow's start.
                                   "if [ $n = 1 ]; then sleep 2; else sleep 0.2; fi; "
                                   "echo \"attempt $n ends\"; [ $n -ge 5 ] || exit 75"}},
                         {"max_attempts", 5}});
  ASSERT_TRUE(d.WaitStatus(id, "running"));
  CommandResult r = FollowLogs(d, dir, id);
  EXPECT_EQ(0, r.exit_code) << r.err;
  std::string want;
  for (int n = 1; n <= 5; ++n) {
    want += "attempt " + std::to_string(n) + "\nattempt " + std::to_string(n) + " ends\n";
  }
  EXPECT_EQ(want, r.out) << r.err;
  EXPECT_EQ(5u, d.Job(id)["runs"].size());
}

// Regression for the security issue "control characters reach the journal and
// the admin's terminal": a job name with a newline forged a whole log line,
// and `show` printed names and argv raw, escape sequences included.
TEST_F(CliE2e, ControlCharactersFromJobsAreEscapedInTheLogAndInEveryTable) {
  const std::string forged = "2026-01-01T00:00:00.000Z error forged line";
  json spec = {{"name", "x\n" + forged},
               {"argv", {"sh", "-c", "true", "\x1b[31mred\x1b[0m"}},
               {"cwd", dir_.path()}};
  int64_t id = daemon_.Submit(spec);
  ASSERT_GT(id, 0);
  ASSERT_TRUE(daemon_.WaitStatus(id, "succeeded"));

  // The daemon's text log: the submission is one line, with the name escaped.
  std::string log = daemon_.Log();
  EXPECT_FALSE(Contains(log, "\n" + forged)) << log;
  EXPECT_TRUE(Contains(log, "name=x\\n" + forged)) << log;

  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"show", std::to_string(id)}, {"jobs"}}) {
    CommandResult r = Cli(args);
    SCOPED_TRACE(args[0]);
    EXPECT_EQ(0, r.exit_code) << r.err;
    EXPECT_FALSE(Contains(r.out, "\x1b")) << r.out;  // NO_COLOR is moot: stdout is a file
    EXPECT_FALSE(Contains(r.out, "\n" + forged)) << r.out;
    EXPECT_TRUE(Contains(r.out, "x\\n2026-01-01T00:00")) << r.out;
    EXPECT_TRUE(Contains(r.out, "\\x1b[31mred")) << r.out;
  }

  // --json stays the exact data, for scripts.
  CommandResult j = Cli({"show", std::to_string(id), "--json"});
  ASSERT_EQ(0, j.exit_code) << j.err;
  json job = json::parse(j.out, nullptr, false);
  EXPECT_EQ("x\n" + forged, job.value("name", "")) << j.out;
  EXPECT_EQ("\x1b[31mred\x1b[0m", job["argv"][3]) << j.out;
}

}  // namespace
}  // namespace orch::test
