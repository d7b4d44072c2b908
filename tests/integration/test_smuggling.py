"""Request smuggling and parser abuse (issue 5): every ambiguous or malformed request is sent on a
raw socket to the real binary, and the test checks what gatehouse answers, whether it closes the
connection, and exactly which bytes the upstream received.

The upstream is an in-process recording server (RecordingUpstream below): it keeps every byte
each upstream connection delivered, parses complete requests (Content-Length or chunked framing),
records them and answers 200 with the request target as the body (so pipelined answers can be
matched to their requests). "Nothing smuggled reached the app" is checked on those raw bytes: the
marker path /smuggled never appears, and the number of complete requests is exact.

One gatehouse (2 workers, default config) serves the whole module; every case uses a fresh client
connection. The policy per case is documented in docs/security.md ("Request smuggling and parser
abuse"). The cases at the end were bugs this suite found; they are fixed and stay as regression tests.
"""
import socket
import threading
import time

import pytest

from conftest import HOST, RawConn, free_port, scaled, wait_until

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: gatehouse.test\r\n\r\n"
HOSTH = b"Host: gatehouse.test\r\n"
MARKER = b"/smuggled"
# Headers gatehouse adds to every forwarded request; left out when comparing header lists.
ADDED = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id", "traceparent"}


# ------------------------------------------------------------------------------ upstream


