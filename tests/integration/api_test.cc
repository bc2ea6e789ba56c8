// SPEC §7 against the real daemon over loopback: routes, shapes, error codes.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "integration/daemon_harness.h"

namespace orch {
namespace {

using nlohmann::json;
using test::Daemon;
using test::HttpCall;
using test::TempDir;

TEST(Api, HealthAndReadiness) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  EXPECT_EQ(json({{"status", "ok"}}), d.Get("/healthz").Json());
  auto ready = d.Get("/readyz");
  EXPECT_EQ(200, ready.status);
  EXPECT_EQ(405, HttpCall("POST", d.url() + "/healthz").status);
}

TEST(Api, QueueHasTheSpecShape) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 1\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t running = d.Submit({{"argv", {"sleep", "30"}}, {"serial_key", "k"}});
  ASSERT_TRUE(d.WaitStatus(running, "running"));
  d.Submit({{"argv", {"true"}}});
  json q = d.Get("/queue").Json();
  for (const char* k : {"counts", "max_concurrency", "serial_gate_enabled", "paused",
                        "oldest_queued_age_s", "running", "reaper", "supervisor"}) {
    EXPECT_TRUE(q.contains(k)) << k;
  }
  EXPECT_EQ(1, q["counts"]["running"]);
  EXPECT_EQ(1, q["counts"]["queued"]);
  for (const char* s : {"succeeded", "failed", "cancelled"}) EXPECT_EQ(0, q["counts"][s]);
  EXPECT_EQ(1, q["max_concurrency"]);
  EXPECT_EQ(true, q["serial_gate_enabled"]);
  EXPECT_EQ(false, q["paused"]);
  EXPECT_TRUE(q["oldest_queued_age_s"].is_number());
  ASSERT_EQ(1u, q["running"].size());
  const json& r = q["running"][0];
  EXPECT_EQ(running, r["id"]);
  EXPECT_TRUE(r["run_id"].is_number());
  EXPECT_TRUE(r["pid"].is_number());
  EXPECT_EQ("k", r["serial_key"]);
  EXPECT_TRUE(r["started_at"].is_string());
  EXPECT_TRUE(r["runtime_s"].is_number());
  for (const char* k : {"interval_ms", "last_tick_at", "ticks_total", "reaped_total", "lost_total",
                        "timeouts_total", "orphans_total", "impossible_queued_total",
                        "sanitize_enabled", "errors_total"}) {
    EXPECT_TRUE(q["reaper"].contains(k)) << k;
  }
  for (const char* k : {"version", "pid", "incarnation", "boot_id", "started_at", "uptime_s"}) {
    EXPECT_TRUE(q["supervisor"].contains(k)) << k;
  }
  EXPECT_EQ(d.DaemonPid(), q["supervisor"]["pid"].get<pid_t>());
}

