"""Async jobs (issue 13) against the real binary, a real Flask app and the SQLite store: 202 and
polling, hybrid and Prefer, Idempotency-Key, retries and the dead-letter queue, owners, limits,
and kill -9 during a run of jobs."""
import concurrent.futures
import json
import os
import re
import signal
import threading
import time

import pytest

from conftest import APPS, AppProcess, http_request, scaled, wait_until


@pytest.fixture(scope="module")
def jobs_app(tmp_path_factory):
    app = AppProcess(tmp_path_factory.mktemp("jobsapp"), APPS / "jobs_app.py", [], [], "jobs-app")
    app.start()
    yield app
    app.stop()


def jobs_config(tmp_path, **jobs):
    cfg = {
        "store": f"sqlite://{tmp_path}/jobs.db",
        "concurrency": 4,
        "retry": {"attempts": 3, "backoff": {"base": "100ms", "max": "200ms"},
                  "on": ["connect_failure", "reset", "timeout", "5xx", "429"]},
        "max_body": "64KiB",
    }
    cfg.update(jobs)
    return cfg


ROUTES = [
    {"name": "gen-async", "match": {"path_prefix": "/gen", "methods": ["POST"]}, "upstream": "app",
     "mode": "async"},
    {"name": "gen-hybrid", "match": {"path_prefix": "/gen", "methods": ["PUT"]}, "upstream": "app",
     "mode": "hybrid", "hybrid_wait": "1s"},
    {"name": "fail", "match": {"path_prefix": "/fail"}, "upstream": "app", "mode": "async"},
    {"name": "bad", "match": {"path_prefix": "/bad"}, "upstream": "app", "mode": "async"},
    {"name": "flaky", "match": {"path_prefix": "/flaky"}, "upstream": "app", "mode": "async"},
    {"name": "default", "match": {"path_prefix": "/"}, "upstream": "app"},
]


@pytest.fixture
def gh(gatehouses, jobs_app, tmp_path):
    # A short drain: teardown does not wait for the slow jobs some tests leave running.
    return gatehouses(jobs_app, jobs=jobs_config(tmp_path), routes=ROUTES, drain_timeout="1s")


def seen(app):
    status, _, body = http_request(app.port, "GET", "/seen")
    assert status == 200
    return json.loads(body)


def poll(g, job_id, headers=None, timeout=15):
    """The job's status once final (through the owner's /jobs/<id>)."""
    last = {}

    def final():
        nonlocal last
        status, hdrs, body = http_request(g.port, "GET", f"/jobs/{job_id}", headers=headers)
        assert status == 200, (status, body)
        last = json.loads(body)
        if last["status"] in ("queued", "running"):
            assert int(hdrs["retry-after"]) >= 1
            return False
        assert "retry-after" not in hdrs
        return True

    assert wait_until(final, scaled(timeout), 0.05), last
    return last


def accept(g, method, target, body=b"", headers=None):
    status, hdrs, data = http_request(g.port, method, target, headers=headers or {}, body=body)
    assert status == 202, (status, data)
    doc = json.loads(data)
    assert re.fullmatch(r"[0-9a-f]{32}", doc["job_id"])
    assert hdrs["location"] == f"/jobs/{doc['job_id']}"
    assert doc["status_url"] == hdrs["location"]
    return doc, hdrs


def test_async_202_then_poll_to_the_stored_result(gh, jobs_app):
    body = os.urandom(3000)
    doc, hdrs = accept(gh, "POST", "/gen?sleep=0.3&x=1", body,
                       {"Content-Type": "application/octet-stream"})
    assert doc["status"] == "queued"
    job_id = doc["job_id"]
    final = poll(gh, job_id)
    assert final["status"] == "succeeded" and final["attempts"] == 1
    assert final["upstream_status"] == 201 and final["error"] is None
    assert final["finished_at"] >= final["created_at"]
    status, rh, data = http_request(gh.port, "GET", f"/jobs/{job_id}/result")
    assert status == 201
    assert rh["x-job-app"] == "yes" and rh["content-type"] == "application/json"
    got = json.loads(data)
    import hashlib
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["idempotency_key"] == job_id  # the app can deduplicate on it
    assert got["query"] == "sleep=0.3&x=1"
    assert got["request_id"] == hdrs["x-request-id"]  # the accepting request's id goes up
    assert got["content_type"] == "application/octet-stream"
    assert got["forwarded_for"] == "127.0.0.1" and got["forwarded_proto"] == "http"
    assert got["forwarded_host"]  # the client's Host, as a proxied request would carry
    again = http_request(gh.port, "GET", f"/jobs/{job_id}/result")
    assert again[2] == data  # the same bytes every time
    assert seen(jobs_app)[job_id] == 1


