// The HTTP API of SPEC §7 on top of the store and the supervisor. Handle()
// is the synchronous handler the HttpServer calls on the loop thread.
#pragma once

#include <string>

#include "base/clock.h"
#include "http/http_types.h"
#include "http/job_spec_parser.h"
#include "store/job_store.h"
#include "supervisor/metrics.h"
#include "supervisor/supervisor.h"

namespace orch {

class Api {
 public:
  // `token` empty = no authentication. All pointers outlive the Api.
  Api(JobStore* store, Supervisor* supervisor, Metrics* metrics, const Clock* clock,
      std::string token, std::string boot_id);

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

  JobStore* store_;
  Supervisor* supervisor_;
  Metrics* metrics_;
  const Clock* clock_;
  std::string token_;
  std::string boot_id_;
};

}  // namespace orch
