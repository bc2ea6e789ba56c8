#include "cli/job_format.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace orch::cli {
namespace {

using nlohmann::json;

TimePoint Now() { return *ParseRfc3339("2026-11-28T06:00:00.000Z"); }

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(QuoteArgv, QuotesOnlyWordsThatNeedIt) {
  EXPECT_EQ("echo hello", QuoteArgv(json::array({"echo", "hello"})));
  EXPECT_EQ("sh -c 'echo $HOME; exit 1'",
            QuoteArgv(json::array({"sh", "-c", "echo $HOME; exit 1"})));
  EXPECT_EQ("echo '' 'it'\\''s'", QuoteArgv(json::array({"echo", "", "it's"})));
}

TEST(ApiErrorText, UsesTheErrorMessageAndCode) {
  EXPECT_EQ("job 9 not found (not_found)",
            ApiErrorText(404, R"({"error":{"code":"not_found","message":"job 9 not found"}})"));
}

TEST(ApiErrorText, FallsBackToStatusAndFirstLine) {
  EXPECT_EQ("HTTP 502: Bad Gateway", ApiErrorText(502, "Bad Gateway\n<html>"));
  EXPECT_EQ("HTTP 500", ApiErrorText(500, ""));
}

TEST(ExitText, ShellStyle) {
  EXPECT_EQ("exit 0", ExitText(json{{"exit_code", 0}, {"signal", nullptr}}));
  EXPECT_EQ("signal 9 (SIGKILL)", ExitText(json{{"exit_code", nullptr}, {"signal", 9}}));
  EXPECT_EQ("-", ExitText(json{{"exit_code", nullptr}}));
}

TEST(DescribeBlockedBy, NamesTheReasonWithItsProof) {
  EXPECT_EQ(
      "serial_key \"db\" is held by run 7 (pid 42, alive)",
      DescribeBlockedBy(
          json{
              {"reason", "serial_key"}, {"key", "db"}, {"run_id", 7}, {"pid", 42}, {"alive", true}},
          Now()));
  EXPECT_EQ("max_concurrency reached: slots held by run 3, 4",
            DescribeBlockedBy(json{{"reason", "max_concurrency"}, {"held_by", {3, 4}}}, Now()));
  EXPECT_EQ("waiting until 2026-11-28T06:00:30.000Z (in 30s)",
            DescribeBlockedBy(json{{"reason", "not_before"}, {"until", "2026-11-28T06:00:30.000Z"}},
                              Now()));
  EXPECT_EQ("the queue is paused", DescribeBlockedBy(json{{"reason", "paused"}}, Now()));
  EXPECT_EQ("", DescribeBlockedBy(json(nullptr), Now()));
}

json SampleJob() {
  return json::parse(R"({
    "id": 12, "name": "nightly", "argv": ["backup", "--all"], "env": {"A": "1"},
    "cwd": "/srv", "status": "failed", "priority": 5, "serial_key": "db",
    "attempts": 3, "max_attempts": 3, "timeout_s": 60, "not_before": "2026-11-28T05:00:00.000Z",
    "idempotency_key": null, "created_at": "2026-11-28T05:00:00.000Z",
    "updated_at": "2026-11-28T05:59:00.000Z", "started_at": "2026-11-28T05:58:00.000Z",
    "finished_at": "2026-11-28T05:59:00.000Z", "run_id": null, "pid": null,
    "exit_code": 1, "signal": null, "outcome": "failed", "error": null,
    "runs": [{"id": 30, "job_id": 12, "attempt": 3, "pid": 4242,
              "started_at": "2026-11-28T05:58:00.000Z", "ended_at": "2026-11-28T05:59:00.000Z",
              "outcome": "failed", "reason": "exit status 1", "exit_code": 1, "signal": null}]
  })");
}

