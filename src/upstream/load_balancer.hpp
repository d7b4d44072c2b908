#pragma once
// Which target a request's connection goes to. The cluster asks for candidates one at a time
// within one acquire: a failed connect moves on to the next candidate (nothing was sent yet), until
// the balancer has none left. Balancers see targets through their shared health state (fed by the
// admin thread's active checks and by the workers' connect outcomes); one instance per cluster,
// used by one worker thread only.
//
// Issue 12 plugs in here: least_request and hash are other LoadBalancer implementations; a hash
// key or a target to avoid on a retry go into Walk; an ejected target is one whose health says so.
#include <cstddef>
#include <memory>
#include <optional>
#include <span>

#include "observability/health.hpp"

namespace gatehouse::upstream {

struct Candidate {
  std::size_t target = 0;
  bool reachable = true;  // its health said reachable when it was picked
};

// One acquire's progress through the candidates. Balancer-private fields; start zeroed.
struct Walk {
  bool started = false;
  std::size_t start = 0;
  std::size_t step = 0;
  int pass = 0;
};

using TargetHealths = std::span<observability::TargetHealth* const>;

class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;
  // The next target to try in this walk, or nullopt when every candidate was offered.
  virtual std::optional<Candidate> next(Walk& walk, TargetHealths targets) = 0;
};

// Round robin over the targets marked reachable, starting after the last target chosen by any
// request; when all of those fail or none is marked reachable, the unreachable ones in the same
// order, so a target is never skipped by a stale connect-failure mark alone. Targets that are out
// (unhealthy or ejected: TargetHealth::out()) are never offered.
class RoundRobin final : public LoadBalancer {
 public:
  std::optional<Candidate> next(Walk& walk, TargetHealths targets) override;

 private:
  std::size_t cursor_ = 0;  // the target after the last one chosen
};

std::unique_ptr<LoadBalancer> make_round_robin();

}  // namespace gatehouse::upstream
