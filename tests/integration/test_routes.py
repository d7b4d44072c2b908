"""Issue 15, route matching and frictions: match.path templates and exact paths in front of a real
Flask app, a rate limit keyed per template variable, and `gatehouse check` on the examples and on
a file meant for both development and production."""
import json
import os
import pathlib
import subprocess
import textwrap

import pytest

from conftest import APPS, GATEHOUSE_BIN, AppProcess, http_request, scaled, wait_until

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def story_app(tmp_path):
    app = AppProcess(tmp_path, APPS / "story_app.py", [], [], "story").start()
    yield app
    app.stop()


def story_gatehouse(gatehouses, app):
    return gatehouses(
        app,
        # The defaults limit everything else hard, so the exemptions below are visible.
        rate_limit={"limits": "3/minute"},
        routes=[
            # Exactly "/", not everything under it: the landing page is never limited.
            {"name": "landing", "match": {"path": "/"}, "upstream": "app", "rate_limit": "off"},
            {"name": "revise", "match": {"path": "/api/stories/{id}/revise", "methods": ["POST"]},
             "upstream": "app",
             "rate_limit": {"key": ["ip", "path:id"], "limits": "4/hour"}},
            {"name": "story", "match": {"path": "/api/stories/{id}"}, "upstream": "app",
             "rate_limit": "off"},
            {"name": "default", "match": {"path_prefix": "/"}, "upstream": "app"},
        ])


def post(port, target):
    status, headers, body = http_request(port, "POST", target, body=b"{}",
                                         headers={"Content-Type": "application/json"})
    return status, body


def test_revise_limited_per_story_while_story_reads_are_not(gatehouses, story_app):
    gh = story_gatehouse(gatehouses, story_app)
    for _ in range(4):
        status, body = post(gh.port, "/api/stories/1/revise")
        assert status == 200, body
        assert json.loads(body) == {"story": "1", "revised": True, "path": "/api/stories/1/revise"}
    assert post(gh.port, "/api/stories/1/revise")[0] == 429
    # The app decodes %72 to "r": so does the route, and the same story's counter applies.
    assert post(gh.port, "/api/stories/1/%72evise")[0] == 429
    assert post(gh.port, "/api//stories/1/revise")[0] == 429
    # Another story has its own counter.
    for _ in range(4):
        status, body = post(gh.port, "/api/stories/2/revise")
        assert status == 200, body
        assert json.loads(body)["story"] == "2"
    assert post(gh.port, "/api/stories/2/revise")[0] == 429
    # Reading a story is not limited (the 3/minute defaults do not apply to it either).
    for _ in range(10):
        status, _, body = http_request(gh.port, "GET", "/api/stories/1")
        assert status == 200, body
        assert json.loads(body)["story"] == "1"
    # An encoded slash never lets a request pick its own story id: refused before routing.
    assert post(gh.port, "/api/stories/1%2F2/revise")[0] == 400
    # The access log names the route the template matched.
    def routes():
        return [json.loads(line).get("route") for line in gh.access_log.read_text().splitlines()]
    assert wait_until(lambda: routes().count("story") == 10, scaled(5)), routes()
    assert routes().count("revise") == 12


def test_exactly_root_is_exempt_everything_else_is_limited(gatehouses, story_app):
    gh = story_gatehouse(gatehouses, story_app)
    for _ in range(8):
        status, _, body = http_request(gh.port, "GET", "/")
        assert status == 200, body
        assert json.loads(body)["page"] == "landing"
    statuses = [http_request(gh.port, "GET", "/about")[0] for _ in range(5)]
    assert statuses == [404, 404, 404, 429, 429]  # Flask has no /about: the 404 is the app's
    # "/" still passes once the catch-all is exhausted, and "/?x" is "/" too.
    assert http_request(gh.port, "GET", "/?utm=x")[0] == 200


def run_check(path, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([GATEHOUSE_BIN, "check", "--config", str(path)], capture_output=True,
                          text=True, timeout=scaled(10), env=full_env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_examples_pass_check(example):
    p = run_check(example)
    assert p.returncode == 0, p.stderr
    assert "routes:" in p.stdout


def test_one_file_for_development_and_production(tmp_path):
    cfg = tmp_path / "gatehouse.yaml"
    cfg.write_text(textwrap.dedent("""
        upstreams:
          app: {targets: ["127.0.0.1:8000"]}
        rate_limit:
          limits: 10/minute
          store: "${REDIS_URL:-memory}"
          redis: {timeout: 50ms}
          on_store_failure: local
        log:
          level: "${LOG_LEVEL:-INFO}"
        """).lstrip())
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LOG_LEVEL")}
    dev = subprocess.run([GATEHOUSE_BIN, "check", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=scaled(10), env=env, stdin=subprocess.DEVNULL)
    assert dev.returncode == 0, dev.stderr
    assert "store: memory" in dev.stdout and "level: info" in dev.stdout
    assert "on_store_failure" not in dev.stdout
    notes = [line for line in dev.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2, dev.stderr
    assert "gatehouse.yaml:6:10: rate_limit.redis: redis settings ignored" in notes[0]
    assert "gatehouse.yaml:7:21: rate_limit.on_store_failure: on_store_failure ignored" in notes[1]

    prod = run_check(cfg, env={"REDIS_URL": "redis://10.0.0.5:6379", "LOG_LEVEL": "Warning"})
    assert prod.returncode == 0, prod.stderr
    assert "on_store_failure: local" in prod.stdout and "level: warn" in prod.stdout
    assert "note:" not in prod.stderr
