#include "supervisor/metrics.h"

namespace orch {

void Histogram::Observe(double v) {
  ++count_;
  sum_ += v;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (v <= bounds_[i]) {
      ++counts_[i];
      return;
    }
  }
}

uint64_t Metrics::LostTotal() const {
  uint64_t n = 0;
  for (const auto& [reason, count] : lost_total) n += count;
  return n;
}

}  // namespace orch
