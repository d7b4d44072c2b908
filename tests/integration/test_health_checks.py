"""Target health (issue 12): active HTTP health checks, passive outlier ejection, the circuit
breaker, and what a client, the logs, /metrics and /health/detailed show when targets go bad.
Real gatehouse, real uvicorn/Starlette upstreams (apps/health_app.py) whose health and answers the
tests switch at run time."""
import concurrent.futures
import datetime
import http.client
import json
import signal
import threading
import time

import pytest

from conftest import APPS, AppProcess, http_request, scaled, to_yaml, wait_until


class HealthApp(AppProcess):
    """apps/health_app.py: /health and every other answer switchable through /_control."""

    def __init__(self, workdir, name):
        super().__init__(workdir, APPS / "health_app.py", [], [name], f"health-{name}")
        self.name = name

    def control(self, **settings):
        status, _, _ = http_request(self.port, "POST", "/_control",
                                    headers={"Content-Type": "application/json"},
                                    body=json.dumps(settings).encode())
        assert status == 200

    def stats(self):
        status, _, body = http_request(self.port, "GET", "/_stats")
        assert status == 200
        return json.loads(body)

    def kill9(self):
        """SIGKILL: no FIN from a graceful shutdown, connections in flight just die."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)
        self.stop()


@pytest.fixture
def health_apps(tmp_path):
    started = []

    def make(*names):
        out = []
        for name in names:
            app = HealthApp(tmp_path, name)
            started.append(app)
            out.append(app.start())
        return out

    yield make
    for app in started:
        try:
            app.stop()
        except Exception:  # noqa: BLE001 - teardown goes on
            pass


def start(gatehouses, targets, **upstream):
    return gatehouses(None, upstreams={"app": {"targets": [t.address for t in targets],
                                               **upstream}})


def get(gh, path="/work"):
    """(status, headers, json body or None) of one GET on a fresh connection."""
    status, headers, body = http_request(gh.port, "GET", path, timeout=10)
    try:
        j = json.loads(body)
    except ValueError:
        j = None
    return status, headers, j


def detailed(gh):
    status, _, body = http_request(gh.admin_port, "GET", "/health/detailed")
    return status, json.loads(body)


def target_report(gh, app):
    _, d = detailed(gh)
    for t in d["components"]["upstream:app"]["targets"]:
        if t["address"] == app.address:
            return t
    raise AssertionError(f"{app.address} not in /health/detailed")


def wait_state(gh, app, state, timeout):
    """Waits until /health/detailed (cached for health.cache_ttl) shows `state` for app."""
    ok = wait_until(lambda: target_report(gh, app)["state"] == state, timeout, 0.1)
    assert ok, f"{app.name} never {state}: {target_report(gh, app)}"


def metric(gh, name, **labels):
    return gh.metrics().value(name, **labels)


def servers(gh, n, path="/work"):
    """Who answered each of n GETs, as (status, server name or None)."""
    out = []
    for _ in range(n):
        status, _, j = get(gh, path)
        out.append((status, j.get("server") if isinstance(j, dict) else None))
    return out


def seconds_between(earlier, later):
    """Seconds between two error-log lines, by their own "time" fields."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return (datetime.datetime.strptime(later["time"], fmt) -
            datetime.datetime.strptime(earlier["time"], fmt)).total_seconds()


def log_events(gh, event, **fields):
    return [l for l in gh.log_lines("error")
            if l.get("event") == event and all(l.get(k) == v for k, v in fields.items())]


# ----------------------------------------------------------------------- active HTTP checks


