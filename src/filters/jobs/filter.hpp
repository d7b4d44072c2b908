#pragma once
// The jobs status endpoints in the chain (issue 13): GET jobs.path/<id> and
// jobs.path/<id>/result, answered after the top-level access rules and before routing. Only the
// credential that created a job reads it (others get 404, as for an id that does not exist: ids
// are never confirmed). Without a `jobs` section the store pointer is null and decode_headers
// returns at its first test.
#include <memory>
#include <string>

#include "jobs/job.hpp"
#include "jobs/store.hpp"
#include "observability/logging.hpp"
#include "pipeline/reply.hpp"
#include "ratelimit/memory_store.hpp"

namespace gatehouse::filters::jobs {

// ctx.reply becomes the stored response `r` as it was (status, lines, body), with gatehouse's
// own Date; `extra` lines (Preference-Applied) are added after it.
void stored_reply(pipeline::Context& ctx, const gatehouse::jobs::StoredResponse& r,
                  std::string extra = {});

// The owner hash of the request's credential (`jobs.owner_header`); empty without one.
std::string owner_of(const pipeline::Context& ctx, const observability::ClientIpHasher& hasher);

class JobsFilter {
 public:
  template <class Services>
  explicit JobsFilter(Services& s)
      : store_(s.job_store), hasher_(s.job_owner_hasher), poll_limits_(s.job_poll_limits) {}

  pipeline::Next decode_headers(pipeline::Context& ctx);
  pipeline::net::awaitable<pipeline::Next> resume(pipeline::Context& ctx);

 private:
  gatehouse::jobs::Store* store_;
  const observability::ClientIpHasher* hasher_;
  ratelimit::MemoryStore* poll_limits_;
  std::string id_;
  std::string owner_;    // the request's owner hash (owner_of)
  bool result_ = false;  // GET .../result
};

}  // namespace gatehouse::filters::jobs
