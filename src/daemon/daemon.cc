#include "daemon/daemon.h"

#include <uv.h>

#include "base/log.h"

namespace orch {

int RunDaemon(const LoadedConfig& loaded, const ConfigInputs&) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_signal_t sigint, sigterm;
  uv_signal_init(&loop, &sigint);
  uv_signal_init(&loop, &sigterm);
  auto stop = [](uv_signal_t* h, int signum) {
    log::Info("stopping", {{"signal", signum}});
    uv_stop(h->loop);
  };
  uv_signal_start(&sigint, stop, SIGINT);
  uv_signal_start(&sigterm, stop, SIGTERM);
  log::Info("orchestrator started", {{"config", loaded.file}, {"db", loaded.config.store.path}});
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  log::Info("stopped");
  return 0;
}

}  // namespace orch
