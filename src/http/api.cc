#include "http/api.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "http/ui_assets.h"

namespace orch {
namespace {

using nlohmann::json;

constexpr int64_t kDefaultPageLimit = 100;
constexpr int64_t kMaxPageLimit = 1000;
// A page of GET /jobs stops before its JSON passes this many bytes.
constexpr size_t kMaxPageBytes = size_t{4} << 20;
// /readyz says not ready once a write has waited this long for the store.
constexpr int64_t kStalledWriteMs = 2000;

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
          {"cancel_requested", j.cancel_requested},
          {"memory_max", Opt(j.memory_max)},
          {"cpu_max", Opt(j.cpu_max)},
          {"pids_max", Opt(j.pids_max)},
          {"stall_timeout_s", Opt(j.stall_timeout_s)}};
}

json RunJson(const Run& r) {
  bool spawned = r.identity.pid != 0;
  return {{"id", r.id},
          {"job_id", r.job_id},
          {"attempt", r.attempt},
          {"incarnation", r.incarnation},
          {"node_id", r.node_id},
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
          {"log_path", r.log_path.empty() ? json(nullptr) : json(r.log_path)},
          {"cgroup", r.cgroup.empty() ? json(nullptr) : json(r.cgroup)},
          {"cpu_usec", Opt(r.cpu_usec)},
          {"mem_peak_bytes", Opt(r.mem_peak_bytes)},
          {"oom_kills", Opt(r.oom_kills)}};
}

HttpResponse Json(int status, const json& body) {
  HttpResponse resp;
  resp.status = status;
  resp.content_type = "application/json";
  resp.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  resp.body += '\n';
  return resp;
}

HttpResponse Error(int status, std::string_view code, std::string_view message) {
  return HttpErrorResponse(status, code, message);
}

// How long a client is asked to wait when the store cannot take its request.
constexpr const char* kRetryAfterS = "1";

// Store and supervisor failures as HTTP errors.
HttpResponse StatusError(const Status& s) {
  switch (s.code()) {
    case Code::kNotFound: return Error(404, "not_found", s.message());
    case Code::kConflict:
    case Code::kGuardMissed: return Error(409, "conflict", s.message());
    case Code::kInvalidArgument: return Error(400, "invalid_request", s.message());
    case Code::kInternal: return Error(500, "internal", s.message());
    default: {
      HttpResponse resp = Error(503, "store_unavailable", s.ToString());
      resp.headers.emplace_back("Retry-After", kRetryAfterS);
      return resp;
    }
  }
}

HttpResponse MethodNotAllowed(const char* allow) {
  HttpResponse resp = Error(405, "method_not_allowed", std::string("allowed: ") + allow);
  resp.headers.emplace_back("Allow", allow);
  return resp;
}

// A store result handler whose answer is built on the loop: if building it
// throws, the client still gets an answer (500), never a hung request.
template <typename F>
auto Guard(std::function<void(HttpResponse)> reply, F handler) {
  return [reply = std::move(reply), handler = std::move(handler)](auto&& result) mutable {
    try {
      handler(std::forward<decltype(result)>(result));
    } catch (const std::exception& e) {
      log::Error("building a response failed", {{"error", e.what()}});
      reply(HttpErrorResponse(500, "internal", "internal error"));
    }
  };
}

