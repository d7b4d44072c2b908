// The exact message of every security_headers rejection: file, line, column, key path and text.
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

TEST(SecurityHeadersConfigErrors, Block) {
  expect_errors({
      {kBase + "security_headers: on\n",
       "t.yaml:4:19: security_headers: invalid value \"on\" (expected off or a map)"},
      {kBase + "security_headers: [strict]\n",
       "t.yaml:4:19: security_headers: expected a map, got a list"},
      {kBase + "security_headers: {presets: strict}\n",
       "t.yaml:4:20: security_headers.presets: unknown key \"presets\" (did you mean \"preset\"?); "
       "allowed keys: preset, content_security_policy, hsts, overrides, force"},
      {kBase + "security_headers: {preset: paranoid}\n",
       "t.yaml:4:28: security_headers.preset: invalid value \"paranoid\" (expected one of: strict, "
       "relaxed, off)"},
      {kBase + "security_headers: {preset: Strict}\n",
       "t.yaml:4:28: security_headers.preset: invalid value \"Strict\" (expected one of: strict, "
       "relaxed, off)"},
      {kBase + "security_headers: {force: yes}\n",
       "t.yaml:4:27: security_headers.force: expected true or false, got \"yes\""},
  });
}

TEST(SecurityHeadersConfigErrors, ContentSecurityPolicy) {
  expect_errors({
      {kBase + "security_headers: {content_security_policy: \"default-src 'self'\\nimg-src *\"}\n",
       "t.yaml:4:45: security_headers.content_security_policy: invalid header value "
       "\"default-src 'self'\nimg-src *\" (use printable ASCII, without line breaks or leading and "
       "trailing blanks)"},
      {kBase + "security_headers: {content_security_policy: \" default-src 'self'\"}\n",
       "t.yaml:4:45: security_headers.content_security_policy: invalid header value \" "
       "default-src 'self'\" (use printable ASCII, without line breaks or leading and trailing "
       "blanks)"},
      {kBase + "security_headers: {content_security_policy: [\"default-src 'self'\"]}\n",
       "t.yaml:4:45: security_headers.content_security_policy: expected a string, got a list"},
  });
}

TEST(SecurityHeadersConfigErrors, Hsts) {
  expect_errors({
      {kBase + "security_headers: {hsts: on}\n",
       "t.yaml:4:26: security_headers.hsts: invalid value \"on\" (expected off or a map such as "
       "{max_age: 1y, include_subdomains: true})"},
      {kBase + "security_headers: {hsts: {maxage: 1y}}\n",
       "t.yaml:4:27: security_headers.hsts.maxage: unknown key \"maxage\" (did you mean "
       "\"max_age\"?); allowed keys: max_age, include_subdomains, preload"},
      {kBase + "security_headers: {hsts: {max_age: 31536000}}\n",
       "t.yaml:4:36: security_headers.hsts.max_age: invalid duration \"31536000\": a unit is "
       "required, e.g. \"31536000s\" (units: s, m, h, d, y)"},
      {kBase + "security_headers: {hsts: {max_age: 1 year}}\n",
       "t.yaml:4:36: security_headers.hsts.max_age: invalid duration \"1 year\" (expected a number "
       "and a unit: s, m, h, d or y, e.g. \"600s\", \"10m\", \"1y\")"},
      {kBase + "security_headers: {hsts: {max_age: 1500ms}}\n",
       "t.yaml:4:36: security_headers.hsts.max_age: must be a whole number of seconds (got "
       "\"1500ms\")"},
      {kBase + "security_headers: {hsts: {max_age: 3y}}\n",
       "t.yaml:4:36: security_headers.hsts.max_age: must be at most 2y"},
      {kBase + "security_headers: {hsts: {max_age: 731d}}\n",
       "t.yaml:4:36: security_headers.hsts.max_age: must be at most 2y"},
      {kBase + "security_headers: {hsts: {include_subdomains: 1}}\n",
       "t.yaml:4:47: security_headers.hsts.include_subdomains: expected true or false, got \"1\""},
      {kBase + "security_headers: {hsts: {include_subdomains: false, preload: true}}\n",
       "t.yaml:4:63: security_headers.hsts.preload: preload requires include_subdomains: true (a "
       "requirement of the browsers' preload lists)"},
      {kBase + "security_headers: {hsts: {max_age: 180d, preload: true}}\n",
       "t.yaml:4:51: security_headers.hsts.preload: preload requires max_age of at least 1y (a "
       "requirement of the browsers' preload lists)"},
  });
}

