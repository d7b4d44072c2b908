#include "observability/logging.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <spdlog/async.h>
#include <spdlog/async_logger.h>
#include <spdlog/details/file_helper.h>
#include <spdlog/details/thread_pool.h>
#include <spdlog/sinks/base_sink.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <stdexcept>

#include "http/json.hpp"

namespace gatehouse::observability {
namespace {

// Writes raw lines to stdout/stderr or a file. Flushes when the async queue has drained, so lines
// appear promptly when idle yet are batched under load. Re-opens the file when the shared
// generation counter moves (SIGUSR1). Holds the pool by plain pointer: sink_it_ only runs on that
// pool's own thread, and a strong reference taken there could make the worker the pool's last owner
// (its destructor would then join the worker from itself: lost lines, std::terminate).
class LineSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  LineSink(std::FILE* stream, std::string path, spdlog::details::thread_pool* pool,
           std::shared_ptr<std::atomic<unsigned>> generation, bool logfmt)
      : logfmt_(logfmt),
        stream_(stream),
        path_(std::move(path)),
        pool_(pool),
        generation_(std::move(generation)),
        seen_(generation_->load()) {
    if (!path_.empty()) {
      file_.open(path_, false);
    }
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (!path_.empty()) {
      unsigned g = generation_->load(std::memory_order_relaxed);
      if (g != seen_) {
        seen_ = g;
        try {
          file_.reopen(false);
        } catch (const std::exception&) {
          // keep writing to the old descriptor rather than lose lines
        }
      }
    }
    buf_.clear();
    if (logfmt_) {
      append_logfmt(std::string_view(msg.payload.data(), msg.payload.size()));
    } else {
      buf_.append(msg.payload.begin(), msg.payload.end());
      buf_.push_back('\n');
    }
    if (path_.empty()) {
      std::fwrite(buf_.data(), 1, buf_.size(), stream_);
    } else {
      file_.write(buf_);
    }
    if (pool_ == nullptr || pool_->queue_size() == 0) {
      flush_();
    }
  }
  void flush_() override {
    if (path_.empty()) {
      std::fflush(stream_);
    } else {
      file_.flush();
    }
  }

 private:
  // log.format: text. Workers always produce JSON lines; the logging thread rewrites each into
  // logfmt (key=value, in the same field order), so the request path pays nothing for it.
  void append_logfmt(std::string_view payload) {
    while (!payload.empty()) {
      auto nl = payload.find('\n');
      auto line = payload.substr(0, nl);
      payload = nl == std::string_view::npos ? std::string_view() : payload.substr(nl + 1);
      auto obj = nlohmann::ordered_json::parse(line, nullptr, false);
      if (obj.is_discarded() || !obj.is_object()) {
        buf_.append(line.data(), line.data() + line.size());
        buf_.push_back('\n');
        continue;
      }
      bool first = true;
      for (const auto& [key, value] : obj.items()) {
        if (!first) {
          buf_.push_back(' ');
        }
        first = false;
        buf_.append(key.data(), key.data() + key.size());
        buf_.push_back('=');
        std::string text = value.is_string() ? value.get<std::string>()
                           : value.is_null() ? std::string("-")
                                             : value.dump();
        bool quote = text.empty() || text.find_first_of(" \"=\\") != std::string::npos;
        std::string out = quote ? value.dump() : text;  // JSON string escaping when quoted
        if (quote && !value.is_string()) {
          out = nlohmann::json(text).dump();
        }
        buf_.append(out.data(), out.data() + out.size());
      }
      buf_.push_back('\n');
    }
  }

  bool logfmt_;
  std::FILE* stream_;
  std::string path_;
  spdlog::details::thread_pool* pool_;
  std::shared_ptr<std::atomic<unsigned>> generation_;
  unsigned seen_;
  spdlog::details::file_helper file_;
  spdlog::memory_buf_t buf_;
};

}  // namespace

// Each slot is a preallocated spdlog message (~250 bytes): 65536 slots were 16 MiB of RSS. Access
// lines arrive in per-worker batches, so a few thousand slots absorb long bursts.
constexpr std::size_t kQueueSlots = 4096;
// When the queue is this close to full, new lines are dropped here, where their number is known.
// The margin absorbs producers racing past the check; spdlog's own overrun (which drops the oldest
// slot, a batch of unknown size) only happens if more threads than this enqueue at once.
constexpr std::size_t kQueueHeadroom = 256;

namespace {

std::uint64_t line_count(std::string_view payload) {
  return 1 + static_cast<std::uint64_t>(std::count(payload.begin(), payload.end(), '\n'));
}

}  // namespace

