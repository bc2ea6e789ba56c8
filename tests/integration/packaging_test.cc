// Packaging (SPEC §10): the .deb built by CPack, the systemd unit, the
// packaged config and the Dockerfile. Each test process builds the package
// once with `cpack` into a temporary directory (the build tree's own .deb is
// left alone); tests that need a tool this machine lacks are skipped, naming it.
#include <grp.h>
#include <sys/stat.h>
#include <gtest/gtest.h>

#include "integration/daemon_harness.h"

#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "support/test_util.h"

namespace orch {
namespace {

namespace fs = std::filesystem;
using test::CommandResult;
using test::OrchestratorBinary;
using test::ReadFile;
using test::RunCommand;
using test::SourceDir;
using test::TempDir;
using test::WriteFile;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

bool HaveTool(const std::string& name) {
  return RunCommand({"sh", "-c", "command -v " + name}).exit_code == 0;
}

// The build tree that produced the binary under test.
std::string BuildDir() { return fs::path(OrchestratorBinary()).parent_path().string(); }

std::string PackagingFile(const std::string& rel) { return SourceDir() + "/packaging/" + rel; }

// "section.key" for every `key = value` line of a TOML file like ours.
std::set<std::string> TomlKeys(const std::string& text) {
  std::set<std::string> keys;
  std::istringstream in(text);
  std::string line, section;
  static const std::regex kSection(R"(^\s*\[([A-Za-z0-9_.]+)\]\s*(#.*)?$)");
  static const std::regex kKey(R"(^\s*([A-Za-z0-9_]+)\s*=)");
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_search(line, m, kSection)) {
      section = m[1];
    } else if (std::regex_search(line, m, kKey)) {
      keys.insert(section + "." + std::string(m[1]));
    }
  }
  return keys;
}

// ---------------------------------------------------------------------------
// The .deb

class Package : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    deb_ = new std::string();
    skip_ = new std::string();
    std::string config = BuildDir() + "/CPackConfig.cmake";
    if (!fs::exists(config)) {
      *skip_ = "no " + config + ": configure the build with CMake first";
      return;
    }
    for (const char* tool : {"cpack", "dpkg-deb", "dpkg-shlibdeps", "file"}) {
      if (!HaveTool(tool)) {
        *skip_ = std::string(tool) +
                 " is not installed (ORCH_SETUP_TEST_DEPS=1 scripts/setup.sh installs "
                 "dpkg-dev and file)";
        return;
      }
    }
    // Installing through cmake_install.cmake directly skips CPack's
    // "preinstall" build of the whole tree: the binary under test is already
    // built, and ctest runs these tests in parallel processes.
    CommandResult r = RunCommand({"cpack", "--config", config, "-B", dir_->path(), "-D",
                                  "CPACK_INSTALL_CMAKE_PROJECTS=", "-D",
                                  "CPACK_INSTALL_SCRIPTS=" + BuildDir() + "/cmake_install.cmake"});
    if (r.exit_code != 0) {
      build_error_ = new std::string("cpack failed (exit " + std::to_string(r.exit_code) + "):\n" +
                                     r.out + r.err);
      return;
    }
    for (const auto& e : fs::directory_iterator(dir_->path())) {
      std::string name = e.path().filename().string();
      if (name.rfind("orchestrator_", 0) == 0 && e.path().extension() == ".deb") {
        *deb_ = e.path().string();
      }
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete deb_;
    delete skip_;
    delete build_error_;
    dir_ = nullptr;
    deb_ = skip_ = build_error_ = nullptr;
  }
  void SetUp() override {
    if (!skip_->empty()) GTEST_SKIP() << *skip_;
    ASSERT_EQ(nullptr, build_error_) << *build_error_;
    ASSERT_FALSE(deb_->empty()) << "cpack wrote no orchestrator_*.deb into " << dir_->path();
  }

  static TempDir* dir_;
  static std::string* deb_;
  static std::string* skip_;
  static std::string* build_error_;
};
TempDir* Package::dir_ = nullptr;
std::string* Package::deb_ = nullptr;
std::string* Package::skip_ = nullptr;
std::string* Package::build_error_ = nullptr;

