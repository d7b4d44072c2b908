"""What the client sees of upstream trouble (issue 12): X-Process-Time on every response, and
error masking (errors.intercept): a traceback page becomes gatehouse's JSON error in production,
with the traceback in the error log; in development the page passes through."""
import json
import re

import pytest

from conftest import APPS, AppProcess, RawConn, scaled


@pytest.fixture
def edge_app(apps):
    app = AppProcess(apps.base_dir, APPS / "edge_app.py", [], [], f"edge-{len(apps.apps)}")
    apps.apps.append(app)
    return app.start()


PROCESS_TIME = re.compile(r"^\d+\.\d{3}$")


def get(conn, target, method="GET", headers=()):
    return conn.request(method, target, headers=list(headers))


# ------------------------------------------------------------------------------ X-Process-Time


def test_process_time_on_proxied_and_local_replies(edge_app, gatehouses):
    gh = gatehouses(edge_app, workers=1, response_headers={"process_time": True},
                    routes=[{"name": "app", "match": {"path_prefix": "/"}, "upstream": "app"}])
    with RawConn(gh.port) as c:
        r = get(c, "/timed?s=0.25")
        assert r.status == 200
        values = r.header_all("x-process-time")
        assert len(values) == 1, r  # the app's own 99.000 is replaced, not repeated
        assert PROCESS_TIME.match(values[0]), values
        assert 0.25 <= float(values[0]) < 0.25 + scaled(2), values
        r = get(c, "/health/live")  # a local reply
        assert r.status == 200
        assert PROCESS_TIME.match(r.header("x-process-time")), r
        assert float(r.header("x-process-time")) < 0.5
    r = RawConn(gh.port).request("GET", "/x", headers=[("Host", "a b")])  # a local 400
    assert r.status == 400 and PROCESS_TIME.match(r.header("x-process-time")), r


def test_process_time_off_by_default(edge_app, gatehouses):
    gh = gatehouses(edge_app)
    with RawConn(gh.port) as c:
        r = get(c, "/timed?s=0")
        assert r.header_all("x-process-time") == ["99.000"]  # the app's own, untouched
        r = get(c, "/health/live")
        assert not r.has_header("x-process-time")


# ------------------------------------------------------------------------------ error masking


def assert_masked(resp, status):
    assert resp.status == status, resp
    assert resp.header("content-type").split(";")[0] == "application/json", resp
    j = json.loads(resp.body)
    assert set(j) == {"error", "message", "request_id"}, j
    assert j["error"] == "upstream_error"
    assert j["request_id"] == resp.header("x-request-id")
    return j


def test_production_traceback_becomes_json_and_goes_to_the_error_log(edge_app, gatehouses):
    gh = gatehouses(edge_app, workers=1)
    with RawConn(gh.port) as c:
        before = json.loads(get(c, "/conn").body)["port"]
        r = get(c, "/boom")
        j = assert_masked(r, 500)
        for leaked in (b"Traceback", b"RuntimeError", b"hunter2", b"exploded", b"edge_app.py"):
            assert leaked not in r.body, r.body
        # The error body was read whole: the upstream connection went back to the pool.
        after = json.loads(get(c, "/conn").body)["port"]
        assert after == before
        # The client connection stays usable too.
        assert get(c, "/status/200").status == 200
    line = gh.wait_log("error", lambda l: l.get("message") == "upstream error intercepted")
    assert line["request_id"] == j["request_id"]
    assert line["status"] == 500 and line["path"] == "/boom"
    assert "Traceback (most recent call last)" in line["body"]
    assert "RuntimeError: database exploded" in line["body"]
    assert "hunter2" not in line["body"] and "postgres://app:REDACTED@db" in line["body"]
    assert line["body_truncated"] is False
    access = gh.wait_log("access", lambda l: l.get("request_id") == j["request_id"])
    assert access["status"] == 500


