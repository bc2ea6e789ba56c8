#include "http/http_connection.h"

#include <sys/socket.h>

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <utility>

#include "base/log.h"
#include "http/server.h"

namespace orch {
namespace {

// After answering with "Connection: close" the connection half-closes and
// keeps reading (discarding) for a moment: closing a socket with unread input
// makes Linux send RST, which can destroy the answer (413, 400) before the
// client reads it.
constexpr uint64_t kLingerMs = 2000;
constexpr size_t kMaxLingerBytes = 1 << 20;

constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";

uv_handle_t* AsHandle(void* h) { return static_cast<uv_handle_t*>(h); }

}  // namespace

HttpConnection::HttpConnection(HttpServer* server, bool is_pipe)
    : server_(server),
      link_(std::make_shared<HttpResponder::Link>(HttpResponder::Link{this})),
      via_unix_(is_pipe),
      parser_({server->options().max_body_bytes, server->options().max_header_bytes},
              [this](HttpRequest& head) {
                head.via_unix_socket = via_unix_;
                head.peer_uid = peer_uid_;
                return server_->Admit(head);
              }),
      read_buf_(new char[kReadBufferSize]) {
  // Neither init can fail for these arguments (no socket exists before accept).
  int rc = is_pipe ? uv_pipe_init(server->loop(), &stream_.pipe, 0)
                   : uv_tcp_init(server->loop(), &stream_.tcp);
  assert(rc == 0);
  rc = uv_timer_init(server->loop(), &timer_);
  assert(rc == 0);
  (void)rc;
  AsHandle(&stream_)->data = this;
  timer_.data = this;
  continue_req_.data = this;
  response_req_.data = this;
  shutdown_req_.data = this;
}

HttpConnection::~HttpConnection() { CloseFile(); }

void HttpConnection::Start() {
  started_ = true;
  if (AsHandle(&stream_)->type == UV_TCP) uv_tcp_nodelay(&stream_.tcp, 1);
  uv_os_fd_t fd = -1;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (via_unix_ && uv_fileno(AsHandle(&stream_), &fd) == 0 &&
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    peer_uid_ = cred.uid;
  }
  ResetTimer(static_cast<uint64_t>(server_->options().idle_timeout_ms));
  StartReading();
}

bool HttpConnection::Idle() const {
  return started_ && !closing_ && phase_ == Phase::kReading && !peer_eof_ &&
         !parser_.in_request() && pending_off_ >= pending_.size() &&
         uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(&stream_)) == 0;
}

int HttpConnection::Open(int fd) {
  return via_unix_ ? uv_pipe_open(&stream_.pipe, fd) : uv_tcp_open(&stream_.tcp, fd);
}

int HttpConnection::fd() const {
  uv_os_fd_t fd = -1;
  return uv_fileno(AsHandle(const_cast<decltype(stream_)*>(&stream_)), &fd) == 0 ? fd : -1;
}

void HttpConnection::Refuse() {
  server_->ReportProtocolError(503);
  HttpResponse r = HttpErrorResponse(503, "unavailable", "too many connections");
  head_.clear();
  FormatHttpResponseHead(r, static_cast<int64_t>(r.body.size()), true, false, &head_);
  head_ += r.body;
  uv_buf_t buf = uv_buf_init(head_.data(), static_cast<unsigned>(head_.size()));
  // A fresh socket's send buffer takes this whole; if not, the client just
  // sees the close.
  (void)uv_try_write(stream(), &buf, 1);
  Close();
}

void HttpConnection::Close() {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  link_.reset();  // a request being handled is dropped; its responders go inert
  CloseFile();
  uv_close(AsHandle(&stream_), &HttpConnection::OnHandleClosed);
  uv_close(AsHandle(&timer_), &HttpConnection::OnHandleClosed);
}

void HttpConnection::OnHandleClosed(uv_handle_t* handle) {
  auto* self = static_cast<HttpConnection*>(handle->data);
  if (--self->open_handles_ == 0) self->server_->OnConnectionClosed(self);  // deletes self
}

