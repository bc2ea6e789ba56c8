// HttpServer on a real uv_loop_t (its own, run in a background thread) with
// plain POSIX socket clients in the test thread. Every test ends by closing
// the server, running the loop dry and checking uv_loop_close() == 0.
#include "http/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/test_util.h"

namespace orch {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Owns a loop running in a background thread and the server on it.
class LoopServer {
 public:
  LoopServer(HttpServer::Options options, HttpServer::Handler handler) {
    // As in the daemon: writing to a client that left must fail, not kill.
    ::signal(SIGPIPE, SIG_IGN);
    EXPECT_EQ(0, uv_loop_init(&loop_));
    server_ = std::make_unique<HttpServer>(&loop_, std::move(options), std::move(handler));
    start_ = server_->Start();
    uv_async_init(&loop_, &async_, &LoopServer::OnAsync);
    async_.data = this;
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  ~LoopServer() { Stop(); }

  const Status& start_status() const { return start_; }
  int port() const {
    std::string a = bound_;
    return a.empty() ? 0 : std::stoi(a.substr(a.rfind(':') + 1));
  }
  std::string bound() {
    return Call([this] { return server_->BoundAddress(); });
  }
  size_t connections() {
    return Call([this] { return server_->ConnectionCount(); });
  }
  void CacheBound() { bound_ = bound(); }
  // For handlers that need the server itself; use it on the loop thread only.
  HttpServer* server() const { return server_.get(); }

  // Runs `fn` on the loop thread and returns its result.
  template <typename F>
  auto Call(F fn) -> decltype(fn()) {
    using R = decltype(fn());
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(fn));
    auto future = task->get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back([task] { (*task)(); });
    }
    uv_async_send(&async_);
    return future.get();
  }

  // Closes the server, lets the loop run dry, returns uv_loop_close().
  int Stop() {
    if (stopped_) return close_rc_;
    stopped_ = true;
    Call([this] {
      server_->Close([this] { uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr); });
      return 0;
    });
    thread_.join();
    server_.reset();
    close_rc_ = uv_loop_close(&loop_);
    return close_rc_;
  }

 private:
  static void OnAsync(uv_async_t* async) {
    auto* self = static_cast<LoopServer*>(async->data);
    std::vector<std::function<void()>> tasks;
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      tasks.swap(self->tasks_);
    }
    for (auto& t : tasks) t();
  }

  uv_loop_t loop_{};
  uv_async_t async_{};
  std::unique_ptr<HttpServer> server_;
  Status start_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::function<void()>> tasks_;
  std::string bound_;
  bool stopped_ = false;
  int close_rc_ = -1;
};

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lowercased names
  std::string body;
};

