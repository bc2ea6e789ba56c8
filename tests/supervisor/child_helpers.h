// Helpers for the supervisor tests that start real children through Spawn:
// a request with logs in a temp dir, waiting on a pidfd with a deadline, and
// killing + reaping what a test started.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>

#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "supervisor/pidfd.h"
#include "supervisor/spawner.h"
#include "support/test_util.h"

namespace orch::test {

// A request whose stdout/stderr go to out.log and err.log in a temp dir,
// opened here the way the supervisor opens a run's logs (O_APPEND, 0640).
struct TestRequest : SpawnRequest {
  std::string stdout_path, stderr_path;
  UniqueFd out, err;
};

inline TestRequest RequestFor(const TempDir& dir, std::vector<std::string> argv) {
  TestRequest req;
  req.argv = std::move(argv);
  req.env = {{"PATH", "/usr/bin:/bin"}};
  req.stdout_path = dir.File("out.log");
  req.stderr_path = dir.File("err.log");
  req.out = UniqueFd(open(req.stdout_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  req.err = UniqueFd(open(req.stderr_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  EXPECT_TRUE(req.out.valid() && req.err.valid()) << "cannot open logs in " << dir.path();
  req.stdout_fd = req.out.get();
  req.stderr_fd = req.err.get();
  return req;
}

// Waits until the pidfd polls readable (the process exited) or `timeout_ms`.
inline bool WaitExited(const Pidfd& pidfd, int timeout_ms = 10000) {
  pollfd p{pidfd.get(), POLLIN, 0};
  int rc;
  do {
    rc = poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  return rc > 0 && (p.revents & POLLIN) != 0;
}

// Waits for exit, then reaps through ReapPidfd. nullopt on timeout or error.
inline std::optional<ExitInfo> WaitAndReap(const Pidfd& pidfd, int timeout_ms = 10000) {
  if (!WaitExited(pidfd, timeout_ms)) return std::nullopt;
  auto r = ReapPidfd(pidfd.get());
  if (!r.ok()) return std::nullopt;
  return *r;
}

// Kills (SIGKILL through the pidfd) and reaps a child a test started.
inline void KillAndReap(const Pidfd& pidfd) {
  if (!pidfd.valid()) return;
  (void)pidfd.SendSignal(SIGKILL);
  (void)WaitAndReap(pidfd);
}

// Spawns argv and expects success; the test owns the returned process.
inline SpawnedProcess SpawnOk(const SpawnRequest& req) {
  SpawnOutcome out = Spawn(req);
  EXPECT_TRUE(out.ok) << out.failure.message;
  return std::move(out.process);
}

// Runs argv to completion; returns its exit info (nullopt on failure).
inline std::optional<ExitInfo> RunToExit(const SpawnRequest& req) {
  SpawnOutcome out = Spawn(req);
  EXPECT_TRUE(out.ok) << out.failure.message;
  if (!out.ok) return std::nullopt;
  return WaitAndReap(out.process.pidfd);
}

}  // namespace orch::test
