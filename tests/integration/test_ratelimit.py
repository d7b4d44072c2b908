"""Rate limiting end to end (issue 3): exact counts under concurrency with several workers,
token bucket / GCRA rates, the IETF and X-RateLimit headers, 429/403 replies, stacked blocks,
exemptions, bans and the admin ban list, max_in_flight, metrics and health, hashed client IPs.

Every test starts its own gatehouse (2 workers, the module's Flask upstream) with the config it
needs. Distinct client identities come from X-Forwarded-For with 127.0.0.1 in trusted_proxies.
Loads are small and bounded: at most 8 client threads and a few hundred requests per test.
"""
import collections
import hashlib
import hmac
import http.client
import json
import math
import re
import threading
import time
import urllib.parse

import pytest

from conftest import HOST, RawConn, free_port, http_request, scaled, wait_until

TRUST = ["127.0.0.1"]
LOG_KEY = "ratelimit-integration-log-key"
RATELIMIT_RE = re.compile(r'^"([^"]+)";r=(\d+);t=(\d+)$')
RL_HEADERS = ("ratelimit-policy", "ratelimit", "x-ratelimit-limit", "x-ratelimit-remaining",
              "x-ratelimit-reset")


# ------------------------------------------------------------------------------ helpers


def route(name, prefix, rate_limit=None, upstream="app"):
    r = {"name": name, "match": {"path_prefix": prefix}, "upstream": upstream}
    if rate_limit is not None:
        r["rate_limit"] = rate_limit
    return r


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        return json.loads(self.body)

    def ratelimit(self):
        """The RateLimit header as (name, remaining, reset)."""
        m = RATELIMIT_RE.match(self.header("ratelimit", ""))
        assert m, f"bad RateLimit header: {self.headers}"
        return m.group(1), int(m.group(2)), int(m.group(3))

    def __repr__(self):
        return f"<Resp {self.status} {self.headers} {self.body[:200]!r}>"


class Client:
    """One keep-alive HTTP/1.1 connection (http.client reopens it after a Connection: close)."""

    def __init__(self, port, xff=None, timeout=10.0):
        self.conn = http.client.HTTPConnection(HOST, port, timeout=scaled(timeout))
        self.xff = xff

    def request(self, method, path, headers=None, body=None):
        h = dict(headers or {})
        if self.xff is not None:
            h.setdefault("X-Forwarded-For", self.xff)
        self.conn.request(method, path, body=body, headers=h)
        resp = self.conn.getresponse()
        data = resp.read()
        return Resp(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def get(self, path, headers=None):
        return self.request("GET", path, headers)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fetch(port, path, method="GET", xff=None, headers=None, body=None):
    """One request on a fresh connection."""
    h = dict(headers or {})
    if xff is not None:
        h["X-Forwarded-For"] = xff
    return Resp(*http_request(port, method, path, headers=h, body=body))


def admin(gh, method, path):
    status, headers, body = http_request(gh.admin_port, method, path, timeout=5)
    return status, json.loads(body) if body else None


def detailed_rate_limit(gh):
    status, _, body = http_request(gh.admin_port, "GET", "/health/detailed", timeout=5)
    assert status in (200, 503)
    return json.loads(body)["components"].get("rate_limit")


def decisions(gh, route_name, limit, key, result):
    return gh.metrics().get("gatehouse_ratelimit_decisions_total", route=route_name, limit=limit,
                            key=key, result=result)


def assert_no_rl_headers(resp):
    present = [h for h in RL_HEADERS if h in resp.headers]
    assert not present, f"unexpected rate-limit headers {present}: {resp}"


def assert_429(resp, message=None):
    assert resp.status == 429, resp
    assert resp.header("content-type", "").split(";")[0] == "application/json"
    j = resp.json()
    assert j["error"] == "rate_limit_exceeded"
    if message is not None:
        assert j["message"] == message
    assert int(resp.header("retry-after")) == j["retry_after"] >= 1
    return j


def hammer(port, path, clients, per_client, xff_of=lambda i: None, fresh_every=2):
    """`clients` threads start together; each sends `per_client` requests as fast as it can, on
    its own keep-alive connection except every `fresh_every`-th request, which opens a new
    connection (so SO_REUSEPORT spreads connections over both workers). Returns
    [(client, Resp)] in completion order."""
    barrier = threading.Barrier(clients)
    lock = threading.Lock()
    results, errors = [], []

    def run(i):
        try:
            with Client(port, xff=xff_of(i)) as c:
                barrier.wait(timeout=scaled(10))
                for j in range(per_client):
                    if fresh_every and j % fresh_every == fresh_every - 1:
                        r = fetch(port, path, xff=xff_of(i))
                    else:
                        r = c.get(path)
                    with lock:
                        results.append((i, r))
        except Exception as exc:  # noqa: BLE001 - reported below
            with lock:
                errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=scaled(30))
    assert not any(t.is_alive() for t in threads), "client threads hung"
    assert not errors, errors
    return results


# ------------------------------------------------------------------------------ 1. exact counts


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window"])
def test_exact_count_under_concurrency_two_workers(flask_app, gatehouses, algorithm):
    """The issue's acceptance test: 40 concurrent requests against 10/minute with 2 workers ->
    exactly 10 admitted, 30 rejected (one shared store, no per-worker counters)."""
    gh = gatehouses(flask_app, workers=2, routes=[
        route("gen", "/api/generate", {"algorithm": algorithm, "limits": "10/minute"})])
    results = hammer(gh.port, "/api/generate", clients=8, per_client=5)
    statuses = collections.Counter(r.status for _, r in results)
    assert statuses == {200: 10, 429: 30}, statuses
    for _, r in results:
        if r.status == 200:
            assert r.json()["server"] == "a" and r.json()["path"] == "/api/generate"
        else:
            assert_429(r, "Rate limit exceeded: 10 per 1 minute")
        assert r.header("x-ratelimit-limit") == "10"
    m = gh.metrics()
    labels = dict(route="gen", limit="10/minute", key="ip")
    assert m.get("gatehouse_ratelimit_decisions_total", result="allowed", **labels) == 10
    assert m.get("gatehouse_ratelimit_decisions_total", result="rejected", **labels) == 30
    assert m.get("gatehouse_ratelimit_keys") == 1