// A blocking client with a deadline on every read.
class Client {
 public:
  static Client Tcp(int port, bool ipv6 = false) {
    Client c;
    if (ipv6) {
      c.fd_ = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(static_cast<uint16_t>(port));
      a.sin6_addr = in6addr_loopback;
      c.connected_ = ::connect(c.fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    } else {
      c.fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      c.connected_ = ::connect(c.fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    }
    int one = 1;
    ::setsockopt(c.fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return c;
  }
  static Client Unix(const std::string& path) {
    Client c;
    c.fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    c.connected_ = ::connect(c.fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    return c;
  }
  Client() = default;
  Client(Client&& o) noexcept : fd_(o.fd_), connected_(o.connected_), buf_(std::move(o.buf_)) {
    o.fd_ = -1;
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }

  bool connected() const { return connected_; }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads one response (1xx and bodiless statuses included). False on EOF,
  // error or timeout.
  bool Read(Response* out, std::chrono::milliseconds timeout = 5s, bool head_request = false) {
    auto deadline = Clock::now() + timeout;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(deadline)) return false;
    }
    std::string head = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    *out = Response();
    if (head.compare(0, 9, "HTTP/1.1 ") != 0) return false;
    out->status = std::stoi(head.substr(9, 3));
    size_t pos = head.find("\r\n");
    while (pos != std::string::npos) {
      size_t next = head.find("\r\n", pos + 2);
      std::string line =
          head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out->headers[name] = line.substr(colon + 2);
      pos = next;
    }
    size_t length = 0;
    if (out->headers.count("content-length") != 0 && !head_request) {
      length = std::stoul(out->headers["content-length"]);
    }
    while (buf_.size() < length) {
      if (!Fill(deadline)) return false;
    }
    out->body = buf_.substr(0, length);
    buf_.erase(0, length);
    return true;
  }

  // True once the server closed the connection (EOF or reset) before the
  // deadline; data arriving meanwhile is kept for Read().
  bool WaitClosed(std::chrono::milliseconds timeout = 5s) {
    auto deadline = Clock::now() + timeout;
    while (true) {
      int r = FillOnce(deadline);
      if (r == 0) return true;  // EOF / reset
      if (r < 0) return false;  // timeout
    }
  }

  // Whatever arrived so far (for tests that expect no response).
  const std::string& buffered() const { return buf_; }

 private:
  // 1 = data, 0 = EOF or error, -1 = timeout.
  int FillOnce(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return -1;
    pollfd p{fd_, POLLIN, 0};
    int pr = ::poll(&p, 1, static_cast<int>(left.count()));
    if (pr == 0) return -1;
    if (pr < 0) return errno == EINTR ? 1 : 0;
    char tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return 0;
    buf_.append(tmp, static_cast<size_t>(n));
    return 1;
  }
  bool Fill(Clock::time_point deadline) { return FillOnce(deadline) == 1; }

  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

HttpServer::Options TestOptions() {
  HttpServer::Options o;
  o.listen = "127.0.0.1:0";
  o.max_body_bytes = 1024;
  o.max_connections = 16;
  o.idle_timeout_ms = 5000;
  o.max_header_bytes = 16384;
  return o;
}

// {"method":..,"path":..,"body":..,"query":{..}}.
HttpResponse EchoResponse(const HttpRequest& req) {
  nlohmann::json q = nlohmann::json::object();
  for (const auto& [k, v] : req.query) q[k] = v;
  HttpResponse resp;
  resp.body =
      nlohmann::json{{"method", req.method}, {"path", req.path}, {"body", req.body}, {"query", q}}
          .dump();
  return resp;
}

// Answers with EchoResponse before returning.
void Echo(HttpRequest req, HttpResponder respond) { respond(EchoResponse(req)); }

std::string Get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n";
}

nlohmann::json BodyJson(const Response& r) { return nlohmann::json::parse(r.body); }

// A server with Echo on 127.0.0.1:0, started and asserted.
std::unique_ptr<LoopServer> EchoServer(HttpServer::Options o = TestOptions()) {
  auto s = std::make_unique<LoopServer>(std::move(o), &Echo);
  EXPECT_TRUE(s->start_status().ok()) << s->start_status().ToString();
  s->CacheBound();
  return s;
}

// Runs `fn` on `loop` after `ms` from a one-shot timer that frees itself.
// Call on the loop thread.
void Later(uv_loop_t* loop, uint64_t ms, std::function<void()> fn) {
  struct Timer {
    uv_timer_t timer;
    std::function<void()> fn;
  };
  auto* t = new Timer{{}, std::move(fn)};
  uv_timer_init(loop, &t->timer);
  t->timer.data = t;
  uv_timer_start(
      &t->timer,
      [](uv_timer_t* h) {
        static_cast<Timer*>(h->data)->fn();
        uv_close(reinterpret_cast<uv_handle_t*>(h),
                 [](uv_handle_t* h) { delete static_cast<Timer*>(h->data); });
      },
      ms, 0);
}

// A server that answers EchoResponse from a timer `delay_ms` after each
// request arrives, started and asserted.
std::unique_ptr<LoopServer> DeferredEchoServer(uint64_t delay_ms,
                                               HttpServer::Options o = TestOptions()) {
  auto server = std::make_shared<std::atomic<HttpServer*>>(nullptr);
  auto s = std::make_unique<LoopServer>(
      std::move(o), [server, delay_ms](HttpRequest req, HttpResponder respond) {
        Later(server->load()->loop(), delay_ms,
              [req = std::move(req), respond] { respond(EchoResponse(req)); });
      });
  *server = s->server();
  EXPECT_TRUE(s->start_status().ok()) << s->start_status().ToString();
  s->CacheBound();
  return s;
}

// True when `fd` is not open (the server closed it).
bool FdClosed(int fd) { return ::fcntl(fd, F_GETFD) == -1 && errno == EBADF; }

TEST(HttpServer, SimpleGetIsAnsweredAndBoundAddressHasTheRealPort) {
  auto s = EchoServer();
  EXPECT_EQ(0u, s->bound().find("127.0.0.1:"));
  ASSERT_GT(s->port(), 0);
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Send(Get("/hello?x=1&y=a%2Fb")));
  Response r;
  ASSERT_TRUE(c.Read(&r));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("application/json", r.headers["content-type"]);
  EXPECT_EQ(0u, r.headers.count("connection")) << "HTTP/1.1 stays open by default";
  auto j = BodyJson(r);
  EXPECT_EQ("GET", j["method"]);
  EXPECT_EQ("/hello", j["path"]);
  EXPECT_EQ("a/b", j["query"]["y"]);
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, KeepAliveServesTwoRequestsOnOneConnection) {
  auto s = EchoServer();
  Client c = Client::Tcp(s->port());
  for (const char* path : {"/one", "/two"}) {
    ASSERT_TRUE(c.Send(Get(path)));
    Response r;
    ASSERT_TRUE(c.Read(&r)) << path;
    EXPECT_EQ(path, BodyJson(r)["path"]);
  }
  EXPECT_EQ(1u, s->connections());
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, PipelinedRequestsInOneWriteAreAnsweredInOrder) {
  auto s = EchoServer();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send(Get("/first") + "POST /second HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi" +
                     Get("/third")));
  for (const char* path : {"/first", "/second", "/third"}) {
    Response r;
    ASSERT_TRUE(c.Read(&r)) << path;
    EXPECT_EQ(path, BodyJson(r)["path"]);
  }
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, ChunkedPostBodyReachesTheHandlerDechunked) {
  auto s = EchoServer();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send("POST /jobs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
  ASSERT_TRUE(c.Send("5\r\nhello\r\n"));
  ASSERT_TRUE(c.Send("6\r\n world\r\n0\r\n\r\n"));
  Response r;
  ASSERT_TRUE(c.Read(&r));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("hello world", BodyJson(r)["body"]);
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, ExpectContinueGets100BeforeTheBodyIsSent) {
  auto s = EchoServer();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send("POST /jobs HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));
  Response r;
  ASSERT_TRUE(c.Read(&r, 5s));
  EXPECT_EQ(100, r.status);
  ASSERT_TRUE(c.Send("data"));
  ASSERT_TRUE(c.Read(&r));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("data", BodyJson(r)["body"]);
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, ExpectContinueOverTheLimitGets413InsteadOf100) {
  auto s = EchoServer();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(
      c.Send("POST /jobs HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"));
  Response r;
  ASSERT_TRUE(c.Read(&r));
  EXPECT_EQ(413, r.status);
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, ContentLengthWithTransferEncodingIs400AndCloses) {
  std::atomic<int> protocol_errors{0};
  HttpServer::Options o = TestOptions();
  o.on_protocol_error = [&](int status) {
    if (status == 400) ++protocol_errors;
  };
  auto s = EchoServer(o);
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(
      c.Send("POST /jobs HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
             "4\r\nGET /smuggled HTTP/1.1\r\n\r\n0\r\n\r\n"));
  Response r;
  ASSERT_TRUE(c.Read(&r));
  EXPECT_EQ(400, r.status);
  EXPECT_EQ("bad_request", BodyJson(r)["error"]["code"]);
  EXPECT_EQ("close", r.headers["connection"]);
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(1, protocol_errors.load());
  EXPECT_EQ(0, s->Stop());
}

// Alone, llhttp 8.1 reads each of these as one request and then a smuggled
// GET /admin. Each is sent in two writes split inside the offending bytes, so
// the check also has to hold across reads.
TEST(HttpServer, LenientFramingIs400AndClosesWithoutServingAnyRequest) {
  std::atomic<int> handled{0};
  std::atomic<int> protocol_errors{0};
  HttpServer::Options o = TestOptions();
  o.on_protocol_error = [&](int status) {
    if (status == 400) ++protocol_errors;
  };
  auto s = std::make_unique<LoopServer>(o, [&](HttpRequest req, HttpResponder respond) {
    ++handled;
    Echo(std::move(req), respond);
  });
  ASSERT_TRUE(s->start_status().ok()) << s->start_status().ToString();
  s->CacheBound();
  const std::string smuggled = "GET /admin HTTP/1.1\r\nHost: t\r\n\r\n";
  const std::string chunked =
      "POST /jobs HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
  struct Case {
    std::string first, second, why;
  };
  for (const Case& k : std::vector<Case>{
           {"GET / HTTP/1.1\r\nHost: t\r\n\r", "X" + smuggled, "bare CR"},
           {chunked + "5\r\nhello", "XX0\r\n\r\n" + smuggled, "chunk data not followed by CRLF"},
           {"POST /jobs HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n",
            " chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + smuggled, "obsolete line folding"},
       }) {
    SCOPED_TRACE(k.why);
    Client c = Client::Tcp(s->port());
    ASSERT_TRUE(c.Send(k.first));
    std::this_thread::sleep_for(5ms);  // separate segments, not a stand-in for a condition
    ASSERT_TRUE(c.Send(k.second));
    Response r;
    ASSERT_TRUE(c.Read(&r));
    EXPECT_EQ(400, r.status);
    EXPECT_EQ("bad_request", BodyJson(r)["error"]["code"]);
    EXPECT_NE(std::string::npos, r.body.find(k.why)) << r.body;
    EXPECT_EQ("close", r.headers["connection"]);
    EXPECT_TRUE(c.WaitClosed());
    EXPECT_EQ("", c.buffered()) << "nothing after the 400";
  }
  EXPECT_EQ(0, handled.load()) << "neither the first nor the smuggled request reached a handler";
  EXPECT_EQ(3, protocol_errors.load());
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, BodyOneByteOverTheLimitIs413WithoutSendingTheBody) {
  auto s = EchoServer();
  {
    Client c = Client::Tcp(s->port());
    ASSERT_TRUE(
        c.Send("POST /jobs HTTP/1.1\r\nContent-Length: 1024\r\n\r\n" + std::string(1024, 'a')));
    Response r;
    ASSERT_TRUE(c.Read(&r));
    EXPECT_EQ(200, r.status) << "exactly the limit is fine";
  }
  Client c = Client::Tcp(s->port());
  // Only the head: the answer must not wait for a body it will refuse.
  ASSERT_TRUE(c.Send("POST /jobs HTTP/1.1\r\nContent-Length: 1025\r\n\r\n"));
  Response r;
  ASSERT_TRUE(c.Read(&r));
  EXPECT_EQ(413, r.status);
  EXPECT_EQ("payload_too_large", BodyJson(r)["error"]["code"]);
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, ChunkedBodyOverTheLimitIs413) {
  auto s = EchoServer();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send("POST /jobs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" +
                     std::string(1024, 'a') + "\r\n1\r\n"));
  Response r;
  ASSERT_TRUE(c.Read(&r));
  EXPECT_EQ(413, r.status);
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, HundredKibHeaderIs431AndCloses) {
  auto s = EchoServer();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nX-Big: " + std::string(100 * 1024, 'h') + "\r\n\r\n"));
  Response r;
  ASSERT_TRUE(c.Read(&r));
  EXPECT_EQ(431, r.status);
  EXPECT_EQ("header_too_large", BodyJson(r)["error"]["code"]);
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, GarbageIs400AndCloses) {
  auto s = EchoServer();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send(std::string("\x16\x03\x01\x02\x00garbage\r\n\r\n", 16)));
  Response r;
  ASSERT_TRUE(c.Read(&r));
  EXPECT_EQ(400, r.status);
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, RequestSentOneByteAtATimeWorks) {
  auto s = EchoServer();
  Client c = Client::Tcp(s->port());
  std::string req = "POST /bytes?a=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz";
  for (char ch : req) {
    ASSERT_TRUE(c.Send(std::string(1, ch)));
    std::this_thread::sleep_for(1ms);  // separate segments, not a stand-in for a condition
  }
  Response r;
  ASSERT_TRUE(c.Read(&r));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("xyz", BodyJson(r)["body"]);
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, IdleConnectionIsClosedAfterIdleTimeout) {
  HttpServer::Options o = TestOptions();
  o.idle_timeout_ms = 200;
  auto s = EchoServer(o);
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send(Get("/")));
  Response r;
  ASSERT_TRUE(c.Read(&r));
  auto idle_since = Clock::now();
  EXPECT_TRUE(c.WaitClosed(5s));
  auto idle = Clock::now() - idle_since;
  EXPECT_GE(idle, 150ms);
  EXPECT_LT(idle, 3s);
  EXPECT_TRUE(test::WaitFor([&] { return s->connections() == 0; }));
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, SlowlorisIsCutAtIdleTimeoutDespiteTrickledBytes) {
  HttpServer::Options o = TestOptions();
  o.idle_timeout_ms = 200;
  auto s = EchoServer(o);
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nX-Slow: "));
  auto start = Clock::now();
  bool closed = false;
  while (Clock::now() - start < 5s) {
    if (!c.Send("a") || c.WaitClosed(50ms)) {
      closed = true;
      break;
    }
  }
  ASSERT_TRUE(closed) << "a byte every 50 ms must not keep the connection";
  EXPECT_LT(Clock::now() - start, 2s);
  // The request had begun: the client is told why before the close.
  EXPECT_EQ(0u, c.buffered().find("HTTP/1.1 408 ")) << c.buffered();
  Response r;
  ASSERT_TRUE(c.Read(&r, 1s)) << c.buffered();
  EXPECT_EQ(408, r.status);
  EXPECT_EQ("close", r.headers["connection"]);
  EXPECT_EQ("timeout", BodyJson(r)["error"]["code"]) << r.body;
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, ConnectionsOverTheLimitAreRefusedWithoutHurtingOthers) {
  std::atomic<int> refused{0};
  HttpServer::Options o = TestOptions();
  o.max_connections = 2;
  o.on_protocol_error = [&](int status) {
    if (status == 503) ++refused;
  };
  auto s = EchoServer(o);
  Client a = Client::Tcp(s->port());
  Client b = Client::Tcp(s->port());
  Response r;
  ASSERT_TRUE(a.Send(Get("/a")) && a.Read(&r));
  ASSERT_TRUE(b.Send(Get("/b")) && b.Read(&r));
  Client extra = Client::Tcp(s->port());
  ASSERT_TRUE(extra.connected()) << "the kernel accepts; the server refuses";
  EXPECT_TRUE(extra.WaitClosed());
  EXPECT_EQ(0u, extra.buffered().find("HTTP/1.1 503 ")) << extra.buffered();
  ASSERT_TRUE(extra.Read(&r, 1s)) << extra.buffered();
  EXPECT_EQ(503, r.status);
  EXPECT_EQ("unavailable", BodyJson(r)["error"]["code"]) << r.body;
  EXPECT_EQ(1, refused.load());
  for (Client* c : {&a, &b}) {
    ASSERT_TRUE(c->Send(Get("/still")));
    ASSERT_TRUE(c->Read(&r));
    EXPECT_EQ(200, r.status);
  }
  EXPECT_TRUE(test::WaitFor([&] { return s->connections() == 2; }));
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, Http10WithoutKeepAliveClosesAfterTheResponse) {
  auto s = EchoServer();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send("GET /old HTTP/1.0\r\n\r\n"));
  Response r;
  ASSERT_TRUE(c.Read(&r));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("close", r.headers["connection"]);
  EXPECT_TRUE(c.WaitClosed());

  Client k = Client::Tcp(s->port());
  ASSERT_TRUE(k.Send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  ASSERT_TRUE(k.Read(&r));
  EXPECT_EQ("keep-alive", r.headers["connection"]);
  ASSERT_TRUE(k.Send("GET /again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  ASSERT_TRUE(k.Read(&r));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, ConnectionCloseIsHonouredAndLaterPipelinedRequestsIgnored) {
  auto s = EchoServer();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send(Get("/last", "Connection: close\r\n") + Get("/ignored")));
  Response r;
  ASSERT_TRUE(c.Read(&r));
  EXPECT_EQ("/last", BodyJson(r)["path"]);
  EXPECT_EQ("close", r.headers["connection"]);
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ("", c.buffered());
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, HandlerExceptionBecomes500AndTheConnectionLives) {
  auto s = std::make_unique<LoopServer>(TestOptions(), [](HttpRequest req, HttpResponder respond) {
    if (req.path == "/throw") throw std::runtime_error("boom");
    HttpResponse resp;
    resp.body = "{}";
    respond(std::move(resp));
  });
  ASSERT_TRUE(s->start_status().ok());
  s->CacheBound();
  Client c = Client::Tcp(s->port());
  Response r;
  ASSERT_TRUE(c.Send(Get("/throw")) && c.Read(&r));
  EXPECT_EQ(500, r.status);
  EXPECT_EQ("internal", BodyJson(r)["error"]["code"]);
  ASSERT_TRUE(c.Send(Get("/fine")) && c.Read(&r));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, InvalidStatusFromTheHandlerBecomes500) {
  auto s = std::make_unique<LoopServer>(TestOptions(), [](HttpRequest, HttpResponder respond) {
    HttpResponse resp;
    resp.status = 42;
    respond(std::move(resp));
  });
  ASSERT_TRUE(s->start_status().ok());
  s->CacheBound();
  Client c = Client::Tcp(s->port());
  Response r;
  ASSERT_TRUE(c.Send(Get("/")) && c.Read(&r));
  EXPECT_EQ(500, r.status);
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, HeadSendsTheHeadOnly) {
  auto s = EchoServer();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send("HEAD /h HTTP/1.1\r\n\r\n"));
  Response r;
  ASSERT_TRUE(c.Read(&r, 5s, /*head_request=*/true));
  EXPECT_EQ(200, r.status);
  EXPECT_NE("0", r.headers["content-length"]);
  ASSERT_TRUE(c.Send(Get("/next")) && c.Read(&r));
  EXPECT_EQ("/next", BodyJson(r)["path"]) << "no body bytes were left on the wire";
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, StreamsAMultiMegabyteFileExactly) {
  test::TempDir dir;
  std::string path = dir.File("big.log");
  std::string content(5 * 1024 * 1024 + 123, '\0');
  std::mt19937 rng(42);
  for (char& ch : content) ch = static_cast<char>(rng());
  test::WriteFile(path, content);
  std::atomic<int> last_fd{-1};
  auto s = std::make_unique<LoopServer>(TestOptions(), [&](HttpRequest req, HttpResponder respond) {
    HttpResponse resp;
    resp.content_type = "text/plain";
    resp.file_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    last_fd = resp.file_fd;
    resp.file_offset = req.query.count("offset") ? std::stoll(req.query.at("offset")) : 0;
    resp.file_length = static_cast<int64_t>(content.size()) - resp.file_offset;
    respond(std::move(resp));
  });
  ASSERT_TRUE(s->start_status().ok());
  s->CacheBound();
  Client c = Client::Tcp(s->port());
  Response r;
  ASSERT_TRUE(c.Send(Get("/log")) && c.Read(&r, 30s));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("text/plain", r.headers["content-type"]);
  ASSERT_EQ(content.size(), r.body.size());
  EXPECT_TRUE(r.body == content);
  ASSERT_TRUE(c.Send(Get("/log?offset=1000")) && c.Read(&r, 30s));
  EXPECT_TRUE(r.body == content.substr(1000));
  ASSERT_TRUE(c.Send("HEAD /log HTTP/1.1\r\n\r\n") && c.Read(&r, 5s, true));
  EXPECT_EQ(std::to_string(content.size()), r.headers["content-length"]);
  int fd = last_fd;
  EXPECT_EQ(-1, s->Call([fd] { return ::fcntl(fd, F_GETFD); })) << "the server closed the fd";
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, ShortFileAbortsTheConnection) {
  test::TempDir dir;
  std::string path = dir.File("short");
  test::WriteFile(path, "12345");
  auto s = std::make_unique<LoopServer>(TestOptions(), [&](HttpRequest, HttpResponder respond) {
    HttpResponse resp;
    resp.file_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    resp.file_length = 10;  // more than there is
    respond(std::move(resp));
  });
  ASSERT_TRUE(s->start_status().ok());
  s->CacheBound();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send(Get("/")));
  Response r;
  EXPECT_FALSE(c.Read(&r, 5s)) << "the body is cut short, never padded";
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, UnixSocketIsMode0660AndServes) {
  test::TempDir dir;
  HttpServer::Options o = TestOptions();
  o.listen = "";
  o.unix_socket = dir.File("api.sock");
  auto s = std::make_unique<LoopServer>(o, &Echo);
  ASSERT_TRUE(s->start_status().ok()) << s->start_status().ToString();
  EXPECT_EQ("", s->bound());
  struct stat st;
  ASSERT_EQ(0, ::stat(o.unix_socket.c_str(), &st));
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(0660u, st.st_mode & 07777);
  Client c = Client::Unix(o.unix_socket);
  ASSERT_TRUE(c.connected());
  Response r;
  ASSERT_TRUE(c.Send(Get("/over-unix")) && c.Read(&r));
  EXPECT_EQ("/over-unix", BodyJson(r)["path"]);
  EXPECT_EQ(0, s->Stop());
  EXPECT_NE(0, ::access(o.unix_socket.c_str(), F_OK)) << "the socket file is removed on close";
}

