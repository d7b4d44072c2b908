#include "upstream/load_balancer.hpp"

namespace gatehouse::upstream {

std::optional<Candidate> RoundRobin::next(Walk& walk, TargetHealths targets) {
  const std::size_t n = targets.size();
  if (!walk.started) {
    walk.started = true;
    walk.start = cursor_ % n;
  }
  // Pass 0: the reachable targets from the cursor on; pass 1: the unreachable ones that are not
  // out (unhealthy or ejected targets get no request). Health is read as each target comes up: a
  // check may change it while an earlier candidate was connecting.
  for (; walk.pass < 2; ++walk.pass, walk.step = 0) {
    while (walk.step < n) {
      std::size_t t = (walk.start + walk.step++) % n;
      bool reachable = targets[t]->reachable();
      if ((walk.pass == 0) != reachable || (!reachable && targets[t]->out())) {
        continue;
      }
      cursor_ = t + 1;  // the next request starts after this target
      return Candidate{t, reachable};
    }
  }
  return std::nullopt;
}

std::unique_ptr<LoadBalancer> make_round_robin() {
  return std::make_unique<RoundRobin>();
}

}  // namespace gatehouse::upstream