TEST_F(Package, InstallsTheBinaryUnitConfigAndStateDirectory) {
  CommandResult r = RunCommand({"dpkg-deb", "-c", *deb_});
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_TRUE(
      std::regex_search(r.out, std::regex(R"(-rwxr-xr-x \S+ +\d+ .* \./usr/bin/orchestrator\n)")))
      << r.out;
  // Next to the daemon, where it looks for it: jobs spawn through it.
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex(R"(-rwxr-xr-x root/root +\d+ .* \./usr/bin/orchestrator-exec\n)")))
      << r.out;
  EXPECT_TRUE(Contains(r.out, " ./lib/systemd/system/orchestrator.service\n")) << r.out;
  EXPECT_TRUE(Contains(r.out, " ./etc/orchestrator/orchestrator.toml\n")) << r.out;
  EXPECT_TRUE(
      std::regex_search(r.out, std::regex(R"(drwxr-x--- \S+ .* \./var/lib/orchestrator/\n)")))
      << "the state directory is there, mode 0750\n"
      << r.out;
}

TEST_F(Package, ControlNamesThePackageAndItsLibraryDependencies) {
  CommandResult r = RunCommand({"dpkg-deb", "-I", *deb_});
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_TRUE(Contains(r.out, "Package: orchestrator\n")) << r.out;
  EXPECT_TRUE(Contains(r.out, "Maintainer: ")) << r.out;
  EXPECT_TRUE(Contains(r.out, "Description: ")) << r.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(\n Depends: ([^\n]*)\n)"))) << r.out;
  std::string depends = m[1];
  // dpkg-shlibdeps derived these from the binary's shared libraries; libcurl4
  // and libpq5 are loaded with dlopen and named by hand.
  for (const char* pkg : {"libc6", "libuv1", "libcurl4", "libpq5"}) {
    EXPECT_TRUE(Contains(depends, pkg)) << pkg << " missing from Depends: " << depends;
  }
  // Libraries only some builds link (the store's SQLite, libsystemd for
  // sd_notify) must be there whenever the binary needs them.
  std::string ldd = RunCommand({"ldd", OrchestratorBinary()}).out;
  for (auto [soname, pkg] : std::map<std::string, std::string>{{"libsqlite3.so", "libsqlite3-0"},
                                                               {"libsystemd.so", "libsystemd0"},
                                                               {"libspdlog.so", "libspdlog1.10"}}) {
    if (Contains(ldd, soname)) {
      EXPECT_TRUE(Contains(depends, pkg)) << pkg << " missing from Depends: " << depends;
    }
  }
}

TEST_F(Package, ConfigIsAConffileSoUpgradesKeepLocalEdits) {
  CommandResult r = RunCommand({"dpkg-deb", "-I", *deb_, "conffiles"});
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ("/etc/orchestrator/orchestrator.toml\n", r.out);
}

TEST_F(Package, UnpackedBinaryAcceptsThePackagedConfig) {
  TempDir root;
  CommandResult x = RunCommand({"dpkg-deb", "-x", *deb_, root.path()});
  ASSERT_EQ(0, x.exit_code) << x.err;
  // A clean environment: the test runner's ORCH_* variables must not count.
  CommandResult r =
      RunCommand({"env", "-i", "PATH=/usr/bin:/bin", root.File("usr/bin/orchestrator"),
                  "check-config", "--config", root.File("etc/orchestrator/orchestrator.toml")});
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_TRUE(Contains(r.out, "\"/var/lib/orchestrator/orchestrator.db\"")) << r.out;
  EXPECT_TRUE(Contains(r.out, "\"/var/lib/orchestrator/logs\"")) << r.out;
  EXPECT_EQ(ReadFile(PackagingFile("systemd/orchestrator.service")),
            ReadFile(root.File("lib/systemd/system/orchestrator.service")));
}

