#include "config/config.h"

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace orch {
namespace {

using test::TempDir;
using test::WriteFile;

LoadedConfig LoadFile(const TempDir& dir, const std::string& toml,
                      std::map<std::string, std::string> env = {},
                      std::vector<std::pair<std::string, std::string>> flags = {}) {
  WriteFile(dir.File("orchestrator.toml"), toml);
  ConfigInputs in;
  in.file = dir.File("orchestrator.toml");
  in.file_required = true;
  in.env = std::move(env);
  in.flags = std::move(flags);
  return LoadConfig(in);
}

std::string AllErrors(const LoadedConfig& c) {
  std::string s;
  for (const auto& e : c.errors) s += e + "\n";
  return s;
}

TEST(Config, DefaultsMatchTheSpec) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "");
  ASSERT_TRUE(c.ok()) << AllErrors(c);
  EXPECT_EQ("127.0.0.1:8080", c.config.server.listen);
  EXPECT_EQ(1048576, c.config.server.max_body_bytes);
  EXPECT_EQ(1024, c.config.server.max_connections);
  EXPECT_EQ(30000, c.config.server.idle_timeout_ms);
  EXPECT_EQ("normal", c.config.store.synchronous);
  EXPECT_EQ(5000, c.config.store.busy_timeout_ms);
  EXPECT_EQ(1, c.config.supervisor.max_concurrency);
  EXPECT_TRUE(c.config.supervisor.serial_gate_enabled);
  EXPECT_EQ(10, c.config.supervisor.kill_grace_s);
  EXPECT_EQ(20, c.config.supervisor.shutdown_grace_s);
  EXPECT_EQ(std::vector<int64_t>{75}, c.config.supervisor.transient_exit_codes);
  EXPECT_EQ(3, c.config.supervisor.default_max_attempts);
  EXPECT_DOUBLE_EQ(1.0, c.config.supervisor.backoff_base_s);
  EXPECT_DOUBLE_EQ(300.0, c.config.supervisor.backoff_max_s);
  EXPECT_EQ("requeue", c.config.supervisor.orphan_policy);
  EXPECT_EQ(10485760, c.config.supervisor.max_log_bytes);
  EXPECT_EQ(1000, c.config.reaper.interval_ms);
  EXPECT_TRUE(c.config.reaper.sanitize_impossible_queued);
  EXPECT_EQ(30, c.config.reaper.spawn_grace_s);
  EXPECT_EQ("info", c.config.log.level);
  EXPECT_EQ("text", c.config.log.format);
  for (const auto& [key, src] : c.sources) EXPECT_EQ(ConfigSource::kDefault, src) << key;
}

TEST(Config, RelativePathsResolveAgainstTheConfigFileDirectory) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "[store]\npath = \"state/q.db\"\n");
  ASSERT_TRUE(c.ok()) << AllErrors(c);
  EXPECT_EQ(dir.path() + "/state/q.db", c.config.store.path);
  EXPECT_EQ(dir.path() + "/var/logs", c.config.supervisor.log_dir);  // default, same rule
}

TEST(Config, FileValuesAreReadWithTheirSource) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir,
                            "[supervisor]\nmax_concurrency = 4\ntransient_exit_codes = [75, 99]\n"
                            "backoff_base_s = 2\n[log]\nformat = \"json\"\n");
  ASSERT_TRUE(c.ok()) << AllErrors(c);
  EXPECT_EQ(4, c.config.supervisor.max_concurrency);
  EXPECT_EQ((std::vector<int64_t>{75, 99}), c.config.supervisor.transient_exit_codes);
  EXPECT_DOUBLE_EQ(2.0, c.config.supervisor.backoff_base_s);
  EXPECT_EQ("json", c.config.log.format);
  EXPECT_EQ(ConfigSource::kFile, c.sources["supervisor.max_concurrency"]);
  EXPECT_EQ(ConfigSource::kDefault, c.sources["supervisor.kill_grace_s"]);
}

