#include "filters/jobs/policy.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <ctime>

#include "http/fields.hpp"
#include "http/json.hpp"

namespace gatehouse::filters::jobs {
namespace {

constexpr char kHex[] = "0123456789abcdef";

std::string hex(const unsigned char* data, std::size_t n) {
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out += kHex[data[i] >> 4];
    out += kHex[data[i] & 0xf];
  }
  return out;
}

void append_time(std::string& out, EpochMs ms) {
  if (ms <= 0) {
    out += "null";
    return;
  }
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  out += '"';
  out.append(buf, n);
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms % 1000));
  out += frac;
  out += '"';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

void Preference::add(std::string_view value) {
  // preference *( OWS ";" OWS parameter ), comma-separated; names are case-insensitive.
  while (!value.empty()) {
    auto comma = value.find(',');
    auto item = trim(value.substr(0, comma));
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
    item = trim(item.substr(0, item.find(';')));
    auto eq = item.find('=');
    auto name = trim(item.substr(0, eq));
    auto arg = eq == std::string_view::npos ? std::string_view() : trim(item.substr(eq + 1));
    if (arg.size() >= 2 && arg.front() == '"' && arg.back() == '"') {
      arg = arg.substr(1, arg.size() - 2);
    }
    if (http::iequals(name, "respond-async") && eq == std::string_view::npos) {
      respond_async = true;
    } else if (http::iequals(name, "wait") && !arg.empty() && !wait) {
      std::uint64_t n = 0;
      auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), n);
      if (ec == std::errc() && end == arg.data() + arg.size()) {
        wait = std::chrono::seconds(std::min<std::uint64_t>(n, 3600));
      }
    }
  }
}

Acceptance decide(config::Route::Mode mode, std::chrono::milliseconds hybrid_wait,
                  const Preference& prefer) {
  using Mode = config::Route::Mode;
  Acceptance a;
  if (mode == Mode::sync) {
    return a;  // Prefer is only honoured where the route allows jobs
  }
  if (prefer.respond_async) {
    a.preference_applied = true;
    if (prefer.wait && prefer.wait->count() > 0) {
      a.kind = Acceptance::Kind::wait;
      // The client's wait, never longer than what the route would hold a connection for.
      a.wait = std::min<std::chrono::milliseconds>(
          *prefer.wait, std::max<std::chrono::milliseconds>(hybrid_wait, std::chrono::seconds(60)));
    } else {
      a.kind = Acceptance::Kind::async;
    }
    return a;
  }
  if (mode == Mode::async) {
    a.kind = Acceptance::Kind::async;
  } else {
    a.kind = hybrid_wait.count() > 0 ? Acceptance::Kind::wait : Acceptance::Kind::async;
    a.wait = hybrid_wait;
  }
  return a;
}

std::string new_job_id() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return {};
  }
  return hex(bytes.data(), bytes.size());
}

bool valid_job_id(std::string_view id) {
  return id.size() == 32 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string request_digest(std::string_view method, std::string_view target,
                           std::string_view body) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  for (auto part : {method, target, body}) {
    auto len = std::to_string(part.size()) + ":";
    EVP_DigestUpdate(ctx, len.data(), len.size());
    EVP_DigestUpdate(ctx, part.data(), part.size());
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, md, &n);
  EVP_MD_CTX_free(ctx);
  return hex(md, n);
}

