"""Real Redis servers for the integration tests (redis-server and redis-cli from /usr/bin).

  RedisServer(tmpdir, password=None, port=None)  one standalone server on 127.0.0.1: cli(),
                                                 command(), scan(), pttl(), kill9(), pause()
                                                 (SIGSTOP) / resume(), restart(), stop()
  RedisCluster(tmpdir, masters=3)                 a cluster of masters without replicas:
                                                 keyslot(), node_for_slot(), move_slot(),
                                                 half_migrate_slot() / finish_migration()
  SilentServer()                                  accepts TCP connections and never answers

Every server runs with `--save "" --appendonly no` in its own directory under tmpdir, on a port
from conftest.free_port(). Use them through fixtures that call stop() in a finally block; an atexit
hook also kills any process still running when the interpreter exits (a test run interrupted with
Ctrl-C). Besides redis-cli (cli()), a minimal RESP client (command()) is used for replies that
redis-cli prints awkwardly (nested arrays of CLUSTER SLOTS, SCAN cursors).
"""
import atexit
import os
import pathlib
import select
import signal
import socket
import subprocess
import threading
import time

from conftest import HOST, free_port, scaled, wait_until

REDIS_SERVER = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")
REDIS_CLI = os.environ.get("REDIS_CLI", "/usr/bin/redis-cli")
SLOTS = 16384

_live = set()  # processes started here and not yet reaped
_live_lock = threading.Lock()


@atexit.register
def _kill_leftovers():
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


# ------------------------------------------------------------------------------ RESP


class RedisError(Exception):
    """An error reply (-ERR ..., -MOVED ..., -NOSCRIPT ...)."""


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("redis closed the connection")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n")
        out, self.buf = self.buf[:i], self.buf[i + 2:]
        return out

    def exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n + 2:]
        return out

    def reply(self):
        """One reply: str for simple/bulk strings, int, list, None; RedisError for -ERR."""
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exact(n).decode("latin-1")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError(f"unexpected RESP line {line!r}")


def resp_commands(port, commands, password=None, timeout=5.0):
    """Sends each command (a tuple of arguments) on one fresh connection, AUTH first when a
    password is given; returns the replies (error replies as RedisError instances)."""
    with socket.create_connection((HOST, port), timeout=scaled(timeout)) as s:
        cmds = ([("AUTH", password)] if password is not None else []) + list(commands)
        s.sendall(b"".join(_encode(c) for c in cmds))
        reader = _Reader(s)
        replies = [reader.reply() for _ in cmds]
    if password is not None:
        if isinstance(replies[0], RedisError):
            raise replies[0]
        replies = replies[1:]
    return replies


def resp_command(port, *args, password=None, timeout=5.0):
    """One command; raises RedisError on an error reply."""
    reply = resp_commands(port, [args], password=password, timeout=timeout)[0]
    if isinstance(reply, RedisError):
        raise reply
    return reply


# ------------------------------------------------------------------------------ key slots


