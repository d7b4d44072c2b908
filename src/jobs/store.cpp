#include "jobs/store.hpp"

#include <stdexcept>
#include <string_view>

#include "jobs/redis_store.hpp"
#include "jobs/sqlite_store.hpp"

namespace gatehouse::jobs {

std::unique_ptr<Store> open_store(const StoreOptions& options) {
  std::string_view url = options.url;
  if (url.starts_with("sqlite://")) {
    return std::make_unique<SqliteStore>(options);
  }
  if (url.starts_with("redis://")) {
    return std::make_unique<RedisStore>(options);
  }
  throw std::runtime_error("jobs store " + options.url +
                           ": expected sqlite://... or redis://host:port/db");
}

}  // namespace gatehouse::jobs
