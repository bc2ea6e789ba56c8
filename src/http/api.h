// The HTTP API of SPEC §7 on top of the store and the supervisor. Handle()
// is the synchronous handler the HttpServer calls on the loop thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "http/http_parser.h"
#include "http/http_types.h"
#include "http/job_spec_parser.h"
#include "store/job_store.h"
#include "supervisor/metrics.h"
#include "supervisor/supervisor.h"

namespace orch {

class Api {
 public:
  // `token` empty = no authentication. `allowed_hosts`: Host values accepted
  // besides loopback names. All pointers outlive the Api.
  Api(JobStore* store, Supervisor* supervisor, Metrics* metrics, const Clock* clock,
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

  void Handle(const HttpRequest& req, HttpResponse& resp);

 private:
  // Returns the route label for metrics ("/jobs/{id}", "unknown").
  std::string Route(const HttpRequest& req, HttpResponse& resp);

  void Healthz(HttpResponse& resp);
  void Readyz(HttpResponse& resp);
  void Queue(HttpResponse& resp);
  void SetPaused(bool paused, HttpResponse& resp);
  void Submit(const HttpRequest& req, HttpResponse& resp);
  void ListJobs(const HttpRequest& req, HttpResponse& resp);
  void GetJob(int64_t id, HttpResponse& resp);
  void CancelJob(int64_t id, HttpResponse& resp);
  void RetryJob(int64_t id, HttpResponse& resp);
  void Log(int64_t id, const HttpRequest& req, HttpResponse& resp);
  void MetricsText(HttpResponse& resp);
  bool Authorized(const HttpRequest& req) const;
  bool HostAllowed(const std::string& host) const;

  JobStore* store_;
  Supervisor* supervisor_;
  Metrics* metrics_;
  const Clock* clock_;
  std::string token_;
  std::string boot_id_;
  std::vector<std::string> allowed_hosts_;
  mutable std::string last_readyz_error_;
};

}  // namespace orch