def test_a_job_carries_the_forwarded_chain_a_proxied_request_would(gatehouses, jobs_app, tmp_path):
    """Behind a trusted proxy (127.0.0.1): the app sees the same X-Forwarded-* for the request
    proxied at once and for the same request run as a job (the chain, not the client alone)."""
    g = gatehouses(jobs_app, jobs=jobs_config(tmp_path), routes=ROUTES, drain_timeout="1s",
                   trusted_proxies=["127.0.0.1"])
    headers = {"X-Forwarded-For": "203.0.113.7, 198.51.100.2", "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": "public.example", "Host": "inner.example"}
    status, _, data = http_request(g.port, "GET", "/gen", headers=headers)
    assert status == 201, data
    proxied = json.loads(data)
    assert proxied["forwarded_for"].startswith("203.0.113.7, 198.51.100.2")  # the chain went up
    doc, _ = accept(g, "POST", "/gen", b"x", headers)
    assert poll(g, doc["job_id"])["status"] == "succeeded"
    status, _, data = http_request(g.port, "GET", f"/jobs/{doc['job_id']}/result")
    job = json.loads(data)
    for field in ("forwarded_for", "forwarded_proto", "forwarded_host"):
        assert job[field] == proxied[field], field


def test_unknown_and_malformed_ids_are_404(gh):
    for path in ("/jobs/0123456789abcdef0123456789abcdef", "/jobs/nope", "/jobs/0123456789ABCDEF0123456789ABCDEF",
                 "/jobs/0123456789abcdef0123456789abcdef/result"):
        status, _, body = http_request(gh.port, "GET", path)
        assert status == 404, path
    status, hdrs, _ = http_request(gh.port, "DELETE", "/jobs/0123456789abcdef0123456789abcdef")
    assert status == 405


def test_hybrid_answers_within_the_wait_else_202(gh, jobs_app):
    status, hdrs, data = http_request(gh.port, "PUT", "/gen?sleep=0.1", body=b"quick")
    assert status == 201, data
    assert json.loads(data)["body_len"] == 5
    assert hdrs["x-job-app"] == "yes" and "location" not in hdrs  # the app's response, as is
    started = time.monotonic()
    status, hdrs, data = http_request(gh.port, "PUT", "/gen?sleep=2.5", body=b"slow")
    assert status == 202, data
    assert time.monotonic() - started < scaled(2.3)
    job_id = json.loads(data)["job_id"]
    final = poll(gh, job_id)
    assert final["status"] == "succeeded" and final["attempts"] == 1
    assert seen(jobs_app)[job_id] == 1  # the first attempt went on; it was not sent again


def test_prefer_respond_async_and_wait(gh):
    doc, hdrs = accept(gh, "PUT", "/gen?sleep=0", b"x", {"Prefer": "respond-async"})
    assert hdrs["preference-applied"] == "respond-async"
    status, hdrs, data = http_request(gh.port, "PUT", "/gen?sleep=0.2", body=b"x",
                                      headers={"Prefer": "respond-async, wait=5"})
    assert status == 201, data
    status, hdrs, data = http_request(gh.port, "PUT", "/gen?sleep=3", body=b"x",
                                      headers={"Prefer": "respond-async, wait=1"})
    assert status == 202 and hdrs["preference-applied"] == "respond-async"
    # A sync route ignores the preference: proxied as always.
    status, hdrs, data = http_request(gh.port, "GET", "/gen", headers={"Prefer": "respond-async"})
    assert status == 201 and "preference-applied" not in hdrs