TEST(HttpServer, StaleUnixSocketIsReplaced) {
  test::TempDir dir;
  std::string path = dir.File("api.sock");
  {  // a socket file whose owner died: bound, never unlinked
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    ASSERT_EQ(0, ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)));
    ::close(fd);
  }
  HttpServer::Options o = TestOptions();
  o.listen = "";
  o.unix_socket = path;
  auto s = std::make_unique<LoopServer>(o, &Echo);
  ASSERT_TRUE(s->start_status().ok()) << s->start_status().ToString();
  Client c = Client::Unix(path);
  Response r;
  ASSERT_TRUE(c.Send(Get("/")) && c.Read(&r));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, LiveUnixSocketIsNotStolen) {
  test::TempDir dir;
  HttpServer::Options o = TestOptions();
  o.listen = "";
  o.unix_socket = dir.File("api.sock");
  auto first = std::make_unique<LoopServer>(o, &Echo);
  ASSERT_TRUE(first->start_status().ok());
  auto second = std::make_unique<LoopServer>(o, &Echo);
  EXPECT_FALSE(second->start_status().ok());
  EXPECT_NE(std::string::npos, second->start_status().message().find("already in use"))
      << second->start_status().ToString();
  EXPECT_EQ(0, second->Stop());
  Client c = Client::Unix(o.unix_socket);
  Response r;
  ASSERT_TRUE(c.Send(Get("/")) && c.Read(&r)) << "the first server still owns the socket";
  EXPECT_EQ(0, first->Stop());
}

