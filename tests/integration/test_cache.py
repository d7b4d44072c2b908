"""The response cache (issue 14) against a real uvicorn upstream that counts what it serves
(apps/cache_app.py): hits answered without the upstream, 100 concurrent cold misses sent upstream
once (across workers), what is never stored (Set-Cookie, private, no-store, no-cache,
Authorization, SSE, over max_object), Vary, TTL expiry in real time, stale-while-revalidate with
a slow upstream, stale-if-error with the upstream killed, memory bounded under a flood of keys,
POST bodies as keys, rate limits before the cache, and a shutdown with waiters pending."""
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import APPS, AppProcess, RawConn, http_request, read_json_lines, scaled, wait_until


def cache_app(apps, name="c"):
    app = AppProcess(apps.base_dir, APPS / "cache_app.py", [], [name], f"cache-{name}")
    apps.apps.append(app)
    return app.start()


def upstream_hits(app, path):
    status, _, body = http_request(app.port, "GET", f"/__hits?path={path}")
    assert status == 200
    return json.loads(body)["count"]


def cached(apps, gatehouses, cache=None, route_cache=None, workers=2, extra_routes=(), **over):
    app = cache_app(apps)
    routes = list(extra_routes) + [{
        "name": "cached", "match": {"path_prefix": "/"}, "upstream": "app",
        "cache": {"ttl": "60s", **(route_cache or {})},
    }]
    over.update({"workers": workers, "routes": routes})
    if cache is not None:
        over["cache"] = cache
    return app, gatehouses(app, **over)


def get(gh, target, headers=None, method="GET", body=None):
    return http_request(gh.port, method, target, headers=headers, body=body)


def test_a_hit_is_served_without_the_upstream_with_age_and_x_cache(apps, gatehouses):
    app, gh = cached(apps, gatehouses)
    s1, h1, b1 = get(gh, "/a?x=1")
    assert (s1, h1["x-cache"]) == (200, "MISS")
    time.sleep(1.1)
    s2, h2, b2 = get(gh, "/a?x=1")
    assert (s2, h2["x-cache"], b2) == (200, "HIT", b1)
    assert int(h2["age"]) >= 1
    assert h2["content-type"].startswith("text/plain")
    assert upstream_hits(app, "/a") == 1
    # Another query is another key; HEAD is answered from the GET entry, without a body.
    assert get(gh, "/a?x=2")[1]["x-cache"] == "MISS"
    s3, h3, b3 = get(gh, "/a?x=1", method="HEAD")
    assert (s3, h3["x-cache"], b3, int(h3["content-length"])) == (200, "HIT", b"", len(b1))
    assert upstream_hits(app, "/a") == 2
    def verdicts():
        return sorted(line.get("cache") for line in read_json_lines(gh.access_log)
                      if line.get("path", "").startswith("/a"))
    wait_until(lambda: len(verdicts()) >= 4, scaled(5))
    assert verdicts() == ["HIT", "HIT", "MISS", "MISS"]
    m = gh.metrics()
    assert m.value("gatehouse_cache_requests_total", result="hit") == 2
    assert m.value("gatehouse_cache_requests_total", result="miss") == 2
    assert m.value("gatehouse_cache_entries") == 2


def test_100_concurrent_cold_misses_reach_the_upstream_once(apps, gatehouses):
    app, gh = cached(apps, gatehouses)
    barrier = threading.Barrier(100)

    def one(_):
        barrier.wait()
        return get(gh, "/slow?sleep=3")  # long enough for all 100 to arrive during the fill

    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(one, range(100)))
    assert {r[0] for r in results} == {200}
    assert {r[2] for r in results} == {b"c /slow #1"}
    assert upstream_hits(app, "/slow") == 1
    verdicts = [r[1]["x-cache"] for r in results]
    assert verdicts.count("MISS") == 1 and verdicts.count("HIT") == 99
    assert gh.metrics().value("gatehouse_cache_coalesced_total") == 99


def test_waiters_over_max_waiters_go_upstream_themselves(apps, gatehouses):
    app, gh = cached(apps, gatehouses, route_cache={"max_waiters": 2}, workers=1)
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(get, gh, "/w?sleep=3")]
        assert wait_until(lambda: upstream_hits(app, "/w") == 1, scaled(5), 0.02)
        futures += [pool.submit(get, gh, "/w?sleep=3") for _ in range(5)]
        results = [f.result() for f in futures]
    verdicts = sorted(r[1]["x-cache"] for r in results)
    assert verdicts == ["BYPASS", "BYPASS", "BYPASS", "HIT", "HIT", "MISS"]
    assert upstream_hits(app, "/w") == 4


