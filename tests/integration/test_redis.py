"""The Redis-backed rate-limit store (`rate_limit.store: redis://...`) end to end, against real
redis-server processes (redis_servers.py): counts shared exactly by several gatehouse instances,
shared bans, Redis killed and restarted under load, SCRIPT FLUSH, SIGTERM with a Redis store, AUTH
failure at start-up, a Redis that never answers (a silent listener, or redis-server frozen with
SIGSTOP), on_store_failure allow/deny, and a 3-master cluster with MOVED and ASK redirections.

Each test starts its own gatehouse instances (the module's Flask upstream) and uses its own
key_prefix; the shared standalone server and the cluster are module-scoped and flushed before
each test. Loads are bounded (at most 12 client threads, a few hundred requests or a few seconds
per test). Measured figures are printed: run with -s to see them.
"""
import collections
import hashlib
import http.client
import json
import math
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import (GATEHOUSE_BIN, HOST, SCALE, deep_merge, default_config, free_port,
                      http_request, scaled, to_yaml, wait_until)
from redis_servers import (REDIS_CLI, REDIS_SERVER, RedisCluster, RedisServer, SilentServer,
                           keyslot)

TRUST = ["127.0.0.1"]
ALGORITHMS = ["fixed_window", "sliding_window", "token_bucket", "gcra"]
UNAVAILABLE = "rate limit store unavailable"
RECOVERED = "rate limit store recovered"


def ms(seconds):
    """A duration for the config, in whole milliseconds."""
    return f"{max(1, int(round(seconds * 1000)))}ms"


# A Redis call that is not part of what a test is about must not time out on a busy 2-core VM.
RELAXED_TIMEOUT = ms(scaled(0.5))


# ------------------------------------------------------------------------------ helpers


class Resp:
    def __init__(self, status, headers, body, elapsed=None):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body
        self.elapsed = elapsed

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Resp {self.status} {self.headers} {self.body[:200]!r}>"


class Client:
    """One keep-alive HTTP/1.1 connection (http.client reopens it after a Connection: close)."""

    def __init__(self, port, xff=None, timeout=10.0):
        self.conn = http.client.HTTPConnection(HOST, port, timeout=scaled(timeout))
        self.xff = xff

    def get(self, path, headers=None):
        h = dict(headers or {})
        if self.xff is not None:
            h.setdefault("X-Forwarded-For", self.xff)
        t0 = time.monotonic()
        self.conn.request("GET", path, headers=h)
        resp = self.conn.getresponse()
        data = resp.read()
        return Resp(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data,
                    time.monotonic() - t0)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fetch(port, path, xff=None, headers=None):
    """One GET on a fresh connection."""
    h = dict(headers or {})
    if xff is not None:
        h["X-Forwarded-For"] = xff
    t0 = time.monotonic()
    status, hdrs, body = http_request(port, "GET", path, headers=h)
    return Resp(status, hdrs, body, time.monotonic() - t0)


def assert_429(r):
    assert r.status == 429, r
    assert r.header("content-type", "").split(";")[0] == "application/json", r
    j = r.json()
    assert j["error"] == "rate_limit_exceeded", r
    assert r.header("retry-after") is not None, r
    assert int(r.header("retry-after")) == j["retry_after"] >= 1, r


def assert_store_unavailable(r):
    assert r.status == 503, r
    assert r.header("content-type", "").split(";")[0] == "application/json", r
    assert r.json()["error"] == "rate_limit_store_unavailable", r
    assert r.header("retry-after") == "1", r


def store_metrics(gh):
    """The store's metrics of one instance as a dict (missing ones as None)."""
    m = gh.metrics()

    def total(name, **labels):
        vs = [v for (n, ls), v in m.samples.items()
              if n == name and set(labels.items()) <= set(ls)]
        return sum(vs) if vs else None
    return {
        "up": total("gatehouse_ratelimit_store_up"),
        "calls": total("gatehouse_ratelimit_store_calls_total"),
        "fallbacks": total("gatehouse_ratelimit_store_fallbacks_total"),
        "script_loads": total("gatehouse_ratelimit_store_script_loads_total"),
        "errors": total("gatehouse_ratelimit_store_errors_total"),
        "timeout": total("gatehouse_ratelimit_store_errors_total", kind="timeout"),
        "error": total("gatehouse_ratelimit_store_errors_total", kind="error"),
        "connect": total("gatehouse_ratelimit_store_errors_total", kind="connect"),
        "redirects": total("gatehouse_ratelimit_store_redirects_total"),
    }


def rate_limit_component(gh):
    status, _, body = http_request(gh.admin_port, "GET", "/health/detailed", timeout=5)
    assert status in (200, 503), status
    return json.loads(body)["components"].get("rate_limit")


def wait_component(gh, redis_state):
    """The rate_limit component of /health/detailed once it says "redis": redis_state (the
    report is cached for up to health.cache_ttl); fails on timeout."""
    def check():
        comp = rate_limit_component(gh)
        return comp if comp and comp.get("redis") == redis_state else None
    comp = wait_until(check, scaled(5))
    assert comp, f'expected "redis": "{redis_state}": {rate_limit_component(gh)}'
    assert comp["store"] == "redis", comp
    assert comp["status"] == ("ok" if redis_state == "ok" else "degraded"), comp
    return comp