// /queue's running list is served from a snapshot (api.cc): runtimes must
// still be computed per request, and every commit must show at once.
TEST(Api, QueueIsFreshOnEveryRequest) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 3\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  const std::string odd_key = "quo\"te\\ \xc3\xa9\n";
  int64_t a = d.Submit({{"argv", {"sleep", "30"}}, {"serial_key", odd_key}});
  int64_t b = d.Submit({{"argv", {"sleep", "30"}}});
  ASSERT_TRUE(d.WaitStatus(a, "running"));
  ASSERT_TRUE(d.WaitStatus(b, "running"));
  auto entry = [](const json& q, int64_t id) {
    for (const json& r : q.at("running")) {
      if (r.at("id") == id) return r;
    }
    return json();
  };
  json first = d.Get("/queue").Json();
  ASSERT_EQ(2u, first.at("running").size()) << first.dump();
  EXPECT_EQ(odd_key, entry(first, a).at("serial_key"));
  EXPECT_TRUE(entry(first, b).at("serial_key").is_null());
  EXPECT_EQ(d.Job(a).at("pid"), entry(first, a).at("pid"));
  EXPECT_EQ(d.Job(b).at("run_id"), entry(first, b).at("run_id"));
  usleep(30 * 1000);
  json second = d.Get("/queue").Json();
  ASSERT_TRUE(entry(second, a).at("runtime_s").is_number_float()) << second.dump();
  EXPECT_GT(entry(second, a).at("runtime_s").get<double>(),
            entry(first, a).at("runtime_s").get<double>())
      << "the runtime is the request's, not the snapshot's";
  EXPECT_GT(second.at("supervisor").at("uptime_s").get<double>(),
            first.at("supervisor").at("uptime_s").get<double>());

  // Each answer, from the submit on, counts the job it acknowledged.
  int64_t c = d.Submit({{"argv", {"sleep", "30"}}});
  json q = d.Get("/queue").Json();
  EXPECT_EQ(3, q.at("counts").at("queued").get<int64_t>() + q.at("counts").at("running").get<int64_t>())
      << q.dump();
  ASSERT_TRUE(d.WaitStatus(c, "running"));
  EXPECT_EQ(3u, d.Get("/queue").Json().at("running").size());
  ASSERT_EQ(202, d.Post("/jobs/" + std::to_string(a) + "/cancel").status);
  ASSERT_TRUE(d.WaitStatus(a, "cancelled"));
  q = d.Get("/queue").Json();
  EXPECT_EQ(2u, q.at("running").size()) << q.dump();
  EXPECT_TRUE(entry(q, a).is_null());
  EXPECT_EQ(1, q.at("counts").at("cancelled"));

  // Many at once while submits commit (so reads are shared in flight):
  // every one answered, whole.
  ASSERT_EQ(200, d.Post("/queue/pause").status);
  std::vector<std::thread> clients;
  std::atomic<int> good{0};
  // Each submitter's next /queue counts at least the jobs it was told of.
  std::atomic<int> counted{0};
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      for (int i = 1; i <= 10; ++i) {
        d.Submit({{"argv", {"true"}}});
        auto r = d.Get("/queue");
        if (r.status == 200 && r.Json().at("counts").at("queued").get<int>() >= i) ++counted;
      }
    });
  }
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto r = d.Get("/queue");
        if (r.status == 200 && r.Json().at("running").size() == 2) ++good;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(80, good.load());
  EXPECT_EQ(40, counted.load()) << "a /queue missed a job whose 201 came before it";
  EXPECT_EQ(40, d.Get("/queue").Json().at("counts").at("queued"));
}

TEST(Api, BlockedByExplainsWhyAQueuedJobWaits) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 2\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t holder = d.Submit({{"argv", {"sleep", "30"}}, {"serial_key", "db"}});
  ASSERT_TRUE(d.WaitStatus(holder, "running"));
  int64_t same_key = d.Submit({{"argv", {"true"}}, {"serial_key", "db"}});
  // at() rather than operator[]: a missing key must fail, not read as null.
  const json holder_job = d.Job(holder);
  ASSERT_TRUE(holder_job.at("run_id").is_number_integer()) << holder_job.dump();
  ASSERT_TRUE(holder_job.at("pid").is_number_integer()) << holder_job.dump();
  json b = d.Job(same_key).at("blocked_by");
  EXPECT_EQ("serial_key", b.at("reason")) << b.dump();
  EXPECT_EQ("db", b.at("key"));
  EXPECT_EQ(holder_job.at("run_id"), b.at("run_id")) << b.dump();
  EXPECT_EQ(holder_job.at("pid"), b.at("pid")) << b.dump();
  EXPECT_EQ(true, b.at("alive"));

  int64_t other = d.Submit({{"argv", {"sleep", "30"}}});
  ASSERT_TRUE(d.WaitStatus(other, "running")) << "a gated key does not block other keys";
  int64_t third = d.Submit({{"argv", {"true"}}});
  b = d.Job(third).at("blocked_by");
  EXPECT_EQ("max_concurrency", b.at("reason")) << b.dump();
  const json other_job = d.Job(other);
  EXPECT_EQ(json({holder_job.at("run_id"), other_job.at("run_id")}), b.at("held_by")) << b.dump();

  EXPECT_EQ(json({{"paused", true}}), d.Post("/queue/pause").Json());
  EXPECT_EQ("paused", d.Job(third).at("blocked_by").at("reason"));
  EXPECT_EQ(true, d.Get("/queue").Json().at("paused"));
  EXPECT_EQ(json({{"paused", false}}), d.Post("/queue/resume").Json());
  EXPECT_FALSE(d.Job(holder).contains("blocked_by")) << "only queued jobs carry blocked_by";
}

