"""Forwarding behaviour: methods, bodies, headers, HTTP versions, routing, request ids, tracing."""
import http.client
import json
import os
import re

import pytest
import requests

from conftest import (HEX16, HEX32, HOST, RawConn, build_request, chunked, scaled, sha256)

HOP_BY_HOP = ["connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection",
              "proxy-authenticate", "proxy-authorization"]


def T(seconds=10):
    return scaled(seconds)


@pytest.fixture(scope="module")
def gh(flask_app, module_gatehouses):
    """gatehouse in front of the Flask app, default route, no trusted proxies."""
    return module_gatehouses(flask_app)


@pytest.fixture(scope="module")
def gh_trusted(flask_app, module_gatehouses):
    return module_gatehouses(flask_app, trusted_proxies=["127.0.0.0/8"])


@pytest.fixture
def capture(apps):
    return apps.capture()


@pytest.fixture
def gh_capture(capture, gatehouses):
    return gatehouses(capture)


def echo(gh, path="/echo", method="GET", **kw):
    r = requests.request(method, gh.url(path), timeout=T(), **kw)
    assert r.status_code == 200, r.text
    return r, r.json()


def head_names(record):
    return {name for name, _ in record["headers"]}


def head_value(record, name):
    vals = [v for n, v in record["headers"] if n == name]
    return ", ".join(vals) if vals else None


# ------------------------------------------------------------------------------------- methods


def test_get_forwarded(gh):
    r, j = echo(gh, "/echo/sub?a=1&b=two")
    assert j["method"] == "GET"
    assert j["path"] == "/echo/sub"
    assert j["query"] == "a=1&b=two"
    assert j["body_len"] == 0
    assert j["http_version"] == "HTTP/1.1"
    assert r.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_methods_with_body_forwarded(gh, method):
    body = b"hello gatehouse " + method.encode()
    _, j = echo(gh, "/echo", method, data=body, headers={"Content-Type": "text/plain"})
    assert j["method"] == method
    assert j["body_len"] == len(body)
    assert j["body_sha256"] == sha256(body)
    assert j["headers"]["content-type"] == "text/plain"


def test_post_5mib_content_length_body_intact(gh):
    body = os.urandom(5 * 1024 * 1024)
    _, j = echo(gh, "/echo", "POST", data=body)
    assert j["body_len"] == len(body)
    assert j["body_sha256"] == sha256(body)
    assert j["headers"]["content-length"] == str(len(body))
    assert "transfer-encoding" not in j["headers"]


def test_post_chunked_body_intact(gh):
    pieces = [os.urandom(n) for n in (1, 100, 65536, 3, 300000, 7, 1 << 20)]
    body = b"".join(pieces)
    conn = http.client.HTTPConnection(HOST, gh.port, timeout=T())
    try:
        conn.request("POST", "/echo", body=iter(pieces), encode_chunked=True)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, data
    j = json.loads(data)
    assert j["body_len"] == len(body)
    assert j["body_sha256"] == sha256(body)
    assert j["headers"].get("transfer-encoding", "").lower() == "chunked"
    assert "content-length" not in j["headers"]


def test_chunked_request_forwarded_chunked(gh_capture, capture):
    pieces = [b"a" * 5, os.urandom(3000), b"z"]
    body = b"".join(pieces)
    with RawConn(gh_capture.port) as c:
        c.send(build_request("POST", "/upload", [("Transfer-Encoding", "chunked")])
               + chunked(pieces))
        resp = c.read_response()
    assert resp.status == 200 and resp.body == b"ok"
    rec = capture.wait_requests(1)[0]
    assert rec["chunked"] is True
    assert "content-length" not in head_names(rec)
    assert rec["body_len"] == len(body)
    assert rec["body_sha256"] == sha256(body)


# ------------------------------------------------------------------------------------- headers


