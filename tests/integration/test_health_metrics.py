"""Health endpoints (public and admin listeners) and Prometheus metrics."""
import json
import re
import time

import pytest
import requests

from conftest import VERSION, free_port, http_request, scaled, wait_until


def get(port, path, **kw):
    status, headers, body = http_request(port, "GET", path, **kw)
    return status, headers, body


def get_json(port, path):
    status, headers, body = get(port, path)
    assert headers.get("content-type", "").split(";")[0].strip() == "application/json", headers
    return status, json.loads(body)


@pytest.fixture(scope="module")
def gh(flask_app, module_gatehouses):
    return module_gatehouses(flask_app, health={"check_interval": "1s"})


def wait_ready(gh):
    ok = wait_until(lambda: get(gh.port, "/health/ready")[0] == 200, scaled(5))
    assert ok, "never ready"


# ------------------------------------------------------------------------------ endpoints


@pytest.mark.parametrize("listener", ["public", "admin"])
def test_live(gh, listener):
    port = gh.port if listener == "public" else gh.admin_port
    assert get_json(port, "/health/live") == (200, {"status": "ok"})


@pytest.mark.parametrize("listener", ["public", "admin"])
def test_ready(gh, listener):
    wait_ready(gh)
    port = gh.port if listener == "public" else gh.admin_port
    assert get_json(port, "/health/ready") == (200, {"status": "ready"})


@pytest.mark.parametrize("listener", ["public", "admin"])
def test_summary(gh, listener):
    wait_ready(gh)
    time.sleep(scaled(1.2))  # past cache_ttl, so the summary reflects the ready state
    port = gh.port if listener == "public" else gh.admin_port
    status, j = get_json(port, "/health")
    assert status == 200
    assert j == {"status": "ok",
                 "components": {"process": "ok", "upstream:app": "ok", "log": "ok"}}


def test_detailed_on_admin(gh, flask_app):
    wait_ready(gh)
    time.sleep(scaled(1.2))
    status, j = get_json(gh.admin_port, "/health/detailed")
    assert status == 200
    assert j["status"] == "ok"
    assert isinstance(j["checked_at"], str) and re.match(r"^\d{4}-\d\d-\d\dT", j["checked_at"])
    comps = j["components"]
    assert set(comps) == {"process", "upstream:app", "log"}
    proc = comps["process"]
    assert proc["status"] == "ok"
    assert isinstance(proc["uptime_seconds"], (int, float)) and proc["uptime_seconds"] >= 0
    assert proc["workers"] == 2
    assert proc["version"] == VERSION
    assert proc["draining"] is False
    up = comps["upstream:app"]
    assert up["status"] == "ok"
    assert len(up["targets"]) == 1
    target = up["targets"][0]
    assert {k: target[k] for k in ("address", "reachable", "state", "last_error", "ejections",
                                   "consecutive_5xx", "consecutive_connect_failures",
                                   "consecutive_check_failures")} == {
        "address": flask_app.address, "reachable": True, "state": "healthy", "last_error": "",
        "ejections": 0, "consecutive_5xx": 0, "consecutive_connect_failures": 0,
        "consecutive_check_failures": 0}
    # The default TCP check ran: when and how long it took.
    assert re.match(r"^\d{4}-\d\d-\d\dT", target["last_check"])
    assert isinstance(target["latency_ms"], (int, float)) and target["latency_ms"] >= 0
    assert "circuit_breaker" not in up  # none configured
    assert comps["log"] == {"status": "ok", "dropped": 0}


def test_detailed_not_served_on_public_listener(gh):
    status, headers, body = get(gh.port, "/health/detailed")
    try:
        j = json.loads(body)
    except ValueError:
        j = None
    assert not (isinstance(j, dict) and "checked_at" in j), "detailed health on public port"
    assert not (isinstance(j, dict) and isinstance(j.get("components"), dict))
    if status == 200:  # proxied to the Flask app (default route is "/")
        assert j["server"] == "a" and j["path"] == "/health/detailed"
    else:
        assert status == 404