def test_http_check_takes_a_failing_target_out_and_brings_it_back(health_apps, gatehouses):
    a, b = health_apps("a", "b")
    gh = start(gatehouses, [a, b], health_check={
        "path": "/health", "expect": [200], "interval": "300ms", "timeout": "300ms",
        "healthy_after": 2, "unhealthy_after": 3})
    assert wait_until(lambda: a.stats()["health_checks"] >= 1, scaled(3))
    # The check is a real HTTP request naming gatehouse, with the target as Host.
    headers = a.stats()["last_check_headers"]
    assert headers["host"] == a.address
    assert headers["user-agent"].startswith("gatehouse-health-check/")
    assert {s for _, s in servers(gh, 6)} == {"a", "b"}

    # /health answers 500 while the port stays open: out after unhealthy_after checks, not before.
    a.control(health=500)
    checks_at_change = a.stats()["health_checks"]
    wait_state(gh, a, "unhealthy", scaled(5))
    assert a.stats()["health_checks"] - checks_at_change >= 3, "out before unhealthy_after checks"
    requests_before = a.stats()["requests"]
    got = servers(gh, 20)
    assert got == [(200, "b")] * 20, got
    assert a.stats()["requests"] == requests_before, "an unhealthy target still got requests"

    line = log_events(gh, "target_unhealthy", target=a.address)
    assert len(line) == 1, gh.log_lines("error")
    assert line[0]["upstream"] == "app" and line[0]["message"] == "upstream target unhealthy"
    assert line[0]["reason"] == "unexpected status 500"
    assert line[0]["level"] == "warn"
    m = gh.metrics()
    assert m.value("gatehouse_upstream_target_healthy", upstream="app", target=a.address) == 0
    assert m.value("gatehouse_upstream_target_healthy", upstream="app", target=b.address) == 1
    assert m.value("gatehouse_upstream_target_up", upstream="app", target=a.address) == 0
    assert m.value("gatehouse_upstream_health_transitions_total", upstream="app",
                   target=a.address) == 1
    assert m.get("gatehouse_upstream_health_check_latency_seconds", upstream="app",
                 target=a.address) is not None
    rep = target_report(gh, a)
    assert rep["reachable"] is False and rep["last_error"] == "unexpected status 500"
    assert rep["consecutive_check_failures"] >= 3
    assert isinstance(rep["last_check"], str) and isinstance(rep["latency_ms"], (int, float))
    status, d = detailed(gh)
    assert d["components"]["upstream:app"]["status"] == "degraded"

    # Healthy again: back after healthy_after passes, and takes its share of requests.
    a.control(health=200)
    wait_state(gh, a, "healthy", scaled(5))
    assert {s for _, s in servers(gh, 6)} == {"a", "b"}
    back = log_events(gh, "target_healthy", target=a.address)
    assert len(back) == 1 and back[0]["message"] == "upstream target healthy"
    assert gh.metrics().value("gatehouse_upstream_health_transitions_total", upstream="app",
                              target=a.address) == 2


def test_one_failed_check_is_not_enough(health_apps, gatehouses):
    a, b = health_apps("a", "b")
    gh = start(gatehouses, [a, b], health_check={
        "interval": "700ms", "timeout": "300ms", "healthy_after": 2, "unhealthy_after": 3})
    assert wait_until(lambda: a.stats()["health_checks"] >= 1, scaled(3))
    # Fail exactly two checks in a row (below unhealthy_after), then pass again (the next check
    # is an interval away when the second failure is seen).
    a.control(health=500)
    n = a.stats()["health_checks"]
    assert wait_until(lambda: a.stats()["health_checks"] >= n + 2, scaled(3), 0.02)
    a.control(health=200)
    time.sleep(scaled(1))
    assert not log_events(gh, "target_unhealthy"), "taken out below unhealthy_after"
    assert metric(gh, "gatehouse_upstream_target_healthy", upstream="app", target=a.address) == 1


# --------------------------------------------------------------------------------- kill -9


