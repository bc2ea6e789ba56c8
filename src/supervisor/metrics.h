// Counters and histograms shared by the supervisor and the HTTP API, read by
// GET /queue (reaper block) and GET /metrics. Loop thread only.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace orch {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size()) {}
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  const std::vector<uint64_t>& counts() const { return counts_; }  // per bucket, not cumulative
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  double sum_ = 0;
};

struct Metrics {
  uint64_t submitted_total = 0;
  uint64_t claimed_total = 0;
  std::map<std::string, uint64_t> finished_total;  // by run outcome
  std::map<std::string, uint64_t> lost_total;      // by reason
  uint64_t spawn_failures_total = 0;  // the job's fault (spawn_failed)
  uint64_t host_faults_total = 0;     // the host's fault (interrupted, requeued)
  uint64_t reaper_ticks_total = 0;
  uint64_t reaper_errors_total = 0;
  uint64_t reaped_total = 0;        // runs closed by the reaper or recovery (lost, orphans)
  uint64_t timeouts_total = 0;
  uint64_t stalled_total = 0;     // runs stopped for no progress (SPEC §12)
  uint64_t oom_kills_total = 0;   // runs failed by the OOM killer
  uint64_t orphans_total = 0;
  uint64_t impossible_queued_total = 0;
  uint64_t guard_missed_total = 0;
  uint64_t store_errors_total = 0;
  uint64_t store_refused_total = 0;  // client writes refused: too many waiting
  int64_t last_tick_at_ms = 0;
  // Several hosts on one queue (SPEC §11).
  uint64_t lease_renewals_total = 0;
  uint64_t lease_renewal_failures_total = 0;
  uint64_t lease_lost_total = 0;       // times this node lost its lease
  uint64_t rescued_runs_total = 0;     // runs of dead nodes this node closed
  // Re-exec in place (SPEC §14): carried over from image to image.
  uint64_t handovers_total = 0;
  uint64_t runs_continued_total = 0;  // runs handed from one image to the next
  double last_handover_pause_s = 0;   // last loop turn of the old image → first of the new
  // exit detection: pidfd readable -> run closed in the store
  Histogram exit_detection_seconds{{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05, 0.1, 0.25, 1}};
  Histogram run_duration_seconds{{0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400}};
  std::map<std::pair<std::string, int>, uint64_t> http_requests_total;  // (route, code)

  uint64_t LostTotal() const;
};

}  // namespace orch
