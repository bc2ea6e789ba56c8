// Several hosts, one queue (SPEC §11): real daemons, each in its own PID
// namespace with its own node_id, sharing one real PostgreSQL database.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "integration/daemon_harness.h"
#include "store/job_store.h"
#include "support/pg_test.h"

namespace orch::test {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::vector<std::string> kOwnPidNamespace = {"unshare", "--pid", "--fork", "--mount-proc"};

struct NodeOptions {
  int lease_s = 2;
  int max_concurrency = 4;
  std::string extra;  // more "[section]" / "key = value" lines
};

std::string NodeToml(const std::string& url, const std::string& node, const NodeOptions& o) {
  return "[store]\nbackend = \"postgres\"\nurl = \"" + url + "\"\n[cluster]\nnode_id = \"" + node +
         "\"\nlease_s = " + std::to_string(o.lease_s) +
         "\n[supervisor]\nmax_concurrency = " + std::to_string(o.max_concurrency) +
         "\nkill_grace_s = 2\nbackoff_base_s = 0.1\nbackoff_max_s = 0.5\n" + o.extra;
}

// One daemon standing for one host.
struct Node {
  Node(const std::string& url, const std::string& id, const NodeOptions& o = {})
      : name(id), daemon(dir, NodeToml(url, id, o)) {}
  TempDir dir;
  std::string name;
  Daemon daemon;
};

json ShJob(const std::string& script) { return {{"argv", {"/bin/sh", "-c", script}}}; }

// Every run of a job, as the API shows them.
json Runs(const Daemon& d, int64_t id) { return d.Job(id)["runs"]; }

// A line a job writes is whole (not just its file created).
bool Written(const std::string& path) {
  std::string text = ReadFile(path);
  return !text.empty() && text.back() == '\n';
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

// A TCP proxy on 127.0.0.1 in front of the test PostgreSQL, owned by the
// test: Freeze() stops moving bytes (connections stay open, as on a network
// that drops everything), Thaw() moves them again.
class FreezableProxy {
 public:
  explicit FreezableProxy(int upstream_port) : upstream_port_(upstream_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(listen_fd_, 64) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "proxy: cannot listen";
      return;
    }
    port_ = ntohs(addr.sin_port);
    pipe2(stop_pipe_, O_CLOEXEC);
    thread_ = std::thread([this] { Main(); });
  }
  ~FreezableProxy() {
    if (thread_.joinable()) {
      (void)!write(stop_pipe_[1], "x", 1);
      thread_.join();
    }
    for (auto& [a, b] : pairs_) {
      close(a);
      close(b);
    }
    close(listen_fd_);
    close(stop_pipe_[0]);
    close(stop_pipe_[1]);
  }
  int port() const { return port_; }
  void Freeze() { frozen_ = true; }
  void Thaw() { frozen_ = false; }

 private:
  void Main() {
    for (;;) {
      std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (!frozen_) {
        for (auto& [a, b] : pairs_) {
          fds.push_back({a, POLLIN, 0});
          fds.push_back({b, POLLIN, 0});
        }
      }
      if (poll(fds.data(), fds.size(), 50) < 0) continue;
      if (fds[1].revents) return;
      if (fds[0].revents & POLLIN) Accept();
      for (size_t i = 2; i < fds.size(); ++i) {
        if (!fds[i].revents) continue;
        size_t pair = (i - 2) / 2;
        if (pair >= pairs_.size()) break;
        int from = fds[i].fd;
        int to = from == pairs_[pair].first ? pairs_[pair].second : pairs_[pair].first;
        char buf[65536];
        ssize_t n = read(from, buf, sizeof buf);
        if (n <= 0) {
          close(pairs_[pair].first);
          close(pairs_[pair].second);
          pairs_.erase(pairs_.begin() + static_cast<long>(pair));
          break;  // indexes moved: poll again
        }
        for (ssize_t off = 0; off < n;) {
          ssize_t w = write(to, buf + off, static_cast<size_t>(n - off));
          if (w <= 0) break;
          off += w;
        }
      }
    }
  }
  void Accept() {
    int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(upstream_port_));
    if (connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close(client);
      close(up);
      return;
    }
    pairs_.emplace_back(client, up);
  }

  int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  int stop_pipe_[2] = {-1, -1};
  std::atomic<bool> frozen_{false};
  std::vector<std::pair<int, int>> pairs_;  // (client, upstream), proxy thread only
  std::thread thread_;
};

