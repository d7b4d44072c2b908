#pragma once
// The checks a request head goes through before anything is forwarded: parse-error replies and
// the rules beyond what Beast's parser enforces. Free of Worker and sockets, so the request path
// can be driven by the fuzz target (tests/fuzz/fuzz_request.cpp) as well as by the session.
#include <string>

#include "config/config.hpp"
#include "io/net.hpp"

namespace gatehouse::server {

// The I/O primitives (src/io) are this layer's vocabulary.
using namespace ::gatehouse::io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;
namespace beast = io::beast;
namespace http = io::http;  // Beast's; ours is ghttp
namespace ghttp = io::ghttp;

using RequestParser = http::request_parser<http::buffer_body>;

// Maps a head-parsing failure to the reply it deserves (0: close silently).
unsigned status_for_parse_error(const error_code& ec);

// Checks the head beyond what Beast's parser enforces; returns the status to reply or 0, with the
// reason in `why`. The path is judged apart, by http::canonical_target_path, whose result the
// session keeps for every rule.
unsigned validate_head(const config::Limits& limits, const RequestParser& p, std::string& why);

}  // namespace gatehouse::server
