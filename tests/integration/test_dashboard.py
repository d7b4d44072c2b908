"""The admin dashboard (issue 15 item 6): GET /dashboard (the page) and GET /dashboard.json (what it
polls), on the admin listener only. Under real load from a few client threads the numbers move:
requests per second on the loaded route, 429s and the refused key (hashed like the logs), a ban,
an unreachable target. The page itself in headless Chromium is test_dashboard_browser.py.
"""
import base64
import hashlib
import hmac
import json
import re
import time

import pytest

from conftest import HOST, KeepAliveLoad as Load, free_port, http_request, scaled, wait_until

TRUST = ["127.0.0.1"]
LOG_KEY = "dashboard-integration-log-key"


def hashed_ip(ip):
    return hmac.new(LOG_KEY.encode(), ip.encode(), hashlib.sha256).hexdigest()[:32]


def dashboard(gh):
    status, headers, body = http_request(gh.admin_port, "GET", "/dashboard.json", timeout=5)
    assert status == 200, body
    assert headers["content-type"].startswith("application/json"), headers
    assert headers["cache-control"] == "no-store", headers
    return json.loads(body)


def route_of(d, name):
    rows = [r for r in d["routes"] if r["name"] == name]
    assert rows, f"no route {name!r} in {d['routes']}"
    return rows[0]


@pytest.fixture
def gh(flask_app, gatehouses):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: the target shows unreachable
    return gatehouses(
        flask_app, workers=2, trusted_proxies=TRUST, env={"GATEHOUSE_LOG_KEY": LOG_KEY},
        log={"hash_client_ip": True},
        upstreams={"app": {"targets": [flask_app.address]},
                   "gone": {"targets": [dead], "connect_timeout": "1s"}},
        routes=[
            {"name": "api", "match": {"path_prefix": "/api"}, "upstream": "app",
             "rate_limit": {"limits": "5/minute",
                            "ban": {"after": 20, "within": "1m", "for": "10m"}}},
            {"name": "gone", "match": {"path_prefix": "/gone"}, "upstream": "gone",
             "rate_limit": "off"},
            {"name": "default", "match": {"path_prefix": "/"}, "upstream": "app",
             "rate_limit": "off"},
        ])


def test_page_is_on_the_admin_listener_with_a_strict_policy(gh):
    status, headers, body = http_request(gh.admin_port, "GET", "/dashboard")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    csp = headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp, csp
    # The inline script and style run because their hashes are listed, and nothing else would.
    html = body.decode()
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(scripts) == 1 and len(styles) == 1
    sha = lambda s: "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
    assert directives["script-src"] == sha(scripts[0])
    assert directives["style-src"] == sha(styles[0])
    # Self-contained: nothing fetched from elsewhere.
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "external resource in the page"
    assert "innerHTML" not in html
    # HEAD answers the same headers with no body.
    status, headers, body = http_request(gh.admin_port, "HEAD", "/dashboard")
    assert status == 200 and body == b""
    assert int(headers["content-length"]) > 1000


def test_not_on_the_public_listener(gh):
    for path in ("/dashboard", "/dashboard.json"):
        status, headers, body = http_request(gh.port, "GET", path)
        # The public listener proxies the path to the app like any other.
        assert b"gatehouse dashboard" not in body
        assert b"rate_limit" not in body
        assert "content-security-policy" not in headers or "sha256" not in headers[
            "content-security-policy"]


def test_only_get(gh):
    status, _, _ = http_request(gh.admin_port, "POST", "/dashboard.json")
    assert status == 405


