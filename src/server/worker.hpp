#pragma once
// One worker thread: io_context, SO_REUSEPORT listener, client sessions, upstream clusters and the
// deadline sweeper. Everything here is touched by its own thread only, except begin_drain(),
// stop_listening() and force_stop(), which post to it.
#include <boost/intrusive/list.hpp>

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/buffer_pool.hpp"
#include "io/client_stream.hpp"
#include "io/deadline.hpp"
#include "observability/access_batch.hpp"
#include "server/filter_chain.hpp"
#include "server/gateway.hpp"
#include "upstream/cluster.hpp"

namespace gatehouse::server {

class JobsRunner;  // issue 13 (server/jobs.hpp)

// The I/O primitives (src/io) are this layer's vocabulary.
using namespace ::gatehouse::io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;
namespace beast = io::beast;
namespace http = io::http;  // Beast's; ours is ghttp
namespace ghttp = io::ghttp;

// A client connection, registered with its worker so drain can close idle ones.
struct ClientConn : public AutoUnlinkHook {
  explicit ClientConn(tcp::socket s) : stream(std::move(s)), deadline(stream.socket()) {}
  tcp::socket& socket() { return stream.socket(); }
  ClientStream stream;  // plain or TLS
  Deadline deadline;
  beast::flat_buffer buffer;
  std::string peer_ip;
  bool idle = false;
  bool first_request = true;
  std::string scratch;        // reused for response heads
  std::string upstream_head;  // reused for upstream request heads
  // The wait for the next request reads into this small inline buffer instead of async_wait:
  // Asio re-arms epoll (epoll_ctl) for every async_wait, while a pending read costs nothing and
  // keeps an idle connection free of heap buffers. Most request heads fit.
  std::array<char, 256> idle_bytes;
};
using ClientList = boost::intrusive::list<ClientConn, boost::intrusive::constant_time_size<false>>;

// One upstream's cluster on one worker (pool, balancer, queue, retry budget), shared by the
// generations whose definition of the upstream is the same, so a reload that leaves the upstream
// alone keeps its pooled connections; a generation that changes it gets a new one. Owned by the
// Worker (destroyed before its io_context, like every socket), counted by the generations using
// it, and freed with the last of them.
struct WorkerCluster {
  WorkerCluster() = default;
  WorkerCluster(const WorkerCluster&) = delete;
  WorkerCluster& operator=(const WorkerCluster&) = delete;
  ~WorkerCluster() {
    if (cluster) {
      cluster->close_all();  // its idle connections leave the pool gauge
    }
  }
  std::shared_ptr<const config::Config> cfg;  // holds the config::Upstream the cluster reads
  std::string definition;                     // Generation::upstream_definitions
  std::unique_ptr<upstream::Cluster> cluster;
  std::size_t users = 0;  // WorkerGenerations using it
};

// A configuration generation as one worker serves it: the filters' services point into it.
// Touched by the worker's thread only, so pinning it for a request is a plain increment.
struct WorkerGeneration {
  WorkerGeneration(std::shared_ptr<const Generation> g, FilterServices s)
      : gen(std::move(g)), services(s) {}
  const config::Config& cfg() const { return *gen->cfg; }

  std::shared_ptr<const Generation> gen;
  FilterServices services;
  std::size_t pins = 0;  // requests (and cache refreshes) being served on it
  // Answers services.cache_hooks.strips for a cache refresh's response; declared after
  // `services`, which it points into.
  std::unique_ptr<FilterChain> strip_chain;
  std::vector<WorkerCluster*> clusters;  // index = upstream index (owned by Worker::clusters)
};

class Worker {
 public:
  Worker(Gateway& gw, unsigned index);
  ~Worker();

