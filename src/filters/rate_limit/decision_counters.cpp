#include "filters/rate_limit/decision_counters.hpp"

#include <algorithm>
#include <stdexcept>

namespace gatehouse::filters::rate_limit {

DecisionCounters::DecisionCounters(unsigned workers) {
  for (unsigned i = 0; i < std::max(workers, 1u); ++i) {
    cells_.push_back(std::make_unique<std::deque<Cells>>());
  }
}

std::size_t DecisionCounters::find_or_add(const std::string& route, const std::string& definition) {
  std::string name = route;
  name += '\n';
  name += definition;
  std::lock_guard lock(mu_);
  if (auto it = index_.find(name); it != index_.end()) {
    return it->second;
  }
  if (route_of_.size() >= kMaxCounters) {
    throw std::length_error(
        "rate_limit: this process keeps the decision counters of every rule it has run (" +
        std::to_string(kMaxCounters) + " so far); restart to add new ones");
  }
  const std::size_t counter = route_of_.size();
  route_of_.push_back(route);
  index_.emplace(std::move(name), counter);
  for (auto& w : cells_) {
    w->emplace_back();
  }
  return counter;
}

DecisionCounters::Cells* DecisionCounters::cells(unsigned worker, std::size_t counter) {
  std::lock_guard lock(mu_);
  return &(*cells_[std::min<std::size_t>(worker, cells_.size() - 1)])[counter];
}

std::map<std::string, std::int64_t> DecisionCounters::rejected_by_route() const {
  std::lock_guard lock(mu_);
  std::map<std::string, std::int64_t> out;
  for (std::size_t c = 0; c < route_of_.size(); ++c) {
    std::int64_t total = 0;
    for (const auto& w : cells_) {
      total += (*w)[c][1].get();
    }
    out[route_of_[c]] += total;
  }
  return out;
}

std::int64_t DecisionCounters::total(std::size_t counter, std::size_t result) const {
  std::lock_guard lock(mu_);
  std::int64_t out = 0;
  for (const auto& w : cells_) {
    out += (*w)[counter][result].get();
  }
  return out;
}

std::size_t DecisionCounters::size() const {
  std::lock_guard lock(mu_);
  return route_of_.size();
}

}  // namespace gatehouse::filters::rate_limit
