#include "daemon/handover.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace orch {

using nlohmann::json;

namespace {

constexpr int kFormat = 2;  // bumped when a field changes meaning

json Opt(const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); }

std::optional<int64_t> OptFrom(const json& v) {
  if (v.is_null()) return std::nullopt;
  return v.get<int64_t>();
}

json EncodeRun(const HandedRun& r) {
  json report = nullptr;
  if (r.report) {
    report = {{"fd", r.report->report_fd},  {"argv0", r.report->argv0}, {"cwd", r.report->cwd},
              {"helper", r.report->helper}, {"uid", r.report->uid},     {"gid", r.report->gid}};
  }
  return {{"run_id", r.run_id},
          {"job_id", r.job_id},
          {"attempt", r.attempt},
          {"pid", r.pid},
          {"pidfd", r.pidfd},
          {"child", r.child},
          {"killing_orphan", r.killing_orphan},
          {"released", r.released},
          {"report", report},
          {"out_fd", r.out_fd},
          {"err_fd", r.err_fd},
          {"cgroup", r.cgroup},
          {"started_mono_ms", r.started_mono_ms},
          {"timeout_s", Opt(r.timeout_s)},
          {"stall_timeout_s", Opt(r.stall_timeout_s)},
          {"stop", StopCauseName(r.stop)},
          {"term_sent_mono_ms", r.term_sent_mono_ms},
          {"kill_sent", r.kill_sent},
          {"cut_out", r.cut_out},
          {"cut_err", r.cut_err},
          {"last_progress_mono_ms", r.last_progress_mono_ms},
          {"last_cpu_usec", r.last_cpu_usec},
          {"last_log_bytes", r.last_log_bytes},
          {"exit_seen_mono_ms", r.exit_seen_mono_ms}};
}

HandedRun DecodeRun(const json& j) {
  HandedRun r;
  r.run_id = j.at("run_id").get<int64_t>();
  r.job_id = j.at("job_id").get<int64_t>();
  r.attempt = j.at("attempt").get<int64_t>();
  r.pid = j.at("pid").get<pid_t>();
  r.pidfd = j.at("pidfd").get<int>();
  r.child = j.at("child").get<bool>();
  r.killing_orphan = j.at("killing_orphan").get<bool>();
  r.released = j.at("released").get<bool>();
  if (const json& rep = j.at("report"); !rep.is_null()) {
    r.report = HeldExecState{rep.at("fd").get<int>(),          rep.at("argv0").get<std::string>(),
                             rep.at("cwd").get<std::string>(), rep.at("helper").get<std::string>(),
                             rep.at("uid").get<uid_t>(),       rep.at("gid").get<gid_t>()};
  }
  r.out_fd = j.at("out_fd").get<int>();
  r.err_fd = j.at("err_fd").get<int>();
  r.cgroup = j.at("cgroup").get<std::string>();
  r.started_mono_ms = j.at("started_mono_ms").get<int64_t>();
  r.timeout_s = OptFrom(j.at("timeout_s"));
  r.stall_timeout_s = OptFrom(j.at("stall_timeout_s"));
  auto stop = StopCauseFromName(j.at("stop").get<std::string>());
  if (!stop) throw std::invalid_argument("unknown stop " + j.at("stop").dump());
  r.stop = *stop;
  r.term_sent_mono_ms = j.at("term_sent_mono_ms").get<int64_t>();
  r.kill_sent = j.at("kill_sent").get<bool>();
  r.cut_out = j.at("cut_out").get<int64_t>();
  r.cut_err = j.at("cut_err").get<int64_t>();
  r.last_progress_mono_ms = j.at("last_progress_mono_ms").get<int64_t>();
  r.last_cpu_usec = j.at("last_cpu_usec").get<int64_t>();
  r.last_log_bytes = j.at("last_log_bytes").get<int64_t>();
  r.exit_seen_mono_ms = j.at("exit_seen_mono_ms").get<int64_t>();
  if (r.run_id <= 0 || r.job_id <= 0 || r.pid <= 0 || r.pidfd < 0) {
    throw std::invalid_argument("run without ids or pidfd: " + j.dump());
  }
  return r;
}

}  // namespace

std::vector<int> Handover::Fds() const {
  std::vector<int> fds;
  for (int fd : {lock_fd, sockets.tcp_fd, sockets.unix_fd}) fds.push_back(fd);
  for (const auto& c : sockets.connections) fds.push_back(c.fd);
  for (const HandedRun& r : runs) {
    fds.push_back(r.pidfd);
    fds.push_back(r.out_fd);
    fds.push_back(r.err_fd);
    if (r.report) fds.push_back(r.report->report_fd);
  }
  std::erase_if(fds, [](int fd) { return fd < 0; });
  return fds;
}

std::string EncodeHandover(const Handover& h) {
  json runs = json::array();
  for (const HandedRun& r : h.runs) runs.push_back(EncodeRun(r));
  json connections = json::array();
  for (const auto& c : h.sockets.connections) {
    connections.push_back({{"fd", c.fd}, {"unix", c.via_unix}});
  }
  return json{{"format", kFormat},
              {"incarnation", h.incarnation},
              {"stopped_mono_ns", h.stopped_mono_ns},
              {"handovers", h.handovers},
              {"lock_fd", h.lock_fd},
              {"tcp_fd", h.sockets.tcp_fd},
              {"unix_fd", h.sockets.unix_fd},
              {"connections", connections},
              {"runs", runs}}
      .dump();
}

Result<Handover> DecodeHandover(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Status(Code::kInvalidArgument, "hand-over is not a JSON object");
  }
  try {
    if (j.at("format").get<int>() != kFormat) {
      return Status(Code::kInvalidArgument, "hand-over format " + j.at("format").dump() +
                                                " is not " + std::to_string(kFormat));
    }
    Handover h;
    h.incarnation = j.at("incarnation").get<std::string>();
    h.stopped_mono_ns = j.at("stopped_mono_ns").get<int64_t>();
    h.handovers = j.at("handovers").get<uint64_t>();
    h.lock_fd = j.at("lock_fd").get<int>();
    h.sockets.tcp_fd = j.at("tcp_fd").get<int>();
    h.sockets.unix_fd = j.at("unix_fd").get<int>();
    for (const json& c : j.at("connections")) {
      h.sockets.connections.push_back({c.at("fd").get<int>(), c.at("unix").get<bool>()});
    }
    for (const json& r : j.at("runs")) h.runs.push_back(DecodeRun(r));
    return h;
  } catch (const std::exception& e) {
    return Status(Code::kInvalidArgument, std::string("hand-over: ") + e.what());
  }
}

Result<UniqueFd> WriteHandover(const std::string& text) {
  UniqueFd fd(memfd_create("orchestrator-handover", MFD_ALLOW_SEALING | MFD_CLOEXEC));
  if (!fd.valid()) return FromErrno("memfd_create");
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = write(fd.get(), text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FromErrno("write hand-over");
    off += static_cast<size_t>(n);
  }
  // Nothing may change it between the images.
  if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    return FromErrno("seal hand-over");
  }
  return fd;
}

Result<Handover> ReadHandover(int fd) {
  std::string text;
  char buf[65536];
  for (off_t off = 0;;) {
    ssize_t n = pread(fd, buf, sizeof buf, off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FromErrno("read hand-over");
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return DecodeHandover(text);
}

Status SetCloseOnExec(int fd, bool on) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC)) != 0) {
    return FromErrno("FD_CLOEXEC on fd " + std::to_string(fd));
  }
  return Status::Ok();
}

}  // namespace orch
