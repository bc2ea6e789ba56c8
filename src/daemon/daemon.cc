#include "daemon/daemon.h"

#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/log.h"
#include "base/make_dirs.h"
#include "base/resident.h"
#include "base/test_hooks.h"
#include "base/trusted_file.h"
#include "base/uv_handle.h"
#include "daemon/handover.h"
#include "http/api.h"
#include "http/server.h"
#include "store/db_tools.h"
#include "store/job_store.h"
#include "store/postgres/pg_listener.h"
#include "store/postgres/pg_store.h"
#include "store/store_executor.h"
#include "supervisor/identity.h"
#include "supervisor/metrics.h"
#include "supervisor/spawner.h"
#include "supervisor/supervisor.h"

namespace orch {
namespace {

// Creates the token file at first start: 32 random bytes as hex, mode 0600,
// owned by the daemon's user, never logged. An existing file is left alone.
Status EnsureToken(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 || errno != ENOENT) return Status::Ok();
  if (Status made = MakeParentDirs(path); !made.ok()) {
    return Status(made.code(), "server.token_file: " + made.message());
  }
  unsigned char raw[32];
  if (getrandom(raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw)) {
    return FromErrno("server.token_file: getrandom");
  }
  std::string token;
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char b : raw) {
    token += kHex[b >> 4];
    token += kHex[b & 15];
  }
  token += '\n';
  // Written whole under another name, then linked into place: a crash never
  // leaves an empty token file (which would stop every later start).
  std::string tmp = path + ".new";
  unlink(tmp.c_str());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return FromErrno("server.token_file: cannot create " + tmp);
  bool written = write(fd, token.data(), token.size()) == static_cast<ssize_t>(token.size()) &&
                 fsync(fd) == 0;
  int err = errno;
  close(fd);
  if (!written) {
    unlink(tmp.c_str());
    return FromErrno("server.token_file: cannot write " + tmp, err);
  }
  int linked = link(tmp.c_str(), path.c_str());
  err = errno;
  unlink(tmp.c_str());
  if (linked != 0 && err != EEXIST) {  // EEXIST: another process just made it
    return FromErrno("server.token_file: cannot create " + path, err);
  }
  log::Info("created the API token file (clients read it through the config)", {{"path", path}});
  return Status::Ok();
}

// Reads the API token; refuses a file that others can read, or that anyone
// but this user or root owns or may write (it would decide who gets in).
Result<std::string> ReadToken(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return FromErrno("server.token_file " + path);
  if ((st.st_mode & S_IRWXO) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", st.st_mode & 0777);
    return Status(Code::kInvalidArgument, "server.token_file " + path +
                                              " is accessible by other users (mode " + mode +
                                              "); chmod o-rwx it");
  }
  auto file = ReadFileForUser(path, geteuid(), Symlinks::kFollow);
  if (!file.ok()) return Status(file.status().code(), "server.token_file: " + file.status().message());
  if (!file->distrust.empty()) {
    return Status(Code::kInvalidArgument,
                  "server.token_file " + path + " is " + file->distrust + "; refusing it");
  }
  std::string token = file->text;
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.front()))) token.erase(0, 1);
  if (token.empty()) return Status(Code::kInvalidArgument, "server.token_file " + path + " is empty");
  return token;
}

// The signals the daemon handles on its loop. A re-exec blocks them for
// the execve: one sent meanwhile stays pending for the next image.
sigset_t DaemonSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGCHLD}) sigaddset(&set, sig);
  return set;
}

void SetDaemonSignalsBlocked(bool blocked) {
  sigset_t set = DaemonSignals();
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr);
}

// The keys a re-exec cannot change: the handed sockets, the store and its
// lock, the node's lease and the runs' cgroups stay what they are. The
// self-check prints the new config's; a difference refuses the re-exec.
constexpr std::string_view kFixedPrefix = "fixed across re-exec: ";

nlohmann::json FixedAcrossReexec(const Config& c) {
  return {{"store.backend", c.store.backend}, {"store.path", c.store.path},
          {"store.url", c.store.url},         {"cluster.node_id", ResolveNodeId(c.cluster.node_id)},
          {"cgroup.mode", c.cgroup.mode},     {"cgroup.root", c.cgroup.root},
          {"server.listen", c.server.listen}, {"server.unix_socket", c.server.unix_socket}};
}

// The path this binary was started from, read at start: a package upgrade
// replaces the file there (or a deploy moves a symlink), and a re-exec runs
// the new one. argv[0] when it is a path; else (found through PATH) what
// /proc/self/exe names now, which later names the old file, "(deleted)".
std::string OwnExecutablePath(const std::vector<std::string>& argv) {
  if (!argv.empty() && argv[0].find('/') != std::string::npos) {
    if (argv[0][0] == '/') return argv[0];
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) != nullptr) return std::string(cwd) + "/" + argv[0];
  }
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string exe(buf, static_cast<size_t>(n));
  constexpr std::string_view kDeleted = " (deleted)";
  if (exe.ends_with(kDeleted)) exe.resize(exe.size() - kDeleted.size());
  return exe;
}