bool keeps_request_field(std::string_view name, std::string_view request_id_header) {
  for (std::string_view dropped :
       {"Content-Length", "Transfer-Encoding", "Expect", "Prefer", "X-Forwarded-For",
        "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "traceparent", "Idempotency-Key"}) {
    if (http::iequals(name, dropped)) {
      return false;
    }
  }
  return !http::is_hop_by_hop(name) && !http::iequals(name, request_id_header);
}

bool keeps_response_field(std::string_view name) {
  return !http::is_hop_by_hop(name) && !http::iequals(name, "Content-Length") &&
         !http::iequals(name, "Transfer-Encoding");
}

const char* state_text(State s) {
  switch (s) {
    case State::queued:
      return "queued";
    case State::running:
      return "running";
    case State::succeeded:
      return "succeeded";
    case State::failed:
      return "failed";
    case State::dead:
      return "dead";
  }
  return "unknown";
}

std::string accepted_body(const Job& job, std::string_view path) {
  std::string out = "{\"job_id\":";
  http::append_json_string(out, job.id);
  out += ",\"status\":\"";
  out += state_text(job.state);
  out += "\",\"status_url\":";
  http::append_json_string(out, std::string(path) + "/" + job.id);
  out += '}';
  return out;
}

std::string status_body(const Job& job, std::string_view path) {
  std::string out = accepted_body(job, path);
  out.pop_back();
  out += ",\"attempts\":" + std::to_string(job.attempts);
  out += ",\"max_attempts\":" + std::to_string(job.max_attempts);
  out += ",\"created_at\":";
  append_time(out, job.created_at);
  out += ",\"updated_at\":";
  append_time(out, job.updated_at);
  out += ",\"finished_at\":";
  append_time(out, final_state(job.state) ? job.finished_at : 0);
  out += ",\"upstream_status\":";
  out += job.response && final_state(job.state) ? std::to_string(job.response->status) : "null";
  out += ",\"error\":";
  if (job.last_error.empty()) {
    out += "null";
  } else {
    http::append_json_string(out, job.last_error);
  }
  if (final_state(job.state) && job.response) {
    out += ",\"result_url\":";
    http::append_json_string(out, std::string(path) + "/" + job.id + "/result");
  }
  out += '}';
  return out;
}

std::int64_t poll_after_seconds(const Job& job, EpochMs now) {
  if (job.state == State::queued && job.run_at > now) {
    return std::clamp<std::int64_t>((job.run_at - now + 999) / 1000, 1, 60);
  }
  return job.state == State::running ? 2 : 1;
}

Verdict judge(const Attempt& a, const Job& job, const config::RetryConfig& retry, EpochMs now,
              std::uint64_t random) {
  Verdict v;
  bool retryable = false;
  switch (a.failure) {
    case Attempt::Failure::none: {
      const bool listed = std::find(retry.on_status.begin(), retry.on_status.end(), a.status) !=
                          retry.on_status.end();
      if (!listed) {
        v.state = a.status < 400 ? State::succeeded : State::failed;
        if (a.status >= 400) {
          v.error = "upstream answered " + std::to_string(a.status);
        }
        return v;
      }
      retryable = true;
      v.error = "upstream answered " + std::to_string(a.status);
      break;
    }
    case Attempt::Failure::connect_failed:
      retryable = (retry.on & config::retry_connect_failure) != 0;
      v.error = "could not connect to the upstream";
      break;
    case Attempt::Failure::timed_out:
      retryable = (retry.on & config::retry_timeout) != 0;
      v.error = "no response from the upstream in time";
      break;
    case Attempt::Failure::reset:
      retryable = (retry.on & config::retry_reset) != 0;
      v.error = "the upstream connection failed before a whole response";
      break;
    case Attempt::Failure::too_large:
      v.error = "the upstream response is larger than jobs.max_response";
      break;
  }
  if (!retryable || job.attempts >= job.max_attempts) {
    v.state = State::dead;
    if (retryable) {
      v.error += " (after " + std::to_string(job.attempts) + " attempts)";
    }
    return v;
  }
  // upstream::RetryPolicy's backoff: the n-th retry waits up to min(max, base * 2^(n-1)).
  EpochMs bound = retry.backoff_base.count();
  const EpochMs max = retry.backoff_max.count();
  for (int i = 1; i < job.attempts && bound < max; ++i) {
    bound *= 2;
  }
  bound = std::min(bound, max);
  EpochMs wait = bound;
  if (retry.jitter == config::Jitter::full) {
    wait = bound > 0 ? static_cast<EpochMs>(random % static_cast<std::uint64_t>(bound + 1)) : 0;
  }
  if (a.retry_after) {
    wait = std::max<EpochMs>(wait, std::chrono::milliseconds(*a.retry_after).count());
  }
  v.state = State::queued;
  v.run_at = now + wait;
  return v;
}

}  // namespace gatehouse::filters::jobs
