// gatehouse command line: run, check, version. Everything else lives in the libraries.
#include <CLI/CLI.hpp>

#include <iostream>

#include "config/config.hpp"
#include "filters/registry.hpp"
#include "server/gateway.hpp"

namespace {

constexpr const char* kVersion = GATEHOUSE_VERSION;

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
    return gateway.run({.takeover = takeover});
  } catch (const std::exception& e) {
    std::cerr << "gatehouse: " << e.what() << "\n";
    return 1;
  }
}
