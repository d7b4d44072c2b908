#pragma once
// Coarse per-connection deadlines swept by one timer per worker (cf. nginx/HAProxy timer wheels):
// arming a deadline is a store, not a timer-queue operation, so the hot path pays nothing for
// timeouts. The worker's sweeper cancels the socket of every expired deadline; the coroutine that
// owns it sees `expired` and treats the aborted operation as a timeout.
#include <boost/intrusive/list.hpp>

#include "io/net.hpp"

namespace gatehouse::io {

using AutoUnlinkHook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

class Deadline : public AutoUnlinkHook {
 public:
  explicit Deadline(tcp::socket& socket) : socket_(&socket) {}
  void arm(Clock::duration d) {
    at_ = Clock::now() + d;
    expired_ = false;
  }
  void disarm() { at_ = Clock::time_point::max(); }
  bool expired() const { return expired_; }

  // Called by the sweeper.
  void check(Clock::time_point now) {
    if (at_ <= now) {
      expired_ = true;
      error_code ec;
      socket_->cancel(ec);
    }
  }

 private:
  tcp::socket* socket_;
  Clock::time_point at_ = Clock::time_point::max();
  bool expired_ = false;
};

using DeadlineList = boost::intrusive::list<Deadline, boost::intrusive::constant_time_size<false>>;

}  // namespace gatehouse::io