// What the README promises a newcomer: install the package (here: into a
// temporary root), start the daemon, submit a job with the CLI, watch it with
// `status` and curl, read its log, stop it cleanly.
TEST_F(Package, ReadmeWalkthroughWorksFromTheUnpackedPackage) {
  TempDir root;
  ASSERT_EQ(0, RunCommand({"dpkg-deb", "-x", *deb_, root.path()}).exit_code);
  std::string bin = root.File("usr/bin/orchestrator");
  std::string state = root.File("var/lib/orchestrator");
  // The packaged config, with the state it names moved under the temp root.
  std::vector<std::string> state_env = {"ORCH_DB_PATH=" + state + "/orchestrator.db",
                                        "ORCH_SUPERVISOR_LOG_DIR=" + state + "/logs",
                                        "ORCH_SERVER_TOKEN_FILE=" + state + "/token",
                                        "ORCH_LISTEN=127.0.0.1:0"};
  test::Daemon d(root, "", state_env);
  std::string config = root.File("etc/orchestrator/orchestrator.toml");
  d.UseBinary(bin, config);
  d.UseTokenFile(state + "/token");
  ASSERT_TRUE(d.Start()) << d.Log();
  ASSERT_TRUE(fs::exists(state + "/token")) << "the daemon made its token";
  // The CLI finds server and token through the same config (on a real
  // install /etc/orchestrator/orchestrator.toml, read by default).
  std::string server = "--server=" + d.url();
  auto cli = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {"env", "ORCH_SERVER_TOKEN_FILE=" + state + "/token", bin};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  };

  CommandResult submit = cli({"submit", server, "--config", config, "--name", "hello", "--", "sh",
                              "-c", "echo hello from the package"});
  ASSERT_EQ(0, submit.exit_code) << submit.out << submit.err;
  std::string id = submit.out.substr(0, submit.out.find_first_of(" \n"));
  id.erase(0, id.find_first_of("0123456789"));
  ASSERT_FALSE(id.empty()) << submit.out;
  ASSERT_TRUE(d.WaitStatus(std::stoll(id), "succeeded")) << d.Log();

  CommandResult status = cli({"status", server, "--config", config});
  EXPECT_EQ(0, status.exit_code) << status.err;
  EXPECT_TRUE(Contains(status.out, "succeeded")) << status.out;
  CommandResult curl = RunCommand(
      {"curl", "-s", "-H", "Authorization: Bearer " + d.Token(), d.url() + "/queue"});
  EXPECT_EQ(1, nlohmann::json::parse(curl.out)["counts"]["succeeded"]) << curl.out;
  CommandResult logs = cli({"logs", server, "--config", config, id});
  EXPECT_EQ(0, logs.exit_code) << logs.err;
  EXPECT_EQ("hello from the package\n", logs.out);
  EXPECT_TRUE(fs::exists(state + "/orchestrator.db"));
  EXPECT_EQ(0, d.Stop());
}

// Runs the packaged postinst against a config with `run_as`, in dry-run
// mode, and returns what it printed.
std::string PostinstSays(const std::string& control_dir, const std::string& run_as) {
  TempDir root;
  fs::create_directories(root.File("etc/orchestrator"));
  WriteFile(root.File("etc/orchestrator/orchestrator.toml"),
            "[server]\nrun_as = \"not-this-one\"\n[supervisor]\nmax_concurrency = 1\n"
            "run_as = \"" +
                run_as + "\"   # comment\n[reaper]\ninterval_ms = 1000\n");
  CommandResult r = RunCommand({"sh", control_dir + "/postinst", "configure"},
                               {"DPKG_ROOT=" + root.path(), "ORCH_POSTINST_DRY_RUN=1"});
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_TRUE(fs::is_directory(root.File("var/lib/orchestrator")));
  return r.out + r.err;
}

TEST_F(Package, PostinstCreatesTheRunAsUserOnlyWhenConfiguredAndMissing) {
  TempDir control;
  CommandResult e = RunCommand({"dpkg-deb", "-e", *deb_, control.path()});
  ASSERT_EQ(0, e.exit_code) << e.err;
  ASSERT_TRUE(fs::exists(control.File("postinst")));
  EXPECT_FALSE(Contains(PostinstSays(control.path(), ""), "creating system user"))
      << "no run_as: no account";
  EXPECT_FALSE(Contains(PostinstSays(control.path(), "root"), "creating system user"))
      << "an existing user is left alone";
  std::string out = PostinstSays(control.path(), "orch-test-nouser:orch-test-nogroup");
  EXPECT_TRUE(Contains(out, "creating system user orch-test-nouser")) << out;
  EXPECT_TRUE(Contains(out, "creating system group orch-test-nogroup")) << out;
  EXPECT_FALSE(Contains(out, "not-this-one")) << "only [supervisor] run_as counts: " << out;
}

