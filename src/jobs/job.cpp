#include "jobs/job.hpp"

namespace gatehouse::jobs {

const char* state_name(State s) {
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
  return "queued";
}

std::optional<State> parse_state(std::string_view name) {
  for (State s : {State::queued, State::running, State::succeeded, State::failed, State::dead}) {
    if (name == state_name(s)) {
      return s;
    }
  }
  return std::nullopt;
}

}  // namespace gatehouse::jobs
