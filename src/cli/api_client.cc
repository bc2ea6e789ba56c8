#include "cli/api_client.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>

namespace orch::cli {

namespace {

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// "HOST:PORT" or "[V6]:PORT" with a numeric port from 1 to 65535.
bool ValidHostPort(const std::string& hp) {
  size_t colon = hp.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == hp.size()) return false;
  std::string host = hp.substr(0, colon), port = hp.substr(colon + 1);
  if (host.find_first_of("/?#@ ") != std::string::npos) return false;
  if (host.find(':') != std::string::npos && (host.front() != '[' || host.back() != ']')) {
    return false;
  }
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return false;
  int p = std::stoi(port);
  return p >= 1 && p <= 65535;
}

// Why connecting to the unix socket at `path` failed, as far as stat(2) and
// access(2) can tell.
std::string UnixSocketProblem(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return errno == ENOENT ? "the socket does not exist (is the daemon running?)"
                           : std::string("cannot stat the socket: ") + std::strerror(errno);
  }
  if (!S_ISSOCK(st.st_mode)) return "not a socket";
  if (access(path.c_str(), R_OK | W_OK) != 0) return "permission denied";
  return "connection refused (is the daemon running?)";
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// One header line at a time ("Name: value\r\n"); names kept in lower case.
size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  std::string_view line(data, size * n);
  size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
      value.remove_suffix(1);
    }
    (*static_cast<std::map<std::string, std::string>*>(user))[name] = std::string(value);
  }
  return size * n;
}

}  // namespace

Result<ServerAddress> ParseServerUrl(const std::string& text) {
  ServerAddress a;
  if (StartsWith(text, "unix:")) {
    std::string path = text.substr(5);
    if (StartsWith(path, "//")) path = path.substr(2);  // unix:///run/x.sock
    if (path.empty())
      return Result<ServerAddress>(Code::kInvalidArgument,
                                   "server address \"" + text + "\": no socket path after unix:");
    a.kind = ServerAddress::Kind::kUnix;
    a.socket_path = path;
    a.base_url = "http://localhost";
    a.display = "unix:" + path;
    return a;
  }
  std::string scheme = "http://", rest = text;
  if (StartsWith(text, "http://") || StartsWith(text, "https://")) {
    scheme = text.substr(0, text.find("://") + 3);
    rest = text.substr(scheme.size());
  } else if (text.find("://") != std::string::npos) {
    return Result<ServerAddress>(
        Code::kInvalidArgument,
        "server address \"" + text + "\": expected http://HOST:PORT or unix:/PATH");
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (!ValidHostPort(rest)) {
    return Result<ServerAddress>(
        Code::kInvalidArgument,
        "server address \"" + text + "\": expected http://HOST:PORT or unix:/PATH");
  }
  a.kind = ServerAddress::Kind::kTcp;
  a.base_url = scheme + rest;
  a.display = a.base_url;
  return a;
}

bool IsLocalServer(const ServerAddress& address) {
  if (address.kind == ServerAddress::Kind::kUnix) return true;
  size_t scheme = address.base_url.find("://");
  std::string rest = scheme == std::string::npos ? address.base_url : address.base_url.substr(scheme + 3);
  std::string host = rest.substr(0, rest.find('/'));
  std::string name = host;
  if (!name.empty() && name.front() != '[' && name.find(':') != std::string::npos) {
    name = name.substr(0, name.find(':'));
  }
  if (name == "localhost") return true;
  return IsLoopbackListen(host.find(':') == std::string::npos || host.back() == ']' ? host + ":0"
                                                                                     : host);
}

std::string ServerUrlFromConfig(const Config::Server& server) {
  if (!server.listen.empty()) {
    std::string hp = server.listen;
    // The daemon may listen on every address; clients dial loopback.
    if (StartsWith(hp, "0.0.0.0:")) hp = "127.0.0.1" + hp.substr(7);
    if (StartsWith(hp, "[::]:")) hp = "[::1]" + hp.substr(4);
    if (StartsWith(hp, ":")) hp = "127.0.0.1" + hp;
    return "http://" + hp;
  }
  if (!server.unix_socket.empty()) return "unix:" + server.unix_socket;
  return "";
}

// libcurl is loaded when a client subcommand first needs it instead of
// being linked: the daemon never makes an HTTP request, and libcurl's thirty
// dependent libraries made each fork of the daemon about a quarter slower
// and its idle RSS about 4 MiB larger (bench/README.md).
struct CurlLib {
  decltype(&curl_global_init) global_init;
  decltype(&curl_easy_init) easy_init;
  decltype(&curl_easy_cleanup) easy_cleanup;
  decltype(&curl_easy_reset) easy_reset;
  decltype(&curl_easy_setopt) easy_setopt;
  decltype(&curl_easy_perform) easy_perform;
  decltype(&curl_easy_getinfo) easy_getinfo;
  decltype(&curl_easy_strerror) easy_strerror;
  decltype(&curl_slist_append) slist_append;
  decltype(&curl_slist_free_all) slist_free_all;
};

namespace {

// nullptr (with *error set) when libcurl cannot be loaded.
const CurlLib* LoadCurl(std::string* error) {
  static std::string load_error;
  static const CurlLib* lib = []() -> const CurlLib* {
    void* h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      load_error = dlerror();
      return nullptr;
    }
    static CurlLib l;
    bool ok = true;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      ok = ok && fn != nullptr;
    };
    sym(l.global_init, "curl_global_init");
    sym(l.easy_init, "curl_easy_init");
    sym(l.easy_cleanup, "curl_easy_cleanup");
    sym(l.easy_reset, "curl_easy_reset");
    sym(l.easy_setopt, "curl_easy_setopt");
    sym(l.easy_perform, "curl_easy_perform");
    sym(l.easy_getinfo, "curl_easy_getinfo");
    sym(l.easy_strerror, "curl_easy_strerror");
    sym(l.slist_append, "curl_slist_append");
    sym(l.slist_free_all, "curl_slist_free_all");
    if (!ok) {
      load_error = "libcurl.so.4 lacks an expected symbol";
      return nullptr;
    }
    l.global_init(CURL_GLOBAL_DEFAULT);
    return &l;
  }();
  if (lib == nullptr) *error = "cannot load libcurl (Debian package libcurl4): " + load_error;
  return lib;
}

}  // namespace