def test_exact_count_global_key_across_identities(flask_app, gatehouses):
    """key: global -> one bucket for 8 distinct client identities (X-Forwarded-For)."""
    gh = gatehouses(flask_app, workers=2, trusted_proxies=TRUST, routes=[
        route("gen", "/", {"key": "global", "limits": "10/minute"})])
    results = hammer(gh.port, "/echo", clients=8, per_client=5,
                     xff_of=lambda i: f"198.51.100.{i + 1}")
    statuses = collections.Counter(r.status for _, r in results)
    assert statuses == {200: 10, 429: 30}, statuses
    assert gh.metrics().get("gatehouse_ratelimit_keys") == 1


def test_exact_count_per_ip_across_identities(flask_app, gatehouses):
    """key: ip with trusted XFF -> every identity gets exactly its own 3."""
    gh = gatehouses(flask_app, workers=2, trusted_proxies=TRUST, routes=[
        route("gen", "/", {"key": "ip", "limits": "3/minute"})])
    results = hammer(gh.port, "/echo", clients=8, per_client=5,
                     xff_of=lambda i: f"198.51.100.{i + 1}")
    per_client = collections.defaultdict(collections.Counter)
    for i, r in results:
        per_client[i][r.status] += 1
    for i in range(8):
        assert per_client[i] == {200: 3, 429: 2}, (i, per_client[i])
    assert gh.metrics().get("gatehouse_ratelimit_keys") == 8


def test_xff_ignored_without_trusted_proxies(flask_app, gatehouses):
    gh = gatehouses(flask_app, routes=[route("api", "/", {"limits": "2/minute"})])
    got = [fetch(gh.port, "/echo", xff=f"198.51.100.{i}").status for i in range(1, 4)]
    assert got == [200, 200, 429]


def test_xff_rightmost_untrusted_decides(flask_app, gatehouses):
    """With trusted proxies the client is the rightmost untrusted X-Forwarded-For entry: a client
    cannot escape its bucket by prepending made-up addresses."""
    gh = gatehouses(flask_app, trusted_proxies=["127.0.0.1", "10.0.0.0/8"],
                    routes=[route("api", "/", {"limits": "1/minute"})])
    assert fetch(gh.port, "/echo", xff="203.0.113.5, 10.1.2.3").status == 200
    for xff in ("1.2.3.4, 203.0.113.5", "5.6.7.8, 203.0.113.5, 10.9.9.9",
                "garbage, 203.0.113.5", "203.0.113.5"):
        assert fetch(gh.port, "/echo", xff=xff).status == 429, xff
    assert fetch(gh.port, "/echo", xff="203.0.113.5, 203.0.113.6").status == 200


# ------------------------------------------------------------------------------ 2. steady rates


def run_rate(port, path, clients, burst_each, duration, pace):
    """Phase 1 (burst): all clients start together and each sends `burst_each` requests back to
    back. Phase 2: each keeps sending one request every `pace` seconds until `duration` after
    the start. Every request is recorded as (phase, sent, received, Resp)."""
    start = []
    barrier = threading.Barrier(clients, action=lambda: start.append(time.monotonic()))
    lock = threading.Lock()
    records, errors = [], []

    def run(i):
        try:
            with Client(port) as c:
                barrier.wait(timeout=scaled(10))
                out = []
                for _ in range(burst_each):
                    t0 = time.monotonic()
                    r = c.get(path)
                    out.append(("burst", t0, time.monotonic(), r))
                end = start[0] + duration
                slot = time.monotonic()
                while True:
                    now = time.monotonic()
                    if now >= end:
                        break
                    if slot > now:
                        time.sleep(min(slot, end) - now)
                        continue
                    t0 = time.monotonic()
                    r = c.get(path)
                    out.append(("steady", t0, time.monotonic(), r))
                    slot += pace
                with lock:
                    records.extend(out)
        except Exception as exc:  # noqa: BLE001
            with lock:
                errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=scaled(30))
    assert not any(t.is_alive() for t in threads), "client threads hung"
    assert not errors, errors
    return records


@pytest.mark.parametrize("algorithm", ["token_bucket", "gcra"])
def test_burst_then_steady_rate(flask_app, gatehouses, algorithm):
    """100/second with burst 20, 2 workers, 8 clients: the burst admits 20, then the bucket
    refills at 100/s, so over a measured interval S (first to last request the server handled)
    admitted == 20 + floor(100 * S).

    Why a tolerance: S is measured on the client side. The server handled the first request
    somewhere between its send and its response, and the last request likewise, so the true
    interval lies in [S_lo, S_hi] = [last_sent - first_received, last_received - first_sent].
    On top of that, the token that accrues after the last request is lost (< 1 token at the
    offered ~400 req/s) and the float/rounding of a whole-token count: +-2 around the bracket.
    Under load the bracket widens by itself (it is computed from the measured round trips)."""
    gh = gatehouses(flask_app, workers=2, routes=[
        route("tb", "/", {"algorithm": algorithm, "limits": "100/second", "burst": 20})])
    records = run_rate(gh.port, "/echo", clients=8, burst_each=5, duration=1.0, pace=0.02)

    for _, _, _, r in records:
        assert r.status in (200, 429), r
        if r.status == 429:
            j = assert_429(r, "Rate limit exceeded: 100 per 1 second")
            assert j["retry_after"] == 1  # the next token is at most 10 ms away
            assert r.header("retry-after") == "1"

    burst = [rec for rec in records if rec[0] == "burst"]
    burst_admitted = sum(1 for rec in burst if rec[3].status == 200)
    burst_span = max(rec[2] for rec in burst) - min(rec[1] for rec in burst)
    # Exactly 20 when the 40 burst requests are handled within one refill interval (10 ms);
    # a slower burst legitimately gains the tokens that refilled meanwhile.
    assert 20 <= burst_admitted <= 20 + math.floor(100 * burst_span) + 1, \
        (burst_admitted, burst_span)
    assert burst_admitted < len(burst), "no 429 in a burst of 40 against burst 20"

    admitted = sum(1 for rec in records if rec[3].status == 200)
    first_sent = min(rec[1] for rec in records)
    first_received = min(rec[2] for rec in records)
    last_sent = max(rec[1] for rec in records)
    last_received = max(rec[2] for rec in records)
    s_lo = last_sent - first_received
    s_hi = last_received - first_sent
    assert 0.8 < s_lo <= s_hi, (s_lo, s_hi)
    lo = 20 + math.floor(100 * s_lo) - 2
    hi = 20 + math.floor(100 * s_hi) + 2
    assert lo <= admitted <= hi, \
        f"{algorithm}: admitted {admitted} of {len(records)}, expected 20 + floor(100*S) " \
        f"with S in [{s_lo:.4f}, {s_hi:.4f}] -> [{lo}, {hi}]"
    # ~400/s offered against 100/s: well over 100 refused on an idle machine; 50 still shows the
    # limit was exercised when a loaded one sends fewer.
    assert len(records) - admitted > 50, "offered load did not exceed the rate"


