"""rate_limit.ipv6_prefix end to end (issue 10, item 3): the addresses of one IPv6 /64 are one
client for per-IP rate limits, bans and limits.max_connections_per_ip; another /64 is another
client; IPv4 is per address.

The rate-limit tests spray addresses through X-Forwarded-For from a trusted 127.0.0.1. The
connection-cap test needs real IPv6 peers from several networks: it runs gatehouse in a fresh
network namespace (root only; skipped otherwise) where 2001:db8:1::/48 is routed to lo, so
clients can connect from any address in it. Nothing outside that namespace changes.
"""
import json
import os
import random
import shutil
import subprocess
import textwrap
import time
import urllib.parse

import pytest

from conftest import (GATEHOUSE_BIN, PYTHON, default_config, deep_merge, http_request, scaled,
                      to_yaml)

TRUST = ["127.0.0.1/32"]


def route(name, prefix, rate_limit=None):
    r = {"name": name, "match": {"path_prefix": prefix}, "upstream": "app"}
    if rate_limit is not None:
        r["rate_limit"] = rate_limit
    return r


def in_net(net64, rng):
    """A random address of the /64 `net64` ("2001:db8:1:2")."""
    return net64 + ":" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(4))


def status(gh, xff):
    return http_request(gh.port, "GET", "/echo", headers={"X-Forwarded-For": xff})[0]


def admin(gh, method, path):
    code, _, body = http_request(gh.admin_port, method, path, timeout=5)
    return code, json.loads(body) if body else None


def test_one_slash64_is_one_client(flask_app, gatehouses):
    gh = gatehouses(flask_app, workers=2, trusted_proxies=TRUST,
                    routes=[route("api", "/", {"key": "ip", "limits": "5/minute"})])
    rng = random.Random(10)
    sprayed = [status(gh, in_net("2001:db8:1:2", rng)) for _ in range(40)]
    assert sprayed.count(200) == 5 and sprayed.count(429) == 35, sprayed
    assert sprayed[:5] == [200] * 5
    # Another /64 and an IPv4 client have their own quota.
    assert [status(gh, "2001:db8:1:3::1") for _ in range(6)] == [200] * 5 + [429]
    assert [status(gh, in_net("2001:db8:1:4", rng)) for _ in range(6)] == [200] * 5 + [429]
    assert [status(gh, "198.51.100.7") for _ in range(6)] == [200] * 5 + [429]
    assert status(gh, "198.51.100.8") == 200
    # 43 IPv6 addresses and 2 IPv4 ones were tracked as 5 keys: the spray did not grow the table.
    assert gh.metrics().get("gatehouse_ratelimit_keys") == 5


def test_prefix_128_counts_each_address(flask_app, gatehouses):
    gh = gatehouses(flask_app, trusted_proxies=TRUST,
                    rate_limit={"ipv6_prefix": 128},
                    routes=[route("api", "/", {"key": "ip", "limits": "1/minute"})])
    rng = random.Random(11)
    addresses = [in_net("2001:db8:1:2", rng) for _ in range(10)]
    assert [status(gh, a) for a in addresses] == [200] * 10
    assert [status(gh, a) for a in addresses] == [429] * 10


def test_prefix_48(flask_app, gatehouses):
    gh = gatehouses(flask_app, trusted_proxies=TRUST,
                    rate_limit={"ipv6_prefix": 48},
                    routes=[route("api", "/", {"key": "ip", "limits": "2/minute"})])
    assert [status(gh, x) for x in ("2001:db8:1:2::1", "2001:db8:1:ffff::1", "2001:db8:1::9")] \
        == [200, 200, 429]
    assert status(gh, "2001:db8:2::1") == 200


def test_ban_covers_the_slash64(flask_app, gatehouses):
    gh = gatehouses(flask_app, trusted_proxies=TRUST,
                    rate_limit={"limits": "1/minute",
                                "ban": {"after": 2, "within": "1m", "for": "60s"}},
                    routes=[route("api", "/")])
    rng = random.Random(12)
    # One admitted, two rejected (the second starts the ban), then every address is refused.
    got = [status(gh, in_net("2001:db8:1:2", rng)) for _ in range(20)]
    assert got[:3] == [200, 429, 429] and got[3:] == [403] * 17, got
    assert status(gh, "2001:db8:1:3::1") == 200
    line = gh.wait_log("security", lambda l: l.get("event") == "ban")
    assert line["key"] == "ip=2001:db8:1:2::/64"
    code, j = admin(gh, "GET", "/admin/bans")
    assert code == 200 and [b["key"] for b in j["bans"]] == ["ip=2001:db8:1:2::/64"]
    q = urllib.parse.quote("ip=2001:db8:1:2::/64", safe="")
    assert admin(gh, "DELETE", f"/admin/bans?key={q}") == (200, {"lifted": 1})
    assert status(gh, in_net("2001:db8:1:2", rng)) == 429  # limited again, no longer banned