def log_text(gh):
    """stdout, stderr and the error log of one instance."""
    try:
        error_log = gh.error_log.read_text(errors="replace")
    except FileNotFoundError:
        error_log = ""
    return gh.stdout_text() + gh.stderr_text() + error_log


def ready_status(gh):
    return http_request(gh.port, "GET", "/health/ready", timeout=5)[0]


def store_log_lines(gh, text):
    return [l for l in gh.log_lines("error") if text in str(l.get("message", ""))]


def avoid_window_edge(margin, period=60):
    """Sleeps past the next multiple of `period` (Unix time) when fewer than `margin` seconds
    are left before it, so a fixed window aligned on the clock cannot reset mid-test (with a
    window starting at the key's first request this only costs a short wait)."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.2)


def percentile(values, p):
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]


def fingerprint(value):
    """How the store names a header value: '#' + the first 16 hex digits of its SHA-256."""
    return "#" + hashlib.sha256(value.encode()).hexdigest()[:16]


def redis_block(store, prefix, timeout=RELAXED_TIMEOUT, **redis_opts):
    """The store keys of a top-level rate_limit block."""
    return {"store": store,
            "redis": {"timeout": timeout, "key_prefix": prefix, **redis_opts}}


def route(name, prefix, rate_limit=None):
    r = {"name": name, "match": {"path_prefix": prefix}, "upstream": "app"}
    if rate_limit is not None:
        r["rate_limit"] = rate_limit
    return r


def key_re(prefix, identity):
    return re.compile("^" + re.escape(f"{prefix}{{{identity}}}:") + "[0-9a-f]{8}$")


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", autouse=True)
def _redis_installed():
    for path in (REDIS_SERVER, REDIS_CLI):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} not found (scripts/bootstrap.sh installs redis; REDIS_SERVER "
                        f"and REDIS_CLI override the paths)")


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis(shared_redis):
    """The module's standalone server, emptied."""
    if not shared_redis.running():
        shared_redis.restart()
    shared_redis.command("FLUSHALL")
    return shared_redis


@pytest.fixture
def redis_factory(tmp_path):
    """redis_factory(password=None) -> a RedisServer of this test's own (stopped at teardown)."""
    servers = []

    def make(**kw):
        server = RedisServer(tmp_path / "redis", label=f"redis{len(servers)}", **kw)
        servers.append(server)
        return server
    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def cluster_module(tmp_path_factory):
    c = RedisCluster(tmp_path_factory.mktemp("cluster"), masters=3)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def cluster(cluster_module):
    cluster_module.flushall()
    return cluster_module


# ------------------------------------------------------------------------------ 1. shared counts


def hammer_instances(instances, path, threads, per_thread, headers=None):
    """`threads` client threads start together; thread i sends `per_thread` GETs back to back
    on one keep-alive connection to instance i % len(instances). Returns ([(i, Resp)],
    elapsed seconds from the common start until the last response)."""
    start = []
    barrier = threading.Barrier(threads, action=lambda: start.append(time.monotonic()))
    lock = threading.Lock()
    results, errors = [], []

    def run(i):
        try:
            with Client(instances[i % len(instances)].port) as c:
                barrier.wait(timeout=scaled(10))
                out = [(i, c.get(path, headers)) for _ in range(per_thread)]
            with lock:
                results.extend(out)
        except Exception as exc:  # noqa: BLE001 - reported below
            with lock:
                errors.append(repr(exc))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=scaled(60))
    end = time.monotonic()
    assert not any(t.is_alive() for t in ts), "client threads hung"
    assert not errors, errors
    return results, end - start[0]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_three_instances_share_one_limit(flask_app, gatehouses, redis, algorithm):
    """3 instances, 12 keep-alive clients spread round-robin over them, 300 requests against
    one global 100/minute: the instances share the counter in Redis, so exactly 100 are
    admitted (fixed_window), 100 +- 1 (sliding_window), or 100 plus what refilled during the
    burst (token_bucket, gcra with burst 100)."""
    prefix = f"t1-{algorithm}:"
    block = {**redis_block(redis.url(), prefix), "algorithm": algorithm, "key": "global",
             "limits": "100/minute"}
    if algorithm in ("token_bucket", "gcra"):
        block["burst"] = 100
    instances = [gatehouses(flask_app, rate_limit=block) for _ in range(3)]
    if "window" in algorithm:
        avoid_window_edge(scaled(10))
    results, elapsed = hammer_instances(instances, "/echo", threads=12, per_thread=25)

    assert len(results) == 300
    statuses = collections.Counter(r.status for _, r in results)
    assert set(statuses) <= {200, 429}, statuses
    for _, r in results:
        if r.status == 429:
            assert_429(r)
    admitted = statuses[200]
    per_instance = collections.Counter(i % 3 for i, r in results if r.status == 200)
    print(f"\n{algorithm}: admitted {admitted} of 300 in {elapsed:.3f} s; "
          f"per instance {dict(sorted(per_instance.items()))}")
    if algorithm == "fixed_window":
        assert admitted == 100, statuses
    elif algorithm == "sliding_window":
        assert 99 <= admitted <= 101, statuses
    else:
        hi = 100 + math.floor(100 * elapsed / 60)
        assert 100 <= admitted <= hi, f"admitted {admitted}, expected [100, {hi}]"

    snapshots = [store_metrics(g) for g in instances]
    print(f"store metrics per instance: {snapshots}")
    for s in snapshots:
        assert s["up"] == 1, s
        assert s["fallbacks"] == 0, s
    assert sum(s["calls"] for s in snapshots) == 300, snapshots

    keys = redis.scan(prefix + "*")
    assert keys, "no counter in Redis"
    pattern = key_re(prefix, "global")
    for k in keys:
        assert pattern.match(k), f"unexpected key {k!r}"
        assert redis.pttl(k) > 0, f"{k} has no TTL"