# ------------------------------------------------------------------------------ 3. headers


@pytest.fixture(scope="module")
def headers_gh(flask_app, module_gatehouses):
    return module_gatehouses(flask_app, routes=[
        route("both", "/both", {"limits": "5/minute; 100/hour"}),
        route("ietf", "/ietf", {"limits": "2/minute", "headers": ["ietf"]}),
        route("x", "/x", {"limits": "2/minute", "headers": "x-ratelimit"}),
        route("none", "/none", {"limits": "2/minute", "headers": "none"}),
        route("fw", "/fw", {"algorithm": "fixed_window", "limits": "3 per 2 seconds"}),
        route("sw", "/sw", {"algorithm": "sliding_window", "limits": "3 per 2 seconds"}),
        route("tb", "/tb", {"algorithm": "token_bucket", "limits": "3 per 2 seconds"}),
        route("gcra", "/gcra", {"algorithm": "gcra", "limits": "3 per 2 seconds"}),
        route("other", "/", {"limits": "1/minute"}),
    ])


def test_ietf_and_x_headers_decrement(headers_gh):
    policy = '"minute";q=5;w=60, "hour";q=100;w=3600'
    with Client(headers_gh.port) as c:
        for i in range(5):
            r = c.get("/both/x")
            assert r.status == 200, r
            assert r.header("ratelimit-policy") == policy
            name, remaining, reset = r.ratelimit()
            assert (name, remaining) == ("minute", 4 - i)  # the most constraining rate
            assert 118 <= reset <= 120  # sliding window: until the count slid out (2 periods)
            assert r.header("x-ratelimit-limit") == "5"
            assert r.header("x-ratelimit-remaining") == str(4 - i)
            assert abs(int(r.header("x-ratelimit-reset")) - (time.time() + reset)) <= 3
            assert "retry-after" not in r.headers
        r = c.get("/both/x")
        j = assert_429(r, "Rate limit exceeded: 5 per 1 minute")
        assert r.header("ratelimit-policy") == policy
        name, remaining, reset = r.ratelimit()
        assert (name, remaining) == ("minute", 0)
        # 5 requests at the start of a 60 s sliding window: the 6th fits once the previous
        # window's weight drops to 4, i.e. 12 s into the next window: 72 s.
        assert 70 <= j["retry_after"] <= 72
        assert reset == j["retry_after"]
        assert r.header("x-ratelimit-remaining") == "0"
        assert abs(int(r.header("x-ratelimit-reset")) - (time.time() + reset)) <= 3


def test_headers_ietf_only(headers_gh):
    with Client(headers_gh.port) as c:
        r = c.get("/ietf")
        assert r.status == 200
        assert r.header("ratelimit-policy") == '"minute";q=2;w=60'
        assert r.ratelimit()[:2] == ("minute", 1)
        assert not {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} \
            & set(r.headers)
        c.get("/ietf")
        r = c.get("/ietf")
        assert_429(r)
        assert r.ratelimit()[:2] == ("minute", 0)
        assert "x-ratelimit-limit" not in r.headers


def test_headers_x_only(headers_gh):
    with Client(headers_gh.port) as c:
        r = c.get("/x")
        assert r.status == 200
        assert r.header("x-ratelimit-limit") == "2"
        assert r.header("x-ratelimit-remaining") == "1"
        assert "ratelimit" not in r.headers and "ratelimit-policy" not in r.headers
        c.get("/x")
        r = c.get("/x")
        assert_429(r)
        assert r.header("x-ratelimit-remaining") == "0"
        assert "ratelimit" not in r.headers


def test_headers_none(headers_gh):
    with Client(headers_gh.port) as c:
        for _ in range(2):
            r = c.get("/none")
            assert r.status == 200
            assert_no_rl_headers(r)
        r = c.get("/none")
        assert_429(r)  # Retry-After is still sent
        assert_no_rl_headers(r)


# Time from the key's first request until a 4th request fits, for "3 per 2 seconds" sent at once.
REAL_WAIT = {"fw": 2.0, "sw": 2.0 + 2.0 / 3, "tb": 2.0 / 3, "gcra": 2.0 / 3}


@pytest.mark.parametrize("path", ["fw", "sw", "tb", "gcra"])
def test_retry_after_is_enough(headers_gh, path):
    """After a 429, waiting Retry-After seconds is enough; clearly less is not."""
    with Client(headers_gh.port) as c:
        t_first = time.monotonic()
        for _ in range(3):
            assert c.get(f"/{path}").status == 200
        r = c.get(f"/{path}")
        t_reject = time.monotonic()
        j = assert_429(r, "Rate limit exceeded: 3 per 2 seconds")
        retry = j["retry_after"]
        # The server computed it at some point within [t_first, t_reject].
        assert math.ceil(REAL_WAIT[path] - (t_reject - t_first)) <= retry \
            <= math.ceil(REAL_WAIT[path]), (retry, t_reject - t_first)
        if path == "fw":
            assert r.header("ratelimit-policy") == '"2seconds";q=3;w=2'
            assert r.ratelimit()[:2] == ("2seconds", 0)
        # Clearly less: a quarter of the real wait.
        time.sleep(REAL_WAIT[path] / 4)
        early = c.get(f"/{path}")
        if time.monotonic() - t_first < REAL_WAIT[path] * 0.9:
            assert early.status == 429, early
        time.sleep(max(0.0, t_reject + retry - time.monotonic()))
        r = c.get(f"/{path}")
        assert r.status == 200, (retry, r)


