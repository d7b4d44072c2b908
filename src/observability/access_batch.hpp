#pragma once
// Access-log lines batched per worker and handed to the logging thread at 32 KiB or on the next
// sweep (<= 100 ms): one enqueue and one write per batch instead of per request, like nginx's
// `access_log ... buffer=`. Owned and used by one worker thread.
#include <string>
#include <string_view>

#include "observability/logging.hpp"

namespace gatehouse::observability {

class AccessBatch {
 public:
  explicit AccessBatch(Logs& logs) : logs_(logs) {}

  bool enabled() const { return logs_.access_enabled(); }
  void add(std::string_view line) {
    if (!batch_.empty()) {
      batch_ += '\n';
    }
    batch_ += line;
    if (batch_.size() >= kFlushBytes) {
      flush();
    }
  }
  void flush() {
    if (!batch_.empty()) {
      logs_.access(batch_);
      batch_.clear();
    }
  }

 private:
  static constexpr std::size_t kFlushBytes = 32 * 1024;
  Logs& logs_;
  std::string batch_;
};

}  // namespace gatehouse::observability