@pytest.mark.parametrize("query,headers", [
    ("cookie=1", {}),
    ("cc=private", {}),
    ("cc=no-store", {}),
    ("cc=no-cache", {}),
    ("cc=max-age%3D0", {}),
    ("status=500", {}),
    ("", {"Authorization": "Bearer user-1"}),
])
def test_what_is_never_stored(apps, gatehouses, query, headers):
    app, gh = cached(apps, gatehouses)
    for _ in range(2):
        status, h, _ = get(gh, f"/n?{query}", headers=headers)
        assert h["x-cache"] in ("MISS", "BYPASS")
    assert upstream_hits(app, "/n") == 2


def test_the_host_is_part_of_every_key(apps, gatehouses):
    # The app sees the client's Host (and may build absolute URLs from it): a page fetched with
    # another Host must never be another host's answer (cache poisoning, or a tenant's page
    # served to another tenant on one route).
    app, gh = cached(apps, gatehouses)
    s1, h1, b1 = get(gh, "/h?host=1", headers={"Host": "a.example"})
    s2, h2, b2 = get(gh, "/h?host=1", headers={"Host": "evil.example"})
    assert (h1["x-cache"], h2["x-cache"]) == ("MISS", "MISS")
    assert b"host=a.example" in b1 and b"host=evil.example" in b2
    s3, h3, b3 = get(gh, "/h?host=1", headers={"Host": "A.Example"})
    assert (h3["x-cache"], b3) == ("HIT", b1)  # host names are case-insensitive
    assert upstream_hits(app, "/h") == 2
    # Short, 8-byte and long hosts (the key lowers them eight bytes at a time).
    for lower, upper in (("ab", "aB"), ("abcdefgh", "ABCDEFGH"),
                         ("tenant-one.example.com", "Tenant-One.EXAMPLE.com")):
        assert get(gh, "/h2", headers={"Host": lower})[1]["x-cache"] == "MISS"
        assert get(gh, "/h2", headers={"Host": upper})[1]["x-cache"] == "HIT"
        assert get(gh, "/h2", headers={"Host": lower + "x"})[1]["x-cache"] == "MISS"


def test_every_cache_control_and_vary_line_counts(apps, gatehouses):
    # A second Cache-Control line (a middleware's "private") forbids storing.
    app, gh = cached(apps, gatehouses)
    for _ in range(2):
        s, h, _ = get(gh, "/cc2?cc=max-age%3D60&cc2=private")
        assert (s, h["x-cache"]) == (200, "MISS")
    assert upstream_hits(app, "/cc2") == 2
    # A second Vary line: each X-User gets its own copy.
    s, h, alice = get(gh, "/v2?vary=Accept-Language&vary2=X-User", headers={"X-User": "alice"})
    assert h["x-cache"] == "MISS" and b"X-User=alice" in alice
    s, h, bob = get(gh, "/v2?vary=Accept-Language&vary2=X-User", headers={"X-User": "bob"})
    assert h["x-cache"] == "MISS" and b"X-User=bob" in bob
    s, h, again = get(gh, "/v2?vary=Accept-Language&vary2=X-User", headers={"X-User": "alice"})
    assert (h["x-cache"], again) == ("HIT", alice)


def raw_head(port, target):
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(5)) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()


def test_a_hit_carries_the_same_security_headers_as_its_miss(apps, gatehouses):
    # The app's own X-Frame-Options wins on the miss; the hit must not add gatehouse's beside it
    # (SAMEORIGIN plus DENY blocks framing the miss allowed).
    app, gh = cached(apps, gatehouses)
    miss = raw_head(gh.port, "/xfo?xfo=1")
    hit = raw_head(gh.port, "/xfo?xfo=1")
    assert "x-cache: miss" in miss and "x-cache: hit" in hit
    assert miss.count("x-frame-options:") == 1 and "x-frame-options: sameorigin" in miss
    assert hit.count("x-frame-options:") == 1 and "x-frame-options: sameorigin" in hit
    assert hit.count("x-content-type-options:") == miss.count("x-content-type-options:") == 1


