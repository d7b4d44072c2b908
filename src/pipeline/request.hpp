#pragma once
// The request types the pipeline works on, and the I/O vocabulary of this layer.
#include "http/head_allocator.hpp"
#include "io/net.hpp"

namespace gatehouse::pipeline {

using namespace ::gatehouse::io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;
namespace beast = io::beast;
namespace http = io::http;  // Beast's; ours is ghttp
namespace ghttp = io::ghttp;

// Head fields in blocks from a per-thread cache instead of malloc (http/head_allocator.hpp); the
// server's ResponseParser does the same.
using RequestParser = http::request_parser<http::buffer_body, ghttp::HeadAllocator<char>>;
using Fields = http::basic_fields<ghttp::HeadAllocator<char>>;  // of requests and responses
using Request = RequestParser::value_type;

}  // namespace gatehouse::pipeline