TEST(Cluster, OneNodeRunsJobsAndShowsItselfInQueue) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  Node n1(db.url(), "n1");
  ASSERT_TRUE(n1.daemon.Start(kOwnPidNamespace)) << n1.daemon.Log();
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(n1.daemon.Submit({{"argv", {"/bin/true"}}}));
  for (int64_t id : ids) ASSERT_TRUE(n1.daemon.WaitStatus(id, "succeeded")) << n1.daemon.Log();
  int64_t slow = n1.daemon.Submit({{"argv", {"sleep", "30"}}});
  ASSERT_TRUE(n1.daemon.WaitStatus(slow, "running"));

  json q = n1.daemon.Get("/queue").Json();
  EXPECT_EQ("postgres", q["cluster"]["backend"]);
  EXPECT_EQ("n1", q["cluster"]["node_id"]);
  EXPECT_EQ(2, q["cluster"]["lease_s"]);
  ASSERT_EQ(1u, q["cluster"]["nodes"].size()) << q.dump();
  EXPECT_EQ("n1", q["cluster"]["nodes"][0]["node_id"]);
  EXPECT_EQ(true, q["cluster"]["nodes"][0]["alive"]);
  EXPECT_EQ(1, q["cluster"]["nodes"][0]["running"]);
  EXPECT_EQ(q["supervisor"]["incarnation"], q["cluster"]["nodes"][0]["incarnation"]);
  ASSERT_EQ(1u, q["running"].size());
  EXPECT_EQ("n1", q["running"][0]["node_id"]);
  EXPECT_EQ(5, q["counts"]["succeeded"]);
  EXPECT_EQ("n1", Runs(n1.daemon, ids[0])[0]["node_id"]);
  EXPECT_EQ("n1", db.Texts("SELECT node_id FROM runs WHERE job_id = " + std::to_string(ids[0]))[0]);
  std::string metrics = n1.daemon.Get("/metrics").body;
  EXPECT_NE(std::string::npos, metrics.find("orchestrator_lease_held 1")) << metrics;
  EXPECT_EQ(0, n1.daemon.Stop());
  // A clean stop gives the node_id back at once.
  EXPECT_EQ(1, db.Int("SELECT count(*) FROM nodes WHERE node_id = 'n1' AND lease_until <= "
                      "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"));
  EXPECT_EQ("queued", db.Texts("SELECT status FROM jobs WHERE id = " + std::to_string(slow))[0]);
}

TEST(Cluster, ASecondDaemonWithTheSameNodeIdIsRefused) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  Node first(db.url(), "same");
  ASSERT_TRUE(first.daemon.Start(kOwnPidNamespace)) << first.daemon.Log();
  Node second(db.url(), "same");
  EXPECT_FALSE(second.daemon.Start(kOwnPidNamespace));
  EXPECT_EQ(2, second.daemon.WaitExit(seconds(30))) << second.daemon.Log();
  std::string log = second.daemon.Log();
  EXPECT_NE(std::string::npos, log.find("is held by incarnation")) << log;
  EXPECT_NE(std::string::npos, log.find("give each host its own cluster.node_id")) << log;
  // The first one never noticed.
  EXPECT_EQ(200, first.daemon.Get("/readyz").status);
  EXPECT_EQ(0, first.daemon.Stop());
}

// 3 nodes race for 300 jobs. Each job takes an exclusive lock on a file of
// its own (and of its serial key) without waiting, and fails if that lock is
// held: every job succeeding means no job and no key ever ran twice at once.
TEST(Cluster, ThreeNodesRunEveryJobExactlyOnceWithinTheirLimits) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  TempDir work;
  std::vector<std::unique_ptr<Node>> nodes;
  for (const char* id : {"a", "b", "c"}) {
    nodes.push_back(std::make_unique<Node>(db.url(), id));
    ASSERT_TRUE(nodes.back()->daemon.Start(kOwnPidNamespace)) << nodes.back()->daemon.Log();
  }
  const std::string d = work.path();
  const std::string script =
      "exec 9>\"" + d + "/job-$ORCH_JOB_ID.lock\"; flock -n 9 || exit 3; "
      "if [ -n \"$KEY\" ]; then exec 8>\"" + d + "/key-$KEY.lock\"; flock -n 8 || exit 4; fi; "
      "echo \"$ORCH_NODE_ID $ORCH_RUN_ID\" >> \"" + d + "/ran-$ORCH_JOB_ID\"; sleep 0.05";
  constexpr int kJobs = 300;
  std::vector<int64_t> ids;
  for (int i = 0; i < kJobs; ++i) {
    json spec = ShJob(script);
    if (i % 10 == 0) {
      std::string key = "k" + std::to_string(i % 4);
      spec["serial_key"] = key;
      spec["env"] = {{"KEY", key}};
    }
    ids.push_back(nodes[i % 3]->daemon.Submit(spec));
    ASSERT_GT(ids.back(), 0);
  }
  ASSERT_TRUE(WaitFor([&] {
    return db.Int("SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed')") == kJobs;
  }, seconds(120))) << nodes[0]->daemon.Log();

  EXPECT_EQ(kJobs, db.Int("SELECT count(*) FROM jobs WHERE status = 'succeeded'"))
      << "a job that found its lock (or its key's) held failed";
  EXPECT_EQ(kJobs, db.Int("SELECT count(*) FROM runs")) << "every job ran exactly once";
  std::map<std::string, int> per_node;
  for (int64_t id : ids) {
    std::string ran = ReadFile(d + "/ran-" + std::to_string(id));
    ASSERT_EQ(1u, CountLines(d + "/ran-" + std::to_string(id))) << id << ": " << ran;
    ++per_node[ran.substr(0, ran.find(' '))];
  }
  EXPECT_EQ(3u, per_node.size()) << "every node took a share";
  // max_concurrency per node, from the runs' own times: at no run's start
  // did its node have more than 4 runs open.
  EXPECT_LE(db.Int("SELECT max(c) FROM (SELECT (SELECT count(*) FROM runs o WHERE "
                   "o.node_id = r.node_id AND o.started_at <= r.started_at AND "
                   "o.ended_at > r.started_at) AS c FROM runs r) AS x"),
            4);
  EXPECT_EQ(0, db.Int("SELECT count(*) FROM runs WHERE node_id NOT IN ('a', 'b', 'c')"));
  for (auto& n : nodes) {
    json q = n->daemon.Get("/queue").Json();
    EXPECT_EQ(3u, q["cluster"]["nodes"].size()) << q.dump();
    EXPECT_EQ(kJobs, q["counts"]["succeeded"]) << "counts are the whole queue's";
    EXPECT_EQ(0, n->daemon.Stop());
  }
}