TEST_F(Package, PostinstMakesAnAPITokenOnlyTheCliGroupCanRead) {
  TempDir control;
  ASSERT_EQ(0, RunCommand({"dpkg-deb", "-e", *deb_, control.path()}).exit_code);
  TempDir root;
  CommandResult r = RunCommand({"sh", control.File("postinst"), "configure"},
                               {"DPKG_ROOT=" + root.path(), "ORCH_POSTINST_DRY_RUN=1"});
  ASSERT_EQ(0, r.exit_code) << r.err;
  std::string path = root.File("var/lib/orchestrator/token");
  std::string token = test::ReadFile(path);
  ASSERT_EQ(65u, token.size()) << token;
  EXPECT_EQ(std::string::npos, token.substr(0, 64).find_first_not_of("0123456789abcdef"));
  struct stat st {};
  ASSERT_EQ(0, stat(path.c_str(), &st));
  EXPECT_EQ(0u, st.st_mode & 0137) << std::oct << st.st_mode;  // at most 0640
  if (getgrnam("orchestrator") == nullptr) {
    EXPECT_TRUE(Contains(r.out, "creating system group orchestrator")) << r.out;
  }
  EXPECT_FALSE(Contains(r.out, "re-exec")) << "a first install has nothing to re-exec: " << r.out;
  // An upgrade keeps the token, and re-execs a running daemon in place
  // (SIGUSR2 to the daemon alone, never to its jobs) instead of restarting it.
  CommandResult upgrade = RunCommand({"sh", control.File("postinst"), "configure", "0.0.1"},
                                     {"DPKG_ROOT=" + root.path(), "ORCH_POSTINST_DRY_RUN=1"});
  ASSERT_EQ(0, upgrade.exit_code) << upgrade.err;
  EXPECT_EQ(token, test::ReadFile(path));
  EXPECT_TRUE(Contains(upgrade.out,
                       "systemctl kill --kill-who=main --signal=USR2 "
                       "orchestrator.service"))
      << upgrade.out;
  // The command run is the one printed, and only a daemon that catches
  // SIGUSR2 (bit 12 of SigCgt; Reexec tests check a live daemon) gets it.
  std::string postinst = test::ReadFile(control.File("postinst"));
  EXPECT_TRUE(Contains(postinst, "    $cmd ||")) << postinst;
  EXPECT_TRUE(Contains(postinst, "0x$caught >> 11 & 1")) << postinst;
  EXPECT_TRUE(Contains(test::ReadFile(SourceDir() + "/packaging/orchestrator.toml"),
                       "token_file = \"/var/lib/orchestrator/token\""));
}

// ---------------------------------------------------------------------------
// The systemd unit

// Key → values of the unit file (a key may repeat).
std::multimap<std::string, std::string> UnitKeys(const std::string& text) {
  std::multimap<std::string, std::string> keys;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line[0] == ';' || line[0] == '[') continue;
    size_t eq = line.find('=');
    if (eq != std::string::npos) keys.emplace(line.substr(0, eq), line.substr(eq + 1));
  }
  return keys;
}

