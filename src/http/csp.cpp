#include "http/csp.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

namespace gatehouse::http {

std::string sha256_base64(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  unsigned char out[4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(out, digest, SHA256_DIGEST_LENGTH);
  return {reinterpret_cast<const char*>(out), static_cast<std::size_t>(n)};
}

std::string inline_hash_sources(std::string_view html, std::string_view tag) {
  // Built by appending: GCC 12's -Wrestrict misfires on "<" + std::string(tag) + ">".
  std::string open = "<";
  open.append(tag).append(">");
  std::string close = "</";
  close.append(tag).append(">");
  std::string out;
  for (std::size_t at = html.find(open); at != std::string_view::npos;) {
    const std::size_t begin = at + open.size();
    const std::size_t end = html.find(close, begin);
    if (end == std::string_view::npos) {
      break;
    }
    if (!out.empty()) {
      out += ' ';
    }
    out.append("'sha256-").append(sha256_base64(html.substr(begin, end - begin))).append("'");
    at = html.find(open, end + close.size());
  }
  return out;
}

}  // namespace gatehouse::http