// Opens the exec helper next to this binary (orchestrator-exec) and hands
// it to the spawner, when only root or this user can change it, its
// directory or any directory above: every job's process execs it as root.
// It is opened once (O_PATH, no symlink) and exec'd through that fd, so the
// file vetted here is the one that runs, even after an upgrade replaces it.
// Otherwise the reason is logged and jobs are spawned from a copy of the
// daemon.
bool OwnedSafely(const struct stat& st) {
  return (st.st_uid == 0 || st.st_uid == geteuid()) && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

// Every directory from `dir` up to "/" can be changed only by root or this
// user; a sticky directory of root's (/tmp) lets nobody else rename what is
// in it.
bool DirsSafe(std::string dir) {
  for (;; dir = dir.substr(0, dir.rfind('/'))) {
    struct stat st {};
    std::string at = dir.empty() ? "/" : dir;
    if (lstat(at.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
        !(OwnedSafely(st) || (st.st_uid == 0 && (st.st_mode & S_ISVTX) != 0))) {
      return false;
    }
    if (dir.empty()) return true;
  }
}

// Why the daemon, root, must not exec the file at `path` (its link and its
// target), or "" when only root or this user can change them.
std::string UnsafeExecutable(const std::string& path) {
  char real[PATH_MAX];
  if (realpath(path.c_str(), real) == nullptr) return std::strerror(errno);
  for (const std::string& p : {path, std::string(real)}) {
    if (!DirsSafe(p.substr(0, p.rfind('/')))) {
      return "a directory above " + p + " may be changed by other users";
    }
  }
  struct stat st {};
  if (stat(real, &st) != 0) return std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return std::string(real) + " is not a regular file";
  if (!OwnedSafely(st)) return std::string(real) + " may be changed by other users";
  return "";
}

void SetUpExecHelper() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return;
  std::string exe(buf, static_cast<size_t>(n));
  std::string dir = exe.substr(0, exe.rfind('/'));
  std::string path = dir + "/orchestrator-exec";
  int fd = open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    log::Warn("exec helper not found; jobs are spawned from a copy of the daemon (slower)",
              {{"path", path}, {"error", std::strerror(errno)}});
    return;
  }
  struct stat st {};
  bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & S_IXUSR) != 0 &&
            OwnedSafely(st) && DirsSafe(dir);
  if (!ok) {
    close(fd);
    log::Warn("exec helper not used: it or a directory above it may be changed by others",
              {{"path", path}});
    return;
  }
  SetExecHelper(fd, path);
}

// One daemon per store: a second one would take the first one's live runs
// for orphans and kill them. The lock lives as long as the process.
Result<int> LockStore(const std::string& db_path) {
  std::string path = db_path + ".lock";
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return FromErrno("lock file " + path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char holder[32] = {0};
    ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
    close(fd);
    if (err == EWOULDBLOCK) {
      std::string pid = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "?";
      while (!pid.empty() && std::isspace(static_cast<unsigned char>(pid.back()))) pid.pop_back();
      return Status(Code::kConflict, "another orchestrator (pid " + pid + ") already serves " +
                                         db_path + " (lock " + path + ")");
    }
    return FromErrno("lock file " + path, err);
  }
  std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The lock holds even when the pid cannot be written.
  }
  return fd;
}

// Opens the store; a PostgreSQL server that cannot be reached (down,
// restarting, network) is waited for with backoff, since nothing runs yet.
// Any other failure (a wrong URL, a refused login, a newer schema) returns.
Result<std::unique_ptr<JobStore>> OpenStoreWaiting(const Config::Store& config,
                                                   const JobStoreOpenOptions& options) {
  int64_t backoff_ms = 250;
  for (;;) {
    auto store = OpenJobStore(config, options);
    if (store.ok() || config.backend != "postgres" ||
        store.status().code() != Code::kUnavailable) {
      return store;
    }
    log::Warn("the store cannot be reached; retrying",
              {{"store", StoreLocation(config)}, {"error", store.status().message()},
               {"retry_in_ms", backoff_ms}});
    // Under systemd (Type=notify) the start may take as long as the
    // database is away: each wait extends the start timeout past it.
    sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%lld\nSTATUS=waiting for the store: %s",
               static_cast<long long>((backoff_ms + 30000) * 1000),
               store.status().message().c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    backoff_ms = std::min<int64_t>(backoff_ms * 2, 10000);
  }
}

class Daemon {
 public:
  Daemon(const LoadedConfig& loaded, const ConfigInputs& inputs, const DaemonArgs& args)
      : config_(loaded.config), inputs_(inputs), args_(args) {}

  int Run();

 private:
  void OnStopSignal(int signum);
  void Reload();
  void Notify(const std::string& state);
  void UpdateStatus();
  // The last step of every stop: the store's pending work is drained.
  void CloseServerAndStore();
  // A start that fails before the server runs: drains the store's threads,
  // closes the loop, and returns the exit status (2).
  int StopBeforeServing();
  // Takes this node's row in the store for `incarnation` (before the store's
  // threads start). While another incarnation's lease on the same node_id
  // is live, waits up to one lease for it to run out (a crashed daemon's
  // does; a running one's is renewed), then refuses. Returns when the
  // request was sent (Clock::BoottimeMs): the lease lasts lease_s from there.
  Result<int64_t> AcquireNode(const std::string& incarnation, const std::string& takes_over);
  // LISTENs for the queue's changes from other nodes (SPEC §11).
  void StartListening();

  // Re-exec in place (SPEC §14): the new binary's self-check first, then
  // claiming stops until nothing is in flight, then the hand-over and the
  // execve. `answer` gets Ok once the self-check passed (the rest happens
  // after the answer is sent), or why the old image goes on.
  void Reexec(std::function<void(Status)> answer);
  void OnPreflightExit(int64_t exit_status, int term_signal);
  void WaitForQuiet();
  void ExecNow();
  void AbandonReexec(const Status& why);
  // This image follows a re-exec: reads what the last one handed over.
  void TakeHandover();

