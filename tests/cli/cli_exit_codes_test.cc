// Runs the built binary: usage errors exit 2, an unreachable server exits 3
// and names the address that was tried.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace orch::test {
namespace {

// A loopback port that is bound but not listening, so a connect is refused
// for as long as this object lives (no other process can take the port).
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(0, bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a));
    socklen_t len = sizeof a;
    EXPECT_EQ(0, getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len));
    port_ = ntohs(a.sin_port);
  }
  ~RefusingPort() { close(fd_); }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs the binary with a clean ORCH_URL / ORCH_TOKEN_FILE (the caller's
// must not leak in) plus the test's own `env` entries.
CommandResult RunOrch(const std::vector<std::string>& args,
                      const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv = {"env", "-u", "ORCH_URL", "-u", "ORCH_TOKEN_FILE"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back(OrchestratorBinary());
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

TEST(CliUnreachable, ServerFlagExits3AndNamesTheAddress) {
  RefusingPort port;
  for (const char* cmd : {"status", "jobs", "pause", "resume"}) {
    auto r = RunOrch({cmd, "--server", port.Url()});
    EXPECT_EQ(3, r.exit_code) << cmd << ": " << r.err;
    EXPECT_TRUE(Contains(r.err, "cannot reach the server at " + port.Url())) << r.err;
  }
  for (const char* cmd : {"show", "cancel", "retry", "logs"}) {
    auto r = RunOrch({cmd, "7", "--server", port.Url()});
    EXPECT_EQ(3, r.exit_code) << cmd << ": " << r.err;
    EXPECT_TRUE(Contains(r.err, port.Url())) << r.err;
  }
  auto r = RunOrch({"submit", "--server", port.Url(), "--", "echo", "hi"});
  EXPECT_EQ(3, r.exit_code) << r.err;
  EXPECT_TRUE(Contains(r.err, port.Url())) << r.err;
}

TEST(CliUnreachable, UnixSocketThatDoesNotExistExits3) {
  TempDir dir;
  std::string url = "unix:" + dir.File("none.sock");
  auto r = RunOrch({"status", "--server", url});
  EXPECT_EQ(3, r.exit_code) << r.err;
  EXPECT_TRUE(Contains(r.err, url)) << r.err;
}

TEST(CliUnreachable, OrchUrlFromTheEnvironmentIsUsed) {
  RefusingPort port;
  auto r = RunOrch({"status"}, {"ORCH_URL=" + port.Url()});
  EXPECT_EQ(3, r.exit_code) << r.err;
  EXPECT_TRUE(Contains(r.err, port.Url())) << r.err;
}

TEST(CliUnreachable, ConfigListenIsUsedWithoutServerOrEnv) {
  RefusingPort port;
  TempDir dir;
  WriteFile(dir.File("o.toml"),
            "[server]\nlisten = \"127.0.0.1:" + std::to_string(port.port()) + "\"\n");
  auto r = RunOrch({"jobs", "--config", dir.File("o.toml")});
  EXPECT_EQ(3, r.exit_code) << r.err;
  EXPECT_TRUE(Contains(r.err, port.Url())) << r.err;
}

TEST(CliUsage, BadArgumentsExit2) {
  const std::vector<std::vector<std::string>> cases = {
      {"submit", "--server", "http://127.0.0.1:1"},   // no command
      {"submit", "--env", "NOEQUALS", "--", "true"},  // bad env entry
      {"submit", "--timeout", "soon", "--", "true"},  // not a number
      {"show"},                                       // no id
      {"show", "abc"},                                // id not a number
      {"cancel", "0"},                                // id not positive
      {"jobs", "--status", "sleeping"},               // unknown status
      {"jobs", "--limit", "-1"},
      {"logs", "1", "--stream", "stdin"},
      {"status", "--server", "ftp://127.0.0.1:21"},  // unusable URL
      {"status", "--server", "http://127.0.0.1:1", "--token-file", "/nonexistent/token"},
      {"status", "--config", "/nonexistent/orchestrator.toml"},
      {"frobnicate"},
      {},
  };
  for (const auto& args : cases) {
    auto r = RunOrch(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(2, r.exit_code) << joined << "\nstdout: " << r.out << "\nstderr: " << r.err;
  }
}

TEST(CliUsage, HelpExits0AndListsTheClientCommands) {
  auto r = RunOrch({"--help"});
  EXPECT_EQ(0, r.exit_code);
  for (const char* cmd :
       {"submit", "status", "jobs", "show", "cancel", "retry", "logs", "pause", "resume", "db"}) {
    EXPECT_TRUE(Contains(r.out, cmd)) << cmd << "\n" << r.out;
  }
}

TEST(CliDb, CheckAndSanitizeOfAMissingDatabaseExit2AndCreateNothing) {
  TempDir dir;
  WriteFile(dir.File("o.toml"), "[store]\npath = \"state/none.db\"\n");
  for (const char* tool : {"check", "sanitize"}) {
    auto r = RunOrch({"db", tool, "--config", dir.File("o.toml")});
    EXPECT_EQ(2, r.exit_code) << tool << ": " << r.out << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.File("state/none.db"))) << tool;
  }
}

TEST(CliDb, BrokenConfigExits2) {
  TempDir dir;
  WriteFile(dir.File("o.toml"), "[store]\npath = 5\n");
  auto r = RunOrch({"db", "check", "--config", dir.File("o.toml")});
  EXPECT_EQ(2, r.exit_code) << r.err;
  EXPECT_NE(std::string::npos, r.err.find("store.path")) << r.err;
}

}  // namespace
}  // namespace orch::test