# ------------------------------------------------------------------------------ 4. reply shape


def test_429_json_shape_and_request_id(headers_gh):
    with Client(headers_gh.port) as c:
        assert c.get("/shape").status == 200
        r = c.get("/shape")
    assert r.status == 429
    assert r.header("content-type") == "application/json"
    assert r.header("cache-control") == "no-store"
    j = r.json()
    assert list(j) == ["error", "message", "retry_after", "request_id"]
    assert j["error"] == "rate_limit_exceeded"
    assert j["message"] == "Rate limit exceeded: 1 per 1 minute"
    assert isinstance(j["retry_after"], int) and j["retry_after"] == int(r.header("retry-after"))
    assert j["request_id"] == r.header("x-request-id") and j["request_id"]
    line = headers_gh.wait_log("access", lambda l: l.get("request_id") == j["request_id"])
    assert line["status"] == 429 and line["route"] == "other" and line["path"] == "/shape"


def test_head_429_has_no_body(flask_app, gatehouses):
    gh = gatehouses(flask_app, routes=[route("api", "/", {"limits": "1/minute"})])
    with RawConn(gh.port) as c:
        assert c.request("HEAD", "/echo").status == 200
        r = c.request("HEAD", "/echo")
        assert r.status == 429
        assert r.body == b""
        assert r.header("retry-after")
        # Nothing stray follows the head: the next response on the connection parses.
        r2 = c.request("GET", "/echo")
        assert r2.status == 429
        assert r2.json()["error"] == "rate_limit_exceeded"
        # Health endpoints are answered before routing: never limited.
        for _ in range(3):
            r = c.request("GET", "/health/live")
            assert r.status == 200
            assert "retry-after" not in {n.lower() for n, _ in r.headers}
            assert not {n.lower() for n, _ in r.headers} & set(RL_HEADERS)


@pytest.mark.parametrize("sent", ["whole", "partial", "expect-100", "chunked"])
def test_post_with_body_429_closes_cleanly(flask_app, gatehouses, sent):
    gh = gatehouses(flask_app, routes=[route("api", "/", {"limits": "1/minute"})])
    assert fetch(gh.port, "/echo").status == 200
    body = b"x" * 20000
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\n"
    with RawConn(gh.port) as c:
        if sent == "whole":
            c.send(head + b"Content-Length: 20000\r\n\r\n" + body)
        elif sent == "partial":  # announce 200000 bytes, send a tenth
            c.send(head + b"Content-Length: 200000\r\n\r\n" + body)
        elif sent == "expect-100":  # the body is never sent: no 100 Continue, just the 429
            c.send(head + b"Content-Length: 20000\r\nExpect: 100-continue\r\n\r\n")
        else:  # first chunk only
            c.send(head + b"Transfer-Encoding: chunked\r\n\r\n4e20\r\n" + body + b"\r\n")
        r = c.read_response("POST")
        assert r.status == 429
        assert r.interim == []
        assert r.json()["error"] == "rate_limit_exceeded"
        assert "close" in r.connection_tokens()
        closed, extra, _ = c.wait_closed(scaled(5))
        assert closed and extra == b""


# ------------------------------------------------------------------------------ 5. stacked blocks


def test_stacked_blocks_header_key_and_global(flask_app, gatehouses):
    gh = gatehouses(flask_app, trusted_proxies=TRUST, routes=[
        route("v2", "/v2", [{"key": "header:X-API-Key", "limits": "3/minute"},
                            {"key": "global", "limits": "8/minute"}])])
    port = gh.port
    policy = '"header-X-API-Key-minute";q=3;w=60, "global-minute";q=8;w=60'

    def call(key=None, xff="198.51.100.1"):
        return fetch(port, "/v2/x", xff=xff, headers={"X-API-Key": key} if key else None)

    # API key k1: 3 admitted, then rejected by the per-key block (twice).
    got = [call("k1") for _ in range(4)]
    got.append(fetch(port, "/v2/x", xff="198.51.100.1", headers={"x-api-key": "k1"}))
    assert [r.status for r in got] == [200, 200, 200, 429, 429]
    assert got[0].header("ratelimit-policy") == policy
    assert got[0].ratelimit()[:2] == ("header-X-API-Key-minute", 2)
    assert_429(got[3], "Rate limit exceeded: 3 per 1 minute")
    assert got[3].header("x-ratelimit-limit") == "3"
    # No header: counted per client IP, not in one shared bucket and not in k1's bucket.
    got = [call(None, "198.51.100.7") for _ in range(4)]
    assert [r.status for r in got] == [200, 200, 200, 429]
    assert_429(got[3], "Rate limit exceeded: 3 per 1 minute")
    # Another IP without the header: its own bucket, but the global block has 2 left (8 - 6):
    # the 3 rejected requests above consumed nothing from it.
    got = [call(None, "198.51.100.8") for _ in range(3)]
    assert [r.status for r in got] == [200, 200, 429]
    assert got[1].ratelimit()[:2] == ("global-minute", 0)
    assert_429(got[2], "Rate limit exceeded: 8 per 1 minute")
    assert got[2].header("x-ratelimit-limit") == "8"
    # A fresh API key is now refused by the global block only.
    assert_429(call("k2"), "Rate limit exceeded: 8 per 1 minute")

    m = gh.metrics()

    def d(limit, key, result):
        return m.get("gatehouse_ratelimit_decisions_total", route="v2", limit=limit, key=key,
                     result=result)
    assert d("3/minute", "header:X-API-Key", "allowed") == 8
    assert d("8/minute", "global", "allowed") == 8
    assert d("3/minute", "header:X-API-Key", "rejected") == 3
    assert d("8/minute", "global", "rejected") == 2


# ------------------------------------------------------------------------------ 6. exemptions