  Config config_;
  ConfigInputs inputs_;
  DaemonArgs args_;
  std::string exe_;
  std::optional<rlimit> original_nofile_;
  int lock_fd_ = -1;
  std::optional<Handover> handed_;  // from the image before this one
  bool handover_lost_ = false;      // started by a re-exec whose hand-over was unreadable
  bool reexec_after_recovery_ = false;  // SIGUSR2 came during start-up recovery
  struct Reexecution {
    std::function<void(Status)> answer;  // until the self-check's verdict
    uv_process_t* preflight = nullptr;   // freed in its close callback
    UniqueFd output;                     // the self-check's stdout and stderr
    UvHandle<uv_timer_t> timer;
    int64_t quiet_wait_from_ms = 0;
    bool signals_blocked = false;
  };
  std::unique_ptr<Reexecution> reexec_;
  UvHandle<uv_timer_t> first_turn_;
  uv_loop_t loop_{};
  Clock clock_;
  Metrics metrics_;
  // Two connections to the store: the writer's and the reader's. From the
  // executor's Start() until its Close() they belong to its threads.
  std::unique_ptr<JobStore> store_, read_store_;
  std::unique_ptr<StoreExecutor> executor_;
  std::unique_ptr<Supervisor> supervisor_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<HttpServer> server_;
  UvHandle<uv_signal_t> sigterm_, sigint_, sighup_, sigusr2_;
  UvHandle<uv_timer_t> status_timer_, watchdog_timer_;
  // PostgreSQL: another node's submits, ends and pauses wake the claim here.
  UvHandle<uv_async_t> queue_changed_;
  std::unique_ptr<PgListener> listener_;
  bool stopping_ = false;
  bool ready_sent_ = false;
  bool status_reading_ = false;
  int exit_code_ = 0;
};

