#include "http/api.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/log.h"

namespace orch {
namespace {

using nlohmann::json;

constexpr int64_t kDefaultPageLimit = 100;
constexpr int64_t kMaxPageLimit = 1000;
// A page of GET /jobs stops before its JSON passes this many bytes.
constexpr size_t kMaxPageBytes = size_t{4} << 20;

json Time(const std::optional<int64_t>& ms) {
  return ms ? json(FormatRfc3339(*ms)) : json(nullptr);
}
template <typename T>
json Opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

json JobJson(const Job& j) {
  return {{"id", j.id},
          {"name", j.name},
          {"argv", j.argv},
          {"env", j.env},
          {"cwd", j.cwd},
          {"status", JobStatusName(j.status)},
          {"priority", j.priority},
          {"serial_key", Opt(j.serial_key)},
          {"attempts", j.attempts},
          {"max_attempts", j.max_attempts},
          {"timeout_s", Opt(j.timeout_s)},
          {"not_before", FormatRfc3339(j.not_before)},
          {"idempotency_key", Opt(j.idempotency_key)},
          {"created_at", FormatRfc3339(j.created_at)},
          {"updated_at", FormatRfc3339(j.updated_at)},
          {"started_at", Time(j.started_at)},
          {"finished_at", Time(j.finished_at)},
          {"run_id", Opt(j.run_id)},
          {"pid", Opt(j.pid)},
          {"exit_code", Opt(j.exit_code)},
          {"signal", Opt(j.signal)},
          {"outcome", Opt(j.outcome)},
          {"error", Opt(j.error)},
          {"cancel_requested", j.cancel_requested}};
}

json RunJson(const Run& r) {
  bool spawned = r.identity.pid != 0;
  return {{"id", r.id},
          {"job_id", r.job_id},
          {"attempt", r.attempt},
          {"incarnation", r.incarnation},
          {"boot_id", spawned ? json(r.identity.boot_id) : json(nullptr)},
          {"pidns_ino", spawned ? json(r.identity.pidns_ino) : json(nullptr)},
          {"pid", spawned ? json(r.identity.pid) : json(nullptr)},
          {"start_time", spawned ? json(r.identity.start_time) : json(nullptr)},
          {"pidfs_ino", spawned && r.identity.pidfs_ino ? json(r.identity.pidfs_ino) : json(nullptr)},
          {"started_at", FormatRfc3339(r.started_at)},
          {"ended_at", Time(r.ended_at)},
          {"outcome", Opt(r.outcome)},
          {"reason", Opt(r.reason)},
          {"exit_code", Opt(r.exit_code)},
          {"signal", Opt(r.signal)},
          {"log_path", r.log_path.empty() ? json(nullptr) : json(r.log_path)}};
}

void Json(HttpResponse& resp, int status, const json& body) {
  resp.status = status;
  resp.content_type = "application/json";
  resp.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  resp.body += '\n';
}

void Error(HttpResponse& resp, int status, std::string_view code, std::string_view message) {
  resp = HttpErrorResponse(status, code, message);
}

// Store and supervisor failures as HTTP errors.
void StatusError(HttpResponse& resp, const Status& s) {
  switch (s.code()) {
    case Code::kNotFound: return Error(resp, 404, "not_found", s.message());
    case Code::kConflict:
    case Code::kGuardMissed: return Error(resp, 409, "conflict", s.message());
    case Code::kInvalidArgument: return Error(resp, 400, "invalid_request", s.message());
    case Code::kInternal: return Error(resp, 500, "internal", s.message());
    default: return Error(resp, 503, "store_unavailable", s.ToString());
  }
}

void MethodNotAllowed(HttpResponse& resp, const char* allow) {
  Error(resp, 405, "method_not_allowed", std::string("allowed: ") + allow);
  resp.headers.emplace_back("Allow", allow);
}

std::string Lowercase(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool ParseId(std::string_view text, int64_t* out) {
  if (text.empty() || text.size() > 18) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && ptr == text.data() + text.size() && *out > 0;
}

std::string PromEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

Api::Api(JobStore* store, Supervisor* supervisor, Metrics* metrics, const Clock* clock,
         std::string token, std::string boot_id, std::vector<std::string> allowed_hosts)
    : store_(store),
      supervisor_(supervisor),
      metrics_(metrics),
      clock_(clock),
      token_(std::move(token)),
      boot_id_(std::move(boot_id)),
      allowed_hosts_(std::move(allowed_hosts)) {}

bool Api::HostAllowed(const std::string& host_header) const {
  // No Host at all is an HTTP/1.0 client, never a browser (browsers always
  // send one, and DNS rebinding needs a name in it).
  if (host_header.empty()) return true;
  std::string host = Lowercase(host_header);
  std::string name = host;
  if (!name.empty() && name.front() == '[') {
    name = name.substr(1, name.find(']') == std::string::npos ? 0 : name.find(']') - 1);
  } else if (size_t colon = name.find(':'); colon != std::string::npos) {
    name = name.substr(0, colon);
  }
  for (const auto& allowed : allowed_hosts_) {
    std::string a = Lowercase(allowed);
    if (a == host || a == name) return true;
  }
  if (name == "localhost" || (name.size() > 10 && name.ends_with(".localhost"))) return true;
  in_addr a4{};
  if (inet_pton(AF_INET, name.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  return inet_pton(AF_INET6, name.c_str(), &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

std::optional<HttpError> Api::Admit(const HttpRequest& head) const {
  const std::string& p = head.path;
  bool open = p == "/healthz" || p == "/readyz" || p == "/metrics";
  if (!head.via_unix_socket) {
    std::string host = head.Header("host");
    if (!open && !HostAllowed(host)) {
      return HttpError{421, "misdirected_request",
                       "Host \"" + host +
                           "\" is not a name of this server; add it to server.allowed_hosts"};
    }
    if (head.HasHeader("origin")) {
      std::string origin = Lowercase(head.Header("origin"));
      bool same = !host.empty() && (origin == "http://" + Lowercase(host) ||
                                    origin == "https://" + Lowercase(host));
      if (!same) {
        return HttpError{403, "cross_origin",
                         "requests from origin \"" + head.Header("origin") + "\" are refused"};
      }
    }
    if (!open && !Authorized(head)) {
      return HttpError{401,
                       "unauthorized",
                       "a valid 'Authorization: Bearer <token>' header is required",
                       {{"WWW-Authenticate", "Bearer realm=\"orchestrator\""}}};
    }
  }
  if (head.method == "POST") {
    std::string ctype = head.Header("content-type");
    std::string length = head.Header("content-length");
    bool body = head.HasHeader("transfer-encoding") || (!length.empty() && length != "0");
    std::string media = Lowercase(ctype.substr(0, ctype.find(';')));
    while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.pop_back();
    if (body && media != "application/json") {
      return HttpError{415, "unsupported_media_type",
                       "Content-Type must be application/json" +
                           (ctype.empty() ? std::string() : ", got " + ctype)};
    }
  }
  if (head.via_unix_socket && head.method != "GET" && head.method != "HEAD") {
    log::Info("request over the unix socket",
              {{"method", head.method}, {"path", p}, {"peer_uid", head.peer_uid.value_or(-1)}});
  }
  return std::nullopt;
}

bool Api::Authorized(const HttpRequest& req) const {
  if (token_.empty()) return true;
  std::string header = req.Header("authorization");
  // The scheme is case-insensitive (RFC 9110 §11.1).
  static constexpr std::string_view kBearer = "bearer ";
  if (header.size() < kBearer.size() || Lowercase(header.substr(0, kBearer.size())) != kBearer) {
    return false;
  }
  std::string_view given(header.data() + kBearer.size(), header.size() - kBearer.size());
  while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
  // Constant time over the expected token's length.
  unsigned char diff = given.size() == token_.size() ? 0 : 1;
  for (size_t i = 0; i < token_.size(); ++i) {
    unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= g ^ static_cast<unsigned char>(token_[i]);
  }
  return diff == 0;
}

void Api::Handle(const HttpRequest& req, HttpResponse& resp) {
  int64_t start = MonotonicNs();
  std::string route;
  try {
    route = Route(req, resp);
  } catch (const std::exception& e) {
    route = "error";
    log::Error("request handler failed", {{"path", req.path}, {"error", e.what()}});
    Error(resp, 500, "internal", "internal error");
  }
  ++metrics_->http_requests_total[{route, resp.status}];
  if (log::Enabled(log::Level::kDebug)) {
    log::Debug("http request", {{"method", req.method}, {"path", req.path},
                                {"status", resp.status},
                                {"duration_ms", static_cast<double>(MonotonicNs() - start) / 1e6}});
  }
}

std::string Api::Route(const HttpRequest& req, HttpResponse& resp) {
  const std::string& p = req.path;
  const std::string& m = req.method;
  bool get = m == "GET" || m == "HEAD";

  if (p == "/healthz") {
    get ? Healthz(resp) : MethodNotAllowed(resp, "GET, HEAD");
    return p;
  }
  if (p == "/readyz") {
    get ? Readyz(resp) : MethodNotAllowed(resp, "GET, HEAD");
    return p;
  }
  if (p == "/metrics") {
    get ? MetricsText(resp) : MethodNotAllowed(resp, "GET, HEAD");
    return p;
  }

  std::string route = "unknown";
  bool known = true;
  if (p == "/queue") {
    route = p;
  } else if (p == "/queue/pause" || p == "/queue/resume") {
    route = p;
  } else if (p == "/jobs") {
    route = p;
  } else if (p.rfind("/jobs/", 0) == 0) {
    route = "/jobs/{id}";
  } else {
    known = false;
  }
  if (!known) {
    Error(resp, 404, "not_found", "no such path: " + p);
    return route;
  }
  if (p == "/queue") {
    get ? Queue(resp) : MethodNotAllowed(resp, "GET, HEAD");
    return route;
  }
  if (p == "/queue/pause" || p == "/queue/resume") {
    m == "POST" ? SetPaused(p == "/queue/pause", resp) : MethodNotAllowed(resp, "POST");
    return route;
  }
  if (p == "/jobs") {
    if (m == "POST") {
      Submit(req, resp);
    } else if (get) {
      ListJobs(req, resp);
    } else {
      MethodNotAllowed(resp, "GET, HEAD, POST");
    }
    return route;
  }

  // /jobs/{id}[/cancel|/retry|/log]
  std::string_view rest(p);
  rest.remove_prefix(6);
  std::string_view id_text = rest.substr(0, rest.find('/'));
  std::string_view action =
      rest.size() > id_text.size() ? rest.substr(id_text.size() + 1) : std::string_view();
  int64_t id = 0;
  if (!ParseId(id_text, &id) || (rest.size() > id_text.size() && action.empty())) {
    Error(resp, 404, "not_found", "no such path: " + p);
    return route;
  }
  if (action.empty()) {
    get ? GetJob(id, resp) : MethodNotAllowed(resp, "GET, HEAD");
    return route;
  }
  if (action == "cancel") {
    m == "POST" ? CancelJob(id, resp) : MethodNotAllowed(resp, "POST");
    return "/jobs/{id}/cancel";
  }
  if (action == "retry") {
    m == "POST" ? RetryJob(id, resp) : MethodNotAllowed(resp, "POST");
    return "/jobs/{id}/retry";
  }
  if (action == "log") {
    get ? Log(id, req, resp) : MethodNotAllowed(resp, "GET, HEAD");
    return "/jobs/{id}/log";
  }
  Error(resp, 404, "not_found", "no such path: " + p);
  return "unknown";
}

void Api::Healthz(HttpResponse& resp) { Json(resp, 200, {{"status", "ok"}}); }

void Api::Readyz(HttpResponse& resp) {
  if (!supervisor_->recovered()) {
    return Error(resp, 503, "not_ready", "start-up recovery has not finished");
  }
  Status s = store_->ProbeWritable();
  if (!s.ok()) {
    // Open to anyone: the answer names no path; the log has the details.
    if (s.message() != last_readyz_error_) {
      last_readyz_error_ = s.message();
      log::Warn("not ready: store not writable", {{"error", s.ToString()}});
    }
    return Error(resp, 503, "not_ready",
                 std::string("store not writable (") + CodeName(s.code()) +
                     "); the daemon's log says why");
  }
  last_readyz_error_.clear();
  Json(resp, 200, {{"status", "ready"}});
}

void Api::Queue(HttpResponse& resp) {
  auto counts = store_->Counts();
  if (!counts.ok()) return StatusError(resp, counts.status());
  auto running = store_->ListRunningBrief();
  if (!running.ok()) return StatusError(resp, running.status());
  int64_t now = clock_->NowMs();
  const Config& cfg = supervisor_->config();

  HostFaultState host = supervisor_->host_fault();
  json run_list = json::array();
  for (const auto& e : *running) {
    run_list.push_back({{"id", e.job_id},
                        {"run_id", e.run_id},
                        {"pid", e.pid ? json(e.pid) : json(nullptr)},
                        {"serial_key", Opt(e.serial_key)},
                        {"started_at", FormatRfc3339(e.started_at)},
                        {"runtime_s", static_cast<double>(now - e.started_at) / 1000.0}});
  }
  const Metrics& m = *metrics_;
  json body = {
      {"counts",
       {{"queued", counts->queued},
        {"running", counts->running},
        {"succeeded", counts->succeeded},
        {"failed", counts->failed},
        {"cancelled", counts->cancelled}}},
      {"max_concurrency", cfg.supervisor.max_concurrency},
      {"serial_gate_enabled", cfg.supervisor.serial_gate_enabled},
      {"paused", supervisor_->paused()},
      {"oldest_queued_age_s",
       counts->oldest_queued_created_at
           ? json(static_cast<double>(now - *counts->oldest_queued_created_at) / 1000.0)
           : json(nullptr)},
      {"running", run_list},
      {"reaper",
       {{"interval_ms", cfg.reaper.interval_ms},
        {"last_tick_at", m.last_tick_at_ms ? json(FormatRfc3339(m.last_tick_at_ms)) : json(nullptr)},
        {"ticks_total", m.reaper_ticks_total},
        {"reaped_total", m.reaped_total},
        {"lost_total", m.LostTotal()},
        {"timeouts_total", m.timeouts_total},
        {"orphans_total", m.orphans_total},
        {"impossible_queued_total", m.impossible_queued_total},
        {"sanitize_enabled", cfg.reaper.sanitize_impossible_queued},
        {"errors_total", m.reaper_errors_total}}},
      {"host_fault",
       {{"consecutive", host.consecutive},
        {"backoff_until",
         host.backoff_until_ms ? json(FormatRfc3339(host.backoff_until_ms)) : json(nullptr)},
        {"last_error", host.last_error.empty() ? json(nullptr) : json(host.last_error)}}},
      {"supervisor",
       {{"version", ORCH_VERSION},
        {"pid", static_cast<int64_t>(getpid())},
        {"incarnation", supervisor_->incarnation()},
        {"boot_id", boot_id_},
        {"started_at", FormatRfc3339(supervisor_->started_at_ms())},
        {"uptime_s", static_cast<double>(now - supervisor_->started_at_ms()) / 1000.0}}}};
  Json(resp, 200, body);
}

void Api::SetPaused(bool paused, HttpResponse& resp) {
  Status s = supervisor_->SetPaused(paused);
  if (!s.ok()) return StatusError(resp, s);
  Json(resp, 200, {{"paused", paused}});
}

void Api::Submit(const HttpRequest& req, HttpResponse& resp) {
  auto spec = ParseJobSpec(req.body, supervisor_->config().supervisor.default_max_attempts);
  if (!spec.ok()) return Error(resp, 400, "invalid_request", spec.status().message());
  auto result = store_->Submit(*spec, clock_->NowMs());
  if (!result.ok()) {
    log::Error("submit failed", {{"error", result.status().ToString()}});
    return StatusError(resp, result.status());
  }
  if (result->created) {
    ++metrics_->submitted_total;
    log::Info("job submitted", {{"job_id", result->job.id}, {"name", result->job.name}});
    supervisor_->Kick();
  }
  Json(resp, result->created ? 201 : 200, JobJson(result->job));
}

void Api::ListJobs(const HttpRequest& req, HttpResponse& resp) {
  std::optional<JobStatus> status;
  int64_t limit = kDefaultPageLimit, after = 0;
  for (const auto& [k, v] : req.query) {
    if (k == "status") {
      if (v.empty()) continue;
      JobStatus s;
      if (!ParseJobStatus(v, &s)) {
        return Error(resp, 400, "invalid_request",
                     "status: must be one of queued, running, succeeded, failed, cancelled");
      }
      status = s;
    } else if (k == "limit") {
      if (!ParseId(v, &limit)) return Error(resp, 400, "invalid_request", "limit: must be a positive integer");
      limit = std::min(limit, kMaxPageLimit);
    } else if (k == "after_id") {
      if (v != "0" && !ParseId(v, &after)) {
        return Error(resp, 400, "invalid_request", "after_id: must be a non-negative integer");
      }
    } else {
      return Error(resp, 400, "invalid_request", k + ": unknown query parameter");
    }
  }
  auto page = store_->ListJobs(status, after, limit, static_cast<int64_t>(kMaxPageBytes));
  if (!page.ok()) return StatusError(resp, page.status());
  // Capped in bytes as well as rows: a page of jobs with huge argv or env
  // must not become one huge response. At least one job always fits.
  json jobs = json::array();
  size_t bytes = 0;
  std::optional<int64_t> next = page->next_after_id;
  for (const auto& j : page->jobs) {
    json item = JobJson(j);
    size_t size = item.dump().size();
    if (!jobs.empty() && bytes + size > kMaxPageBytes) {
      next = jobs.back().at("id").get<int64_t>();
      break;
    }
    bytes += size;
    jobs.push_back(std::move(item));
  }
  Json(resp, 200, {{"jobs", jobs}, {"next_after_id", Opt(next)}});
}

void Api::GetJob(int64_t id, HttpResponse& resp) {
  auto job = store_->GetJob(id);
  if (!job.ok()) return StatusError(resp, job.status());
  auto runs = store_->GetRuns(id);
  if (!runs.ok()) return StatusError(resp, runs.status());
  json body = JobJson(*job);
  json run_list = json::array();
  for (const auto& r : *runs) run_list.push_back(RunJson(r));
  body["runs"] = run_list;
  if (job->status != JobStatus::kQueued) {
    Json(resp, 200, body);
    return;
  }

  // Why it is not running yet, with proof.
  int64_t now = clock_->NowMs();
  const Config& cfg = supervisor_->config();
  json blocked = nullptr;
  const Run* open_run = nullptr;
  for (const auto& r : *runs) {
    if (!r.ended_at) open_run = &r;
  }
  HostFaultState host = supervisor_->host_fault();
  if (supervisor_->paused()) {
    blocked = {{"reason", "paused"}};
  } else if (open_run != nullptr) {
    // Not claimed until the I1 sweep has checked that run's process.
    blocked = {{"reason", "open_run"},
               {"run_id", open_run->id},
               {"pid", open_run->identity.pid ? json(open_run->identity.pid) : json(nullptr)},
               {"sanitize_enabled", cfg.reaper.sanitize_impossible_queued}};
  } else if (job->not_before > now) {
    blocked = {{"reason", "not_before"}, {"until", FormatRfc3339(job->not_before)}};
  } else {
    auto running = store_->ListRunningBrief();
    if (!running.ok()) return StatusError(resp, running.status());
    if (cfg.supervisor.serial_gate_enabled && job->serial_key) {
      for (const auto& e : *running) {
        if (e.serial_key == job->serial_key) {
          blocked = {{"reason", "serial_key"},
                     {"key", *job->serial_key},
                     {"run_id", e.run_id},
                     {"pid", e.pid ? json(e.pid) : json(nullptr)},
                     {"alive", supervisor_->IsRunAlive(e.run_id)}};
          break;
        }
      }
    }
    if (blocked.is_null() &&
        static_cast<int64_t>(running->size()) >= cfg.supervisor.max_concurrency) {
      json held = json::array();
      for (const auto& e : *running) held.push_back(e.run_id);
      blocked = {{"reason", "max_concurrency"}, {"held_by", held}};
    }
    if (blocked.is_null() && host.backoff_left_ms > 0) {
      blocked = {{"reason", "host_fault"},
                 {"until", FormatRfc3339(host.backoff_until_ms)},
                 {"error", host.last_error}};
    }
  }
  body["blocked_by"] = blocked;
  Json(resp, 200, body);
}

void Api::CancelJob(int64_t id, HttpResponse& resp) {
  auto result = supervisor_->Cancel(id);
  if (!result.ok()) return StatusError(resp, result.status());
  Json(resp, 202, JobJson(result->job));
}

void Api::RetryJob(int64_t id, HttpResponse& resp) {
  auto job = store_->Retry(id, clock_->NowMs());
  if (!job.ok()) return StatusError(resp, job.status());
  log::Info("job retried", {{"job_id", id}});
  supervisor_->Kick();
  Json(resp, 200, JobJson(*job));
}

void Api::Log(int64_t id, const HttpRequest& req, HttpResponse& resp) {
  std::string stream = "stdout";
  std::optional<int64_t> tail;
  for (const auto& [k, v] : req.query) {
    if (k == "stream") {
      if (v != "stdout" && v != "stderr") {
        return Error(resp, 400, "invalid_request", "stream: must be stdout or stderr");
      }
      stream = v;
    } else if (k == "tail_bytes") {
      int64_t n = 0;
      if (v != "0" && !ParseId(v, &n)) {
        return Error(resp, 400, "invalid_request", "tail_bytes: must be a non-negative integer");
      }
      tail = n;
    } else {
      return Error(resp, 400, "invalid_request", k + ": unknown query parameter");
    }
  }
  auto job = store_->GetJob(id);
  if (!job.ok()) return StatusError(resp, job.status());
  auto runs = store_->GetRuns(id);
  if (!runs.ok()) return StatusError(resp, runs.status());
  // The newest run that has a log.
  const Run* run = nullptr;
  for (const auto& r : *runs) {
    if (!r.log_path.empty() && (run == nullptr || r.id > run->id)) run = &r;
  }
  if (run == nullptr) return Error(resp, 404, "no_log", "job " + std::to_string(id) + " has no log yet");
  // By ids, never by the stored path; a name that is not the daemon's own
  // regular file (a job swapped in a link or a FIFO) is refused.
  auto opened = supervisor_->log_dir().OpenForRead(
      id, run->id, stream == "stderr" ? LogStream::kStderr : LogStream::kStdout);
  if (!opened.ok()) {
    if (opened.status().code() == Code::kNotFound) {
      resp.status = 200;
      resp.content_type = "text/plain; charset=utf-8";
      resp.body.clear();
      return;
    }
    if (opened.status().code() == Code::kPermission) {
      log::Warn("refused to serve a log", {{"job_id", id}, {"run_id", run->id},
                                           {"error", opened.status().message()}});
      return Error(resp, 403, "log_refused", opened.status().message());
    }
    return Error(resp, 500, "log_unreadable", opened.status().message());
  }
  int fd = opened->Release();
  struct stat st {};
  fstat(fd, &st);
  int64_t size = st.st_size;
  int64_t offset = tail && *tail < size ? size - *tail : (tail ? 0 : 0);
  resp.status = 200;
  resp.content_type = "text/plain; charset=utf-8";
  resp.headers.emplace_back("X-Run-Id", std::to_string(run->id));
  resp.file_fd = fd;
  resp.file_offset = offset;
  resp.file_length = size - offset;
}

void Api::MetricsText(HttpResponse& resp) {
  std::ostringstream o;
  auto family = [&](const char* name, const char* type, const char* help) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  const Metrics& m = *metrics_;
  const Config& cfg = supervisor_->config();

  auto counts = store_->Counts();
  if (counts.ok()) {
    family("orchestrator_jobs", "gauge", "Jobs in the store by status.");
    std::pair<const char*, int64_t> rows[] = {{"queued", counts->queued},
                                              {"running", counts->running},
                                              {"succeeded", counts->succeeded},
                                              {"failed", counts->failed},
                                              {"cancelled", counts->cancelled}};
    for (auto [s, n] : rows) o << "orchestrator_jobs{status=\"" << s << "\"} " << n << '\n';
  }
  family("orchestrator_running_processes", "gauge", "Job processes this daemon watches.");
  o << "orchestrator_running_processes " << supervisor_->running_count() << '\n';
  family("orchestrator_max_concurrency", "gauge", "Configured max_concurrency.");
  o << "orchestrator_max_concurrency " << cfg.supervisor.max_concurrency << '\n';
  family("orchestrator_paused", "gauge", "1 while claiming is paused.");
  o << "orchestrator_paused " << (supervisor_->paused() ? 1 : 0) << '\n';

  auto counter = [&](const char* name, const char* help, uint64_t v) {
    family(name, "counter", help);
    o << name << ' ' << v << '\n';
  };
  counter("orchestrator_jobs_submitted_total", "Jobs accepted by POST /jobs.", m.submitted_total);
  counter("orchestrator_jobs_claimed_total", "Runs started by claim.", m.claimed_total);
  family("orchestrator_runs_finished_total", "counter", "Runs closed, by outcome.");
  for (const char* outcome : {"succeeded", "failed", "transient", "timeout", "cancelled", "lost",
                              "interrupted", "spawn_failed"}) {
    auto it = m.finished_total.find(outcome);
    o << "orchestrator_runs_finished_total{outcome=\"" << outcome << "\"} "
      << (it == m.finished_total.end() ? 0 : it->second) << '\n';
  }
  family("orchestrator_runs_lost_total", "counter", "Runs found lost, by reason.");
  for (const auto& [reason, n] : m.lost_total) {
    o << "orchestrator_runs_lost_total{reason=\"" << PromEscape(reason) << "\"} " << n << '\n';
  }
  counter("orchestrator_impossible_queued_total",
          "Queued rows found carrying a run (I1 violations) and repaired.",
          m.impossible_queued_total);
  counter("orchestrator_reaper_ticks_total", "Reaper ticks run.", m.reaper_ticks_total);
  counter("orchestrator_reaper_errors_total", "Reaper ticks that failed.", m.reaper_errors_total);
  counter("orchestrator_reaper_reaped_total", "Runs closed by the reaper or recovery.", m.reaped_total);
  counter("orchestrator_timeouts_total", "Runs terminated for exceeding timeout_s.", m.timeouts_total);
  counter("orchestrator_orphans_total", "Live orphans of earlier incarnations found.", m.orphans_total);
  counter("orchestrator_spawn_failures_total", "Runs whose process could not be started.",
          m.spawn_failures_total);
  counter("orchestrator_host_faults_total",
          "Runs the host could not start (resources, I/O): requeued, attempt kept.",
          m.host_faults_total);
  {
    HostFaultState host = supervisor_->host_fault();
    family("orchestrator_claim_backoff_seconds", "gauge",
           "Seconds until claiming resumes after a host fault (0 = claiming).");
    o << "orchestrator_claim_backoff_seconds "
      << static_cast<double>(host.backoff_left_ms) / 1000.0 << '\n';
  }
  counter("orchestrator_store_errors_total", "Store operations that failed.", m.store_errors_total);
  counter("orchestrator_guard_missed_total", "Guarded transitions that matched no row.",
          m.guard_missed_total);

  auto histogram = [&](const char* name, const char* help, const Histogram& h) {
    family(name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.bounds().size(); ++i) {
      cumulative += h.counts()[i];
      o << name << "_bucket{le=\"" << h.bounds()[i] << "\"} " << cumulative << '\n';
    }
    o << name << "_bucket{le=\"+Inf\"} " << h.count() << '\n';
    o << name << "_sum " << h.sum() << '\n';
    o << name << "_count " << h.count() << '\n';
  };
  histogram("orchestrator_exit_detection_seconds",
            "From a job's pidfd becoming readable to its run closed in the store.",
            m.exit_detection_seconds);
  histogram("orchestrator_run_duration_seconds", "Wall-clock duration of finished runs.",
            m.run_duration_seconds);

  family("orchestrator_http_requests_total", "counter", "HTTP requests by route and status code.");
  for (const auto& [key, n] : m.http_requests_total) {
    o << "orchestrator_http_requests_total{route=\"" << PromEscape(key.first) << "\",code=\""
      << key.second << "\"} " << n << '\n';
  }
  family("orchestrator_process_start_time_seconds", "gauge", "Start time of the daemon (Unix time).");
  o << "orchestrator_process_start_time_seconds " << supervisor_->started_at_ms() / 1000 << '\n';

  resp.status = 200;
  resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
  resp.body = o.str();
}

}  // namespace orch
