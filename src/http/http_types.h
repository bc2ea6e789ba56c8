// The request and response values that pass between the HTTP server and the
// handler the daemon installs, plus the small helpers that format a response
// head and the JSON error body every server-made error uses.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace orch {

// One parsed request. Everything is owned (copied out of the read buffers).
struct HttpRequest {
  std::string method;  // "GET", "POST", ... as llhttp names it
  std::string target;  // request-target as sent: "/jobs?status=queued"
  std::string path;    // target's path, percent-decoded: "/jobs"
  // Query parameters, percent-decoded ('+' is a space). The first occurrence
  // of a repeated key wins; "?flag" maps to "".
  std::map<std::string, std::string> query;
  // In arrival order; names lowercased, values with surrounding blanks trimmed.
  // Chunked trailers are not included.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // de-chunked; at most Options::max_body_bytes
  int http_major = 1;
  int http_minor = 1;
  // Who asks: over the unix socket (authenticated by the socket's
  // permissions) with the peer's uid from SO_PEERCRED, or over TCP.
  bool via_unix_socket = false;
  std::optional<int64_t> peer_uid;

  // Value of the first header named `name` (case-insensitive), "" if absent.
  std::string Header(std::string_view name) const;
  bool HasHeader(std::string_view name) const;
};

// What the handler fills in. The server adds Content-Length and, when it will
// close the connection, "Connection: close"; handler headers named
// Content-Length, Transfer-Encoding or Connection, or containing CR/LF, are
// dropped.
struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";  // "" = no Content-Type header
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // Optional streamed body: when file_fd >= 0 the server takes ownership of the
  // fd, sends bytes [file_offset, file_offset + file_length) in 64 KiB pread
  // chunks as each write completes (never loading the file whole) and closes
  // the fd when done or when the connection goes away; `body` is ignored. A
  // file shorter than announced aborts the connection (the length was sent).
  int file_fd = -1;
  int64_t file_offset = 0;
  int64_t file_length = 0;
};

// "OK", "Not Found", ...; "Unknown" for codes it does not know.
const char* HttpReasonPhrase(int status);

// A response with the body {"error":{"code":code,"message":message}}.
HttpResponse HttpErrorResponse(int status, std::string_view code, std::string_view message);

// "HTTP/1.1 <status> <reason>\r\n" + Content-Type + the handler's headers +
// Content-Length: content_length (omitted for 1xx/204/304) + "Connection:
// close" when `close`, or "Connection: keep-alive" when `keep_alive_1_0`
// (an HTTP/1.0 client asked for it) + "\r\n". Appends to *out.
void FormatHttpResponseHead(const HttpResponse& response, int64_t content_length, bool close,
                            bool keep_alive_1_0, std::string* out);

// The Content-Security-Policy of every response that does not set its own:
// nothing may load, run or frame it.
extern const char* const kDefaultCsp;

// True when a response with this status never carries a body (1xx, 204, 304).
bool HttpStatusHasNoBody(int status);

}  // namespace orch
