#include "cli/client_commands.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "base/text_escape.h"
#include "base/trusted_file.h"
#include "cli/job_format.h"
#include "cli/table.h"
#include "config/config.h"

namespace orch::cli {

using nlohmann::json;

namespace {

constexpr auto kFollowInterval = std::chrono::milliseconds(500);

constexpr char kImplicitConfig[] = "./orchestrator.toml";
// Where the package installs the daemon's config: used when the current
// directory has none, so that the CLI finds the daemon and its token.
constexpr char kSystemConfig[] = "/etc/orchestrator/orchestrator.toml";

// The token is the file's content without surrounding whitespace.
Result<std::string> TokenFromText(const std::string& path, const std::string& t) {
  size_t b = t.find_first_not_of(" \t\r\n"), e = t.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) {
    return Result<std::string>(Code::kInvalidArgument, "token file " + path + " is empty");
  }
  return t.substr(b, e - b + 1);
}

Result<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return FromErrno("cannot read token file " + path);
  std::stringstream s;
  s << in.rdbuf();
  return TokenFromText(path, s.str());
}

// A path or other local text for a message on the terminal.
std::string Shown(const std::string& text) { return EscapeControls(text); }

// The config the client reads, if any: --config FILE, or ./orchestrator.toml
// when only the user or root can have written it. The file is opened and
// judged once and LoadConfig gets the bytes that were judged, so it cannot be
// swapped between the check and the read.
LoadedConfig LoadClientConfig(const ClientOptions& options,
                              const std::map<std::string, std::string>& env, EndpointTrail* trail) {
  ConfigInputs in;
  in.env = env;
  in.file_required = true;  // the file chosen here or none: no search of its own
  if (!options.config_file.empty()) {
    in.file = options.config_file;
    auto f = ReadFileForUser(in.file, geteuid(), Symlinks::kFollow);
    if (f.ok()) {
      in.file_text = f->text;
      if (!f->distrust.empty()) {
        trail->warnings.push_back("warning: " + Shown(in.file) + " is " + f->distrust +
                                  "; using it because --config names it");
      }
    }  // else LoadConfig says why it cannot be read
    trail->config = Shown(in.file) + " (--config)";
    return LoadConfig(in);
  }
  auto f = ReadFileForUser(kImplicitConfig, geteuid(), Symlinks::kRefuse);
  if (!f.ok() && f.status().code() == Code::kNotFound) {
    auto system = ReadFileForUser(kSystemConfig, geteuid(), Symlinks::kFollow);
    if (system.ok() && system->distrust.empty()) {
      in.file = kSystemConfig;
      in.file_text = system->text;
      trail->config = kSystemConfig;
      return LoadConfig(in);
    }
  }
  if (f.ok() && f->distrust.empty()) {
    in.file = kImplicitConfig;
    in.file_text = f->text;
    trail->config = kImplicitConfig;
  } else if (!f.ok() && f.status().code() == Code::kNotFound) {
    trail->config = std::string("none (no ") + kImplicitConfig + " here)";
  } else {
    // Someone else's file in the current directory (say /tmp) must not
    // decide where a token goes: carry on as if it were not there.
    std::string why = f.ok() ? f->distrust : f.status().message();
    if (!f.ok() && f.status().code() != Code::kPermission) why = "cannot read " + why;
    trail->warnings.push_back(std::string("ignoring ") + kImplicitConfig + ": " + why);
    trail->config = std::string("none (") + kImplicitConfig + " ignored)";
  }
  return LoadConfig(in);
}

// Where a config key's value came from, in words: "server.listen in
// /etc/o.toml", "$ORCH_LISTEN", "the built-in default of server.listen".
std::string KeySource(const LoadedConfig& loaded, const std::string& key) {
  auto it = loaded.sources.find(key);
  ConfigSource source = it == loaded.sources.end() ? ConfigSource::kDefault : it->second;
  switch (source) {
    case ConfigSource::kFile:
      return key + " in " + Shown(loaded.file);
    case ConfigSource::kEnv:
      for (const auto& k : ConfigKeys()) {
        if (k.name == key) return "$" + k.env;
      }
      return key + " from the environment";
    case ConfigSource::kFlag:
      return key + " from a flag";
    case ConfigSource::kDefault:
      break;
  }
  return "the built-in default of " + key;
}