ApiClient::ApiClient(ServerAddress address, std::string token)
    : address_(std::move(address)), token_(std::move(token)) {
  lib_ = LoadCurl(&load_error_);
  curl_ = lib_ != nullptr ? lib_->easy_init() : nullptr;
}

ApiClient::~ApiClient() {
  if (curl_ != nullptr) lib_->easy_cleanup(static_cast<CURL*>(curl_));
}

Result<HttpResponse> ApiClient::Send(const std::string& method, const std::string& path,
                                     const std::string& body) {
  CURL* c = static_cast<CURL*>(curl_);
  if (lib_ == nullptr) return Result<HttpResponse>(Code::kInternal, load_error_);
  if (c == nullptr) return Result<HttpResponse>(Code::kInternal, "curl_easy_init failed");
  lib_->easy_reset(c);
  HttpResponse resp;
  std::string url = address_.base_url + path;
  char errbuf[CURL_ERROR_SIZE] = {0};
  lib_->easy_setopt(c, CURLOPT_URL, url.c_str());
  lib_->easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  lib_->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  lib_->easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  lib_->easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);
  // The API is local: an http_proxy meant for the internet must not capture it.
  lib_->easy_setopt(c, CURLOPT_PROXY, "");
  if (address_.kind == ServerAddress::Kind::kUnix) {
    lib_->easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, address_.socket_path.c_str());
  }
  lib_->easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST" || method == "PUT") {
    lib_->easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    lib_->easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  } else if (method == "HEAD") {
    lib_->easy_setopt(c, CURLOPT_NOBODY, 1L);
  }
  struct curl_slist* headers = nullptr;
  std::string auth;
  if (!token_.empty()) {
    auth = "Authorization: Bearer " + token_;
    headers = lib_->slist_append(headers, auth.c_str());
  }
  if (!body.empty()) headers = lib_->slist_append(headers, "Content-Type: application/json");
  headers = lib_->slist_append(headers, "Accept: application/json, text/plain");
  headers = lib_->slist_append(headers, "Expect:");  // no 100-continue round trip
  lib_->easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  std::string user_agent = std::string("orchestrator/") + ORCH_VERSION;
  lib_->easy_setopt(c, CURLOPT_USERAGENT, user_agent.c_str());
  lib_->easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnBody);
  lib_->easy_setopt(c, CURLOPT_WRITEDATA, &resp.body);
  lib_->easy_setopt(c, CURLOPT_HEADERFUNCTION, &OnHeader);
  lib_->easy_setopt(c, CURLOPT_HEADERDATA, &resp.headers);

  CURLcode rc = lib_->easy_perform(c);
  lib_->slist_free_all(headers);
  if (rc != CURLE_OK) {
    std::string why = errbuf[0] != '\0' ? errbuf : lib_->easy_strerror(rc);
    // For a unix socket curl only says "localhost port 80": say what is wrong.
    if (address_.kind == ServerAddress::Kind::kUnix && rc == CURLE_COULDNT_CONNECT) {
      why = UnixSocketProblem(address_.socket_path);
    }
    return Result<HttpResponse>(Code::kUnavailable,
                                "cannot reach the server at " + address_.display + ": " + why);
  }
  lib_->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
  char* ct = nullptr;
  if (lib_->easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != nullptr) {
    resp.content_type = ct;
  }
  return resp;
}

std::string UrlEncode(const std::string& text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : text) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  return out;
}

}  // namespace orch::cli
