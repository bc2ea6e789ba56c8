#include "cli/cli.h"

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "base/log.h"
#include "cli/client_commands.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "store/db_tools.h"
#include "supervisor/identity.h"

namespace orch {
namespace {

struct ConfigFlags {
  std::string file;
  std::vector<std::string> sets;
  std::string listen, db_path, log_level, max_concurrency;
};

void AddConfigFlags(CLI::App* cmd, ConfigFlags* f) {
  cmd->add_option("-c,--config", f->file, "configuration file (default: ./orchestrator.toml)");
  cmd->add_option("--set", f->sets, "override a key: --set supervisor.max_concurrency=4")
      ->type_name("KEY=VALUE");
  cmd->add_option("--listen", f->listen, "same as --set server.listen=ADDR");
  cmd->add_option("--db", f->db_path, "same as --set store.path=PATH");
  cmd->add_option("--max-concurrency", f->max_concurrency,
                  "same as --set supervisor.max_concurrency=N");
  cmd->add_option("--log-level", f->log_level, "same as --set log.level=LEVEL");
}

ConfigInputs ToInputs(const ConfigFlags& f) {
  ConfigInputs in;
  in.file = f.file;
  in.file_required = !f.file.empty();
  in.env = ProcessEnvironment();
  for (const auto& s : f.sets) {
    size_t eq = s.find('=');
    in.flags.emplace_back(s.substr(0, eq), eq == std::string::npos ? "" : s.substr(eq + 1));
  }
  if (!f.listen.empty()) in.flags.emplace_back("server.listen", f.listen);
  if (!f.db_path.empty()) in.flags.emplace_back("store.path", f.db_path);
  // Validated with the other flags by the config loader (range and all).
  if (!f.max_concurrency.empty()) in.flags.emplace_back("supervisor.max_concurrency", f.max_concurrency);
  if (!f.log_level.empty()) in.flags.emplace_back("log.level", f.log_level);
  return in;
}

// Loads the config or prints every error and returns false.
bool Load(const ConfigInputs& in, LoadedConfig* out) {
  *out = LoadConfig(in);
  if (out->ok()) return true;
  for (const auto& e : out->errors) std::fprintf(stderr, "config error: %s\n", e.c_str());
  std::fprintf(stderr, "%zu configuration error%s; nothing was changed\n", out->errors.size(),
               out->errors.size() == 1 ? "" : "s");
  return false;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"orchestrator: a durable job queue and process supervisor"};
  app.set_version_flag("-V,--version", std::string("orchestrator ") + ORCH_VERSION);
  app.require_subcommand(1);

  ConfigFlags serve_flags, check_flags, db_flags;
  auto* serve = app.add_subcommand("serve", "run the daemon in the foreground");
  AddConfigFlags(serve, &serve_flags);
  bool self_check = false;
  int handover_fd = -1;
  serve->add_flag("--self-check", self_check,
                  "check that this binary would start with this config (store opened "
                  "read-only), then exit 0 or 2; a re-exec runs it first");
  // Internal: set by the daemon when it re-executes itself (SPEC §14).
  std::string handover_from;
  serve->add_option("--handover-fd", handover_fd)->group("");
  serve->add_option("--handover-from", handover_from)->group("");
  auto* check = app.add_subcommand("check-config", "validate and print the effective config");
  AddConfigFlags(check, &check_flags);

  auto* db = app.add_subcommand("db", "offline database tools");
  db->require_subcommand(1);
  auto* db_check = db->add_subcommand("check", "integrity_check plus an invariant report");
  auto* db_sanitize = db->add_subcommand("sanitize", "repair queued rows that carry a run");
  for (auto* c : {db_check, db_sanitize}) AddConfigFlags(c, &db_flags);

  cli::ClientCommands client(&app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  if (serve->parsed()) {
    ConfigInputs in = ToInputs(serve_flags);
    LoadedConfig loaded;
    if (!Load(in, &loaded)) return 2;
    if (self_check) return SelfCheck(loaded, std::cout, std::cerr);
    (void)log::Setup(loaded.config.log.level, loaded.config.log.format);
    DaemonArgs args;
    args.handover_fd = handover_fd;
    args.handover_from = handover_from;
    for (int i = 0; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--handover-fd=", 0) == 0 || a.rfind("--handover-from=", 0) == 0) continue;
      if (a == "--handover-fd" || a == "--handover-from") {
        ++i;
        continue;
      }
      args.argv.push_back(std::move(a));
    }
    return RunDaemon(loaded, in, args);
  }
  if (check->parsed()) {
    LoadedConfig loaded;
    if (!Load(ToInputs(check_flags), &loaded)) return 2;
    std::cout << DescribeConfig(loaded);
    return 0;
  }
  if (db_check->parsed() || db_sanitize->parsed()) {
    LoadedConfig loaded;
    if (!Load(ToInputs(db_flags), &loaded)) return 2;
    InvariantLimits limits{loaded.config.supervisor.max_concurrency,
                           loaded.config.supervisor.serial_gate_enabled};
    return db_check->parsed() ? RunDbCheck(loaded.config.store, std::cout, std::cerr, limits)
                              : RunDbSanitize(loaded.config.store,
                                              ResolveNodeId(loaded.config.cluster.node_id),
                                              RunProcessLives, std::cout, std::cerr);
  }
  if (auto rc = client.RunParsed(std::cout, std::cerr)) return *rc;
  return 2;
}

}  // namespace orch