TEST(HttpServer, NonSocketFileAtTheSocketPathIsAnError) {
  test::TempDir dir;
  HttpServer::Options o = TestOptions();
  o.listen = "";
  o.unix_socket = dir.File("api.sock");
  test::WriteFile(o.unix_socket, "precious");
  auto s = std::make_unique<LoopServer>(o, &Echo);
  EXPECT_FALSE(s->start_status().ok());
  EXPECT_EQ(0, s->Stop());
  EXPECT_EQ("precious", test::ReadFile(o.unix_socket));
}

TEST(HttpServer, BadListenAddressIsInvalidArgument) {
  for (std::string listen : {"nonsense", "127.0.0.1:99999", "example.com:80", "[::1]"}) {
    HttpServer::Options o = TestOptions();
    o.listen = listen;
    auto s = std::make_unique<LoopServer>(o, &Echo);
    EXPECT_EQ(Code::kInvalidArgument, s->start_status().code()) << listen;
    EXPECT_EQ(0, s->Stop());
  }
}

TEST(HttpServer, PortInUseIsAnError) {
  auto a = EchoServer();
  HttpServer::Options o = TestOptions();
  o.listen = "127.0.0.1:" + std::to_string(a->port());
  auto b = std::make_unique<LoopServer>(o, &Echo);
  EXPECT_FALSE(b->start_status().ok());
  EXPECT_EQ(0, b->Stop());
  EXPECT_EQ(0, a->Stop());
}