def test_a_client_that_leaves_during_the_wait_is_let_go_and_the_job_goes_on(gh, jobs_app):
    """Prefer wait=20 with a 3 s upstream: the client closes after 0.3 s. Its connection is
    released at once (not held until the attempt ends), and the attempt finishes as the job."""
    import socket
    key = f"leave-{time.monotonic_ns()}"
    body = b"left"
    s = socket.create_connection(("127.0.0.1", gh.port))
    s.sendall(b"PUT /gen?sleep=3 HTTP/1.1\r\nHost: t\r\nPrefer: respond-async, wait=20\r\n"
              b"Idempotency-Key: " + key.encode() + b"\r\nContent-Length: 4\r\n\r\n" + body)
    assert wait_until(lambda: gh.metrics().value("gatehouse_connections_active") == 1, scaled(2), 0.02)
    time.sleep(0.3)
    s.close()
    left = time.monotonic()
    assert wait_until(lambda: gh.metrics().value("gatehouse_connections_active") == 0,
                      scaled(1.5), 0.02), "the connection was held after the client left"
    assert time.monotonic() - left < 2.5  # well before the upstream's 3 s answer
    # The same request again finds the job (stored before the wait), which finishes once.
    doc, _ = accept(gh, "PUT", "/gen?sleep=3", body,
                    {"Prefer": "respond-async", "Idempotency-Key": key})
    final = poll(gh, doc["job_id"])
    assert final["status"] == "succeeded" and final["attempts"] == 1
    assert seen(jobs_app)[doc["job_id"]] == 1


def test_idempotency_key_same_different_and_concurrent(gh, jobs_app):
    key = {"Idempotency-Key": "order-1", "Authorization": "Bearer u1"}
    doc, _ = accept(gh, "POST", "/gen?sleep=0.5", b"A", key)
    doc2, _ = accept(gh, "POST", "/gen?sleep=0.5", b"A", key)
    assert doc2["job_id"] == doc["job_id"]
    status, _, data = http_request(gh.port, "POST", "/gen?sleep=0.5", body=b"B", headers=key)
    assert status == 422, data
    assert json.loads(data)["error"] == "idempotency_key_reused"
    poll(gh, doc["job_id"], {"Authorization": "Bearer u1"})
    result = http_request(gh.port, "GET", f"/jobs/{doc['job_id']}/result",
                          headers={"Authorization": "Bearer u1"})
    status, _, data = http_request(gh.port, "POST", "/gen?sleep=0.5", body=b"A", headers=key)
    assert status == 201 and data == result[2]  # done: the identical response
    # Another owner's key is another key.
    other, _ = accept(gh, "POST", "/gen?sleep=0", b"A",
                      {"Idempotency-Key": "order-1", "Authorization": "Bearer u2"})
    assert other["job_id"] != doc["job_id"]

    ck = {"Idempotency-Key": "concurrent-1"}

    def send(_):
        return http_request(gh.port, "POST", "/gen?sleep=0.2", body=b"C", headers=ck)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(16)))
    ids = {json.loads(d)["job_id"] for s, _, d in answers if s == 202}
    assert len(ids) == 1, answers
    assert {s for s, _, _ in answers} <= {202, 409, 201}
    (job_id,) = ids
    poll(gh, job_id)
    assert seen(jobs_app)[job_id] == 1


def test_retries_then_success(gh, jobs_app):
    doc, _ = accept(gh, "POST", "/gen?fail=2", b"r")
    final = poll(gh, doc["job_id"])
    assert final["status"] == "succeeded" and final["attempts"] == 3
    assert seen(jobs_app)[doc["job_id"]] == 3
    assert gh.wait_log("error", lambda l: l.get("message") == "job attempt"
                       and l.get("job_id") == doc["job_id"] and l.get("attempt") == 1)


def test_client_error_is_final_and_not_retried(gh, jobs_app):
    doc, _ = accept(gh, "POST", "/bad", b"{}")
    final = poll(gh, doc["job_id"])
    assert final["status"] == "failed" and final["attempts"] == 1
    assert final["upstream_status"] == 422
    status, _, data = http_request(gh.port, "GET", f"/jobs/{doc['job_id']}/result")
    assert status == 422 and data == b'{"error":"bad input"}'


def test_dead_letter_then_admin_retry_then_success(gh, jobs_app):
    http_request(jobs_app.port, "POST", "/mode?fail=1")
    doc, _ = accept(gh, "POST", "/flaky", b"d")
    job_id = doc["job_id"]
    final = poll(gh, job_id)
    assert final["status"] == "dead" and final["attempts"] == 3
    assert "503" in final["error"]
    status, _, data = http_request(gh.admin_port, "GET", "/admin/jobs?state=dead")
    assert status == 200
    assert job_id in [j["job_id"] for j in json.loads(data)["jobs"]]
    assert gh.metrics().value("gatehouse_jobs_dead_letters") >= 1
    http_request(jobs_app.port, "POST", "/mode?fail=0")
    status, _, data = http_request(gh.admin_port, "POST", f"/admin/jobs/{job_id}/retry")
    assert status == 200, data
    final = poll(gh, job_id)
    assert final["status"] == "succeeded"
    status, _, data = http_request(gh.admin_port, "GET", f"/admin/jobs/{job_id}")
    assert status == 200 and json.loads(data)["route"] == "flaky"
    status, _, _ = http_request(gh.admin_port, "DELETE", f"/admin/jobs/{job_id}")
    assert status == 200
    assert http_request(gh.port, "GET", f"/jobs/{job_id}")[0] == 404