def test_exemptions_off_route_and_unrouted(flask_app, gatehouses):
    gh = gatehouses(flask_app, trusted_proxies=TRUST,
                    rate_limit={"limits": "2/minute", "exempt_paths": ["/api/public/"],
                                "exempt_ips": ["203.0.113.0/24"]},
                    routes=[route("api", "/api"), route("free", "/free", "off")])
    port = gh.port
    a = "198.51.100.1"
    assert [fetch(port, "/api/x", xff=a).status for _ in range(3)] == [200, 200, 429]
    for _ in range(4):
        r = fetch(port, "/api/public/x", xff=a)  # exempt path, even for an exhausted client
        assert r.status == 200
        assert_no_rl_headers(r)
        r = fetch(port, "/api/x", xff="203.0.113.9")  # exempt network
        assert r.status == 200
        assert_no_rl_headers(r)
        r = fetch(port, "/free/x", xff=a)  # rate_limit: off
        assert r.status == 200
        assert_no_rl_headers(r)
        r = fetch(port, "/nothing", xff=a)  # no route: 404, never limited
        assert r.status == 404
        assert_no_rl_headers(r)
    assert fetch(port, "/api/x", xff=a).status == 429
    # Another client still has its own 2 (the exempt traffic consumed nothing).
    assert [fetch(port, "/api/x", xff="198.51.100.2").status for _ in range(3)] == [200, 200, 429]
    assert gh.metrics().value("gatehouse_local_replies_total", status="429") == 3


def test_inherited_defaults_share_counters(flask_app, gatehouses):
    """Routes without rate_limit share the top-level counters; a route block inherits algorithm,
    headers and exemptions but not limits or max_in_flight, and counts separately."""
    gh = gatehouses(flask_app, rate_limit={"algorithm": "fixed_window", "limits": "3/minute",
                                           "headers": ["ietf"], "max_in_flight": 5,
                                           "exempt_paths": ["/own/public"]},
                    routes=[route("a", "/a"), route("b", "/b"),
                            route("own", "/own", {"limits": "2/minute"})])
    port = gh.port
    assert [fetch(port, p).status for p in ("/a", "/b", "/a", "/b", "/a")] == \
        [200, 200, 200, 429, 429]
    r = fetch(port, "/own")
    assert r.status == 200
    assert r.header("ratelimit-policy") == '"minute";q=2;w=60'
    assert "x-ratelimit-limit" not in r.headers  # headers: [ietf] inherited
    name, remaining, reset = r.ratelimit()
    assert (name, remaining) == ("minute", 1)
    assert 58 <= reset <= 60  # fixed_window inherited (a sliding window would say 120)
    assert fetch(port, "/own").status == 200
    assert fetch(port, "/own").status == 429
    for _ in range(3):  # exempt_paths inherited
        r = fetch(port, "/own/public")
        assert r.status == 200
        assert_no_rl_headers(r)
    m = gh.metrics()
    mif = dict(limit="max_in_flight", key="ip", result="allowed")
    assert m.get("gatehouse_ratelimit_decisions_total", route="a", **mif) == 3
    assert m.get("gatehouse_ratelimit_decisions_total", route="own", **mif) is None


def test_partially_exempt_stack_reports_applied_blocks(flask_app, gatehouses):
    """A path exempt from one block of a stack is still limited by the others, and the headers
    describe only the blocks that applied."""
    gh = gatehouses(flask_app, routes=[
        route("v3", "/v3", [{"key": "ip", "limits": "2/minute", "exempt_paths": ["/v3/open"]},
                            {"key": "global", "limits": "4/minute"}])])
    r = fetch(gh.port, "/v3/x")
    assert r.header("ratelimit-policy") == '"ip-minute";q=2;w=60, "global-minute";q=4;w=60'
    assert r.ratelimit()[:2] == ("ip-minute", 1)
    got = [fetch(gh.port, "/v3/open") for _ in range(4)]
    assert [x.status for x in got] == [200, 200, 200, 429]
    assert got[0].header("ratelimit-policy") == '"global-minute";q=4;w=60'
    assert got[0].ratelimit()[:2] == ("global-minute", 2)
    assert_429(got[3], "Rate limit exceeded: 4 per 1 minute")


def test_ip_route_key_gives_each_route_its_counters(flask_app, gatehouses):
    gh = gatehouses(flask_app, rate_limit={"key": ["ip", "route"], "limits": "2/minute"},
                    routes=[route("a", "/a"), route("b", "/b")])
    assert [fetch(gh.port, "/a").status for _ in range(3)] == [200, 200, 429]
    assert [fetch(gh.port, "/b").status for _ in range(3)] == [200, 200, 429]
    m = gh.metrics()
    for name in ("a", "b"):
        assert m.get("gatehouse_ratelimit_decisions_total", route=name, limit="2/minute",
                     key="ip+route", result="rejected") == 1
    assert m.get("gatehouse_ratelimit_keys") == 2


# ------------------------------------------------------------------------------ 7. bans


def ban_lines(gh, key=None):
    return [l for l in gh.log_lines("security")
            if l.get("event") == "ban" and (key is None or l.get("key") == key)]


