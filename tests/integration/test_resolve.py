"""upstreams.<name>.resolve_interval (issue 12): host-name targets re-resolved while gatehouse runs,
every address a target, addresses that come and go change the targets without a restart and
without failing requests in flight.

How names are made to change without editing the machine's /etc/hosts: gatehouse runs in its own
user and mount namespaces (`unshare -rm`, no privilege needed) with a file of the test's
bind-mounted over /etc/hosts; glibc reads /etc/hosts at every lookup (no nscd here), so rewriting
that file (in place: the bind mount holds the inode) is a DNS change seen by gatehouse alone. The
real binary and the real resolver path (Asio -> getaddrinfo) are tested, and nothing test-only is
compiled in. Where unprivileged namespaces are not allowed, the tests skip.

Upstreams: real uvicorn servers (apps/balance_app.py) on the same port at 127.0.0.1, 127.0.0.2,
127.0.0.3 and ::1. Load is bounded: a few client threads for a few seconds."""
import http.client
import json
import os
import socket
import subprocess
import threading
import time

import pytest

import conftest
from conftest import APPS, PYTHON, AppProcess, free_port, http_request, scaled, wait_until

NAME = "app.resolve.test"


def _namespaces_work():
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False




class HostsFile:
    """The /etc/hosts gatehouse sees. Rewritten in place so the bind mount keeps showing it, and
    without a moment of emptiness (new bytes over the old, then truncate)."""

    def __init__(self, path):
        self.path = path
        path.write_text("")

    def set(self, mapping):
        text = "".join(f"{ip} {name}\n" for name, ips in mapping.items() for ip in ips)
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
            os.ftruncate(fd, len(text))
        finally:
            os.close(fd)


@pytest.fixture
def hosts(tmp_path, monkeypatch):
    """A HostsFile, and gatehouse started through a wrapper that mounts it over /etc/hosts."""
    if not _namespaces_work():
        pytest.skip("needs unprivileged user namespaces (unshare -rm)")
    h = HostsFile(tmp_path / "hosts")
    wrapper = tmp_path / "gatehouse-ns"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec unshare -rm sh -c 'mount --bind \"$0\" /etc/hosts && exec \"$@\"' "
        f"'{h.path}' '{conftest.GATEHOUSE_BIN}' \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(conftest, "GATEHOUSE_BIN", str(wrapper))
    return h


class BoundApp(AppProcess):
    """apps/balance_app.py (uvicorn) on HOST:PORT, HOST any loopback address."""

    def __init__(self, workdir, host, port, name):
        super().__init__(workdir, APPS / "balance_app.py", ["asgi"], [name, 0, host],
                         f"resolve-{name}", port=port)
        self.host = host
        self.name = name

    def _accepts(self):
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def start(self):
        self.log_path = self.workdir / f"{self.label}.log"
        self._log = open(self.log_path, "ab")
        argv = [PYTHON, str(self.script), "asgi", str(self.port), self.name, "0", self.host]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=str(self.workdir))
        if not wait_until(lambda: self.proc.poll() is not None or self._accepts(), scaled(10)) \
                or self.proc.poll() is not None:
            raise RuntimeError(f"{self.label} did not start:\n{self._tail()}")
        return self

    def served(self):
        """Requests this server answered (its own /stats)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=scaled(5))
        try:
            conn.request("GET", "/stats")
            return json.loads(conn.getresponse().read())["count"]
        finally:
            conn.close()


def start_apps(apps, hosts_and_names):
    """One server per (host, name), all on one port free on every one of those addresses."""
    for _ in range(5):
        port = free_port()
        started = []
        try:
            for host, name in hosts_and_names:
                app = BoundApp(apps.base_dir, host, port, name)
                apps.apps.append(app)
                started.append(app.start())
            return port, started
        except RuntimeError:
            for a in started:
                a.stop()
    raise RuntimeError("no port free on every address")


def resolving(gatehouses, name, port, **upstream):
    cfg = {"targets": [f"{name}:{port}"], "resolve_interval": "1s", **upstream}
    return gatehouses(upstreams={"app": cfg})


def who(gh):
    status, _, body = http_request(gh.port, "GET", "/who", timeout=10)
    return status, (json.loads(body)["server"] if status == 200 else body)


def resolve_state(gh):
    """/health/detailed's resolve block: when each name was last resolved, and how."""
    try:
        _, _, body = http_request(gh.admin_port, "GET", "/health/detailed", timeout=5)
        state = json.loads(body)["components"]["upstream:app"].get("resolve")
        return f"now_unix_ms={int(time.time() * 1000)} resolve={state}"
    except Exception as e:  # noqa: BLE001 (diagnostics only)
        return repr(e)


