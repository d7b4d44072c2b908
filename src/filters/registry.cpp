#include "filters/registry.hpp"

#include "filters/cache/config.hpp"
#include "filters/cors/config.hpp"
#include "filters/errors/config.hpp"
#include "filters/jobs/config.hpp"
#include "filters/rate_limit/config.hpp"
#include "filters/response_headers/config.hpp"
#include "filters/security_headers/config.hpp"

namespace gatehouse::filters {

const config::Sections& config_sections() {
  static const config::Sections sections = [] {
    config::Sections s;
    rate_limit::register_config(s);
    security_headers::register_config(s);
    cors::register_config(s);
    response_headers::register_config(s);
    errors::register_config(s);
    cache::register_config(s);
    jobs::register_config(s);  // issue 13
    return s;
  }();
  return sections;
}

}  // namespace gatehouse::filters
