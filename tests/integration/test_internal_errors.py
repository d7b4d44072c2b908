"""Nothing fails silently (issue 10, item 7): a coroutine that ends with an exception is logged
("internal error", with the request id), counted (gatehouse_internal_errors_total), and ends only
its own connection; the gauges it raised come back down and gatehouse keeps serving.

No request path throws any more (the last one, /health/detailed on a Redis error that is not
UTF-8, is covered by tests/unit/observability/health_test.cpp), so this drives the test-only hook
built with -DGATEHOUSE_TEST_HOOKS=ON (the ASan build of `make test`; never a release build): a
request carrying X-Gatehouse-Test-Throw makes the request path throw once its id is known.
"""
import signal
import subprocess

import pytest

from conftest import GATEHOUSE_BIN, RawConn, http_request, scaled, wait_until


def _hooks_built():
    out = subprocess.run([GATEHOUSE_BIN, "version"], capture_output=True, text=True, timeout=30)
    return "test hooks" in out.stdout


pytestmark = pytest.mark.skipif(
    not _hooks_built(), reason="needs a build with -DGATEHOUSE_TEST_HOOKS=ON (make asan)")


def test_exception_is_logged_counted_and_closes_only_its_connection(flask_app, gatehouses):
    gh = gatehouses(flask_app, workers=1)
    with RawConn(gh.port) as bystander:  # open on the same worker across the failure
        assert bystander.request("GET", "/echo").status == 200
        before = gh.metrics()
        assert before.value("gatehouse_internal_errors_total") == 0
        active = before.value("gatehouse_connections_active")
        assert active >= 1

        with RawConn(gh.port) as c:
            c.send(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Request-ID: hook-test-1\r\n"
                   b"X-Gatehouse-Test-Throw: 1\r\n\r\n")
            closed, data, _ = c.wait_closed(scaled(5))
            assert closed, "the failed session's connection is still open"
            assert data == b""

        line = gh.wait_log("error", lambda l: l.get("message") == "internal error")
        assert line["level"] == "error"
        assert line["task"] == "session"
        assert line["request_id"] == "hook-test-1"
        assert "X-Gatehouse-Test-Throw" in line["error"]

        def settled():
            m = gh.metrics()
            back = (m.value("gatehouse_connections_active") == active
                    and m.value("gatehouse_requests_in_flight") == 0)
            return m if back else None

        m = wait_until(settled, scaled(5))
        assert m is not None, "gauges did not come back after the failed session"
        assert m.value("gatehouse_internal_errors_total") == 1

        # Still serving: the connection that was open, and new ones.
        assert bystander.request("GET", "/echo").status == 200
        assert http_request(gh.port, "GET", "/echo")[0] == 200
    # The failed session left nothing behind that would hold the drain.
    gh.signal(signal.SIGTERM)
    assert gh.wait_exit(scaled(10)) == 0
