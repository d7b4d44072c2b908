"""errors.sentry: upstream failures reported to a Sentry ingest endpoint (a local http.server that
records envelopes), with the request context redacted; delivery never slows or fails clients."""
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import APPS, AppProcess, RawConn, free_port, make_cert, scaled, wait_until

KEY = "0a1b2c3d4e5f"
PROJECT = "42"


class Ingest:
    """A Sentry ingest stand-in: records every POST (headers, envelope lines), answers as told."""

    def __init__(self, mode="ok", delay=0.0, tls=None):
        self.mode = mode  # ok | ratelimit
        self.tls = tls is not None
        self.delay = delay
        self.posts = []
        self.lock = threading.Lock()
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                if ingest.delay:
                    time.sleep(ingest.delay)
                with ingest.lock:
                    ingest.posts.append({"path": self.path, "headers": dict(self.headers),
                                         "body": body})
                if ingest.mode == "ratelimit":
                    self.send_response(429)
                    self.send_header("Retry-After", "60")
                    self.send_header("X-Sentry-Rate-Limits", "60:error:organization")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                out = json.dumps({"id": "x"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def dsn(self):
        if self.tls:
            return f"https://{KEY}@localhost:{self.port}/{PROJECT}"
        return f"http://{KEY}@127.0.0.1:{self.port}/{PROJECT}"

    def envelopes(self):
        with self.lock:
            posts = list(self.posts)
        out = []
        for p in posts:
            lines = p["body"].decode().split("\n")
            assert lines[-1] == "", "an envelope ends with a newline"
            header, item, payload = (json.loads(x) for x in lines[:3])
            out.append({"post": p, "header": header, "item": item, "event": payload,
                        "payload_len": len(lines[2].encode())})
        return out

    def wait(self, count, timeout=5):
        ok = wait_until(lambda: len(self.envelopes()) >= count, scaled(timeout), 0.05)
        assert ok, f"the ingest server got {len(self.envelopes())} envelopes, expected {count}"
        return self.envelopes()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ingest():
    servers = []

    def make(mode="ok", delay=0.0, tls=None):
        s = Ingest(mode, delay, tls)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def crash_app(apps):
    app = AppProcess(apps.base_dir, APPS / "crash_app.py", [], [], f"crash-{apps.n}")
    apps.apps.append(app)
    return app.start()


def sentry_config(dsn, **extra):
    return {"errors": {"sentry": {"dsn": dsn, "environment": "staging", "release": "story@1.4.2",
                                  **extra}},
            "log": {"hash_client_ip": True}}


ENV = {"GATEHOUSE_LOG_KEY": "0123456789abcdef-test-key"}
SECRET_HEADERS = [("Authorization", "Bearer sk-live-abcdef123456"),
                  ("Cookie", "session=s3cr3t-cookie"), ("X-Api-Key", "key-xyz-987"),
                  ("X-Forwarded-For", "198.51.100.77")]


def check_common(env, ingest, request_id, route="default"):
    post, header, item, ev = env["post"], env["header"], env["item"], env["event"]
    assert post["path"] == f"/api/{PROJECT}/envelope/"
    assert post["headers"]["Content-Type"] == "application/x-sentry-envelope"
    auth = post["headers"]["X-Sentry-Auth"]
    assert auth.startswith("Sentry sentry_version=7, sentry_key=" + KEY + ", sentry_client=gatehouse/")
    assert header["dsn"] == ingest.dsn
    assert header["event_id"] == ev["event_id"] and len(ev["event_id"]) == 32
    assert header["sent_at"].endswith("Z")
    assert item["type"] == "event" and item["length"] == env["payload_len"]
    assert ev["level"] == "error" and ev["logger"] == "gatehouse" and ev["platform"] == "other"
    assert ev["environment"] == "staging" and ev["release"] == "story@1.4.2"
    assert ev["server_name"]
    assert ev["tags"]["request_id"] == request_id
    assert ev["tags"]["route"] == route
    assert ev["tags"]["upstream"] == "app"
    # The client is the logs' keyed hash, never the address.
    assert len(ev["user"]["id"]) == 32 and "127.0.0.1" not in json.dumps(ev["user"])
    text = json.dumps(ev)
    for secret in ("sk-live-abcdef123456", "s3cr3t-cookie", "key-xyz-987", "198.51.100.77"):
        assert secret not in text, f"{secret} reached Sentry"
    headers = ev["request"]["headers"]
    for name, _ in SECRET_HEADERS:
        assert headers[name] == "[Filtered]", headers
    return ev


def test_traceback_500_reported_with_context(gatehouses, crash_app, ingest):
    sink = ingest()
    cfg = sentry_config(sink.dsn)
    cfg["errors"]["log_body"] = 300
    gh = gatehouses(crash_app, env=ENV, **cfg)
    with RawConn(gh.port) as c:
        resp = c.request("POST", "/crash?pad=2000&token=tok-secret-1&page=2",
                         [("X-Request-ID", "sentry-req-1"), *SECRET_HEADERS], b"{}")
    assert resp.status == 500
    assert resp.header("x-request-id") == "sentry-req-1"
    env = sink.wait(1)[0]
    ev = check_common(env, sink, "sentry-req-1")
    assert ev["request"]["method"] == "POST"
    assert ev["request"]["url"].endswith("/crash")  # the canonical path, no query
    assert "tok-secret-1" not in json.dumps(ev)
    assert ev["request"]["query_string"] == "pad=2000&token=REDACTED&page=2"
    assert ev["tags"]["failure"] == "error_intercepted" and ev["tags"]["status"] == "500"
    body = ev["extra"]["upstream_body"]
    assert "Traceback (most recent call last)" in body
    assert len(body) <= 300 and ev["extra"]["upstream_body_truncated"] is True
    assert ev["exception"]["values"][0]["type"] == "UpstreamErrorPage"
    m = gh.metrics()
    assert m.get("gatehouse_sentry_events_total", result="sent") == 1


def test_traceback_secrets_redacted(gatehouses, crash_app, ingest):
    sink = ingest()
    gh = gatehouses(crash_app, env=ENV, **sentry_config(sink.dsn))
    with RawConn(gh.port) as c:
        resp = c.request("GET", "/crash", [
            ("X-Request-ID", "sentry-req-2"),
            ("Referer", "https://app.example/reset?token=reset-secret-9&step=2")])
    assert resp.status == 500
    ev = sink.wait(1)[0]["event"]
    # A URL-valued header's secrets are redacted like the query's.
    assert "reset-secret-9" not in json.dumps(ev)
    referer = {k.lower(): v for k, v in ev["request"]["headers"].items()} \
        if isinstance(ev["request"]["headers"], dict) else \
        {k.lower(): v for k, v in ev["request"]["headers"]}
    assert referer["referer"].startswith("https://app.example/reset?token=REDACTED")
    body = ev["extra"]["upstream_body"]
    assert "KeyError" in body
    assert "hunter2-db-password" not in body and "password=REDACTED" in body


def test_json_500_reported_without_body(gatehouses, crash_app, ingest):
    sink = ingest()
    gh = gatehouses(crash_app, env=ENV, **sentry_config(sink.dsn))
    with RawConn(gh.port) as c:
        resp = c.request("GET", "/json500", [("X-Request-ID", "sentry-req-3")])
    assert resp.status == 500 and json.loads(resp.body) == {"error": "db down"}
    ev = sink.wait(1)[0]["event"]
    assert ev["tags"]["failure"] == "upstream_5xx"
    assert "upstream_body" not in ev["extra"]


def test_connect_failure_reported(gatehouses, ingest):
    sink = ingest()
    dead = free_port()
    gh = gatehouses(f"127.0.0.1:{dead}", env=ENV, **sentry_config(sink.dsn))
    with RawConn(gh.port) as c:
        resp = c.request("GET", "/api/x", [("X-Request-ID", "sentry-req-4"), *SECRET_HEADERS])
    assert resp.status == 502
    env = sink.wait(1)[0]
    ev = check_common(env, sink, "sentry-req-4")
    assert ev["tags"]["failure"] == "upstream_connect_failure"
    assert ev["exception"]["values"][0]["type"] == "UpstreamConnectFailure"


def test_timeout_reported(gatehouses, crash_app, ingest):
    sink = ingest()
    gh = gatehouses(crash_app, env=ENV, **sentry_config(sink.dsn),
                    upstreams={"app": {"targets": [crash_app.address], "timeout": "500ms"}})
    with RawConn(gh.port) as c:
        resp = c.request("GET", "/slow?s=3", [("X-Request-ID", "sentry-req-5"), *SECRET_HEADERS])
    assert resp.status == 504
    ev = check_common(sink.wait(1)[0], sink, "sentry-req-5")
    assert ev["tags"]["failure"] == "upstream_timeout" and ev["tags"]["status"] == "504"


def test_sample_rate_zero_sends_nothing(gatehouses, crash_app, ingest):
    sink = ingest()
    gh = gatehouses(crash_app, env=ENV, **sentry_config(sink.dsn, sample_rate=0))
    with RawConn(gh.port) as c:
        for _ in range(5):
            assert c.request("GET", "/json500").status == 500
    time.sleep(scaled(0.5))
    assert sink.envelopes() == []
    assert gh.metrics().get("gatehouse_sentry_events_total", result="sent") == 0


def test_empty_dsn_turns_reporting_off(gatehouses, crash_app):
    gh = gatehouses(crash_app, errors={"sentry": {"dsn": "${SENTRY_DSN:-}"}})
    with RawConn(gh.port) as c:
        assert c.request("GET", "/json500").status == 500
    m = gh.metrics()
    assert m.get("gatehouse_sentry_events_total", result="sent") is None
    with RawConn(gh.admin_port) as c:
        assert "sentry" not in json.loads(c.request("GET", "/health/detailed").body)["components"]


def test_slow_ingest_never_slows_clients(gatehouses, crash_app, ingest):
    sink = ingest(delay=3.0)  # every delivery takes 3 s
    gh = gatehouses(crash_app, env=ENV, **sentry_config(sink.dsn, max_queue=2, timeout="1s"))
    start = time.monotonic()
    with RawConn(gh.port) as c:
        for _ in range(20):
            assert c.request("GET", "/json500").status == 500
    assert time.monotonic() - start < scaled(3), "requests waited for Sentry"
    # One in flight, two queued, the rest dropped and counted.
    ok = wait_until(lambda: (gh.metrics().get("gatehouse_sentry_events_total", result="dropped")
                             or 0) >= 17, scaled(3))
    assert ok, gh.metrics().get("gatehouse_sentry_events_total", result="dropped")
    # The 1 s timeout fails the delivery: degraded in /health/detailed, one warning line.
    def degraded():
        with RawConn(gh.admin_port) as c:
            d = json.loads(c.request("GET", "/health/detailed").body)["components"]["sentry"]
        return d["status"] == "degraded" and d["last_error"] == "timed out"
    assert wait_until(degraded, scaled(5))
    gh.wait_log("error", lambda l: l.get("message") == "sentry delivery failed")


def test_down_ingest_never_fails_clients(gatehouses, crash_app):
    dead = free_port()
    gh = gatehouses(crash_app, env=ENV,
                    **sentry_config(f"http://{KEY}@127.0.0.1:{dead}/{PROJECT}"))
    start = time.monotonic()
    with RawConn(gh.port) as c:
        for _ in range(10):
            assert c.request("GET", "/json500").status == 500
            assert c.request("GET", "/ok").status == 200
    assert time.monotonic() - start < scaled(3)
    assert wait_until(lambda: (gh.metrics().get("gatehouse_sentry_events_total", result="failed")
                               or 0) >= 1, scaled(5))
    def failures():
        return [l for l in gh.log_lines("error") if l.get("message") == "sentry delivery failed"]
    assert wait_until(failures, scaled(5))  # the log line may trail the counter
    assert 1 <= len(failures()) <= 2, "delivery failures are logged at a bounded rate"


def test_rate_limited_by_sentry(gatehouses, crash_app, ingest):
    sink = ingest(mode="ratelimit")
    gh = gatehouses(crash_app, env=ENV, **sentry_config(sink.dsn))
    with RawConn(gh.port) as c:
        for _ in range(5):
            assert c.request("GET", "/json500").status == 500
    assert wait_until(lambda: (gh.metrics().get("gatehouse_sentry_events_total",
                                                result="rate_limited") or 0) == 5, scaled(5))
    # Only the first reached Sentry: the rest waited out the 60 s it asked for, unsent.
    assert len(sink.envelopes()) == 1


def test_drain_flushes_queue(gatehouses, crash_app, ingest):
    sink = ingest()
    gh = gatehouses(crash_app, env=ENV, **sentry_config(sink.dsn))
    with RawConn(gh.port) as c:
        for _ in range(3):
            assert c.request("GET", "/json500").status == 500
    gh.stop()
    assert len(sink.envelopes()) == 3


def test_https_dsn_verifies_the_certificate(gatehouses, crash_app, ingest, tmp_path):
    cert, key = make_cert(tmp_path / "certs", "ingest")
    sink = ingest(tls=(str(cert), str(key)))
    # Trusted (SSL_CERT_FILE names the self-signed certificate): delivered over TLS.
    gh = gatehouses(crash_app, env={**ENV, "SSL_CERT_FILE": str(cert)}, **sentry_config(sink.dsn))
    with RawConn(gh.port) as c:
        assert c.request("GET", "/json500", [("X-Request-ID", "tls-1")]).status == 500
    assert sink.wait(1)[0]["event"]["tags"]["request_id"] == "tls-1"
    # Not trusted: nothing is sent, the failure is counted and shown.
    other, _ = make_cert(tmp_path / "other", "other")
    gh2 = gatehouses(crash_app, env={**ENV, "SSL_CERT_FILE": str(other)},
                     **sentry_config(sink.dsn))
    with RawConn(gh2.port) as c:
        assert c.request("GET", "/json500", [("X-Request-ID", "tls-2")]).status == 500
    assert wait_until(lambda: gh2.metrics().get("gatehouse_sentry_events_total",
                                                result="failed") == 1, scaled(5))
    with RawConn(gh2.admin_port) as c:
        d = json.loads(c.request("GET", "/health/detailed").body)["components"]["sentry"]
    assert d["status"] == "degraded" and "TLS handshake" in d["last_error"], d
    assert len(sink.envelopes()) == 1
