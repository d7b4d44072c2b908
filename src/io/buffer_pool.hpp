#pragma once
// Per-worker recycled transfer buffers: a request holds one only while a body is moving, so
// idle keep-alive connections cost no buffer memory.
#include <memory>
#include <string>
#include <vector>

namespace gatehouse::io {

class BufferPool {
 public:
  // 64 KiB: a 64 KiB response body crosses in two writes (the head with the first piece the
  // upstream connection had buffered, then the rest) instead of three.
  static constexpr std::size_t kSize = 64 * 1024;
  class Lease {
   public:
    Lease(BufferPool& pool, std::unique_ptr<char[]> b) : pool_(&pool), buf_(std::move(b)) {}
    Lease(Lease&&) = default;
    ~Lease() {
      if (buf_) {
        pool_->give_back(std::move(buf_));
      }
    }
    char* data() { return buf_.get(); }
    std::size_t size() const { return kSize; }

   private:
    BufferPool* pool_;
    std::unique_ptr<char[]> buf_;
  };

  Lease take() {
    if (free_.empty()) {
      return Lease(*this, std::make_unique_for_overwrite<char[]>(kSize));
    }
    auto b = std::move(free_.back());
    free_.pop_back();
    return Lease(*this, std::move(b));
  }

 private:
  void give_back(std::unique_ptr<char[]> b) {
    if (free_.size() < 64) {
      free_.push_back(std::move(b));
    }
  }
  std::vector<std::unique_ptr<char[]>> free_;
};

// Per-worker spare strings for the heads a request builds: a connection lends its strings back
// while idle and takes grown ones when a request arrives, so idle connections hold no head memory
// and a request does not grow its heads from nothing (6 reallocations each for a 1 KiB head).
class StringPool {
 public:
  static constexpr std::size_t kMaxSpare = 128;
  static constexpr std::size_t kMaxCapacity = 16 * 1024;  // larger ones are freed

  // Keeps the capacity of `s` (if worth keeping) and leaves `s` empty, with no heap memory.
  void give_back(std::string& s) {
    if (s.capacity() > std::string().capacity() && s.capacity() <= kMaxCapacity &&
        spare_.size() < kMaxSpare) {
      s.clear();
      spare_.push_back(std::move(s));
    }
    std::string().swap(s);
  }
  // Gives `s` (empty, without heap memory) a spare string's capacity, if there is one.
  void take(std::string& s) {
    if (!spare_.empty()) {
      s.swap(spare_.back());
      spare_.pop_back();
    }
  }

 private:
  std::vector<std::string> spare_;
};

}  // namespace gatehouse::io