// The token named by a readable config, or "" with the reason in `trail`.
// A path the user chose (in the file or the environment) is read as asked;
// one that is only the built-in default is nobody's choice and lies under a
// directory the user may not own, so it is read only when trusted.
std::string TokenFromConfig(const LoadedConfig& loaded, EndpointTrail* trail) {
  const std::string& path = loaded.config.server.token_file;
  std::string from = KeySource(loaded, "server.token_file") + " (" + Shown(path) + ")";
  auto it = loaded.sources.find("server.token_file");
  bool by_default = it == loaded.sources.end() || it->second == ConfigSource::kDefault;
  Result<std::string> token = Result<std::string>(Code::kInternal, "");
  if (by_default) {
    auto f = ReadFileForUser(path, geteuid(), Symlinks::kRefuse);
    std::string distrust = f.ok() ? f->distrust : "";
    if (!f.ok() && f.status().code() == Code::kPermission) distrust = f.status().message();
    if (!distrust.empty()) {
      trail->warnings.push_back("not using the token file " + Shown(path) + ": " + distrust);
      trail->token = "none (" + from + ": " + distrust + ")";
      return "";
    }
    token = f.ok() ? TokenFromText(path, f->text) : Result<std::string>(f.status());
  } else {
    token = ReadToken(path);
  }
  if (!token.ok()) {
    // Only a hint from the config: a file we may not read (another user's
    // daemon) means we try without a token and let the server decide.
    trail->token = "none (" + from + ": " + Shown(token.status().message()) + ")";
    return "";
  }
  trail->token = "from " + from;
  return *token;
}

std::string Lookup(const std::map<std::string, std::string>& env, const char* key) {
  auto it = env.find(key);
  return it == env.end() ? "" : it->second;
}

// One response turned into an exit status. On 2xx, `*body` holds the parsed
// JSON (or stays null when `expect_json` is false); errors are printed.
int Check(const Result<HttpResponse>& r, bool expect_json, std::ostream& err, json* body) {
  if (!r.ok()) {
    err << "orchestrator: " << r.status().message() << "\n";
    return kExitUnreachable;
  }
  if (r->status >= 400 || r->status < 200) {
    err << "orchestrator: " << ApiErrorText(r->status, r->body) << "\n";
    if (r->status == 401) {
      err << "orchestrator: the server wants a token: pass --token-file FILE or set "
             "ORCH_TOKEN_FILE (--verbose says where this run looked for one)\n";
    }
    return kExitRefused;
  }
  if (expect_json) {
    *body = json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    if (body->is_discarded()) {
      err << "orchestrator: the server at the other end did not answer with JSON (HTTP "
          << r->status << ")\n";
      return kExitRefused;
    }
  }
  return kExitOk;
}

TimePoint Now() { return std::chrono::system_clock::now(); }

bool IsTerminal(const std::string& status) {
  return status == "succeeded" || status == "failed" || status == "cancelled";
}

void AddCommonOptions(CLI::App* c, ClientOptions* o) {
  c->add_option("--server", o->server,
                "server URL: http://HOST:PORT or unix:/PATH (default: $ORCH_URL, else the "
                "config's server.listen)");
  c->add_option("--token-file", o->token_file,
                "file holding the API token (default: $ORCH_TOKEN_FILE, else the config's "
                "server.token_file)");
  c->add_option("-c,--config", o->config_file,
                "configuration file to find the server in (default: ./orchestrator.toml, if "
                "owned by you or root and writable by no one else)");
  c->add_flag("--json", o->json, "print the server's JSON instead of a table");
  c->add_flag("-v,--verbose", o->verbose,
              "say on stderr which config was used and where the server address and the token "
              "came from");
}