def test_authorization_is_cached_per_value_when_the_key_names_it(apps, gatehouses):
    app, gh = cached(apps, gatehouses,
                     route_cache={"key": ["method", "path", "query", "header:Authorization"]})
    a1 = get(gh, "/me", headers={"Authorization": "Bearer one"})
    a2 = get(gh, "/me", headers={"Authorization": "Bearer one"})
    b1 = get(gh, "/me", headers={"Authorization": "Bearer two"})
    assert (a1[1]["x-cache"], a2[1]["x-cache"], b1[1]["x-cache"]) == ("MISS", "HIT", "MISS")
    assert a2[2] == a1[2] != b1[2]


def test_vary_keeps_a_copy_per_request_value(apps, gatehouses):
    app, gh = cached(apps, gatehouses)
    target = "/v?vary=Accept-Language"
    en1 = get(gh, target, headers={"Accept-Language": "en"})
    fr1 = get(gh, target, headers={"Accept-Language": "fr"})
    en2 = get(gh, target, headers={"Accept-Language": "en"})
    fr2 = get(gh, target, headers={"Accept-Language": "fr"})
    assert [r[1]["x-cache"] for r in (en1, fr1, en2, fr2)] == ["MISS", "MISS", "HIT", "HIT"]
    assert en2[2] == en1[2] and b"accept-language=en" in en1[2].lower()
    assert fr2[2] == fr1[2] and b"accept-language=fr" in fr1[2].lower()
    assert upstream_hits(app, "/v") == 2
    # Vary: * is never stored.
    get(gh, "/star?vary=*")
    get(gh, "/star?vary=*")
    assert upstream_hits(app, "/star") == 2


def test_a_waiter_for_another_variant_goes_upstream_itself(apps, gatehouses):
    app, gh = cached(apps, gatehouses)
    target = "/vw?vary=Accept-Language&sleep=1"
    with ThreadPoolExecutor(2) as pool:
        en = pool.submit(get, gh, target, {"Accept-Language": "en"})
        time.sleep(scaled(0.3))
        fr = pool.submit(get, gh, target, {"Accept-Language": "fr"})
        en, fr = en.result(), fr.result()
    assert b"accept-language=en" in en[2].lower()
    assert b"accept-language=fr" in fr[2].lower()  # not the English fill
    assert fr[1]["x-cache"] == "BYPASS"


def test_ttl_expires_in_real_time_and_max_age_shortens_it(apps, gatehouses):
    app, gh = cached(apps, gatehouses, route_cache={"ttl": "1500ms"})
    get(gh, "/t")
    assert get(gh, "/t")[1]["x-cache"] == "HIT"
    time.sleep(1.7)
    assert get(gh, "/t")[1]["x-cache"] == "MISS"
    assert upstream_hits(app, "/t") == 2
    get(gh, "/m?cc=max-age%3D1")
    time.sleep(1.2)
    assert get(gh, "/m?cc=max-age%3D1")[1]["x-cache"] == "MISS"


def test_stale_if_error_serves_the_old_copy_when_the_upstream_is_dead(apps, gatehouses):
    app, gh = cached(apps, gatehouses, route_cache={"ttl": "1s", "stale_if_error": "1m"})
    s1, _, b1 = get(gh, "/e")
    time.sleep(1.2)
    app.stop()  # killed: connections refused
    s2, h2, b2 = get(gh, "/e")
    assert (s2, h2["x-cache"], b2) == (200, "STALE", b1)
    # Never stored: the failure is the client's answer.
    assert get(gh, "/other")[0] == 502
    assert gh.metrics().value("gatehouse_cache_requests_total", result="stale") == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_stale_if_error_covers_the_apps_own_5xx(apps, gatehouses, status):
    # RFC 5861: the app answers, but with an error. The client gets the expired copy, not the
    # app's error page, and the connection goes on (the error body was read off upstream).
    app, gh = cached(apps, gatehouses, route_cache={"ttl": "1s", "stale_if_error": "1m"})
    target = f"/e5?status={status}&status_from=2"
    s1, h1, b1 = get(gh, target)
    assert (s1, h1["x-cache"]) == (200, "MISS")
    time.sleep(1.2)
    conn = RawConn(gh.port, timeout=scaled(5))
    for _ in range(2):  # one keep-alive connection: the stale answer is a whole response
        r = conn.request("GET", target, headers=[("Host", f"127.0.0.1:{gh.port}")])
        assert (r.status, r.header("x-cache"), r.body) == (200, "STALE", b1)
    conn.close()
    assert upstream_hits(app, "/e5") == 3  # the app was asked each time
    # Without a copy the app's error is the client's answer.
    assert get(gh, f"/e5-new?status={status}")[0] == status
    assert gh.metrics().value("gatehouse_cache_requests_total", result="stale") == 2