Logs::Logs(const config::LogConfig& cfg)
    : cfg_(cfg),
      pool_(std::make_shared<spdlog::details::thread_pool>(kQueueSlots, 1)),
      reopen_generation_(std::make_shared<std::atomic<unsigned>>(0)),
      level_(spdlog::level::from_str(cfg.level)) {
  access_ = make("access", cfg.access);
  error_ = make("error", cfg.error);
  security_ = make("security", cfg.security);
}

Logs::~Logs() {
  flush();
}

std::shared_ptr<spdlog::logger> Logs::make(const std::string& name, const std::string& dest) {
  if (dest == "off") {
    return nullptr;
  }
  std::FILE* stream = dest == "stdout" ? stdout : stderr;
  std::string path = (dest == "stdout" || dest == "stderr") ? std::string() : dest;
  std::shared_ptr<LineSink> sink;
  try {
    sink = std::make_shared<LineSink>(stream, path, pool_.get(), reopen_generation_,
                                      cfg_.format == config::LogFormat::text);
  } catch (const spdlog::spdlog_ex& e) {
    throw std::runtime_error("log." + name + ": cannot open " + dest + ": " + e.what());
  }
  auto logger = std::make_shared<spdlog::async_logger>(
      name, std::move(sink), pool_, spdlog::async_overflow_policy::overrun_oldest);
  logger->set_level(spdlog::level::trace);
  return logger;
}

void Logs::enqueue(spdlog::logger& logger, spdlog::level::level_enum level,
                   std::string_view payload) {
  if (pool_->queue_size() >= kQueueSlots - kQueueHeadroom) {
    dropped_lines_.fetch_add(line_count(payload), std::memory_order_relaxed);
    return;
  }
  logger.log(level, payload);
}

void Logs::access(std::string_view lines) {
  if (access_) {
    enqueue(*access_, spdlog::level::info, lines);
  }
}

void Logs::security(std::string_view line) {
  if (security_) {
    enqueue(*security_, spdlog::level::warn, line);
  }
}

bool Logs::should_log(spdlog::level::level_enum level) const {
  return error_ != nullptr && level >= level_ && level_ != spdlog::level::off;
}

void Logs::error(spdlog::level::level_enum level, std::string_view message,
                 std::string_view extra) {
  if (!should_log(level)) {
    return;
  }
  std::string line;
  line.reserve(128 + message.size() + extra.size());
  line += "{\"time\":\"";
  append_timestamp(line);
  line += "\",\"type\":\"error\",\"level\":";
  // spdlog names warn "warning"; the spec and log.level use "warn".
  auto lv = spdlog::level::to_string_view(level);
  http::append_json_string(line, level == spdlog::level::warn
                                     ? std::string_view("warn")
                                     : std::string_view(lv.data(), lv.size()));
  line += ",\"message\":";
  http::append_json_string(line, message);
  if (!extra.empty()) {
    line += ',';
    line += extra;
  }
  line += '}';
  enqueue(*error_, level, line);
}

void Logs::internal_error(std::string_view task, std::string_view what,
                          std::string_view request_id) {
  internal_errors_.fetch_add(1, std::memory_order_relaxed);
  std::string extra = "\"task\":";
  http::append_json_string(extra, task);
  extra += ",\"error\":";
  http::append_json_string(extra, what);
  if (!request_id.empty()) {
    extra += ",\"request_id\":";
    http::append_json_string(extra, request_id);
  }
  error(spdlog::level::err, "internal error", extra);
}

void Logs::reopen() {
  reopen_generation_->fetch_add(1);
}

void Logs::flush() {
  for (auto* l : {&access_, &error_, &security_}) {
    if (*l) {
      (*l)->flush();
    }
  }
}

std::uint64_t Logs::dropped() const {
  // An overrun slot (see kQueueHeadroom) counts as one line: its size is unknown.
  return dropped_lines_.load(std::memory_order_relaxed) + pool_->overrun_counter();
}

void append_timestamp(std::string& out) {
  using namespace std::chrono;
  thread_local std::int64_t cached_sec = -1;
  thread_local char cached[24];
  auto now = system_clock::now();
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count();
  std::int64_t sec = ms / 1000;
  if (sec != cached_sec) {
    std::time_t t = static_cast<std::time_t>(sec);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_sec = sec;
  }
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms % 1000));
  out += cached;
  out += frac;
}

ClientIpHasher::ClientIpHasher(bool enabled, std::string key)
    : enabled_(enabled), key_(std::move(key)) {}

std::string ClientIpHasher::operator()(std::string_view ip) const {
  if (!enabled_) {
    return std::string(ip);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(ip.data()), ip.size(), md, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(32);
  for (unsigned i = 0; i < 16 && i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

}  // namespace gatehouse::observability
