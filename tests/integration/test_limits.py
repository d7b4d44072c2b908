"""Request limits and malformed requests: local error replies, closed connections, and nothing
reaching the upstream."""
import contextlib
import json
import time

import pytest

from conftest import RawConn, build_request, readable, scaled, wait_until

MAX_HEADER = 4 * 1024
MAX_BODY = 1024 * 1024
MAX_URI = 1024


@pytest.fixture(scope="module")
def capture(module_apps):
    return module_apps.capture()


@pytest.fixture(scope="module")
def gh(capture, module_gatehouses):
    return module_gatehouses(capture, limits={"max_header_bytes": "4KiB", "max_body_bytes": "1MiB",
                                              "max_uri_bytes": "1KiB"})


@contextlib.contextmanager
def nothing_forwarded(capture):
    """Asserts after the block that the upstream saw no new request head at all."""
    before = len(capture.records())
    yield
    time.sleep(0.3)
    new = capture.records()[before:]
    assert new == [], f"rejected request reached the upstream: {new}"


def check_local_reply(resp, status, code):
    assert resp.status == status, resp
    assert resp.header("content-type", "").split(";")[0].strip() == "application/json"
    j = json.loads(resp.body)
    assert j["error"] == code
    assert isinstance(j["message"], str) and j["message"]
    assert "detail" not in j
    assert j["request_id"] == resp.header("x-request-id")
    return j


def reply_then_closed(gh, raw, status, code):
    with RawConn(gh.port) as c:
        c.send(raw)
        resp = c.read_response()
        check_local_reply(resp, status, code)
        closed, data, _ = c.wait_closed(scaled(3))
        assert closed, f"connection not closed after {status}"
        assert data == b"", f"bytes after the {status} reply: {data[:200]!r}"
    return resp


# ----------------------------------------------------------------------------------- sizes


def test_header_below_limit_passes(gh, capture):
    with RawConn(gh.port) as c:
        resp = c.request("GET", "/ok-header", [("X-Pad", "p" * 3000)])
    assert resp.status == 200 and resp.body == b"ok"


def test_huge_header_431(gh, capture):
    with nothing_forwarded(capture):
        raw = build_request("GET", "/big-header", [("X-Big", "b" * 8000)])
        reply_then_closed(gh, raw, 431, "request_header_fields_too_large")


def test_many_headers_431(gh, capture):
    with nothing_forwarded(capture):
        raw = build_request("GET", "/many-headers", [(f"X-H{i}", "v" * 90) for i in range(80)])
        reply_then_closed(gh, raw, 431, "request_header_fields_too_large")


def test_uri_at_limit_passes(gh):
    target = "/u?" + "a" * (MAX_URI - 3)
    assert len(target) == MAX_URI
    with RawConn(gh.port) as c:
        resp = c.request("GET", target)
    assert resp.status == 200 and resp.body == b"ok"


def test_long_uri_414(gh, capture):
    with nothing_forwarded(capture):
        reply_then_closed(gh, build_request("GET", "/u?" + "a" * 2000), 414, "uri_too_long")


def test_uri_one_over_limit_414(gh, capture):
    with nothing_forwarded(capture):
        target = "/u?" + "a" * (MAX_URI - 2)
        assert len(target) == MAX_URI + 1
        reply_then_closed(gh, build_request("GET", target), 414, "uri_too_long")


def test_body_at_limit_passes(gh, capture):
    body = b"x" * MAX_BODY
    with RawConn(gh.port) as c:
        resp = c.request("POST", "/body-at-limit", body=body)
    assert resp.status == 200
    rec = [r for r in capture.requests() if r["target"] == "/body-at-limit"][-1]
    assert rec["body_len"] == MAX_BODY


def test_content_length_over_limit_413_before_body(gh, capture):
    with nothing_forwarded(capture):
        raw = build_request("POST", "/too-big", [("Content-Length", str(2 * MAX_BODY))])
        # Only the head is sent: gatehouse must answer from Content-Length alone.
        reply_then_closed(gh, raw, 413, "payload_too_large")


def test_content_length_one_over_limit_413(gh, capture):
    with nothing_forwarded(capture):
        raw = build_request("POST", "/too-big", [("Content-Length", str(MAX_BODY + 1))])
        reply_then_closed(gh, raw, 413, "payload_too_large")


def test_chunked_body_over_limit_413(gh, capture):
    piece = b"c" * 65536
    with RawConn(gh.port) as c:
        c.send(build_request("POST", "/chunked-too-big", [("Transfer-Encoding", "chunked")]))
        sent = 0
        deadline = time.monotonic() + scaled(10)
        while sent < 3 * MAX_BODY and time.monotonic() < deadline:
            if readable(c.sock, 0):
                break
            try:
                c.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        assert sent > MAX_BODY, f"gatehouse answered after only {sent} body bytes"
        resp = c.read_response()
        check_local_reply(resp, 413, "payload_too_large")
        closed, _, _ = c.wait_closed(scaled(3))
        assert closed
    # The head went upstream before the body grew too large; let the capture record it now, so
    # that a loaded machine does not see it arrive inside the next test's "nothing forwarded".
    wait_until(lambda: any("/chunked-too-big" in r.get("head", "") for r in capture.records()),
               scaled(5))


