"""Where requests go and how many at once (issue 12): least_request, hash by header or client ip,
max_connections with its queue (503 upstream_busy after queue_timeout), per-target metrics.
Real uvicorn and Flask upstreams on loopback; bounded load."""
import http.client
import json
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import APPS, HOST, AppProcess, RawConn, http_request, scaled, wait_until


def balance_app(apps, mode, name, delay_ms=0):
    """apps/balance_app.py: reports its name and the most requests it served at once."""
    app = AppProcess(apps.base_dir, APPS / "balance_app.py", [mode], [name, delay_ms],
                     f"balance-{mode}-{name}")
    apps.apps.append(app)
    return app.start()


def stats(app):
    status, _, body = http_request(app.port, "GET", "/stats", timeout=5)
    assert status == 200
    return json.loads(body)


def get(gh, path="/who", headers=None, timeout=30):
    status, hdrs, body = http_request(gh.port, "GET", path, headers=headers, timeout=timeout)
    return status, hdrs, body


def burst(n, fn, workers=None):
    """Runs fn(i) for i in range(n) from `workers` threads at once; returns the results in order."""
    with ThreadPoolExecutor(max_workers=workers or n) as pool:
        return list(pool.map(fn, range(n)))


def target_label(app):
    return f"{HOST}:{app.port}"


# --- least_request ---------------------------------------------------------------------------


def test_least_request_sends_fewer_requests_to_a_slow_target(apps, gatehouses):
    fast = balance_app(apps, "asgi", "fast", 5)
    slow = balance_app(apps, "asgi", "slow", 300)
    gh = gatehouses([fast, slow], upstreams={"app": {"balance": "least_request"}})

    def one(_):
        status, _, body = get(gh)
        assert status == 200
        return json.loads(body)["server"]

    served = burst(160, one, workers=8)
    n_fast, n_slow = served.count("fast"), served.count("slow")
    assert n_fast + n_slow == 160
    # Round robin would split 80/80. Each worker keeps the slow target's in-flight requests in
    # view: it gets a request only while it has no more in flight than the fast one.
    assert n_slow * 4 < n_fast, (n_fast, n_slow)
    assert stats(slow)["count"] == n_slow


def test_round_robin_is_still_the_default_and_splits_evenly(apps, gatehouses):
    a = balance_app(apps, "asgi", "a")
    b = balance_app(apps, "asgi", "b")
    gh = gatehouses([a, b], workers=1)
    served = [json.loads(get(gh)[2])["server"] for _ in range(20)]
    assert served.count("a") == 10 and served.count("b") == 10


# --- hash ------------------------------------------------------------------------------------


def test_hash_by_header_pins_each_user_to_one_target_and_survives_a_target_dying(apps, gatehouses):
    names = ["h0", "h1", "h2"]
    ups = [balance_app(apps, "asgi", n) for n in names]
    gh = gatehouses(ups, upstreams={"app": {"balance": {"hash": "header", "header": "X-User-ID"}}})

    def server_for(user):
        status, _, body = get(gh, headers={"X-User-ID": user})
        assert status == 200
        data = json.loads(body)
        assert data["x_user_id"] == user
        return data["server"]

    users = [f"user-{i}" for i in range(30)]
    home = {}
    for _round in range(4):  # each user, several times, over new connections to both workers
        for u in users:
            s = server_for(u)
            assert home.setdefault(u, s) == s, f"{u} moved from {home[u]} to {s}"
    assert len(set(home.values())) == 3, "30 users should land on every target"

    # A target dies: only its users move; everyone else keeps their target.
    victim = ups[1]
    victim.stop()
    for u in users:
        s = server_for(u)
        if home[u] != "h1":
            assert s == home[u], f"{u} moved from {home[u]} to {s} though its target is up"
        else:
            assert s in ("h0", "h2")


def test_hash_without_the_header_falls_back_to_the_client_ip(apps, gatehouses):
    ups = [balance_app(apps, "asgi", n) for n in ("c0", "c1", "c2")]
    gh = gatehouses(ups, upstreams={"app": {"balance": {"hash": "header", "header": "X-User-ID"}}})
    served = {json.loads(get(gh)[2])["server"] for _ in range(12)}
    assert len(served) == 1, served  # one client ip, one target

    gh_ip = gatehouses(ups, upstreams={"app": {"balance": {"hash": "client_ip"}}})
    served = {json.loads(get(gh_ip, headers={"X-User-ID": str(i)})[2])["server"]
              for i in range(12)}
    assert len(served) == 1, served


