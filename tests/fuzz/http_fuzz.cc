// libFuzzer target for the request parser (HttpParser, the socket-free half
// of every connection). The first input byte picks how the rest is split
// into reads and which limits apply; the rest is the byte stream a client
// would send. Invariants that must hold for any input abort on violation.
//
//   build-fuzz/tests/fuzz/http_fuzz -max_total_time=20 tests/fuzz/corpus/http
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http/http_parser.h"
#include "http/http_types.h"
#include "http/job_spec_parser.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

void CheckRequest(const orch::HttpRequest& r, const orch::HttpParser::Limits& limits) {
  Check(r.body.size() <= static_cast<size_t>(limits.max_body_bytes), "body within limit");
  Check(r.target.size() <= limits.max_header_bytes, "target within header limit");
  Check(!r.method.empty(), "method set");
  for (const auto& [name, value] : r.headers) {
    for (char c : name) Check(!(c >= 'A' && c <= 'Z'), "header names lowercased");
    Check(value.empty() || (value.front() != ' ' && value.back() != ' '), "values trimmed");
  }
  Check(r.path == "*" || (!r.path.empty() && r.path[0] == '/'), "path is absolute");

  // Echo request data into a response the way a careless handler might: the
  // head must still end exactly once, at its end (no header injection).
  orch::HttpResponse resp;
  resp.content_type = r.Header("content-type");
  for (const auto& [name, value] : r.headers) resp.headers.emplace_back(name, value);
  for (const auto& [k, v] : r.query) resp.headers.emplace_back(k, v);
  std::string head;
  orch::FormatHttpResponseHead(resp, static_cast<int64_t>(r.body.size()), false, false, &head);
  Check(head.find("\r\n\r\n") == head.size() - 4, "response head ends once");
  orch::HttpResponse err = orch::HttpErrorResponse(400, "bad_request", r.target);
  Check(!err.body.empty(), "error body");

  // Submit validation: any body ends in a spec or an error naming a field.
  auto spec = orch::ParseJobSpec(r.body, 3);
  if (spec.ok()) {
    Check(!spec->argv.empty() && !spec->argv[0].empty(), "argv[0] present");
    Check(spec->max_attempts >= 1, "max_attempts positive");
  } else {
    Check(!spec.status().message().empty(), "validation error has a message");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint8_t control = data[0];
  size_t step = control % 32;  // 0 = everything at once
  orch::HttpParser::Limits limits;
  limits.max_body_bytes = (control & 0x40) != 0 ? 16 : 4096;
  limits.max_header_bytes = (control & 0x80) != 0 ? 64 : 8192;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  orch::HttpParser parser(limits);
  std::string pending;
  size_t off = 0;
  int events = 0;
  while (off < input.size()) {
    size_t n = step == 0 ? input.size() - off : std::min(step, input.size() - off);
    pending.append(input.substr(off, n));
    off += n;
    while (!pending.empty()) {
      orch::HttpParser::Progress p = parser.Feed(pending);
      Check(p.consumed <= pending.size(), "consumed within input");
      pending.erase(0, p.consumed);
      Check(++events < 1000000, "parser makes progress");
      if (p.event == orch::HttpParser::Event::kNeedMore) {
        Check(pending.empty(), "kNeedMore consumes everything");
        break;
      }
      if (p.event == orch::HttpParser::Event::kError) {
        const orch::HttpError& e = parser.error();
        Check(e.status >= 400 && e.status < 500, "server-made errors are 4xx");
        Check(!e.code.empty(), "error has a code");
        Check(parser.Feed("GET / HTTP/1.1\r\n\r\n").event == orch::HttpParser::Event::kError,
              "errors are final");
        return 0;
      }
      if (p.event == orch::HttpParser::Event::kRequest) {
        Check(!parser.in_request(), "request complete");
        CheckRequest(parser.TakeRequest(), limits);
      }
    }
  }
  return 0;
}