def test_hop_by_hop_request_headers_removed(gh_capture, capture):
    headers = [
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-Foo"),
        ("Upgrade", "websocket"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
        ("Proxy-Authenticate", "Basic"),
        ("X-Secret-Hop", "must-not-pass"),
        ("X-Keep", "yes"),
    ]
    with RawConn(gh_capture.port) as c:
        resp = c.request("GET", "/hop?x=1", headers)
    assert resp.status == 200
    rec = capture.wait_requests(1)[0]
    names = head_names(rec)
    for h in HOP_BY_HOP + ["x-secret-hop"]:
        if h == "connection":
            # gatehouse may state its own connection option, but never forward the client's.
            value = (head_value(rec, "connection") or "").lower()
            assert "x-secret-hop" not in value, rec["head"]
            assert "close" not in value, "upstream request must be keep-alive: " + rec["head"]
            continue
        assert h not in names, f"{h} forwarded upstream:\n{rec['head']}"
    assert head_value(rec, "x-keep") == "yes"
    assert rec["request_line"] == "GET /hop?x=1 HTTP/1.1"
    assert rec["version"] == "HTTP/1.1"


def test_hop_by_hop_response_headers_removed(gh_capture, capture):
    with RawConn(gh_capture.port) as c:
        resp = c.request("GET", "/resp-headers")
    assert resp.status == 200 and resp.body == b"ok"
    names = resp.header_names()
    for h in ["keep-alive", "proxy-authenticate", "trailer", "x-hop-resp"]:
        assert h not in names, f"{h} returned to the client: {resp.headers}"
    assert "x-hop-resp" not in resp.connection_tokens()
    assert resp.header("x-normal-resp") == "yes"
    assert HEX32.match(resp.header("x-request-id") or "")


def test_connection_named_headers_removed(gh_capture, capture):
    headers = [
        ("Connection", "X-Named-One"),
        ("Connection", "keep-alive, x-named-two"),
        ("X-Named-One", "1"),
        ("X-Named-Two", "2"),
        ("X-Unnamed", "3"),
    ]
    with RawConn(gh_capture.port) as c:
        assert c.request("GET", "/named", headers).status == 200
    rec = capture.wait_requests(1)[0]
    names = head_names(rec)
    assert "x-named-one" not in names, rec["head"]
    assert "x-named-two" not in names, rec["head"]
    assert head_value(rec, "x-unnamed") == "3"


def test_upstream_connection_reused(gh_capture, capture):
    """Several requests on one client connection: all forwarded as HTTP/1.1 keep-alive; the
    upstream connection is reused (not one upstream connection per request)."""
    with RawConn(gh_capture.port) as c:
        for i in range(5):
            resp = c.request("GET", f"/ka/{i}")
            assert resp.status == 200 and resp.body == b"ok"
    recs = capture.wait_requests(5)
    assert [r["target"] for r in recs] == [f"/ka/{i}" for i in range(5)]
    assert all(r["version"] == "HTTP/1.1" for r in recs)
    assert len({r["conn"] for r in recs}) < 5, "upstream connections are not reused"


# ----------------------------------------------------------------------------- X-Forwarded-*


def test_forwarded_headers_untrusted_peer(gh):
    _, j = echo(gh, headers={"Host": "front.example", "X-Forwarded-For": "1.2.3.4",
                             "X-Forwarded-Proto": "https",
                             "X-Forwarded-Host": "evil.example"})
    h = j["headers"]
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "front.example"


def test_forwarded_headers_untrusted_peer_without_incoming(gh):
    _, j = echo(gh, headers={"Host": "front.example"})
    h = j["headers"]
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "front.example"


def test_forwarded_headers_trusted_peer(gh_trusted):
    _, j = echo(gh_trusted, headers={"Host": "front.example", "X-Forwarded-For": "1.2.3.4",
                                     "X-Forwarded-Proto": "https",
                                     "X-Forwarded-Host": "orig.example"})
    h = j["headers"]
    assert h["x-forwarded-for"] == "1.2.3.4, 127.0.0.1"
    assert h["x-forwarded-proto"] == "https"
    assert h["x-forwarded-host"] == "orig.example"


def test_forwarded_headers_trusted_peer_without_incoming(gh_trusted):
    _, j = echo(gh_trusted, headers={"Host": "front.example"})
    h = j["headers"]
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "front.example"


# ------------------------------------------------------------------- HEAD, 204, 304, HTTP/1.0


def test_head_has_no_body(gh):
    with RawConn(gh.port) as c:
        resp = c.request("HEAD", "/large?n=1000")
        assert resp.status == 200
        assert resp.header("content-length") in (None, "1000")
        # If a body had been sent, the next response would not parse.
        nxt = c.request("GET", "/echo")
        assert nxt.status == 200 and nxt.json()["method"] == "GET"
    r = requests.head(gh.url("/echo"), timeout=T())
    assert r.status_code == 200 and r.content == b""


@pytest.mark.parametrize("code", [204, 304])
def test_204_304_have_no_body(gh, code):
    with RawConn(gh.port) as c:
        resp = c.request("GET", f"/status/{code}")
        assert resp.status == code
        assert "chunked" not in (resp.header("transfer-encoding") or "").lower()
        assert resp.header("content-length") in (None, "0")
        nxt = c.request("GET", "/echo")
        assert nxt.status == 200, "bytes after the 204/304 head broke the framing"
        assert nxt.json()["path"] == "/echo"


def test_http10_client(gh):
    with RawConn(gh.port) as c:
        c.send(b"GET /echo?v=10 HTTP/1.0\r\nHost: old.example\r\n\r\n")
        resp = c.read_response()
        assert resp.status == 200
        assert "chunked" not in (resp.header("transfer-encoding") or "").lower()
        assert resp.json()["query"] == "v=10"
        closed, data = c.wait_closed(T(3))[:2]
        assert closed and data == b"", "HTTP/1.0 connection without keep-alive must close"


def test_http10_client_chunked_upstream_is_close_delimited(gh):
    with RawConn(gh.port) as c:
        c.send(b"GET /stream?n=3&delay=0.05 HTTP/1.0\r\nHost: old.example\r\n\r\n")
        resp = c.read_response()
        assert resp.status == 200
        assert not resp.has_header("transfer-encoding")
        assert resp.body == b"chunk 0\nchunk 1\nchunk 2\n"


def test_http10_keepalive_when_asked(gh):
    with RawConn(gh.port) as c:
        for i in range(3):
            c.send(f"GET /echo?i={i} HTTP/1.0\r\nHost: old.example\r\n"
                   f"Connection: keep-alive\r\n\r\n".encode())
            resp = c.read_response()
            assert resp.status == 200 and resp.json()["query"] == f"i={i}"
            assert resp.framing == "length"
            assert "keep-alive" in resp.connection_tokens()


def test_keepalive_reuse(gh):
    with RawConn(gh.port) as c:
        for i in range(6):
            resp = c.request("POST" if i % 2 else "GET", f"/echo?n={i}",
                             body=b"x" * i if i % 2 else b"")
            assert resp.status == 200
            j = resp.json()
            assert j["query"] == f"n={i}"
            assert "close" not in resp.connection_tokens()


# ------------------------------------------------------------------------------ 1xx handling


def test_expect_100_continue(gh_capture, capture):
    body = b"expect-body-0123456789"
    with RawConn(gh_capture.port) as c:
        c.send(build_request("POST", "/expect", [("Content-Length", str(len(body))),
                                                 ("Expect", "100-continue")]))
        interim = c.read_head()  # must come before we send the body
        assert interim.status == 100, interim.raw_head
        assert interim.version == "HTTP/1.1"
        c.send(body)
        resp = c.read_response("POST")
        assert resp.status == 200 and resp.body == b"ok"
        assert resp.interim == []
    rec = capture.wait_requests(1)[0]
    assert "expect" not in head_names(rec), rec["head"]
    assert rec["body_len"] == len(body)
    assert rec["body_sha256"] == sha256(body)


def test_upstream_interim_response_dropped(gh_capture, capture):
    with RawConn(gh_capture.port) as c:
        resp = c.request("GET", "/interim", [("X-Send-Interim", "1")])
        assert resp.interim == [], f"1xx forwarded: {[i.raw_head for i in resp.interim]}"
        assert resp.status == 200 and resp.body == b"ok"


# ------------------------------------------------------------------------------------ routing


@pytest.fixture(scope="module")
def routed(module_apps, module_gatehouses, flask_app):
    b = module_apps.flask("b")
    return module_gatehouses(
        None,
        upstreams={"a": {"targets": [flask_app.address]}, "b": {"targets": [b.address]}},
        routes=[
            {"name": "first", "match": {"path_prefix": "/echo/first"}, "upstream": "b"},
            {"name": "api-write", "match": {"path_prefix": "/api", "methods": ["POST", "PUT"]},
             "upstream": "b"},
            {"name": "hosted", "match": {"path_prefix": "/h", "host": "special.example"},
             "upstream": "b"},
            {"name": "echo", "match": {"path_prefix": "/echo"}, "upstream": "a"},
        ])


@pytest.mark.parametrize("method,path,host,server", [
    ("GET", "/echo/x", None, "a"),
    ("GET", "/echo?q=1", None, "a"),
    ("GET", "/echo/first/x", None, "b"),
    ("POST", "/api/items", None, "b"),
    ("PUT", "/api/items/7", None, "b"),
    ("POST", "/api-v2/items", None, "b"),
    ("GET", "/h/x", "special.example", "b"),
])
def test_route_selection(routed, method, path, host, server):
    headers = {"Host": host} if host else {}
    r = requests.request(method, routed.url(path), headers=headers, data=b"d" if method != "GET"
                         else None, timeout=T())
    assert r.status_code == 200, r.text
    assert r.json()["server"] == server
    assert r.json()["method"] == method


def assert_local_reply(resp_status, headers, body, status, code):
    assert resp_status == status
    assert headers.get("content-type", "").split(";")[0].strip() == "application/json"
    j = json.loads(body)
    assert j["error"] == code
    assert isinstance(j["message"], str) and j["message"]
    assert "detail" not in j
    assert set(j) == {"error", "message", "request_id"}
    assert j["request_id"] == headers.get("x-request-id")
    return j


@pytest.mark.parametrize("method,path,host", [
    ("GET", "/nothing", None),
    ("GET", "/api/items", None),       # method not in the route's methods
    ("DELETE", "/api/items", None),
    ("GET", "/h/x", "other.example"),  # host does not match
    ("GET", "/", None),
])
def test_no_route_is_404_json(routed, method, path, host):
    headers = [("Host", host)] if host else []
    with RawConn(routed.port) as c:
        resp = c.request(method, path, headers)
        hdrs = {n.lower(): v for n, v in resp.headers}
        assert_local_reply(resp.status, hdrs, resp.body, 404, "not_found")
        # connection kept
        nxt = c.request("GET", "/echo/after-404")
        assert nxt.status == 200 and nxt.json()["server"] == "a"


# ------------------------------------------------------------------------------- request ids


def test_request_id_generated(gh):
    r, j = echo(gh)
    rid = r.headers.get("X-Request-ID")
    assert rid and HEX32.match(rid), rid
    assert j["headers"]["x-request-id"] == rid
    r2, _ = echo(gh)
    assert r2.headers["X-Request-ID"] != rid


@pytest.mark.parametrize("incoming", [
    "abc-123_X.y:z",
    "a",
    "A" * 128,
    "0123456789abcdef0123456789abcdef",
])
def test_request_id_kept_when_well_formed(gh, incoming):
    r, j = echo(gh, headers={"X-Request-ID": incoming})
    assert r.headers["X-Request-ID"] == incoming
    assert j["headers"]["x-request-id"] == incoming


@pytest.mark.parametrize("incoming", [
    "A" * 129,
    "abc/def",
    "abc def",
    "<script>",
    "id;drop",
    "caf\xe9",
    "",
])
def test_request_id_replaced_when_malformed(gh, incoming):
    with RawConn(gh.port) as c:
        resp = c.request("GET", "/echo", [("X-Request-ID", incoming)])
    assert resp.status == 200
    rid = resp.header("x-request-id")
    assert rid and HEX32.match(rid), f"{incoming!r} -> {rid!r}"
    assert resp.json()["headers"]["x-request-id"] == rid
    assert len(resp.header_all("x-request-id")) == 1


def test_request_id_on_local_reply(routed):
    r = requests.get(routed.url("/nothing"), headers={"X-Request-ID": "my-id-42"}, timeout=T())
    assert r.status_code == 404
    assert r.headers["X-Request-ID"] == "my-id-42"
    assert r.json()["request_id"] == "my-id-42"


# -------------------------------------------------------------------------------- traceparent

TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def test_traceparent_generated_when_absent(gh):
    _, j1 = echo(gh)
    _, j2 = echo(gh)
    m1 = TP.match(j1["headers"].get("traceparent", ""))
    m2 = TP.match(j2["headers"].get("traceparent", ""))
    assert m1 and m2, (j1["headers"].get("traceparent"), j2["headers"].get("traceparent"))
    assert m1.group(3) == "01" and m2.group(3) == "01"
    assert m1.group(1) != m2.group(1), "each request needs its own trace id"
    assert m1.group(1) != "0" * 32 and m1.group(2) != "0" * 16


@pytest.mark.parametrize("flags", ["00", "01"])
def test_traceparent_valid_incoming_keeps_trace_and_flags(gh, flags):
    trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    _, j = echo(gh, headers={"traceparent": f"00-{trace}-{parent}-{flags}"})
    m = TP.match(j["headers"].get("traceparent", ""))
    assert m, j["headers"].get("traceparent")
    assert m.group(1) == trace
    assert m.group(2) != parent, "parent id must be replaced"
    assert HEX16.match(m.group(2))
    assert m.group(3) == flags


@pytest.mark.parametrize("incoming", [
    "garbage",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",         # no flags
    "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-00",         # short trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902-00",         # short parent id
    "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-00",       # not hex
])
def test_traceparent_invalid_incoming_replaced(gh, incoming):
    _, j = echo(gh, headers={"traceparent": incoming})
    m = TP.match(j["headers"].get("traceparent", ""))
    assert m, j["headers"].get("traceparent")
    assert m.group(1) != "4bf92f3577b34da6a3ce929d0e0e4736"
    assert "4bf92f3577b34da6a3ce929d0e0e47" not in m.group(1)
    assert m.group(3) == "01"


def test_request_id_custom_header_and_untrusted_incoming(flask_app, gatehouses):
    gh = gatehouses(flask_app, request_id={"header": "X-Correlation-ID", "trust_incoming": False})
    r = requests.get(gh.url("/echo"), headers={"X-Correlation-ID": "client-chosen-id"},
                     timeout=T())
    assert r.status_code == 200
    rid = r.headers.get("X-Correlation-ID")
    assert rid and HEX32.match(rid), f"incoming id must be replaced when untrusted: {rid!r}"
    assert r.json()["headers"]["x-correlation-id"] == rid
