"""WebSocket pass-through (issue 12): a real websockets server behind gatehouse, a real
websockets client and raw sockets. Echo of text and binary frames, a large message, the close
handshake, the idle timeout, metrics and the access log; filters apply to the handshake; and
gatehouse never tunnels unless the upstream accepted a handshake it forwarded."""
import asyncio
import base64
import json
import os
import socket
import threading
import time

import pytest

from conftest import (APPS, HOST, AppProcess, RawConn, make_cert, scaled, tls_client_context,
                      wait_until)

import websockets  # Debian python3-websockets, installed by scripts/bootstrap.sh


@pytest.fixture
def ws_app(apps):
    app = AppProcess(apps.base_dir, APPS / "ws_app.py", [], [], f"ws-{len(apps.apps)}")
    apps.apps.append(app)
    return app.start()


def routes(*extra):
    return [*extra, {"name": "ws", "match": {"path_prefix": "/"}, "upstream": "app"}]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, scaled(30)))


def handshake(path="/chat", extra=()):
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", "Host: gatehouse.test", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_echo_text_binary_large_and_close(ws_app, gatehouses):
    gh = gatehouses(ws_app, workers=1, routes=routes())
    big = os.urandom(3 * 1024 * 1024 + 17)

    async def session():
        async with websockets.connect(f"ws://{HOST}:{gh.port}/hello?x=1", max_size=8 << 20,
                                      ping_interval=None) as ws:
            hello = json.loads(await ws.recv())
            await ws.send("héllo wörld")
            text = await ws.recv()
            await ws.send(b"\x00\x01\xfe\xff")
            binary = await ws.recv()
            await ws.send(big)
            echoed = await ws.recv()
            opened = gh.metrics().value("gatehouse_websockets_open")
            await ws.close()
            return hello, text, binary, echoed, opened, ws.close_code

    hello, text, binary, echoed, opened, code = run(session())
    assert hello["path"] == "/hello?x=1"
    h = hello["headers"]
    assert h["upgrade"].lower() == "websocket" and "upgrade" in h["connection"].lower()
    assert h["x-request-id"] and h["x-forwarded-for"] == HOST
    assert text == "héllo wörld"
    assert binary == b"\x00\x01\xfe\xff"
    assert echoed == big
    assert opened == 1
    assert code == 1000  # the close handshake went through both ways
    m = gh.metrics()
    assert m.value("gatehouse_websocket_upgrades_total") == 1
    assert wait_until(lambda: gh.metrics().value("gatehouse_websockets_open") == 0, scaled(5))
    line = gh.wait_log("access", lambda l: l.get("path", "").startswith("/hello"))
    assert line["status"] == 101
    assert line["bytes_in"] > len(big) and line["bytes_out"] > len(big)
    assert line["duration_ms"] > 0


def test_echo_over_tls_and_close_from_the_server_side(ws_app, gatehouses, tmp_path):
    cert, key = make_cert(tmp_path / "certs")
    gh = gatehouses(ws_app, workers=1, routes=routes(),
                    listen_tls={"address": f"{HOST}:0", "cert": str(cert), "key": str(key)})
    ctx = tls_client_context(cert)

    async def session():
        async with websockets.connect(f"wss://localhost:{gh.tls_port}/chat", ssl=ctx,
                                      ping_interval=None, max_size=4 << 20) as ws:
            await ws.send("over tls")
            text = await ws.recv()
            payload = os.urandom(1 << 20)
            await ws.send(payload)
            echoed = await ws.recv()
            await ws.close()
            return text, echoed == payload, ws.close_code

    assert run(session()) == ("over tls", True, 1000)
    assert wait_until(lambda: gh.metrics().value("gatehouse_websockets_open") == 0, scaled(5))
    line = gh.wait_log("access", lambda l: l.get("status") == 101)
    assert line["bytes_in"] > 1 << 20 and line["bytes_out"] > 1 << 20


def test_server_side_close(ws_app, gatehouses):
    gh = gatehouses(ws_app, workers=1, routes=routes())

    async def session():
        async with websockets.connect(f"ws://{HOST}:{gh.port}/chat", ping_interval=None) as ws:
            await ws.send("one")
            assert await ws.recv() == "one"
            await ws.send("server-close")
            try:
                await ws.recv()
            except websockets.ConnectionClosed:
                pass
            await ws.wait_closed()
            return ws.close_code, ws.close_reason

    start = time.monotonic()
    assert run(session()) == (4000, "bye")
    assert time.monotonic() - start < scaled(1.5)  # not held for the 2 s grace or idle timeout
    assert wait_until(lambda: gh.metrics().value("gatehouse_websockets_open") == 0, scaled(5))


