#include "supervisor/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>
#include <sstream>

#include "supervisor/pidfd.h"

namespace orch {
namespace {

constexpr long kCgroup2Magic = 0x63677270;  // CGROUP2_SUPER_MAGIC
constexpr const char* kWantedControllers[] = {"cpu", "memory", "pids"};

Result<std::string> ReadAt(int dirfd, const char* name) {
  UniqueFd fd(openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return FromErrno(std::string("open ") + name);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FromErrno(std::string("read ") + name);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// `err` gets the errno of a failure (0 on success).
Status WriteAt(int dirfd, const char* name, const std::string& text, int* err = nullptr) {
  UniqueFd fd(openat(dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  ssize_t n = -1;
  if (fd.valid()) {
    do {
      n = write(fd.get(), text.data(), text.size());
    } while (n < 0 && errno == EINTR);
  }
  if (err != nullptr) *err = n < 0 ? errno : 0;
  if (!fd.valid()) return FromErrno(std::string("open ") + name);
  if (n < 0) return FromErrno(std::string("write ") + name + " \"" + text + "\"");
  return Status::Ok();
}

Result<std::string> ReadPath(const std::string& path) { return ReadAt(AT_FDCWD, path.c_str()); }

// The value after `key ` on its own line of a flat-keyed file (cpu.stat).
std::optional<int64_t> KeyedValue(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string k;
  int64_t v;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return std::nullopt;
}

std::optional<int64_t> SingleValue(int dirfd, const char* name) {
  auto text = ReadAt(dirfd, name);
  if (!text.ok()) return std::nullopt;
  try {
    return std::stoll(*text);
  } catch (...) {
    return std::nullopt;
  }
}

std::vector<std::string> Words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto octal = [&](size_t j) { return j < s.size() && s[j] >= '0' && s[j] <= '7'; };
    if (s[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

Status MkdirAll(const std::string& path) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    std::string part = path.substr(0, pos);
    if (mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) return FromErrno("mkdir " + part);
  }
  return Status::Ok();
}

}  // namespace

const char* CgroupModeName(CgroupMode mode) {
  switch (mode) {
    case CgroupMode::kFull:
      return "full";
    case CgroupMode::kTracking:
      return "tracking";
    case CgroupMode::kNone:
      break;
  }
  return "none";
}

std::optional<Cgroup2Mount> FindCgroup2Mount(std::string_view mountinfo) {
  size_t pos = 0;
  while (pos < mountinfo.size()) {
    size_t end = mountinfo.find('\n', pos);
    if (end == std::string_view::npos) end = mountinfo.size();
    std::string_view line = mountinfo.substr(pos, end - pos);
    pos = end + 1;
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    size_t dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    std::string_view after = line.substr(dash + 3);
    if (after.substr(0, after.find(' ')) != "cgroup2") continue;
    std::vector<std::string_view> fields;
    size_t p = 0;
    while (p < dash && fields.size() < 5) {
      size_t sp = line.find(' ', p);
      if (sp == std::string_view::npos || sp > dash) sp = dash;
      fields.push_back(line.substr(p, sp - p));
      p = sp + 1;
    }
    if (fields.size() == 5) return Cgroup2Mount{Unescape(fields[4]), Unescape(fields[3])};
  }
  return std::nullopt;
}

std::optional<std::string> Cgroup2Mount::DirOf(const std::string& cgroup) const {
  if (root == "/") return point + (cgroup == "/" ? "" : cgroup);
  if (cgroup == root) return point;
  if (cgroup.size() > root.size() && cgroup.compare(0, root.size(), root) == 0 &&
      cgroup[root.size()] == '/') {
    return point + cgroup.substr(root.size());
  }
  return std::nullopt;
}

std::optional<std::string> OwnCgroup2Path(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.substr(0, 3) == "0::") return std::string(line.substr(3));
  }
  return std::nullopt;
}

CgroupUsage ReadCgroupUsage(int dirfd, bool memory) {
  CgroupUsage u;
  if (auto stat = ReadAt(dirfd, "cpu.stat"); stat.ok()) u.cpu_usec = KeyedValue(*stat, "usage_usec");
  if (!memory) return u;
  u.mem_peak_bytes = SingleValue(dirfd, "memory.peak");
  u.mem_bytes = SingleValue(dirfd, "memory.current");
  if (auto events = ReadAt(dirfd, "memory.events"); events.ok()) {
    u.oom_kills = KeyedValue(*events, "oom_kill");
  }
  return u;
}

Status WriteCgroupLimits(int dirfd, const CgroupLimits& limits) {
  if (limits.memory_max) {
    ORCH_RETURN_IF_ERROR(WriteAt(dirfd, "memory.max", std::to_string(*limits.memory_max)));
  }
  if (limits.cpu_max) {
    constexpr int64_t kPeriodUs = 100000;
    auto quota = std::max<int64_t>(1000, std::llround(*limits.cpu_max * kPeriodUs));
    ORCH_RETURN_IF_ERROR(
        WriteAt(dirfd, "cpu.max", std::to_string(quota) + " " + std::to_string(kPeriodUs)));
  }
  if (limits.pids_max) {
    ORCH_RETURN_IF_ERROR(WriteAt(dirfd, "pids.max", std::to_string(*limits.pids_max)));
  }
  return Status::Ok();
}

Result<bool> CgroupPopulated(int dirfd) {
  ORCH_ASSIGN_OR_RETURN(std::string events, ReadAt(dirfd, "cgroup.events"));
  auto populated = KeyedValue(events, "populated");
  if (!populated) return Status(Code::kCorrupt, "cgroup.events has no populated line");
  return *populated != 0;
}

Result<std::vector<pid_t>> CgroupProcs(int dirfd) {
  ORCH_ASSIGN_OR_RETURN(std::string text, ReadAt(dirfd, "cgroup.procs"));
  std::vector<pid_t> pids;
  std::istringstream in(text);
  for (long pid; in >> pid;) pids.push_back(static_cast<pid_t>(pid));
  return pids;
}

Status KillCgroup(int dirfd) {
  Status killed = WriteAt(dirfd, "cgroup.kill", "1");
  if (killed.ok() || killed.code() != Code::kNotFound) return killed;
  // Before 5.14: frozen members cannot fork or exit while each is killed.
  ORCH_RETURN_IF_ERROR(WriteAt(dirfd, "cgroup.freeze", "1"));
  Status each = SignalCgroup(dirfd, SIGKILL);
  Status thawed = WriteAt(dirfd, "cgroup.freeze", "0");
  return each.ok() ? thawed : each;
}

namespace {

// The directories directly below `dirfd` (nested cgroups).
std::vector<std::string> Children(int dirfd) {
  std::vector<std::string> names;
  int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return names;
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    close(fd);
    return names;
  }
  while (dirent* e = readdir(dir)) {
    if (e->d_type == DT_DIR && std::strcmp(e->d_name, ".") != 0 &&
        std::strcmp(e->d_name, "..") != 0) {
      names.emplace_back(e->d_name);
    }
  }
  closedir(dir);
  return names;
}

constexpr int kMaxNesting = 32;

Status SignalTree(int dirfd, int sig, int depth, std::set<pid_t>* signalled) {
  ORCH_ASSIGN_OR_RETURN(std::vector<pid_t> before, CgroupProcs(dirfd));
  std::vector<std::pair<pid_t, Pidfd>> opened;
  for (pid_t pid : before) {
    auto fd = Pidfd::Open(pid);
    if (fd.ok()) opened.emplace_back(pid, std::move(fd).value());
  }
  // A pidfd names one process for good: still listed now, it is a member.
  ORCH_ASSIGN_OR_RETURN(std::vector<pid_t> after, CgroupProcs(dirfd));
  std::set<pid_t> members(after.begin(), after.end());
  for (auto& [pid, fd] : opened) {
    if (members.count(pid) == 0) continue;
    (void)fd.SendSignal(sig);
    if (signalled != nullptr) signalled->insert(pid);
  }
  if (depth >= kMaxNesting) return Status::Ok();
  for (const std::string& child : Children(dirfd)) {
    UniqueFd fd(openat(dirfd, child.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.valid()) (void)SignalTree(fd.get(), sig, depth + 1, signalled);
  }
  return Status::Ok();
}

// rmdir of what is below `dirfd`, deepest first.
void RemoveChildren(int dirfd, int depth) {
  if (depth >= kMaxNesting) return;
  for (const std::string& child : Children(dirfd)) {
    UniqueFd fd(openat(dirfd, child.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.valid()) RemoveChildren(fd.get(), depth + 1);
    (void)unlinkat(dirfd, child.c_str(), AT_REMOVEDIR);
  }
}

}  // namespace

Status SignalCgroup(int dirfd, int sig, std::set<pid_t>* signalled) {
  return SignalTree(dirfd, sig, 0, signalled);
}

CgroupTree CgroupTree::None(std::string why) {
  CgroupTree t;
  t.why_ = std::move(why);
  return t;
}

Result<CgroupTree> CgroupTree::SetUp(const CgroupSetupOptions& o) {
  if (o.mode == "off") return None("cgroup.mode = \"off\"");
  bool explicit_root = !o.root.empty();
  auto unusable = [&](const std::string& why) -> Result<CgroupTree> {
    if (explicit_root) {
      return Status(Code::kInvalidArgument, "cgroup.root " + o.root + ": " + why);
    }
    return None(why);
  };
  auto mountinfo = ReadPath(o.mountinfo_path);
  if (!mountinfo.ok()) return unusable("cannot read " + o.mountinfo_path);
  auto mount = FindCgroup2Mount(*mountinfo);
  if (!mount) return unusable("no cgroup2 filesystem is mounted");

  CgroupTree t;
  std::string own_dir;  // the daemon's own cgroup, as a directory
  std::optional<std::string> own;
  if (auto self = ReadPath(o.self_cgroup_path); self.ok()) own = OwnCgroup2Path(*self);
  if (own) own_dir = mount->DirOf(*own).value_or("");
  if (explicit_root) {
    if (o.root[0] != '/') return unusable("not an absolute path");
    t.root_ = o.root;
  } else if (!own) {
    return unusable("no unified (cgroup2) line in " + o.self_cgroup_path);
  } else if (own_dir.empty()) {
    return unusable("the daemon's cgroup " + *own + " is outside the cgroup2 mount at " +
                    mount->point + " (which shows " + mount->root + ")");
  } else if (o.after_reexec && own_dir.ends_with("/supervisor")) {
    own_dir.resize(own_dir.size() - std::string_view("/supervisor").size());
    t.root_ = own_dir + "/runs";
  } else {
    t.root_ = own_dir + "/runs";
  }
  while (t.root_.size() > 1 && t.root_.back() == '/') t.root_.pop_back();
  if (Status made = MkdirAll(t.root_); !made.ok()) return unusable(made.message());
  t.root_fd_ = UniqueFd(open(t.root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!t.root_fd_.valid()) return unusable(FromErrno("open " + t.root_).message());
  struct statfs fs{};
  if (fstatfs(t.root_fd_.get(), &fs) != 0 || fs.f_type != kCgroup2Magic) {
    return unusable(t.root_ + " is not on a cgroup2 filesystem");
  }
  if (flock(t.root_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    return Status(Code::kConflict, "cgroup.root " + t.root_ +
                                       " is in use by another orchestrator daemon; give each "
                                       "daemon its own cgroup.root");
  }

  // Controllers: those the parent offers are enabled for the root and for
  // each run below it. The parent may hold processes (our own cgroup holds
  // us): a cgroup with processes cannot give controllers to its children,
  // so the daemon first moves itself into a leaf beside the root.
  std::string parent = t.root_.substr(0, t.root_.rfind('/'));
  if (parent.empty()) parent = "/";
  UniqueFd parent_fd(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  std::vector<std::string> offered;
  if (parent_fd.valid()) {
    if (auto c = ReadAt(parent_fd.get(), "cgroup.controllers"); c.ok()) offered = Words(*c);
  }
  std::string enable;
  for (const char* want : kWantedControllers) {
    if (Contains(offered, want)) enable += std::string(enable.empty() ? "+" : " +") + want;
  }
  std::string note;
  if (!enable.empty()) {
    int err = 0;
    Status given = WriteAt(parent_fd.get(), "cgroup.subtree_control", enable, &err);
    // Only out of our own cgroup, never out of one that merely holds the root.
    if (err == EBUSY && parent == own_dir) {
      std::string leaf = parent + "/supervisor";
      if (mkdir(leaf.c_str(), 0755) == 0 || errno == EEXIST) {
        UniqueFd leaf_fd(open(leaf.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (leaf_fd.valid() && WriteAt(leaf_fd.get(), "cgroup.procs", "0").ok()) {
          note = "; moved the daemon into " + leaf;
          given = WriteAt(parent_fd.get(), "cgroup.subtree_control", enable);
        }
      }
    }
    if (given.ok()) (void)WriteAt(t.root_fd_.get(), "cgroup.subtree_control", enable);
    if (!given.ok()) note += "; cannot enable controllers (" + given.message() + ")";
  }
  if (auto c = ReadAt(t.root_fd_.get(), "cgroup.subtree_control"); c.ok()) {
    for (const std::string& w : Words(*c)) {
      if (Contains({std::begin(kWantedControllers), std::end(kWantedControllers)}, w)) {
        t.controllers_.push_back(w);
      }
    }
  }
  t.mode_ = t.controllers_.size() == std::size(kWantedControllers) ? CgroupMode::kFull
                                                                    : CgroupMode::kTracking;
  std::string list;
  for (const auto& c : t.controllers_) list += (list.empty() ? "" : ",") + c;
  t.why_ = "cgroup2 at " + mount->point + "; controllers for runs: " + (list.empty() ? "none" : list) +
           note;
  return t;
}

bool CgroupTree::has_controller(const std::string& name) const {
  return Contains(controllers_, name);
}

std::string CgroupTree::UnsupportedLimit(const CgroupLimits& limits) const {
  if (limits.memory_max && !has_controller("memory")) return "memory_max";
  if (limits.cpu_max && !has_controller("cpu")) return "cpu_max";
  if (limits.pids_max && !has_controller("pids")) return "pids_max";
  return "";
}

Result<std::vector<int64_t>> CgroupTree::ListRuns() const {
  std::vector<int64_t> ids;
  if (!root_fd_.valid()) return ids;
  int fd = openat(root_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return FromErrno("open " + root_);
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    close(fd);
    return FromErrno("opendir " + root_);
  }
  while (dirent* e = readdir(dir)) {
    const char* name = e->d_name;
    if (std::strncmp(name, "run-", 4) != 0) continue;
    char* end = nullptr;
    long long id = std::strtoll(name + 4, &end, 10);
    if (end != name + 4 && *end == '\0' && id > 0) ids.push_back(id);
  }
  closedir(dir);
  std::sort(ids.begin(), ids.end());
  return ids;
}

Result<RunCgroup> RunCgroup::Create(const CgroupTree& tree, int64_t run_id,
                                    const CgroupLimits& limits) {
  std::string name = CgroupTree::RunName(run_id);
  RunCgroup cg;
  cg.path_ = tree.root() + "/" + name;
  if (mkdirat(tree.root_fd(), name.c_str(), 0755) != 0) {
    // Never reused: a leftover of that name is the stray sweep's to remove.
    if (errno == EEXIST) {
      return Status(Code::kConflict, cg.path_ + " exists already (left over from an earlier run "
                                                "of this id; removed by the reaper when empty)");
    }
    return FromErrno("mkdir " + cg.path_);
  }
  cg.fd_ = UniqueFd(openat(tree.root_fd(), name.c_str(),
                           O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!cg.fd_.valid()) return FromErrno("open " + cg.path_);
  if (Status s = WriteCgroupLimits(cg.fd_.get(), limits); !s.ok()) {
    (void)cg.Remove();
    return s;
  }
  return cg;
}

Result<RunCgroup> RunCgroup::Open(const std::string& path) {
  RunCgroup cg;
  cg.path_ = path;
  cg.fd_ = UniqueFd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!cg.fd_.valid()) return FromErrno("open " + path);
  return cg;
}

bool RunCgroup::OnCgroup2() const {
  struct statfs fs{};
  return fstatfs(fd_.get(), &fs) == 0 && fs.f_type == kCgroup2Magic;
}

Status RunCgroup::Remove() const {
  struct stat mine {}, there {};
  if (fstat(fd_.get(), &mine) != 0) return FromErrno("fstat " + path_);
  if (lstat(path_.c_str(), &there) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return FromErrno("stat " + path_);
  }
  // Another cgroup now has the name: this one is gone already.
  if (mine.st_ino != there.st_ino || mine.st_dev != there.st_dev) return Status::Ok();
  if (rmdir(path_.c_str()) == 0 || errno == ENOENT) return Status::Ok();
  if (errno == EBUSY) {
    // Still members (then this fails again), or nested cgroups the job
    // made: those go first, deepest first.
    RemoveChildren(fd_.get(), 0);
    if (rmdir(path_.c_str()) == 0 || errno == ENOENT) return Status::Ok();
  }
  if (errno == EBUSY) return Status(Code::kUnavailable, "rmdir " + path_ + ": still populated");
  return FromErrno("rmdir " + path_);
}

}  // namespace orch