// A whole number from 1 up, with a message people can read.
const CLI::Validator& Positive() {
  static const CLI::Validator v(
      [](std::string& text) -> std::string {
        size_t used = 0;
        long long n = 0;
        try {
          n = std::stoll(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != text.size() || text.empty() || n < 1) {
          return "expected a whole number from 1 up, got \"" + text + "\"";
        }
        return std::string();
      },
      "N>0");
  return v;
}

std::string JobPath(int64_t id) { return "/jobs/" + std::to_string(id); }

}  // namespace

Result<Endpoint> ResolveEndpoint(const ClientOptions& options,
                                 const std::map<std::string, std::string>& env,
                                 EndpointTrail* trail) {
  EndpointTrail unused;
  if (trail == nullptr) trail = &unused;
  std::string server = options.server, server_from = "--server";
  if (server.empty()) {
    server = Lookup(env, "ORCH_URL");
    server_from = "$ORCH_URL";
  }
  std::string token_file = options.token_file;
  std::string token_from = "--token-file " + Shown(token_file);
  if (token_file.empty()) {
    token_file = Lookup(env, "ORCH_TOKEN_FILE");
    token_from = "$ORCH_TOKEN_FILE (" + Shown(token_file) + ")";
  }

  bool need_config = server.empty() || token_file.empty() || !options.config_file.empty();
  LoadedConfig loaded;
  if (need_config) {
    loaded = LoadClientConfig(options, env, trail);
    // A broken config only matters when it was asked for or is the only
    // place that says where the server is.
    if (!loaded.ok() && (server.empty() || !options.config_file.empty())) {
      std::string msg;
      for (const auto& e : loaded.errors) msg += "config error: " + e + "\n";
      msg += "cannot find the server: fix the config or pass --server URL";
      return Result<Endpoint>(Code::kInvalidArgument, msg);
    }
  } else {
    trail->config = "not read (the server and the token file were given)";
  }
  if (server.empty()) {
    server = ServerUrlFromConfig(loaded.config.server);
    if (server.empty()) {
      return Result<Endpoint>(Code::kInvalidArgument,
                              "cannot find the server: the config sets neither server.listen "
                              "nor server.unix_socket; pass --server URL");
    }
    server_from = KeySource(
        loaded, loaded.config.server.listen.empty() ? "server.unix_socket" : "server.listen");
  }
  auto address = ParseServerUrl(server);
  if (!address.ok()) return address.status();
  trail->server = Shown(address->display) + " from " + server_from;

  Endpoint ep;
  ep.address = *address;
  if (!token_file.empty()) {
    auto token = ReadToken(token_file);
    if (!token.ok()) return Result<Endpoint>(Code::kInvalidArgument, token.status().message());
    ep.token = *token;
    trail->token = "from " + token_from;
  } else if (loaded.ok() && !loaded.config.server.token_file.empty()) {
    // A token found through a config goes only to this host's own daemon:
    // a config (even one the user wrote, say in a cloned repository) or a
    // --server/ORCH_URL pointing elsewhere must not carry it off the host.
    if (IsLocalServer(*address)) {
      ep.token = TokenFromConfig(loaded, trail);
    } else {
      trail->token = "none (the config's token is only sent to loopback or a unix socket; "
                     "pass --token-file for " + Shown(address->display) + ")";
    }
  } else {
    trail->token = "none";
  }
  return ep;
}

