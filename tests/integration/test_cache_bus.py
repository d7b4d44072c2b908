"""Cache invalidation across instances (issue 14): routes[].invalidates, DELETE /admin/cache and
the Redis pub/sub bus (cache.shared), end to end with two gatehouse instances sharing a real
redis-server in front of one real Flask app.

Each test starts its own redis-server (redis_servers.py) and its own pair of instances A and B.
Cache state is read from the X-Cache header (MISS, HIT). Cross-instance effects are polled with a
generous bound (a pub/sub round trip is a millisecond on loopback; the bound absorbs a busy VM).
"""
import json

import pytest

from conftest import http_request, scaled, wait_until
from redis_servers import RedisServer

SLUG = "/api/slugs/hello"


@pytest.fixture
def redis(tmp_path):
    server = RedisServer(tmp_path, label="cachebus")
    try:
        yield server
    finally:
        server.stop()


def config(redis_url):
    return {
        "cache": {"max_memory": "16MiB", "max_object": "1MiB", "shared": redis_url},
        "routes": [
            {"name": "slugs", "match": {"path_prefix": "/api/slugs/", "methods": ["GET", "HEAD"]},
             "upstream": "app", "cache": {"ttl": "60s"}},
            {"name": "pages-read", "match": {"path_prefix": "/api/pages", "methods": ["GET"]},
             "upstream": "app", "cache": {"ttl": "60s"}},
            {"name": "create-page", "match": {"path_prefix": "/api/pages", "methods": ["POST"]},
             "upstream": "app", "invalidates": ["/api/slugs/", "/api/pages"]},
            # Flask's /status/<code>: a write whose outcome the test chooses.
            {"name": "write-status", "match": {"path_prefix": "/status/", "methods": ["POST"]},
             "upstream": "app", "invalidates": ["/api/slugs/"]},
            {"name": "default", "match": {"path_prefix": "/"}, "upstream": "app"},
        ],
    }


def cache_state(gh, path=SLUG):
    status, headers, _ = http_request(gh.port, "GET", path)
    assert status == 200, (status, headers)
    return headers.get("x-cache")


def warm(gh, path=SLUG):
    """Fills `gh`'s cache for `path` (a MISS, then a HIT)."""
    first = cache_state(gh, path)
    assert first in ("MISS", "HIT"), first
    assert cache_state(gh, path) == "HIT"


def detailed(gh):
    status, _, body = http_request(gh.admin_port, "GET", "/health/detailed", timeout=5)
    return status, json.loads(body)


def bus(gh):
    return detailed(gh)[1]["components"].get("cache_bus")


def wait_bus(gh, state):
    found = wait_until(lambda: (bus(gh) or {}).get("status") == state, scaled(15), 0.05)
    assert found, f"cache_bus never became {state}: {bus(gh)}"


def wait_miss(gh, path=SLUG, timeout=3.0):
    """Polls GET `path` on gh until it answers MISS (each HIT on the way refills nothing)."""
    assert wait_until(lambda: cache_state(gh, path) == "MISS", scaled(timeout), 0.02), \
        f"{path} on {gh.port} stayed cached"


def counter(gh, name, **labels):
    return gh.metrics().value(name, **labels)


def pair(gatehouses, flask_app, redis):
    a = gatehouses(flask_app, **config(redis.url()))
    b = gatehouses(flask_app, **config(redis.url()))
    wait_bus(a, "ok")
    wait_bus(b, "ok")
    return a, b


def post(gh, path):
    status, _, _ = http_request(gh.port, "POST", path, body=b"{}",
                                headers={"Content-Type": "application/json"})
    return status


def test_a_write_on_one_instance_purges_the_other(gatehouses, flask_app, redis):
    a, b = pair(gatehouses, flask_app, redis)
    warm(a)
    warm(b)
    warm(b, "/api/pages/1")
    published = counter(a, "gatehouse_cache_bus_published_total")
    assert post(a, "/api/pages") == 200
    # A purged before answering: its next GET is a MISS without waiting.
    assert cache_state(a) == "MISS"
    # B: within one pub/sub round trip.
    wait_miss(b)
    wait_miss(b, "/api/pages/1")
    assert counter(a, "gatehouse_cache_bus_published_total") == published + 2
    assert counter(a, "gatehouse_cache_invalidations_total", origin="local") == 2
    assert counter(b, "gatehouse_cache_invalidations_total", origin="remote") == 2
    # A skipped its own echo.
    assert counter(a, "gatehouse_cache_invalidations_total", origin="remote") == 0


def test_a_failed_write_purges_nothing(gatehouses, flask_app, redis):
    a, b = pair(gatehouses, flask_app, redis)
    warm(a)
    warm(b)
    assert post(a, "/status/500") == 500
    assert post(a, "/status/409") == 409
    # A 2xx write afterwards on another route proves the bus delivers; then the failed ones
    # must not have been applied before it either.
    assert cache_state(a) == "HIT"
    assert counter(a, "gatehouse_cache_invalidations_total", origin="local") == 0
    assert post(a, "/status/201") == 201
    wait_miss(b)
    assert counter(b, "gatehouse_cache_invalidations_total", origin="remote") == 1


