#include "integration/daemon_harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

extern char** environ;

namespace orch::test {
namespace {

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

}  // namespace

std::string HttpResult::Header(std::string name) const {
  std::string lower = headers;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t at = lower.find("\n" + name + ":");
  if (at == std::string::npos) return "";
  size_t start = headers.find_first_not_of(' ', at + name.size() + 2);
  return headers.substr(start, headers.find_first_of("\r\n", start) - start);
}

HttpResult HttpCall(const std::string& method, const std::string& url, const std::string& body,
                    const std::vector<std::string>& headers) {
  HttpResult r;
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, Append);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  if (method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (method == "POST" || method == "PUT") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  if (list != nullptr) curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(list);
  curl_easy_cleanup(c);
  return r;
}

int ConnectTcp(const std::string& address) {
  size_t colon = address.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

std::string ReadUntilClosed(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) out += "TIMEOUT";
    return out;
  }
}

Daemon::Daemon(const TempDir& dir, std::string extra_toml, std::vector<std::string> env)
    : dir_(dir), env_(std::move(env)) {
  config_path_ = dir.File("orchestrator.toml");
  log_path_ = dir.File("daemon.log");
  // extra_toml's keys win over the base; sections are merged line by line
  // (test configs are plain "[section]" and "key = value" lines).
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> sections = {
      {"server", {{"listen", "\"127.0.0.1:0\""}}},
      {"store", {{"path", "\"q.db\""}}},
      {"reaper", {{"interval_ms", "100"}}},
      {"log", {{"level", "\"debug\""}}}};
  // Each daemon its own tree of run cgroups: they lock it.
  cgroup_root_ = TestCgroupRoot(dir);
  if (!cgroup_root_.empty()) sections.push_back({"cgroup", {{"root", "\"" + cgroup_root_ + "\""}}});
  std::string section;
  size_t pos = 0;
  while (pos < extra_toml.size()) {
    size_t nl = extra_toml.find('\n', pos);
    if (nl == std::string::npos) nl = extra_toml.size();
    std::string line = extra_toml.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.empty()) continue;
    if (line.front() == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    size_t eq = line.find(" = ");
    std::string key = line.substr(0, eq), value = line.substr(eq + 3);
    auto sec = std::find_if(sections.begin(), sections.end(),
                            [&](const auto& s) { return s.first == section; });
    if (sec == sections.end()) sec = sections.insert(sections.end(), {section, {}});
    auto kv = std::find_if(sec->second.begin(), sec->second.end(),
                           [&](const auto& p) { return p.first == key; });
    if (kv == sec->second.end()) {
      sec->second.emplace_back(key, value);
    } else {
      kv->second = value;
    }
  }
  std::string text;
  for (const auto& [name, keys] : sections) {
    text += "[" + name + "]\n";
    for (const auto& [k, v] : keys) text += k + " = " + v + "\n";
  }
  WriteFile(config_path_, text);
}

Daemon::~Daemon() {
  // A graceful stop ends the jobs too (Kill9 would leave them as orphans).
  if (pid_ > 0) Stop(SIGTERM, std::chrono::seconds(30));
  // What a daemon killed with -9 left running dies with its cgroups.
  DestroyCgroupTree(cgroup_root_);
}

void Daemon::SetEnv(std::vector<std::string> env) { env_ = std::move(env); }

std::string Daemon::Token() const {
  std::string t = ReadFile(token_file_.empty() ? dir_.File("var/token") : token_file_);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  return t;
}

std::vector<std::string> Daemon::Auth() const {
  std::string t = Token();
  if (t.empty()) return {};
  return {"Authorization: Bearer " + t};
}