def test_body_over_max_body_is_413_and_no_job(gh, jobs_app):
    before = gh.metrics().value("gatehouse_jobs_accepted_total")
    status, _, _ = http_request(gh.port, "POST", "/gen", body=b"x" * (64 * 1024 + 1))
    assert status == 413
    assert gh.metrics().value("gatehouse_jobs_accepted_total") == before
    doc, _ = accept(gh, "POST", "/gen", b"x" * (64 * 1024))  # at the limit: accepted


def test_polling_in_a_tight_loop_is_limited_with_429(gatehouses, jobs_app, tmp_path):
    """jobs.poll_rate bounds status requests per client and credential, before the store is read:
    a tight loop gets 429 with Retry-After; another credential keeps its own budget; the limited
    client polls again once the window has passed."""
    g = gatehouses(jobs_app, jobs=jobs_config(tmp_path, poll_rate="5/second"), routes=ROUTES,
                   drain_timeout="1s")
    mine = {"Authorization": "Bearer poller"}
    doc, _ = accept(g, "POST", "/gen?sleep=1", b"x", mine)
    url = f"/jobs/{doc['job_id']}"
    got = [http_request(g.port, "GET", url, headers=mine) for _ in range(40)]
    statuses = [s for s, _, _ in got]
    assert statuses.count(429) >= 20, statuses
    assert 1 <= statuses.count(200) <= 5 * 4, statuses  # a few windows at most, on a slow machine
    status, hdrs, body = next(r for r in got if r[0] == 429)
    assert int(hdrs["retry-after"]) >= 1
    assert json.loads(body)["error"] == "job_poll_rate_limited"
    # Not counted against anyone else: another credential (not the owner: 404, but not 429).
    status, _, _ = http_request(g.port, "GET", url, headers={"Authorization": "Bearer other"})
    assert status == 404
    # Retry-After is honest: once it has passed, the poller is served again.
    status, hdrs, _ = http_request(g.port, "GET", url, headers=mine)
    if status == 429:
        time.sleep(int(hdrs["retry-after"]) + 0.1)
        status, _, _ = http_request(g.port, "GET", url, headers=mine)
    assert status == 200


def test_only_the_owner_reads_a_job(gh):
    doc, _ = accept(gh, "POST", "/gen", b"o", {"Authorization": "Bearer alice"})
    job_id = doc["job_id"]
    poll(gh, job_id, {"Authorization": "Bearer alice"})
    for headers in ({"Authorization": "Bearer mallory"}, {}):
        assert http_request(gh.port, "GET", f"/jobs/{job_id}", headers=headers)[0] == 404
        assert http_request(gh.port, "GET", f"/jobs/{job_id}/result", headers=headers)[0] == 404
    status, _, data = http_request(gh.port, "GET", f"/jobs/{job_id}/result",
                                   headers={"Authorization": "Bearer alice"})
    assert status == 201 and json.loads(data)["authorization"] == "Bearer alice"


def test_metrics_and_health(gh):
    doc, _ = accept(gh, "POST", "/gen", b"m")
    poll(gh, doc["job_id"])
    m = gh.metrics()
    assert m.value("gatehouse_jobs_accepted_total") >= 1
    assert m.value("gatehouse_jobs_attempts_total") >= 1
    assert m.value("gatehouse_jobs_finished_total", state="succeeded") >= 1
    status, _, data = http_request(gh.admin_port, "GET", "/health/detailed")
    jobs = json.loads(data)["components"]["jobs"]
    assert jobs["status"] == "ok" and jobs["store"] == "sqlite"


