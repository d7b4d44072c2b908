#pragma once
// routes[].invalidates (issue 14): a 2xx response from the upstream on such a route purges the
// listed prefixes, on this instance before the client sees the response (so its next request
// cannot hit the old entry) and, with cache.shared, on the others through the bus. The bus's
// publish is queued, never awaited. A route without `invalidates` pays one load and a branch.
#include "filters/cache_bus/invalidator.hpp"
#include "pipeline/context.hpp"

namespace gatehouse::filters::cache_bus {

class InvalidateFilter {
 public:
  template <class Services>
  explicit InvalidateFilter(Services& s) : invalidator_(s.invalidator) {}

  void encode_headers(pipeline::Context& ctx, pipeline::ResponseHead& head) {
    const auto* route = ctx.route_config;
    if (route == nullptr || route->invalidates.empty()) {
      return;
    }
    // Only the upstream's own success is a completed write; gatehouse's replies are not.
    if (head.local() || head.status < 200 || head.status > 299 || invalidator_ == nullptr) {
      return;
    }
    for (const auto& prefix : route->invalidates) {
      invalidator_->invalidate(prefix, Origin::local);
    }
  }

 private:
  Invalidator* invalidator_;
};

}  // namespace gatehouse::filters::cache_bus