def test_ban_lifecycle_and_admin(flask_app, gatehouses):
    gh = gatehouses(flask_app, trusted_proxies=TRUST,
                    rate_limit={"algorithm": "fixed_window", "limits": "2/second",
                                "ban": {"after": 3, "within": "1m", "for": "60s"}},
                    routes=[route("api", "/")])
    a, b = "198.51.100.1", "198.51.100.2"
    with Client(gh.port, xff=a) as c:
        t_first = time.monotonic()
        got = [c.get("/echo") for _ in range(7)]
    assert [r.status for r in got] == [200, 200, 429, 429, 429, 403, 403]
    for r in got[5:]:
        assert r.header("content-type") == "application/json"
        j = r.json()
        assert list(j) == ["error", "message", "retry_after", "request_id"]
        assert j["error"] == "banned"
        assert 58 <= j["retry_after"] <= 60
        assert int(r.header("retry-after")) == j["retry_after"]
        assert j["message"] == \
            f"Too many requests were rejected; banned for {j['retry_after']} more seconds"
        assert j["request_id"] == r.header("x-request-id")
        assert_no_rl_headers(r)

    line = gh.wait_log("security", lambda l: l.get("event") == "ban")
    assert line["type"] == "security"
    assert line["key"] == f"ip={a}"
    assert line["reason"] == "route=api limit=2/second"
    assert line["request_id"] == got[4].header("x-request-id")  # the 3rd rejection started it

    # Another client is not affected.
    assert fetch(gh.port, "/echo", xff=b).status == 200

    status, j = admin(gh, "GET", "/admin/bans")
    assert status == 200
    assert j["count"] == 1 and len(j["bans"]) == 1
    assert j["bans"][0]["key"] == f"ip={a}"
    assert j["bans"][0]["reason"] == "route=api limit=2/second"
    assert 58 <= j["bans"][0]["expires_in"] <= 60
    m = gh.metrics()
    assert m.get("gatehouse_ratelimit_bans_active") == 1
    assert m.get("gatehouse_ratelimit_bans_total") == 1
    assert m.get("gatehouse_ratelimit_decisions_total", route="api", limit="ban", key="ip",
                 result="banned") == 2

    # Ban b as well (it has 1 request in its window so far).
    with Client(gh.port, xff=b) as c:
        statuses = []
        for _ in range(10):
            statuses.append(c.get("/echo").status)
            if statuses[-1] == 403:
                break
    # 1 admitted (2 if its 1-second window rolled over meanwhile), 3 rejections, then banned.
    assert statuses[-1] == 403 and statuses.count(429) == 3, statuses
    assert statuses[:-4] in ([200], [200, 200]) and statuses[-4:-1] == [429] * 3, statuses
    status, j = admin(gh, "GET", "/admin/bans")
    assert [x["key"] for x in j["bans"]] == [f"ip={a}", f"ip={b}"] and j["count"] == 2

    # Still one ban line per key, however many 403s followed.
    time.sleep(0.3)
    assert len(ban_lines(gh, f"ip={a}")) == 1
    assert len(ban_lines(gh, f"ip={b}")) == 1

    # Lift a's ban.
    q = urllib.parse.quote(f"ip={a}", safe="")
    assert admin(gh, "DELETE", f"/admin/bans?key={q}") == (200, {"lifted": 1})
    status, j = admin(gh, "DELETE", f"/admin/bans?key={q}")
    assert status == 404 and j["error"] == "not_found"
    status, j = admin(gh, "GET", "/admin/bans")
    assert [x["key"] for x in j["bans"]] == [f"ip={b}"] and j["count"] == 1
    assert gh.metrics().get("gatehouse_ratelimit_bans_active") == 1
    gh.wait_log("security", lambda l: l.get("event") == "ban_lifted" and l.get("key") == f"ip={a}")

    # After the lift a is limited again, not banned: its next 1-second window (windows follow
    # each other from its first request) admits 2.
    next_window = t_first + math.floor(time.monotonic() - t_first) + 1
    time.sleep(max(0.0, next_window + 0.1 - time.monotonic()))
    with Client(gh.port, xff=a) as c:
        assert [c.get("/echo").status for _ in range(3)] == [200, 200, 429]

    # Admin API errors.
    assert admin(gh, "POST", "/admin/bans")[0] == 405
    assert admin(gh, "DELETE", "/admin/bans?nokey=1")[0] == 400

    # Lift everything.
    assert admin(gh, "DELETE", "/admin/bans") == (200, {"lifted": 1})
    assert admin(gh, "GET", "/admin/bans") == (200, {"bans": [], "count": 0})
    assert fetch(gh.port, "/echo", xff=b).status != 403
    assert gh.metrics().get("gatehouse_ratelimit_bans_active") == 0


def test_ban_expires(flask_app, gatehouses):
    gh = gatehouses(flask_app, rate_limit={"limits": "1/minute",
                                           "ban": {"after": 2, "within": "1m", "for": "2s"}},
                    routes=[route("api", "/")])
    with Client(gh.port) as c:
        assert [c.get("/echo").status for _ in range(3)] == [200, 429, 429]
        r = c.get("/echo")
        assert r.status == 403
        retry = int(r.header("retry-after"))
        assert 1 <= retry <= 2
        t_banned = time.monotonic()
        status, j = admin(gh, "GET", "/admin/bans")
        assert j["count"] == 1 and j["bans"][0]["key"] == "ip=127.0.0.1"
        assert 1 <= j["bans"][0]["expires_in"] <= 2
        time.sleep(max(0.0, t_banned + retry - time.monotonic()))
        r = c.get("/echo")
        assert r.status == 429, r  # the ban is over; the 1/minute limit still applies
    assert admin(gh, "GET", "/admin/bans") == (200, {"bans": [], "count": 0})
    assert gh.metrics().get("gatehouse_ratelimit_bans_active") == 0
    assert len(ban_lines(gh)) == 1


def test_ban_under_concurrency_logged_once(flask_app, gatehouses):
    gh = gatehouses(flask_app, workers=2,
                    rate_limit={"limits": "10/minute",
                                "ban": {"after": 5, "within": "1m", "for": "60s"}},
                    routes=[route("api", "/")])
    results = hammer(gh.port, "/echo", clients=8, per_client=5)
    statuses = collections.Counter(r.status for _, r in results)
    # A request that passed the ban check just before the 5th rejection started the ban is
    # still answered 429, so 429s are at least 5; nothing else is admitted.
    assert statuses[200] == 10 and statuses[429] >= 5 and statuses[429] + statuses[403] == 30, \
        statuses
    gh.wait_log("security", lambda l: l.get("event") == "ban")
    time.sleep(0.3)
    assert len(ban_lines(gh)) == 1
    assert admin(gh, "GET", "/admin/bans")[1]["count"] == 1


def test_ban_covers_every_spelling_of_an_address(flask_app, gatehouses):
    gh = gatehouses(flask_app, trusted_proxies=TRUST,
                    rate_limit={"limits": "1/minute",
                                "ban": {"after": 1, "within": "1m", "for": "60s"}},
                    routes=[route("api", "/")])
    assert [fetch(gh.port, "/echo", xff="2001:db8::1").status for _ in range(3)] == \
        [200, 429, 403]
    assert [fetch(gh.port, "/echo", xff="198.51.100.1").status for _ in range(3)] == \
        [200, 429, 403]
    # The same two addresses spelt differently (the limiter already counts them as the same
    # clients: see test_limiter_counts_every_spelling_once).
    for xff in ("2001:0db8:0000::1", "2001:DB8::1", "::ffff:198.51.100.1"):
        assert fetch(gh.port, "/echo", xff=xff).status == 403, xff
    assert admin(gh, "GET", "/admin/bans")[1]["count"] == 2


