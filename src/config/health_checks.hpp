#pragma once
// `health.checks`: the dependencies /health/detailed probes (a database port, Redis, an HTTP
// endpoint, free disk space). Reading and writing the list, and the pieces of a check's target
// the probes need, parsed the same way the loader validated them.
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace gatehouse::config {

class YamlWriter;
namespace detail {
class Value;
}

// The `health.checks` list; failures throw ConfigError ("t.yaml:9:7: health.checks[1].tcp: ...").
std::vector<DependencyCheck> read_health_checks(const detail::Value& v);
void write_health_checks(YamlWriter& w, const std::vector<DependencyCheck>& checks);

// "tcp", "redis", "http", "disk".
std::string_view check_kind_name(DependencyCheck::Kind kind);

// An http check's URL, "http://HOST[:PORT][/PATH]": the address and the request target ("/" when
// no path is given). `error` is set when the text is not such a URL.
struct HttpCheckUrl {
  Endpoint endpoint;
  std::string path;
  std::string error;
};
HttpCheckUrl parse_http_check_url(std::string_view text);

}  // namespace gatehouse::config
