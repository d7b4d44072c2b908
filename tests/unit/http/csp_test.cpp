#include "http/csp.hpp"

#include <gtest/gtest.h>

namespace gatehouse::http {
namespace {

TEST(Csp, Sha256Base64) {
  // echo -n "alert(1)" | openssl dgst -sha256 -binary | base64
  EXPECT_EQ(sha256_base64(""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
  EXPECT_EQ(sha256_base64("alert(1)"), "bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI=");
}

TEST(Csp, HashesEveryInlineBlockOfTheTag) {
  const std::string html =
      "<style>a{}</style><script>alert(1)</script><p>x</p><script></script>"
      "<script src=x></script>";
  EXPECT_EQ(inline_hash_sources(html, "script"),
            "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI=' "
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='");
  EXPECT_EQ(inline_hash_sources(html, "style"), "'sha256-" + sha256_base64("a{}") + "'");
  EXPECT_EQ(inline_hash_sources("<p>no code</p>", "script"), "");
  EXPECT_EQ(inline_hash_sources("<script>unterminated", "script"), "");
}

}  // namespace
}  // namespace gatehouse::http