TEST(HttpServer, ListensOnIpv6Loopback) {
  {
    int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    if (fd >= 0) ::close(fd);
    if (!ok) GTEST_SKIP() << "no IPv6 loopback here";
  }
  HttpServer::Options o = TestOptions();
  o.listen = "[::1]:0";
  auto s = std::make_unique<LoopServer>(o, &Echo);
  ASSERT_TRUE(s->start_status().ok()) << s->start_status().ToString();
  s->CacheBound();
  EXPECT_EQ(0u, s->bound().find("[::1]:"));
  Client c = Client::Tcp(s->port(), /*ipv6=*/true);
  ASSERT_TRUE(c.connected());
  Response r;
  ASSERT_TRUE(c.Send(Get("/v6")) && c.Read(&r));
  EXPECT_EQ("/v6", BodyJson(r)["path"]);
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, CloseCutsOpenConnectionsAndFreesEverything) {
  auto s = EchoServer();
  Client idle = Client::Tcp(s->port());
  Client partial = Client::Tcp(s->port());
  ASSERT_TRUE(partial.Send("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"));
  EXPECT_TRUE(test::WaitFor([&] { return s->connections() == 2; }));
  EXPECT_EQ(0, s->Stop());
  EXPECT_TRUE(idle.WaitClosed());
  EXPECT_TRUE(partial.WaitClosed());
}

