"""Edge security end to end (issue 5): access rules, connection caps, the minimum body rate, a
slowloris attack, security headers and CORS, all through the real binary.

Upstreams: the module's Flask app, raw_upstreams.py capture (records what reached the app), and
HeaderUpstream below, an in-process server whose response headers are chosen by the request
(`/x?h=Server:gunicorn&h=X-Powered-By:Express`) and which records every request it gets, so
"never reached the app" is checked directly. Client identities other than 127.0.0.1 come from
X-Forwarded-For with 127.0.0.1 in trusted_proxies, or from binding the client socket to another
loopback address (127.0.0.2, ...) when the TCP peer itself must differ (connection caps).

Every test starts its own gatehouse with the config it needs; everything is bounded in time.
The slowloris test takes about 12 s; everything else together about 20 s.
"""
import json
import os
import resource
import socket
import statistics
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import (HOST, PYTHON, SCALE, RawConn, http_request, readable, scaled,
                      wait_until)

TRUST = ["127.0.0.1"]

STRICT = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "content-security-policy":
        "default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'self'",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "cross-origin-opener-policy": "same-origin",
    "x-xss-protection": "0",
}
RELAXED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "SAMEORIGIN",
    "referrer-policy": "strict-origin-when-cross-origin",
    "x-xss-protection": "0",
}
ALL_SECURITY = set(STRICT) | {"strict-transport-security", "cross-origin-resource-policy"}
LEAKY = ("Server:gunicorn/21.2.0", "X-Powered-By:Express")


# ------------------------------------------------------------------------------ upstream


class HeaderUpstream:
    """HTTP/1.1 keep-alive upstream in this process. Answers JSON {"method", "path", "headers"}
    with status `?status=N` (default 200) and extra response headers `?h=Name:value` (repeatable).
    Every request it receives is recorded."""

    def __init__(self):
        self.records = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(split.query)
                rec = {"method": self.command, "path": split.path, "target": self.path,
                       "headers": {k.lower(): v for k, v in self.headers.items()},
                       "body_len": len(body)}
                with outer.lock:
                    outer.records.append(rec)
                out = json.dumps(rec).encode()
                self.send_response_only(int(query.get("status", ["200"])[0]))
                for h in query.get("h", []):
                    name, _, value = h.partition(":")
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = handle_any

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"{HOST}:{self.port}"

    def __str__(self):  # conftest's targets_of() takes str(upstream) for unknown types
        return self.address

    def requests(self):
        with self.lock:
            return list(self.records)

    def paths(self):
        return [r["path"] for r in self.requests()]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hdr():
    up = HeaderUpstream()
    yield up
    up.close()


# ------------------------------------------------------------------------------ helpers


def route(name, prefix, **extra):
    return {"name": name, "match": {"path_prefix": prefix}, "upstream": "app", **extra}


def query_headers(*pairs):
    return "&".join("h=" + urllib.parse.quote(p, safe=":") for p in pairs)


def get(gh, path, method="GET", headers=None, body=None, xff=None):
    """One request on a fresh raw connection (headers kept as a list: duplicates visible)."""
    h = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
    if xff is not None:
        h.append(("X-Forwarded-For", xff))
    with RawConn(gh.port) as c:
        return c.request(method, path, h, body or b"")


def single(resp, name):
    """The one value of header `name` (fails when it is missing or repeated)."""
    values = resp.header_all(name)
    assert len(values) == 1, f"{name}: {values} in {resp.headers}"
    return values[0]


def assert_headers(resp, expected, absent=()):
    for name, value in expected.items():
        assert single(resp, name) == value, (name, resp.headers)
    for name in absent:
        assert not resp.has_header(name), (name, resp.headers)


def assert_json_error(resp, status, code):
    assert resp.status == status, resp
    assert resp.header("content-type", "").split(";")[0] == "application/json", resp
    j = resp.json()
    assert j["error"] == code, j
    assert j["request_id"] == resp.header("x-request-id"), (j, resp.headers)
    return j


def security_events(gh, event):
    return [l for l in gh.log_lines("security") if l.get("event") == event]