TEST(Config, PrecedenceIsDefaultThenFileThenEnvThenFlag) {
  TempDir dir;
  std::string toml = "[supervisor]\nmax_concurrency = 4\n";
  LoadedConfig file_only = LoadFile(dir, toml);
  EXPECT_EQ(4, file_only.config.supervisor.max_concurrency);

  LoadedConfig env = LoadFile(dir, toml, {{"ORCH_MAX_CONCURRENCY", "6"}});
  ASSERT_TRUE(env.ok()) << AllErrors(env);
  EXPECT_EQ(6, env.config.supervisor.max_concurrency);
  EXPECT_EQ(ConfigSource::kEnv, env.sources["supervisor.max_concurrency"]);

  LoadedConfig flag = LoadFile(dir, toml, {{"ORCH_MAX_CONCURRENCY", "6"}},
                               {{"supervisor.max_concurrency", "8"}});
  ASSERT_TRUE(flag.ok()) << AllErrors(flag);
  EXPECT_EQ(8, flag.config.supervisor.max_concurrency);
  EXPECT_EQ(ConfigSource::kFlag, flag.sources["supervisor.max_concurrency"]);
}

TEST(Config, NamedEnvironmentVariablesOverrideTheirKeys) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "",
                            {{"ORCH_SERIAL_GATE_ENABLED", "off"},
                             {"ORCH_IMPOSSIBLE_QUEUED_SANITIZE_ENABLED", "No"},
                             {"ORCH_LISTEN", "[::1]:9090"},
                             {"ORCH_DB_PATH", "/tmp/x.db"},
                             {"ORCH_LOG_LEVEL", "debug"},
                             {"ORCH_LOG_FORMAT", "json"}});
  ASSERT_TRUE(c.ok()) << AllErrors(c);
  EXPECT_FALSE(c.config.supervisor.serial_gate_enabled);
  EXPECT_FALSE(c.config.reaper.sanitize_impossible_queued);
  EXPECT_EQ("[::1]:9090", c.config.server.listen);
  EXPECT_EQ("/tmp/x.db", c.config.store.path);
  EXPECT_EQ("debug", c.config.log.level);
  EXPECT_EQ("json", c.config.log.format);
}

TEST(Config, EveryOtherKeyHasAnEnvironmentVariableByTheRegularRule) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "",
                            {{"ORCH_SERVER_MAX_BODY_BYTES", "2048"},
                             {"ORCH_SUPERVISOR_TRANSIENT_EXIT_CODES", "75,76"},
                             {"ORCH_REAPER_INTERVAL_MS", "250"}});
  ASSERT_TRUE(c.ok()) << AllErrors(c);
  EXPECT_EQ(2048, c.config.server.max_body_bytes);
  EXPECT_EQ((std::vector<int64_t>{75, 76}), c.config.supervisor.transient_exit_codes);
  EXPECT_EQ(250, c.config.reaper.interval_ms);
  for (const auto& k : ConfigKeys()) EXPECT_EQ(0u, k.env.rfind("ORCH_", 0)) << k.name;
}

TEST(Config, BooleansAcceptTheUsualSpellingsCaseInsensitively) {
  for (const char* t : {"true", "TRUE", "1", "yes", "On"}) {
    bool b = false;
    EXPECT_TRUE(ParseBool(t, &b)) << t;
    EXPECT_TRUE(b) << t;
  }
  for (const char* f : {"false", "False", "0", "NO", "off"}) {
    bool b = true;
    EXPECT_TRUE(ParseBool(f, &b)) << f;
    EXPECT_FALSE(b) << f;
  }
  bool b;
  EXPECT_FALSE(ParseBool("maybe", &b));
  EXPECT_FALSE(ParseBool("", &b));
}

TEST(Config, UnknownKeyNamesTheKeyTheLineAndSuggestsTheClosest) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "[supervisor]\nmax_concurrency = 2\nmax_concurency = 3\n");
  ASSERT_EQ(1u, c.errors.size()) << AllErrors(c);
  EXPECT_NE(std::string::npos, c.errors[0].find("orchestrator.toml:3:1")) << c.errors[0];
  EXPECT_NE(std::string::npos, c.errors[0].find("unknown key supervisor.max_concurency"));
  EXPECT_NE(std::string::npos, c.errors[0].find("did you mean supervisor.max_concurrency?"));
}

TEST(Config, UnknownSectionIsAnError) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "[sever]\nlisten = \"127.0.0.1:1\"\n");
  ASSERT_EQ(1u, c.errors.size()) << AllErrors(c);
  EXPECT_NE(std::string::npos, c.errors[0].find("unknown section [sever]"));
  EXPECT_NE(std::string::npos, c.errors[0].find("did you mean server"));
}

