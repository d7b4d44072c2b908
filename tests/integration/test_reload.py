"""Configuration reload (issue 15, item 1): SIGHUP, POST /admin/reload and `gatehouse reload`.

What an operator relies on: rate-limit counters and bans survive for every rule whose definition
did not change, a changed rule starts fresh, a bad file changes nothing and says where it is wrong,
restart-only keys are refused by name, upstream pools stay open, and traffic flowing during a
reload sees no failed request and no closed connection.
"""
import http.client
import json
import signal
import subprocess
import threading
import time

from conftest import GATEHOUSE_BIN, HOST, deep_merge, http_request, scaled, to_yaml, wait_until

TRUST = ["127.0.0.1"]


def route(name, prefix, rate_limit=None, upstream="app"):
    r = {"name": name, "match": {"path_prefix": prefix}, "upstream": upstream}
    if rate_limit is not None:
        r["rate_limit"] = rate_limit
    return r


def rewrite(gh, **changes):
    """Writes gh's config file again with `changes` merged in (the running process is untouched)."""
    gh.config = deep_merge(gh.config, changes)
    gh.config_path.write_text(to_yaml(gh.config) + "\n")


def post_reload(gh):
    status, _, body = http_request(gh.admin_port, "POST", "/admin/reload", timeout=10)
    return status, json.loads(body)


def cli_reload(gh):
    return subprocess.run([GATEHOUSE_BIN, "reload", "--admin", f"{HOST}:{gh.admin_port}"],
                          capture_output=True, text=True, timeout=scaled(10))