TEST(SystemdUnit, HasTheSettingsTheDaemonReliesOn) {
  auto keys = UnitKeys(ReadFile(PackagingFile("systemd/orchestrator.service")));
  auto value = [&](const std::string& k) {
    auto it = keys.find(k);
    return it == keys.end() ? std::string("<missing>") : it->second;
  };
  EXPECT_EQ("notify", value("Type"));
  EXPECT_EQ("main", value("NotifyAccess"));
  EXPECT_EQ("/usr/bin/orchestrator serve --config /etc/orchestrator/orchestrator.toml",
            value("ExecStart"));
  EXPECT_EQ("/bin/kill -HUP $MAINPID", value("ExecReload"));
  EXPECT_EQ("30", value("WatchdogSec"));
  EXPECT_EQ("on-failure", value("Restart"));
  EXPECT_EQ("mixed", value("KillMode"));
  // SPEC §12: the unit's cgroup is delegated and stays writable.
  EXPECT_EQ("yes", value("Delegate"));
  EXPECT_TRUE(Contains(ReadFile(PackagingFile("systemd/orchestrator.service")),
                       "ReadWritePaths=-/sys/fs/cgroup/unified/system.slice/orchestrator.service"));
  EXPECT_EQ("<missing>", value("ProtectControlGroups"));
  EXPECT_EQ("orchestrator", value("StateDirectory"));
  EXPECT_EQ("0750", value("StateDirectoryMode"));
  EXPECT_EQ("orchestrator", value("ConfigurationDirectory"));
  EXPECT_EQ("yes", value("NoNewPrivileges"));
  EXPECT_EQ("strict", value("ProtectSystem"));
  EXPECT_EQ("yes", value("ProtectHome"));
  EXPECT_EQ("yes", value("PrivateTmp"));
  EXPECT_TRUE(Contains(value("ReadWritePaths"), "/var/lib/orchestrator"));
  EXPECT_EQ("multi-user.target", value("WantedBy"));

  // systemd must not SIGKILL jobs before the daemon's own shutdown grace ends.
  std::smatch m;
  std::string config = ReadFile(PackagingFile("orchestrator.toml"));
  ASSERT_TRUE(std::regex_search(config, m, std::regex(R"(\nshutdown_grace_s = (\d+))")));
  int grace = std::stoi(m[1]);
  std::string stop = value("TimeoutStopSec");
  ASSERT_TRUE(std::regex_match(stop, m, std::regex(R"((\d+)s?)"))) << stop;
  EXPECT_GT(std::stoi(m[1]), grace) << "TimeoutStopSec=" << stop;
}

TEST(SystemdUnit, PassesSystemdAnalyzeVerify) {
  if (!HaveTool("systemd-analyze")) GTEST_SKIP() << "systemd-analyze is not installed";
  // verify insists that ExecStart exists: check a copy that runs the built binary.
  TempDir dir;
  std::string unit = ReadFile(PackagingFile("systemd/orchestrator.service"));
  unit = std::regex_replace(unit, std::regex("ExecStart=/usr/bin/orchestrator"),
                            "ExecStart=" + OrchestratorBinary());
  WriteFile(dir.File("orchestrator.service"), unit);
  CommandResult r = RunCommand({"systemd-analyze", "verify", dir.File("orchestrator.service")});
  EXPECT_EQ(0, r.exit_code) << r.out << r.err;
  // Unknown keys and bad values are only warnings to verify; they are errors here.
  for (const char* bad : {"Unknown", "ignoring", "Invalid", "Failed to parse"}) {
    EXPECT_FALSE(Contains(r.err, bad)) << r.err;
  }
}

// ---------------------------------------------------------------------------
// The packaged config

TEST(PackagedConfig, HasTheSameKeysAsTheRootConfig) {
  auto root = TomlKeys(ReadFile(SourceDir() + "/orchestrator.toml"));
  auto packaged = TomlKeys(ReadFile(PackagingFile("orchestrator.toml")));
  EXPECT_GT(root.size(), 20u);
  EXPECT_EQ(root, packaged);
}

TEST(PackagedConfig, IsValidAndKeepsStateUnderVarLib) {
  CommandResult r = RunCommand({"env", "-i", "PATH=/usr/bin:/bin", OrchestratorBinary(),
                                "check-config", "--config", PackagingFile("orchestrator.toml")});
  EXPECT_EQ(0, r.exit_code) << r.err;
  EXPECT_TRUE(Contains(r.out, "path = \"/var/lib/orchestrator/orchestrator.db\"")) << r.out;
  EXPECT_TRUE(Contains(r.out, "log_dir = \"/var/lib/orchestrator/logs\"")) << r.out;
}

// ---------------------------------------------------------------------------
// The Dockerfile (linted: no Docker daemon needed)

struct Instruction {
  std::string op;    // upper case
  std::string args;  // continuation lines joined
};

std::vector<Instruction> ParseDockerfile(const std::string& text) {
  std::vector<Instruction> out;
  std::istringstream in(text);
  std::string line, pending;
  while (std::getline(in, line)) {
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    line = line.substr(start);
    bool more = !line.empty() && line.back() == '\\';
    if (more) line.pop_back();
    pending += line + " ";
    if (more) continue;
    size_t sp = pending.find(' ');
    Instruction ins{pending.substr(0, sp), pending.substr(sp + 1)};
    for (char& c : ins.op) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    while (!ins.args.empty() && ins.args.back() == ' ') ins.args.pop_back();
    out.push_back(ins);
    pending.clear();
  }
  return out;
}