def test_stale_while_revalidate_answers_at_once_and_refreshes_once_in_background(
        apps, gatehouses):
    app, gh = cached(apps, gatehouses, route_cache={"ttl": "1s", "stale_while_revalidate": "30s"})
    target = "/swr?sleep_from=2&sleep=2"  # the refresh (2nd request upstream) takes 2 s
    _, h1, b1 = get(gh, target)
    assert h1["x-cache"] == "MISS"
    time.sleep(1.2)
    t0 = time.monotonic()
    s2, h2, b2 = get(gh, target)
    elapsed = time.monotonic() - t0
    assert (s2, h2["x-cache"], b2) == (200, "STALE", b1)
    assert elapsed < scaled(0.5)  # not the upstream's 2 s
    assert get(gh, target)[1]["x-cache"] == "STALE"  # the refresh is already running
    assert wait_until(lambda: get(gh, target)[1]["x-cache"] == "HIT", scaled(5), 0.2)
    assert get(gh, target)[2] == b"c /swr #2"
    assert upstream_hits(app, "/swr") == 2  # one refresh, however many stale answers


def test_a_background_refresh_is_processed_and_forwarded_like_a_proxied_request(
        apps, gatehouses):
    # An app that leaks Server and X-Powered-By: the security headers policy strips them from
    # proxied responses, so no cached answer may carry them, whichever way it was filled.
    app, gh = cached(apps, gatehouses, route_cache={"ttl": "1s", "stale_while_revalidate": "30s"})
    target = "/leak?leaky=1"
    answers = [get(gh, target, headers={"X-Request-ID": "client-id-1"})]
    assert answers[0][1]["x-cache"] == "MISS"
    time.sleep(1.2)
    answers.append(get(gh, target))
    assert answers[-1][1]["x-cache"] == "STALE"
    assert wait_until(lambda: upstream_hits(app, "/leak") == 2, scaled(5), 0.1)
    assert wait_until(lambda: get(gh, target)[1]["x-cache"] == "HIT", scaled(5), 0.1)
    answers.append(get(gh, target))
    assert answers[-1][2] == b"c /leak #2"  # the refreshed entry
    for status, headers, _ in answers:
        assert status == 200
        assert "x-powered-by" not in headers, headers
        assert headers.get("server", "") != "leaky", headers
        assert int(headers.get("age", "0")) < 30  # the refreshed entry's age counts from its store
    # The refresh reached the app as a proxied request would: forwarding headers, and a request
    # id of its own (not the one of the request that found the entry stale, nor a client's).
    seen = json.loads(http_request(app.port, "GET", "/__seen?path=/leak")[2])
    assert len(seen) == 2
    refresh = seen[1]
    assert refresh["x-forwarded-for"] == "127.0.0.1"
    assert refresh["x-request-id"] and refresh["x-request-id"] != seen[0]["x-request-id"]
    assert refresh["x-request-id"] != answers[1][1]["x-request-id"]


def test_a_background_refresh_reuses_the_upstreams_pooled_connection(apps, gatehouses):
    # The refresh is one of the upstream's exchanges (its cluster): it takes the keep-alive
    # connection the miss left in the worker's pool instead of opening one of its own.
    app, gh = cached(apps, gatehouses, workers=1,
                     route_cache={"ttl": "1s", "stale_while_revalidate": "30s"})
    assert get(gh, "/pooled")[1]["x-cache"] == "MISS"
    time.sleep(1.2)
    assert get(gh, "/pooled")[1]["x-cache"] == "STALE"
    assert wait_until(lambda: get(gh, "/pooled")[1]["x-cache"] == "HIT", scaled(5), 0.1)
    assert get(gh, "/pooled")[2] == b"c /pooled #2"
    seen = json.loads(http_request(app.port, "GET", "/__seen?path=/pooled")[2])
    assert len(seen) == 2
    assert seen[0]["port"] and seen[1]["port"] == seen[0]["port"], seen  # the same connection