TEST(Config, WrongTypeNamesKeyPositionAndExpectation) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "[supervisor]\n\nmax_concurrency = \"four\"\n");
  ASSERT_EQ(1u, c.errors.size()) << AllErrors(c);
  EXPECT_NE(std::string::npos, c.errors[0].find(":3:19")) << c.errors[0];
  EXPECT_NE(std::string::npos, c.errors[0].find("supervisor.max_concurrency"));
  EXPECT_NE(std::string::npos, c.errors[0].find("expected an integer from 1 to 100000"));
  EXPECT_NE(std::string::npos, c.errors[0].find("got a string"));
}

TEST(Config, OutOfRangeAndBadChoicesAreErrors) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir,
                            "[supervisor]\nmax_concurrency = 0\norphan_policy = \"ignore\"\n"
                            "transient_exit_codes = [75, 300]\n[reaper]\nsanitize_impossible_queued = "
                            "\"yes\"\n[server]\nlisten = \"localhost\"\n");
  ASSERT_EQ(5u, c.errors.size()) << AllErrors(c);
  std::string all = AllErrors(c);
  EXPECT_NE(std::string::npos, all.find("max_concurrency: expected an integer from 1 to 100000, got 0"));
  EXPECT_NE(std::string::npos, all.find("orphan_policy: expected one of \"requeue\", \"adopt\""));
  EXPECT_NE(std::string::npos, all.find("transient_exit_codes: expected a list of integers"));
  EXPECT_NE(std::string::npos, all.find("sanitize_impossible_queued: expected a boolean"));
  EXPECT_NE(std::string::npos, all.find("server.listen"));
}

TEST(Config, BackoffBaseAboveMaxIsAnError) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "[supervisor]\nbackoff_base_s = 10.0\nbackoff_max_s = 5.0\n");
  ASSERT_EQ(1u, c.errors.size()) << AllErrors(c);
  EXPECT_NE(std::string::npos, c.errors[0].find("backoff_base_s"));
}

TEST(Config, PostgresBackendNeedsAUrlAndSqliteRefusesOne) {
  TempDir dir;
  LoadedConfig no_url = LoadFile(dir, "[store]\nbackend = \"postgres\"\n");
  ASSERT_EQ(1u, no_url.errors.size()) << AllErrors(no_url);
  EXPECT_NE(std::string::npos, no_url.errors[0].find("needs store.url")) << no_url.errors[0];

  LoadedConfig from_env =
      LoadFile(dir, "[store]\nbackend = \"postgres\"\n", {{"ORCH_STORE_URL", "postgresql:///q"}});
  EXPECT_TRUE(from_env.ok()) << AllErrors(from_env);
  EXPECT_EQ("postgresql:///q", from_env.config.store.url);

  LoadedConfig stray = LoadFile(dir, "[store]\nurl = \"postgresql:///q\"\n");
  ASSERT_EQ(1u, stray.errors.size()) << AllErrors(stray);
  EXPECT_NE(std::string::npos, stray.errors[0].find("store.backend = \"sqlite\""));

  LoadedConfig bad = LoadFile(dir, "[store]\nbackend = \"mysql\"\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string::npos, AllErrors(bad).find("store.backend")) << AllErrors(bad);
}

TEST(Config, StoreUrlPasswordsNeverShow) {
  EXPECT_EQ("postgresql://orch:***@db:5432/q", RedactStoreUrl("postgresql://orch:s3cret@db:5432/q"));
  EXPECT_EQ("postgres://orch@db/q", RedactStoreUrl("postgres://orch@db/q"));
  EXPECT_EQ("postgresql:///q?host=/run&password=***&sslmode=require",
            RedactStoreUrl("postgresql:///q?host=/run&password=hunter2&sslmode=require"));
  EXPECT_EQ("host=db password=*** dbname=q", RedactStoreUrl("host=db password=hunter2 dbname=q"));
  EXPECT_EQ("host=db password=*** dbname=q", RedactStoreUrl("host=db password = hunter2 dbname=q"));
  EXPECT_EQ("host=db password=*** dbname=q",
            RedactStoreUrl("host=db password='hun ter\\'2' dbname=q"));
  EXPECT_EQ("host=db password=***", RedactStoreUrl("host=db PASSWORD=x"));
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "[store]\nbackend = \"postgres\"\n"
                                 "url = \"postgresql://orch:s3cret@db/q\"\n");
  ASSERT_TRUE(c.ok()) << AllErrors(c);
  std::string described = DescribeConfig(c);
  EXPECT_EQ(std::string::npos, described.find("s3cret")) << described;
  EXPECT_NE(std::string::npos, described.find("postgresql://orch:***@db/q")) << described;
}

