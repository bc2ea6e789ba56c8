// Regression for the security issue "the CLI hands its token to strangers":
// `orchestrator status` run as root in a directory where someone else
// planted ./orchestrator.toml used to dial the planted `listen` address with
// the admin token named by the planted `token_file`. The client now reads the
// implicit ./orchestrator.toml only when it is a regular file (not a symlink)
// owned by the invoking user or root and writable by nobody else; otherwise
// it says why on stderr and carries on as if there were none. Real binary,
// real files, a real loopback listener that records what reaches it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace orch::test {
namespace {

constexpr char kToken[] = "s3cret-admin-token";
constexpr uid_t kNobody = 65534;

// A loopback HTTP "server" that answers every request with `{}` and keeps
// what it was sent, so a test can say whether the client came and what it
// carried.
class RecordingServer {
 public:
  RecordingServer() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(0, bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a));
    socklen_t len = sizeof a;
    EXPECT_EQ(0, getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len));
    EXPECT_EQ(0, listen(fd_, 16));
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~RecordingServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string HostPort() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string Url() const { return "http://" + HostPort(); }
  int connections() const {
    std::lock_guard<std::mutex> lock(mu_);
    return connections_;
  }
  std::string received() const {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        pollfd q{c, POLLIN, 0};
        if (poll(&q, 1, 5000) <= 0) break;
        ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      {
        // Counted before the answer: the client may exit, and the test
        // look, as soon as it has read it.
        std::lock_guard<std::mutex> lock(mu_);
        ++connections_;
        received_ += request;
      }
      static const std::string kAnswer =
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
          "Connection: close\r\n\r\n{}";
      EXPECT_EQ(static_cast<ssize_t>(kAnswer.size()), write(c, kAnswer.data(), kAnswer.size()));
      close(c);
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  int connections_ = 0;
  std::string received_;
  std::thread thread_;
};

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs the binary in `cwd` with none of the caller's ORCH_* variables that
// could name a server or a token, plus the test's own `env` entries.
CommandResult RunOrchIn(const std::string& cwd, const std::vector<std::string>& args,
                        const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv = {"env",
                                   "-C",
                                   cwd,
                                   "-u",
                                   "ORCH_URL",
                                   "-u",
                                   "ORCH_TOKEN_FILE",
                                   "-u",
                                   "ORCH_LISTEN",
                                   "-u",
                                   "ORCH_SERVER_UNIX_SOCKET",
                                   "-u",
                                   "ORCH_SERVER_TOKEN_FILE"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back(OrchestratorBinary());
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

class ConfigTrust : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to give files to another owner";
    token_path_ = secrets_.File("token");
    WriteFile(token_path_, std::string(kToken) + "\n");
    ASSERT_EQ(0, chmod(token_path_.c_str(), 0600));
  }

  // Writes a config in `path` that names `server`'s address and the admin token.
  void WriteConfig(const std::string& path, const RecordingServer& server) {
    WriteFile(path, "[server]\nlisten = \"" + server.HostPort() + "\"\ntoken_file = \"" +
                        token_path_ + "\"\n");
  }
  std::string Planted() const { return work_.File("orchestrator.toml"); }

  TempDir secrets_;  // where the admin's token lives
  TempDir work_;     // the directory the admin runs the client in
  std::string token_path_;
};

TEST_F(ConfigTrust, ConfigOwnedByAnotherUserNamesNoServerAndSendsNoToken) {
  RecordingServer planted, chosen;
  WriteConfig(Planted(), planted);
  ASSERT_EQ(0, chmod(Planted().c_str(), 0644));
  ASSERT_EQ(0, chown(Planted().c_str(), kNobody, kNobody));

  // Without a server of its own choosing the client falls back to the
  // built-in default address, never to the planted one.
  CommandResult r = RunOrchIn(work_.path(), {"status"});
  EXPECT_EQ(0, planted.connections()) << planted.received();
  EXPECT_TRUE(Contains(r.err, "ignoring ./orchestrator.toml: owned by uid 65534")) << r.err;

  // With the server chosen by the user (ORCH_URL), the planted token_file
  // still must not be read and sent along.
  r = RunOrchIn(work_.path(), {"status"}, {"ORCH_URL=" + chosen.Url()});
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ(1, chosen.connections());
  EXPECT_FALSE(Contains(chosen.received(), kToken)) << chosen.received();
  EXPECT_FALSE(Contains(chosen.received(), "Authorization")) << chosen.received();
  EXPECT_EQ(0, planted.connections()) << planted.received();
  EXPECT_TRUE(Contains(r.err, "ignoring ./orchestrator.toml")) << r.err;
}

