"""Graceful drain on SIGTERM: in-flight requests and streams finish, exit code 0."""
import json
import signal
import socket
import threading
import time

from conftest import HOST, RawConn, http_request, scaled


def drain_gatehouse(gatehouses, flask_app, drain_timeout="10s", **kw):
    return gatehouses(flask_app, drain_timeout=drain_timeout, **kw)


# --------------------------------------------------------------------- (a) load + SIGTERM


def test_drain_under_load(flask_app, gatehouses):
    gh = drain_gatehouse(gatehouses, flask_app)
    duration = scaled(3.0)
    sigterm_after = duration / 2
    threads_n = 8
    lock = threading.Lock()
    stats = {"ok": 0, "refused": 0, "errors": []}
    stop_at = time.monotonic() + duration

    def one_request():
        try:
            s = socket.create_connection((HOST, gh.port), timeout=scaled(10))
        except ConnectionRefusedError:
            with lock:
                stats["refused"] += 1
            time.sleep(0.05)
            return
        started = time.monotonic()
        c = RawConn.from_socket(s)
        try:
            c.send(b"GET /slow?s=0.2 HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n")
            resp = c.read_response()
            body = json.loads(resp.body)
            if resp.status != 200 or body.get("slept") != 0.2:
                raise AssertionError(f"bad response {resp}")
            with lock:
                stats["ok"] += 1
        except Exception as exc:  # noqa: BLE001 - every failure is recorded
            with lock:
                stats["errors"].append(f"{type(exc).__name__}: {exc} "
                                       f"(connected {started - t0:.2f}s after start)")
        finally:
            c.close()

    def worker():
        while time.monotonic() < stop_at:
            one_request()

    t0 = time.monotonic()
    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads_n)]
    for w in workers:
        w.start()
    time.sleep(sigterm_after)
    gh.signal(signal.SIGTERM)
    for w in workers:
        w.join(timeout=duration + scaled(15))
    assert not any(w.is_alive() for w in workers), "load threads hung"
    rc = gh.wait_exit(scaled(15))
    assert stats["errors"] == [], f"{len(stats['errors'])} failed requests: {stats['errors'][:5]}"
    assert stats["ok"] >= threads_n, stats
    assert rc == 0
    print(f"drain under load: {stats['ok']} ok, {stats['refused']} refused after SIGTERM")


# ---------------------------------------------------------- (b) in-flight request + ready


def test_inflight_request_completes_and_ready_is_503(flask_app, gatehouses):
    gh = drain_gatehouse(gatehouses, flask_app)
    result = {}

    def slow():
        try:
            with RawConn(gh.port, timeout=15) as c:
                c.send(b"GET /slow?s=2 HTTP/1.1\r\nHost: drain\r\n\r\n")
                t = time.monotonic()
                resp = c.read_response()
                result["elapsed"] = time.monotonic() - t
                result["resp"] = resp
                result["closed"] = c.wait_closed(scaled(3))[0]
        except Exception as exc:  # noqa: BLE001
            result["error"] = repr(exc)

    th = threading.Thread(target=slow, daemon=True)
    th.start()
    time.sleep(0.5)
    gh.signal(signal.SIGTERM)
    time.sleep(0.2)

    for port in (gh.port, gh.admin_port):
        try:
            status, _, body = http_request(port, "GET", "/health/ready", timeout=5)
        except (ConnectionRefusedError, ConnectionResetError):
            continue  # listener already closed (or closing): not served, fine
        assert status == 503, f"/health/ready on {port} answered {status} while draining"
        assert json.loads(body) == {"status": "draining"}

    th.join(timeout=scaled(15))
    assert "error" not in result, result.get("error")
    resp = result["resp"]
    assert resp.status == 200
    assert json.loads(resp.body)["slept"] == 2.0
    assert "close" in resp.connection_tokens(), \
        f"response finishing during drain must carry Connection: close: {resp.headers}"
    assert result["closed"], "connection not closed after the drained response"
    assert gh.wait_exit(scaled(10)) == 0


def test_idle_keepalive_connection_closed_on_drain(flask_app, gatehouses):
    gh = drain_gatehouse(gatehouses, flask_app)
    with RawConn(gh.port) as c:
        assert c.request("GET", "/echo").status == 200
        t = time.monotonic()
        gh.signal(signal.SIGTERM)
        closed, data, _ = c.wait_closed(scaled(3))
        assert closed, "idle keep-alive connection still open 3 s after SIGTERM"
        assert data == b""
    assert gh.wait_exit(scaled(10)) == 0
    assert time.monotonic() - t < scaled(10)


# ------------------------------------------------------------------- (c) SSE stream drains


def test_sse_stream_completes_after_sigterm(flask_app, gatehouses):
    gh = drain_gatehouse(gatehouses, flask_app)
    with RawConn(gh.port, timeout=15) as c:
        c.send(b"GET /sse?n=3&delay=1 HTTP/1.1\r\nHost: drain\r\nAccept: text/event-stream\r\n\r\n")
        resp = c.read_head()
        assert resp.status == 200
        assert "chunked" in (resp.header("transfer-encoding") or "").lower()
        body = b""
        while b"data: 0\n\n" not in body:
            data = c.read_chunk()
            assert data is not None, "stream ended early"
            body += data
        gh.signal(signal.SIGTERM)
        while True:
            data = c.read_chunk()  # raises on EOF before the last chunk
            if data is None:
                break
            body += data
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert gh.wait_exit(scaled(10)) == 0


# ----------------------------------------------------------------- (d) drain_timeout cut


def test_drain_timeout_cuts_long_request(flask_app, gatehouses):
    gh = drain_gatehouse(gatehouses, flask_app, drain_timeout="1s")
    c = RawConn(gh.port, timeout=15)
    try:
        c.send(b"GET /slow?s=10 HTTP/1.1\r\nHost: drain\r\n\r\n")
        time.sleep(0.5)
        t = time.monotonic()
        gh.signal(signal.SIGTERM)
        rc = gh.wait_exit(scaled(3) + 1)
        elapsed = time.monotonic() - t
        assert rc == 0
        assert elapsed <= scaled(3), f"exit took {elapsed:.2f} s with drain_timeout 1s"
        assert elapsed >= 0.8, f"exited after {elapsed:.2f} s, before drain_timeout"
        closed, _, _ = c.wait_closed(scaled(2))
        assert closed
    finally:
        c.close()


def test_sigint_drains_like_sigterm(flask_app, gatehouses):
    gh = drain_gatehouse(gatehouses, flask_app)
    result = {}

    def slow():
        try:
            with RawConn(gh.port, timeout=15) as c:
                c.send(b"GET /slow?s=1 HTTP/1.1\r\nHost: drain\r\n\r\n")
                result["resp"] = c.read_response()
        except Exception as exc:  # noqa: BLE001
            result["error"] = repr(exc)

    th = threading.Thread(target=slow, daemon=True)
    th.start()
    time.sleep(0.3)
    gh.signal(signal.SIGINT)
    th.join(timeout=scaled(10))
    assert "error" not in result, result.get("error")
    assert result["resp"].status == 200
    assert gh.wait_exit(scaled(10)) == 0