def test_a_background_refresh_follows_the_upstreams_retry_policy(apps, gatehouses):
    # The refresh's first try gets a 503 (in retry.on by default): it is tried again, as a
    # proxied GET would be, and the second try's answer is stored.
    app, gh = cached(apps, gatehouses, workers=1,
                     route_cache={"ttl": "1s", "stale_while_revalidate": "30s"},
                     upstreams={"app": {"retry": {"attempts": 2,
                                                  "backoff": {"base": "10ms", "max": "50ms"}}}})
    target = "/retried?status=503&status_from=2&status_to=2"
    assert get(gh, target)[1]["x-cache"] == "MISS"
    time.sleep(1.2)
    assert get(gh, target)[1]["x-cache"] == "STALE"
    # No client request meanwhile (a later stale hit would start a refresh of its own).
    assert wait_until(lambda: upstream_hits(app, "/retried") == 3, scaled(5), 0.05)
    status, headers, body = get(gh, target)
    assert (status, headers["x-cache"], body) == (200, "HIT", b"c /retried #3")


def test_an_open_circuit_breaker_stops_background_refreshes(apps, gatehouses):
    # While the upstream's breaker is open nothing goes to the app, refreshes included: the
    # stale copy keeps being served (stale_while_revalidate) and no refresh reaches the app.
    app, gh = cached(apps, gatehouses, workers=1,
                     route_cache={"ttl": "1s", "stale_while_revalidate": "30s"},
                     upstreams={"app": {"circuit_breaker": {
                         "failure_ratio": 0.5, "min_requests": 3, "window": "10s",
                         "open_for": "30s"}}})
    assert get(gh, "/page")[1]["x-cache"] == "MISS"
    # 1 success and 2 failures in 3 tries: open.
    assert [get(gh, "/fail?status=500")[0] for _ in range(2)] == [500, 500]
    assert get(gh, "/other")[0] == 503  # open: answered by gatehouse
    time.sleep(1.2)
    for _ in range(3):
        status, headers, body = get(gh, "/page")
        assert (status, headers["x-cache"], body) == (200, "STALE", b"c /page #1")
        time.sleep(0.2)
    time.sleep(0.5)
    assert upstream_hits(app, "/page") == 1
    assert upstream_hits(app, "/other") == 0


def test_memory_stays_under_max_memory_under_a_flood_of_keys(apps, gatehouses):
    app, gh = cached(apps, gatehouses, cache={"max_memory": "1MiB", "max_object": "64KiB"})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: get(gh, f"/flood/{i}?size=8000"), range(400)))
    m = gh.metrics()
    assert 0 < m.value("gatehouse_cache_bytes") <= 1024 * 1024
    assert m.value("gatehouse_cache_max_bytes") == 1024 * 1024
    assert m.value("gatehouse_cache_evictions_total") > 0
    assert m.value("gatehouse_cache_entries") < 128


def test_an_object_over_max_object_is_relayed_not_stored(apps, gatehouses):
    app, gh = cached(apps, gatehouses, cache={"max_memory": "16MiB", "max_object": "100KiB"})
    for _ in range(2):
        status, h, body = get(gh, "/big?size=300000")
        assert (status, len(body)) == (200, 300000)
    assert upstream_hits(app, "/big") == 2
    assert get(gh, "/small?size=1000")[1]["x-cache"] == "MISS"
    assert get(gh, "/small?size=1000")[1]["x-cache"] == "HIT"


def test_a_post_keyed_on_its_body_answers_identical_prompts_once(apps, gatehouses):
    app, gh = cached(apps, gatehouses, route_cache={
        "ttl": "1h", "key": ["method", "path", "query", "body", "header:X-Model"]})
    prompt = json.dumps({"prompt": "x" * 500}).encode()
    r1 = get(gh, "/complete", method="POST", body=prompt, headers={"X-Model": "m1"})
    r2 = get(gh, "/complete", method="POST", body=prompt, headers={"X-Model": "m1"})
    r3 = get(gh, "/complete", method="POST", body=prompt + b" ", headers={"X-Model": "m1"})
    r4 = get(gh, "/complete", method="POST", body=prompt, headers={"X-Model": "m2"})
    assert [r[1]["x-cache"] for r in (r1, r2, r3, r4)] == ["MISS", "HIT", "MISS", "MISS"]
    assert r2[2] == r1[2]
    assert upstream_hits(app, "/complete") == 3