def test_limiter_counts_every_spelling_once(flask_app, gatehouses):
    gh = gatehouses(flask_app, trusted_proxies=TRUST, routes=[
        route("api", "/", {"limits": "2/minute", "max_in_flight": 1})])

    # One keep-alive connection: each request's in-flight slot is released before the next one
    # is read. (On fresh connections the next request may reach another worker a few
    # microseconds before the first one's slot is released, and max_in_flight: 1 refuses it.)
    def statuses(spellings):
        conn = http.client.HTTPConnection(HOST, gh.port, timeout=10)
        try:
            out = []
            for x in spellings:
                conn.request("GET", "/echo", headers={"X-Forwarded-For": x})
                resp = conn.getresponse()
                resp.read()
                out.append(resp.status)
            return out
        finally:
            conn.close()

    assert statuses(("2001:db8::1", "2001:0DB8:0:0::1", "2001:db8:0::1")) == [200, 200, 429]
    assert statuses(("198.51.100.1", "::ffff:198.51.100.1", "198.51.100.1")) == [200, 200, 429]
    assert gh.metrics().get("gatehouse_ratelimit_keys") == 2


def test_ban_counts_rejections_within_window_only(flask_app, gatehouses):
    gh = gatehouses(flask_app, rate_limit={"limits": "1/minute",
                                           "ban": {"after": 2, "within": "1s", "for": "60s"}},
                    routes=[route("api", "/")])
    with Client(gh.port) as c:
        assert [c.get("/echo").status for _ in range(2)] == [200, 429]
        time.sleep(1.2)  # the first rejection is out of the 1 s window
        assert c.get("/echo").status == 429
        assert admin(gh, "GET", "/admin/bans")[1]["count"] == 0
        assert [c.get("/echo").status for _ in range(2)] == [429, 403]
    assert admin(gh, "GET", "/admin/bans")[1]["count"] == 1


# ------------------------------------------------------------------------------ 8. max_in_flight


def test_max_in_flight(flask_app, gatehouses):
    gh = gatehouses(flask_app, trusted_proxies=TRUST,
                    routes=[route("api", "/", {"max_in_flight": 2})])
    slow = scaled(1.5)
    a = "198.51.100.1"
    results = []

    def slow_call():
        results.append(fetch(gh.port, f"/slow?s={slow}", xff=a).status)

    threads = [threading.Thread(target=slow_call) for _ in range(2)]
    for t in threads:
        t.start()
    allowed = lambda: decisions(gh, "api", "max_in_flight", "ip", "allowed") == 2  # noqa: E731
    assert wait_until(allowed, scaled(5), 0.02), "the slow requests never got in flight"
    r = fetch(gh.port, "/echo", xff=a)
    assert r.status == 429, r
    j = r.json()
    assert j["error"] == "too_many_concurrent_requests"
    assert j["message"] == "Too many concurrent requests: at most 2 at a time"
    assert j["retry_after"] == 1 and r.header("retry-after") == "1"
    assert j["request_id"] == r.header("x-request-id")
    # The cap is per key: another client is not affected.
    assert fetch(gh.port, "/echo", xff="198.51.100.2").status == 200
    for t in threads:
        t.join(timeout=scaled(15))
    assert sorted(results) == [200, 200]
    # Slots were released: two at once pass again, and so do later ones. (A client may read its
    # answer a moment before gatehouse ends the request and frees its slot: wait for that.)
    def settled():
        return wait_until(lambda: gh.metrics().value("gatehouse_requests_in_flight") == 0,
                          scaled(5), 0.02)
    assert settled()
    both = []
    threads = [threading.Thread(target=lambda: both.append(fetch(gh.port, "/slow?s=0.3",
                                                                 xff=a).status))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=scaled(15))
    assert both == [200, 200]
    assert settled()
    assert fetch(gh.port, "/echo", xff=a).status == 200
    assert decisions(gh, "api", "max_in_flight", "ip", "rejected") == 1

    # Clients that give up mid-request do not leak their slots.
    before = decisions(gh, "api", "max_in_flight", "ip", "allowed")
    conns = [RawConn(gh.port) for _ in range(2)]
    for c in conns:
        c.send(b"GET /slow?s=0.5 HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: " + a.encode()
               + b"\r\n\r\n")
    assert wait_until(lambda: decisions(gh, "api", "max_in_flight", "ip", "allowed")
                      == before + 2, scaled(5), 0.02)
    for c in conns:
        c.close()
    assert settled()  # the upstream answers after 0.5 s; gatehouse then ends both
    both = []
    threads = [threading.Thread(target=lambda: both.append(fetch(gh.port, "/slow?s=0.3",
                                                                 xff=a).status))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=scaled(15))
    assert both == [200, 200]


def test_max_in_flight_slot_released_on_rate_rejection(flask_app, gatehouses):
    gh = gatehouses(flask_app, routes=[route("api", "/", {"limits": "1/minute",
                                                          "max_in_flight": 1})])
    with Client(gh.port) as c:
        assert c.get("/echo").status == 200
        for _ in range(3):  # a leaked slot would turn these into too_many_concurrent_requests
            assert_429(c.get("/echo"), "Rate limit exceeded: 1 per 1 minute")
    assert decisions(gh, "api", "max_in_flight", "ip", "rejected") == 0
    assert decisions(gh, "api", "max_in_flight", "ip", "allowed") == 4


# ------------------------------------------------------------------------------ 9. metrics, health