TEST(HttpServer, HandlerMayCloseTheServer) {
  std::atomic<HttpServer*> server{nullptr};
  std::atomic<bool> closed{false};
  auto s = std::make_unique<LoopServer>(TestOptions(), [&](HttpRequest, HttpResponder respond) {
    server.load()->Close([&] { closed = true; });
    HttpResponse resp;
    resp.body = "{}";
    respond(std::move(resp));  // to a closed connection: dropped
  });
  ASSERT_TRUE(s->start_status().ok());
  s->CacheBound();
  server = s->server();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send(Get("/shutdown")));
  EXPECT_TRUE(c.WaitClosed()) << "the connection is cut; no response follows a closed server";
  EXPECT_TRUE(test::WaitFor([&] { return closed.load(); }));
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, DeferredResponseFromATimerArrivesAndKeepAliveContinues) {
  auto s = DeferredEchoServer(50);
  Client c = Client::Tcp(s->port());
  for (const char* path : {"/one", "/two"}) {
    auto sent = Clock::now();
    ASSERT_TRUE(c.Send(Get(path)));
    Response r;
    ASSERT_TRUE(c.Read(&r)) << path;
    EXPECT_GE(Clock::now() - sent, 40ms) << "answered by the timer, not before";
    EXPECT_EQ(200, r.status);
    EXPECT_EQ(0u, r.headers.count("connection"));
    EXPECT_EQ(path, BodyJson(r)["path"]);
  }
  EXPECT_EQ(1u, s->connections()) << "both requests on one connection";
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, PipelinedRequestsWaitForADeferredOneAndAreAnsweredInOrder) {
  std::vector<std::string> events;  // loop thread only
  std::atomic<HttpServer*> server{nullptr};
  auto s = std::make_unique<LoopServer>(TestOptions(), [&](HttpRequest req, HttpResponder respond) {
    events.push_back("handle " + req.path);
    if (req.path != "/first") {
      respond(EchoResponse(req));
      return;
    }
    EXPECT_TRUE(respond.pending());
    Later(server.load()->loop(), 50, [&events, req = std::move(req), respond] {
      events.push_back("answer /first");
      respond(EchoResponse(req));
    });
  });
  server = s->server();
  ASSERT_TRUE(s->start_status().ok());
  s->CacheBound();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send(Get("/first") + Get("/second") + Get("/third")));
  for (const char* path : {"/first", "/second", "/third"}) {
    Response r;
    ASSERT_TRUE(c.Read(&r)) << path;
    EXPECT_EQ(path, BodyJson(r)["path"]);
  }
  EXPECT_EQ((std::vector<std::string>{"handle /first", "answer /first", "handle /second",
                                      "handle /third"}),
            s->Call([&] { return events; }));
  EXPECT_EQ(0, s->Stop());
}