TEST(RenderJobList, OneRowPerJobAndTheNextPageHint) {
  json page{{"jobs", json::array({SampleJob()})}, {"next_after_id", 12}};
  std::string out = RenderJobList(page, Now(), false);
  EXPECT_TRUE(Contains(out, "ID  NAME")) << out;
  EXPECT_TRUE(Contains(out, "nightly")) << out;
  EXPECT_TRUE(Contains(out, "failed")) << out;
  EXPECT_TRUE(Contains(out, "3/3")) << out;
  EXPECT_TRUE(Contains(out, "1h ago")) << out;
  EXPECT_TRUE(Contains(out, "backup --all")) << out;
  EXPECT_TRUE(Contains(out, "--after 12")) << out;
  EXPECT_EQ("no jobs\n",
            RenderJobList(json{{"jobs", json::array()}, {"next_after_id", nullptr}}, Now(), false));
}

TEST(RenderJob, ShowsFieldsAndRuns) {
  std::string out = RenderJob(SampleJob(), Now(), false);
  EXPECT_TRUE(Contains(out, "job 12  nightly  failed")) << out;
  EXPECT_TRUE(Contains(out, "command     backup --all")) << out;
  EXPECT_TRUE(Contains(out, "env         A=1")) << out;
  EXPECT_TRUE(Contains(out, "attempts    3 of 3")) << out;
  EXPECT_TRUE(Contains(out, "result      failed, exit 1")) << out;
  EXPECT_TRUE(Contains(out, "runs:")) << out;
  EXPECT_TRUE(Contains(out, "4242")) << out;
  EXPECT_TRUE(Contains(out, "1m00s")) << out;
  EXPECT_TRUE(Contains(out, "exit status 1")) << out;
}

TEST(RenderJob, ShowsLimitsAndWhatEachRunsCgroupMeasured) {
  json j = SampleJob();
  j["memory_max"] = 268435456;
  j["cpu_max"] = 1.5;
  j["stall_timeout_s"] = 120;
  j["runs"][0]["cpu_usec"] = 2500000;
  j["runs"][0]["mem_peak_bytes"] = 73400320;
  j["runs"][0]["oom_kills"] = 1;
  std::string out = RenderJob(j, Now(), false);
  EXPECT_TRUE(Contains(out, "  limits         memory 256.0 MiB, 1.5 cores\n")) << out;
  EXPECT_TRUE(Contains(out, "  stall timeout  2m00s\n")) << out;
  EXPECT_TRUE(Contains(out, "2.5s")) << out;
  EXPECT_TRUE(Contains(out, "70.0 MiB (1 OOM kills)")) << out;
}

TEST(RenderJob, QueuedJobSaysWhyItWaits) {
  json j = SampleJob();
  j["status"] = "queued";
  j["runs"] = json::array();
  j["blocked_by"] = {{"reason", "paused"}};
  std::string out = RenderJob(j, Now(), false);
  EXPECT_TRUE(Contains(out, "blocked by  the queue is paused")) << out;
  EXPECT_FALSE(Contains(out, "runs:")) << out;
}

TEST(RenderJob, ToleratesMissingFields) {
  std::string out = RenderJob(json{{"id", 1}}, Now(), true);
  EXPECT_TRUE(Contains(out, "job 1")) << out;
}

