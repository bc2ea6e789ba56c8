// `orchestrator serve`: one Daemon owns the uv loop, the store, the
// supervisor and the HTTP server (STYLE §9).
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "config/config.h"

namespace orch {

struct DaemonArgs {
  // The command line the daemon was started with (argv[0] first, without
  // the --handover-* options): a re-exec runs it again.
  std::vector<std::string> argv;
  int handover_fd = -1;  // --handover-fd: this image follows a re-exec (SPEC §14)
  std::string handover_from;  // --handover-from: the incarnation before it
};

// Runs in the foreground until SIGTERM/SIGINT; returns the exit status
// (0 after a clean stop, 2 when start-up fails: store, listen, token file).
// SIGUSR2 (or POST /admin/reexec) re-executes it in place, runs untouched.
int RunDaemon(const LoadedConfig& loaded, const ConfigInputs& inputs, const DaemonArgs& args);

// `serve --self-check`, what a re-exec runs on the new binary first: the
// config loaded, the store opened read-only with a schema this binary can
// use, the token file and run_as usable. 0 when it would start, else 2.
int SelfCheck(const LoadedConfig& loaded, std::ostream& out, std::ostream& err);

}  // namespace orch
