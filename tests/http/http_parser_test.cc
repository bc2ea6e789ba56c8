// HttpParser driven from strings: no sockets, no loop.
#include "http/http_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace orch {
namespace {

struct Outcome {
  std::vector<HttpRequest> requests;
  std::vector<bool> keep_alive;
  int continues = 0;
  bool failed = false;
  HttpError error;
};

// Feeds `input` in pieces of `step` bytes (0 = all at once), the way a
// connection does: unconsumed bytes are fed again after each event.
Outcome Parse(const std::string& input, size_t step = 0, HttpParser::Limits limits = {1024, 512}) {
  HttpParser parser(limits);
  Outcome out;
  std::string pending;
  size_t off = 0;
  while (off < input.size() || !pending.empty()) {
    if (off < input.size()) {
      size_t n = step == 0 ? input.size() - off : std::min(step, input.size() - off);
      pending.append(input, off, n);
      off += n;
    }
    bool more = true;
    while (more && !pending.empty()) {
      HttpParser::Progress p = parser.Feed(pending);
      pending.erase(0, p.consumed);
      switch (p.event) {
        case HttpParser::Event::kNeedMore:
          more = false;
          break;
        case HttpParser::Event::kExpectContinue:
          ++out.continues;
          break;
        case HttpParser::Event::kRequest:
          out.requests.push_back(parser.TakeRequest());
          out.keep_alive.push_back(parser.keep_alive());
          break;
        case HttpParser::Event::kError:
          out.failed = true;
          out.error = parser.error();
          return out;
      }
    }
    if (off >= input.size()) break;
  }
  return out;
}

TEST(HttpParser, SimpleGetHasPathQueryAndLowercasedHeaders) {
  Outcome o = Parse(
      "GET /jobs/7?status=queued&name=a%20b+c&flag HTTP/1.1\r\n"
      "Host: x\r\nX-Trace-ID:  abc  \r\nX-Empty:\r\n\r\n");
  ASSERT_FALSE(o.failed) << o.error.message;
  ASSERT_EQ(1u, o.requests.size());
  const HttpRequest& r = o.requests[0];
  EXPECT_EQ("GET", r.method);
  EXPECT_EQ("/jobs/7?status=queued&name=a%20b+c&flag", r.target);
  EXPECT_EQ("/jobs/7", r.path);
  EXPECT_EQ("queued", r.query.at("status"));
  EXPECT_EQ("a b c", r.query.at("name"));
  EXPECT_EQ("", r.query.at("flag"));
  ASSERT_EQ(3u, r.headers.size());
  EXPECT_EQ("x-trace-id", r.headers[1].first);
  EXPECT_EQ("abc", r.Header("X-TRACE-ID"));
  EXPECT_TRUE(r.HasHeader("x-empty"));
  EXPECT_EQ("", r.Header("x-empty"));
  EXPECT_EQ("", r.Header("missing"));
  EXPECT_TRUE(o.keep_alive[0]);
}

TEST(HttpParser, PipelinedRequestsComeOutOneAtATimeWhateverTheSplit) {
  std::string two =
      "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
      "GET /b HTTP/1.1\r\nConnection: close\r\n\r\n";
  for (size_t step : {0, 1, 2, 5, 17}) {
    Outcome o = Parse(two, step);
    ASSERT_FALSE(o.failed) << "step " << step << ": " << o.error.message;
    ASSERT_EQ(2u, o.requests.size()) << "step " << step;
    EXPECT_EQ("/a", o.requests[0].path);
    EXPECT_EQ("abc", o.requests[0].body);
    EXPECT_TRUE(o.keep_alive[0]);
    EXPECT_EQ("/b", o.requests[1].path);
    EXPECT_FALSE(o.keep_alive[1]) << "Connection: close is honoured";
  }
}

TEST(HttpParser, ChunkedBodyIsDechunkedAndTrailersAreDropped) {
  Outcome o = Parse(
      "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n");
  ASSERT_FALSE(o.failed) << o.error.message;
  ASSERT_EQ(1u, o.requests.size());
  EXPECT_EQ("abcde", o.requests[0].body);
  EXPECT_FALSE(o.requests[0].HasHeader("x-trailer"));
}

TEST(HttpParser, ExpectContinueStopsAfterTheHeaders) {
  Outcome o = Parse("POST /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok");
  ASSERT_FALSE(o.failed);
  EXPECT_EQ(1, o.continues);
  ASSERT_EQ(1u, o.requests.size());
  EXPECT_EQ("ok", o.requests[0].body);
}

TEST(HttpParser, UnknownExpectationIs417) {
  Outcome o = Parse("POST /c HTTP/1.1\r\nExpect: magic\r\nContent-Length: 2\r\n\r\nok");
  ASSERT_TRUE(o.failed);
  EXPECT_EQ(417, o.error.status);
}

TEST(HttpParser, ContentLengthWithTransferEncodingIs400EitherOrder) {
  for (std::string head : {"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                           "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"}) {
    Outcome o = Parse("POST / HTTP/1.1\r\n" + head + "\r\n3\r\nabc\r\n0\r\n\r\n");
    ASSERT_TRUE(o.failed) << head;
    EXPECT_EQ(400, o.error.status);
    EXPECT_EQ("bad_request", o.error.code);
  }
}

TEST(HttpParser, DuplicateContentLengthIs400) {
  Outcome o = Parse("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd");
  ASSERT_TRUE(o.failed);
  EXPECT_EQ(400, o.error.status);
}

TEST(HttpParser, TransferEncodingOtherThanChunkedIs400) {
  Outcome o = Parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc");
  ASSERT_TRUE(o.failed);
  EXPECT_EQ(400, o.error.status);
}

TEST(HttpParser, DeclaredBodyOneByteOverTheLimitIs413BeforeAnyBody) {
  Outcome ok = Parse("POST / HTTP/1.1\r\nContent-Length: 1024\r\n\r\n" + std::string(1024, 'x'));
  ASSERT_FALSE(ok.failed);
  EXPECT_EQ(1024u, ok.requests[0].body.size());
  Outcome o = Parse("POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n");
  ASSERT_TRUE(o.failed);
  EXPECT_EQ(413, o.error.status);
  EXPECT_EQ("payload_too_large", o.error.code);
}

TEST(HttpParser, ChunkedBodyOverTheLimitIs413AtTheChunkHeader) {
  std::string chunk(1000, 'x');
  Outcome o = Parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + chunk +
                    "\r\n19\r\n");  // 1000 + 25 > 1024, refused before the 25 arrive
  ASSERT_TRUE(o.failed);
  EXPECT_EQ(413, o.error.status);
}

TEST(HttpParser, HeadOverTheLimitIs431) {
  Outcome o = Parse("GET / HTTP/1.1\r\nX-Big: " + std::string(600, 'a') + "\r\n\r\n", 7);
  ASSERT_TRUE(o.failed);
  EXPECT_EQ(431, o.error.status);
  EXPECT_EQ("header_too_large", o.error.code);
  Outcome many = Parse("GET / HTTP/1.1\r\n" + [] {
    std::string h;
    for (int i = 0; i < 200; ++i) h += "a:\r\n";
    return h;
  }() + "\r\n");
  ASSERT_TRUE(many.failed) << "many empty headers still cost bytes";
  EXPECT_EQ(431, many.error.status);
}

TEST(HttpParser, GarbageIs400AndStays400) {
  HttpParser parser({1024, 512});
  HttpParser::Progress p = parser.Feed("\x01\x02 garbage\r\n\r\n");
  EXPECT_EQ(HttpParser::Event::kError, p.event);
  EXPECT_EQ(400, parser.error().status);
  EXPECT_EQ(HttpParser::Event::kError, parser.Feed("GET / HTTP/1.1\r\n\r\n").event);
}

TEST(HttpParser, BadTargetsAre400) {
  for (std::string target : {"/%zz", "/a%0", "/nul%00", "relative"}) {
    Outcome o = Parse("GET " + target + " HTTP/1.1\r\n\r\n");
    EXPECT_TRUE(o.failed) << target;
    EXPECT_EQ(400, o.error.status) << target;
  }
}

TEST(HttpParser, AbsoluteFormTargetIsAccepted) {
  Outcome o = Parse("GET http://example.com/queue?x=1 HTTP/1.1\r\n\r\n");
  ASSERT_FALSE(o.failed);
  EXPECT_EQ("/queue", o.requests[0].path);
  EXPECT_EQ("1", o.requests[0].query.at("x"));
}

TEST(HttpParser, Http10ClosesUnlessKeepAliveAsked) {
  Outcome o = Parse("GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(1u, o.requests.size());
  EXPECT_FALSE(o.keep_alive[0]);
  HttpParser parser({1024, 512});
  ASSERT_EQ(HttpParser::Event::kRequest,
            parser.Feed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").event);
  EXPECT_TRUE(parser.keep_alive());
  EXPECT_TRUE(parser.keep_alive_1_0());
}

TEST(HttpParser, UpgradeRequestIsAnsweredThenTheConnectionCloses) {
  Outcome o = Parse("GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  ASSERT_EQ(1u, o.requests.size());
  EXPECT_FALSE(o.keep_alive[0]);
}

// Splits every input is fed in: whole, byte by byte, and a few sizes that
// put the reads' edges between CR and LF.
constexpr size_t kSteps[] = {0, 1, 2, 3, 5, 7};

// `input` is answered with 400 bad_request naming `why`, before any request
// comes out of it, however it is split.
void ExpectRejected(const std::string& input, const std::string& why) {
  for (size_t step : kSteps) {
    Outcome o = Parse(input, step);
    SCOPED_TRACE("step " + std::to_string(step) + ": " + testing::PrintToString(input));
    EXPECT_TRUE(o.failed);
    EXPECT_EQ(0u, o.requests.size()) << "no request (and no second one) may be parsed";
    EXPECT_EQ(400, o.error.status);
    EXPECT_EQ("bad_request", o.error.code);
    EXPECT_NE(std::string::npos, o.error.message.find(why)) << o.error.message;
  }
}

// llhttp 8.1 takes any byte after the CR that ends a head or a chunk-size line
// for its LF, so "\r\n\rX" ends the headers and what follows X is a new request.
TEST(HttpParser, BareCrInTheHeadIs400WhateverTheSplit) {
  ExpectRejected("GET / HTTP/1.1\r\nHost: x\r\n\rX-Foo: y\r\n\r\n", "bare CR");
  ExpectRejected("GET / HTTP/1.1\r\nHost: x\r\n\rXGET /admin HTTP/1.1\r\n\r\n", "bare CR");
  ExpectRejected("POST / HTTP/1.1\r\nContent-Length: 3\r\n\rXabc", "bare CR");
  ExpectRejected(
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rXGET /admin HTTP/1.1\r\n\r\n",
      "bare CR");  // in the trailer section
  ExpectRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\rXabc\r\n0\r\n\r\n",
                 "bare CR");  // ending a chunk-size line
  // Between pipelined requests only CRLF may stand in for an empty line.
  for (size_t step : kSteps) {
    Outcome o = Parse("GET /a HTTP/1.1\r\n\r\n\rGET /b HTTP/1.1\r\n\r\n", step);
    EXPECT_EQ(1u, o.requests.size()) << "step " << step;
    EXPECT_TRUE(o.failed) << "step " << step;
    EXPECT_EQ(400, o.error.status) << "step " << step;
  }
}

// llhttp 8.1 skips the two bytes after chunk data without looking at them.
TEST(HttpParser, ChunkDataNotFollowedByCrlfIs400WhateverTheSplit) {
  const std::string head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (std::string after : {"XX", "\rX", "X\n", "\n\r", "\r\r"}) {
    ExpectRejected(head + "3\r\nabc" + after + "0\r\n\r\n", "chunk data not followed by CRLF");
  }
  ExpectRejected(head + "3\r\nabcXX0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n",
                 "chunk data not followed by CRLF");
  ExpectRejected(head + "3\r\nabc\r\n2\r\ndeXX0\r\n\r\n", "chunk data not followed by CRLF");
}

// RFC 9112 5.2: a server may answer obs-fold with 400. llhttp 8.1 folds the
// line into the previous value, and "Transfer-Encoding:\r\n chunked" frames the
// body as chunked for it and not for a peer that drops the line.
TEST(HttpParser, ObsoleteLineFoldingIs400WhateverTheSplit) {
  const std::string body = "3\r\nabc\r\n0\r\n\r\n";
  ExpectRejected("POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n" + body,
                 "obsolete line folding");
  ExpectRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\tidentity\r\n\r\n" + body,
                 "obsolete line folding");
  ExpectRejected("POST / HTTP/1.1\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n" + body,
                 "obsolete line folding");
  ExpectRejected("GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", "obsolete line folding");
  ExpectRejected("GET / HTTP/1.1\r\nX-A: a\r\n \r\n\r\n", "obsolete line folding");
  ExpectRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n\tb\r\n\r\n",
                 "obsolete line folding");  // in the trailer section
}

// The near misses: what the checks above must keep accepting.
TEST(HttpParser, StrictFramingKeepsWellFormedRequestsWhateverTheSplit) {
  std::string input =
      "GET /a HTTP/1.1\r\nHost: x\r\nX-Tab: a\tb\r\nX-Ows:\t c \t\r\n\r\n"
      "\r\n"  // RFC 9112 2.2: an empty line before a request line is ignored
      "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3;ext=1\r\na\rb\r\n4;flag\r\n\r\n\r\n\r\n2\r\n \t\r\n0\r\nX-Trailer: t\r\n\r\n"
      "POST /c HTTP/1.1\r\nContent-Length: 5\r\n\r\n \r\n\tx"
      "POST /d HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
      "1\r\n\r\r\n0\r\n\r\n"
      "GET /e HTTP/1.1\r\nConnection: close\r\n\r\n";
  for (size_t step : kSteps) {
    SCOPED_TRACE("step " + std::to_string(step));
    Outcome o = Parse(input, step);
    ASSERT_FALSE(o.failed) << o.error.message;
    ASSERT_EQ(5u, o.requests.size());
    EXPECT_EQ("a\tb", o.requests[0].Header("x-tab")) << "a tab inside a value is no fold";
    EXPECT_EQ("c", o.requests[0].Header("x-ows"));
    EXPECT_EQ("/b", o.requests[1].path);
    EXPECT_EQ("a\rb\r\n\r\n \t", o.requests[1].body) << "CR, LF and blanks in data are data";
    EXPECT_EQ(" \r\n\tx", o.requests[2].body);
    EXPECT_EQ(1, o.continues);
    EXPECT_EQ("\r", o.requests[3].body);
    EXPECT_EQ("/e", o.requests[4].path);
    EXPECT_TRUE(o.keep_alive[3]);
    EXPECT_FALSE(o.keep_alive[4]);
  }
}

TEST(HttpTypes, ResponseHeadDropsFramingAndInjectedHeaders) {
  HttpResponse r;
  r.status = 201;
  r.headers = {{"X-Ok", "1"}, {"Content-Length", "99"}, {"X-Bad", "a\r\nSet-Cookie: x"}};
  std::string head;
  FormatHttpResponseHead(r, 5, true, false, &head);
  EXPECT_EQ(
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Ok: 1\r\n"
      "Content-Security-Policy: " + std::string(kDefaultCsp) +
          "\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
          "Content-Length: 5\r\nConnection: close\r\n\r\n",
      head);
}

TEST(HttpTypes, AResponseMayBringItsOwnContentSecurityPolicy) {
  HttpResponse r;
  r.headers = {{"Content-Security-Policy", "default-src 'self'"}};
  std::string head;
  FormatHttpResponseHead(r, 0, false, false, &head);
  EXPECT_NE(std::string::npos, head.find("Content-Security-Policy: default-src 'self'\r\n"));
  EXPECT_EQ(std::string::npos, head.find(kDefaultCsp)) << head;
  EXPECT_NE(std::string::npos, head.find("X-Content-Type-Options: nosniff\r\n"));
}

TEST(HttpTypes, ErrorResponseHasTheApiShape) {
  HttpResponse r = HttpErrorResponse(413, "payload_too_large", "too \"big\"");
  EXPECT_EQ(413, r.status);
  EXPECT_EQ(R"({"error":{"code":"payload_too_large","message":"too \"big\""}})", r.body);
}

TEST(HttpParser, WhitespaceBeforeAHeaderColonIs400WhateverTheSplit) {
  for (size_t step : {size_t{0}, size_t{1}, size_t{3}}) {
    Outcome o = Parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n"
                      "0\r\n\r\n",
                      step);
    EXPECT_TRUE(o.failed) << step;
    EXPECT_EQ(400, o.error.status);
    EXPECT_TRUE(o.requests.empty());
  }
  Outcome fine = Parse("GET / HTTP/1.1\r\nHost: x\r\nX-A:  spaced  value \r\n\r\n");
  ASSERT_EQ(1u, fine.requests.size());
  EXPECT_EQ("spaced  value", fine.requests[0].Header("x-a"));
}

}  // namespace
}  // namespace orch