ClientCommands::ClientCommands(CLI::App* app) {
  submit_ = app->add_subcommand("submit", "submit a job: submit [options] -- CMD ARGS...");
  auto& s = submit_args_;
  submit_->add_option("--name", s.name, "a name for people");
  submit_->add_option("--priority", s.priority, "higher runs first (default 0)");
  submit_->add_option("--serial-key", s.serial_key,
                      "at most one running job per key (when the serial gate is on)");
  submit_->add_option("--timeout", s.timeout_s, "seconds before the job is killed")
      ->check(Positive());
  submit_->add_option("--max-attempts", s.max_attempts, "attempts before it counts as failed")
      ->check(Positive());
  submit_->add_option("--memory-max", s.memory_max,
                      "memory limit of the run's cgroup, bytes (cgroup mode full)")
      ->check(Positive());
  submit_->add_option("--cpu-max", s.cpu_max, "CPU limit of the run's cgroup, cores (mode full)")
      ->check(CLI::PositiveNumber);
  submit_->add_option("--pids-max", s.pids_max, "process limit of the run's cgroup (mode full)")
      ->check(Positive());
  submit_->add_option("--stall-timeout", s.stall_timeout_s,
                      "seconds without CPU time or output before the run counts as stalled "
                      "(0 = never; default: the daemon's)")
      ->check(CLI::NonNegativeNumber);
  submit_->add_option("--idempotency-key", s.idempotency_key,
                      "a repeated submit with the same key returns the first job");
  submit_->add_option("--env", s.env, "environment entry for the job (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false)  // one entry per --env, so "--env A=1 cmd" leaves cmd alone
      ->check([](const std::string& v) {
        size_t eq = v.find('=');
        return eq == std::string::npos || eq == 0 ? "expected KEY=VALUE, got \"" + v + "\""
                                                  : std::string();
      });
  submit_->add_option("--cwd", s.cwd, "working directory (default: the current directory)");
  submit_->add_option("command", s.argv, "the program and its arguments, after --")->required();
  AddCommonOptions(submit_, &options_);

  status_ = app->add_subcommand("status", "show the queue: counts, limits, running jobs, reaper");
  AddCommonOptions(status_, &options_);

  jobs_ = app->add_subcommand("jobs", "list jobs in id order (use --after to page)");
  jobs_->add_option("--status", jobs_args_.status, "only jobs in this status")
      ->check(CLI::IsMember({"queued", "running", "succeeded", "failed", "cancelled"}));
  jobs_->add_option("--limit", jobs_args_.limit, "jobs per page")->check(Positive());
  jobs_->add_option("--after", jobs_args_.after, "continue after this job id (next page)")
      ->check(Positive());
  AddCommonOptions(jobs_, &options_);

  auto id_command = [&](const char* name, const char* help) {
    CLI::App* c = app->add_subcommand(name, help);
    c->add_option("id", job_id_, "job id")->required()->check(Positive());
    AddCommonOptions(c, &options_);
    return c;
  };
  show_ = id_command("show", "show one job, its runs and why it waits");
  cancel_ = id_command("cancel", "cancel a job (a running one is terminated first)");
  retry_ = id_command("retry", "queue a failed or cancelled job again");
  // The job's bytes as it wrote them, like cat: escaping would corrupt what
  // people pipe into files or tools; the job is theirs to trust or not.
  logs_ = id_command("logs", "print a job's output (its raw bytes, like cat)");
  logs_->add_option("--stream", logs_args_.stream, "stdout or stderr (default stdout)")
      ->check(CLI::IsMember({"stdout", "stderr"}));
  logs_->add_option("--tail", logs_args_.tail, "only the last BYTES bytes")
      ->type_name("BYTES")
      ->check(Positive());
  logs_->add_flag("-f,--follow", logs_args_.follow, "keep printing until the job has finished");

  pause_ = app->add_subcommand("pause", "stop starting jobs (running ones continue)");
  AddCommonOptions(pause_, &options_);
  resume_ = app->add_subcommand("resume", "start jobs again after pause");
  AddCommonOptions(resume_, &options_);
  reexec_ = app->add_subcommand(
      "reexec", "upgrade in place: the daemon execs its binary again, running jobs untouched");
  AddCommonOptions(reexec_, &options_);
  reexec_->add_option("--wait", reexec_wait_s_, "seconds to wait for the new image (default 90)")
      ->check(Positive());
}

std::optional<int> ClientCommands::RunParsed(std::ostream& out, std::ostream& err) {
  CLI::App* parsed = nullptr;
  for (CLI::App* c :
       {submit_, status_, jobs_, show_, cancel_, retry_, logs_, pause_, resume_, reexec_}) {
    if (c->parsed()) parsed = c;
  }
  if (parsed == nullptr) return std::nullopt;

  EndpointTrail trail;
  auto endpoint = ResolveEndpoint(options_, ProcessEnvironment(), &trail);
  for (const auto& w : trail.warnings) err << "orchestrator: " << w << "\n";
  if (options_.verbose) {
    if (!trail.config.empty()) err << "orchestrator: config: " << trail.config << "\n";
    if (!trail.server.empty()) err << "orchestrator: server: " << trail.server << "\n";
    if (!trail.token.empty()) err << "orchestrator: token: " << trail.token << "\n";
  }
  if (!endpoint.ok()) {
    err << "orchestrator: " << endpoint.status().message() << "\n";
    return kExitUsage;
  }
  ApiClient api(endpoint->address, endpoint->token);
  if (parsed == submit_) return Submit(api, out, err);
  if (parsed == status_) return Status(api, out, err);
  if (parsed == jobs_) return Jobs(api, out, err);
  if (parsed == show_) return Show(api, out, err);
  if (parsed == cancel_) return Cancel(api, out, err);
  if (parsed == retry_) return Retry(api, out, err);
  if (parsed == logs_) return Logs(api, out, err);
  if (parsed == reexec_) return Reexec(api, out, err);
  return Pause(api, parsed == pause_, out, err);
}

int ClientCommands::Submit(ApiClient& api, std::ostream& out, std::ostream& err) {
  const auto& s = submit_args_;
  json body;
  body["argv"] = s.argv;
  std::string cwd = s.cwd;
  if (cwd.empty()) {
    std::vector<char> buf(4096);
    if (getcwd(buf.data(), buf.size()) == nullptr) {
      err << "orchestrator: cannot read the current directory (" << std::strerror(errno)
          << "); pass --cwd DIR\n";
      return kExitUsage;
    }
    cwd = buf.data();
  }
  body["cwd"] = cwd;
  if (!s.name.empty()) body["name"] = s.name;
  if (!s.env.empty()) {
    json env = json::object();
    for (const auto& e : s.env) {
      size_t eq = e.find('=');
      env[e.substr(0, eq)] = e.substr(eq + 1);
    }
    body["env"] = env;
  }
  if (submit_->count("--priority") > 0) body["priority"] = s.priority;
  if (!s.serial_key.empty()) body["serial_key"] = s.serial_key;
  if (submit_->count("--timeout") > 0) body["timeout_s"] = s.timeout_s;
  if (submit_->count("--max-attempts") > 0) body["max_attempts"] = s.max_attempts;
  if (submit_->count("--memory-max") > 0) body["memory_max"] = s.memory_max;
  if (submit_->count("--cpu-max") > 0) body["cpu_max"] = s.cpu_max;
  if (submit_->count("--pids-max") > 0) body["pids_max"] = s.pids_max;
  if (submit_->count("--stall-timeout") > 0) body["stall_timeout_s"] = s.stall_timeout_s;
  if (!s.idempotency_key.empty()) body["idempotency_key"] = s.idempotency_key;

  auto r = api.Send("POST", "/jobs", body.dump());
  json job;
  if (int rc = Check(r, true, err, &job); rc != kExitOk) return rc;
  if (options_.json) {
    out << job.dump(2) << "\n";
  } else {
    out << job.value("id", json())
               .dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace)
        << "\n";
  }
  if (r->status == 200) {
    err << "orchestrator: idempotency key \"" << Shown(s.idempotency_key)
        << "\" was used before: this is the existing job, status "
        << Shown(job.value("status", std::string("?"))) << "\n";
  }
  return kExitOk;
}