def test_kill_9_moves_traffic_and_the_target_comes_back(health_apps, gatehouses):
    a, b, c = health_apps("a", "b", "c")
    interval = 1.0
    gh = start(gatehouses, [a, b, c], health_check={
        "interval": f"{int(interval * 1000)}ms", "timeout": f"{int(interval * 1000)}ms",
        "healthy_after": 2, "unhealthy_after": 2},
        retry={"attempts": 3, "backoff": {"base": "10ms", "max": "50ms"}})
    got = servers(gh, 9)
    assert {s for _, s in got} == {"a", "b", "c"}, got

    results = []  # (start, status, server, end)
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        while not stop.is_set():
            t = time.monotonic()
            try:
                status, _, j = get(gh)
                server = j.get("server") if isinstance(j, dict) else None
            except http.client.IncompleteRead:
                status, server = "cut off", None  # the head was relayed, then the target died
            except (OSError, http.client.HTTPException) as e:
                status, server = f"error: {e!r}", None
            with lock:
                results.append((t, status, server, time.monotonic()))
            time.sleep(0.01)  # bounded load: ~100 requests/s per client

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client) for _ in range(4)]
        time.sleep(1.0)
        killed_at = time.monotonic()
        a.kill9()
        time.sleep(scaled(interval * 2 + 1.5))
        stop.set()
        for f in futures:
            f.result()

    after_kill = [r for r in results if r[0] >= killed_at]
    assert len(after_kill) > 50, f"load too light to judge: {len(after_kill)} requests"
    # Within one check interval no new request goes to the dead target (a failed connect already
    # moves to the next one; health marks it unreachable and then unhealthy).
    late = [r for r in after_kill if r[0] >= killed_at + scaled(interval)]
    assert late, "no request after the first check interval"
    assert all(r[2] in ("b", "c") for r in late if r[1] == 200), \
        [r for r in late if r[2] not in ("b", "c")][:5]
    assert all(r[1] == 200 for r in late), [r for r in late if r[1] != 200][:5]
    wait_state(gh, a, "unhealthy", scaled(5))
    # Whichever noticed first, a request's connect or the check's, said so in the error log.
    assert [l for l in gh.log_lines("error") if l.get("target") == a.address and l["message"] in
            ("upstream connect failed", "upstream target unreachable")], gh.log_lines("error")
    assert len(log_events(gh, "target_unhealthy", target=a.address)) == 1

    # Back on the same port: traffic again once healthy_after checks passed.
    a.start()
    wait_state(gh, a, "healthy", scaled(2 * interval + 3))
    got = servers(gh, 9)
    assert "a" in {s for _, s in got}, (got, detailed(gh))
    assert len(log_events(gh, "target_reachable", target=a.address)) == 1
    assert len(log_events(gh, "target_healthy", target=a.address)) == 1

    # No failed idempotent request: a GET in flight on the killed target (reset, or refused on a
    # reused connection) is retried on another target. The one failure a retry cannot mend is a
    # response whose head was already relayed when the target died (the client sees it cut off);
    # the app writes its head and body at once, so that window is a few microseconds wide.
    failed = [r for r in results if r[1] != 200]
    cut_off = [r for r in failed if r[1] == "cut off" and r[0] < killed_at <= r[3]]
    assert len(failed) == len(cut_off) and len(cut_off) <= 1, failed[:10]
    m = gh.metrics()
    assert m.value("gatehouse_upstream_failures_total", upstream="app") == len(cut_off)


# ------------------------------------------------------------------------ outlier ejection


def test_outlier_ejects_a_5xx_target_and_it_returns_after_eject_for(health_apps, gatehouses):
    a, b = health_apps("a", "b")
    gh = start(gatehouses, [a, b], outlier={
        "consecutive_5xx": 3, "consecutive_connect_failures": 3, "eject_for": "4s",
        "max_ejected": "50%"})
    a.control(status=500)  # /health still says 200: only real traffic shows the problem
    got = servers(gh, 12)
    five = [g for g in got if g[0] == 500]
    assert len(five) == 3, got  # the third consecutive 5xx ejects it
    requests_at_ejection = a.stats()["requests"]
    assert servers(gh, 20) == [(200, "b")] * 20
    assert a.stats()["requests"] == requests_at_ejection

    ev = log_events(gh, "target_ejected", target=a.address)
    assert len(ev) == 1, gh.log_lines("error")
    assert ev[0]["reason"] == "consecutive_5xx" and ev[0]["eject_for_s"] == 4
    assert ev[0]["message"] == "upstream target ejected" and ev[0]["upstream"] == "app"
    m = gh.metrics()
    assert m.value("gatehouse_upstream_ejections_total", upstream="app", target=a.address) == 1
    assert m.value("gatehouse_upstream_target_ejected", upstream="app", target=a.address) == 1
    assert m.value("gatehouse_upstream_target_ejected", upstream="app", target=b.address) == 0
    wait_state(gh, a, "ejected", scaled(2))
    rep = target_report(gh, a)
    assert rep["ejections"] == 1

    # It gets requests again once eject_for has passed (not before).
    a.control(status=200)
    returned = gh.wait_log("error", lambda l: l.get("event") == "target_returned"
                           and l.get("target") == a.address, timeout=scaled(6))
    assert seconds_between(ev[0], returned) >= 3.99
    assert "a" in {s for _, s in servers(gh, 6)}
    assert metric(gh, "gatehouse_upstream_target_ejected", upstream="app", target=a.address) == 0


def test_max_ejected_keeps_a_share_of_targets_in_service(health_apps, gatehouses):
    a, b = health_apps("a", "b")
    gh = start(gatehouses, [a, b], outlier={"consecutive_5xx": 2, "eject_for": "30s",
                                            "max_ejected": "50%"})
    a.control(status=500)
    b.control(status=500)
    got = servers(gh, 20)
    # One of two may go; the other keeps answering (its 5xx pass through to the client).
    assert len(log_events(gh, "target_ejected")) == 1, got
    assert sum(1 for s, _ in got[-10:] if s == 500) == 10


# ------------------------------------------------------------------------- circuit breaker


