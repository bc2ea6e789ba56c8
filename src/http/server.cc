#include "http/server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <utility>
#include <vector>

#include "base/log.h"
#include "base/uv_handle.h"
#include "http/http_connection.h"

namespace orch {
namespace {

constexpr int kBacklog = 511;

uv_handle_t* AsHandle(void* h) { return static_cast<uv_handle_t*>(h); }

// "127.0.0.1:8080", "[::1]:0", "localhost:80" → a socket address.
Status ParseListen(const std::string& listen, sockaddr_storage* out) {
  std::string host, port;
  if (!listen.empty() && listen[0] == '[') {
    size_t close = listen.find("]:");
    if (close == std::string::npos) {
      return Status(Code::kInvalidArgument,
                    "server.listen \"" + listen + "\": expected [IPv6]:PORT");
    }
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else {
    size_t colon = listen.rfind(':');
    if (colon == std::string::npos) {
      return Status(Code::kInvalidArgument, "server.listen \"" + listen + "\": expected IP:PORT");
    }
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return Status(Code::kInvalidArgument, "server.listen \"" + listen + "\": bad port");
  }
  if (host == "localhost") host = "127.0.0.1";
  int port_number = static_cast<int>(value);
  if (uv_ip4_addr(host.c_str(), port_number, reinterpret_cast<sockaddr_in*>(out)) == 0) {
    return Status::Ok();
  }
  if (uv_ip6_addr(host.c_str(), port_number, reinterpret_cast<sockaddr_in6*>(out)) == 0) {
    return Status::Ok();
  }
  return Status(Code::kInvalidArgument,
                "server.listen \"" + listen + "\": host must be an IPv4 or [IPv6] address");
}

}  // namespace

HttpServer::Options HttpServer::Options::FromConfig(const Config::Server& server) {
  Options o;
  o.listen = server.listen;
  o.unix_socket = server.unix_socket;
  o.max_body_bytes = server.max_body_bytes;
  o.max_connections = server.max_connections;
  o.idle_timeout_ms = server.idle_timeout_ms;
  return o;
}

HttpServer::HttpServer(uv_loop_t* loop, Options options, Handler handler)
    : loop_(loop), options_(std::move(options)), handler_(std::move(handler)) {}

HttpServer::~HttpServer() {
  if (open_listeners_ > 0 || !connections_.empty()) {
    // libuv still points at us: a use-after-free is coming. A bug in the owner.
    log::Error("http: server destroyed before Close() finished",
               {{"listeners", open_listeners_}, {"connections", connections_.size()}});
  }
}

Status HttpServer::Start() {
  if (!options_.listen.empty()) {
    Status s = StartTcp();
    if (!s.ok()) return s;
  }
  if (!options_.unix_socket.empty()) {
    Status s = StartUnix();
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Status HttpServer::StartTcp() {
  sockaddr_storage addr{};
  Status s = ParseListen(options_.listen, &addr);
  if (!s.ok()) return s;
  tcp_ = new uv_tcp_t;
  uv_tcp_init(loop_, tcp_);
  tcp_->data = this;
  ++open_listeners_;
  int rc = uv_tcp_bind(tcp_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(tcp_), kBacklog, &OnNewConnection);
  if (rc != 0) return FromUv("listen on " + options_.listen, rc);
  log::Debug("http: listening", {{"address", BoundAddress()}});
  return Status::Ok();
}

Status HttpServer::StartUnix() {
  const std::string& path = options_.unix_socket;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return Status(Code::kInvalidArgument, "server.unix_socket \"" + path + "\": path too long");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const auto* sa = reinterpret_cast<const sockaddr*>(&addr);

  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status(Code::kInvalidArgument,
                    "server.unix_socket \"" + path + "\": exists and is not a socket");
    }
    // A socket file outlives a crashed daemon. Replace it only if nobody
    // accepts on it: a refused connect proves it is stale. (Non-blocking, so
    // a live server with a full backlog reads as EAGAIN = in use.)
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0) return FromErrno("server.unix_socket: socket");
    int rc = ::connect(probe, sa, sizeof(addr));
    int err = rc == 0 ? 0 : errno;
    ::close(probe);
    if (err != ECONNREFUSED) {
      if (err == 0 || err == EAGAIN || err == EINPROGRESS) {
        return Status(Code::kUnavailable,
                      "server.unix_socket \"" + path + "\": already in use by a running server");
      }
      return FromErrno("server.unix_socket \"" + path + "\": probing the existing socket", err);
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return FromErrno("server.unix_socket \"" + path + "\": removing the stale socket");
    }
    log::Info("http: replaced a stale unix socket", {{"path", path}});
  } else if (errno != ENOENT) {
    return FromErrno("server.unix_socket \"" + path + "\"");
  }

  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return FromErrno("server.unix_socket: socket");
  // Linux creates the socket file with the socket inode's mode minus the
  // umask, so setting it first means the file is never more open than 0660;
  // the chmod after bind makes it exactly 0660 whatever the umask.
  (void)::fchmod(fd, 0660);
  if (::bind(fd, sa, sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    return FromErrno("server.unix_socket \"" + path + "\": bind", err);
  }
  socket_bound_ = true;
  if (::chmod(path.c_str(), 0660) != 0) {
    int err = errno;
    ::close(fd);
    return FromErrno("server.unix_socket \"" + path + "\": chmod", err);
  }
  if (options_.unix_socket_gid >= 0 &&
      ::chown(path.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(options_.unix_socket_gid)) != 0) {
    int err = errno;
    ::close(fd);
    return FromErrno("server.unix_socket \"" + path + "\": chown to server.unix_socket_group", err);
  }
  if (::stat(path.c_str(), &st) == 0) {
    socket_dev_ = st.st_dev;
    socket_ino_ = st.st_ino;
  }
  pipe_ = new uv_pipe_t;
  uv_pipe_init(loop_, pipe_, 0);
  pipe_->data = this;
  ++open_listeners_;
  int rc = uv_pipe_open(pipe_, fd);
  if (rc != 0) {
    ::close(fd);
    return FromUv("server.unix_socket \"" + path + "\"", rc);
  }
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(pipe_), kBacklog, &OnNewConnection);
  if (rc != 0) return FromUv("server.unix_socket \"" + path + "\": listen", rc);
  log::Debug("http: listening", {{"unix_socket", path}});
  return Status::Ok();
}

Status HttpServer::Adopt(const HandedSockets& sockets) {
  if (sockets.tcp_fd >= 0) {
    tcp_ = new uv_tcp_t;
    uv_tcp_init(loop_, tcp_);
    tcp_->data = this;
    ++open_listeners_;
    int rc = uv_tcp_open(tcp_, sockets.tcp_fd);
    if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(tcp_), kBacklog, &OnNewConnection);
    if (rc != 0) return FromUv("the handed-over TCP listener", rc);
  }
  if (sockets.unix_fd >= 0) {
    pipe_ = new uv_pipe_t;
    uv_pipe_init(loop_, pipe_, 0);
    pipe_->data = this;
    ++open_listeners_;
    int rc = uv_pipe_open(pipe_, sockets.unix_fd);
    if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(pipe_), kBacklog, &OnNewConnection);
    if (rc != 0) return FromUv("the handed-over unix socket", rc);
    struct stat st;
    if (!options_.unix_socket.empty() && ::stat(options_.unix_socket.c_str(), &st) == 0 &&
        S_ISSOCK(st.st_mode)) {
      socket_bound_ = true;
      socket_dev_ = st.st_dev;
      socket_ino_ = st.st_ino;
    }
  }
  for (const HandedSockets::Connection& c : sockets.connections) {
    auto* conn = new HttpConnection(this, c.via_unix);
    connections_.insert(conn);
    if (conn->Open(c.fd) != 0) {
      ::close(c.fd);
      conn->Close();
      continue;
    }
    ++(c.via_unix ? serving_unix_ : serving_);
    conn->Start();
  }
  return Status::Ok();
}