void HttpConnection::OnAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* self = static_cast<HttpConnection*>(handle->data);
  *buf = uv_buf_init(self->read_buf_.get(), kReadBufferSize);
}

void HttpConnection::OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<HttpConnection*>(stream->data);
  if (self->closing_ || nread == 0) return;
  if (self->phase_ == Phase::kLingering) {
    if (nread < 0) {
      self->Close();
      return;
    }
    self->lingered_bytes_ += static_cast<size_t>(nread);
    if (self->lingered_bytes_ > kMaxLingerBytes) self->Close();
    return;
  }
  if (nread < 0) {
    if (nread != UV_EOF) {
      log::Debug("http: read failed", {{"error", uv_strerror(static_cast<int>(nread))}});
      self->Close();
      return;
    }
    // The client may half-close after sending its requests; answer what was
    // already parsed, then close (ProcessInput / ResponseDone).
    self->peer_eof_ = true;
    self->StopReading();
    if (self->phase_ == Phase::kReading) self->Close();
    return;
  }
  if (self->pending_off_ > 0) {
    self->pending_.erase(0, self->pending_off_);
    self->pending_off_ = 0;
  }
  self->pending_.append(buf->base, static_cast<size_t>(nread));
  self->ProcessInput();
}

void HttpConnection::ProcessInput() {
  while (!closing_ && phase_ == Phase::kReading && pending_off_ < pending_.size()) {
    HttpParser::Progress p = parser_.Feed(std::string_view(pending_).substr(pending_off_));
    pending_off_ += p.consumed;
    switch (p.event) {
      case HttpParser::Event::kNeedMore:
        break;
      case HttpParser::Event::kExpectContinue: {
        uv_buf_t buf = uv_buf_init(const_cast<char*>(kContinue), sizeof(kContinue) - 1);
        int rc = uv_write(&continue_req_, stream(), &buf, 1, &HttpConnection::OnContinueWritten);
        if (rc < 0) Close();
        break;
      }
      case HttpParser::Event::kRequest:
        HandleRequest();
        break;
      case HttpParser::Event::kError:
        SendError(parser_.error());
        break;
    }
  }
  if (pending_off_ >= pending_.size()) {
    pending_.clear();  // keeps its capacity for the next read
    pending_off_ = 0;
  }
  if (closing_ || phase_ != Phase::kReading) return;
  if (peer_eof_) {
    Close();
  } else {
    StartReading();
  }
}

void HttpConnection::HandleRequest() {
  HttpRequest request = parser_.TakeRequest();
  answer_head_only_ = request.method == "HEAD";
  answer_keep_alive_ = parser_.keep_alive() && !server_->closing();
  answer_keep_alive_1_0_ = parser_.keep_alive_1_0();
  phase_ = Phase::kHandling;
  // Pipelined requests stay unread until this one is answered. So a client
  // that leaves meanwhile is noticed only when the answer is written (its FIN
  // would look like a half-close anyway, which must still be answered).
  StopReading();
  // The handler may wait on the store far longer than a client may idle;
  // the timer restarts when the answer is written.
  uv_timer_stop(&timer_);
  link_->awaited = ++requests_;
  server_->Dispatch(std::move(request), HttpResponder(link_, requests_));
  // The handler may have answered, or closed the server (and so this
  // connection); either way ProcessInput stops here.
}

void HttpConnection::Answer(HttpResponse response) {
  assert(phase_ == Phase::kHandling && !closing_);
  link_->awaited = 0;
  // From here on, a client that stops reading the answer is cut as idle.
  ResetTimer(static_cast<uint64_t>(server_->options().idle_timeout_ms));
  SendResponse(std::move(response), answer_head_only_, answer_keep_alive_, answer_keep_alive_1_0_);
}

void HttpConnection::SendError(const HttpError& error) {
  server_->ReportProtocolError(error.status);
  log::Debug("http: rejecting request",
             {{"status", error.status}, {"code", error.code}, {"message", error.message}});
  HttpResponse response = HttpErrorResponse(error.status, error.code, error.message);
  response.headers.insert(response.headers.end(), error.headers.begin(), error.headers.end());
  SendResponse(std::move(response), false, false, false);
}