def test_json_errors_head_and_unlisted_statuses_pass_through(edge_app, gatehouses):
    gh = gatehouses(edge_app)
    with RawConn(gh.port) as c:
        r = get(c, "/json-error")
        assert r.status == 500 and json.loads(r.body) == {"detail": "validation failed in the app"}
        r = get(c, "/boom", method="HEAD")
        assert r.status == 500 and r.body == b""
        r = get(c, "/status/501")
        assert r.status == 501 and r.body == b"status 501\n"
        r = get(c, "/status/404")
        assert r.status == 404 and r.body == b"status 404\n"


def test_503_keeps_retry_after(edge_app, gatehouses):
    gh = gatehouses(edge_app)
    r = RawConn(gh.port).request("GET", "/unavailable")
    assert_masked(r, 503)
    assert r.header("retry-after") == "7"
    assert b"maintenance" not in r.body


def test_large_error_body_is_truncated_in_the_log_and_the_connection_closed(edge_app, gatehouses):
    gh = gatehouses(edge_app, workers=1, errors={"log_body": "1KiB"})
    with RawConn(gh.port) as c:
        before = json.loads(get(c, "/conn").body)["port"]
        j = assert_masked(get(c, "/big-error?n=200000"), 500)
        after = json.loads(get(c, "/conn").body)["port"]
        assert after != before, "an upstream connection with an unread body was reused"
    line = gh.wait_log("error", lambda l: l.get("request_id") == j["request_id"])
    assert line["body_truncated"] is True
    assert len(line["body"]) == 1024 and line["body"].startswith("<p>xxx")


def test_development_passes_the_page_through(edge_app, gatehouses):
    gh = gatehouses(edge_app, environment="development")
    r = RawConn(gh.port).request("GET", "/boom")
    assert r.status == 500
    assert b"Traceback (most recent call last)" in r.body
    assert r.header("content-type").startswith("text/plain")


def test_configured_list_replaces_the_default(edge_app, gatehouses):
    gh = gatehouses(edge_app, errors={"intercept": [404]})
    assert_masked(RawConn(gh.port).request("GET", "/status/404"), 404)
    r = RawConn(gh.port).request("GET", "/boom")
    assert r.status == 500 and b"Traceback" in r.body


def test_chunked_error_body_is_read_logged_and_the_connection_reused(edge_app, gatehouses):
    gh = gatehouses(edge_app, workers=1)
    with RawConn(gh.port) as c:
        before = json.loads(get(c, "/conn").body)["port"]
        j = assert_masked(get(c, "/chunked-error?n=3"), 500)
        assert json.loads(get(c, "/conn").body)["port"] == before
        # Larger than the 64 KiB read cap: logged truncated, connection not reused.
        j2 = assert_masked(get(c, "/chunked-error?n=5000"), 500)
        assert json.loads(get(c, "/conn").body)["port"] != before
    line = gh.wait_log("error", lambda l: l.get("request_id") == j["request_id"])
    assert "ValueError: streamed failure" in line["body"]
    assert "sk-live" not in line["body"] and "api_key=REDACTED" in line["body"]
    assert line["body_truncated"] is False
    line2 = gh.wait_log("error", lambda l: l.get("request_id") == j2["request_id"])
    assert line2["body_truncated"] is True and len(line2["body"]) <= 4096


def test_close_delimited_error_body(gatehouses):
    """An upstream that ends its 500 by closing (no Content-Length, no chunking)."""
    import socket
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\n"
                         b"Connection: close\r\n\r\n<h1>Server Error</h1><pre>KeyError: 'x'</pre>")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        gh = gatehouses(f"127.0.0.1:{port}")
        with RawConn(gh.port) as c:
            j = assert_masked(get(c, "/"), 500)
            assert_masked(get(c, "/again"), 500)  # the client connection is still usable
        line = gh.wait_log("error", lambda l: l.get("request_id") == j["request_id"])
        assert line["body"] == "<h1>Server Error</h1><pre>KeyError: 'x'</pre>"
        assert line["body_truncated"] is False
    finally:
        srv.close()
