#include "filters/cache_bus/config.hpp"

#include "config/config.hpp"
#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"
#include "config/yaml_writer.hpp"

namespace gatehouse::filters::cache_bus {

std::string default_channel(unsigned db) {
  return "gatehouse:cache:invalidate:" + std::to_string(db);
}

void read(const config::detail::Value& v, config::Config& config) {
  Settings out;
  const auto cache = config::detail::Map::any_keys(v);
  auto shared = cache.find("shared");
  if (shared && !shared->is_null() && shared->text() != "off") {
    redis::Url url;
    std::string error;
    if (!shared->text().starts_with("redis://")) {
      shared->fail("expected off or redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]");
    }
    if (!redis::parse_url(shared->text(), url, error)) {
      shared->fail(error);
    }
    out.channel = default_channel(url.db);
    out.url = std::move(url);
  }
  if (auto c = cache.find("shared_channel")) {
    if (!out.url) {
      c->fail("needs shared: redis://HOST:PORT/DB");
    }
    const auto& text = c->text();
    if (text.empty() || text.size() > kMaxChannel) {
      c->fail("must be 1 to " + std::to_string(kMaxChannel) + " characters");
    }
    for (unsigned char ch : text) {
      if (ch <= 0x20 || ch >= 0x7f) {
        c->fail("must be printable ASCII without blanks (got " + config::detail::quoted(text) +
                ")");
      }
    }
    out.channel = text;
  }
  config.filters.set(std::move(out));
}

void write(config::YamlWriter& w, const config::Config& config) {
  const auto& s = settings(config);
  if (!s.url) {
    w.key("shared").str("off");
    return;
  }
  w.key("shared").str(s.url->redacted());  // the password never leaves the process
  w.key("shared_channel").str(s.channel);
}

const Settings& settings(const config::Config& config) {
  static const Settings none;
  const auto* s = config.filters.get<Settings>();
  return s != nullptr ? *s : none;
}

}  // namespace gatehouse::filters::cache_bus
