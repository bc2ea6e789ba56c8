#include "http/http_parser.h"

#include <strings.h>

#include <algorithm>

namespace orch {
namespace {

HttpParser* Self(llhttp_t* p) { return static_cast<HttpParser*>(p->data); }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in`; '+' becomes a space when `plus_is_space`. False on a
// malformed escape or a decoded NUL (which no route or id can contain).
bool PercentDecode(std::string_view in, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      if (c == '\0') return false;
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    out->push_back(c);
  }
  return true;
}

// Splits the request-target into path and query. Accepts origin-form
// ("/a?b"), absolute-form ("http://host/a?b", which RFC 9112 says a server
// must accept) and "*".
bool ParseTarget(std::string_view target, HttpRequest* req) {
  std::string_view rest = target;
  if (rest.size() >= 7 && (strncasecmp(rest.data(), "http://", 7) == 0 ||
                           (rest.size() >= 8 && strncasecmp(rest.data(), "https://", 8) == 0))) {
    size_t authority = rest.find("//") + 2;
    size_t slash = rest.find_first_of("/?", authority);
    rest = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  }
  if (rest == "*") {
    req->path = "*";
    return true;
  }
  if (size_t hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  size_t q = rest.find('?');
  std::string_view path = rest.substr(0, q);
  if (path.empty()) {
    path = "/";
  } else if (path[0] != '/') {
    return false;
  }
  if (!PercentDecode(path, false, &req->path)) return false;
  if (q == std::string_view::npos) return true;
  std::string_view query = rest.substr(q + 1);
  std::string key, value;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    if (!PercentDecode(pair.substr(0, eq), true, &key)) return false;
    if (!PercentDecode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1),
                       true, &value)) {
      return false;
    }
    req->query.emplace(key, value);
  }
  return true;
}

void TrimBlanks(std::string* s) {
  size_t end = s->find_last_not_of(" \t");
  s->erase(end == std::string::npos ? 0 : end + 1);
  size_t begin = s->find_first_not_of(" \t");
  s->erase(0, begin == std::string::npos ? s->size() : begin);
}

void ToLower(std::string* s) {
  for (char& c : *s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
}

// Per request-line and header line: method, spaces, version, ": ", CRLF.
constexpr size_t kLineOverhead = 4;

constexpr char kBareCr[] = "bare CR not followed by LF in the request head or chunk framing";
constexpr char kChunkNoCrlf[] = "chunk data not followed by CRLF";
constexpr char kObsFold[] =
    "obsolete line folding (a header line starting with a space or tab) is not accepted";

}  // namespace

const llhttp_settings_t* HttpParser::Settings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = &HttpParser::OnMessageBegin;
    s.on_url = &HttpParser::OnUrl;
    s.on_header_field = &HttpParser::OnHeaderField;
    s.on_header_value = &HttpParser::OnHeaderValue;
    s.on_header_field_complete = &HttpParser::OnHeaderFieldComplete;
    s.on_header_value_complete = &HttpParser::OnHeaderValueComplete;
    s.on_headers_complete = &HttpParser::OnHeadersComplete;
    s.on_chunk_header = &HttpParser::OnChunkHeader;
    s.on_chunk_extension_name = &HttpParser::OnChunkExtension;
    s.on_chunk_extension_value = &HttpParser::OnChunkExtension;
    s.on_body = &HttpParser::OnBody;
    s.on_message_complete = &HttpParser::OnMessageComplete;
    return s;
  }();
  return &settings;
}

HttpParser::HttpParser(Limits limits, HeadCheck check_head)
    : limits_(limits), check_head_(std::move(check_head)) {
  llhttp_init(&parser_, HTTP_REQUEST, Settings());
  parser_.data = this;
}

HttpParser::Progress HttpParser::Feed(std::string_view data) {
  if (failed_) return {Event::kError, 0};
  if (paused_) {
    llhttp_resume(&parser_);
    paused_ = false;
  }
  if (data.empty()) return {Event::kNeedMore, 0};
  scan_pos_ = data.data();
  llhttp_errno_t rc = llhttp_execute(&parser_, data.data(), data.size());
  const char* pos = rc == HPE_OK ? nullptr : llhttp_get_error_pos(&parser_);
  size_t consumed = pos != nullptr && pos >= data.data() && pos <= data.data() + data.size()
                        ? static_cast<size_t>(pos - data.data())
                        : data.size();
  // What llhttp consumed after the last body callback is checked here, before
  // any event is reported. A callback's own rejection stands.
  if (error_.code.empty() && ScanFramingTo(data.data() + consumed) != 0) rc = HPE_USER;
  if (rc == HPE_OK) return {Event::kNeedMore, consumed};
  if (rc == HPE_PAUSED) {
    paused_ = true;
    return {paused_event_, consumed};
  }
  failed_ = true;
  in_request_ = false;
  if (rc == HPE_PAUSED_UPGRADE) {
    // Only reachable when on_message_complete did not pause; upgrades are not
    // supported, the connection closes after the answer.
    error_ = {400, "bad_request", "protocol upgrade is not supported"};
    return {Event::kError, consumed};
  }
  // A callback's own rejection (Fail) surfaces as HPE_USER or, from
  // on_headers_complete, as HPE_CB_HEADERS_COMPLETE; error_ is set only there.
  if (error_.code.empty()) {
    const char* reason = llhttp_get_error_reason(&parser_);
    error_ = {400, "bad_request",
              std::string("malformed request: ") + llhttp_errno_name(rc) + ": " +
                  (reason != nullptr ? reason : "")};
  }
  return {Event::kError, consumed};
}

HttpRequest HttpParser::TakeRequest() { return std::move(request_); }

const char* HttpParser::FramingCheck::Scan(const char* bytes, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    char c = bytes[i];
    // llhttp 8.1 skips the two bytes after chunk data without looking, so
    // "5\r\nhelloXX0\r\n\r\n" is a complete body to it and a different one
    // to anyone who reads the XX.
    if (want_ == Want::kChunkCr) {
      if (c != '\r') return kChunkNoCrlf;
      want_ = Want::kChunkLf;
      after_cr_ = true;
      continue;
    }
    if (want_ == Want::kChunkLf) {
      if (c != '\n') return kChunkNoCrlf;
      want_ = Want::kAny;
      after_cr_ = false;
      line_start_ = true;
      continue;
    }
    // llhttp takes any byte after the CR that ends the head (or a chunk-size
    // line) for its LF: "\r\n\rX" ends the headers.
    if (after_cr_ && c != '\n') return kBareCr;
    // RFC 9112 5.2 lets a server answer obs-fold with 400; llhttp would
    // append the line to the previous value (even to Transfer-Encoding).
    if (line_start_ && (c == ' ' || c == '\t')) return kObsFold;
    after_cr_ = c == '\r';
    line_start_ = c == '\n';
  }
  return nullptr;
}

const char* HttpParser::FramingCheck::Body(bool chunked) {
  // Body data right after a CR means llhttp took the CR alone as a line end.
  if (after_cr_) return kBareCr;
  line_start_ = false;
  want_ = chunked ? Want::kChunkCr : Want::kAny;
  return nullptr;
}

int HttpParser::ScanFramingTo(const char* end) {
  if (scan_pos_ == nullptr || end <= scan_pos_) return 0;
  const char* why = framing_.Scan(scan_pos_, static_cast<size_t>(end - scan_pos_));
  scan_pos_ = end;
  return why == nullptr ? 0 : Fail(400, "bad_request", why);
}

int HttpParser::Fail(int status, std::string code, std::string message) {
  error_ = {status, std::move(code), std::move(message)};
  llhttp_set_error_reason(&parser_, "rejected by server limits");
  return HPE_USER;
}

bool HttpParser::CountHeaderBytes(size_t n) {
  header_bytes_ += n;
  return header_bytes_ <= limits_.max_header_bytes;
}

void HttpParser::FinishHeader() {
  if (!have_field_) return;
  have_field_ = false;
  field_complete_ = false;
  if (headers_done_) {  // trailer: counted, not kept
    field_.clear();
    value_.clear();
    return;
  }
  ToLower(&field_);
  TrimBlanks(&value_);
  request_.headers.emplace_back(std::move(field_), std::move(value_));
  field_.clear();
  value_.clear();
}

int HttpParser::OnMessageBegin(llhttp_t* p) {
  HttpParser* self = Self(p);
  self->request_ = HttpRequest();
  self->field_.clear();
  self->value_.clear();
  self->have_field_ = false;
  self->field_complete_ = false;
  self->headers_done_ = false;
  self->in_request_ = true;
  self->keep_alive_ = false;
  self->header_bytes_ = kLineOverhead;
  self->body_bytes_ = 0;
  return 0;
}

int HttpParser::CountBodyBytes(size_t n) {
  body_bytes_ += static_cast<int64_t>(n);
  if (body_bytes_ <= limits_.max_body_bytes) return 0;
  return Fail(413, "payload_too_large",
              "request body exceeds the limit of " + std::to_string(limits_.max_body_bytes));
}

int HttpParser::FailHeaderTooLarge() {
  return Fail(431, "header_too_large",
              "request line and headers exceed " + std::to_string(limits_.max_header_bytes) +
                  " bytes");
}

int HttpParser::OnUrl(llhttp_t* p, const char* at, size_t len) {
  HttpParser* self = Self(p);
  if (!self->CountHeaderBytes(len)) {
    return self->FailHeaderTooLarge();
  }
  self->request_.target.append(at, len);
  return 0;
}

int HttpParser::OnHeaderField(llhttp_t* p, const char* at, size_t len) {
  HttpParser* self = Self(p);
  // A new field while the previous one is still open means its value was
  // empty (and so may have produced no value callbacks).
  if (self->field_complete_) self->FinishHeader();
  size_t cost = len;
  if (!self->have_field_) {
    self->have_field_ = true;
    cost += kLineOverhead;
  }
  if (!self->CountHeaderBytes(cost)) {
    return self->FailHeaderTooLarge();
  }
  self->field_.append(at, len);
  return 0;
}

int HttpParser::OnHeaderValue(llhttp_t* p, const char* at, size_t len) {
  HttpParser* self = Self(p);
  if (!self->CountHeaderBytes(len)) {
    return self->FailHeaderTooLarge();
  }
  self->value_.append(at, len);
  return 0;
}

int HttpParser::OnHeaderFieldComplete(llhttp_t* p) {
  Self(p)->field_complete_ = true;
  return 0;
}

int HttpParser::OnHeaderValueComplete(llhttp_t* p) {
  Self(p)->FinishHeader();
  return 0;
}

int HttpParser::OnHeadersComplete(llhttp_t* p) {
  HttpParser* self = Self(p);
  self->FinishHeader();
  self->headers_done_ = true;
  HttpRequest& req = self->request_;
  req.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(p)));
  req.http_major = llhttp_get_http_major(p);
  req.http_minor = llhttp_get_http_minor(p);
  if (!ParseTarget(req.target, &req)) {
    return self->Fail(400, "bad_request", "malformed request target");
  }
  // llhttp rejects Content-Length with Transfer-Encoding and a repeated
  // Content-Length itself; this is the belt to those braces, because a
  // disagreement about where a body ends is how requests get smuggled.
  int content_lengths = 0;
  for (const auto& [name, value] : req.headers) {
    if (name == "content-length") ++content_lengths;
  }
  if (content_lengths > 1 || (content_lengths > 0 && (p->flags & F_TRANSFER_ENCODING) != 0)) {
    return self->Fail(400, "bad_request", "conflicting Content-Length / Transfer-Encoding headers");
  }
  bool chunked = (p->flags & F_CHUNKED) != 0;
  bool has_length = (p->flags & F_CONTENT_LENGTH) != 0;
  if (has_length && p->content_length >
                        static_cast<uint64_t>(std::max<int64_t>(self->limits_.max_body_bytes, 0))) {
    return self->Fail(413, "payload_too_large",
                      "request body of " + std::to_string(p->content_length) +
                          " bytes exceeds the limit of " +
                          std::to_string(self->limits_.max_body_bytes));
  }
  if (self->check_head_) {
    if (std::optional<HttpError> refused = self->check_head_(req)) {
      int status = refused->status;
      auto headers = std::move(refused->headers);
      int rc = self->Fail(status, std::move(refused->code), std::move(refused->message));
      self->error_.headers = std::move(headers);
      return rc;
    }
  }
  std::string expect = req.Header("expect");
  if (!expect.empty()) {
    if (strcasecmp(expect.c_str(), "100-continue") != 0) {
      return self->Fail(417, "expectation_failed", "unsupported Expect: " + expect);
    }
    bool has_body = chunked || (has_length && p->content_length > 0);
    if (has_body && (req.http_major > 1 || (req.http_major == 1 && req.http_minor >= 1))) {
      self->paused_event_ = Event::kExpectContinue;
      return HPE_PAUSED;
    }
  }
  return 0;
}

int HttpParser::OnChunkHeader(llhttp_t* p) {
  HttpParser* self = Self(p);
  // parser->content_length holds the announced chunk size here: refuse before
  // any of it is buffered.
  if (p->content_length > static_cast<uint64_t>(self->limits_.max_body_bytes - self->body_bytes_)) {
    return self->Fail(413, "payload_too_large",
                      "chunked request body exceeds the limit of " +
                          std::to_string(self->limits_.max_body_bytes));
  }
  return 0;
}

int HttpParser::OnChunkExtension(llhttp_t* p, const char*, size_t len) {
  HttpParser* self = Self(p);
  // Extensions are ignored but not free: they count against the body budget
  // so a stream of them cannot run forever.
  return self->CountBodyBytes(len);
}

int HttpParser::OnBody(llhttp_t* p, const char* at, size_t len) {
  HttpParser* self = Self(p);
  if (len > 0) {
    if (int rc = self->ScanFramingTo(at); rc != 0) return rc;
    if (const char* why = self->framing_.Body((p->flags & F_CHUNKED) != 0)) {
      return self->Fail(400, "bad_request", why);
    }
    self->scan_pos_ = at + len;
  }
  if (int rc = self->CountBodyBytes(len); rc != 0) return rc;
  self->request_.body.append(at, len);
  return 0;
}

int HttpParser::OnMessageComplete(llhttp_t* p) {
  HttpParser* self = Self(p);
  self->FinishHeader();
  self->in_request_ = false;
  // Upgrade (and CONNECT) is not supported: answer, then close.
  self->keep_alive_ = llhttp_should_keep_alive(p) != 0 && p->upgrade == 0;
  self->paused_event_ = Event::kRequest;
  return HPE_PAUSED;
}

}  // namespace orch