def test_circuit_breaker_opens_probes_and_closes(health_apps, gatehouses):
    (a,) = health_apps("a")
    gh = start(gatehouses, [a], circuit_breaker={
        "failure_ratio": 0.5, "min_requests": 5, "window": "10s", "open_for": "4s"})
    a.control(status=500)
    assert [s for s, _, _ in (get(gh) for _ in range(5))] == [500] * 5
    seen = a.stats()["requests"]
    assert seen == 5

    # Open: 503 circuit_open at once, with Retry-After; the upstream sees nothing.
    for _ in range(10):
        t0 = time.monotonic()
        status, headers, j = get(gh)
        assert status == 503, (status, j)
        assert time.monotonic() - t0 < scaled(0.5)
        assert j["error"] == "circuit_open" and j["request_id"]
        assert 1 <= int(headers["retry-after"]) <= 4
        assert j["retry_after"] == int(headers["retry-after"])
    assert a.stats()["requests"] == seen
    ev = log_events(gh, "breaker_open")
    assert len(ev) == 1 and ev[0]["upstream"] == "app" and ev[0]["reason"] == "failure_ratio"
    m = gh.metrics()
    assert m.value("gatehouse_upstream_circuit_breaker_state", upstream="app") == 1
    assert m.value("gatehouse_upstream_circuit_breaker_opened_total", upstream="app") == 1
    assert m.value("gatehouse_upstream_circuit_open_rejections_total", upstream="app") >= 10
    time.sleep(1.1)  # past health.cache_ttl
    status, d = detailed(gh)
    assert status == 503
    assert d["components"]["upstream:app"]["circuit_breaker"]["state"] == "open"
    assert d["components"]["upstream:app"]["status"] == "down"

    # Half-open after open_for: one probe passes; it fails, so the breaker opens again.
    half = gh.wait_log("error", lambda l: l.get("event") == "breaker_half_open",
                       timeout=scaled(6))
    assert seconds_between(ev[0], half) >= 3.99
    statuses = [get(gh)[0] for _ in range(5)]
    assert statuses[0] == 500 and statuses[1:] == [503] * 4, statuses
    assert a.stats()["requests"] == seen + 1
    assert len(log_events(gh, "breaker_open")) == 2

    # The upstream recovers: the next probe succeeds and closes the breaker.
    a.control(status=200)
    assert wait_until(lambda: get(gh)[0] == 200, scaled(8), 0.2)
    ev = gh.wait_log("error", lambda l: l.get("event") == "breaker_closed", timeout=scaled(2))
    assert ev["reason"] == "probe_succeeded"
    assert [get(gh)[0] for _ in range(10)] == [200] * 10
    assert metric(gh, "gatehouse_upstream_circuit_breaker_state", upstream="app") == 0


def test_open_breaker_survives_a_reload(health_apps, gatehouses):
    """A reload that keeps the upstream's definition (targets and health settings) keeps its
    process-wide state: an open breaker stays open (no request reaches the failing target), with
    another upstream added before it and its pool settings changed. A changed breaker starts
    fresh; putting the first definition back finds the open breaker again."""
    (a,) = health_apps("a")
    gh = start(gatehouses, [a], circuit_breaker={
        "failure_ratio": 0.5, "min_requests": 5, "window": "10s", "open_for": "30s"})
    a.control(status=500)
    assert [s for s, _, _ in (get(gh) for _ in range(5))] == [500] * 5
    assert get(gh)[0] == 503
    seen = a.stats()["requests"]
    cfg = json.loads(json.dumps(gh.config))
    cfg["upstreams"] = {"spare": {"targets": [a.address]}, **cfg["upstreams"]}
    gh.config = cfg
    gh.config_path.write_text(to_yaml(cfg) + "\n")
    status, _, body = http_request(gh.admin_port, "POST", "/admin/reload", timeout=10)
    assert status == 200 and json.loads(body)["changes"]["upstreams"]["added"] == ["spare"], body
    status, _, j = get(gh)
    assert status == 503 and j["error"] == "circuit_open", (status, j)
    del cfg["upstreams"]["spare"]
    cfg["upstreams"]["app"]["timeout"] = "7s"
    gh.config_path.write_text(to_yaml(cfg) + "\n")
    status, _, body = http_request(gh.admin_port, "POST", "/admin/reload", timeout=10)
    assert status == 200 and json.loads(body)["changes"]["upstreams"]["changed"] == ["app"], body
    status, _, j = get(gh)
    assert status == 503 and j["error"] == "circuit_open", (status, j)
    assert a.stats()["requests"] == seen
    m = gh.metrics()
    assert m.value("gatehouse_upstream_circuit_breaker_state", upstream="app") == 1
    assert m.value("gatehouse_upstream_circuit_breaker_opened_total", upstream="app") == 1

    # Another breaker is another definition: fresh state, the (failing) app is reached again.
    original = json.loads(json.dumps(cfg))
    cfg["upstreams"]["app"]["circuit_breaker"]["min_requests"] = 50
    gh.config_path.write_text(to_yaml(cfg) + "\n")
    status, _, body = http_request(gh.admin_port, "POST", "/admin/reload", timeout=10)
    assert status == 200, body
    assert get(gh)[0] == 500
    assert a.stats()["requests"] == seen + 1
    m = gh.metrics()
    assert m.value("gatehouse_upstream_circuit_breaker_state", upstream="app") == 0
    # Counters are the name's, over every definition: the opening is still counted.
    assert m.value("gatehouse_upstream_circuit_breaker_opened_total", upstream="app") == 1
    assert m.value("gatehouse_upstream_circuit_open_rejections_total", upstream="app") >= 2
    # The first definition back: its breaker is still open.
    gh.config_path.write_text(to_yaml(original) + "\n")
    status, _, body = http_request(gh.admin_port, "POST", "/admin/reload", timeout=10)
    assert status == 200, body
    status, _, j = get(gh)
    assert status == 503 and j["error"] == "circuit_open", (status, j)
    assert a.stats()["requests"] == seen + 1
    assert gh.metrics().value("gatehouse_upstream_circuit_breaker_state", upstream="app") == 1


