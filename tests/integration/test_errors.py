"""Upstream failures: 502/504 local replies, their JSON shape, production vs development."""
import json
import time

import pytest

from conftest import HEX32, RawConn, free_port, scaled


def local_reply(resp, status, code, development=False):
    assert resp.status == status, resp
    assert resp.header("content-type", "").split(";")[0].strip() == "application/json"
    j = json.loads(resp.body)
    assert j["error"] == code
    assert isinstance(j["message"], str) and j["message"]
    rid = resp.header("x-request-id")
    assert rid and j["request_id"] == rid
    if development:
        assert set(j) == {"error", "message", "request_id", "detail"}, j
        assert isinstance(j["detail"], str) and j["detail"], j
    else:
        assert set(j) == {"error", "message", "request_id"}, j
    return j


def assert_no_internals(resp, port):
    """Production replies must not leak internal addresses or error texts."""
    j = json.loads(resp.body)
    text = resp.body.decode("latin-1").replace(j["request_id"], "")
    for needle in ("127.0.0.1", str(port), "refused", "errno", "asio", "system:", "timed out"):
        assert needle not in text.lower(), f"{needle!r} leaked in {resp.body!r}"
    for name, value in resp.headers:
        if name.lower() == "x-request-id":
            continue
        assert "127.0.0.1" not in value and str(port) not in value, (name, value)


def with_404_route(upstream_targets, **extra):
    """Config: /up/ -> the upstream under test, nothing else (other paths are local 404s), so a
    second request on the same connection shows the connection was kept."""
    cfg = {"upstreams": {"app": {"targets": upstream_targets, **extra}},
           "routes": [{"name": "up", "match": {"path_prefix": "/up/"}, "upstream": "app"}]}
    return cfg


def assert_connection_kept(c):
    nxt = c.request("GET", "/not-routed")
    assert nxt.status == 404 and json.loads(nxt.body)["error"] == "not_found"


# ------------------------------------------------------------------------------------ 502


def test_502_closed_port_production(gatehouses):
    port = free_port()  # nothing listens here
    gh = gatehouses(None, **with_404_route([f"127.0.0.1:{port}"]))
    with RawConn(gh.port) as c:
        resp = c.request("GET", "/up/x", [("X-Request-ID", "err-test-1")])
        j = local_reply(resp, 502, "bad_gateway")
        assert j["request_id"] == "err-test-1"
        assert_no_internals(resp, port)
        assert_connection_kept(c)


def test_502_closed_port_generated_request_id(gatehouses):
    port = free_port()
    gh = gatehouses(None, **with_404_route([f"127.0.0.1:{port}"]))
    with RawConn(gh.port) as c:
        resp = c.request("GET", "/up/x")
        j = local_reply(resp, 502, "bad_gateway")
        assert HEX32.match(j["request_id"])


def test_502_closed_port_development_has_detail(gatehouses):
    port = free_port()
    gh = gatehouses(None, environment="development", **with_404_route([f"127.0.0.1:{port}"]))
    with RawConn(gh.port) as c:
        resp = c.request("GET", "/up/x")
        local_reply(resp, 502, "bad_gateway", development=True)
        assert_connection_kept(c)


@pytest.mark.parametrize("mode", ["garbage", "refuse-after-accept"])
def test_502_bad_upstream(apps, gatehouses, mode):
    up = apps.raw(mode)
    gh = gatehouses(None, **with_404_route([up.address]))
    with RawConn(gh.port) as c:
        t0 = time.monotonic()
        resp = c.request("GET", "/up/x")
        assert time.monotonic() - t0 < scaled(5)
        local_reply(resp, 502, "bad_gateway")
        assert_no_internals(resp, up.port)
        assert_connection_kept(c)


def test_502_bad_upstream_development_detail(apps, gatehouses):
    up = apps.raw("garbage")
    gh = gatehouses(None, environment="development", **with_404_route([up.address]))
    with RawConn(gh.port) as c:
        local_reply(c.request("GET", "/up/x"), 502, "bad_gateway", development=True)


def test_one_dead_target_of_two_is_not_an_error(flask_app, gatehouses):
    """502 only when every target fails: a dead target next to a live one is skipped."""
    dead = f"127.0.0.1:{free_port()}"
    gh = gatehouses([dead, flask_app.address])
    with RawConn(gh.port) as c:
        for i in range(6):
            resp = c.request("GET", f"/echo?i={i}")
            assert resp.status == 200, resp
            assert resp.json()["query"] == f"i={i}"


# ------------------------------------------------------------------------------------ 504


def test_504_silent_upstream(apps, gatehouses):
    up = apps.raw("silent")
    timeout = scaled(1)
    gh = gatehouses(None, **with_404_route([up.address], timeout=f"{int(timeout * 1000)}ms"))
    with RawConn(gh.port, timeout=30) as c:
        t0 = time.monotonic()
        resp = c.request("GET", "/up/x", [("X-Request-ID", "timeout-test")])
        elapsed = time.monotonic() - t0
        j = local_reply(resp, 504, "gateway_timeout")
        assert j["request_id"] == "timeout-test"
        assert_no_internals(resp, up.port)
        assert timeout * 0.9 <= elapsed <= timeout + scaled(3), f"504 after {elapsed:.2f} s"
        assert_connection_kept(c)
    m = gh.metrics()
    assert m.value("gatehouse_upstream_timeouts_total", upstream="app") >= 1


def test_504_development_detail(apps, gatehouses):
    up = apps.raw("silent")
    gh = gatehouses(None, environment="development",
                    **with_404_route([up.address], timeout=f"{int(scaled(1) * 1000)}ms"))
    with RawConn(gh.port, timeout=30) as c:
        local_reply(c.request("GET", "/up/x"), 504, "gateway_timeout", development=True)
