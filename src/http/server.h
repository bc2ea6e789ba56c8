// HTTP/1.1 server on libuv + llhttp: listeners, connections, limits. Routing
// is not here: every request goes to one handler the daemon installs, which
// may answer at once or later (work off the loop thread must not stall it).
// Everything runs on the loop thread passed to the constructor. The process
// must ignore SIGPIPE, or a client that leaves mid-answer kills it.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "base/status.h"
#include "config/config.h"
#include "http/http_parser.h"
#include "http/http_types.h"

namespace orch {

class HttpConnection;

// Answers one request, now or later, on the loop thread. Copyable and cheap.
// Only the first call sends; a call after the connection (or the server) has
// closed, or a second call, sends nothing but still closes a file_fd the
// response carries, so no fd leaks. It refers to the connection weakly: a
// late call can never touch a freed one.
class HttpResponder {
 public:
  // Answers nothing (pending() is false).
  HttpResponder() = default;

  void operator()(HttpResponse response) const;
  // False once the connection is gone or the request was answered (lets a
  // handler skip work nobody waits for).
  bool pending() const;

 private:
  friend class HttpConnection;
  struct Link;  // defined in http_connection.h
  HttpResponder(std::weak_ptr<Link> link, uint64_t request);

  std::weak_ptr<Link> link_;  // expires when the connection closes
  uint64_t request_ = 0;      // which of the connection's requests this answers
};

// The sockets one image of the daemon hands to the next across execve
// (SPEC §14): the listeners, and the connections idle between requests.
struct HandedSockets {
  int tcp_fd = -1;
  int unix_fd = -1;
  struct Connection {
    int fd = -1;
    bool via_unix = false;
  };
  std::vector<Connection> connections;
};

class HttpServer {
 public:
  // Called on the loop thread for each complete request, one request per
  // connection at a time: pipelined requests wait until this one is answered,
  // and the idle timeout does not run meanwhile. Call `respond` once, before
  // returning or from a later loop callback; a request never answered holds
  // its connection until the server closes. An exception thrown before
  // responding becomes a 500. For HEAD the server sends the head of the
  // response and drops the body.
  using Handler = std::function<void(HttpRequest request, HttpResponder respond)>;

  struct Options {
    std::string listen = "127.0.0.1:8080";  // "IPv4:PORT", "[IPv6]:PORT", "" = no TCP; port 0 = any
    std::string unix_socket;                // "" = none; created with mode 0660
    int64_t max_body_bytes = 1048576;       // larger bodies get 413 and a close
    int64_t max_connections = 1024;         // connections beyond are answered 503 and closed
    // Closed after this long without a completed request or write progress
    // (trickled bytes do not count: slowloris); a half-sent request gets 408.
    int64_t idle_timeout_ms = 30000;
    size_t max_header_bytes = 16384;  // larger request heads get 431 and a close
    // Optional: called with the status of each error response the server makes
    // itself (400, 408, 413, 417, 431, 500 from a throwing handler, 503), e.g.
    // for a metrics counter.
    std::function<void(int status)> on_protocol_error;
    // Optional: judges each request's head before its body is read (see
    // HttpParser::HeadCheck); an error is sent and the connection closed.
    std::function<std::optional<HttpError>(const HttpRequest& head)> admit;
    // The unix socket's group (-1 = the daemon's); its mode is 0660.
    int64_t unix_socket_gid = -1;

    static Options FromConfig(const Config::Server& server);
  };

  // `loop` must outlive the server. Nothing is bound until Start().
  HttpServer(uv_loop_t* loop, Options options, Handler handler);
  // Requires that Close() was called and its `done` has run (or Start() was
  // never called): libuv still owns the handles until then.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens: TCP on options.listen (IPv4 or IPv6; port 0 picks a
  // free port) and the unix socket. An existing file at the socket path is
  // replaced only when it is a socket nobody accepts on (ECONNREFUSED); a
  // live socket is "already in use" and any other file an error. On error,
  // whatever was opened stays open until Close(). Call once.
  Status Start();

  // Instead of Start(): listens on the sockets the previous image handed
  // over (never closed in between, so no client was refused) and serves
  // its idle connections. The unix socket file is taken for this server's.
  Status Adopt(const HandedSockets& sockets);
  // True when every connection is idle between requests (or closing): what
  // Hand() returns then loses no request.
  bool Quiet() const;
  // While held, a connection reads no new request once its current one is
  // answered (what clients send waits in the kernel, for the next image);
  // new connections are accepted but not read.
  void HoldRequests(bool hold);
  bool holding() const { return holding_; }
  // The listeners' and the idle connections' fds, left open: the caller
  // keeps them across execve. Connections that are not idle are left out
  // (they close with the exec).
  HandedSockets Hand() const;

  // "127.0.0.1:PORT" / "[::1]:PORT" with the real port; "" without TCP.
  std::string BoundAddress() const;

  // Stops listening, closes every connection (in-flight responses are cut,
  // requests still being handled are dropped: their responders go inert),
  // removes the unix socket file it created, and calls `done` once every
  // handle's close callback has run — possibly before returning when nothing
  // is open. Safe to call from the handler. Later calls only replace `done`.
  void Close(std::function<void()> done);

  // Connections accepted and not yet fully closed, including ones being refused.
  size_t ConnectionCount() const { return connections_.size(); }

  // Used by HttpConnection (same library; not for other callers).
  const Options& options() const { return options_; }
  uv_loop_t* loop() const { return loop_; }
  bool closing() const { return closing_; }
  // Runs the handler, turning an exception before it responded into a 500.
  void Dispatch(HttpRequest request, const HttpResponder& respond);
  void ReportProtocolError(int status);
  // Runs options().admit, if any.
  std::optional<HttpError> Admit(const HttpRequest& head);
  // Final close callback of a connection: forgets and deletes it.
  void OnConnectionClosed(HttpConnection* connection);

 private:
  static void OnNewConnection(uv_stream_t* listener, int status);
  static void OnListenerClosed(uv_handle_t* handle);
  Status StartTcp();
  Status StartUnix();
  void MaybeFinishClose();

  uv_loop_t* loop_;
  Options options_;
  Handler handler_;
  uv_tcp_t* tcp_ = nullptr;    // heap; freed in its close callback
  uv_pipe_t* pipe_ = nullptr;  // heap; freed in its close callback
  int open_listeners_ = 0;
  std::unordered_set<HttpConnection*> connections_;
  int64_t serving_ = 0;        // TCP connections_ minus the ones being refused
  int64_t serving_unix_ = 0;   // the same on the unix socket
  int64_t refused_logged_ = -1;
  bool socket_bound_ = false;  // we created options_.unix_socket
  uint64_t socket_dev_ = 0, socket_ino_ = 0;
  bool closing_ = false;
  bool holding_ = false;
  std::function<void()> done_;
};

}  // namespace orch