Result<int64_t> Daemon::AcquireNode(const std::string& incarnation, const std::string& takes_over) {
  const int64_t lease_ms = config_.cluster.lease_s * 1000;
  NodeClaim claim{config_.cluster.node_id, incarnation, lease_ms, ORCH_VERSION, takes_over};
  const int64_t give_up = clock_.BoottimeMs() + lease_ms + 2000;
  int64_t backoff_ms = 250;
  bool said = false;
  for (;;) {
    int64_t sent = clock_.BoottimeMs();
    auto got = store_->AcquireNode(claim);
    if (got.ok()) return sent;
    Code code = got.status().code();
    if (code == Code::kConflict && sent < give_up) {
      if (!said) {
        log::Warn("node_id is held; waiting for that lease to run out",
                  {{"node_id", claim.node_id}, {"error", got.status().message()}});
        said = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    if (code == Code::kUnavailable || code == Code::kBusy) {
      log::Warn("cannot take the node's lease yet; retrying",
                {{"node_id", claim.node_id}, {"error", got.status().message()}});
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
      backoff_ms = std::min<int64_t>(backoff_ms * 2, 10000);
      continue;
    }
    if (code == Code::kConflict) {
      return Status(code, got.status().message() + ": another daemon runs with this node_id; "
                                                   "give each host its own cluster.node_id");
    }
    return got.status();
  }
}

void Daemon::StartListening() {
  queue_changed_.Init(uv_async_init, &loop_, this, [](uv_async_t* h) {
    if (h->data != nullptr) static_cast<Daemon*>(h->data)->supervisor_->OnQueueChanged();
  });
  uv_async_t* wake = queue_changed_.get();
  listener_ = std::make_unique<PgListener>(config_.store.url, PgStore::kQueueChannel,
                                           [wake] { uv_async_send(wake); });
  if (Status s = listener_->Start(); !s.ok()) {
    // The reaper tick still claims what other nodes queue, only later.
    log::Warn("not listening for other nodes' changes", {{"error", s.ToString()}});
    listener_.reset();
  }
}

int Daemon::Run() {
  signal(SIGPIPE, SIG_IGN);
  // Until its handler is in place a re-exec request must not kill the
  // daemon (the default action), whatever sends it.
  signal(SIGUSR2, SIG_IGN);
  // The store's threads free and touch again tens of KiB per job: with a
  // fixed trim threshold glibc keeps that memory instead of returning it
  // (madvise) and faulting it back in on every job. Fixing one threshold
  // turns off glibc's tuning of both, so the mmap one is set as well. An
  // operator's own thresholds win.
  const char* tunables = getenv("GLIBC_TUNABLES");
  if (tunables == nullptr || (strstr(tunables, "glibc.malloc.trim_threshold") == nullptr &&
                              strstr(tunables, "glibc.malloc.mmap_threshold") == nullptr)) {
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 4 << 20);
  }
  struct rlimit rl {};
  std::optional<rlimit> original_nofile;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    original_nofile = rl;
    if (rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  bool have_nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0;
  original_nofile_ = original_nofile;
  if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    log::Warn("cannot become a child subreaper; orphaned grandchildren go to init");
  }
  exe_ = OwnExecutablePath(args_.argv);
  if (args_.handover_fd >= 0) TakeHandover();

  // Every running job holds a pidfd, its exec report pipe and its two log
  // files open in the daemon; each connection one socket.
  if (have_nofile && rl.rlim_cur != RLIM_INFINITY) {
    // Connections get what running jobs and the daemon's own files leave.
    constexpr uint64_t kOwnFiles = 64, kMinConnections = 16;
    uint64_t jobs = 4 * static_cast<uint64_t>(config_.supervisor.max_concurrency);
    uint64_t room = rl.rlim_cur > jobs + kOwnFiles ? rl.rlim_cur - jobs - kOwnFiles : 0;
    std::string what = "server.max_connections = " +
                       std::to_string(config_.server.max_connections) +
                       " and supervisor.max_concurrency = " +
                       std::to_string(config_.supervisor.max_concurrency) + " (4 each) need " +
                       std::to_string(config_.server.max_connections + jobs + kOwnFiles) +
                       " file descriptors, but RLIMIT_NOFILE is " + std::to_string(rl.rlim_cur);
    if (room < kMinConnections) {
      log::Error("cannot start: too few file descriptors",
                 {{"error", what + ": lower them or raise the limit (LimitNOFILE= under systemd)"}});
      return 2;
    }
    if (static_cast<uint64_t>(config_.server.max_connections) > room) {
      log::Warn("too few file descriptors: accepting fewer connections",
                {{"error", what}, {"max_connections", room}});
      config_.server.max_connections = static_cast<int64_t>(room);
    }
  }

  std::string token;
  if (config_.server.token_file.empty()) {
    log::Warn("authentication is off (server.token_file = \"\"): every local user and process "
              "that can reach the listener can run commands as this daemon's user");
  } else {
    if (Status made = EnsureToken(config_.server.token_file); !made.ok()) {
      log::Error("cannot start", {{"error", made.message()}});
      return 2;
    }
    auto t = ReadToken(config_.server.token_file);
    if (!t.ok()) {
      log::Error("cannot start", {{"error", t.status().message()}});
      return 2;
    }
    token = *t;
  }
  const std::string store_label = StoreLocation(config_.store);
  const bool shared = config_.store.backend == "postgres";
  if (!shared && handed_ && handed_->lock_fd >= 0) {
    lock_fd_ = handed_->lock_fd;  // held across the exec: never let go
  } else if (!shared) {
    // One daemon per SQLite file; on PostgreSQL the node's lease says it.
    auto lock = LockStore(config_.store.path);
    if (!lock.ok()) {
      log::Error("cannot open the store",
                 {{"path", config_.store.path}, {"error", lock.status().message()}});
      return 2;
    }
    lock_fd_ = *lock;
  }
  auto store = OpenStoreWaiting(config_.store, JobStoreOpenOptions{});
  if (!store.ok()) {
    log::Error("cannot open the store",
               {{"store", store_label}, {"error", store.status().ToString()}});
    return 2;
  }
  store_ = std::move(store.value());
  // A store that opens but cannot take a write (read-only file or mount, full
  // disk) is refused at start; a lock held elsewhere is waited out instead.
  if (Status probe = store_->ProbeWritable();
      !probe.ok() && probe.code() != Code::kBusy && probe.code() != Code::kUnavailable) {
    log::Error("cannot open the store",
               {{"store", store_label}, {"error", probe.ToString()}});
    return 2;
  }
  config_.cluster.node_id = ResolveNodeId(config_.cluster.node_id);
  const std::string incarnation = Supervisor::NewIncarnation();
  // Even without a readable hand-over, the lease is the image before's.
  auto acquired_mono = AcquireNode(incarnation, handed_ ? handed_->incarnation : args_.handover_from);
  if (!acquired_mono.ok()) {
    log::Error("cannot start", {{"node_id", config_.cluster.node_id},
                                {"error", acquired_mono.status().message()}});
    return 2;
  }
  auto read_store = OpenStoreWaiting(config_.store, JobStoreOpenOptions{
                                                        .create = false,
                                                        .background_maintenance = false});
  if (!read_store.ok()) {
    log::Error("cannot open the store",
               {{"store", store_label}, {"error", read_store.status().ToString()}});
    return 2;
  }
  read_store_ = std::move(read_store.value());
  auto boot_id = CurrentBootId();
  if (!boot_id.ok()) {
    log::Error("cannot read the boot id", {{"error", boot_id.status().ToString()}});
    return 2;
  }

  auto cgroups = CgroupTree::SetUp({.mode = config_.cgroup.mode,
                                    .root = config_.cgroup.root,
                                    .after_reexec = args_.handover_fd >= 0});
  if (!cgroups.ok()) {
    log::Error("cannot start", {{"error", cgroups.status().message()}});
    return 2;
  }
  auto containment = std::make_shared<const Containment>(std::move(cgroups).value());
  if (containment->mode() == CgroupMode::kNone) {
    log::Warn("runs are not in cgroups: a process that leaves its job's process group outlives "
              "the job, and per-job limits are refused",
              {{"cgroup_mode", "none"}, {"why", containment->tree().why()}});
  } else {
    log::Info("each run gets its own cgroup",
              {{"cgroup_mode", CgroupModeName(containment->mode())},
               {"cgroup_root", containment->tree().root()}, {"why", containment->tree().why()}});
  }

  SetUpExecHelper();
  uv_loop_init(&loop_);
  StoreExecutor::Options store_options;
  store_options.max_pending_writes = config_.store.max_pending_writes;
  executor_ = std::make_unique<StoreExecutor>(&loop_, store_.get(), read_store_.get(), store_options);
  if (Status started = executor_->Start(); !started.ok()) {
    log::Error("cannot start", {{"error", started.ToString()}});
    executor_.reset();
    uv_loop_close(&loop_);
    return 2;
  }
  supervisor_ = std::make_unique<Supervisor>(&loop_, executor_.get(), config_, &metrics_, &clock_,
                                             incarnation);
  supervisor_->SetLeaseAcquired(*acquired_mono);
  supervisor_->SetContainment(std::move(containment));
  if (original_nofile) supervisor_->SetJobFileLimit(*original_nofile);
  Status init = supervisor_->Init();
  if (!init.ok()) {
    log::Error("cannot start", {{"error", init.message()}});
    return StopBeforeServing();
  }
  // The address the daemon listens on is a name of it too (a client that
  // dials 10.0.0.5:8080 says so in Host); rebinding always needs a DNS name.
  std::vector<std::string> allowed_hosts = config_.server.allowed_hosts;
  if (const std::string& l = config_.server.listen; !l.empty()) {
    std::string host = l.substr(0, l.rfind(':'));
    if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
    if (host != "0.0.0.0" && host != "::") allowed_hosts.push_back(host);
  }
  api_ = std::make_unique<Api>(executor_.get(), supervisor_.get(), &metrics_, &clock_, token, *boot_id,
                               allowed_hosts);
  HttpServer::Options opts = HttpServer::Options::FromConfig(config_.server);
  opts.admit = [this](const HttpRequest& head) { return api_->Admit(head); };
  if (!config_.server.unix_socket_group.empty()) {
    struct group* gr = getgrnam(config_.server.unix_socket_group.c_str());
    if (gr == nullptr) {
      log::Error("cannot start", {{"error", "server.unix_socket_group: no such group \"" +
                                               config_.server.unix_socket_group + "\""}});
      return StopBeforeServing();
    }
    opts.unix_socket_gid = gr->gr_gid;
  }
  opts.on_protocol_error = [this](int status) {
    ++metrics_.http_requests_total[{"protocol_error", status}];
  };
  auto handle = [this](HttpRequest req, HttpResponder respond) {
    api_->Handle(req, std::move(respond));
  };
  server_ = std::make_unique<HttpServer>(&loop_, opts, std::move(handle));
  Status listening = handed_ ? server_->Adopt(handed_->sockets) : server_->Start();
  if (!listening.ok()) {
    log::Error("cannot listen", {{"listen", config_.server.listen},
                                 {"unix_socket", config_.server.unix_socket},
                                 {"error", listening.ToString()}});
    exit_code_ = 2;
    stopping_ = true;
    supervisor_->Shutdown([this] { CloseServerAndStore(); });
  } else {
    if (!server_->BoundAddress().empty()) {
      log::Info("listening", {{"address", "http://" + server_->BoundAddress()}});
    }
    if (!config_.server.unix_socket.empty()) {
      log::Info("listening", {{"unix_socket", config_.server.unix_socket}});
    }
    log::Info("orchestrator started",
              {{"version", ORCH_VERSION}, {"pid", static_cast<int64_t>(getpid())},
               {"incarnation", supervisor_->incarnation()}, {"store", store_label},
               {"node_id", config_.cluster.node_id},
               {"max_concurrency", config_.supervisor.max_concurrency}});
    if (handed_) {
      metrics_.handovers_total = handed_->handovers;
      supervisor_->AdoptHanded(std::move(handed_->runs), handed_->incarnation);
      handed_->runs.clear();
    } else if (handover_lost_) {
      supervisor_->KeepZombiesUntilRecovered();
    }
    // Recovery may kill orphans: only once this daemon is sure to run.
    supervisor_->Start();
    if (shared) StartListening();

    auto on_stop = [](uv_signal_t* h, int signum) {
      if (h->data != nullptr) static_cast<Daemon*>(h->data)->OnStopSignal(signum);
    };
    sigterm_.Init(uv_signal_init, &loop_, this);
    uv_signal_start(sigterm_.get(), on_stop, SIGTERM);
    sigint_.Init(uv_signal_init, &loop_, this);
    uv_signal_start(sigint_.get(), on_stop, SIGINT);
    sighup_.Init(uv_signal_init, &loop_, this);
    uv_signal_start(
        sighup_.get(),
        [](uv_signal_t* h, int) {
          if (h->data != nullptr) static_cast<Daemon*>(h->data)->Reload();
        },
        SIGHUP);
    sigusr2_.Init(uv_signal_init, &loop_, this);
    uv_signal_start(
        sigusr2_.get(),
        [](uv_signal_t* h, int) {
          if (h->data == nullptr) return;
          auto* self = static_cast<Daemon*>(h->data);
          log::Info("re-exec requested", {{"signal", "SIGUSR2"}});
          if (!self->supervisor_->recovered()) {
            // Two upgrades in a row: the second waits for the first to settle.
            log::Info("re-exec: it follows once start-up recovery is done");
            self->reexec_after_recovery_ = true;
            return;
          }
          self->Reexec(nullptr);
        },
        SIGUSR2);
    api_->SetReexec([this](std::function<void(Status)> answer) { Reexec(std::move(answer)); });
    if (handed_) {
      // The first loop turn of this image: how long the loop stood still.
      first_turn_.Init(uv_timer_init, &loop_, this);
      uv_timer_start(
          first_turn_.get(),
          [](uv_timer_t* h) {
            if (h->data == nullptr) return;
            auto* self = static_cast<Daemon*>(h->data);
            double pause_s =
                static_cast<double>(MonotonicNs() - self->handed_->stopped_mono_ns) / 1e9;
            self->metrics_.last_handover_pause_s = pause_s;
            log::Info("re-exec done: the new image runs",
                      {{"from_incarnation", self->handed_->incarnation},
                       {"incarnation", self->supervisor_->incarnation()},
                       {"runs", static_cast<int64_t>(self->supervisor_->running_count())},
                       {"pause_ms", pause_s * 1000.0}});
            self->first_turn_.Close();
          },
          0, 0);
    }

    status_timer_.Init(uv_timer_init, &loop_, this);
    uv_timer_start(
        status_timer_.get(),
        [](uv_timer_t* h) {
          if (h->data != nullptr) static_cast<Daemon*>(h->data)->UpdateStatus();
        },
        0, 1000);
    uint64_t watchdog_usec = 0;
    if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
      watchdog_timer_.Init(uv_timer_init, &loop_, this);
      uint64_t every_ms = std::max<uint64_t>(watchdog_usec / 2000, 1);
      uv_timer_start(
          watchdog_timer_.get(),
          [](uv_timer_t* h) {
            if (h->data != nullptr) static_cast<Daemon*>(h->data)->Notify("WATCHDOG=1");
          },
          every_ms, every_ms);
    }
  }

  // Blocked across a re-exec's execve (or never): every handler is in place.
  SetDaemonSignalsBlocked(false);
  uv_run(&loop_, UV_RUN_DEFAULT);
  supervisor_.reset();
  server_.reset();
  api_.reset();
  executor_.reset();
  read_store_.reset();
  store_.reset();
  // Anything still open is a leak; run the loop dry so close callbacks free it.
  uv_walk(&loop_, [](uv_handle_t* h, void*) {
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  }, nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  if (exit_code_ == 0) log::Info("stopped cleanly");
  return exit_code_;
}

void Daemon::Notify(const std::string& state) { sd_notify(0, state.c_str()); }

void Daemon::UpdateStatus() {
  if (reexec_after_recovery_ && supervisor_->recovered()) {
    reexec_after_recovery_ = false;
    Reexec(nullptr);
  }
  if (!ready_sent_ && supervisor_->recovered()) {
    ready_sent_ = true;
    Notify("READY=1");
    // Start-up (config, CLI, TOML, migrations, recovery) touched code that
    // serving never runs. Safe with the other threads running because none
    // of them maps or unmaps a read-only file (no dlopen, no file mmap):
    // keep it so, or move this before they start.
    ReleaseCleanFilePages();
  }
  if (status_reading_) return;  // the store has not answered the last one
  status_reading_ = true;
  executor_->Read([](JobStore& store) { return store.Counts(); },
                  [this](Result<QueueCounts> counts) {
                    status_reading_ = false;
                    if (!counts.ok() || stopping_) return;
                    char buf[160];
                    std::snprintf(buf, sizeof buf, "STATUS=%lld running, %lld queued%s",
                                  static_cast<long long>(counts->running),
                                  static_cast<long long>(counts->queued),
                                  supervisor_->paused() ? " (paused)" : "");
                    Notify(buf);
                  });
}

int Daemon::StopBeforeServing() {
  executor_->Close([] {});
  uv_run(&loop_, UV_RUN_DEFAULT);
  supervisor_.reset();
  executor_.reset();
  uv_loop_close(&loop_);
  return 2;
}

void Daemon::TakeHandover() {
  int fd = args_.handover_fd;
  auto handed = ReadHandover(fd);
  close(fd);
  if (handed.ok()) {
    for (int kept : handed->Fds()) (void)SetCloseOnExec(kept, true);
    handed_ = std::move(handed).value();
    log::Info("taking over from the image before the re-exec",
              {{"from_incarnation", handed_->incarnation},
               {"runs", static_cast<int64_t>(handed_->runs.size())},
               {"connections", static_cast<int64_t>(handed_->sockets.connections.size())}});
    return;
  }
  // Whatever it kept open is unknown: closed, so the listener can be bound
  // again. The runs are still our children; recovery finds them by identity.
  log::Error(
      "the hand-over from the image before the re-exec cannot be read; "
      "recovering its runs by their identity",
      {{"error", handed.status().ToString()}});
  close_range(3, ~0U, 0);
  handover_lost_ = true;
}

void Daemon::Reexec(std::function<void(Status)> answer) {
  auto refuse = [&answer](Status why) {
    log::Warn("re-exec refused", {{"error", why.message()}});
    if (answer) answer(std::move(why));
  };
  if (stopping_) return refuse(Status(Code::kUnavailable, "the daemon is stopping"));
  if (reexec_) return refuse(Status(Code::kConflict, "a re-exec is already under way"));
  if (!supervisor_->recovered()) {
    return refuse(Status(Code::kUnavailable, "start-up recovery is not done yet"));
  }
  if (exe_.empty()) {
    return refuse(Status(Code::kInternal, "the daemon's own executable path is unknown"));
  }
  if (std::string unsafe = UnsafeExecutable(exe_); !unsafe.empty()) {
    return refuse(Status(Code::kInvalidArgument, "will not exec " + exe_ + ": " + unsafe));
  }
  reexec_ = std::make_unique<Reexecution>();
  reexec_->answer = std::move(answer);
  reexec_->output = UniqueFd(memfd_create("orchestrator-self-check", MFD_CLOEXEC));
  if (!reexec_->output.valid()) return AbandonReexec(FromErrno("memfd for the self-check"));

  // The same command line, on the binary now at the same path.
  std::vector<std::string> args = args_.argv;
  if (args.empty()) args.push_back(exe_);
  args.push_back("--self-check");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  for (int i : {1, 2}) {
    stdio[i].flags = UV_INHERIT_FD;
    stdio[i].data.fd = reexec_->output.get();
  }
  uv_process_options_t options{};
  options.file = exe_.c_str();
  options.args = argv.data();
  options.stdio = stdio;
  options.stdio_count = 3;
  options.exit_cb = [](uv_process_t* p, int64_t exit_status, int term_signal) {
    auto* self = static_cast<Daemon*>(p->data);
    self->supervisor_->ForgetChild(p->pid);
    uv_close(reinterpret_cast<uv_handle_t*>(p),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_process_t*>(h); });
    if (self->reexec_ && self->reexec_->preflight == p) {
      self->reexec_->preflight = nullptr;
      self->OnPreflightExit(exit_status, term_signal);
    }
  };
  auto* process = new uv_process_t;
  process->data = this;
  int rc = uv_spawn(&loop_, process, &options);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(process),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_process_t*>(h); });
    return AbandonReexec(Status(Code::kInvalidArgument,
                                "cannot run the new binary " + exe_ + ": " + uv_strerror(rc)));
  }
  supervisor_->LeaveChild(process->pid);
  reexec_->preflight = process;
  log::Info("re-exec: checking the new binary", {{"exe", exe_}});
  reexec_->timer.Init(uv_timer_init, &loop_, this);
  uv_timer_start(
      reexec_->timer.get(),
      [](uv_timer_t* h) {
        auto* self = static_cast<Daemon*>(h->data);
        if (self == nullptr || !self->reexec_ || self->reexec_->preflight == nullptr) return;
        log::Warn("re-exec: the self-check of the new binary takes too long; killing it");
        uv_process_kill(self->reexec_->preflight, SIGKILL);
      },
      30000, 0);
}