// kill -9 of a node's PID namespace takes its jobs with it; once its lease
// has run out another node rescues each run (lost, node_lost) and the job
// runs again, once.
TEST(Cluster, AKilledNodesRunsAreRescuedAndRunOnceMore) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  TempDir work;
  const std::string d = work.path();
  Node dead(db.url(), "dead");
  ASSERT_TRUE(dead.daemon.Start(kOwnPidNamespace)) << dead.daemon.Log();
  std::vector<int64_t> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(dead.daemon.Submit(ShJob(
        "echo \"$ORCH_NODE_ID\" >> \"" + d + "/ran-$ORCH_JOB_ID\"; "
        "[ \"$ORCH_NODE_ID\" = dead ] && exec sleep 60; exit 0")));
  }
  for (int64_t id : ids) ASSERT_TRUE(dead.daemon.WaitStatus(id, "running")) << dead.daemon.Log();
  Node alive1(db.url(), "alive1"), alive2(db.url(), "alive2");
  ASSERT_TRUE(alive1.daemon.Start(kOwnPidNamespace)) << alive1.daemon.Log();
  ASSERT_TRUE(alive2.daemon.Start(kOwnPidNamespace)) << alive2.daemon.Log();

  // SIGKILL to the namespace's init (the daemon): the kernel kills every
  // process in it, its jobs included, as when a host dies.
  auto killed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(0, kill(dead.daemon.DaemonPid(), SIGKILL));
  dead.daemon.Kill9();
  for (int64_t id : ids) {
    ASSERT_TRUE(alive1.daemon.WaitStatus(id, "succeeded", seconds(60)))
        << alive1.daemon.Job(id).dump() << alive1.daemon.Log();
  }
  double took_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  std::cout << "[ measure  ] kill -9 of a node -> its 4 jobs done elsewhere: " << took_s
            << " s (lease_s = 2)\n";
  EXPECT_LT(took_s, 2 * 2 + 3.0) << "rescued within 2 x lease_s (+3 s for a loaded machine)";
  for (int64_t id : ids) {
    json runs = Runs(alive1.daemon, id);
    ASSERT_EQ(2u, runs.size()) << runs.dump();
    EXPECT_EQ("dead", runs[0]["node_id"]);
    EXPECT_EQ("lost", runs[0]["outcome"]);
    EXPECT_EQ("node_lost", runs[0]["reason"]);
    EXPECT_NE("dead", runs[1]["node_id"]);
    EXPECT_EQ("succeeded", runs[1]["outcome"]);
    EXPECT_EQ(2u, CountLines(d + "/ran-" + std::to_string(id))) << "run once more, and only once";
  }
  std::string m1 = alive1.daemon.Get("/metrics").body, m2 = alive2.daemon.Get("/metrics").body;
  auto rescued = [](const std::string& m) {
    const std::string name = "\norchestrator_rescued_runs_total ";
    auto at = m.find(name);
    return at == std::string::npos ? -1 : std::stoi(m.substr(at + name.size()));
  };
  EXPECT_EQ(4, rescued(m1) + rescued(m2)) << "each run rescued by exactly one node";
  json q = alive1.daemon.Get("/queue").Json();
  for (const auto& n : q["cluster"]["nodes"]) {
    if (n["node_id"] == "dead") {
      EXPECT_EQ(false, n["alive"]) << q.dump();
    }
  }
  EXPECT_EQ(0, alive1.daemon.Stop());
  EXPECT_EQ(0, alive2.daemon.Stop());
}