# ------------------------------------------------------------------------------ 2. shared bans


def test_ban_through_one_instance_applies_on_another(flask_app, gatehouses, redis):
    prefix = "t2:"
    block = {**redis_block(redis.url(), prefix), "key": "ip", "limits": "2/minute",
             "ban": {"after": 3, "within": "1m", "for": "30s"}}
    a = gatehouses(flask_app, trusted_proxies=TRUST, rate_limit=block)
    b = gatehouses(flask_app, trusted_proxies=TRUST, rate_limit=block)
    client, other = "198.51.100.7", "198.51.100.8"
    avoid_window_edge(scaled(8))

    with Client(a.port, xff=client) as c:
        statuses = []
        for _ in range(10):
            statuses.append(c.get("/echo").status)
            if statuses[-1] == 403:
                break
    assert statuses == [200, 200, 429, 429, 429, 403], statuses

    r = fetch(b.port, "/echo", xff=client)
    assert r.status == 403, f"instance B does not know the ban made through A: {r}"
    j = r.json()
    assert j["error"] == "banned", r
    assert 1 <= int(r.header("retry-after")) <= 30, r
    assert j["retry_after"] == int(r.header("retry-after"))
    assert fetch(b.port, "/echo", xff=other).status == 200  # only that client is banned
    assert fetch(a.port, "/echo", xff=other).status == 200

    ban_key = f"{prefix}{{ip={client}}}:ban"
    keys = redis.scan(prefix + "*")
    print(f"\nRedis keys: {keys}")
    assert ban_key in keys, keys
    pttl = redis.pttl(ban_key)
    print(f"PTTL {ban_key} = {pttl} ms")
    assert 0 < pttl <= 30000, pttl
    assert f"{prefix}{{ip={other}}}:ban" not in keys
    for k in keys:
        assert redis.pttl(k) > 0, f"{k} has no TTL"

    # The admin API of B lists the ban from Redis, and lifting it there lifts it for A too.
    status, _, body = http_request(b.admin_port, "GET", "/admin/bans", timeout=5)
    j = json.loads(body)
    print(f"B /admin/bans: {j}")
    assert status == 200 and j["count"] == 1, j
    assert j["bans"][0]["key"] == f"ip={client}" and 0 < j["bans"][0]["expires_in"] <= 30, j
    q = f"ip%3D{client}"
    status, _, body = http_request(b.admin_port, "DELETE", f"/admin/bans?key={q}", timeout=5)
    assert (status, json.loads(body)) == (200, {"lifted": 1})
    assert ban_key not in redis.scan(prefix + "*")
    assert_429(fetch(a.port, "/echo", xff=client))  # not banned any more, still limited


# ------------------------------------------------------------------------------ 3. kill -9


class PacedLoad:
    """Client threads, each on one keep-alive connection to instance i % len(instances), sending
    a GET `path` every `pace` seconds until stop(); records (sent, latency, status, instance)."""

    def __init__(self, instances, path, threads, pace, xff=None):
        self.records, self.errors = [], []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(instances, path, i, pace, xff))
                        for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, instances, path, i, pace, xff):
        n = i % len(instances)
        try:
            with Client(instances[n].port, xff=xff) as c:
                slot = time.monotonic()
                while not self.stopping.is_set():
                    t0 = time.monotonic()
                    r = c.get(path)
                    with self.lock:
                        self.records.append((t0, r.elapsed, r.status, n))
                    slot += pace
                    delay = slot - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        slot = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            with self.lock:
                self.errors.append(repr(exc))

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=scaled(30))
        assert not any(t.is_alive() for t in self.threads), "client threads hung"
        return self.records