class Dockerfile : public ::testing::Test {
 protected:
  void SetUp() override {
    all_ = ParseDockerfile(ReadFile(PackagingFile("docker/Dockerfile")));
    ASSERT_FALSE(all_.empty());
    // The runtime stage: everything after the last FROM.
    for (const auto& i : all_) {
      if (i.op == "FROM") runtime_.clear();
      runtime_.push_back(i);
    }
  }
  std::vector<std::string> Args(const std::vector<Instruction>& v, const std::string& op) {
    std::vector<std::string> out;
    for (const auto& i : v) {
      if (i.op == op) out.push_back(i.args);
    }
    return out;
  }
  std::string RuntimeRuns() {
    std::string all;
    for (const auto& a : Args(runtime_, "RUN")) all += a + "\n";
    return all;
  }
  std::vector<Instruction> all_, runtime_;
};

TEST_F(Dockerfile, BuildsOnBookwormAndRunsOnBookwormSlim) {
  auto froms = Args(all_, "FROM");
  ASSERT_EQ(2u, froms.size());
  EXPECT_TRUE(std::regex_match(froms[0], std::regex(R"(debian:bookworm\s+(AS|as)\s+build)")))
      << froms[0];
  EXPECT_EQ("debian:bookworm-slim", froms[1]);
  std::string build_runs;
  for (const auto& i : all_) {
    if (i.op == "FROM" && &i != &all_.front()) break;
    if (i.op == "RUN") build_runs += i.args + "\n";
  }
  for (const char* pkg : {"cmake", "libuv1-dev", "libsqlite3-dev", "node-llhttp", "libcli11-dev"}) {
    EXPECT_TRUE(Contains(build_runs, pkg)) << pkg;
  }
  EXPECT_TRUE(Contains(build_runs, "cmake --build")) << build_runs;
}

TEST_F(Dockerfile, TheDaemonIsPid1WithStopSignalHealthCheckAndVolume) {
  auto entry = Args(runtime_, "ENTRYPOINT");
  ASSERT_EQ(1u, entry.size());
  nlohmann::json argv = nlohmann::json::parse(entry[0], nullptr, false);
  ASSERT_TRUE(argv.is_array()) << "exec form, so the daemon is PID 1: " << entry[0];
  EXPECT_EQ(nlohmann::json::array({"/usr/bin/orchestrator", "serve", "--config",
                                   "/etc/orchestrator/orchestrator.toml"}),
            argv);
  EXPECT_EQ(std::vector<std::string>{"SIGTERM"}, Args(runtime_, "STOPSIGNAL"));
  auto health = Args(runtime_, "HEALTHCHECK");
  ASSERT_EQ(1u, health.size());
  EXPECT_TRUE(std::regex_search(health[0],
                                std::regex(R"(CMD .*curl -fsS http://127\.0\.0\.1:8080/healthz)")))
      << health[0];
  EXPECT_EQ(std::vector<std::string>{"/var/lib/orchestrator"}, Args(runtime_, "VOLUME"));
  for (const auto& i : all_) {
    EXPECT_FALSE(Contains(i.args, "tini")) << "the daemon reaps its own children: " << i.args;
  }
  bool copies_binary = false, copies_helper = false;
  for (const auto& c : Args(runtime_, "COPY")) {
    copies_binary |= Contains(c, "--from=build") && Contains(c, "/usr/bin/");
    copies_helper |= Contains(c, "--from=build") && Contains(c, "/build/orchestrator-exec");
  }
  EXPECT_TRUE(copies_binary);
  EXPECT_TRUE(copies_helper) << "jobs spawn through the exec helper next to the daemon";
  EXPECT_TRUE(Contains(RuntimeRuns(), "useradd")) << "a non-root user for run_as";
}