void HttpConnection::SendResponse(HttpResponse response, bool head_only, bool keep_alive,
                                  bool keep_alive_1_0) {
  assert(phase_ == Phase::kReading || phase_ == Phase::kHandling);
  phase_ = Phase::kResponding;
  StopReading();
  close_after_response_ = !keep_alive;
  if (response.file_fd >= 0 && (response.file_offset < 0 || response.file_length < 0)) {
    ::close(response.file_fd);
    log::Error("http: handler returned an invalid file range",
               {{"offset", response.file_offset}, {"length", response.file_length}});
    server_->ReportProtocolError(500);
    response = HttpErrorResponse(500, "internal", "invalid file range");
  }
  if (response.status < 200 || response.status > 999) {
    // 1xx cannot be a final answer; anything else is not HTTP.
    log::Error("http: handler returned an invalid status", {{"status", response.status}});
    if (response.file_fd >= 0) ::close(response.file_fd);
    server_->ReportProtocolError(500);
    response = HttpErrorResponse(500, "internal", "invalid response status");
  }
  bool send_body = !head_only && !HttpStatusHasNoBody(response.status);
  int64_t length = static_cast<int64_t>(response.body.size());
  if (response.file_fd >= 0) {
    length = response.file_length;
    if (send_body) {
      file_fd_ = response.file_fd;
      file_offset_ = response.file_offset;
      file_left_ = response.file_length;
    } else {
      ::close(response.file_fd);
    }
    response.file_fd = -1;
  }
  head_.clear();
  FormatHttpResponseHead(response, length, close_after_response_,
                         keep_alive_1_0 && !close_after_response_, &head_);
  body_.clear();
  uv_buf_t bufs[2];
  unsigned count = 0;
  bufs[count++] = uv_buf_init(head_.data(), static_cast<unsigned>(head_.size()));
  if (send_body && file_fd_ < 0 && !response.body.empty()) {
    body_.swap(response.body);
    bufs[count++] = uv_buf_init(body_.data(), static_cast<unsigned>(body_.size()));
  }
  WriteResponseBufs(bufs, count);
}

bool HttpConnection::WriteResponseBufs(uv_buf_t* bufs, unsigned count) {
  int rc = uv_write(&response_req_, stream(), bufs, count, &HttpConnection::OnResponseWritten);
  if (rc < 0) {
    log::Debug("http: write failed", {{"error", uv_strerror(rc)}});
    Close();
    return false;
  }
  return true;
}

void HttpConnection::OnContinueWritten(uv_write_t* req, int status) {
  auto* self = static_cast<HttpConnection*>(req->data);
  if (self->closing_) return;  // cancelled by Close()
  if (status < 0) self->Close();
}

void HttpConnection::OnResponseWritten(uv_write_t* req, int status) {
  auto* self = static_cast<HttpConnection*>(req->data);
  if (self->closing_) return;  // cancelled by Close()
  if (status < 0) {
    log::Debug("http: write failed", {{"error", uv_strerror(status)}});
    self->Close();
    return;
  }
  self->ResetTimer(static_cast<uint64_t>(self->server_->options().idle_timeout_ms));
  if (self->file_fd_ >= 0) {
    if (self->file_left_ > 0) {
      self->SendNextFileChunk();
      return;
    }
    self->CloseFile();
  }
  self->ResponseDone();
}

void HttpConnection::SendNextFileChunk() {
  if (!file_buf_) file_buf_.reset(new char[kFileChunkSize]);
  size_t want = static_cast<size_t>(std::min<int64_t>(file_left_, kFileChunkSize));
  ssize_t n;
  do {
    n = ::pread(file_fd_, file_buf_.get(), want, file_offset_);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    // The length is already on the wire; all that is left is to cut the
    // connection so the client sees a short body, not a wrong one.
    log::Warn("http: streamed file ended early or failed to read",
              {{"offset", file_offset_},
               {"missing", file_left_},
               {"error", n < 0 ? std::string(strerror(errno)) : std::string("end of file")}});
    Close();
    return;
  }
  file_offset_ += n;
  file_left_ -= n;
  uv_buf_t buf = uv_buf_init(file_buf_.get(), static_cast<unsigned>(n));
  WriteResponseBufs(&buf, 1);
}