def detailed_addresses(gh):
    _, _, body = http_request(gh.admin_port, "GET", "/health/detailed", timeout=5)
    return {t["address"] for t in json.loads(body)["components"]["upstream:app"]["targets"]}


def wait_targets(gh, addresses):
    """Until /health/detailed lists exactly `addresses` (its cache_ttl is 1 s). The error log is
    no witness while load runs: its file is flushed when the log queue runs empty."""
    ok = wait_until(lambda: detailed_addresses(gh) == set(addresses), scaled(10), 0.1)
    assert ok, f"targets {detailed_addresses(gh)} != {set(addresses)}; {resolve_state(gh)}"


def label(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Load:
    """`threads` clients sending GET /who back to back until stop(); every answer kept."""

    def __init__(self, gh, threads=4):
        self.gh = gh
        self.results = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        while not self.stopping.is_set():
            try:
                r = who(self.gh)
            except Exception as e:  # noqa: BLE001 (a refused or reset connection is a failure too)
                r = (0, repr(e))
            with self.lock:
                self.results.append(r)
            time.sleep(0.005)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=scaled(20))

    def count(self):
        with self.lock:
            return len(self.results)

    def failures(self):
        with self.lock:
            return [r for r in self.results if r[0] != 200]


def test_localhost_with_two_addresses_is_two_targets_that_both_serve(apps, gatehouses, hosts):
    # Debian maps localhost to 127.0.0.1 and ::1; this machine's /etc/hosts has 127.0.0.1 only, so
    # the test's hosts file says both (for gatehouse alone).
    hosts.set({"localhost": ["127.0.0.1", "::1"]})
    port, (v4, v6) = start_apps(apps, [("127.0.0.1", "v4"), ("::1", "v6")])
    gh = resolving(gatehouses, "localhost", port)
    served = [who(gh) for _ in range(40)]
    assert all(s == 200 for s, _ in served), served
    names = [n for _, n in served]
    assert names.count("v4") >= 10 and names.count("v6") >= 10, names
    m = gh.metrics()
    for host in ("127.0.0.1", "::1"):
        assert m.value("gatehouse_upstream_target_requests_total", upstream="app",
                       target=label(host, port)) >= 10, m.text
    assert m.value("gatehouse_upstream_target_changes_total", upstream="app", change="added") == 2
    added = [l for l in gh.log_lines("error") if l.get("message") == "upstream target added"]
    assert sorted(l["target"] for l in added) == sorted([label("127.0.0.1", port),
                                                         label("::1", port)])
    assert all(l["name"] == f"localhost:{port}" and l["upstream"] == "app" for l in added)
    _, _, body = http_request(gh.admin_port, "GET", "/health/detailed")
    targets = json.loads(body)["components"]["upstream:app"]["targets"]
    assert sorted(t["address"] for t in targets) == sorted([label("127.0.0.1", port),
                                                            label("::1", port)])
    assert all(t["name"] == f"localhost:{port}" for t in targets)