def test_metrics_and_health_after_known_sequence(flask_app, gatehouses):
    gh = gatehouses(flask_app, routes=[route("gen", "/api/generate", {"limits": "3/minute"}),
                                       route("free", "/", "off")])
    with Client(gh.port) as c:
        assert [c.get("/api/generate").status for _ in range(5)] == [200, 200, 200, 429, 429]
        assert [c.get("/other").status for _ in range(2)] == [200, 200]
    m = gh.metrics()
    d = "gatehouse_ratelimit_decisions_total"
    assert m.types[d] == "counter"
    labels = dict(route="gen", limit="3/minute", key="ip")
    assert m.get(d, result="allowed", **labels) == 3
    assert m.get(d, result="rejected", **labels) == 2
    assert m.get(d, route="gen", limit="ban", key="ip", result="banned") == 0
    assert m.get(d, route="gen", limit="max_in_flight", key="ip", result="allowed") is None
    assert not [k for k in m.with_name(d) if ("route", "free") in k[1]]
    assert m.get("gatehouse_ratelimit_keys") == 1
    assert m.types["gatehouse_ratelimit_keys"] == "gauge"
    assert m.get("gatehouse_ratelimit_keys_max") == 1000000
    assert m.get("gatehouse_ratelimit_evictions_total") == 0
    assert m.get("gatehouse_ratelimit_bans_active") == 0
    assert m.get("gatehouse_ratelimit_bans_total") == 0
    assert m.get("gatehouse_local_replies_total", status="429") == 2

    expected = {"status": "ok", "store": "memory", "keys": 1, "max_keys": 1000000,
                "at_capacity": False, "evictions": 0, "bans_active": 0}
    got = wait_until(lambda: detailed_rate_limit(gh) == expected, scaled(5))
    assert got, detailed_rate_limit(gh)


def test_health_has_no_rate_limit_component_when_unused(flask_app, gatehouses):
    gh = gatehouses(flask_app)
    assert detailed_rate_limit(gh) is None
    assert "gatehouse_ratelimit_decisions_total{" not in gh.metrics().text
    assert admin(gh, "GET", "/admin/bans") == (200, {"bans": [], "count": 0})
    r = fetch(gh.port, "/echo")
    assert r.status == 200
    assert_no_rl_headers(r)


def test_evictions_with_small_max_keys(flask_app, gatehouses):
    gh = gatehouses(flask_app, trusted_proxies=TRUST,
                    rate_limit={"limits": "2/minute", "max_keys": 100},
                    routes=[route("api", "/")])
    ips = [f"10.9.{i // 200}.{i % 200 + 1}" for i in range(300)]
    with Client(gh.port) as c:
        for ip in ips:
            r = c.get("/echo", headers={"X-Forwarded-For": ip})
            assert r.status == 200, (ip, r)
    m = gh.metrics()
    assert m.get("gatehouse_ratelimit_keys") == 100
    assert m.get("gatehouse_ratelimit_keys_max") == 100
    assert m.get("gatehouse_ratelimit_evictions_total") == 200
    expected = {"status": "ok", "store": "memory", "keys": 100, "max_keys": 100,
                "at_capacity": True, "evictions": 200, "bans_active": 0}
    assert wait_until(lambda: detailed_rate_limit(gh) == expected, scaled(5)), \
        detailed_rate_limit(gh)
    # The most recent clients keep their counts (least recently used keys go first).
    recent = ips[-1]
    assert [fetch(gh.port, "/echo", xff=recent).status for _ in range(2)] == [200, 429]
    assert gh.metrics().get("gatehouse_ratelimit_keys") == 100


# ------------------------------------------------------------------------------ 10. hashed IPs


def test_hash_client_ip_in_bans_and_security_log(flask_app, gatehouses):
    gh = gatehouses(flask_app, env={"GATEHOUSE_LOG_KEY": LOG_KEY}, log={"hash_client_ip": True},
                    rate_limit={"limits": "1/minute",
                                "ban": {"after": 1, "within": "1m", "for": "60s"}},
                    routes=[route("api", "/api"),
                            route("keyed", "/keyed", {"key": "header:X-API-Key",
                                                      "limits": "1/minute"})])
    hashed = hmac.new(LOG_KEY.encode(), b"127.0.0.1", hashlib.sha256).hexdigest()[:32]
    secret = "sk-very-secret-api-key-123"
    fingerprint = "#" + hashlib.sha256(secret.encode()).hexdigest()[:16]
    with Client(gh.port) as c:
        assert [c.get("/api").status for _ in range(3)] == [200, 429, 403]
        hdr = {"X-API-Key": secret}
        assert [c.get("/keyed", hdr).status for _ in range(3)] == [200, 429, 403]

    gh.wait_log("security", lambda l: l.get("event") == "ban" and l["key"].startswith("header"))
    lines = ban_lines(gh)
    assert sorted(l["key"] for l in lines) == \
        sorted([f"ip={hashed}", f"header:X-API-Key={fingerprint}"])
    status, j = admin(gh, "GET", "/admin/bans")
    assert sorted(x["key"] for x in j["bans"]) == \
        sorted([f"ip={hashed}", f"header:X-API-Key={fingerprint}"])
    text = gh.security_log.read_text() + json.dumps(j)
    assert "127.0.0.1" not in text
    assert secret not in text
    q = urllib.parse.quote(f"ip={hashed}", safe="")
    assert admin(gh, "DELETE", f"/admin/bans?key={q}") == (200, {"lifted": 1})
    assert fetch(gh.port, "/api").status == 429  # not banned any more, still limited


# ------------------------------------------------------------------------------ 11. upstream errors


def test_upstream_errors_carry_rate_limit_headers(flask_app, gatehouses):
    dead = f"127.0.0.1:{free_port()}"
    gh = gatehouses(None, upstreams={"app": {"targets": [flask_app.address]},
                                     "dead": {"targets": [dead]}},
                    routes=[route("dead", "/dead", {"limits": "2/minute", "max_in_flight": 1},
                                  upstream="dead"),
                            route("api", "/", {"limits": "5/minute"})])
    with Client(gh.port) as c:
        for i in range(2):
            r = c.get("/dead")
            assert r.status == 502, r
            assert r.header("ratelimit-policy") == '"minute";q=2;w=60'
            assert r.ratelimit()[:2] == ("minute", 1 - i)
            assert r.header("x-ratelimit-remaining") == str(1 - i)
        # (the second 502 also shows the failed first request released its in-flight slot)
        assert_429(c.get("/dead"), "Rate limit exceeded: 2 per 1 minute")
        for i, code in enumerate((500, 404, 503)):
            r = c.get(f"/status/{code}")
            assert r.status == code
            assert r.header("x-ratelimit-remaining") == str(4 - i)
            assert r.ratelimit()[:2] == ("minute", 4 - i)