// A node frozen past its lease (SIGSTOP: its jobs run on) is rescued by the
// others; when it wakes it stops its runs at once, and what it then reports
// of them changes nothing in the store.
TEST(Cluster, APausedNodeStopsItsRunsWhenItWakesAndItsLateEndIsRefused) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  TempDir work;
  const std::string d = work.path();
  Node sleeper(db.url(), "sleeper");
  ASSERT_TRUE(sleeper.daemon.Start(kOwnPidNamespace)) << sleeper.daemon.Log();
  int64_t id = sleeper.daemon.Submit(ShJob(
      "trap 'date +%s%N > \"" + d + "/term-$ORCH_NODE_ID\"; exit 0' TERM; "
      "date +%s%N > \"" + d + "/start-$ORCH_NODE_ID\"; "
      "if [ \"$ORCH_NODE_ID\" = sleeper ]; then sleep 60 & wait; fi; exit 0"));
  ASSERT_TRUE(sleeper.daemon.WaitStatus(id, "running")) << sleeper.daemon.Log();
  Node other(db.url(), "other");
  ASSERT_TRUE(other.daemon.Start(kOwnPidNamespace)) << other.daemon.Log();

  pid_t frozen = sleeper.daemon.DaemonPid();
  auto wall_ns = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  int64_t stopped_ns = wall_ns();
  ASSERT_EQ(0, kill(frozen, SIGSTOP));
  struct ContOnExit {
    pid_t pid;
    ~ContOnExit() { kill(pid, SIGCONT); }
  } cont{frozen};
  // Rescued and run again elsewhere while the first copy still runs.
  ASSERT_TRUE(other.daemon.WaitStatus(id, "succeeded", seconds(60)))
      << other.daemon.Job(id).dump() << other.daemon.Log();
  EXPECT_FALSE(FileExists(d + "/term-sleeper")) << "a frozen daemon signals nothing";

  auto woke = std::chrono::steady_clock::now();
  int64_t continued_ns = wall_ns();
  ASSERT_EQ(0, kill(frozen, SIGCONT));
  // Read once, whole: the file is the job's to write.
  std::string term_text;
  ASSERT_TRUE(WaitFor([&] {
    term_text = ReadFile(d + "/term-sleeper");
    return !term_text.empty() && term_text.back() == '\n';
  }, seconds(10))) << sleeper.daemon.Log();
  double stop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - woke).count();
  std::cout << "[ measure  ] SIGCONT -> its run got SIGTERM: " << stop_s << " s\n";
  EXPECT_LT(stop_s, 5.0) << "it must stop its runs at once when it wakes";
  // Two copies ran at once from the second one's start to the first one's
  // SIGTERM: only the pause may hold that overlap.
  std::string start_text = ReadFile(d + "/start-other");
  ASSERT_TRUE(Written(d + "/start-other")) << "[" << start_text << "]";
  int64_t overlap_ns = std::stoll(term_text) - std::stoll(start_text);
  int64_t pause_ns = continued_ns - stopped_ns;
  std::cout << "[ measure  ] two copies overlapped " << overlap_ns / 1e6 << " ms; the pause was "
            << pause_ns / 1e6 << " ms\n";
  EXPECT_LT(overlap_ns, pause_ns + 1'000'000'000) << "overlap beyond the pause";

  // Its late end of the first run was refused: the history is the rescuer's.
  ASSERT_TRUE(WaitFor([&] {
    return sleeper.daemon.Log().find("run already closed elsewhere") != std::string::npos;
  })) << sleeper.daemon.Log();
  json runs = Runs(other.daemon, id);
  ASSERT_EQ(2u, runs.size()) << runs.dump();
  EXPECT_EQ("sleeper", runs[0]["node_id"]);
  EXPECT_EQ("lost", runs[0]["outcome"]);
  EXPECT_EQ("node_lost", runs[0]["reason"]);
  EXPECT_EQ("other", runs[1]["node_id"]);
  EXPECT_EQ("succeeded", runs[1]["outcome"]);
  EXPECT_EQ("succeeded", other.daemon.Job(id)["status"]);
  std::string log = sleeper.daemon.Log();
  EXPECT_NE(std::string::npos, log.find("lease lost")) << log;
  // It renews and serves again.
  EXPECT_TRUE(WaitFor([&] { return sleeper.daemon.Get("/readyz").status == 200; }, seconds(20)))
      << sleeper.daemon.Log();
  int64_t after = sleeper.daemon.Submit({{"argv", {"/bin/true"}}});
  EXPECT_TRUE(sleeper.daemon.WaitStatus(after, "succeeded"));
  EXPECT_EQ(0, sleeper.daemon.Stop());
  EXPECT_EQ(0, other.daemon.Stop());
}

