// `orchestrator serve`: one Daemon owns the uv loop, the store, the
// supervisor and the HTTP server (STYLE §9).
#pragma once

#include "config/config.h"

namespace orch {

// Runs in the foreground until SIGTERM/SIGINT; returns the exit status
// (0 after a clean stop, 2 when start-up fails: store, listen, token file).
int RunDaemon(const LoadedConfig& loaded, const ConfigInputs& inputs);

}  // namespace orch