def get(port, path, xff=None, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection(HOST, port, timeout=scaled(10))
    try:
        conn.request("GET", path, headers={"X-Forwarded-For": xff} if xff else {})
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        if own:
            conn.close()


def statuses(port, path, n, xff):
    conn = http.client.HTTPConnection(HOST, port, timeout=scaled(10))
    try:
        return [get(port, path, xff, conn)[0] for _ in range(n)]
    finally:
        conn.close()


def keep_alive_client(port, stop, limit, send):
    """Requests on one keep-alive connection until `stop` is set or `limit` were sent:
    `send(conn, n)` makes the n-th and returns what to record. Returns (the local ports the
    connection used, the records, the errors): one port means it was never closed."""
    conn = http.client.HTTPConnection(HOST, port, timeout=scaled(10))
    ports, records, errors = set(), [], []
    n = 0
    while not stop.is_set() and n < limit:
        try:
            records.append(send(conn, n))
            ports.add(conn.sock.getsockname()[1])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        n += 1
    conn.close()
    return ports, records, errors


def limited_config():
    return dict(trusted_proxies=TRUST,
                routes=[route("api", "/api", {"limits": "100/hour"}),
                        route("other", "/other", {"limits": "5/hour"}),
                        route("default", "/")])


def test_unchanged_rule_keeps_its_count_changed_rule_starts_fresh(flask_app, gatehouses):
    gh = gatehouses(flask_app, **limited_config())
    client = "198.51.100.10"
    assert statuses(gh.port, "/api/x", 90, client) == [200] * 90

    # Another route's limit changes; "api" does not: its 90 stay counted.
    rewrite(gh, routes=[route("api", "/api", {"limits": "100/hour"}),
                        route("other", "/other", {"limits": "7/hour"}), route("default", "/")])
    status, answer = post_reload(gh)
    assert status == 200, answer
    assert answer["ok"] is True and answer["generation"] == 2
    rules = answer["changes"]["rate_limit_rules"]
    assert rules["kept"] == ["route:api#0"] and rules["changed"] == ["route:other#0"]
    assert answer["changes"]["routes"]["kept"] == ["api", "default"]
    assert answer["changes"]["routes"]["changed"] == ["other"]
    assert statuses(gh.port, "/api/x", 11, client) == [200] * 10 + [429]
    line = gh.wait_log("error", lambda l: l.get("message") == "configuration reloaded")
    assert line["generation"] == 2 and line["changes"]["rate_limit_rules"] == rules

    # The rule itself changes: its counters start fresh.
    rewrite(gh, routes=[route("api", "/api", {"limits": "120/hour"}),
                        route("other", "/other", {"limits": "7/hour"}), route("default", "/")])
    status, answer = post_reload(gh)
    assert status == 200 and answer["generation"] == 3
    assert answer["changes"]["rate_limit_rules"]["changed"] == ["route:api#0"]
    status, headers = get(gh.port, "/api/x", client)
    assert status == 200 and headers["x-ratelimit-remaining"] == "119", headers
    m = gh.metrics()
    assert m.value("gatehouse_config_generation") == 3
    assert m.value("gatehouse_config_reloads_total", result="ok") == 2
    assert m.value("gatehouse_config_reloads_total", result="error") == 0


def test_bad_file_changes_nothing_and_names_file_line_key(flask_app, gatehouses):
    gh = gatehouses(flask_app, **limited_config())
    client = "198.51.100.11"
    assert statuses(gh.port, "/other", 6, client) == [200] * 5 + [429]
    good = gh.config_path.read_text()
    rewrite(gh, routes=[route("api", "/api", {"limits": "100/hour"}),
                        route("other", "/other", {"limits": "five/hour"}), route("default", "/")])
    bad = gh.config_path.read_text()
    bad_line = next(i for i, l in enumerate(bad.splitlines(), 1) if "five/hour" in l)

    r = cli_reload(gh)
    assert r.returncode != 0
    answer = json.loads(r.stdout)
    assert answer["ok"] is False and answer["generation"] == 1
    assert answer["file"] == str(gh.config_path) and answer["line"] == bad_line
    assert answer["key"] == "routes[1].rate_limit.limits", answer
    assert f"{gh.config_path}:{bad_line}:" in answer["error"]
    status, answer2 = post_reload(gh)
    assert status == 422 and answer2["key"] == answer["key"]
    line = gh.wait_log("error", lambda l: l.get("message") == "configuration reload failed")
    assert line["level"] == "error" and line["line"] == bad_line and line["key"] == answer["key"]

    # Nothing changed: the limit and its count hold, the generation too.
    assert get(gh.port, "/other", client)[0] == 429
    assert get(gh.port, "/api/x", client)[0] == 200
    m = gh.metrics()
    assert m.value("gatehouse_config_generation") == 1
    assert m.value("gatehouse_config_reloads_total", result="error") == 2
    assert m.value("gatehouse_config_last_reload_success") == 0
    _, _, body = http_request(gh.admin_port, "GET", "/health/detailed", timeout=5)
    cfg = json.loads(body)["config"]
    assert cfg["generation"] == 1 and cfg["last_reload"]["result"] == "error"
    assert "five/hour" in cfg["last_reload"]["error"]

    # Fixed: the reload goes through.
    gh.config_path.write_text(good)
    r = cli_reload(gh)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["generation"] == 2


def test_restart_only_keys_are_refused_by_name(flask_app, gatehouses):
    gh = gatehouses(flask_app, **limited_config())
    cases = [
        ({"listen": f"{HOST}:1"}, "listen: changing it needs a restart"),
        ({"workers": 3}, "workers: changing it needs a restart"),
        # The response cache's store and the Sentry reporter are built once, at start-up.
        ({"cache": {"max_memory": "256MiB"}}, "cache (a route caches now): changing it needs"),
        ({"errors": {"sentry": {"dsn": "http://key@127.0.0.1:9/1"}}},
         "errors.sentry: changing it needs a restart"),
    ]
    original = dict(gh.config)
    for change, message in cases:
        gh.config = dict(original)
        rewrite(gh, **change)
        status, answer = post_reload(gh)
        assert status == 409, answer
        assert answer["error"].startswith(message), answer
    assert gh.metrics().value("gatehouse_config_generation") == 1
    assert get(gh.port, "/api/x")[0] == 200


def settled(gh, check):
    """The metrics once `check(metrics)` holds (a request is counted just after its reply)."""
    seen = {}

    def ok():
        seen["m"] = gh.metrics()
        return check(seen["m"])

    assert wait_until(ok, scaled(5)), seen["m"].samples
    return seen["m"]


def route_requests(m, name):
    return m.value("gatehouse_requests_total", route=name, status_class="2xx")


def test_routes_added_renamed_reordered_and_removed(flask_app, gatehouses):
    gh = gatehouses(flask_app, **limited_config())
    client = "198.51.100.20"
    assert statuses(gh.port, "/api/x", 90, client) == [200] * 90
    assert statuses(gh.port, "/other", 2, client) == [200] * 2
    assert gh.metrics().get("gatehouse_requests_total", route="fresh", status_class="2xx") is None

    # One reload adds "fresh" in front, moves "api" down, renames "other" to "misc".
    rewrite(gh, routes=[route("fresh", "/fresh"), route("api", "/api", {"limits": "100/hour"}),
                        route("misc", "/other", {"limits": "5/hour"}), route("default", "/")])
    status, answer = post_reload(gh)
    assert status == 200, answer
    routes = answer["changes"]["routes"]
    assert routes["added"] == ["fresh", "misc"] and routes["removed"] == ["other"]
    assert routes["kept"] == ["api", "default"]
    # The unchanged rule kept its 90 through the reordering; the renamed one starts fresh.
    assert statuses(gh.port, "/api/x", 11, client) == [200] * 10 + [429]
    assert statuses(gh.port, "/other", 5, client) == [200] * 5
    assert get(gh.port, "/fresh/page", client)[0] == 200
    # A request is counted as it completes, just after its last byte is sent.
    m = settled(gh, lambda m: route_requests(m, "fresh") == 1)
    assert route_requests(m, "misc") == 5
    assert route_requests(m, "api") == 100  # the same series across the reload
    assert route_requests(m, "other") == 2  # removed: stays exported, never goes back
    assert m.value("gatehouse_requests_total", route="api", status_class="4xx") == 1

    # "fresh" removed: its path falls to the catch-all; its series stays where it was.
    rewrite(gh, routes=[route("api", "/api", {"limits": "100/hour"}),
                        route("misc", "/other", {"limits": "5/hour"}), route("default", "/")])
    status, answer = post_reload(gh)
    assert status == 200 and answer["changes"]["routes"]["removed"] == ["fresh"], answer
    before = route_requests(gh.metrics(), "default")
    assert get(gh.port, "/fresh/page", client)[0] == 200
    m = settled(gh, lambda m: route_requests(m, "default") == before + 1)
    assert route_requests(m, "fresh") == 1
    # A name that comes back finds its series again.
    rewrite(gh, routes=[route("api", "/api", {"limits": "100/hour"}), route("fresh", "/fresh"),
                        route("default", "/")])
    assert post_reload(gh)[0] == 200
    assert get(gh.port, "/fresh/page", client)[0] == 200
    settled(gh, lambda m: route_requests(m, "fresh") == 2)
    # The dashboard lists the running routes, in file order.
    _, _, body = http_request(gh.admin_port, "GET", "/dashboard.json", timeout=5)
    names = [r["name"] for r in json.loads(body)["routes"]]
    assert [n for n in names if n != "(no route)"] == ["api", "fresh", "default"]  # /health


def dashboard(gh):
    _, _, body = http_request(gh.admin_port, "GET", "/dashboard.json", timeout=5)
    return json.loads(body)


def test_dashboard_refusals_and_top_keys_survive_a_reload(flask_app, gatehouses):
    gh = gatehouses(flask_app, **limited_config())
    client = "198.51.100.30"
    assert statuses(gh.port, "/other", 8, client) == [200] * 5 + [429] * 3

    def seen():
        d = dashboard(gh)
        other = next(r for r in d["routes"] if r["name"] == "other")
        keys = {k["key"]: k["count"] for k in d["rate_limit"]["top_keys"]}
        return other["rejected_total"], keys.get(f"ip={client}"), d["rate_limit"]["rejected_total"]

    assert seen() == (3, 3, 3)
    # "api" changes, "other" does not (and moves): its refusals and the top keys stay.
    rewrite(gh, routes=[route("default2", "/zzz"), route("other", "/other", {"limits": "5/hour"}),
                        route("api", "/api", {"limits": "50/hour"}), route("default", "/")])
    status, answer = post_reload(gh)
    assert status == 200, answer
    assert answer["changes"]["rate_limit_rules"]["kept"] == ["route:other#0"]
    assert seen() == (3, 3, 3)
    m = gh.metrics()
    assert m.value("gatehouse_ratelimit_decisions_total", route="other", limit="5/hour", key="ip",
                   result="rejected") == 3
    assert get(gh.port, "/other", client)[0] == 429
    assert seen() == (4, 4, 4)


def test_ban_survives_a_reload_and_sighup_reloads(flask_app, gatehouses):
    gh = gatehouses(flask_app, trusted_proxies=TRUST,
                    rate_limit={"algorithm": "fixed_window", "limits": "2/minute",
                                "ban": {"after": 2, "within": "1m", "for": "60s"}},
                    routes=[route("api", "/api"), route("default", "/", "off")])
    client = "198.51.100.12"
    assert statuses(gh.port, "/api/x", 5, client) == [200, 200, 429, 429, 403]
    # SIGHUP with a changed top-level limit (the ban rule is not a counter: bans stay).
    rewrite(gh, rate_limit={"limits": "3/minute"})
    gh.signal(signal.SIGHUP)
    line = gh.wait_log("error", lambda l: l.get("message") == "configuration reloaded")
    assert line["trigger"] == "sighup" and line["generation"] == 2
    assert line["changes"]["rate_limit_rules"]["changed"] == ["defaults"]
    assert get(gh.port, "/api/x", client)[0] == 403
    # Another client sees the new rule.
    assert statuses(gh.port, "/api/x", 4, "198.51.100.13") == [200, 200, 200, 429]


def test_turning_limits_on_with_an_unstarted_redis_store_is_refused(flask_app, gatehouses):
    # No route is limited at start, so the Redis store is never started (nothing listens there).
    gh = gatehouses(flask_app, trusted_proxies=TRUST,
                    rate_limit={"store": "redis://127.0.0.1:1", "limits": "2/minute"},
                    routes=[route("api", "/api", "off"), route("default", "/", "off")])
    client = "198.51.100.40"
    assert statuses(gh.port, "/api/x", 3, client) == [200] * 3
    rewrite(gh, routes=[route("api", "/api"), route("default", "/", "off")])
    status, answer = post_reload(gh)
    assert status == 409, answer
    assert answer["error"].startswith("rate_limit.store: rate limiting was off at start-up"), answer
    # Nothing changed: no limit, and certainly none counted in memory.
    assert statuses(gh.port, "/api/x", 3, client) == [200] * 3
    assert gh.metrics().value("gatehouse_config_generation") == 1


def test_turning_limits_on_by_reload_counts_and_reports_the_store(flask_app, gatehouses):
    gh = gatehouses(flask_app, trusted_proxies=TRUST, rate_limit={"limits": "2/minute"},
                    routes=[route("api", "/api", "off"), route("default", "/", "off")])
    components = lambda: json.loads(  # noqa: E731
        http_request(gh.admin_port, "GET", "/health/detailed", timeout=5)[2])["components"]
    assert "rate_limit" not in components()
    rewrite(gh, routes=[route("api", "/api"), route("default", "/", "off")])
    assert post_reload(gh)[0] == 200
    assert statuses(gh.port, "/api/x", 3, "198.51.100.41") == [200, 200, 429]
    report = components()["rate_limit"]
    assert report["store"] == "memory" and report["keys"] >= 1, report


def request_in_flight(port, path):
    """A GET sent before this returns (so a reload that follows finds it in flight), its answer
    read on a thread: (thread, result), result["status"] once the thread ends."""
    conn = http.client.HTTPConnection(HOST, port, timeout=scaled(10))
    conn.request("GET", path)
    result = {}

    def read():
        try:
            result["status"] = conn.getresponse().status
        finally:
            conn.close()

    t = threading.Thread(target=read)
    t.start()
    time.sleep(0.3)  # and gatehouse has read it
    return t, result


def upstream_connections(upstream_port):
    """Local ports of the established connections to the upstream (gatehouse's pool)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "dst", f"{HOST}:{upstream_port}"],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[-2] for line in out.splitlines() if line.strip()}


def test_unchanged_upstream_keeps_its_pooled_connections(apps, gatehouses):
    app = apps.uvicorn()
    gh = gatehouses(app, workers=1, routes=[route("default", "/", {"limits": "1000/hour"})])
    assert statuses(gh.port, "/echo", 5, None) == [200] * 5
    before = upstream_connections(app.port)
    assert before, "no pooled connection to the upstream"
    rewrite(gh, routes=[route("default", "/", {"limits": "2000/hour"})])
    status, answer = post_reload(gh)
    assert status == 200, answer
    assert answer["changes"]["upstreams"]["kept"] == ["app"]
    assert statuses(gh.port, "/echo", 5, None) == [200] * 5
    assert upstream_connections(app.port) == before


def test_changed_upstream_gets_a_new_cluster_unchanged_one_keeps_its_pool(flask_app, apps,
                                                                          gatehouses):
    other = apps.uvicorn()
    gh = gatehouses(flask_app, workers=1,
                    upstreams={"app": {"timeout": "5s"},
                               "other": {"targets": [other.address]}},
                    routes=[route("other", "/other", upstream="other"), route("default", "/")])
    assert statuses(gh.port, "/other/echo", 3, None) == [200] * 3
    kept = upstream_connections(other.port)
    assert kept, "no pooled connection to the other upstream"
    # In flight across the reload: keeps its 5 s and its cluster.
    t, result = request_in_flight(gh.port, "/slow?s=1")
    rewrite(gh, upstreams={"app": {"timeout": "300ms", "retry": {"attempts": 1}}})
    status, answer = post_reload(gh)
    assert status == 200, answer
    assert answer["changes"]["upstreams"]["changed"] == ["app"], answer
    assert answer["changes"]["upstreams"]["kept"] == ["other"], answer
    assert get(gh.port, "/slow?s=1")[0] == 504  # the new timeout
    t.join(scaled(10))
    assert result["status"] == 200
    assert statuses(gh.port, "/other/echo", 3, None) == [200] * 3
    assert upstream_connections(other.port) == kept

    # "other" changes: its new cluster opens new connections, the old one's idle connections are
    # closed with it, and the pool gauge counts only those really open.
    rewrite(gh, upstreams={"other": {"keepalive_timeout": "20s"}})
    status, answer = post_reload(gh)
    assert status == 200 and answer["changes"]["upstreams"]["changed"] == ["other"], answer
    assert statuses(gh.port, "/other/echo", 3, None) == [200] * 3
    assert wait_until(lambda: upstream_connections(other.port).isdisjoint(kept), scaled(5))
    settled(gh, lambda m: m.value("gatehouse_upstream_pool_idle_connections", upstream="other")
            == len(upstream_connections(other.port)) > 0)

    # New targets: a unit of its own (target health, checks, series); requests go there.
    rewrite(gh, upstreams={"app": {"targets": [other.address]}})
    status, answer = post_reload(gh)
    assert status == 200 and answer["changes"]["upstreams"]["changed"] == ["app"], answer
    assert json.loads(http_request(gh.port, "GET", "/echo")[2])["server"] == "asgi"


def upstream_tries(m, upstream):
    """Tries sent to `upstream`'s targets (every target label summed)."""
    return sum(v for (name, labels), v in m.with_name("gatehouse_upstream_target_requests_total")
               .items() if dict(labels).get("upstream") == upstream)


def health_components(gh):
    status, _, body = http_request(gh.admin_port, "GET", "/health/detailed", timeout=5)
    assert status in (200, 503), body
    return json.loads(body)["components"]


def test_upstream_removed_reordered_and_put_back(apps, gatehouses):
    app, other = apps.uvicorn(), apps.uvicorn()
    gh = gatehouses(app, workers=1,
                    upstreams={"other": {"targets": [other.address]}},
                    routes=[route("other", "/other", upstream="other"), route("default", "/")])
    startup = json.loads(json.dumps(gh.config))
    assert statuses(gh.port, "/other/echo", 3, None) == [200] * 3
    assert statuses(gh.port, "/echo", 3, None) == [200] * 3
    kept = upstream_connections(app.port)
    assert kept, "no pooled connection to app"
    served = upstream_tries(settled(gh, lambda m: upstream_tries(m, "other") >= 3), "other")
    assert "upstream:other" in health_components(gh)

    # Left out with its route: no longer in the health report or probed, its series stay.
    gh.config = json.loads(json.dumps(startup))
    del gh.config["upstreams"]["other"]
    gh.config["routes"] = [route("default", "/")]
    gh.config_path.write_text(to_yaml(gh.config) + "\n")
    status, answer = post_reload(gh)
    assert status == 200, answer
    assert answer["changes"]["upstreams"]["removed"] == ["other"], answer
    assert "upstream:other" not in health_components(gh)
    assert "upstream:app" in health_components(gh)
    assert statuses(gh.port, "/echo", 3, None) == [200] * 3
    assert upstream_tries(gh.metrics(), "other") == served
    assert upstream_connections(app.port) == kept  # app is unchanged: its pool stays

    # Put back, before app this time (routes index upstreams by the new order): it serves, its
    # series continue, and app still keeps its pool.
    gh.config = json.loads(json.dumps(startup))
    gh.config["upstreams"] = {"other": startup["upstreams"]["other"],
                              "app": startup["upstreams"]["app"]}
    gh.config_path.write_text(to_yaml(gh.config) + "\n")
    status, answer = post_reload(gh)
    assert status == 200, answer
    assert answer["changes"]["upstreams"]["added"] == ["other"], answer
    assert statuses(gh.port, "/other/echo", 3, None) == [200] * 3
    assert statuses(gh.port, "/echo", 3, None) == [200] * 3
    assert "upstream:other" in health_components(gh)
    settled(gh, lambda m: upstream_tries(m, "other") == served + 3
            and upstream_tries(m, "app") >= 9)
    assert upstream_connections(app.port) == kept


def upstream_targets(gh, name):
    """The targets of `name` in /health/detailed, by address."""
    return {t["address"]: t for t in health_components(gh)[f"upstream:{name}"]["targets"]}


def test_upstreams_added_and_retargeted_under_load_keep_state_by_definition(apps, gatehouses):
    a, b = apps.flask("a"), apps.uvicorn("b")
    # An ejection is counted on its target for good: state to see survive.
    outlier = {"consecutive_5xx": 2, "eject_for": "1s", "max_ejected": "100%"}
    gh = gatehouses(a, workers=1, upstreams={"app": {"outlier": outlier}},
                    routes=[route("default", "/")])
    startup = json.loads(json.dumps(gh.config))
    assert [get(gh.port, "/status/500")[0] for _ in range(2)] == [500, 500]
    assert upstream_targets(gh, "app")[a.address]["ejections"] == 1
    assert wait_until(lambda: upstream_targets(gh, "app")[a.address]["state"] == "healthy",
                      scaled(5))

    stop = threading.Event()
    results = []
    lock = threading.Lock()

    def server(conn, _):
        conn.request("GET", "/echo")
        resp = conn.getresponse()
        body = resp.read()
        return json.loads(body)["server"] if resp.status == 200 else resp.status

    def client():
        result = keep_alive_client(gh.port, stop, 3000, server)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        # Added: an upstream the process did not start with, health-checked from now on.
        gh.config = json.loads(json.dumps(startup))
        gh.config["upstreams"]["more"] = {
            "targets": [b.address],
            "health_check": {"path": "/echo", "interval": "200ms", "timeout": "200ms"}}
        gh.config["routes"] = [route("more", "/more", upstream="more"), route("default", "/")]
        gh.config_path.write_text(to_yaml(gh.config) + "\n")
        status, answer = post_reload(gh)
        assert status == 200, answer
        assert answer["changes"]["upstreams"]["added"] == ["more"], answer
        assert json.loads(http_request(gh.port, "GET", "/more/x")[2])["server"] == "b"
        assert wait_until(lambda: upstream_targets(gh, "more")[b.address]["last_check"],
                          scaled(5)), "the added upstream is never health-checked"

        # Re-targeted: app's new definition gets a unit of its own; traffic moves to b.
        gh.config["upstreams"]["app"] = {"targets": [b.address], "outlier": outlier}
        gh.config_path.write_text(to_yaml(gh.config) + "\n")
        status, answer = post_reload(gh)
        assert status == 200 and answer["changes"]["upstreams"]["changed"] == ["app"], answer
        assert json.loads(http_request(gh.port, "GET", "/echo")[2])["server"] == "b"
        assert list(upstream_targets(gh, "app")) == [b.address]
        assert upstream_targets(gh, "app")[b.address]["ejections"] == 0
        time.sleep(0.3)

        # Put back: the first definition finds its unit, with the state it had.
        gh.config["upstreams"]["app"] = startup["upstreams"]["app"]
        gh.config_path.write_text(to_yaml(gh.config) + "\n")
        status, answer = post_reload(gh)
        assert status == 200, answer
        assert json.loads(http_request(gh.port, "GET", "/echo")[2])["server"] == "a"
        assert list(upstream_targets(gh, "app")) == [a.address]
        assert upstream_targets(gh, "app")[a.address]["ejections"] == 1
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(scaled(30))
    assert len(results) == 3
    seen = set()
    for ports, servers, errors in results:
        assert errors == []
        assert len(ports) == 1, "a client connection was closed and reopened"
        assert set(servers) <= {"a", "b"}, set(servers)
        seen |= set(servers)
    assert seen == {"a", "b"}

    # One series per name and label set (Metrics would refuse a duplicate), with the tries of
    # both definitions of app under its name, and only the served unit's target gauges.
    m = gh.metrics()
    targets = {dict(labels)["target"] for (_, labels), _ in
               m.with_name("gatehouse_upstream_target_requests_total").items()
               if dict(labels)["upstream"] == "app"}
    assert targets == {a.address, b.address}
    up = {(dict(labels)["upstream"], dict(labels)["target"]) for (_, labels), _ in
          m.with_name("gatehouse_upstream_target_up").items()}
    assert up == {("app", a.address), ("more", b.address)}
    assert m.value("gatehouse_upstream_ejections_total", upstream="app", target=a.address) == 1
    assert m.value("gatehouse_config_generation") == 4

    # A new definition whose name does not resolve changes nothing.
    gh.config["upstreams"]["ghost"] = {"targets": ["no-such-host.invalid:80"]}
    gh.config_path.write_text(to_yaml(gh.config) + "\n")
    status, answer = post_reload(gh)
    assert status == 409, answer
    assert answer["error"].startswith("upstreams.ghost"), answer
    assert gh.metrics().value("gatehouse_config_generation") == 4
    assert json.loads(http_request(gh.port, "GET", "/echo")[2])["server"] == "a"


def test_reload_under_load_fails_no_request_and_closes_no_connection(apps, gatehouses):
    app = apps.uvicorn()
    gh = gatehouses(app, trusted_proxies=TRUST,
                    routes=[route("api", "/api", {"limits": "100000/hour"}), route("default", "/")])
    stop = threading.Event()
    results = []
    lock = threading.Lock()

    def client(i):
        result = keep_alive_client(
            gh.port, stop, 1500,
            lambda conn, n: get(gh.port, "/api/x" if n % 2 else "/echo", f"203.0.113.{i}", conn)[0])
        with lock:
            results.append(result)

    slow = {}

    def slow_request():  # in flight across the reloads: finishes on its generation
        slow["status"] = get(gh.port, "/slow?s=1")[0]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=slow_request))
    for t in threads:
        t.start()
    limits = ["100000/hour", "90000/hour"]
    for k in range(6):
        time.sleep(0.15)
        # Each reload also changes the upstream: its pools are replaced under load.
        rewrite(gh, routes=[route("api", "/api", {"limits": limits[k % 2]}),
                            route("default", "/")],
                upstreams={"app": {"timeout": f"{59 - k}s"}})
        status, answer = post_reload(gh)
        assert status == 200, answer
        assert answer["changes"]["upstreams"]["changed"] == ["app"], answer
    stop.set()
    for t in threads:
        t.join(scaled(30))
    assert slow.get("status") == 200
    assert len(results) == 4
    total = 0
    for ports, codes, errors in results:
        assert errors == []
        assert set(codes) == {200}
        assert len(ports) == 1, "a client connection was closed and reopened"
        total += len(codes)
    assert total >= 100, total  # across the ~1 s of reloads (a few hundred on an idle machine)
    assert gh.metrics().value("gatehouse_config_generation") == 7


def test_request_in_flight_finishes_on_its_generation(flask_app, gatehouses):
    gh = gatehouses(flask_app, routes=[{**route("slow", "/slow"), "timeout": "5s"},
                                       route("default", "/")])
    t, result = request_in_flight(gh.port, "/slow?s=1")
    rewrite(gh, routes=[{**route("slow", "/slow"), "timeout": "200ms"}, route("default", "/")])
    status, answer = post_reload(gh)
    assert status == 200 and answer["changes"]["routes"]["changed"] == ["slow"], answer
    # A new request gets the new deadline; the one in flight keeps its 5 s.
    assert get(gh.port, "/slow?s=1")[0] == 504
    t.join(scaled(10))
    assert result["status"] == 200
