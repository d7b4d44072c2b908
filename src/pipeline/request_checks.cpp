#include "pipeline/request_checks.hpp"

#include <stdexcept>

#include "http/fields.hpp"
#include "http/target.hpp"

namespace gatehouse::pipeline {

unsigned status_for_parse_error(const error_code& ec) {
  if (ec == http::error::header_limit) {
    return 431;
  }
  if (ec == http::error::body_limit) {
    return 413;
  }
  if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message) {
    return 400;
  }
  return 0;
}

unsigned validate_head(const config::Limits& limits, const RequestParser& p, std::string& why) {
  const auto& req = p.get();
#ifdef GATEHOUSE_TEST_HOOKS
  // Test-only builds (cmake -DGATEHOUSE_TEST_HOOKS=ON, never a release): no request path throws
  // any more, so tests/integration/test_internal_errors.py makes one throw here to check what
  // happens to a task that ends with an exception (logged, counted, its connection closed).
  if (req.count("X-Gatehouse-Test-Throw") != 0) {
    throw std::runtime_error("test hook: X-Gatehouse-Test-Throw");
  }
#endif
  if (req.target().size() > limits.max_uri_bytes) {
    why = "request target too long";
    return 414;
  }
  auto hosts = req.count(http::field::host);
  if (hosts > 1 || (hosts == 0 && req.version() >= 11)) {
    why = hosts > 1 ? "multiple Host headers" : "missing Host header";
    return 400;
  }
  if (hosts == 1) {
    auto host = req[http::field::host];
    if (!ghttp::is_valid_host({host.data(), host.size()})) {
      why = "invalid Host header";
      return 400;
    }
  }
  if (req.target().empty() || req.target()[0] != '/') {
    // Absolute-, authority- and asterisk-form: gatehouse is a reverse proxy and routes paths
    // only. Refusing (and closing) is simpler to reason about than rewriting a URI whose
    // authority may disagree with Host.
    why = "request target not in origin-form";
    return 400;
  }
  if (auto te = req.count(http::field::transfer_encoding); te > 0 && req.version() < 11) {
    // RFC 9112 6.1: framing of a 1.0 message with Transfer-Encoding is faulty (a 1.0 hop in
    // front of us may have ignored it): refuse rather than guess where the message ends.
    why = "Transfer-Encoding in an HTTP/1.0 request";
    return 400;
  } else if (te > 0) {
    // Only a lone "chunked" is accepted: other codings ("gzip, chunked") would be silently
    // dropped by re-framing, and lists are a classic smuggling vector.
    auto value = req[http::field::transfer_encoding];
    auto tokens = ghttp::split_tokens({value.data(), value.size()});
    if (te > 1 || tokens.size() != 1 || !ghttp::iequals(tokens[0], "chunked")) {
      why = "unsupported Transfer-Encoding";
      return 400;
    }
  }
  auto cl = p.content_length();
  if (cl && limits.max_body_bytes != 0 && *cl > limits.max_body_bytes) {
    why = "Content-Length over max_body_bytes";
    return 413;
  }
  return 0;
}

}  // namespace gatehouse::pipeline