// Claiming is event-driven across nodes: with the reaper's tick a minute
// away, a job queued on a full node is claimed by another one at once
// (LISTEN/NOTIFY), and so is a job whose serial key another node frees.
TEST(Cluster, WorkQueuedOnOneNodeIsClaimedByAnotherWithoutWaitingForATick) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  NodeOptions o;
  o.max_concurrency = 1;
  o.extra = "[reaper]\ninterval_ms = 60000\n";
  Node a(db.url(), "a", o), b(db.url(), "b", o);
  ASSERT_TRUE(a.daemon.Start(kOwnPidNamespace)) << a.daemon.Log();
  int64_t busy = a.daemon.Submit({{"argv", {"sleep", "30"}}, {"serial_key", "K"}});
  ASSERT_TRUE(a.daemon.WaitStatus(busy, "running"));
  ASSERT_TRUE(b.daemon.Start(kOwnPidNamespace)) << b.daemon.Log();
  // a is full: only b can take it.
  int64_t next = a.daemon.Submit({{"argv", {"/bin/true"}}});
  ASSERT_TRUE(a.daemon.WaitStatus(next, "succeeded", seconds(10))) << b.daemon.Log();
  EXPECT_EQ("b", Runs(a.daemon, next)[0]["node_id"]) << a.daemon.Log();
  // K is held on a; freeing it (cancel) lets b claim the next K job at once.
  int64_t keyed = b.daemon.Submit({{"argv", {"/bin/true"}}, {"serial_key", "K"}});
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ("queued", b.daemon.Job(keyed)["status"]) << "K is held on node a";
  ASSERT_EQ(202, a.daemon.Post("/jobs/" + std::to_string(busy) + "/cancel").status);
  ASSERT_TRUE(b.daemon.WaitStatus(keyed, "succeeded", seconds(10))) << b.daemon.Log();
  EXPECT_EQ(0, a.daemon.Stop());
  EXPECT_EQ(0, b.daemon.Stop());
}

// A node cut off from PostgreSQL (its proxy frozen) stops its runs before
// its lease can run out in the database, says so on /readyz, and takes work
// again once the network is back; meanwhile another node rescues the run.
TEST(Cluster, APartitionedNodeStopsItsRunsBeforeItsLeaseEndsAndRejoins) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  PgTestServer* server = PgTestServer::Get();
  ASSERT_NE(server, nullptr);
  FreezableProxy proxy(server->port());
  ASSERT_GT(proxy.port(), 0);
  TempDir work;
  const std::string d = work.path();
  NodeOptions o;
  o.lease_s = 3;
  Node cut(server->TcpUrl(db.name(), proxy.port()), "cut", o);
  ASSERT_TRUE(cut.daemon.Start(kOwnPidNamespace)) << cut.daemon.Log();
  int64_t id = cut.daemon.Submit(ShJob(
      "trap 'date +%s%3N > \"" + d + "/term-$ORCH_NODE_ID\"; exit 0' TERM; "
      "if [ \"$ORCH_NODE_ID\" = cut ]; then sleep 60 & wait; fi; exit 0"));
  ASSERT_TRUE(cut.daemon.WaitStatus(id, "running")) << cut.daemon.Log();
  Node other(db.url(), "other", o);
  ASSERT_TRUE(other.daemon.Start(kOwnPidNamespace)) << other.daemon.Log();

  proxy.Freeze();
  ASSERT_TRUE(WaitFor([&] { return Written(d + "/term-cut"); }, seconds(20)))
      << cut.daemon.Log();
  EXPECT_EQ(503, cut.daemon.Get("/readyz").status);
  ASSERT_TRUE(other.daemon.WaitStatus(id, "succeeded", seconds(30))) << other.daemon.Log();
  json runs = Runs(other.daemon, id);
  ASSERT_EQ(2u, runs.size()) << runs.dump();
  EXPECT_EQ("node_lost", runs[0]["reason"]);
  // The cut node's TERM came before the database judged its lease over
  // (the rescue closed the run at or after that moment).
  int64_t term_ms = std::stoll(ReadFile(d + "/term-cut"));
  int64_t rescued_ms = db.Int("SELECT ended_at FROM runs WHERE id = " +
                              std::to_string(runs[0]["id"].get<int64_t>()));
  EXPECT_LT(term_ms, rescued_ms) << "the run was stopped only after it was rescued";
  std::cout << "[ measure  ] partition: run stopped " << (rescued_ms - term_ms)
            << " ms before the rescue closed it\n";

  proxy.Thaw();
  EXPECT_TRUE(WaitFor([&] { return cut.daemon.Get("/readyz").status == 200; }, seconds(30)))
      << cut.daemon.Log();
  EXPECT_EQ("succeeded", other.daemon.Job(id)["status"]) << "the cut node's late end changed it";
  EXPECT_EQ(0, cut.daemon.Stop());
  EXPECT_EQ(0, other.daemon.Stop());
}

