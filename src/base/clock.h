// Wall-clock time in milliseconds since the Unix epoch, injectable so that
// backoff, not_before and timeouts can be tested without sleeping (STYLE §9).
#pragma once

#include <cstdint>
#include <string>

namespace orch {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMs() const;
};

// "2026-11-28T05:42:29.123Z" for a time in ms since the epoch.
std::string FormatRfc3339(int64_t ms);

// CLOCK_MONOTONIC in nanoseconds (for latencies, never stored).
int64_t MonotonicNs();

}  // namespace orch