def test_redis_killed_under_load_then_restarted(flask_app, gatehouses, redis_factory):
    """Redis is killed with SIGKILL under load: no 5xx, no added latency (the breaker opens), the
    low-limit route stays limited (local limiter); after a restart every instance uses Redis
    again within 5 s. The error log says so once per state change, not once per request."""
    server = redis_factory()
    prefix = "t3:"
    workers = 2
    block = {**redis_block(server.url(), prefix, timeout=ms(scaled(0.1)), breaker_failures=3,
                           breaker_cooldown="1s"),
             "on_store_failure": "local", "key": "ip", "limits": "100000/minute"}
    routes = [route("low", "/low", {"limits": "5/minute"}), route("default", "/")]
    instances = [gatehouses(flask_app, workers=workers, rate_limit=block, routes=routes)
                 for _ in range(2)]
    for g in instances:
        assert store_metrics(g)["up"] == 1
        wait_component(g, "ok")

    normal_s, killed_s = 3.0, 3.0
    t_start = time.monotonic()
    load = PacedLoad(instances, "/echo", threads=4, pace=0.02)
    low = PacedLoad(instances, "/low", threads=2, pace=0.05)
    time.sleep(normal_s)
    t_kill = time.monotonic()
    server.kill9()
    time.sleep(killed_s)
    records = load.stop()
    low_records = low.stop()
    assert not load.errors and not low.errors, load.errors + low.errors

    statuses = collections.Counter(s for _, _, s, _ in records)
    assert set(statuses) == {200}, f"/echo answers: {statuses}"
    normal = [lat for t0, lat, _, _ in records if t0 > t_start + 0.3 and t0 + lat < t_kill]
    after = [lat for t0, lat, _, _ in records if t0 + lat >= t_kill]
    p99_normal, p99_after = percentile(normal, 99), percentile(after, 99)
    # Twice the p99 before the kill, and never under 50 ms: p99 is the 6th slowest of ~600, which a
    # few scheduling stalls of a loaded machine can move, while requests that waited on the dead
    # Redis (its timeout is 100 ms) would be well above either.
    bound = max(2 * p99_normal + 0.005 * SCALE, scaled(0.05))
    print(f"\n/echo: {len(normal)} requests before the kill, p99 {p99_normal * 1000:.2f} ms; "
          f"{len(after)} after, p99 {p99_after * 1000:.2f} ms (bound {bound * 1000:.2f} ms); "
          f"max after {max(after) * 1000:.2f} ms")
    slowest = sorted(((lat, t0 - t_kill) for t0, lat, _, _ in records if t0 + lat >= t_kill),
                     reverse=True)[:6]
    print("slowest after the kill (ms, sent at s after the kill): "
          + ", ".join(f"{lat * 1000:.1f} @ {at:+.3f}" for lat, at in slowest))
    assert len(normal) > 100 and len(after) > 100, (len(normal), len(after))
    assert p99_after < bound, (p99_normal, p99_after)

    low_before = [(s, n) for t0, lat, s, n in low_records if t0 + lat < t_kill]
    low_after = [(s, n) for t0, lat, s, n in low_records if t0 > t_kill]
    low_statuses = collections.Counter(s for s, _ in low_before + low_after)
    assert set(low_statuses) <= {200, 429}, low_statuses
    admitted_before = sum(1 for s, _ in low_before if s == 200)
    print(f"/low before the kill: {collections.Counter(s for s, _ in low_before)}; after: "
          + ", ".join(f"instance {n}: {collections.Counter(s for s, m in low_after if m == n)}"
                      for n in range(2)))
    assert admitted_before == 5, low_before  # one counter in Redis for both instances
    for n in range(2):
        mine = [s for s, m in low_after if m == n]
        assert len(mine) >= 10, mine
        assert sum(1 for s in mine if s == 200) <= 5, f"instance {n} after the kill: {mine}"
        assert mine[-1] == 429 and mine.count(429) >= len(mine) - 5, mine

    for g in instances:
        s = store_metrics(g)
        print(f"instance {instances.index(g)} while Redis is down: {s}")
        assert s["up"] == 0, s
        assert s["fallbacks"] > 0 and s["errors"] > 0, s
        wait_component(g, "degraded")
        assert ready_status(g) == 200

    # Restart: every instance must use Redis again within 5 s (light traffic keeps flowing).
    t_restart = time.monotonic()
    server.restart()

    def all_up():
        for g in instances:
            fetch(g.port, "/echo")
        return all(store_metrics(g)["up"] == 1 for g in instances)
    assert wait_until(all_up, scaled(5), 0.1), [store_metrics(g) for g in instances]
    recovered_in = time.monotonic() - t_restart
    print(f"store_up back to 1 on both instances {recovered_in:.2f} s after the restart")

    before = [store_metrics(g) for g in instances]
    for g in instances:
        with Client(g.port) as c:
            for _ in range(10):
                assert c.get("/echo").status == 200
    for g, b in zip(instances, before):
        s = store_metrics(g)
        assert s["fallbacks"] == b["fallbacks"], (b, s)
        assert s["calls"] >= b["calls"] + 10, (b, s)
    keys = server.scan(prefix + "*")
    assert any(key_re(prefix, "ip=127.0.0.1").match(k) for k in keys), keys
    for k in keys:
        assert server.pttl(k) > 0, k
    for g in instances:
        wait_component(g, "ok")

    for n, g in enumerate(instances):
        g.wait_log("error", lambda l: RECOVERED in str(l.get("message", "")))
        down, up = store_log_lines(g, UNAVAILABLE), store_log_lines(g, RECOVERED)
        print(f"instance {n} error log: {len(down)} '{UNAVAILABLE}', {len(up)} '{RECOVERED}'")
        # Once per state change (per worker at most when each worker has its own breaker);
        # a line per failed request or per probe would be far more.
        assert 1 <= len(down) <= workers, down
        assert 1 <= len(up) <= workers, up
        lines = g.log_lines("error")
        assert lines.index(down[0]) < lines.index(up[0])