class RecordingUpstream:
    """A keep-alive HTTP/1.1 upstream in a thread: raw bytes per connection plus parsed requests."""

    def __init__(self):
        self.port = free_port()
        self.lock = threading.Lock()
        self.raw = []        # bytearray per accepted connection, every byte received
        self.closed = set()  # indexes of connections gatehouse closed (EOF seen)
        self.requests = []   # complete requests, in arrival order
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((HOST, self.port))
        self.srv.listen(64)
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    @property
    def address(self):
        return f"{HOST}:{self.port}"

    def _accept(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with self.lock:
                self.raw.append(bytearray())
                index = len(self.raw) - 1
            t = threading.Thread(target=self._serve, args=(conn, index), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn, index):
        buf = bytearray()
        conn.settimeout(60)

        def fill():
            data = conn.recv(65536)
            if not data:
                raise EOFError
            with self.lock:
                self.raw[index].extend(data)
            buf.extend(data)

        def until(delim):
            while delim not in buf:
                fill()
            i = buf.index(delim) + len(delim)
            out = bytes(buf[:i])
            del buf[:i]
            return out

        def exact(n):
            while len(buf) < n:
                fill()
            out = bytes(buf[:n])
            del buf[:n]
            return out

        try:
            while True:
                head = until(b"\r\n\r\n")
                lines = head[:-4].decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers.append((name.lower(), value.strip()))
                names = {n for n, _ in headers}
                body, chunk_lines, trailers = b"", [], []
                if "transfer-encoding" in names:
                    while True:
                        line = until(b"\r\n")
                        chunk_lines.append(line)
                        size = int(line.split(b";")[0], 16)
                        if size == 0:
                            while (t := until(b"\r\n")) != b"\r\n":
                                trailers.append(t)
                            break
                        body += exact(size)
                        if exact(2) != b"\r\n":
                            raise ValueError("chunk data not followed by CRLF")
                elif "content-length" in names:
                    body = exact(int(dict(headers)["content-length"]))
                req = {"conn": index, "request_line": lines[0], "method": parts[0],
                       "target": parts[1] if len(parts) > 1 else "",
                       "version": parts[2] if len(parts) > 2 else "",
                       "head": head.decode("latin-1"),
                       "headers": headers, "body": body, "chunk_lines": chunk_lines,
                       "trailers": trailers}
                with self.lock:
                    self.requests.append(req)
                target = req["target"].encode("latin-1")
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                             + str(len(target)).encode() + b"\r\n\r\n" + target)
        except (EOFError, OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.closed.add(index)
            conn.close()

    # ---- observation

    def mark(self):
        with self.lock:
            return len(self.requests), [len(r) for r in self.raw]

    def since(self, mark):
        """(new complete requests, {connection index: new raw bytes}) since mark."""
        n, lens = mark
        with self.lock:
            lens = lens + [0] * (len(self.raw) - len(lens))
            new_raw = {i: bytes(r[k:]) for i, (r, k) in enumerate(zip(self.raw, lens))
                       if len(r) > k}
            return list(self.requests[n:]), new_raw

    def is_closed(self, index):
        with self.lock:
            return index in self.closed

    def stop(self):
        self.srv.close()


@pytest.fixture(scope="module")
def upstream():
    up = RecordingUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gh(module_gatehouses, upstream):
    return module_gatehouses(upstream.address)


# ------------------------------------------------------------------------------ helpers


def settle():
    """Time for bytes gatehouse already wrote to reach the recording upstream."""
    time.sleep(scaled(0.1))


def send_and_read(gh, data, max_responses=8, timeout=5.0):
    """Sends data in one write and reads responses until Connection: close, EOF, a read timeout
    or max_responses. Returns (responses, conn) with conn still open."""
    conn = RawConn(gh.port, timeout=timeout)
    conn.send(data)
    responses = []
    while len(responses) < max_responses:
        try:
            resp = conn.read_response()
        except (EOFError, socket.timeout, ConnectionResetError):
            break
        responses.append(resp)
        if "close" in resp.connection_tokens():
            break
    return responses, conn


def assert_rejected(gh, upstream, data, status=400):
    """One `status` answer with Connection: close, the connection then closed by gatehouse, no
    complete request and no smuggled bytes upstream, and any upstream connection that got a
    partial request closed. Returns the raw bytes the upstream received meanwhile."""
    mark = upstream.mark()
    responses, conn = send_and_read(gh, data, max_responses=1, timeout=scaled(5))
    with conn:
        assert [r.status for r in responses] == [status], responses
        assert "close" in responses[0].connection_tokens(), responses[0]
        closed, extra, _ = conn.wait_closed(scaled(3))
        assert closed, "gatehouse kept the connection open after the error reply"
        assert extra == b"", f"bytes after the error reply: {extra[:200]!r}"
    settle()
    requests, raw = upstream.since(mark)
    assert requests == [], f"upstream received complete requests: {requests}"
    joined = b"".join(raw.values())
    assert MARKER not in joined, f"smuggled request reached the upstream: {joined!r}"
    for index in raw:
        assert wait_until(lambda: upstream.is_closed(index), scaled(3), 0.02), (
            "upstream connection that received a partial request was not closed")
    return joined


def forward_one(gh, upstream, data, keep_alive=True, marker_in_body=False):
    """Exactly one 200 answer, the connection kept open (unless keep_alive is False: then closed),
    and exactly one complete request upstream, which is returned."""
    mark = upstream.mark()
    # One response is read; an unexpected extra one would be read instead of /after below.
    responses, conn = send_and_read(gh, data, max_responses=1, timeout=scaled(5))
    with conn:
        assert [r.status for r in responses] == [200], responses
        if keep_alive:
            assert "close" not in responses[0].connection_tokens(), responses[0]
            # Still usable: a second request on the same connection is answered.
            again = conn.request("GET", "/after")
            assert again.status == 200 and again.body == b"/after"
        else:
            closed, extra, _ = conn.wait_closed(scaled(3))
            assert closed and extra == b""
    settle()
    requests, raw = upstream.since(mark)
    expected = 2 if keep_alive else 1
    assert len(requests) == expected, requests
    if not marker_in_body:
        assert MARKER not in b"".join(raw.values())
    return requests[0]


def forwarded_headers(req):
    return [(n, v) for n, v in req["headers"] if n not in ADDED]


def header_values(req, name):
    return [v for n, v in req["headers"] if n == name]


def post(headers, body):
    return b"POST /a HTTP/1.1\r\n" + HOSTH + headers + b"\r\n" + body


def te_chunked(body):
    return post(b"Transfer-Encoding: chunked\r\n", body)


HELLO_CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"


# --------------------------------------------------------------------------- rejected: 400 + close

REJECTED = [
    # CL.TE / TE.CL: both framings present (RFC 9112 section 6.3 item 3)
    ("cl-then-te", post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                        b"0\r\n\r\n" + SMUGGLED)),
    ("te-then-cl", post(b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n",
                        b"0\r\n\r\n" + SMUGGLED)),
    ("cl-te-classic-gpost", post(b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                                 b"5c\r\nGPOST /smuggled HTTP/1.1\r\nContent-Length: 15\r\n\r\n"
                                 b"x=1\r\n0\r\n\r\n")),
    ("http10-te-and-cl", b"POST /a HTTP/1.0\r\n" + HOSTH + b"Content-Length: 6\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n"
                         + SMUGGLED),
    # Content-Length that is not one valid decimal (RFC 9112 section 6.3 item 5)
    ("cl-duplicate-different", post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!")),
    ("cl-comma-different", post(b"Content-Length: 5, 6\r\n", b"hello!")),
    ("cl-plus-sign", post(b"Content-Length: +5\r\n", b"hello")),
    ("cl-negative", post(b"Content-Length: -1\r\n", b"hello")),
    ("cl-hex", post(b"Content-Length: 0x5\r\n", b"hello")),
    ("cl-empty", post(b"Content-Length: \r\n", b"hello")),
    ("cl-past-64-bits", post(b"Content-Length: 18446744073709551621\r\n", b"hello")),
    # Transfer-Encoding other than a lone "chunked" (TE.TE obfuscation)
    ("te-chunked-identity", post(b"Transfer-Encoding: chunked, identity\r\n", HELLO_CHUNKED)),
    ("te-identity", post(b"Transfer-Encoding: identity\r\n", HELLO_CHUNKED)),
    ("te-gzip", post(b"Transfer-Encoding: gzip\r\n", HELLO_CHUNKED)),
    ("te-gzip-chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", HELLO_CHUNKED)),
    ("te-chunked-twice", post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                              HELLO_CHUNKED)),
    ("te-gzip-line-then-chunked-line",
     post(b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", HELLO_CHUNKED)),
    ("te-chunked-then-other-line",
     post(b"Transfer-Encoding: chunked\r\nTransfer-encoding: cow\r\n", HELLO_CHUNKED)),
    ("te-vertical-tab", post(b"Transfer-Encoding: \x0bchunked\r\n", HELLO_CHUNKED)),
    ("te-xchunked", post(b"Transfer-Encoding: xchunked\r\n", HELLO_CHUNKED)),
    ("te-quoted", post(b'Transfer-Encoding: "chunked"\r\n', HELLO_CHUNKED)),
    ("te-space-before-colon", post(b"Transfer-Encoding : chunked\r\n", HELLO_CHUNKED)),
    ("te-folded-into-identity", post(b"Transfer-Encoding: identity\r\n chunked\r\n",
                                     HELLO_CHUNKED)),
    # header syntax (RFC 9112 section 5)
    ("space-before-colon", b"GET /a HTTP/1.1\r\n" + HOSTH + b"X-A : b\r\n\r\n"),
    ("host-space-before-colon", b"GET /a HTTP/1.1\r\nHost : x\r\n\r\n"),
    ("tab-before-colon", b"GET /a HTTP/1.1\r\n" + HOSTH + b"X-A\t: b\r\n\r\n"),
    ("name-parentheses", b"GET /a HTTP/1.1\r\n" + HOSTH + b"X(A): b\r\n\r\n"),
    ("name-with-space", b"GET /a HTTP/1.1\r\n" + HOSTH + b"X A: b\r\n\r\n"),
    ("name-empty", b"GET /a HTTP/1.1\r\n" + HOSTH + b": b\r\n\r\n"),
    ("line-without-colon", b"GET /a HTTP/1.1\r\n" + HOSTH + b"XA\r\n\r\n"),
    ("obs-fold-first-line", b"GET /a HTTP/1.1\r\n X-A: one\r\n" + HOSTH + b"\r\n"),
    ("nul-in-name", b"GET /a HTTP/1.1\r\n" + HOSTH + b"X-\x00A: b\r\n\r\n"),
    ("nul-in-value", b"GET /a HTTP/1.1\r\n" + HOSTH + b"X-A: b\x00c\r\n\r\n"),
    ("ctl-in-value", b"GET /a HTTP/1.1\r\n" + HOSTH + b"X-A: b\x01c\r\n\r\n"),
    ("del-in-value", b"GET /a HTTP/1.1\r\n" + HOSTH + b"X-A: b\x7fc\r\n\r\n"),
    ("bare-cr-in-value", b"GET /a HTTP/1.1\r\n" + HOSTH + b"X-A: a\rb\r\n\r\n"),
    ("bare-lf-everywhere", b"GET /a HTTP/1.1\nHost: gatehouse.test\n\n"),
    ("bare-lf-one-header", b"GET /a HTTP/1.1\r\nHost: gatehouse.test\nX-A: b\r\n\r\n"),
    ("bare-lf-hides-te", b"GET /a HTTP/1.1\r\n" + HOSTH +
                         b"X-A: b\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED),
    # request line (RFC 9112 section 3)
    ("bare-cr-in-target", b"GET /a\r HTTP/1.1\r\n" + HOSTH + b"\r\n"),
    ("bare-cr-ends-request-line", b"GET /a HTTP/1.1\r" + HOSTH + b"\r\n"),
    ("space-in-target", b"GET /a b HTTP/1.1\r\n" + HOSTH + b"\r\n"),
    ("tab-in-target", b"GET /a\tb HTTP/1.1\r\n" + HOSTH + b"\r\n"),
    ("nul-in-target", b"GET /a\x00b HTTP/1.1\r\n" + HOSTH + b"\r\n"),
    ("ctl-in-target", b"GET /a\x01b HTTP/1.1\r\n" + HOSTH + b"\r\n"),
    ("del-in-target", b"GET /a\x7fb HTTP/1.1\r\n" + HOSTH + b"\r\n"),
    ("double-space-request-line", b"GET  /a HTTP/1.1\r\n" + HOSTH + b"\r\n"),
    ("trailing-space-request-line", b"GET /a HTTP/1.1 \r\n" + HOSTH + b"\r\n"),
    ("ctl-in-method", b"G\x01T /a HTTP/1.1\r\n" + HOSTH + b"\r\n"),
    ("leading-empty-line", b"\r\nGET /a HTTP/1.1\r\n" + HOSTH + b"\r\n"),
    ("version-http-2.0", b"GET /a HTTP/2.0\r\n" + HOSTH + b"\r\n"),
    ("version-http-1.2", b"GET /a HTTP/1.2\r\n" + HOSTH + b"\r\n"),
    ("version-http-1.10", b"GET /a HTTP/1.10\r\n" + HOSTH + b"\r\n"),
    ("version-lowercase", b"GET /a http/1.1\r\n" + HOSTH + b"\r\n"),
    ("http-0.9-no-version", b"GET /a\r\n\r\n"),
    # Host (RFC 9112 section 3.2)
    ("host-twice-different", b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("host-twice-same", b"GET /a HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
    ("host-missing", b"GET /a HTTP/1.1\r\n\r\n"),
    # chunked body framing errors found before any body byte was forwarded (RFC 9112 section 7.1)
    ("chunk-size-past-64-bits", te_chunked(b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n")),
    ("chunk-size-2^64+5", te_chunked(b"10000000000000005\r\nhello\r\n0\r\n\r\n")),
    ("chunk-size-negative", te_chunked(b"-5\r\nhello\r\n0\r\n\r\n")),
    ("chunk-size-hex-garbage", te_chunked(b"5g\r\nhello\r\n0\r\n\r\n")),
    ("chunk-size-0x-prefix", te_chunked(b"0x5\r\nhello\r\n0\r\n\r\n")),
    ("chunk-size-trailing-space", te_chunked(b"5 \r\nhello\r\n0\r\n\r\n")),
    ("chunk-size-leading-space", te_chunked(b" 5\r\nhello\r\n0\r\n\r\n")),
    ("chunk-ext-nul", te_chunked(b"5;\x00\r\nhello\r\n0\r\n\r\n")),
    ("chunk-ext-bare-lf", te_chunked(b"5;a=\nb\r\nhello\r\n0\r\n\r\n")),
    ("chunk-lines-bare-lf", te_chunked(b"5\nhello\n0\n\n\r\n")),
]


@pytest.mark.parametrize("data", [pytest.param(d, id=i) for i, d in REJECTED])
def test_rejected_400_close_nothing_forwarded(gh, upstream, data):
    raw = assert_rejected(gh, upstream, data)
    assert raw == b"", f"upstream received bytes: {raw[:300]!r}"


# Errors in the chunked body found after the head and earlier chunks were streamed upstream: the
# client gets 400 + close, the upstream connection is closed mid-request (never reused), and the
# upstream never sees a terminating last-chunk nor anything after it.
REJECTED_MID_BODY = [
    ("chunk-data-not-followed-by-crlf", te_chunked(b"5\r\nhelloXX0\r\n\r\n" + SMUGGLED)),
    ("chunk-data-longer-than-size", te_chunked(b"3\r\nhello\r\n0\r\n\r\n" + SMUGGLED)),
    ("last-chunk-missing-final-crlf", te_chunked(b"5\r\nhello\r\n0\r\n" + SMUGGLED)),
    ("content-length-in-trailer", te_chunked(b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n")),
    ("transfer-encoding-in-trailer",
     te_chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n")),
]


@pytest.mark.parametrize("data", [pytest.param(d, id=i) for i, d in REJECTED_MID_BODY])
def test_rejected_mid_body_upstream_aborted(gh, upstream, data):
    raw = assert_rejected(gh, upstream, data)
    assert raw.startswith(b"POST /a HTTP/1.1\r\n"), raw[:200]
    assert b"\r\n0\r\n" not in raw.split(b"\r\n\r\n", 1)[1], f"last-chunk forwarded: {raw!r}"


def test_content_length_over_limit_413_close(gh, upstream):
    raw = assert_rejected(gh, upstream, post(b"Content-Length: 99999999999\r\n", b"hello"),
                          status=413)
    assert raw == b""


def test_rejections_are_logged(gh, upstream):
    assert_rejected(gh, upstream, post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                                       b"0\r\n\r\n"))
    line = gh.wait_log("security", lambda l: l.get("event") == "malformed_request"
                       and "Transfer-Encoding" in l.get("reason", ""))
    assert line["client_ip"] == "127.0.0.1"


# --------------------------------------------------------------------------- accepted, normalised


@pytest.mark.parametrize("headers,expected", [
    pytest.param(b"Content-Length: 5\r\nContent-Length: 5\r\n", "5", id="duplicate-same"),
    pytest.param(b"Content-Length: 5, 5\r\n", "5", id="comma-same"),
    pytest.param(b"Content-Length:  5 \t\r\n", "5", id="surrounding-whitespace"),
    pytest.param(b"Content-Length: 005\r\n", "5", id="leading-zeros"),
])
def test_content_length_normalised_to_one(gh, upstream, headers, expected):
    req = forward_one(gh, upstream, post(headers, b"hello"))
    assert header_values(req, "content-length") == [expected]
    assert header_values(req, "transfer-encoding") == []
    assert req["body"] == b"hello"


@pytest.mark.parametrize("value", [
    pytest.param(b"Chunked", id="Chunked"),
    pytest.param(b"CHUNKED", id="CHUNKED"),
    pytest.param(b" \t chunked \t", id="odd-whitespace"),
    pytest.param(b",chunked", id="empty-list-element-before"),
    pytest.param(b"chunked,", id="empty-list-element-after"),
    pytest.param(b"\r\n chunked", id="obs-folded-value"),
])
def test_transfer_encoding_normalised_and_rechunked(gh, upstream, value):
    req = forward_one(gh, upstream, post(b"Transfer-Encoding: " + value + b"\r\n", HELLO_CHUNKED))
    assert header_values(req, "transfer-encoding") == ["chunked"]
    assert header_values(req, "content-length") == []
    assert b"Transfer-Encoding: chunked\r\n" in req["head"].encode("latin-1")
    assert req["body"] == b"hello" and req["chunk_lines"] == [b"5\r\n", b"0\r\n"]


@pytest.mark.parametrize("fold", [b" ", b"\t"], ids=["space", "tab"])
def test_obs_fold_replaced_by_space(gh, upstream, fold):
    req = forward_one(gh, upstream,
                      b"GET /a HTTP/1.1\r\n" + HOSTH + b"X-A: one\r\n" + fold + b"two\r\n\r\n")
    assert header_values(req, "x-a") == ["one two"]
    assert not any(line[:1] in (" ", "\t") for line in req["head"].split("\r\n")[1:])


def test_obs_fold_cannot_inject_a_header(gh, upstream):
    data = post(b"X-A: x\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"hello")
    req = forward_one(gh, upstream, data)
    assert header_values(req, "x-a") == ["x Transfer-Encoding: chunked"]
    assert header_values(req, "transfer-encoding") == []
    assert header_values(req, "content-length") == ["5"] and req["body"] == b"hello"


@pytest.mark.parametrize("body,data,sizes", [
    pytest.param(b'5;ext=1\r\nhello\r\n0;last="q"\r\n\r\n', b"hello", [b"5\r\n"], id="ext"),
    pytest.param(b'5;a="x\\"y";b\r\nhello\r\n0\r\n\r\n', b"hello", [b"5\r\n"], id="quoted-ext"),
    pytest.param(b"5 ;a=b\r\nhello\r\n0\r\n\r\n", b"hello", [b"5\r\n"], id="bws-before-ext"),
    pytest.param(b"0" * 1000 + b"5\r\nhello\r\n0\r\n\r\n", b"hello", [b"5\r\n"],
                 id="1000-leading-zeros"),
    pytest.param(b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", [b"a\r\n"], id="uppercase-hex"),
])
def test_chunk_extensions_stripped_on_rechunking(gh, upstream, body, data, sizes):
    req = forward_one(gh, upstream, te_chunked(body))
    assert req["body"] == data
    assert req["chunk_lines"] == sizes + [b"0\r\n"]  # no extensions, canonical sizes


def test_trailers_dropped(gh, upstream):
    req = forward_one(gh, upstream, te_chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"))
    assert req["body"] == b"hello" and req["trailers"] == []
    assert header_values(req, "x-t") == []


def test_h2c_upgrade_not_forwarded(gh, upstream):
    data = (b"GET /a HTTP/1.1\r\n" + HOSTH + b"Connection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    req = forward_one(gh, upstream, data)
    assert {"upgrade", "http2-settings", "connection"}.isdisjoint(n for n, _ in req["headers"])


def test_get_with_content_length_body_is_body(gh, upstream):
    """Request bytes framed as a body by Content-Length stay body bytes (never a request)."""
    data = (b"GET /a HTTP/1.1\r\n" + HOSTH + b"Content-Length: " + str(len(SMUGGLED)).encode()
            + b"\r\n\r\n" + SMUGGLED)
    req = forward_one(gh, upstream, data, marker_in_body=True)
    assert req["target"] == "/a" and req["body"] == SMUGGLED


@pytest.mark.parametrize("target,forwarded", [
    pytest.param("/a?x=/../b%00", "/a?x=/../b%00", id="dot-segments-in-query"),
    pytest.param("/caf\xe9", "/caf%E9", id="obs-text-byte"),  # the canonical path: escaped
    pytest.param("/%61//b%3f", "/a/b%3F", id="canonical-path"),
])
def test_targets_forwarded_canonical(gh, upstream, target, forwarded):
    req = forward_one(gh, upstream,
                      b"GET " + target.encode("latin-1") + b" HTTP/1.1\r\n" + HOSTH + b"\r\n")
    assert req["target"] == forwarded


@pytest.mark.parametrize("target", [b"/a%00b", b"/a%2fb", b"/a%zz", b"/a%5c"],
                         ids=["pct-00", "pct-2f", "bad-escape", "pct-5c"])
def test_targets_an_app_would_decode_differently_rejected(gh, upstream, target):
    assert_rejected(gh, upstream, b"GET " + target + b" HTTP/1.1\r\n" + HOSTH + b"\r\n")


def test_obs_text_header_value_forwarded_verbatim(gh, upstream):
    req = forward_one(gh, upstream, b"GET /a HTTP/1.1\r\n" + HOSTH + b"X-A: caf\xe9\r\n\r\n")
    assert header_values(req, "x-a") == ["caf\xe9"]


def test_http10_with_transfer_encoding_rejected(gh, upstream):
    """HTTP/1.0 + Transfer-Encoding is faulty framing (RFC 9112 6.1): 400, nothing forwarded."""
    data = (b"POST /a HTTP/1.0\r\n" + HOSTH + b"Transfer-Encoding: chunked\r\n\r\n" + HELLO_CHUNKED
            + SMUGGLED)
    assert_rejected(gh, upstream, data)


def test_backslash_in_path_rejected(gh, upstream):
    """Some upstreams read '\\' as '/': a path routed as one prefix could be served as another."""
    assert_rejected(gh, upstream, b"GET /a\\..\\b HTTP/1.1\r\n" + HOSTH + b"\r\n")


# ------------------------------------------------------------------------------ answered locally


@pytest.mark.parametrize("request_line,host", [
    pytest.param(b"GET http://evil.com/ HTTP/1.1", HOSTH, id="absolute-form"),
    pytest.param(b"GET http://evil.com/a HTTP/1.1", b"Host: gatehouse.test\r\n",
                 id="absolute-form-other-host"),
    pytest.param(b"GET https://gatehouse.test/a HTTP/1.1", HOSTH, id="absolute-form-same-host"),
    pytest.param(b"OPTIONS * HTTP/1.1", HOSTH, id="asterisk-form"),
    pytest.param(b"CONNECT x:443 HTTP/1.1", b"Host: x:443\r\n", id="authority-form"),
    pytest.param(b"GET a HTTP/1.1", HOSTH, id="target-without-slash"),
])
def test_non_origin_form_rejected_never_forwarded(gh, upstream, request_line, host):
    raw = assert_rejected(gh, upstream, request_line + b"\r\n" + host + b"\r\n")
    assert b"evil.com" not in raw


# ------------------------------------------------------------------------------ pipelining


def test_pipelined_requests_answered_in_order_once_each(gh, upstream):
    data = (b"GET /p1 HTTP/1.1\r\n" + HOSTH + b"\r\n"
            b"POST /p2 HTTP/1.1\r\n" + HOSTH + b"Content-Length: 3\r\n\r\nabc"
            b"POST /p3 HTTP/1.1\r\n" + HOSTH + b"Transfer-Encoding: chunked\r\n\r\n"
            b"3\r\nxyz\r\n0\r\n\r\n"
            b"GET /p4 HTTP/1.1\r\n" + HOSTH + b"Connection: close\r\n\r\n")
    mark = upstream.mark()
    responses, conn = send_and_read(gh, data, timeout=scaled(5))
    with conn:
        assert [(r.status, r.body) for r in responses] == [
            (200, b"/p1"), (200, b"/p2"), (200, b"/p3"), (200, b"/p4")]
        closed, extra, _ = conn.wait_closed(scaled(3))
        assert closed and extra == b""
    settle()
    requests, _ = upstream.since(mark)
    assert [(r["target"], r["body"]) for r in requests] == [
        ("/p1", b""), ("/p2", b"abc"), ("/p3", b"xyz"), ("/p4", b"")]


def test_pipeline_stops_at_first_bad_request(gh, upstream):
    data = (b"GET /p1 HTTP/1.1\r\n" + HOSTH + b"\r\n"
            + post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")
            + SMUGGLED)
    mark = upstream.mark()
    responses, conn = send_and_read(gh, data, timeout=scaled(5))
    with conn:
        assert [r.status for r in responses] == [200, 400]
        closed, _, _ = conn.wait_closed(scaled(3))
        assert closed
    settle()
    requests, raw = upstream.since(mark)
    assert [r["target"] for r in requests] == ["/p1"]
    assert MARKER not in b"".join(raw.values())


# ------------------------------------------------------------------------------ once bugs, now fixed


def test_http10_transfer_encoding_keep_alive_closes(gh, upstream):
    data = (b"POST /a HTTP/1.0\r\n" + HOSTH + b"Transfer-Encoding: chunked\r\n"
            b"Connection: keep-alive\r\n\r\n" + HELLO_CHUNKED + SMUGGLED)
    mark = upstream.mark()
    responses, conn = send_and_read(gh, data, max_responses=3, timeout=scaled(1))
    with conn:
        assert [r.status for r in responses] in ([400], [200]), responses
        closed, _, _ = conn.wait_closed(scaled(2))
    settle()
    _, raw = upstream.since(mark)
    assert MARKER not in b"".join(raw.values()), "the request after it reached the upstream"
    assert closed


def flood_unterminated(gh, prefix, filler, total):
    """Sends prefix then `total` filler bytes without ever ending the line; returns what
    gatehouse answered before closing (b"" if it neither answered nor closed)."""
    conn = RawConn(gh.port, timeout=scaled(5))
    with conn:
        try:
            conn.send(prefix)
            block = filler * (65536 // len(filler))
            for _ in range(total // len(block)):
                conn.send(block)
        except OSError:
            pass  # gatehouse closed while we were sending: fine, read what it said
        closed, data, _ = conn.wait_closed(scaled(2))
        return closed, data


@pytest.mark.parametrize("filler", [b"a", b"0"], ids=["chunk-extension", "chunk-size-digits"])
def test_very_long_chunk_size_line_rejected(gh, filler):
    prefix = te_chunked(b"5;e=" if filler == b"a" else b"")
    closed, data = flood_unterminated(gh, prefix, filler, 1 << 20)
    assert closed and data.startswith(b"HTTP/1.1 400 "), data[:200]


def test_very_long_trailer_section_rejected(gh):
    prefix = te_chunked(b"5\r\nhello\r\n0\r\nX-T: ")
    closed, data = flood_unterminated(gh, prefix, b"a", 1 << 20)
    assert closed and (data.startswith(b"HTTP/1.1 431 ") or data.startswith(b"HTTP/1.1 400 ")), \
        data[:200]


@pytest.mark.parametrize("target", [b"/public/../admin", b"/public/%2e%2e/admin",
                                    b"/public/./../admin"],
                         ids=["dotdot", "pct-2e2e", "dot-dotdot"])
def test_dot_segments_rejected_or_normalised(gh, upstream, target):
    mark = upstream.mark()
    responses, conn = send_and_read(gh, b"GET " + target + b" HTTP/1.1\r\n" + HOSTH + b"\r\n",
                                    max_responses=1, timeout=scaled(2))
    conn.close()
    settle()
    requests, _ = upstream.since(mark)
    if responses and responses[0].status == 400:
        assert requests == []
    else:
        assert [r["target"] for r in requests] == ["/admin"]


def test_fragment_in_target_rejected_or_stripped(gh, upstream):
    mark = upstream.mark()
    responses, conn = send_and_read(gh, b"GET /a#frag HTTP/1.1\r\n" + HOSTH + b"\r\n",
                                    max_responses=1, timeout=scaled(2))
    conn.close()
    settle()
    requests, _ = upstream.since(mark)
    if responses and responses[0].status == 400:
        assert requests == []
    else:
        assert [r["target"] for r in requests] == ["/a"]


@pytest.mark.parametrize("value", [b"a, b", b"a/b@c", b"a b"], ids=["comma-list", "path-userinfo",
                                                                    "space"])
def test_invalid_host_value_rejected(gh, upstream, value):
    assert_rejected(gh, upstream, b"GET /a HTTP/1.1\r\nHost: " + value + b"\r\n\r\n")


# ------------------------------------------------------------------------------ still standing


def test_gatehouse_survived_everything(gh):
    assert gh.running()
    with RawConn(gh.port, timeout=scaled(5)) as conn:
        resp = conn.request("GET", "/final")
        assert resp.status == 200 and resp.body == b"/final"