TEST(Api, PauseStopsClaimingAndResumeRestartsIt) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  ASSERT_EQ(200, d.Post("/queue/pause").status);
  int64_t id = d.Submit({{"argv", {"true"}}});
  ASSERT_GT(id, 0);
  // Two reaper ticks after the submit: the claim it kicked, and the one a
  // tick would retry, have both had their chance.
  auto ticks = [&] { return d.Get("/queue").Json().at("reaper").at("ticks_total").get<int64_t>(); };
  const int64_t submitted_at_tick = ticks();
  ASSERT_TRUE(
      test::WaitFor([&] { return ticks() >= submitted_at_tick + 2; }, std::chrono::seconds(20)))
      << "the reaper keeps ticking while paused";
  EXPECT_EQ("queued", d.Job(id).at("status"));
  EXPECT_EQ("paused", d.Job(id).at("blocked_by").at("reason"));
  ASSERT_EQ(200, d.Post("/queue/resume").status);
  EXPECT_TRUE(d.WaitStatus(id, "succeeded"));
}

// The status page's list: a name anywhere in it, a serial key, newest first,
// and why each queued job waits.
TEST(Api, ListJobsByNameAndKeyNewestFirstWithBlockedBy) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t holder = d.Submit({{"name", "hold-db"}, {"argv", {"sleep", "30"}}, {"serial_key", "db"}});
  ASSERT_TRUE(d.WaitStatus(holder, "running"));
  int64_t waiter = d.Submit({{"name", "nightly-db"}, {"argv", {"true"}}, {"serial_key", "db"}});
  int64_t other = d.Submit({{"name", "nightly-web"}, {"argv", {"sleep", "30"}}, {"serial_key", "web"}});

  json page = d.Get("/jobs?name=nightly&order=desc").Json();
  ASSERT_EQ(2u, page["jobs"].size()) << page;
  EXPECT_EQ(other, page["jobs"][0]["id"]);
  EXPECT_EQ(waiter, page["jobs"][1]["id"]);
  EXPECT_TRUE(page.contains("next_before_id"));
  EXPECT_FALSE(page.contains("next_after_id"));

  page = d.Get("/jobs?serial_key=db&status=queued").Json();
  ASSERT_EQ(1u, page["jobs"].size()) << page;
  EXPECT_EQ(waiter, page["jobs"][0]["id"]);
  const json& blocked = page["jobs"][0]["blocked_by"];
  EXPECT_EQ("serial_key", blocked["reason"]) << blocked;
  EXPECT_EQ(d.Job(holder)["run_id"], blocked["run_id"]);
  EXPECT_EQ(true, blocked["alive"]);
  EXPECT_FALSE(d.Get("/jobs?status=running").Json()["jobs"][0].contains("blocked_by"));

  page = d.Get("/jobs?order=desc&limit=2").Json();
  ASSERT_EQ(2u, page["jobs"].size());
  EXPECT_EQ(page["jobs"][1]["id"], page["next_before_id"]);
  page = d.Get("/jobs?order=desc&before_id=" + page["next_before_id"].dump()).Json();
  ASSERT_EQ(1u, page["jobs"].size());
  EXPECT_EQ(holder, page["jobs"][0]["id"]);
  EXPECT_TRUE(page["next_before_id"].is_null());

  EXPECT_EQ(400, d.Get("/jobs?order=sideways").status);
  EXPECT_EQ(400, d.Get("/jobs?order=desc&after_id=3").status);
  EXPECT_EQ(400, d.Get("/jobs?before_id=3").status);
}