def test_admin_delete_purges_here_and_there(gatehouses, flask_app, redis):
    a, b = pair(gatehouses, flask_app, redis)
    warm(a)
    warm(b)
    warm(b, "/api/pages/2")
    status, _, body = http_request(a.admin_port, "DELETE", "/admin/cache?prefix=/api/slugs/")
    assert status == 200, body
    reply = json.loads(body)
    assert reply["prefix"] == "/api/slugs/"
    assert reply["purged"] >= 1
    assert reply["shared"] == "queued"
    assert cache_state(a) == "MISS"
    wait_miss(b)
    assert cache_state(b, "/api/pages/2") == "HIT"  # another prefix: untouched
    assert counter(b, "gatehouse_cache_invalidations_total", origin="remote") == 1

    # prefix=/ purges everything.
    status, _, body = http_request(a.admin_port, "DELETE", "/admin/cache?prefix=%2F")
    assert status == 200 and json.loads(body)["prefix"] == "/"
    wait_miss(b, "/api/pages/2")

    for target, code in [("/admin/cache", 400), ("/admin/cache?prefix=", 400),
                         ("/admin/cache?prefix=api", 400), ("/admin/cache?prefix=/a/../b", 400),
                         ("/admin/cache?prefix=/a%3Fb", 400),
                         ("/admin/cache?prefix=/" + "a" * 600, 400)]:
        status, _, body = http_request(a.admin_port, "DELETE", target)
        assert status == code, (target, status, body)
        assert json.loads(body)["error"] == "bad_request"
    status, _, _ = http_request(a.admin_port, "GET", "/admin/cache?prefix=/")
    assert status == 405


def test_redis_down_local_purge_and_recovery(gatehouses, flask_app, redis):
    a, b = pair(gatehouses, flask_app, redis)
    warm(a)
    warm(b)
    resyncs_b = counter(b, "gatehouse_cache_invalidations_total", origin="resync")
    redis.kill9()
    wait_bus(a, "degraded")
    wait_bus(b, "degraded")
    status, report = detailed(a)
    assert report["status"] == "degraded"
    assert report["components"]["cache_bus"]["mode"] == "local only"
    assert counter(a, "gatehouse_cache_bus_up") == 0
    assert counter(a, "gatehouse_cache_bus_errors_total", kind="subscribe") >= 1

    # The cache never turns a working request into an error; the local purge still happens.
    warm(b)
    assert post(a, "/api/pages") == 200
    assert cache_state(a) == "MISS"
    assert counter(a, "gatehouse_cache_bus_pending") >= 1  # waits for Redis
    line = a.wait_log("error", lambda l: l.get("message", "").startswith("cache bus unavailable"))
    assert "redis" in line
    status, _, body = http_request(a.admin_port, "DELETE", "/admin/cache?prefix=/api/pages")
    assert status == 200 and json.loads(body)["shared"] == "unavailable"

    # Redis back: both resubscribe, and B purged everything because it may have missed messages.
    redis.restart()
    wait_bus(a, "ok")
    wait_bus(b, "ok")
    assert counter(b, "gatehouse_cache_invalidations_total", origin="resync") > resyncs_b
    assert cache_state(b) == "MISS"
    # A's prefixes queued during the outage went out.
    assert wait_until(lambda: counter(a, "gatehouse_cache_bus_pending") == 0, scaled(5), 0.05)
    assert counter(a, "gatehouse_cache_bus_published_total") == 2  # deduplicated
    a.wait_log("error", lambda l: l.get("message", "").startswith("cache bus recovered"))


def test_a_redis_that_is_down_at_start_does_not_stop_gatehouse(gatehouses, flask_app, tmp_path):
    server = RedisServer(tmp_path, label="late")
    port = server.port
    server.stop()
    a = gatehouses(flask_app, **config(f"redis://127.0.0.1:{port}/0"))
    wait_bus(a, "degraded")
    warm(a)
    assert post(a, "/api/pages") == 200
    assert cache_state(a) == "MISS"
    server.restart()
    try:
        wait_bus(a, "ok")
    finally:
        server.stop()


def test_what_others_publish_on_the_channel(gatehouses, flask_app, redis):
    """Anything on the channel is decoded with bounds: junk is counted and ignored, a well-formed
    message from an unknown instance purges (whoever can PUBLISH on this Redis can purge)."""
    a, b = pair(gatehouses, flask_app, redis)
    warm(b)
    channel = bus(b)["channel"]
    assert channel == "gatehouse:cache:invalidate:0"
    for junk in ["hello", "gh1 0123456789abcdef", "gh1 0123456789ABCDEF /api/slugs/",
                 "gh1 0123456789abcdef /api/../slugs/", "gh1 0123456789abcdef api/slugs/",
                 "gh1 0123456789abcdef /" + "a" * 100_000]:
        assert redis.command("PUBLISH", channel, junk) == 2  # A and B are subscribed
    assert wait_until(
        lambda: counter(b, "gatehouse_cache_bus_errors_total", kind="message") == 6, scaled(5))
    assert cache_state(b) == "HIT"
    assert bus(b)["status"] == "ok"
    b.wait_log("error", lambda l: l.get("message") == "cache bus: message ignored")
    redis.command("PUBLISH", channel, "gh1 fedcba9876543210 /api/slugs/")
    wait_miss(b)


def test_a_redis_that_stops_answering_is_noticed(gatehouses, flask_app, redis):
    """SIGSTOP: connections stay open and nothing answers. The heartbeat notices within its
    timeout, drops the subscription, and the bus resynchronises once Redis answers again."""
    a, b = pair(gatehouses, flask_app, redis)
    warm(b)
    resyncs = counter(b, "gatehouse_cache_invalidations_total", origin="resync")
    redis.pause()
    try:
        wait_bus(b, "degraded")
        assert counter(b, "gatehouse_cache_bus_errors_total", kind="heartbeat") >= 1
        assert cache_state(b) == "HIT"  # serving goes on meanwhile
    finally:
        redis.resume()
    wait_bus(b, "ok")
    assert counter(b, "gatehouse_cache_invalidations_total", origin="resync") > resyncs
    assert cache_state(b) == "MISS"