TEST(SecurityHeadersConfigErrors, Overrides) {
  expect_errors({
      {kBase + "security_headers: {overrides: [X-Frame-Options]}\n",
       "t.yaml:4:31: security_headers.overrides: expected a map, got a list"},
      {kBase + "security_headers: {overrides: {\"X Frame\": DENY}}\n",
       "t.yaml:4:32: security_headers.overrides.X Frame: invalid header name \"X Frame\" (expected "
       "a token such as X-Request-ID)"},
      {kBase + "security_headers: {overrides: {Content-Security-Policy: \"default-src *\"}}\n",
       "t.yaml:4:32: security_headers.overrides.Content-Security-Policy: "
       "\"Content-Security-Policy\" "
       "cannot be overridden: set it with security_headers.content_security_policy"},
      {kBase + "security_headers: {overrides: {strict-transport-security: max-age=1}}\n",
       "t.yaml:4:32: security_headers.overrides.strict-transport-security: "
       "\"strict-transport-security\" cannot be overridden: set it with security_headers.hsts"},
      {kBase + "security_headers: {overrides: {Server: gatehouse}}\n",
       "t.yaml:4:32: security_headers.overrides.Server: \"Server\" cannot be overridden: it is "
       "removed from upstream responses, not set"},
      {kBase + "security_headers: {overrides: {X-Powered-By: null}}\n",
       "t.yaml:4:32: security_headers.overrides.X-Powered-By: \"X-Powered-By\" cannot be "
       "overridden: it is removed from upstream responses, not set"},
      {kBase + "security_headers: {overrides: {Access-Control-Allow-Origin: \"*\"}}\n",
       "t.yaml:4:32: security_headers.overrides.Access-Control-Allow-Origin: "
       "\"Access-Control-Allow-Origin\" cannot be overridden: CORS headers come from the cors "
       "block"},
      {kBase + "security_headers: {overrides: {Content-Length: 0}}\n",
       "t.yaml:4:32: security_headers.overrides.Content-Length: \"Content-Length\" cannot be "
       "overridden: it is not a security header"},
      {kBase + "security_headers: {overrides: {Connection: close}}\n",
       "t.yaml:4:32: security_headers.overrides.Connection: \"Connection\" cannot be overridden: "
       "it is not a security header"},
      {kBase + "security_headers: {overrides: {Set-Cookie: a=b}}\n",
       "t.yaml:4:32: security_headers.overrides.Set-Cookie: \"Set-Cookie\" cannot be overridden: "
       "it is not a security header"},
      {kBase + "security_headers: {overrides: {X-Frame-Options: DENY, x-frame-options: null}}\n",
       "t.yaml:4:55: security_headers.overrides.x-frame-options: duplicate header "
       "\"x-frame-options\" (also \"X-Frame-Options\")"},
      {kBase + "security_headers: {overrides: {X-Frame-Options: \"DENY \"}}\n",
       "t.yaml:4:49: security_headers.overrides.X-Frame-Options: invalid header value \"DENY \" "
       "(use printable ASCII, without line breaks or leading and trailing blanks)"},
      {kBase + "security_headers: {overrides: {X-Frame-Options: {a: 1}}}\n",
       "t.yaml:4:49: security_headers.overrides.X-Frame-Options: expected a string, got a map"},
      {kBase + "security_headers:\n  overrides:\n    X-Frame-Options: \"d\\u00e9ny\"\n",
       "t.yaml:6:22: security_headers.overrides.X-Frame-Options: invalid header value "
       "\"d\xc3\xa9ny\" "
       "(use printable ASCII, without line breaks or leading and trailing blanks)"},
  });
}

}  // namespace
}  // namespace gatehouse::config