def test_numbers_move_under_load(gh, flask_app):
    d0 = dashboard(gh)
    assert d0["version"]
    assert d0["config"] == {"generation": 1, "last_reload": None}
    assert d0["workers"] == 2
    assert route_of(d0, "default")["rps"] == 0

    with Load(gh.port, "/hello", threads=3) as load:
        # Rates are measured between polls; poll once a second as the page does.
        seen = []

        def busy():
            d = dashboard(gh)
            seen.append(d)
            # A poll right after the previous one measures over those few milliseconds (no
            # older snapshot yet): wait for one measured over a real window.
            return (
                route_of(d, "default")["rps"] > 0
                and d["total"]["rps"] > 0
                and d["interval_s"] > 0.2
            )

        assert wait_until(busy, scaled(10), interval=1.0), seen[-1:]
    d = seen[-1]
    row = route_of(d, "default")
    assert row["classes"]["2xx"] > 0 or row["classes"]["4xx"] > 0  # the app's answer for /hello
    assert row["p50_ms"] is not None and row["p99_ms"] is not None
    assert 0 < row["p50_ms"] <= row["p99_ms"] < 10_000
    assert 0.2 < d["interval_s"] < scaled(5)
    assert row["requests_total"] >= len(load.statuses) * 0.5
    assert route_of(d, "api")["rps"] == 0  # no traffic there

    # Load stopped: the rate falls back to 0 while the totals stay.
    def idle():
        time.sleep(0.6)
        return route_of(dashboard(gh), "default")["rps"] == 0

    assert wait_until(idle, scaled(10), interval=0.5)
    assert route_of(dashboard(gh), "default")["requests_total"] >= row["requests_total"]


def test_rate_limit_refusals_top_keys_and_bans(gh):
    attacker, bystander = "198.51.100.7", "198.51.100.8"
    with Load(gh.port, "/api/generate", threads=2, xff=attacker) as load:
        # 5 allowed, then 429s; the 20th refusal starts a ban, and 403s follow.
        ok = wait_until(lambda: sum(s in (429, 403) for s in load.statuses) >= 30, scaled(10))
    assert ok, f"statuses: {sorted(set(load.statuses))}"
    assert load.statuses.count(429) >= 20 and 403 in load.statuses
    for _ in range(6):
        http_request(gh.port, "GET", "/api/generate", headers={"X-Forwarded-For": bystander})

    d = dashboard(gh)
    api = route_of(d, "api")
    assert api["rejected_total"] >= 30
    assert d["rate_limit"]["rejected_total"] >= api["rejected_total"]
    keys = {k["key"]: k["count"] for k in d["rate_limit"]["top_keys"]}
    # Hashed like the logs' client IPs: the raw address appears nowhere.
    assert f"ip={hashed_ip(attacker)}" in keys, keys
    assert keys[f"ip={hashed_ip(attacker)}"] >= 30
    assert keys.get(f"ip={hashed_ip(bystander)}") == 1
    ordered = [k["key"] for k in d["rate_limit"]["top_keys"]]
    assert ordered[0] == f"ip={hashed_ip(attacker)}"
    body = json.dumps(d)
    assert attacker not in body and bystander not in body

    # 20 rejections within a minute started a ban of the attacker.
    bans = d["rate_limit"]["bans"]
    assert bans["count"] == 1, bans
    assert bans["entries"][0]["key"] == f"ip={hashed_ip(attacker)}"
    assert bans["entries"][0]["reason"].startswith("route=api")
    assert 0 < bans["entries"][0]["expires_in"] <= 600

    # While refusals go on, the refusal rate shows on the route.
    with Load(gh.port, "/api/generate", threads=2, xff=attacker):
        def refusing():
            d = dashboard(gh)
            return route_of(d, "api")["rejected_ps"] > 0 and d["rate_limit"]["rejected_ps"] > 0

        assert wait_until(refusing, scaled(10), interval=1.0)


def test_upstreams_store_and_logs(gh):
    status, _, _ = http_request(gh.port, "GET", "/gone/x")
    assert status in (502, 503)

    def unreachable():
        d = dashboard(gh)
        ups = {u["name"]: u for u in d["upstreams"]}
        return ups["gone"]["targets"][0]["state"] in ("unreachable", "unhealthy", "ejected")

    assert wait_until(unreachable, scaled(10), interval=0.5)
    d = dashboard(gh)
    ups = {u["name"]: u for u in d["upstreams"]}
    assert set(ups) == {"app", "gone"}
    assert ups["app"]["targets"][0]["state"] == "healthy"
    assert ups["app"]["targets"][0]["address"]
    assert ups["gone"]["status"] in ("degraded", "down")
    assert d["rate_limit"]["store"] == "memory"
    assert d["rate_limit"]["store_status"] == "ok"
    assert d["log"] == {"status": "ok", "dropped": 0}
    assert d["uptime_s"] >= 0