def _crc16(data):
    """CRC-16/XMODEM, as Redis Cluster uses (polynomial 0x1021, initial value 0)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def keyslot(key):
    """The cluster slot of key, hash tags included (the part between the first { and the next }
    when it is not empty)."""
    if isinstance(key, str):
        key = key.encode()
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return _crc16(key) % SLOTS


# ------------------------------------------------------------------------------ one server


class RedisServer:
    """One redis-server process on 127.0.0.1 (a free port unless `port` is given)."""

    def __init__(self, tmpdir, password=None, port=None, extra_args=(), label="redis",
                 start=True):
        self.tmpdir = pathlib.Path(tmpdir)
        self.password = password
        self.port = port
        self.extra_args = list(extra_args)
        self.label = label
        self.proc = None
        self.dir = None
        self.log_path = None
        self.cluster_port = None
        self.paused = False
        if start:
            self.start()

    # ---- lifecycle

    @property
    def address(self):
        return f"{HOST}:{self.port}"

    def url(self, password=None, db=0):
        """redis://[:PASSWORD@]127.0.0.1:PORT/DB (this server's password unless one is given)."""
        pw = self.password if password is None else password
        auth = f":{pw}@" if pw else ""
        return f"redis://{auth}{HOST}:{self.port}/{db}"

    def _argv(self):
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--protected-mode", "no",
                "--daemonize", "no", "--logfile", str(self.log_path)]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        if "--cluster-enabled" in self.extra_args:
            # The bus port defaults to port + 10000, which may be taken or above 65535.
            if self.cluster_port is None:
                self.cluster_port = free_port()
            argv += ["--cluster-port", str(self.cluster_port),
                     "--cluster-config-file", f"nodes-{self.port}.conf"]
        return argv + self.extra_args

    def start(self):
        fixed = self.port is not None
        last = ""
        for attempt in range(3):
            if not fixed:
                self.port = free_port()
            self.dir = self.tmpdir / f"{self.label}-{self.port}"
            self.dir.mkdir(parents=True, exist_ok=True)
            self.log_path = self.dir / "redis.log"
            self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                         cwd=str(self.dir))
            with _live_lock:
                _live.add(self.proc)
            if wait_until(self._answers, scaled(10), 0.02):
                return self
            last = self.log_tail()
            self._kill(signal.SIGKILL)
            if fixed and attempt < 2:
                time.sleep(0.5)  # the old process's port may still be held for a moment
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}; log:\n{last}")

    def _answers(self):
        if self.proc.poll() is not None:
            return False
        try:
            return self.command("PING", timeout=1.0) == "PONG"
        except (OSError, RedisError):
            return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _kill(self, sig):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if self.paused:
                self.resume()  # a stopped process would not act on SIGTERM
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        with _live_lock:
            _live.discard(self.proc)

    def pause(self):
        """SIGSTOP: the server keeps its connections (and the kernel still completes new TCP
        handshakes) but answers nothing until resume()."""
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def kill9(self):
        """SIGKILL: the server dies at once; its clients see their connections reset."""
        self._kill(signal.SIGKILL)

    def stop(self):
        """SIGTERM (nothing to save), SIGKILL if it does not exit within 10 s."""
        self._kill(signal.SIGTERM)

    def restart(self):
        """Starts the server again on the same port with the same password (data is lost)."""
        self.stop()
        self._start_same_port()
        return self

    def _start_same_port(self):
        port = self.port
        last = ""
        for attempt in range(20):  # the port can stay busy briefly after a kill
            self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                         cwd=str(self.dir))
            with _live_lock:
                _live.add(self.proc)
            if wait_until(self._answers, scaled(10), 0.02):
                return
            last = self.log_tail()
            self._kill(signal.SIGKILL)
            time.sleep(0.25)
        raise RuntimeError(f"redis-server did not restart on port {port}; log:\n{last}")

    def log_tail(self, n=3000):
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except (OSError, TypeError, AttributeError):
            return ""

    # ---- commands

    def cli(self, *args, check=True, timeout=10.0):
        """redis-cli -h 127.0.0.1 -p PORT [-a PASS --no-auth-warning] ARGS...; stdout text."""
        argv = [REDIS_CLI, "-h", HOST, "-p", str(self.port)]
        if self.password is not None:
            argv += ["-a", self.password, "--no-auth-warning"]
        argv += [str(a) for a in args]
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=scaled(timeout))
        if check and (res.returncode != 0 or res.stdout.startswith(("ERR", "(error)"))):
            raise RuntimeError(f"redis-cli -p {self.port} {' '.join(map(str, args))} failed "
                               f"(rc={res.returncode}): {res.stdout}{res.stderr}")
        return res.stdout

    def command(self, *args, timeout=5.0):
        """One command over RESP (str, int, list or None); raises RedisError on an error reply."""
        return resp_command(self.port, *args, password=self.password, timeout=timeout)

    def commands(self, commands, timeout=5.0):
        return resp_commands(self.port, commands, password=self.password, timeout=timeout)

    def scan(self, match="*", db=0):
        """Every key of database `db` matching `match` (SCAN, fine on a busy server)."""
        keys, cursor = set(), "0"
        while True:
            reply = self.commands([("SELECT", db), ("SCAN", cursor, "MATCH", match,
                                                     "COUNT", 1000)])[1]
            if isinstance(reply, RedisError):
                raise reply
            cursor, batch = reply
            keys.update(batch)
            if cursor == "0":
                return sorted(keys)

    def pttl(self, key, db=0):
        reply = self.commands([("SELECT", db), ("PTTL", key)])[1]
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def __repr__(self):
        return f"<RedisServer {self.address}>"


# ------------------------------------------------------------------------------ cluster


