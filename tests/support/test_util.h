// Helpers shared by the tests: temp dirs that clean up, waiting on a
// condition with a deadline, running the real binary.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace orch::test {

// A fresh directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A tmpfs mounted for one test (needs root) and unmounted, lazily, when it
// ends: for read-only and full file systems.
class Tmpfs {
 public:
  Tmpfs(const std::string& path, const std::string& options);
  ~Tmpfs();
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;
  bool ok() const { return ok_; }
  bool Remount(const std::string& options, unsigned long flags = 0);

 private:
  std::string path_;
  bool ok_ = false;
};

void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);

// Polls `cond` every few ms until it is true or `timeout` passes.
bool WaitFor(const std::function<bool()>& cond,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

struct CommandResult {
  int exit_code = -1;  // 128+signal when killed
  std::string out;
  std::string err;
};
// Runs argv (no shell) with extra environment entries, capturing output.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& extra_env = {});

// Where cgroup v2 is mounted here ("" = nowhere), and a cgroup directory
// for one test's daemon under it ("" without cgroup v2): each daemon needs
// its own cgroup.root. DestroyCgroupTree kills whatever is left in such a
// tree and removes it.
std::string Cgroup2Mount();
std::string TestCgroupRoot(const TempDir& dir);
void DestroyCgroupTree(const std::string& root);
// Forks `sleep 300` that enters the cgroup at `cgroup_path` (by writing
// cgroup.procs itself) before its exec; its pid, -1 when fork failed. The
// child only makes async-signal-safe calls: callers may have threads.
pid_t ForkSleeperInCgroup(const std::string& cgroup_path);
// TestCgroupRoot(dir), destroyed with the guard.
struct TestCgroupTree {
  explicit TestCgroupTree(const TempDir& dir) : root(TestCgroupRoot(dir)) {}
  ~TestCgroupTree() { DestroyCgroupTree(root); }
  TestCgroupTree(const TestCgroupTree&) = delete;
  TestCgroupTree& operator=(const TestCgroupTree&) = delete;
  std::string root;  // "" without cgroup v2
};

// Path of the built binary.
inline std::string OrchestratorBinary() { return ORCH_BINARY; }
inline std::string SourceDir() { return ORCH_SOURCE_DIR; }

}  // namespace orch::test