// A responder whose request is gone: answering with a file sends nothing,
// and the file is closed at once (loop thread).
bool LateFileAnswerIsClosed(const HttpResponder& held, const std::string& path, int64_t length) {
  HttpResponse resp;
  resp.file_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  resp.file_length = length;
  int late = resp.file_fd;
  bool was_pending = held.pending();
  held(std::move(resp));
  return late >= 0 && !was_pending && FdClosed(late);
}

TEST(HttpServer, ResponderCalledAfterTheClientLeftIsHarmlessAndClosesTheFile) {
  test::TempDir dir;
  std::string path = dir.File("log");
  test::WriteFile(path, std::string(256 * 1024, 'x'));
  HttpResponder held;  // loop thread only
  auto s = std::make_unique<LoopServer>(
      TestOptions(), [&](HttpRequest, HttpResponder respond) { held = std::move(respond); });
  ASSERT_TRUE(s->start_status().ok());
  s->CacheBound();
  {
    Client c = Client::Tcp(s->port());
    ASSERT_TRUE(c.Send(Get("/log")));
    ASSERT_TRUE(test::WaitFor([&] { return s->Call([&] { return held.pending(); }); }));
  }  // the client closes without waiting for the answer
  int fd = s->Call([&] {
    HttpResponse resp;
    resp.file_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    resp.file_length = 256 * 1024;
    int fd = resp.file_fd;
    held(std::move(resp));
    return fd;
  });
  ASSERT_GE(fd, 0);
  // Writing to the departed client fails; the connection closes and with it the file.
  EXPECT_TRUE(test::WaitFor([&] { return s->connections() == 0; }));
  EXPECT_TRUE(s->Call([&] { return FdClosed(fd); }));
  // Now the connection is gone: a later call sends nothing and closes its file at once.
  EXPECT_TRUE(s->Call([&] { return LateFileAnswerIsClosed(held, path, 1); }));
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, ServerClosedWhileARequestIsPendingDropsItAndTheResponderGoesInert) {
  test::TempDir dir;
  std::string path = dir.File("log");
  test::WriteFile(path, "12345");
  HttpResponder held;  // loop thread only
  auto s = std::make_unique<LoopServer>(
      TestOptions(), [&](HttpRequest, HttpResponder respond) { held = std::move(respond); });
  ASSERT_TRUE(s->start_status().ok());
  s->CacheBound();
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send(Get("/slow")));
  ASSERT_TRUE(test::WaitFor([&] { return s->Call([&] { return held.pending(); }); }));
  std::atomic<bool> done{false};
  s->Call([&] {
    s->server()->Close([&] { done = true; });
    return 0;
  });
  EXPECT_TRUE(test::WaitFor([&] { return done.load(); }));
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ("", c.buffered()) << "the pending request is dropped, not answered";
  EXPECT_TRUE(s->Call([&] { return LateFileAnswerIsClosed(held, path, 5); }));
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, OnlyTheFirstCallOfAResponderSends) {
  test::TempDir dir;
  std::string path = dir.File("log");
  test::WriteFile(path, "second answer");
  HttpResponder first_request;  // loop thread only
  std::vector<bool> checks;     // loop thread only
  auto s = std::make_unique<LoopServer>(TestOptions(), [&](HttpRequest req, HttpResponder respond) {
    if (req.path == "/twice") {
      first_request = respond;
      HttpResponse a;
      a.body = "first answer";
      respond(std::move(a));
      checks.push_back(!respond.pending());
      HttpResponse b;
      b.file_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      b.file_length = 13;
      int fd = b.file_fd;
      respond(std::move(b));
      checks.push_back(fd >= 0 && FdClosed(fd));
      return;
    }
    // A responder of an earlier request cannot answer this one.
    HttpResponse stale;
    stale.body = "stale";
    first_request(std::move(stale));
    checks.push_back(respond.pending());
    respond(EchoResponse(req));
  });
  ASSERT_TRUE(s->start_status().ok());
  s->CacheBound();
  Client c = Client::Tcp(s->port());
  Response r;
  ASSERT_TRUE(c.Send(Get("/twice")) && c.Read(&r));
  EXPECT_EQ("first answer", r.body);
  ASSERT_TRUE(c.Send(Get("/next")) && c.Read(&r));
  EXPECT_EQ("/next", BodyJson(r)["path"]) << r.body;
  EXPECT_EQ((std::vector<bool>{true, true, true}), s->Call([&] { return checks; }));
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, IdleTimeoutDoesNotCutARequestBeingHandled) {
  HttpServer::Options o = TestOptions();
  o.idle_timeout_ms = 100;
  auto s = DeferredEchoServer(300, o);
  Client c = Client::Tcp(s->port());
  ASSERT_TRUE(c.Send(Get("/slow")));
  Response r;
  ASSERT_TRUE(c.Read(&r)) << "cut while the handler worked: " << c.buffered();
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("/slow", BodyJson(r)["path"]);
  // Answered, the connection is idle again and the timeout applies.
  auto idle_since = Clock::now();
  EXPECT_TRUE(c.WaitClosed(5s));
  EXPECT_LT(Clock::now() - idle_since, 3s);
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, HandlerThrowingAfterItRespondedKeepsTheResponse) {
  std::atomic<int> protocol_errors{0};
  HttpServer::Options o = TestOptions();
  o.on_protocol_error = [&](int) { ++protocol_errors; };
  auto s = std::make_unique<LoopServer>(o, [](HttpRequest req, HttpResponder respond) {
    respond(EchoResponse(req));
    if (req.path == "/throw") throw std::runtime_error("after the answer");
  });
  ASSERT_TRUE(s->start_status().ok());
  s->CacheBound();
  Client c = Client::Tcp(s->port());
  Response r;
  ASSERT_TRUE(c.Send(Get("/throw")) && c.Read(&r));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("/throw", BodyJson(r)["path"]);
  ASSERT_TRUE(c.Send(Get("/fine")) && c.Read(&r));
  EXPECT_EQ("/fine", BodyJson(r)["path"]) << "no 500 followed the answer";
  EXPECT_EQ(0, protocol_errors.load());
  EXPECT_EQ(0, s->Stop());
}

