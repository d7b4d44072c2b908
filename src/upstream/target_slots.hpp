#pragma once
// i12-resolve: the targets of an upstream whose host names are re-resolved, as a table of slots
// fixed at start-up (Upstream::slot_count: one per address target, max_addresses per host name),
// so every per-target structure (TargetHealth, pools, Load::active, metrics shards, checks) keeps
// its index and is never reallocated while workers read it. A slot holds an address or none
// (TargetHealth::kRetired). The admin thread (Resolver) writes the table and publishes an
// immutable SlotView; a worker's Cluster notices with one acquire load of `version()` per
// acquire and copies what changed (docs/architecture.md, "Re-resolved targets").
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "io/net.hpp"

namespace gatehouse::upstream {

// What a new resolution of one host name changes in its block of slots (pure).
struct SlotChanges {
  std::vector<std::size_t> removed;                        // slots whose address went away
  std::vector<std::pair<std::size_t, std::string>> added;  // (free slot, new address)
  std::vector<std::string> overflow;                       // new addresses without a free slot
  bool empty() const { return removed.empty() && added.empty() && overflow.empty(); }
};

// `slots`: the block's addresses (empty: free); `resolved`: the name's addresses now, in the
// resolver's order (duplicates count once). An address still resolved keeps its slot (its health,
// pool and counters stay); one that went away frees its slot; a new one takes a free slot: the
// lowest that was free already, else the lowest freed by this call. Indices are within the block.
SlotChanges diff_slots(std::span<const std::string> slots, std::span<const std::string> resolved);

// What workers read: per slot, the endpoint, its address text (empty: no address) and a
// generation that changes whenever the slot's address does.
struct SlotView {
  std::vector<io::tcp::endpoint> endpoints;
  std::vector<std::string> addresses;
  std::vector<std::uint32_t> generations;
};

class TargetSlots {
 public:
  explicit TargetSlots(SlotView initial)
      : view_(std::make_shared<const SlotView>(std::move(initial))) {}

  // Bumped after each publish: a worker that saw another value refreshes its copy.
  std::uint64_t version() const { return version_.load(std::memory_order_acquire); }
  std::shared_ptr<const SlotView> view() const {
    std::lock_guard lock(mu_);
    return view_;
  }
  // Admin thread.
  void publish(SlotView next) {
    auto v = std::make_shared<const SlotView>(std::move(next));
    {
      std::lock_guard lock(mu_);
      view_ = std::move(v);
    }
    version_.fetch_add(1, std::memory_order_release);
  }

 private:
  mutable std::mutex mu_;  // taken by a worker only when the version changed
  std::shared_ptr<const SlotView> view_;
  std::atomic<std::uint64_t> version_{1};
};

}  // namespace gatehouse::upstream