def test_a_keep_alive_connection_continues_after_a_cached_post(apps, gatehouses):
    import http.client
    app, gh = cached(apps, gatehouses, route_cache={"key": ["method", "path", "body"]})
    conn = http.client.HTTPConnection("127.0.0.1", gh.port, timeout=scaled(10))
    for i in range(3):
        conn.request("POST", "/k", body=b'{"q": 1}')
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        assert resp.getheader("X-Cache") == ("MISS" if i == 0 else "HIT")
    conn.request("GET", "/k2")
    assert conn.getresponse().status == 200
    conn.close()


def test_sse_is_not_stored_and_its_waiters_are_released(apps, gatehouses):
    app, gh = cached(apps, gatehouses)
    with ThreadPoolExecutor(5) as pool:
        t0 = time.monotonic()
        results = list(pool.map(lambda _: get(gh, "/events?sse=1"), range(5)))
        elapsed = time.monotonic() - t0
    assert all(r[0] == 200 and r[2].count(b"data:") == 3 for r in results)
    assert upstream_hits(app, "/events") == 5
    assert elapsed < scaled(5)  # released at the fill's head, not at their deadline
    assert get(gh, "/events?sse=1")[1]["x-cache"] == "MISS"


def test_client_no_cache_revalidates_only_when_the_route_allows(apps, gatehouses):
    app, gh = cached(apps, gatehouses, route_cache={"allow_client_bypass": True})
    get(gh, "/r")
    assert get(gh, "/r", headers={"Cache-Control": "no-cache"})[1]["x-cache"] == "MISS"
    assert get(gh, "/r")[2] == b"c /r #2"  # the refreshed copy
    app2, gh2 = cached(apps, gatehouses)
    get(gh2, "/r")
    assert get(gh2, "/r", headers={"Cache-Control": "no-cache"})[1]["x-cache"] == "HIT"