# --- max_connections and the queue ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["flask", "asgi"])
def test_a_burst_never_exceeds_max_connections_per_worker(apps, gatehouses, mode):
    # flask: a sync, threaded app that closes every connection; asgi: keep-alive, so the queue
    # is served by connections handed back to the pool.
    app = balance_app(apps, mode, "sync", 150)
    gh = gatehouses(app, workers=2,
                    upstreams={"app": {"max_connections": 2, "queue_timeout": "60s"}})
    seen_queue = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen_queue.append(gh.metrics().value("gatehouse_upstream_queue_length", upstream="app"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = burst(50, lambda _: get(gh, timeout=60)[0])
    finally:
        done.set()
        watcher.join()
    assert results == [200] * 50
    s = stats(app)
    assert s["count"] == 50
    assert s["max_concurrent"] <= 2 * 2, s  # max_connections x workers
    assert max(seen_queue) > 0, "the burst should have queued"
    assert gh.metrics().value("gatehouse_upstream_queue_length", upstream="app") == 0


def test_queue_timeout_answers_503_upstream_busy_on_time(apps, gatehouses):
    app = balance_app(apps, "flask", "slow", 2000)
    gh = gatehouses(app, workers=1,
                    upstreams={"app": {"max_connections": 1, "queue_timeout": "300ms"}})

    def one(i):
        if i:  # request 0 takes the one connection first
            assert wait_until(lambda: stats(app)["concurrent"] == 1, scaled(5), 0.02)
        t0 = time.monotonic()
        status, hdrs, body = get(gh, timeout=30)
        return status, hdrs, body, time.monotonic() - t0

    results = burst(5, one)
    assert results[0][0] == 200
    for status, hdrs, body, elapsed in results[1:]:
        assert status == 503
        assert hdrs.get("retry-after") == "1"
        data = json.loads(body)
        assert data["error"] == "upstream_busy"
        assert data["retry_after"] == 1
        assert data["request_id"]
        assert 0.25 <= elapsed < scaled(1.5), elapsed
    assert stats(app)["count"] == 1
    m = gh.metrics()
    assert m.value("gatehouse_upstream_busy_total", upstream="app") == 4
    assert m.value("gatehouse_local_replies_total", status="503") == 4


def test_max_queued_zero_answers_503_at_once(apps, gatehouses):
    app = balance_app(apps, "flask", "slow", 1500)
    gh = gatehouses(app, workers=1,
                    upstreams={"app": {"max_connections": 1, "max_queued": 0}})
    first = threading.Thread(target=lambda: get(gh))
    first.start()
    assert wait_until(lambda: stats(app)["concurrent"] == 1, scaled(5), 0.02)
    t0 = time.monotonic()
    status, _, body = get(gh)
    assert status == 503 and json.loads(body)["error"] == "upstream_busy"
    assert time.monotonic() - t0 < scaled(0.5)
    first.join()


def test_a_client_that_disconnects_while_queued_leaves_the_queue(apps, gatehouses):
    app = balance_app(apps, "flask", "slow", 2500)
    gh = gatehouses(app, workers=1,
                    upstreams={"app": {"max_connections": 1, "queue_timeout": "60s"}})
    first = threading.Thread(target=lambda: get(gh))
    first.start()
    assert wait_until(lambda: stats(app)["concurrent"] == 1, scaled(5), 0.02)

    s = socket.create_connection((HOST, gh.port))
    s.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
    queue = lambda: gh.metrics().value("gatehouse_upstream_queue_length", upstream="app")  # noqa: E731
    assert wait_until(lambda: queue() == 1, scaled(2), 0.02)
    s.close()
    assert wait_until(lambda: queue() == 0, scaled(1), 0.02), "still queued after the client left"
    assert stats(app)["concurrent"] == 1, "the first request is still running"
    first.join()
    time.sleep(0.3)
    assert stats(app)["count"] == 1, "the departed client's request must not reach the app"


# --- per-target metrics ----------------------------------------------------------------------


def test_per_target_metrics(apps, gatehouses):
    a = balance_app(apps, "asgi", "a", 30)
    b = balance_app(apps, "asgi", "b", 0)
    c = balance_app(apps, "asgi", "c", 0)
    gh = gatehouses([a, b, c], workers=1)
    c.stop()  # after the start-up health check: the first request sent its way finds it gone
    for _ in range(12):
        assert get(gh)[0] == 200
    m = gh.metrics()
    assert m.types["gatehouse_upstream_target_response_head_seconds"] == "histogram"
    n_a = m.value("gatehouse_upstream_target_requests_total", upstream="app", target=target_label(a))
    n_b = m.value("gatehouse_upstream_target_requests_total", upstream="app", target=target_label(b))
    assert n_a == stats(a)["count"] and n_b == stats(b)["count"]
    assert n_a + n_b == 12
    assert m.value("gatehouse_upstream_target_errors_total", upstream="app",
                   target=target_label(c)) == 1  # then marked unreachable and skipped
    assert m.value("gatehouse_upstream_target_requests_total", upstream="app",
                   target=target_label(c)) == 0
    assert m.value("gatehouse_upstream_target_errors_total", upstream="app",
                   target=target_label(a)) == 0
    hist = "gatehouse_upstream_target_response_head_seconds"
    assert m.value(hist + "_count", upstream="app", target=target_label(a)) == n_a
    # a waits 30 ms before its head: none of its heads is under 25 ms, all are under 1 s.
    assert m.value(hist + "_bucket", upstream="app", target=target_label(a), le="0.025") == 0
    assert m.value(hist + "_bucket", upstream="app", target=target_label(a), le="1") == n_a
    assert m.value(hist + "_sum", upstream="app", target=target_label(a)) >= 0.03 * n_a
    assert m.value("gatehouse_upstream_queue_length", upstream="app") == 0


def test_a_retry_at_the_cap_does_not_wait_for_its_own_failed_connection(apps, gatehouses,
                                                                       tmp_path):
    # answer-once: each upstream connection answers one request, then reads the next and closes
    # without answering. The GET on the pooled connection fails and is retried on a fresh one:
    # with max_connections 1 the failed connection must be given up first, or the retry queues
    # behind it until queue_timeout.
    record = tmp_path / "answer-once.jsonl"
    up = apps.raw("answer-once", record)
    gh = gatehouses(up, workers=1,
                    upstreams={"app": {"max_connections": 1, "queue_timeout": "3s"}})
    with RawConn(gh.port) as c:
        assert c.request("GET", "/warm").status == 200
        t0 = time.monotonic()
        resp = c.request("GET", "/api/report")
    assert resp.status == 200 and resp.body == b"ok"
    assert time.monotonic() - t0 < scaled(1.5)
    assert gh.metrics().value("gatehouse_upstream_retries_total", upstream="app") == 1
    assert gh.metrics().value("gatehouse_upstream_busy_total", upstream="app") == 0


# --- a real gunicorn behind max_connections -----------------------------------------------------


def upstream_connections(port):
    """Established TCP connections to 127.0.0.1:port, counted from the connecting side (ss)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"dst 127.0.0.1:{port}"],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def test_a_burst_holds_at_most_max_connections_to_gunicorn(apps, gatehouses):
    """Issue 12's case: a burst must not open dozens of connections to a gunicorn with a few sync
    workers (they would wait in its backlog, past the app's own timeouts). With 2 gatehouse
    workers and max_connections 1, gunicorn never sees more than 2 connections; every request is
    served from the queue, none is refused."""
    app = AppProcess(apps.base_dir, APPS / "gunicorn_app.py", [], [2, 100], "gunicorn")
    apps.apps.append(app)
    app.start()
    gh = gatehouses(app, workers=2,
                    upstreams={"app": {"max_connections": 1, "queue_timeout": "60s"}})
    seen = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.append(upstream_connections(app.port))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = burst(30, lambda _: get(gh, path="/slow", timeout=60)[0])
    finally:
        done.set()
        watcher.join()
    assert results == [200] * 30
    assert len(seen) > 20, "the watch did not run during the burst"
    assert max(seen) <= 2, f"connections to gunicorn: max {max(seen)} (cap 1 x 2 workers)"
    assert max(seen) >= 1
    m = gh.metrics()
    assert m.value("gatehouse_upstream_busy_total", upstream="app") == 0
    assert m.value("gatehouse_upstream_connections_opened_total", upstream="app") >= 30  # closes each


def test_without_max_connections_a_burst_reaches_gunicorn_whole(apps, gatehouses):
    """The control for the test above: the same burst without a cap opens many connections at
    once, so the cap is what held them (the measurement can see more than 2)."""
    app = AppProcess(apps.base_dir, APPS / "gunicorn_app.py", [], [2, 100], "gunicorn")
    apps.apps.append(app)
    app.start()
    gh = gatehouses(app, workers=2)
    seen = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.append(upstream_connections(app.port))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = burst(30, lambda _: get(gh, path="/slow", timeout=60)[0])
    finally:
        done.set()
        watcher.join()
    assert results == [200] * 30
    assert max(seen) > 4, f"connections to gunicorn: max {max(seen)}"
