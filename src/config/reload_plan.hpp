#pragma once
// Configuration reload, the pure part: which keys of a new file need a restart instead, and what
// changed between two generations (routes, upstreams, rate-limit rules), for the reload's log line
// and admin answer. Both configurations are compared in their emitted form (to_yaml), which is
// canonical: every key written, defaults filled in, so a definition is its text.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"

namespace gatehouse::config {

class Sections;

// Named definitions: (name, definition text).
using Definitions = std::vector<std::pair<std::string, std::string>>;

struct DefinitionDiff {
  std::vector<std::string> kept, changed, added, removed;  // names, in file order
  bool same() const { return changed.empty() && added.empty() && removed.empty(); }
};

// Names present in both with the same text are kept, with another text changed; a name that
// appears several times is one definition (its texts joined in order).
DefinitionDiff diff_definitions(const Definitions& before, const Definitions& after);

// The blocks of YAML text `yaml` at indentation `indent` (spaces): each key line at that
// indentation and the deeper lines under it, as (key, text). List items ("- ") are not keys.
Definitions yaml_blocks(std::string_view yaml, std::size_t indent);

// Per route of the emitted file: (name, its block).
Definitions route_definitions(const Config& c, const Sections& sections);
// Per upstream: (name, its block).
Definitions upstream_definitions(const Config& c, const Sections& sections);

// The fields of one upstream its process-wide unit is built from (target health, breaker and
// outlier detector, metrics target series, health checks, resolver): targets, connect_timeout,
// health_check, outlier, circuit_breaker, resolve_interval, max_addresses. The others (timeouts,
// pool, balancing, queue, retries) are the workers' clusters.
const std::vector<std::string>& upstream_unit_fields();
// Per upstream of `c`, in its order: the upstream's name and the text of its unit fields. Two
// upstreams with the same key are served by one unit; a reload maps each upstream to the unit of
// its key, building one for a key the process has not served yet (an added or re-targeted
// upstream).
std::vector<std::string> upstream_unit_keys(const Config& c, const Sections& sections);

// The shared keys a reload cannot change, as "key" or "key.subkey" of the emitted file; filters
// add theirs with Section::restart_needed.
const std::vector<std::string>& restart_only_keys();

// Empty when `next` may replace `running`; otherwise why not, naming the key: "listen: changing
// it needs a restart; the running configuration stays in place". Checks restart_only_keys(),
// then each section's restart_needed. Routes and upstreams may be added, removed, renamed,
// reordered and changed (route metrics are keyed by name, upstream units by upstream_unit_keys;
// the gateway checks it has room for new ones).
std::string restart_needed(const Config& running, const Config& next, const Sections& sections);

// A ConfigError's text ("file:line:col: key.path: why") in parts, for the admin answer; fields
// that are not there stay empty (line 0).
struct ConfigErrorParts {
  std::string file;
  unsigned line = 0, column = 0;
  std::string key;
  std::string message;  // the rest
};
ConfigErrorParts parse_config_error(std::string_view text);

// "kept [a, b], changed [c], added [], removed [d]" as JSON: {"kept":[...],...}.
std::string diff_json(const DefinitionDiff& d);

}  // namespace gatehouse::config