  // Opens the listener on `endpoint`; returns the bound endpoint (port 0 resolved).
  tcp::endpoint listen(const tcp::endpoint& endpoint, bool tls = false);
  void run();
  // Drain, step 1 (thread-safe): responses say Connection: close and idle keep-alive connections
  // close; the listeners keep accepting (drain_delay).
  void begin_drain();
  // Drain, step 2 (thread-safe): stop taking handshakes, serve what is queued, close the listeners.
  void stop_listening();
  void force_stop();  // thread-safe
  // Reload (thread-safe): requests that start from now on use `g`; those in flight finish on the
  // generation they started with, which is freed when the last of them ends.
  void install(std::shared_ptr<const Generation> g);
  // The current generation's configuration (reloadable keys; what the worker's thread reads
  // outside a request, e.g. idle timeouts). A request reads its own: Context::cfg.
  const config::Config& cfg() const { return gen->cfg(); }
  // The cluster of upstream `u` in the generation whose configuration is `cfg` (a request's
  // Context::cfg): the current one, or an older one for a request that started before a reload.
  upstream::Cluster& cluster(const config::Config& cfg, std::size_t u) {
    const WorkerGeneration* g = gen;
    if (&g->cfg() != &cfg) [[unlikely]] {
      for (const auto& o : generations) {
        if (&o->cfg() == &cfg) {
          g = o.get();
          break;
        }
      }
    }
    return *g->clusters[u]->cluster;
  }
  // A request ends on `g` (serve_one pins it: GenerationPin).
  void unpin(WorkerGeneration& g) {
    if (--g.pins == 0 && &g != gen && !destroying) {
      retire();
    }
  }

  Gateway& gw;
  const unsigned index;
  // Declared before ioc, so they outlive it: coroutine frames still pending when ioc is destroyed
  // unlink from the lists, and a request's frame runs its filters' on_complete (access log,
  // in-flight slots) as it is destroyed.
  bool draining = false;
  // Set by ~Worker: frames destroyed with ioc unpin their generations after `clusters` is gone,
  // so nothing may be retired (and no cluster released) from then on.
  bool destroying = false;
  // Set while an exception unwinds a request (session.cpp), read by the session's completion
  // handler right after: the request id for the "internal error" line.
  std::string failed_request_id;
  observability::AccessBatch access_batch;  // flushed by the sweep
  // What this worker's filters are built from (one FilterChain per request): the newest
  // generation, and older ones while requests (or cache refreshes) still run on them (current
  // last).
  WorkerGeneration* gen = nullptr;
  std::vector<std::unique_ptr<WorkerGeneration>> generations;
  DeadlineList deadlines;
  ClientList clients;
  BufferPool buffers;
  StringPool heads;  // ClientConn::scratch and upstream_head while the connection is idle
  net::io_context ioc{1};
  // With a Redis store; destroyed before ioc.
  std::unique_ptr<filters::rate_limit::store::RedisStoreClient> store_client;
  observability::WorkerMetrics& metrics;
  // Every live cluster: the current generation's, and older ones' while requests run on them.
  std::vector<std::unique_ptr<WorkerCluster>> clusters;
  // issue 13: claims and runs jobs through `clusters`; null without a `jobs` section.
  std::unique_ptr<JobsRunner> jobs;

 private:
  net::awaitable<void> accept_loop(tcp::acceptor& acceptor, bool tls);
  net::awaitable<void> close_listeners();
  net::awaitable<void> sweep_loop();
  void start_session(tcp::socket socket, bool tls);
  void install_now(std::shared_ptr<const Generation> g);
  void retire();  // frees the old generations no request uses any more

  tcp::acceptor acceptor_;
  tcp::acceptor tls_acceptor_;  // open when listen_tls is configured
  bool listening_ = true;       // until close_listeners() is done
  bool closing_ = false;        // close_listeners() started
  std::size_t sessions_ = 0;    // spawned and not yet completed
};

// The client side of a connection: reads requests until close, timeout or drain.
net::awaitable<void> run_session(Worker& w, tcp::socket socket, bool tls);

// Holds a generation while something runs on it (a request, a job attempt, a cache refresh):
// its clusters and everything its filters point into stay until the last holder lets go.
struct GenerationPin {
  GenerationPin(Worker& worker, WorkerGeneration& generation) : w(worker), g(generation) {
    ++g.pins;
  }
  GenerationPin(const GenerationPin&) = delete;
  GenerationPin& operator=(const GenerationPin&) = delete;
  ~GenerationPin() { w.unpin(g); }
  Worker& w;
  WorkerGeneration& g;
};

}  // namespace gatehouse::server