def connect_from(port, source_ip, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(scaled(timeout))
    s.bind((source_ip, 0))
    s.connect((HOST, port))
    return RawConn.from_socket(s, timeout=timeout)


def metric(gh, name):
    return gh.metrics().value(name)


def wait_no_connections(gh):
    """Waits until gatehouse holds no client connection (earlier probes fully released)."""
    ok = wait_until(lambda: metric(gh, "gatehouse_connections_active") == 0, scaled(5), 0.05)
    assert ok, f"connections_active = {metric(gh, 'gatehouse_connections_active')}"
    time.sleep(0.1)  # the per-IP release follows the gauge update


def closed_at_accept(c, timeout=3.0):
    """True when gatehouse closes the connection without a byte, before we sent anything."""
    closed, data, _ = c.wait_closed(scaled(timeout))
    return closed and data == b""


# ------------------------------------------------------------------------------ 2. access


def test_global_deny_via_trusted_forwarded_for(hdr, gatehouses):
    gh = gatehouses(hdr, trusted_proxies=TRUST, access={"deny": ["203.0.113.0/24"]})
    before = len(hdr.requests())
    r = get(gh, "/denied?x=1", headers={"X-Request-ID": "deny-1"}, xff="203.0.113.7")
    j = assert_json_error(r, 403, "forbidden")
    assert j["message"] and j["request_id"] == "deny-1"
    assert_headers(r, {"x-frame-options": "DENY"})  # local replies carry the security headers
    line = gh.wait_log("security", lambda l: l.get("event") == "access_denied")
    assert line["client_ip"] == "203.0.113.7" and line["request_id"] == "deny-1"
    assert line["reason"] == "access rules"
    access = gh.wait_log("access", lambda l: l.get("request_id") == "deny-1")
    assert access["status"] == 403 and access["client_ip"] == "203.0.113.7"
    # Neighbours, the proxy itself and a hop left of a denied one are not denied.
    assert get(gh, "/ok", xff="203.0.114.7").status == 200
    assert get(gh, "/ok").status == 200
    assert get(gh, "/ok", xff="203.0.113.7, 198.51.100.1").status == 200
    # Health endpoints are answered before the rules.
    for path in ("/health/live", "/health/ready", "/health"):
        assert get(gh, path, xff="203.0.113.7").status == 200, path
    # The denied request never reached the app.
    assert "/denied" not in hdr.paths()[before:]


def test_denied_request_with_body_closes_connection(hdr, gatehouses):
    gh = gatehouses(hdr, trusted_proxies=TRUST, access={"deny": ["203.0.113.0/24"]})
    with RawConn(gh.port) as c:
        r = c.request("POST", "/upload", [("X-Forwarded-For", "203.0.113.9")], b"x" * 1000)
        assert r.status == 403 and "close" in r.connection_tokens()
        closed, _, _ = c.wait_closed(scaled(3))
        assert closed
    with RawConn(gh.port) as c:  # without a body the connection stays usable
        r = c.request("GET", "/a", [("X-Forwarded-For", "203.0.113.9")])
        assert r.status == 403 and "close" not in r.connection_tokens()
        assert c.request("GET", "/b").status == 200


def test_global_allow_list(hdr, gatehouses):
    gh = gatehouses(hdr, trusted_proxies=TRUST, access={"allow": ["10.0.0.0/8", "192.0.2.1"]})
    assert get(gh, "/in", xff="10.20.30.40").status == 200
    assert get(gh, "/in", xff="192.0.2.1").status == 200
    assert_json_error(get(gh, "/out", xff="192.0.2.2"), 403, "forbidden")
    # The trusted proxy itself is not in the allow list: without a forwarded client it is refused.
    assert_json_error(get(gh, "/out"), 403, "forbidden")
    assert get(gh, "/health/live").status == 200


def test_deny_wins_over_allow(hdr, gatehouses):
    gh = gatehouses(hdr, trusted_proxies=TRUST,
                    access={"allow": ["10.0.0.0/8"], "deny": ["10.66.0.0/16"]})
    assert get(gh, "/x", xff="10.1.1.1").status == 200
    assert get(gh, "/x", xff="10.66.1.1").status == 403


def test_route_allow_list(hdr, gatehouses):
    gh = gatehouses(hdr, trusted_proxies=TRUST, routes=[
        route("admin", "/admin", access={"allow": ["10.0.0.0/8"]}),
        route("public", "/")])
    before = len(hdr.requests())
    assert get(gh, "/admin/users", xff="10.0.0.5").status == 200
    r = get(gh, "/admin/users", headers={"X-Request-ID": "route-deny-1"}, xff="198.51.100.1")
    assert_json_error(r, 403, "forbidden")
    line = gh.wait_log("security", lambda l: l.get("request_id") == "route-deny-1")
    assert line["event"] == "access_denied" and line["reason"] == "route access rules"
    assert line["client_ip"] == "198.51.100.1"
    access = gh.wait_log("access", lambda l: l.get("request_id") == "route-deny-1")
    assert access["route"] == "admin" and access["status"] == 403
    assert get(gh, "/public", xff="198.51.100.1").status == 200
    assert get(gh, "/health/live", xff="198.51.100.1").status == 200
    assert hdr.paths()[before:].count("/admin/users") == 1


def test_forwarded_for_from_untrusted_peer_cannot_unlock_a_route(hdr, gatehouses):
    """Without trusted_proxies, X-Forwarded-For is ignored: the peer 127.0.0.1 is the client."""
    gh = gatehouses(hdr, routes=[route("admin", "/admin", access={"allow": ["10.0.0.0/8"]}),
                                 route("public", "/")])
    assert get(gh, "/admin", xff="10.0.0.5").status == 403
    line = gh.wait_log("security", lambda l: l.get("event") == "access_denied")
    assert line["client_ip"] == "127.0.0.1"


# ------------------------------------------------------------------------------ 3. connection caps


def test_max_connections_per_ip(hdr, gatehouses):
    gh = gatehouses(hdr, limits={"max_connections_per_ip": 3})
    wait_no_connections(gh)
    held = [RawConn(gh.port) for _ in range(3)]
    try:
        for i, c in enumerate(held):  # each is admitted and served (and kept alive)
            assert c.request("GET", f"/held/{i}").status == 200
        extra = [RawConn(gh.port) for _ in range(2)]
        try:
            for c in extra:
                assert closed_at_accept(c), "4th/5th connection from the same IP was not closed"
        finally:
            for c in extra:
                c.close()
        assert wait_until(lambda: metric(gh, "gatehouse_connections_rejected_total") == 2,
                          scaled(3)), gh.metrics().text
        # Another address is counted separately.
        with connect_from(gh.port, "127.0.0.2") as other:
            assert other.request("GET", "/other-ip").status == 200
        # The held connections still work.
        for i, c in enumerate(held):
            assert c.request("GET", f"/held/{i}/again").status == 200
        # After one closes, a new connection from 127.0.0.1 is accepted again.
        held.pop().close()

        def admitted():
            try:
                with RawConn(gh.port, timeout=2) as c:
                    return c.request("GET", "/after-close").status == 200
            except (OSError, EOFError):
                return False
        assert wait_until(admitted, scaled(5), 0.1), "no connection admitted after one closed"
    finally:
        for c in held:
            c.close()
    assert metric(gh, "gatehouse_connections_rejected_total") >= 2


def test_max_connections_total(hdr, gatehouses):
    gh = gatehouses(hdr, limits={"max_connections": 4})
    wait_no_connections(gh)
    held = []
    try:
        for i in range(4):  # four peers, one connection each
            c = connect_from(gh.port, f"127.0.0.{i + 1}")
            held.append(c)
            assert c.request("GET", f"/held/{i}").status == 200
        for ip in ("127.0.0.5", "127.0.0.1"):
            with connect_from(gh.port, ip) as c:
                assert closed_at_accept(c), f"connection from {ip} over max_connections kept"
        assert wait_until(lambda: metric(gh, "gatehouse_connections_rejected_total") == 2,
                          scaled(3)), gh.metrics().text
        assert metric(gh, "gatehouse_connections_active") == 4
        # The admin listener is not capped.
        assert http_request(gh.admin_port, "GET", "/metrics")[0] == 200
        held.pop(0).close()

        def admitted():
            try:
                with connect_from(gh.port, "127.0.0.6", timeout=2) as c:
                    return c.request("GET", "/after-close").status == 200
            except (OSError, EOFError):
                return False
        assert wait_until(admitted, scaled(5), 0.1), "no connection admitted after one closed"
        for c in held:
            assert c.request("GET", "/still").status == 200
    finally:
        for c in held:
            c.close()


# ------------------------------------------------------------------------------ 4. min_body_rate


@pytest.fixture
def gh_body_rate(apps, gatehouses):
    capture = apps.capture()
    gh = gatehouses(capture, limits={"min_body_rate": "1KiB", "header_timeout": "1s",
                                     "idle_timeout": "30s"})
    return gh, capture


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_slow_body_gets_408(gh_body_rate, framing):
    """10 B/s against a 1 KiB/s minimum: 408 soon after the 1 s grace, connection closed."""
    gh, capture = gh_body_rate
    rid = f"slow-body-{framing}"
    framing_header = (b"Content-Length: 5000\r\n" if framing == "length"
                      else b"Transfer-Encoding: chunked\r\n")
    piece = b"x" if framing == "length" else b"1\r\nx\r\n"
    with RawConn(gh.port) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: gatehouse.test\r\n" + framing_header +
               b"X-Request-ID: " + rid.encode() + b"\r\n\r\n")
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < scaled(8):
            if readable(c.sock, 0.1):
                break
            try:
                c.send(piece)
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                break
        elapsed = time.monotonic() - start
        r = c.read_response()
        assert_json_error(r, 408, "request_timeout")
        assert "close" in r.connection_tokens()
        closed, _, _ = c.wait_closed(scaled(3))
        assert closed
    assert 0.8 <= elapsed <= scaled(4), f"408 after {elapsed:.2f}s ({sent} pieces sent)"
    line = gh.wait_log("access", lambda l: l.get("request_id") == rid)
    assert line["status"] == 408
    # The app never got a complete request.
    time.sleep(0.2)
    assert not capture.requests()


