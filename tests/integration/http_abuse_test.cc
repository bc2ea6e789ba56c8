// Malformed and hostile clients against the real daemon over loopback: the
// daemon answers what it can, cuts what it must, and /healthz stays fast.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <gtest/gtest.h>
#include <thread>

#include "integration/daemon_harness.h"

namespace orch {
namespace {

using test::Daemon;
using test::TempDir;

double HealthzMs(const Daemon& d) {
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(200, d.Get("/healthz").status);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

TEST(HttpAbuse, GarbageGets400AndTheConnectionIsClosed) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  int fd = test::ConnectTcp(d.address());
  ASSERT_GE(fd, 0);
  std::string garbage = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n";
  ASSERT_EQ(static_cast<ssize_t>(garbage.size()), write(fd, garbage.data(), garbage.size()));
  std::string reply = test::ReadUntilClosed(fd);
  close(fd);
  EXPECT_EQ(0u, reply.find("HTTP/1.1 400 ")) << reply;
  EXPECT_NE(std::string::npos, reply.find("\"error\""));
  EXPECT_EQ(200, d.Get("/healthz").status);
}

TEST(HttpAbuse, ARequestSentOneByteAtATimeIsAnswered) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  int fd = test::ConnectTcp(d.address());
  ASSERT_GE(fd, 0);
  std::string body = "{\"argv\":[\"true\"]}";
  std::string req = "POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    "Authorization: Bearer " + d.Token() + "\r\n"
                    "Connection: close\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\n\r\n" + body;
  for (char c : req) ASSERT_EQ(1, write(fd, &c, 1));
  std::string reply = test::ReadUntilClosed(fd);
  close(fd);
  EXPECT_EQ(0u, reply.find("HTTP/1.1 201 ")) << reply;
}

TEST(HttpAbuse, FiveHundredIdleConnectionsDoNotSlowHealthz) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  std::vector<int> idle;
  for (int i = 0; i < 500; ++i) {
    int fd = test::ConnectTcp(d.address());
    ASSERT_GE(fd, 0) << i;
    idle.push_back(fd);
  }
  // A few half-sent requests among them (slowloris).
  for (int i = 0; i < 50; ++i) ASSERT_GT(write(idle[i], "GET /queue HTTP/1.1\r\nX-A: ", 26), 0);
  double worst = 0;
  for (int i = 0; i < 20; ++i) worst = std::max(worst, HealthzMs(d));
  EXPECT_LT(worst, 1000.0) << "generous bound: the loop is not blocked by idle clients";
  for (int fd : idle) close(fd);
  EXPECT_EQ(200, d.Get("/healthz").status);
  EXPECT_EQ(0, d.Stop());
}

TEST(HttpAbuse, IdleAndSlowClientsAreCutAfterTheIdleTimeout) {
  TempDir dir;
  Daemon d(dir, "[server]\nidle_timeout_ms = 300\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  int idle = test::ConnectTcp(d.address());
  int slow = test::ConnectTcp(d.address());
  ASSERT_GE(idle, 0);
  ASSERT_GE(slow, 0);
  ASSERT_GT(write(slow, "GET /healthz HTTP/1.1\r\n", 23), 0);
  auto start = std::chrono::steady_clock::now();
  test::ReadUntilClosed(idle);  // returns when the daemon closes it
  std::string slow_reply = test::ReadUntilClosed(slow);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
  // The slow client had begun a request: it is told why before the close.
  EXPECT_EQ(0u, slow_reply.find("HTTP/1.1 408 ")) << slow_reply;
  size_t body_at = slow_reply.find("\r\n\r\n");
  ASSERT_NE(std::string::npos, body_at) << slow_reply;
  nlohmann::json body = nlohmann::json::parse(slow_reply.substr(body_at + 4), nullptr, false);
  ASSERT_TRUE(body.is_object()) << slow_reply;
  EXPECT_EQ("timeout", body.at("error").at("code")) << slow_reply;
  EXPECT_TRUE(body.at("error").at("message").is_string()) << slow_reply;
  close(idle);
  close(slow);
}

}  // namespace
}  // namespace orch
