// One accepted client connection of HttpServer (internal to src/http): reads
// into a reused buffer, parses with HttpParser, hands one request at a time to
// the handler and sends its answer whenever it comes, streams file bodies,
// enforces the idle timeout, and closes itself.
//
// Lifetime: created and owned by HttpServer; deleted only through
// HttpServer::OnConnectionClosed from the close callback of its last libuv
// handle — never from inside a read, write or llhttp callback (STYLE §5, §6).
// Responders reach it only through its Link, which Close() drops, so none can
// outlive it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "http/http_parser.h"
#include "http/http_types.h"
#include "http/server.h"

namespace orch {

// Shared by a connection (the only owner) and its responders (weak).
struct HttpResponder::Link {
  HttpConnection* connection;
  uint64_t awaited = 0;  // the request being handled; 0 = none
};

class HttpConnection {
 public:
  HttpConnection(HttpServer* server, bool is_pipe);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // The stream to pass to uv_accept.
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&stream_); }
  // Starts reading and the idle timer.
  void Start();
  // Best-effort 503 (one non-blocking write), then Close(). For connections
  // over the limit, or whose accept failed.
  void Refuse();
  // Whether Start() ran (the server counts only those against the limit).
  bool started() const { return started_; }
  bool via_unix() const { return via_unix_; }
  // Closes both handles now; idempotent. Pending writes are cancelled.
  void Close();
  // Between requests with nothing read and nothing left to write: its
  // socket can go to the daemon's next image as it is (SPEC §14).
  bool Idle() const;
  // Stops or resumes reading as the server's HoldRequests says.
  void ApplyHold();
  // Takes an accepted socket handed over by the previous image.
  int Open(int fd);
  int fd() const;

 private:
  friend class HttpResponder;

  enum class Phase {
    kReading,     // waiting for / parsing a request
    kHandling,    // the handler has the request; reads paused, no idle timeout
    kResponding,  // a response (or file stream) is being written; reads paused
    kLingering,   // answered with close: FIN sent, draining input until EOF or timer
  };

  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnTimer(uv_timer_t* timer);
  static void OnContinueWritten(uv_write_t* req, int status);
  static void OnResponseWritten(uv_write_t* req, int status);
  static void OnShutdown(uv_shutdown_t* req, int status);
  static void OnHandleClosed(uv_handle_t* handle);

  void ProcessInput();
  void HandleRequest();
  // The handler's answer to the request in kHandling (via HttpResponder).
  void Answer(HttpResponse response);
  void SendError(const HttpError& error);
  void SendResponse(HttpResponse response, bool head_only, bool keep_alive, bool keep_alive_1_0);
  bool WriteResponseBufs(uv_buf_t* bufs, unsigned count);
  void SendNextFileChunk();
  void ResponseDone();
  void CloseGracefully();
  void StartReading();
  void StopReading();
  void ResetTimer(uint64_t timeout_ms);
  void CloseFile();

  HttpServer* server_;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } stream_;
  uv_timer_t timer_;
  uv_write_t continue_req_;
  uv_write_t response_req_;
  uv_shutdown_t shutdown_req_;
  int open_handles_ = 2;
  bool closing_ = false;
  bool started_ = false;
  bool reading_ = false;
  bool peer_eof_ = false;
  bool close_after_response_ = false;
  bool timed_out_once_ = false;
  Phase phase_ = Phase::kReading;

  std::shared_ptr<HttpResponder::Link> link_;  // reset by Close()
  uint64_t requests_ = 0;                      // requests handed to the handler
  // Decided when the request arrived, used when its answer is sent.
  bool answer_head_only_ = false;
  bool answer_keep_alive_ = false;
  bool answer_keep_alive_1_0_ = false;

  bool via_unix_ = false;
  std::optional<int64_t> peer_uid_;  // unix socket: SO_PEERCRED
  HttpParser parser_;
  static constexpr size_t kReadBufferSize = 16 * 1024;
  std::unique_ptr<char[]> read_buf_;  // handed to every uv_read; reused
  std::string pending_;               // read but not yet parsed (a paused parser)
  size_t pending_off_ = 0;
  size_t lingered_bytes_ = 0;

  std::string head_;  // head of the response in flight (capacity reused)
  std::string body_;  // its in-memory body

  static constexpr size_t kFileChunkSize = 64 * 1024;
  int file_fd_ = -1;
  int64_t file_offset_ = 0;
  int64_t file_left_ = 0;
  std::unique_ptr<char[]> file_buf_;  // allocated on the first file response
};

}  // namespace orch