void Daemon::OnPreflightExit(int64_t exit_status, int term_signal) {
  if (stopping_) return AbandonReexec(Status(Code::kUnavailable, "the daemon is stopping"));
  std::string output(16384, '\0');
  ssize_t n = pread(reexec_->output.get(), output.data(), output.size(), 0);
  output.resize(n > 0 ? static_cast<size_t>(n) : 0);
  while (!output.empty() && std::isspace(static_cast<unsigned char>(output.back()))) {
    output.pop_back();
  }
  if (exit_status != 0 || term_signal != 0) {
    std::string how = term_signal != 0 ? "was killed by signal " + std::to_string(term_signal)
                                       : "exited with status " + std::to_string(exit_status);
    return AbandonReexec(
        Status(Code::kInvalidArgument, "the new binary " + exe_ + " failed its self-check (it " +
                                           how + (output.empty() ? ")" : "): " + output)));
  }
  reexec_->output.Reset();
  size_t at = output.find(kFixedPrefix);
  nlohmann::json theirs =
      at == std::string::npos
          ? nlohmann::json()
          : nlohmann::json::parse(output.substr(at + kFixedPrefix.size(),
                                                output.find('\n', at) - at - kFixedPrefix.size()),
                                  nullptr, false);
  if (!theirs.is_object()) {
    return AbandonReexec(Status(Code::kInvalidArgument,
                                "the new binary " + exe_ +
                                    " did not say which config it would run with (a version "
                                    "without re-exec in place?); restart the service instead"));
  }
  std::string changed;
  const nlohmann::json ours = FixedAcrossReexec(config_);
  for (auto it = ours.begin(); it != ours.end(); ++it) {
    std::string now = theirs.contains(it.key()) ? theirs[it.key()].dump() : "none";
    if (now != it.value().dump()) {
      changed += (changed.empty() ? "" : ", ") + it.key() + " " + it.value().dump() + " -> " + now;
    }
  }
  if (!changed.empty()) {
    return AbandonReexec(Status(Code::kInvalidArgument,
                                "the config changes keys a re-exec keeps as they are (" + changed +
                                    "); restart the service to apply them"));
  }
  if (auto answer = std::move(reexec_->answer)) answer(Status::Ok());
  reexec_->answer = nullptr;
  log::Info("re-exec: the new binary passed its self-check; waiting for the runs to settle",
            {{"exe", exe_}, {"running", static_cast<int64_t>(supervisor_->running_count())}});
  supervisor_->BeginHandover();
  server_->HoldRequests(true);
  reexec_->quiet_wait_from_ms = clock_.MonotonicMs();
  uv_timer_start(
      reexec_->timer.get(),
      [](uv_timer_t* h) {
        if (h->data != nullptr) static_cast<Daemon*>(h->data)->WaitForQuiet();
      },
      0, 2);
}

