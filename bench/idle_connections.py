#!/usr/bin/env python3
"""Memory cost of idle keep-alive connections: opens N connections to a running gatehouse, sends
one request on each (so each is a served keep-alive connection), then reads the process RSS.
usage: idle_connections.py PID PORT [N]   (raise `ulimit -n` for both processes first)"""
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    before = rss_kib(pid)
    socks = []
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    served = 0
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        served += data.startswith(b"HTTP/1.1 200")
        socks.append(s)
    time.sleep(1.0)
    after = rss_kib(pid)
    print(f"connections={n} served={served} rss_before_kib={before} rss_after_kib={after} "
          f"delta_mib={(after - before) / 1024:.1f} per_connection_bytes={(after - before) * 1024 // n}")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