// A cancel asked of any node reaches the node that runs the job: that
// node, and only that one, signals the process.
TEST(Cluster, ACancelThroughAnotherNodeStopsTheRunWhereItRuns) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  TempDir work;
  const std::string d = work.path();
  NodeOptions o;
  o.extra = "[reaper]\ninterval_ms = 60000\n";  // the notification must do it
  Node owner(db.url(), "owner", o);
  ASSERT_TRUE(owner.daemon.Start(kOwnPidNamespace)) << owner.daemon.Log();
  int64_t id = owner.daemon.Submit(ShJob(
      "trap 'echo term > \"" + d + "/term\"; exit 0' TERM; sleep 60 & wait"));
  ASSERT_TRUE(owner.daemon.WaitStatus(id, "running"));
  Node other(db.url(), "other", o);
  ASSERT_TRUE(other.daemon.Start(kOwnPidNamespace)) << other.daemon.Log();
  ASSERT_EQ(202, other.daemon.Post("/jobs/" + std::to_string(id) + "/cancel").status);
  ASSERT_TRUE(other.daemon.WaitStatus(id, "cancelled", seconds(15))) << owner.daemon.Log();
  EXPECT_TRUE(FileExists(d + "/term"));
  json runs = Runs(other.daemon, id);
  ASSERT_EQ(1u, runs.size());
  EXPECT_EQ("owner", runs[0]["node_id"]);
  EXPECT_EQ("cancelled", runs[0]["outcome"]);
  // Its log is on the node that ran it.
  HttpResult log = other.daemon.Get("/jobs/" + std::to_string(id) + "/log");
  EXPECT_EQ(404, log.status);
  EXPECT_NE(std::string::npos, log.body.find("is on node owner")) << log.body;
  EXPECT_EQ(200, owner.daemon.Get("/jobs/" + std::to_string(id) + "/log").status);
  EXPECT_EQ(0, owner.daemon.Stop());
  EXPECT_EQ(0, other.daemon.Stop());
}

// A pause or resume through any node holds for the whole queue.
TEST(Cluster, PauseAndResumeReachEveryNode) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  Node a(db.url(), "a"), b(db.url(), "b");
  ASSERT_TRUE(a.daemon.Start(kOwnPidNamespace)) << a.daemon.Log();
  ASSERT_TRUE(b.daemon.Start(kOwnPidNamespace)) << b.daemon.Log();
  ASSERT_EQ(200, a.daemon.Post("/queue/pause").status);
  ASSERT_TRUE(WaitFor([&] { return b.daemon.Get("/queue").Json()["paused"] == true; }))
      << "node b never saw the pause";
  int64_t id = b.daemon.Submit({{"argv", {"/bin/true"}}});
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ("queued", b.daemon.Job(id)["status"]) << "claimed while the queue was paused";
  ASSERT_EQ(200, a.daemon.Post("/queue/resume").status);
  EXPECT_TRUE(b.daemon.WaitStatus(id, "succeeded"));
  EXPECT_EQ(0, a.daemon.Stop());
  EXPECT_EQ(0, b.daemon.Stop());
}