TEST_F(Dockerfile, RuntimeStageInstallsEveryLibraryTheBinaryLinks) {
  if (!HaveTool("dpkg") || !HaveTool("ldd") || !HaveTool("readelf")) {
    GTEST_SKIP() << "needs dpkg, ldd and readelf";
  }
  std::string runs = RuntimeRuns();
  EXPECT_TRUE(std::regex_search(runs, std::regex(R"(\bcurl\b)"))) << "for the health check";
  // Loaded with dlopen, so not in the binary's NEEDED list below.
  for (const char* pkg : {"libcurl4", "libpq5"}) {
    EXPECT_TRUE(std::regex_search(runs, std::regex(std::string("(^|\\s)") + pkg + "(\\s|$)")))
        << pkg << " (loaded with dlopen) is not installed in the runtime stage";
  }
  // Present in every Debian image, and sanitizer runtimes of test builds.
  const std::set<std::string> kBase = {"libc6",    "libstdc++6", "libgcc-s1",
                                       "libasan8", "libubsan1",  "libtsan2"};
  // The direct dependencies (NEEDED), found where ldd resolves them.
  std::string dynamic = RunCommand({"readelf", "-d", OrchestratorBinary()}).out;
  std::string ldd = RunCommand({"ldd", OrchestratorBinary()}).out;
  std::smatch m;
  int checked = 0;
  static const std::regex kNeeded(R"(\(NEEDED\)\s+Shared library: \[([^\]]+)\])");
  for (auto it = std::sregex_iterator(dynamic.begin(), dynamic.end(), kNeeded);
       it != std::sregex_iterator(); ++it) {
    std::string soname = (*it)[1];
    std::string needle = soname + " => ";
    size_t at = ldd.find(needle);
    if (at == std::string::npos) continue;
    std::string path = ldd.substr(at + needle.size());
    path = path.substr(0, path.find_first_of(" \n"));
    path = fs::canonical(path).string();
    CommandResult owner = RunCommand({"dpkg", "-S", path});
    if (owner.exit_code != 0) {
      // usrmerge: dpkg may know the file under /lib rather than /usr/lib.
      std::string alt = path.rfind("/usr/", 0) == 0 ? path.substr(4) : "/usr" + path;
      owner = RunCommand({"dpkg", "-S", alt});
    }
    if (owner.exit_code != 0) continue;
    std::string pkg = owner.out.substr(0, owner.out.find(':'));
    if (kBase.count(pkg) != 0) continue;
    ++checked;
    std::string quoted = std::regex_replace(pkg, std::regex(R"([.+])"), R"(\$&)");
    EXPECT_TRUE(std::regex_search(runs, std::regex("(^|\\s)" + quoted + "(\\s|$)")))
        << pkg << " (for " << soname << ") is not installed in the runtime stage";
  }
  EXPECT_GT(checked, 2);
}

}  // namespace
}  // namespace orch

namespace orch {
namespace {

// libcurl (client subcommands) and libpq (PostgreSQL store) are loaded when
// used: a daemon on SQLite maps neither, nor the TLS, Kerberos and LDAP
// libraries they pull in (bench/README.md, idle memory).
TEST(Binary, LoadsLibcurlAndLibpqOnlyWhenUsed) {
  if (!HaveTool("readelf")) GTEST_SKIP() << "readelf is not installed";
  CommandResult r = RunCommand({"readelf", "-d", OrchestratorBinary()});
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_NE(std::string::npos, r.out.find("(NEEDED)")) << r.out;
  for (const char* lib : {"libcurl", "libpq", "libssl", "libcrypto", "libgssapi"}) {
    EXPECT_EQ(std::string::npos, r.out.find(std::string("[") + lib)) << lib << " is linked";
  }
}

// The build the README describes (and the .deb made from it) must not carry
// the test kill points: ORCH_TEST_HOOKS is off unless a test build asks.
TEST(ReleaseBuild, HasNoTestKillPointsByDefault) {
  if (!HaveTool("cmake")) GTEST_SKIP() << "cmake is not installed";
  TempDir build;
  CommandResult r =
      RunCommand({"cmake", "-S", SourceDir(), "-B", build.path(), "-DORCH_TESTS=OFF"});
  ASSERT_EQ(0, r.exit_code) << r.out << r.err;
  std::string cache = ReadFile(build.File("CMakeCache.txt"));
  EXPECT_NE(std::string::npos, cache.find("ORCH_TEST_HOOKS:BOOL=OFF")) << "default must be OFF";
}

}  // namespace
}  // namespace orch