TEST(RenderQueue, CountsLimitsRunningAndReaper) {
  json q = json::parse(R"({
    "counts":{"queued":2,"running":1,"succeeded":5,"failed":0,"cancelled":0},
    "max_concurrency":4, "serial_gate_enabled":true, "paused":true,
    "oldest_queued_age_s":12.5,
    "running":[{"id":3,"run_id":9,"pid":4242,"serial_key":null,
                "started_at":"2026-11-28T05:59:55.000Z","runtime_s":5.0,
                "cpu_s":0.75,"mem_bytes":null,"idle_s":3.25}],
    "cgroup":{"mode":"tracking","root":"/sys/fs/cgroup/unified/runs",
              "why":"cgroup2 at /sys/fs/cgroup/unified; controllers for runs: none"},
    "reaper":{"interval_ms":1000,"last_tick_at":"2026-11-28T05:59:59.000Z","ticks_total":100,
              "reaped_total":3,"lost_total":0,"timeouts_total":1,"orphans_total":0,
              "impossible_queued_total":0,"sanitize_enabled":true,"errors_total":0},
    "supervisor":{"version":"0.1.0","pid":1,"incarnation":"abc","boot_id":"b",
                  "started_at":"2026-11-28T05:00:00.000Z","uptime_s":3600}
  })");
  std::string out = RenderQueue(q, Now(), false);
  EXPECT_TRUE(Contains(out, "PAUSED")) << out;
  EXPECT_TRUE(Contains(out, "queued 2  running 1  succeeded 5")) << out;
  EXPECT_TRUE(Contains(out, "max_concurrency 4, serial gate on")) << out;
  EXPECT_TRUE(Contains(out, "queued for 12.5s")) << out;
  EXPECT_TRUE(Contains(out, "running (1):")) << out;
  EXPECT_TRUE(Contains(out, "4242")) << out;
  EXPECT_TRUE(Contains(out, "5s ago")) << out;
  EXPECT_TRUE(Contains(out, "timeouts 1")) << out;
  EXPECT_TRUE(Contains(out, "last tick 1s ago")) << out;
  EXPECT_TRUE(Contains(out, "up 1h00m")) << out;
  EXPECT_TRUE(Contains(out, "750ms")) << out;
  EXPECT_TRUE(Contains(out, "3.2s")) << out;
  EXPECT_TRUE(Contains(out, "cgroups:    mode tracking, runs under /sys/fs/cgroup/unified/runs"))
      << out;
}

TEST(RenderQueue, NodesOfASharedQueueWithTheirLeases) {
  json q = json::parse(R"({
    "counts":{"queued":0,"running":2,"succeeded":0,"failed":0,"cancelled":0},
    "running":[{"id":3,"run_id":9,"node_id":"web-2","pid":4242,"serial_key":null,
                "started_at":"2026-11-28T05:59:55.000Z","runtime_s":5.0}],
    "cluster":{"backend":"postgres","node_id":"web-1","lease_s":10,"lease_held":false,
               "nodes":[{"node_id":"web-1","incarnation":"i1","alive":true,"running":1,
                         "heartbeat_at":"2026-11-28T05:59:58.000Z"},
                        {"node_id":"web-2","incarnation":"i2","alive":false,"running":1,
                         "heartbeat_at":"2026-11-28T05:59:30.000Z"}]}
  })");
  std::string out = RenderQueue(q, Now(), false);
  EXPECT_TRUE(Contains(out, "nodes (2, postgres, lease 10s; this is web-1, WITHOUT A LEASE)"))
      << out;
  EXPECT_TRUE(Contains(out, "lease over")) << out;
  EXPECT_TRUE(Contains(out, "30s ago")) << out;
  EXPECT_TRUE(Contains(out, "web-2")) << out;
}

// No byte below 0x20 (but the line ends) and no DEL: nothing that moves
// the cursor, ends a line early or starts an escape sequence.
bool TerminalSafe(const std::string& out) {
  for (unsigned char c : out) {
    if ((c < 0x20 && c != '\n') || c == 0x7f) return false;
  }
  return true;
}

json HostileJob() {
  json j = SampleJob();
  j["name"] = "x\n2026-11-28T06:00:00.000Z forged";
  j["argv"] = {"sh", "-c", "echo \x1b[31mred\x1b[0m", "it's\ttabbed"};
  j["env"] = {{"K\x1b]0;title\x07", "v\r\nw"}};
  j["cwd"] = "/srv/\x1b[2J";
  j["serial_key"] = "db\x08\x08";
  j["error"] = "spawn failed:\n\x1b[1mbold";
  j["idempotency_key"] = "k\x7f";
  j["runs"][0]["reason"] = "exit\x1b[0m\nstatus 1";
  return j;
}