def test_kill_9_during_a_run_loses_no_accepted_job(gatehouses, jobs_app, tmp_path):
    g = gatehouses(jobs_app, jobs=jobs_config(tmp_path, concurrency=8), routes=ROUTES)
    accepted = []
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        while not stop.is_set() and len(accepted) < 1000:
            try:
                status, _, data = http_request(g.port, "POST", "/gen?sleep=0.02", body=b"k",
                                               timeout=2)
            except OSError:
                time.sleep(0.05)
                continue
            if status == 202:
                with lock:
                    accepted.append(json.loads(data)["job_id"])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            wait_until(lambda n=len(accepted): len(accepted) >= n + 250, scaled(10), 0.02)
            g.proc.send_signal(signal.SIGKILL)
            g.proc.wait(timeout=5)
            g.stop()
            g.start()
        wait_until(lambda: len(accepted) >= 1000, scaled(30), 0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(accepted) >= 1000

    def state(job_id):
        status, _, data = http_request(g.admin_port, "GET", f"/admin/jobs/{job_id}")
        assert status == 200, (job_id, status, data)
        return json.loads(data)

    pending = set(accepted)

    def all_final():
        for job_id in list(pending):
            if state(job_id)["status"] in ("succeeded", "failed", "dead"):
                pending.discard(job_id)
        return not pending

    assert wait_until(all_final, scaled(60), 0.2), f"{len(pending)} jobs never finished"
    calls = seen(jobs_app)
    for job_id in accepted:
        s = state(job_id)
        assert s["status"] == "succeeded", s
        assert 1 <= calls.get(job_id, 0) <= s["attempts"], (job_id, calls.get(job_id), s)


@pytest.mark.skipif(not os.path.exists("/usr/bin/redis-server"), reason="redis-server missing")
def test_two_instances_share_a_redis_queue_and_one_dies(gatehouses, jobs_app, tmp_path):
    from redis_servers import RedisServer

    server = RedisServer(tmp_path / "redis")
    try:
        cfg = jobs_config(tmp_path, store=server.url(), concurrency=4)
        # A 3 s upstream timeout makes the lease 10 s: a dead instance's jobs are taken over then.
        upstreams = {"app": {"targets": [jobs_app.address], "timeout": "3s"}}
        a = gatehouses(jobs_app, jobs=cfg, routes=ROUTES, upstreams=upstreams)
        b = gatehouses(jobs_app, jobs=cfg, routes=ROUTES, upstreams=upstreams)
        accepted = []
        for i in range(40):
            g = a if i % 2 == 0 else b
            doc, _ = accept(g, "POST", "/gen?sleep=0.2", b"r%d" % i)
            accepted.append(doc["job_id"])
        # Jobs accepted by one instance are readable through the other (one shared store).
        status, _, _ = http_request(b.port, "GET", f"/jobs/{accepted[0]}")
        assert status == 200
        time.sleep(0.5)  # a has attempts under way
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=5)

        def final(job_id):
            status, _, data = http_request(b.admin_port, "GET", f"/admin/jobs/{job_id}")
            return status == 200 and json.loads(data)["status"] == "succeeded"

        pending = set(accepted)

        def all_done():
            for job_id in list(pending):
                if final(job_id):
                    pending.discard(job_id)
            return not pending

        assert wait_until(all_done, scaled(40), 0.25), f"{len(pending)} jobs never finished"
        calls = seen(jobs_app)
        assert all(calls.get(j, 0) >= 1 for j in accepted)
    finally:
        server.stop()


def test_drain_finishes_the_running_attempt(gatehouses, jobs_app, tmp_path):
    g = gatehouses(jobs_app, jobs=jobs_config(tmp_path), routes=ROUTES)
    doc, _ = accept(g, "POST", "/gen?sleep=1.5", b"d")
    job_id = doc["job_id"]
    assert wait_until(lambda: json.loads(http_request(g.port, "GET", f"/jobs/{job_id}")[2])
                      ["status"] == "running", scaled(5), 0.05)
    g.signal(signal.SIGTERM)
    assert g.wait_exit(scaled(10)) == 0
    g.start()
    final = json.loads(http_request(g.admin_port, "GET", f"/admin/jobs/{job_id}")[2])
    assert final["status"] == "succeeded" and final["attempts"] == 1, final
    assert seen(jobs_app)[job_id] == 1


