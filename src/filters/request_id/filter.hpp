#pragma once
// Request ids: a well-formed incoming id is kept (request_id.trust_incoming), else one is made; it
// goes upstream (proxy) and back on every response, and into every log line.
#include "http/fields.hpp"
#include "http/request_id.hpp"
#include "pipeline/context.hpp"

namespace gatehouse::filters::request_id {

class RequestIdFilter {
 public:
  template <class Services>
  explicit RequestIdFilter(Services& s) : cfg_(s.cfg.request_id) {}

  pipeline::Next decode_headers(pipeline::Context& ctx) const {
    auto incoming = ctx.header(cfg_.header);
    if (cfg_.trust_incoming && pipeline::ghttp::is_valid_request_id(incoming)) {
      ctx.request_id.assign(incoming);
    } else {
      ctx.request_id = pipeline::ghttp::thread_id_generator().request_id();
    }
    return pipeline::Next::Continue;
  }
  // The upstream's own id is replaced by ours.
  bool strips(std::string_view name) const { return pipeline::ghttp::iequals(name, cfg_.header); }
  void encode_headers(pipeline::Context& ctx, pipeline::ResponseHead& head) const {
    head.lines += cfg_.header;
    head.lines += ": ";
    head.lines += ctx.request_id;
    head.lines += "\r\n";
  }

 private:
  const config::RequestIdConfig& cfg_;
};

}  // namespace gatehouse::filters::request_id
