"""Client identity behind proxies: X-Forwarded-* with several field lines, RFC 7239 Forwarded, and
the PROXY protocol (v1, v2), with a real HAProxy in front where it matters.

Every loopback address is local on Linux, so the roles get their own source addresses:
  127.0.0.2, 127.0.0.4  end clients (never trusted)
  127.0.0.3             HAProxy's source towards gatehouse, and raw "trusted proxy" sockets
  127.0.0.1             direct, untrusted connections
"""
import json
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time

import pytest

from conftest import (HOST, Gatehouse, RawConn, build_request, default_config, deep_merge,
                      free_port, make_cert, scaled, targets_of, tls_client_context, wait_until)

CLIENT = "127.0.0.2"
CLIENT2 = "127.0.0.4"
PROXY = "127.0.0.3"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


# ------------------------------------------------------------------------------ helpers


def connect(port, source, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(scaled(timeout))
    s.bind((source, 0))
    s.connect((HOST, port))
    return s


def raw_from(port, source, timeout=5.0):
    return RawConn.from_socket(connect(port, source, timeout), timeout)


def v2_header(command, src=None, dst=("127.0.0.1", 80), tlvs=b""):
    """A PROXY v2 header: command 0 = LOCAL, 1 = PROXY (TCP over IPv4 when src is given)."""
    if src is None:
        return V2_SIG + bytes([0x20 | command, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    body = (socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) +
            struct.pack("!HH", src[1], dst[1]) + tlvs)
    return V2_SIG + bytes([0x20 | command, 0x11]) + struct.pack("!H", len(body)) + body


class ProxiedGatehouse(Gatehouse):
    """A gatehouse whose public listener wants a PROXY header from PROXY (127.0.0.3)."""

    def wait_live(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with raw_from(self.port, PROXY, 1.0) as c:
                    c.send(b"PROXY UNKNOWN\r\n" + build_request("GET", "/health/live"))
                    if c.read_response().status == 200:
                        return True
            except (OSError, EOFError, AssertionError):
                pass
            time.sleep(0.05)
        return False


_started = []


@pytest.fixture(autouse=True)
def _stop_gatehouses():
    """Every gatehouse start_gatehouse() started is stopped when its test ends."""
    yield
    while _started:
        try:
            _started.pop().stop()
        except Exception:  # noqa: BLE001 - teardown must go on
            pass


def start_gatehouse(tmp_path, upstream, cls=Gatehouse, **overrides):
    workdir = tmp_path / f"gh-{cls.__name__}"
    cfg = deep_merge(default_config(workdir, targets_of(upstream)), overrides)
    g = cls(workdir, cfg)
    _started.append(g)
    g.start()
    return g


def listening(port):
    """True when a socket listens on 127.0.0.1:port (read from /proc, without connecting)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(l.split()[1] == want and l.split()[3] == "0A" for l in f.readlines()[1:])


class HAProxy:
    """`haproxy -f cfg -db` on a free loopback port; stopped by the test's finalizer."""

    def __init__(self, workdir, body):
        self.port = free_port()
        self.cfg = workdir / "haproxy.cfg"
        self.log = workdir / "haproxy.log"
        self.cfg.write_text(
            "global\n  maxconn 256\n"
            "defaults\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n"
            + body.format(port=self.port))
        self.proc = None

    def start(self):
        if shutil.which("haproxy") is None:
            pytest.fail("haproxy is not installed (scripts/bootstrap.sh installs it)")
        self._out = open(self.log, "ab")
        self.proc = subprocess.Popen(["haproxy", "-f", str(self.cfg), "-db"],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        # Not by connecting: in TCP mode HAProxy would open a connection to gatehouse for the
        # probe and close it before any PROXY header, which gatehouse rightly counts as an error.
        if not wait_until(lambda: self.proc.poll() is None and listening(self.port), scaled(10)):
            self.stop()
            raise RuntimeError("haproxy did not start:\n" + self.log.read_text()[-2000:])
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()


@pytest.fixture
def haproxies(tmp_path):
    started = []

    def make(body):
        d = tmp_path / f"haproxy{len(started)}"
        d.mkdir()
        h = HAProxy(d, body).start()
        started.append(h)
        return h

    yield make
    for h in started:
        h.stop()


def get(port, source, target, headers=()):
    """One request on a fresh connection from `source`: (status, JSON or None)."""
    with raw_from(port, source) as c:
        r = c.request("GET", target, headers=headers, host="app.test")
        body = r.body if hasattr(r, "body") else b""
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, None


def limited_route(**extra):
    return deep_merge({"name": "api", "match": {"path_prefix": "/"}, "upstream": "app",
                       "rate_limit": {"key": "ip", "limits": "2/minute"}}, extra)


def closed_without_reply(conn, timeout=5.0):
    closed, data, _ = conn.wait_closed(scaled(timeout))
    return closed and data == b""


# ------------------------------------------------------------------------------ X-Forwarded-For


def test_haproxy_forwardfor_identity_and_upstream_chain(tmp_path, flask_app, haproxies):
    """(a) HAProxy `option forwardfor` appends its own X-Forwarded-For line after the client's
    spoofed ones: the client is keyed on what HAProxy saw, whatever it sends first."""
    gh = start_gatehouse(tmp_path, flask_app, trusted_proxies=[PROXY], routes=[limited_route()])
    ha = haproxies(
        "frontend fe\n  mode http\n  bind 127.0.0.1:{port}\n  option forwardfor\n"
        f"  default_backend be\nbackend be\n  mode http\n"
        f"  server gh 127.0.0.1:{gh.port} source {PROXY}\n")
    statuses = []
    bodies = []
    for n in range(5):
        status, body = get(ha.port, CLIENT, "/echo",
                           [("X-Forwarded-For", f"1.2.3.{n}"), ("X-Forwarded-For", "9.9.9.9")])
        statuses.append(status)
        bodies.append(body)
    assert statuses == [200, 200, 429, 429, 429]
    # The app gets the whole chain, one list: the client's lines, HAProxy's, then HAProxy itself.
    assert bodies[0]["headers"]["x-forwarded-for"] == f"1.2.3.0, 9.9.9.9, {CLIENT}, {PROXY}"
    assert bodies[1]["headers"]["x-forwarded-for"] == f"1.2.3.1, 9.9.9.9, {CLIENT}, {PROXY}"
    # Another client through the same HAProxy has its own quota.
    assert get(ha.port, CLIENT2, "/echo", [("X-Forwarded-For", "1.2.3.0")])[0] == 200
    line = gh.wait_log("access", lambda l: l["status"] == 429)
    assert line["client_ip"] == CLIENT


def test_two_xff_lines_from_a_trusted_peer(tmp_path, flask_app):
    """(b) The issue's reproduction on raw sockets: `X-Forwarded-For: 1.2.3.N` then
    `X-Forwarded-For: 9.9.9.9` from a trusted peer is client 9.9.9.9, every time."""
    gh = start_gatehouse(tmp_path, flask_app, trusted_proxies=[PROXY], routes=[limited_route()])
    statuses = []
    for n in range(5):
        status, body = get(gh.port, PROXY, "/echo",
                           [("X-Forwarded-For", f"1.2.3.{n}"), ("X-Forwarded-For", "9.9.9.9"),
                            ("X-Forwarded-Proto", "http"), ("X-Forwarded-Proto", "https"),
                            ("X-Forwarded-Host", "evil.test"), ("X-Forwarded-Host", "app.test")])
        statuses.append(status)
        if n == 0:
            assert body["headers"]["x-forwarded-for"] == f"1.2.3.0, 9.9.9.9, {PROXY}"
            assert body["headers"]["x-forwarded-proto"] == "https"
            assert body["headers"]["x-forwarded-host"] == "app.test"
    assert statuses == [200, 200, 429, 429, 429]
    # The same lines from an untrusted peer are dropped: the app sees only what gatehouse saw.
    status, body = get(gh.port, CLIENT, "/echo",
                       [("X-Forwarded-For", "9.9.9.9"), ("X-Forwarded-Proto", "https"),
                        ("X-Forwarded-Host", "evil.test"), ("Forwarded", "for=9.9.9.9")])
    assert status == 200
    assert body["headers"]["x-forwarded-for"] == CLIENT
    assert body["headers"]["x-forwarded-proto"] == "http"
    assert body["headers"]["x-forwarded-host"] == "app.test"
    assert "forwarded" not in body["headers"]


def test_forwarded_header_when_configured(tmp_path, flask_app):
    """forwarded_headers: forwarded believes RFC 7239 from trusted peers, and only it."""
    gh = start_gatehouse(tmp_path, flask_app, trusted_proxies=[PROXY],
                         forwarded_headers="forwarded", routes=[limited_route()])
    statuses = []
    for n in range(4):
        status, body = get(gh.port, PROXY, "/echo",
                           [("Forwarded", f"for=1.2.3.{n}"),
                            ("Forwarded", 'for="[2001:db8::7]:4711";proto=https;host=app.test'),
                            ("X-Forwarded-For", "5.5.5.5")])
        statuses.append(status)
        if n == 0:
            assert body["headers"]["x-forwarded-for"] == f"1.2.3.0, 2001:db8::7, {PROXY}"
            assert body["headers"]["x-forwarded-proto"] == "https"
            assert "forwarded" not in body["headers"]
    assert statuses == [200, 200, 429, 429]
    gh.wait_log("access", lambda l: l["status"] == 429 and l["client_ip"] == "2001:db8::7")
    # "unknown" stops the walk: the trusted peer itself is the client then.
    status, body = get(gh.port, PROXY, "/echo", [("Forwarded", "for=8.8.8.8, for=unknown")])
    assert status == 200
    gh.wait_log("access", lambda l: l["status"] == 200 and l["client_ip"] == PROXY)


# ------------------------------------------------------------------------------ PROXY protocol


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_haproxy_send_proxy(tmp_path, flask_app, haproxies, send_proxy):
    """(c) HAProxy in TCP mode with send-proxy / send-proxy-v2: the app and the rate limiter
    see the real client, not the balancer."""
    gh = start_gatehouse(tmp_path, flask_app, cls=ProxiedGatehouse, trusted_proxies=[PROXY],
                         proxy_protocol=True, routes=[limited_route()])
    ha = haproxies(
        "frontend fe\n  mode tcp\n  bind 127.0.0.1:{port}\n  default_backend be\n"
        f"backend be\n  mode tcp\n  server gh 127.0.0.1:{gh.port} {send_proxy} source {PROXY}\n")
    statuses = []
    for n in range(3):
        status, body = get(ha.port, CLIENT, "/echo", [("X-Forwarded-For", f"1.2.3.{n}")])
        statuses.append(status)
        if n == 0:
            # The client is not a trusted proxy: its own header is dropped.
            assert body["headers"]["x-forwarded-for"] == CLIENT
    assert statuses == [200, 200, 429]
    # A second client behind the same balancer has its own quota.
    status, body = get(ha.port, CLIENT2, "/echo")
    assert status == 200
    assert body["headers"]["x-forwarded-for"] == CLIENT2
    line = gh.wait_log("access", lambda l: l["status"] == 429)
    assert line["client_ip"] == CLIENT
    assert gh.metrics().get("gatehouse_proxy_protocol_errors_total") == 0


def test_proxy_protocol_raw(tmp_path, flask_app):
    """(d) Missing, malformed, slow or untrusted headers close the connection without a byte and
    are counted; v2 LOCAL keeps the socket peer; what follows the header is the request."""
    gh = start_gatehouse(tmp_path, flask_app, cls=ProxiedGatehouse, trusted_proxies=[PROXY],
                         proxy_protocol=True, limits={"header_timeout": "1s"})
    request = build_request("GET", "/echo", host="app.test")
    bad = [
        request,                                                       # no header at all
        b"PROXY TCP4 1.2.3.4 127.0.0.1 99999 80\r\n" + request,        # v1 port out of range
        b"PROXY TCP4 1.2.3.4 127.0.0.1 1000 80\n" + request,           # v1 bare LF
        b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n" + request,            # v1 over 107 bytes
        V2_SIG + b"\x21\x12" + struct.pack("!H", 12) + b"\0" * 12 + request,  # v2 UDP
        V2_SIG + b"\x21\x11" + struct.pack("!H", 4) + b"\0" * 4 + request,    # v2 too short
    ]
    for data in bad:
        with raw_from(gh.port, PROXY) as c:
            c.send(data)
            assert closed_without_reply(c), data[:40]
    # Slow: half a header, then nothing until the header timeout.
    with raw_from(gh.port, PROXY) as c:
        c.send(b"PROXY TCP4 1.2.")
        start = time.monotonic()
        assert closed_without_reply(c, timeout=5.0)
        assert time.monotonic() - start < scaled(3.0)
    # A valid header from a peer that is not a trusted proxy.
    with raw_from(gh.port, CLIENT) as c:
        c.send(b"PROXY TCP4 1.2.3.4 127.0.0.1 1000 80\r\n" + request)
        assert closed_without_reply(c)
    assert wait_until(lambda: gh.metrics().get("gatehouse_proxy_protocol_errors_total") == 8,
                      scaled(5))

    # v2 LOCAL (a balancer's health check): the socket peer is the client.
    with raw_from(gh.port, PROXY) as c:
        c.send(v2_header(0) + request)
        r = c.read_response()
        assert r.status == 200
        assert json.loads(r.body)["headers"]["x-forwarded-for"] == PROXY
    # v2 PROXY with TLVs, sent in pieces: the header is consumed exactly, the request follows,
    # and keep-alive works on the same connection.
    tlvs = b"\x02" + struct.pack("!H", 8) + b"app.test" + b"\xea" + struct.pack("!H", 3) + b"vpc"
    header = v2_header(1, ("203.0.113.9", 5555), tlvs=tlvs)
    with raw_from(gh.port, PROXY) as c:
        c.send(header[:7])
        time.sleep(0.05)
        c.send(header[7:20])
        time.sleep(0.05)
        c.send(header[20:] + request[:10])
        time.sleep(0.05)
        c.send(request[10:])
        for _ in range(2):
            r = c.read_response()
            assert r.status == 200
            assert json.loads(r.body)["headers"]["x-forwarded-for"] == "203.0.113.9"
            c.send(request)
    # v1 TCP6 in the same write as the request.
    with raw_from(gh.port, PROXY) as c:
        c.send(b"PROXY TCP6 2001:db8::5 ::1 1000 80\r\n" + request)
        r = c.read_response()
        assert json.loads(r.body)["headers"]["x-forwarded-for"] == "2001:db8::5"
    assert gh.metrics().get("gatehouse_proxy_protocol_errors_total") == 8
    line = gh.wait_log("access", lambda l: l["client_ip"] == "2001:db8::5")
    assert line["status"] == 200


def test_proxy_protocol_before_tls(tmp_path, flask_app):
    """On listen_tls the header comes before the ClientHello: only the header is consumed, the
    handshake reads the rest, and the upstream sees the header's client over https."""
    cert, key = make_cert(tmp_path, "server")
    gh = start_gatehouse(tmp_path, flask_app, cls=ProxiedGatehouse, trusted_proxies=[PROXY],
                         proxy_protocol=True,
                         listen_tls={"address": f"{HOST}:0", "cert": str(cert), "key": str(key)})
    ctx = tls_client_context(cert)
    for header, client in [(b"PROXY TCP4 198.51.100.7 127.0.0.1 4000 443\r\n", "198.51.100.7"),
                           (v2_header(1, ("198.51.100.8", 4001)), "198.51.100.8"),
                           (v2_header(0), PROXY)]:
        raw = connect(gh.tls_port, PROXY)
        # Header and ClientHello may share a segment: send the header, then handshake at once.
        raw.sendall(header)
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            c = RawConn.from_socket(s)
            r = c.request("GET", "/echo", host="app.test")
            assert r.status == 200
            headers = json.loads(r.body)["headers"]
            assert headers["x-forwarded-for"] == client
            assert headers["x-forwarded-proto"] == "https"
    # A ClientHello without a header is refused like any missing header.
    raw = connect(gh.tls_port, PROXY)
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        ctx.wrap_socket(raw, server_hostname="localhost")
    raw.close()
    assert wait_until(lambda: gh.metrics().get("gatehouse_proxy_protocol_errors_total") == 1,
                      scaled(5))


def test_redirect_http_believes_a_trusted_https_scheme(tmp_path, flask_app):
    """redirect_http answers 308 on the plain port, except for a trusted proxy that says the
    client used https (it terminated TLS itself): redirecting that would loop."""
    cert, key = make_cert(tmp_path, "server")
    gh = start_gatehouse(tmp_path, flask_app, trusted_proxies=[PROXY],
                         listen_tls={"address": f"{HOST}:0", "cert": str(cert), "key": str(key),
                                     "redirect_http": True})
    https = [("X-Forwarded-Proto", "http"), ("X-Forwarded-Proto", "https")]
    status, body = get(gh.port, PROXY, "/echo", https)
    assert status == 200
    assert body["headers"]["x-forwarded-proto"] == "https"
    assert get(gh.port, PROXY, "/echo", [("X-Forwarded-Proto", "https, http")])[0] == 308
    assert get(gh.port, PROXY, "/echo")[0] == 308
    # The same claim from an untrusted client is ignored.
    assert get(gh.port, CLIENT, "/echo", https)[0] == 308