bool HttpServer::Quiet() const {
  return std::all_of(connections_.begin(), connections_.end(),
                     [](const HttpConnection* c) { return c->Idle() || !c->started(); });
}

void HttpServer::HoldRequests(bool hold) {
  holding_ = hold;
  for (HttpConnection* c : connections_) c->ApplyHold();
}

HandedSockets HttpServer::Hand() const {
  HandedSockets out;
  uv_os_fd_t fd = -1;
  if (tcp_ != nullptr && uv_fileno(AsHandle(tcp_), &fd) == 0) out.tcp_fd = fd;
  if (pipe_ != nullptr && uv_fileno(AsHandle(pipe_), &fd) == 0) out.unix_fd = fd;
  for (const HttpConnection* c : connections_) {
    if (c->Idle() && c->fd() >= 0) out.connections.push_back({c->fd(), c->via_unix()});
  }
  return out;
}

std::string HttpServer::BoundAddress() const {
  if (tcp_ == nullptr) return "";
  sockaddr_storage addr{};
  int len = sizeof(addr);
  if (uv_tcp_getsockname(tcp_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "";
  char name[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    uv_ip4_name(in, name, sizeof(name));
    return std::string(name) + ":" + std::to_string(ntohs(in->sin_port));
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
  uv_ip6_name(in6, name, sizeof(name));
  return "[" + std::string(name) + "]:" + std::to_string(ntohs(in6->sin6_port));
}

void HttpServer::OnNewConnection(uv_stream_t* listener, int status) {
  auto* self = static_cast<HttpServer*>(listener->data);
  if (status < 0) {
    log::Warn("http: accept failed", {{"error", uv_strerror(status)}});
    return;
  }
  bool pipe = listener->type == UV_NAMED_PIPE;
  auto* conn = new HttpConnection(self, pipe);
  self->connections_.insert(conn);
  if (uv_accept(listener, conn->stream()) != 0) {
    conn->Close();
    return;
  }
  // Each listener has its own budget: anyone may open TCP connections to
  // loopback, and they must not lock the socket's users out.
  int64_t& serving = pipe ? self->serving_unix_ : self->serving_;
  if (serving >= self->options_.max_connections) {
    // One line per burst, not per refused connection.
    if (self->refused_logged_ != serving) {
      log::Warn("http: refusing connections over the limit",
                {{"max_connections", self->options_.max_connections}, {"unix_socket", pipe}});
      self->refused_logged_ = serving;
    }
    conn->Refuse();
    return;
  }
  self->refused_logged_ = -1;
  ++serving;
  conn->Start();
}

std::optional<HttpError> HttpServer::Admit(const HttpRequest& head) {
  if (!options_.admit) return std::nullopt;
  return options_.admit(head);
}

void HttpServer::Dispatch(HttpRequest request, const HttpResponder& respond) {
  const char* failure = nullptr;
  std::string what;
  // The handler takes the request; these are for the log if it throws.
  std::string method = request.method, target = request.target;
  try {
    if (!handler_) {
      failure = "no handler installed";
    } else {
      handler_(std::move(request), respond);
    }
  } catch (const std::exception& e) {
    failure = "handler failed";
    what = e.what();
  } catch (...) {
    failure = "handler failed";
    what = "unknown exception";
  }
  if (failure == nullptr) return;
  bool answered = !respond.pending();
  log::Error(answered ? "http: request handler failed after its request was answered or dropped"
                      : "http: request handler failed",
             {{"method", method}, {"target", target}, {"error", what}});
  if (answered) return;  // answered, or the connection is gone: nothing to send
  ReportProtocolError(500);
  respond(HttpErrorResponse(500, "internal", failure));
}

void HttpServer::ReportProtocolError(int status) {
  if (!options_.on_protocol_error) return;
  try {
    options_.on_protocol_error(status);
  } catch (...) {
    // A counter hook must not take the connection down with it.
  }
}

void HttpServer::Close(std::function<void()> done) {
  done_ = std::move(done);
  if (closing_) {
    MaybeFinishClose();
    return;
  }
  closing_ = true;
  if (tcp_ != nullptr) {
    uv_close(AsHandle(tcp_), &OnListenerClosed);
    tcp_ = nullptr;
  }
  if (pipe_ != nullptr) {
    uv_close(AsHandle(pipe_), &OnListenerClosed);
    pipe_ = nullptr;
  }
  if (socket_bound_) {
    // Remove the file only if it is still ours (not a successor's socket).
    struct stat st;
    const std::string& path = options_.unix_socket;
    if (::lstat(path.c_str(), &st) == 0 && st.st_dev == socket_dev_ && st.st_ino == socket_ino_) {
      ::unlink(path.c_str());
    }
    socket_bound_ = false;
  }
  std::vector<HttpConnection*> open(connections_.begin(), connections_.end());
  for (HttpConnection* c : open) c->Close();
  MaybeFinishClose();
}

void HttpServer::OnListenerClosed(uv_handle_t* handle) {
  auto* self = static_cast<HttpServer*>(handle->data);
  if (handle->type == UV_TCP) {
    delete reinterpret_cast<uv_tcp_t*>(handle);
  } else {
    delete reinterpret_cast<uv_pipe_t*>(handle);
  }
  --self->open_listeners_;
  self->MaybeFinishClose();
}

void HttpServer::OnConnectionClosed(HttpConnection* connection) {
  connections_.erase(connection);
  if (connection->started()) --(connection->via_unix() ? serving_unix_ : serving_);
  delete connection;
  MaybeFinishClose();
}

void HttpServer::MaybeFinishClose() {
  if (!closing_ || open_listeners_ > 0 || !connections_.empty() || !done_) return;
  // Moved out first: `done` may destroy this server.
  std::function<void()> done = std::move(done_);
  done_ = nullptr;
  done();
}

}  // namespace orch
