#include "support/test_util.h"

#include "supervisor/cgroup.h"

#include <sys/mount.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace orch::test {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/orch-test-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& extra_env) {
  TempDir dir;
  std::string out_path = dir.File("out"), err_path = dir.File("err");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) env_store.emplace_back(*e);
  for (const auto& e : extra_env) env_store.push_back(e);
  std::vector<char*> envp, args;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid;
  CommandResult r;
  if (posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), envp.data()) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    return r;
  }
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  return r;
}

Tmpfs::Tmpfs(const std::string& path, const std::string& options) : path_(path) {
  std::filesystem::create_directories(path);
  ok_ = mount("tmpfs", path.c_str(), "tmpfs", 0, options.c_str()) == 0;
}

Tmpfs::~Tmpfs() {
  if (ok_) umount2(path_.c_str(), MNT_DETACH);
}

bool Tmpfs::Remount(const std::string& options, unsigned long flags) {
  return mount("tmpfs", path_.c_str(), "tmpfs", MS_REMOUNT | flags, options.c_str()) == 0;
}

std::string Cgroup2Mount() {
  auto mount = FindCgroup2Mount(ReadFile("/proc/self/mountinfo"));
  return mount ? mount->point : "";
}

std::string TestCgroupRoot(const TempDir& dir) {
  std::string mount = Cgroup2Mount();
  if (mount.empty()) return "";
  return mount + "/orch-test/" + std::filesystem::path(dir.path()).filename().string();
}

pid_t ForkSleeperInCgroup(const std::string& cgroup_path) {
  std::string procs_path = cgroup_path + "/cgroup.procs";
  pid_t pid = fork();
  if (pid == 0) {
    int procs = open(procs_path.c_str(), O_WRONLY);
    if (procs < 0 || write(procs, "0", 1) != 1) _exit(126);
    execl("/bin/sleep", "sleep", "300", nullptr);
    _exit(127);
  }
  return pid;
}

void DestroyCgroupTree(const std::string& root) {
  if (root.empty() || !std::filesystem::exists(root)) return;
  // cgroup.kill reaches every descendant; the directories go once empty.
  std::ofstream(root + "/cgroup.kill") << "1";
  WaitFor([&] {
    std::string events = ReadFile(root + "/cgroup.events");
    return events.find("populated 0") != std::string::npos;
  });
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
    if (e.is_directory()) rmdir(e.path().c_str());
  }
  rmdir(root.c_str());
  rmdir(std::filesystem::path(root).parent_path().c_str());  // when no other test uses it
}

}  // namespace orch::test
