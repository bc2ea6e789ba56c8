// Secure by default (SPEC §7): who may ask the root daemon to run commands,
// against the real binary over loopback and its unix socket.
#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <gtest/gtest.h>
#include <string>
#include <vector>

#include "integration/daemon_harness.h"

namespace orch {
namespace {

using nlohmann::json;
using test::Daemon;
using test::HttpCall;
using test::ReadFile;
using test::TempDir;
using test::WaitFor;

int64_t RssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

TEST(Auth, ADefaultConfigMakesATokenAndRefusesRequestsWithoutIt) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string token_path = dir.File("var/token");
  struct stat st {};
  ASSERT_EQ(0, stat(token_path.c_str(), &st)) << "created at first start";
  EXPECT_EQ(0600u, st.st_mode & 07777);
  EXPECT_EQ(geteuid(), st.st_uid);
  std::string token = d.Token();
  EXPECT_EQ(64u, token.size());
  EXPECT_EQ(std::string::npos, token.find_first_not_of("0123456789abcdef"));
  EXPECT_EQ(std::string::npos, d.Log().find(token)) << "the token is never logged";

  // The reproduction from the issue: a form-typed body, no token.
  std::string marker = dir.File("p");
  std::string body = "{\"argv\":[\"/bin/sh\",\"-c\",\"id>" + marker + "\"]}";
  auto anonymous = HttpCall("POST", d.url() + "/jobs", body,
                            {"Content-Type: application/x-www-form-urlencoded"});
  EXPECT_EQ(401, anonymous.status) << anonymous.body;
  EXPECT_NE(std::string::npos, anonymous.headers.find("WWW-Authenticate: Bearer"));
  EXPECT_NE(std::string::npos, anonymous.headers.find("Connection: close"));
  EXPECT_EQ(401, HttpCall("GET", d.url() + "/jobs").status);
  EXPECT_EQ(401, HttpCall("GET", d.url() + "/jobs", "", {"Authorization: Bearer " + token + "x"})
                     .status);

  // With the token the form type is still refused: no cross-site "simple" POST.
  auto form = HttpCall("POST", d.url() + "/jobs", body,
                       {"Authorization: Bearer " + token,
                        "Content-Type: application/x-www-form-urlencoded"});
  EXPECT_EQ(415, form.status) << form.body;
  auto untyped = HttpCall("POST", d.url() + "/jobs", body, {"Authorization: Bearer " + token,
                                                             "Content-Type:"});
  EXPECT_EQ(415, untyped.status) << untyped.body;
  EXPECT_EQ(200, d.Get("/queue").status);
  EXPECT_EQ(0, d.Get("/queue").Json().at("counts").at("queued").get<int>() +
                   d.Get("/queue").Json().at("counts").at("succeeded").get<int>());
  EXPECT_NE(0, access(marker.c_str(), F_OK)) << "nothing ran";

  // Open to all, and saying nothing about paths.
  for (const char* open : {"/healthz", "/readyz", "/metrics"}) {
    auto r = HttpCall("GET", d.url() + open);
    EXPECT_EQ(200, r.status) << open;
    EXPECT_EQ(std::string::npos, r.body.find(dir.path())) << open << ": " << r.body;
  }
  EXPECT_EQ(201, d.Post("/jobs", "{\"argv\":[\"true\"]}").status);
  EXPECT_EQ(200, HttpCall("GET", d.url() + "/queue", "", {"Authorization: bearer  " + token}).status)
      << "the scheme is case-insensitive";
}

TEST(Auth, TheTokenIsCheckedBeforeAnyBodyIsReadOrContinueIsSent) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  int fd = test::ConnectTcp(d.address());
  ASSERT_GE(fd, 0);
  std::string head =
      "POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
      "Expect: 100-continue\r\nContent-Length: 1048575\r\n\r\n";
  ASSERT_EQ(static_cast<ssize_t>(head.size()), write(fd, head.data(), head.size()));
  std::string reply = test::ReadUntilClosed(fd);
  close(fd);
  EXPECT_EQ(0u, reply.find("HTTP/1.1 401 ")) << reply;
  EXPECT_EQ(std::string::npos, reply.find("100 Continue")) << reply;
  EXPECT_EQ(std::string::npos, reply.find("TIMEOUT")) << "the connection must close: " << reply;
}