// A client write the store executor refused: too many wait already.
HttpResponse Overloaded() {
  HttpResponse resp = Error(503, "store_overloaded",
                            "too many writes are waiting for the store; retry shortly");
  resp.headers.emplace_back("Retry-After", kRetryAfterS);
  return resp;
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

// The page may load its own script, style and icon and call its own API;
// nothing inline, nothing from elsewhere.
constexpr const char* kPageCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

bool IsUiPath(const std::string& p) { return p == "/" || p.rfind("/ui/", 0) == 0; }

// If-None-Match (RFC 9110 §13.1.2): "*", or a list of tags compared weakly.
bool EtagMatches(std::string_view header, std::string_view etag) {
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view tag = header.substr(0, comma);
    while (!tag.empty() && (tag.front() == ' ' || tag.front() == '\t')) tag.remove_prefix(1);
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) tag.remove_suffix(1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == "*" || tag == etag) return true;
    if (comma == std::string_view::npos) break;
    header.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

Api::Api(StoreExecutor* store, Supervisor* supervisor, Metrics* metrics, const Clock* clock,
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
  // The page and its assets hold no data; the page asks for the token and
  // sends it with each API request (a browser cannot on a navigation).
  bool page = IsUiPath(p) && (head.method == "GET" || head.method == "HEAD");
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
    if (!open && !page && !Authorized(head)) {
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

void Api::Handle(const HttpRequest& req, HttpResponder respond) {
  int64_t start = MonotonicNs();
  std::string route = RouteLabel(req);
  Reply reply = [this, respond, start, route, method = req.method,
                 path = req.path](HttpResponse resp) {
    ++metrics_->http_requests_total[{route, resp.status}];
    if (log::Enabled(log::Level::kDebug)) {
      log::Debug("http request",
                 {{"method", method}, {"path", path}, {"status", resp.status},
                  {"duration_ms", static_cast<double>(MonotonicNs() - start) / 1e6}});
    }
    respond(std::move(resp));
  };
  try {
    Route(req, reply);
  } catch (const std::exception& e) {
    log::Error("request handler failed", {{"path", req.path}, {"error", e.what()}});
    reply(Error(500, "internal", "internal error"));
  }
}

std::string Api::RouteLabel(const HttpRequest& req) {
  const std::string& p = req.path;
  if (p == "/healthz" || p == "/readyz" || p == "/metrics" || p == "/queue" || p == "/stats" ||
      p == "/queue/pause" || p == "/queue/resume" || p == "/jobs" || p == "/admin/reexec") {
    return p;
  }
  if (p == "/") return p;
  if (IsUiPath(p)) return "/ui/{file}";
  if (p.rfind("/jobs/", 0) != 0) return "unknown";
  std::string_view rest(p);
  rest.remove_prefix(6);
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return "/jobs/{id}";
  std::string_view action = rest.substr(slash + 1);
  if (action == "cancel" || action == "retry" || action == "log") {
    return "/jobs/{id}/" + std::string(action);
  }
  return "/jobs/{id}";
}

void Api::Route(const HttpRequest& req, const Reply& reply) {
  const std::string& p = req.path;
  const std::string& m = req.method;
  bool get = m == "GET" || m == "HEAD";

  if (IsUiPath(p)) return get ? UiFile(req, reply) : reply(MethodNotAllowed("GET, HEAD"));
  if (p == "/healthz") return get ? Healthz(reply) : reply(MethodNotAllowed("GET, HEAD"));
  if (p == "/readyz") return get ? Readyz(reply) : reply(MethodNotAllowed("GET, HEAD"));
  if (p == "/metrics") return get ? MetricsText(reply) : reply(MethodNotAllowed("GET, HEAD"));
  if (p == "/queue") return get ? Queue(reply) : reply(MethodNotAllowed("GET, HEAD"));
  if (p == "/stats") return get ? Stats(req, reply) : reply(MethodNotAllowed("GET, HEAD"));
  if (p == "/queue/pause" || p == "/queue/resume") {
    return m == "POST" ? SetPaused(p == "/queue/pause", reply) : reply(MethodNotAllowed("POST"));
  }
  if (p == "/admin/reexec" && reexec_) {
    return m == "POST" ? Reexec(reply) : reply(MethodNotAllowed("POST"));
  }
  if (p == "/jobs") {
    if (m == "POST") return Submit(req, reply);
    if (get) return ListJobs(req, reply);
    return reply(MethodNotAllowed("GET, HEAD, POST"));
  }
  if (p.rfind("/jobs/", 0) != 0) return reply(Error(404, "not_found", "no such path: " + p));

  // /jobs/{id}[/cancel|/retry|/log]
  std::string_view rest(p);
  rest.remove_prefix(6);
  std::string_view id_text = rest.substr(0, rest.find('/'));
  std::string_view action =
      rest.size() > id_text.size() ? rest.substr(id_text.size() + 1) : std::string_view();
  int64_t id = 0;
  if (!ParseId(id_text, &id) || (rest.size() > id_text.size() && action.empty())) {
    return reply(Error(404, "not_found", "no such path: " + p));
  }
  if (action.empty()) return get ? GetJob(id, reply) : reply(MethodNotAllowed("GET, HEAD"));
  if (action == "cancel") return m == "POST" ? CancelJob(id, reply) : reply(MethodNotAllowed("POST"));
  if (action == "retry") return m == "POST" ? RetryJob(id, reply) : reply(MethodNotAllowed("POST"));
  if (action == "log") return get ? Log(id, req, reply) : reply(MethodNotAllowed("GET, HEAD"));
  reply(Error(404, "not_found", "no such path: " + p));
}

void Api::UiFile(const HttpRequest& req, const Reply& reply) {
  if (!supervisor_->config().server.ui) {
    return reply(Error(404, "not_found", "the status page is off (server.ui = false)"));
  }
  for (const UiAsset& a : UiAssets()) {
    if (a.path != req.path) continue;
    HttpResponse resp;
    resp.content_type = std::string(a.content_type);
    // Revalidated on every load, so an upgrade shows its own page at once.
    resp.headers = {{"Content-Security-Policy", kPageCsp},
                    {"Cache-Control", "no-cache"},
                    {"ETag", std::string(a.etag)}};
    if (EtagMatches(req.Header("if-none-match"), a.etag)) {
      resp.status = 304;
    } else {
      resp.body = std::string(a.body);
    }
    return reply(std::move(resp));
  }
  reply(Error(404, "not_found", "no such path: " + req.path));
}

void Api::Healthz(const Reply& reply) { reply(Json(200, {{"status", "ok"}})); }

void Api::Readyz(const Reply& reply) {
  if (!supervisor_->recovered()) {
    return reply(Error(503, "not_ready", "start-up recovery has not finished"));
  }
  // From what the store's last writes said (the reaper tick probes it):
  // asking the store now would make readiness wait on a locked database.
  StoreExecutor::Health h = store_->health();
  std::string why;
  if (h.last_write_failure) {
    why = std::string("store not writable (") + CodeName(h.last_write_failure->code()) +
          "); the daemon's log says why";
    if (h.last_write_failure->message() != last_readyz_error_) {
      last_readyz_error_ = h.last_write_failure->message();
      log::Warn("not ready: store not writable", {{"error", h.last_write_failure->ToString()}});
    }
  } else if (!supervisor_->lease_held()) {
    why = "this node has no live lease on the shared queue: its runs are stopped and nothing "
          "is claimed until the lease is renewed";
  } else if (h.oldest_write_wait_ms >= kStalledWriteMs) {
    why = "store writes have waited " + std::to_string(h.oldest_write_wait_ms) + " ms (" +
          std::to_string(h.pending_writes) + " waiting); is the database locked?";
  } else {
    last_readyz_error_.clear();
    return reply(Json(200, {{"status", "ready"}}));
  }
  // Open to anyone: the answer names no path; the log has the details.
  reply(Error(503, "not_ready", why));
}

// GET /queue's store part: the counts and the running list, the list already
// serialized (on the reader thread) but for each entry's runtime, which is
// filled in per request. Kept until a write commits or it is
// kQueueSnapshotMaxAgeMs old, so that the loop's cost of a /queue does not
// grow with the number of running jobs.
// Where a running entry of GET /queue is cut open for what is filled in per
// request: runtime_s, and this daemon's live view of the run.
struct LiveSlot {
  size_t offset;
  int64_t started_at;
  int64_t run_id;
};

struct Api::QueueSnapshot {
  QueueSnapshot() = default;
  QueueSnapshot(Status s) : error(std::move(s)) {}  // NOLINT: a failed read
  const Status& status() const { return error; }
  Status error;
  uint64_t commits = 0;  // the executor's commits when the read was posted
  int64_t read_at_mono_ms = 0;
  QueueCounts counts;
  std::vector<NodeInfo> nodes;
  std::string running;  // entries, each cut open where its runtime goes
  std::vector<LiveSlot> runtimes;  // where each entry's live part goes
};

namespace {

// Older than this, the snapshot is read again even without a local commit
// (another process may have written the store).
constexpr int64_t kQueueSnapshotMaxAgeMs = 1000;

void AppendRunningEntry(std::string& out, std::vector<LiveSlot>& runtimes, const RunningBrief& e) {
  out += out.empty() ? "{\"id\":" : ",{\"id\":";
  out += std::to_string(e.job_id);
  out += ",\"run_id\":";
  out += std::to_string(e.run_id);
  out += ",\"node_id\":";
  out += json(e.node_id).dump(-1, ' ', false, json::error_handler_t::replace);
  out += ",\"pid\":";
  out += e.pid ? std::to_string(e.pid) : "null";
  out += ",\"serial_key\":";
  out += e.serial_key ? json(*e.serial_key).dump(-1, ' ', false, json::error_handler_t::replace)
                      : "null";
  out += ",\"started_at\":\"";
  out += FormatRfc3339(e.started_at);
  out += "\",\"runtime_s\":";
  runtimes.push_back({out.size(), e.started_at, e.run_id});
  out += '}';
}

// As nlohmann::json writes a double: shortest round-trip form, ".0" if integral.
void AppendSeconds(std::string& out, int64_t ms) {
  char buf[32];
  double v = static_cast<double>(ms) / 1000.0;
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  std::string_view text(buf, ec == std::errc() ? static_cast<size_t>(end - buf) : 0);
  out += text;
  if (text.find_first_of(".e") == std::string_view::npos) out += ".0";
}

}  // namespace

void Api::Queue(const Reply& reply) {
  uint64_t commits = store_->data_commits();
  const auto& snap = queue_snapshot_;
  if (snap && snap->commits == commits &&
      clock_->MonotonicMs() - snap->read_at_mono_ms < kQueueSnapshotMaxAgeMs) {
    return Guard(reply, [this, reply](const QueueSnapshot& s) { reply(QueueJson(s)); })(*snap);
  }
  // A read in flight serves the requests that arrive meanwhile, but only
  // those it can answer: posted after every commit they may have seen.
  queue_waiters_.push_back({commits, reply});
  if (!queue_reading_) ReadQueue();
}

void Api::ReadQueue() {
  uint64_t commits = store_->data_commits();
  int64_t read_at = clock_->MonotonicMs();
  queue_reading_ = true;
  bool posted = store_->Read(
      [commits, read_at](JobStore& store) -> QueueSnapshot {
        auto counts = store.Counts();
        if (!counts.ok()) return counts.status();
        auto running = store.ListRunningBrief();
        if (!running.ok()) return running.status();
        auto nodes = store.ListNodes();
        if (!nodes.ok()) return nodes.status();
        QueueSnapshot v;
        v.commits = commits;
        v.read_at_mono_ms = read_at;
        v.counts = *counts;
        v.nodes = std::move(nodes).value();
        v.running.reserve(running->size() * 160);
        for (const auto& e : *running) AppendRunningEntry(v.running, v.runtimes, e);
        return v;
      },
      [this](QueueSnapshot view) { OnQueueRead(std::move(view)); });
  if (!posted) OnQueueRead(Status(Code::kUnavailable, "the store is closed"));
}

void Api::OnQueueRead(QueueSnapshot view) {
  queue_reading_ = false;
  std::vector<QueueWaiter> waiters, later;
  waiters.swap(queue_waiters_);
  const Status error = view.error;
  if (error.ok()) queue_snapshot_ = std::make_shared<const QueueSnapshot>(std::move(view));
  for (auto& w : waiters) {
    if (!error.ok()) {
      w.reply(StatusError(error));
    } else if (w.commits > queue_snapshot_->commits) {
      later.push_back(std::move(w));  // it may know of a commit this read missed
    } else {
      Guard(w.reply, [this, &w](const QueueSnapshot& s) { w.reply(QueueJson(s)); })(
          *queue_snapshot_);
    }
  }
  if (later.empty()) return;
  queue_waiters_ = std::move(later);
  ReadQueue();
}

json Api::ClusterJson(const std::vector<NodeInfo>& nodes) const {
  const Config& cfg = supervisor_->config();
  json list = json::array();
  for (const auto& n : nodes) {
    list.push_back({{"node_id", n.node_id},
                    {"incarnation", n.incarnation},
                    {"started_at", FormatRfc3339(n.started_at)},
                    {"heartbeat_at", FormatRfc3339(n.heartbeat_at)},
                    {"lease_until", FormatRfc3339(n.lease_until)},
                    {"alive", n.alive()},
                    {"running", n.running}});
  }
  return {{"backend", cfg.store.backend},
          {"node_id", supervisor_->node_id()},
          {"lease_s", cfg.cluster.lease_s},
          {"lease_held", supervisor_->lease_held()},
          {"nodes", std::move(list)}};
}

HttpResponse Api::QueueJson(const QueueSnapshot& snap) {
  int64_t now = clock_->NowMs();
  const Config& cfg = supervisor_->config();
  const QueueCounts& counts = snap.counts;

  HostFaultState host = supervisor_->host_fault();
  const Metrics& m = *metrics_;
  json body = {
      {"counts",
       {{"queued", counts.queued},
        {"running", counts.running},
        {"succeeded", counts.succeeded},
        {"failed", counts.failed},
        {"cancelled", counts.cancelled}}},
      {"max_concurrency", cfg.supervisor.max_concurrency},
      {"serial_gate_enabled", cfg.supervisor.serial_gate_enabled},
      {"paused", supervisor_->paused()},
      {"oldest_queued_age_s",
       counts.oldest_queued_created_at
           ? json(static_cast<double>(now - *counts.oldest_queued_created_at) / 1000.0)
           : json(nullptr)},
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
      {"cluster", ClusterJson(snap.nodes)},
      {"cgroup",
       {{"mode", CgroupModeName(supervisor_->containment().mode())},
        {"root", supervisor_->containment().tree().root().empty()
                     ? json(nullptr)
                     : json(supervisor_->containment().tree().root())},
        {"why", supervisor_->containment().tree().why()},
        {"stalled_total", m.stalled_total},
        {"oom_kills_total", m.oom_kills_total}}},
      {"supervisor",
       {{"version", ORCH_VERSION},
        {"pid", static_cast<int64_t>(getpid())},
        {"incarnation", supervisor_->incarnation()},
        {"boot_id", boot_id_},
        {"started_at", FormatRfc3339(supervisor_->started_at_ms())},
        {"uptime_s", static_cast<double>(now - supervisor_->started_at_ms()) / 1000.0}}}};
  std::string rest = body.dump(-1, ' ', false, json::error_handler_t::replace);

  HttpResponse resp;
  resp.status = 200;
  resp.content_type = "application/json";
  std::string& out = resp.body;
  out.reserve(snap.running.size() + snap.runtimes.size() * 24 + rest.size() + 16);
  out += "{\"running\":[";
  size_t from = 0;
  for (const auto& slot : snap.runtimes) {
    out.append(snap.running, from, slot.offset - from);
    AppendSeconds(out, now - slot.started_at);
    // Another node's run, or one that ended since the snapshot: null.
    auto live = supervisor_->LiveStats(slot.run_id);
    out += ",\"cpu_s\":";
    if (live && live->cpu_s) {
      AppendSeconds(out, static_cast<int64_t>(std::llround(*live->cpu_s * 1000)));
    } else {
      out += "null";
    }
    out += ",\"mem_bytes\":";
    out += live && live->mem_bytes ? std::to_string(*live->mem_bytes) : "null";
    out += ",\"idle_s\":";
    if (live) {
      AppendSeconds(out, static_cast<int64_t>(std::llround(live->idle_s * 1000)));
    } else {
      out += "null";
    }
    from = slot.offset;
  }
  out.append(snap.running, from, std::string::npos);
  out += "],";
  out.append(rest, 1, std::string::npos);  // the rest of the object, without its '{'
  out += '\n';
  return resp;
}

void Api::Stats(const HttpRequest& req, const Reply& reply) {
  int64_t minutes = 60;
  for (const auto& [k, v] : req.query) {
    if (k != "minutes") return reply(Error(400, "invalid_request", k + ": unknown query parameter"));
    if (!ParseId(v, &minutes) || minutes > 1440) {
      return reply(Error(400, "invalid_request", "minutes: must be an integer from 1 to 1440"));
    }
  }
  // Whole minutes, the current one included.
  int64_t to = (clock_->NowMs() / 60000 + 1) * 60000;
  int64_t from = to - minutes * 60000;
  store_->Read([from, to](JobStore& store) { return store.Throughput(from, to); },
               Guard(reply, [reply, from, to](Result<std::vector<MinuteStats>> rows) {
                 if (!rows.ok()) return reply(StatusError(rows.status()));
                 // Every minute of the window, the quiet ones as zeros.
                 json list = json::array();
                 auto row = rows->begin();
                 for (int64_t m = from; m < to; m += 60000) {
                   MinuteStats s;
                   if (row != rows->end() && row->minute == m) s = *row++;
                   list.push_back(
                       {{"minute", FormatRfc3339(m)},
                        {"started", s.started},
                        {"finished", s.finished},
                        {"succeeded", s.succeeded},
                        {"wait_s_avg", s.wait_ms_avg ? json(*s.wait_ms_avg / 1000.0) : json(nullptr)},
                        {"wait_s_max", s.wait_ms_max
                                           ? json(static_cast<double>(*s.wait_ms_max) / 1000.0)
                                           : json(nullptr)}});
                 }
                 reply(Json(200, {{"from", FormatRfc3339(from)},
                                  {"to", FormatRfc3339(to)},
                                  {"minutes", std::move(list)}}));
               }));
}

void Api::SetPaused(bool paused, const Reply& reply) {
  supervisor_->SetPaused(paused, Guard(reply, [reply, paused](Status s) {
    if (!s.ok()) return reply(StatusError(s));
    reply(Json(200, {{"paused", paused}}));
  }));
}

void Api::Reexec(const Reply& reply) {
  std::string from = supervisor_->incarnation();
  reexec_([reply, from](Status started) {
    if (started.ok()) {
      return reply(Json(202, {{"status", "reexecuting"},
                              {"pid", static_cast<int64_t>(getpid())},
                              {"incarnation", from}}));
    }
    if (started.code() == Code::kUnavailable) {
      return reply(Error(503, "unavailable", started.message()));
    }
    reply(Error(409, "reexec_refused", started.message()));
  });
}

void Api::Submit(const HttpRequest& req, const Reply& reply) {
  auto spec = ParseJobSpec(req.body, supervisor_->config().supervisor.default_max_attempts);
  if (!spec.ok()) return reply(Error(400, "invalid_request", spec.status().message()));
  // A limit this host cannot apply is refused, never ignored.
  const CgroupTree& cgroups = supervisor_->containment().tree();
  CgroupLimits limits{spec->memory_max, spec->cpu_max, spec->pids_max};
  if (std::string field = cgroups.UnsupportedLimit(limits); !field.empty()) {
    return reply(Error(400, "invalid_request", LimitRefusal(cgroups, field)));
  }
  int64_t now = clock_->NowMs();
  // Answered once the commit that holds the job is done (group commit).
  bool queued = store_->TryWrite(
      [spec = std::move(spec).value(), now](JobStore& store) { return store.Submit(spec, now); },
      Guard(reply, [this, reply](Result<SubmitResult> result) {
        if (!result.ok()) {
          log::Error("submit failed", {{"error", result.status().ToString()}});
          return reply(StatusError(result.status()));
        }
        if (result->created) {
          ++metrics_->submitted_total;
          log::Info("job submitted", {{"job_id", result->job.id}, {"name", result->job.name}});
          supervisor_->Kick();
        }
        reply(Json(result->created ? 201 : 200, JobJson(result->job)));
      }));
  if (!queued) {
    ++metrics_->store_refused_total;
    reply(Overloaded());
  }
}

// What GET /jobs reads from the store, in one read.
struct ListView {
  ListView() = default;
  ListView(Status s) : error(std::move(s)) {}  // NOLINT: a failed read
  const Status& status() const { return error; }
  Status error;
  JobPage page;
  std::vector<RunningBrief> running;  // read when the page holds a queued job (blocked_by)
};

void Api::ListJobs(const HttpRequest& req, const Reply& reply) {
  JobQuery q;
  int64_t limit = kDefaultPageLimit;
  std::optional<int64_t> after, before;
  for (const auto& [k, v] : req.query) {
    if (k == "status") {
      if (v.empty()) continue;
      JobStatus s;
      if (!ParseJobStatus(v, &s)) {
        return reply(Error(400, "invalid_request",
                           "status: must be one of queued, running, succeeded, failed, cancelled"));
      }
      q.status = s;
    } else if (k == "name") {
      q.name_contains = v;
    } else if (k == "serial_key") {
      if (!v.empty()) q.serial_key = v;
    } else if (k == "order") {
      if (v != "asc" && v != "desc") {
        return reply(Error(400, "invalid_request", "order: must be asc or desc"));
      }
      q.newest_first = v == "desc";
    } else if (k == "limit") {
      if (!ParseId(v, &limit)) {
        return reply(Error(400, "invalid_request", "limit: must be a positive integer"));
      }
      limit = std::min(limit, kMaxPageLimit);
    } else if (k == "after_id" || k == "before_id") {
      int64_t id = 0;
      if (v != "0" && !ParseId(v, &id)) {
        return reply(Error(400, "invalid_request", k + ": must be a non-negative integer"));
      }
      (k == "after_id" ? after : before) = id;
    } else {
      return reply(Error(400, "invalid_request", k + ": unknown query parameter"));
    }
  }
  if ((q.newest_first && after) || (!q.newest_first && before)) {
    return reply(Error(400, "invalid_request",
                       q.newest_first ? "after_id: pages of order=desc continue with before_id"
                                      : "before_id: only with order=desc"));
  }
  q.cursor = q.newest_first ? before.value_or(0) : after.value_or(0);
  store_->Read(
      [q, limit](JobStore& store) -> ListView {
        ListView v;
        auto page = store.ListJobs(q, limit, static_cast<int64_t>(kMaxPageBytes));
        if (!page.ok()) return page.status();
        v.page = std::move(page).value();
        bool queued = std::any_of(v.page.jobs.begin(), v.page.jobs.end(),
                                  [](const Job& j) { return j.status == JobStatus::kQueued; });
        if (queued) {
          auto running = store.ListRunningBrief();
          if (!running.ok()) return running.status();
          v.running = std::move(running).value();
        }
        return v;
      },
      Guard(reply, [this, reply, newest_first = q.newest_first](ListView view) {
        if (!view.error.ok()) return reply(StatusError(view.error));
        // Capped in bytes as well as rows: a page of jobs with huge argv or
        // env must not become one huge response. At least one job always fits.
        json jobs = json::array();
        size_t bytes = 0;
        std::optional<int64_t> next = view.page.next_cursor;
        for (const auto& j : view.page.jobs) {
          json item = JobJson(j);
          if (j.status == JobStatus::kQueued) {
            item["blocked_by"] = BlockedBy(j, nullptr, view.running);
          }
          size_t size = item.dump().size();
          if (!jobs.empty() && bytes + size > kMaxPageBytes) {
            next = jobs.back().at("id").get<int64_t>();
            break;
          }
          bytes += size;
          jobs.push_back(std::move(item));
        }
        const char* cursor = newest_first ? "next_before_id" : "next_after_id";
        reply(Json(200, {{"jobs", jobs}, {cursor, Opt(next)}}));
      }));
}

// What GET /jobs/{id} reads from the store, in one read.
struct JobView {
  JobView() = default;
  JobView(Status s) : error(std::move(s)) {}  // NOLINT: a failed read
  const Status& status() const { return error; }
  Status error;
  Job job;
  std::vector<Run> runs;
  std::vector<RunningBrief> running;  // read for a queued job only (blocked_by)
};

void Api::GetJob(int64_t id, const Reply& reply) {
  store_->Read(
      [id](JobStore& store) -> JobView {
        JobView v;
        auto job = store.GetJob(id);
        if (!job.ok()) return job.status();
        v.job = std::move(job).value();
        auto runs = store.GetRuns(id);
        if (!runs.ok()) return runs.status();
        v.runs = std::move(runs).value();
        if (v.job.status == JobStatus::kQueued) {
          auto running = store.ListRunningBrief();
          if (!running.ok()) return running.status();
          v.running = std::move(running).value();
        }
        return v;
      },
      Guard(reply, [this, reply](JobView view) {
        if (!view.error.ok()) return reply(StatusError(view.error));
        reply(JobWithRuns(view.job, view.runs, view.running));
      }));
}

HttpResponse Api::JobWithRuns(const Job& job, const std::vector<Run>& runs,
                              const std::vector<RunningBrief>& running) {
  json body = JobJson(job);
  json run_list = json::array();
  for (const auto& r : runs) run_list.push_back(RunJson(r));
  body["runs"] = run_list;
  if (job.status != JobStatus::kQueued) return Json(200, body);

  const Run* open_run = nullptr;
  for (const auto& r : runs) {
    if (!r.ended_at) open_run = &r;
  }
  body["blocked_by"] = BlockedBy(job, open_run, running);
  return Json(200, body);
}

json Api::BlockedBy(const Job& job, const Run* open_run,
                    const std::vector<RunningBrief>& running) const {
  int64_t now = clock_->NowMs();
  const Config& cfg = supervisor_->config();
  HostFaultState host = supervisor_->host_fault();
  if (supervisor_->paused()) return {{"reason", "paused"}};
  if (open_run != nullptr) {
    // Not claimed until the I1 sweep has checked that run's process.
    return {{"reason", "open_run"},
            {"run_id", open_run->id},
            {"pid", open_run->identity.pid ? json(open_run->identity.pid) : json(nullptr)},
            {"sanitize_enabled", cfg.reaper.sanitize_impossible_queued}};
  }
  if (job.not_before > now) {
    return {{"reason", "not_before"}, {"until", FormatRfc3339(job.not_before)}};
  }
  if (cfg.supervisor.serial_gate_enabled && job.serial_key) {
    for (const auto& e : running) {
      if (e.serial_key == job.serial_key) {
        // Another node's process is not ours to look at: its liveness
        // is that node's to say (null here).
        bool mine = supervisor_->Mine(e.node_id);
        return {{"reason", "serial_key"},
                {"key", *job.serial_key},
                {"run_id", e.run_id},
                {"node_id", e.node_id},
                {"pid", e.pid ? json(e.pid) : json(nullptr)},
                {"alive", mine ? json(supervisor_->IsRunAlive(e.run_id)) : json(nullptr)}};
      }
    }
  }
  // max_concurrency is this node's: its own runs hold the slots.
  json held = json::array();
  for (const auto& e : running) {
    if (supervisor_->Mine(e.node_id)) held.push_back(e.run_id);
  }
  if (static_cast<int64_t>(held.size()) >= cfg.supervisor.max_concurrency) {
    return {{"reason", "max_concurrency"}, {"held_by", held}};
  }
  if (host.backoff_left_ms > 0) {
    return {{"reason", "host_fault"},
            {"until", FormatRfc3339(host.backoff_until_ms)},
            {"error", host.last_error}};
  }
  return nullptr;
}

void Api::CancelJob(int64_t id, const Reply& reply) {
  supervisor_->Cancel(id, Guard(reply, [reply](Result<CancelResult> result) {
    if (!result.ok()) return reply(StatusError(result.status()));
    reply(Json(202, JobJson(result->job)));
  }));
}

void Api::RetryJob(int64_t id, const Reply& reply) {
  int64_t now = clock_->NowMs();
  bool queued = store_->TryWrite([id, now](JobStore& store) { return store.Retry(id, now); },
                                 Guard(reply, [this, id, reply](Result<Job> job) {
                                   if (!job.ok()) return reply(StatusError(job.status()));
                                   log::Info("job retried", {{"job_id", id}});
                                   supervisor_->Kick();
                                   reply(Json(200, JobJson(*job)));
                                 }));
  if (!queued) {
    ++metrics_->store_refused_total;
    reply(Overloaded());
  }
}

void Api::Log(int64_t id, const HttpRequest& req, const Reply& reply) {
  std::string stream = "stdout";
  std::optional<int64_t> tail;
  std::optional<int64_t> offset, run_id;
  std::optional<std::string> cut;
  for (const auto& [k, v] : req.query) {
    if (k == "run_id") {
      int64_t n = 0;
      if (!ParseId(v, &n)) {
        return reply(Error(400, "invalid_request", "run_id: must be a positive integer"));
      }
      run_id = n;
    } else if (k == "cut") {
      cut = v;
    } else if (k == "stream") {
      if (v != "stdout" && v != "stderr") {
        return reply(Error(400, "invalid_request", "stream: must be stdout or stderr"));
      }
      stream = v;
    } else if (k == "tail_bytes") {
      int64_t n = 0;
      if (v != "0" && !ParseId(v, &n)) {
        return reply(Error(400, "invalid_request", "tail_bytes: must be a non-negative integer"));
      }
      tail = n;
    } else if (k == "offset") {
      int64_t n = 0;
      if (v != "0" && !ParseId(v, &n)) {
        return reply(Error(400, "invalid_request", "offset: must be a non-negative integer"));
      }
      offset = n;
    } else {
      return reply(Error(400, "invalid_request", k + ": unknown query parameter"));
    }
  }
  if (tail && offset) {
    return reply(Error(400, "invalid_request", "offset: cannot be combined with tail_bytes"));
  }
  store_->Read(
      [id](JobStore& store) -> Result<std::vector<Run>> {
        auto job = store.GetJob(id);  // 404 for an unknown job
        if (!job.ok()) return job.status();
        return store.GetRuns(id);
      },
      Guard(reply, [this, id, stream, tail, offset, run_id, cut,
                    reply](Result<std::vector<Run>> runs) {
        if (!runs.ok()) return reply(StatusError(runs.status()));
        reply(LogFile(id, *runs, LogQuery{stream, tail, offset, run_id, cut}));
      }));
}

HttpResponse Api::LogFile(int64_t id, const std::vector<Run>& runs, const LogQuery& q) {
  // The run asked for, else the newest run that has a log.
  const Run* run = nullptr;
  for (const auto& r : runs) {
    if (q.run_id ? r.id == *q.run_id
                 : !r.log_path.empty() && (run == nullptr || r.id > run->id)) {
      run = &r;
    }
  }
  if (run == nullptr && q.run_id) {
    return Error(404, "not_found",
                 "job " + std::to_string(id) + " has no run " + std::to_string(*q.run_id));
  }
  if (run == nullptr || run->log_path.empty()) {
    return Error(404, "no_log", "job " + std::to_string(id) + " has no log yet");
  }
  const LogStream stream = q.stream == "stderr" ? LogStream::kStderr : LogStream::kStdout;
  if (!supervisor_->Mine(run->node_id)) {
    // Logs stay on the host that ran the job.
    return Error(404, "log_on_other_node",
                 "the log of run " + std::to_string(run->id) + " is on node " + run->node_id +
                     "; ask that node's API");
  }
  // By ids, never by the stored path; a name that is not the daemon's own
  // regular file (a job swapped in a link or a FIFO) is refused.
  auto opened = supervisor_->log_dir().OpenForRead(id, run->id, stream);
  // Read the run's state before the file's size: a run closed by then has
  // written its last byte, so a follower may stop at this answer's end.
  const char* complete = run->ended_at ? "true" : "false";
  if (!opened.ok()) {
    if (opened.status().code() == Code::kNotFound) {
      HttpResponse empty;
      empty.content_type = "text/plain; charset=utf-8";
      empty.headers.emplace_back("X-Run-Id", std::to_string(run->id));
      empty.headers.emplace_back("X-Log-Offset", "0");
      empty.headers.emplace_back("X-Log-Complete", complete);
      return empty;
    }
    if (opened.status().code() == Code::kPermission) {
      log::Warn("refused to serve a log", {{"job_id", id}, {"run_id", run->id},
                                           {"error", opened.status().message()}});
      return Error(403, "log_refused", opened.status().message());
    }
    return Error(500, "log_unreadable", opened.status().message());
  }
  int fd = opened->Release();
  struct stat st {};
  fstat(fd, &st);
  int64_t size = st.st_size;
  int64_t offset = q.tail && *q.tail < size ? size - *q.tail : 0;
  HttpResponse resp;
  resp.status = 200;
  resp.content_type = "text/plain; charset=utf-8";
  // A live run's log is cut back to max_log_bytes on reaper ticks and the
  // job goes on appending there: the bytes before the cap never change,
  // those after it are new since the last cut.
  // The cut count, as "<incarnation>/<bytes>": a count from before a restart
  // (it starts again at 0) is never compared with this one.
  std::optional<int64_t> cut_bytes = supervisor_->LogCutBytes(run->id, stream);
  const std::string cut_prefix = supervisor_->incarnation() + "/";
  std::string cut = cut_prefix + std::to_string(cut_bytes.value_or(0));
  if (q.from) {
    const int64_t cap = supervisor_->config().supervisor.max_log_bytes;
    // Cut after the client read past the cap (the file is shorter than its
    // offset, or the client's cut count is stale): it goes on from the cap,
    // where what came since the cut starts.
    bool stale = cut_bytes && q.cut && q.cut->starts_with(cut_prefix) && *q.cut != cut;
    bool cut_since = *q.from > size || (*q.from > cap && stale);
    offset = std::min(*q.from, size);
    if (cut_since) {
      resp.headers.emplace_back("X-Log-Truncated", "true");
      offset = std::min(cap, size);
    }
  }
  if (cut_bytes) resp.headers.emplace_back("X-Log-Cut", cut);
  resp.headers.emplace_back("X-Run-Id", std::to_string(run->id));
  // Where the next ?offset= starts: this answer's end.
  resp.headers.emplace_back("X-Log-Offset", std::to_string(size));
  resp.headers.emplace_back("X-Log-Complete", complete);
  resp.file_fd = fd;
  resp.file_offset = offset;
  resp.file_length = size - offset;
  return resp;
}

void Api::MetricsText(const Reply& reply) {
  store_->Read([](JobStore& store) { return store.Counts(); },
               Guard(reply, [this, reply](Result<QueueCounts> counts) { reply(MetricsBody(counts)); }));
}

HttpResponse Api::MetricsBody(const Result<QueueCounts>& counts) {
  std::ostringstream o;
  auto family = [&](const char* name, const char* type, const char* help) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  const Metrics& m = *metrics_;
  const Config& cfg = supervisor_->config();

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
  for (const char* outcome : {"succeeded", "failed", "transient", "timeout", "stalled",
                              "cancelled", "lost", "interrupted", "spawn_failed"}) {
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
  family("orchestrator_lease_held", "gauge",
         "1 while this node holds a live lease on the queue (always 1 on SQLite).");
  o << "orchestrator_lease_held " << (supervisor_->lease_held() ? 1 : 0) << '\n';
  counter("orchestrator_lease_renewals_total", "Lease renewals that committed.",
          m.lease_renewals_total);
  counter("orchestrator_lease_renewal_failures_total", "Lease renewals that failed.",
          m.lease_renewal_failures_total);
  counter("orchestrator_lease_lost_total",
          "Times this node lost its lease and stopped its runs (lease_lost).", m.lease_lost_total);
  counter("orchestrator_rescued_runs_total",
          "Runs of nodes whose lease ran out that this node closed (node_lost).",
          m.rescued_runs_total);
  counter("orchestrator_handovers_total",
          "Times the daemon re-executed itself in place, keeping its runs (SPEC §14).",
          m.handovers_total);
  counter("orchestrator_runs_continued_total",
          "Runs handed from one image of the daemon to the next without being touched.",
          m.runs_continued_total);
  family("orchestrator_last_handover_pause_seconds", "gauge",
         "How long the last re-exec stopped the event loop (0 = none yet).");
  o << "orchestrator_last_handover_pause_seconds " << m.last_handover_pause_s << '\n';
  counter("orchestrator_stalled_total",
          "Runs stopped for making no progress for stall_timeout_s (outcome stalled).",
          m.stalled_total);
  counter("orchestrator_oom_kills_total", "Runs failed because the OOM killer struck in their cgroup.",
          m.oom_kills_total);
  {
    CgroupMode mode = supervisor_->containment().mode();
    family("orchestrator_cgroup_mode", "gauge",
           "1 for the cgroup mode runs are contained in: full, tracking or none.");
    for (CgroupMode each : {CgroupMode::kFull, CgroupMode::kTracking, CgroupMode::kNone}) {
      o << "orchestrator_cgroup_mode{mode=\"" << CgroupModeName(each) << "\"} "
        << (each == mode ? 1 : 0) << '\n';
    }
  }
  counter("orchestrator_store_errors_total", "Store operations that failed.", m.store_errors_total);
  counter("orchestrator_guard_missed_total", "Guarded transitions that matched no row.",
          m.guard_missed_total);
  {
    StoreExecutor::Health h = store_->health();
    family("orchestrator_store_pending", "gauge", "Store work posted and not yet answered.");
    o << "orchestrator_store_pending{lane=\"write\"} " << h.pending_writes << '\n';
    o << "orchestrator_store_pending{lane=\"read\"} " << h.pending_reads << '\n';
    family("orchestrator_store_client_writes_waiting", "gauge",
           "Client writes (submit, retry) waiting for the store; at store.max_pending_writes "
           "more are refused.");
    o << "orchestrator_store_client_writes_waiting " << h.pending_client_writes << '\n';
    family("orchestrator_store_oldest_write_wait_seconds", "gauge",
           "How long the oldest unanswered write has waited for the store.");
    o << "orchestrator_store_oldest_write_wait_seconds "
      << static_cast<double>(h.oldest_write_wait_ms) / 1000.0 << '\n';
    counter("orchestrator_store_commits_total", "Group transactions committed.", h.batches);
    counter("orchestrator_store_committed_writes_total",
            "Writes committed (several share one commit under load).", h.batched_writes);
    counter("orchestrator_store_refused_total",
            "Client writes refused with 503 because too many were waiting for the store.",
            m.store_refused_total);
  }

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

  HttpResponse resp;
  resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
  resp.body = o.str();
  return resp;
}

}  // namespace orch