# ----------------------------------------------------------------------------- malformed


BAD_REQUESTS = {
    "no_version": b"GET /echo\r\nHost: x\r\n\r\n",
    "garbage_line": b"THIS IS NOT HTTP\r\n\r\n",
    "bad_version": b"GET /echo HTTP/9.Z\r\nHost: x\r\n\r\n",
    "header_name_with_space": b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    "header_name_bad_char": b"GET /echo HTTP/1.1\r\nHost: x\r\nBad@Header: y\r\n\r\n",
    "header_without_colon": b"GET /echo HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "cl_and_te": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "differing_content_length": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                 b"Content-Length: 6\r\n\r\nhello!"),
    "content_length_list": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "te_gzip": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    "te_gzip_chunked": (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                        b"0\r\n\r\n"),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_malformed_request_400_closed(gh, capture, name):
    with nothing_forwarded(capture):
        reply_then_closed(gh, BAD_REQUESTS[name], 400, "bad_request")


@pytest.mark.parametrize("body", [
    b"ZZ\r\nhello\r\n0\r\n\r\n",
    b"-5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\nQ\r\n\r\n",
])
def test_bad_chunk_size_400_closed(gh, capture, body):
    before = len(capture.requests())
    raw = build_request("POST", "/bad-chunk", [("Transfer-Encoding", "chunked")]) + body
    reply_then_closed(gh, raw, 400, "bad_request")
    time.sleep(0.3)
    new = capture.requests()[before:]
    assert new == [], f"a request with a bad chunk reached the upstream complete: {new}"


def test_after_rejections_gatehouse_still_serves(gh):
    with RawConn(gh.port) as c:
        resp = c.request("GET", "/still-alive")
    assert resp.status == 200 and resp.body == b"ok"


# ------------------------------------------------------------------------------ timeouts


@pytest.fixture(scope="module")
def gh_header_timeout(capture, module_gatehouses):
    return module_gatehouses(capture, limits={"header_timeout": "1s", "idle_timeout": "30s"})


def assert_closed_silently(c, min_s, max_s):
    closed, data, waited = c.wait_closed(max_s)
    assert closed, f"connection still open after {max_s} s"
    assert data == b"", f"connection closed with a reply: {data[:200]!r}"
    assert waited >= min_s, f"closed too early ({waited:.2f} s)"


def test_header_timeout_partial_head(gh_header_timeout):
    with RawConn(gh_header_timeout.port) as c:
        c.send(b"GET /partial HTTP/1.1\r\nHost: x\r\n")
        assert_closed_silently(c, 0.7, scaled(3))


def test_header_timeout_nothing_sent(gh_header_timeout):
    with RawConn(gh_header_timeout.port) as c:
        assert_closed_silently(c, 0.7, scaled(3))


def test_header_timeout_trickled_head(gh_header_timeout):
    """A head sent a few bytes at a time still has to be complete within header_timeout."""
    head = b"GET /trickle HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * 200 + b"\r\n\r\n"
    with RawConn(gh_header_timeout.port) as c:
        start = time.monotonic()
        closed_at = None
        for i in range(0, len(head), 2):
            if time.monotonic() - start > scaled(3):
                break
            if readable(c.sock, 0):
                data = c.sock.recv(65536)
                assert data == b"", f"got a reply instead of a silent close: {data[:200]!r}"
                closed_at = time.monotonic() - start
                break
            try:
                c.send(head[i:i + 2])
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic() - start
                break
            time.sleep(0.1)
        assert closed_at is not None, "slowloris head kept the connection open"
        assert closed_at >= 0.7


def test_header_timeout_does_not_hit_normal_requests(gh_header_timeout):
    with RawConn(gh_header_timeout.port) as c:
        assert c.request("GET", "/normal").status == 200


def test_idle_timeout_closes_keepalive_connection(capture, gatehouses):
    gh = gatehouses(capture, limits={"idle_timeout": "1s", "header_timeout": "10s"})
    with RawConn(gh.port) as c:
        assert c.request("GET", "/idle-1").status == 200
        assert c.request("GET", "/idle-2").status == 200  # still open right after a response
        assert_closed_silently(c, 0.7, scaled(3))


def test_idle_connection_kept_within_idle_timeout(capture, gatehouses):
    gh = gatehouses(capture, limits={"idle_timeout": "3s", "header_timeout": "10s"})
    with RawConn(gh.port) as c:
        assert c.request("GET", "/kept-1").status == 200
        time.sleep(1.0)
        assert c.request("GET", "/kept-2").status == 200