def test_check_emits_ipv6_prefix(tmp_path):
    cfg = default_config(tmp_path, ["127.0.0.1:9"])
    path = tmp_path / "c.yaml"
    for given, shown in ((None, "64"), (48, "48")):
        c = deep_merge(cfg, {"rate_limit": {"limits": "10/minute"}})
        if given is not None:
            c["rate_limit"]["ipv6_prefix"] = given
        path.write_text(to_yaml(c))
        p = subprocess.run([GATEHOUSE_BIN, "check", "--config", str(path)], capture_output=True,
                           text=True, timeout=scaled(20))
        assert p.returncode == 0, p.stderr
        assert f"\n  ipv6_prefix: {shown}\n" in p.stdout, p.stdout
    c = deep_merge(cfg, {"rate_limit": {"limits": "10/minute", "ipv6_prefix": 129}})
    path.write_text(to_yaml(c))
    p = subprocess.run([GATEHOUSE_BIN, "check", "--config", str(path)], capture_output=True,
                       text=True, timeout=scaled(20))
    assert p.returncode == 1
    assert "rate_limit.ipv6_prefix: invalid value \"129\" (expected an integer from 1 to 128)" \
        in p.stderr


# ------------------------------------------------------------------------------ connection caps

NETNS_SETUP = ("ip link set lo up && ip -6 route add local 2001:db8:1::/48 dev lo && "
               "sysctl -qw net.ipv6.ip_nonlocal_bind=1")

# Runs inside the namespace: opens connections from the given source addresses, in order, and
# prints for each whether gatehouse kept it ("open") or closed it at accept ("closed").
CLIENT = textwrap.dedent("""
    import json, socket, sys, time
    port, sources = int(sys.argv[1]), json.loads(sys.argv[2])
    deadline = time.monotonic() + 10
    while True:  # gatehouse is starting
        try:
            socket.create_connection(("::1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    time.sleep(0.3)  # the probe's slot is released
    held, out = [], []
    for src in sources:
        s = socket.socket(socket.AF_INET6)
        s.bind((src, 0))
        s.connect(("::1", port))
        s.settimeout(0.5)
        try:
            out.append("closed" if s.recv(1) == b"" else "data")
        except socket.timeout:
            out.append("open")
        except ConnectionResetError:
            out.append("closed")
        held.append(s)
    print(json.dumps(out))
""")


def netns_available():
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        return False
    p = subprocess.run(["unshare", "-n", "sh", "-c", NETNS_SETUP], capture_output=True,
                       timeout=10)
    return p.returncode == 0


@pytest.mark.skipif(not netns_available(),
                    reason="needs root and network namespaces (unshare -n) for IPv6 peers")
@pytest.mark.parametrize("prefix, expected", [
    (64, ["open", "open", "closed", "closed", "open", "open"]),
    (128, ["open", "open", "open", "open", "open", "open"]),
])
def test_max_connections_per_ip_counts_the_slash64(tmp_path, prefix, expected):
    port = 8080  # a fresh namespace: no other listener
    cfg = deep_merge(default_config(tmp_path, ["127.0.0.1:9"]), {
        "listen": f"[::1]:{port}", "admin_listen": None, "workers": 1,
        "limits": {"max_connections_per_ip": 2},
        "rate_limit": {"ipv6_prefix": prefix},
    })
    path = tmp_path / "gatehouse.yaml"
    path.write_text(to_yaml(cfg))
    gh = subprocess.Popen(["unshare", "-n", "sh", "-c",
                           f"{NETNS_SETUP} && exec {GATEHOUSE_BIN} run --config {path}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Enter its namespace only once it has one (unshare may not have run yet).
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + scaled(10)
        while os.readlink(f"/proc/{gh.pid}/ns/net") == own:
            assert gh.poll() is None and time.monotonic() < deadline, gh.stderr.read()
            time.sleep(0.01)
        # Two from one /64, two more from it, then two from the next /64.
        sources = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3",
                   "2001:db8:1:2::4", "2001:db8:1:3::1", "2001:db8:1:3::2"]
        p = subprocess.run(["nsenter", f"--net=/proc/{gh.pid}/ns/net", PYTHON, "-c", CLIENT,
                            str(port), json.dumps(sources)],
                           capture_output=True, text=True, timeout=scaled(30))
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout) == expected, p.stdout
    finally:
        gh.terminate()
        try:
            gh.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gh.kill()
            gh.wait()
