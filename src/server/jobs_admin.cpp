// Async jobs (issue 13) on the admin listener: the dead-letter queue and any job by id, whoever
// owns it. GET /admin/jobs?state=dead[&limit=N], GET /admin/jobs/<id>,
// POST /admin/jobs/<id>/retry, DELETE /admin/jobs/<id>.
#include <charconv>

#include "filters/jobs/policy.hpp"
#include "http/error_reply.hpp"
#include "http/json.hpp"
#include "jobs/await_store.hpp"
#include "server/gateway.hpp"
#include "server/jobs.hpp"

namespace gatehouse::server {
namespace {

namespace fj = filters::jobs;

std::string query_value(std::string_view target, std::string_view name) {
  auto q = target.find('?');
  if (q == std::string_view::npos) {
    return {};
  }
  auto rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    auto item = rest.substr(0, amp);
    if (item.starts_with(name) && item.size() > name.size() && item[name.size()] == '=') {
      return std::string(item.substr(name.size() + 1));
    }
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
  }
  return {};
}

std::string error(std::string_view code, std::string_view message) {
  return ghttp::error_body(code, message, 0, "");
}

}  // namespace

net::awaitable<void> Gateway::admin_jobs(std::string_view method, std::string_view target,
                                         unsigned& status, std::string& body) {
  if (!jobs_) {
    status = 404;
    body = error("jobs_not_configured", "This gatehouse has no jobs section.");
    co_return;
  }
  auto& store = jobs_->store();
  const auto& path = fj::settings(*gen_->cfg).path;
  std::string_view p = target.substr(0, target.find('?'));
  std::string_view rest = p.size() > 11 ? p.substr(12) : std::string_view();  // after /admin/jobs/
  if (p == "/admin/jobs") {
    if (method != "GET") {
      status = 405;
      body = error("method_not_allowed", "Use GET /admin/jobs?state=dead.");
      co_return;
    }
    auto name = query_value(target, "state");
    auto state = gjobs::State::dead;
    bool known = name.empty();
    for (auto s : {gjobs::State::queued, gjobs::State::running, gjobs::State::succeeded,
                   gjobs::State::failed, gjobs::State::dead}) {
      if (name == fj::state_text(s)) {
        state = s;
        known = true;
      }
    }
    if (!known) {
      status = 400;
      body = error("invalid_state", "state is one of queued, running, succeeded, failed, dead.");
      co_return;
    }
    std::size_t limit = 100;
    auto l = query_value(target, "limit");
    if (!l.empty()) {
      std::from_chars(l.data(), l.data() + l.size(), limit);
      limit = std::clamp<std::size_t>(limit, 1, 1000);
    }
    using Listed = std::pair<gjobs::StoreStatus, std::vector<gjobs::Job>>;
    auto listed = co_await gjobs::await_store<Listed>([&](auto cb) {
      store.list(state, limit,
                 [cb = std::move(cb)](gjobs::StoreStatus s, std::vector<gjobs::Job> j) mutable {
                   cb(Listed{s, std::move(j)});
                 });
    });
    if (listed.first != gjobs::StoreStatus::ok) {
      status = 503;
      body = error("job_store_unavailable", "The job store cannot be reached.");
      co_return;
    }
    body = "{\"state\":\"";
    body += fj::state_text(state);
    body += "\",\"jobs\":[";
    bool first = true;
    for (const auto& j : listed.second) {
      if (!first) {
        body += ',';
      }
      first = false;
      auto one = fj::status_body(j, path);
      one.pop_back();
      one += ",\"route\":";
      ghttp::append_json_string(one, j.route);
      one += ",\"request_id\":";
      ghttp::append_json_string(one, j.request_id);
      one += '}';
      body += one;
    }
    body += "]}";
    status = 200;
    co_return;
  }
  bool retry = rest.ends_with("/retry");
  std::string id(retry ? rest.substr(0, rest.size() - 6) : rest);
  if (!p.starts_with("/admin/jobs/") || !fj::valid_job_id(id)) {
    status = 404;
    body = error("job_not_found", "No such job.");
    co_return;
  }
  if (retry || method == "DELETE") {
    if (retry ? method != "POST" : false) {
      status = 405;
      body = error("method_not_allowed", "Use POST /admin/jobs/<id>/retry.");
      co_return;
    }
    auto s = co_await gjobs::await_store<gjobs::StoreStatus>([&](auto cb) {
      if (retry) {
        store.requeue(id, std::move(cb));
      } else {
        store.remove(id, std::move(cb));
      }
    });
    status = s == gjobs::StoreStatus::ok ? 200 : s == gjobs::StoreStatus::not_found ? 404 : 503;
    body = status == 200   ? std::string(retry ? R"({"status":"queued"})" : R"({"deleted":true})")
           : status == 404 ? error("job_not_found",
                                   retry ? "No dead or failed job with this id." : "No such job.")
                           : error("job_store_unavailable", "The job store cannot be reached.");
    co_return;
  }
  if (method != "GET") {
    status = 405;
    body = error("method_not_allowed", "Use GET, DELETE, or POST .../retry.");
    co_return;
  }
  using Got = std::pair<gjobs::StoreStatus, std::optional<gjobs::Job>>;
  auto got = co_await gjobs::await_store<Got>([&](auto cb) {
    store.get(id, [cb = std::move(cb)](gjobs::StoreStatus s, std::optional<gjobs::Job> j) mutable {
      cb(Got{s, std::move(j)});
    });
  });
  if (got.first == gjobs::StoreStatus::unavailable) {
    status = 503;
    body = error("job_store_unavailable", "The job store cannot be reached.");
    co_return;
  }
  if (!got.second) {
    status = 404;
    body = error("job_not_found", "No such job.");
    co_return;
  }
  const auto& j = *got.second;
  body = fj::status_body(j, path);
  body.pop_back();
  body += ",\"route\":";
  ghttp::append_json_string(body, j.route);
  body += ",\"request_id\":";
  ghttp::append_json_string(body, j.request_id);
  body += ",\"method\":";
  ghttp::append_json_string(body, j.request.method);
  body += ",\"target\":";
  ghttp::append_json_string(body, j.request.target);
  body += ",\"idempotency_key\":";
  ghttp::append_json_string(body, j.idempotency_key);
  body += '}';
  status = 200;
}

}  // namespace gatehouse::server
