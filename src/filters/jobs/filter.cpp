#include "filters/jobs/filter.hpp"

#include <algorithm>
#include <chrono>
#include <optional>
#include <span>
#include <utility>

#include "filters/jobs/config.hpp"
#include "filters/jobs/policy.hpp"
#include "http/fields.hpp"
#include "jobs/await_store.hpp"

namespace gatehouse::filters::jobs {
namespace {

namespace gj = ::gatehouse::jobs;

// The response's lines and body, kept alive by LocalReply::stored_owner.
struct Kept {
  std::string lines;
  gj::StoredResponse response;
};

pipeline::Next not_found(pipeline::Context& ctx) {
  return pipeline::json_reply(
      ctx, 404,
      http::error_body("job_not_found", "No such job (or it belongs to another credential).", 0,
                       ctx.request_id));
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void stored_reply(pipeline::Context& ctx, const gj::StoredResponse& r, std::string extra) {
  auto kept = std::make_shared<Kept>();
  kept->response = r;
  for (const auto& [name, value] : kept->response.headers) {
    if (http::iequals(name, "Date")) {
      continue;  // gatehouse writes the current one
    }
    kept->lines += name;
    kept->lines += ": ";
    kept->lines += value;
    kept->lines += "\r\n";
  }
  auto& reply = ctx.reply;
  reply.status = r.status;
  reply.stored_lines = kept->lines;
  reply.stored_body = kept->response.body;
  reply.stored_owner = std::move(kept);
  reply.headers = std::move(extra);
  reply.head_only = ctx.head_request;
  reply.close = reply.close || ctx.body_pending;
}

std::string owner_of(const pipeline::Context& ctx, const observability::ClientIpHasher& hasher) {
  auto value = ctx.header(settings(ctx.cfg).owner_header);
  return value.empty() ? std::string() : hasher(value);
}

pipeline::Next JobsFilter::decode_headers(pipeline::Context& ctx) {
  if (store_ == nullptr) {
    return pipeline::Next::Continue;
  }
  const auto& path = settings(ctx.cfg).path;
  std::string_view p = ctx.path;
  if (p.size() <= path.size() + 1 || !p.starts_with(path) || p[path.size()] != '/') {
    return pipeline::Next::Continue;
  }
  auto rest = p.substr(path.size() + 1);
  result_ = rest.ends_with("/result");
  if (result_) {
    rest.remove_suffix(7);
  }
  const auto verb = ctx.request->method();
  if (verb != pipeline::http::verb::get && verb != pipeline::http::verb::head) {
    ctx.reply.headers = "Allow: GET, HEAD\r\n";
    return pipeline::error_reply(ctx, 405, ctx.body_pending);
  }
  owner_ = owner_of(ctx, *hasher_);
  const auto& rate = settings(ctx.cfg).poll_rate;
  if (rate.count != 0 && poll_limits_ != nullptr) {
    // Per client address and credential: one client polling in a loop is slowed, and neither
    // other clients of the same credential nor other credentials behind one address pay for it.
    std::string key = "jobs-poll\n" + ctx.client_ip + "\n" + owner_;
    ratelimit::Check check{key,
                           ratelimit::Algorithm::sliding_window,
                           ratelimit::Params{rate.count, rate.period_ns(), 0},
                           {}};
    const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::steady_clock::now().time_since_epoch())
                         .count();
    if (!poll_limits_->decide(std::span(&check, 1), now)) {
      constexpr ratelimit::Nanos kSecond = 1'000'000'000;
      const std::int64_t after =
          std::max<std::int64_t>(1, (check.outcome.retry_after + kSecond - 1) / kSecond);
      return pipeline::retry_later_reply(
          ctx, 429, "job_poll_rate_limited",
          "Job status requests are limited to " + rate.message() + "; poll after Retry-After.",
          after, ctx.body_pending);
    }
  }
  if (!valid_job_id(rest)) {
    return not_found(ctx);
  }
  id_ = rest;
  return pipeline::Next::Suspend;
}

pipeline::net::awaitable<pipeline::Next> JobsFilter::resume(pipeline::Context& ctx) {
  using Got = std::pair<gj::StoreStatus, std::optional<gj::Job>>;
  auto got = co_await gj::await_store<Got>([this](auto cb) {
    store_->get(id_, [cb = std::move(cb)](gj::StoreStatus s, std::optional<gj::Job> j) mutable {
      cb(Got{s, std::move(j)});
    });
  });
  if (got.first == gj::StoreStatus::unavailable) {
    co_return pipeline::retry_later_reply(ctx, 503, "job_store_unavailable",
                                          "The job store cannot be reached; try again shortly.", 5,
                                          ctx.body_pending);
  }
  // Another credential's job is answered as one that does not exist: ids are not confirmed.
  if (got.first != gj::StoreStatus::ok || !got.second || got.second->owner != owner_) {
    co_return not_found(ctx);
  }
  const gj::Job& job = *got.second;
  const auto& path = settings(ctx.cfg).path;
  const bool done = gj::final_state(job.state);
  if (!result_) {
    pipeline::json_reply(ctx, 200, status_body(job, path));
    if (!done) {
      ctx.reply.headers =
          "Retry-After: " + std::to_string(poll_after_seconds(job, now_ms())) + "\r\n";
    }
    co_return pipeline::Next::Reply;
  }
  if (!done || !job.response) {
    std::string body =
        done ? http::error_body("job_has_no_result",
                                "The job ended without an upstream response; see "
                                "its status for the error.",
                                0, ctx.request_id)
             : http::error_body("job_not_finished", "The job has no result yet; poll its status.",
                                poll_after_seconds(job, now_ms()), ctx.request_id);
    pipeline::json_reply(ctx, done ? 404 : 409, std::move(body));
    if (!done) {
      ctx.reply.headers =
          "Retry-After: " + std::to_string(poll_after_seconds(job, now_ms())) + "\r\n";
    }
    co_return pipeline::Next::Reply;
  }
  stored_reply(ctx, *job.response);
  co_return pipeline::Next::Reply;
}

}  // namespace gatehouse::filters::jobs
