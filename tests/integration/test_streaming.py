"""Streaming: responses are flushed to the client as the upstream produces them (SSE works)."""
import time

import pytest
import requests

from conftest import RawConn, large_pattern, scaled, sha256

SSE_SLEEP = scaled(3.0)          # upstream pause between event 1 and event 2
FIRST_EVENT_DEADLINE = scaled(1.0)  # event 1 must reach the client within this


def sse_request(version="HTTP/1.1"):
    return (f"GET /events HTTP/{version[-3:]}\r\nHost: stream.example\r\n"
            "Accept: text/event-stream\r\n\r\n").encode()


def read_chunked_events(c, t0):
    """Reads a chunked body chunk by chunk: (decoded body, time event 1 arrived, time event 2
    arrived), relative to t0."""
    body, t1, t2 = b"", None, None
    while True:
        data = c.read_chunk()
        if data is None:
            break
        body += data
        now = time.monotonic() - t0
        if t1 is None and b"data: 1\n\n" in body:
            t1 = now
        if t2 is None and b"data: 2\n\n" in body:
            t2 = now
    return body, t1, t2


def read_close_delimited_events(c, t0):
    body, t1, t2 = b"", None, None
    while True:
        data = c.read_some()
        if not data:
            break
        body += data
        now = time.monotonic() - t0
        if t1 is None and b"data: 1\n\n" in body:
            t1 = now
        if t2 is None and b"data: 2\n\n" in body:
            t2 = now
    return body, t1, t2


def test_sse_chunked_upstream_is_flushed(apps, gatehouses):
    up = apps.raw("sse", SSE_SLEEP)
    gh = gatehouses(up)
    with RawConn(gh.port, timeout=SSE_SLEEP + 10) as c:
        t0 = time.monotonic()
        c.send(sse_request())
        resp = c.read_head()
        assert resp.status == 200
        assert resp.header("content-type", "").startswith("text/event-stream")
        assert "chunked" in (resp.header("transfer-encoding") or "").lower()
        body, t1, t2 = read_chunked_events(c, t0)
    assert t1 is not None and t1 < FIRST_EVENT_DEADLINE, \
        f"event 1 arrived after {t1} s (upstream sent it at once, event 2 after {SSE_SLEEP} s)"
    assert t2 is not None and t2 >= SSE_SLEEP - 0.5
    assert body == b"data: 1\n\ndata: 2\n\n"


def test_sse_close_delimited_upstream_rechunked_for_http11(apps, gatehouses):
    up = apps.raw("sse-close", SSE_SLEEP)
    gh = gatehouses(up)
    with RawConn(gh.port, timeout=SSE_SLEEP + 10) as c:
        t0 = time.monotonic()
        c.send(sse_request())
        resp = c.read_head()
        assert resp.status == 200
        assert resp.header("content-type", "").startswith("text/event-stream")
        assert "chunked" in (resp.header("transfer-encoding") or "").lower(), \
            f"HTTP/1.1 client should get a chunked body: {resp.headers}"
        body, t1, t2 = read_chunked_events(c, t0)
    assert t1 is not None and t1 < FIRST_EVENT_DEADLINE, f"event 1 arrived after {t1} s"
    assert t2 is not None and t2 >= SSE_SLEEP - 0.5
    assert body == b"data: 1\n\ndata: 2\n\n"


@pytest.mark.parametrize("mode", ["sse-close", "sse"])
def test_sse_to_http10_client_is_close_delimited(apps, gatehouses, mode):
    up = apps.raw(mode, SSE_SLEEP)
    gh = gatehouses(up)
    with RawConn(gh.port, timeout=SSE_SLEEP + 10) as c:
        t0 = time.monotonic()
        c.send(sse_request("HTTP/1.0"))
        resp = c.read_head()
        assert resp.status == 200
        assert not resp.has_header("transfer-encoding"), resp.headers
        assert not resp.has_header("content-length"), resp.headers
        body, t1, t2 = read_close_delimited_events(c, t0)
    assert t1 is not None and t1 < FIRST_EVENT_DEADLINE, f"event 1 arrived after {t1} s"
    assert t2 is not None and t2 >= SSE_SLEEP - 0.5
    assert body == b"data: 1\n\ndata: 2\n\n"


