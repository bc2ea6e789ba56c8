#include "cli/api_client.h"

#include <gtest/gtest.h>

#include "cli/client_commands.h"
#include "support/test_util.h"

namespace orch::cli {
namespace {

TEST(IsLocalServer, OnlyLoopbackAndUnixSocketsGetAConfigsToken) {
  auto local = [](const std::string& url) { return IsLocalServer(*ParseServerUrl(url)); };
  EXPECT_TRUE(local("http://127.0.0.1:8080"));
  EXPECT_TRUE(local("http://127.9.9.9:1"));
  EXPECT_TRUE(local("http://localhost:8080"));
  EXPECT_TRUE(local("http://[::1]:8080"));
  EXPECT_TRUE(local("unix:/run/orchestrator/api.sock"));
  EXPECT_FALSE(local("http://10.0.0.5:8080"));
  EXPECT_FALSE(local("http://orchestrator.example:8080"));
  EXPECT_FALSE(local("http://localhost.evil.example:8080"));
  EXPECT_FALSE(local("http://[2001:db8::1]:8080"));
}

TEST(ParseServerUrl, HttpUrlKeepsHostAndPort) {
  auto a = ParseServerUrl("http://127.0.0.1:8080");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(ServerAddress::Kind::kTcp, a->kind);
  EXPECT_EQ("http://127.0.0.1:8080", a->base_url);
  EXPECT_EQ("http://127.0.0.1:8080", a->display);
  EXPECT_EQ("", a->socket_path);
}

TEST(ParseServerUrl, TrailingSlashIsDropped) {
  auto a = ParseServerUrl("http://localhost:9000/");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ("http://localhost:9000", a->base_url);
}

TEST(ParseServerUrl, BareHostPortMeansHttp) {
  auto a = ParseServerUrl("127.0.0.1:8080");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ("http://127.0.0.1:8080", a->base_url);
  auto v6 = ParseServerUrl("[::1]:8080");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ("http://[::1]:8080", v6->base_url);
}

TEST(ParseServerUrl, UnixSocketPath) {
  auto a = ParseServerUrl("unix:/run/orchestrator/api.sock");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(ServerAddress::Kind::kUnix, a->kind);
  EXPECT_EQ("/run/orchestrator/api.sock", a->socket_path);
  EXPECT_EQ("unix:/run/orchestrator/api.sock", a->display);
  EXPECT_EQ("http://localhost", a->base_url);
}

TEST(ParseServerUrl, UnixSocketWithSlashes) {
  auto a = ParseServerUrl("unix:///tmp/o.sock");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ("/tmp/o.sock", a->socket_path);
}

TEST(ParseServerUrl, RejectsWhatIsNotAnAddress) {
  for (const char* bad :
       {"", "unix:", "ftp://host:21", "http://host", "http://host:0", "http://host:70000",
        "http://host:80x", "localhost", "::1:8080", "http://host:80/path?x"}) {
    auto a = ParseServerUrl(bad);
    EXPECT_FALSE(a.ok()) << bad;
    if (!a.ok()) {
      EXPECT_EQ(Code::kInvalidArgument, a.status().code());
    }
  }
}

TEST(ServerUrlFromConfig, ListenWinsAndWildcardsBecomeLoopback) {
  Config::Server s;
  s.listen = "127.0.0.1:8080";
  s.unix_socket = "/run/o.sock";
  EXPECT_EQ("http://127.0.0.1:8080", ServerUrlFromConfig(s));
  s.listen = "0.0.0.0:9000";
  EXPECT_EQ("http://127.0.0.1:9000", ServerUrlFromConfig(s));
  s.listen = "[::]:9000";
  EXPECT_EQ("http://[::1]:9000", ServerUrlFromConfig(s));
}

TEST(ServerUrlFromConfig, UnixSocketWhenListenIsEmpty) {
  Config::Server s;
  s.listen = "";
  s.unix_socket = "/run/o.sock";
  EXPECT_EQ("unix:/run/o.sock", ServerUrlFromConfig(s));
  s.unix_socket = "";
  EXPECT_EQ("", ServerUrlFromConfig(s));
}

TEST(UrlEncode, EscapesReservedCharacters) {
  EXPECT_EQ("abc-_.~09", UrlEncode("abc-_.~09"));
  EXPECT_EQ("a%20b%26c%3D%2F", UrlEncode("a b&c=/"));
}

TEST(ResolveEndpoint, ServerFlagBeatsEnvironment) {
  ClientOptions o;
  o.server = "http://127.0.0.1:1111";
  auto ep = ResolveEndpoint(o, {{"ORCH_URL", "http://127.0.0.1:2222"}});
  ASSERT_TRUE(ep.ok()) << ep.status().message();
  EXPECT_EQ("http://127.0.0.1:1111", ep->address.display);
}

TEST(ResolveEndpoint, EnvironmentBeatsConfig) {
  test::TempDir dir;
  test::WriteFile(dir.File("o.toml"), "[server]\nlisten = \"127.0.0.1:3333\"\n");
  ClientOptions o;
  o.config_file = dir.File("o.toml");
  auto ep = ResolveEndpoint(o, {{"ORCH_URL", "unix:/tmp/x.sock"}});
  ASSERT_TRUE(ep.ok()) << ep.status().message();
  EXPECT_EQ("unix:/tmp/x.sock", ep->address.display);
}

TEST(ResolveEndpoint, ConfigListenIsTheFallback) {
  test::TempDir dir;
  test::WriteFile(dir.File("o.toml"), "[server]\nlisten = \"127.0.0.1:3333\"\n");
  ClientOptions o;
  o.config_file = dir.File("o.toml");
  auto ep = ResolveEndpoint(o, {});
  ASSERT_TRUE(ep.ok()) << ep.status().message();
  EXPECT_EQ("http://127.0.0.1:3333", ep->address.display);
  EXPECT_EQ("", ep->token);
}

TEST(ResolveEndpoint, ConfigUnixSocketResolvesAgainstTheConfigDirectory) {
  test::TempDir dir;
  test::WriteFile(dir.File("o.toml"), "[server]\nlisten = \"\"\nunix_socket = \"api.sock\"\n");
  ClientOptions o;
  o.config_file = dir.File("o.toml");
  auto ep = ResolveEndpoint(o, {});
  ASSERT_TRUE(ep.ok()) << ep.status().message();
  EXPECT_EQ(ServerAddress::Kind::kUnix, ep->address.kind);
  EXPECT_EQ(dir.File("api.sock"), ep->address.socket_path);
}

TEST(ResolveEndpoint, TokenComesFromTheConfigsTokenFileTrimmed) {
  test::TempDir dir;
  test::WriteFile(dir.File("token"), "s3cret\n");
  test::WriteFile(dir.File("o.toml"), "[server]\ntoken_file = \"token\"\n");
  ClientOptions o;
  o.config_file = dir.File("o.toml");
  auto ep = ResolveEndpoint(o, {});
  ASSERT_TRUE(ep.ok()) << ep.status().message();
  EXPECT_EQ("s3cret", ep->token);
}

TEST(ResolveEndpoint, TokenFileFlagBeatsEnvironment) {
  test::TempDir dir;
  test::WriteFile(dir.File("a"), "aaa");
  test::WriteFile(dir.File("b"), "bbb");
  ClientOptions o;
  o.server = "http://127.0.0.1:1";
  o.token_file = dir.File("a");
  auto ep = ResolveEndpoint(o, {{"ORCH_TOKEN_FILE", dir.File("b")}});
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ("aaa", ep->token);
  o.token_file = "";
  ep = ResolveEndpoint(o, {{"ORCH_TOKEN_FILE", dir.File("b")}});
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ("bbb", ep->token);
}

TEST(ResolveEndpoint, MissingExplicitTokenFileIsAnError) {
  ClientOptions o;
  o.server = "http://127.0.0.1:1";
  o.token_file = "/nonexistent/token";
  auto ep = ResolveEndpoint(o, {});
  ASSERT_FALSE(ep.ok());
  EXPECT_NE(std::string::npos, ep.status().message().find("/nonexistent/token"));
}

TEST(ResolveEndpoint, BrokenExplicitConfigIsAnErrorNamingTheKey) {
  test::TempDir dir;
  test::WriteFile(dir.File("o.toml"), "[server]\nlisten = 5\n");
  ClientOptions o;
  o.config_file = dir.File("o.toml");
  auto ep = ResolveEndpoint(o, {});
  ASSERT_FALSE(ep.ok());
  EXPECT_NE(std::string::npos, ep.status().message().find("server.listen"))
      << ep.status().message();
}

TEST(ResolveEndpoint, TrailNamesWhereEachPartCameFromButNeverTheToken) {
  test::TempDir dir;
  test::WriteFile(dir.File("token"), "s3cret\n");
  test::WriteFile(dir.File("o.toml"),
                  "[server]\nlisten = \"127.0.0.1:3333\"\ntoken_file = \"token\"\n");
  ClientOptions o;
  o.config_file = dir.File("o.toml");
  EndpointTrail trail;
  auto ep = ResolveEndpoint(o, {{"ORCH_LISTEN", "127.0.0.1:4444"}}, &trail);
  ASSERT_TRUE(ep.ok()) << ep.status().message();
  EXPECT_EQ("s3cret", ep->token);
  EXPECT_EQ(dir.File("o.toml") + " (--config)", trail.config);
  EXPECT_EQ("http://127.0.0.1:4444 from $ORCH_LISTEN", trail.server);
  EXPECT_EQ("from server.token_file in " + dir.File("o.toml") + " (" + dir.File("token") + ")",
            trail.token);
  EXPECT_TRUE(trail.warnings.empty());

  o.server = "http://127.0.0.1:5555";
  o.token_file = dir.File("token");
  o.config_file = "";
  ep = ResolveEndpoint(o, {}, &trail);
  ASSERT_TRUE(ep.ok()) << ep.status().message();
  EXPECT_EQ("http://127.0.0.1:5555 from --server", trail.server);
  EXPECT_EQ("from --token-file " + dir.File("token"), trail.token);
  EXPECT_EQ(std::string::npos, trail.config.find("orchestrator.toml")) << trail.config;
}

TEST(ResolveEndpoint, BadServerUrlIsAnError) {
  ClientOptions o;
  o.server = "ftp://x:1";
  EXPECT_FALSE(ResolveEndpoint(o, {}).ok());
}

}  // namespace
}  // namespace orch::cli