def test_idle_tunnel_is_closed(ws_app, gatehouses):
    gh = gatehouses(ws_app, workers=1, routes=routes(), limits={"idle_timeout": "1s"})
    with RawConn(gh.port) as c:
        c.send(handshake())
        resp = c.read_head()
        assert resp.status == 101, resp
        assert resp.header("upgrade").lower() == "websocket"
        assert "upgrade" in resp.header("connection").lower()
        assert resp.header("sec-websocket-accept")
        start = time.monotonic()
        closed, _, waited = c.wait_closed(scaled(6))
        assert closed, "an idle tunnel stayed open"
        assert 0.9 <= waited <= 1.0 + scaled(2.5), waited
    line = gh.wait_log("access", lambda l: l.get("status") == 101)
    assert line["duration_ms"] >= 900


def test_traffic_keeps_the_tunnel_open_past_the_idle_timeout(ws_app, gatehouses):
    gh = gatehouses(ws_app, workers=1, routes=routes(), limits={"idle_timeout": "1s"})

    async def session():
        async with websockets.connect(f"ws://{HOST}:{gh.port}/chat", ping_interval=None) as ws:
            for i in range(8):  # 2.4 s of traffic, a message every 0.3 s
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i}"
                await asyncio.sleep(0.3)
            return True

    assert run(session())


def test_filters_apply_to_the_handshake(ws_app, gatehouses):
    gh = gatehouses(ws_app, routes=routes(
        {"name": "denied", "match": {"path_prefix": "/denied"}, "upstream": "app",
         "access": {"deny": ["127.0.0.0/8"]}}))
    with RawConn(gh.port) as c:
        c.send(handshake("/denied/chat"))
        r = c.read_response()
        assert r.status == 403, r
        assert json.loads(r.body)["error"] == "forbidden"
    assert gh.metrics().value("gatehouse_websocket_upgrades_total") == 0


def test_non_101_answer_is_a_normal_response_and_http_continues(ws_app, gatehouses):
    """The upstream answers 200 to a handshake: the connection stays HTTP. Bytes the client sent
    after the handshake are parsed as the next request and go through the filters (403 here),
    never straight to the upstream."""
    gh = gatehouses(ws_app, routes=routes(
        {"name": "secret", "match": {"path_prefix": "/secret"}, "upstream": "app",
         "access": {"deny": ["127.0.0.0/8"]}}))
    with RawConn(gh.port) as c:
        c.send(handshake("/plain") +
               b"GET /secret/x HTTP/1.1\r\nHost: gatehouse.test\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"plain http", r
        assert not r.has_header("upgrade")
        r2 = c.read_response()
        assert r2.status == 403, r2
        r3 = c.request("GET", "/plain")
        assert r3.status == 200 and r3.body == b"plain http"
    assert gh.metrics().value("gatehouse_websocket_upgrades_total") == 0


class Switcher:
    """A raw upstream that answers every request with a 101 (Upgrade: websocket) and then echoes
    raw bytes: what a broken or hostile backend could do to make a proxy tunnel."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.requests.append(data)
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\nRAW-BYTES-AFTER-101")
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                conn.sendall(chunk)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def test_unasked_101_is_never_tunnelled(gatehouses):
    up = Switcher()
    try:
        gh = gatehouses(f"{HOST}:{up.port}", routes=routes())
        with RawConn(gh.port) as c:
            r = c.request("GET", "/anything")  # no Upgrade: a 101 cannot answer it
            assert r.status == 502, r
            assert b"RAW-BYTES" not in r.body
            # The client connection is still HTTP: the next request is parsed as one.
            c.send(b"GET /again HTTP/1.1\r\nHost: gatehouse.test\r\n\r\n")
            r2 = c.read_response()
            assert r2.status == 502 and b"RAW-BYTES" not in r2.body
        # An Upgrade for another protocol is not forwarded as an upgrade either.
        with RawConn(gh.port) as c:
            r = c.request("GET", "/h2c", headers=[("Upgrade", "h2c"), ("Connection", "Upgrade")])
            assert r.status == 502, r
        assert all(b"upgrade:" not in req.lower() for req in up.requests), up.requests
        line = gh.wait_log("error", lambda l: "switched protocols" in l.get("message", ""))
        assert line["request_id"]
        assert gh.metrics().value("gatehouse_websocket_upgrades_total") == 0
    finally:
        up.close()