def test_breaker_counts_connect_failures(health_apps, gatehouses):
    (a,) = health_apps("a")
    gh = start(gatehouses, [a], circuit_breaker={"min_requests": 3, "open_for": "10s"})
    a.stop()
    statuses = [get(gh)[0] for _ in range(6)]
    assert statuses[:3] == [502] * 3 and statuses[3:] == [503] * 3, statuses
    status, headers, j = get(gh)
    assert j["error"] == "circuit_open" and int(headers["retry-after"]) >= 1


# ------------------------------------------------------------------------ every target out


def test_every_target_out_is_503_upstream_unavailable_without_connects(health_apps, gatehouses):
    a, b = health_apps("a", "b")
    gh = start(gatehouses, [a, b], health_check={
        "interval": "300ms", "timeout": "300ms", "healthy_after": 1, "unhealthy_after": 1})
    assert get(gh)[0] == 200
    a.control(health=503)
    b.control(health=503)
    wait_state(gh, a, "unhealthy", scaled(3))
    wait_state(gh, b, "unhealthy", scaled(3))
    seen = a.stats()["requests"] + b.stats()["requests"]
    for _ in range(5):
        t0 = time.monotonic()
        status, headers, j = get(gh)
        assert time.monotonic() - t0 < scaled(0.5)
        assert status == 503, (status, j)
        assert j["error"] == "upstream_unavailable" and j["request_id"]
        assert int(headers["retry-after"]) >= 1
        assert headers["content-type"] == "application/json"
    # Ports open, but no request reached a target that health took out.
    assert a.stats()["requests"] + b.stats()["requests"] == seen
    assert http_request(gh.port, "GET", "/health/ready")[0] == 503
    assert http_request(gh.admin_port, "GET", "/health/ready")[0] == 503
    assert metric(gh, "gatehouse_upstream_unavailable_total", upstream="app") >= 5

    b.control(health=200)
    assert wait_until(lambda: http_request(gh.port, "GET", "/health/ready")[0] == 200, scaled(3))
    assert get(gh)[:1] == (200,)


def test_all_killed_gives_upstream_unavailable_and_not_ready(health_apps, gatehouses):
    a, b = health_apps("a", "b")
    gh = start(gatehouses, [a, b], health_check={
        "interval": "300ms", "timeout": "300ms", "healthy_after": 1, "unhealthy_after": 2})
    assert get(gh)[0] == 200
    a.kill9()
    b.kill9()
    assert wait_until(lambda: http_request(gh.port, "GET", "/health/ready")[0] == 503,
                      scaled(3)), "/health/ready still 200 with every target dead"
    wait_state(gh, a, "unhealthy", scaled(3))
    wait_state(gh, b, "unhealthy", scaled(3))
    status, headers, j = get(gh)
    assert status == 503 and j["error"] == "upstream_unavailable"
    assert int(headers["retry-after"]) >= 1
    status, d = detailed(gh)
    assert status == 503 and d["components"]["upstream:app"]["status"] == "down"
    for t in d["components"]["upstream:app"]["targets"]:
        assert t["state"] == "unhealthy" and t["last_error"]

    a.start()
    assert wait_until(lambda: get(gh)[0] == 200, scaled(3))
    assert http_request(gh.port, "GET", "/health/ready")[0] == 200