// PostgreSQL restarts under running jobs: the daemons reconnect by
// themselves, no job is lost and none runs twice.
TEST(Cluster, APostgresRestartLosesNothingAndRunsNothingTwice) {
  PgPrivateServer server;
  ASSERT_TRUE(server.ok());
  TempDir work;
  const std::string d = work.path();
  NodeOptions o;
  o.lease_s = 10;  // the restart must not cost the lease
  Node a(server.Url(), "a", o), b(server.Url(), "b", o);
  ASSERT_TRUE(a.daemon.Start(kOwnPidNamespace)) << a.daemon.Log();
  ASSERT_TRUE(b.daemon.Start(kOwnPidNamespace)) << b.daemon.Log();
  std::vector<int64_t> ids;
  for (int i = 0; i < 6; ++i) {
    ids.push_back((i % 2 ? b : a).daemon.Submit(
        ShJob("echo \"$ORCH_RUN_ID\" >> \"" + d + "/ran-$ORCH_JOB_ID\"; sleep 2")));
  }
  // Each one exec'd (its pid recorded): the restart hits runs in flight.
  for (int64_t id : ids) ASSERT_TRUE(a.daemon.WaitStatus(id, "running")) << a.daemon.Log();
  ASSERT_TRUE(server.Restart());
  for (int64_t id : ids) {
    ASSERT_TRUE(a.daemon.WaitStatus(id, "succeeded", seconds(60)))
        << a.daemon.Job(id).dump() << a.daemon.Log() << b.daemon.Log();
    EXPECT_EQ(1u, Runs(a.daemon, id).size())
        << a.daemon.Job(id).dump() << a.daemon.Log() << b.daemon.Log();
    EXPECT_EQ(1u, CountLines(d + "/ran-" + std::to_string(id)));
  }
  // And both still take new work.
  int64_t later = b.daemon.Submit({{"argv", {"/bin/true"}}});
  EXPECT_TRUE(b.daemon.WaitStatus(later, "succeeded"));
  EXPECT_EQ(200, a.daemon.Get("/readyz").status);
  EXPECT_EQ(0, a.daemon.Stop());
  EXPECT_EQ(0, b.daemon.Stop());
}

// A wrong store.url, a refused password, a schema newer than the binary:
// each is an error at start that names what was wrong (exit 2). A server
// that is merely down is waited for, and the daemon starts once it is up.
TEST(Cluster, StartUpSaysWhatIsWrongWithTheDatabaseAndWaitsForOneThatIsDown) {
  PgTestServer* server = PgTestServer::Get();
  ASSERT_NE(server, nullptr);
  struct Case {
    std::string url, expect;
  };
  PgTestDatabase newer;
  ASSERT_TRUE(newer.ok());
  {
    Config::Store c;
    c.backend = "postgres";
    c.url = newer.url();
    ASSERT_TRUE(OpenJobStore(c).ok());
    ASSERT_EQ("", newer.Exec("UPDATE schema_version SET version = 99"));
  }
  const std::vector<Case> cases = {
      {"postgresql://[::1", "store.url is not a valid PostgreSQL URL"},
      {"postgresql://orch_pw:wrong-password@127.0.0.1:" + std::to_string(server->port()) +
           "/postgres",
       "password authentication failed"},
      {server->Url("no_such_db"), "no_such_db"},
      {newer.url(), "schema version 99 is newer than this binary supports"},
  };
  for (const auto& c : cases) {
    TempDir dir;
    Daemon d(dir, NodeToml(c.url, "n", NodeOptions{}));
    EXPECT_FALSE(d.Start()) << c.url;
    EXPECT_EQ(2, d.WaitExit(seconds(30))) << c.url << "\n" << d.Log();
    EXPECT_NE(std::string::npos, d.Log().find(c.expect)) << c.url << "\n" << d.Log();
    EXPECT_EQ(std::string::npos, d.Log().find("wrong-password")) << "a password was logged";
  }

  PgPrivateServer down;
  ASSERT_TRUE(down.ok());
  ASSERT_TRUE(down.Stop());
  TempDir dir;
  Daemon d(dir, NodeToml(down.Url(), "n", NodeOptions{}));
  // The server comes up once the daemon has said it waits for it. (The
  // daemon is started from this thread: it dies with the thread that forked
  // it.)
  bool waited = false, up = false;
  std::thread server_side([&] {
    waited = WaitFor([&] {
      return d.Log().find("the store cannot be reached; retrying") != std::string::npos;
    });
    up = down.Start();
  });
  bool started = d.Start();
  server_side.join();
  EXPECT_TRUE(waited) << d.Log();
  ASSERT_TRUE(up);
  ASSERT_TRUE(started) << d.Log();
  int64_t id = d.Submit({{"argv", {"/bin/true"}}});
  EXPECT_TRUE(d.WaitStatus(id, "succeeded")) << d.Log();
  EXPECT_EQ(0, d.Stop()) << d.Log();
}