// Today 400 unauthenticated clients holding a body one byte short of 1 MiB
// took the daemon from 9 MB to 564 MB.
TEST(Auth, UnauthenticatedBodiesCostTheDaemonNoMemory) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t before = RssKb(d.DaemonPid());
  ASSERT_GT(before, 0);
  std::string chunk(64 * 1024, 'x');
  std::vector<int> fds;
  for (int i = 0; i < 200; ++i) {
    int fd = test::ConnectTcp(d.address());
    ASSERT_GE(fd, 0);
    std::string head =
        "POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 1048575\r\n\r\n";
    ASSERT_EQ(static_cast<ssize_t>(head.size()), write(fd, head.data(), head.size()));
    // Push body bytes until the daemon stops taking them (or 1 MiB is sent).
    timeval tv{0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    size_t sent = 0;
    while (sent + chunk.size() < 1048575) {
      ssize_t n = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    fds.push_back(fd);
  }
  int64_t after = RssKb(d.DaemonPid());
  for (int fd : fds) close(fd);
  EXPECT_LT(after - before, 64 * 1024) << "RSS grew from " << before << " kB to " << after << " kB";
  EXPECT_EQ(200, d.Get("/healthz").status);
}

TEST(CrossSite, AForeignOriginIsRefusedAndTheServersOwnIsNot) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  auto headers = d.Auth();
  headers.push_back("Content-Type: application/json");
  auto foreign = headers;
  foreign.push_back("Origin: http://evil.example");
  auto r = HttpCall("POST", d.url() + "/jobs", "{\"argv\":[\"true\"]}", foreign);
  EXPECT_EQ(403, r.status) << r.body;
  EXPECT_EQ("cross_origin", r.Json()["error"]["code"]);
  auto null_origin = headers;
  null_origin.push_back("Origin: null");
  EXPECT_EQ(403, HttpCall("POST", d.url() + "/queue/pause", "", null_origin).status);
  auto own = headers;
  own.push_back("Origin: http://" + d.address());
  EXPECT_EQ(201, HttpCall("POST", d.url() + "/jobs", "{\"argv\":[\"true\"]}", own).status);
  EXPECT_FALSE(d.Get("/queue").Json().at("paused").get<bool>());
}