TEST(Api, ListJobsFiltersAndPaginates) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  ASSERT_EQ(200, d.Post("/queue/pause").status);
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(d.Submit({{"argv", {"true"}}}));
  json page = d.Get("/jobs?status=queued&limit=2").Json();
  ASSERT_EQ(2u, page["jobs"].size());
  EXPECT_EQ(ids[0], page["jobs"][0]["id"]);
  EXPECT_EQ(ids[1], page["next_after_id"]);
  page = d.Get("/jobs?status=queued&limit=2&after_id=" + std::to_string(ids[3])).Json();
  ASSERT_EQ(1u, page["jobs"].size());
  EXPECT_EQ(ids[4], page["jobs"][0]["id"]);
  EXPECT_TRUE(page["next_after_id"].is_null());
  EXPECT_EQ(0u, d.Get("/jobs?status=failed").Json()["jobs"].size());
  EXPECT_EQ(400, d.Get("/jobs?status=bogus").status);
  EXPECT_EQ(400, d.Get("/jobs?limit=-1").status);
  EXPECT_EQ(200, d.Get("/jobs?limit=100000").status) << "limit is capped, not refused";
}

TEST(Api, ErrorsUseTheErrorShapeAndTheRightCodes) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  auto nf = d.Get("/nope");
  EXPECT_EQ(404, nf.status);
  EXPECT_TRUE(nf.Json()["error"]["code"].is_string());
  EXPECT_TRUE(nf.Json()["error"]["message"].is_string());
  EXPECT_EQ(404, d.Get("/jobs/999").status);
  EXPECT_EQ(404, d.Get("/jobs/abc").status);
  auto wrong = HttpCall("DELETE", d.url() + "/jobs", "", d.Auth());
  EXPECT_EQ(405, wrong.status);
  EXPECT_NE(std::string::npos, wrong.headers.find("Allow: GET, HEAD, POST")) << wrong.headers;
  EXPECT_EQ(405, HttpCall("GET", d.url() + "/queue/pause", "", d.Auth()).status);
  auto with_xml = d.Auth();
  with_xml.push_back("Content-Type: text/xml");
  auto media = HttpCall("POST", d.url() + "/jobs", "<job/>", with_xml);
  EXPECT_EQ(415, media.status);
  int64_t id = d.Submit({{"argv", {"true"}}});
  ASSERT_TRUE(d.WaitStatus(id, "succeeded"));
  auto retry = d.Post("/jobs/" + std::to_string(id) + "/retry");
  EXPECT_EQ(409, retry.status);
  EXPECT_EQ("conflict", retry.Json()["error"]["code"]);
  // A body one byte over max_body_bytes.
  std::string big(1048577, 'x');
  EXPECT_EQ(413, HttpCall("POST", d.url() + "/jobs", big, {"Content-Type: application/json"}).status);
  // A 100 KiB header.
  EXPECT_EQ(431, HttpCall("GET", d.url() + "/healthz", "", {"X-Big: " + std::string(100 * 1024, 'a')}).status);
  EXPECT_EQ(200, d.Get("/healthz").status) << "the daemon keeps answering";
}

