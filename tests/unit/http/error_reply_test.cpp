#include "http/error_reply.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace gatehouse::http {
namespace {

struct Expected {
  unsigned status;
  const char* json;
};

class ErrorBodyForStatus : public ::testing::TestWithParam<Expected> {};

TEST_P(ErrorBodyForStatus, ExactJson) {
  const auto& e = GetParam();
  auto reply = reply_for_status(e.status);
  EXPECT_EQ(reply.status, e.status);
  auto body = error_body(reply, "rid-1", false);
  EXPECT_EQ(body, e.json);
  auto parsed = nlohmann::json::parse(body);
  EXPECT_EQ(parsed.size(), 3u);
  EXPECT_EQ(parsed["request_id"], "rid-1");
  EXPECT_EQ(parsed["error"], std::string(reply.code));
  EXPECT_EQ(parsed["message"], std::string(reply.message));
}

INSTANTIATE_TEST_SUITE_P(
    SpecStatuses, ErrorBodyForStatus,
    ::testing::Values(
        Expected{
            400,
            R"({"error":"bad_request","message":"The request is malformed.","request_id":"rid-1"})"},
        Expected{
            404,
            R"({"error":"not_found","message":"No route matches this request.","request_id":"rid-1"})"},
        Expected{
            413,
            R"({"error":"payload_too_large","message":"The request body is too large.","request_id":"rid-1"})"},
        Expected{
            414,
            R"({"error":"uri_too_long","message":"The request URI is too long.","request_id":"rid-1"})"},
        Expected{
            431,
            R"({"error":"request_header_fields_too_large","message":"The request headers are too large.","request_id":"rid-1"})"},
        Expected{
            502,
            R"({"error":"bad_gateway","message":"The upstream service could not be reached.","request_id":"rid-1"})"},
        Expected{
            503,
            R"({"error":"service_unavailable","message":"The service is temporarily unavailable.","request_id":"rid-1"})"},
        Expected{
            504,
            R"({"error":"gateway_timeout","message":"The upstream service did not answer in time.","request_id":"rid-1"})"}),
    [](const ::testing::TestParamInfo<Expected>& info) {
      return "Status" + std::to_string(info.param.status);
    });

TEST(ReplyForStatus, UnlistedStatusesGetGenericCodes) {
  auto r500 = reply_for_status(500);
  EXPECT_EQ(r500.status, 500u);
  EXPECT_EQ(r500.code, "internal_error");
  auto r418 = reply_for_status(418);
  EXPECT_EQ(r418.status, 418u);
  EXPECT_EQ(r418.code, "error");
  EXPECT_EQ(r418.message, "The request failed.");
}

TEST(ErrorBody, DetailOnlyInDevelopment) {
  auto reply = reply_for_status(502);
  const std::string base =
      R"({"error":"bad_gateway","message":"The upstream service could not be reached.","request_id":"r"})";
  const std::string detail = "connect to 127.0.0.1:8000: Connection refused";

  EXPECT_EQ(error_body(reply, "r", false, detail), base);
  EXPECT_EQ(error_body(reply, "r", true, ""), base);
  EXPECT_EQ(error_body(reply, "r", true), base);
  EXPECT_EQ(
      error_body(reply, "r", true, detail),
      R"({"error":"bad_gateway","message":"The upstream service could not be reached.","request_id":"r","detail":"connect to 127.0.0.1:8000: Connection refused"})");

  auto parsed = nlohmann::json::parse(error_body(reply, "r", true, detail));
  EXPECT_EQ(parsed["detail"], detail);
  EXPECT_FALSE(nlohmann::json::parse(error_body(reply, "r", false, detail)).contains("detail"));
}

TEST(ErrorBody, RequestIdAndDetailAreEscaped) {
  auto reply = reply_for_status(400);
  const std::string rid = "a\"b\\c\nd\x01";
  auto body = error_body(reply, rid, true, "say \"hi\"\t");
  EXPECT_EQ(
      body,
      R"({"error":"bad_request","message":"The request is malformed.","request_id":"a\"b\\c\nd\u0001","detail":"say \"hi\"\t"})");
  auto parsed = nlohmann::json::parse(body);
  EXPECT_EQ(parsed["request_id"], rid);
  EXPECT_EQ(parsed["detail"], "say \"hi\"\t");
}

TEST(ErrorBody, EmptyRequestIdIsStillValidJson) {
  auto body = error_body(reply_for_status(404), "", false);
  auto parsed = nlohmann::json::parse(body);
  EXPECT_EQ(parsed["request_id"], "");
  EXPECT_EQ(parsed["error"], "not_found");
}

// The 429/403 shape: the code, the message and when to come back.
TEST(ErrorBodyWithRetry, ExactJson) {
  auto body =
      error_body("rate_limit_exceeded", "Rate limit exceeded: 10 per 1 minute", 60, "rid-1");
  EXPECT_EQ(
      body,
      R"({"error":"rate_limit_exceeded","message":"Rate limit exceeded: 10 per 1 minute","retry_after":60,"request_id":"rid-1"})");
  auto parsed = nlohmann::json::parse(body);
  EXPECT_EQ(parsed.size(), 4u);
  EXPECT_EQ(parsed["retry_after"], 60);
  EXPECT_TRUE(parsed["retry_after"].is_number_integer());
}

TEST(ErrorBodyWithRetry, BanAndLargeValues) {
  auto body =
      error_body("banned", "Too many requests were rejected; banned for 900 more seconds", 900, "");
  auto parsed = nlohmann::json::parse(body);
  EXPECT_EQ(parsed["error"], "banned");
  EXPECT_EQ(parsed["retry_after"], 900);
  EXPECT_EQ(parsed["request_id"], "");
  // A year-long wait (a 1/366 days limit) still prints as a plain integer.
  auto year = nlohmann::json::parse(error_body("rate_limit_exceeded", "m", 31'622'400, "r"));
  EXPECT_EQ(year["retry_after"], 31'622'400);
  auto zero = nlohmann::json::parse(error_body("c", "m", 0, "r"));
  EXPECT_EQ(zero["retry_after"], 0);
}

TEST(ErrorBodyWithRetry, Escaped) {
  const std::string message = "say \"hi\"\n\x01";
  const std::string rid = "a\\b";
  auto body = error_body("rate_limit_exceeded", message, 1, rid);
  EXPECT_EQ(
      body,
      R"({"error":"rate_limit_exceeded","message":"say \"hi\"\n\u0001","retry_after":1,"request_id":"a\\b"})");
  auto parsed = nlohmann::json::parse(body);
  EXPECT_EQ(parsed["message"], message);
  EXPECT_EQ(parsed["request_id"], rid);
}

}  // namespace
}  // namespace gatehouse::http
