"""The dashboard page in headless Chromium (issue 15 item 6), driven over the DevTools protocol:
it loads with no console error, no CSP violation and no failed request; the numbers in the page
move under load; it shows "disconnected" while the gateway is down and recovers when it is back.

A screenshot is taken each run; with GATEHOUSE_DASHBOARD_SCREENSHOT=PATH it is also written there
(docs/images/dashboard.png was made so). Skipped only when chromium is not installed
(scripts/bootstrap.sh installs it).
"""
import asyncio
import base64
import itertools
import json
import os
import pathlib
import shutil
import subprocess
import time

import pytest

from conftest import HOST, KeepAliveLoad as Load, free_port, http_request, scaled

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(scripts/bootstrap.sh installs the Debian package)")
websockets = pytest.importorskip("websockets")

TRUST = ["127.0.0.1"]
# A client's "address" that would run script if the page built HTML from what it shows.
MARKUP = "<img src=x onerror=\"document.title='pwned'\">"


class Browser:
    """One headless Chromium with a fresh profile and one page, spoken to over CDP."""

    def __init__(self, workdir):
        self.profile = pathlib.Path(workdir) / "chromium-profile"
        self.profile.mkdir(parents=True)
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={self.profile}",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "--window-size=1400,1050", "--hide-scrollbars", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(pathlib.Path(workdir) / "chromium.stderr", "wb"))
        self.ws = None
        self.ids = itertools.count(1)
        self.pending = {}
        self.events = []
        self.reader = None

    async def connect(self):
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + scaled(30)
        while not port_file.exists() or not port_file.read_text().strip():
            assert self.proc.poll() is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        status, _, body = http_request(port, "GET", "/json/list")
        assert status == 200
        page = next(t for t in json.loads(body) if t["type"] == "page")
        self.ws = await websockets.connect(page["webSocketDebuggerUrl"], max_size=2**26)
        self.reader = asyncio.ensure_future(self._read())
        for domain in ("Runtime", "Log", "Network", "Page"):
            await self.call(f"{domain}.enable")

    async def _read(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg and msg["id"] in self.pending:
                self.pending.pop(msg["id"]).set_result(msg)
            elif "method" in msg:
                self.events.append(msg)

    async def call(self, method, **params):
        i = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        await self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        msg = await asyncio.wait_for(fut, scaled(30))
        assert "error" not in msg, msg
        return msg["result"]

    async def eval(self, expression):
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    async def wait_for(self, expression, timeout):
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            if await self.eval(expression):
                return True
            await asyncio.sleep(0.1)
        return False

    def problems(self):
        """Console errors, exceptions, CSP and other errors logged, failed or refused requests."""
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(("console", p.get("args")))
            elif m == "Runtime.exceptionThrown":
                out.append(("exception", p.get("exceptionDetails")))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(("log", p["entry"].get("text"), p["entry"].get("url")))
            elif m == "Network.loadingFailed":
                out.append(("failed", p.get("errorText"), p.get("blockedReason")))
            elif m == "Network.responseReceived" and p["response"]["status"] >= 400:
                out.append(("status", p["response"]["status"], p["response"]["url"]))
        return out

    def requested_urls(self):
        return [e["params"]["request"]["url"] for e in self.events
                if e["method"] == "Network.requestWillBeSent"]

    async def close(self):
        if self.reader:
            self.reader.cancel()
        if self.ws:
            await self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def text(selector):
    return f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent"


def test_dashboard_in_chromium(flask_app, gatehouses, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    gh = gatehouses(
        flask_app, workers=2, trusted_proxies=TRUST,
        upstreams={"app": {"targets": [flask_app.address]},
                   "reports": {"targets": [dead], "connect_timeout": "1s"}},
        routes=[
            {"name": "generate", "match": {"path_prefix": "/api/generate"}, "upstream": "app",
             "rate_limit": {"limits": "10/minute",
                            "ban": {"after": 30, "within": "1m", "for": "15m"}}},
            {"name": "reports", "match": {"path_prefix": "/reports"}, "upstream": "reports",
             "rate_limit": "off"},
            {"name": "site", "match": {"path_prefix": "/"}, "upstream": "app",
             "rate_limit": "off"},
        ])
    admin = f"http://{HOST}:{gh.admin_port}"

    async def scenario():
        browser = Browser(tmp_path)
        try:
            await browser.connect()
            await browser.call("Page.navigate", url=f"{admin}/dashboard")
            assert await browser.wait_for("document.body && document.body.dataset.connected === '1'",
                                          10), await browser.eval(text("#conn"))
            with Load(gh.port, "/hello", threads=2), \
                    Load(gh.port, "/api/generate", threads=1, xff="198.51.100.7", pause=0.02), \
                    Load(gh.port, "/api/generate", threads=1, xff="203.0.113.9", pause=0.2), \
                    Load(gh.port, "/api/generate", threads=1, xff=MARKUP, pause=0.1):
                for _ in range(3):
                    http_request(gh.port, "GET", "/reports/daily")
                row = "tr[data-route='site']"
                # Rates need two polls; then read the page twice, a couple of polls apart.
                assert await browser.wait_for(
                    f"parseFloat({text(row + ' td.rps')}) > 0", 10), await browser.eval(
                        "document.getElementById('routes').innerText")
                first = await browser.eval(f"[{text(row + ' td.total')}, {text('#rl-total')}]")
                await asyncio.sleep(2.5)
                second = await browser.eval(f"[{text(row + ' td.total')}, {text('#rl-total')}]")
                assert int(second[0]) > int(first[0]), (first, second)
                assert int(second[1]) > int(first[1]), (first, second)
                assert float(await browser.eval(text("#total-rps"))) > 0
                assert await browser.wait_for("document.querySelectorAll('#bans td.key').length > 0",
                                              15)
                assert await browser.wait_for(
                    "[...document.querySelectorAll('#upstreams td.state')]"
                    ".some(td => td.textContent !== 'healthy' && td.classList.length > 1)", 10)
                await asyncio.sleep(1.2)
                shot = await browser.call("Page.captureScreenshot", format="png")
            png = base64.b64decode(shot["data"])
            assert png.startswith(b"\x89PNG")
            (tmp_path / "dashboard.png").write_bytes(png)
            if os.environ.get("GATEHOUSE_DASHBOARD_SCREENSHOT"):
                pathlib.Path(os.environ["GATEHOUSE_DASHBOARD_SCREENSHOT"]).write_bytes(png)

            # What clients send is shown as text, never parsed as markup.
            assert await browser.eval("document.querySelectorAll('main img').length") == 0
            assert await browser.eval("document.title") == "gatehouse dashboard"
            assert await browser.eval("document.getElementById('top-keys').rows.length") >= 2
            # Everything the page loaded came from the admin listener.
            urls = browser.requested_urls()
            assert urls and all(u.startswith(admin + "/") or u.startswith("data:")
                                for u in urls), urls
            assert browser.problems() == []

            # The gateway goes away: the page says so, and recovers when it is back.
            gh.stop()
            assert await browser.wait_for("document.body.dataset.connected === '0'", 10)
            assert (await browser.eval(text("#conn"))).startswith("disconnected")
            gh.base_config = gh.config
            gh.fixed_ports = True
            gh.start()
            assert await browser.wait_for("document.body.dataset.connected === '1'", 15)
            assert await browser.eval(text("#conn")) == "live"
        finally:
            await browser.close()

    asyncio.run(scenario())