def test_metrics_not_served_on_public_listener(gh):
    status, _, body = get(gh.port, "/metrics")
    assert b"gatehouse_requests_total" not in body
    if status == 200:
        assert json.loads(body)["path"] == "/metrics"  # proxied
    else:
        assert status == 404


# ------------------------------------------------------------------------------ readiness


def test_ready_unavailable_when_only_upstream_down(apps, gatehouses):
    up = apps.flask("solo")
    gh = gatehouses(up, health={"check_interval": "1s", "cache_ttl": "1s"})
    wait_ready(gh)

    up.stop()
    deadline = scaled(5)
    got = wait_until(lambda: get_json(gh.port, "/health/ready")[0] == 503, deadline)
    assert got, "/health/ready still 200 5 s after the only upstream went down"
    assert get_json(gh.port, "/health/ready") == (503, {"status": "unavailable"})
    assert get_json(gh.admin_port, "/health/ready") == (503, {"status": "unavailable"})

    def summary_down():
        status, j = get_json(gh.port, "/health")
        return (status, j) if status == 503 else None
    res = wait_until(summary_down, scaled(4))
    assert res, "/health did not report the upstream down"
    status, j = res
    assert j["status"] == "down"
    assert j["components"]["upstream:app"] == "down"
    assert j["components"]["process"] == "ok"

    def detailed_down():
        status, j = get_json(gh.admin_port, "/health/detailed")
        return j if j["components"]["upstream:app"]["status"] == "down" else None
    j = wait_until(detailed_down, scaled(4))
    assert j, "detailed health did not report the upstream down"
    target = j["components"]["upstream:app"]["targets"][0]
    assert target["address"] == up.address
    assert target["reachable"] is False
    assert isinstance(target["last_error"], str) and target["last_error"]

    up.restart()
    assert wait_until(lambda: get(gh.port, "/health/ready")[0] == 200, scaled(5)), \
        "readiness did not recover after the upstream came back"


def test_summary_down_when_one_upstream_has_no_target(flask_app, gatehouses):
    dead = f"127.0.0.1:{free_port()}"
    gh = gatehouses(None, health={"check_interval": "1s"},
                    upstreams={"app": {"targets": [flask_app.address]},
                               "dead": {"targets": [dead]}},
                    routes=[{"name": "default", "match": {"path_prefix": "/"}, "upstream": "app"},
                            {"name": "dead", "match": {"path_prefix": "/dead"},
                             "upstream": "dead"}])

    def down():
        status, j = get_json(gh.port, "/health")
        return (status, j) if j.get("components", {}).get("upstream:dead") == "down" else None
    res = wait_until(down, scaled(5))
    assert res, "dead upstream never reported down"
    status, j = res
    assert (status, j["status"]) == (503, "down"), j
    assert j["components"]["upstream:app"] == "ok"


# -------------------------------------------------------------------------------- metrics


@pytest.fixture
def gh_metrics(flask_app, gatehouses):
    dead = f"127.0.0.1:{free_port()}"
    return gatehouses(None, health={"check_interval": "1h"},
                      upstreams={"app": {"targets": [flask_app.address]},
                                 "dead": {"targets": [dead]}},
                      routes=[{"name": "echo", "match": {"path_prefix": "/echo"},
                               "upstream": "app"},
                              {"name": "dead", "match": {"path_prefix": "/dead"},
                               "upstream": "dead"}])


def test_metrics_format_and_static_series(gh_metrics):
    status, headers, body = get(gh_metrics.admin_port, "/metrics")
    assert status == 200
    assert headers.get("content-type", "").startswith("text/plain")
    m = gh_metrics.metrics()
    assert m.get("gatehouse_build_info", version=VERSION) == 1
    assert m.get("gatehouse_draining") == 0
    assert m.types.get("gatehouse_requests_total") == "counter"
    assert m.types.get("gatehouse_request_duration_seconds") == "histogram"
    assert m.types.get("gatehouse_requests_in_flight") == "gauge"
    assert m.types.get("gatehouse_connections_active") == "gauge"
    assert m.types.get("gatehouse_connections_total") == "counter"
    assert m.types.get("gatehouse_draining") == "gauge"
    assert m.get("gatehouse_log_dropped_total") is not None
    assert m.get("gatehouse_requests_in_flight") is not None
    assert m.get("gatehouse_connections_active") is not None