@pytest.fixture(scope="module")
def gh(flask_app, module_gatehouses):
    return module_gatehouses(flask_app)


def test_flask_stream_chunks_arrive_incrementally(gh):
    n, delay = 5, 0.4
    arrivals = {}
    with RawConn(gh.port) as c:
        t0 = time.monotonic()
        c.send(f"GET /stream?n={n}&delay={delay} HTTP/1.1\r\nHost: s\r\n\r\n".encode())
        resp = c.read_head()
        assert resp.status == 200
        assert "chunked" in (resp.header("transfer-encoding") or "").lower()
        body = b""
        while True:
            data = c.read_chunk()
            if data is None:
                break
            body += data
            for i in range(n):
                if f"chunk {i}\n".encode() in body and i not in arrivals:
                    arrivals[i] = time.monotonic() - t0
    assert body == b"".join(f"chunk {i}\n".encode() for i in range(n))
    total = (n - 1) * delay
    assert arrivals[0] < scaled(0.5 * total), f"first chunk only at {arrivals[0]:.2f} s"
    assert arrivals[n - 1] - arrivals[0] >= 0.6 * total, f"chunks were not streamed: {arrivals}"


def test_flask_sse_events_arrive_incrementally(gh):
    with RawConn(gh.port) as c:
        t0 = time.monotonic()
        c.send(b"GET /sse?n=3&delay=1 HTTP/1.1\r\nHost: s\r\nAccept: text/event-stream\r\n\r\n")
        resp = c.read_head()
        assert resp.status == 200
        assert resp.header("content-type", "").startswith("text/event-stream")
        body, times = b"", []
        while True:
            data = c.read_chunk()
            if data is None:
                break
            body += data
            while len(times) < body.count(b"\n\n"):
                times.append(time.monotonic() - t0)
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert times[0] < scaled(1.0) and times[2] - times[0] >= 1.5, times


def test_large_body_intact(gh):
    n = 1024 * 1024
    r = requests.get(gh.url(f"/large?n={n}"), timeout=scaled(10))
    assert r.status_code == 200
    assert r.headers.get("Content-Length") == str(n), "Content-Length must be forwarded"
    assert "Transfer-Encoding" not in r.headers
    assert len(r.content) == n
    assert sha256(r.content) == sha256(large_pattern(n))


def test_large_body_intact_http10(gh):
    n = 1024 * 1024 + 17
    with RawConn(gh.port) as c:
        c.send(f"GET /large?n={n} HTTP/1.0\r\nHost: s\r\n\r\n".encode())
        resp = c.read_response()
    assert resp.status == 200
    assert resp.body == large_pattern(n)


def test_content_length_body_streamed(apps, gatehouses):
    """A slow Content-Length body reaches the client byte by byte, and gaps shorter than the
    upstream timeout do not abort it even when the whole body takes longer."""
    n, delay = 6, 0.4
    up = apps.raw("slow-body", n, delay)
    gh = gatehouses(up, upstreams={"app": {"timeout": f"{int(scaled(1) * 1000)}ms"}})
    with RawConn(gh.port) as c:
        t0 = time.monotonic()
        c.send(b"GET /slow-body HTTP/1.1\r\nHost: s\r\n\r\n")
        resp = c.read_head()
        assert resp.status == 200
        assert resp.header("content-length") == str(n)
        body, first, last = b"", None, None
        while len(body) < n:
            data = c.read_some()
            assert data, f"connection closed after {len(body)} body bytes"
            body += data
            now = time.monotonic() - t0
            first = now if first is None else first
            last = now
    assert body == b"ABCDEF"
    assert last - first >= 0.6 * (n - 1) * delay, f"body was buffered: first {first} last {last}"