int ClientCommands::Status(ApiClient& api, std::ostream& out, std::ostream& err) {
  json q;
  if (int rc = Check(api.Send("GET", "/queue"), true, err, &q); rc != kExitOk) return rc;
  out << (options_.json ? q.dump(2) + "\n" : RenderQueue(q, Now(), StdoutWantsColor()));
  return kExitOk;
}

int ClientCommands::Jobs(ApiClient& api, std::ostream& out, std::ostream& err) {
  std::string query;
  auto param = [&](const std::string& k, const std::string& v) {
    query += (query.empty() ? "?" : "&") + k + "=" + UrlEncode(v);
  };
  if (!jobs_args_.status.empty()) param("status", jobs_args_.status);
  if (jobs_args_.limit > 0) param("limit", std::to_string(jobs_args_.limit));
  if (jobs_args_.after > 0) param("after_id", std::to_string(jobs_args_.after));
  json page;
  if (int rc = Check(api.Send("GET", "/jobs" + query), true, err, &page); rc != kExitOk) {
    return rc;
  }
  out << (options_.json ? page.dump(2) + "\n" : RenderJobList(page, Now(), StdoutWantsColor()));
  return kExitOk;
}

int ClientCommands::Show(ApiClient& api, std::ostream& out, std::ostream& err) {
  json job;
  if (int rc = Check(api.Send("GET", JobPath(job_id_)), true, err, &job); rc != kExitOk) {
    return rc;
  }
  out << (options_.json ? job.dump(2) + "\n" : RenderJob(job, Now(), StdoutWantsColor()));
  return kExitOk;
}

