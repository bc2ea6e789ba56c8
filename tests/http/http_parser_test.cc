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

TEST(HttpTypes, ResponseHeadDropsFramingAndInjectedHeaders) {
  HttpResponse r;
  r.status = 201;
  r.headers = {{"X-Ok", "1"}, {"Content-Length", "99"}, {"X-Bad", "a\r\nSet-Cookie: x"}};
  std::string head;
  FormatHttpResponseHead(r, 5, true, false, &head);
  EXPECT_EQ(
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Ok: 1\r\n"
      "Content-Length: 5\r\nConnection: close\r\n\r\n",
      head);
}

TEST(HttpTypes, ErrorResponseHasTheApiShape) {
  HttpResponse r = HttpErrorResponse(413, "payload_too_large", "too \"big\"");
  EXPECT_EQ(413, r.status);
  EXPECT_EQ(R"({"error":{"code":"payload_too_large","message":"too \"big\""}})", r.body);
}

}  // namespace
}  // namespace orch