// kill -9 of a daemon that is not its namespace's init leaves its job
// running; another node rescues the run and runs the job again. When the
// daemon comes back (as soon as it can take its node_id again) it kills
// the old copy, checked by identity: only one copy runs on.
TEST(Cluster, ARestartedNodeKillsTheOldCopyOfARunAnotherNodeRescued) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  TempDir work;
  const std::string d = work.path();
  Node crashed(db.url(), "crashed");
  ASSERT_TRUE(crashed.daemon.Start()) << crashed.daemon.Log();  // no namespace: jobs outlive it
  int64_t id = crashed.daemon.Submit(ShJob(
      "echo $$ >> \"" + d + "/pids\"; [ \"$ORCH_NODE_ID\" = crashed ] && exec sleep 120; "
      "exec sleep 1"));
  ASSERT_TRUE(crashed.daemon.WaitStatus(id, "running"));
  Node rescuer(db.url(), "rescuer");
  ASSERT_TRUE(rescuer.daemon.Start(kOwnPidNamespace)) << rescuer.daemon.Log();
  crashed.daemon.Kill9();
  pid_t old_copy = static_cast<pid_t>(std::stol(ReadFile(d + "/pids")));
  struct KillOnExit {
    pid_t pid;
    ~KillOnExit() { kill(-pid, SIGKILL); }
  } cleanup{old_copy};
  ASSERT_EQ(0, kill(old_copy, 0)) << "the job outlives its daemon";
  ASSERT_TRUE(WaitFor([&] { return Runs(rescuer.daemon, id).size() == 2; }, seconds(20)))
      << rescuer.daemon.Log();
  EXPECT_EQ("node_lost", Runs(rescuer.daemon, id)[0]["reason"]);
  EXPECT_EQ(0, kill(old_copy, 0)) << "nobody on this host killed it yet";

  ASSERT_TRUE(crashed.daemon.Start()) << crashed.daemon.Log();
  EXPECT_TRUE(WaitFor([&] {
    std::string stat = ReadFile("/proc/" + std::to_string(old_copy) + "/stat");
    return stat.empty() || stat.find(") Z") != std::string::npos;
  })) << crashed.daemon.Log();
  // Through its cgroup where there is one (the whole tree), else by identity.
  EXPECT_TRUE(crashed.daemon.Log().find("killing a process of a run another node rescued") !=
                  std::string::npos ||
              crashed.daemon.Log().find("leftover run cgroup: killing") != std::string::npos)
      << crashed.daemon.Log();
  EXPECT_TRUE(rescuer.daemon.WaitStatus(id, "succeeded"));
  EXPECT_EQ(0, crashed.daemon.Stop());
  EXPECT_EQ(0, rescuer.daemon.Stop());
}

// On SQLite the one node's row is renewed too: it never shows as dead.
TEST(Cluster, TheSqliteNodeStaysAliveInQueue) {
  TempDir dir;
  Daemon d(dir, "[cluster]\nlease_s = 2\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  std::this_thread::sleep_for(milliseconds(3000));  // past one lease
  json q = d.Get("/queue").Json();
  EXPECT_EQ("sqlite", q["cluster"]["backend"]);
  ASSERT_EQ(1u, q["cluster"]["nodes"].size()) << q.dump();
  EXPECT_EQ(true, q["cluster"]["nodes"][0]["alive"]) << q.dump();
  EXPECT_EQ(0, d.Stop());
}

// ORCH-126 on PostgreSQL: a queued row still carrying a dead run, written
// with SQL behind the daemon's back, is swept and counted as on SQLite.
TEST(Cluster, AnImpossibleQueuedRowIsSweptAndCounted) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  Node n(db.url(), "n", NodeOptions{2, 1, ""});
  ASSERT_TRUE(n.daemon.Start(kOwnPidNamespace)) << n.daemon.Log();
  ASSERT_EQ(200, n.daemon.Post("/queue/pause").status);
  int64_t id = n.daemon.Submit({{"argv", {"/bin/true"}}});
  // What the old code left: queued, but carrying a dead run (pid 999999
  // never was) whose row was never closed.
  ASSERT_EQ("", db.Exec("ALTER TABLE jobs DROP CONSTRAINT i1_queued_owns_nothing; "
                        "INSERT INTO runs(id, job_id, attempt, incarnation, node_id, boot_id, "
                        "pidns_ino, pid, start_time, started_at) VALUES (9001, " +
                        std::to_string(id) + ", 1, 'old', 'n', 'old-boot', 1, 999999, 5, 1); "
                        "UPDATE jobs SET run_id = 9001, pid = 999999, started_at = 1 "
                        "WHERE id = " + std::to_string(id)));
  ASSERT_TRUE(WaitFor([&] {
    return n.daemon.Get("/queue").Json()["reaper"]["impossible_queued_total"] == 1;
  })) << n.daemon.Log();
  ASSERT_EQ(200, n.daemon.Post("/queue/resume").status);
  ASSERT_TRUE(n.daemon.WaitStatus(id, "succeeded")) << n.daemon.Log();
  json runs = Runs(n.daemon, id);
  ASSERT_EQ(2u, runs.size()) << runs.dump();
  for (const auto& run : runs) {
    if (run["id"] == 9001) {
      EXPECT_EQ("lost", run["outcome"]) << runs.dump();
      EXPECT_EQ("impossible_queued", run["reason"]) << runs.dump();
    } else {
      EXPECT_EQ("succeeded", run["outcome"]) << runs.dump();
    }
  }
  EXPECT_EQ(0, n.daemon.Stop());
}

}  // namespace
}  // namespace orch::test