void HttpConnection::ResponseDone() {
  phase_ = Phase::kReading;
  if (close_after_response_) {
    CloseGracefully();
    return;
  }
  ProcessInput();  // a pipelined request may already be waiting
}

void HttpConnection::CloseGracefully() {
  StopReading();
  phase_ = Phase::kLingering;
  if (peer_eof_) {
    Close();
    return;
  }
  // uv_shutdown waits for queued writes, then sends FIN.
  int rc = uv_shutdown(&shutdown_req_, stream(), &HttpConnection::OnShutdown);
  if (rc < 0) Close();
}

void HttpConnection::OnShutdown(uv_shutdown_t* req, int status) {
  auto* self = static_cast<HttpConnection*>(req->data);
  if (self->closing_) return;
  if (status < 0) {
    self->Close();
    return;
  }
  self->ResetTimer(std::min<uint64_t>(
      kLingerMs, static_cast<uint64_t>(self->server_->options().idle_timeout_ms)));
  self->StartReading();
}

void HttpConnection::OnTimer(uv_timer_t* timer) {
  auto* self = static_cast<HttpConnection*>(timer->data);
  if (self->closing_) return;
  if (self->phase_ == Phase::kReading && self->parser_.in_request() && !self->timed_out_once_) {
    // A request that started but did not finish in time (a slow or stuck
    // client): say so once, then close.
    self->timed_out_once_ = true;
    self->SendError({408, "timeout",
                     "request not completed within " +
                         std::to_string(self->server_->options().idle_timeout_ms) + " ms"});
    return;
  }
  // Idle between requests, a client that stopped reading our response, or
  // the end of lingering.
  self->Close();
}

void HttpConnection::ApplyHold() {
  if (!started_ || closing_ || phase_ != Phase::kReading) return;
  if (server_->holding()) {
    if (!parser_.in_request() && pending_off_ >= pending_.size()) StopReading();
  } else {
    StartReading();
  }
}

void HttpConnection::StartReading() {
  if (reading_ || closing_) return;
  // Between requests while the server holds them: the next one stays unread.
  if (server_->holding() && phase_ == Phase::kReading && !parser_.in_request() &&
      pending_off_ >= pending_.size()) {
    return;
  }
  int rc = uv_read_start(stream(), &HttpConnection::OnAlloc, &HttpConnection::OnRead);
  if (rc < 0) {
    Close();
    return;
  }
  reading_ = true;
}

void HttpConnection::StopReading() {
  if (!reading_) return;
  uv_read_stop(stream());
  reading_ = false;
}

void HttpConnection::ResetTimer(uint64_t timeout_ms) {
  if (closing_) return;
  uv_timer_start(&timer_, &HttpConnection::OnTimer, timeout_ms, 0);
}

void HttpConnection::CloseFile() {
  if (file_fd_ < 0) return;
  ::close(file_fd_);
  file_fd_ = -1;
  file_left_ = 0;
}

HttpResponder::HttpResponder(std::weak_ptr<Link> link, uint64_t request)
    : link_(std::move(link)), request_(request) {}

void HttpResponder::operator()(HttpResponse response) const {
  // Held for the call: sending may close the connection, which drops its Link.
  std::shared_ptr<Link> link = link_.lock();
  if (link == nullptr || link->awaited != request_) {
    if (response.file_fd >= 0) ::close(response.file_fd);
    return;
  }
  link->connection->Answer(std::move(response));
}

bool HttpResponder::pending() const {
  std::shared_ptr<Link> link = link_.lock();
  return link != nullptr && link->awaited == request_;
}

}  // namespace orch