TEST(QuoteArgv, ControlCharactersUseBashAnsiCQuoting) {
  EXPECT_EQ("printf $'a\\nb\\x1b[31m' $'it\\'s\\t' $'back\\\\slash'",
            QuoteArgv(json::array({"printf", "a\nb\x1b[31m", "it's\t", "back\\slash"})));
}

TEST(RenderJob, EscapesEveryStringFromTheServer) {
  std::string out = RenderJob(HostileJob(), Now(), false);
  EXPECT_TRUE(TerminalSafe(out)) << out;
  EXPECT_TRUE(Contains(out, "job 12  x\\n2026-11-28T06:00:00.000Z forged  failed\n")) << out;
  EXPECT_TRUE(Contains(out, "$'echo \\x1b[31mred\\x1b[0m' $'it\\'s\\ttabbed'")) << out;
  EXPECT_TRUE(Contains(out, "K\\x1b]0;title\\x07=v\\r\\nw")) << out;
  EXPECT_TRUE(Contains(out, "/srv/\\x1b[2J")) << out;
  EXPECT_TRUE(Contains(out, "db\\x08\\x08")) << out;
  EXPECT_TRUE(Contains(out, "spawn failed:\\n\\x1b[1mbold")) << out;
  EXPECT_TRUE(Contains(out, "k\\x7f")) << out;
  EXPECT_TRUE(Contains(out, "exit\\x1b[0m\\nstatus 1")) << out;
}

TEST(RenderJobList, EscapesEveryStringFromTheServer) {
  std::string out = RenderJobList(json{{"jobs", json::array({HostileJob()})}}, Now(), false);
  EXPECT_TRUE(TerminalSafe(out)) << out;
  EXPECT_EQ(2, std::count(out.begin(), out.end(), '\n')) << out;  // header and one row
  EXPECT_TRUE(Contains(out, "x\\n2026-11-28T06:00")) << out;
  EXPECT_TRUE(Contains(out, "db\\x08\\x08")) << out;
  EXPECT_TRUE(Contains(out, "\\x1b[31mred")) << out;
}

TEST(RenderQueue, EscapesEveryStringFromTheServer) {
  json q = {{"running", {{{"id", 1}, {"serial_key", "k\n\x1b[H"}, {"started_at", "\x1b[2J"}}}},
            {"reaper", {{"last_tick_at", "now\r"}}},
            {"supervisor", {{"version", "1\x1b[8m"}, {"incarnation", "i\n"}}}};
  std::string out = RenderQueue(q, Now(), false);
  EXPECT_TRUE(TerminalSafe(out)) << out;
  EXPECT_TRUE(Contains(out, "k\\n\\x1b[H")) << out;
  EXPECT_TRUE(Contains(out, "version 1\\x1b[8m")) << out;
  EXPECT_TRUE(Contains(out, "incarnation i\\n")) << out;
}

TEST(ApiErrorText, EscapesTheServersText) {
  EXPECT_EQ("bad \\x1b[31mfield\\n (invalid\\r)",
            ApiErrorText(400,
                         "{\"error\":{\"code\":\"invalid\\r\",\"message\":\"bad "
                         "\\u001b[31mfield\\n\"}}"));
  EXPECT_EQ("HTTP 502: Bad \\x1b[5mGateway", ApiErrorText(502, "Bad \x1b[5mGateway\n<html>"));
}

TEST(DescribeBlockedBy, EscapesTheKeyAndUnknownReasons) {
  EXPECT_EQ(
      "serial_key \"a\\nb\" is held by run 7",
      DescribeBlockedBy(json{{"reason", "serial_key"}, {"key", "a\nb"}, {"run_id", 7}}, Now()));
  EXPECT_EQ(R"({"reason":"new\u001b"})", DescribeBlockedBy(json{{"reason", "new\x1b"}}, Now()));
}

}  // namespace
}  // namespace orch::cli
