// The exact message of every cors rejection: file, line, column, key path and text.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/config_test_util.hpp"

namespace gatehouse::config {
namespace {

using testing::error_of;
using testing::expect_errors;
using testing::kBase;

const std::string kInvalidOrigin =
    " (expected SCHEME://HOST[:PORT] such as \"https://app.example.com\", or \"*\" or \"null\")";

TEST(CorsConfigErrors, Block) {
  expect_errors({
      {kBase + "cors: on\n", "t.yaml:4:7: cors: invalid value \"on\" (expected off or a map)"},
      {kBase + "cors: [\"https://a.example\"]\n", "t.yaml:4:7: cors: expected a map, got a list"},
      {kBase + "cors: {}\n", "t.yaml:4:7: cors.origins: required key is missing"},
      {kBase + "cors: {origin: [\"https://a.example\"]}\n",
       "t.yaml:4:8: cors.origin: unknown key \"origin\" (did you mean \"origins\"?); allowed keys: "
       "origins, methods, headers, expose_headers, credentials, max_age"},
      {kBase + "cors: {origins: [\"https://a.example\"], credentials: yes}\n",
       "t.yaml:4:53: cors.credentials: expected true or false, got \"yes\""},
      {kBase + "cors: {origins: [\"https://a.example\"], max_age: 600}\n",
       "t.yaml:4:49: cors.max_age: invalid duration \"600\": a unit is required, e.g. \"600s\" "
       "(units: s, m, h, d, y)"},
      {kBase + "cors: {origins: [\"https://a.example\"], max_age: 2d}\n",
       "t.yaml:4:49: cors.max_age: must be at most 1d"},
      {kBase + "cors: {origins: [\"https://a.example\"], max_age: 1.5s}\n",
       "t.yaml:4:49: cors.max_age: must be a whole number of seconds (got \"1.5s\")"},
  });
}

TEST(CorsConfigErrors, Origins) {
  expect_errors({
      {kBase + "cors: {origins: []}\n",
       "t.yaml:4:17: cors.origins: at least one origin is required (use cors: off to leave CORS "
       "to the app)"},
      {kBase + "cors: {origins: \"https://a.example\"}\n",
       "t.yaml:4:17: cors.origins: expected a list, got a string"},
      {kBase + "cors: {origins: [\"*\"], credentials: true}\n",
       "t.yaml:4:18: cors.origins[0]: \"*\" cannot be used with credentials: true (browsers refuse "
       "it; list the origins instead)"},
      {kBase + "cors: {credentials: true, origins: [\"*\"]}\n",
       "t.yaml:4:37: cors.origins[0]: \"*\" cannot be used with credentials: true (browsers refuse "
       "it; list the origins instead)"},
      {kBase + "cors: {origins: [\"https://a.example\", \"*\"]}\n",
       "t.yaml:4:39: cors.origins[1]: \"*\" must be the only origin (it already allows every "
       "origin)"},
      {kBase + "cors: {origins: [\"https://app.example.com/\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://app.example.com/\": an origin has "
       "no "
       "path (write \"https://app.example.com\")"},
      {kBase + "cors: {origins: [\"https://app.example.com/api\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://app.example.com/api\": an origin "
       "has "
       "no path (write \"https://app.example.com\")"},
      {kBase + "cors: {origins: [app.example.com]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"app.example.com\"" + kInvalidOrigin},
      {kBase + "cors: {origins: [\"https://\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://\"" + kInvalidOrigin},
      {kBase + "cors: {origins: [\"https://a_b.example\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://a_b.example\"" + kInvalidOrigin},
      {kBase + "cors: {origins: [\"https://a..example\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://a..example\"" + kInvalidOrigin},
      {kBase + "cors: {origins: [\"https://user@a.example\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://user@a.example\"" + kInvalidOrigin},
      {kBase + "cors: {origins: [\"https://*.com\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://*.com\": \"*.\" must be followed by "
       "at least two labels, as in \"https://*.example.com\""},
      {kBase + "cors: {origins: [\"https://app.*.example.com\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://app.*.example.com\": \"*\" may only "
       "be the first label, as in \"https://*.example.com\""},
      {kBase + "cors: {origins: [\"https://*example.com\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://*example.com\": \"*\" may only be "
       "the "
       "first label, as in \"https://*.example.com\""},
      {kBase + "cors: {origins: [\"https://*\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://*\": \"*\" may only be the first "
       "label, as in \"https://*.example.com\""},
      {kBase + "cors: {origins: [\"https://a.example:0\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://a.example:0\": invalid port \"0\" "
       "(expected 1 to 65535, or *)"},
      {kBase + "cors: {origins: [\"https://a.example:65536\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://a.example:65536\": invalid port "
       "\"65536\" (expected 1 to 65535, or *)"},
      {kBase + "cors: {origins: [\"https://a.example:\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"https://a.example:\": invalid port \"\" "
       "(expected 1 to 65535, or *)"},
      {kBase + "cors: {origins: [\"http://[::1\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"http://[::1\"" + kInvalidOrigin},
      {kBase + "cors: {origins: [\"http://[1.2.3.4]\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"http://[1.2.3.4]\": invalid IPv6 address "
       "\"[1.2.3.4]\""},
      {kBase + "cors: {origins: [\"1http://a.example\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"1http://a.example\"" + kInvalidOrigin},
      {kBase + "cors: {origins: [\"https://A.example\", \"https://a.example:443\"]}\n",
       "t.yaml:4:39: cors.origins[1]: duplicate origin \"https://a.example:443\" (also "
       "origins[0])"},
      {kBase + "cors: {origins: [\"Null\"]}\n",
       "t.yaml:4:18: cors.origins[0]: invalid origin \"Null\"" + kInvalidOrigin},
  });
}

TEST(CorsConfigErrors, MethodsAndHeaders) {
  const std::string o = "cors: {origins: [\"https://a.example\"], ";
  expect_errors({
      {kBase + o + "methods: [get]}\n",
       "t.yaml:4:50: cors.methods[0]: invalid method \"get\" (expected an upper-case token such "
       "as GET or POST)"},
      {kBase + o + "methods: [GET, GET]}\n",
       "t.yaml:4:55: cors.methods[1]: duplicate method \"GET\""},
      {kBase + o + "methods: []}\n", "t.yaml:4:49: cors.methods: at least one method is required"},
      {kBase + o + "headers: [\"X Y\"]}\n",
       "t.yaml:4:50: cors.headers[0]: invalid header name \"X Y\" (expected a token such as "
       "X-Request-ID)"},
      {kBase + o + "headers: [Authorization, authorization]}\n",
       "t.yaml:4:65: cors.headers[1]: duplicate header \"authorization\" (also "
       "\"Authorization\")"},
      {kBase + o + "headers: [\"*\", Authorization]}\n",
       "t.yaml:4:50: cors.headers[0]: \"*\" must be the only entry (it already allows every "
       "request header)"},
      {kBase + o + "expose_headers: [X-Request-ID, \"*\"]}\n",
       "t.yaml:4:71: cors.expose_headers[1]: \"*\" must be the only entry (it already allows "
       "every response header)"},
      {kBase + o + "expose_headers: [\"*\"], credentials: true}\n",
       "t.yaml:4:57: cors.expose_headers[0]: \"*\" cannot be used with credentials: true "
       "(browsers take it literally; list the headers instead)"},
      {kBase + o + "expose_headers: {a: b}}\n",
       "t.yaml:4:56: cors.expose_headers: expected a list, got a map"},
  });
}

}  // namespace
}  // namespace gatehouse::config
