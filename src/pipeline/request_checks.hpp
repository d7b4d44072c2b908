#pragma once
// The checks a request head goes through before anything is forwarded: parse-error replies and
// the rules beyond what Beast's parser enforces. Free of Worker and sockets, so the request path
// can be driven by the fuzz target (tests/fuzz/fuzz_request.cpp) as well as by the session.
#include <string>

#include "config/config.hpp"
#include "pipeline/request.hpp"

namespace gatehouse::pipeline {

// Maps a head-parsing failure to the reply it deserves (0: close silently).
unsigned status_for_parse_error(const error_code& ec);

// Checks the head beyond what Beast's parser enforces; returns the status to reply or 0, with the
// reason in `why`. The path is judged apart, by http::canonical_target_path, whose result the
// session keeps for every rule.
unsigned validate_head(const config::Limits& limits, const RequestParser& p, std::string& why);

}  // namespace gatehouse::pipeline
