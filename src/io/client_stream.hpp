#pragma once
// The client side of a connection: a plain TCP socket, or TLS over it. One type with a runtime
// branch per operation (no coroutine frame, no virtual call): both branches initiate with the same
// completion token and signature, so they return the same awaitable type, and the plain path costs
// one predictable branch. Satisfies AsyncReadStream/AsyncWriteStream for net::async_write.
#include <boost/asio/ssl.hpp>

#include <memory>
#include <utility>

#include "io/net.hpp"

namespace gatehouse::io {

namespace ssl = net::ssl;

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

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    if (tls_) {
      return tls_->async_read_some(buffers, std::forward<Token>(token));
    }
    return socket_.async_read_some(buffers, std::forward<Token>(token));
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    if (tls_) {
      return tls_->async_write_some(buffers, std::forward<Token>(token));
    }
    return socket_.async_write_some(buffers, std::forward<Token>(token));
  }

 private:
  tcp::socket socket_;
  std::unique_ptr<TlsStream> tls_;  // declared after socket_: destroyed first
};

}  // namespace gatehouse::io
