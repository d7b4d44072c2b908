"""Shared helpers and fixtures for the gatehouse integration tests.

Everything runs on 127.0.0.1 with ports picked at run time. Upstreams are Python subprocesses
(apps/flask_app.py, apps/raw_upstreams.py); gatehouse is the real binary ($GATEHOUSE_BIN, default
<repo>/build/gatehouse) started with `run --config` on a YAML file written to a temporary
directory. Every socket has a timeout and every process is stopped at teardown (SIGTERM, then
SIGKILL after 10 s).

With GATEHOUSE_ASAN=1 (sanitizer build) every time budget is multiplied by SCALE.
"""
import fcntl
import hashlib
import http.client
import json
import os
import pathlib
import random
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
APPS = HERE / "apps"
GATEHOUSE_BIN = os.environ.get("GATEHOUSE_BIN", str(REPO / "build" / "gatehouse"))
PYTHON = "/usr/bin/python3"
HOST = "127.0.0.1"
ASAN = os.environ.get("GATEHOUSE_ASAN") == "1"
SCALE = 3.0 if ASAN else 1.0
VERSION = "0.1.0"

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def scaled(seconds):
    """A time budget, stretched for the slow sanitizer build."""
    return seconds * SCALE


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def large_pattern(n):
    """The deterministic body flask_app.py's /large?n=N returns."""
    return (bytes(range(256)) * (n // 256 + 1))[:n]


# --------------------------------------------------------------------------------------------
# Ports


_port_lock = threading.Lock()
_given_ports = set()
# Suites run in parallel (ctest -j), each in its own pytest process: a port is also reserved
# across processes, by a POSIX record lock on the port's byte of one shared file, held until this
# process exits (the kernel drops it then, even after kill -9). Without it two processes could
# pick the same port a moment apart; the second server fails to bind and its test talks to the
# first one's server.
_PORT_LOCK_PATH = pathlib.Path(tempfile.gettempdir()) / "gatehouse-test-ports.lock"
_port_lock_file = None


def _reserve_across_processes(port):
    global _port_lock_file
    if _port_lock_file is None:
        try:
            _port_lock_file = open(_PORT_LOCK_PATH, "a+b")
            os.chmod(_PORT_LOCK_PATH, 0o666)
        except OSError:
            return True  # a file another user owns: the bind check alone, as before
    try:
        fcntl.lockf(_port_lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port, os.SEEK_SET)
    except OSError:
        return False
    return True


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Below the ephemeral range: a port the kernel hands to outgoing connections can be taken by one
# (the test's own clients, gatehouse's upstream connections) the moment its server releases it,
# and a takeover or a restarted upstream then cannot bind it again until TIME_WAIT ends.
_PORT_LOW, _PORT_HIGH = 12000, max(12001, min(_ephemeral_low(), 65536) - 1)
_port_random = random.Random(os.getpid() ^ time.time_ns())


def free_port():
    """A TCP port on 127.0.0.1, outside the ephemeral range, that was free a moment ago and was
    not handed out before by this process."""
    with _port_lock:
        for _ in range(1000):
            port = _port_random.randint(_PORT_LOW, _PORT_HIGH)
            if port in _given_ports:
                continue
            _given_ports.add(port)  # tried once, never again: free or not, reserved or not
            if not _reserve_across_processes(port):
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((HOST, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found")


def port_accepts(port, timeout=1.0):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(port, timeout, proc=None):
    """True once something accepts connections on port; False on timeout or if proc died."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            return False
        if port_accepts(port, timeout=1.0):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def wait_until(predicate, timeout, interval=0.1):
    """Polls predicate() until it returns a truthy value (returned) or timeout (returns None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Upstream processes


class AppProcess:
    """A Python upstream (Flask app or raw socket server) running as a subprocess."""

    def __init__(self, workdir, script, args_before_port, args_after_port, label, port=None):
        self.workdir = pathlib.Path(workdir)
        self.script = script
        self.args_before_port = list(args_before_port)
        self.args_after_port = list(args_after_port)
        self.label = label
        self.port = port
        self.proc = None
        self.log_path = None
        self._log = None

    @property
    def address(self):
        return f"{HOST}:{self.port}"

    def url(self, path="/"):
        return f"http://{HOST}:{self.port}{path}"

    def start(self):
        fixed = self.port is not None
        for attempt in range(3):
            if not fixed:
                self.port = free_port()
            self.log_path = self.workdir / f"{self.label}-{self.port}.log"
            self._log = open(self.log_path, "ab")
            argv = [PYTHON, str(self.script), *self.args_before_port, str(self.port),
                    *[str(a) for a in self.args_after_port]]
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, cwd=str(self.workdir))
            if wait_port(self.port, scaled(10), self.proc):
                return self
            self.stop()
            if fixed and attempt < 2:
                time.sleep(0.5)
        raise RuntimeError(f"upstream {self.label} did not start; log:\n{self._tail()}")

    def _tail(self):
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self):
        """Starts the same app again on the same port (after stop())."""
        self.stop()
        return self.start()


class CaptureUpstream(AppProcess):
    """raw_upstreams.py capture: every request it receives is recorded as one JSON line."""

    def __init__(self, workdir, label):
        self.record_path = pathlib.Path(workdir) / f"{label}.jsonl"
        super().__init__(workdir, APPS / "raw_upstreams.py", ["capture"], [self.record_path], label)

    def records(self, kind=None):
        try:
            text = self.record_path.read_text()
        except FileNotFoundError:
            return []
        out = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [r for r in out if kind is None or r["kind"] == kind]

    def requests(self):
        return self.records("request")

    def heads(self):
        return self.records("head")

    def wait_requests(self, count, timeout=None):
        ok = wait_until(lambda: len(self.requests()) >= count, timeout or scaled(5), 0.05)
        assert ok, f"capture upstream got {len(self.requests())} requests, expected {count}"
        return self.requests()


class AppFactory:
    def __init__(self, base_dir):
        self.base_dir = pathlib.Path(base_dir)
        self.apps = []
        self.n = 0

    def _dir(self):
        self.n += 1
        return self.base_dir

    def flask(self, name="flask"):
        app = AppProcess(self._dir(), APPS / "flask_app.py", [], [name], f"flask-{name}-{self.n}")
        self.apps.append(app)
        return app.start()

    def uvicorn(self, name="asgi"):
        """apps/asgi_app.py: a Starlette app on uvicorn (keep-alive, like production servers)."""
        app = AppProcess(self._dir(), APPS / "asgi_app.py", [], [name], f"asgi-{name}-{self.n}")
        self.apps.append(app)
        return app.start()

    def raw(self, mode, *args):
        app = AppProcess(self._dir(), APPS / "raw_upstreams.py", [mode], list(args),
                         f"raw-{mode}-{self.n}")
        self.apps.append(app)
        return app.start()

    def capture(self):
        app = CaptureUpstream(self._dir(), f"capture-{self.n}")
        self.apps.append(app)
        return app.start()

    def close(self):
        for app in self.apps:
            try:
                app.stop()
            except Exception:  # noqa: BLE001 - teardown must go on
                pass


# --------------------------------------------------------------------------------------------
# YAML writing (JSON-compatible scalars, block style, enough for gatehouse configs)

_PLAIN = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./:+\-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def yaml_scalar(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return str(value)
    s = str(value)
    if _PLAIN.match(s) and s.lower() not in _RESERVED and not s.endswith(":"):
        return s
    return json.dumps(s)


def to_yaml(obj, indent=0):
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, dict):
                if value:
                    lines.append(f"{pad}{key}:")
                    lines.append(to_yaml(value, indent + 2))
                else:
                    lines.append(f"{pad}{key}: {{}}")
            elif isinstance(value, list):
                if all(not isinstance(v, (dict, list)) for v in value):
                    items = ", ".join(json.dumps(v) if isinstance(v, str) else yaml_scalar(v)
                                      for v in value)
                    lines.append(f"{pad}{key}: [{items}]")
                else:
                    lines.append(f"{pad}{key}:")
                    lines.append(to_yaml(value, indent + 2))
            else:
                lines.append(f"{pad}{key}: {yaml_scalar(value)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                body = to_yaml(item, indent + 2).splitlines()
                first = body[0][indent + 2:]
                lines.append(f"{pad}- {first}")
                lines.extend(body[1:])
            else:
                lines.append(f"{pad}- {yaml_scalar(item)}")
    else:
        lines.append(pad + yaml_scalar(obj))
    return "\n".join(lines)


def deep_merge(base, override):
    """Returns base updated recursively with override (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# gatehouse process


def read_json_lines(path):
    """Every complete line of a JSON-lines log (a line that is not JSON makes the test fail). A
    last line without its newline is still being written: it is left for the next read."""
    try:
        text = pathlib.Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text[: text.rfind("\n") + 1].splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as exc:
            raise AssertionError(f"log line in {path} is not JSON: {line!r}") from exc
    return out


class Gatehouse:
    """One gatehouse process started with `run --config` on a generated config file."""

    def __init__(self, workdir, config, env=None, fixed_ports=False):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.base_config = config
        self.config = None
        self.env = env or {}
        self.fixed_ports = fixed_ports
        self.extra_args = []  # after `run --config FILE`, e.g. ["--takeover"]
        self.port = None
        self.admin_port = None
        self.tls_port = None  # the listen_tls port, learned from the "gatehouse started" line
        self.proc = None
        self.returncode = None
        self.config_path = self.workdir / "gatehouse.yaml"
        self.stdout_path = self.workdir / "gatehouse.stdout"
        self.stderr_path = self.workdir / "gatehouse.stderr"
        self.access_log = self.workdir / "access.log"
        self.error_log = self.workdir / "error.log"
        self.security_log = self.workdir / "security.log"
        self._out = None
        self._err = None

    # ---- lifecycle

    def start(self):
        last = ""
        for attempt in range(3):
            cfg = dict(self.base_config)
            if not self.fixed_ports:
                self.port = free_port()
                cfg["listen"] = f"{HOST}:{self.port}"
                if "admin_listen" not in self.base_config:
                    self.admin_port = free_port()
                    cfg["admin_listen"] = f"{HOST}:{self.admin_port}"
            else:
                self.port = int(str(cfg["listen"]).rsplit(":", 1)[1])
                admin = cfg.get("admin_listen")
                if admin not in (None, "off"):
                    self.admin_port = int(str(admin).rsplit(":", 1)[1])
            self.config = cfg
            self.config_path.write_text(to_yaml(cfg) + "\n")
            started_before = len(self._started_lines())
            self._out = open(self.stdout_path, "ab")
            self._err = open(self.stderr_path, "ab")
            env = dict(os.environ)
            env.update(self.env)
            self.proc = subprocess.Popen(
                [GATEHOUSE_BIN, "run", "--config", str(self.config_path), *self.extra_args],
                stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err, env=env,
                cwd=str(self.workdir))
            if self.wait_live(scaled(10)):
                self._learn_tls_port(started_before)
                return self
            rc = self.proc.poll()
            last = self.stderr_text()[-3000:]
            self.stop()
            bind_failure = rc is not None and re.search(r"bind|in use", last, re.I)
            if not (bind_failure and not self.fixed_ports and attempt < 2):
                break
        raise RuntimeError(f"gatehouse did not answer {HOST}:{self.port}/health/live "
                           f"(rc={self.proc.returncode}); config:\n{self.config_path.read_text()}\n"
                           f"stderr:\n{last}")

    def _started_lines(self):
        """The "gatehouse started" lines so far (error log file, or stderr without one)."""
        path = (self.config or self.base_config).get("log", {}).get("error")
        if path:
            lines = read_json_lines(path)
        else:
            lines = []
            for text in self.stderr_text().splitlines():
                try:
                    lines.append(json.loads(text))
                except ValueError:
                    pass
        return [l for l in lines if isinstance(l, dict) and l.get("message") == "gatehouse started"]

    def _learn_tls_port(self, started_before):
        """With listen_tls (port 0 allowed), the bound TLS port from this start's log line."""
        self.tls_port = None
        if not self.config.get("listen_tls"):
            return
        lines = wait_until(lambda: self._started_lines()[started_before:], scaled(5), 0.05)
        assert lines, "no 'gatehouse started' line in the error log"
        self.tls_port = int(str(lines[-1]["listen_tls"]).rsplit(":", 1)[1])

    def wait_live(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                status, _, _ = http_request(self.port, "GET", "/health/live", timeout=1.0)
                if status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Waits for the process to exit; returns its exit code (raises on timeout)."""
        self.returncode = self.proc.wait(timeout=timeout)
        return self.returncode

    def stop(self):
        """SIGTERM, SIGKILL after 10 s; returns the exit code."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self.returncode = self.proc.returncode
        for f in (self._out, self._err):
            if f is not None:
                f.close()
        self._out = self._err = None
        return self.returncode

    # ---- addresses

    def url(self, path="/"):
        return f"http://{HOST}:{self.port}{path}"

    def tls_url(self, path="/"):
        return f"https://{HOST}:{self.tls_port}{path}"

    def admin_url(self, path="/"):
        return f"http://{HOST}:{self.admin_port}{path}"

    # ---- output

    def stdout_text(self):
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_path(self, which):
        return {"access": self.access_log, "error": self.error_log,
                "security": self.security_log}[which]

    def log_lines(self, which):
        return read_json_lines(self.log_path(which))

    def wait_log(self, which, predicate, timeout=None):
        """The first JSON line of log `which` for which predicate(line) holds (fails on timeout)."""
        found = wait_until(lambda: next((l for l in self.log_lines(which) if predicate(l)), None),
                           timeout or scaled(5), 0.05)
        if found is None:
            path = self.log_path(which)
            tail = path.read_text(errors="replace")[-3000:] if path.exists() else "(no file)"
            raise AssertionError(f"no matching line in the {which} log; tail:\n{tail}")
        return found

    def metrics(self):
        status, headers, body = http_request(self.admin_port, "GET", "/metrics", timeout=5)
        assert status == 200, f"/metrics answered {status}"
        return parse_metrics(body.decode())


def default_config(workdir, targets):
    workdir = pathlib.Path(workdir)
    return {
        "environment": "production",
        "workers": 2,
        "upstreams": {"app": {"targets": list(targets)}},
        "routes": [{"name": "default", "match": {"path_prefix": "/"}, "upstream": "app"}],
        "log": {
            "access": str(workdir / "access.log"),
            "error": str(workdir / "error.log"),
            "security": str(workdir / "security.log"),
            "level": "info",
        },
    }


def targets_of(upstream):
    if upstream is None:
        return []
    if isinstance(upstream, (list, tuple)):
        return [u.address if isinstance(u, AppProcess) else str(u) for u in upstream]
    if isinstance(upstream, AppProcess):
        return [upstream.address]
    return [str(upstream)]


class GatehouseFactory:
    """gatehouses(upstream, **overrides) -> a started Gatehouse; all stopped at teardown."""

    def __init__(self, base_dir):
        self.base_dir = pathlib.Path(base_dir)
        self.instances = []

    def __call__(self, upstream=None, *, env=None, start=True, **overrides):
        workdir = self.base_dir / f"gh{len(self.instances)}"
        cfg = default_config(workdir, targets_of(upstream))
        if upstream is None and "upstreams" in overrides:
            del cfg["upstreams"]  # the test defines every upstream itself
        cfg = deep_merge(cfg, overrides)
        g = Gatehouse(workdir, cfg, env=env)
        self.instances.append(g)
        if start:
            g.start()
        return g

    def close(self):
        for g in self.instances:
            try:
                g.stop()
            except Exception:  # noqa: BLE001
                pass


# --------------------------------------------------------------------------------------------
# Clients


def http_request(port, method, target, headers=None, body=None, timeout=10.0):
    """One request with http.client on a fresh connection: (status, headers dict lower, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=scaled(timeout))
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def build_request(method, target, headers=(), body=b"", version="HTTP/1.1", host="gatehouse.test"):
    """Raw request bytes; headers is a list of (name, value); Host added unless given or None."""
    headers = list(headers.items()) if isinstance(headers, dict) else list(headers)
    names = {n.lower() for n, _ in headers}
    if host is not None and "host" not in names:
        headers.insert(0, ("Host", host))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return head.encode("latin-1") + b"\r\n" + (body or b"")


def chunked(pieces, trailers=b""):
    out = b""
    for p in pieces:
        out += f"{len(p):x}\r\n".encode() + p + b"\r\n"
    return out + b"0\r\n" + trailers + b"\r\n"


class RawResponse:
    def __init__(self, version, status, reason, headers, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), as received
        self.raw_head = raw_head
        self.body = b""
        self.framing = None  # "length" | "chunked" | "close" | "none"
        self.interim = []    # 1xx responses received before this one
        self.chunk_sizes = []

    def header(self, name, default=None):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def has_header(self, name):
        return bool(self.header_all(name))

    def header_names(self):
        return {n.lower() for n, _ in self.headers}

    def connection_tokens(self):
        tokens = set()
        for v in self.header_all("connection"):
            tokens.update(t.strip().lower() for t in v.split(",") if t.strip())
        return tokens

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<RawResponse {self.status} {self.headers} body={self.body[:200]!r}>"


class RawConn:
    """A plain TCP client speaking HTTP/1.x by hand (exact bytes, keep-alive, partial reads)."""

    def __init__(self, port, timeout=10.0):
        self.timeout = scaled(timeout)
        self.sock = socket.create_connection((HOST, port), timeout=self.timeout)
        self.buf = b""
        self.eof = False

    @classmethod
    def from_socket(cls, sock, timeout=10.0):
        c = cls.__new__(cls)
        c.timeout = scaled(timeout)
        c.sock = sock
        c.buf = b""
        c.eof = False
        return c

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, timeout=None):
        """Receives more bytes into buf; False on EOF."""
        if self.eof:
            return False
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, delim, limit=1 << 22):
        while delim not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError(f"no {delim!r} within {limit} bytes")
            if not self._fill():
                raise EOFError(f"connection closed before {delim!r}; got {self.buf[:300]!r}")
        i = self.buf.index(delim) + len(delim)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_some(self):
        """Whatever bytes are buffered or arrive next (b"" on EOF)."""
        if not self.buf:
            self._fill()
        out, self.buf = self.buf, b""
        return out

    def read_to_eof(self):
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def read_head(self):
        raw = self.read_until(b"\r\n\r\n", limit=1 << 20)
        lines = raw[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/"), f"bad status line {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return RawResponse(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers, raw)

    def read_chunk(self):
        """One chunk of a chunked body: its data, or None for the last chunk (trailers consumed)."""
        line = self.read_until(b"\r\n")
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while self.read_until(b"\r\n") != b"\r\n":
                pass
            return None
        data = self.read_exact(size)
        assert self.read_exact(2) == b"\r\n", "chunk not followed by CRLF"
        return data

    def read_body(self, resp, method="GET"):
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            resp.framing = "none"
            return resp
        te = ",".join(resp.header_all("transfer-encoding")).lower()
        cl = resp.header("content-length")
        if "chunked" in te:
            resp.framing = "chunked"
            body = b""
            while True:
                data = self.read_chunk()
                if data is None:
                    break
                resp.chunk_sizes.append(len(data))
                body += data
            resp.body = body
        elif cl is not None:
            resp.framing = "length"
            resp.body = self.read_exact(int(cl))
        else:
            resp.framing = "close"
            resp.body = self.read_to_eof()
        return resp

    def read_response(self, method="GET"):
        """The next final response (1xx interim responses are collected in .interim)."""
        interim = []
        while True:
            resp = self.read_head()
            if 100 <= resp.status < 200 and resp.status != 101:
                interim.append(resp)
                continue
            resp.interim = interim
            return self.read_body(resp, method)

    def request(self, method, target, headers=(), body=b"", version="HTTP/1.1", **kw):
        self.send(build_request(method, target, headers, body, version, **kw))
        return self.read_response(method)

    def wait_closed(self, timeout):
        """Waits for the peer to close: (closed, bytes received meanwhile, seconds waited)."""
        start = time.monotonic()
        deadline = start + timeout
        data = self.buf
        self.buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, data, time.monotonic() - start
            try:
                self.sock.settimeout(left)
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False, data, time.monotonic() - start
            except (ConnectionResetError, BrokenPipeError):
                return True, data, time.monotonic() - start
            if not chunk:
                return True, data, time.monotonic() - start
            data += chunk


def readable(sock, timeout):
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)


# --------------------------------------------------------------------------------------------
# TLS


def make_cert(directory, name="server"):
    """A fresh self-signed RSA certificate for localhost and 127.0.0.1, written with `openssl req`
    to DIR/NAME.crt and DIR/NAME.key (overwritten when they exist); returns (cert, key) paths."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    tmp_cert, tmp_key = directory / f".{name}.crt.new", directory / f".{name}.key.new"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(tmp_key), "-out", str(tmp_cert)],
        check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        timeout=60)
    os.replace(tmp_key, key)  # same path, new content: what a certificate renewal does
    os.replace(tmp_cert, cert)
    return cert, key


def cert_fingerprint(cert_path):
    """SHA-256 of the DER form of a PEM certificate file."""
    import ssl
    return sha256(ssl.PEM_cert_to_DER_cert(pathlib.Path(cert_path).read_text()))


def tls_client_context(cafile, **versions):
    """A verifying client context that trusts `cafile` (minimum_version=..., maximum_version=...)."""
    import ssl
    ctx = ssl.create_default_context(cafile=str(cafile))
    for attr, value in versions.items():
        setattr(ctx, attr, value)
    return ctx


def tls_connect(port, ctx, server_hostname="localhost", timeout=10.0):
    """A TLS socket to 127.0.0.1:port after a completed handshake."""
    raw = socket.create_connection((HOST, port), timeout=scaled(timeout))
    try:
        return ctx.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def https_request(port, cafile, method, target, headers=None, body=None, timeout=10.0):
    """One HTTPS request on a fresh connection: (status, headers dict lower, body)."""
    conn = http.client.HTTPSConnection(HOST, port, timeout=scaled(timeout),
                                       context=tls_client_context(cafile))
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Metrics


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    def __init__(self, samples, types, text):
        self.samples = samples  # {(name, frozenset(labels.items())): value}
        self.types = types      # {name: type}
        self.text = text

    def get(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, default=0.0, **labels):
        v = self.get(name, **labels)
        return default if v is None else v

    def with_name(self, name):
        return {k: v for k, v in self.samples.items() if k[0] == name}


def parse_metrics(text):
    samples, types = {}, {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparsable metrics line {line!r}"
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        value = m.group(3)
        # A series twice in one scrape is invalid exposition (Prometheus rejects the scrape).
        assert (m.group(1), labels) not in samples, f"duplicate metrics series {line!r}"
        samples[(m.group(1), labels)] = float(value.replace("Inf", "inf"))
    return Metrics(samples, types, text)


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    if not os.path.exists(GATEHOUSE_BIN):
        pytest.fail(f"gatehouse binary not found at {GATEHOUSE_BIN} (set GATEHOUSE_BIN)")


@pytest.fixture
def apps(tmp_path):
    factory = AppFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_apps(tmp_path_factory):
    factory = AppFactory(tmp_path_factory.mktemp("apps"))
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def flask_app(module_apps):
    return module_apps.flask("a")


@pytest.fixture
def gatehouses(tmp_path):
    factory = GatehouseFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_gatehouses(tmp_path_factory):
    factory = GatehouseFactory(tmp_path_factory.mktemp("gatehouse"))
    yield factory
    factory.close()


class KeepAliveLoad:
    """Client threads sending GETs on keep-alive connections until stopped (`pause` seconds
    between requests); `statuses` collects the answers."""

    def __init__(self, port, path, threads=3, xff=None, pause=0.0):
        self.port, self.path, self.xff, self.pause = port, path, xff, pause
        self.stop_flag = threading.Event()
        self.statuses = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        conn = http.client.HTTPConnection(HOST, self.port, timeout=scaled(5))
        headers = {"X-Forwarded-For": self.xff} if self.xff else {}
        while not self.stop_flag.is_set():
            try:
                conn.request("GET", self.path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                with self.lock:
                    self.statuses.append(resp.status)
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                conn.close()
                time.sleep(0.01)
            if self.pause:
                time.sleep(self.pause)
        conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(scaled(10))