# ------------------------------------------------------------------------------ 4. SCRIPT FLUSH


def test_script_flush_is_transparent(flask_app, gatehouses, redis):
    """SCRIPT FLUSH empties the script cache: the next EVALSHA gets -NOSCRIPT, the script is
    loaded again and the decision is still made in Redis. The cache is server-wide, so once one
    instance has reloaded the script the other finds it: flush before each instance's turn."""
    prefix = "t4:"
    block = {**redis_block(redis.url(), prefix), "algorithm": "fixed_window", "key": "ip",
             "limits": "10/minute"}
    instances = [gatehouses(flask_app, rate_limit=block) for _ in range(2)]
    avoid_window_edge(scaled(8))
    got = [fetch(instances[i % 2].port, "/echo").status for i in range(4)]
    assert got == [200] * 4
    before = [store_metrics(g) for g in instances]
    got = []
    for g in instances:
        assert redis.cli("SCRIPT", "FLUSH").strip() == "OK"
        got += [fetch(g.port, "/echo").status for _ in range(3)]
    got += [fetch(instances[i % 2].port, "/echo").status for i in range(4)]
    after = [store_metrics(g) for g in instances]
    print(f"\nafter SCRIPT FLUSH: {got}\nbefore: {before}\nafter:  {after}")
    assert got == [200] * 6 + [429] * 4, got  # 10 in total, still counted in Redis
    for b, s in zip(before, after):
        assert s["fallbacks"] == 0, s
        assert s["up"] == 1, s
        assert s["script_loads"] > b["script_loads"], (b, s)
        assert s["calls"] == b["calls"] + 5, (b, s)
    keys = redis.scan(prefix + "*")
    assert keys and all(key_re(prefix, "ip=127.0.0.1").match(k) for k in keys), keys


# ------------------------------------------------------------------------------ SIGTERM


@pytest.mark.parametrize("redis_state", ["up", "killed"])
def test_sigterm_exits_promptly_with_redis_store(flask_app, gatehouses, redis_factory,
                                                 redis_state):
    """The store's connections must not hold up a drain (no client connection is open, so the
    drain has nothing to wait for) nor crash the shutdown."""
    server = redis_factory()
    gh = gatehouses(flask_app, rate_limit={**redis_block(server.url(), "t9:"),
                                           "limits": "100/minute"})
    assert [fetch(gh.port, "/echo").status for _ in range(3)] == [200] * 3
    if redis_state == "killed":
        server.kill9()
        assert [fetch(gh.port, "/echo").status for _ in range(3)] == [200] * 3
    t0 = time.monotonic()
    gh.signal(signal.SIGTERM)
    try:
        rc = gh.wait_exit(scaled(10))
    except subprocess.TimeoutExpired:
        pytest.fail(f"gatehouse still running {scaled(10)} s after SIGTERM "
                    f"(drain_timeout is {gh.config.get('drain_timeout', '30s (default)')})")
    took = time.monotonic() - t0
    print(f"\nexit code {rc} {took:.2f} s after SIGTERM")
    assert rc == 0, f"exit code {rc}"
    assert took < scaled(3), took


# ------------------------------------------------------------------------------ 5. AUTH