int ClientCommands::Cancel(ApiClient& api, std::ostream& out, std::ostream& err) {
  json job;
  if (int rc = Check(api.Send("POST", JobPath(job_id_) + "/cancel"), true, err, &job);
      rc != kExitOk) {
    return rc;
  }
  if (options_.json) {
    out << job.dump(2) << "\n";
  } else if (job.value("status", std::string()) == "cancelled") {
    out << "job " << job_id_ << " cancelled\n";
  } else {
    out << "job " << job_id_ << " is being cancelled (status "
        << Shown(job.value("status", std::string("?"))) << ")\n";
  }
  return kExitOk;
}

int ClientCommands::Retry(ApiClient& api, std::ostream& out, std::ostream& err) {
  json job;
  if (int rc = Check(api.Send("POST", JobPath(job_id_) + "/retry"), true, err, &job);
      rc != kExitOk) {
    return rc;
  }
  if (options_.json) {
    out << job.dump(2) << "\n";
  } else {
    out << "job " << job_id_ << " " << Shown(job.value("status", std::string("queued")))
        << " again\n";
  }
  return kExitOk;
}

int ClientCommands::Pause(ApiClient& api, bool pause, std::ostream& out, std::ostream& err) {
  json state;
  auto r = api.Send("POST", pause ? "/queue/pause" : "/queue/resume");
  if (int rc = Check(r, true, err, &state); rc != kExitOk) return rc;
  if (options_.json) {
    out << state.dump(2) << "\n";
  } else {
    out << (state.value("paused", pause) ? "queue paused: no new jobs start\n" : "queue resumed\n");
  }
  return kExitOk;
}

int ClientCommands::Reexec(ApiClient& api, std::ostream& out, std::ostream& err) {
  json started;
  if (int rc = Check(api.Send("POST", "/admin/reexec"), true, err, &started); rc != kExitOk) {
    return rc;
  }
  const std::string from = started.value("incarnation", "");
  // The new image says it runs by its incarnation in /queue; until then the
  // listener queues connections, or the old image still answers.
  auto deadline = Now() + std::chrono::seconds(reexec_wait_s_);
  json q;
  while (Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto r = api.Send("GET", "/queue");
    if (!r.ok() || r->status != 200) continue;
    q = json::parse(r->body, nullptr, false);
    if (q.is_discarded() || !q.contains("supervisor")) continue;
    std::string now = q["supervisor"].value("incarnation", "");
    if (now.empty() || now == from) continue;
    if (options_.json) {
      out << json{{"pid", q["supervisor"].value("pid", 0)},
                  {"from_incarnation", from},
                  {"incarnation", now},
                  {"version", q["supervisor"].value("version", "")}}
                 .dump(2)
          << "\n";
    } else {
      out << "re-executed in place: pid " << q["supervisor"].value("pid", 0) << ", version "
          << q["supervisor"].value("version", "") << ", incarnation " << from << " -> " << now
          << "\n";
    }
    return kExitOk;
  }
  err << "orchestrator: the daemon passed the self-check but did not re-execute within "
      << reexec_wait_s_ << " s; its log says why\n";
  return kExitRefused;
}

