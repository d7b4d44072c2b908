"""log.security_events and log.security_sample: each event type leaves one security-log line when
on and none when off; a flood from one key and a spray of many keys stay bounded."""
import socket
import time

import pytest

from conftest import HOST, RawConn, make_cert, scaled, wait_until

ALL = ["ban", "ban_lifted", "rate_limited", "access_denied", "cors_denied", "bad_request",
       "tls_error"]
CORS = {"origins": ["https://app.example.com"], "methods": ["GET", "POST"]}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("certs"), "server")


def config(certs, events, per_key=10):
    cert, key = certs
    return {
        "workers": 2,
        "trusted_proxies": ["127.0.0.1"],
        "access": {"deny": ["203.0.113.0/24"]},
        "cors": CORS,
        "listen_tls": {"address": f"{HOST}:0", "cert": str(cert), "key": str(key)},
        "rate_limit": {"limits": "2/minute"},
        "log": {"security_events": events, "security_sample": {"per_key_per_minute": per_key}},
    }


def get(gh, path, method="GET", headers=(), xff=None):
    h = list(headers)
    if xff:
        h.append(("X-Forwarded-For", xff))
    with RawConn(gh.port) as c:
        return c.request(method, path, h)


def provoke_each(gh):
    """One of each: 429, access denial, CORS denial, malformed request, TLS failure."""
    for i in range(3):
        r = get(gh, "/x", headers=[("X-Request-ID", f"rl-{i}")], xff="192.0.2.10")
    assert r.status == 429
    assert get(gh, "/x", headers=[("X-Request-ID", "deny-1")], xff="203.0.113.7").status == 403
    r = get(gh, "/x", "OPTIONS", [("Origin", "https://evil.example"),
                                  ("Access-Control-Request-Method", "GET"),
                                  ("X-Request-ID", "cors-1")], xff="192.0.2.11")
    assert r.status == 403
    with socket.create_connection((HOST, gh.port), timeout=scaled(5)) as s:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection((HOST, gh.tls_port), timeout=scaled(5)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # plain HTTP on the TLS port
        s.settimeout(scaled(5))
        try:
            while s.recv(1000):
                pass
        except OSError:
            pass


def events_in(gh):
    return [l.get("event") for l in gh.log_lines("security")]


def test_each_event_logged_when_on(flask_app, gatehouses, certs):
    gh = gatehouses(flask_app, **config(certs, ALL))
    provoke_each(gh)
    expect = {"rate_limited": 1, "access_denied": 1, "cors_preflight_denied": 1,
              "malformed_request": 1, "tls_error": 1}
    ok = wait_until(lambda: all(events_in(gh).count(e) >= n for e, n in expect.items()),
                    scaled(5))
    assert ok, events_in(gh)
    time.sleep(scaled(0.3))
    for e, n in expect.items():
        assert events_in(gh).count(e) == n, (e, events_in(gh))
    lines = gh.log_lines("security")
    rl = next(l for l in lines if l["event"] == "rate_limited")
    assert rl["request_id"] == "rl-2" and rl["client_ip"] == "192.0.2.10"
    assert rl["route"] == "default" and rl["reason"].startswith("Rate limit exceeded"), rl
    assert rl["path"] == "/x"
    denied = next(l for l in lines if l["event"] == "access_denied")
    assert denied["request_id"] == "deny-1" and denied["client_ip"] == "203.0.113.7"
    cors = next(l for l in lines if l["event"] == "cors_preflight_denied")
    assert cors["request_id"] == "cors-1"
    tls = next(l for l in lines if l["event"] == "tls_error")
    assert tls["client_ip"] == "127.0.0.1" and tls["reason"]
    m = gh.metrics()
    assert m.get("gatehouse_security_events_total", event="rate_limited", logged="true") == 1
    assert m.get("gatehouse_security_events_total", event="tls_error", logged="true") == 1


def test_nothing_logged_when_off(flask_app, gatehouses, certs):
    gh = gatehouses(flask_app, **config(certs, []))
    provoke_each(gh)
    time.sleep(scaled(0.5))
    assert events_in(gh) == []
    assert "gatehouse_security_events_total" not in gh.metrics().text.replace(
        "# HELP gatehouse_security_events_total", "").replace(
        "# TYPE gatehouse_security_events_total", "")


def test_default_keeps_todays_events(flask_app, gatehouses, certs):
    cfg = config(certs, ALL)
    del cfg["log"]["security_events"]
    gh = gatehouses(flask_app, **cfg)
    provoke_each(gh)
    ok = wait_until(lambda: {"access_denied", "cors_preflight_denied", "malformed_request"}
                    <= set(events_in(gh)), scaled(5))
    assert ok, events_in(gh)
    time.sleep(scaled(0.3))
    assert "rate_limited" not in events_in(gh) and "tls_error" not in events_in(gh)


def test_flood_from_one_key_is_sampled(flask_app, gatehouses, certs):
    gh = gatehouses(flask_app, **config(certs, ["rate_limited"], per_key=3))
    with RawConn(gh.port) as c:
        for i in range(60):
            r = c.request("GET", "/x", [("X-Forwarded-For", "192.0.2.50")])
    assert r.status == 429
    m = gh.metrics()
    assert m.get("gatehouse_security_events_total", event="rate_limited", logged="true") == 3
    assert m.get("gatehouse_security_events_total", event="rate_limited", logged="false") == 55
    assert wait_until(lambda: events_in(gh).count("rate_limited") >= 3, scaled(5))
    assert events_in(gh).count("rate_limited") == 3
    # The suppressed ones are summed up (at the latest at shutdown).
    gh.stop()
    summary = [l for l in gh.log_lines("security") if l.get("event") == "suppressed"]
    assert len(summary) == 1 and summary[0]["for"] == "rate_limited"
    assert summary[0]["count"] == 55


def test_spray_of_keys_is_bounded(flask_app, gatehouses, certs):
    cfg = config(certs, ["rate_limited"], per_key=1)
    cfg["rate_limit"]["limits"] = "1/hour"
    gh = gatehouses(flask_app, **cfg)
    n = 0
    with RawConn(gh.port) as c:
        for i in range(260):  # each key: one allowed, one limited
            xff = f"10.{i // 250}.{i % 250}.1"
            c.request("GET", "/x", [("X-Forwarded-For", xff)])
            if c.request("GET", "/x", [("X-Forwarded-For", xff)]).status == 429:
                n += 1
    assert n == 260
    # At most 100 x per_key_per_minute lines per event type a minute, however many keys.
    m = gh.metrics()
    logged = m.get("gatehouse_security_events_total", event="rate_limited", logged="true")
    assert logged == 100
    assert m.get("gatehouse_security_events_total", event="rate_limited", logged="false") == 160
    assert events_in(gh).count("rate_limited") == 100