def run_until_exit(flask_app, workdir, rate_limit, env=None, timeout=10.0):
    """Starts `gatehouse run` on a config like the gatehouses fixture writes and waits for it to
    exit: (returncode, seconds, stdout, stderr). Fails when it is still running at `timeout`."""
    cfg = deep_merge(default_config(workdir, [flask_app.address]), {
        "listen": f"{HOST}:{free_port()}", "admin_listen": f"{HOST}:{free_port()}",
        "rate_limit": rate_limit})
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "gatehouse.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    full_env = dict(os.environ)
    full_env.update(env or {})
    t0 = time.monotonic()
    proc = subprocess.Popen([GATEHOUSE_BIN, "run", "--config", str(path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=full_env, cwd=str(workdir))
    try:
        out, err = proc.communicate(timeout=scaled(timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"gatehouse still running after {scaled(timeout)} s; stderr:\n"
                    f"{err.decode(errors='replace')[-2000:]}")
    return proc.returncode, time.monotonic() - t0, out.decode(errors="replace"), \
        err.decode(errors="replace")


def test_wrong_password_stops_start_up(flask_app, redis_factory, tmp_path):
    right, wrong = "right-pw-4f2a9c", "wrong-pw-7d1e3b"
    server = redis_factory(password=right)
    block = {**redis_block(server.url(password=wrong), "t5:"), "limits": "2/minute"}
    rc, took, out, err = run_until_exit(flask_app, tmp_path / "gh", block, timeout=10)
    print(f"\nexit code {rc} after {took:.2f} s; stderr: {err.strip()[-500:]!r}")
    assert rc not in (0, None) and rc > 0, rc
    assert took < scaled(5), took
    assert re.search(r"auth", err, re.I), err
    assert re.search(r"redis|store", err, re.I), err
    assert wrong not in err and wrong not in out, "the password is printed"
    error_log = tmp_path / "gh" / "error.log"
    if error_log.exists():
        assert wrong not in error_log.read_text(errors="replace"), "the password is logged"
    assert not server.scan("*")


@pytest.mark.parametrize("form", ["env-password", "acl-user-db3"])
def test_right_credentials(flask_app, gatehouses, redis_factory, form):
    right = "right-pw-4f2a9c"
    server = redis_factory(password=right)
    prefix = "t5:"
    if form == "env-password":
        store, env, db = f"redis://:${{REDIS_PASSWORD}}@{HOST}:{server.port}/0", \
            {"REDIS_PASSWORD": right}, 0
        secret = right
    else:
        secret = "user-pw-93b1d0"
        server.command("ACL", "SETUSER", "gh-user", "on", f">{secret}", "~*", "&*", "+@all")
        store, env, db = f"redis://gh-user:{secret}@{HOST}:{server.port}/3", None, 3
    gh = gatehouses(flask_app, env=env, rate_limit={
        **redis_block(store, prefix), "algorithm": "fixed_window", "limits": "2/minute"})
    avoid_window_edge(scaled(5))
    with Client(gh.port) as c:
        assert [c.get("/echo").status for _ in range(3)] == [200, 200, 429]
    s = store_metrics(gh)
    assert s["up"] == 1 and s["fallbacks"] == 0 and s["calls"] == 3, s
    keys = server.scan(prefix + "*", db=db)
    assert keys and all(key_re(prefix, "ip=127.0.0.1").match(k) for k in keys), keys
    if db:
        assert not server.scan("*", db=0), "keys written to database 0 instead of 3"
    assert secret not in log_text(gh), "the password is logged"


# ------------------------------------------------------------------------------ 6. silent Redis


@pytest.mark.parametrize("case", ["silent-from-start", "frozen-after-start"])
def test_unanswering_redis_times_out_then_breaker(flask_app, gatehouses, redis_factory, case):
    """A Redis that accepts connections and never answers. silent-from-start: a listener that
    never answers (SilentServer); gatehouse starts anyway, degraded. frozen-after-start: a real
    redis-server, used normally, then stopped with SIGSTOP (connections stay open, nothing is
    answered), later continued with SIGCONT. A decision never waits much longer than `timeout`,
    the local limiter decides, and once the breaker is open requests no longer wait at all."""
    timeout = scaled(0.1)  # a call that answers is never near it, even on a loaded machine
    cooldown = 1.0
    failures = 3
    silent = server = None
    if case == "silent-from-start":
        silent = SilentServer()
        store = silent.url()
    else:
        server = redis_factory()
        store = server.url()
    try:
        block = {**redis_block(store, "t6:", timeout=ms(timeout), breaker_failures=failures,
                               breaker_cooldown=f"{int(cooldown)}s"),
                 "on_store_failure": "local", "limits": "1000/minute"}
        t0 = time.monotonic()
        gh = gatehouses(flask_app, workers=1, rate_limit=block,
                        routes=[route("free", "/free", "off"), route("default", "/")])
        print(f"\n{case}: started in {time.monotonic() - t0:.2f} s")
        with Client(gh.port) as c:
            free = [c.get("/free").elapsed for _ in range(20)]
            counted = 0
            if silent is not None:
                assert silent.accepted >= 1, "gatehouse never connected to the store"
            else:
                assert [c.get("/echo").status for _ in range(3)] == [200] * 3
                counted = 3
                assert store_metrics(gh)["calls"] == counted
                server.pause()
            first = [c.get("/echo") for _ in range(10)]
            t_phase2 = time.monotonic()
            second = [c.get("/echo") for _ in range(30)]
            phase2_s = time.monotonic() - t_phase2
        for r in first + second:
            assert r.status == 200, r
        slowest = max(r.elapsed for r in first + second)
        p50_free = percentile(free, 50)
        p50_open = percentile([r.elapsed for r in second], 50)
        slow_first = [r.elapsed for r in first if r.elapsed >= 0.8 * timeout]
        slow_open = [r.elapsed for r in second if r.elapsed >= 0.8 * timeout]
        print(f"unlimited route p50 {p50_free * 1000:.2f} ms; first 10 limited requests "
              f"{[round(r.elapsed * 1000, 1) for r in first]} ms; then p50 "
              f"{p50_open * 1000:.2f} ms with {len(slow_open)} of 30 >= {0.8 * timeout * 1000:.0f} "
              f"ms over {phase2_s:.2f} s; slowest {slowest * 1000:.1f} ms")
        assert slowest < timeout + scaled(1.0), slowest
        if server is not None:
            # The breaker opens after `failures` timed-out calls, not before, not much later.
            assert 1 <= len(slow_first) <= failures, slow_first
        assert p50_open < 2 * p50_free + 0.005 * SCALE, (p50_free, p50_open)
        # Requests do not wait for Redis while the breaker is open (the probe runs in the
        # background; at most one probing request per cooldown period would be tolerated).
        assert len(slow_open) <= 1 + math.ceil(phase2_s / cooldown), slow_open

        s = store_metrics(gh)
        print(f"store metrics: {s}")
        assert s["up"] == 0, s
        assert s["timeout"] and s["timeout"] >= len(slow_first), s
        assert s["fallbacks"] == 40, s
        assert s["calls"] == counted, s
        wait_component(gh, "degraded")
        assert ready_status(gh) == 200

        if server is not None:
            t_resume = time.monotonic()
            server.resume()
            assert wait_until(lambda: store_metrics(gh)["up"] == 1, scaled(5), 0.05), \
                store_metrics(gh)
            print(f"store_up back to 1 {time.monotonic() - t_resume:.2f} s after SIGCONT")
            with Client(gh.port) as c:
                assert [c.get("/echo").status for _ in range(3)] == [200] * 3
            s2 = store_metrics(gh)
            assert s2["calls"] == counted + 3 and s2["fallbacks"] == 40, s2
            gh.wait_log("error", lambda l: RECOVERED in str(l.get("message", "")))
            assert len(store_log_lines(gh, UNAVAILABLE)) == 1
            assert len(store_log_lines(gh, RECOVERED)) == 1
        assert gh.running()
    finally:
        if silent is not None:
            silent.stop()


# ------------------------------------------------------------------------------ 7. allow / deny


@pytest.mark.parametrize("down", ["refused-at-start", "stopped-later"])
@pytest.mark.parametrize("mode", ["deny", "allow"])
def test_on_store_failure_deny_and_allow(flask_app, gatehouses, redis_factory, mode, down):
    if down == "refused-at-start":
        store = f"redis://{HOST}:{free_port()}/0"  # nothing listens there
        server = None
    else:
        server = redis_factory()
        store = server.url()
    block = {**redis_block(store, "t7:", breaker_failures=3, breaker_cooldown="1s"),
             "on_store_failure": mode, "algorithm": "fixed_window", "limits": "2/minute"}
    gh = gatehouses(flask_app, rate_limit=block,
                    routes=[route("free", "/free", "off"), route("default", "/")])
    avoid_window_edge(scaled(5))
    counted = 0
    if server is not None:
        assert fetch(gh.port, "/echo").status == 200  # counted in Redis
        assert server.scan("t7:*")
        counted = 1
        server.stop()

    got = [fetch(gh.port, "/echo") for _ in range(6)]
    print(f"\n{mode}, {down}: {[r.status for r in got]}")
    for r in got:
        if mode == "deny":
            assert_store_unavailable(r)
        else:
            assert r.status == 200, r  # even past the 2/minute limit
    assert fetch(gh.port, "/free").status == 200  # unlimited routes are not affected
    assert ready_status(gh) == 200
    s = store_metrics(gh)
    print(f"store metrics: {s}")
    assert s["up"] == 0, s
    assert s["fallbacks"] == 6, s
    assert s["calls"] == counted, s


# ------------------------------------------------------------------------------ 8. cluster


def cluster_block(cluster, prefix):
    return {**redis_block(cluster.nodes[0].url(), prefix, cluster=True),
            "algorithm": "fixed_window", "key": "header:X-API-Key", "limits": "5/minute"}


def api_key_tag(api_key):
    return f"header:X-API-Key={fingerprint(api_key)}"


def keys_of(cluster, prefix, api_key):
    """{port: [keys]} of one API key's counters."""
    tag = "{" + api_key_tag(api_key) + "}"
    found = cluster.keys_by_node(prefix + "*")
    return {port: [k for k in ks if tag in k] for port, ks in found.items() if
            any(tag in k for k in ks)}


def test_cluster_exact_per_key_across_masters(flask_app, gatehouses, cluster):
    prefix = "c1:"
    block = cluster_block(cluster, prefix)
    a, b = (gatehouses(flask_app, rate_limit=block) for _ in range(2))
    api_keys = [f"api-key-{i:02d}" for i in range(20)]
    avoid_window_edge(scaled(10))
    lock = threading.Lock()
    results, errors = collections.defaultdict(list), []

    def run(mine):
        try:
            with Client(a.port) as ca, Client(b.port) as cb:
                for key in mine:
                    for j in range(10):
                        r = (ca, cb)[j % 2].get("/echo", {"X-API-Key": key})
                        with lock:
                            results[key].append(r)
        except Exception as exc:  # noqa: BLE001
            with lock:
                errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(api_keys[i::10],)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=scaled(60))
    assert not any(t.is_alive() for t in threads) and not errors, errors
    for key in api_keys:
        statuses = collections.Counter(r.status for r in results[key])
        assert statuses == {200: 5, 429: 5}, (key, statuses)
        for r in results[key]:
            if r.status == 429:
                assert_429(r)

    by_node = cluster.keys_by_node(prefix + "*")
    print(f"\nkeys per master: { {p: len(ks) for p, ks in by_node.items()} }")
    expected_tags = {api_key_tag(k) for k in api_keys}
    seen_tags = set()
    for port, ks in by_node.items():
        for k in ks:
            m = re.match("^" + re.escape(prefix) + r"\{([^}]*)\}:[0-9a-f]{8}$", k)
            assert m, f"unexpected key {k!r}"
            seen_tags.add(m.group(1))
            assert cluster.node_for_slot(keyslot(k)).port == port
            assert cluster.node(port).pttl(k) > 0, k
    assert seen_tags == expected_tags
    assert sum(1 for ks in by_node.values() if ks) >= 2, by_node
    for g in (a, b):
        s = store_metrics(g)
        assert s["fallbacks"] == 0 and s["up"] == 1, s
    assert store_metrics(a)["calls"] + store_metrics(b)["calls"] == 200


def cluster_redirect_case(flask_app, gatehouses, cluster, prefix, api_key, migrate):
    """2 requests for api_key (one per instance), then migrate(slot, src, dst), then 5 more:
    the count goes on in Redis (3 more admitted, then 429), without any fallback. migrate()
    returns how many redirections the 5 calls must at least have followed, and whether the
    slot map must have settled afterwards (after -MOVED: no further redirection once each
    worker has refreshed its map)."""
    block = cluster_block(cluster, prefix)
    instances = [gatehouses(flask_app, rate_limit=block) for _ in range(2)]
    hdr = {"X-API-Key": api_key}
    avoid_window_edge(scaled(10))
    assert [fetch(instances[i % 2].port, "/echo", headers=hdr).status for i in range(2)] == \
        [200, 200]
    where = keys_of(cluster, prefix, api_key)
    assert len(where) == 1, where
    src_port, keys = next(iter(where.items()))
    slot = keyslot(keys[0])
    assert slot == keyslot("{" + api_key_tag(api_key) + "}")
    src = cluster.node(src_port)
    assert cluster.node_for_slot(slot).port == src_port
    dst = cluster.other_node(src)
    before = [store_metrics(g) for g in instances]

    min_redirects, settles = migrate(slot, src, dst)
    got = [fetch(instances[i % 2].port, "/echo", headers=hdr) for i in range(5)]
    after = [store_metrics(g) for g in instances]
    print(f"\nslot {slot} {src.port} -> {dst.port}: {[r.status for r in got]}\n"
          f"before: {before}\nafter:  {after}")
    assert [r.status for r in got] == [200, 200, 200, 429, 429], got
    for b, s in zip(before, after):
        assert s["fallbacks"] == b["fallbacks"] == 0, (b, s)
        assert s["up"] == 1, s
    assert sum(s["calls"] - b["calls"] for b, s in zip(before, after)) == 5
    redirects = sum(s["redirects"] - b["redirects"] for b, s in zip(before, after))
    print(f"redirections followed: {redirects}")
    assert redirects >= min_redirects, "the redirection was not exercised"
    if settles:
        workers = instances[0].config["workers"]
        got = [fetch(g.port, "/echo", headers=hdr).status for g in instances for _ in range(10)]
        assert got == [429] * 20, got
        final = [store_metrics(g) for g in instances]
        extra = sum(f["redirects"] - s["redirects"] for s, f in zip(after, final))
        print(f"redirections over 20 more calls: {extra}")
        # Without a slot-map refresh every call would be redirected again.
        assert extra <= workers * len(instances), extra
        assert all(f["fallbacks"] == 0 for f in final), final
    where = keys_of(cluster, prefix, api_key)
    assert list(where) == [dst.port], where
    return slot, src, dst


def test_cluster_moved_slot(flask_app, gatehouses, cluster):
    def migrate(slot, src, dst):
        assert cluster.move_slot(slot, src, dst) >= 1
        assert cluster.node_for_slot(slot).port == dst.port
        return 1, True  # at least the first call after the move gets -MOVED
    cluster_redirect_case(flask_app, gatehouses, cluster, "c2:", "moved-api-key", migrate)


def test_cluster_half_migrated_slot_ask(flask_app, gatehouses, cluster):
    state = {}

    def migrate(slot, src, dst):
        state.update(slot=slot, src=src, dst=dst)
        assert cluster.half_migrate_slot(slot, src, dst) >= 1
        assert cluster.migration_state(src, slot) == "migrating"
        assert cluster.migration_state(dst, slot) == "importing"
        assert cluster.node_for_slot(slot).port == src.port  # src still owns it: -ASK
        return 5, False  # every call gets -ASK (an ASK redirection is not cached)
    try:
        cluster_redirect_case(flask_app, gatehouses, cluster, "c3:", "ask-api-key", migrate)
    finally:
        if state:
            cluster.finish_migration(state["slot"], state["src"], state["dst"])