int ClientCommands::Logs(ApiClient& api, std::ostream& out, std::ostream& err) {
  std::string path = JobPath(job_id_) + "/log?stream=" + UrlEncode(logs_args_.stream);
  if (!logs_args_.follow) {
    if (logs_args_.tail > 0) path += "&tail_bytes=" + std::to_string(logs_args_.tail);
    auto r = api.Send("GET", path);
    if (int rc = Check(r, false, err, nullptr); rc != kExitOk) return rc;
    out << r->body << std::flush;
    return kExitOk;
  }

  // Each poll asks one run's log for what lies past the offset the last
  // answer ended at (X-Log-Offset), with the cut count it last saw
  // (X-Log-Cut), so that a cut at max_log_bytes is noticed. Once that run has
  // ended and its last bytes are out (X-Log-Complete), the follow moves on
  // to the job's next run (a retry) from its beginning, or stops with the job.
  int64_t run_id = 0;   // 0: not started (the newest run; honours --tail)
  int64_t offset = 0;
  std::string cut;
  while (true) {
    std::string query = path;
    if (run_id > 0) {
      query += "&run_id=" + std::to_string(run_id) + "&offset=" + std::to_string(offset);
      if (!cut.empty()) query += "&cut=" + UrlEncode(cut);
    } else if (logs_args_.tail > 0) {
      query += "&tail_bytes=" + std::to_string(logs_args_.tail);
    }
    auto r = api.Send("GET", query);
    if (!r.ok()) return Check(r, false, err, nullptr);
    bool run_over = false;
    if (r->status == 200) {
      if (r->Header("x-log-truncated") == "true") {
        err << "orchestrator: the log was cut at max_log_bytes; going on after the cut\n";
      }
      out << r->body << std::flush;
      run_id = std::atoll(r->Header("x-run-id").c_str());
      offset = std::atoll(r->Header("x-log-offset").c_str());
      if (!r->Header("x-log-cut").empty()) cut = r->Header("x-log-cut");
      run_over = r->Header("x-log-complete") == "true";
    } else if (r->status != 404 || json::parse(r->body, nullptr, false).value(
                                        "/error/code"_json_pointer, std::string()) != "no_log") {
      // Only "no run has written a log yet" is waited out; a log on another
      // node, or refused, is reported.
      return Check(r, false, err, nullptr);
    }
    if (r->status == 404 || run_over) {
      json job;
      if (int rc = Check(api.Send("GET", JobPath(job_id_)), true, err, &job); rc != kExitOk) {
        return rc;
      }
      // The next run after this one (each run in turn, even those that came
      // and went between two polls).
      int64_t next = 0;
      for (const auto& run : job.value("runs", json::array())) {
        int64_t id = run.value("id", int64_t{0});
        if (run.value("log_path", json()).is_null() || id <= run_id) continue;
        if (next == 0 || id < next) next = id;
      }
      if (run_id > 0 && next > 0) {
        err << "orchestrator: run " << next << " started; its log follows\n";
        run_id = next;
        offset = 0;
        cut.clear();
        continue;
      }
      if (IsTerminal(job.value("status", std::string()))) return kExitOk;
    }
    std::this_thread::sleep_for(kFollowInterval);
  }
}

}  // namespace orch::cli
