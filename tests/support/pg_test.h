// PostgreSQL for the tests: one throw-away server (tests/support/pg_server.sh)
// shared by the test processes of one build when ctest's `pg` fixture
// started it, else started by this process and stopped when it exits; and a
// fresh database per test, dropped at its end.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace orch::test {

class PgTestServer {
 public:
  // The running server (started on first use when no fixture did). Fails the
  // calling test (and returns nullptr) when PostgreSQL cannot be started.
  static PgTestServer* Get();
  const std::string& socket_dir() const { return dir_; }
  int port() const { return port_; }
  // libpq URL of database `db` over the unix socket, as superuser postgres.
  std::string Url(const std::string& db) const;
  // Over TCP on 127.0.0.1 at `port` (a proxy's port, say); this server's by default.
  std::string TcpUrl(const std::string& db, int port = 0) const;

 private:
  std::string dir_;
  int port_ = 0;
};

// A server of its own, for a test that restarts or stops it (the shared
// one serves other tests at the same time). Stopped and removed at the end.
class PgPrivateServer {
 public:
  PgPrivateServer();
  ~PgPrivateServer();
  PgPrivateServer(const PgPrivateServer&) = delete;
  PgPrivateServer& operator=(const PgPrivateServer&) = delete;
  bool ok() const { return port_ != 0; }
  // libpq URL of its `postgres` database over the unix socket.
  std::string Url() const;
  // pg_ctl restart -m fast (every connection is cut), or stop / start.
  bool Restart();
  bool Stop();
  bool Start();

 private:
  std::string dir_;
  int port_ = 0;
};

// A database of its own, created empty; dropped (connections cut) at the end.
class PgTestDatabase {
 public:
  PgTestDatabase();
  ~PgTestDatabase();
  PgTestDatabase(const PgTestDatabase&) = delete;
  PgTestDatabase& operator=(const PgTestDatabase&) = delete;
  bool ok() const { return !name_.empty(); }
  const std::string& name() const { return name_; }
  std::string url() const;
  // Raw SQL in this database, as another client would send it: "" when it
  // worked, else the server's message.
  std::string Exec(const std::string& sql) const;
  // The first column of each row, as text (NULL as "").
  std::vector<std::string> Texts(const std::string& sql) const;
  // The first column of the first row as an integer (-1 when no row).
  int64_t Int(const std::string& sql) const;

 private:
  std::string name_;
};

}  // namespace orch::test
