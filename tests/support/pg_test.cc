#include "support/pg_test.h"

#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace orch::test {
namespace {

std::string Script() { return SourceDir() + "/tests/support/pg_server.sh"; }

int ReadPort(const std::string& dir) {
  std::ifstream in(dir + "/port");
  int port = 0;
  in >> port;
  return port;
}

// Stops the server this process started, when the process exits.
struct OwnServer {
  std::string dir;
  ~OwnServer() {
    if (!dir.empty()) RunCommand({"bash", Script(), "stop", dir});
  }
};

std::unique_ptr<PGconn, void (*)(PGconn*)> Connect(const std::string& url) {
  std::unique_ptr<PGconn, void (*)(PGconn*)> conn(PQconnectdb(url.c_str()), &PQfinish);
  // NOTICEs ("... does not exist, skipping") are not test output.
  PQsetNoticeProcessor(conn.get(), [](void*, const char*) {}, nullptr);
  return conn;
}

std::string Quote(const std::string& ident) { return "\"" + ident + "\""; }

}  // namespace

PgTestServer* PgTestServer::Get() {
  static std::mutex mu;
  static PgTestServer* server = nullptr;
  static OwnServer own;
  std::lock_guard<std::mutex> lock(mu);
  if (server) return server;
  std::string dir = ORCH_PG_TEST_DIR;  // the ctest fixture's
  int port = ReadPort(dir);
  if (port == 0) {
    dir = "/tmp/orch-pg-" + std::to_string(getpid());
    CommandResult r =
        RunCommand({"bash", Script(), "start", dir, std::to_string(getpid())});
    if (r.exit_code != 0) {
      ADD_FAILURE() << "cannot start PostgreSQL for the tests: " << r.err;
      return nullptr;
    }
    own.dir = dir;
    port = ReadPort(dir);
  }
  server = new PgTestServer();
  server->dir_ = dir;
  server->port_ = port;
  return server;
}

std::string PgTestServer::Url(const std::string& db) const {
  return "postgresql:///" + db + "?host=" + dir_ + "&port=" + std::to_string(port_) +
         "&user=postgres";
}

std::string PgTestServer::TcpUrl(const std::string& db, int port) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port ? port : port_) + "/" + db;
}

PgPrivateServer::PgPrivateServer() {
  static std::atomic<int> counter{0};
  dir_ = "/tmp/orch-pg-own-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
  CommandResult r = RunCommand({"bash", Script(), "start", dir_, std::to_string(getpid())});
  if (r.exit_code != 0) {
    ADD_FAILURE() << "cannot start a PostgreSQL of the test's own: " << r.err;
    return;
  }
  port_ = ReadPort(dir_);
}

PgPrivateServer::~PgPrivateServer() { RunCommand({"bash", Script(), "stop", dir_}); }

std::string PgPrivateServer::Url() const {
  return "postgresql:///postgres?host=" + dir_ + "&port=" + std::to_string(port_) +
         "&user=postgres";
}

namespace {

bool PgCtl(const std::string& dir, const std::string& action,
           const std::vector<std::string>& more = {}) {
  std::string bin;
  for (const char* v : {"17", "16", "15"}) {
    std::string b = std::string("/usr/lib/postgresql/") + v + "/bin/pg_ctl";
    if (access(b.c_str(), X_OK) == 0) {
      bin = b;
      break;
    }
  }
  std::vector<std::string> argv = {"runuser", "-u", "postgres", "--", bin, "-D", dir + "/data",
                                   "-m", "fast", "-w", "-t", "60"};
  argv.insert(argv.end(), more.begin(), more.end());
  argv.push_back(action);
  CommandResult r = RunCommand(argv);
  if (r.exit_code != 0) ADD_FAILURE() << "pg_ctl " << action << ": " << r.out << r.err;
  return r.exit_code == 0;
}

}  // namespace

bool PgPrivateServer::Restart() { return PgCtl(dir_, "restart"); }
bool PgPrivateServer::Stop() { return PgCtl(dir_, "stop"); }
bool PgPrivateServer::Start() {
  // As pg_server.sh started it: same socket directory and port.
  return PgCtl(dir_, "start",
               {"-l", dir_ + "/server.log", "-o",
                "-k " + dir_ + " -p " + std::to_string(port_) +
                    " -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"});
}

PgTestDatabase::PgTestDatabase() {
  PgTestServer* server = PgTestServer::Get();
  if (!server) return;
  static std::atomic<int> counter{0};
  std::string name = "orch_t" + std::to_string(getpid()) + "_" + std::to_string(++counter);
  auto admin = Connect(server->Url("postgres"));
  if (PQstatus(admin.get()) != CONNECTION_OK) {
    ADD_FAILURE() << "cannot reach the test PostgreSQL: " << PQerrorMessage(admin.get());
    return;
  }
  PGresult* res = PQexec(admin.get(), ("CREATE DATABASE " + Quote(name)).c_str());
  bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  if (!ok) ADD_FAILURE() << "CREATE DATABASE: " << PQresultErrorMessage(res);
  PQclear(res);
  if (ok) name_ = name;
}

PgTestDatabase::~PgTestDatabase() {
  if (name_.empty()) return;
  auto admin = Connect(PgTestServer::Get()->Url("postgres"));
  PQclear(PQexec(admin.get(), ("DROP DATABASE IF EXISTS " + Quote(name_) + " WITH (FORCE)").c_str()));
}

std::string PgTestDatabase::url() const { return PgTestServer::Get()->Url(name_); }

std::string PgTestDatabase::Exec(const std::string& sql) const {
  auto conn = Connect(url());
  if (PQstatus(conn.get()) != CONNECTION_OK) return PQerrorMessage(conn.get());
  PGresult* res = PQexec(conn.get(), sql.c_str());
  ExecStatusType st = PQresultStatus(res);
  std::string err = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? ""
                                                                       : PQresultErrorMessage(res);
  PQclear(res);
  return err;
}

std::vector<std::string> PgTestDatabase::Texts(const std::string& sql) const {
  std::vector<std::string> out;
  auto conn = Connect(url());
  PGresult* res = PQexec(conn.get(), sql.c_str());
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    ADD_FAILURE() << sql << ": " << PQresultErrorMessage(res);
  } else {
    for (int i = 0; i < PQntuples(res); ++i) out.emplace_back(PQgetvalue(res, i, 0));
  }
  PQclear(res);
  return out;
}

int64_t PgTestDatabase::Int(const std::string& sql) const {
  auto rows = Texts(sql);
  return rows.empty() ? -1 : std::strtoll(rows[0].c_str(), nullptr, 10);
}

}  // namespace orch::test
