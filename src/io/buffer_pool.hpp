#pragma once
// Per-worker recycled transfer buffers: a request holds one only while a body is moving, so
// idle keep-alive connections cost no buffer memory.
#include <memory>
#include <vector>

namespace gatehouse::io {

class BufferPool {
 public:
  static constexpr std::size_t kSize = 32 * 1024;
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

}  // namespace gatehouse::io
