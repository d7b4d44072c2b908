#pragma once
// The settings of the sections filters own (config/sections.hpp), held by Config and Route without
// config/ knowing their types: one immutable object per type, found by a slot number each type
// gets on first use. Filters wrap get/set in typed accessors next to their structs
// (filters::cors::settings(const Config&)), so nothing else names a slot.
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace gatehouse::config {

namespace detail {
std::size_t next_filter_slot();

template <class T>
std::size_t filter_slot() {
  static const std::size_t slot = next_filter_slot();
  return slot;
}
}  // namespace detail

class FilterSettings {
 public:
  // Null when never set: the accessor then answers the type's defaults.
  template <class T>
  const T* get() const {
    std::size_t slot = detail::filter_slot<T>();
    return slot < slots_.size() ? static_cast<const T*>(slots_[slot].get()) : nullptr;
  }

  // Copies of a Config share the objects, which are never changed once set.
  template <class T>
  void set(T value) {
    std::size_t slot = detail::filter_slot<T>();
    if (slot >= slots_.size()) {
      slots_.resize(slot + 1);
    }
    slots_[slot] = std::make_shared<const T>(std::move(value));
  }

 private:
  std::vector<std::shared_ptr<const void>> slots_;
};

}  // namespace gatehouse::config