TEST(Api, MetricsPassPromtool) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t id = d.Submit({{"argv", {"true"}}});
  ASSERT_TRUE(d.WaitStatus(id, "succeeded"));
  d.Get("/nope");
  auto m = d.Get("/metrics");
  ASSERT_EQ(200, m.status);
  EXPECT_NE(std::string::npos, m.headers.find("text/plain; version=0.0.4"));
  for (const char* name : {"orchestrator_jobs{status=\"succeeded\"} 1", "orchestrator_max_concurrency 1",
                           "orchestrator_jobs_submitted_total 1", "orchestrator_jobs_claimed_total 1",
                           "orchestrator_runs_finished_total{outcome=\"succeeded\"} 1",
                           "orchestrator_impossible_queued_total 0",
                           "orchestrator_exit_detection_seconds_count 1",
                           "orchestrator_run_duration_seconds_bucket",
                           "orchestrator_http_requests_total{route=\"unknown\",code=\"404\"} 1",
                           "orchestrator_process_start_time_seconds"}) {
    EXPECT_NE(std::string::npos, m.body.find(name)) << name;
  }
  if (access("/usr/bin/promtool", X_OK) != 0) GTEST_SKIP() << "promtool not installed";
  test::WriteFile(dir.File("metrics.txt"), m.body);
  auto check = test::RunCommand({"sh", "-c", "promtool check metrics < " + dir.File("metrics.txt")});
  EXPECT_EQ(0, check.exit_code) << check.out << check.err;
}

TEST(Api, TokenProtectsEverythingButHealthReadinessAndMetrics) {
  TempDir dir;
  test::WriteFile(dir.File("token"), "s3cret-token\n");
  chmod(dir.File("token").c_str(), 0600);
  Daemon d(dir, "[server]\ntoken_file = \"token\"\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  EXPECT_EQ(200, d.Get("/healthz").status);
  EXPECT_EQ(200, d.Get("/readyz").status);
  EXPECT_EQ(200, d.Get("/metrics").status);
  auto denied = d.Get("/queue");
  EXPECT_EQ(401, denied.status);
  EXPECT_NE(std::string::npos, denied.headers.find("WWW-Authenticate: Bearer"));
  EXPECT_EQ(401, HttpCall("GET", d.url() + "/queue", "", {"Authorization: Bearer wrong"}).status);
  EXPECT_EQ(401, HttpCall("POST", d.url() + "/jobs", "{\"argv\":[\"true\"]}").status);
  EXPECT_EQ(200, HttpCall("GET", d.url() + "/queue", "", {"Authorization: Bearer s3cret-token"}).status);
  EXPECT_EQ(std::string::npos, d.Log().find("s3cret-token")) << "the token never reaches the log";
}

TEST(Api, WorldReadableTokenFileRefusesToStart) {
  TempDir dir;
  test::WriteFile(dir.File("token"), "tok\n");
  chmod(dir.File("token").c_str(), 0644);
  test::WriteFile(dir.File("o.toml"), "[server]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"token\"\n"
                                      "[store]\npath = \"q.db\"\n");
  auto r = test::RunCommand({test::OrchestratorBinary(), "serve", "--config", dir.File("o.toml")});
  EXPECT_EQ(2, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("token_file")) << r.err;
}

TEST(Api, UnixSocketServesTheSameApi) {
  TempDir dir;
  std::string sock = dir.File("api.sock");
  Daemon d(dir, "[server]\nunix_socket = \"api.sock\"\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  struct stat st {};
  ASSERT_EQ(0, stat(sock.c_str(), &st));
  EXPECT_EQ(0660u, st.st_mode & 0777);
  auto r = test::RunCommand({"curl", "-s", "--unix-socket", sock, "http://localhost/healthz"});
  EXPECT_EQ("{\"status\":\"ok\"}\n", r.out);
}

TEST(Api, StoreThatCannotBeOpenedExitsTwo) {
  TempDir dir;
  test::WriteFile(dir.File("q.db"), std::string(8192, 'g'));  // not a database
  test::WriteFile(dir.File("o.toml"), "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"q.db\"\n");
  auto r = test::RunCommand({test::OrchestratorBinary(), "serve", "--config", dir.File("o.toml")});
  EXPECT_EQ(2, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("cannot open the store")) << r.err;
}

}  // namespace
}  // namespace orch