TEST(Config, UnparsableFileReportsThePosition) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "[server]\nlisten = \n");
  ASSERT_EQ(1u, c.errors.size()) << AllErrors(c);
  EXPECT_NE(std::string::npos, c.errors[0].find("orchestrator.toml:2:")) << c.errors[0];
  EXPECT_NE(std::string::npos, c.errors[0].find("not valid TOML"));
}

TEST(Config, UnreadableFileIsAnError) {
  ConfigInputs in;
  in.file = "/nonexistent/orchestrator.toml";
  in.file_required = true;
  LoadedConfig c = LoadConfig(in);
  ASSERT_EQ(1u, c.errors.size());
  EXPECT_NE(std::string::npos, c.errors[0].find("/nonexistent/orchestrator.toml"));
  EXPECT_NE(std::string::npos, c.errors[0].find("cannot read config file"));
}

TEST(Config, BadEnvironmentValueNamesTheVariable) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "", {{"ORCH_MAX_CONCURRENCY", "abc"},
                                      {"ORCH_SERIAL_GATE_ENABLED", "maybe"}});
  ASSERT_EQ(2u, c.errors.size()) << AllErrors(c);
  std::string all = AllErrors(c);
  EXPECT_NE(std::string::npos, all.find("ORCH_MAX_CONCURRENCY"));
  EXPECT_NE(std::string::npos, all.find("got \"abc\""));
  EXPECT_NE(std::string::npos, all.find("ORCH_SERIAL_GATE_ENABLED"));
}

TEST(Config, BadFlagIsAnError) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "", {}, {{"supervisor.max_concurrency", "-1"},
                                          {"supervisor.max_concurency", "2"}});
  ASSERT_EQ(2u, c.errors.size()) << AllErrors(c);
  std::string all = AllErrors(c);
  EXPECT_NE(std::string::npos, all.find("--set supervisor.max_concurrency=-1"));
  EXPECT_NE(std::string::npos, all.find("did you mean supervisor.max_concurrency?"));
}

TEST(Config, DescribeShowsEveryKeyAndItsSource) {
  TempDir dir;
  LoadedConfig c = LoadFile(dir, "[supervisor]\nmax_concurrency = 2\n", {{"ORCH_LOG_LEVEL", "warn"}});
  ASSERT_TRUE(c.ok());
  std::string d = DescribeConfig(c);
  for (const auto& k : ConfigKeys()) {
    EXPECT_NE(std::string::npos, d.find(k.name.substr(k.name.find('.') + 1) + " = ")) << k.name;
  }
  EXPECT_NE(std::string::npos, d.find("max_concurrency = 2"));
  EXPECT_NE(std::string::npos, d.find("# file"));
  EXPECT_NE(std::string::npos, d.find("# env ORCH_LOG_LEVEL"));
}

TEST(Config, RootConfigFileHoldsEveryKeyWithItsDefault) {
  ConfigInputs in;
  in.file = test::SourceDir() + "/orchestrator.toml";
  in.file_required = true;
  LoadedConfig c = LoadConfig(in);
  ASSERT_TRUE(c.ok()) << AllErrors(c);
  Config defaults;
  for (const auto& k : ConfigKeys()) {
    EXPECT_EQ(ConfigSource::kFile, c.sources[k.name]) << k.name << " missing from orchestrator.toml";
    if (k.name != "store.path" && k.name != "supervisor.log_dir" && k.name != "server.token_file") {
      EXPECT_EQ(ConfigValueText(defaults, k.name), ConfigValueText(c.config, k.name)) << k.name;
    }
  }
}

}  // namespace
}  // namespace orch