def test_reload_switches_a_route_mode_but_not_the_store(gatehouses, jobs_app, tmp_path):
    from conftest import to_yaml

    g = gatehouses(jobs_app, jobs=jobs_config(tmp_path), routes=ROUTES)
    accept(g, "POST", "/gen", b"x")
    cfg = json.loads(json.dumps(g.config))
    cfg["routes"][0]["mode"] = "sync"
    del cfg["routes"][0]["mode"]
    cfg["jobs"]["max_body"] = "32KiB"
    g.config_path.write_text(to_yaml(cfg) + "\n")
    status, _, data = http_request(g.admin_port, "POST", "/admin/reload")
    assert status == 200, data
    # The summary (answer and log line) names the jobs keys that changed.
    assert json.loads(data)["changes"]["jobs"] == ["max_body"], data
    line = g.wait_log("error", lambda l: l.get("message") == "configuration reloaded")
    assert line["changes"]["jobs"] == ["max_body"]
    status, _, data = http_request(g.port, "POST", "/gen", body=b"x")
    assert status == 201, data  # proxied now
    cfg["jobs"]["store"] = f"sqlite://{tmp_path}/other.db"
    g.config_path.write_text(to_yaml(cfg) + "\n")
    status, _, data = http_request(g.admin_port, "POST", "/admin/reload")
    assert status != 200 and b"jobs.store" in data, data


def test_expect_100_continue(gh):
    import socket

    def exchange(length, send_body):
        s = socket.create_connection(("127.0.0.1", gh.port), timeout=scaled(5))
        try:
            s.sendall(b"POST /gen HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                      b"Content-Length: %d\r\n\r\n" % length)
            first = s.recv(65536)
            if send_body and first.startswith(b"HTTP/1.1 100"):
                s.sendall(b"y" * length)
                rest = b""
                while b"\r\n\r\n" not in rest:
                    rest += s.recv(65536)
                return first, rest
            return first, b""
        finally:
            s.close()

    first, _ = exchange(64 * 1024 + 1, False)
    assert first.startswith(b"HTTP/1.1 413"), first  # refused before the body, no 100
    first, rest = exchange(100, True)
    assert first.startswith(b"HTTP/1.1 100 Continue"), first
    assert rest.startswith(b"HTTP/1.1 202"), rest


def test_a_full_queue_is_503_with_retry_after(gatehouses, jobs_app, tmp_path):
    # One slot busy for 5 s, room for two queued jobs: the fourth request is refused, not queued.
    g = gatehouses(jobs_app, jobs=jobs_config(tmp_path, concurrency=1, max_queued=2),
                   routes=ROUTES, workers=1, drain_timeout="1s")
    accept(g, "POST", "/gen?sleep=5", b"1")
    assert wait_until(lambda: g.metrics().value("gatehouse_jobs", state="running") == 1,
                      scaled(5), 0.05)
    accept(g, "POST", "/gen?sleep=5", b"2")
    accept(g, "POST", "/gen?sleep=5", b"3")
    status, hdrs, data = http_request(g.port, "POST", "/gen?sleep=5", body=b"4")
    assert status == 503, data
    assert json.loads(data)["error"] == "job_queue_full" and int(hdrs["retry-after"]) >= 1


@pytest.mark.skipif(not os.path.exists("/usr/bin/redis-server"), reason="redis-server missing")
def test_an_unreachable_store_is_503_never_202(gatehouses, jobs_app, tmp_path):
    from redis_servers import RedisServer

    server = RedisServer(tmp_path / "redis")
    try:
        g = gatehouses(jobs_app, jobs=jobs_config(tmp_path, store=server.url()), routes=ROUTES)
        doc, _ = accept(g, "POST", "/gen", b"before")
        server.stop()
        status, hdrs, data = http_request(g.port, "POST", "/gen", body=b"during")
        assert status == 503, data
        assert json.loads(data)["error"] == "job_store_unavailable" and "retry-after" in hdrs
        status, _, _ = http_request(g.port, "GET", f"/jobs/{doc['job_id']}")
        assert status == 503
        _, _, health = http_request(g.admin_port, "GET", "/health/detailed")
        assert json.loads(health)["components"]["jobs"]["status"] != "ok"
    finally:
        server.stop()


def test_drain_timeout_requeues_the_attempt_and_exits_cleanly(gatehouses, jobs_app, tmp_path):
    g = gatehouses(jobs_app, jobs=jobs_config(tmp_path), routes=ROUTES, drain_timeout="1s")
    doc, _ = accept(g, "POST", "/gen?sleep=4", b"t")
    job_id = doc["job_id"]
    assert wait_until(lambda: json.loads(http_request(g.port, "GET", f"/jobs/{job_id}")[2])
                      ["status"] == "running", scaled(5), 0.05)
    g.signal(signal.SIGTERM)
    assert g.wait_exit(scaled(10)) == 0  # the cut-off attempt's frame goes without a crash
    g.start()
    final = poll(g, job_id, timeout=20)
    assert final["status"] == "succeeded" and final["attempts"] == 2, final