bool Daemon::Start(const std::vector<std::string>& wrapper) {
  wrapped_ = !wrapper.empty();
  std::vector<std::string> args = wrapper;
  args.insert(args.end(), {binary_, "serve", "--config", config_path_});
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "ORCH_", 5) != 0 && std::strncmp(*e, "NOTIFY_SOCKET=", 14) != 0) {
      env_store.emplace_back(*e);
    }
  }
  // Also for configs the harness did not write (UseBinary); an env_ entry wins.
  bool root_given = std::any_of(env_.begin(), env_.end(), [](const std::string& e) {
    return e.rfind("ORCH_CGROUP_ROOT=", 0) == 0;
  });
  if (!cgroup_root_.empty() && !root_given) env_store.push_back("ORCH_CGROUP_ROOT=" + cgroup_root_);
  for (const auto& e : env_) env_store.push_back(e);
  // Offsets into the log so that a restart waits for its own "listening" line.
  size_t log_offset = ReadFile(log_path_).size();
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    rlimit no_core{0, 0};  // kill-point tests abort() on purpose
    setrlimit(RLIMIT_CORE, &no_core);
    // A test killed half-way (timeout, crash) must not leave its daemon behind.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env_store) envp.push_back(e.data());
    envp.push_back(nullptr);
    execvpe(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  bool exited = false;
  bool up = WaitFor(
      [&] {
        // A daemon that refused to start is not waited for (and is left
        // for WaitExit to reap).
        siginfo_t info{};
        if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == pid_) {
          exited = true;
          return true;
        }
        std::string log = ReadFile(log_path_).substr(log_offset);
        size_t at = log.find("address=http://");
        if (at == std::string::npos) return false;
        size_t start = at + std::strlen("address=http://");
        address_ = log.substr(start, log.find_first_of(" \n", start) - start);
        return true;
      },
      std::chrono::seconds(20));
  if (!up || exited) return false;
  return WaitFor([&] { return Get("/readyz").status == 200; }, std::chrono::seconds(20));
}

pid_t Daemon::DaemonPid() const {
  if (!wrapped_) return pid_;
  // unshare --fork ignores SIGTERM itself: the daemon is its only child.
  std::string kids = ReadFile("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) +
                              "/children");
  return kids.empty() ? pid_ : std::stoi(kids);
}

int Daemon::WaitExit(std::chrono::seconds timeout) {
  if (pid_ <= 0) return -1;
  int status = 0;
  bool done = WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; },
                      std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
  if (!done) return -1;
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int Daemon::Stop(int sig, std::chrono::seconds timeout) {
  if (pid_ <= 0) return -1;
  kill(DaemonPid(), sig);
  int status = 0;
  bool done = WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; },
                      std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
  if (!done) {
    Kill9();
    return -1;
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void Daemon::Kill9() {
  if (pid_ <= 0) return;
  // Inside unshare the daemon dies a moment after the wrapper (PDEATHSIG):
  // wait for the daemon itself so that a restart never races its lock.
  int daemon_fd = wrapped_ ? static_cast<int>(syscall(SYS_pidfd_open, DaemonPid(), 0)) : -1;
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  if (daemon_fd >= 0) {
    pollfd p{daemon_fd, POLLIN, 0};
    poll(&p, 1, 10000);
    close(daemon_fd);
  }
  pid_ = -1;
}

int64_t Daemon::Submit(const nlohmann::json& spec) const {
  HttpResult r = Post("/jobs", spec.dump());
  if (r.status != 201 && r.status != 200) return -1;
  auto j = r.Json();
  return j.is_object() && j.contains("id") ? j["id"].get<int64_t>() : -1;
}

bool Daemon::WaitStatus(int64_t id, const std::string& status,
                        std::chrono::milliseconds timeout) const {
  return WaitFor(
      [&] {
        auto j = Job(id);
        // "running" as a test means it: claimed, and its process recorded.
        return j.is_object() && j.value("status", "") == status &&
               (status != "running" || j["pid"].is_number_integer());
      },
      timeout);
}

pid_t FindInNamespace(pid_t ns_pid, const std::string& marker) {
  DIR* d = opendir("/proc");
  pid_t found = -1;
  while (dirent* e = readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    std::string base = std::string("/proc/") + e->d_name;
    std::string cmd = test::ReadFile(base + "/cmdline");
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find(marker) == std::string::npos) continue;
    std::string status = test::ReadFile(base + "/status");
    size_t at = status.find("NSpid:");
    if (at == std::string::npos) continue;
    std::string line = status.substr(at, status.find('\n', at) - at);
    if (std::stoi(line.substr(line.find_last_of(" \t") + 1)) == ns_pid) found = std::stoi(e->d_name);
  }
  closedir(d);
  return found;
}

bool HasChildren(pid_t pid) {
  std::string kids =
      ReadFile("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  return kids.find_first_not_of(" \n") != std::string::npos;
}

size_t CountLines(const std::string& path) {
  std::string s = ReadFile(path);
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

std::string Sql(const std::string& db, const std::string& sql) {
  return RunCommand({"sqlite3", "-cmd", ".timeout 5000", db, sql}).out;
}

}  // namespace orch::test
