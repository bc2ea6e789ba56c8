#include "http/http_types.h"

#include <strings.h>

#include <nlohmann/json.hpp>

namespace orch {
namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool HasCrLf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

}  // namespace

std::string HttpRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoreCase(k, name)) return v;
  }
  return {};
}

bool HttpRequest::HasHeader(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoreCase(k, name)) return true;
  }
  return false;
}

const char* HttpReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 507:
      return "Insufficient Storage";
    default:
      return "Unknown";
  }
}

HttpResponse HttpErrorResponse(int status, std::string_view code, std::string_view message) {
  HttpResponse r;
  r.status = status;
  nlohmann::json j = {{"error", {{"code", code}, {"message", message}}}};
  // `replace` keeps a message holding invalid UTF-8 (echoed input) from throwing.
  r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

const char* const kDefaultCsp = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

bool HttpStatusHasNoBody(int status) { return status < 200 || status == 204 || status == 304; }

void FormatHttpResponseHead(const HttpResponse& response, int64_t content_length, bool close,
                            bool keep_alive_1_0, std::string* out) {
  int status = response.status >= 100 && response.status <= 999 ? response.status : 500;
  out->append("HTTP/1.1 ");
  out->append(std::to_string(status));
  out->push_back(' ');
  out->append(HttpReasonPhrase(status));
  out->append("\r\n");
  if (!response.content_type.empty() && !HasCrLf(response.content_type)) {
    out->append("Content-Type: ");
    out->append(response.content_type);
    out->append("\r\n");
  }
  for (const auto& [name, value] : response.headers) {
    // The framing headers are the server's; a CR/LF would let a value that
    // came from input split the response.
    if (name.empty() || HasCrLf(name) || HasCrLf(value) || name.find(':') != std::string::npos ||
        EqualsIgnoreCase(name, "content-length") || EqualsIgnoreCase(name, "transfer-encoding") ||
        EqualsIgnoreCase(name, "connection")) {
      continue;
    }
    out->append(name);
    out->append(": ");
    out->append(value);
    out->append("\r\n");
  }
  // On every answer, so that no response (an error, a log served as text)
  // can be run as a page: SPEC §13. A response may bring its own policy.
  bool own_policy = false;
  for (const auto& [name, value] : response.headers) {
    if (EqualsIgnoreCase(name, "content-security-policy")) own_policy = true;
  }
  if (!own_policy) out->append("Content-Security-Policy: ").append(kDefaultCsp).append("\r\n");
  out->append("X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n");
  if (!HttpStatusHasNoBody(status)) {
    out->append("Content-Length: ");
    out->append(std::to_string(content_length));
    out->append("\r\n");
  }
  if (close) {
    out->append("Connection: close\r\n");
  } else if (keep_alive_1_0) {
    out->append("Connection: keep-alive\r\n");
  }
  out->append("\r\n");
}

}  // namespace orch