def test_addresses_that_come_and_go_move_traffic_without_a_failed_request(apps, gatehouses,
                                                                          hosts):
    hosts.set({NAME: ["127.0.0.1", "127.0.0.2"]})
    port, (a, b, c) = start_apps(apps, [("127.0.0.1", "a"), ("127.0.0.2", "b"),
                                        ("127.0.0.3", "c")])
    # The apps count health checks too: b's count standing still proves its checks stopped too.
    gh = resolving(gatehouses, NAME, port, health_check={"path": "/check", "interval": "1s"})
    with Load(gh) as load:
        assert wait_until(lambda: a.served() >= 20 and b.served() >= 20, scaled(10))
        assert c.served() == 0
        # 127.0.0.2 leaves the name, 127.0.0.3 joins it; b keeps running: only DNS moves traffic.
        hosts.set({NAME: ["127.0.0.1", "127.0.0.3"]})
        wait_targets(gh, [label("127.0.0.1", port), label("127.0.0.3", port)])
        # Requests already on their way to b finish; give them a moment, then b gets nothing.
        time.sleep(scaled(0.5))
        b_after = b.served()
        c_before = c.served()
        sent_before = load.count()
        assert wait_until(lambda: load.count() >= sent_before + 200, scaled(20))
        assert b.served() == b_after, "a removed address still got requests"
        assert c.served() >= c_before + 50, "the added address got (almost) no requests"
    assert load.count() >= 300
    assert load.failures() == [], load.failures()[:5]
    m = gh.metrics()
    assert m.value("gatehouse_upstream_target_changes_total", upstream="app", change="added") == 3
    assert m.value("gatehouse_upstream_target_changes_total", upstream="app",
                   change="removed") == 1
    # The removed address's series are gone; the added one's are there.
    assert m.get("gatehouse_upstream_target_up", upstream="app",
                 target=label("127.0.0.2", port)) is None, m.text
    assert m.value("gatehouse_upstream_target_up", upstream="app",
                   target=label("127.0.0.3", port)) == 1
    # The added address is checked like the others (at the next round, within `interval`).
    def targets():
        _, _, body = http_request(gh.admin_port, "GET", "/health/detailed")
        return {t["address"]: t for t in
                json.loads(body)["components"]["upstream:app"]["targets"]}

    assert set(targets()) == {label("127.0.0.1", port), label("127.0.0.3", port)}
    assert wait_until(lambda: targets()[label("127.0.0.3", port)]["last_check"], scaled(3))
    assert targets()[label("127.0.0.3", port)]["state"] == "healthy"
    assert b.served() == b_after, "the removed address is still checked"
    # The log lines, once gatehouse has stopped (it flushes then; while load ran, the error log
    # file waited for the log queue to run empty).
    gh.stop()
    changes = [(l["message"], l["target"]) for l in gh.log_lines("error")
               if l.get("event") in ("target_added", "target_removed")]
    assert changes == [("upstream target added", label("127.0.0.1", port)),
                       ("upstream target added", label("127.0.0.2", port)),
                       ("upstream target removed", label("127.0.0.2", port)),
                       ("upstream target added", label("127.0.0.3", port))], changes
    assert all(l["name"] == f"{NAME}:{port}" and l["upstream"] == "app"
               for l in gh.log_lines("error") if l.get("event") in ("target_added",
                                                                  "target_removed"))


def test_a_name_that_stops_resolving_keeps_its_addresses(apps, gatehouses, hosts):
    hosts.set({NAME: ["127.0.0.1", "127.0.0.2"]})
    port, (a, b) = start_apps(apps, [("127.0.0.1", "a"), ("127.0.0.2", "b")])
    gh = resolving(gatehouses, NAME, port)
    hosts.set({"other.test": ["127.0.0.9"]})
    failed = gh.wait_log("error", lambda l: l.get("message") ==
                         "upstream resolve failed; keeping the previous addresses",
                         timeout=scaled(5))
    assert failed["name"] == f"{NAME}:{port}" and failed["kept_addresses"] == 2, failed
    served = [who(gh) for _ in range(20)]
    assert all(s == 200 for s, _ in served), served
    assert {n for _, n in served} == {"a", "b"}
    assert not [l for l in gh.log_lines("error") if l.get("message") == "upstream target removed"]
    _, _, body = http_request(gh.admin_port, "GET", "/health/detailed")
    up = json.loads(body)["components"]["upstream:app"]
    assert up["status"] == "degraded", up
    resolve = up["resolve"]
    assert resolve["names"][0]["addresses"] == 2
    assert resolve["names"][0]["last_error"], resolve
    assert gh.metrics().value("gatehouse_upstream_resolve_failures_total", upstream="app") >= 1
    # Back in DNS: the error clears.
    hosts.set({NAME: ["127.0.0.1", "127.0.0.2"]})

    def healthy():
        _, _, body = http_request(gh.admin_port, "GET", "/health/detailed")
        return "last_error" not in json.loads(body)["components"]["upstream:app"]["resolve"][
            "names"][0]

    assert wait_until(healthy, scaled(5))


def test_check_prints_the_keys(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("upstreams:\n  app:\n    targets: [\"app.internal:8000\"]\n"
                   "    resolve_interval: 30s\n    max_addresses: 4\n"
                   "routes:\n  - {name: r, match: {path_prefix: /}, upstream: app}\n")
    p = subprocess.run([conftest.GATEHOUSE_BIN, "check", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "    resolve_interval: 30s\n    max_addresses: 4\n" in p.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams:\n  app:\n    targets: [\"app.internal:8000\"]\n"
                   "    resolve_interval: 100ms\n"
                   "routes:\n  - {name: r, match: {path_prefix: /}, upstream: app}\n")
    p = subprocess.run([conftest.GATEHOUSE_BIN, "check", "--config", str(bad)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert f"{bad}:4:23: upstreams.app.resolve_interval: must be 0 (off) or at least 1s" in p.stderr
