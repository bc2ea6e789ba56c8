// The daemon's two clocks, injectable so that backoff, not_before and
// timeouts can be tested without sleeping (STYLE §9). Wall time is for
// timestamps shown and stored; every duration (timeouts, grace periods,
// backoff waits) is measured on the monotonic clock, so a step of the system
// clock neither postpones a SIGKILL nor times out a healthy job.
#pragma once

#include <cstdint>
#include <string>

namespace orch {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch (CLOCK_REALTIME).
  virtual int64_t NowMs() const;
  // Milliseconds on CLOCK_MONOTONIC: only differences mean anything.
  virtual int64_t MonotonicMs() const;
  // Milliseconds on CLOCK_BOOTTIME: like MonotonicMs, but it also runs while
  // the machine is suspended (leases must count that time as gone).
  virtual int64_t BoottimeMs() const;
};

// "2026-11-28T05:42:29.123Z" for a time in ms since the epoch.
std::string FormatRfc3339(int64_t ms);

// CLOCK_MONOTONIC in nanoseconds (for latencies, never stored).
int64_t MonotonicNs();

}  // namespace orch