TEST(HttpServer, HandlerThrowingBeforeADeferredAnswerGets500AndTheConnectionLives) {
  std::atomic<HttpServer*> server{nullptr};
  auto s = std::make_unique<LoopServer>(TestOptions(), [&](HttpRequest req, HttpResponder respond) {
    if (req.path == "/throw") throw std::runtime_error("boom");
    Later(server.load()->loop(), 20,
          [req = std::move(req), respond] { respond(EchoResponse(req)); });
  });
  server = s->server();
  ASSERT_TRUE(s->start_status().ok());
  s->CacheBound();
  Client c = Client::Tcp(s->port());
  Response r;
  ASSERT_TRUE(c.Send(Get("/throw")) && c.Read(&r));
  EXPECT_EQ(500, r.status);
  EXPECT_EQ("internal", BodyJson(r)["error"]["code"]);
  ASSERT_TRUE(c.Send(Get("/fine")) && c.Read(&r));
  EXPECT_EQ(200, r.status);
  EXPECT_EQ("/fine", BodyJson(r)["path"]);
  EXPECT_EQ(0, s->Stop());
}

// HEAD, HTTP/1.0 keep-alive and Connection: close are decided when the request
// arrives and must hold for an answer sent later.
TEST(HttpServer, DeferredAnswersKeepTheRequestsConnectionSemantics) {
  auto s = DeferredEchoServer(20);
  {
    Client c = Client::Tcp(s->port());
    ASSERT_TRUE(c.Send("HEAD /h HTTP/1.1\r\n\r\n"));
    Response r;
    ASSERT_TRUE(c.Read(&r, 5s, /*head_request=*/true));
    EXPECT_EQ(200, r.status);
    EXPECT_NE("0", r.headers["content-length"]);
    ASSERT_TRUE(c.Send(Get("/next")) && c.Read(&r));
    EXPECT_EQ("/next", BodyJson(r)["path"]) << "no body bytes were left on the wire";
  }
  {
    Client k = Client::Tcp(s->port());
    Response r;
    ASSERT_TRUE(k.Send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") && k.Read(&r));
    EXPECT_EQ("keep-alive", r.headers["connection"]);
    ASSERT_TRUE(k.Send("GET /again HTTP/1.0\r\n\r\n") && k.Read(&r));
    EXPECT_EQ("/again", BodyJson(r)["path"]);
    EXPECT_EQ("close", r.headers["connection"]);
    EXPECT_TRUE(k.WaitClosed());
  }
  {
    Client c = Client::Tcp(s->port());
    Response r;
    ASSERT_TRUE(c.Send(Get("/last", "Connection: close\r\n") + Get("/ignored")) && c.Read(&r));
    EXPECT_EQ("/last", BodyJson(r)["path"]);
    EXPECT_EQ("close", r.headers["connection"]);
    EXPECT_TRUE(c.WaitClosed());
    EXPECT_EQ("", c.buffered());
  }
  EXPECT_EQ(0, s->Stop());
}

}  // namespace
}  // namespace orch
