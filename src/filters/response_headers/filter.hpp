#pragma once
// response_headers in the chain: X-Process-Time on every response (proxied and local), measured
// from the context's start (the first byte of the request head) to the moment the response head
// is built. The upstream's own X-Process-Time is dropped: one value per response, and gatehouse's
// includes the upstream's time (the app's own time stays in the access log as upstream_ms).
#include "filters/response_headers/config.hpp"
#include "http/fields.hpp"
#include "pipeline/context.hpp"

namespace gatehouse::filters::response_headers {

class ResponseHeadersFilter {
 public:
  template <class Services>
  explicit ResponseHeadersFilter(Services& s) : process_time_(settings(s.cfg).process_time) {}

  bool strips(std::string_view name) const {
    return process_time_ && gatehouse::http::iequals(name, "X-Process-Time");
  }

  void encode_headers(pipeline::Context& ctx, pipeline::ResponseHead& head) const {
    if (process_time_) {
      append_process_time(head.lines, pipeline::Clock::now() - ctx.start);
    }
  }

 private:
  bool process_time_;
};

}  // namespace gatehouse::filters::response_headers
