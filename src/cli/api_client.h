// The client side of the HTTP API (SPEC §7): where the server is, and one
// libcurl easy handle that sends requests to it over TCP or a unix socket.
#pragma once

#include <map>
#include <string>

#include "base/status.h"
#include "config/config.h"

namespace orch::cli {

struct ServerAddress {
  enum class Kind { kTcp, kUnix };
  Kind kind = Kind::kTcp;
  std::string base_url;     // "http://127.0.0.1:8080"; "http://localhost" for a unix socket
  std::string socket_path;  // unix sockets only
  std::string display;      // what messages name: "http://127.0.0.1:8080" or "unix:/run/o.sock"
};

// Accepts "http://HOST:PORT", "https://…", "HOST:PORT" (the config's listen
// form), "unix:/path" and "unix:///path". A trailing '/' is dropped.
// kInvalidArgument naming the text otherwise.
Result<ServerAddress> ParseServerUrl(const std::string& text);

// This host's own daemon: a unix socket, or a loopback address or name
// (127.0.0.0/8, [::1], localhost). A token found through a config is sent
// only to such a server.
bool IsLocalServer(const ServerAddress& address);

// The URL clients use to reach a server configured with `server`: listen
// first (a wildcard host becomes loopback), else "unix:" + unix_socket;
// "" when both are empty.
std::string ServerUrlFromConfig(const Config::Server& server);

struct HttpResponse {
  long status = 0;
  std::string content_type;
  std::string body;
  std::map<std::string, std::string> headers;  // names in lower case
  // A header's value, "" when absent.
  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
  }
};

// Not thread-safe; keeps its connection open between requests.
struct CurlLib;

class ApiClient {
 public:
  // `token` ("" = none) is sent as "Authorization: Bearer <token>".
  ApiClient(ServerAddress address, std::string token);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // Sends `method` `path` (starting with '/', query included) with a JSON
  // body when `body` is non-empty. Any HTTP status, 4xx/5xx included, is a
  // value; kUnavailable ("cannot reach the server at <display>: <why>") when
  // no response arrived.
  Result<HttpResponse> Send(const std::string& method, const std::string& path,
                            const std::string& body = "");

  const ServerAddress& address() const { return address_; }

 private:
  ServerAddress address_;
  std::string token_;
  const CurlLib* lib_ = nullptr;  // libcurl, loaded on first use
  std::string load_error_;
  void* curl_ = nullptr;  // CURL*, kept out of this header
};

// Percent-encodes a query parameter value.
std::string UrlEncode(const std::string& text);

}  // namespace orch::cli
