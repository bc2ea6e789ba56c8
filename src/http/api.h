// The HTTP API of SPEC §7 on top of the store and the supervisor. Handle()
// is the HttpServer's handler, on the loop thread: a request that needs the
// store posts its work to the StoreExecutor and answers when the result
// comes back, so no request ever makes the loop wait on the database.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "http/http_parser.h"
#include "http/http_types.h"
#include "http/job_spec_parser.h"
#include "http/server.h"
#include "store/job_store.h"
#include "store/store_executor.h"
#include "supervisor/metrics.h"
#include "supervisor/supervisor.h"

namespace orch {

class Api {
 public:
  // `token` empty = no authentication. `allowed_hosts`: Host values accepted
  // besides loopback names. All pointers outlive the Api.
  Api(StoreExecutor* store, Supervisor* supervisor, Metrics* metrics, const Clock* clock,
      std::string token, std::string boot_id, std::vector<std::string> allowed_hosts = {});

  // The HttpServer's admit hook: judges a request's head before its body is
  // read (SPEC §7). Over TCP: a Host that is not loopback or allowed → 421
  // (DNS rebinding), an Origin that is not this server's → 403, no valid
  // bearer token → 401 (/healthz, /readyz and /metrics need neither Host nor
  // token). Any listener: a POST carrying a body or a Content-Type that is not
  // application/json → 415 (no cross-site "simple" requests). The unix
  // socket's permissions are its authentication; its mutating requests are
  // logged with the peer's uid.
  std::optional<HttpError> Admit(const HttpRequest& head) const;

  void Handle(const HttpRequest& req, HttpResponder respond);

  // POST /admin/reexec (SPEC §14): `start` begins a re-exec and calls its
  // argument with Ok once the new binary passed its self-check, or with why
  // not. Unset: 404.
  using ReexecStarter = std::function<void(std::function<void(Status)>)>;
  void SetReexec(ReexecStarter start) { reexec_ = std::move(start); }

 private:
  // Sends a response (now or once the store has answered).
  using Reply = std::function<void(HttpResponse)>;

  // The route label for metrics ("/jobs/{id}", "unknown").
  static std::string RouteLabel(const HttpRequest& req);
  void Route(const HttpRequest& req, const Reply& reply);

  // GET / and /ui/<file>: the status page (SPEC §13), 404 with server.ui off.
  void UiFile(const HttpRequest& req, const Reply& reply);
  void Healthz(const Reply& reply);
  void Readyz(const Reply& reply);
  void Queue(const Reply& reply);
  // GET /stats: runs started and finished per minute, and first attempts'
  // wait from submit to claim, over the last `minutes` (the throughput
  // chart of the status page).
  void Stats(const HttpRequest& req, const Reply& reply);
  void SetPaused(bool paused, const Reply& reply);
  void Reexec(const Reply& reply);
  void Submit(const HttpRequest& req, const Reply& reply);
  void ListJobs(const HttpRequest& req, const Reply& reply);
  void GetJob(int64_t id, const Reply& reply);
  void CancelJob(int64_t id, const Reply& reply);
  void RetryJob(int64_t id, const Reply& reply);
  void Log(int64_t id, const HttpRequest& req, const Reply& reply);
  void MetricsText(const Reply& reply);
  // The responses, built on the loop from what the store returned.
  struct QueueSnapshot;
  void ReadQueue();
  void OnQueueRead(QueueSnapshot view);
  HttpResponse QueueJson(const QueueSnapshot& snap);
  nlohmann::json ClusterJson(const std::vector<NodeInfo>& nodes) const;
  HttpResponse JobWithRuns(const Job& job, const std::vector<Run>& runs,
                           const std::vector<RunningBrief>& running);
  // Why a queued job is not running yet, with proof; null when nothing
  // holds it. `open_run`: its run still open (null when not read).
  nlohmann::json BlockedBy(const Job& job, const Run* open_run,
                           const std::vector<RunningBrief>& running) const;
  // GET /jobs/{id}/log's query: the run (newest with a log when unset), the
  // last N bytes, or from an offset with the X-Log-Cut the client last saw.
  struct LogQuery {
    std::string stream;
    std::optional<int64_t> tail, from, run_id;
    std::optional<std::string> cut;
  };
  HttpResponse LogFile(int64_t id, const std::vector<Run>& runs, const LogQuery& q);
  HttpResponse MetricsBody(const Result<QueueCounts>& counts);
  bool Authorized(const HttpRequest& req) const;
  bool HostAllowed(const std::string& host) const;

  StoreExecutor* store_;
  Supervisor* supervisor_;
  Metrics* metrics_;
  const Clock* clock_;
  std::string token_;
  std::string boot_id_;
  std::vector<std::string> allowed_hosts_;
  mutable std::string last_readyz_error_;
  std::shared_ptr<const QueueSnapshot> queue_snapshot_;
  struct QueueWaiter {
    uint64_t commits;  // the store's data commits when the request came
    Reply reply;
  };
  std::vector<QueueWaiter> queue_waiters_;  // for the /queue read in flight
  bool queue_reading_ = false;
  ReexecStarter reexec_;
};

}  // namespace orch
