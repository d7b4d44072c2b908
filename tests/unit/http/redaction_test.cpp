#include "http/redaction.hpp"

#include <gtest/gtest.h>

#include <string>

namespace gatehouse::http {
namespace {

// --- redact_target ----------------------------------------------------------------------------

TEST(RedactTarget, NoQueryIsUnchanged) {
  EXPECT_EQ(redact_target("/plain/path"), "/plain/path");
  EXPECT_EQ(redact_target("/"), "/");
  EXPECT_EQ(redact_target(""), "");
  EXPECT_EQ(redact_target("/x?"), "/x?");
}

TEST(RedactTarget, SecretParamsRedactedOthersKept) {
  EXPECT_EQ(redact_target("/x?token=abc&page=2"), "/x?token=REDACTED&page=2");
  EXPECT_EQ(redact_target("/x?api_key=1&password=2&code=3&q=hello"),
            "/x?api_key=REDACTED&password=REDACTED&code=REDACTED&q=hello");
  EXPECT_EQ(redact_target("/cb?state=s1&code=xyz"), "/cb?state=s1&code=REDACTED");
}

TEST(RedactTarget, EveryListedWordCaseInsensitive) {
  for (auto name : {"token", "ACCESS_TOKEN", "apiKey", "client_secret", "Password", "passwd",
                    "authorization", "X-Amz-Signature", "sessionid", "jwt", "Code"}) {
    EXPECT_EQ(redact_target("/p?" + std::string(name) + "=v"),
              "/p?" + std::string(name) + "=REDACTED")
        << name;
  }
  for (auto name : {"page", "q", "user", "tok", "pass"}) {
    EXPECT_EQ(redact_target("/p?" + std::string(name) + "=v"), "/p?" + std::string(name) + "=v")
        << name;
  }
}

TEST(RedactTarget, EmptyValuesAndBareNames) {
  EXPECT_EQ(redact_target("/x?token=&a="), "/x?token=REDACTED&a=");
  // A name without '=' carries no value to hide.
  EXPECT_EQ(redact_target("/x?token&a=1"), "/x?token&a=1");
  // Only the first '=' separates the name.
  EXPECT_EQ(redact_target("/x?token=a=b&c=d=e"), "/x?token=REDACTED&c=d=e");
}

TEST(RedactTarget, RepeatedAmpersandsKept) {
  EXPECT_EQ(redact_target("/x?a=1&&token=s&"), "/x?a=1&&token=REDACTED&");
  EXPECT_EQ(redact_target("/x?&&&"), "/x?&&&");
  EXPECT_EQ(redact_target("/x?&token=s"), "/x?&token=REDACTED");
}

TEST(RedactTarget, RepeatedSecretParam) {
  EXPECT_EQ(redact_target("/x?token=a&token=b"), "/x?token=REDACTED&token=REDACTED");
}

}  // namespace
}  // namespace gatehouse::http

namespace gatehouse::http {
namespace {

TEST(RedactText, SecretsInFreeText) {
  EXPECT_EQ(redact_text("password=hunter2&user=bob"), "password=REDACTED&user=bob");
  EXPECT_EQ(redact_text(R"({"api_key": "sk-123", "name": "x"})"),
            R"({"api_key": "REDACTED", "name": "x"})");
  EXPECT_EQ(redact_text("Authorization: Bearer abc.def.ghi\nnext"),
            "Authorization: Bearer REDACTED\nnext");
  EXPECT_EQ(redact_text("sent Bearer eyJhbGciOi to x"), "sent Bearer REDACTED to x");
  EXPECT_EQ(redact_text("db = postgres://app:s3cr3t@db.internal:5432/app"),
            "db = postgres://app:REDACTED@db.internal:5432/app");
  EXPECT_EQ(redact_text("SECRET_KEY='abc' DEBUG=1"), "SECRET_KEY='REDACTED' DEBUG=1");
  EXPECT_EQ(redact_text("Cookie: session=abc; theme=dark"), "Cookie: REDACTED; theme=dark");
}

TEST(RedactText, OrdinaryTextUnchanged) {
  std::string tb =
      "Traceback (most recent call last):\n  File \"app.py\", line 12, in boom\n"
      "    raise RuntimeError(\"database exploded\")\nRuntimeError: database exploded\n";
  EXPECT_EQ(redact_text(tb), tb);
  EXPECT_EQ(redact_text("http://example.com/a?b=1"), "http://example.com/a?b=1");
  EXPECT_EQ(redact_text("tokens used: "), "tokens used: ");
  EXPECT_EQ(redact_text(""), "");
  EXPECT_EQ(redact_text("password"), "password");
}

// Headers a Sentry report never carries (issue 15, sentry-seclog).
TEST(SecretHeader, CredentialsAndKeys) {
  for (const char* name :
       {"Authorization", "proxy-authorization", "Cookie", "Set-Cookie", "X-Api-Key", "X-Auth-Token",
        "X-CSRF-Token", "X-Session-Id", "X-Hub-Signature-256", "X-Amz-Security-Token", "apikey"}) {
    EXPECT_TRUE(is_secret_header(name)) << name;
  }
  for (const char* name : {"Host", "User-Agent", "Accept", "Content-Type", "X-Request-ID", "Origin",
                           "Referer", "Content-Length"}) {
    EXPECT_FALSE(is_secret_header(name)) << name;
  }
}

}  // namespace
}  // namespace gatehouse::http
