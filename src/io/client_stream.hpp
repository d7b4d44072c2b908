#pragma once
// The client side of a connection: a plain TCP socket, or TLS over it. One type with a runtime
// branch per operation (no coroutine frame, no virtual call): the plain path costs one predictable
// branch. Satisfies AsyncReadStream/AsyncWriteStream for net::async_write.
#include <boost/asio/ssl.hpp>

#include <memory>
#include <utility>

#include "io/net.hpp"

namespace gatehouse::io {

namespace ssl = net::ssl;

// An allocator Asio does not replace with its per-thread recycling cache (it does so for
// std::allocator): operations bound to it get a block of their own size.
template <class T>
struct UnpooledAllocator {
  using value_type = T;
  UnpooledAllocator() = default;
  template <class U>
  UnpooledAllocator(const UnpooledAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  // Unsized: clang 14 has no sized delete by default.
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p); }
  template <class U>
  bool operator==(const UnpooledAllocator<U>&) const noexcept {
    return true;
  }
};

class ClientStream {
 public:
  using executor_type = tcp::socket::executor_type;
  using TlsStream = ssl::stream<tcp::socket&>;

  explicit ClientStream(tcp::socket s) : socket_(std::move(s)) {}

  void start_tls(ssl::context& ctx) { tls_ = std::make_unique<TlsStream>(socket_, ctx); }
  bool tls() const { return tls_ != nullptr; }
  TlsStream& tls_stream() { return *tls_; }
  tcp::socket& socket() { return socket_; }
  executor_type get_executor() { return socket_.get_executor(); }

  // One initiation that branches when the operation starts, so that every completion token
  // (use_awaitable, deferred) sees a single operation type.
  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return net::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          if (tls_) {
            tls_->async_read_some(b, std::move(handler));
          } else {
            socket_.async_read_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  // async_read_some whose operation is allocated at its own size instead of from Asio's
  // per-thread recycling cache, which hands out the first cached block that fits (a 448-byte
  // write operation's, say): for a read that waits as long as the connection is idle.
  template <class MutableBuffers, class Token>
  auto async_read_some_unpooled(const MutableBuffers& buffers, Token&& token) {
    return net::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          this->async_read_some(b,
                                net::bind_allocator(UnpooledAllocator<void>(), std::move(handler)));
        },
        token, buffers);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return net::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          if (tls_) {
            tls_->async_write_some(b, std::move(handler));
          } else {
            socket_.async_write_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

 private:
  tcp::socket socket_;
  std::unique_ptr<TlsStream> tls_;  // declared after socket_: destroyed first
};

}  // namespace gatehouse::io