def wait_metric(gh, predicate, timeout=None):
    """Polls /metrics until predicate(metrics) holds; returns the last metrics either way."""
    deadline = time.monotonic() + (timeout or scaled(3))
    while True:
        m = gh.metrics()
        if predicate(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


def test_metrics_count_requests(gh_metrics):
    before = gh_metrics.metrics()
    rt = ("gatehouse_requests_total", {"route": "echo", "status_class": "2xx"})
    b_total = before.value(rt[0], **rt[1])
    b_count = before.value("gatehouse_request_duration_seconds_count", route="echo")
    b_conn = before.value("gatehouse_connections_total")
    for i in range(5):
        r = requests.get(gh_metrics.url(f"/echo?i={i}"), timeout=scaled(10))
        assert r.status_code == 200
    m = wait_metric(gh_metrics, lambda m: m.value(rt[0], **rt[1]) >= b_total + 5)
    assert m.value(rt[0], **rt[1]) == b_total + 5
    assert m.value("gatehouse_request_duration_seconds_count", route="echo") == b_count + 5
    inf = m.get("gatehouse_request_duration_seconds_bucket", route="echo", le="+Inf")
    assert inf == m.value("gatehouse_request_duration_seconds_count", route="echo")
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in
                     m.with_name("gatehouse_request_duration_seconds_bucket").items()
                     if dict(k[1]).get("route") == "echo")
    assert len(buckets) >= 2
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), "buckets not cumulative"
    assert m.get("gatehouse_request_duration_seconds_sum", route="echo") >= 0
    assert m.value("gatehouse_connections_total") >= b_conn + 5
    assert m.value("gatehouse_upstream_connections_opened_total", upstream="app") >= 1
    assert m.get("gatehouse_upstream_pool_idle_connections", upstream="app") is not None


def test_metrics_local_404(gh_metrics):
    before = gh_metrics.metrics()
    b404 = before.value("gatehouse_local_replies_total", status="404")
    bnone = before.value("gatehouse_requests_total", route="none", status_class="4xx")
    for _ in range(3):
        r = requests.get(gh_metrics.url("/no-route-here"), timeout=scaled(10))
        assert r.status_code == 404
    # requests_total is recorded after the reply's last byte is written, local_replies before:
    # wait for the later one.
    m = wait_metric(gh_metrics, lambda m: m.value("gatehouse_requests_total", route="none",
                                                  status_class="4xx") >= bnone + 3)
    assert m.value("gatehouse_local_replies_total", status="404") == b404 + 3
    assert m.value("gatehouse_requests_total", route="none", status_class="4xx") == bnone + 3


def sum_5xx(m):
    return sum(v for k, v in m.with_name("gatehouse_requests_total").items()
               if dict(k[1]).get("status_class") == "5xx")


def test_metrics_connect_errors_after_502(gh_metrics):
    time.sleep(0.3)
    before = gh_metrics.metrics()
    b_err = before.value("gatehouse_upstream_connect_errors_total", upstream="dead")
    b_502 = before.value("gatehouse_local_replies_total", status="502")
    b_5xx = sum_5xx(before)
    r = requests.get(gh_metrics.url("/dead/x"), timeout=scaled(10))
    assert r.status_code == 502
    m = wait_metric(gh_metrics, lambda m: m.value("gatehouse_upstream_connect_errors_total",
                                                  upstream="dead") >= b_err + 1
                    and sum_5xx(m) >= b_5xx + 1)
    assert m.value("gatehouse_upstream_connect_errors_total", upstream="dead") >= b_err + 1
    # A 502 is a local reply: whether it is labelled route="dead" or route="none", exactly one
    # more 5xx request is counted.
    assert sum_5xx(m) == b_5xx + 1
    assert m.value("gatehouse_local_replies_total", status="502") == b_502 + 1
    assert m.value("gatehouse_upstream_connect_errors_total", upstream="app") == 0