class RedisCluster:
    """`masters` cluster-enabled redis-servers joined with `redis-cli --cluster create` (no
    replicas), ready once every node reports cluster_state:ok."""

    def __init__(self, tmpdir, masters=3):
        self.tmpdir = pathlib.Path(tmpdir)
        self.nodes = []
        try:
            for i in range(masters):
                self.nodes.append(RedisServer(
                    self.tmpdir, label=f"cluster{i}",
                    extra_args=["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]))
            argv = [REDIS_CLI, "--cluster", "create", *[n.address for n in self.nodes],
                    "--cluster-replicas", "0", "--cluster-yes"]
            res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=scaled(60))
            if res.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{res.stdout}{res.stderr}")
            self.ids = {n.port: n.command("CLUSTER", "MYID") for n in self.nodes}
            self.wait_consistent()
        except BaseException:
            self.stop()
            raise

    # ---- state

    def state_ok(self, node):
        try:
            return "cluster_state:ok" in node.command("CLUSTER", "INFO")
        except (OSError, RedisError):
            return False

    def slot_owners(self, node):
        """{slot: port of the owning master} as `node` sees it (CLUSTER SLOTS)."""
        owners = {}
        for entry in node.command("CLUSTER", "SLOTS"):
            first, last, master = entry[0], entry[1], entry[2]
            for slot in range(first, last + 1):
                owners[slot] = int(master[1])
        return owners

    def wait_consistent(self, timeout=None):
        """Waits until every node says cluster_state:ok and all agree on every slot's owner."""
        def agreed():
            if not all(self.state_ok(n) for n in self.nodes):
                return False
            maps = [self.slot_owners(n) for n in self.nodes]
            return len(maps[0]) == SLOTS and all(m == maps[0] for m in maps[1:])
        if not wait_until(agreed, timeout or scaled(30), 0.1):
            raise RuntimeError("the cluster did not become consistent:\n" + "\n".join(
                f"{n.address}: {n.command('CLUSTER', 'INFO').splitlines()[0]}" for n in self.nodes))

    def node(self, port):
        return next(n for n in self.nodes if n.port == port)

    def node_for_slot(self, slot):
        """The master serving `slot` (as the first node sees it)."""
        return self.node(self.slot_owners(self.nodes[0])[slot])

    def node_for_key(self, key):
        return self.node_for_slot(keyslot(key))

    def other_node(self, node):
        return next(n for n in self.nodes if n.port != node.port)

    def keys_by_node(self, match="*"):
        """{port: [keys]} over every master (SCAN on each)."""
        return {n.port: n.scan(match) for n in self.nodes}

    def flushall(self):
        for n in self.nodes:
            n.command("FLUSHALL")

    # ---- resharding

    def start_migration(self, slot, src, dst):
        """The first half of a slot move: IMPORTING on dst, MIGRATING on src, then every key of
        the slot MIGRATEd to dst. Afterwards src answers -ASK for the slot's keys (they are gone
        from src) and dst serves them only after ASKING; the slot still belongs to src."""
        assert src.port != dst.port
        dst.command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.ids[src.port])
        src.command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.ids[dst.port])
        return self._migrate_keys(slot, src, dst)

    def finish_migration(self, slot, src, dst):
        """The second half: keys left on src (written meanwhile) are moved, then the slot is
        assigned to dst on dst, src and the other nodes (what redis-cli --cluster reshard
        does), and the nodes are waited for until they all agree."""
        self._migrate_keys(slot, src, dst)
        dst.command("CLUSTER", "SETSLOT", slot, "NODE", self.ids[dst.port])
        src.command("CLUSTER", "SETSLOT", slot, "NODE", self.ids[dst.port])
        for n in self.nodes:
            if n.port not in (src.port, dst.port):
                n.command("CLUSTER", "SETSLOT", slot, "NODE", self.ids[dst.port])
        self.wait_consistent()
        assert self.node_for_slot(slot).port == dst.port

    @staticmethod
    def _migrate_keys(slot, src, dst):
        """MIGRATEs every key of slot from src to dst; returns how many."""
        moved = 0
        while True:
            keys = src.command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                return moved
            src.command("MIGRATE", HOST, dst.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)

    def move_slot(self, slot, src, dst):
        """The full migration of `slot` from src to dst; returns the number of keys moved."""
        moved = self.start_migration(slot, src, dst)
        self.finish_migration(slot, src, dst)
        return moved

    def half_migrate_slot(self, slot, src, dst):
        """Leaves `slot` half-migrated (see start_migration); finish_migration() completes it."""
        return self.start_migration(slot, src, dst)

    def migration_state(self, node, slot):
        """'migrating' / 'importing' / None for slot on node (from CLUSTER NODES myself line)."""
        for line in node.command("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "myself" not in fields[2]:
                continue
            for f in fields[8:]:
                if f.startswith(f"[{slot}->-"):
                    return "migrating"
                if f.startswith(f"[{slot}-<-"):
                    return "importing"
        return None

    def stop(self):
        for n in self.nodes:
            try:
                n.stop()
            except Exception:  # noqa: BLE001 - teardown must go on
                pass

    def __repr__(self):
        return f"<RedisCluster {[n.address for n in self.nodes]}>"


# ------------------------------------------------------------------------------ silent server


class SilentServer:
    """A TCP listener on 127.0.0.1 that accepts connections, reads and discards what arrives,
    and never answers; connections stay open until stop()."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        last = None
        for _ in range(3):
            self.port = free_port()
            try:
                self.sock.bind((HOST, self.port))
                break
            except OSError as exc:
                last = exc
        else:
            raise RuntimeError(f"SilentServer could not bind: {last}")
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.conns = []
        self.accepted = 0
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self):
        return f"{HOST}:{self.port}"

    def url(self):
        return f"redis://{HOST}:{self.port}/0"

    def _run(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock, *self.conns], [], [], 0.05)
            for s in r:
                if s is self.sock:
                    try:
                        c, _ = self.sock.accept()
                    except OSError:
                        continue
                    c.setblocking(False)
                    self.conns.append(c)
                    self.accepted += 1
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if data:
                    self.received += len(data)
                else:  # the client closed: close our side too
                    self.conns.remove(s)
                    s.close()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        for c in self.conns:
            c.close()
        self.conns = []
        self.sock.close()