def test_rate_limits_apply_before_the_cache(apps, gatehouses):
    app, gh = cached(apps, gatehouses, workers=1)
    gh.stop()
    gh2 = gatehouses(app, workers=1, routes=[{
        "name": "cached", "match": {"path_prefix": "/"}, "upstream": "app",
        "cache": {"ttl": "60s"}, "rate_limit": {"limits": "2/minute"}}])
    statuses = [get(gh2, "/rl")[0] for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    assert upstream_hits(app, "/rl") == 1


def test_health_detailed_reports_cache_usage(apps, gatehouses):
    app, gh = cached(apps, gatehouses)
    get(gh, "/h")
    status, _, body = http_request(gh.admin_port, "GET", "/health/detailed")
    cache = json.loads(body)["components"]["cache"]
    assert cache["entries"] == 1 and cache["bytes"] > 0


def test_shutdown_with_a_fill_and_its_waiters_pending_exits_cleanly(apps, gatehouses):
    import signal
    app, gh = cached(apps, gatehouses, drain_timeout="300ms")
    pool = ThreadPoolExecutor(8)
    futures = [pool.submit(get, gh, "/slow?sleep=5") for _ in range(8)]
    time.sleep(scaled(0.5))
    gh.signal(signal.SIGTERM)
    rc = gh.wait_exit(scaled(10))
    assert rc is not None and rc >= 0  # not killed by a signal (a crash at teardown)
    for f in futures:
        try:
            f.result()
        except Exception:  # noqa: BLE001 - cut off by the shutdown, as it should be
            pass
    pool.shutdown()
    assert "internal error" not in gh.stderr_text() + gh.error_log.read_text()


def test_the_upstreams_age_counts_against_freshness(apps, gatehouses):
    # RFC 9111 4.2.3: max-age=3 with Age: 2 arrives with one second of freshness left.
    app, gh = cached(apps, gatehouses)
    target = "/aged?cc=max-age%3D3&age=2"
    assert get(gh, target)[1]["x-cache"] == "MISS"
    hit = get(gh, target)
    assert hit[1]["x-cache"] == "HIT" and int(hit[1]["age"]) >= 2
    time.sleep(1.3)
    assert get(gh, target)[1]["x-cache"] == "MISS"  # not fresh for 3 s from its arrival
    assert upstream_hits(app, "/aged") == 2


def test_a_hit_never_carries_the_fillers_request_id(apps, gatehouses):
    app, gh = cached(apps, gatehouses)
    conn = RawConn(gh.port, timeout=scaled(5))
    answers = []
    for rid in ("filler-id-1", "hit-id-2"):
        answers.append(conn.request("GET", "/rid?echo_id=1",
                                    headers=[("Host", "h"), ("X-Request-ID", rid)]))
    conn.close()
    assert [r.header("x-cache") for r in answers] == ["MISS", "HIT"]
    ids = [r.header_all("x-request-id") for r in answers]
    assert len(ids[1]) == 1, ids  # one id: its own
    assert "filler-id-1" not in ids[1][0]
    assert ids[1] != ids[0]


def test_a_refresh_does_not_send_the_clients_validators_or_range(apps, gatehouses):
    app, gh = cached(apps, gatehouses, route_cache={"ttl": "1s", "stale_while_revalidate": "30s"})
    assert get(gh, "/cond")[1]["x-cache"] == "MISS"
    time.sleep(1.2)
    stale = get(gh, "/cond", headers={"If-None-Match": '"v1"', "Range": "bytes=0-1",
                                      "If-Modified-Since": "Tue, 01 Dec 2026 00:00:00 GMT"})
    assert stale[1]["x-cache"] == "STALE"
    assert wait_until(lambda: upstream_hits(app, "/cond") == 2, scaled(5), 0.1)
    refresh = json.loads(http_request(app.port, "GET", "/__seen?path=/cond")[2])[1]
    assert (refresh["if-none-match"], refresh["if-modified-since"], refresh["range"]) == \
        (None, None, None)
    assert wait_until(lambda: get(gh, "/cond")[1]["x-cache"] == "HIT", scaled(5), 0.1)
    s, _, body = get(gh, "/cond")
    assert (s, body) == (200, b"c /cond #2")  # the whole representation was stored


def test_expect_100_continue_on_a_post_keyed_on_its_body(apps, gatehouses):
    # The client sends its head and waits for 100 Continue before the body the key needs.
    app, gh = cached(apps, gatehouses, route_cache={"key": ["method", "path", "body"]})
    body = b'{"prompt": "hello"}'
    verdicts = []
    for _ in range(2):
        conn = RawConn(gh.port, timeout=scaled(5))
        conn.send((f"POST /exp HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n"
                   "Content-Type: application/json\r\nExpect: 100-continue\r\n\r\n").encode())
        interim = conn.read_head()
        assert interim.status == 100
        conn.send(body)
        r = conn.read_response("POST")
        assert r.status == 200 and r.interim == []  # one 100 Continue, not two
        verdicts.append(r.header("x-cache"))
        conn.close()
    assert verdicts == ["MISS", "HIT"]
    assert upstream_hits(app, "/exp") == 1


def test_a_waiter_waits_at_most_the_route_timeout_in_total(apps, gatehouses):
    # The fill times out (the app sleeps past the route's 2 s): its waiter, released then with
    # nothing, gets what is left of its own 2 s, not 2 s more upstream.
    app, gh = cached(apps, gatehouses, workers=1)
    routes = [{"name": "cached", "match": {"path_prefix": "/"}, "upstream": "app",
               "timeout": "2s", "cache": {"ttl": "60s"}}]
    gh2 = gatehouses(app, workers=1, routes=routes)
    target = "/slowfill?sleep=6"
    results = {}

    def filler():
        results["filler"] = get(gh2, target)[0]

    t = threading.Thread(target=filler)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    status = get(gh2, target)[0]
    waited = time.monotonic() - t0
    t.join()
    assert results["filler"] == 504
    assert status == 504
    assert waited < 3.0, waited  # not 2 s waiting plus 2 s upstream


def test_a_head_miss_does_not_defeat_coalescing(apps, gatehouses):
    # A HEAD first, then GETs, all at once: one GET upstream fills for the GETs; the HEAD never
    # took the fill (it goes upstream as a HEAD, or waits and is answered from the GET).
    app, gh = cached(apps, gatehouses)
    target = "/hc?sleep=1"
    results = []

    def one(method):
        results.append((method, get(gh, target, method=method)))

    threads = [threading.Thread(target=one, args=("HEAD",))]
    threads[0].start()
    time.sleep(0.2)
    for _ in range(5):
        threads.append(threading.Thread(target=one, args=("GET",)))
        threads[-1].start()
    for t in threads:
        t.join()
    assert all(r[0] == 200 for _, r in results)
    seen = json.loads(http_request(app.port, "GET", "/__seen?path=/hc")[2])
    assert sorted(x["method"] for x in seen) == ["GET", "HEAD"]
    assert get(gh, target)[1]["x-cache"] == "HIT"