TEST_F(ConfigTrust, ConfigWritableByGroupOrOthersIsIgnored) {
  for (mode_t mode : {0666, 0646, 0664, 0620}) {
    SCOPED_TRACE(mode);
    RecordingServer planted, chosen;
    WriteConfig(Planted(), planted);
    ASSERT_EQ(0, chmod(Planted().c_str(), mode));  // owned by root, the user running the test
    CommandResult r = RunOrchIn(work_.path(), {"status"}, {"ORCH_URL=" + chosen.Url()});
    EXPECT_EQ(0, r.exit_code) << r.err;
    EXPECT_EQ(0, planted.connections());
    EXPECT_FALSE(Contains(chosen.received(), kToken)) << chosen.received();
    EXPECT_TRUE(Contains(r.err, "ignoring ./orchestrator.toml: writable by")) << r.err;
  }
}

TEST_F(ConfigTrust, SymlinkedConfigIsIgnoredEvenWhenItsTargetIsTrusted) {
  RecordingServer planted, chosen;
  WriteConfig(secrets_.File("real.toml"), planted);
  ASSERT_EQ(0, chmod(secrets_.File("real.toml").c_str(), 0644));
  ASSERT_EQ(0, symlink(secrets_.File("real.toml").c_str(), Planted().c_str()));
  CommandResult r = RunOrchIn(work_.path(), {"status"}, {"ORCH_URL=" + chosen.Url()});
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ(0, planted.connections());
  EXPECT_FALSE(Contains(chosen.received(), kToken)) << chosen.received();
  EXPECT_TRUE(Contains(r.err, "ignoring ./orchestrator.toml: a symbolic link")) << r.err;
}

TEST_F(ConfigTrust, ConfigOwnedByRootAndWritableOnlyByItIsUsed) {
  RecordingServer server;
  WriteConfig(Planted(), server);
  ASSERT_EQ(0, chmod(Planted().c_str(), 0644));
  CommandResult r = RunOrchIn(work_.path(), {"status", "--verbose"});
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ(1, server.connections());
  EXPECT_TRUE(Contains(server.received(), std::string("Authorization: Bearer ") + kToken))
      << server.received();
  // --verbose says where everything came from, but never what the token is.
  EXPECT_TRUE(Contains(r.err, "config: ./orchestrator.toml")) << r.err;
  EXPECT_TRUE(Contains(r.err, "server: " + server.Url() + " from server.listen in ")) << r.err;
  EXPECT_TRUE(Contains(r.err, "token: from server.token_file in ")) << r.err;
  EXPECT_TRUE(Contains(r.err, token_path_)) << r.err;
  EXPECT_FALSE(Contains(r.err, kToken)) << r.err;
  EXPECT_FALSE(Contains(r.err, "ignoring")) << r.err;
}

TEST_F(ConfigTrust, ExplicitConfigIsTheUsersChoiceButOthersWritingItIsWarnedAbout) {
  RecordingServer server;
  std::string path = secrets_.File("o.toml");
  WriteConfig(path, server);
  ASSERT_EQ(0, chmod(path.c_str(), 0666));
  CommandResult r = RunOrchIn(work_.path(), {"status", "--config", path});
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ(1, server.connections());
  EXPECT_TRUE(Contains(server.received(), kToken)) << server.received();
  EXPECT_TRUE(Contains(r.err, "warning: " + path + " is writable by")) << r.err;
}

TEST_F(ConfigTrust, VerboseSaysWhenNoConfigWasUsedAndWhereTheServerCameFrom) {
  RecordingServer server;
  CommandResult r = RunOrchIn(work_.path(), {"status", "--verbose", "--server", server.Url()});
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_TRUE(Contains(r.err, "config: none (no ./orchestrator.toml here)")) << r.err;
  EXPECT_TRUE(Contains(r.err, "server: " + server.Url() + " from --server")) << r.err;
  EXPECT_TRUE(Contains(r.err, "token: none")) << r.err;

  r = RunOrchIn(work_.path(), {"jobs", "--verbose"},
                {"ORCH_URL=" + server.Url(), "ORCH_TOKEN_FILE=" + token_path_});
  EXPECT_TRUE(Contains(r.err, "server: " + server.Url() + " from $ORCH_URL")) << r.err;
  EXPECT_TRUE(Contains(r.err, "token: from $ORCH_TOKEN_FILE (" + token_path_ + ")")) << r.err;
  EXPECT_FALSE(Contains(r.err, kToken)) << r.err;
}

}  // namespace
}  // namespace orch::test