void Daemon::WaitForQuiet() {
  if (stopping_) return AbandonReexec(Status(Code::kUnavailable, "the daemon is stopping"));
  // Connections busy this long (a slow reader) are cut by the exec; runs
  // and store writes are always waited for.
  constexpr int64_t kConnectionWaitMs = 5000, kGiveUpMs = 60000;
  int64_t waited = clock_.MonotonicMs() - reexec_->quiet_wait_from_ms;
  bool quiet = supervisor_->Quiet() && executor_->writes_in_flight() == 0 &&
               (server_->Quiet() || waited >= kConnectionWaitMs);
  if (!quiet) {
    if (reexec_->signals_blocked) {
      SetDaemonSignalsBlocked(false);
      reexec_->signals_blocked = false;
    }
    if (waited >= kGiveUpMs) {
      AbandonReexec(Status(Code::kUnavailable,
                           "the runs and the store did not settle within 60 s (launches, "
                           "run ends or store writes kept going)"));
    }
    return;
  }
  if (!reexec_->signals_blocked) {
    // One more turn: a signal caught before the block is handled in it.
    SetDaemonSignalsBlocked(true);
    reexec_->signals_blocked = true;
    return;
  }
  ExecNow();
}

void Daemon::ExecNow() {
  Handover h;
  h.incarnation = supervisor_->incarnation();
  h.handovers = metrics_.handovers_total + 1;
  h.lock_fd = lock_fd_;
  h.sockets = server_->Hand();
  h.runs = supervisor_->HandRuns();
  h.stopped_mono_ns = MonotonicNs();
  std::string text = EncodeHandover(h);
  if (const char* hook = TestHookValue("ORCH_TEST_HANDOVER");
      hook != nullptr && std::string(hook) == "corrupt") {
    text.resize(text.size() / 2);
  }
  auto memfd = WriteHandover(text);
  if (!memfd.ok()) return AbandonReexec(memfd.status());
  std::vector<int> fds = h.Fds();
  fds.push_back(memfd->get());
  auto keep_all = [&fds](bool keep) {
    Status first;
    for (int fd : fds) {
      Status s = SetCloseOnExec(fd, !keep);
      if (!s.ok() && first.ok()) first = s;
    }
    return first;
  };
  if (Status kept = keep_all(true); !kept.ok()) {
    (void)keep_all(false);
    return AbandonReexec(kept);
  }
  std::vector<std::string> args = args_.argv;
  if (args.empty()) args.push_back(exe_);
  args.push_back("--handover-fd=" + std::to_string(memfd->get()));
  args.push_back("--handover-from=" + h.incarnation);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  log::Info("re-exec: handing over",
            {{"exe", exe_},
             {"runs", static_cast<int64_t>(h.runs.size())},
             {"connections", static_cast<int64_t>(h.sockets.connections.size())}});
  if (const char* hook = TestHookValue("ORCH_TEST_HANDOVER_DELAY_MS"); hook != nullptr) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoll(hook)));
  }
  // The next image raises it again; jobs get the limit the daemon started with.
  struct rlimit raised {};
  bool lowered = original_nofile_ && getrlimit(RLIMIT_NOFILE, &raised) == 0 &&
                 setrlimit(RLIMIT_NOFILE, &*original_nofile_) == 0;
  execve(exe_.c_str(), argv.data(), environ);
  Status failed = FromErrno("execve " + exe_);
  if (lowered) setrlimit(RLIMIT_NOFILE, &raised);
  (void)keep_all(false);
  AbandonReexec(failed);
}