TEST(CrossSite, ARebindingHostIsRefusedUnlessAllowed) {
  TempDir dir;
  Daemon d(dir, "[server]\nallowed_hosts = [\"orchestrator.internal\"]\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string port = d.address().substr(d.address().rfind(':') + 1);
  auto with_host = [&](const std::string& host) {
    auto h = d.Auth();
    h.push_back("Host: " + host);
    return HttpCall("GET", d.url() + "/jobs", "", h);
  };
  auto rebound = with_host("attacker.example:" + port);
  EXPECT_EQ(421, rebound.status) << rebound.body;
  EXPECT_EQ("misdirected_request", rebound.Json()["error"]["code"]);
  EXPECT_EQ(200, with_host("localhost:" + port).status);
  EXPECT_EQ(200, with_host("127.0.0.1:" + port).status);
  EXPECT_EQ(200, with_host("[::1]:" + port).status);
  EXPECT_EQ(200, with_host("orchestrator.internal:" + port).status);
  EXPECT_EQ(200, HttpCall("GET", d.url() + "/healthz", "", {"Host: attacker.example"}).status)
      << "health checks stay open";
}

TEST(ListenConfig, ANonLoopbackListenerWithoutATokenIsAConfigError) {
  TempDir dir;
  Daemon d(dir, "[server]\nlisten = \"0.0.0.0:0\"\ntoken_file = \"\"\n");
  auto r = test::RunCommand({test::OrchestratorBinary(), "serve", "--config", d.config_path()});
  EXPECT_EQ(2, r.exit_code) << r.err;
  EXPECT_NE(std::string::npos, r.err.find("server.token_file")) << r.err;
  auto check =
      test::RunCommand({test::OrchestratorBinary(), "check-config", "--config", d.config_path()});
  EXPECT_EQ(2, check.exit_code) << check.err;
}

TEST(ListenConfig, AuthOffOnLoopbackIsAllowedWithAWarning) {
  TempDir dir;
  Daemon d(dir, "[server]\ntoken_file = \"\"\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  EXPECT_NE(std::string::npos, d.Log().find("authentication is off")) << d.Log();
  EXPECT_NE(0, access(dir.File("var/token").c_str(), F_OK));
  EXPECT_EQ(200, HttpCall("GET", d.url() + "/queue").status);
  // Cross-site protection does not depend on the token.
  EXPECT_EQ(415, HttpCall("POST", d.url() + "/jobs", "{\"argv\":[\"true\"]}",
                          {"Content-Type: text/plain"})
                     .status);
}

TEST(UnixSocket, ItsPermissionsAreItsAuthenticationAndMutationsLogThePeer) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the socket to another group";
  TempDir dir;
  group* gr = getgrnam("nogroup");
  if (gr == nullptr) GTEST_SKIP() << "no group nogroup";
  std::string sock = dir.File("api.sock");
  Daemon d(dir, "[server]\nunix_socket = \"" + sock + "\"\nunix_socket_group = \"nogroup\"\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  struct stat st {};
  ASSERT_EQ(0, stat(sock.c_str(), &st));
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(0660u, st.st_mode & 07777);
  EXPECT_EQ(gr->gr_gid, st.st_gid);
  auto r = test::RunCommand({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                             "--unix-socket", sock, "-X", "POST", "-H",
                             "Content-Type: application/json", "-d", "{\"argv\":[\"true\"]}",
                             "http://localhost/jobs"});
  EXPECT_EQ("201", r.out) << "no token over the socket: " << r.err;
  EXPECT_TRUE(WaitFor([&] {
    return d.Log().find("request over the unix socket") != std::string::npos &&
           d.Log().find("peer_uid=" + std::to_string(geteuid())) != std::string::npos;
  })) << d.Log();
}

// Local users may fill the TCP listener with idle connections; the socket's
// users (the group that may use the API) must still get in.
TEST(UnixSocket, HasItsOwnConnectionBudget) {
  TempDir dir;
  std::string sock = dir.File("api.sock");
  Daemon d(dir, "[server]\nunix_socket = \"" + sock + "\"\nmax_connections = 2\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  std::vector<int> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(test::ConnectTcp(d.address()));
  EXPECT_EQ(503, HttpCall("GET", d.url() + "/healthz").status) << "TCP is full";
  auto r = test::RunCommand({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                             "--unix-socket", sock, "http://localhost/queue"});
  EXPECT_EQ("200", r.out) << r.err;
  for (int fd : idle) close(fd);
}

TEST(UnixSocket, AnUnknownGroupIsAStartError) {
  TempDir dir;
  Daemon d(dir, "[server]\nunix_socket = \"" + dir.File("api.sock") +
                    "\"\nunix_socket_group = \"no-such-group-here\"\n");
  auto r = test::RunCommand({test::OrchestratorBinary(), "serve", "--config", d.config_path()});
  EXPECT_EQ(2, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("server.unix_socket_group")) << r.err;
}

// A page of jobs is capped in bytes too: 100 jobs of 1 MB argv made a 100 MB
// response and froze the loop.
TEST(Responses, APageOfHugeJobsIsCappedInBytesAndPagesOn) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 1\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  ASSERT_EQ(200, d.Post("/queue/pause").status);
  std::string big(900 * 1000, 'a');
  for (int i = 0; i < 12; ++i) {
    ASSERT_GT(d.Submit({{"argv", {"echo", big}}}), 0);
  }
  int64_t after = 0;
  size_t seen = 0, pages = 0;
  for (;;) {
    auto page = d.Get("/jobs?limit=100&after_id=" + std::to_string(after));
    ASSERT_EQ(200, page.status);
    EXPECT_LT(page.body.size(), size_t{5} << 20) << "page " << pages;
    json j = page.Json();
    seen += j.at("jobs").size();
    ++pages;
    if (j.at("next_after_id").is_null()) break;
    after = j.at("next_after_id").get<int64_t>();
  }
  EXPECT_EQ(12u, seen);
  EXPECT_GE(pages, 3u);
}

// Connections get what running jobs (4 descriptors each) leave of
// RLIMIT_NOFILE: more is lowered with a warning, too little is an error.
TEST(Limits, ConnectionsAreCheckedAgainstTheFileDescriptorLimit) {
  TempDir dir;
  Daemon d(dir, "[server]\nmax_connections = 1000000\n");
  ASSERT_TRUE(d.Start({"prlimit", "--nofile=4096:4096"})) << d.Log();
  EXPECT_NE(std::string::npos, d.Log().find("accepting fewer connections")) << d.Log();
  EXPECT_NE(std::string::npos, d.Log().find("max_connections=4028")) << d.Log();
  EXPECT_EQ(0, d.Stop());

  TempDir small;
  Daemon tiny(small, "[supervisor]\nmax_concurrency = 100\n");
  auto r = test::RunCommand({"prlimit", "--nofile=400:400", test::OrchestratorBinary(), "serve",
                             "--config", tiny.config_path()});
  EXPECT_EQ(2, r.exit_code) << r.err;
  EXPECT_NE(std::string::npos, r.err.find("supervisor.max_concurrency")) << r.err;
  EXPECT_NE(std::string::npos, r.err.find("RLIMIT_NOFILE")) << r.err;
}

}  // namespace
}  // namespace orch
