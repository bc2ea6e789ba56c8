// The `orchestrator` command line (SPEC §9): parses arguments with CLI11 and
// dispatches to the daemon, the offline db tools or the HTTP client.
#pragma once

namespace orch {

// Returns the process exit status: 0 ok, 1 the server said no / violations
// found, 2 usage or configuration error, 3 server unreachable.
int RunCli(int argc, char** argv);

}  // namespace orch