void Daemon::AbandonReexec(const Status& why) {
  if (!reexec_) return;
  log::Error("re-exec abandoned; this image goes on", {{"error", why.message()}});
  if (auto answer = std::move(reexec_->answer)) answer(why);
  if (reexec_->signals_blocked) SetDaemonSignalsBlocked(false);
  if (reexec_->preflight != nullptr) uv_process_kill(reexec_->preflight, SIGKILL);
  supervisor_->CancelHandover();
  server_->HoldRequests(false);
  reexec_.reset();
}

void Daemon::CloseServerAndStore() {
  server_->Close([this] {
    // Every run end is handed over by now; what the store still holds is
    // written before the daemon exits.
    executor_->Close([this] {
      sigterm_.Close();
      sigint_.Close();
      sighup_.Close();
      sigusr2_.Close();
    });
  });
}

void Daemon::OnStopSignal(int signum) {
  if (stopping_) {
    log::Info("already stopping", {{"signal", signum}});
    return;
  }
  stopping_ = true;
  log::Info("stop requested", {{"signal", signum}});
  AbandonReexec(Status(Code::kUnavailable, "a stop was requested"));
  Notify("STOPPING=1");
  status_timer_.Close();
  watchdog_timer_.Close();
  if (listener_) listener_->Stop();
  queue_changed_.Close();
  supervisor_->Shutdown([this] { CloseServerAndStore(); });
}