def test_fast_upload_passes_min_body_rate(gh_body_rate):
    gh, capture = gh_body_rate
    body = os.urandom(2 * 1024 * 1024)
    status, _, data = http_request(gh.port, "POST", "/fast", body=body)
    assert status == 200 and data == b"ok"
    req = capture.wait_requests(1)[-1]
    assert req["body_len"] == len(body)


def test_steady_upload_above_min_rate_passes(gh_body_rate):
    """A slow but steady client (about 2 KiB/s for 3 s) is above the minimum and is served."""
    gh, capture = gh_body_rate
    total = 6000
    with RawConn(gh.port) as c:
        c.send(f"POST /steady HTTP/1.1\r\nHost: gatehouse.test\r\nContent-Length: {total}\r\n\r\n"
               .encode())
        for _ in range(total // 200):
            c.send(b"s" * 200)
            time.sleep(0.1)
        r = c.read_response()
        assert r.status == 200, r
    assert capture.wait_requests(1)[-1]["body_len"] == total


# ------------------------------------------------------------------------------ 5. slowloris


SLOWLORIS = r'''
import json, selectors, socket, sys, time
port, n, duration, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
max_opens = 4 * n
head = b"GET /slow HTTP/1.1\r\nHost: slowloris.test\r\nUser-Agent: slowloris\r\nX-Pad: " + b"a" * 100000
sel = selectors.DefaultSelector()
conns = {}          # socket -> [opened_at, bytes sent]
stats = {"opened": 0, "connect_errors": 0, "closed_by_server": 0, "replies": 0, "lifetimes": [],
         "max_concurrent": 0}
start = time.monotonic()

def open_one():
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        s.send(head[:1])
    except OSError:
        stats["connect_errors"] += 1
        s.close()
        return
    s.setblocking(False)
    conns[s] = [time.monotonic(), 1]
    sel.register(s, selectors.EVENT_READ)
    stats["opened"] += 1

def drop(s, by_server):
    opened = conns.pop(s)[0]
    sel.unregister(s)
    s.close()
    if by_server:
        stats["closed_by_server"] += 1
        stats["lifetimes"].append(round(time.monotonic() - opened, 3))

# Open n connections, 50 at a time.
while len(conns) < n and stats["opened"] + stats["connect_errors"] < max_opens:
    for _ in range(min(50, n - len(conns))):
        open_one()
    time.sleep(0.02)
stats["ramp_s"] = round(time.monotonic() - start, 3)
next_tick = time.monotonic() + interval
while time.monotonic() - start < duration:
    stats["max_concurrent"] = max(stats["max_concurrent"], len(conns))
    for key, _ in sel.select(timeout=0.05):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if data:
            stats["replies"] += 1
        drop(s, True)
    if time.monotonic() >= next_tick:
        next_tick += interval
        for s, st in list(conns.items()):
            try:
                s.send(head[st[1]:st[1] + 1])   # one more byte of a head that never ends
                st[1] += 1
            except OSError:
                drop(s, True)
        # Replace what the server closed, as a real attacker does.
        while len(conns) < n and stats["opened"] + stats["connect_errors"] < max_opens:
            open_one()
now = time.monotonic()
stats["open_at_end"] = len(conns)
stats["oldest_open_at_end"] = round(max((now - st[0] for st in conns.values()), default=0), 3)
for s in list(conns):
    s.close()
print(json.dumps(stats))
'''


@pytest.fixture
def more_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < 1100: cannot hold 500 slow connections")
    target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_slowloris_does_not_hurt_normal_clients(flask_app, gatehouses, tmp_path, more_fds):
    """500 connections each dribble one byte of a never-ending request head per second (closed
    ones are replaced) for 9 s, while a normal client sends sequential requests, each on a new
    connection.

    Criterion: the median latency under attack is at most twice the median measured without it
    (the larger of the medians just before and just after the attack: a CI machine's load from
    other suites changes over the run), plus an absolute 5 ms (x SCALE) so that a sub-millisecond
    baseline on a busy CI machine does not make scheduler noise a failure; no normal request
    fails. With
    header_timeout: 3s every slow connection is closed (silently) about 3 s after its first
    byte, so the attack never holds a connection longer than that."""
    n, duration, header_timeout = 500, 9.0, 3.0
    gh = gatehouses(flask_app, limits={"header_timeout": "3s"})
    script = tmp_path / "slowloris.py"
    script.write_text(SLOWLORIS)

    def latencies(count=None, until=None):
        out, failures = [], []
        while (count is not None and len(out) + len(failures) < count) or \
                (until is not None and not until()):
            t0 = time.perf_counter()
            try:
                status, _, body = http_request(gh.port, "GET", "/echo/normal", timeout=5)
                if status != 200:
                    failures.append(status)
                    continue
            except OSError as exc:
                failures.append(repr(exc))
                continue
            out.append(time.perf_counter() - t0)
        return out, failures

    latencies(count=20)  # warm-up: upstream connections, caches
    base, base_failures = latencies(count=100)
    assert not base_failures, base_failures
    base_median = statistics.median(base)

    attacker = subprocess.Popen([PYTHON, str(script), str(gh.port), str(n), str(duration), "1.0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Measure once the 500 are open (the ramp takes well under a second), until the end.
        time.sleep(1.5)
        attack, failures = latencies(until=lambda: attacker.poll() is not None)
        out, err = attacker.communicate(timeout=scaled(30))
    finally:
        if attacker.poll() is None:
            attacker.kill()
            attacker.wait(timeout=10)
    assert attacker.returncode == 0, err.decode(errors="replace")
    stats = json.loads(out)

    assert not failures, f"{len(failures)} normal requests failed under attack: {failures[:5]}"
    assert len(attack) >= 50, f"only {len(attack)} normal requests completed under attack"
    after, after_failures = latencies(count=100)
    assert not after_failures, after_failures
    base_median = max(base_median, statistics.median(after))
    attack_median = statistics.median(attack)
    limit = 2 * base_median + 0.005 * SCALE
    lifetimes = stats.pop("lifetimes")
    stats["lifetime_min_max"] = (min(lifetimes, default=None), max(lifetimes, default=None))
    report = (f"baseline median {base_median * 1000:.2f} ms ({len(base)} requests), under attack "
              f"{attack_median * 1000:.2f} ms ({len(attack)} requests, p90 "
              f"{statistics.quantiles(attack, n=10)[-1] * 1000:.2f} ms); limit "
              f"{limit * 1000:.2f} ms; attacker {stats}")
    print(report)
    assert attack_median <= limit, report

    # The attack really held 500 connections, and gatehouse closed every slow one in time,
    # without answering any of them.
    assert stats["connect_errors"] == 0, stats
    assert stats["max_concurrent"] == n, stats
    assert stats["closed_by_server"] >= n, stats
    assert stats["replies"] == 0, stats
    slack = 1.5 * SCALE
    assert max(lifetimes) <= header_timeout + slack, report
    assert min(lifetimes) >= header_timeout - 0.5, report
    assert stats["oldest_open_at_end"] <= header_timeout + slack, stats
    # Afterwards gatehouse holds nothing and still serves.
    assert wait_until(lambda: metric(gh, "gatehouse_connections_active") == 0, scaled(5)), \
        gh.metrics().text
    assert http_request(gh.port, "GET", "/echo/after")[0] == 200


# ------------------------------------------------------------------------------ 6. security headers


def test_production_default_is_strict(hdr, gatehouses):
    gh = gatehouses(hdr)
    r = get(gh, "/page?" + query_headers(*LEAKY))
    assert r.status == 200
    assert_headers(r, STRICT, absent=("server", "x-powered-by", "strict-transport-security"))


def test_upstream_value_wins_unless_forced(hdr, gatehouses):
    own = query_headers("X-Frame-Options:SAMEORIGIN", "Content-Security-Policy:default-src *",
                        "x-content-type-options:nosniff")
    gh = gatehouses(hdr)
    r = get(gh, "/own?" + own)
    assert single(r, "x-frame-options") == "SAMEORIGIN"
    assert single(r, "content-security-policy") == "default-src *"
    assert single(r, "x-content-type-options") == "nosniff"  # not doubled (case-insensitive)
    assert single(r, "referrer-policy") == STRICT["referrer-policy"]  # the rest still added

    forced = gatehouses(hdr, security_headers={"force": True})
    r = get(forced, "/own?" + own + "&" + query_headers(*LEAKY))
    assert_headers(r, STRICT, absent=("server", "x-powered-by"))


def test_overrides_and_custom_csp(hdr, gatehouses):
    gh = gatehouses(hdr, routes=[route("api", "/api")], security_headers={
        "content_security_policy": "default-src 'self'; img-src 'self' data:",
        "overrides": {"X-Frame-Options": "SAMEORIGIN",
                      "Cross-Origin-Resource-Policy": "same-site",
                      "X-XSS-Protection": None,
                      "permissions-policy": ""}})
    expected = {"x-frame-options": "SAMEORIGIN",
                "cross-origin-resource-policy": "same-site",
                "content-security-policy": "default-src 'self'; img-src 'self' data:",
                "x-content-type-options": "nosniff",
                "cross-origin-opener-policy": "same-origin"}
    absent = ("x-xss-protection", "permissions-policy", "server")
    r = get(gh, "/api/x?" + query_headers(*LEAKY))
    assert r.status == 200
    assert_headers(r, expected, absent)
    r = get(gh, "/nowhere")  # a local 404 gets the same set
    assert r.status == 404
    assert_headers(r, expected, absent)


def test_header_removed_by_override_is_left_to_upstream(hdr, gatehouses):
    gh = gatehouses(hdr, security_headers={"force": True, "overrides": {"X-XSS-Protection": None}})
    r = get(gh, "/x?" + query_headers("X-XSS-Protection:1; mode=block"))
    assert single(r, "x-xss-protection") == "1; mode=block"
    assert single(r, "x-frame-options") == "DENY"


def test_leaky_headers_removed_whatever_their_case(hdr, gatehouses):
    gh = gatehouses(hdr)
    r = get(gh, "/x?" + query_headers("server:uvicorn", "x-powered-by:PHP/8.1",
                                      "SERVER:again", "X-POWERED-BY:again"))
    assert r.status == 200
    assert not ({"server", "x-powered-by"} & r.header_names()), r.headers


def test_empty_csp_sends_none(hdr, gatehouses):
    gh = gatehouses(hdr, security_headers={"content_security_policy": ""})
    r = get(gh, "/x")
    assert not r.has_header("content-security-policy")
    assert single(r, "x-frame-options") == "DENY"


def test_preset_relaxed(hdr, gatehouses):
    gh = gatehouses(hdr, security_headers={"preset": "relaxed"})
    r = get(gh, "/x?" + query_headers(*LEAKY))
    assert_headers(r, RELAXED, absent=("content-security-policy", "permissions-policy",
                                       "cross-origin-opener-policy", "server", "x-powered-by"))


@pytest.mark.parametrize("setting", [{"preset": "off"}, "off"], ids=["preset-off", "off"])
def test_preset_off(hdr, gatehouses, setting):
    gh = gatehouses(hdr, security_headers=setting)
    r = get(gh, "/x?" + query_headers(*LEAKY))
    assert r.status == 200
    assert not (r.header_names() & ALL_SECURITY), r.headers
    # Nothing removed either.
    assert single(r, "server") == "gunicorn/21.2.0" and single(r, "x-powered-by") == "Express"
    r = get(gh, "/health/live")
    assert not (r.header_names() & ALL_SECURITY), r.headers


def test_development_default_is_relaxed(hdr, gatehouses):
    gh = gatehouses(hdr, environment="development")
    r = get(gh, "/x?" + query_headers(*LEAKY))
    assert_headers(r, RELAXED, absent=("content-security-policy", "permissions-policy",
                                       "cross-origin-opener-policy", "server", "x-powered-by"))


HSTS = {"hsts": {"max_age": "1d", "include_subdomains": False}}


@pytest.mark.parametrize("trusted,proto,sent", [
    (True, "https", True),      # a trusted load balancer terminated TLS
    (True, "HTTPS", True),
    (True, "http", False),
    (True, None, False),
    (False, "https", False),    # anyone can send the header
], ids=["trusted-https", "trusted-HTTPS", "trusted-http", "trusted-none", "untrusted-https"])
def test_hsts_only_for_https(hdr, gatehouses, trusted, proto, sent):
    gh = gatehouses(hdr, security_headers=HSTS, **({"trusted_proxies": TRUST} if trusted else {}))
    headers = {"X-Forwarded-Proto": proto} if proto else {}
    for path in ("/x", "/health/live"):
        r = get(gh, path, headers=headers)
        assert r.status == 200
        if sent:
            assert single(r, "strict-transport-security") == "max-age=86400", path
        else:
            assert not r.has_header("strict-transport-security"), (path, r.headers)


def test_no_hsts_in_development_even_behind_trusted_proxy(hdr, gatehouses):
    gh = gatehouses(hdr, environment="development", trusted_proxies=TRUST, security_headers=HSTS)
    r = get(gh, "/x", headers={"X-Forwarded-Proto": "https"})
    assert not r.has_header("strict-transport-security")


def test_local_replies_carry_security_headers(hdr, gatehouses):
    gh = gatehouses(hdr, routes=[route("limited", "/limited", rate_limit={"limits": "1/minute"}),
                                 route("api", "/api")])
    assert get(gh, "/limited").status == 200
    replies = {
        404: get(gh, "/nowhere"),
        429: get(gh, "/limited"),
        400: get(gh, "/api/../etc"),
        200: get(gh, "/health/live"),
    }
    for status, r in replies.items():
        assert r.status == status, r
        assert_headers(r, STRICT, absent=("server", "x-powered-by", "strict-transport-security"))


# ------------------------------------------------------------------------------ 7. CORS


CORS = {
    "origins": ["https://app.example.com", "https://*.example.com"],
    "methods": ["GET", "POST", "PUT", "DELETE"],
    "headers": ["Authorization", "Content-Type", "X-Request-ID"],
    "expose_headers": ["X-Request-ID", "RateLimit"],
    "credentials": True,
    "max_age": "10m",
}
CORS_HEADERS = ("access-control-allow-origin", "access-control-allow-credentials",
                "access-control-allow-methods", "access-control-allow-headers",
                "access-control-max-age", "access-control-expose-headers")
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def preflight(gh, path, origin, method, req_headers=None):
    h = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if req_headers is not None:
        h.append(("Access-Control-Request-Headers", req_headers))
    return get(gh, path, "OPTIONS", h)


def cors_names(r):
    return {n for n in r.header_names() if n.startswith("access-control-")}


def test_cors_allowed_preflight_answered_locally(hdr, gatehouses):
    gh = gatehouses(hdr, cors=CORS)
    before = len(hdr.requests())
    r = preflight(gh, "/api/items/7", "https://app.example.com", "PUT",
                  "content-type, x-request-id")
    assert r.status == 204, r
    assert r.body == b"" and not r.has_header("content-type"), r
    assert_headers(r, {
        "access-control-allow-origin": "https://app.example.com",
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST, PUT, DELETE",
        "access-control-allow-headers": "Content-Type, X-Request-ID",
        "access-control-max-age": "600",
        "vary": PREFLIGHT_VARY,
    })
    assert cors_names(r) == set(CORS_HEADERS) - {"access-control-expose-headers"}
    assert_headers(r, {"x-frame-options": "DENY"})  # security headers on the local answer too
    # A subdomain, no requested headers: no Allow-Headers.
    r = preflight(gh, "/api", "https://a.b.example.com", "DELETE")
    assert r.status == 204
    assert single(r, "access-control-allow-origin") == "https://a.b.example.com"
    assert not r.has_header("access-control-allow-headers")
    time.sleep(0.2)
    assert len(hdr.requests()) == before, "a preflight reached the app"


@pytest.mark.parametrize("origin,method,req_headers,message", [
    ("https://evil.com", "GET", None, "origin not allowed by CORS policy"),
    ("https://example.com", "GET", None, "origin not allowed by CORS policy"),
    ("http://app.example.com", "GET", None, "origin not allowed by CORS policy"),
    ("https://app.example.com.evil.com", "GET", None, "origin not allowed by CORS policy"),
    ("null", "GET", None, "origin not allowed by CORS policy"),
    ("https://app.example.com", "PATCH", None, "method not allowed by CORS policy"),
    ("https://app.example.com", "get", None, "method not allowed by CORS policy"),
    ("https://app.example.com", "POST", "content-type, x-secret",
     "request header not allowed by CORS policy"),
], ids=["other-site", "parent-domain", "http-scheme", "suffix-trick", "null", "method",
        "method-case", "header"])
def test_cors_denied_preflight(hdr, gatehouses, origin, method, req_headers, message):
    gh = gatehouses(hdr, cors=CORS)
    before = len(hdr.requests())
    r = preflight(gh, "/api", origin, method, req_headers)
    j = assert_json_error(r, 403, "cors_preflight_denied")
    assert j["message"] == message
    assert single(r, "vary") == PREFLIGHT_VARY
    assert not cors_names(r), r.headers
    line = gh.wait_log("security", lambda l: l.get("event") == "cors_preflight_denied")
    assert line["reason"] == message and line["request_id"] == j["request_id"]
    time.sleep(0.2)
    assert len(hdr.requests()) == before, "a denied preflight reached the app"


def test_cors_options_without_request_method_goes_to_app(hdr, gatehouses):
    gh = gatehouses(hdr, cors=CORS)
    r = get(gh, "/api/opt", "OPTIONS", {"Origin": "https://app.example.com"})
    assert r.status == 200 and r.json()["method"] == "OPTIONS"
    assert single(r, "access-control-allow-origin") == "https://app.example.com"


def test_cors_preflights_not_rate_limited(hdr, gatehouses):
    gh = gatehouses(hdr, cors=CORS, routes=[
        route("api", "/api", rate_limit={"limits": "2/minute"})])
    for _ in range(5):
        assert preflight(gh, "/api/x", "https://app.example.com", "POST").status == 204
    origin = {"Origin": "https://app.example.com"}
    for i in range(2):
        r = get(gh, "/api/x", headers=origin)
        assert r.status == 200, (i, r)
    # The third real request is limited, and the 429 is readable by the page.
    r = get(gh, "/api/x", headers=origin)
    assert r.status == 429
    assert single(r, "access-control-allow-origin") == "https://app.example.com"
    assert single(r, "vary") == "Origin"
    assert "RateLimit" in single(r, "access-control-expose-headers")


def test_cors_actual_request_headers(hdr, gatehouses):
    gh = gatehouses(hdr, cors=CORS)
    r = get(gh, "/api/data", headers={"Origin": "https://app.example.com"})
    assert r.status == 200
    assert_headers(r, {"access-control-allow-origin": "https://app.example.com",
                       "access-control-allow-credentials": "true",
                       "access-control-expose-headers": "X-Request-ID, RateLimit",
                       "vary": "Origin"})
    assert cors_names(r) == {"access-control-allow-origin", "access-control-allow-credentials",
                             "access-control-expose-headers"}
    # A disallowed or missing Origin: served, but no CORS headers (only Vary).
    for headers in ({"Origin": "https://evil.example.org.attacker.net"}, {}):
        r = get(gh, "/api/data", headers=headers)
        assert r.status == 200
        assert not cors_names(r), r.headers
        assert single(r, "vary") == "Origin"
    # Local replies too.
    r = get(gh, "/health/live", headers={"Origin": "https://x.example.com"})
    assert single(r, "access-control-allow-origin") == "https://x.example.com"


def test_cors_upstream_access_control_headers_stripped(hdr, gatehouses):
    permissive = query_headers("Access-Control-Allow-Origin:*",
                               "Access-Control-Allow-Credentials:true",
                               "Access-Control-Allow-Methods:GET, PATCH",
                               "access-control-expose-headers:X-Secret")
    gh = gatehouses(hdr, cors=CORS)
    r = get(gh, "/api?" + permissive, headers={"Origin": "https://evil.com"})
    assert r.status == 200 and not cors_names(r), r.headers
    r = get(gh, "/api?" + permissive, headers={"Origin": "https://app.example.com"})
    assert_headers(r, {"access-control-allow-origin": "https://app.example.com",
                       "access-control-allow-credentials": "true",
                       "access-control-expose-headers": "X-Request-ID, RateLimit"},
                   absent=("access-control-allow-methods",))
    # Without a cors block (production), the app's headers and preflights are left alone.
    plain = gatehouses(hdr)
    r = get(plain, "/api?" + permissive, headers={"Origin": "https://evil.com"})
    assert single(r, "access-control-allow-origin") == "*"
    assert single(r, "access-control-allow-methods") == "GET, PATCH"
    assert not r.has_header("vary")
    before = len(hdr.requests())
    r = preflight(plain, "/api/pre", "https://evil.com", "GET")
    assert r.status == 200 and r.json()["method"] == "OPTIONS"
    assert len(hdr.requests()) == before + 1


def test_cors_development_default_allows_localhost(hdr, gatehouses):
    gh = gatehouses(hdr, environment="development")
    before = len(hdr.requests())
    r = preflight(gh, "/api", "http://localhost:3000", "PATCH", "X-Anything, content-type")
    assert r.status == 204, r
    assert_headers(r, {"access-control-allow-origin": "http://localhost:3000",
                       "access-control-allow-methods": "GET, HEAD, POST, PUT, PATCH, DELETE",
                       "access-control-allow-headers": "X-Anything, content-type",
                       "vary": PREFLIGHT_VARY},
                   absent=("access-control-allow-credentials",))
    assert len(hdr.requests()) == before
    for origin in ("http://localhost:5173", "https://127.0.0.1:8443", "http://[::1]:3000",
                   "http://localhost"):
        r = get(gh, "/api", headers={"Origin": origin})
        assert single(r, "access-control-allow-origin") == origin, origin
    assert single(r, "access-control-expose-headers") == \
        "X-Request-ID, RateLimit, RateLimit-Policy, Retry-After"
    for origin in ("https://evil.com", "http://localhost.evil.com", "null"):
        r = get(gh, "/api", headers={"Origin": origin})
        assert not cors_names(r), (origin, r.headers)
    r = preflight(gh, "/api", "https://evil.com", "GET")
    assert r.status == 403


def test_cors_off_in_development(hdr, gatehouses):
    gh = gatehouses(hdr, environment="development", cors="off")
    before = len(hdr.requests())
    r = preflight(gh, "/api", "http://localhost:3000", "GET")
    assert r.status == 200 and r.json()["method"] == "OPTIONS"
    assert len(hdr.requests()) == before + 1
    assert not cors_names(r)
