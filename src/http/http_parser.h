// HTTP/1.x request parsing without sockets: bytes in, requests or one error
// out. The connection drives it from its read buffer; the fuzz target and the
// unit tests drive it from strings. Wraps llhttp and adds the limits and the
// request-smuggling rules the server promises.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "http/http_types.h"

namespace orch {

// An error the server answers itself before closing the connection.
struct HttpError {
  int status = 400;
  std::string code;     // "bad_request", "payload_too_large", "header_too_large", ...
  std::string message;  // for people; may quote llhttp's reason
  std::vector<std::pair<std::string, std::string>> headers = {};  // e.g. WWW-Authenticate
};

class HttpParser {
 public:
  struct Limits {
    int64_t max_body_bytes = 1048576;  // de-chunked body bytes per request
    size_t max_header_bytes = 16384;   // request line + header names and values (+4 per line)
  };

  enum class Event {
    kNeedMore,        // everything given was consumed; no complete request yet
    kRequest,         // a request is complete: TakeRequest(); feed the rest later
    kExpectContinue,  // headers with "Expect: 100-continue" and a body: send
                      // "100 Continue", then feed the rest
    kError,           // error() says what to answer; the parser is done for good
  };
  struct Progress {
    Event event;
    size_t consumed;  // bytes of `data` used; feed data.substr(consumed) next
  };

  // Judges a request's head (method, target, path, query, headers; no body
  // byte read yet): nullopt lets it go on, an error ends the connection with
  // it. Runs before "100 Continue" is asked for and before any body is
  // buffered, so a refused client costs nothing (authentication before work).
  using HeadCheck = std::function<std::optional<HttpError>(HttpRequest& head)>;

  explicit HttpParser(Limits limits, HeadCheck check_head = nullptr);
  HttpParser(const HttpParser&) = delete;
  HttpParser& operator=(const HttpParser&) = delete;

  // Parses as much of `data` as it can. Stops right after each complete
  // request (one at a time, so pipelined requests are answered in order) and
  // after the headers of a request that expects 100-continue. Errors: 400 for
  // malformed input, conflicting Content-Length/Transfer-Encoding, duplicate
  // Content-Length, a bad target, a CR not followed by LF outside body data,
  // chunk data not followed by CRLF, or obsolete line folding; 413 as soon as
  // the declared length or the de-chunked body passes max_body_bytes; 431 when
  // the head passes max_header_bytes; 417 for an Expect other than 100-continue.
  Progress Feed(std::string_view data);

  // The request completed by the last kRequest (moved out; call once).
  HttpRequest TakeRequest();
  // Whether the connection may carry another request after the last complete
  // one (HTTP/1.1 without "Connection: close", or 1.0 with keep-alive).
  bool keep_alive() const { return keep_alive_; }
  // Whether that request was HTTP/1.0 asking for keep-alive (the response must say so).
  bool keep_alive_1_0() const {
    return keep_alive_ && request_.http_major == 1 && request_.http_minor == 0;
  }
  // Valid after kError.
  const HttpError& error() const { return error_; }
  // True from the first byte of a request until it completes.
  bool in_request() const { return in_request_; }

 private:
  static int OnMessageBegin(llhttp_t* p);
  static int OnUrl(llhttp_t* p, const char* at, size_t len);
  static int OnHeaderField(llhttp_t* p, const char* at, size_t len);
  static int OnHeaderValue(llhttp_t* p, const char* at, size_t len);
  static int OnHeaderFieldComplete(llhttp_t* p);
  static int OnHeaderValueComplete(llhttp_t* p);
  static int OnHeadersComplete(llhttp_t* p);
  static int OnChunkHeader(llhttp_t* p);
  static int OnChunkExtension(llhttp_t* p, const char* at, size_t len);
  static int OnBody(llhttp_t* p, const char* at, size_t len);
  static int OnMessageComplete(llhttp_t* p);
  static const llhttp_settings_t* Settings();

  // The framing checks llhttp 8.1 leaves out: it takes any byte after the CR
  // that ends a head or a chunk-size line for the LF, skips the two bytes
  // after chunk data unread, and folds a line starting with SP/HTAB into the
  // previous header. Sees every byte llhttp consumed except body data, in
  // stream order and across Feed() calls.
  class FramingCheck {
   public:
    // Checks `n` framing bytes; returns the violation, or nullptr.
    const char* Scan(const char* bytes, size_t n);
    // Body data comes next (none of it is framing); after chunk data the
    // next framing bytes must be CRLF. Returns the violation, or nullptr.
    const char* Body(bool chunked);

   private:
    enum class Want : uint8_t { kAny, kChunkCr, kChunkLf };
    bool after_cr_ = false;    // the last framing byte was CR
    bool line_start_ = false;  // ... was LF
    Want want_ = Want::kAny;
  };
  // Runs framing_ over this Feed's bytes from scan_pos_ to `end`; 0 or Fail's code.
  int ScanFramingTo(const char* end);

  // Records the error and returns HPE_USER for the callback to return.
  int Fail(int status, std::string code, std::string message);
  int FailHeaderTooLarge();  // 431 naming the limit
  int CountBodyBytes(size_t n);  // 0, or a 413 once the body passes the limit
  bool CountHeaderBytes(size_t n);
  void FinishHeader();

  Limits limits_;
  HeadCheck check_head_;
  llhttp_t parser_;
  HttpRequest request_;
  std::string field_;
  std::string value_;
  bool have_field_ = false;      // a header name has begun
  bool field_complete_ = false;  // ... and ended (its value may be empty)
  bool headers_done_ = false;    // later header callbacks are trailers
  bool in_request_ = false;
  bool keep_alive_ = false;
  bool paused_ = false;
  bool failed_ = false;
  Event paused_event_ = Event::kNeedMore;
  size_t header_bytes_ = 0;
  int64_t body_bytes_ = 0;  // body plus chunk extensions, against max_body_bytes
  FramingCheck framing_;
  const char* scan_pos_ = nullptr;  // in the data being fed: framing_ has seen what is before
  HttpError error_;
};

}  // namespace orch