void Daemon::Reload() {
  Notify("RELOADING=1");
  LoadedConfig next = LoadConfig(inputs_);
  if (!next.ok()) {
    for (const auto& e : next.errors) log::Error("reload rejected", {{"error", e}});
    Notify("READY=1");
    return;
  }
  for (const auto& key : ConfigKeys()) {
    std::string before = ConfigValueText(config_, key.name);
    std::string after = ConfigValueText(next.config, key.name);
    if (before == after) continue;
    if (key.reloadable) {
      log::Info("config changed", {{"key", key.name}, {"from", before}, {"to", after}});
    } else {
      log::Warn("config change needs a restart; ignored",
                {{"key", key.name}, {"from", before}, {"to", after}});
    }
  }
  config_ = ApplyReloadable(config_, next.config);
  (void)log::Setup(config_.log.level, config_.log.format);
  supervisor_->ApplyConfig(config_);
  Notify("READY=1");
}

}  // namespace

int RunDaemon(const LoadedConfig& loaded, const ConfigInputs& inputs, const DaemonArgs& args) {
  Daemon daemon(loaded, inputs, args);
  return daemon.Run();
}

int SelfCheck(const LoadedConfig& loaded, std::ostream& out, std::ostream& err) {
  const Config& config = loaded.config;
  auto fail = [&err](const std::string& what) {
    err << "self-check failed: " << what << "\n";
    return 2;
  };
  auto store = CheckStoreSchema(config.store);
  if (!store.ok()) return fail(store.status().message());
  if (!config.server.token_file.empty()) {
    struct stat st {};
    if (stat(config.server.token_file.c_str(), &st) == 0) {
      if (auto token = ReadToken(config.server.token_file); !token.ok()) {
        return fail(token.status().message());
      }
    }
  }
  if (const std::string& run_as = config.supervisor.run_as; !run_as.empty()) {
    size_t colon = run_as.find(':');
    std::string user = run_as.substr(0, colon);
    if (getpwnam(user.c_str()) == nullptr) {
      return fail("supervisor.run_as: no such user \"" + user + "\"");
    }
    if (colon != std::string::npos && getgrnam(run_as.substr(colon + 1).c_str()) == nullptr) {
      return fail("supervisor.run_as: no such group \"" + run_as.substr(colon + 1) + "\"");
    }
  }
  if (const std::string& g = config.server.unix_socket_group; !g.empty() && !getgrnam(g.c_str())) {
    return fail("server.unix_socket_group: no such group \"" + g + "\"");
  }
  out << "self-check passed: orchestrator " << ORCH_VERSION << ", " << *store << "\n"
      << kFixedPrefix << FixedAcrossReexec(config).dump() << "\n";
  return 0;
}

}  // namespace orch
