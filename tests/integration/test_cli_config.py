"""Command line: version, check, config errors with FILE:LINE:COLUMN, interpolation, run flags."""
import os
import re
import signal
import socket
import subprocess
import textwrap

import pytest
import requests

from conftest import GATEHOUSE_BIN, HOST, VERSION, free_port, http_request, scaled, wait_until


def run_cli(*args, env=None, timeout=10):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([GATEHOUSE_BIN, *args], capture_output=True, text=True,
                          timeout=scaled(timeout), env=full_env, stdin=subprocess.DEVNULL)


def write(tmp_path, text, name="gatehouse.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def base_config(listen_port=None, admin="off", upstream="127.0.0.1:8000"):
    listen_port = listen_port or free_port()
    return f"""
environment: production
listen: 127.0.0.1:{listen_port}
admin_listen: {admin}
workers: 1
upstreams:
  app:
    targets: ["{upstream}"]
routes:
  - name: default
    match:
      path_prefix: /
    upstream: app
"""


def yaml_has_key(text, key):
    return re.search(rf"^\s*(- )?{re.escape(key)}:", text, re.M) is not None


# ------------------------------------------------------------------------------- version


def test_version():
    p = run_cli("version")
    assert p.returncode == 0, p.stderr
    # The sanitizer build of make test compiles the test hooks in, and says so.
    assert re.fullmatch(rf"gatehouse {re.escape(VERSION)}( \(test hooks\))?", p.stdout.strip()), \
        p.stdout


# --------------------------------------------------------------------------------- check


def test_check_prints_effective_yaml(tmp_path):
    port = free_port()
    cfg = write(tmp_path, base_config(port))
    p = run_cli("check", "--config", str(cfg))
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert f"127.0.0.1:{port}" in out
    # every key, defaults included
    for key in ("environment", "listen", "admin_listen", "workers", "trusted_proxies", "limits",
                "max_header_bytes", "max_body_bytes", "max_uri_bytes", "header_timeout",
                "idle_timeout", "drain_timeout", "upstreams", "targets", "connect_timeout",
                "timeout", "max_idle_per_target", "keepalive_timeout", "routes", "path_prefix",
                "log", "access", "hash_client_ip", "health", "live_path", "ready_path",
                "summary_path", "cache_ttl", "check_interval", "request_id", "trust_incoming"):
        assert yaml_has_key(out, key), f"{key} missing from check output:\n{out}"
    assert "/health/live" in out  # a default value


def test_check_with_full_example_config(tmp_path):
    cfg = write(tmp_path, """
        environment: development
        listen: 0.0.0.0:8080
        admin_listen: 127.0.0.1:9901
        workers: auto
        trusted_proxies: [10.0.0.0/8]
        limits: {max_header_bytes: 16KiB, max_body_bytes: 10MiB, max_uri_bytes: 8KiB, header_timeout: 10s, idle_timeout: 60s}
        drain_timeout: 30s
        upstreams:
          app: {targets: ["127.0.0.1:8000"], connect_timeout: 2s, timeout: 60s, max_idle_per_target: 64, keepalive_timeout: 30s}
        routes:
          - {name: generate, match: {path_prefix: /api/generate, methods: [POST], host: example.com}, upstream: app}
          - {name: default, match: {path_prefix: /}, upstream: app}
        log: {format: json, access: stdout, error: stderr, security: stderr, level: info, hash_client_ip: false}
        health: {live_path: /health/live, ready_path: /health/ready, summary_path: /health, cache_ttl: 1s, check_interval: 5s}
        request_id: {header: X-Request-ID, trust_incoming: true}
        """)
    p = run_cli("check", "--config", str(cfg))
    assert p.returncode == 0, p.stderr
    assert "/api/generate" in p.stdout and "example.com" in p.stdout


@pytest.mark.parametrize("snippet", [
    "drain_timeout: 250ms", "drain_timeout: 10s", "drain_timeout: 1m", "drain_timeout: 1h",
    "drain_timeout: 1d",
    "limits: {max_body_bytes: 512}", "limits: {max_body_bytes: 10MiB}",
    "limits: {max_body_bytes: 10MB}", "limits: {max_body_bytes: 1GiB}",
    "limits: {max_header_bytes: 16KB}", "limits: {max_header_bytes: 4096B}",
    "admin_listen: off", "admin_listen: null", "workers: auto", "workers: 3",
])
def test_check_accepts(tmp_path, snippet):
    text = base_config().replace("admin_listen: off\n", "")
    if snippet.startswith("workers"):
        text = text.replace("workers: 1\n", "")
    cfg = write(tmp_path, text + snippet + "\n")
    p = run_cli("check", "--config", str(cfg))
    assert p.returncode == 0, f"{snippet!r} rejected: {p.stderr}"


# ----------------------------------------------------------------------------- bad config


def error_line_re(path, line):
    return re.compile(rf"^{re.escape(str(path))}:{line}:\d+: \S+: \S.*$", re.M)


def assert_config_error(tmp_path, text, line, key_hint):
    cfg = write(tmp_path, text)
    lines = cfg.read_text().splitlines()
    assert key_hint in lines[line - 1], f"test bug: line {line} is {lines[line - 1]!r}"
    for cmd in ("check", "run"):
        p = run_cli(cmd, "--config", str(cfg), timeout=15)
        assert p.returncode == 1, f"{cmd}: exit {p.returncode}, stderr {p.stderr}"
        assert error_line_re(cfg, line).search(p.stderr), \
            f"{cmd}: expected '{cfg}:{line}:COL: key.path: ...' on stderr, got:\n{p.stderr}"
        assert key_hint.split(":")[0].strip() in p.stderr
    return p.stderr


def test_unknown_top_level_key(tmp_path):
    text = base_config() + "bogus_key: 1\n"
    line = text.lstrip("\n").splitlines().index("bogus_key: 1") + 1
    assert_config_error(tmp_path, text, line, "bogus_key")


def test_unknown_nested_key(tmp_path):
    text = base_config() + "limits:\n  max_header_bytez: 16KiB\n"
    line = text.lstrip("\n").splitlines().index("  max_header_bytez: 16KiB") + 1
    assert_config_error(tmp_path, text, line, "max_header_bytez")


def test_route_to_unknown_upstream(tmp_path):
    text = base_config().replace("    upstream: app", "    upstream: nope")
    line = text.lstrip("\n").splitlines().index("    upstream: nope") + 1
    assert_config_error(tmp_path, text, line, "upstream: nope")


@pytest.mark.parametrize("value", ["30", "10x", "ten seconds", "1.5.s", "10S"])
def test_bad_duration(tmp_path, value):
    text = base_config() + f"drain_timeout: {value}\n"
    line = text.lstrip("\n").splitlines().index(f"drain_timeout: {value}") + 1
    assert_config_error(tmp_path, text, line, "drain_timeout")


@pytest.mark.parametrize("value", ["10mib", "10 parsecs", "10XB", "16kib"])
def test_bad_size(tmp_path, value):
    text = base_config() + f"limits:\n  max_body_bytes: {value}\n"
    line = text.lstrip("\n").splitlines().index(f"  max_body_bytes: {value}") + 1
    assert_config_error(tmp_path, text, line, "max_body_bytes")


@pytest.mark.parametrize("snippet,key", [
    ("workers: 0", "workers"),
    ("environment: staging", "environment"),
])
def test_bad_scalar(tmp_path, snippet, key):
    text = base_config().replace("workers: 1\n", "").replace("environment: production\n", "")
    text = text + snippet + "\n"
    line = text.lstrip("\n").splitlines().index(snippet) + 1
    assert_config_error(tmp_path, text, line, key)


# -------------------------------------------------------------------------- interpolation


def test_env_interpolation(tmp_path):
    port, up_port = free_port(), free_port()
    text = """
listen: 127.0.0.1:${GH_TEST_LISTEN_PORT}
admin_listen: off
workers: 1
upstreams:
  app:
    targets: ["127.0.0.1:${GH_TEST_UP_PORT}"]
routes:
  - name: ${GH_TEST_ROUTE_NAME:-fallback-route}
    match:
      path_prefix: ${GH_TEST_PREFIX:-/default-prefix}
    upstream: app
log:
  access: ${GH_TEST_ACCESS:-/tmp/never-used.log}
"""
    cfg = write(tmp_path, text)
    env = {"GH_TEST_LISTEN_PORT": str(port), "GH_TEST_UP_PORT": str(up_port),
           "GH_TEST_PREFIX": "/from-env", "GH_TEST_ACCESS": str(tmp_path / "interp.log")}
    for unset in ("GH_TEST_ROUTE_NAME",):
        os.environ.pop(unset, None)
    p = run_cli("check", "--config", str(cfg), env=env)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert f"127.0.0.1:{port}" in out
    assert f"127.0.0.1:{up_port}" in out
    assert "fallback-route" in out          # ${VAR:-default}, VAR unset
    assert "/from-env" in out               # ${VAR:-default}, VAR set
    assert "/default-prefix" not in out
    assert str(tmp_path / "interp.log") in out
    assert "${" not in out


def test_env_interpolation_unset_variable_is_error(tmp_path):
    os.environ.pop("GH_TEST_SURELY_UNSET", None)
    text = base_config() + "drain_timeout: ${GH_TEST_SURELY_UNSET}\n"
    line = text.lstrip("\n").splitlines().index("drain_timeout: ${GH_TEST_SURELY_UNSET}") + 1
    cfg = write(tmp_path, text)
    p = run_cli("check", "--config", str(cfg))
    assert p.returncode == 1
    assert re.search(rf"^{re.escape(str(cfg))}:{line}:", p.stderr, re.M), p.stderr
    assert "GH_TEST_SURELY_UNSET" in p.stderr


def test_env_interpolation_effective_at_run(tmp_path, apps):
    up = apps.flask("interp")
    port = free_port()
    cfg = write(tmp_path, """
        listen: 127.0.0.1:${GH_TEST_LISTEN}
        admin_listen: ${GH_TEST_ADMIN:-off}
        workers: 1
        upstreams:
          app:
            targets: ["127.0.0.1:${GH_TEST_UP}"]
        routes:
          - name: default
            match:
              path_prefix: /
            upstream: app
        """)
    proc = start_run(["--config", str(cfg)], tmp_path,
                     env={"GH_TEST_UP": str(up.port), "GH_TEST_LISTEN": str(port)})
    try:
        assert wait_live(proc, port), read(tmp_path / "run.stderr")
        r = requests.get(f"http://{HOST}:{port}/echo", timeout=scaled(10))
        assert r.status_code == 200 and r.json()["server"] == "interp"
    finally:
        assert stop(proc) == 0


# -------------------------------------------------------------------------------- run flags


def read(path):
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def start_run(args, tmp_path, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = open(tmp_path / "run.stdout", "wb")
    err = open(tmp_path / "run.stderr", "wb")
    proc = subprocess.Popen([GATEHOUSE_BIN, "run", *args], stdout=out, stderr=err,
                            stdin=subprocess.DEVNULL, env=full_env)
    out.close()
    err.close()
    return proc


def wait_live(proc, port):
    def live():
        if proc.poll() is not None:
            return "dead"
        try:
            return http_request(port, "GET", "/health/live", timeout=1)[0] == 200
        except OSError:
            return False
    return wait_until(live, scaled(10), 0.05) is True


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=scaled(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def test_run_with_upstream_flag(tmp_path, apps):
    up = apps.flask("cli")
    port, admin = free_port(), free_port()
    proc = start_run(["--upstream", f"http://127.0.0.1:{up.port}", "--listen",
                      f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"], tmp_path)
    try:
        assert wait_live(proc, port), read(tmp_path / "run.stderr")
        r = requests.get(f"http://{HOST}:{port}/echo/cli?z=1", timeout=scaled(10))
        assert r.status_code == 200
        assert r.json()["server"] == "cli" and r.json()["path"] == "/echo/cli"
        assert http_request(admin, "GET", "/health/live")[0] == 200
        # access log goes to stdout by default
        assert wait_until(lambda: "/echo/cli?z=1" in read(tmp_path / "run.stdout"), scaled(5))
    finally:
        assert stop(proc) == 0


def test_run_bind_failure_exits_1(tmp_path):
    holder = socket.socket()
    holder.bind((HOST, 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        cfg = write(tmp_path, base_config(port).replace("workers: 1", "workers: 2"))
        p = run_cli("run", "--config", str(cfg), timeout=15)
        assert p.returncode == 1
        assert p.stderr.strip(), "bind failure must be reported on stderr"
    finally:
        holder.close()


def test_run_missing_config_file_exits_1(tmp_path):
    p = run_cli("run", "--config", str(tmp_path / "does-not-exist.yaml"))
    assert p.returncode == 1
    assert p.stderr.strip()


