// gatehouse command line: run, check, reload, version. Everything else lives in the libraries.
#include <CLI/CLI.hpp>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <iostream>

#include "config/config.hpp"
#include "filters/registry.hpp"
#include "server/gateway.hpp"

namespace {

constexpr const char* kVersion = GATEHOUSE_VERSION;

// `gatehouse reload --admin ADDR`: POST /admin/reload to a running gatehouse's admin listener,
// print its JSON answer, exit 0 only when the new configuration is in place.
int reload_command(const std::string& admin) {
  namespace net = boost::asio;
  namespace http = boost::beast::http;
  auto ep = gatehouse::config::parse_endpoint(admin);
  if (!ep) {
    std::cerr << "gatehouse reload: --admin: invalid address \"" << admin
              << "\" (expected HOST:PORT, e.g. 127.0.0.1:9901)\n";
    return 2;
  }
  try {
    net::io_context ioc;
    net::ip::tcp::resolver resolver(ioc);
    boost::beast::tcp_stream stream(ioc);
    stream.expires_after(std::chrono::seconds(30));
    stream.connect(resolver.resolve(ep->host, std::to_string(ep->port)));
    http::request<http::empty_body> req(http::verb::post, "/admin/reload", 11);
    req.set(http::field::host, ep->to_string());
    req.set(http::field::connection, "close");
    req.prepare_payload();
    http::write(stream, req);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    std::cout << res.body() << "\n";
    if (res.result() != http::status::ok) {
      std::cerr << "gatehouse reload: failed (HTTP " << res.result_int() << ")\n";
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "gatehouse reload: " << admin << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gatehouse: a fast reverse proxy that puts a web application into production"};
  app.require_subcommand(1);

  std::string config_path, upstream_url, listen, admin_listen;
  auto* run = app.add_subcommand("run", "Serve traffic until SIGTERM/SIGINT, then drain");
  auto* cfg_opt = run->add_option("-c,--config", config_path, "YAML configuration file");
  auto* up_opt = run->add_option("--upstream", upstream_url,
                                 "Run with production defaults in front of this http:// URL");
  up_opt->excludes(cfg_opt);
  run->add_option("--listen", listen, "Listen address with --upstream (default 0.0.0.0:8080)")
      ->needs(up_opt);
  run->add_option("--admin-listen", admin_listen,
                  "Admin listen address with --upstream (default 127.0.0.1:9901, \"off\" disables)")
      ->needs(up_opt);

  bool takeover = false;
  run->add_flag("--takeover", takeover,
                "Share the listen addresses with the gatehouse running there, then SIGTERM it: a "
                "zero-downtime handover (without it, an address in use is an error)");

  auto* check = app.add_subcommand("check", "Validate a configuration and print it in full");
  check->add_option("-c,--config", config_path, "YAML configuration file")->required();

  std::string admin_address;
  auto* reload = app.add_subcommand(
      "reload", "Ask a running gatehouse to reload its configuration file (POST /admin/reload)");
  reload->add_option("--admin", admin_address, "Its admin listener (admin_listen), HOST:PORT")
      ->required();

  app.add_subcommand("version", "Print the version");

  CLI11_PARSE(app, argc, argv);

  if (app.got_subcommand("version")) {
#ifdef GATEHOUSE_TEST_HOOKS
    std::cout << "gatehouse " << kVersion << " (test hooks)\n";
#else
    std::cout << "gatehouse " << kVersion << "\n";
#endif
    return 0;
  }

  if (reload->parsed()) {
    return reload_command(admin_address);
  }

  gatehouse::config::Config cfg;
  try {
    if (run->parsed() && !upstream_url.empty()) {
      cfg = gatehouse::config::config_for_upstream(upstream_url, listen);
      if (!admin_listen.empty()) {
        if (admin_listen == "off") {
          cfg.admin_listen.reset();
        } else if (auto ep = gatehouse::config::parse_endpoint(admin_listen)) {
          cfg.admin_listen = *ep;
        } else {
          throw gatehouse::config::ConfigError("--admin-listen: invalid address \"" + admin_listen +
                                               "\"");
        }
      }
    } else if (!config_path.empty()) {
      cfg = gatehouse::config::load_config_file(config_path, gatehouse::filters::config_sections());
    } else {
      std::cerr << "gatehouse run: give --config FILE or --upstream URL\n";
      return 2;
    }
  } catch (const gatehouse::config::ConfigError& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }

  // Settings accepted but ignored (issue 15): on stderr, so check's stdout stays loadable YAML.
  for (const auto& note : cfg.notes) {
    std::cerr << "note: " << note << "\n";
  }
  if (check->parsed()) {
    std::cout << gatehouse::config::to_yaml(cfg, gatehouse::filters::config_sections());
    return 0;
  }

  try {
    gatehouse::server::Gateway gateway(
        std::make_shared<const gatehouse::config::Config>(std::move(cfg)), kVersion);
    return gateway.run({.takeover = takeover, .config_path = config_path});
  } catch (const std::exception& e) {
    std::cerr << "gatehouse: " << e.what() << "\n";
    return 1;
  }
}
