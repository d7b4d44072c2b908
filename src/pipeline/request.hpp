#pragma once
// The request types the pipeline works on, and the I/O vocabulary of this layer.
#include "io/net.hpp"

namespace gatehouse::pipeline {

using namespace ::gatehouse::io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;
namespace beast = io::beast;
namespace http = io::http;  // Beast's; ours is ghttp
namespace ghttp = io::ghttp;

using RequestParser = http::request_parser<http::buffer_body>;
using Request = RequestParser::value_type;

}  // namespace gatehouse::pipeline
